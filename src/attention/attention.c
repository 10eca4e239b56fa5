/* attention.c: the operator shell, masks, statistics and the dense reference operator.
 *
 * The dense operator is the reference every other operator is tested against: scores and
 * the softmax-weighted sum are accumulated in double and written as plain loops. */
#include "sprint/attention.h"

#include "attention/scores.h"
#include "attention/wsum.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

sp_attn_op *sp_attn_op_alloc(const char *name, int n_layers, int n_heads) {
    SP_ASSERT(n_layers > 0 && n_heads > 0);
    sp_attn_op *op = sp_xcalloc(1, sizeof *op);
    op->name = name;
    op->n_layers = n_layers;
    op->n_heads = n_heads;
    op->stats = sp_xcalloc((size_t)n_layers * (size_t)n_heads, sizeof *op->stats);
    return op;
}

void sp_attn_op_free(sp_attn_op *op) {
    if (!op) return;
    if (op->destroy) op->destroy(op);
    free(op->stats);
    free(op);
}

void sp_attn_op_reset_stats(sp_attn_op *op) {
    memset(op->stats, 0, (size_t)op->n_layers * (size_t)op->n_heads * sizeof *op->stats);
}

void sp_attn_stats_add(sp_attn_stats *acc, const sp_attn_stats *s) {
    acc->queries += s->queries;
    acc->pairs_visible += s->pairs_visible;
    acc->pairs_kept += s->pairs_kept;
    acc->pairs_mem_kept += s->pairs_mem_kept;
    acc->exact_pass += s->exact_pass;
    acc->false_prunes += s->false_prunes;
    acc->false_keeps += s->false_keeps;
    acc->mass_lost += s->mass_lost;
    acc->reuse_pairs += s->reuse_pairs;
    acc->new_fetch += s->new_fetch;
    acc->prev_kept += s->prev_kept;
    acc->later_visible += s->later_visible;
}

static double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }
double sp_attn_stats_kept_fraction(const sp_attn_stats *s) { return ratio(s->pairs_kept, s->pairs_visible); }
double sp_attn_stats_mem_kept_fraction(const sp_attn_stats *s) { return ratio(s->pairs_mem_kept, s->pairs_visible); }
double sp_attn_stats_false_prune_rate(const sp_attn_stats *s) { return ratio(s->false_prunes, s->exact_pass); }
double sp_attn_stats_locality(const sp_attn_stats *s) { return ratio(s->reuse_pairs, s->prev_kept); }
double sp_attn_stats_new_fetch_fraction(const sp_attn_stats *s) { return ratio(s->new_fetch, s->later_visible); }

void sp_attn_stats_total(const sp_attn_op *op, sp_attn_stats *out) {
    memset(out, 0, sizeof *out);
    for (int i = 0; i < op->n_layers * op->n_heads; i++) sp_attn_stats_add(out, &op->stats[i]);
}

sp_status sp_attn_head_check(const sp_attn_head *h, sp_error *err) {
    if (!h || !h->q || !h->k || !h->v || !h->out)
        return sp_error_set(err, SP_ERR_ARG, "attention head: null tensor pointer");
    if (h->n_q < 0 || h->n_k < 0 || h->d <= 0)
        return sp_error_set(err, SP_ERR_ARG, "attention head: bad shape n_q=%d n_k=%d d=%d", h->n_q, h->n_k, h->d);
    if (h->ldq < h->d || h->ldk < h->d || h->ldv < h->d || h->ldo < h->d)
        return sp_error_set(err, SP_ERR_ARG, "attention head: row stride smaller than d=%d", h->d);
    if (h->causal && (h->q_offset < 0 || (long long)h->q_offset + h->n_q > h->n_k))
        return sp_error_set(err, SP_ERR_ARG, "attention head: causal queries [%d, %d) outside %d keys", h->q_offset,
                            h->q_offset + h->n_q, h->n_k);
    return SP_OK;
}

int sp_attn_visible(const sp_attn_head *h, int qi, int32_t *idx) {
    int end = h->causal ? h->q_offset + qi + 1 : h->n_k;
    int n = 0;
    for (int j = 0; j < end; j++)
        if (!h->key_valid || h->key_valid[j]) idx[n++] = j;
    return n;
}

void sp_attn_softmax_wsum(const sp_attn_head *h, const int32_t *idx, const double *scores, int n, float *out_row) {
    int d = h->d;
    if (n == 0) {
        memset(out_row, 0, (size_t)d * sizeof *out_row);
        return;
    }
    double mx = scores[0];
    for (int j = 1; j < n; j++)
        if (scores[j] > mx) mx = scores[j];
    /* exp(scores[j] - mx) is computed once per key and kept (the same value enters the
     * denominator and the weight, so this is bit-identical to evaluating it twice). */
    double ebuf[1024];
    double *e = n <= 1024 ? ebuf : sp_xmalloc((size_t)n, sizeof *e);
    double denom = 0.0;
    for (int j = 0; j < n; j++) {
        e[j] = exp(scores[j] - mx);
        denom += e[j];
    }
    for (int j = 0; j < n; j++) e[j] = e[j] / denom; /* the weights p_j */
    /* out[c] = sum_j p_j v_j[c] in double, in key order (attention/wsum.h: vectorised over
     * columns at the AVX-512 level, the same bits as the plain loop) */
    double acc[512];
    double *a = d <= 512 ? acc : sp_xcalloc((size_t)d, sizeof *a);
    sp_attn_wsum(d, n, idx, e, h->v, (long)h->ldv, a);
    for (int c = 0; c < d; c++) out_row[c] = (float)a[c];
    if (a != acc) free(a);
    if (e != ebuf) free(e);
}

