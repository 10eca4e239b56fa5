/* scores_avx512.c: the reference's exact scores in AVX-512 F (scores.h). Eight keys at a time,
 * one per lane: for each column c the lane's key element is gathered (64-bit offsets, so any
 * row stride), widened to double, multiplied by q[c] and added to the lane's sum; the lanes'
 * sums are the portable loop's sums, term by term in the same order, hence the same bits. The
 * last n mod 8 keys run the portable loop. */
#include <stddef.h>
#include <stdint.h>

void sp_attn_scores_avx512(int d, int n, const int32_t *idx, const float *q, const float *k, long ldk, float scale,
                           double *scores);

static void scores_tail(int d, int j0, int n, const int32_t *idx, const float *q, const float *k, long ldk,
                        float scale, double *scores) {
    for (int j = j0; j < n; j++) {
        const float *kr = k + (size_t)idx[j] * (size_t)ldk;
        double dot = 0.0;
        for (int c = 0; c < d; c++) dot += (double)q[c] * (double)kr[c];
        scores[j] = dot * (double)scale;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define T512 __attribute__((target("avx512f")))

T512 void sp_attn_scores_avx512(int d, int n, const int32_t *idx, const float *q, const float *k, long ldk, float scale,
                                double *scores) {
    const __m512d sc = _mm512_set1_pd((double)scale);
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        const long long L = (long long)ldk;
        __m512i off = _mm512_set_epi64(idx[j + 7] * L, idx[j + 6] * L, idx[j + 5] * L, idx[j + 4] * L, idx[j + 3] * L,
                                       idx[j + 2] * L, idx[j + 1] * L, idx[j] * L);
        __m512d acc = _mm512_setzero_pd();
        for (int c = 0; c < d; c++) {
            __m512d kc = _mm512_cvtps_pd(_mm512_i64gather_ps(off, k + c, 4));
            acc = _mm512_add_pd(acc, _mm512_mul_pd(_mm512_set1_pd((double)q[c]), kc));
        }
        _mm512_storeu_pd(scores + j, _mm512_mul_pd(acc, sc));
    }
    scores_tail(d, j, n, idx, q, k, ldk, scale, scores);
}
#else
void sp_attn_scores_avx512(int d, int n, const int32_t *idx, const float *q, const float *k, long ldk, float scale,
                           double *scores) {
    scores_tail(d, 0, n, idx, q, k, ldk, scale, scores);
}
#endif
