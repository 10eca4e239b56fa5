/* kv_avx2.c: AVX2 + FMA + F16C kernels of a decode step (see kv_kernels.h), built with per-file
 * target flags (CMakeLists.txt), used when sp_cpu_detect() reports AVX2 (or AVX-512 without
 * VNNI). The screen has no VNNI: u8 x s8 pairs with vpmaddubsw (at most 2 * 15 * 127 = 3810,
 * no saturation), then vpmaddwd by ones into 32-bit lanes. Tested against kv_portable.c. */
#include "decode/kv_kernels.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

static inline __m256 load8(const void *row, sp_kv_dtype t, int c) {
    if (t == SP_KV_F32) return _mm256_loadu_ps((const float *)row + c);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + c));
    if (t == SP_KV_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

static void screen_avx2(const uint8_t *msb, const float *ks, int nb, int d, const int8_t *q8, const float *coef,
                        const int32_t *qsum, int g, float *a, int lda) {
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    int np = d / 8;
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = msb + (size_t)b * 8 * (size_t)d;
        for (int half = 0; half < 2; half++) { /* keys 0-7, then 8-15 of the block */
            __m256 kscale = _mm256_loadu_ps(ks + (size_t)b * 16 + 8 * half);
            for (int h = 0; h < g; h++) {
                const int8_t *q = q8 + (size_t)h * d;
                __m256i acc = _mm256_setzero_si256();
                for (int p = 0; p < np; p++) {
                    __m256i x = _mm256_loadu_si256((const __m256i *)(blk + 64 * (size_t)p + 32 * half));
                    int32_t qlo, qhi;
                    memcpy(&qlo, q + 8 * p, 4);
                    memcpy(&qhi, q + 8 * p + 4, 4);
                    __m256i lo = _mm256_and_si256(x, m4), hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
                    __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_set1_epi32(qlo)),
                                                   _mm256_maddubs_epi16(hi, _mm256_set1_epi32(qhi)));
                    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(s16, ones));
                }
                __m256i z = _mm256_sub_epi32(_mm256_slli_epi32(acc, 4), _mm256_set1_epi32(120 * qsum[h]));
                __m256 r = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(coef[h]), kscale), _mm256_cvtepi32_ps(z));
                _mm256_storeu_ps(a + (size_t)h * lda + (size_t)b * 16 + 8 * half, r);
            }
        }
    }
}

static int select_avx2(const float *a, int lda, int n, int g, const float *thr, int j0, int32_t *idx, int32_t *bits) {
    int k = 0;
    for (int j = 0; j < n; j += 8) {
        int m = 0;
        int lim = n - j < 8 ? n - j : 8;
        if (lim == 8)
            for (int h = 0; h < g; h++)
                m |= _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(a + (size_t)h * lda + j),
                                                      _mm256_set1_ps(thr[h]), _CMP_GE_OQ));
        else
            m = (1 << lim) - 1;
        while (m) {
            int r = __builtin_ctz((unsigned)m);
            m &= m - 1;
            int32_t b = 0;
            for (int h = 0; h < g; h++)
                if (a[(size_t)h * lda + j + r] >= thr[h]) b |= 1 << h;
            if (b) {
                idx[k] = j0 + j + r;
                bits[k++] = b;
            }
        }
    }
    return k;
}

static inline void prefetch_row(const unsigned char *row, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)(row + o), _MM_HINT_T0);
}

static inline void prefetch_row_l2(const unsigned char *row, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)(row + o), _MM_HINT_T1);
}

static void dots_avx2(const void *K, const void *Vpf, sp_kv_dtype t, int d, const int32_t *idx, int n, const float *q, int g,
                      float scale, float *s, int lds) {
    size_t rb = (size_t)d * (t == SP_KV_F32 ? 4 : 2);
    const unsigned char *Kb = K, *Vb = Vpf;
    for (int i = 0; i < n; i++) {
        if (i + 8 < n) prefetch_row(Kb + (size_t)idx[i + 8] * rb, rb);
        if (Vb && i + 16 < n) prefetch_row_l2(Vb + (size_t)idx[i + 16] * rb, rb);
        const unsigned char *row = Kb + (size_t)idx[i] * rb;
        for (int h = 0; h < g; h++) {
            const float *qh = q + (size_t)h * d;
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            for (int c = 0; c < d; c += 16) {
                a0 = _mm256_fmadd_ps(load8(row, t, c), _mm256_loadu_ps(qh + c), a0);
                a1 = _mm256_fmadd_ps(load8(row, t, c + 8), _mm256_loadu_ps(qh + c + 8), a1);
            }
            s[(size_t)h * lds + i] = scale * hsum8(_mm256_add_ps(a0, a1));
        }
    }
}

