/* bench_peak.c: this machine's measured fp32 FMA peak (GFLOP/s), one thread and all threads,
 * AVX2 and AVX-512 (register-only FMA chains; see fma_peak.h). The reference for the flash
 * kernel's "fraction of peak" in bench_attention.
 *
 * One thread: GFLOP per CPU second of the thread (robust on a shared machine); all threads: per
 * wall second.
 *
 * usage: bench_peak [--json]   env BENCH_REPS (default 5) */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fma_peak.h"

int main(int argc, char **argv) {
    int json = argc > 1 && !strcmp(argv[1], "--json");
    int reps = getenv("BENCH_REPS") ? atoi(getenv("BENCH_REPS")) : 5;
    if (reps < 1) reps = 1;
    sp_cpu_level lv = sp_cpu_detect();
    int all = omp_get_max_threads();
    double p2_1 = lv >= SP_CPU_AVX2 ? fma_peak_gflops(SP_CPU_AVX2, 1, reps) : 0;
    double p5_1 = lv >= SP_CPU_AVX512 ? fma_peak_gflops(SP_CPU_AVX512, 1, reps) : 0;
    double p2_a = lv >= SP_CPU_AVX2 ? fma_peak_gflops(SP_CPU_AVX2, all, reps) : 0;
    double p5_a = lv >= SP_CPU_AVX512 ? fma_peak_gflops(SP_CPU_AVX512, all, reps) : 0;
    if (json) {
        printf("{\"cpu_level\": \"%s\", \"threads_all\": %d, \"avx2_1t_gflops\": %.2f, \"avx512_1t_gflops\": %.2f, "
               "\"avx2_all_gflops\": %.2f, \"avx512_all_gflops\": %.2f}\n",
               sp_cpu_level_name(lv), all, p2_1, p5_1, p2_a, p5_a);
    } else {
        printf("fp32 FMA peak (GFLOP/s, best of %d), cpu level %s\n", reps, sp_cpu_level_name(lv));
        printf("  %-8s %10s %10s\n", "", "1 thread", "all threads");
        printf("  %-8s %10.1f %10.1f\n", "avx2", p2_1, p2_a);
        printf("  %-8s %10.1f %10.1f   (%d threads)\n", "avx512", p5_1, p5_a, all);
    }
    return 0;
}
