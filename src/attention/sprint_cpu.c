/* sprint_cpu.c: SPRINT's algorithm as a CPU attention kernel (include/sprint/cpu_attention.h;
 * paper sec. 1.3-1.5: in-memory screen on the 4 key MSBs, fetch survivors, recompute exactly,
 * threshold again, softmax).
 *
 *   1. Q and K are quantised to 8 bits (one scale per tensor: sp_quant_rows_tmax, quant.c, with
 *      the tensor maxima from the input check's pass over Q and K); the key MSBs are packed two
 *      per byte (int_screen.h; levels, row sums and packing in one pass over K,
 *      sp_sx_quant_keys) and, for AMX, one per byte in tile order (int_screen_amx.h); the
 *      query reaches the "crossbar" as its 8-bit levels.
 *   2. Screen: the integer charge A_ij = sum_c q_ic m_jc, 32 queries x 64 keys per AMX step
 *      (fixed policy without exact statistics, where AMX-INT8 is usable) or 4 queries x 64
 *      keys per VNNI / AVX2 / portable tile (only the comparator bits, a group's tiles in one
 *      call, when no charge is needed: sp_iscreen_masks_*). Key j survives for query i when its estimate
 *      lf (16 A_ij + (7.5 - 128) sum_c q_ic) plus margin_sigma standard deviations of the
 *      estimate's error reaches the threshold: the functional model's sigma margin with an
 *      ideal device (sprint_op.c), so the decision is the same integer comparison A >= tau.
 *   3. Digital stage per block of up to QBLK (128) queries, key chunk by key chunk, with an
 *      online softmax per query (sx_digital): 16-key panels where a group of 4 queries has
 *      >= SX_DENSE_MIN (24) of its 64 pairs as survivors go 4 at a time through the flash tile
 *      with the survivor masks and exact thresholds (sx_tile); the other survivors wait per
 *      query until SX_BATCH (1024) are there or the block's last chunk is done, then go 16 at
 *      a time to exact fp32 scores (row dots summed by a shuffle tree), the exact threshold,
 *      exp2 and the weighted sum of V over the kept keys only (sprint_exact.h). Under the
 *      fixed policy at level avx512 the row's threshold is the softmax reference
 *      (sprint_fixed_avx512.c: kept weights 2^(s - thr) >= 1, no running max, no rescales)
 *      when fixed_ref_ok proves that nothing can overflow fp32.
 *      Tried and measured slower (docs/RESULTS.md, parts 9 and 9b): the union of 4 adjacent
 *      queries' survivors gathered and repacked per 64 keys for the flash tile (the repacking
 *      cost as much as the scores); whole 16-key panels holding a survivor of one of the 4
 *      queries (about half the panels are touched at 10% kept: too coarse); the per-query pass
 *      over all keys (bound by the gathers' overheads, not by the arithmetic).
 * The float kernels round differently from the double reference, so a score within ~1e-6
 * relative of the threshold may be decided differently from sprint_op.c; outputs are compared
 * with the double reference over the same kept keys in the tests. */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "attention/flash.h"
#include "attention/sprint_exact.h"
#include "functional/quant_simd.h"
#include "cpu/cpu.h"
#include "functional/fn_internal.h"
#include "functional/int_screen.h"
#include "functional/int_screen_amx.h"
#include "sprint/cpu_attention.h"

/* Queries per parallel work item: 32 groups of 4, a multiple of 32 (the AMX screen's rows). 128
 * rather than 32: a chunk's K, V and packed K rows, fetched from L2 or L3 once per block, serve 4
 * times as many queries (docs/RESULTS.md part 9z.t). */
#define QBLK 128
#define SX_CHUNK 64 /* keys per chunk of the digital stage (one screen tile) */
/* Survivors (of a 4-query group's 4 x 16 pairs in one 16-key panel) from which the panel is
 * computed by the dense flash tile instead of the gathers: a speed choice only (both compute
 * the same kept set and softmax up to float rounding); see docs/RESULTS.md parts 9b and 9z.t
 * (16 before the batched, pipelined gathered step; 24 since). */
#define SX_DENSE_MIN 24
static int g_dense_min = SX_DENSE_MIN;
void sp_sx_dense_min_set(int n) { __atomic_store_n(&g_dense_min, n, __ATOMIC_RELAXED); }
int sp_sx_dense_min(void) { return __atomic_load_n(&g_dense_min, __ATOMIC_RELAXED); }
static int g_fixed_ref = 1;
void sp_sx_fixed_ref_set(int on) { __atomic_store_n(&g_fixed_ref, on, __ATOMIC_RELAXED); }
int sp_sx_fixed_ref(void) { return __atomic_load_n(&g_fixed_ref, __ATOMIC_RELAXED); }
/* Survivors a query's pending list collects before a chunk step serves them (then all its full
 * 16-key groups). 1024, not 48 (docs/RESULTS.md part 9z.v): at L = 4096 and ~10% kept a query
 * rarely collects that many, so its gathered survivors are served in one call after the block's
 * last chunk, the block's queries one after another. Adjacent queries share most survivors, so
 * a key row fetched for one query is still in L1 or L2 for the next; served in batches of 48
 * during the sweep, each query's rows came from further away, and each call's pipeline
 * (sprint_fixed_avx512.c) filled and drained for 3 groups of 16. Memory: QBLK x (SX_BATCH + 80)
 * int32 per thread (565 KB). The tests set smaller batches (sp_sx_batch_set) to reach the
 * serving during the sweep. */
