/* sprint_exact.h: the digital stage of the SPRINT CPU kernel for one query (paper sec. 1.4-1.5:
 * fetch the survivors, recompute exactly, threshold, softmax, weighted sum of V), on a compact
 * list of survivor keys. Internal to sprint_cpu.c; the AVX-512 version is tested against the
 * portable one (tests/test_cpu_sprint.c). */
#ifndef SPRINT_SPRINT_EXACT_H
#define SPRINT_SPRINT_EXACT_H

#include <stdint.h>

#include "cpu/cpu.h"

/* The digital stage as an online-softmax step over one key chunk, so that a block of
 * queries can visit the chunk's K and V rows while they sit in L1 (sprint_cpu.c): scores of the
 * survivors idx[0..n) (fp32, s = q.k_j), kept when s >= thr; with nk kept (written to
 * sbuf[0..nk) and kept[0..nk), ascending as idx) the running max *m, the running sum *l and
 * the unnormalised output acc (d floats) are rescaled to max(*m, max kept s) and updated:
 * *l += sum 2^(s - *m), acc += sum 2^(s - *m) v_j. Start with *m = -inf, *l = 0, acc = 0; the
 * output is acc / *l (zero row when *l == 0). Returns nk. sbuf, kept: n + 16 entries. */
typedef int (*sp_sx_chunk_fn)(const float *q, const float *k, int ldk, const float *v, int ldv, int d,
                              const int32_t *idx, int n, float thr, float *m, float *l, float *acc, float *sbuf,
                              int32_t *kept);
int sp_sx_chunk_portable(const float *q, const float *k, int ldk, const float *v, int ldv, int d, const int32_t *idx,
                         int n, float thr, float *m, float *l, float *acc, float *sbuf, int32_t *kept);
int sp_sx_chunk_avx512(const float *q, const float *k, int ldk, const float *v, int ldv, int d, const int32_t *idx,
                       int n, float thr, float *m, float *l, float *acc, float *sbuf, int32_t *kept); /* d % 16 == 0 */
sp_sx_chunk_fn sp_sx_chunk_for(sp_cpu_level level, int d);

/* Appends base + b for every set bit b of the nw 64-bit words m (bit b of word u is key
 * 64 u + b) to out, ascending; returns the count. out needs room for 64 nw + 16 entries
 * (the AVX-512 version stores 16 at a time). */
typedef int (*sp_sx_bits_fn)(const uint64_t *m, int nw, int32_t base, int32_t *out);
int sp_sx_bits_portable(const uint64_t *m, int nw, int32_t base, int32_t *out);
int sp_sx_bits_avx512(const uint64_t *m, int nw, int32_t base, int32_t *out);
/* vpcompressb of the 64 byte offsets of a word by its bits, widened 16 at a time (AVX512_VBMI2;
 * sprint_bits_vbmi2.c): as many stores as 16-index pieces, not four per word. */
int sp_sx_bits_vbmi2(const uint64_t *m, int nw, int32_t base, int32_t *out);
/* The leftover survivors of one group of 4 queries in one 64-key chunk (sprint_cpu.c: the
 * survivors outside the dense tiles), gathered for the group in one call: row r's set bits of
 * m[r] (bit b is key base + b) appended to out[r] + n[r], ascending, and n[r] increased by
 * their count. The same keys in the same order as sp_sx_bits_fn on each row; each out[r] needs
 * room for n[r] + 64 + 16 entries. Rows with m[r] == 0 are not touched (out[r] may be NULL). */
typedef void (*sp_sx_gather_fn)(const uint64_t m[4], int32_t base, int32_t *const out[4], int n[4]);
void sp_sx_gather_group_portable(const uint64_t m[4], int32_t base, int32_t *const out[4], int n[4]);
void sp_sx_gather_group_avx512(const uint64_t m[4], int32_t base, int32_t *const out[4], int n[4]);
void sp_sx_gather_group_vbmi2(const uint64_t m[4], int32_t base, int32_t *const out[4], int n[4]);
/* The level's group gather: VBMI2 when sp_cpu_has_vbmi2() at the AVX-512 level, else the
 * AVX-512 vpcompressd rows at that level, else portable. */
sp_sx_gather_fn sp_sx_gather_for(sp_cpu_level level);
/* Survivors (of a 4-query group's 4 x 16 pairs in one 16-key panel) from which sprint_cpu.c
 * computes the panel with the dense flash tile instead of the gathers (default 24). Both paths
 * keep the same keys up to float rounding at the threshold; the tests force each path with
 * this (0: every panel dense, > 64: never). Process-wide; set it before any kernel call. */
void sp_sx_dense_min_set(int n);
/* Gathered survivors a query's pending list collects before sprint_cpu.c serves them (default
 * 1024; clamped to [16, 65536]): a speed choice only, outputs move by float rounding. The tests
 * set small batches to reach the serving during the key sweep. Process-wide, as dense_min. */
