/* encoder.c: the forward pass of the Universal Sentence Encoder lite ("KonaTransformer",
 * TF.js graph model in ../shared/models/use-lite), with attention through an sp_attn_op.
 *
 * Followed op by op from the graph in model.json (docs/model.md, "The encoder"):
 *   ids clipped to the first max_len (ClipToMaxLength: position < 128)
 *   e   = Embeddings[id]                                            (T, 256)
 *   x0  = e + (e + timing(pos))   the graph scatters the embedding AND the embedding plus the
 *         timing signal and adds both (Layer_0/add); timing = [sin(pos * inv), cos(pos * inv)]
 *         with the 128 inverse timescales stored in the graph
 *   layer 0: h = LN(x0); q|k|v = h Wqkv + b (256 -> 3 x 256); 4 heads of 64, softmax(0.125 q.k
 *         + padding bias) v; a = o Wo + b (256 -> 512); x1 = a + (x0 Wd + bd) (the residual is
 *         projected 256 -> 512, "AdjustResidualInput"); x2 = x1 + FFN(LN(x1))
 *   layer 1: h = LN(x2); 4 heads of 128 (scale 1/sqrt(128)); x3 = x2 + a; x4 = x3 + FFN(LN(x3))
 *   FFN(h) = relu(h W1 + b1) W2 + b2 (512 -> 1536 -> 512); LN with eps 1e-6 from the graph
 *   pooled = mean of x4 over the valid positions; y = tanh(pooled Wt + bt); out = y / ||y||
 *         (l2_normalize with max(sum y^2, 1e-12))
 * Padding: the graph computes every step on the padded batch but masks keys with a -1e9 bias
 * and gathers valid rows for the residual and FFN, so valid rows never see padding. Here the
 * padded rows are zero and the operator gets key_valid/query_valid masks (attention.h).
 * Linear layers run on sprint's own kernel in its fixed FMA order (src/cpu/linear.h, as
 * forward.c; weights packed once at load); layer norms, the timing signal and pooling are plain
 * loops accumulating in double. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/linear.h"
#include "sprint/encoder.h"

/* single-threaded OpenBLAS (attention operators may call it at the portable level) */
void openblas_set_num_threads(int num_threads);

#define PA "module_apply_default/Encoder_en/KonaTransformer/Encode/"
#define PM "module/Encoder_en/KonaTransformer/Encode/"

typedef struct enc_layer {
    const float *ln1_g, *ln1_b, *wqkv, *bqkv, *wo, *bo, *ln2_g, *ln2_b, *w1, *b1, *w2, *b2;
    const float *pqkv, *po, *p1, *p2; /* wqkv, wo, w1, w2 packed for sp_linear */
    float scale;      /* q scale (MultiheadAttention/mul/y) */
    int d, hd;        /* attention width, head dim */
} enc_layer;

struct sp_encoder {
    sp_encoder_info info;
    sp_tfjs_model *tf;
    const float *emb, *inv_timescale, *wd, *bd, *wt, *bt;
    enc_layer L[2];
    float ln_eps, l2_eps;
    const float *pwd, *pwt;  /* wd, wt packed for sp_linear */
    float *packed[10];       /* owned: every packed matrix */
    int n_packed;
};

const sp_encoder_info *sp_encoder_get_info(const sp_encoder *e) { return &e->info; }

void sp_encoder_free(sp_encoder *e) {
    if (!e) return;
    sp_tfjs_free(e->tf);
    for (int i = 0; i < e->n_packed; i++) free(e->packed[i]);
    free(e);
}

