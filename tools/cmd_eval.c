/* sprint eval: evaluate a llama2.c model on text with attention through a chosen operator. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "progress.h"
#include "commands.h"
#include "sprint/functional.h"
#include "sprint/model.h"

static void help(void) {
    printf("usage: sprint eval [--model M] [--tokenizer T] [--text F] [--attention MODE] [--decode] [common options]\n\n"
           "Splits the text into stories at <|endoftext|>, encodes each with BOS, evaluates every story\n"
           "(windows of eval.window tokens, default the model's context length; each target predicted\n"
           "once) and reports mean negative log-likelihood (nats/token), perplexity, top-1 accuracy,\n"
           "speed and the attention operator's statistics.\n\n"
           "  --model M         llama2.c checkpoint (default: model.checkpoint, else the shared stories260K.bin),\n"
           "                    or an encoder directory (model.json + shards + vocab.json, e.g. the shared\n"
           "                    models/use-lite): see ENCODER below\n"
           "  --tokenizer T     llama2.c tokenizer.bin (default: model.tokenizer, else the shared tok512.bin)\n"
           "  --text F          stories separated by <|endoftext|> (default: eval.text, else the shared dev text)\n"
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

int cmd_eval(int argc, char **argv) {
    cli_common c;
    cli_init(&c, "eval");
    const char *mode = "dense";
    int decode = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_common_option(&c, argc, argv, &i) || cli_path_option(&c, argc, argv, &i, 1)) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help();
            return 0;
        } else if (!strcmp(a, "--decode")) {
            decode = 1;
        } else if (!strcmp(a, "--attention")) {
            mode = cli_value(&c, argc, argv, &i);
        } else {
            cli_die(&c, 2, "unknown option '%s' (see sprint eval --help)", a);
        }
    }
    if (sp_config_enum_index(SP_ATTN_MODES, mode) < 0) /* before loading anything: a usage error */
        cli_die(&c, 2, "unknown attention mode '%s' (expected one of %s)", mode, SP_ATTN_MODES);
    cli_finish(&c);
    cli_resolve_paths(&c, 1);
    /* a directory with model.json: the USE-lite encoder (tools/cmd_eval_encoder.c) */
    if (cli_is_encoder_dir(c.cfg.model_checkpoint)) return cmd_eval_encoder(&c, mode, c.path_opt[1] != NULL);

    sp_error err = {0};
    sp_model *m = NULL;
    sp_tokenizer *t = NULL;
    char *text = NULL;
    size_t text_len = 0;
    sp_corpus corpus = {0};
    if (sp_model_load(c.cfg.model_checkpoint, &m, &err) != SP_OK) cli_die_err(&c, &err);
    const sp_model_info *info = sp_model_get_info(m);
    if (sp_tokenizer_load(c.cfg.model_tokenizer, info->vocab_size, &t, &err) != SP_OK) cli_die_err(&c, &err);
    if (sp_read_file(c.cfg.eval_text, &text, &text_len, &err) != SP_OK) cli_die_err(&c, &err);
    if (sp_corpus_from_text(t, text, text_len, (int)c.cfg.eval_max_stories, &corpus, &err) != SP_OK) {
        char msg[sizeof err.msg];
        snprintf(msg, sizeof msg, "%s", err.msg);
        sp_error_set(&err, err.status, "%s: %s", c.cfg.eval_text, msg);
        cli_die_err(&c, &err);
    }
    free(text);

    sp_op_request req = {.mode = mode, .cfg = &c.cfg, .model = m, .calib = &corpus, .progress = cli_progress,
                         .progress_user = &c};
    sp_attn_op *op = NULL;
    progress_stages(2);
    progress_stage(&c, "operator (calibrating thresholds when needed)");
    /* dense: the float fast path; dense-ref: the double reference; others: SPRINT operators */
    if (sp_attn_op_create(&req, info->n_layers, info->n_heads, &op, &err) != SP_OK) cli_die_err(&c, &err);
    cli_progress_done();

    sp_eval_opts eo = {.window = (int)c.cfg.eval_window, .threads = (int)c.cfg.run_threads,
                       .progress = cli_progress, .progress_user = &c};
    sp_eval_result r;
    progress_stage(&c, "evaluating");
    if ((decode ? sp_eval_corpus_decode : sp_eval_corpus)(m, &corpus, op, &eo, &r, &err) != SP_OK)
        cli_die_err(&c, &err);
    cli_progress_done();

    double kept = sp_attn_stats_kept_fraction(&r.attn), mem = sp_attn_stats_mem_kept_fraction(&r.attn);
    double fpr = sp_attn_stats_false_prune_rate(&r.attn), loc = sp_attn_stats_locality(&r.attn);
    double nff = sp_attn_stats_new_fetch_fraction(&r.attn);
    double mlq = r.attn.queries > 0 ? r.attn.mass_lost / r.attn.queries : 0.0;

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
        cJSON_AddNumberToObject(o, "tokens_per_s", r.tokens_per_s);
        cJSON_AddNumberToObject(o, "seconds", r.seconds);
        cJSON_AddNumberToObject(o, "kept_fraction", kept);
        cJSON_AddNumberToObject(o, "mem_kept_fraction", mem);
        cJSON_AddNumberToObject(o, "false_prune_rate", fpr);
        cJSON_AddNumberToObject(o, "locality", loc);
        cJSON_AddNumberToObject(o, "new_fetch_fraction", nff);
        cJSON_AddNumberToObject(o, "mass_lost_per_query", mlq);
        cJSON_AddNumberToObject(o, "window", eo.window ? eo.window : info->seq_len);
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        cJSON_free(s);
        cJSON_Delete(o);
    } else {
        char b[64];
        printf("sprint eval: %s on %s, attention %s%s\n", c.cfg.model_checkpoint, c.cfg.eval_text, op->name,
               decode ? ", decode path (KV cache)" : "");
        snprintf(b, sizeof b, "%ld", r.stories), row("stories", b, "stories");
        snprintf(b, sizeof b, "%ld", r.tokens), row("tokens", b, "predicted tokens");
        snprintf(b, sizeof b, "%.4f", r.nll), row("mean NLL", b, "nats/token");
        snprintf(b, sizeof b, "%.4f", r.ppl), row("perplexity", b, "(dimensionless, exp NLL)");
        snprintf(b, sizeof b, "%.2f", 100.0 * r.top1), row("top-1 accuracy", b, "%");
        snprintf(b, sizeof b, "%.0f", r.tokens_per_s), row("speed", b, "tokens/s");
        snprintf(b, sizeof b, "%.2f", r.seconds), row("wall time", b, "s");
        snprintf(b, sizeof b, "%.4f", kept), row("kept fraction", b, "of visible pairs");
        snprintf(b, sizeof b, "%.4f", mem), row("mem-kept fraction", b, "of visible pairs");
        snprintf(b, sizeof b, "%.3g", fpr), row("false-prune rate", b, "of pairs passing exactly");
        snprintf(b, sizeof b, "%.4f", loc), row("locality", b, "of previous query's survivors");
        snprintf(b, sizeof b, "%.4f", nff), row("new-fetch fraction", b, "of visible sequence length");
        snprintf(b, sizeof b, "%.3g", mlq), row("mass lost", b, "softmax mass per query (fraction)");
    }
    if (c.csv_path) {
        FILE *f = cli_output_open(&c, c.csv_path);
        fprintf(f, "attention,stories,tokens,nll_nats_per_token,ppl,top1_fraction,tokens_per_s,kept_fraction,"
                   "mem_kept_fraction,false_prune_rate,locality,new_fetch_fraction,mass_lost_per_query\n");
        fprintf(f, "%s,%ld,%ld,%.6f,%.6f,%.6f,%.1f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6g\n", op->name, r.stories, r.tokens,
                r.nll, r.ppl, r.top1, r.tokens_per_s, kept, mem, fpr, loc, nff, mlq);
        cli_output_commit(&c);
    }
    sp_attn_op_free(op);
    sp_corpus_free(&corpus);
    sp_tokenizer_free(t);
    sp_model_free(m);
    return 0;
}
