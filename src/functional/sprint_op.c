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
#include <stdlib.h>
#include <string.h>

#include "cpu/gemm.h"
#include "fn_internal.h"

#define SP_FN_BLOCK 64     /* queries per sgemm block */
#define SP_MASS_CUT 30.0   /* nats: keys further below the max add < e^-30 each to the mass */

typedef struct fn_ctx {
    sp_fn_params p;
    int n_layers, n_heads;
} fn_ctx;

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

/* exp(x) for x in [-SP_MASS_CUT, 0], relative error < 2e-7: 2^(x log2 e) split into an integer
 * power (exponent bits) and 2^f, |f| <= 1/2, by its degree-6 Taylor polynomial. Branch-free so the mass
 * loop vectorises; used only for the mass-lost statistic (documented in docs/functional.md). */
static inline double mass_exp(double x) {
    double y = x * 1.4426950408889634; /* log2(e) */
    double n = floor(y + 0.5), f = y - n; /* f in [-1/2, 1/2]: Taylor error (ln2/2)^7/7! */
    double p = 1.0 + f * (0.6931471805599453 +
                   f * (0.2402265069591007 +
                   f * (0.0555041086648216 +
                   f * (0.0096181291076285 + f * (0.0013333558146428 + f * 0.0001540353039338)))));
    union { double d; uint64_t u; } e;
    e.u = (uint64_t)((int64_t)n + 1023) << 52;
    return p * e.d;
}

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

static int check_finite(const float *x, int n, int d, int ld, const unsigned char *valid, int *row) {
    for (int i = 0; i < n; i++) {
        if (valid && !valid[i]) continue;
        const float *r = x + (size_t)i * (size_t)ld;
        for (int c = 0; c < d; c++)
            if (!isfinite(r[c])) {
                *row = i;
                return 0;
            }
    }
    return 1;
}

