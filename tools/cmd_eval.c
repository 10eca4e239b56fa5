/* sprint eval: evaluate a language model (llama2.c or BitNet checkpoint) on text with attention
 * through a chosen operator. Thresholds that need calibration are calibrated explicitly here
 * on stories that are not evaluated (fn_session_load: --calib-text, else the first half). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "progress.h"
#include "commands.h"
#include "fn_common.h"
#include "sprint/functional.h"
#include "sprint/model.h"

static void help(void) {
    printf("usage: sprint eval [--model M] [--tokenizer T] [--text F] [--calib-text F] [--attention MODE]\n"
           "                  [--decode] [--stats] [--per-head FILE] [common options]\n\n"
           "Splits the text into stories at <|endoftext|>, encodes each with BOS, evaluates every story\n"
           "(windows of eval.window tokens, default the model's context length; each target predicted\n"
           "once) and reports mean negative log-likelihood (nats/token), perplexity, top-1 accuracy,\n"
           "speed and the attention operator's statistics. A pruning mode whose thresholds need\n"
           "calibration calibrates them first on other stories: --calib-text F, else the first half of\n"
           "the text's stories, and then evaluates the second half only (eval.split); it also reports the\n"
           "dense NLL of the evaluated stories and the change against it.\n\n"
           "  --model M         llama2.c or BitNet (ak42 v1) checkpoint, detected from its header (default:\n"
           "                    model.checkpoint, else the shared stories260K.bin), or an encoder directory\n"
           "                    (model.json + shards + vocab.json, e.g. the shared models/use-lite): see ENCODER below\n"
           "  --tokenizer T     llama2.c tokenizer.bin (default: model.tokenizer, else the shared tok<V>.bin\n"
           "                    for the model's vocabulary of V tokens: tok512.bin for both shared models)\n"
           "  --text F          stories separated by <|endoftext|> (default: eval.text, else the shared dev text)\n"
           "  --calib-text F    calibration stories (policy.calib_text); eval warns when F is the text itself\n"
           "  --per-head FILE   also write the operator's statistics per (layer, head) as CSV (fractions)\n"
           "  --stats           a pruning mode also computes the statistics over every visible pair: the\n"
           "                    false-prune rate and the softmax mass lost (sprint.exact_stats and\n"
           "                    sprint.mass_lost on; they cost 10-30%% of the evaluation, docs/RESULTS.md\n"
           "                    part 9g). Without it both keys default to off for eval (a --config file\n"
           "                    or --set can still set them), and what the operator did not compute\n"
           "                    is printed \"not computed\" (JSON and CSV: null / empty; the reference\n"
           "                    operators always compute the false-prune rate).\n"
           "                    llama2.c and BitNet models only: the USE-lite encoder's evaluation\n"
           "                    keeps the keys' values (both on by default)\n"
           "  --attention MODE  attention operator: %s (default dense).\n"
           "                    dense runs in float (fast path); dense-ref is the double reference\n"
           "  --decode          teacher-forced decoding: one token per step through a KV cache (the\n"
           "                    operator sees one query per head per step); same windows and targets\n"
           "  Keys: eval.max_stories (stories, 0 = all), eval.window (tokens, 0 = the model's context\n"
           "  length), run.threads (threads, 0 = all cores); see docs/config.md\n\n"
           "Output (table, or one JSON object with --json): stories, predicted tokens, mean NLL\n"
           "(nats/token), perplexity (dimensionless), top-1 accuracy (%% of targets; a fraction in\n"
           "JSON), speed (tokens/s), wall time (s, JSON), and the operator's statistics as fractions.\n\n"
           "ENCODER (--model DIR): the text is split into sentences (stories at <|endoftext|>, whitespace\n"
           "runs to one space, a sentence ends after . ! or ? plus closing quotes before a space or the\n"
           "end), tokenized with DIR/vocab.json (or --tokenizer) and embedded (at most 128 tokens each).\n"
           "With onchip/oracle and policy.delta = -1, delta is calibrated on the first\n"
           "encoder.calib_sentences sentences (of encoder.calib_text, else of the text, which are then not\n"
           "evaluated) for mean cosine >= encoder.cosine_target. Reports, against dense embeddings:\n"
           "embedding cosine mean and min, %% of sentences below 0.99, the attention-output relative L2\n"
           "error per layer, kept / mem-kept fractions overall and per head, new-fetch fraction. JSON keys\n"
           "embedding_cosine_mean, embedding_cosine_min, kept_fraction, ... (docs/model.md).\n\n%s",
           SP_ATTN_MODES, CLI_COMMON_HELP);
}

static void row(const char *name, const char *value, const char *unit) {
    printf("%-24s %14s  %s\n", name, value, unit);
}

/* The op's statistics per (layer, head), written to a temporary name and renamed on success
 * so that the file is complete or absent. */
