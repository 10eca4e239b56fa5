/* bench_attention.c: one head of attention, d = 64, on this CPU: sprint's flash kernel (the fair
 * dense baseline), OpenBLAS-based attention (the second baseline) and the SPRINT CPU kernel
 * (cpu_attention.h), per L (1024, 4096, 16384), causal and bidirectional, one and all threads,
 * on the synthetic BERT-L head (the simulator's preset generator) and on a clustered generator.
 * Per case: the best and median time of each kernel (runs interleaved), the kept fraction, the
 * output error against the double reference (max abs and mean relative L2 over 128 sampled
 * query rows), the ratios, and the flash kernel's fraction of this machine's measured FMA peak.
 *
 * Before timing, every kernel's output is checked against the double reference (flash and
 * OpenBLAS within 1e-4 max abs; SPRINT at threshold -inf within 1e-4 of dense, and at the
 * benchmark threshold within 1e-4 of the double softmax over its own kept keys).
 *
 * The SPRINT threshold for a target kept fraction is calibrated on another head of the same
 * generator (head 1; the timed head is head 0): the quantile of its exact scores.
 *
 * usage: bench_attention [--json] [--curve] [--L n,n,...] [--data bert-l,clustered]
 *                        [--threads 1,0] [--causal 0,1] [--target 0.1]
 *   --curve: at L = 4096, one thread, the SPRINT/flash speedup against the kept fraction.
 *   env BENCH_REPS (default 5): timed runs per kernel (interleaved).
 *   env BENCH_WARM (default 1): each timed call follows one untimed call of the same kernel on
 *       the same inputs, so every kernel is timed in the same cache state; 0 restores the
 *       protocol before part 9z.v of docs/RESULTS.md (flash, OpenBLAS, SPRINT back to back),
 *       in which SPRINT always ran right after OpenBLAS attention and flash right after SPRINT.
 *   env BENCH_OFFSET (bytes, a multiple of 4 in 0-60, default 0): Q, K and V that far past a
 *       64-byte boundary (16: where malloc puts arrays of these sizes; bench/heads.h).
 *   env BENCH_SX_BATCH, BENCH_SX_DENSE_MIN: the SPRINT kernel's speed knobs (sprint_exact.h:
 *       gathered survivors per served batch, 16-65536, default 1024; survivors of a 4 x 16
 *       panel from which it goes through the dense tile, 0-65, default 24), for the tuning runs
 *       of RESULTS.md. The BENCH_* variables other than BENCH_REPS do not apply to --mode decode. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fma_peak.h"
#include "heads.h"
#include "sprint/cpu_attention.h"
#include "sprint/sim.h"
#include "attention/sprint_exact.h" /* the kernel's tuning knobs (BENCH_SX_*) */

void openblas_set_num_threads(int num_threads);

#define NSAMPLE 128 /* query rows checked against the double reference */
enum { K_FLASH, K_BLAS, K_SPRINT, K_N };
static const char *KNAME[K_N] = {"flash", "openblas", "sprint"};

static void die(const char *m) {
    fprintf(stderr, "bench_attention: %s\n", m);
    exit(1);
}

static int sample_row(int s, int L) { return (int)((long long)s * (L - 1) / (NSAMPLE - 1)); }

static double dot_d(const float *a, const float *b, int d) {
    double s = 0;
    for (int c = 0; c < d; c++) s += (double)a[c] * b[c];
    return s;
}

/* Double reference of the sampled rows: dense (kept NULL) or over the kept keys of each row. */
static void reference(const head *h, const unsigned char *kept, double *ref) {
    int L = h->L, d = h->d;
    double scale = 1.0 / sqrt((double)d);
    double *sc = malloc((size_t)L * sizeof *sc);
    for (int s = 0; s < NSAMPLE; s++) {
        int i = sample_row(s, L), end = h->causal ? i + 1 : L;
        double mx = -INFINITY;
        for (int j = 0; j < end; j++) {
            sc[j] = (kept && !kept[(size_t)i * L + j]) ? -INFINITY : dot_d(h->q + (size_t)i * d, h->k + (size_t)j * d, d) * scale;
            mx = sc[j] > mx ? sc[j] : mx;
        }
        double *o = ref + (size_t)s * d, den = 0;
        for (int c = 0; c < d; c++) o[c] = 0;
        if (mx == -INFINITY) continue;
        for (int j = 0; j < end; j++) {
            if (sc[j] == -INFINITY) continue;
            double p = exp(sc[j] - mx);
            den += p;
            for (int c = 0; c < d; c++) o[c] += p * h->v[(size_t)j * d + c];
        }
        for (int c = 0; c < d; c++) o[c] /= den;
    }
    free(sc);
}

