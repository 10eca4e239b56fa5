/* bench_linear.c: the model forward's linear layers (src/model/forward.c matmul: C = A W^T on
 * chunks of 32 rows, single-threaded OpenBLAS) against sprint's own GEMM (src/cpu/gemm.h
 * sp_gemm_nt, which packs W on every call), on the shapes of the two shared decoder models.
 * It measures the lever issue 9 part 9h leaves open: the forward's sgemm is ~20% of a default
 * `sprint run`, and routing it through sp_gemm_nt changes the real models' logits in their last
 * bits (another summation order), so it needs the lead's conditions (docs/RESULTS.md part 9h).
 *
 * Shapes (rows x in -> out) per forward chunk and layer: q, k, v, wo, w1, w3, w2, plus the
 * classifier once per chunk after the last layer; weighted by layer count for the per-model
 * total. CPU time of the calling thread, best of `--rounds` interleaved rounds.
 *
 * Before timing, every shape checks sp_gemm_nt against a double-accumulated reference: each
 * entry within 2 * K * 2^-24 * sum |a||w| (the fp32 summation bound gemm.h states), and the same
 * for OpenBLAS.
 *
 * usage: bench_linear [--rounds 3]   (prints a markdown table) */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/gemm.h"

void openblas_set_num_threads(int num_threads);

static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct shape {
    const char *name;
    int in, out, per_layer; /* per_layer 0: once per chunk (classifier) */
} shape;

typedef struct model {
    const char *name;
    int layers;
    shape s[8];
    int ns;
} model;

/* fails (exit 1) unless every entry of c is within the fp32 bound of the double product */
static void check(const char *who, const char *mname, const shape *sh, int n, const float *a, const float *w,
                  const float *c) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < sh->out; j++) {
            double ref = 0, mag = 0;
            for (int k = 0; k < sh->in; k++) {
                ref += (double)a[(size_t)i * sh->in + k] * w[(size_t)j * sh->in + k];
                mag += fabs((double)a[(size_t)i * sh->in + k] * w[(size_t)j * sh->in + k]);
            }
            double err = fabs(c[(size_t)i * sh->out + j] - ref), bound = 2.0 * sh->in * ldexp(1.0, -24) * mag;
            if (err > bound) {
                fprintf(stderr, "bench_linear: %s %s %s: entry (%d, %d) off by %g (bound %g)\n", who, mname, sh->name, i, j,
                        err, bound);
                exit(1);
            }
        }
}

int main(int argc, char **argv) {
    int rounds = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_linear [--rounds 3]\n");
            return 2;
        }
    }
    if (rounds < 1) rounds = 1;
    openblas_set_num_threads(1);
    /* dimensions from the model headers: bitnet-3M dim 256, hidden 256, 8 layers, 4 KV heads of
     * 32, vocab 512; stories260K dim 64, hidden 172, 5 layers, 4 KV heads of 8, vocab 512 */
    const model models[2] = {
        {"bitnet-3M", 8, {{"q", 256, 256, 1}, {"k", 256, 128, 1}, {"v", 256, 128, 1}, {"wo", 256, 256, 1},
                          {"w1", 256, 256, 1}, {"w3", 256, 256, 1}, {"w2", 256, 256, 1}, {"cls", 256, 512, 0}}, 8},
        {"stories260K", 5, {{"q", 64, 64, 1}, {"k", 64, 32, 1}, {"v", 64, 32, 1}, {"wo", 64, 64, 1}, {"w1", 64, 172, 1},
                            {"w3", 64, 172, 1}, {"w2", 172, 64, 1}, {"cls", 64, 512, 0}}, 8},
    };
    const int n = 32; /* SP_ROW_CHUNK of forward.c */
    printf("| model | shape (32 rows) | OpenBLAS us/call | sp_gemm_nt us/call | ratio |\n|---|---|---|---|---|\n");
    srand(1);
    for (int mi = 0; mi < 2; mi++) {
        const model *M = &models[mi];
        double tot_b = 0, tot_s = 0;
        for (int si = 0; si < M->ns; si++) {
            const shape *sh = &M->s[si];
            float *a = malloc(sizeof *a * (size_t)n * sh->in), *w = malloc(sizeof *w * (size_t)sh->out * sh->in);
            float *cb = malloc(sizeof *cb * (size_t)n * sh->out), *cs = malloc(sizeof *cs * (size_t)n * sh->out);
            if (!a || !w || !cb || !cs) return 1;
            for (size_t i = 0; i < (size_t)n * sh->in; i++) a[i] = (float)rand() / (float)RAND_MAX - 0.5f;
            for (size_t i = 0; i < (size_t)sh->out * sh->in; i++) w[i] = (float)rand() / (float)RAND_MAX - 0.5f;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, sh->out, sh->in, 1.0f, a, sh->in, w, sh->in, 0.0f, cb,
                        sh->out);
            sp_gemm_nt(n, sh->out, sh->in, a, sh->in, w, sh->in, cs, sh->out);
            check("openblas", M->name, sh, n, a, w, cb);
            check("sp_gemm_nt", M->name, sh, n, a, w, cs);
            int reps = (int)(4e8 / (2.0 * n * sh->in * sh->out)) + 10;
            double bb = 1e30, bs = 1e30;
            for (int r = 0; r < rounds; r++) {
                double t0 = thread_cpu_s();
                for (int k = 0; k < reps; k++)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, sh->out, sh->in, 1.0f, a, sh->in, w, sh->in,
                                0.0f, cb, sh->out);
                double t1 = thread_cpu_s();
                for (int k = 0; k < reps; k++) sp_gemm_nt(n, sh->out, sh->in, a, sh->in, w, sh->in, cs, sh->out);
                double t2 = thread_cpu_s();
                if (t1 - t0 < bb) bb = t1 - t0;
                if (t2 - t1 < bs) bs = t2 - t1;
            }
            double ub = 1e6 * bb / reps, us = 1e6 * bs / reps;
            int count = sh->per_layer ? M->layers : 1;
            tot_b += count * ub;
            tot_s += count * us;
            printf("| %s | %s %d -> %d | %.2f | %.2f | %.2fx |\n", M->name, sh->name, sh->in, sh->out, ub, us, ub / us);
            free(a), free(w), free(cb), free(cs);
        }
        printf("| %s | one chunk through all layers + classifier | %.1f | %.1f | **%.2fx** |\n", M->name, tot_b, tot_s,
               tot_b / tot_s);
    }
    return 0;
}
