/* test_model.c: does the runner load llama2.c checkpoints and compute the transformer that
 * llama2.c computes? A tiny model with random weights (shared and separate classifier, GQA) is
 * written by the test and its logits compared with a plain double-precision reference below. */
#define _POSIX_C_SOURCE 200809L /* fork, waitpid, alarm */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "model/model_internal.h"
#include "model/pool.h"
#include "sprint/model.h"
#include "tiny_model.h"

/* Straightforward forward pass in double, written from llama2.c's run.c: W (out, in). */
static void mat(double *out, const double *x, const float *w, int in, int outn) {
    for (int i = 0; i < outn; i++) {
        double a = 0;
        for (int j = 0; j < in; j++) a += (double)w[(size_t)i * in + j] * x[j];
        out[i] = a;
    }
}

static void rms(double *o, const double *x, const float *g, int n) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / n + 1e-5);
    for (int i = 0; i < n; i++) o[i] = g[i] * (x[i] * r);
}

/* logits (n, vocab) of tokens[0..n) */
static void ref_forward(const tiny_spec *s, const float *w, const int *tok, int n, double *logits) {
    int D = s->dim, F = s->hidden, L = s->layers, H = s->heads, KV = s->kv_heads, V = s->vocab;
    int hd = D / H, kvd = KV * hd, grp = H / KV;
    const float *emb = w, *rms_att = emb + (size_t)V * D, *wq = rms_att + (size_t)L * D;
    const float *wk = wq + (size_t)L * D * D, *wv = wk + (size_t)L * D * kvd, *wo = wv + (size_t)L * D * kvd;
    const float *rms_ffn = wo + (size_t)L * D * D, *w1 = rms_ffn + (size_t)L * D, *w2 = w1 + (size_t)L * D * F;
    const float *w3 = w2 + (size_t)L * D * F, *rms_fin = w3 + (size_t)L * D * F;
    const float *wcls = s->separate_classifier ? rms_fin + D + 2 * (size_t)s->seq_len * (hd / 2) : emb;
    double *x = calloc((size_t)n * D, sizeof *x), *xb = malloc(sizeof(double) * D), *o = malloc(sizeof(double) * D);
    double *q = malloc(sizeof(double) * n * D), *k = malloc(sizeof(double) * n * kvd), *v = malloc(sizeof(double) * n * kvd);
    double *att = malloc(sizeof(double) * n * D), *h1 = malloc(sizeof(double) * F), *h3 = malloc(sizeof(double) * F);
    double *sc = malloc(sizeof(double) * n), *tmp = malloc(sizeof(double) * D);
    for (int t = 0; t < n; t++)
        for (int i = 0; i < D; i++) x[t * D + i] = emb[(size_t)tok[t] * D + i];
    for (int l = 0; l < L; l++) {
        for (int t = 0; t < n; t++) {
            rms(xb, x + t * D, rms_att + (size_t)l * D, D);
            mat(q + t * D, xb, wq + (size_t)l * D * D, D, D);
            mat(k + t * kvd, xb, wk + (size_t)l * D * kvd, D, kvd);
            mat(v + t * kvd, xb, wv + (size_t)l * D * kvd, D, kvd);
            for (int i = 0; i < D; i += 2) { /* RoPE */
                int j = i % hd;
                double ang = t * pow(10000.0, -(double)j / hd), c = cos(ang), sn = sin(ang);
                double a = q[t * D + i], b = q[t * D + i + 1];
                q[t * D + i] = a * c - b * sn;
                q[t * D + i + 1] = a * sn + b * c;
                if (i < kvd) {
                    a = k[t * kvd + i];
                    b = k[t * kvd + i + 1];
                    k[t * kvd + i] = a * c - b * sn;
                    k[t * kvd + i + 1] = a * sn + b * c;
                }
            }
        }
        for (int t = 0; t < n; t++)
            for (int h = 0; h < H; h++) {
                int kh = h / grp;
                double mx = -1e300, sum = 0;
                for (int j = 0; j <= t; j++) {
                    double d = 0;
                    for (int c = 0; c < hd; c++) d += q[t * D + h * hd + c] * k[j * kvd + kh * hd + c];
                    sc[j] = d / sqrt((double)hd);
                    if (sc[j] > mx) mx = sc[j];
                }
                for (int j = 0; j <= t; j++) sum += exp(sc[j] - mx);
                for (int c = 0; c < hd; c++) {
                    double a = 0;
                    for (int j = 0; j <= t; j++) a += exp(sc[j] - mx) / sum * v[j * kvd + kh * hd + c];
                    att[t * D + h * hd + c] = a;
                }
            }
        for (int t = 0; t < n; t++) {
            mat(o, att + t * D, wo + (size_t)l * D * D, D, D);
            for (int i = 0; i < D; i++) x[t * D + i] += o[i];
            rms(xb, x + t * D, rms_ffn + (size_t)l * D, D);
            mat(h1, xb, w1 + (size_t)l * D * F, D, F);
            mat(h3, xb, w3 + (size_t)l * D * F, D, F);
            for (int i = 0; i < F; i++) h1[i] = h1[i] / (1 + exp(-h1[i])) * h3[i];
            mat(tmp, h1, w2 + (size_t)l * F * D, F, D);
            for (int i = 0; i < D; i++) x[t * D + i] += tmp[i];
        }
    }
    for (int t = 0; t < n; t++) {
        rms(xb, x + t * D, rms_fin, D);
        mat(logits + (size_t)t * V, xb, wcls, D, V);
    }
    free(x), free(xb), free(o), free(q), free(k), free(v), free(att), free(h1), free(h3), free(sc), free(tmp);
}

