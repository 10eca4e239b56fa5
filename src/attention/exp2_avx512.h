/* exp2_avx512.h: 2^x on 16 lanes with the portable flash kernel's polynomial
 * (src/attention/flash.c) and the key-limit lane mask, shared by the AVX-512 flash tile, the
 * SPRINT kernel's exact-stage steps and the fast operator.
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

#endif
#endif
