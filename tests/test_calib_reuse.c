/* test_calib_reuse.c: calibration reuses the bisection's probe at the final delta (or kept
 * fraction) instead of evaluating the stories again: is the count of evaluations one less,
 * does progress still end at 100%, and are the calibration's NLL and kept fraction exactly
 * those of a fresh evaluation with the thresholds it returns? On the shared stories260K model;
 * skipped when ../shared is absent. */
#include <criterion/criterion.h>
#include <string.h>

#include "helpers.h"
#include "sprint/functional.h"
#include "sprint/model.h"

typedef struct prog {
    int calls, last_done, last_total;
} prog;

static void on_progress(void *user, const char *what, double done, double total) {
    prog *p = user;
    if (strcmp(what, "calibration evals")) return;
    p->calls++;
    p->last_done = (int)done;
    p->last_total = (int)total;
}

static int load(sp_model **m, sp_corpus *c) {
    char mp[4096], tp[4096], xp[4096];
    if (!th_shared_path("models/stories260K.bin", mp, sizeof mp) || !th_shared_path("models/tok512.bin", tp, sizeof tp) ||
        !th_shared_path("data/tinystories-valid-dev.txt", xp, sizeof xp))
        return 0;
    sp_error err = {0};
    cr_assert_eq(sp_model_load(mp, m, &err), SP_OK, "%s", err.msg);
    sp_tokenizer *t = NULL;
    cr_assert_eq(sp_tokenizer_load(tp, sp_model_get_info(*m)->vocab_size, &t, &err), SP_OK);
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(sp_read_file(xp, &text, &len, &err), SP_OK);
    cr_assert_eq(sp_corpus_from_text(t, text, len, 2, c, &err), SP_OK);
    free(text);
    sp_tokenizer_free(t);
    return 1;
}

static void check_kind(sp_model *m, sp_corpus *c, const char *kind, const char *mode) {
    const sp_model_info *info = sp_model_get_info(m);
    sp_config cfg;
    sp_config_defaults(&cfg);
    sp_error err = {0};
    cr_assert_eq(sp_config_set(&cfg, kind, "t", &err), SP_OK);
    cr_assert_eq(sp_config_set(&cfg, "policy.calib_stories=2", "t", &err), SP_OK);
    cr_assert_eq(sp_config_set(&cfg, "policy.calib_iters=5", "t", &err), SP_OK);
    cr_assert_eq(sp_config_set(&cfg, "policy.loss_budget=0.01", "t", &err), SP_OK);
    prog p = {0, 0, 0};
    sp_op_request req = {.mode = mode, .cfg = &cfg, .model = m, .calib = c, .progress = on_progress,
                         .progress_user = &p};
    sp_thresholds *t = NULL;
    cr_assert_eq(sp_calibrate(&req, &t, &err), SP_OK, "%s", err.msg);
    /* a 1% budget is met inside the bracket, so the bisection probed its final point: the dense
     * evaluation and 5 probes, no sixth evaluation, and progress ends at done == total */
    cr_assert_eq(p.calls, 6, "%s: %d progress calls", kind, p.calls);
    cr_assert_eq(p.last_done, 6, "%s: %d evaluations", kind, p.last_done);
    cr_assert_eq(p.last_total, 6, "%s: progress total %d", kind, p.last_total);
    /* the reused probe equals a fresh evaluation with the returned thresholds, bit for bit */
    sp_op_request r2 = {.mode = mode, .cfg = &cfg, .thresholds = t};
    sp_attn_op *op = NULL;
    cr_assert_eq(sp_attn_op_create(&r2, info->n_layers, info->n_heads, &op, &err), SP_OK, "%s", err.msg);
    sp_eval_opts eo = {.window = (int)cfg.eval_window};
    sp_eval_result r;
    sp_corpus sub = *c;
    cr_assert_eq(sp_eval_corpus(m, &sub, op, &eo, &r, &err), SP_OK, "%s", err.msg);
    cr_assert(!memcmp(&r.nll, &t->nll, sizeof r.nll), "%s: calibration NLL %.17g, evaluation %.17g", kind, t->nll, r.nll);
    double kf = sp_attn_stats_kept_fraction(&r.attn);
    cr_assert(!memcmp(&kf, &t->kept_fraction, sizeof kf), "%s: kept %.17g vs %.17g", kind, t->kept_fraction, kf);
    cr_assert(t->nll <= t->nll_dense * 1.01, "%s: budget missed", kind);
    sp_attn_op_free(op);
    sp_thresholds_free(t);
}

Test(calib_reuse, final_probe_is_reused_and_exact) {
    sp_model *m = NULL;
    sp_corpus c;
    if (!load(&m, &c)) cr_skip_test("shared model or text not found (set SPRINT_SHARED)");
    check_kind(m, &c, "policy.kind=onchip", "sprint");
    check_kind(m, &c, "policy.kind=layer", "pruning");
    sp_corpus_free(&c);
    sp_model_free(m);
}
