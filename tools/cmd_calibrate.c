/* sprint calibrate: thresholds from data for the configured policy (issue 3): writes a
 * thresholds file (docs/functional.md) for a target kept fraction (policy.target_kept) or a
 * loss budget (policy.loss_budget) on the first policy.calib_stories stories. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "fn_common.h"

static void help(void) {
    printf("usage: sprint calibrate --out FILE [--attention MODE] [--model M] [--tokenizer T] [--text F]\n"
           "                        [common options]\n\n"
           "Calibrates the thresholds of policy.kind (layer, head, oracle, onchip; topk has none) for MODE\n"
           "(pruning, sprint-norecompute or sprint; default sprint) on the first policy.calib_stories stories\n"
           "of the text: the smallest kept fraction whose mean NLL stays within policy.loss_budget of dense,\n"
           "or the kept fraction policy.target_kept when > 0. Writes the thresholds file FILE, which\n"
           "`--set policy.file=FILE` (eval, compare, sweep, run) loads; a file for another model shape is\n"
           "refused there. Prints the thresholds (layer/head) or delta (oracle/onchip) in nats (of the\n"
           "score s = q.k / sqrt(d)), the calibration NLL in nats/token and its change vs dense (%%), and\n"
           "the kept fraction (%% of visible (query, key) pairs).\n"
           "Units: policy.loss_budget is a fraction of the dense mean NLL (0.005 = +0.5 %%),\n"
           "policy.target_kept a fraction of the visible pairs (0..1).\n\n"
           "  --out FILE        thresholds file to write (required)\n"
           "  --attention MODE  mode calibrated for (default sprint)\n"
           "%s"
           "  Keys: policy.kind, policy.calib_stories, policy.loss_budget, policy.target_kept, quant.*, reram.*,\n"
           "        sprint.* (see docs/config.md)\n\n%s",
           FN_PATH_HELP, CLI_COMMON_HELP);
}

int cmd_calibrate(int argc, char **argv) {
    cli_common c;
    cli_init(&c, "calibrate");
    const char *out = NULL, *mode = "sprint";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (fn_shared_option(&c, argc, argv, &i, help)) continue;
        if (!strcmp(a, "--out")) {
            out = cli_value(&c, argc, argv, &i);
        } else if (!strcmp(a, "--attention")) {
            mode = cli_value(&c, argc, argv, &i);
        } else {
            fn_unknown_option(&c, a);
        }
    }
    if (!out) cli_die(&c, 2, "--out FILE is required (see sprint calibrate --help)");
    cli_finish(&c);
    if (!strcmp(c.cfg.policy_kind, "topk"))
        cli_die(&c, 2, "policy topk has no thresholds to calibrate (set policy.topk_fraction)");
    fn_session s;
    fn_session_load(&c, &s, 1);
    sp_op_request req = {.mode = mode, .cfg = &c.cfg, .model = s.model, .calib = &s.calib, .progress = cli_progress,
                         .progress_user = &c};
    sp_thresholds *t = NULL;
    sp_error err = {0};
    if (sp_calibrate(&req, &t, &err) != SP_OK) cli_die_err(&c, &err);
    cli_progress_done();
    if (sp_thresholds_save(t, out, &err) != SP_OK) cli_die_err(&c, &err);
    double mn = INFINITY, mx = -INFINITY, mean = 0;
    int nv = t->values ? t->n_layers * t->n_heads : 0;
    for (int i = 0; i < nv; i++) {
        mn = fmin(mn, t->values[i]);
        mx = fmax(mx, t->values[i]);
        mean += t->values[i] / nv;
    }
    double dn = t->nll_dense > 0 ? (t->nll - t->nll_dense) / t->nll_dense : 0;
    if (c.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file", out);
        cJSON_AddStringToObject(o, "kind", t->kind);
        cJSON_AddStringToObject(o, "mode", t->mode);
        cJSON_AddNumberToObject(o, "calib_stories", t->calib_stories);
        /* the keys are the CSV column names (units in the names) */
        if (!nv) cJSON_AddNumberToObject(o, "delta_nats", t->delta);
        else {
            cJSON_AddNumberToObject(o, "threshold_min_nats", mn);
            cJSON_AddNumberToObject(o, "threshold_mean_nats", mean);
            cJSON_AddNumberToObject(o, "threshold_max_nats", mx);
        }
        cJSON_AddNumberToObject(o, "nll_dense_nats_per_token", t->nll_dense);
        cJSON_AddNumberToObject(o, "nll_nats_per_token", t->nll);
        cJSON_AddNumberToObject(o, "nll_change_fraction", dn);
        cJSON_AddNumberToObject(o, "kept_fraction", t->kept_fraction);
        fn_print_json(o);
    } else {
        printf("sprint calibrate: wrote %s\n", out);
        printf("%-22s %s for mode %s, %d calibration stories\n", "policy", t->kind, t->mode, t->calib_stories);
        if (!nv) printf("%-22s %.4f nats\n", "delta", t->delta);
        else printf("%-22s min %.4f, mean %.4f, max %.4f nats\n", "thresholds", mn, mean, mx);
        printf("%-22s %.5f nats/token (dense %.5f, %+.3f %%)\n", "calibration NLL", t->nll, t->nll_dense, 100 * dn);
        printf("%-22s %.2f %% of visible pairs\n", "kept fraction", 100 * t->kept_fraction);
    }
    if (c.csv_path) {
        FILE *f = cli_output_open(&c, c.csv_path); /* complete or absent */
        /* the JSON keys; the thresholds of a layer/head file or the delta of oracle/onchip */
        fprintf(f, "kind,mode,calib_stories,%snll_dense_nats_per_token,nll_nats_per_token,nll_change_fraction,"
                   "kept_fraction\n", nv ? "threshold_min_nats,threshold_mean_nats,threshold_max_nats," : "delta_nats,");
        fprintf(f, "%s,%s,%d,", t->kind, t->mode, t->calib_stories);
        if (nv) fprintf(f, "%.6g,%.6g,%.6g,", mn, mean, mx);
        else fprintf(f, "%.6g,", t->delta);
        fprintf(f, "%.8f,%.8f,%.6f,%.6f\n", t->nll_dense, t->nll, dn, t->kept_fraction);
        cli_output_commit(&c);
    }
    sp_thresholds_free(t);
    fn_session_free(&s);
    return 0;
}
