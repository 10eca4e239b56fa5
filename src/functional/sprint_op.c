/* sprint_op.c: the pruning, SPRINT-without-recompute and SPRINT attention operators
 * (paper sec. 1.3-1.8, Fig. 6-7, Fig. 9's four bars).
 *
 * One call handles one (layer, head) of one sequence: n_q queries against n_k keys.
 *   1. Q, K (and V in hw arithmetic) are quantised to 8 bits; K is split into b MSBs (in the
 *      crossbar) and 8-b LSBs (sec. 1.2).
 *   2. In-memory stage (sprint, sprint-norecompute): the DAC'd query against the K_MSB
 *      conductances gives one analog charge per key, compared with a per-query reference
 *      (the policy's threshold minus a conservative margin): the pruning vector (Fig. 6a).
 *   3. Digital stage: sprint recomputes the survivors with the full 8-bit key (float or Fig. 7
 *      arithmetic) and applies the exact threshold; sprint-norecompute feeds the digital
 *      MSB-only scores of the survivors to softmax; pruning computes every score exactly.
 *   4. Softmax and the weighted sum of V over the kept keys; statistics; observer records.
 *
 * Speed (the simulator runs 4096 x 4096 heads): scores of a block of queries against every
 * key come from sgemm. The in-memory charges are sgemm products of small integers held in
 * floats, exact while |sum| < 2^24 (checked: d <= 512). Exact double scores, the reference
 * arithmetic, are computed only for keys that need them: survivors, the estimate's keys, and
 * keys whose fp32 score lies within its rounding bound of a threshold. Read noise is drawn
 * only when its magnitude is non-zero and only for keys within 8 std of the reference (the
 * draw is truncated at 8 std, so skipping the others cannot change a decision). No L x L
 * matrix is ever held: buffers are (block x n_k). */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/gemm.h"
#include "fn_internal.h"

#define SP_FN_BLOCK 64     /* queries per sgemm block */
#define SP_MASS_CUT 30.0   /* nats: keys further below the max add < e^-30 each to the mass */

typedef sp_fn_ctx fn_ctx;

/* Exact score in the reference order of the dense operator (attention.c): a double sum over
 * c = 0..d-1 of (double)q[c] * (double)k[c], times (double)scale. Bit-identical to it. */
static double exact_dot(const float *q, const float *k, int d) {
    double acc = 0.0;
    for (int c = 0; c < d; c++) acc += (double)q[c] * (double)k[c];
    return acc;
}

/* Exact scores of keys idx[0..n) into out: cached ones from w->ex, the others four keys at a
 * time (each key still summed in the reference order, so bit-identical to exact_dot; the four
 * independent chains only hide the add latency). */
typedef struct fn_work fn_work;
static void exact_scores(fn_work *w, int stamp_now, const float *q, const sp_attn_head *h, double scale,
                         const int32_t *idx, int n, double *out);

/* exp(x) for the mass-lost statistic: sp_fn_mass_exp (fn_internal.h). */
static inline double mass_exp(double x) { return sp_fn_mass_exp(x); }

/* Quickselect: the k-th largest (1-based) of a[0..n) (a is permuted). */
static double kth_largest(double *a, int n, int k) {
    SP_ASSERT(k >= 1 && k <= n);
    int lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        double piv = a[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] > piv) i++;
            while (a[j] < piv) j--;
            if (i <= j) {
                double t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return a[want];
    }
    return a[want];
}

/* The first valid row of x (n x d, stride ld) holding a NaN or an infinity: its exponent bits
 * all set (as !isfinite), or-ed over the row without a branch per element (the check runs on
 * every head call: part 9n of docs/RESULTS.md). */
static int check_finite(const float *x, int n, int d, int ld, const unsigned char *valid, int *row) {
    for (int i = 0; i < n; i++) {
        if (valid && !valid[i]) continue;
        const float *r = x + (size_t)i * (size_t)ld;
        /* exponent bits all set <=> (u & 0x7F800000) + 0x00800000 reaches bit 31; 8 lanes at a
         * time in integer ops the compiler vectorises */
        uint32_t bad = 0;
        int c = 0;
        for (; c + 8 <= d; c += 8) {
            uint32_t u[8];
            memcpy(u, r + c, sizeof u);
            for (int t = 0; t < 8; t++) bad |= (u[t] & 0x7F800000u) + 0x00800000u;
        }
        for (; c < d; c++) {
            uint32_t u;
            memcpy(&u, r + c, sizeof u);
            bad |= (u & 0x7F800000u) + 0x00800000u;
        }
        if (bad & 0x80000000u) {
            *row = i;
            return 0;
        }
    }
    return 1;
}

/* Largest squared norm (double) of the rows of x (n x d, stride ld) with valid[i] != 0. Four
 * rows at a time, each row's sum in its own sequential chain (the same terms in the same order:
 * the same bits as one row at a time, without waiting on one chain's latency per element). */
static double max_row_norm2(const float *x, int n, int d, int ld, const unsigned char *valid) {
    double mx = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        const float *r0 = x + (size_t)i * (size_t)ld, *r1 = r0 + ld, *r2 = r1 + ld, *r3 = r2 + ld;
        double a[4] = {0, 0, 0, 0};
        for (int c = 0; c < d; c++) {
            a[0] += (double)r0[c] * r0[c];
            a[1] += (double)r1[c] * r1[c];
            a[2] += (double)r2[c] * r2[c];
            a[3] += (double)r3[c] * r3[c];
        }
        for (int t = 0; t < 4; t++)
            if ((!valid || valid[i + t]) && a[t] > mx) mx = a[t];
    }
    for (; i < n; i++) {
        if (valid && !valid[i]) continue;
        const float *r = x + (size_t)i * (size_t)ld;
        double n2 = 0;
        for (int c = 0; c < d; c++) n2 += (double)r[c] * r[c];
        if (n2 > mx) mx = n2;
    }
    return mx;
}

/* Per-call work buffers (all sized by n_k or block x n_k). */
typedef struct fn_work {
    int8_t *qi, *ki, *vi;
    float *sq, *sk, *sv;
    float *qdf, *g, *g2, *qif, *mf, *lf; /* int-valued float copies for sgemm */
    int *qd;
    double *off;                           /* comparator offsets, integer score units */
    float *S, *A, *V2, *Bm, *Bl;           /* (block x n_k) */
    int32_t *vis, *mem, *kept, *prev, *src;
    unsigned char *prevmark, *passmark;
    double *ex, *tmp, *scores;
    int *stamp;
    int32_t *zint;
    double *lscale;
    const int8_t **vrows;
    float *qd2;  /* (block x d) squared DAC levels, for the read-noise variance */
    int n_prev;  /* survivors of the previous valid query in this call (in prev), -1 = none yet */
} fn_work;

static void work_free(fn_work *w) {
    free(w->qi), free(w->ki), free(w->vi), free(w->sq), free(w->sk), free(w->sv);
    free(w->qdf), free(w->g), free(w->g2), free(w->qif), free(w->lf), free(w->mf), free(w->qd), free(w->off);
    free(w->S), free(w->A), free(w->V2), free(w->Bm), free(w->Bl);
    free(w->vis), free(w->mem), free(w->kept), free(w->prev), free(w->src);
    free(w->prevmark), free(w->passmark);
    free(w->ex), free(w->tmp), free(w->scores), free(w->stamp), free(w->zint), free(w->lscale);
    free((void *)w->vrows);
    free(w->qd2);
}

