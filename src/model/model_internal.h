/* model_internal.h: the layout of a loaded checkpoint (llama2.c or BitNet), shared by
 * checkpoint.c and bitnet.c (loading and validation), arch.c (the per-architecture steps) and
 * forward.c (the forward pass). Not part of the public API. */
#ifndef SPRINT_MODEL_INTERNAL_H
#define SPRINT_MODEL_INTERNAL_H

#include <stdio.h>

#include "sprint/model.h"

/* Plausibility limits of a checkpoint header (project choice: far above any model this tool
 * runs, small enough that every size below fits in 64 bits without overflow). */
#define SP_MAX_DIM 65536
#define SP_MAX_HIDDEN (1 << 20)
#define SP_MAX_LAYERS 4096
#define SP_MAX_VOCAB (1 << 22)
#define SP_MAX_SEQ (1 << 20)

/* Weights in llama2.c order, carved from one allocation (`data`). Shapes are row-major with
 * the output dimension first, as llama2.c's matmul expects: W (out, in). A BitNet model's
 * ternary matrices are stored dequantised (s x code, exact in fp32), and it has no per-layer
 * gains: rms_att and rms_ffn are NULL. */
typedef struct sp_model_weights {
    const float *token_embedding; /* (vocab, dim) */
    const float *rms_att;         /* (layers, dim); NULL for BitNet */
    const float *wq;              /* (layers, n_heads * head_dim, dim) */
    const float *wk;              /* (layers, n_kv_heads * head_dim, dim) */
    const float *wv;              /* (layers, n_kv_heads * head_dim, dim) */
    const float *wo;              /* (layers, dim, n_heads * head_dim) */
    const float *rms_ffn;         /* (layers, dim); NULL for BitNet */
    const float *w1;              /* (layers, hidden, dim) */
    const float *w2;              /* (layers, dim, hidden) */
    const float *w3;              /* (layers, hidden, dim) */
    const float *rms_final;       /* (dim) */
    const float *wcls;            /* (vocab, dim): token_embedding when shared */
} sp_model_weights;

/* The linear layers' weights packed for sp_linear (src/cpu/linear.h), once at load: layer l's
 * matrix of a kind starts at l * (its packed size). */
typedef enum sp_lin_w { SP_W_Q, SP_W_K, SP_W_V, SP_W_O, SP_W_1, SP_W_2, SP_W_3, SP_W_CLS, SP_W_COUNT } sp_lin_w;

struct sp_model {
    sp_model_info info;
    sp_model_weights w;
    float *data;   /* every float after the header, owned */
    size_t n_floats;
    float *packed;                   /* owned: every packed matrix (sp_model_pack_linear) */
    size_t n_packed;                 /* floats in packed */
    const float *pw[SP_W_COUNT];     /* first layer's packed matrix of each kind */
};

/* ---- the linear layers (linear.c) -------------------------------------------------------
 * Packs every linear weight of m (after its pointers are carved) into m->packed. */
void sp_model_pack_linear(sp_model *m);
/* c (n, out) = [c +] a (n, in) . W^T for weight `which` of layer l (l ignored for SP_W_CLS), in
 * sp_linear's fixed order: the one entry point of the prefill and decode paths, so both
 * compute every linear layer with the same bits. */
void sp_model_matmul(const sp_model *m, sp_lin_w which, int l, float *c, const float *a, int n, int beta);

/* Opens path for reading and checks that it is a regular file; *size is its length in bytes.
 * `what` prefixes the file in messages ("checkpoint " -> "cannot open checkpoint P: ..."). */
sp_status sp_open_regular(const char *path, const char *what, FILE **fp, long long *size, sp_error *err);

/* ---- BitNet (bitnet.c) ---------------------------------------------------------------- */
#define SP_BITNET_MAGIC 0x616b3432u /* "ak42" read as a little-endian uint32 */
#define SP_BITNET_HEADER_BYTES 256

/* Loads a BitNet "ak42" v1 checkpoint from fp (positioned anywhere; size bytes long), whose
 * first 4 bytes the caller found to be SP_BITNET_MAGIC. Closes fp in every case. */
sp_status sp_bitnet_load(const char *path, FILE *fp, long long size, sp_model **out, sp_error *err);

/* ---- per-architecture steps of the forward pass (arch.c) ------------------------------
 * The places where llama2.c and BitNet differ are the inputs of the linear layers. A forward
 * pass (whole-sequence, or a decode step) asks for the input of each linear through this one
 * switch and never tests the architecture itself. */
typedef enum sp_lin_input {
    SP_LIN_QKV = 0, /* input of wq, wk, wv: the residual stream x (dim) */
    SP_LIN_WO = 1,  /* input of wo: the attention output (n_heads * head_dim) */
    SP_LIN_W13 = 2, /* input of w1, w3: the residual stream x (dim) */
    SP_LIN_W2 = 3   /* input of w2: the SwiGLU hidden activation (hidden) */
} sp_lin_input;

/* The input of linear `which` in layer l for `rows` rows of in (rows, n) with row stride n,
 * n the width of that input. Returns in itself when the architecture feeds it unchanged
 * (llama2.c's wo and w2), else writes the normalised rows to scratch (rows, n; may equal in)
 * and returns scratch: llama2.c RMSNorm(x) * gain[l] for QKV/W13; BitNet x / (||x|| sqrt(n))
 * for all four. */
const float *sp_model_linear_input(const sp_model *m, sp_lin_input which, int l, const float *in, float *scratch,
                                   int rows);
/* ss[t] = sum_i x[t][i]^2 over i = 0 .. n-1 in order, in double (each product of two floats is
 * exact), for every row t of x (rows, n): the sums of both norms. */
void sp_sumsq_rows(const float *x, int rows, int n, double *ss);
/* out (rows, dim) = RMSNorm(x) * w (dim), sum of squares in double, eps 1e-5 (llama2.c). */
void sp_rmsnorm(float *out, const float *x, const float *w, int rows, int dim);

/* eval.c: fills an sp_eval_result from an evaluation's sums (prefill and decode paths). */
void sp_eval_result_finish(sp_eval_result *res, int stories, long ntok, double nll_sum, long hits, double t0,
                           const sp_attn_op *op);

/* forward.c: RoPE as llama2.c applies it. sp_rope_table fills cs (n, hd) with (cos, sin) of
 * positions pos0 .. pos0+n-1; sp_rope rotates q (n, qdim) and k (n, kvdim) in place with it.
 * Shared by the prefill forward pass and the decode step (step.c). */
void sp_rope_table(float *cs, int pos0, int n, int hd);
void sp_rope(float *q, float *k, const float *cs, int n, int qdim, int kvdim, int hd);
/* eval.c: the checks and resets that start every evaluation path (prefill and decode). */
sp_status sp_eval_begin(const sp_model *m, const sp_corpus *c, sp_attn_op *op, const sp_eval_opts *o,
                        sp_eval_result *res, int *W, sp_error *err);

#endif
