/* int_screen.c: packing and the portable integer screen (int_screen.h); the AVX2 and AVX-512
 * VNNI tiles are in int_screen_avx2.c / int_screen_avx512.c and tested against this one. */
#include "functional/int_screen.h"

#include <string.h>

size_t sp_iscreen_pack_size(int n_k, int d) {
    size_t tiles = ((size_t)(n_k > 0 ? n_k : 0) + SP_ISCREEN_CHUNK - 1) / SP_ISCREEN_CHUNK;
    if (tiles == 0) tiles = 1;
    return tiles * SP_ISCREEN_CHUNK * (size_t)sp_iscreen_d8(d) / 2;
}

/* The packing one nibble at a time: the reference sp_iscreen_pack is tested against. */
void sp_iscreen_pack_ref(const uint8_t *m, int n_k, int d, int ldm, uint8_t *kp) {
    const int G = sp_iscreen_d8(d) / 8;
    memset(kp, 0, sp_iscreen_pack_size(n_k, d));
    for (int j = 0; j < n_k; j++) {
        const uint8_t *row = m + (size_t)j * (size_t)ldm;
        int p = j / 16, u = j % 16;
        for (int c = 0; c < d; c++) {
            int g = c / 8, e = c % 8;
            uint8_t *byte = kp + ((size_t)p * (size_t)G + (size_t)g) * 64 + 4 * u + (e & 3);
            *byte |= (uint8_t)((row[c] & 15) << (e < 4 ? 0 : 4));
        }
    }
}

/* The same bytes as sp_iscreen_pack_ref, a group of 8 levels at a time (sp_iscreen_pack_key).
 * Part of the SPRINT kernel's per-call setup (docs/RESULTS.md part 9z.k). */
void sp_iscreen_pack(const uint8_t *m, int n_k, int d, int ldm, uint8_t *kp) {
    const int G = sp_iscreen_d8(d) / 8;
    memset(kp, 0, sp_iscreen_pack_size(n_k, d));
    for (int j = 0; j < n_k; j++)
        sp_iscreen_pack_key(m + (size_t)j * (size_t)ldm, d,
                            kp + (size_t)(j / 16) * (size_t)G * 64 + 4 * (size_t)(j % 16));
}

void sp_iscreen_tile_portable(const uint8_t *kp, int G, const int8_t *const q[4], int32_t A[4][64],
                              const int32_t *tau, uint64_t *mask) {
    int32_t Tl[4][64]; /* A NULL: the charges are not wanted, only the comparator bits */
    if (!A) A = Tl;
    for (int r = 0; r < 4; r++)
        for (int u = 0; u < 64; u++) A[r][u] = 0;
    for (int p = 0; p < 4; p++)
        for (int g = 0; g < G; g++) {
            const uint8_t *blk = kp + ((size_t)p * (size_t)G + (size_t)g) * 64;
            for (int r = 0; r < 4; r++) {
                const int8_t *qg = q[r] + 8 * g;
                for (int u = 0; u < 16; u++) {
                    int32_t acc = 0;
                    for (int e = 0; e < 4; e++) {
                        uint8_t b = blk[4 * u + e];
                        acc += (int32_t)(b & 15) * qg[e] + (int32_t)(b >> 4) * qg[4 + e];
                    }
                    A[r][16 * p + u] += acc;
                }
            }
        }
    if (tau)
        for (int r = 0; r < 4; r++) {
            uint64_t m = 0;
            for (int u = 0; u < 64; u++) m |= (uint64_t)(A[r][u] >= tau[r]) << u;
            mask[r] = m;
        }
}

/* The tiles of one level back to back, the bits of tile ch into mask[r * ldm + ch]. */
static void masks_with(sp_iscreen_tile_fn fn, const uint8_t *kp, int G, int nchunk, const int8_t *const q[4],
                       const int32_t *tau, uint64_t *mask, size_t ldm) {
    uint64_t m[4];
    for (int ch = 0; ch < nchunk; ch++) {
        fn(kp + (size_t)ch * 4 * (size_t)G * 64, G, q, NULL, tau, m);
        for (int r = 0; r < 4; r++) mask[(size_t)r * ldm + (size_t)ch] = m[r];
    }
}
void sp_iscreen_masks_portable(const uint8_t *kp, int G, int nchunk, const int8_t *const q[4], const int32_t *tau,
                               uint64_t *mask, size_t ldm) {
    masks_with(sp_iscreen_tile_portable, kp, G, nchunk, q, tau, mask, ldm);
}
void sp_iscreen_masks_avx2(const uint8_t *kp, int G, int nchunk, const int8_t *const q[4], const int32_t *tau,
                           uint64_t *mask, size_t ldm) {
    masks_with(sp_iscreen_tile_avx2, kp, G, nchunk, q, tau, mask, ldm);
}
sp_iscreen_masks_fn sp_iscreen_masks_for(sp_cpu_level level) {
    if (level >= SP_CPU_AVX512) return sp_iscreen_masks_avx512;
    if (level >= SP_CPU_AVX2) return sp_iscreen_masks_avx2;
    return sp_iscreen_masks_portable;
}

sp_iscreen_tile_fn sp_iscreen_tile_for(sp_cpu_level level) {
    if (level >= SP_CPU_AVX512) return sp_iscreen_tile_avx512;
    if (level >= SP_CPU_AVX2) return sp_iscreen_tile_avx2;
    return sp_iscreen_tile_portable;
}

void sp_iscreen_block(const uint8_t *kp, int n_k, int d, const int8_t *q, int nq, int32_t *A, int lda,
                      sp_iscreen_tile_fn fn) {
    const int d8 = sp_iscreen_d8(d), G = d8 / 8;
    int32_t T[4][64];
    for (int i0 = 0; i0 < nq; i0 += 4) {
        const int8_t *rows[4];
        for (int r = 0; r < 4; r++) rows[r] = q + (size_t)(i0 + r < nq ? i0 + r : nq - 1) * (size_t)d8;
        for (int j0 = 0; j0 < n_k; j0 += SP_ISCREEN_CHUNK) {
            fn(kp + (size_t)(j0 / 16) * (size_t)G * 64, G, rows, T, NULL, NULL);
            int nu = n_k - j0 < SP_ISCREEN_CHUNK ? n_k - j0 : SP_ISCREEN_CHUNK;
            for (int r = 0; r < 4 && i0 + r < nq; r++)
                memcpy(A + (size_t)(i0 + r) * (size_t)lda + j0, T[r], (size_t)nu * sizeof(int32_t));
        }
    }
}
