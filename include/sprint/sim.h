/* sprint/sim.h: the architecture and energy simulator (paper sections 2-5).
 *
 * What is simulated: per-query pruning records (sp_query_record, from any sp_attn_op) are fed
 * to six designs at once, for each chip size S/M/L:
 *   baseline-paper   iso-buffer baseline, per-query streaming of every K and V (Fig. 10/11)
 *   baseline-tiled   iso-buffer baseline reusing each fetched K/V block across a query tile
 *   mask-only        baseline-paper with padding and causal-masked pairs removed (Fig. 10 gray)
 *   pruning          digital runtime pruning, LeOPArd-like: fetch every K, fetch surviving V
 *   sprint-noreuse   in-ReRAM pruning, every survivor fetched again for every query
 *   sprint           in-ReRAM pruning + residency table reuse between adjacent queries (Fig. 7)
 * Timing: ReRAM banks/rows/bus event model (src/timing/memory.c) or, for long regular streams,
 * the analytical stream model (tested against it); CORELET compute; thresholding / fetch /
 * compute overlap (src/timing/headsim.c). Energy: per-event counts times per-event energies
 * (src/energy/energy.c), eight categories of the paper's breakdown.
 *
 * Workloads (src/workload/): the paper's eight presets built by a synthetic generator and run
 * through a functional operator, so masks come from values; and real-model traces.
 *
 * Threading: one sp_sim_head per (layer, head, sequence) instance; a head's records come in
 * order. sp_sim_observer keeps one slot per (layer, head) so concurrent heads never share
 * state. Totals are summed in a fixed order, so results do not depend on the thread count. */
#ifndef SPRINT_SIM_H
#define SPRINT_SIM_H

#include <stdio.h>

#include "sprint/attention.h"
#include "sprint/common.h"
#include "sprint/config.h"
#include "sprint/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- designs, sizes, energy categories ---------------------------------------------- */
typedef enum sp_design {
    SP_DESIGN_BASELINE = 0, /* paper per-query streaming */
    SP_DESIGN_TILED,
    SP_DESIGN_MASK_ONLY,
    SP_DESIGN_PRUNING,
    SP_DESIGN_SPRINT_NOREUSE,
    SP_DESIGN_SPRINT,
    SP_DESIGN_COUNT
} sp_design;
const char *sp_design_name(sp_design d); /* "baseline-paper", ..., "sprint" */

#define SP_SIZE_COUNT 3 /* S, M, L */
const char *sp_size_name(int size);      /* "S", "M", "L" */

typedef enum sp_energy_cat {
    SP_E_RERAM_READ = 0,
    SP_E_RERAM_WRITE,
    SP_E_PRUNE,        /* in-ReRAM pruning: MACs, comparators, CopyQ */
    SP_E_ONCHIP_READ,
    SP_E_ONCHIP_WRITE,
    SP_E_QKPU,
    SP_E_VPU,
    SP_E_SOFTMAX,
    SP_E_COUNT
} sp_energy_cat;
const char *sp_energy_cat_name(sp_energy_cat c); /* "reram_read", ... */

