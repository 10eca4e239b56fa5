/* arch.c: the steps of the forward pass that depend on the checkpoint's architecture.
 *
 * llama2.c: RMSNorm with a learned gain before attention and before the MLP; wo and w2 take
 * their inputs as they are. BitNet b1.58 (bitllama2.c's runbit.c and bitlinear.py): every
 * linear layer (wq, wk, wv, wo, w1, w3, w2) normalises its own input with SimpleRMSNorm,
 * F.normalize(x) * n^-1/2 = x / (max(||x||, 1e-12) sqrt(n)), no gain; bitllama2.c then
 * quantises that input to 8 bits per token (absmax), which sprint does not model: activations
 * stay in float (issue 8). Both end with an RMSNorm with gain before the classifier. */
#include <math.h>
#include <string.h>

#include "model/model_internal.h"

const char *sp_model_arch_name(sp_model_arch arch) {
    switch (arch) {
    case SP_MODEL_ARCH_LLAMA2: return "llama2";
    case SP_MODEL_ARCH_BITNET: return "bitnet";
    }
    return "unknown";
}

/* Four rows at a time, their four chains interleaved so that the additions' latencies overlap;
 * each row's sum is the plain loop's, term by term (model_internal.h). */
void sp_sumsq_rows(const float *x, int rows, int n, double *ss) {
    int t = 0;
    for (; t + 4 <= rows; t += 4) {
        const float *a = x + (size_t)t * n, *b = a + n, *c = b + n, *d = c + n;
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
        for (int i = 0; i < n; i++) {
            s0 += (double)a[i] * a[i];
            s1 += (double)b[i] * b[i];
            s2 += (double)c[i] * c[i];
            s3 += (double)d[i] * d[i];
        }
        ss[t] = s0, ss[t + 1] = s1, ss[t + 2] = s2, ss[t + 3] = s3;
    }
    for (; t < rows; t++) {
        const float *a = x + (size_t)t * n;
        double s0 = 0.0;
        for (int i = 0; i < n; i++) s0 += (double)a[i] * a[i];
        ss[t] = s0;
    }
}

enum { NORM_ROWS = 32 }; /* rows whose sums are taken together (a bound on the stack buffer) */

/* Both norms (model_internal.h, unit_norm): each row's sum of squares (sp_sumsq_rows, NORM_ROWS
 * rows at a time), then out = w * (r x) with the llama2.c factor r = 1 / sqrt(ss / n + 1e-5)
 * when w is given, else out = r x with BitNet's r = 1 / (max(sqrt(ss), 1e-12) sqrt(n)). */
static void norm_rows(float *out, const float *x, const float *w, int rows, int n) {
    double ssb[NORM_ROWS];
    for (int t0 = 0; t0 < rows; t0 += NORM_ROWS) {
        const int nr = rows - t0 < NORM_ROWS ? rows - t0 : NORM_ROWS;
        sp_sumsq_rows(x + (size_t)t0 * n, nr, n, ssb);
        for (int t = t0; t < t0 + nr; t++) {
            const float *xr = x + (size_t)t * n;
            float *o = out + (size_t)t * n;
            const double ss = ssb[t - t0];
            if (w) {
                float r = (float)(1.0 / sqrt(ss / n + 1e-5));
                for (int i = 0; i < n; i++) o[i] = w[i] * (r * xr[i]);
            } else {
                double nrm = sqrt(ss);
                float r = (float)(1.0 / ((nrm > 1e-12 ? nrm : 1e-12) * sqrt((double)n)));
                for (int i = 0; i < n; i++) o[i] = r * xr[i];
            }
        }
    }
}

void sp_rmsnorm(float *out, const float *x, const float *w, int rows, int dim) {
    SP_ASSERT(w != NULL);
    norm_rows(out, x, w, rows, dim);
}

/* out (rows, n) = x / (max(||x||, 1e-12) sqrt(n)) per row (BitNet's SimpleRMSNorm; the
 * 1e-12 floor is F.normalize's eps, so a zero row stays zero). Sum of squares in double. */
static void unit_norm(float *out, const float *x, int rows, int n) { norm_rows(out, x, NULL, rows, n); }

const float *sp_model_linear_input(const sp_model *m, sp_lin_input which, int l, const float *in, float *scratch,
                                   int rows) {
    const sp_model_info *p = &m->info;
    int n = which == SP_LIN_WO ? p->n_heads * p->head_dim : which == SP_LIN_W2 ? p->hidden_dim : p->dim;
    switch (p->arch) {
    case SP_MODEL_ARCH_BITNET:
        unit_norm(scratch, in, rows, n);
        return scratch;
    case SP_MODEL_ARCH_LLAMA2:
        if (which == SP_LIN_QKV) {
            sp_rmsnorm(scratch, in, m->w.rms_att + (size_t)l * (size_t)n, rows, n);
            return scratch;
        }
        if (which == SP_LIN_W13) {
            sp_rmsnorm(scratch, in, m->w.rms_ffn + (size_t)l * (size_t)n, rows, n);
            return scratch;
        }
        return in;
    }
    SP_ASSERT(0 && "unknown model architecture");
    return in;
}
