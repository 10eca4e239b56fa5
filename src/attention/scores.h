/* scores.h: the reference's exact scores (sp_attn_scores_ref, attention.c): scores[j] =
 * (sum_c (double) q[c] * (double) k_idx[j][c]) * (double) scale, each dot product accumulated in
 * double over c in order (the product of two floats is exact in double, so only the order of
 * the adds matters), so every level gives the same bits as the portable loop. The AVX-512 level takes 8 keys at a time, one
 * key per lane (the 8 rows transposed 8 columns at a time, the last d mod 8 columns gathered);
 * only the keys run in parallel,
 * never the terms of one sum. Dispatched at run time (cpu/cpu.h): AVX-512 F or the portable
 * loop (portable and AVX2 levels). Tested bit for bit against the portable loop in
 * tests/test_scores.c. */
#ifndef SPRINT_ATTENTION_SCORES_H
#define SPRINT_ATTENTION_SCORES_H

#include <stdint.h>

#include "cpu/cpu.h"

/* scores (n, caller-owned) for the query row q (d floats) against the key rows
 * k + idx[j] * ldk (d floats each); n >= 0, d >= 1, idx[j] >= 0. */
void sp_attn_scores_level(sp_cpu_level level, int d, int n, const int32_t *idx, const float *q, const float *k,
                          long ldk, float scale, double *scores);
/* The same at the detected level (sp_cpu_detect). */
void sp_attn_scores(int d, int n, const int32_t *idx, const float *q, const float *k, long ldk, float scale,
                    double *scores);

#endif
