/* residency.h: the "On-Chip? | Address" table of Fig. 7 and the SLD fetch/reuse split
 * (paper section 2.4): which key/value vectors are resident in each CORELET's K/V buffer,
 * with a replacement policy (LRU or FIFO). Keys are token-interleaved across CORELETs
 * (key j lives in CORELET j mod C, paper section 2.5). */
#ifndef SPRINT_EVENTS_RESIDENCY_H
#define SPRINT_EVENTS_RESIDENCY_H

#include <stdint.h>

#include "sprint/sim.h" /* sp_sld_split */

typedef struct sp_residency {
    int n_keys, corelets, capacity; /* capacity: entries per CORELET */
    int policy;                     /* 0 LRU, 1 FIFO */
    int32_t *prev, *next;           /* (n_keys) list links, -1 = none */
    unsigned char *resident;        /* (n_keys) */
    int32_t *head, *tail, *count;   /* (corelets) head = oldest / least recently used */
} sp_residency;

/* The CORELET of key j >= 0 among C (keys are token-interleaved: j mod C), a mask when C is a
 * power of two (1, 2, 4 at the defaults). */
static inline int sp_corelet_of(int32_t j, int C) { return C & (C - 1) ? j % C : j & (C - 1); }

void sp_residency_init(sp_residency *r, int n_keys, int corelets, int capacity, int policy);
void sp_residency_free(sp_residency *r);
/* Looks up key j: returns 1 on a hit (LRU: now most recent), 0 on a miss after inserting j
 * (evicting the oldest entry of its CORELET when full). */
int sp_residency_access(sp_residency *r, int32_t j);
int sp_residency_has(const sp_residency *r, int32_t j);

#endif
