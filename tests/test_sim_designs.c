/* test_sim_designs.c: does each design fetch exactly what its dataflow says (Baseline traffic
 * equals its analytical count; SPRINT traffic equals the newly fetched vectors), does the
 * residency table replace as its policy says, are results identical whatever the thread
 * count, and do impossible inputs give clear errors (library and CLI)? */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "events/residency.h"
#include "timing/memory.h"
#include "helpers.h"
#include "sim_helpers.h"
#include "sprint/sim.h"

static void hw_sizes(sp_hw hw[3], unsigned *mask, const char *set) {
    sp_config c;
    sp_config_defaults(&c);
    sp_error err = {0};
    if (set) cr_assert_eq(sp_config_set(&c, set, "test", &err), SP_OK, "%s", err.msg);
    cr_assert_eq(sp_sim_hw(&c, hw, mask, &err), SP_OK, "%s", err.msg);
}

/* Finishes a head into res (zeroed first, scale 1) and frees it. */
static void finish_head(sp_sim_head *h, sp_design_result res[3][SP_DESIGN_COUNT]) {
    memset(res, 0, 3 * sizeof *res);
    sp_sim_head_finish(h, 1.0, res, NULL);
    sp_sim_head_free(h);
}

/* Feeds a sliding-window pruning result: query i keeps keys [i-w, i+w] (clipped). */
static void feed_window(sp_sim_head *h, int n, int w) {
    int32_t *idx = malloc(sizeof *idx * (size_t)(2 * w + 1));
    for (int i = 0; i < n; i++) {
        int m = 0;
        for (int j = i - w; j <= i + w; j++)
            if (j >= 0 && j < n) idx[m++] = j;
        sp_query_record r = {.qi = i, .pos = i, .n_k = n, .n_visible = n, .n_mem_kept = m, .mem_kept = idx,
                             .n_kept = m, .kept = idx};
        sp_sim_head_query(h, &r);
    }
    free(idx);
}

Test(designs, baseline_traffic_equals_analytical_count) {
    for (int ev = 0; ev < 2; ev++) {
        sp_hw hw[3];
        unsigned mask;
        hw_sizes(hw, &mask, NULL);
        for (int s = 0; s < 3; s++) hw[s].event_max_keys = ev ? 100000 : 0;
        const int n = 300, d = 64;
        sp_head_shape sh = {.n_k = n, .d = d, .causal = 0, .n_valid = 200};
        sp_sim_head *h = sp_sim_head_create(hw, 7u, &sh);
        static sp_design_result res[3][SP_DESIGN_COUNT];
        finish_head(h, res);
        /* S, partial residency (default): the first 128 keys (8 KB / 64 B) are fetched once and
         * stay, every query streams Q + the other 172 K and V */
        cr_assert_float_eq(res[0][SP_DESIGN_BASELINE].bytes_read, (double)n * d + 2.0 * d * (128 + (double)n * 172), 0.5);
        /* M: 256 resident, 44 stream */
        cr_assert_float_eq(res[1][SP_DESIGN_BASELINE].bytes_read, (double)n * d + 2.0 * d * (256 + (double)n * 44), 0.5);
        /* L: 4 CORELETs x 128 keys hold 300: K and V fetched once, Q per query */
        cr_assert_float_eq(res[2][SP_DESIGN_BASELINE].bytes_read, (double)n * d + 2.0 * n * d, 0.5);
        /* mask-only at S: 200 valid > 128: 128 resident, 200 queries x (Q + 2 x 72 vectors) */
        cr_assert_float_eq(res[0][SP_DESIGN_MASK_ONLY].bytes_read, 200.0 * d + 2.0 * d * (128 + 200.0 * 72), 0.5);
        /* tiled at S: tile = floor(8192 / (3*64+8)) = 40 queries, block = 64 pairs < 300:
         * ceil(300/40) = 8 passes over K and V */
        cr_assert_float_eq(res[0][SP_DESIGN_TILED].bytes_read, (double)n * d + 8.0 * 2 * n * d, 0.5);
        cr_assert_float_eq(res[0][SP_DESIGN_BASELINE].requests, n + 2.0 * (128 + n * 172.0), 0.5);
        /* Q, K, V of the whole sequence (padding included) written once, the same for every design */
        for (int D = 0; D < SP_DESIGN_COUNT; D++)
            cr_assert_float_eq(res[0][D].bytes_written, 3.0 * n * d, 0.5, "design %d", D);
    }
}

/* chip.baseline_dataflow: restream keeps nothing resident unless everything fits (the old
 * all-or-nothing rule), partial the first cap*C keys, tiled makes baseline-paper the tiled
 * dataflow; baseline_masked_pairs=0 makes baseline-paper skip masked pairs (= mask-only). */
Test(designs, baseline_dataflow_key) {
    const char *set[4] = {"chip.baseline_dataflow=restream", "chip.baseline_dataflow=partial",
                          "chip.baseline_dataflow=tiled", "chip.baseline_masked_pairs=0"};
    const int n = 300, d = 64;
    for (int k = 0; k < 4; k++) {
        sp_hw hw[3];
        unsigned mask;
        hw_sizes(hw, &mask, set[k]);
        sp_head_shape sh = {.n_k = n, .d = d, .causal = 1, .n_valid = n};
        sp_sim_head *h = sp_sim_head_create(hw, 1u, &sh);
        static sp_design_result res[3][SP_DESIGN_COUNT];
        finish_head(h, res);
        double b = res[0][SP_DESIGN_BASELINE].bytes_read;
        if (k == 0) cr_assert_float_eq(b, (double)n * d + (double)n * 2 * n * d, 0.5);
        if (k == 1) cr_assert_float_eq(b, (double)n * d + 2.0 * d * (128 + (double)n * 172), 0.5);
        if (k == 2) cr_assert_float_eq(b, res[0][SP_DESIGN_TILED].bytes_read, 0.5);
        if (k == 3) {
            cr_assert_float_eq(b, res[0][SP_DESIGN_MASK_ONLY].bytes_read, 0.5);
            cr_assert_float_eq(res[0][SP_DESIGN_BASELINE].cycles, res[0][SP_DESIGN_MASK_ONLY].cycles, 1e-9);
        }
    }
}

