/* test_decode.c: does the CPU decode kernel (sprint/decode.h) compute attention over a KV
 * cache correctly? The portable kernels against the double reference; the AVX2 and AVX-512
 * kernels against the portable ones, function by function and for whole steps; the MSB screen
 * against a hand computation; SPRINT with a huge margin equals dense; thread-count
 * independence; GQA; bad input. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "decode/kv_kernels.h"
#include "sprint/decode.h"

static void randn(float *x, size_t n, double sd, uint64_t seed) {
    sp_rng r;
    sp_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)(sd * sp_rng_next_normal(&r));
}

static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

typedef struct fixture {
    int n, H, Hk, d;
    float *K, *V, *q;
    sp_kv_cache *c;
} fixture;

static void fx_make(fixture *f, int n, int H, int Hk, int d, sp_kv_dtype t, uint64_t seed) {
    f->n = n, f->H = H, f->Hk = Hk, f->d = d;
    f->K = malloc(sizeof(float) * (size_t)n * Hk * d);
    f->V = malloc(sizeof(float) * (size_t)n * Hk * d);
    f->q = malloc(sizeof(float) * (size_t)H * d);
    randn(f->K, (size_t)n * Hk * d, 1.0, seed);
    randn(f->V, (size_t)n * Hk * d, 1.0, seed + 1);
    randn(f->q, (size_t)H * d, 3.0, seed + 2);
    sp_kv_cache_opts o = {.n_heads = H, .n_kv_heads = Hk, .head_dim = d, .capacity = n, .dtype = t};
    sp_error e = {0};
    cr_assert_eq(sp_kv_cache_init(&o, &f->c, &e), SP_OK, "%s", e.msg);
    for (int j = 0; j < n; j++)
        cr_assert_eq(sp_kv_cache_append(f->c, f->K + (size_t)j * Hk * d, f->V + (size_t)j * Hk * d, &e), SP_OK);
}

static void fx_free(fixture *f) {
    sp_kv_cache_free(f->c);
    free(f->K), free(f->V), free(f->q);
}

static void step(fixture *f, sp_decode_kernel k, float margin, int portable, int threads, float *out,
                 sp_decode_stats *st) {
    sp_decode_opts o = {.kernel = k, .scale = 1.0f / sqrtf((float)f->d), .margin = margin, .threads = threads,
                        .portable = portable};
    sp_error e = {0};
    cr_assert_eq(sp_decode_step(f->c, f->q, out, &o, st, &e), SP_OK, "%s", e.msg);
}

Test(decode, portable_dense_matches_double_reference) {
    sp_kv_dtype types[] = {SP_KV_F32, SP_KV_F16, SP_KV_BF16};
    double tol[] = {2e-6, 2e-3, 1.5e-2}; /* fp32 arithmetic; fp16 / bf16 storage rounding */
    for (int t = 0; t < 3; t++) {
        fixture f;
        fx_make(&f, 5000, 8, 2, 32, types[t], 7); /* 3 chunks, a partial block at the end */
        float out[8 * 32], ref[8 * 32];
        sp_decode_ref(f.K, f.V, f.n, f.H, f.Hk, f.d, 1.0f / sqrtf(32.0f), f.q, ref);
        step(&f, SP_DECODE_DENSE, 0, 1, 1, out, NULL);
        double r = rel_l2(out, ref, sizeof out / sizeof *out);
        cr_assert(r < tol[t], "%s: rel_l2 %g >= %g", sp_kv_dtype_name(types[t]), r, tol[t]);
        fx_free(&f);
    }
}

Test(decode, sprint_with_huge_margin_equals_dense) {
    fixture f;
    fx_make(&f, 3000, 4, 4, 16, SP_KV_F32, 11);
    float a[4 * 16], b[4 * 16];
    sp_decode_stats st = {0};
    step(&f, SP_DECODE_DENSE, 0, 1, 1, a, NULL);
    step(&f, SP_DECODE_SPRINT, 1e30f, 1, 1, b, &st);
    cr_assert_eq(st.keys_kept, st.keys_visible);
    cr_assert_eq(memcmp(a, b, sizeof a), 0, "sprint keeping every key differs from dense");
    fx_free(&f);
}

/* The screen's approximate score of one key against a hand computation from the definition in
 * sprint/decode.h, and the kernels' selection for a margin of 0 (only the best key). */
