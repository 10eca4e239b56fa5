/* memory.h: ReRAM main-memory timing (paper section 2.2-2.3): channels, banks with one open
 * row each, a shared data bus per channel, a request queue with row-buffer-aware (FR-FCFS)
 * scheduling; and an analytical model of long regular streams (tested against the event
 * model in tests/test_timing.c). All times are accelerator (core) cycles. */
#ifndef SPRINT_TIMING_MEMORY_H
#define SPRINT_TIMING_MEMORY_H

#include <stdint.h>

#include "sprint/sim.h"

/* Address regions: each holds one vector per token, interleaved across every bank. */
enum { SP_REGION_K = 0, SP_REGION_V = 1, SP_REGION_Q = 2 };

typedef struct sp_mem_req {
    long vec;    /* token index */
    int region;  /* SP_REGION_* */
    int bytes;   /* vector size */
} sp_mem_req;

typedef struct sp_mem {
    const sp_hw *hw;
    int nb;              /* banks in total (channels * banks) */
    double *bank_ready;  /* (nb) earliest next column command */
    double bank_ready_max; /* max over bank_ready (each entry only grows, so the largest value set) */
    long long *open_row; /* (nb) -1 = closed */
    double *bus_free;    /* (channels) */
    /* statistics */
    double requests, bytes, hits, misses, conflicts, busy_bus;
    /* scratch for batches */
    int *snext, *sprev;  /* batch scratch: list links (per-bank window lists); snext also the scan's served order */
    uint64_t *spend, *shit; /* batch scratch: waiting / row-hit bitmaps of the window */
    int *sbank;          /* (nb) head of each bank's window list; all -1 between batches */
    int *sg;             /* bank of each batch request */
    long long *srow;     /* row of each batch request */
    int *srid;           /* batch scratch: index of each request's row among the batch's distinct rows */
    uint64_t *sbmask;    /* (nb) scan scheduler: each bank's waiting non-hits (slot bits of its 64-slot ring); all 0 between batches */
    int scratch_n;
    /* cached per vector size: the burst and column spacing of the last size seen */
    int c_bytes;
    double c_burst, c_col;
    double c_lat[3], c_occ[3]; /* latency and bank occupancy of a row hit, a miss, a conflict (this size) */
    int ch_mask;         /* channels - 1 when channels is a power of two, else -1 */
} sp_mem;

/* Sets m up for the geometry and timing of hw (which must outlive it): every bank idle with no
 * open row, the buses free, the scheduler's scratch empty (it grows with the largest batch).
 * sp_mem_free releases what it allocates. */
void sp_mem_init(sp_mem *m, const sp_hw *hw);
void sp_mem_free(sp_mem *m);
/* Burst length of a vector of `bytes` on the bus, core cycles. */
double sp_mem_burst(const sp_hw *hw, int bytes);
/* Effective bandwidth of all channels streaming, bytes per core cycle. */
double sp_mem_bandwidth(const sp_hw *hw);
/* Vectors [from, to) of a region, `bytes` each, issued at t, by the analytical stream model
 * (sp_mem_stream_time); updates m's counters, bus and open rows; returns the completion time. */
double sp_mem_stream(sp_mem *m, int region, long from, long to, int bytes, double t);
/* Bank (global index), channel and row of a request. */
void sp_mem_map(const sp_hw *hw, const sp_mem_req *r, int *bank, int *channel, long long *row);
/* One request issued at time t: returns the cycle at which its last byte has arrived
 * (complete at that cycle, not before). Updates bank/bus state and statistics. */
double sp_mem_access(sp_mem *m, const sp_mem_req *r, double t);
/* A batch issued at t through the request queue (FR-FCFS or FCFS): returns the completion of
 * the last request (t when n == 0). */
double sp_mem_batch(sp_mem *m, const sp_mem_req *reqs, int n, double t);
/* The order in which a batch served its requests: for each, its bank, row, size and the row
 * its bank had open just before (sp_mem_batch_plan fills it; sp_mem_replay uses it). */
typedef struct sp_mem_pick {
    long long row, open;
    int bank, bytes;
} sp_mem_pick;
typedef struct sp_mem_plan {
    sp_mem_pick *picks;
    int n, cap;
} sp_mem_plan;
/* sp_mem_batch, also recording into plan (if not NULL) the order it served the requests in.
 * The order depends only on the requests, the scheduler and the banks' open rows, never on
 * times: a memory of the same geometry (channels, banks, row size, queue depth, scheduler)
 * whose banks have the same rows open serves the same batch in the same order, whatever its
 * timing state, issue time or clocks. */
double sp_mem_batch_plan(sp_mem *m, const sp_mem_req *reqs, int n, double t, sp_mem_plan *plan);
/* Serves a batch issued at t in the order of plan (made by sp_mem_batch_plan on a memory of
 * the same geometry whose banks had the same open rows as m's): the same result and state as
 * sp_mem_batch on m, without the scheduling. Aborts (SP_ASSERT) if an access finds its bank's
 * open row different from the plan's. */
double sp_mem_replay(sp_mem *m, const sp_mem_plan *plan, double t);
void sp_mem_plan_free(sp_mem_plan *plan);
/* The same schedule by a plain scan of the window for every pick (reference for tests);
 * records the order into plan when not NULL, as sp_mem_batch_plan does. */
double sp_mem_batch_reference(sp_mem *m, const sp_mem_req *reqs, int n, double t, sp_mem_plan *plan);

/* Analytical model of a regular stream of vectors 0..n-1 of one region, `bytes` each,
 * issued at once on idle banks. Returns the duration in core cycles and, if st is not NULL,
 * adds its requests, bytes, hits, misses (first activation per bank) and conflicts (later
 * activations) and bus busy cycles. */
double sp_mem_stream_time(const sp_hw *hw, long n, int bytes, sp_mem *st);

#endif