Test(designs, sprint_traffic_equals_newly_fetched_vectors) {
    sp_hw hw[3];
    unsigned mask;
    hw_sizes(hw, &mask, NULL);
    const int n = 400, d = 64, w = 5;
    sp_head_shape sh = {.n_k = n, .d = d, .causal = 0, .n_valid = n};
    sp_sim_head *h = sp_sim_head_create(hw, 7u, &sh);
    feed_window(h, n, w);
    static sp_design_result res[3][SP_DESIGN_COUNT];
    finish_head(h, res);
    double pv = (double)n * ((n + 7) / 8); /* pruning vectors: 50 B per query */
    double kept = 0;
    for (int i = 0; i < n; i++) kept += (i + w < n ? i + w : n - 1) - (i - w > 0 ? i - w : 0) + 1;
    for (int s = 0; s < 3; s++) {
        /* with reuse, every key is fetched once (the window slides by one) */
        const sp_design_result *r = &res[s][SP_DESIGN_SPRINT];
        cr_assert_float_eq(r->vec_fetched, 2.0 * n, 0.5, "size %d fetched %g", s, r->vec_fetched); /* K + V */
        cr_assert_float_eq(r->vec_reused, 2.0 * (kept - n), 0.5);
        cr_assert_float_eq(r->bytes_read, (double)n * d + 2.0 * n * d + pv, 0.5);
        /* without reuse, every survivor of every query */
        const sp_design_result *nr = &res[s][SP_DESIGN_SPRINT_NOREUSE];
        cr_assert_float_eq(nr->bytes_read, (double)n * d + 2.0 * kept * d + pv, 0.5);
        /* reuse never costs time; on the reproduction preset's 409.6 GB/s memory both are
         * bound by the pruning-vector scan here (400 bits / 6 per cycle), so only <= holds */
        cr_assert_leq(r->cycles, nr->cycles);
    }
    /* pruning (LeOPArd-like): Q, every visible K, then only the kept V, with the baseline's
     * partial residency (chip.baseline_dataflow): at S the first R = 128 keys (1 CORELET x 128)
     * keep K and V on chip (fetched once: every one of them is some query's survivor), K 128..399
     * streams for every query, and a survivor >= 128 has its V fetched by every query keeping
     * it; at M R = 2 x 128 = 256; at L (4 x 128 >= 400) K and V are fetched once. */
    for (int s = 0; s < 2; s++) {
        const int R = s ? 256 : 128;
        double kept_hi = 0;
        for (int i = 0; i < n; i++)
            for (int j = i - w; j <= i + w; j++) kept_hi += j >= R && j < n;
        double vec = R + (double)n * (n - R) + R + kept_hi;
        cr_assert_float_eq(res[s][SP_DESIGN_PRUNING].vec_fetched, vec, 0.5, "size %d: %g", s,
                           res[s][SP_DESIGN_PRUNING].vec_fetched);
        cr_assert_float_eq(res[s][SP_DESIGN_PRUNING].bytes_read, (double)n * d + vec * d, 0.5);
    }
    cr_assert_float_eq(res[0][SP_DESIGN_PRUNING].pairs_qk, (double)n * n, 0.5);
    cr_assert_float_eq(res[0][SP_DESIGN_PRUNING].pairs_sv, kept, 0.5);
    cr_assert_float_eq(res[2][SP_DESIGN_PRUNING].bytes_read, 3.0 * n * d, 0.5);
}

/* The pruning design's residency follows chip.baseline_dataflow: with restream (the
 * all-or-nothing rule) nothing stays on chip at S (400 keys > 128), so every query streams all
 * 400 K and the V of each of its survivors; with partial the first 128 stay (hand count in
 * sprint_traffic_equals_newly_fetched_vectors). */
Test(designs, pruning_residency_follows_baseline_dataflow) {
    sp_hw hw[3];
    unsigned mask;
    hw_sizes(hw, &mask, "chip.baseline_dataflow=restream");
    const int n = 400, d = 64, w = 5;
    sp_head_shape sh = {.n_k = n, .d = d, .causal = 0, .n_valid = n};
    sp_sim_head *h = sp_sim_head_create(hw, 7u, &sh);
    feed_window(h, n, w);
    static sp_design_result res[3][SP_DESIGN_COUNT];
    finish_head(h, res);
    double kept = 0;
    for (int i = 0; i < n; i++) kept += (i + w < n ? i + w : n - 1) - (i - w > 0 ? i - w : 0) + 1;
    cr_assert_float_eq(res[0][SP_DESIGN_PRUNING].vec_fetched, (double)n * n + kept, 0.5);
    cr_assert_float_eq(res[0][SP_DESIGN_PRUNING].bytes_read, (double)n * d + (double)n * n * d + kept * d, 0.5);
    cr_assert_float_eq(res[1][SP_DESIGN_PRUNING].vec_fetched, (double)n * n + kept, 0.5); /* 2 x 128 < 400 */
    cr_assert_float_eq(res[2][SP_DESIGN_PRUNING].bytes_read, 3.0 * n * d, 0.5);          /* 4 x 128 >= 400 */
}

/* chip.pruning_masked_pairs (issue 7): the pruning design scores what baseline-paper scores.
 * Padded head, n = 300 with 200 valid tokens, valid query i keeps keys [i-5, i+5] within the
 * valid ones. With the key on (default) every one of the 300 queries streams the K of all 300
 * keys (partial residency at S: the first 128 fetched once, the other 172 per query), and the 100
 * padded queries, which the functional op does not record, keep what the last valid query kept
 * (keys 194..199, all >= 128, so their V is fetched by each); with the key off only the 200
 * valid queries score the 200 valid keys (128 resident, 72 streamed). */
Test(designs, pruning_scores_padded_and_masked_pairs) {
    const int n = 300, nvalid = 200, d = 64, w = 5, R = 128;
    for (int on = 0; on < 2; on++) {
        sp_hw hw[3];
        unsigned mask;
        hw_sizes(hw, &mask, on ? NULL : "chip.pruning_masked_pairs=0");
        sp_head_shape sh = {.n_k = n, .d = d, .causal = 0, .n_valid = nvalid};
        sp_sim_head *h = sp_sim_head_create(hw, 1u, &sh);
        int32_t idx[16];
        double kept = 0, kept_hi = 0;
        for (int i = 0; i < nvalid; i++) {
            int m = 0;
            for (int j = i - w; j <= i + w; j++)
                if (j >= 0 && j < nvalid) idx[m++] = j, kept_hi += j >= R;
            kept += m;
            sp_query_record r = {.qi = i, .pos = i, .n_k = n, .n_visible = nvalid, .n_mem_kept = m, .mem_kept = idx,
                                 .n_kept = m, .kept = idx};
            sp_sim_head_query(h, &r);
        }
        static sp_design_result res[3][SP_DESIGN_COUNT];
        finish_head(h, res);
        const sp_design_result *p = &res[0][SP_DESIGN_PRUNING];
        if (on) {
            const double last = 6; /* keys 194..199 */
            double vec = R + (double)n * (n - R) + R + kept_hi + (n - nvalid) * last;
            cr_assert_float_eq(p->pairs_qk, (double)n * n, 0.5);
            cr_assert_float_eq(p->pairs_sv, kept + (n - nvalid) * last, 0.5);
            cr_assert_float_eq(p->queries, n, 0.5);
            cr_assert_float_eq(p->vec_fetched, vec, 0.5, "%g vs %g", p->vec_fetched, vec);
            cr_assert_float_eq(p->bytes_read, (double)n * d + vec * d, 0.5);
        } else {
            double vec = R + (double)nvalid * (nvalid - R) + R + kept_hi;
            cr_assert_float_eq(p->pairs_qk, (double)nvalid * nvalid, 0.5);
            cr_assert_float_eq(p->pairs_sv, kept, 0.5);
            cr_assert_float_eq(p->queries, nvalid, 0.5);
            cr_assert_float_eq(p->vec_fetched, vec, 0.5, "%g vs %g", p->vec_fetched, vec);
        }
    }
}