void sp_sx_batch_set(int n);
int sp_sx_batch(void);
/* The dense panels of a group of 4 queries in one 64-key chunk (r0..r3: the rows' survivor
 * words): bit 16 p + 15 set when panel p (keys 16 p .. 16 p + 15) holds >= dense_min of the
 * 64 pairs as survivors (dense_min <= 1: any survivor; the caller skips dense_min > 64). The 4
 * counts by a SWAR popcount (bytes hold <= 8 bits of a row, <= 32 of four), then one add of
 * 0x8000 - dense_min per 16-bit field, whose top bit is then set iff count >= dense_min
 * (counts <= 64, so no carry crosses a field). Four scalar arguments, not an array: gcc
 * vectorised the array form into SSE loads of words just stored one by one, a store-forwarding
 * stall on every call (perf annotate). */
static inline uint64_t sp_sx_nibble_counts(uint64_t x) {
    x = x - ((x >> 1) & 0x5555555555555555ull);
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    return (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0Full;
}
static inline uint64_t sp_sx_dense_panels(uint64_t r0, uint64_t r1, uint64_t r2, uint64_t r3, int dense_min) {
    const int dm = dense_min > 1 ? dense_min : 1;
    uint64_t t = sp_sx_nibble_counts(r0) + sp_sx_nibble_counts(r1) + sp_sx_nibble_counts(r2) +
                 sp_sx_nibble_counts(r3);
    t = (t + (t >> 8)) & 0x00FF00FF00FF00FFull; /* panel p's count in bits 16 p .. 16 p + 15 */
    return (t + (uint64_t)(0x8000 - dm) * 0x0001000100010001ull) & 0x8000800080008000ull;
}

int sp_sx_dense_min(void);
/* The same two steps with a fixed softmax reference (sprint_fixed_avx512.c), for the fixed
 * threshold policy when sprint_cpu.c has proved that every score s satisfies s - *m <= E with
 * n_k 2^E max|v| inside fp32 (*m is then the row's threshold in log2 units, so every kept
 * weight 2^(s - *m) lies in [1, 2^E]). *m (the chunk) and t->m (the tile) are read, never
 * changed; *l and the accumulators gain the kept keys' weights and weighted V rows; no running
 * max, no rescale. The tile's contract is otherwise flash.h's (t->bias must be NULL); the
 * chunk's is sp_sx_chunk_fn's (kept ascending, sbuf scratch). The portable versions are the
 * plain-loop references of the tests. */
int sp_sx_chunk_fixed_portable(const float *q, const float *k, int ldk, const float *v, int ldv, int d,
                               const int32_t *idx, int n, float thr, float *m, float *l, float *acc, float *sbuf,
                               int32_t *kept);
int sp_sx_chunk_fixed_avx512(const float *q, const float *k, int ldk, const float *v, int ldv, int d,
                             const int32_t *idx, int n, float thr, float *m, float *l, float *acc, float *sbuf,
                             int32_t *kept); /* d % 16 == 0 */
/* The same step without the software pipelining (at d = 64 the next 16 survivors' scores are
 * computed after this 16's weighted sum): the tests' check that the pipelining changes no bit. */
int sp_sx_chunk_fixed_avx512_serial(const float *q, const float *k, int ldk, const float *v, int ldv, int d,
                                    const int32_t *idx, int n, float thr, float *m, float *l, float *acc, float *sbuf,
                                    int32_t *kept);
struct sp_flash_tile;
void sp_sx_tile_fixed_portable(struct sp_flash_tile *t);
void sp_sx_tile_fixed_avx512(struct sp_flash_tile *t); /* d % 16 == 0 */
/* Setup (sprint_setup_avx512.c). sp_sx_rows_*: per row of n int8 rows of d (stride d), the key MSB levels (k ^ 0x80) >> 4 into
 * msb (n, d) (skipped when msb is NULL), the row sum and the sum of squares. */
void sp_sx_rows_portable(const int8_t *x, int n, int d, uint8_t *msb, int32_t *sum, int32_t *sum2);
void sp_sx_rows_avx512(const int8_t *x, int n, int d, uint8_t *msb, int32_t *sum, int32_t *sum2);
/* K's quantisation (per-tensor scale), sp_sx_rows and sp_iscreen_pack in one pass (sprint_setup_avx512.c). */
void sp_sx_quant_keys(sp_cpu_level lv, const float *k, int n_k, int d, int ldk, const unsigned char *valid,
                      float tensor_max, uint8_t *kp, float *scales, int32_t *sum, int32_t *sum2);
/* The largest row norm of the valid rows (-1 if a value is not finite): 8 partial sums per row,
 * the d mod 8 tail into the first, combined pairwise; the input check that the flash and the
 * SPRINT kernels share (flash.c sp_flash_check_inputs_norms). */
double sp_sx_max_norm_portable(const float *x, int n, int d, int ld, const unsigned char *valid);
double sp_sx_max_norm_avx512(const float *x, int n, int d, int ld, const unsigned char *valid);
/* Whether the kernel uses the fixed reference where it may (default 1; the tests force 0 to
 * compare the two). Process-wide; set it before any kernel call. */
void sp_sx_fixed_ref_set(int on);
int sp_sx_fixed_ref(void);
#endif
