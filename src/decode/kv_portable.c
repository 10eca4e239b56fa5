/* kv_portable.c: the portable C kernels of a decode step (see kv_kernels.h), the reference the
 * AVX2 and AVX-512 kernels are tested against, and the fp16/bf16 conversions. */
#include <math.h>
#include <string.h>

#include "decode/kv_kernels.h"

uint16_t sp_f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float sp_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

uint16_t sp_f32_to_f16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);      /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);     /* overflow (>= 65520) -> inf */
    if (a < 0x38800000u) {                                       /* subnormal half or zero */
        float f;
        memcpy(&f, &a, 4);
        /* f * 2^24 rounded to nearest even, as an integer count of 2^-24 units */
        float r = nearbyintf(f * 16777216.0f);
        return (uint16_t)(sign | (uint32_t)r);
    }
    uint32_t mant = a & 0x7fffffu, exp = (a >> 23) - 127 + 15;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* carries into the exponent correctly */
    return (uint16_t)(sign | h);
}

float sp_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
    if (e == 0) {
        float f = ldexpf((float)m, -24);
        return sign ? -f : f;
    }
    if (e == 31) u = sign | 0x7f800000u | (m << 13);
    else u = sign | ((e - 15 + 127) << 23) | (m << 13);
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* Element c of row r of a (rows, d) matrix in type t, as fp32. */
static inline float row_elem(const void *M, sp_kv_dtype t, int d, int r, int c) {
    size_t i = (size_t)r * (size_t)d + (size_t)c;
    switch (t) {
    case SP_KV_F16: return sp_f16_to_f32(((const uint16_t *)M)[i]);
    case SP_KV_BF16: return sp_bf16_to_f32(((const uint16_t *)M)[i]);
    default: return ((const float *)M)[i];
    }
}

static void screen_portable(const uint8_t *msb, const float *ks, int nb, int d, const int8_t *q8, const float *coef,
                            const int32_t *qsum, int g, float *a, int lda) {
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = msb + (size_t)b * 8 * (size_t)d;
        for (int h = 0; h < g; h++) {
            const int8_t *q = q8 + (size_t)h * d;
            for (int r = 0; r < SP_KV_BLOCK; r++) {
                int32_t D = 0;
                for (int p = 0; p < d / 8; p++)
                    for (int j = 0; j < 4; j++) {
                        uint8_t byte = blk[64 * p + 4 * r + j];
                        D += (int32_t)(byte & 15) * q[8 * p + j] + (int32_t)(byte >> 4) * q[8 * p + 4 + j];
                    }
                int jj = b * SP_KV_BLOCK + r;
                a[(size_t)h * lda + jj] = coef[h] * ks[jj] * (float)(16 * D - 120 * qsum[h]);
            }
        }
    }
}

static int select_portable(const float *a, int lda, int n, int g, const float *thr, int j0, int32_t *idx,
                           int32_t *bits) {
    int k = 0;
    for (int j = 0; j < n; j++) {
        int32_t b = 0;
        for (int h = 0; h < g; h++)
            if (a[(size_t)h * lda + j] >= thr[h]) b |= 1 << h;
        if (b) {
            idx[k] = j0 + j;
            bits[k++] = b;
        }
    }
    return k;
}

static void dots_portable(const void *K, const void *Vpf, sp_kv_dtype t, int d, const int32_t *idx, int n, const float *q, int g,
                          float scale, float *s, int lds) {
    for (int i = 0; i < n; i++)
        for (int h = 0; h < g; h++) {
            float acc = 0.0f;
            for (int c = 0; c < d; c++) acc += q[(size_t)h * d + c] * row_elem(K, t, d, idx[i], c);
            s[(size_t)h * lds + i] = scale * acc;
        }
}

static float maxf_portable(const float *s, int n) {
    float m = -INFINITY;
    for (int i = 0; i < n; i++)
        if (s[i] > m) m = s[i];
    return m;
}

/* exp(x) for x <= 0: the Cephes-style polynomial of the fast dense operator (attention.c),
 * relative error ~2e-7; 0 below -87 so that masked (-inf) scores drop out exactly. */
static inline float exp_neg(float x) {
    if (!(x >= -87.0f)) return 0.0f;
    int32_t ni = (int32_t)(x * 1.44269504088896341f - 0.5f);
    float n = (float)ni;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } u;
    u.i = (ni + 127) << 23;
    return p * u.f;
}

static float expsum_portable(float *s, int n, float m) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        s[i] = exp_neg(s[i] - m);
        sum += s[i];
    }
    return sum;
}

static void wsum_portable(const void *V, sp_kv_dtype t, int d, const int32_t *idx, int n, const float *w, int ldw,
                          int g, float *acc) {
    for (int i = 0; i < n; i++)
        for (int h = 0; h < g; h++) {
            float wi = w[(size_t)h * ldw + i];
            if (wi == 0.0f) continue;
            for (int c = 0; c < d; c++) acc[(size_t)h * d + c] += wi * row_elem(V, t, d, idx[i], c);
        }
}

const sp_kv_kernels sp_kv_kernels_portable = {
    .name = "portable",
    .screen = screen_portable,
    .select = select_portable,
    .dots = dots_portable,
    .maxf = maxf_portable,
    .expsum = expsum_portable,
    .wsum = wsum_portable,
};
