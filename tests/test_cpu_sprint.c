/* test_cpu_sprint.c: does the public SPRINT CPU kernel (cpu_attention.h) screen exactly as the
 * functional model's sprint operator (same in-memory survivors on an ideal device), keep the
 * same keys up to float rounding at the threshold, compute softmax over its kept keys as the
 * double reference does, equal dense attention at threshold -inf, and give the same bits for
 * any thread count and CPU level? */
#include <criterion/criterion.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention/sprint_exact.h"
#include "helpers.h"
#include "functional/quant_simd.h"
#include "functional/fn_internal.h"
#include "cpu/cpu.h"
#include "sprint/cpu_attention.h"
#include "sprint/functional.h"

static float *randn(size_t n, uint64_t seed, float sd) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = sd * (float)sp_rng_normal(sp_rng_key(seed, 9, (uint64_t)i, 0, 0));
    return x;
}

/* Clustered keys: queries and keys near a few centroids, so each query has a few strong keys. */
static void clustered(int n, int d, uint64_t seed, float *q, float *k, float *v) {
    for (int i = 0; i < n; i++) {
        int cl = (int)(sp_rng_uniform(sp_rng_key(seed, 1, (uint64_t)i / 16, 0, 0)) * 8);
        for (int c = 0; c < d; c++) {
            double cen = sp_rng_normal(sp_rng_key(seed, 2, (uint64_t)cl, (uint64_t)c, 0));
            q[(size_t)i * d + c] = (float)(2.5 * cen + 0.7 * sp_rng_normal(sp_rng_key(seed, 3, (uint64_t)i, (uint64_t)c, 0)));
            k[(size_t)i * d + c] = (float)(cen + 0.7 * sp_rng_normal(sp_rng_key(seed, 4, (uint64_t)i, (uint64_t)c, 0)));
            v[(size_t)i * d + c] = (float)sp_rng_normal(sp_rng_key(seed, 5, (uint64_t)i, (uint64_t)c, 0));
        }
    }
}

typedef struct obs {
    int n_k;
    unsigned char *mem, *kept;
} obs;

static void observe(void *user, const sp_query_record *r) {
    obs *o = user;
    for (int t = 0; t < r->n_mem_kept; t++) o->mem[(size_t)r->qi * o->n_k + r->mem_kept[t]] = 1;
    for (int t = 0; t < r->n_kept; t++) o->kept[(size_t)r->qi * o->n_k + r->kept[t]] = 1;
}

/* The slow reference: sprint_op.c (sprint.impl=reference: double outputs, not the fast fp32
 * operator), mode sprint, fixed threshold, ideal device, float arith. */
static void reference_op(const sp_attn_head *h0, double thr, float *out, obs *ob, sp_attn_stats *st) {
    sp_config cfg;
    sp_config_defaults(&cfg);
    char tv[64];
    snprintf(tv, sizeof tv, "policy.threshold=%.17g", thr == -INFINITY ? -1e30 : thr);
    const char *sets[] = {"policy.kind=layer", tv, "sprint.margin_mode=sigma", "sprint.margin_sigma=3",
                          "sprint.outputs=1", "sprint.impl=reference"};
    sp_error err = {0};
    for (int i = 0; i < 6; i++) cr_assert_eq(sp_config_set(&cfg, sets[i], "test", &err), SP_OK, "%s", err.msg);
    sp_op_request req = {.mode = "sprint", .cfg = &cfg};
    sp_attn_op *op = NULL;
    cr_assert_eq(sp_attn_op_create(&req, 1, 1, &op, &err), SP_OK, "%s", err.msg);
    op->observer = observe;
    op->observer_user = ob;
    sp_attn_head h = *h0;
    h.out = out;
    cr_assert_eq(op->run(op, &h, &err), SP_OK, "%s", err.msg);
    *st = op->stats[0];
    sp_attn_op_free(op);
}

