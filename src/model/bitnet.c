/* bitnet.c: loading BitNet b1.58 checkpoints in bitllama2.c's "ak42" version 1 format
 * (repository HKUSTGZ-MICS-LYU/bitllama2.c, export of outmini_bit_3M/bit_model.bin; read as
 * its runbit.c reads it). The forward pass of these models is in arch.c / forward.c.
 *
 * Layout (all little-endian):
 *   256-byte header: uint32 magic 0x616b3432 ("ak42"), int32 version = 1, 7 int32 as llama2.c
 *     (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len), uint8
 *     shared-classifier flag (= 1: the classifier is the embedding), zero padding;
 *   fp32 final RMSNorm gain (dim); fp32 token embedding (vocab, dim);
 *   wq, wk, wv, wo, w1, w2, w3, each for every layer in turn: fp32 scale s, then the (out, in)
 *     matrix as 2-bit codes, 4 per byte, MSB first (code j of a byte is (b >> (6 - 2j)) & 3):
 *     00 = 0, 01 = +1, 11 = -1 (10 is not a ternary code); W = s x code.
 * Every header field, the padding and the exact file size are checked before the weights are
 * read; then every float is checked finite, every scale positive and every code ternary. The
 * matrices are stored dequantised in fp32 (s x {-1, 0, 1} is exact), carved from one
 * allocation like a llama2.c model, so the forward pass runs the same sgemm calls. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

#define N_MATS 7
static const char *const MAT_NAMES[N_MATS] = {"wq", "wk", "wv", "wo", "w1", "w2", "w3"};

/* (out, in) of matrix k of one layer. */
static void mat_shape(const sp_model_info *p, int k, uint64_t *out, uint64_t *in) {
    uint64_t dim = (uint64_t)p->dim, hid = (uint64_t)p->hidden_dim, hd = (uint64_t)p->head_dim;
    uint64_t qd = (uint64_t)p->n_heads * hd, kvd = (uint64_t)p->n_kv_heads * hd;
    static const int sel[N_MATS] = {0, 1, 1, 2, 3, 4, 3}; /* wq, wk, wv, wo, w1, w2, w3 */
    switch (sel[k]) {
    case 0: *out = qd, *in = dim; break;
    case 1: *out = kvd, *in = dim; break;
    case 2: *out = dim, *in = qd; break;
    case 3: *out = hid, *in = dim; break;
    default: *out = dim, *in = hid; break;
    }
}

/* Checks the 256-byte header; fills info. */
static sp_status check_header(const char *path, const unsigned char *hb, sp_model_info *p, sp_error *err) {
    int32_t version, h[7];
    memcpy(&version, hb + 4, 4);
    memcpy(h, hb + 8, sizeof h);
    if (version != 1)
        return sp_error_set(err, SP_ERR_FORMAT,
                            "%s: BitNet (ak42) checkpoint version %d is not supported: sprint reads version 1 "
                            "(ternary 2-bit weights with fp32 scales)",
                            path, (int)version);
    static const char *names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    static const long maxv[7] = {SP_MAX_DIM, SP_MAX_HIDDEN, SP_MAX_LAYERS, SP_MAX_DIM, SP_MAX_DIM, SP_MAX_VOCAB,
                                 SP_MAX_SEQ};
    for (int i = 0; i < 7; i++)
        if (h[i] <= 0 || h[i] > maxv[i])
            return sp_error_set(err, SP_ERR_FORMAT, "%s: bad BitNet header: %s = %d is outside [1, %ld]", path,
                                names[i], (int)h[i], maxv[i]);
    unsigned flag = hb[36];
    if (flag != 1)
        return sp_error_set(err, SP_ERR_FORMAT,
                            "%s: bad BitNet header: shared-classifier flag = %u, expected 1 (the ak42 v1 layout has "
                            "no separate classifier)",
                            path, flag);
    for (int i = 37; i < SP_BITNET_HEADER_BYTES; i++)
        if (hb[i])
            return sp_error_set(err, SP_ERR_FORMAT,
                                "%s: bad BitNet header: padding byte %d is 0x%02x, expected 0 (not an ak42 v1 file?)",
                                path, i, hb[i]);
    p->dim = h[0];
    p->hidden_dim = h[1];
    p->n_layers = h[2];
    p->n_heads = h[3];
    p->n_kv_heads = h[4];
    p->vocab_size = h[5];
    p->seq_len = h[6];
    p->shared_classifier = 1;
    p->arch = SP_MODEL_ARCH_BITNET;
    if (p->n_heads > p->dim || p->dim % p->n_heads)
        return sp_error_set(err, SP_ERR_FORMAT, "%s: bad BitNet header: n_heads = %d does not divide dim = %d", path,
                            p->n_heads, p->dim);
    if (p->n_kv_heads > p->n_heads || p->n_heads % p->n_kv_heads)
        return sp_error_set(err, SP_ERR_FORMAT,
                            "%s: bad BitNet header: n_kv_heads = %d does not divide n_heads = %d", path,
                            p->n_kv_heads, p->n_heads);
    p->head_dim = p->dim / p->n_heads;
    if (p->head_dim % 2)
        return sp_error_set(err, SP_ERR_FORMAT,
                            "%s: bad BitNet header: head dimension %d (dim / n_heads) is odd; RoPE rotates pairs",
                            path, p->head_dim);
    for (int k = 0; k < N_MATS; k++) {
        uint64_t o, in;
        mat_shape(p, k, &o, &in);
        if ((o * in) % 4)
            return sp_error_set(err, SP_ERR_FORMAT,
                                "%s: bad BitNet header: %s has %llu x %llu weights, not a multiple of 4 (the 2-bit "
                                "codes of a layer fill whole bytes)",
                                path, MAT_NAMES[k], (unsigned long long)o, (unsigned long long)in);
    }
    return SP_OK;
}

