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
    size_t n = (size_t)(n_keys > 0 ? n_keys : 1);
    r->prev = sp_xmalloc(n, sizeof *r->prev);
    r->next = sp_xmalloc(n, sizeof *r->next);
    r->resident = sp_xcalloc(n, 1);
    r->head = sp_xmalloc((size_t)corelets, sizeof *r->head);
    r->tail = sp_xmalloc((size_t)corelets, sizeof *r->tail);
    r->count = sp_xcalloc((size_t)corelets, sizeof *r->count);
    for (int c = 0; c < corelets; c++) r->head[c] = r->tail[c] = -1;
}

void sp_residency_free(sp_residency *r) {
    if (!r) return;
    free(r->prev);
    free(r->next);
    free(r->resident);
    free(r->head);
    free(r->tail);
    free(r->count);
    memset(r, 0, sizeof *r);
}

static void unlink_key(sp_residency *r, int c, int32_t j) {
    if (r->prev[j] >= 0) r->next[r->prev[j]] = r->next[j]; else r->head[c] = r->next[j];
    if (r->next[j] >= 0) r->prev[r->next[j]] = r->prev[j]; else r->tail[c] = r->prev[j];
}

static void push_tail(sp_residency *r, int c, int32_t j) {
    r->prev[j] = r->tail[c];
    r->next[j] = -1;
    if (r->tail[c] >= 0) r->next[r->tail[c]] = j; else r->head[c] = j;
    r->tail[c] = j;
}

int sp_residency_has(const sp_residency *r, int32_t j) {
    SP_ASSERT(j >= 0 && j < r->n_keys);
    return r->resident[j];
}

int sp_residency_access(sp_residency *r, int32_t j) {
    SP_ASSERT(j >= 0 && j < r->n_keys);
    int c = sp_corelet_of(j, r->corelets);
    if (r->resident[j]) {
        if (r->policy == 0) {
            unlink_key(r, c, j);
            push_tail(r, c, j);
        }
        return 1;
    }
    if (r->count[c] >= r->capacity) {
        int32_t v = r->head[c];
        unlink_key(r, c, v);
        r->resident[v] = 0;
        r->count[c]--;
    }
    push_tail(r, c, j);
    r->resident[j] = 1;
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
