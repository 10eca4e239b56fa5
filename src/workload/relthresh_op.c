/* relthresh_op.c: a small built-in pruning operator used when the requested functional mode is
 * not available: query i keeps key j iff scale*q_i.k_j >= max_j' scale*q_i.k_j' - margin.
 * Exact (no in-memory approximation), so mem_kept == kept. Written for clarity: scores in
 * double, output through the shared reference softmax. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sprint/sim.h"

typedef struct relthresh_ctx {
    double margin;
} relthresh_ctx;

static sp_status relthresh_run(sp_attn_op *op, const sp_attn_head *h, sp_error *err) {
    sp_attn_stats *st = NULL;
    sp_status s = sp_attn_op_check(op, h, &st, err);
    if (s != SP_OK) return s;
    const relthresh_ctx *ctx = op->ctx;
    int32_t *idx = sp_xmalloc((size_t)h->n_k + 1, sizeof *idx);
    int32_t *keep = sp_xmalloc((size_t)h->n_k + 1, sizeof *keep);
    int32_t *prev = sp_xmalloc((size_t)h->n_k + 1, sizeof *prev);
    double *sc = sp_xmalloc((size_t)h->n_k + 1, sizeof *sc);
    double *ksc = sp_xmalloc((size_t)h->n_k + 1, sizeof *ksc);
    int n_prev = -1;
    for (int i = 0; i < h->n_q; i++) {
        float *orow = h->out + (size_t)i * (size_t)h->ldo;
        if (h->query_valid && !h->query_valid[i]) {
            memset(orow, 0, (size_t)h->d * sizeof *orow);
            continue;
        }
        int n = sp_attn_visible(h, i, idx);
        if (sp_attn_scores_ref(h, i, idx, n, sc) >= 0) {
            free(idx), free(keep), free(prev), free(sc), free(ksc);
            return sp_error_set(err, SP_ERR_DATA, "relthresh: non-finite score at query %d", i);
        }
        double mx = -INFINITY;
        for (int j = 0; j < n; j++)
            if (sc[j] > mx) mx = sc[j];
        int nk = 0;
        double lost = 0, tot = 0;
        for (int j = 0; j < n; j++) {
            double w = exp(sc[j] - mx);
            tot += w;
            if (sc[j] >= mx - ctx->margin) {
                keep[nk] = idx[j];
                ksc[nk++] = sc[j];
            } else {
                lost += w;
            }
        }
        sp_attn_softmax_wsum(h, keep, ksc, nk, orow);
        st->queries += 1;
        st->pairs_visible += n;
        st->pairs_kept += nk;
        st->pairs_mem_kept += nk;
        st->exact_pass += nk;
        st->mass_lost += tot > 0 ? lost / tot : 0;
        if (n_prev >= 0) {
            int reuse, fetch;
            sp_sld_split(prev, n_prev, keep, nk, &reuse, &fetch);
            st->reuse_pairs += reuse;
            st->new_fetch += fetch;
            st->prev_kept += nk;
            st->later_visible += n;
        }
        memcpy(prev, keep, (size_t)nk * sizeof *prev);
        n_prev = nk;
        if (op->observer) {
            sp_query_record r = {.layer = h->layer, .head = h->head, .seq_id = h->seq_id, .qi = i,
                                 .pos = h->q_offset + i, .n_k = h->n_k, .n_visible = n, .n_mem_kept = nk,
                                 .mem_kept = keep, .n_kept = nk, .kept = keep,
                                 .mass_lost = tot > 0 ? lost / tot : 0};
            if (n > 1) { /* score spread: std of the scaled scores over the visible keys, nats */
                double s1 = 0, s2 = 0;
                for (int j = 0; j < n; j++) s1 += sc[j] - mx, s2 += (sc[j] - mx) * (sc[j] - mx);
                double m = s1 / n, v = s2 / n - m * m;
                r.has_score_spread = 1;
                r.score_spread = v > 0 ? sqrt(v) : 0;
            }
            op->observer(op->observer_user, &r);
        }
    }
    free(idx), free(keep), free(prev), free(sc), free(ksc);
    return SP_OK;
}

static void relthresh_destroy(sp_attn_op *op) { free(op->ctx); }

sp_attn_op *sp_relthresh_op_create(int n_layers, int n_heads, double margin_nats) {
    sp_attn_op *op = sp_attn_op_alloc("relthresh", n_layers, n_heads);
    relthresh_ctx *ctx = sp_xcalloc(1, sizeof *ctx);
    ctx->margin = margin_nats;
    op->ctx = ctx;
    op->run = relthresh_run;
    op->destroy = relthresh_destroy;
    return op;
}
