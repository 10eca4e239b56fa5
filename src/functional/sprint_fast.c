/* sprint_fast.c: the fast implementation of mode sprint (issue 9; paper sec. 1.3-1.5, Fig. 6a).
 *
 * The reference (sprint_op.c, fn_run) emulates the hardware with full L x L fp32 products (the
 * screening scores S = Q K^T and the in-memory charges A = qd . g) and then prunes. This one
 * computes what the hardware computes, for the pairs it computes it:
 *   1. the in-memory charge A_ij = sum_c qd_ic m_jc as an integer sum of the DAC'd 8-bit query
 *      levels times the 4-bit key MSBs (int_screen_amx.h: AMX-INT8 where offered, 32 queries
 *      per call; else int_screen.h: AVX-512 VNNI, AVX2, portable),
 *      bit-exact with the reference's fp32 sgemm on an ideal device (tests/test_int_screen.c);
 *   2. the comparator: A_ij >= tau_i, tau_i from the same doubles as the reference (policy
 *      threshold, margin sp_fn_comparator_margin, offsets), as ceil(tau_i) on integers;
 *   3. fp32 scores q.k only for the keys the decisions need: the on-chip estimate's keys (the
 *      previous query's survivors and the anchors) and the survivors. Queries run in sub-blocks
 *      of FX_SUB = 4 (adjacent queries share on-chip keys, sec. 2.4): onchip scores a key for
 *      the sub-block's 4 queries at once and caches it, the keys to score found from bit masks
 *      (fx_scores_bits: the comparator's survivors, the previous query's); a fixed threshold with the
 *      AMX screen knows every comparator reference before the screen, takes the comparator
 *      bits from it and scores the 16-key panels dense in survivors whole (fx_dense_panels).
 *      A key's score is computed once per query. Every exact decision (the max estimates, the
 *      exact threshold) uses the reference's rule: the fp32 score decides unless it lies within
 *      its rounding bound tol = gamma_d |q| max|k| scale of the threshold, where the exact
 *      double product decides. The bound holds for any summation order, so the decisions, the
 *      kept masks and the counters equal the reference's exactly;
 *   4. softmax over the kept keys in fp32 from the scores already computed, and the weighted
 *      sums of V of a sub-block's 4 queries over the union of their kept keys, one V row load
 *      per key (fast_kernels.h: the kernels' exp2 polynomial, AVX-512 or portable); the
 *      reference does them in double, so outputs agree within fp32 rounding (tests/test_fn_fast.c).
 * Statistics over every visible pair (exact_pass, false prunes/keeps and the score spread an
 * observer gets: sprint.exact_stats; the dense softmax mass: sprint.mass_lost) and the oracle
 * policy (the true max over every visible key) need every visible pair's score: only then a
 * dense fp32 score block is computed, with the reference's own call (sp_gemm_nt on the same
 * 64-query blocks, so the same bits), and those statistics come out equal to the reference's.
 *
 * Preconditions (sp_fn_fast_unsupported): mode sprint, arith float, quant.granularity head, an
 * ideal device (every reram non-ideality 0: the charge is then the exact integer), policy
 * layer|head|oracle|onchip, b <= 4 (the packed nibbles). Elsewhere the reference runs. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attention/flash.h"
#include "cpu/gemm.h"
#include "functional/fast_kernels.h"
#include "functional/int_screen.h"
#include "functional/int_screen_amx.h"
#include "fn_internal.h"

#define FX_BLOCK 64      /* queries per block: the reference's SP_FN_BLOCK (same sgemm calls) */
#define FX_SUB 4         /* queries per sub-block: one VNNI screen tile row; they share scores (fx_scores) */
#define FX_LOG2E 1.4426950408889634
#define FX_AMX 32        /* queries per block of AMX charges (sp_iscreen_amx_rows32) */
/* The AMX charge rows are lda int32 apart: a multiple of 64 keys plus FX_LDA_PAD. Without the
 * pad, at n_k = 4096 the 32 rows a tile store writes lie 16 KB (a multiple of 4 KB) apart and
 * fall in one L1 set; with it the screen's share of the onchip profile fell by ~30%
 * (docs/RESULTS.md part 9k). < 64, so lda / 64 still counts the mask words. */
#ifndef FX_LDA_PAD
#define FX_LDA_PAD 16
#endif
_Static_assert(FX_SUB == 4, "the sub-block code (qn2, sp_fk_dots4, sp_fk_panel4) is written for 4 queries");
_Static_assert(FX_LDA_PAD >= 0 && FX_LDA_PAD < 64, "FX_LDA_PAD must keep lda / 64");
#define FX_DENSE_D 32    /* below this head dim the fp32 scores come from the dense block */
/* From this head dim on, the weighted sums of V run per sub-block over the union of its 4
 * queries' kept keys (sp_fk_wsum4: one V row load per key, but a merge step per key of the
 * union); below it query by query (sp_fk_softmax_wsum), where a V row is 1-2 cache lines and
 * the merge cost more than the loads it saved (docs/RESULTS.md part 9z.v). A speed choice: both
 * sum each query's kept keys in key order, outputs within fp32 rounding of each other. */
#ifndef FX_UNION_D
#define FX_UNION_D 64
#endif
/* A 16-key panel with at least this many keys to score in one call is scored whole from the
 * packed K (sp_fk_panel4: contiguous loads, ~2 cycles a pair) rather than row by row
 * (sp_fk_dots4: gathered rows); a speed choice, the scores obey the same bound either way
 * (docs/RESULTS.md part 9g). */
#ifndef FX_PANEL_MIN
#define FX_PANEL_MIN 4
#endif

const char *sp_fn_fast_unsupported(const sp_fn_params *p) {
    if (p->mode != SP_FN_SPRINT) return "only mode sprint has a fast implementation";
    if (p->arith_hw) return "sprint.arith = hw (the Fig. 7 datapath) runs in the reference only";
    if (p->quant_row) return "quant.granularity = row (per-key comparator references) runs in the reference only";
    if (!sp_reram_ideal(&p->rr))
        return "a reram non-ideality is set (the charge is no longer an integer sum): reference only";
    if (p->rr.msb_bits > 4) return "quant.msb_bits > 4 does not fit the packed 4-bit screen";
    if (p->kind == SP_POLICY_TOPK) return "policy topk (an analog top-k, not a comparator) runs in the reference only";
    return NULL;
}

