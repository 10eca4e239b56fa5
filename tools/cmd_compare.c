/* sprint compare: one run over the shared model and text comparing modes x threshold
 * policies (issue 3): mean NLL, perplexity, NLL change vs dense, kept fraction, false-prune
 * rate, new-fetch fraction. Each policy is calibrated once (for the loss budget, in mode
 * sprint, on the first policy.calib_stories stories) and the same thresholds are then used
 * by every mode, so the rows of one policy differ only by the mode. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "fn_common.h"
#include "progress.h"

static void help(void) {
    printf("usage: sprint compare [--modes LIST] [--policies LIST] [--calibrate-mode MODE]\n"
           "                      [--model M] [--tokenizer T] [--text F] [common options]\n\n"
           "Evaluates dense attention (double reference), then for each threshold policy calibrates its\n"
           "thresholds once and evaluates each mode with them, and prints the table mode x policy ->\n"
           "mean NLL (nats/token), perplexity, NLL change vs dense (%%), kept fraction (%% of visible\n"
           "(query, key) pairs entering softmax), mem-kept fraction (%% fetched after the in-memory\n"
           "comparator), false-prune rate (%% of exactly passing pairs pruned in memory), new-fetch\n"
           "fraction (%% of the visible sequence newly fetched per query).\n\n"
           "  --modes LIST           comma-separated, from pruning,sprint-norecompute,sprint (default all three)\n"
           "  --policies LIST        comma-separated, from layer,head,topk,oracle,onchip (default all five)\n"
           "  --calibrate-mode MODE  mode the thresholds are calibrated for (default sprint)\n"
           "%s"
           "  Keys: policy.* (calib_stories, loss_budget, target_kept, delta: >= 0 skips calibrating oracle/onchip;\n"
           "        file: thresholds used for the policy of the file's kind instead of calibrating it),\n"
           "        quant.*, reram.*, sprint.*, eval.max_stories, eval.window (see docs/config.md)\n\n%s",
           FN_PATH_HELP, CLI_COMMON_HELP);
}

int cmd_compare(int argc, char **argv) {
    cli_common c;
    cli_init(&c, "compare");
    const char *modes_text = "pruning,sprint-norecompute,sprint", *pol_text = "layer,head,topk,oracle,onchip";
    char modes_buf[256], pol_buf[256];
    const char *cal_mode = "sprint";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (fn_shared_option(&c, argc, argv, &i, help)) continue;
        if (!strcmp(a, "--modes")) {
            modes_text = cli_value(&c, argc, argv, &i);
        } else if (!strcmp(a, "--policies")) {
            pol_text = cli_value(&c, argc, argv, &i);
        } else if (!strcmp(a, "--calibrate-mode")) {
            cal_mode = cli_value(&c, argc, argv, &i);
        } else {
            fn_unknown_option(&c, a);
        }
    }
    cli_finish(&c);
    char *modes[8], *pols[8];
    int nm = cli_list(&c, "--modes", modes_text, modes_buf, sizeof modes_buf, modes, 8);
    int np = cli_list(&c, "--policies", pol_text, pol_buf, sizeof pol_buf, pols, 8);
    for (int i = 0; i < nm; i++)
        if (strcmp(modes[i], "pruning") && strcmp(modes[i], "sprint-norecompute") && strcmp(modes[i], "sprint"))
            cli_die(&c, 2, "--modes: unknown mode '%s' (pruning, sprint-norecompute, sprint)%s", modes[i],
                    cli_mode_hint(modes[i]));
    for (int i = 0; i < np; i++)
        if (strcmp(pols[i], "layer") && strcmp(pols[i], "head") && strcmp(pols[i], "topk") &&
            strcmp(pols[i], "oracle") && strcmp(pols[i], "onchip"))
            cli_die(&c, 2, "--policies: unknown policy '%s' (layer, head, topk, oracle, onchip)", pols[i]);
    if (strcmp(cal_mode, "pruning") && strcmp(cal_mode, "sprint-norecompute") && strcmp(cal_mode, "sprint"))
        cli_die(&c, 2, "--calibrate-mode: expected pruning, sprint-norecompute or sprint, got '%s'", cal_mode);

    sp_error err = {0};
    /* policy.file: used for the policy of its kind instead of calibrating it (it was once
     * silently ignored); checked against the model before the long run */
    sp_thresholds *file_t = NULL;
    if (c.cfg.policy_file[0]) {
        if (sp_thresholds_load(c.cfg.policy_file, &file_t, &err) != SP_OK) cli_die_err(&c, &err);
        int used = 0;
        for (int p = 0; p < np; p++) used |= !strcmp(pols[p], file_t->kind);
        if (!used)
            cli_die(&c, 2, "policy.file %s holds thresholds of policy '%s', which --policies does not list",
                    c.cfg.policy_file, file_t->kind);
    }
    /* the text is split in halves when some policy is calibrated on it (eval.split = auto) */
    int any_cal = 0;
    for (int p = 0; p < np; p++) {
        int rel = !strcmp(pols[p], "oracle") || !strcmp(pols[p], "onchip");
        int from_file = file_t && !strcmp(pols[p], file_t->kind);
        any_cal |= !from_file && strcmp(pols[p], "topk") && !(rel && c.cfg.policy_delta >= 0);
    }
    fn_session s;
    fn_session_load(&c, &s, any_cal);
    int L = s.info->n_layers, H = s.info->n_heads;
    fn_row *rows = calloc((size_t)(1 + nm * np), sizeof *rows);
    int nr = 0;
    if (file_t && (file_t->n_layers != L || file_t->n_heads != H || file_t->head_dim != s.info->head_dim))
        cli_die(&c, 1, "thresholds file %s is for a model of %d layers x %d heads (head dim %d), this one has %d x %d "
                "(head dim %d): calibrate for this model (sprint calibrate)", c.cfg.policy_file, file_t->n_layers,
                file_t->n_heads, file_t->head_dim, L, H, s.info->head_dim);

    /* stages: dense, then per policy its calibration (when needed) and one eval per mode */
    int nstages = 1 + np * nm;
    for (int p = 0; p < np; p++) {
        int rel = !strcmp(pols[p], "oracle") || !strcmp(pols[p], "onchip");
        nstages += !(file_t && !strcmp(pols[p], file_t->kind)) && strcmp(pols[p], "topk") && !(rel && c.cfg.policy_delta >= 0);
    }
    progress_stages(nstages);
    sp_op_request dreq = {.mode = "dense", .cfg = &c.cfg};
    sp_attn_op *op = NULL;
    if (sp_attn_op_create(&dreq, L, H, &op, &err) != SP_OK) cli_die_err(&c, &err);
    fn_row *dr = &rows[nr++];
    snprintf(dr->mode, sizeof dr->mode, "dense");
    snprintf(dr->policy, sizeof dr->policy, "-");
    dr->delta = NAN;
    progress_stage(&c, "dense reference");
    fn_eval(&c, &s, op, 0, dr);
    sp_attn_op_free(op);
    double nll_dense = dr->nll;

    for (int p = 0; p < np; p++) {
        sp_config cfg = c.cfg;
        snprintf(cfg.policy_kind, sizeof cfg.policy_kind, "%s", pols[p]);
        cfg.policy_file[0] = 0;
        sp_thresholds *t = NULL;
        int relative = !strcmp(pols[p], "oracle") || !strcmp(pols[p], "onchip");
        int from_file = file_t && !strcmp(pols[p], file_t->kind);
        int need_cal = !from_file && strcmp(pols[p], "topk") && !(relative && cfg.policy_delta >= 0);
        if (from_file) {
            t = file_t;
            file_t = NULL;
            if (!c.quiet) fprintf(stderr, "[compare] policy %s: thresholds from %s\n", pols[p], c.cfg.policy_file);
        } else if (need_cal) {
            char what[128];
            snprintf(what, sizeof what, "calibrating policy %s for mode %s", pols[p], cal_mode);
            progress_stage(&c, what);
            sp_op_request creq = {.mode = cal_mode, .cfg = &cfg, .model = s.model, .calib = &s.calib,
                                  .progress = cli_progress, .progress_user = &c};
            if (sp_calibrate(&creq, &t, &err) != SP_OK) cli_die_err(&c, &err);
            cli_progress_done();
        }
        for (int m = 0; m < nm; m++) {
            sp_op_request req = {.mode = modes[m], .cfg = &cfg, .model = s.model, .thresholds = t};
            if (sp_attn_op_create(&req, L, H, &op, &err) != SP_OK) cli_die_err(&c, &err);
            fn_row *r = &rows[nr++];
            snprintf(r->mode, sizeof r->mode, "%s", modes[m]);
            snprintf(r->policy, sizeof r->policy, "%s", pols[p]);
            r->delta = relative ? (t ? t->delta : cfg.policy_delta) : NAN;
            char what[128];
            snprintf(what, sizeof what, "%s / %s", modes[m], pols[p]);
            progress_stage(&c, what);
            fn_eval(&c, &s, op, nll_dense, r);
            sp_attn_op_free(op);
        }
        sp_thresholds_free(t);
    }
    char title[1400];
    snprintf(title, sizeof title,
             "sprint compare: %s on %s (stories %d-%d, %ld predicted tokens); thresholds calibrated for %s on the "
             "first %ld stories of %s%s, loss budget %.2f%%",
             c.cfg.model_checkpoint, c.cfg.eval_text, s.first_story, s.first_story + s.corpus.n - 1,
             s.corpus.total_targets, cal_mode, c.cfg.policy_calib_stories, s.calib_from,
             s.split ? " (first half)" : "", 100 * c.cfg.policy_loss_budget);
    fn_print_rows(&c, title, rows, nr, 0);
    free(rows);
    fn_session_free(&s);
    return 0;
}
