/* bench_rows_offset.c: what rows off a cache line cost the two public CPU kernels
 * (cpu_attention.h), by query count. Q, K, V of random normal values with n_k = 4096 keys,
 * bidirectional, one thread: once with every row on a 64-byte boundary (offset 0, stride d) and
 * once 16 bytes past one (where malloc puts arrays of these sizes), for d = 64 and 128 and n_q
 * from 1 (a decode step) to 4096. The kernels copy rows off a line to aligned rows only from
 * some query count on (flash.c FLASH_COPY_MIN_Q, sprint_cpu.c SX_COPY_MIN_Q; docs/RESULTS.md
 * part 9z.w.3); this shows the cost on each side of those counts.
 *
 * Check first: at each size both kernels give the same output bits at both offsets (the copy
 * holds the same values). SPRINT runs with a fixed threshold of 1.3 nats and a 3-sigma margin.
 *
 * usage: bench_rows_offset [reps (default 7)]; prints microseconds of thread CPU time, best of
 * the reps, and offset 16 / offset 0. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sprint/common.h"
#include "sprint/cpu_attention.h"

enum { NK = 4096 };

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs kernel k (0 flash, 1 SPRINT) on the last nq queries; returns thread CPU seconds. */
static double run(int k, int nq, int d, float *const x[3], float *out) {
    sp_attn_head h = {.n_q = nq, .n_k = NK, .d = d, .q = x[0] + (size_t)(NK - nq) * d, .k = x[1], .v = x[2],
                      .out = out, .ldq = d, .ldk = d, .ldv = d, .ldo = d, .causal = 0,
                      .scale = 1.0f / sqrtf((float)d)};
    sp_cpu_sprint_opts o = {.policy = SP_CPU_POLICY_FIXED, .threshold = 1.3, .margin_sigma = 3, .threads = 1};
    sp_error err = {0};
    double t0 = cpu_now();
    sp_status s = k == 0 ? sp_cpu_attention_dense(&h, 1, &err) : sp_cpu_attention_sprint(&h, &o, &err);
    double t = cpu_now() - t0;
    if (s != SP_OK) {
        fprintf(stderr, "bench_rows_offset: %s\n", err.msg);
        exit(1);
    }
    return t;
}

int main(int argc, char **argv) {
    const int reps = argc > 1 ? atoi(argv[1]) : 7;
    if (reps < 1) {
        fprintf(stderr, "usage: bench_rows_offset [reps >= 1]\n");
        return 2;
    }
    const int nqs[] = {1, 64, 256, 512, 1024, 2048, 4096};
    printf("n_k = %d, bidirectional, one thread, thread CPU microseconds, best of %d; offset 16 / offset 0\n\n", NK,
           reps);
    printf("| d | n_q | flash, offset 0 | flash, offset 16 | ratio | SPRINT, offset 0 | SPRINT, offset 16 | ratio |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    for (int d = 64; d <= 128; d += 64) {
        const size_t n = (size_t)NK * d, bytes = (n * sizeof(float) + 64 + 63) / 64 * 64;
        char *base[2][3];
        float *x[2][3];
        for (int a = 0; a < 2; a++)
            for (int t = 0; t < 3; t++) {
                base[a][t] = sp_xmalloc_aligned(bytes, 1);
                x[a][t] = (float *)(void *)(base[a][t] + 16 * a);
                for (size_t i = 0; i < n; i++)
                    x[a][t][i] = (float)sp_rng_normal(sp_rng_key(7, (uint64_t)t, (uint64_t)i, (uint64_t)d, 0));
            }
        float *out[2] = {sp_xmalloc(n, sizeof(float)), sp_xmalloc(n, sizeof(float))};
        for (size_t q = 0; q < sizeof nqs / sizeof *nqs; q++) {
            const int nq = nqs[q];
            double best[2][2] = {{1e30, 1e30}, {1e30, 1e30}}; /* [kernel][offset] */
            for (int k = 0; k < 2; k++) {
                for (int a = 0; a < 2; a++) run(k, nq, d, x[a], out[a]);
                if (memcmp(out[0], out[1], (size_t)nq * d * sizeof(float))) {
                    fprintf(stderr, "bench_rows_offset: CHECK FAILED: %s, d %d, %d queries: outputs differ between offsets\n",
                            k ? "SPRINT" : "flash", d, nq);
                    return 1;
                }
                for (int r = 0; r < reps; r++)
                    for (int a = 0; a < 2; a++) {
                        double t = run(k, nq, d, x[a], out[a]);
                        best[k][a] = t < best[k][a] ? t : best[k][a];
                    }
            }
            printf("| %d | %d | %.0f | %.0f | %.2fx | %.0f | %.0f | %.2fx |\n", d, nq, 1e6 * best[0][0], 1e6 * best[0][1],
                   best[0][1] / best[0][0], 1e6 * best[1][0], 1e6 * best[1][1], best[1][1] / best[1][0]);
            fflush(stdout);
        }
        for (int a = 0; a < 2; a++)
            for (int t = 0; t < 3; t++) free(base[a][t]);
        free(out[0]), free(out[1]);
    }
    return 0;
}
