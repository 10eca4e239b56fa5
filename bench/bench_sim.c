/* bench_sim.c: simulator speed (issue 4). One BERT-L-shaped head (d = 64) at 4096 tokens:
 *   (a) dense fp32 attention with OpenBLAS over the same Q, K, V (blocks of 256 queries, so no
 *       L x L matrix is resident), checked against the double-precision reference on a few rows;
 *   (b) the functional op producing the per-query masks (workload.mode, or the built-in
 *       fallback), with the simulator attached (all designs, sizes S, M, L);
 *   (c) the simulator alone, replaying the recorded masks.
 * Prints simulated (query, key) pairs per second and the ratios (b)/(a) and (c)/(a), single
 * thread, side by side in one run. Usage: bench_sim [seq_len] [reps]; each time is the minimum of reps (default 3) runs. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "sprint/functional.h"
#include "sprint/sim.h"

static void dense_blas(int n, int d, const float *q, const float *k, const float *v, float *out, float *blk) {
    const int B = 256;
    const float scale = 1.0f / sqrtf((float)d);
    for (int i0 = 0; i0 < n; i0 += B) {
        int m = i0 + B < n ? B : n - i0;
        /* blk (m, n) = scale * q[i0:i0+m] k^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, d, scale, q + (size_t)i0 * d, d, k, d, 0.0f, blk, n);
        for (int i = 0; i < m; i++) {
            float *r = blk + (size_t)i * n, mx = -INFINITY, s = 0;
            for (int j = 0; j < n; j++) mx = r[j] > mx ? r[j] : mx;
            for (int j = 0; j < n; j++) s += (r[j] = expf(r[j] - mx));
            float inv = 1.0f / s;
            for (int j = 0; j < n; j++) r[j] *= inv;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, d, n, 1.0f, blk, n, v, d, 0.0f, out + (size_t)i0 * d, d);
    }
}

typedef struct trace {
    long *off;
    int32_t *idx;
    int *nvis, *nkept;
    long cap, n;
    int q;
} trace;

typedef struct both {
    sp_sim_head *sim;
    trace *tr;
} both;

static void record(void *u, const sp_query_record *r) {
    both *b = u;
    sp_sim_head_query(b->sim, r);
    trace *t = b->tr;
    if (t->n + r->n_mem_kept > t->cap) {
        t->cap = 2 * (t->n + r->n_mem_kept);
        t->idx = realloc(t->idx, (size_t)t->cap * sizeof *t->idx);
    }
    memcpy(t->idx + t->n, r->mem_kept, (size_t)r->n_mem_kept * sizeof *t->idx);
    t->nvis[t->q] = r->n_visible;
    t->nkept[t->q] = r->n_kept; /* kept is a prefix-free subset; replay uses mem_kept for both */
    t->off[t->q] = t->n;
    t->n += r->n_mem_kept;
    t->q++;
    t->off[t->q] = t->n;
}

