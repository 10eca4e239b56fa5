/* fast_kernels_avx512.c: the fast operator's selection and score loops in AVX-512 F/BW/VL
 * (fast_kernels.h), tested against the portable ones. */
#include "functional/fast_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include <math.h>
#include <string.h>

#include "attention/exp2_avx512.h" /* exp2_512 and T512 */

/* 16 keys per step: compare, and-ed with the padding mask, compacted in a register (compress
 * to memory is slow on Intel) and stored whole (out has 16 entries of slack). */
/* Keys j0..j0+15 (lanes of lim) whose bits are set in m: and-ed with the padding mask, their
 * indices (idx) compacted to out + cnt and their 16 bits stored; returns the new count. */
T512 static inline int fk_emit16(__mmask16 m, __mmask16 lim, const unsigned char *kvalid, int j0, __m512i idx,
                                 int32_t *out, int cnt, uint16_t *bits) {
    if (kvalid) {
        __m128i kv = _mm_maskz_loadu_epi8(lim, kvalid + j0);
        m &= _mm_test_epi8_mask(kv, kv);
    }
    _mm512_storeu_si512((void *)(out + cnt), _mm512_maskz_compress_epi32(m, idx));
    bits[j0 / 16] = (uint16_t)m;
    return cnt + __builtin_popcount((unsigned)m);
}

T512 int sp_fk_select_avx512(const int32_t *A, int n, int32_t tau, const unsigned char *kvalid, int32_t *out,
                             uint16_t *bits) {
    const __m512i tv = _mm512_set1_epi32(tau), step = _mm512_set1_epi32(16);
    __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    int cnt = 0;
    for (int j0 = 0; j0 < n; j0 += 16, idx = _mm512_add_epi32(idx, step)) {
        __mmask16 lim = n - j0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j0)) - 1u);
        __mmask16 m = _mm512_mask_cmpge_epi32_mask(lim, _mm512_maskz_loadu_epi32(lim, A + j0), tv);
        cnt = fk_emit16(m, lim, kvalid, j0, idx, out, cnt, bits);
    }
    return cnt;
}

/* Sum of each of 16 vectors, lane i of the result holding the sum of input (i % 4) * 4 + i / 4
 * (a transposing reduction tree: 128-bit halves, then quarters, then pairs and lanes). */
#define FK_ADD_F32X4(x, y, i0, i1) _mm512_add_ps(_mm512_shuffle_f32x4(x, y, i0), _mm512_shuffle_f32x4(x, y, i1))
#define FK_ADD_PS(x, y, i0, i1) _mm512_add_ps(_mm512_shuffle_ps(x, y, i0), _mm512_shuffle_ps(x, y, i1))
T512 static inline __m512 fk_tree16(const __m512 a[16]) {
    __m512 b[8], c[4];
    for (int i = 0; i < 8; i++) b[i] = FK_ADD_F32X4(a[2 * i], a[2 * i + 1], 0x44, 0xEE);
    for (int i = 0; i < 4; i++) c[i] = FK_ADD_F32X4(b[2 * i], b[2 * i + 1], 0x88, 0xDD);
    __m512 e0 = FK_ADD_PS(c[0], c[1], 0x44, 0xEE), e1 = FK_ADD_PS(c[2], c[3], 0x44, 0xEE);
    return FK_ADD_PS(e0, e1, 0x88, 0xDD);
}

/* d % 16 == 0: 16 keys per step, each key's partial dot in one zmm (two chains for d = 64),
 * loaded in the order that makes the tree's lanes come out in list order; other d: one key per
 * step with a masked tail and a horizontal sum. */
T512 void sp_fk_dots_avx512(const float *q, const float *k, int ldk, int d, const int32_t *idx, int n, float *out) {
    static const int8_t SLOT[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};
    if (d % 16 == 0) {
        for (int t0 = 0; t0 < n; t0 += 16) {
            const int m = n - t0 < 16 ? n - t0 : 16;
            __m512 a[16];
#pragma GCC unroll 16
            for (int u = 0; u < 16; u++) {
                const int src = SLOT[u] < m ? SLOT[u] : 0;
                const float *kr = k + (size_t)idx[t0 + src] * (size_t)ldk;
                if (d == 64) {
                    __m512 s0 = _mm512_mul_ps(_mm512_loadu_ps(q), _mm512_loadu_ps(kr));
                    __m512 s1 = _mm512_mul_ps(_mm512_loadu_ps(q + 16), _mm512_loadu_ps(kr + 16));
                    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + 32), _mm512_loadu_ps(kr + 32), s0);
                    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + 48), _mm512_loadu_ps(kr + 48), s1);
                    a[u] = _mm512_add_ps(s0, s1);
                } else {
                    __m512 s0 = _mm512_mul_ps(_mm512_loadu_ps(q), _mm512_loadu_ps(kr));
                    for (int c = 16; c < d; c += 16)
                        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c), _mm512_loadu_ps(kr + c), s0);
                    a[u] = s0;
                }
            }
            _mm512_mask_storeu_ps(out + t0, (__mmask16)((1u << m) - 1u), fk_tree16(a));
        }
        return;
    }
    for (int t = 0; t < n; t++) {
        const float *a = k + (size_t)idx[t] * (size_t)ldk;
        __m512 s = _mm512_setzero_ps();
        for (int c = 0; c < d; c += 16) {
            __mmask16 m = d - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (d - c)) - 1u);
            s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + c), _mm512_maskz_loadu_ps(m, a + c), s);
        }
        out[t] = _mm512_reduce_add_ps(s);
    }
}

