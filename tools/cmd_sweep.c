#define _POSIX_C_SOURCE 200809L
/* sprint sweep: accuracy and pruning statistics while one parameter of the functional model
 * varies (issue 3: the bit-width sweep b = 1..8 of paper Fig. 5 and each non-ideality's
 * magnitude). The thresholds are calibrated once at the base configuration and then held
 * fixed, so each point shows the parameter's effect alone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "fn_common.h"

typedef struct sweep_param {
    const char *key, *values, *unit;
} sweep_param;

static const sweep_param PARAMS[] = {
    {"quant.msb_bits", "1,2,3,4,5,6,7,8", "bits"},
    {"reram.dac_bits", "2,3,4,5,6,8", "bits"},
    {"reram.d2d_sigma", "0,0.02,0.05,0.1,0.2", "fraction of G"},
    {"reram.c2c_sigma", "0,0.02,0.05,0.1,0.2", "fraction of read current"},
    {"reram.cmp_offset_sigma", "0,0.0001,0.0003,0.001,0.003", "fraction of full scale"},
    {"reram.onoff_ratio", "0,1000,100,30,10", "ratio, 0 = ideal"},
    {"reram.stuck_at_0", "0,0.001,0.01,0.05", "probability per cell"},
    {"reram.stuck_at_1", "0,0.001,0.01,0.05", "probability per cell"},
    {"sprint.margin_sigma", "0,1,2,3,4,6", "std of the score error"},
};
#define NPARAMS (int)(sizeof PARAMS / sizeof PARAMS[0])

/* The values swept for key: the --values list, else the key's default list. */
static const char *param_values(const char *key, const char *values) {
    for (int k = 0; k < NPARAMS && !values; k++)
        if (!strcmp(PARAMS[k].key, key)) values = PARAMS[k].values;
    return values;
}

static void help(void) {
    printf("usage: sprint sweep [--param NAME]... [--values LIST] [--attention MODES]\n"
           "                    [--model M] [--tokenizer T] [--text F] [common options]\n\n"
           "For each swept parameter and value, evaluates the text and prints mean NLL (nats/token), NLL\n"
           "change vs dense (%%), kept fraction, mem-kept (fetched) fraction, false-prune rate and new-fetch\n"
           "fraction. Thresholds (policy.kind) are calibrated once at the base configuration for mode\n"
           "sprint (or taken from policy.file / policy.delta >= 0) and held fixed over the sweep.\n\n"
           "  --param NAME     key to sweep (repeatable; default all of them):\n");
    for (int i = 0; i < NPARAMS; i++) printf("                     %-24s default values %s (%s)\n", PARAMS[i].key, PARAMS[i].values,
               PARAMS[i].unit);
    printf("  --values LIST    comma-separated values (with a single --param)\n"
           "  --attention M    comma-separated modes (default sprint; e.g. sprint,sprint-norecompute)\n"
           "%s\n%s",
           FN_PATH_HELP, CLI_COMMON_HELP);
}

