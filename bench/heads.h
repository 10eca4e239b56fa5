/* heads.h: the synthetic attention heads of bench_attention and bench_fn_op (bench/heads.c):
 * the simulator's BERT-L preset generator and a clustered generator. */
#ifndef SPRINT_BENCH_HEADS_H
#define SPRINT_BENCH_HEADS_H

#include "sprint/attention.h"

typedef struct head {
    int L, d, causal;
    float *q, *k, *v;
} head;

/* data "bert-l": the simulator's BERT-L synthetic head (workload.* defaults), head index hi;
 * otherwise clustered: tokens come in runs of 32 sharing one of 16 centroids; a query is 3x its
 * centroid plus noise, a key its centroid plus noise, so each query attends to the keys of its
 * own cluster (~1/16 of the sequence). Exits with a message if the preset is missing. */
void head_make(head *h, int L, int d, int causal, const char *data, int hi);
void head_free(head *h);
/* The whole head as one sp_attn_head writing to out (L x d), scale 1/sqrt(d). */
sp_attn_head head_attn(const head *h, float *out);

#endif
