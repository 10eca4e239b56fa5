/* flash_tile_avx512.h: the two halves of the AVX-512 4-row flash tile (flash.h sp_flash_tile)
 * that the flash kernel and the SPRINT kernel's fixed-reference tile (sprint_fixed_avx512.c)
 * share: the 4 x 4-panel score block and the weighted sum of V over the keys some row kept.
 * Include only from files whose functions carry the AVX-512 target (T512). */
#ifndef SPRINT_FLASH_TILE_AVX512_H
#define SPRINT_FLASH_TILE_AVX512_H
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <stdint.h>

#include "attention/exp2_avx512.h"
#include "attention/flash.h"

/* The flash tile's scores (flash.h sp_flash_tile): s[r][p] = q_r . k of the 16 keys of packed
 * K panel p, for the tile's 4 query rows and 4 panels, as d sequential FMA steps. Shared by
 * the flash tile and the SPRINT kernel's fixed-reference tile, so both score alike. */
T512 __attribute__((always_inline)) static inline void tile_scores_4x4(const float *const q[4],
                                                                      const float *const kpan[4], int d,
                                                                      __m512 s[4][4]) {
    #pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        #pragma GCC unroll 4
        for (int p = 0; p < 4; p++) s[r][p] = _mm512_setzero_ps();
    const float *q0 = q[0], *q1 = q[1], *q2 = q[2], *q3 = q[3];
    const float *kp0 = kpan[0], *kp1 = kpan[1], *kp2 = kpan[2], *kp3 = kpan[3];
    for (int c = 0; c < d; c++, kp0 += 16, kp1 += 16, kp2 += 16, kp3 += 16) {
        __m512 k0 = _mm512_loadu_ps(kp0), k1 = _mm512_loadu_ps(kp1);
        __m512 k2 = _mm512_loadu_ps(kp2), k3 = _mm512_loadu_ps(kp3);
        __m512 b = _mm512_set1_ps(q0[c]);
        s[0][0] = _mm512_fmadd_ps(b, k0, s[0][0]), s[0][1] = _mm512_fmadd_ps(b, k1, s[0][1]);
        s[0][2] = _mm512_fmadd_ps(b, k2, s[0][2]), s[0][3] = _mm512_fmadd_ps(b, k3, s[0][3]);
        b = _mm512_set1_ps(q1[c]);
        s[1][0] = _mm512_fmadd_ps(b, k0, s[1][0]), s[1][1] = _mm512_fmadd_ps(b, k1, s[1][1]);
        s[1][2] = _mm512_fmadd_ps(b, k2, s[1][2]), s[1][3] = _mm512_fmadd_ps(b, k3, s[1][3]);
        b = _mm512_set1_ps(q2[c]);
        s[2][0] = _mm512_fmadd_ps(b, k0, s[2][0]), s[2][1] = _mm512_fmadd_ps(b, k1, s[2][1]);
        s[2][2] = _mm512_fmadd_ps(b, k2, s[2][2]), s[2][3] = _mm512_fmadd_ps(b, k3, s[2][3]);
        b = _mm512_set1_ps(q3[c]);
        s[3][0] = _mm512_fmadd_ps(b, k0, s[3][0]), s[3][1] = _mm512_fmadd_ps(b, k1, s[3][1]);
        s[3][2] = _mm512_fmadd_ps(b, k2, s[3][2]), s[3][3] = _mm512_fmadd_ps(b, k3, s[3][3]);
    }
}

/* o_r = alpha_r o_r + sum over the keys u of `any` of P[r][u] v_u for the tile's 4 rows (o
 * rows of t->d floats at t->o, V rows by t->vidx), in key order; alpha NULL: no rescale (the
 * fixed reference). Always inlined, so a NULL alpha costs nothing. */
T512 __attribute__((always_inline)) static inline void tile_wsum_4(sp_flash_tile *t, float P[4][64],
                                                                  uint64_t any, const float *alpha) {
    const int d = t->d;
    const size_t ldv = (size_t)t->ldv;
    int c0 = 0;
    for (; c0 + 64 <= d; c0 += 64) {
        /* 16 named accumulators (an array indexed in a loop would live on the stack) */
        float *o0 = t->o + c0, *o1 = o0 + d, *o2 = o1 + d, *o3 = o2 + d;
#define LD4(R) __m512 c##R##0 = _mm512_loadu_ps(o##R), c##R##1 = _mm512_loadu_ps(o##R + 16), \
                      c##R##2 = _mm512_loadu_ps(o##R + 32), c##R##3 = _mm512_loadu_ps(o##R + 48); \
        if (alpha) {                                                                      \
            const __m512 a_ = _mm512_set1_ps(alpha[R]);                                   \
            c##R##0 = _mm512_mul_ps(a_, c##R##0), c##R##1 = _mm512_mul_ps(a_, c##R##1);   \
            c##R##2 = _mm512_mul_ps(a_, c##R##2), c##R##3 = _mm512_mul_ps(a_, c##R##3);   \
        }
        LD4(0);
        LD4(1);
        LD4(2);
        LD4(3);
#undef LD4
        for (uint64_t bits = any; bits; bits &= bits - 1) {
            const int u = __builtin_ctzll(bits);
            const float *vr = t->v + (size_t)(t->vidx ? t->vidx[u] : u) * ldv + c0;
            __m512 v0 = _mm512_loadu_ps(vr), v1 = _mm512_loadu_ps(vr + 16);
            __m512 v2 = _mm512_loadu_ps(vr + 32), v3 = _mm512_loadu_ps(vr + 48);
#define FM4(R)                                                                            \
    do {                                                                                  \
        __m512 b = _mm512_set1_ps(P[R][u]);                                               \
        c##R##0 = _mm512_fmadd_ps(b, v0, c##R##0), c##R##1 = _mm512_fmadd_ps(b, v1, c##R##1); \
        c##R##2 = _mm512_fmadd_ps(b, v2, c##R##2), c##R##3 = _mm512_fmadd_ps(b, v3, c##R##3); \
    } while (0)
            FM4(0);
            FM4(1);
            FM4(2);
            FM4(3);
#undef FM4
        }
#define ST4(R) _mm512_storeu_ps(o##R, c##R##0), _mm512_storeu_ps(o##R + 16, c##R##1), \
               _mm512_storeu_ps(o##R + 32, c##R##2), _mm512_storeu_ps(o##R + 48, c##R##3)
        ST4(0);
        ST4(1);
        ST4(2);
        ST4(3);
#undef ST4
    }
    for (; c0 < d; c0 += 16) {
        __m512 acc[4];
        #pragma GCC unroll 4
        for (int r = 0; r < 4; r++)
            acc[r] = alpha ? _mm512_mul_ps(_mm512_set1_ps(alpha[r]), _mm512_loadu_ps(t->o + (size_t)r * (size_t)d + c0))
                           : _mm512_loadu_ps(t->o + (size_t)r * (size_t)d + c0);
        for (uint64_t bits = any; bits; bits &= bits - 1) {
            const int u = __builtin_ctzll(bits);
            const float *vr = t->v + (size_t)(t->vidx ? t->vidx[u] : u) * ldv + c0;
            __m512 v0 = _mm512_loadu_ps(vr);
            for (int r = 0; r < 4; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(P[r][u]), v0, acc[r]);
        }
        #pragma GCC unroll 4
        for (int r = 0; r < 4; r++) _mm512_storeu_ps(t->o + (size_t)r * (size_t)d + c0, acc[r]);
    }
}

#endif
#endif
