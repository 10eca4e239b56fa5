/* report.c: the simulator's outputs (issue 4 item 5): aligned text tables, the reproduction
 * summary beside the paper's printed values, JSON (cJSON) and CSV with units in column names.
 * Library code: writes only to the FILE it is given. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sprint/sim.h"

static double ratio(double a, double b) { return b > 0 ? a / b : NAN; }

sp_ratios sp_result_ratios(const sp_wl_result *w, int size, int design, int baseline) {
    const sp_design_result *b = &w->r[size][baseline ? SP_DESIGN_TILED : SP_DESIGN_BASELINE];
    const sp_design_result *r = &w->r[size][design];
    sp_ratios x;
    x.speedup = ratio(b->cycles, r->cycles);
    x.energy_reduction = ratio(b->energy_pj_total, r->energy_pj_total);
    x.energy_reduction_excl_write =
        ratio(b->energy_pj_total - b->write_once_pj, r->energy_pj_total - r->write_once_pj);
    x.traffic_reduction = b->bytes_read > 0 ? 1.0 - r->bytes_read / b->bytes_read : NAN;
    return x;
}

static double util(double busy, double cycles, double units) { return cycles > 0 ? 100.0 * busy / (cycles * units) : 0; }

static void wl_header(FILE *f, const sp_wl_result *w) {
    const sp_wl_stats *s = &w->stats;
    fprintf(f, "\n== %s: %d layers x %d heads, d=%d, %d tokens, %.0f%% padding%s; %d heads simulated, totals x%.1f\n",
            w->wl.name, w->wl.layers, w->wl.heads, w->wl.d, w->wl.seq, 100 * w->wl.padding,
            w->wl.causal ? ", causal" : "", w->sim_heads, w->scale);
    fprintf(f, "   masks: %s\n", w->mask_source);
    fprintf(f, "   kept %.2f%% of visible pairs (in-memory kept %.2f%%), adjacent-query overlap %.1f%%, "
               "new keys per query %.2f%% of visible (paper: 2.1%%)\n",
            s->pairs_visible > 0 ? 100 * s->pairs_kept / s->pairs_visible : 0,
            s->pairs_visible > 0 ? 100 * s->pairs_mem_kept / s->pairs_visible : 0,
            s->later_kept > 0 ? 100 * s->overlap_pairs / s->later_kept : 0,
            s->later_visible > 0 ? 100 * s->new_pairs / s->later_visible : 0);
}

void sp_report_table(FILE *f, const sp_wl_result *res, int n) {
    for (int w = 0; w < n; w++) {
        const sp_wl_result *x = &res[w];
        wl_header(f, x);
        fprintf(f, "   %-2s %-15s %13s %8s %8s %11s %8s %8s %10s %8s %7s %7s %15s %15s\n", "sz", "design", "cycles",
                "spd_pap", "spd_til", "energy_uJ", "Ered_pap", "Ered_til", "read_MB", "trf_red%", "reuse%",
                "rowhit%", "bnd_t/m/c/l_%", "util_qk/v/bus_%");
        for (int s = 0; s < SP_SIZE_COUNT; s++) {
            if (!(x->sizes_mask & (1u << s))) continue;
            for (int D = 0; D < SP_DESIGN_COUNT; D++) {
                const sp_design_result *r = &x->r[s][D];
                sp_ratios p = sp_result_ratios(x, s, D, 0), t = sp_result_ratios(x, s, D, 1);
                /* Fig. 10: traffic relative to the S baseline for every size (no meaningless
                 * negative reductions where the L baseline reads almost nothing) */
                double b0 = x->r[0][SP_DESIGN_BASELINE].bytes_read;
                if ((x->sizes_mask & 1u) && b0 > 0) p.traffic_reduction = 1.0 - r->bytes_read / b0;
                double bt = r->bound_thr + r->bound_mem + r->bound_comp + r->bound_lat;
                double C = x->corelets[s] > 0 ? x->corelets[s] : 1, ch = x->channels > 0 ? x->channels : 1;
                fprintf(f, "   %-2s %-15s %13.4g %7.2fx %7.2fx %11.4g %7.2fx %7.2fx %10.4g %8.2f %7.1f %7.1f %3.0f/%3.0f/%3.0f/%3.0f %7.0f/%3.0f/%3.0f\n",
                        sp_size_name(s), sp_design_name(D), r->cycles, p.speedup, t.speedup, r->energy_pj_total * 1e-6,
                        p.energy_reduction, t.energy_reduction, r->bytes_read / 1e6, 100 * p.traffic_reduction,
                        r->vec_fetched + r->vec_reused > 0 ? 100 * r->vec_reused / (r->vec_fetched + r->vec_reused) : 0,
                        r->requests > 0 ? 100 * r->row_hits / r->requests : 0, bt > 0 ? 100 * r->bound_thr / bt : 0,
                        bt > 0 ? 100 * r->bound_mem / bt : 0, bt > 0 ? 100 * r->bound_comp / bt : 0,
                        bt > 0 ? 100 * r->bound_lat / bt : 0,
                        util(r->busy_qk, r->cycles, C), util(r->busy_v, r->cycles, C), util(r->busy_bus, r->cycles, ch));
            }
        }
        /* energy breakdown, S size (or the first simulated) */
        int s0 = 0;
        while (s0 < SP_SIZE_COUNT && !(x->sizes_mask & (1u << s0))) s0++;
        if (s0 >= SP_SIZE_COUNT) continue;
        fprintf(f, "   energy breakdown at %s, %% of total (write-once Q/K/V into ReRAM is part of reram_write):\n",
                sp_size_name(s0));
        fprintf(f, "   %-15s", "design");
        int cw[SP_E_COUNT]; /* column widths: the full category names, at least 9 */
        for (int c = 0; c < SP_E_COUNT; c++) {
            cw[c] = (int)strlen(sp_energy_cat_name(c));
            if (cw[c] < 9) cw[c] = 9;
            fprintf(f, " %*s", cw[c], sp_energy_cat_name(c));
        }
        fprintf(f, " %13s\n", "write_once_uJ");
        for (int D = 0; D < SP_DESIGN_COUNT; D++) {
            const sp_design_result *r = &x->r[s0][D];
            fprintf(f, "   %-15s", sp_design_name(D));
            for (int c = 0; c < SP_E_COUNT; c++)
                fprintf(f, " %*.2f", cw[c], r->energy_pj_total > 0 ? 100 * r->energy_pj[c] / r->energy_pj_total : 0);
            fprintf(f, " %13.4g\n", r->write_once_pj * 1e-6);
        }
    }
    fprintf(f, "\n   units: cycles at the accelerator clock; spd = speedup over baseline-paper (pap) / baseline-tiled (til);\n"
               "   Ered = energy reduction (x); trf_red = main-memory read traffic reduction vs the S baseline-paper (Fig. 10;\n"
               "   vs the same size's when S is not simulated);\n"
               "   reuse = K/V vectors served by the residency table; bnd = share of time set by thresholding /\n"
               "   memory bandwidth / compute / exposed latency; util = busy cycles of QK-PU, V-PU (per CORELET) and memory bus (per channel).\n");
}

