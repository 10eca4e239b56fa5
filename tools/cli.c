/* cli.c: common options, config assembly, error exits, progress. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "progress.h"

#include <errno.h>
#include "sprint/functional.h"
#include "sprint/model.h"
#include "sprint/sim.h"

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
    for (int i = 0; i < c->n_sets; i++) {
        /* section-less or misspelt keys: resolved or refused with a suggestion */
        const char *eq = strchr(c->sets[i], '=');
        char key[128], full[512];
        const char *as = c->sets[i];
        if (eq && (size_t)(eq - c->sets[i]) < sizeof key) {
            memcpy(key, c->sets[i], (size_t)(eq - c->sets[i]));
            key[eq - c->sets[i]] = 0;
            char *dot = strchr(key, '.');
            if (dot) *dot = 0;
            int known = dot && sp_config_find(key, dot + 1) >= 0;
            if (dot) *dot = '.';
            if (!known) {
                size_t nk;
                const sp_config_key *k = &sp_config_keys(&nk)[cli_config_key(c, key, "--set")];
                snprintf(full, sizeof full, "%s.%s%s", k->section, k->name, eq);
                as = full;
            }
        }
        if (sp_config_set(&c->cfg, as, "--set", &err) != SP_OK) cli_die(c, CLI_EXIT_USAGE, "%s", err.msg); /* a usage error (exit 2) */
    }
    if (sp_config_check_required(&c->cfg, &err) != SP_OK) cli_die_err(c, &err);
}

static sp_outfile *pending_output; /* removed if the command dies before committing it */

_Noreturn void cli_die(const cli_common *c, int code, const char *fmt, ...) {
    cli_progress_done();
    sp_outfile_abort(pending_output);
    pending_output = NULL;
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

int cli_list(const cli_common *c, const char *opt, const char *text, char *buf, size_t bufsize, char **items,
             int max) {
    if (strlen(text) >= bufsize)
        cli_die(c, CLI_EXIT_USAGE, "%s: list longer than %zu bytes", opt, bufsize - 1);
    memcpy(buf, text, strlen(text) + 1);
    int n = 0;
    for (char *p = buf;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = 0;
        while (*p == ' ') p++;
        size_t len = strlen(p);
        while (len && p[len - 1] == ' ') p[--len] = 0;
        if (!*p) {
            if (!comma && n == 0) cli_die(c, CLI_EXIT_USAGE, "%s: empty list", opt);
            cli_die(c, CLI_EXIT_USAGE, "%s: empty entry %d in '%s'", opt, n + 1, text);
        }
        if (n == max) cli_die(c, CLI_EXIT_USAGE, "%s: more than %d entries in '%s'", opt, max, text);
        items[n++] = p;
        if (!comma) break;
        p = comma + 1;
    }
    return n;
}

FILE *cli_output_open(const cli_common *c, const char *path) {
    sp_error err = {0};
    SP_ASSERT(!pending_output); /* one output file at a time */
    if (sp_outfile_open(path, &pending_output, &err) != SP_OK) cli_die(c, CLI_EXIT_ERROR, "%s", err.msg);
    return sp_outfile_stream(pending_output);
}

void cli_output_commit(const cli_common *c) {
    sp_error err = {0};
    sp_outfile *o = pending_output;
    pending_output = NULL;
    if (sp_outfile_commit(o, &err) != SP_OK) cli_die(c, CLI_EXIT_ERROR, "%s", err.msg);
}

void cli_check_stdout_at_exit(void) {
    int bad = ferror(stdout);
    errno = 0;
    if (fflush(stdout) != 0) bad = 1;
    int e = errno;
    if (fclose(stdout) != 0) {
        bad = 1;
        if (!e) e = errno;
    }
    sp_outfile_abort(pending_output);
    pending_output = NULL;
    if (bad) {
        fprintf(stderr, "sprint: error: cannot write standard output: %s\n", e ? strerror(e) : "write error");
        _exit(CLI_EXIT_ERROR);
    }
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
    /* within a run of several stages: the stage and the ETA of the whole run */
    char pre[64];
    double overall = progress_overall(total > 0 ? done / total : 0, pre, sizeof pre);
    double run_el = progress_run_elapsed();
    if (overall > 0.01 && run_el > el) {
        el = run_el;
        eta = el * (1 - overall) / overall;
    }
    fprintf(stderr, "%s[%s] %s%.0f/%.0f %s (%.0f%%), %.1f s elapsed, ~%.0f s left%s", tty ? "\r" : "",
            c ? c->cmd : "sprint", pre, done, total, what, total > 0 ? 100.0 * done / total : 0, el, eta,
            tty ? "\033[K" : "\n");
    progress_open = tty;
    if (final) cli_progress_done();
}

void cli_progress_done(void) {
    if (progress_open) fputc('\n', stderr);
    progress_open = 0;
    progress_t0 = -1;
}

/* ---- names: "did you mean" ------------------------------------------------------------- */
static int edit_distance(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na > 64 || nb > 64) return 1000;
    int d[65][65];
    for (size_t i = 0; i <= na; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= nb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= na; i++)
        for (size_t j = 1; j <= nb; j++) {
            int ca = a[i - 1] >= 'A' && a[i - 1] <= 'Z' ? a[i - 1] + 32 : a[i - 1];
            int cb = b[j - 1] >= 'A' && b[j - 1] <= 'Z' ? b[j - 1] + 32 : b[j - 1];
            int best = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            d[i][j] = best;
        }
    return d[na][nb];
}

