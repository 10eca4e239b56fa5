/* sprint/attention.h: the attention operator interface.
 *
 * The model runner hands every (layer, head) of every sequence to an operator through this
 * interface; the operator writes the head's output and counts what it kept. The dense
 * reference operator lives in src/attention/attention.c; the SPRINT operators (pruning,
 * SPRINT without recompute, SPRINT) in src/functional/ plug in the same way, so the runner
 * never changes when an operator is added.
 *
 * Masks: query i (0-based within the call) sees key j iff key_valid[j] (padding removed,
 * paper section "2D sequence reduction", mask only) and, when causal, j <= q_offset + i.
 * A query with query_valid[i] == 0 is a padding row: its output row is zero and it is not
 * counted. A valid query that sees no key also gets a zero row. */
#ifndef SPRINT_ATTENTION_H
#define SPRINT_ATTENTION_H

#include <stdint.h>

#include "sprint/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_attn_head {
    int layer, head, kv_head; /* identification: stats slot, thresholds, RNG streams */
    long long seq_id;         /* identifies the sequence (window); RNG streams, residency */
    int n_q, n_k, d;          /* queries, keys, head dimension */
    const float *q;           /* (n_q, d), row stride ldq floats */
    const float *k;           /* (n_k, d), row stride ldk */
    const float *v;           /* (n_k, d), row stride ldv */
    float *out;               /* (n_q, d), row stride ldo: written by the operator */
    int ldq, ldk, ldv, ldo;
    int causal;               /* 1: query i sees keys [0, q_offset + i] */
    int q_offset;             /* key index of query 0 */
    const unsigned char *key_valid;   /* (n_k), 0 = padding key; NULL = all valid */
    const unsigned char *query_valid; /* (n_q), 0 = padding query; NULL = all valid */
    float scale;              /* score = scale * q.k (1/sqrt(d) in the transformer) */
} sp_attn_head;

/* Counters of one (layer, head), summed over its queries. Pair counts are exact integers
 * held in doubles. "Kept in memory" = the in-memory comparator kept the key, so it is
 * fetched and recomputed; "kept" = it also passed the exact threshold and enters softmax.
 * For dense attention every visible pair is kept in both senses. */
typedef struct sp_attn_stats {
    double queries;        /* valid queries processed */
    double pairs_visible;  /* (query, key) pairs visible after causal and padding masks */
    double pairs_kept;     /* pairs entering softmax */
    double pairs_mem_kept; /* pairs kept by the in-memory comparator (fetched, recomputed) */
    double exact_pass;     /* pairs whose exact score passes the threshold */
    double false_prunes;   /* pruned in memory although the exact score passes */
    double false_keeps;    /* kept in memory although the exact score fails */
    double mass_lost;      /* sum over queries of the dense softmax mass not kept */
    double reuse_pairs;    /* sum over queries of |mem_kept(i) and mem_kept(i-1)| */
    double new_fetch;      /* sum over queries of |mem_kept(i) minus mem_kept(i-1)| */
    double prev_kept;      /* sum over queries i>0 of |mem_kept(i)| (denominator of locality) */
    double later_visible;  /* sum over queries i>0 of n_visible (denominator of new_fetch) */
} sp_attn_stats;

/* Derived figures, each 0 when its denominator is 0:
 * kept_fraction      = pairs_kept / pairs_visible
 * mem_kept_fraction  = pairs_mem_kept / pairs_visible
 * false_prune_rate   = false_prunes / exact_pass
 * locality           = reuse_pairs / prev_kept (share of a query's survivors the previous
 *                      query also kept)
 * new_fetch_fraction = new_fetch / later_visible (newly fetched keys per query as a
 *                      fraction of the visible sequence length; the paper reports 2.1%) */
double sp_attn_stats_kept_fraction(const sp_attn_stats *s);
double sp_attn_stats_mem_kept_fraction(const sp_attn_stats *s);
double sp_attn_stats_false_prune_rate(const sp_attn_stats *s);
double sp_attn_stats_locality(const sp_attn_stats *s);
double sp_attn_stats_new_fetch_fraction(const sp_attn_stats *s);

/* One query's pruning result, handed to an observer (the architecture simulator, trace
 * writers) in query order within a head call. Calls for different heads may come from
 * different threads at the same time; calls for one head never overlap. Arrays are valid
 * only during the call. */