static void write_per_head(cli_common *c, const char *path, const sp_attn_op *op, int have_fpr) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) cli_die(c, 1, "cannot write %s", tmp);
    fprintf(f, "layer,head,queries,kept_fraction,mem_kept_fraction,new_fetch_fraction,locality,false_prune_rate\n");
    for (int l = 0; l < op->n_layers; l++)
        for (int h = 0; h < op->n_heads; h++) {
            const sp_attn_stats *st = &op->stats[l * op->n_heads + h];
            fprintf(f, "%d,%d,%.0f,%.6f,%.6f,%.6f,%.6f,", l, h, (double)st->queries,
                    sp_attn_stats_kept_fraction(st), sp_attn_stats_mem_kept_fraction(st),
                    sp_attn_stats_new_fetch_fraction(st), sp_attn_stats_locality(st));
            if (have_fpr) fprintf(f, "%.6g", sp_attn_stats_false_prune_rate(st));
            fputc('\n', f);
        }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        remove(tmp);
        cli_die(c, 1, "cannot write %s", path);
    }
}

int cmd_eval(int argc, char **argv) {
    cli_common c;
    cli_init(&c, "eval");
    const char *mode = "dense";
    const char *per_head = NULL;
    int decode = 0, want_stats = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (fn_shared_option(&c, argc, argv, &i, help)) continue;
        if (!strcmp(a, "--decode")) {
            decode = 1;
        } else if (!strcmp(a, "--attention")) {
            mode = cli_value(&c, argc, argv, &i);
        } else if (!strcmp(a, "--stats")) {
            want_stats = 1;
        } else if (!strcmp(a, "--per-head")) {
            per_head = cli_value(&c, argc, argv, &i);
        } else {
            cli_die(&c, 2, "unknown option '%s' (see sprint eval --help)", a);
        }
    }
    if (sp_config_enum_index(SP_ATTN_MODES, mode) < 0) /* before loading anything: a usage error */
        cli_die(&c, 2, "unknown attention mode '%s' (expected one of %s)", mode, SP_ATTN_MODES);
    /* a directory with model.json: the USE-lite encoder (tools/cmd_eval_encoder.c), which keeps
     * the keys' own defaults */
    int encoder = c.path_opt[0] && cli_is_encoder_dir(c.path_opt[0]);
    /* The statistics over every visible pair (false prunes, mass lost) need a dense pass of
     * their own, so eval's default is off: set before the --config files and --set options are
     * applied, so that either can turn them on; --stats turns both on. */
    if (!encoder) c.cfg.sprint_exact_stats = 0, c.cfg.sprint_mass_lost = 0;
    cli_finish(&c);
    if (encoder) {
        cli_resolve_paths(&c, 1);
        return cmd_eval_encoder(&c, mode, c.path_opt[1] != NULL);
    }
    if (want_stats) c.cfg.sprint_exact_stats = 1, c.cfg.sprint_mass_lost = 1;

    sp_error err = {0};
    sp_op_request req = {.mode = mode, .cfg = &c.cfg, .progress = cli_progress, .progress_user = &c};
    int calibrates = sp_op_needs_calibration(&req);
    fn_session s;
    fn_session_load(&c, &s, calibrates);
    sp_model *m = s.model;
    const sp_model_info *info = s.info;
    sp_corpus corpus = s.corpus;
    req.model = m;
    req.calib = &s.calib;
    sp_attn_op *op = NULL;
    int pruning_mode = strcmp(mode, "dense") && strcmp(mode, "dense-ref");
    progress_stages(pruning_mode ? 3 : 2);
    progress_stage(&c, calibrates ? "calibrating thresholds" : "operator");
    /* dense: the float fast path; dense-ref: the double reference; others: SPRINT operators,
     * calibrated here when their policy needs it (an explicit step, issue 11) */
    if (calibrates && !c.quiet)
        fprintf(stderr, "[eval] calibrating policy %s on %d stories of %s\n", c.cfg.policy_kind,
                c.cfg.policy_calib_stories < s.calib.n ? (int)c.cfg.policy_calib_stories : s.calib.n, s.calib_from);
    sp_thresholds *used = NULL;
    if (sp_attn_op_create_calibrated(&req, info->n_layers, info->n_heads, &op, &used, &err) != SP_OK)
        cli_die_err(&c, &err);
    cli_progress_done();

    sp_eval_opts eo = {.window = (int)c.cfg.eval_window, .threads = (int)c.cfg.run_threads,
                       .progress = cli_progress, .progress_user = &c};
    sp_eval_result r;
    progress_stage(&c, "evaluating");
    if ((decode ? sp_eval_corpus_decode : sp_eval_corpus)(m, &corpus, op, &eo, &r, &err) != SP_OK)
        cli_die_err(&c, &err);
    cli_progress_done();
    /* a pruning mode: the dense NLL of the same stories, for the change the budget is about */
    double nll_dense = NAN;
    if (pruning_mode) {
        progress_stage(&c, "dense reference on the same stories");
        sp_attn_op *dop = sp_attn_dense_fast_create(info->n_layers, info->n_heads);
        sp_eval_result rd;
        sp_eval_opts deo = eo;
        deo.progress = NULL;
        if (sp_eval_corpus(m, &corpus, dop, &deo, &rd, &err) != SP_OK) cli_die_err(&c, &err);
        nll_dense = rd.nll;
        sp_attn_op_free(dop);
    }
    double dnll = (r.nll - nll_dense) / nll_dense;

    double kept = sp_attn_stats_kept_fraction(&r.attn), mem = sp_attn_stats_mem_kept_fraction(&r.attn);
    double fpr = sp_attn_stats_false_prune_rate(&r.attn), loc = sp_attn_stats_locality(&r.attn);
    double nff = sp_attn_stats_new_fetch_fraction(&r.attn);
    double mlq = r.attn.queries > 0 ? r.attn.mass_lost / r.attn.queries : 0.0;
    /* not computed: what the operator left out (the fast sprint implementation without
     * sprint.exact_stats; any pruning operator without sprint.mass_lost) */
    const unsigned computed = sp_attn_op_stats_computed(op);
    const int have_fpr = (computed & SP_STATS_EXACT) != 0, have_mass = (computed & SP_STATS_MASS) != 0;

    if (c.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", c.cfg.model_checkpoint);
        cJSON_AddStringToObject(o, "text", c.cfg.eval_text);
        cJSON_AddStringToObject(o, "attention", op->name);
        cJSON_AddStringToObject(o, "path", decode ? "decode" : "prefill");
        cJSON_AddNumberToObject(o, "stories", (double)r.stories);
        cJSON_AddNumberToObject(o, "tokens", (double)r.tokens);
        cJSON_AddNumberToObject(o, "nll", r.nll);
        cJSON_AddNumberToObject(o, "ppl", r.ppl);
        cJSON_AddNumberToObject(o, "top1", r.top1);
        /* the CSV columns' names (units in the name) are JSON keys too (issue 10) */
        cJSON_AddNumberToObject(o, "nll_nats_per_token", r.nll);
        cJSON_AddNumberToObject(o, "top1_fraction", r.top1);
        cJSON_AddNumberToObject(o, "tokens_per_s", r.tokens_per_s);
        cJSON_AddNumberToObject(o, "seconds", r.seconds);
        cJSON_AddNumberToObject(o, "kept_fraction", kept);
        cJSON_AddNumberToObject(o, "mem_kept_fraction", mem);
        if (have_fpr) cJSON_AddNumberToObject(o, "false_prune_rate", fpr);
        else cJSON_AddNullToObject(o, "false_prune_rate");
        cJSON_AddNumberToObject(o, "locality", loc);
        cJSON_AddNumberToObject(o, "new_fetch_fraction", nff);
        if (have_mass) cJSON_AddNumberToObject(o, "mass_lost_per_query", mlq);
        else cJSON_AddNullToObject(o, "mass_lost_per_query");
        cJSON_AddNumberToObject(o, "window", eo.window ? eo.window : info->seq_len);
        cJSON_AddStringToObject(o, "arch", sp_model_arch_name(info->arch));
        cJSON_AddNumberToObject(o, "first_story", s.first_story);
        if (!isnan(nll_dense)) {
            cJSON_AddNumberToObject(o, "nll_dense", nll_dense);
            cJSON_AddNumberToObject(o, "nll_change", dnll);
        }
        if (calibrates) {
            if (used && (!strcmp(used->kind, "oracle") || !strcmp(used->kind, "onchip")))
                cJSON_AddNumberToObject(o, "delta", used->delta);
            cJSON_AddStringToObject(o, "calib_text", s.calib_from);
            cJSON_AddNumberToObject(o, "calib_stories",
                                    c.cfg.policy_calib_stories < s.calib.n ? (double)c.cfg.policy_calib_stories : s.calib.n);
        }
        char *js = cJSON_PrintUnformatted(o);
        printf("%s\n", js);
        cJSON_free(js);
        cJSON_Delete(o);
    } else {
        char b[64];
        printf("sprint eval: %s (%s) on %s, attention %s\n", c.cfg.model_checkpoint, sp_model_arch_name(info->arch),
               c.cfg.eval_text, op->name);
        if (decode) printf("decode path: one token per step through a KV cache\n");
        if (s.split || calibrates)
            printf("evaluated stories %d-%d of the text%s%s\n", s.first_story, s.first_story + corpus.n - 1,
                   calibrates ? "; thresholds calibrated on " : "", calibrates ? s.calib_from : "");
        snprintf(b, sizeof b, "%ld", r.stories), row("stories", b, "stories");
        snprintf(b, sizeof b, "%ld", r.tokens), row("tokens", b, "predicted tokens");
        snprintf(b, sizeof b, "%.4f", r.nll), row("mean NLL", b, "nats/token");
        if (!isnan(nll_dense)) {
            snprintf(b, sizeof b, "%.4f", nll_dense), row("dense NLL", b, "nats/token, same stories");
            snprintf(b, sizeof b, "%+.3f", 100 * dnll), row("NLL change", b, "% vs dense");
        }
        snprintf(b, sizeof b, "%.4f", r.ppl), row("perplexity", b, "(dimensionless, exp NLL)");
        snprintf(b, sizeof b, "%.2f", 100.0 * r.top1), row("top-1 accuracy", b, "%");
        snprintf(b, sizeof b, "%.0f", r.tokens_per_s), row("speed", b, "tokens/s");
        snprintf(b, sizeof b, "%.2f", r.seconds), row("wall time", b, "s");
        snprintf(b, sizeof b, "%.4f", kept), row("kept fraction", b, "of visible pairs");
        snprintf(b, sizeof b, "%.4f", mem), row("mem-kept fraction", b, "of visible pairs");
        if (have_fpr) snprintf(b, sizeof b, "%.3g", fpr), row("false-prune rate", b, "of pairs passing exactly");
        else row("false-prune rate", "not computed", "(--stats)");
        snprintf(b, sizeof b, "%.4f", loc), row("locality", b, "of previous query's survivors");
        snprintf(b, sizeof b, "%.4f", nff), row("new-fetch fraction", b, "of visible sequence length");
        if (have_mass) snprintf(b, sizeof b, "%.3g", mlq), row("mass lost", b, "softmax mass per query (fraction)");
        else row("mass lost", "not computed", "(--stats)");
    }
    if (c.csv_path) {
        FILE *f = cli_output_open(&c, c.csv_path);
        fprintf(f, "attention,stories,tokens,nll_nats_per_token,ppl,top1_fraction,tokens_per_s,kept_fraction,"
                   "mem_kept_fraction,false_prune_rate,locality,new_fetch_fraction,mass_lost_per_query\n");
        char fb[32] = "", mb[32] = ""; /* empty: not computed */
        if (have_fpr) snprintf(fb, sizeof fb, "%.6f", fpr);
        if (have_mass) snprintf(mb, sizeof mb, "%.6g", mlq);
        fprintf(f, "%s,%ld,%ld,%.6f,%.6f,%.6f,%.1f,%.6f,%.6f,%s,%.6f,%.6f,%s\n", op->name, r.stories, r.tokens, r.nll,
                r.ppl, r.top1, r.tokens_per_s, kept, mem, fb, loc, nff, mb);
        cli_output_commit(&c);
    }
    if (per_head) write_per_head(&c, per_head, op, have_fpr);
    sp_thresholds_free(used);
    sp_attn_op_free(op);
    fn_session_free(&s);
    return 0;
}
