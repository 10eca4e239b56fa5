/* sprint trace: writes the per-query pruning records (the simulator's input) of one synthetic
 * preset head, or of the real model's traces, as CSV: one row per query with its visible,
 * in-memory kept and kept counts, the keys new and reused relative to the previous query of
 * the same head (the SLD split, paper section 2.4) and the kept key indices. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "qkv_cli.h"
#include "sprint/functional.h"
#include "sprint/sim.h"

static void help(void) {
    printf("usage: sprint trace [--workload NAME] [--layer L] [--head H] [--real [--export-qkv FILE]] [--qkv FILE]\n"
           "                    [--out FILE] [options]\n\n"
           "Writes the per-query pruning records that drive the simulator as CSV (stdout or FILE):\n"
           "layer,head,seq,qi,pos,n_visible,n_mem_kept,n_kept,new_vs_prev,reused_vs_prev,mem_kept\n"
           "(mem_kept = the in-memory survivors, ';'-separated). By default one head of a synthetic\n"
           "preset (workload.mode makes the masks); --real traces the shared model on\n"
           "sim.trace_stories stories (all layers and heads; rows sorted by sequence, layer, head, query,\n"
           "whatever the thread timing): as sprint run's traces, those of eval.text's second half with\n"
           "thresholds calibrated on its first half when they are calibrated (eval.split, policy.calib_text).\n\n"
           "  --workload NAME   preset (default BERT-B; %s)\n"
           "  --layer L, --head H  which head of the preset (default 0, 0)\n"
           "  --real            trace the real model instead\n"
           "  --export-qkv FILE with --real: also write the Q/K/V every attention call of that run received\n"
           "                    (safetensors, docs/formats.md); workload.mode=dense gives the dense model's\n"
           "  --qkv FILE        trace your own Q/K/V tensors (safetensors file or .npy directory) instead\n"
           "  --out FILE        write to FILE instead of stdout (--csv FILE is the same; --json is refused)\n\n%s",
           SP_WORKLOAD_PRESETS, CLI_COMMON_HELP);
}

/* Records are buffered (they arrive from several threads, in an order that depends on thread
 * timing) and written sorted by (sequence, layer, head, query) once the run is over; the SLD
 * split is computed then, against the previous query of the same (sequence, layer, head). */
typedef struct trow {
    int layer, head, qi, pos, n_visible, n_mem_kept, n_kept;
    long long seq;
    int32_t *mem_kept;
} trow;

typedef struct tstate {
    pthread_mutex_t mu;
    trow *rows;
    size_t n, cap;
    int oom;
} tstate;

static void write_record(void *user, const sp_query_record *r) {
    tstate *t = user;
    int32_t *mk = malloc(sizeof(int32_t) * (size_t)(r->n_mem_kept + 1));
    if (mk && r->n_mem_kept) memcpy(mk, r->mem_kept, sizeof(int32_t) * (size_t)r->n_mem_kept);
    pthread_mutex_lock(&t->mu);
    if (t->n == t->cap) {
        size_t nc = t->cap ? 2 * t->cap : 4096;
        trow *nr = realloc(t->rows, nc * sizeof *nr);
        if (nr) t->rows = nr, t->cap = nc;
    }
    if (!mk || t->n == t->cap) {
        t->oom = 1;
        free(mk);
    } else {
        t->rows[t->n++] = (trow){r->layer, r->head, r->qi, r->pos, r->n_visible, r->n_mem_kept, r->n_kept, r->seq_id, mk};
    }
    pthread_mutex_unlock(&t->mu);
}

static int row_cmp(const void *pa, const void *pb) {
    const trow *a = pa, *b = pb;
    if (a->seq != b->seq) return a->seq < b->seq ? -1 : 1;
    if (a->layer != b->layer) return a->layer - b->layer;
    if (a->head != b->head) return a->head - b->head;
    return a->qi - b->qi;
}

/* Sorts the rows and writes them with the SLD split against the previous query of the same
 * (sequence, layer, head); frees the rows. */
