/* test_sprint_op.c: do the pruning, sprint-norecompute and sprint operators compute what the
 * paper's dataflow says, reproduce dense attention when nothing is pruned, respect padding
 * masks, stay deterministic across threads, and reject bad inputs? */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "functional/fn_internal.h"

/* ---- helpers ------------------------------------------------------------------------ */
typedef struct rec_log {
    int n;
    int n_vis[4096], n_mem[4096], n_kept[4096], fp[4096];
    unsigned char *kept, *mem; /* (n x n_k) membership */
    int n_k;
} rec_log;

static void observer(void *user, const sp_query_record *r) {
    rec_log *lg = user;
    int i = r->qi;
    lg->n++;
    lg->n_vis[i] = r->n_visible;
    lg->n_mem[i] = r->n_mem_kept;
    lg->n_kept[i] = r->n_kept;
    lg->fp[i] = r->n_false_prunes;
    for (int t = 0; t < r->n_mem_kept; t++) {
        if (t) cr_assert(r->mem_kept[t] > r->mem_kept[t - 1], "mem_kept sorted");
        lg->mem[(size_t)i * lg->n_k + r->mem_kept[t]] = 1;
    }
    for (int t = 0; t < r->n_kept; t++) {
        if (t) cr_assert(r->kept[t] > r->kept[t - 1], "kept sorted");
        cr_assert(lg->mem[(size_t)i * lg->n_k + r->kept[t]], "kept is a subset of mem_kept");
        lg->kept[(size_t)i * lg->n_k + r->kept[t]] = 1;
    }
}

static rec_log *log_new(int nq, int nk) {
    rec_log *lg = calloc(1, sizeof *lg);
    lg->n_k = nk;
    lg->kept = calloc((size_t)nq * nk, 1);
    lg->mem = calloc((size_t)nq * nk, 1);
    return lg;
}
static void log_free(rec_log *lg) {
    free(lg->kept), free(lg->mem), free(lg);
}

static float *randn(int n, double sd, uint64_t seed) {
    float *x = malloc(sizeof(float) * (size_t)n);
    sp_rng r;
    sp_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) x[i] = (float)(sd * sp_rng_next_normal(&r));
    return x;
}

static sp_attn_head head(int nq, int nk, int d, const float *q, const float *k, const float *v, float *out, int causal) {
    sp_attn_head h = {.layer = 0, .head = 0, .kv_head = 0, .seq_id = 1, .n_q = nq, .n_k = nk, .d = d, .q = q, .k = k,
                      .v = v, .out = out, .ldq = d, .ldk = d, .ldv = d, .ldo = d, .causal = causal,
                      .q_offset = causal ? nk - nq : 0, .scale = (float)(1.0 / sqrt(d))};
    return h;
}

static sp_attn_op *make(const char *mode, sp_config *cfg) {
    sp_op_request req = {.mode = mode, .cfg = cfg};
    sp_attn_op *op = NULL;
    sp_error err = {0};
    sp_status s = sp_attn_op_create(&req, 1, 1, &op, &err);
    cr_assert_eq(s, SP_OK, "create %s: %s", mode, err.msg);
    return op;
}

static void set(sp_config *c, const char *kv) {
    sp_error err = {0};
    cr_assert_eq(sp_config_set(c, kv, "test", &err), SP_OK, "%s", err.msg);
}

/* The default config with the NULL-terminated "key=value" settings applied. */
static void cfg_with(sp_config *c, ...) {
    sp_config_defaults(c);
    va_list ap;
    va_start(ap, c);
    for (const char *kv = va_arg(ap, const char *); kv; kv = va_arg(ap, const char *)) set(c, kv);
    va_end(ap);
}

/* ---- tiny hand-computed cases -------------------------------------------------------- */
/* d = 2, scale 1/sqrt(2); q = (2, 0); keys (1,0), (0,1), (-1,0), (2,0) -> scores
 * sqrt2 * (1, 0, -1, 2). Threshold 0.5 keeps keys 0 and 3. */
static const float Q1[2] = {2, 0};
static const float K1[8] = {1, 0, 0, 1, -1, 0, 2, 0};
static const float V1[8] = {1, 2, 3, 4, 5, 6, 7, 8};

Test(sprint_op, pruning_fixed_threshold_hand_case) {
    sp_config cfg;
    cfg_with(&cfg, "policy.kind=layer", "policy.threshold=0.5", NULL);
    sp_attn_op *op = make("pruning", &cfg);
    float out[2];
    sp_attn_head h = head(1, 4, 2, Q1, K1, V1, out, 0);
    sp_error err = {0};
    cr_assert_eq(op->run(op, &h, &err), SP_OK, "%s", err.msg);
    double s0 = sqrt(2.0), s3 = 2 * sqrt(2.0);
    double p0 = exp(s0 - s3) / (exp(s0 - s3) + 1), p3 = 1 - p0;
    cr_assert_float_eq(out[0], p0 * 1 + p3 * 7, 1e-6);
    cr_assert_float_eq(out[1], p0 * 2 + p3 * 8, 1e-6);
    sp_attn_stats *st = &op->stats[0];
    cr_assert_eq(st->pairs_visible, 4);
    cr_assert_eq(st->pairs_kept, 2);
    cr_assert_eq(st->pairs_mem_kept, 4, "pruning fetches everything");
    cr_assert_eq(st->exact_pass, 2);
    cr_assert_eq(st->false_keeps, 2);
    cr_assert_eq(st->false_prunes, 0);
    sp_attn_op_free(op);
}

