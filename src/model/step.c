/* step.c: decoding with a KV cache: one token per call through the same attention operator
 * interface as the whole-sequence forward pass (forward.c), for `sprint generate` and the
 * teacher-forced `sprint eval --decode` (issue 12).
 *
 * Per call, at position pos = the cache length: the token's embedding through every layer;
 * its key and value rows are appended to the layer's cache; each head's query attends to the
 * pos + 1 cached keys as an sp_attn_head with n_q = 1, q_offset = pos, causal. The arithmetic
 * per position is the forward pass's (RMSNorm with a double sum of squares, the same RoPE
 * table values, the same linear-layer entry point sp_model_matmul with its fixed FMA order), so
 * every linear layer gives the prefill path's bits for the position; what can still differ is
 * the attention operator's arithmetic for one query against a prefill block's.
 *
 * Architectures: llama2.c and BitNet b1.58 differ only in the inputs of the linear layers,
 * which come from the same per-architecture switch as in the forward pass
 * (sp_model_linear_input, arch.c), so this step serves both. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

void openblas_set_num_threads(int num_threads);

struct sp_model_kv {
    int cap, len, n_layers, kvdim;
    float *k, *v;                   /* (n_layers, cap, kvdim) */
    float *x, *xb, *q, *att, *h1, *h3; /* one position's activations */
};

sp_status sp_model_kv_init(const sp_model *m, int capacity, sp_model_kv **out, sp_error *err) {
    *out = NULL;
    const sp_model_info *p = &m->info;
    if (capacity < 1 || capacity > p->seq_len)
        return sp_error_set(err, SP_ERR_ARG, "kv cache: capacity %d outside [1, %d] (the model's context)", capacity,
                            p->seq_len);
    sp_model_kv *kv = sp_xcalloc(1, sizeof *kv);
    kv->cap = capacity;
    kv->n_layers = p->n_layers;
    kv->kvdim = p->n_kv_heads * p->head_dim;
    size_t Lc = (size_t)p->n_layers * (size_t)capacity;
    kv->k = sp_xmalloc(Lc, (size_t)kv->kvdim * sizeof(float));
    kv->v = sp_xmalloc(Lc, (size_t)kv->kvdim * sizeof(float));
    kv->x = sp_xmalloc((size_t)p->dim, sizeof(float));
    kv->xb = sp_xmalloc((size_t)(p->dim > p->n_heads * p->head_dim ? p->dim : p->n_heads * p->head_dim), sizeof(float));
    kv->q = sp_xmalloc((size_t)p->n_heads * p->head_dim, sizeof(float));
    kv->att = sp_xmalloc((size_t)p->n_heads * p->head_dim, sizeof(float));
    kv->h1 = sp_xmalloc((size_t)p->hidden_dim, sizeof(float));
    kv->h3 = sp_xmalloc((size_t)p->hidden_dim, sizeof(float));
    *out = kv;
    return SP_OK;
}

void sp_model_kv_free(sp_model_kv *kv) {
    if (!kv) return;
    float *b[] = {kv->k, kv->v, kv->x, kv->xb, kv->q, kv->att, kv->h1, kv->h3};
    for (size_t i = 0; i < sizeof b / sizeof *b; i++) free(b[i]);
    free(kv);
}

void sp_model_kv_reset(sp_model_kv *kv) { kv->len = 0; }
int sp_model_kv_len(const sp_model_kv *kv) { return kv->len; }

/* One position through every layer: forward.c's arithmetic for one row, the architecture's
 * differences (llama2.c, BitNet) through the same switch (sp_model_linear_input). */