#ifndef WS_AHEAD
#define WS_AHEAD 8 /* keys of software prefetch ahead in the weighted sum's V rows */
#endif
/* One pass of the weighted sum over dims [c, c + w) (w <= 16 G) with G accumulator pairs: lane u
 * of o[g] sums p[t] v[t][c + 16 g + u] over the even keys t in order (one fma each), e[g] over
 * the odd ones; out = (o + e) * inv. The pairs beyond G would only hold masked-off lanes, so
 * every G gives the same bits for the dims it covers (tests/test_fn_fast.c). */
T512 static inline __attribute__((always_inline)) void wsum_pass(int G, int w, const float *p, const int32_t *idx,
                                                                 int n, const float *v, int ldv, int c, __m512 inv,
                                                                 float *out) {
    __mmask16 cm[4];
    for (int g = 0; g < 4; g++) cm[g] = lim_mask(w, g); /* the dims of group g below w */
    __m512 o[4], e[4];
    for (int g = 0; g < 4; g++) o[g] = e[g] = _mm512_setzero_ps();
    int t = 0;
    for (; t + 2 <= n; t += 2) {
        const float *vr = v + (size_t)idx[t] * (size_t)ldv + c, *wr = v + (size_t)idx[t + 1] * (size_t)ldv + c;
        if (t + WS_AHEAD + 1 < n) { /* gathered V rows come from L2/L3: latency-bound otherwise */
            const char *pa = (const char *)(v + (size_t)idx[t + WS_AHEAD] * (size_t)ldv + c),
                       *pb = (const char *)(v + (size_t)idx[t + WS_AHEAD + 1] * (size_t)ldv + c);
            for (int u = 0; u < w * 4; u += 64) _mm_prefetch(pa + u, _MM_HINT_T0), _mm_prefetch(pb + u, _MM_HINT_T0);
        }
        const __m512 pa = _mm512_set1_ps(p[t]), pb = _mm512_set1_ps(p[t + 1]);
        for (int g = 0; g < G; g++) {
            o[g] = _mm512_fmadd_ps(pa, _mm512_maskz_loadu_ps(cm[g], vr + 16 * g), o[g]);
            e[g] = _mm512_fmadd_ps(pb, _mm512_maskz_loadu_ps(cm[g], wr + 16 * g), e[g]);
        }
    }
    if (t < n) {
        const float *vr = v + (size_t)idx[t] * (size_t)ldv + c;
        const __m512 pa = _mm512_set1_ps(p[t]);
        for (int g = 0; g < G; g++) o[g] = _mm512_fmadd_ps(pa, _mm512_maskz_loadu_ps(cm[g], vr + 16 * g), o[g]);
    }
    for (int g = 0; g < G; g++)
        _mm512_mask_storeu_ps(out + c + 16 * g, cm[g], _mm512_mul_ps(_mm512_add_ps(o[g], e[g]), inv));
}

/* p[t] = 2^(qmul s[t] - max) (exp2 on 16 lanes, exp2_avx512.h); returns 1 / sum p, broadcast. */
T512 static inline __m512 fk_exp_weights(const float *s, float qmul, int n, float *p) {
    const __m512 qm = _mm512_set1_ps(qmul);
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int t = 0; t < n; t += 16) {
        __mmask16 lm = n - t >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - t)) - 1u);
        mx = _mm512_mask_max_ps(mx, lm, mx, _mm512_mul_ps(_mm512_maskz_loadu_ps(lm, s + t), qm));
    }
    const __m512 mv = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 sum = _mm512_setzero_ps();
    for (int t = 0; t < n; t += 16) {
        __mmask16 lm = n - t >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - t)) - 1u);
        __m512 x = _mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(lm, s + t), qm), mv);
        __m512 e = _mm512_maskz_mov_ps(lm, exp2_512(x));
        sum = _mm512_add_ps(sum, e);
        _mm512_storeu_ps(p + t, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    return inv;
}

/* The weights (fk_exp_weights), then the weighted sum with two keys per step into two sets of
 * accumulators (16 dims each, a masked tail for any d). */
T512 void sp_fk_softmax_wsum_avx512(const float *s, float qmul, const int32_t *idx, int n, const float *v, int ldv,
                                    int d, float *p, float *out) {
    const __m512 inv = fk_exp_weights(s, qmul, n, p);
    /* 64 output dims per pass over the keys (G = 1-4 zmm accumulators of 16 dims, two keys
     * per step: even keys into o, odd keys into e); fewer groups for the last 1-48 dims */
    for (int c = 0; c < d; c += 64) {
        const int w = d - c < 64 ? d - c : 64;
        if (w <= 16) wsum_pass(1, w, p, idx, n, v, ldv, c, inv, out);
        else if (w <= 32) wsum_pass(2, w, p, idx, n, v, ldv, c, inv, out);
        else if (w <= 48) wsum_pass(3, w, p, idx, n, v, ldv, c, inv, out);
        else wsum_pass(4, w, p, idx, n, v, ldv, c, inv, out);
    }
}

/* The softmax weights of the kept keys (fk_exp_weights, then p * inv; fast_kernels.h). */
T512 void sp_fk_softmax_avx512(const float *s, float qmul, int n, float *p) {
    const __m512 inv = fk_exp_weights(s, qmul, n, p);
    for (int t = 0; t < n; t += 16) _mm512_storeu_ps(p + t, _mm512_mul_ps(_mm512_loadu_ps(p + t), inv));
}

/* One pass of sp_fk_wsum4 over G groups of 16 dims (masked tail of w dims) starting at dim c:
 * the 4 lists merged key by key (branch-free: the smallest head, and each list whose head it
 * is steps on), one V row load per key of the union, 4 G FMAs per key (a weight of 0 for the
 * lists without the key). */
