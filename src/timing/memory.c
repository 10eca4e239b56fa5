/* memory.c: ReRAM main-memory event model and analytical stream model (paper section 2.2-2.3).
 *
 * Mapping: vector v of a region goes to bank g = v mod (channels*banks), channel g mod
 * channels, so adjacent keys land in different banks and channels (paper section 2.2 [K]).
 * Within a bank, consecutive slots share a row (row_bytes / vector bytes per row); regions
 * (K, V, Q) occupy disjoint rows. ReRAM reads are non-destructive, so a row switch costs tRP
 * (small) + tRCD; there is no refresh. */
#include "timing/memory.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"

void sp_mem_init(sp_mem *m, const sp_hw *hw) {
    memset(m, 0, sizeof *m);
    m->hw = hw;
    m->nb = hw->channels * hw->banks;
    m->bank_ready = sp_xcalloc((size_t)m->nb, sizeof *m->bank_ready);
    m->open_row = sp_xmalloc((size_t)m->nb, sizeof *m->open_row);
    for (int i = 0; i < m->nb; i++) m->open_row[i] = -1;
    m->bus_free = sp_xcalloc((size_t)hw->channels, sizeof *m->bus_free);
    m->sbank = sp_xmalloc((size_t)m->nb, sizeof *m->sbank);
    for (int i = 0; i < m->nb; i++) m->sbank[i] = -1; /* every batch leaves the lists empty */
    m->sbmask = sp_xcalloc((size_t)m->nb, sizeof *m->sbmask); /* every batch leaves the masks empty */
    m->c_bytes = -1;
    m->ch_mask = (hw->channels & (hw->channels - 1)) ? -1 : hw->channels - 1;
}

void sp_mem_free(sp_mem *m) {
    if (!m) return;
    free(m->bank_ready);
    free(m->open_row);
    free(m->bus_free);
    free(m->snext);
    free(m->sprev);
    free(m->spend);
    free(m->shit);
    free(m->sbank);
    free(m->sbmask);
    free(m->sg);
    free(m->srow);
    free(m->srid);
    memset(m, 0, sizeof *m);
}

double sp_mem_burst(const sp_hw *hw, int bytes) {
    /* DDR: two beats per memory clock, so a burst of b beats holds the bus b/2 memory clocks.
     * Not rounded to whole core cycles (issue 7): 64 B on a 16 B bus at 800 MHz under a 1 GHz
     * core is 2.5 core cycles, and the interface delivers its documented bandwidth. Times are
     * doubles; with the default clocks every time is a multiple of 1/8 core cycle, exact in
     * binary floating point. */
    long beats = (bytes + hw->bus_bytes - 1) / hw->bus_bytes;
    return 0.5 * (double)beats * hw->mem_cycle;
}

/* Bytes per core cycle the interface delivers when every channel streams (its effective
 * bandwidth in B/cycle; x chip clock in GHz = GB/s). */
double sp_mem_bandwidth(const sp_hw *hw) { return hw->channels * 2.0 * hw->bus_bytes / hw->mem_cycle; }

void sp_mem_map(const sp_hw *hw, const sp_mem_req *r, int *bank, int *channel, long long *row) {
    int nb = hw->channels * hw->banks;
    int g = (int)(r->vec % nb);
    long slot = r->vec / nb;
    int vpr = hw->row_bytes / r->bytes;
    SP_ASSERT(vpr >= 1);
    *bank = g;
    *channel = g % hw->channels;
    *row = ((long long)r->region << 40) + slot / vpr;
}

static double dmax(double a, double b) { return a > b ? a : b; }

/* log2(x) when x is a power of two, else -1 (the mapping's divisions become shifts). */
static int pow2_shift(long x) {
    if (x <= 0 || (x & (x - 1))) return -1;
    return __builtin_ctzl((unsigned long)x);
}

/* A batch works on local copies of the memory's counters (batch_acc), stored back at its end,
 * so that they stay in registers; a single access loads and stores them around one
 * acc_access. The struct holds scalars only (an array indexed by the access kind kept the whole
 * struct on the stack), and the scheduler's loops copy it into a local of their own, so that
 * the compiler may keep its fields in registers (GCC 12 still spills a few integer counters
 * of the ring loop, as plain adds to the stack; docs/RESULTS.md part 9x). The event counters are integers
 * while the batch runs: every count is an integer below 2^53, so adding k ones to a double one
 * at a time or adding k at the end give the same bits; the bus time is a sum of non-integers
 * and is added request by request, as are the maxima. */
