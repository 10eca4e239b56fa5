/* quant_avx512.c: one row of the 8-bit quantiser, and the per-tensor maximum, in AVX-512 F
 * (quant_simd.h). */
#include <stdint.h>

#include "functional/quant_simd.h" /* sp_quant_absmax_* */

void sp_quant_row_avx512(const float *x, int d, float s, int8_t *xi);

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx512vl,avx512bw")))

/* Eight elements x[0 .. 7] (lanes m) in double, the path every element took before the fp32
 * one below: the quotient as x * (1 / s), a multiply instead of vdivpd: within 3 ulp of the
 * correctly rounded x / s, so for |x / s| < 2^9 within 2^-43, and round-half-away of the two
 * differs only if a half-integer lies between them; every vector with an element within 2^-30
 * of a half-integer is divided exactly. Beyond 2^9 the result clamps to +-127 either way (the
 * sign is exact); 0, infinite and NaN operands give the division's values (0 * inf = NaN =
 * 0 / 0, x * 0 = x / inf). */
T512 static inline void quant8_pd(const float *x, __mmask8 m, __m512d vs, __m512d rcp, int8_t *xi) {
    const __m512d half = _mm512_set1_pd(0.5), one = _mm512_set1_pd(1.0), tiny = _mm512_set1_pd(0x1p-30);
    const __m512d hi = _mm512_set1_pd(127.0), lo = _mm512_set1_pd(-127.0);
    const __m512i signmask = _mm512_set1_epi64((long long)0x8000000000000000ULL);
    const __m512d xd = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, x));
    __m512d y = _mm512_mul_pd(xd, rcp);
    __m512d t = _mm512_roundscale_pd(y, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    if (_mm512_cmp_pd_mask(_mm512_abs_pd(_mm512_sub_pd(_mm512_abs_pd(_mm512_sub_pd(y, t)), half)), tiny,
                           _CMP_LT_OQ)) { /* near a tie: the exact quotient */
        y = _mm512_div_pd(xd, vs);
        t = _mm512_roundscale_pd(y, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    }
    /* |y| >= 2^52 (or NaN): y itself, as round() returns it */
    __mmask8 small = _mm512_cmp_pd_mask(_mm512_abs_pd(y), _mm512_set1_pd(4503599627370496.0), _CMP_LT_OQ);
    __mmask8 away = _mm512_cmp_pd_mask(_mm512_abs_pd(_mm512_sub_pd(y, t)), half, _CMP_GE_OQ);
    __m512d step = _mm512_castsi512_pd(_mm512_or_epi64(_mm512_and_epi64(_mm512_castpd_si512(y), signmask),
                                                       _mm512_castpd_si512(one))); /* copysign(1, y) */
    __m512d r = _mm512_mask_add_pd(t, away, t, step);
    r = _mm512_mask_mov_pd(y, small, r);
    r = _mm512_mask_mov_pd(r, _mm512_cmp_pd_mask(r, hi, _CMP_GT_OQ), hi);
    r = _mm512_mask_mov_pd(r, _mm512_cmp_pd_mask(r, lo, _CMP_LT_OQ), lo);
    __m256i iv = _mm512_cvttpd_epi32(r); /* integral values; NaN -> INT_MIN, as cvttsd2si */
    _mm_mask_storeu_epi8(xi, (__mmask16)m, _mm256_cvtepi32_epi8(iv));
}

/* 16 elements at a time in fp32, with a guard that sends a vector to quant8_pd (twice) when
 * one of its lanes could round differently. Why the fp32 result is the double one elsewhere:
 * q = x / s exactly; the portable loop rounds fl64(q), within 2^-46 |q| of q, and a
 * half-integer is a double, so fl64(q) lies on q's side of every half-integer (or on it only
 * if q is). rf = fl32(1 / s) and y = fl32(x rf) are each within 2^-24 relative, so |y - q| <=
 * |q| 2^-22.9; for |y| < 256 (|q| < 257) that is < 2^-14.8 (plus 2^-149 when y underflows).
 * So a lane with |y| < 256 whose y is at least 2^-12 from every half-integer rounds (to
 * nearest: no tie there) to the integer round_half_away(fl64(q)) rounds to, and a lane with
 * |y| >= 256 has |q| > 255.9: +-127 after the clamp, with x's sign (rf > 0) either way. NaN
 * lanes take the double path too. Scales outside [2^-126, 2^126] (rf infinite or subnormal)
 * send the whole row to the double path. docs/RESULTS.md part 9z.s. */
T512 void sp_quant_row_avx512(const float *x, int d, float s, int8_t *xi) {
    const __m512d vs = _mm512_set1_pd((double)s), rcp = _mm512_set1_pd(1.0 / (double)s);
    if (!(s >= 0x1p-126f && s <= 0x1p126f)) {
        for (int c = 0; c < d; c += 8)
            quant8_pd(x + c, d - c >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (d - c)) - 1u), vs, rcp, xi + c);
        return;
    }
    const __m512 rf = _mm512_set1_ps((float)(1.0 / (double)s));
    const __m512 guard = _mm512_set1_ps(0.5f - 0x1p-12f), big = _mm512_set1_ps(256.0f);
    const __m512 hi = _mm512_set1_ps(127.0f), lo = _mm512_set1_ps(-127.0f);
    int c = 0;
    /* 64 elements at a time: one guard test, the bytes packed in registers (vpackssdw,
     * vpacksswb: the levels are in [-127, 127], no saturation) and put in order by one vpermd,
     * one store */
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    for (; c + 64 <= d; c += 64) {
        __m512 r[4];
        __mmask16 bad = 0;
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            const __m512 y = _mm512_mul_ps(_mm512_loadu_ps(x + c + 16 * v), rf);
            r[v] = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            bad |= _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(y, r[v])), guard, _CMP_NLT_UQ) &
                   _mm512_cmp_ps_mask(_mm512_abs_ps(y), big, _CMP_NGE_UQ);
        }
        if (bad) { /* near a tie somewhere: the 16-lane loop below, one vector at a time */
            break;
        }
        __m512i iv[4];
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) iv[v] = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(r[v], lo), hi));
        const __m512i b = _mm512_packs_epi16(_mm512_packs_epi32(iv[0], iv[1]), _mm512_packs_epi32(iv[2], iv[3]));
        _mm512_storeu_si512((void *)(xi + c), _mm512_permutexvar_epi32(order, b));
    }
    for (; c < d; c += 16) {
        const int left = d - c;
        const __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
        const __m512 y = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + c), rf);
        const __m512 r = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        /* unsafe: |y - r| not < 0.5 - 2^-12 (or NaN) and |y| not >= 256 (or NaN) */
        const __mmask16 near = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(y, r)), guard, _CMP_NLT_UQ);
        if (near & _mm512_cmp_ps_mask(_mm512_abs_ps(y), big, _CMP_NGE_UQ)) {
            quant8_pd(x + c, (__mmask8)m, vs, rcp, xi + c);
            if (left > 8) quant8_pd(x + c + 8, (__mmask8)(m >> 8), vs, rcp, xi + c + 8);
            continue;
        }
        const __m512 rc = _mm512_min_ps(_mm512_max_ps(r, lo), hi); /* r is not NaN here */
        _mm_mask_storeu_epi8(xi + c, m, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(rc)));
    }
}
/* sp_quant_absmax_portable (quant_simd.h) in AVX-512: 16 lanes (masked at the row's end), 4
 * accumulators; max(|x|, m) keeps m where |x| is NaN (vmaxps returns its second operand when
 * either is NaN), as the portable comparisons skip it. */
