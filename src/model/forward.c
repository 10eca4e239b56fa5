/* forward.c: the transformer forward pass (llama2.c architecture) over a whole sequence.
 *
 * Projections and the MLP are matrix-matrix products (cblas_sgemm, single-threaded OpenBLAS
 * so that results are reproducible and the cores go to the attention heads); RMSNorm, RoPE
 * and SwiGLU are plain loops; attention goes through an sp_attn_op for every (layer, head),
 * parallelised over heads on a blocking thread pool (pool.h says why not OpenMP). Heads are
 * independent and each head's arithmetic is sequential, so the logits are bit-identical
 * whatever the thread count. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"
#include "model/pool.h"

/* OpenBLAS's own threading is switched off: the forward pass parallelises over heads, and a
 * single-threaded sgemm gives the same bits on every run. */
void openblas_set_num_threads(int num_threads);

/* out (n, dim) = x (n, dim) normalised by its RMS, times w (dim). Sum of squares in double. */
static void rmsnorm(float *out, const float *x, const float *w, int n, int dim) {
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * dim;
        float *o = out + (size_t)t * dim;
        double ss = 0.0;
        for (int i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        float r = (float)(1.0 / sqrt(ss / dim + 1e-5));
        for (int i = 0; i < dim; i++) o[i] = w[i] * (r * xr[i]);
    }
}

/* RoPE as llama2.c applies it: pairs (i, i+1) of every head rotated by pos * 10000^(-j/hd),
 * j = i mod hd, computed in float as llama2.c does. The angles depend only on (pos, j), so
 * they are tabulated once per forward pass: cs (n, hd/2, 2) = (cos, sin). */
static void rope_table(float *cs, int n, int hd) {
    for (int t = 0; t < n; t++)
        for (int j = 0; j < hd; j += 2) {
            float freq = 1.0f / powf(10000.0f, (float)j / (float)hd);
            float val = (float)t * freq;
            cs[(size_t)t * hd + j] = cosf(val);
            cs[(size_t)t * hd + j + 1] = sinf(val);
        }
}

/* q (n, qdim), k (n, kvdim) rotated in place with the table of rope_table. */
static void rope(float *q, float *k, const float *cs, int n, int qdim, int kvdim, int hd) {
    for (int t = 0; t < n; t++) {
        float *qr = q + (size_t)t * qdim, *kr = k + (size_t)t * kvdim;
        const float *ct = cs + (size_t)t * hd;
        for (int i = 0; i < qdim; i += 2) {
            int j = i % hd;
            float fcr = ct[j], fci = ct[j + 1];
            float a = qr[i], b = qr[i + 1];
            qr[i] = a * fcr - b * fci;
            qr[i + 1] = a * fci + b * fcr;
            if (i < kvdim) {
                a = kr[i];
                b = kr[i + 1];
                kr[i] = a * fcr - b * fci;
                kr[i + 1] = a * fci + b * fcr;
            }
        }
    }
}

/* c (n, out) = beta * c + a (n, in) @ w^T, w (out, in) row-major. */
static void matmul(float *c, const float *a, const float *w, int n, int in, int out, float beta) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, a, in, w, in, beta, c, out);
}

/* One layer's attention, one task per head: the head's view into the Q/K/V buffers. */
typedef struct head_job {
    sp_attn_op *op;
    int l;
    long long seq_id;
    int n, hd, group, qdim, kvdim;
    const float *q, *k, *v;
    float *att;
    float scale;
    sp_status *st;
    sp_error *err;
} head_job;

static void run_head(void *ctx, int h) {
    const head_job *j = ctx;
    int kvh = h / j->group;
    sp_attn_head ah = {.layer = j->l, .head = h, .kv_head = kvh, .seq_id = j->seq_id, .n_q = j->n, .n_k = j->n,
                       .d = j->hd, .q = j->q + (size_t)h * j->hd, .k = j->k + (size_t)kvh * j->hd,
                       .v = j->v + (size_t)kvh * j->hd, .out = j->att + (size_t)h * j->hd, .ldq = j->qdim,
                       .ldk = j->kvdim, .ldv = j->kvdim, .ldo = j->qdim, .causal = 1, .q_offset = 0,
                       .key_valid = NULL, .query_valid = NULL, .scale = j->scale};
    j->st[h] = j->op->run(j->op, &ah, &j->err[h]);
}

