/* sprint_cpu.c: SPRINT's algorithm as a CPU attention kernel (include/sprint/cpu_attention.h;
 * paper sec. 1.3-1.5: in-memory screen on the 4 key MSBs, fetch survivors, recompute exactly,
 * threshold again, softmax).
 *
 *   1. Q and K are quantised to 8 bits (one scale per tensor, quant.c); the key MSBs are packed
 *      two per byte (int_screen.h); the query reaches the "crossbar" as its 8-bit levels.
 *   2. Screen: the integer charge A_ij = sum_c q_ic m_jc of 4 queries x 64 keys per tile
 *      (VNNI / AVX2 / portable). Key j survives for query i when its estimate
 *      lf (16 A_ij + (7.5 - 128) sum_c q_ic) plus margin_sigma standard deviations of the
 *      estimate's error reaches the threshold: the functional model's sigma margin with an
 *      ideal device (sprint_op.c), so the decision is the same integer comparison A >= tau.
 *   3. Exact pass over the union of the 4 queries' survivors (adjacent queries share most of
 *      them, paper sec. 2.4): K rows of the union are gathered 64 at a time into one packed
 *      tile (L1), V rows are read in place; the flash tile computes exact fp32 scores, masks
 *      each query to its own survivors, applies the exact threshold and folds the kept keys
 *      into an online softmax. No pair outside the union is ever scored in fp32.
 * The float kernels round differently from the double reference, so a score within ~1e-6
 * relative of the threshold may be decided differently from sprint_op.c; outputs are compared
 * with the double reference over the same kept keys in the tests. */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "attention/flash.h"
#include "cpu/cpu.h"
#include "functional/fn_internal.h"
#include "functional/int_screen.h"
#include "sprint/cpu_attention.h"

#define QBLK 32 /* queries per parallel work item (8 groups of 4) */
#define LOG2E 1.4426950408889634

typedef struct sx_shared {
    const sp_attn_head *h;
    const sp_cpu_sprint_opts *o;
    int d8;
    const uint8_t *kp;     /* packed key MSBs */
    const int8_t *qd;      /* (n_q, d8) query levels */
    const float *sq, *sk;  /* quantisation scales */
    double k_ms;           /* mean square of the valid 8-bit key elements */
    sp_iscreen_tile_fn screen;
    sp_flash_tile_fn tile;
} sx_shared;

typedef struct sx_work {
    int32_t *A;            /* (4, n_k + 64) charges */
    int32_t *uidx;         /* (n_k) union of survivors */
    uint8_t *surv;         /* (n_k) bit r: survivor of row r */
    float *gk, *kp;        /* (64, d) gathered K rows and their packed panels */
    float *qs;             /* (4, d) prescaled queries */
    float *o;              /* (4, d) running outputs */
    float rb[4][64];       /* per-row 0 / -inf masks of a chunk */
    sp_attn_stats st;
} sx_work;

static double exact_dot(const float *q, const float *k, int d) {
    double a = 0;
    for (int c = 0; c < d; c++) a += (double)q[c] * (double)k[c];
    return a;
}