/* chip.reuse_share: the On-Chip? table keeps that share of the entries. At S (one CORELET, 128
 * entries of 64 B) 200 queries that each keep keys 0..99 fetch them once with the whole buffer;
 * with half of it (64 entries) LRU over a cyclic 100-key access misses every time, so every
 * query fetches all 100 again. */
Test(designs, reuse_share_bounds_residency) {
    const int n = 200, d = 64, k = 100;
    int32_t idx[100];
    for (int j = 0; j < k; j++) idx[j] = j;
    for (int half = 0; half < 2; half++) {
        sp_hw hw[3];
        unsigned mask;
        hw_sizes(hw, &mask, half ? "chip.reuse_share=0.5" : NULL);
        sp_head_shape sh = {.n_k = n, .d = d, .causal = 0, .n_valid = n};
        sp_sim_head *h = sp_sim_head_create(hw, 1u, &sh);
        for (int i = 0; i < n; i++) {
            sp_query_record r = {.qi = i, .pos = i, .n_k = n, .n_visible = n, .n_mem_kept = k, .mem_kept = idx,
                                 .n_kept = k, .kept = idx};
            sp_sim_head_query(h, &r);
        }
        static sp_design_result res[3][SP_DESIGN_COUNT];
        finish_head(h, res);
        const sp_design_result *r = &res[0][SP_DESIGN_SPRINT];
        double want = half ? 2.0 * n * k : 2.0 * k; /* K and V */
        cr_assert_float_eq(r->vec_fetched, want, 0.5, "share %s: %g", half ? "0.5" : "1", r->vec_fetched);
    }
}

/* sp_sim_regular_results + sp_sim_head_use_regular: a head that adds the shared regular-design
 * results gives every design's result with the same bits as a head that simulates them (padded,
 * causal and plain shapes, scale 3). A head with no shared results is the reference. */
Test(designs, shared_regular_designs_match_per_head) {
    const sp_head_shape shapes[3] = {{.n_k = 300, .d = 64, .causal = 0, .n_valid = 200},
                                     {.n_k = 257, .d = 32, .causal = 1, .n_valid = 257},
                                     {.n_k = 90, .d = 128, .causal = 0, .n_valid = 90}};
    for (int k = 0; k < 3; k++) {
        sp_hw hw[3];
        unsigned mask;
        hw_sizes(hw, &mask, NULL);
        const sp_head_shape *sh = &shapes[k];
        static sp_design_result reg[3][SP_DESIGN_COUNT], a[3][SP_DESIGN_COUNT], b[3][SP_DESIGN_COUNT];
        sp_sim_regular_results(hw, 7u, sh, reg);
        memset(a, 0, sizeof a);
        memset(b, 0, sizeof b);
        for (int shared = 0; shared < 2; shared++) {
            sp_sim_head *h = sp_sim_head_create(hw, 7u, sh);
            if (shared) sp_sim_head_use_regular(h, (const sp_design_result(*)[SP_DESIGN_COUNT])reg);
            int32_t idx[8];
            for (int i = 0; i < sh->n_valid; i++) {
                int m = 0;
                for (int j = i - 3; j <= i + 3; j++)
                    if (j >= 0 && j < sh->n_valid && (!sh->causal || j <= i)) idx[m++] = j;
                sp_query_record r = {.qi = i, .pos = i, .n_k = sh->n_k, .n_visible = sh->causal ? i + 1 : sh->n_valid,
                                     .n_mem_kept = m, .mem_kept = idx, .n_kept = m, .kept = idx};
                sp_sim_head_query(h, &r);
            }
            sp_sim_head_finish(h, 3.0, shared ? b : a, NULL);
            sp_sim_head_free(h);
        }
        cr_assert(!memcmp(a, b, sizeof a), "shape %d: shared regular designs change a result", k);
        cr_assert_gt(a[0][SP_DESIGN_BASELINE].cycles, 0);
        cr_assert_gt(a[0][SP_DESIGN_MASK_ONLY].bytes_read, 0);
    }
}

/* Feeds n_q causal queries of a head of n keys, each keeping a random subset of its visible
 * keys (ascending; mem_kept a superset of kept), the same sequence for the same seed. */
static void feed_random(sp_sim_head *h, int n, uint64_t seed) {
    sp_rng rng;
    sp_rng_seed(&rng, seed);
    int32_t *mk = malloc(sizeof *mk * (size_t)n), *kp = malloc(sizeof *kp * (size_t)n);
    for (int i = 0; i < n; i++) {
        int nmk = 0, nkp = 0;
        for (int j = 0; j <= i; j++)
            if (sp_rng_next_uniform(&rng) < 0.3) {
                mk[nmk++] = j;
                if (sp_rng_next_uniform(&rng) < 0.7) kp[nkp++] = j;
            }
        sp_query_record r = {.qi = i, .pos = i, .n_k = n, .n_visible = i + 1, .n_mem_kept = nmk, .mem_kept = mk,
                             .n_kept = nkp, .kept = kp};
        sp_sim_head_query(h, &r);
    }
    free(mk), free(kp);
}

/* A head simulated at several chip sizes at once gives every size the same results, bit for
 * bit, as simulating that size alone: SPRINT without reuse replays the first size's memory
 * order at the others when the memory geometry is shared (headsim.c plan_size) and schedules
 * per size when it is not (here M gets other banks or another row size; FCFS too). */