/* Per-call constants. */
typedef struct fx_call {
    const sp_fn_params *P;
    const sp_attn_head *h;
    sp_attn_op *op;
    int nq, nk, d, d8, kind, dense, count_pass;
    int have_S;  /* the dense fp32 score block is computed (dense statistics, or small d) */
    int amx;     /* charges from the AMX screen, FX_AMX queries at a time (else FX_SUB, int_screen.h) */
    int amx_mask; /* fixed policy without dense statistics: the AMX screen's comparator bits, no charges */
    double scale, step, cmid, gamma, kmaxnorm, u;
    sp_fn_keystats ks;
    size_t NK, D, lda; /* lda: row stride of the charges A */
    sp_fk_dots_fn dots;
    sp_fk_gather_fn gather;
    sp_fk_softmax_wsum_fn wsum; /* d < FX_UNION_D: query by query */
    sp_fk_softmax_fn softmax;   /* d >= FX_UNION_D: weights, then the sub-block's sums */
    sp_fk_wsum4_fn wsum4;
    int union_sum;              /* d >= FX_UNION_D and outputs on */
    sp_fk_dots4_fn dots4;
    sp_fk_panel4_fn panel4;
    sp_fk_panels4_fn panels4;
    sp_fk_select_fn select;
    sp_fk_select_mask_fn select_mask;
    sp_fk_threshold_fn threshold;
    sp_fk_max_fn max;
    sp_fk_lookup4_fn lookup4;
    sp_fk_gather4_fn gather4;
    sp_fk_gather4x2_fn gather4x2;
    sp_fk_todo16_fn todo16;
    sp_fk_kmsb_fn kmsb;
    sp_fk_dac8_fn dac8_levels;
    sp_fk_dacsums8_fn dacsums8;
    int dac8;    /* the 8-bit DAC (qd = max(q, -127), step 1): the DAC sums from sp_fk_dacsums8 */
    sp_fk_dense_fn dense_row;
    sp_iscreen_tile_fn tile;
} fx_call;

/* Per-call buffers. */
typedef struct fx_work {
    int8_t *qi, *ki, *qd8;      /* 8-bit Q (nq x d), K (nk x d); DAC levels (nq x d8, zero padded) */
    int *qd;                    /* DAC levels (nq x d) as ints (margin sums) */
    float *sq, *sk;             /* quantisation scales */
    uint8_t *kp;                /* packed key MSBs */
    int32_t *A;                 /* (FX_SUB or FX_AMX rows x lda) integer charges */
    uint8_t *kb;                /* AMX-packed key MSBs (C.amx) */
    int8_t *qa;                 /* DAC levels, rows of sp_iscreen_amx_dA(d) bytes, FX_AMX-row padded (C.amx) */
    uint64_t *amask;            /* (FX_AMX x lda / 64) comparator bits of the AMX call (C.amx_mask) */
    float *S;                   /* (block x nk) fp32 scores (dense statistics only) */
    int *first_ge;              /* (nk + 1) first valid key >= j (nk: none); NULL = all valid */
    int *last_le;               /* (nk) last valid key <= j (-1: none) */
    int *nvalid;                /* (nk + 1) valid keys below j */
    float *sc4;                 /* (4 nk) fp32 score of key j for query r of the sub-block: sc4[4 j + r], */
    int *st4;                   /*   valid when st4[j] == blk (every key scored for all its queries at once) */
    float *kpf;                 /* K packed in 16-key panels (flash.h), NULL with the dense block */
    int32_t *glist;             /* (nk + 18) keys scored row by row in one fx_scores_bits call */
    int32_t *plist;             /* (nk / 16 + 1) panels scored whole in one fx_scores_bits call */
    int32_t *wlist;             /* (nk / 16 + 34) panels with keys to score in one fx_scores_bits call */
    int blk, b_i0, b_nr;        /* sub-block stamp, first query, queries */
    double qn2[FX_SUB];         /* |q|^2 of the sub-block's queries (double, in element order) */
    double *ex;                 /* (nk) exact logit of key j for the query of stamp exst[j] */
    int *exst;
    int32_t *mem, *kept, *prev, *src, *miss, *mpos, *cand; /* (nk + 16) lists */
    int32_t *iota;              /* (nk) 0, 1, ..., nk - 1 */
    float *tmp;                 /* (nk + 16) */
    float *ssc, *msc, *ksc;     /* (nk + 16) compact fp32 scores of src, mem, kept */
    float *nsc;                 /* (nk + 18) onchip: slot nsc_slot's scores of mem, for the next query */
    int nsc_blk, nsc_slot;      /*   valid in sub-block nsc_blk (-1: none) */
    uint16_t *bits, *pbits;     /* (nbits) survivor masks of this and the previous valid query */
    uint16_t *done;             /* (nbits) onchip: keys scored for every query of the sub-block (sc4 valid) */
    uint16_t *need;             /* (nbits) onchip: scratch mask of the sources' keys */
    size_t nbits;
    int n_prev;                 /* survivors of the previous valid query, -1 = none yet */
    int32_t *kl;                /* (FX_SUB, nk + 16) outputs on: the sub-block's queries' kept keys, ascending, */
    float *pl;                  /*   each list ended by INT32_MAX, and their softmax weights (fx_flush) */
} fx_work;

static void fx_free(fx_work *w) {
    free(w->qi), free(w->ki), free(w->qd8), free(w->qd), free(w->sq), free(w->sk), free(w->kp), free(w->A);
    free(w->S), free(w->first_ge), free(w->last_le), free(w->nvalid), free(w->sc4), free(w->st4), free(w->ex);
    free(w->exst), free(w->mem), free(w->kept), free(w->prev), free(w->src), free(w->miss), free(w->mpos);
    free(w->cand), free(w->iota), free(w->kpf), free(w->glist), free(w->plist), free(w->wlist);
    free(w->kb), free(w->qa), free(w->amask);
    free(w->tmp), free(w->ssc), free(w->nsc), free(w->msc), free(w->ksc), free(w->bits), free(w->pbits);
    free(w->done), free(w->need), free(w->kl), free(w->pl);
}

/* Empties the sub-block's 4 kept lists (the end marker, and a weight of 0 the merge reads there). */
static void fx_lists_empty(int32_t *kl, float *pl, size_t ld) {
    for (int r = 0; r < FX_SUB; r++) kl[(size_t)r * ld] = INT32_MAX, pl[(size_t)r * ld] = 0.0f;
}

/* Outputs of the sub-block's queries i0 .. i0 + nr - 1 (outputs on): the weighted sums of V
 * over the union of their kept keys, from the lists fx_query_run left (a query that kept
 * nothing or was not run has an empty list: its row is 0); then the lists emptied. */
static void fx_flush(const fx_call *C, fx_work *w, int i0, int nr) {
    const sp_attn_head *h = C->h;
    const size_t ld = C->NK + 16;
    float *out[FX_SUB] = {NULL};
    for (int r = 0; r < nr; r++) out[r] = h->out + (size_t)(i0 + r) * (size_t)h->ldo;
    C->wsum4(w->kl, w->pl, ld, h->v, h->ldv, C->d, out);
    fx_lists_empty(w->kl, w->pl, ld);
}

/* Per-query state. */
typedef struct fx_query {
    int i, r, ra, stamp, end, n_vis, first_vis, last_vis; /* r: slot in the FX_SUB sub-block, ra: row of A */
    const float *qrow;
    const float *Srow;   /* dense scores of this query (n_k), NULL without the dense pass */
    double sq, tol, smax;
} fx_query;

