/* gemm.c: C = A B^T (gemm.h) at every dispatch level, on one packed-B structure: B packed into
 * the 16-column panels of cpu/linear.h (panel p, element k: 16 consecutive floats b[16p + u][k]),
 * zero-padded to whole 64-column tiles; columns taken 128 at a time (32 KB of packed B at
 * d = 64, in L1) and every 4-row group of A run over them by the level's register tile:
 *   portable  4 x 16 (SSE2 mul then add, or the same in plain C), this file;
 *   AVX2      4 x 16 (FMA, ymm), this file;
 *   AVX-512   4 x 64 (FMA, zmm), gemm_avx512.c.
 * Every tile computes each entry by the same chain, whatever m, n, the padding or the tile:
 *   s = 0; for k = 0..d-1: s = s + a[i][k] b[j][k]
 * with one rounding per step (FMA) at AVX2 and AVX-512, so those two levels agree bit for bit,
 * and two (product, then sum) at the portable level. So the padded and the compacted score
 * blocks of sprint_op.c give the same bits for the same (query, key) pair at every level
 * (tests/test_cpu_kernels.c, every_entry_is_the_level_chain_whatever_the_shape). This file is
 * compiled with -ffp-contract=off (CMakeLists.txt): the portable chain must not become FMAs. */
#include "cpu/gemm.h"

#include <stdlib.h>
#include <string.h>

#include "cpu/linear.h"
#include "sprint/common.h"

#define NB 128 /* columns per block */

/* One register tile: rows a[0..3] (the same pointer repeated past the last row) against the
 * tile's panels bp (panel stride PD floats), ncol (1..tile width) columns stored to c[r]
 * (NULL: a row past m, not stored). */
typedef void (*tile_fn)(int d, const float *const a[4], const float *bp, size_t PD, float *const c[4], int ncol);
void sp_gemm_tile4x64_avx512(int d, const float *const a[4], const float *bp, size_t PD, float *const c[4], int ncol);

/* Portable 4 x 16: the step s = s + a b as a product rounded to fp32, then a sum rounded. */
#if defined(__SSE2__)
#include <emmintrin.h>
/* 4 rows x 8 columns in xmm (8 accumulators: the 16 xmm registers hold them, B and a broadcast),
 * twice per panel. */
static void tile4x8_sse2(int d, const float *const a[4], const float *p, float *const c[4], int ncol) {
    __m128 s00 = _mm_setzero_ps(), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00, s31 = s00;
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3];
    for (int k = 0; k < d; k++, p += SP_LINEAR_PANEL) {
        __m128 b0 = _mm_loadu_ps(p), b1 = _mm_loadu_ps(p + 4);
        __m128 x = _mm_set1_ps(a0[k]);
        s00 = _mm_add_ps(s00, _mm_mul_ps(x, b0)), s01 = _mm_add_ps(s01, _mm_mul_ps(x, b1));
        x = _mm_set1_ps(a1[k]);
        s10 = _mm_add_ps(s10, _mm_mul_ps(x, b0)), s11 = _mm_add_ps(s11, _mm_mul_ps(x, b1));
        x = _mm_set1_ps(a2[k]);
        s20 = _mm_add_ps(s20, _mm_mul_ps(x, b0)), s21 = _mm_add_ps(s21, _mm_mul_ps(x, b1));
        x = _mm_set1_ps(a3[k]);
        s30 = _mm_add_ps(s30, _mm_mul_ps(x, b0)), s31 = _mm_add_ps(s31, _mm_mul_ps(x, b1));
    }
    const __m128 s[4][2] = {{s00, s01}, {s10, s11}, {s20, s21}, {s30, s31}};
    for (int r = 0; r < 4; r++) {
        if (!c[r]) continue;
        float t[8];
        _mm_storeu_ps(t, s[r][0]), _mm_storeu_ps(t + 4, s[r][1]);
        memcpy(c[r], t, (size_t)(ncol < 8 ? ncol : 8) * sizeof *t);
    }
}

static void tile4x16_portable(int d, const float *const a[4], const float *bp, size_t PD, float *const c[4], int ncol) {
    (void)PD;
    tile4x8_sse2(d, a, bp, c, ncol);
    if (ncol > 8) {
        float *const c8[4] = {c[0] ? c[0] + 8 : NULL, c[1] ? c[1] + 8 : NULL, c[2] ? c[2] + 8 : NULL,
                              c[3] ? c[3] + 8 : NULL};
        tile4x8_sse2(d, a, bp + 8, c8, ncol - 8);
    }
}
#else
static void tile4x16_portable(int d, const float *const a[4], const float *bp, size_t PD, float *const c[4], int ncol) {
    (void)PD;
    float s[4][SP_LINEAR_PANEL] = {{0}};
    for (int k = 0; k < d; k++, bp += SP_LINEAR_PANEL)
        for (int r = 0; r < 4; r++) {
            const float x = a[r][k];
            for (int u = 0; u < SP_LINEAR_PANEL; u++) {
                const float prod = x * bp[u];
                s[r][u] = s[r][u] + prod;
            }
        }
    for (int r = 0; r < 4; r++)
        if (c[r]) memcpy(c[r], s[r], (size_t)ncol * sizeof **s);
}
#endif

