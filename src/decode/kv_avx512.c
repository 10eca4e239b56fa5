/* kv_avx512.c: AVX-512 (F, BW, VL, DQ) + VNNI kernels of a decode step (see kv_kernels.h),
 * built with per-file target flags (CMakeLists.txt) and used only when sp_cpu_detect() reports
 * AVX-512 and the CPU has VNNI. Tested against kv_portable.c (tests/test_decode.c). */
#include "decode/kv_kernels.h"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

/* 16 elements of a row in type t at element offset c, as fp32. */
static inline __m512 load16(const void *row, sp_kv_dtype t, int c) {
    if (t == SP_KV_F32) return _mm512_loadu_ps((const float *)row + c);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + c));
    if (t == SP_KV_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static void screen_avx512(const uint8_t *msb, const float *ks, int nb, int d, const int8_t *q8, const float *coef,
                          const int32_t *qsum, int g, float *a, int lda) {
    const __m512i m4 = _mm512_set1_epi8(15);
    __m512i lo[128], hi[128]; /* d <= 1024: d/8 groups */
    int np = d / 8;
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = msb + (size_t)b * 8 * (size_t)d;
        if (b + 1 < nb)
            for (int p = 0; p < np; p++) _mm_prefetch((const char *)(blk + 8 * (size_t)d + 64 * (size_t)p), _MM_HINT_T0);
        for (int p = 0; p < np; p++) {
            __m512i x = _mm512_loadu_si512((const void *)(blk + 64 * (size_t)p));
            lo[p] = _mm512_and_si512(x, m4);
            hi[p] = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
        }
        __m512 kscale = _mm512_loadu_ps(ks + (size_t)b * 16);
        for (int h = 0; h < g; h++) {
            const int8_t *q = q8 + (size_t)h * d;
            __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
            for (int p = 0; p < np; p++) {
                int32_t qlo, qhi;
                memcpy(&qlo, q + 8 * p, 4);
                memcpy(&qhi, q + 8 * p + 4, 4);
                acc0 = _mm512_dpbusd_epi32(acc0, lo[p], _mm512_set1_epi32(qlo));
                acc1 = _mm512_dpbusd_epi32(acc1, hi[p], _mm512_set1_epi32(qhi));
            }
            __m512i D = _mm512_add_epi32(acc0, acc1);
            __m512i z = _mm512_sub_epi32(_mm512_slli_epi32(D, 4), _mm512_set1_epi32(120 * qsum[h]));
            __m512 r = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(coef[h]), kscale), _mm512_cvtepi32_ps(z));
            _mm512_storeu_ps(a + (size_t)h * lda + (size_t)b * 16, r);
        }
    }
}

static int select_avx512(const float *a, int lda, int n, int g, const float *thr, int j0, int32_t *idx,
                         int32_t *bits) {
    int k = 0;
    __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int j = 0; j < n; j += 16) {
        __mmask16 valid = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
        __mmask16 any = 0;
        __m512i bv = _mm512_setzero_si512();
        for (int h = 0; h < g; h++) {
            __m512 x = _mm512_maskz_loadu_ps(valid, a + (size_t)h * lda + j);
            __mmask16 kmask = _mm512_mask_cmp_ps_mask(valid, x, _mm512_set1_ps(thr[h]), _CMP_GE_OQ);
            bv = _mm512_mask_or_epi32(bv, kmask, bv, _mm512_set1_epi32(1 << h));
            any |= kmask;
        }
        if (!any) continue;
        __m512i iv = _mm512_add_epi32(lane, _mm512_set1_epi32(j0 + j));
        _mm512_mask_compressstoreu_epi32(idx + k, any, iv);
        _mm512_mask_compressstoreu_epi32(bits + k, any, bv);
        k += __builtin_popcount(any);
    }
    return k;
}

static inline void prefetch_row(const unsigned char *row, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)(row + o), _MM_HINT_T0);
}

static inline void prefetch_row_l2(const unsigned char *row, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)(row + o), _MM_HINT_T1);
}

