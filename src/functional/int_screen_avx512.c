/* int_screen_avx512.c: the integer screen tile with AVX-512 VNNI: vpdpbusd multiplies 4 unsigned
 * MSB nibbles by 4 signed query levels and adds them into an int32 lane (no saturation: |sum| <=
 * 4 x 15 x 127). 4 queries x 64 keys in 16 zmm accumulators; each 64-byte group is unpacked
 * once (and, shift) and feeds 8 vpdpbusd. */
#include "functional/int_screen.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <string.h>

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

/* The tile; mask[r * ldm] gets row r's comparator bits. Inlined into both entries. */
T512 static inline __attribute__((always_inline)) void tile512(const uint8_t *kp, int G, const int8_t *const q[4],
                                                             int32_t A[4][64], const int32_t *tau, uint64_t *mask,
                                                             size_t ldm) {
    __m512i acc[4][4];
    /* every loop over r and p fully unrolled: the 16 accumulators must live in registers */
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) acc[r][p] = _mm512_setzero_si512();
    const __m512i lo4 = _mm512_set1_epi8(0x0F);
    const size_t PS = (size_t)G * 64; /* bytes per panel */
    for (int g = 0; g < G; g++) {
        __m512i ql[4], qh[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            int32_t a, b;
            memcpy(&a, q[r] + 8 * g, 4);
            memcpy(&b, q[r] + 8 * g + 4, 4);
            ql[r] = _mm512_set1_epi32(a);
            qh[r] = _mm512_set1_epi32(b);
        }
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            __m512i x = _mm512_loadu_si512((const void *)(kp + p * PS + (size_t)g * 64));
            __m512i lo = _mm512_and_si512(x, lo4), hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), lo4);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], lo, ql[r]);
                acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], hi, qh[r]);
            }
        }
    }
    if (A) /* NULL: the caller needs only the comparator bits (no 1 KiB of stores per tile) */
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++) _mm512_storeu_si512((void *)&A[r][16 * p], acc[r][p]);
    if (tau)
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            __m512i t = _mm512_set1_epi32(tau[r]);
            uint64_t m = 0;
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++) m |= (uint64_t)_mm512_cmpge_epi32_mask(acc[r][p], t) << (16 * p);
            mask[(size_t)r * ldm] = m;
        }
}

T512 void sp_iscreen_tile_avx512(const uint8_t *kp, int G, const int8_t *const q[4], int32_t A[4][64],
                                  const int32_t *tau, uint64_t *mask) {
    tile512(kp, G, q, A, tau, mask, 1);
}

/* sp_iscreen_masks_fn: the tiles back to back in one call (no charges stored, no call and
 * return between tiles, so one tile's last multiply-adds overlap the next one's first). */
T512 void sp_iscreen_masks_avx512(const uint8_t *kp, int G, int nchunk, const int8_t *const q[4], const int32_t *tau,
                                  uint64_t *mask, size_t ldm) {
    for (int ch = 0; ch < nchunk; ch++) tile512(kp + (size_t)ch * 4 * (size_t)G * 64, G, q, NULL, tau, mask + ch, ldm);
}
#else
void sp_iscreen_tile_avx512(const uint8_t *kp, int G, const int8_t *const q[4], int32_t A[4][64],
                            const int32_t *tau, uint64_t *mask) {
    sp_iscreen_tile_portable(kp, G, q, A, tau, mask);
}
void sp_iscreen_masks_avx512(const uint8_t *kp, int G, int nchunk, const int8_t *const q[4], const int32_t *tau,
                             uint64_t *mask, size_t ldm) {
    sp_iscreen_masks_portable(kp, G, nchunk, q, tau, mask, ldm);
}
#endif