static void exact_scores(fn_work *w, int stamp_now, const float *q, const sp_attn_head *h, double scale,
                         const int32_t *idx, int n, double *out) {
    int d = h->d;
    int t = 0;
    int pend[4], np = 0;
    for (; t < n; t++) {
        int j = idx[t];
        if (w->stamp[j] == stamp_now) {
            out[t] = w->ex[j];
            continue;
        }
        pend[np++] = t;
        if (np == 4) {
            const float *k0 = h->k + (size_t)idx[pend[0]] * (size_t)h->ldk, *k1 = h->k + (size_t)idx[pend[1]] * (size_t)h->ldk;
            const float *k2 = h->k + (size_t)idx[pend[2]] * (size_t)h->ldk, *k3 = h->k + (size_t)idx[pend[3]] * (size_t)h->ldk;
            double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
            for (int c = 0; c < d; c++) {
                double qc = (double)q[c];
                a0 += qc * (double)k0[c];
                a1 += qc * (double)k1[c];
                a2 += qc * (double)k2[c];
                a3 += qc * (double)k3[c];
            }
            out[pend[0]] = a0 * scale, out[pend[1]] = a1 * scale, out[pend[2]] = a2 * scale, out[pend[3]] = a3 * scale;
            np = 0;
        }
    }
    for (int p = 0; p < np; p++) out[pend[p]] = exact_dot(q, h->k + (size_t)idx[pend[p]] * (size_t)h->ldk, d) * scale;
}

static void gemm_nt(int m, int n, int d, const float *a, int lda, const float *b, int ldb, float *c, int ldc) {
    /* c (m x n) = a (m x d) . b (n x d)^T (cpu/gemm.h): within the rounding bound the screening
     * relies on, and each entry the same bits whatever m and n (padded or compacted blocks) */
    sp_gemm_nt(m, n, d, a, lda, b, ldb, c, ldc);
}

/* ==== The operator: one (layer, head) call as named passes =================================
 *
 * Like a layer of llm.c, fn_run is a list of passes over caller-visible buffers, each with its
 * contract stated above it:
 *
 *   quantise            Q, K (V) -> 8-bit integers and scales                      sec. 1.2
 *   program_array       K_MSB -> cell conductances g; query -> DAC levels; the head
 *                       statistics of the stored keys the margin uses                sec. 1.3
 *   score_block         per block of 64 queries: screening scores S (fp32 q.k, or the
 *                       Fig. 7 integer score), analog charges A = qd . g, and the
 *                       MSB-only digital scores Bm                                Fig. 6a, 7
 *   then per query:
 *     visible_keys          which keys the query may see; the max screening logit
 *     policy_threshold      thr_ref: the policy's threshold on exact logits          sec. 6*
 *     comparator_margin     marg: conservative margin, integer score units           sec. 4*
 *     memory_reference      tau: the comparator reference in charge units (or the
 *                           analog top-k ranking)                                  Fig. 6a
 *     compare_and_select    one pass over the visible keys: exact pass/fail, in-memory
 *                           keep/prune (the pruning vector), counts
 *     digital_stage         survivors -> the keys and scores entering softmax:
 *                           recompute + exact threshold (sprint), MSB-only scores
 *                           (norecompute), exact scores of the kept (pruning)        sec. 1.4
 *     softmax_and_values    out = softmax(scores) . V (float or the Fig. 7 datapath) Fig. 7c
 *     record_statistics     counters, observer record, survivors become "previous"
 *
 * (* sections of docs/functional.md.) Logit of key j from an integer score z: lf_j z with
 * lf_j = scale sq_i sk_j (key_logit_scale). */

/* Per-call constants: the head, the parameters, and what is known once K is written. */
typedef struct fn_call {
    const sp_fn_params *P;
    const sp_attn_head *h;
    sp_attn_op *op;
    int nq, nk, d, mode, hw, inmem, b, sh, kind;
    int uni;          /* one logit factor for every key's screening score (not hw with per-row keys) */
    double cmid;      /* (2^(8-b) - 1) / 2: the LSB value the in-memory score assumes */
    double p2s;       /* 2^(8-b): an MSB level in integer key units (exact multiply) */
    double scale;     /* h->scale: logits per unit of q.k */
    double step;      /* query-integer units per DAC level */
    double gamma;     /* fp32 dot-product rounding factor gamma_d (Higham), with 1% slack */
    double kmaxnorm;  /* largest valid key norm (float mode), for the screening bound */
    size_t NK, D;
    /* head statistics of the stored keys over valid cells (integer units), inputs of the
     * margin: E[k^2], max |k|, E[(m + g_off)^2], E[m^2], E[(2^b - 1 - m)^2] */
    double k_ms, kmax, e_g2, e_m2, e_top2;
    double full_scale; /* comparator input swing, integer score units */
} fn_call;

/* Per-query state shared by the passes. */
typedef struct fn_query {
    int i, r;                    /* query index in the call; row in the current block */
    const float *qrow;           /* float query (d) */
    const int8_t *qirow;         /* 8-bit query (d) */
    const float *Srow;           /* screening scores of this query, (n_k) */
    const unsigned char *kvalid; /* h->key_valid (NULL = all valid) */
    int end;                     /* keys [0, end) can be visible (causal mask) */
    double sq;                   /* query scale */
    double xs;                   /* logits per screening-score unit when uni */
    double tol;                  /* fp32 rounding bound of the screening logits (0 in hw) */
    int stamp;                   /* exact-score cache generation */
    int n_vis, first_vis, last_vis;
    double smax;                 /* max screening logit over the visible keys */
    double sqi;                  /* sum of the 8-bit query elements */
} fn_query;

/* lf_j: logits per integer score unit of key j (scale x query scale x key scale). */
static inline double key_logit_scale(const fn_call *C, const fn_work *w, const fn_query *Q, int j) {
    return C->scale * Q->sq * (double)w->sk[j];
}

/* Screening logit of key j: fp32 score (float mode) or the exact Fig. 7 score (hw). */
static inline double screen_logit(const fn_call *C, const fn_work *w, const fn_query *Q, int j) {
    return C->uni ? Q->xs * (double)Q->Srow[j] : key_logit_scale(C, w, Q, j) * (double)Q->Srow[j];
}

/* Exact logit of key j (float: the reference order of exact_dot; hw: the Fig. 7 integer
 * score), computed once per query and cached in w->ex under the query's stamp. */
static inline double exact_logit(const fn_call *C, fn_work *w, const fn_query *Q, int j) {
    if (w->stamp[j] == Q->stamp) return w->ex[j];
    w->stamp[j] = Q->stamp;
    return w->ex[j] = C->hw ? screen_logit(C, w, Q, j)
                            : exact_dot(Q->qrow, C->h->k + (size_t)j * (size_t)C->h->ldk, C->d) * C->scale;
}

/* Exact decision "logit of key j >= thr" from the screening logit; an exact dot product only
 * when the screening logit lies within its rounding bound of thr. */
static inline int passes(const fn_call *C, fn_work *w, const fn_query *Q, int j, double thr) {
    double x = screen_logit(C, w, Q, j);
    if (C->hw) return x >= thr;
    return x >= thr + Q->tol ? 1 : x < thr - Q->tol ? 0 : exact_logit(C, w, Q, j) >= thr;
}

/* Exact max of the logits over list[0..cnt): the fp32 max, then exact scores of the keys
 * within the rounding bound of it (2 tol), so only a few exact dots per query. -inf if empty. */
static double screened_max(const fn_call *C, fn_work *w, const fn_query *Q, const int32_t *list, int cnt) {
    double fm = -INFINITY;
    for (int t = 0; t < cnt; t++) {
        double x = screen_logit(C, w, Q, list[t]);
        fm = x > fm ? x : fm;
    }
    double out = -INFINITY;
    for (int t = 0; t < cnt; t++)
        if (screen_logit(C, w, Q, list[t]) >= fm - 2 * Q->tol) {
            double e = exact_logit(C, w, Q, list[t]);
            out = e > out ? e : out;
        }
    return out;
}

