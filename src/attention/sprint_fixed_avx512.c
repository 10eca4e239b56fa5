/* sprint_fixed_avx512.c: the SPRINT kernel's two digital-stage steps (the dense tile of
 * flash.h and the gathered chunk of sprint_exact.h) with a fixed softmax reference instead of
 * a running maximum. Under the fixed threshold policy every kept score s satisfies s >= thr,
 * and sprint_cpu.c proves before the call that no score exceeds thr + E with E small enough
 * for 2^E, summed over every key and times |v|, to stay inside fp32 (fixed_ref_ok). The
 * weights are then 2^(s - thr) in [1, 2^E]: no running max, no rescale of the accumulators,
 * no max reductions, and exp2 needs no underflow clamp. The softmax is the same function of
 * the same kept keys (softmax is invariant to the reference); only float rounding differs
 * from the online steps. The dense flash kernel cannot do this: it has no lower bound on the
 * scores it keeps, so a fixed reference could underflow every weight of a row.
 * The gathered scores are those of the online steps (sprint_dots_avx512.h).
 * Tested against the portable fixed chunk, the online steps and the double reference
 * (tests/test_cpu_sprint.c). */
#include "attention/sprint_exact.h"

#include "attention/flash.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "attention/exp2_avx512.h"
#include "attention/flash_tile_avx512.h"
#include "attention/sprint_dots_avx512.h"



/* The tile of flash.h (4 rows x 4 packed K panels, V rows by t->vidx, row masks t->rmask, row
 * thresholds t->thr) with t->m[r] a fixed reference that is not changed: t->l[r] += sum of
 * 2^(s - m) and t->o += 2^(s - m) v over the kept keys. No t->bias (the SPRINT kernel applies
 * padding through the masks). d % 16 == 0. */
/* tile_scores_4x4 (flash_tile_avx512.h) for the first np panels only, the same FMA steps, so
 * the same scores; s[r][p] for p >= np zeroed, and masked off by the rows' limits
 * (lim = min(lim, nkc)). The SPRINT kernel's last tile of a query group holds 1-3 queued panels
 * (sprint_cpu.c sx_tile), whose other panels every row masks (lim = 16 np): their scores were
 * computed and thrown away. */
#define TS_STEP(P)                                                                                \
    do {                                                                                          \
        const __m512 k_ = _mm512_loadu_ps(t->kpan[P] + (size_t)c * 16);                          \
        s[0][P] = _mm512_fmadd_ps(b0, k_, s[0][P]), s[1][P] = _mm512_fmadd_ps(b1, k_, s[1][P]);   \
        s[2][P] = _mm512_fmadd_ps(b2, k_, s[2][P]), s[3][P] = _mm512_fmadd_ps(b3, k_, s[3][P]);   \
    } while (0)
T512 __attribute__((always_inline)) static inline void tile_scores_4xp(const sp_flash_tile *t, int np,
                                                                      __m512 s[4][4]) {
    const float *q0 = t->q[0], *q1 = t->q[1], *q2 = t->q[2], *q3 = t->q[3];
    #pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        #pragma GCC unroll 4
        for (int p = 0; p < 4; p++) s[r][p] = _mm512_setzero_ps(); /* panels >= np: masked by the caller */
    for (int c = 0; c < t->d; c++) {
        const __m512 b0 = _mm512_set1_ps(q0[c]), b1 = _mm512_set1_ps(q1[c]);
        const __m512 b2 = _mm512_set1_ps(q2[c]), b3 = _mm512_set1_ps(q3[c]);
        TS_STEP(0);
        if (np > 1) TS_STEP(1);
        if (np > 2) TS_STEP(2);
    }
}
#undef TS_STEP

T512 void sp_sx_tile_fixed_avx512(sp_flash_tile *t) {
    const int d = t->d, n = t->nkc;
    __m512 s[4][4];
    if (n > 48) tile_scores_4x4(t->q, t->kpan, d, s);
    else if (n > 32) tile_scores_4xp(t, 3, s);
    else if (n > 16) tile_scores_4xp(t, 2, s);
    else tile_scores_4xp(t, 1, s);
    float P[4][64] __attribute__((aligned(64)));
    uint64_t any = 0; /* keys some row kept: the weighted sum skips the others */
    #pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
        const int lim = t->lim[r] < n ? t->lim[r] : n;
        const uint64_t allow = t->rmask ? t->rmask[r] : ~(uint64_t)0;
        const __m512 thr = _mm512_set1_ps(t->thr[r]), mv = _mm512_set1_ps(t->m[r]);
        __m512 sum = _mm512_setzero_ps();
        uint64_t kept = 0;
        #pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            __mmask16 km = lim_mask(lim, p) & (__mmask16)(allow >> (16 * p)) &
                           _mm512_cmp_ps_mask(s[r][p], thr, _CMP_GE_OQ);
            __m512 e = _mm512_maskz_mov_ps(km, exp2_pos(_mm512_sub_ps(s[r][p], mv)));
            sum = _mm512_add_ps(sum, e);
            _mm512_store_ps(&P[r][p * 16], e);
            kept |= (uint64_t)km << (16 * p);
        }
        t->kept[r] = kept;
        any |= kept;
        if (kept) t->l[r] += _mm512_reduce_add_ps(sum);
    }
    if (!any) return;
    tile_wsum_4(t, P, any, NULL);
}