Test(sprint_op, oracle_and_topk_hand_case) {
    sp_config cfg;
    cfg_with(&cfg, "policy.kind=oracle", NULL);
    set(&cfg, "policy.delta=1.5"); /* max 2.83: keeps 1.41 (key 0) and 2.83 (key 3), not 0 */
    sp_attn_op *op = make("pruning", &cfg);
    float out[2];
    sp_attn_head h = head(1, 4, 2, Q1, K1, V1, out, 0);
    sp_error err = {0};
    cr_assert_eq(op->run(op, &h, &err), SP_OK);
    cr_assert_eq(op->stats[0].pairs_kept, 2);
    sp_attn_op_free(op);
    set(&cfg, "policy.delta=1.0"); /* keeps key 3 alone: output = v3 */
    op = make("pruning", &cfg);
    cr_assert_eq(op->run(op, &h, &err), SP_OK);
    cr_assert_eq(op->stats[0].pairs_kept, 1);
    cr_assert_float_eq(out[0], 7.0, 1e-6);
    cr_assert_float_eq(out[1], 8.0, 1e-6);
    sp_attn_op_free(op);
    set(&cfg, "policy.kind=topk");
    set(&cfg, "policy.topk_fraction=0.75"); /* ceil(3) keys: 3, 0, 1 */
    op = make("pruning", &cfg);
    rec_log *lg = log_new(1, 4);
    op->observer = observer;
    op->observer_user = lg;
    cr_assert_eq(op->run(op, &h, &err), SP_OK);
    cr_assert_eq(lg->n_kept[0], 3);
    cr_assert(lg->kept[0] && lg->kept[1] && !lg->kept[2] && lg->kept[3]);
    log_free(lg);
    sp_attn_op_free(op);
}

