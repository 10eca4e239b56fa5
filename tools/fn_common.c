/* fn_common.c: shared by sprint calibrate, sweep and compare (see fn_common.h). */
#include "fn_common.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *FN_PATH_HELP =
    "  --model M         llama2.c checkpoint (default: model.checkpoint, else the shared stories260K.bin)\n"
    "  --tokenizer T     llama2.c tokenizer.bin (default: model.tokenizer, else the shared tok512.bin)\n"
    "  --text F          stories separated by <|endoftext|> (default: eval.text, else the shared dev text)\n"
    "  --calib-text F    calibrate thresholds on the stories of F (policy.calib_text); default: the first\n"
    "                    half of the text's stories calibrate, the second half is evaluated (eval.split)\n";

static const char *calib_text_opt = NULL;

int fn_path_option(cli_common *c, int argc, char **argv, int *i) {
    if (!strcmp(argv[*i], "--calib-text")) {
        calib_text_opt = cli_value(c, argc, argv, i);
        return 1;
    }
    return cli_path_option(c, argc, argv, i, 1);
}

int fn_shared_option(cli_common *c, int argc, char **argv, int *i, void (*help)(void)) {
    if (cli_common_option(c, argc, argv, i) || fn_path_option(c, argc, argv, i)) return 1;
    if (!strcmp(argv[*i], "--help") || !strcmp(argv[*i], "-h")) {
        help();
        exit(0);
    }
    return 0;
}

void fn_print_json(cJSON *o) {
    char *txt = cJSON_PrintUnformatted(o);
    printf("%s\n", txt);
    cJSON_free(txt);
    cJSON_Delete(o);
}

_Noreturn void fn_unknown_option(cli_common *c, const char *arg) {
    cli_die(c, 2, "unknown option '%s' (see sprint %s --help)", arg, c->cmd);
}

/* Stories of the text at path (eval.max_stories does not apply: calibration text). */
static void load_corpus(cli_common *c, const sp_tokenizer *t, const char *path, int max_stories, sp_corpus *out) {
    sp_error err = {0};
    char *text = NULL;
    size_t len = 0;
    if (sp_read_file(path, &text, &len, &err) != SP_OK) cli_die_err(c, &err);
    if (sp_corpus_from_text(t, text, len, max_stories, out, &err) != SP_OK) cli_die(c, 1, "%s: %s", path, err.msg);
    free(text);
}

void fn_session_load(cli_common *c, fn_session *s, int calibrates) {
    if (calib_text_opt) {
        if (strlen(calib_text_opt) >= sizeof c->cfg.policy_calib_text) cli_die(c, 2, "--calib-text path longer than 255 bytes");
        memcpy(c->cfg.policy_calib_text, calib_text_opt, strlen(calib_text_opt) + 1);
    }
    cli_resolve_paths(c, 1);
    memset(s, 0, sizeof *s);
    sp_error err = {0};
    sp_tokenizer *t = NULL;
    if (sp_model_load(c->cfg.model_checkpoint, &s->model, &err) != SP_OK) cli_die_err(c, &err);
    s->info = sp_model_get_info(s->model);
    cli_pick_tokenizer(c, s->info);
    if (sp_tokenizer_load(c->cfg.model_tokenizer, s->info->vocab_size, &t, &err) != SP_OK) cli_die_err(c, &err);
    sp_corpus all;
    load_corpus(c, t, c->cfg.eval_text, (int)c->cfg.eval_max_stories, &all);
    const char *split = c->cfg.eval_split, *ct = c->cfg.policy_calib_text;
    s->split = !strcmp(split, "halves") || (!strcmp(split, "auto") && calibrates && !ct[0]);
    if (s->split && all.n < 2)
        cli_die(c, 1, "%s has %d story: cannot calibrate on one half of the stories and evaluate on the other; "
                "give --calib-text FILE or --set eval.split=none", c->cfg.eval_text, all.n);
    int half = s->split ? all.n / 2 : 0;
    if (ct[0]) {
        load_corpus(c, t, ct, 0, &s->calib);
        snprintf(s->calib_from, sizeof s->calib_from, "%s", ct);
        if (calibrates && cli_same_file(ct, c->cfg.eval_text))
            fprintf(stderr, "sprint %s: warning: the calibration text %s is the evaluated text: the NLL change "
                    "is optimistic%s\n", c->cmd, ct, s->split ? "" : " (the calibration stories are evaluated too)");
    } else {
        if (sp_corpus_slice(&all, 0, s->split ? half : all.n, &s->calib, &err) != SP_OK) cli_die_err(c, &err);
        snprintf(s->calib_from, sizeof s->calib_from, "%s", c->cfg.eval_text);
        if (calibrates && !s->split)
            fprintf(stderr, "sprint %s: warning: calibrating on the first %ld stories of the evaluated text "
                    "(eval.split = none): the NLL change is optimistic; see --calib-text\n", c->cmd,
                    c->cfg.policy_calib_stories < all.n ? c->cfg.policy_calib_stories : (long)all.n);
    }
    if (s->split) {
        if (sp_corpus_slice(&all, half, all.n, &s->corpus, &err) != SP_OK) cli_die_err(c, &err);
        sp_corpus_free(&all);
    } else {
        s->corpus = all;
    }
    s->first_story = half + 1;
    sp_tokenizer_free(t);
}

void fn_session_free(fn_session *s) {
    sp_corpus_free(&s->corpus);
    sp_corpus_free(&s->calib);
    sp_model_free(s->model);
}

