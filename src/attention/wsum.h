/* wsum.h: the weighted sum of V rows at the end of the reference softmax
 * (sp_attn_softmax_wsum, attention.c): out[c] = (float) sum_j p[j] * (double) v[idx[j]][c],
 * accumulated in double over j in index order, one product then one add per term (no fused
 * multiply-add), so every level gives the same bits as the portable loop: the fast levels only
 * keep the accumulators of several columns in vector registers. Dispatched at run time
 * (cpu/cpu.h): AVX-512 F (8 doubles per register, up to 32 columns per pass over the keys) or
 * the portable loop (portable and AVX2 levels). Tested bit for bit against the portable loop in
 * tests/test_wsum.c. */
#ifndef SPRINT_ATTENTION_WSUM_H
#define SPRINT_ATTENTION_WSUM_H

#include <stdint.h>

#include "cpu/cpu.h"

/* acc (d, caller-owned) = the double sums from the n weights p (n) and the V rows
 * v + idx[j] * ldv (d floats each); n >= 0, d >= 1. The caller rounds them to float. */
void sp_attn_wsum_level(sp_cpu_level level, int d, int n, const int32_t *idx, const double *p, const float *v,
                        long ldv, double *acc);
/* The same at the detected level (sp_cpu_detect). */
void sp_attn_wsum(int d, int n, const int32_t *idx, const double *p, const float *v, long ldv, double *acc);

#endif