static void fmt_or_dash(char *buf, double v, const char *fmt) {
    if (isfinite(v)) snprintf(buf, 16, fmt, v);
    else snprintf(buf, 16, "-");
}

static double geo_acc(double *acc, int *cnt, double v) {
    if (v > 0 && isfinite(v)) {
        *acc += log(v);
        (*cnt)++;
    }
    return v;
}

/* One line on what differs from the paper at size sz and the mechanism behind it. */
static void explain(FILE *f, const sp_wl_result *x, const sp_paper_ref *ref, int sz) {
    const sp_design_result *sp = &x->r[sz][SP_DESIGN_SPRINT], *b = &x->r[sz][SP_DESIGN_BASELINE];
    sp_ratios p = sp_result_ratios(x, sz, SP_DESIGN_SPRINT, 0);
    double bt = sp->bound_thr + sp->bound_mem + sp->bound_comp + sp->bound_lat;
    double sh[4] = {sp->bound_thr, sp->bound_mem, sp->bound_comp, sp->bound_lat};
    const char *nm[4] = {"in-memory thresholding (CopyQ + tAxTh rounds + ReadP)", "memory bandwidth",
                         "CORELET compute", "exposed fetch latency"};
    int k = 0;
    for (int i = 1; i < 4; i++)
        if (sh[i] > sh[k]) k = i;
    double kept = x->stats.pairs_visible > 0 ? x->stats.pairs_mem_kept / x->stats.pairs_visible : 0;
    double bb = b->bound_thr + b->bound_mem + b->bound_comp + b->bound_lat;
    fprintf(f, "   %-11s", x->wl.name);
    if (isfinite(ref->speedup[sz])) {
        double dev = p.speedup / ref->speedup[sz] - 1;
        fprintf(f, " speedup %.1fx vs %.1fx (%+.0f%%%s):", p.speedup, ref->speedup[sz], 100 * dev,
                fabs(dev) <= 0.25 ? ", within 25%" : "");
    } else {
        fprintf(f, " speedup %.1fx (no paper value):", p.speedup);
    }
    if (b->vec_fetched <= 2.0 * b->queries + 0.5) /* every K/V fetched at most once */
        fprintf(f, " the baseline's K/V fit its buffer (fetched once), so only compute and thresholding differ;");
    else
        fprintf(f, " baseline streams 2x%d B per key per query and is %.0f%% memory-bound;", x->wl.d,
                bb > 0 ? 100 * (b->bound_mem + b->bound_lat) / bb : 0);
    fprintf(f, " SPRINT keeps %.1f%% in memory and is bound by %s (%.0f%%)", 100 * kept, nm[k],
            bt > 0 ? 100 * sh[k] / bt : 0);
    if (sp->busy_pv > 0) /* the CORELETs' time on pruning vectors against QK on the kept keys */
        fprintf(f, ", its CORELETs spending %.0f%% of their busy time on pruning vectors (address generation)",
                100 * sp->busy_pv / (sp->busy_pv + sp->busy_qk));
    if (sp->bytes_read > b->bytes_read) {
        /* what SPRINT reads beyond Q and the K/V vectors it fetched: the pruning vectors (ReadP) */
        double d = x->wl.d, qkv = d * (sp->queries + sp->vec_fetched), pv = sp->bytes_read - qkv;
        fprintf(f, "; traffic %+.0f%%: SPRINT fetches %.0f K/V vectors against the baseline's %.0f (no re-fetch), "
                   "but the L-bit pruning vector read per query (ReadP, %.0f B per query on average against %.0f B "
                   "per vector) is %.0f%% of its bytes",
                100 * (sp->bytes_read / b->bytes_read - 1), sp->vec_fetched, b->vec_fetched,
                sp->queries > 0 ? pv / sp->queries : 0, d, sp->bytes_read > 0 ? 100 * pv / sp->bytes_read : 0);
    }
    if (isfinite(ref->energy_ratio)) /* the paper's energy ratio is the M figure (paper notes 5.3) */
        fprintf(f, "; energy at %s %.1fx (paper at M %.1fx): ReRAM reads are %.0f%% of our baseline's energy (paper ~45-67%%); "
                   "%.1fx without writing Q/K/V once, a write that is %.0f%% of SPRINT's energy",
                sp_size_name(sz), p.energy_reduction, ref->energy_ratio,
                b->energy_pj_total > 0 ? 100 * b->energy_pj[SP_E_RERAM_READ] / b->energy_pj_total : 0,
                p.energy_reduction_excl_write,
                sp->energy_pj_total > 0 ? 100 * sp->write_once_pj / sp->energy_pj_total : 0);
    fprintf(f, "\n");
}

