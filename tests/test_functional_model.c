/* test_functional_model.c: on the shared stories260K model, does threshold -inf reproduce
 * dense evaluation exactly, does automatic calibration land within its budget, and do the
 * calibrate / compare / sweep commands work end to end and refuse a thresholds file for
 * another model shape? Skipped when ../shared is absent. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "sprint/functional.h"
#include "sprint/model.h"

typedef struct fixture {
    sp_model *m;
    sp_corpus c;
} fixture;

static int load(fixture *f, int stories) {
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

static double eval(fixture *f, sp_attn_op *op, sp_eval_result *res) {
    sp_error err = {0};
    sp_eval_opts eo = {0};
    cr_assert_eq(sp_eval_corpus(f->m, &f->c, op, &eo, res, &err), SP_OK, "%s", err.msg);
    return res->nll;
}

Test(functional_model, minus_infinity_threshold_equals_dense_nll_exactly) {
    fixture f;
    if (!load(&f, 2)) cr_skip_test("shared model or text not found (set SPRINT_SHARED)");
    const sp_model_info *info = sp_model_get_info(f.m);
    sp_attn_op *dense = sp_attn_dense_create(info->n_layers, info->n_heads);
    sp_eval_result rd, rs;
    double nd = eval(&f, dense, &rd);
    sp_config cfg;
    sp_config_defaults(&cfg);
    sp_error err = {0};
    cr_assert_eq(sp_config_set(&cfg, "policy.kind=layer", "t", &err), SP_OK);
    cr_assert_eq(sp_config_set(&cfg, "policy.threshold=-1e30", "t", &err), SP_OK);
    /* bit for bit: the double arithmetic of the reference implementation */
    cr_assert_eq(sp_config_set(&cfg, "sprint.impl=reference", "t", &err), SP_OK);
    sp_op_request req = {.mode = "sprint", .cfg = &cfg};
    sp_attn_op *op = NULL;
    cr_assert_eq(sp_attn_op_create(&req, info->n_layers, info->n_heads, &op, &err), SP_OK);
    double ns = eval(&f, op, &rs);
    cr_assert_eq(ns, nd, "sprint(-inf) NLL %.17g != dense %.17g", ns, nd);
    cr_assert_eq(rs.attn.pairs_kept, rd.attn.pairs_visible);
    sp_attn_op_free(op);
    sp_attn_op_free(dense);
    sp_corpus_free(&f.c);
    sp_model_free(f.m);
}

Test(functional_model, default_sprint_calibrates_within_budget) {
    fixture f;
    if (!load(&f, 1)) cr_skip_test("shared model or text not found (set SPRINT_SHARED)");
    const sp_model_info *info = sp_model_get_info(f.m);
    sp_config cfg;
    sp_config_defaults(&cfg);
    sp_error err = {0};
    cr_assert_eq(sp_config_set(&cfg, "policy.calib_stories=1", "t", &err), SP_OK);
    cr_assert_eq(sp_config_set(&cfg, "policy.calib_iters=6", "t", &err), SP_OK);
    sp_op_request req = {.mode = "sprint", .cfg = &cfg, .model = f.m, .calib = &f.c};
    sp_thresholds *t = NULL;
    cr_assert_eq(sp_calibrate(&req, &t, &err), SP_OK, "%s", err.msg);
    cr_assert_str_eq(t->kind, "onchip");
    cr_assert(t->delta > 0.5 && t->delta < 32, "delta %g", t->delta);
    cr_assert(t->nll <= t->nll_dense * (1 + cfg.policy_loss_budget) + 1e-12, "calibration missed its budget");
    cr_assert(t->kept_fraction < 0.5, "kept %g", t->kept_fraction);
    /* an op built with these thresholds reproduces the calibration's figures */
    sp_attn_op *op = NULL;
    req.thresholds = t;
    cr_assert_eq(sp_attn_op_create(&req, info->n_layers, info->n_heads, &op, &err), SP_OK, "%s", err.msg);
    sp_eval_result r;
    double nll = eval(&f, op, &r);
    cr_assert_float_eq(nll, t->nll, 1e-12);
    cr_assert(sp_attn_stats_mem_kept_fraction(&r.attn) >= sp_attn_stats_kept_fraction(&r.attn));
    cr_assert(sp_attn_stats_false_prune_rate(&r.attn) < 0.01);
    /* recompute matters: the same thresholds without recompute lose clearly more */
    sp_op_request nr = req;
    nr.mode = "sprint-norecompute";
    nr.thresholds = t;
    sp_attn_op *op2 = NULL;
    cr_assert_eq(sp_attn_op_create(&nr, info->n_layers, info->n_heads, &op2, &err), SP_OK);
    double nll2 = eval(&f, op2, &r);
    cr_assert(nll2 > nll * 1.05, "norecompute %g vs sprint %g", nll2, nll);
    sp_attn_op_free(op), sp_attn_op_free(op2);
    sp_thresholds_free(t);
    sp_corpus_free(&f.c);
    sp_model_free(f.m);
}