/* Exact logit of key j in the reference order (sprint_op.c exact_dot), cached per query. */
static double fx_exact(const fx_call *C, fx_work *w, const fx_query *Q, int j) {
    if (w->exst[j] == Q->stamp) return w->ex[j];
    const float *k = C->h->k + (size_t)j * (size_t)C->h->ldk;
    double acc = 0.0;
    for (int c = 0; c < C->d; c++) acc += (double)Q->qrow[c] * (double)k[c];
    w->exst[j] = Q->stamp;
    return w->ex[j] = acc * C->scale;
}

/* The smallest float >= x (x a double; +-inf map to themselves): for a float s,
 * s >= fx_float_up(x)  <=>  (double)s >= x. */
static float fx_float_up(double x) {
    float f = (float)x;
    if (isfinite(x) && (double)f < x) f = nextafterf(f, INFINITY);
    return f;
}

/* Compact fp32 scores out[t] (q.k units) of keys list[0..n) for a fixed policy or with the dense
 * block (onchip without it: fx_scores_bits): from the dense block, else from the sub-block's
 * dense panels (fx_dense_panels, stamps st4) and row by row for the rest. Which call computes a
 * score changes only its summation order, which the exact decisions' rounding bound covers (any
 * order). */
static void fx_scores(const fx_call *C, fx_work *w, const fx_query *Q, const int32_t *list, int n, float *out) {
    if (Q->Srow) {
        C->gather(Q->Srow, list, n, out);
        return;
    }
    SP_ASSERT(C->kind != SP_POLICY_ONCHIP);
    if (!C->amx_mask) {
        C->dots(Q->qrow, C->h->k, C->h->ldk, C->d, list, n, out);
        return;
    }
    const int nm = C->lookup4(list, n, w->st4, w->blk, w->sc4, Q->r, out, w->miss, w->mpos);
    C->dots(Q->qrow, C->h->k, C->h->ldk, C->d, w->miss, nm, w->tmp);
    for (int m = 0; m < nm; m++) out[w->mpos[m]] = w->tmp[m];
}

/* onchip (without the dense block): compact fp32 scores out[t] of keys list[0..n), whose set is
 * the bit mask need (words [0, nw); bit u of need[w] for key 16 w + u; extra bits only cost
 * work). The sub-block's keys not yet scored (need & ~done) are scored for all its queries at
 * once: a 16-key panel with FX_PANEL_MIN or more of them whole from the packed K (sp_fk_panel4),
 * the others row by row (sp_fk_dots4); then every list key's score is read from the cache
 * (sp_fk_gather4). The masks replace fx_scores' per-key stamp lookups and miss lists (the
 * survivors come as a mask from the comparator, the sources are the previous query's mask).
 * out_next (NULL: not wanted) gets slot r + 1's scores of the same keys. */
static void fx_scores_bits(const fx_call *C, fx_work *w, const fx_query *Q, const uint16_t *need, int nw,
                           const int32_t *list, int n, float *out, float *out_next) {
    const sp_attn_head *h = C->h;
    const float *q0 = h->q + (size_t)w->b_i0 * (size_t)h->ldq;
    int ng = 0, np = 0;
    const int nt = C->todo16(need, w->done, nw, w->wlist);
    for (int t = 0; t < nt; t++) {
        const int u = w->wlist[t];
        unsigned m = (unsigned)(need[u] & ~w->done[u]);
        if (__builtin_popcount(m) >= FX_PANEL_MIN) {
            w->plist[np++] = u;
            w->done[u] = 0xFFFFu;
            continue;
        }
        w->done[u] |= (uint16_t)m;
        for (; m; m &= m - 1) w->glist[ng++] = 16 * u + __builtin_ctz(m);
    }
    C->panels4(q0, h->ldq, w->b_nr, w->kpf, C->d, w->plist, np, w->sc4);
    C->dots4(q0, h->ldq, w->b_nr, h->k, h->ldk, C->d, w->glist, ng, w->sc4);
    if (out_next) /* and slot r + 1's: the next query's sources (fx_query_run) */
        C->gather4x2(w->sc4, Q->r, list, n, out, out_next);
    else
        C->gather4(w->sc4, Q->r, list, n, out);
}

/* Exact max of the logits of keys list[0..n) with fp32 scores sc (-inf if empty): the fp32 max,
 * then exact products of the keys whose score lies within 2 tol of it (the reference's
 * screened_max; the true max is among them). The cut is taken in score units and loosened by
 * 1e-6 relative, so the candidates are a superset of the reference's. */
static double fx_screened_max(const fx_call *C, fx_work *w, const fx_query *Q, const int32_t *list, const float *sc,
                              int n) {
    if (n == 0) return -INFINITY;
    const float fm = C->max(sc, n);
    double cut = (double)fm - 2 * Q->tol / C->scale;
    cut -= fabs(cut) * 1e-6 + 1e-300;
    const float cf = fx_float_up(cut);
    const int nc = C->threshold(sc, list, n, cf, cf, w->cand, w->tmp); /* the candidates */
    double out = -INFINITY;
    for (int t = 0; t < nc; t++) {
        double e = fx_exact(C, w, Q, w->cand[t]);
        out = e > out ? e : out;
    }
    return out;
}

/* "exact logit >= thr" for a key with fp32 score s, as the reference's passes(): decided by
 * the fp32 logit outside its rounding band, by the exact product inside. */
static inline int fx_passes(const fx_call *C, fx_work *w, const fx_query *Q, int j, float s, double thr) {
    double x = C->scale * (double)s;
    return x >= thr + Q->tol ? 1 : x < thr - Q->tol ? 0 : fx_exact(C, w, Q, j) >= thr;
}

static int32_t fx_tau_int(double tau) { /* (double)A >= tau  <=>  A >= ceil(tau), |A| < 2^24 */
    if (!(tau > -2e9)) return INT32_MIN + 1;
    if (tau > 2e9) return INT32_MAX;
    return (int32_t)ceil(tau);
}

/* The comparator reference of query i as an integer (the reference's memory_reference): keys
 * with A_ij >= the result survive; INT32_MIN keeps every key (thr_mem = -inf). first_vis: the
 * query's first visible key (its scale factor). */
