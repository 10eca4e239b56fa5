/* bench_mem_batch.c: speed of the memory model's batch path (sp_mem_batch, FR-FCFS; memory.c),
 * the hottest function of `sprint run` (docs/RESULTS.md part 9x). SPRINT-shaped batches as
 * headsim.c issues them for one query: Q, then K and V of each surviving key in ascending order
 * (keys 0..1023, each kept with probability `keep`), 40 distinct batches served again and again
 * on one memory of the default M-size geometry (in cache, like headsim's reused request array).
 * Before timing, every batch's completion and the memory's counters are checked against
 * sp_mem_batch_reference (the plain window scan). Prints the minimum over 7 repetitions of the
 * thread CPU time of 1250 passes over the 40 batches, and nanoseconds per request.
 *
 * usage: bench_mem_batch [keep]   (default 0.1) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sprint/config.h"
#include "sprint/sim.h"
#include "timing/memory.h"

enum { NBATCH = 40, MAXN = 2 * 1024 + 1, PASSES = 1250, REPS = 7 };

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    double keep = argc > 1 ? atof(argv[1]) : 0.1;
    if (!(keep > 0 && keep <= 1)) {
        fprintf(stderr, "bench_mem_batch: keep %s outside (0, 1]\n", argv[1]);
        return 2;
    }
    sp_config c;
    sp_config_defaults(&c);
    sp_hw hw;
    sp_error err = {0};
    if (sp_hw_from_config(&c, 1, &hw, &err) != SP_OK) {
        fprintf(stderr, "bench_mem_batch: %s\n", err.msg);
        return 1;
    }
    sp_mem_req *r = malloc(sizeof *r * (size_t)MAXN * NBATCH);
    int nreq[NBATCH];
    long total = 0;
    sp_rng rng;
    sp_rng_seed(&rng, 12345);
    for (int b = 0; b < NBATCH; b++) {
        sp_mem_req *q = r + (size_t)b * MAXN;
        int n = 0;
        q[n++] = (sp_mem_req){b, SP_REGION_Q, 64};
        for (long j = 0; j < 1024; j++)
            if (sp_rng_next_uniform(&rng) < keep) {
                q[n++] = (sp_mem_req){j, SP_REGION_K, 64};
                q[n++] = (sp_mem_req){j, SP_REGION_V, 64};
            }
        nreq[b] = n;
        total += n;
    }
    /* the batch path against the reference scan, two passes (the second finds rows open) */
    sp_mem a, ref;
    sp_mem_init(&a, &hw);
    sp_mem_init(&ref, &hw);
    double ta = 0, tr = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int b = 0; b < NBATCH; b++) {
            ta = sp_mem_batch(&a, r + (size_t)b * MAXN, nreq[b], ta);
            tr = sp_mem_batch_reference(&ref, r + (size_t)b * MAXN, nreq[b], tr, NULL);
            if (ta != tr || a.hits != ref.hits || a.misses != ref.misses || a.conflicts != ref.conflicts ||
                a.busy_bus != ref.busy_bus || a.bytes != ref.bytes || a.requests != ref.requests) {
                fprintf(stderr, "bench_mem_batch: batch %d differs from the reference (%.17g vs %.17g)\n", b, ta, tr);
                return 1;
            }
        }
    sp_mem_free(&a);
    sp_mem_free(&ref);
    double best = 1e300, sink = 0;
    for (int rep = 0; rep < REPS; rep++) {
        sp_mem m;
        sp_mem_init(&m, &hw);
        double t0 = cpu_seconds(), t = 0;
        for (int pass = 0; pass < PASSES; pass++)
            for (int b = 0; b < NBATCH; b++) t = sp_mem_batch(&m, r + (size_t)b * MAXN, nreq[b], t);
        double dt = cpu_seconds() - t0;
        sink += m.busy_bus + t;
        best = dt < best ? dt : best;
        sp_mem_free(&m);
    }
    printf("{\"keep\": %g, \"queue_depth\": %d, \"requests\": %ld, \"seconds\": %.4f, \"ns_per_request\": %.2f, "
           "\"check\": %.6g}\n",
           keep, hw.queue_depth, total * PASSES, best, 1e9 * best / ((double)total * PASSES), sink);
    free(r);
    return 0;
}
