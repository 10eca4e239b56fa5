/* model_internal.h: the layout of a loaded llama2.c checkpoint, shared by checkpoint.c
 * (loading and validation) and forward.c (the forward pass). Not part of the public API. */
#ifndef SPRINT_MODEL_INTERNAL_H
#define SPRINT_MODEL_INTERNAL_H

#include <stdio.h>

#include "sprint/model.h"

/* Weights in llama2.c order, carved from one allocation (`data`). Shapes are row-major with
 * the output dimension first, as llama2.c's matmul expects: W (out, in). */
typedef struct sp_model_weights {
    const float *token_embedding; /* (vocab, dim) */
    const float *rms_att;         /* (layers, dim) */
    const float *wq;              /* (layers, n_heads * head_dim, dim) */
    const float *wk;              /* (layers, n_kv_heads * head_dim, dim) */
    const float *wv;              /* (layers, n_kv_heads * head_dim, dim) */
    const float *wo;              /* (layers, dim, n_heads * head_dim) */
    const float *rms_ffn;         /* (layers, dim) */
    const float *w1;              /* (layers, hidden, dim) */
    const float *w2;              /* (layers, dim, hidden) */
    const float *w3;              /* (layers, hidden, dim) */
    const float *rms_final;       /* (dim) */
    const float *wcls;            /* (vocab, dim): token_embedding when shared */
} sp_model_weights;

struct sp_model {
    sp_model_info info;
    sp_model_weights w;
    float *data;   /* every float after the header, owned */
    size_t n_floats;
};

/* Opens path for reading and checks that it is a regular file; *size is its length in bytes.
 * `what` prefixes the file in messages ("checkpoint " -> "cannot open checkpoint P: ..."). */
sp_status sp_open_regular(const char *path, const char *what, FILE **fp, long long *size, sp_error *err);

#endif
