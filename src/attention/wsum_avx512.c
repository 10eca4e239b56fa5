/* wsum_avx512.c: the reference softmax's weighted sum of V rows in AVX-512 F (wsum.h).
 * Columns are taken 32 at a time (four registers of 8 doubles, masked at the row's end); for
 * each block every key adds p_j * v_j[c] to the block's accumulators with one multiply and one
 * add per lane, in key order: per column the same operations in the same order as the
 * portable loop, hence the same bits (the caller rounds the sums to float). */
#include <stddef.h>
#include <stdint.h>

void sp_attn_wsum_avx512(int d, int n, const int32_t *idx, const double *p, const float *v, long ldv, double *acc);

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx512vl")))

/* 8 floats of row r from column c (lanes past m are zero), widened to double. */
T512 static inline __m512d load8(const float *r, __mmask8 m) { return _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, r)); }

T512 static inline __mmask8 lane_mask(int left) {
    return left >= 8 ? (__mmask8)0xff : left <= 0 ? (__mmask8)0 : (__mmask8)((1u << left) - 1u);
}

T512 void sp_attn_wsum_avx512(int d, int n, const int32_t *idx, const double *p, const float *v, long ldv, double *acc) {
    for (int c0 = 0; c0 < d; c0 += 32) {
        int w = d - c0 < 32 ? d - c0 : 32;
        __mmask8 m0 = lane_mask(w), m1 = lane_mask(w - 8), m2 = lane_mask(w - 16), m3 = lane_mask(w - 24);
        __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
        const float *vb = v + c0;
        if (w <= 8) {
            for (int j = 0; j < n; j++) {
                __m512d pj = _mm512_set1_pd(p[j]);
                const float *r = vb + (size_t)idx[j] * (size_t)ldv;
                a0 = _mm512_add_pd(a0, _mm512_mul_pd(pj, load8(r, m0)));
            }
        } else {
            for (int j = 0; j < n; j++) {
                __m512d pj = _mm512_set1_pd(p[j]);
                const float *r = vb + (size_t)idx[j] * (size_t)ldv;
                a0 = _mm512_add_pd(a0, _mm512_mul_pd(pj, load8(r, m0)));
                a1 = _mm512_add_pd(a1, _mm512_mul_pd(pj, load8(r + 8, m1)));
                if (w > 16) {
                    a2 = _mm512_add_pd(a2, _mm512_mul_pd(pj, load8(r + 16, m2)));
                    a3 = _mm512_add_pd(a3, _mm512_mul_pd(pj, load8(r + 24, m3)));
                }
            }
        }
        _mm512_mask_storeu_pd(acc + c0, m0, a0);
        if (w > 8) _mm512_mask_storeu_pd(acc + c0 + 8, m1, a1);
        if (w > 16) _mm512_mask_storeu_pd(acc + c0 + 16, m2, a2);
        if (w > 24) _mm512_mask_storeu_pd(acc + c0 + 24, m3, a3);
    }
}
#else
void sp_attn_wsum_avx512(int d, int n, const int32_t *idx, const double *p, const float *v, long ldv, double *acc) {
    for (int c = 0; c < d; c++) {
        double a = 0.0;
        for (int j = 0; j < n; j++) a += p[j] * (double)v[(size_t)idx[j] * (size_t)ldv + (size_t)c];
        acc[c] = a;
    }
}
#endif
