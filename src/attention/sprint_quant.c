/* sprint_quant.c: the portable quantisation of the SPRINT CPU kernel (sprint_quant.h). */
#include "attention/sprint_quant.h"

#include "functional/fn_internal.h"

void sp_sx_quant_portable(const float *x, int n, int d, int ld, const unsigned char *valid, int8_t *xi,
                          float *scales) {
    sp_quant_rows(x, n, d, ld, 0, valid, xi, scales);
}

sp_sx_quant_fn sp_sx_quant_for(sp_cpu_level level) {
    return level >= SP_CPU_AVX512 ? sp_sx_quant_avx512 : sp_sx_quant_portable;
}
