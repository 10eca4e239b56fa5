/* test_fn_fast.c: does the fast implementation of mode sprint (src/functional/sprint_fast.c,
 * issue 9) keep exactly the keys the reference (sprint_op.c) keeps, count the same statistics,
 * and write outputs within fp32 rounding of it: on random, clustered and real heads (stories260K,
 * bitnet-3M), causal / bidirectional / padded, every policy it supports, with and without the
 * dense statistics? ctest also runs this file with SPRINT_CPU=portable and avx2 (every dispatch
 * level of the screen, the selection and the scores). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention/flash.h"
#include "functional/fast_kernels.h"
#include "functional/fn_internal.h"
#include "helpers.h"
#include "sprint/functional.h"
#include "sprint/model.h"

/* Outputs: |fast - reference| <= OUT_TOL (1 + max |v|): fp32 softmax and weighted sum (relative
 * rounding ~1e-6 per term over at most a few thousand kept keys) against the double reference. */
#define OUT_TOL 2e-5

static uint64_t rng_state;
static double urand(void) {
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}
static double nrand(void) {
    double u = urand(), v = urand();
    return sqrt(-2 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

/* Records of one op run: every query's kept-in-memory and kept lists, concatenated. */
typedef struct rec_log {
    int nq;
    int *n_mem, *n_kept, *fp, *fk, *has_spread;
    int32_t **mem, **kept;
    double *ml, *spread;
} rec_log;

static rec_log *log_new(int nq) {
    rec_log *l = calloc(1, sizeof *l);
    l->nq = nq;
    l->n_mem = calloc((size_t)nq, sizeof(int)), l->n_kept = calloc((size_t)nq, sizeof(int));
    l->fp = calloc((size_t)nq, sizeof(int)), l->fk = calloc((size_t)nq, sizeof(int));
    l->has_spread = calloc((size_t)nq, sizeof(int));
    l->mem = calloc((size_t)nq, sizeof(int32_t *)), l->kept = calloc((size_t)nq, sizeof(int32_t *));
    l->ml = calloc((size_t)nq, sizeof(double)), l->spread = calloc((size_t)nq, sizeof(double));
    for (int i = 0; i < nq; i++) l->n_mem[i] = l->n_kept[i] = -1;
    return l;
}

static void log_free(rec_log *l) {
    for (int i = 0; i < l->nq; i++) free(l->mem[i]), free(l->kept[i]);
    free(l->n_mem), free(l->n_kept), free(l->fp), free(l->fk), free(l->has_spread), free(l->mem), free(l->kept);
    free(l->ml), free(l->spread), free(l);
}

static void observer(void *user, const sp_query_record *r) {
    rec_log *l = user;
    cr_assert(r->qi >= 0 && r->qi < l->nq);
    int i = r->qi;
    l->n_mem[i] = r->n_mem_kept, l->n_kept[i] = r->n_kept, l->fp[i] = r->n_false_prunes, l->fk[i] = r->n_false_keeps;
    l->mem[i] = malloc(sizeof(int32_t) * (size_t)(r->n_mem_kept + 1));
    l->kept[i] = malloc(sizeof(int32_t) * (size_t)(r->n_kept + 1));
    memcpy(l->mem[i], r->mem_kept, sizeof(int32_t) * (size_t)r->n_mem_kept);
    memcpy(l->kept[i], r->kept, sizeof(int32_t) * (size_t)r->n_kept);
    l->ml[i] = r->mass_lost, l->has_spread[i] = r->has_score_spread, l->spread[i] = r->score_spread;
}

typedef struct head_data {
    int nq, nk, d, causal, q_offset;
    float *q, *k, *v;
    unsigned char *kv, *qv; /* NULL = all valid */
    float scale;
} head_data;

static void head_free(head_data *hd) { free(hd->q), free(hd->k), free(hd->v), free(hd->kv), free(hd->qv); }

/* Random Gaussian head (std sigma) or a clustered one: runs of 32 tokens share one of 16
 * centroids (plus 0.3 noise), the structure that makes attention sparse. */
static head_data make_head(int nq, int nk, int d, int causal, int padded, int clustered, uint64_t seed) {
    head_data hd = {.nq = nq, .nk = nk, .d = d, .causal = causal, .q_offset = causal ? nk - nq : 0};
    rng_state = seed;
    hd.q = malloc(sizeof(float) * (size_t)nq * d), hd.k = malloc(sizeof(float) * (size_t)nk * d);
    hd.v = malloc(sizeof(float) * (size_t)nk * d);
    enum { CENT_D = 256 };
    cr_assert(d >= 1 && d <= CENT_D, "make_head: d = %d outside 1..%d", d, CENT_D);
    float cent[16][CENT_D];
    for (int c = 0; c < 16; c++)
        for (int e = 0; e < d; e++) cent[c][e] = (float)(1.5 * nrand());
    for (int j = 0; j < nk; j++)
        for (int e = 0; e < d; e++) {
            hd.k[(size_t)j * d + e] = clustered ? cent[(j / 32) % 16][e] + (float)(0.3 * nrand()) : (float)(1.2 * nrand());
            hd.v[(size_t)j * d + e] = (float)nrand();
        }
    for (int i = 0; i < nq; i++) {
        int pos = hd.q_offset + i;
        for (int e = 0; e < d; e++)
            hd.q[(size_t)i * d + e] = clustered ? cent[(pos / 32) % 16][e] + (float)(0.3 * nrand()) : (float)(1.2 * nrand());
    }
    if (padded) {
        hd.kv = malloc((size_t)nk), hd.qv = malloc((size_t)nq);
        for (int j = 0; j < nk; j++) hd.kv[j] = (j % 7 != 3) && j != 0;
        for (int i = 0; i < nq; i++) hd.qv[i] = i % 11 != 5;
    }
    hd.scale = (float)(1.0 / sqrt((double)d));
    return hd;
}

static sp_attn_head as_head(const head_data *hd, float *out) {
    sp_attn_head h = {.layer = 0, .head = 0, .kv_head = 0, .seq_id = 7, .n_q = hd->nq, .n_k = hd->nk, .d = hd->d,
                      .q = hd->q, .k = hd->k, .v = hd->v, .out = out, .ldq = hd->d, .ldk = hd->d, .ldv = hd->d,
                      .ldo = hd->d, .causal = hd->causal, .q_offset = hd->q_offset, .key_valid = hd->kv,
                      .query_valid = hd->qv, .scale = hd->scale};
    return h;
}

static sp_attn_op *make_op(const char *impl, const char *const *settings) {
    sp_config cfg;
    sp_config_defaults(&cfg);
    sp_error err = {0};
    char b[128];
    snprintf(b, sizeof b, "sprint.impl=%s", impl);
    cr_assert_eq(sp_config_set(&cfg, b, "test", &err), SP_OK, "%s", err.msg);
    for (int t = 0; settings && settings[t]; t++)
        cr_assert_eq(sp_config_set(&cfg, settings[t], "test", &err), SP_OK, "%s: %s", settings[t], err.msg);
    sp_op_request req = {.mode = "sprint", .cfg = &cfg};
    sp_attn_op *op = NULL;
    cr_assert_eq(sp_attn_op_create(&req, 1, 1, &op, &err), SP_OK, "%s", err.msg);
    return op;
}

static double stat_field(const sp_attn_stats *s, int f) { return ((const double *)s)[f]; }
static const char *const STAT_NAMES[] = {"queries", "pairs_visible", "pairs_kept", "pairs_mem_kept",
                                         "exact_pass", "false_prunes", "false_keeps", "mass_lost",
                                         "reuse_pairs", "new_fetch", "prev_kept", "later_visible"};

/* Runs hd through the reference and the fast implementation with the settings; asserts the
 * same kept-in-memory and kept lists for every query, the same statistics (dense ones only when
 * dense_stats), outputs within OUT_TOL; returns the kept fraction. */
static double compare(const head_data *hd, const char *const *settings, int dense_stats, const char *what) {
    size_t on = (size_t)hd->nq * (size_t)hd->d;
    float *o_ref = calloc(on, sizeof(float)), *o_fast = calloc(on, sizeof(float));
    sp_attn_op *ref = make_op("reference", settings), *fast = make_op("fast", settings);
    rec_log *lr = log_new(hd->nq), *lf = log_new(hd->nq);
    ref->observer = observer, ref->observer_user = lr;
    fast->observer = observer, fast->observer_user = lf;
    sp_error err = {0};
    sp_attn_head h = as_head(hd, o_ref);
    cr_assert_eq(ref->run(ref, &h, &err), SP_OK, "%s: %s", what, err.msg);
    h.out = o_fast;
    cr_assert_eq(fast->run(fast, &h, &err), SP_OK, "%s: %s", what, err.msg);
    long differ = 0;
    for (int i = 0; i < hd->nq; i++) {
        cr_assert_eq(lf->n_mem[i], lr->n_mem[i], "%s: query %d kept in memory %d (fast) vs %d (reference)", what, i,
                     lf->n_mem[i], lr->n_mem[i]);
        if (lr->n_mem[i] < 0) continue; /* padding query: no record from either */
        cr_assert_eq(memcmp(lf->mem[i], lr->mem[i], sizeof(int32_t) * (size_t)lr->n_mem[i]), 0,
                     "%s: query %d in-memory survivors differ", what, i);
        differ += lf->n_kept[i] != lr->n_kept[i] ||
                  memcmp(lf->kept[i], lr->kept[i], sizeof(int32_t) * (size_t)lr->n_kept[i]) != 0;
        if (dense_stats) {
            cr_assert_eq(lf->fp[i], lr->fp[i], "%s: query %d false prunes", what, i);
            cr_assert_eq(lf->fk[i], lr->fk[i], "%s: query %d false keeps", what, i);
            cr_assert_eq(lf->has_spread[i], lr->has_spread[i]);
            /* the same terms summed in another order (vector lanes): within 1e-9 relative */
            cr_assert(fabs(lf->spread[i] - lr->spread[i]) <= 1e-9 * fabs(lr->spread[i]) + 1e-12,
                      "%s: query %d spread %.17g vs %.17g", what, i, lf->spread[i], lr->spread[i]);
            cr_assert(fabs(lf->ml[i] - lr->ml[i]) <= 1e-12, "%s: query %d mass lost %.17g vs %.17g", what, i, lf->ml[i],
                      lr->ml[i]);
        } else {
            cr_assert_eq(lf->has_spread[i], 0, "%s: spread without sprint.exact_stats", what);
        }
    }
    /* the decisions are exact (fp32 outside its rounding bound, double inside): no key differs */
    cr_assert_eq(differ, 0, "%s: kept lists differ on %ld queries", what, differ);
    const sp_attn_stats *sr = &ref->stats[0], *sf = &fast->stats[0];
    for (int f = 0; f < 12; f++) {
        int dense_field = f == 4 || f == 5 || f == 6;
        if (!dense_stats && dense_field) {
            cr_assert_eq(stat_field(sf, f), 0, "%s: %s counted without sprint.exact_stats", what, STAT_NAMES[f]);
            continue;
        }
        if (f == 7) { /* mass_lost: the same terms, the denominator summed in another order */
            cr_assert(fabs(stat_field(sf, f) - stat_field(sr, f)) <= 1e-12 * (1 + fabs(stat_field(sr, f))),
                      "%s: mass_lost fast %.17g reference %.17g", what, stat_field(sf, f), stat_field(sr, f));
            continue;
        }
        cr_assert_eq(stat_field(sf, f), stat_field(sr, f), "%s: stat %s fast %.17g reference %.17g", what,
                     STAT_NAMES[f], stat_field(sf, f), stat_field(sr, f));
    }
    double vmax = 0, err_max = 0;
    for (size_t t = 0; t < (size_t)hd->nk * hd->d; t++) vmax = fmax(vmax, fabs(hd->v[t]));
    for (size_t t = 0; t < on; t++) err_max = th_maxerr(err_max, fabs((double)o_fast[t] - o_ref[t]));
    cr_assert(err_max <= OUT_TOL * (1 + vmax), "%s: outputs differ by %g (max |v| %g, tolerance %g)", what, err_max,
              vmax, OUT_TOL * (1 + vmax));
    double kept = sr->pairs_visible > 0 ? sr->pairs_kept / sr->pairs_visible : 0;
    cr_log_info("%s: kept %.4f, mem-kept %.4f, max |out diff| %.2e, kept lists differing 0", what, kept,
                sr->pairs_visible > 0 ? sr->pairs_mem_kept / sr->pairs_visible : 0, err_max);
    log_free(lr), log_free(lf);
    sp_attn_op_free(ref), sp_attn_op_free(fast);
    free(o_ref), free(o_fast);
    return kept;
}

/* Every supported policy and margin, with and without the dense statistics. */
static void compare_all(const head_data *hd, const char *name, double thr) {
    char t[64], what[256];
    snprintf(t, sizeof t, "policy.threshold=%g", thr);
    const char *const cases[][6] = {
        {"policy.delta=3", NULL},
        {"policy.delta=5", "policy.onchip_source=prev", NULL},
        {"policy.delta=2", "policy.onchip_source=anchors", "sprint.margin_mode=worst", NULL},
        {"policy.kind=oracle", "policy.delta=4", NULL},
        {"policy.kind=layer", t, NULL},
        {"policy.kind=head", t, "sprint.margin_mode=none", NULL},
        {"policy.delta=3", "reram.dac_bits=6", "quant.msb_bits=3", NULL},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int dense = 0; dense < 2; dense++) {
            const char *s[10];
            int n = 0;
            for (int u = 0; cases[c][u]; u++) s[n++] = cases[c][u];
            s[n++] = dense ? "sprint.exact_stats=1" : "sprint.exact_stats=0";
            s[n++] = dense ? "sprint.mass_lost=1" : "sprint.mass_lost=0";
            s[n] = NULL;
            snprintf(what, sizeof what, "%s [%s%s%s] %s", name, cases[c][0], cases[c][1] ? " " : "",
                     cases[c][1] ? cases[c][1] : "", dense ? "dense stats" : "no dense stats");
            compare(hd, s, dense, what);
        }
}

Test(fn_fast, random_and_clustered_heads_same_masks_as_reference) {
    cr_log_info("cpu level %s", sp_cpu_level_name(sp_cpu_detect()));
    const int dims[] = {8, 20, 64, 128};
    for (int di = 0; di < 4; di++)
        for (int causal = 0; causal < 2; causal++)
            for (int padded = 0; padded < 2; padded++)
                for (int cl = 0; cl < 2; cl++) {
                    int d = dims[di], nk = d >= 64 ? 300 : 200, nq = causal ? 150 : 120;
                    head_data hd = make_head(nq, nk, d, causal, padded, cl, 1000 + 97 * di + 13 * causal + 5 * padded + cl);
                    char name[96];
                    snprintf(name, sizeof name, "d=%d %s%s%s", d, causal ? "causal" : "bidirectional",
                             padded ? " padded" : "", cl ? " clustered" : " random");
                    compare_all(&hd, name, 0.5);
                    head_free(&hd);
                }
}

/* A threshold of -inf keeps everything: the fast outputs are dense attention within fp32. */
Test(fn_fast, minus_infinity_is_dense_within_fp32) {
    head_data hd = make_head(90, 140, 64, 1, 1, 0, 77);
    float *o_d = calloc((size_t)90 * 64, sizeof(float)), *o_f = calloc((size_t)90 * 64, sizeof(float));
    sp_attn_op *dense = sp_attn_dense_create(1, 1);
    const char *s[] = {"policy.kind=head", "policy.threshold=-1e30", NULL};
    sp_attn_op *fast = make_op("fast", s);
    sp_error err = {0};
    sp_attn_head h = as_head(&hd, o_d);
    cr_assert_eq(dense->run(dense, &h, &err), SP_OK);
    h.out = o_f;
    cr_assert_eq(fast->run(fast, &h, &err), SP_OK, "%s", err.msg);
    double e = 0;
    for (int t = 0; t < 90 * 64; t++) e = th_maxerr(e, fabs((double)o_d[t] - o_f[t]));
    cr_assert(e < 1e-5, "fast at -inf differs from dense-ref by %g", e);
    cr_assert_eq(fast->stats[0].pairs_kept, dense->stats[0].pairs_visible);
    sp_attn_op_free(dense), sp_attn_op_free(fast), free(o_d), free(o_f);
    head_free(&hd);
}

/* Where the fast implementation does not apply: auto falls back, fast is a config error. */
Test(fn_fast, preconditions) {
    const char *const no[][3] = {{"sprint.arith=hw", NULL},       {"quant.granularity=row", NULL},
                                 {"reram.d2d_sigma=0.05", NULL},  {"reram.c2c_sigma=0.01", NULL},
                                 {"policy.kind=topk", NULL},      {"quant.msb_bits=5", NULL}};
    for (size_t c = 0; c < sizeof no / sizeof no[0]; c++) {
        sp_config cfg;
        sp_config_defaults(&cfg);
        sp_error err = {0};
        cr_assert_eq(sp_config_set(&cfg, no[c][0], "t", &err), SP_OK);
        sp_fn_params p;
        cr_assert_eq(sp_fn_params_from_config(&cfg, SP_FN_SPRINT, &p, &err), SP_OK);
        cr_assert_not_null(sp_fn_fast_unsupported(&p), "%s should need the reference", no[c][0]);
        sp_attn_op *op = make_op("auto", no[c]); /* auto: the reference, no error */
        cr_assert(op->run != sp_fn_fast_run, "%s: auto chose the fast implementation", no[c][0]);
        sp_attn_op_free(op);
        cr_assert_eq(sp_config_set(&cfg, "sprint.impl=fast", "t", &err), SP_OK);
        sp_op_request req = {.mode = "sprint", .cfg = &cfg};
        sp_attn_op *bad = NULL;
        cr_assert_eq(sp_attn_op_create(&req, 1, 1, &bad, &err), SP_ERR_CONFIG, "%s with impl=fast", no[c][0]);
        cr_assert(strstr(err.msg, "sprint.impl = fast"), "message: %s", err.msg);
    }
    sp_attn_op *op = make_op("auto", NULL); /* the defaults: fast */
    cr_assert(op->run == sp_fn_fast_run);
    sp_attn_op_free(op);
    /* another mode with impl=fast: an error, not a silent reference */
    sp_config cfg;
    sp_config_defaults(&cfg);
    sp_error err = {0};
    cr_assert_eq(sp_config_set(&cfg, "sprint.impl=fast", "t", &err), SP_OK);
    sp_op_request req = {.mode = "pruning", .cfg = &cfg};
    sp_attn_op *bad = NULL;
    cr_assert_eq(sp_attn_op_create(&req, 1, 1, &bad, &err), SP_ERR_CONFIG);
}

/* The selection and score kernels at the detected level against the portable ones. */
Test(fn_fast, kernels_match_portable) {
    sp_cpu_level lv = sp_cpu_detect();
    rng_state = 5;
    enum { N = 1000 };
    int32_t *A = malloc(sizeof(int32_t) * N), *o1 = malloc(sizeof(int32_t) * (N + 16)),
            *o2 = malloc(sizeof(int32_t) * (N + 16));
    unsigned char *kv = malloc(N);
    for (int j = 0; j < N; j++) A[j] = (int32_t)(urand() * 2000) - 1000, kv[j] = urand() < 0.8;
    for (int n = 0; n <= N; n += n < 40 ? 1 : 97)
        for (int tau = -1100; tau <= 1100; tau += 275)
            for (int pad = 0; pad < 2; pad++) {
                uint16_t b1[N / 16 + 2], b2[N / 16 + 2];
                int c1 = sp_fk_select_portable(A, n, tau, pad ? kv : NULL, o1, b1);
                int c2 = sp_fk_select_for(lv)(A, n, tau, pad ? kv : NULL, o2, b2);
                cr_assert_eq(c1, c2, "select n=%d tau=%d: %d vs %d", n, tau, c1, c2);
                cr_assert_eq(memcmp(o1, o2, sizeof(int32_t) * (size_t)c1), 0);
                cr_assert_eq(memcmp(b1, b2, sizeof(uint16_t) * (size_t)((n + 15) / 16)), 0);
                for (int t = 0, c = 0; t < n; t++) {
                    int in = (b1[t / 16] >> (t % 16)) & 1;
                    cr_assert_eq(in, c < c1 && o1[c] == t);
                    c += in;
                }
            }
    /* threshold, max */
    float *sv = malloc(sizeof(float) * N), kscr1[N + 16], kscr2[N + 16];
    int32_t *idxs = malloc(sizeof(int32_t) * N), *k1 = malloc(sizeof(int32_t) * (N + 16)),
            *k2 = malloc(sizeof(int32_t) * (N + 16));
    for (int j = 0; j < N; j++) sv[j] = (float)nrand(), idxs[j] = 3 * j + 1;
    for (int n = 0; n <= N; n += n < 40 ? 1 : 97) {
        cr_assert_eq(sp_fk_max_portable(sv, n), sp_fk_max_for(lv)(sv, n), "max n=%d", n);
        for (int c = 0; c < 3; c++) {
            float lo = c == 0 ? 0.5f : c == 1 ? -0.2f : 3.5f, hi = c == 0 ? 0.5f : c == 1 ? 0.1f : 3.9f;
            int c1 = sp_fk_threshold_portable(sv, idxs, n, lo, hi, k1, kscr1);
            int c2 = sp_fk_threshold_for(lv)(sv, idxs, n, lo, hi, k2, kscr2);
            cr_assert_eq(c1, c2, "threshold n=%d case %d: %d vs %d", n, c, c1, c2);
            if (c1 > 0) {
                cr_assert_eq(memcmp(k1, k2, sizeof(int32_t) * (size_t)c1), 0);
                cr_assert_eq(memcmp(kscr1, kscr2, sizeof(float) * (size_t)c1), 0);
            }
        }
    }
    free(sv), free(idxs), free(k1), free(k2);
    const int dims[] = {1, 8, 20, 64, 100, 128};
    for (int di = 0; di < 6; di++) {
        int d = dims[di];
        float *k = malloc(sizeof(float) * (size_t)N * d), q[128], r1[N], r2[N];
        int32_t idx[N];
        for (int t = 0; t < N * d; t++) k[t] = (float)nrand();
        for (int c = 0; c < d; c++) q[c] = (float)nrand();
        for (int t = 0; t < N; t++) idx[t] = (int32_t)((t * 7919) % N);
        for (int n = 0; n <= 37; n += 1) {
            sp_fk_dots_portable(q, k, d, d, idx, n, r1);
            sp_fk_dots_for(lv)(q, k, d, d, idx, n, r2);
            for (int t = 0; t < n; t++) {
                double ex = 0, ab = 0;
                for (int c = 0; c < d; c++)
                    ex += (double)q[c] * k[(size_t)idx[t] * d + c], ab += fabs((double)q[c] * k[(size_t)idx[t] * d + c]);
                double bound = 1.01 * d * ldexp(1.0, -24) / (1 - d * ldexp(1.0, -24)) * ab + 1e-30;
                cr_assert(fabs(r1[t] - ex) <= bound && fabs(r2[t] - ex) <= bound, "dots d=%d t=%d: %g %g vs %g", d, t,
                          r1[t], r2[t], ex);
            }
        }
        /* query by query (d < FX_UNION_D): softmax and weighted sum, both levels within fp32
         * rounding of the double formula */
        float *vv = malloc(sizeof(float) * (size_t)N * d), s16[N + 16], pb[N + 16], w1[128], w2[128];
        for (int t = 0; t < N * d; t++) vv[t] = (float)nrand();
        for (int t = 0; t < N; t++) s16[t] = (float)(3 * nrand());
        for (int n = 1; n <= 300; n += 37) {
            sp_fk_softmax_wsum_portable(s16, 0.7f, idx, n, vv, d, d, pb, w1);
            sp_fk_softmax_wsum_for(lv)(s16, 0.7f, idx, n, vv, d, d, pb, w2);
            double mx = -1e300, z = 0;
            for (int t = 0; t < n; t++) mx = fmax(mx, 0.7 * s16[t]);
            for (int t = 0; t < n; t++) z += exp2(0.7 * s16[t] - mx);
            for (int c = 0; c < d; c++) {
                double ref = 0;
                for (int t = 0; t < n; t++) ref += exp2(0.7 * s16[t] - mx) / z * vv[(size_t)idx[t] * d + c];
                cr_assert(fabs(w1[c] - ref) < 2e-5 && fabs(w2[c] - ref) < 2e-5, "wsum d=%d n=%d c=%d: %g %g vs %g", d,
                          n, c, w1[c], w2[c], ref);
            }
        }
        /* softmax weights, then the weighted sums of 4 queries over the union of their kept
         * keys (d >= FX_UNION_D): both levels within fp32 rounding of the double formula */
        float p1[N + 16], p2[N + 16];
        for (int n = 1; n <= 300; n += 37) {
            sp_fk_softmax_portable(s16, 0.7f, n, p1);
            sp_fk_softmax_for(lv)(s16, 0.7f, n, p2);
            double mx = -1e300, z = 0;
            for (int t = 0; t < n; t++) mx = fmax(mx, 0.7 * s16[t]);
            for (int t = 0; t < n; t++) z += exp2(0.7 * s16[t] - mx);
            for (int t = 0; t < n; t++) {
                const double ref = exp2(0.7 * s16[t] - mx) / z;
                cr_assert(fabs(p1[t] - ref) < 1e-6 && fabs(p2[t] - ref) < 1e-6, "softmax n=%d t=%d: %g %g vs %g", n, t,
                          p1[t], p2[t], ref);
            }
        }
        /* 4 ascending lists over N keys: nested (every 2nd, 3rd key), disjoint ranges, one
         * empty, with random weights; rows 0-3 written, then row 2 left out (NULL) */
        enum { LD4 = N + 16 };
        int32_t *kl = malloc(sizeof(int32_t) * 4 * LD4);
        float *pl = malloc(sizeof(float) * 4 * LD4), u1[4][128], u2[4][128];
        for (int trial = 0; trial < 6; trial++) {
            for (int r = 0; r < 4; r++) {
                int n = 0;
                for (int j = 0; j < N; j++) {
                    const int in = trial == 5 && r == 1 ? 0
                                 : r == 0     ? urand() < 0.3 + 0.1 * trial
                                 : r == 1     ? j % (2 + trial) == 0
                                 : r == 2     ? j >= N / 2 && urand() < 0.5
                                              : j < 40 || urand() < 0.05;
                    if (in) kl[r * LD4 + n] = j, pl[r * LD4 + n] = (float)urand(), n++;
                }
                kl[r * LD4 + n] = INT32_MAX;
            }
            for (int leave = -1; leave < 4; leave += 3) { /* all rows; then row 2 not written */
                float *oa[4], *ob[4];
                for (int r = 0; r < 4; r++) {
                    oa[r] = r == leave ? NULL : u1[r], ob[r] = r == leave ? NULL : u2[r];
                    for (int c = 0; c < d; c++) u1[r][c] = u2[r][c] = -7.0f;
                }
                sp_fk_wsum4_portable(kl, pl, LD4, vv, d, d, oa);
                sp_fk_wsum4_for(lv)(kl, pl, LD4, vv, d, d, ob);
                for (int r = 0; r < 4; r++)
                    for (int c = 0; c < d; c++) {
                        if (r == leave) {
                            cr_assert(u1[r][c] == -7.0f && u2[r][c] == -7.0f, "wsum4 wrote the row left out");
                            continue;
                        }
                        double ref = 0, ab = 0;
                        for (int t = 0; kl[r * LD4 + t] != INT32_MAX; t++) {
                            const double x = (double)pl[r * LD4 + t] * vv[(size_t)kl[r * LD4 + t] * d + c];
                            ref += x, ab += fabs(x);
                        }
                        const double tol = 1e-6 * ab + 1e-30;
                        cr_assert(fabs(u1[r][c] - ref) <= tol && fabs(u2[r][c] - ref) <= tol,
                                  "wsum4 d=%d trial %d row %d c=%d: %g %g vs %g", d, trial, r, c, u1[r][c], u2[r][c], ref);
                    }
            }
        }
        /* a row's sum does not depend on the other lists (their keys add 0 v to it): each row
         * alone, the other three lists empty, gives the same bits */
        for (int r = 0; r < 4; r++) {
            int32_t *kl1 = malloc(sizeof(int32_t) * 4 * LD4);
            float *pl1 = malloc(sizeof(float) * 4 * LD4), alone[128];
            for (int s = 0; s < 4; s++) kl1[s * LD4] = INT32_MAX, pl1[s * LD4] = 0.0f;
            memcpy(kl1 + r * LD4, kl + r * LD4, sizeof(int32_t) * LD4);
            memcpy(pl1 + r * LD4, pl + r * LD4, sizeof(float) * LD4);
            float *oall[4] = {u1[0], u1[1], u1[2], u1[3]}, *o1r[4] = {NULL, NULL, NULL, NULL};
            o1r[r] = alone;
            sp_fk_wsum4_for(lv)(kl, pl, LD4, vv, d, d, oall);
            sp_fk_wsum4_for(lv)(kl1, pl1, LD4, vv, d, d, o1r);
            cr_assert(memcmp(alone, u1[r], (size_t)d * sizeof(float)) == 0, "wsum4 d=%d row %d depends on the others", d, r);
            free(kl1), free(pl1);
        }
        free(kl), free(pl);
        free(vv);
        free(k);
    }
    free(A), free(o1), free(o2), free(kv);
}

/* The AVX-512 weighted sum takes 1-4 accumulator pairs by the head size: each dim's sum must be
 * the bits the full 64-dim pass gives it (V rows 64 floats apart, the first d of them). */
Test(fast_kernels, softmax_wsum_groups_give_the_full_pass_bits) {
    if (sp_cpu_detect() < SP_CPU_AVX512) cr_skip_test("no AVX-512 here");
    enum { N = 200, LD = 64 };
    float *v = malloc(sizeof(float) * N * LD), s[N + 16], p1[N + 16], p2[N + 16], full[LD], part[LD];
    int32_t idx[N];
    for (int t = 0; t < N * LD; t++) v[t] = (float)nrand();
    for (int t = 0; t < N; t++) s[t] = (float)(3 * nrand()), idx[t] = (int32_t)((t * 7919) % N);
    for (int n = 1; n <= N; n += 13)
        for (int d = 1; d <= LD; d++) {
            sp_fk_softmax_wsum_avx512(s, 0.7f, idx, n, v, LD, LD, p1, full);
            sp_fk_softmax_wsum_avx512(s, 0.7f, idx, n, v, LD, d, p2, part);
            cr_assert(memcmp(full, part, (size_t)d * sizeof *part) == 0, "n %d d %d", n, d);
        }
    free(v);
}

/* The AVX-512 weighted sums take 1-4 accumulator groups by the head size: each dim's sum must
 * be the bits the full 64-dim pass gives it (V rows 64 floats apart, the first d of them). */
Test(fast_kernels, wsum_groups_give_the_full_pass_bits) {
    if (sp_cpu_detect() < SP_CPU_AVX512) cr_skip_test("no AVX-512 here");
    enum { N = 200, LD = 64, LL = N + 16 };
    float *v = malloc(sizeof(float) * N * LD), full[4][LD], part[4][LD];
    int32_t *kl = malloc(sizeof(int32_t) * 4 * LL);
    float *pl = malloc(sizeof(float) * 4 * LL);
    for (int t = 0; t < N * LD; t++) v[t] = (float)nrand();
    for (int r = 0; r < 4; r++) {
        int n = 0;
        for (int j = 0; j < N; j++)
            if (urand() < 0.2 + 0.2 * r) kl[r * LL + n] = j, pl[r * LL + n] = (float)urand(), n++;
        kl[r * LL + n] = INT32_MAX;
    }
    float *fo[4] = {full[0], full[1], full[2], full[3]}, *po[4] = {part[0], part[1], part[2], part[3]};
    sp_fk_wsum4_avx512(kl, pl, LL, v, LD, LD, fo);
    for (int d = 1; d <= LD; d++) {
        sp_fk_wsum4_avx512(kl, pl, LL, v, LD, d, po);
        for (int r = 0; r < 4; r++) cr_assert(memcmp(full[r], part[r], (size_t)d * sizeof(float)) == 0, "row %d d %d", r, d);
    }
    free(v), free(kl), free(pl);
}

/* The blocked kernels of the second pass (4 queries per K row or panel) and the selection from
 * precomputed comparator bits at the detected level against the portable ones and against
 * double formulas: scores within the fp32 bound of any summation order, the same lookups and
 * survivors. */
static double dot_bound(const float *q, const float *k, int d, double *ex) {
    double e = 0, ab = 0;
    for (int c = 0; c < d; c++) e += (double)q[c] * k[c], ab += fabs((double)q[c] * k[c]);
    *ex = e;
    return 1.01 * d * ldexp(1.0, -24) / (1 - d * ldexp(1.0, -24)) * ab + 1e-30;
}

Test(fn_fast, blocked_kernels_match_portable) {
    sp_cpu_level lv = sp_cpu_detect();
    rng_state = 11;
    enum { N = 300 };
    /* survivors from precomputed comparator bits (the AMX screen's) */
    uint64_t mk[N / 64 + 1];
    unsigned char kvb[N];
    for (int t = 0; t < N / 64 + 1; t++) mk[t] = ((uint64_t)(urand() * 4294967296.0) << 32) ^ (uint64_t)(urand() * 4294967296.0);
    for (int j = 0; j < N; j++) kvb[j] = urand() < 0.8;
    for (int n = 0; n <= N; n += n < 40 ? 1 : 23)
        for (int pad = 0; pad < 2; pad++) {
            int32_t o1[N + 16], o2[N + 16];
            uint16_t b1[N / 16 + 2], b2[N / 16 + 2];
            int c1 = sp_fk_select_mask_portable(mk, n, pad ? kvb : NULL, o1, b1);
            int c2 = sp_fk_select_mask_for(lv)(mk, n, pad ? kvb : NULL, o2, b2);
            cr_assert_eq(c1, c2, "select_mask n=%d: %d vs %d", n, c1, c2);
            cr_assert_eq(memcmp(o1, o2, sizeof(int32_t) * (size_t)c1), 0);
            cr_assert_eq(memcmp(b1, b2, sizeof(uint16_t) * (size_t)((n + 15) / 16)), 0);
            for (int j = 0, c = 0; j < n; j++) {
                int in = (int)((mk[j / 64] >> (j % 64)) & 1u) && (!pad || kvb[j]);
                cr_assert_eq(in, c < c1 && o1[c] == j, "select_mask key %d", j);
                c += in;
            }
        }
    /* the dense block's scores of a key list */
    {
        float S[N], g1[N + 16], g2[N + 16];
        int32_t gi[N];
        for (int j = 0; j < N; j++) S[j] = (float)nrand(), gi[j] = (int32_t)((j * 131) % N);
        for (int n = 0; n <= N; n += n < 40 ? 1 : 29) {
            sp_fk_gather_portable(S, gi, n, g1);
            sp_fk_gather_for(lv)(S, gi, n, g2);
            for (int t = 0; t < n; t++) cr_assert(g1[t] == S[gi[t]] && g2[t] == g1[t], "gather n=%d t=%d", n, t);
        }
    }
    const int dims[] = {1, 8, 20, 32, 64, 100, 128};
    for (int di = 0; di < 7; di++) {
        const int d = dims[di];
        float *k = malloc(sizeof(float) * (size_t)(N + 64) * d), *q = malloc(sizeof(float) * 4 * (size_t)d);
        for (int t = 0; t < (N + 64) * d; t++) k[t] = (float)nrand();
        for (int t = 0; t < 4 * d; t++) q[t] = (float)nrand();
        float *kp = malloc(sizeof(float) * sp_flash_kpack_size(N, d));
        sp_flash_pack_k(k, d, N, d, kp);
        float *s1 = malloc(sizeof(float) * 4 * (N + 16)), *s2 = malloc(sizeof(float) * 4 * (N + 16));
        int32_t idx[N];
        for (int t = 0; t < N; t++) idx[t] = (int32_t)((t * 7919) % N);
        for (int nr = 1; nr <= 4; nr++)
            for (int n = 0; n <= 23; n++) {
                for (int t = 0; t < 4 * (N + 16); t++) s1[t] = s2[t] = NAN;
                sp_fk_dots4_portable(q, d, nr, k, d, d, idx, n, s1);
                sp_fk_dots4_for(lv)(q, d, nr, k, d, d, idx, n, s2);
                for (int t = 0; t < n; t++)
                    for (int r = 0; r < nr; r++) {
                        double ex, b = dot_bound(q + (size_t)r * d, k + (size_t)idx[t] * d, d, &ex);
                        float a1 = s1[4 * idx[t] + r], a2 = s2[4 * idx[t] + r];
                        cr_assert(fabs(a1 - ex) <= b && fabs(a2 - ex) <= b, "dots4 d=%d nr=%d t=%d r=%d: %g %g vs %g",
                                  d, nr, t, r, a1, a2, ex);
                    }
            }
        /* whole panels, the last one zero-padded */
        for (int nr = 1; nr <= 4; nr++)
            for (int p = 0; p < (N + 15) / 16; p++) {
                float o1[64], o2[64];
                sp_fk_panel4_portable(q, d, nr, kp + (size_t)p * 16 * d, d, o1);
                sp_fk_panel4_for(lv)(q, d, nr, kp + (size_t)p * 16 * d, d, o2);
                for (int u = 0; u < 16 && 16 * p + u < N; u++)
                    for (int r = 0; r < nr; r++) {
                        double ex, b = dot_bound(q + (size_t)r * d, k + (size_t)(16 * p + u) * d, d, &ex);
                        cr_assert(fabs(o1[4 * u + r] - ex) <= b && fabs(o2[4 * u + r] - ex) <= b,
                                  "panel4 d=%d nr=%d key %d r=%d: %g %g vs %g", d, nr, 16 * p + u, r, o1[4 * u + r],
                                  o2[4 * u + r], ex);
                    }
            }
        /* a list of panels (not adjacent, not ascending, the last one included) into the cache */
        for (int nr = 1; nr <= 4; nr++) {
            const int np = (N + 15) / 16;
            int32_t pl[(N + 15) / 16];
            int cnt = 0;
            for (int p = np - 1; p >= 0; p -= 2) pl[cnt++] = p;
            float *c1 = malloc(sizeof(float) * 64 * (size_t)np), *c2 = malloc(sizeof(float) * 64 * (size_t)np);
            for (int t = 0; t < 64 * np; t++) c1[t] = c2[t] = -7.0f;
            sp_fk_panels4_portable(q, d, nr, kp, d, pl, cnt, c1);
            sp_fk_panels4_for(lv)(q, d, nr, kp, d, pl, cnt, c2);
            for (int p = 0; p < np; p++)
                for (int u = 0; u < 16 && 16 * p + u < N; u++)
                    for (int r = 0; r < nr; r++) {
                        const int j = 16 * p + u, listed = (np - 1 - p) % 2 == 0;
                        double ex, b = dot_bound(q + (size_t)r * d, k + (size_t)j * d, d, &ex);
                        float a1 = c1[4 * j + r], a2 = c2[4 * j + r];
                        if (!listed)
                            cr_assert(a1 == -7.0f && a2 == -7.0f, "panels4 wrote panel %d, not listed", p);
                        else
                            cr_assert(fabs(a1 - ex) <= b && fabs(a2 - ex) <= b,
                                      "panels4 d=%d nr=%d key %d r=%d: %g %g vs %g", d, nr, j, r, a1, a2, ex);
                    }
            free(c1), free(c2);
        }
        /* the 4-slot cache lookup */
        int stampv[N];
        float *c4 = malloc(sizeof(float) * 4 * N);
        for (int j = 0; j < N; j++) stampv[j] = urand() < 0.6 ? 9 : 8;
        for (int t = 0; t < 4 * N; t++) c4[t] = (float)nrand();
        for (int r = 0; r < 4; r++)
            for (int n = 0; n <= N; n += n < 40 ? 1 : 97) {
                int32_t m1[N + 16], q1[N + 16], m2[N + 16], q2[N + 16], keys[N];
                float a1[N + 16], a2[N + 16];
                for (int t = 0; t < n; t++) keys[t] = (int32_t)((t * 7) % N);
                int c1 = sp_fk_lookup4_portable(keys, n, stampv, 9, c4, r, a1, m1, q1);
                int c2 = sp_fk_lookup4_for(lv)(keys, n, stampv, 9, c4, r, a2, m2, q2);
                cr_assert_eq(c1, c2, "lookup4 n=%d", n);
                cr_assert_eq(memcmp(m1, m2, sizeof(int32_t) * (size_t)c1), 0);
                cr_assert_eq(memcmp(q1, q2, sizeof(int32_t) * (size_t)c1), 0);
                for (int t = 0; t < n; t++)
                    if (stampv[keys[t]] == 9)
                        cr_assert(a1[t] == c4[4 * keys[t] + r] && a2[t] == a1[t], "lookup4 value t=%d", t);
            }
        /* slots r and r + 1 at once (a query's survivors and the next query's sources) */
        for (int r = 0; r < 3; r++)
            for (int n = 0; n <= N; n += n < 40 ? 1 : 97) {
                int32_t keys[N];
                float a1[N + 16], b1[N + 16], a2[N + 16], b2[N + 16];
                for (int t = 0; t < n; t++) keys[t] = (int32_t)((t * 13 + 5 * r) % N);
                sp_fk_gather4x2_portable(c4, r, keys, n, a1, b1);
                sp_fk_gather4x2_for(lv)(c4, r, keys, n, a2, b2);
                for (int t = 0; t < n; t++)
                    cr_assert(a1[t] == c4[4 * keys[t] + r] && b1[t] == c4[4 * keys[t] + r + 1] && a2[t] == a1[t] &&
                                  b2[t] == b1[t],
                              "gather4x2 r=%d n=%d t=%d", r, n, t);
            }
        /* the words with bits still to score (need & ~done), every length around the 32-word step */
        for (int nw = 0; nw <= 100; nw++) {
            uint16_t nd[100], dn[100];
            int32_t w1[100 + 32], w2[100 + 32];
            for (int u = 0; u < nw; u++) {
                nd[u] = urand() < 0.3 ? 0 : (uint16_t)(urand() * 65536);
                dn[u] = urand() < 0.5 ? nd[u] : (uint16_t)(urand() * 65536);
            }
            int c1 = sp_fk_todo16_portable(nd, dn, nw, w1), c2 = sp_fk_todo16_for(lv)(nd, dn, nw, w2);
            int cx = 0;
            for (int u = 0; u < nw; u++) cx += (nd[u] & ~dn[u]) != 0;
            cr_assert(c1 == cx && c2 == cx, "todo16 nw=%d: %d %d vs %d", nw, c1, c2, cx);
            cr_assert_eq(memcmp(w1, w2, sizeof(int32_t) * (size_t)cx), 0, "todo16 nw=%d words differ", nw);
            for (int t = 0; t < cx; t++) cr_assert(nd[w1[t]] & ~dn[w1[t]], "todo16 word %d", w1[t]);
        }
        /* slot r of the 4-slot cache for a key list (the onchip scores from the sub-block's masks) */
        for (int r = 0; r < 4; r++)
            for (int n = 0; n <= N; n += n < 40 ? 1 : 97) {
                int32_t keys[N];
                float a1[N + 16], a2[N + 16];
                for (int t = 0; t < n; t++) keys[t] = (int32_t)((t * 11 + r) % N);
                sp_fk_gather4_portable(c4, r, keys, n, a1);
                sp_fk_gather4_for(lv)(c4, r, keys, n, a2);
                for (int t = 0; t < n; t++)
                    cr_assert(a1[t] == c4[4 * keys[t] + r] && a2[t] == a1[t], "gather4 r=%d n=%d t=%d", r, n, t);
            }
        free(c4), free(s1), free(s2), free(kp), free(k), free(q);
    }
}

/* ---- real heads: Q, K, V of every head of a layer of a shared model ---------------------- */
static void real_model(const char *path, const char *name, int n_tok) {
    sp_model *m = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_model_load(path, &m, &err), SP_OK, "%s", err.msg);
    const sp_model_info *mi = sp_model_get_info(m);
    for (int layer = 0; layer < mi->n_layers; layer += 2) {
        th_head cap[8];
        int nh = th_capture_layer(m, n_tok, layer, cap);
        for (int h = 0; h < nh; h++) {
            char what[96];
            snprintf(what, sizeof what, "%s layer %d head %d", name, layer, h);
            head_data hd = {.nq = cap[h].nq, .nk = cap[h].nk, .d = cap[h].d, .causal = cap[h].causal,
                            .q_offset = cap[h].q_offset, .scale = cap[h].scale, .q = cap[h].q, .k = cap[h].k,
                            .v = cap[h].v};
            const char *const dense[] = {"policy.delta=3", NULL};
            const char *const sparse[] = {"policy.delta=3", "sprint.exact_stats=0", "sprint.mass_lost=0", NULL};
            compare(&hd, dense, 1, what);
            compare(&hd, sparse, 0, what);
            th_head_free(&cap[h]);
        }
    }
    sp_model_free(m);
}

Test(fn_fast, stories260K_heads_same_masks_as_reference) {
    TH_NEED_SHARED(path, "models/stories260K.bin");
    real_model(path, "stories260K", 300);
}

Test(fn_fast, bitnet3M_heads_same_masks_as_reference) {
    TH_NEED_SHARED(path, "models/bitnet-3M.bin");
    real_model(path, "bitnet-3M", 300);
}

/* Thresholds placed exactly on a pair's exact (double) score: the fp32 score lies within its
 * rounding bound of the threshold and only the exact product decides. The fast implementation
 * must keep what the reference keeps at this boundary (a rule using the fp32 score alone would
 * drop about half of these keys). */
Test(fn_fast, threshold_on_an_exact_score_decided_exactly) {
    const int dims[] = {8, 64};
    for (int di = 0; di < 2; di++) {
        int d = dims[di];
        head_data hd = make_head(40, 120, d, 0, 0, 0, 4242 + d);
        int below = 0;
        for (int pair = 0; pair < 12; pair++) {
            int i = (pair * 7) % hd.nq, j = (pair * 31 + 5) % hd.nk;
            double ex = 0;
            for (int c = 0; c < d; c++) ex += (double)hd.q[(size_t)i * d + c] * (double)hd.k[(size_t)j * d + c];
            ex *= (double)hd.scale;
            float f;
            int32_t jj = j;
            sp_fk_dots_for(sp_cpu_detect())(hd.q + (size_t)i * d, hd.k, d, d, &jj, 1, &f);
            below += (double)f * (double)hd.scale < ex;
            char t[64], what[96];
            snprintf(t, sizeof t, "policy.threshold=%.17g", ex);
            snprintf(what, sizeof what, "d=%d threshold on pair (%d, %d)", d, i, j);
            const char *const s[] = {"policy.kind=layer", t, "sprint.margin_mode=worst", "sprint.exact_stats=0",
                                     "sprint.mass_lost=0", NULL};
            compare(&hd, s, 0, what);
            const char *const s2[] = {"policy.kind=layer", t, "sprint.margin_mode=worst", NULL};
            compare(&hd, s2, 1, what);
        }
        cr_log_info("d=%d: %d of 12 thresholds above their pair's fp32 score", d, below);
        head_free(&hd);
    }
}

/* Edge cases: one key, d = 1 and 3, every key padded, every query padded, a causal block at an
 * offset (q_offset > 0), one query. */
Test(fn_fast, edge_cases_same_as_reference) {
    const char *const s_dense[] = {"policy.delta=3", NULL};
    const char *const s_sparse[] = {"policy.delta=3", "sprint.exact_stats=0", "sprint.mass_lost=0", NULL};
    /* a fixed threshold without the dense statistics: the comparator bits straight from the AMX
     * screen where offered (references computed before the screen, dense panels scored first) */
    const char *const s_fixed[] = {"policy.kind=layer", "policy.threshold=0.3", "sprint.exact_stats=0",
                                   "sprint.mass_lost=0", NULL};
    const int shapes[][4] = {{5, 1, 8, 0},   {7, 9, 1, 0},     {7, 9, 3, 1},   {1, 40, 16, 1},  {33, 70, 24, 1},
                             {64, 64, 64, 0}, {1, 1, 1, 0},    {40, 1, 5, 0},  {37, 80, 128, 1}, {70, 100, 65, 1}};
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        head_data hd = make_head(shapes[c][0], shapes[c][1], shapes[c][2], shapes[c][3], 0, 0, 900 + c);
        char what[64];
        snprintf(what, sizeof what, "shape %zu", c);
        compare(&hd, s_dense, 1, what);
        compare(&hd, s_sparse, 0, what);
        compare(&hd, s_fixed, 0, what);
        head_free(&hd);
    }
    /* every key padded, then every query padded */
    for (int which = 0; which < 2; which++) {
        head_data hd = make_head(20, 30, 16, 0, 1, 0, 31);
        for (int j = 0; which == 0 && j < 30; j++) hd.kv[j] = 0;
        for (int i = 0; which == 1 && i < 20; i++) hd.qv[i] = 0;
        compare(&hd, s_dense, 1, which ? "all queries padded" : "all keys padded");
        compare(&hd, s_sparse, 0, which ? "all queries padded" : "all keys padded");
        compare(&hd, s_fixed, 0, which ? "all queries padded" : "all keys padded");
        head_free(&hd);
    }
    /* causal, the first keys padded (a query's first visible key is not key 0) */
    {
        head_data hd = make_head(45, 90, 32, 1, 1, 1, 77);
        for (int j = 0; j < 20; j++) hd.kv[j] = 0;
        compare(&hd, s_sparse, 0, "causal, keys 0-19 padded");
        compare(&hd, s_fixed, 0, "causal, keys 0-19 padded");
        head_free(&hd);
    }
}