/* Bytes after the header that the (validated) info implies. */
static uint64_t expected_bytes(const sp_model_info *p) {
    uint64_t n = 4 * (uint64_t)p->dim * (1 + (uint64_t)p->vocab_size); /* final norm, embedding */
    for (int k = 0; k < N_MATS; k++) {
        uint64_t o, in;
        mat_shape(p, k, &o, &in);
        n += (uint64_t)p->n_layers * (4 + o * in / 4);
    }
    return n;
}

/* Decodes the weight bytes b (validated size) into m->data and carves the pointers. */
static sp_status decode(const char *path, const unsigned char *b, sp_model *m, sp_error *err) {
    const sp_model_info *p = &m->info;
    size_t dim = (size_t)p->dim, V = (size_t)p->vocab_size, L = (size_t)p->n_layers;
    size_t off = 0; /* byte offset into b; file offset = off + header */
    float *f = m->data;
    float *rms_final = f + m->n_floats - dim;
    memcpy(rms_final, b, dim * 4);
    off += dim * 4;
    m->w.token_embedding = f;
    memcpy(f, b + off, V * dim * 4);
    off += V * dim * 4;
    for (size_t i = 0; i < dim; i++)
        if (!isfinite(rms_final[i]))
            return sp_error_set(err, SP_ERR_FORMAT, "%s: final norm weight %zu (byte offset %zu) is not finite", path,
                                i, SP_BITNET_HEADER_BYTES + 4 * i);
    for (size_t i = 0; i < V * dim; i++)
        if (!isfinite(f[i]))
            return sp_error_set(err, SP_ERR_FORMAT,
                                "%s: token embedding weight (%zu, %zu) (byte offset %zu) is not finite", path, i / dim,
                                i % dim, SP_BITNET_HEADER_BYTES + 4 * (dim + i));
    f += V * dim;
    const float **dst[N_MATS] = {&m->w.wq, &m->w.wk, &m->w.wv, &m->w.wo, &m->w.w1, &m->w.w2, &m->w.w3};
    static const float code_value[4] = {0.0f, 1.0f, 0.0f, -1.0f}; /* 10 is rejected below */
    for (int k = 0; k < N_MATS; k++) {
        uint64_t o, in;
        mat_shape(p, k, &o, &in);
        size_t ne = (size_t)(o * in);
        *dst[k] = f;
        for (size_t l = 0; l < L; l++) {
            float s;
            memcpy(&s, b + off, 4);
            if (!isfinite(s) || !(s > 0))
                return sp_error_set(err, SP_ERR_FORMAT,
                                    "%s: %s of layer %zu: scale %g (byte offset %zu) is not a finite positive number",
                                    path, MAT_NAMES[k], l, (double)s, SP_BITNET_HEADER_BYTES + off);
            off += 4;
            const unsigned char *codes = b + off;
            for (size_t e = 0; e < ne; e++) {
                unsigned c = (codes[e >> 2] >> (6 - 2 * (e & 3))) & 3u; /* MSB first */
                if (c == 2)
                    return sp_error_set(err, SP_ERR_FORMAT,
                                        "%s: %s of layer %zu: weight (%zu, %zu) has the 2-bit code 10 (byte offset "
                                        "%zu), not a ternary code (00 = 0, 01 = +1, 11 = -1)",
                                        path, MAT_NAMES[k], l, e / (size_t)in, e % (size_t)in,
                                        SP_BITNET_HEADER_BYTES + off + (e >> 2));
                f[e] = s * code_value[c];
            }
            off += ne / 4;
            f += ne;
        }
    }
    m->w.rms_att = m->w.rms_ffn = NULL;
    m->w.rms_final = rms_final;
    m->w.wcls = m->w.token_embedding;
    SP_ASSERT((size_t)(f - m->data) + dim == m->n_floats);
    return SP_OK;
}

