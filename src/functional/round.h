/* round.h: round half away from zero, the result of C's round(), inline (internal).
 *
 * libm's round() is a function call; the quantiser rounds every element of Q, K and V of
 * every head through it (sp_quant_rows). trunc() compiles to one SSE4.1 instruction on the
 * x86-64-v2 target, and for |y| < 2^52 the remainder y - trunc(y) is exact (both share y's
 * exponent range and trunc only clears low bits), so the test below decides exactly as
 * round() does. Larger |y| (and NaN, infinities) are already integers or pass through
 * unchanged, as round() returns them. Tested against round() in tests/test_round.c. */
#ifndef SPRINT_FUNCTIONAL_ROUND_H
#define SPRINT_FUNCTIONAL_ROUND_H

#include <math.h>

static inline double sp_round_half_away(double y) {
    if (!(fabs(y) < 4503599627370496.0)) return y; /* 2^52: integral already, or NaN */
    double t = trunc(y);
    double r = y - t; /* exact */
    if (r >= 0.5) return t + 1.0;
    if (r <= -0.5) return t - 1.0;
    return t;
}

#endif