#define SX_BATCH 1024
static int g_batch = SX_BATCH;
/* clamped, not rejected: a test and tuning knob (sprint_exact.h); bench_attention rejects
 * BENCH_SX_BATCH values outside the range itself */
void sp_sx_batch_set(int n) { __atomic_store_n(&g_batch, n < 16 ? 16 : n > 65536 ? 65536 : n, __ATOMIC_RELAXED); }
int sp_sx_batch(void) { return __atomic_load_n(&g_batch, __ATOMIC_RELAXED); }
#define LOG2E 1.4426950408889634
#define SX_COPY_MIN_Q 512 /* queries from which K and V rows off a cache line are copied (sp_cpu_attention_sprint) */

typedef struct sx_shared {
    const sp_attn_head *h;
    const sp_cpu_sprint_opts *o;
    int d8;
    const uint8_t *kp;     /* packed key MSBs (int_screen.h) */
    const uint64_t *kvw;   /* (n_k / 64 + 1) key-valid bits; NULL = all valid */
    const int *nvalid;     /* (n_k + 1) valid keys below j; NULL = all valid */
    const int8_t *qd;      /* (n_q, d8) query levels */
    const float *sq, *sk;  /* quantisation scales */
    sp_iscreen_tile_fn screen;
    sp_iscreen_masks_fn masks; /* the screen when no charge is needed */
    sp_sx_chunk_fn chunk;
    sp_sx_gather_fn gather; /* a group's leftover survivors to its pending lists */
    const float *kp_f32;   /* K packed in 16-key panels for the flash tile (flash.h); NULL: no dense tiles */
    sp_flash_tile_fn tile;
    int dense_min;
    int batch, pcap;       /* survivors a pending list collects before serving (sp_sx_batch); its capacity */
    int fixed;             /* chunk and tile take the row's threshold as a fixed softmax reference */
    const uint8_t *kb;     /* AMX-packed key MSBs (int_screen_amx.h); NULL: no AMX screen */
    const int8_t *qa;      /* (n_q rounded up to QBLK, dA) query levels for the AMX tiles */
    int dA;
    const double *marg, *oi;   /* (n_q) per query: sigma margin and LSB-centring offset (integer units) */
} sx_shared;

typedef struct sx_work {
    int32_t *A;            /* (4, n_k + 64) charges (relative policy, exact statistics) */
    uint64_t *mask;        /* (QBLK, n_k / 64 + 1) screen survivors of the block, visibility applied */
    uint64_t *maskt;       /* (n_k / 64 + 1, QBLK) the same words by chunk: a group's 4 rows adjacent */
    double *thr;           /* (QBLK) exact threshold per query of the block (nats) */
    int32_t *tau;          /* (QBLK) comparator references (AMX screen) */
    int *valid;            /* (QBLK) query valid */
    int32_t *pend;         /* (QBLK, pcap) survivors waiting until batch are there (then every full 16) */
    int *npend;            /* (QBLK) */
    int32_t *kidx;         /* (pcap + 16) kept keys of one call */
    float *sbuf;           /* (pcap + 16) scores, weights */
    float *qs;             /* (QBLK, d) prescaled queries */
    float *acc;            /* (QBLK, d) unnormalised outputs */
    float *mrun, *lrun;    /* (QBLK) running max and sum */
    int qn[QBLK / 4];      /* dense panels queued per query group (< 4) */
    int qpan[QBLK];        /* (QBLK / 4, 4) their panel indices */
    uint64_t qmask[QBLK];  /* (QBLK / 4, 4 rows) survivor bits, 16 per queued panel */
    sp_attn_stats st;
} sx_work;

static double exact_dot(const float *q, const float *k, int d) {
    double a = 0;
    for (int c = 0; c < d; c++) a += (double)q[c] * (double)k[c];
    return a;
}

static int32_t tau_int(double tau) { /* A >= tau  <=>  A >= ceil(tau) for integer A */
    if (!(tau > -2e9)) return INT32_MIN + 1;
    if (tau > 2e9) return INT32_MAX;
    return (int32_t)ceil(tau);
}

static uint64_t below(int n) { return n >= 64 ? ~(uint64_t)0 : n <= 0 ? 0 : ((uint64_t)1 << n) - 1; }

enum { SX_SCREEN = 0, SX_TAU_ONLY = 1, SX_PREMASKED = 2 };

/* The screen of one group of up to 4 queries [i0, i0 + nr), rows rb .. rb + 3 of the block:
 * survivor masks (visibility applied), exact thresholds and the screen's statistics.
 * mode SX_TAU_ONLY: only the comparator references into w->tau (for the AMX screen, which
 * takes 32 rows at a time); SX_PREMASKED: the comparator bits are already in w->mask (AMX;
 * fixed policy without exact statistics only). */