/* The chunk step of sprint_exact.h with *m a fixed reference (not changed): scores, the
 * threshold, the weights 2^(s - *m) and the weighted sum of V per 16 survivors. At d = 64 the
 * loop is software-pipelined: the next 16 survivors' scores are issued before this group's
 * weighted sum, so the out-of-order window holds independent work while the weights wait on
 * the score tree and exp2 (a 16-key group's chain is ~80 cycles; without the overlap the step
 * ran at ~11 cycles per survivor in L1, docs/RESULTS.md part 9z.t). Each kept key's weight is
 * broadcast from the register (vpermps): a scalar reload of a just-stored vector waits for the
 * store. The keys, weights and summation order are those of the plain loop (o and e chains
 * alternating over the kept keys in order), so the bits do not depend on the pipelining. */
T512 static inline void fixed_group_pad(const int32_t *idx, int n, int t0, int32_t pad[16], const int32_t **ix) {
    const int mm = n - t0;
    for (int i = 0; i < 16; i++) pad[i] = i < mm ? idx[t0 + i] : idx[t0];
    *ix = pad;
}
T512 static inline __attribute__((always_inline)) int chunk_fixed(const float *q, const float *k, int ldk,
                                                                  const float *v, int ldv, int d, const int32_t *idx,
                                                                  int n, float thr, float *m, float *l, float *acc,
                                                                  float *sbuf, int32_t *kept, const int pipelined) {
    const __m512 th = _mm512_set1_ps(thr), mv = _mm512_set1_ps(*m);
    __m512 sum = _mm512_setzero_ps();
    int nk = 0;
    if (n <= 0) return 0;
    if (d == 64) {
        const __m512 q0 = _mm512_loadu_ps(q), q1 = _mm512_loadu_ps(q + 16);
        const __m512 q2 = _mm512_loadu_ps(q + 32), q3 = _mm512_loadu_ps(q + 48);
        __m512 o0 = _mm512_loadu_ps(acc), o1 = _mm512_loadu_ps(acc + 16), o2 = _mm512_loadu_ps(acc + 32),
               o3 = _mm512_loadu_ps(acc + 48);
        __m512 e0 = _mm512_setzero_ps(), e1 = e0, e2 = e0, e3 = e0;
        int32_t pad[2][16]; /* partial groups: the first key repeated (masked out) */
        const int32_t *ix = idx;
        if (n < 16) fixed_group_pad(idx, n, 0, pad[0], &ix);
        __m512 s = dots16_64(q0, q1, q2, q3, k, (size_t)ldk, ix);
        for (int t0 = 0; t0 < n; t0 += 16) {
            const int mm = n - t0 < 16 ? n - t0 : 16;
            const unsigned km0 = _mm512_cmp_ps_mask(s, th, _CMP_GE_OQ) & ((1u << mm) - 1u);
            const __m512 p = _mm512_maskz_mov_ps((__mmask16)km0, exp2_pos(_mm512_sub_ps(s, mv)));
            const int32_t *cur = ix;
            if (pipelined && t0 + 16 < n) { /* the next group's scores, issued before this group's sum */
                ix = idx + t0 + 16;
                if (n - t0 - 16 < 16) fixed_group_pad(idx, n, t0 + 16, pad[1], &ix);
                s = dots16_64(q0, q1, q2, q3, k, (size_t)ldk, ix);
            }
            sum = _mm512_add_ps(sum, p);
            /* kept key a's weight (lane a of p) times its V row into one accumulator chain */
#define KEY_FMA(A0, A1, A2, A3)                                                                  \
    do {                                                                                         \
        const int a = __builtin_ctz(km);                                                         \
        km &= km - 1;                                                                            \
        const float *vr = v + (size_t)(uint32_t)cur[a] * (size_t)ldv;                            \
        const __m512 pa = _mm512_permutexvar_ps(_mm512_set1_epi32(a), p);                        \
        kept[nk++] = cur[a];                                                                     \
        A0 = _mm512_fmadd_ps(pa, _mm512_loadu_ps(vr), A0);                                       \
        A1 = _mm512_fmadd_ps(pa, _mm512_loadu_ps(vr + 16), A1);                                  \
        A2 = _mm512_fmadd_ps(pa, _mm512_loadu_ps(vr + 32), A2);                                  \
        A3 = _mm512_fmadd_ps(pa, _mm512_loadu_ps(vr + 48), A3);                                  \
    } while (0)
            for (unsigned km = km0; km;) { /* alternately into the o and e chains */
                KEY_FMA(o0, o1, o2, o3);
                if (!km) break;
                KEY_FMA(e0, e1, e2, e3);
            }
#undef KEY_FMA
            if (!pipelined && t0 + 16 < n) { /* the serial order (the tests' reference) */
                ix = idx + t0 + 16;
                if (n - t0 - 16 < 16) fixed_group_pad(idx, n, t0 + 16, pad[1], &ix);
                s = dots16_64(q0, q1, q2, q3, k, (size_t)ldk, ix);
            }
        }
        _mm512_storeu_ps(acc, _mm512_add_ps(o0, e0));
        _mm512_storeu_ps(acc + 16, _mm512_add_ps(o1, e1));
        _mm512_storeu_ps(acc + 32, _mm512_add_ps(o2, e2));
        _mm512_storeu_ps(acc + 48, _mm512_add_ps(o3, e3));
        if (nk) *l += _mm512_reduce_add_ps(sum);
        return nk;
    }
    for (int t0 = 0; t0 < n; t0 += 16) {
        const int mm = n - t0 < 16 ? n - t0 : 16;
        const int32_t *ix = idx + t0;
        int32_t pad[16];
        if (mm < 16) fixed_group_pad(idx, n, t0, pad, &ix);
        const __m512 s = dots16_any(q, k, ldk, d, ix);
        unsigned km = _mm512_cmp_ps_mask(s, th, _CMP_GE_OQ) & ((1u << mm) - 1u);
        if (!km) continue;
        const __m512 p = _mm512_maskz_mov_ps((__mmask16)km, exp2_pos(_mm512_sub_ps(s, mv)));
        sum = _mm512_add_ps(sum, p);
        _mm512_storeu_ps(sbuf, p);
        for (; km; km &= km - 1) {
            int a = __builtin_ctz(km);
            const float *vr = v + (size_t)(uint32_t)ix[a] * (size_t)ldv;
            __m512 pa = _mm512_set1_ps(sbuf[a]);
            kept[nk++] = ix[a];
            for (int c = 0; c < d; c += 16)
                _mm512_storeu_ps(acc + c, _mm512_fmadd_ps(pa, _mm512_loadu_ps(vr + c), _mm512_loadu_ps(acc + c)));
        }
    }
    if (nk) *l += _mm512_reduce_add_ps(sum);
    return nk;
}
T512 int sp_sx_chunk_fixed_avx512(const float *q, const float *k, int ldk, const float *v, int ldv, int d,
                                  const int32_t *idx, int n, float thr, float *m, float *l, float *acc, float *sbuf,
                                  int32_t *kept) {
    return chunk_fixed(q, k, ldk, v, ldv, d, idx, n, thr, m, l, acc, sbuf, kept, 1);
}
T512 int sp_sx_chunk_fixed_avx512_serial(const float *q, const float *k, int ldk, const float *v, int ldv, int d,
                                         const int32_t *idx, int n, float thr, float *m, float *l, float *acc,
                                         float *sbuf, int32_t *kept) {
    return chunk_fixed(q, k, ldk, v, ldv, d, idx, n, thr, m, l, acc, sbuf, kept, 0);
}
#else
void sp_sx_tile_fixed_avx512(sp_flash_tile *t) { sp_sx_tile_fixed_portable(t); }
int sp_sx_chunk_fixed_avx512_serial(const float *q, const float *k, int ldk, const float *v, int ldv, int d,
                                    const int32_t *idx, int n, float thr, float *m, float *l, float *acc, float *sbuf,
                                    int32_t *kept) {
    return sp_sx_chunk_fixed_portable(q, k, ldk, v, ldv, d, idx, n, thr, m, l, acc, sbuf, kept);
}
int sp_sx_chunk_fixed_avx512(const float *q, const float *k, int ldk, const float *v, int ldv, int d,
                             const int32_t *idx, int n, float thr, float *m, float *l, float *acc, float *sbuf,
                             int32_t *kept) {
    return sp_sx_chunk_fixed_portable(q, k, ldk, v, ldv, d, idx, n, thr, m, l, acc, sbuf, kept);
}
#endif
