/* headsim.c: one attention-head instance simulated on every design and chip size at once
 * (paper sections 2-5). Records of the functional model drive the event designs (pruning,
 * sprint-noreuse, sprint) query by query; the regular designs (baseline-paper,
 * baseline-tiled, mask-only) are generated at finish from the head's shape. For each design
 * the same three-stage overlap is modelled (paper section 2.3-2.5):
 *   thresholding of query i in memory (CopyQ, tAxTh rounds, ReadP) overlaps the fetches and
 *   compute of query i-1; fetches of query i stream while the CORELETs compute on the vectors
 *   already there (bypassing rotate pointer), so a query ends at
 *     (the CORELET units stay busy until max(start + occupancy, last arrival)) + pipeline tail
 *   where start = max(units free, query ready); the tail (QK -> softmax -> divide -> V latency)
 *   overlaps the next query. The slowest stage shows up as the bound (bound_thr / bound_mem /
 *   bound_comp). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "energy/energy.h"
#include "events/residency.h"
#include "timing/memory.h"

#define SP_HIST 128

typedef struct dstate {
    double thr_end, comp_end, comp_prev, fetch_end;
    double unit_free;      /* CORELET units free for the next query */
    double thr_free;       /* thresholder free for the next query */
    double fetch_issue;    /* issue time of the previous query's fetches (in order) */
    double kmsb_free;      /* SPRINT: the K_MSB arrays are free of the previous query's transposed reads */
    double hist[SP_HIST];  /* comp_end of the last SP_HIST queries (ring) */
    long nq;               /* queries ended */
    long prefix_fetched;   /* regular designs and pruning: resident keys [0, p) on chip */
    sp_counts n;
    sp_design_result r;
    double expect_bytes;   /* bytes of the vectors this design decided to fetch (checked against memory) */
    double readp_bytes;    /* pruning-vector (ReadP) bytes: read from main memory outside sp_mem */
} dstate;

typedef struct size_state {
    sp_mem mem[SP_DESIGN_COUNT];
    sp_residency res;          /* sprint's On-Chip? table */
    unsigned char *v_fetched;  /* pruning: V of a resident key (< R) already on chip */
    int cap;                   /* residency entries per CORELET */
    dstate d[SP_DESIGN_COUNT];
    long *ca, *cb;             /* per-CORELET counts scratch */
    long *cm, *ck;             /* per-CORELET counts of the current record's mem_kept and kept (shared by the designs) */
} size_state;

struct sp_sim_head {
    sp_hw hw[SP_SIZE_COUNT];
    unsigned mask;
    sp_head_shape sh;
    int n_alloc;
    int dynamic;               /* shape learnt from the records (real-model traces) */
    size_state s[SP_SIZE_COUNT];
    int32_t *prev;
    int n_prev, has_prev;
    int32_t *last_kept;        /* kept set of the last query record (the pruning design's padded queries) */
    int n_last_kept;
    const sp_design_result (*reg)[SP_DESIGN_COUNT]; /* shared regular-design results, or NULL */
    sp_wl_stats st;
    sp_mem_req *reqs;
    size_t reqs_cap;
    int max_pos;
    /* SPRINT without reuse fetches the same vectors at every size, and the memory's order of
     * service depends only on the requests and the open rows (memory.h): when every size has
     * the same memory geometry, the first size (plan_size) schedules each query's batch and
     * the others replay its order with their own times (plan_size -1: each size schedules) */
    int plan_size;
    sp_mem_plan plan;
};

static double dmax(double a, double b) { return a > b ? a : b; }
static double cdiv(double a, double b) { return ceil(a / b); }

static void reqs_reserve(sp_sim_head *h, size_t n) {
    if (n <= h->reqs_cap) return;
    free(h->reqs);
    h->reqs_cap = n + n / 2 + 16;
    h->reqs = sp_xmalloc(h->reqs_cap, sizeof *h->reqs);
}

sp_sim_head *sp_sim_head_create(const sp_hw *hw, unsigned sizes_mask, const sp_head_shape *shape) {
    SP_ASSERT(shape->n_k >= 1 && shape->d >= 1 && shape->n_valid >= 0 && shape->n_valid <= shape->n_k);
    sp_sim_head *h = sp_xcalloc(1, sizeof *h);
    memcpy(h->hw, hw, sizeof h->hw);
    h->mask = sizes_mask;
    h->sh = *shape;
    h->n_alloc = shape->n_k;
    h->max_pos = -1;
    for (int s = 0; s < SP_SIZE_COUNT; s++) {
        if (!(sizes_mask & (1u << s))) continue;
        size_state *ss = &h->s[s];
        const sp_hw *w = &h->hw[s];
        for (int d = 0; d < SP_DESIGN_COUNT; d++) sp_mem_init(&ss->mem[d], w);
        double per = fmin(w->k_buf_bytes, w->v_buf_bytes) / w->corelets;
        ss->cap = (int)floor(per / shape->d);
        SP_ASSERT(ss->cap >= 1); /* sp_hw_check_head rejects smaller buffers */
        /* SPRINT's On-Chip? table: chip.reuse_share of the entries (at least one) */
        int rcap = (int)floor(ss->cap * (w->reuse_share > 0 ? w->reuse_share : 1.0));
        sp_residency_init(&ss->res, h->n_alloc, w->corelets, rcap >= 1 ? rcap : 1, w->replacement);
        ss->v_fetched = sp_xcalloc((size_t)h->n_alloc, 1);
        ss->ca = sp_xcalloc((size_t)w->corelets, sizeof *ss->ca);
        ss->cb = sp_xcalloc((size_t)w->corelets, sizeof *ss->cb);
        ss->cm = sp_xcalloc((size_t)w->corelets, sizeof *ss->cm);
        ss->ck = sp_xcalloc((size_t)w->corelets, sizeof *ss->ck);
    }
    h->plan_size = -1;
    for (int s = 0; s < SP_SIZE_COUNT; s++) {
        if (!(sizes_mask & (1u << s))) continue;
        if (h->plan_size < 0) {
            h->plan_size = s;
            continue;
        }
        const sp_hw *a = &h->hw[h->plan_size], *b = &h->hw[s];
        if (a->channels != b->channels || a->banks != b->banks || a->row_bytes != b->row_bytes ||
            a->queue_depth != b->queue_depth || a->frfcfs != b->frfcfs) {
            h->plan_size = -1;
            break;
        }
    }
    h->prev = sp_xmalloc((size_t)h->n_alloc, sizeof *h->prev);
    h->last_kept = sp_xmalloc((size_t)h->n_alloc, sizeof *h->last_kept);
    reqs_reserve(h, 2 * (size_t)h->n_alloc + 8);
    return h;
}

