/* checkpoint.c: loading llama2.c checkpoints (the "legacy" export of llama2.c's export.py).
 *
 * Layout: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len), then
 * fp32 weights in this order: token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3,
 * rms_final, freq_cis_real and freq_cis_imag (seq_len * head_dim / 2 each, unused: RoPE is
 * recomputed), then wcls when vocab_size < 0 (separate classifier). Every header field and the
 * exact file size are checked before a single weight is read; the weights are read with one
 * fread into one allocation and carved into named pointers. A file starting with the BitNet
 * magic "ak42" is handed to bitnet.c instead. */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

/* Number of floats after the header that the (validated) info implies. */
static uint64_t expected_floats(const sp_model_info *p) {
    uint64_t dim = (uint64_t)p->dim, hid = (uint64_t)p->hidden_dim, L = (uint64_t)p->n_layers;
    uint64_t hd = (uint64_t)p->head_dim, qd = (uint64_t)p->n_heads * hd, kvd = (uint64_t)p->n_kv_heads * hd;
    uint64_t V = (uint64_t)p->vocab_size, S = (uint64_t)p->seq_len;
    uint64_t n = V * dim;                 /* token_embedding */
    n += L * dim;                         /* rms_att */
    n += L * dim * qd;                    /* wq */
    n += 2 * L * dim * kvd;               /* wk, wv */
    n += L * qd * dim;                    /* wo */
    n += L * dim;                         /* rms_ffn */
    n += 3 * L * dim * hid;               /* w1, w2, w3 */
    n += dim;                             /* rms_final */
    n += 2 * S * (hd / 2);                /* freq_cis_real, freq_cis_imag */
    if (!p->shared_classifier) n += V * dim; /* wcls */
    return n;
}

/* Checks the header fields against each other; fills info. */
static sp_status check_header(const char *path, const int32_t h[7], sp_model_info *p, sp_error *err) {
    static const char *names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    static const long maxv[7] = {SP_MAX_DIM, SP_MAX_HIDDEN, SP_MAX_LAYERS, SP_MAX_DIM, SP_MAX_DIM, SP_MAX_VOCAB,
                                 SP_MAX_SEQ};
    for (int i = 0; i < 7; i++) {
        long v = h[i];
        if (i == 5 && v < 0 && v != INT32_MIN) v = -v; /* negative vocab: separate classifier */
        if (v <= 0 || v > maxv[i])
            return sp_error_set(err, SP_ERR_FORMAT,
                                "%s: not a llama2.c checkpoint: header %s = %d is outside [1, %ld]%s", path,
                                names[i], (int)h[i], maxv[i], i == 5 ? " (sign = classifier flag)" : "");
    }
    p->dim = h[0];
    p->hidden_dim = h[1];
    p->n_layers = h[2];
    p->n_heads = h[3];
    p->n_kv_heads = h[4];
    p->vocab_size = h[5] < 0 ? -h[5] : h[5];
    p->shared_classifier = h[5] > 0;
    p->seq_len = h[6];
    if (p->n_heads > p->dim || p->dim % p->n_heads)
        return sp_error_set(err, SP_ERR_FORMAT, "%s: bad header: n_heads = %d does not divide dim = %d", path,
                            p->n_heads, p->dim);
    if (p->n_kv_heads > p->n_heads || p->n_heads % p->n_kv_heads)
        return sp_error_set(err, SP_ERR_FORMAT, "%s: bad header: n_kv_heads = %d does not divide n_heads = %d",
                            path, p->n_kv_heads, p->n_heads);
    p->head_dim = p->dim / p->n_heads;
    if (p->head_dim % 2)
        return sp_error_set(err, SP_ERR_FORMAT, "%s: bad header: head dimension %d (dim / n_heads) is odd; RoPE "
                            "rotates pairs", path, p->head_dim);
    return SP_OK;
}

