/* sprint trace: writes the per-query pruning records (the simulator's input) of one synthetic
 * preset head, or of the real model's traces, as CSV: one row per query with its visible,
 * in-memory kept and kept counts, the keys new and reused relative to the previous query of
 * the same head (the SLD split, paper section 2.4) and the kept key indices. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "sprint/functional.h"
#include "sprint/sim.h"

static void help(void) {
    printf("usage: sprint trace [--workload NAME] [--layer L] [--head H] [--real] [--out FILE] [options]\n\n"
           "Writes the per-query pruning records that drive the simulator as CSV (stdout or FILE):\n"
           "layer,head,seq,qi,pos,n_visible,n_mem_kept,n_kept,new_vs_prev,reused_vs_prev,mem_kept\n"
           "(mem_kept = the in-memory survivors, ';'-separated). By default one head of a synthetic\n"
           "preset (workload.mode makes the masks); --real traces the shared model on\n"
           "sim.trace_stories stories (all layers and heads, rows of different heads interleave).\n\n"
           "  --workload NAME   preset (default BERT-B; %s)\n"
           "  --layer L, --head H  which head of the preset (default 0, 0)\n"
           "  --real            trace the real model instead\n"
           "  --out FILE        write to FILE instead of stdout\n\n%s",
           SP_WORKLOAD_PRESETS, CLI_COMMON_HELP);
}

typedef struct tstate {
    FILE *f;
    int n_heads;
    int32_t **prev; /* per (layer, head) previous survivors */
    int *n_prev;
    long long *seq;
} tstate;

static void write_record(void *user, const sp_query_record *r) {
    tstate *t = user;
    int slot = r->layer * t->n_heads + r->head, reuse = 0, fetch = r->n_mem_kept;
    if (t->prev[slot] && t->seq[slot] == r->seq_id) /* SLD split against the previous query */
        sp_sld_split(t->prev[slot], t->n_prev[slot], r->mem_kept, r->n_mem_kept, &reuse, &fetch);
    free(t->prev[slot]);
    t->prev[slot] = malloc(sizeof(int32_t) * (size_t)(r->n_mem_kept + 1));
    if (r->n_mem_kept) memcpy(t->prev[slot], r->mem_kept, sizeof(int32_t) * (size_t)r->n_mem_kept);
    t->n_prev[slot] = r->n_mem_kept;
    t->seq[slot] = r->seq_id;
    flockfile(t->f);
    fprintf(t->f, "%d,%d,%lld,%d,%d,%d,%d,%d,%d,%d,", r->layer, r->head, r->seq_id, r->qi, r->pos, r->n_visible,
            r->n_mem_kept, r->n_kept, fetch, reuse);
    for (int i = 0; i < r->n_mem_kept; i++) fprintf(t->f, i ? ";%d" : "%d", r->mem_kept[i]);
    fputc('\n', t->f);
    funlockfile(t->f);
}