/* K and V rows not on a 64-byte boundary (a base 16 bytes off, a stride of 68 floats) are
 * copied to aligned rows before the kernels run (sp_rows_aligned, sprint/common.h): the same
 * values, so the same kept lists, counters and output bits as the same head in aligned rows. */
Test(fn_fast, misaligned_rows_same_bits_as_aligned) {
    const char *const cases[][6] = {
        {"policy.delta=3", "sprint.exact_stats=0", "sprint.mass_lost=0", NULL},
        {"policy.kind=layer", "policy.threshold=0.5", "sprint.exact_stats=0", "sprint.mass_lost=0", NULL},
        {"policy.delta=3", NULL},
    };
    for (int causal = 0; causal < 2; causal++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            const int nq = 90, nk = 300, d = 64, lm = 68;
            head_data hd = make_head(nq, nk, d, causal, 0, causal, 4242 + causal);
            float *ka = aligned_alloc(64, sizeof(float) * (size_t)nk * d), *va = aligned_alloc(64, sizeof(float) * (size_t)nk * d);
            float *kmb = aligned_alloc(64, sizeof(float) * ((size_t)nk * lm + 64)),
                  *vmb = aligned_alloc(64, sizeof(float) * ((size_t)nk * lm + 64));
            float *km = kmb + 4, *vm = vmb + 4; /* 16 bytes past a 64-byte boundary, stride 272 bytes */
            for (int j = 0; j < nk; j++)
                for (int e = 0; e < d; e++) {
                    ka[(size_t)j * d + e] = km[(size_t)j * lm + e] = hd.k[(size_t)j * d + e];
                    va[(size_t)j * d + e] = vm[(size_t)j * lm + e] = hd.v[(size_t)j * d + e];
                }
            float *o1 = calloc((size_t)nq * d, sizeof(float)), *o2 = calloc((size_t)nq * d, sizeof(float));
            sp_attn_op *f1 = make_op("fast", cases[c]), *f2 = make_op("fast", cases[c]);
            rec_log *l1 = log_new(nq), *l2 = log_new(nq);
            f1->observer = observer, f1->observer_user = l1;
            f2->observer = observer, f2->observer_user = l2;
            sp_error err = {0};
            sp_attn_head h1 = as_head(&hd, o1), h2 = as_head(&hd, o2);
            h1.k = ka, h1.v = va;
            h2.k = km, h2.v = vm, h2.ldk = lm, h2.ldv = lm;
            cr_assert_eq(f1->run(f1, &h1, &err), SP_OK, "%s", err.msg);
            cr_assert_eq(f2->run(f2, &h2, &err), SP_OK, "%s", err.msg);
            for (int i = 0; i < nq; i++) {
                cr_assert(l1->n_mem[i] == l2->n_mem[i] && l1->n_kept[i] == l2->n_kept[i], "case %zu query %d counts", c, i);
                cr_assert_eq(memcmp(l1->kept[i], l2->kept[i], sizeof(int32_t) * (size_t)l1->n_kept[i]), 0);
            }
            for (int f = 0; f < 12; f++)
                cr_assert_eq(stat_field(&f1->stats[0], f), stat_field(&f2->stats[0], f), "case %zu stat %s", c,
                             STAT_NAMES[f]);
            cr_assert_eq(memcmp(o1, o2, sizeof(float) * (size_t)nq * d), 0, "case %zu causal %d: output bits differ", c,
                         causal);
            log_free(l1), log_free(l2);
            sp_attn_op_free(f1), sp_attn_op_free(f2);
            free(o1), free(o2), free(ka), free(va), free(kmb), free(vmb);
            head_free(&hd);
        }
}