static void write_rows(tstate *t, FILE *f) {
    qsort(t->rows, t->n, sizeof *t->rows, row_cmp);
    for (size_t i = 0; i < t->n; i++) {
        const trow *r = &t->rows[i], *p = i ? &t->rows[i - 1] : NULL;
        int reuse = 0, fetch = r->n_mem_kept;
        if (p && p->seq == r->seq && p->layer == r->layer && p->head == r->head)
            sp_sld_split(p->mem_kept, p->n_mem_kept, r->mem_kept, r->n_mem_kept, &reuse, &fetch);
        fprintf(f, "%d,%d,%lld,%d,%d,%d,%d,%d,%d,%d,", r->layer, r->head, r->seq, r->qi, r->pos, r->n_visible,
                r->n_mem_kept, r->n_kept, fetch, reuse);
        for (int k = 0; k < r->n_mem_kept; k++) fprintf(f, k ? ";%d" : "%d", r->mem_kept[k]);
        fputc('\n', f);
    }
    for (size_t i = 0; i < t->n; i++) free(t->rows[i].mem_kept);
    free(t->rows);
    t->rows = NULL;
    t->n = t->cap = 0;
}

/* The stories the real-model trace runs on and the ones its thresholds are calibrated on
 * (cli_trace_corpora, as sprint run's traces), encoded with the model's tokenizer; calib is
 * empty when the traced stories calibrate. Exits on error. */
static void load_trace_stories(cli_common *c, const sp_model *m, sp_corpus *corpus, sp_corpus *calib) {
    sp_error err = {0};
    sp_tokenizer *tok = NULL;
    if (sp_tokenizer_load(c->cfg.model_tokenizer, sp_model_get_info(m)->vocab_size, &tok, &err) != SP_OK ||
        cli_trace_corpora(c, &c->cfg, tok, calib, corpus, &err) != SP_OK)
        cli_die_err(c, &err);
    sp_tokenizer_free(tok);
}