typedef struct batch_acc {
    double ready_max, busy_bus, last;
    long long requests, misses, conflicts, bytes; /* this batch's; its row hits are the rest */
} batch_acc;

static void acc_load(batch_acc *a, const sp_mem *m, double t) { *a = (batch_acc){m->bank_ready_max, m->busy_bus, t, 0, 0, 0, 0}; }

static void acc_store(const batch_acc *a, sp_mem *m) {
    m->bank_ready_max = a->ready_max;
    m->hits += (double)(a->requests - a->misses - a->conflicts), m->misses += (double)a->misses,
        m->conflicts += (double)a->conflicts;
    m->busy_bus = a->busy_bus;
    m->requests += (double)a->requests;
    m->bytes += (double)a->bytes;
}

/* Sets m's cached costs for vectors of `bytes` (c_burst, c_col, c_lat, c_occ). */
static void set_costs(sp_mem *m, int bytes) {
    const sp_hw *hw = m->hw;
    m->c_bytes = bytes;
    m->c_burst = sp_mem_burst(hw, bytes);
    m->c_col = dmax(hw->t_ccd_cyc, m->c_burst);
    m->c_lat[0] = hw->t_cl_cyc;
    m->c_lat[1] = hw->t_rcd_cyc + hw->t_cl_cyc;
    m->c_lat[2] = hw->t_rp_cyc + hw->t_rcd_cyc + hw->t_cl_cyc;
    m->c_occ[0] = m->c_col;
    m->c_occ[1] = hw->t_rcd_cyc + m->c_col;
    m->c_occ[2] = hw->t_rp_cyc + hw->t_rcd_cyc + m->c_col;
}

/* One access to bank g (channel ch) row `row` of `bytes` issued at t: returns the cycle at
 * which its last byte has arrived (sp_mem_access). A row hit costs tCL and holds the bank for
 * one column slot; a miss (bank closed) adds tRCD; a conflict (another row open) adds tRP
 * before it (the tables c_lat, c_occ hold the three sums). */
static inline double acc_access(sp_mem *m, batch_acc *a, int g, int ch, long long row, int bytes, double t) {
    if (bytes != m->c_bytes) set_costs(m, bytes);
    double burst = m->c_burst;
    long long open = m->open_row[g];
    int kind = (open != row) * (1 + (open >= 0)); /* 0 hit, 1 miss, 2 conflict (rows are >= 0) */
    double start = dmax(t, m->bank_ready[g]);
    a->requests++;
    a->misses += kind == 1;
    a->conflicts += kind == 2;
    m->open_row[g] = row;
    double ready = start + m->c_occ[kind];
    m->bank_ready[g] = ready;
    a->ready_max = dmax(a->ready_max, ready);
    double data = dmax(start + m->c_lat[kind], m->bus_free[ch]);
    double done = data + burst;
    m->bus_free[ch] = done;
    a->busy_bus += burst;
    a->bytes += bytes;
    a->last = dmax(a->last, done);
    return done;
}

/* One access to bank g (channel ch) row `row` of `bytes` issued at t. */
static double access_mapped(sp_mem *m, int g, int ch, long long row, int bytes, double t) {
    batch_acc a;
    acc_load(&a, m, t);
    double done = acc_access(m, &a, g, ch, row, bytes, t);
    acc_store(&a, m);
    return done;
}

double sp_mem_access(sp_mem *m, const sp_mem_req *r, double t) {
    int g, ch;
    long long row;
    sp_mem_map(m->hw, r, &g, &ch, &row);
    return access_mapped(m, g, ch, row, r->bytes, t);
}

