/* attention.c: the operator shell, masks, statistics and the dense reference operator.
 *
 * The dense operator is the reference every other operator is tested against: scores and
 * the softmax-weighted sum are accumulated in double and written as plain loops. */
#include "sprint/attention.h"

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
    double acc[512];
    double *a = d <= 512 ? acc : sp_xcalloc((size_t)d, sizeof *a);
    for (int c = 0; c < d; c++) a[c] = 0.0;
    for (int j = 0; j < n; j++) {
        double p = e[j] / denom;
        const float *vr = h->v + (size_t)idx[j] * (size_t)h->ldv;
        for (int c = 0; c < d; c++) a[c] += p * (double)vr[c];
    }
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
    const float *qr = h->q + (size_t)qi * (size_t)h->ldq;
    int bad = -1;
    for (int j = 0; j < n; j++) {
        const float *kr = h->k + (size_t)idx[j] * (size_t)h->ldk;
        double dot = 0.0;
        for (int c = 0; c < h->d; c++) dot += (double)qr[c] * (double)kr[c];
        scores[j] = dot * (double)h->scale;
        if (bad < 0 && !isfinite(scores[j])) bad = j;
    }
    return bad;
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

/* ---- fast dense path ---------------------------------------------------------------------
 * Float arithmetic laid out for SIMD: K and V are transposed into (d, n_k) so the score of
 * every key and the weighted sum are loops over contiguous keys. exp is a Cephes-style
 * polynomial (relative error ~2e-7 on the range used, x <= 0) that the compiler vectorises,
 * unlike libm's. Reductions run in 8 fixed lanes, so results are deterministic and do not
 * depend on the thread count. */

/* GCC 12 at -O2 uses the "very cheap" vectoriser cost model, which gives up on these loops
 * (runtime trip counts); the dynamic model vectorises them. Scoped to the fast path. The exp
 * loop also needs `omp simd` (its clamp is control flow to the cost model). */
#pragma GCC push_options
#pragma GCC optimize("vect-cost-model=dynamic")

/* exp(x) for x in [-inf, 0] (scores minus their maximum); x below -87 is taken as -87 (1.6e-38). */
static inline float exp_fast(float x) {
    /* x = max(x, -87) on the bit pattern: for x <= 0 (sign bit set or +0) the unsigned
     * pattern grows with |x|, and an unsigned min vectorises where GCC turns a float compare
     * into a branch (it threads the constant result). */
    union {
        float f;
        uint32_t u;
    } cl = {.f = x};
    cl.u = cl.u < 0xC2AE0000u ? cl.u : 0xC2AE0000u; /* 0xC2AE0000 = -87.0f */
    x = cl.f;
    int32_t ni = (int32_t)(x * 1.44269504088896341f - 0.5f); /* nearest integer of x/ln2 for x <= 0 */
    float n = (float)ni;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } u;
    u.i = (ni + 127) << 23;
    return p * u.f;
}

/* Lane-parallel reductions with a fixed order (8 partial results, then combined in order):
 * vectorisable without -ffast-math and deterministic. */
static inline float dot_lanes(const float *a, const float *b, int n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int u = 0; u < 8; u++) acc[u] += a[j + u] * b[j + u];
    for (; j < n; j++) acc[j & 7] += a[j] * b[j];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static inline float max_lanes(const float *a, int n) {
    float m[8];
    for (int u = 0; u < 8; u++) m[u] = -INFINITY;
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int u = 0; u < 8; u++) m[u] = a[j + u] > m[u] ? a[j + u] : m[u];
    for (; j < n; j++) m[j & 7] = a[j] > m[j & 7] ? a[j] : m[j & 7];
    float r = m[0];
    for (int u = 1; u < 8; u++) r = m[u] > r ? m[u] : r;
    return r;
}

/* Compiled for AVX2 and for the baseline, chosen at load time (the build targets x86-64-v2).
 * Every operation is elementwise or in the fixed 8-lane order above, so both give the same
 * bits. */
#if defined(__x86_64__) && defined(__GNUC__)
#define SP_FAST_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SP_FAST_CLONES
#endif
SP_FAST_CLONES
static sp_status dense_fast_run(sp_attn_op *op, const sp_attn_head *h, sp_error *err) {
    if (op->observer || h->key_valid || h->query_valid) return dense_run(op, h, err);
    sp_attn_stats *st = NULL;
    sp_status s = sp_attn_op_check(op, h, &st, err);
    if (s != SP_OK) return s;
    int d = h->d, nk = h->n_k;
    size_t NK = (size_t)nk;
    float *kt = sp_xmalloc((size_t)d * NK + 1, sizeof *kt); /* (d, n_k) */
    float *vt = sp_xmalloc((size_t)d * NK + 1, sizeof *vt); /* (d, n_k) */
    float *sc = sp_xmalloc(NK + 1, sizeof *sc);             /* (n_k) scores, then weights */
    float *one = sp_xmalloc(NK + 1, sizeof *one);           /* (n_k) ones, for the denominator */
    for (int j = 0; j < nk; j++) {
        one[j] = 1.0f;
        for (int c = 0; c < d; c++) {
            kt[(size_t)c * NK + (size_t)j] = h->k[(size_t)j * (size_t)h->ldk + (size_t)c];
            vt[(size_t)c * NK + (size_t)j] = h->v[(size_t)j * (size_t)h->ldv + (size_t)c];
        }
    }
    sp_attn_stats saved = *st;
    int prev_n = -1, bad = 0;
    float scale = h->scale;
    for (int i = 0; i < h->n_q && !bad; i++) {
        const float *qr = h->q + (size_t)i * (size_t)h->ldq;
        float *orow = h->out + (size_t)i * (size_t)h->ldo;
        int n = h->causal ? h->q_offset + i + 1 : nk;
        if (n == 0) {
            for (int c = 0; c < d; c++) orow[c] = 0.0f;
            dense_count(st, n, &prev_n);
            continue;
        }
        /* sc (n) = scale * K q, one contiguous pass per dimension (measured faster than a
         * per-key inner loop over d) */
        for (int j = 0; j < n; j++) sc[j] = 0.0f;
        for (int c = 0; c < d; c++) {
            float qc = qr[c];
            const float *kc = kt + (size_t)c * NK;
            for (int j = 0; j < n; j++) sc[j] += qc * kc[j];
        }
        for (int j = 0; j < n; j++) sc[j] *= scale;
        float mx = max_lanes(sc, n);
        float chk = dot_lanes(sc, one, n); /* NaN or infinity anywhere makes this non-finite */
        if (!isfinite(mx) || !isfinite(chk)) {
            bad = 1; /* the reference reports it with the query and key */
            break;
        }
#pragma omp simd
        for (int j = 0; j < n; j++) sc[j] = exp_fast(sc[j] - mx);
        float inv = 1.0f / dot_lanes(sc, one, n);
        for (int c = 0; c < d; c++) orow[c] = dot_lanes(sc, vt + (size_t)c * NK, n) * inv;
        dense_count(st, n, &prev_n);
    }
    free(one);
    free(kt);
    free(vt);
    free(sc);
    if (bad) {
        *st = saved;
        return dense_run(op, h, err);
    }
    return SP_OK;
}

#pragma GCC pop_options

sp_attn_op *sp_attn_dense_fast_create(int n_layers, int n_heads) {
    sp_attn_op *op = sp_attn_op_alloc("dense", n_layers, n_heads);
    op->run = dense_fast_run;
    return op;
}
