/* decode_cases.c: the decode cases of bench_attention (`bench_attention --mode decode ...`) and
 * of bench_decode (the same options): one decode step of multi-head / grouped-query attention over a growing KV
 * cache (sprint/decode.h): the SPRINT kernel (4-bit key-MSB screen, relative threshold, exact
 * attention over survivors) against the dense decode kernel on fp32, fp16 and bf16 caches,
 * side by side in one run, at several context lengths and thread counts.
 *
 * Data ("gauss-s3"): keys and values N(0, 1) per element; each query head N(0, 3^2) per
 * element, so scale * q.k (scale = 1/sqrt(d)) has standard deviation 3 and the top 10% of keys
 * hold ~96% of the softmax mass. The SPRINT margin is bisected on the first query to keep
 * --kept of the keys (default 0.10), then held fixed.
 *
 * Before timing, every kernel's output is checked against the portable kernels on the same
 * cache (bench exits 1 on a mismatch) and its error measured against the double reference
 * over the fp32 tensors (sp_decode_ref). Bandwidth = bytes the kernel must read per step
 * (dense: K and V; SPRINT: MSBs and key scales plus the fetched rows of K and V) / time, also
 * as a fraction of the read bandwidth measured here with the same thread count: the median of
 * 1 GiB read passes (sp_membw_read_pass) interleaved with the timed steps, so both see the same
 * load on a shared machine.
 *
 * usage: bench_decode [--contexts 4096,16384,65536] [--threads 1,2] [--kv-heads 8] [--group 4]
 *                     [--d 128] [--kept 0.10] [--reps 7] [--json]
 * JSON (--json): an array of cases with the keys of bench_attention's prefill cases (L, d,
 * causal, threads, data, kernel, ms, kept_fraction, max_abs_err, rel_l2, mode = "decode") and
 * dtype, heads, kv_heads, level, gb_per_s, dram_gb_per_s, bw_fraction, speedup_vs_best_dense. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sprint/decode.h"

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

static void die(const char *msg, const sp_error *e) {
    fprintf(stderr, "bench_decode: %s%s%s\n", msg, e ? ": " : "", e ? e->msg : "");
    exit(1);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void errors(const float *out, const float *ref, size_t n, double *max_abs, double *rel_l2) {
    double num = 0, den = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        double dlt = (double)out[i] - ref[i];
        mx = fmax(mx, fabs(dlt));
        num += dlt * dlt;
        den += (double)ref[i] * ref[i];
    }
    *max_abs = mx;
    *rel_l2 = den > 0 ? sqrt(num / den) : sqrt(num);
}

typedef struct result {
    char kernel[32];
    const char *dtype;
    int L, threads;
    double ms, kept, max_abs, rel_l2, gbs, dram;
} result;

int bench_decode_main(int argc, char **argv);

/* Runs the decode cases for argv (options above); 0 on success, exits 1 on a bad option or a
 * kernel that disagrees with the portable one. */