/* ---- hardware: derived constants of one chip size, in accelerator (core) cycles ---------- */
typedef struct sp_hw {
    int size;                  /* 0 S, 1 M, 2 L */
    int corelets;
    double k_buf_bytes, v_buf_bytes; /* totals over CORELETs */
    int qk_lanes, v_lanes, lane_width, sm_per_cycle, pipeline_cycles;
    int replacement;           /* 0 lru, 1 fifo */
    double tiled_query_share;
    /* baseline dataflow (chip.baseline_dataflow: 0 restream, 1 partial, 2 tiled) and whether it
     * computes causally masked and padded pairs (chip.baseline_masked_pairs) */
    int baseline_dataflow, baseline_masked;
    int pruning_masked;  /* the pruning design scores padded and masked pairs (chip.pruning_masked_pairs) */
    double reuse_share;  /* SPRINT: share of the K/V buffer entries kept for reuse (chip.reuse_share) */
    /* SPRINT per-query mechanisms (issue 7): pruning-vector bits each CORELET's address
     * generator scans per cycle (0 = free), unpruned-index buffer bits bounding the lookahead
     * (0 = unbounded), thresholding vs transposed K_MSB reads contention */
    double pv_bits_per_cycle, index_buffer_bits;
    int kmsb_contention;
    /* memory, converted to core cycles exactly (no rounding) */
    int channels, banks;       /* banks per channel */
    int row_bytes, bus_bytes;
    double t_rcd_cyc, t_cl_cyc, t_rp_cyc, t_ccd_cyc, t_axth_cyc; /* core cycles (the memory.t_* keys are memory cycles) */
    double mem_cycle;          /* core cycles per memory clock */
    int xbar_rows, xbar_cols, arrays_parallel;
    int msb_cells;             /* MLC cells per K_MSB element: ceil(quant.msb_bits / memory.cell_bits); each slice
                                * is one more array round and one more in-memory MAC per element */
    int queue_depth, frfcfs, prefetch, lookahead;
    double capacity_bytes;
    int event_max_keys;
    /* energy, pJ */
    double e_reram_read_bit, e_reram_write_bit, e_imc_mac, e_comparator, e_sram_read_bit, e_sram_write_bit,
        e_qk_mac, e_v_mac, e_exp, e_div;
} sp_hw;

/* SPRINT's lookahead (queries thresholded ahead of compute) for a query of n_visible keys:
 * controller.lookahead, bounded by the unpruned-index buffer (it holds
 * floor(index_buffer_bits / n_visible) pruning vectors, the current one included). */
int sp_sim_lookahead(const sp_hw *hw, int n_visible);
/* CORELET cycles to process one pruning vector of n_visible bits: each CORELET scans its
 * ceil(n_visible / corelets) bits at pv_bits_per_cycle (0 when the key is 0). */
double sp_sim_pv_cycles(const sp_hw *hw, int n_visible);

/* Keys of an iso-buffer baseline fetched once and kept on chip, out of nkeys, for cap keys per
 * CORELET (chip.baseline_dataflow: restream all-or-nothing, partial the first cap*corelets). */
long sp_sim_baseline_resident(const sp_hw *hw, long nkeys, int cap);

/* The tiled baseline's geometry for head dimension d: queries per tile (q + 16-bit
 * accumulators + max and sum, chip.tiled_query_share of the buffer) and K/V pairs per block
 * (the rest). One definition for the simulator and the geometry check. */
void sp_sim_tiled_geometry(const sp_hw *hw, int d, long *tile, long *block);

/* Fills hw for size (0..2) from cfg; SP_ERR_CONFIG for impossible geometry (zero banks, a row
 * smaller than the bus, ...). Vector-size checks need d: see sp_hw_check_head. */
sp_status sp_hw_from_config(const sp_config *cfg, int size, sp_hw *hw, sp_error *err);
/* Checks that a head of n_k keys and dimension d fits the geometry: the K and V buffers of a
 * CORELET hold at least one vector, there are no more CORELETs than keys, a vector fits a row. */
sp_status sp_hw_check_head(const sp_hw *hw, int n_k, int d, sp_error *err);

