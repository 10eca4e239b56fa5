/* test_msb_cost.c: does the simulator charge in-memory thresholding by the key MSB bits
 * (issue 10)? With 4-bit MLC cells (memory.cell_bits, paper section 1), b <= 4 bits fit one
 * cell per element; b = 5..8 need two cells, i.e. twice the array rounds and twice the
 * in-memory MACs, and nothing else changes. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "sprint/sim.h"
#include "sim_helpers.h"

/* Thresholding-bound geometry: one array at a time, so the rounds dominate CopyQ and ReadP. */
static void run_bits(long bits, long cell_bits, sp_hw *hw_out, sp_design_result res[][SP_DESIGN_COUNT]) {
    sp_hw hw[SP_SIZE_COUNT]; /* sp_sim_head_create copies every size */
    sp_config c;
    sp_config_defaults(&c);
    c.quant_msb_bits = bits;
    c.memory_cell_bits = cell_bits;
    c.memory_arrays_parallel = 1;
    sp_error err = {0};
    for (int s = 0; s < SP_SIZE_COUNT; s++) cr_assert_eq(sp_hw_from_config(&c, s, &hw[s], &err), SP_OK, "%s", err.msg);
    *hw_out = hw[0];
    enum { N = 2048, D = 64 };
    static int32_t keep[8] = {0, 5, 9, 100, 500, 1000, 1500, 2047};
    th_sim_one_query(hw, 1u, N, D, keep, 8, keep, 4, res);
}

Test(msb_cost, cells_per_element_derived_from_bits) {
    sp_hw hw;
    sp_design_result r[SP_SIZE_COUNT][SP_DESIGN_COUNT];
    const int want[9] = {0, 1, 1, 1, 1, 2, 2, 2, 2};
    for (long b = 1; b <= 8; b++) {
        run_bits(b, 4, &hw, r);
        cr_assert_eq(hw.msb_cells, want[b], "b=%ld: %d cells per element, expected %d", b, hw.msb_cells, want[b]);
    }
    run_bits(8, 2, &hw, r);
    cr_assert_eq(hw.msb_cells, 4, "8 bits in 2-bit cells: %d cells, expected 4", hw.msb_cells);
}

Test(msb_cost, more_bits_more_rounds_and_energy) {
    sp_hw h4, h8, h1;
    sp_design_result r4[SP_SIZE_COUNT][SP_DESIGN_COUNT], r8[SP_SIZE_COUNT][SP_DESIGN_COUNT],
        r1[SP_SIZE_COUNT][SP_DESIGN_COUNT];
    run_bits(4, 4, &h4, r4);
    run_bits(8, 4, &h8, r8);
    run_bits(1, 4, &h1, r1);
    for (int D = SP_DESIGN_SPRINT_NOREUSE; D <= SP_DESIGN_SPRINT; D++) {
        const sp_design_result *a = &r4[0][D], *b = &r8[0][D], *c = &r1[0][D];
        /* 2048 keys / 128 columns = 16 rounds of tAxTh at 4 bits, 32 at 8 bits */
        double rounds4 = 16 * h4.t_axth_cyc;
        cr_assert(a->busy_thr >= rounds4 && a->busy_thr < rounds4 + 1e-9, "%s: busy_thr %g, expected %g",
                  sp_design_name(D), a->busy_thr, rounds4);
        cr_assert(fabs(b->busy_thr - 2 * rounds4) < 1e-9, "%s: 8-bit busy_thr %g, expected %g", sp_design_name(D),
                  b->busy_thr, 2 * rounds4);
        cr_assert(b->cycles > a->cycles, "%s: 8 bits not slower (%g vs %g cycles)", sp_design_name(D), b->cycles,
                  a->cycles);
        double dmac = 2048.0 * 64 * h4.e_imc_mac; /* one more MAC per element per key */
        double de = b->energy_pj[SP_E_PRUNE] - a->energy_pj[SP_E_PRUNE];
        cr_assert(fabs(de - dmac) < 1e-6 * dmac, "%s: pruning energy grew by %g pJ, expected %g", sp_design_name(D), de,
                  dmac);
        /* nothing else is charged for the bits: traffic and other categories unchanged */
        cr_assert_eq(b->bytes_read, a->bytes_read);
        cr_assert_eq(b->energy_pj[SP_E_RERAM_READ], a->energy_pj[SP_E_RERAM_READ]);
        /* below a cell's width the bits are free */
        cr_assert_eq(c->cycles, a->cycles, "%s: 1 bit %g cycles vs 4 bits %g", sp_design_name(D), c->cycles, a->cycles);
        cr_assert_eq(c->energy_pj_total, a->energy_pj_total);
    }
    /* the baseline never thresholds in memory */
    cr_assert_eq(r8[0][SP_DESIGN_BASELINE].cycles, r4[0][SP_DESIGN_BASELINE].cycles);
}
