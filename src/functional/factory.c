/* factory.c: builds an attention operator by mode name, from the config's quant, reram,
 * sprint and policy sections, and decides where its thresholds come from (a thresholds
 * object, policy.file, or the uncalibrated config values). It never calibrates: calibration
 * is an explicit call (sp_calibrate, or sp_attn_op_create_calibrated in calibrate.c), so
 * creating an operator never runs the model (issue 11). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fn_internal.h"

const char *const SP_ATTN_MODES = "dense|dense-ref|pruning|sprint-norecompute|sprint";

static const char *const MODE_NAMES[] = {"dense", "pruning", "sprint-norecompute", "sprint"};

int sp_fn_mode_parse(const char *name) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, MODE_NAMES[i])) return i;
    return -1;
}

const char *sp_fn_mode_name(int mode) {
    SP_ASSERT(mode >= 0 && mode < 4);
    return MODE_NAMES[mode];
}

sp_status sp_fn_params_from_config(const sp_config *cfg, int mode, sp_fn_params *p, sp_error *err) {
    memset(p, 0, sizeof *p);
    p->mode = mode;
    p->arith_hw = !strcmp(cfg->sprint_arith, "hw");
    p->quant_row = !strcmp(cfg->quant_granularity, "row");
    if (cfg->quant_msb_bits < 1 || cfg->quant_msb_bits > 8)
        return sp_error_set(err, SP_ERR_CONFIG, "quant.msb_bits = %ld: expected 1..8 bits", cfg->quant_msb_bits);
    if (cfg->reram_dac_bits < 2 || cfg->reram_dac_bits > 8)
        return sp_error_set(err, SP_ERR_CONFIG, "reram.dac_bits = %ld: expected 2..8 bits", cfg->reram_dac_bits);
    if (cfg->reram_rows < 1 || cfg->reram_rows > 4096)
        return sp_error_set(err, SP_ERR_CONFIG, "reram.rows = %ld: expected 1..4096 rows", cfg->reram_rows);
    if (cfg->sprint_hw_exp_frac_bits < 1 || cfg->sprint_hw_exp_frac_bits > 10)
        return sp_error_set(err, SP_ERR_CONFIG, "sprint.hw_exp_frac_bits = %ld: expected 1..10 bits",
                            cfg->sprint_hw_exp_frac_bits);
    if (!(cfg->policy_delta >= -1) || !isfinite(cfg->policy_delta) || !(cfg->sprint_margin_sigma >= 0) ||
        !isfinite(cfg->sprint_margin_sigma))
        return sp_error_set(err, SP_ERR_CONFIG,
                            "policy.delta = %g (expected -1 or >= 0 nats), sprint.margin_sigma = %g (expected >= 0 std)",
                            cfg->policy_delta, cfg->sprint_margin_sigma);
    if (cfg->policy_topk_min < 1 || !(cfg->policy_topk_mem_factor >= 1))
        return sp_error_set(err, SP_ERR_CONFIG, "policy.topk_min = %ld, policy.topk_mem_factor = %g: expected >= 1",
                            cfg->policy_topk_min, cfg->policy_topk_mem_factor);
    if (cfg->reram_onoff_ratio != 0 && cfg->reram_onoff_ratio <= 1)
        return sp_error_set(err, SP_ERR_CONFIG, "reram.onoff_ratio = %g: expected 0 (ideal) or a ratio > 1",
                            cfg->reram_onoff_ratio);
    if (cfg->reram_stuck_at_0 + cfg->reram_stuck_at_1 > 1)
        return sp_error_set(err, SP_ERR_CONFIG, "reram.stuck_at_0 + reram.stuck_at_1 = %g > 1",
                            cfg->reram_stuck_at_0 + cfg->reram_stuck_at_1);
    p->rr.msb_bits = (int)cfg->quant_msb_bits;
    p->rr.rows = (int)cfg->reram_rows;
    p->rr.dac_bits = (int)cfg->reram_dac_bits;
    p->rr.d2d_sigma = cfg->reram_d2d_sigma;
    p->rr.c2c_sigma = cfg->reram_c2c_sigma;
    p->rr.cmp_offset_sigma = cfg->reram_cmp_offset_sigma;
    p->rr.onoff_ratio = cfg->reram_onoff_ratio;
    p->rr.stuck_at_0 = cfg->reram_stuck_at_0;
    p->rr.stuck_at_1 = cfg->reram_stuck_at_1;
    p->rr.seed = (uint64_t)cfg->run_seed;
    p->margin_mode = sp_config_enum_index("sigma|worst|none", cfg->sprint_margin_mode);
    p->margin_sigma = cfg->sprint_margin_sigma;
    p->mass_lost = cfg->sprint_mass_lost;
    p->outputs = cfg->sprint_outputs;
    p->hw_frac_bits = (int)cfg->sprint_hw_exp_frac_bits;
    p->kind = sp_policy_kind_parse(cfg->policy_kind);
    if (p->kind < 0) return sp_error_set(err, SP_ERR_CONFIG, "policy.kind = '%s' is unknown", cfg->policy_kind);
    p->delta = cfg->policy_delta;
    p->topk_fraction = cfg->policy_topk_fraction;
    p->topk_min = cfg->policy_topk_min;
    p->topk_mem_factor = cfg->policy_topk_mem_factor;
    p->onchip_source = sp_config_enum_index("both|prev|anchors", cfg->policy_onchip_source);
    if (p->margin_mode < 0 || p->onchip_source < 0)
        return sp_error_set(err, SP_ERR_CONFIG, "sprint.margin_mode or policy.onchip_source has an unknown value");
    p->impl = sp_config_enum_index("auto|fast|reference", cfg->sprint_impl);
    p->exact_stats = cfg->sprint_exact_stats;
    if (p->impl < 0) return sp_error_set(err, SP_ERR_CONFIG, "sprint.impl = '%s' is unknown", cfg->sprint_impl);
    const char *why = p->impl == SP_FN_IMPL_FAST ? sp_fn_fast_unsupported(p) : NULL;
    if (why)
        return sp_error_set(err, SP_ERR_CONFIG, "sprint.impl = fast does not apply here: %s (use auto or reference)",
                            why);
    return SP_OK;
}

/* Copies what the op needs from a thresholds object, after checking it fits. */
static sp_status apply_thresholds(const sp_thresholds *t, const char *origin, const sp_op_request *req, int n_layers,
                                  int n_heads, sp_fn_params *p, sp_error *err) {
    const char *want = sp_policy_kind_name(p->kind);
    if (strcmp(t->kind, want))
        return sp_error_set(err, SP_ERR_CONFIG, "%s holds thresholds of policy '%s' but policy.kind = %s", origin,
                            t->kind, want);
    int hd = 0;
    if (req->model) hd = sp_model_get_info(req->model)->head_dim;
    if (t->n_layers != n_layers || t->n_heads != n_heads || (hd && t->head_dim != hd))
        return sp_error_set(err, SP_ERR_CONFIG,
                            "%s is for a model of %d layers x %d heads (head dim %d), this one has %d x %d (head dim "
                            "%d): calibrate for this model (sprint calibrate)",
                            origin, t->n_layers, t->n_heads, t->head_dim, n_layers, n_heads, hd ? hd : t->head_dim);
    p->head_dim = t->head_dim;
    if (t->values) {
        free(p->thr);
        p->thr = sp_xmalloc((size_t)n_layers * (size_t)n_heads, sizeof *p->thr);
        memcpy(p->thr, t->values, (size_t)n_layers * (size_t)n_heads * sizeof *p->thr);
    }
    if (p->kind == SP_POLICY_ORACLE || p->kind == SP_POLICY_ONCHIP) p->delta = t->delta;
    return SP_OK;
}

