/* gemm_avx512.c: the AVX-512 F register tile of C = A B^T (gemm.h; the packing and the blocking
 * shared by every level are in gemm.c): 4 rows of A against 4 packed 16-column panels of B with
 * 16 zmm accumulators (4 panel loads and 4 broadcasts per 16 FMAs), each entry the chain
 * s = fma(a[k], b[k], s) from +0 that gemm.c's AVX2 tile repeats in ymm. */
#include <stdlib.h>
#include <string.h>

#include "cpu/gemm.h"
#include "cpu/linear.h"
#include "sprint/common.h"

void sp_gemm_tile4x64_avx512(int d, const float *const a[4], const float *bp, size_t PD, float *const c[4], int ncol);

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl")))

T512 static void tile4x64(int d, const float *a0, const float *a1, const float *a2, const float *a3,
                          const float *bp, size_t PD, float *c0, float *c1, float *c2, float *c3, int ncol) {
    __m512 s00 = _mm512_setzero_ps(), s01 = s00, s02 = s00, s03 = s00, s10 = s00, s11 = s00, s12 = s00, s13 = s00;
    __m512 s20 = s00, s21 = s00, s22 = s00, s23 = s00, s30 = s00, s31 = s00, s32 = s00, s33 = s00;
    const float *p0 = bp, *p1 = bp + PD, *p2 = bp + 2 * PD, *p3 = bp + 3 * PD;
    for (int k = 0; k < d; k++, p0 += 16, p1 += 16, p2 += 16, p3 += 16) {
        __m512 b0 = _mm512_loadu_ps(p0), b1 = _mm512_loadu_ps(p1), b2 = _mm512_loadu_ps(p2), b3 = _mm512_loadu_ps(p3);
        __m512 x = _mm512_set1_ps(a0[k]);
        s00 = _mm512_fmadd_ps(x, b0, s00), s01 = _mm512_fmadd_ps(x, b1, s01);
        s02 = _mm512_fmadd_ps(x, b2, s02), s03 = _mm512_fmadd_ps(x, b3, s03);
        x = _mm512_set1_ps(a1[k]);
        s10 = _mm512_fmadd_ps(x, b0, s10), s11 = _mm512_fmadd_ps(x, b1, s11);
        s12 = _mm512_fmadd_ps(x, b2, s12), s13 = _mm512_fmadd_ps(x, b3, s13);
        x = _mm512_set1_ps(a2[k]);
        s20 = _mm512_fmadd_ps(x, b0, s20), s21 = _mm512_fmadd_ps(x, b1, s21);
        s22 = _mm512_fmadd_ps(x, b2, s22), s23 = _mm512_fmadd_ps(x, b3, s23);
        x = _mm512_set1_ps(a3[k]);
        s30 = _mm512_fmadd_ps(x, b0, s30), s31 = _mm512_fmadd_ps(x, b1, s31);
        s32 = _mm512_fmadd_ps(x, b2, s32), s33 = _mm512_fmadd_ps(x, b3, s33);
    }
#define ST(cp, v, j)                                                                              \
    do {                                                                                          \
        if (cp) {                                                                                 \
            int left = ncol - 16 * (j);                                                           \
            if (left >= 16) _mm512_storeu_ps((cp) + 16 * (j), v);                                 \
            else if (left > 0) _mm512_mask_storeu_ps((cp) + 16 * (j), (__mmask16)((1u << left) - 1u), v); \
        }                                                                                         \
    } while (0)
    ST(c0, s00, 0); ST(c0, s01, 1); ST(c0, s02, 2); ST(c0, s03, 3);
    ST(c1, s10, 0); ST(c1, s11, 1); ST(c1, s12, 2); ST(c1, s13, 3);
    ST(c2, s20, 0); ST(c2, s21, 1); ST(c2, s22, 2); ST(c2, s23, 3);
    ST(c3, s30, 0); ST(c3, s31, 1); ST(c3, s32, 2); ST(c3, s33, 3);
#undef ST
}

/* The 4 x 64 tile of gemm.c's driver (its tile_fn). */
T512 void sp_gemm_tile4x64_avx512(int d, const float *const a[4], const float *bp, size_t PD, float *const c[4],
                                  int ncol) {
    tile4x64(d, a[0], a[1], a[2], a[3], bp, PD, c[0], c[1], c[2], c[3], ncol);
}
#else
void sp_gemm_tile4x64_avx512(int d, const float *const a[4], const float *bp, size_t PD, float *const c[4], int ncol) {
    (void)d, (void)a, (void)bp, (void)PD, (void)c, (void)ncol;
    SP_ASSERT(0 && "no AVX-512 build");
}
#endif
