/* test_quant_simd.c: does the AVX-512 quantiser row (functional/quant_simd.h) give the bytes
 * of the portable loop (the loop sp_quant_rows has always run), on random tensors, on values
 * that land on and next to the rounding halves, at the clamps, with padding rows, per-row and
 * per-tensor scales, and at every row length? */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"
#include "functional/quant_simd.h"
#include "sprint/common.h"

static int have_avx512(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw");
#else
    return 0;
#endif
}

/* The loop of quant.c before this change, with libm round(): the reference bytes. */
static void row_libm(const float *x, int d, float s, int8_t *xi) {
    for (int c = 0; c < d; c++) {
        double v = round((double)x[c] / (double)s);
        if (v > 127) v = 127;
        if (v < -127) v = -127;
        xi[c] = (int8_t)v;
    }
}

Test(quant_simd, rows_match_the_libm_loop) {
    int have = have_avx512();
    const int ds[] = {1, 5, 7, 8, 9, 16, 31, 32, 33, 64, 100, 128};
    int8_t a[128], b[128], c[128];
    float x[128];
    for (size_t k = 0; k < sizeof ds / sizeof *ds; k++)
        for (int trial = 0; trial < 3000; trial++) {
            int d = ds[k];
            float mx = 0;
            for (int i = 0; i < d; i++) {
                double u = sp_rng_uniform(sp_rng_key(9, k, (uint64_t)trial, (uint64_t)i, 0));
                x[i] = (float)((2 * u - 1) * pow(10.0, (double)(trial % 9) - 4.0));
                if (fabsf(x[i]) > mx) mx = fabsf(x[i]);
            }
            float s = mx > 0 ? mx / 127.0f : 1.0f;
            if (trial % 3 == 1) /* values on the halves k + 1/2 (and their float neighbours) */
                for (int i = 0; i < d; i++) {
                    float h = (float)((double)((i * 37 + trial) % 254 - 127) + 0.5) * s;
                    x[i] = i % 3 == 0 ? h : i % 3 == 1 ? nextafterf(h, INFINITY) : nextafterf(h, -INFINITY);
                }
            if (trial % 3 == 2) s = s * 0.5f; /* values past the clamps */
            row_libm(x, d, s, a);
            sp_quant_row_level(SP_CPU_PORTABLE, x, d, s, b);
            cr_assert(!memcmp(a, b, (size_t)d), "portable: d=%d trial %d", d, trial);
            if (!have) continue;
            memset(c, 0x55, sizeof c);
            sp_quant_row_level(SP_CPU_AVX512, x, d, s, c);
            for (int i = 0; i < d; i++)
                cr_assert_eq(a[i], c[i], "avx512: d=%d trial %d element %d (x %.9g, s %.9g): %d vs %d", d, trial, i,
                             (double)x[i], (double)s, a[i], c[i]);
            if (d < 128) cr_assert_eq(c[d], 0x55, "d=%d: wrote past the row", d);
        }
}

/* The AVX-512 row runs in fp32 with a guard (quant_avx512.c): values within a few float ulps of
 * every half-integer multiple of s, for scales that are not powers of two; scales at and past
 * the ends of the fp32 range (the whole row in double); NaN and infinite elements; and values
 * whose quotient is past 256 or underflows. Every byte must be the libm loop's. */