Test(decode, screen_matches_definition) {
    int d = 16;
    fixture f;
    fx_make(&f, 20, 1, 1, d, SP_KV_F32, 3);
    /* hand: quantise q and key 17, nibbles, the integer sum */
    const float *k = f.K + 17 * d;
    float mk = 0, mq = 0;
    for (int i = 0; i < d; i++) mk = fmaxf(mk, fabsf(k[i])), mq = fmaxf(mq, fabsf(f.q[i]));
    float sk = mk / 127, sq = mq / 127;
    long D = 0, S = 0;
    for (int i = 0; i < d; i++) {
        long q8 = lrintf(f.q[i] / sq), k8 = lrintf(k[i] / sk);
        D += q8 * ((k8 + 128) >> 4);
        S += q8;
    }
    double want = (1.0 / 4.0) * sq * sk * (16.0 * D - 120.0 * S);
    /* kernels: fetch the approximate score through a step's scratch by selection */
    int8_t q8[16];
    int32_t qs = 0;
    for (int i = 0; i < d; i++) q8[i] = (int8_t)lrintf(f.q[i] / sq), qs += q8[i];
    float coef = 0.25f * sq;
    const sp_kv_kernels *ks[] = {&sp_kv_kernels_portable, sp_kv_kernels_avx2(), sp_kv_kernels_avx512()};
    /* rebuild the MSB layout of key 17 alone in block position 1 of a fresh block */
    uint8_t blk[2 * 8 * 16] = {0};
    for (int p = 0; p < d / 8; p++)
        for (int j = 0; j < 4; j++) {
            unsigned lo = (unsigned)(lrintf(k[8 * p + j] / sk) + 128) >> 4;
            unsigned hi = (unsigned)(lrintf(k[8 * p + 4 + j] / sk) + 128) >> 4;
            blk[64 * p + 4 * 1 + j] = (uint8_t)(lo | hi << 4);
        }
    float kscale[16] = {0};
    kscale[1] = sk;
    for (int i = 0; i < 3; i++) {
        if (!ks[i]) continue;
        float a[16];
        ks[i]->screen(blk, kscale, 1, d, q8, &coef, &qs, 1, a, 16);
        cr_assert(fabs(a[1] - want) <= 1e-5 * fabs(want) + 1e-6, "%s: screen %g, hand %g", ks[i]->name, a[1], want);
    }
    fx_free(&f);
}

