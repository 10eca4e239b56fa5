/* bench_functional.c: per-head time of the functional operators against a dense OpenBLAS fp32
 * attention on the same tensors (the simulator's budget is ~2x dense), measured side by side.
 * Synthetic BERT-L-shaped heads: d = 64, bidirectional, n keys = n queries. Before timing, the
 * results are checked: sprint with threshold -inf equals the double dense reference bit for bit
 * and the fp32 dense attention is within 1e-4 of it (n = 256).
 *
 * usage: bench_functional [n ...]   (default 512 1024 4096); env BENCH_REPS (default 3) */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "functional/fn_internal.h"

/* Dense fp32 attention with OpenBLAS: per block of 64 queries, S = Q K^T (sgemm), row softmax
 * (expf), O = P V (sgemm). */
static void dense_sgemm(int n, int d, const float *q, const float *k, const float *v, float *o, float scale, float *S) {
    const int B = 64;
    for (int i0 = 0; i0 < n; i0 += B) {
        int b = n - i0 < B ? n - i0 : B;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, n, d, scale, q + (size_t)i0 * d, d, k, d, 0.0f, S, n);
        for (int r = 0; r < b; r++) {
            float *row = S + (size_t)r * n, mx = row[0], sum = 0;
            for (int j = 1; j < n; j++) mx = row[j] > mx ? row[j] : mx;
            for (int j = 0; j < n; j++) sum += (row[j] = expf(row[j] - mx));
            float inv = 1.0f / sum;
            for (int j = 0; j < n; j++) row[j] *= inv;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, d, n, 1.0f, S, n, v, d, 0.0f, o + (size_t)i0 * d, d);
    }
}

static float *randn(size_t n, double sd, uint64_t seed) {
    float *x = malloc(n * sizeof *x);
    sp_rng r;
    sp_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)(sd * sp_rng_next_normal(&r));
    return x;
}

static sp_attn_op *make(const char *mode, const char **sets, int nsets) {
    sp_config cfg;
    sp_config_defaults(&cfg);
    sp_error err = {0};
    for (int i = 0; i < nsets; i++)
        if (sp_config_set(&cfg, sets[i], "bench", &err) != SP_OK) {
            fprintf(stderr, "bench: %s\n", err.msg);
            exit(1);
        }
    sp_op_request req = {.mode = mode, .cfg = &cfg};
    sp_attn_op *op = NULL;
    if (sp_attn_op_create(&req, 1, 1, &op, &err) != SP_OK) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    return op;
}

