/* decode.c: the simulator's decode mode (sprint/decode_sim.h): per-step cycles and energy of
 * SPRINT and the dense and digital top-k baselines from the functional decode records.
 * Uses the memory model's public stream model (memory.h) and the energy constants of sp_hw
 * (keys_hardware.def, each with its source). */
#include <math.h>

#include "sprint/decode_sim.h"
#include "timing/memory.h"

const char *sp_ddesign_name(int design) {
    static const char *const n[SP_DDESIGN_COUNT] = {"sprint", "dense", "topk"};
    SP_ASSERT(design >= 0 && design < SP_DDESIGN_COUNT);
    return n[design];
}

/* QK-PU or V-PU cycles for `keys` (query, key) pairs of dimension d. */
static double pu_cycles(const sp_hw *hw, double keys, int d, int lanes) {
    double per = ceil((double)d / hw->lane_width);
    return ceil(keys * per / ((double)lanes * hw->corelets));
}

static double stream(const sp_hw *hw, double n, int bytes) {
    if (n <= 0 || bytes <= 0) return 0.0;
    return sp_mem_stream_time(hw, (long)n, bytes, NULL);
}

static void finish(sp_decode_cost *c, const double e[SP_E_COUNT], double cycles) {
    double tot = 0;
    for (int k = 0; k < SP_E_COUNT; k++) {
        c->energy_pj[k] += e[k];
        tot += e[k];
    }
    c->energy_pj_total += tot;
    c->cycles += cycles;
}

void sp_decode_sim_step(const sp_hw *hw, const sp_decode_record *r, int d, int msb_bits, double write_ns,
                        double clock_mhz, sp_decode_cost acc[SP_DDESIGN_COUNT]) {
    double n = r->n_visible, g = r->group, F = r->fetched;
    double kv_write_bits = 2.0 * 8.0 * d; /* the new token's 8-bit K and V */
    double div = g * d * hw->e_div, pipe = hw->pipeline_cycles;
    /* ---- SPRINT ---- */
    {
        double e[SP_E_COUNT] = {0};
        double write_cyc = r->write_pulses * write_ns * clock_mhz * 1e-3;
        double rounds = ceil(n / hw->xbar_cols);                      /* arrays holding the n keys */
        double screen = ceil(g * rounds / hw->arrays_parallel) * hw->t_axth_cyc; /* g reads per array */
        int lsb_bytes = (int)ceil(d * (8.0 - msb_bits) / 8.0);
        double fetch = stream(hw, F, lsb_bytes) + stream(hw, F, d);  /* K LSBs + V of the union */
        double comp = pu_cycles(hw, r->mem_kept, d, hw->qk_lanes) + ceil(r->kept / hw->sm_per_cycle) +
                      pu_cycles(hw, r->kept, d, hw->v_lanes) + pipe;
        e[SP_E_RERAM_WRITE] = kv_write_bits * hw->e_reram_write_bit;
        e[SP_E_PRUNE] = g * n * d * hw->e_imc_mac + g * n * hw->e_comparator;
        e[SP_E_RERAM_READ] = F * (lsb_bytes + d) * 8.0 * hw->e_reram_read_bit;
        e[SP_E_ONCHIP_WRITE] = F * (lsb_bytes + d) * 8.0 * hw->e_sram_write_bit;
        e[SP_E_ONCHIP_READ] = (r->mem_kept * d + r->kept * d) * 8.0 * hw->e_sram_read_bit;
        e[SP_E_QKPU] = r->mem_kept * d * hw->e_qk_mac;
        e[SP_E_VPU] = r->kept * d * hw->e_v_mac;
        e[SP_E_SOFTMAX] = r->kept * hw->e_exp + div;
        sp_decode_cost *c = &acc[SP_DDESIGN_SPRINT];
        c->write_cycles += write_cyc;
        c->screen_cycles += screen;
        c->array_write_pj += r->cells_written * (double)msb_bits * hw->e_reram_write_bit;
        c->bytes_read += F * (lsb_bytes + d);
        c->bytes_written += kv_write_bits / 8.0;
        finish(c, e, write_cyc + screen + fmax(fetch, comp));
    }
    /* ---- dense: stream K and V of all n keys ---- */
    {
        double e[SP_E_COUNT] = {0};
        double mem = stream(hw, n, d) + stream(hw, n, d);
        double comp = pu_cycles(hw, g * n, d, hw->qk_lanes) + ceil(g * n / hw->sm_per_cycle) +
                      pu_cycles(hw, g * n, d, hw->v_lanes) + pipe;
        e[SP_E_RERAM_WRITE] = kv_write_bits * hw->e_reram_write_bit;
        e[SP_E_RERAM_READ] = n * 2.0 * d * 8.0 * hw->e_reram_read_bit;
        e[SP_E_ONCHIP_WRITE] = n * 2.0 * d * 8.0 * hw->e_sram_write_bit;
        e[SP_E_ONCHIP_READ] = g * n * 2.0 * d * 8.0 * hw->e_sram_read_bit;
        e[SP_E_QKPU] = g * n * d * hw->e_qk_mac;
        e[SP_E_VPU] = g * n * d * hw->e_v_mac;
        e[SP_E_SOFTMAX] = g * n * hw->e_exp + div;
        sp_decode_cost *c = &acc[SP_DDESIGN_DENSE];
        c->bytes_read += n * 2.0 * d;
        c->bytes_written += kv_write_bits / 8.0;
        finish(c, e, fmax(mem, comp));
    }
    /* ---- digital top-k / threshold: all keys scored digitally, values of survivors fetched ---- */
    {
        double e[SP_E_COUNT] = {0};
        double t1 = fmax(stream(hw, n, d), pu_cycles(hw, g * n, d, hw->qk_lanes));
        double t2 = fmax(stream(hw, F, d), ceil(r->kept / hw->sm_per_cycle) + pu_cycles(hw, r->kept, d, hw->v_lanes));
        e[SP_E_RERAM_WRITE] = kv_write_bits * hw->e_reram_write_bit;
        e[SP_E_RERAM_READ] = (n + F) * d * 8.0 * hw->e_reram_read_bit;
        e[SP_E_ONCHIP_WRITE] = (n + F) * d * 8.0 * hw->e_sram_write_bit;
        e[SP_E_ONCHIP_READ] = (g * n * d + r->kept * d) * 8.0 * hw->e_sram_read_bit;
        e[SP_E_QKPU] = g * n * d * hw->e_qk_mac;
        e[SP_E_VPU] = r->kept * d * hw->e_v_mac;
        e[SP_E_SOFTMAX] = r->kept * hw->e_exp + div;
        sp_decode_cost *c = &acc[SP_DDESIGN_TOPK];
        c->bytes_read += (n + F) * d;
        c->bytes_written += kv_write_bits / 8.0;
        finish(c, e, t1 + t2 + pipe);
    }
}
