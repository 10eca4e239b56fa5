/* flash_avx2.c: the flash-attention tile (flash.h) in AVX2 + FMA (needs d % 8 == 0). With 16
 * ymm registers the scores are computed one 16-key panel at a time (4 queries x 2 ymm) and
 * the weighted sum 16 output dims at a time. Tested against sp_flash_tile_portable. */
#include "attention/flash.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <float.h>
#include <math.h>

#define TAVX2 __attribute__((target("avx2,fma")))

TAVX2 static inline __m256 exp2_256(__m256 x) {
    __m256 ok = _mm256_cmp_ps(x, _mm256_set1_ps(-126.0f), _CMP_GE_OQ);
    x = _mm256_max_ps(x, _mm256_set1_ps(-126.0f));
    __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_sub_ps(x, n);
    __m256 p = _mm256_set1_ps(1.535336188319500e-4f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.339887440266574e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.618437357674640e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550332471162809e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.402264791363012e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931472028550421e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(ok, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

TAVX2 static inline float hmax256(__m256 v) {
    __m128 a = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    a = _mm_max_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

TAVX2 static inline float hsum256(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

TAVX2 void sp_flash_tile_avx2(sp_flash_tile *t) {
    const int d = t->d, n = t->nkc;
    float S[4][64] __attribute__((aligned(32)));
    for (int p = 0; p < 4; p++) {
        __m256 a[4][2];
        for (int r = 0; r < 4; r++) a[r][0] = a[r][1] = _mm256_setzero_ps();
        const float *kp = t->kpan[p];
        for (int c = 0; c < d; c++, kp += 16) {
            __m256 k0 = _mm256_loadu_ps(kp), k1 = _mm256_loadu_ps(kp + 8);
            for (int r = 0; r < 4; r++) {
                __m256 b = _mm256_broadcast_ss(t->q[r] + c);
                a[r][0] = _mm256_fmadd_ps(b, k0, a[r][0]);
                a[r][1] = _mm256_fmadd_ps(b, k1, a[r][1]);
            }
        }
        for (int r = 0; r < 4; r++) {
            _mm256_store_ps(&S[r][p * 16], a[r][0]);
            _mm256_store_ps(&S[r][p * 16 + 8], a[r][1]);
        }
    }
    float alpha[4];
    uint64_t any = 0; /* keys some row kept: the weighted sum skips the others (weights 0) */
    for (int r = 0; r < 4; r++) {
        int lim = t->lim[r] < n ? t->lim[r] : n;
        const float *bias = t->bias;
        const uint64_t allow = t->rmask ? t->rmask[r] : ~(uint64_t)0;
        float thr = t->thr[r] > -FLT_MAX ? t->thr[r] : -FLT_MAX;
        uint64_t kept = 0;
        for (int u = 0; u < 64; u++) {
            float x = S[r][u] + (bias ? bias[u] : 0.0f);
            x = u < lim && x >= thr && ((allow >> u) & 1) ? x : -INFINITY;
            kept |= (uint64_t)(x != -INFINITY) << u;
            S[r][u] = x;
        }
        t->kept[r] = kept;
        any |= kept;
        __m256 mx = _mm256_set1_ps(-INFINITY);
        for (int u = 0; u < 64; u += 8) mx = _mm256_max_ps(mx, _mm256_load_ps(&S[r][u]));
        float bm = hmax256(mx);
        float mold = t->m[r], mnew = bm > mold ? bm : mold;
        if (mnew == -INFINITY) {
            alpha[r] = 1.0f;
            for (int u = 0; u < 64; u++) S[r][u] = 0.0f;
            continue;
        }
        alpha[r] = mold == -INFINITY ? 0.0f : sp_flash_exp2(mold - mnew);
        __m256 mv = _mm256_set1_ps(mnew), sum = _mm256_setzero_ps();
        for (int u = 0; u < 64; u += 8) {
            __m256 e = exp2_256(_mm256_sub_ps(_mm256_load_ps(&S[r][u]), mv));
            sum = _mm256_add_ps(sum, e);
            _mm256_store_ps(&S[r][u], e);
        }
        t->m[r] = mnew;
        t->l[r] = t->l[r] * alpha[r] + hsum256(sum);
    }
    const size_t ldv = (size_t)t->ldv;
    for (int c0 = 0; c0 < d; c0 += 16) {
        int two = c0 + 16 <= d;
        __m256 acc[4][2];
        for (int r = 0; r < 4; r++) {
            __m256 a = _mm256_set1_ps(alpha[r]);
            const float *o = t->o + (size_t)r * (size_t)d + c0;
            acc[r][0] = _mm256_mul_ps(a, _mm256_loadu_ps(o));
            acc[r][1] = two ? _mm256_mul_ps(a, _mm256_loadu_ps(o + 8)) : _mm256_setzero_ps();
        }
        if (two) {
            for (uint64_t bits = any; bits; bits &= bits - 1) {
                const int u = __builtin_ctzll(bits);
                const float *vr = t->v + (size_t)(t->vidx ? t->vidx[u] : u) * ldv + c0;
                __m256 v0 = _mm256_loadu_ps(vr), v1 = _mm256_loadu_ps(vr + 8);
                for (int r = 0; r < 4; r++) {
                    __m256 b = _mm256_broadcast_ss(&S[r][u]);
                    acc[r][0] = _mm256_fmadd_ps(b, v0, acc[r][0]);
                    acc[r][1] = _mm256_fmadd_ps(b, v1, acc[r][1]);
                }
            }
        } else {
            for (uint64_t bits = any; bits; bits &= bits - 1) {
                const int u = __builtin_ctzll(bits);
                const float *vr = t->v + (size_t)(t->vidx ? t->vidx[u] : u) * ldv + c0;
                __m256 v0 = _mm256_loadu_ps(vr);
                for (int r = 0; r < 4; r++) acc[r][0] = _mm256_fmadd_ps(_mm256_broadcast_ss(&S[r][u]), v0, acc[r][0]);
            }
        }
        for (int r = 0; r < 4; r++) {
            float *o = t->o + (size_t)r * (size_t)d + c0;
            _mm256_storeu_ps(o, acc[r][0]);
            if (two) _mm256_storeu_ps(o + 8, acc[r][1]);
        }
    }
}
#else
void sp_flash_tile_avx2(sp_flash_tile *t) { sp_flash_tile_portable(t); }
#endif