void sp_report_paper(FILE *f, const sp_wl_result *res, int n) {
    fprintf(f, "\n== Reproduction summary beside the paper (speedup and energy over the iso-buffer baseline;\n"
               "   paper values: Fig. 11 speedups, energy-figure ratios, Fig. 10 traffic reductions; traffic is\n"
               "   main-memory bytes read, relative to the S baseline-paper as in Fig. 10)\n");
    fprintf(f, "   %-12s %-4s %19s %9s %23s %19s %19s\n", "workload", "size", "speedup ours/paper", "vs_tiled",
                "energy_red ours/paper", "traffic_red% ours/pap", "mask-only% ours/pap");
    for (int s = 0; s < SP_SIZE_COUNT; s++) {
        double gs = 0, gt = 0, ge = 0, ar = 0, am = 0;
        int ns = 0, nt = 0, ne = 0, na = 0;
        for (int w = 0; w < n; w++) {
            const sp_wl_result *x = &res[w];
            if (!(x->sizes_mask & (1u << s))) continue;
            sp_paper_ref ref;
            sp_paper_lookup(x->wl.name, &ref);
            sp_ratios p = sp_result_ratios(x, s, SP_DESIGN_SPRINT, 0), t = sp_result_ratios(x, s, SP_DESIGN_SPRINT, 1);
            sp_ratios m = sp_result_ratios(x, s, SP_DESIGN_MASK_ONLY, 0);
            /* Fig. 10 normalises every size to the S-Baseline */
            if (x->sizes_mask & 1u) {
                double b0 = x->r[0][SP_DESIGN_BASELINE].bytes_read;
                p.traffic_reduction = b0 > 0 ? 1 - x->r[s][SP_DESIGN_SPRINT].bytes_read / b0 : NAN;
                m.traffic_reduction = b0 > 0 ? 1 - x->r[s][SP_DESIGN_MASK_ONLY].bytes_read / b0 : NAN;
            }
            if (x->wl.synthetic) {
                geo_acc(&gs, &ns, p.speedup);
                geo_acc(&gt, &nt, t.speedup);
                geo_acc(&ge, &ne, p.energy_reduction);
                ar += p.traffic_reduction;
                am += m.traffic_reduction;
                na++;
            }
            char a[4][16];
            fmt_or_dash(a[0], ref.speedup[s], "%6.2fx");
            fmt_or_dash(a[1], s == 1 ? ref.energy_ratio : NAN, "%8.2fx");
            fmt_or_dash(a[2], ref.traffic_sprint[s], "%8.1f");
            fmt_or_dash(a[3], ref.traffic_mask[s], "%8.1f");
            fprintf(f, "   %-12s %-4s %9.2fx/%7s %8.2fx %11.2fx/%9s %9.1f/%8s %9.1f/%8s\n", x->wl.name, sp_size_name(s),
                    p.speedup, a[0], t.speedup, p.energy_reduction, a[1], 100 * p.traffic_reduction, a[2],
                    100 * m.traffic_reduction, a[3]);
        }
        if (ns > 0) {
            sp_paper_ref g;
            sp_paper_lookup("geomean", &g);
            fprintf(f, "   %-12s %-4s %9.2fx/%6.2fx %8.2fx %11.2fx/%9s %9.1f/%8.1f %9.1f/%8.1f   (presets only)\n",
                    "geomean", sp_size_name(s), exp(gs / ns), g.speedup[s], nt ? exp(gt / nt) : NAN,
                    ne ? exp(ge / ne) : NAN, s == 1 ? "16.9x" : "-", 100 * ar / na, g.traffic_sprint[s],
                    100 * am / na, g.traffic_mask[s]);
        }
    }
    fprintf(f, "   (paper energy ratios are the energy figure's, most likely M (paper notes 5.3), shown here beside\n"
               "    every size; the abstract's 19.6x is an S figure; write-once Q/K/V included.)\n");
    sp_report_realism(f, res, n);
}