/* Loads the tiny model and checks its logits against the reference for every prefix length
 * that matters (1, a middle one, the full context), with both attention operators. */
static void check_model(tiny_spec s) {
    float *w = tiny_weights(&s);
    const char *path = tiny_write(&s, w, 0);
    sp_model *m = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_model_load(path, &m, &err), SP_OK, "%s", err.msg);
    const sp_model_info *info = sp_model_get_info(m);
    cr_assert_eq(info->dim, s.dim);
    cr_assert_eq(info->vocab_size, s.vocab);
    cr_assert_eq(info->n_kv_heads, s.kv_heads);
    cr_assert_eq(info->shared_classifier, !s.separate_classifier);
    cr_assert_eq(info->head_dim, s.dim / s.heads);
    int n = s.seq_len, tok[64];
    for (int t = 0; t < n; t++) tok[t] = (int)(sp_hash64(s.seed * 131 + (uint64_t)t) % (uint64_t)s.vocab);
    double *ref = malloc(sizeof(double) * (size_t)n * s.vocab);
    float *got = malloc(sizeof(float) * (size_t)n * s.vocab);
    ref_forward(&s, w, tok, n, ref);
    sp_attn_op *ops[2] = {sp_attn_dense_create(s.layers, s.heads), sp_attn_dense_fast_create(s.layers, s.heads)};
    int lens[3] = {1, n / 2 + 1, n};
    for (int oi = 0; oi < 2; oi++)
        for (int li = 0; li < 3; li++) {
            int len = lens[li];
            cr_assert_eq(sp_model_forward(m, tok, len, ops[oi], 0, 2, got, &err), SP_OK, "%s", err.msg);
            double maxd = 0, maxr = 0;
            for (int i = 0; i < len * s.vocab; i++) {
                /* causal: the logits of a prefix are the first rows of the full run */
                double d = fabs((double)got[i] - ref[i]);
                if (d > maxd) maxd = d;
                if (fabs(ref[i]) > maxr) maxr = fabs(ref[i]);
            }
            cr_assert(maxd < 2e-4 * (1 + maxr), "%s op, %d tokens: max |logit - reference| = %g (max |ref| %g)",
                      oi ? "fast" : "reference", len, maxd, maxr);
        }
    sp_attn_op_free(ops[0]);
    sp_attn_op_free(ops[1]);
    sp_model_free(m);
    free(ref);
    free(got);
    free(w);
}

