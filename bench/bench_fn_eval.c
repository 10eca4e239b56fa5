/* bench_fn_eval.c: the evaluation pass of `sprint eval` (sp_eval_corpus over the shared dev
 * text with stories260K, one thread) with the dense operator and with mode sprint, timed in CPU
 * time of the process around the pass only (no model loading, no calibration, no dense
 * comparison pass), operators interleaved (issue 9: "sprint eval --attention sprint at least as
 * fast as today's dense eval, excluding calibration").
 *
 * Operators: dense (the flash operator `sprint eval --attention dense` uses); sprint with the
 * dense statistics (sprint.impl auto = fast, sprint.exact_stats = 1, sprint.mass_lost = 1: the
 * keys' defaults, what `sprint eval --stats` runs); sprint without them (exact_stats = 0,
 * mass_lost = 0: what `sprint eval` runs by default, docs/model.md); sprint reference (the
 * operator before issue 9's fast implementation). policy.delta = 3 (onchip, no calibration).
 * Before timing nothing is checked beyond the run succeeding; the NLLs are printed (the
 * fast and reference operators are compared head by head in tests/test_fn_fast.c).
 *
 * usage: bench_fn_eval [--reps n] [--no-ref] [--model M] [--tokenizer T] [--text F] [--stories n]
 *   --no-ref: leave out the reference operator (2.5-3x the others' time)
 *   defaults: ../shared (or $SPRINT_SHARED) stories260K.bin, tok512.bin, the dev text, 3 reps. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sprint/functional.h"
#include "sprint/model.h"

static void die(const char *m) {
    fprintf(stderr, "bench_fn_eval: %s\n", m);
    exit(1);
}

static double proc_cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum { O_DENSE, O_SPRINT, O_NOSTATS, O_REF, O_N };
static const char *ONAME[O_N] = {"dense", "sprint, dense statistics on (`sprint eval --stats`; the keys' defaults)",
                                 "sprint, exact_stats=0 mass_lost=0 (`sprint eval`'s default since part 9g)",
                                 "sprint reference"};

int main(int argc, char **argv) {
    const char *shared = getenv("SPRINT_SHARED") ? getenv("SPRINT_SHARED") : "../shared";
    char mp[1024], tp[1024], xp[1024];
    snprintf(mp, sizeof mp, "%s/models/stories260K.bin", shared);
    snprintf(tp, sizeof tp, "%s/models/tok512.bin", shared);
    snprintf(xp, sizeof xp, "%s/data/tinystories-valid-dev.txt", shared);
    int reps = 3, max_stories = 0, no_ref = 0;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--reps") && a + 1 < argc) reps = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--model") && a + 1 < argc) snprintf(mp, sizeof mp, "%s", argv[++a]);
        else if (!strcmp(argv[a], "--tokenizer") && a + 1 < argc) snprintf(tp, sizeof tp, "%s", argv[++a]);
        else if (!strcmp(argv[a], "--text") && a + 1 < argc) snprintf(xp, sizeof xp, "%s", argv[++a]);
        else if (!strcmp(argv[a], "--stories") && a + 1 < argc) max_stories = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--no-ref")) no_ref = 1;
        else die("usage: bench_fn_eval [--reps n] [--no-ref] [--model M] [--tokenizer T] [--text F] [--stories n]");
    }
    if (reps < 1 || reps > 64) die("--reps: 1..64");
    sp_error err = {0};
    sp_model *m = NULL;
    if (sp_model_load(mp, &m, &err) != SP_OK) die(err.msg);
    const sp_model_info *mi = sp_model_get_info(m);
    sp_tokenizer *tok = NULL;
    if (sp_tokenizer_load(tp, mi->vocab_size, &tok, &err) != SP_OK) die(err.msg);
    char *text = NULL;
    size_t len = 0;
    if (sp_read_file(xp, &text, &len, &err) != SP_OK) die(err.msg);
    sp_corpus c;
    if (sp_corpus_from_text(tok, text, len, max_stories, &c, &err) != SP_OK) die(err.msg);
    sp_attn_op *ops[O_N];
    for (int o = 0; o < O_N; o++) {
        sp_config cfg;
        sp_config_defaults(&cfg);
        const char *set[4] = {"policy.delta=3", o == O_REF ? "sprint.impl=reference" : "sprint.impl=auto",
                              o == O_NOSTATS ? "sprint.exact_stats=0" : "sprint.exact_stats=1",
                              o == O_NOSTATS ? "sprint.mass_lost=0" : "sprint.mass_lost=1"};
        for (int t = 0; t < 4; t++)
            if (sp_config_set(&cfg, set[t], "bench", &err) != SP_OK) die(err.msg);
        sp_op_request req = {.mode = o == O_DENSE ? "dense" : "sprint", .cfg = &cfg, .model = m};
        if (sp_attn_op_create(&req, mi->n_layers, mi->n_heads, &ops[o], &err) != SP_OK) die(err.msg);
    }
    const int nops = no_ref ? O_REF : O_N;
    double t[O_N][64], nll[O_N], kept[O_N];
    long tokens = 0;
    for (int r = 0; r < reps; r++)
        for (int o = 0; o < nops; o++) {
            sp_eval_opts eo = {.window = 0, .threads = 1};
            sp_eval_result res;
            double t0 = proc_cpu_s();
            if (sp_eval_corpus(m, &c, ops[o], &eo, &res, &err) != SP_OK) die(err.msg);
            t[o][r] = proc_cpu_s() - t0;
            nll[o] = res.nll, kept[o] = sp_attn_stats_kept_fraction(&res.attn), tokens = res.tokens;
        }
    printf("stories260K, %d stories, %ld predicted tokens, one thread, CPU seconds of the process per "
           "evaluation pass, best [median] of %d interleaved runs\n\n",
           c.n, tokens, reps);
    printf("| operator | CPU s best [median] | vs dense (best [median]) | mean NLL (nats/token) | kept fraction |\n");
    printf("|---|---|---|---|---|\n");
    double best[O_N], med[O_N];
    for (int o = 0; o < nops; o++) {
        qsort(t[o], (size_t)reps, sizeof(double), cmp_d);
        best[o] = t[o][0], med[o] = t[o][reps / 2];
    }
    for (int o = 0; o < nops; o++)
        printf("| %s | %.2f [%.2f] | %.2fx [%.2fx] | %.9f | %.10f |\n", ONAME[o], best[o], med[o], best[o] / best[O_DENSE],
               med[o] / med[O_DENSE], nll[o], kept[o]);
    for (int o = 0; o < O_N; o++) sp_attn_op_free(ops[o]);
    sp_corpus_free(&c);
    free(text);
    sp_tokenizer_free(tok);
    sp_model_free(m);
    return 0;
}