Test(sprint_op, sprint_in_memory_decision_hand_case) {
    /* b = 4, 8-bit DAC, per-head scales: q -> (127, 0), k scale 2/127 -> k0 = (64, 0) (63.5 rounds
     * away), k1 = (0, 64), k2 = (-64, 0), k3 = (127, 0). MSB m = (k + 128) >> 4: 12, 8, 4, 15 on
     * element 0; approx k = 16 m + 7.5 - 128 = 71.5, (7.5), -56.5, 119.5. Approx score in logits =
     * scale * sq * sk * 127 * approx_k = sqrt2 * 2 * approx_k / 127 -> 1.592, 0.167, -1.258, 2.661.
     * Threshold 1.0 without margin: memory keeps keys 0 and 3; norecompute feeds those scores. */
    sp_config cfg;
    cfg_with(&cfg, "policy.kind=layer", "policy.threshold=1.0", "sprint.margin_mode=none", NULL);
    sp_attn_op *op = make("sprint-norecompute", &cfg);
    float out[2];
    sp_attn_head h = head(1, 4, 2, Q1, K1, V1, out, 0);
    sp_error err = {0};
    cr_assert_eq(op->run(op, &h, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(op->stats[0].pairs_mem_kept, 2);
    double c = sqrt(2.0) * 2.0 / 127.0;
    double a0 = c * 71.5, a3 = c * 119.5;
    double p0 = exp(a0 - a3) / (exp(a0 - a3) + 1), p3 = 1 - p0;
    cr_assert_float_eq(out[0], p0 * 1 + p3 * 7, 1e-6, "got %f want %f", out[0], p0 * 1 + p3 * 7);
    sp_attn_op_free(op);
    /* threshold 1.8: memory keeps only key 3 although key 0's exact score 1.414 fails anyway;
     * threshold 1.3 with margin none: memory keeps key 0 (1.592) and 3, recompute drops key 0
     * (exact 1.414 passes 1.3, so kept) -> sprint keeps 2; with threshold 1.5 memory keeps 0
     * (approx 1.592) but the exact score 1.414 fails: a false keep, kept = 1. */
    set(&cfg, "policy.threshold=1.5");
    op = make("sprint", &cfg);
    cr_assert_eq(op->run(op, &h, &err), SP_OK);
    cr_assert_eq(op->stats[0].pairs_mem_kept, 2);
    cr_assert_eq(op->stats[0].pairs_kept, 1);
    cr_assert_eq(op->stats[0].false_keeps, 1);
    cr_assert_eq(op->stats[0].exact_pass, 1);
    cr_assert_float_eq(out[0], 7.0, 1e-6);
    sp_attn_op_free(op);
}

/* ---- threshold minus infinity reproduces dense bit for bit --------------------------- */
static void bit_for_bit(const char *mode, int causal, int padded) {
    int nq = 37, nk = 53, d = 16;
    float *q = randn(nq * d, 1.5, 1), *k = randn(nk * d, 1.5, 2), *v = randn(nk * d, 1, 3);
    float *o1 = calloc((size_t)nq * d, sizeof(float)), *o2 = calloc((size_t)nq * d, sizeof(float));
    unsigned char kv[53], qv[37];
    for (int j = 0; j < nk; j++) kv[j] = padded ? (j % 5 != 2) : 1;
    for (int i = 0; i < nq; i++) qv[i] = padded ? (i % 7 != 3) : 1;
    sp_attn_head h = head(nq, nk, d, q, k, v, o1, causal);
    h.key_valid = kv;
    h.query_valid = qv;
    sp_attn_op *dense = sp_attn_dense_create(1, 1);
    sp_error err = {0};
    cr_assert_eq(dense->run(dense, &h, &err), SP_OK);
    sp_config cfg;
    /* the double arithmetic of the reference implementation (the fast one: tests/test_fn_fast.c) */
    cfg_with(&cfg, "policy.kind=head", "policy.threshold=-1e30", "sprint.impl=reference", NULL);
    sp_attn_op *op = make(mode, &cfg);
    h.out = o2;
    cr_assert_eq(op->run(op, &h, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(memcmp(o1, o2, sizeof(float) * (size_t)nq * d), 0, "%s causal=%d padded=%d differs from dense",
                 mode, causal, padded);
    cr_assert_eq(op->stats[0].pairs_kept, dense->stats[0].pairs_visible);
    cr_assert_eq(op->stats[0].pairs_visible, dense->stats[0].pairs_visible);
    cr_assert_eq(op->stats[0].queries, dense->stats[0].queries);
    cr_assert_eq(op->stats[0].false_prunes, 0);
    sp_attn_op_free(op);
    sp_attn_op_free(dense);
    free(q), free(k), free(v), free(o1), free(o2);
}

Test(sprint_op, minus_infinity_is_dense_bit_for_bit) {
    for (int causal = 0; causal < 2; causal++)
        for (int padded = 0; padded < 2; padded++) {
            bit_for_bit("pruning", causal, padded);
            bit_for_bit("sprint", causal, padded);
        }
}

/* ---- zero non-idealities: the in-memory decision is the exact integer comparison ----- */
Test(sprint_op, ideal_memory_decision_equals_integer_score) {
    int nq = 20, nk = 300, d = 64;
    float *q = randn(nq * d, 1, 11), *k = randn(nk * d, 1, 12), *v = randn(nk * d, 1, 13);
    float *o = calloc((size_t)nq * d, sizeof(float));
    for (int b = 2; b <= 8; b += 3)
    for (int dac = 4; dac <= 8; dac += 4) {
        sp_config cfg;
        cfg_with(&cfg, "policy.kind=layer", "policy.threshold=0.3", "sprint.margin_mode=none", NULL);
        cfg.quant_msb_bits = b;
        cfg.reram_dac_bits = dac;
        sp_attn_op *op = make("sprint-norecompute", &cfg);
        rec_log *lg = log_new(nq, nk);
        op->observer = observer;
        op->observer_user = lg;
        sp_attn_head h = head(nq, nk, d, q, k, v, o, 0);
        sp_error err = {0};
        cr_assert_eq(op->run(op, &h, &err), SP_OK);
        int8_t *qi = malloc((size_t)nq * d), *ki = malloc((size_t)nk * d);
        float sq[20], *sk = malloc(sizeof(float) * nk);
        sp_quant_rows(q, nq, d, d, 0, NULL, qi, sq);
        sp_quant_rows(k, nk, d, d, 0, NULL, ki, sk);
        int s = 8 - b;
        double cm = sp_key_msb_center(b), lf = h.scale * (double)sq[0] * sk[0];
        for (int i = 0; i < nq; i++)
            for (int j = 0; j < nk; j++) {
                long long a = 0, qs = 0; /* integer charge: DAC query . K_MSB */
                for (int c = 0; c < d; c++) {
                    int qd = sp_dac_level(qi[i * d + c], dac);
                    a += (long long)qd * sp_key_msb(ki[j * d + c], b);
                    qs += qd;
                }
                double step = sp_dac_step(dac);
                double approx = lf * step * (ldexp((double)a, s) + (cm - 128) * qs);
                int keep = approx >= 0.3;
                cr_assert_eq(lg->mem[(size_t)i * nk + j], keep, "b=%d dac=%d q%d k%d approx %.9f", b, dac, i, j, approx);
            }
        log_free(lg);
        free(qi), free(ki), free(sk);
        sp_attn_op_free(op);
    }
    free(q), free(k), free(v), free(o);
}

/* ---- relative policies: onchip keeps the oracle's set, fetches a superset ------------- */
Test(sprint_op, onchip_matches_oracle_kept_set_and_fetches_superset) {
    int n = 200, d = 64;
    float *q = randn(n * d, 1.2, 21), *k = randn(n * d, 1.2, 22), *v = randn(n * d, 1, 23);
    float *o = calloc((size_t)n * d, sizeof(float));
    sp_config cfg;
    cfg_with(&cfg, "policy.delta=2.5", "policy.kind=oracle", NULL);
    sp_attn_op *orc = make("pruning", &cfg);
    set(&cfg, "policy.kind=onchip");
    sp_attn_op *onc = make("sprint", &cfg);
    rec_log *lo = log_new(n, n), *ln = log_new(n, n);
    orc->observer = observer, orc->observer_user = lo;
    onc->observer = observer, onc->observer_user = ln;
    sp_attn_head h = head(n, n, d, q, k, v, o, 1);
    sp_error err = {0};
    cr_assert_eq(orc->run(orc, &h, &err), SP_OK);
    cr_assert_eq(onc->run(onc, &h, &err), SP_OK);
    cr_assert_eq(onc->stats[0].false_prunes, 0, "margin 3 sigma: no false prune expected here");
    cr_assert_eq(memcmp(lo->kept, ln->kept, (size_t)n * n), 0, "onchip kept = oracle kept");
    cr_assert(onc->stats[0].pairs_mem_kept >= onc->stats[0].pairs_kept);
    cr_assert(onc->stats[0].pairs_mem_kept < 0.9 * onc->stats[0].pairs_visible, "memory prunes something");
    cr_assert(onc->stats[0].pairs_kept < 0.5 * onc->stats[0].pairs_visible);
    /* locality bookkeeping: reuse + new fetch = mem_kept of queries after the first */
    sp_attn_stats *st = &onc->stats[0];
    cr_assert_float_eq(st->reuse_pairs + st->new_fetch, st->prev_kept, 1e-9);
    cr_assert_float_eq(st->prev_kept, st->pairs_mem_kept - ln->n_mem[0], 1e-9);
    /* the counters as attention.h defines them, recomputed from the observer's records */
    double reuse = 0, later_vis = 0;
    for (int i = 1; i < n; i++) {
        later_vis += ln->n_vis[i];
        for (int j = 0; j < n; j++) reuse += ln->mem[(size_t)i * n + j] & ln->mem[(size_t)(i - 1) * n + j];
    }
    cr_assert_eq(st->reuse_pairs, reuse);
    cr_assert(reuse > 0 && reuse < st->prev_kept, "some, not all, survivors reused");
    cr_assert_eq(st->later_visible, later_vis);
    cr_assert_eq(st->later_visible, st->pairs_visible - 1, "causal: query 0 sees 1 key");
    log_free(lo), log_free(ln);
    sp_attn_op_free(orc), sp_attn_op_free(onc);
    free(q), free(k), free(v), free(o);
}

/* ---- hw arithmetic within the stated bound of float ----------------------------------- */
Test(sprint_op, hw_softmax_within_stated_bound) {
    sp_rng r;
    sp_rng_seed(&r, 5);
    int d = 16;
    double worst_ratio = 0, mean_err = 0;
    int cases = 0;
    for (int trial = 0; trial < 300; trial++) {
        int n = 1 + (int)(sp_rng_next(&r) % 8);
        double z[8], v[8][16];
        double vmax = 0;
        for (int j = 0; j < n; j++) {
            z[j] = 3 * sp_rng_next_normal(&r);
            for (int c = 0; c < d; c++) {
                v[j][c] = sp_rng_next_normal(&r);
                if (fabs(v[j][c]) > vmax) vmax = fabs(v[j][c]);
            }
        }
        /* quantise: scores as integers with logit scale ls; V per tensor */
        double ls = 0.01, sv = vmax / 127;
        int32_t zi[8];
        double lsc[8];
        int8_t vi[8][16];
        const int8_t *rows[8];
        double delta = 0;
        for (int j = 0; j < n; j++) {
            zi[j] = (int32_t)lround(z[j] / ls);
            lsc[j] = ls;
            if (fabs(zi[j] * ls - z[j]) > delta) delta = fabs(zi[j] * ls - z[j]);
            for (int c = 0; c < d; c++) vi[j][c] = (int8_t)lround(v[j][c] / sv);
            rows[j] = vi[j];
        }
        float out[16];
        int sats = sp_hw_softmax_wsum(n, zi, lsc, rows, d, sv, 6, out);
        cr_assert_eq(sats, 0);
        double mx = z[0], den = 0;
        for (int j = 1; j < n; j++) mx = fmax(mx, z[j]);
        for (int j = 0; j < n; j++) den += exp(z[j] - mx);
        double bound = sp_hw_error_bound(n, delta, 6, vmax, sv);
        for (int c = 0; c < d; c++) {
            double ref = 0;
            for (int j = 0; j < n; j++) ref += exp(z[j] - mx) / den * v[j][c];
            double e = fabs(out[c] - ref);
            cr_assert(e <= bound, "trial %d n=%d: error %g > bound %g", trial, n, e, bound);
            worst_ratio = fmax(worst_ratio, e / bound);
            mean_err += e / vmax;
            cases++;
        }
    }
    cr_assert(mean_err / cases < 0.02, "typical error %g of max|v| is too large", mean_err / cases);
    cr_assert(worst_ratio > 0.02, "bound is implausibly loose (worst %g of it used)", worst_ratio);
}

Test(sprint_op, hw_mode_close_to_float_mode_on_a_head) {
    int n = 64, d = 32;
    float *q = randn(n * d, 1, 31), *k = randn(n * d, 1, 32), *v = randn(n * d, 1, 33);
    float *of = calloc((size_t)n * d, sizeof(float)), *oh = calloc((size_t)n * d, sizeof(float));
    sp_config cfg;
    cfg_with(&cfg, "policy.kind=oracle", NULL);
    set(&cfg, "policy.delta=1.0"); /* few keys kept: the bound is tight */
    sp_attn_op *fo = make("sprint", &cfg);
    set(&cfg, "sprint.arith=hw");
    sp_attn_op *ho = make("sprint", &cfg);
    sp_attn_head h = head(n, n, d, q, k, v, of, 1);
    sp_error err = {0};
    cr_assert_eq(fo->run(fo, &h, &err), SP_OK);
    h.out = oh;
    cr_assert_eq(ho->run(ho, &h, &err), SP_OK);
    double maxerr = 0, vmax = 0;
    for (int i = 0; i < n * d; i++) {
        maxerr = fmax(maxerr, fabs(of[i] - oh[i]));
        vmax = fmax(vmax, fabs(v[i]));
    }
    cr_assert(maxerr < 0.25 * vmax, "hw vs float max error %g (max|v| %g)", maxerr, vmax);
    cr_assert(maxerr > 0, "hw arithmetic must differ from float somewhere");
    sp_attn_op_free(fo), sp_attn_op_free(ho);
    free(q), free(k), free(v), free(of), free(oh);
}

/* ---- determinism whatever the thread count -------------------------------------------- */
static void run_heads(int threads, float *out, sp_attn_stats *tot) {
    int H = 6, n = 96, d = 32;
    sp_config cfg;
    cfg_with(&cfg, "reram.c2c_sigma=0.05", "reram.d2d_sigma=0.05", "reram.cmp_offset_sigma=0.0005",
             "reram.stuck_at_0=0.01", "policy.delta=3", "run.seed=99", NULL);
    sp_op_request req = {.mode = "sprint", .cfg = &cfg};
    sp_attn_op *op = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_attn_op_create(&req, 1, H, &op, &err), SP_OK);
    float *q = randn(H * n * d, 1, 41), *k = randn(H * n * d, 1, 42), *v = randn(H * n * d, 1, 43);
    sp_status st[6];
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int hh = 0; hh < H; hh++) {
        sp_attn_head h = head(n, n, d, q + hh * n * d, k + hh * n * d, v + hh * n * d, out + hh * n * d, 1);
        h.head = hh;
        h.kv_head = hh / 2;
        sp_error e2;
        st[hh] = op->run(op, &h, &e2);
    }
    for (int hh = 0; hh < H; hh++) cr_assert_eq(st[hh], SP_OK);
    sp_attn_stats_total(op, tot);
    sp_attn_op_free(op);
    free(q), free(k), free(v);
}

Test(sprint_op, same_result_for_a_seed_whatever_the_thread_count) {
    int N = 6 * 96 * 32;
    float *o1 = calloc(N, sizeof(float)), *o2 = calloc(N, sizeof(float));
    sp_attn_stats t1, t2;
    run_heads(1, o1, &t1);
    run_heads(2, o2, &t2);
    cr_assert_eq(memcmp(o1, o2, sizeof(float) * N), 0);
    cr_assert_eq(memcmp(&t1, &t2, sizeof t1), 0);
    cr_assert(t1.pairs_mem_kept > t1.pairs_kept, "noise run keeps a margin");
    free(o1), free(o2);
}

/* The onchip estimate uses exactly the keys on chip: the previous query's fetched keys and the
 * first and last visible ones. With b = 8, an 8-bit DAC, an ideal array and no margin the
 * in-memory score is the integer q.k of the quantised vectors, so the fetched set of query i
 * must be {j <= i : lf * qi.ki >= est_i - delta}, est_i = max of the exact scores over
 * mem_kept(i - 1) + {0, i}; recomputed here independently of the operator. */
Test(sprint_op, onchip_estimate_uses_exactly_the_keys_on_chip) {
    int n = 96, d = 32;
    float *q = randn(n * d, 1.2, 81), *k = randn(n * d, 1.2, 82), *v = randn(n * d, 1, 83);
    float *o = calloc((size_t)n * d, sizeof(float));
    sp_config cfg;
    cfg_with(&cfg, "policy.kind=onchip", "policy.delta=2", "quant.msb_bits=8", "reram.dac_bits=8",
             "sprint.margin_mode=none", NULL);
    sp_attn_op *op = make("sprint", &cfg);
    rec_log *lg = log_new(n, n);
    op->observer = observer, op->observer_user = lg;
    sp_attn_head h = head(n, n, d, q, k, v, o, 1);
    sp_error err = {0};
    cr_assert_eq(op->run(op, &h, &err), SP_OK, "%s", err.msg);
    int8_t *qi = malloc((size_t)n * d), *ki = malloc((size_t)n * d);
    float sq[96], sk[96];
    sp_quant_rows(q, n, d, d, 0, NULL, qi, sq);
    sp_quant_rows(k, n, d, d, 0, NULL, ki, sk);
    int checked = 0, pruned = 0;
    for (int i = 1; i < n; i++) {
        double est = -INFINITY;
        for (int j = 0; j <= i; j++) {
            if (!(lg->mem[(size_t)(i - 1) * n + j] || j == 0 || j == i)) continue;
            double e = 0;
            for (int c = 0; c < d; c++) e += (double)q[i * d + c] * (double)k[j * d + c];
            est = fmax(est, e * (double)h.scale);
        }
        for (int j = 0; j <= i; j++) {
            long z = 0;
            for (int c = 0; c < d; c++) z += (long)qi[i * d + c] * ki[j * d + c];
            double x = (double)h.scale * (double)sq[i] * (double)sk[j] * (double)z, thr = est - 2.0;
            if (fabs(x - thr) < 1e-9) continue; /* a tie: rounding decides */
            cr_assert_eq(lg->mem[(size_t)i * n + j], x >= thr, "query %d key %d: fetched %d, expected %d", i, j,
                         lg->mem[(size_t)i * n + j], x >= thr);
            checked++;
            pruned += x < thr;
        }
    }
    cr_assert(checked > 3000 && pruned > checked / 4, "a real test: %d checked, %d pruned", checked, pruned);
    log_free(lg);
    sp_attn_op_free(op);
    free(q), free(k), free(v), free(o), free(qi), free(ki);
}

/* ---- bidirectional with padding: padded rows/columns removed ("mask only") ------------- */
Test(sprint_op, padding_mask_equals_compacted_sequence) {
    int n = 40, d = 16;
    float *q = randn(n * d, 1.3, 51), *k = randn(n * d, 1.3, 52), *v = randn(n * d, 1, 53);
    unsigned char valid[40];
    int nv = 0;
    for (int i = 0; i < n; i++) {
        valid[i] = i < 30 && i % 4 != 1;
        nv += valid[i];
    }
    float *qc = malloc(sizeof(float) * nv * d), *kc = malloc(sizeof(float) * nv * d), *vc = malloc(sizeof(float) * nv * d);
    for (int i = 0, t = 0; i < n; i++)
        if (valid[i]) {
            memcpy(qc + t * d, q + i * d, sizeof(float) * d);
            memcpy(kc + t * d, k + i * d, sizeof(float) * d);
            memcpy(vc + t * d, v + i * d, sizeof(float) * d);
            t++;
        }
    /* garbage in the padding must not matter: finite, then NaN (the padded rows are not
     * checked for finite values, so nothing derived from them may enter a decision) */
    const char *modes[3] = {"pruning", "sprint-norecompute", "sprint"};
    const float garbages[3] = {1000.0f, NAN, INFINITY};
    for (int c = 0; c < d; c++) q[c] = qc[c] = 0.0f; /* a zero query: rounding bound 0 x |k|max */
    for (int m = 0; m < 9; m++) {
        float garbage = garbages[m / 3];
        for (int i = 0; i < n; i++)
            if (!valid[i])
                for (int c = 0; c < d; c++) q[i * d + c] = k[i * d + c] = v[i * d + c] = garbage;
        sp_config cfg;
        cfg_with(&cfg, "policy.kind=oracle", "policy.delta=2", NULL);
        sp_attn_op *op = make(modes[m % 3], &cfg), *opc = make(modes[m % 3], &cfg);
        rec_log *lg = log_new(n, n);
        op->observer = observer, op->observer_user = lg;
        float *o = calloc((size_t)n * d, sizeof(float)), *oc = calloc((size_t)nv * d, sizeof(float));
        for (int i = 0; i < n * d; i++) o[i] = 5; /* must be overwritten */
        sp_attn_head h = head(n, n, d, q, k, v, o, 0);
        h.key_valid = valid;
        h.query_valid = valid;
        sp_attn_head hc = head(nv, nv, d, qc, kc, vc, oc, 0);
        sp_error err = {0};
        cr_assert_eq(op->run(op, &h, &err), SP_OK, "%s", err.msg);
        cr_assert_eq(opc->run(opc, &hc, &err), SP_OK);
        for (int i = 0, t = 0; i < n; i++) {
            if (!valid[i]) {
                for (int c = 0; c < d; c++) cr_assert_eq(o[i * d + c], 0.0f, "padded query row is zero");
                continue;
            }
            for (int j = 0; j < n; j++)
                if (!valid[j]) cr_assert(!lg->mem[(size_t)i * n + j], "padded key never fetched");
            for (int c = 0; c < d; c++)
                cr_assert_eq(o[i * d + c], oc[t * d + c], "%s (padding %g): query %d differs from the compacted run",
                             modes[m % 3], (double)garbage, i);
            t++;
        }
        cr_assert_eq(op->stats[0].queries, nv);
        cr_assert_eq(op->stats[0].pairs_visible, (double)nv * nv);
        cr_assert_eq(op->stats[0].pairs_kept, opc->stats[0].pairs_kept);
        cr_assert_eq(op->stats[0].pairs_mem_kept, opc->stats[0].pairs_mem_kept);
        cr_assert_eq(op->stats[0].new_fetch, opc->stats[0].new_fetch);
        log_free(lg);
        free(o), free(oc);
        sp_attn_op_free(op), sp_attn_op_free(opc);
    }
    free(q), free(k), free(v), free(qc), free(kc), free(vc);
}

/* ---- non-idealities hurt, stats stay consistent ---------------------------------------- */
Test(sprint_op, noise_causes_false_prunes_without_margin) {
    int n = 128, d = 64;
    float *q = randn(n * d, 1.2, 61), *k = randn(n * d, 1.2, 62), *v = randn(n * d, 1, 63);
    float *o = calloc((size_t)n * d, sizeof(float));
    sp_config cfg;
    cfg_with(&cfg, "policy.kind=oracle", "policy.delta=2", "sprint.margin_mode=none", "reram.c2c_sigma=0.3", NULL);
    sp_attn_op *op = make("sprint", &cfg);
    sp_attn_head h = head(n, n, d, q, k, v, o, 1);
    sp_error err = {0};
    cr_assert_eq(op->run(op, &h, &err), SP_OK);
    sp_attn_stats *st = &op->stats[0];
    cr_assert(st->false_prunes > 0);
    cr_assert_eq(st->pairs_kept, st->exact_pass - st->false_prunes, "kept = passing and fetched");
    cr_assert(st->mass_lost > 0);
    double fp_nomargin = st->false_prunes;
    sp_attn_op_free(op);
    set(&cfg, "sprint.margin_mode=sigma");
    op = make("sprint", &cfg);
    cr_assert_eq(op->run(op, &h, &err), SP_OK);
    cr_assert(op->stats[0].false_prunes < 0.2 * fp_nomargin + 1, "the margin removes most false prunes");
    sp_attn_op_free(op);
    free(q), free(k), free(v), free(o);
}

/* The margin covers the approximation error it claims to: "worst" bounds the MSB truncation,
 * DAC and 8-bit quantisation errors, so an ideal array has no false prune at all; "sigma"
 * (3 std) leaves only a few. A coarse DAC and a small b make each error term matter. */
Test(sprint_op, margin_covers_truncation_dac_and_quantisation_errors) {
    int n = 128, d = 64;
    float *q = randn(n * d, 2.5, 91), *k = randn(n * d, 2.5, 92), *v = randn(n * d, 1, 93);
    float *o = calloc((size_t)n * d, sizeof(float));
    const char *cases[3][2] = {{"quant.msb_bits=3", "reram.dac_bits=8"},
                               {"quant.msb_bits=6", "reram.dac_bits=4"},
                               {"quant.msb_bits=8", "reram.dac_bits=8"}};
    for (int t = 0; t < 3; t++) {
        double fpr[2];
        for (int m = 0; m < 2; m++) {
            sp_config cfg;
            cfg_with(&cfg, "policy.kind=oracle", "policy.delta=2", NULL);
            set(&cfg, cases[t][0]);
            set(&cfg, cases[t][1]);
            set(&cfg, m ? "sprint.margin_mode=sigma" : "sprint.margin_mode=worst");
            sp_attn_op *op = make("sprint", &cfg);
            sp_attn_head h = head(n, n, d, q, k, v, o, 1);
            sp_error err = {0};
            cr_assert_eq(op->run(op, &h, &err), SP_OK, "%s", err.msg);
            fpr[m] = sp_attn_stats_false_prune_rate(&op->stats[0]);
            double mk = sp_attn_stats_mem_kept_fraction(&op->stats[0]);
            cr_assert(mk < (m ? 0.5 : 0.999), "%s %s: the memory stage prunes (%g fetched)", cases[t][0], cases[t][1], mk);
            sp_attn_op_free(op);
        }
        cr_assert_eq(fpr[0], 0.0, "%s %s: worst-case margin, false-prune rate %g", cases[t][0], cases[t][1], fpr[0]);
        cr_assert(fpr[1] < 0.005, "%s %s: 3-sigma margin, false-prune rate %g", cases[t][0], cases[t][1], fpr[1]);
    }
    free(q), free(k), free(v), free(o);
}

/* ---- bad inputs: clear errors ----------------------------------------------------------- */
/* A NaN or infinity anywhere in a row of d = 20 (the check's 8-lane blocks and its tail) is
 * found and named by row; the largest key norm is found in any row; the largest finite values
 * and subnormals are not refused as such. */
Test(sprint_op, head_checks_see_every_row_and_lane) {
    enum { N = 7, D = 20 }; /* 7 rows: a block of 4 and a tail of 3 */
    float q[N * D], k[N * D], v[N * D], o[N * D];
    for (int t = 0; t < N * D; t++) q[t] = 0.1f * (float)(t % 7), k[t] = 0.2f * (float)(t % 5), v[t] = 1;
    sp_config cfg;
    cfg_with(&cfg, "policy.delta=1", NULL);
    sp_attn_op *op = make("sprint", &cfg);
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    sp_error err = {0};
    for (int c = 0; c < D; c++)
        for (int b = 0; b < 3; b++) {
            float *arr[3] = {q, k, v};
            const char *name[3] = {"Q row 2", "K row 2", "V row 2"};
            for (int a = 0; a < 3; a++) {
                float keep = arr[a][2 * D + c];
                arr[a][2 * D + c] = bad[b];
                sp_attn_head h = head(N, N, D, q, k, v, o, 0);
                cr_assert_eq(op->run(op, &h, &err), SP_ERR_DATA, "%s element %d value %g", name[a], c, (double)bad[b]);
                cr_assert(strstr(err.msg, "NaN or infinite") && strstr(err.msg, name[a]), "%s", err.msg);
                arr[a][2 * D + c] = keep;
            }
        }
    /* the largest key norm (rows in blocks of 4 and a tail): one large key row in any position
     * makes |q| |k| exceed the fp32 screening's range, which is refused */
    for (int r = 0; r < N; r++) {
        float qb[N * D], kb[N * D];
        for (int t = 0; t < N * D; t++) qb[t] = 3e19f, kb[t] = 1;
        for (int c = 0; c < D; c++) kb[r * D + c] = 3e19f;
        sp_attn_head hb = head(N, N, D, qb, kb, v, o, 0);
        cr_assert_eq(op->run(op, &hb, &err), SP_ERR_DATA, "large key row %d not seen", r);
        cr_assert(strstr(err.msg, "fp32"), "%s", err.msg);
    }
    /* finite extremes: not reported as non-finite (V is not screened, so no fp32-range error) */
    for (int c = 0; c < D; c++) v[D + c] = c % 2 ? FLT_MAX : -FLT_TRUE_MIN;
    sp_attn_head h = head(N, N, D, q, k, v, o, 0);
    cr_assert_eq(op->run(op, &h, &err), SP_OK, "%s", err.msg);
    sp_attn_op_free(op);
}

Test(sprint_op, bad_inputs_are_clear_errors) {
    float q[4] = {1, 2, 3, NAN}, k[4] = {1, 2, 3, 4}, v[4] = {1, 1, 1, 1}, o[4];
    sp_config cfg;
    cfg_with(&cfg, "policy.delta=1", NULL);
    const char *modes[3] = {"pruning", "sprint-norecompute", "sprint"};
    for (int m = 0; m < 3; m++) {
        sp_attn_op *op = make(modes[m], &cfg);
        sp_attn_head h = head(2, 2, 2, q, k, v, o, 0);
        sp_error err = {0};
        cr_assert_eq(op->run(op, &h, &err), SP_ERR_DATA);
        cr_assert(strstr(err.msg, "NaN or infinite") && strstr(err.msg, "Q row 1"), "%s", err.msg);
        q[3] = 4;
        k[0] = INFINITY;
        cr_assert_eq(op->run(op, &h, &err), SP_ERR_DATA);
        cr_assert(strstr(err.msg, "K row 0"), "%s", err.msg);
        k[0] = 1;
        /* finite inputs whose scores overflow the fp32 screening: an error, not a silent
         * keep-everything (every fp32 score inf) */
        q[3] = 4;
        float big = 3e19f;
        float qb[4] = {big, big, big, big}, kb[4] = {big, big, -big, big};
        sp_attn_head hb = head(2, 2, 2, qb, kb, v, o, 0);
        cr_assert_eq(op->run(op, &hb, &err), SP_ERR_DATA, "%s: %s", modes[m], err.msg);
        cr_assert(strstr(err.msg, "fp32"), "%s", err.msg);
        h.scale = NAN;
        cr_assert_eq(op->run(op, &h, &err), SP_ERR_ARG);
        q[3] = NAN;
        sp_attn_op_free(op);
    }
    /* bit width out of range: rejected by the config table and by the factory */
    sp_error err = {0};
    cr_assert_eq(sp_config_set(&cfg, "quant.msb_bits=9", "test", &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, "quant.msb_bits"), "%s", err.msg);
    cr_assert_eq(sp_config_set(&cfg, "quant.msb_bits=0", "test", &err), SP_ERR_CONFIG);
    cfg.quant_msb_bits = 9;
    sp_op_request req = {.mode = "sprint", .cfg = &cfg};
    sp_attn_op *op = NULL;
    cr_assert_eq(sp_attn_op_create(&req, 1, 1, &op, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, "msb_bits"), "%s", err.msg);
    cfg.quant_msb_bits = 4;
    req.mode = "sparse";
    cr_assert_eq(sp_attn_op_create(&req, 1, 1, &op, &err), SP_ERR_ARG);
    cr_assert(strstr(err.msg, "dense|dense-ref|pruning|sprint-norecompute|sprint"), "%s", err.msg);
    cr_assert_str_eq(SP_ATTN_MODES, "dense|dense-ref|pruning|sprint-norecompute|sprint");
    /* values set directly in the struct, past the config table: re-checked by the factory
     * (rows = 0 was an integer division by zero, frac_bits > 10 overran the exponent LUT) */
    cfg.reram_rows = 0;
    req.mode = "sprint";
    cr_assert_eq(sp_attn_op_create(&req, 1, 1, &op, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, "reram.rows"), "%s", err.msg);
    cfg.reram_rows = 64;
    cfg.sprint_hw_exp_frac_bits = 11;
    cr_assert_eq(sp_attn_op_create(&req, 1, 1, &op, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, "hw_exp_frac_bits"), "%s", err.msg);
    cfg.sprint_hw_exp_frac_bits = 6;
    cfg.policy_topk_min = 0; /* would ask for the 0th largest score */
    cr_assert_eq(sp_attn_op_create(&req, 1, 1, &op, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, "policy.topk_min"), "%s", err.msg);
    cfg.policy_topk_min = 1;
    cfg.policy_delta = NAN; /* every comparison with a NaN threshold fails: nothing kept, silently */
    cr_assert_eq(sp_attn_op_create(&req, 1, 1, &op, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, "policy.delta = nan"), "%s", err.msg);
    cfg.policy_delta = 1;
    cr_assert_eq(sp_config_set(&cfg, "reram.onoff_ratio=0.5", "test", &err), SP_OK);
    req.mode = "sprint";
    cr_assert_eq(sp_attn_op_create(&req, 1, 1, &op, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, "onoff_ratio"), "%s", err.msg);
}

/* ---- hw fast path (sgemm MSB/LSB trees) against the reference kernels ------------------ */
Test(sprint_op, hw_scores_fast_path_equals_reference) {
    int8_t q[64], k[64];
    sp_rng r;
    sp_rng_seed(&r, 9);
    long long dot = 0;
    for (int c = 0; c < 64; c++) {
        q[c] = (int8_t)((int)(sp_rng_next(&r) % 41) - 20);
        k[c] = (int8_t)((int)(sp_rng_next(&r) % 255) - 127);
        dot += q[c] * k[c];
    }
    int sat = -1;
    cr_assert_eq(sp_hw_score(q, k, 64, 4, &sat), dot);
    cr_assert_eq(sat, 0);
    for (int c = 0; c < 64; c++) q[c] = k[c] = 127;
    sp_hw_score(q, k, 64, 4, &sat);
    cr_assert_eq(sat, 1, "127 x 15 x 64 overflows the 16-bit MSB tree");
    /* the op in hw arithmetic, nothing pruned, equals the reference kernels query by query */
    int n = 24, d = 16;
    float *qf = randn(n * d, 1, 71), *kf = randn(n * d, 1, 72), *vf = randn(n * d, 1, 73);
    float *o = calloc((size_t)n * d, sizeof(float));
    sp_config cfg;
    cfg_with(&cfg, "policy.kind=layer", "policy.threshold=-1e30", "sprint.arith=hw", NULL);
    sp_attn_op *op = make("pruning", &cfg);
    sp_attn_head h = head(n, n, d, qf, kf, vf, o, 1);
    sp_error err = {0};
    cr_assert_eq(op->run(op, &h, &err), SP_OK);
    int8_t *qi = malloc((size_t)n * d), *ki = malloc((size_t)n * d), *vi = malloc((size_t)n * d);
    float sq[24], sk[24], sv[24];
    sp_quant_rows(qf, n, d, d, 0, NULL, qi, sq);
    sp_quant_rows(kf, n, d, d, 0, NULL, ki, sk);
    sp_quant_rows(vf, n, d, d, 0, NULL, vi, sv);
    for (int i = 0; i < n; i++) {
        int32_t z[24];
        double ls[24];
        const int8_t *rows[24];
        for (int j = 0; j <= i; j++) {
            z[j] = sp_hw_score(qi + i * d, ki + j * d, d, 4, NULL);
            ls[j] = h.scale * (double)sq[i] * sk[j];
            rows[j] = vi + j * d;
        }
        float ref[16];
        sp_hw_softmax_wsum(i + 1, z, ls, rows, d, sv[0], 6, ref);
        for (int c = 0; c < d; c++) cr_assert_eq(o[i * d + c], ref[c], "query %d element %d", i, c);
    }
    sp_attn_op_free(op);
    free(qf), free(kf), free(vf), free(o), free(qi), free(ki), free(vi);
}

/* sprint.outputs = 0 (the simulator's masks-only mode) must change nothing but the output. */
Test(sprint_op, outputs_off_keeps_masks_and_statistics) {
    int n = 150, d = 64;
    float *q = randn(n * d, 1.2, 31), *k = randn(n * d, 1.2, 32), *v = randn(n * d, 1, 33);
    float *o1 = calloc((size_t)n * d, sizeof(float)), *o0 = malloc((size_t)n * d * sizeof(float));
    for (int i = 0; i < n * d; i++) o0[i] = 7.0f;
    const char *modes[] = {"pruning", "sprint", "sprint-norecompute"};
    for (int m = 0; m < 3; m++) {
        sp_config cfg;
        cfg_with(&cfg, "policy.kind=onchip", "policy.delta=2.5", NULL);
        sp_attn_op *on = make(modes[m], &cfg);
        set(&cfg, "sprint.outputs=0");
        sp_attn_op *off = make(modes[m], &cfg);
        rec_log *l1 = log_new(n, n), *l0 = log_new(n, n);
        on->observer = observer, on->observer_user = l1;
        off->observer = observer, off->observer_user = l0;
        sp_attn_head h1 = head(n, n, d, q, k, v, o1, 1), h0 = head(n, n, d, q, k, v, o0, 1);
        sp_error err = {0};
        cr_assert_eq(on->run(on, &h1, &err), SP_OK, "%s", err.msg);
        cr_assert_eq(off->run(off, &h0, &err), SP_OK, "%s", err.msg);
        cr_assert_eq(memcmp(&on->stats[0], &off->stats[0], sizeof on->stats[0]), 0, "%s: stats differ", modes[m]);
        cr_assert_eq(memcmp(l1->mem, l0->mem, (size_t)n * n), 0, "%s: fetched sets differ", modes[m]);
        cr_assert_eq(memcmp(l1->kept, l0->kept, (size_t)n * n), 0, "%s: kept sets differ", modes[m]);
        double nz = 0;
        for (int i = 0; i < n * d; i++) nz += fabs(o1[i]);
        cr_assert_gt(nz, 0, "outputs on: rows computed");
        for (int i = 0; i < n * d; i++) cr_assert_eq(o0[i], 0.0f, "%s: outputs off must zero row %d", modes[m], i / d);
        log_free(l1), log_free(l0);
        sp_attn_op_free(on), sp_attn_op_free(off);
    }
    free(q), free(k), free(v), free(o1), free(o0);
}
