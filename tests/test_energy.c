/* test_energy.c: does a tiny head's energy equal the hand-computed sum of count x energy per
 * event in each of the paper's eight categories, and does the breakdown sum to the total? */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "energy/energy.h"
#include "sim_helpers.h"
#include "sprint/sim.h"

static void tiny_hw(sp_hw hw[3], unsigned *mask) {
    sp_config c;
    sp_config_defaults(&c);
    sp_error err = {0};
    /* the physical preset's energies (configs/sim-physical.ini; the defaults are fitted to the
     * paper's baseline bars and tested in energy_defaults_reproduce_baseline_bars), distinct
     * so that a count landing in the wrong category changes a total */
    const char *phys[] = {"energy.sram_read_pj_per_bit=0.23", "energy.sram_write_pj_per_bit=0.25", "energy.qk_mac_pj=0.36",
                          "energy.exp_pj=1.3", "energy.div_pj=2.0", "energy.v_mac_pj=0.37"};
    for (size_t i = 0; i < sizeof phys / sizeof phys[0]; i++)
        cr_assert_eq(sp_config_set(&c, phys[i], "test", &err), SP_OK, "%s", err.msg);
    sp_config_set(&c, "chip.sizes=S", "test", &err);
    cr_assert_eq(sp_sim_hw(&c, hw, mask, &err), SP_OK, "%s", err.msg);
}

Test(energy, counts_times_energies) {
    sp_hw hw[3];
    unsigned mask;
    tiny_hw(hw, &mask);
    sp_counts n = {.reram_read_bytes = 10, .reram_write_bytes = 2, .imc_macs = 100, .compares = 7, .copyq_bytes = 8,
                   .sram_read_bytes = 3, .sram_write_bytes = 5, .qk_macs = 11, .v_macs = 13, .exps = 17, .divs = 19};
    double e[SP_E_COUNT], wo;
    sp_energy_from_counts(&hw[0], &n, e, &wo);
    cr_assert_float_eq(e[SP_E_RERAM_READ], 10 * 8 * 3.1, 1e-9);
    cr_assert_float_eq(e[SP_E_RERAM_WRITE], 2 * 8 * 24.4, 1e-9);
    cr_assert_float_eq(e[SP_E_PRUNE], 100 * 0.10 + 7 * (0.6 / 30) + 8 * 8 * 3.1, 1e-9);
    cr_assert_float_eq(e[SP_E_ONCHIP_READ], 3 * 8 * 0.23, 1e-9);
    cr_assert_float_eq(e[SP_E_ONCHIP_WRITE], 5 * 8 * 0.25, 1e-9);
    cr_assert_float_eq(e[SP_E_QKPU], 11 * 0.36, 1e-9);
    cr_assert_float_eq(e[SP_E_VPU], 13 * 0.37, 1e-9);
    cr_assert_float_eq(e[SP_E_SOFTMAX], 17 * 1.3 + 19 * 2.0, 1e-9);
    cr_assert_float_eq(wo, e[SP_E_RERAM_WRITE], 1e-12);
}

/* A 4-token head of dimension 8, one query keeping keys {0, 2} in memory and {0} after
 * recompute. Every count below is derived by hand from the SPRINT dataflow (Fig. 7). */
