/* heads.c: the synthetic heads shared by bench_attention and bench_fn_op (heads.h). */
#include "heads.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sprint/sim.h"

static void gen_bert(head *h, int hi) {
    sp_config cfg;
    sp_config_defaults(&cfg);
    sp_workload wl;
    sp_error err = {0};
    if (sp_workload_preset(&cfg, "BERT-L", &wl, &err) != SP_OK) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    wl.seq = h->L;
    sp_workload_synth_head(&cfg, &wl, 0, hi, h->q, h->k, h->v);
}

static void gen_clustered(head *h, int hi) {
    int L = h->L, d = h->d;
    uint64_t s = 1000 + (uint64_t)hi;
    for (int i = 0; i < L; i++) {
        int cl = (int)(sp_rng_uniform(sp_rng_key(s, 1, (uint64_t)i / 32, 0, 0)) * 16);
        for (int c = 0; c < d; c++) {
            double cen = sp_rng_normal(sp_rng_key(s, 2, (uint64_t)cl, (uint64_t)c, 0));
            size_t t = (size_t)i * d + c;
            h->q[t] = (float)(3.0 * cen + 0.8 * sp_rng_normal(sp_rng_key(s, 3, (uint64_t)i, (uint64_t)c, 0)));
            h->k[t] = (float)(cen + 0.8 * sp_rng_normal(sp_rng_key(s, 4, (uint64_t)i, (uint64_t)c, 0)));
            h->v[t] = (float)sp_rng_normal(sp_rng_key(s, 5, (uint64_t)i, (uint64_t)c, 0));
        }
    }
}

int head_offset(void) {
    const char *e = getenv("BENCH_OFFSET");
    char *end = NULL;
    const long off = e && *e ? strtol(e, &end, 10) : 0;
    if (e && *e && (*end || off < 0 || off > 60 || off % 4)) {
        fprintf(stderr, "bench: BENCH_OFFSET must be a multiple of 4 bytes in 0-60, not '%s'\n", e);
        exit(1);
    }
    return (int)off;
}

void head_make(head *h, int L, int d, int causal, const char *data, int hi) {
    h->L = L, h->d = d, h->causal = causal;
    /* By default 64-byte aligned rows (d % 16 == 0): every kernel, the flash baseline included,
     * sees its rows on cache-line boundaries, as a caller who cares about speed would give them
     * (glibc's malloc returns 16 bytes off a line at these sizes, which splits every 64-byte
     * load); BENCH_OFFSET moves them off a line to time that case. */
    const int off = head_offset();
    size_t bytes = ((size_t)L * d * sizeof(float) + 63) / 64 * 64 + 64;
    float **rows[3] = {&h->q, &h->k, &h->v};
    for (int t = 0; t < 3; t++) {
        h->base[t] = aligned_alloc(64, bytes);
        if (!h->base[t]) {
            fprintf(stderr, "bench: out of memory for a %d x %d head\n", L, d);
            exit(1);
        }
        *rows[t] = (float *)(void *)((char *)h->base[t] + off);
    }
    if (!strcmp(data, "bert-l")) gen_bert(h, hi);
    else gen_clustered(h, hi);
}

void head_free(head *h) { free(h->base[0]), free(h->base[1]), free(h->base[2]); }

sp_attn_head head_attn(const head *h, float *out) {
    sp_attn_head a = {.n_q = h->L, .n_k = h->L, .d = h->d, .q = h->q, .k = h->k, .v = h->v, .out = out,
                      .ldq = h->d, .ldk = h->d, .ldv = h->d, .ldo = h->d, .causal = h->causal,
                      .scale = 1.0f / sqrtf((float)h->d)};
    return a;
}

int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double head_quantile_threshold(const head *h, double target) {
    int L = h->L, d = h->d, nsq = 64;
    double scale = 1.0 / sqrt((double)d);
    double *all = malloc((size_t)nsq * L * sizeof *all);
    if (!all) {
        fprintf(stderr, "bench: out of memory calibrating a %d-token head\n", L);
        exit(1);
    }
    size_t n = 0;
    for (int s = 0; s < nsq; s++) {
        int i = (int)((long long)s * (L - 1) / (nsq - 1)), end = h->causal ? i + 1 : L;
        for (int j = 0; j < end; j++) {
            double a = 0;
            for (int c = 0; c < d; c++) a += (double)h->q[(size_t)i * d + c] * h->k[(size_t)j * d + c];
            all[n++] = a * scale;
        }
    }
    qsort(all, n, sizeof *all, bench_cmp_double); /* k-th largest by sorting (n <= 64 L) */
    size_t kk = (size_t)(target * (double)n);
    if (kk >= n) kk = n - 1;
    double thr = all[n - 1 - kk];
    free(all);
    return thr;
}

double bench_thread_cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
