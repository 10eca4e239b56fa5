/* flash.h: the dense flash-attention kernel (internal; the public entry points are in
 * include/sprint/cpu_attention.h and the "dense" operator of attention.h).
 *
 * Algorithm (Dao et al. 2022, "FlashAttention", on a CPU): queries in blocks, keys in chunks
 * of 64 that stay in L1/L2; per chunk the scores of 4 queries x 64 keys are computed in
 * registers, an online softmax (running max m, denominator l, rescaled output o) folds them
 * into the result, so no n_q x n_k matrix is ever formed. Scores are taken in log2 units
 * (q is prescaled by scale * log2 e) and exponentiated by a degree-6 polynomial for 2^f
 * (Cephes exp2f coefficients, relative error ~2e-7). Keys are packed once per call in panels
 * of 16: kp[((j / 16) * d + c) * 16 + j % 16] = k[j][c] (zero-padded to a multiple of 64). */
#ifndef SPRINT_FLASH_H
#define SPRINT_FLASH_H

#include "cpu/cpu.h"
#include "sprint/attention.h"

#define SP_FLASH_CHUNK 64 /* keys per tile (4 panels of 16) */
#define SP_FLASH_ROWS 4   /* queries per tile */
#define SP_FLASH_MAX_D 512

/* One tile: 4 query rows against one chunk of nkc <= 64 keys, folded into (m, l, o). */
typedef struct sp_flash_tile {
    int d;                  /* head dim */
    int nkc;                /* keys in the chunk, 1..64 */
    const float *q[4];      /* prescaled query rows (d floats each) */
    const float *kpan[4];   /* the chunk's 4 packed K panels of (d, 16) (any 4 panels) */
    const float *v;         /* V row of the chunk's first key */
    int ldv;
    const int32_t *vidx;    /* NULL: key u's V row is v + u ldv; else v + vidx[u] ldv */
    int lim[4];             /* row r sees chunk key u iff u < lim[r] (lim >= nkc: all) */
    const float *bias;      /* (nkc) 0 or -inf per key (padding mask); NULL = none */
    const uint64_t *rmask;  /* (4) NULL, or bit u of rmask[r]: row r may see key u (and-ed) */
    float thr[4];           /* row r keeps only scores >= thr[r] (log2 units); -inf = all */
    uint64_t kept[4];       /* out: bit u set when row r's key u entered the softmax */
    float *m, *l;           /* (4) running max (log2 units, -inf at start) and denominators */
    float *o;               /* (4, d) running unnormalised outputs, row stride d */
} sp_flash_tile;

void sp_flash_tile_portable(sp_flash_tile *t);
void sp_flash_tile_avx2(sp_flash_tile *t);   /* d % 8 == 0 */
void sp_flash_tile_avx512(sp_flash_tile *t); /* d % 16 == 0 */

/* The tile function for a level and head dim (lower levels where d does not fit). */
typedef void (*sp_flash_tile_fn)(sp_flash_tile *t);
sp_flash_tile_fn sp_flash_tile_for(sp_cpu_level level, int d);

/* Floats of the packed K of n_k keys, and the packing. */
size_t sp_flash_kpack_size(int n_k, int d);
void sp_flash_pack_k(const float *k, int ldk, int n_k, int d, float *kp);
/* The same floats element by element (the reference) and 16 x 16 blocks at a time (AVX-512 F;
 * the portable one elsewhere); sp_flash_pack_k takes the second where the CPU has AVX-512. */
void sp_flash_pack_k_portable(const float *k, int ldk, int n_k, int d, float *kp);
void sp_flash_pack_k_avx512(const float *k, int ldk, int n_k, int d, float *kp);

/* Flash attention of query rows [i0, i1) of h (masks as in attention.h; query_valid = 0 rows
 * and rows that see no key are zero). kp from sp_flash_pack_k; bias NULL or (n_k) 0/-inf from
 * key_valid. Needs finite scores (the caller checks). */
void sp_flash_rows(const sp_attn_head *h, const float *kp, const float *bias, int i0, int i1, sp_flash_tile_fn fn);

/* Dense attention of a whole head with `threads` OpenMP threads (<= 0: all) at a level;
 * SP_ERR_ARG on a bad head or d > 512, SP_ERR_DATA when |q| |k| scale could overflow fp32 or
 * an input is not finite. Same bits for any thread count. */
sp_status sp_flash_attention(const sp_attn_head *h, int threads, sp_cpu_level level, sp_error *err);

/* SP_ERR_DATA unless Q, K, V (valid rows) are finite and |q| |k| scale log2(e) stays well
 * inside fp32 (so no score or sum can overflow). */
sp_status sp_flash_check_inputs(const sp_attn_head *h, sp_error *err);
/* The same check, also giving the largest row norms of the valid rows of Q, K and V in
 * nrm[0..2] (-1 for a tensor holding a NaN or infinity). */
sp_status sp_flash_check_inputs_norms(const sp_attn_head *h, double nrm[3], sp_error *err);
/* The same check, also giving the largest |x| of the valid rows of Q and K in amax[0..1] (the
 * per-tensor maximum of the 8-bit quantiser, sp_quant_absmax_*: the SPRINT kernel's setup
 * reads Q and K once for both; amax is unspecified when the check fails). */
sp_status sp_flash_check_inputs_norms_amax(const sp_attn_head *h, double nrm[3], float amax[2], sp_error *err);
/* sp_sx_max_norm_* (sprint_exact.h) that also sets *amax to the largest |x| of the valid rows
 * when every value is finite (unspecified otherwise): the portable one runs both loops, the
 * AVX-512 one takes the maximum from the loads of the norm. */
double sp_sx_max_norm_amax_portable(const float *x, int n, int d, int ld, const unsigned char *valid, float *amax);
double sp_sx_max_norm_amax_avx512(const float *x, int n, int d, int ld, const unsigned char *valid, float *amax);

/* 2^x for x <= 0 in float (the kernels' polynomial; exactly 0 below -126, 1 at 0): x = n + f,
 * n integer (nearest), |f| <= 1/2; 2^f by the Cephes exp2f polynomial; 2^n in the exponent
 * bits. Inline: the tiles call it once per row per tile for the rescale factor. */
static inline float sp_flash_exp2(float x) {
    float xc = x < -126.0f ? -126.0f : x;
    int32_t ni = (int32_t)(xc - 0.5f); /* xc <= 0: truncation of xc - 1/2 rounds to nearest */
    float f = xc - (float)ni;
    float p = 1.535336188319500e-4f;
    p = p * f + 1.339887440266574e-3f;
    p = p * f + 9.618437357674640e-3f;
    p = p * f + 5.550332471162809e-2f;
    p = p * f + 2.402264791363012e-1f;
    p = p * f + 6.931472028550421e-1f;
    p = p * f + 1.0f;
    union {
        int32_t i;
        float f;
    } u = {.i = (ni + 127) << 23};
    float r = p * u.f;
    return x < -126.0f ? 0.0f : r;
}

#endif
