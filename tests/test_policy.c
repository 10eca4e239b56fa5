/* test_policy.c: is the thresholds file round-tripped, versioned and checked against the
 * model shape, and do the policies choose the keys they promise? */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "functional/fn_internal.h"
#include "helpers.h"

Test(policy, thresholds_file_round_trip) {
    sp_thresholds *t = sp_thresholds_new("head", 2, 3, 8);
    for (int i = 0; i < 6; i++) t->values[i] = 0.125 * i - 0.3;
    t->values[5] = -INFINITY;
    t->nll_dense = 1.25;
    snprintf(t->mode, sizeof t->mode, "sprint");
    const char *path = th_temp_text("");
    sp_error err = {0};
    cr_assert_eq(sp_thresholds_save(t, path, &err), SP_OK, "%s", err.msg);
    sp_thresholds *u = NULL;
    cr_assert_eq(sp_thresholds_load(path, &u, &err), SP_OK, "%s", err.msg);
    cr_assert_str_eq(u->kind, "head");
    cr_assert_eq(u->n_layers, 2);
    cr_assert_eq(u->n_heads, 3);
    cr_assert_eq(u->head_dim, 8);
    for (int i = 0; i < 6; i++) cr_assert_eq(u->values[i], t->values[i], "value %d", i);
    cr_assert_eq(u->nll_dense, 1.25);
    cr_assert_str_eq(u->mode, "sprint");
    sp_thresholds_free(t), sp_thresholds_free(u);
}

Test(policy, layer_file_repeats_over_heads_and_relative_file_has_delta) {
    const char *path = th_temp_text("# comment\nsprint-thresholds 1\nkind layer\nlayers 2\nheads 4\nhead_dim 8\n"
                                    "values\n1.5\n-2\n");
    sp_thresholds *t = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_thresholds_load(path, &t, &err), SP_OK, "%s", err.msg);
    for (int h = 0; h < 4; h++) cr_assert(t->values[h] == 1.5 && t->values[4 + h] == -2);
    sp_thresholds_free(t);
    path = th_temp_text("sprint-thresholds 1\nkind onchip\nlayers 5\nheads 8\nhead_dim 8\ndelta 3.25\n");
    cr_assert_eq(sp_thresholds_load(path, &t, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(t->delta, 3.25);
    cr_assert_null(t->values);
    sp_thresholds_free(t);
}

static void bad_file(const char *text, sp_status want, const char *needle) {
    const char *path = th_temp_text(text);
    sp_thresholds *t = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_thresholds_load(path, &t, &err), want, "'%s' -> %s", text, err.msg);
    cr_assert(strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
    cr_assert_null(t);
}

Test(policy, malformed_files_are_clear_errors) {
    bad_file("hello\n", SP_ERR_FORMAT, "not a sprint thresholds file");
    bad_file("sprint-thresholds 2\n", SP_ERR_FORMAT, "version 2");
    bad_file("sprint-thresholds 1garbage\n", SP_ERR_FORMAT, "not a sprint thresholds file");
    bad_file("sprint-thresholds 1\nkind magic\n", SP_ERR_FORMAT, ":2: unknown policy kind 'magic'");
    bad_file("sprint-thresholds 1\nkind head\nlayers 1\nheads 2\nhead_dim 8\nvalues\n1 x\n", SP_ERR_FORMAT,
             ":7: layer 0: expected 2 numbers");
    bad_file("sprint-thresholds 1\nkind head\nlayers 2\nheads 1\nhead_dim 8\nvalues\n1\n", SP_ERR_FORMAT,
             "expected 2 rows");
    bad_file("sprint-thresholds 1\nkind head\nlayers 1\nheads 1\nvalues\n1\n", SP_ERR_FORMAT, "model shape");
    bad_file("sprint-thresholds 1\nkind oracle\nlayers 1\nheads 1\nhead_dim 4\ndelta nan\n", SP_ERR_FORMAT,
             "finite number");
    /* corrupt shapes: a huge or non-integer shape is refused before any allocation (was: a
     * 10^10-entry calloc that aborted, and an undefined double -> int conversion) */
    bad_file("sprint-thresholds 1\nkind head\nlayers 100000\nheads 100000\nhead_dim 8\nvalues\n1\n", SP_ERR_FORMAT,
             "model shape");
    bad_file("sprint-thresholds 1\nkind oracle\nlayers 1e300\nheads 1\nhead_dim 8\ndelta 1\n", SP_ERR_FORMAT,
             "layers");
    bad_file("sprint-thresholds 1\nkind oracle\nlayers 2.5\nheads 1\nhead_dim 8\ndelta 1\n", SP_ERR_FORMAT, "layers");
    bad_file("sprint-thresholds 1\nkind oracle\nlayers 2\nheads 1\nhead_dim 8\ncalib_stories -3\n", SP_ERR_FORMAT,
             "calib_stories");
    /* truncated in the middle of a row, and a NaN threshold */
    bad_file("sprint-thresholds 1\nkind head\nlayers 1\nheads 3\nhead_dim 8\nvalues\n1 2", SP_ERR_FORMAT,
             "expected 3 numbers");
    bad_file("sprint-thresholds 1\nkind head\nlayers 1\nheads 2\nhead_dim 8\nvalues\n1 nan\n", SP_ERR_FORMAT,
             "expected 2 numbers");
    sp_thresholds *t = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_thresholds_load("/nonexistent/th.txt", &t, &err), SP_ERR_IO);
}

