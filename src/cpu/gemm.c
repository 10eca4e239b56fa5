/* gemm.c: dispatch of sp_gemm_nt (gemm.h); the AVX-512 kernel is in gemm_avx512.c. */
#include "cpu/gemm.h"

#include <cblas.h>

void sp_gemm_nt_avx512(int m, int n, int d, const float *a, int lda, const float *b, int ldb, float *c, int ldc);

void sp_gemm_nt_level(sp_cpu_level level, int m, int n, int d, const float *a, int lda, const float *b, int ldb,
                      float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    if (level >= SP_CPU_AVX512 && d > 0) {
        sp_gemm_nt_avx512(m, n, d, a, lda, b, ldb, c, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, d, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
}

void sp_gemm_nt(int m, int n, int d, const float *a, int lda, const float *b, int ldb, float *c, int ldc) {
    sp_gemm_nt_level(sp_cpu_detect(), m, n, d, a, lda, b, ldb, c, ldc);
}
