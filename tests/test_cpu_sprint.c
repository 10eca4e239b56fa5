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
#include "attention/flash.h"
#include "helpers.h"
#include "functional/quant_simd.h"
#include "functional/int_screen.h"
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
    /* 8 threads: blocks of 32 or 64 queries instead of 128 (sprint_cpu.c halves the block while
     * there are fewer blocks than threads): the same bits */
    o.threads = 8;
    cr_assert_eq(sp_cpu_attention_sprint(&h, &o, &err), SP_OK, "%s", err.msg);
    cr_assert(!memcmp(o1, o2, N * sizeof(float)), "1 and 8 threads (smaller blocks) differ");
    o.threads = 2;
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
        /* the online softmax instead of the fixed reference (sprint_exact.h): the same kept
         * keys (the same scores against the same threshold), outputs within float rounding */
        if (sp_sx_fixed_ref()) {
            sp_sx_fixed_ref_set(0);
            memset(&st2, 0, sizeof st2);
            cr_assert_eq(sp_cpu_attention_sprint(&h, &o2s, &err), SP_OK, "%s", err.msg);
            sp_sx_fixed_ref_set(1);
            cr_assert(!memcmp(kept, kept2, (size_t)n * n), "kept masks differ with the online softmax");
            cr_assert_eq(st2.pairs_kept, st.pairs_kept);
            double mf = 0;
            for (size_t t = 0; t < N; t++) mf = th_maxerr(mf, fabs((double)o1[t] - o2[t]));
            cr_assert(mf <= 1e-5, "fixed reference vs online softmax: max |diff| = %g", mf);
            /* these heads are well inside the overflow guard (fixed_ref_ok), so at level avx512
             * with d % 16 == 0 the kernel must have taken the fixed reference: its weights
             * 2^(s - thr) round differently from the online 2^(s - max), so some output bit
             * differs (a guard that never passes would leave the comparison above vacuous) */
            if (sp_cpu_detect() >= SP_CPU_AVX512 && d % 16 == 0)
                cr_assert(memcmp(o1, o2, N * sizeof(float)) != 0, "the fixed reference was not taken (d %d)", d);
        }
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
    const int dflt = sp_sx_dense_min();
    sp_sx_dense_min_set(0);
    all_cases();
    sp_sx_dense_min_set(1 << 20);
    all_cases();
    sp_sx_dense_min_set(dflt);
}

/* The gathered survivors served during the key sweep, in batches (sp_sx_batch_set): with the
 * default batch (1024) the heads above only reach the serving after the last chunk. Every
 * survivor through the gathers, then the mixed default paths, at batches of 16 and 48. */
