/* heads.h: what bench_attention and bench_fn_op share (bench/heads.c): the synthetic attention
 * heads (the simulator's BERT-L preset generator and a clustered generator), the threshold
 * calibration for a target kept fraction, and the thread CPU clock. */
#ifndef SPRINT_BENCH_HEADS_H
#define SPRINT_BENCH_HEADS_H

#include "sprint/attention.h"

typedef struct head {
    int L, d, causal;
    float *q, *k, *v;
    void *base[3]; /* the allocations (q, k, v start env BENCH_OFFSET bytes into them) */
} head;

/* data "bert-l": the simulator's BERT-L synthetic head (workload.* defaults), head index hi;
 * Q, K and V start on 64-byte boundaries, or env BENCH_OFFSET bytes (a multiple of 4, 0-60)
 * past one (16: where glibc's malloc puts arrays of these sizes);
 * otherwise clustered: tokens come in runs of 32 sharing one of 16 centroids; a query is 3x its
 * centroid plus noise, a key its centroid plus noise, so each query attends to the keys of its
 * own cluster (~1/16 of the sequence). Exits with a message if the preset is missing. */
void head_make(head *h, int L, int d, int causal, const char *data, int hi);
void head_free(head *h);
/* env BENCH_OFFSET (bytes; 0 when unset), or exits with a message when it is not a multiple of
 * 4 in 0-60: the benches call it first, so a bad value fails before any timing. */
int head_offset(void);
/* The whole head as one sp_attn_head writing to out (L x d), scale 1/sqrt(d). */
sp_attn_head head_attn(const head *h, float *out);
/* Threshold (nats) keeping about `target` of the visible pairs of head h: the quantile of the
 * exact (double) scores q.k / sqrt(d) of 64 evenly spaced queries. */
double head_quantile_threshold(const head *h, double target);
/* CPU time of the calling thread, seconds: on a shared, oversubscribed machine wall time mostly
 * measures the scheduler; one-thread kernels run entirely on the calling thread. */
double bench_thread_cpu_s(void);
/* qsort comparator of doubles, ascending. */
int bench_cmp_double(const void *a, const void *b);

#endif
