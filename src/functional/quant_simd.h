/* quant_simd.h: the element loop of the 8-bit quantiser (sp_quant_rows, quant.c) at a chosen
 * CPU level (internal). One row: xi[c] = clamp(round_half_away((double)x[c] / (double)s),
 * -127, 127). The AVX-512 kernel quantises 16 floats at a time in fp32 (x times 1 / s, round
 * to nearest) where a guard proves the result is the double one (no lane within 2^-12 of a
 * half-integer); a vector that fails the guard, NaN included, takes the double path (8
 * doubles: x times 1 / s, or the correctly rounded vdivpd near a tie, truncation and a step
 * away from zero where |y - t| >= 0.5), so every element gets the bits of the portable loop.
 * Tested bit for bit in tests/test_quant_simd.c. */
#ifndef SPRINT_FUNCTIONAL_QUANT_SIMD_H
#define SPRINT_FUNCTIONAL_QUANT_SIMD_H

#include <stdint.h>

#include "cpu/cpu.h"

void sp_quant_row_level(sp_cpu_level level, const float *x, int d, float s, int8_t *xi);
/* The largest |x| over the rows i with valid[i] (all if valid is NULL), 0 for none; a NaN is
 * skipped as every comparison `a > m ? a : m` skips it: the per-tensor scale's maximum of
 * sp_quant_rows_level. The maximum does not depend on the order, so both give the same value. */
float sp_quant_absmax_portable(const float *x, int n, int d, int ld, const unsigned char *valid);
float sp_quant_absmax_avx512(const float *x, int n, int d, int ld, const unsigned char *valid);
/* sp_quant_rows (fn_internal.h) at a chosen level (the tensor maximum in AVX-512 at that level). */
void sp_quant_rows_level(sp_cpu_level level, const float *x, int n, int d, int ld, int per_row,
                         const unsigned char *valid, int8_t *xi, float *scales);
/* The per-tensor case of sp_quant_rows_level with the maximum given (tensor_max: the value
 * sp_quant_absmax_* returns for x and valid; the SPRINT kernel takes it from its input check,
 * sp_flash_check_inputs_norms_amax). */
void sp_quant_rows_tmax(sp_cpu_level level, const float *x, int n, int d, int ld, const unsigned char *valid,
                        float tensor_max, int8_t *xi, float *scales);

#endif