int cmd_trace(int argc, char **argv) {
    cli_common c;
    cli_init(&c, "trace");
    const char *name = "BERT-B", *outp = NULL;
    int layer = 0, head = 0, real = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_common_option(&c, argc, argv, &i)) continue;
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help();
            return 0;
        } else if (!strcmp(a, "--workload")) {
            name = cli_value(&c, argc, argv, &i);
        } else if (!strcmp(a, "--layer") || !strcmp(a, "--head")) {
            const char *v = cli_value(&c, argc, argv, &i);
            char *end;
            long x = strtol(v, &end, 10);
            if (end == v || *end || x < 0 || x > 1000000)
                cli_die(&c, 2, "%s: expected a whole number >= 0, got '%s'", a, v);
            *(a[2] == 'l' ? &layer : &head) = (int)x;
        } else if (!strcmp(a, "--real")) {
            real = 1;
        } else if (!strcmp(a, "--out")) {
            outp = cli_value(&c, argc, argv, &i);
        } else {
            cli_die(&c, 2, "unknown option '%s' (see sprint trace --help)", a);
        }
    }
    cli_finish(&c);
    sp_error err = {0};
    int layers, heads;
    sp_attn_op *op = NULL;
    sp_model *m = NULL;
    if (real) {
        char why[1200];
        if (!cli_resolve_shared(&c, why, sizeof why)) cli_die(&c, 1, "%s", why);
        if (sp_model_load(c.cfg.model_checkpoint, &m, &err) != SP_OK) cli_die_err(&c, &err);
        layers = sp_model_get_info(m)->n_layers;
        heads = sp_model_get_info(m)->n_heads;
    } else {
        sp_workload wl;
        if (sp_workload_preset(&c.cfg, name, &wl, &err) != SP_OK) cli_die_err(&c, &err);
        layers = wl.layers;
        heads = wl.heads;
        if (layer < 0 || layer >= layers || head < 0 || head >= heads)
            cli_die(&c, 2, "%s has %d layers x %d heads: --layer %d --head %d is out of range", wl.name, layers, heads,
                    layer, head);
    }
    FILE *f = outp ? fopen(outp, "w") : stdout;
    if (!f) cli_die(&c, 1, "cannot write %s: %s", outp, strerror(errno));
    fprintf(f, "layer,head,seq,qi,pos,n_visible,n_mem_kept,n_kept,new_vs_prev,reused_vs_prev,mem_kept\n");
    tstate t = {.f = f, .n_heads = heads, .prev = calloc((size_t)(layers * heads), sizeof(int32_t *)),
                .n_prev = calloc((size_t)(layers * heads), sizeof(int)),
                .seq = calloc((size_t)(layers * heads), sizeof(long long))};
    sp_config *ocfg = sp_sim_op_config(&c.cfg); /* the op feeding the trace: sprint.mass_lost off */
    if (real) {
        sp_tokenizer *tok = NULL;
        char *text = NULL;
        size_t len = 0;
        sp_corpus corpus;
        memset(&corpus, 0, sizeof corpus);
        if (sp_tokenizer_load(c.cfg.model_tokenizer, sp_model_get_info(m)->vocab_size, &tok, &err) != SP_OK ||
            sp_read_file(c.cfg.eval_text, &text, &len, &err) != SP_OK ||
            sp_corpus_from_text(tok, text, len, (int)c.cfg.sim_trace_stories, &corpus, &err) != SP_OK)
            cli_die_err(&c, &err);
        if (!strcmp(c.cfg.workload_mode, "builtin")) {
            op = sp_relthresh_op_create(layers, heads, c.cfg.workload_margin_nats);
        } else {
            sp_op_request req = {.mode = c.cfg.workload_mode, .cfg = ocfg, .model = m, .calib = &corpus,
                                 .progress = cli_progress, .progress_user = &c};
            if (sp_attn_op_create_calibrated(&req, layers, heads, &op, NULL, &err) != SP_OK) cli_die_err(&c, &err);
        }
        op->observer = write_record;
        op->observer_user = &t;
        sp_eval_opts eo = {.window = (int)c.cfg.eval_window, .threads = (int)c.cfg.run_threads,
                           .progress = cli_progress, .progress_user = &c};
        sp_eval_result er;
        if (sp_eval_corpus(m, &corpus, op, &eo, &er, &err) != SP_OK) cli_die_err(&c, &err);
        cli_progress_done();
        sp_corpus_free(&corpus);
        free(text);
        sp_tokenizer_free(tok);
        sp_model_free(m);
    } else {
        sp_workload wl;
        sp_workload_preset(&c.cfg, name, &wl, &err);
        int n = wl.seq, d = wl.d, nvalid = n - (int)(wl.padding * n + 0.5);
        float *q = malloc(sizeof(float) * (size_t)n * d), *k = malloc(sizeof(float) * (size_t)n * d);
        float *v = malloc(sizeof(float) * (size_t)n * d), *o = malloc(sizeof(float) * (size_t)n * d);
        unsigned char *valid = malloc((size_t)n);
        if (!q || !k || !v || !o || !valid) cli_die(&c, 1, "out of memory");
        for (int i = 0; i < n; i++) valid[i] = i < nvalid;
        sp_workload_synth_head(&c.cfg, &wl, layer, head, q, k, v);
        if (!strcmp(c.cfg.workload_mode, "builtin")) {
            op = sp_relthresh_op_create(layers, heads, c.cfg.workload_margin_nats);
        } else {
            sp_op_request req = {.mode = c.cfg.workload_mode, .cfg = ocfg};
            if (sp_attn_op_create(&req, layers, heads, &op, &err) != SP_OK) cli_die_err(&c, &err);
        }
        op->observer = write_record;
        op->observer_user = &t;
        sp_attn_head h = {.layer = layer, .head = head, .kv_head = head, .n_q = n, .n_k = n, .d = d, .q = q, .k = k,
                          .v = v, .out = o, .ldq = d, .ldk = d, .ldv = d, .ldo = d, .causal = wl.causal,
                          .key_valid = valid, .query_valid = valid, .scale = (float)(1.0 / sqrt((double)d))};
        if (op->run(op, &h, &err) != SP_OK) cli_die_err(&c, &err);
        free(q), free(k), free(v), free(o), free(valid);
    }
    free(ocfg);
    sp_attn_op_free(op);
    for (int i = 0; i < layers * heads; i++) free(t.prev[i]);
    free(t.prev), free(t.n_prev), free(t.seq);
    if (outp && fclose(f) != 0) cli_die(&c, 1, "cannot write %s: %s", outp, strerror(errno));
    return 0;
}