/* Range and unweighted mean over the recorded (layer, head)s of a per-head fraction num/den
 * (which: 0 kept, 1 in-memory kept); NAN without per-head statistics. */
static void head_range(const sp_wl_result *w, int which, double *mn, double *mx, double *mean) {
    *mn = *mx = *mean = NAN;
    int k = 0;
    double sum = 0;
    for (int i = 0; i < w->n_head_stats; i++) {
        const sp_wl_stats *s = &w->head_stats[i].st;
        if (!(s->pairs_visible > 0)) continue;
        double v = (which ? s->pairs_mem_kept : s->pairs_kept) / s->pairs_visible;
        if (!k || v < *mn) *mn = v;
        if (!k || v > *mx) *mx = v;
        sum += v, k++;
    }
    if (k) *mean = sum / k;
}

static double spread_mean(const sp_wl_stats *s) { return s->spread_queries > 0 ? s->spread_sum / s->spread_queries : NAN; }

void sp_report_realism(FILE *f, const sp_wl_result *res, int n) {
    fprintf(f, "\n   Workload realism: synthetic presets beside the real models' traces (masks from the functional op;\n"
               "   kept = %% of visible pairs over all heads [min-max over the heads: every head of a real model,\n"
               "   the sampled heads of a preset]; spread = mean over queries of the std of q.k/sqrt(d) over the\n"
               "   visible keys, nats)\n");
    fprintf(f, "   %-12s %20s %20s %13s %15s %10s %8s\n", "workload", "kept_% [heads]", "inmem_kept_% [heads]",
            "adj_overlap_%", "new_per_query_%", "spread_nat", "tokens");
    for (int w = 0; w < n; w++) {
        const sp_wl_stats *st = &res[w].stats;
        double r[2][3];
        char cell[2][48];
        for (int k = 0; k < 2; k++) {
            head_range(&res[w], k, &r[k][0], &r[k][1], &r[k][2]);
            double pooled = st->pairs_visible > 0 ? 100 * (k ? st->pairs_mem_kept : st->pairs_kept) / st->pairs_visible : 0;
            if (isnan(r[k][0])) snprintf(cell[k], sizeof cell[k], "%6.2f [    -    ]", pooled);
            else snprintf(cell[k], sizeof cell[k], "%6.2f [%4.1f-%4.1f]", pooled, 100 * r[k][0], 100 * r[k][1]);
        }
        double sp = spread_mean(st);
        char spc[24];
        if (isnan(sp)) snprintf(spc, sizeof spc, "-");
        else snprintf(spc, sizeof spc, "%.2f", sp);
        fprintf(f, "   %-12s %20s %20s %13.1f %15.2f %10s %8d%s\n", res[w].wl.name, cell[0], cell[1],
                st->later_kept > 0 ? 100 * st->overlap_pairs / st->later_kept : 0,
                st->later_visible > 0 ? 100 * st->new_pairs / st->later_visible : 0, spc, res[w].wl.seq,
                res[w].wl.synthetic ? "" : "  (real model, mean story length)");
    }
    fprintf(f, "   (paper: 2.1%% of the sequence newly fetched per adjacent query, section 2.4)\n");
    for (int w = 0; w < n; w++) {
        if (res[w].wl.synthetic) continue;
        int s0 = 0;
        while (s0 < SP_SIZE_COUNT - 1 && !(res[w].sizes_mask & (1u << s0))) s0++;
        const sp_design_result *sp = &res[w].r[s0][SP_DESIGN_SPRINT];
        fprintf(f, "   %s traffic at %s: SPRINT reads %.3g MB, of which the pruning vectors (ReadP, %d-token stories) are %.0f%%\n",
                res[w].wl.name, sp_size_name(s0), sp->bytes_read / 1e6, res[w].wl.seq,
                sp->bytes_read > 0 ? 100 * sp->bytes_readp / sp->bytes_read : 0);
    }
    /* at S, or at the smallest simulated size when S was not simulated */
    int sz = 0;
    while (n > 0 && sz < SP_SIZE_COUNT - 1 && !(res[0].sizes_mask & (1u << sz))) sz++;
    fprintf(f, "\n   What differs and why (%s size):\n", sp_size_name(sz));
    for (int w = 0; w < n; w++) {
        if (!(res[w].sizes_mask & (1u << sz))) continue;
        sp_paper_ref ref;
        sp_paper_lookup(res[w].wl.name, &ref);
        explain(f, &res[w], &ref, sz);
    }
}

