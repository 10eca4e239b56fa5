/* gemm.h: C (m x n) = A (m x d) . B (n x d)^T in fp32, the one matrix product shape the
 * functional model needs (scores q.k of a block of queries against every key, and the
 * in-memory charges). Dispatched at run time: AVX-512 (B packed in 16-column panels, 4 x 64
 * register tiles) or OpenBLAS's sgemm (portable and AVX2 levels: OpenBLAS here is built for
 * older cores, see docs/RESULTS.md part 9).
 *
 * Rounding: every C entry is a sum of d fp32 products in some order, so |C - exact| <=
 * gamma_d sum |a||b| whatever the kernel (the bound sprint_op.c's screening relies on), and a
 * product of small integers (|C| < 2^24) is exact. */
#ifndef SPRINT_CPU_GEMM_H
#define SPRINT_CPU_GEMM_H

#include "cpu/cpu.h"

void sp_gemm_nt(int m, int n, int d, const float *a, int lda, const float *b, int ldb, float *c, int ldc);
/* The same at a given level (tests). */
void sp_gemm_nt_level(sp_cpu_level level, int m, int n, int d, const float *a, int lda, const float *b, int ldb,
                      float *c, int ldc);

/* One B for several products (the query blocks of one head against its keys): packed once
 * where the level packs (AVX-512), else kept as given. sp_gemm_nt_b gives the same bits as
 * sp_gemm_nt(m, n, d, a, lda, b, ldb, c, ldc) with the same m at the level sp_gemm_b_init
 * detected (tested; OpenBLAS's bits depend on m, so a caller keeps its row blocks). */
typedef struct sp_gemm_b {
    int n, d, ldb;
    sp_cpu_level level;
    const float *b;
    float *packed; /* NULL: not packed at this level */
} sp_gemm_b;
void sp_gemm_b_init(sp_gemm_b *pb, int n, int d, const float *b, int ldb);
void sp_gemm_b_init_level(sp_gemm_b *pb, sp_cpu_level level, int n, int d, const float *b, int ldb);
void sp_gemm_nt_b(int m, const float *a, int lda, const sp_gemm_b *pb, float *c, int ldc);
void sp_gemm_b_free(sp_gemm_b *pb);

#endif