static void errors(const head *h, const float *out, const double *ref, double *maxabs, double *rel) {
    int d = h->d;
    *maxabs = 0, *rel = 0;
    for (int s = 0; s < NSAMPLE; s++) {
        const float *o = out + (size_t)sample_row(s, h->L) * d;
        double e2 = 0, r2 = 0;
        for (int c = 0; c < d; c++) {
            double e = o[c] - ref[(size_t)s * d + c];
            *maxabs = fmax(*maxabs, fabs(e));
            e2 += e * e;
            r2 += ref[(size_t)s * d + c] * ref[(size_t)s * d + c];
        }
        *rel += r2 > 0 ? sqrt(e2 / r2) : sqrt(e2);
    }
    *rel /= NSAMPLE;
}

/* OpenBLAS attention: blocks of 64 queries, S = Q K^T over the keys the block sees (sgemm),
 * row softmax (expf, causal mask), O = P V (sgemm). */
static void blas_attention(const head *h, float *out, float *S) {
    const int L = h->L, d = h->d, B = 64;
    const float scale = 1.0f / sqrtf((float)d);
    for (int i0 = 0; i0 < L; i0 += B) {
        int b = L - i0 < B ? L - i0 : B, nk = h->causal ? i0 + b : L;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, nk, d, scale, h->q + (size_t)i0 * d, d, h->k, d, 0.0f,
                    S, nk);
        for (int r = 0; r < b; r++) {
            float *row = S + (size_t)r * nk;
            int end = h->causal ? i0 + r + 1 : nk;
            float mx = row[0], sum = 0;
            for (int j = 1; j < end; j++) mx = row[j] > mx ? row[j] : mx;
            for (int j = 0; j < end; j++) sum += (row[j] = expf(row[j] - mx));
            float inv = 1.0f / sum;
            for (int j = 0; j < end; j++) row[j] *= inv;
            for (int j = end; j < nk; j++) row[j] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, d, nk, 1.0f, S, nk, h->v, d, 0.0f,
                    out + (size_t)i0 * d, d);
    }
}

typedef struct result {
    double best_ms, med_ms, kept, maxabs, rel;
    double cpu_best_ms, cpu_med_ms; /* CPU time of the calling thread (1-thread cases) */
} result;

/* An integer environment variable in [lo, hi], or dflt when unset; anything else is an error. */
static long env_long(const char *name, long lo, long hi, long dflt) {
    const char *s = getenv(name);
    if (!s) return dflt;
    char *e;
    const long v = strtol(s, &e, 10);
    if (!*s || *e || v < lo || v > hi) {
        fprintf(stderr, "bench_attention: %s: expected an integer in [%ld, %ld]\n", name, lo, hi);
        exit(1);
    }
    return v;
}

static double g_peak1 = 0, g_peak_all = 0;
static int g_warm = 1; /* BENCH_WARM */

