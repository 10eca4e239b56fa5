/* sprint_dots_avx512.h: scores of 16 gathered keys at a time for the SPRINT kernel's exact
 * stage in AVX-512 (internal): each key row's dot with q accumulates in one zmm, then a 4-stage
 * shuffle tree sums the 16 partial vectors lane-wise. Shared by the online steps
 * (sprint_exact_avx512.c) and the fixed-reference steps (sprint_fixed_avx512.c), so both compute
 * the same fp32 scores and keep the same keys. Include only from files whose functions carry
 * the AVX-512 target (T512, exp2_avx512.h). */
#ifndef SPRINT_DOTS_AVX512_H
#define SPRINT_DOTS_AVX512_H
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "attention/exp2_avx512.h" /* T512 */

/* One stage of the tree: x holds key a's partials, y key b's; halves/quarters combined. */
#define ST_F32X4(x, y, i0, i1) _mm512_add_ps(_mm512_shuffle_f32x4(x, y, i0), _mm512_shuffle_f32x4(x, y, i1))
#define ST_PS(x, y, i0, i1) _mm512_add_ps(_mm512_shuffle_ps(x, y, i0), _mm512_shuffle_ps(x, y, i1))

/* The shuffle tree on 16 named registers (arrays indexed in loops stay on the stack at -O2). */
#define TREE16(out, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15)          \
    do {                                                                                          \
        __m512 b0 = ST_F32X4(a0, a1, 0x44, 0xEE), b1 = ST_F32X4(a2, a3, 0x44, 0xEE);             \
        __m512 b2 = ST_F32X4(a4, a5, 0x44, 0xEE), b3 = ST_F32X4(a6, a7, 0x44, 0xEE);             \
        __m512 b4 = ST_F32X4(a8, a9, 0x44, 0xEE), b5 = ST_F32X4(a10, a11, 0x44, 0xEE);           \
        __m512 b6 = ST_F32X4(a12, a13, 0x44, 0xEE), b7 = ST_F32X4(a14, a15, 0x44, 0xEE);         \
        __m512 c0 = ST_F32X4(b0, b1, 0x88, 0xDD), c1 = ST_F32X4(b2, b3, 0x88, 0xDD);             \
        __m512 c2 = ST_F32X4(b4, b5, 0x88, 0xDD), c3 = ST_F32X4(b6, b7, 0x88, 0xDD);             \
        __m512 e0 = ST_PS(c0, c1, 0x44, 0xEE), e1 = ST_PS(c2, c3, 0x44, 0xEE);                   \
        (out) = ST_PS(e0, e1, 0x88, 0xDD);                                                        \
    } while (0)

/* any d % 16 == 0 */
#define DOTG(i)                                                                                   \
    __m512 a##i;                                                                                  \
    do {                                                                                          \
        const float *kr = k + (size_t)key[i] * (size_t)ldk;                                       \
        __m512 s = _mm512_mul_ps(_mm512_loadu_ps(q), _mm512_loadu_ps(kr));                        \
        for (int c = 16; c < d; c += 16) s = _mm512_fmadd_ps(_mm512_loadu_ps(q + c), _mm512_loadu_ps(kr + c), s); \
        a##i = s;                                                                                 \
    } while (0)

T512 static inline __attribute__((always_inline)) __m512 dot16(const float *q, const float *k, int ldk, int d, const int32_t *key) {
    DOTG(0); DOTG(1); DOTG(2); DOTG(3); DOTG(4); DOTG(5); DOTG(6); DOTG(7);
    DOTG(8); DOTG(9); DOTG(10); DOTG(11); DOTG(12); DOTG(13); DOTG(14); DOTG(15);
    __m512 out;
    TREE16(out, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15);
    return out;
}

/* d = 64 scores of 16 keys given by their indices ix[0..16) in natural order: 16 dots of 4
 * FMAs, the shuffle tree, then one permute putting key i in lane i. Written with named
 * registers and scalar address arithmetic (a gather-style version had gcc turn the index
 * permutation into a chain of pextr/pinsr and spill the row pointers: ~11 cycles per key in L1). */