/* Grows the batch scratch arrays to hold n requests. */
static void scratch(sp_mem *m, int n) {
    if (m->scratch_n >= n) return;
    free(m->sg);
    free(m->srow);
    free(m->srid);
    free(m->snext);
    free(m->sprev);
    free(m->spend);
    free(m->shit);
    m->scratch_n = n + n / 2 + 16;
    size_t w = (size_t)(m->scratch_n + 63) / 64;
    m->snext = sp_xmalloc((size_t)m->scratch_n, sizeof *m->snext);
    m->sprev = sp_xmalloc((size_t)m->scratch_n, sizeof *m->sprev);
    m->sg = sp_xmalloc((size_t)m->scratch_n, sizeof *m->sg);
    m->srow = sp_xmalloc((size_t)m->scratch_n, sizeof *m->srow);
    m->srid = sp_xmalloc((size_t)m->scratch_n, sizeof *m->srid);
    m->spend = sp_xmalloc(w, sizeof *m->spend);
    m->shit = sp_xmalloc(w, sizeof *m->shit);
}

/* Appends a request about to be served to plan (when not NULL), with its bank's open row. */
static inline void plan_push(sp_mem_plan *plan, const sp_mem *m, int g, long long row, int bytes) {
    if (!plan) return;
    if (plan->n == plan->cap) {
        int cap = plan->cap ? 2 * plan->cap : 256;
        sp_mem_pick *p = sp_xmalloc((size_t)cap, sizeof *p);
        if (plan->n) memcpy(p, plan->picks, (size_t)plan->n * sizeof *p);
        free(plan->picks);
        plan->picks = p;
        plan->cap = cap;
    }
    plan->picks[plan->n++] = (sp_mem_pick){row, m->open_row[g], g, bytes};
}

/* Batches that need no scheduling (empty, FCFS, or a one-entry queue) in arrival order: returns
 * 1 and sets *last when it served the batch, 0 when FR-FCFS must pick. */
static int batch_in_order(sp_mem *m, const sp_mem_req *reqs, int n, double t, double *last, sp_mem_plan *plan) {
    *last = t;
    if (n > 0 && m->hw->frfcfs && m->hw->queue_depth > 1) return 0;
    for (int i = 0; i < n; i++) {
        int g, ch;
        long long row;
        sp_mem_map(m->hw, &reqs[i], &g, &ch, &row);
        plan_push(plan, m, g, row, reqs[i].bytes);
        *last = dmax(*last, sp_mem_access(m, &reqs[i], t));
    }
    return 1;
}

/* Reference FR-FCFS: scans the first queue_depth waiting requests for each pick. */
double sp_mem_batch_reference(sp_mem *m, const sp_mem_req *reqs, int n, double t, sp_mem_plan *plan) {
    double last;
    if (plan) plan->n = 0;
    if (batch_in_order(m, reqs, n, t, &last, plan)) return last;
    scratch(m, n);
    /* pending requests as a linked list in arrival order, so skipping served ones is free */
    int *nx = m->snext;
    for (int i = 0; i < n; i++) {
        int ch;
        sp_mem_map(m->hw, &reqs[i], &m->sg[i], &ch, &m->srow[i]);
        nx[i] = i + 1;
    }
    int head = 0, q = m->hw->queue_depth;
    while (head < n) {
        /* FR-FCFS: within the first q waiting requests, the oldest row hit, else the oldest. */
        int pick = head, prev = -1, pick_prev = -1, seen = 0;
        for (int i = head; i < n && seen < q; prev = i, i = nx[i]) {
            seen++;
            if (m->open_row[m->sg[i]] == m->srow[i]) {
                pick = i;
                pick_prev = prev;
                break;
            }
        }
        if (pick == head) head = nx[head];
        else nx[pick_prev] = nx[pick];
        int g = m->sg[pick];
        int ch = m->ch_mask >= 0 ? g & m->ch_mask : g % m->hw->channels;
        plan_push(plan, m, g, m->srow[pick], reqs[pick].bytes);
        last = dmax(last, access_mapped(m, g, ch, m->srow[pick], reqs[pick].bytes, t));
    }
    return last;
}


/* The scheduler's window (the first queue_depth waiting requests of a batch) in one of two
 * forms, both giving the reference's order (sp_mem_batch_reference):
 *
 * Scan (queues of up to 64 requests, batches of at most SP_RING_ROWS distinct rows): the
 * batch is read in arrival order; row hits are served as they arrive, non-hits wait in a
 * 64-slot ring W with masks per bank (m->sbmask) and per distinct row (rmask), see
 * frfcfs_scan. (Part 9o's ring window, which kept every admitted request in a ring indexed by
 * arrival and moved requests passed by 64 places to a side list, is replaced by it:
 * docs/RESULTS.md part 9z.r.)
 *
 * Lists (the general form, any window): bitmaps over the whole batch of waiting and row-hit
 * requests plus one list per bank; an access changes only its bank's open row, so only that
 * bank's entries are re-flagged. The window's row hits are counted, so a pick finds the
 * oldest hit only when there is one. */