int sp_op_needs_calibration(const sp_op_request *req) {
    if (req->thresholds || !req->mode) return 0;
    int mode = sp_fn_mode_parse(req->mode);
    if (mode <= SP_FN_DENSE) return 0; /* dense, dense-ref, unknown */
    sp_config defcfg;
    const sp_config *cfg = req->cfg;
    if (!cfg) {
        sp_config_defaults(&defcfg);
        cfg = &defcfg;
    }
    int kind = sp_policy_kind_parse(cfg->policy_kind);
    if (kind < 0 || kind == SP_POLICY_TOPK || cfg->policy_file[0]) return 0;
    if (kind == SP_POLICY_LAYER || kind == SP_POLICY_HEAD) return 1;
    return cfg->policy_delta < 0; /* oracle, onchip */
}

sp_status sp_attn_op_create(const sp_op_request *req, int n_layers, int n_heads, sp_attn_op **out,
                            sp_error *err) {
    *out = NULL;
    if (n_layers <= 0 || n_heads <= 0)
        return sp_error_set(err, SP_ERR_ARG, "attention operator needs positive layers and heads");
    /* "dense" is the float fast path (tested against the reference); "dense-ref" the double
     * reference that bit-for-bit comparisons use. */
    if (req->mode && !strcmp(req->mode, "dense-ref")) {
        *out = sp_attn_dense_create(n_layers, n_heads);
        return SP_OK;
    }
    int mode = req->mode ? sp_fn_mode_parse(req->mode) : -1;
    if (mode < 0)
        return sp_error_set(err, SP_ERR_ARG, "unknown attention mode '%s' (expected one of %s)",
                            req->mode ? req->mode : "(null)", SP_ATTN_MODES);
    if (mode == SP_FN_DENSE) {
        *out = sp_attn_dense_fast_create(n_layers, n_heads);
        return SP_OK;
    }
    sp_config defcfg;
    const sp_config *cfg = req->cfg;
    if (!cfg) {
        sp_config_defaults(&defcfg);
        cfg = &defcfg;
    }
    sp_fn_params p;
    sp_status s = sp_fn_params_from_config(cfg, mode, &p, err);
    if (s != SP_OK) return s;
    int fixed = p.kind == SP_POLICY_LAYER || p.kind == SP_POLICY_HEAD;
    int relative = p.kind == SP_POLICY_ORACLE || p.kind == SP_POLICY_ONCHIP;
    if (req->thresholds) {
        s = apply_thresholds(req->thresholds, "the given thresholds", req, n_layers, n_heads, &p, err);
    } else if (cfg->policy_file[0] && p.kind != SP_POLICY_TOPK) {
        sp_thresholds *t = NULL;
        s = sp_thresholds_load(cfg->policy_file, &t, err);
        if (s == SP_OK) {
            char origin[300];
            snprintf(origin, sizeof origin, "thresholds file %s", cfg->policy_file);
            s = apply_thresholds(t, origin, req, n_layers, n_heads, &p, err);
        }
        sp_thresholds_free(t);
    } else if ((fixed || (relative && p.delta < 0)) && req->calib) {
        /* the caller has calibration data, so it wants calibrated thresholds: say how to get
         * them rather than silently using the uncalibrated config values */
        s = sp_error_set(err, SP_ERR_ARG,
                         "policy %s needs calibrated thresholds: calibrate first (sp_calibrate, "
                         "sp_attn_op_create_calibrated or sprint calibrate), or set policy.file%s",
                         sp_policy_kind_name(p.kind), fixed ? " or policy.threshold" : " or policy.delta >= 0");
    } else if (fixed) {
        p.thr = sp_xmalloc((size_t)n_layers * (size_t)n_heads, sizeof *p.thr);
        double v = cfg->policy_threshold <= -1e30 ? -INFINITY : cfg->policy_threshold;
        for (int i = 0; i < n_layers * n_heads; i++) p.thr[i] = v;
    } else if (relative && p.delta < 0) {
        p.delta = cfg->policy_delta_uncalibrated;
    }
    if (s != SP_OK) {
        free(p.thr);
        return s;
    }
    *out = sp_fn_op_create(sp_fn_mode_name(mode), n_layers, n_heads, &p);
    return SP_OK;
}
