/* fma_peak.h: this machine's fp32 peak, measured: independent chains of FMAs on registers (no
 * memory traffic), 2 flops per lane per FMA. The flash kernel's efficiency is its useful flops
 * (4 d per visible pair: q.k and p v) over this peak. Shared by bench_peak and bench_attention. */
#ifndef SP_BENCH_FMA_PEAK_H
#define SP_BENCH_FMA_PEAK_H

#include <omp.h>
#include <stdint.h>
#include <time.h> /* clock_gettime: the including file defines _POSIX_C_SOURCE */

#include "cpu/cpu.h"
#include "sprint/common.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* 16 independent accumulators in named registers (an array would live on the stack at -O2):
 * more than latency x ports of any current core (4 x 2). */
#define PK_DECL(T, set) T a0 = set(1), a1 = set(2), a2 = set(3), a3 = set(4), a4 = set(5), a5 = set(6), \
    a6 = set(7), a7 = set(8), a8 = set(9), a9 = set(10), a10 = set(11), a11 = set(12), a12 = set(13), \
    a13 = set(14), a14 = set(15), a15 = set(16)
#define PK_STEP(f) a0 = f(a0, x, y), a1 = f(a1, x, y), a2 = f(a2, x, y), a3 = f(a3, x, y), a4 = f(a4, x, y), \
    a5 = f(a5, x, y), a6 = f(a6, x, y), a7 = f(a7, x, y), a8 = f(a8, x, y), a9 = f(a9, x, y), a10 = f(a10, x, y), \
    a11 = f(a11, x, y), a12 = f(a12, x, y), a13 = f(a13, x, y), a14 = f(a14, x, y), a15 = f(a15, x, y)
#define PK_SUM(add) add(add(add(add(a0, a1), add(a2, a3)), add(add(a4, a5), add(a6, a7))), \
    add(add(add(a8, a9), add(a10, a11)), add(add(a12, a13), add(a14, a15))))
__attribute__((target("avx512f"), noinline)) static float peak_loop512(long iters) {
    __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    PK_DECL(__m512, _mm512_set1_ps);
    for (long t = 0; t < iters; t++) PK_STEP(_mm512_fmadd_ps);
    return _mm512_reduce_add_ps(PK_SUM(_mm512_add_ps));
}
/* AVX2 has 16 ymm registers: 12 accumulators + x + y. */
__attribute__((target("avx2,fma"), noinline)) static float peak_loop256(long iters) {
    __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    __m256 a0 = _mm256_set1_ps(1), a1 = _mm256_set1_ps(2), a2 = _mm256_set1_ps(3), a3 = _mm256_set1_ps(4);
    __m256 a4 = _mm256_set1_ps(5), a5 = _mm256_set1_ps(6), a6 = _mm256_set1_ps(7), a7 = _mm256_set1_ps(8);
    __m256 a8 = _mm256_set1_ps(9), a9 = _mm256_set1_ps(10), a10 = _mm256_set1_ps(11), a11 = _mm256_set1_ps(12);
    for (long t = 0; t < iters; t++) {
        a0 = _mm256_fmadd_ps(a0, x, y), a1 = _mm256_fmadd_ps(a1, x, y), a2 = _mm256_fmadd_ps(a2, x, y);
        a3 = _mm256_fmadd_ps(a3, x, y), a4 = _mm256_fmadd_ps(a4, x, y), a5 = _mm256_fmadd_ps(a5, x, y);
        a6 = _mm256_fmadd_ps(a6, x, y), a7 = _mm256_fmadd_ps(a7, x, y), a8 = _mm256_fmadd_ps(a8, x, y);
        a9 = _mm256_fmadd_ps(a9, x, y), a10 = _mm256_fmadd_ps(a10, x, y), a11 = _mm256_fmadd_ps(a11, x, y);
    }
    __m256 s4 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                              _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s4 = _mm256_add_ps(s4, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float out[8], s = 0;
    _mm256_storeu_ps(out, s4);
    for (int i = 0; i < 8; i++) s += out[i];
    return s;
}
#endif

static volatile float peak_sink;

static double peak_thread_cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Best of `reps` runs of ~0.1 s, fp32 GFLOP/s of `threads` threads together at `level`. One
 * thread: per CPU second of the calling thread (the machine is shared: wall time would measure
 * the scheduler); several threads: per wall second. */
static double fma_peak_gflops(sp_cpu_level level, int threads, int reps) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (level == SP_CPU_PORTABLE) return 0;
    const long iters = 10000000;
    const double flops_per_iter = level == SP_CPU_AVX512 ? 16 * 16 * 2 : 12 * 8 * 2;
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = sp_now_seconds(), c0 = peak_thread_cpu_s();
        if (threads == 1) {
            peak_sink = level == SP_CPU_AVX512 ? peak_loop512(iters) : peak_loop256(iters);
        } else {
#pragma omp parallel num_threads(threads)
            {
                float v = level == SP_CPU_AVX512 ? peak_loop512(iters) : peak_loop256(iters);
                peak_sink = v;
            }
        }
        double dt = threads == 1 ? peak_thread_cpu_s() - c0 : sp_now_seconds() - t0;
        double g = flops_per_iter * (double)iters * threads / dt * 1e-9;
        best = g > best ? g : best;
    }
    return best;
#else
    (void)level, (void)threads, (void)reps;
    return 0;
#endif
}

#endif