/* The per-head passes over the 8-bit keys and queries (sp_fk_kmsb, sp_fk_dac8) at the detected
 * level against their portable versions and against the definitions (sp_key_msb, sp_dac_level
 * at 8 bits): every byte of the outputs, every integer sum, with and without padding, at every
 * b and at row lengths around the 16- and 32-element steps; -128, 127 and 0 included. */
Test(fn_fast, head_passes_match_portable) {
    sp_cpu_level lv = sp_cpu_detect();
    rng_state = 29;
    enum { N = 37, DM = 100 };
    static int8_t ki[N * DM];
    static uint8_t m1[N * DM + 64], m2[N * DM + 64];
    static int qd1[N * DM], qd2[N * DM];
    static int8_t q81[N * (DM + 8)], q82[N * (DM + 8)];
    unsigned char kv[N];
    for (int t = 0; t < N * DM; t++) ki[t] = (int8_t)(int)floor(urand() * 256.0 - 128.0);
    ki[0] = -128, ki[1] = 127, ki[2] = 0, ki[3] = -127;
    for (int j = 0; j < N; j++) kv[j] = urand() < 0.7;
    kv[0] = 1;
    const int ds[] = {1, 7, 15, 16, 17, 31, 32, 33, 48, 64, 65, 100};
    for (size_t di = 0; di < sizeof ds / sizeof ds[0]; di++) {
        const int d = ds[di];
        for (int b = 1; b <= 8; b++)
            for (int pad = 0; pad < 2; pad++) {
                int64_t s1[3], s2[3];
                int x1, x2;
                memset(m1, 0xAA, sizeof m1), memset(m2, 0x55, sizeof m2);
                sp_fk_kmsb_portable(ki, N, d, pad ? kv : NULL, b, m1, s1, &x1);
                sp_fk_kmsb_for(lv)(ki, N, d, pad ? kv : NULL, b, m2, s2, &x2);
                cr_assert_eq(memcmp(m1, m2, (size_t)N * (size_t)d), 0, "kmsb msb d=%d b=%d", d, b);
                cr_assert(s1[0] == s2[0] && s1[1] == s2[1] && s1[2] == s2[2] && x1 == x2,
                          "kmsb sums d=%d b=%d pad=%d: %lld %lld %lld %d vs %lld %lld %lld %d", d, b, pad,
                          (long long)s1[0], (long long)s1[1], (long long)s1[2], x1, (long long)s2[0],
                          (long long)s2[1], (long long)s2[2], x2);
                cr_assert_eq(m2[N * d], 0x55, "kmsb wrote past n d");
                /* the definitions */
                int64_t e0 = 0, e1 = 0, e2 = 0;
                int ex = 0;
                for (int j = 0; j < N; j++)
                    for (int c = 0; c < d; c++) {
                        const int k = ki[j * d + c], m = sp_key_msb(k, b);
                        cr_assert_eq(m1[j * d + c], m, "msb of %d at b=%d", k, b);
                        if (pad && !kv[j]) continue;
                        e0 += k * k, e1 += m * m, e2 += ((1 << b) - 1 - m) * ((1 << b) - 1 - m);
                        ex = abs(k) > ex ? abs(k) : ex;
                    }
                cr_assert(e0 == s1[0] && e1 == s1[1] && e2 == s1[2] && ex == x1, "kmsb portable sums d=%d b=%d", d, b);
            }
        /* the largest |k| in one element only, at each position of a row */
        for (int p = 0; p < 2 * d && d >= 16; p++) {
            static int8_t k1[2 * DM];
            for (int t = 0; t < 2 * d; t++) k1[t] = (int8_t)(t % 21 - 10);
            k1[p] = p % 2 ? 127 : -128;
            int64_t s1[3], s2[3];
            int x1, x2;
            sp_fk_kmsb_for(lv)(k1, 2, d, NULL, 4, m2, s2, &x2);
            sp_fk_kmsb_portable(k1, 2, d, NULL, 4, m1, s1, &x1);
            cr_assert(x1 == x2 && x1 == (p % 2 ? 127 : 128), "kmax with the extreme at %d of d=%d: %d vs %d", p, d, x2, x1);
            cr_assert(s1[0] == s2[0] && s1[1] == s2[1] && s1[2] == s2[2], "kmsb sums, extreme at %d", p);
        }
        const int d8 = d + 8;
        memset(q81, 0x11, sizeof q81), memset(q82, 0x11, sizeof q82);
        sp_fk_dac8_portable(ki, N, d, qd1, q81, d8);
        sp_fk_dac8_for(lv)(ki, N, d, qd2, q82, d8);
        cr_assert_eq(memcmp(qd1, qd2, sizeof(int) * (size_t)N * (size_t)d), 0, "dac8 ints d=%d", d);
        cr_assert_eq(memcmp(q81, q82, sizeof q81), 0, "dac8 bytes d=%d (padding columns untouched)", d);
        /* the DAC sums of every row from the integer sums, as sprint_fast.c forms them, equal
         * the reference's doubles bit for bit */
        for (int j = 0; j < N; j++) {
            int64_t t1[4], t2[4];
            sp_fk_dacsums8_portable(ki + j * d, d, t1);
            sp_fk_dacsums8_for(lv)(ki + j * d, d, t2);
            cr_assert(memcmp(t1, t2, sizeof t1) == 0, "dacsums8 row %d d=%d: %lld %lld %lld %lld vs %lld %lld %lld %lld",
                      j, d, (long long)t1[0], (long long)t1[1], (long long)t1[2], (long long)t1[3], (long long)t2[0],
                      (long long)t2[1], (long long)t2[2], (long long)t2[3]);
            const sp_fn_dac_sums r = sp_fn_dac_sums_of(ki + j * d, qd1 + j * d, d, sp_dac_step(8));
            const double f[7] = {(double)(t2[0] + t2[3]), (double)(t2[1] - 255 * t2[3]), (double)t2[3], (double)t2[1],
                                 (double)(t2[2] - t2[3]), (double)t2[3], (double)t2[2]};
            const double g[7] = {r.sqd, r.sqd2, r.eq2, r.sqi2, r.sabs_qd, r.sabs_eq, r.sabs_qi};
            for (int e = 0; e < 7; e++) cr_assert(f[e] == g[e], "dac sum %d of row %d d=%d: %g vs %g", e, j, d, f[e], g[e]);
        }
        for (int t = 0; t < N * d; t++) {
            cr_assert_eq(qd1[t], sp_dac_level(ki[t], 8), "dac8 of %d", ki[t]);
            cr_assert_eq(q81[(t / d) * d8 + t % d], (int8_t)sp_dac_level(ki[t], 8));
        }
    }
}
