/* fast_kernels.c: portable versions of the fast operator's selection and score loops
 * (fast_kernels.h), and the dispatch. */
#include "functional/fast_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention/flash.h"
#include "functional/fn_internal.h"

int sp_fk_select_portable(const int32_t *A, int n, int32_t tau, const unsigned char *kvalid, int32_t *out,
                          uint16_t *bits) {
    int cnt = 0;
    for (int w = 0; w * 16 < n; w++) {
        unsigned m = 0;
        for (int u = 0; u < 16 && 16 * w + u < n; u++) {
            int j = 16 * w + u, keep = (A[j] >= tau) & (!kvalid || kvalid[j] != 0);
            out[cnt] = j;
            cnt += keep;
            m |= (unsigned)keep << u;
        }
        bits[w] = (uint16_t)m;
    }
    return cnt;
}

void sp_fk_dots_portable(const float *q, const float *k, int ldk, int d, const int32_t *idx, int n, float *out) {
    for (int t = 0; t < n; t++) {
        const float *kr = k + (size_t)idx[t] * (size_t)ldk;
        float s = 0.0f;
        for (int c = 0; c < d; c++) s += q[c] * kr[c];
        out[t] = s;
    }
}

sp_fk_select_fn sp_fk_select_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_select_avx512 : sp_fk_select_portable;
}

sp_fk_dots_fn sp_fk_dots_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_dots_avx512 : sp_fk_dots_portable;
}

/* p[t] = 2^(qmul s[t] - max) (the kernels' exp2 polynomial); returns sum p. */
static float fk_exp_weights(const float *s, float qmul, int n, float *p) {
    float mx = -INFINITY;
    for (int t = 0; t < n; t++) {
        p[t] = s[t] * qmul;
        mx = p[t] > mx ? p[t] : mx;
    }
    float sum = 0.0f;
    for (int t = 0; t < n; t++) sum += p[t] = sp_flash_exp2(p[t] - mx);
    return sum;
}

void sp_fk_softmax_wsum_portable(const float *s, float qmul, const int32_t *idx, int n, const float *v, int ldv, int d,
                                 float *p, float *out) {
    const float sum = fk_exp_weights(s, qmul, n, p);
    memset(out, 0, (size_t)d * sizeof *out);
    for (int t = 0; t < n; t++) {
        const float *vr = v + (size_t)idx[t] * (size_t)ldv;
        const float pt = p[t];
        for (int c = 0; c < d; c++) out[c] += pt * vr[c];
    }
    const float inv = 1.0f / sum;
    for (int c = 0; c < d; c++) out[c] *= inv;
}

sp_fk_softmax_wsum_fn sp_fk_softmax_wsum_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_softmax_wsum_avx512 : sp_fk_softmax_wsum_portable;
}

void sp_fk_softmax_portable(const float *s, float qmul, int n, float *p) {
    const float sum = fk_exp_weights(s, qmul, n, p);
    const float inv = 1.0f / sum;
    for (int t = 0; t < n; t++) p[t] *= inv;
}

sp_fk_softmax_fn sp_fk_softmax_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_softmax_avx512 : sp_fk_softmax_portable;
}

void sp_fk_wsum4_portable(const int32_t *kl, const float *pl, size_t ld, const float *v, int ldv, int d,
                          float *const out[4]) {
    for (int r = 0; r < 4; r++)
        if (out[r]) memset(out[r], 0, (size_t)d * sizeof *out[r]);
    size_t at[4] = {0, 0, 0, 0};
    for (;;) {
        int32_t m = INT32_MAX;
        for (int r = 0; r < 4; r++) m = kl[r * ld + at[r]] < m ? kl[r * ld + at[r]] : m;
        if (m == INT32_MAX) break;
        const float *vr = v + (size_t)m * (size_t)ldv;
        for (int r = 0; r < 4; r++) {
            if (kl[r * ld + at[r]] != m) continue;
            const float p = pl[r * ld + at[r]++];
            if (out[r])
                for (int c = 0; c < d; c++) out[r][c] += p * vr[c];
        }
    }
}

sp_fk_wsum4_fn sp_fk_wsum4_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_wsum4_avx512 : sp_fk_wsum4_portable;
}

int sp_fk_threshold_portable(const float *s, const int32_t *idx, int n, float lo, float hi, int32_t *kept, float *ksc) {
    int cnt = 0, amb = 0;
    for (int t = 0; t < n; t++) {
        kept[cnt] = idx[t];
        ksc[cnt] = s[t];
        cnt += s[t] >= hi;
        amb |= (s[t] >= lo) & (s[t] < hi);
    }
    return amb ? -1 : cnt;
}

