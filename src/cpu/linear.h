/* linear.h: the model's linear layers, c (n, out) = [c +] a (n, in) . w^T with w (out, in)
 * row-major, computed in ONE fixed summation order at every dispatch level, so the result does
 * not depend on the CPU, on SPRINT_CPU or on any BLAS library's kernel choice.
 *
 * The order (the definition every kernel reproduces bit for bit):
 *     s = 0;  for k = 0 .. in-1:  s = fmaf(a[i][k], w[j][k], s)     (one rounding per step)
 *     c[i][j] = beta ? c[i][j] + s : s                              (one fp32 add)
 * Each output is its own sequential chain: the kernels vectorise across outputs j (16 lanes =
 * 16 consecutive rows of w), never across k, so a row gives the same bits whether it is one of
 * a 32-row prefill chunk or a single decode step.
 *
 * Weights are packed once (sp_linear_pack) into 16-output panels: panel p holds, for every
 * k, the 16 floats w[16p + u][k] (u = 0..15), zero-padded past `out`; a packed matrix takes
 * sp_linear_packed_floats(out, in) floats (in x out rounded up to 16). Levels: portable (C,
 * fmaf), AVX2+FMA (two 8-lane halves per panel), AVX-512 F (4 rows x 4 panels register tile). */
#ifndef SPRINT_CPU_LINEAR_H
#define SPRINT_CPU_LINEAR_H

#include <stddef.h>

#include "cpu/cpu.h"

#define SP_LINEAR_PANEL 16

/* Floats of a packed (out, in) matrix: ceil(out / 16) * 16 * in. */
size_t sp_linear_packed_floats(int out, int in);
/* Packs w (out, in) row-major into dst (sp_linear_packed_floats(out, in) floats). */
void sp_linear_pack(const float *w, int out, int in, float *dst);
/* The same with rows ldw floats apart (the functional model's fp32 products, cpu/gemm.h, use
 * this layout too). */
void sp_linear_pack_strided(const float *w, int ldw, int out, int in, float *dst);
/* The same from the transposed layout wt (in, out) (TensorFlow's kernels: x @ wt). */
void sp_linear_pack_t(const float *wt, int out, int in, float *dst);

/* c (n, out) = [c +] a (n, in) . w^T in the order above, wp = the packed w. n, in, out >= 1;
 * rows of a and c are contiguous (strides in and out). c must not alias a. */
void sp_linear(float *c, const float *a, const float *wp, int n, int in, int out, int beta);
/* The same at a given level (tests; a level above the CPU's is the caller's bug). */
void sp_linear_level(sp_cpu_level level, float *c, const float *a, const float *wp, int n, int in, int out, int beta);
/* The reference: the definition written as plain loops over the UNPACKED w (out, in). */
void sp_linear_ref(float *c, const float *a, const float *w, int n, int in, int out, int beta);

#endif