/* Pass quantise (sec. 1.2): qi, sq (n_q x d, n_q) and ki, sk (n_k x d, n_k) per
 * quant.granularity; in hw arithmetic also V (one scale) and the integer sgemm operands of the
 * Fig. 7 q x K_MSB and q x K_LSB trees (qif, mf, lf) and the softmax scratch. */
static void quantise(const fn_call *C, fn_work *w) {
    const sp_attn_head *h = C->h;
    const sp_fn_params *P = C->P;
    const int nq = C->nq, nk = C->nk, d = C->d, b = C->b;
    const size_t NQ = (size_t)(nq > 0 ? nq : 1), NK = C->NK, D = C->D;
    w->qi = sp_xmalloc(NQ * D, 1);
    w->ki = sp_xmalloc(NK * D, 1);
    w->sq = sp_xmalloc(NQ, sizeof(float));
    w->sk = sp_xmalloc(NK, sizeof(float));
    sp_quant_rows(h->q, nq, d, h->ldq, P->quant_row, h->query_valid, w->qi, w->sq);
    sp_quant_rows(h->k, nk, d, h->ldk, P->quant_row, h->key_valid, w->ki, w->sk);
    if (!C->hw) return;
    w->vi = sp_xmalloc(NK * D, 1);
    w->sv = sp_xmalloc(NK, sizeof(float));
    sp_quant_rows(h->v, nk, d, h->ldv, 0, h->key_valid, w->vi, w->sv); /* V: one scale (16-bit acc) */
    w->qif = sp_xmalloc(NQ * D, sizeof(float));
    w->mf = sp_xmalloc(NK * D, sizeof(float));
    w->lf = sp_xmalloc(NK * D, sizeof(float));
    for (size_t i = 0; i < NQ * D && nq; i++) w->qif[i] = w->qi[i];
    for (size_t i = 0; i < NK * D && nk; i++) {
        w->mf[i] = (float)sp_key_msb(w->ki[i], b);
        w->lf[i] = (float)sp_key_lsb(w->ki[i], b);
    }
    w->zint = sp_xmalloc(NK, sizeof(int32_t));
    w->lscale = sp_xmalloc(NK, sizeof(double));
    w->vrows = sp_xmalloc(NK, sizeof(int8_t *));
}

/* Pass program_array (sec. 1.3, Fig. 6a): for the in-memory modes, the DAC levels of every
 * query (qd, and as floats qdf), the conductance of every cell holding K_MSB (g, n_k x d; with
 * every non-ideality zero g = m exactly), g^2 for the read-noise variance, each comparator's
 * fixed offset, and the head statistics of the stored keys (C->k_ms ... C->full_scale) that
 * the margin uses. Without the memory stage only max |k| is needed. */
static void program_array(fn_call *C, fn_work *w) {
    const sp_attn_head *h = C->h;
    const sp_fn_params *P = C->P;
    const int nq = C->nq, nk = C->nk, d = C->d, b = C->b;
    const size_t NQ = (size_t)(nq > 0 ? nq : 1), NK = C->NK, D = C->D;
    double k_ms = 0, kmax = 0, e_g2 = 0, e_m2 = 0, e_top2 = 0, n_cells = 0;
    const double top = (double)((1 << b) - 1); /* highest MSB level */
    if (!C->inmem) {
        for (int j = 0; j < nk; j++)
            if (!h->key_valid || h->key_valid[j])
                for (int c = 0; c < d; c++) {
                    double kv = w->ki[(size_t)j * D + (size_t)c];
                    if (fabs(kv) > kmax) kmax = fabs(kv);
                }
        C->kmax = kmax;
        return;
    }
    w->qd = sp_xmalloc(NQ * D, sizeof(int));
    w->qdf = sp_xmalloc(NQ * D, sizeof(float));
    for (int i = 0; i < nq; i++)
        for (int c = 0; c < d; c++) {
            int v = sp_dac_level(w->qi[(size_t)i * D + (size_t)c], P->rr.dac_bits);
            w->qd[(size_t)i * D + (size_t)c] = v;
            w->qdf[(size_t)i * D + (size_t)c] = (float)v;
        }
    w->g = sp_xmalloc(NK * D, sizeof(float));
    int ideal = sp_reram_ideal(&P->rr);
    double goff = P->rr.onoff_ratio > 1 ? top / (P->rr.onoff_ratio - 1) : 0; /* off-state conductance */
    for (int j = 0; j < nk; j++) {
        int valid = !h->key_valid || h->key_valid[j];
        for (int c = 0; c < d; c++) {
            int kv = w->ki[(size_t)j * D + (size_t)c];
            int m = sp_key_msb(kv, b);
            double gv = ideal ? (double)m : sp_reram_cell(&P->rr, h->layer, h->kv_head, j, c, m);
            w->g[(size_t)j * D + (size_t)c] = (float)gv;
            if (valid) {
                k_ms += (double)kv * kv;
                if (fabs((double)kv) > kmax) kmax = fabs((double)kv);
                e_g2 += (m + goff) * (m + goff);
                e_m2 += (double)m * m;
                e_top2 += (top - m) * (top - m);
                n_cells += 1;
            }
        }
    }
    if (n_cells > 0) {
        k_ms /= n_cells;
        e_g2 /= n_cells;
        e_m2 /= n_cells;
        e_top2 /= n_cells;
    }
    C->k_ms = k_ms, C->kmax = kmax, C->e_g2 = e_g2, C->e_m2 = e_m2, C->e_top2 = e_top2;
    C->full_scale = sp_reram_full_scale(&P->rr, d);
    w->off = sp_xcalloc(NK, sizeof(double));
    if (P->rr.cmp_offset_sigma > 0)
        for (int j = 0; j < nk; j++) w->off[j] = sp_reram_cmp_offset(&P->rr, h->layer, h->kv_head, j, d);
    if (P->rr.c2c_sigma > 0) {
        w->g2 = sp_xmalloc(NK * D, sizeof(float));
        for (size_t i = 0; i < NK * D && nk; i++) w->g2[i] = w->g[i] * w->g[i];
    }
    if (C->mode == SP_FN_NORECOMPUTE && !w->mf) { /* operands of the MSB-only digital scores */
        w->mf = sp_xmalloc(NK * D, sizeof(float));
        for (int j = 0; j < nk; j++)
            for (int c = 0; c < d; c++)
                w->mf[(size_t)j * D + (size_t)c] = (float)sp_key_msb(w->ki[(size_t)j * D + (size_t)c], b);
        if (!w->qif) {
            w->qif = sp_xmalloc(NQ * D, sizeof(float));
            for (size_t i = 0; i < NQ * D && nq; i++) w->qif[i] = w->qi[i];
        }
    }
}

/* Pass score_block: for queries i0 .. i0 + bq - 1 against every key, each (bq x n_k):
 *   S  screening scores: fp32 q . k (float), or the Fig. 7 integer score (hw): the 16-bit
 *      saturating MSB and LSB trees recombined, (sat(q.m) 2^(8-b) + sat(q.l) - 128 sum q);
 *      sp_hw_score is its reference and every value is an exact fp32 integer;
 *   A  analog charges qd . g (sp_reram_charge_block; sp_reram_score_ref is the reference);
 *   V2 sum (qd g)^2, the read-noise variance factor (c2c noise only);
 *   Bm q . K_MSB, the MSB-only digital score (norecompute, hw). */