/* Every kernel table against the portable one, function by function, on odd sizes. */
Test(decode, simd_kernels_match_portable) {
    const sp_kv_kernels *P = &sp_kv_kernels_portable;
    const sp_kv_kernels *ks[] = {sp_kv_kernels_avx2(), sp_kv_kernels_avx512()};
    int d = 48, n = 77, g = 3, nb = 5;
    float q[3 * 48], K[77 * 48], s1[3 * 80], s2[3 * 80], w[3 * 80];
    randn(q, sizeof q / sizeof *q, 1, 1);
    randn(K, sizeof K / sizeof *K, 1, 2);
    randn(w, sizeof w / sizeof *w, 1, 3);
    uint16_t Kh[77 * 48], Kb[77 * 48];
    for (int i = 0; i < 77 * 48; i++) Kh[i] = sp_f32_to_f16(K[i]), Kb[i] = sp_f32_to_bf16(K[i]);
    const void *Ks[] = {K, Kh, Kb};
    int32_t idx[77];
    for (int i = 0; i < n; i++) idx[i] = (i * 31) % n; /* a gather, not a stream */
    uint8_t msb[5 * 8 * 48];
    for (size_t i = 0; i < sizeof msb; i++) msb[i] = (uint8_t)(sp_hash64(i) & 255);
    float kscale[80];
    for (int i = 0; i < 80; i++) kscale[i] = 0.01f * (float)(1 + i % 7);
    int8_t q8[3 * 48];
    for (int i = 0; i < 3 * 48; i++) q8[i] = (int8_t)((int)(sp_hash64(1000 + (uint64_t)i) % 255) - 127);
    float coef[3] = {0.5f, 1.0f, 2.0f};
    int32_t qsum[3] = {0, 0, 0};
    for (int h = 0; h < 3; h++)
        for (int i = 0; i < d; i++) qsum[h] += q8[h * d + i];
    for (int k = 0; k < 2; k++) {
        const sp_kv_kernels *S = ks[k];
        if (!S) continue;
        P->screen(msb, kscale, nb, d, q8, coef, qsum, g, s1, 80);
        S->screen(msb, kscale, nb, d, q8, coef, qsum, g, s2, 80);
        for (int i = 0; i < g; i++)
            for (int j = 0; j < 80; j++) cr_assert_eq(s1[i * 80 + j], s2[i * 80 + j], "%s screen [%d][%d]", S->name, i, j);
        float thr[3] = {0.0f, 10.0f, -5.0f};
        int32_t i1[80], b1[80], i2[80], b2[80];
        int n1 = P->select(s1, 80, 75, g, thr, 5, i1, b1), n2 = S->select(s1, 80, 75, g, thr, 5, i2, b2);
        cr_assert_eq(n1, n2, "%s select count %d vs %d", S->name, n2, n1);
        cr_assert(n1 > 0 && n1 < 75, "select test must keep some keys and drop others (%d)", n1);
        cr_assert_eq(memcmp(i1, i2, (size_t)n1 * 4), 0, "%s select idx", S->name);
        cr_assert_eq(memcmp(b1, b2, (size_t)n1 * 4), 0, "%s select bits", S->name);
        for (int t = 0; t < 3; t++) {
            P->dots(Ks[t], NULL, (sp_kv_dtype)t, d, idx, n, q, g, 0.3f, s1, 80);
            S->dots(Ks[t], Ks[t], (sp_kv_dtype)t, d, idx, n, q, g, 0.3f, s2, 80);
            for (int i = 0; i < g; i++)
                for (int j = 0; j < n; j++)
                    cr_assert(fabsf(s1[i * 80 + j] - s2[i * 80 + j]) <= 1e-5f * (1 + fabsf(s1[i * 80 + j])),
                              "%s dots type %d [%d][%d]: %g vs %g", S->name, t, i, j, s2[i * 80 + j], s1[i * 80 + j]);
            float a1[3 * 48] = {0}, a2[3 * 48] = {0};
            P->wsum(Ks[t], (sp_kv_dtype)t, d, idx, n, w, 80, g, a1);
            S->wsum(Ks[t], (sp_kv_dtype)t, d, idx, n, w, 80, g, a2);
            for (int i = 0; i < g * d; i++)
                cr_assert(fabsf(a1[i] - a2[i]) <= 1e-4f * (1 + fabsf(a1[i])), "%s wsum type %d [%d]: %g vs %g", S->name,
                          t, i, a2[i], a1[i]);
        }
        cr_assert_eq(P->maxf(w, 77), S->maxf(w, 77), "%s maxf", S->name);
        float e1[77], e2[77];
        for (int i = 0; i < 77; i++) e1[i] = e2[i] = i == 5 ? -INFINITY : -0.5f * (float)i;
        float m1 = P->expsum(e1, 77, 0.0f), m2 = S->expsum(e2, 77, 0.0f);
        cr_assert(fabsf(m1 - m2) <= 1e-6f * m1, "%s expsum %g vs %g", S->name, m2, m1);
        cr_assert_eq(e2[5], 0.0f, "-inf must give exactly 0");
        for (int i = 0; i < 77; i++)
            cr_assert(fabsf(e1[i] - e2[i]) <= 1e-6f * e1[i] + 1e-30f, "%s exp [%d] %g vs %g", S->name, i, e2[i], e1[i]);
        cr_assert(fabsf(e1[10] - expf(-5.0f)) < 1e-6f, "exp(-5) %g", e1[10]);
    }
}

Test(decode, fast_steps_match_portable_and_any_thread_count) {
    sp_kv_dtype types[] = {SP_KV_F32, SP_KV_F16, SP_KV_BF16};
    for (int t = 0; t < 3; t++) {
        fixture f;
        fx_make(&f, 4500, 8, 2, 64, types[t], 21 + (uint64_t)t);
        for (int k = 0; k < 2; k++) {
            float p[8 * 64], a[8 * 64], b[8 * 64];
            sp_decode_stats sp = {0}, sa = {0}, sb = {0};
            float margin = k ? 6.0f : 0.0f;
            step(&f, (sp_decode_kernel)k, margin, 1, 1, p, &sp);
            step(&f, (sp_decode_kernel)k, margin, 0, 1, a, &sa);
            step(&f, (sp_decode_kernel)k, margin, 0, 2, b, &sb);
            cr_assert_eq(memcmp(a, b, sizeof a), 0, "kernel %d type %d: 1 vs 2 threads differ", k, t);
            cr_assert_eq(sa.keys_kept, sb.keys_kept);
            cr_assert_eq(sa.keys_kept, sp.keys_kept, "kept %g vs portable %g", sa.keys_kept, sp.keys_kept);
            double r = rel_l2(a, p, sizeof a / sizeof *a);
            cr_assert(r < 1e-5, "kernel %d type %d: fast vs portable rel_l2 %g", k, t, r);
            if (k) {
                double kept = sa.keys_kept / sa.keys_visible;
                cr_assert(kept > 0.01 && kept < 0.5, "margin 6 should keep a minority of keys: %g", kept);
                cr_assert(sa.keys_fetched >= sa.keys_kept / 4 && sa.keys_fetched <= sa.keys_kept,
                          "fetched (union over the group of 4) %g vs kept %g", sa.keys_fetched, sa.keys_kept);
            }
        }
        fx_free(&f);
    }
}

