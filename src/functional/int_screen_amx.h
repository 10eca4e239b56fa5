/* int_screen_amx.h: the integer screen (int_screen.h, paper sec. 1.3) with Intel AMX-INT8:
 * TDPBSUD multiplies a 16 x 64 tile of signed 8-bit query levels by a 64 x 16 tile of unsigned
 * key MSB levels (0..15) into 16 x 16 int32 charges, 16384 multiply-adds per instruction
 * (vpdpbusd on a zmm: 64). Exact integer arithmetic: the charges equal the portable screen's
 * bit for bit (tests/test_int_screen.c). Used by the SPRINT CPU kernel (sprint_cpu.c) at the
 * avx512 level when the CPU and the OS offer AMX; SPRINT_AMX=0 turns it off.
 *
 * Key layout for AMX (B tiles, "VNNI" order): dA = d rounded up to 64; keys in panels of 16
 * (padded with zero keys to a multiple of 64); block (p, s) of 1024 bytes holds panel p's dims
 * 64 s .. 64 s + 63: byte 64 g + 4 u + e = MSB level of key 16 p + u, dim 64 s + 4 g + e. */
#ifndef SPRINT_INT_SCREEN_AMX_H
#define SPRINT_INT_SCREEN_AMX_H

#include <stddef.h>
#include <stdint.h>

/* 1 when AMX-TILE and AMX-INT8 are usable (CPUID, XCR0 tile state, Linux permission granted
 * by arch_prctl(ARCH_REQ_XCOMP_PERM)), the CPU level in use is avx512, and SPRINT_AMX is not
 * "0". Cached after the first call. */
int sp_iscreen_amx_available(void);

static inline int sp_iscreen_amx_dA(int d) { return (d + 63) / 64 * 64; }
/* Bytes of the AMX-packed MSBs of n_k keys (a whole number of 64-key chunks, at least one). */
size_t sp_iscreen_amx_pack_size(int n_k, int d);
/* Packs the MSB levels m (n_k rows of d, row stride ldm, values 0..15) into kb. */
void sp_iscreen_amx_pack(const uint8_t *m, int n_k, int d, int ldm, uint8_t *kb);

/* Comparator bits of 32 query rows against the keys of nchunk 64-key chunks: qa holds the 32
 * rows' 8-bit levels (row stride dA bytes, zero beyond d); bit u of mask[r * ldm + ch] =
 * (A_r,64ch+u >= tau[r]). With A non-NULL also the charges, A[r * lda + j]. Each key tile is
 * loaded once for both 16-row halves (the key tiles' traffic from L2 was the cost of a 16-row
 * version). Needs sp_iscreen_amx_available(). */
void sp_iscreen_amx_rows32(const uint8_t *kb, int nchunk, int d, const int8_t *qa, const int32_t tau[32],
                           uint64_t *mask, size_t ldm, int32_t *A, size_t lda);
/* The charges alone of the same 32 rows: A[r * lda + j] for j < 64 nchunk (lda a multiple of 16
 * >= 64 nchunk), written by tile stores; the same integers as sp_iscreen_amx_rows32's. */
void sp_iscreen_amx_charges32(const uint8_t *kb, int nchunk, int d, const int8_t *qa, int32_t *A, size_t lda);
#endif
