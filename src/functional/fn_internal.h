/* fn_internal.h: kernels of the SPRINT functional model shared by the operators, the tests
 * and the benchmark (not part of the public API). Paper sections are those of
 * ../shared/docs/sprint-paper.md; design choices in docs/functional.md. */
#ifndef SPRINT_FN_INTERNAL_H
#define SPRINT_FN_INTERNAL_H

#include <math.h>
#include <stdint.h>

#include "sprint/functional.h"

/* ---- quantisation (quant.c, paper sec. 1.2) -------------------------------------------
 * Symmetric 8-bit: x ~ scale * xi, xi = round(x / scale) in [-127, 127] (round half away
 * from zero), scale = max|x| / 127 over the tensor (per_row = 0) or over each row (per_row
 * = 1); an all-zero tensor/row gets scale 1. x is (n, d) with row stride ld; xi is (n, d)
 * packed; scales has n entries (all equal when per_row = 0). Rows with valid[i] == 0
 * (padding; valid NULL = all valid) do not enter the tensor scale and quantise to 0. */
void sp_quant_rows(const float *x, int n, int d, int ld, int per_row, const unsigned char *valid, int8_t *xi,
                   float *scales);

/* Offset encoding of a signed 8-bit key element (sec. 1.6, [I]): u = k + 128 in [1, 255],
 * MSB part m = u >> (8 - b) (b bits, stored in ReRAM), LSB part l = u & (2^(8-b) - 1)
 * (fetched for survivors), so k = m * 2^(8-b) + l - 128 exactly. The in-memory stage
 * reconstructs k ~ m * 2^(8-b) + c - 128 with c = (2^(8-b) - 1) / 2, the mean of l. */
static inline int sp_key_msb(int k, int b) { return (k + 128) >> (8 - b); }
static inline int sp_key_lsb(int k, int b) { return (k + 128) & ((1 << (8 - b)) - 1); }
static inline double sp_key_msb_center(int b) { return ((double)(1 << (8 - b)) - 1.0) / 2.0; }

/* Signed query DAC with dac_bits (2..8): sign + (dac_bits - 1) magnitude bits, levels
 * -M..M with M = 2^(dac_bits-1) - 1, step = 127 / M query-integer units per DAC level
 * (step 1 at 8 bits). qd = sign(q) * min(M, round(|q| / step)). */
double sp_dac_step(int dac_bits);
int sp_dac_level(int q, int dac_bits);

/* ---- in-ReRAM array (reram.c, paper sec. 1.3, Fig. 6a) -------------------------------- */
typedef struct sp_reram_params {
    int msb_bits;           /* b */
    int rows;               /* crossbar rows: a key longer than rows spans ceil(d/rows) columns */
    int dac_bits;
    double d2d_sigma, c2c_sigma, cmp_offset_sigma, onoff_ratio, stuck_at_0, stuck_at_1;
    uint64_t seed;
} sp_reram_params;

/* RNG purposes (first index of sp_rng_key, combined with layer and KV head). */
enum { SP_RNG_D2D = 1, SP_RNG_STUCK = 2, SP_RNG_CMP = 3, SP_RNG_READ = 4 };
uint64_t sp_reram_stream(int purpose, int layer, int kv_head);

/* Normalised conductance of the cell holding MSB level m of key j, element c, of the array
 * of (layer, kv_head): level + g_off (g_off = (2^b - 1)/(ratio - 1), 0 for ratio 0 = ideal),
 * stuck-at replaced by level 0 or 2^b - 1, times (1 + d2d_sigma N) (clamped at 0). Fixed per
 * cell: a pure function of (seed, layer, kv_head, j, c). With every non-ideality zero it
 * returns m exactly. */
double sp_reram_cell(const sp_reram_params *p, int layer, int kv_head, int j, int c, int m);
/* Comparator input-referred offset of key j's comparator, in integer score units (one DAC
 * level through one conductance level), fixed per comparator. */