enum { SP_RING_ROWS = 64 };

/* Serves a batch with the list window. */
static void frfcfs_lists(sp_mem *m, const sp_mem_req *reqs, int n, double t, sp_mem_plan *plan, batch_acc *acc) {
    batch_acc a = *acc; /* a local the loop keeps in registers (batch_acc) */
    uint64_t *pend = m->spend, *hit = m->shit;
    int *bn = m->snext, *bp = m->sprev, *bh = m->sbank;
    const int *sg = m->sg;
    const long long *srow = m->srow;
    const long long *open_row = m->open_row;
    const int q = m->hw->queue_depth, ch_mask = m->ch_mask, channels = m->hw->channels;
    int words = (n + 63) / 64;
    memset(pend, 0, (size_t)words * sizeof *pend);
    memset(hit, 0, (size_t)words * sizeof *hit);
    /* bh: every bank's list is empty here (set at init; a batch unlinks every request it admits) */
    int wend = 0, wc = 0, nhit = 0, w0 = 0;
    for (;;) {
        while (wc < q && wend < n) { /* admit the next request into the window */
            int i = wend++, g = sg[i];
            pend[i >> 6] |= 1ull << (i & 63);
            if (open_row[g] == srow[i]) hit[i >> 6] |= 1ull << (i & 63), nhit++;
            bp[i] = -1;
            bn[i] = bh[g];
            if (bh[g] >= 0) bp[bh[g]] = i;
            bh[g] = i;
            wc++;
        }
        if (wc == 0) break;
        while (!pend[w0]) w0++; /* hits are waiting requests: none before w0 */
        int pick;
        if (nhit > 0) { /* the oldest row hit */
            int w = w0;
            while (!hit[w]) w++;
            pick = w * 64 + __builtin_ctzll(hit[w]);
            hit[w] &= ~(1ull << (pick & 63));
            nhit--;
        } else { /* the oldest */
            pick = w0 * 64 + __builtin_ctzll(pend[w0]);
        }
        int g = sg[pick];
        pend[pick >> 6] &= ~(1ull << (pick & 63));
        if (bp[pick] >= 0) bn[bp[pick]] = bn[pick]; else bh[g] = bn[pick];
        if (bn[pick] >= 0) bp[bn[pick]] = bp[pick];
        wc--;
        int ch = ch_mask >= 0 ? g & ch_mask : g % channels;
        long long row = srow[pick];
        int changed = open_row[g] != row;
        plan_push(plan, m, g, row, reqs[pick].bytes);
        acc_access(m, &a, g, ch, row, reqs[pick].bytes, t);
        if (changed) /* the bank's open row changed: re-flag its waiting requests */
            for (int e = bh[g]; e >= 0; e = bn[e]) {
                uint64_t bit = 1ull << (e & 63);
                int was = (hit[e >> 6] & bit) != 0, is = srow[e] == row;
                if (is) hit[e >> 6] |= bit;
                else hit[e >> 6] &= ~bit;
                nhit += is - was;
            }
    }
    *acc = a;
}

static inline uint64_t ror64(uint64_t x, int k) { return (x >> k) | (x << ((64 - k) & 63)); } /* k in [0, 63] */

/* Serves a batch by scanning it in arrival order (queues of up to 64 requests, batches of at
 * most SP_RING_ROWS distinct rows; srid[i] < SP_RING_ROWS). The same order as the reference:
 * the window never holds a row hit when it picks a miss or conflict, because a hit in it
 * would have been picked first; so its waiting requests are all non-hits (the list W, oldest
 * first, at most queue_depth of them) and the next arrivals. While W holds fewer than
 * queue_depth requests, the next arrival is in the window: a hit is the window's oldest hit
 * and is served at once, a non-hit joins W. When W is full (or the batch is all admitted),
 * the window holds no hit, and its oldest, W's first, is served: it opens its row, the rows
 * of the other banks stay, so the new hits are exactly W's requests of that bank and row,
 * which are then the oldest hits (older than any later arrival) and are served in W's order.
 * W's slots are given in arrival order; a bank's and a row's slots are 64-bit masks (bit =
 * slot), so the hits a pick creates are one AND, served in age order by counting trailing
 * zeros from W's first slot. Served requests leave holes in W; when its 64 slots are used up
 * (at most queue_depth - 1 < 64 are live then), the live ones move to slots 0.. in age order
 * and the masks are rebuilt. The first pass only
 * orders the batch, with each request's kind (hit, miss, conflict) and the banks' open rows
 * as the accesses will leave them; the second pass times the accesses in that order. */
