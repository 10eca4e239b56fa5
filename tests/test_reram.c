/* test_reram.c: is the in-ReRAM score exact when ideal, and do the non-idealities have the
 * documented statistics, draw deterministically and skip nothing that matters? */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "functional/fn_internal.h"

static sp_reram_params ideal(int b) {
    sp_reram_params p = {.msb_bits = b, .rows = 64, .dac_bits = 8, .seed = 7};
    return p;
}

Test(reram, ideal_cells_and_reference_score_are_the_integer_dot) {
    sp_reram_params p = ideal(4);
    cr_assert(sp_reram_ideal(&p));
    int qd[5] = {-127, 3, 0, 55, -9};
    int m[5] = {15, 0, 7, 8, 1};
    double g[5];
    long want = 0;
    for (int c = 0; c < 5; c++) {
        g[c] = sp_reram_cell(&p, 1, 2, 33, c, m[c]);
        cr_assert_eq(g[c], (double)m[c]);
        want += (long)qd[c] * m[c];
    }
    cr_assert_eq(sp_reram_score_ref(&p, 1, 0, 2, 0, 0, 33, qd, g, 5), (double)want);
}

Test(reram, fast_block_charges_equal_integer_dot_exactly) {
    /* worst case magnitudes: b = 8 levels up to 255, 8-bit DAC, d = 512 */
    int nq = 5, nk = 37, d = 512;
    float *qd = malloc(sizeof(float) * nq * d), *g = malloc(sizeof(float) * nk * d), *A = malloc(sizeof(float) * nq * nk);
    sp_rng r;
    sp_rng_seed(&r, 3);
    for (int i = 0; i < nq * d; i++) qd[i] = (float)((int)(sp_rng_next(&r) % 255) - 127);
    for (int i = 0; i < nk * d; i++) g[i] = (float)(int)(sp_rng_next(&r) % 256);
    for (int c = 0; c < d; c++) qd[c] = 127, g[c] = 255; /* row 0 x key 0 at full scale */
    sp_reram_charge_block(nq, nk, d, qd, g, A);
    for (int i = 0; i < nq; i++)
        for (int j = 0; j < nk; j++) {
            long long want = 0;
            for (int c = 0; c < d; c++) want += (long long)qd[i * d + c] * (long long)g[j * d + c];
            cr_assert_eq((long long)A[i * nk + j], want, "q %d key %d: %.1f != %lld", i, j, A[i * nk + j], want);
            cr_assert_eq((double)A[i * nk + j], (double)want);
        }
    cr_assert_eq((long long)A[0], 127LL * 255 * 512);
    free(qd), free(g), free(A);
}

Test(reram, d2d_variation_statistics_and_determinism) {
    sp_reram_params p = ideal(4);
    p.d2d_sigma = 0.1;
    double s = 0, s2 = 0;
    int n = 20000;
    for (int j = 0; j < n; j++) {
        double gv = sp_reram_cell(&p, 0, 0, j, 3, 10);
        cr_assert_eq(gv, sp_reram_cell(&p, 0, 0, j, 3, 10), "fixed per cell");
        s += gv;
        s2 += gv * gv;
    }
    double mean = s / n, sd = sqrt(s2 / n - mean * mean);
    cr_assert(fabs(mean - 10) < 0.05, "mean %g", mean);
    cr_assert(fabs(sd - 1.0) < 0.05, "std %g (want 0.1 x 10)", sd);
    sp_reram_params p2 = p;
    p2.seed = 8;
    cr_assert_neq(sp_reram_cell(&p, 0, 0, 5, 3, 10), sp_reram_cell(&p2, 0, 0, 5, 3, 10), "seed changes the draw");
    cr_assert_neq(sp_reram_cell(&p, 0, 0, 5, 3, 10), sp_reram_cell(&p, 0, 1, 5, 3, 10), "kv head changes it");
}

Test(reram, stuck_at_rates_and_onoff_leakage) {
    sp_reram_params p = ideal(4);
    p.stuck_at_0 = 0.1;
    p.stuck_at_1 = 0.05;
    int n0 = 0, n1 = 0, n = 40000;
    for (int j = 0; j < n; j++) {
        double g = sp_reram_cell(&p, 2, 1, j, j % 7, 6);
        if (g == 0) n0++;
        else if (g == 15) n1++;
        else cr_assert_eq(g, 6.0);
    }
    cr_assert(fabs(n0 / (double)n - 0.1) < 0.01, "stuck at 0 rate %g", n0 / (double)n);
    cr_assert(fabs(n1 / (double)n - 0.05) < 0.01, "stuck at 1 rate %g", n1 / (double)n);
    sp_reram_params q = ideal(4);
    q.onoff_ratio = 16; /* g_off = 15 / 15 = 1 */
    cr_assert_float_eq(sp_reram_cell(&q, 0, 0, 0, 0, 0), 1.0, 1e-12);
    cr_assert_float_eq(sp_reram_cell(&q, 0, 0, 0, 0, 15), 16.0, 1e-12);
    cr_assert_float_eq(sp_reram_cell(&q, 0, 0, 0, 0, 15) / sp_reram_cell(&q, 0, 0, 0, 0, 0), 16.0, 1e-12);
}

Test(reram, comparator_offset_full_scale_and_read_noise) {
    sp_reram_params p = ideal(4);
    /* d = 100 on 64 rows: 2 columns charge-shared, full scale 2 x 64 x 127 x 15 */
    cr_assert_float_eq(sp_reram_full_scale(&p, 100), 2.0 * 64 * 127 * 15, 1e-9);
    cr_assert_float_eq(sp_reram_full_scale(&p, 64), 64.0 * 127 * 15, 1e-9);
    p.cmp_offset_sigma = 0.001;
    double s2 = 0;
    int n = 20000;
    for (int j = 0; j < n; j++) {
        double o = sp_reram_cmp_offset(&p, 0, 0, j, 64);
        cr_assert_eq(o, sp_reram_cmp_offset(&p, 0, 0, j, 64));
        s2 += o * o;
    }
    double want = 0.001 * 64 * 127 * 15;
    cr_assert(fabs(sqrt(s2 / n) / want - 1) < 0.03, "offset std %g want %g", sqrt(s2 / n), want);
    p.c2c_sigma = 0.05;
    double mx = 0, a = 0, b = 0;
    for (int j = 0; j < n; j++) {
        double r = sp_reram_read_normal(&p, 0, 1, 0, 9, 4, j);
        if (fabs(r) > mx) mx = fabs(r);
        a += r;
        b += r * r;
    }
    cr_assert(mx <= 8.0);
    cr_assert(fabs(a / n) < 0.03 && fabs(b / n - 1) < 0.05, "N(0,1): mean %g var %g", a / n, b / n);
    cr_assert_neq(sp_reram_read_normal(&p, 0, 1, 0, 9, 4, 3), sp_reram_read_normal(&p, 0, 1, 0, 10, 4, 3),
                  "a new sequence is a new read");
    /* the reference adds noise of std c2c * sqrt(sum (q g)^2) */
    int qd[2] = {3, -4};
    double g[2] = {1, 1};
    double sc = sp_reram_score_ref(&p, 0, 1, 0, 9, 4, 3, qd, g, 2);
    cr_assert_float_eq(sc, -1.0 + 0.05 * 5.0 * sp_reram_read_normal(&p, 0, 1, 0, 9, 4, 3), 1e-12);
}