/* Runs one case: every kernel checked, then timed `reps` times interleaved. */
static void run_case(const head *h, const char *data, int threads, double thr, double target, int reps,
                     result res[K_N], sp_attn_stats *sst) {
    int L = h->L, d = h->d;
    size_t N = (size_t)L * d;
    float *out[K_N];
    for (int k = 0; k < K_N; k++) out[k] = malloc(N * sizeof(float));
    float *S = malloc((size_t)64 * L * sizeof(float));
    unsigned char *kept = malloc((size_t)L * L);
    double *ref = malloc((size_t)NSAMPLE * d * sizeof *ref), *kref = malloc((size_t)NSAMPLE * d * sizeof *kref);
    reference(h, NULL, ref);
    sp_error err = {0};
    openblas_set_num_threads(threads > 0 ? threads : omp_get_max_threads());
    sp_cpu_sprint_opts so = {.policy = SP_CPU_POLICY_FIXED, .threshold = thr, .margin_sigma = 3, .threads = threads};
    /* ---- checks ---- */
    sp_attn_head a = head_attn(h, out[K_FLASH]);
    if (sp_cpu_attention_dense(&a, threads, &err) != SP_OK) die(err.msg);
    blas_attention(h, out[K_BLAS], S);
    sp_cpu_sprint_opts chk = so;
    chk.threshold = -INFINITY;
    a.out = out[K_SPRINT];
    if (sp_cpu_attention_sprint(&a, &chk, &err) != SP_OK) die(err.msg);
    double ma, rl;
    for (int k = 0; k < K_N; k++) {
        errors(h, out[k], ref, &ma, &rl);
        if (!(ma < 1e-4)) {
            fprintf(stderr, "bench_attention: CHECK FAILED: %s%s max abs error %g vs the double reference\n", KNAME[k],
                    k == K_SPRINT ? " (threshold -inf)" : "", ma);
            exit(1);
        }
    }
    memset(sst, 0, sizeof *sst);
    so.kept = kept;
    so.stats = sst;
    if (sp_cpu_attention_sprint(&a, &so, &err) != SP_OK) die(err.msg);
    reference(h, kept, kref);
    errors(h, out[K_SPRINT], kref, &ma, &rl);
    if (!(ma < 1e-4)) {
        fprintf(stderr, "bench_attention: CHECK FAILED: sprint differs by %g from the double softmax over its kept keys\n",
                ma);
        exit(1);
    }
    so.kept = NULL;
    so.stats = NULL;
    /* ---- timing, interleaved ---- */
    double *t[K_N], *tc[K_N];
    for (int k = 0; k < K_N; k++) t[k] = malloc((size_t)reps * sizeof(double)), tc[k] = malloc((size_t)reps * sizeof(double));
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < K_N; k++) {
            a.out = out[k];
            double t0 = 0, c0 = 0;
            for (int pass = g_warm ? 0 : 1; pass < 2; pass++) { /* pass 0: the untimed warm-up call */
                if (pass == 1) t0 = sp_now_seconds(), c0 = bench_thread_cpu_s();
                if (k == K_FLASH) sp_cpu_attention_dense(&a, threads, &err);
                else if (k == K_BLAS) blas_attention(h, out[k], S);
                else sp_cpu_attention_sprint(&a, &so, &err);
            }
            t[k][r] = (sp_now_seconds() - t0) * 1e3;
            tc[k][r] = (bench_thread_cpu_s() - c0) * 1e3;
        }
    for (int k = 0; k < K_N; k++) {
        qsort(t[k], (size_t)reps, sizeof(double), bench_cmp_double);
        qsort(tc[k], (size_t)reps, sizeof(double), bench_cmp_double);
        res[k].best_ms = t[k][0];
        res[k].med_ms = t[k][reps / 2];
        res[k].cpu_best_ms = tc[k][0];
        res[k].cpu_med_ms = tc[k][reps / 2];
        free(tc[k]);
        res[k].kept = k == K_SPRINT ? sp_attn_stats_kept_fraction(sst) : 1.0;
        errors(h, out[k], ref, &res[k].maxabs, &res[k].rel);
        free(t[k]);
        free(out[k]);
    }
    (void)data, (void)target;
    free(S), free(kept), free(ref), free(kref);
}

static int parse_list(const char *s, int *out, int cap) {
    int n = 0;
    while (*s && n < cap) {
        out[n++] = atoi(s);
        const char *c = strchr(s, ',');
        if (!c) break;
        s = c + 1;
    }
    return n;
}

int bench_decode_main(int argc, char **argv); /* bench/decode_cases.c */