const char *cli_closest(const char *word, const char *const *cands, int n) {
    int lim = (int)strlen(word) / 3, best = 1000;
    if (lim < 2) lim = 2;
    const char *out = NULL;
    for (int i = 0; i < n; i++) {
        int e = edit_distance(word, cands[i]);
        if (e < best) best = e, out = cands[i];
    }
    return best <= lim ? out : NULL;
}

int cli_config_key(cli_common *c, const char *name, const char *what) {
    size_t nk;
    const sp_config_key *keys = sp_config_keys(&nk);
    static char full[512][96];
    static const char *fulls[512], *shorts[512];
    int found = -1, nfound = 0;
    for (size_t k = 0; k < nk && k < 512; k++) {
        snprintf(full[k], sizeof full[k], "%s.%s", keys[k].section, keys[k].name);
        fulls[k] = full[k];
        shorts[k] = keys[k].name;
        if (!strcmp(name, full[k])) return (int)k;
        if (!strcmp(name, keys[k].name)) found = (int)k, nfound++;
    }
    if (nfound == 1) return found;
    if (nfound > 1) cli_die(c, 2, "%s: '%s' is ambiguous, give section.key (see docs/config.md)", what, name);
    const char *s = cli_closest(name, fulls, (int)(nk < 512 ? nk : 512));
    if (!s) {
        const char *t = cli_closest(name, shorts, (int)(nk < 512 ? nk : 512));
        for (size_t k = 0; t && k < nk && k < 512; k++)
            if (shorts[k] == t) s = fulls[k];
    }
    if (s) cli_die(c, 2, "%s: unknown config key '%s'; did you mean '%s'? (see docs/config.md)", what, name, s);
    cli_die(c, 2, "%s: unknown config key '%s' (see docs/config.md)", what, name);
}

void cli_no_table_options(const cli_common *c) {
    if (c->json) cli_die(c, 2, "--json: sprint %s prints no table (see sprint %s --help)", c->cmd, c->cmd);
    if (c->csv_path) cli_die(c, 2, "--csv: sprint %s prints no table (see sprint %s --help)", c->cmd, c->cmd);
}

const char *CLI_WORKLOAD_HELP =
    "  --seq N              sequence length of the presets run (tokens): workload.<preset>_seq\n"
    "  --padding F          share of padded tokens of the presets run (fraction): workload.<preset>_padding\n";

