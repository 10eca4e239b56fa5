/* quant.c: 8-bit symmetric quantisation of Q, K, V and the signed query DAC
 * (paper sec. 1.2 [F]: Q, K, V are 8-bit; K is split into 4 MSB + 4 LSB; the query reaches
 * the crossbar through a DAC of unrecovered resolution). Choices: docs/functional.md. */
#include <math.h>

#include "fn_internal.h"
#include "functional/round.h"

void sp_quant_rows(const float *x, int n, int d, int ld, int per_row, const unsigned char *valid, int8_t *xi,
                   float *scales) {
    float tensor_max = 0.0f;
    if (!per_row)
        for (int i = 0; i < n; i++)
            if (!valid || valid[i])
            for (int c = 0; c < d; c++) {
                float a = fabsf(x[(size_t)i * (size_t)ld + (size_t)c]);
                if (a > tensor_max) tensor_max = a;
            }
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
        for (int c = 0; c < d; c++) {
            double v = (valid && !valid[i]) ? 0.0 : sp_round_half_away((double)r[c] / (double)s);
            if (v > 127) v = 127; /* only reachable through rounding of mx / 127 */
            if (v < -127) v = -127;
            xi[(size_t)i * (size_t)d + (size_t)c] = (int8_t)v;
        }
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
