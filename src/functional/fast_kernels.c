/* fast_kernels.c: portable versions of the fast operator's selection and score loops
 * (fast_kernels.h), and the dispatch. */
#include "functional/fast_kernels.h"

int sp_fk_select_portable(const int32_t *A, int n, int32_t tau, const unsigned char *kvalid, int32_t *out) {
    int cnt = 0;
    if (kvalid) {
        for (int j = 0; j < n; j++) {
            out[cnt] = j;
            cnt += (A[j] >= tau) & (kvalid[j] != 0);
        }
    } else {
        for (int j = 0; j < n; j++) {
            out[cnt] = j;
            cnt += A[j] >= tau;
        }
    }
    return cnt;
}

void sp_fk_dots_portable(const float *q, const float *k, int ldk, int d, const int32_t *idx, int n, float *out) {
    for (int t = 0; t < n; t++) {
        const float *kr = k + (size_t)idx[t] * (size_t)ldk;
        float s = 0.0f;
        for (int c = 0; c < d; c++) s += q[c] * kr[c];
        out[t] = s;
    }
}

sp_fk_select_fn sp_fk_select_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_select_avx512 : sp_fk_select_portable;
}

sp_fk_dots_fn sp_fk_dots_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_dots_avx512 : sp_fk_dots_portable;
}
