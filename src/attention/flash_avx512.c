/* flash_avx512.c: the flash-attention tile (flash.h) in AVX-512 F (needs d % 16 == 0).
 * Scores of 4 queries x 64 keys live in 16 zmm registers (4 panel loads and 4 broadcasts per
 * 16 FMAs); the weighted sum of V keeps 4 queries x 64 output dims in 16 zmm registers.
 * Tested against sp_flash_tile_portable (tests/test_cpu_kernels.c). */
#include "attention/flash.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <float.h>
#include <math.h>

#include "attention/exp2_avx512.h"



T512 void sp_flash_tile_avx512(sp_flash_tile *t) {
    const int d = t->d, n = t->nkc;
    __m512 s[4][4];
    tile_scores_4x4(t->q, t->kpan, d, s);
    float P[4][64] __attribute__((aligned(64)));
    float alpha[4];
    uint64_t any = 0; /* keys some row kept: the weighted sum skips the others (weights 0) */
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    #pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
        int lim = t->lim[r] < n ? t->lim[r] : n;
        __m512 mx = ninf;
        const float *bias = t->bias;
        const uint64_t allow = t->rmask ? t->rmask[r] : ~(uint64_t)0;
        const __m512 thr = _mm512_set1_ps(t->thr[r] > -FLT_MAX ? t->thr[r] : -FLT_MAX);
        uint64_t kept = 0;
        #pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            __m512 x = s[r][p];
            if (bias) x = _mm512_add_ps(x, _mm512_loadu_ps(bias + p * 16));
            __mmask16 km = lim_mask(lim, p) & (__mmask16)(allow >> (16 * p)) & _mm512_cmp_ps_mask(x, thr, _CMP_GE_OQ);
            x = _mm512_mask_blend_ps(km, ninf, x);
            kept |= (uint64_t)km << (16 * p);
            s[r][p] = x;
            mx = _mm512_max_ps(mx, x);
        }
        t->kept[r] = kept;
        any |= kept;
        float bm = _mm512_reduce_max_ps(mx);
        float mold = t->m[r], mnew = bm > mold ? bm : mold;
        if (mnew == -INFINITY) {
            alpha[r] = 1.0f;
            #pragma GCC unroll 4
            for (int p = 0; p < 4; p++) _mm512_store_ps(&P[r][p * 16], _mm512_setzero_ps());
            continue;
        }
        alpha[r] = mold == -INFINITY ? 0.0f : sp_flash_exp2(mold - mnew);
        __m512 mv = _mm512_set1_ps(mnew), sum = _mm512_setzero_ps();
        #pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            __m512 e = exp2_512(_mm512_sub_ps(s[r][p], mv));
            sum = _mm512_add_ps(sum, e);
            _mm512_store_ps(&P[r][p * 16], e);
        }
        t->m[r] = mnew;
        t->l[r] = t->l[r] * alpha[r] + _mm512_reduce_add_ps(sum);
    }
    const size_t ldv = (size_t)t->ldv;
    int c0 = 0;
    for (; c0 + 64 <= d; c0 += 64) {
        /* 16 named accumulators (an array indexed in a loop would live on the stack) */
        float *o0 = t->o + c0, *o1 = o0 + d, *o2 = o1 + d, *o3 = o2 + d;
        __m512 a0 = _mm512_set1_ps(alpha[0]), a1 = _mm512_set1_ps(alpha[1]);
        __m512 a2 = _mm512_set1_ps(alpha[2]), a3 = _mm512_set1_ps(alpha[3]);
#define LD4(R) __m512 c##R##0 = _mm512_mul_ps(a##R, _mm512_loadu_ps(o##R)),          \
                      c##R##1 = _mm512_mul_ps(a##R, _mm512_loadu_ps(o##R + 16)),     \
                      c##R##2 = _mm512_mul_ps(a##R, _mm512_loadu_ps(o##R + 32)),     \
                      c##R##3 = _mm512_mul_ps(a##R, _mm512_loadu_ps(o##R + 48))
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
            acc[r] = _mm512_mul_ps(_mm512_set1_ps(alpha[r]), _mm512_loadu_ps(t->o + (size_t)r * (size_t)d + c0));
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
#else
void sp_flash_tile_avx512(sp_flash_tile *t) { sp_flash_tile_portable(t); }
#endif
