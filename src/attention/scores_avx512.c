/* scores_avx512.c: the reference's exact scores in AVX-512 F (scores.h). Eight keys at a time,
 * one per lane: for each column c the lane's key element is widened to double, multiplied by
 * q[c] and added to the lane's sum; the lanes' sums are the portable loop's sums, term by term
 * in the same order, hence the same bits. When the 8 keys' rows are consecutive (idx[j + t] =
 * idx[j] + t: every key of a causal or unpadded head) the columns come 8 at a time from 8 row
 * loads and an 8 x 8 transpose; otherwise (and for the last d mod 8 columns) each column of
 * the 8 rows is gathered (64-bit offsets, so any row stride). The last n mod 8 keys run the
 * portable loop. Measured (docs/RESULTS.md part 9z.l): the transpose is 1.8x (d = 8) to 2.8x
 * (d = 32) faster than the gathers on consecutive rows. */
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

#define T512 __attribute__((target("avx512f,avx512vl,avx512dq")))

/* Columns [c, c + 8) of 8 consecutive key rows r (row t at r + t * ldk) as 8 column vectors:
 * col[u] lane t = r[t * ldk + c + u] (an 8 x 8 transpose: unpack, shuffle, 128-bit permute). */
T512 static inline void cols8(const float *r, long ldk, int c, __m256 col[8]) {
    __m256 x[8], t[8], s[8];
    for (int i = 0; i < 8; i++) x[i] = _mm256_loadu_ps(r + (size_t)i * (size_t)ldk + c);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(x[i], x[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(x[i], x[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        s[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int u = 0; u < 4; u++) {
        col[u] = _mm256_permute2f128_ps(s[u], s[u + 4], 0x20);
        col[u + 4] = _mm256_permute2f128_ps(s[u], s[u + 4], 0x31);
    }
}

/* Eight keys whose rows are consecutive (idx[j + t] = idx[j] + t, the common case of causal and
 * dense attention): the columns come from 8 row loads and a transpose instead of gathers; the
 * last d mod 8 columns are gathered. Lane t's sum runs over c in order, as in the loop. */
T512 static inline __m512d dot8_rows(int d, const float *q, const float *r, long ldk, __m512i off, const float *k) {
    __m512d acc = _mm512_setzero_pd();
    int c = 0;
    for (; c + 8 <= d; c += 8) {
        __m256 col[8];
        cols8(r, ldk, c, col);
        for (int u = 0; u < 8; u++)
            acc = _mm512_add_pd(acc, _mm512_mul_pd(_mm512_set1_pd((double)q[c + u]), _mm512_cvtps_pd(col[u])));
    }
    for (; c < d; c++)
        acc = _mm512_add_pd(acc, _mm512_mul_pd(_mm512_set1_pd((double)q[c]),
                                               _mm512_cvtps_pd(_mm512_i64gather_ps(off, k + c, 4))));
    return acc;
}

T512 void sp_attn_scores_avx512(int d, int n, const int32_t *idx, const float *q, const float *k, long ldk, float scale,
                                double *scores) {
    const __m512d sc = _mm512_set1_pd((double)scale);
    const __m256i step = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        const long long L = (long long)ldk;
        __m512i off = _mm512_set_epi64(idx[j + 7] * L, idx[j + 6] * L, idx[j + 5] * L, idx[j + 4] * L, idx[j + 3] * L,
                                       idx[j + 2] * L, idx[j + 1] * L, idx[j] * L);
        __m256i iv = _mm256_loadu_si256((const __m256i *)(idx + j));
        __m256i want = _mm256_add_epi32(_mm256_set1_epi32(idx[j]), step);
        __m512d acc;
        if (_mm256_cmpeq_epi32_mask(iv, want) == 0xff) {
            acc = dot8_rows(d, q, k + (size_t)idx[j] * (size_t)ldk, ldk, off, k);
        } else {
            acc = _mm512_setzero_pd();
            for (int c = 0; c < d; c++) {
                __m512d kc = _mm512_cvtps_pd(_mm512_i64gather_ps(off, k + c, 4));
                acc = _mm512_add_pd(acc, _mm512_mul_pd(_mm512_set1_pd((double)q[c]), kc));
            }
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