static cJSON *result_json(const sp_design_result *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "cycles", r->cycles);
    cJSON_AddNumberToObject(o, "energy_pj", r->energy_pj_total);
    cJSON *e = cJSON_AddObjectToObject(o, "energy_breakdown_pj");
    for (int c = 0; c < SP_E_COUNT; c++) cJSON_AddNumberToObject(e, sp_energy_cat_name(c), r->energy_pj[c]);
    char key[64];
    for (int c = 0; c < SP_E_COUNT; c++) { /* the same, flat (the CSV's columns) */
        snprintf(key, sizeof key, "%s_pj", sp_energy_cat_name(c));
        cJSON_AddNumberToObject(o, key, r->energy_pj[c]);
    }
    cJSON_AddNumberToObject(o, "write_once_pj", r->write_once_pj);
    cJSON_AddNumberToObject(o, "traffic_bytes", r->bytes_read);
    cJSON_AddNumberToObject(o, "bytes_read", r->bytes_read);
    cJSON_AddNumberToObject(o, "bytes_written", r->bytes_written);
    cJSON_AddNumberToObject(o, "bytes_pruning_vectors", r->bytes_readp);
    cJSON_AddNumberToObject(o, "busy_pv_cycles", r->busy_pv);
    cJSON_AddNumberToObject(o, "requests", r->requests);
    cJSON_AddNumberToObject(o, "row_hits", r->row_hits);
    cJSON_AddNumberToObject(o, "row_misses", r->row_misses);
    cJSON_AddNumberToObject(o, "row_conflicts", r->row_conflicts);
    cJSON_AddNumberToObject(o, "vectors_fetched", r->vec_fetched);
    cJSON_AddNumberToObject(o, "vectors_reused", r->vec_reused);
    cJSON_AddNumberToObject(o, "queries", r->queries);
    cJSON_AddNumberToObject(o, "busy_qk_cycles", r->busy_qk);
    cJSON_AddNumberToObject(o, "busy_v_cycles", r->busy_v);
    cJSON_AddNumberToObject(o, "busy_softmax_cycles", r->busy_sm);
    cJSON_AddNumberToObject(o, "busy_bus_cycles", r->busy_bus);
    cJSON_AddNumberToObject(o, "busy_threshold_cycles", r->busy_thr);
    cJSON_AddNumberToObject(o, "bound_threshold_cycles", r->bound_thr);
    cJSON_AddNumberToObject(o, "bound_memory_cycles", r->bound_mem);
    cJSON_AddNumberToObject(o, "bound_compute_cycles", r->bound_comp);
    cJSON_AddNumberToObject(o, "bound_latency_cycles", r->bound_lat);
    return o;
}

