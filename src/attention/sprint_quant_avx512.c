/* sprint_quant_avx512.c: sp_quant_rows (per_row = 0) in AVX-512, byte for byte (sprint_quant.h).
 * v = round((double)x / (double)s) half away from zero: t = trunc(y), then t +- 1 when
 * |y - t| >= 0.5 (y - t is exact in double), clamped to +-127. */
#include "attention/sprint_quant.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <string.h>

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

T512 static inline __m256i quant8(__m512d y) { /* 8 doubles -> 8 int32 levels */
    const __m512d half = _mm512_set1_pd(0.5), one = _mm512_set1_pd(1.0), lim = _mm512_set1_pd(127.0);
    __m512d t = _mm512_roundscale_pd(y, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m512d f = _mm512_sub_pd(y, t);
    __mmask8 up = _mm512_cmp_pd_mask(f, half, _CMP_GE_OQ), dn = _mm512_cmp_pd_mask(f, _mm512_sub_pd(_mm512_setzero_pd(), half), _CMP_LE_OQ);
    t = _mm512_mask_add_pd(t, up, t, one);
    t = _mm512_mask_sub_pd(t, dn, t, one);
    t = _mm512_min_pd(_mm512_max_pd(t, _mm512_sub_pd(_mm512_setzero_pd(), lim)), lim);
    return _mm512_cvtpd_epi32(t);
}

T512 void sp_sx_quant_avx512(const float *x, int n, int d, int ld, const unsigned char *valid, int8_t *xi,
                             float *scales) {
    const __m512 absm = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
    __m512 vmx = _mm512_setzero_ps();
    for (int i = 0; i < n; i++) {
        if (valid && !valid[i]) continue;
        const float *r = x + (size_t)i * (size_t)ld;
        int c = 0;
        for (; c + 16 <= d; c += 16) vmx = _mm512_max_ps(vmx, _mm512_and_ps(_mm512_loadu_ps(r + c), absm));
        if (c < d) {
            __mmask16 lm = (__mmask16)((1u << (d - c)) - 1u);
            vmx = _mm512_max_ps(vmx, _mm512_and_ps(_mm512_maskz_loadu_ps(lm, r + c), absm));
        }
    }
    /* NaN-free inputs (checked by the caller): max is order-independent */
    float mx = _mm512_reduce_max_ps(vmx);
    float s = mx > 0.0f ? mx / 127.0f : 1.0f;
    const __m512d sd = _mm512_set1_pd((double)s);
    for (int i = 0; i < n; i++) {
        scales[i] = s;
        int8_t *o = xi + (size_t)i * (size_t)d;
        if (valid && !valid[i]) {
            memset(o, 0, (size_t)d);
            continue;
        }
        const float *r = x + (size_t)i * (size_t)ld;
        for (int c = 0; c < d; c += 8) {
            int m = d - c < 8 ? d - c : 8;
            __mmask8 lm = (__mmask8)((1u << m) - 1u);
            __m512d y = _mm512_div_pd(_mm512_cvtps_pd(_mm256_maskz_loadu_ps(lm, r + c)), sd);
            _mm256_mask_cvtepi32_storeu_epi8(o + c, lm, quant8(y));
        }
    }
}
#else
void sp_sx_quant_avx512(const float *x, int n, int d, int ld, const unsigned char *valid, int8_t *xi, float *scales) {
    sp_sx_quant_portable(x, n, d, ld, valid, xi, scales);
}
#endif