sp_status sp_model_forward(const sp_model *m, const int *tokens, int n, sp_attn_op *op, long long seq_id,
                           int threads, float *logits, sp_error *err) {
    const sp_model_info *p = &m->info;
    const sp_model_weights *w = &m->w;
    if (n <= 0 || n > p->seq_len)
        return sp_error_set(err, SP_ERR_ARG, "forward: sequence of %d tokens outside [1, %d]", n, p->seq_len);
    if (op->n_layers != p->n_layers || op->n_heads != p->n_heads)
        return sp_error_set(err, SP_ERR_ARG, "forward: attention operator built for %d layers x %d heads, model has "
                            "%d x %d", op->n_layers, op->n_heads, p->n_layers, p->n_heads);
    for (int t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= p->vocab_size)
            return sp_error_set(err, SP_ERR_ARG, "forward: token %d at position %d outside the vocabulary [0, %d)",
                                tokens[t], t, p->vocab_size);
    openblas_set_num_threads(1);
    int dim = p->dim, hid = p->hidden_dim, hd = p->head_dim, H = p->n_heads;
    int qdim = H * hd, kvdim = p->n_kv_heads * hd, group = H / p->n_kv_heads;
    size_t N = (size_t)n;
    float *x = sp_xmalloc(N, (size_t)dim * sizeof(float));      /* (n, dim) residual stream */
    float *xb = sp_xmalloc(N, (size_t)dim * sizeof(float));     /* (n, dim) normalised */
    float *q = sp_xmalloc(N, (size_t)qdim * sizeof(float));     /* (n, qdim) */
    float *k = sp_xmalloc(N, (size_t)kvdim * sizeof(float));    /* (n, kvdim) */
    float *v = sp_xmalloc(N, (size_t)kvdim * sizeof(float));    /* (n, kvdim) */
    float *att = sp_xmalloc(N, (size_t)qdim * sizeof(float));   /* (n, qdim) attention output */
    float *h1 = sp_xmalloc(N, (size_t)hid * sizeof(float));     /* (n, hidden) */
    float *h3 = sp_xmalloc(N, (size_t)hid * sizeof(float));     /* (n, hidden) */
    float *cs = sp_xmalloc(N, (size_t)hd * sizeof(float));      /* (n, hd/2, 2) RoPE cos, sin */
    sp_status *hst = sp_xmalloc((size_t)H, sizeof *hst);
    sp_error *herr = sp_xcalloc((size_t)H, sizeof *herr);
    sp_status status = SP_OK;

    for (int t = 0; t < n; t++)
        memcpy(x + (size_t)t * dim, w->token_embedding + (size_t)tokens[t] * dim, (size_t)dim * sizeof(float));
    rope_table(cs, n, hd);
    float scale = (float)(1.0 / sqrt((double)hd));
    int nthreads = threads > 0 ? threads : sp_pool_default_threads();

    for (int l = 0; l < p->n_layers && status == SP_OK; l++) {
        size_t L = (size_t)l;
        rmsnorm(xb, x, w->rms_att + L * dim, n, dim);
        matmul(q, xb, w->wq + L * dim * qdim, n, dim, qdim, 0.0f);
        matmul(k, xb, w->wk + L * dim * kvdim, n, dim, kvdim, 0.0f);
        matmul(v, xb, w->wv + L * dim * kvdim, n, dim, kvdim, 0.0f);
        rope(q, k, cs, n, qdim, kvdim, hd);
        head_job job = {.op = op, .l = l, .seq_id = seq_id, .n = n, .hd = hd, .group = group, .qdim = qdim,
                        .kvdim = kvdim, .q = q, .k = k, .v = v, .att = att, .scale = scale, .st = hst, .err = herr};
        /* short sequences: one thread (dispatch costs more than it saves) */
        sp_pool_run(n >= 32 ? nthreads : 1, H, run_head, &job);
        for (int h = 0; h < H; h++)
            if (hst[h] != SP_OK) { /* the lowest failing head, whatever the thread count */
                status = hst[h];
                if (err) *err = herr[h];
                break;
            }
        if (status != SP_OK) break;
        matmul(x, att, w->wo + L * qdim * dim, n, qdim, dim, 1.0f); /* x += att @ wo^T */
        rmsnorm(xb, x, w->rms_ffn + L * dim, n, dim);
        matmul(h1, xb, w->w1 + L * dim * hid, n, dim, hid, 0.0f);
        matmul(h3, xb, w->w3 + L * dim * hid, n, dim, hid, 0.0f);
        for (size_t i = 0; i < N * (size_t)hid; i++) { /* SwiGLU: silu(w1 x) * (w3 x) */
            float a = h1[i];
            h1[i] = a * (1.0f / (1.0f + expf(-a))) * h3[i];
        }
        matmul(x, h1, w->w2 + L * hid * dim, n, hid, dim, 1.0f); /* x += h @ w2^T */
    }
    if (status == SP_OK) {
        rmsnorm(xb, x, w->rms_final, n, dim);
        matmul(logits, xb, w->wcls, n, dim, p->vocab_size, 0.0f);
    }
    free(x);
    free(xb);
    free(q);
    free(k);
    free(v);
    free(att);
    free(h1);
    free(h3);
    free(cs);
    free(hst);
    free(herr);
    return status;
}