void sp_sim_head_free(sp_sim_head *h) {
    if (!h) return;
    for (int s = 0; s < SP_SIZE_COUNT; s++) {
        if (!(h->mask & (1u << s))) continue;
        size_state *ss = &h->s[s];
        for (int d = 0; d < SP_DESIGN_COUNT; d++) sp_mem_free(&ss->mem[d]);
        sp_residency_free(&ss->res);
        free(ss->v_fetched);
        free(ss->ca);
        free(ss->cb);
        free(ss->cm);
        free(ss->ck);
    }
    sp_mem_plan_free(&h->plan);
    free(h->prev);
    free(h->last_kept);
    free(h->reqs);
    free(h);
}

/* ---- CORELET compute (paper section 2.5, Fig. 7) ------------------------------------------ */
static void counts_range(long n, int C, long *out) {
    for (int c = 0; c < C; c++) out[c] = n > c ? (n - c + C - 1) / C : 0;
}
/* Keys per CORELET of an index list (indices >= 0, sp_corelet_of). */
static void counts_list(const int32_t *idx, int n, int C, long *out) {
    memset(out, 0, (size_t)C * sizeof *out);
    if (C == 1) out[0] = n;
    else
        for (int i = 0; i < n; i++) out[sp_corelet_of(idx[i], C)]++;
}

static double tail_cycles(const sp_hw *hw, int d) { return hw->pipeline_cycles + cdiv(d, hw->sm_per_cycle); }

int sp_sim_lookahead(const sp_hw *hw, int n_visible) {
    int la = hw->lookahead;
    if (hw->index_buffer_bits > 0 && n_visible > 0) {
        double held = floor(hw->index_buffer_bits / n_visible); /* vectors the buffer holds */
        if (held - 1 < la) la = held >= 1 ? (int)held - 1 : 0;
    }
    return la;
}

double sp_sim_pv_cycles(const sp_hw *hw, int n_visible) {
    if (hw->pv_bits_per_cycle <= 0 || n_visible <= 0) return 0;
    return ceil(ceil((double)n_visible / hw->corelets) / hw->pv_bits_per_cycle);
}

/* Cycles of one query on the CORELETs: keys interleaved, each CORELET's QK-PU, softmax and
 * V-PU pipelined over its keys; the slowest CORELET and stage sets the time. */
static double compute_cycles(const sp_hw *hw, int d, const long *nqk, const long *nsv, dstate *ds) {
    double dc = cdiv(d, hw->lane_width), mx = 0;
    for (int c = 0; c < hw->corelets; c++) {
        double qk = cdiv((double)nqk[c], hw->qk_lanes) * dc;
        double sm = cdiv((double)nsv[c], hw->sm_per_cycle);
        double v = cdiv((double)nsv[c], hw->v_lanes) * dc;
        ds->r.busy_qk += qk;
        ds->r.busy_sm += sm;
        ds->r.busy_v += v;
        mx = dmax(mx, dmax(qk, dmax(sm, v)));
    }
    return mx;
}

/* Ends a query: the CORELET units start at max(free, ready), stay busy for occ cycles or until
 * the vectors they need have arrived (arrive_units); the result leaves after the last arrival
 * (arrive_final) and the pipeline tail, which overlaps the next query. The busy time a query
 * adds is attributed to its slowest stage by occupancy: thresholding (thr), memory bandwidth
 * (bw = bus cycles per channel), compute (occ); what exceeds all three is exposed latency. */
static void end_query(dstate *ds, double ready, double occ, double arrive_units, double arrive_final, double tail,
                      double thr, double bw) {
    double start = dmax(ds->unit_free, ready);
    double busy_end = dmax(start + occ, arrive_units);
    double added = busy_end - ds->unit_free;
    if (added > 0) {
        double m = dmax(thr, dmax(bw, occ)), part = added < m ? added : m;
        if (m == occ) ds->r.bound_comp += part;
        else if (m == bw) ds->r.bound_mem += part;
        else ds->r.bound_thr += part;
        ds->r.bound_lat += added - part;
    }
    ds->unit_free = busy_end;
    double cend = dmax(ds->comp_end, dmax(busy_end, arrive_final) + tail);
    ds->comp_prev = ds->comp_end;
    ds->comp_end = cend;
    ds->hist[ds->nq % SP_HIST] = cend;
    ds->nq++;
}