/* ---- results ------------------------------------------------------------------------------ */
typedef struct sp_design_result {
    double cycles;                   /* core cycles (sum over heads, scaled) */
    double energy_pj[SP_E_COUNT];
    double energy_pj_total;          /* sum of the categories */
    double write_once_pj;            /* part of reram_write: writing Q, K, V once per sequence */
    double bytes_read, bytes_written; /* main memory */
    double requests, row_hits, row_misses, row_conflicts;
    double vec_fetched, vec_reused;  /* K and V vectors (each counted) fetched vs served from the residency table */
    double pairs_qk, pairs_sv;       /* (query,key) pairs through QK-PU and through softmax/V-PU */
    double queries;
    /* busy cycles per unit (summed over CORELETs or channels; utilisation = busy / (cycles*count)) */
    double busy_qk, busy_v, busy_sm, busy_bus, busy_thr;
    double busy_pv;                  /* CORELET cycles spent scanning pruning vectors (address generation) */
    double bytes_readp;              /* part of bytes_read: pruning vectors (ReadP) */
    /* busy time attributed to the slowest stage by occupancy: thresholding, memory bandwidth,
     * compute; bound_lat = exposed latency beyond all three (dependent fetch chains) */
    double bound_thr, bound_mem, bound_comp, bound_lat;
} sp_design_result;

void sp_design_result_add(sp_design_result *acc, const sp_design_result *r, double scale);
/* Consistency: breakdown sums to the total, non-negative, and (when checkable) traffic equals
 * the bytes of the requests counted. A violation is a bug: SP_ASSERT. */
void sp_design_result_check(const sp_design_result *r);

/* Workload statistics from the records (same definitions as sp_attn_stats). */
typedef struct sp_wl_stats {
    double queries, pairs_visible, pairs_kept, pairs_mem_kept;
    double overlap_pairs;   /* sum |M_i and M_{i-1}| */
    double later_kept;      /* sum over i>0 of |M_i| */
    double new_pairs;       /* sum over i>0 of |M_i minus M_{i-1}| */
    double later_visible;   /* sum over i>0 of n_visible */
    /* score spread (issue 8): sum over queries with a spread of the standard deviation of the
     * scaled scores q.k/sqrt(d) over the query's visible keys, nats; and how many queries had
     * one (an op that does not report it leaves both 0) */
    double spread_sum, spread_queries;
} sp_wl_stats;

/* Statistics of one (layer, head) of a workload: every head of a real model, the sampled
 * heads of a preset (issue 8: per-head figures in the JSON). */
typedef struct sp_head_stats {
    int layer, head;
    sp_wl_stats st;
} sp_head_stats;
#define SP_SIM_MAX_HEAD_STATS 256

/* SLD between consecutive pruning results (each sorted ascending): counts of keys of cur also
 * in prev (reuse vector) and not in prev (memory request vector), paper section 2.4. Shared by
 * the simulator's statistics, the built-in op and `sprint trace`. */
void sp_sld_split(const int32_t *prev, int n_prev, const int32_t *cur, int n_cur, int *n_reuse, int *n_fetch);

/* ---- one head instance -------------------------------------------------------------------- */
typedef struct sp_head_shape {
    int n_k;            /* keys = queries of the (self-attention) sequence, padding included */
    int d;              /* head dimension (bytes per 8-bit vector) */
    int causal;
    int n_valid;        /* unpadded tokens (padding is at the end, as in BERT batches) */
} sp_head_shape;

typedef struct sp_sim_head sp_sim_head;
/* hw: SP_SIZE_COUNT sizes (array), copied. sizes_mask bit s = simulate size s. */
sp_sim_head *sp_sim_head_create(const sp_hw *hw, unsigned sizes_mask, const sp_head_shape *shape);
/* Feeds one query record (records of one head come in query order). */
void sp_sim_head_query(sp_sim_head *h, const sp_query_record *rec);
/* Finishes the instance (baselines, write-once, drains pipelines) and adds its results
 * (times scale) into res[size][design] (SP_SIZE_COUNT x SP_DESIGN_COUNT) and stats. */
void sp_sim_head_finish(sp_sim_head *h, double scale, sp_design_result res[][SP_DESIGN_COUNT], sp_wl_stats *stats);
void sp_sim_head_free(sp_sim_head *h);
/* The regular designs (baseline-paper, baseline-tiled, mask-only) depend only on the head's
 * shape and the hardware, not on its records: sp_sim_regular_results simulates them once for a
 * static shape into reg[size][design] (unscaled; only those three designs are set), and
 * sp_sim_head_use_regular makes a head of the same shape and hardware add reg (times its
 * scale) instead of simulating them again, with the same bits. reg must outlive the head. */