static int32_t fx_comparator_ti(const fx_call *C, const fx_work *w, int i, int first_vis, double thr_mem) {
    sp_fn_dac_sums s;
    if (C->dac8) {
        /* the 8-bit DAC (step 1, qd = max(q, -127), e = q - qd in {0, -1}): every term of
         * sp_fn_dac_sums_of is an integer and every partial sum too, so its doubles are these
         * integer sums exactly, in any order */
        int64_t t[4];
        C->dacsums8(w->qi + (size_t)i * C->D, C->d, t);
        s.sqd = (double)(t[0] + t[3]), s.sqd2 = (double)(t[1] - 255 * t[3]), s.eq2 = (double)t[3];
        s.sqi2 = (double)t[1], s.sabs_qd = (double)(t[2] - t[3]), s.sabs_eq = (double)t[3], s.sabs_qi = (double)t[2];
    } else {
        s = sp_fn_dac_sums_of(w->qi + (size_t)i * C->D, w->qd + (size_t)i * C->D, C->d, C->step);
    }
    const double marg = sp_fn_comparator_margin(C->P, C->d, &C->ks, &s);
    const double o = C->step * (C->cmid - 128.0) * s.sqd;
    const double lf = C->scale * (double)w->sq[i] * (double)w->sk[first_vis];
    if (thr_mem == -INFINITY) return INT32_MIN;
    return fx_tau_int((thr_mem / lf - marg - o) / C->u);
}

/* Counts of one query, as the reference's fn_counts. */
typedef struct fx_counts {
    int n_mem, n_kept, n_pass, n_fp, n_fk, reuse;
} fx_counts;

/* The dense statistics of one query (sp_fk_dense): exact pass counts (keys inside the fp32
 * band decided by the exact product, as the reference's compare_and_select), the mass
 * denominator and the spread sums, per sprint.exact_stats and sprint.mass_lost. */
static void fx_dense_stats(const fx_call *C, fx_work *w, const fx_query *Q, double thr_ref, int32_t ti, fx_counts *n,
                           sp_fk_dense_out *dn) {
    if (!C->dense) return;
    const sp_fk_dense_in in = {.S = Q->Srow, .n = Q->end, .kv = C->h->key_valid,
                               .A = w->A + (size_t)Q->ra * C->lda, .ti = ti, .scale = C->scale, .smax = Q->smax,
                               .hi = thr_ref + Q->tol, .lo = thr_ref - Q->tol, .want_pass = C->count_pass,
                               .want_mass = C->P->mass_lost, .want_spread = C->P->exact_stats && C->op->observer};
    C->dense_row(&in, w->cand, dn);
    n->n_pass += dn->n_pass, n->n_fk += dn->n_fk, n->n_fp += dn->n_fp;
    for (int t = 0; t < dn->n_amb; t++) {
        const int j = w->cand[t];
        const int pass = fx_exact(C, w, Q, j) >= thr_ref, keep = in.A[j] >= ti;
        n->n_pass += pass;
        n->n_fk += keep & !pass;
        n->n_fp += pass & !keep;
    }
}

