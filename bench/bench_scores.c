/* bench_scores.c: the reference's exact double scores (attention/scores.h, the dense-ref
 * operator and the calibration's dense evaluation) on this CPU: nanoseconds per key for the
 * portable loop and the AVX-512 level, on consecutive key rows (every key of a causal head:
 * the transposed path) and on shuffled rows (the gathers), at head sizes 8, 32 and 64 (the
 * real models' 8 and 32, BERT's 64). Before timing, the two levels' scores are compared bit for
 * bit.
 *
 * usage: bench_scores [keys per call (default 300)]; env BENCH_REPS (default 5): timed passes
 * per case, interleaved; the best pass is printed. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attention/scores.h"
#include "cpu/cpu.h"
#include "sprint/common.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One pass: `calls` calls over n keys (n - (call mod 8), so every tail length occurs); returns
 * ns per key and adds the scores to *sink (so that no call can be dropped). */
static double pass(sp_cpu_level lv, int d, int n, const int32_t *idx, const float *q, const float *k, double *sc,
                   int calls, double *sink) {
    double t0 = now_s();
    long keys = 0;
    for (int c = 0; c < calls; c++) {
        int m = n - (c & 7);
        sp_attn_scores_level(lv, d, m, idx, q, k, d, 0.125f, sc);
        *sink += sc[c % m];
        keys += m;
    }
    return (now_s() - t0) / (double)keys * 1e9;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 300;
    if (n < 8 || n > 100000) {
        fprintf(stderr, "bench_scores: keys per call must be in [8, 100000], got %s\n", argv[1]);
        return 2;
    }
    const char *r = getenv("BENCH_REPS");
    int reps = r ? atoi(r) : 5;
    if (reps < 1) reps = 1;
    int have512 = sp_cpu_detect() >= SP_CPU_AVX512;
    printf("reference scores, ns per key (best of %d passes), %d keys per call; level %s\n", reps, n,
           sp_cpu_level_name(sp_cpu_detect()));
    printf("%4s %-12s %10s %10s %8s\n", "d", "rows", "portable", "avx512", "ratio");
    const int ds[] = {8, 32, 64};
    double sink = 0;
    for (int di = 0; di < 3; di++) {
        int d = ds[di];
        float *q = malloc(sizeof *q * (size_t)d), *k = malloc(sizeof *k * (size_t)n * (size_t)d);
        int32_t *idx = malloc(sizeof *idx * (size_t)n);
        double *a = malloc(sizeof *a * (size_t)n), *b = malloc(sizeof *b * (size_t)n);
        if (!q || !k || !idx || !a || !b) {
            fprintf(stderr, "bench_scores: out of memory\n");
            return 1;
        }
        for (int c = 0; c < d; c++) q[c] = (float)sp_rng_uniform(sp_rng_key(1, 1, (uint64_t)c, 0, 0)) - 0.5f;
        for (long i = 0; i < (long)n * d; i++) k[i] = (float)sp_rng_uniform(sp_rng_key(1, 2, (uint64_t)i, 0, 0)) - 0.5f;
        for (int shuffled = 0; shuffled < 2; shuffled++) {
            for (int j = 0; j < n; j++) idx[j] = shuffled ? (int32_t)(((long)j * 7919) % n) : j;
            sp_attn_scores_level(SP_CPU_PORTABLE, d, n, idx, q, k, d, 0.125f, a);
            if (have512) {
                sp_attn_scores_level(SP_CPU_AVX512, d, n, idx, q, k, d, 0.125f, b);
                if (memcmp(a, b, sizeof *a * (size_t)n)) {
                    fprintf(stderr, "bench_scores: the AVX-512 scores differ from the portable ones (d %d)\n", d);
                    return 1;
                }
            }
            int calls = (int)(4e7 / ((double)n * d)) + 1;
            double best[2] = {1e300, 1e300};
            for (int rep = 0; rep < reps; rep++)
                for (int l = 0; l < 1 + have512; l++) {
                    double t = pass(l ? SP_CPU_AVX512 : SP_CPU_PORTABLE, d, n, idx, q, k, a, calls, &sink);
                    if (t < best[l]) best[l] = t;
                }
            if (have512)
                printf("%4d %-12s %10.2f %10.2f %7.2fx\n", d, shuffled ? "shuffled" : "consecutive", best[0], best[1],
                       best[0] / best[1]);
            else
                printf("%4d %-12s %10.2f %10s %8s\n", d, shuffled ? "shuffled" : "consecutive", best[0], "-", "-");
        }
        free(q), free(k), free(idx), free(a), free(b);
    }
    return sink == 1.2345 ? 3 : 0;
}