Test(designs, sizes_together_match_sizes_alone) {
    const char *set[3] = {NULL, "controller.scheduler=fcfs", "controller.queue_depth=4"};
    for (int k = 0; k < 3; k++)
        for (int geo = 0; geo < 3; geo++) {
            sp_hw hw[3];
            unsigned mask;
            hw_sizes(hw, &mask, set[k]);
            if (geo == 1) hw[1].banks = 3;       /* M: another bank count (not a power of two) */
            if (geo == 2) hw[1].row_bytes = 256; /* M: another row size */
            const int n = 160, d = 32;
            sp_head_shape sh = {.n_k = n, .d = d, .causal = 1, .n_valid = n};
            static sp_design_result all[3][SP_DESIGN_COUNT], one[3][SP_DESIGN_COUNT];
            sp_sim_head *h = sp_sim_head_create(hw, 7u, &sh);
            feed_random(h, n, 5);
            finish_head(h, all);
            for (int s = 0; s < 3; s++) {
                h = sp_sim_head_create(hw, 1u << s, &sh);
                feed_random(h, n, 5);
                finish_head(h, one);
                for (int D = 0; D < SP_DESIGN_COUNT; D++)
                    cr_assert(memcmp(&all[s][D], &one[s][D], sizeof one[s][D]) == 0,
                              "set %d geometry %d size %d design %d: cycles %.17g together, %.17g alone", k, geo, s, D,
                              all[s][D].cycles, one[s][D].cycles);
            }
        }
}

/* Keys are token-interleaved over the CORELETs (key j in CORELET j mod C): with C = 3 (not a
 * power of two, the counts by division) a query keeping every third key loads one CORELET
 * only, so the QK-PU, softmax and V-PU busy time is that of all its keys on one CORELET; keys
 * 0..47 spread evenly (16 each). */
Test(designs, keys_per_corelet_when_the_count_is_not_a_power_of_two) {
    sp_hw hw[3];
    unsigned mask;
    hw_sizes(hw, &mask, "chip.corelets_s=3");
    hw[0].qk_lanes = hw[0].v_lanes = 7; /* busy = sum over CORELETs of ceil(keys / 7): shows the split */
    const int n = 144, d = 64, m = 48;
    int32_t every3[48], first[48];
    for (int i = 0; i < m; i++) every3[i] = 3 * i, first[i] = i;
    static sp_design_result r3[3][SP_DESIGN_COUNT], r1[3][SP_DESIGN_COUNT];
    th_sim_one_query(hw, 1u, n, d, every3, m, every3, m, r3);
    th_sim_one_query(hw, 1u, n, d, first, m, first, m, r1);
    const sp_hw *w = &hw[0];
    const double dc = ceil((double)d / w->lane_width);
    for (int D = SP_DESIGN_SPRINT_NOREUSE; D <= SP_DESIGN_SPRINT; D++) {
        cr_assert_float_eq(r3[0][D].busy_qk, ceil((double)m / w->qk_lanes) * dc, 1e-9, "design %d", D);
        cr_assert_float_eq(r3[0][D].busy_v, ceil((double)m / w->v_lanes) * dc, 1e-9, "design %d", D);
        cr_assert_float_eq(r3[0][D].busy_sm, ceil((double)m / w->sm_per_cycle), 1e-9, "design %d", D);
        cr_assert_float_eq(r1[0][D].busy_qk, 3 * ceil((double)(m / 3) / w->qk_lanes) * dc, 1e-9, "design %d", D);
        cr_assert_float_eq(r1[0][D].busy_v, 3 * ceil((double)(m / 3) / w->v_lanes) * dc, 1e-9, "design %d", D);
    }
}

/* The residency table against a plain model written from its definition: every key holds the
 * time of its last use (LRU) or of its insertion (FIFO); a full CORELET evicts its resident key
 * with the smallest time, found by a scan. */
typedef struct plain_res {
    int n, C, cap, pol;
    long long *time; /* -1: not resident */
    long long clock;
} plain_res;

static int plain_res_access(plain_res *p, int32_t j) {
    int c = j % p->C;
    p->clock++;
    if (p->time[j] >= 0) {
        if (p->pol == 0) p->time[j] = p->clock;
        return 1;
    }
    int resident = 0, victim = -1;
    for (int k = c; k < p->n; k += p->C)
        if (p->time[k] >= 0) {
            resident++;
            if (victim < 0 || p->time[k] < p->time[victim]) victim = k;
        }
    if (resident >= p->cap) p->time[victim] = -1;
    p->time[j] = p->clock;
    return 0;
}

Test(designs, residency_matches_plain_model) {
    sp_rng rng;
    sp_rng_seed(&rng, 99);
    for (int trial = 0; trial < 300; trial++) {
        int n = 1 + (int)(sp_rng_next(&rng) % 400), C = 1 + (int)(sp_rng_next(&rng) % 5);
        int cap = trial % 7 == 0 ? 1 + (int)(sp_rng_next(&rng) % 500) : 1 + (int)(sp_rng_next(&rng) % 24);
        int pol = trial & 1;
        sp_residency r;
        sp_residency_init(&r, n, C, cap, pol);
        plain_res p = {n, C, cap, pol, malloc(sizeof(long long) * (size_t)n), 0};
        for (int k = 0; k < n; k++) p.time[k] = -1;
        int span = 1 + (int)(sp_rng_next(&rng) % (unsigned)n); /* queries' keys: ascending within a window */
        for (int q = 0; q < 120; q++) {
            int lo = (int)(sp_rng_next(&rng) % (unsigned)n), keep = 1 + (int)(sp_rng_next(&rng) % 100);
            for (int j = lo; j < n && j < lo + span; j++) {
                if ((int)(sp_rng_next(&rng) % 100) >= keep) continue;
                int got = sp_residency_access(&r, j), want = plain_res_access(&p, j);
                cr_assert_eq(got, want, "trial %d (n %d C %d cap %d policy %d) query %d key %d", trial, n, C, cap,
                             pol, q, j);
            }
            for (int k = 0; k < n; k++)
                cr_assert_eq(sp_residency_has(&r, k), p.time[k] >= 0, "trial %d query %d key %d", trial, q, k);
        }
        free(p.time);
        sp_residency_free(&r);
    }
}

