/* decode_op.c: the functional model of SPRINT decoding (sprint/fn_decode.h): per step the
 * new key is written into the in-memory arrays, each query head of the KV head's group
 * screens all keys so far with the analog score of reram.c, survivors are recomputed exactly.
 * Paper sec. 1.2-1.3 (MSB/LSB split, in-memory score, comparator), applied step by step. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fn_internal.h"
#include "sprint/fn_decode.h"

typedef struct arr {      /* the in-memory arrays of one (layer, KV head) */
    int written;          /* keys written in the current sequence */
    long long seq_id;
    double *g;            /* (cap, d) cell conductances of the MSB levels written */
    float *kscale;        /* (cap) per-key 8-bit scale */
    int8_t *k8;           /* (cap, d) the 8-bit keys (MSB in the array, LSB in memory) */
    unsigned *writes;     /* (cap) writes of column j (its d cells are written together) */
    unsigned char *prev, *cur; /* (cap) fetched at the previous / this step */
    /* the group's step in progress */
    double mem_kept, kept;
    int pos;
} arr;

typedef struct dctx {
    sp_reram_params rr;
    double delta;
    int n_layers, n_heads, n_kv, group, d, cap, pulses;
    arr *a;               /* (n_layers, n_kv) */
    sp_decode_observer obs;
    void *obs_user;
    /* per-call scratch (calls are sequential: see the header) */
    int32_t *idx, *mem, *keep, *prev_dummy;
    double *sc, *ksc, *est;
    int8_t *qi;
    int *qd;
} dctx;

static void dctx_free(sp_attn_op *op) {
    dctx *c = op->ctx;
    if (!c) return;
    for (int i = 0; i < c->n_layers * c->n_kv; i++) {
        arr *a = &c->a[i];
        free(a->g), free(a->kscale), free(a->k8), free(a->writes), free(a->prev), free(a->cur);
    }
    free(c->a), free(c->idx), free(c->mem), free(c->keep), free(c->sc), free(c->ksc), free(c->est), free(c->qi),
        free(c->qd);
    free(c);
}

/* Writes key `pos` of the head's cache into the array: 8-bit quantisation with its own scale,
 * the MSB levels programmed as conductances (sp_reram_cell: device variation, stuck cells). */
static void write_key(dctx *c, arr *a, const sp_attn_head *h, int pos) {
    int d = c->d, b = c->rr.msb_bits;
    const float *k = h->k + (size_t)pos * (size_t)h->ldk;
    sp_quant_rows(k, 1, d, d, 1, NULL, a->k8 + (size_t)pos * d, &a->kscale[pos]);
    for (int e = 0; e < d; e++) {
        int m = sp_key_msb(a->k8[(size_t)pos * d + e], b);
        a->g[(size_t)pos * d + e] = sp_reram_cell(&c->rr, h->layer, h->kv_head, pos, e, m);
    }
    a->writes[pos]++;
    a->written = pos + 1;
}

