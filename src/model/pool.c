/* pool.c: the blocking thread pool of pool.h. One process-wide pool, grown on demand, whose
 * workers sleep on a condition variable between jobs. */
#define _POSIX_C_SOURCE 200809L
#include "model/pool.h"

#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>

#include "sprint/common.h"

#define SP_POOL_MAX 64

typedef struct pool {
    pthread_mutex_t use;     /* held by the caller running a job */
    pthread_mutex_t mu;      /* protects the fields below */
    pthread_cond_t work, done;
    int nworkers;            /* started workers */
    unsigned long generation;
    int want;                /* workers taking part in the current job */
    int finished;            /* of those, how many are done */
    void (*fn)(void *, int);
    void *ctx;
    int n;
    atomic_int next;         /* next task index */
    unsigned long born[SP_POOL_MAX]; /* generation when each worker was created */
} pool;

static pool P = {.use = PTHREAD_MUTEX_INITIALIZER, .mu = PTHREAD_MUTEX_INITIALIZER,
                 .work = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static void drain(void) {
    for (;;) {
        int i = atomic_fetch_add(&P.next, 1);
        if (i >= P.n) break;
        P.fn(P.ctx, i);
    }
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&P.mu);
    seen = P.born[id]; /* a job posted between creation and this point is still ours */
    for (;;) {
        while (P.generation == seen) pthread_cond_wait(&P.work, &P.mu);
        seen = P.generation;
        if (id >= P.want) continue;
        pthread_mutex_unlock(&P.mu);
        drain();
        pthread_mutex_lock(&P.mu);
        if (++P.finished == P.want) pthread_cond_signal(&P.done);
    }
    return NULL;
}

/* After fork() the child has only the forking thread: the workers the pool counts are gone
 * (a job would wait for them forever), and a mutex may have been held by one of them. The
 * child starts from an empty pool. */
static void pool_after_fork_child(void) {
    pthread_mutex_t m0 = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c0 = PTHREAD_COND_INITIALIZER;
    P.use = m0;
    P.mu = m0;
    P.work = c0;
    P.done = c0;
    P.nworkers = 0;
    P.want = 0;
    P.finished = 0;
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) { pthread_atfork(NULL, NULL, pool_after_fork_child); }

int sp_pool_default_threads(void) { return omp_get_max_threads(); }

void sp_pool_run(int threads, int n, void (*fn)(void *ctx, int i), void *ctx) {
    if (threads <= 0) threads = sp_pool_default_threads();
    if (threads > n) threads = n;
    if (threads > SP_POOL_MAX) threads = SP_POOL_MAX;
    if (threads <= 1 || pthread_mutex_trylock(&P.use) != 0) {
        for (int i = 0; i < n; i++) fn(ctx, i);
        return;
    }
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&P.mu);
    while (P.nworkers < threads - 1) {
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        P.born[P.nworkers] = P.generation;
        int rc = pthread_create(&th, &at, worker, (void *)(intptr_t)P.nworkers);
        pthread_attr_destroy(&at);
        if (rc != 0) break; /* run with the workers we have */
        P.nworkers++;
    }
    P.fn = fn;
    P.ctx = ctx;
    P.n = n;
    atomic_store(&P.next, 0);
    P.want = threads - 1 < P.nworkers ? threads - 1 : P.nworkers;
    P.finished = 0;
    P.generation++;
    int want = P.want;
    if (want > 0) pthread_cond_broadcast(&P.work);
    pthread_mutex_unlock(&P.mu);
    drain();
    pthread_mutex_lock(&P.mu);
    while (P.finished < want) pthread_cond_wait(&P.done, &P.mu);
    pthread_mutex_unlock(&P.mu);
    pthread_mutex_unlock(&P.use);
}
