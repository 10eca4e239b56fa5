/* test_quant.c: does the 8-bit quantisation, the key MSB/LSB split and the query DAC do
 * exactly what docs/functional.md says? */
#include <criterion/criterion.h>
#include <math.h>

#include "functional/fn_internal.h"

Test(quant, per_head_scale_and_rounding_half_away) {
    /* max |x| = 127: scale exactly 1, so the halves are exact ties (a scale of 1/127 in
     * float makes -0.5 / s = -63.4999..., which cannot tell round-half-away from rint) */
    float x[2][3] = {{127.0f, -0.5f, 2.5f}, {0.0f, 12.7f, -126.5f}};
    int8_t xi[6];
    float s[2];
    sp_quant_rows(&x[0][0], 2, 3, 3, 0, NULL, xi, s);
    cr_assert_eq(s[0], 1.0f);
    cr_assert_eq(s[0], s[1]);
    /* -0.5 -> -1 and 2.5 -> 3 and -126.5 -> -127 (away from zero; rint would give -0, 2, -126) */
    int want[6] = {127, -1, 3, 0, 13, -127};
    for (int i = 0; i < 6; i++) cr_assert_eq(xi[i], want[i], "element %d: %d != %d", i, xi[i], want[i]);
}

Test(quant, per_row_scales_and_padding_excluded) {
    float x[3][2] = {{2.0f, -1.0f}, {0.5f, 0.25f}, {100.0f, 100.0f}};
    unsigned char valid[3] = {1, 1, 0};
    int8_t xi[6];
    float s[3];
    sp_quant_rows(&x[0][0], 3, 2, 2, 1, valid, xi, s);
    cr_assert_float_eq(s[0], 2.0f / 127, 1e-9);
    cr_assert_float_eq(s[1], 0.5f / 127, 1e-9);
    cr_assert_eq(xi[2], 127);
    cr_assert_eq(xi[3], 64); /* 63.5 -> 64 */
    cr_assert_eq(xi[4], 0, "padding rows quantise to 0");
    /* per tensor: the padded row's 100 must not set the scale */
    sp_quant_rows(&x[0][0], 3, 2, 2, 0, valid, xi, s);
    cr_assert_float_eq(s[0], 2.0f / 127, 1e-9);
    float z[4] = {0, 0, 0, 0};
    sp_quant_rows(z, 2, 2, 2, 0, NULL, xi, s);
    cr_assert_eq(s[0], 1.0f, "an all-zero tensor gets scale 1");
}

/* The per-tensor scale is max |x| / 127 wherever the maximum sits (any column, including the
 * tail past a multiple of 4, any row, row stride > d), padding rows excluded, NaN skipped. */
Test(quant, per_tensor_scale_is_the_max_at_any_position) {
    enum { N = 5, D = 11, LD = 13 };
    float x[N * LD];
    int8_t xi[N * D];
    float s[N];
    for (int pos = 0; pos < N * D; pos++) {
        for (int t = 0; t < N * LD; t++) x[t] = 0.25f * (float)((t * 7) % 9) - 1.0f; /* |x| <= 1 */
        const int i = pos / D, c = pos % D;
        x[i * LD + c] = pos % 2 ? -3.5f : 3.5f;
        x[i * LD + D] = 99.0f; /* between rows (stride padding): never read */
        sp_quant_rows(x, N, D, LD, 0, NULL, xi, s);
        cr_assert_eq(s[0], 3.5f / 127.0f, "max at row %d col %d: scale %g", i, c, (double)s[0]);
        unsigned char valid[N] = {1, 1, 1, 1, 1};
        valid[i] = 0; /* the row holding the max is padding: the scale falls back to max 1 */
        sp_quant_rows(x, N, D, LD, 0, valid, xi, s);
        cr_assert_eq(s[0], 1.0f / 127.0f, "padding row %d: scale %g", i, (double)s[0]);
        x[i * LD + c] = NAN; /* in a valid row now */
        sp_quant_rows(x, N, D, LD, 0, NULL, xi, s);
        cr_assert_eq(s[0], 1.0f / 127.0f, "NaN at row %d col %d", i, c);
    }
}

Test(quant, key_split_reconstructs_exactly_for_every_b) {
    for (int b = 1; b <= 8; b++)
        for (int k = -128; k <= 127; k++) {
            int m = sp_key_msb(k, b), l = sp_key_lsb(k, b);
            cr_assert(m >= 0 && m < (1 << b), "b=%d k=%d m=%d", b, k, m);
            cr_assert(l >= 0 && l < (1 << (8 - b)), "b=%d k=%d l=%d", b, k, l);
            cr_assert_eq(m * (1 << (8 - b)) + l - 128, k, "b=%d k=%d", b, k);
        }
    cr_assert_eq(sp_key_msb(-128, 4), 0);
    cr_assert_eq(sp_key_msb(127, 4), 15);
    cr_assert_eq(sp_key_msb(0, 4), 8);
    cr_assert_float_eq(sp_key_msb_center(4), 7.5, 1e-12);
    cr_assert_float_eq(sp_key_msb_center(8), 0.0, 1e-12);
}

Test(quant, dac_levels) {
    for (int q = -127; q <= 127; q++) cr_assert_eq(sp_dac_level(q, 8), q, "8-bit DAC is the identity");
    cr_assert_float_eq(sp_dac_step(4), 127.0 / 7.0, 1e-12);
    cr_assert_eq(sp_dac_level(127, 4), 7);
    cr_assert_eq(sp_dac_level(-127, 4), -7);
    cr_assert_eq(sp_dac_level(9, 4), 0);   /* 9 / 18.14 = 0.496 */
    cr_assert_eq(sp_dac_level(10, 4), 1);  /* 0.551 */
    cr_assert_eq(sp_dac_level(-10, 4), -1);
    cr_assert_eq(sp_dac_level(100, 2), 1); /* 2 bits: levels -1, 0, 1 */
    cr_assert_eq(sp_dac_level(60, 2), 0);
}
