/* linear_avx2.c: sp_linear (linear.h) in AVX2 + FMA. A 16-output panel is two 8-lane halves;
 * tiles of up to 4 rows of a x 1 panel (8 accumulators, 2 loads and up to 4 broadcasts per k).
 * Lane u runs the chain s = fma(a[i][k], w[j][k], s) from s = 0 in k order, as linear.h
 * defines: the same bits as the portable and AVX-512 kernels. */
#include "cpu/linear.h"

void sp_linear_rows_avx2(int R, int in, const float *a, const float *wp, float *c, int out, int beta);
void sp_linear_portable(float *c, const float *a, const float *wp, int n, int in, int out, int beta);

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define TAVX2 __attribute__((target("avx2,fma")))

/* Stores 8 lanes (the first `left` of them when left < 8), adding c's old values if beta. */
TAVX2 static inline __attribute__((always_inline)) void store8(float *cp, __m256 v, int left, int beta) {
    if (left >= 8) {
        if (beta) v = _mm256_add_ps(_mm256_loadu_ps(cp), v);
        _mm256_storeu_ps(cp, v);
    } else if (left > 0) {
        float t[8];
        _mm256_storeu_ps(t, v);
        for (int u = 0; u < left; u++) cp[u] = beta ? cp[u] + t[u] : t[u];
    }
}

TAVX2 static inline __attribute__((always_inline)) void tile(int R, int in, const float *a, const float *p, float *c,
                                                             int out, int nout, int beta) {
    __m256 lo[4], hi[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) lo[r] = hi[r] = _mm256_setzero_ps();
    for (int k = 0; k < in; k++, p += SP_LINEAR_PANEL) {
        __m256 b0 = _mm256_loadu_ps(p), b1 = _mm256_loadu_ps(p + 8);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++)
            if (r < R) {
                __m256 x = _mm256_broadcast_ss(a + (size_t)r * in + k);
                lo[r] = _mm256_fmadd_ps(x, b0, lo[r]);
                hi[r] = _mm256_fmadd_ps(x, b1, hi[r]);
            }
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        if (r < R) {
            store8(c + (size_t)r * out, lo[r], nout, beta);
            store8(c + (size_t)r * out + 8, hi[r], nout - 8, beta);
        }
}

TAVX2 static inline __attribute__((always_inline)) void rows(int R, int in, const float *a, const float *wp, float *c,
                                                             int out, int beta) {
    const size_t PD = (size_t)in * SP_LINEAR_PANEL;
    for (int j = 0; j < out; j += SP_LINEAR_PANEL)
        tile(R, in, a, wp + (size_t)(j / SP_LINEAR_PANEL) * PD, c + j, out, out - j, beta);
}

/* R (1-4) rows of a through every panel; each R is its own fully unrolled instance. */
TAVX2 void sp_linear_rows_avx2(int R, int in, const float *a, const float *wp, float *c, int out, int beta) {
    switch (R) {
    case 4: rows(4, in, a, wp, c, out, beta); break;
    case 3: rows(3, in, a, wp, c, out, beta); break;
    case 2: rows(2, in, a, wp, c, out, beta); break;
    default: rows(1, in, a, wp, c, out, beta); break;
    }
}
#else
void sp_linear_rows_avx2(int R, int in, const float *a, const float *wp, float *c, int out, int beta) {
    sp_linear_portable(c, a, wp, R, in, out, beta);
}
#endif