static void sx_group(const sx_shared *S, sx_work *w, int i0, int nr, int rb, int mode) {
    const sp_attn_head *h = S->h;
    const sp_cpu_sprint_opts *o = S->o;
    const int d = h->d, nk = h->n_k, d8 = S->d8, G = d8 / 8;
    const double scale = (double)h->scale, lf = scale * (double)S->sq[0] * (double)S->sk[0];
    const int need_A = o->policy == SP_CPU_POLICY_RELATIVE || o->want_exact_stats;
    int end[4], valid[4], endmax = 0;
    for (int r = 0; r < 4; r++) {
        int i = i0 + (r < nr ? r : nr - 1);
        valid[r] = r < nr && (!h->query_valid || h->query_valid[i]);
        end[r] = valid[r] ? (h->causal ? h->q_offset + i + 1 : nk) : 0;
        if (end[r] > endmax) endmax = end[r];
    }
    const size_t LDA = (size_t)nk + SP_ISCREEN_CHUNK, NW = (size_t)nk / 64 + 1;
    const int nchunk = (endmax + 63) / 64;
    const int8_t *rows[4];
    for (int r = 0; r < 4; r++) rows[r] = S->qd + (size_t)(i0 + (r < nr ? r : nr - 1)) * (size_t)d8;
    /* ---- per-row margins (computed once per call) and, for fixed thresholds, the comparator
     * references ---- */
    double thr[4], marg[4], oi[4];
    int32_t tau[4];
    for (int r = 0; r < 4; r++) {
        thr[r] = INFINITY, marg[r] = 0, oi[r] = 0;
        if (!valid[r]) continue;
        marg[r] = S->marg[i0 + r], oi[r] = S->oi[i0 + r];
        if (o->policy == SP_CPU_POLICY_FIXED) thr[r] = o->threshold;
    }
    for (int r = 0; r < 4; r++)
        tau[r] = !valid[r] ? INT32_MAX : thr[r] == -INFINITY ? INT32_MIN + 1
                                                             : tau_int((thr[r] / lf - marg[r] - oi[r]) / 16.0);
    if (mode == SX_TAU_ONLY) {
        for (int r = 0; r < 4 && rb + r < QBLK; r++) w->tau[rb + r] = tau[r];
        return;
    }
    /* ---- screen: integer charges and comparator bits of 4 rows x 64 keys per tile ---- */
    int32_t T[4][64];
    uint64_t mk[4];
    if (mode == SX_SCREEN && !need_A) /* only the bits: the tiles back to back, straight into the masks */
        S->masks(S->kp, G, nchunk, rows, tau, w->mask + (size_t)rb * NW, NW);
    for (int ch = 0; ch < nchunk && mode == SX_SCREEN && need_A; ch++) {
        S->screen(S->kp + (size_t)ch * 4 * (size_t)G * 64, G, rows, T, tau, mk);
        for (int r = 0; r < 4; r++) {
            w->mask[(size_t)(rb + r) * NW + ch] = mk[r];
            if (need_A) memcpy(w->A + (size_t)r * LDA + (size_t)ch * 64, T[r], sizeof T[r]);
        }
    }
    if (o->policy == SP_CPU_POLICY_RELATIVE) {
        /* exact max over the keys whose estimate is within 2 margins of the best estimate,
         * then the comparator bits again from the stored charges */
        for (int r = 0; r < 4; r++) {
            if (!valid[r]) continue;
            const int32_t *Ar = w->A + (size_t)r * LDA;
            int32_t amax = INT32_MIN;
            for (int j = 0; j < end[r]; j++)
                if ((!h->key_valid || h->key_valid[j]) && Ar[j] > amax) amax = Ar[j];
            double mx = -INFINITY;
            const float *qrow = h->q + (size_t)(i0 + r) * (size_t)h->ldq;
            for (int j = 0; j < end[r]; j++)
                if ((!h->key_valid || h->key_valid[j]) && (double)Ar[j] >= amax - 2 * marg[r] / 16.0 - 1) {
                    double sc = exact_dot(qrow, h->k + (size_t)j * (size_t)h->ldk, d) * scale;
                    mx = sc > mx ? sc : mx;
                }
            thr[r] = mx - o->delta;
            tau[r] = tau_int((thr[r] / lf - marg[r] - oi[r]) / 16.0);
            for (int ch = 0; ch < nchunk; ch++) {
                uint64_t m = 0;
                for (int u = 0; u < 64; u++) m |= (uint64_t)(Ar[ch * 64 + u] >= tau[r]) << u;
                w->mask[(size_t)(rb + r) * NW + ch] = m;
            }
        }
    }
    /* ---- visibility (causal, padding) and the screen's statistics ---- */
    size_t nwclr = NW; /* words the digital stage may read for this block (see below) */
    if (h->causal) {
        const int64_t bend = (int64_t)h->q_offset + (int64_t)(i0 - rb) + QBLK; /* > every end of the block */
        const int64_t nwb = bend <= 0 ? 0 : (bend + 63) / 64;
        if ((size_t)nwb < nwclr) nwclr = (size_t)nwb;
    }
    for (int r = 0; r < 4; r++) {
        uint64_t *mr = w->mask + (size_t)(rb + r) * NW;
        int64_t nmem = 0;
        for (int ch = 0; ch < nchunk; ch++) {
            uint64_t m = mr[ch] & below(end[r] - ch * 64);
            if (S->kvw) m &= S->kvw[ch];
            mr[ch] = m;
            w->maskt[(size_t)ch * QBLK + (size_t)(rb + r)] = m;
            nmem += __builtin_popcountll(m);
        }
        /* words past this group's last visible key: the digital stage reads up to the block's
         * last visible key (sx_digital's nch), which a causal block's rows put at most QBLK keys
         * past this row's query; clearing only those words, not all NW, keeps causal blocks from
         * paying for the keys above the diagonal (docs/RESULTS.md part 9z.k) */
        for (size_t ch = (size_t)nchunk; ch < nwclr; ch++) mr[ch] = 0, w->maskt[ch * QBLK + (size_t)(rb + r)] = 0;
        if (!valid[r]) continue;
        w->st.queries += 1;
        w->st.pairs_visible += S->nvalid ? S->nvalid[end[r]] : end[r];
        w->st.pairs_mem_kept += (double)nmem;
        if (o->want_exact_stats) {
            const float *qrow = h->q + (size_t)(i0 + r) * (size_t)h->ldq;
            for (int j = 0; j < end[r]; j++) {
                if (h->key_valid && !h->key_valid[j]) continue;
                int pass = exact_dot(qrow, h->k + (size_t)j * (size_t)h->ldk, d) * scale >= thr[r];
                int keep = (int)((mr[j / 64] >> (j % 64)) & 1);
                w->st.exact_pass += pass;
                w->st.false_prunes += pass && !keep;
                w->st.false_keeps += keep && !pass;
            }
        }
    }
    for (int r = 0; r < 4 && rb + r < QBLK; r++) {
        w->thr[rb + r] = thr[r];
        w->valid[rb + r] = valid[r];
    }
}

