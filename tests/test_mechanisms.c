/* test_mechanisms.c: does breaking a mechanism that carries the headline results fail a test?
 * Each test isolates one mechanism (issue 11's review): every term of the comparator margin,
 * the operator's noisy in-memory fast path against sp_reram_score_ref, the analog top-k path,
 * the Fig. 7 datapath saturation branches, the real-model trace path behind `sprint run`, and
 * the loss-budget bisection of per-layer / per-head thresholds. docs/RESULTS.md (Part
 * "hardening") lists the deliberate breaks tried and the test here that caught each. */
#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "functional/fn_internal.h"
#include "helpers.h"
#include "sprint/model.h"
#include "sprint/sim.h"

static void cfg_set(sp_config *c, const char *kv) {
    sp_error err = {0};
    cr_assert_eq(sp_config_set(c, kv, "test", &err), SP_OK, "%s", err.msg);
}

/* defaults + the given settings (NULL-terminated) */
static void cfg_with(sp_config *c, ...) {
    sp_config_defaults(c);
    va_list ap;
    va_start(ap, c);
    for (const char *kv; (kv = va_arg(ap, const char *));) cfg_set(c, kv);
    va_end(ap);
}

static sp_attn_op *make(const char *mode, sp_config *cfg) {
    sp_op_request req = {.mode = mode, .cfg = cfg};
    sp_attn_op *op = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_attn_op_create(&req, 1, 1, &op, &err), SP_OK, "create %s: %s", mode, err.msg);
    return op;
}

static float *randn(int n, double sd, uint64_t seed) {
    float *x = malloc(sizeof(float) * (size_t)n);
    sp_rng r;
    sp_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) x[i] = (float)(sd * sp_rng_next_normal(&r));
    return x;
}

static sp_attn_head head(int n, int d, const float *q, const float *k, const float *v, float *out) {
    sp_attn_head h = {.layer = 0, .head = 0, .kv_head = 0, .seq_id = 3, .n_q = n, .n_k = n, .d = d, .q = q, .k = k,
                      .v = v, .out = out, .ldq = d, .ldk = d, .ldv = d, .ldo = d, .causal = 1, .q_offset = 0,
                      .scale = (float)(1.0 / sqrt(d))};
    return h;
}

/* ---- the comparator margin, term by term -------------------------------------------------- */

/* False prunes of mode sprint on one causal head (layer threshold 0.5 nats: many keys near it)
 * with the given settings. */
static double false_prunes(const char *margin, const char *s1, const char *s2, const char *s3, double *exact_pass) {
    int n = 160, d = 32;
    float *q = randn(n * d, 2.5, 91), *k = randn(n * d, 2.5, 92), *v = randn(n * d, 1, 93);
    /* queries in +-pairs: sum(q_int) = 0, so the Fig. 7 trees (q.(k + 128) with 8 MSBs) stay
     * within 16 bits and the hw "exact" score is the integer score q_int . k_int */
    for (int i = 0; i < n * d; i += 2) q[i + 1] = -q[i];
    float *o = calloc((size_t)n * d, sizeof(float));
    sp_config cfg;
    cfg_with(&cfg, "policy.kind=layer", "policy.threshold=0.5", margin, s1, s2, s3, NULL);
    sp_attn_op *op = make("sprint", &cfg);
    sp_attn_head h = head(n, d, q, k, v, o);
    sp_error err = {0};
    cr_assert_eq(op->run(op, &h, &err), SP_OK, "%s", err.msg);
    double fp = op->stats[0].false_prunes;
    if (exact_pass) *exact_pass = op->stats[0].exact_pass;
    sp_attn_op_free(op);
    free(q), free(k), free(v), free(o);
    return fp;
}

