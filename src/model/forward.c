/* forward.c: the transformer forward pass (llama2.c and BitNet architectures) over a whole
 * sequence. The steps where the architectures differ (the inputs of the linear layers) come
 * from sp_model_linear_input (arch.c); everything else is shared.
 *
 * Projections, the MLP and the classifier are matrix-matrix products on sprint's own kernel
 * (sp_model_matmul, linear.c: weights packed at load, one fixed fp32 FMA order defined in
 * src/cpu/linear.h, the same bits on every CPU level and in the decode step); RMSNorm, RoPE
 * and SwiGLU are plain loops; attention goes through an sp_attn_op for every (layer, head),
 * parallelised over heads on a blocking thread pool (pool.h says why not OpenMP). Heads are
 * independent and each head's arithmetic is sequential, so the logits are bit-identical
 * whatever the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"
#include "model/pool.h"

/* OpenBLAS's own threading is switched off (attention operators may call it at the portable
 * level): the forward pass parallelises over heads and row chunks itself. */
void openblas_set_num_threads(int num_threads);

/* RoPE as llama2.c applies it: pairs (i, i+1) of every head rotated by pos * 10000^(-j/hd),
 * j = i mod hd, computed in float as llama2.c does. The angles depend only on (pos, j), so
 * they are tabulated once per forward pass: cs (n, hd/2, 2) = (cos, sin). */
void sp_rope_table(float *cs, int pos0, int n, int hd) {
    for (int t = 0; t < n; t++)
        for (int j = 0; j < hd; j += 2) {
            float freq = 1.0f / powf(10000.0f, (float)j / (float)hd);
            float val = (float)(pos0 + t) * freq;
            cs[(size_t)t * hd + j] = cosf(val);
            cs[(size_t)t * hd + j + 1] = sinf(val);
        }
}

