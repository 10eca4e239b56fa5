/* hw.c: the hardware description of one chip size, derived once from the config (memory
 * timings converted to accelerator cycles, energies per event), and its geometry checks. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sprint/sim.h"

const char *sp_design_name(sp_design d) {
    static const char *const names[SP_DESIGN_COUNT] = {"baseline-paper", "baseline-tiled", "mask-only",
                                                       "pruning", "sprint-noreuse", "sprint"};
    SP_ASSERT(d >= 0 && d < SP_DESIGN_COUNT);
    return names[d];
}

const char *sp_size_name(int size) {
    static const char *const names[SP_SIZE_COUNT] = {"S", "M", "L"};
    SP_ASSERT(size >= 0 && size < SP_SIZE_COUNT);
    return names[size];
}

const char *sp_energy_cat_name(sp_energy_cat c) {
    static const char *const names[SP_E_COUNT] = {"reram_read", "reram_write", "in_reram_pruning", "onchip_read",
                                                  "onchip_write", "qk_pu", "v_pu", "softmax"};
    SP_ASSERT(c >= 0 && c < SP_E_COUNT);
    return names[c];
}

sp_status sp_hw_from_config(const sp_config *cfg, int size, sp_hw *hw, sp_error *err) {
    SP_ASSERT(size >= 0 && size < SP_SIZE_COUNT);
    memset(hw, 0, sizeof *hw);
    hw->size = size;
    const double kb[3] = {cfg->chip_buffer_kb_s, cfg->chip_buffer_kb_m, cfg->chip_buffer_kb_l};
    const long cl[3] = {cfg->chip_corelets_s, cfg->chip_corelets_m, cfg->chip_corelets_l};
    double bytes = kb[size] * 1024.0;
    hw->corelets = (int)cl[size];
    hw->k_buf_bytes = floor(bytes * cfg->chip_k_share);
    hw->v_buf_bytes = floor(bytes - hw->k_buf_bytes);
    hw->qk_lanes = (int)cfg->chip_qk_lanes;
    hw->v_lanes = (int)cfg->chip_v_lanes;
    hw->lane_width = (int)cfg->chip_lane_width;
    hw->sm_per_cycle = (int)cfg->chip_softmax_per_cycle;
    hw->pipeline_cycles = (int)cfg->chip_pipeline_cycles;
    hw->replacement = sp_config_enum_index("lru|fifo", cfg->chip_replacement);
    hw->tiled_query_share = cfg->chip_tiled_query_share;
    hw->baseline_dataflow = sp_config_enum_index("restream|partial|tiled", cfg->chip_baseline_dataflow);
    hw->baseline_masked = cfg->chip_baseline_masked_pairs;
    hw->pruning_masked = cfg->chip_pruning_masked_pairs;
    hw->reuse_share = cfg->chip_reuse_share;
    hw->pv_bits_per_cycle = cfg->chip_pv_bits_per_cycle;
    hw->index_buffer_bits = 8.0 * (double)cfg->chip_index_buffer_bytes;
    hw->kmsb_contention = cfg->memory_kmsb_contention;
    hw->channels = (int)cfg->memory_channels;
    hw->banks = (int)cfg->memory_banks;
    hw->row_bytes = (int)cfg->memory_row_bytes;
    hw->bus_bytes = (int)cfg->memory_bus_bytes;
    if (hw->channels < 1 || hw->banks < 1)
        return sp_error_set(err, SP_ERR_CONFIG, "memory needs at least one channel and one bank (memory.channels=%d, memory.banks=%d)",
                            hw->channels, hw->banks);
    if (hw->row_bytes < hw->bus_bytes)
        return sp_error_set(err, SP_ERR_CONFIG, "memory.row_bytes=%d is smaller than memory.bus_bytes=%d", hw->row_bytes,
                            hw->bus_bytes);
    hw->mem_cycle = cfg->chip_clock_mhz / cfg->memory_clock_mhz;
    hw->t_rcd_cyc = (double)cfg->memory_t_rcd * hw->mem_cycle;
    hw->t_cl_cyc = (double)cfg->memory_t_cl * hw->mem_cycle;
    hw->t_rp_cyc = (double)cfg->memory_t_rp * hw->mem_cycle;
    hw->t_ccd_cyc = (double)cfg->memory_t_ccd * hw->mem_cycle;
    hw->t_axth_cyc = (double)cfg->memory_t_axth * hw->mem_cycle;
    hw->xbar_rows = (int)cfg->memory_xbar_rows;
    hw->xbar_cols = (int)cfg->memory_xbar_cols;
    hw->arrays_parallel = (int)cfg->memory_arrays_parallel;
    hw->msb_cells = (int)((cfg->quant_msb_bits + cfg->memory_cell_bits - 1) / cfg->memory_cell_bits);
    hw->capacity_bytes = (double)cfg->memory_capacity_mib * 1024.0 * 1024.0;
    hw->queue_depth = (int)cfg->controller_queue_depth;
    hw->frfcfs = !strcmp(cfg->controller_scheduler, "frfcfs");
    hw->prefetch = cfg->controller_prefetch;
    hw->lookahead = (int)cfg->controller_lookahead;
    hw->event_max_keys = (int)cfg->sim_event_max_keys;
    hw->e_reram_read_bit = cfg->energy_reram_read_pj_per_bit;
    hw->e_reram_write_bit = cfg->energy_reram_write_pj_per_bit;
    hw->e_imc_mac = cfg->energy_imc_pj_per_mac;
    hw->e_comparator = cfg->energy_adc5_pj / cfg->energy_comparator_power_ratio;
    hw->e_sram_read_bit = cfg->energy_sram_read_pj_per_bit;
    hw->e_sram_write_bit = cfg->energy_sram_write_pj_per_bit;
    hw->e_qk_mac = cfg->energy_qk_mac_pj;
    hw->e_v_mac = cfg->energy_v_mac_pj;
    hw->e_exp = cfg->energy_exp_pj;
    hw->e_div = cfg->energy_div_pj;
    return SP_OK;
}

void sp_sim_tiled_geometry(const sp_hw *hw, int d, long *tile, long *block) {
    double buf = hw->k_buf_bytes + hw->v_buf_bytes;
    /* a query of the tile holds q (d bytes) and 16-bit accumulators (2d) plus max and sum (8 B) */
    *tile = (long)floor(hw->tiled_query_share * buf / (3.0 * d + 8.0));
    *block = (long)floor((1.0 - hw->tiled_query_share) * buf / (2.0 * d));
}

