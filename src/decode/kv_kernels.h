/* kv_kernels.h: the inner loops of a decode step (internal), one table per instruction-set
 * level: portable C (kv_portable.c, the reference the others are tested against), AVX2
 * (kv_avx2.c) and AVX-512 with VNNI (kv_avx512.c), chosen at run time (src/cpu/cpu.h).
 *
 * MSB block layout: keys in blocks of 16; a block holds d/8 groups of 64 bytes; in group p the
 * 4 bytes at offset 4r belong to key r of the block, and byte j (0..3) holds the MSB nibble of
 * dimension 8p+j in its low half and of dimension 8p+4+j in its high half. The low nibbles of
 * one group are then, per 32-bit lane r, the 4 nibbles of dims 8p..8p+3 of key r: exactly the
 * operand of one u8 x s8 4-way dot product (vpdpbusd) against the query's bytes 8p..8p+3
 * broadcast, so 16 keys are scored at once without a horizontal sum. */
#ifndef SPRINT_DECODE_KV_KERNELS_H
#define SPRINT_DECODE_KV_KERNELS_H

#include <stdint.h>

#include "sprint/decode.h"

#define SP_KV_BLOCK 16 /* keys per MSB block */
#define SP_KV_MAXG 16  /* query heads per KV head */

typedef struct sp_kv_kernels {
    const char *name;
    /* Screen nb blocks of 16 keys. msb: the first block (blocks 8d bytes apart); ks: the keys'
     * scales (16 nb); q8: (g, d) quantised queries; coef[h] = scale * s_q[h]; qsum[h] = sum of
     * q8 row h. Writes a[h * lda + j] = coef[h] * ks[j] * (16 D_hj - 120 qsum[h]) for
     * j < 16 nb, D_hj the integer dot product of q8 row h and key j's nibbles. */
    void (*screen)(const uint8_t *msb, const float *ks, int nb, int d, const int8_t *q8, const float *coef,
                   const int32_t *qsum, int g, float *a, int lda);
    /* Survivors: for j < n, bits_j = OR over h < g of (a[h * lda + j] >= thr[h]) << h; every j
     * with bits_j != 0 is appended in order: idx[k] = j0 + j, bits[k] = bits_j. Returns k. */
    int (*select)(const float *a, int lda, int n, int g, const float *thr, int j0, int32_t *idx, int32_t *bits);
    /* Exact scores: s[h * lds + i] = scale * (q row h) . (K row idx[i]) for i < n, h < g; K is
     * (rows, d) in type t. Vpf (may be NULL): V of the same rows, prefetched into L2 on the way
     * so that wsum's gathers overlap the K gathers (the survivors of a chunk fit in L2). */
    void (*dots)(const void *K, const void *Vpf, sp_kv_dtype t, int d, const int32_t *idx, int n, const float *q, int g,
                 float scale, float *s, int lds);
    /* Maximum of s[0..n) (-inf when n = 0 or all are -inf). */
    float (*maxf)(const float *s, int n);
    /* s[i] = exp(s[i] - m) in place (0 for s[i] - m < -87, so -inf gives 0); returns the sum. */
    float (*expsum)(float *s, int n, float m);
    /* acc[h * d + c] += sum_i w[h * ldw + i] * (V row idx[i])[c], for h < g, c < d. */
    void (*wsum)(const void *V, sp_kv_dtype t, int d, const int32_t *idx, int n, const float *w, int ldw, int g,
                 float *acc);
} sp_kv_kernels;

extern const sp_kv_kernels sp_kv_kernels_portable;
/* NULL when this build has no such kernels (non-x86). */
const sp_kv_kernels *sp_kv_kernels_avx2(void);
const sp_kv_kernels *sp_kv_kernels_avx512(void);

/* fp16 / bf16 conversion, round to nearest even (portable; used by append and the reference). */
uint16_t sp_f32_to_f16(float x);
float sp_f16_to_f32(uint16_t h);
uint16_t sp_f32_to_bf16(float x);
float sp_bf16_to_f32(uint16_t h);

#endif