/* q (n, qdim), k (n, kvdim) rotated in place with the table of rope_table. */
void sp_rope(float *q, float *k, const float *cs, int n, int qdim, int kvdim, int hd) {
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

/* Rows are processed in fixed chunks of SP_ROW_CHUNK positions: every per-position step
 * (RMSNorm, projections, RoPE, residuals, MLP, classifier) is independent across positions, so
 * chunks run as parallel tasks. The chunking does not depend on the thread count, so neither
 * do the bits (each output of a linear layer is its own fixed FMA chain, linear.h). */
#define SP_ROW_CHUNK 32

/* Everything one forward pass shares between its tasks. */
typedef struct fwd_state {
    const sp_model *m;
    sp_attn_op *op;
    long long seq_id;
    int n, l;                   /* positions, current layer */
    int dim, hid, hd, qdim, kvdim, group;
    float scale;
    const int *tokens;
    const float *cs;            /* (n, hd) RoPE table */
    float *x, *xb, *q, *k, *v, *att, *h1, *h3; /* (n, ...) activations */
    float *logits;              /* (n, vocab) */
    sp_status *st;              /* (n_heads) */
    sp_error *err;              /* (n_heads) */
} fwd_state;

/* Rows [r0, r1) of chunk c. */
static void chunk_rows(const fwd_state *f, int c, int *r0, int *r1) {
    *r0 = c * SP_ROW_CHUNK;
    *r1 = *r0 + SP_ROW_CHUNK < f->n ? *r0 + SP_ROW_CHUNK : f->n;
}

/* Before attention in layer l (l = 0 also copies the embeddings): xb = the q/k/v input
 * (llama2.c: RMSNorm(x) * rms_att[l]; BitNet: x / (||x|| sqrt(dim))), q, k, v projections,
 * RoPE, for the rows of chunk c. */
static void pre_attention(void *ctx, int c) {
    const fwd_state *f = ctx;
    const sp_model_weights *w = &f->m->w;
    int r0, r1;
    chunk_rows(f, c, &r0, &r1);
    int nr = r1 - r0, dim = f->dim;
    if (f->l == 0)
        for (int t = r0; t < r1; t++)
            memcpy(f->x + (size_t)t * dim, w->token_embedding + (size_t)f->tokens[t] * dim, (size_t)dim * sizeof(float));
    float *xb = f->xb + (size_t)r0 * dim;
    float *q = f->q + (size_t)r0 * f->qdim, *k = f->k + (size_t)r0 * f->kvdim, *v = f->v + (size_t)r0 * f->kvdim;
    const float *in = sp_model_linear_input(f->m, SP_LIN_QKV, f->l, f->x + (size_t)r0 * dim, xb, nr);
    sp_model_matmul(f->m, SP_W_Q, f->l, q, in, nr, 0);
    sp_model_matmul(f->m, SP_W_K, f->l, k, in, nr, 0);
    sp_model_matmul(f->m, SP_W_V, f->l, v, in, nr, 0);
    sp_rope(q, k, f->cs + (size_t)r0 * f->hd, nr, f->qdim, f->kvdim, f->hd);
}

/* Attention of layer l, head h: the head's view into the Q/K/V buffers, through the op. */
static void run_head(void *ctx, int h) {
    const fwd_state *f = ctx;
    int kvh = h / f->group;
    sp_attn_head ah = {.layer = f->l, .head = h, .kv_head = kvh, .seq_id = f->seq_id, .n_q = f->n, .n_k = f->n,
                       .d = f->hd, .q = f->q + (size_t)h * f->hd, .k = f->k + (size_t)kvh * f->hd,
                       .v = f->v + (size_t)kvh * f->hd, .out = f->att + (size_t)h * f->hd, .ldq = f->qdim,
                       .ldk = f->kvdim, .ldv = f->kvdim, .ldo = f->qdim, .causal = 1, .q_offset = 0,
                       .key_valid = NULL, .query_valid = NULL, .scale = f->scale};
    f->st[h] = f->op->run(f->op, &ah, &f->err[h]);
}

/* After attention in layer l: x += in(att) wo^T; x += in(SwiGLU(in(x) w1^T, in(x) w3^T)) w2^T,
 * in() the architecture's linear input (sp_model_linear_input); after the last layer also the
 * final RMSNorm (with gain, both architectures) and the classifier, for the rows of chunk c. */
static void post_attention(void *ctx, int c) {
    const fwd_state *f = ctx;
    const sp_model_weights *w = &f->m->w;
    const sp_model_info *p = &f->m->info;
    int r0, r1;
    chunk_rows(f, c, &r0, &r1);
    int nr = r1 - r0, dim = f->dim, hid = f->hid;
    float *x = f->x + (size_t)r0 * dim, *xb = f->xb + (size_t)r0 * dim;
    float *h1 = f->h1 + (size_t)r0 * hid, *h3 = f->h3 + (size_t)r0 * hid;
    /* xb (n, dim) doubles as the wo input's scratch: qdim = n_heads * head_dim = dim */
    const float *in = sp_model_linear_input(f->m, SP_LIN_WO, f->l, f->att + (size_t)r0 * f->qdim, xb, nr);
    sp_model_matmul(f->m, SP_W_O, f->l, x, in, nr, 1); /* x += in wo^T */
    in = sp_model_linear_input(f->m, SP_LIN_W13, f->l, x, xb, nr);
    sp_model_matmul(f->m, SP_W_1, f->l, h1, in, nr, 0);
    sp_model_matmul(f->m, SP_W_3, f->l, h3, in, nr, 0);
    for (size_t i = 0; i < (size_t)nr * (size_t)hid; i++) { /* SwiGLU: silu(w1 x) * (w3 x) */
        float a = h1[i];
        h1[i] = a * (1.0f / (1.0f + expf(-a))) * h3[i];
    }
    in = sp_model_linear_input(f->m, SP_LIN_W2, f->l, h1, h1, nr);
    sp_model_matmul(f->m, SP_W_2, f->l, x, in, nr, 1); /* x += in(h) w2^T */
    if (f->l == p->n_layers - 1) {
        sp_rmsnorm(xb, x, w->rms_final, nr, dim);
        sp_model_matmul(f->m, SP_W_CLS, 0, f->logits + (size_t)r0 * p->vocab_size, xb, nr, 0);
    }
}

sp_status sp_model_forward(const sp_model *m, const int *tokens, int n, sp_attn_op *op, long long seq_id,
                           int threads, float *logits, sp_error *err) {
    const sp_model_info *p = &m->info;
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
    int qdim = H * hd, kvdim = p->n_kv_heads * hd;
    size_t N = (size_t)n;
    fwd_state f = {.m = m, .op = op, .seq_id = seq_id, .n = n, .dim = dim, .hid = hid, .hd = hd, .qdim = qdim,
                   .kvdim = kvdim, .group = H / p->n_kv_heads, .scale = (float)(1.0 / sqrt((double)hd)),
                   .tokens = tokens, .logits = logits};
    f.x = sp_xmalloc(N, (size_t)dim * sizeof(float));      /* (n, dim) residual stream */
    f.xb = sp_xmalloc(N, (size_t)dim * sizeof(float));     /* (n, dim) normalised */
    f.q = sp_xmalloc(N, (size_t)qdim * sizeof(float));     /* (n, qdim) */
    f.k = sp_xmalloc(N, (size_t)kvdim * sizeof(float));    /* (n, kvdim) */
    f.v = sp_xmalloc(N, (size_t)kvdim * sizeof(float));    /* (n, kvdim) */
    f.att = sp_xmalloc(N, (size_t)qdim * sizeof(float));   /* (n, qdim) attention output */
    f.h1 = sp_xmalloc(N, (size_t)hid * sizeof(float));     /* (n, hidden) */
    f.h3 = sp_xmalloc(N, (size_t)hid * sizeof(float));     /* (n, hidden) */
    float *cs = sp_xmalloc(N, (size_t)hd * sizeof(float)); /* (n, hd/2, 2) RoPE cos, sin */
    f.cs = cs;
    f.st = sp_xmalloc((size_t)H, sizeof *f.st);
    f.err = sp_xcalloc((size_t)H, sizeof *f.err);
    sp_status status = SP_OK;
    sp_rope_table(cs, 0, n, hd);
    int nthreads = threads > 0 ? threads : sp_pool_default_threads();
    if (n < 32) nthreads = 1; /* short sequences: dispatch costs more than it saves */
    int nchunks = (n + SP_ROW_CHUNK - 1) / SP_ROW_CHUNK;

    for (int l = 0; l < p->n_layers; l++) {
        f.l = l;
        sp_pool_run(nthreads, nchunks, pre_attention, &f);
        sp_pool_run(nthreads, H, run_head, &f);
        for (int h = 0; h < H; h++)
            if (f.st[h] != SP_OK) { /* the lowest failing head, whatever the thread count */
                status = f.st[h];
                if (err) *err = f.err[h];
                break;
            }
        if (status != SP_OK) break;
        sp_pool_run(nthreads, nchunks, post_attention, &f);
    }
    float *bufs[] = {f.x, f.xb, f.q, f.k, f.v, f.att, f.h1, f.h3, cs};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(f.st);
    free(f.err);
    return status;
}