static void score_block(const fn_call *C, fn_work *w, int i0, int bq) {
    const sp_attn_head *h = C->h;
    const int nk = C->nk, d = C->d;
    const size_t NK = C->NK, D = C->D;
    if (nk <= 0) return;
    if (!C->hw) gemm_nt(bq, nk, d, h->q + (size_t)i0 * (size_t)h->ldq, h->ldq, h->k, h->ldk, w->S, nk);
    if (C->inmem) sp_reram_charge_block(bq, nk, d, w->qdf + (size_t)i0 * D, w->g, w->A);
    if (w->V2) {
        for (size_t t = 0; t < (size_t)bq * D; t++) {
            float v = w->qdf[(size_t)i0 * D + t];
            w->qd2[t] = v * v;
        }
        gemm_nt(bq, nk, d, w->qd2, d, w->g2, d, w->V2, nk);
    }
    if (w->Bm) gemm_nt(bq, nk, d, w->qif + (size_t)i0 * D, d, w->mf, d, w->Bm, nk);
    if (C->hw) {
        gemm_nt(bq, nk, d, w->qif + (size_t)i0 * D, d, w->lf, d, w->Bl, nk);
        for (int r = 0; r < bq; r++) {
            double qs = 0;
            for (int c = 0; c < d; c++) qs += w->qi[(size_t)(i0 + r) * D + (size_t)c];
            const float *bm = w->Bm + (size_t)r * NK, *bl = w->Bl + (size_t)r * NK;
            float *sr = w->S + (size_t)r * NK;
            for (int j = 0; j < nk; j++) {
                float m = bm[j] > 32767.0f ? 32767.0f : bm[j] < -32768.0f ? -32768.0f : bm[j]; /* 16-bit tree */
                float l = bl[j] > 32767.0f ? 32767.0f : bl[j] < -32768.0f ? -32768.0f : bl[j];
                sr[j] = (float)((double)m * C->p2s + (double)l - 128.0 * qs);
            }
        }
    }
}

/* Pass visible_keys: n_vis, first_vis, last_vis and smax (max screening logit) of the keys in
 * [0, end) that are not padding. */
static void visible_keys(const fn_call *C, const fn_work *w, fn_query *Q) {
    const int end = Q->end;
    Q->n_vis = 0, Q->first_vis = -1, Q->last_vis = -1, Q->smax = -INFINITY;
    if (!Q->kvalid && C->uni) { /* x = xs S is monotone in S (xs > 0): max on the floats */
        float fm = -INFINITY;
        for (int j = 0; j < end; j++) fm = Q->Srow[j] > fm ? Q->Srow[j] : fm;
        Q->n_vis = end;
        Q->first_vis = end > 0 ? 0 : -1;
        Q->last_vis = end - 1;
        if (end > 0) Q->smax = Q->xs * (double)fm;
        return;
    }
    for (int j = 0; j < end; j++) {
        if (Q->kvalid && !Q->kvalid[j]) continue;
        double x = screen_logit(C, w, Q, j);
        if (Q->first_vis < 0) Q->first_vis = j;
        Q->last_vis = j;
        Q->n_vis++;
        if (x > Q->smax) Q->smax = x;
    }
}

/* Pass policy_threshold (docs/functional.md sec. 6): the policy's threshold on exact logits,
 * thr_ref: the calibrated T[layer][head] (layer, head), the true max of the exact logits minus
 * delta (oracle, onchip; *tmax gets that max), or the topk-th largest screening logit (topk;
 * *topk gets k, and w->vis the visible keys). */
static double policy_threshold(const fn_call *C, fn_work *w, fn_query *Q, double *tmax, long *topk) {
    const sp_fn_params *P = C->P;
    const int kind = C->kind, relative = kind == SP_POLICY_ORACLE || kind == SP_POLICY_ONCHIP;
    *tmax = Q->smax;
    *topk = 0;
    if (!C->hw && relative) {
        *tmax = -INFINITY;
        const double lim = Q->smax - 2 * Q->tol;
        for (int j = 0; j < Q->end; j++)
            if (screen_logit(C, w, Q, j) >= lim && (!Q->kvalid || Q->kvalid[j])) {
                double e = exact_logit(C, w, Q, j);
                *tmax = e > *tmax ? e : *tmax;
            }
    }
    if (kind == SP_POLICY_TOPK) {
        int nv2 = sp_attn_visible(C->h, Q->i, w->vis);
        SP_ASSERT(nv2 == Q->n_vis);
    }
    if (kind == SP_POLICY_LAYER || kind == SP_POLICY_HEAD) return P->thr[C->h->layer * C->op->n_heads + C->h->head];
    if (relative) return *tmax - P->delta;
    /* top-k, ranked by the screening logit */
    long k = (long)ceil(P->topk_fraction * Q->n_vis);
    if (k < P->topk_min) k = P->topk_min;
    if (k > Q->n_vis) k = Q->n_vis;
    for (int t = 0; t < Q->n_vis; t++) w->tmp[t] = screen_logit(C, w, Q, w->vis[t]);
    *topk = k;
    return kth_largest(w->tmp, Q->n_vis, (int)k);
}

/* Sums over the elements c of one query that the margin and the reference need
 * (sp_fn_dac_sums_of, fn_internal.h); shared with the fast operator (sprint_fast.c). */
typedef sp_fn_dac_sums fn_dac_sums;

static fn_dac_sums dac_sums(const fn_call *C, const fn_work *w, const fn_query *Q) {
    return sp_fn_dac_sums_of(Q->qirow, w->qd + (size_t)Q->i * C->D, C->d, C->step);
}

sp_fn_dac_sums sp_fn_dac_sums_of(const int8_t *qi, const int *qd, int d, double step) {
    sp_fn_dac_sums s = {0, 0, 0, 0, 0, 0, 0};
    for (int c = 0; c < d; c++) {
        double qv = qi[c], dv = qd[c], eq = qv - step * dv;
        s.sqd += dv;
        s.sqd2 += dv * dv;
        s.eq2 += eq * eq;
        s.sqi2 += qv * qv;
        s.sabs_qd += fabs(dv);
        s.sabs_eq += fabs(eq);
        s.sabs_qi += fabs(qv);
    }
    return s;
}

/* Pass comparator_margin (docs/functional.md sec. 4, sprint.margin_mode): the conservative
 * margin marg in integer score units (q_int . k_int) by which the comparator reference is
 * lowered, so that a key whose exact score passes is rarely pruned by the approximate one.
 * Only mode sprint has one (without recompute nothing would undo the extra keys). The in-memory
 * score q.k ~ step qd . (m 2^(8-b) + c - 128) differs from the exact integer score q.k by
 *   truncation  step qd . (l - c)               l the dropped LSBs, c their centre
 *   DAC         (q - step qd) . k               the query's DAC rounding error e
 *   quantise    float mode only: q.k of the floats against the 8-bit integers
 *   analog      u (sum_c qd_c dg_c + off)      c2c/d2d variation, stuck cells, comparator offset
 * sigma: z sqrt of the sum of their variances (LSBs uniform: (4^(8-b) - 1) / 12 per element);
 * worst: the sum of the worst-case bounds of the first three plus z analog std. */
static double comparator_margin(const fn_call *C, const fn_dac_sums *s) {
    const sp_fn_keystats ks = {C->k_ms, C->kmax, C->e_g2, C->e_m2, C->e_top2, C->full_scale};
    return sp_fn_comparator_margin(C->P, C->d, &ks, s);
}