sp_status sp_hw_check_head(const sp_hw *hw, int n_k, int d, sp_error *err) {
    const char *sz = sp_size_name(hw->size);
    if (n_k < 1 || d < 1) return sp_error_set(err, SP_ERR_ARG, "a head needs at least one key and d >= 1");
    if (hw->corelets > n_k)
        return sp_error_set(err, SP_ERR_CONFIG, "%s: %d CORELETs but only %d keys: some CORELETs would get no key",
                            sz, hw->corelets, n_k);
    double kc = hw->k_buf_bytes / hw->corelets, vc = hw->v_buf_bytes / hw->corelets;
    if (kc < d || vc < d)
        return sp_error_set(err, SP_ERR_CONFIG,
                            "%s: a CORELET's K buffer (%.0f B) or V buffer (%.0f B) is smaller than one %d-byte vector",
                            sz, kc, vc, d);
    if (hw->row_bytes < d)
        return sp_error_set(err, SP_ERR_CONFIG, "memory.row_bytes=%d is smaller than one %d-byte vector",
                            hw->row_bytes, d);
    long tile, block;
    sp_sim_tiled_geometry(hw, d, &tile, &block);
    if (tile < 1 || block < 1)
        return sp_error_set(err, SP_ERR_CONFIG,
                            "%s: the tiled baseline cannot hold one query and one K/V pair (chip.tiled_query_share=%g)",
                            sz, hw->tiled_query_share);
    return SP_OK;
}

sp_status sp_sim_hw(const sp_config *cfg, sp_hw hw[SP_SIZE_COUNT], unsigned *sizes_mask, sp_error *err) {
    *sizes_mask = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", cfg->chip_sizes);
    for (char *tok = buf; tok && *tok;) {
        char *comma = strchr(tok, ',');
        if (comma) *comma = 0;
        while (*tok == ' ') tok++;
        int s = !strcmp(tok, "S") ? 0 : !strcmp(tok, "M") ? 1 : !strcmp(tok, "L") ? 2 : -1;
        if (s < 0)
            return sp_error_set(err, SP_ERR_CONFIG, "chip.sizes: unknown size '%s' (expected a comma-separated subset of S,M,L)",
                                tok);
        *sizes_mask |= 1u << s;
        tok = comma ? comma + 1 : NULL;
    }
    if (!*sizes_mask) return sp_error_set(err, SP_ERR_CONFIG, "chip.sizes is empty (expected e.g. S,M,L)");
    for (int s = 0; s < SP_SIZE_COUNT; s++) {
        sp_status st = sp_hw_from_config(cfg, s, &hw[s], err);
        if (st != SP_OK) return st;
    }
    return SP_OK;
}

/* sp_design_result and sp_wl_stats are summed as arrays of doubles (here, in run.c, trace.c and
 * headsim.c): every member must be a double, and a new member must be counted here (issue 11). */
_Static_assert(sizeof(sp_design_result) == 33 * sizeof(double),
               "sp_design_result is summed as an array of doubles: 33 double members expected");
_Static_assert(sizeof(sp_wl_stats) == 10 * sizeof(double), "sp_wl_stats is summed as an array of 10 doubles");

void sp_design_result_add(sp_design_result *acc, const sp_design_result *r, double scale) {
    const double *src = (const double *)r;
    double *dst = (double *)acc;
    size_t n = sizeof *r / sizeof(double);
    for (size_t i = 0; i < n; i++) dst[i] += src[i] * scale;
}

void sp_design_result_check(const sp_design_result *r) {
    double sum = 0;
    for (int c = 0; c < SP_E_COUNT; c++) {
        SP_ASSERT(r->energy_pj[c] >= 0 && isfinite(r->energy_pj[c]));
        sum += r->energy_pj[c];
    }
    SP_ASSERT(fabs(sum - r->energy_pj_total) <= 1e-9 * (fabs(sum) + 1.0));
    SP_ASSERT(r->write_once_pj <= r->energy_pj[SP_E_RERAM_WRITE] * (1 + 1e-12) + 1e-9);
    SP_ASSERT(r->cycles >= 0 && r->bytes_read >= 0 && r->bytes_written >= 0);
    SP_ASSERT(r->row_hits + r->row_misses + r->row_conflicts <= r->requests * (1 + 1e-12) + 1e-6);
}
