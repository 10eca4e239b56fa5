/* cli.c: common options, config assembly, error exits, progress. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include "sprint/model.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *CLI_COMMON_HELP =
    "Common options:\n"
    "  --config FILE        load an INI config file (repeatable; later files override)\n"
    "  --set SEC.KEY=VALUE  override one key after the files (repeatable); see docs/config.md\n"
    "  --seed N             same as --set run.seed=N (integer, 0..4294967295)\n"
    "  --threads N          same as --set run.threads=N (threads, 0 = all cores; results do not depend on it)\n"
    "  --json               print one JSON object on stdout instead of the table\n"
    "  --csv FILE           also write the table as CSV (units in column names)\n"
    "  --quiet              no progress on stderr\n";

void cli_init(cli_common *c, const char *cmd) {
    memset(c, 0, sizeof *c);
    c->cmd = cmd;
    sp_config_defaults(&c->cfg);
}

const char *cli_value(cli_common *c, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) cli_die(c, 2, "option %s needs a value (see sprint %s --help)", argv[*i], c->cmd);
    return argv[++*i];
}

static void push_set(cli_common *c, const char *s) {
    if (c->n_sets >= CLI_MAX_SOURCES) cli_die(c, 2, "too many --set options (at most %d)", CLI_MAX_SOURCES);
    c->sets[c->n_sets++] = s;
}

int cli_common_option(cli_common *c, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    static char buf[CLI_MAX_SOURCES][64];
    if (!strcmp(a, "--config")) {
        if (c->n_files >= CLI_MAX_SOURCES) cli_die(c, 2, "too many --config options");
        c->files[c->n_files++] = cli_value(c, argc, argv, i);
    } else if (!strcmp(a, "--set")) {
        push_set(c, cli_value(c, argc, argv, i));
    } else if (!strcmp(a, "--seed") || !strcmp(a, "--threads")) {
        const char *v = cli_value(c, argc, argv, i);
        char *b = buf[c->n_sets % CLI_MAX_SOURCES];
        if (snprintf(b, sizeof buf[0], "run.%s=%s", a + 2, v) >= (int)sizeof buf[0])
            cli_die(c, 2, "%s expects an integer, got '%.40s...'", a, v);
        push_set(c, b);
    } else if (!strcmp(a, "--json")) {
        c->json = 1;
    } else if (!strcmp(a, "--csv")) {
        c->csv_path = cli_value(c, argc, argv, i);
    } else if (!strcmp(a, "--quiet")) {
        c->quiet = 1;
    } else {
        return 0;
    }
    return 1;
}

void cli_finish(cli_common *c) {
    sp_error err = {0};
    for (int i = 0; i < c->n_files; i++)
        if (sp_config_load_file(&c->cfg, c->files[i], &err) != SP_OK) cli_die_err(c, &err);
    for (int i = 0; i < c->n_sets; i++)
        if (sp_config_set(&c->cfg, c->sets[i], "--set", &err) != SP_OK) cli_die_err(c, &err);
    if (sp_config_check_required(&c->cfg, &err) != SP_OK) cli_die_err(c, &err);
}

_Noreturn void cli_die(const cli_common *c, int code, const char *fmt, ...) {
    cli_progress_done();
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sprint %s: error: ", c ? c->cmd : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

_Noreturn void cli_die_err(const cli_common *c, const sp_error *err) {
    cli_die(c, err->status == SP_ERR_ARG ? 2 : 1, "%s", err->msg[0] ? err->msg : sp_status_name(err->status));
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* What to do when the shared file `path` is missing. */
static void shared_directions(const char *path, char *msg, size_t msgsize) {
    snprintf(msg, msgsize,
             "%s not found. Get stories260K.bin and tok512.bin from the tinyllamas release of llama2.c "
             "(stories260K/), and TinyStories validation text from its public dataset page; put them under "
             "models/ and data/ of a directory named by SPRINT_SHARED, or pass --model/--tokenizer/--text "
             "(see README.md)",
             path);
}