static sp_status model_step(const sp_model *m, sp_model_kv *kv, int token, sp_attn_op *op, long long seq_id,
                            float *logits, sp_error *err) {
    const sp_model_info *p = &m->info;
    const sp_model_weights *w = &m->w;
    int dim = p->dim, hid = p->hidden_dim, hd = p->head_dim, H = p->n_heads;
    int qdim = H * hd, kvdim = kv->kvdim, group = H / p->n_kv_heads, pos = kv->len;
    float scale = (float)(1.0 / sqrt((double)hd));
    float *x = kv->x, *xb = kv->xb, *q = kv->q, *att = kv->att;
    memcpy(x, w->token_embedding + (size_t)token * dim, (size_t)dim * sizeof *x);
    /* RoPE values of position pos: the row of forward.c's table */
    float cs[2048];
    SP_ASSERT(hd <= 2048);
    sp_rope_table(cs, pos, 1, hd);
    for (int l = 0; l < p->n_layers; l++) {
        size_t L = (size_t)l;
        float *kc = kv->k + (L * kv->cap) * (size_t)kvdim, *vc = kv->v + (L * kv->cap) * (size_t)kvdim;
        float *kr = kc + (size_t)pos * kvdim, *vr = vc + (size_t)pos * kvdim;
        const float *in = sp_model_linear_input(m, SP_LIN_QKV, l, x, xb, 1);
        sp_model_matmul(m, SP_W_Q, l, q, in, 1, 0);
        sp_model_matmul(m, SP_W_K, l, kr, in, 1, 0);
        sp_model_matmul(m, SP_W_V, l, vr, in, 1, 0);
        sp_rope(q, kr, cs, 1, qdim, kvdim, hd);
        for (int h = 0; h < H; h++) {
            int kvh = h / group;
            sp_attn_head ah = {.layer = l, .head = h, .kv_head = kvh, .seq_id = seq_id, .n_q = 1, .n_k = pos + 1,
                               .d = hd, .q = q + (size_t)h * hd, .k = kc + (size_t)kvh * hd, .v = vc + (size_t)kvh * hd,
                               .out = att + (size_t)h * hd, .ldq = qdim, .ldk = kvdim, .ldv = kvdim, .ldo = qdim,
                               .causal = 1, .q_offset = pos, .scale = scale};
            sp_status s = op->run(op, &ah, err);
            if (s != SP_OK) return s;
        }
        in = sp_model_linear_input(m, SP_LIN_WO, l, att, xb, 1); /* xb holds max(dim, qdim) */
        sp_model_matmul(m, SP_W_O, l, x, in, 1, 1);
        in = sp_model_linear_input(m, SP_LIN_W13, l, x, xb, 1);
        sp_model_matmul(m, SP_W_1, l, kv->h1, in, 1, 0);
        sp_model_matmul(m, SP_W_3, l, kv->h3, in, 1, 0);
        for (int i = 0; i < hid; i++) {
            float a = kv->h1[i];
            kv->h1[i] = a * (1.0f / (1.0f + expf(-a))) * kv->h3[i];
        }
        in = sp_model_linear_input(m, SP_LIN_W2, l, kv->h1, kv->h1, 1);
        sp_model_matmul(m, SP_W_2, l, x, in, 1, 1);
    }
    sp_rmsnorm(xb, x, w->rms_final, 1, dim);
    sp_model_matmul(m, SP_W_CLS, 0, logits, xb, 1, 0);
    return SP_OK;
}

sp_status sp_model_step(const sp_model *m, sp_model_kv *kv, int token, sp_attn_op *op, long long seq_id,
                        float *logits, sp_error *err) {
    const sp_model_info *p = &m->info;
    if (kv->len >= kv->cap)
        return sp_error_set(err, SP_ERR_ARG, "decode step: the KV cache is full (%d tokens)", kv->cap);
    if (kv->n_layers != p->n_layers || kv->kvdim != p->n_kv_heads * p->head_dim)
        return sp_error_set(err, SP_ERR_ARG, "decode step: KV cache built for another model");
    if (op->n_layers != p->n_layers || op->n_heads != p->n_heads)
        return sp_error_set(err, SP_ERR_ARG, "decode step: attention operator built for %d layers x %d heads, model "
                            "has %d x %d", op->n_layers, op->n_heads, p->n_layers, p->n_heads);
    if (token < 0 || token >= p->vocab_size)
        return sp_error_set(err, SP_ERR_ARG, "decode step: token %d outside the vocabulary [0, %d)", token,
                            p->vocab_size);
    openblas_set_num_threads(1);
    sp_status s = model_step(m, kv, token, op, seq_id, logits, err);
    if (s == SP_OK) kv->len++;
    return s;
}

sp_status sp_eval_corpus_decode(const sp_model *m, const sp_corpus *c, sp_attn_op *op, const sp_eval_opts *o,
                                sp_eval_result *res, sp_error *err) {
    const sp_model_info *p = &m->info;
    sp_eval_opts def = {0};
    if (!o) o = &def;
    int W;
    sp_status s0 = sp_eval_begin(m, c, op, o, res, &W, err);
    if (s0 != SP_OK) return s0;
    sp_model_kv *kv = NULL;
    sp_status s = sp_model_kv_init(m, W, &kv, err);
    if (s != SP_OK) return s;
    int V = p->vocab_size;
    float *logits = sp_xmalloc((size_t)V, sizeof(float));
    double t0 = sp_now_seconds(), nll_sum = 0.0;
    long long seq_id = 0;
    long hits = 0, ntok = 0;
    for (int i = 0; i < c->n && s == SP_OK; i++) {
        const int *tok = c->tokens[i];
        int len = c->len[i];
        /* the windows of sp_eval_corpus: inputs [st, st + n), targets st+1 .. st+n */
        for (int st = 0; st + 1 < len && s == SP_OK; st += W) {
            int n = len - 1 - st < W ? len - 1 - st : W;
            sp_model_kv_reset(kv);
            for (int t = 0; t < n; t++) {
                s = sp_model_step(m, kv, tok[st + t], op, seq_id, logits, err);
                if (s != SP_OK) break;
                int arg = 0, target = tok[st + t + 1];
                float mx = logits[0];
                for (int v = 1; v < V; v++)
                    if (logits[v] > mx) mx = logits[v], arg = v;
                double se = 0.0;
                for (int v = 0; v < V; v++) se += exp((double)logits[v] - (double)mx);
                nll_sum += log(se) + (double)mx - (double)logits[target];
                hits += arg == target;
                ntok++;
            }
            seq_id++;
        }
        if (o->progress) o->progress(o->progress_user, "stories", i + 1, c->n);
    }
    free(logits);
    sp_model_kv_free(kv);
    if (s != SP_OK) return s;
    sp_eval_result_finish(res, c->n, ntok, nll_sum, hits, t0, op);
    return SP_OK;
}
