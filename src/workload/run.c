/* run.c: runs a synthetic preset through the functional operator with the simulator attached
 * (issue 4 item 1): workload.sim_heads heads (layer i mod layers, head (i / layers) mod
 * heads), each generated, run through the op (masks from values) and fed to every design
 * and size; totals scaled by layers*heads/sim_heads. Heads run in parallel over
 * run.threads; each head has its own simulator and results are summed in head order. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sprint/functional.h"
#include "sprint/sim.h"

void openblas_set_num_threads(int num_threads); /* OpenBLAS extension (not in cblas.h) */

typedef struct run_ctx {
    sp_sim_head **slot; /* (layers * heads) */
    int n_heads;
} run_ctx;

static void run_observer(void *user, const sp_query_record *rec) {
    run_ctx *c = user;
    sp_sim_head *h = c->slot[rec->layer * c->n_heads + rec->head];
    SP_ASSERT(h != NULL);
    sp_sim_head_query(h, rec);
}

static int mode_available(const char *mode) {
    size_t n = strlen(mode);
    for (const char *p = SP_ATTN_MODES; *p;) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, mode, n)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

sp_config *sp_sim_op_config(const sp_config *cfg) {
    sp_config *c = sp_xmalloc(1, sizeof *c);
    *c = *cfg;
    c->sprint_mass_lost = 0;
    c->sprint_outputs = 0; /* synthetic heads feed no later layer: pruning results only */
    return c;
}

sp_status sp_sim_mask_op_create(const sp_config *cfg, int n_layers, int n_heads, const sp_model *model,
                                const sp_corpus *calib, int outputs, sp_progress_fn progress, void *progress_user,
                                sp_attn_op **out, char *mask_source, size_t mask_source_size, sp_error *err) {
    *out = NULL;
    if (!strcmp(cfg->workload_mode, "builtin")) {
        *out = sp_relthresh_op_create(n_layers, n_heads, cfg->workload_margin_nats);
        if (mask_source)
            snprintf(mask_source, mask_source_size, "built-in relthresh op (margin %.2f nats)", cfg->workload_margin_nats);
        return SP_OK;
    }
    if (!mode_available(cfg->workload_mode))
        return sp_error_set(err, SP_ERR_CONFIG, "workload.mode='%.40s' is not an attention mode of this build (%.200s|builtin)",
                            cfg->workload_mode, SP_ATTN_MODES);
    sp_config *ocfg = sp_sim_op_config(cfg);
    ocfg->sprint_outputs = outputs ? 1 : 0;
    sp_op_request req = {.mode = cfg->workload_mode, .cfg = ocfg, .model = model, .calib = calib,
                         .progress = progress, .progress_user = progress_user};
    /* with stories: calibrated when the policy needs it; without (synthetic heads): the
     * factory's uncalibrated thresholds (policy.delta_uncalibrated) */
    sp_status st = calib ? sp_attn_op_create_calibrated(&req, n_layers, n_heads, out, NULL, err)
                         : sp_attn_op_create(&req, n_layers, n_heads, out, err);
    free(ocfg);
    if (st != SP_OK) return st;
    if (mask_source) snprintf(mask_source, mask_source_size, "functional op '%.40s'", cfg->workload_mode);
    return SP_OK;
}

void sp_sim_sample_head(const sp_workload *wl, int n_sample, int i, int *layer, int *head) {
    SP_ASSERT(n_sample >= 1 && i >= 0 && i < n_sample);
    /* strided over layers and, independently, over heads: sample i takes layer
     * floor(i * layers / n) and head floor(i * heads / n) + a per-pass offset, so 12 samples of
     * a 12x12 model are the diagonal and 36x20 GPT-2 gets every third layer */
    long l = (long)i * wl->layers / n_sample, hh = (long)i * wl->heads / n_sample;
    if (n_sample > wl->layers) { /* more samples than layers: walk the heads within a layer too */
        l = i % wl->layers;
        hh = ((long)(i / wl->layers) + (long)i * wl->heads / n_sample) % wl->heads;
    }
    *layer = (int)l;
    *head = (int)(hh % wl->heads);
}