Test(functional_model, commands_end_to_end) {
    TH_NEED_SHARED(model, "models/stories260K.bin");
    (void)model;
    static char out[65536], err[65536];
    const char *th = th_temp_text("");
    char args[1024];
    snprintf(args, sizeof args,
             "calibrate --out %s --set policy.kind=head --set policy.target_kept=0.3 --set eval.max_stories=2 "
             "--set policy.calib_stories=1 --quiet --json", th);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(out, "\"kind\":\"head\""), "%s", out);
    /* the file works with eval and is refused for another model shape */
    snprintf(args, sizeof args, "eval --attention pruning --set policy.kind=head --set policy.file=%s "
             "--set eval.max_stories=1 --json --quiet", th);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(out, "\"kept_fraction\""), "%s", out);
    const char *bad = th_temp_text("sprint-thresholds 1\nkind onchip\nlayers 5\nheads 4\nhead_dim 8\ndelta 3\n");
    snprintf(args, sizeof args, "eval --attention sprint --set policy.file=%s --set eval.max_stories=1 --quiet", bad);
    int rc = th_run_sprint(args, out, sizeof out, err, sizeof err);
    cr_assert_eq(rc, 1, "rc %d: %s", rc, err);
    cr_assert(strstr(err, "5 layers x 4 heads") && strstr(err, "5 x 8"), "%s", err);
    /* default eval --attention sprint calibrates explicitly on story 1 and evaluates story 2 */
    cr_assert_eq(th_run_sprint("eval --attention sprint --set eval.max_stories=2 --set policy.calib_iters=4 --json --quiet",
                               out, sizeof out, err, sizeof err),
                 0, "%s", err);
    cr_assert(strstr(out, "\"first_story\":2,") && strstr(out, "\"calib_stories\":1") &&
                  strstr(out, "\"nll_change\":"), "%s", out);
    char *kf = strstr(out, "\"kept_fraction\":");
    cr_assert_not_null(kf, "%s", out);
    cr_assert(atof(kf + 16) < 0.5 && atof(kf + 16) > 0.01, "%s", out);
    cr_assert(strstr(out, "\"false_prune_rate\"") && strstr(out, "\"new_fetch_fraction\""), "%s", out);
    /* compare and sweep, tiny */
    cr_assert_eq(th_run_sprint("compare --policies oracle --modes sprint --set policy.delta=3 --set eval.max_stories=1 "
                               "--json --quiet",
                               out, sizeof out, err, sizeof err),
                 0, "%s", err);
    cr_assert(strstr(out, "\"mode\":\"dense\"") && strstr(out, "\"policy\":\"oracle\"") &&
                  strstr(out, "\"false_prune_rate\""), "%s", out);
    cr_assert_eq(th_run_sprint("sweep --param msb_bits --values 2,8 --set policy.delta=3 --set eval.max_stories=1 --quiet",
                               out, sizeof out, err, sizeof err),
                 0, "%s", err);
    cr_assert(strstr(out, "quant.msb_bits"), "%s", out);
    cr_assert_eq(th_run_sprint("sweep --param nonsense", out, sizeof out, err, sizeof err), 2);
    cr_assert_eq(th_run_sprint("sweep --param msb_bits --values 9", out, sizeof out, err, sizeof err), 2, "%s", err);
    cr_assert(strstr(err, "quant.msb_bits"), "%s", err);
    cr_assert_eq(th_run_sprint("calibrate", out, sizeof out, err, sizeof err), 2);
    cr_assert_eq(th_run_sprint("compare --help", out, sizeof out, err, sizeof err), 0);
    cr_assert(strstr(out, "usage: sprint compare"));
}

/* Bad inputs through the CLI: each a one-line error naming the culprit, exit 1 (user error)
 * or 2 (usage), never a crash. */
static void cli_fails(const char *args, int want_rc, const char *needle) {
    static char out[65536], err[65536];
    int rc = th_run_sprint(args, out, sizeof out, err, sizeof err);
    cr_assert_eq(rc, want_rc, "'%s': rc %d: %s", args, rc, err);
    cr_assert(strstr(err, needle), "'%s': message '%s' lacks '%s'", args, err, needle);
}