/* Each case makes exactly one error source non-zero (the others vanish: 8 MSBs leave no
 * truncation, an 8-bit DAC is exact (step 1), hw arithmetic has no float-vs-8-bit error, an
 * ideal array no analog error). Without a margin that source alone causes false prunes; the
 * worst-case margin removes all of them (deterministic sources) and the 3-sigma margin most.
 * Deleting that source's term from either margin brings them back. */
typedef struct margin_case {
    const char *name, *s1, *s2, *s3;
    int deterministic;
} margin_case;

static const margin_case MARGIN_CASES[] = {
    {"truncation (b = 3)", "quant.msb_bits=3", "reram.dac_bits=8", "sprint.arith=hw", 1},
    {"DAC (3-bit DAC)", "quant.msb_bits=8", "reram.dac_bits=3", "sprint.arith=hw", 1},
    {"quantisation (float arithmetic)", "quant.msb_bits=8", "reram.dac_bits=8", "sprint.arith=float", 1},
    {"analog (c2c read noise)", "quant.msb_bits=8", "reram.c2c_sigma=0.2", "sprint.arith=hw", 0},
    {"analog (comparator offset)", "quant.msb_bits=8", "reram.cmp_offset_sigma=0.002", "sprint.arith=hw", 0},
};

static void check_margin_case(int t) {
    const margin_case *c = &MARGIN_CASES[t];
    double pass = 0;
    double none = false_prunes("sprint.margin_mode=none", c->s1, c->s2, c->s3, &pass);
    double worst = false_prunes("sprint.margin_mode=worst", c->s1, c->s2, c->s3, NULL);
    double sigma = false_prunes("sprint.margin_mode=sigma", c->s1, c->s2, c->s3, NULL);
    cr_assert(none >= 10, "%s: the case must cause false prunes without a margin (%g of %g passing)", c->name, none,
              pass);
    if (c->deterministic) cr_assert_eq(worst, 0, "%s: worst-case margin leaves %g false prunes", c->name, worst);
    else cr_assert(worst <= 0.05 * none, "%s: worst-case margin leaves %g of %g false prunes", c->name, worst, none);
    cr_assert(sigma <= 0.2 * none, "%s: 3-sigma margin leaves %g of %g false prunes", c->name, sigma, none);
}

Test(margin, truncation_term_covers_lsb_truncation) { check_margin_case(0); }
Test(margin, dac_term_covers_dac_rounding) { check_margin_case(1); }
Test(margin, quantisation_term_covers_8bit_quantisation) { check_margin_case(2); }
Test(margin, analog_term_covers_read_noise) { check_margin_case(3); }
Test(margin, analog_term_covers_comparator_offset) { check_margin_case(4); }

/* ---- the noisy in-memory fast path against sp_reram_score_ref ---------------------------- */

typedef struct mem_log {
    int n_k;
    unsigned char *mem; /* (n x n_k) */
} mem_log;

static void mem_observer(void *user, const sp_query_record *r) {
    mem_log *lg = user;
    for (int t = 0; t < r->n_mem_kept; t++) lg->mem[(size_t)r->qi * lg->n_k + r->mem_kept[t]] = 1;
}

/* The operator's comparator decisions (sgemm charges, read noise drawn only near the
 * reference, comparator offsets) equal the reference decision built from sp_reram_cell,
 * sp_reram_score_ref (which draws the same read noise) and sp_reram_cmp_offset, key by key,
 * except where the reference charge is within fp32 rounding of the threshold. */
