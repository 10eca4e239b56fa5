/* fast_kernels_avx512.c: the fast operator's selection and score loops in AVX-512 F/BW/VL
 * (fast_kernels.h), tested against the portable ones. */
#include "functional/fast_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl")))

/* 16 keys per step: compare, and-ed with the padding mask, compacted in a register (compress
 * to memory is slow on Intel) and stored whole (out has 16 entries of slack). */
T512 int sp_fk_select_avx512(const int32_t *A, int n, int32_t tau, const unsigned char *kvalid, int32_t *out) {
    const __m512i tv = _mm512_set1_epi32(tau), step = _mm512_set1_epi32(16);
    __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    int cnt = 0;
    for (int j0 = 0; j0 < n; j0 += 16, idx = _mm512_add_epi32(idx, step)) {
        __mmask16 lim = n - j0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j0)) - 1u);
        __mmask16 m = _mm512_mask_cmpge_epi32_mask(lim, _mm512_maskz_loadu_epi32(lim, A + j0), tv);
        if (kvalid) {
            __m128i kv = _mm_maskz_loadu_epi8(lim, kvalid + j0);
            m &= _mm_test_epi8_mask(kv, kv);
        }
        _mm512_storeu_si512((void *)(out + cnt), _mm512_maskz_compress_epi32(m, idx));
        cnt += __builtin_popcount((unsigned)m);
    }
    return cnt;
}

/* One key per step: its dot accumulates in zmm registers (16 dims each, a masked tail for any
 * d), then a horizontal sum. */
T512 void sp_fk_dots_avx512(const float *q, const float *k, int ldk, int d, const int32_t *idx, int n, float *out) {
    if (d == 64) {
        const __m512 q0 = _mm512_loadu_ps(q), q1 = _mm512_loadu_ps(q + 16), q2 = _mm512_loadu_ps(q + 32),
                     q3 = _mm512_loadu_ps(q + 48);
        int t = 0;
        for (; t + 2 <= n; t += 2) {
            const float *a = k + (size_t)idx[t] * (size_t)ldk, *b = k + (size_t)idx[t + 1] * (size_t)ldk;
            __m512 s0 = _mm512_mul_ps(q0, _mm512_loadu_ps(a)), s1 = _mm512_mul_ps(q1, _mm512_loadu_ps(a + 16));
            __m512 u0 = _mm512_mul_ps(q0, _mm512_loadu_ps(b)), u1 = _mm512_mul_ps(q1, _mm512_loadu_ps(b + 16));
            s0 = _mm512_fmadd_ps(q2, _mm512_loadu_ps(a + 32), s0);
            s1 = _mm512_fmadd_ps(q3, _mm512_loadu_ps(a + 48), s1);
            u0 = _mm512_fmadd_ps(q2, _mm512_loadu_ps(b + 32), u0);
            u1 = _mm512_fmadd_ps(q3, _mm512_loadu_ps(b + 48), u1);
            /* both horizontal sums in one: a's 256-bit halves and b's folded side by side */
            __m512 sa = _mm512_add_ps(s0, s1), sb = _mm512_add_ps(u0, u1);
            __m512 lo = _mm512_shuffle_f32x4(sa, sb, 0x44), hi = _mm512_shuffle_f32x4(sa, sb, 0xEE);
            __m512 h = _mm512_add_ps(lo, hi); /* a: lanes 0-7, b: lanes 8-15 */
            __m256 ha = _mm512_castps512_ps256(h), hb = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(h), 1));
            __m128 x = _mm_add_ps(_mm256_castps256_ps128(ha), _mm256_extractf128_ps(ha, 1));
            __m128 y = _mm_add_ps(_mm256_castps256_ps128(hb), _mm256_extractf128_ps(hb, 1));
            __m128 z = _mm_hadd_ps(x, y);
            z = _mm_hadd_ps(z, z);
            out[t] = _mm_cvtss_f32(z);
            out[t + 1] = _mm_cvtss_f32(_mm_shuffle_ps(z, z, 1));
        }
        for (; t < n; t++) {
            const float *a = k + (size_t)idx[t] * (size_t)ldk;
            __m512 s0 = _mm512_mul_ps(q0, _mm512_loadu_ps(a)), s1 = _mm512_mul_ps(q1, _mm512_loadu_ps(a + 16));
            s0 = _mm512_fmadd_ps(q2, _mm512_loadu_ps(a + 32), s0);
            s1 = _mm512_fmadd_ps(q3, _mm512_loadu_ps(a + 48), s1);
            out[t] = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
        }
        return;
    }
    for (int t = 0; t < n; t++) {
        const float *a = k + (size_t)idx[t] * (size_t)ldk;
        __m512 s = _mm512_setzero_ps();
        for (int c = 0; c < d; c += 16) {
            __mmask16 m = d - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (d - c)) - 1u);
            s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + c), _mm512_maskz_loadu_ps(m, a + c), s);
        }
        out[t] = _mm512_reduce_add_ps(s);
    }
}
#else
int sp_fk_select_avx512(const int32_t *A, int n, int32_t tau, const unsigned char *kvalid, int32_t *out) {
    return sp_fk_select_portable(A, n, tau, kvalid, out);
}
void sp_fk_dots_avx512(const float *q, const float *k, int ldk, int d, const int32_t *idx, int n, float *out) {
    sp_fk_dots_portable(q, k, ldk, d, idx, n, out);
}
#endif
