/* membw.c: a STREAM-like read bandwidth measurement (the "sum" of STREAM without its writes),
 * the yardstick the decode kernels' bandwidth is quoted against (bench/bench_stream,
 * bench/bench_decode). Decode attention only reads the cache, so read bandwidth is the limit. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "sprint/decode.h"

double sp_membw_read_pass(const uint64_t *buf, size_t n, int threads) {
    n = n / 64 * 64;
    if (n == 0) return 0.0;
    int nth = threads > 0 ? threads : omp_get_max_threads();
    uint64_t tot = 0;
    double t0 = sp_now_seconds();
#pragma omp parallel for num_threads(nth) schedule(static) reduction(^ : tot)
    for (size_t i = 0; i < n; i += 64) {
        uint64_t acc[8] = {0};
        for (int k = 0; k < 64; k += 8)
            for (int l = 0; l < 8; l++) acc[l] ^= buf[i + k + l];
        tot ^= acc[0] ^ acc[1] ^ acc[2] ^ acc[3] ^ acc[4] ^ acc[5] ^ acc[6] ^ acc[7];
    }
    double el = sp_now_seconds() - t0;
    static volatile uint64_t sink;
    sink ^= tot;
    return (double)n * sizeof *buf / el / 1e9;
}

double sp_membw_read_gbs(size_t bytes, int threads, int reps) {
    size_t n = bytes / sizeof(uint64_t) / 64 * 64;
    if (n == 0 || reps < 1) return 0.0;
    uint64_t *buf = sp_xmalloc(n, sizeof *buf);
    int nth = threads > 0 ? threads : omp_get_max_threads();
#pragma omp parallel for num_threads(nth) schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = i * 0x9E3779B97F4A7C15ull; /* first touch by the reading thread */
    double best = 0.0;
    volatile uint64_t sink = 0;
    for (int r = 0; r < reps; r++) {
        uint64_t tot = 0;
        double t0 = sp_now_seconds();
#pragma omp parallel for num_threads(nth) schedule(static) reduction(^ : tot)
        for (size_t i = 0; i < n; i += 64) {
            uint64_t acc[8] = {0};
            for (int k = 0; k < 64; k += 8)
                for (int l = 0; l < 8; l++) acc[l] ^= buf[i + k + l];
            tot ^= acc[0] ^ acc[1] ^ acc[2] ^ acc[3] ^ acc[4] ^ acc[5] ^ acc[6] ^ acc[7];
        }
        double el = sp_now_seconds() - t0;
        sink ^= tot;
        double gbs = (double)n * sizeof *buf / el / 1e9;
        if (gbs > best) best = gbs;
    }
    (void)sink;
    free(buf);
    return best;
}