/* The tensor `name` with dtype and shape (dims[0..nd)); -1 in dims = any. */
static sp_status need(const sp_encoder *e, const char *dir, const char *name, sp_tfjs_dtype dt, int nd,
                      const int64_t *dims, const sp_tfjs_tensor **out, sp_error *err) {
    const sp_tfjs_tensor *t = sp_tfjs_find(e->tf, name);
    if (!t) return sp_error_set(err, SP_ERR_FORMAT, "%s: not the USE-lite encoder: no weight '%s'", dir, name);
    int ok = t->dtype == dt && t->ndim == nd;
    for (int i = 0; ok && i < nd; i++) ok = dims[i] < 0 || t->shape[i] == dims[i];
    if (!ok) {
        char got[160] = "", want[160] = "";
        for (int i = 0; i < t->ndim; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "x" : "", (long long)t->shape[i]);
        for (int i = 0; i < nd; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? "x" : "", (long long)dims[i]);
        return sp_error_set(err, SP_ERR_FORMAT, "%s: weight '%s' is %s [%s], expected %s [%s]", dir, name,
                            t->dtype == SP_TFJS_FLOAT32 ? "float32" : "int32", got,
                            dt == SP_TFJS_FLOAT32 ? "float32" : "int32", want);
    }
    *out = t;
    return SP_OK;
}

#define NEED(name, dt, nd, ...)                                                                          \
    do {                                                                                                 \
        const int64_t dims_[] = {__VA_ARGS__};                                                           \
        s = need(e, dir, name, dt, nd, dims_, &t, err);                                                  \
        if (s != SP_OK) goto fail;                                                                       \
    } while (0)

/* A packed copy of the TF kernel w (in, out), owned by e. */
static const float *pack(sp_encoder *e, const float *w, int in, int out) {
    SP_ASSERT(e->n_packed < (int)(sizeof e->packed / sizeof *e->packed));
    float *p = sp_xmalloc(sp_linear_packed_floats(out, in), sizeof *p);
    sp_linear_pack_t(w, out, in, p);
    e->packed[e->n_packed++] = p;
    return p;
}

