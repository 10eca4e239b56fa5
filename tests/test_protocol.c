/* test_protocol.c: is calibration an explicit step (creating an operator never runs the model),
 * done on stories that are not evaluated (issue 8's accuracy protocol: --calib-text, else the
 * first half of the text calibrates and the second half is evaluated, with a warning whenever
 * the calibration stories are evaluated too), and does `sprint eval --model` pick the
 * tokenizer that matches the model? */
#define _POSIX_C_SOURCE 200809L /* mkstemp, close */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "sprint/functional.h"
#include "sprint/model.h"
#include "tiny_model.h"

static sp_op_request req_for(sp_config *cfg, const char *mode, const char *set1, const char *set2) {
    sp_error err = {0};
    sp_config_defaults(cfg);
    if (set1) cr_assert_eq(sp_config_set(cfg, set1, "t", &err), SP_OK, "%s", err.msg);
    if (set2) cr_assert_eq(sp_config_set(cfg, set2, "t", &err), SP_OK, "%s", err.msg);
    return (sp_op_request){.mode = mode, .cfg = cfg};
}

Test(calibration, needed_exactly_when_no_threshold_source) {
    sp_config cfg;
    sp_op_request r = req_for(&cfg, "sprint", NULL, NULL); /* onchip, delta -1 */
    cr_assert_eq(sp_op_needs_calibration(&r), 1);
    r = req_for(&cfg, "dense", NULL, NULL);
    cr_assert_eq(sp_op_needs_calibration(&r), 0);
    r = req_for(&cfg, "dense-ref", NULL, NULL);
    cr_assert_eq(sp_op_needs_calibration(&r), 0);
    r = req_for(&cfg, "pruning", "policy.kind=head", NULL);
    cr_assert_eq(sp_op_needs_calibration(&r), 1);
    r = req_for(&cfg, "sprint", "policy.delta=3", NULL);
    cr_assert_eq(sp_op_needs_calibration(&r), 0);
    r = req_for(&cfg, "sprint", "policy.kind=topk", NULL);
    cr_assert_eq(sp_op_needs_calibration(&r), 0);
    r = req_for(&cfg, "sprint", "policy.kind=layer", "policy.file=/some/file");
    cr_assert_eq(sp_op_needs_calibration(&r), 0);
    sp_thresholds *t = sp_thresholds_new("onchip", 2, 2, 8);
    r = req_for(&cfg, "sprint-norecompute", NULL, NULL);
    r.thresholds = t;
    cr_assert_eq(sp_op_needs_calibration(&r), 0);
    sp_thresholds_free(t);
}

/* sp_attn_op_create no longer calibrates: with calibration data and a policy that needs it,
 * it fails at once (naming the explicit call) instead of running the model; without data it
 * uses the uncalibrated config value as the simulator needs. */
Test(calibration, create_never_runs_the_model) {
    sp_model *m = tiny_load(&(tiny_spec){.dim = 16, .hidden = 24, .layers = 2, .heads = 4, .kv_heads = 2,
                                         .vocab = 30, .seq_len = 8, .seed = 3});
    cr_assert_not_null(m);
    int toks[4] = {1, 5, 6, 7}, *tp = toks, len = 4;
    sp_corpus c = {.n = 1, .tokens = &tp, .len = &len, .total_targets = 3};
    sp_config cfg;
    sp_op_request r = req_for(&cfg, "sprint", NULL, NULL);
    r.model = m;
    r.calib = &c;
    sp_attn_op *op = (sp_attn_op *)1;
    sp_error err = {0};
    cr_assert_eq(sp_attn_op_create(&r, 2, 4, &op, &err), SP_ERR_ARG);
    cr_assert_null(op);
    cr_assert(strstr(err.msg, "needs calibrated thresholds") && strstr(err.msg, "sp_calibrate"), "%s", err.msg);
    r.calib = NULL; /* the simulator: no data, policy.delta_uncalibrated */
    cr_assert_eq(sp_attn_op_create(&r, 2, 4, &op, &err), SP_OK, "%s", err.msg);
    sp_attn_op_free(op);
    /* the explicit form calibrates and hands back the thresholds it used */
    r.calib = &c;
    cfg.policy_calib_iters = 3;
    sp_thresholds *t = NULL;
    cr_assert_eq(sp_attn_op_create_calibrated(&r, 2, 4, &op, &t, &err), SP_OK, "%s", err.msg);
    cr_assert_not_null(t);
    cr_assert_str_eq(t->kind, "onchip");
    cr_assert_eq(t->calib_stories, 1);
    cr_assert(t->delta > 0 && t->delta <= 32, "delta %g", t->delta);
    sp_attn_op_free(op);
    sp_thresholds_free(t);
    /* nothing to calibrate: the same as sp_attn_op_create, no thresholds returned */
    cfg.policy_delta = 2;
    t = (sp_thresholds *)1;
    cr_assert_eq(sp_attn_op_create_calibrated(&r, 2, 4, &op, &t, &err), SP_OK, "%s", err.msg);
    cr_assert_null(t);
    sp_attn_op_free(op);
    sp_model_free(m);
}

