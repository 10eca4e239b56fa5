/* test_fn_decode.c: does the functional decode operator write one key per step, screen every
 * key so far for each query head of a GQA group, report the group's fetched union and the
 * keys new since the previous step, and reduce to dense attention when nothing is pruned? Does
 * the simulator's decode mode charge the write, the screen and the traffic it should? */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sprint/decode_sim.h"
#include "sprint/fn_decode.h"
#include "timing/memory.h"
#include "helpers.h"
#include <cjson/cJSON.h>

typedef struct recs {
    sp_decode_record r[256];
    int n;
} recs;

static void collect(void *user, const sp_decode_record *rec) {
    recs *R = user;
    cr_assert_lt(R->n, 256);
    R->r[R->n++] = *rec;
}

static void randn(float *x, size_t n, double sd, uint64_t seed) {
    sp_rng r;
    sp_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)(sd * sp_rng_next_normal(&r));
}

static sp_attn_head head(int h, int g, int pos, int d, const float *q, const float *k, const float *v, float *out) {
    sp_attn_head a = {.layer = 0, .head = h, .kv_head = h / g, .seq_id = 7, .n_q = 1, .n_k = pos + 1, .d = d, .q = q,
                      .k = k, .v = v, .out = out, .ldq = d, .ldk = d, .ldv = d, .ldo = d, .causal = 1,
                      .q_offset = pos, .scale = 1.0f / sqrtf((float)d)};
    return a;
}

/* With a huge delta nothing is pruned: every step equals the dense reference operator. */
Test(fn_decode, huge_delta_equals_dense) {
    sp_config cfg;
    sp_config_defaults(&cfg);
    cr_assert_eq(sp_config_set(&cfg, "decode.delta=1000", "test", NULL), SP_OK);
    int d = 16, n = 12, g = 2;
    float q[12 * 16], k[12 * 16], v[12 * 16], o1[16], o2[16];
    randn(q, sizeof q / 4, 1, 1), randn(k, sizeof k / 4, 1, 2), randn(v, sizeof v / 4, 1, 3);
    recs R = {0};
    sp_attn_op *op = NULL, *ref = sp_attn_dense_create(1, g);
    sp_error err = {0};
    cr_assert_eq(sp_fn_decode_op_create(&cfg, 1, g, 1, d, n, collect, &R, &op, &err), SP_OK, "%s", err.msg);
    for (int pos = 0; pos < n; pos++)
        for (int h = 0; h < g; h++) {
            sp_attn_head a = head(h, g, pos, d, q + pos * d, k, v, o1), b = a;
            b.out = o2;
            cr_assert_eq(op->run(op, &a, &err), SP_OK, "%s", err.msg);
            cr_assert_eq(ref->run(ref, &b, &err), SP_OK);
            for (int e = 0; e < d; e++) cr_assert_float_eq(o1[e], o2[e], 1e-6, "pos %d head %d elem %d", pos, h, e);
        }
    cr_assert_eq(R.n, n, "one record per step per KV head");
    for (int i = 0; i < n; i++) {
        cr_assert_eq(R.r[i].pos, i);
        cr_assert_eq(R.r[i].n_visible, i + 1);
        cr_assert_eq(R.r[i].fetched, i + 1, "everything fetched");
        cr_assert_eq(R.r[i].new_fetched, i == 0 ? 1 : 1, "only the new key is new at step %d", i);
        cr_assert_eq(R.r[i].kept, (double)g * (i + 1));
        cr_assert_eq(R.r[i].cells_written, d);
        cr_assert_eq(R.r[i].max_writes_per_cell, 1);
    }
    sp_attn_op_free(op);
    sp_attn_op_free(ref);
}

/* Planted keys: key 0 (a sink, axis d-1) and key j >= 1 along axis j. Each query head looks
 * at the sink and at its own key with score 10 nats, every other key scores 0: with delta 1
 * the anchors (key 0 and the new key) give the max, the comparator keeps {0, own key, new key},
 * the exact stage {0, own key}. Heads of the group looking at different keys make the fetched
 * union; a step whose queries move to other keys fetches them as new (the sink is not new). A
 * second sequence rewrites column 0. */