/* End of the query `back` queries before the next one (0 when there is none): a stage may
 * run at most `back` queries ahead of compute (buffer space for its results). */
static double ended_before(const dstate *ds, int back) {
    SP_ASSERT(back >= 1 && back <= SP_HIST);
    return ds->nq >= back ? ds->hist[(ds->nq - back) % SP_HIST] : 0.0;
}

/* Fetches vectors [from, to) of a region issued at t: event model or analytical stream. */
static double fetch_range(sp_sim_head *h, sp_mem *m, int event, int region, long from, long to, double t) {
    if (to <= from) return t;
    if (event) {
        size_t n = (size_t)(to - from);
        reqs_reserve(h, n);
        for (size_t i = 0; i < n; i++) h->reqs[i] = (sp_mem_req){from + (long)i, region, h->sh.d};
        return sp_mem_batch(m, h->reqs, (int)n, t);
    }
    return sp_mem_stream(m, region, from, to, h->sh.d, t);
}

/* ---- event designs, one query record ------------------------------------------------------ */
/* cm, ck: keys per CORELET of rec->mem_kept and rec->kept (counts_list). */
static void sprint_query(sp_sim_head *h, int s, sp_design D, const sp_query_record *rec, const long *cm, const long *ck) {
    const sp_hw *hw = &h->hw[s];
    size_state *ss = &h->s[s];
    dstate *ds = &ss->d[D];
    int d = h->sh.d, nv = rec->n_visible;
    /* Thresholding (paper section 2.3): CopyQ (tCL), ceil(keys / keys-per-round) rounds of
     * tAxTh (a key longer than a column spans ceil(d / rows) columns), ReadP of the vector. */
    double rounds = cdiv(nv, (double)hw->xbar_cols * hw->arrays_parallel) * cdiv(d, hw->xbar_rows) * hw->msb_cells;
    long pbytes = (nv + 7) / 8;
    double burst = sp_mem_burst(hw, (int)(pbytes > 0 ? pbytes : 1));
    double T = hw->t_cl_cyc + rounds * hw->t_axth_cyc + hw->t_cl_cyc + burst; /* latency of one query */
    /* CopyQ, array rounds and ReadP use different resources (query buffer, arrays, bus), so
     * consecutive queries pipeline: the thresholder accepts a query every T_occ cycles. */
    double T_occ = dmax(hw->t_cl_cyc, dmax(rounds * hw->t_axth_cyc, hw->t_cl_cyc + burst));
    /* Lookahead: thresholding may run ahead of compute by `lookahead` queries, but their
     * pruning vectors wait in the unpruned-index buffer, which holds floor(bits / nv) of them
     * (the one being consumed included). */
    int la = sp_sim_lookahead(hw, nv);
    double thr_start = dmax(ds->thr_free, ended_before(ds, 1 + la));
    /* The K_MSB arrays both threshold and serve the transposed reads of survivors' K_MSB: a
     * query's thresholding waits until the previous query's fetches have left the arrays. */
    if (hw->kmsb_contention) thr_start = dmax(thr_start, ds->kmsb_free);
    ds->thr_free = thr_start + T_occ;
    double thr_end = thr_start + T;
    ds->r.busy_thr += T_occ;
    double issue = hw->prefetch ? thr_end : dmax(thr_end, ds->comp_end);
    int n = 0;
    reqs_reserve(h, 2 * (size_t)rec->n_mem_kept + 1);
    h->reqs[n++] = (sp_mem_req){rec->pos, SP_REGION_Q, d};
    long fetched = 0, reused = 0;
    for (int i = 0; i < rec->n_mem_kept; i++) {
        int32_t j = rec->mem_kept[i];
        if (D == SP_DESIGN_SPRINT && sp_residency_access(&ss->res, j)) {
            reused++;
            continue;
        }
        /* K (MSB from the transposable arrays + LSB) and V of the survivor (Fig. 7 transfers 2, 4). */
        h->reqs[n++] = (sp_mem_req){j, SP_REGION_K, d};
        h->reqs[n++] = (sp_mem_req){j, SP_REGION_V, d};
        fetched++;
    }
    double bus0 = ss->mem[D].busy_bus;
    double fend;
    if (D != SP_DESIGN_SPRINT_NOREUSE || h->plan_size < 0) fend = sp_mem_batch(&ss->mem[D], h->reqs, n, issue);
    else if (s == h->plan_size) fend = sp_mem_batch_plan(&ss->mem[D], h->reqs, n, issue, &h->plan);
    else fend = sp_mem_replay(&ss->mem[D], &h->plan, issue);
    double bw = (ss->mem[D].busy_bus - bus0) / hw->channels;
    double comp = compute_cycles(hw, d, cm, ck, ds);
    /* Pruning-vector processing (Fig. 7 address generators, paper section 2.3 step 3): each
     * CORELET walks its share of the vector (keys are token-interleaved), looks every unpruned
     * index up in the On-Chip? table and generates its address before the QK-PU can use it. */
    double pv = sp_sim_pv_cycles(hw, nv);
    ds->r.busy_pv += pv * hw->corelets;
    end_query(ds, thr_end, comp + pv, fend, fend, tail_cycles(hw, d), T_occ, bw);
    /* the arrays are busy with this query's transposed reads until the last activation and
     * column read of its batch (bank_ready), not until the data has crossed the bus */
    {
        double busy = dmax(issue, ss->mem[D].bank_ready_max); /* = the max over every bank */
        ds->kmsb_free = n > 1 ? busy : ds->kmsb_free;
    }
    ds->thr_end = thr_end;
    ds->fetch_end = fend;
    double vec_bytes = (double)(1 + 2 * fetched) * d;
    ds->expect_bytes += vec_bytes;
    ds->n.reram_read_bytes += vec_bytes + (double)pbytes;
    ds->readp_bytes += (double)pbytes;
    ds->n.imc_macs += (double)nv * d * hw->msb_cells; /* one MAC per MLC slice */
    ds->n.compares += nv;
    ds->n.copyq_bytes += d;
    ds->n.sram_write_bytes += vec_bytes + (double)pbytes;
    ds->n.sram_read_bytes += (double)d * (1 + rec->n_mem_kept + rec->n_kept) + (double)pbytes;
    ds->n.qk_macs += (double)rec->n_mem_kept * d;
    ds->n.v_macs += (double)rec->n_kept * d;
    ds->n.exps += rec->n_kept;
    ds->n.divs += d;
    ds->r.vec_fetched += 2.0 * fetched; /* K and V */
    ds->r.vec_reused += 2.0 * reused;
    ds->r.pairs_qk += rec->n_mem_kept;
    ds->r.pairs_sv += rec->n_kept;
    ds->r.queries += 1;
}