static inline __attribute__((always_inline)) void frfcfs_scan_impl(sp_mem *m, const sp_mem_req *reqs, int n, double t,
                                                                    sp_mem_plan *plan, batch_acc *acc, int nrows, const int with_plan) {
    const int *sg = m->sg, *srid = m->srid;
    const long long *srow = m->srow;
    long long *open_row = m->open_row;
    uint64_t rmask[SP_RING_ROWS], *bmask = m->sbmask; /* W's slots of each row, of each bank */
    int *order = m->snext; /* request index << 2 | kind, in the order served */
    const int q = m->hw->queue_depth;
    /* W: slots wh..wt-1 (mod 64) in age order, live ones in `live`; removed ones leave holes,
     * squeezed out when the 64 slots are used up */
    int w[64], wh = 0, wt = 0, nw = 0;
    uint64_t live = 0;
    memset(rmask, 0, (size_t)nrows * sizeof *rmask);
    int a = 0, no = 0;
    for (;;) {
        while (nw < q && a < n) { /* the next arrival: served if a hit, else into W */
            if (wt - wh == 64) { /* no free slot: W's nw < 64 requests to slots 0.. in age order */
                int k = 0, tmp[64];
                for (int e = wh; e < wt; e++)
                    if (live >> (e & 63) & 1) tmp[k++] = w[e & 63];
                live = 0;
                for (int e = 0; e < k; e++) bmask[sg[tmp[e]]] = 0, rmask[srid[tmp[e]]] = 0;
                for (int e = 0; e < k; e++) {
                    w[e] = tmp[e];
                    live |= 1ull << e;
                    bmask[sg[tmp[e]]] |= 1ull << e;
                    rmask[srid[tmp[e]]] |= 1ull << e;
                }
                wh = 0;
                wt = k;
            }
            int i = a++, g = sg[i];
            int hit = open_row[g] == srow[i];
            if (with_plan && hit) plan_push(plan, m, g, srow[i], reqs[i].bytes);
            order[no] = i << 2; /* kind 0: a hit */
            no += hit;
            uint64_t bit = (uint64_t)!hit << (wt & 63);
            w[wt & 63] = i;
            live |= bit;
            bmask[g] |= bit;
            rmask[srid[i]] |= bit;
            wt += !hit;
            nw += !hit;
        }
        if (nw == 0) break;
        int base = wh & 63, i0 = w[base], g0 = sg[i0];
        long long r0 = srow[i0];
        if (with_plan) plan_push(plan, m, g0, r0, reqs[i0].bytes);
        order[no++] = i0 << 2 | (1 + (open_row[g0] >= 0)); /* a miss, or a conflict when a row was open */
        open_row[g0] = r0;
        /* it and W's requests of the row it opens (the oldest hits now), in age order */
        uint64_t ext = bmask[g0] & rmask[srid[i0]], rest = ror64(ext, base) & ~1ull;
        bmask[g0] &= ~ext;
        rmask[srid[i0]] &= ~ext;
        live &= ~ext;
        nw -= __builtin_popcountll(ext);
        while (rest) {
            int x = w[(base + __builtin_ctzll(rest)) & 63];
            if (with_plan) plan_push(plan, m, g0, r0, reqs[x].bytes);
            order[no++] = x << 2;
            rest &= rest - 1;
        }
        wh = live ? wh + __builtin_ctzll(ror64(live, base)) : wt;
    }
    /* the accesses, in that order */
    batch_acc b = *acc; /* a local the loop keeps in registers (batch_acc) */
    const int ch_mask = m->ch_mask, channels = m->hw->channels;
    for (int k = 0; k < no; k++) {
        int i = order[k] >> 2, kind = order[k] & 3, g = sg[i];
        int ch = ch_mask >= 0 ? g & ch_mask : g % channels;
        int bytes = reqs[i].bytes;
        if (bytes != m->c_bytes) set_costs(m, bytes);
        double burst = m->c_burst;
        double start = dmax(t, m->bank_ready[g]);
        b.requests++;
        b.misses += kind == 1;
        b.conflicts += kind == 2;
        double ready = start + m->c_occ[kind];
        m->bank_ready[g] = ready;
        b.ready_max = dmax(b.ready_max, ready);
        double data = dmax(start + m->c_lat[kind], m->bus_free[ch]);
        double done = data + burst;
        m->bus_free[ch] = done;
        b.busy_bus += burst;
        b.bytes += bytes;
        b.last = dmax(b.last, done);
    }
    *acc = b;
}

