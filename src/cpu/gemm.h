/* gemm.h: C (m x n) = A (m x d) . B (n x d)^T in fp32, the one matrix product shape the
 * functional model needs (scores q.k of a block of queries against every key, and the
 * in-memory charges). Dispatched at run time to a register tile over B packed in 16-column
 * panels (gemm.c): portable (SSE2 product then sum), AVX2 and AVX-512 (FMA). No BLAS.
 *
 * Bits: every entry C[i][j] is the chain s = 0; s = s + a[i][k] b[j][k] for k = 0..d-1, one
 * FMA per step at AVX2 and AVX-512 (so the two agree bit for bit), a rounded product then a
 * rounded sum at the portable level; the same whatever m, n and the strides, so a row or a
 * column block, or a single entry, computed alone gives the same bits as inside a larger
 * product at the same level (tested).
 *
 * Rounding: |C - exact| <= gamma_d sum |a||b| (the bound sprint_op.c's screening relies on),
 * and a product of small integers (|C| < 2^24) is exact. */
#ifndef SPRINT_CPU_GEMM_H
#define SPRINT_CPU_GEMM_H

#include "cpu/cpu.h"

void sp_gemm_nt(int m, int n, int d, const float *a, int lda, const float *b, int ldb, float *c, int ldc);
/* The same at a given level (tests). */
void sp_gemm_nt_level(sp_cpu_level level, int m, int n, int d, const float *a, int lda, const float *b, int ldb,
                      float *c, int ldc);

/* One B for several products (the query blocks of one head against its keys), packed once
 * (packed is NULL only for n <= 0 or d <= 0). sp_gemm_nt_b gives the same bits as
 * sp_gemm_nt(m, n, d, a, lda, b, ldb, c, ldc) at the level sp_gemm_b_init detected (tested). */
typedef struct sp_gemm_b {
    int n, d, ldb;
    sp_cpu_level level;
    const float *b;
    float *packed; /* 16-column panels (gemm.c); NULL when n or d is 0 */
} sp_gemm_b;
void sp_gemm_b_init(sp_gemm_b *pb, int n, int d, const float *b, int ldb);
void sp_gemm_b_init_level(sp_gemm_b *pb, sp_cpu_level level, int n, int d, const float *b, int ldb);
void sp_gemm_nt_b(int m, const float *a, int lda, const sp_gemm_b *pb, float *c, int ldc);
void sp_gemm_b_free(sp_gemm_b *pb);

#endif