sp_fk_threshold_fn sp_fk_threshold_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_threshold_avx512 : sp_fk_threshold_portable;
}

float sp_fk_max_portable(const float *s, int n) {
    float m = -INFINITY;
    for (int t = 0; t < n; t++) m = s[t] > m ? s[t] : m;
    return m;
}

sp_fk_max_fn sp_fk_max_for(sp_cpu_level level) { return level >= SP_CPU_AVX512 ? sp_fk_max_avx512 : sp_fk_max_portable; }


void sp_fk_dense_portable(const sp_fk_dense_in *in, int32_t *amb, sp_fk_dense_out *out) {
    memset(out, 0, sizeof *out);
    for (int j = 0; j < in->n; j++) {
        if (in->kv && !in->kv[j]) continue;
        const double x = in->scale * (double)in->S[j];
        if (in->want_pass) {
            int pass = x >= in->hi, fail = x < in->lo, keep = in->A[j] >= in->ti;
            if (!pass && !fail) {
                amb[out->n_amb++] = j;
            } else {
                out->n_pass += pass;
                out->n_fk += keep & !pass;
                out->n_fp += pass & !keep;
            }
        }
        if (in->want_mass) {
            double t = x - in->smax;
            t = t < -30.0 ? -60.0 : t;
            out->Z += sp_fn_mass_exp(t);
        }
        if (in->want_spread) {
            double y = x - in->smax;
            out->s1 += y, out->s2 += y * y, out->cnt++;
        }
    }
}

sp_fk_dense_fn sp_fk_dense_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_dense_avx512 : sp_fk_dense_portable;
}

void sp_fk_dots4_portable(const float *q, int ldq, int nr, const float *k, int ldk, int d, const int32_t *idx, int n,
                          float *sc4) {
    for (int t = 0; t < n; t++) {
        const float *kr = k + (size_t)idx[t] * (size_t)ldk;
        for (int r = 0; r < nr; r++) {
            const float *qr = q + (size_t)r * (size_t)ldq;
            float s = 0.0f;
            for (int c = 0; c < d; c++) s += qr[c] * kr[c];
            sc4[4 * (size_t)idx[t] + (size_t)r] = s;
        }
    }
}

int sp_fk_lookup4_portable(const int32_t *list, int n, const int *stamp, int now, const float *sc4, int r, float *out,
                           int32_t *miss, int32_t *mpos) {
    int nm = 0;
    for (int t = 0; t < n; t++) {
        int j = list[t];
        out[t] = sc4[4 * (size_t)j + (size_t)r];
        miss[nm] = j;
        mpos[nm] = t;
        nm += stamp[j] != now;
    }
    return nm;
}

sp_fk_dots4_fn sp_fk_dots4_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_dots4_avx512 : sp_fk_dots4_portable;
}
sp_fk_lookup4_fn sp_fk_lookup4_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_lookup4_avx512 : sp_fk_lookup4_portable;
}

void sp_fk_panel4_portable(const float *q, int ldq, int nr, const float *kpan, int d, float *out) {
    for (int r = 0; r < nr; r++) {
        const float *qr = q + (size_t)r * (size_t)ldq;
        for (int u = 0; u < 16; u++) {
            float s = 0.0f;
            for (int c = 0; c < d; c++) s += qr[c] * kpan[(size_t)c * 16 + (size_t)u];
            out[4 * u + r] = s;
        }
    }
}
sp_fk_panel4_fn sp_fk_panel4_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_panel4_avx512 : sp_fk_panel4_portable;
}
void sp_fk_panels4_portable(const float *q, int ldq, int nr, const float *kpf, int d, const int32_t *plist, int np,
                            float *sc4) {
    for (int t = 0; t < np; t++)
        sp_fk_panel4_portable(q, ldq, nr, kpf + (size_t)plist[t] * 16 * (size_t)d, d, sc4 + 64 * (size_t)plist[t]);
}
sp_fk_panels4_fn sp_fk_panels4_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_panels4_avx512 : sp_fk_panels4_portable;
}

