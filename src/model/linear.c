/* linear.c: the model's linear layers on sprint's own kernel (src/cpu/linear.h): the weights
 * are packed once per model at load (the packed copy costs about as much memory as the linear
 * weights themselves, see docs/model.md), and the prefill forward pass (forward.c) and the
 * decode step (step.c) both go through sp_model_matmul, so a linear layer's output for a
 * position has the same bits on either path and on every CPU level. */
#include <stdlib.h>

#include "cpu/linear.h"
#include "model/model_internal.h"

/* (out, in) of one layer's matrix of kind k. */
static void shape(const sp_model_info *p, sp_lin_w k, int *out, int *in) {
    int qdim = p->n_heads * p->head_dim, kvdim = p->n_kv_heads * p->head_dim;
    switch (k) {
    case SP_W_Q: *out = qdim, *in = p->dim; break;
    case SP_W_K:
    case SP_W_V: *out = kvdim, *in = p->dim; break;
    case SP_W_O: *out = p->dim, *in = qdim; break;
    case SP_W_1:
    case SP_W_3: *out = p->hidden_dim, *in = p->dim; break;
    case SP_W_2: *out = p->dim, *in = p->hidden_dim; break;
    default: *out = p->vocab_size, *in = p->dim; break; /* SP_W_CLS */
    }
}

void sp_model_pack_linear(sp_model *m) {
    const sp_model_info *p = &m->info;
    const float *src[SP_W_COUNT] = {m->w.wq, m->w.wk, m->w.wv, m->w.wo, m->w.w1, m->w.w2, m->w.w3, m->w.wcls};
    size_t off[SP_W_COUNT], total = 0;
    for (int k = 0; k < SP_W_COUNT; k++) {
        int out, in;
        shape(p, (sp_lin_w)k, &out, &in);
        off[k] = total;
        total += sp_linear_packed_floats(out, in) * (size_t)(k == SP_W_CLS ? 1 : p->n_layers);
    }
    m->packed = sp_xmalloc(total, sizeof(float));
    m->n_packed = total;
    for (int k = 0; k < SP_W_COUNT; k++) {
        int out, in, nl = k == SP_W_CLS ? 1 : p->n_layers;
        shape(p, (sp_lin_w)k, &out, &in);
        size_t ps = sp_linear_packed_floats(out, in);
        for (int l = 0; l < nl; l++)
            sp_linear_pack(src[k] + (size_t)l * out * in, out, in, m->packed + off[k] + (size_t)l * ps);
        m->pw[k] = m->packed + off[k];
    }
}

void sp_model_matmul(const sp_model *m, sp_lin_w which, int l, float *c, const float *a, int n, int beta) {
    int out, in;
    shape(&m->info, which, &out, &in);
    const float *wp = m->pw[which] + (which == SP_W_CLS ? 0 : (size_t)l * sp_linear_packed_floats(out, in));
    sp_linear(c, a, wp, n, in, out, beta);
}
