/* reram.c: the in-ReRAM approximate score (paper sec. 1.3, Fig. 6a) and its non-idealities.
 *
 * K_MSB sits in a transposable crossbar, one key per column (a key longer than the crossbar's
 * rows spans adjacent columns whose charges are summed on one integration capacitor before
 * one comparator). The query drives the wordlines through a signed DAC (sign-magnitude, the
 * positive and negative elements applied in two phases whose charges subtract). Every random
 * effect is a pure function of (seed, purpose, layer, kv head, indices), so results do not
 * depend on thread count or call order. Units: one "integer score unit" is the charge of one
 * DAC level through one conductance level. */
#include <cblas.h>
#include <math.h>

#include "cpu/gemm.h"
#include "fn_internal.h"

uint64_t sp_reram_stream(int purpose, int layer, int kv_head) {
    return ((uint64_t)(unsigned)purpose << 48) ^ ((uint64_t)(unsigned)layer << 24) ^ (uint64_t)(unsigned)kv_head;
}

int sp_reram_ideal(const sp_reram_params *p) {
    return p->d2d_sigma == 0 && p->c2c_sigma == 0 && p->cmp_offset_sigma == 0 && p->onoff_ratio == 0 &&
           p->stuck_at_0 == 0 && p->stuck_at_1 == 0;
}

static double g_off(const sp_reram_params *p) {
    double top = (double)((1 << p->msb_bits) - 1);
    return p->onoff_ratio > 1.0 ? top / (p->onoff_ratio - 1.0) : 0.0;
}

double sp_reram_cell(const sp_reram_params *p, int layer, int kv_head, int j, int c, int m) {
    double level = m;
    if (p->stuck_at_0 > 0 || p->stuck_at_1 > 0) {
        double u = sp_rng_uniform(sp_rng_key(p->seed, sp_reram_stream(SP_RNG_STUCK, layer, kv_head), (uint64_t)j,
                                             (uint64_t)c, 0));
        if (u < p->stuck_at_0) level = 0;
        else if (u < p->stuck_at_0 + p->stuck_at_1) level = (double)((1 << p->msb_bits) - 1);
    }
    double g = level + g_off(p);
    if (p->d2d_sigma > 0) {
        double n = sp_rng_normal(sp_rng_key(p->seed, sp_reram_stream(SP_RNG_D2D, layer, kv_head), (uint64_t)j,
                                            (uint64_t)c, 0));
        g *= 1.0 + p->d2d_sigma * n;
        if (g < 0) g = 0; /* a conductance cannot be negative */
    }
    return g;
}

double sp_reram_full_scale(const sp_reram_params *p, int d) {
    /* The comparator sees the charge of P = ceil(d / rows) columns shared over their P
     * integration capacitors: its swing is that of one full column (rows cells at the top DAC
     * level and top conductance), so in score units the full scale is P x rows x M x top. */
    int M = (1 << (p->dac_bits - 1)) - 1;
    int parts = (d + p->rows - 1) / p->rows;
    return (double)parts * (double)p->rows * (double)M * ((double)((1 << p->msb_bits) - 1) + g_off(p));
}

double sp_reram_cmp_offset(const sp_reram_params *p, int layer, int kv_head, int j, int d) {
    if (p->cmp_offset_sigma == 0) return 0.0;
    double n = sp_rng_normal(sp_rng_key(p->seed, sp_reram_stream(SP_RNG_CMP, layer, kv_head), (uint64_t)j, 0, 0));
    return p->cmp_offset_sigma * sp_reram_full_scale(p, d) * n;
}

double sp_reram_read_normal(const sp_reram_params *p, int layer, int head, int kv_head, long long seq_id, int pos,
                            int j) {
    /* One read per (query, key): the stream also names the query head, whose query is
     * applied to the shared KV-head array in its own read. */
    uint64_t a = sp_reram_stream(SP_RNG_READ, layer, kv_head) ^ ((uint64_t)(unsigned)head << 32);
    double n = sp_rng_normal(sp_rng_key(p->seed, a, (uint64_t)seq_id, (uint64_t)(unsigned)pos, (uint64_t)(unsigned)j));
    if (n > 8) n = 8;
    if (n < -8) n = -8;
    return n;
}

double sp_reram_score_ref(const sp_reram_params *p, int layer, int head, int kv_head, long long seq_id, int pos,
                          int j, const int *qd, const double *g, int d) {
    double acc = 0.0, var = 0.0;
    for (int c = 0; c < d; c++) {
        double i_c = (double)qd[c] * g[c];
        acc += i_c;
        var += i_c * i_c;
    }
    if (p->c2c_sigma > 0)
        acc += p->c2c_sigma * sqrt(var) * sp_reram_read_normal(p, layer, head, kv_head, seq_id, pos, j);
    return acc;
}

void sp_reram_charge_block(int nq, int nk, int d, const float *qd, const float *g, float *A) {
    /* A (nq x nk) = qd (nq x d) . g (nk x d)^T. With integer levels and |A| < 2^24 every
     * product and partial sum is an integer representable in fp32, so the result is exact
     * whatever the summation order of the BLAS kernel. */
    if (nq <= 0 || nk <= 0) return;
    sp_gemm_nt(nq, nk, d, qd, d, g, d, A, nk); /* own kernel at every level (cpu/gemm.h) */
}