Test(forward, tiny_gqa_shared_classifier) {
    check_model((tiny_spec){.dim = 24, .hidden = 40, .layers = 2, .heads = 6, .kv_heads = 2, .vocab = 37,
                            .seq_len = 19, .separate_classifier = 0, .seed = 1});
}

Test(forward, tiny_gqa_separate_classifier) {
    check_model((tiny_spec){.dim = 16, .hidden = 28, .layers = 3, .heads = 4, .kv_heads = 2, .vocab = 29,
                            .seq_len = 23, .separate_classifier = 1, .seed = 2});
}

Test(forward, tiny_multi_head_no_gqa) {
    check_model((tiny_spec){.dim = 32, .hidden = 48, .layers = 1, .heads = 4, .kv_heads = 4, .vocab = 50,
                            .seq_len = 16, .separate_classifier = 1, .seed = 3});
}

/* The same logits, bit for bit, whatever the number of threads over heads. */
Test(forward, thread_count_independent) {
    tiny_spec s = {.dim = 32, .hidden = 40, .layers = 2, .heads = 8, .kv_heads = 2, .vocab = 41, .seq_len = 40,
                   .separate_classifier = 0, .seed = 4};
    sp_model *m = tiny_load(&s);
    cr_assert_not_null(m);
    int tok[40];
    for (int t = 0; t < 40; t++) tok[t] = t % s.vocab;
    size_t nl = (size_t)40 * s.vocab;
    float *a = malloc(nl * sizeof *a), *b = malloc(nl * sizeof *b);
    for (int fast = 0; fast < 2; fast++) {
        sp_attn_op *op = fast ? sp_attn_dense_fast_create(2, 8) : sp_attn_dense_create(2, 8);
        cr_assert_eq(sp_model_forward(m, tok, 40, op, 0, 1, a, NULL), SP_OK);
        int th[3] = {2, 3, 8};
        for (int i = 0; i < 3; i++) {
            cr_assert_eq(sp_model_forward(m, tok, 40, op, 0, th[i], b, NULL), SP_OK);
            cr_assert_eq(memcmp(a, b, nl * sizeof *a), 0, "%s op: logits differ between 1 and %d threads",
                         fast ? "fast" : "reference", th[i]);
        }
        /* statistics: 4 calls x 2 layers x (40 * 41 / 2) pairs per head */
        sp_attn_stats tot;
        sp_attn_stats_total(op, &tot);
        cr_assert_eq(tot.pairs_visible, 4.0 * 2 * 8 * (40 * 41 / 2));
        sp_attn_op_free(op);
    }
    free(a);
    free(b);
    sp_model_free(m);
}

Test(forward, refuses_bad_arguments) {
    tiny_spec s = {.dim = 8, .hidden = 8, .layers = 1, .heads = 2, .kv_heads = 1, .vocab = 10, .seq_len = 6, .seed = 5};
    sp_model *m = tiny_load(&s);
    cr_assert_not_null(m);
    int tok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float logits[8 * 10];
    sp_error err = {0};
    sp_attn_op *op = sp_attn_dense_create(1, 2), *wrong = sp_attn_dense_create(2, 2);
    cr_assert_eq(sp_model_forward(m, tok, 7, op, 0, 1, logits, &err), SP_ERR_ARG, "longer than seq_len");
    cr_assert_eq(sp_model_forward(m, tok, 0, op, 0, 1, logits, &err), SP_ERR_ARG, "empty sequence");
    tok[2] = 10;
    cr_assert_eq(sp_model_forward(m, tok, 4, op, 0, 1, logits, &err), SP_ERR_ARG, "token outside the vocabulary");
    cr_assert(strstr(err.msg, "vocabulary"), "%s", err.msg);
    tok[2] = 3;
    cr_assert_eq(sp_model_forward(m, tok, 4, wrong, 0, 1, logits, &err), SP_ERR_ARG, "op of another shape");
    sp_attn_op_free(op);
    sp_attn_op_free(wrong);
    sp_model_free(m);
}