T512 static inline __attribute__((always_inline)) void wsum4_pass(int G, int w, const int32_t *kl, const float *pl,
                                                                  size_t ld, const float *v, int ldv, int c,
                                                                  float *const out[4]) {
    __mmask16 cm[4];
    #pragma GCC unroll 4
    for (int g = 0; g < 4; g++) cm[g] = lim_mask(w, g); /* the dims of group g below w */
    /* named accumulators, group g of query r in a<r><g> (arrays indexed in a loop stayed on the
     * stack: a load and a store around every FMA) */
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    __m512 a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
    const int32_t *k0 = kl, *k1 = kl + ld, *k2 = kl + 2 * ld, *k3 = kl + 3 * ld;
    const float *q0 = pl, *q1 = pl + ld, *q2 = pl + 2 * ld, *q3 = pl + 3 * ld;
    for (;;) {
        const int32_t h0 = *k0, h1 = *k1, h2 = *k2, h3 = *k3;
        const int32_t m01 = h0 < h1 ? h0 : h1, m23 = h2 < h3 ? h2 : h3, m = m01 < m23 ? m01 : m23;
        if (m == INT32_MAX) break;
        const int e0 = h0 == m, e1 = h1 == m, e2 = h2 == m, e3 = h3 == m;
        const __m512 p0 = _mm512_maskz_mov_ps((__mmask16)-e0, _mm512_set1_ps(*q0));
        const __m512 p1 = _mm512_maskz_mov_ps((__mmask16)-e1, _mm512_set1_ps(*q1));
        const __m512 p2 = _mm512_maskz_mov_ps((__mmask16)-e2, _mm512_set1_ps(*q2));
        const __m512 p3 = _mm512_maskz_mov_ps((__mmask16)-e3, _mm512_set1_ps(*q3));
        k0 += e0, k1 += e1, k2 += e2, k3 += e3, q0 += e0, q1 += e1, q2 += e2, q3 += e3;
        const float *vr = v + (size_t)m * (size_t)ldv + c;
#define W4_GROUP(g)                                                                               \
    do {                                                                                          \
        const __m512 x = _mm512_maskz_loadu_ps(cm[g], vr + 16 * (g));                            \
        a0##g = _mm512_fmadd_ps(p0, x, a0##g), a1##g = _mm512_fmadd_ps(p1, x, a1##g);             \
        a2##g = _mm512_fmadd_ps(p2, x, a2##g), a3##g = _mm512_fmadd_ps(p3, x, a3##g);             \
    } while (0)
        W4_GROUP(0);
        if (G > 1) W4_GROUP(1);
        if (G > 2) W4_GROUP(2);
        if (G > 3) W4_GROUP(3);
#undef W4_GROUP
    }
#define W4_STORE(r, g)                                                                            \
    if (G > g && out[r]) _mm512_mask_storeu_ps(out[r] + c + 16 * (g), cm[g], a##r##g)
    W4_STORE(0, 0); W4_STORE(0, 1); W4_STORE(0, 2); W4_STORE(0, 3);
    W4_STORE(1, 0); W4_STORE(1, 1); W4_STORE(1, 2); W4_STORE(1, 3);
    W4_STORE(2, 0); W4_STORE(2, 1); W4_STORE(2, 2); W4_STORE(2, 3);
    W4_STORE(3, 0); W4_STORE(3, 1); W4_STORE(3, 2); W4_STORE(3, 3);
#undef W4_STORE
}

T512 void sp_fk_wsum4_avx512(const int32_t *kl, const float *pl, size_t ld, const float *v, int ldv, int d,
                             float *const out[4]) {
    for (int c = 0; c < d; c += 64) {
        const int w = d - c < 64 ? d - c : 64;
        if (w <= 16) wsum4_pass(1, w, kl, pl, ld, v, ldv, c, out);
        else if (w <= 32) wsum4_pass(2, w, kl, pl, ld, v, ldv, c, out);
        else if (w <= 48) wsum4_pass(3, w, kl, pl, ld, v, ldv, c, out);
        else wsum4_pass(4, w, kl, pl, ld, v, ldv, c, out);
    }
}

T512 int sp_fk_threshold_avx512(const float *s, const int32_t *idx, int n, float lo, float hi, int32_t *kept,
                                float *ksc) {
    const __m512 hv = _mm512_set1_ps(hi), lv = _mm512_set1_ps(lo);
    int cnt = 0;
    __mmask16 amb = 0;
    for (int t = 0; t < n; t += 16) {
        __mmask16 lm = n - t >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - t)) - 1u);
        __m512 x = _mm512_maskz_loadu_ps(lm, s + t);
        __mmask16 k = _mm512_mask_cmp_ps_mask(lm, x, hv, _CMP_GE_OQ);
        amb |= _mm512_mask_cmp_ps_mask(lm, x, lv, _CMP_GE_OQ) & (__mmask16)~k;
        _mm512_storeu_ps(ksc + cnt, _mm512_maskz_compress_ps(k, x));
        _mm512_storeu_si512((void *)(kept + cnt),
                            _mm512_maskz_compress_epi32(k, _mm512_maskz_loadu_epi32(lm, idx + t)));
        cnt += __builtin_popcount((unsigned)k);
    }
    return amb ? -1 : cnt;
}
T512 float sp_fk_max_avx512(const float *s, int n) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    for (int t = 0; t < n; t += 16) {
        __mmask16 lm = n - t >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - t)) - 1u);
        m = _mm512_mask_max_ps(m, lm, m, _mm512_maskz_loadu_ps(lm, s + t));
    }
    return _mm512_reduce_max_ps(m);
}

/* sp_fn_mass_exp on 8 doubles with the same operations (separate multiplies and adds, floor,
 * the power of two by scalef, exact here): every lane equals the scalar function. */