static void num(cJSON *o, const char *k, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

/* One "results" entry: a design at a size, with its ratios against one baseline (b = 0: paper,
 * 1: tiled). The JSON report and the CSV (one row per entry) are both made from it, so every
 * CSV column is a JSON key (issue 10). */
static cJSON *result_entry(const sp_wl_result *x, int sz, int D, int b) {
    cJSON *e = result_json(&x->r[sz][D]);
    sp_ratios r = sp_result_ratios(x, sz, D, b);
    cJSON_AddStringToObject(e, "workload", x->wl.name);
    cJSON_AddStringToObject(e, "size", sp_size_name(sz));
    cJSON_AddStringToObject(e, "design", sp_design_name(D));
    cJSON_AddStringToObject(e, "baseline", b ? "tiled" : "paper");
    num(e, "speedup", r.speedup);
    num(e, "energy_reduction", r.energy_reduction);
    num(e, "energy_reduction_excl_write", r.energy_reduction_excl_write);
    num(e, "traffic_reduction", r.traffic_reduction);
    /* Fig. 10: remaining traffic relative to the S baseline of the same dataflow */
    double b0 = x->r[0][b ? SP_DESIGN_TILED : SP_DESIGN_BASELINE].bytes_read;
    num(e, "traffic_left_vs_s_baseline", (x->sizes_mask & 1u) && b0 > 0 ? x->r[sz][D].bytes_read / b0 : NAN);
    return e;
}

sp_status sp_report_json(FILE *f, const sp_wl_result *res, int n, sp_error *err) {
    cJSON *root = cJSON_CreateObject();
    cJSON *wls = cJSON_AddArrayToObject(root, "workloads");
    cJSON *arr = cJSON_AddArrayToObject(root, "results");
    for (int w = 0; w < n; w++) {
        const sp_wl_result *x = &res[w];
        const sp_wl_stats *s = &x->stats;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "workload", x->wl.name);
        cJSON_AddNumberToObject(o, "layers", x->wl.layers);
        cJSON_AddNumberToObject(o, "heads", x->wl.heads);
        cJSON_AddNumberToObject(o, "d", x->wl.d);
        cJSON_AddNumberToObject(o, "seq", x->wl.seq);
        cJSON_AddNumberToObject(o, "padding", x->wl.padding);
        cJSON_AddBoolToObject(o, "causal", x->wl.causal);
        cJSON_AddBoolToObject(o, "synthetic", x->wl.synthetic);
        cJSON_AddNumberToObject(o, "sim_heads", x->sim_heads);
        cJSON_AddNumberToObject(o, "scale", x->scale);
        cJSON_AddStringToObject(o, "mask_source", x->mask_source);
        num(o, "kept_fraction", s->pairs_visible > 0 ? s->pairs_kept / s->pairs_visible : NAN);
        num(o, "mem_kept_fraction", s->pairs_visible > 0 ? s->pairs_mem_kept / s->pairs_visible : NAN);
        num(o, "adjacent_overlap", s->later_kept > 0 ? s->overlap_pairs / s->later_kept : NAN);
        num(o, "new_fetch_fraction", s->later_visible > 0 ? s->new_pairs / s->later_visible : NAN);
        num(o, "score_spread_nats", spread_mean(s));
        {
            double r[2][3];
            for (int k = 0; k < 2; k++) head_range(x, k, &r[k][0], &r[k][1], &r[k][2]);
            num(o, "kept_fraction_head_min", r[0][0]);
            num(o, "kept_fraction_head_max", r[0][1]);
            num(o, "kept_fraction_head_mean", r[0][2]);
            num(o, "mem_kept_fraction_head_min", r[1][0]);
            num(o, "mem_kept_fraction_head_max", r[1][1]);
            num(o, "mem_kept_fraction_head_mean", r[1][2]);
            /* one entry per recorded (layer, head): every head of a real model */
            cJSON *ph = cJSON_AddArrayToObject(o, "per_head");
            for (int i = 0; i < x->n_head_stats; i++) {
                const sp_head_stats *hs = &x->head_stats[i];
                const sp_wl_stats *t = &hs->st;
                cJSON *e = cJSON_CreateObject();
                cJSON_AddNumberToObject(e, "layer", hs->layer);
                cJSON_AddNumberToObject(e, "head", hs->head);
                cJSON_AddNumberToObject(e, "queries", t->queries);
                num(e, "kept_fraction", t->pairs_visible > 0 ? t->pairs_kept / t->pairs_visible : NAN);
                num(e, "mem_kept_fraction", t->pairs_visible > 0 ? t->pairs_mem_kept / t->pairs_visible : NAN);
                num(e, "adjacent_overlap", t->later_kept > 0 ? t->overlap_pairs / t->later_kept : NAN);
                num(e, "new_fetch_fraction", t->later_visible > 0 ? t->new_pairs / t->later_visible : NAN);
                num(e, "score_spread_nats", spread_mean(t));
                cJSON_AddItemToArray(ph, e);
            }
            /* heads past the list's capacity are in every total but not listed: say how many */
            cJSON_AddNumberToObject(o, "per_head_omitted", x->n_head_stats_omitted);
        }
        cJSON_AddNumberToObject(o, "seconds", x->seconds);
        cJSON *se = cJSON_AddObjectToObject(o, "speedup_se");
        cJSON *ee = cJSON_AddObjectToObject(o, "energy_reduction_se");
        for (int sz = 0; sz < SP_SIZE_COUNT; sz++)
            if (x->sizes_mask & (1u << sz)) {
                cJSON_AddNumberToObject(se, sp_size_name(sz), x->speedup_se[sz]);
                cJSON_AddNumberToObject(ee, sp_size_name(sz), x->energy_se[sz]);
            }
        cJSON_AddNumberToObject(o, "memory_bandwidth_gbs", x->bw_bytes_per_cycle * x->chip_ghz);
        cJSON_AddItemToArray(wls, o);
        for (int sz = 0; sz < SP_SIZE_COUNT; sz++) {
            if (!(x->sizes_mask & (1u << sz))) continue;
            for (int D = 0; D < SP_DESIGN_COUNT; D++)
                for (int b = 0; b < 2; b++) cJSON_AddItemToArray(arr, result_entry(x, sz, D, b));
        }
    }
    char *txt = cJSON_Print(root);
    cJSON_Delete(root);
    if (!txt) return sp_error_set(err, SP_ERR_NOMEM, "cannot format JSON");
    fputs(txt, f);
    fputc('\n', f);
    free(txt);
    return SP_OK;
}

