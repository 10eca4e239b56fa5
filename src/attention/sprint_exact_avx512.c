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
#include "attention/sprint_dots_avx512.h"

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
        else
            s = dots16_any(q, k, ldk, d, ix);
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
            SX_WSUM2_64(km, idx + t0, sbuf + t0, v, ldv, kept, nk, o0, o1, o2, o3, e0, e1, e2, e3);
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