int cmd_trace(int argc, char **argv) {
    cli_common c;
    cli_init(&c, "trace");
    const char *name = "BERT-B", *outp = NULL, *export_qkv = NULL, *qkv_path = NULL;
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
        } else if (!strcmp(a, "--export-qkv")) {
            export_qkv = cli_value(&c, argc, argv, &i);
        } else if (!strcmp(a, "--qkv")) {
            qkv_path = cli_value(&c, argc, argv, &i);
        } else if (!strcmp(a, "--out")) {
            outp = cli_value(&c, argc, argv, &i);
        } else {
            cli_die(&c, 2, "unknown option '%s' (see sprint trace --help)", a);
        }
    }
    cli_finish(&c);
    /* the trace is CSV: --csv FILE is the same as --out FILE; there is no JSON form (issue 10) */
    if (c.json) cli_die(&c, 2, "--json: sprint trace writes CSV rows (stdout, --out FILE or --csv FILE)");
    if (c.csv_path) {
        if (outp && strcmp(outp, c.csv_path)) cli_die(&c, 2, "--out %s and --csv %s: give one output file", outp, c.csv_path);
        outp = c.csv_path;
    }
    if (export_qkv && !real) cli_die(&c, 2, "--export-qkv needs --real (it exports the real model's Q/K/V)");
    if (qkv_path && real) cli_die(&c, 2, "--qkv and --real are exclusive: trace either a tensor set or the model");
    sp_error err = {0};
    int layers, heads;
    sp_attn_op *op = NULL;
    sp_model *m = NULL;
    sp_qkv *qkv = NULL;
    if (qkv_path) {
        qkv = qkv_cli_load(&c, qkv_path);
        layers = qkv->layers;
        heads = qkv->heads;
    } else if (real) {
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
    FILE *f = outp ? cli_output_open(&c, outp) : stdout; /* complete or absent */
    fprintf(f, "layer,head,seq,qi,pos,n_visible,n_mem_kept,n_kept,new_vs_prev,reused_vs_prev,mem_kept\n");
    tstate t = {.rows = NULL};
    pthread_mutex_init(&t.mu, NULL);
    if (qkv) {
        /* the same mask operator as sprint run (sp_sim_mask_op_create) */
        if (sp_sim_mask_op_create(&c.cfg, layers, heads, NULL, NULL, 0, NULL, NULL, &op, NULL, 0, &err) != SP_OK)
            cli_die_err(&c, &err);
        op->observer = write_record;
        op->observer_user = &t;
        if (sp_qkv_run_op(qkv, op, (int)c.cfg.run_threads, &err) != SP_OK) cli_die_err(&c, &err);
        sp_qkv_free(qkv);
    } else if (real && export_qkv) {
        sp_corpus corpus, calib;
        load_trace_stories(&c, m, &corpus, &calib);
        sp_sim_opts so = {.threads = (int)c.cfg.run_threads, .progress = cli_progress, .progress_user = &c,
                          .calib = calib.n ? &calib : NULL};
        if (sp_qkv_capture_model(&c.cfg, m, &corpus, &so, write_record, &t, &qkv, &err) != SP_OK) cli_die_err(&c, &err);
        cli_progress_done();
        if (sp_qkv_save(qkv, export_qkv, &err) != SP_OK) cli_die_err(&c, &err);
        if (!c.quiet) {
            fprintf(stderr, "[trace] wrote the Q/K/V of %d sequences to %s\n", qkv->n_seq, export_qkv);
            int auto_cal = !c.cfg.policy_file[0] && strcmp(c.cfg.workload_mode, "dense") &&
                           strcmp(c.cfg.workload_mode, "dense-ref") && strcmp(c.cfg.workload_mode, "builtin") &&
                           (c.cfg.policy_delta < 0 || !strcmp(c.cfg.policy_kind, "layer") || !strcmp(c.cfg.policy_kind, "head"));
            if (auto_cal)
                fprintf(stderr, "[trace] note: this run calibrated its thresholds on the model; sprint run --qkv has no model "
                        "and uses policy.delta_uncalibrated unless given the same thresholds (policy.file or policy.delta)\n");
        }
        sp_qkv_free(qkv);
        sp_corpus_free(&corpus);
        sp_corpus_free(&calib);
        sp_model_free(m);
    } else if (real) {
        sp_corpus corpus, calib;
        load_trace_stories(&c, m, &corpus, &calib);
        /* as sprint run's real-model traces: outputs on (later layers read them), calibrated on
         * the held-out stories */
        if (sp_sim_mask_op_create(&c.cfg, layers, heads, m, calib.n ? &calib : &corpus, 1, cli_progress, &c, &op, NULL, 0, &err) != SP_OK)
            cli_die_err(&c, &err);
        op->observer = write_record;
        op->observer_user = &t;
        sp_eval_opts eo = {.window = (int)c.cfg.eval_window, .threads = (int)c.cfg.run_threads,
                           .progress = cli_progress, .progress_user = &c};
        sp_eval_result er;
        if (sp_eval_corpus(m, &corpus, op, &eo, &er, &err) != SP_OK) cli_die_err(&c, &err);
        cli_progress_done();
        sp_corpus_free(&corpus);
        sp_corpus_free(&calib);
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
        /* the same mask operator as sprint run (sp_sim_mask_op_create) */
        if (sp_sim_mask_op_create(&c.cfg, layers, heads, NULL, NULL, 0, NULL, NULL, &op, NULL, 0, &err) != SP_OK)
            cli_die_err(&c, &err);
        op->observer = write_record;
        op->observer_user = &t;
        sp_attn_head h = {.layer = layer, .head = head, .kv_head = head, .n_q = n, .n_k = n, .d = d, .q = q, .k = k,
                          .v = v, .out = o, .ldq = d, .ldk = d, .ldv = d, .ldo = d, .causal = wl.causal,
                          .key_valid = valid, .query_valid = valid, .scale = (float)(1.0 / sqrt((double)d))};
        if (op->run(op, &h, &err) != SP_OK) cli_die_err(&c, &err);
        free(q), free(k), free(v), free(o), free(valid);
    }
    sp_attn_op_free(op);
    if (t.oom) cli_die(&c, 1, "out of memory buffering the trace");
    write_rows(&t, f);
    pthread_mutex_destroy(&t.mu);
    if (outp) cli_output_commit(&c);
    return 0;
}