sp_status sp_bitnet_load(const char *path, FILE *fp, long long size, sp_model **out, sp_error *err) {
    *out = NULL;
    unsigned char hb[SP_BITNET_HEADER_BYTES];
    if (size < SP_BITNET_HEADER_BYTES || fseek(fp, 0, SEEK_SET) != 0 || fread(hb, sizeof hb, 1, fp) != 1) {
        fclose(fp);
        return sp_error_set(err, SP_ERR_FORMAT,
                            "%s: truncated BitNet checkpoint: %lld bytes, the ak42 header alone needs %d", path, size,
                            SP_BITNET_HEADER_BYTES);
    }
    sp_model_info info;
    memset(&info, 0, sizeof info);
    sp_status s = check_header(path, hb, &info, err);
    if (s != SP_OK) {
        fclose(fp);
        return s;
    }
    uint64_t nb = expected_bytes(&info), want = SP_BITNET_HEADER_BYTES + nb;
    if ((uint64_t)size != want) {
        fclose(fp);
        return sp_error_set(err, SP_ERR_FORMAT,
                            "%s: file size %lld bytes does not match the BitNet header (dim %d, hidden %d, layers %d, "
                            "heads %d, kv heads %d, vocab %d imply %llu bytes)%s",
                            path, size, info.dim, info.hidden_dim, info.n_layers, info.n_heads, info.n_kv_heads,
                            info.vocab_size, (unsigned long long)want,
                            (uint64_t)size < want ? ": truncated checkpoint" : "");
    }
    unsigned char *b = malloc((size_t)nb);
    sp_model *m = sp_xcalloc(1, sizeof *m);
    m->info = info;
    uint64_t nf = (uint64_t)info.dim * (1 + (uint64_t)info.vocab_size);
    for (int k = 0; k < N_MATS; k++) {
        uint64_t o, in;
        mat_shape(&info, k, &o, &in);
        nf += (uint64_t)info.n_layers * o * in;
    }
    m->n_floats = (size_t)nf;
    m->data = malloc(m->n_floats * sizeof(float));
    if (!b || !m->data) {
        fclose(fp);
        free(b);
        sp_model_free(m);
        return sp_error_set(err, SP_ERR_NOMEM, "%s: cannot allocate %llu bytes of weights", path,
                            (unsigned long long)(4 * nf + nb));
    }
    size_t got = fread(b, 1, (size_t)nb, fp);
    fclose(fp);
    if (got != (size_t)nb) {
        free(b);
        sp_model_free(m);
        return sp_error_set(err, SP_ERR_IO, "%s: read %zu of %llu weight bytes (file changed while reading?)", path,
                            got, (unsigned long long)nb);
    }
    s = decode(path, b, m, err);
    free(b);
    if (s != SP_OK) {
        sp_model_free(m);
        return s;
    }
    sp_model_pack_linear(m);
    *out = m;
    return SP_OK;
}
