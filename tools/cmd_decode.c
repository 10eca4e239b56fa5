/* sprint decode: SPRINT on a growing KV cache (issue 12). The functional decode operator
 * (sprint/fn_decode.h) runs either a real model teacher-forced one token per step, or a
 * synthetic long context; its per-step records drive the simulator's decode mode
 * (sprint/decode_sim.h): time and energy per generated token for SPRINT, dense streaming and
 * a digital top-k baseline, the ReRAM write per step and an endurance estimate. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "sprint/decode_sim.h"
#include "sprint/fn_decode.h"
#include "sprint/model.h"

static void help(void) {
    printf("usage: sprint decode [--synthetic] [--model M] [--tokenizer T] [--text F] [--size S|M|L]\n"
           "                     [common options]\n\n"
           "Decoding on a growing KV cache through the SPRINT functional model, then the simulator's\n"
           "decode mode. Real (default): the first sim.trace_stories stories of the text, teacher-forced\n"
           "one token per step through a KV cache (every step of every story is a decode step), with the\n"
           "decode NLL of SPRINT and of dense attention. --synthetic: decode.kv_heads KV heads of\n"
           "decode.gqa query heads each, d = decode.head_dim, a prompt of decode.context tokens written\n"
           "into the arrays, then decode.steps steps (synthetic Q/K/V: workload.* keys).\n\n"
           "  --synthetic      synthetic long context instead of the real model\n"
           "  --size S|M|L     accelerator size simulated (chip.*, default S)\n"
           "  Keys: decode.* (threshold, synthetic shape, write latency, endurance range), reram.*,\n"
           "  quant.msb_bits, memory.*, chip.*, energy.*; see docs/config.md\n\n"
           "Output (table, or JSON with --json): per generated token, for SPRINT, dense and topk: time\n"
           "(us/token, all layers and KV heads on one accelerator), tokens/s, energy (uJ/token) with its\n"
           "categories, main-memory bytes read; the functional statistics (kept and fetched fractions of\n"
           "the visible keys, newly fetched keys per step); SPRINT's ReRAM array write per step (ns, pJ);\n"
           "the endurance estimate over decode.report_tokens tokens against decode.endurance_low..high.\n"
           "--csv F: one row per decode step (position) with the three designs' cycles and energy.\n\n%s",
           CLI_COMMON_HELP);
}

typedef struct recs {
    sp_decode_record *r;
    size_t n, cap;
} recs;

static void collect(void *user, const sp_decode_record *rec) {
    recs *R = user;
    if (R->n == R->cap) {
        R->cap = R->cap ? 2 * R->cap : 1024;
        R->r = realloc(R->r, R->cap * sizeof *R->r);
        SP_ASSERT(R->r);
    }
    R->r[R->n++] = *rec;
}

int cmd_decode(int argc, char **argv) {
    cli_common c;
    cli_init(&c, "decode");
    int synthetic = 0, size = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_common_option(&c, argc, argv, &i) || cli_path_option(&c, argc, argv, &i, 1)) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help();
            return 0;
        } else if (!strcmp(a, "--synthetic")) {
            synthetic = 1;
        } else if (!strcmp(a, "--size")) {
            const char *v = cli_value(&c, argc, argv, &i);
            if (!strcmp(v, "S")) size = 0;
            else if (!strcmp(v, "M")) size = 1;
            else if (!strcmp(v, "L")) size = 2;
            else cli_die(&c, 2, "--size expects S, M or L, got '%s'", v);
        } else {
            cli_die(&c, 2, "unknown option '%s' (see sprint decode --help)", a);
        }
    }
    cli_finish(&c);
    sp_error err = {0};
    sp_hw hw;
    if (sp_hw_from_config(&c.cfg, size, &hw, &err) != SP_OK) cli_die_err(&c, &err);
    recs R = {0};
    int d, layers_model, kv_model, group;
    double prompt_tokens = 0, seq_steps = 0, nll_sprint = 0, nll_dense = 0, capacity = 0;
    double kept_frac = 0;
    sp_attn_stats tot = {0};
    if (!synthetic) {
        cli_resolve_paths(&c, 1);
        sp_model *m = NULL;
        sp_tokenizer *t = NULL;
        char *text = NULL;
        size_t len = 0;
        sp_corpus corpus = {0};
        if (sp_model_load(c.cfg.model_checkpoint, &m, &err) != SP_OK) cli_die_err(&c, &err);
        const sp_model_info *info = sp_model_get_info(m);
        if (sp_tokenizer_load(c.cfg.model_tokenizer, info->vocab_size, &t, &err) != SP_OK) cli_die_err(&c, &err);
        if (sp_read_file(c.cfg.eval_text, &text, &len, &err) != SP_OK) cli_die_err(&c, &err);
        if (sp_corpus_from_text(t, text, len, (int)c.cfg.sim_trace_stories, &corpus, &err) != SP_OK) cli_die_err(&c, &err);
        free(text);
        d = info->head_dim, layers_model = info->n_layers, kv_model = info->n_kv_heads;
        group = info->n_heads / info->n_kv_heads;
        capacity = info->seq_len;
        sp_attn_op *op = NULL, *dense = sp_attn_dense_fast_create(info->n_layers, info->n_heads);
        if (sp_fn_decode_op_create(&c.cfg, info->n_layers, info->n_heads, info->n_kv_heads, d, info->seq_len, collect,
                                   &R, &op, &err) != SP_OK)
            cli_die_err(&c, &err);
        sp_eval_opts eo = {.threads = 1, .progress = cli_progress, .progress_user = &c};
        sp_eval_result rs, rd;
        if (sp_eval_corpus_decode(m, &corpus, op, &eo, &rs, &err) != SP_OK) cli_die_err(&c, &err);
        cli_progress_done();
        if (sp_eval_corpus_decode(m, &corpus, dense, &eo, &rd, &err) != SP_OK) cli_die_err(&c, &err);
        cli_progress_done();
        nll_sprint = rs.nll, nll_dense = rd.nll;
        tot = rs.attn;
        seq_steps = (double)corpus.total_targets / corpus.n; /* tokens per story: every one a decode step */
        sp_attn_op_free(op);
        sp_attn_op_free(dense);
        sp_corpus_free(&corpus);
        sp_tokenizer_free(t);
        sp_model_free(m);
    } else {
        int P = (int)c.cfg.decode_context, S = (int)c.cfg.decode_steps, Hk = (int)c.cfg.decode_kv_heads;
        group = (int)c.cfg.decode_gqa;
        d = (int)c.cfg.decode_head_dim;
        layers_model = (int)c.cfg.decode_layers, kv_model = Hk;
        int n = P + S;
        capacity = n;
        prompt_tokens = P, seq_steps = S;
        sp_attn_op *op = NULL;
        if (sp_fn_decode_op_create(&c.cfg, 1, Hk * group, Hk, d, n, collect, &R, &op, &err) != SP_OK)
            cli_die_err(&c, &err);
        sp_workload wl = {.layers = 1, .heads = Hk, .d = d, .causal = 1, .seq = n, .synthetic = 1};
        snprintf(wl.name, sizeof wl.name, "decode-synthetic");
        float *q = sp_xmalloc((size_t)n * d, sizeof(float)), *k = sp_xmalloc((size_t)n * d, sizeof(float));
        float *v = sp_xmalloc((size_t)n * d, sizeof(float)), *qh = sp_xmalloc((size_t)group * d, sizeof(float));
        float *out = sp_xmalloc((size_t)d, sizeof(float));
        sp_rng rng;
        for (int kh = 0; kh < Hk; kh++) {
            sp_workload_synth_head(&c.cfg, &wl, 0, kh, q, k, v);
            if (sp_fn_decode_prefill(op, 0, kh, 0, k, d, P, &err) != SP_OK) cli_die_err(&c, &err);
            sp_rng_seed(&rng, sp_rng_key((uint64_t)c.cfg.run_seed, 12, (uint64_t)kh, 0, 0));
            for (int pos = P; pos < n; pos++) {
                const float *q0 = q + (size_t)pos * d;
                double nrm = 0;
                for (int e = 0; e < d; e++) nrm += (double)q0[e] * q0[e];
                double sd = c.cfg.decode_query_spread * sqrt(nrm / d);
                for (int r = 0; r < group; r++) {
                    for (int e = 0; e < d; e++)
                        qh[(size_t)r * d + e] = q0[e] + (r ? (float)(sd * sp_rng_next_normal(&rng)) : 0.0f);
                    sp_attn_head h = {.layer = 0, .head = kh * group + r, .kv_head = kh, .seq_id = 0, .n_q = 1,
                                      .n_k = pos + 1, .d = d, .q = qh + (size_t)r * d, .k = k, .v = v, .out = out,
                                      .ldq = d, .ldk = d, .ldv = d, .ldo = d, .causal = 1, .q_offset = pos,
                                      .scale = (float)(1.0 / sqrt((double)d))};
                    if (op->run(op, &h, &err) != SP_OK) cli_die_err(&c, &err);
                }
            }
            cli_progress(&c, "KV heads", kh + 1, Hk);
        }
        cli_progress_done();
        sp_attn_stats_total(op, &tot);
        sp_attn_op_free(op);
        free(q), free(k), free(v), free(qh), free(out);
    }
    kept_frac = sp_attn_stats_kept_fraction(&tot);
    /* ---- simulate every record; aggregate per token ---- */
    double scale = synthetic ? (double)layers_model : 1.0; /* synthetic: layer 0 stands for every layer */
    sp_decode_cost acc[SP_DDESIGN_COUNT];
    memset(acc, 0, sizeof acc);
    double fetched = 0, newf = 0, visible = 0, memk = 0, steps = 0, pulses = 0;
    FILE *csv = NULL;
    if (c.csv_path && !(csv = fopen(c.csv_path, "w"))) cli_die(&c, 1, "cannot write %s", c.csv_path);
    if (csv)
        fprintf(csv, "layer,kv_head,seq,pos,visible,mem_kept,kept,fetched,new_fetched,sprint_cycles,dense_cycles,"
                     "topk_cycles,sprint_pj,dense_pj,topk_pj,write_cycles,array_write_pj\n");
    for (size_t i = 0; i < R.n; i++) {
        const sp_decode_record *r = &R.r[i];
        sp_decode_cost one[SP_DDESIGN_COUNT];
        memset(one, 0, sizeof one);
        sp_decode_sim_step(&hw, r, d, (int)c.cfg.quant_msb_bits, c.cfg.decode_reram_write_ns, c.cfg.chip_clock_mhz, one);
        for (int k = 0; k < SP_DDESIGN_COUNT; k++) {
            acc[k].cycles += one[k].cycles;
            acc[k].write_cycles += one[k].write_cycles;
            acc[k].screen_cycles += one[k].screen_cycles;
            acc[k].array_write_pj += one[k].array_write_pj;
            acc[k].energy_pj_total += one[k].energy_pj_total;
            acc[k].bytes_read += one[k].bytes_read;
            for (int e = 0; e < SP_E_COUNT; e++) acc[k].energy_pj[e] += one[k].energy_pj[e];
        }
        fetched += r->fetched, newf += r->new_fetched, visible += r->n_visible, memk += r->mem_kept;
        pulses += r->write_pulses;
        if (csv)
            fprintf(csv, "%d,%d,%lld,%d,%d,%.0f,%.0f,%d,%d,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.2f\n", r->layer, r->kv_head,
                    r->seq_id, r->pos, r->n_visible, r->mem_kept, r->kept, r->fetched, r->new_fetched, one[0].cycles,
                    one[1].cycles, one[2].cycles, one[0].energy_pj_total, one[1].energy_pj_total,
                    one[2].energy_pj_total, one[0].write_cycles, one[0].array_write_pj);
    }
    if (csv && fclose(csv) != 0) cli_die(&c, 1, "cannot write %s", c.csv_path);
    /* tokens: records per token = layers x KV heads (real) or KV heads (synthetic, x layers by scale) */
    double per_token_recs = synthetic ? (double)kv_model : (double)layers_model * kv_model;
    steps = R.n / per_token_recs;
    if (steps <= 0) cli_die(&c, 1, "no decode step was run");
    double clock_hz = c.cfg.chip_clock_mhz * 1e6;
    double us[SP_DDESIGN_COUNT], uj[SP_DDESIGN_COUNT], tps[SP_DDESIGN_COUNT], mb[SP_DDESIGN_COUNT];
    for (int k = 0; k < SP_DDESIGN_COUNT; k++) {
        double cyc = acc[k].cycles * scale / steps;
        us[k] = cyc / clock_hz * 1e6;
        tps[k] = us[k] > 0 ? 1e6 / us[k] : 0;
        uj[k] = acc[k].energy_pj_total * scale / steps * 1e-6;
        mb[k] = acc[k].bytes_read * scale / steps / 1e6;
    }
    double write_ns_step = acc[0].write_cycles * scale / steps / c.cfg.chip_clock_mhz * 1e3;
    double write_pj_token = acc[0].array_write_pj * scale / steps;
    double write_pj_rec = acc[0].array_write_pj / (double)R.n, write_ns_rec = acc[0].write_cycles / R.n / c.cfg.chip_clock_mhz * 1e3;
    /* endurance: every token writes one column of d MSB cells in each (layer, KV head) array; a
     * column is rewritten once per sequence that reaches it */
    double N = c.cfg.decode_report_tokens, Sg = seq_steps, P = prompt_tokens;
    double wpc_restart = N / Sg;                        /* sequences restart at column 0 */
    double wpc_ring = N * (P + Sg) / (Sg * capacity);   /* columns used round-robin over the capacity */
    double life_tokens_low = c.cfg.decode_endurance_low * Sg * capacity / (P + Sg);
    double life_days_low = life_tokens_low / tps[0] / 86400.0;
    if (c.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "mode", "decode");
        cJSON_AddStringToObject(o, "workload", synthetic ? "synthetic" : c.cfg.model_checkpoint);
        cJSON_AddNumberToObject(o, "size", size);
        cJSON_AddNumberToObject(o, "head_dim", d);
        cJSON_AddNumberToObject(o, "gqa", group);
        cJSON_AddNumberToObject(o, "layers", layers_model);
        cJSON_AddNumberToObject(o, "kv_heads", kv_model);
        cJSON_AddNumberToObject(o, "context", P);
        cJSON_AddNumberToObject(o, "steps_per_sequence", Sg);
        cJSON_AddNumberToObject(o, "decode_steps", steps);
        cJSON_AddNumberToObject(o, "kept_fraction", kept_frac);
        cJSON_AddNumberToObject(o, "mem_kept_fraction", memk / group / visible);
        cJSON_AddNumberToObject(o, "fetched_fraction", fetched / visible);
        cJSON_AddNumberToObject(o, "new_fetched_per_step", newf / R.n);
        cJSON_AddNumberToObject(o, "false_prune_rate", sp_attn_stats_false_prune_rate(&tot));
        if (!synthetic) {
            cJSON_AddNumberToObject(o, "nll_sprint_decode", nll_sprint);
            cJSON_AddNumberToObject(o, "nll_dense_decode", nll_dense);
        }
        cJSON *ds = cJSON_AddArrayToObject(o, "designs");
        for (int k = 0; k < SP_DDESIGN_COUNT; k++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "design", sp_ddesign_name(k));
            cJSON_AddNumberToObject(x, "us_per_token", us[k]);
            cJSON_AddNumberToObject(x, "tokens_per_s", tps[k]);
            cJSON_AddNumberToObject(x, "uj_per_token", uj[k]);
            cJSON_AddNumberToObject(x, "mb_read_per_token", mb[k]);
            cJSON *e = cJSON_AddObjectToObject(x, "energy_uj_per_token");
            for (int j = 0; j < SP_E_COUNT; j++)
                cJSON_AddNumberToObject(e, sp_energy_cat_name(j), acc[k].energy_pj[j] * scale / steps * 1e-6);
            cJSON_AddItemToArray(ds, x);
        }
        cJSON_AddNumberToObject(o, "array_write_ns_per_step", write_ns_rec);
        cJSON_AddNumberToObject(o, "array_write_pj_per_step", write_pj_rec);
        cJSON_AddNumberToObject(o, "array_write_ns_per_token", write_ns_step);
        cJSON_AddNumberToObject(o, "array_write_pj_per_token", write_pj_token);
        cJSON_AddNumberToObject(o, "report_tokens", N);
        cJSON_AddNumberToObject(o, "writes_per_cell_restart", wpc_restart);
        cJSON_AddNumberToObject(o, "writes_per_cell_ring", wpc_ring);
        cJSON_AddNumberToObject(o, "endurance_low", c.cfg.decode_endurance_low);
        cJSON_AddNumberToObject(o, "endurance_high", c.cfg.decode_endurance_high);
        cJSON_AddNumberToObject(o, "lifetime_days_at_low_endurance", life_days_low);
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        cJSON_free(s);
        cJSON_Delete(o);
    } else {
        printf("sprint decode: %s, d %d, %d query heads per KV head, %s-SPRINT, %.0f decode steps\n",
               synthetic ? "synthetic long context" : c.cfg.model_checkpoint, d, group, size == 0 ? "S" : size == 1 ? "M" : "L",
               steps);
        if (synthetic)
            printf("  context %d tokens, %d steps, %d KV heads simulated, costs x %d layers\n", (int)P, (int)Sg, kv_model,
                   layers_model);
        else
            printf("  decode NLL: SPRINT %.4f, dense %.4f nats/token (%+.2f%%)\n", nll_sprint, nll_dense,
                   100 * (nll_sprint / nll_dense - 1));
        printf("  kept %.4f of visible keys per head; fetched (group union) %.4f; new keys per step %.2f; "
               "false-prune rate %.3g\n", kept_frac, fetched / visible, newf / R.n, sp_attn_stats_false_prune_rate(&tot));
        printf("  %-8s %12s %12s %12s %14s\n", "design", "us/token", "tokens/s", "uJ/token", "MB read/token");
        for (int k = 0; k < SP_DDESIGN_COUNT; k++)
            printf("  %-8s %12.3f %12.0f %12.4f %14.4f\n", sp_ddesign_name(k), us[k], tps[k], uj[k], mb[k]);
        printf("  SPRINT vs dense: %.2fx faster, %.2fx less energy; vs topk: %.2fx faster, %.2fx less energy\n",
               us[1] / us[0], uj[1] / uj[0], us[2] / us[0], uj[2] / uj[0]);
        printf("  ReRAM array write per step and KV head: %.1f ns, %.1f pJ (%d MSB cells); per token: %.1f ns, %.1f pJ "
               "(%.2f%% of SPRINT time)\n", write_ns_rec, write_pj_rec, d, write_ns_step, write_pj_token,
               100 * write_ns_step * 1e-3 / us[0]);
        printf("  endurance over %.3g tokens: %.3g writes/cell restarting each sequence at column 0, %.3g with columns\n"
               "  used round-robin over %.0f; ReRAM endurance %.0e..%.0e writes/cell (decode.endurance_*); at %.0e and\n"
               "  the SPRINT rate above, the arrays last %.3g days of continuous decoding\n", N, wpc_restart, wpc_ring,
               capacity, c.cfg.decode_endurance_low, c.cfg.decode_endurance_high, c.cfg.decode_endurance_low,
               life_days_low);
    }
    free(R.r);
    return 0;
}
