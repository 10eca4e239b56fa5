/* exp2_avx512.h: 2^x on 16 lanes with the portable flash kernel's polynomial
 * (src/attention/flash.c), the key-limit lane mask and the 4 x 4-panel score block, shared by
 * the AVX-512 flash tile, the SPRINT kernel's exact-stage steps and the fast operator.
 * Include only from files whose functions carry the AVX-512 target (T512 below). */
#ifndef SPRINT_EXP2_AVX512_H
#define SPRINT_EXP2_AVX512_H
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")))

/* The polynomial part of 2^x: returns p with 2^x = p * 2^n, *n = x rounded to nearest. */
T512 static inline __m512 exp2_parts(__m512 x, __m512 *n) {
    *n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(x, *n);
    __m512 p = _mm512_set1_ps(1.535336188319500e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.339887440266574e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618437357674640e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550332471162809e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402264791363012e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931472028550421e-1f));
    return _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
}

/* 2^x for x <= 0, 0 below -126: the portable kernel's polynomial, lane-wise. */
T512 static inline __m512 exp2_512(__m512 x) {
    __mmask16 ok = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-126.0f), _CMP_GE_OQ);
    x = _mm512_max_ps(x, _mm512_set1_ps(-126.0f));
    __m512 n, p = exp2_parts(x, &n);
    return _mm512_maskz_scalef_ps(ok, p, n);
}

/* 2^x for 0 <= x <= 126 (callers mask other lanes): exp2_512 without its underflow clamp
 * (the SPRINT kernel's fixed softmax reference, sprint_fixed_avx512.c). */
T512 static inline __m512 exp2_pos(__m512 x) {
    __m512 n, p = exp2_parts(x, &n);
    return _mm512_scalef_ps(p, n);
}

/* Lanes of 16-key panel p below the key limit lim (keys p*16 .. p*16+15). */
T512 static inline __mmask16 lim_mask(int lim, int p) {
    int k = lim - p * 16;
    return k >= 16 ? (__mmask16)0xFFFF : k <= 0 ? (__mmask16)0 : (__mmask16)((1u << k) - 1u);
}

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

#endif
#endif