typedef struct sp_query_record {
    int layer, head;
    long long seq_id;
    int qi;                   /* query index within the call */
    int pos;                  /* key index of this query's own token (q_offset + qi) */
    int n_k;                  /* keys in the sequence */
    int n_visible;            /* keys this query may see */
    int n_mem_kept;           /* keys the in-memory comparator kept: fetched and recomputed */
    const int32_t *mem_kept;  /* sorted ascending */
    int n_kept;               /* keys entering softmax (subset of mem_kept) */
    const int32_t *kept;      /* sorted ascending */
    int n_false_prunes, n_false_keeps;
    double mass_lost;         /* dense softmax mass of the keys not kept */
    int has_score_spread;     /* 1 when score_spread is set (ops reporting to an observer) */
    double score_spread;      /* std of the scaled scores over the visible keys, nats */
} sp_query_record;

typedef void (*sp_query_observer)(void *user, const sp_query_record *rec);

typedef struct sp_attn_op sp_attn_op;
struct sp_attn_op {
    const char *name;        /* "dense", "pruning", "sprint-norecompute", "sprint" */
    int n_layers, n_heads;
    sp_attn_stats *stats;    /* (n_layers * n_heads), owned by the op; index layer*n_heads+head */
    sp_query_observer observer;
    void *observer_user;
    void *ctx;               /* operator-specific state */
    /* Computes h->out and updates stats[h->layer * n_heads + h->head]. Must be safe to call
     * concurrently for distinct (layer, head); calls for one head come in sequence order. */
    sp_status (*run)(sp_attn_op *op, const sp_attn_head *h, sp_error *err);
    void (*destroy)(sp_attn_op *op); /* frees ctx (not the op or stats) */
};

/* Allocates an op shell with zeroed stats; used by every operator constructor. */
sp_attn_op *sp_attn_op_alloc(const char *name, int n_layers, int n_heads);
/* Frees op, its ctx (through destroy) and its stats. NULL is a no-op. */
void sp_attn_op_free(sp_attn_op *op);
/* Zeroes every stats slot. */
void sp_attn_op_reset_stats(sp_attn_op *op);
/* Sums stats over every layer and head. */
void sp_attn_stats_total(const sp_attn_op *op, sp_attn_stats *out);
void sp_attn_stats_add(sp_attn_stats *acc, const sp_attn_stats *s);

/* The dense reference operator (named "dense-ref"): exact softmax(scale * q.k) v over the visible keys,
 * accumulated in double, written for clarity. Calls the observer with every visible key
 * kept. Returns SP_ERR_DATA on a NaN or infinite score. */
sp_attn_op *sp_attn_dense_create(int n_layers, int n_heads);

/* The fast dense operator (named "dense"): the flash operator below (it was a separate
 * float path before issue 9); tested against the reference. */
sp_attn_op *sp_attn_dense_fast_create(int n_layers, int n_heads);

/* The flash operator (also named "dense", the one sp_attn_op_create gives for mode dense and
 * the model runner uses): cache-blocked flash attention with an online softmax and a
 * vectorised exp, AVX-512 / AVX2 / portable chosen at run time (src/cpu/cpu.h); statistics
 * as the reference counts them. An op with an observer, d > 512 or a head with non-finite
 * inputs goes through the reference code (which reports the bad query and key). */
sp_attn_op *sp_attn_flash_create(int n_layers, int n_heads);

/* Validates a head description (dimensions, strides, pointers); SP_ERR_ARG on a bad one. */
sp_status sp_attn_head_check(const sp_attn_head *h, sp_error *err);

/* What every operator's run() checks first: the head description (sp_attn_head_check) and
 * that (layer, head) has a stats slot in op; on success *st points at that slot. SP_ERR_ARG
 * otherwise, so a bad head is refused instead of written out of bounds. */
sp_status sp_attn_op_check(sp_attn_op *op, const sp_attn_head *h, sp_attn_stats **st, sp_error *err);

/* Visible keys of query qi, written ascending into idx (capacity n_k); returns the count. */
int sp_attn_visible(const sp_attn_head *h, int qi, int32_t *idx);

/* Reference scores of query qi against keys idx[0..n): scores[j] = scale * q.k in double.
 * Returns the first j whose score is not finite, or -1. */
int sp_attn_scores_ref(const sp_attn_head *h, int qi, const int32_t *idx, int n, double *scores);

/* Reference softmax-weighted sum over a subset of keys, in double: out_row = sum_j p_j v_j,
 * p = softmax(scores over idx). scores[j] holds the score of key idx[j]. Shared by the dense
 * operator and by the float arithmetic mode of the SPRINT operators, so that a threshold of
 * minus infinity reproduces dense attention bit for bit. */
void sp_attn_softmax_wsum(const sp_attn_head *h, const int32_t *idx, const double *scores, int n,
                          float *out_row);

#ifdef __cplusplus
}
#endif
#endif
