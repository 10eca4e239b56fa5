/* tiny_bitnet.h: a BitNet "ak42" v1 checkpoint with random ternary weights, written by the
 * tests themselves from the format notes (../shared/README.md), independently of the loader
 * (header-only; static functions). Uses tiny_spec from tiny_model.h. */
#ifndef SPRINT_TESTS_TINY_BITNET_H
#define SPRINT_TESTS_TINY_BITNET_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tiny_model.h"

/* (out, in) of matrix k (wq, wk, wv, wo, w1, w2, w3) of one layer. */
static inline void tinybit_shape(const tiny_spec *s, int k, size_t *out, size_t *in) {
    size_t D = (size_t)s->dim, F = (size_t)s->hidden, kvd = (size_t)s->kv_heads * (D / (size_t)s->heads);
    size_t o[7] = {D, kvd, kvd, D, F, D, F}, i[7] = {D, D, D, D, D, F, D};
    *out = o[k];
    *in = i[k];
}

/* Byte offset of the first matrix's first scale (after header, final norm, embedding). */
static inline size_t tinybit_mats_offset(const tiny_spec *s) {
    return 256 + 4 * (size_t)s->dim * (1 + (size_t)s->vocab);
}

static inline size_t tinybit_size(const tiny_spec *s) {
    size_t n = tinybit_mats_offset(s);
    for (int k = 0; k < 7; k++) {
        size_t o, i;
        tinybit_shape(s, k, &o, &i);
        n += (size_t)s->layers * (4 + o * i / 4);
    }
    return n;
}

/* The whole file (malloc'd, tinybit_size bytes): final gain near 1, embedding normal(0, 0.5),
 * per-(matrix, layer) scale in [0.5, 1.5), codes uniform over {0, +1, -1}, packed MSB first. */
static inline unsigned char *tinybit_bytes(const tiny_spec *s) {
    size_t n = tinybit_size(s);
    unsigned char *b = calloc(n, 1);
    uint32_t magic = 0x616b3432u;
    int32_t ver = 1, h[7] = {s->dim, s->hidden, s->layers, s->heads, s->kv_heads, s->vocab, s->seq_len};
    memcpy(b, &magic, 4);
    memcpy(b + 4, &ver, 4);
    memcpy(b + 8, h, 28);
    b[36] = 1;
    size_t off = 256;
    for (int i = 0; i < s->dim; i++, off += 4) {
        float g = 1.0f + 0.1f * (float)sp_rng_normal(sp_rng_key(s->seed, 1, (uint64_t)i, 0, 0));
        memcpy(b + off, &g, 4);
    }
    for (size_t i = 0; i < (size_t)s->vocab * (size_t)s->dim; i++, off += 4) {
        float e = 0.5f * (float)sp_rng_normal(sp_rng_key(s->seed, 2, i, 0, 0));
        memcpy(b + off, &e, 4);
    }
    static const unsigned char code[3] = {0, 1, 3}; /* 0, +1, -1 */
    for (int k = 0; k < 7; k++) {
        size_t o, in;
        tinybit_shape(s, k, &o, &in);
        for (int l = 0; l < s->layers; l++) {
            float sc = 0.5f + (float)sp_rng_uniform(sp_rng_key(s->seed, 3, (uint64_t)k, (uint64_t)l, 0));
            memcpy(b + off, &sc, 4);
            off += 4;
            for (size_t e = 0; e < o * in; e++) {
                unsigned c = code[sp_hash64(sp_rng_key(s->seed, 4, (uint64_t)k, (uint64_t)l, e)) % 3];
                b[off + e / 4] |= (unsigned char)(c << (6 - 2 * (e % 4)));
            }
            off += o * in / 4;
        }
    }
    return b;
}

/* Writes the first n bytes of b (n may exceed the buffer only when extra is given) to a temp file. */
static inline const char *tinybit_write(const unsigned char *b, size_t n) {
    return tiny_track(th_temp_file(b, n));
}

#endif
