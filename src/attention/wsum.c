/* wsum.c: the weighted sum of V rows of the reference softmax (wsum.h): the portable loop and
 * the dispatch; the AVX-512 kernel is in wsum_avx512.c. */
#include "attention/wsum.h"

#include <stddef.h>

void sp_attn_wsum_avx512(int d, int n, const int32_t *idx, const double *p, const float *v, long ldv, double *acc);

/* Portable reference: the loop sp_attn_softmax_wsum has always run. */
static void wsum_portable(int d, int n, const int32_t *idx, const double *p, const float *v, long ldv, double *a) {
    for (int c = 0; c < d; c++) a[c] = 0.0;
    for (int j = 0; j < n; j++) {
        double pj = p[j];
        const float *vr = v + (size_t)idx[j] * (size_t)ldv;
        for (int c = 0; c < d; c++) a[c] += pj * (double)vr[c];
    }
}

void sp_attn_wsum_level(sp_cpu_level level, int d, int n, const int32_t *idx, const double *p, const float *v,
                        long ldv, double *acc) {
    if (level >= SP_CPU_AVX512) sp_attn_wsum_avx512(d, n, idx, p, v, ldv, acc);
    else wsum_portable(d, n, idx, p, v, ldv, acc);
}

void sp_attn_wsum(int d, int n, const int32_t *idx, const double *p, const float *v, long ldv, double *acc) {
    sp_attn_wsum_level(sp_cpu_detect(), d, n, idx, p, v, ldv, acc);
}