Test(decode, sprint_error_small_when_mass_is_concentrated) {
    fixture f;
    fx_make(&f, 8192, 4, 1, 64, SP_KV_F32, 5);
    float ref[4 * 64], out[4 * 64];
    sp_decode_ref(f.K, f.V, f.n, f.H, f.Hk, f.d, 1.0f / 8.0f, f.q, ref);
    sp_decode_stats st = {0};
    step(&f, SP_DECODE_SPRINT, 9.0f, 0, 0, out, &st);
    double kept = st.keys_kept / st.keys_visible, r = rel_l2(out, ref, sizeof out / sizeof *out);
    cr_assert(kept < 0.3, "kept %g", kept);
    cr_assert(r < 0.1, "rel_l2 %g at kept %g", r, kept);
    fx_free(&f);
}

Test(decode, bad_input_is_an_error) {
    sp_kv_cache *c = NULL;
    sp_error e = {0};
    sp_kv_cache_opts o = {.n_heads = 6, .n_kv_heads = 4, .head_dim = 32, .capacity = 4};
    cr_assert_eq(sp_kv_cache_init(&o, &c, &e), SP_ERR_ARG);
    o.n_heads = 8, o.head_dim = 20;
    cr_assert_eq(sp_kv_cache_init(&o, &c, &e), SP_ERR_ARG);
    o.head_dim = 32;
    cr_assert_eq(sp_kv_cache_init(&o, &c, &e), SP_OK);
    float q[8 * 32] = {0}, out[8 * 32], kv[4 * 32] = {0};
    sp_decode_opts so = {.kernel = SP_DECODE_DENSE, .scale = 1};
    cr_assert_eq(sp_decode_step(c, q, out, &so, NULL, &e), SP_ERR_ARG, "empty cache");
    kv[3] = NAN;
    cr_assert_eq(sp_kv_cache_append(c, kv, kv, &e), SP_ERR_DATA);
    kv[3] = 0;
    for (int i = 0; i < 4; i++) cr_assert_eq(sp_kv_cache_append(c, kv, kv, &e), SP_OK);
    cr_assert_eq(sp_kv_cache_append(c, kv, kv, &e), SP_ERR_ARG, "full cache");
    so.margin = -1;
    so.kernel = SP_DECODE_SPRINT;
    cr_assert_eq(sp_decode_step(c, q, out, &so, NULL, &e), SP_ERR_ARG, "negative margin");
    sp_kv_cache_free(c);
    sp_kv_cache_free(NULL);
}

Test(decode, half_conversions_round_to_nearest_even) {
    cr_assert_eq(sp_f32_to_f16(1.0f), 0x3c00);
    cr_assert_eq(sp_f32_to_f16(65504.0f), 0x7bff);
    cr_assert_eq(sp_f32_to_f16(1e6f), 0x7c00);
    cr_assert_eq(sp_f32_to_f16(-2.0f), 0xc000);
    cr_assert_eq(sp_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00, "tie to even down");
    cr_assert_eq(sp_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02, "tie to even up");
    cr_assert_eq(sp_f32_to_f16(5.9604645e-8f), 0x0001, "smallest subnormal");
    cr_assert_eq(sp_f16_to_f32(0x0001), 5.9604645e-8f);
    cr_assert_eq(sp_f32_to_bf16(1.0f), 0x3f80);
    cr_assert_eq(sp_f32_to_bf16(1.0f + 1.0f / 256), 0x3f80, "tie to even down");
    cr_assert_eq(sp_bf16_to_f32(0x3fc0), 1.5f);
    for (int i = -1000; i <= 1000; i++) {
        float x = (float)i * 0.37f;
        cr_assert(fabsf(sp_f16_to_f32(sp_f32_to_f16(x)) - x) <= fabsf(x) / 2048 + 1e-7f, "f16 round trip %g", x);
    }
}
