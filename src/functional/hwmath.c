/* hwmath.c: the digital recompute datapath of paper Fig. 7 (sec. 1.6-1.8): 8b x 4b = 12-bit
 * products in 16-bit adder trees, a split-LUT exponent (Fig. 7c "e^x MSB" x "e^x LSB", 17-bit
 * product), a 16-bit denominator accumulator, 8-bit probabilities and 8b x 8b products summed
 * in a 16-bit V accumulator. Overflow saturates (counted); rounding is to nearest. */
#include <math.h>
#include <stdlib.h>

#include "fn_internal.h"

static int32_t sat16(int64_t v, int *sat) {
    if (v > 32767) {
        *sat = 1;
        return 32767;
    }
    if (v < -32768) {
        *sat = 1;
        return -32768;
    }
    return (int32_t)v;
}

int32_t sp_hw_score(const int8_t *qi, const int8_t *ki, int d, int b, int *saturated) {
    int64_t msb = 0, lsb = 0, qsum = 0;
    for (int c = 0; c < d; c++) {
        msb += (int64_t)qi[c] * sp_key_msb(ki[c], b); /* 8b signed x b-bit unsigned */
        lsb += (int64_t)qi[c] * sp_key_lsb(ki[c], b); /* 8b signed x (8-b)-bit unsigned */
        qsum += qi[c];
    }
    int sat = 0;
    int32_t m = sat16(msb, &sat), l = sat16(lsb, &sat);
    if (saturated) *saturated = sat;
    return (int32_t)((int64_t)m * (1 << (8 - b)) + l - 128 * qsum); /* m << (8-b), written as a product for negative m */
}

int sp_hw_softmax_wsum(int n, const int32_t *z, const double *logit_scale, const int8_t *const *vi_rows, int d,
                       double v_scale, int frac_bits, float *out) {
    SP_ASSERT(frac_bits >= 1 && frac_bits <= 10); /* lut_lo holds 2^10 entries */
    int sats = 0;
    if (n == 0) {
        for (int c = 0; c < d; c++) out[c] = 0.0f;
        return 0;
    }
    /* LUTs: 16 entries for the integer part, 2^F for the fraction, 9-bit values. */
    int lut_hi[16], lut_lo[1024];
    for (int i = 0; i < 16; i++) lut_hi[i] = (int)lround(256.0 * exp(-(double)i));
    int nf = 1 << frac_bits;
    for (int f = 0; f < nf; f++) lut_lo[f] = (int)lround(256.0 * exp(-(double)f / nf));
    double mx = -INFINITY;
    for (int j = 0; j < n; j++) {
        double x = logit_scale[j] * (double)z[j];
        if (x > mx) mx = x;
    }
    int32_t e_small[256];
    int32_t *e = n <= 256 ? e_small : sp_xmalloc((size_t)n, sizeof *e);
    int64_t D = 0;
    for (int j = 0; j < n; j++) {
        double t = round((mx - logit_scale[j] * (double)z[j]) * nf);
        int64_t ti = (int64_t)t;
        int64_t hi = ti >> frac_bits, lo = ti & (nf - 1);
        e[j] = hi < 16 ? lut_hi[hi] * lut_lo[lo] : 0; /* <= 65536: 17 bits */
        D += e[j] >> 8;
        if (D > 65535) {
            D = 65535;
            sats++;
        }
    }
    SP_ASSERT(D > 0); /* the max key has e = 65536 */
    int64_t acc[512];
    int64_t *a = d <= 512 ? acc : sp_xmalloc((size_t)d, sizeof *a);
    for (int c = 0; c < d; c++) a[c] = 0;
    for (int j = 0; j < n; j++) {
        int64_t p = (2 * (int64_t)e[j] + D) / (2 * D); /* round(e / D), units 2^-8 */
        if (p > 255) p = 255;
        if (p == 0) continue;
        for (int c = 0; c < d; c++) {
            a[c] += p * vi_rows[j][c];
            if (a[c] > 32767) {
                a[c] = 32767;
                sats++;
            } else if (a[c] < -32768) {
                a[c] = -32768;
                sats++;
            }
        }
    }
    for (int c = 0; c < d; c++) out[c] = (float)((double)a[c] * v_scale / 256.0);
    if (a != acc) free(a);
    if (e != e_small) free(e);
    return sats;
}

double sp_hw_error_bound(int n, double delta, int frac_bits, double vmax, double v_scale) {
    double eps1 = exp(2.0 * delta + ldexp(1.0, -(frac_bits + 1))) - 1.0;
    double den = 1.0 - eps1 - 2.05 * n / 256.0;
    if (den <= 0) return INFINITY;
    double P = (2.0 * eps1 + 4.1 * n / 256.0) / den + n / 512.0 + 1.0 / 256.0;
    return vmax * P + (1.0 + P) * v_scale / 2.0;
}