Test(policy, file_for_another_model_shape_is_an_error) {
    sp_thresholds *t = sp_thresholds_new("head", 5, 8, 8);
    const char *path = th_temp_text("");
    sp_error err = {0};
    cr_assert_eq(sp_thresholds_save(t, path, &err), SP_OK);
    sp_config cfg;
    sp_config_defaults(&cfg);
    cr_assert_eq(sp_config_set(&cfg, "policy.kind=head", "t", &err), SP_OK);
    snprintf(cfg.policy_file, sizeof cfg.policy_file, "%s", path);
    sp_op_request req = {.mode = "sprint", .cfg = &cfg};
    sp_attn_op *op = NULL;
    cr_assert_eq(sp_attn_op_create(&req, 12, 16, &op, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, "5 layers x 8 heads") && strstr(err.msg, "12 x 16"), "%s", err.msg);
    cr_assert_eq(sp_attn_op_create(&req, 5, 8, &op, &err), SP_OK, "%s", err.msg);
    /* right layers/heads, wrong head dim: found when the op sees a head */
    float q[16] = {0}, k[16] = {0}, v[16] = {0}, o[16];
    sp_attn_head h = {.n_q = 1, .n_k = 1, .d = 16, .q = q, .k = k, .v = v, .out = o, .ldq = 16, .ldk = 16, .ldv = 16,
                      .ldo = 16, .scale = 0.25f};
    cr_assert_eq(op->run(op, &h, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, "head dim 8"), "%s", err.msg);
    sp_attn_op_free(op);
    /* kind mismatch */
    cr_assert_eq(sp_config_set(&cfg, "policy.kind=layer", "t", &err), SP_OK);
    cr_assert_eq(sp_attn_op_create(&req, 5, 8, &op, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, "policy 'head'"), "%s", err.msg);
    /* given thresholds object, same checks */
    req.thresholds = t;
    cfg.policy_file[0] = 0;
    cr_assert_eq(sp_attn_op_create(&req, 5, 8, &op, &err), SP_ERR_CONFIG);
    sp_thresholds_free(t);
}

