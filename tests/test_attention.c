/* test_attention.c: does the dense attention operator compute softmax(scale q.k) v over exactly
 * the keys the masks allow, count what it sees, and does the fast dense path agree with it? */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sprint/attention.h"

static float *randn(int n, uint64_t seed, float sd) {
    float *x = malloc((size_t)n * sizeof *x);
    for (int i = 0; i < n; i++) x[i] = sd * (float)sp_rng_normal(sp_rng_key(seed, 7, (uint64_t)i, 0, 0));
    return x;
}

/* Two keys, two queries, d = 2, hand-computed. q0 = (1, 0), q1 = (0, 2); k0 = (1, 1), k1 = (2, -1);
 * v0 = (1, 0), v1 = (0, 1); scale 0.5. Non-causal: scores q0: (0.5, 1.0); q1: (1.0, -1.0). */
Test(dense, hand_computed_bidirectional) {
    float q[4] = {1, 0, 0, 2}, k[4] = {1, 1, 2, -1}, v[4] = {1, 0, 0, 1}, out[4];
    sp_attn_op *op = sp_attn_dense_create(1, 1);
    sp_attn_head h = {.n_q = 2, .n_k = 2, .d = 2, .q = q, .k = k, .v = v, .out = out, .ldq = 2, .ldk = 2, .ldv = 2,
                      .ldo = 2, .causal = 0, .scale = 0.5f};
    sp_error err = {0};
    cr_assert_eq(op->run(op, &h, &err), SP_OK, "%s", err.msg);
    /* q0: p = softmax(0.5, 1.0) = (1/(1+e^0.5), e^0.5/(1+e^0.5)) */
    double p01 = exp(0.5) / (1 + exp(0.5));
    cr_assert_float_eq(out[0], 1 - p01, 1e-6);
    cr_assert_float_eq(out[1], p01, 1e-6);
    /* q1: p = softmax(1, -1) */
    double p10 = 1 / (1 + exp(-2.0));
    cr_assert_float_eq(out[2], p10, 1e-6);
    cr_assert_float_eq(out[3], 1 - p10, 1e-6);
    cr_assert_eq(op->stats[0].pairs_visible, 4);
    cr_assert_eq(op->stats[0].queries, 2);
    sp_attn_op_free(op);
}

Test(dense, causal_first_query_copies_first_value) {
    float q[4] = {1, 0, 0, 2}, k[4] = {1, 1, 2, -1}, v[4] = {3, -4, 0, 1}, out[4];
    sp_attn_op *op = sp_attn_dense_create(1, 1);
    sp_attn_head h = {.n_q = 2, .n_k = 2, .d = 2, .q = q, .k = k, .v = v, .out = out, .ldq = 2, .ldk = 2, .ldv = 2,
                      .ldo = 2, .causal = 1, .scale = 0.5f};
    cr_assert_eq(op->run(op, &h, NULL), SP_OK);
    cr_assert_eq(out[0], 3.0f);
    cr_assert_eq(out[1], -4.0f);
    double p10 = 1 / (1 + exp(-2.0)); /* query 1 sees both keys */
    cr_assert_float_eq(out[2], 3 * p10, 1e-6);
    cr_assert_float_eq(out[3], -4 * p10 + (1 - p10), 1e-6);
    /* causal: 1 + 2 visible pairs; the second query reuses the first one's key */
    cr_assert_eq(op->stats[0].pairs_visible, 3);
    cr_assert_eq(op->stats[0].reuse_pairs, 1);
    cr_assert_eq(op->stats[0].new_fetch, 1);
    cr_assert_eq(op->stats[0].later_visible, 2);
    sp_attn_op_free(op);
}

/* Bidirectional with padding: padded query rows are zero, padded keys are ignored, and the valid
 * rows equal (bit for bit) attention over the compacted sequence. */