Test(energy, tiny_head_sprint_and_baseline_by_hand) {
    sp_hw hw[3];
    unsigned mask;
    tiny_hw(hw, &mask);
    int32_t mk[2] = {0, 2}, kp[1] = {0};
    static sp_design_result res[3][SP_DESIGN_COUNT];
    th_sim_one_query(hw, mask, 4, 8, mk, 2, kp, 1, res);
    const sp_design_result *s = &res[0][SP_DESIGN_SPRINT];
    /* reads: Q (8 B) + K, V of 2 keys (32 B) + pruning vector ceil(4/8) = 1 B */
    cr_assert_float_eq(s->bytes_read, 41, 1e-9);
    cr_assert_float_eq(s->energy_pj[SP_E_RERAM_READ], 41 * 8 * 3.1, 1e-9);
    /* Q, K, V of 4 tokens written once: 96 B */
    cr_assert_float_eq(s->bytes_written, 96, 1e-9);
    cr_assert_float_eq(s->energy_pj[SP_E_RERAM_WRITE], 96 * 8 * 24.4, 1e-9);
    cr_assert_float_eq(s->write_once_pj, 96 * 8 * 24.4, 1e-9);
    /* in memory: 4 keys x 8 MACs, 4 comparators, CopyQ of 8 B */
    cr_assert_float_eq(s->energy_pj[SP_E_PRUNE], 32 * 0.10 + 4 * 0.02 + 64 * 3.1, 1e-9);
    /* on chip: write 40 B of vectors + 1 B vector; read Q 8 + K 2x8 + V 1x8 + 1 B */
    cr_assert_float_eq(s->energy_pj[SP_E_ONCHIP_WRITE], 41 * 8 * 0.25, 1e-9);
    cr_assert_float_eq(s->energy_pj[SP_E_ONCHIP_READ], 33 * 8 * 0.23, 1e-9);
    cr_assert_float_eq(s->energy_pj[SP_E_QKPU], 16 * 0.36, 1e-9);
    cr_assert_float_eq(s->energy_pj[SP_E_VPU], 8 * 0.37, 1e-9);
    cr_assert_float_eq(s->energy_pj[SP_E_SOFTMAX], 1 * 1.3 + 8 * 2.0, 1e-9);
    double sum = 0;
    for (int c = 0; c < SP_E_COUNT; c++) sum += s->energy_pj[c];
    cr_assert_float_eq(sum, s->energy_pj_total, 1e-9);
    /* baseline-paper: 4 queries x 4 keys; K/V fit, so fetched once: 4 Q + 4 K + 4 V = 96 B */
    const sp_design_result *b = &res[0][SP_DESIGN_BASELINE];
    cr_assert_float_eq(b->bytes_read, 96, 1e-9);
    cr_assert_float_eq(b->energy_pj[SP_E_QKPU], 4 * 4 * 8 * 0.36, 1e-9);
    cr_assert_float_eq(b->energy_pj[SP_E_VPU], 4 * 4 * 8 * 0.37, 1e-9);
    cr_assert_float_eq(b->energy_pj[SP_E_SOFTMAX], 16 * 1.3 + 4 * 8 * 2.0, 1e-9);
    cr_assert_float_eq(b->energy_pj[SP_E_PRUNE], 0, 1e-12);
    /* on-chip reads per query: Q 8 + K 32 + V 32 */
    cr_assert_float_eq(b->energy_pj[SP_E_ONCHIP_READ], 4 * 72 * 8 * 0.23, 1e-9);
}

/* The reproduction preset's on-chip energies are fitted to the paper's baseline energy bars at
 * M (docs/simulator.md, fitted constants): ViT-B's bar (K/V fetched once, so the on-chip terms
 * stand apart) gives on-chip read, QK-PU, V-PU and softmax; on-chip write comes from the
 * BERT-B, GPT-2-L and Synth-2 bars. The ReRAM-read shares of BERT-B, GPT-2-L and Synth-2 and
 * every other on-chip share of those three are predictions. Bars from sprint-paper.md 5.3
 * (pixel ranges, +-2 points here). */
Test(energy, defaults_reproduce_baseline_bars) {
    sp_config c;
    sp_config_defaults(&c);
    sp_hw hw[3];
    unsigned mask;
    sp_error err = {0};
    cr_assert_eq(sp_sim_hw(&c, hw, &mask, &err), SP_OK, "%s", err.msg);
    const struct {
        const char *name;
        int n, nvalid, causal;
        double read, onchip_read, onchip_write, qk, v;
    } bars[] = {
        {"ViT-B", 197, 197, 0, 2.2, 42.1, 0.0, 18.4, 15.4},
        {"BERT-B", 384, 207, 0, 45.5, 21.5, 7.0, 8.75, 8.5},
        {"GPT-2-L", 1024, 1024, 1, 62.3, 14.0, 10.3, 4.6, 5.3},
        {"Synth-2", 4096, 4096, 1, 67.3, 11.8, 9.9, 3.9, 4.4},
    };
    for (size_t i = 0; i < sizeof bars / sizeof bars[0]; i++) {
        sp_head_shape sh = {.n_k = bars[i].n, .d = 64, .causal = bars[i].causal, .n_valid = bars[i].nvalid};
        sp_sim_head *h = sp_sim_head_create(hw, 2u, &sh);
        static sp_design_result res[3][SP_DESIGN_COUNT];
        memset(res, 0, sizeof res);
        sp_sim_head_finish(h, 1.0, res, NULL);
        sp_sim_head_free(h);
        const sp_design_result *b = &res[1][SP_DESIGN_BASELINE];
        double t = b->energy_pj_total / 100.0;
        const double got[5] = {b->energy_pj[SP_E_RERAM_READ] / t, b->energy_pj[SP_E_ONCHIP_READ] / t,
                               b->energy_pj[SP_E_ONCHIP_WRITE] / t, b->energy_pj[SP_E_QKPU] / t, b->energy_pj[SP_E_VPU] / t};
        const double want[5] = {bars[i].read, bars[i].onchip_read, bars[i].onchip_write, bars[i].qk, bars[i].v};
        const char *cat[5] = {"ReRAM read", "on-chip read", "on-chip write", "QK-PU", "V-PU"};
        for (int k = 0; k < 5; k++)
            cr_assert(fabs(got[k] - want[k]) <= 2.0, "%s %s: %.1f%% of the M baseline, bar %.1f%%", bars[i].name, cat[k],
                      got[k], want[k]);
    }
}