sp_status sp_report_csv(const char *path, const sp_wl_result *res, int n, sp_error *err) {
    /* one row per JSON "results" entry, its scalar keys as columns (units in the names: _pj,
     * _cycles, _bytes, fractions), then the workload's statistics under their JSON keys */
    static const char *const WL_KEYS[] = {"kept_fraction", "mem_kept_fraction", "adjacent_overlap", "new_fetch_fraction",
                                          "score_spread_nats"};
    sp_outfile *of;
    sp_status st = sp_outfile_open(path, &of, err); /* complete or absent */
    if (st != SP_OK) return st;
    FILE *f = sp_outfile_stream(of);
    int header = 0;
    for (int w = 0; w < n; w++) {
        const sp_wl_result *x = &res[w];
        const sp_wl_stats *s = &x->stats;
        double wl[5] = {s->pairs_visible > 0 ? s->pairs_kept / s->pairs_visible : NAN,
                        s->pairs_visible > 0 ? s->pairs_mem_kept / s->pairs_visible : NAN,
                        s->later_kept > 0 ? s->overlap_pairs / s->later_kept : NAN,
                        s->later_visible > 0 ? s->new_pairs / s->later_visible : NAN, spread_mean(s)};
        for (int sz = 0; sz < SP_SIZE_COUNT; sz++) {
            if (!(x->sizes_mask & (1u << sz))) continue;
            for (int D = 0; D < SP_DESIGN_COUNT; D++)
                for (int b = 0; b < 2; b++) {
                    cJSON *e = result_entry(x, sz, D, b);
                    if (!header) {
                        int k = 0;
                        for (cJSON *it = e->child; it; it = it->next)
                            if (!cJSON_IsObject(it)) fprintf(f, "%s%s", k++ ? "," : "", it->string);
                        for (size_t j = 0; j < sizeof WL_KEYS / sizeof WL_KEYS[0]; j++) fprintf(f, ",%s", WL_KEYS[j]);
                        fputc('\n', f);
                        header = 1;
                    }
                    int k = 0;
                    for (cJSON *it = e->child; it; it = it->next) {
                        if (cJSON_IsObject(it)) continue;
                        if (k++) fputc(',', f);
                        if (cJSON_IsString(it)) fputs(it->valuestring, f);
                        else if (cJSON_IsNumber(it)) fprintf(f, "%.17g", it->valuedouble);
                        /* null (a ratio with no baseline): an empty field */
                    }
                    for (size_t j = 0; j < sizeof WL_KEYS / sizeof WL_KEYS[0]; j++)
                        if (isfinite(wl[j])) fprintf(f, ",%.6g", wl[j]);
                        else fputc(',', f);
                    fputc('\n', f);
                    cJSON_Delete(e);
                }
        }
    }
    return sp_outfile_commit(of, err);
}