static void against_reference(int n, int d, int causal, int pad, int clus, double thr, uint64_t seed) {
    size_t N = (size_t)n * d;
    float *q = randn(N, seed, 1.0f), *k = randn(N, seed + 1, 1.0f), *v = randn(N, seed + 2, 1.0f);
    if (clus) clustered(n, d, seed, q, k, v);
    float *o_ref = malloc(N * sizeof(float)), *o1 = malloc(N * sizeof(float)), *o2 = malloc(N * sizeof(float));
    unsigned char *kv = NULL, *qv = NULL;
    if (pad) {
        kv = malloc((size_t)n), qv = malloc((size_t)n);
        for (int j = 0; j < n; j++) kv[j] = qv[j] = j < n - n / 5;
    }
    sp_attn_head h = {.n_q = n, .n_k = n, .d = d, .q = q, .k = k, .v = v, .out = o1, .ldq = d, .ldk = d, .ldv = d,
                      .ldo = d, .causal = causal, .key_valid = kv, .query_valid = qv, .scale = 1.0f / sqrtf((float)d)};
    obs ob = {.n_k = n, .mem = calloc((size_t)n * n, 1), .kept = calloc((size_t)n * n, 1)};
    sp_attn_stats rst;
    reference_op(&h, thr, o_ref, &ob, &rst);
    unsigned char *kept = malloc((size_t)n * n);
    sp_attn_stats st = {0};
    sp_cpu_sprint_opts o = {.policy = SP_CPU_POLICY_FIXED, .threshold = thr, .margin_sigma = 3, .threads = 1,
                            .kept = kept, .stats = &st, .want_exact_stats = 1};
    sp_error err = {0};
    cr_assert_eq(sp_cpu_attention_sprint(&h, &o, &err), SP_OK, "%s", err.msg);
    /* the screen is the same integer comparison: identical survivor counts and exact-pass counts */
    cr_assert_eq(st.pairs_mem_kept, rst.pairs_mem_kept, "survivors %.0f vs reference %.0f", st.pairs_mem_kept,
                 rst.pairs_mem_kept);
    cr_assert_eq(st.pairs_visible, rst.pairs_visible);
    cr_assert_eq(st.queries, rst.queries);
    cr_assert_eq(st.false_prunes, rst.false_prunes);
    long diff = 0;
    for (size_t t = 0; t < (size_t)n * n; t++) diff += kept[t] != ob.kept[t];
    cr_assert(diff <= 2, "kept masks differ in %ld pairs (float vs double rounding at the threshold)", diff);
    cr_assert(fabs(st.pairs_kept - rst.pairs_kept) <= 2);
    double md = 0;
    for (size_t t = 0; t < N; t++) md = th_maxerr(md, fabs((double)o1[t] - o_ref[t]));
    cr_assert(md <= (diff ? 5e-2 : 2e-5), "max |out - reference| = %g (kept masks differ in %ld pairs)", md, diff);
    cr_assert(st.pairs_kept < st.pairs_visible || thr == -INFINITY, "nothing pruned: the test would be vacuous");
    /* 2 threads and every CPU level: the same bits (levels: within float rounding) */
    o.threads = 2;
    o.stats = NULL;
    h.out = o2;
    cr_assert_eq(sp_cpu_attention_sprint(&h, &o, &err), SP_OK, "%s", err.msg);
    cr_assert(!memcmp(o1, o2, N * sizeof(float)), "1 and 2 threads differ");
    /* without exact statistics (the fast configuration: the AMX screen where available) the
     * screen is the same integer comparison: identical survivors, kept keys and output bits */
    if (thr != -INFINITY) {
        sp_attn_stats st2 = {0};
        unsigned char *kept2 = malloc((size_t)n * n);
        sp_cpu_sprint_opts o2s = o;
        o2s.want_exact_stats = 0, o2s.stats = &st2, o2s.kept = kept2, o2s.threads = 2;
        cr_assert_eq(sp_cpu_attention_sprint(&h, &o2s, &err), SP_OK, "%s", err.msg);
        cr_assert_eq(st2.pairs_mem_kept, st.pairs_mem_kept, "survivors %.0f vs %.0f", st2.pairs_mem_kept,
                     st.pairs_mem_kept);
        cr_assert_eq(st2.pairs_kept, st.pairs_kept);
        cr_assert(!memcmp(kept, kept2, (size_t)n * n), "kept masks differ without exact statistics");
        cr_assert(!memcmp(o1, o2, N * sizeof(float)), "outputs differ without exact statistics");
        free(kept2);
    }
    free(q), free(k), free(v), free(o_ref), free(o1), free(o2), free(kv), free(qv), free(ob.mem), free(ob.kept), free(kept);
}