Test(corpus, slice_copies_and_refuses_empty) {
    int a[3] = {1, 4, 5}, b[2] = {1, 9}, d[4] = {1, 2, 3, 4};
    int *tk[3] = {a, b, d}, len[3] = {3, 2, 4};
    sp_corpus c = {.n = 3, .tokens = tk, .len = len, .total_targets = 6};
    sp_corpus s;
    sp_error err = {0};
    cr_assert_eq(sp_corpus_slice(&c, 1, 3, &s, &err), SP_OK);
    cr_assert_eq(s.n, 2);
    cr_assert_eq(s.total_targets, 4);
    cr_assert_eq(s.tokens[1][3], 4);
    cr_assert_neq(s.tokens[0], b, "a slice is a copy");
    sp_corpus_free(&s);
    cr_assert_eq(sp_corpus_slice(&c, 2, 2, &s, &err), SP_ERR_ARG);
    cr_assert_eq(sp_corpus_slice(&c, 0, 4, &s, &err), SP_ERR_ARG);
}

/* ---- the CLI protocol on the shared model ---------------------------------------------- */
static char out[1 << 16], errb[1 << 16];

Test(cli_protocol, eval_splits_and_warns) {
    TH_NEED_SHARED(text, "data/tinystories-valid-dev.txt");
    TH_NEED_SHARED(model, "models/stories260K.bin");
    (void)model;
    char a[8192];
    /* default: calibrate on the first half of 4 stories, evaluate stories 3-4; no warning */
    int rc = th_run_sprint("eval --attention sprint --set eval.max_stories=4 --set policy.calib_iters=3 --json --quiet",
                           out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0, "%s", errb);
    cr_assert(strstr(out, "\"stories\":2,") && strstr(out, "\"first_story\":3,") && strstr(out, "\"calib_stories\":2"),
              "%s", out);
    cr_assert_null(strstr(errb, "warning"), "%s", errb);
    /* dense is evaluated on every story unless asked */
    rc = th_run_sprint("eval --set eval.max_stories=4 --json --quiet", out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0, "%s", errb);
    cr_assert(strstr(out, "\"stories\":4,") && strstr(out, "\"first_story\":1"), "%s", out);
    rc = th_run_sprint("eval --set eval.max_stories=4 --set eval.split=halves --json --quiet", out, sizeof out, errb,
                       sizeof errb);
    cr_assert(rc == 0 && strstr(out, "\"stories\":2,") && strstr(out, "\"first_story\":3"), "%s %s", out, errb);
    /* calibrating on the evaluated stories is allowed, and warned */
    rc = th_run_sprint("eval --attention sprint --set eval.max_stories=2 --set eval.split=none --set policy.calib_iters=2 "
                       "--set policy.calib_stories=1 --json --quiet", out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0, "%s", errb);
    cr_assert(strstr(errb, "warning: calibrating on the first 1 stories of the evaluated text"), "%s", errb);
    snprintf(a, sizeof a, "eval --attention sprint --calib-text %s --set eval.max_stories=2 --set policy.calib_iters=2 "
             "--set policy.calib_stories=1 --json --quiet", text);
    rc = th_run_sprint(a, out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0, "%s", errb);
    cr_assert(strstr(errb, "is the evaluated text"), "%s", errb);
    cr_assert(strstr(out, "\"stories\":2,"), "--calib-text: every story of --text is evaluated: %s", out);
    /* another calibration text: no warning */
    const char *other = th_temp_text("Tom had a red ball. He liked to play with it in the park.\n<|endoftext|>\n");
    snprintf(a, sizeof a, "eval --attention sprint --calib-text %s --set eval.max_stories=1 --set policy.calib_iters=2 "
             "--json --quiet", other);
    rc = th_run_sprint(a, out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0, "%s", errb);
    cr_assert_null(strstr(errb, "warning"), "%s", errb);
    cr_assert(strstr(out, other), "the calibration text is reported: %s", out);
    /* one story cannot be split */
    rc = th_run_sprint("eval --attention sprint --set eval.max_stories=1 --quiet", out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 1, "%s", errb);
    cr_assert(strstr(errb, "cannot calibrate on one half") && strstr(errb, "--calib-text"), "%s", errb);
}

