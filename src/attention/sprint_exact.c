/* sprint_exact.c: the portable digital stage of one query (sprint_exact.h). */
#include "attention/sprint_exact.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "attention/flash.h"

int sp_sx_chunk_portable(const float *q, const float *k, int ldk, const float *v, int ldv, int d, const int32_t *idx,
                         int n, float thr, float *m, float *l, float *acc, float *sbuf, int32_t *kept) {
    const float th = thr > -FLT_MAX ? thr : -FLT_MAX;
    float cm = -INFINITY;
    int nk = 0;
    for (int t = 0; t < n; t++) {
        const float *kr = k + (size_t)idx[t] * (size_t)ldk;
        float s = 0.0f;
        for (int c = 0; c < d; c++) s += q[c] * kr[c];
        if (s >= th) {
            sbuf[nk] = s;
            kept[nk++] = idx[t];
            cm = s > cm ? s : cm;
        }
    }
    if (nk == 0) return 0;
    if (cm > *m) { /* rescale what was summed under the old max */
        float r = *m == -INFINITY ? 0.0f : sp_flash_exp2(*m - cm);
        for (int c = 0; c < d; c++) acc[c] *= r;
        *l *= r;
        *m = cm;
    }
    float sum = 0.0f;
    for (int t = 0; t < nk; t++) {
        float p = sp_flash_exp2(sbuf[t] - *m);
        const float *vr = v + (size_t)kept[t] * (size_t)ldv;
        for (int c = 0; c < d; c++) acc[c] += p * vr[c];
        sum += p;
    }
    *l += sum;
    return nk;
}

sp_sx_chunk_fn sp_sx_chunk_for(sp_cpu_level level, int d) {
    if (level >= SP_CPU_AVX512 && d % 16 == 0) return sp_sx_chunk_avx512;
    return sp_sx_chunk_portable;
}

int sp_sx_bits_portable(const uint64_t *m, int nw, int32_t base, int32_t *out) {
    int n = 0;
    for (int u = 0; u < nw; u++)
        for (uint64_t bits = m[u]; bits; bits &= bits - 1) out[n++] = base + 64 * u + __builtin_ctzll(bits);
    return n;
}

/* The group gather through one row's bits function (inlined with bits a constant). */
static inline void gather_group(sp_sx_bits_fn bits, const uint64_t m[4], int32_t base, int32_t *const out[4],
                                int n[4]) {
    for (int r = 0; r < 4; r++)
        if (m[r]) n[r] += bits(&m[r], 1, base, out[r] + n[r]);
}

void sp_sx_gather_group_portable(const uint64_t m[4], int32_t base, int32_t *const out[4], int n[4]) {
    gather_group(sp_sx_bits_portable, m, base, out, n);
}

void sp_sx_gather_group_avx512(const uint64_t m[4], int32_t base, int32_t *const out[4], int n[4]) {
    gather_group(sp_sx_bits_avx512, m, base, out, n);
}

sp_sx_gather_fn sp_sx_gather_for(sp_cpu_level level) {
    if (level < SP_CPU_AVX512) return sp_sx_gather_group_portable;
    return sp_cpu_has_vbmi2() ? sp_sx_gather_group_vbmi2 : sp_sx_gather_group_avx512;
}

/* ---- the fixed-reference steps (sprint_exact.h, sprint_fixed_avx512.c): plain loops ---- */

int sp_sx_chunk_fixed_portable(const float *q, const float *k, int ldk, const float *v, int ldv, int d,
                               const int32_t *idx, int n, float thr, float *m, float *l, float *acc, float *sbuf,
                               int32_t *kept) {
    int nk = 0;
    float sum = 0.0f;
    for (int t = 0; t < n; t++) {
        const float *kr = k + (size_t)idx[t] * (size_t)ldk;
        float s = 0.0f;
        for (int c = 0; c < d; c++) s += q[c] * kr[c];
        if (!(s >= thr)) continue;
        const float p = exp2f(s - *m);
        const float *vr = v + (size_t)idx[t] * (size_t)ldv;
        for (int c = 0; c < d; c++) acc[c] += p * vr[c];
        sum += p;
        sbuf[nk] = p;
        kept[nk++] = idx[t];
    }
    *l += sum;
    return nk;
}

void sp_sx_tile_fixed_portable(sp_flash_tile *t) {
    const int d = t->d;
    for (int r = 0; r < 4; r++) {
        const int lim = t->lim[r] < t->nkc ? t->lim[r] : t->nkc;
        uint64_t kept = 0;
        for (int u = 0; u < lim; u++) {
            if (t->rmask && !((t->rmask[r] >> u) & 1)) continue;
            const float *kp = t->kpan[u / 16] + u % 16;
            float s = 0.0f;
            for (int c = 0; c < d; c++) s += t->q[r][c] * kp[(size_t)c * 16];
            if (!(s >= t->thr[r])) continue;
            const float p = exp2f(s - t->m[r]);
            const float *vr = t->v + (size_t)(t->vidx ? t->vidx[u] : u) * (size_t)t->ldv;
            for (int c = 0; c < d; c++) t->o[(size_t)r * (size_t)d + (size_t)c] += p * vr[c];
            t->l[r] += p;
            kept |= (uint64_t)1 << u;
        }
        t->kept[r] = kept;
    }
}