T512 static inline __m512d fk_mass_exp8(__m512d x) {
    const __m512d y = _mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634));
    const __m512d nn = _mm512_roundscale_pd(_mm512_add_pd(y, _mm512_set1_pd(0.5)), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m512d f = _mm512_sub_pd(y, nn);
    __m512d p = _mm512_add_pd(_mm512_set1_pd(0.0013333558146428), _mm512_mul_pd(f, _mm512_set1_pd(0.0001540353039338)));
    p = _mm512_add_pd(_mm512_set1_pd(0.0096181291076285), _mm512_mul_pd(f, p));
    p = _mm512_add_pd(_mm512_set1_pd(0.0555041086648216), _mm512_mul_pd(f, p));
    p = _mm512_add_pd(_mm512_set1_pd(0.2402265069591007), _mm512_mul_pd(f, p));
    p = _mm512_add_pd(_mm512_set1_pd(0.6931471805599453), _mm512_mul_pd(f, p));
    p = _mm512_add_pd(_mm512_set1_pd(1.0), _mm512_mul_pd(f, p));
    return _mm512_scalef_pd(p, nn);
}

/* 8 keys per step in double (the reference's x = scale (double) S), masks for the decisions. */
T512 void sp_fk_dense_avx512(const sp_fk_dense_in *in, int32_t *amb, sp_fk_dense_out *out) {
    memset(out, 0, sizeof *out);
    const __m512d sc = _mm512_set1_pd(in->scale), sm = _mm512_set1_pd(in->smax), hi = _mm512_set1_pd(in->hi),
                  lo = _mm512_set1_pd(in->lo), cut = _mm512_set1_pd(-30.0), far = _mm512_set1_pd(-60.0);
    const __m256i ti = _mm256_set1_epi32(in->ti);
    __m512d Z = _mm512_setzero_pd(), s1 = Z, s2 = Z;
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i eight = _mm256_set1_epi32(8);
    long cnt = 0;
    for (int j = 0; j < in->n; j += 8, idx = _mm256_add_epi32(idx, eight)) {
        __mmask8 lm = in->n - j >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (in->n - j)) - 1u);
        if (in->kv) {
            __m128i kb = _mm_maskz_loadu_epi8((__mmask16)lm, in->kv + j);
            lm &= (__mmask8)_mm_test_epi8_mask(kb, kb);
        }
        const __m512d x = _mm512_mul_pd(sc, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(lm, in->S + j)));
        if (in->want_pass) {
            __mmask8 pass = _mm512_mask_cmp_pd_mask(lm, x, hi, _CMP_GE_OQ);
            __mmask8 fail = _mm512_mask_cmp_pd_mask(lm, x, lo, _CMP_LT_OQ);
            __mmask8 keep = _mm256_mask_cmpge_epi32_mask(lm, _mm256_maskz_loadu_epi32(lm, in->A + j), ti);
            __mmask8 am = lm & (__mmask8)~(pass | fail);
            if (am) {
                _mm256_storeu_si256((__m256i *)(void *)(amb + out->n_amb), _mm256_maskz_compress_epi32(am, idx));
                out->n_amb += __builtin_popcount((unsigned)am);
            }
            out->n_pass += __builtin_popcount((unsigned)pass);
            out->n_fk += __builtin_popcount((unsigned)(keep & fail));
            out->n_fp += __builtin_popcount((unsigned)(pass & (__mmask8)~keep & lm));
        }
        const __m512d y = _mm512_sub_pd(x, sm);
        if (in->want_mass) {
            __m512d t = _mm512_mask_blend_pd(_mm512_cmp_pd_mask(y, cut, _CMP_LT_OQ), y, far);
            Z = _mm512_add_pd(Z, _mm512_maskz_mov_pd(lm, fk_mass_exp8(t)));
        }
        if (in->want_spread) {
            s1 = _mm512_add_pd(s1, _mm512_maskz_mov_pd(lm, y));
            s2 = _mm512_add_pd(s2, _mm512_maskz_mov_pd(lm, _mm512_mul_pd(y, y)));
            cnt += __builtin_popcount((unsigned)lm);
        }
    }
    out->Z = _mm512_reduce_add_pd(Z), out->s1 = _mm512_reduce_add_pd(s1), out->s2 = _mm512_reduce_add_pd(s2);
    out->cnt = cnt;
}
#define FK_AHEAD 12 /* keys of software prefetch ahead in the gathers */

/* d % 16 == 0: 4 keys x 4 queries per step, each partial dot in one zmm (a K row is loaded once
 * for the 4 queries), summed by the transposing tree into lane 4 u + r; other d: portable. */
