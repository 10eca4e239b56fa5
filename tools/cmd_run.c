/* sprint run: the main job (issue 4): simulates SPRINT and its baselines (S/M/L) on the
 * synthetic preset suite, plus the real model's traces when the shared model is found, and
 * prints the results beside the paper's printed values. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "qkv_cli.h"
#include "progress.h"
#include "sprint/model.h"
#include "sprint/sim.h"

static void help(void) {
    printf("usage: sprint run [--workload NAME]... [--no-real] [--real-only] [--qkv FILE]... [--qkv-only] [--heads N]\n"
           "                  [--sizes S,M,L] [options]\n\n"
           "Simulates baseline-paper, baseline-tiled, mask-only, pruning, sprint-noreuse and sprint at sizes\n"
           "S, M, L on the preset suite (workload.suite: %s) and on the traces of every real\n"
           "language model of sim.real_models found (default stories260K and bitnet-3M, all heads).\n"
           "Prints the reproduction table first (speedup S/M/L, traffic "
           "S/M/L, energy at M beside the paper's; fitted bars marked), the preset and every changed key,\n"
           "then the workload statistics; --detail adds the per-design tables (always in --json/--csv).\n"
           "Defaults need no files and take under a minute.\n\n"
           "  --workload NAME   simulate only this preset, or 'real' for the real-model traces (repeatable;\n"
           "                    replaces workload.suite and sim.real_traces)\n"
           "  --no-real         skip the real-model traces (same as --set sim.real_traces=0)\n"
           "  --real-only       only the real-model traces\n"
           "  --qkv FILE        also simulate your own Q/K/V tensors: a safetensors file or a directory of .npy\n"
           "                    files (repeatable; layout in docs/formats.md); masks from workload.mode with\n"
           "                    policy.file or the uncalibrated thresholds, as for the presets\n"
           "  --qkv-only        only the --qkv tensor sets (no presets, no real-model traces)\n"
           "  --heads N         heads simulated per preset (workload.sim_heads)\n"
           "  --sizes LIST      chip sizes, e.g. S or S,M,L (chip.sizes)\n"
           "  --summary         print only the reproduction table\n"
           "  --detail          also print every design's table, the energy breakdown and the per-size summary\n%s\n%s",
           SP_WORKLOAD_PRESETS, CLI_WORKLOAD_HELP, CLI_COMMON_HELP);
}

/* One real model to trace (sim.real_models, or model.checkpoint when set). */
typedef struct real_spec {
    char name[256];   /* as listed */
    char path[3200];  /* resolved checkpoint path */
    long stories;     /* stories of the text traced */
    int explicit_;    /* named by the user: a missing file is an error */
} real_spec;

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* The real models of this run: model.checkpoint alone when set, else the entries of
 * sim.real_models (NAME or PATH, optionally :N stories); names resolve under the shared
 * directory's models/. Returns the count (at most max). */
static int real_models(cli_common *c, real_spec *out, int max) {
    int n = 0;
    if (c->cfg.model_checkpoint[0]) {
        snprintf(out[0].name, sizeof out[0].name, "%s", c->cfg.model_checkpoint);
        snprintf(out[0].path, sizeof out[0].path, "%s", c->cfg.model_checkpoint);
        out[0].stories = c->cfg.sim_trace_stories;
        out[0].explicit_ = 1;
        return 1;
    }
    size_t nk;
    const sp_config_key *keys = sp_config_keys(&nk);
    int ki = sp_config_find("sim", "real_models");
    int expl = ki >= 0 && strcmp(keys[ki].def, c->cfg.sim_real_models) != 0;
    char list[sizeof c->cfg.sim_real_models];
    snprintf(list, sizeof list, "%s", c->cfg.sim_real_models);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        size_t l = strlen(tok);
        while (l > 0 && tok[l - 1] == ' ') tok[--l] = 0;
        if (!l) continue;
        if (n >= max) cli_die(c, 2, "sim.real_models: more than %d models", max);
        real_spec *r = &out[n];
        r->stories = c->cfg.sim_trace_stories;
        r->explicit_ = expl;
        char *colon = strrchr(tok, ':');
        if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1)) {
            long v = strtol(colon + 1, NULL, 10);
            if (v < 1 || v > 100000) cli_die(c, 2, "sim.real_models: '%s': stories must be 1..100000", tok);
            r->stories = v;
            *colon = 0;
        } else if (colon && !strchr(colon, '/')) {
            cli_die(c, 2, "sim.real_models: '%s': expected NAME or NAME:STORIES (a whole number)", tok);
        }
        snprintf(r->name, sizeof r->name, "%s", tok);
        if (strchr(tok, '/')) {
            snprintf(r->path, sizeof r->path, "%s", tok);
        } else {
            char rel[300], dir[2800];
            snprintf(rel, sizeof rel, "models/%s%s", tok, ends_with(tok, ".bin") ? "" : ".bin");
            sp_shared_find(rel, dir, sizeof dir);
            snprintf(r->path, sizeof r->path, "%s/%s", dir, rel);
        }
        n++;
    }
    return n;
}

