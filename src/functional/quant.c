/* quant.c: 8-bit symmetric quantisation of Q, K, V and the signed query DAC
 * (paper sec. 1.2 [F]: Q, K, V are 8-bit; K is split into 4 MSB + 4 LSB; the query reaches
 * the crossbar through a DAC of unrecovered resolution). Choices: docs/functional.md. */
#include <math.h>
#include <string.h>

#include "fn_internal.h"
#include "functional/quant_simd.h"
#include "functional/round.h"

void sp_quant_row_avx512(const float *x, int d, float s, int8_t *xi);
static void quant_rows(sp_cpu_level level, const float *x, int n, int d, int ld, int per_row,
                       const unsigned char *valid, float tensor_max, int8_t *xi, float *scales);

void sp_quant_row_level(sp_cpu_level level, const float *x, int d, float s, int8_t *xi) {
    if (level >= SP_CPU_AVX512) {
        sp_quant_row_avx512(x, d, s, xi);
        return;
    }
    for (int c = 0; c < d; c++) {
        double v = sp_round_half_away((double)x[c] / (double)s);
        if (v > 127) v = 127; /* only reachable through rounding of mx / 127 */
        if (v < -127) v = -127;
        xi[c] = (int8_t)v;
    }
}

void sp_quant_rows(const float *x, int n, int d, int ld, int per_row, const unsigned char *valid, int8_t *xi,
                   float *scales) {
    sp_quant_rows_level(sp_cpu_detect(), x, n, d, ld, per_row, valid, xi, scales);
}

float sp_quant_absmax_portable(const float *x, int n, int d, int ld, const unsigned char *valid) {
    /* 4 partial maxima (independent chains; the maximum does not depend on the order, and a
     * NaN is skipped by every comparison as in one chain) */
    float m0 = 0, m1 = 0, m2 = 0, m3 = 0;
    for (int i = 0; i < n; i++) {
        if (valid && !valid[i]) continue;
        const float *r = x + (size_t)i * (size_t)ld;
        int c = 0;
        for (; c + 4 <= d; c += 4) {
            float a0 = fabsf(r[c]), a1 = fabsf(r[c + 1]), a2 = fabsf(r[c + 2]), a3 = fabsf(r[c + 3]);
            m0 = a0 > m0 ? a0 : m0, m1 = a1 > m1 ? a1 : m1, m2 = a2 > m2 ? a2 : m2, m3 = a3 > m3 ? a3 : m3;
        }
        for (; c < d; c++) {
            float a = fabsf(r[c]);
            m0 = a > m0 ? a : m0;
        }
    }
    m0 = m1 > m0 ? m1 : m0, m2 = m3 > m2 ? m3 : m2;
    return m2 > m0 ? m2 : m0;
}

void sp_quant_rows_level(sp_cpu_level level, const float *x, int n, int d, int ld, int per_row,
                         const unsigned char *valid, int8_t *xi, float *scales) {
    float tensor_max = 0.0f;
    if (!per_row)
        tensor_max = level >= SP_CPU_AVX512 ? sp_quant_absmax_avx512(x, n, d, ld, valid)
                                            : sp_quant_absmax_portable(x, n, d, ld, valid);
    quant_rows(level, x, n, d, ld, per_row, valid, tensor_max, xi, scales);
}

void sp_quant_rows_tmax(sp_cpu_level level, const float *x, int n, int d, int ld, const unsigned char *valid,
                        float tensor_max, int8_t *xi, float *scales) {
    quant_rows(level, x, n, d, ld, 0, valid, tensor_max, xi, scales);
}

static void quant_rows(sp_cpu_level level, const float *x, int n, int d, int ld, int per_row,
                       const unsigned char *valid, float tensor_max, int8_t *xi, float *scales) {
    for (int i = 0; i < n; i++) {
        const float *r = x + (size_t)i * (size_t)ld;
        float mx = tensor_max;
        if (per_row) {
            mx = 0.0f;
            for (int c = 0; c < d; c++)
                if (fabsf(r[c]) > mx) mx = fabsf(r[c]);
        }
        float s = mx > 0.0f ? mx / 127.0f : 1.0f;
        scales[i] = s;
        int8_t *out = xi + (size_t)i * (size_t)d;
        if (valid && !valid[i]) memset(out, 0, (size_t)d);
        else sp_quant_row_level(level, r, d, s, out);
    }
}

double sp_dac_step(int dac_bits) {
    SP_ASSERT(dac_bits >= 2 && dac_bits <= 8);
    return 127.0 / (double)((1 << (dac_bits - 1)) - 1);
}

int sp_dac_level(int q, int dac_bits) {
    int M = (1 << (dac_bits - 1)) - 1;
    double step = sp_dac_step(dac_bits);
    int mag = (int)sp_round_half_away(fabs((double)q) / step);
    if (mag > M) mag = M;
    return q < 0 ? -mag : mag;
}