void sp_sim_regular_results(const sp_hw *hw, unsigned sizes_mask, const sp_head_shape *shape,
                            sp_design_result reg[][SP_DESIGN_COUNT]);
void sp_sim_head_use_regular(sp_sim_head *h, const sp_design_result (*reg)[SP_DESIGN_COUNT]);

/* ---- observer for ops run by someone else (real-model traces) -------------------------- */
typedef struct sp_sim_observer sp_sim_observer;
/* One slot per (layer, head); each sequence (seq_id) of a slot is one head instance of
 * dimension d, causal, unpadded. Attach with op->observer = sp_sim_observer_fn,
 * op->observer_user = the observer. */
sp_sim_observer *sp_sim_observer_create(const sp_hw *hw, unsigned sizes_mask, int n_layers, int n_heads, int d,
                                        int causal);
void sp_sim_observer_fn(void *user, const sp_query_record *rec);
/* Finishes every open instance and sums every slot in (layer, head) order. */
void sp_sim_observer_finish(sp_sim_observer *o, double scale, sp_design_result res[][SP_DESIGN_COUNT],
                            sp_wl_stats *stats);
/* As sp_sim_observer_finish, and per_head (n_layers * n_heads, index layer*n_heads+head; may be
 * NULL) gets each slot's statistics added. */
void sp_sim_observer_finish_heads(sp_sim_observer *o, double scale, sp_design_result res[][SP_DESIGN_COUNT],
                                  sp_wl_stats *stats, sp_wl_stats *per_head);
/* Head instances the observer has seen: one per (layer, head, sequence window), e.g. two for
 * a story longer than the evaluation window. */
long long sp_sim_observer_instances(const sp_sim_observer *o);
void sp_sim_observer_free(sp_sim_observer *o);

/* ---- workloads ---------------------------------------------------------------------------- */
typedef struct sp_workload {
    char name[32];
    int layers, heads, d, causal;
    int seq;             /* tokens, padding included */
    double padding;      /* share of padded tokens */
    int synthetic;       /* 1 preset generator, 0 real-model trace */
    double temperature;  /* synthetic generator temperature, nats (per preset or workload.temperature) */
} sp_workload;

/* Names of the presets, "|"-separated. */
extern const char *const SP_WORKLOAD_PRESETS;
/* Resolves a preset by name (case-insensitive) with its sequence length and padding keys. */
sp_status sp_workload_preset(const sp_config *cfg, const char *name, sp_workload *wl, sp_error *err);

/* Synthetic Q, K, V of one head (each (n, d) row-major, caller-owned, n = wl->seq) with a local
 * band, sink tokens and content clusters (workload.* keys), from counter-based RNG streams keyed
 * by (run.seed, layer, head): the same for any thread count. v may be NULL: V is then not
 * drawn (its stream is separate, so Q and K are the same either way). */
void sp_workload_synth_head(const sp_config *cfg, const sp_workload *wl, int layer, int head, float *q, float *k,
                            float *v);

/* A heap copy of cfg for the functional operator that feeds the simulator: sprint.mass_lost is
 * switched off (the simulator never reads the statistic and it costs a dense softmax per
 * query), and so is sprint.outputs (synthetic heads feed no later layer; real-model traces
 * switch it back on). Every simulator path (sprint run, sprint trace, bench_sim) uses it.
 * free() it. */
sp_config *sp_sim_op_config(const sp_config *cfg);

/* The operator that makes a workload's masks, the one choice every simulator path shares
 * (sprint run's presets, real-model traces and tensor sets, sprint trace, Q/K/V capture):
 * workload.mode=builtin gives the relative-threshold op (sp_relthresh_op_create); any mode of
 * SP_ATTN_MODES gives that functional op on sp_sim_op_config(cfg), with attention outputs on
 * when `outputs` (a model's later layers read them), calibrated on `calib` with `model` when
 * its policy needs thresholds (sp_attn_op_create_calibrated; model and calib may be NULL, as
 * for synthetic heads, which then use the uncalibrated thresholds). An unknown mode:
 * SP_ERR_CONFIG. mask_source (may be NULL) gets a one-line description for the report.
 * The caller frees *out with sp_attn_op_free. */