/* Runs the panels queued for the query group at block rows g .. g + 3 (w->qpan, w->qmask)
 * through one flash tile (flash.h): K from the packed panels, V rows by key index, the
 * survivor masks as the rows' key masks, each row's exact threshold; then empties the queue. */
static void sx_tile(const sx_shared *S, sx_work *w, int b0, int nb, int g) {
    const sp_attn_head *h = S->h;
    const int d = h->d, nk = h->n_k, gi = g / 4, ns = w->qn[gi];
    const size_t D = (size_t)d;
    int32_t vidx[64];
    sp_flash_tile t; /* every field set below (no zeroing of the whole struct per tile) */
    t.d = d, t.nkc = 16 * ns, t.v = h->v, t.ldv = h->ldv, t.vidx = vidx, t.bias = NULL;
    t.rmask = w->qmask + gi * 4, t.m = w->mrun + g, t.l = w->lrun + g, t.o = w->acc + (size_t)g * D;
    for (int p = 0; p < 4; p++) {
        const int pan = w->qpan[gi * 4 + (p < ns ? p : 0)]; /* unused slots: any valid panel (masked) */
        t.kpan[p] = S->kp_f32 + (size_t)pan * D * 16;
        /* keys past n_k (the last panel's padding) are never kept, but the portable tile reads
         * every V row below lim with weight 0: point them at a real row */
        const int j0 = 16 * pan, nu = nk - j0 < 16 ? nk - j0 : 16;
#pragma omp simd /* 16 stores in 4 vector stores (gcc -O2 leaves the loop scalar) */
        for (int u = 0; u < 16; u++) vidx[16 * p + u] = j0 + (u < nu ? u : nu - 1);
    }
    for (int r = 0; r < 4; r++) {
        t.q[r] = w->qs + (size_t)(g + r < nb ? g + r : g) * D;
        t.lim[r] = 16 * ns;
        t.thr[r] = g + r < nb ? (float)(w->thr[g + r] * LOG2E) : INFINITY;
    }
    S->tile(&t);
    for (int r = 0; r < 4 && g + r < nb; r++) {
        w->st.pairs_kept += __builtin_popcountll(t.kept[r]);
        if (S->o->kept) {
            unsigned char *row = S->o->kept + (size_t)(b0 + g + r) * (size_t)nk;
            for (uint64_t bits = t.kept[r]; bits; bits &= bits - 1) row[vidx[__builtin_ctzll(bits)]] = 1;
        }
    }
    w->qn[gi] = 0;
    for (int r = 0; r < 4; r++) w->qmask[gi * 4 + r] = 0;
}

/* Serves the first `take` survivors waiting on block row r's pending list (exact scores, the
 * exact threshold, the softmax update, sprint_exact.h) and moves the < 16 left to the front. */