Test(designs, residency_lru_and_fifo) {
    sp_residency r;
    const int32_t seq[] = {0, 2, 0, 4, 2, 0};
    /* one CORELET, two entries. LRU: 0 m, 2 m, 0 h, 4 m (evicts 2), 2 m (evicts 0), 0 m */
    const int lru[] = {0, 0, 1, 0, 0, 0};
    /* FIFO: 0 m, 2 m, 0 h, 4 m (evicts 0), 2 h, 0 m (evicts 2) */
    const int fifo[] = {0, 0, 1, 0, 1, 0};
    for (int pol = 0; pol < 2; pol++) {
        sp_residency_init(&r, 8, 1, 2, pol);
        for (int i = 0; i < 6; i++)
            cr_assert_eq(sp_residency_access(&r, seq[i]), pol ? fifo[i] : lru[i], "policy %d access %d", pol, i);
        sp_residency_free(&r);
    }
    /* two CORELETs: even keys in 0, odd in 1, each with its own capacity */
    sp_residency_init(&r, 8, 2, 1, 0);
    cr_assert_eq(sp_residency_access(&r, 0), 0);
    cr_assert_eq(sp_residency_access(&r, 1), 0);
    cr_assert_eq(sp_residency_access(&r, 0), 1);
    cr_assert_eq(sp_residency_access(&r, 2), 0);
    cr_assert_eq(sp_residency_has(&r, 1), 1);
    cr_assert_eq(sp_residency_has(&r, 0), 0);
    sp_residency_free(&r);
    /* three CORELETs (not a power of two: the remainder by division): 0 and 3 share CORELET 0 */
    sp_residency_init(&r, 8, 3, 1, 0);
    cr_assert_eq(sp_residency_access(&r, 0), 0);
    cr_assert_eq(sp_residency_access(&r, 3), 0); /* evicts 0 */
    cr_assert_eq(sp_residency_access(&r, 1), 0);
    cr_assert_eq(sp_residency_access(&r, 4), 0); /* evicts 1 */
    cr_assert_eq(sp_residency_has(&r, 3), 1);
    cr_assert_eq(sp_residency_has(&r, 0), 0);
    cr_assert_eq(sp_residency_has(&r, 1), 0);
    sp_residency_free(&r);
    int reuse, fetch;
    const int32_t a[] = {1, 3, 5, 7}, b[] = {3, 4, 5, 8, 9};
    sp_sld_split(a, 4, b, 5, &reuse, &fetch);
    cr_assert_eq(reuse, 2);
    cr_assert_eq(fetch, 3);
}

static void run_wl(const char *name, int threads, const char *mode, sp_wl_result *out) {
    sp_config c;
    sp_config_defaults(&c);
    sp_error err = {0};
    cr_assert_eq(sp_config_set(&c, "workload.sim_heads=4", "test", &err), SP_OK);
    cr_assert_eq(sp_config_set(&c, "workload.vit_b_seq=120", "test", &err), SP_OK);
    if (mode) {
        char b[64];
        snprintf(b, sizeof b, "workload.mode=%s", mode);
        cr_assert_eq(sp_config_set(&c, b, "test", &err), SP_OK);
    }
    sp_workload wl;
    cr_assert_eq(sp_workload_preset(&c, name, &wl, &err), SP_OK, "%s", err.msg);
    sp_sim_opts o = {.threads = threads};
    cr_assert_eq(sp_sim_run_synthetic(&c, &wl, &o, out, &err), SP_OK, "%s", err.msg);
}

Test(designs, identical_results_whatever_the_thread_count) {
    const char *modes[] = {NULL, "builtin"}; /* the configured functional op and the built-in op */
    for (int m = 0; m < 2; m++) {
        static sp_wl_result a, b;
        run_wl("ViT-B", 1, modes[m], &a);
        run_wl("ViT-B", 2, modes[m], &b);
        cr_assert(a.stats.pairs_kept > 0);
        cr_assert_eq(memcmp(a.r, b.r, sizeof a.r), 0, "results differ between 1 and 2 threads (mode %s)",
                     modes[m] ? modes[m] : "default");
        cr_assert_eq(memcmp(&a.stats, &b.stats, sizeof a.stats), 0);
        if (m == 1) cr_assert(strstr(a.mask_source, "relthresh") != NULL, "%s", a.mask_source);
    }
}

Test(designs, bad_geometry_is_a_clear_error) {
    sp_hw hw[3];
    unsigned mask;
    sp_error err = {0};
    /* buffer smaller than one vector: 0.05 KB = 51 B total, 25 B of K < 64 B */
    hw_sizes(hw, &mask, "chip.buffer_kb_s=0.05");
    cr_assert_eq(sp_hw_check_head(&hw[0], 100, 64, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, "smaller than one 64-byte vector"), "%s", err.msg);
    /* more CORELETs than keys */
    hw_sizes(hw, &mask, "chip.corelets_s=8");
    cr_assert_eq(sp_hw_check_head(&hw[0], 4, 8, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, "8 CORELETs but only 4 keys"), "%s", err.msg);
    /* zero banks: rejected by the config table, and by the hardware builder */
    sp_config c;
    sp_workload wl;
    sp_config_defaults(&c);
    cr_assert_eq(sp_config_set(&c, "memory.banks=0", "--set", &err), SP_ERR_CONFIG);
    c.memory_banks = 0;
    sp_hw one;
    cr_assert_eq(sp_hw_from_config(&c, 0, &one, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, "at least one channel and one bank"), "%s", err.msg);
    /* unknown attention mode */
    sp_config_defaults(&c);
    cr_assert_eq(sp_config_set(&c, "workload.mode=sprnt", "test", &err), SP_OK);
    cr_assert_eq(sp_workload_preset(&c, "ViT-B", &wl, &err), SP_OK);
    sp_wl_result res;
    cr_assert_eq(sp_sim_run_synthetic(&c, &wl, NULL, &res, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, "workload.mode='sprnt' is not an attention mode"), "%s", err.msg);
    /* unknown preset, unknown size */
    sp_config_defaults(&c);
    cr_assert_eq(sp_workload_preset(&c, "BERT-XXXL", &wl, &err), SP_ERR_ARG);
    cr_assert(strstr(err.msg, "unknown workload preset 'BERT-XXXL'"), "%s", err.msg);
    cr_assert_eq(sp_config_set(&c, "chip.sizes=S,XL", "test", &err), SP_OK);
    cr_assert_eq(sp_sim_hw(&c, hw, &mask, &err), SP_ERR_CONFIG);
    /* workload larger than memory: BERT-L Q/K/V = 3 x 384 x 64 x 384 heads = 27 MiB > 1 MiB */
    sp_config_defaults(&c);
    cr_assert_eq(sp_config_set(&c, "memory.capacity_mib=1", "test", &err), SP_OK);
    cr_assert_eq(sp_workload_preset(&c, "BERT-L", &wl, &err), SP_OK);
    sp_wl_result out;
    cr_assert_eq(sp_sim_run_synthetic(&c, &wl, NULL, &out, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, "more than memory.capacity_mib"), "%s", err.msg);
}

