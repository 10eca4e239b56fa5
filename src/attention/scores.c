/* scores.c: the reference's exact scores (scores.h): the portable loop and the dispatch; the
 * AVX-512 kernel is in scores_avx512.c. */
#include "attention/scores.h"

#include <stddef.h>

void sp_attn_scores_avx512(int d, int n, const int32_t *idx, const float *q, const float *k, long ldk, float scale,
                           double *scores);

/* Portable reference: the loop sp_attn_scores_ref has always run. */
static void scores_portable(int d, int n, const int32_t *idx, const float *q, const float *k, long ldk, float scale,
                            double *scores) {
    for (int j = 0; j < n; j++) {
        const float *kr = k + (size_t)idx[j] * (size_t)ldk;
        double dot = 0.0;
        for (int c = 0; c < d; c++) dot += (double)q[c] * (double)kr[c];
        scores[j] = dot * (double)scale;
    }
}

void sp_attn_scores_level(sp_cpu_level level, int d, int n, const int32_t *idx, const float *q, const float *k,
                          long ldk, float scale, double *scores) {
    if (level >= SP_CPU_AVX512) sp_attn_scores_avx512(d, n, idx, q, k, ldk, scale, scores);
    else scores_portable(d, n, idx, q, k, ldk, scale, scores);
}

void sp_attn_scores(int d, int n, const int32_t *idx, const float *q, const float *k, long ldk, float scale,
                    double *scores) {
    sp_attn_scores_level(sp_cpu_detect(), d, n, idx, q, k, ldk, scale, scores);
}