Test(functional_model, cli_bad_inputs_are_clear_errors) {
    TH_NEED_SHARED(model, "models/stories260K.bin");
    (void)model;
    char args[1024];
    /* truncated thresholds file (a row cut short), and a corrupt shape */
    const char *trunc = th_temp_text("sprint-thresholds 1\nkind head\nlayers 5\nheads 8\nhead_dim 8\nvalues\n1 2 3\n");
    snprintf(args, sizeof args, "eval --attention sprint --set policy.kind=head --set policy.file=%s --quiet", trunc);
    cli_fails(args, 1, ":7: layer 0: expected 8 numbers");
    const char *huge = th_temp_text("sprint-thresholds 1\nkind onchip\nlayers 100000\nheads 100000\nhead_dim 8\ndelta 1\n");
    snprintf(args, sizeof args, "eval --attention sprint --set policy.file=%s --quiet", huge);
    cli_fails(args, 1, "model shape");
    snprintf(args, sizeof args, "compare --policies onchip --set policy.file=%s --quiet", huge);
    cli_fails(args, 1, "model shape");
    /* compare uses policy.file (it once ignored it silently): another shape, another kind */
    const char *other = th_temp_text("sprint-thresholds 1\nkind onchip\nlayers 5\nheads 4\nhead_dim 8\ndelta 3\n");
    snprintf(args, sizeof args, "compare --policies onchip --set policy.file=%s --quiet", other);
    cli_fails(args, 1, "5 layers x 4 heads");
    snprintf(args, sizeof args, "compare --policies oracle --set policy.file=%s --quiet", other);
    cli_fails(args, 2, "policy 'onchip', which --policies does not list");
    static char out[65536], err[65536];
    const char *good = th_temp_text("sprint-thresholds 1\nkind oracle\nlayers 5\nheads 8\nhead_dim 8\ndelta 0.75\n");
    snprintf(args, sizeof args,
             "compare --policies oracle --modes sprint --set policy.file=%s --set eval.max_stories=1 --json --quiet", good);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(out, "\"delta_nats\":0.75,"), "compare takes delta from the file: %s", out);
    /* out-of-range bit widths, unknown policy and mode, topk calibration */
    cli_fails("eval --attention sprint --set quant.msb_bits=9 --quiet", 2, "quant.msb_bits");
    cli_fails("sweep --param dac_bits --values 1 --quiet", 2, "reram.dac_bits");
    cli_fails("eval --attention sprint --set policy.kind=magic --quiet", 2, "policy.kind");
    cli_fails("compare --policies magic --quiet", 2, "magic");
    cli_fails("eval --attention sparse --quiet", 2, "unknown attention mode 'sparse'");
    cli_fails("calibrate --out /dev/null --set policy.kind=topk --quiet", 2, "topk");
    cli_fails("calibrate --bogus", 2, "unknown option '--bogus' (see sprint calibrate --help)");
    /* every command's help names its units */
    const char *cmds[3] = {"calibrate --help", "compare --help", "sweep --help"};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(th_run_sprint(cmds[i], out, sizeof out, err, sizeof err), 0, "%s", cmds[i]);
        cr_assert(strstr(out, "nats"), "%s: no unit in '%s'", cmds[i], out);
    }
    cr_assert(strstr(out, "(bits)") && strstr(out, "fraction of full scale"), "sweep lists units: %s", out);
}

/* Calibration for a target kept fraction: the per-(layer, head) or per-layer score quantiles
 * keep that fraction of the visible pairs (pruning mode: exact scores, so up to the histogram's
 * bin width); a layer file shares one threshold over its heads, a head file does not. */
Test(functional_model, calibration_hits_its_target_kept_fraction) {
    fixture f;
    if (!load(&f, 1)) cr_skip_test("shared model or text not found (set SPRINT_SHARED)");
    const char *kinds[2] = {"policy.kind=layer", "policy.kind=head"};
    for (int k = 0; k < 2; k++) {
        sp_config cfg;
        sp_config_defaults(&cfg);
        sp_error err = {0};
        cr_assert_eq(sp_config_set(&cfg, kinds[k], "t", &err), SP_OK);
        cr_assert_eq(sp_config_set(&cfg, "policy.calib_stories=1", "t", &err), SP_OK);
        cr_assert_eq(sp_config_set(&cfg, "policy.target_kept=0.3", "t", &err), SP_OK);
        sp_op_request req = {.mode = "pruning", .cfg = &cfg, .model = f.m, .calib = &f.c};
        sp_thresholds *t = NULL;
        cr_assert_eq(sp_calibrate(&req, &t, &err), SP_OK, "%s", err.msg);
        cr_assert(fabs(t->kept_fraction - 0.3) < 0.01, "%s: kept %g for a target of 0.3", kinds[k], t->kept_fraction);
        int same = 1;
        for (int l = 0; l < t->n_layers; l++)
            for (int h = 1; h < t->n_heads; h++) same &= t->values[l * t->n_heads + h] == t->values[l * t->n_heads];
        cr_assert_eq(same, k == 0, "%s: thresholds shared over a layer's heads iff kind layer", kinds[k]);
        sp_thresholds_free(t);
    }
    sp_corpus_free(&f.c);
    sp_model_free(f.m);
}