static int file_exists(const char *p) {
    FILE *f = fopen(p, "rb");
    if (f) fclose(f);
    return f != NULL;
}

/* Traces one real model: its tokenizer picked by vocabulary (tok<V>.bin in the shared
 * directory) unless model.tokenizer is set, sim.trace_stories (or the entry's :N) stories of
 * eval.text (its second half, calibrated on its first, when thresholds are calibrated:
 * cli_trace_corpora). *skipped with the reason in why when a file is missing (not an error). */
static sp_status run_real(cli_common *c, const real_spec *rs, sp_wl_result *out, sp_error *err, int *skipped,
                          char *why, size_t nwhy) {
    *skipped = 0;
    if (strlen(rs->path) >= sizeof c->cfg.model_checkpoint)
        return sp_error_set(err, SP_ERR_ARG, "real model path too long: %.200s", rs->path);
    if (!file_exists(rs->path)) {
        snprintf(why, nwhy, "%.1000s not found", rs->path);
        *skipped = 1;
        return SP_OK;
    }
    sp_config *cfg = malloc(sizeof *cfg);
    if (!cfg) return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    *cfg = c->cfg;
    memcpy(cfg->model_checkpoint, rs->path, strlen(rs->path) + 1);
    cfg->sim_trace_stories = rs->stories;
    if (!cfg->eval_text[0]) {
        char dir[2800], path[3100];
        const char *rel = "data/tinystories-valid-dev.txt";
        sp_shared_find(rel, dir, sizeof dir);
        snprintf(path, sizeof path, "%s/%s", dir, rel);
        if (strlen(path) >= sizeof cfg->eval_text) {
            free(cfg);
            return sp_error_set(err, SP_ERR_ARG, "shared directory path too long: %.200s", dir);
        }
        memcpy(cfg->eval_text, path, strlen(path) + 1);
    }
    if (!file_exists(cfg->eval_text)) {
        snprintf(why, nwhy, "text %.1000s not found", cfg->eval_text);
        *skipped = 1;
        free(cfg);
        return SP_OK;
    }
    sp_model *m = NULL;
    sp_tokenizer *t = NULL;
    sp_corpus corpus, calib;
    memset(&corpus, 0, sizeof corpus);
    memset(&calib, 0, sizeof calib);
    sp_status st = sp_model_load(cfg->model_checkpoint, &m, err);
    if (st == SP_OK && !cfg->model_tokenizer[0]) { /* picked by vocabulary, as sprint eval does */
        int vocab = sp_model_get_info(m)->vocab_size;
        char rel[64], dir[2800], path[3100];
        if (vocab == 32000) snprintf(rel, sizeof rel, "models/tokenizer.bin");
        else snprintf(rel, sizeof rel, "models/tok%d.bin", vocab);
        sp_shared_find(rel, dir, sizeof dir);
        snprintf(path, sizeof path, "%s/%s", dir, rel);
        if (!file_exists(path) || strlen(path) >= sizeof cfg->model_tokenizer) {
            snprintf(why, nwhy, "no tokenizer for %.200s's vocabulary of %d tokens (%.700s not found)", rs->name, vocab, path);
            *skipped = 1;
        } else {
            memcpy(cfg->model_tokenizer, path, strlen(path) + 1);
        }
    }
    if (st == SP_OK && !*skipped) st = sp_tokenizer_load(cfg->model_tokenizer, sp_model_get_info(m)->vocab_size, &t, err);
    /* thresholds calibrated on held-out stories (the first half of the text), as sprint eval */
    if (st == SP_OK && !*skipped) st = cli_trace_corpora(c, cfg, t, &calib, &corpus, err);
    if (st == SP_OK && !*skipped) {
        sp_sim_opts o = {.threads = (int)cfg->run_threads, .progress = cli_progress, .progress_user = c,
                         .calib = calib.n ? &calib : NULL};
        st = sp_sim_run_model(cfg, m, &corpus, &o, out, err);
        cli_progress_done();
    }
    if (st != SP_OK && err->msg[0]) { /* which model failed */
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        sp_error_set(err, st, "real model %.200s: %s", rs->name, msg);
    }
    sp_corpus_free(&corpus);
    sp_corpus_free(&calib);
    sp_tokenizer_free(t);
    sp_model_free(m);
    free(cfg);
    return st;
}