double sp_fn_comparator_margin(const sp_fn_params *P, int d, const sp_fn_keystats *ks, const sp_fn_dac_sums *s) {
    if (P->mode != SP_FN_SPRINT || P->margin_mode == SP_FN_MARGIN_NONE) return 0.0;
    const sp_reram_params *rr = &P->rr;
    const int sh = 8 - rr->msb_bits, hw = P->arith_hw;
    const double step = sp_dac_step(rr->dac_bits), cmid = sp_key_msb_center(rr->msb_bits);
    const double u = step * ldexp(1.0, sh); /* integer score units per unit of charge */
    const double analog_var = u * u *
                                  (s->sqd2 * (rr->c2c_sigma * rr->c2c_sigma * ks->e_g2 +
                                              rr->d2d_sigma * rr->d2d_sigma * ks->e_g2 + rr->stuck_at_0 * ks->e_m2 +
                                              rr->stuck_at_1 * ks->e_top2) +
                                   pow(rr->cmp_offset_sigma * ks->full_scale, 2));
    if (P->margin_mode == SP_FN_MARGIN_SIGMA) {
        double truncation_var = step * step * s->sqd2 * (ldexp(1.0, 2 * sh) - 1) / 12.0;
        double dac_var = s->eq2 * ks->k_ms;
        double v = truncation_var + dac_var + analog_var;
        if (!hw) v += (s->sqi2 + d * ks->k_ms) / 12.0; /* quantise: rounding of q and k */
        return P->margin_sigma * sqrt(v);
    }
    /* SP_FN_MARGIN_WORST: |l - c| <= c, |e_c| exact, |k| <= kmax */
    double truncation = step * s->sabs_qd * cmid;
    double dac = s->sabs_eq * ks->kmax;
    double m = truncation + dac + P->margin_sigma * sqrt(analog_var);
    if (!hw) m += (s->sabs_qi + d * ks->kmax) / 2.0 + d / 4.0; /* quantise: |rounding| <= 1/2 */
    return m;
}

/* The comparator's reference for one query (Fig. 6a). Key j is kept iff
 *   u (A_j + off_j) + o + marg >= thr_mem / lf_j,   i.e.   A_j + off_j >= tau_j,
 *   tau_j = (thr_mem / lf_j - marg - o) / u,  u = step 2^(8-b),  o = step (c - 128) sum qd,
 * where u A + o is the in-memory integer score and thr_mem the threshold the memory stage aims
 * at (logits). With one key scale tau is the same for every key. mem_all: nothing can be
 * pruned (no memory stage, or thr_mem = -inf); mem_topk: the analog top-k ranking decides. */
typedef struct fn_memref {
    double thr_mem, marg, o, u, tau;
    int mem_all, mem_topk;
} fn_memref;

/* Pass memory_reference: thr_mem per policy (layer/head: T; oracle: true max - delta; onchip:
 * max over the keys already on chip - delta, exact when recomputing, else their MSB-only
 * scores; topk: the analog top-k, see analog_topk), then o, u, tau. */
static fn_memref memory_reference(const fn_call *C, fn_work *w, const fn_query *Q, double thr_ref, double tmax,
                                  const fn_dac_sums *s) {
    const sp_fn_params *P = C->P;
    fn_memref m = {.thr_mem = -INFINITY, .marg = 0, .o = 0, .u = 1, .tau = -INFINITY, .mem_all = !C->inmem,
                   .mem_topk = 0};
    if (!C->inmem) return m;
    m.marg = comparator_margin(C, s);
    const int kind = C->kind;
    if (kind == SP_POLICY_LAYER || kind == SP_POLICY_HEAD) m.thr_mem = thr_ref;
    else if (kind == SP_POLICY_ORACLE) m.thr_mem = tmax - P->delta;
    else if (kind == SP_POLICY_ONCHIP) {
        /* estimate of the max from keys already on chip: the previous query's survivors
         * and/or the first and last visible keys */
        int ns = sp_fn_onchip_sources(P->onchip_source, w->prev, w->n_prev, Q->end, Q->first_vis, Q->last_vis, w->src);
        double est = -INFINITY;
        if (C->mode == SP_FN_SPRINT) {
            est = screened_max(C, w, Q, w->src, ns);
        } else { /* without recompute only the MSB-only digital scores exist */
            for (int t = 0; t < ns; t++) {
                int j = w->src[t];
                double e = key_logit_scale(C, w, Q, j) *
                           ((double)w->Bm[(size_t)Q->r * C->NK + (size_t)j] * C->p2s + (C->cmid - 128) * Q->sqi);
                if (e > est) est = e;
            }
        }
        m.thr_mem = est - P->delta;
    } else {
        m.mem_topk = 1;
    }
    m.o = C->step * (C->cmid - 128.0) * s->sqd;
    m.u = C->step * ldexp(1.0, C->sh);
    if (!m.mem_topk) {
        if (m.thr_mem == -INFINITY) m.mem_all = 1;
        else m.tau = (m.thr_mem / key_logit_scale(C, w, Q, Q->first_vis) - m.marg - m.o) / m.u;
    }
    return m;
}

/* Read noise of key j's charge for this query: sd * N(0,1) truncated at 8 std. */
static double read_noise(const fn_call *C, const fn_query *Q, int j, double sd) {
    const sp_attn_head *h = C->h;
    return sd * sp_reram_read_normal(&C->P->rr, h->layer, h->head, h->kv_head, h->seq_id, h->q_offset + Q->i, j);
}

/* Pass analog_topk (policy topk in memory): w->passmark[j] = 1 for the km = ceil(topk x
 * policy.topk_mem_factor) visible keys with the largest noisy approximate logits. */
static void analog_topk(const fn_call *C, fn_work *w, const fn_query *Q, long topk, const fn_dac_sums *s) {
    const sp_fn_params *P = C->P;
    const float *Arow = w->A + (size_t)Q->r * C->NK;
    const float *V2row = w->V2 ? w->V2 + (size_t)Q->r * C->NK : NULL;
    const double c2 = P->rr.c2c_sigma;
    long km = (long)ceil(topk * P->topk_mem_factor);
    if (km > Q->n_vis) km = Q->n_vis;
    for (int t = 0; t < Q->n_vis; t++) {
        int j = w->vis[t];
        double a = Arow[j] + w->off[j];
        if (V2row && c2 > 0)
            a += c2 * sqrt((double)V2row[j]) *
                 sp_reram_read_normal(&P->rr, C->h->layer, C->h->head, C->h->kv_head, C->h->seq_id,
                                      C->h->q_offset + Q->i, j);
        w->scores[t] = key_logit_scale(C, w, Q, j) * C->step * (a * C->p2s + (C->cmid - 128.0) * s->sqd);
        w->tmp[t] = w->scores[t];
    }
    double kth = kth_largest(w->tmp, Q->n_vis, (int)km);
    for (int t = 0; t < Q->n_vis; t++) w->passmark[w->vis[t]] = w->scores[t] >= kth;
}

/* Counts of one query's decisions. */
typedef struct fn_counts {
    int n_mem;   /* kept by the comparator: fetched (w->mem) */
    int n_kept;  /* entering softmax (w->kept) */
    int n_pass;  /* exact logit >= thr_ref */
    int n_fp;    /* false prunes: pass but pruned in memory */
    int n_fk;    /* false keeps: kept in memory but fail */
    int reuse;   /* kept in memory and by the previous query too */
} fn_counts;

/* Pass compare_and_select: one pass over the visible keys. For each: pass = exact logit >=
 * thr_ref (from the screening logit, exact dot only within tol); keep = the comparator's
 * decision (the pruning vector, Fig. 6a): A_j + off_j (+ read noise) >= tau_j, or the analog
 * top-k mark, or 1 without a memory stage. Appends kept keys to w->mem (ascending); in mode
 * pruning, keys that pass (and are kept) to w->kept. */