static void sx_serve(const sx_shared *S, sx_work *w, int b0, int r, int take) {
    const sp_attn_head *h = S->h;
    const size_t D = (size_t)h->d;
    int32_t *pend = w->pend + (size_t)r * (size_t)S->pcap;
    const int n = w->npend[r];
    const int nkept = S->chunk(w->qs + (size_t)r * D, h->k, h->ldk, h->v, h->ldv, h->d, pend, take,
                               (float)(w->thr[r] * LOG2E), &w->mrun[r], &w->lrun[r], w->acc + (size_t)r * D,
                               w->sbuf, w->kidx);
    w->st.pairs_kept += nkept;
    if (S->o->kept) {
        unsigned char *row = S->o->kept + (size_t)(b0 + r) * (size_t)h->n_k;
        for (int t = 0; t < nkept; t++) row[w->kidx[t]] = 1;
    }
    /* < 16 left, and take >= 16 whenever some are left: one 64-byte copy, no overlap (pend has
     * pcap >= take + 16 entries) */
    if (n > take) memcpy(pend, pend + take, 16 * sizeof *pend);
    w->npend[r] = n - take;
}

/* The digital stage of a block of nb queries [b0, b0 + nb) (paper sec. 1.4-1.5), key chunk by
 * key chunk: each query's survivors in the chunk get exact scores, the exact threshold and an
 * online-softmax update, so a chunk's K and V rows serve the whole block while in cache, and
 * dense panels can go through the flash tile (docs/RESULTS.md part 9b). */
static void sx_digital(const sx_shared *S, sx_work *w, int b0, int nb) {
    const sp_attn_head *h = S->h;
    const int d = h->d, nk = h->n_k;
    const size_t D = (size_t)d;
    const float qmul = (float)((double)h->scale * LOG2E);
    int endmax = 0;
    const int nb4 = (nb + 3) & ~3; /* the rows the block's groups span */
    for (int r = 0; r < nb4; r++) { /* rows nb .. nb4 - 1: scratch for the dense tiles' unused rows */
        /* the fixed reference (S->fixed) is the row's threshold in log2 units, as passed to
         * the chunk and tile steps; scratch rows keep nothing, any finite value serves */
        w->mrun[r] = !S->fixed ? -INFINITY : r < nb && w->valid[r] ? (float)(w->thr[r] * LOG2E) : 0.0f;
        w->lrun[r] = 0.0f;
        memset(w->acc + (size_t)r * D, 0, D * sizeof *w->acc);
        if (r >= nb) continue;
        const float *qr = h->q + (size_t)(b0 + r) * (size_t)h->ldq;
        float *qsr = w->qs + (size_t)r * D;
#pragma omp simd /* gcc -O2 leaves loops of unknown trip count scalar; same products either way */
        for (int c = 0; c < d; c++) qsr[c] = qr[c] * qmul;
        if (!w->valid[r]) continue;
        int e = h->causal ? h->q_offset + b0 + r + 1 : nk;
        if (e > endmax) endmax = e;
    }
    const int nch = (endmax + SX_CHUNK - 1) / SX_CHUNK;
    /* Survivors outside the dense panels wait in a per-query list until S->batch of them are
     * there or the last chunk is done (a query has a few such survivors per 64-key chunk on the
     * BERT-L preset at 10% kept; partial 16-key groups waste score-tree work; see SX_BATCH). */
    int *np = w->npend;
    for (int r = 0; r < nb4; r++) np[r] = 0;
    for (int gi = 0; gi < nb4 / 4; gi++) w->qn[gi] = 0;
    memset(w->qmask, 0, (size_t)nb4 * sizeof *w->qmask);
    const int dm = S->dense_min; /* <= 0: every panel with a survivor; > 64: none */
    for (int ch = 0; ch <= nch; ch++)
        for (int g = 0; g < nb; g += 4) {
            const int gi = g / 4;
            if (ch == nch) { /* after the last chunk: the panels still queued, then every survivor left */
                if (w->qn[gi] > 0) sx_tile(S, w, b0, nb, g);
                for (int r = g; r < g + 4 && r < nb; r++)
                    if (np[r] > 0) sx_serve(S, w, b0, r, np[r]);
                continue;
            }
            const uint64_t *x = w->maskt + (size_t)ch * QBLK + (size_t)g;
            uint64_t r0 = x[0], r1 = x[1], r2 = x[2], r3 = x[3];
            if (!(r0 | r1 | r2 | r3)) continue; /* rows past nb and invalid rows are zero words (sx_group) */
            if (S->kp_f32 && dm <= 64) {
                /* Panels of 16 keys in which the group's 4 queries have at least dense_min of the
                 * 64 pairs as survivors are queued, 4 to a flash tile (scores of all 4 x 64 pairs
                 * from the packed K panels: no gathers, no reduction trees; weights only for kept
                 * keys); the survivors of the other panels go to the gathers below. */
                uint64_t dbits = sp_sx_dense_panels(r0, r1, r2, r3, dm);
                while (dbits) { /* the dense panels, lowest first */
                    const int p = __builtin_ctzll(dbits) / 16;
                    dbits &= dbits - 1;
                    const int slot = w->qn[gi], sh = 16 * p;
                    const uint64_t keep = ~((uint64_t)0xFFFF << sh);
                    uint64_t *qm = w->qmask + gi * 4;
                    w->qpan[gi * 4 + slot] = ch * 4 + p;
                    qm[0] |= ((r0 >> sh) & 0xFFFF) << (16 * slot), r0 &= keep;
                    qm[1] |= ((r1 >> sh) & 0xFFFF) << (16 * slot), r1 &= keep;
                    qm[2] |= ((r2 >> sh) & 0xFFFF) << (16 * slot), r2 &= keep;
                    qm[3] |= ((r3 >> sh) & 0xFFFF) << (16 * slot), r3 &= keep;
                    if (++w->qn[gi] == 4) sx_tile(S, w, b0, nb, g);
                }
            }
            if (!(r0 | r1 | r2 | r3)) continue;
            { /* the group's leftovers onto its 4 pending lists, one call (zero rows untouched) */
                const uint64_t rg[4] = {r0, r1, r2, r3};
                const size_t pc = (size_t)S->pcap;
                int32_t *const outs[4] = {w->pend + (size_t)g * pc, w->pend + (size_t)(g + 1) * pc,
                                          w->pend + (size_t)(g + 2) * pc, w->pend + (size_t)(g + 3) * pc};
                S->gather(rg, ch * SX_CHUNK, outs, np + g);
            }
            /* a row is served once batch survivors wait (rows past nb have none: one test of
             * the 4 counts, rarely true, instead of a branch per row) */
            const int bt = S->batch;
            if ((np[g] >= bt) | (np[g + 1] >= bt) | (np[g + 2] >= bt) | (np[g + 3] >= bt))
                for (int r = g; r < g + 4 && r < nb; r++)
                    if (np[r] >= bt) sx_serve(S, w, b0, r, np[r] / 16 * 16);
        }
    for (int r = 0; r < nb; r++) {
        float *orow = h->out + (size_t)(b0 + r) * (size_t)h->ldo;
        const float *a = w->acc + (size_t)r * D;
        if (!w->valid[r] || !(w->lrun[r] > 0.0f)) {
            memset(orow, 0, D * sizeof *orow);
            continue;
        }
        const float inv = 1.0f / w->lrun[r];
#pragma omp simd
        for (int c = 0; c < d; c++) orow[c] = a[c] * inv;
    }
}