sp_status sp_sim_mask_op_create(const sp_config *cfg, int n_layers, int n_heads, const sp_model *model,
                                const sp_corpus *calib, int outputs, sp_progress_fn progress, void *progress_user,
                                sp_attn_op **out, char *mask_source, size_t mask_source_size, sp_error *err);

/* The built-in relative-threshold operator (workload.mode=builtin): keeps key j iff
 * scale*q.k_j >= max - margin_nats; mem_kept == kept. */
sp_attn_op *sp_relthresh_op_create(int n_layers, int n_heads, double margin_nats);

/* Result of one workload over every size and design. */
typedef struct sp_wl_result {
    sp_workload wl;
    sp_design_result r[SP_SIZE_COUNT][SP_DESIGN_COUNT];
    sp_wl_stats stats;
    unsigned sizes_mask;
    int sim_heads;         /* head instances simulated */
    double scale;          /* totals multiplied by this (layers*heads/sim_heads) */
    char mask_source[160]; /* which operator produced the masks */
    int corelets[SP_SIZE_COUNT], channels; /* for utilisation */
    double seconds;        /* wall time */
    /* standard error of sprint's speedup and energy reduction over baseline-paper across the
     * sampled heads (ratio estimator, delta method); 0 for one head or real traces */
    double speedup_se[SP_SIZE_COUNT], energy_se[SP_SIZE_COUNT];
    double bw_bytes_per_cycle, chip_ghz; /* effective memory bandwidth (sp_mem_bandwidth), clock */
    /* per (layer, head) statistics: every head of a real model, the sampled heads of a preset
     * (at most SP_SIM_MAX_HEAD_STATS; 0 when not recorded) */
    int n_head_stats;
    int n_head_stats_omitted; /* heads beyond SP_SIM_MAX_HEAD_STATS: in the totals, not listed (the JSON says so) */
    sp_head_stats head_stats[SP_SIM_MAX_HEAD_STATS];
} sp_wl_result;

typedef struct sp_sim_opts {
    int threads;             /* 0 = all cores */
    sp_progress_fn progress; /* may be NULL */
    void *progress_user;
    /* real-model traces and Q/K/V capture: the stories the thresholds are calibrated on when
     * the policy needs calibration (sp_op_needs_calibration); NULL = the traced stories
     * themselves (optimistic: see sp_sim_trace_split) */
    const sp_corpus *calib;
} sp_sim_opts;

/* Builds the hardware of every size in chip.sizes. */
sp_status sp_sim_hw(const sp_config *cfg, sp_hw hw[SP_SIZE_COUNT], unsigned *sizes_mask, sp_error *err);

/* Which (layer, head) the i-th of n_sample simulated heads of wl is: strided across layers and
 * heads (not the first heads of the first layers). */
void sp_sim_sample_head(const sp_workload *wl, int n_sample, int i, int *layer, int *head);

/* Runs a synthetic preset: workload.sim_heads heads through the functional operator
 * workload.mode (or the built-in op for "builtin"), each fed to every design and size. An
 * unknown mode, impossible geometry or a workload larger than memory: SP_ERR_CONFIG. */
sp_status sp_sim_run_synthetic(const sp_config *cfg, const sp_workload *wl, const sp_sim_opts *o, sp_wl_result *out,
                               sp_error *err);


/* Real-model traces: evaluates the corpus with the functional operator (workload.mode, or the
 * built-in op for "builtin") and the simulator attached to every layer and head; each (layer, head,
 * sequence window) is one head instance. Totals are not scaled (every head is simulated).
 * Thresholds, when the policy needs them calibrated, come from o->calib (else the corpus). */