static void dots_avx512(const void *K, const void *Vpf, sp_kv_dtype t, int d, const int32_t *idx, int n, const float *q, int g,
                        float scale, float *s, int lds) {
    size_t rb = (size_t)d * (t == SP_KV_F32 ? 4 : 2);
    const unsigned char *Kb = K;
    const int PF = 8;
    const unsigned char *Vb = Vpf;
    for (int i = 0; i < n; i++) {
        if (i + PF < n) prefetch_row(Kb + (size_t)idx[i + PF] * rb, rb);
        if (Vb && i + 2 * PF < n) prefetch_row_l2(Vb + (size_t)idx[i + 2 * PF] * rb, rb);
        const unsigned char *row = Kb + (size_t)idx[i] * rb;
        for (int h = 0; h < g; h++) {
            const float *qh = q + (size_t)h * d;
            __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
            int c = 0;
            for (; c + 32 <= d; c += 32) {
                a0 = _mm512_fmadd_ps(load16(row, t, c), _mm512_loadu_ps(qh + c), a0);
                a1 = _mm512_fmadd_ps(load16(row, t, c + 16), _mm512_loadu_ps(qh + c + 16), a1);
            }
            if (c < d) a0 = _mm512_fmadd_ps(load16(row, t, c), _mm512_loadu_ps(qh + c), a0);
            s[(size_t)h * lds + i] = scale * _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
        }
    }
}

static float maxf_avx512(const float *s, int n) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(s + i));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        m = _mm512_mask_max_ps(m, k, m, _mm512_maskz_loadu_ps(k, s + i));
    }
    return _mm512_reduce_max_ps(m);
}

/* exp(x), x <= 0, the polynomial of kv_portable.c's exp_neg; 0 below -87. */
static inline __m512 exp16(__m512 x) {
    __mmask16 ok = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ);
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    __m512i ni = _mm512_cvttps_epi32(_mm512_sub_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                                   _mm512_set1_ps(0.5f)));
    __m512 n = _mm512_cvtepi32_ps(ni);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512 e = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(ni, _mm512_set1_epi32(127)), 23));
    return _mm512_maskz_mul_ps(ok, p, e);
}

static float expsum_avx512(float *s, int n, float m) {
    __m512 sum = _mm512_setzero_ps(), mv = _mm512_set1_ps(m);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(s + i), mv));
        _mm512_storeu_ps(s + i, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        __m512 e = _mm512_maskz_mov_ps(k, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + i), mv)));
        _mm512_mask_storeu_ps(s + i, k, e);
        sum = _mm512_add_ps(sum, e);
    }
    return _mm512_reduce_add_ps(sum);
}

#define WS_TILE 32 /* rows per tile: 32 fp32 rows of d = 128 are 16 KB, they stay in L1 across heads */

static void wsum_avx512(const void *V, sp_kv_dtype t, int d, const int32_t *idx, int n, const float *w, int ldw,
                        int g, float *acc) {
    size_t rb = (size_t)d * (t == SP_KV_F32 ? 4 : 2);
    const unsigned char *Vb = V;
    for (int i0 = 0; i0 < n; i0 += WS_TILE) {
        int i1 = i0 + WS_TILE < n ? i0 + WS_TILE : n;
        for (int i = i1; i < i1 + WS_TILE && i < n; i++) prefetch_row(Vb + (size_t)idx[i] * rb, rb);
        for (int c = 0; c < d; c += 16)
            for (int h = 0; h < g; h++) {
                const float *wh = w + (size_t)h * ldw;
                float *ah = acc + (size_t)h * d + c;
                __m512 a0 = _mm512_loadu_ps(ah), a1 = _mm512_setzero_ps();
                int i = i0;
                for (; i + 2 <= i1; i += 2) {
                    a0 = _mm512_fmadd_ps(_mm512_set1_ps(wh[i]), load16(Vb + (size_t)idx[i] * rb, t, c), a0);
                    a1 = _mm512_fmadd_ps(_mm512_set1_ps(wh[i + 1]), load16(Vb + (size_t)idx[i + 1] * rb, t, c), a1);
                }
                if (i < i1) a0 = _mm512_fmadd_ps(_mm512_set1_ps(wh[i]), load16(Vb + (size_t)idx[i] * rb, t, c), a0);
                _mm512_storeu_ps(ah, _mm512_add_ps(a0, a1));
            }
    }
}

static const sp_kv_kernels kernels = {
    .name = "avx512-vnni",
    .screen = screen_avx512,
    .select = select_avx512,
    .dots = dots_avx512,
    .maxf = maxf_avx512,
    .expsum = expsum_avx512,
    .wsum = wsum_avx512,
};

const sp_kv_kernels *sp_kv_kernels_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") ? &kernels : NULL;
}
#else
const sp_kv_kernels *sp_kv_kernels_avx512(void) { return NULL; }
#endif