T512 void sp_fk_dots4_avx512(const float *q, int ldq, int nr, const float *k, int ldk, int d, const int32_t *idx, int n,
                             float *sc4) {
    if (d % 16 != 0) {
        sp_fk_dots4_portable(q, ldq, nr, k, ldk, d, idx, n, sc4);
        return;
    }
    const float *qr[4];
    for (int r = 0; r < 4; r++) qr[r] = q + (size_t)(r < nr ? r : 0) * (size_t)ldq;
    for (int t0 = 0; t0 < n; t0 += 4) {
        const int m = n - t0 < 4 ? n - t0 : 4;
        /* the rows FK_AHEAD keys on: gathered rows come from L2/L3, latency-bound otherwise */
        for (int u = t0 + FK_AHEAD; u < t0 + FK_AHEAD + 4 && u < n; u++) {
            const char *pr = (const char *)(k + (size_t)idx[u] * (size_t)ldk);
            for (int c = 0; c < d * 4; c += 64) _mm_prefetch(pr + c, _MM_HINT_T0);
        }
        __m512 a[16];
#pragma GCC unroll 4
        for (int u = 0; u < 4; u++) {
            const float *kr = k + (size_t)idx[t0 + (u < m ? u : 0)] * (size_t)ldk;
            __m512 kc = _mm512_loadu_ps(kr);
            __m512 s0 = _mm512_mul_ps(_mm512_loadu_ps(qr[0]), kc), s1 = _mm512_mul_ps(_mm512_loadu_ps(qr[1]), kc),
                   s2 = _mm512_mul_ps(_mm512_loadu_ps(qr[2]), kc), s3 = _mm512_mul_ps(_mm512_loadu_ps(qr[3]), kc);
            for (int c = 16; c < d; c += 16) {
                kc = _mm512_loadu_ps(kr + c);
                s0 = _mm512_fmadd_ps(_mm512_loadu_ps(qr[0] + c), kc, s0);
                s1 = _mm512_fmadd_ps(_mm512_loadu_ps(qr[1] + c), kc, s1);
                s2 = _mm512_fmadd_ps(_mm512_loadu_ps(qr[2] + c), kc, s2);
                s3 = _mm512_fmadd_ps(_mm512_loadu_ps(qr[3] + c), kc, s3);
            }
            a[0 + u] = s0, a[4 + u] = s1, a[8 + u] = s2, a[12 + u] = s3;
        }
        const __m512 res = fk_tree16(a);
        _mm_storeu_ps(sc4 + 4 * (size_t)idx[t0], _mm512_castps512_ps128(res));
        if (m > 1) _mm_storeu_ps(sc4 + 4 * (size_t)idx[t0 + 1], _mm512_extractf32x4_ps(res, 1));
        if (m > 2) _mm_storeu_ps(sc4 + 4 * (size_t)idx[t0 + 2], _mm512_extractf32x4_ps(res, 2));
        if (m > 3) _mm_storeu_ps(sc4 + 4 * (size_t)idx[t0 + 3], _mm512_extractf32x4_ps(res, 3));
    }
}

#ifndef PN_HINT
#define PN_HINT _MM_HINT_T0
#endif
/* 16 keys in the lanes, one accumulator per query (two chains each), the 4 x 16 result
 * transposed to key-major order by unpacks and shuffles within 128-bit blocks. */
/* One panel: kpan scored for the rows q0..q3, the panel at pf prefetched meanwhile. */
T512 static inline void fk_panel4(const float *q0, const float *q1, const float *q2, const float *q3,
                                  const float *kpan, const float *pf, int d, float *out) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    int c = 0;
    for (; c + 2 <= d; c += 2) {
        const __m512 k0 = _mm512_loadu_ps(kpan + (size_t)c * 16), k1 = _mm512_loadu_ps(kpan + (size_t)c * 16 + 16);
        _mm_prefetch((const char *)(pf + (size_t)c * 16), PN_HINT);
        _mm_prefetch((const char *)(pf + (size_t)c * 16 + 16), PN_HINT);
        a0 = _mm512_fmadd_ps(_mm512_set1_ps(q0[c]), k0, a0);
        a1 = _mm512_fmadd_ps(_mm512_set1_ps(q1[c]), k0, a1);
        a2 = _mm512_fmadd_ps(_mm512_set1_ps(q2[c]), k0, a2);
        a3 = _mm512_fmadd_ps(_mm512_set1_ps(q3[c]), k0, a3);
        b0 = _mm512_fmadd_ps(_mm512_set1_ps(q0[c + 1]), k1, b0);
        b1 = _mm512_fmadd_ps(_mm512_set1_ps(q1[c + 1]), k1, b1);
        b2 = _mm512_fmadd_ps(_mm512_set1_ps(q2[c + 1]), k1, b2);
        b3 = _mm512_fmadd_ps(_mm512_set1_ps(q3[c + 1]), k1, b3);
    }
    if (c < d) {
        const __m512 k0 = _mm512_loadu_ps(kpan + (size_t)c * 16);
        a0 = _mm512_fmadd_ps(_mm512_set1_ps(q0[c]), k0, a0);
        a1 = _mm512_fmadd_ps(_mm512_set1_ps(q1[c]), k0, a1);
        a2 = _mm512_fmadd_ps(_mm512_set1_ps(q2[c]), k0, a2);
        a3 = _mm512_fmadd_ps(_mm512_set1_ps(q3[c]), k0, a3);
    }
    a0 = _mm512_add_ps(a0, b0), a1 = _mm512_add_ps(a1, b1), a2 = _mm512_add_ps(a2, b2), a3 = _mm512_add_ps(a3, b3);
    /* per 128-bit block b (keys 4b .. 4b + 3): t0 = (a0[k], a1[k], a0[k+1], a1[k+1]), ... */
    const __m512 t0 = _mm512_unpacklo_ps(a0, a1), t1 = _mm512_unpacklo_ps(a2, a3), t2 = _mm512_unpackhi_ps(a0, a1),
                 t3 = _mm512_unpackhi_ps(a2, a3);
    /* u_k: block b holds the 4 queries' scores of key 4 b + k */
    const __m512 u0 = _mm512_shuffle_ps(t0, t1, 0x44), u1 = _mm512_shuffle_ps(t0, t1, 0xEE),
                 u2 = _mm512_shuffle_ps(t2, t3, 0x44), u3 = _mm512_shuffle_ps(t2, t3, 0xEE);
    /* key 4 b + k goes to out + 16 b + 4 k: gather block b of u0..u3 into output vector b */
    const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23),
                  hi = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    const __m512 v01a = _mm512_permutex2var_ps(u0, lo, u1), v01b = _mm512_permutex2var_ps(u0, hi, u1); /* blocks (0,1) | (2,3) of u0,u1 */
    const __m512 v23a = _mm512_permutex2var_ps(u2, lo, u3), v23b = _mm512_permutex2var_ps(u2, hi, u3);
    /* v01a = [u0.b0, u1.b0, u0.b1, u1.b1], v23a = [u2.b0, u3.b0, u2.b1, u3.b1] */
    _mm512_storeu_ps(out, _mm512_shuffle_f32x4(v01a, v23a, 0x44));      /* key 0..3: u0.b0 u1.b0 u2.b0 u3.b0 */
    _mm512_storeu_ps(out + 16, _mm512_shuffle_f32x4(v01a, v23a, 0xEE)); /* keys 4..7 */
    _mm512_storeu_ps(out + 32, _mm512_shuffle_f32x4(v01b, v23b, 0x44)); /* keys 8..11 */
    _mm512_storeu_ps(out + 48, _mm512_shuffle_f32x4(v01b, v23b, 0xEE)); /* keys 12..15 */
}
/* the next panel in memory prefetched (the panels fx_dense_panels scores are often adjacent) */
T512 void sp_fk_panel4_avx512(const float *q, int ldq, int nr, const float *kpan, int d, float *out) {
    const float *q0 = q, *q1 = q + (size_t)(nr > 1) * (size_t)ldq, *q2 = q + (size_t)(nr > 2 ? 2 : 0) * (size_t)ldq,
                *q3 = q + (size_t)(nr > 3 ? 3 : 0) * (size_t)ldq;
    fk_panel4(q0, q1, q2, q3, kpan, kpan + (size_t)d * 16, d, out);
}
/* the next panel of the list prefetched (a panel is one 4 KB page, which the hardware streamer
 * does not cross, and the list's panels need not be adjacent) */