/* Statistics of one valid query that keeps all its n visible keys (shared by the reference
 * and the fast dense operator so both count identically). */
static inline void dense_count(sp_attn_stats *st, int n, int *prev_n) {
    st->queries += 1;
    st->pairs_visible += n;
    st->pairs_kept += n;
    st->pairs_mem_kept += n;
    st->exact_pass += n;
    if (*prev_n >= 0) {
        /* Dense keeps every visible key; with causal masks the previous query's keys
         * are a subset of this one's, so the overlap is the previous count. */
        int ov = *prev_n < n ? *prev_n : n;
        st->reuse_pairs += ov;
        st->new_fetch += n - ov;
        st->prev_kept += n;
        st->later_visible += n;
    }
    *prev_n = n;
}

/* The head's checks plus its (layer, head) inside the op's stats table: *st is its slot. */
sp_status sp_attn_op_check(sp_attn_op *op, const sp_attn_head *h, sp_attn_stats **st, sp_error *err) {
    sp_status s = sp_attn_head_check(h, err);
    if (s != SP_OK) return s;
    if (h->layer < 0 || h->layer >= op->n_layers || h->head < 0 || h->head >= op->n_heads)
        return sp_error_set(err, SP_ERR_ARG, "attention head: layer %d head %d outside the operator's %d x %d",
                            h->layer, h->head, op->n_layers, op->n_heads);
    *st = &op->stats[h->layer * op->n_heads + h->head];
    return SP_OK;
}

int sp_attn_scores_ref(const sp_attn_head *h, int qi, const int32_t *idx, int n, double *scores) {
    /* double sums in column order, the same bits at every CPU level (attention/scores.h) */
    sp_attn_scores(h->d, n, idx, h->q + (size_t)qi * (size_t)h->ldq, h->k, (long)h->ldk, h->scale, scores);
    for (int j = 0; j < n; j++)
        if (!isfinite(scores[j])) return j;
    return -1;
}

/* Dense reference: out_i = softmax_j(scale * q_i.k_j) v_j over the visible keys. */
static sp_status dense_run(sp_attn_op *op, const sp_attn_head *h, sp_error *err) {
    sp_attn_stats *st = NULL;
    sp_status s = sp_attn_op_check(op, h, &st, err);
    if (s != SP_OK) return s;
    int32_t *idx = sp_xmalloc((size_t)h->n_k + 1, sizeof *idx);
    double *sc = sp_xmalloc((size_t)h->n_k + 1, sizeof *sc);
    int prev_n = -1;
    for (int i = 0; i < h->n_q; i++) {
        float *orow = h->out + (size_t)i * (size_t)h->ldo;
        if (h->query_valid && !h->query_valid[i]) {
            memset(orow, 0, (size_t)h->d * sizeof *orow);
            continue;
        }
        int n = sp_attn_visible(h, i, idx);
        int bad = sp_attn_scores_ref(h, i, idx, n, sc);
        if (bad >= 0) {
            int key = idx[bad];
            free(idx);
            free(sc);
            return sp_error_set(err, SP_ERR_DATA, "attention layer %d head %d: non-finite score at query %d key %d",
                                h->layer, h->head, i, key);
        }
        sp_attn_softmax_wsum(h, idx, sc, n, orow);
        dense_count(st, n, &prev_n);
        if (op->observer) {
            sp_query_record r = {.layer = h->layer, .head = h->head, .seq_id = h->seq_id, .qi = i,
                                 .pos = h->q_offset + i, .n_k = h->n_k, .n_visible = n, .n_mem_kept = n,
                                 .mem_kept = idx, .n_kept = n, .kept = idx};
            op->observer(op->observer_user, &r);
        }
    }
    free(idx);
    free(sc);
    return SP_OK;
}

sp_attn_op *sp_attn_dense_create(int n_layers, int n_heads) {
    sp_attn_op *op = sp_attn_op_alloc("dense-ref", n_layers, n_heads);
    op->run = dense_run;
    return op;
}

/* The fast dense operator is the flash kernel (flash.c): cache-blocked, online softmax,
 * AVX-512 / AVX2 / portable chosen at run time. */
sp_attn_op *sp_attn_dense_fast_create(int n_layers, int n_heads) { return sp_attn_flash_create(n_layers, n_heads); }