Test(cpu_sprint, gathered_batches_served_during_the_sweep_match_the_operator) {
    const int dflt = sp_sx_batch(), dm = sp_sx_dense_min();
    sp_sx_dense_min_set(1 << 20);
    /* the knob reaches the kernel: at level avx512 a query whose survivors are served in
     * several calls sums them in other fp32 groupings (each call's two accumulator chains,
     * sprint_fixed_avx512.c), so some output bit differs from one call after the sweep (the
     * portable step sums one key at a time in order, the same bits either way) */
    {
        const int n = 300, d = 64;
        const size_t N = (size_t)n * d;
        float *q = randn(N, 11, 1.0f), *k = randn(N, 12, 1.0f), *v = randn(N, 13, 1.0f);
        float *oa = malloc(N * sizeof(float)), *ob = malloc(N * sizeof(float));
        sp_attn_head h = {.n_q = n, .n_k = n, .d = d, .q = q, .k = k, .v = v, .out = oa, .ldq = d, .ldk = d,
                          .ldv = d, .ldo = d, .causal = 0, .scale = 1.0f / sqrtf((float)d)};
        sp_cpu_sprint_opts o = {.policy = SP_CPU_POLICY_FIXED, .threshold = 0.0, .margin_sigma = 3, .threads = 1};
        sp_error err = {0};
        sp_sx_batch_set(1 << 16);
        cr_assert_eq(sp_cpu_attention_sprint(&h, &o, &err), SP_OK, "%s", err.msg);
        sp_sx_batch_set(16);
        h.out = ob;
        cr_assert_eq(sp_cpu_attention_sprint(&h, &o, &err), SP_OK, "%s", err.msg);
        if (sp_cpu_detect() >= SP_CPU_AVX512)
            cr_assert(memcmp(oa, ob, N * sizeof(float)) != 0, "batches of 16 and of 65536 gave the same bits");
        double md = 0;
        for (size_t t = 0; t < N; t++) md = th_maxerr(md, fabs((double)oa[t] - ob[t]));
        cr_assert(md <= 1e-5, "batches of 16 and 65536: max |diff| = %g", md);
        free(q), free(k), free(v), free(oa), free(ob);
    }
    sp_sx_batch_set(16);
    all_cases();
    sp_sx_batch_set(48);
    all_cases();
    sp_sx_dense_min_set(dm);
    sp_sx_batch_set(16);
    all_cases();
    sp_sx_batch_set(dflt);
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

/* K and V rows off a cache line (a malloc'd array, an odd row stride) are copied onto 64-byte
 * boundaries inside the kernels from 512 queries on (sp_rows_aligned; below, the rows are read
 * as they are): the same bits as from aligned rows, below and above that count, for the flash
 * and the SPRINT kernel, both policies; and the copy itself. */
Test(cpu_sprint, rows_off_a_line_give_the_same_bits) {
    for (int n = 300; n <= 520; n += 220)
        for (int d = 40; d <= 64; d += 24) {
            /* stride d rounded up to 16, 64-byte aligned base: every row on a line; stride d + 3,
             * base 16 bytes off a line */
            const int lds[2] = {(d + 15) / 16 * 16, d + 3};
            float *src[3] = {randn((size_t)n * d, 21, 1.0f), randn((size_t)n * d, 22, 0.5f),
                             randn((size_t)n * d, 23, 1.0f)};
            float *out[2], *x[2][3];
            unsigned char *kept[2];
            for (int a = 0; a < 2; a++) {
                out[a] = malloc((size_t)n * d * sizeof(float));
                kept[a] = malloc((size_t)n * n);
                for (int t = 0; t < 3; t++) {
                    char *base = aligned_alloc(64, ((size_t)n * lds[a] * sizeof(float) + 64 + 63) / 64 * 64);
                    cr_assert(base);
                    x[a][t] = (float *)(void *)(base + (a ? 16 : 0));
                    for (int i = 0; i < n; i++)
                        memcpy(x[a][t] + (size_t)i * lds[a], src[t] + (size_t)i * d, (size_t)d * sizeof(float));
                }
            }
            /* the copy: NULL when every row is on a line; else the rows at a 64-byte boundary,
             * stride d rounded up to 16, padded with 0 */
            int ld2 = -1;
            cr_assert_null(sp_rows_aligned(x[0][1], n, d, lds[0], &ld2));
            cr_assert_eq(ld2, -1, "ld_out written without a copy");
            float *cp = sp_rows_aligned(x[1][1], n, d, lds[1], &ld2);
            cr_assert(cp && (uintptr_t)cp % 64 == 0 && ld2 == (d + 15) / 16 * 16);
            for (int i = 0; i < n; i++)
                for (int c = 0; c < ld2; c++)
                    cr_assert(cp[(size_t)i * ld2 + c] == (c < d ? src[1][(size_t)i * d + c] : 0.0f));
            free(cp);
            for (int causal = 0; causal < 2; causal++)
                for (int kind = 0; kind < 3; kind++) { /* flash, SPRINT fixed, SPRINT relative */
                    sp_attn_stats st[2];
                    memset(st, 0, sizeof st);
                    for (int a = 0; a < 2; a++) {
                        sp_attn_head h = {.n_q = n, .n_k = n, .d = d, .q = x[a][0], .k = x[a][1], .v = x[a][2],
                                          .out = out[a], .ldq = lds[a], .ldk = lds[a], .ldv = lds[a], .ldo = d,
                                          .causal = causal, .scale = 1.0f / sqrtf((float)d)};
                        sp_cpu_sprint_opts o = {.policy = kind == 2 ? SP_CPU_POLICY_RELATIVE : SP_CPU_POLICY_FIXED,
                                                .threshold = 0.5, .delta = 2.0, .margin_sigma = 3, .threads = 1,
                                                .kept = kept[a], .stats = &st[a]};
                        cr_assert_eq(kind == 0 ? sp_cpu_attention_dense(&h, 1, NULL) : sp_cpu_attention_sprint(&h, &o, NULL),
                                     SP_OK);
                    }
                    cr_assert(memcmp(out[0], out[1], (size_t)n * d * sizeof(float)) == 0,
                              "n %d d %d causal %d kernel %d: outputs differ", n, d, causal, kind);
                    if (kind == 0) continue;
                    cr_assert(memcmp(kept[0], kept[1], (size_t)n * n) == 0, "n %d d %d causal %d kernel %d: kept keys differ",
                              n, d, causal, kind);
                    cr_assert(st[0].pairs_kept == st[1].pairs_kept && st[0].pairs_mem_kept == st[1].pairs_mem_kept);
                    cr_assert(st[0].pairs_kept > 0 && st[0].pairs_kept < st[0].pairs_visible, "kept %g of %g",
                              st[0].pairs_kept, st[0].pairs_visible);
                }
            for (int a = 0; a < 2; a++) {
                for (int t = 0; t < 3; t++) free((char *)(void *)x[a][t] - (a ? 16 : 0));
                free(out[a]), free(kept[a]);
            }
            for (int t = 0; t < 3; t++) free(src[t]);
        }
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

/* The input check's row norms as flash.c's scalar max_norm computed them before both kernels
 * shared sp_sx_max_norm_* (8 partial sums per row, the d mod 8 tail into the first, combined
 * pairwise): the order every level must keep. */
static double plain_max_norm(const float *x, int n, int d, int ld, const unsigned char *valid) {
    double mx = 0;
    for (int i = 0; i < n; i++) {
        if (valid && !valid[i]) continue;
        const float *r = x + (size_t)i * (size_t)ld;
        double p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int c = 0;
        for (; c + 8 <= d; c += 8)
            for (int e = 0; e < 8; e++) p[e] += (double)r[c + e] * (double)r[c + e];
        for (; c < d; c++) p[0] += (double)r[c] * (double)r[c];
        const double s = ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
        if (!isfinite(s)) return -1;
        mx = s > mx ? s : mx;
    }
    return sqrt(mx);
}

/* The AVX-512 norms, row by row and 8 rows at a time, on rows whose squares span many binades
 * (so the order of the partial sums shows in the last bits): the plain loop's doubles for d a
 * multiple of 8 (the lane-swap tree) and not (the tail into the first sum). */
Test(cpu_sprint, max_norm_order_on_wide_rows) {
    if (sp_cpu_detect() < SP_CPU_AVX512) cr_skip_test("no AVX-512 here");
    const int ds[] = {8, 16, 17, 64, 72};
    float x[13 * 72];
    int differ = 0; /* rows where a different pairing would have changed the sum */
    for (unsigned di = 0; di < sizeof ds / sizeof *ds; di++)
        for (int trial = 0; trial < 400; trial++) {
            const int d = ds[di], n = 1 + trial % 13;
            for (int i = 0; i < n * d; i++) {
                const uint64_t k = sp_rng_key(77, di, (uint64_t)trial, (uint64_t)i, 0);
                x[i] = (float)ldexp(sp_rng_uniform(k) + 0.5, (int)(sp_rng_uniform(sp_rng_key(78, k, 0, 0, 0)) * 30) - 15);
            }
            for (int i = 0; i < n; i++) {
                const double a = plain_max_norm(x + i * d, 1, d, d, NULL), b = sp_sx_max_norm_avx512(x + i * d, 1, d, d, NULL);
                cr_assert(!memcmp(&a, &b, sizeof a), "d %d trial %d row %d: %.17g vs %.17g", d, trial, i, b, a);
                double p[8] = {0};
                for (int c = 0; c < d; c++) p[c < d / 8 * 8 ? c % 8 : 0] += (double)x[i * d + c] * x[i * d + c];
                differ += ((p[0] + p[2]) + (p[1] + p[3])) + ((p[4] + p[6]) + (p[5] + p[7])) != a * a;
            }
            const double a = plain_max_norm(x, n, d, d, NULL), b = sp_sx_max_norm_avx512(x, n, d, d, NULL);
            cr_assert(!memcmp(&a, &b, sizeof a), "d %d trial %d (%d rows): %.17g vs %.17g", d, trial, n, b, a);
        }
    cr_assert_gt(differ, 100, "the rows do not tell the orders apart (%d)", differ);
}

/* The fused pass (sp_sx_max_norm_amax_*, sp_flash_check_inputs_norms_amax): the norms of the
 * plain loop and the maximum sp_quant_absmax_portable gives, for d with and without a tail
 * (the largest value placed in the tail, in the 8-lane body, in each row position), row
 * strides > d and padding rows holding larger values (skipped). */
Test(cpu_sprint, fused_norm_and_absmax) {
    const int ds[] = {1, 7, 8, 9, 20, 64, 65};
    const int n = 21, ld = 70;
    for (unsigned di = 0; di < sizeof ds / sizeof *ds; di++)
        for (int pos = 0; pos < 25; pos++) {
            const int d = ds[di];
            float *q = randn((size_t)n * ld, 171 + di, 1.0f), *k = randn((size_t)n * ld, 172 + di, 2.0f);
            float *v = randn((size_t)n * ld, 173 + di, 0.5f), *o = calloc((size_t)n * ld, sizeof(float));
            unsigned char qv[21], kv[21];
            for (int i = 0; i < n; i++) qv[i] = i % 5 != 2, kv[i] = i % 4 != 1;
            for (int i = 2; i < n; i += 5) q[(size_t)i * ld] = 1e30f; /* padding: skipped */
            for (int j = 1; j < n; j += 4) k[(size_t)j * ld + d - 1] = -1e30f;
            int row = pos % n, krow = pos % n;
            while (!qv[row]) row = (row + 1) % n;
            while (!kv[krow]) krow = (krow + 1) % n;
            const int col = (pos * 7) % d;
            q[(size_t)row * ld + col] = -9.5f, k[(size_t)krow * ld + (d - 1 - col)] = 17.25f;
            sp_attn_head h = {.n_q = n, .n_k = n, .d = d, .q = q, .k = k, .v = v, .out = o, .ldq = ld, .ldk = ld,
                              .ldv = ld, .ldo = ld, .scale = 0.3f, .query_valid = qv, .key_valid = kv};
            if (pos == 24) { /* no masks: every row counts (the padding values cleared) */
                h.query_valid = NULL, h.key_valid = NULL;
                for (int i = 2; i < n; i += 5) q[(size_t)i * ld] = 0.0f;
                for (int j = 1; j < n; j += 4) k[(size_t)j * ld + d - 1] = 0.0f;
            }
            const float wq = sp_quant_absmax_portable(q, n, d, ld, h.query_valid);
            const float wk = sp_quant_absmax_portable(k, n, d, ld, h.key_valid);
            cr_assert(wq == 9.5f && wk == 17.25f, "d %d pos %d: the planted maxima (%g %g)", d, pos, (double)wq, (double)wk);
            double n0[3], n1[3];
            float am[2] = {-1, -1};
            sp_error e0 = {0}, e1 = {0};
            cr_assert_eq(sp_flash_check_inputs_norms(&h, n0, &e0), SP_OK);
            cr_assert_eq(sp_flash_check_inputs_norms_amax(&h, n1, am, &e1), SP_OK);
            cr_assert(!memcmp(n0, n1, sizeof n0), "d %d pos %d: norms differ", d, pos);
            cr_assert(am[0] == wq && am[1] == wk, "d %d pos %d: amax %g %g vs %g %g", d, pos, (double)am[0],
                      (double)am[1], (double)wq, (double)wk);
            for (int f = 0; f < (sp_cpu_detect() >= SP_CPU_AVX512 ? 2 : 1); f++) {
                float a = -1;
                const double r = (f ? sp_sx_max_norm_amax_avx512 : sp_sx_max_norm_amax_portable)(k, n, d, ld, h.key_valid, &a);
                const double w = plain_max_norm(k, n, d, ld, h.key_valid);
                cr_assert(!memcmp(&r, &w, sizeof r) && a == wk, "d %d pos %d fn %d: %.17g %g vs %.17g %g", d, pos, f, r,
                          (double)a, w, (double)wk);
            }
            free(q), free(k), free(v), free(o);
        }
}

/* The keys' setup in one pass (sp_sx_quant_keys) against the three calls it replaces
 * (sp_quant_rows_tmax, sp_sx_rows_*, sp_iscreen_pack): the same packed bytes, scales, row sums
 * and sums of squares at every level, for d with and without a partial group, key counts
 * that end mid-tile, a row stride > d and padding keys; the buffer starts as garbage. */
Test(cpu_sprint, fused_key_setup_matches_the_three_passes) {
    const int ds[] = {1, 7, 8, 12, 64, 65, 128}, nks[] = {0, 1, 17, 64, 100, 128};
    const sp_cpu_level lvs[] = {SP_CPU_PORTABLE, SP_CPU_AVX512};
    for (unsigned di = 0; di < sizeof ds / sizeof *ds; di++)
        for (unsigned ni = 0; ni < sizeof nks / sizeof *nks; ni++)
            for (int lvi = 0; lvi < (sp_cpu_detect() >= SP_CPU_AVX512 ? 2 : 1); lvi++)
                for (int useval = 0; useval < 2; useval++) {
                    const int d = ds[di], nk = nks[ni], ld = d + 5;
                    const sp_cpu_level lv = lvs[lvi];
                    float *k = randn((size_t)(nk + 1) * ld, 301 + di * 8 + ni, 1.5f);
                    unsigned char *kv = malloc((size_t)nk + 1);
                    for (int j = 0; j <= nk; j++) kv[j] = j % 6 != 4;
                    const unsigned char *valid = useval ? kv : NULL;
                    const float amax = sp_quant_absmax_portable(k, nk, d, ld, valid);
                    const size_t NK = (size_t)(nk > 0 ? nk : 1), PS = sp_iscreen_pack_size(nk, d);
                    int8_t *ki = malloc(NK * (size_t)d);
                    uint8_t *msb = malloc(NK * (size_t)d), *p0 = malloc(PS), *p1 = malloc(PS);
                    float *s0 = malloc(NK * sizeof(float)), *s1 = malloc(NK * sizeof(float));
                    int32_t *a0 = malloc(NK * 4), *b0 = malloc(NK * 4), *a1 = malloc(NK * 4), *b1 = malloc(NK * 4);
                    memset(p1, 0xA5, PS);
                    sp_quant_rows_tmax(lv, k, nk, d, ld, valid, amax, ki, s0);
                    sp_sx_rows_portable(ki, nk, d, msb, a0, b0);
                    sp_iscreen_pack(msb, nk, d, d, p0);
                    sp_sx_quant_keys(lv, k, nk, d, ld, valid, amax, p1, s1, a1, b1);
                    cr_assert(!memcmp(p0, p1, PS), "d %d n_k %d level %d valid %d: packed bytes differ", d, nk, lvi, useval);
                    if (nk > 0) {
                        cr_assert(!memcmp(s0, s1, (size_t)nk * sizeof(float)), "d %d n_k %d: scales", d, nk);
                        cr_assert(!memcmp(a0, a1, (size_t)nk * 4) && !memcmp(b0, b1, (size_t)nk * 4), "d %d n_k %d: sums", d, nk);
                    }
                    free(k), free(kv), free(ki), free(msb), free(p0), free(p1), free(s0), free(s1), free(a0), free(b0), free(a1), free(b1);
                }
}

/* The input check both kernels run (flash.c sp_flash_check_inputs_norms, with sp_sx_max_norm_*)
 * against the plain loop above: the same norms to the bit at the portable and the AVX-512 level,
 * on random heads (d 1-130, row strides larger than d, padding rows holding NaN, infinities and
 * the largest values, which the check skips), then a NaN or an infinity in a valid row of Q, K
 * or V, and values whose scores could leave fp32; sp_cpu_attention_sprint gives flash's status
 * and message. */
Test(cpu_sprint, input_check_matches_flash) {
    const int ds[] = {1, 7, 8, 9, 20, 64, 65, 130};
    const int n = 23, ld = 140;
    for (unsigned di = 0; di < sizeof ds / sizeof *ds; di++)
        for (int c = 0; c < 9; c++) {
            const int d = ds[di];
            float *q = randn((size_t)n * ld, 71 + di, 1.0f), *k = randn((size_t)(n + 2) * ld, 72 + di, 2.0f);
            float *v = randn((size_t)(n + 2) * ld, 73 + di, 0.5f), *o = calloc((size_t)n * ld, sizeof(float));
            unsigned char qv[23], kv[25];
            for (int i = 0; i < n; i++) qv[i] = i % 5 != 2;
            for (int j = 0; j < n + 2; j++) kv[j] = j % 4 != 1;
            for (int i = 2; i < n; i += 5) q[(size_t)i * ld + d - 1] = NAN, q[(size_t)i * ld] = 1e30f;
            for (int j = 1; j < n + 2; j += 4) k[(size_t)j * ld] = INFINITY, v[(size_t)j * ld + d - 1] = NAN;
            if (d == 9) /* row 0, the largest: 64^2 (1 + 0.6 u + 0.6 u) sums to 64^2 (1 + 2 u) in this order only */
                for (float *x = q; x; x = x == q ? k : x == k ? v : NULL) {
                    for (int t = 0; t < 9; t++) x[t] = 0.0f;
                    x[0] = 64.0f, x[1] = x[8] = 64.0f * (float)(sqrt(0.6) * 0x1p-26);
                }
            if (c >= 3 && c <= 5) (c == 3 ? q : c == 4 ? k : v)[(size_t)(n - 3) * ld + d / 2] = c == 4 ? -INFINITY : NAN;
            if (c == 6) q[(size_t)6 * ld] = 2e19f, k[(size_t)8 * ld] = 2e19f; /* scores beyond fp32 */
            if (c == 7) v[(size_t)10 * ld] = 1e37f;                             /* sums beyond fp32 */
            if (c == 8) q[(size_t)3 * ld + d - 1] = -7e3f;                      /* a large norm, in range */
            sp_attn_head h = {.n_q = n, .n_k = n + 2, .d = d, .q = q, .k = k, .v = v, .out = o, .ldq = ld, .ldk = ld,
                              .ldv = ld, .ldo = ld, .scale = 0.3f, .query_valid = qv, .key_valid = kv,
                              .layer = 2, .head = 5};
            if (c == 1) h.query_valid = NULL, h.key_valid = NULL; /* every row checked: NaN found */
            double nf[3], ns[3];
            sp_error ef = {0}, es = {0};
            const sp_status sf = sp_flash_check_inputs_norms(&h, nf, &ef);
            double (*const fn[2])(const float *, int, int, int, const unsigned char *) = {sp_sx_max_norm_portable,
                                                                                           sp_sx_max_norm_avx512};
            const double want[3] = {plain_max_norm(h.q, h.n_q, d, ld, h.query_valid),
                                    plain_max_norm(h.k, h.n_k, d, ld, h.key_valid),
                                    plain_max_norm(h.v, h.n_k, d, ld, h.key_valid)};
            for (int t = 0; t < 3; t++) /* flash sets all three norms before it judges them */
                cr_assert(!memcmp(&nf[t], &want[t], sizeof(double)), "d %d case %d norm %d: flash %.17g vs %.17g", d, c,
                          t, nf[t], want[t]);
            if (d == 9 && (c == 0 || c == 2)) /* row 0 is the largest of each tensor: 64^2 (1 + 2 u) exactly */
                for (int t = 0; t < 3; t++)
                    cr_assert(want[t] == sqrt(4096.0 * (1.0 + 0x1p-51)), "d 9 case %d norm %d: %.17g", c, t, want[t]);
            for (int f = 0; f < (sp_cpu_detect() >= SP_CPU_AVX512 ? 2 : 1); f++) {
                ns[0] = fn[f](h.q, h.n_q, d, ld, h.query_valid), ns[1] = fn[f](h.k, h.n_k, d, ld, h.key_valid);
                ns[2] = fn[f](h.v, h.n_k, d, ld, h.key_valid);
                for (int t = 0; t < 3; t++)
                    cr_assert(!memcmp(&want[t], &ns[t], sizeof(double)), "d %d case %d fn %d norm %d: %.17g vs %.17g",
                              d, c, f, t, ns[t], want[t]);
            }
            sp_cpu_sprint_opts so = {.policy = SP_CPU_POLICY_FIXED, .threshold = 0.0, .margin_sigma = 3, .threads = 1};
            const sp_status ss = sp_cpu_attention_sprint(&h, &so, &es);
            cr_assert_eq(ss, sf, "d %d case %d: status %d vs flash %d (%s)", d, c, (int)ss, (int)sf, es.msg);
            if (sf != SP_OK) cr_assert_str_eq(es.msg, ef.msg, "d %d case %d", d, c);
            cr_assert_eq(sf == SP_OK, c == 0 || c == 2 || c == 8, "d %d case %d: status %d (%s)", d, c, (int)sf, ef.msg);
            free(q), free(k), free(v), free(o);
        }
}

/* The online-softmax chunk step (sprint_exact.h) at the detected level against the portable one
 * and against a double softmax over the same kept keys: random survivor lists fed in pieces of
 * 1..46 keys (partial and full score trees, rescales when a later piece holds a larger score),
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
    /* the online steps, then the fixed-reference steps (m = thr, never changed) */
    sp_sx_chunk_fn fns[4] = {sp_sx_chunk_portable, sp_sx_chunk_for(sp_cpu_detect(), d), sp_sx_chunk_fixed_portable,
                             sp_cpu_detect() >= SP_CPU_AVX512 && d % 16 == 0 ? sp_sx_chunk_fixed_avx512
                                                                              : sp_sx_chunk_fixed_portable};
    float out[4][128];
    int nkept[4] = {0, 0, 0, 0};
    for (int f = 0; f < 4; f++) {
        float m = f < 2 ? -INFINITY : thr, l = 0, acc[128] = {0};
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
            if (f >= 2) cr_assert_eq(m, thr, "the fixed reference changed");
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
    for (int f = 1; f < 4; f++) {
        cr_assert(abs(nkept[0] - nkept[f]) <= 1, "kept %d (portable) vs %d (step %d)", nkept[0], nkept[f], f);
        for (int c = 0; c < d; c++) cr_assert_float_eq(out[0][c], out[f][c], 2e-5, "step %d [%d]", f, c);
    }
    free(q), free(k), free(v), free(idx), free(kept), free(sbuf);
}

Test(cpu_sprint, chunk_step_matches_portable_and_reference) {
    chunk_case(64, 700, 0.3, 21);
    chunk_case(64, 97, 0.9, 22);
    chunk_case(48, 300, 0.5, 23);
    chunk_case(128, 400, 0.2, 24);
}

/* The software-pipelined fixed-reference chunk step (next 16 survivors' scores before this 16's
 * weighted sum) gives the bits of the same step in serial order: survivor lists of 1..70 keys
 * (one partial group, several full ones, a partial last one), about half kept, d = 64. */
Test(cpu_sprint, pipelined_chunk_step_changes_no_bit) {
    if (sp_cpu_detect() < SP_CPU_AVX512) cr_skip_test("no AVX-512 on this CPU (the pipelined step is AVX-512 only)");
    const int d = 64, nk = 500;
    float *q = randn((size_t)d, 41, 1.0f), *k = randn((size_t)nk * d, 42, 1.0f), *v = randn((size_t)nk * d, 43, 1.0f);
    int32_t idx[80], kp[2][96];
    float sbuf[96];
    int kept_total = 0, total = 0;
    for (int n = 1; n <= 70; n++) {
        for (int t = 0, key = n % 5; t < n; t++, key += 1 + (int)(sp_rng_uniform(sp_rng_key(44, (uint64_t)n, (uint64_t)t, 0, 0)) * 6))
            idx[t] = key;
        float acc[2][64], l[2] = {0.75f, 0.75f};
        for (int c = 0; c < d; c++) acc[0][c] = acc[1][c] = 0.125f * (float)(c - 20);
        int r[2];
        for (int f = 0; f < 2; f++) {
            float m = 0.1f;
            r[f] = (f ? sp_sx_chunk_fixed_avx512_serial : sp_sx_chunk_fixed_avx512)(q, k, d, v, d, d, idx, n, 0.1f, &m,
                                                                                     &l[f], acc[f], sbuf, kp[f]);
        }
        cr_assert_eq(r[0], r[1], "n %d: kept %d vs %d", n, r[0], r[1]);
        cr_assert(!memcmp(kp[0], kp[1], (size_t)r[0] * sizeof(int32_t)), "n %d: kept keys differ", n);
        cr_assert(!memcmp(acc[0], acc[1], sizeof acc[0]), "n %d: output bits differ", n);
        cr_assert(l[0] == l[1], "n %d: l %.9g vs %.9g", n, (double)l[0], (double)l[1]);
        kept_total += r[0], total += n;
    }
    cr_assert(kept_total > total / 5 && kept_total < total, "vacuous: kept %d of %d", kept_total, total);
    free(q), free(k), free(v);
}

/* The dense-panel test of the digital stage (sp_sx_dense_panels, sprint_exact.h) against scalar
 * popcounts of the 4 rows' 16-bit fields, for thresholds 0 (any survivor), 1, 24 and 64 and
 * random words of every density, including all-ones (count 64). */
Test(cpu_sprint, dense_panels_match_scalar_counts) {
    const int dms[] = {0, 1, 23, 24, 25, 64};
    int dense_seen = 0, sparse_seen = 0;
    for (int it = 0; it < 4000; it++) {
        uint64_t r[4];
        for (int i = 0; i < 4; i++) {
            uint64_t a = sp_hash64((uint64_t)it * 4 + (uint64_t)i), b = sp_hash64(a), c = sp_hash64(b);
            switch (it % 4) { /* densities ~1/8, 1/2, 7/8 and full */
            case 0: r[i] = a & b & c; break;
            case 1: r[i] = a; break;
            case 2: r[i] = a | b | c; break;
            default: r[i] = it % 8 == 3 ? ~(uint64_t)0 : a | b;
            }
        }
        for (size_t t = 0; t < sizeof dms / sizeof dms[0]; t++) {
            const uint64_t got = sp_sx_dense_panels(r[0], r[1], r[2], r[3], dms[t]);
            for (int p = 0; p < 4; p++) {
                int cnt = 0;
                for (int i = 0; i < 4; i++) cnt += __builtin_popcountll((r[i] >> (16 * p)) & 0xFFFF);
                const int want = cnt >= (dms[t] > 1 ? dms[t] : 1);
                cr_assert_eq((int)((got >> (16 * p + 15)) & 1), want, "it %d dense_min %d panel %d: count %d", it,
                             dms[t], p, cnt);
                dense_seen += want, sparse_seen += !want;
            }
            cr_assert_eq(got & ~0x8000800080008000ull, 0, "bits outside the field tops");
        }
    }
    cr_assert(dense_seen > 1000 && sparse_seen > 1000, "vacuous");
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

/* The kernel's own AVX-512 setup (sprint_setup_avx512.c) byte for byte against the portable
 * quantiser and row loops: random rows (d = 64, 20, 130; padding rows), ties at scale 1, and
 * ties at the scale 133.33f / 127, where x * (1 / s) misses the exact quotient +-1/2 (it gives
 * 0.49999999999999994 for x = 0.524921238f) and only the exact division of the tie check gives
 * the portable bytes. */
Test(cpu_sprint, setup_avx512_matches_portable) {
    if (sp_cpu_detect() < SP_CPU_AVX512) {
        cr_log_info("no AVX-512: skipped");
        return;
    }
    const int n = 37, ds[3] = {64, 20, 130}, ld = 140;
    float *x = randn((size_t)n * ld, 61, 2.0f);
    unsigned char valid[37];
    for (int i = 0; i < n; i++) valid[i] = i % 5 != 3;
    int8_t *a = malloc((size_t)n * ld), *b = malloc((size_t)n * ld);
    uint8_t *ma = malloc((size_t)n * ld), *mb = malloc((size_t)n * ld);
    for (int t = 0; t < 4; t++) {
        if (t == 2) /* ties at scale 1: |x| <= 126.5, max 127 */
            for (int i = 0; i < n * ld; i++) x[i] = (float)((i % 254) - 127) + ((i % 3) ? 0.5f : 0.0f);
        if (t == 3) /* quotients k + 1/2 at the scale 133.33f / 127 */
            for (int i = 0; i < n * ld; i++) x[i] = (float)((double)((i % 9) - 4 + 0.5) * (double)(133.33f / 127.0f));
        if (t >= 2) x[0] = t == 2 ? 127.0f : 133.33f;
        for (int di = 0; di < 3; di++) {
            const int d = ds[di];
            float sa[37], sb[37];
            const unsigned char *vm = t == 1 ? valid : NULL;
            sp_quant_rows_level(SP_CPU_PORTABLE, x, n, d, ld, 0, vm, a, sa);
            sp_quant_rows_level(SP_CPU_AVX512, x, n, d, ld, 0, vm, b, sb);
            cr_assert(!memcmp(sa, sb, sizeof sa), "scales differ (case %d, d %d)", t, d);
            for (int i = 0; i < n * d; i++) cr_assert_eq(a[i], b[i], "case %d d %d [%d]: %d vs %d", t, d, i, a[i], b[i]);
            if (t == 3) cr_assert_eq(sa[0], 133.33f / 127.0f);
            int32_t s1[37], q1[37], s2[37], q2[37];
            sp_sx_rows_portable(a, n, d, ma, s1, q1);
            sp_sx_rows_avx512(a, n, d, mb, s2, q2);
            cr_assert(!memcmp(ma, mb, (size_t)n * d), "MSB levels differ (case %d, d %d)", t, d);
            cr_assert(!memcmp(s1, s2, sizeof s1) && !memcmp(q1, q2, sizeof q1), "row sums differ (case %d, d %d)", t, d);
            sp_sx_rows_avx512(a, n, d, NULL, s2, q2);
            cr_assert(!memcmp(s1, s2, sizeof s1) && !memcmp(q1, q2, sizeof q1), "row sums differ without MSBs");
        }
    }
    free(x), free(a), free(b), free(ma), free(mb);
}

/* The tensor maximum the kernel's quantisation takes (sp_quant_absmax_*, inside sp_quant_rows_level)
 * gives sp_quant_rows' per-tensor scale: random rows at d 1-130 (masked tails), a row stride
 * larger than d, invalid rows holding NaN and huge values (skipped), the largest |x| placed in
 * the last element of a row, negative, and all-zero / no valid rows (scale 1). */
Test(cpu_sprint, tensor_max_matches_sp_quant_rows) {
    const int n = 29, ld = 140, ds[] = {1, 5, 16, 17, 20, 63, 64, 65, 100, 130};
    float *x = randn((size_t)n * ld, 77, 1.5f);
    unsigned char valid[29], none[29];
    memset(none, 0, sizeof none);
    for (int i = 0; i < n; i++) valid[i] = i % 4 != 1;
    int8_t *qi = malloc((size_t)n * ld);
    for (unsigned t = 0; t < sizeof ds / sizeof *ds; t++)
        for (int c = 0; c < 4; c++) {
            const int d = ds[t];
            const unsigned char *vm = c == 1 || c == 2 ? valid : c == 3 ? none : NULL;
            float *y = malloc((size_t)n * ld * sizeof *y);
            memcpy(y, x, (size_t)n * ld * sizeof *y);
            if (c >= 1) /* invalid rows: NaN and values that would win the maximum */
                for (int i = 1; i < n; i += 4) y[(size_t)i * ld] = NAN, y[(size_t)i * ld + d - 1] = -1e30f;
            if (c == 2) y[(size_t)(n - 1) * ld + d - 1] = -9.75f; /* the largest valid |x|, last element */
            float sc[29];
            sp_quant_rows_level(SP_CPU_PORTABLE, y, n, d, ld, 0, vm, qi, sc);
            const float mp = sp_quant_absmax_portable(y, n, d, ld, vm), ma = sp_quant_absmax_avx512(y, n, d, ld, vm);
            const float sp = mp > 0.0f ? mp / 127.0f : 1.0f;
            cr_assert_eq(sp, sc[0], "d %d case %d: portable max %g gives scale %g, sp_quant_rows %g", d, c, (double)mp,
                         (double)sp, (double)sc[0]);
            if (sp_cpu_detect() >= SP_CPU_AVX512)
                cr_assert_eq(ma, mp, "d %d case %d: avx512 max %g vs portable %g", d, c, (double)ma, (double)mp);
            if (c == 2) cr_assert_eq(mp, 9.75f);
            if (c == 3) cr_assert_eq(mp, 0.0f);
            free(y);
        }
    free(x), free(qi);
}

/* A fixed-reference tile of 1-3 panels (nkc 16, 32, 48: the query group's last tile, which
 * scores only its panels) gives the bits of the 4-panel tile with every row limited to those
 * panels (lim = nkc), at d 64, 48 and 128: the same kept masks, sums and outputs. */
Test(cpu_sprint, partial_fixed_tile_matches_the_limited_full_tile) {
    if (sp_cpu_detect() < SP_CPU_AVX512) {
        cr_log_info("no AVX-512: skipped");
        return;
    }
    const int ds[3] = {64, 48, 128};
    for (int di = 0; di < 3; di++)
        for (int np = 1; np <= 3; np++) {
            const int d = ds[di], nk = 128;
            float *q = randn((size_t)4 * d, 51 + di, 1.0f), *k = randn((size_t)nk * d, 52 + di, 1.0f);
            float *v = randn((size_t)nk * d, 53 + di, 1.0f), *kp = malloc(sp_flash_kpack_size(nk, d) * sizeof(float));
            sp_flash_pack_k(k, d, nk, d, kp);
            for (int c = 0; c < 4 * d; c++) q[c] *= 1.4426950408889634f;
            float o[2][4 * 128], l[2][4], m[4] = {-0.3f, 0.1f, -1.0f, 0.4f};
            uint64_t kept[2][4];
            for (int f = 0; f < 2; f++) {
                int32_t vidx[64];
                uint64_t rmask[4];
                memset(o[f], 0, sizeof o[f]);
                sp_flash_tile t = {.d = d, .nkc = f == 0 ? 16 * np : 64, .v = v, .ldv = d, .vidx = vidx,
                                   .rmask = rmask, .m = m, .l = l[f], .o = o[f]};
                for (int p = 0; p < 4; p++) {
                    const int pan = (int[]){6, 1, 4, 3}[p];
                    t.kpan[p] = kp + (size_t)pan * d * 16;
                    for (int u = 0; u < 16; u++) vidx[16 * p + u] = 16 * pan + u;
                }
                for (int r = 0; r < 4; r++) {
                    l[f][r] = 0.5f;
                    t.q[r] = q + r * d;
                    t.lim[r] = r == 2 && np > 1 ? 16 * np - 5 : f == 0 ? 64 : 16 * np; /* row 2: a shorter row */
                    t.thr[r] = m[r];
                    rmask[r] = 0;
                    for (int u = 0; u < 64; u++)
                        rmask[r] |= (uint64_t)(sp_rng_uniform(sp_rng_key(54, (uint64_t)r, (uint64_t)u, (uint64_t)np, 0)) < 0.7) << u;
                }
                sp_sx_tile_fixed_avx512(&t);
                for (int r = 0; r < 4; r++) kept[f][r] = t.kept[r];
            }
            for (int r = 0; r < 4; r++) {
                cr_assert_eq(kept[0][r], kept[1][r], "d %d panels %d row %d: kept masks differ", d, np, r);
                cr_assert(kept[0][r] >> (16 * np) == 0, "d %d panels %d row %d: a key past the panels kept", d, np, r);
                cr_assert(!memcmp(&l[0][r], &l[1][r], sizeof(float)), "d %d panels %d row %d: sums differ", d, np, r);
            }
            cr_assert(!memcmp(o[0], o[1], (size_t)4 * d * sizeof(float)), "d %d panels %d: outputs differ", d, np);
            cr_assert(kept[0][0] | kept[0][1] | kept[0][2] | kept[0][3], "vacuous: nothing kept");
            free(q), free(k), free(v), free(kp);
        }
}

/* The fixed-reference tile (sprint_exact.h) at the detected level against its plain-loop
 * version and against a double softmax over the kept keys: 4 rows x 4 panels picked from 8,
 * V rows by index, row masks, row limits, thresholds, several tiles folded in a row. */
Test(cpu_sprint, fixed_reference_tile_matches_portable_and_reference) {
    const int ds[3] = {64, 48, 128};
    for (int di = 0; di < 3; di++) {
        const int d = ds[di], nk = 128;
        float *q = randn((size_t)4 * d, 41 + di, 1.0f), *k = randn((size_t)nk * d, 42 + di, 1.0f);
        float *v = randn((size_t)nk * d, 43 + di, 1.0f), *kp = malloc(sp_flash_kpack_size(nk, d) * sizeof(float));
        sp_flash_pack_k(k, d, nk, d, kp);
        for (int r = 0; r < 4; r++)
            for (int c = 0; c < d; c++) q[r * d + c] *= 1.4426950408889634f; /* scores in log2 units */
        const float thr[4] = {0.2f, -0.5f, 1.0f, INFINITY}; /* row 3: a scratch row, keeps nothing */
        void (*fns[2])(sp_flash_tile *) = {sp_sx_tile_fixed_portable, sp_cpu_detect() >= SP_CPU_AVX512 && d % 16 == 0
                                                                           ? sp_sx_tile_fixed_avx512
                                                                           : sp_sx_tile_fixed_portable};
        float o[2][4 * 128], lsum[2][4];
        uint64_t kept[2][2][4];
        for (int f = 0; f < 2; f++) {
            float m[4] = {thr[0], thr[1], thr[2], 0.0f}, *l = lsum[f];
            for (int r = 0; r < 4; r++) l[r] = 0;
            memset(o[f], 0, sizeof o[f]);
            for (int pass = 0; pass < 2; pass++) { /* panels 0-3, then 7, 5, 6, 4 */
                int32_t vidx[64];
                uint64_t rmask[4];
                sp_flash_tile t = {.d = d, .nkc = 64, .v = v, .ldv = d, .vidx = vidx, .rmask = rmask, .m = m, .l = l,
                                   .o = o[f]};
                for (int p = 0; p < 4; p++) {
                    int pan = pass == 0 ? p : (int[]){7, 5, 6, 4}[p];
                    t.kpan[p] = kp + (size_t)pan * d * 16;
                    for (int u = 0; u < 16; u++) vidx[16 * p + u] = 16 * pan + u;
                }
                for (int r = 0; r < 4; r++) {
                    t.q[r] = q + r * d;
                    t.lim[r] = pass == 1 && r == 1 ? 37 : 64;
                    t.thr[r] = thr[r];
                    rmask[r] = 0;
                    for (int u = 0; u < 64; u++)
                        rmask[r] |= (uint64_t)(sp_rng_uniform(sp_rng_key(44, (uint64_t)r, (uint64_t)u, (uint64_t)pass, 0)) < 0.6) << u;
                }
                fns[f](&t);
                for (int r = 0; r < 4; r++) kept[f][pass][r] = t.kept[r];
                for (int r = 0; r < 4; r++) cr_assert_eq(m[r], r < 3 ? thr[r] : 0.0f, "the fixed reference changed");
            }
        }
        for (int pass = 0; pass < 2; pass++)
            for (int r = 0; r < 4; r++) {
                /* the same kept keys up to float rounding at the threshold */
                cr_assert(__builtin_popcountll(kept[0][pass][r] ^ kept[1][pass][r]) <= 1, "row %d pass %d kept masks", r, pass);
                cr_assert(r < 3 ? kept[0][pass][r] != 0 : kept[0][pass][r] == 0, "vacuous or scratch row kept");
            }
        /* double softmax over the portable tile's kept keys */
        for (int r = 0; r < 3; r++) {
            double den = 0, ref[128] = {0}, mx = -INFINITY, sc[128];
            int keys[128], nkk = 0;
            for (int pass = 0; pass < 2; pass++)
                for (uint64_t b = kept[0][pass][r]; b; b &= b - 1) {
                    int u = __builtin_ctzll(b), pan = pass == 0 ? u / 16 : (int[]){7, 5, 6, 4}[u / 16];
                    int j = 16 * pan + u % 16;
                    double s = 0;
                    for (int c = 0; c < d; c++) s += (double)q[r * d + c] * k[(size_t)j * d + c];
                    cr_assert(s >= thr[r] - 1e-5, "key %d kept below the threshold", j);
                    sc[nkk] = s, keys[nkk++] = j;
                    mx = s > mx ? s : mx;
                }
            for (int t = 0; t < nkk; t++) {
                double p = exp2(sc[t] - mx);
                den += p;
                for (int c = 0; c < d; c++) ref[c] += p * v[(size_t)keys[t] * d + c];
            }
            for (int f = 0; f < 2; f++) {
                double md = 0;
                for (int c = 0; c < d; c++) md = th_maxerr(md, fabs(o[f][r * d + c] / lsum[f][r] - ref[c] / den));
                cr_assert(md < 2e-5, "d %d row %d level %d: max |out - double reference| = %g", d, r, f, md);
            }
        }
        cr_assert_eq(lsum[0][3], 0.0f);
        free(q), free(k), free(v), free(kp);
    }
}

/* Scores far above the threshold (|q| |k| scale log2 e ~ 400): 2^(s - thr) would overflow
 * fp32, so the kernel must not take the fixed reference (sprint_cpu.c fixed_ref_ok) and its
 * output must still be the softmax over its kept keys. */
Test(cpu_sprint, fixed_reference_guard_against_overflow) {
    const int n = 96, d = 64;
    const size_t N = (size_t)n * d;
    float *q = randn(N, 51, 6.0f), *k = randn(N, 52, 6.0f), *v = randn(N, 53, 1.0f), *o1 = malloc(N * sizeof(float));
    unsigned char *kept = malloc((size_t)n * n);
    sp_attn_head h = {.n_q = n, .n_k = n, .d = d, .q = q, .k = k, .v = v, .out = o1, .ldq = d, .ldk = d, .ldv = d,
                      .ldo = d, .scale = 0.125f};
    sp_cpu_sprint_opts o = {.policy = SP_CPU_POLICY_FIXED, .threshold = 20.0, .margin_sigma = 3, .threads = 1,
                            .kept = kept};
    cr_assert_eq(sp_cpu_attention_sprint(&h, &o, NULL), SP_OK);
    double md = 0;
    long nkept = 0;
    for (int i = 0; i < n; i++) {
        double sc[96], mx = -INFINITY, den = 0, ref[64] = {0};
        for (int j = 0; j < n; j++) {
            sc[j] = -INFINITY;
            if (!kept[(size_t)i * n + j]) continue;
            nkept++;
            double s = 0;
            for (int c = 0; c < d; c++) s += (double)q[(size_t)i * d + c] * k[(size_t)j * d + c];
            sc[j] = s * 0.125;
            mx = sc[j] > mx ? sc[j] : mx;
        }
        for (int j = 0; j < n; j++) {
            if (sc[j] == -INFINITY) continue;
            double p = exp(sc[j] - mx);
            den += p;
            for (int c = 0; c < d; c++) ref[c] += p * v[(size_t)j * d + c];
        }
        for (int c = 0; c < d && den > 0; c++) md = th_maxerr(md, fabs(o1[(size_t)i * d + c] - ref[c] / den));
    }
    cr_assert(nkept > n && nkept < (long)n * n, "vacuous: kept %ld", nkept);
    cr_assert(md < 1e-4, "max |out - double reference| = %g", md);
    free(q), free(k), free(v), free(o1), free(kept);
}

/* sp_quant_rows_level at level avx512 (the reciprocal quantiser) byte for byte against the portable level on the rows x
 * (n, d; max |x| = mx). */
static void quant_bytes_match(const float *x, int n, int d, float mx) {
    int8_t a[5 * 24], b[5 * 24];
    float sa[5], sb[5];
    cr_assert(n <= 5 && n * d <= 5 * 24);
    sp_quant_rows_level(SP_CPU_PORTABLE, x, n, d, d, 0, NULL, a, sa);
    sp_quant_rows_level(SP_CPU_AVX512, x, n, d, d, 0, NULL, b, sb);
    cr_assert(!memcmp(sa, sb, (size_t)n * sizeof *sa), "max %a: scales differ", (double)mx);
    for (int i = 0; i < n * d; i++)
        cr_assert_eq(a[i], b[i], "max %a (scale %a) x[%d] = %a: %d vs %d", (double)mx, (double)sa[0], i, (double)x[i],
                     a[i], b[i]);
}

/* The kernel's AVX-512 quantiser (sprint_setup_avx512.c) at the edges of the float range,
 * byte for byte against sp_quant_rows_level at level avx512 (what the kernel ran before it):
 * maxima whose scale max / 127 is a subnormal float (the quotients then reach past 128), whose
 * scale underflows to 0 (max <= 2^-143: the division gives +-inf, clamped, and 0 / 0 = NaN,
 * stored as 0), and near FLT_MAX; half-integers of the scale and their float neighbours, and
 * subnormal elements. */
Test(cpu_sprint, setup_avx512_quantisation_at_extreme_scales) {
    if (sp_cpu_detect() < SP_CPU_AVX512) {
        cr_log_info("no AVX-512: skipped");
        return;
    }
    const int n = 5, d = 24;
    const float maxima[] = {0x1p-149f, 0x1p-146f, 0x1.8p-144f, 0x1p-143f, 0x1p-140f, 0x1.2p-130f,
                            0x1p-126f, 3e-39f, 1e-30f, 1.0f, 1e30f, 3.4e38f};
    float x[5 * 24];
    for (size_t mi = 0; mi < sizeof maxima / sizeof *maxima; mi++) {
        const float mx = maxima[mi], s = mx / 127.0f;
        for (int i = 0; i < n * d; i++) {
            /* half-integers k + 1/2 of the scale, their float neighbours, plain fractions,
             * zeros, the smallest subnormals */
            const double hk = (double)((i % 11) - 5) + 0.5;
            float v = s > 0 ? (float)(hk * (double)s) : 0.0f;
            if (i % 4 == 1) v = nextafterf(v, INFINITY);
            if (i % 4 == 2) v = nextafterf(v, -INFINITY);
            if (i % 7 == 3) v = (float)((double)mx * ((i % 13) - 6) / 6.5);
            if (i % 9 == 4) v = 0.0f;
            if (i % 10 == 5) v = (i & 1 ? -1 : 1) * 0x1p-149f;
            if (fabsf(v) > mx) v = copysignf(mx, v);
            x[i] = v;
        }
        x[3] = -mx;
        quant_bytes_match(x, n, d, mx);
    }
    /* 400 random maxima over the whole float range (2^-150 .. 2^129), elements k + 1/2 or k
     * of the scale moved by 0 .. 3 ulp either way (the tie window is 2^-30, the product's
     * error < 2^-43: every value near a tie must come out as the division gives it) */
    for (int it = 0; it < 400; it++) {
        const uint64_t key = sp_rng_key(71, (uint64_t)it, 0, 0, 0);
        const float mx = ldexpf(1.0f + (float)sp_rng_uniform(key), (int)(sp_rng_uniform(key + 1) * 280) - 150);
        if (!(mx > 0.0f) || isinf(mx)) continue;
        const float s = mx / 127.0f;
        for (int i = 0; i < n * d; i++) {
            const uint64_t ki = sp_rng_key(72, (uint64_t)it, (uint64_t)i, 0, 0);
            const double k = floor(sp_rng_uniform(ki) * 255.0) - 127.0 + (sp_rng_uniform(ki + 1) < 0.75 ? 0.5 : 0.0);
            float v = (float)(k * (double)s);
            for (int u = (int)(sp_rng_uniform(ki + 2) * 7.0) - 3; u != 0; u += u > 0 ? -1 : 1)
                v = nextafterf(v, u > 0 ? INFINITY : -INFINITY);
            x[i] = fabsf(v) > mx ? copysignf(mx, v) : v;
        }
        x[0] = mx;
        quant_bytes_match(x, n, d, mx);
    }
}

/* The overflow guard at its edge (sprint_cpu.c fixed_ref_ok: (|q| |k| scale log2 e 1.01 + 1
 * - thr log2 e) + log2(n_k + 1) + log2 max(|v|, 1) <= 120): thresholds putting that value
 * 0.05 below and 0.05 above 120. Below, the kernel must take the fixed reference (some output
 * bit differs from the online softmax, forced with sp_sx_fixed_ref_set(0)); above, it must
 * not (the same bits). Both keep every key (the thresholds are ~80 below every score). */
Test(cpu_sprint, fixed_reference_guard_boundary) {
    if (sp_cpu_detect() < SP_CPU_AVX512) {
        cr_log_info("no AVX-512: the fixed reference is never used; skipped");
        return;
    }
    const int n = 64, d = 64;
    const size_t N = (size_t)n * d;
    float *q = randn(N, 81, 1.0f), *k = randn(N, 82, 1.0f), *v = randn(N, 83, 3.0f);
    float *o1 = malloc(N * sizeof(float)), *o2 = malloc(N * sizeof(float));
    sp_attn_head h = {.n_q = n, .n_k = n, .d = d, .q = q, .k = k, .v = v, .out = o1, .ldq = d, .ldk = d, .ldv = d,
                      .ldo = d, .scale = 0.125f};
    double nrm[3];
    cr_assert_eq(sp_flash_check_inputs_norms(&h, nrm, NULL), SP_OK);
    cr_assert(nrm[2] > 1.0, "V norm %g: the log2 |v| term would be vacuous", nrm[2]);
    const double L2E = 1.4426950408889634;
    const double u2 = nrm[0] * nrm[1] * 0.125 * L2E * 1.01 + 1.0, rest = log2((double)n + 1.0) + log2(nrm[2]);
    for (int side = 0; side < 2; side++) {
        const double thr2 = u2 + rest - 120.0 + (side ? -0.05 : 0.05); /* side 1: the value is 120.05 */
        sp_attn_stats st = {0};
        sp_cpu_sprint_opts o = {.policy = SP_CPU_POLICY_FIXED, .threshold = thr2 / L2E, .margin_sigma = 3,
                                .threads = 1, .stats = &st};
        h.out = o1;
        cr_assert_eq(sp_cpu_attention_sprint(&h, &o, NULL), SP_OK);
        cr_assert_eq(st.pairs_kept, (double)n * n, "side %d: kept %.0f of %d", side, st.pairs_kept, n * n);
        sp_sx_fixed_ref_set(0);
        h.out = o2;
        cr_assert_eq(sp_cpu_attention_sprint(&h, &o, NULL), SP_OK);
        sp_sx_fixed_ref_set(1);
        const int differ = memcmp(o1, o2, N * sizeof(float)) != 0;
        cr_assert_eq(differ, !side, "guard value 120 %c 0.05: the fixed reference was %s", side ? '+' : '-',
                     differ ? "taken" : "not taken");
        for (size_t t = 0; t < N; t++) cr_assert(isfinite(o1[t]), "side %d: non-finite output", side);
    }
    free(q), free(k), free(v), free(o1), free(o2);
}

/* Bit-mask-to-index lists: the AVX-512 and AVX512_VBMI2 versions give the portable loop's list
 * (same keys, ascending, same count) over random words of every density, all-zero and all-one
 * words, single edge bits (0, 15, 16, 63) and 16-bit piece boundaries, and never write past
 * 64 nw + 16 entries. */
static uint64_t rand_word(uint64_t seed, int u) {
    static const uint64_t EDGE[] = {0, ~(uint64_t)0, 1, (uint64_t)1 << 63, (uint64_t)1 << 15, (uint64_t)1 << 16,
                                    0xFFFFull, 0xFFFF000000000000ull, 0x8000000000000001ull, 0x5555555555555555ull,
                                    0xAAAAAAAAAAAAAAAAull, 0x0001800000018000ull};
    const uint64_t h = sp_hash64(sp_rng_key(seed, 31, (uint64_t)u, 0, 0));
    const int kind = (int)(h % 4);
    if (kind == 0) return EDGE[(h >> 8) % (sizeof EDGE / sizeof *EDGE)];
    uint64_t w = 0; /* density 1/64 .. 63/64 */
    const double p = (double)((h >> 8) % 63 + 1) / 64.0;
    for (int b = 0; b < 64; b++)
        if (sp_rng_uniform(sp_rng_key(seed, 32, (uint64_t)u, (uint64_t)b, 0)) < p) w |= (uint64_t)1 << b;
    return w;
}

Test(cpu_sprint, bits_to_indices_match_portable) {
    sp_sx_bits_fn fns[2] = {sp_cpu_detect() >= SP_CPU_AVX512 ? sp_sx_bits_avx512 : NULL,
                            sp_cpu_has_vbmi2() ? sp_sx_bits_vbmi2 : NULL};
    if (!fns[0] && !fns[1]) cr_skip_test("no AVX-512 on this CPU");
    enum { NW = 6, CAP = 64 * NW + 16 };
    uint64_t m[NW];
    int32_t ref[CAP], got[CAP + 16];
    for (int trial = 0; trial < 400; trial++) {
        const int nw = 1 + trial % NW;
        const int32_t base = (int32_t)(sp_hash64((uint64_t)trial) % 100000);
        for (int u = 0; u < nw; u++) m[u] = rand_word(7000 + (uint64_t)trial, u);
        if (trial == 0) for (int u = 0; u < nw; u++) m[u] = 0;
        if (trial == 1) for (int u = 0; u < nw; u++) m[u] = ~(uint64_t)0;
        const int nref = sp_sx_bits_portable(m, nw, base, ref);
        for (int f = 0; f < 2; f++) {
            if (!fns[f]) continue;
            for (int i = 0; i < CAP + 16; i++) got[i] = -7;
            const int n = fns[f](m, nw, base, got);
            cr_assert_eq(n, nref, "trial %d fn %d: %d indices, portable %d", trial, f, n, nref);
            for (int i = 0; i < n; i++)
                cr_assert_eq(got[i], ref[i], "trial %d fn %d: index %d is %d, portable %d", trial, f, i, got[i], ref[i]);
            for (int i = 64 * nw + 16; i < CAP + 16; i++)
                cr_assert_eq(got[i], -7, "trial %d fn %d: wrote entry %d past 64 nw + 16", trial, f, i);
        }
    }
}

/* The group gather (a group's 4 leftover words onto its 4 pending lists in one call, as
 * sprint_cpu.c's digital stage does chunk by chunk) keeps the same keys in the same order as
 * gathering each row alone with the portable loop, appending after lists already partly full,
 * leaving zero rows (NULL lists) untouched. */
Test(cpu_sprint, gather_windows_keep_the_same_keys) {
    sp_sx_gather_fn fns[3] = {sp_sx_gather_group_portable,
                              sp_cpu_detect() >= SP_CPU_AVX512 ? sp_sx_gather_group_avx512 : NULL,
                              sp_cpu_has_vbmi2() ? sp_sx_gather_group_vbmi2 : NULL};
    enum { CAP = 15 + 64 * 3 + 16 };
    for (int trial = 0; trial < 300; trial++) {
        uint64_t m[4];
        int32_t ref[4][CAP];
        int nref[4];
        for (int r = 0; r < 4; r++) {
            m[r] = rand_word(9100 + (uint64_t)trial, r);
            nref[r] = (int)(sp_hash64((uint64_t)trial * 4 + (uint64_t)r) % 16); /* already pending */
            for (int i = 0; i < nref[r]; i++) ref[r][i] = 1000 + i;
        }
        if (trial % 5 == 0) m[trial % 4] = 0;
        const int32_t base = 64 * (trial % 50);
        for (int f = 0; f < 3; f++) {
            if (!fns[f]) continue;
            int32_t lists[4][CAP];
            int n[4];
            int32_t *outs[4];
            for (int r = 0; r < 4; r++) {
                n[r] = nref[r];
                for (int i = 0; i < CAP; i++) lists[r][i] = i < nref[r] ? ref[r][i] : -7;
                outs[r] = m[r] ? lists[r] : NULL;
            }
            /* three chunks in a row onto the same lists, as the kernel appends chunk after chunk */
            int nexp[4];
            int32_t exp[4][CAP];
            for (int r = 0; r < 4; r++) {
                memcpy(exp[r], ref[r], sizeof exp[r]);
                nexp[r] = nref[r];
            }
            for (int c = 0; c < 3; c++) {
                fns[f](m, base + 64 * c, (int32_t *const *)outs, n);
                for (int r = 0; r < 4; r++) nexp[r] += sp_sx_bits_portable(&m[r], 1, base + 64 * c, exp[r] + nexp[r]);
            }
            for (int r = 0; r < 4; r++) {
                cr_assert_eq(n[r], nexp[r], "trial %d fn %d row %d: %d keys, per-row %d", trial, f, r, n[r], nexp[r]);
                for (int i = 0; i < n[r]; i++)
                    cr_assert_eq(lists[r][i], exp[r][i], "trial %d fn %d row %d: key %d is %d, per-row %d", trial, f, r,
                                 i, lists[r][i], exp[r][i]);
                if (!m[r])
                    for (int i = nref[r]; i < CAP; i++) cr_assert_eq(lists[r][i], -7, "row %d untouched", r);
            }
        }
    }
}
