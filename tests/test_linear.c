/* test_linear.c: do the model's linear-layer kernels (src/cpu/linear.h) give the SAME BITS at
 * every dispatch level (portable C fmaf, AVX2+FMA, AVX-512) as the reference written from the
 * definition on the unpacked weights, over edge sizes and the real models' shapes, with and
 * without accumulation into c? And is the order the one linear.h defines (a different order
 * is caught)? */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/linear.h"
#include "helpers.h"
#include "sprint/common.h"

static float *randn(size_t n, uint64_t seed, float sd) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = sd * (float)sp_rng_normal(sp_rng_key(seed, 9, (uint64_t)i, 0, 0));
    return x;
}

/* Every level up to the CPU's against the reference, memcmp of the whole output. Returns the
 * number of levels checked. */
static int check_shape(int n, int in, int out, uint64_t seed) {
    float *a = randn((size_t)n * in, seed, 1.0f), *w = randn((size_t)out * in, seed + 1, 0.3f);
    float *c0 = randn((size_t)n * out, seed + 2, 1.0f);
    float *wp = malloc(sp_linear_packed_floats(out, in) * sizeof *wp);
    float *want = malloc((size_t)n * out * sizeof *want), *got = malloc((size_t)n * out * sizeof *got);
    sp_linear_pack(w, out, in, wp);
    int levels = 0;
    for (int beta = 0; beta < 2; beta++) {
        memcpy(want, c0, (size_t)n * out * sizeof *want);
        sp_linear_ref(want, a, w, n, in, out, beta);
        for (int L = SP_CPU_PORTABLE; L <= (int)sp_cpu_detect(); L++) {
            memcpy(got, c0, (size_t)n * out * sizeof *got);
            sp_linear_level((sp_cpu_level)L, got, a, wp, n, in, out, beta);
            if (memcmp(got, want, (size_t)n * out * sizeof *got)) {
                size_t bad = 0;
                while (got[bad] == want[bad]) bad++;
                cr_assert(0, "level %s, n %d in %d out %d beta %d: c[%zu][%zu] = %.9g, reference %.9g",
                        sp_cpu_level_name((sp_cpu_level)L), n, in, out, beta, bad / (size_t)out, bad % (size_t)out,
                        got[bad], want[bad]);
            }
            levels++;
        }
    }
    free(a), free(w), free(c0), free(wp), free(want), free(got);
    return levels;
}

Test(linear, levels_match_reference_bit_for_bit_on_edge_sizes) {
    const int ns[] = {1, 2, 3, 4, 5, 7, 8, 32, 33};
    const int ins[] = {1, 2, 15, 16, 17, 64, 172};
    const int outs[] = {1, 7, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 80, 129};
    uint64_t seed = 100;
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
        for (size_t k = 0; k < sizeof ins / sizeof *ins; k++)
            for (size_t j = 0; j < sizeof outs / sizeof *outs; j++) check_shape(ns[i], ins[k], outs[j], seed++);
}

/* The linear layers of stories260K (dim 64, hidden 172, 8 heads / 4 KV heads of 8, vocab 512)
 * and bitnet-3M (dim 256, hidden 256, 8 / 4 heads of 32, vocab 512), as (out, in), for a
 * prefill chunk (32 rows), a last partial chunk (13 rows) and a decode step (1 row). */
Test(linear, levels_match_reference_bit_for_bit_on_the_models_shapes) {
    const int shapes[][2] = {{64, 64}, {32, 64}, {172, 64}, {64, 172}, {512, 64},
                             {256, 256}, {128, 256}, {512, 256}};
    const int ns[] = {32, 13, 1};
    int levels = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (size_t i = 0; i < 3; i++) levels += check_shape(ns[i], shapes[s][1], shapes[s][0], 7000 + 10 * s + i);
    cr_assert_geq(levels, 48, "every shape checked at least at the portable level, both betas");
}

/* The order is the definition's, not just "some order every level shares": a k-reversed or
 * pairwise chain gives other bits on a long input, and the reference equals a hand-written chain. */
Test(linear, order_is_the_sequential_fma_chain) {
    int in = 768, out = 16;
    float *a = randn((size_t)in, 55, 1.0f), *w = randn((size_t)out * in, 56, 1.0f);
    float *wp = malloc(sp_linear_packed_floats(out, in) * sizeof *wp), c[16], r[16];
    sp_linear_pack(w, out, in, wp);
    sp_linear(c, a, wp, 1, in, out, 0);
    sp_linear_ref(r, a, w, 1, in, out, 0);
    int differs_from_reversed = 0;
    for (int j = 0; j < out; j++) {
        float s = 0.0f, t = 0.0f;
        for (int k = 0; k < in; k++) s = fmaf(a[k], w[(size_t)j * in + k], s);
        for (int k = in - 1; k >= 0; k--) t = fmaf(a[k], w[(size_t)j * in + k], t);
        cr_assert(c[j] == s && r[j] == s, "output %d: kernel %.9g, reference %.9g, the chain %.9g", j, c[j], r[j], s);
        differs_from_reversed += t != s;
    }
    cr_assert_gt(differs_from_reversed, 0, "the test could not tell the order from its reverse");
    free(a), free(w), free(wp);
}

/* Packing zero-pads the last panel and keeps every weight: unpacking gives w back; packing the
 * transposed layout (in, out) gives the same panels. */
Test(linear, packing_round_trips) {
    int out = 37, in = 5;
    float *w = randn((size_t)out * in, 77, 1.0f), *wp = malloc(sp_linear_packed_floats(out, in) * sizeof *wp);
    cr_assert_eq(sp_linear_packed_floats(out, in), (size_t)48 * 5);
    sp_linear_pack(w, out, in, wp);
    for (int j = 0; j < 48; j++)
        for (int k = 0; k < in; k++) {
            float v = wp[(size_t)(j / 16) * 16 * in + (size_t)k * 16 + j % 16];
            cr_assert_eq(v, j < out ? w[(size_t)j * in + k] : 0.0f, "packed w[%d][%d]", j, k);
        }
    float *wt = malloc((size_t)out * in * sizeof *wt), *wpt = malloc(sp_linear_packed_floats(out, in) * sizeof *wpt);
    for (int j = 0; j < out; j++)
        for (int k = 0; k < in; k++) wt[(size_t)k * out + j] = w[(size_t)j * in + k];
    sp_linear_pack_t(wt, out, in, wpt);
    cr_assert(!memcmp(wp, wpt, sp_linear_packed_floats(out, in) * sizeof *wp), "pack_t differs from pack");
    free(w), free(wp), free(wt), free(wpt);
}