/* The two instances, each a function of its own (inlined into the caller, they spilled their
 * loop variables to the stack), and the same two with BMI1/BMI2 (shifts by a register without
 * CL: shlx / sarx; blsr): the same integer and double operations (no FMA or VEX), so the same
 * schedule and times; with batch_plan_bmi below, 5-12% less time per request in
 * bench_mem_batch (docs/RESULTS.md part 9z.w.6). Chosen per batch by sp_cpu_has_bmi12() (a
 * cached flag); SPRINT_CPU=portable keeps the plain ones. */
static __attribute__((noinline)) void frfcfs_scan_plan(sp_mem *m, const sp_mem_req *reqs, int n, double t, sp_mem_plan *plan,
                                                       batch_acc *acc, int nrows) {
    frfcfs_scan_impl(m, reqs, n, t, plan, acc, nrows, 1);
}

static __attribute__((noinline)) void frfcfs_scan_noplan(sp_mem *m, const sp_mem_req *reqs, int n, double t, batch_acc *acc, int nrows) {
    frfcfs_scan_impl(m, reqs, n, t, NULL, acc, nrows, 0);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define SP_BMI __attribute__((noinline, target("bmi,bmi2")))
static SP_BMI void frfcfs_scan_plan_bmi(sp_mem *m, const sp_mem_req *reqs, int n, double t, sp_mem_plan *plan,
                                        batch_acc *acc, int nrows) {
    frfcfs_scan_impl(m, reqs, n, t, plan, acc, nrows, 1);
}

static SP_BMI void frfcfs_scan_noplan_bmi(sp_mem *m, const sp_mem_req *reqs, int n, double t, batch_acc *acc, int nrows) {
    frfcfs_scan_impl(m, reqs, n, t, NULL, acc, nrows, 0);
}
#endif

static inline __attribute__((always_inline)) void frfcfs_scan(sp_mem *m, const sp_mem_req *reqs, int n, double t,
                                                               sp_mem_plan *plan, batch_acc *acc, int nrows, const int bmi) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (bmi) {
        if (plan) frfcfs_scan_plan_bmi(m, reqs, n, t, plan, acc, nrows);
        else frfcfs_scan_noplan_bmi(m, reqs, n, t, acc, nrows);
        return;
    }
#else
    (void)bmi;
#endif
    if (plan) frfcfs_scan_plan(m, reqs, n, t, plan, acc, nrows);
    else frfcfs_scan_noplan(m, reqs, n, t, acc, nrows);
}

/* Fast FR-FCFS, same schedule as sp_mem_batch_reference (the scan, else the lists); bmi: the
 * scan's BMI instance (a constant after inlining into the two instances below). */
