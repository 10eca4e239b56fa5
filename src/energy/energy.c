/* energy.c: per-event energy (paper section 3 constants, section 5.3 categories).
 * Every figure is count x energy-per-event; the sources of the energies are in
 * include/sprint/keys_hardware.def and docs/simulator.md. */
#include "energy/energy.h"

void sp_energy_from_counts(const sp_hw *hw, const sp_counts *n, double e[SP_E_COUNT], double *write_once_pj) {
    e[SP_E_RERAM_READ] = n->reram_read_bytes * 8.0 * hw->e_reram_read_bit;
    e[SP_E_RERAM_WRITE] = n->reram_write_bytes * 8.0 * hw->e_reram_write_bit;
    /* CopyQ moves the query inside the memory (a read of d bytes, paper section 2.3). */
    e[SP_E_PRUNE] = n->imc_macs * hw->e_imc_mac + n->compares * hw->e_comparator +
                    n->copyq_bytes * 8.0 * hw->e_reram_read_bit;
    e[SP_E_ONCHIP_READ] = n->sram_read_bytes * 8.0 * hw->e_sram_read_bit;
    e[SP_E_ONCHIP_WRITE] = n->sram_write_bytes * 8.0 * hw->e_sram_write_bit;
    e[SP_E_QKPU] = n->qk_macs * hw->e_qk_mac;
    e[SP_E_VPU] = n->v_macs * hw->e_v_mac;
    e[SP_E_SOFTMAX] = n->exps * hw->e_exp + n->divs * hw->e_div;
    if (write_once_pj) *write_once_pj = e[SP_E_RERAM_WRITE];
}

double sp_energy_total_by_event(const sp_hw *hw, const sp_counts *n) {
    double reram_bits_read = (n->reram_read_bytes + n->copyq_bytes) * 8.0;
    double sram_pj = n->sram_read_bytes * 8.0 * hw->e_sram_read_bit + n->sram_write_bytes * 8.0 * hw->e_sram_write_bit;
    double digital_pj = n->qk_macs * hw->e_qk_mac + n->v_macs * hw->e_v_mac + n->exps * hw->e_exp + n->divs * hw->e_div;
    return reram_bits_read * hw->e_reram_read_bit + n->reram_write_bytes * 8.0 * hw->e_reram_write_bit +
           n->imc_macs * hw->e_imc_mac + n->compares * hw->e_comparator + sram_pj + digital_pj;
}
