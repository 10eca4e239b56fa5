/* bench_sx_bits.c: the SPRINT kernel's bit-mask-to-index step (sprint_exact.h) on this CPU:
 * nanoseconds per 64-bit survivor word for the portable loop, the AVX-512 version (four
 * vpcompressd per word), the AVX512_VBMI2 version (one vpcompressb per word), each called once
 * per word as the digital stage did before the group gather, and the group gathers (one call for
 * a 4-query group's 4 words, as sprint_cpu.c calls them now). Words are random at a given bit
 * density (~0.08: the leftover survivors per query and chunk at ~10% kept are a few per word).
 * Before timing, every version's lists are checked against the portable loop's.
 *
 * usage: bench_sx_bits [density ...]   (default 0.08 0.25); env BENCH_REPS (default 5): timed
 * passes per version, interleaved; the best pass is printed. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attention/sprint_exact.h"
#include "cpu/cpu.h"
#include "sprint/common.h"

enum { NW = 1 << 14, PASSES = 40 };

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One pass over the words, 4 at a time (a group); returns the number of indices and, with
 * check, a checksum of every list entry (weighted by position). Timed passes (check 0) read
 * only the counts: reading a list entry right after its vector store measures the store
 * forwarding, not the step. */
static long pass_single(sp_sx_bits_fn f, const uint64_t *m, int32_t out[4][96], int check) {
    long s = 0;
    for (int i = 0; i < NW; i += 4) {
        int n[4];
        for (int r = 0; r < 4; r++) n[r] = f(&m[i + r], 1, 64 * i, out[r]);
        for (int r = 0; r < 4; r++) {
            s += n[r];
            for (int t = 0; check && t < n[r]; t++) s += (long)(t + 1) * out[r][t];
        }
    }
    return s;
}

static long pass_group(sp_sx_gather_fn g, const uint64_t *m, int32_t out[4][96], int check) {
    long s = 0;
    for (int i = 0; i < NW; i += 4) {
        int n[4] = {0, 0, 0, 0};
        int32_t *const o[4] = {out[0], out[1], out[2], out[3]};
        g(&m[i], 64 * i, o, n);
        for (int r = 0; r < 4; r++) {
            s += n[r];
            for (int t = 0; check && t < n[r]; t++) s += (long)(t + 1) * out[r][t];
        }
    }
    return s;
}

int main(int argc, char **argv) {
    const int avx512 = sp_cpu_detect() >= SP_CPU_AVX512, vbmi2 = sp_cpu_has_vbmi2();
    const char *env = getenv("BENCH_REPS");
    const int reps = env && atoi(env) > 0 ? atoi(env) : 5;
    enum { NV = 6 };
    const char *name[NV] = {"portable", "avx512", "vbmi2", "group portable", "group avx512", "group vbmi2"};
    const int have[NV] = {1, avx512, vbmi2, 1, avx512, vbmi2};
    sp_sx_bits_fn single[3] = {sp_sx_bits_portable, sp_sx_bits_avx512, sp_sx_bits_vbmi2};
    sp_sx_gather_fn group[3] = {sp_sx_gather_group_portable, sp_sx_gather_group_avx512, sp_sx_gather_group_vbmi2};
    uint64_t *m = malloc(NW * sizeof *m);
    static int32_t out[4][96];
    printf("cpu level %s, avx512vbmi2 %s; ns per 64-bit word, best of %d interleaved passes of %d x %d words\n",
           sp_cpu_level_name(sp_cpu_detect()), vbmi2 ? "yes" : "no", reps, PASSES, NW);
    const int nd = argc > 1 ? argc - 1 : 2;
    for (int a = 0; a < nd; a++) {
        const double dens = argc > 1 ? atof(argv[a + 1]) : (a == 0 ? 0.08 : 0.25);
        if (!(dens >= 0 && dens <= 1)) {
            fprintf(stderr, "bench_sx_bits: density %s: expected a number in [0, 1]\n", argv[a + 1]);
            return 1;
        }
        for (int i = 0; i < NW; i++) {
            uint64_t w = 0;
            for (int b = 0; b < 64; b++)
                if (sp_rng_uniform(sp_rng_key(17, (uint64_t)i, (uint64_t)b, 0, 0)) < dens) w |= (uint64_t)1 << b;
            m[i] = w;
        }
        /* check: every version's lists equal the portable loop's */
        const long ref = pass_single(sp_sx_bits_portable, m, out, 1);
        for (int v = 0; v < NV; v++) {
            if (!have[v]) continue;
            long c = v < 3 ? pass_single(single[v], m, out, 1) : pass_group(group[v - 3], m, out, 1);
            if (c != ref) {
                fprintf(stderr, "bench_sx_bits: CHECK FAILED: %s lists differ from the portable loop's\n", name[v]);
                return 1;
            }
        }
        double best[NV];
        for (int v = 0; v < NV; v++) best[v] = 1e30;
        long sink = 0;
        for (int r = 0; r < reps; r++)
            for (int v = 0; v < NV; v++) {
                if (!have[v]) continue;
                double t0 = now_s();
                for (int p = 0; p < PASSES; p++)
                    sink += v < 3 ? pass_single(single[v], m, out, 0) : pass_group(group[v - 3], m, out, 0);
                double t = (now_s() - t0) * 1e9 / ((double)PASSES * NW);
                if (t < best[v]) best[v] = t;
            }
        printf("density %.3f:", dens);
        for (int v = 0; v < NV; v++)
            if (have[v]) printf(" | %s %.2f", name[v], best[v]);
        printf(" ns/word (sink %ld)\n", sink % 7);
    }
    free(m);
    return 0;
}
