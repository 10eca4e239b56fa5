/* gemm.c: dispatch of sp_gemm_nt (gemm.h); the AVX-512 kernel is in gemm_avx512.c. */
#include "cpu/gemm.h"

#include <cblas.h>
#include <stdlib.h>

void sp_gemm_nt_avx512(int m, int n, int d, const float *a, int lda, const float *b, int ldb, float *c, int ldc);
float *sp_gemm_pack_avx512(int n, int d, const float *b, int ldb);
void sp_gemm_nt_packed_avx512(int m, int n, int d, const float *a, int lda, const float *bp, float *c, int ldc);

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

void sp_gemm_b_init_level(sp_gemm_b *pb, sp_cpu_level level, int n, int d, const float *b, int ldb) {
    *pb = (sp_gemm_b){.n = n, .d = d, .ldb = ldb, .level = level, .b = b, .packed = NULL};
    if (level >= SP_CPU_AVX512 && d > 0 && n > 0) pb->packed = sp_gemm_pack_avx512(n, d, b, ldb);
}

void sp_gemm_b_init(sp_gemm_b *pb, int n, int d, const float *b, int ldb) {
    sp_gemm_b_init_level(pb, sp_cpu_detect(), n, d, b, ldb);
}

void sp_gemm_nt_b(int m, const float *a, int lda, const sp_gemm_b *pb, float *c, int ldc) {
    if (m <= 0 || pb->n <= 0) return;
    if (pb->packed) {
        sp_gemm_nt_packed_avx512(m, pb->n, pb->d, a, lda, pb->packed, c, ldc);
        return;
    }
    sp_gemm_nt_level(pb->level, m, pb->n, pb->d, a, lda, pb->b, pb->ldb, c, ldc);
}

void sp_gemm_b_free(sp_gemm_b *pb) {
    free(pb->packed);
    pb->packed = NULL;
}