double sp_reram_cmp_offset(const sp_reram_params *p, int layer, int kv_head, int j, int d);
/* Full-scale swing of a comparator's input in integer score units: P = ceil(d / rows)
 * columns charge-shared onto one comparator, so P x rows x M x (2^b - 1 + g_off). */
double sp_reram_full_scale(const sp_reram_params *p, int d);
/* 1 when every non-ideality is zero (the analog score is then the exact integer dot). */
int sp_reram_ideal(const sp_reram_params *p);

/* Reference analog score, written for clarity (double accumulation): the charge of key j's
 * column(s) for DAC query levels qd (d): sum_c qd[c] * g[c], g = the cells' conductances
 * (g is (d), from sp_reram_cell), plus, when c2c_sigma > 0, read noise of std
 * c2c_sigma * sqrt(sum_c (qd[c] g[c])^2) drawn from (seq_id, head, pos, j) and truncated at
 * +-8 std. Comparator offset not included. */
double sp_reram_score_ref(const sp_reram_params *p, int layer, int head, int kv_head, long long seq_id, int pos,
                          int j, const int *qd, const double *g, int d);
/* Fast path of the ideal charges of a block: A (nq x nk) = qd (nq x d) . g (nk x d)^T in fp32
 * (sgemm), exact for integer levels while every |sum| < 2^24 (d <= 512 at 8 bits). */
void sp_reram_charge_block(int nq, int nk, int d, const float *qd, const float *g, float *A);
/* The read-noise draw N(0,1) truncated at +-8 of one read (query at pos, key j). */
double sp_reram_read_normal(const sp_reram_params *p, int layer, int head, int kv_head, long long seq_id, int pos,
                            int j);

/* ---- Fig. 7 hardware arithmetic (hwmath.c) --------------------------------------------
 * Score of one key from 8-bit query qi and key ki (d): the 12-bit products q x MSB and
 * q x LSB summed in two 16-bit saturating adder trees (modelled as saturating at their
 * output), recombined as (msb << (8-b)) + lsb - 128 sum(q) in a wide adder. *saturated is
 * set to 1 when a tree saturated. */
int32_t sp_hw_score(const int8_t *qi, const int8_t *ki, int d, int b, int *saturated);

/* Softmax and weighted sum of V in the Fig. 7 datapath over n kept keys:
 * logits x_j = logit_scale[j] * z[j] (z = integer scores);
 * t_j = round((max - x_j) 2^F); e_j = LUT_hi[t_j >> F] * LUT_lo[t_j & (2^F-1)] (17 bits, units
 * 2^-16; LUT_hi[i] = round(256 e^-i) for i < 16, else 0; LUT_lo[f] = round(256 e^(-f/2^F)));
 * D = sum_j (e_j >> 8) in a 16-bit saturating accumulator; p_j = min(255, round(e_j / D))
 * (8-bit, units 2^-8); acc_c = sum_j p_j * vi_jc in a 16-bit saturating accumulator; out_c =
 * acc_c * v_scale / 256. vi rows are the kept keys' 8-bit values (n rows of d, row stride
 * ldv). Returns the number of saturation events (0 in the stated error bound's domain). */
int sp_hw_softmax_wsum(int n, const int32_t *z, const double *logit_scale, const int8_t *const *vi_rows, int d,
                       double v_scale, int frac_bits, float *out);
/* The stated error bound of sp_hw_softmax_wsum against the exact softmax-weighted sum of
 * the float values over the same n keys, when no saturation occurs: given the largest
 * logit error delta (nats) of the 8-bit scores, the largest |v|, and the V scale,
 *   eps1 = exp(2 delta + 2^-(F+1)) - 1,
 *   P = (2 eps1 + 4.1n/256) / (1 - eps1 - 2.05n/256) + n/512 + 1/256   (bound on sum |p^ - p|),
 *   bound = vmax P + (1 + P) v_scale / 2.
 * Returns +inf when eps1 + 2.05n/256 >= 1 (no bound). Derivation: docs/functional.md. */
double sp_hw_error_bound(int n, double delta, int frac_bits, double vmax, double v_scale);

