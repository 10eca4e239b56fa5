/* linear.c: packing, the portable kernel, the reference and the dispatch of sp_linear
 * (linear.h); the AVX2 and AVX-512 kernels are in linear_avx2.c and linear_avx512.c. */
#include "cpu/linear.h"

#include <math.h>
#include <string.h>

#include "sprint/common.h"

/* R = 1..4 rows of a (linear_avx2.c, linear_avx512.c: one register tile of rows per call). */
typedef void (*rows_fn)(int R, int in, const float *a, const float *wp, float *c, int out, int beta);
void sp_linear_rows_avx2(int R, int in, const float *a, const float *wp, float *c, int out, int beta);
void sp_linear_rows_avx512(int R, int in, const float *a, const float *wp, float *c, int out, int beta);
void sp_linear_portable(float *c, const float *a, const float *wp, int n, int in, int out, int beta);

size_t sp_linear_packed_floats(int out, int in) {
    return (size_t)((out + SP_LINEAR_PANEL - 1) / SP_LINEAR_PANEL) * SP_LINEAR_PANEL * (size_t)in;
}

void sp_linear_pack_strided(const float *w, int ldw, int out, int in, float *dst) {
    memset(dst, 0, sp_linear_packed_floats(out, in) * sizeof *dst);
    const size_t PD = (size_t)in * SP_LINEAR_PANEL;
    for (int j = 0; j < out; j++) {
        float *d = dst + (size_t)(j / SP_LINEAR_PANEL) * PD + (j % SP_LINEAR_PANEL);
        const float *src = w + (size_t)j * (size_t)ldw;
        for (int k = 0; k < in; k++) d[(size_t)k * SP_LINEAR_PANEL] = src[k];
    }
}

void sp_linear_pack(const float *w, int out, int in, float *dst) { sp_linear_pack_strided(w, in, out, in, dst); }

void sp_linear_pack_t(const float *wt, int out, int in, float *dst) {
    memset(dst, 0, sp_linear_packed_floats(out, in) * sizeof *dst);
    const size_t PD = (size_t)in * SP_LINEAR_PANEL;
    for (int k = 0; k < in; k++) {
        const float *src = wt + (size_t)k * (size_t)out;
        for (int j = 0; j < out; j++)
            dst[(size_t)(j / SP_LINEAR_PANEL) * PD + (size_t)k * SP_LINEAR_PANEL + (j % SP_LINEAR_PANEL)] = src[j];
    }
}

void sp_linear_ref(float *c, const float *a, const float *w, int n, int in, int out, int beta) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < out; j++) {
            const float *ar = a + (size_t)i * in, *wr = w + (size_t)j * in;
            float s = 0.0f;
            for (int k = 0; k < in; k++) s = fmaf(ar[k], wr[k], s);
            float *cij = c + (size_t)i * out + j;
            *cij = beta ? *cij + s : s;
        }
}

/* Portable: the order on the packed layout, 16 lanes of a panel per pass. */
void sp_linear_portable(float *c, const float *a, const float *wp, int n, int in, int out, int beta) {
    const size_t PD = (size_t)in * SP_LINEAR_PANEL;
    for (int i = 0; i < n; i++) {
        const float *ar = a + (size_t)i * in;
        float *cr = c + (size_t)i * out;
        for (int j0 = 0; j0 < out; j0 += SP_LINEAR_PANEL) {
            const float *p = wp + (size_t)(j0 / SP_LINEAR_PANEL) * PD;
            float s[SP_LINEAR_PANEL] = {0};
            for (int k = 0; k < in; k++, p += SP_LINEAR_PANEL)
                for (int u = 0; u < SP_LINEAR_PANEL; u++) s[u] = fmaf(ar[k], p[u], s[u]);
            int nu = out - j0 < SP_LINEAR_PANEL ? out - j0 : SP_LINEAR_PANEL;
            for (int u = 0; u < nu; u++) cr[j0 + u] = beta ? cr[j0 + u] + s[u] : s[u];
        }
    }
}

void sp_linear_level(sp_cpu_level level, float *c, const float *a, const float *wp, int n, int in, int out, int beta) {
    SP_ASSERT(n >= 1 && in >= 1 && out >= 1);
    if (level < SP_CPU_AVX2) {
        sp_linear_portable(c, a, wp, n, in, out, beta);
        return;
    }
    const rows_fn rows = level >= SP_CPU_AVX512 ? sp_linear_rows_avx512 : sp_linear_rows_avx2;
    for (int i = 0; i < n; i += 4)
        rows(n - i < 4 ? n - i : 4, in, a + (size_t)i * in, wp, c + (size_t)i * out, out, beta);
}

void sp_linear(float *c, const float *a, const float *wp, int n, int in, int out, int beta) {
    sp_linear_level(sp_cpu_detect(), c, a, wp, n, in, out, beta);
}
