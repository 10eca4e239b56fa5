/* bench_eval.c: dense evaluation speed (tokens/s) of stories260K on the dev text.
 *
 * Checks the result first (dense mean NLL within 0.5% of the independent 1.217 nats/token, and
 * the fast float operator against the double reference), then times whole evaluations of the
 * file: the fast dense operator at 1 and 2 threads, and the double reference once. Prints the
 * best and median of the repetitions (the machine is shared: the best is the cleaner figure).
 *
 * usage: bench_eval [repetitions (default 3)] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sprint/model.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void die(const sp_error *e) {
    fprintf(stderr, "bench_eval: %s\n", e->msg);
    exit(1);
}

static const char *shared(const char *rel, char *buf, size_t n) {
    char dir[2048];
    if (!sp_shared_find(rel, dir, sizeof dir)) {
        fprintf(stderr, "bench_eval: %s/%s not found (set SPRINT_SHARED)\n", dir, rel);
        exit(1);
    }
    snprintf(buf, n, "%s/%s", dir, rel);
    return buf;
}

/* Evaluates the corpus `reps` times; prints best and median tokens/s; returns the last NLL. */
static double timed(const char *label, const sp_model *m, const sp_corpus *c, sp_attn_op *op, int threads, int reps) {
    double *tps = malloc((size_t)reps * sizeof *tps), nll = 0, secs = 0;
    sp_error err = {0};
    for (int r = 0; r < reps; r++) {
        sp_eval_opts o = {.threads = threads};
        sp_eval_result res;
        if (sp_eval_corpus(m, c, op, &o, &res, &err) != SP_OK) die(&err);
        tps[r] = res.tokens_per_s;
        nll = res.nll;
        secs = res.seconds;
    }
    qsort(tps, (size_t)reps, sizeof *tps, cmp_double);
    printf("%-34s threads %d  best %8.0f tokens/s  median %8.0f tokens/s  (%d runs, last %.2f s, NLL %.6f nats/token)\n",
           label, threads, tps[reps - 1], tps[reps / 2], reps, secs, nll);
    free(tps);
    return nll;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 3;
    if (reps < 1) reps = 1;
    char pm[4096], pt[4096], px[4096];
    sp_error err = {0};
    sp_model *m;
    sp_tokenizer *t;
    char *text;
    size_t len;
    if (sp_model_load(shared("models/stories260K.bin", pm, sizeof pm), &m, &err) != SP_OK) die(&err);
    if (sp_tokenizer_load(shared("models/tok512.bin", pt, sizeof pt), 512, &t, &err) != SP_OK) die(&err);
    if (sp_read_file(shared("data/tinystories-valid-dev.txt", px, sizeof px), &text, &len, &err) != SP_OK) die(&err);
    double t0 = sp_now_seconds();
    sp_corpus c;
    if (sp_corpus_from_text(t, text, len, 0, &c, &err) != SP_OK) die(&err);
    double tok_s = sp_now_seconds() - t0;
    printf("bench_eval: %d stories, %ld predicted tokens; tokenizing %zu bytes took %.3f s\n", c.n, c.total_targets,
           len, tok_s);

    const sp_model_info *info = sp_model_get_info(m);
    sp_attn_op *fast = sp_attn_dense_fast_create(info->n_layers, info->n_heads);
    sp_attn_op *ref = sp_attn_dense_create(info->n_layers, info->n_heads);
    /* check before timing */
    sp_eval_opts o = {.threads = 0};
    sp_eval_result r;
    if (sp_eval_corpus(m, &c, fast, &o, &r, &err) != SP_OK) die(&err);
    if (fabs(r.nll / 1.217 - 1) > 0.005) {
        fprintf(stderr, "bench_eval: dense NLL %.6f is more than 0.5%% from 1.217: not timing a wrong result\n", r.nll);
        return 1;
    }
    sp_corpus sub = c;
    sub.n = 8;
    sp_eval_result ra, rb;
    if (sp_eval_corpus(m, &sub, ref, &o, &ra, &err) != SP_OK || sp_eval_corpus(m, &sub, fast, &o, &rb, &err) != SP_OK)
        die(&err);
    if (fabs(ra.nll - rb.nll) > 1e-5 * ra.nll) {
        fprintf(stderr, "bench_eval: fast %.9f vs reference %.9f on 8 stories\n", rb.nll, ra.nll);
        return 1;
    }
    printf("check: dense NLL %.6f nats/token (independent: 1.217), fast vs reference on 8 stories: %.3g relative\n",
           r.nll, fabs(ra.nll - rb.nll) / ra.nll);

    timed("dense fast (float)", m, &c, fast, 1, reps);
    timed("dense fast (float)", m, &c, fast, 2, reps);
    timed("dense reference (double)", m, &c, ref, 2, 1);

    sp_attn_op_free(fast);
    sp_attn_op_free(ref);
    sp_corpus_free(&c);
    free(text);
    sp_tokenizer_free(t);
    sp_model_free(m);
    return 0;
}
