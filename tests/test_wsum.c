/* test_wsum.c: does the reference softmax's weighted sum of V (attention/wsum.h) give the same
 * bits at every CPU level, and does sp_attn_softmax_wsum still give the bits of the loop it
 * had before the sum was vectorised (a copy of that loop is kept here as the reference)? */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention/wsum.h"
#include "cpu/cpu.h"
#include "helpers.h"
#include "sprint/attention.h"

static int have_avx512(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

static double urand(uint64_t seed, uint64_t i) { return sp_rng_uniform(sp_rng_key(seed, 11, i, 0, 0)); }

/* sp_attn_softmax_wsum as it was written before attention/wsum.h (the bits to keep). */
static void wsum_before(const sp_attn_head *h, const int32_t *idx, const double *scores, int n, float *out_row) {
    int d = h->d;
    if (n == 0) {
        memset(out_row, 0, (size_t)d * sizeof *out_row);
        return;
    }
    double mx = scores[0];
    for (int j = 1; j < n; j++)
        if (scores[j] > mx) mx = scores[j];
    double *e = malloc((size_t)n * sizeof *e);
    double denom = 0.0;
    for (int j = 0; j < n; j++) {
        e[j] = exp(scores[j] - mx);
        denom += e[j];
    }
    double *a = calloc((size_t)d, sizeof *a);
    for (int j = 0; j < n; j++) {
        double p = e[j] / denom;
        const float *vr = h->v + (size_t)idx[j] * (size_t)h->ldv;
        for (int c = 0; c < d; c++) a[c] += p * (double)vr[c];
    }
    for (int c = 0; c < d; c++) out_row[c] = (float)a[c];
    free(a);
    free(e);
}

/* Random V (nk rows of stride ld), weights and a key list with repeats and gaps. */
typedef struct wcase {
    int d, n, nk, ld;
    float *v;
    double *p, *sc;
    int32_t *idx;
} wcase;

static wcase make_case(int d, int n, uint64_t seed) {
    wcase w = {.d = d, .n = n, .nk = n + 7, .ld = d + (int)(seed % 5)};
    w.v = malloc((size_t)w.nk * (size_t)w.ld * sizeof *w.v);
    for (size_t i = 0; i < (size_t)w.nk * (size_t)w.ld; i++) {
        double u = urand(seed, i);
        /* wide magnitudes, exact zeros and negative zeros: rounding differences would show */
        w.v[i] = i % 13 == 0 ? -0.0f : i % 17 == 0 ? 0.0f : (float)((u - 0.5) * pow(10.0, (double)(i % 7) - 3.0));
    }
    w.p = malloc((size_t)n * sizeof *w.p);
    w.sc = malloc((size_t)n * sizeof *w.sc);
    w.idx = malloc((size_t)n * sizeof *w.idx);
    for (int j = 0; j < n; j++) {
        w.p[j] = urand(seed + 1, (uint64_t)j) / n;
        w.sc[j] = 12.0 * (urand(seed + 2, (uint64_t)j) - 0.5);
        w.idx[j] = (int32_t)(urand(seed + 3, (uint64_t)j) * w.nk) % w.nk;
    }
    return w;
}

static void free_case(wcase *w) {
    free(w->v);
    free(w->p);
    free(w->sc);
    free(w->idx);
}

static const int DS[] = {1, 3, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 40, 63, 64, 65, 100, 128, 600};
static const int NS[] = {1, 2, 5, 64, 333};

Test(wsum, avx512_bit_identical_to_portable) {
    if (!have_avx512()) cr_skip_test("the CPU has no AVX-512 F/VL: only the portable loop runs here");
    for (size_t a = 0; a < sizeof DS / sizeof *DS; a++)
        for (size_t b = 0; b < sizeof NS / sizeof *NS; b++) {
            int d = DS[a], n = NS[b];
            wcase w = make_case(d, n, 100 * a + b);
            /* the double sums themselves are compared: a fused multiply-add or another order
             * would change their last bits (and only rarely the float outputs) */
            double *o0 = malloc((size_t)d * sizeof *o0), *o1 = malloc((size_t)(d + 1) * sizeof *o1);
            o1[d] = 12345.0; /* the kernel writes d sums, not more */
            sp_attn_wsum_level(SP_CPU_PORTABLE, d, n, w.idx, w.p, w.v, w.ld, o0);
            sp_attn_wsum_level(SP_CPU_AVX512, d, n, w.idx, w.p, w.v, w.ld, o1);
            for (int c = 0; c < d; c++)
                cr_assert(!memcmp(&o0[c], &o1[c], sizeof(double)), "d=%d n=%d column %d: portable %.17g avx512 %.17g",
                          d, n, c, o0[c], o1[c]);
            cr_assert_eq(o1[d], 12345.0, "d=%d n=%d: wrote past the row", d, n);
            free(o0);
            free(o1);
            free_case(&w);
        }
}

/* The whole reference softmax (every level the CPU has) against the loop it replaced. */
Test(wsum, softmax_wsum_keeps_its_bits) {
    for (size_t a = 0; a < sizeof DS / sizeof *DS; a++)
        for (size_t b = 0; b < sizeof NS / sizeof *NS; b++) {
            int d = DS[a], n = NS[b];
            wcase w = make_case(d, n, 7000 + 100 * a + b);
            sp_attn_head h = {.d = d, .v = w.v, .ldv = w.ld};
            float *o0 = malloc((size_t)d * sizeof *o0), *o1 = malloc((size_t)d * sizeof *o1);
            wsum_before(&h, w.idx, w.sc, n, o0);
            sp_attn_softmax_wsum(&h, w.idx, w.sc, n, o1);
            double maxdiff = 0;
            int same = 1;
            for (int c = 0; c < d; c++) {
                if (memcmp(&o0[c], &o1[c], sizeof(float))) same = 0;
                if (fabs((double)o0[c] - o1[c]) > maxdiff) maxdiff = fabs((double)o0[c] - o1[c]);
            }
            cr_assert(same, "d=%d n=%d (%s): differs from the old loop, max abs diff %g", d, n,
                      sp_cpu_level_name(sp_cpu_detect()), maxdiff);
            free(o0);
            free(o1);
            free_case(&w);
        }
}

/* No visible key: zeros, whatever the level. */
Test(wsum, empty_row_is_zero) {
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8}, out[8];
    for (int c = 0; c < 8; c++) out[c] = 9.0f;
    sp_attn_head h = {.d = 8, .v = v, .ldv = 8};
    sp_attn_softmax_wsum(&h, NULL, NULL, 0, out);
    for (int c = 0; c < 8; c++) cr_assert_eq(out[c], 0.0f);
}
