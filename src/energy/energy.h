/* energy.h: event counts of one design and their energy in the paper's eight categories
 * (paper section 5.3: ReRAM read, ReRAM write, in-ReRAM pruning, on-chip read, on-chip
 * write, QK-PU, V-PU, softmax). Per-event energies are sp_hw fields from energy.* keys. */
#ifndef SPRINT_ENERGY_ENERGY_H
#define SPRINT_ENERGY_ENERGY_H

#include "sprint/sim.h"

typedef struct sp_counts {
    double reram_read_bytes;    /* main-memory bytes read (Q, K, V, pruning vectors) */
    double reram_write_bytes;   /* Q, K, V written once per sequence */
    double imc_macs;            /* in-memory q.K_MSB multiply-accumulates */
    double compares;            /* comparator decisions (one per key per query) */
    double copyq_bytes;         /* CopyQ bank-to-bank query copies */
    double sram_read_bytes, sram_write_bytes;
    double qk_macs, v_macs;
    double exps;                /* softmax exponentials (one per kept score) */
    double divs;                /* normalisations (d per query) */
} sp_counts;

/* e[c] in pJ for every category; *write_once_pj = the write-once share of e[SP_E_RERAM_WRITE]. */
void sp_energy_from_counts(const sp_hw *hw, const sp_counts *n, double e[SP_E_COUNT], double *write_once_pj);
/* The same energy grouped by kind of event instead of by category (ReRAM bits read, CopyQ
 * included; bits written; in-memory MACs; comparators; SRAM bits; digital MACs; exponentials;
 * divisions): the independent total that sp_design_result_check compares the breakdown with, so
 * a category that drops or double-counts an event aborts the run. */
double sp_energy_total_by_event(const sp_hw *hw, const sp_counts *n);

#endif
