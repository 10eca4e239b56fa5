/* int_screen.h: the in-memory score as integer arithmetic (paper sec. 1.3, Fig. 6a): the charge
 * of key j's column is A_j = sum_c qd_c m_jc, the DAC'd 8-bit query level qd (s8) times the
 * key's b <= 4 MSBs m (0 .. 2^b - 1) stored in ReRAM. On an ideal device this integer IS the
 * analog score, so computing it with integer instructions (AVX-512 VNNI vpdpbusd: u8 x s8 summed
 * in 4s into int32; AVX2 vpmaddubsw + vpmaddwd; portable C) gives bit-for-bit what
 * sp_reram_charge_block computes with an fp32 sgemm (exact for |A| < 2^24), at a fraction of
 * the cost. Non-idealities are applied on top of A exactly as before.
 *
 * Packed int4 layout (two MSBs per byte): d8 = d rounded up to 8, G = d8 / 8; panel p holds
 * keys 16p .. 16p+15; its group g is 64 bytes, byte 4u + e holds key 16p+u's dim 8g+e in the
 * low nibble and dim 8g+4+e in the high nibble. Keys are padded with zeros to a multiple of 64
 * (one tile), queries to d8 with zero levels. */
#ifndef SPRINT_INT_SCREEN_H
#define SPRINT_INT_SCREEN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cpu/cpu.h"

#define SP_ISCREEN_CHUNK 64 /* keys per tile */

static inline int sp_iscreen_d8(int d) { return (d + 7) / 8 * 8; }
/* Bytes of the packed MSBs of n_k keys (a whole number of 64-key tiles, at least one). */
size_t sp_iscreen_pack_size(int n_k, int d);
/* Packs the MSB levels m (n_k rows of d, row stride ldm, values 0..15) into kp. */
void sp_iscreen_pack(const uint8_t *m, int n_k, int d, int ldm, uint8_t *kp);
/* The same packing one nibble at a time (the reference the word version is tested against). */
void sp_iscreen_pack_ref(const uint8_t *m, int n_k, int d, int ldm, uint8_t *kp);

/* One key's d MSB levels m (0..15) into its packed place (sp_iscreen_pack's layout): out is the
 * key's 4 bytes in group 0, group g at out + 64 g. A group of 8 levels is one 64-bit word whose
 * two 32-bit halves hold the low nibbles of levels 0-3 and 4-7, so lo | hi << 4 is the group's
 * 4 bytes (little-endian hosts; a byte loop elsewhere). A last partial group is or-ed in: its
 * bytes must be zero beforehand. Shared by sp_iscreen_pack and the SPRINT kernel's one-pass key
 * setup (sp_sx_quant_keys). */
static inline void sp_iscreen_pack_key(const uint8_t *m, int d, uint8_t *out) {
    int c = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; c + 8 <= d; c += 8) {
        uint64_t x;
        memcpy(&x, m + c, 8);
        x &= 0x0F0F0F0F0F0F0F0Full;
        const uint32_t w = (uint32_t)x | (uint32_t)(x >> 32) << 4;
        memcpy(out + (size_t)(c / 8) * 64, &w, 4);
    }
#endif
    for (; c < d; c++) {
        const int e = c % 8;
        out[(size_t)(c / 8) * 64 + (e & 3)] |= (uint8_t)((m[c] & 15) << (e < 4 ? 0 : 4));
    }
}

/* A[r][u] = sum_c q[r][c] m[key u of the tile][c] for 4 query rows (d8 levels each, s8) and
 * the 64 keys of the tile starting at kp (G groups per panel). Integer, exact. With tau
 * non-NULL also mask[r] bit u = (A[r][u] >= tau[r]) (the comparator); A may then be NULL
 * when only the bits are wanted (the AVX-512 tile then stores no charges). */
typedef void (*sp_iscreen_tile_fn)(const uint8_t *kp, int G, const int8_t *const q[4], int32_t A[4][64],
                                   const int32_t *tau, uint64_t *mask);
void sp_iscreen_tile_portable(const uint8_t *kp, int G, const int8_t *const q[4], int32_t A[4][64],
                              const int32_t *tau, uint64_t *mask);
void sp_iscreen_tile_avx2(const uint8_t *kp, int G, const int8_t *const q[4], int32_t A[4][64], const int32_t *tau,
                          uint64_t *mask);
void sp_iscreen_tile_avx512(const uint8_t *kp, int G, const int8_t *const q[4], int32_t A[4][64],
                            const int32_t *tau, uint64_t *mask);
sp_iscreen_tile_fn sp_iscreen_tile_for(sp_cpu_level level);
/* Only the comparator bits of nchunk tiles (tile ch at kp + ch * 4 G 64): mask[r * ldm + ch]
 * = the tile function's mask[r] for tile ch (tau required). The AVX-512 one runs the tiles
 * back to back in one call and stores no charges. */
typedef void (*sp_iscreen_masks_fn)(const uint8_t *kp, int G, int nchunk, const int8_t *const q[4],
                                    const int32_t *tau, uint64_t *mask, size_t ldm);
void sp_iscreen_masks_portable(const uint8_t *kp, int G, int nchunk, const int8_t *const q[4], const int32_t *tau,
                               uint64_t *mask, size_t ldm);
void sp_iscreen_masks_avx2(const uint8_t *kp, int G, int nchunk, const int8_t *const q[4], const int32_t *tau,
                           uint64_t *mask, size_t ldm);
void sp_iscreen_masks_avx512(const uint8_t *kp, int G, int nchunk, const int8_t *const q[4], const int32_t *tau,
                             uint64_t *mask, size_t ldm);
sp_iscreen_masks_fn sp_iscreen_masks_for(sp_cpu_level level);

/* All charges of nq query rows (q: nq x d8, s8 levels) against n_k packed keys into A (nq x
 * lda int32, lda >= n_k). */
void sp_iscreen_block(const uint8_t *kp, int n_k, int d, const int8_t *q, int nq, int32_t *A, int lda,
                      sp_iscreen_tile_fn fn);

#endif