Test(dense, padding_mask_equals_compacted_sequence) {
    enum { N = 9, D = 8 };
    unsigned char valid[N] = {1, 0, 1, 1, 0, 0, 1, 1, 1};
    float *q = randn(N * D, 1, 1.0f), *k = randn(N * D, 2, 1.0f), *v = randn(N * D, 3, 1.0f);
    float out[N * D];
    memset(out, 0x7f, sizeof out); /* garbage that must be overwritten */
    sp_attn_op *op = sp_attn_dense_create(1, 1);
    sp_attn_head h = {.n_q = N, .n_k = N, .d = D, .q = q, .k = k, .v = v, .out = out, .ldq = D, .ldk = D, .ldv = D,
                      .ldo = D, .causal = 0, .key_valid = valid, .query_valid = valid, .scale = 0.35f};
    cr_assert_eq(op->run(op, &h, NULL), SP_OK);
    float cq[N * D], ck[N * D], cv[N * D], cout[N * D];
    int m = 0;
    for (int i = 0; i < N; i++)
        if (valid[i]) {
            memcpy(cq + m * D, q + i * D, D * sizeof(float));
            memcpy(ck + m * D, k + i * D, D * sizeof(float));
            memcpy(cv + m * D, v + i * D, D * sizeof(float));
            m++;
        }
    sp_attn_op *op2 = sp_attn_dense_create(1, 1);
    sp_attn_head hc = {.n_q = m, .n_k = m, .d = D, .q = cq, .k = ck, .v = cv, .out = cout, .ldq = D, .ldk = D,
                       .ldv = D, .ldo = D, .causal = 0, .scale = 0.35f};
    cr_assert_eq(op2->run(op2, &hc, NULL), SP_OK);
    int r = 0;
    for (int i = 0; i < N; i++) {
        for (int c = 0; c < D; c++) {
            if (valid[i]) cr_assert_eq(out[i * D + c], cout[r * D + c], "row %d col %d: %g vs compacted %g", i, c,
                                       out[i * D + c], cout[r * D + c]);
            else cr_assert_eq(out[i * D + c], 0.0f, "padded row %d not zero", i);
        }
        r += valid[i];
    }
    cr_assert_eq(op->stats[0].queries, m);
    cr_assert_eq(op->stats[0].pairs_visible, m * m);
    /* the fast (flash) operator applies the masks itself: within float rounding, padded rows
     * exactly zero */
    sp_attn_op *op3 = sp_attn_dense_fast_create(1, 1);
    float out3[N * D];
    memset(out3, 0x7f, sizeof out3);
    h.out = out3;
    cr_assert_eq(op3->run(op3, &h, NULL), SP_OK);
    for (int t = 0; t < N * D; t++)
        cr_assert(fabsf(out[t] - out3[t]) <= 1e-5f * (1 + fabsf(out[t])) && (valid[t / D] || out3[t] == 0.0f),
                  "element %d: %g vs %g", t, out3[t], out[t]);
    sp_attn_op_free(op);
    sp_attn_op_free(op2);
    sp_attn_op_free(op3);
    free(q);
    free(k);
    free(v);
}

/* The fast float path against the double reference on random heads: causal with an offset
 * (queries are the last rows of a longer sequence), non-causal, strided rows. */
static void fast_vs_reference(int n_q, int n_k, int d, int causal, int q_offset, uint64_t seed) {
    int ld = d + 3; /* rows with padding between them */
    float *q = randn(n_q * ld, seed, 1.5f), *k = randn(n_k * ld, seed + 1, 1.5f), *v = randn(n_k * ld, seed + 2, 1.0f);
    float *o1 = calloc((size_t)(n_q * ld), sizeof *o1), *o2 = calloc((size_t)(n_q * ld), sizeof *o2);
    sp_attn_op *ref = sp_attn_dense_create(2, 3), *fast = sp_attn_dense_fast_create(2, 3);
    sp_attn_head h = {.layer = 1, .head = 2, .n_q = n_q, .n_k = n_k, .d = d, .q = q, .k = k, .v = v, .out = o1,
                      .ldq = ld, .ldk = ld, .ldv = ld, .ldo = ld, .causal = causal, .q_offset = q_offset,
                      .scale = 1.0f / sqrtf((float)d)};
    cr_assert_eq(ref->run(ref, &h, NULL), SP_OK);
    h.out = o2;
    cr_assert_eq(fast->run(fast, &h, NULL), SP_OK);
    double maxabs = 0, maxref = 0;
    for (int i = 0; i < n_q; i++)
        for (int c = 0; c < d; c++) {
            double a = o1[i * ld + c], b = o2[i * ld + c];
            if (fabs(a - b) > maxabs) maxabs = fabs(a - b);
            if (fabs(a) > maxref) maxref = fabs(a);
        }
    cr_assert(maxabs <= 2e-6 * (maxref > 1 ? maxref : 1), "fast vs reference: max abs diff %g (max |ref| %g), n_q %d n_k %d d %d",
              maxabs, maxref, n_q, n_k, d);
    cr_assert_eq(memcmp(&ref->stats[5], &fast->stats[5], sizeof(sp_attn_stats)), 0, "statistics differ");
    cr_assert_gt(ref->stats[5].queries, 0);
    sp_attn_op_free(ref);
    sp_attn_op_free(fast);
    free(q);
    free(k);
    free(v);
    free(o1);
    free(o2);
}