T512 float sp_quant_absmax_avx512(const float *x, int n, int d, int ld, const unsigned char *valid) {
    __m512 m0 = _mm512_setzero_ps(), m1 = m0, m2 = m0, m3 = m0;
    for (int i = 0; i < n; i++) {
        if (valid && !valid[i]) continue;
        const float *r = x + (size_t)i * (size_t)ld;
        int c = 0;
        for (; c + 64 <= d; c += 64) {
            m0 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(r + c)), m0);
            m1 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(r + c + 16)), m1);
            m2 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(r + c + 32)), m2);
            m3 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(r + c + 48)), m3);
        }
        for (; c < d; c += 16) {
            const __mmask16 k = d - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (d - c)) - 1u);
            m0 = _mm512_max_ps(_mm512_abs_ps(_mm512_maskz_loadu_ps(k, r + c)), m0);
        }
    }
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
}
#else
#include <math.h>
void sp_quant_row_avx512(const float *x, int d, float s, int8_t *xi) {
    for (int c = 0; c < d; c++) {
        double v = round((double)x[c] / (double)s);
        if (v > 127) v = 127;
        if (v < -127) v = -127;
        xi[c] = (int8_t)v;
    }
}
float sp_quant_absmax_avx512(const float *x, int n, int d, int ld, const unsigned char *valid) {
    return sp_quant_absmax_portable(x, n, d, ld, valid);
}
#endif