Test(quant_simd, fp32_guard_keeps_the_bytes_near_ties) {
    if (!have_avx512()) cr_skip_test("the CPU has no AVX-512 F/VL/BW: only the portable loop runs here");
    int8_t a[160], c[160];
    float x[160];
    long hits = 0;
    for (int trial = 0; trial < 40000; trial++) {
        const uint64_t t = (uint64_t)trial;
        float s = (float)(0.001 + 3.0 * sp_rng_uniform(sp_rng_key(21, t, 0, 0, 0)));
        if (trial % 97 == 1) s = 0x1p-127f * 1.37f;   /* rf would be infinite */
        if (trial % 97 == 2) s = 0x1p-126f;           /* the smallest scale the fp32 path takes */
        if (trial % 97 == 3) s = 0x1p126f * 1.5f;     /* rf subnormal */
        if (trial % 97 == 4) s = INFINITY;
        for (int i = 0; i < 160; i++) {
            const uint64_t k = sp_rng_key(22, t, (uint64_t)i, 0, 0);
            int lev = (int)(sp_rng_uniform(k) * 300.0) - 150; /* some past the clamps */
            float h = (float)(((double)lev + 0.5) * (double)s);
            int steps = (int)(sp_rng_uniform(sp_rng_key(23, t, (uint64_t)i, 0, 0)) * 41.0) - 20;
            if (trial % 5 == 4) steps *= 300; /* up to ~2^13 ulps: around the guard's edge */
            uint32_t bits; /* steps float ulps away from zero (toward it when negative) */
            memcpy(&bits, &h, 4);
            if (isfinite(h)) bits += (uint32_t)steps;
            memcpy(&x[i], &bits, 4);
        }
        if (trial % 11 == 5) x[trial % 150] = NAN;
        if (trial % 11 == 6) x[trial % 150] = -INFINITY;
        if (trial % 11 == 7) x[trial % 150] = 0x1p-149f; /* underflows in y */
        if (trial % 11 == 8) x[trial % 150] = -FLT_MAX;
        const int d = 1 + trial % 150; /* the 64-element blocks, then 16 lanes */
        row_libm(x, d, s, a);
        memset(c, 0x55, sizeof c);
        sp_quant_row_level(SP_CPU_AVX512, x, d, s, c);
        for (int i = 0; i < d; i++) {
            cr_assert_eq(a[i], c[i], "trial %d d=%d element %d (x %.9g, s %.9g, x/s %.17g): %d vs %d", trial, d, i,
                         (double)x[i], (double)s, (double)x[i] / (double)s, a[i], c[i]);
            hits += fabs(fabs(fmod((double)x[i] / (double)s, 1.0)) - 0.5) < 0x1p-16;
        }
        cr_assert_eq(c[d], 0x55, "d=%d: wrote past the row", d);
    }
    cr_assert_gt(hits, 100000, "too few elements near a tie (%ld)", hits);
}

/* Whole tensors: per-row and per-tensor scales, padding rows, a row stride > d. */
Test(quant_simd, tensors_match_across_levels) {
    if (!have_avx512()) cr_skip_test("the CPU has no AVX-512 F/VL/BW: only the portable loop runs here");
    int n = 57, d = 24, ld = 29;
    float *x = malloc(sizeof *x * (size_t)n * (size_t)ld);
    for (int i = 0; i < n * ld; i++) x[i] = (float)(sp_rng_uniform(sp_rng_key(4, (uint64_t)i, 0, 0, 0)) - 0.5) * 3.0f;
    unsigned char valid[57];
    for (int i = 0; i < n; i++) valid[i] = i % 5 != 3;
    for (int per_row = 0; per_row < 2; per_row++)
        for (int use_valid = 0; use_valid < 2; use_valid++) {
            int8_t a[57 * 24], b[57 * 24];
            float sa[57], sb[57];
            sp_quant_rows_level(SP_CPU_PORTABLE, x, n, d, ld, per_row, use_valid ? valid : NULL, a, sa);
            sp_quant_rows_level(SP_CPU_AVX512, x, n, d, ld, per_row, use_valid ? valid : NULL, b, sb);
            cr_assert(!memcmp(sa, sb, sizeof sa), "scales differ (per_row %d)", per_row);
            cr_assert(!memcmp(a, b, sizeof a), "bytes differ (per_row %d, valid %d)", per_row, use_valid);
            if (use_valid)
                for (int c = 0; c < d; c++) cr_assert_eq(b[3 * d + c], 0, "padding row not zero");
        }
    free(x);
}