/* Digital runtime pruning, LeOPArd-like: the K of every key the query scores streams in, scores
 * are computed and thresholded on chip, then only the survivors' V are fetched. Which keys are
 * scored (chip.pruning_masked_pairs): like baseline-paper, all n keys of the sequence, padded and
 * causally masked ones included (they are then pruned), or only the visible ones as mask-only.
 * Residency follows chip.baseline_dataflow like the baseline (sp_sim_baseline_resident): keys
 * [0, R) keep their K (and, once a query keeps them, their V) on chip, fetched once per head;
 * K [R, scored) streams for every query and a survivor's V >= R is fetched for every query that
 * keeps it. Survivors = the record's kept set. */
static int pruning_scores_all(const sp_hw *hw) { return hw->pruning_masked; }

/* ck: keys per CORELET of rec->kept (counts_list). */
static void pruning_query(sp_sim_head *h, int s, const sp_query_record *rec, const long *ck) {
    const sp_hw *hw = &h->hw[s];
    size_state *ss = &h->s[s];
    dstate *ds = &ss->d[SP_DESIGN_PRUNING];
    sp_mem *m = &ss->mem[SP_DESIGN_PRUNING];
    int d = h->sh.d, C = hw->corelets;
    /* keys scored per query (nv): all keys of the sequence (the record's n_k) or the visible
     * ones; keys that compete for residency (nvalid) */
    int all = pruning_scores_all(hw);
    int nv = all && rec->n_k > rec->n_visible ? rec->n_k : rec->n_visible;
    SP_ASSERT(nv <= h->n_alloc);
    long nvalid = all ? rec->n_k : h->dynamic ? h->n_alloc : h->sh.n_valid;
    long R = sp_sim_baseline_resident(hw, nvalid, ss->cap);
    int fits = R >= nvalid;
    /* resident K: a few vectors per query, always the event model */
    int event = h->n_alloc <= hw->event_max_keys || fits;
    double issue = dmax(ds->fetch_issue, ended_before(ds, 1 + hw->lookahead));
    ds->fetch_issue = issue;
    double bus0 = m->busy_bus;
    double t = fetch_range(h, m, 1, SP_REGION_Q, rec->pos, rec->pos + 1, issue);
    /* resident K not yet on chip: [from, once_to); streamed K: [R, nv); issued together */
    long from = ds->prefix_fetched, once_to = nv < R ? nv : R;
    long n_once = once_to > from ? once_to - from : 0, n_str = nv > R ? nv - R : 0;
    double kend = fetch_range(h, m, event, SP_REGION_K, from, from + n_once, t);
    kend = dmax(kend, fetch_range(h, m, event, SP_REGION_K, R, R + n_str, t));
    long kf = n_once + n_str;
    if (once_to > ds->prefix_fetched) ds->prefix_fetched = once_to;
    counts_range(nv, C, ss->ca);
    double qk = 0, dc = cdiv(d, hw->lane_width);
    for (int c = 0; c < C; c++) qk = dmax(qk, cdiv((double)ss->ca[c], hw->qk_lanes) * dc);
    double cstart = dmax(ds->unit_free, issue);
    double vissue = dmax(kend, cstart + qk) + hw->pipeline_cycles;
    int n = 0;
    reqs_reserve(h, (size_t)rec->n_kept + 1);
    for (int i = 0; i < rec->n_kept; i++) {
        int32_t j = rec->kept[i];
        if (j < R) {
            if (ss->v_fetched[j]) continue;
            ss->v_fetched[j] = 1;
        }
        h->reqs[n++] = (sp_mem_req){j, SP_REGION_V, d};
    }
    double vend = sp_mem_batch(m, h->reqs, n, vissue);
    double comp = compute_cycles(hw, d, ss->ca, ck, ds);
    end_query(ds, issue, comp, kend, vend, tail_cycles(hw, d), 0, (m->busy_bus - bus0) / hw->channels);
    ds->fetch_end = kend; /* the next K stream follows this one; V requests queue in the banks */
    double bytes = (double)(1 + kf + n) * d;
    ds->expect_bytes += bytes;
    ds->n.reram_read_bytes += bytes;
    ds->n.sram_write_bytes += bytes;
    ds->n.sram_read_bytes += (double)d * (1 + nv + rec->n_kept);
    ds->n.qk_macs += (double)nv * d;
    ds->n.v_macs += (double)rec->n_kept * d;
    ds->n.exps += rec->n_kept;
    ds->n.divs += d;
    ds->r.vec_fetched += kf + n;
    ds->r.pairs_qk += nv;
    ds->r.pairs_sv += rec->n_kept;
    ds->r.queries += 1;
}