Test(shared_model, loads_stories260k) {
    TH_NEED_SHARED(p, "models/stories260K.bin");
    sp_model *m = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_model_load(p, &m, &err), SP_OK, "%s", err.msg);
    const sp_model_info *i = sp_model_get_info(m);
    cr_assert_eq(i->dim, 64);
    cr_assert_eq(i->hidden_dim, 172);
    cr_assert_eq(i->n_layers, 5);
    cr_assert_eq(i->n_heads, 8);
    cr_assert_eq(i->n_kv_heads, 4);
    cr_assert_eq(i->vocab_size, 512);
    cr_assert_eq(i->seq_len, 512);
    cr_assert_eq(i->head_dim, 8);
    cr_assert_eq(i->shared_classifier, 1);
    /* BOS followed by " Once": the model must find " upon" (token 407) most likely */
    int tok[2] = {1, 403};
    float logits[2 * 512];
    sp_attn_op *op = sp_attn_dense_create(5, 8);
    cr_assert_eq(sp_model_forward(m, tok, 2, op, 0, 1, logits, &err), SP_OK, "%s", err.msg);
    int best = 0;
    for (int j = 1; j < 512; j++)
        if (logits[512 + j] > logits[512 + best]) best = j;
    cr_assert_eq(best, 407, "after ' Once' the argmax is %d, expected ' upon' (407)", best);
    sp_attn_op_free(op);
    sp_model_free(m);
}

/* Two threads running forward passes at the same time (each with its own op) get the same
 * logits as one alone: the shared worker pool serves one caller, the other runs its heads on
 * its own thread. */
typedef struct fwd_arg {
    const sp_model *m;
    const int *tok;
    int n;
    float *out;
    sp_status st;
} fwd_arg;

static void *fwd_thread(void *p) {
    fwd_arg *a = p;
    sp_attn_op *op = sp_attn_dense_fast_create(2, 8);
    for (int r = 0; r < 20 && a->st == SP_OK; r++) a->st = sp_model_forward(a->m, a->tok, a->n, op, r, 2, a->out, NULL);
    sp_attn_op_free(op);
    return NULL;
}

Test(forward, concurrent_callers) {
    tiny_spec s = {.dim = 32, .hidden = 40, .layers = 2, .heads = 8, .kv_heads = 4, .vocab = 23, .seq_len = 48,
                   .separate_classifier = 1, .seed = 6};
    sp_model *m = tiny_load(&s);
    cr_assert_not_null(m);
    int tok[48];
    for (int t = 0; t < 48; t++) tok[t] = (t * 7) % s.vocab;
    size_t nl = (size_t)48 * s.vocab;
    float *ref = malloc(nl * sizeof *ref), *o1 = malloc(nl * sizeof *o1), *o2 = malloc(nl * sizeof *o2);
    sp_attn_op *op = sp_attn_dense_fast_create(2, 8);
    cr_assert_eq(sp_model_forward(m, tok, 48, op, 0, 1, ref, NULL), SP_OK);
    fwd_arg a = {m, tok, 48, o1, SP_OK}, b = {m, tok, 48, o2, SP_OK};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, fwd_thread, &a);
    pthread_create(&tb, NULL, fwd_thread, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    cr_assert_eq(a.st, SP_OK);
    cr_assert_eq(b.st, SP_OK);
    cr_assert_eq(memcmp(ref, o1, nl * sizeof *ref), 0);
    cr_assert_eq(memcmp(ref, o2, nl * sizeof *ref), 0);
    sp_attn_op_free(op);
    sp_model_free(m);
    free(ref), free(o1), free(o2);
}

/* ---- the thread pool under load ----------------------------------------------------------
 * A lost wakeup hangs (the timeout turns that into a failure); a task run twice or never, or
 * a worker still in the previous job when the next is posted, shows in the per-task counts. */
static atomic_int pool_busy; /* tasks in progress */

