/* sprint eval --model DIR: the USE-lite encoder branch of `sprint eval` (issue 8). Loads the
 * encoder and its vocab.json, splits the text into sentences, calibrates the onchip/oracle
 * delta on calibration sentences when policy.delta = -1, and reports how close the
 * operator's sentence embeddings are to the dense ones on the other sentences. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "commands.h"
#include "sprint/encoder.h"
#include "sprint/functional.h"

int cli_is_encoder_dir(const char *path) {
    struct stat st;
    char p[4200];
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return 0;
    snprintf(p, sizeof p, "%s/model.json", path);
    return stat(p, &st) == 0;
}

static void row(const char *name, const char *value, const char *unit) {
    printf("%-26s %14s  %s\n", name, value, unit);
}

/* Sentences of path (all of them). */
static void read_sentences(const cli_common *c, const char *path, char ***s, int *n) {
    sp_error err = {0};
    char *text = NULL;
    size_t len = 0;
    if (sp_read_file(path, &text, &len, &err) != SP_OK) cli_die_err(c, &err);
    if (sp_sentences_split(text, len, s, n, &err) != SP_OK) cli_die(c, 1, "%s: %s", path, err.msg);
    free(text);
}

int cmd_eval_encoder(cli_common *c, const char *mode, int tokenizer_given) {
    sp_error err = {0};
    const char *dir = c->cfg.model_checkpoint;
    char vocab[4200];
    if (tokenizer_given) snprintf(vocab, sizeof vocab, "%s", c->cfg.model_tokenizer);
    else snprintf(vocab, sizeof vocab, "%s/vocab.json", dir);
    sp_encoder *e = NULL;
    sp_spm *tok = NULL;
    if (sp_encoder_load(dir, &e, &err) != SP_OK) cli_die_err(c, &err);
    if (sp_spm_load(vocab, &tok, &err) != SP_OK) cli_die_err(c, &err);
    const sp_encoder_info *in = sp_encoder_get_info(e);

    /* sentences: calibration ones first (from encoder.calib_text or the evaluated text) */
    char **es = NULL, **cs = NULL;
    int ne = 0, nc = 0;
    read_sentences(c, c->cfg.eval_text, &es, &ne);
    int ncal = (int)c->cfg.encoder_calib_sentences, first_eval = 0;
    const char *calib_path = c->cfg.encoder_calib_text[0] ? c->cfg.encoder_calib_text : c->cfg.eval_text;
    int same_text = !c->cfg.encoder_calib_text[0] || !strcmp(c->cfg.encoder_calib_text, c->cfg.eval_text);
    if (same_text) {
        if (ncal >= ne)
            cli_die(c, 1, "%s has %d sentences: encoder.calib_sentences = %d leaves none to evaluate", c->cfg.eval_text,
                    ne, ncal);
        first_eval = ncal;
    } else {
        read_sentences(c, calib_path, &cs, &nc);
        if (ncal > nc)
            cli_die(c, 1, "%s has %d sentences, encoder.calib_sentences = %d: lower it or give a longer text", calib_path,
                    nc, ncal);
    }
    int n_eval = ne - first_eval;
    if (c->cfg.encoder_max_sentences > 0 && n_eval > c->cfg.encoder_max_sentences)
        n_eval = (int)c->cfg.encoder_max_sentences;
    sp_encoder_corpus ec, cc;
    if (sp_encoder_corpus_build(tok, es + first_eval, n_eval, &ec, &err) != SP_OK)
        cli_die(c, 1, "%s: %s", c->cfg.eval_text, err.msg);
    if (sp_encoder_corpus_build(tok, same_text ? es : cs, ncal, &cc, &err) != SP_OK)
        cli_die(c, 1, "%s: %s", calib_path, err.msg);
    sp_sentences_free(es, ne);
    sp_sentences_free(cs, nc);

    /* the operator: thresholds calibrated here for onchip/oracle with policy.delta = -1 */
    int batch = (int)c->cfg.encoder_batch;
    sp_thresholds *thr = NULL;
    int relative = !strcmp(c->cfg.policy_kind, "onchip") || !strcmp(c->cfg.policy_kind, "oracle");
    int pruning = strcmp(mode, "dense") && strcmp(mode, "dense-ref");
    if (pruning && relative && c->cfg.policy_delta < 0 && !c->cfg.policy_file[0]) {
        if (sp_encoder_calibrate(e, &cc, &c->cfg, "sprint", c->cfg.encoder_cosine_target, batch, cli_progress, c,
                                 &thr, &err) != SP_OK)
            cli_die_err(c, &err);
        cli_progress_done();
    }
    sp_op_request req = {.mode = mode, .cfg = &c->cfg, .thresholds = thr};
    sp_attn_op *op = NULL;
    if (sp_attn_op_create(&req, in->n_layers, in->n_heads, &op, &err) != SP_OK) cli_die_err(c, &err);
    double cal_cos = -1;
    if (thr) { /* the calibrated operator on the calibration sentences, for the record */
        sp_encoder_eval_result r0;
        if (sp_encoder_eval(e, &cc, op, batch, NULL, NULL, NULL, &r0, &err) != SP_OK) cli_die_err(c, &err);
        cal_cos = r0.cos_mean;
    }
    sp_encoder_eval_result r;
    if (sp_encoder_eval(e, &ec, op, batch, NULL, cli_progress, c, &r, &err) != SP_OK) cli_die_err(c, &err);
    cli_progress_done();

    double kept = sp_attn_stats_kept_fraction(&r.attn), mem = sp_attn_stats_mem_kept_fraction(&r.attn);
    double fpr = sp_attn_stats_false_prune_rate(&r.attn), nff = sp_attn_stats_new_fetch_fraction(&r.attn);
    double loc = sp_attn_stats_locality(&r.attn);
    int L = in->n_layers, H = in->n_heads;
    if (c->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", dir);
        cJSON_AddStringToObject(o, "kind", "encoder");
        cJSON_AddStringToObject(o, "text", c->cfg.eval_text);
        cJSON_AddStringToObject(o, "calib_text", calib_path);
        cJSON_AddStringToObject(o, "attention", op->name);
        cJSON_AddNumberToObject(o, "sentences", (double)r.sentences);
        cJSON_AddNumberToObject(o, "tokens", (double)r.tokens);
        cJSON_AddNumberToObject(o, "calib_sentences", cc.n);
        if (thr) {
            cJSON_AddNumberToObject(o, "delta", thr->delta);
            cJSON_AddNumberToObject(o, "calib_cosine_mean", cal_cos);
        }
        cJSON_AddNumberToObject(o, "embedding_cosine_mean", r.cos_mean);
        cJSON_AddNumberToObject(o, "embedding_cosine_min", r.cos_min);
        cJSON_AddNumberToObject(o, "fraction_below_0_99", r.below_099);
        cJSON *ae = cJSON_AddArrayToObject(o, "attn_output_rel_err");
        for (int l = 0; l < L; l++) cJSON_AddItemToArray(ae, cJSON_CreateNumber(r.attn_rel_err[l]));
        cJSON_AddNumberToObject(o, "kept_fraction", kept);
        cJSON_AddNumberToObject(o, "mem_kept_fraction", mem);
        cJSON_AddNumberToObject(o, "false_prune_rate", fpr);
        cJSON_AddNumberToObject(o, "locality", loc);
        cJSON_AddNumberToObject(o, "new_fetch_fraction", nff);
        cJSON_AddNumberToObject(o, "seconds", r.seconds);
        cJSON *hs = cJSON_AddArrayToObject(o, "heads");
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++) {
                const sp_attn_stats *st = &op->stats[l * op->n_heads + h];
                cJSON *x = cJSON_CreateObject();
                cJSON_AddNumberToObject(x, "layer", l);
                cJSON_AddNumberToObject(x, "head", h);
                cJSON_AddNumberToObject(x, "head_dim", in->head_dim[l]);
                cJSON_AddNumberToObject(x, "kept_fraction", sp_attn_stats_kept_fraction(st));
                cJSON_AddNumberToObject(x, "mem_kept_fraction", sp_attn_stats_mem_kept_fraction(st));
                cJSON_AddNumberToObject(x, "new_fetch_fraction", sp_attn_stats_new_fetch_fraction(st));
                cJSON_AddItemToArray(hs, x);
            }
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        cJSON_free(s);
        cJSON_Delete(o);
    } else {
        char b[64], u[96];
        printf("sprint eval: encoder %s on %s, attention %s\n", dir, c->cfg.eval_text, op->name);
        snprintf(b, sizeof b, "%ld", r.sentences), row("sentences", b, "evaluated (calibration ones excluded)");
        snprintf(b, sizeof b, "%ld", r.tokens), row("tokens", b, "tokens (<= 128 per sentence)");
        if (thr) {
            snprintf(b, sizeof b, "%d", cc.n), row("calibration sentences", b, calib_path);
            snprintf(b, sizeof b, "%.4f", thr->delta), row("delta (calibrated)", b, "nats");
            snprintf(b, sizeof b, "%.5f", cal_cos), row("calibration cosine", b, "mean, on the calibration sentences");
        }
        snprintf(b, sizeof b, "%.5f", r.cos_mean), row("embedding cosine mean", b, "to dense (1 = identical)");
        snprintf(b, sizeof b, "%.5f", r.cos_min), row("embedding cosine min", b, "to dense");
        snprintf(b, sizeof b, "%.2f", 100.0 * r.below_099), row("below 0.99", b, "% of sentences");
        for (int l = 0; l < L; l++) {
            snprintf(u, sizeof u, "attn output error L%d", l);
            snprintf(b, sizeof b, "%.3g", r.attn_rel_err[l]), row(u, b, "relative L2 to dense, same inputs");
        }
        snprintf(b, sizeof b, "%.4f", kept), row("kept fraction", b, "of visible pairs");
        snprintf(b, sizeof b, "%.4f", mem), row("mem-kept fraction", b, "of visible pairs");
        snprintf(b, sizeof b, "%.3g", fpr), row("false-prune rate", b, "of pairs passing exactly");
        snprintf(b, sizeof b, "%.4f", loc), row("locality", b, "of previous query's survivors");
        snprintf(b, sizeof b, "%.4f", nff), row("new-fetch fraction", b, "of visible sequence length");
        snprintf(b, sizeof b, "%.2f", r.seconds), row("wall time", b, "s");
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++) {
                const sp_attn_stats *st = &op->stats[l * op->n_heads + h];
                snprintf(u, sizeof u, "L%d H%d (d=%d) kept/mem", l, h, in->head_dim[l]);
                snprintf(b, sizeof b, "%.3f/%.3f", sp_attn_stats_kept_fraction(st), sp_attn_stats_mem_kept_fraction(st));
                row(u, b, "fractions of visible pairs");
            }
    }
    if (c->csv_path) {
        FILE *f = fopen(c->csv_path, "w");
        if (!f) cli_die(c, 1, "cannot write %s", c->csv_path);
        fprintf(f, "attention,sentences,tokens,embedding_cosine_mean,embedding_cosine_min,fraction_below_0_99,"
                   "attn_rel_err_l0,attn_rel_err_l1,kept_fraction,mem_kept_fraction,false_prune_rate,locality,"
                   "new_fetch_fraction\n");
        fprintf(f, "%s,%ld,%ld,%.6f,%.6f,%.6f,%.6g,%.6g,%.6f,%.6f,%.6f,%.6f,%.6f\n", op->name, r.sentences, r.tokens,
                r.cos_mean, r.cos_min, r.below_099, r.attn_rel_err[0], r.attn_rel_err[1], kept, mem, fpr, loc, nff);
        if (fclose(f) != 0) cli_die(c, 1, "cannot write %s", c->csv_path);
    }
    sp_thresholds_free(thr);
    sp_attn_op_free(op);
    sp_encoder_corpus_free(&ec);
    sp_encoder_corpus_free(&cc);
    sp_spm_free(tok);
    sp_encoder_free(e);
    return 0;
}