void sp_sim_head_query(sp_sim_head *h, const sp_query_record *rec) {
    SP_ASSERT(rec->n_mem_kept >= 0 && rec->n_kept >= 0 && rec->n_kept <= rec->n_mem_kept);
    SP_ASSERT(rec->n_visible <= h->n_alloc && rec->pos >= 0 && rec->pos < h->n_alloc);
    /* the SLD split and the residency table need ascending, distinct indices */
    for (int i = 0; i < rec->n_mem_kept; i++)
        SP_ASSERT(rec->mem_kept[i] >= 0 && rec->mem_kept[i] < h->n_alloc && (i == 0 || rec->mem_kept[i] > rec->mem_kept[i - 1]));
    for (int i = 0; i < rec->n_kept; i++)
        SP_ASSERT(rec->kept[i] >= 0 && rec->kept[i] < h->n_alloc && (i == 0 || rec->kept[i] > rec->kept[i - 1]));
    if (rec->pos > h->max_pos) h->max_pos = rec->pos;
    /* workload statistics (adjacent-query overlap of the in-memory survivors) */
    sp_wl_stats *st = &h->st;
    st->queries += 1;
    st->pairs_visible += rec->n_visible;
    st->pairs_kept += rec->n_kept;
    st->pairs_mem_kept += rec->n_mem_kept;
    if (rec->has_score_spread) {
        st->spread_sum += rec->score_spread;
        st->spread_queries += 1;
    }
    if (h->has_prev) {
        int reuse, fetch;
        sp_sld_split(h->prev, h->n_prev, rec->mem_kept, rec->n_mem_kept, &reuse, &fetch);
        st->overlap_pairs += reuse;
        st->new_pairs += fetch;
        st->later_kept += rec->n_mem_kept;
        st->later_visible += rec->n_visible;
    }
    memcpy(h->prev, rec->mem_kept, (size_t)rec->n_mem_kept * sizeof *h->prev);
    h->n_prev = rec->n_mem_kept;
    h->has_prev = 1;
    memcpy(h->last_kept, rec->kept, (size_t)rec->n_kept * sizeof *h->last_kept);
    h->n_last_kept = rec->n_kept;
    for (int s = 0; s < SP_SIZE_COUNT; s++) {
        if (!(h->mask & (1u << s))) continue;
        size_state *ss = &h->s[s];
        counts_list(rec->mem_kept, rec->n_mem_kept, h->hw[s].corelets, ss->cm);
        counts_list(rec->kept, rec->n_kept, h->hw[s].corelets, ss->ck);
        sprint_query(h, s, SP_DESIGN_SPRINT_NOREUSE, rec, ss->cm, ss->ck);
        sprint_query(h, s, SP_DESIGN_SPRINT, rec, ss->cm, ss->ck);
        pruning_query(h, s, rec, ss->ck);
    }
}

/* ---- regular designs, generated from the shape -------------------------------------------- */
/* Keys of an iso-buffer baseline that stay on chip (fetched once) out of nkeys (issue 7,
 * chip.baseline_dataflow): restream keeps all of them when every key fits the per-CORELET
 * buffers and none otherwise; partial keeps the first cap*C keys (token-interleaved, so every
 * CORELET holds cap of them) and streams the rest per query. */
long sp_sim_baseline_resident(const sp_hw *hw, long nkeys, int cap) {
    long all = (long)cap * hw->corelets;
    if (hw->baseline_dataflow == 1) return nkeys < all ? nkeys : all;
    return (nkeys + hw->corelets - 1) / hw->corelets <= cap ? nkeys : 0;
}

/* baseline-paper (masked=0) and mask-only (masked=1): per query, Q, then the (visible) K and V
 * that are not resident stream in; resident keys (sp_sim_baseline_resident) are fetched the
 * first time a query needs them. masked=1 drops padded queries and keys and, for causal
 * heads, the keys after the query. */