Test(fn_decode, gqa_union_and_new_keys) {
    sp_config cfg;
    sp_config_defaults(&cfg);
    cr_assert_eq(sp_config_set(&cfg, "decode.delta=1", "test", NULL), SP_OK);
    int d = 16, n = 8, g = 2;
    float k[8 * 16] = {0}, v[8 * 16], q[2 * 16], out[16];
    k[d - 1] = 1.0f;
    for (int j = 1; j < n; j++) k[j * d + j] = 1.0f;
    randn(v, sizeof v / 4, 1, 5);
    recs R = {0};
    sp_attn_op *op = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_fn_decode_op_create(&cfg, 1, g, 1, d, n, collect, &R, &op, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(sp_fn_decode_prefill(op, 0, 0, 7, k, d, 6, &err), SP_OK, "%s", err.msg);
    for (int pos = 6; pos < 8; pos++) {
        memset(q, 0, sizeof q);
        int t0 = pos == 6 ? 1 : 3, t1 = pos == 6 ? 2 : 4; /* head 0 looks at key t0, head 1 at t1 */
        q[t0] = 40.0f, q[d + t1] = 40.0f, q[d - 1] = 40.0f, q[2 * d - 1] = 40.0f;
        for (int h = 0; h < g; h++) {
            sp_attn_head a = head(h, g, pos, d, q + h * d, k, v, out);
            cr_assert_eq(op->run(op, &a, &err), SP_OK, "%s", err.msg);
            int t = h ? t1 : t0;
            for (int e = 0; e < d; e++) /* softmax mass split evenly between the sink and the own key */
                cr_assert_float_eq(out[e], 0.5f * (v[e] + v[t * d + e]), 1e-3, "pos %d head %d", pos, h);
        }
    }
    cr_assert_eq(R.n, 2);
    cr_assert_eq(R.r[0].mem_kept, 6.0, "mem kept %g", R.r[0].mem_kept);
    cr_assert_eq(R.r[0].kept, 4.0, "kept %g", R.r[0].kept);
    cr_assert_eq(R.r[0].fetched, 4, "union {0, 1, 2, 6}: %d", R.r[0].fetched);
    cr_assert_eq(R.r[0].new_fetched, 4, "first step after a prefill: all new");
    cr_assert_eq(R.r[1].fetched, 4, "union {0, 3, 4, 7}: %d", R.r[1].fetched);
    cr_assert_eq(R.r[1].new_fetched, 3, "{3, 4, 7} new, the sink was fetched at step 6");
    /* a new sequence: column 0 written a second time */
    memset(q, 0, sizeof q);
    for (int h = 0; h < g; h++) {
        sp_attn_head a = head(h, g, 0, d, q, k, v, out);
        a.seq_id = 8;
        cr_assert_eq(op->run(op, &a, &err), SP_OK, "%s", err.msg);
    }
    cr_assert_eq(R.r[2].max_writes_per_cell, 2);
    /* out of order: a step at position 3 of sequence 8 before 1 and 2 */
    sp_attn_head bad = head(0, g, 3, d, q, k, v, out);
    bad.seq_id = 8;
    cr_assert_eq(op->run(op, &bad, &err), SP_ERR_ARG);
    sp_attn_head two = head(0, g, 1, d, q, k, v, out);
    two.n_q = 2;
    cr_assert_eq(op->run(op, &two, &err), SP_ERR_ARG, "more than one query per call");
    sp_attn_op_free(op);
}

Test(decode_sim, costs_follow_the_record) {
    sp_config cfg;
    sp_config_defaults(&cfg);
    sp_hw hw;
    cr_assert_eq(sp_hw_from_config(&cfg, 0, &hw, NULL), SP_OK);
    sp_decode_record r = {.group = 4, .n_visible = 8192, .mem_kept = 4 * 400, .kept = 4 * 300, .fetched = 1000,
                          .new_fetched = 200, .cells_written = 128, .write_pulses = 2};
    sp_decode_cost a[SP_DDESIGN_COUNT], b[SP_DDESIGN_COUNT];
    memset(a, 0, sizeof a), memset(b, 0, sizeof b);
    sp_decode_sim_step(&hw, &r, 128, 4, 50.0, 1000.0, a);
    cr_assert_float_eq(a[0].write_cycles, 100.0, 1e-9, "2 pulses x 50 ns at 1 GHz");
    cr_assert_float_eq(a[0].array_write_pj, 128 * 4 * hw.e_reram_write_bit, 1e-9);
    cr_assert_float_eq(a[1].bytes_read, 8192.0 * 2 * 128, 1e-9, "dense streams 8-bit K and V");
    cr_assert_float_eq(a[2].bytes_read, (8192.0 + 1000) * 128, 1e-9, "topk streams K, fetches survivors' V");
    cr_assert_float_eq(a[0].bytes_read, 1000.0 * (64 + 128), 1e-9, "SPRINT fetches K LSBs + V of the union");
    for (int k = 0; k < SP_DDESIGN_COUNT; k++) {
        double s = 0;
        for (int e = 0; e < SP_E_COUNT; e++) s += a[k].energy_pj[e];
        cr_assert_float_eq(s, a[k].energy_pj_total, 1e-6 * s);
    }
    cr_assert_lt(a[0].cycles, a[1].cycles, "SPRINT faster than dense at 12%% fetched");
    cr_assert_lt(a[0].energy_pj_total, a[1].energy_pj_total);
    /* twice the context: dense time at least 1.9x (bandwidth-bound stream), the screen grows too */
    r.n_visible = 16384;
    sp_decode_sim_step(&hw, &r, 128, 4, 50.0, 1000.0, b);
    cr_assert_gt(b[1].cycles, 1.9 * a[1].cycles, "dense %g vs %g", b[1].cycles, a[1].cycles);
    cr_assert_gt(b[0].screen_cycles, a[0].screen_cycles);
}

Test(cli, decode_synthetic_json) {
    char out[16384], errb[4096];
    int rc = th_run_sprint("decode --synthetic --quiet --set decode.context=256 --set decode.steps=4 --set "
                           "decode.kv_heads=1 --set decode.head_dim=64 --json",
                           out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0, "%s", errb);
    cJSON *o = cJSON_Parse(out);
    cr_assert_not_null(o, "not JSON: %s", out);
    cr_assert_eq(cJSON_GetObjectItem(o, "decode_steps")->valuedouble, 4.0);
    cJSON *ds = cJSON_GetObjectItem(o, "designs");
    cr_assert_eq(cJSON_GetArraySize(ds), SP_DDESIGN_COUNT);
    double us_s = cJSON_GetObjectItem(cJSON_GetArrayItem(ds, 0), "us_per_token")->valuedouble;
    double us_d = cJSON_GetObjectItem(cJSON_GetArrayItem(ds, 1), "us_per_token")->valuedouble;
    cr_assert(us_s > 0 && us_d > us_s, "sprint %g us, dense %g us", us_s, us_d);
    /* 1e12 tokens, 4 generated per sequence of 260 columns: 2.5e11 writes per cell */
    cr_assert_float_eq(cJSON_GetObjectItem(o, "writes_per_cell_restart")->valuedouble, 2.5e11, 1e3);
    cJSON_Delete(o);
    rc = th_run_sprint("decode --synthetic --size X", out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 2, "bad --size is a usage error");
}
