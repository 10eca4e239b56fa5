/* pool.h: a small blocking thread pool for the forward pass (internal).
 *
 * Why not OpenMP here: libgomp's idle threads spin (OMP_WAIT_POLICY=active by default) between
 * parallel regions; the forward pass alternates short serial sgemm phases with per-head
 * parallel phases, so on a shared, oversubscribed machine the spinning worker steals the CPU the
 * serial phase needs (measured: 3,300 vs 13,000 tokens/s with 2 threads at load average 7).
 * These workers sleep on a condition variable instead. */
#ifndef SPRINT_MODEL_POOL_H
#define SPRINT_MODEL_POOL_H

/* Runs fn(ctx, i) for i in [0, n) on up to `threads` threads (the caller is one of them) and
 * returns when all are done. Tasks are handed out in index order; which thread runs which
 * task is unspecified, so fn must make each task's result independent of that. When the
 * shared pool is busy (a concurrent caller), the tasks run on the calling thread. */
void sp_pool_run(int threads, int n, void (*fn)(void *ctx, int i), void *ctx);

/* Default worker count for threads = 0: OpenMP's idea of it (OMP_NUM_THREADS, else cores). */
int sp_pool_default_threads(void);

#endif