static long max_rss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 4096, reps = argc > 2 ? atoi(argv[2]) : 3;
    openblas_set_num_threads(1);
    sp_config cfg;
    sp_config_defaults(&cfg);
    sp_error err = {0};
    char set[64];
    snprintf(set, sizeof set, "workload.bert_l_seq=%d", n);
    sp_config_set(&cfg, set, "bench", &err);
    sp_config_set(&cfg, "workload.bert_l_padding=0", "bench", &err);
    sp_workload wl;
    if (sp_workload_preset(&cfg, "BERT-L", &wl, &err) != SP_OK) return fprintf(stderr, "%s\n", err.msg), 1;
    const int d = wl.d;
    float *q = malloc(sizeof(float) * n * d), *k = malloc(sizeof(float) * n * d), *v = malloc(sizeof(float) * n * d);
    float *out = malloc(sizeof(float) * n * d), *ref = malloc(sizeof(float) * n * d), *blk = malloc(sizeof(float) * 256 * n);
    sp_workload_synth_head(&cfg, &wl, 0, 0, q, k, v);
    long rss0 = max_rss_kb();

    /* check (a) against the double-precision reference on 4 rows */
    sp_attn_op *dense = sp_attn_dense_create(1, 1);
    sp_attn_head h = {.n_q = 4, .n_k = n, .d = d, .q = q, .k = k, .v = v, .out = ref, .ldq = d, .ldk = d, .ldv = d,
                      .ldo = d, .scale = (float)(1.0 / sqrt((double)d))};
    if (dense->run(dense, &h, &err) != SP_OK) return fprintf(stderr, "%s\n", err.msg), 1;
    sp_attn_op_free(dense);
    dense_blas(n, d, q, k, v, out, blk);
    double md = 0;
    for (int i = 0; i < 4 * d; i++) md = fmax(md, fabs((double)out[i] - ref[i]));
    printf("check: OpenBLAS attention vs double reference, max abs diff %.3g over 4 rows\n", md);
    if (md > 1e-3) return fprintf(stderr, "bench_sim: dense BLAS attention disagrees with the reference\n"), 1;

    /* every timing is the minimum over reps runs (the machine may be shared) */
    double t_blas = 1e30, t_full = 1e30, t_sim = 1e30, t_sim1 = 1e30, t0;
    for (int r = 0; r < reps; r++) {
        t0 = sp_now_seconds();
        dense_blas(n, d, q, k, v, out, blk);
        t_blas = fmin(t_blas, sp_now_seconds() - t0);
    }

    sp_hw hw[3];
    unsigned mask;
    if (sp_sim_hw(&cfg, hw, &mask, &err) != SP_OK) return fprintf(stderr, "%s\n", err.msg), 1;
    const char *src = cfg.workload_mode;
    trace tr = {.off = calloc((size_t)n + 1, sizeof(long)), .nvis = calloc((size_t)n, sizeof(int)),
                .nkept = calloc((size_t)n, sizeof(int))};
    sp_head_shape sh = {.n_k = n, .d = d, .causal = 0, .n_valid = n};
    static sp_design_result res[3][SP_DESIGN_COUNT], res2[3][SP_DESIGN_COUNT], res3[3][SP_DESIGN_COUNT];
    for (int r = 0; r < reps; r++) {
        sp_attn_op *op = NULL;
        sp_config *ocfg = sp_sim_op_config(&cfg); /* sprint.mass_lost off, as in sprint run */
        sp_op_request req = {.mode = cfg.workload_mode, .cfg = ocfg};
        if (sp_attn_op_create(&req, 1, 1, &op, &err) != SP_OK) {
            op = sp_relthresh_op_create(1, 1, cfg.workload_margin_nats);
            src = "relthresh (fallback)";
        }
        free(ocfg);
        tr.n = 0;
        tr.q = 0;
        memset(res, 0, sizeof res);
        both b = {.sim = sp_sim_head_create(hw, mask, &sh), .tr = &tr};
        op->observer = record;
        op->observer_user = &b;
        h.n_q = n;
        h.out = out;
        t0 = sp_now_seconds();
        if (op->run(op, &h, &err) != SP_OK) return fprintf(stderr, "%s\n", err.msg), 1;
        sp_sim_head_finish(b.sim, 1, res, NULL);
        t_full = fmin(t_full, sp_now_seconds() - t0);
        sp_sim_head_free(b.sim);
        sp_attn_op_free(op);
    }
    /* (c) replay on all sizes, (d) replay on S only */
    for (int pass = 0; pass < 2; pass++)
        for (int r = 0; r < reps; r++) {
            sp_design_result(*rr)[SP_DESIGN_COUNT] = pass ? res3 : res2;
            memset(rr, 0, sizeof res2);
            sp_sim_head *sim = sp_sim_head_create(hw, pass ? 1u : mask, &sh);
            t0 = sp_now_seconds();
            for (int i = 0; i < tr.q; i++) {
                sp_query_record qr = {.qi = i, .pos = i, .n_k = n, .n_visible = tr.nvis[i],
                                      .n_mem_kept = (int)(tr.off[i + 1] - tr.off[i]), .mem_kept = tr.idx + tr.off[i],
                                      .n_kept = (int)(tr.off[i + 1] - tr.off[i]), .kept = tr.idx + tr.off[i]};
                sp_sim_head_query(sim, &qr);
            }
            sp_sim_head_finish(sim, 1, rr, NULL);
            double el = sp_now_seconds() - t0;
            if (pass) t_sim1 = fmin(t_sim1, el);
            else t_sim = fmin(t_sim, el);
            sp_sim_head_free(sim);
        }
    double pairs = (double)n * n;
    printf("workload: BERT-L head, %d tokens, d=%d; masks from %s; kept in memory %.2f%% of pairs\n", n, d, src,
           100.0 * tr.n / pairs);
    printf("dense fp32 attention (OpenBLAS, 1 thread):        %9.3f s\n", t_blas);
    printf("functional masks + simulator (6 designs x S,M,L):  %9.3f s  ratio %.2f  (%.3g simulated pairs/s)\n",
           t_full, t_full / t_blas, pairs / t_full);
    printf("simulator alone, replaying the masks:              %9.3f s  ratio %.2f  (%.3g simulated pairs/s)\n", t_sim,
           t_sim / t_blas, pairs / t_sim);
    printf("simulator alone, S size only (6 designs):          %9.3f s  ratio %.2f  (%.3g simulated pairs/s)\n", t_sim1,
           t_sim1 / t_blas, pairs / t_sim1);
    printf("S-SPRINT speedup over baseline-paper %.1fx (consistency: replay cycles %s)\n",
           res[0][SP_DESIGN_BASELINE].cycles / res[0][SP_DESIGN_SPRINT].cycles,
           fabs(res2[0][SP_DESIGN_SPRINT].cycles - res[0][SP_DESIGN_SPRINT].cycles) < 0.5 ? "identical" : "DIFFER");
    printf("peak RSS %ld MB (inputs + one 256 x L BLAS block + mask trace; %ld MB before the runs)\n",
           max_rss_kb() / 1024, rss0 / 1024);
    free(q), free(k), free(v), free(out), free(ref), free(blk), free(tr.off), free(tr.idx), free(tr.nvis), free(tr.nkept);
    return 0;
}
