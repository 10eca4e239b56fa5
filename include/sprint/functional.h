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

typedef struct sp_op_request {
    const char *mode;             /* dense | pruning | sprint-norecompute | sprint */
    const sp_config *cfg;         /* quant, reram, sprint, policy sections */
    const sp_model *model;        /* for automatic calibration; may be NULL */
    const sp_corpus *calib;       /* calibration stories; may be NULL */
    sp_progress_fn progress;      /* may be NULL */
    void *progress_user;
} sp_op_request;

/* Builds the operator for req->mode with n_layers x n_heads stats slots. Unknown mode,
 * invalid config combination or thresholds file for another model shape: an error. */
sp_status sp_attn_op_create(const sp_op_request *req, int n_layers, int n_heads, sp_attn_op **out,
                            sp_error *err);

/* The mode names accepted by sp_attn_op_create, "|"-separated. */
extern const char *const SP_ATTN_MODES;

#ifdef __cplusplus
}
#endif
#endif