static void count_task(void *ctx, int i) {
    atomic_int *count = ctx;
    atomic_fetch_add(&pool_busy, 1);
    for (volatile int k = 0; k < 3000 * (i % 3); k = k + 1) { /* uneven tasks: workers still busy when the caller runs out */
    }
    atomic_fetch_add(&count[i], 1);
    atomic_fetch_sub(&pool_busy, 1);
}

Test(pool, every_task_runs_once_under_load, .timeout = 60) {
    enum { MAXN = 67 };
    atomic_int count[MAXN];
    /* many small jobs; 2 and 4 threads alternate so the pool grows mid-run and some workers
     * sit out some jobs */
    for (int rep = 0; rep < 6000; rep++) {
        int n = 1 + (rep * 7) % MAXN, th = (rep / 50) % 2 ? 4 : 2;
        for (int i = 0; i < n; i++) atomic_store(&count[i], 0);
        sp_pool_run(th, n, count_task, count);
        /* sp_pool_run has returned: every task must be done, and none may still be running */
        cr_assert_eq(atomic_load(&pool_busy), 0, "rep %d: a task still running after sp_pool_run returned", rep);
        for (int i = 0; i < n; i++)
            if (atomic_load(&count[i]) != 1)
                cr_assert_fail("rep %d (%d tasks, %d threads): task %d ran %d times", rep, n, th, i,
                               atomic_load(&count[i]));
    }
}

/* Many small forwards (at least 32 positions, so the pool is used) with 2 and 4 threads give
 * logits bit-identical to one thread. */
Test(pool, small_forwards_bit_identical, .timeout = 60) {
    tiny_spec s = {.dim = 16, .hidden = 24, .layers = 2, .heads = 4, .kv_heads = 2, .vocab = 19, .seq_len = 70,
                   .separate_classifier = 0, .seed = 8};
    sp_model *m = tiny_load(&s);
    cr_assert_not_null(m);
    int tok[70];
    for (int t = 0; t < 70; t++) tok[t] = (int)(sp_hash64((uint64_t)t * 3 + 1) % (uint64_t)s.vocab);
    size_t nl = (size_t)70 * s.vocab;
    float *ref = malloc(nl * sizeof *ref), *got = malloc(nl * sizeof *got);
    sp_attn_op *op = sp_attn_dense_fast_create(2, 4);
    for (int n = 32; n <= 70; n += 2) { /* 1, 2 and 3 row chunks */
        cr_assert_eq(sp_model_forward(m, tok, n, op, 0, 1, ref, NULL), SP_OK);
        for (int rep = 0; rep < 6; rep++) {
            int th = rep % 2 ? 4 : 2;
            memset(got, 0xff, nl * sizeof *got);
            cr_assert_eq(sp_model_forward(m, tok, n, op, rep, th, got, NULL), SP_OK);
            cr_assert_eq(memcmp(ref, got, (size_t)n * s.vocab * sizeof *ref), 0, "%d tokens, %d threads: logits differ",
                         n, th);
        }
    }
    sp_attn_op_free(op);
    sp_model_free(m);
    free(ref), free(got);
}

/* A child process forked after the pool has workers gets an empty pool, not one that waits
 * for workers that do not exist in it (each attempt is bounded by alarm()). */
Test(pool, usable_after_fork, .timeout = 60) {
    atomic_int count[16];
    for (int i = 0; i < 16; i++) atomic_store(&count[i], 0);
    sp_pool_run(4, 16, count_task, count); /* the parent's pool now has workers */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(20);
        for (int i = 0; i < 16; i++) atomic_store(&count[i], 0);
        for (int rep = 0; rep < 50; rep++) sp_pool_run(rep % 2 ? 4 : 2, 16, count_task, count);
        for (int i = 0; i < 16; i++)
            if (atomic_load(&count[i]) != 50) _exit(3);
        _exit(0);
    }
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %s %d", WIFEXITED(st) ? "exit" : "signal",
              WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