static fn_counts compare_and_select(const fn_call *C, fn_work *w, const fn_query *Q, double thr_ref,
                                    const fn_memref *M) {
    const sp_fn_params *P = C->P;
    fn_counts n = {0, 0, 0, 0, 0, 0};
    const float *Arow = C->inmem ? w->A + (size_t)Q->r * C->NK : NULL;
    const float *V2row = w->V2 ? w->V2 + (size_t)Q->r * C->NK : NULL;
    const double c2 = P->rr.c2c_sigma;
    const int prune_digital = C->mode == SP_FN_PRUNING;
    const int exact_band = !C->hw && C->kind != SP_POLICY_TOPK; /* else the screening logit is exact */
    const double hi = exact_band ? thr_ref + Q->tol : thr_ref, lo = exact_band ? thr_ref - Q->tol : thr_ref;
    const int has_off = P->rr.cmp_offset_sigma > 0;
    const int fast = C->uni && !Q->kvalid && !M->mem_all && !M->mem_topk && !P->quant_row && !has_off &&
                     !(V2row && c2 > 0);
    if (fast) {
        /* the common case, branch-free: ideal or d2d/stuck/on-off devices, one scale */
        int32_t *mem = w->mem, *kept = w->kept;
        const unsigned char *pm = w->prevmark;
        const double xs = Q->xs, tau = M->tau;
        for (int j = 0; j < Q->end; j++) {
            const double x = xs * (double)Q->Srow[j];
            int pass = x >= hi;
            if ((x >= lo) & !pass) pass = exact_logit(C, w, Q, j) >= thr_ref; /* rare: within the fp32 bound */
            const int keep = (double)Arow[j] >= tau;
            mem[n.n_mem] = j;
            n.n_mem += keep;
            kept[n.n_kept] = j;
            n.n_kept += prune_digital & pass & keep;
            n.n_pass += pass;
            n.reuse += pm[j] & keep;
            n.n_fk += keep & !pass;
            n.n_fp += pass & !keep;
        }
        return n;
    }
    for (int j = 0; j < Q->end; j++) {
        if (Q->kvalid && !Q->kvalid[j]) continue;
        const double x = screen_logit(C, w, Q, j);
        int pass = x >= hi ? 1 : x < lo ? 0 : exact_logit(C, w, Q, j) >= thr_ref;
        int keep;
        if (M->mem_all) keep = 1;
        else if (M->mem_topk) keep = w->passmark[j];
        else {
            double tj = P->quant_row ? (M->thr_mem / key_logit_scale(C, w, Q, j) - M->marg - M->o) / M->u : M->tau;
            double a = has_off ? (double)Arow[j] + w->off[j] : (double)Arow[j];
            if (V2row && c2 > 0) {
                /* read noise: drawn only when it can change the decision (truncated at 8 std) */
                double sd = c2 * sqrt((double)V2row[j]);
                if (a - tj > 8 * sd) keep = 1;
                else if (a - tj < -8 * sd) keep = 0;
                else keep = a + read_noise(C, Q, j, sd) >= tj;
            } else {
                keep = a >= tj;
            }
        }
        n.n_pass += pass;
        if (keep) {
            w->mem[n.n_mem++] = j;
            n.reuse += w->prevmark[j];
            n.n_fk += !pass;
            if (prune_digital && pass) w->kept[n.n_kept++] = j;
        } else {
            n.n_fp += pass;
        }
    }
    return n;
}

/* Dense softmax denominator over the visible keys, relative to smax (for mass_lost). */
static double mass_denominator(const fn_call *C, const fn_work *w, const fn_query *Q) {
    double Z = 0;
    if (C->uni) {
        for (int j = 0; j < Q->end; j++) {
            double t = Q->xs * (double)Q->Srow[j] - Q->smax;
            t = t < -SP_MASS_CUT ? -60.0 : t; /* e^-60 ~ 1e-26: nothing */
            double e = mass_exp(t);
            Z += (Q->kvalid && !Q->kvalid[j]) ? 0.0 : e;
        }
    } else {
        for (int j = 0; j < Q->end; j++)
            if ((!Q->kvalid || Q->kvalid[j]) && screen_logit(C, w, Q, j) - Q->smax >= -SP_MASS_CUT)
                Z += mass_exp(screen_logit(C, w, Q, j) - Q->smax);
    }
    return Z;
}

/* Pass digital_stage (sec. 1.4): which keys enter softmax, with which logits (w->kept,
 * w->scores). pruning: the kept keys of compare_and_select, exact logits. norecompute: every
 * survivor, with its MSB-only digital logit lf_j (Bm 2^(8-b) + (c - 128) sum q). sprint: the
 * survivors recomputed with the full 8-bit key and thresholded exactly again (onchip: max over
 * the survivors - delta; topk: the topk-th largest survivor; else thr_ref). */
static void digital_stage(const fn_call *C, fn_work *w, const fn_query *Q, double thr_ref, long topk, fn_counts *n) {
    const sp_fn_params *P = C->P;
    if (C->mode == SP_FN_PRUNING) {
        if (C->hw) for (int t = 0; t < n->n_kept; t++) w->scores[t] = screen_logit(C, w, Q, w->kept[t]);
        else if (P->outputs) exact_scores(w, Q->stamp, Q->qrow, C->h, C->scale, w->kept, n->n_kept, w->scores);
        return;
    }
    if (C->mode == SP_FN_NORECOMPUTE) {
        for (int t = 0; t < n->n_mem; t++) {
            int j = w->mem[t];
            w->kept[n->n_kept] = j;
            double z = (double)w->Bm[(size_t)Q->r * C->NK + (size_t)j] * C->p2s + (C->cmid - 128) * Q->sqi;
            if (C->hw) z = round(z);
            w->scores[n->n_kept++] = key_logit_scale(C, w, Q, j) * z;
        }
        return;
    }
    double thr_x;
    if (C->kind == SP_POLICY_ONCHIP) {
        double mx = screened_max(C, w, Q, w->mem, n->n_mem);
        thr_x = mx - P->delta;
    } else if (C->kind == SP_POLICY_TOPK) { /* ranked by the screening score, as thr_ref */
        long kk = topk < n->n_mem ? topk : n->n_mem;
        for (int t = 0; t < n->n_mem; t++) w->tmp[t] = screen_logit(C, w, Q, w->mem[t]);
        thr_x = kk > 0 ? kth_largest(w->tmp, n->n_mem, (int)kk) : INFINITY;
    } else {
        thr_x = thr_ref;
    }
    for (int t = 0; t < n->n_mem; t++) {
        int j = w->mem[t];
        int keep = C->kind == SP_POLICY_TOPK ? screen_logit(C, w, Q, j) >= thr_x : passes(C, w, Q, j, thr_x);
        if (keep) w->kept[n->n_kept++] = j;
    }
    if (C->hw) for (int t = 0; t < n->n_kept; t++) w->scores[t] = screen_logit(C, w, Q, w->kept[t]);
    else if (P->outputs) exact_scores(w, Q->stamp, Q->qrow, C->h, C->scale, w->kept, n->n_kept, w->scores);
}

/* Dense softmax mass of the keys not kept: 1 - sum_kept e^(x - smax) / Z (clamped at 0). */
static double mass_lost(const fn_call *C, const fn_work *w, const fn_query *Q, const fn_counts *n, double Z) {
    double Kp = 0;
    for (int t = 0; t < n->n_kept; t++) {
        double x = screen_logit(C, w, Q, w->kept[t]) - Q->smax;
        if (x >= -SP_MASS_CUT) Kp += mass_exp(x);
    }
    double ml = Z > 0 ? 1.0 - Kp / Z : 0.0;
    return ml < 0 ? 0 : ml;
}