static sp_status decode_run(sp_attn_op *op, const sp_attn_head *h, sp_error *err) {
    sp_attn_stats *st = NULL;
    sp_status s = sp_attn_op_check(op, h, &st, err);
    if (s != SP_OK) return s;
    dctx *c = op->ctx;
    int pos = h->q_offset, d = c->d, b = c->rr.msb_bits;
    if (h->n_q != 1 || !h->causal || h->n_k != pos + 1 || h->key_valid || h->query_valid)
        return sp_error_set(err, SP_ERR_ARG, "sprint-decode: takes one query at the end of a causal cache per call "
                            "(n_q = 1, n_k = q_offset + 1, no padding); got n_q %d, n_k %d, q_offset %d",
                            h->n_q, h->n_k, h->q_offset);
    if (h->d != d || pos >= c->cap || h->kv_head != h->head / c->group)
        return sp_error_set(err, SP_ERR_ARG, "sprint-decode: head dim %d (op %d), position %d (capacity %d), KV head "
                            "%d of head %d (group %d)", h->d, d, pos, c->cap, h->kv_head, h->head, c->group);
    arr *a = &c->a[h->layer * c->n_kv + h->kv_head];
    int first = h->head % c->group == 0, last = h->head % c->group == c->group - 1;
    if (first) {
        if (pos == 0 || a->seq_id != h->seq_id) { /* a new sequence: columns are rewritten from 0 */
            if (pos != 0)
                return sp_error_set(err, SP_ERR_ARG, "sprint-decode: sequence %lld starts at position %d, not 0 (write "
                                    "its prompt with sp_fn_decode_prefill)", h->seq_id, pos);
            a->written = 0;
            a->seq_id = h->seq_id;
            memset(a->prev, 0, (size_t)c->cap);
        }
        if (a->written != pos)
            return sp_error_set(err, SP_ERR_ARG, "sprint-decode: step at position %d but %d keys written (steps must "
                                "come in order)", pos, a->written);
        write_key(c, a, h, pos);
        memset(a->cur, 0, (size_t)pos + 1);
        a->mem_kept = a->kept = 0;
        a->pos = pos;
    } else if (a->pos != pos || a->written != pos + 1) {
        return sp_error_set(err, SP_ERR_ARG, "sprint-decode: head %d at position %d before its group's first head",
                            h->head, pos);
    }
    /* the query: 8-bit, DAC levels */
    float sq;
    sp_quant_rows(h->q, 1, d, d, 1, NULL, c->qi, &sq);
    long qsum = 0;
    for (int e = 0; e < d; e++) {
        c->qd[e] = sp_dac_level(c->qi[e], c->rr.dac_bits);
        qsum += c->qi[e];
    }
    double step = sp_dac_step(c->rr.dac_bits), lsb_unit = (double)(1 << (8 - b));
    double center = sp_key_msb_center(b);
    int n = pos + 1;
    for (int j = 0; j < n; j++) c->idx[j] = j;
    /* exact scores of every key (for the anchors, the statistics and the recompute) */
    if (sp_attn_scores_ref(h, 0, c->idx, n, c->sc) >= 0)
        return sp_error_set(err, SP_ERR_DATA, "sprint-decode: non-finite score at layer %d head %d position %d",
                            h->layer, h->head, pos);
    double anchor = fmax(c->sc[0], c->sc[pos]);
    double thr = anchor - c->delta;
    /* in-memory screen: charge of column j -> estimated score; comparator at thr */
    int nm = 0;
    for (int j = 0; j < n; j++) {
        double charge = sp_reram_score_ref(&c->rr, h->layer, h->head, h->kv_head, h->seq_id, pos, j, c->qd,
                                           a->g + (size_t)j * d, d) +
                        sp_reram_cmp_offset(&c->rr, h->layer, h->kv_head, j, d);
        /* q.k ~ sq sk (step * lsb_unit * charge + (center - 128) * sum q8) */
        double est = (double)h->scale * sq * a->kscale[j] * (step * lsb_unit * charge + (center - 128.0) * (double)qsum);
        c->est[j] = est;
        if (est >= thr || j == pos) c->mem[nm++] = j; /* the new key is on chip: never pruned */
    }
    /* recompute the survivors exactly, keep those within delta of their maximum */
    double mx = -INFINITY;
    for (int i = 0; i < nm; i++) mx = fmax(mx, c->sc[c->mem[i]]);
    int nk = 0, exact_pass = 0, false_prunes = 0;
    for (int i = 0; i < nm; i++) {
        int j = c->mem[i];
        a->cur[j] = 1;
        if (c->sc[j] >= mx - c->delta) {
            c->keep[nk] = j;
            c->ksc[nk++] = c->sc[j];
        }
    }
    double gmax = -INFINITY, tot = 0, lost = 0;
    for (int j = 0; j < n; j++) gmax = fmax(gmax, c->sc[j]);
    int im = 0, ik = 0;
    for (int j = 0; j < n; j++) {
        int in_mem = im < nm && c->mem[im] == j, in_keep = ik < nk && c->keep[ik] == j;
        im += in_mem, ik += in_keep;
        int pass = c->sc[j] >= gmax - c->delta;
        exact_pass += pass;
        false_prunes += pass && !in_mem;
        double w = exp(c->sc[j] - gmax);
        tot += w;
        if (!in_keep) lost += w;
    }
    sp_attn_softmax_wsum(h, c->keep, c->ksc, nk, h->out);
    st->queries += 1;
    st->pairs_visible += n;
    st->pairs_mem_kept += nm;
    st->pairs_kept += nk;
    st->exact_pass += exact_pass;
    st->false_prunes += false_prunes;
    st->false_keeps += nm - nk;
    st->mass_lost += tot > 0 ? lost / tot : 0;
    a->mem_kept += nm;
    a->kept += nk;
    if (op->observer) {
        sp_query_record rec = {.layer = h->layer, .head = h->head, .seq_id = h->seq_id, .qi = 0, .pos = pos,
                               .n_k = n, .n_visible = n, .n_mem_kept = nm, .mem_kept = c->mem, .n_kept = nk,
                               .kept = c->keep, .n_false_prunes = false_prunes, .n_false_keeps = nm - nk,
                               .mass_lost = tot > 0 ? lost / tot : 0};
        op->observer(op->observer_user, &rec);
    }
    if (last) {
        int fetched = 0, fresh = 0;
        unsigned mw = 0;
        for (int j = 0; j < n; j++) {
            fetched += a->cur[j];
            fresh += a->cur[j] && !a->prev[j];
            if (a->writes[j] > mw) mw = a->writes[j];
        }
        if (c->obs) {
            sp_decode_record r = {.layer = h->layer, .kv_head = h->kv_head, .pos = pos, .seq_id = h->seq_id,
                                  .group = c->group, .n_visible = n, .mem_kept = a->mem_kept, .kept = a->kept,
                                  .fetched = fetched, .new_fetched = fresh, .cells_written = d,
                                  .write_pulses = c->pulses, .max_writes_per_cell = mw};
            c->obs(c->obs_user, &r);
        }
        unsigned char *t = a->prev;
        a->prev = a->cur;
        a->cur = t;
    }
    return SP_OK;
}