static void regular_stream(sp_sim_head *h, int s, sp_design D, long n, long nvalid, int causal, int masked) {
    const sp_hw *hw = &h->hw[s];
    size_state *ss = &h->s[s];
    dstate *ds = &ss->d[D];
    sp_mem *m = &ss->mem[D];
    int d = h->sh.d, C = hw->corelets;
    long nq = masked ? nvalid : n, nkeys = masked ? nvalid : n;
    long R = sp_sim_baseline_resident(hw, nkeys, ss->cap);
    /* the analytical model only for long streams; resident K/V mean a few vectors per query */
    int event = n <= hw->event_max_keys || R >= nkeys;
    double tail = tail_cycles(hw, d);
    for (long i = 0; i < nq; i++) {
        long nvis = masked && causal ? (i + 1 < nvalid ? i + 1 : nvalid) : nkeys;
        /* resident keys not yet on chip: [from, once_to); streamed keys: [R, nvis) */
        long from = ds->prefix_fetched, once_to = nvis < R ? nvis : R;
        long n_once = once_to > from ? once_to - from : 0, n_str = nvis > R ? nvis - R : 0;
        double issue = dmax(ds->fetch_issue, ended_before(ds, 1 + hw->lookahead)), end;
        ds->fetch_issue = issue;
        double bus0 = m->busy_bus;
        if (event) {
            reqs_reserve(h, 2 * (size_t)(n_once + n_str) + 1);
            int r = 0;
            h->reqs[r++] = (sp_mem_req){i, SP_REGION_Q, d};
            for (int kv = 0; kv < 2; kv++) {
                int region = kv ? SP_REGION_V : SP_REGION_K;
                for (long j = from; j < from + n_once; j++) h->reqs[r++] = (sp_mem_req){j, region, d};
                for (long j = R; j < R + n_str; j++) h->reqs[r++] = (sp_mem_req){j, region, d};
            }
            end = sp_mem_batch(m, h->reqs, r, issue);
        } else {
            /* issued together; each stream waits for the channels the previous one holds */
            end = fetch_range(h, m, 0, SP_REGION_Q, i, i + 1, issue);
            for (int kv = 0; kv < 2; kv++) {
                int region = kv ? SP_REGION_V : SP_REGION_K;
                end = dmax(end, fetch_range(h, m, 0, region, from, from + n_once, issue));
                end = dmax(end, fetch_range(h, m, 0, region, R, R + n_str, issue));
            }
        }
        long nf = n_once + n_str;
        if (once_to > ds->prefix_fetched) ds->prefix_fetched = once_to;
        counts_range(nvis, C, ss->ca);
        double comp = compute_cycles(hw, d, ss->ca, ss->ca, ds);
        end_query(ds, issue, comp, end, end, tail, 0, (m->busy_bus - bus0) / hw->channels);
        ds->fetch_end = end;
        double bytes = (double)(1 + 2 * nf) * d;
        ds->expect_bytes += bytes;
        ds->n.reram_read_bytes += bytes;
        ds->n.sram_write_bytes += bytes;
        ds->n.sram_read_bytes += (double)d * (1 + 2 * nvis);
        ds->n.qk_macs += (double)nvis * d;
        ds->n.v_macs += (double)nvis * d;
        ds->n.exps += (double)nvis;
        ds->n.divs += d;
        ds->r.vec_fetched += 2.0 * nf;
        ds->r.pairs_qk += (double)nvis;
        ds->r.pairs_sv += (double)nvis;
        ds->r.queries += 1;
    }
}

/* Tiled baseline: a tile of queries (q + 16-bit accumulators, chip.tiled_query_share of the
 * buffer) stays on chip while every K/V block streams past it once (online softmax); the
 * tile's accumulators are read and written once per block. */
static void tiled(sp_sim_head *h, int s, sp_design D, long n) {
    const sp_hw *hw = &h->hw[s];
    size_state *ss = &h->s[s];
    dstate *ds = &ss->d[D];
    sp_mem *m = &ss->mem[D];
    int d = h->sh.d, C = hw->corelets;
    long tile, block;
    sp_sim_tiled_geometry(hw, d, &tile, &block);
    SP_ASSERT(tile >= 1 && block >= 1);
    /* K/V held on chip either in the block region or, like baseline-paper, in the whole buffer */
    int fits = n <= block || (n + C - 1) / C <= ss->cap;
    long blocks = fits ? 1 : (n + block - 1) / block;
    int event = n <= hw->event_max_keys || fits;
    double tail = tail_cycles(hw, d);
    counts_range(n, C, ss->ca);
    for (long q0 = 0; q0 < n; q0 += tile) {
        long nt = q0 + tile < n ? tile : n - q0;
        long from = fits ? ds->prefix_fetched : 0;
        double issue = dmax(ds->fetch_issue, ended_before(ds, 1 + hw->lookahead)), end;
        ds->fetch_issue = issue;
        double bus0 = m->busy_bus;
        if (event) {
            long nk = n - from;
            reqs_reserve(h, (size_t)(nt + 2 * nk));
            int r = 0;
            for (long i = 0; i < nt; i++) h->reqs[r++] = (sp_mem_req){q0 + i, SP_REGION_Q, d};
            for (long j = from; j < n; j++) h->reqs[r++] = (sp_mem_req){j, SP_REGION_K, d};
            for (long j = from; j < n; j++) h->reqs[r++] = (sp_mem_req){j, SP_REGION_V, d};
            end = sp_mem_batch(m, h->reqs, r, issue);
        } else {
            end = fetch_range(h, m, 0, SP_REGION_Q, q0, q0 + nt, issue);
            end = dmax(end, fetch_range(h, m, 0, SP_REGION_K, from, n, issue));
            end = dmax(end, fetch_range(h, m, 0, SP_REGION_V, from, n, issue));
        }
        long nf = n - from;
        if (fits) ds->prefix_fetched = n;
        double comp = 0;
        for (long i = 0; i < nt; i++) comp += compute_cycles(hw, d, ss->ca, ss->ca, ds);
        end_query(ds, issue, comp, end, end, tail, 0, (m->busy_bus - bus0) / hw->channels);
        ds->fetch_end = end;
        double bytes = (double)(nt + 2 * nf) * d;
        ds->expect_bytes += bytes;
        ds->n.reram_read_bytes += bytes;
        ds->n.sram_write_bytes += bytes + (double)nt * blocks * (2.0 * d + 8);
        ds->n.sram_read_bytes += (double)nt * ((double)d * (1 + 2 * n) + blocks * (2.0 * d + 8));
        ds->n.qk_macs += (double)nt * n * d;
        ds->n.v_macs += (double)nt * n * d;
        ds->n.exps += (double)nt * n;
        ds->n.divs += (double)nt * d;
        ds->r.vec_fetched += 2.0 * nf;
        ds->r.pairs_qk += (double)nt * n;
        ds->r.pairs_sv += (double)nt * n;
        ds->r.queries += (double)nt;
    }
}