sp_status sp_encoder_load(const char *dir, sp_encoder **out, sp_error *err) {
    *out = NULL;
    sp_encoder *e = sp_xcalloc(1, sizeof *e);
    sp_status s = sp_tfjs_load(dir, &e->tf, err);
    if (s != SP_OK) {
        free(e);
        return s;
    }
    const sp_tfjs_tensor *t;
    char nm[512];
    NEED("module/Embeddings_en", SP_TFJS_FLOAT32, 2, -1, -1);
    e->emb = t->data;
    e->info.vocab = (int)t->shape[0];
    int din = (int)t->shape[1];
    if (din <= 0 || din % 2 || din > 65536 || e->info.vocab <= 0 || e->info.vocab > (1 << 22)) {
        s = sp_error_set(err, SP_ERR_FORMAT, "%s: implausible embedding table %d x %d", dir, e->info.vocab, din);
        goto fail;
    }
    e->info.d_in = din;
    NEED(PA "TransformerStack/Layer_0/AddTimingSignal/TimingSignal/ExpandDims_1", SP_TFJS_FLOAT32, 2, 1, din / 2);
    e->inv_timescale = t->data;
    NEED("module_apply_default/Encoder_en/KonaTransformer/ClipToMaxLength/Less/y", SP_TFJS_INT32, 0, 0);
    e->info.max_len = *(const int32_t *)t->data;
    if (e->info.max_len < 1 || e->info.max_len > 65536) {
        s = sp_error_set(err, SP_ERR_FORMAT, "%s: maximum length %d outside [1, 65536]", dir, e->info.max_len);
        goto fail;
    }
    NEED(PA "TransformerStack/Layer_1/TransformerLayer/FFN/layer_prepostprocess/layer_norm/Cast/x", SP_TFJS_FLOAT32, 0,
         0);
    e->ln_eps = *(const float *)t->data;
    NEED("module_apply_default/Encoder_en/hidden_layers/l2_normalize/Maximum/y", SP_TFJS_FLOAT32, 0, 0);
    e->l2_eps = *(const float *)t->data;
    NEED(PA "Layer_0/TransformerLayer/dense/kernel/ConcatPartitions/concat", SP_TFJS_FLOAT32, 2, din, -1);
    int dout = (int)t->shape[1];
    e->wd = t->data;
    e->info.d_out = dout;
    NEED(PA "Layer_0/TransformerLayer/dense/bias/ConcatPartitions/concat", SP_TFJS_FLOAT32, 1, dout);
    e->bd = t->data;
    e->info.n_layers = 2;
    for (int l = 0; l < 2; l++) {
        enc_layer *L = &e->L[l];
        int dx = l == 0 ? din : dout; /* width of the layer's input stream */
#define LN(field, sub, what)                                                                                      \
    snprintf(nm, sizeof nm, PA "Layer_%d/TransformerLayer/%slayer_prepostprocess/layer_norm/layer_norm_%s/ConcatPartitions/concat", \
             l, sub, what)
        LN(ln1_g, "", "scale");
        NEED(nm, SP_TFJS_FLOAT32, 1, dx);
        L->ln1_g = t->data;
        LN(ln1_b, "", "bias");
        NEED(nm, SP_TFJS_FLOAT32, 1, dx);
        L->ln1_b = t->data;
        LN(ln2_g, "FFN/", "scale");
        NEED(nm, SP_TFJS_FLOAT32, 1, dout);
        L->ln2_g = t->data;
        LN(ln2_b, "FFN/", "bias");
        NEED(nm, SP_TFJS_FLOAT32, 1, dout);
        L->ln2_b = t->data;
#undef LN
        snprintf(nm, sizeof nm, PM "Layer_%d/TransformerLayer/MultiheadAttention/qkv_transform_single/kernel/part_0", l);
        NEED(nm, SP_TFJS_FLOAT32, 4, 1, 1, dx, -1);
        L->wqkv = t->data;
        if (t->shape[3] % 3 || t->shape[3] <= 0) {
            s = sp_error_set(err, SP_ERR_FORMAT, "%s: fused qkv width %lld is not 3 x d", dir, (long long)t->shape[3]);
            goto fail;
        }
        L->d = (int)(t->shape[3] / 3);
        snprintf(nm, sizeof nm, PA "Layer_%d/TransformerLayer/MultiheadAttention/qkv_transform_single/bias/ConcatPartitions/concat", l);
        NEED(nm, SP_TFJS_FLOAT32, 1, 3 * L->d);
        L->bqkv = t->data;
        snprintf(nm, sizeof nm, PM "Layer_%d/TransformerLayer/MultiheadAttention/output_transform_single/kernel/part_0", l);
        NEED(nm, SP_TFJS_FLOAT32, 4, 1, 1, L->d, dout);
        L->wo = t->data;
        snprintf(nm, sizeof nm, PA "Layer_%d/TransformerLayer/MultiheadAttention/output_transform_single/bias/ConcatPartitions/concat", l);
        NEED(nm, SP_TFJS_FLOAT32, 1, dout);
        L->bo = t->data;
        snprintf(nm, sizeof nm, PA "TransformerStack/Layer_%d/TransformerLayer/FFN/conv1/Tensordot/Reshape_1", l);
        NEED(nm, SP_TFJS_FLOAT32, 2, dout, -1);
        L->w1 = t->data;
        int dff = (int)t->shape[1];
        if (l == 0) e->info.d_ff = dff;
        else if (dff != e->info.d_ff) {
            s = sp_error_set(err, SP_ERR_FORMAT, "%s: the two layers' FFN widths differ (%d, %d)", dir, e->info.d_ff, dff);
            goto fail;
        }
        snprintf(nm, sizeof nm, PA "Layer_%d/TransformerLayer/FFN/conv1/bias/ConcatPartitions/concat", l);
        NEED(nm, SP_TFJS_FLOAT32, 1, dff);
        L->b1 = t->data;
        snprintf(nm, sizeof nm, PA "TransformerStack/Layer_%d/TransformerLayer/FFN/conv2/Tensordot/Reshape_1", l);
        NEED(nm, SP_TFJS_FLOAT32, 2, dff, dout);
        L->w2 = t->data;
        snprintf(nm, sizeof nm, PA "Layer_%d/TransformerLayer/FFN/conv2/bias/ConcatPartitions/concat", l);
        NEED(nm, SP_TFJS_FLOAT32, 1, dout);
        L->b2 = t->data;
        snprintf(nm, sizeof nm, PA "TransformerStack/Layer_%d/TransformerLayer/MultiheadAttention/mul/y", l);
        NEED(nm, SP_TFJS_FLOAT32, 0, 0);
        L->scale = *(const float *)t->data;
        snprintf(nm, sizeof nm, PA "TransformerStack/Layer_%d/TransformerLayer/MultiheadAttention/split_heads/split_last_dimension/Reshape/shape/3", l);
        NEED(nm, SP_TFJS_INT32, 0, 0);
        L->hd = *(const int32_t *)t->data;
        if (L->hd <= 0 || L->d % L->hd) {
            s = sp_error_set(err, SP_ERR_FORMAT, "%s: layer %d head dim %d does not divide its width %d", dir, l, L->hd,
                             L->d);
            goto fail;
        }
        e->info.head_dim[l] = L->hd;
        e->info.d_model[l] = L->d;
    }
    if (e->L[0].d / e->L[0].hd != e->L[1].d / e->L[1].hd) {
        s = sp_error_set(err, SP_ERR_FORMAT, "%s: the layers have different head counts", dir);
        goto fail;
    }
    e->info.n_heads = e->L[0].d / e->L[0].hd;
    NEED("module/Encoder_en/hidden_layers/tanh_layer_0/weights", SP_TFJS_FLOAT32, 2, dout, dout);
    e->wt = t->data;
    NEED("module/Encoder_en/hidden_layers/tanh_layer_0/bias", SP_TFJS_FLOAT32, 1, dout);
    e->bt = t->data;
    int din_ = e->info.d_in, dout_ = e->info.d_out, dff_ = e->info.d_ff;
    e->pwd = pack(e, e->wd, din_, dout_);
    e->pwt = pack(e, e->wt, dout_, dout_);
    for (int l = 0; l < 2; l++) {
        enc_layer *L = &e->L[l];
        L->pqkv = pack(e, L->wqkv, l == 0 ? din_ : dout_, 3 * L->d);
        L->po = pack(e, L->wo, L->d, dout_);
        L->p1 = pack(e, L->w1, dout_, dff_);
        L->p2 = pack(e, L->w2, dff_, dout_);
    }
    *out = e;
    return SP_OK;
fail:
    sp_encoder_free(e);
    return s;
}

