/* round.h: round half away from zero, the result of C's round(), inline (internal).
 *
 * libm's round() is a function call; the quantiser rounds every element of Q, K and V of
 * every head through it (sp_quant_rows). trunc() compiles to one SSE4.1 instruction on the
 * x86-64-v2 target, and for |y| < 2^52 the remainder y - trunc(y) is exact (trunc only clears
 * low bits of y), so the test below decides exactly as round() does. Larger |y| (and NaN, infinities) are already integers or pass through
 * unchanged, as round() returns them. Tested against round() in tests/test_round.c. */
#ifndef SPRINT_FUNCTIONAL_ROUND_H
#define SPRINT_FUNCTIONAL_ROUND_H

#include <math.h>

static inline double sp_round_half_away(double y) {
    if (!(fabs(y) < 4503599627370496.0)) return y; /* 2^52: integral already, or NaN */
    double t = trunc(y);
    /* y - t is exact; the step away from zero is 0 or 1 with y's sign, added without a branch
     * (the quotients are random: a branch would mispredict half the time), and t + (+-0)
     * keeps t's signed zero as round() does */
    double step = (double)(fabs(y - t) >= 0.5);
    return t + copysign(step, y);
}

#endif