Test(designs, cli_errors_and_json) {
    static char out[1 << 20], errb[4096];
    int rc = th_run_sprint("run --no-real --workload Nope", out, sizeof out, errb, sizeof errb);
    cr_assert_neq(rc, 0);
    cr_assert(strstr(errb, "unknown workload preset 'Nope'"), "%s", errb);
    rc = th_run_sprint("run --no-real --workload BERT-L --set memory.capacity_mib=1", out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 1);
    cr_assert(strstr(errb, "capacity"), "%s", errb);
    rc = th_run_sprint("run --no-real --workload ViT-B --set chip.buffer_kb_s=0.05", out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 1);
    cr_assert(strstr(errb, "smaller than one"), "%s", errb);
    /* every bad input of issue 4 is a one-line error with a non-zero exit, none a crash */
    const struct {
        const char *args, *msg;
    } bad[] = {
        {"run --no-real --workload ViT-B --sizes S,X", "unknown size 'X'"},
        {"run --no-real --workload ViT-B --sizes ''", "chip.sizes is empty"},
        {"run --no-real --workload ViT-B --heads 0", "--heads: expected a whole number of heads >= 1, got '0'"},
        {"run --no-real --workload ViT-B --heads 2x", "--heads: expected a whole number"},
        {"run --no-real --workload ViT-B --heads 1000", "workload.sim_heads=1000 exceeds the 144 heads of ViT-B"},
        {"run --no-real --workload ViT-B --set memory.banks=0", "memory.banks"},
        {"run --no-real --workload ViT-B --sizes S --set chip.corelets_s=256", "256 CORELETs but only 197 keys"},
        {"run --no-real --workload ViT-B --set workload.mode=nosuch", "workload.mode='nosuch' is not an attention mode"},
        {"trace --workload ViT-B --layer x1", "--layer: expected a whole number >= 0, got 'x1'"},
        {"trace --workload ViT-B --head -1", "--head: expected a whole number >= 0, got '-1'"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        rc = th_run_sprint(bad[k].args, out, sizeof out, errb, sizeof errb);
        cr_assert(rc == 1 || rc == 2, "%s: rc %d", bad[k].args, rc);
        cr_assert(strstr(errb, bad[k].msg) != NULL, "%s: %s", bad[k].args, errb);
        const char *e = strstr(errb, ": error: "), *nl = e ? strchr(e, '\n') : NULL;
        cr_assert(nl && nl[1] == 0, "%s: not one error line at the end: %s", bad[k].args, errb);
    }
    rc = th_run_sprint("run --no-real --quiet --json --workload ViT-B --sizes S,M --heads 1", out, sizeof out, errb,
                       sizeof errb);
    cr_assert_eq(rc, 0, "%s", errb);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j != NULL, "not JSON: %.200s", out);
    cJSON *arr = cJSON_GetObjectItem(j, "results");
    cr_assert_eq(cJSON_GetArraySize(arr), 1 * 2 * SP_DESIGN_COUNT * 2);
    const char *fields[] = {"workload", "size", "design", "baseline", "cycles", "energy_pj", "traffic_bytes",
                            "speedup", "energy_reduction", "traffic_reduction"};
    cJSON *e;
    int seen_sprint = 0;
    cJSON_ArrayForEach(e, arr) {
        for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++)
            cr_assert(cJSON_GetObjectItem(e, fields[k]) != NULL, "missing %s", fields[k]);
        const char *d = cJSON_GetObjectItem(e, "design")->valuestring, *b = cJSON_GetObjectItem(e, "baseline")->valuestring;
        cr_assert(!strcmp(b, "paper") || !strcmp(b, "tiled"));
        if (!strcmp(d, "baseline-paper") && !strcmp(b, "paper"))
            cr_assert_float_eq(cJSON_GetObjectItem(e, "speedup")->valuedouble, 1.0, 1e-12);
        if (!strcmp(d, "sprint")) seen_sprint++;
    }
    cr_assert_eq(seen_sprint, 4);
    cJSON_Delete(j);
    /* CSV: units in the column names, one row per workload, size, design */
    const char *csv = th_temp_text("");
    char args[256];
    snprintf(args, sizeof args, "run --no-real --quiet --workload ViT-B --sizes S --heads 1 --csv %s", csv);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, errb, sizeof errb), 0, "%s", errb);
    FILE *f = fopen(csv, "r");
    cr_assert(f != NULL);
    char line[4096];
    cr_assert(fgets(line, sizeof line, f) != NULL);
    cr_assert(strstr(line, "energy_pj") && strstr(line, "reram_read_pj") && strstr(line, "bytes_read") &&
                  strstr(line, "speedup") && strstr(line, "baseline"),
              "%s", line);
    /* JSON keys = CSV columns (issue 10): every column is a key of the JSON report */
    snprintf(args, sizeof args, "run --no-real --quiet --workload ViT-B --sizes S --heads 1 --json");
    static char js[1 << 20];
    cr_assert_eq(th_run_sprint(args, js, sizeof js, errb, sizeof errb), 0, "%s", errb);
    char head[4096];
    snprintf(head, sizeof head, "%s", line);
    head[strcspn(head, "\n")] = 0;
    for (char *save = NULL, *col = strtok_r(head, ",", &save); col; col = strtok_r(NULL, ",", &save)) {
        char key[96];
        snprintf(key, sizeof key, "\"%s\":", col);
        cr_assert(strstr(js, key) != NULL, "CSV column %s is not a key of the JSON report", col);
    }
    int rows = 0;
    while (fgets(line, sizeof line, f)) rows++;
    fclose(f);
    cr_assert_eq(rows, 2 * SP_DESIGN_COUNT, "one row per design and baseline (the JSON results entries)");
    /* text table: every row of a workload's design table and of its energy breakdown is as
     * long as its header (right-aligned columns end under their names) */
    rc = th_run_sprint("run --no-real --quiet --detail --workload ViT-B --sizes S,M --heads 1", out, sizeof out, errb,
                       sizeof errb);
    cr_assert_eq(rc, 0, "%s", errb);
    int tables = 0;
    const char *heads[2] = {"\n   sz design", "\n   design "};
    for (int t = 0; t < 2; t++) {
        const char *p = strstr(out, heads[t]);
        cr_assert(p != NULL, "no table header %d in %s", t, out);
        p++;
        size_t hl = strcspn(p, "\n");
        int nrow = 0;
        for (const char *q = p + hl + 1; nrow < (t ? SP_DESIGN_COUNT : 2 * SP_DESIGN_COUNT); nrow++) {
            size_t l = strcspn(q, "\n");
            cr_assert_eq(l, hl, "table %d row %d is %zu characters, header %zu:\n%.*s\n%.*s", t, nrow, l, hl, (int)hl, p,
                         (int)l, q);
            q += l + 1;
        }
        tables++;
    }
    cr_assert_eq(tables, 2);
    /* without S, "what differs" explains the smallest simulated size instead of printing nothing */
    rc = th_run_sprint("run --no-real --quiet --workload ViT-B --sizes M --heads 1", out, sizeof out, errb,
                       sizeof errb);
    cr_assert_eq(rc, 0, "%s", errb);
    const char *why = strstr(out, "What differs and why (M size):\n");
    cr_assert(why != NULL, "%s", out);
    cr_assert(strstr(why, "ViT-B       speedup") != NULL && strstr(why, "vs 2.7x") != NULL, "%s", why);
    cr_assert(strstr(out, "nan") == NULL, "%s", out);
    /* trace: one CSV row per valid query of the head, counts consistent with the index list */
    rc = th_run_sprint("trace --quiet --workload BERT-B --set workload.bert_b_seq=50 --layer 2 --head 3", out, sizeof out,
                       errb, sizeof errb);
    cr_assert_eq(rc, 0, "%s", errb);
    int lines = 0;
    for (char *p = strtok(out, "\n"); p; p = strtok(NULL, "\n"), lines++) {
        if (lines == 0) {
            cr_assert(!strncmp(p, "layer,head,seq,qi", 17), "%s", p);
            continue;
        }
        int l, h, qi, pos, nv, nm, nk, nw, ru;
        long long sq;
        cr_assert_eq(sscanf(p, "%d,%d,%lld,%d,%d,%d,%d,%d,%d,%d,", &l, &h, &sq, &qi, &pos, &nv, &nm, &nk, &nw, &ru), 10);
        cr_assert_eq(l, 2);
        cr_assert_eq(h, 3);
        cr_assert_eq(nw + ru, nm);
        int commas = 0;
        for (char *c = strrchr(p, ',') + 1; *c; c++) commas += *c == ';';
        cr_assert_eq(nm ? commas + 1 : 0, nm, "%s", p);
    }
    cr_assert_eq(lines, 1 + 27); /* 50 tokens, 46% padding: 27 valid queries */
}