int cmd_sweep(int argc, char **argv) {
    cli_common c;
    cli_init(&c, "sweep");
    const char *sel[NPARAMS];
    int nsel = 0;
    const char *values = NULL;
    char modes_buf[256] = "sprint";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (fn_shared_option(&c, argc, argv, &i, help)) continue;
        if (!strcmp(a, "--param")) {
            const char *p = cli_value(&c, argc, argv, &i);
            int found = -1;
            for (int k = 0; k < NPARAMS; k++) {
                const char *dot = strchr(PARAMS[k].key, '.');
                if (!strcmp(p, PARAMS[k].key) || !strcmp(p, dot + 1)) found = k;
            }
            if (found < 0) cli_die(&c, 2, "--param: '%s' cannot be swept (see sprint sweep --help)", p);
            if (nsel >= NPARAMS) cli_die(&c, 2, "too many --param options");
            sel[nsel++] = PARAMS[found].key;
        } else if (!strcmp(a, "--values")) {
            values = cli_value(&c, argc, argv, &i);
        } else if (!strcmp(a, "--attention")) {
            snprintf(modes_buf, sizeof modes_buf, "%s", cli_value(&c, argc, argv, &i));
        } else {
            fn_unknown_option(&c, a);
        }
    }
    if (values && nsel != 1) cli_die(&c, 2, "--values needs exactly one --param");
    cli_finish(&c);
    if (!nsel)
        for (int k = 0; k < NPARAMS; k++) sel[nsel++] = PARAMS[k].key;
    char *modes[4];
    int nm = 0;
    for (char *tok = strtok(modes_buf, ","); tok && nm < 4; tok = strtok(NULL, ",")) {
        if (strcmp(tok, "pruning") && strcmp(tok, "sprint-norecompute") && strcmp(tok, "sprint"))
            cli_die(&c, 2, "--attention: unknown mode '%s' (pruning, sprint-norecompute, sprint)", tok);
        modes[nm++] = tok;
    }
    /* validate every value before the long run */
    sp_error err = {0};
    for (int p = 0; p < nsel; p++) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s", param_values(sel[p], values));
        for (char *v = strtok(buf, ","); v; v = strtok(NULL, ",")) {
            sp_config tmp = c.cfg;
            char kv[300];
            snprintf(kv, sizeof kv, "%s=%s", sel[p], v);
            if (sp_config_set(&tmp, kv, "--values", &err) != SP_OK) cli_die_err(&c, &err);
        }
    }
    fn_session s;
    int relative0 = !strcmp(c.cfg.policy_kind, "oracle") || !strcmp(c.cfg.policy_kind, "onchip");
    fn_session_load(&c, &s, strcmp(c.cfg.policy_kind, "topk") && !c.cfg.policy_file[0] &&
                                !(relative0 && c.cfg.policy_delta >= 0));
    int L = s.info->n_layers, H = s.info->n_heads;

    /* dense reference and the fixed thresholds */
    sp_op_request dreq = {.mode = "dense", .cfg = &c.cfg};
    sp_attn_op *op = NULL;
    if (sp_attn_op_create(&dreq, L, H, &op, &err) != SP_OK) cli_die_err(&c, &err);
    fn_row dense;
    memset(&dense, 0, sizeof dense);
    if (!c.quiet) fprintf(stderr, "[sweep] dense reference\n");
    fn_eval(&c, &s, op, 0, &dense);
    sp_attn_op_free(op);
    sp_thresholds *t = NULL;
    int relative = !strcmp(c.cfg.policy_kind, "oracle") || !strcmp(c.cfg.policy_kind, "onchip");
    if (strcmp(c.cfg.policy_kind, "topk") && !c.cfg.policy_file[0] && !(relative && c.cfg.policy_delta >= 0)) {
        if (!c.quiet) fprintf(stderr, "[sweep] calibrating policy %s at the base configuration\n", c.cfg.policy_kind);
        sp_op_request creq = {.mode = "sprint", .cfg = &c.cfg, .model = s.model, .calib = &s.calib,
                              .progress = cli_progress, .progress_user = &c};
        if (sp_calibrate(&creq, &t, &err) != SP_OK) cli_die_err(&c, &err);
        cli_progress_done();
    }
    int cap = 64, nr = 0;
    fn_row *rows = calloc((size_t)cap, sizeof *rows);
    for (int p = 0; p < nsel; p++) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s", param_values(sel[p], values));
        char *save = NULL;
        for (char *v = strtok_r(buf, ",", &save); v; v = strtok_r(NULL, ",", &save)) {
            sp_config cfg = c.cfg;
            char kv[300];
            snprintf(kv, sizeof kv, "%s=%s", sel[p], v);
            if (sp_config_set(&cfg, kv, "sweep", &err) != SP_OK) cli_die_err(&c, &err);
            for (int m = 0; m < nm; m++) {
                sp_op_request req = {.mode = modes[m], .cfg = &cfg, .model = s.model, .thresholds = t};
                if (sp_attn_op_create(&req, L, H, &op, &err) != SP_OK) cli_die_err(&c, &err);
                if (nr == cap) rows = realloc(rows, sizeof *rows * (size_t)(cap *= 2));
                fn_row *r = &rows[nr++];
                memset(r, 0, sizeof *r);
                snprintf(r->param, sizeof r->param, "%s", sel[p]);
                r->value = atof(v);
                snprintf(r->mode, sizeof r->mode, "%s", modes[m]);
                snprintf(r->policy, sizeof r->policy, "%s", cfg.policy_kind);
                r->delta = relative ? (t ? t->delta : cfg.policy_delta) : NAN;
                if (!c.quiet) fprintf(stderr, "[sweep] %s = %s, %s\n", sel[p], v, modes[m]);
                fn_eval(&c, &s, op, dense.nll, r);
                sp_attn_op_free(op);
            }
        }
    }
    char title[1400];
    snprintf(title, sizeof title, "sprint sweep: %s on %s (%d stories), dense NLL %.5f nats/token", c.cfg.model_checkpoint,
             c.cfg.eval_text, s.corpus.n, dense.nll);
    fn_print_rows(&c, title, rows, nr, 1);
    free(rows);
    sp_thresholds_free(t);
    fn_session_free(&s);
    return 0;
}