static void all_cases(void) {
    against_reference(300, 64, 1, 0, 0, 0.5, 1);
    against_reference(300, 64, 0, 0, 0, 1.0, 2);
    against_reference(257, 32, 1, 1, 0, 0.0, 3);
    against_reference(200, 64, 0, 1, 1, 3.0, 4);
    against_reference(130, 128, 1, 0, 1, 2.0, 5);
    against_reference(100, 20, 0, 0, 0, -INFINITY, 6);
    /* head sizes off the 16-column and 64-byte grids: 1, 5, 130 (three AMX steps of 64 bytes) */
    against_reference(90, 130, 1, 1, 0, 0.5, 7);
    against_reference(64, 5, 0, 1, 0, 0.3, 8);
    against_reference(40, 1, 1, 0, 0, 0.2, 9);
}

Test(cpu_sprint, matches_functional_operator) { all_cases(); }

/* The two digital paths separately: every key chunk through the dense flash tile with the
 * survivor masks, and every chunk through the gathered survivor rows. */
Test(cpu_sprint, dense_tiles_and_gathers_each_match_the_operator) {
    sp_sx_dense_min_set(0);
    all_cases();
    sp_sx_dense_min_set(1 << 20);
    all_cases();
    sp_sx_dense_min_set(16);
}

Test(cpu_sprint, minus_infinity_is_dense) {
    int n = 200, d = 64;
    size_t N = (size_t)n * d;
    float *q = randn(N, 11, 1.0f), *k = randn(N, 12, 1.0f), *v = randn(N, 13, 1.0f);
    float *o1 = malloc(N * sizeof(float)), *o2 = malloc(N * sizeof(float));
    for (int causal = 0; causal < 2; causal++) {
        sp_attn_head h = {.n_q = n, .n_k = n, .d = d, .q = q, .k = k, .v = v, .out = o1, .ldq = d, .ldk = d,
                          .ldv = d, .ldo = d, .causal = causal, .scale = 0.125f};
        cr_assert_eq(sp_cpu_attention_dense(&h, 1, NULL), SP_OK);
        sp_attn_stats st = {0};
        sp_cpu_sprint_opts o = {.policy = SP_CPU_POLICY_FIXED, .threshold = -INFINITY, .threads = 1, .stats = &st};
        h.out = o2;
        cr_assert_eq(sp_cpu_attention_sprint(&h, &o, NULL), SP_OK);
        for (size_t t = 0; t < N; t++) cr_assert_float_eq(o1[t], o2[t], 1e-6, "[%zu]", t);
        cr_assert_eq(st.pairs_kept, st.pairs_visible);
        cr_assert_eq(st.pairs_visible, causal ? n * (n + 1) / 2.0 : (double)n * n);
        /* relative policy with a huge delta keeps everything too */
        o.policy = SP_CPU_POLICY_RELATIVE;
        o.delta = 1e6;
        memset(&st, 0, sizeof st);
        cr_assert_eq(sp_cpu_attention_sprint(&h, &o, NULL), SP_OK);
        cr_assert_eq(st.pairs_kept, st.pairs_visible);
        /* a tiny delta keeps the best key of each query and hardly any other (random data) */
        o.delta = 1e-2;
        o.margin_sigma = 3; /* without a margin the screen may prune the best key (false prune) */
        memset(&st, 0, sizeof st);
        cr_assert_eq(sp_cpu_attention_sprint(&h, &o, NULL), SP_OK);
        cr_assert(st.pairs_kept >= n && st.pairs_kept <= n * 1.1, "kept %.0f for %d queries", st.pairs_kept, n);
    }
    free(q), free(k), free(v), free(o1), free(o2);
}

