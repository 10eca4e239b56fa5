/* bench_gemm.c: the score product C (m x n) = Q (m x d) K^T of cpu/gemm.h at each dispatch level
 * against OpenBLAS's cblas_sgemm (the portable and AVX2 path before Part 9v), one thread, CPU
 * time of the calling thread (run with OPENBLAS_NUM_THREADS=1), runs interleaved, median of
 * --reps. Before timing, every kernel's C is checked against the double product on a sample of
 * entries (within gamma_d sum |q||k|).
 *
 * usage: bench_gemm [--m 4096] [--n 4096] [--d 64] [--reps 5]   (prints a markdown table) */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/cpu.h"
#include "cpu/gemm.h"

enum { K_OPENBLAS = 3, NK = 4 };
static const char *const kname[NK] = {"sp_gemm_nt portable", "sp_gemm_nt avx2", "sp_gemm_nt avx512",
                                      "OpenBLAS cblas_sgemm"};

static double now_cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void run(int k, int m, int n, int d, const float *q, const float *kk, float *c) {
    if (k == K_OPENBLAS)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, d, 1.0f, q, d, kk, d, 0.0f, c, n);
    else
        sp_gemm_nt_level((sp_cpu_level)k, m, n, d, q, d, kk, d, c, n);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int m = 4096, n = 4096, d = 64, reps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--m")) m = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--n")) n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--d")) d = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "bench_gemm: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (m <= 0 || n <= 0 || d <= 0 || reps <= 0 || reps > 100) {
        fprintf(stderr, "bench_gemm: sizes and reps must be positive (reps <= 100)\n");
        return 2;
    }
    float *q = malloc((size_t)m * d * sizeof *q), *kk = malloc((size_t)n * d * sizeof *kk);
    float *c = malloc((size_t)m * n * sizeof *c);
    if (!q || !kk || !c) return 1;
    uint64_t s = 12345;
    for (size_t i = 0; i < (size_t)m * d; i++) s = s * 6364136223846793005u + 1, q[i] = (float)((double)(s >> 40) / 16777216.0 - 0.5);
    for (size_t i = 0; i < (size_t)n * d; i++) s = s * 6364136223846793005u + 1, kk[i] = (float)((double)(s >> 40) / 16777216.0 - 0.5);
    int top = (int)sp_cpu_detect();
    int ks[NK], nk = 0;
    for (int k = 0; k <= top; k++) ks[nk++] = k;
    ks[nk++] = K_OPENBLAS;
    for (int t = 0; t < nk; t++) { /* check first */
        run(ks[t], m, n, d, q, kk, c);
        for (int e = 0; e < 1000; e++) {
            int i = (int)(((size_t)e * 7919u) % (size_t)m), j = (int)(((size_t)e * 104729u) % (size_t)n);
            double ex = 0, mag = 0;
            for (int u = 0; u < d; u++) ex += (double)q[i * d + u] * kk[j * d + u], mag += fabs((double)q[i * d + u] * kk[j * d + u]);
            if (fabs(c[(size_t)i * n + j] - ex) > 1.01 * d * ldexp(1.0, -24) * mag) {
                fprintf(stderr, "bench_gemm: %s wrong at (%d,%d)\n", kname[ks[t]], i, j);
                return 1;
            }
        }
    }
    double tm[NK][100];
    for (int r = 0; r < reps; r++)
        for (int t = 0; t < nk; t++) {
            double t0 = now_cpu();
            run(ks[t], m, n, d, q, kk, c);
            tm[t][r] = now_cpu() - t0;
        }
    double med[NK];
    for (int t = 0; t < nk; t++) qsort(tm[t], (size_t)reps, sizeof **tm, cmp_d), med[t] = tm[t][reps / 2];
    printf("| kernel (%d x %d x %d, 1 thread) | median s | min s | GFLOP/s | time / OpenBLAS |\n|---|---|---|---|---|\n", m, n, d);
    for (int t = 0; t < nk; t++)
        printf("| %s | %.4f | %.4f | %.1f | %.2f |\n", kname[ks[t]], med[t], tm[t][0],
               2.0 * m * n * d / med[t] * 1e-9, med[t] / med[nk - 1]);
    free(q), free(kk), free(c);
    return 0;
}