/* ---- policies and thresholds (policy.c) ------------------------------------------------ */
typedef enum sp_policy_kind {
    SP_POLICY_LAYER = 0,
    SP_POLICY_HEAD,
    SP_POLICY_TOPK,
    SP_POLICY_ORACLE,
    SP_POLICY_ONCHIP
} sp_policy_kind;
int sp_policy_kind_parse(const char *name); /* -1 when unknown */
const char *sp_policy_kind_name(int kind);

/* ---- the operator (sprint_op.c) --------------------------------------------------------- */
typedef enum sp_fn_mode { SP_FN_DENSE = 0, SP_FN_PRUNING, SP_FN_NORECOMPUTE, SP_FN_SPRINT } sp_fn_mode;
int sp_fn_mode_parse(const char *name); /* -1 when unknown */
const char *sp_fn_mode_name(int mode);   /* static string */

/* sprint.margin_mode, in the order of its choices "sigma|worst|none" (docs/functional.md sec. 4) */
typedef enum sp_fn_margin_mode { SP_FN_MARGIN_SIGMA = 0, SP_FN_MARGIN_WORST = 1, SP_FN_MARGIN_NONE = 2 } sp_fn_margin_mode;
/* policy.onchip_source, in the order of its choices "both|prev|anchors" */
typedef enum sp_fn_onchip_source {
    SP_FN_ONCHIP_BOTH = 0,    /* previous survivors and the first and last visible keys */
    SP_FN_ONCHIP_PREV = 1,    /* previous query's survivors (anchors only when there are none) */
    SP_FN_ONCHIP_ANCHORS = 2  /* first and last visible keys */
} sp_fn_onchip_source;

/* The keys the onchip policy estimates a query's max from (policy.onchip_source): the previous
 * query's survivors below end and/or, when asked or when there are none, the first and last
 * visible keys. Writes them to src (room for n_prev + 2) and returns their count. Shared by
 * the reference and the fast operator. */
static inline int sp_fn_onchip_sources(int onchip_source, const int32_t *prev, int n_prev, int end, int first_vis,
                                       int last_vis, int32_t *src) {
    int ns = 0;
    if (onchip_source != SP_FN_ONCHIP_ANCHORS && n_prev > 0)
        for (int t = 0; t < n_prev; t++)
            if (prev[t] < end) src[ns++] = prev[t];
    if (onchip_source != SP_FN_ONCHIP_PREV || ns == 0) {
        src[ns++] = first_vis;
        src[ns++] = last_vis;
    }
    return ns;
}

typedef struct sp_fn_params {
    int mode;             /* sp_fn_mode */
    int arith_hw;         /* sprint.arith = hw */
    int quant_row;        /* quant.granularity = row */
    sp_reram_params rr;
    int margin_mode;      /* sp_fn_margin_mode */
    double margin_sigma;
    int mass_lost;
    int outputs; /* sprint.outputs: 0 = masks and statistics only */
    int hw_frac_bits;
    int kind;             /* sp_policy_kind */
    double *thr;          /* layer/head thresholds (n_layers * n_heads), owned */
    double delta;
    double topk_fraction;
    long topk_min;
    double topk_mem_factor;
    int onchip_source;    /* sp_fn_onchip_source */
    int head_dim;         /* expected head dim from a thresholds file; 0 = any */
    int impl;             /* sprint.impl: sp_fn_impl */
    int exact_stats;      /* sprint.exact_stats */
} sp_fn_params;

/* sprint.impl, in the order of its choices "auto|fast|reference" */
typedef enum sp_fn_impl { SP_FN_IMPL_AUTO = 0, SP_FN_IMPL_FAST = 1, SP_FN_IMPL_REFERENCE = 2 } sp_fn_impl;

/* The operator's state (sprint_op.c, sprint_fast.c). */
typedef struct sp_fn_ctx {
    sp_fn_params p;
    int n_layers, n_heads;
} sp_fn_ctx;

/* Sums over the elements c of one query that the comparator margin needs: of the DAC levels
 * qd_c, of qd_c^2, of the DAC rounding error e_c = q_c - step qd_c squared, of q_c^2, and
 * the absolute sums of qd, e and q (qi: the 8-bit query, qd: its DAC levels, d each). */
