/* sprint run: the main job (issue 4): simulates SPRINT and its baselines (S/M/L) on the
 * synthetic preset suite, plus the real model's traces when the shared model is found, and
 * prints the results beside the paper's printed values. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "qkv_cli.h"
#include "sprint/model.h"
#include "sprint/sim.h"

static void help(void) {
    printf("usage: sprint run [--workload NAME]... [--no-real] [--real-only] [--qkv FILE]... [--qkv-only] [--heads N]\n"
           "                  [--sizes S,M,L] [options]\n\n"
           "Simulates baseline-paper, baseline-tiled, mask-only, pruning, sprint-noreuse and sprint at sizes\n"
           "S, M, L on the preset suite (workload.suite: %s) and, when the shared model is\n"
           "found, on the real model's traces; prints a table per workload, the energy breakdown, and the\n"
           "reproduction summary beside the paper's values. Defaults need no files and take under a minute.\n\n"
           "  --workload NAME   simulate this preset (repeatable; replaces workload.suite)\n"
           "  --no-real         skip the real-model traces (same as --set sim.real_traces=0)\n"
           "  --real-only       only the real-model traces\n"
           "  --qkv FILE        also simulate your own Q/K/V tensors: a safetensors file or a directory of .npy\n"
           "                    files (repeatable; layout in docs/formats.md); masks from workload.mode with\n"
           "                    policy.file or the uncalibrated thresholds, as for the presets\n"
           "  --qkv-only        only the --qkv tensor sets (no presets, no real-model traces)\n"
           "  --heads N         heads simulated per preset (workload.sim_heads)\n"
           "  --sizes LIST      chip sizes, e.g. S or S,M,L (chip.sizes)\n"
           "  --summary         print only the reproduction summary\n\n%s",
           SP_WORKLOAD_PRESETS, CLI_COMMON_HELP);
}

static sp_status run_real(cli_common *c, sp_wl_result *out, sp_error *err, int *skipped, char *why, size_t nwhy) {
    *skipped = 0;
    if (!cli_resolve_shared(c, why, nwhy)) {
        *skipped = 1;
        return SP_OK;
    }
    sp_model *m = NULL;
    sp_tokenizer *t = NULL;
    char *text = NULL;
    size_t len = 0;
    sp_corpus corpus;
    memset(&corpus, 0, sizeof corpus);
    sp_status st = sp_model_load(c->cfg.model_checkpoint, &m, err);
    if (st == SP_OK) st = sp_tokenizer_load(c->cfg.model_tokenizer, sp_model_get_info(m)->vocab_size, &t, err);
    if (st == SP_OK) st = sp_read_file(c->cfg.eval_text, &text, &len, err);
    if (st == SP_OK) st = sp_corpus_from_text(t, text, len, (int)c->cfg.sim_trace_stories, &corpus, err);
    if (st == SP_OK) {
        sp_sim_opts o = {.threads = (int)c->cfg.run_threads, .progress = cli_progress, .progress_user = c};
        st = sp_sim_run_model(&c->cfg, m, &corpus, &o, out, err);
        cli_progress_done();
    }
    sp_corpus_free(&corpus);
    free(text);
    sp_tokenizer_free(t);
    sp_model_free(m);
    return st;
}

int cmd_run(int argc, char **argv) {
    cli_common c;
    cli_init(&c, "run");
    const char *names[64];
    int n_names = 0, real_only = 0, summary = 0, n_qkv = 0, qkv_only = 0;
    const char *qkv[64];
    static char setbuf[4][300];
    for (int i = 1; i < argc; i++) {
        if (cli_common_option(&c, argc, argv, &i)) continue;
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
    char suite[256];
    snprintf(suite, sizeof suite, "%s", c.cfg.workload_suite);
    if (!n_names && !real_only)
        for (char *tok = strtok(suite, ","); tok && n_names < 64; tok = strtok(NULL, ",")) {
            while (*tok == ' ') tok++;
            if (*tok) names[n_names++] = tok;
        }
    if (qkv_only && !n_qkv) cli_die(&c, 2, "--qkv-only needs at least one --qkv FILE");
    if (real_only || qkv_only) n_names = 0;
    sp_error err = {0};
    sp_hw hw[SP_SIZE_COUNT];
    unsigned mask;
    if (sp_sim_hw(&c.cfg, hw, &mask, &err) != SP_OK) cli_die_err(&c, &err); /* bad sizes before any work */
    sp_workload wls[64];
    for (int i = 0; i < n_names; i++)
        if (sp_workload_preset(&c.cfg, names[i], &wls[i], &err) != SP_OK) cli_die_err(&c, &err);
    sp_wl_result *res = calloc((size_t)n_names + 1 + (size_t)n_qkv, sizeof *res);
    if (!res) cli_die(&c, 1, "out of memory");
    int n = 0;
    double t0 = sp_now_seconds();
    for (int i = 0; i < n_names; i++) {
        if (!c.quiet) fprintf(stderr, "[run] %d/%d %s (%d tokens)...\n", i + 1, n_names, wls[i].name, wls[i].seq);
        sp_sim_opts o = {.threads = (int)c.cfg.run_threads, .progress = cli_progress, .progress_user = &c};
        if (sp_sim_run_synthetic(&c.cfg, &wls[i], &o, &res[n], &err) != SP_OK) cli_die_err(&c, &err);
        cli_progress_done();
        n++;
    }
    char why[1200] = "";
    if ((c.cfg.sim_real_traces || real_only) && !qkv_only) {
        int skipped = 0;
        if (!c.quiet) fprintf(stderr, "[run] real-model traces (%ld stories)...\n", c.cfg.sim_trace_stories);
        if (run_real(&c, &res[n], &err, &skipped, why, sizeof why) != SP_OK) cli_die_err(&c, &err);
        if (skipped) {
            if (real_only) cli_die(&c, 1, "%s", why);
            if (!c.quiet) fprintf(stderr, "[run] real-model traces skipped: %s\n", why);
        } else {
            n++;
        }
    }
    for (int i = 0; i < n_qkv; i++) { /* the user's own tensors (issue 8), beside the presets */
        if (!c.quiet) fprintf(stderr, "[run] tensor set %s...\n", qkv[i]);
        qkv_cli_run(&c, qkv[i], &res[n++]);
    }
    if (!c.quiet) fprintf(stderr, "[run] done in %.1f s\n", sp_now_seconds() - t0);
    if (c.json) {
        if (sp_report_json(stdout, res, n, &err) != SP_OK) cli_die_err(&c, &err);
    } else {
        if (!summary) sp_report_table(stdout, res, n);
        sp_report_paper(stdout, res, n);
    }
    if (c.csv_path && sp_report_csv(c.csv_path, res, n, &err) != SP_OK) cli_die_err(&c, &err);
    free(res);
    return 0;
}