Test(dense_fast, matches_reference) {
    fast_vs_reference(37, 37, 8, 1, 0, 10);
    fast_vs_reference(5, 40, 8, 1, 35, 20);
    fast_vs_reference(300, 300, 16, 1, 0, 30);
    fast_vs_reference(17, 29, 5, 0, 0, 40);
    fast_vs_reference(1, 1, 8, 1, 0, 50);
}

/* Scores far apart: exp underflows in float for the far keys, the result must stay finite and
 * close to the reference (one-hot on the best key). */
Test(dense_fast, large_score_range) {
    float q[2 * 4] = {100, 0, 0, 0, -100, 0, 0, 0}, k[3 * 4] = {1, 0, 0, 0, -1, 0, 0, 0, 0.5f, 0, 0, 0};
    float v[3 * 4] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, o1[8], o2[8];
    sp_attn_op *ref = sp_attn_dense_create(1, 1), *fast = sp_attn_dense_fast_create(1, 1);
    sp_attn_head h = {.n_q = 2, .n_k = 3, .d = 4, .q = q, .k = k, .v = v, .out = o1, .ldq = 4, .ldk = 4, .ldv = 4,
                      .ldo = 4, .causal = 0, .scale = 1.0f};
    cr_assert_eq(ref->run(ref, &h, NULL), SP_OK);
    h.out = o2;
    cr_assert_eq(fast->run(fast, &h, NULL), SP_OK);
    for (int i = 0; i < 8; i++) cr_assert_float_eq(o1[i], o2[i], 1e-5, "element %d: %g vs %g", i, o1[i], o2[i]);
    cr_assert_float_eq(o2[0], 1.0f, 1e-6);  /* query 0 -> key 0 */
    cr_assert_float_eq(o2[4], 5.0f, 1e-6);  /* query 1 -> key 1 */
    sp_attn_op_free(ref);
    sp_attn_op_free(fast);
}

Test(dense, nan_score_is_a_data_error) {
    float q[4] = {NAN, 0, 0, 1}, k[4] = {1, 1, 2, -1}, v[4] = {1, 0, 0, 1}, out[4];
    sp_attn_op *ops[2] = {sp_attn_dense_create(1, 1), sp_attn_dense_fast_create(1, 1)};
    for (int i = 0; i < 2; i++) {
        sp_attn_head h = {.n_q = 2, .n_k = 2, .d = 2, .q = q, .k = k, .v = v, .out = out, .ldq = 2, .ldk = 2,
                          .ldv = 2, .ldo = 2, .causal = 1, .scale = 1.0f};
        sp_error err = {0};
        cr_assert_eq(ops[i]->run(ops[i], &h, &err), SP_ERR_DATA);
        cr_assert(strstr(err.msg, "non-finite"), "%s", err.msg);
        sp_attn_op_free(ops[i]);
    }
}

Test(dense, bad_head_is_an_argument_error) {
    float x[4] = {0};
    sp_attn_op *op = sp_attn_dense_fast_create(1, 1);
    sp_attn_head h = {.n_q = 3, .n_k = 2, .d = 2, .q = x, .k = x, .v = x, .out = x, .ldq = 2, .ldk = 2, .ldv = 2,
                      .ldo = 2, .causal = 1, .scale = 1.0f};
    sp_error err = {0};
    cr_assert_eq(op->run(op, &h, &err), SP_ERR_ARG, "causal queries beyond the keys must be refused");
    h.n_q = 1;
    h.ldk = 1;
    cr_assert_eq(op->run(op, &h, &err), SP_ERR_ARG, "row stride below d must be refused");
    h.ldk = 2;
    cr_assert_eq(op->run(op, &h, &err), SP_OK, "%s", err.msg);
    /* a (layer, head) outside the op's stats table: refused, not written out of bounds */
    int bad[3][2] = {{1, 0}, {0, 1}, {-1, 0}};
    for (int i = 0; i < 3; i++) {
        h.layer = bad[i][0];
        h.head = bad[i][1];
        cr_assert_eq(op->run(op, &h, &err), SP_ERR_ARG, "layer %d head %d", h.layer, h.head);
        cr_assert(strstr(err.msg, "outside the operator"), "%s", err.msg);
    }
    sp_attn_op_free(op);
}