Test(reram_fast_path, noisy_decisions_equal_reference_score) {
    int n = 96, d = 32;
    float *q = randn(n * d, 1.0, 11), *k = randn(n * d, 1.0, 12), *v = randn(n * d, 1, 13);
    float *o = calloc((size_t)n * d, sizeof(float));
    sp_config cfg;
    cfg_with(&cfg, "policy.kind=layer", "policy.threshold=0.3", "sprint.margin_mode=none", "quant.msb_bits=4",
             "reram.dac_bits=6", "reram.c2c_sigma=0.15", "reram.d2d_sigma=0.05", "reram.cmp_offset_sigma=0.001",
             "reram.onoff_ratio=50", NULL);
    sp_attn_op *op = make("sprint", &cfg);
    mem_log lg = {.n_k = n, .mem = calloc((size_t)n * n, 1)};
    op->observer = mem_observer;
    op->observer_user = &lg;
    sp_attn_head h = head(n, d, q, k, v, o);
    sp_error err = {0};
    cr_assert_eq(op->run(op, &h, &err), SP_OK, "%s", err.msg);
    sp_fn_params P;
    cr_assert_eq(sp_fn_params_from_config(&cfg, SP_FN_SPRINT, &P, &err), SP_OK);
    const sp_reram_params *rr = &P.rr;
    int8_t *qi = malloc((size_t)n * d), *ki = malloc((size_t)n * d);
    float *sq = malloc(sizeof(float) * n), *sk = malloc(sizeof(float) * n);
    sp_quant_rows(q, n, d, d, 0, NULL, qi, sq);
    sp_quant_rows(k, n, d, d, 0, NULL, ki, sk);
    const int b = rr->msb_bits, sh = 8 - b;
    const double step = sp_dac_step(rr->dac_bits), cmid = sp_key_msb_center(b);
    int qd[64];
    double g[64];
    long mismatches = 0, near = 0, noise_flips = 0, kept = 0;
    for (int i = 0; i < n; i++) {
        double sqd = 0;
        for (int c = 0; c < d; c++) {
            qd[c] = sp_dac_level(qi[i * d + c], rr->dac_bits);
            sqd += qd[c];
        }
        /* keep j iff u (A + off) + o >= T / lf  (docs/functional.md sec. 4, no margin) */
        double lf = (double)h.scale * sq[i] * sk[0], u = step * ldexp(1.0, sh), o_i = step * (cmid - 128.0) * sqd;
        double tau = (0.3 / lf - o_i) / u;
        for (int j = 0; j <= i; j++) {
            for (int c = 0; c < d; c++)
                g[c] = (double)(float)sp_reram_cell(rr, 0, 0, j, c, sp_key_msb(ki[j * d + c], b));
            double a = sp_reram_score_ref(rr, 0, 0, 0, h.seq_id, i, j, qd, g, d) + sp_reram_cmp_offset(rr, 0, 0, j, d);
            sp_reram_params quiet = *rr;
            quiet.c2c_sigma = 0;
            double a0 = sp_reram_score_ref(&quiet, 0, 0, 0, h.seq_id, i, j, qd, g, d) + sp_reram_cmp_offset(rr, 0, 0, j, d);
            int ref = a >= tau, got = lg.mem[(size_t)i * n + j];
            kept += got;
            noise_flips += (a0 >= tau) != ref;
            if (fabs(a - tau) < 1e-3 * (fabs(tau) + 1)) {
                near++;
                continue;
            }
            if (ref != got) mismatches++;
        }
    }
    cr_assert_eq(mismatches, 0, "%ld decisions differ from the reference (%ld near the threshold)", mismatches, near);
    cr_assert(noise_flips >= 10, "read noise must change decisions for this test to check it (%ld)", noise_flips);
    cr_assert(kept > 100 && kept < n * (n + 1) / 2 - 100, "the comparator must prune and keep (%ld)", kept);
    sp_attn_op_free(op);
    free(lg.mem), free(qi), free(ki), free(sq), free(sk), free(q), free(k), free(v), free(o);
}

/* ---- analog top-k --------------------------------------------------------------------------- */

typedef struct topk_log {
    int bad_count, bad_rank, queries;
    const int8_t *qi, *ki;
    int d;
    long topk_mem;
} topk_log;

/* With 8 MSBs, an exact DAC and an ideal array the in-memory score is the integer score
 * q_int . k_int: the analog top-k must fetch exactly the keys scoring at least the km-th
 * largest integer score, km = ceil(k x topk_mem_factor) (more only on ties), and recompute
 * must keep those scoring at least the k-th largest among them. */