static inline __attribute__((always_inline)) double batch_plan_impl(sp_mem *m, const sp_mem_req *reqs, int n, double t,
                                                                    sp_mem_plan *plan, const int bmi) {
    if (plan) plan->n = 0;
    batch_acc acc;
    if (n <= 1 || !m->hw->frfcfs || m->hw->queue_depth <= 1) { /* in arrival order */
        acc_load(&acc, m, t);
        for (int i = 0; i < n; i++) {
            int g, ch;
            long long row;
            sp_mem_map(m->hw, &reqs[i], &g, &ch, &row);
            plan_push(plan, m, g, row, reqs[i].bytes);
            acc_access(m, &acc, g, ch, row, reqs[i].bytes, t);
        }
        acc_store(&acc, m);
        return acc.last;
    }
    scratch(m, n);
    int *sg = m->sg, *srid = m->srid;
    long long *srow = m->srow;
    /* same mapping as sp_mem_map, with one division for bank and slot and the vectors-per-row
     * quotient cached across requests of equal size; each distinct row gets an index (the last
     * two rows are tried first: a batch of K and V alternates between two rows) */
    const long nbl = m->nb;
    int last_bytes = -1;
    long vpr = 1;
    int nb_sh = pow2_shift(nbl), vpr_sh = -1;
    long long rows[SP_RING_ROWS], r0 = -1, r1 = -1;
    int nrows = 0, id0 = -1, id1 = -1, ring = m->hw->queue_depth <= 64;
    for (int i = 0; i < n; i++) {
        if (reqs[i].bytes != last_bytes) {
            last_bytes = reqs[i].bytes;
            vpr = m->hw->row_bytes / last_bytes;
            SP_ASSERT(vpr >= 1);
            vpr_sh = pow2_shift(vpr);
        }
        long slot = nb_sh >= 0 ? reqs[i].vec >> nb_sh : reqs[i].vec / nbl; /* vec >= 0 */
        sg[i] = (int)(reqs[i].vec - slot * nbl);
        long long row = ((long long)reqs[i].region << 40) + (vpr_sh >= 0 ? slot >> vpr_sh : slot / vpr);
        srow[i] = row;
        if (!ring) continue;
        int id;
        if (row == r0) id = id0;
        else {
            if (row == r1) id = id1;
            else {
                id = 0;
                while (id < nrows && rows[id] != row) id++;
                if (id == nrows) {
                    if (nrows == SP_RING_ROWS) {
                        ring = 0;
                        continue;
                    }
                    rows[nrows++] = row;
                }
            }
            r1 = r0, id1 = id0, r0 = row, id0 = id;
        }
        srid[i] = id;
    }
    acc_load(&acc, m, t);
    if (ring) frfcfs_scan(m, reqs, n, t, plan, &acc, nrows, bmi);
    else frfcfs_lists(m, reqs, n, t, plan, &acc);
    acc_store(&acc, m);
    return acc.last;
}

#if defined(__x86_64__) && defined(__GNUC__)
static SP_BMI double batch_plan_bmi(sp_mem *m, const sp_mem_req *reqs, int n, double t, sp_mem_plan *plan) {
    return batch_plan_impl(m, reqs, n, t, plan, 1);
}
#endif

double sp_mem_batch_plan(sp_mem *m, const sp_mem_req *reqs, int n, double t, sp_mem_plan *plan) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (sp_cpu_has_bmi12()) return batch_plan_bmi(m, reqs, n, t, plan);
#endif
    return batch_plan_impl(m, reqs, n, t, plan, 0);
}

double sp_mem_batch(sp_mem *m, const sp_mem_req *reqs, int n, double t) { return sp_mem_batch_plan(m, reqs, n, t, NULL); }

double sp_mem_replay(sp_mem *m, const sp_mem_plan *plan, double t) {
    batch_acc acc;
    acc_load(&acc, m, t);
    const int ch_mask = m->ch_mask, channels = m->hw->channels;
    for (int i = 0; i < plan->n; i++) {
        const sp_mem_pick *p = &plan->picks[i];
        int ch = ch_mask >= 0 ? p->bank & ch_mask : p->bank % channels;
        /* the order holds only from the open rows it was made with (a bug otherwise): a bank
         * whose row differed would differ at its first access in the batch, checked here */
        SP_ASSERT(m->open_row[p->bank] == p->open);
        acc_access(m, &acc, p->bank, ch, p->row, p->bytes, t);
    }
    acc_store(&acc, m);
    return acc.last;
}

void sp_mem_plan_free(sp_mem_plan *plan) {
    if (!plan) return;
    free(plan->picks);
    memset(plan, 0, sizeof *plan);
}