Test(dense, softmax_wsum_of_nothing_is_zero) {
    float v[2] = {1, 2}, out[2] = {5, 5};
    sp_attn_head h = {.d = 2, .v = v, .ldv = 2};
    sp_attn_softmax_wsum(&h, NULL, NULL, 0, out);
    cr_assert_eq(out[0], 0.0f);
    cr_assert_eq(out[1], 0.0f);
}

/* Every mask combination against a naive computation written here (double, the definition
 * of sprint/attention.h spelled out): causal with an offset, key padding, query padding,
 * and a valid query that sees no key. Both operators; the statistics count exactly the
 * visible pairs of the valid queries. */
static void naive(const sp_attn_head *h, int qi, double *out) {
    double sc[64], mx = -INFINITY, den = 0;
    int vis[64], n = 0;
    for (int j = 0; j < h->n_k; j++) {
        if (h->key_valid && !h->key_valid[j]) continue;
        if (h->causal && j > h->q_offset + qi) continue;
        double d = 0;
        for (int c = 0; c < h->d; c++) d += (double)h->q[qi * h->ldq + c] * h->k[j * h->ldk + c];
        sc[n] = d * h->scale;
        mx = fmax(mx, sc[n]);
        vis[n++] = j;
    }
    for (int c = 0; c < h->d; c++) out[c] = 0;
    for (int j = 0; j < n; j++) den += exp(sc[j] - mx);
    for (int j = 0; j < n; j++)
        for (int c = 0; c < h->d; c++) out[c] += exp(sc[j] - mx) / den * h->v[vis[j] * h->ldv + c];
}

Test(dense, every_mask_against_naive) {
    enum { NQ = 6, NK = 11, D = 6, LD = 7 };
    float *q = randn(NQ * LD, 61, 1.2f), *k = randn(NK * LD, 62, 1.2f), *v = randn(NK * LD, 63, 1.0f);
    unsigned char kv[NK] = {0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0}, qv[NQ] = {1, 1, 0, 1, 1, 1};
    unsigned char kfirst_pad[NK] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1}; /* causal query 0 at key 5 sees nothing */
    struct {
        int causal, q_offset;
        const unsigned char *key_valid, *query_valid;
    } cases[] = {{1, 5, NULL, NULL}, {1, 5, kv, NULL}, {1, 5, kv, qv}, {0, 0, kv, qv}, {0, 0, NULL, qv},
                 {1, 0, kv, qv},     {1, 5, kfirst_pad, qv}, {0, 0, kfirst_pad, NULL}};
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++)
        for (int fast = 0; fast < 2; fast++) {
            float out[NQ * LD];
            for (int i = 0; i < NQ * LD; i++) out[i] = 777.0f; /* must be overwritten */
            sp_attn_op *op = fast ? sp_attn_dense_fast_create(1, 1) : sp_attn_dense_create(1, 1);
            sp_attn_head h = {.n_q = NQ, .n_k = NK, .d = D, .q = q, .k = k, .v = v, .out = out, .ldq = LD, .ldk = LD,
                              .ldv = LD, .ldo = LD, .causal = cases[ci].causal, .q_offset = cases[ci].q_offset,
                              .key_valid = cases[ci].key_valid, .query_valid = cases[ci].query_valid,
                              .scale = 0.4f};
            sp_error err = {0};
            cr_assert_eq(op->run(op, &h, &err), SP_OK, "%s", err.msg);
            double pairs = 0, queries = 0;
            for (int i = 0; i < NQ; i++) {
                double want[D];
                int valid = !h.query_valid || h.query_valid[i];
                naive(&h, i, want);
                if (valid) {
                    queries++;
                    for (int j = 0; j < NK; j++)
                        pairs += (!h.key_valid || h.key_valid[j]) && (!h.causal || j <= h.q_offset + i);
                }
                for (int c = 0; c < D; c++) {
                    double wv = valid ? want[c] : 0.0;
                    cr_assert(fabs(out[i * LD + c] - wv) < 1e-6, "case %zu %s: row %d col %d: %g, naive %g", ci,
                              fast ? "fast" : "reference", i, c, out[i * LD + c], wv);
                }
            }
            cr_assert_eq(op->stats[0].queries, queries, "case %zu", ci);
            cr_assert_eq(op->stats[0].pairs_visible, pairs, "case %zu", ci);
            cr_assert_eq(op->stats[0].pairs_kept, pairs, "case %zu", ci);
            sp_attn_op_free(op);
        }
    free(q);
    free(k);
    free(v);
}