int sp_fk_select_mask_portable(const uint64_t *mask, int n, const unsigned char *kvalid, int32_t *out, uint16_t *bits) {
    int cnt = 0;
    for (int w = 0; w * 16 < n; w++) {
        unsigned m = 0;
        for (int u = 0; u < 16 && 16 * w + u < n; u++) {
            int j = 16 * w + u, keep = (int)((mask[j / 64] >> (j % 64)) & 1u) & (!kvalid || kvalid[j] != 0);
            out[cnt] = j;
            cnt += keep;
            m |= (unsigned)keep << u;
        }
        bits[w] = (uint16_t)m;
    }
    return cnt;
}
sp_fk_select_mask_fn sp_fk_select_mask_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_select_mask_avx512 : sp_fk_select_mask_portable;
}

void sp_fk_gather_portable(const float *S, const int32_t *idx, int n, float *out) {
    for (int t = 0; t < n; t++) out[t] = S[idx[t]];
}
sp_fk_gather_fn sp_fk_gather_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_gather_avx512 : sp_fk_gather_portable;
}

void sp_fk_gather4_portable(const float *sc4, int r, const int32_t *idx, int n, float *out) {
    for (int t = 0; t < n; t++) out[t] = sc4[4 * (size_t)idx[t] + (size_t)r];
}
sp_fk_gather4_fn sp_fk_gather4_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_gather4_avx512 : sp_fk_gather4_portable;
}

int sp_fk_todo16_portable(const uint16_t *need, const uint16_t *done, int nw, int32_t *words) {
    int cnt = 0;
    for (int u = 0; u < nw; u++) {
        words[cnt] = u;
        cnt += (need[u] & ~done[u]) != 0;
    }
    return cnt;
}
sp_fk_todo16_fn sp_fk_todo16_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_todo16_avx512 : sp_fk_todo16_portable;
}

void sp_fk_gather4x2_portable(const float *sc4, int r, const int32_t *idx, int n, float *out, float *out1) {
    for (int t = 0; t < n; t++) {
        out[t] = sc4[4 * (size_t)idx[t] + (size_t)r];
        out1[t] = sc4[4 * (size_t)idx[t] + (size_t)r + 1];
    }
}
sp_fk_gather4x2_fn sp_fk_gather4x2_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_gather4x2_avx512 : sp_fk_gather4x2_portable;
}

void sp_fk_kmsb_portable(const int8_t *ki, int n, int d, const unsigned char *valid, int b, uint8_t *msb,
                         int64_t s[3], int *kmax) {
    const int top = (1 << b) - 1;
    int64_t s0 = 0, s1 = 0, s2 = 0;
    int mx = 0;
    for (int j = 0; j < n; j++) {
        const int ok = !valid || valid[j];
        for (int c = 0; c < d; c++) {
            const int k = ki[(size_t)j * (size_t)d + (size_t)c], m = (k + 128) >> (8 - b);
            msb[(size_t)j * (size_t)d + (size_t)c] = (uint8_t)m;
            if (!ok) continue;
            s0 += k * k, s1 += m * m, s2 += (top - m) * (top - m);
            mx = abs(k) > mx ? abs(k) : mx;
        }
    }
    s[0] = s0, s[1] = s1, s[2] = s2, *kmax = mx;
}
sp_fk_kmsb_fn sp_fk_kmsb_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_kmsb_avx512 : sp_fk_kmsb_portable;
}

void sp_fk_dac8_portable(const int8_t *qi, int n, int d, int *qd, int8_t *qd8, int d8) {
    for (int i = 0; i < n; i++)
        for (int c = 0; c < d; c++) {
            const int v = qi[(size_t)i * (size_t)d + (size_t)c] < -127 ? -127 : qi[(size_t)i * (size_t)d + (size_t)c];
            qd[(size_t)i * (size_t)d + (size_t)c] = v;
            qd8[(size_t)i * (size_t)d8 + (size_t)c] = (int8_t)v;
        }
}
sp_fk_dac8_fn sp_fk_dac8_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_dac8_avx512 : sp_fk_dac8_portable;
}

void sp_fk_dacsums8_portable(const int8_t *qi, int d, int64_t s[4]) {
    int64_t a = 0, a2 = 0, ab = 0, n128 = 0;
    for (int c = 0; c < d; c++) {
        const int q = qi[c];
        a += q, a2 += q * q, ab += abs(q), n128 += q == -128;
    }
    s[0] = a, s[1] = a2, s[2] = ab, s[3] = n128;
}
sp_fk_dacsums8_fn sp_fk_dacsums8_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_fk_dacsums8_avx512 : sp_fk_dacsums8_portable;
}