Test(cpu_sprint, bad_options) {
    float x[64] = {0};
    sp_attn_head h = {.n_q = 1, .n_k = 1, .d = 64, .q = x, .k = x, .v = x, .out = x, .ldq = 64, .ldk = 64, .ldv = 64,
                      .ldo = 64, .scale = 0.125f};
    sp_error err = {0};
    sp_cpu_sprint_opts o = {.policy = SP_CPU_POLICY_RELATIVE, .delta = -1};
    cr_assert_eq(sp_cpu_attention_sprint(&h, &o, &err), SP_ERR_ARG);
    cr_assert(strstr(err.msg, "delta"), "%s", err.msg);
    o = (sp_cpu_sprint_opts){.policy = SP_CPU_POLICY_FIXED, .threshold = NAN};
    cr_assert_eq(sp_cpu_attention_sprint(&h, &o, &err), SP_ERR_ARG);
    o = (sp_cpu_sprint_opts){.policy = SP_CPU_POLICY_FIXED, .margin_sigma = -1};
    cr_assert_eq(sp_cpu_attention_sprint(&h, &o, &err), SP_ERR_ARG);
    cr_assert_eq(sp_cpu_attention_sprint(&h, NULL, &err), SP_ERR_ARG);
    x[3] = NAN;
    o = (sp_cpu_sprint_opts){.policy = SP_CPU_POLICY_FIXED};
    cr_assert_eq(sp_cpu_attention_sprint(&h, &o, &err), SP_ERR_DATA);
}

/* The online-softmax chunk step (sprint_exact.h) at the detected level against the portable one
 * and against a double softmax over the same kept keys: random survivor lists fed in pieces of
 * 1..40 keys (partial and full score trees, rescales when a later piece holds a larger score),
 * d = 64 (the specialised path) and 48, 128 (the generic one). */