/* Whether the row's threshold may serve as a fixed softmax reference (sprint_exact.h): fixed
 * policy with a finite threshold thr2 = (float)(thr log2 e), and every score the kernel can
 * compute (log2 units, fp32) below thr2 + E with E + log2(n_k + 1) + log2(max(|v|, 1)) <= 120,
 * so every kept weight 2^(s - thr2) lies in [1, 2^E] and no sum of weights or of weighted V
 * rows can leave fp32 (2^128). The score bound is Cauchy-Schwarz on the largest row norms,
 * |q| |k| scale log2 e, times 1.01 plus 1 for the rounding of the prescaled query and of any
 * fp32 summation order (relative error < d 2^-24 << 0.01 for d <= SP_FLASH_MAX_D). */
static int fixed_ref_ok(const sp_attn_head *h, const sp_cpu_sprint_opts *o, const double nrm[3]) {
    if (o->policy != SP_CPU_POLICY_FIXED || !isfinite(o->threshold)) return 0;
    const double thr2 = (double)(float)(o->threshold * LOG2E);
    if (!isfinite(thr2)) return 0;
    const double u2 = nrm[0] * nrm[1] * (double)h->scale * LOG2E * 1.01 + 1.0;
    const double e = u2 - thr2 > 0 ? u2 - thr2 : 0;
    return e + log2((double)h->n_k + 1.0) + log2(nrm[2] > 1 ? nrm[2] : 1) <= 120.0;
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
    double nrm[3]; /* largest row norms of Q, K, V */
    float amax[2]; /* largest |q|, |k|: the quantiser's scales, from the same pass over Q and K */
    s = sp_flash_check_inputs_norms_amax(h, nrm, amax, err); /* flash's check: finite inputs, scores inside fp32 */
    if (s != SP_OK) return s;
    if (o->kept) memset(o->kept, 0, (size_t)nq * (size_t)nk);
    if (nq == 0) return SP_OK;
    /* K and V rows on 64-byte boundaries: the digital stage loads gathered rows 64 bytes at a
     * time, and rows off a line made the kernel 12-14% slower at n_q = n_k = 4096
     * (docs/RESULTS.md part 9z.w.3); the same values, so the same kept keys and outputs. From
     * SX_COPY_MIN_Q queries on: below, the copy (2 n_k x d floats, fresh pages) costs more than
     * the split loads (with it 1.07-3.0x the time at 1-256 queries, 0.92-1.11x at 512,
     * 0.77-0.97x at 4096; n_k = 4096, d = 64 or 128, one thread). */
    sp_attn_head ha = *h;
    float *k_al = nq >= SX_COPY_MIN_Q ? sp_rows_aligned(h->k, nk, d, h->ldk, &ha.ldk) : NULL;
    float *v_al = nq >= SX_COPY_MIN_Q ? sp_rows_aligned(h->v, nk, d, h->ldv, &ha.ldv) : NULL;
    if (k_al) ha.k = k_al;
    if (v_al) ha.v = v_al;
    h = &ha;
    const size_t NK = (size_t)(nk > 0 ? nk : 1), D = (size_t)d;
    int8_t *qi = sp_xmalloc((size_t)nq * D, 1);
    float *sq = sp_xmalloc((size_t)nq, sizeof *sq), *sk = sp_xmalloc(NK, sizeof *sk);
    sp_cpu_level lv = sp_cpu_detect();
    const int v512 = lv >= SP_CPU_AVX512;
    sp_quant_rows_tmax(lv, h->q, nq, d, h->ldq, h->query_valid, amax[0], qi, sq);
    int8_t *qd = qi; /* (nq, d8) query levels: qi itself when d is a multiple of 8 */
    if (d8 != d) {
        qd = sp_xcalloc((size_t)nq * (size_t)d8, 1);
        for (int i = 0; i < nq; i++) memcpy(qd + (size_t)i * (size_t)d8, qi + (size_t)i * D, D);
    }
    double *marg = sp_xmalloc((size_t)nq, sizeof *marg), *oi = sp_xmalloc((size_t)nq, sizeof *oi);
    /* key MSB levels sp_key_msb(k, 4) = (k + 128) >> 4 and the integer row sums (exact, so the
     * same doubles as summing in double) */
    int32_t *rs = sp_xmalloc((size_t)(nq > nk ? nq : nk) + 1, sizeof *rs), *rs2 = sp_xmalloc((size_t)(nq > nk ? nq : nk) + 1, sizeof *rs2);
    void (*rows_fn)(const int8_t *, int, int, uint8_t *, int32_t *, int32_t *) = v512 ? sp_sx_rows_avx512
                                                                                        : sp_sx_rows_portable;
    /* AMX screen (fixed policy, no exact statistics: the other paths need every charge); the
     * VNNI / AVX2 / portable screen's packing comes from one pass over K (sp_sx_quant_keys) */
    uint8_t *kb = NULL, *kp = NULL;
    int8_t *qa = NULL;
    const int dA = sp_iscreen_amx_dA(d);
    if (o->policy == SP_CPU_POLICY_FIXED && !o->want_exact_stats && nk > 0 && sp_iscreen_amx_available()) {
        int8_t *ki = sp_xmalloc(NK * D, 1);
        uint8_t *msb = sp_xmalloc(NK * D, 1);
        sp_quant_rows_tmax(lv, h->k, nk, d, h->ldk, h->key_valid, amax[1], ki, sk);
        rows_fn(ki, nk, d, msb, rs, rs2);
        kb = sp_xmalloc(sp_iscreen_amx_pack_size(nk, d), 1);
        sp_iscreen_amx_pack(msb, nk, d, d, kb);
        const size_t nqa = ((size_t)nq + QBLK - 1) / QBLK * QBLK;
        qa = sp_xcalloc(nqa * (size_t)dA, 1);
        for (int i = 0; i < nq; i++) memcpy(qa + (size_t)i * (size_t)dA, qi + (size_t)i * D, D);
        free(ki), free(msb);
    } else {
        kp = sp_xmalloc(sp_iscreen_pack_size(nk, d), 1);
        sp_sx_quant_keys(lv, h->k, nk, d, h->ldk, h->key_valid, amax[1], kp, sk, rs, rs2);
    }
    double k_ms = 0, ncell = 0;
    for (int j = 0; j < nk; j++)
        if (!h->key_valid || h->key_valid[j]) k_ms += (double)rs2[j], ncell += d;
    if (ncell > 0) k_ms /= ncell;
    rows_fn(qi, nq, d, NULL, rs, rs2);
    for (int i = 0; i < nq; i++) {
        const double sqd = (double)rs[i], sqd2 = (double)rs2[i];
        /* sigma margin (integer units): LSB centring (uniform over 16 levels) and the 8-bit
         * rounding of q and k; as sprint_op.c with an ideal device and an 8-bit DAC */
        marg[i] = o->margin_sigma * sqrt(sqd2 * 255.0 / 12.0 + (sqd2 + d * k_ms) / 12.0);
        oi[i] = (7.5 - 128.0) * sqd;
    }
    free(rs), free(rs2);
    uint64_t *kvw = NULL;
    int *nvalid = NULL;
    if (h->key_valid) {
        kvw = sp_xcalloc(NK / 64 + 1, sizeof *kvw);
        nvalid = sp_xmalloc(NK + 1, sizeof *nvalid);
        nvalid[0] = 0;
        for (int j = 0; j < nk; j++) {
            kvw[j / 64] |= (uint64_t)(h->key_valid[j] != 0) << (j % 64);
            nvalid[j + 1] = nvalid[j] + (h->key_valid[j] != 0);
        }
    }
    float *kpf = NULL;
    if (nk > 0) {
        kpf = sp_xmalloc_aligned(sp_flash_kpack_size(nk, d), sizeof *kpf);
        sp_flash_pack_k(h->k, h->ldk, nk, d, kpf);
    }
    sx_shared S = {.h = h, .o = o, .d8 = d8, .kp = kp, .kvw = kvw, .nvalid = nvalid, .qd = qd, .sq = sq,
                   .sk = sk, .screen = sp_iscreen_tile_for(lv), .masks = sp_iscreen_masks_for(lv), .chunk = sp_sx_chunk_for(lv, d),
                   .gather = sp_sx_gather_for(lv), .kp_f32 = kpf, .tile = sp_flash_tile_for(lv, d),
                   .dense_min = sp_sx_dense_min(), .batch = sp_sx_batch(), .kb = kb, .qa = qa, .dA = dA, .marg = marg, .oi = oi};
    S.pcap = S.batch + SX_CHUNK + 16; /* < batch before a chunk's gather + one chunk + 16 slack */
    if (fixed_ref_ok(h, o, nrm) && lv >= SP_CPU_AVX512 && d % 16 == 0 && sp_sx_fixed_ref()) {
        S.fixed = 1;
        S.chunk = sp_sx_chunk_fixed_avx512;
        S.tile = sp_sx_tile_fixed_avx512;
    }
    /* Block size: QBLK, halved (down to 32, the AMX screen's rows) while there would be fewer
     * blocks than threads. The outputs do not depend on it: the groups of 4 rows are the same
     * and each row's steps run in the same order (the tests compare 1, 2 and 8 threads). */
    const int nt_want = o->threads > 0 ? o->threads : omp_get_max_threads();
    int qb = QBLK;
    while (qb > 32 && (nq + qb - 1) / qb < nt_want) qb /= 2;
    const int nblk = (nq + qb - 1) / qb;
    int nt = nt_want;
    if (nt > nblk) nt = nblk;
    sp_attn_stats *bst = sp_xcalloc((size_t)nblk, sizeof *bst);
#pragma omp parallel num_threads(nt > 0 ? nt : 1)
    {
        sx_work w;
        memset(&w, 0, sizeof w);
        if (o->policy == SP_CPU_POLICY_RELATIVE || o->want_exact_stats)
            w.A = sp_xmalloc(4 * (NK + SP_ISCREEN_CHUNK), sizeof *w.A);
        w.mask = sp_xcalloc(QBLK * (NK / 64 + 1), sizeof *w.mask);
        w.maskt = sp_xcalloc(QBLK * (NK / 64 + 1), sizeof *w.maskt);
        w.thr = sp_xmalloc(QBLK, sizeof *w.thr);
        w.tau = sp_xmalloc(QBLK, sizeof *w.tau);
        w.valid = sp_xmalloc(QBLK, sizeof *w.valid);
        w.pend = sp_xmalloc((size_t)QBLK * (size_t)S.pcap, sizeof *w.pend);
        w.npend = sp_xmalloc(QBLK, sizeof *w.npend);
        w.kidx = sp_xmalloc((size_t)S.pcap + 16, sizeof *w.kidx);
        w.sbuf = sp_xmalloc((size_t)S.pcap + 16, sizeof *w.sbuf);
        w.qs = sp_xmalloc_aligned(QBLK * D, sizeof *w.qs);
        w.acc = sp_xmalloc_aligned(QBLK * D, sizeof *w.acc);
        w.mrun = sp_xmalloc(QBLK, sizeof *w.mrun);
        w.lrun = sp_xmalloc(QBLK, sizeof *w.lrun);
#pragma omp for schedule(dynamic, 1)
        for (int b = nblk - 1; b >= 0; b--) {
            memset(&w.st, 0, sizeof w.st);
            int i1 = (b + 1) * qb < nq ? (b + 1) * qb : nq;
            if (S.kb) { /* AMX: comparator references, then the 32 rows x 64 keys per step */
                for (int r = 0; r < QBLK; r++) w.tau[r] = INT32_MAX;
                for (int i0 = b * qb; i0 < i1; i0 += 4)
                    sx_group(&S, &w, i0, i1 - i0 < 4 ? i1 - i0 : 4, i0 - b * qb, SX_TAU_ONLY);
                for (int r0 = 0; r0 < i1 - b * qb; r0 += 32) {
                    int last = b * qb + r0 + 31 < i1 ? b * qb + r0 + 31 : i1 - 1;
                    int e = h->causal ? h->q_offset + last + 1 : nk;
                    e = e < nk ? e : nk;
                    sp_iscreen_amx_rows32(S.kb, (e + 63) / 64, d, S.qa + (size_t)(b * qb + r0) * (size_t)S.dA,
                                          w.tau + r0, w.mask + (size_t)r0 * (NK / 64 + 1), NK / 64 + 1, NULL, 0);
                }
            }
            for (int i0 = b * qb; i0 < i1; i0 += 4)
                sx_group(&S, &w, i0, i1 - i0 < 4 ? i1 - i0 : 4, i0 - b * qb, S.kb ? SX_PREMASKED : SX_SCREEN);
            sx_digital(&S, &w, b * qb, i1 - b * qb);
            bst[b] = w.st;
        }
        free(w.A), free(w.mask), free(w.maskt), free(w.thr), free(w.tau), free(w.valid), free(w.pend), free(w.npend), free(w.kidx), free(w.sbuf), free(w.qs),
            free(w.acc), free(w.mrun), free(w.lrun);
    }
    if (o->stats) /* summed in block order: the same doubles for any thread count */
        for (int b = 0; b < nblk; b++) sp_attn_stats_add(o->stats, &bst[b]);
    free(bst), free(kpf), free(kb), free(marg), free(oi), free(qa), free(qi), free(sq), free(sk), free(d8 != d ? qd : NULL), free(kp), free(kvw), free(nvalid);
    free(k_al), free(v_al);
    return SP_OK;
}