/* Pass softmax_and_values: orow (d) = softmax over the kept keys' logits, times V: the float
 * reference (sp_attn_softmax_wsum) or the Fig. 7c datapath (sp_hw_softmax_wsum, 8-bit V);
 * zeros when sprint.outputs is off. */
static void softmax_and_values(const fn_call *C, fn_work *w, const fn_query *Q, int n_kept, float *orow) {
    if (!C->P->outputs) {
        memset(orow, 0, (size_t)C->d * sizeof *orow);
    } else if (!C->hw) {
        sp_attn_softmax_wsum(C->h, w->kept, w->scores, n_kept, orow);
    } else {
        for (int t = 0; t < n_kept; t++) {
            int j = w->kept[t];
            w->lscale[t] = key_logit_scale(C, w, Q, j);
            w->zint[t] = (int32_t)llround(w->scores[t] / key_logit_scale(C, w, Q, j));
            w->vrows[t] = w->vi + (size_t)j * C->D;
        }
        sp_hw_softmax_wsum(n_kept, w->zint, w->lscale, w->vrows, C->d, (double)(C->nk > 0 ? w->sv[0] : 1.0f),
                           C->P->hw_frac_bits, orow);
    }
}

/* Score spread of a query (issue 8, for the simulator's workload statistics): the standard
 * deviation of the scaled scores (screening logits: fp32 q.k/sqrt(d) in float mode, the Fig. 7
 * integer score times its scale in hw mode) over the visible keys, nats; -1 with fewer than
 * two visible keys. Computed only when an observer listens. */
static double score_spread(const fn_call *C, const fn_work *w, const fn_query *Q) {
    double s = 0, s2 = 0;
    long n = 0;
    for (int j = 0; j < Q->end; j++) {
        if (Q->kvalid && !Q->kvalid[j]) continue;
        double x = screen_logit(C, w, Q, j) - Q->smax; /* shifted: no cancellation */
        s += x, s2 += x * x, n++;
    }
    if (n < 2) return -1;
    double m = s / (double)n, v = s2 / (double)n - m * m;
    return v > 0 ? sqrt(v) : 0;
}

/* Pass record_statistics: the op's counters, the observer's record, and this query's
 * survivors become the previous query's (reuse, onchip estimate). */
static void record_statistics(const fn_call *C, fn_work *w, const fn_query *Q, const fn_counts *n, double ml,
                              sp_attn_stats *st) {
    const sp_attn_head *h = C->h;
    st->queries += 1;
    st->pairs_visible += Q->n_vis;
    st->pairs_kept += n->n_kept;
    st->pairs_mem_kept += n->n_mem;
    st->exact_pass += n->n_pass;
    st->false_prunes += n->n_fp;
    st->false_keeps += n->n_fk;
    st->mass_lost += ml;
    if (w->n_prev >= 0) {
        st->reuse_pairs += n->reuse;
        st->new_fetch += n->n_mem - n->reuse;
        st->prev_kept += n->n_mem;
        st->later_visible += Q->n_vis;
    }
    if (C->op->observer) {
        sp_query_record rec = {.layer = h->layer, .head = h->head, .seq_id = h->seq_id, .qi = Q->i,
                               .pos = h->q_offset + Q->i, .n_k = C->nk, .n_visible = Q->n_vis, .n_mem_kept = n->n_mem,
                               .mem_kept = w->mem, .n_kept = n->n_kept, .kept = w->kept, .n_false_prunes = n->n_fp,
                               .n_false_keeps = n->n_fk, .mass_lost = ml};
        double spread = Q->n_vis > 1 ? score_spread(C, w, Q) : -1;
        if (spread >= 0) rec.has_score_spread = 1, rec.score_spread = spread;
        C->op->observer(C->op->observer_user, &rec);
    }
    for (int t = 0; t < (w->n_prev > 0 ? w->n_prev : 0); t++) w->prevmark[w->prev[t]] = 0;
    for (int t = 0; t < n->n_mem; t++) w->prevmark[w->mem[t]] = 1;
    memcpy(w->prev, w->mem, (size_t)n->n_mem * sizeof *w->prev);
    w->n_prev = n->n_mem;
}

/* One query through every pass after score_block. */
static void run_query(const fn_call *C, fn_work *w, fn_query *Q, sp_attn_stats *st) {
    const sp_attn_head *h = C->h;
    const sp_fn_params *P = C->P;
    visible_keys(C, w, Q);
    double qn = 0;
    if (!C->hw) {
        for (int c = 0; c < C->d; c++) qn += (double)Q->qrow[c] * Q->qrow[c];
        qn = sqrt(qn);
    }
    /* fp32 rounding bound of the screening logits: |fl(q.k) - q.k| <= gamma_d |q| |k| */
    Q->tol = C->hw ? 0.0 : C->gamma * qn * C->kmaxnorm * C->scale + 1e-300;
    fn_counts n = {0, 0, 0, 0, 0, 0};
    double ml = 0;
    if (Q->n_vis > 0) {
        double tmax;
        long topk;
        double thr_ref = policy_threshold(C, w, Q, &tmax, &topk);
        Q->sqi = 0;
        for (int c = 0; c < C->d; c++) Q->sqi += Q->qirow[c];
        fn_dac_sums s = {0, 0, 0, 0, 0, 0, 0};
        if (C->inmem) s = dac_sums(C, w, Q);
        fn_memref M = memory_reference(C, w, Q, thr_ref, tmax, &s);
        if (M.mem_topk) analog_topk(C, w, Q, topk, &s);
        n = compare_and_select(C, w, Q, thr_ref, &M);
        double Z = P->mass_lost ? mass_denominator(C, w, Q) : 0;
        digital_stage(C, w, Q, thr_ref, topk, &n);
        if (P->mass_lost) ml = mass_lost(C, w, Q, &n, Z);
    }
    softmax_and_values(C, w, Q, n.n_kept, h->out + (size_t)Q->i * (size_t)h->ldo);
    record_statistics(C, w, Q, &n, ml, st);
}

sp_status sp_fn_check_head(sp_attn_op *op, const sp_fn_params *P, const sp_attn_head *h, sp_attn_stats **st,
                           double *kmaxnorm, sp_error *err) {
    sp_status s = sp_attn_op_check(op, h, st, err);
    if (s != SP_OK) return s;
    if (!(h->scale > 0) || !isfinite(h->scale))
        return sp_error_set(err, SP_ERR_ARG, "%s: score scale must be finite and > 0, got %g", op->name,
                            (double)h->scale);
    if (P->head_dim && h->d != P->head_dim)
        return sp_error_set(err, SP_ERR_CONFIG,
                            "%s: thresholds were calibrated for head dim %d, this head has d = %d (another model?)",
                            op->name, P->head_dim, h->d);
    if (h->d > 512)
        return sp_error_set(err, SP_ERR_ARG, "%s: head dim %d > 512 (the in-memory sgemm is exact only up to 512)",
                            op->name, h->d);
    int bad;
    if (!check_finite(h->q, h->n_q, h->d, h->ldq, h->query_valid, &bad))
        return sp_error_set(err, SP_ERR_DATA, "%s layer %d head %d: NaN or infinite value in Q row %d", op->name,
                            h->layer, h->head, bad);
    if (!check_finite(h->k, h->n_k, h->d, h->ldk, h->key_valid, &bad))
        return sp_error_set(err, SP_ERR_DATA, "%s layer %d head %d: NaN or infinite value in K row %d", op->name,
                            h->layer, h->head, bad);
    if (!check_finite(h->v, h->n_k, h->d, h->ldv, h->key_valid, &bad))
        return sp_error_set(err, SP_ERR_DATA, "%s layer %d head %d: NaN or infinite value in V row %d", op->name,
                            h->layer, h->head, bad);
    /* Largest valid key norm (float) for the fp32 rounding bound of the screening scores
     * (padded keys are never scored: their garbage must not widen the bound). */
    double kn = P->arith_hw ? 0 : sqrt(max_row_norm2(h->k, h->n_k, h->d, h->ldk, h->key_valid));
    double qn = P->arith_hw ? 0 : sqrt(max_row_norm2(h->q, h->n_q, h->d, h->ldq, h->query_valid));
    /* |q.k| <= |q| |k| (Cauchy-Schwarz): below FLT_MAX / 2 every fp32 product, partial sum
     * and score of the screening sgemm is finite. Larger (finite) inputs are refused rather
     * than screened with infinite scores. */
    if (qn * kn >= 0.5 * (double)FLT_MAX)
        return sp_error_set(err, SP_ERR_DATA,
                            "%s layer %d head %d: |q| |k| = %g exceeds the fp32 range of the score screening "
                            "(max %g); rescale Q and K",
                            op->name, h->layer, h->head, qn * kn, 0.5 * (double)FLT_MAX);
    *kmaxnorm = kn;
    return SP_OK;
}

