/* sprint/fn_decode.h: SPRINT decoding in the functional model (issue 12).
 *
 * An attention operator for one query per call over a KV cache that grows by one key per
 * step (sp_model_step, or the synthetic decode workload). It keeps, per (layer, KV head), the
 * in-memory arrays of one sequence: at each step the new key is quantised to 8 bits (one
 * scale per key row: the array is written a key at a time, so no tensor-wide scale exists
 * yet), split into its b MSBs, written into the next ReRAM column (one write of d cells), and
 * its 8 - b LSBs and value go to main memory. Then each query head's query is screened
 * against every key written so far by the array (DAC, cell conductances with their
 * non-idealities, read noise, comparator offset: reram.c), a relative threshold keeps keys
 * whose estimate is within decode.delta of the larger exact score of two on-chip anchors (the
 * first key and the new key), the survivors are fetched, recomputed exactly, thresholded
 * again (within decode.delta of the survivors' maximum) and enter softmax.
 *
 * GQA as the hardware does it: the query heads of a group screen the same arrays (one copy of
 * the keys per KV head). The per-column comparator is time-shared: one crossbar read and one
 * comparison per query head, g reads per step, each with that head's reference; the pruning
 * vectors are OR-ed, and the union of survivors is fetched once into the on-chip buffer, from
 * which each head recomputes only its own survivors.
 *
 * Per (layer, KV head, step) the operator reports a record: visible keys, the heads' in-memory
 * and final survivors, the group's fetched union, how many of them the previous step had not
 * fetched (new keys to bring on chip if the buffer keeps the previous step's survivors), and
 * the cells written. Calls must come per step in head order for each layer (sp_model_step
 * does this); the operator refuses calls that are not one query at the end of a causal cache. */
#ifndef SPRINT_FN_DECODE_H
#define SPRINT_FN_DECODE_H

#include "sprint/attention.h"
#include "sprint/config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_decode_record {
    int layer, kv_head, pos;  /* pos: the new token's position (keys visible = pos + 1) */
    long long seq_id;
    int group;                /* query heads screening this array */
    int n_visible;
    double mem_kept;          /* sum over the group's heads of keys kept by the comparator */
    double kept;              /* sum over the group's heads of keys entering softmax */
    int fetched;              /* union over the group of comparator survivors (fetched once) */
    int new_fetched;          /* of those, keys the previous step did not fetch */
    int cells_written;        /* MSB cells programmed this step (d: one key column) */
    int write_pulses;         /* column writes: ceil(d / memory.xbar_rows) */
    double max_writes_per_cell; /* largest write count of any cell of this array so far */
} sp_decode_record;

typedef void (*sp_decode_observer)(void *user, const sp_decode_record *rec);

/* Builds the operator (named "sprint-decode") for n_layers x n_heads query heads over
 * n_kv_heads KV heads of dimension d, sequences of up to capacity tokens, from cfg's reram,
 * quant (msb_bits) and decode keys. observer (may be NULL) gets every record. The operator
 * also fills the usual sp_attn_stats. SP_ERR_ARG / SP_ERR_CONFIG on a bad shape or config. */
sp_status sp_fn_decode_op_create(const sp_config *cfg, int n_layers, int n_heads, int n_kv_heads, int d, int capacity,
                                 sp_decode_observer observer, void *observer_user, sp_attn_op **out, sp_error *err);

/* Writes keys [0, n) of one (layer, KV head) into a sprint-decode operator's arrays without
 * screening (the prompt of a synthetic decode run: its keys are written as a sequence
 * starts). k is (n, d) with row stride ldk. Decode steps then continue at position n.
 * SP_ERR_ARG when op is not a sprint-decode operator or the shape does not fit. */
sp_status sp_fn_decode_prefill(sp_attn_op *op, int layer, int kv_head, long long seq_id, const float *k, int ldk, int n,
                               sp_error *err);

#ifdef __cplusplus
}
#endif
#endif