/* AVX2 4 x 16: the AVX-512 chain (one FMA per step from +0) in ymm, 8 accumulators. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx2,fma"))) static void tile4x16_avx2(int d, const float *const a[4], const float *p, size_t PD,
                                                              float *const c[4], int ncol) {
    (void)PD;
    __m256 s00 = _mm256_setzero_ps(), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00, s31 = s00;
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3];
    for (int k = 0; k < d; k++, p += SP_LINEAR_PANEL) {
        __m256 b0 = _mm256_loadu_ps(p), b1 = _mm256_loadu_ps(p + 8);
        __m256 x = _mm256_broadcast_ss(a0 + k);
        s00 = _mm256_fmadd_ps(x, b0, s00), s01 = _mm256_fmadd_ps(x, b1, s01);
        x = _mm256_broadcast_ss(a1 + k);
        s10 = _mm256_fmadd_ps(x, b0, s10), s11 = _mm256_fmadd_ps(x, b1, s11);
        x = _mm256_broadcast_ss(a2 + k);
        s20 = _mm256_fmadd_ps(x, b0, s20), s21 = _mm256_fmadd_ps(x, b1, s21);
        x = _mm256_broadcast_ss(a3 + k);
        s30 = _mm256_fmadd_ps(x, b0, s30), s31 = _mm256_fmadd_ps(x, b1, s31);
    }
    const __m256 s[4][2] = {{s00, s01}, {s10, s11}, {s20, s21}, {s30, s31}};
    for (int r = 0; r < 4; r++) {
        if (!c[r]) continue;
        if (ncol == 16) {
            _mm256_storeu_ps(c[r], s[r][0]), _mm256_storeu_ps(c[r] + 8, s[r][1]);
        } else {
            float t[16];
            _mm256_storeu_ps(t, s[r][0]), _mm256_storeu_ps(t + 8, s[r][1]);
            memcpy(c[r], t, (size_t)ncol * sizeof *t);
        }
    }
}
#endif

/* The level's tile and its width in columns. */
static tile_fn level_tile(sp_cpu_level level, int *width) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (level >= SP_CPU_AVX512) return *width = 64, sp_gemm_tile4x64_avx512;
    if (level >= SP_CPU_AVX2) return *width = 16, tile4x16_avx2;
#else
    (void)level;
#endif
    return *width = 16, tile4x16_portable;
}

/* B (n x d) in 16-column panels, zero-padded to whole 64-column tiles (the widest tile):
 * sp_xcalloc'd, the caller frees. */
static float *pack_b(int n, int d, const float *b, int ldb) {
    const int npan = (n + 63) / 64 * 4;
    float *bp = sp_xcalloc((size_t)npan * (size_t)d * SP_LINEAR_PANEL, sizeof *bp);
    sp_linear_pack_strided(b, ldb, n, d, bp);
    return bp;
}

/* C (m x n, ldc) = A (m x d, lda) . B^T with B packed by pack_b, by the level's tile. */
static void gemm_packed(sp_cpu_level level, int m, int n, int d, const float *a, int lda, const float *bp, float *c,
                        int ldc) {
    int tw;
    tile_fn tile = level_tile(level, &tw);
    const size_t PD = (size_t)d * SP_LINEAR_PANEL;
    for (int j0 = 0; j0 < n; j0 += NB) {
        int j1 = j0 + NB < n ? j0 + NB : n;
        for (int i0 = 0; i0 < m; i0 += 4) {
            const float *ar[4];
            float *cr[4];
            for (int r = 0; r < 4; r++) { /* rows past m repeat the last one, not stored */
                int i = i0 + r < m ? i0 + r : m - 1;
                ar[r] = a + (size_t)i * (size_t)lda;
                cr[r] = i0 + r < m ? c + (size_t)(i0 + r) * (size_t)ldc : NULL;
            }
            for (int jt = j0; jt < j1; jt += tw) {
                int ncol = j1 - jt < tw ? j1 - jt : tw;
                float *const ct[4] = {cr[0] ? cr[0] + jt : NULL, cr[1] ? cr[1] + jt : NULL,
                                      cr[2] ? cr[2] + jt : NULL, cr[3] ? cr[3] + jt : NULL};
                tile(d, ar, bp + (size_t)(jt / SP_LINEAR_PANEL) * PD, PD, ct, ncol);
            }
        }
    }
}

/* d = 0: the empty sums. */
static void zero_c(int m, int n, float *c, int ldc) {
    for (int i = 0; i < m; i++) memset(c + (size_t)i * (size_t)ldc, 0, (size_t)n * sizeof *c);
}

void sp_gemm_nt_level(sp_cpu_level level, int m, int n, int d, const float *a, int lda, const float *b, int ldb,
                      float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    if (d <= 0) {
        zero_c(m, n, c, ldc);
        return;
    }
    float *bp = pack_b(n, d, b, ldb);
    gemm_packed(level, m, n, d, a, lda, bp, c, ldc);
    free(bp);
}

void sp_gemm_nt(int m, int n, int d, const float *a, int lda, const float *b, int ldb, float *c, int ldc) {
    sp_gemm_nt_level(sp_cpu_detect(), m, n, d, a, lda, b, ldb, c, ldc);
}

void sp_gemm_b_init_level(sp_gemm_b *pb, sp_cpu_level level, int n, int d, const float *b, int ldb) {
    *pb = (sp_gemm_b){.n = n, .d = d, .ldb = ldb, .level = level, .b = b, .packed = NULL};
    if (d > 0 && n > 0) pb->packed = pack_b(n, d, b, ldb);
}

void sp_gemm_b_init(sp_gemm_b *pb, int n, int d, const float *b, int ldb) {
    sp_gemm_b_init_level(pb, sp_cpu_detect(), n, d, b, ldb);
}

void sp_gemm_nt_b(int m, const float *a, int lda, const sp_gemm_b *pb, float *c, int ldc) {
    if (m <= 0 || pb->n <= 0) return;
    if (!pb->packed) {
        zero_c(m, pb->n, c, ldc);
        return;
    }
    gemm_packed(pb->level, m, pb->n, pb->d, a, lda, pb->packed, c, ldc);
}

void sp_gemm_b_free(sp_gemm_b *pb) {
    free(pb->packed);
    pb->packed = NULL;
}
