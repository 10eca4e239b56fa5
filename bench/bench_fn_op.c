/* bench_fn_op.c: the functional `sprint` operator (mode sprint of sp_attn_op_create, ideal
 * device) against sprint's flash kernel on one head, d = 64, one thread, CPU time of the calling
 * thread, runs interleaved (issue 9: "the functional sprint op, outputs on, ideal device, no
 * slower than the dense flash kernel at L = 4096 and ~10% kept").
 *
 * Kernels per case:
 *   flash        sp_cpu_attention_dense, 1 thread (the fair dense baseline, docs/RESULTS.md 9.2)
 *   fast         sprint.impl=fast, outputs on, sprint.exact_stats=0, sprint.mass_lost=0
 *   fast-masks   the same, sprint.outputs=0 (masks and the cheap counters only)
 *   fast-stats   sprint.impl=fast with the default statistics (exact_stats=1, mass_lost=1)
 *   reference    sprint.impl=reference, outputs on, default statistics (the operator before
 *                issue 9's fast implementation)
 * Policies: layer (a fixed threshold: the quantile of head 1's exact scores for the target kept
 * fraction; the timed head is head 0, as in bench_attention) and onchip (the default policy;
 * delta bisected on the timed head itself for the target kept fraction: a speed comparison at a
 * given kept fraction, not an accuracy claim; a delta from head 1 keeps 14-15% on head 0). Data: the simulator's synthetic BERT-L head and a clustered
 * generator (bench_attention's two generators).
 *
 * Before timing, the fast implementation is checked against the reference on the timed head:
 * the same kept, kept-in-memory, false-prune and false-keep counts (the decisions are exact,
 * tests/test_fn_fast.c), the mass-lost sum within 1e-9 and outputs within 1e-4 max abs.
 *
 * usage: bench_fn_op [--L n] [--target 0.1] [--reps 5]   (prints a markdown table)
 *   env BENCH_OFFSET (bytes, a multiple of 4 in 0-60, default 0): Q, K and V that far past a
 *       64-byte boundary (bench/heads.h). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "heads.h"
#include "sprint/cpu_attention.h"
#include "sprint/functional.h"
#include "sprint/sim.h"

static void die(const char *m) {
    fprintf(stderr, "bench_fn_op: %s\n", m);
    exit(1);
}

static sp_attn_op *make_op(const char *policy, double value, const char *impl, int outputs, int stats) {
    sp_config cfg;
    sp_config_defaults(&cfg);
    sp_error err = {0};
    char b[5][96];
    snprintf(b[0], sizeof b[0], "policy.kind=%s", policy);
    snprintf(b[1], sizeof b[1], "%s=%.17g", strcmp(policy, "layer") ? "policy.delta" : "policy.threshold", value);
    snprintf(b[2], sizeof b[2], "sprint.impl=%s", impl);
    snprintf(b[3], sizeof b[3], "sprint.outputs=%d", outputs);
    snprintf(b[4], sizeof b[4], "sprint.exact_stats=%d", stats);
    for (int t = 0; t < 5; t++)
        if (sp_config_set(&cfg, b[t], "bench", &err) != SP_OK) die(err.msg);
    if (sp_config_set(&cfg, stats ? "sprint.mass_lost=1" : "sprint.mass_lost=0", "bench", &err) != SP_OK)
        die(err.msg);
    sp_op_request req = {.mode = "sprint", .cfg = &cfg};
    sp_attn_op *op = NULL;
    if (sp_attn_op_create(&req, 1, 1, &op, &err) != SP_OK) die(err.msg);
    return op;
}

/* Kept fraction of the fast op (masks only) on head h for the policy value. */
static double kept_of(const head *h, const char *policy, double value, float *out) {
    sp_attn_op *op = make_op(policy, value, "fast", 0, 0);
    sp_attn_head a = head_attn(h, out);
    sp_error err = {0};
    if (op->run(op, &a, &err) != SP_OK) die(err.msg);
    double k = sp_attn_stats_kept_fraction(&op->stats[0]);
    sp_attn_op_free(op);
    return k;
}

