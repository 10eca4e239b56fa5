/* gemm_avx512.c: C = A B^T in AVX-512 F (gemm.h). B is packed per call into 16-column panels
 * (panel p, element c: 16 consecutive floats b[16p + u][c]), zero-padded; columns are taken
 * 128 at a time (32 KB of packed B at d = 64, in L1) and every 4-row group of A runs over them
 * with 16 zmm accumulators (4 rows x 4 panels: 4 panel loads and 4 broadcasts per 16 FMAs). */
#include <stdlib.h>
#include <string.h>

#include "cpu/gemm.h"
#include "cpu/linear.h"
#include "sprint/common.h"

void sp_gemm_nt_avx512(int m, int n, int d, const float *a, int lda, const float *b, int ldb, float *c, int ldc);
float *sp_gemm_pack_avx512(int n, int d, const float *b, int ldb);
void sp_gemm_nt_packed_avx512(int m, int n, int d, const float *a, int lda, const float *bp, float *c, int ldc);

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define NB 128 /* columns per block */

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

/* B (n x d) in the 16-column panels of cpu/linear.h, zero-padded to whole 64-column tiles
 * (sp_xcalloc'd). */
float *sp_gemm_pack_avx512(int n, int d, const float *b, int ldb) {
    const int npan = (n + 63) / 64 * 4; /* panels, a whole number of 64-column tiles */
    float *bp = sp_xcalloc((size_t)npan * (size_t)d * SP_LINEAR_PANEL, sizeof *bp);
    sp_linear_pack_strided(b, ldb, n, d, bp);
    return bp;
}

T512 void sp_gemm_nt_packed_avx512(int m, int n, int d, const float *a, int lda, const float *bp, float *c, int ldc) {
    const size_t PD = (size_t)d * 16;
    for (int j0 = 0; j0 < n; j0 += NB) {
        int j1 = j0 + NB < n ? j0 + NB : n;
        for (int i0 = 0; i0 < m; i0 += 4) {
            const float *ar[4];
            float *cr[4];
            for (int r = 0; r < 4; r++) {
                int i = i0 + r < m ? i0 + r : m - 1;
                ar[r] = a + (size_t)i * (size_t)lda;
                cr[r] = i0 + r < m ? c + (size_t)(i0 + r) * (size_t)ldc : NULL;
            }
            for (int jt = j0; jt < j1; jt += 64) {
                int ncol = j1 - jt < 64 ? j1 - jt : 64;
                tile4x64(d, ar[0], ar[1], ar[2], ar[3], bp + (size_t)(jt / 16) * PD, PD, cr[0] ? cr[0] + jt : NULL,
                         cr[1] ? cr[1] + jt : NULL, cr[2] ? cr[2] + jt : NULL, cr[3] ? cr[3] + jt : NULL, ncol);
            }
        }
    }
}

void sp_gemm_nt_avx512(int m, int n, int d, const float *a, int lda, const float *b, int ldb, float *c, int ldc) {
    float *bp = sp_gemm_pack_avx512(n, d, b, ldb);
    sp_gemm_nt_packed_avx512(m, n, d, a, lda, bp, c, ldc);
    free(bp);
}
#else
#include <cblas.h>
void sp_gemm_nt_avx512(int m, int n, int d, const float *a, int lda, const float *b, int ldb, float *c, int ldc) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, d, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
}
float *sp_gemm_pack_avx512(int n, int d, const float *b, int ldb) {
    (void)n, (void)d, (void)b, (void)ldb;
    return NULL;
}
void sp_gemm_nt_packed_avx512(int m, int n, int d, const float *a, int lda, const float *bp, float *c, int ldc) {
    (void)m, (void)n, (void)d, (void)a, (void)lda, (void)bp, (void)c, (void)ldc;
    SP_ASSERT(0 && "no AVX-512 build");
}
#endif