typedef struct sp_fn_dac_sums {
    double sqd, sqd2, eq2, sqi2, sabs_qd, sabs_eq, sabs_qi;
} sp_fn_dac_sums;
sp_fn_dac_sums sp_fn_dac_sums_of(const int8_t *qi, const int *qd, int d, double step);
/* Head statistics of the stored keys over valid cells (integer units): E[k^2], max |k|,
 * E[(m + g_off)^2], E[m^2], E[(2^b - 1 - m)^2], and the comparator's full-scale swing. */
typedef struct sp_fn_keystats {
    double k_ms, kmax, e_g2, e_m2, e_top2, full_scale;
} sp_fn_keystats;
/* The comparator margin (integer score units) of one query, sprint.margin_mode
 * (docs/functional.md sec. 4); 0 outside mode sprint or with margin_mode none. */
double sp_fn_comparator_margin(const sp_fn_params *P, int d, const sp_fn_keystats *ks, const sp_fn_dac_sums *s);

/* exp(x) for x in [-30, 0], relative error < 2e-7: 2^(x log2 e) split into an integer power
 * (exponent bits) and 2^f, |f| <= 1/2, by its degree-6 Taylor polynomial. Branch-free so the
 * mass loop vectorises; used only for the mass-lost statistic (docs/functional.md). */
static inline double sp_fn_mass_exp(double x) {
    double y = x * 1.4426950408889634; /* log2(e) */
    double n = floor(y + 0.5), f = y - n; /* f in [-1/2, 1/2]: Taylor error (ln2/2)^7/7! */
    double p = 1.0 + f * (0.6931471805599453 +
                   f * (0.2402265069591007 +
                   f * (0.0555041086648216 +
                   f * (0.0096181291076285 + f * (0.0013333558146428 + f * 0.0001540353039338)))));
    union { double d; uint64_t u; } e;
    e.u = (uint64_t)((int64_t)n + 1023) << 52;
    return p * e.d;
}

/* ---- the fast operator (sprint_fast.c, issue 9) -----------------------------------------
 * Mode sprint with the in-memory charges as integer sums (packed int4 key MSBs x int8 DAC
 * levels, int_screen.h), fp32 scores of the screen survivors only (exact double products where
 * an fp32 score lies within its rounding bound of a threshold), fp32 softmax and weighted sum
 * over the kept keys. Same kept masks and counters as fn_run (sprint_op.c, the reference);
 * outputs within fp32 rounding of it. A dense fp32 score pass (the reference's sgemm, same
 * bits) runs only for what needs every visible pair: sprint.exact_stats (exact_pass, false
 * prunes/keeps, the observer's score spread), sprint.mass_lost and the oracle policy. */
/* What both implementations check first (sp_attn_op_check, the scale, head dim <= 512, finite
 * Q/K/V, |q| |k| inside fp32); *st gets the stats slot, *kmaxnorm the largest valid key norm
 * (0 in hw arithmetic). */
sp_status sp_fn_check_head(sp_attn_op *op, const sp_fn_params *P, const sp_attn_head *h, sp_attn_stats **st,
                           double *kmaxnorm, sp_error *err);
/* NULL when the fast implementation applies to p, else why not (static string). */
const char *sp_fn_fast_unsupported(const sp_fn_params *p);
/* op->run of the fast implementation (op->ctx is an sp_fn_ctx). */
sp_status sp_fn_fast_run(sp_attn_op *op, const sp_attn_head *h, sp_error *err);

/* Builds a pruning / norecompute / sprint operator owning p->thr (set p->thr = NULL after);
 * name must be a static string (sp_fn_mode_name). */
sp_attn_op *sp_fn_op_create(const char *name, int n_layers, int n_heads, const sp_fn_params *p);
/* Fills p from the config for mode (thresholds left NULL, delta from policy.delta);
 * SP_ERR_CONFIG on an invalid combination. */
sp_status sp_fn_params_from_config(const sp_config *cfg, int mode, sp_fn_params *p, sp_error *err);

#endif
