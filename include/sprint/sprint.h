/* sprint/sprint.h: the whole public API of the sprint library in one include, and which
 * calls are stable (issue 10).
 *
 *   #include <sprint/sprint.h>        cc x.c $(pkg-config --cflags --libs sprint)
 *
 * Conventions for every call: the library never prints to stdout and never exits; a user's
 * mistake returns a non-zero sp_status with a one-line message in sp_error; a broken
 * invariant (a bug) aborts with file:line (SP_ASSERT). Objects come in create/free (or
 * load/free) pairs; sp_x_free(NULL) is a no-op.
 *
 * STABLE (kept source-compatible across 0.x minor versions; see sprintConfigVersion.cmake):
 *   common.h     sp_status, sp_error, sp_status_name, sp_rng_* , sp_read_file, sp_now_seconds
 *   config.h     sp_config_defaults, sp_config_load_file, sp_config_set, sp_config_set_value,
 *                sp_config_check_required, sp_config_keys, sp_config_find, sp_config_dump
 *                (keys may be added; a key is never renamed without a release note)
 *   attention.h  sp_attn_head, sp_attn_stats and its sp_attn_stats_* fractions,
 *                sp_query_record, the observer (op->observer / op->observer_user), op->run,
 *                sp_attn_op_free
 *   functional.h sp_attn_op_create (modes "dense", "pruning", "sprint-norecompute",
 *                "sprint"), sp_calibrate, sp_thresholds_load/save/free
 *   model.h      sp_model_load/free/get_info, sp_tokenizer_*, sp_corpus_from_text/free,
 *                sp_eval_corpus
 *   sim.h        sp_sim_hw, sp_hw_check_head, sp_sim_head_create/query/finish/free,
 *                sp_sim_run_synthetic, sp_sim_run_model, sp_workload_preset, sp_result_ratios,
 *                sp_design_name, sp_size_name, sp_energy_cat_name, sp_report_json/csv
 *   paper.h      sp_paper_fig5, sp_paper_fig9 (the paper's values; sp_paper_lookup in sim.h)
 *
 * EXPERIMENTAL (may change in any release):
 *   - the field lists of sp_hw, sp_design_result, sp_wl_result and sp_wl_stats (read the
 *     fields you need; do not rely on their size or order)
 *   - writing your own operator (sp_attn_op_alloc, op->ctx, op->destroy), the reference
 *     helpers sp_attn_scores_ref and sp_attn_softmax_wsum, sp_sim_observer_*, sp_sim_op_config,
 *     sp_relthresh_op_create, sp_report_table / sp_report_paper (text formats change)
 *
 * examples/sprint_example.c runs the functional model and the simulator on tensors it makes. */
#ifndef SPRINT_SPRINT_H
#define SPRINT_SPRINT_H

#include "sprint/attention.h"
#include "sprint/common.h"
#include "sprint/config.h"
#include "sprint/functional.h"
#include "sprint/model.h"
#include "sprint/paper.h"
#include "sprint/sim.h"

#endif