int cli_resolve_shared(cli_common *c, char *msg, size_t msgsize) {
    struct {
        char *field;
        const char *rel;
    } f[3] = {{c->cfg.model_checkpoint, "models/stories260K.bin"},
              {c->cfg.model_tokenizer, "models/tok512.bin"},
              {c->cfg.eval_text, "data/tinystories-valid-dev.txt"}};
    int ok = 1;
    msg[0] = 0;
    for (int i = 0; i < 3; i++) {
        if (!f[i].field[0]) {
            char dir[3000];
            sp_shared_find(f[i].rel, dir, sizeof dir);
            char path[3100];
            snprintf(path, sizeof path, "%s/%s", dir, f[i].rel);
            if (strlen(path) >= 256) cli_die(c, 1, "shared directory path too long: %s", dir);
            memcpy(f[i].field, path, strlen(path) + 1);
        }
        if (!exists(f[i].field)) {
            if (ok) shared_directions(f[i].field, msg, msgsize);
            ok = 0;
        }
    }
    return ok;
}

int cli_path_option(cli_common *c, int argc, char **argv, int *i, int with_text) {
    static const char *const opts[3] = {"--model", "--tokenizer", "--text"};
    for (int k = 0; k < (with_text ? 3 : 2); k++)
        if (!strcmp(argv[*i], opts[k])) {
            c->path_opt[k] = cli_value(c, argc, argv, i);
            return 1;
        }
    return 0;
}

void cli_resolve_paths(cli_common *c, int with_text) {
    static const char *const opts[3] = {"--model", "--tokenizer", "--text"};
    char *fields[3] = {c->cfg.model_checkpoint, c->cfg.model_tokenizer, c->cfg.eval_text};
    int nk = with_text ? 3 : 2, was_empty[3] = {0, 0, 0};
    for (int k = 0; k < nk; k++) {
        if (c->path_opt[k]) {
            if (strlen(c->path_opt[k]) >= 256) cli_die(c, 2, "%s path longer than 255 bytes", opts[k]);
            memcpy(fields[k], c->path_opt[k], strlen(c->path_opt[k]) + 1);
        }
        was_empty[k] = !fields[k][0];
    }
    c->tokenizer_auto = was_empty[1];
    char msg[1024];
    cli_resolve_shared(c, msg, sizeof msg);
    /* a file found from the shared directory must exist; one named explicitly is left to its
     * loader, whose message is more precise */
    for (int k = 0; k < nk; k++)
        if (was_empty[k] && !exists(fields[k])) {
            shared_directions(fields[k], msg, sizeof msg);
            cli_die(c, 1, "%s", msg);
        }
}

void cli_pick_tokenizer(cli_common *c, const sp_model_info *info) {
    if (!c->tokenizer_auto) return;
    char rel[64], dir[3000], path[3100];
    if (info->vocab_size == 32000) snprintf(rel, sizeof rel, "models/tokenizer.bin");
    else snprintf(rel, sizeof rel, "models/tok%d.bin", info->vocab_size);
    if (!sp_shared_find(rel, dir, sizeof dir))
        cli_die(c, 1, "no tokenizer for the model's vocabulary of %d tokens: %s/%s not found; pass --tokenizer",
                info->vocab_size, dir, rel);
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    if (strlen(path) >= sizeof c->cfg.model_tokenizer) cli_die(c, 1, "shared directory path too long: %s", dir);
    memcpy(c->cfg.model_tokenizer, path, strlen(path) + 1);
}

int cli_is_dir(const char *path) {
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static double progress_t0 = -1, progress_last = 0;
static int progress_open = 0;

void cli_progress(void *user, const char *what, double done, double total) {
    const cli_common *c = user;
    if (c && c->quiet) return;
    double now = sp_now_seconds();
    if (progress_t0 < 0) progress_t0 = now;
    double el = now - progress_t0;
    int tty = isatty(2);
    int final = total > 0 && done >= total;
    if (el < 1.0 && !(final && progress_open)) return;
    if (!final && now - progress_last < (tty ? 0.2 : 5.0)) return;
    progress_last = now;
    double eta = done > 0 && total > done ? el * (total - done) / done : 0;
    fprintf(stderr, "%s[%s] %.0f/%.0f %s (%.0f%%), %.1f s elapsed, ~%.0f s left%s", tty ? "\r" : "",
            c ? c->cmd : "sprint", done, total, what, total > 0 ? 100.0 * done / total : 0, el, eta,
            tty ? "\033[K" : "\n");
    progress_open = tty;
    if (final) cli_progress_done();
}

void cli_progress_done(void) {
    if (progress_open) fputc('\n', stderr);
    progress_open = 0;
    progress_t0 = -1;
}
