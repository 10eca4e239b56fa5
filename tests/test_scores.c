/* test_scores.c: do the reference's exact scores (attention/scores.h) give the same bits at
 * every CPU level, whatever the head size, key count, index order and row stride, and does
 * sp_attn_scores_ref still report the first non-finite score? */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention/scores.h"
#include "cpu/cpu.h"
#include "helpers.h"
#include "sprint/attention.h"

static int have_avx512(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

static double urand(uint64_t seed, uint64_t i) { return sp_rng_uniform(sp_rng_key(seed, 17, i, 0, 0)); }

/* Values spread over many binades, so that the double sums round at many places and any other
 * order of the terms (or a fused multiply-add) shows in the last bits. */
static float spread(uint64_t seed, uint64_t i) {
    double u = urand(seed, 2 * i), e = floor(urand(seed, 2 * i + 1) * 40.0) - 20.0;
    return (float)((u - 0.5) * ldexp(1.0, (int)e));
}

Test(scores, every_level_gives_the_portable_bits) {
    if (!have_avx512()) cr_skip_test("no AVX-512 on this CPU: the AVX-512 level cannot run");
    const int ds[] = {1, 3, 8, 31, 32, 64, 65, 130};
    const int ns[] = {0, 1, 7, 8, 9, 37, 200};
    uint64_t seed = 1;
    for (int di = 0; di < 8; di++)
        for (int ni = 0; ni < 7; ni++, seed++) {
            int d = ds[di], n = ns[ni], nk = 50, ldk = d + (int)(seed % 5);
            float *q = malloc(sizeof *q * (size_t)d), *k = malloc(sizeof *k * (size_t)nk * (size_t)ldk);
            int32_t *idx = malloc(sizeof *idx * (size_t)(n + 1));
            double *a = malloc(sizeof *a * (size_t)(n + 1)), *b = malloc(sizeof *b * (size_t)(n + 1));
            for (int c = 0; c < d; c++) q[c] = spread(seed, (uint64_t)c);
            for (int i = 0; i < nk * ldk; i++) k[i] = spread(seed + 1000, (uint64_t)i);
            for (int j = 0; j < n; j++) idx[j] = (int32_t)(urand(seed + 2000, (uint64_t)j) * nk); /* any order, repeats */
            float scale = (float)(1.0 / sqrt((double)d));
            sp_attn_scores_level(SP_CPU_PORTABLE, d, n, idx, q, k, ldk, scale, a);
            sp_attn_scores_level(SP_CPU_AVX512, d, n, idx, q, k, ldk, scale, b);
            for (int j = 0; j < n; j++)
                cr_assert(memcmp(&a[j], &b[j], sizeof a[j]) == 0, "d %d n %d key %d: portable %.17g, avx512 %.17g", d, n, j,
                          a[j], b[j]);
            free(q), free(k), free(idx), free(a), free(b);
        }
}

/* Keys in runs of consecutive rows (a causal head's keys) that break anywhere inside a group of
 * 8, with repeats and steps back, at head sizes around the AVX-512 level's 8-column transposes
 * and any row stride: the same bits as the portable loop. */
Test(scores, consecutive_rows_give_the_portable_bits) {
    if (!have_avx512()) cr_skip_test("no AVX-512 on this CPU: the AVX-512 level cannot run");
    const int ds[] = {1, 7, 8, 9, 16, 23, 32, 64, 65};
    uint64_t seed = 500;
    for (int di = 0; di < 9; di++)
        for (int pattern = 0; pattern < 4; pattern++, seed++) {
            int d = ds[di], nk = 300, ldk = d + (int)(seed % 3), n = 0;
            float *q = malloc(sizeof *q * (size_t)d), *k = malloc(sizeof *k * (size_t)nk * (size_t)ldk);
            int32_t *idx = malloc(sizeof *idx * (size_t)nk);
            double *a = malloc(sizeof *a * (size_t)nk), *b = malloc(sizeof *b * (size_t)nk);
            for (int c = 0; c < d; c++) q[c] = spread(seed, (uint64_t)c);
            for (int i = 0; i < nk * ldk; i++) k[i] = spread(seed + 1000, (uint64_t)i);
            if (pattern == 0) /* 0 .. n-1, as a causal head */
                for (int j = 0; j < 203; j++) idx[n++] = j;
            else if (pattern == 1) /* from an offset */
                for (int j = 37; j < 290; j++) idx[n++] = j;
            else /* runs of random length with gaps (pattern 3: also a step back) */
                for (int j = 0; j < nk && n < 250;) {
                    int run = 1 + (int)(urand(seed, (uint64_t)n) * 20);
                    for (int t = 0; t < run && j < nk; t++) idx[n++] = j++;
                    j += pattern == 3 && j > 5 ? -5 : 1 + (int)(urand(seed + 7, (uint64_t)n) * 3);
                }
            float scale = (float)(1.0 / sqrt((double)d));
            sp_attn_scores_level(SP_CPU_PORTABLE, d, n, idx, q, k, ldk, scale, a);
            sp_attn_scores_level(SP_CPU_AVX512, d, n, idx, q, k, ldk, scale, b);
            for (int j = 0; j < n; j++)
                cr_assert(memcmp(&a[j], &b[j], sizeof a[j]) == 0, "d %d pattern %d key %d (row %d): portable %.17g, avx512 %.17g",
                          d, pattern, j, idx[j], a[j], b[j]);
            free(q), free(k), free(idx), free(a), free(b);
        }
}

/* The scores are the double sums of the loop sp_attn_scores_ref always ran (a copy here), and
 * the first non-finite score's position is reported, at the detected level. */
Test(scores, reference_scores_and_first_non_finite) {
    enum { D = 20, NK = 30 };
    float q[D], k[NK * D];
    for (int c = 0; c < D; c++) q[c] = spread(5, (uint64_t)c);
    for (int i = 0; i < NK * D; i++) k[i] = spread(6, (uint64_t)i);
    int32_t idx[NK];
    for (int j = 0; j < NK; j++) idx[j] = NK - 1 - j;
    sp_attn_head h = {.n_q = 1, .n_k = NK, .d = D, .q = q, .k = k, .ldq = D, .ldk = D, .scale = 0.25f};
    double sc[NK];
    cr_assert_eq(sp_attn_scores_ref(&h, 0, idx, NK, sc), -1);
    for (int j = 0; j < NK; j++) {
        double dot = 0.0;
        for (int c = 0; c < D; c++) dot += (double)q[c] * (double)k[idx[j] * D + c];
        cr_assert(dot * 0.25 == sc[j], "key %d: %.17g vs %.17g", j, dot * 0.25, sc[j]);
    }
    k[17 * D + 3] = INFINITY; /* key 17 is at position 12 of idx */
    k[5 * D] = NAN;           /* key 5 at position 24 */
    cr_assert_eq(sp_attn_scores_ref(&h, 0, idx, NK, sc), 12);
}