/* 4096 tokens x many heads: counts beyond 2^31 stay exact (the baseline of one head reads
 * 4096 x 2 x 4096 x 64 B = 2.1 GB, a whole BERT-L-shaped model 800 GB). */
Test(designs, no_overflow_at_4096_tokens_many_heads) {
    sp_hw hw[3];
    unsigned mask;
    hw_sizes(hw, &mask, NULL);
    const long n = 4096, d = 64;
    sp_head_shape sh = {.n_k = (int)n, .d = (int)d, .causal = 1, .n_valid = (int)n};
    sp_sim_head *h = sp_sim_head_create(hw, 1u, &sh);
    static sp_design_result res[3][SP_DESIGN_COUNT];
    memset(res, 0, sizeof res);
    const double scale = 24.0 * 16.0; /* every head of BERT-L from one simulated head */
    sp_sim_head_finish(h, scale, res, NULL);
    sp_sim_head_free(h);
    /* partial residency: 128 keys resident, 3968 stream per query */
    double per_head = (double)n * d + 2.0 * d * (128 + (double)n * (n - 128));
    cr_assert_gt(per_head, 2e9);
    cr_assert_gt(scale * per_head, 2147483647.0);
    cr_assert_float_eq(res[0][SP_DESIGN_BASELINE].bytes_read, scale * per_head, 0.5);
    cr_assert_float_eq(res[0][SP_DESIGN_BASELINE].requests, scale * (n + 2.0 * (128 + (double)n * (n - 128))), 0.5);
    cr_assert_float_eq(res[0][SP_DESIGN_BASELINE].pairs_qk, scale * (double)n * n, 0.5);
    /* causal mask-only: query i needs i+1 keys and values; the first 128 are fetched once,
     * query i streams the other i+1-128 */
    cr_assert_float_eq(res[0][SP_DESIGN_MASK_ONLY].bytes_read,
                       scale * ((double)n * d + 2.0 * d * (128 + (double)(n - 128) * (n - 127) / 2)), 0.5);
    cr_assert_float_eq(res[0][SP_DESIGN_BASELINE].write_once_pj, scale * 3.0 * n * d * 8 * hw[0].e_reram_write_bit,
                       1e-6 * scale * 3.0 * n * d * 8 * hw[0].e_reram_write_bit);
    cr_assert(res[0][SP_DESIGN_BASELINE].cycles > 0 && isfinite(res[0][SP_DESIGN_BASELINE].cycles));
    /* tiled at S: tile = floor(8192 B / (3 x 64 + 8) B) = 40 queries (q, 16-bit accumulators,
     * max and sum), ceil(4096 / 40) = 103 passes over K and V */
    cr_assert_float_eq(res[0][SP_DESIGN_TILED].bytes_read, scale * ((double)n * d + 103.0 * 2 * n * d), 0.5);
}

/* The residency capacity comes from the K and the V buffer separately: with chip.k_share =
 * 0.75 the S chip has 12 KB of K (192 vectors of 64 B) but 4 KB of V (64 vectors), so a
 * 100-key head does not fit and the baseline streams; with 0.5 (128 + 128) it fits. */
Test(designs, capacity_from_k_and_v_buffers_separately) {
    const char *share[2] = {"chip.k_share=0.75", "chip.k_share=0.5"};
    for (int k = 0; k < 2; k++) {
        sp_hw hw[3];
        unsigned mask;
        hw_sizes(hw, &mask, share[k]);
        const int n = 100, d = 64;
        sp_head_shape sh = {.n_k = n, .d = d, .causal = 0, .n_valid = n};
        sp_sim_head *h = sp_sim_head_create(hw, 1u, &sh);
        static sp_design_result res[3][SP_DESIGN_COUNT];
        finish_head(h, res);
        /* 0.75: 64 keys resident (partial residency), 36 stream per query */
        double expect = k == 0 ? (double)n * d + 2.0 * d * (64 + (double)n * 36) : 3.0 * n * d;
        cr_assert_float_eq(res[0][SP_DESIGN_BASELINE].bytes_read, expect, 0.5, "%s: %g", share[k],
                           res[0][SP_DESIGN_BASELINE].bytes_read);
    }
}

/* In-memory thresholding of a key longer than a crossbar column spans ceil(d / rows) columns:
 * d = 256 on 128-row arrays takes two rounds of tAxTh per group of keys. */