sp_status sp_sim_run_synthetic(const sp_config *cfg, const sp_workload *wl, const sp_sim_opts *o, sp_wl_result *out,
                               sp_error *err) {
    double t0 = sp_now_seconds();
    memset(out, 0, sizeof *out);
    out->wl = *wl;
    sp_hw hw[SP_SIZE_COUNT];
    sp_status st = sp_sim_hw(cfg, hw, &out->sizes_mask, err);
    if (st != SP_OK) return st;
    for (int s = 0; s < SP_SIZE_COUNT; s++) {
        if (!(out->sizes_mask & (1u << s))) continue;
        st = sp_hw_check_head(&hw[s], wl->seq, wl->d, err);
        if (st != SP_OK) return sp_error_set(err, st, "workload %s: %s", wl->name, err->msg);
    }
    for (int s = 0; s < SP_SIZE_COUNT; s++) out->corelets[s] = hw[s].corelets;
    out->channels = hw[0].channels;
    out->bw_bytes_per_cycle = hw[0].channels * 2.0 * hw[0].bus_bytes / hw[0].mem_cycle;
    out->chip_ghz = cfg->chip_clock_mhz / 1000.0;
    double need = 3.0 * wl->seq * (double)wl->d * wl->layers * wl->heads;
    if (need > hw[0].capacity_bytes)
        return sp_error_set(err, SP_ERR_CONFIG,
                            "workload %s needs %.0f MiB of main memory for Q, K, V of one sequence, more than memory.capacity_mib=%.0f",
                            wl->name, need / 1048576.0, hw[0].capacity_bytes / 1048576.0);
    int nh = (int)cfg->workload_sim_heads, total = wl->layers * wl->heads;
    if (nh > total)
        return sp_error_set(err, SP_ERR_CONFIG, "workload.sim_heads=%d exceeds the %d heads of %s", nh, total, wl->name);
    out->sim_heads = nh;
    out->scale = (double)total / nh;

    sp_attn_op *op = NULL;
    sp_error oerr = {0};
    if (sp_sim_mask_op_create(cfg, wl->layers, wl->heads, NULL, NULL, 0, NULL, NULL, &op, out->mask_source,
                              sizeof out->mask_source, &oerr) != SP_OK)
        return sp_error_set(err, oerr.status, "workload %s: %s", wl->name, oerr.msg);
    run_ctx ctx = {.slot = sp_xcalloc((size_t)total, sizeof *ctx.slot), .n_heads = wl->heads};
    op->observer = run_observer;
    op->observer_user = &ctx;
    sp_design_result(*per)[SP_SIZE_COUNT][SP_DESIGN_COUNT] = sp_xcalloc((size_t)nh, sizeof *per);
    sp_wl_stats *pst = sp_xcalloc((size_t)nh, sizeof *pst);
    sp_status *hst = sp_xcalloc((size_t)nh, sizeof *hst);
    sp_error *herr = sp_xcalloc((size_t)nh, sizeof *herr);
    int nthreads = o && o->threads > 0 ? o->threads : omp_get_max_threads();
    /* heads run in parallel on run.threads threads; OpenBLAS inside a head stays on its
     * thread (otherwise --threads 1 still burns a second core in OpenBLAS's pool) */
    openblas_set_num_threads(1);
    int done = 0;
    const int n = wl->seq, d = wl->d, nvalid = n - (int)(wl->padding * n + 0.5);
    /* every sampled head has the same shape: the regular designs (baselines, mask-only) are
     * simulated once and shared (sp_sim_head_use_regular; the same bits as per head) */
    const sp_head_shape shape = {.n_k = n, .d = d, .causal = wl->causal, .n_valid = nvalid};
    sp_design_result(*reg)[SP_DESIGN_COUNT] = sp_xcalloc(SP_SIZE_COUNT, sizeof *reg);
    sp_sim_regular_results(hw, out->sizes_mask, &shape, reg);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int i = 0; i < nh; i++) {
        int layer, head;
        sp_sim_sample_head(wl, nh, i, &layer, &head);
        float *q = sp_xmalloc((size_t)n * d, sizeof *q), *k = sp_xmalloc((size_t)n * d, sizeof *k);
        /* the mask op is made with outputs 0 (sp_sim_op_config: sprint.outputs = 0); its outputs
         * go nowhere and its masks do not depend on V, so V is left zero, not drawn (a third
         * or more of the generator's normal draws) */
        float *v = sp_xcalloc((size_t)n * d, sizeof *v), *outb = sp_xmalloc((size_t)n * d, sizeof *outb);
        unsigned char *valid = sp_xmalloc((size_t)n, 1);
        for (int t = 0; t < n; t++) valid[t] = t < nvalid;
        sp_workload_synth_head(cfg, wl, layer, head, q, k, NULL);
        sp_sim_head *sim = sp_sim_head_create(hw, out->sizes_mask, &shape);
        sp_sim_head_use_regular(sim, (const sp_design_result(*)[SP_DESIGN_COUNT])reg);
        ctx.slot[layer * wl->heads + head] = sim;
        sp_attn_head ah = {.layer = layer, .head = head, .kv_head = head, .seq_id = i, .n_q = n, .n_k = n, .d = d,
                           .q = q, .k = k, .v = v, .out = outb, .ldq = d, .ldk = d, .ldv = d, .ldo = d,
                           .causal = wl->causal, .q_offset = 0, .key_valid = valid, .query_valid = valid,
                           .scale = (float)(1.0 / sqrt((double)d))};
        hst[i] = op->run(op, &ah, &herr[i]);
        if (hst[i] == SP_OK) sp_sim_head_finish(sim, out->scale, per[i], &pst[i]);
        sp_sim_head_free(sim);
        free(q), free(k), free(v), free(outb), free(valid);
#pragma omp critical(sp_sim_progress)
        {
            done++;
            if (o && o->progress) o->progress(o->progress_user, "heads", done, nh);
        }
    }
    st = SP_OK;
    for (int i = 0; i < nh; i++) {
        if (hst[i] != SP_OK) {
            if (st == SP_OK) st = sp_error_set(err, hst[i], "workload %s: %s", wl->name, herr[i].msg);
            continue;
        }
        for (int s = 0; s < SP_SIZE_COUNT; s++)
            for (int D = 0; D < SP_DESIGN_COUNT; D++) sp_design_result_add(&out->r[s][D], &per[i][s][D], 1.0);
        const double *a = (const double *)&pst[i];
        double *b = (double *)&out->stats;
        for (size_t k = 0; k < sizeof pst[i] / sizeof(double); k++) b[k] += a[k];
        if (out->n_head_stats < SP_SIM_MAX_HEAD_STATS) { /* the sampled head's own statistics */
            sp_head_stats *hs = &out->head_stats[out->n_head_stats++];
            sp_sim_sample_head(wl, nh, i, &hs->layer, &hs->head);
            hs->st = pst[i];
        } else {
            out->n_head_stats_omitted++;
        }
    }
    /* spread over the sampled heads: standard error of the ratio estimator sum(b)/sum(x) of
     * the speedup and the energy reduction of sprint over baseline-paper (delta method:
     * SE = sqrt(sum (b_i - R x_i)^2 / (n (n - 1))) / mean(x)); 0 with one head */
    for (int s = 0; s < SP_SIZE_COUNT && st == SP_OK; s++) {
        for (int q = 0; q < 2; q++) {
            double sb = 0, sx = 0;
            for (int i = 0; i < nh; i++) {
                sb += q ? per[i][s][SP_DESIGN_BASELINE].energy_pj_total : per[i][s][SP_DESIGN_BASELINE].cycles;
                sx += q ? per[i][s][SP_DESIGN_SPRINT].energy_pj_total : per[i][s][SP_DESIGN_SPRINT].cycles;
            }
            double R = sx > 0 ? sb / sx : 0, ss = 0;
            for (int i = 0; i < nh; i++) {
                double b = q ? per[i][s][SP_DESIGN_BASELINE].energy_pj_total : per[i][s][SP_DESIGN_BASELINE].cycles;
                double x = q ? per[i][s][SP_DESIGN_SPRINT].energy_pj_total : per[i][s][SP_DESIGN_SPRINT].cycles;
                ss += (b - R * x) * (b - R * x);
            }
            double se = nh > 1 && sx > 0 ? sqrt(ss / ((double)nh * (nh - 1))) / (sx / nh) : 0;
            if (q) out->energy_se[s] = se;
            else out->speedup_se[s] = se;
        }
    }
    /* the summed, scaled totals must still be consistent (each head was checked at its finish) */
    for (int s = 0; s < SP_SIZE_COUNT; s++)
        for (int D = 0; D < SP_DESIGN_COUNT; D++) sp_design_result_check(&out->r[s][D]);
    free(reg), free(per), free(pst), free(hst), free(herr), free(ctx.slot);
    sp_attn_op_free(op);
    out->seconds = sp_now_seconds() - t0;
    return st;
}