void fn_eval(cli_common *c, fn_session *s, sp_attn_op *op, double nll_dense, fn_row *r) {
    sp_error err = {0};
    sp_eval_opts eo = {.window = (int)c->cfg.eval_window, .threads = (int)c->cfg.run_threads,
                       .progress = cli_progress, .progress_user = c};
    sp_eval_result res;
    if (sp_eval_corpus(s->model, &s->corpus, op, &eo, &res, &err) != SP_OK) cli_die_err(c, &err);
    cli_progress_done();
    r->nll = res.nll;
    r->ppl = res.ppl;
    r->dnll = nll_dense > 0 ? (res.nll - nll_dense) / nll_dense : 0.0;
    r->kept = sp_attn_stats_kept_fraction(&res.attn);
    r->mem_kept = sp_attn_stats_mem_kept_fraction(&res.attn);
    r->fpr = sp_attn_stats_false_prune_rate(&res.attn);
    r->nff = sp_attn_stats_new_fetch_fraction(&res.attn);
    r->locality = sp_attn_stats_locality(&res.attn);
    r->mass_lost = res.attn.queries > 0 ? res.attn.mass_lost / res.attn.queries : 0;
    r->seconds = res.seconds;
}

void fn_print_rows(cli_common *c, const char *title, const fn_row *rows, int n, int sweep) {
    if (c->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "command", c->cmd);
        cJSON_AddStringToObject(o, "model", c->cfg.model_checkpoint);
        cJSON_AddStringToObject(o, "text", c->cfg.eval_text);
        cJSON *arr = cJSON_AddArrayToObject(o, "rows");
        for (int i = 0; i < n; i++) {
            const fn_row *r = &rows[i];
            cJSON *x = cJSON_CreateObject();
            if (sweep) {
                cJSON_AddStringToObject(x, "param", r->param);
                cJSON_AddNumberToObject(x, "value", r->value);
            }
            cJSON_AddStringToObject(x, "mode", r->mode);
            cJSON_AddStringToObject(x, "policy", r->policy);
            /* the keys are the CSV column names (units in the names) */
            if (!isnan(r->delta)) cJSON_AddNumberToObject(x, "delta_nats", r->delta);
            cJSON_AddNumberToObject(x, "nll_nats_per_token", r->nll);
            cJSON_AddNumberToObject(x, "ppl", r->ppl);
            cJSON_AddNumberToObject(x, "nll_change_fraction", r->dnll);
            cJSON_AddNumberToObject(x, "kept_fraction", r->kept);
            cJSON_AddNumberToObject(x, "mem_kept_fraction", r->mem_kept);
            cJSON_AddNumberToObject(x, "false_prune_rate", r->fpr);
            cJSON_AddNumberToObject(x, "new_fetch_fraction", r->nff);
            cJSON_AddNumberToObject(x, "locality", r->locality);
            cJSON_AddNumberToObject(x, "mass_lost_per_query", r->mass_lost);
            cJSON_AddNumberToObject(x, "seconds", r->seconds);
            cJSON_AddItemToArray(arr, x);
        }
        fn_print_json(o);
    } else {
        printf("%s\n", title);
        if (sweep) printf("%-17s %9s ", "param", "value");
        printf("%-19s %-7s %7s %8s %7s %9s %7s %8s %9s %8s %7s\n", "mode", "policy", "delta", "NLL", "ppl",
               "dNLL", "kept", "mem-kept", "false-pr", "new-fetch", "time");
        if (sweep) printf("%-17s %9s ", "", "");
        printf("%-19s %-7s %7s %8s %7s %9s %7s %8s %9s %8s %7s\n", "", "", "nats", "nats/tok", "-", "% vs dense",
               "%pairs", "%pairs", "%passing", "%seq", "s");
        for (int i = 0; i < n; i++) {
            const fn_row *r = &rows[i];
            char dl[32];
            if (isnan(r->delta)) snprintf(dl, sizeof dl, "-");
            else snprintf(dl, sizeof dl, "%.3f", r->delta);
            if (sweep) printf("%-17s %9.4g ", r->param, r->value);
            printf("%-19s %-7s %7s %8.5f %7.4f %+9.3f %7.2f %8.2f %9.4f %8.2f %7.1f\n", r->mode, r->policy, dl, r->nll,
                   r->ppl, 100 * r->dnll, 100 * r->kept, 100 * r->mem_kept, 100 * r->fpr, 100 * r->nff, r->seconds);
        }
    }
    if (c->csv_path) {
        FILE *f = cli_output_open(c, c->csv_path);
        fprintf(f, "%smode,policy,delta_nats,nll_nats_per_token,ppl,nll_change_fraction,kept_fraction,"
                   "mem_kept_fraction,false_prune_rate,new_fetch_fraction,locality,mass_lost_per_query,seconds\n",
                sweep ? "param,value," : "");
        for (int i = 0; i < n; i++) {
            const fn_row *r = &rows[i];
            if (sweep) fprintf(f, "%s,%.6g,", r->param, r->value);
            fprintf(f, "%s,%s,%.6g,%.8f,%.6f,%.6f,%.6f,%.6f,%.6g,%.6f,%.6f,%.6g,%.2f\n", r->mode, r->policy, r->delta,
                    r->nll, r->ppl, r->dnll, r->kept, r->mem_kept, r->fpr, r->nff, r->locality, r->mass_lost,
                    r->seconds);
        }
        cli_output_commit(c);
    }
}