/* Carves the named weight pointers out of m->data in llama2.c order. */
static void carve(sp_model *m) {
    const sp_model_info *p = &m->info;
    size_t dim = (size_t)p->dim, hid = (size_t)p->hidden_dim, L = (size_t)p->n_layers, hd = (size_t)p->head_dim;
    size_t qd = (size_t)p->n_heads * hd, kvd = (size_t)p->n_kv_heads * hd, V = (size_t)p->vocab_size;
    const float *f = m->data;
    m->w.token_embedding = f; f += V * dim;
    m->w.rms_att = f;         f += L * dim;
    m->w.wq = f;              f += L * dim * qd;
    m->w.wk = f;              f += L * dim * kvd;
    m->w.wv = f;              f += L * dim * kvd;
    m->w.wo = f;              f += L * qd * dim;
    m->w.rms_ffn = f;         f += L * dim;
    m->w.w1 = f;              f += L * dim * hid;
    m->w.w2 = f;              f += L * hid * dim;
    m->w.w3 = f;              f += L * dim * hid;
    m->w.rms_final = f;       f += dim;
    f += 2 * (size_t)p->seq_len * (hd / 2); /* freq_cis_real, freq_cis_imag: unused */
    m->w.wcls = p->shared_classifier ? m->w.token_embedding : f;
    if (!p->shared_classifier) f += V * dim;
    SP_ASSERT((size_t)(f - m->data) == m->n_floats);
}

sp_status sp_model_load(const char *path, sp_model **out, sp_error *err) {
    *out = NULL;
    FILE *fp;
    long long size;
    sp_status s = sp_open_regular(path, "checkpoint ", &fp, &size, err);
    if (s != SP_OK) return s;
    uint32_t magic = 0;
    if (size >= 4 && fread(&magic, 4, 1, fp) == 1 && magic == SP_BITNET_MAGIC)
        return sp_bitnet_load(path, fp, size, out, err); /* a llama2.c dim can never be 0x616b3432 */
    rewind(fp);
    int32_t h[7];
    if (size < (long long)sizeof h || fread(h, sizeof h, 1, fp) != 1) {
        fclose(fp);
        return sp_error_set(err, SP_ERR_FORMAT, "%s: truncated checkpoint: %lld bytes, the header alone needs %zu",
                            path, size, sizeof h);
    }
    sp_model_info info;
    memset(&info, 0, sizeof info);
    s = check_header(path, h, &info, err);
    if (s != SP_OK) {
        fclose(fp);
        return s;
    }
    uint64_t nf = expected_floats(&info);
    uint64_t want = sizeof h + 4 * nf;
    if ((uint64_t)size != want) {
        fclose(fp);
        return sp_error_set(err, SP_ERR_FORMAT,
                            "%s: file size %lld bytes does not match the header (dim %d, hidden %d, layers %d, heads "
                            "%d, kv heads %d, vocab %d%s, seq %d imply %llu bytes)%s",
                            path, size, info.dim, info.hidden_dim, info.n_layers, info.n_heads,
                            info.n_kv_heads, info.vocab_size, info.shared_classifier ? "" : " + classifier",
                            info.seq_len, (unsigned long long)want,
                            (uint64_t)size < want ? ": truncated checkpoint" : "");
    }
    sp_model *m = sp_xcalloc(1, sizeof *m);
    m->info = info;
    m->n_floats = (size_t)nf;
    m->data = malloc(m->n_floats * sizeof(float));
    if (!m->data) {
        fclose(fp);
        free(m);
        return sp_error_set(err, SP_ERR_NOMEM, "%s: cannot allocate %llu bytes of weights", path,
                            (unsigned long long)(4 * nf));
    }
    size_t got = fread(m->data, sizeof(float), m->n_floats, fp);
    fclose(fp);
    if (got != m->n_floats) {
        sp_model_free(m);
        return sp_error_set(err, SP_ERR_IO, "%s: read %zu of %zu weights (file changed while reading?)", path, got,
                            (size_t)nf);
    }
    for (size_t i = 0; i < m->n_floats; i++)
        if (!isfinite(m->data[i])) {
            sp_model_free(m);
            return sp_error_set(err, SP_ERR_FORMAT, "%s: weight %zu (byte offset %zu) is not finite", path, i,
                                sizeof h + 4 * i);
        }
    carve(m);
    sp_model_pack_linear(m);
    *out = m;
    return SP_OK;
}

void sp_model_free(sp_model *m) {
    if (!m) return;
    free(m->data);
    free(m->packed);
    free(m);
}

const sp_model_info *sp_model_get_info(const sp_model *m) { return &m->info; }
