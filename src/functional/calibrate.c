/* calibrate.c: thresholds from data (policy "calibrated", paper sec. 1.4: the paper learns
 * per-layer thresholds offline with LeOPArd's gradient method; without training we calibrate
 * them on a few stories instead, docs/functional.md).
 *
 * layer/head: a collector op records a histogram of the exact scores of every (layer, head)
 * over the calibration stories; thresholds are the per-(layer, head) (or per-layer) score
 * quantiles at a common kept fraction q, and q is bisected for the loss budget. oracle/onchip:
 * delta is bisected. Each probe is a full evaluation of the calibration stories with the
 * operator being calibrated, so false prunes and noise are accounted for. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fn_internal.h"

#define HIST_LO (-64.0)
#define HIST_HI 64.0
#define HIST_BINS 16384

typedef struct hist_ctx {
    sp_attn_op *dense;
    double *counts; /* (n_layers * n_heads) x (HIST_BINS + 2): [0] below, [HIST_BINS+1] above */
} hist_ctx;

static sp_status hist_run(sp_attn_op *op, const sp_attn_head *h, sp_error *err) {
    hist_ctx *hc = op->ctx;
    sp_status s = hc->dense->run(hc->dense, h, err);
    if (s != SP_OK) return s;
    double *cnt = hc->counts + (size_t)(h->layer * op->n_heads + h->head) * (HIST_BINS + 2);
    int32_t *idx = sp_xmalloc((size_t)h->n_k + 1, sizeof *idx);
    for (int i = 0; i < h->n_q; i++) {
        if (h->query_valid && !h->query_valid[i]) continue;
        const float *q = h->q + (size_t)i * (size_t)h->ldq;
        int n = sp_attn_visible(h, i, idx);
        for (int t = 0; t < n; t++) {
            const float *k = h->k + (size_t)idx[t] * (size_t)h->ldk;
            double dot = 0;
            for (int c = 0; c < h->d; c++) dot += (double)q[c] * k[c];
            double x = dot * h->scale;
            int bin = x < HIST_LO ? 0 : x >= HIST_HI ? HIST_BINS + 1
                                                      : 1 + (int)((x - HIST_LO) / (HIST_HI - HIST_LO) * HIST_BINS);
            if (bin > HIST_BINS) bin = HIST_BINS;
            cnt[bin] += 1;
        }
    }
    free(idx);
    return SP_OK;
}

static void hist_destroy(sp_attn_op *op) {
    hist_ctx *hc = op->ctx;
    sp_attn_op_free(hc->dense);
    free(hc->counts);
    free(hc);
}

/* Threshold keeping about fraction q of the pairs counted in cnt (summed over n histograms). */
static double quantile_threshold(const double *const *cnt, int n, double q) {
    if (q >= 1.0) return -INFINITY;
    double total = 0;
    for (int k = 0; k < n; k++)
        for (int b = 0; b < HIST_BINS + 2; b++) total += cnt[k][b];
    double want = q * total, acc = 0;
    for (int b = HIST_BINS + 1; b >= 0; b--) {
        for (int k = 0; k < n; k++) acc += cnt[k][b];
        if (acc >= want && acc > 0) {
            if (b == HIST_BINS + 1) return HIST_HI;
            if (b == 0) return -INFINITY;
            return HIST_LO + (b - 1) * (HIST_HI - HIST_LO) / HIST_BINS;
        }
    }
    return HIST_HI;
}

typedef struct calib_state {
    const sp_op_request *req;
    const sp_model *model;
    sp_corpus sub;
    sp_eval_opts eo;
    sp_fn_params base;
    int L, H;
    int evals, max_evals;
} calib_state;

/* One evaluation of the calibration stories with thresholds thr (layer/head) or delta. */
static sp_status probe(calib_state *cs, const double *thr, double delta, double *nll, double *kept, sp_error *err) {
    sp_fn_params p = cs->base;
    p.thr = NULL;
    if (thr) {
        p.thr = sp_xmalloc((size_t)cs->L * (size_t)cs->H, sizeof *p.thr);
        memcpy(p.thr, thr, (size_t)cs->L * (size_t)cs->H * sizeof *p.thr);
    }
    p.delta = delta;
    /* a probe needs the NLL and the kept fraction only: no statistics over every visible pair
     * (they cost a dense score pass; the mask and outputs do not depend on them, up to fp32
     * rounding where the scores come from the row dots instead of the dense block: head
     * dims >= 32, docs/RESULTS.md part 9z.l) */
    p.exact_stats = 0, p.mass_lost = 0;
    sp_attn_op *op = sp_fn_op_create(sp_fn_mode_name(p.mode), cs->L, cs->H, &p);
    sp_eval_result res;
    sp_status s = sp_eval_corpus(cs->model, &cs->sub, op, &cs->eo, &res, err);
    sp_attn_op_free(op);
    cs->evals++;
    if (cs->req->progress)
        cs->req->progress(cs->req->progress_user, "calibration evals", cs->evals, cs->max_evals);
    if (s != SP_OK) return s;
    *nll = res.nll;
    *kept = sp_attn_stats_kept_fraction(&res.attn);
    return SP_OK;
}