/* onchip delta (nats) giving about `target` kept on head h: bisection, kept grows with delta. */
static double bisect_delta(const head *h, double target, float *out) {
    double lo = 0, hi = 30;
    for (int it = 0; it < 14; it++) {
        double mid = 0.5 * (lo + hi);
        if (kept_of(h, "onchip", mid, out) < target) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

enum { K_FLASH, K_FAST, K_MASKS, K_STATS, K_REF, K_N };


int main(int argc, char **argv) {
    (void)head_offset(); /* a bad BENCH_OFFSET fails now, not after the peak probe */
    int L = 4096, reps = 5;
    double target = 0.1;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--L") && a + 1 < argc) L = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--target") && a + 1 < argc) target = atof(argv[++a]);
        else if (!strcmp(argv[a], "--reps") && a + 1 < argc) reps = atoi(argv[++a]);
        else die("usage: bench_fn_op [--L n] [--target f] [--reps n]");
    }
    if (L < 64 || reps < 1 || !(target > 0 && target < 1)) die("bad --L, --reps or --target");
    const int d = 64;
    printf("cpu level %s, L = %d, d = %d, one thread, CPU ms of the calling thread, best [median] of %d "
           "interleaved runs\n\n",
           sp_cpu_attention_level(), L, d, reps);
    printf("| data | mask | policy | kept (mem-kept) | flash | fast | fast-masks | fast-stats | reference | "
           "fast / flash | fast-masks / flash | fast-stats / flash | reference / fast |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    const char *datas[2] = {"bert-l", "clustered"};
    const char *pols[2] = {"layer", "onchip"};
    float *out = malloc((size_t)L * d * sizeof(float)), *out2 = malloc((size_t)L * d * sizeof(float));
    for (int di = 0; di < 2; di++)
        for (int causal = 1; causal >= 0; causal--)
            for (int pi = 0; pi < 2; pi++) {
                head cal, h;
                head_make(&cal, L, d, causal, datas[di], 1);
                head_make(&h, L, d, causal, datas[di], 0);
                double value = pi == 0 ? head_quantile_threshold(&cal, target) : bisect_delta(&h, target, out);
                head_free(&cal);
                sp_attn_op *ops[K_N] = {NULL, make_op(pols[pi], value, "fast", 1, 0),
                                        make_op(pols[pi], value, "fast", 0, 0), make_op(pols[pi], value, "fast", 1, 1),
                                        make_op(pols[pi], value, "reference", 1, 1)};
                sp_error err = {0};
                /* check: fast against the reference on the timed head */
                sp_attn_head a = head_attn(&h, out), b = head_attn(&h, out2);
                if (ops[K_STATS]->run(ops[K_STATS], &a, &err) != SP_OK) die(err.msg);
                if (ops[K_REF]->run(ops[K_REF], &b, &err) != SP_OK) die(err.msg);
                const sp_attn_stats *sf = &ops[K_STATS]->stats[0], *sr = &ops[K_REF]->stats[0];
                if (sf->pairs_kept != sr->pairs_kept || sf->pairs_mem_kept != sr->pairs_mem_kept ||
                    sf->false_prunes != sr->false_prunes || sf->false_keeps != sr->false_keeps ||
                    fabs(sf->mass_lost - sr->mass_lost) > 1e-9 * (1 + sr->mass_lost))
                    die("fast and reference statistics differ");
                double e = 0;
                for (size_t t = 0; t < (size_t)L * d; t++) e = fmax(e, fabs((double)out[t] - out2[t]));
                if (e > 1e-4) die("fast and reference outputs differ by more than 1e-4");
                double kept = sp_attn_stats_kept_fraction(sr), mkept = sp_attn_stats_mem_kept_fraction(sr);
                double t[K_N][64];
                int nr = reps < 64 ? reps : 64;
                for (int r = 0; r < nr; r++)
                    for (int k = 0; k < K_N; k++) {
                        sp_attn_head x = head_attn(&h, out);
                        double t0 = bench_thread_cpu_s();
                        if (k == K_FLASH) {
                            if (sp_cpu_attention_dense(&x, 1, &err) != SP_OK) die(err.msg);
                        } else if (ops[k]->run(ops[k], &x, &err) != SP_OK) {
                            die(err.msg);
                        }
                        t[k][r] = 1e3 * (bench_thread_cpu_s() - t0);
                    }
                double best[K_N], med[K_N];
                for (int k = 0; k < K_N; k++) {
                    qsort(t[k], (size_t)nr, sizeof(double), bench_cmp_double);
                    best[k] = t[k][0], med[k] = t[k][nr / 2];
                }
                printf("| %s | %s | %s %s %.3g | %.3f (%.3f) |", datas[di], causal ? "causal" : "bidirectional",
                       pols[pi], pi == 0 ? "thr" : "delta", value, kept, mkept);
                for (int k = 0; k < K_N; k++) printf(" %.1f [%.1f] |", best[k], med[k]);
                printf(" %.2fx [%.2fx] | %.2fx [%.2fx] | %.2fx [%.2fx] | %.1fx [%.1fx] |\n", best[K_FAST] / best[K_FLASH],
                       med[K_FAST] / med[K_FLASH], best[K_MASKS] / best[K_FLASH], med[K_MASKS] / med[K_FLASH],
                       best[K_STATS] / best[K_FLASH], med[K_STATS] / med[K_FLASH], best[K_REF] / best[K_FAST],
                       med[K_REF] / med[K_FAST]);
                fflush(stdout);
                for (int k = 1; k < K_N; k++) sp_attn_op_free(ops[k]);
                head_free(&h);
                (void)e;
            }
    free(out), free(out2);
    return 0;
}