int bench_decode_main(int argc, char **argv) {
    int ctx[16] = {4096, 16384, 65536}, nctx = 3, thr[8] = {1, omp_get_max_threads()}, nthr = 2;
    int Hk = 8, G = 4, d = 128, reps = 7, json = 0;
    double kept_target = 0.10;
    if (thr[1] == 1) nthr = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) json = 1;
        else if (!v) die("missing value (see the usage in bench/decode_cases.c)", NULL);
        else if (!strcmp(a, "--contexts") && (nctx = parse_list(v, ctx, 16)) > 0) i++;
        else if (!strcmp(a, "--threads") && (nthr = parse_list(v, thr, 8)) > 0) i++;
        else if (!strcmp(a, "--kv-heads") && (Hk = atoi(v)) > 0) i++;
        else if (!strcmp(a, "--group") && (G = atoi(v)) > 0) i++;
        else if (!strcmp(a, "--d") && (d = atoi(v)) > 0) i++;
        else if (!strcmp(a, "--reps") && (reps = atoi(v)) > 0 && reps <= 64) i++;
        else if (!strcmp(a, "--kept") && (kept_target = atof(v)) > 0 && kept_target <= 1) i++;
        else die("bad option or value (see the usage in bench/decode_cases.c)", NULL);
    }
    int H = Hk * G, maxL = 0;
    for (int i = 0; i < nctx; i++) maxL = ctx[i] > maxL ? ctx[i] : maxL;
    float scale = (float)(1.0 / sqrt((double)d));
    /* token-major fp32 tensors (maxL, Hk, d), the reference's input */
    size_t row = (size_t)Hk * d;
    float *K = sp_xmalloc((size_t)maxL, row * sizeof(float)), *V = sp_xmalloc((size_t)maxL, row * sizeof(float));
    float *q = sp_xmalloc((size_t)H * d, sizeof(float));
    sp_rng rng;
    sp_rng_seed(&rng, 12);
    for (size_t i = 0; i < (size_t)maxL * row; i++) K[i] = (float)sp_rng_next_normal(&rng);
    for (size_t i = 0; i < (size_t)maxL * row; i++) V[i] = (float)sp_rng_next_normal(&rng);
    for (int i = 0; i < H * d; i++) q[i] = (float)(3.0 * sp_rng_next_normal(&rng));
    float *out = sp_xmalloc((size_t)H * d, sizeof(float)), *ref = sp_xmalloc((size_t)H * d, sizeof(float));
    float *chk = sp_xmalloc((size_t)H * d, sizeof(float));
    /* DRAM read bandwidth: a 1 GiB read pass timed in the same interleaved loop as the kernels
     * (the machine is shared; bandwidth left to us changes by the minute) */
    size_t bw_words = ((size_t)1 << 30) / sizeof(uint64_t);
    uint64_t *bwbuf = sp_xmalloc(bw_words, sizeof(uint64_t));
    for (size_t i = 0; i < bw_words; i++) bwbuf[i] = i;
    double dram[8];
    for (int t = 0; t < nthr; t++) dram[t] = sp_membw_read_pass(bwbuf, bw_words, thr[t]);
    sp_kv_dtype types[3] = {SP_KV_F32, SP_KV_F16, SP_KV_BF16};
    result *res = sp_xmalloc((size_t)nctx * nthr * 6, sizeof *res);
    int nres = 0;
    sp_error e = {0};
    fprintf(stderr, "bench_decode: %d query heads, %d KV heads, d %d, kernels %s, DRAM read", H, Hk, d,
            sp_decode_level_name(0));
    for (int t = 0; t < nthr; t++) fprintf(stderr, " %.2f GB/s (%d thr)", dram[t], thr[t]);
    fprintf(stderr, "\n");
    for (int ci = 0; ci < nctx; ci++) {
        int L = ctx[ci];
        sp_decode_ref(K, V, L, H, Hk, d, scale, q, ref);
        int first_res = nres;
        sp_kv_cache *caches[3];
        sp_decode_opts opts[6];
        double bytes[6], kept[6];
        for (int ti = 0; ti < 3; ti++) {
            sp_kv_cache_opts co = {.n_heads = H, .n_kv_heads = Hk, .head_dim = d, .capacity = L, .dtype = types[ti]};
            sp_kv_cache *c = NULL;
            if (sp_kv_cache_init(&co, &c, &e) != SP_OK) die("cache", &e);
            caches[ti] = c;
            for (int j = 0; j < L; j++)
                if (sp_kv_cache_append(c, K + (size_t)j * row, V + (size_t)j * row, &e) != SP_OK) die("append", &e);
            /* the margin for the kept target, by bisection on this cache */
            sp_decode_opts so = {.kernel = SP_DECODE_SPRINT, .scale = scale, .threads = 0};
            double lo = 0, hi = 64;
            for (int it = 0; it < 30; it++) {
                so.margin = (float)(0.5 * (lo + hi));
                sp_decode_stats st = {0};
                if (sp_decode_step(c, q, out, &so, &st, &e) != SP_OK) die("step", &e);
                if (st.keys_kept / st.keys_visible > kept_target) hi = so.margin;
                else lo = so.margin;
            }
            for (int kern = 0; kern < 2; kern++) {
                sp_decode_opts o = {.kernel = kern ? SP_DECODE_SPRINT : SP_DECODE_DENSE, .scale = scale,
                                    .margin = so.margin};
                /* check against the portable kernels on the same cache */
                sp_decode_stats st = {0}, stp = {0};
                o.portable = 1;
                if (sp_decode_step(c, q, chk, &o, &stp, &e) != SP_OK) die("step", &e);
                o.portable = 0;
                if (sp_decode_step(c, q, out, &o, &st, &e) != SP_OK) die("step", &e);
                double mabs, rl2;
                errors(out, chk, (size_t)H * d, &mabs, &rl2);
                if (rl2 > 1e-5 || st.keys_kept != stp.keys_kept) {
                    fprintf(stderr, "bench_decode: %s %s L=%d: fast vs portable rel_l2 %.3g, kept %.0f vs %.0f\n",
                            kern ? "sprint" : "dense", sp_kv_dtype_name(types[ti]), L, rl2, st.keys_kept, stp.keys_kept);
                    return 1;
                }
                int k = 2 * ti + kern;
                opts[k] = o;
                kept[k] = st.keys_kept / st.keys_visible;
                bytes[k] = kern ? (double)L * Hk * (d / 2.0 + 4) + st.keys_fetched * 2.0 * d * (types[ti] ? 2 : 4)
                                : (double)L * Hk * 2.0 * d * (types[ti] ? 2 : 4);
            }
        }
        /* timing: the six kernels interleaved rep by rep, so that load changes on a shared
         * machine hit all of them alike; the median step of each */
        for (int th = 0; th < nthr; th++) {
            double t[6][64], bw[64];
            for (int k = 0; k < 6; k++) {
                opts[k].threads = thr[th];
                if (sp_decode_step(caches[k / 2], q, out, &opts[k], NULL, &e) != SP_OK) die("step", &e);
            }
            for (int r = 0; r < reps; r++) {
                for (int k = 0; k < 6; k++) {
                    double t0 = sp_now_seconds();
                    if (sp_decode_step(caches[k / 2], q, out, &opts[k], NULL, &e) != SP_OK) die("step", &e);
                    t[k][r] = (sp_now_seconds() - t0) * 1e3;
                }
                bw[r] = sp_membw_read_pass(bwbuf, bw_words, thr[th]);
            }
            qsort(bw, (size_t)reps, sizeof bw[0], cmp_double);
            dram[th] = bw[reps / 2];
            for (int k = 0; k < 6; k++) {
                if (sp_decode_step(caches[k / 2], q, out, &opts[k], NULL, &e) != SP_OK) die("step", &e);
                qsort(t[k], (size_t)reps, sizeof t[k][0], cmp_double);
                result *r = &res[nres++];
                snprintf(r->kernel, sizeof r->kernel, "%s-%s", k % 2 ? "sprint" : "dense", sp_kv_dtype_name(types[k / 2]));
                r->dtype = sp_kv_dtype_name(types[k / 2]);
                r->L = L;
                r->threads = thr[th];
                r->ms = t[k][reps / 2];
                errors(out, ref, (size_t)H * d, &r->max_abs, &r->rel_l2);
                r->kept = kept[k];
                r->gbs = bytes[k] / (r->ms * 1e-3) / 1e9;
                r->dram = dram[th];
                fprintf(stderr, "  L %6d %-12s thr %d: %8.3f ms  kept %.3f  rel_l2 %.2e  %.2f GB/s (%.0f%% of DRAM)\n",
                        L, r->kernel, r->threads, r->ms, r->kept, r->rel_l2, r->gbs, 100 * r->gbs / r->dram);
            }
        }
        for (int ti = 0; ti < 3; ti++) sp_kv_cache_free(caches[ti]);
        /* speedups against the fastest dense kernel at the same thread count */
        for (int i = first_res; i < nres; i++) {
            double best = INFINITY;
            for (int j = first_res; j < nres; j++)
                if (!strncmp(res[j].kernel, "dense", 5) && res[j].threads == res[i].threads)
                    best = fmin(best, res[j].ms);
            if (!strncmp(res[i].kernel, "sprint", 6))
                fprintf(stderr, "  L %6d %-12s thr %d: speedup %.2fx vs the fastest dense\n", res[i].L, res[i].kernel,
                        res[i].threads, best / res[i].ms);
            if (json) {
                printf("%s  {\"mode\": \"decode\", \"L\": %d, \"d\": %d, \"causal\": true, \"threads\": %d, "
                       "\"data\": \"gauss-s3\", \"kernel\": \"%s\", \"dtype\": \"%s\", \"heads\": %d, \"kv_heads\": %d, "
                       "\"level\": \"%s\", \"ms\": %.4f, \"kept_fraction\": %.4f, \"max_abs_err\": %.3e, "
                       "\"rel_l2\": %.3e, \"gb_per_s\": %.3f, \"dram_gb_per_s\": %.3f, \"bw_fraction\": %.3f, "
                       "\"speedup_vs_best_dense\": %.3f}",
                       i == 0 ? "[\n" : ",\n", res[i].L, d, res[i].threads, res[i].kernel, res[i].dtype, H, Hk,
                       sp_decode_level_name(0), res[i].ms, res[i].kept, res[i].max_abs, res[i].rel_l2, res[i].gbs,
                       res[i].dram, res[i].gbs / res[i].dram, best / res[i].ms);
                fflush(stdout);
            }
        }
    }
    if (json) printf("\n]\n");
    free(bwbuf);
    free(res), free(K), free(V), free(q), free(out), free(ref), free(chk);
    return 0;
}