static void chunk_case(int d, int nk, double keep_frac, uint64_t seed) {
    float *q = randn((size_t)d, seed, 1.0f), *k = randn((size_t)nk * d, seed + 1, 1.0f);
    float *v = randn((size_t)nk * d, seed + 2, 1.0f);
    int32_t *idx = malloc((size_t)nk * sizeof *idx), *kept = malloc((size_t)(nk + 16) * sizeof *kept);
    float *sbuf = malloc((size_t)(nk + 16) * sizeof *sbuf);
    int n = 0;
    for (int j = 0; j < nk; j++)
        if (sp_rng_uniform(sp_rng_key(seed, 7, (uint64_t)j, 0, 0)) < keep_frac) idx[n++] = j;
    const float thr = 0.3f; /* log2 units: prunes about a third of the survivors */
    sp_sx_chunk_fn fns[2] = {sp_sx_chunk_portable, sp_sx_chunk_for(sp_cpu_detect(), d)};
    float out[2][128];
    int nkept[2] = {0, 0};
    for (int f = 0; f < 2; f++) {
        float m = -INFINITY, l = 0, acc[128] = {0};
        unsigned char *mark = calloc((size_t)nk, 1);
        for (int t0 = 0, piece = 1; t0 < n; t0 += piece, piece = piece % 40 + 7) {
            int cnt = n - t0 < piece ? n - t0 : piece;
            int r = fns[f](q, k, d, v, d, d, idx + t0, cnt, thr, &m, &l, acc, sbuf, kept);
            for (int t = 0; t < r; t++) {
                cr_assert(kept[t] >= idx[t0] && kept[t] <= idx[t0 + cnt - 1], "kept index outside the piece");
                cr_assert(t == 0 || kept[t] > kept[t - 1], "kept indices not ascending");
                mark[kept[t]] = 1;
            }
            nkept[f] += r;
        }
        /* double reference over the keys this level kept, each of which must pass thr */
        double mx = -INFINITY, den = 0, ref[128] = {0};
        for (int j = 0; j < nk; j++)
            if (mark[j]) {
                double s = 0;
                for (int c = 0; c < d; c++) s += (double)q[c] * k[(size_t)j * d + c];
                cr_assert(s >= thr - 1e-5, "key %d kept with score %g < %g", j, s, (double)thr);
                mx = s > mx ? s : mx;
            }
        for (int j = 0; j < nk; j++)
            if (mark[j]) {
                double s = 0;
                for (int c = 0; c < d; c++) s += (double)q[c] * k[(size_t)j * d + c];
                double p = exp2(s - mx);
                den += p;
                for (int c = 0; c < d; c++) ref[c] += p * v[(size_t)j * d + c];
            }
        cr_assert(nkept[f] > 0 && nkept[f] < n, "vacuous: kept %d of %d", nkept[f], n);
        double md = 0;
        for (int c = 0; c < d; c++) {
            out[f][c] = acc[c] / l;
            md = th_maxerr(md, fabs(out[f][c] - ref[c] / den));
        }
        cr_assert(md < 2e-5, "level %d: max |out - double reference| = %g", f, md);
        free(mark);
    }
    cr_assert(abs(nkept[0] - nkept[1]) <= 1, "kept %d (portable) vs %d", nkept[0], nkept[1]);
    for (int c = 0; c < d; c++) cr_assert_float_eq(out[0][c], out[1][c], 2e-5, "[%d]", c);
    free(q), free(k), free(v), free(idx), free(kept), free(sbuf);
}

Test(cpu_sprint, chunk_step_matches_portable_and_reference) {
    chunk_case(64, 700, 0.3, 21);
    chunk_case(64, 97, 0.9, 22);
    chunk_case(48, 300, 0.5, 23);
    chunk_case(128, 400, 0.2, 24);
}

/* The kernel's quantisation (sp_quant_rows_level at the detected level, per-tensor scale) equals
 * the portable loop byte for byte: random rows (d = 64 and 20, row stride > d, padding rows), and
 * exact ties (max |x| = 127 gives scale 1, so x = k + 0.5 must round away from zero). */
Test(cpu_sprint, quantisation_matches_sp_quant_rows) {
    const int n = 37, ds[2] = {64, 20}, ld = 70;
    float *x = randn((size_t)n * ld, 31, 2.0f);
    unsigned char valid[37];
    for (int i = 0; i < n; i++) valid[i] = i % 5 != 3;
    for (int t = 0; t < 3; t++) {
        if (t == 2) { /* ties */
            for (int i = 0; i < n * ld; i++) x[i] = (float)((i % 254) - 127) + ((i % 3) ? 0.5f : 0.0f); /* |x| <= 126.5 */
            x[0] = 127.0f;
        }
        for (int di = 0; di < 2; di++) {
            int d = ds[di];
            int8_t a[37 * 64], b[37 * 64];
            float sa[37], sb[37];
            const unsigned char *vm = t == 1 ? valid : NULL;
            sp_quant_rows_level(SP_CPU_PORTABLE, x, n, d, ld, 0, vm, a, sa);
            sp_quant_rows_level(sp_cpu_detect(), x, n, d, ld, 0, vm, b, sb);
            cr_assert(!memcmp(sa, sb, sizeof sa), "scales differ (case %d, d %d)", t, d);
            for (int i = 0; i < n * d; i++) cr_assert_eq(a[i], b[i], "case %d d %d [%d]: %d vs %d", t, d, i, a[i], b[i]);
            if (t == 2) cr_assert_eq(sa[0], 1.0f);
        }
    }
    free(x);
}
