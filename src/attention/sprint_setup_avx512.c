/* sprint_setup_avx512.c: the per-call setup of the SPRINT CPU kernel (sprint_cpu.c) in AVX-512:
 * the 8-bit quantisation of Q and K with the bytes of sp_quant_rows_level, and the key MSB
 * levels with the integer row sums the sigma margins need (sprint_exact.h). Tested byte for
 * byte against the portable loops (tests/test_cpu_sprint.c). */
#include "attention/sprint_exact.h"

#include <string.h>

#include "functional/quant_simd.h"

void sp_sx_rows_portable(const int8_t *x, int n, int d, uint8_t *msb, int32_t *sum, int32_t *sum2) {
    for (int i = 0; i < n; i++) {
        const int8_t *r = x + (size_t)i * (size_t)d;
        int32_t s = 0, s2 = 0;
        for (int c = 0; c < d; c++) {
            if (msb) msb[(size_t)i * (size_t)d + (size_t)c] = (uint8_t)(((uint8_t)r[c] ^ 0x80u) >> 4);
            s += r[c], s2 += (int32_t)r[c] * r[c];
        }
        sum[i] = s, sum2[i] = s2;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "attention/exp2_avx512.h" /* T512 */

/* Per-tensor 8-bit quantisation (sp_quant_rows_level with per_row = 0): the same maximum over
 * the valid rows, the same float scale s = max / 127, and per element round-half-away of the
 * double quotient x / s, clamped to +-127; rows with valid[i] = 0 are zero. The quotient is
 * taken as x * (1 / s) (a multiply instead of vdivpd), which is within 3 ulp of the correctly
 * rounded x / s (|x / s| <= 128, so within 2^-44); round-half-away of the two differs only if
 * a half-integer lies between them, so every vector with an element within 2^-30 of a
 * half-integer is divided exactly as quant_avx512.c does (a subnormal scale only widens the
 * quotients to < 2^9, still within 2^-43). A scale that underflows to 0 goes to
 * sp_quant_rows_level whole. Needs finite x in the valid rows (the kernel checks its inputs
 * first). */
T512 void sp_sx_quant_avx512(const float *x, int n, int d, int ld, const unsigned char *valid, int8_t *xi,
                             float *scales) {
    __m512 vmx = _mm512_setzero_ps();
    for (int i = 0; i < n; i++) {
        if (valid && !valid[i]) continue;
        const float *r = x + (size_t)i * (size_t)ld;
        for (int c = 0; c < d; c += 16) {
            const __mmask16 m = d - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (d - c)) - 1u);
            vmx = _mm512_max_ps(vmx, _mm512_abs_ps(_mm512_maskz_loadu_ps(m, r + c)));
        }
    }
    const float mx = _mm512_reduce_max_ps(vmx);
    const float s = mx > 0.0f ? mx / 127.0f : 1.0f;
    if (s == 0.0f) { /* max <= 2^-143: the scale underflows and 1 / s is infinite (0 * inf = NaN
                      * where the division gives 0 / 0, stored as 0): the dividing quantiser */
        sp_quant_rows_level(SP_CPU_AVX512, x, n, d, ld, 0, valid, xi, scales);
        return;
    }
    const __m512d vs = _mm512_set1_pd((double)s), rcp = _mm512_set1_pd(1.0 / (double)s);
    const __m512d half = _mm512_set1_pd(0.5), one = _mm512_set1_pd(1.0), tiny = _mm512_set1_pd(0x1p-30);
    const __m512d hi = _mm512_set1_pd(127.0), lo = _mm512_set1_pd(-127.0);
    const __m512i signmask = _mm512_set1_epi64((long long)0x8000000000000000ULL);
    for (int i = 0; i < n; i++) {
        scales[i] = s;
        int8_t *out = xi + (size_t)i * (size_t)d;
        if (valid && !valid[i]) {
            memset(out, 0, (size_t)d);
            continue;
        }
        const float *r = x + (size_t)i * (size_t)ld;
        for (int c = 0; c < d; c += 8) {
            const __mmask8 m = d - c >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (d - c)) - 1u);
            const __m512d xd = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, r + c));
            __m512d y = _mm512_mul_pd(xd, rcp);
            __m512d t = _mm512_roundscale_pd(y, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __m512d f = _mm512_abs_pd(_mm512_sub_pd(y, t));
            if (_mm512_cmp_pd_mask(_mm512_abs_pd(_mm512_sub_pd(f, half)), tiny, _CMP_LT_OQ)) {
                y = _mm512_div_pd(xd, vs); /* near a tie: the exact quotient */
                t = _mm512_roundscale_pd(y, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
                f = _mm512_abs_pd(_mm512_sub_pd(y, t));
            }
            const __mmask8 away = _mm512_cmp_pd_mask(f, half, _CMP_GE_OQ);
            const __m512d step = _mm512_castsi512_pd(_mm512_or_epi64(_mm512_and_epi64(_mm512_castpd_si512(y), signmask),
                                                                     _mm512_castpd_si512(one)));
            __m512d v = _mm512_mask_add_pd(t, away, t, step);
            v = _mm512_min_pd(_mm512_max_pd(v, lo), hi);
            _mm_mask_storeu_epi8(out + c, (__mmask16)m, _mm256_cvtepi32_epi8(_mm512_cvttpd_epi32(v)));
        }
    }
}

/* sp_sx_rows_portable in AVX-512 BW: 64 bytes of a row at a time; MSB levels by xor / shift /
 * mask, sums and sums of squares by widening to 16 bits and vpmaddwd (exact integers). */
T512 void sp_sx_rows_avx512(const int8_t *x, int n, int d, uint8_t *msb, int32_t *sum, int32_t *sum2) {
    const __m512i ones = _mm512_set1_epi16(1), nib = _mm512_set1_epi8(0x0F), top = _mm512_set1_epi8((char)0x80);
    for (int i = 0; i < n; i++) {
        const int8_t *r = x + (size_t)i * (size_t)d;
        __m512i s = _mm512_setzero_si512(), s2 = s;
        for (int c = 0; c < d; c += 64) {
            const __mmask64 m = d - c >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (d - c)) - 1);
            const __m512i b = _mm512_maskz_loadu_epi8(m, r + c);
            if (msb)
                _mm512_mask_storeu_epi8(msb + (size_t)i * (size_t)d + (size_t)c, m,
                                        _mm512_and_si512(_mm512_srli_epi16(_mm512_xor_si512(b, top), 4), nib));
            const __m512i w0 = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(b));
            const __m512i w1 = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(b, 1));
            s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_madd_epi16(w0, ones), _mm512_madd_epi16(w1, ones)));
            s2 = _mm512_add_epi32(s2, _mm512_add_epi32(_mm512_madd_epi16(w0, w0), _mm512_madd_epi16(w1, w1)));
        }
        sum[i] = _mm512_reduce_add_epi32(s), sum2[i] = _mm512_reduce_add_epi32(s2);
    }
}
#else
void sp_sx_quant_avx512(const float *x, int n, int d, int ld, const unsigned char *valid, int8_t *xi,
                        float *scales) {
    sp_quant_rows_level(SP_CPU_PORTABLE, x, n, d, ld, 0, valid, xi, scales);
}
void sp_sx_rows_avx512(const int8_t *x, int n, int d, uint8_t *msb, int32_t *sum, int32_t *sum2) {
    sp_sx_rows_portable(x, n, d, msb, sum, sum2);
}
#endif