static sp_status fn_run(sp_attn_op *op, const sp_attn_head *h, sp_error *err) {
    fn_ctx *cx = op->ctx;
    const sp_fn_params *P = &cx->p;
    sp_attn_stats *st = NULL;
    double kmaxnorm = 0;
    sp_status s = sp_fn_check_head(op, P, h, &st, &kmaxnorm, err);
    if (s != SP_OK) return s;

    fn_call C;
    memset(&C, 0, sizeof C);
    C.P = P, C.h = h, C.op = op;
    C.nq = h->n_q, C.nk = h->n_k, C.d = h->d, C.mode = P->mode, C.hw = P->arith_hw, C.kind = P->kind;
    C.inmem = C.mode == SP_FN_SPRINT || C.mode == SP_FN_NORECOMPUTE;
    C.b = P->rr.msb_bits, C.sh = 8 - C.b;
    C.cmid = sp_key_msb_center(C.b);
    C.p2s = (double)(1 << C.sh); /* 2^(8-b): multiplying by it is exact, like ldexp */
    C.scale = (double)h->scale;
    C.step = sp_dac_step(P->rr.dac_bits);
    C.uni = !(C.hw && P->quant_row);
    C.NK = (size_t)(C.nk > 0 ? C.nk : 1), C.D = (size_t)C.d;
    const size_t NK = C.NK, D = C.D;

    fn_work w;
    memset(&w, 0, sizeof w);
    quantise(&C, &w);
    program_array(&C, &w);
    C.kmaxnorm = kmaxnorm;
    C.gamma = 1.01 * C.d * ldexp(1.0, -24) / (1 - C.d * ldexp(1.0, -24));

    /* block buffers (block x n_k) and per-query scratch (n_k) */
    size_t BN = (size_t)SP_FN_BLOCK * NK;
    w.S = sp_xmalloc(BN, sizeof(float));
    if (C.inmem) w.A = sp_xmalloc(BN, sizeof(float));
    if (C.inmem && P->rr.c2c_sigma > 0) {
        w.V2 = sp_xmalloc(BN, sizeof(float));
        w.qd2 = sp_xmalloc((size_t)SP_FN_BLOCK * D, sizeof(float));
    }
    if (C.mode == SP_FN_NORECOMPUTE || C.hw) w.Bm = sp_xmalloc(BN, sizeof(float));
    if (C.hw) w.Bl = sp_xmalloc(BN, sizeof(float));
    w.vis = sp_xmalloc(NK, sizeof(int32_t));
    w.mem = sp_xmalloc(NK, sizeof(int32_t));
    w.kept = sp_xmalloc(NK, sizeof(int32_t));
    w.prev = sp_xmalloc(NK, sizeof(int32_t));
    w.src = sp_xmalloc(NK + 2, sizeof(int32_t));
    w.prevmark = sp_xcalloc(NK, 1);
    w.passmark = sp_xcalloc(NK, 1);
    w.ex = sp_xmalloc(NK, sizeof(double));
    w.tmp = sp_xmalloc(NK, sizeof(double));
    w.scores = sp_xmalloc(NK, sizeof(double));
    w.stamp = sp_xcalloc(NK, sizeof(int));
    w.n_prev = -1; /* no previous valid query in this call */

    int stamp = 0;
    for (int i0 = 0; i0 < C.nq; i0 += SP_FN_BLOCK) {
        int bq = C.nq - i0 < SP_FN_BLOCK ? C.nq - i0 : SP_FN_BLOCK;
        score_block(&C, &w, i0, bq);
        for (int r = 0; r < bq; r++) {
            int i = i0 + r;
            if (h->query_valid && !h->query_valid[i]) {
                memset(h->out + (size_t)i * (size_t)h->ldo, 0, D * sizeof(float));
                continue;
            }
            fn_query Q;
            memset(&Q, 0, sizeof Q);
            Q.i = i, Q.r = r, Q.stamp = ++stamp;
            Q.qrow = h->q + (size_t)i * (size_t)h->ldq;
            Q.qirow = w.qi + (size_t)i * D;
            Q.Srow = w.S + (size_t)r * NK;
            Q.kvalid = h->key_valid;
            Q.end = h->causal ? h->q_offset + i + 1 : C.nk;
            Q.sq = w.sq[i];
            /* one factor xs for every key unless hw with per-row key scales */
            Q.xs = C.hw ? C.scale * Q.sq * (double)w.sk[0] : C.scale;
            run_query(&C, &w, &Q, st);
        }
    }
    work_free(&w);
    return SP_OK;
}

static void fn_destroy(sp_attn_op *op) {
    fn_ctx *cx = op->ctx;
    if (!cx) return;
    free(cx->p.thr);
    free(cx);
    op->ctx = NULL;
}

unsigned sp_attn_op_stats_computed(const sp_attn_op *op) {
    if (!op || op->destroy != fn_destroy) return SP_STATS_EXACT | SP_STATS_MASS; /* prunes nothing */
    const fn_ctx *cx = op->ctx;
    unsigned s = 0;
    if (op->run != sp_fn_fast_run || cx->p.exact_stats) s |= SP_STATS_EXACT;
    if (cx->p.mass_lost) s |= SP_STATS_MASS;
    return s;
}

sp_attn_op *sp_fn_op_create(const char *name, int n_layers, int n_heads, const sp_fn_params *p) {
    sp_attn_op *op = sp_attn_op_alloc(name, n_layers, n_heads);
    fn_ctx *cx = sp_xcalloc(1, sizeof *cx);
    cx->p = *p;
    cx->n_layers = n_layers;
    cx->n_heads = n_heads;
    if ((p->kind == SP_POLICY_LAYER || p->kind == SP_POLICY_HEAD) && !p->thr) {
        cx->p.thr = sp_xmalloc((size_t)n_layers * (size_t)n_heads, sizeof(double));
        for (int i = 0; i < n_layers * n_heads; i++) cx->p.thr[i] = -INFINITY;
    }
    op->ctx = cx;
    /* the fast implementation where its preconditions hold (sprint.impl auto|fast), else this
     * reference; sp_attn_op_create refuses impl = fast where it does not apply */
    op->run = p->impl != SP_FN_IMPL_REFERENCE && !sp_fn_fast_unsupported(p) ? sp_fn_fast_run : fn_run;
    op->destroy = fn_destroy;
    return op;
}