static int is_regular(int D) { return D == SP_DESIGN_BASELINE || D == SP_DESIGN_TILED || D == SP_DESIGN_MASK_ONLY; }

void sp_sim_regular_results(const sp_hw *hw, unsigned sizes_mask, const sp_head_shape *shape,
                            sp_design_result reg[][SP_DESIGN_COUNT]) {
    sp_sim_head *h = sp_sim_head_create(hw, sizes_mask, shape);
    memset(reg, 0, SP_SIZE_COUNT * sizeof *reg);
    sp_sim_head_finish(h, 1.0, reg, NULL); /* no records: only the regular designs are meaningful */
    sp_sim_head_free(h);
    for (int s = 0; s < SP_SIZE_COUNT; s++)
        for (int D = 0; D < SP_DESIGN_COUNT; D++)
            if (!is_regular(D)) memset(&reg[s][D], 0, sizeof reg[s][D]);
}

void sp_sim_head_use_regular(sp_sim_head *h, const sp_design_result (*reg)[SP_DESIGN_COUNT]) {
    SP_ASSERT(!h->dynamic); /* a trace learns its shape from the records */
    h->reg = reg;
}

void sp_sim_head_finish(sp_sim_head *h, double scale, sp_design_result res[][SP_DESIGN_COUNT], sp_wl_stats *stats) {
    long n = h->dynamic ? h->max_pos + 1 : h->sh.n_k;
    long nvalid = h->dynamic ? n : h->sh.n_valid;
    int d = h->sh.d;
    for (int s = 0; s < SP_SIZE_COUNT; s++) {
        if (!(h->mask & (1u << s))) continue;
        size_state *ss = &h->s[s];
        if (n > 0 && !h->reg) {
            /* baseline-paper: the dataflow of chip.baseline_dataflow, with or without the
             * masked pairs (chip.baseline_masked_pairs) */
            if (h->hw[s].baseline_dataflow == 2) tiled(h, s, SP_DESIGN_BASELINE, n);
            else regular_stream(h, s, SP_DESIGN_BASELINE, n, nvalid, h->sh.causal, !h->hw[s].baseline_masked);
            regular_stream(h, s, SP_DESIGN_MASK_ONLY, n, nvalid, h->sh.causal, 1);
            tiled(h, s, SP_DESIGN_TILED, n);
        }
        if (n > 0) {
            /* pruning design scoring padded pairs: the padded queries (after the valid tokens),
             * which the functional op does not record, keep what the last valid query kept */
            if (pruning_scores_all(&h->hw[s]))
                for (long i = nvalid; i < n; i++) {
                    sp_query_record pq = {.pos = (int)i, .n_k = (int)n, .n_visible = (int)nvalid,
                                          .n_mem_kept = h->n_last_kept, .mem_kept = h->last_kept,
                                          .n_kept = h->n_last_kept, .kept = h->last_kept};
                    counts_list(pq.kept, pq.n_kept, h->hw[s].corelets, ss->ck);
                    pruning_query(h, s, &pq, ss->ck);
                }
        }
        for (int D = 0; D < SP_DESIGN_COUNT; D++) {
            if (h->reg && is_regular(D)) {
                sp_design_result_add(&res[s][D], &h->reg[s][D], scale);
                continue;
            }
            dstate *ds = &ss->d[D];
            sp_mem *m = &ss->mem[D];
            /* traffic equals the bytes of the requests the memory served, every request is one
             * d-byte vector, and the bytes read are those plus the pruning vectors (bug otherwise) */
            SP_ASSERT(fabs(ds->expect_bytes - m->bytes) < 0.5);
            SP_ASSERT(fabs(m->bytes - m->requests * d) < 0.5);
            SP_ASSERT(fabs(ds->n.reram_read_bytes - (m->bytes + ds->readp_bytes)) < 0.5);
            ds->n.reram_write_bytes = 3.0 * (double)n * d; /* Q, K, V written once per sequence */
            sp_design_result *r = &ds->r;
            r->cycles = ds->comp_end;
            sp_energy_from_counts(&h->hw[s], &ds->n, r->energy_pj, &r->write_once_pj);
            /* the total by kind of event; sp_design_result_check compares the breakdown with it */
            r->energy_pj_total = sp_energy_total_by_event(&h->hw[s], &ds->n);
            r->bytes_read = ds->n.reram_read_bytes;
            r->bytes_readp = ds->readp_bytes;
            r->bytes_written = ds->n.reram_write_bytes;
            r->requests = m->requests;
            r->row_hits = m->hits;
            r->row_misses = m->misses;
            r->row_conflicts = m->conflicts;
            r->busy_bus = m->busy_bus;
            sp_design_result_check(r);
            sp_design_result_add(&res[s][D], r, scale);
        }
    }
    if (stats) {
        const double *a = (const double *)&h->st;
        double *b = (double *)stats;
        for (size_t i = 0; i < sizeof h->st / sizeof(double); i++) b[i] += a[i];
    }
}