/* One valid query through the passes of the reference (sprint_op.c run_query). */
static void fx_query_run(const fx_call *C, fx_work *w, fx_query *Q, sp_attn_stats *st) {
    const sp_attn_head *h = C->h;
    const sp_fn_params *P = C->P;
    const int kind = C->kind, relative = kind == SP_POLICY_ORACLE || kind == SP_POLICY_ONCHIP;
    const unsigned char *kv = h->key_valid;
    /* visible keys */
    Q->n_vis = w->nvalid ? w->nvalid[Q->end] : Q->end;
    Q->first_vis = Q->n_vis > 0 ? (w->first_ge ? w->first_ge[0] : 0) : -1;
    Q->last_vis = Q->n_vis > 0 ? (w->last_le ? w->last_le[Q->end - 1] : Q->end - 1) : -1;
    Q->smax = -INFINITY;
    if (C->dense && Q->n_vis > 0) { /* the reference's visible_keys: max screening logit */
        if (!kv) {
            Q->smax = C->scale * (double)C->max(Q->Srow, Q->end);
        } else {
            for (int j = 0; j < Q->end; j++) {
                if (!kv[j]) continue;
                double x = C->scale * (double)Q->Srow[j];
                if (x > Q->smax) Q->smax = x;
            }
        }
    }
    const double qn = sqrt(w->qn2[Q->r]);
    Q->tol = C->gamma * qn * C->kmaxnorm * C->scale + 1e-300;
    fx_counts n = {0, 0, 0, 0, 0, 0};
    sp_fk_dense_out dn;
    memset(&dn, 0, sizeof dn);
    double ml = 0;
    if (Q->n_vis > 0) {
        /* policy threshold on exact logits (the reference's policy_threshold) */
        double thr_ref = NAN, tmax = -INFINITY;
        if (relative && C->dense) {
            /* candidates: fp32 logit within 2 tol of the max (a superset, in score units) */
            double cut = (Q->smax - 2 * Q->tol) / C->scale;
            cut -= fabs(cut) * 1e-6 + 1e-300;
            const float cf = fx_float_up(cut);
            const int nc = C->threshold(Q->Srow, w->iota, Q->end, cf, cf, w->cand, w->tmp);
            for (int t = 0; t < nc; t++)
                if (!kv || kv[w->cand[t]]) {
                    double e = fx_exact(C, w, Q, w->cand[t]);
                    tmax = e > tmax ? e : tmax;
                }
            thr_ref = tmax - P->delta;
        } else if (!relative) {
            thr_ref = P->thr[h->layer * C->op->n_heads + h->head];
        }
        double thr_mem;
        if (kind == SP_POLICY_LAYER || kind == SP_POLICY_HEAD) thr_mem = thr_ref;
        else if (kind == SP_POLICY_ORACLE) thr_mem = tmax - P->delta;
        else {
            int ns, fast_src = 0;
            if (P->onchip_source != SP_FN_ONCHIP_ANCHORS && w->n_prev > 0 && w->prev[w->n_prev - 1] < Q->end) {
                /* every previous survivor is visible (ends never decrease in a call): the
                 * sources are the previous list as a whole, as sp_fn_onchip_sources gives them */
                memcpy(w->src, w->prev, (size_t)w->n_prev * sizeof *w->src);
                ns = w->n_prev;
                if (P->onchip_source != SP_FN_ONCHIP_PREV) w->src[ns++] = Q->first_vis, w->src[ns++] = Q->last_vis;
                /* the previous query's mask is the sources' (1: plus the two anchors at the end) */
                fast_src = P->onchip_source != SP_FN_ONCHIP_PREV ? 1 : 2;
            } else {
                ns = sp_fn_onchip_sources(P->onchip_source, w->prev, w->n_prev, Q->end, Q->first_vis, Q->last_vis,
                                          w->src);
            }
            float *ssc = w->ssc;
            if (Q->Srow) {
                fx_scores(C, w, Q, w->src, ns, ssc);
            } else if (fast_src && w->nsc_blk == w->blk && w->nsc_slot == Q->r) {
                /* the previous query ran in this sub-block: its survivors (these sources) were all
                 * scored for this query too, and their scores kept as a compact list (nsc); only
                 * the anchors may still need scoring */
                ssc = w->nsc;
                const float *q0 = C->h->q + (size_t)w->b_i0 * (size_t)C->h->ldq;
                for (int t = w->n_prev; t < ns; t++) {
                    const int32_t j = w->src[t];
                    if (!((w->done[j >> 4] >> (j & 15)) & 1u)) {
                        C->dots4(q0, C->h->ldq, w->b_nr, C->h->k, C->h->ldk, C->d, &j, 1, w->sc4);
                        w->done[j >> 4] |= (uint16_t)(1u << (j & 15));
                    }
                    ssc[t] = w->sc4[4 * (size_t)j + (size_t)Q->r];
                }
            } else { /* the sources' mask */
                const int nw = (Q->end + 15) / 16;
                if (fast_src) {
                    memcpy(w->need, w->pbits, (size_t)nw * sizeof *w->need);
                } else {
                    memset(w->need, 0, (size_t)nw * sizeof *w->need);
                    for (int t = 0; t < ns; t++) w->need[w->src[t] >> 4] |= (uint16_t)(1u << (w->src[t] & 15));
                }
                for (int t = ns - (fast_src == 1 ? 2 : 0); t < ns; t++) /* the anchors */
                    w->need[w->src[t] >> 4] |= (uint16_t)(1u << (w->src[t] & 15));
                fx_scores_bits(C, w, Q, w->need, nw, w->src, ns, ssc, NULL);
            }
            thr_mem = fx_screened_max(C, w, Q, w->src, ssc, ns) - P->delta;
        }
        /* the comparator: survivors, ascending (from the AMX screen's bits for a fixed policy) */
        const int32_t ti = fx_comparator_ti(C, w, Q->i, Q->first_vis, thr_mem);
        if (C->amx_mask)
            n.n_mem = C->select_mask(w->amask + (size_t)Q->ra * (C->lda / 64), Q->end, kv, w->mem, w->bits);
        else
            n.n_mem = C->select(w->A + (size_t)Q->ra * C->lda, Q->end, ti, kv, w->mem, w->bits);
        /* reuse: survivors the previous query kept too (bit masks; words beyond the previous
         * query's end are still zero or hold its bits: ends never decrease within a call) */
        for (int u = 0; u < (Q->end + 63) / 64; u++) { /* 64 keys at a time (nbits: whole 64-bit words) */
            uint64_t a, b;
            memcpy(&a, w->bits + 4 * (size_t)u, sizeof a);
            memcpy(&b, w->pbits + 4 * (size_t)u, sizeof b);
            n.reuse += __builtin_popcountll(a & b);
        }
        /* exact pass of every visible pair (only with the dense scores) */
        /* statistics over every visible pair (dense scores): exact pass, false prunes/keeps;
         * mass and spread below from the same pass */
        fx_dense_stats(C, w, Q, thr_ref, ti, &n, &dn);
        /* digital stage: recompute the survivors, exact threshold again. Scores clearly above
         * or below the threshold's band (in score units, loosened by 1e-6 relative) are decided
         * in fp32; the rest by the reference's rule (fx_passes). */
        if (kind == SP_POLICY_ONCHIP && !Q->Srow) {
            const int next = Q->r + 1 < w->b_nr; /* the sub-block's next query takes these as its sources */
            fx_scores_bits(C, w, Q, w->bits, (Q->end + 15) / 16, w->mem, n.n_mem, w->msc, next ? w->nsc : NULL);
            w->nsc_blk = next ? w->blk : -1, w->nsc_slot = Q->r + 1;
        } else
            fx_scores(C, w, Q, w->mem, n.n_mem, w->msc);
        double thr_x = kind == SP_POLICY_ONCHIP ? fx_screened_max(C, w, Q, w->mem, w->msc, n.n_mem) - P->delta
                                                : thr_ref;
        double hs = (thr_x + Q->tol) / C->scale, ls = (thr_x - Q->tol) / C->scale;
        if (isfinite(hs)) hs += fabs(hs) * 1e-6 + 1e-300;
        if (isfinite(ls)) ls -= fabs(ls) * 1e-6 + 1e-300;
        n.n_kept = C->threshold(w->msc, w->mem, n.n_mem, fx_float_up(ls), fx_float_up(hs), w->kept, w->ksc);
        if (n.n_kept < 0) { /* a score in the band: key by key, the reference's rule there */
            n.n_kept = 0;
            for (int t = 0; t < n.n_mem; t++) {
                const int j = w->mem[t];
                const float sj = w->msc[t];
                const double sd = sj;
                int keep = sd >= hs ? 1 : sd < ls ? 0 : fx_passes(C, w, Q, j, sj, thr_x);
                w->kept[n.n_kept] = j;
                w->ksc[n.n_kept] = sj;
                n.n_kept += keep;
            }
        }
        /* dense softmax mass of the keys not kept (the reference's mass_denominator/mass_lost) */
        if (P->mass_lost) {
            /* the kept keys' mass (the reference skips keys below the cut, this adds e^-60 for
             * each: < 1e-26 of the denominator, whose largest term is 1) */
            const sp_fk_dense_in kin = {.S = w->ksc, .n = n.n_kept, .scale = C->scale, .smax = Q->smax, .want_mass = 1};
            sp_fk_dense_out kout;
            C->dense_row(&kin, w->cand, &kout);
            ml = dn.Z > 0 ? 1.0 - kout.Z / dn.Z : 0.0;
            ml = ml < 0 ? 0 : ml;
        }
    }
    /* softmax over the kept keys, fp32; from FX_UNION_D on the keys and weights wait in the
     * sub-block's lists, and fx_flush sums V for the sub-block's queries over the union of their
     * kept keys (one V row load per key for up to 4 queries; docs/RESULTS.md part 9z.v: one
     * query at a time, each query's V rows came from L2 or L3 again); below it, query by query */
    if (P->outputs && !C->union_sum) {
        float *orow = h->out + (size_t)Q->i * (size_t)h->ldo;
        if (n.n_kept > 0)
            C->wsum(w->ksc, (float)(C->scale * FX_LOG2E), w->kept, n.n_kept, h->v, h->ldv, C->d, w->tmp, orow);
        else
            memset(orow, 0, C->D * sizeof *orow);
    } else if (P->outputs) {
        const size_t ld = C->NK + 16;
        int32_t *kl = w->kl + (size_t)Q->r * ld;
        if (n.n_kept > 0) {
            C->softmax(w->ksc, (float)(C->scale * FX_LOG2E), n.n_kept, w->pl + (size_t)Q->r * ld);
            memcpy(kl, w->kept, (size_t)n.n_kept * sizeof *kl);
        }
        kl[n.n_kept] = INT32_MAX, w->pl[(size_t)Q->r * ld + (size_t)n.n_kept] = 0.0f; /* the merge reads the weight at the end too */
    } else
        memset(h->out + (size_t)Q->i * (size_t)h->ldo, 0, C->D * sizeof(float));
    /* statistics (the reference's record_statistics) */
    st->queries += 1;
    st->pairs_visible += Q->n_vis;
    st->pairs_kept += n.n_kept;
    st->pairs_mem_kept += n.n_mem;
    st->exact_pass += n.n_pass;
    st->false_prunes += n.n_fp;
    st->false_keeps += n.n_fk;
    st->mass_lost += ml;
    if (w->n_prev >= 0) {
        st->reuse_pairs += n.reuse;
        st->new_fetch += n.n_mem - n.reuse;
        st->prev_kept += n.n_mem;
        st->later_visible += Q->n_vis;
    }
    if (C->op->observer) {
        sp_query_record rec = {.layer = h->layer, .head = h->head, .seq_id = h->seq_id, .qi = Q->i,
                               .pos = h->q_offset + Q->i, .n_k = C->nk, .n_visible = Q->n_vis, .n_mem_kept = n.n_mem,
                               .mem_kept = w->mem, .n_kept = n.n_kept, .kept = w->kept, .n_false_prunes = n.n_fp,
                               .n_false_keeps = n.n_fk, .mass_lost = ml};
        if (Q->n_vis > 1 && P->exact_stats) { /* the reference's score_spread */
            double m = dn.s1 / (double)dn.cnt, v = dn.s2 / (double)dn.cnt - m * m;
            rec.has_score_spread = 1, rec.score_spread = v > 0 ? sqrt(v) : 0;
        }
        C->op->observer(C->op->observer_user, &rec);
    }
    uint16_t *tb = w->pbits; /* this query's masks become the previous query's */
    w->pbits = w->bits, w->bits = tb;
    if (Q->n_vis == 0) memset(w->pbits, 0, w->nbits * sizeof *w->pbits);
    memcpy(w->prev, w->mem, (size_t)n.n_mem * sizeof *w->prev);
    w->n_prev = n.n_mem;
}