/* One group of up to 4 queries [i0, i0 + nr). */
static void sx_group(const sx_shared *S, sx_work *w, int i0, int nr) {
    const sp_attn_head *h = S->h;
    const sp_cpu_sprint_opts *o = S->o;
    const int d = h->d, nk = h->n_k, d8 = S->d8, G = d8 / 8;
    const size_t D = (size_t)d;
    const double scale = (double)h->scale, lf = scale * (double)S->sq[0] * (double)S->sk[0];
    int end[4], valid[4];
    int endmax = 0;
    for (int r = 0; r < 4; r++) {
        int i = i0 + (r < nr ? r : nr - 1);
        valid[r] = r < nr && (!h->query_valid || h->query_valid[i]);
        end[r] = valid[r] ? (h->causal ? h->q_offset + i + 1 : nk) : 0;
        if (end[r] > endmax) endmax = end[r];
    }
    const size_t LDA = (size_t)nk + SP_ISCREEN_CHUNK;
    /* ---- screen: integer charges of the 4 rows against keys [0, endmax) ---- */
    {
        const int8_t *rows[4];
        for (int r = 0; r < 4; r++) rows[r] = S->qd + (size_t)(i0 + (r < nr ? r : nr - 1)) * (size_t)d8;
        int32_t T[4][64];
        for (int j0 = 0; j0 < endmax; j0 += SP_ISCREEN_CHUNK) {
            S->screen(S->kp + (size_t)(j0 / 16) * (size_t)G * 64, G, rows, T);
            for (int r = 0; r < 4; r++) memcpy(w->A + (size_t)r * LDA + j0, T[r], sizeof T[r]);
        }
    }
    /* ---- per-row thresholds: exact (nats) and screen (integer tau) ---- */
    double thr[4], tau[4];
    for (int r = 0; r < 4; r++) {
        thr[r] = INFINITY;
        tau[r] = INFINITY;
        if (!valid[r]) continue;
        int i = i0 + r;
        const int8_t *qr = S->qd + (size_t)i * (size_t)d8;
        double sqd = 0, sqd2 = 0;
        for (int c = 0; c < d; c++) sqd += qr[c], sqd2 += (double)qr[c] * qr[c];
        /* sigma margin (integer units): LSB centring (uniform over 16 levels) and the 8-bit
         * rounding of q and k; as sprint_op.c with an ideal device and an 8-bit DAC */
        double marg = o->margin_sigma * sqrt(sqd2 * 255.0 / 12.0 + (sqd2 + d * S->k_ms) / 12.0);
        double oi = (7.5 - 128.0) * sqd;
        const int32_t *Ar = w->A + (size_t)r * LDA;
        if (o->policy == SP_CPU_POLICY_FIXED) {
            thr[r] = o->threshold;
        } else { /* exact max over the keys whose estimate is within 2 margins of the best */
            int32_t amax = INT32_MIN;
            for (int j = 0; j < end[r]; j++)
                if ((!h->key_valid || h->key_valid[j]) && Ar[j] > amax) amax = Ar[j];
            double mx = -INFINITY;
            const float *qrow = h->q + (size_t)i * (size_t)h->ldq;
            for (int j = 0; j < end[r]; j++)
                if ((!h->key_valid || h->key_valid[j]) && (double)Ar[j] >= amax - 2 * marg / 16.0 - 1) {
                    double s = exact_dot(qrow, h->k + (size_t)j * (size_t)h->ldk, d) * scale;
                    mx = s > mx ? s : mx;
                }
            thr[r] = mx - o->delta;
        }
        tau[r] = thr[r] == -INFINITY ? -INFINITY : (thr[r] / lf - marg - oi) / 16.0;
    }
    /* ---- union of the survivors ---- */
    int nu = 0;
    for (int j = 0; j < endmax; j++) {
        unsigned bits = 0;
        if (!h->key_valid || h->key_valid[j])
            for (int r = 0; r < 4; r++)
                bits |= (unsigned)(j < end[r] && (double)w->A[(size_t)r * LDA + j] >= tau[r]) << r;
        if (bits) {
            w->uidx[nu] = j;
            w->surv[nu++] = (uint8_t)bits;
        }
    }
    /* statistics of the screen */
    for (int r = 0; r < 4; r++) {
        if (!valid[r]) continue;
        int nvis = 0, nmem = 0;
        for (int j = 0; j < end[r]; j++) nvis += !h->key_valid || h->key_valid[j];
        for (int t = 0; t < nu; t++) nmem += (w->surv[t] >> r) & 1;
        w->st.queries += 1;
        w->st.pairs_visible += nvis;
        w->st.pairs_mem_kept += nmem;
        if (o->want_exact_stats) {
            const float *qrow = h->q + (size_t)(i0 + r) * (size_t)h->ldq;
            const int32_t *Ar = w->A + (size_t)r * LDA;
            for (int j = 0; j < end[r]; j++) {
                if (h->key_valid && !h->key_valid[j]) continue;
                int pass = exact_dot(qrow, h->k + (size_t)j * (size_t)h->ldk, d) * scale >= thr[r];
                int keep = (double)Ar[j] >= tau[r];
                w->st.exact_pass += pass;
                w->st.false_prunes += pass && !keep;
                w->st.false_keeps += keep && !pass;
            }
        }
    }
    /* ---- exact pass over the union, 64 keys at a time ---- */
    const float qmul = (float)(scale * LOG2E);
    float m[4], l[4];
    for (int r = 0; r < 4; r++) {
        const float *qr = h->q + (size_t)(i0 + (r < nr ? r : nr - 1)) * (size_t)h->ldq;
        for (int c = 0; c < d; c++) w->qs[(size_t)r * D + (size_t)c] = qr[c] * qmul;
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    memset(w->o, 0, 4 * D * sizeof *w->o);
    sp_flash_tile t;
    memset(&t, 0, sizeof t);
    t.d = d;
    t.v = h->v;
    t.ldv = h->ldv;
    t.kp = w->kp;
    t.m = m, t.l = l, t.o = w->o;
    for (int r = 0; r < 4; r++) {
        t.q[r] = w->qs + (size_t)r * D;
        t.rbias[r] = w->rb[r];
        t.thr[r] = (float)(thr[r] * LOG2E);
        t.lim[r] = SP_FLASH_CHUNK;
    }
    for (int u0 = 0; u0 < nu; u0 += SP_FLASH_CHUNK) {
        int n = nu - u0 < SP_FLASH_CHUNK ? nu - u0 : SP_FLASH_CHUNK;
        for (int u = 0; u < n; u++)
            memcpy(w->gk + (size_t)u * D, h->k + (size_t)w->uidx[u0 + u] * (size_t)h->ldk, D * sizeof(float));
        sp_flash_pack_k(w->gk, d, n, d, w->kp);
        for (int r = 0; r < 4; r++)
            for (int u = 0; u < SP_FLASH_CHUNK; u++)
                w->rb[r][u] = u < n && ((w->surv[u0 + u] >> r) & 1) ? 0.0f : -INFINITY;
        t.nkc = n;
        t.vidx = w->uidx + u0;
        S->tile(&t);
        for (int r = 0; r < 4; r++) {
            if (!valid[r]) continue;
            w->st.pairs_kept += __builtin_popcountll(t.kept[r]);
            if (o->kept) {
                unsigned char *row = o->kept + (size_t)(i0 + r) * (size_t)nk;
                for (uint64_t b = t.kept[r]; b; b &= b - 1) row[w->uidx[u0 + __builtin_ctzll(b)]] = 1;
            }
        }
    }
    for (int r = 0; r < nr; r++) {
        float *orow = h->out + (size_t)(i0 + r) * (size_t)h->ldo;
        if (!valid[r] || !(l[r] > 0)) {
            memset(orow, 0, D * sizeof *orow);
            continue;
        }
        float inv = 1.0f / l[r];
        for (int c = 0; c < d; c++) orow[c] = w->o[(size_t)r * D + (size_t)c] * inv;
    }
}

static sp_status check_inputs(const sp_attn_head *h, const sp_cpu_sprint_opts *o, sp_error *err) {
    sp_status s = sp_attn_head_check(h, err);
    if (s != SP_OK) return s;
    if (!o) return sp_error_set(err, SP_ERR_ARG, "sprint attention: no options");
    if (h->d > SP_FLASH_MAX_D)
        return sp_error_set(err, SP_ERR_ARG, "sprint attention: head dim %d > %d", h->d, SP_FLASH_MAX_D);
    if (!(h->scale > 0) || !isfinite(h->scale))
        return sp_error_set(err, SP_ERR_ARG, "sprint attention: scale must be finite and > 0, got %g", (double)h->scale);
    if (o->policy != SP_CPU_POLICY_FIXED && o->policy != SP_CPU_POLICY_RELATIVE)
        return sp_error_set(err, SP_ERR_ARG, "sprint attention: unknown policy %d", (int)o->policy);
    if (o->policy == SP_CPU_POLICY_FIXED && (isnan(o->threshold) || o->threshold == INFINITY))
        return sp_error_set(err, SP_ERR_ARG, "sprint attention: threshold %g nats (expected finite or -inf)",
                            o->threshold);
    if (o->policy == SP_CPU_POLICY_RELATIVE && !(o->delta >= 0 && isfinite(o->delta)))
        return sp_error_set(err, SP_ERR_ARG, "sprint attention: delta %g nats (expected finite >= 0)", o->delta);
    if (!(o->margin_sigma >= 0) || !isfinite(o->margin_sigma))
        return sp_error_set(err, SP_ERR_ARG, "sprint attention: margin_sigma %g (expected finite >= 0)",
                            o->margin_sigma);
    return SP_OK;
}

sp_status sp_cpu_attention_sprint(const sp_attn_head *h, const sp_cpu_sprint_opts *o, sp_error *err) {
    sp_status s = check_inputs(h, o, err);
    if (s != SP_OK) return s;
    const int nq = h->n_q, nk = h->n_k, d = h->d, d8 = sp_iscreen_d8(d);
    s = sp_flash_check_inputs(h, err); /* finite inputs, scores inside fp32 */
    if (s != SP_OK) return s;
    if (o->kept) memset(o->kept, 0, (size_t)nq * (size_t)nk);
    if (nq == 0) return SP_OK;
    const size_t NK = (size_t)(nk > 0 ? nk : 1), D = (size_t)d;
    int8_t *qi = sp_xmalloc((size_t)nq * D, 1), *ki = sp_xmalloc(NK * D, 1);
    float *sq = sp_xmalloc((size_t)nq, sizeof *sq), *sk = sp_xmalloc(NK, sizeof *sk);
    sp_quant_rows(h->q, nq, d, h->ldq, 0, h->query_valid, qi, sq);
    sp_quant_rows(h->k, nk, d, h->ldk, 0, h->key_valid, ki, sk);
    int8_t *qd = sp_xcalloc((size_t)nq * (size_t)d8, 1);
    for (int i = 0; i < nq; i++) memcpy(qd + (size_t)i * (size_t)d8, qi + (size_t)i * D, D);
    uint8_t *msb = sp_xmalloc(NK * D, 1);
    double k_ms = 0, ncell = 0;
    for (int j = 0; j < nk; j++) {
        int valid = !h->key_valid || h->key_valid[j];
        for (int c = 0; c < d; c++) {
            int kv = ki[(size_t)j * D + (size_t)c];
            msb[(size_t)j * D + (size_t)c] = (uint8_t)sp_key_msb(kv, 4);
            if (valid) k_ms += (double)kv * kv, ncell += 1;
        }
    }
    if (ncell > 0) k_ms /= ncell;
    uint8_t *kp = sp_xmalloc(sp_iscreen_pack_size(nk, d), 1);
    sp_iscreen_pack(msb, nk, d, d, kp);
    free(msb);
    sp_cpu_level lv = sp_cpu_detect();
    sx_shared S = {.h = h, .o = o, .d8 = d8, .kp = kp, .qd = qd, .sq = sq, .sk = sk, .k_ms = k_ms,
                   .screen = sp_iscreen_tile_for(lv), .tile = sp_flash_tile_for(lv, d)};
    const int nblk = (nq + QBLK - 1) / QBLK;
    int nt = o->threads > 0 ? o->threads : omp_get_max_threads();
    if (nt > nblk) nt = nblk;
    sp_attn_stats *bst = sp_xcalloc((size_t)nblk, sizeof *bst);
#pragma omp parallel num_threads(nt > 0 ? nt : 1)
    {
        sx_work w;
        memset(&w, 0, sizeof w);
        w.A = sp_xmalloc(4 * (NK + SP_ISCREEN_CHUNK), sizeof *w.A);
        w.uidx = sp_xmalloc(NK, sizeof *w.uidx);
        w.surv = sp_xmalloc(NK, 1);
        w.gk = sp_xmalloc((size_t)SP_FLASH_CHUNK * D, sizeof *w.gk);
        w.kp = sp_xmalloc(sp_flash_kpack_size(SP_FLASH_CHUNK, d), sizeof *w.kp);
        w.qs = sp_xmalloc(4 * D, sizeof *w.qs);
        w.o = sp_xmalloc(4 * D, sizeof *w.o);
#pragma omp for schedule(dynamic, 1)
        for (int b = nblk - 1; b >= 0; b--) {
            memset(&w.st, 0, sizeof w.st);
            int i1 = (b + 1) * QBLK < nq ? (b + 1) * QBLK : nq;
            for (int i0 = b * QBLK; i0 < i1; i0 += 4) sx_group(&S, &w, i0, i1 - i0 < 4 ? i1 - i0 : 4);
            bst[b] = w.st;
        }
        free(w.A), free(w.uidx), free(w.surv), free(w.gk), free(w.kp), free(w.qs), free(w.o);
    }
    if (o->stats) /* summed in block order: the same doubles for any thread count */
        for (int b = 0; b < nblk; b++) sp_attn_stats_add(o->stats, &bst[b]);
    free(bst), free(qi), free(ki), free(sq), free(sk), free(qd), free(kp);
    return SP_OK;
}