#define DOTP(i)                                                                                   \
    __m512 a##i;                                                                                  \
    do {                                                                                          \
        const float *kr = k + (size_t)(uint32_t)ix[i] * ldk;                                      \
        __m512 s0 = _mm512_mul_ps(q0, _mm512_loadu_ps(kr)), s1 = _mm512_mul_ps(q1, _mm512_loadu_ps(kr + 16)); \
        s0 = _mm512_fmadd_ps(q2, _mm512_loadu_ps(kr + 32), s0);                                   \
        s1 = _mm512_fmadd_ps(q3, _mm512_loadu_ps(kr + 48), s1);                                   \
        a##i = _mm512_add_ps(s0, s1);                                                             \
    } while (0)

T512 static inline __attribute__((always_inline)) __m512 dots16_64(__m512 q0, __m512 q1, __m512 q2, __m512 q3,
                                                                   const float *k, size_t ldk, const int32_t *ix) {
    DOTP(0); DOTP(1); DOTP(2); DOTP(3); DOTP(4); DOTP(5); DOTP(6); DOTP(7);
    DOTP(8); DOTP(9); DOTP(10); DOTP(11); DOTP(12); DOTP(13); DOTP(14); DOTP(15);
    __m512 out;
    /* the tree sends input a + 4b to lane 4a + b: input i sits in lane 4 (i % 4) + i / 4 */
    TREE16(out, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15);
    const __m512i perm = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    return _mm512_permutexvar_ps(perm, out);
}

/* Scores of 16 gathered keys ix[0..16) for any d % 16 == 0 in natural lane order: the rows
 * loaded in the order that makes the tree's output lanes come out in survivor order (lane
 * 4a + b of the tree holds input a + 4b). */
T512 static inline __attribute__((always_inline)) __m512 dots16_any(const float *q, const float *k, int ldk, int d,
                                                                    const int32_t *ix) {
    static const int8_t LANE[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};
    int32_t key[16];
    for (int i = 0; i < 16; i++) key[i] = ix[LANE[i]];
    return dot16(q, k, ldk, d, key);
}


/* The weighted sum of V over the kept lanes km of 16 gathered keys (d = 64): key ix[a]'s row
 * times its weight pw[a], appended to kept[nk++], alternately into two accumulator chains
 * (o0..o3 and e0..e3, summed by the caller) to halve the FMA latency chain. */
#define SX_WSUM2_64(km, ix, pw, v, ldv, kept, nk, o0, o1, o2, o3, e0, e1, e2, e3)                  \
    do {                                                                                          \
        while (km) {                                                                              \
            int a_ = __builtin_ctz(km);                                                           \
            km &= km - 1;                                                                         \
            const float *vr_ = (v) + (size_t)(uint32_t)(ix)[a_] * (size_t)(ldv);                  \
            __m512 pa_ = _mm512_set1_ps((pw)[a_]);                                                \
            (kept)[(nk)++] = (ix)[a_];                                                            \
            o0 = _mm512_fmadd_ps(pa_, _mm512_loadu_ps(vr_), o0);                                  \
            o1 = _mm512_fmadd_ps(pa_, _mm512_loadu_ps(vr_ + 16), o1);                             \
            o2 = _mm512_fmadd_ps(pa_, _mm512_loadu_ps(vr_ + 32), o2);                             \
            o3 = _mm512_fmadd_ps(pa_, _mm512_loadu_ps(vr_ + 48), o3);                             \
            if (!km) break;                                                                       \
            int b_ = __builtin_ctz(km);                                                           \
            km &= km - 1;                                                                         \
            const float *wr_ = (v) + (size_t)(uint32_t)(ix)[b_] * (size_t)(ldv);                  \
            __m512 pb_ = _mm512_set1_ps((pw)[b_]);                                                \
            (kept)[(nk)++] = (ix)[b_];                                                            \
            e0 = _mm512_fmadd_ps(pb_, _mm512_loadu_ps(wr_), e0);                                  \
            e1 = _mm512_fmadd_ps(pb_, _mm512_loadu_ps(wr_ + 16), e1);                             \
            e2 = _mm512_fmadd_ps(pb_, _mm512_loadu_ps(wr_ + 32), e2);                             \
            e3 = _mm512_fmadd_ps(pb_, _mm512_loadu_ps(wr_ + 48), e3);                             \
        }                                                                                         \
    } while (0)

#endif
#endif