/* Fixed policy with the AMX screen's bits: before the sub-block's queries run, every 16-key
 * panel in which its FX_SUB queries have FX_PANEL_DENSE or more survivors is scored whole for
 * all of them (sp_fk_panel4; as the SPRINT CPU kernel's dense tiles, docs/RESULTS.md part 9b);
 * fx_scores takes those keys' scores from the cache and computes the others row by row. */
#define FX_PANEL_DENSE 16
static void fx_dense_panels(const fx_call *C, fx_work *w, int ra, int nr, int kend) {
    const size_t ldm = C->lda / 64;
    const float *q0 = C->h->q + (size_t)w->b_i0 * (size_t)C->h->ldq;
    for (int p = 0; p < (kend + 15) / 16; p++) {
        int cnt = 0;
        for (int r = 0; r < nr; r++)
            cnt += __builtin_popcount((unsigned)(w->amask[(size_t)(ra + r) * ldm + (size_t)(p / 4)] >> (16 * (p % 4))) &
                                      0xFFFFu);
        if (cnt < FX_PANEL_DENSE) continue;
        C->panel4(q0, C->h->ldq, nr, w->kpf + (size_t)p * 16 * C->D, C->d, w->sc4 + 64 * (size_t)p);
        const int e = 16 * p + 16 < C->nk ? 16 * p + 16 : C->nk;
        for (int u = 16 * p; u < e; u++) w->st4[u] = w->blk;
    }
}

