/* bench_model_linear.c: the model's linear layers (src/cpu/linear.h) against OpenBLAS on the
 * real models' shapes, one thread, CPU time: a prefill chunk (32 rows, as forward.c) and a
 * decode step (1 row, as step.c), with the weights packed once (what the model does) and
 * packed on every call (what it would cost without the packed copy).
 *
 * Checks first: sp_linear's output equals the reference's (sp_linear_ref) bit for bit at every
 * level up to the CPU's, and OpenBLAS's is within float rounding of it.
 *
 * usage: bench_model_linear [rounds (default 3)]; prints ns per call, best of the rounds. */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/linear.h"
#include "sprint/common.h"

void openblas_set_num_threads(int num_threads);

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct shape {
    const char *what;
    int out, in;
} shape;

enum { K_BLAS, K_PACKED, K_PACK_EACH, K_COUNT };

/* ns per call of kernel k, best of `rounds` runs of `reps` calls. */
static double time_kernel(int k, int n, const shape *s, const float *a, const float *w, const float *wp, float *scratch,
                          float *c, int reps, int rounds) {
    double best = 1e30;
    for (int r = 0; r < rounds; r++) {
        double t0 = cpu_now();
        for (int i = 0; i < reps; i++) {
            if (k == K_BLAS) {
                if (n == 1) cblas_sgemv(CblasRowMajor, CblasNoTrans, s->out, s->in, 1.0f, w, s->in, a, 1, 0.0f, c, 1);
                else
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, s->out, s->in, 1.0f, a, s->in, w, s->in,
                                0.0f, c, s->out);
            } else if (k == K_PACKED) {
                sp_linear(c, a, wp, n, s->in, s->out, 0);
            } else {
                sp_linear_pack(w, s->out, s->in, scratch);
                sp_linear(c, a, scratch, n, s->in, s->out, 0);
            }
        }
        double t = (cpu_now() - t0) / reps * 1e9;
        if (t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 3;
    if (rounds < 1) rounds = 1;
    openblas_set_num_threads(1);
    const shape shapes[] = {{"stories260K wq/wo (64, 64)", 64, 64},  {"stories260K wk/wv (32, 64)", 32, 64},
                            {"stories260K w1/w3 (172, 64)", 172, 64}, {"stories260K w2 (64, 172)", 64, 172},
                            {"stories260K wcls (512, 64)", 512, 64}, {"bitnet-3M wq..w3 (256, 256)", 256, 256},
                            {"bitnet-3M wk/wv (128, 256)", 128, 256}, {"bitnet-3M wcls (512, 256)", 512, 256}};
    printf("level %s, one thread, CPU time, best of %d rounds; ns per call\n", sp_cpu_level_name(sp_cpu_detect()),
           rounds);
    printf("%-30s %4s %10s %10s %12s %8s %8s\n", "shape (out, in)", "rows", "OpenBLAS", "packed", "pack+call",
           "BLAS/pk", "pk+c/pk");
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const shape *s = &shapes[si];
        for (int n = 32; n >= 1; n -= 31) {
            size_t na = (size_t)n * s->in, nw = (size_t)s->out * s->in, np = sp_linear_packed_floats(s->out, s->in);
            float *a = malloc(na * sizeof *a), *w = malloc(nw * sizeof *w), *wp = malloc(np * sizeof *wp);
            float *scratch = malloc(np * sizeof *scratch), *c = malloc((size_t)n * s->out * sizeof *c);
            float *ref = malloc((size_t)n * s->out * sizeof *ref);
            for (size_t i = 0; i < na; i++) a[i] = (float)sp_rng_normal(sp_rng_key(1, si, (uint64_t)i, 0, 0));
            for (size_t i = 0; i < nw; i++) w[i] = 0.2f * (float)sp_rng_normal(sp_rng_key(2, si, (uint64_t)i, 0, 0));
            sp_linear_pack(w, s->out, s->in, wp);
            sp_linear_ref(ref, a, w, n, s->in, s->out, 0);
            for (int L = SP_CPU_PORTABLE; L <= (int)sp_cpu_detect(); L++) {
                sp_linear_level((sp_cpu_level)L, c, a, wp, n, s->in, s->out, 0);
                if (memcmp(c, ref, (size_t)n * s->out * sizeof *c)) {
                    fprintf(stderr, "bench_model_linear: %s, %d rows: level %s differs from the reference\n", s->what,
                            n, sp_cpu_level_name((sp_cpu_level)L));
                    return 1;
                }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, s->out, s->in, 1.0f, a, s->in, w, s->in, 0.0f, c,
                        s->out);
            double md = 0;
            for (size_t i = 0; i < (size_t)n * s->out; i++) md = fmax(md, fabs((double)c[i] - ref[i]));
            if (md > 1e-3) {
                fprintf(stderr, "bench_model_linear: %s: OpenBLAS differs by %g\n", s->what, md);
                return 1;
            }
            int reps = (int)(2e7 / ((double)n * s->out * s->in)) + 10;
            double t[K_COUNT];
            for (int k = 0; k < K_COUNT; k++) t[k] = time_kernel(k, n, s, a, w, wp, scratch, c, reps, rounds);
            printf("%-30s %4d %10.0f %10.0f %12.0f %7.2fx %7.2fx\n", s->what, n, t[K_BLAS], t[K_PACKED], t[K_PACK_EACH],
                   t[K_BLAS] / t[K_PACKED], t[K_PACK_EACH] / t[K_PACKED]);
            free(a), free(w), free(wp), free(scratch), free(c), free(ref);
        }
    }
    return 0;
}