static int cmp_desc(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void topk_observer(void *user, const sp_query_record *r) {
    topk_log *lg = user;
    long k = (long)ceil(0.25 * r->n_visible);
    if (k < 1) k = 1;
    long km = (long)ceil(k * 2.0);
    if (km > r->n_visible) km = r->n_visible;
    lg->queries++;
    long s[512], sorted[512];
    for (int j = 0; j < r->n_visible; j++) {
        s[j] = 0;
        for (int c = 0; c < lg->d; c++) s[j] += (long)lg->qi[r->qi * lg->d + c] * lg->ki[j * lg->d + c];
        sorted[j] = s[j];
    }
    qsort(sorted, (size_t)r->n_visible, sizeof *sorted, cmp_desc);
    long kth_mem = sorted[km - 1], want_mem = 0;
    for (int j = 0; j < r->n_visible; j++) want_mem += s[j] >= kth_mem;
    long ms[512];
    for (int t = 0; t < r->n_mem_kept; t++) ms[t] = s[r->mem_kept[t]];
    qsort(ms, (size_t)r->n_mem_kept, sizeof *ms, cmp_desc);
    long kk = k < r->n_mem_kept ? k : r->n_mem_kept, want_kept = 0;
    for (int t = 0; t < r->n_mem_kept; t++) want_kept += kk > 0 && ms[t] >= ms[kk - 1];
    if (r->n_mem_kept != want_mem || r->n_kept != want_kept) lg->bad_count++;
    for (int t = 0; t < r->n_mem_kept; t++)
        if (s[r->mem_kept[t]] < kth_mem) lg->bad_rank++;
}

Test(analog_topk, fetches_the_top_km_keys_and_keeps_k) {
    int n = 80, d = 16;
    float *q = randn(n * d, 1, 21), *k = randn(n * d, 1, 22), *v = randn(n * d, 1, 23);
    for (int i = 0; i < n * d; i += 2) q[i + 1] = -q[i]; /* sum(q_int) = 0: no tree saturates */
    float *o = calloc((size_t)n * d, sizeof(float));
    sp_config cfg;
    cfg_with(&cfg, "policy.kind=topk", "policy.topk_fraction=0.25", "policy.topk_min=1", "policy.topk_mem_factor=2",
             "quant.msb_bits=8", "reram.dac_bits=8", "sprint.arith=hw", NULL);
    sp_attn_op *op = make("sprint", &cfg);
    int8_t qi[80 * 16], ki[80 * 16];
    float sq[80], sk[80];
    sp_quant_rows(q, n, d, d, 0, NULL, qi, sq);
    sp_quant_rows(k, n, d, d, 0, NULL, ki, sk);
    topk_log lg = {.qi = qi, .ki = ki, .d = d};
    op->observer = topk_observer;
    op->observer_user = &lg;
    sp_attn_head h = head(n, d, q, k, v, o);
    sp_error err = {0};
    cr_assert_eq(op->run(op, &h, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(lg.queries, n);
    cr_assert_eq(lg.bad_count, 0, "%d queries fetched or kept the wrong number of keys", lg.bad_count);
    cr_assert_eq(lg.bad_rank, 0, "%d queries fetched a key ranked below one left in memory", lg.bad_rank);
    sp_attn_op_free(op);
    free(q), free(k), free(v), free(o);
}

/* ---- Fig. 7 datapath saturation --------------------------------------------------------------- */

Test(saturation, score_trees_saturate_at_16_bits) {
    int8_t q[64], k[64];
    for (int c = 0; c < 64; c++) q[c] = k[c] = 127;
    int sat = 0;
    /* b = 4: q.m = 127 x 15 x 64 and q.l = 127 x 15 x 64 both saturate at 32767 */
    int32_t s = sp_hw_score(q, k, 64, 4, &sat);
    cr_assert_eq(sat, 1);
    cr_assert_eq(s, 32767 * 16 + 32767 - 128 * 127 * 64, "got %d", s);
    for (int c = 0; c < 64; c++) q[c] = -127;
    s = sp_hw_score(q, k, 64, 4, &sat);
    cr_assert_eq(sat, 1);
    cr_assert_eq(s, -32768 * 16 - 32768 + 128 * 127 * 64, "got %d", s);
    /* just past 16 bits (127 x 15 x 32 = 60960 < 2^16): saturates all the same */
    for (int c = 0; c < 64; c++) q[c] = 127;
    s = sp_hw_score(q, k, 32, 4, &sat);
    cr_assert_eq(sat, 1);
    cr_assert_eq(s, 32767 * 16 + 32767 - 128 * 127 * 32, "got %d", s);
    /* and 127 x 15 x 17 = 32385 fits: no saturation, the exact score */
    s = sp_hw_score(q, k, 17, 4, &sat);
    cr_assert_eq(sat, 0);
    cr_assert_eq(s, 127 * 127 * 17, "got %d", s);
}

Test(saturation, softmax_denominator_and_value_accumulators_saturate) {
    /* 300 keys of equal score: e = 65536 each, D += 256 per key saturates at 65535 after 256
     * keys (keys 256..300: 45 saturations), p = round(65536 / 65535) = 1, and the V accumulator
     * (+-127 per key) leaves the 16-bit range at key 259 (42 saturations). */
    enum { N = 300 };
    int32_t z[N];
    double ls[N];
    const int8_t *rows[N];
    int8_t vrow[1] = {127}, vneg[1] = {-127};
    for (int j = 0; j < N; j++) z[j] = 0, ls[j] = 0.1, rows[j] = vrow;
    float out[1];
    int sats = sp_hw_softmax_wsum(N, z, ls, rows, 1, 2.0, 6, out);
    cr_assert_eq(out[0], (float)(32767 * 2.0 / 256.0), "got %g", (double)out[0]);
    cr_assert_eq(sats, 45 + 42, "got %d saturations", sats);
    for (int j = 0; j < N; j++) rows[j] = vneg;
    sats = sp_hw_softmax_wsum(N, z, ls, rows, 1, 2.0, 6, out);
    cr_assert_eq(out[0], (float)(-32768 * 2.0 / 256.0), "got %g", (double)out[0]);
    cr_assert_eq(sats, 45 + 42, "got %d saturations", sats);
}

/* The operator's hw fast path (sgemm of the trees, then the 16-bit clamp) equals
 * sp_hw_score when the trees saturate: large same-sign queries and keys. */

Test(saturation, operator_fast_path_saturates_like_the_reference) {
    int n = 40, d = 64;
    float *q = malloc(sizeof(float) * n * d), *k = malloc(sizeof(float) * n * d), *v = randn(n * d, 1, 33);
    sp_rng r;
    sp_rng_seed(&r, 5);
    for (int i = 0; i < n * d; i++) {
        q[i] = (float)((i / d) % 2 ? -1 : 1) * (float)(0.8 + 0.2 * sp_rng_next_uniform(&r));
        k[i] = (float)(0.5 + 0.5 * sp_rng_next_uniform(&r));
    }
    float *o = calloc((size_t)n * d, sizeof(float));
    sp_config cfg;
    cfg_with(&cfg, "policy.kind=layer", "policy.threshold=-1e30", "sprint.arith=hw", "quant.msb_bits=4", NULL);
    sp_attn_op *op = make("pruning", &cfg);
    sp_attn_head h = head(n, d, q, k, v, o);
    sp_error err = {0};
    cr_assert_eq(op->run(op, &h, &err), SP_OK);
    int8_t *qi = malloc((size_t)n * d), *ki = malloc((size_t)n * d), *vi = malloc((size_t)n * d);
    float sq[40], sk[40], sv[40];
    sp_quant_rows(q, n, d, d, 0, NULL, qi, sq);
    sp_quant_rows(k, n, d, d, 0, NULL, ki, sk);
    sp_quant_rows(v, n, d, d, 0, NULL, vi, sv);
    int saturated = 0;
    for (int i = 0; i < n; i++) {
        int32_t z[40];
        double ls[40];
        const int8_t *rows[40];
        for (int j = 0; j <= i; j++) {
            int s = 0;
            z[j] = sp_hw_score(qi + i * d, ki + j * d, d, 4, &s);
            saturated += s;
            ls[j] = h.scale * (double)sq[i] * sk[j];
            rows[j] = vi + j * d;
        }
        float ref[64];
        sp_hw_softmax_wsum(i + 1, z, ls, rows, d, sv[0], 6, ref);
        for (int c = 0; c < d; c++) cr_assert_eq(o[i * d + c], ref[c], "query %d element %d", i, c);
    }
    cr_assert(saturated > n * (n + 1) / 4, "the trees must saturate for most pairs (%d)", saturated);
    sp_attn_op_free(op);
    free(q), free(k), free(v), free(o), free(qi), free(ki), free(vi);
}

/* ---- the real-model trace path behind `sprint run` ------------------------------------------- */

typedef struct fixture {
    sp_model *m;
    sp_corpus c;
} fixture;

static int load_shared(fixture *f, int stories) {
    char mp[4096], tp[4096], xp[4096];
    if (!th_shared_path("models/stories260K.bin", mp, sizeof mp) || !th_shared_path("models/tok512.bin", tp, sizeof tp) ||
        !th_shared_path("data/tinystories-valid-dev.txt", xp, sizeof xp))
        return 0;
    sp_error err = {0};
    cr_assert_eq(sp_model_load(mp, &f->m, &err), SP_OK, "%s", err.msg);
    sp_tokenizer *t = NULL;
    cr_assert_eq(sp_tokenizer_load(tp, sp_model_get_info(f->m)->vocab_size, &t, &err), SP_OK);
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(sp_read_file(xp, &text, &len, &err), SP_OK);
    cr_assert_eq(sp_corpus_from_text(t, text, len, stories, &f->c, &err), SP_OK);
    free(text);
    sp_tokenizer_free(t);
    return 1;
}

/* sp_sim_run_model (what `sprint run` simulates for the real model): the simulator's pair
 * counts are the functional operator's own statistics on the same stories (the observer sees
 * every (layer, head, query) record), and every design ran. */
Test(real_trace, simulated_counts_are_the_operators_own) {
    fixture f;
    if (!load_shared(&f, 2)) cr_skip_test("shared model or text not found (set SPRINT_SHARED)");
    sp_config cfg;
    cfg_with(&cfg, "workload.mode=sprint", "policy.kind=oracle", "policy.delta=3", "chip.sizes=S", NULL);
    sp_wl_result res;
    sp_error err = {0};
    cr_assert_eq(sp_sim_run_model(&cfg, f.m, &f.c, NULL, &res, &err), SP_OK, "%s", err.msg);
    /* the same operator evaluated directly */
    const sp_model_info *mi = sp_model_get_info(f.m);
    sp_config *ocfg = sp_sim_op_config(&cfg);
    ocfg->sprint_outputs = 1;
    sp_op_request req = {.mode = "sprint", .cfg = ocfg};
    sp_attn_op *op = NULL;
    cr_assert_eq(sp_attn_op_create(&req, mi->n_layers, mi->n_heads, &op, &err), SP_OK, "%s", err.msg);
    sp_eval_opts eo = {.window = (int)cfg.eval_window};
    sp_eval_result er;
    cr_assert_eq(sp_eval_corpus(f.m, &f.c, op, &eo, &er, &err), SP_OK, "%s", err.msg);
    cr_assert(er.attn.pairs_kept > 0 && er.attn.pairs_kept < er.attn.pairs_visible);
    cr_assert_eq(res.stats.pairs_visible, er.attn.pairs_visible, "visible pairs: sim %g, op %g", res.stats.pairs_visible,
                 er.attn.pairs_visible);
    cr_assert_eq(res.stats.pairs_kept, er.attn.pairs_kept, "kept pairs: sim %g, op %g", res.stats.pairs_kept,
                 er.attn.pairs_kept);
    cr_assert_eq(res.stats.pairs_mem_kept, er.attn.pairs_mem_kept);
    for (int D = 0; D < SP_DESIGN_COUNT; D++) cr_assert(res.r[0][D].cycles > 0, "design %d did not run", D);
    free(ocfg);
    sp_attn_op_free(op);
    sp_corpus_free(&f.c);
    sp_model_free(f.m);
}

/* sp_sim_trace_split: the traced stories come from the second half, the calibration stories
 * (as many as traced) from the first; without split the first stories are traced and nothing
 * is held out. Stories are told apart by their tokens (story i is len 3 + i of token i). */
Test(real_trace, split_traces_the_second_half_and_calibrates_on_the_first) {
    enum { N = 7 };
    int *tok[N], len[N];
    for (int i = 0; i < N; i++) {
        len[i] = 3 + i;
        tok[i] = malloc((size_t)len[i] * sizeof(int));
        for (int j = 0; j < len[i]; j++) tok[i][j] = i;
    }
    sp_corpus all = {.n = N, .tokens = tok, .len = len};
    sp_corpus cal, tr;
    sp_error err = {0};
    cr_assert_eq(sp_sim_trace_split(&all, 2, 1, &cal, &tr, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(tr.n, 2);
    cr_assert_eq(cal.n, 2);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(tr.tokens[i][0], N / 2 + i, "traced story %d is story %d of the text", i, tr.tokens[i][0]);
        cr_assert_eq(tr.len[i], len[N / 2 + i]);
        cr_assert_eq(cal.tokens[i][0], i);
    }
    sp_corpus_free(&cal), sp_corpus_free(&tr);
    /* more traced stories than the second half has: all of it, and the whole first half calibrates */
    cr_assert_eq(sp_sim_trace_split(&all, 100, 1, &cal, &tr, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(tr.n, N - N / 2);
    cr_assert_eq(cal.n, N / 2);
    cr_assert_eq(tr.tokens[tr.n - 1][0], N - 1);
    sp_corpus_free(&cal), sp_corpus_free(&tr);
    /* no split: the first stories, nothing held out */
    cr_assert_eq(sp_sim_trace_split(&all, 3, 0, &cal, &tr, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(tr.n, 3);
    cr_assert_eq(cal.n, 0);
    cr_assert_eq(tr.tokens[0][0], 0);
    sp_corpus_free(&cal), sp_corpus_free(&tr);
    /* one story cannot be split; no story to trace is an error */
    sp_corpus one = {.n = 1, .tokens = tok, .len = len};
    cr_assert_eq(sp_sim_trace_split(&one, 1, 1, &cal, &tr, &err), SP_ERR_ARG);
    cr_assert_eq(cal.n + tr.n, 0);
    cr_assert_eq(sp_sim_trace_split(&all, 0, 0, &cal, &tr, &err), SP_ERR_ARG);
    for (int i = 0; i < N; i++) free(tok[i]);
}

/* sp_sim_opts.calib: the real-model trace's thresholds are calibrated on the given stories
 * (held out), not on the traced ones: calibrating on the traced stories themselves is what
 * NULL does, and held-out stories give other thresholds, so other kept pairs. */
Test(real_trace, calibrates_on_the_held_out_stories) {
    fixture f;
    if (!load_shared(&f, 4)) cr_skip_test("shared model or text not found (set SPRINT_SHARED)");
    sp_corpus cal, tr;
    sp_error err = {0};
    cr_assert_eq(sp_sim_trace_split(&f.c, 1, 1, &cal, &tr, &err), SP_OK, "%s", err.msg);
    sp_config cfg;
    cfg_with(&cfg, "workload.mode=sprint", "policy.kind=onchip", "policy.delta=-1", "policy.calib_stories=1",
             "chip.sizes=S", NULL);
    sp_wl_result *res = malloc(3 * sizeof *res);
    sp_sim_opts own = {.threads = 1}, self = {.threads = 1, .calib = &tr}, held = {.threads = 1, .calib = &cal};
    cr_assert_eq(sp_sim_run_model(&cfg, f.m, &tr, &own, &res[0], &err), SP_OK, "%s", err.msg);
    cr_assert_eq(sp_sim_run_model(&cfg, f.m, &tr, &self, &res[1], &err), SP_OK, "%s", err.msg);
    cr_assert_eq(sp_sim_run_model(&cfg, f.m, &tr, &held, &res[2], &err), SP_OK, "%s", err.msg);
    cr_assert_eq(res[0].stats.pairs_visible, res[2].stats.pairs_visible, "the same stories are traced");
    cr_assert_eq(res[0].stats.pairs_kept, res[1].stats.pairs_kept, "NULL calibrates on the traced stories");
    cr_assert_eq(res[0].r[0][SP_DESIGN_SPRINT].cycles, res[1].r[0][SP_DESIGN_SPRINT].cycles);
    cr_assert_neq(res[0].stats.pairs_kept, res[2].stats.pairs_kept,
                  "held-out stories must calibrate other thresholds (kept %g both)", res[0].stats.pairs_kept);
    free(res);
    sp_corpus_free(&cal), sp_corpus_free(&tr);
    sp_corpus_free(&f.c);
    sp_model_free(f.m);
}

/* ---- loss-budget bisection of per-layer / per-head thresholds ------------------------------ */

/* For policies layer and head the calibration bisects the common kept fraction for the
 * smallest one whose NLL stays within the budget: the result meets its budget, a looser
 * budget keeps fewer keys, and neither keeps everything. */
Test(calibration, loss_budget_bisection_for_layer_and_head_thresholds) {
    fixture f;
    if (!load_shared(&f, 1)) cr_skip_test("shared model or text not found (set SPRINT_SHARED)");
    const char *kinds[2] = {"policy.kind=layer", "policy.kind=head"};
    for (int kd = 0; kd < 2; kd++) {
        double kept[2];
        const char *budgets[2] = {"policy.loss_budget=0.002", "policy.loss_budget=0.05"};
        for (int bi = 0; bi < 2; bi++) {
            sp_config cfg;
            cfg_with(&cfg, kinds[kd], budgets[bi], "policy.calib_stories=1", "policy.calib_iters=7",
                     "policy.target_kept=0", "sprint.margin_mode=none", NULL);
            sp_op_request req = {.mode = "pruning", .cfg = &cfg, .model = f.m, .calib = &f.c};
            sp_thresholds *t = NULL;
            sp_error err = {0};
            cr_assert_eq(sp_calibrate(&req, &t, &err), SP_OK, "%s", err.msg);
            cr_assert(t->nll <= t->nll_dense * (1 + cfg.policy_loss_budget) + 1e-12, "%s %s: NLL %g over the budget",
                      kinds[kd], budgets[bi], t->nll);
            kept[bi] = t->kept_fraction;
            sp_thresholds_free(t);
        }
        cr_assert(kept[0] < 0.999 && kept[1] < kept[0] - 0.02,
                  "%s: kept fraction %g at budget 0.2%%, %g at 5%%: the bisection must trade keys for loss", kinds[kd],
                  kept[0], kept[1]);
    }
    sp_corpus_free(&f.c);
    sp_model_free(f.m);
}