Test(policy, per_head_thresholds_are_applied_per_head) {
    sp_thresholds *t = sp_thresholds_new("head", 1, 2, 2);
    t->values[0] = 100;        /* head 0: everything pruned */
    t->values[1] = -INFINITY;  /* head 1: nothing pruned */
    sp_config cfg;
    sp_config_defaults(&cfg);
    sp_error err = {0};
    cr_assert_eq(sp_config_set(&cfg, "policy.kind=head", "t", &err), SP_OK);
    sp_op_request req = {.mode = "pruning", .cfg = &cfg, .thresholds = t};
    sp_attn_op *op = NULL;
    cr_assert_eq(sp_attn_op_create(&req, 1, 2, &op, &err), SP_OK, "%s", err.msg);
    float q[2] = {1, 0}, k[6] = {1, 0, 0, 1, -1, 0}, v[6] = {1, 1, 2, 2, 3, 3}, o[2];
    for (int hh = 0; hh < 2; hh++) {
        sp_attn_head h = {.head = hh, .n_q = 1, .n_k = 3, .d = 2, .q = q, .k = k, .v = v, .out = o, .ldq = 2,
                          .ldk = 2, .ldv = 2, .ldo = 2, .scale = 1};
        cr_assert_eq(op->run(op, &h, &err), SP_OK);
    }
    cr_assert_eq(op->stats[0].pairs_kept, 0);
    cr_assert_eq(op->stats[1].pairs_kept, 3);
    sp_attn_op_free(op);
    sp_thresholds_free(t);
}

Test(policy, topk_keeps_exactly_k_and_onchip_estimate_never_exceeds_max) {
    int n = 120, d = 32;
    float *q = malloc(sizeof(float) * n * d), *k = malloc(sizeof(float) * n * d), *v = malloc(sizeof(float) * n * d);
    float *o = malloc(sizeof(float) * n * d);
    sp_rng r;
    sp_rng_seed(&r, 77);
    for (int i = 0; i < n * d; i++) q[i] = (float)sp_rng_next_normal(&r), k[i] = (float)sp_rng_next_normal(&r),
                                     v[i] = (float)sp_rng_next_normal(&r);
    sp_config cfg;
    sp_config_defaults(&cfg);
    sp_error err = {0};
    cr_assert_eq(sp_config_set(&cfg, "policy.kind=topk", "t", &err), SP_OK);
    cr_assert_eq(sp_config_set(&cfg, "policy.topk_fraction=0.1", "t", &err), SP_OK);
    sp_op_request req = {.mode = "pruning", .cfg = &cfg};
    sp_attn_op *op = NULL;
    cr_assert_eq(sp_attn_op_create(&req, 1, 1, &op, &err), SP_OK);
    sp_attn_head h = {.n_q = n, .n_k = n, .d = d, .q = q, .k = k, .v = v, .out = o, .ldq = d, .ldk = d, .ldv = d,
                      .ldo = d, .scale = 0.2f, .causal = 1};
    cr_assert_eq(op->run(op, &h, &err), SP_OK);
    double want = 0;
    for (int i = 0; i < n; i++) want += ceil(0.1 * (i + 1));
    cr_assert_eq(op->stats[0].pairs_kept, want);
    sp_attn_op_free(op);
    /* onchip with sources = anchors only, memory ideal and no margin at b = 8: the in-memory
     * threshold est - delta <= max - delta, so memory never drops a key the oracle keeps
     * beyond the quantisation error; with the sigma margin: no false prune at all. */
    cr_assert_eq(sp_config_set(&cfg, "policy.kind=onchip", "t", &err), SP_OK);
    cr_assert_eq(sp_config_set(&cfg, "policy.onchip_source=anchors", "t", &err), SP_OK);
    cr_assert_eq(sp_config_set(&cfg, "policy.delta=1.5", "t", &err), SP_OK);
    req.mode = "sprint";
    cr_assert_eq(sp_attn_op_create(&req, 1, 1, &op, &err), SP_OK);
    cr_assert_eq(op->run(op, &h, &err), SP_OK);
    cr_assert_eq(op->stats[0].false_prunes, 0);
    cr_assert(op->stats[0].pairs_mem_kept > op->stats[0].pairs_kept, "anchors underestimate: extra fetches");
    sp_attn_op_free(op);
    free(q), free(k), free(v), free(o);
}
