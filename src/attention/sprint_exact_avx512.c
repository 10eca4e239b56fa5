/* sprint_exact_avx512.c: the digital stage of one query in AVX-512 (sprint_exact.h). Scores of
 * 16 survivors at a time: each key row's dot with q accumulates in one zmm (d / 16 FMAs), then
 * the 16 partial vectors are summed lane-wise by a 4-stage shuffle tree into one vector of 16
 * scores. The rows are loaded in the order that makes the tree's output lanes come out in
 * survivor order (lane 4a + b of the tree holds input a + 4b). The threshold, max, exp2 and the
 * compaction of the kept keys (vcompressps) are vectorised; the weighted sum of V runs over
 * the kept keys only. */
#include "attention/sprint_exact.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "attention/flash.h"

#include "attention/exp2_avx512.h"


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

/* Online-softmax step over one key chunk (sprint_exact.h). Scores of 16 survivors at a time
 * are stored uncompressed at their own 16-float slot of sbuf and read back from exactly that
 * slot (a compacted store followed by loads straddling two stores defeats store forwarding:
 * that stall cost a fifth of this function); exp2 of the kept lanes, then the weighted sum of
 * their V rows (d = 64: 4 zmm accumulators, two sets alternating between keys). */
T512 int sp_sx_chunk_avx512(const float *q, const float *k, int ldk, const float *v, int ldv, int d,
                            const int32_t *idx, int n, float thr, float *m, float *l, float *acc, float *sbuf,
                            int32_t *kept) {
    const __m512 th = _mm512_set1_ps(thr > -FLT_MAX ? thr : -FLT_MAX);
    const __m512 q0 = _mm512_loadu_ps(q), q1 = d == 64 ? _mm512_loadu_ps(q + 16) : q0;
    const __m512 q2 = d == 64 ? _mm512_loadu_ps(q + 32) : q0, q3 = d == 64 ? _mm512_loadu_ps(q + 48) : q0;
    __m512 mx = _mm512_set1_ps(-INFINITY);
    int any = 0;
    for (int t0 = 0; t0 < n; t0 += 16) {
        int mm = n - t0 < 16 ? n - t0 : 16;
        const int32_t *ix = idx + t0;
        int32_t pad[16];
        if (mm < 16) { /* a partial group: repeat the first key (masked out below) */
            for (int i = 0; i < 16; i++) pad[i] = i < mm ? ix[i] : ix[0];
            ix = pad;
        }
        __m512 s;
        if (d == 64)
            s = dots16_64(q0, q1, q2, q3, k, (size_t)ldk, ix);
        else {
            static const int8_t LANE[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};
            int32_t key[16];
            for (int i = 0; i < 16; i++) key[i] = ix[LANE[i]];
            s = dot16(q, k, ldk, d, key);
        }
        __mmask16 km = _mm512_cmp_ps_mask(s, th, _CMP_GE_OQ) & (__mmask16)((1u << mm) - 1u);
        mx = _mm512_mask_max_ps(mx, km, mx, s);
        _mm512_storeu_ps(sbuf + t0, s);
        any |= km;
    }
    if (!any) return 0;
    float cm = _mm512_reduce_max_ps(mx);
    if (cm > *m) {
        float r = *m == -INFINITY ? 0.0f : sp_flash_exp2(*m - cm);
        const __m512 rv = _mm512_set1_ps(r);
        for (int c = 0; c < d; c += 16) _mm512_storeu_ps(acc + c, _mm512_mul_ps(rv, _mm512_loadu_ps(acc + c)));
        *l *= r;
        *m = cm;
    }
    const __m512 mv = _mm512_set1_ps(*m);
    __m512 sum = _mm512_setzero_ps();
    int nk = 0;
    if (d == 64) {
        __m512 o0 = _mm512_loadu_ps(acc), o1 = _mm512_loadu_ps(acc + 16);
        __m512 o2 = _mm512_loadu_ps(acc + 32), o3 = _mm512_loadu_ps(acc + 48);
        __m512 e0 = _mm512_setzero_ps(), e1 = e0, e2 = e0, e3 = e0;
        for (int t0 = 0; t0 < n; t0 += 16) {
            int mm = n - t0 < 16 ? n - t0 : 16;
            __m512 s = _mm512_loadu_ps(sbuf + t0);
            unsigned km = _mm512_cmp_ps_mask(s, th, _CMP_GE_OQ) & ((1u << mm) - 1u);
            __m512 p = _mm512_maskz_mov_ps((__mmask16)km, exp2_512(_mm512_sub_ps(s, mv)));
            sum = _mm512_add_ps(sum, p);
            _mm512_storeu_ps(sbuf + t0, p);
            while (km) {
                int a = __builtin_ctz(km);
                km &= km - 1;
                const float *vr = v + (size_t)(uint32_t)idx[t0 + a] * (size_t)ldv;
                __m512 pa = _mm512_set1_ps(sbuf[t0 + a]);
                kept[nk++] = idx[t0 + a];
                o0 = _mm512_fmadd_ps(pa, _mm512_loadu_ps(vr), o0);
                o1 = _mm512_fmadd_ps(pa, _mm512_loadu_ps(vr + 16), o1);
                o2 = _mm512_fmadd_ps(pa, _mm512_loadu_ps(vr + 32), o2);
                o3 = _mm512_fmadd_ps(pa, _mm512_loadu_ps(vr + 48), o3);
                if (!km) break;
                int b = __builtin_ctz(km);
                km &= km - 1;
                const float *wr = v + (size_t)(uint32_t)idx[t0 + b] * (size_t)ldv;
                __m512 pb = _mm512_set1_ps(sbuf[t0 + b]);
                kept[nk++] = idx[t0 + b];
                e0 = _mm512_fmadd_ps(pb, _mm512_loadu_ps(wr), e0);
                e1 = _mm512_fmadd_ps(pb, _mm512_loadu_ps(wr + 16), e1);
                e2 = _mm512_fmadd_ps(pb, _mm512_loadu_ps(wr + 32), e2);
                e3 = _mm512_fmadd_ps(pb, _mm512_loadu_ps(wr + 48), e3);
            }
        }
        _mm512_storeu_ps(acc, _mm512_add_ps(o0, e0));
        _mm512_storeu_ps(acc + 16, _mm512_add_ps(o1, e1));
        _mm512_storeu_ps(acc + 32, _mm512_add_ps(o2, e2));
        _mm512_storeu_ps(acc + 48, _mm512_add_ps(o3, e3));
    } else {
        for (int t0 = 0; t0 < n; t0 += 16) {
            int mm = n - t0 < 16 ? n - t0 : 16;
            __m512 s = _mm512_loadu_ps(sbuf + t0);
            unsigned km = _mm512_cmp_ps_mask(s, th, _CMP_GE_OQ) & ((1u << mm) - 1u);
            __m512 p = _mm512_maskz_mov_ps((__mmask16)km, exp2_512(_mm512_sub_ps(s, mv)));
            sum = _mm512_add_ps(sum, p);
            _mm512_storeu_ps(sbuf + t0, p);
            for (; km; km &= km - 1) {
                int a = __builtin_ctz(km);
                const float *vr = v + (size_t)(uint32_t)idx[t0 + a] * (size_t)ldv;
                __m512 pa = _mm512_set1_ps(sbuf[t0 + a]);
                kept[nk++] = idx[t0 + a];
                for (int c = 0; c < d; c += 16)
                    _mm512_storeu_ps(acc + c, _mm512_fmadd_ps(pa, _mm512_loadu_ps(vr + c), _mm512_loadu_ps(acc + c)));
            }
        }
    }
    *l += _mm512_reduce_add_ps(sum);
    return nk;
}
/* Set bits to indices: vpcompressd of 16 consecutive indices per 16-bit piece, written with a
 * full store (compress-to-memory is slow on Intel); out has 16 entries of slack. */