/* c (n, out) = [c +] b + x (n, in) @ w (in, out), wp = w packed (TF's kernel layout w); the
 * bias is added first, then the product in sp_linear's order. */
static void linear(float *c, const float *x, const float *wp, const float *b, int n, int in, int out, int accumulate) {
    if (!accumulate)
        for (int i = 0; i < n; i++) memcpy(c + (size_t)i * out, b, (size_t)out * sizeof *c);
    else
        for (int i = 0; i < n; i++)
            for (int j = 0; j < out; j++) c[(size_t)i * out + j] += b[j];
    sp_linear(c, x, wp, n, in, out, 1);
}

/* out (n, d) = LN(x) with gain g and bias b, mean and variance over d in double. */
static void layer_norm(float *out, const float *x, const float *g, const float *b, int n, int d, float eps) {
    for (int i = 0; i < n; i++) {
        const float *xr = x + (size_t)i * d;
        double mu = 0, var = 0;
        for (int j = 0; j < d; j++) mu += xr[j];
        mu /= d;
        for (int j = 0; j < d; j++) var += (xr[j] - mu) * (xr[j] - mu);
        var /= d;
        double r = 1.0 / sqrt(var + eps);
        for (int j = 0; j < d; j++) out[(size_t)i * d + j] = (float)(g[j] * r * (xr[j] - mu) + b[j]);
    }
}

/* Workspace of one sentence of at most T rows. */
typedef struct enc_ws {
    float *x0, *x, *h, *qkv, *q, *k, *v, *o, *oref, *a, *f;
    unsigned char *valid;
} enc_ws;

