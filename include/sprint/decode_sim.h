/* sprint/decode_sim.h: the simulator's decode mode (issue 12): per generated token, timing
 * and energy of one (layer, KV head group) step for SPRINT and two baselines, from the
 * functional decode records (sprint/fn_decode.h).
 *
 * Designs (one accelerator of size hw: CORELETs, buffers, memory of keys_hardware.def):
 *   SPRINT   the new key's MSB column is written into the ReRAM array (write pulses of
 *            decode.reram_write_ns), the group's g queries each read every array holding the
 *            n keys (one crossbar read + comparison per head: the comparator is time-shared),
 *            the union of survivors is fetched (K LSBs + 8-bit V), recomputed and summed.
 *   dense    streams the whole cache (8-bit K and V) every step and computes all n keys for
 *            each of the g heads (the bandwidth-bound baseline).
 *   topk     digital threshold / top-k: streams every 8-bit key, scores all n in the QK-PU,
 *            keeps the same survivors as SPRINT and fetches only their values.
 * Every design writes the new token's 8-bit K and V to main memory (2 d bytes per KV head).
 * Step time: SPRINT = write + screen + max(fetch, compute) (conservative: the write is not
 * overlapped with the read of the same arrays); baselines = max(memory, compute) per phase.
 * Memory time comes from the analytical stream model (sp_mem_stream_time), optimistic for
 * scattered survivors (it assumes the row-buffer locality of a stream). */
#ifndef SPRINT_DECODE_SIM_H
#define SPRINT_DECODE_SIM_H

#include "sprint/fn_decode.h"
#include "sprint/sim.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { SP_DDESIGN_SPRINT = 0, SP_DDESIGN_DENSE = 1, SP_DDESIGN_TOPK = 2, SP_DDESIGN_COUNT = 3 };
const char *sp_ddesign_name(int design); /* "sprint", "dense", "topk" */

typedef struct sp_decode_cost {
    double cycles;                  /* core cycles */
    double write_cycles;            /* of which: ReRAM array write (SPRINT) */
    double screen_cycles;           /* of which: in-memory screen (SPRINT) */
    double energy_pj[SP_E_COUNT];   /* categories of sp_energy_cat */
    double energy_pj_total;
    double array_write_pj;          /* of reram_write: the MSB column programmed (SPRINT) */
    double bytes_read, bytes_written;
} sp_decode_cost;

/* Adds the cost of one record's step (one layer, one KV head group) to acc[SP_DDESIGN_COUNT].
 * d: head dimension; msb_bits: b; write_ns: decode.reram_write_ns; clock_mhz: chip clock. */
void sp_decode_sim_step(const sp_hw *hw, const sp_decode_record *r, int d, int msb_bits, double write_ns,
                        double clock_mhz, sp_decode_cost acc[SP_DDESIGN_COUNT]);

#ifdef __cplusplus
}
#endif
#endif