T512 int sp_sx_bits_avx512(const uint64_t *m, int nw, int32_t base, int32_t *out) {
    const __m512i step = _mm512_set1_epi32(16);
    __m512i ix = _mm512_add_epi32(_mm512_set1_epi32(base),
                                  _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
    int n = 0;
    for (int u = 0; u < nw; u++) {
        uint64_t w = m[u];
        if (!w) {
            ix = _mm512_add_epi32(ix, _mm512_slli_epi32(step, 2));
            continue;
        }
        for (int p = 0; p < 4; p++) {
            __mmask16 k = (__mmask16)(w >> (16 * p));
            _mm512_storeu_si512((void *)(out + n), _mm512_maskz_compress_epi32(k, ix));
            n += __builtin_popcount((unsigned)k);
            ix = _mm512_add_epi32(ix, step);
        }
    }
    return n;
}
#else
int sp_sx_chunk_avx512(const float *q, const float *k, int ldk, const float *v, int ldv, int d, const int32_t *idx,
                       int n, float thr, float *m, float *l, float *acc, float *sbuf, int32_t *kept) {
    return sp_sx_chunk_portable(q, k, ldk, v, ldv, d, idx, n, thr, m, l, acc, sbuf, kept);
}
int sp_sx_bits_avx512(const uint64_t *m, int nw, int32_t base, int32_t *out) {
    return sp_sx_bits_portable(m, nw, base, out);
}
#endif
