/* sprint_quant.h: the SPRINT CPU kernel's 8-bit quantisation of Q and K (one scale per tensor,
 * as sp_quant_rows with per_row = 0, quant.c) vectorised: the per-call setup of the kernel
 * rounded every element through libm round() in double (~8% of the kernel at L = 4096).
 * The AVX-512 version gives the same bytes and scales as sp_quant_rows (same double division,
 * round half away from zero computed exactly as trunc + a correction), tested in
 * tests/test_cpu_sprint.c. Internal to sprint_cpu.c. */
#ifndef SPRINT_SPRINT_QUANT_H
#define SPRINT_SPRINT_QUANT_H

#include <stdint.h>

#include "cpu/cpu.h"

/* x: n rows of d floats (row stride ld); valid: NULL or n flags (invalid rows quantise to 0 and
 * do not count towards the scale); xi: n x d levels (row stride d); scales: n floats (all the
 * tensor's scale, max |x| / 127, or 1 when max |x| = 0). */
typedef void (*sp_sx_quant_fn)(const float *x, int n, int d, int ld, const unsigned char *valid, int8_t *xi,
                               float *scales);
void sp_sx_quant_portable(const float *x, int n, int d, int ld, const unsigned char *valid, int8_t *xi,
                          float *scales);
void sp_sx_quant_avx512(const float *x, int n, int d, int ld, const unsigned char *valid, int8_t *xi, float *scales);
sp_sx_quant_fn sp_sx_quant_for(sp_cpu_level level);

#endif