/* Largest squared norm (double) of the rows of x (n x d, stride ld) with valid[i] != 0. */
static double max_row_norm2(const float *x, int n, int d, int ld, const unsigned char *valid) {
    double mx = 0;
    for (int i = 0; i < n; i++) {
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
} fn_work;

static void work_free(fn_work *w) {
    free(w->qi), free(w->ki), free(w->vi), free(w->sq), free(w->sk), free(w->sv);
    free(w->qdf), free(w->g), free(w->g2), free(w->qif), free(w->lf), free(w->mf), free(w->qd), free(w->off);
    free(w->S), free(w->A), free(w->V2), free(w->Bm), free(w->Bl);
    free(w->vis), free(w->mem), free(w->kept), free(w->prev), free(w->src);
    free(w->prevmark), free(w->passmark);
    free(w->ex), free(w->tmp), free(w->scores), free(w->stamp), free(w->zint), free(w->lscale);
    free((void *)w->vrows);
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
    /* c (m x n) = a (m x d) . b (n x d)^T; AVX-512 kernel or OpenBLAS (cpu/gemm.h): any
     * summation order keeps the rounding bound the screening relies on */
    sp_gemm_nt(m, n, d, a, lda, b, ldb, c, ldc);
}

static sp_status fn_run(sp_attn_op *op, const sp_attn_head *h, sp_error *err) {
    fn_ctx *cx = op->ctx;
    const sp_fn_params *P = &cx->p;
    sp_attn_stats *slot = NULL;
    sp_status s = sp_attn_op_check(op, h, &slot, err);
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

    const int nq = h->n_q, nk = h->n_k, d = h->d, mode = P->mode, hw = P->arith_hw;
    const int inmem = mode == SP_FN_SPRINT || mode == SP_FN_NORECOMPUTE;
    const int b = P->rr.msb_bits, sh = 8 - b;
    const double cmid = sp_key_msb_center(b);
    const double p2s = (double)(1 << sh); /* 2^(8-b): multiplying by it is exact, like ldexp */
    const double scale = (double)h->scale;
    const int kind = P->kind;
    sp_attn_stats *st = slot;
    size_t NK = (size_t)(nk > 0 ? nk : 1), D = (size_t)d, NQ = (size_t)(nq > 0 ? nq : 1);

    fn_work w;
    memset(&w, 0, sizeof w);
    w.qi = sp_xmalloc(NQ * D, 1);
    w.ki = sp_xmalloc(NK * D, 1);
    w.sq = sp_xmalloc(NQ, sizeof(float));
    w.sk = sp_xmalloc(NK, sizeof(float));
    sp_quant_rows(h->q, nq, d, h->ldq, P->quant_row, h->query_valid, w.qi, w.sq);
    sp_quant_rows(h->k, nk, d, h->ldk, P->quant_row, h->key_valid, w.ki, w.sk);
    if (hw) {
        w.vi = sp_xmalloc(NK * D, 1);
        w.sv = sp_xmalloc(NK, sizeof(float));
        sp_quant_rows(h->v, nk, d, h->ldv, 0, h->key_valid, w.vi, w.sv); /* V: one scale (16-bit acc) */
        /* Fig. 7 q x K_MSB and q x K_LSB trees: integer sgemm operands (exact in fp32) */
        w.qif = sp_xmalloc(NQ * D, sizeof(float));
        w.mf = sp_xmalloc(NK * D, sizeof(float));
        w.lf = sp_xmalloc(NK * D, sizeof(float));
        for (size_t i = 0; i < NQ * D && nq; i++) w.qif[i] = w.qi[i];
        for (size_t i = 0; i < NK * D && nk; i++) {
            w.mf[i] = (float)sp_key_msb(w.ki[i], b);
            w.lf[i] = (float)sp_key_lsb(w.ki[i], b);
        }
        w.zint = sp_xmalloc(NK, sizeof(int32_t));
        w.lscale = sp_xmalloc(NK, sizeof(double));
        w.vrows = sp_xmalloc(NK, sizeof(int8_t *));
    }
    /* Head-level statistics of the stored keys, known when K is written (used by the margin). */
    double k_ms = 0, kmax = 0, e_g2 = 0, e_m2 = 0, e_top2 = 0, n_cells = 0;
    const double top = (double)((1 << b) - 1);
    const double step = sp_dac_step(P->rr.dac_bits);
    double full_scale = 0;
    if (inmem) {
        w.qd = sp_xmalloc(NQ * D, sizeof(int));
        w.qdf = sp_xmalloc(NQ * D, sizeof(float));
        for (int i = 0; i < nq; i++)
            for (int c = 0; c < d; c++) {
                int v = sp_dac_level(w.qi[(size_t)i * D + (size_t)c], P->rr.dac_bits);
                w.qd[(size_t)i * D + (size_t)c] = v;
                w.qdf[(size_t)i * D + (size_t)c] = (float)v;
            }
        w.g = sp_xmalloc(NK * D, sizeof(float));
        int ideal = sp_reram_ideal(&P->rr);
        double goff = P->rr.onoff_ratio > 1 ? top / (P->rr.onoff_ratio - 1) : 0;
        for (int j = 0; j < nk; j++) {
            int valid = !h->key_valid || h->key_valid[j];
            for (int c = 0; c < d; c++) {
                int kv = w.ki[(size_t)j * D + (size_t)c];
                int m = sp_key_msb(kv, b);
                double gv = ideal ? (double)m : sp_reram_cell(&P->rr, h->layer, h->kv_head, j, c, m);
                w.g[(size_t)j * D + (size_t)c] = (float)gv;
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
        full_scale = sp_reram_full_scale(&P->rr, d);
        w.off = sp_xcalloc(NK, sizeof(double));
        if (P->rr.cmp_offset_sigma > 0)
            for (int j = 0; j < nk; j++) w.off[j] = sp_reram_cmp_offset(&P->rr, h->layer, h->kv_head, j, d);
        if (P->rr.c2c_sigma > 0) {
            w.g2 = sp_xmalloc(NK * D, sizeof(float));
            for (size_t i = 0; i < NK * D && nk; i++) w.g2[i] = w.g[i] * w.g[i];
        }
        if (mode == SP_FN_NORECOMPUTE && !w.mf) {
            w.mf = sp_xmalloc(NK * D, sizeof(float));
            for (int j = 0; j < nk; j++)
                for (int c = 0; c < d; c++) w.mf[(size_t)j * D + (size_t)c] = (float)sp_key_msb(w.ki[(size_t)j * D + (size_t)c], b);
            if (!w.qif) {
                w.qif = sp_xmalloc(NQ * D, sizeof(float));
                for (size_t i = 0; i < NQ * D && nq; i++) w.qif[i] = w.qi[i];
            }
        }
    } else {
        for (int j = 0; j < nk; j++)
            if (!h->key_valid || h->key_valid[j])
                for (int c = 0; c < d; c++) {
                    double kv = w.ki[(size_t)j * D + (size_t)c];
                    if (fabs(kv) > kmax) kmax = fabs(kv);
                }
    }
    /* Largest valid key norm (float) for the fp32 rounding bound of the screening scores
     * (padded keys are never scored: their garbage must not widen the bound). */
    double kmaxnorm = hw ? 0 : max_row_norm2(h->k, nk, d, h->ldk, h->key_valid);
    double qmaxnorm = hw ? 0 : max_row_norm2(h->q, nq, d, h->ldq, h->query_valid);
    kmaxnorm = sqrt(kmaxnorm);
    /* |q.k| <= |q| |k| (Cauchy-Schwarz): below FLT_MAX / 2 every fp32 product, partial sum
     * and score of the screening sgemm is finite. Larger (finite) inputs are refused rather
     * than screened with infinite scores. */
    if (sqrt(qmaxnorm) * kmaxnorm >= 0.5 * (double)FLT_MAX) {
        work_free(&w);
        return sp_error_set(err, SP_ERR_DATA,
                            "%s layer %d head %d: |q| |k| = %g exceeds the fp32 range of the score screening "
                            "(max %g); rescale Q and K",
                            op->name, h->layer, h->head, sqrt(qmaxnorm) * kmaxnorm, 0.5 * (double)FLT_MAX);
    }
    const double gamma = 1.01 * d * ldexp(1.0, -24) / (1 - d * ldexp(1.0, -24));

    size_t BN = (size_t)SP_FN_BLOCK * NK;
    w.S = sp_xmalloc(BN, sizeof(float));
    if (inmem) w.A = sp_xmalloc(BN, sizeof(float));
    if (inmem && P->rr.c2c_sigma > 0) w.V2 = sp_xmalloc(BN, sizeof(float));
    if (mode == SP_FN_NORECOMPUTE || hw) w.Bm = sp_xmalloc(BN, sizeof(float));
    if (hw) w.Bl = sp_xmalloc(BN, sizeof(float));
    float *qd2 = (inmem && P->rr.c2c_sigma > 0) ? sp_xmalloc((size_t)SP_FN_BLOCK * D, sizeof(float)) : NULL;
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
    int n_prev = -1; /* -1: no previous valid query in this call */
    int stamp_now = 0;

    for (int i0 = 0; i0 < nq; i0 += SP_FN_BLOCK) {
        int bq = nq - i0 < SP_FN_BLOCK ? nq - i0 : SP_FN_BLOCK;
        if (nk > 0) {
            if (!hw) gemm_nt(bq, nk, d, h->q + (size_t)i0 * (size_t)h->ldq, h->ldq, h->k, h->ldk, w.S, nk);
            if (inmem) sp_reram_charge_block(bq, nk, d, w.qdf + (size_t)i0 * D, w.g, w.A);
            if (w.V2) {
                for (size_t t = 0; t < (size_t)bq * D; t++) {
                    float v = w.qdf[(size_t)i0 * D + t];
                    qd2[t] = v * v;
                }
                gemm_nt(bq, nk, d, qd2, d, w.g2, d, w.V2, nk);
            }
            if (w.Bm) gemm_nt(bq, nk, d, w.qif + (size_t)i0 * D, d, w.mf, d, w.Bm, nk);
            if (hw) {
                /* S = the Fig. 7 integer score: 16-bit saturating MSB and LSB trees recombined
                 * (sp_hw_score is the reference; every value here is an exact fp32 integer) */
                gemm_nt(bq, nk, d, w.qif + (size_t)i0 * D, d, w.lf, d, w.Bl, nk);
                for (int r = 0; r < bq; r++) {
                    double qs = 0;
                    for (int c = 0; c < d; c++) qs += w.qi[(size_t)(i0 + r) * D + (size_t)c];
                    const float *bm = w.Bm + (size_t)r * NK, *bl = w.Bl + (size_t)r * NK;
                    float *sr = w.S + (size_t)r * NK;
                    for (int j = 0; j < nk; j++) {
                        float m = bm[j] > 32767.0f ? 32767.0f : bm[j] < -32768.0f ? -32768.0f : bm[j];
                        float l = bl[j] > 32767.0f ? 32767.0f : bl[j] < -32768.0f ? -32768.0f : bl[j];
                        sr[j] = (float)((double)m * p2s + (double)l - 128.0 * qs);
                    }
                }
            }
        }
        for (int r = 0; r < bq; r++) {
            int i = i0 + r;
            float *orow = h->out + (size_t)i * (size_t)h->ldo;
            if (h->query_valid && !h->query_valid[i]) {
                memset(orow, 0, D * sizeof *orow);
                continue;
            }
            stamp_now++;
            const float *qrow = h->q + (size_t)i * (size_t)h->ldq;
            const int8_t *qirow = w.qi + (size_t)i * D;
            const float *Srow = w.S + (size_t)r * NK;
            const unsigned char *kvalid = h->key_valid;
            const int end = h->causal ? h->q_offset + i + 1 : nk;
            const double sq = w.sq[i];
            /* logit of key j from an integer score: lf_j * z */
#define LF(j) (scale * sq * (double)w.sk[(j)])
            /* screening logit of key j: fp32 score (float) or the exact Fig. 7 score (hw); one
             * factor xs for every key unless hw with per-row key scales */
            const int uni = !(hw && P->quant_row);
            const double xs = hw ? scale * sq * (double)w.sk[0] : scale;
#define SXL(j) (uni ? xs * (double)Srow[(j)] : LF(j) * (double)Srow[(j)])
            int n_vis = 0, first_vis = -1, last_vis = -1;
            double smax = -INFINITY;
            if (!kvalid && uni) { /* x = xs S is monotone in S (xs > 0): max on the floats */
                float fm = -INFINITY;
                for (int j = 0; j < end; j++) fm = Srow[j] > fm ? Srow[j] : fm;
                n_vis = end;
                first_vis = end > 0 ? 0 : -1;
                last_vis = end - 1;
                if (end > 0) smax = xs * (double)fm;
            } else {
                for (int j = 0; j < end; j++) {
                    if (kvalid && !kvalid[j]) continue;
                    double x = SXL(j);
                    if (first_vis < 0) first_vis = j;
                    last_vis = j;
                    n_vis++;
                    if (x > smax) smax = x;
                }
            }
            double qn = 0;
            if (!hw) {
                for (int c = 0; c < d; c++) qn += (double)qrow[c] * qrow[c];
                qn = sqrt(qn);
            }
            /* fp32 rounding bound of the screening logits: |fl(q.k) - q.k| <= gamma_d |q| |k| */
            const double tol = hw ? 0.0 : gamma * qn * kmaxnorm * scale + 1e-300;
            /* exact score of key j (float: reference order; hw: the Fig. 7 integer score) */
#define EX(j) ((w.stamp[(j)] == stamp_now) ? w.ex[(j)] : exact_score((j)))
#define exact_score(j) (w.stamp[(j)] = stamp_now,                                                       \
                        w.ex[(j)] = hw ? SXL(j) : exact_dot(qrow, h->k + (size_t)(j) * (size_t)h->ldk, d) * scale)
            /* exact decision x >= thr from the screening logit; exact dot only within tol */
#define PASSES(j, thr) (hw ? SXL(j) >= (thr) : SXL(j) >= (thr) + tol ? 1 : SXL(j) < (thr) - tol ? 0 : EX(j) >= (thr))
            /* exact max over a key list: fp32 max, then exact scores of the keys within the
             * rounding bound of it (2 tol), so only a few exact dots per query */
#define SCREENED_MAX(out, list, cnt)                                                                  \
    do {                                                                                              \
        double fm_ = -INFINITY;                                                                       \
        for (int t_ = 0; t_ < (cnt); t_++) {                                                          \
            double x_ = SXL((list)[t_]);                                                              \
            fm_ = x_ > fm_ ? x_ : fm_;                                                                \
        }                                                                                             \
        (out) = -INFINITY;                                                                            \
        for (int t_ = 0; t_ < (cnt); t_++)                                                           \
            if (SXL((list)[t_]) >= fm_ - 2 * tol) {                                                   \
                double e_ = EX((list)[t_]);                                                           \
                (out) = e_ > (out) ? e_ : (out);                                                      \
            }                                                                                         \
    } while (0)
            int n_mem = 0, n_kept = 0, n_fp = 0, n_fk = 0, n_pass = 0, reuse = 0;
            double mass_lost = 0;
            if (n_vis > 0) {
                const int relative = kind == SP_POLICY_ORACLE || kind == SP_POLICY_ONCHIP;
                /* true max of the exact scores over the visible keys (relative policies) */
                double tmax = smax;
                if (!hw && relative) {
                    tmax = -INFINITY;
                    const double lim = smax - 2 * tol;
                    for (int j = 0; j < end; j++)
                        if (SXL(j) >= lim && (!kvalid || kvalid[j])) {
                            double e = EX(j);
                            tmax = e > tmax ? e : tmax;
                        }
                }
                /* the policy's reference threshold (exact scores) */
                double thr_ref;
                long topk = 0;
                int nv2 = 0;
                if (kind == SP_POLICY_TOPK) {
                    nv2 = sp_attn_visible(h, i, w.vis);
                    SP_ASSERT(nv2 == n_vis);
                }
                if (kind == SP_POLICY_LAYER || kind == SP_POLICY_HEAD)
                    thr_ref = P->thr[h->layer * op->n_heads + h->head];
                else if (relative)
                    thr_ref = tmax - P->delta;
                else { /* top-k, ranked by the screening logit */
                    topk = (long)ceil(P->topk_fraction * n_vis);
                    if (topk < P->topk_min) topk = P->topk_min;
                    if (topk > n_vis) topk = n_vis;
                    for (int t = 0; t < n_vis; t++) w.tmp[t] = SXL(w.vis[t]);
                    thr_ref = kth_largest(w.tmp, n_vis, (int)topk);
                }
                /* ---- memory stage setup: per-query reference of the comparators ---- */
                const float *Arow = inmem ? w.A + (size_t)r * NK : NULL;
                const float *V2row = w.V2 ? w.V2 + (size_t)r * NK : NULL;
                const double c2 = P->rr.c2c_sigma;
                double thr_mem = -INFINITY, marg = 0, o_i = 0, u_i = 1, tau = -INFINITY, sqi = 0;
                int mem_all = !inmem, mem_topk = 0;
                for (int c = 0; c < d; c++) sqi += qirow[c];
                if (inmem) {
                    const int *qdrow = w.qd + (size_t)i * D;
                    double sqd = 0, sqd2 = 0, eq2 = 0, sqi2 = 0, sabs_qd = 0, sabs_eq = 0, sabs_qi = 0;
                    for (int c = 0; c < d; c++) {
                        double qv = qirow[c], dv = qdrow[c], eq = qv - step * dv;
                        sqd += dv;
                        sqd2 += dv * dv;
                        eq2 += eq * eq;
                        sqi2 += qv * qv;
                        sabs_qd += fabs(dv);
                        sabs_eq += fabs(eq);
                        sabs_qi += fabs(qv);
                    }
                    /* margin in integer score units (q_int . k_int) */
                    if (mode == SP_FN_SPRINT && P->margin_mode != 2) {
                        double u = step * ldexp(1.0, sh);
                        double an2 = u * u *
                                     (sqd2 * (P->rr.c2c_sigma * P->rr.c2c_sigma * e_g2 +
                                              P->rr.d2d_sigma * P->rr.d2d_sigma * e_g2 +
                                              P->rr.stuck_at_0 * e_m2 + P->rr.stuck_at_1 * e_top2) +
                                      pow(P->rr.cmp_offset_sigma * full_scale, 2));
                        if (P->margin_mode == 0) {
                            double v = step * step * sqd2 * (ldexp(1.0, 2 * sh) - 1) / 12.0 + eq2 * k_ms + an2;
                            if (!hw) v += (sqi2 + d * k_ms) / 12.0;
                            marg = P->margin_sigma * sqrt(v);
                        } else {
                            double cm = cmid; /* largest |l - c| of the centred LSBs, (2^(8-b) - 1) / 2 */
                            marg = step * sabs_qd * cm + sabs_eq * kmax + P->margin_sigma * sqrt(an2);
                            if (!hw) marg += (sabs_qi + d * kmax) / 2.0 + d / 4.0;
                        }
                    }
                    /* threshold the memory stage aims at (logits) */
                    if (kind == SP_POLICY_LAYER || kind == SP_POLICY_HEAD) thr_mem = thr_ref;
                    else if (kind == SP_POLICY_ORACLE) thr_mem = tmax - P->delta;
                    else if (kind == SP_POLICY_ONCHIP) {
                        /* estimate of the max from keys already on chip: the previous query's
                         * survivors and/or the first and last visible keys */
                        int ns = 0;
                        if (P->onchip_source != 2 && n_prev > 0)
                            for (int t = 0; t < n_prev; t++)
                                if (w.prev[t] < end) w.src[ns++] = w.prev[t];
                        if (P->onchip_source != 1 || ns == 0) {
                            w.src[ns++] = first_vis;
                            w.src[ns++] = last_vis;
                        }
                        double est = -INFINITY;
                        if (mode == SP_FN_SPRINT) {
                            SCREENED_MAX(est, w.src, ns);
                        } else { /* without recompute only the MSB-only digital scores exist */
                            for (int t = 0; t < ns; t++) {
                                int j = w.src[t];
                                double e = LF(j) * ((double)w.Bm[(size_t)r * NK + (size_t)j] * p2s + (cmid - 128) * sqi);
                                if (e > est) est = e;
                            }
                        }
                        thr_mem = est - P->delta;
                    } else {
                        mem_topk = 1;
                    }
                    o_i = step * (cmid - 128.0) * sqd;
                    u_i = step * ldexp(1.0, sh);
                    /* keep j iff u_i (a + off_j) + o_i + marg >= thr_mem / lf_j, i.e.
                     * a + off_j >= tau_j = (thr_mem / lf_j - marg - o_i) / u_i */
                    if (!mem_topk) {
                        if (thr_mem == -INFINITY) mem_all = 1;
                        else tau = (thr_mem / LF(first_vis) - marg - o_i) / u_i;
                    }
                    if (mem_topk) { /* analog top-k: the km largest noisy approximate scores */
                        long km = (long)ceil(topk * P->topk_mem_factor);
                        if (km > n_vis) km = n_vis;
                        for (int t = 0; t < n_vis; t++) {
                            int j = w.vis[t];
                            double a = Arow[j] + w.off[j];
                            if (V2row && c2 > 0)
                                a += c2 * sqrt((double)V2row[j]) *
                                     sp_reram_read_normal(&P->rr, h->layer, h->head, h->kv_head, h->seq_id,
                                                          h->q_offset + i, j);
                            w.scores[t] = LF(j) * step * (a * p2s + (cmid - 128.0) * sqd);
                            w.tmp[t] = w.scores[t];
                        }
                        double kth = kth_largest(w.tmp, n_vis, (int)km);
                        for (int t = 0; t < n_vis; t++) w.passmark[w.vis[t]] = w.scores[t] >= kth;
                    }
                }
                /* ---- one pass over the visible keys: exact pass, in-memory decision, counts ---- */
                const int prune_digital = mode == SP_FN_PRUNING;
                const int exact_band = !hw && kind != SP_POLICY_TOPK; /* else the screening logit is exact */
                const double hi = exact_band ? thr_ref + tol : thr_ref, lo = exact_band ? thr_ref - tol : thr_ref;
                const int has_off = P->rr.cmp_offset_sigma > 0;
                double Z = 0;
                const int fast = uni && !kvalid && !mem_all && !mem_topk && !P->quant_row && !has_off && !(V2row && c2 > 0);
                if (fast) {
                    /* the common case, branch-free: ideal or d2d/stuck/on-off devices, one scale */
                    int32_t *mem = w.mem, *kept = w.kept;
                    const unsigned char *pm = w.prevmark;
                    for (int j = 0; j < end; j++) {
                        const double x = xs * (double)Srow[j];
                        int pass = x >= hi;
                        if ((x >= lo) & !pass) pass = EX(j) >= thr_ref; /* rare: within the fp32 bound */
                        const int keep = (double)Arow[j] >= tau;
                        mem[n_mem] = j;
                        n_mem += keep;
                        kept[n_kept] = j;
                        n_kept += prune_digital & pass & keep;
                        n_pass += pass;
                        reuse += pm[j] & keep;
                        n_fk += keep & !pass;
                        n_fp += pass & !keep;
                    }
                } else
                for (int j = 0; j < end; j++) {
                    if (kvalid && !kvalid[j]) continue;
                    const double x = SXL(j);
                    int pass = x >= hi ? 1 : x < lo ? 0 : EX(j) >= thr_ref;
                    int keep;
                    if (mem_all) keep = 1;
                    else if (mem_topk) keep = w.passmark[j];
                    else {
                        double tj = P->quant_row ? (thr_mem / LF(j) - marg - o_i) / u_i : tau;
                        double a = has_off ? (double)Arow[j] + w.off[j] : (double)Arow[j];
                        if (V2row && c2 > 0) {
                            double sd = c2 * sqrt((double)V2row[j]);
                            if (a - tj > 8 * sd) keep = 1;
                            else if (a - tj < -8 * sd) keep = 0;
                            else
                                keep = a + sd * sp_reram_read_normal(&P->rr, h->layer, h->head, h->kv_head, h->seq_id,
                                                                      h->q_offset + i, j) >= tj;
                        } else {
                            keep = a >= tj;
                        }
                    }
                    n_pass += pass;
                    if (keep) {
                        w.mem[n_mem++] = j;
                        reuse += w.prevmark[j];
                        n_fk += !pass;
                        if (prune_digital && pass) w.kept[n_kept++] = j;
                    } else {
                        n_fp += pass;
                    }
                }
                if (P->mass_lost) { /* dense softmax denominator over the visible keys */
                    if (uni) {
                        for (int j = 0; j < end; j++) {
                            double t = xs * (double)Srow[j] - smax;
                            t = t < -SP_MASS_CUT ? -60.0 : t; /* e^-60 ~ 1e-26: nothing */
                            double e = mass_exp(t);
                            Z += (kvalid && !kvalid[j]) ? 0.0 : e;
                        }
                    } else {
                        for (int j = 0; j < end; j++)
                            if ((!kvalid || kvalid[j]) && SXL(j) - smax >= -SP_MASS_CUT) Z += mass_exp(SXL(j) - smax);
                    }
                }
                /* ---- digital stage: which keys enter softmax, with which scores ---- */
                if (mode == SP_FN_PRUNING) {
                    if (hw) for (int t = 0; t < n_kept; t++) w.scores[t] = SXL(w.kept[t]);
                    else if (P->outputs) exact_scores(&w, stamp_now, qrow, h, scale, w.kept, n_kept, w.scores);
                } else if (mode == SP_FN_NORECOMPUTE) {
                    for (int t = 0; t < n_mem; t++) {
                        int j = w.mem[t];
                        w.kept[n_kept] = j;
                        double z = (double)w.Bm[(size_t)r * NK + (size_t)j] * p2s + (cmid - 128) * sqi;
                        if (hw) z = round(z);
                        w.scores[n_kept++] = LF(j) * z;
                    }
                } else { /* sprint: recompute the survivors, exact threshold */
                    double thr_x;
                    if (kind == SP_POLICY_ONCHIP) {
                        double mx;
                        SCREENED_MAX(mx, w.mem, n_mem);
                        thr_x = mx - P->delta;
                    } else if (kind == SP_POLICY_TOPK) { /* ranked by the screening score, as thr_ref */
                        long kk = topk < n_mem ? topk : n_mem;
                        for (int t = 0; t < n_mem; t++) w.tmp[t] = SXL(w.mem[t]);
                        thr_x = kk > 0 ? kth_largest(w.tmp, n_mem, (int)kk) : INFINITY;
                    } else {
                        thr_x = thr_ref;
                    }
                    for (int t = 0; t < n_mem; t++) {
                        int j = w.mem[t];
                        int keep = kind == SP_POLICY_TOPK ? SXL(j) >= thr_x : PASSES(j, thr_x);
                        if (keep) w.kept[n_kept++] = j;
                    }
                    if (hw) for (int t = 0; t < n_kept; t++) w.scores[t] = SXL(w.kept[t]);
                    else if (P->outputs) exact_scores(&w, stamp_now, qrow, h, scale, w.kept, n_kept, w.scores);
                }
                if (P->mass_lost) {
                    double Kp = 0;
                    for (int t = 0; t < n_kept; t++) {
                        double x = SXL(w.kept[t]) - smax;
                        if (x >= -SP_MASS_CUT) Kp += mass_exp(x);
                    }
                    mass_lost = Z > 0 ? 1.0 - Kp / Z : 0.0;
                    if (mass_lost < 0) mass_lost = 0;
                }
            }
            /* ---- output ---- */
            if (!P->outputs) {
                memset(orow, 0, (size_t)d * sizeof *orow);
            } else if (!hw) {
                sp_attn_softmax_wsum(h, w.kept, w.scores, n_kept, orow);
            } else {
                for (int t = 0; t < n_kept; t++) {
                    int j = w.kept[t];
                    w.lscale[t] = LF(j);
                    w.zint[t] = (int32_t)llround(w.scores[t] / LF(j));
                    w.vrows[t] = w.vi + (size_t)j * D;
                }
                sp_hw_softmax_wsum(n_kept, w.zint, w.lscale, w.vrows, d, (double)(nk > 0 ? w.sv[0] : 1.0f),
                                   P->hw_frac_bits, orow);
            }
            /* counters */
            st->queries += 1;
            st->pairs_visible += n_vis;
            st->pairs_kept += n_kept;
            st->pairs_mem_kept += n_mem;
            st->exact_pass += n_pass;
            st->false_prunes += n_fp;
            st->false_keeps += n_fk;
            st->mass_lost += mass_lost;
            if (n_prev >= 0) {
                st->reuse_pairs += reuse;
                st->new_fetch += n_mem - reuse;
                st->prev_kept += n_mem;
                st->later_visible += n_vis;
            }
            if (op->observer) {
                sp_query_record rec = {.layer = h->layer, .head = h->head, .seq_id = h->seq_id, .qi = i,
                                       .pos = h->q_offset + i, .n_k = nk, .n_visible = n_vis, .n_mem_kept = n_mem,
                                       .mem_kept = w.mem, .n_kept = n_kept, .kept = w.kept, .n_false_prunes = n_fp,
                                       .n_false_keeps = n_fk, .mass_lost = mass_lost};
                op->observer(op->observer_user, &rec);
            }
            /* this query's survivors become the previous query's */
            for (int t = 0; t < (n_prev > 0 ? n_prev : 0); t++) w.prevmark[w.prev[t]] = 0;
            for (int t = 0; t < n_mem; t++) w.prevmark[w.mem[t]] = 1;
            memcpy(w.prev, w.mem, (size_t)n_mem * sizeof *w.prev);
            n_prev = n_mem;
#undef LF
#undef SXL
#undef EX
#undef exact_score
#undef SCREENED_MAX
#undef PASSES
        }
    }
    free(qd2);
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
    op->run = fn_run;
    op->destroy = fn_destroy;
    return op;
}