double sp_mem_stream_time(const sp_hw *hw, long n, int bytes, sp_mem *st) {
    if (n <= 0) return 0;
    int nb = hw->channels * hw->banks;
    int vpr = hw->row_bytes / bytes;
    SP_ASSERT(vpr >= 1);
    double burst = sp_mem_burst(hw, bytes);
    double col = dmax(hw->t_ccd_cyc, burst);
    /* Bus bound: the busiest channel moves ceil(n / channels) bursts after the first access. */
    long n_ch = (n + hw->channels - 1) / hw->channels;
    double t_bus = hw->t_rcd_cyc + hw->t_cl_cyc + (double)n_ch * burst;
    /* Bank bound: the busiest bank serves ceil(n / nb) column reads and opens its rows. */
    long n_b = (n + nb - 1) / nb;
    long rows = (n_b + vpr - 1) / vpr;
    double t_bank = hw->t_rcd_cyc + (double)(rows - 1) * (hw->t_rp_cyc + hw->t_rcd_cyc) + (double)(n_b - 1) * col + hw->t_cl_cyc + burst;
    if (st) {
        /* per bank g < min(nb, n): ng = ceil((n - g) / nb) vectors in ceil(ng / vpr) rows; with
         * n = a nb + b that is a + 1 vectors for the b banks g < b and a for the others, so the
         * sum over banks has two terms (the loop it replaced is in tests/test_timing.c) */
        long a = n / nb, b = n % nb;
        long first = n < nb ? n : nb;
        long act = b * ((a + 1 + vpr - 1) / vpr) + (a > 0 ? (nb - b) * ((a + vpr - 1) / vpr) : 0);
        st->requests += (double)n;
        st->bytes += (double)n * bytes;
        st->misses += (double)first;
        st->conflicts += (double)(act - first);
        st->hits += (double)(n - act);
        st->busy_bus += (double)n * burst;
    }
    return dmax(t_bus, t_bank);
}

/* A stream of vectors [from, to) of a region issued at t, by the analytical stream model: it
 * starts when the channels it uses are free, pays an activation unless its first row is open
 * (a precharge first if another row is), updates the memory's counters, bus and open rows, and
 * returns when its last byte has arrived. */
double sp_mem_stream(sp_mem *m, int region, long from, long to, int bytes, double t) {
    if (to <= from) return t;
    /* the stream starts when the channels it uses are free of earlier transfers (vectors
     * from..from+ch-1 cover distinct channels); the next stream may overlap its activation
     * latency with this stream's transfers */
    const sp_hw *w = m->hw;
    int nb = w->channels * w->banks;
    long used = to - from < w->channels ? to - from : w->channels;
    /* vector v's channel is (v mod nb) mod channels = v mod channels (nb is a multiple of the
     * channel count): the used channels are from's and the next ones, cyclically */
    const int ch0 = (int)(from % w->channels);
    for (long k = 0; k < used; k++) {
        int c = ch0 + (int)k;
        t = dmax(t, m->bus_free[c < w->channels ? c : c - w->channels]);
    }
    int g, c;
    long long row;
    sp_mem_req first = {from, region, bytes};
    sp_mem_map(w, &first, &g, &c, &row);
    /* the stream's first access may find its row open (no activation) or another row open
     * (precharge first) */
    int hit_first = m->open_row[g] == row, conflict_first = m->open_row[g] >= 0 && !hit_first;
    double end = t + sp_mem_stream_time(w, to - from, bytes, m) - (hit_first ? w->t_rcd_cyc : 0) +
                 (conflict_first ? w->t_rp_cyc : 0);
    if (hit_first) m->hits += 1, m->misses -= 1;
    if (conflict_first) m->conflicts += 1, m->misses -= 1;
    double free_at = end - (w->t_rcd_cyc + w->t_cl_cyc);
    for (long k = 0; k < used; k++) {
        c = ch0 + (int)k;
        c = c < w->channels ? c : c - w->channels;
        m->bus_free[c] = dmax(m->bus_free[c], free_at);
    }
    /* the last nb vectors leave their rows open: sp_mem_map's bank v mod nb and row
     * (region << 40) + (v / nb) / vpr, with shifts when nb and vpr are powers of two (v >= 0) */
    int vpr = w->row_bytes / bytes;
    SP_ASSERT(vpr >= 1);
    int nb_sh = pow2_shift(nb), vpr_sh = pow2_shift(vpr);
    for (long v = to - nb > from ? to - nb : from; v < to; v++) {
        long slot = nb_sh >= 0 ? v >> nb_sh : v / nb;
        m->open_row[v - slot * nb] = ((long long)region << 40) + (vpr_sh >= 0 ? slot >> vpr_sh : slot / vpr);
    }
    return end;
}
