/* test_round.c: does the inline round half away from zero (functional/round.h), used by the
 * quantiser, return exactly what C's round() returns, on the halfway cases, the values next to
 * them, signed zeros, the 2^52 boundary, non-finite values and many random quotients? */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "functional/round.h"
#include "sprint/common.h"

static void same(double y) {
    double a = round(y), b = sp_round_half_away(y);
    cr_assert(!memcmp(&a, &b, sizeof a) || (isnan(a) && isnan(b)), "y=%.17g: round %.17g, inline %.17g", y, a, b);
}

Test(round, edges) {
    const double base[] = {0.0, 0.5, 1.5, 2.5, 126.5, 127.49999999999999, 0.49999999999999994, 1.0, 3.0, 1e-300,
                           4503599627370495.5, 4503599627370496.0, 9007199254740993.0, 1e300, DBL_MAX, DBL_MIN};
    for (size_t i = 0; i < sizeof base / sizeof *base; i++)
        for (int sgn = -1; sgn <= 1; sgn += 2) {
            double y = sgn * base[i];
            same(y);
            same(nextafter(y, INFINITY));
            same(nextafter(y, -INFINITY));
        }
    same(INFINITY);
    same(-INFINITY);
    same(NAN);
}

/* The quantiser's arguments: x / s with s = max / 127, so |y| <= 127 (plus rounding). */
Test(round, random_quotients) {
    for (uint64_t i = 0; i < 2000000; i++) {
        double u = sp_rng_uniform(sp_rng_key(5, i, 0, 0, 0));
        float x = (float)(2.0 * u - 1.0), mx = (float)(0.5 + sp_rng_uniform(sp_rng_key(6, i, 0, 0, 0)));
        float s = mx / 127.0f;
        same((double)x / (double)s);
        same(256.0 * (2.0 * u - 1.0)); /* and halves / quarters in a wider range */
        same(ldexp(floor(u * 1024.0) - 512.0, -2));
    }
}