static int check(void) {
    int n = 256, d = 64;
    float *q = randn((size_t)n * d, 1.7, 1), *k = randn((size_t)n * d, 1.7, 2), *v = randn((size_t)n * d, 1, 3);
    float *o1 = malloc(sizeof(float) * n * d), *o2 = malloc(sizeof(float) * n * d), *o3 = malloc(sizeof(float) * n * d);
    float *S = malloc(sizeof(float) * 64 * n);
    sp_attn_head h = {.n_q = n, .n_k = n, .d = d, .q = q, .k = k, .v = v, .out = o1, .ldq = d, .ldk = d, .ldv = d,
                      .ldo = d, .scale = 0.125f};
    sp_attn_op *ref = sp_attn_dense_create(1, 1);
    const char *sets[2] = {"policy.kind=layer", "policy.threshold=-1e30"};
    sp_attn_op *op = make("sprint", sets, 2);
    sp_error err = {0};
    ref->run(ref, &h, &err);
    h.out = o2;
    op->run(op, &h, &err);
    dense_sgemm(n, d, q, k, v, o3, 0.125f, S);
    double md = 0;
    for (int i = 0; i < n * d; i++) md = fmax(md, fabs(o1[i] - o3[i]));
    int ok = !memcmp(o1, o2, sizeof(float) * n * d) && md < 1e-4;
    printf("check: sprint(-inf) == dense reference bit for bit: %s; fp32 sgemm dense max |diff| %.2g\n",
           memcmp(o1, o2, sizeof(float) * n * d) ? "NO" : "yes", md);
    sp_attn_op_free(ref), sp_attn_op_free(op);
    free(q), free(k), free(v), free(o1), free(o2), free(o3), free(S);
    return ok;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) { /* sizes only: anything else is a usage error */
        char *end;
        long v = strtol(argv[i], &end, 10);
        if (*end || v < 1 || v > 65536) {
            int help = !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
            fprintf(help ? stdout : stderr,
                    "usage: bench_functional [n ...]\n"
                    "  n   keys (= queries) per synthetic head, 1..65536 (default 512 1024 4096); d = 64\n"
                    "  env BENCH_REPS: repetitions, median reported (default 3)\n"
                    "Prints per head: operator time and dense fp32 time (ms/head), their ratio, kept and\n"
                    "fetched pairs (%% of visible).\n");
            return help ? 0 : 2;
        }
    }
    if (!check()) {
        fprintf(stderr, "bench_functional: reference check failed\n");
        return 1;
    }
    int sizes[8] = {512, 1024, 4096}, ns = 3;
    if (argc > 1) {
        ns = 0;
        for (int i = 1; i < argc && ns < 8; i++) sizes[ns++] = atoi(argv[i]);
    }
    int reps = getenv("BENCH_REPS") ? atoi(getenv("BENCH_REPS")) : 3;
    const char *env = getenv("OPENBLAS_NUM_THREADS");
    printf("OPENBLAS_NUM_THREADS=%s, reps %d (median), d = 64, bidirectional, synthetic N(0, 1.7^2) Q and K\n",
           env ? env : "(unset)", reps);
    struct {
        const char *label, *mode;
        const char *sets[6];
        int nsets;
    } cases[] = {
        {"pruning onchip d=5", "pruning", {"policy.kind=onchip", "policy.delta=5"}, 2},
        {"sprint-norecompute onchip d=5", "sprint-norecompute", {"policy.kind=onchip", "policy.delta=5"}, 2},
        {"sprint onchip d=5 (float)", "sprint", {"policy.kind=onchip", "policy.delta=5"}, 2},
        {"sprint onchip d=5 no mass_lost", "sprint", {"policy.kind=onchip", "policy.delta=5", "sprint.mass_lost=0"}, 3},
        {"sprint onchip d=5 (hw)", "sprint", {"policy.kind=onchip", "policy.delta=5", "sprint.arith=hw"}, 3},
        {"sprint layer thr=4", "sprint", {"policy.kind=layer", "policy.threshold=4"}, 2},
        {"sprint onchip d=5 + c2c 5%, d2d 5%", "sprint",
         {"policy.kind=onchip", "policy.delta=5", "reram.c2c_sigma=0.05", "reram.d2d_sigma=0.05"}, 4},
    };
    int nc = (int)(sizeof cases / sizeof cases[0]);
    printf("%-6s %-36s %11s %11s %8s %9s %9s\n", "n", "operator", "op ms/head", "dense ms", "ratio", "kept %",
           "fetched %");
    for (int si = 0; si < ns; si++) {
        int n = sizes[si], d = 64;
        float *q = randn((size_t)n * d, 1.7, 11), *k = randn((size_t)n * d, 1.7, 12), *v = randn((size_t)n * d, 1, 13);
        float *o = malloc(sizeof(float) * (size_t)n * d), *S = malloc(sizeof(float) * 64 * (size_t)n);
        sp_attn_head h = {.n_q = n, .n_k = n, .d = d, .q = q, .k = k, .v = v, .out = o, .ldq = d, .ldk = d, .ldv = d,
                          .ldo = d, .scale = 0.125f};
        for (int c = 0; c < nc; c++) {
            sp_attn_op *op = make(cases[c].mode, cases[c].sets, cases[c].nsets);
            double to[16], td[16];
            for (int r = 0; r < reps && r < 16; r++) {
                double t0 = sp_now_seconds();
                dense_sgemm(n, d, q, k, v, o, 0.125f, S);
                double t1 = sp_now_seconds();
                sp_attn_op_reset_stats(op);
                sp_error err = {0};
                if (op->run(op, &h, &err) != SP_OK) {
                    fprintf(stderr, "bench: %s\n", err.msg);
                    return 1;
                }
                double t2 = sp_now_seconds();
                td[r] = t1 - t0;
                to[r] = t2 - t1;
            }
            /* medians */
            for (int a = 0; a < reps; a++)
                for (int b = a + 1; b < reps; b++) {
                    if (to[b] < to[a]) { double x = to[a]; to[a] = to[b]; to[b] = x; }
                    if (td[b] < td[a]) { double x = td[a]; td[a] = td[b]; td[b] = x; }
                }
            double mo = to[reps / 2], md = td[reps / 2];
            printf("%-6d %-36s %11.2f %11.2f %8.2f %9.2f %9.2f\n", n, cases[c].label, 1e3 * mo, 1e3 * md, mo / md,
                   100 * sp_attn_stats_kept_fraction(&op->stats[0]), 100 * sp_attn_stats_mem_kept_fraction(&op->stats[0]));
            fflush(stdout);
            sp_attn_op_free(op);
        }
        free(q), free(k), free(v), free(o), free(S);
    }
    return 0;
}