/* Attention of layer l for one sentence: n valid rows padded to T for the operator. */
static sp_status attention(const sp_encoder *e, int l, const enc_ws *w, int n, int T, sp_attn_op *op, sp_attn_op *ref,
                           long long seq_id, sp_encoder_attn_err *aerr, sp_error *err) {
    const enc_layer *L = &e->L[l];
    int d = L->d, H = e->info.n_heads, hd = L->hd;
    /* q, k, v (T, d): rows >= n stay zero and are masked */
    for (int i = 0; i < n; i++) {
        memcpy(w->q + (size_t)i * d, w->qkv + (size_t)i * 3 * d, (size_t)d * sizeof(float));
        memcpy(w->k + (size_t)i * d, w->qkv + (size_t)i * 3 * d + d, (size_t)d * sizeof(float));
        memcpy(w->v + (size_t)i * d, w->qkv + (size_t)i * 3 * d + 2 * d, (size_t)d * sizeof(float));
    }
    size_t pad = (size_t)(T - n) * d * sizeof(float); /* masked, but never stale */
    memset(w->q + (size_t)n * d, 0, pad), memset(w->k + (size_t)n * d, 0, pad), memset(w->v + (size_t)n * d, 0, pad);
    for (int hh = 0; hh < H; hh++) {
        sp_attn_head h = {.layer = l, .head = hh, .kv_head = hh, .seq_id = seq_id, .n_q = T, .n_k = T, .d = hd,
                          .q = w->q + hh * hd, .k = w->k + hh * hd, .v = w->v + hh * hd, .out = w->o + hh * hd,
                          .ldq = d, .ldk = d, .ldv = d, .ldo = d, .causal = 0, .q_offset = 0,
                          .key_valid = w->valid, .query_valid = w->valid, .scale = L->scale};
        sp_status s = op->run(op, &h, err);
        if (s != SP_OK) return s;
        if (ref) {
            h.out = w->oref + hh * hd;
            s = ref->run(ref, &h, err);
            if (s != SP_OK) return s;
            if (aerr)
                for (int i = 0; i < n; i++)
                    for (int c = 0; c < hd; c++) {
                        double a = w->o[(size_t)i * d + hh * hd + c], b = w->oref[(size_t)i * d + hh * hd + c];
                        aerr->num[l] += (a - b) * (a - b);
                        aerr->den[l] += b * b;
                    }
        }
    }
    return SP_OK;
}

/* One sentence: ids[0..n), n <= max_len, padded to T for the operator; writes out (d_out). */
static sp_status embed_one(const sp_encoder *e, const int *ids, int n, int T, sp_attn_op *op, sp_attn_op *ref,
                           long long seq_id, const enc_ws *w, float *out, sp_encoder_attn_err *aerr, sp_error *err) {
    int din = e->info.d_in, dout = e->info.d_out, dff = e->info.d_ff, half = din / 2;
    for (int i = 0; i < T; i++) w->valid[i] = i < n;
    /* x0 = e + (e + timing) */
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= e->info.vocab)
            return sp_error_set(err, SP_ERR_ARG, "token id %d outside [0, %d)", ids[i], e->info.vocab);
        const float *er = e->emb + (size_t)ids[i] * din;
        float *xr = w->x0 + (size_t)i * din;
        for (int j = 0; j < half; j++) {
            float ang = (float)i * e->inv_timescale[j]; /* float, as the graph's Mul */
            xr[j] = er[j] + (er[j] + sinf(ang));
            xr[half + j] = er[half + j] + (er[half + j] + cosf(ang));
        }
    }
    sp_status s;
    for (int l = 0; l < 2; l++) {
        const enc_layer *L = &e->L[l];
        const float *xin = l == 0 ? w->x0 : w->x;
        int dx = l == 0 ? din : dout;
        layer_norm(w->h, xin, L->ln1_g, L->ln1_b, n, dx, e->ln_eps);
        linear(w->qkv, w->h, L->pqkv, L->bqkv, n, dx, 3 * L->d, 0);
        s = attention(e, l, w, n, T, op, ref, seq_id, aerr, err);
        if (s != SP_OK) return s;
        /* x = attention projection + residual (projected 256 -> 512 in layer 0) */
        if (l == 0) {
            linear(w->x, w->x0, e->pwd, e->bd, n, din, dout, 0);
            linear(w->x, w->o, L->po, L->bo, n, L->d, dout, 1);
        } else {
            linear(w->x, w->o, L->po, L->bo, n, L->d, dout, 1);
        }
        layer_norm(w->h, w->x, L->ln2_g, L->ln2_b, n, dout, e->ln_eps);
        linear(w->f, w->h, L->p1, L->b1, n, dout, dff, 0);
        for (size_t i = 0; i < (size_t)n * dff; i++) w->f[i] = w->f[i] > 0 ? w->f[i] : 0.0f;
        linear(w->x, w->f, L->p2, L->b2, n, dff, dout, 1);
    }
    /* mean over valid rows, tanh layer, L2 normalisation */
    float *pooled = w->a;
    for (int j = 0; j < dout; j++) {
        double acc = 0;
        for (int i = 0; i < n; i++) acc += w->x[(size_t)i * dout + j];
        pooled[j] = (float)(acc / n);
    }
    linear(out, pooled, e->pwt, e->bt, 1, dout, dout, 0);
    double ss = 0;
    for (int j = 0; j < dout; j++) {
        out[j] = tanhf(out[j]);
        ss += (double)out[j] * out[j];
    }
    double r = 1.0 / sqrt(ss > e->l2_eps ? ss : e->l2_eps);
    for (int j = 0; j < dout; j++) out[j] = (float)(out[j] * r);
    return SP_OK;
}