Test(designs, thresholding_rounds_span_columns) {
    sp_hw hw[3];
    unsigned mask;
    hw_sizes(hw, &mask, NULL);
    for (int s = 0; s < 3; s++) hw[s].arrays_parallel = 1;
    const int n = 512, d = 256;
    int32_t kp[1] = {7};
    static sp_design_result res[3][SP_DESIGN_COUNT];
    th_sim_one_query(hw, 1u, n, d, kp, 1, kp, 1, res);
    double rounds = ceil((double)n / hw[0].xbar_cols) * ceil((double)d / hw[0].xbar_rows);
    cr_assert_eq(rounds, 8.0); /* 4 groups of 128 keys x 2 column spans */
    double readp = hw[0].t_cl_cyc + sp_mem_burst(&hw[0], n / 8);
    cr_assert_gt(rounds * hw[0].t_axth_cyc, readp); /* the arrays are the slowest step */
    cr_assert_float_eq(res[0][SP_DESIGN_SPRINT].busy_thr, rounds * hw[0].t_axth_cyc, 1e-9);
}

/* A subset of heads stands for the whole model: the mask-independent baseline totals equal
 * the per-head count times every head of the model, whatever workload.sim_heads is. */
Test(designs, head_subset_scales_to_whole_model) {
    for (int nh = 1; nh <= 3; nh += 2) {
        sp_config c;
        sp_config_defaults(&c);
        sp_error err = {0};
        char b[64];
        snprintf(b, sizeof b, "workload.sim_heads=%d", nh);
        cr_assert_eq(sp_config_set(&c, b, "test", &err), SP_OK);
        cr_assert_eq(sp_config_set(&c, "workload.mode=builtin", "test", &err), SP_OK);
        cr_assert_eq(sp_config_set(&c, "chip.sizes=S", "test", &err), SP_OK);
        sp_workload wl;
        cr_assert_eq(sp_workload_preset(&c, "ViT-B", &wl, &err), SP_OK);
        static sp_wl_result out;
        cr_assert_eq(sp_sim_run_synthetic(&c, &wl, NULL, &out, &err), SP_OK, "%s", err.msg);
        const double n = wl.seq, d = wl.d, heads = 12.0 * 12.0; /* 197 tokens > 128 per buffer: 69 stream */
        cr_assert_float_eq(out.scale, heads / nh, 1e-12);
        cr_assert_float_eq(out.r[0][SP_DESIGN_BASELINE].bytes_read, heads * (n * d + 2 * d * (128 + n * 69)), 1e-6);
        cr_assert_float_eq(out.r[0][SP_DESIGN_BASELINE].queries, heads * n, 1e-6);
        cr_assert_float_eq(out.r[0][SP_DESIGN_SPRINT].bytes_written, heads * 3 * n * d, 1e-6);
    }
}

/* sprint trace --real and sprint run see the same masks (issue 7 item 8): the same op with the
 * attention outputs on, so the trace's kept counts sum to the run's kept fractions; rows come
 * sorted by (sequence, layer, head, query) whatever the thread timing. */
Test(designs, trace_real_matches_run_real) {
    TH_NEED_SHARED(model, "models/stories260K.bin");
    (void)model;
    const char *csv = th_temp_text("");
    static char out[1 << 20], errb[8192];
    char args[1024];
    snprintf(args, sizeof args, "trace --real --quiet --set sim.trace_stories=2 --out %s", csv);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, errb, sizeof errb), 0, "%s", errb);
    FILE *f = fopen(csv, "r");
    cr_assert(f);
    static char line[1 << 16];
    double vis = 0, mk = 0, kp = 0;
    long long pkey[4] = {-1, -1, -1, -1}, rows = 0;
    cr_assert(fgets(line, sizeof line, f)); /* header */
    while (fgets(line, sizeof line, f)) {
        int layer, head, qi, pos, nv, nmk, nk;
        long long seq;
        cr_assert_eq(sscanf(line, "%d,%d,%lld,%d,%d,%d,%d,%d", &layer, &head, &seq, &qi, &pos, &nv, &nmk, &nk), 8);
        long long key[4] = {seq, layer, head, qi};
        int cmp = 0;
        for (int i = 0; i < 4 && !cmp; i++) cmp = key[i] < pkey[i] ? -1 : key[i] > pkey[i];
        cr_assert_gt(cmp, 0, "row %lld out of order", rows);
        memcpy(pkey, key, sizeof key);
        vis += nv, mk += nmk, kp += nk, rows++;
    }
    fclose(f);
    cr_assert_gt(rows, 100);
    cr_assert_eq(th_run_sprint("run --real-only --json --quiet --sizes S --set sim.trace_stories=2", out, sizeof out, errb,
                               sizeof errb),
                 0, "%s", errb);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j);
    cJSON *w = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "workloads"), 0);
    double fmk = cJSON_GetObjectItem(w, "mem_kept_fraction")->valuedouble;
    double fkp = cJSON_GetObjectItem(w, "kept_fraction")->valuedouble;
    cr_assert_float_eq(mk / vis, fmk, 1e-9, "trace in-memory kept %g vs run %g", mk / vis, fmk);
    cr_assert_float_eq(kp / vis, fkp, 1e-9, "trace kept %g vs run %g", kp / vis, fkp);
    cJSON_Delete(j);
}

/* The report opens with the reproduction table (issue 7 item 7): the preset named, the paper's
 * values beside ours (ViT-B's Fig. 11 S bar 2.80x) on the reproduction configuration, the
 * per-design tables only with --detail; after a model key changes the header says so and the
 * paper column is gone. */
Test(designs, report_summary_first_paper_only_when_compared) {
    static char out[1 << 18], errb[8192];
    int rc = th_run_sprint("run --no-real --quiet --workload ViT-B --sizes S,M --heads 2", out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0, "%s", errb);
    cr_assert(!strncmp(out, "== sprint run: preset paper-reproduction", 40), "%.200s", out);
    cr_assert(strstr(out, "Reproduction table") && strstr(out, "/2.80"), "%s", out);
    cr_assert(strstr(out, "\n   sz design") == NULL, "per-design table without --detail");
    cr_assert(strstr(out, "GB/s effective"), "%s", out);
    rc = th_run_sprint("run --no-real --quiet --workload ViT-B --sizes S,M --heads 2 --config ../configs/sim-physical.ini "
                       "--set memory.channels=2",
                       out, sizeof out, errb, sizeof errb);
    if (rc != 0) /* the test may run from another directory: the key alone */
        rc = th_run_sprint("run --no-real --quiet --workload ViT-B --sizes S,M --heads 2 --set memory.channels=2", out,
                           sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0, "%s", errb);
    cr_assert(strstr(out, "NOT the paper-reproduction configuration") && strstr(out, "memory.channels=2"), "%s", out);
    cr_assert(strstr(out, "/2.80") == NULL, "paper column shown for a changed configuration:\n%s", out);
}