sp_status sp_fn_fast_run(sp_attn_op *op, const sp_attn_head *h, sp_error *err) {
    sp_fn_ctx *cx = op->ctx;
    const sp_fn_params *P = &cx->p;
    sp_attn_stats *st = NULL;
    double kmaxnorm = 0;
    sp_status s = sp_fn_check_head(op, P, h, &st, &kmaxnorm, err);
    if (s != SP_OK) return s;
    SP_ASSERT(!sp_fn_fast_unsupported(P));

    /* the head as the kernels read it: K and V rows 64-byte aligned (the survivors' scores and
     * the weighted sum of V load gathered rows 64 bytes at a time; the weighted sum measured
     * 1.9x slower on rows off a line, docs/RESULTS.md part 9n) */
    sp_attn_head ha = *h;
    float *k_al = sp_rows_aligned(h->k, h->n_k, h->d, h->ldk, &ha.ldk);
    float *v_al = sp_rows_aligned(h->v, h->n_k, h->d, h->ldv, &ha.ldv);
    if (k_al) ha.k = k_al;
    if (v_al) ha.v = v_al;

    fx_call C;
    memset(&C, 0, sizeof C);
    C.P = P, C.h = &ha, C.op = op;
    C.nq = h->n_q, C.nk = h->n_k, C.d = h->d, C.d8 = sp_iscreen_d8(h->d), C.kind = P->kind;
    C.scale = (double)h->scale;
    C.step = sp_dac_step(P->rr.dac_bits);
    C.cmid = sp_key_msb_center(P->rr.msb_bits);
    C.u = C.step * ldexp(1.0, 8 - P->rr.msb_bits);
    C.kmaxnorm = kmaxnorm;
    C.gamma = 1.01 * C.d * ldexp(1.0, -24) / (1 - C.d * ldexp(1.0, -24));
    C.dense = P->exact_stats || P->mass_lost || P->kind == SP_POLICY_ORACLE;
    C.count_pass = P->exact_stats;
    /* Small heads: a dense score block costs d multiply-adds per pair, less than gathering the
     * survivors' rows one by one (measured on stories260K, d = 8: docs/RESULTS.md part 9c). */
    C.have_S = C.dense || C.d < FX_DENSE_D;
    C.NK = (size_t)(C.nk > 0 ? C.nk : 1), C.D = (size_t)C.d;
    const sp_cpu_level lv = sp_cpu_detect();
    C.dots = sp_fk_dots_for(lv);
    C.gather = sp_fk_gather_for(lv);
    C.wsum = sp_fk_softmax_wsum_for(lv);
    C.softmax = sp_fk_softmax_for(lv);
    C.union_sum = P->outputs && C.d >= FX_UNION_D;
    C.wsum4 = sp_fk_wsum4_for(lv);
    C.dots4 = sp_fk_dots4_for(lv);
    C.panel4 = sp_fk_panel4_for(lv);
    C.panels4 = sp_fk_panels4_for(lv);
    C.select = sp_fk_select_for(lv);
    C.select_mask = sp_fk_select_mask_for(lv);
    C.threshold = sp_fk_threshold_for(lv);
    C.max = sp_fk_max_for(lv);
    C.lookup4 = sp_fk_lookup4_for(lv);
    C.gather4 = sp_fk_gather4_for(lv);
    C.gather4x2 = sp_fk_gather4x2_for(lv);
    C.todo16 = sp_fk_todo16_for(lv);
    C.kmsb = sp_fk_kmsb_for(lv);
    C.dac8_levels = sp_fk_dac8_for(lv);
    C.dacsums8 = sp_fk_dacsums8_for(lv);
    C.dense_row = sp_fk_dense_for(lv);
    C.tile = sp_iscreen_tile_for(lv);
    const int nq = C.nq, nk = C.nk, d = C.d, d8 = C.d8, b = P->rr.msb_bits;
    const size_t NQ = (size_t)(nq > 0 ? nq : 1), NK = C.NK, D = C.D;

    fx_work w;
    memset(&w, 0, sizeof w);
    /* quantise (sec. 1.2) and program the array (sec. 1.3): as the reference's passes */
    w.qi = sp_xmalloc(NQ * D, 1);
    w.ki = sp_xmalloc(NK * D, 1);
    w.sq = sp_xmalloc(NQ, sizeof(float));
    w.sk = sp_xmalloc(NK, sizeof(float));
    sp_quant_rows(h->q, nq, d, h->ldq, 0, h->query_valid, w.qi, w.sq);
    sp_quant_rows(h->k, nk, d, h->ldk, 0, h->key_valid, w.ki, w.sk);
    w.qd = sp_xmalloc(NQ * D, sizeof(int));
    w.qd8 = sp_xcalloc(NQ * (size_t)d8, 1);
    int dac[256], dac_clamp = 1; /* sp_dac_level of every 8-bit level, indexed by level + 128 */
    for (int l = -128; l < 128; l++) {
        dac[l + 128] = sp_dac_level(l, P->rr.dac_bits);
        dac_clamp &= dac[l + 128] == (l < -127 ? -127 : l); /* the 8-bit DAC: sp_fk_dac8 */
    }
    C.dac8 = dac_clamp && C.step == 1.0;
    if (dac_clamp) {
        C.dac8_levels(w.qi, nq, d, w.qd, w.qd8, d8);
    } else {
        for (int i = 0; i < nq; i++)
            for (int c = 0; c < d; c++) {
                int v = dac[w.qi[(size_t)i * D + (size_t)c] + 128];
                w.qd[(size_t)i * D + (size_t)c] = v;
                w.qd8[(size_t)i * (size_t)d8 + (size_t)c] = (int8_t)v;
            }
    }
    /* the key MSBs and the reference's head statistics (goff = 0: ideal device) as integer sums
     * (sp_fk_kmsb): the reference adds the same integer terms in double, every partial sum an
     * integer below 2^53 (n_k d 16384 < 2^53), so exactly: the same doubles as these */
    uint8_t *msb = sp_xmalloc(NK * D, 1);
    int64_t ksum[3] = {0, 0, 0};
    int kmax_i = 0;
    SP_ASSERT((double)nk * d * 16384.0 < 9007199254740992.0);
    SP_ASSERT(d < 131072); /* sp_fk_kmsb's per-row sums of k^2 (<= 16384 d) stay in 32 bits */
    C.kmsb(w.ki, nk, d, h->key_valid, b, msb, ksum, &kmax_i);
    int nvk = nk;
    if (h->key_valid)
        for (int j = nvk = 0; j < nk; j++) nvk += h->key_valid[j] != 0;
    const double n_cells = (double)nvk * d;
    double k_ms = (double)ksum[0], kmax = (double)kmax_i, e_g2 = (double)ksum[1], e_m2 = (double)ksum[1];
    double e_top2 = (double)ksum[2];
    if (n_cells > 0) k_ms /= n_cells, e_g2 /= n_cells, e_m2 /= n_cells, e_top2 /= n_cells;
    C.ks = (sp_fn_keystats){k_ms, kmax, e_g2, e_m2, e_top2, sp_reram_full_scale(&P->rr, d)};
    /* AMX (1024 multiply-adds of a 16 x 64 by 64 x 16 tile per instruction) where the CPU and
     * the OS offer it: the same integer charges (tests/test_int_screen.c); else the packed int4
     * screen */
    C.amx = nk > 0 && sp_iscreen_amx_available();
    if (!C.amx) {
        w.kp = sp_xmalloc(sp_iscreen_pack_size(nk, d), 1);
        sp_iscreen_pack(msb, nk, d, d, w.kp);
    }
    /* visibility helpers for padding */
    if (h->key_valid) {
        w.nvalid = sp_xmalloc(NK + 1, sizeof(int));
        w.first_ge = sp_xmalloc(NK + 1, sizeof(int));
        w.last_le = sp_xmalloc(NK, sizeof(int));
        w.nvalid[0] = 0;
        for (int j = 0; j < nk; j++) w.nvalid[j + 1] = w.nvalid[j] + (h->key_valid[j] != 0);
        w.first_ge[nk] = nk;
        for (int j = nk - 1; j >= 0; j--) w.first_ge[j] = h->key_valid[j] ? j : w.first_ge[j + 1];
        for (int j = 0; j < nk; j++) w.last_le[j] = h->key_valid[j] ? j : j > 0 ? w.last_le[j - 1] : -1;
    }
    const int dA = sp_iscreen_amx_dA(d);
    if (C.amx) {
        C.lda = (NK + 63) / 64 * 64;
        w.kb = sp_xmalloc(sp_iscreen_amx_pack_size(nk, d), 1);
        sp_iscreen_amx_pack(msb, nk, d, d, w.kb);
        w.qa = sp_xcalloc((NQ + FX_AMX - 1) / FX_AMX * FX_AMX * (size_t)dA, 1);
        for (int i = 0; i < nq; i++) memcpy(w.qa + (size_t)i * (size_t)dA, w.qd8 + (size_t)i * (size_t)d8, D);
        w.amask = sp_xmalloc((size_t)FX_AMX * (C.lda / 64), sizeof(uint64_t));
        /* a fixed policy without the dense statistics needs only the comparator bits, whose
         * references do not depend on other queries: computed before the screen */
        C.amx_mask = !C.dense && (C.kind == SP_POLICY_LAYER || C.kind == SP_POLICY_HEAD);
        if (!C.amx_mask) {
            C.lda += FX_LDA_PAD;
            w.A = sp_xmalloc((size_t)FX_AMX * C.lda, sizeof(int32_t));
        }
    } else {
        C.lda = NK;
        w.A = sp_xmalloc((size_t)FX_SUB * NK, sizeof(int32_t));
    }
    if (C.have_S) w.S = sp_xmalloc((size_t)FX_BLOCK * NK, sizeof(float));
    w.st4 = sp_xcalloc(NK, sizeof(int));
    w.ex = sp_xmalloc(NK, sizeof(double));
    w.exst = sp_xcalloc(NK, sizeof(int));
    const size_t NL = NK + 16;
    w.sc4 = sp_xmalloc_aligned(4 * (NK + 16), sizeof(float));
    if (!C.have_S && nk > 0 && (C.kind == SP_POLICY_ONCHIP || C.amx_mask)) { /* the sub-block score cache (fx_scores) */
        w.kpf = sp_xmalloc_aligned(sp_flash_kpack_size(nk, d), sizeof(float));
        sp_flash_pack_k(h->k, h->ldk, nk, d, w.kpf);
        w.glist = sp_xmalloc(NL + 2, sizeof(int32_t));
        w.plist = sp_xmalloc(NK / 16 + 1, sizeof(int32_t));
        w.wlist = sp_xmalloc(NK / 16 + 34, sizeof(int32_t));
    }
    w.mem = sp_xmalloc(NL, sizeof(int32_t));
    w.kept = sp_xmalloc(NL, sizeof(int32_t));
    w.prev = sp_xmalloc(NL, sizeof(int32_t));
    w.src = sp_xmalloc(NL + 2, sizeof(int32_t));
    w.miss = sp_xmalloc(NL + 2, sizeof(int32_t));
    w.mpos = sp_xmalloc(NL + 2, sizeof(int32_t));
    w.cand = sp_xmalloc(NL + 2, sizeof(int32_t));
    w.iota = sp_xmalloc(NK, sizeof(int32_t));
    for (int j = 0; j < nk; j++) w.iota[j] = j;
    w.tmp = sp_xmalloc(NL + 2, sizeof(float));
    w.ssc = sp_xmalloc(NL + 2, sizeof(float));
    w.nsc = sp_xmalloc(NL + 2, sizeof(float));
    w.nsc_blk = -1;
    w.msc = sp_xmalloc(NL, sizeof(float));
    w.ksc = sp_xmalloc(NL, sizeof(float));
    if (C.union_sum) {
        w.kl = sp_xmalloc((size_t)FX_SUB * (NK + 16), sizeof(int32_t));
        w.pl = sp_xmalloc((size_t)FX_SUB * (NK + 16), sizeof(float));
        fx_lists_empty(w.kl, w.pl, NK + 16);
    }
    w.nbits = (NK / 64 + 2) * 4; /* whole 64-bit words for the reuse count */
    w.bits = sp_xcalloc(w.nbits, sizeof *w.bits);
    w.pbits = sp_xcalloc(w.nbits, sizeof *w.pbits);
    w.done = sp_xcalloc(w.nbits, sizeof *w.done);
    w.need = sp_xcalloc(w.nbits, sizeof *w.need);
    w.n_prev = -1;
    free(msb);
    int32_t tau32[FX_AMX]; /* the AMX call's comparator references (INT32_MAX: bits unused) */
    for (int r = 0; r < FX_AMX; r++) tau32[r] = INT32_MAX;

    int stamp = 0;
    /* the reference's screening sgemm, same kernel: same bits (cpu/gemm.h); K packed once for
     * every query block */
    sp_gemm_b kS = {0};
    if (C.have_S && nk > 0) sp_gemm_b_init(&kS, nk, d, h->k, h->ldk);
    for (int i0 = 0; i0 < nq; i0 += FX_BLOCK) {
        const int bq = nq - i0 < FX_BLOCK ? nq - i0 : FX_BLOCK;
        if (C.have_S && nk > 0) sp_gemm_nt_b(bq, h->q + (size_t)i0 * (size_t)h->ldq, h->ldq, &kS, w.S, nk);
        for (int r = 0; r < bq; r++) {
            const int i = i0 + r;
            if (C.amx && r % FX_AMX == 0) { /* charges of the next FX_AMX queries */
                const int nr = bq - r < FX_AMX ? bq - r : FX_AMX;
                int kend = h->causal ? h->q_offset + i + nr : nk;
                kend = kend < nk ? kend : nk;
                if (C.amx_mask) /* first visible key of query i + t (keys never appear later in a call) */
                    for (int t = 0; t < nr; t++) {
                        const int end = h->causal ? h->q_offset + i + t + 1 : nk;
                        const int nv = end <= 0 ? 0 : w.nvalid ? w.nvalid[end < nk ? end : nk] : (end < nk ? end : nk);
                        tau32[t] = nv > 0 ? fx_comparator_ti(&C, &w, i + t, w.first_ge ? w.first_ge[0] : 0,
                                                             P->thr[h->layer * op->n_heads + h->head])
                                          : INT32_MAX;
                    }
                if (kend > 0 && C.amx_mask)
                    sp_iscreen_amx_rows32(w.kb, (kend + 63) / 64, d, w.qa + (size_t)i * (size_t)dA, tau32, w.amask,
                                          C.lda / 64, NULL, 0);
                else if (kend > 0)
                    sp_iscreen_amx_charges32(w.kb, (kend + 63) / 64, d, w.qa + (size_t)i * (size_t)dA, w.A, C.lda);
            }
            if (r % FX_SUB == 0) {
                /* charges of the next FX_SUB queries against the keys they can see (causal: a
                 * prefix); (FX_SUB x n_k) int32 stays in L1/L2 */
                const int nr = bq - r < FX_SUB ? bq - r : FX_SUB;
                int kend = h->causal ? h->q_offset + i + nr : nk;
                kend = kend < nk ? kend : nk;
                if (kend > 0 && !C.amx)
                    sp_iscreen_block(w.kp, kend, d, w.qd8 + (size_t)i * (size_t)d8, nr, w.A, (int)NK, C.tile);
                w.blk++, w.b_i0 = i, w.b_nr = nr;
                memset(w.done, 0, w.nbits * sizeof *w.done); /* a new sub-block: nothing scored for it */
                /* |q|^2 of its queries, 4 independent chains (each in element order, as one at a time) */
                const float *qr[FX_SUB];
                for (int t = 0; t < FX_SUB; t++) qr[t] = ha.q + (size_t)(i + (t < nr ? t : 0)) * (size_t)ha.ldq;
                double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                for (int c = 0; c < d; c++) {
                    a0 += (double)qr[0][c] * qr[0][c];
                    a1 += (double)qr[1][c] * qr[1][c];
                    a2 += (double)qr[2][c] * qr[2][c];
                    a3 += (double)qr[3][c] * qr[3][c];
                }
                w.qn2[0] = a0, w.qn2[1] = a1, w.qn2[2] = a2, w.qn2[3] = a3;
                if (C.amx_mask && w.kpf && kend > 0) fx_dense_panels(&C, &w, r % FX_AMX, nr, kend);
            }
            if (h->query_valid && !h->query_valid[i]) {
                memset(h->out + (size_t)i * (size_t)h->ldo, 0, D * sizeof(float)); /* outputs on: fx_flush writes 0 again */
            } else {
                fx_query Q;
                memset(&Q, 0, sizeof Q);
                Q.i = i, Q.r = r % FX_SUB, Q.ra = C.amx ? r % FX_AMX : r % FX_SUB, Q.stamp = ++stamp;
                Q.qrow = h->q + (size_t)i * (size_t)h->ldq;
                Q.Srow = C.have_S ? w.S + (size_t)r * NK : NULL; /* row r of the 64-query block */
                Q.end = h->causal ? h->q_offset + i + 1 : nk;
                Q.sq = w.sq[i];
                fx_query_run(&C, &w, &Q, st);
            }
            /* the sub-block's last query: its queries' weighted sums */
            if (C.union_sum && (r % FX_SUB == FX_SUB - 1 || r == bq - 1))
                fx_flush(&C, &w, i - r % FX_SUB, r % FX_SUB + 1);
        }
    }
    sp_gemm_b_free(&kS);
    fx_free(&w);
    free(k_al), free(v_al);
    return SP_OK;
}