sp_status sp_encoder_embed(const sp_encoder *e, const int *const *ids, const int *lens, int B, sp_attn_op *op,
                           sp_attn_op *ref, long long seq_base, float *out, sp_encoder_attn_err *aerr, sp_error *err) {
    if (B <= 0) return sp_error_set(err, SP_ERR_ARG, "encoder: a batch needs at least one sentence");
    if (op->n_layers < 2 || op->n_heads < e->info.n_heads || (ref && (ref->n_layers < 2 || ref->n_heads < e->info.n_heads)))
        return sp_error_set(err, SP_ERR_ARG, "encoder: the attention operator has %d x %d stats slots, the encoder needs 2 x %d",
                            op->n_layers, op->n_heads, e->info.n_heads);
    openblas_set_num_threads(1);
    int T = 0;
    for (int b = 0; b < B; b++) {
        if (lens[b] <= 0)
            return sp_error_set(err, SP_ERR_ARG, "encoder: sentence %d of the batch has no token", b);
        int n = lens[b] < e->info.max_len ? lens[b] : e->info.max_len;
        if (n > T) T = n;
    }
    int din = e->info.d_in, dout = e->info.d_out, dmax = e->L[0].d > e->L[1].d ? e->L[0].d : e->L[1].d;
    int wmax = din > dout ? din : dout;
    enc_ws w;
    size_t Tn = (size_t)T;
    w.x0 = sp_xcalloc(Tn * din, sizeof(float));
    w.x = sp_xcalloc(Tn * dout, sizeof(float));
    w.h = sp_xcalloc(Tn * wmax, sizeof(float));
    w.qkv = sp_xcalloc(Tn * 3 * dmax, sizeof(float));
    w.q = sp_xcalloc(Tn * dmax, sizeof(float));
    w.k = sp_xcalloc(Tn * dmax, sizeof(float));
    w.v = sp_xcalloc(Tn * dmax, sizeof(float));
    w.o = sp_xcalloc(Tn * dmax, sizeof(float));
    w.oref = sp_xcalloc(Tn * dmax, sizeof(float));
    w.a = sp_xcalloc((size_t)dout, sizeof(float));
    w.f = sp_xcalloc(Tn * e->info.d_ff, sizeof(float));
    w.valid = sp_xcalloc(Tn, 1);
    sp_status s = SP_OK;
    for (int b = 0; b < B && s == SP_OK; b++) {
        int n = lens[b] < e->info.max_len ? lens[b] : e->info.max_len;
        s = embed_one(e, ids[b], n, T, op, ref, seq_base + b, &w, out + (size_t)b * dout, aerr, err);
    }
    free(w.x0), free(w.x), free(w.h), free(w.qkv), free(w.q), free(w.k), free(w.v), free(w.o), free(w.oref);
    free(w.a), free(w.f), free(w.valid);
    return s;
}