int cmd_run(int argc, char **argv) {
    cli_common c;
    cli_init(&c, "run");
    const char *names[64];
    int n_names = 0, real_only = 0, summary = 0, detail = 0, n_qkv = 0, qkv_only = 0;
    const char *qkv[64];
    static char setbuf[4][300];
    for (int i = 1; i < argc; i++) {
        if (cli_common_option(&c, argc, argv, &i) || cli_workload_option(&c, argc, argv, &i)) continue;
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help();
            return 0;
        } else if (!strcmp(a, "--workload")) {
            if (n_names >= 64) cli_die(&c, 2, "too many --workload options");
            names[n_names++] = cli_value(&c, argc, argv, &i);
        } else if (!strcmp(a, "--no-real")) {
            if (c.n_sets >= CLI_MAX_SOURCES) cli_die(&c, 2, "too many options");
            c.sets[c.n_sets++] = "sim.real_traces=0";
        } else if (!strcmp(a, "--qkv")) {
            if (n_qkv >= 64) cli_die(&c, 2, "too many --qkv options");
            qkv[n_qkv++] = cli_value(&c, argc, argv, &i);
        } else if (!strcmp(a, "--qkv-only")) {
            qkv_only = 1;
        } else if (!strcmp(a, "--real-only")) {
            real_only = 1;
        } else if (!strcmp(a, "--summary")) {
            summary = 1;
        } else if (!strcmp(a, "--detail")) {
            detail = 1;
        } else if (!strcmp(a, "--heads") || !strcmp(a, "--sizes")) {
            const char *v = cli_value(&c, argc, argv, &i);
            if (a[2] == 'h') { /* a clear message before the key's range check */
                char *end;
                long nh = strtol(v, &end, 10);
                if (end == v || *end || nh < 1)
                    cli_die(&c, 2, "--heads: expected a whole number of heads >= 1, got '%s'", v);
            }
            char *b = setbuf[a[2] == 'h' ? 0 : 1];
            snprintf(b, 300, "%s=%s", a[2] == 'h' ? "workload.sim_heads" : "chip.sizes", v);
            if (c.n_sets >= CLI_MAX_SOURCES) cli_die(&c, 2, "too many options");
            c.sets[c.n_sets++] = b;
        } else {
            cli_die(&c, 2, "unknown option '%s' (see sprint run --help)", a);
        }
    }
    cli_finish(&c);
    /* workload list */
    int named = n_names > 0; /* --workload given */
    char suite[256];
    snprintf(suite, sizeof suite, "%s", c.cfg.workload_suite);
    if (!n_names && !real_only)
        for (char *tok = strtok(suite, ","); tok && n_names < 64; tok = strtok(NULL, ",")) {
            while (*tok == ' ') tok++;
            if (*tok) names[n_names++] = tok;
        }
    if (qkv_only && !n_qkv) cli_die(&c, 2, "--qkv-only needs at least one --qkv FILE");
    if (real_only || qkv_only) n_names = 0;
    /* --workload runs only what it names: the real-model traces only as --workload real */
    int want_real = 0, kept_names = 0;
    for (int i = 0; i < n_names; i++) {
        if (!strcmp(names[i], "real")) want_real = 1;
        else names[kept_names++] = names[i];
    }
    n_names = kept_names;
    if (named && want_real && !n_names) real_only = 1;
    sp_error err = {0};
    sp_hw hw[SP_SIZE_COUNT];
    unsigned mask;
    if (sp_sim_hw(&c.cfg, hw, &mask, &err) != SP_OK) cli_die_err(&c, &err); /* bad sizes before any work */
    sp_workload wls[64];
    for (int i = 0; i < n_names; i++)
        if (sp_workload_preset(&c.cfg, names[i], &wls[i], &err) != SP_OK) cli_die_err(&c, &err);
    int do_real = ((named ? want_real : c.cfg.sim_real_traces) || real_only) && !qkv_only;
    real_spec specs[16];
    int n_real = do_real ? real_models(&c, specs, 16) : 0;
    if (do_real && !n_real && real_only) cli_die(&c, 2, "sim.real_models lists no model");
    sp_wl_result *res = calloc((size_t)n_names + (size_t)n_real + (size_t)n_qkv + 1, sizeof *res);
    if (!res) cli_die(&c, 1, "out of memory");
    int n = 0;
    double t0 = sp_now_seconds();
    progress_stages(n_names + n_real + n_qkv);
    for (int i = 0; i < n_names; i++) {
        char what[96];
        snprintf(what, sizeof what, "%.31s (%d tokens)", wls[i].name, wls[i].seq);
        progress_stage(&c, what);
        sp_sim_opts o = {.threads = (int)c.cfg.run_threads, .progress = cli_progress, .progress_user = &c};
        if (sp_sim_run_synthetic(&c.cfg, &wls[i], &o, &res[n], &err) != SP_OK) cli_die_err(&c, &err);
        cli_progress_done();
        n++;
    }
    int n_traced = 0;
    for (int r = 0; r < n_real; r++) { /* every real language model (issue 8), all heads */
        char why[1200] = "";
        int skipped = 0;
        char what[200];
        const char *base = strrchr(specs[r].name, '/');
        snprintf(what, sizeof what, "real model %.120s (%ld stories)", base ? base + 1 : specs[r].name,
                 specs[r].stories);
        progress_stage(&c, what);
        if (run_real(&c, &specs[r], &res[n], &err, &skipped, why, sizeof why) != SP_OK) cli_die_err(&c, &err);
        if (skipped) {
            if (specs[r].explicit_) cli_die(&c, 1, "real model %s: %s", specs[r].name, why);
            if (!c.quiet) fprintf(stderr, "[run] real model %s skipped: %s\n", specs[r].name, why);
        } else {
            n++, n_traced++;
        }
    }
    if (real_only && !n_traced) cli_die(&c, 1, "no real model found (sim.real_models = %s)", c.cfg.sim_real_models);
    for (int i = 0; i < n_qkv; i++) { /* the user's own tensors (issue 8), beside the presets */
        char what[96];
        snprintf(what, sizeof what, "tensor set %.80s", qkv[i]);
        progress_stage(&c, what);
        qkv_cli_run(&c, qkv[i], &res[n++]);
    }
    if (!c.quiet) fprintf(stderr, "[run] done in %.1f s\n", sp_now_seconds() - t0);
    if (c.json) {
        if (sp_report_json(stdout, res, n, &err) != SP_OK) cli_die_err(&c, &err);
    } else {
        char preset[600] = "";
        for (int i = 0; i < c.n_files; i++) {
            size_t u = strlen(preset);
            snprintf(preset + u, sizeof preset - u, "%s%s", i ? " + " : "", c.files[i]);
        }
        if (!c.n_files) snprintf(preset, sizeof preset, "paper-reproduction (built-in defaults = configs/sim-default.ini)");
        sp_report_summary(stdout, res, n, &c.cfg, preset);
        if (detail) {
            sp_report_table(stdout, res, n);
            sp_report_paper(stdout, res, n);
        } else if (!summary) {
            sp_report_realism(stdout, res, n);
        }
    }
    if (c.csv_path && sp_report_csv(c.csv_path, res, n, &err) != SP_OK) cli_die_err(&c, &err);
    free(res);
    return 0;
}