T512 void sp_fk_panels4_avx512(const float *q, int ldq, int nr, const float *kpf, int d, const int32_t *plist, int np,
                               float *sc4) {
    const float *q0 = q, *q1 = q + (size_t)(nr > 1) * (size_t)ldq, *q2 = q + (size_t)(nr > 2 ? 2 : 0) * (size_t)ldq,
                *q3 = q + (size_t)(nr > 3 ? 3 : 0) * (size_t)ldq;
    const size_t ps = (size_t)d * 16;
    for (int t = 0; t < np; t++) {
        const size_t p = (size_t)plist[t], pn = t + 1 < np ? (size_t)plist[t + 1] : p + 1;
        fk_panel4(q0, q1, q2, q3, kpf + p * ps, kpf + pn * ps, d, sc4 + 64 * p);
    }
}

/* 16 keys per step: their 16 bits of the mask word, and-ed with the padding mask, compacted. */
T512 int sp_fk_select_mask_avx512(const uint64_t *mask, int n, const unsigned char *kvalid, int32_t *out,
                                  uint16_t *bits) {
    const __m512i step = _mm512_set1_epi32(16);
    __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    int cnt = 0;
    for (int j0 = 0; j0 < n; j0 += 16, idx = _mm512_add_epi32(idx, step)) {
        __mmask16 lim = n - j0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j0)) - 1u);
        __mmask16 m = (__mmask16)(mask[j0 / 64] >> (j0 % 64)) & lim;
        cnt = fk_emit16(m, lim, kvalid, j0, idx, out, cnt, bits);
    }
    return cnt;
}

T512 void sp_fk_gather_avx512(const float *S, const int32_t *idx, int n, float *out) {
    for (int t = 0; t < n; t += 16) {
        __mmask16 lm = n - t >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - t)) - 1u);
        const __m512i j = _mm512_maskz_loadu_epi32(lm, idx + t);
        _mm512_mask_storeu_ps(out + t, lm, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lm, j, S, 4));
    }
}

T512 void sp_fk_gather4_avx512(const float *sc4, int r, const int32_t *idx, int n, float *out) {
    const float *base = sc4 + r;
    for (int t = 0; t < n; t += 16) {
        __mmask16 lm = n - t >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - t)) - 1u);
        const __m512i j = _mm512_slli_epi32(_mm512_maskz_loadu_epi32(lm, idx + t), 2);
        _mm512_mask_storeu_ps(out + t, lm, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lm, j, base, 4));
    }
}

/* 16 keys per step: two 8-element gathers of the (slot r, slot r + 1) pairs as 64-bit elements
 * (16 bytes apart: index 2 idx, scale 8), split into the two slots by two permutes. */
T512 void sp_fk_gather4x2_avx512(const float *sc4, int r, const int32_t *idx, int n, float *out, float *out1) {
    const float *base = sc4 + r;
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
                  od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int t = 0; t < n; t += 16) {
        const int m = n - t < 16 ? n - t : 16;
        const __mmask16 lm = (__mmask16)((1u << m) - 1u);
        const __m512i j = _mm512_slli_epi32(_mm512_maskz_loadu_epi32(lm, idx + t), 1);
        const __mmask8 l0 = (__mmask8)(lm & 0xFFu), l1 = (__mmask8)(lm >> 8);
        const __m512d x = _mm512_mask_i32gather_pd(_mm512_setzero_pd(), l0, _mm512_castsi512_si256(j), base, 8);
        const __m512d y = _mm512_mask_i32gather_pd(_mm512_setzero_pd(), l1, _mm512_extracti64x4_epi64(j, 1), base, 8);
        const __m512 xs = _mm512_castpd_ps(x), ys = _mm512_castpd_ps(y);
        _mm512_mask_storeu_ps(out + t, lm, _mm512_permutex2var_ps(xs, ev, ys));
        _mm512_mask_storeu_ps(out1 + t, lm, _mm512_permutex2var_ps(xs, od, ys));
    }
}

/* 32 words per step: the nonzero words of need & ~done as a mask, their indices compacted 16 at
 * a time (words has 32 entries of slack). */