sp_status sp_fn_decode_op_create(const sp_config *cfg, int n_layers, int n_heads, int n_kv_heads, int d, int capacity,
                                 sp_decode_observer observer, void *observer_user, sp_attn_op **out, sp_error *err) {
    *out = NULL;
    if (n_layers < 1 || n_kv_heads < 1 || n_heads < n_kv_heads || n_heads % n_kv_heads || d < 1 || d > 4096 ||
        capacity < 1)
        return sp_error_set(err, SP_ERR_ARG, "sprint-decode: bad shape: %d layers, %d heads over %d KV heads, d %d, "
                            "capacity %d", n_layers, n_heads, n_kv_heads, d, capacity);
    sp_fn_params p;
    sp_status s = sp_fn_params_from_config(cfg, SP_FN_SPRINT, &p, err);
    if (s != SP_OK) return s;
    free(p.thr);
    dctx *c = sp_xcalloc(1, sizeof *c);
    c->rr = p.rr;
    c->delta = cfg->decode_delta;
    c->n_layers = n_layers, c->n_heads = n_heads, c->n_kv = n_kv_heads, c->group = n_heads / n_kv_heads;
    c->d = d, c->cap = capacity;
    c->pulses = (d + c->rr.rows - 1) / c->rr.rows;
    c->obs = observer, c->obs_user = observer_user;
    size_t A = (size_t)n_layers * n_kv_heads, C = (size_t)capacity, D = (size_t)d;
    c->a = sp_xcalloc(A, sizeof *c->a);
    for (size_t i = 0; i < A; i++) {
        arr *a = &c->a[i];
        a->g = sp_xmalloc(C * D, sizeof *a->g);
        a->kscale = sp_xmalloc(C, sizeof *a->kscale);
        a->k8 = sp_xmalloc(C, D);
        a->writes = sp_xcalloc(C, sizeof *a->writes);
        a->prev = sp_xcalloc(C, 1);
        a->cur = sp_xcalloc(C, 1);
        a->seq_id = -1;
        a->pos = -1;
    }
    c->idx = sp_xmalloc(C, sizeof *c->idx);
    c->mem = sp_xmalloc(C, sizeof *c->mem);
    c->keep = sp_xmalloc(C, sizeof *c->keep);
    c->sc = sp_xmalloc(C, sizeof *c->sc);
    c->ksc = sp_xmalloc(C, sizeof *c->ksc);
    c->est = sp_xmalloc(C, sizeof *c->est);
    c->qi = sp_xmalloc(D, 1);
    c->qd = sp_xmalloc(D, sizeof *c->qd);
    sp_attn_op *op = sp_attn_op_alloc("sprint-decode", n_layers, n_heads);
    op->ctx = c;
    op->run = decode_run;
    op->destroy = dctx_free;
    *out = op;
    return SP_OK;
}

sp_status sp_fn_decode_prefill(sp_attn_op *op, int layer, int kv_head, long long seq_id, const float *k, int ldk, int n,
                               sp_error *err) {
    if (!op || op->run != decode_run)
        return sp_error_set(err, SP_ERR_ARG, "sprint-decode prefill: not a sprint-decode operator");
    dctx *c = op->ctx;
    if (layer < 0 || layer >= c->n_layers || kv_head < 0 || kv_head >= c->n_kv || n < 0 || n >= c->cap || ldk < c->d)
        return sp_error_set(err, SP_ERR_ARG, "sprint-decode prefill: layer %d, KV head %d, %d keys (capacity %d)",
                            layer, kv_head, n, c->cap);
    arr *a = &c->a[layer * c->n_kv + kv_head];
    sp_attn_head h = {.layer = layer, .head = kv_head * c->group, .kv_head = kv_head, .seq_id = seq_id, .d = c->d,
                      .k = k, .ldk = ldk};
    a->written = 0;
    a->seq_id = seq_id;
    memset(a->prev, 0, (size_t)c->cap);
    for (int j = 0; j < n; j++) write_key(c, a, &h, j);
    return SP_OK;
}
