/* residency.c: per-CORELET residency table with LRU/FIFO replacement, and the SLD split
 * (paper sections 2.4-2.5, Fig. 7 "Unpruned Index Buffer" + "On-Chip? | Address"). */
#include "events/residency.h"

#include <stdlib.h>
#include <string.h>

#include "sprint/common.h"

void sp_residency_init(sp_residency *r, int n_keys, int corelets, int capacity, int policy) {
    SP_ASSERT(n_keys >= 0 && corelets >= 1 && capacity >= 1);
    memset(r, 0, sizeof *r);
    r->n_keys = n_keys;
    r->corelets = corelets;
    r->capacity = capacity;
    r->policy = policy;
    /* a CORELET holds at most ceil(n_keys / corelets) keys: a larger capacity is never used */
    long most = ((long)n_keys + corelets - 1) / corelets, cap = capacity < most ? capacity : most;
    long size = 4;
    while (size < 2 * cap + 2) size *= 2;
    r->ring_size = (int)size;
    r->uses = sp_xcalloc((size_t)(n_keys > 0 ? n_keys : 1), sizeof *r->uses);
    r->ring = sp_xmalloc((size_t)corelets * (size_t)size, sizeof *r->ring);
    r->front = sp_xcalloc((size_t)corelets, sizeof *r->front);
    r->len = sp_xcalloc((size_t)corelets, sizeof *r->len);
    r->count = sp_xcalloc((size_t)corelets, sizeof *r->count);
}

void sp_residency_free(sp_residency *r) {
    if (!r) return;
    free(r->uses);
    free(r->ring);
    free(r->front);
    free(r->len);
    free(r->count);
    memset(r, 0, sizeof *r);
}

/* Drops CORELET c's dead entries (those with a later entry of the same key), keeping the live
 * ones in order at the front of its ring. */
static void compact(sp_residency *r, int c) {
    int32_t *q = r->ring + (size_t)c * (size_t)r->ring_size;
    const int mask = r->ring_size - 1;
    int f = r->front[c], n = r->len[c], k = 0;
    /* read in order from f, write from f: the write position never passes the read one */
    for (int i = 0; i < n; i++) {
        int32_t j = q[(f + i) & mask];
        if (r->uses[j] > 1) r->uses[j]--; /* a later entry of j follows */
        else q[(f + k++) & mask] = j;
    }
    r->len[c] = k;
}

static inline void push(sp_residency *r, int c, int32_t j) {
    if (r->len[c] == r->ring_size) compact(r, c);
    r->ring[(size_t)c * (size_t)r->ring_size + (size_t)((r->front[c] + r->len[c]) & (r->ring_size - 1))] = j;
    r->len[c]++;
    r->uses[j]++;
}

int sp_residency_has(const sp_residency *r, int32_t j) {
    SP_ASSERT(j >= 0 && j < r->n_keys);
    return r->uses[j] > 0;
}

int sp_residency_access(sp_residency *r, int32_t j) {
    SP_ASSERT(j >= 0 && j < r->n_keys);
    int c = sp_corelet_of(j, r->corelets);
    if (r->uses[j] > 0) {
        if (r->policy == 0) push(r, c, j); /* now the most recent: its older entry is dead */
        return 1;
    }
    if (r->count[c] >= r->capacity) { /* evict the least recently used (FIFO: the oldest) */
        const int32_t *q = r->ring + (size_t)c * (size_t)r->ring_size;
        const int mask = r->ring_size - 1;
        for (;;) {
            int32_t v = q[r->front[c]];
            r->front[c] = (r->front[c] + 1) & mask;
            r->len[c]--;
            if (--r->uses[v] == 0) break; /* its last entry: v was live, now evicted */
        }
        r->count[c]--;
    }
    push(r, c, j);
    r->count[c]++;
    return 0;
}

void sp_sld_split(const int32_t *prev, int n_prev, const int32_t *cur, int n_cur, int *n_reuse, int *n_fetch) {
    int a = 0, reuse = 0;
    for (int i = 0; i < n_cur; i++) {
        while (a < n_prev && prev[a] < cur[i]) a++;
        if (a < n_prev && prev[a] == cur[i]) reuse++;
    }
    *n_reuse = reuse;
    *n_fetch = n_cur - reuse;
}
