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
    /* distinct energies, so a count landing in the wrong category changes a total */
    sp_config_set(&c, "energy.v_mac_pj=0.37", "test", &err);
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
