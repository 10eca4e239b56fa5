/* int_screen_avx2.c: the integer screen tile with AVX2: vpmaddubsw multiplies unsigned MSB
 * nibbles by signed query levels and adds pairs into int16 (|pair| <= 2 x 15 x 127 = 3810, and
 * the lo + hi sum <= 7620: no saturation), vpmaddwd by ones adds the pairs into int32 lanes. */
#include "functional/int_screen.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <string.h>

#define TAVX2 __attribute__((target("avx2")))

TAVX2 void sp_iscreen_tile_avx2(const uint8_t *kp, int G, const int8_t *const q[4], int32_t A[4][64],
                                const int32_t *tau, uint64_t *mask) {
    int32_t Tl[4][64]; /* A NULL: the charges are not wanted, only the comparator bits */
    if (!A) A = Tl;
    if (tau)
        for (int r = 0; r < 4; r++) mask[r] = 0;
    const __m256i lo4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    const size_t PS = (size_t)G * 64;
    for (int p = 0; p < 4; p++) {
        __m256i acc[4][2]; /* loops over r unrolled: the accumulators live in registers */
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
        for (int g = 0; g < G; g++) {
            const uint8_t *blk = kp + p * PS + (size_t)g * 64;
            __m256i x0 = _mm256_loadu_si256((const __m256i *)blk), x1 = _mm256_loadu_si256((const __m256i *)(blk + 32));
            __m256i l0 = _mm256_and_si256(x0, lo4), h0 = _mm256_and_si256(_mm256_srli_epi16(x0, 4), lo4);
            __m256i l1 = _mm256_and_si256(x1, lo4), h1 = _mm256_and_si256(_mm256_srli_epi16(x1, 4), lo4);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                int32_t a, b;
                memcpy(&a, q[r] + 8 * g, 4);
                memcpy(&b, q[r] + 8 * g + 4, 4);
                __m256i ql = _mm256_set1_epi32(a), qh = _mm256_set1_epi32(b);
                __m256i s0 = _mm256_add_epi16(_mm256_maddubs_epi16(l0, ql), _mm256_maddubs_epi16(h0, qh));
                __m256i s1 = _mm256_add_epi16(_mm256_maddubs_epi16(l1, ql), _mm256_maddubs_epi16(h1, qh));
                acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(s0, ones));
                acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(s1, ones));
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            _mm256_storeu_si256((__m256i *)&A[r][16 * p], acc[r][0]);
            _mm256_storeu_si256((__m256i *)&A[r][16 * p + 8], acc[r][1]);
            if (tau) { /* A >= tau  <=>  A > tau - 1 (tau > INT32_MIN) */
                __m256i t = _mm256_set1_epi32(tau[r] - 1);
                unsigned m0 = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(acc[r][0], t)));
                unsigned m1 = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(acc[r][1], t)));
                mask[r] |= (uint64_t)(m0 | m1 << 8) << (16 * p);
            }
        }
    }
}
#else
void sp_iscreen_tile_avx2(const uint8_t *kp, int G, const int8_t *const q[4], int32_t A[4][64], const int32_t *tau,
                          uint64_t *mask) {
    sp_iscreen_tile_portable(kp, G, q, A, tau, mask);
}
#endif