T512 int sp_fk_todo16_avx512(const uint16_t *need, const uint16_t *done, int nw, int32_t *words) {
    const __m512i step = _mm512_set1_epi32(32);
    __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(16));
    int cnt = 0;
    for (int u = 0; u < nw; u += 32, lo = _mm512_add_epi32(lo, step), hi = _mm512_add_epi32(hi, step)) {
        const __mmask32 lm = nw - u >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << (nw - u)) - 1u);
        const __m512i a = _mm512_maskz_loadu_epi16(lm, need + u), b = _mm512_maskz_loadu_epi16(lm, done + u);
        const __mmask32 m = _mm512_test_epi16_mask(_mm512_andnot_si512(b, a), _mm512_andnot_si512(b, a));
        if (!m) continue;
        _mm512_storeu_si512((void *)(words + cnt), _mm512_maskz_compress_epi32((__mmask16)m, lo));
        cnt += __builtin_popcount((unsigned)(m & 0xFFFFu));
        _mm512_storeu_si512((void *)(words + cnt), _mm512_maskz_compress_epi32((__mmask16)(m >> 16), hi));
        cnt += __builtin_popcount((unsigned)(m >> 16));
    }
    return cnt;
}

/* 32 elements of a row per step, widened to 16 bits: the MSBs (a shift of k + 128), the squares
 * summed in pairs by madd into 32-bit lanes (a row's sums < 2^31: d * 16384), each row's lanes
 * reduced into 64-bit totals; lanes past d masked to zero in every sum. */
T512 void sp_fk_kmsb_avx512(const int8_t *ki, int n, int d, const unsigned char *valid, int b, uint8_t *msb,
                            int64_t s[3], int *kmax) {
    const __m512i c128 = _mm512_set1_epi16(128), topv = _mm512_set1_epi16((short)((1 << b) - 1));
    const __m128i sh = _mm_cvtsi32_si128(8 - b);
    int64_t s0 = 0, s1 = 0, s2 = 0;
    __m512i mx = _mm512_setzero_si512();
    for (int j = 0; j < n; j++) {
        const int8_t *kr = ki + (size_t)j * (size_t)d;
        uint8_t *mr = msb + (size_t)j * (size_t)d;
        const int ok = !valid || valid[j];
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0;
        for (int c = 0; c < d; c += 32) {
            const __mmask32 lm = d - c >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << (d - c)) - 1u);
            const __m512i k = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(lm, kr + c));
            const __m512i m = _mm512_srl_epi16(_mm512_add_epi16(k, c128), sh);
            _mm256_mask_storeu_epi8(mr + c, lm, _mm512_cvtepi16_epi8(m));
            if (!ok) continue;
            const __m512i mz = _mm512_maskz_mov_epi16(lm, m), t = _mm512_maskz_sub_epi16(lm, topv, m);
            a0 = _mm512_add_epi32(a0, _mm512_madd_epi16(k, k));
            a1 = _mm512_add_epi32(a1, _mm512_madd_epi16(mz, mz));
            a2 = _mm512_add_epi32(a2, _mm512_madd_epi16(t, t));
            mx = _mm512_max_epi16(mx, _mm512_abs_epi16(k));
        }
        if (!ok) continue;
        s0 += _mm512_reduce_add_epi32(a0), s1 += _mm512_reduce_add_epi32(a1), s2 += _mm512_reduce_add_epi32(a2);
    }
    /* the largest of the 32 16-bit lanes (each <= 128) */
    const __m512i m32 = _mm512_max_epi32(_mm512_and_si512(mx, _mm512_set1_epi32(0xFFFF)), _mm512_srli_epi32(mx, 16));
    s[0] = s0, s[1] = s1, s[2] = s2, *kmax = _mm512_reduce_max_epi32(m32);
}

/* 16 elements per step: max with -127, stored as bytes and as sign-extended ints. */
T512 void sp_fk_dac8_avx512(const int8_t *qi, int n, int d, int *qd, int8_t *qd8, int d8) {
    const __m128i lo = _mm_set1_epi8(-127);
    for (int i = 0; i < n; i++) {
        const int8_t *qr = qi + (size_t)i * (size_t)d;
        for (int c = 0; c < d; c += 16) {
            const __mmask16 lm = d - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (d - c)) - 1u);
            const __m128i v = _mm_max_epi8(_mm_maskz_loadu_epi8(lm, qr + c), lo);
            _mm_mask_storeu_epi8(qd8 + (size_t)i * (size_t)d8 + c, lm, v);
            _mm512_mask_storeu_epi32(qd + (size_t)i * (size_t)d + c, lm, _mm512_cvtepi8_epi32(v));
        }
    }
}

/* 32 elements per step widened to 16 bits: squares and plain and absolute values summed in
 * pairs by madd into 32-bit lanes (lanes past d load as 0), the -128s counted by a compare. */
T512 void sp_fk_dacsums8_avx512(const int8_t *qi, int d, int64_t s[4]) {
    const __m512i one = _mm512_set1_epi16(1), m128 = _mm512_set1_epi16(-128);
    __m512i a = _mm512_setzero_si512(), a2 = a, ab = a;
    int64_t n128 = 0;
    for (int c = 0; c < d; c += 32) {
        const __mmask32 lm = d - c >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << (d - c)) - 1u);
        const __m512i q = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(lm, qi + c));
        a = _mm512_add_epi32(a, _mm512_madd_epi16(q, one));
        a2 = _mm512_add_epi32(a2, _mm512_madd_epi16(q, q));
        ab = _mm512_add_epi32(ab, _mm512_madd_epi16(_mm512_abs_epi16(q), one));
        n128 += __builtin_popcount((unsigned)_mm512_mask_cmpeq_epi16_mask(lm, q, m128));
    }
    s[0] = _mm512_reduce_add_epi32(a), s[1] = _mm512_reduce_add_epi32(a2), s[2] = _mm512_reduce_add_epi32(ab);
    s[3] = n128;
}