/* The linear layers' input norms (arch.c) take the rows' sums of squares four rows at a time:
 * every row must still be the plain per-row loop's bits (llama2.c RMSNorm with gain, BitNet's
 * x / (||x|| sqrt(n))), for any row count around the groups of 4 and 32, in place too. */
static float vals(uint64_t i) { /* spread over binades: the double sums round at many places */
    double u = sp_rng_uniform(sp_rng_key(77, 1, i, 0, 0)), e = floor(sp_rng_uniform(sp_rng_key(77, 2, i, 0, 0)) * 30) - 15;
    return (float)((u - 0.5) * ldexp(1.0, (int)e));
}
Test(norms, rows_equal_the_plain_loop) {
    const int rows_list[] = {1, 3, 4, 5, 31, 32, 33, 70}, dims[] = {1, 7, 64, 172, 256};
    for (int ri = 0; ri < 8; ri++)
        for (int di = 0; di < 5; di++) {
            int rows = rows_list[ri], n = dims[di];
            size_t sz = (size_t)rows * n;
            float *x = malloc(sz * sizeof *x), *w = malloc((size_t)n * sizeof *w), *got = malloc(sz * sizeof *got),
                  *want = malloc(sz * sizeof *want), *inplace = malloc(sz * sizeof *inplace);
            for (size_t i = 0; i < sz; i++) x[i] = vals(i + 1000 * (uint64_t)(ri * 5 + di));
            if (rows > 2) memset(x + n, 0, (size_t)n * sizeof *x); /* a zero row (BitNet's floor) */
            for (int i = 0; i < n; i++) w[i] = vals(999999 - (uint64_t)i);
            for (int arch = 0; arch < 2; arch++) {
                for (int t = 0; t < rows; t++) { /* the plain loops arch.c had */
                    const float *xr = x + (size_t)t * n;
                    double ss = 0.0;
                    for (int i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
                    if (arch == 0) {
                        float r = (float)(1.0 / sqrt(ss / n + 1e-5));
                        for (int i = 0; i < n; i++) want[(size_t)t * n + i] = w[i] * (r * xr[i]);
                    } else {
                        double nrm = sqrt(ss);
                        float r = (float)(1.0 / ((nrm > 1e-12 ? nrm : 1e-12) * sqrt((double)n)));
                        for (int i = 0; i < n; i++) want[(size_t)t * n + i] = r * xr[i];
                    }
                }
                if (arch == 0) { /* the sums themselves, bit for bit (the float outputs hide most orders) */
                    double *ss = malloc((size_t)rows * sizeof *ss);
                    sp_sumsq_rows(x, rows, n, ss);
                    for (int t = 0; t < rows; t++) {
                        double e = 0.0;
                        for (int i = 0; i < n; i++) e += (double)x[(size_t)t * n + i] * x[(size_t)t * n + i];
                        cr_assert(memcmp(&e, &ss[t], sizeof e) == 0, "rows %d n %d row %d: %.17g vs %.17g", rows, n, t, e, ss[t]);
                    }
                    free(ss);
                }
                memcpy(inplace, x, sz * sizeof *x);
                if (arch == 0) {
                    sp_rmsnorm(got, x, w, rows, n);
                    sp_rmsnorm(inplace, inplace, w, rows, n);
                } else {
                    sp_model m;
                    memset(&m, 0, sizeof m);
                    m.info.arch = SP_MODEL_ARCH_BITNET;
                    m.info.dim = n;
                    cr_assert_eq(sp_model_linear_input(&m, SP_LIN_QKV, 0, x, got, rows), got);
                    sp_model_linear_input(&m, SP_LIN_QKV, 0, inplace, inplace, rows);
                }
                cr_assert(memcmp(got, want, sz * sizeof *got) == 0, "arch %d rows %d n %d", arch, rows, n);
                cr_assert(memcmp(inplace, want, sz * sizeof *got) == 0, "in place: arch %d rows %d n %d", arch, rows, n);
            }
            free(x), free(w), free(got), free(want), free(inplace);
        }
}
