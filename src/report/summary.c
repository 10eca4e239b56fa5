/* summary.c: the first thing `sprint run` prints (issue 7 item 7): the reproduction table (per
 * workload speedup S/M/L, main-memory traffic left S/M/L as in Fig. 10, energy reduction at M
 * as in the energy figure; ours beside the paper, fitted points marked, standard errors over
 * the sampled heads), the counts within 25% (predictions apart from fitted points), then the
 * preset and every key that differs from the reproduction preset.
 * Library code: writes only to the FILE it is given. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sprint/sim.h"

/* Keys that choose what is run or how it is shown, not the model: changing them keeps the
 * configuration the one the paper column is compared against. */
static int key_is_presentation(const sp_config_key *k) {
    static const char *const sec[] = {"run", "model", "eval", "sim"};
    for (size_t i = 0; i < sizeof sec / sizeof sec[0]; i++)
        if (!strcmp(k->section, sec[i])) return 1;
    if (!strcmp(k->section, "workload") && (!strcmp(k->name, "suite") || !strcmp(k->name, "sim_heads"))) return 1;
    if (!strcmp(k->section, "chip") && !strcmp(k->name, "sizes")) return 1;
    return 0;
}

int sp_report_config_diff(const sp_config *cfg, char *buf, size_t n) {
    sp_config def;
    sp_config_defaults(&def);
    size_t nk, used = 0;
    const sp_config_key *keys = sp_config_keys(&nk);
    int model_changed = 0;
    if (n) buf[0] = 0;
    for (size_t i = 0; i < nk; i++) {
        char a[300], b[300];
        sp_config_value_text(cfg, &keys[i], a, sizeof a);
        sp_config_value_text(&def, &keys[i], b, sizeof b);
        if (!strcmp(a, b)) continue;
        if (!key_is_presentation(&keys[i])) model_changed = 1;
        /* the model and text paths are filled in by the CLI (empty default = the shared files) */
        if (!strcmp(keys[i].section, "model") || !strcmp(keys[i].section, "eval")) continue;
        if (used + 1 < n) {
            int w = snprintf(buf + used, n - used, "%s%s.%s=%s", used ? ", " : "", keys[i].section, keys[i].name, a);
            if (w > 0) used += (size_t)w < n - used ? (size_t)w : n - used - 1;
        }
    }
    return model_changed;
}

/* Fig. 10 remaining traffic (%, relative to the S baseline) of design D at size s. */
static double left_pct(const sp_wl_result *x, int s, int D) {
    double b0 = x->r[0][SP_DESIGN_BASELINE].bytes_read;
    if (!(x->sizes_mask & 1u) || b0 <= 0) return NAN;
    return 100.0 * x->r[s][D].bytes_read / b0;
}

typedef struct tally {
    int pred_in, pred_n, fit_in, fit_n;
} tally;

static void count(tally *t, double ours, double paper, int fitted) {
    if (!isfinite(ours) || !isfinite(paper) || paper <= 0) return;
    int in = fabs(ours / paper - 1) <= 0.25;
    if (fitted) t->fit_n++, t->fit_in += in;
    else t->pred_n++, t->pred_in += in;
}

/* "ours/paper" cell with a fitted mark and, for speedups, the standard error. */
static void cell(char *buf, size_t n, double ours, double se, double paper, int fitted, int show_paper, const char *unit) {
    char o[32], p[24] = "";
    if (!isfinite(ours)) snprintf(o, sizeof o, "-");
    else if (se > 0) snprintf(o, sizeof o, "%.2f±%.2f%s", ours, se, unit);
    else snprintf(o, sizeof o, "%.2f%s", ours, unit);
    if (show_paper && isfinite(paper)) snprintf(p, sizeof p, "/%.*f", paper < 10 && *unit ? 2 : 1, paper);
    else if (show_paper) snprintf(p, sizeof p, "/-");
    snprintf(buf, n, "%s%s%s", o, p, fitted && show_paper ? "*" : "");
}

/* Whether a paper bar was fitted (the constants table of docs/simulator.md): the S traffic of
 * every preset (density, workload.*_temperature) and the Synth-2 S speedup (chip.pv_bits_per_cycle). */
static int fitted_speedup(const char *wl, int s) { return s == 0 && !strcmp(wl, "Synth-2"); }
static int fitted_traffic(int s) { return s == 0; }

