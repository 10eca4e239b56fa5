/* scores_avx512.c: the reference's exact scores in AVX-512 F (scores.h). Eight keys at a time,
 * one per lane: for each column c the lane's key element is widened to double, multiplied by
 * q[c] and added to the lane's sum; the lanes' sums are the portable loop's sums, term by term
 * in the same order, hence the same bits. The columns come 8 at a time from the 8 rows' loads
 * and an 8 x 8 transpose (any rows, any stride); the last d mod 8 columns are gathered (64-bit
 * offsets). The last n mod 8 keys run the portable loop. Before part 9z.l of docs/RESULTS.md
 * every column was gathered, which ran slower than the portable loop (bench/bench_scores.c). */
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

/* Columns [c, c + 8) of the 8 key rows r[0..7] as 8 column vectors: col[u] lane t = r[t][c + u]
 * (an 8 x 8 transpose: unpack, shuffle, 128-bit permute). */
T512 static inline void cols8(const float *const r[8], int c, __m256 col[8]) {
    __m256 x[8], t[8], s[8];
    for (int i = 0; i < 8; i++) x[i] = _mm256_loadu_ps(r[i] + c);
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

T512 void sp_attn_scores_avx512(int d, int n, const int32_t *idx, const float *q, const float *k, long ldk, float scale,
                                double *scores) {
    const __m512d sc = _mm512_set1_pd((double)scale);
    const long long L = (long long)ldk;
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        const float *r[8];
        for (int t = 0; t < 8; t++) r[t] = k + (size_t)idx[j + t] * (size_t)ldk;
        __m512d acc = _mm512_setzero_pd();
        int c = 0;
        for (; c + 8 <= d; c += 8) { /* 8 columns of the 8 rows: 8 row loads and a transpose */
            __m256 col[8];
            cols8(r, c, col);
            for (int u = 0; u < 8; u++)
                acc = _mm512_add_pd(acc, _mm512_mul_pd(_mm512_set1_pd((double)q[c + u]), _mm512_cvtps_pd(col[u])));
        }
        if (c < d) { /* the last d mod 8 columns: one gather of the 8 rows' element each */
            __m512i off = _mm512_set_epi64(idx[j + 7] * L, idx[j + 6] * L, idx[j + 5] * L, idx[j + 4] * L,
                                           idx[j + 3] * L, idx[j + 2] * L, idx[j + 1] * L, idx[j] * L);
            for (; c < d; c++) {
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