/* ---- observer for ops run by someone else ------------------------------------------------- */
typedef struct obs_slot {
    sp_sim_head *cur;
    long long seq;
    long long instances; /* head instances finished: (sequence window) of this (layer, head) */
    sp_design_result res[SP_SIZE_COUNT][SP_DESIGN_COUNT];
    sp_wl_stats st;
} obs_slot;

struct sp_sim_observer {
    sp_hw hw[SP_SIZE_COUNT];
    unsigned mask;
    int n_layers, n_heads, d, causal, max_keys;
    obs_slot *slots;
};

sp_sim_observer *sp_sim_observer_create(const sp_hw *hw, unsigned sizes_mask, int n_layers, int n_heads, int d,
                                        int causal) {
    sp_sim_observer *o = sp_xcalloc(1, sizeof *o);
    memcpy(o->hw, hw, sizeof o->hw);
    o->mask = sizes_mask;
    o->n_layers = n_layers;
    o->n_heads = n_heads;
    o->d = d;
    o->causal = causal;
    o->slots = sp_xcalloc((size_t)n_layers * (size_t)n_heads, sizeof *o->slots);
    return o;
}

static void slot_close(sp_sim_observer *o, obs_slot *sl) {
    if (!sl->cur) return;
    sl->instances++;
    sp_sim_head_finish(sl->cur, 1.0, sl->res, &sl->st);
    sp_sim_head_free(sl->cur);
    sl->cur = NULL;
    (void)o;
}

void sp_sim_observer_fn(void *user, const sp_query_record *rec) {
    sp_sim_observer *o = user;
    SP_ASSERT(rec->layer >= 0 && rec->layer < o->n_layers && rec->head >= 0 && rec->head < o->n_heads);
    obs_slot *sl = &o->slots[rec->layer * o->n_heads + rec->head];
    if (sl->cur && (sl->seq != rec->seq_id || rec->n_k > sl->cur->n_alloc)) slot_close(o, sl);
    if (!sl->cur) {
        sp_head_shape sh = {.n_k = rec->n_k, .d = o->d, .causal = o->causal, .n_valid = rec->n_k};
        sl->cur = sp_sim_head_create(o->hw, o->mask, &sh);
        sl->cur->dynamic = 1;
        sl->seq = rec->seq_id;
    }
    sp_sim_head_query(sl->cur, rec);
}

void sp_sim_observer_finish(sp_sim_observer *o, double scale, sp_design_result res[][SP_DESIGN_COUNT],
                            sp_wl_stats *stats) {
    sp_sim_observer_finish_heads(o, scale, res, stats, NULL);
}

void sp_sim_observer_finish_heads(sp_sim_observer *o, double scale, sp_design_result res[][SP_DESIGN_COUNT],
                                  sp_wl_stats *stats, sp_wl_stats *per_head) {
    int n = o->n_layers * o->n_heads;
    for (int i = 0; i < n; i++) {
        obs_slot *sl = &o->slots[i];
        slot_close(o, sl);
        for (int s = 0; s < SP_SIZE_COUNT; s++)
            for (int D = 0; D < SP_DESIGN_COUNT; D++) sp_design_result_add(&res[s][D], &sl->res[s][D], scale);
        if (stats) {
            const double *a = (const double *)&sl->st;
            double *b = (double *)stats;
            for (size_t k = 0; k < sizeof sl->st / sizeof(double); k++) b[k] += a[k];
        }
        if (per_head) {
            const double *a = (const double *)&sl->st;
            double *b = (double *)&per_head[i];
            for (size_t k = 0; k < sizeof sl->st / sizeof(double); k++) b[k] += a[k];
        }
        memset(sl->res, 0, sizeof sl->res);
        memset(&sl->st, 0, sizeof sl->st);
    }
}

long long sp_sim_observer_instances(const sp_sim_observer *o) {
    long long n = 0;
    for (int i = 0; i < o->n_layers * o->n_heads; i++) n += o->slots[i].instances + (o->slots[i].cur != NULL);
    return n;
}

void sp_sim_observer_free(sp_sim_observer *o) {
    if (!o) return;
    for (int i = 0; i < o->n_layers * o->n_heads; i++) sp_sim_head_free(o->slots[i].cur);
    free(o->slots);
    free(o);
}