/* The bisection's last accepted probe stands for the final evaluation (a probe is a
 * deterministic function of its thresholds): its figures are taken, and the final evaluation
 * is dropped from the progress count, which then ends at 100%. */
static void reuse_probe(calib_state *cs, double pnll, double pkept, double *nll, double *kept) {
    *nll = pnll, *kept = pkept;
    cs->max_evals--;
    if (cs->req->progress) cs->req->progress(cs->req->progress_user, "calibration evals", cs->evals, cs->max_evals);
}

static void fill_thresholds(double *thr, double *const *hist, int L, int H, int per_layer, double q) {
    for (int l = 0; l < L; l++) {
        if (per_layer) { /* every head of the layer (no cap on the head count) */
            double t = quantile_threshold((const double *const *)(hist + (size_t)l * (size_t)H), H, q);
            for (int h = 0; h < H; h++) thr[l * H + h] = t;
        } else {
            for (int h = 0; h < H; h++) {
                const double *hs[1] = {hist[l * H + h]};
                thr[l * H + h] = quantile_threshold(hs, 1, q);
            }
        }
    }
}

sp_status sp_calibrate(const sp_op_request *req, sp_thresholds **out, sp_error *err) {
    *out = NULL;
    if (!req->model || !req->calib || req->calib->n <= 0)
        return sp_error_set(err, SP_ERR_ARG, "calibration needs a model and calibration stories");
    sp_config defcfg;
    const sp_config *cfg = req->cfg;
    if (!cfg) {
        sp_config_defaults(&defcfg);
        cfg = &defcfg;
    }
    int mode = req->mode ? sp_fn_mode_parse(req->mode) : -1;
    if (mode <= SP_FN_DENSE)
        return sp_error_set(err, SP_ERR_ARG, "calibration needs a pruning mode (pruning, sprint-norecompute, sprint), got '%s'",
                            req->mode ? req->mode : "(null)");
    calib_state cs;
    memset(&cs, 0, sizeof cs);
    cs.req = req;
    cs.model = req->model;
    sp_status s = sp_fn_params_from_config(cfg, mode, &cs.base, err);
    if (s != SP_OK) return s;
    int kind = cs.base.kind;
    if (kind == SP_POLICY_TOPK)
        return sp_error_set(err, SP_ERR_CONFIG, "policy topk is not calibrated: set policy.topk_fraction");
    const sp_model_info *info = sp_model_get_info(req->model);
    cs.L = info->n_layers;
    cs.H = info->n_heads;
    int n = (int)cfg->policy_calib_stories < req->calib->n ? (int)cfg->policy_calib_stories : req->calib->n;
    cs.sub.n = n;
    cs.sub.tokens = req->calib->tokens;
    cs.sub.len = req->calib->len;
    for (int i = 0; i < n; i++) cs.sub.total_targets += req->calib->len[i] - 1;
    cs.eo.window = (int)cfg->eval_window;
    cs.eo.threads = (int)cfg->run_threads;
    double target = cfg->policy_target_kept, budget = cfg->policy_loss_budget;
    int iters = (int)cfg->policy_calib_iters;
    cs.max_evals = 2 + iters;

    /* dense reference (and the score histograms for the fixed kinds), through the flash kernel
     * as sprint eval's and the model runner's dense evaluations: the reference operator cost ~5%
     * of `sprint run`. Its NLL differs from flash's by ~1e-8 relative (and now follows the
     * dispatch level, as the probes' NLLs already did); in the cases measured (stories260K and
     * bitnet-3M, four policy kinds) no threshold or delta moved (docs/RESULTS.md part 9z.w.6) */
    int fixed = kind == SP_POLICY_LAYER || kind == SP_POLICY_HEAD;
    sp_attn_op *dop;
    hist_ctx *hc = NULL;
    if (fixed) {
        dop = sp_attn_op_alloc("calibration-histogram", cs.L, cs.H);
        hc = sp_xcalloc(1, sizeof *hc);
        hc->dense = sp_attn_flash_create(cs.L, cs.H);
        hc->counts = sp_xcalloc((size_t)cs.L * (size_t)cs.H * (HIST_BINS + 2), sizeof(double));
        dop->ctx = hc;
        dop->run = hist_run;
        dop->destroy = hist_destroy;
    } else {
        dop = sp_attn_flash_create(cs.L, cs.H);
    }
    sp_eval_result dres;
    s = sp_eval_corpus(cs.model, &cs.sub, dop, &cs.eo, &dres, err);
    cs.evals++;
    if (s != SP_OK) {
        sp_attn_op_free(dop);
        return s;
    }
    double nll_dense = dres.nll, limit = nll_dense * (1.0 + budget);
    sp_thresholds *t = sp_thresholds_new(sp_policy_kind_name(kind), cs.L, cs.H, info->head_dim);
    snprintf(t->mode, sizeof t->mode, "%s", sp_fn_mode_name(mode));
    t->loss_budget = target > 0 ? 0 : budget;
    t->target_kept = target;
    t->calib_stories = n;
    t->nll_dense = nll_dense;
    double nll = 0, kept = 0;
    if (fixed) {
        double **hist = sp_xmalloc((size_t)cs.L * (size_t)cs.H, sizeof *hist);
        for (int i = 0; i < cs.L * cs.H; i++) hist[i] = hc->counts + (size_t)i * (HIST_BINS + 2);
        int per_layer = kind == SP_POLICY_LAYER;
        double *thr = sp_xmalloc((size_t)cs.L * (size_t)cs.H, sizeof *thr);
        double q;
        int q_probed = 0; /* as for delta below: the bisection's probe at the final q is reused */
        double q_nll = 0, q_kept = 0;
        if (target > 0) {
            q = target;
        } else { /* smallest kept fraction q whose NLL is within budget */
            double lo = 0.0, hi = 1.0;
            for (int it = 0; it < iters && s == SP_OK; it++) {
                double mid = 0.5 * (lo + hi);
                fill_thresholds(thr, hist, cs.L, cs.H, per_layer, mid);
                s = probe(&cs, thr, 0, &nll, &kept, err);
                if (nll <= limit) hi = mid, q_probed = 1, q_nll = nll, q_kept = kept;
                else lo = mid;
            }
            q = hi;
        }
        fill_thresholds(t->values, hist, cs.L, cs.H, per_layer, q);
        if (s == SP_OK && q_probed) reuse_probe(&cs, q_nll, q_kept, &nll, &kept);
        else if (s == SP_OK) s = probe(&cs, t->values, 0, &nll, &kept, err);
        free(thr);
        free(hist);
    } else {
        double lo = 0.0, hi = 32.0;
        /* the probe at the final hi, when the bisection made one: a probe is a deterministic
         * function of delta (fresh operator, same stories, any thread count), so evaluating
         * it again would only repeat the same NLL and kept fraction */
        int hi_probed = 0;
        double hi_nll = 0, hi_kept = 0;
        for (int it = 0; it < iters && s == SP_OK; it++) {
            double mid = 0.5 * (lo + hi);
            s = probe(&cs, NULL, mid, &nll, &kept, err);
            int ok = target > 0 ? kept >= target : nll <= limit;
            if (ok) hi = mid, hi_probed = 1, hi_nll = nll, hi_kept = kept;
            else lo = mid;
        }
        t->delta = hi;
        if (s == SP_OK && hi_probed) reuse_probe(&cs, hi_nll, hi_kept, &nll, &kept);
        else if (s == SP_OK) s = probe(&cs, NULL, t->delta, &nll, &kept, err);
    }
    sp_attn_op_free(dop);
    if (s != SP_OK) {
        sp_thresholds_free(t);
        return s;
    }
    t->nll = nll;
    t->kept_fraction = kept;
    *out = t;
    return SP_OK;
}

sp_status sp_attn_op_create_calibrated(const sp_op_request *req, int n_layers, int n_heads, sp_attn_op **out,
                                       sp_thresholds **used, sp_error *err) {
    *out = NULL;
    if (used) *used = NULL;
    if (!sp_op_needs_calibration(req)) {
        sp_op_request r = *req;
        r.calib = NULL; /* nothing to calibrate: the factory's usual sources */
        return sp_attn_op_create(&r, n_layers, n_heads, out, err);
    }
    sp_thresholds *t = NULL;
    sp_op_request r2 = *req;
    /* thresholds are calibrated for mode sprint whatever the requested mode, so pruning,
     * sprint-norecompute and sprint share them (as in sprint compare): calibrating
     * norecompute for a loss budget it cannot meet would only return delta's upper end */
    r2.mode = "sprint";
    sp_status s = sp_calibrate(&r2, &t, err);
    if (s != SP_OK) return s;
    sp_op_request r = *req;
    r.thresholds = t;
    s = sp_attn_op_create(&r, n_layers, n_heads, out, err);
    if (s == SP_OK && used) *used = t;
    else sp_thresholds_free(t);
    return s;
}