/* --model alone: the tokenizer comes from the shared directory by vocabulary size; a model
 * whose vocabulary has no shared tokenizer and a directory are clear errors. */
Test(cli_protocol, model_picks_its_tokenizer) {
    TH_NEED_SHARED(bitnet, "models/bitnet-3M.bin");
    TH_NEED_SHARED(tok, "models/tok512.bin");
    (void)tok;
    char a[8192];
    snprintf(a, sizeof a, "eval --model %s --set eval.max_stories=1 --json --quiet", bitnet);
    int rc = th_run_sprint(a, out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0, "%s", errb);
    cr_assert(strstr(out, "\"arch\":\"bitnet\"") && strstr(out, "\"nll\":"), "%s", out);
    tiny_spec ts = {.dim = 16, .hidden = 24, .layers = 2, .heads = 4, .kv_heads = 2, .vocab = 30, .seq_len = 8,
                    .seed = 3};
    float *w = tiny_weights(&ts);
    const char *p = tiny_write(&ts, w, 0);
    free(w);
    snprintf(a, sizeof a, "eval --model %s --quiet", p);
    rc = th_run_sprint(a, out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 1, "%s", errb);
    cr_assert(strstr(errb, "no tokenizer for the model's vocabulary of 30 tokens") && strstr(errb, "tok30.bin"), "%s",
              errb);
    rc = th_run_sprint("eval --model /tmp --quiet", out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 1, "%s", errb);
    /* a directory that is not an encoder (no model.json) is refused as a checkpoint */
    cr_assert(strstr(errb, "/tmp") && strstr(errb, "directory"), "%s", errb);
}

/* --per-head writes one row per (layer, head) with the op's statistics, complete or absent. */
Test(cli_protocol, per_head_csv) {
    TH_NEED_SHARED(model, "models/stories260K.bin");
    (void)model;
    char path[] = "/tmp/sprint-perhead-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    char a[512];
    snprintf(a, sizeof a, "eval --attention pruning --set policy.kind=oracle --set policy.delta=2 "
             "--set eval.max_stories=1 --per-head %s --json --quiet", path);
    int rc = th_run_sprint(a, out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0, "%s", errb);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char line[512];
    int n = 0, below = 0;
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_assert(!strncmp(line, "layer,head,queries,kept_fraction,mem_kept_fraction", 50), "%s", line);
    while (fgets(line, sizeof line, f)) {
        int l, h;
        double q, kept;
        cr_assert_eq(sscanf(line, "%d,%d,%lf,%lf", &l, &h, &q, &kept), 4, "%s", line);
        cr_assert(l == n / 8 && h == n % 8 && q > 0 && kept > 0 && kept <= 1, "%s", line);
        below += kept < 1;
        n++;
    }
    fclose(f);
    remove(path);
    cr_assert_eq(n, 5 * 8, "one row per layer and head of stories260K");
    cr_assert(below > 0, "delta 2 nats prunes some pairs in some head");
    rc = th_run_sprint("eval --set eval.max_stories=1 --per-head /nonexistent/dir/x.csv --quiet", out, sizeof out, errb,
                       sizeof errb);
    cr_assert_eq(rc, 1, "%s", errb);
    cr_assert(strstr(errb, "cannot write /nonexistent/dir/x.csv"), "%s", errb);
}
