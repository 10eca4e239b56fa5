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
#include "attention/flash_tile_avx512.h"



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
    tile_wsum_4(t, P, any, alpha);
}
#else
void sp_flash_tile_avx512(sp_flash_tile *t) { sp_flash_tile_portable(t); }
#endif