int cli_workload_option(cli_common *c, int argc, char **argv, int *i) {
    const char *a = argv[*i], *suffix = !strcmp(a, "--seq") ? "_seq" : !strcmp(a, "--padding") ? "_padding" : NULL;
    if (!suffix) return 0;
    const char *v = cli_value(c, argc, argv, i);
    static char buf[64][96];
    static int nbuf = 0;
    size_t nk;
    const sp_config_key *keys = sp_config_keys(&nk);
    for (size_t k = 0; k < nk; k++) {
        size_t ln = strlen(keys[k].name), ls = strlen(suffix);
        if (strcmp(keys[k].section, "workload") || ln <= ls || strcmp(keys[k].name + ln - ls, suffix)) continue;
        if (nbuf >= 64) cli_die(c, 2, "too many %s options", a);
        if (snprintf(buf[nbuf], sizeof buf[0], "workload.%s=%s", keys[k].name, v) >= (int)sizeof buf[0])
            cli_die(c, 2, "%s: value too long: '%.20s...'", a, v);
        push_set(c, buf[nbuf++]);
    }
    return 1;
}

const char *cli_mode_hint(const char *name) {
    static char buf[256];
    static const char *const designs[] = {"baseline-paper", "baseline-tiled", "mask-only", "sprint-noreuse"};
    static const char *const modes[] = {"dense", "dense-ref", "pruning", "sprint-norecompute", "sprint"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, designs[i])) {
            snprintf(buf, sizeof buf, "; '%s' is a simulator design (a row of sprint run), not an attention mode", name);
            return buf;
        }
    const char *m = cli_closest(name, modes, 5);
    if (m) {
        snprintf(buf, sizeof buf, "; did you mean '%s'?", m);
        return buf;
    }
    return "";
}

int cli_same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The stories of path (at most max_stories; 0 = all). */
static sp_status read_stories(const struct sp_tokenizer *tok, const char *path, int max_stories, sp_corpus *out,
                              sp_error *err) {
    char *text = NULL;
    size_t len = 0;
    sp_status st = sp_read_file(path, &text, &len, err);
    if (st == SP_OK) st = sp_corpus_from_text(tok, text, len, max_stories, out, err);
    free(text);
    return st;
}

sp_status cli_trace_corpora(const cli_common *c, const sp_config *cfg, const struct sp_tokenizer *tok,
                            sp_corpus *calib, sp_corpus *traced, sp_error *err) {
    memset(calib, 0, sizeof *calib);
    memset(traced, 0, sizeof *traced);
    sp_op_request req = {.mode = cfg->workload_mode, .cfg = cfg};
    const int needs = sp_op_needs_calibration(&req), n_trace = (int)cfg->sim_trace_stories;
    const int max = (int)cfg->eval_max_stories; /* 0 = all */
    const char *ct = cfg->policy_calib_text;
    const int use_ct = needs && ct[0];
    /* as sprint eval: halves, or auto when the thresholds come from the evaluated text */
    const int split = !strcmp(cfg->eval_split, "halves") || (needs && !use_ct && !strcmp(cfg->eval_split, "auto"));
    sp_corpus all;
    sp_status st = read_stories(tok, cfg->eval_text, split ? max : (max > 0 && max < n_trace ? max : n_trace), &all, err);
    if (st != SP_OK) return st;
    st = sp_sim_trace_split(&all, n_trace, split, calib, traced, err);
    sp_corpus_free(&all);
    if (st != SP_OK) return st;
    if (use_ct) { /* the calibration text's first n_trace stories instead of the first half's */
        sp_corpus_free(calib);
        st = read_stories(tok, ct, n_trace, calib, err);
        if (st != SP_OK) sp_corpus_free(traced);
        else if (cli_same_file(ct, cfg->eval_text))
            fprintf(stderr, "sprint %s: warning: the calibration text %s is the traced text: the real-model traces' "
                    "thresholds may be calibrated on the stories they trace\n", c->cmd, ct);
    } else if (needs && !split) {
        fprintf(stderr, "sprint %s: warning: eval.split = none: the real-model traces' thresholds are calibrated on "
                "the stories they trace (optimistic); see policy.calib_text\n", c->cmd);
    }
    return st;
}