void sp_report_summary(FILE *f, const sp_wl_result *res, int n, const sp_config *cfg, const char *preset) {
    char diff[4096];
    int changed = sp_report_config_diff(cfg, diff, sizeof diff);
    int show = !changed; /* the paper column only for the configuration it is compared against */
    /* the memory of the run (the same for every workload); the head sample of the presets */
    double bw = n > 0 ? res[0].bw_bytes_per_cycle : 0, ghz = n > 0 ? res[0].chip_ghz : 1;
    int heads = 0, presets = 0;
    for (int w = 0; w < n; w++)
        if (res[w].wl.synthetic) {
            heads = res[w].sim_heads, presets = 1;
            break;
        }
    fprintf(f, "== sprint run: preset %s%s\n", preset,
            changed ? " with changed keys (NOT the paper-reproduction configuration: paper values omitted)" : "");
    fprintf(f, "   keys differing from the reproduction defaults: %s\n", diff[0] ? diff : "none");
    fprintf(f, "   memory: %.1f GB/s effective (%d channels); ", bw * ghz,
            cfg->memory_channels > 0 ? (int)cfg->memory_channels : 0);
    if (presets) fprintf(f, "%d heads simulated per preset, strided over layers and heads\n", heads);
    else fprintf(f, "no preset in this run (real models and tensor sets: every head)\n");
    fprintf(f, "\n== Reproduction table: SPRINT over the iso-buffer baseline%s\n",
            show ? " (ours/paper; * = fitted to this bar, see docs/simulator.md \"Fitted constants\")" : "");
    fprintf(f, "   speedup: Fig. 11, ±standard error over the sampled heads; traffic left: main-memory bytes read, %% of the\n"
               "   S baseline (Fig. 10); energy: reduction at M (energy figure, most likely M: paper notes 5.3)\n");
    fprintf(f, "   %-11s %-20s %-20s %-20s | %-12s %-12s %-12s | %-18s\n", "workload", "speedup S", "speedup M", "speedup L",
            "traffic% S", "traffic% M", "traffic% L", "energy red. M");
    tally ts[3] = {{0}}, tt[3] = {{0}}, te = {0};
    double gs[3] = {0}, ge = 0;
    int ngs[3] = {0}, nge = 0;
    for (int w = 0; w < n; w++) {
        const sp_wl_result *x = &res[w];
        sp_paper_ref ref;
        sp_paper_lookup(x->wl.name, &ref);
        char c[7][64];
        for (int s = 0; s < SP_SIZE_COUNT; s++) {
            int on = x->sizes_mask & (1u << s);
            sp_ratios r = sp_result_ratios(x, s, SP_DESIGN_SPRINT, 0);
            double sp = on ? r.speedup : NAN, left = on ? left_pct(x, s, SP_DESIGN_SPRINT) : NAN;
            cell(c[s], sizeof c[s], sp, on ? x->speedup_se[s] : 0, ref.speedup[s], fitted_speedup(x->wl.name, s), show, "x");
            cell(c[3 + s], sizeof c[3 + s], left, 0, 100 - ref.traffic_sprint[s], fitted_traffic(s) && x->wl.synthetic,
                 show, "");
            if (x->wl.synthetic && on) {
                count(&ts[s], sp, ref.speedup[s], fitted_speedup(x->wl.name, s));
                count(&tt[s], left, 100 - ref.traffic_sprint[s], fitted_traffic(s));
                if (sp > 0 && isfinite(sp)) gs[s] += log(sp), ngs[s]++;
            }
        }
        int onm = x->sizes_mask & 2u;
        sp_ratios rm = sp_result_ratios(x, 1, SP_DESIGN_SPRINT, 0);
        cell(c[6], sizeof c[6], onm ? rm.energy_reduction : NAN, onm ? x->energy_se[1] : 0, ref.energy_ratio, 0, show, "x");
        if (x->wl.synthetic && onm) {
            count(&te, rm.energy_reduction, ref.energy_ratio, 0);
            if (rm.energy_reduction > 0) ge += log(rm.energy_reduction), nge++;
        }
        fprintf(f, "   %-11s %-20s %-20s %-20s | %-12s %-12s %-12s | %-18s%s\n", x->wl.name, c[0], c[1], c[2], c[3], c[4],
                c[5], c[6], x->wl.synthetic ? "" : "  (real model: not in the paper)");
    }
    sp_paper_ref g;
    sp_paper_lookup("geomean", &g);
    char gc[4][64];
    /* the paper's geomeans are over its eight workloads: shown only when all eight ran */
    for (int s = 0; s < SP_SIZE_COUNT; s++)
        cell(gc[s], sizeof gc[s], ngs[s] ? exp(gs[s] / ngs[s]) : NAN, 0, ngs[s] == 8 ? g.speedup[s] : NAN, 0, show, "x");
    cell(gc[3], sizeof gc[3], nge ? exp(ge / nge) : NAN, 0, nge == 8 ? 16.9 : NAN, 0, show, "x");
    fprintf(f, "   %-11s %-20s %-20s %-20s | %-12s %-12s %-12s | %-18s\n", "geomean", gc[0], gc[1], gc[2], "", "", "", gc[3]);
    if (ngs[0] && ngs[2])
        fprintf(f, "   S-to-L change of the speedup geomean: %+.1f%%%s\n",
                100 * (exp(gs[2] / ngs[2] - gs[0] / ngs[0]) - 1), show && ngs[0] == 8 ? " (paper -4.8%)" : "");
    if (show) {
        fprintf(f, "   within 25%% of the paper, predictions (fitted points apart):\n");
        for (int s = 0; s < SP_SIZE_COUNT; s++) {
            if (!(ts[s].pred_n + ts[s].fit_n)) continue;
            fprintf(f, "     speedup %s: %d of %d predicted", sp_size_name(s), ts[s].pred_in, ts[s].pred_n);
            if (ts[s].fit_n) fprintf(f, ", %d of %d fitted", ts[s].fit_in, ts[s].fit_n);
            fprintf(f, "\n");
        }
        for (int s = 0; s < SP_SIZE_COUNT; s++)
            if (tt[s].pred_n + tt[s].fit_n)
                fprintf(f, "     traffic %s: %d of %d predicted, %d of %d fitted\n", sp_size_name(s), tt[s].pred_in,
                        tt[s].pred_n, tt[s].fit_in, tt[s].fit_n);
        if (te.pred_n) fprintf(f, "     energy M: %d of %d predicted\n", te.pred_in, te.pred_n);
        /* the energy figure's Pruning bars: the digital-pruning design's reduction at M */
        tally tp = {0};
        char line[1024];
        size_t used = 0;
        line[0] = 0;
        for (int w = 0; w < n; w++) {
            const sp_wl_result *x = &res[w];
            if (!x->wl.synthetic || !(x->sizes_mask & 2u)) continue;
            sp_paper_ref ref;
            sp_paper_lookup(x->wl.name, &ref);
            double e = sp_result_ratios(x, 1, SP_DESIGN_PRUNING, 0).energy_reduction;
            count(&tp, e, ref.energy_ratio_pruning, 0);
            if (used + 1 < sizeof line) {
                int k = snprintf(line + used, sizeof line - used, "%s%s %.2fx/%.2f", used ? ", " : "", x->wl.name, e,
                                 ref.energy_ratio_pruning);
                if (k > 0) used += (size_t)k < sizeof line - used ? (size_t)k : sizeof line - used - 1;
            }
        }
        if (tp.pred_n)
            fprintf(f, "     pruning design energy M: %d of %d predicted (its dataflow, chip.pruning_masked_pairs, is argued\n"
                       "       from these bars, no constant fitted); ours/paper: %s\n",
                    tp.pred_in, tp.pred_n, line);
        /* the abstract's 19.6x: a 16 KB (S) figure */
        double es = 0;
        int nes = 0;
        for (int w = 0; w < n; w++) {
            if (!res[w].wl.synthetic || !(res[w].sizes_mask & 1u)) continue;
            double e = sp_result_ratios(&res[w], 0, SP_DESIGN_SPRINT, 0).energy_reduction;
            if (e > 0 && isfinite(e)) es += log(e), nes++;
        }
        if (nes)
            fprintf(f, "   energy at S (the abstract's 19.6x is a 16 KB = S figure, averaging not stated): geomean %.2fx\n",
                    exp(es / nes));
    }
}