/* 16 keys per step: gathered stamps and the slot's scores (at 4 j + r), the misses compacted in
 * registers. */
T512 int sp_fk_lookup4_avx512(const int32_t *list, int n, const int *stamp, int now, const float *sc4, int r,
                              float *out, int32_t *miss, int32_t *mpos) {
    const __m512i nowv = _mm512_set1_epi32(now), step = _mm512_set1_epi32(16);
    __m512i pos = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const float *base = sc4 + r;
    int nm = 0;
    for (int t = 0; t < n; t += 16, pos = _mm512_add_epi32(pos, step)) {
        __mmask16 lm = n - t >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - t)) - 1u);
        __m512i j = _mm512_maskz_loadu_epi32(lm, list + t);
        __m512i st = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), lm, j, stamp, 4);
        __mmask16 hit = _mm512_mask_cmpeq_epi32_mask(lm, st, nowv);
        _mm512_mask_storeu_ps(out + t, hit,
                              _mm512_mask_i32gather_ps(_mm512_setzero_ps(), hit, _mm512_slli_epi32(j, 2), base, 4));
        __mmask16 mm = lm & (__mmask16)~hit;
        _mm512_storeu_si512((void *)(miss + nm), _mm512_maskz_compress_epi32(mm, j));
        _mm512_storeu_si512((void *)(mpos + nm), _mm512_maskz_compress_epi32(mm, pos));
        nm += __builtin_popcount((unsigned)mm);
    }
    return nm;
}

#else
void sp_fk_dots4_avx512(const float *q, int ldq, int nr, const float *k, int ldk, int d, const int32_t *idx, int n,
                        float *sc4) {
    sp_fk_dots4_portable(q, ldq, nr, k, ldk, d, idx, n, sc4);
}
int sp_fk_lookup4_avx512(const int32_t *list, int n, const int *stamp, int now, const float *sc4, int r, float *out,
                         int32_t *miss, int32_t *mpos) {
    return sp_fk_lookup4_portable(list, n, stamp, now, sc4, r, out, miss, mpos);
}
void sp_fk_panel4_avx512(const float *q, int ldq, int nr, const float *kpan, int d, float *out) {
    sp_fk_panel4_portable(q, ldq, nr, kpan, d, out);
}
void sp_fk_panels4_avx512(const float *q, int ldq, int nr, const float *kpf, int d, const int32_t *plist, int np,
                          float *sc4) {
    sp_fk_panels4_portable(q, ldq, nr, kpf, d, plist, np, sc4);
}
int sp_fk_select_mask_avx512(const uint64_t *mask, int n, const unsigned char *kvalid, int32_t *out, uint16_t *bits) {
    return sp_fk_select_mask_portable(mask, n, kvalid, out, bits);
}
void sp_fk_gather_avx512(const float *S, const int32_t *idx, int n, float *out) { sp_fk_gather_portable(S, idx, n, out); }
void sp_fk_kmsb_avx512(const int8_t *ki, int n, int d, const unsigned char *valid, int b, uint8_t *msb, int64_t s[3],
                       int *kmax) {
    sp_fk_kmsb_portable(ki, n, d, valid, b, msb, s, kmax);
}
void sp_fk_dac8_avx512(const int8_t *qi, int n, int d, int *qd, int8_t *qd8, int d8) {
    sp_fk_dac8_portable(qi, n, d, qd, qd8, d8);
}
void sp_fk_dacsums8_avx512(const int8_t *qi, int d, int64_t s[4]) { sp_fk_dacsums8_portable(qi, d, s); }
void sp_fk_gather4_avx512(const float *sc4, int r, const int32_t *idx, int n, float *out) {
    sp_fk_gather4_portable(sc4, r, idx, n, out);
}
int sp_fk_todo16_avx512(const uint16_t *need, const uint16_t *done, int nw, int32_t *words) {
    return sp_fk_todo16_portable(need, done, nw, words);
}
void sp_fk_gather4x2_avx512(const float *sc4, int r, const int32_t *idx, int n, float *out, float *out1) {
    sp_fk_gather4x2_portable(sc4, r, idx, n, out, out1);
}
void sp_fk_dense_avx512(const sp_fk_dense_in *in, int32_t *amb, sp_fk_dense_out *out) {
    sp_fk_dense_portable(in, amb, out);
}
float sp_fk_max_avx512(const float *s, int n) { return sp_fk_max_portable(s, n); }
int sp_fk_threshold_avx512(const float *s, const int32_t *idx, int n, float lo, float hi, int32_t *kept, float *ksc) {
    return sp_fk_threshold_portable(s, idx, n, lo, hi, kept, ksc);
}
void sp_fk_softmax_wsum_avx512(const float *s, float qmul, const int32_t *idx, int n, const float *v, int ldv, int d,
                               float *p, float *out) {
    sp_fk_softmax_wsum_portable(s, qmul, idx, n, v, ldv, d, p, out);
}
void sp_fk_softmax_avx512(const float *s, float qmul, int n, float *p) { sp_fk_softmax_portable(s, qmul, n, p); }
void sp_fk_wsum4_avx512(const int32_t *kl, const float *pl, size_t ld, const float *v, int ldv, int d,
                        float *const out[4]) {
    sp_fk_wsum4_portable(kl, pl, ld, v, ldv, d, out);
}
int sp_fk_select_avx512(const int32_t *A, int n, int32_t tau, const unsigned char *kvalid, int32_t *out,
                        uint16_t *bits) {
    return sp_fk_select_portable(A, n, tau, kvalid, out, bits);
}
void sp_fk_dots_avx512(const float *q, const float *k, int ldk, int d, const int32_t *idx, int n, float *out) {
    sp_fk_dots_portable(q, k, ldk, d, idx, n, out);
}
#endif