int main(int argc, char **argv) {
    (void)head_offset(); /* a bad BENCH_OFFSET fails now, not after the peak probe */
    /* --mode decode [decode options]: the decode cases (issue 12), in the same JSON object */
    if (argc >= 3 && !strcmp(argv[1], "--mode") && !strcmp(argv[2], "decode")) {
        int json = 0;
        for (int i = 3; i < argc; i++) json |= !strcmp(argv[i], "--json");
        argv[2] = argv[0];
        if (json) printf("{\"cases\": "), fflush(stdout);
        int rc = bench_decode_main(argc - 2, argv + 2);
        if (json) printf("}\n");
        return rc;
    }
    int json = 0, curve = 0;
    int Ls[8] = {1024, 4096, 16384}, nL = 3, ths[4] = {1, 0}, nth = 2, cs[2] = {1, 0}, nc = 2;
    const char *datas[2] = {"bert-l", "clustered"};
    int nd = 2;
    double target = 0.10;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--curve")) curve = 1;
        else if (!strcmp(argv[i], "--L") && i + 1 < argc) nL = parse_list(argv[++i], Ls, 8);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) nth = parse_list(argv[++i], ths, 4);
        else if (!strcmp(argv[i], "--causal") && i + 1 < argc) nc = parse_list(argv[++i], cs, 2);
        else if (!strcmp(argv[i], "--target") && i + 1 < argc) target = atof(argv[++i]);
        else if (!strcmp(argv[i], "--data") && i + 1 < argc) {
            char *s = argv[++i];
            if (!strcmp(s, "bert-l")) datas[0] = "bert-l", nd = 1;
            else if (!strcmp(s, "clustered")) datas[0] = "clustered", nd = 1;
            else if (strcmp(s, "bert-l,clustered")) die("--data: expected bert-l, clustered or bert-l,clustered");
        } else {
            fprintf(stderr, "usage: bench_attention [--json] [--curve] [--L n,..] [--data bert-l|clustered] "
                            "[--threads 1,0] [--causal 1,0] [--target f]\n");
            return 2;
        }
    }
    if (!(target > 0 && target <= 1)) die("--target: expected a kept fraction in (0, 1]");
    int reps = getenv("BENCH_REPS") ? atoi(getenv("BENCH_REPS")) : 5;
    if (reps < 1) reps = 1;
    if (getenv("BENCH_WARM")) g_warm = atoi(getenv("BENCH_WARM")) != 0;
    sp_sx_batch_set((int)env_long("BENCH_SX_BATCH", 16, 65536, sp_sx_batch()));
    sp_sx_dense_min_set((int)env_long("BENCH_SX_DENSE_MIN", 0, 65, sp_sx_dense_min())); /* 65: never dense */
    const int d = 64, all = omp_get_max_threads();
    sp_cpu_level lv = sp_cpu_detect();
    g_peak1 = fma_peak_gflops(lv, 1, 5);
    g_peak_all = fma_peak_gflops(lv, all, 5);
    cJSON *root = cJSON_CreateObject(), *cases = cJSON_CreateArray();
    cJSON_AddStringToObject(root, "cpu_level", sp_cpu_level_name(lv));
    cJSON_AddNumberToObject(root, "peak_gflops_1t", g_peak1);
    cJSON_AddNumberToObject(root, "peak_gflops_all", g_peak_all);
    cJSON_AddNumberToObject(root, "reps", reps);
    cJSON_AddBoolToObject(root, "warm", g_warm);
    cJSON_AddNumberToObject(root, "sx_batch", sp_sx_batch());
    cJSON_AddNumberToObject(root, "sx_dense_min", sp_sx_dense_min());
    cJSON_AddItemToObject(root, "cases", cases);
    if (!json)
        printf("cpu level %s; measured fp32 FMA peak %.1f GFLOP/s (1 thread), %.1f (%d threads); best of %d "
               "interleaved runs (median in brackets)%s; SPRINT batch %d, dense_min %d\n",
               sp_cpu_level_name(lv), g_peak1, g_peak_all, all, reps,
               g_warm ? ", each after an untimed call of the same kernel" : ", back to back (BENCH_WARM=0)",
               sp_sx_batch(), sp_sx_dense_min());
    double targets_curve[] = {0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0};
    int ntarg = curve ? 10 : 1;
    if (curve && nL == 3 && Ls[0] == 1024) Ls[0] = 4096; /* the default L list: the curve is at 4096 */
    if (curve) nL = 1, nth = 1, ths[0] = 1;
    for (int li = 0; li < nL; li++)
        for (int di = 0; di < nd; di++)
            for (int ci = 0; ci < nc; ci++) {
                head h, hc;
                head_make(&h, Ls[li], d, cs[ci], datas[di], 0);
                head_make(&hc, Ls[li], d, cs[ci], datas[di], 1);
                for (int ti = 0; ti < nth; ti++)
                    for (int gi = 0; gi < ntarg; gi++) {
                        double tg = curve ? targets_curve[gi] : target;
                        double thr = tg >= 1.0 ? -INFINITY : head_quantile_threshold(&hc, tg);
                        int thr_n = ths[ti] > 0 ? ths[ti] : all;
                        result res[K_N];
                        sp_attn_stats sst;
                        run_case(&h, datas[di], ths[ti], thr, tg, reps, res, &sst);
                        double pairs = cs[ci] ? (double)Ls[li] * (Ls[li] + 1) / 2 : (double)Ls[li] * Ls[li];
                        /* one thread: CPU time of the calling thread; all threads: wall time */
                        const int use_cpu = thr_n == 1;
                        double T[K_N];
                        for (int k = 0; k < K_N; k++) T[k] = use_cpu ? res[k].cpu_best_ms : res[k].best_ms;
                        double gfl = 4.0 * d * pairs / (T[K_FLASH] * 1e-3) * 1e-9;
                        double peak = thr_n == 1 ? g_peak1 : g_peak_all;
                        for (int k = 0; k < K_N; k++) {
                            cJSON *c = cJSON_CreateObject();
                            cJSON_AddStringToObject(c, "mode", "prefill");
                            cJSON_AddNumberToObject(c, "L", Ls[li]);
                            cJSON_AddNumberToObject(c, "d", d);
                            cJSON_AddBoolToObject(c, "causal", cs[ci]);
                            cJSON_AddNumberToObject(c, "threads", thr_n);
                            cJSON_AddStringToObject(c, "data", datas[di]);
                            cJSON_AddStringToObject(c, "kernel", KNAME[k]);
                            cJSON_AddNumberToObject(c, "ms", res[k].best_ms);
                            cJSON_AddNumberToObject(c, "ms_median", res[k].med_ms);
                            cJSON_AddNumberToObject(c, "cpu_ms", res[k].cpu_best_ms);
                            cJSON_AddNumberToObject(c, "cpu_ms_median", res[k].cpu_med_ms);
                            cJSON_AddStringToObject(c, "ratio_basis", use_cpu ? "thread cpu time" : "wall time");
                            cJSON_AddNumberToObject(c, "kept_fraction", res[k].kept);
                            cJSON_AddNumberToObject(c, "max_abs_err", res[k].maxabs);
                            cJSON_AddNumberToObject(c, "rel_l2", res[k].rel);
                            cJSON_AddNumberToObject(c, "speedup_vs_flash", T[K_FLASH] / T[k]);
                            if (k == K_SPRINT) {
                                cJSON_AddNumberToObject(c, "target_kept", tg);
                                cJSON_AddNumberToObject(c, "threshold_nats", thr);
                                cJSON_AddNumberToObject(c, "screen_kept_fraction", sp_attn_stats_mem_kept_fraction(&sst));
                            }
                            if (k == K_FLASH) {
                                cJSON_AddNumberToObject(c, "gflops", gfl);
                                cJSON_AddNumberToObject(c, "peak_fraction", peak > 0 ? gfl / peak : 0);
                            }
                            cJSON_AddItemToArray(cases, c);
                        }
                        if (!json) {
                            const result *F = &res[K_FLASH], *B = &res[K_BLAS], *P = &res[K_SPRINT];
                            printf("L %5d %-9s %-13s thr %d %s | flash %7.1f [%7.1f] ms %5.1f GFLOP/s %3.0f%% peak"
                                   " | openblas %7.1f [%7.1f] ms %.2fx flash | sprint %7.1f [%7.1f] ms kept %.3f "
                                   "(screen %.3f) %.2fx faster, err max %.2g rel-L2 %.2g\n",
                                   Ls[li], datas[di], cs[ci] ? "causal" : "bidirectional", thr_n,
                                   use_cpu ? "cpu" : "wall", use_cpu ? F->cpu_best_ms : F->best_ms,
                                   use_cpu ? F->cpu_med_ms : F->med_ms, gfl, peak > 0 ? 100 * gfl / peak : 0,
                                   use_cpu ? B->cpu_best_ms : B->best_ms, use_cpu ? B->cpu_med_ms : B->med_ms,
                                   T[K_BLAS] / T[K_FLASH], use_cpu ? P->cpu_best_ms : P->best_ms,
                                   use_cpu ? P->cpu_med_ms : P->med_ms, P->kept, sp_attn_stats_mem_kept_fraction(&sst),
                                   T[K_FLASH] / T[K_SPRINT], P->maxabs, P->rel);
                            fflush(stdout);
                        }
                    }
                head_free(&h);
                head_free(&hc);
            }
    if (json) {
        char *s = cJSON_Print(root);
        printf("%s\n", s);
        free(s);
    }
    cJSON_Delete(root);
    return 0;
}
