/* sim_helpers.h: shared by the simulator tests (test_energy, test_timing, test_sim_designs):
 * one query fed to a fresh head instance, results of every design and size. */
#ifndef SPRINT_TESTS_SIM_HELPERS_H
#define SPRINT_TESTS_SIM_HELPERS_H

#include <string.h>

#include "sprint/sim.h"

/* A non-causal, unpadded head of n keys and dimension d; query 0 sees every key, keeps mk
 * (nmk) in memory and kp (nkp) after recompute. res is cleared first. */
static inline void th_sim_one_query(const sp_hw *hw, unsigned mask, int n, int d, const int32_t *mk, int nmk,
                                    const int32_t *kp, int nkp, sp_design_result res[][SP_DESIGN_COUNT]) {
    sp_head_shape sh = {.n_k = n, .d = d, .causal = 0, .n_valid = n};
    sp_sim_head *h = sp_sim_head_create(hw, mask, &sh);
    sp_query_record r = {.qi = 0, .pos = 0, .n_k = n, .n_visible = n, .n_mem_kept = nmk, .mem_kept = mk,
                         .n_kept = nkp, .kept = kp};
    sp_sim_head_query(h, &r);
    memset(res, 0, sizeof(sp_design_result) * SP_SIZE_COUNT * SP_DESIGN_COUNT);
    sp_sim_head_finish(h, 1.0, res, NULL);
    sp_sim_head_free(h);
}

#endif
