/* sprint/functional.h: the SPRINT functional model (paper sections 1-2, Fig. 6-7):
 * quantisation, in-ReRAM approximate scores, analog threshold comparator, digital recompute,
 * threshold policies, and the attention operators built from them.
 *
 * Modes (all plug into sp_attn_op, see attention.h):
 *   dense               exact attention, nothing pruned (the reference)
 *   pruning             exact runtime pruning in digital (the paper's "Runtime Pruning")
 *   sprint-norecompute  in-memory approximate scores decide and feed softmax
 *   sprint              in-memory prune, fetch survivors, recompute exactly, threshold again */
#ifndef SPRINT_FUNCTIONAL_H
#define SPRINT_FUNCTIONAL_H

#include "sprint/attention.h"
#include "sprint/config.h"
#include "sprint/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Thresholds of a policy, as written by `sprint calibrate` (file format: docs/functional.md,
 * "Thresholds file"). values holds n_layers * n_heads thresholds (nats, on s = scale q.k) for
 * the layer/head kinds (a layer file repeats its value over the heads); delta (nats) is used
 * by the oracle/onchip kinds; the model shape makes a file for another model an error. */
#define SP_THRESHOLDS_VERSION 1
typedef struct sp_thresholds {
    char kind[32];          /* layer | head | topk | oracle | onchip */
    int n_layers, n_heads, head_dim;
    double delta;           /* nats; oracle/onchip */
    double *values;         /* (n_layers * n_heads) nats; layer/head; NULL otherwise */
    /* provenance (informative) */
    char mode[32];          /* mode calibrated for */
    double loss_budget, target_kept;
    int calib_stories;
    double nll_dense, nll, kept_fraction; /* on the calibration stories */
} sp_thresholds;

sp_thresholds *sp_thresholds_new(const char *kind, int n_layers, int n_heads, int head_dim);
void sp_thresholds_free(sp_thresholds *t);
sp_status sp_thresholds_save(const sp_thresholds *t, const char *path, sp_error *err);
/* SP_ERR_IO / SP_ERR_FORMAT (with the line) on a missing or malformed file. */
sp_status sp_thresholds_load(const char *path, sp_thresholds **out, sp_error *err);

typedef struct sp_op_request {
    const char *mode;             /* dense | pruning | sprint-norecompute | sprint */
    const sp_config *cfg;         /* quant, reram, sprint, policy sections */
    const sp_model *model;        /* checks a thresholds object's head_dim; calibration; may be NULL */
    const sp_corpus *calib;       /* calibration stories (sp_calibrate); may be NULL */
    sp_progress_fn progress;      /* may be NULL */
    void *progress_user;
    /* Thresholds to use instead of policy.file / the config values; may be NULL. The op
     * copies what it needs. */
    const sp_thresholds *thresholds;
} sp_op_request;

/* Builds the operator for req->mode with n_layers x n_heads stats slots. Unknown mode,
 * invalid config combination or thresholds file for another model shape: an error.
 * Thresholds come from req->thresholds, else policy.file, else policy.threshold /
 * policy.delta_uncalibrated (the simulator's synthetic heads). It never runs the model: when
 * the policy needs calibration (sp_op_needs_calibration) and req->calib is given, it is an
 * error (SP_ERR_ARG) naming the ways to get thresholds, rather than a silent fallback. */
sp_status sp_attn_op_create(const sp_op_request *req, int n_layers, int n_heads, sp_attn_op **out,
                            sp_error *err);

/* 1 when req's mode and policy need calibrated thresholds that no source gives: a pruning
 * mode, no req->thresholds, no policy.file, and policy layer/head, or oracle/onchip with
 * policy.delta = -1. */
int sp_op_needs_calibration(const sp_op_request *req);

/* The explicit form of "calibrate if needed, then create": when sp_op_needs_calibration(req),
 * calibrates for mode sprint on req->calib (sp_calibrate: a dozen evaluations of the
 * calibration stories) and builds the op with those thresholds; otherwise exactly
 * sp_attn_op_create. *used (if not NULL) receives the calibrated thresholds (caller frees;
 * NULL when none were calibrated). */
sp_status sp_attn_op_create_calibrated(const sp_op_request *req, int n_layers, int n_heads, sp_attn_op **out,
                                       sp_thresholds **used, sp_error *err);

/* Which per-pair statistics op computes (SP_STATS_* bits): SP_STATS_EXACT = exact_pass,
 * false_prunes and false_keeps; SP_STATS_MASS = mass_lost. The reference pruning operators
 * always compute the first, the fast sprint implementation only with sprint.exact_stats; both
 * compute the mass only with sprint.mass_lost. Operators that prune nothing (dense, dense-ref)
 * report both: their statistics are exact by construction. */
#define SP_STATS_EXACT 1u
#define SP_STATS_MASS 2u
unsigned sp_attn_op_stats_computed(const sp_attn_op *op);

/* The mode names accepted by sp_attn_op_create, "|"-separated. */
extern const char *const SP_ATTN_MODES;

/* Calibrates the thresholds of policy.kind for req->mode on the first policy.calib_stories
 * stories of req->calib with req->model: for policy.target_kept > 0 the kept fraction of
 * (query, key) pairs, else the largest pruning whose mean NLL stays within policy.loss_budget
 * (relative) of dense on those stories. layer/head: per-(layer, head) score quantiles at a
 * common kept fraction, bisected; oracle/onchip: delta, bisected; topk: not calibrated
 * (error). *out is owned by the caller (sp_thresholds_free). */
sp_status sp_calibrate(const sp_op_request *req, sp_thresholds **out, sp_error *err);

#ifdef __cplusplus
}
#endif
#endif
