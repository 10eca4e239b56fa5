/* trace.c: real-model traces (issue 4 item 1a): the shared model evaluated on text with the
 * functional operator and the simulator's observer attached to every layer and head. The
 * simulator sees only the sp_query_record stream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sprint/functional.h"
#include "sprint/sim.h"

sp_status sp_sim_run_model(const sp_config *cfg, const sp_model *m, const sp_corpus *corpus, const sp_sim_opts *o,
                           sp_wl_result *out, sp_error *err) {
    double t0 = sp_now_seconds();
    memset(out, 0, sizeof *out);
    const sp_model_info *mi = sp_model_get_info(m);
    /* the workload is named after the checkpoint file (stories260K, bitnet-3M, ...) */
    const char *base = strrchr(cfg->model_checkpoint, '/');
    base = base ? base + 1 : cfg->model_checkpoint;
    size_t bl = strlen(base);
    if (bl > 4 && !strcmp(base + bl - 4, ".bin")) bl -= 4;
    if (!bl) base = "stories260K", bl = strlen(base);
    snprintf(out->wl.name, sizeof out->wl.name, "%.*s", (int)(bl < sizeof out->wl.name - 1 ? bl : sizeof out->wl.name - 1),
             base);
    out->wl.layers = mi->n_layers;
    out->wl.heads = mi->n_heads;
    out->wl.d = mi->head_dim;
    out->wl.causal = 1;
    out->wl.seq = mi->seq_len;
    out->wl.synthetic = 0;
    sp_hw hw[SP_SIZE_COUNT];
    sp_status st = sp_sim_hw(cfg, hw, &out->sizes_mask, err);
    if (st != SP_OK) return st;
    for (int s = 0; s < SP_SIZE_COUNT; s++) {
        if (!(out->sizes_mask & (1u << s))) continue;
        int minlen = corpus->n > 0 ? corpus->len[0] : 1;
        for (int i = 0; i < corpus->n; i++)
            if (corpus->len[i] < minlen) minlen = corpus->len[i];
        st = sp_hw_check_head(&hw[s], minlen, mi->head_dim, err);
        if (st != SP_OK) return sp_error_set(err, st, "real-model traces: %s", err->msg);
    }
    for (int s = 0; s < SP_SIZE_COUNT; s++) out->corelets[s] = hw[s].corelets;
    out->channels = hw[0].channels;
    out->bw_bytes_per_cycle = hw[0].channels * 2.0 * hw[0].bus_bytes / hw[0].mem_cycle;
    out->chip_ghz = cfg->chip_clock_mhz / 1000.0;
    sp_attn_op *op = NULL;
    sp_error oerr = {0};
    /* the model's next layer needs the outputs; thresholds calibrated on o->calib (held-out
     * stories), else on the traced stories */
    const sp_corpus *calib = o && o->calib ? o->calib : corpus;
    if (sp_sim_mask_op_create(cfg, mi->n_layers, mi->n_heads, m, calib, 1, o ? o->progress : NULL,
                              o ? o->progress_user : NULL, &op, out->mask_source, sizeof out->mask_source, &oerr) != SP_OK)
        return sp_error_set(err, oerr.status, "real-model traces: %s", oerr.msg);
    sp_sim_observer *obs = sp_sim_observer_create(hw, out->sizes_mask, mi->n_layers, mi->n_heads, mi->head_dim, 1);
    op->observer = sp_sim_observer_fn;
    op->observer_user = obs;
    sp_eval_opts eo = {.window = (int)cfg->eval_window, .threads = o ? o->threads : 0,
                       .progress = o ? o->progress : NULL, .progress_user = o ? o->progress_user : NULL};
    sp_eval_result er;
    st = sp_eval_corpus(m, corpus, op, &eo, &er, err);
    if (st == SP_OK) {
        int nhs = mi->n_layers * mi->n_heads;
        sp_wl_stats *per = sp_xcalloc((size_t)nhs, sizeof *per);
        sp_sim_observer_finish_heads(obs, 1.0, out->r, &out->stats, per);
        /* every (layer, head) of the model (the first SP_SIM_MAX_HEAD_STATS) */
        for (int i = 0; i < nhs; i++) {
            if (out->n_head_stats == SP_SIM_MAX_HEAD_STATS) {
                out->n_head_stats_omitted++;
                continue;
            }
            sp_head_stats *hs = &out->head_stats[out->n_head_stats++];
            hs->layer = i / mi->n_heads, hs->head = i % mi->n_heads, hs->st = per[i];
        }
        free(per);
        for (int s = 0; s < SP_SIZE_COUNT; s++)
            for (int D = 0; D < SP_DESIGN_COUNT; D++) sp_design_result_check(&out->r[s][D]);
        out->sim_heads = (int)sp_sim_observer_instances(obs); /* windows x layers x heads */
        out->scale = 1.0;
        /* the sequence length reported is the mean story length */
        long tot = 0;
        for (int i = 0; i < corpus->n; i++) tot += corpus->len[i];
        out->wl.seq = corpus->n > 0 ? (int)(tot / corpus->n) : 0;
    }
    sp_sim_observer_free(obs);
    sp_attn_op_free(op);
    out->seconds = sp_now_seconds() - t0;
    return st;
}

sp_status sp_sim_trace_split(const sp_corpus *all, int n_trace, int split, sp_corpus *calib, sp_corpus *traced,
                             sp_error *err) {
    memset(calib, 0, sizeof *calib);
    memset(traced, 0, sizeof *traced);
    if (n_trace < 1) return sp_error_set(err, SP_ERR_ARG, "traces need at least 1 story, got %d", n_trace);
    if (split && all->n < 2)
        return sp_error_set(err, SP_ERR_ARG,
                            "the text has %d story: cannot calibrate on one half of the stories and trace the other",
                            all->n);
    int from = split ? all->n / 2 : 0;
    int to = all->n - from > n_trace ? from + n_trace : all->n;
    sp_status st = sp_corpus_slice(all, from, to, traced, err);
    if (st == SP_OK && split) st = sp_corpus_slice(all, 0, from > n_trace ? n_trace : from, calib, err);
    if (st != SP_OK) {
        sp_corpus_free(traced);
        sp_corpus_free(calib);
    }
    return st;
}
