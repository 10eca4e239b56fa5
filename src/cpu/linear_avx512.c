/* linear_avx512.c: sp_linear (linear.h) in AVX-512 F. Register tiles of up to 4 rows of a x
 * 4 packed panels (64 outputs): per k, one broadcast of a[i][k] per row and one load per panel,
 * 16 accumulators. Lane u of an accumulator is output j = 16p + u and runs exactly the chain
 * s = fma(a[i][k], w[j][k], s), k = 0 .. in-1, from s = 0: the order linear.h defines. */
#include "cpu/linear.h"

void sp_linear_rows_avx512(int R, int in, const float *a, const float *wp, float *c, int out, int beta);
void sp_linear_portable(float *c, const float *a, const float *wp, int n, int in, int out, int beta);

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl")))

/* Rows a[0..R), panels wp[0..P) (panel stride PD floats), outputs c[r][0 .. nout) (nout <=
 * 16 P: the last panel may be partial). R and P are constants after inlining. */
T512 static inline __attribute__((always_inline)) void tile(int R, int P, int in, const float *a, const float *wp,
                                                            size_t PD, float *c, int out, int nout, int beta) {
    __m512 s[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) s[r][p] = _mm512_setzero_ps();
    for (int k = 0; k < in; k++) {
        __m512 b[4];
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++)
            if (p < P) b[p] = _mm512_loadu_ps(wp + (size_t)p * PD + (size_t)k * SP_LINEAR_PANEL);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++)
            if (r < R) {
                __m512 x = _mm512_set1_ps(a[(size_t)r * in + k]);
#pragma GCC unroll 4
                for (int p = 0; p < 4; p++)
                    if (p < P) s[r][p] = _mm512_fmadd_ps(x, b[p], s[r][p]);
            }
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        if (r < R)
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++)
                if (p < P) {
                    float *cp = c + (size_t)r * out + 16 * p;
                    int left = nout - 16 * p;
                    __mmask16 mk = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
                    __m512 v = s[r][p];
                    if (beta) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, cp), v);
                    _mm512_mask_storeu_ps(cp, mk, v);
                }
}

/* One row group of R rows over every output: 64-output tiles, then the last 1..4 panels (the
 * last one partial). */
T512 static inline __attribute__((always_inline)) void rows(int R, int in, const float *a, const float *wp, float *c,
                                                            int out, int beta) {
    const size_t PD = (size_t)in * SP_LINEAR_PANEL;
    int j = 0;
    for (; j + 64 <= out; j += 64) tile(R, 4, in, a, wp + (size_t)(j / 16) * PD, PD, c + j, out, 64, beta);
    int left = out - j, np = (left + 15) / 16;
    const float *w = wp + (size_t)(j / 16) * PD;
    if (np == 4) tile(R, 4, in, a, w, PD, c + j, out, left, beta);
    else if (np == 3) tile(R, 3, in, a, w, PD, c + j, out, left, beta);
    else if (np == 2) tile(R, 2, in, a, w, PD, c + j, out, left, beta);
    else if (np == 1) tile(R, 1, in, a, w, PD, c + j, out, left, beta);
}

/* R (1-4) rows of a through every panel; each R is its own fully unrolled instance. */
T512 void sp_linear_rows_avx512(int R, int in, const float *a, const float *wp, float *c, int out, int beta) {
    switch (R) {
    case 4: rows(4, in, a, wp, c, out, beta); break;
    case 3: rows(3, in, a, wp, c, out, beta); break;
    case 2: rows(2, in, a, wp, c, out, beta); break;
    default: rows(1, in, a, wp, c, out, beta); break;
    }
}
#else
void sp_linear_rows_avx512(int R, int in, const float *a, const float *wp, float *c, int out, int beta) {
    sp_linear_portable(c, a, wp, R, in, out, beta);
}
#endif