sp_status sp_sim_run_model(const sp_config *cfg, const sp_model *m, const sp_corpus *corpus, const sp_sim_opts *o,
                           sp_wl_result *out, sp_error *err);

/* The stories of a real-model trace and of its calibration, by the rule of sprint eval
 * (calibrate on one text, evaluate on another): with split, *traced = the first n_trace
 * stories of the second half of all's stories (from all->n / 2) and *calib = the first n_trace
 * of the first half (as many as are traced, so calibrating costs what it did when the traced
 * stories calibrated; sp_calibrate then takes at most policy.calib_stories); without,
 * *traced = the first n_trace stories and *calib is empty (n = 0). Split with fewer than 2
 * stories, or n_trace < 1: SP_ERR_ARG. Both are copies (sp_corpus_free). */
sp_status sp_sim_trace_split(const sp_corpus *all, int n_trace, int split, sp_corpus *calib, sp_corpus *traced,
                             sp_error *err);

/* ---- report -------------------------------------------------------------------------------- */
/* Paper's printed values for a workload name (NaN when absent): Fig. 11 speedup (size 0..2),
 * energy ratio Baseline->SPRINT, Fig. 10 traffic reduction (%, mask-only and SPRINT). */
typedef struct sp_paper_ref {
    double speedup[SP_SIZE_COUNT];
    double energy_ratio, energy_ratio_pruning;
    double traffic_mask[SP_SIZE_COUNT], traffic_sprint[SP_SIZE_COUNT];
} sp_paper_ref;
int sp_paper_lookup(const char *workload, sp_paper_ref *ref);

/* Ratios of design D against the baseline dataflow b (0 paper, 1 tiled) at size s. */
typedef struct sp_ratios {
    double speedup, energy_reduction, energy_reduction_excl_write, traffic_reduction; /* traffic: fraction */
} sp_ratios;
sp_ratios sp_result_ratios(const sp_wl_result *w, int size, int design, int baseline);

/* Aligned text table of every workload, size and design (units in the headers). */
void sp_report_table(FILE *f, const sp_wl_result *res, int n);
/* The reproduction summary beside the paper's printed values, one line per workload on what
 * differs and why. */
void sp_report_paper(FILE *f, const sp_wl_result *res, int n);
/* The workload-realism table (kept fractions, adjacent-query overlap, new keys per query; the
 * real model's ReadP share) and one line per workload on what differs from the paper and why
 * (printed by sp_report_paper too). */
void sp_report_realism(FILE *f, const sp_wl_result *res, int n);
/* The reproduction table first (issue 7): per workload speedup S/M/L (± standard error over
 * the sampled heads), traffic left S/M/L (% of the S baseline, Fig. 10), energy reduction at M,
 * ours beside the paper with fitted bars marked and counts within 25% (predictions apart from
 * fitted points); the header names the preset and every key that differs from the built-in
 * reproduction defaults, and the paper column is left out when a key that changes the model
 * differs. */
void sp_report_summary(FILE *f, const sp_wl_result *res, int n, const sp_config *cfg, const char *preset);
/* Writes "sec.key=value, ..." for every key of cfg that differs from the defaults into buf;
 * returns 1 when one of them changes the model (not only what is run or shown). */
int sp_report_config_diff(const sp_config *cfg, char *buf, size_t n);
/* One JSON object: {"workloads":[...], "results":[...]}; workloads holds each workload's shape
 * and statistics; results has one entry per workload, size, design and baseline dataflow
 * ("baseline": "paper" or "tiled", the baseline the ratios are against). */
sp_status sp_report_json(FILE *f, const sp_wl_result *res, int n, sp_error *err);
/* CSV with units in the column names; one row per workload, size, design. */
sp_status sp_report_csv(const char *path, const sp_wl_result *res, int n, sp_error *err);

#ifdef __cplusplus
}
#endif
#endif