static float maxf_avx2(const float *s, int n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(s + i));
    float r[8];
    _mm256_storeu_ps(r, m);
    float mx = -INFINITY;
    for (int k = 0; k < 8; k++) mx = fmaxf(mx, r[k]);
    for (; i < n; i++) mx = fmaxf(mx, s[i]);
    return mx;
}

static inline __m256 exp8(__m256 x) {
    __m256 ok = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_GE_OQ);
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    __m256i ni = _mm256_cvttps_epi32(_mm256_sub_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                                   _mm256_set1_ps(0.5f)));
    __m256 n = _mm256_cvtepi32_ps(ni);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256 e = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23));
    return _mm256_and_ps(ok, _mm256_mul_ps(p, e));
}

static float expsum_avx2(float *s, int n, float m) {
    __m256 sum = _mm256_setzero_ps(), mv = _mm256_set1_ps(m);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + i), mv));
        _mm256_storeu_ps(s + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    float tot = hsum8(sum);
    if (i < n) {
        float tmp[8] = {0}, e[8];
        for (int k = 0; k < n - i; k++) tmp[k] = s[i + k] - m;
        for (int k = n - i; k < 8; k++) tmp[k] = -INFINITY;
        _mm256_storeu_ps(e, exp8(_mm256_loadu_ps(tmp)));
        for (int k = 0; k < n - i; k++) {
            s[i + k] = e[k];
            tot += e[k];
        }
    }
    return tot;
}

#define WS_TILE 32

static void wsum_avx2(const void *V, sp_kv_dtype t, int d, const int32_t *idx, int n, const float *w, int ldw, int g,
                      float *acc) {
    size_t rb = (size_t)d * (t == SP_KV_F32 ? 4 : 2);
    const unsigned char *Vb = V;
    for (int i0 = 0; i0 < n; i0 += WS_TILE) {
        int i1 = i0 + WS_TILE < n ? i0 + WS_TILE : n;
        for (int i = i1; i < i1 + WS_TILE && i < n; i++) prefetch_row(Vb + (size_t)idx[i] * rb, rb);
        for (int c = 0; c < d; c += 8)
            for (int h = 0; h < g; h++) {
                const float *wh = w + (size_t)h * ldw;
                float *ah = acc + (size_t)h * d + c;
                __m256 a0 = _mm256_loadu_ps(ah), a1 = _mm256_setzero_ps();
                int i = i0;
                for (; i + 2 <= i1; i += 2) {
                    a0 = _mm256_fmadd_ps(_mm256_set1_ps(wh[i]), load8(Vb + (size_t)idx[i] * rb, t, c), a0);
                    a1 = _mm256_fmadd_ps(_mm256_set1_ps(wh[i + 1]), load8(Vb + (size_t)idx[i + 1] * rb, t, c), a1);
                }
                if (i < i1) a0 = _mm256_fmadd_ps(_mm256_set1_ps(wh[i]), load8(Vb + (size_t)idx[i] * rb, t, c), a0);
                _mm256_storeu_ps(ah, _mm256_add_ps(a0, a1));
            }
    }
}

static const sp_kv_kernels kernels = {
    .name = "avx2",
    .screen = screen_avx2,
    .select = select_avx2,
    .dots = dots_avx2,
    .maxf = maxf_avx2,
    .expsum = expsum_avx2,
    .wsum = wsum_avx2,
};

const sp_kv_kernels *sp_kv_kernels_avx2(void) { return &kernels; }
#else
const sp_kv_kernels *sp_kv_kernels_avx2(void) { return NULL; }
#endif
