/* sprint/qkv.h: the user's own attention tensors (issue 8): .npy and safetensors readers, the
 * Q/K/V tensor set (per layer and head, with an optional padding mask and a causal flag), a
 * safetensors writer, the functional model and simulator run on such a set, and the capture of
 * exactly the Q/K/V a native model run hands to its attention operator.
 *
 * File layout (docs/formats.md): one tensor set is a safetensors file or a directory of .npy
 * files. Tensor names, per sequence: q [layers, heads, T, d], k and v [layers, kv_heads, T, d]
 * (heads a multiple of kv_heads: grouped-query attention), optional mask [T] (1 = token,
 * 0 = padding); several sequences put these under "NAME/" (safetensors name "NAME/q", file
 * NAME/q.npy), taken in strcmp order of NAME. One scalar "causal" (0 encoder, 1 decoder) for
 * the whole set is required. Q/K/V: F32, F16, BF16 or F64 (converted to float); mask and
 * causal: BOOL, U8, I8, I16, I32, I64, F32 or F64 holding 0 or 1.
 *
 * Every reader works on a memory buffer (the fuzz target calls them directly) and checks every
 * declared size against the buffer before it allocates anything; a malformed file is
 * SP_ERR_FORMAT with a one-line message naming the file and the tensor. */
#ifndef SPRINT_QKV_H
#define SPRINT_QKV_H

#include <stddef.h>
#include <stdint.h>

#include "sprint/attention.h"
#include "sprint/common.h"
#include "sprint/config.h"
#include "sprint/model.h"
#include "sprint/sim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- one tensor of a file ------------------------------------------------------------------ */
typedef enum sp_dtype {
    SP_DTYPE_F32 = 0,
    SP_DTYPE_F16,
    SP_DTYPE_BF16,
    SP_DTYPE_F64,
    SP_DTYPE_BOOL,
    SP_DTYPE_U8,
    SP_DTYPE_I8,
    SP_DTYPE_I16,
    SP_DTYPE_I32,
    SP_DTYPE_I64,
    SP_DTYPE_COUNT
} sp_dtype;
const char *sp_dtype_name(sp_dtype t); /* safetensors spelling: "F32", "BOOL", ... */
size_t sp_dtype_size(sp_dtype t);      /* bytes per element */

#define SP_TENSOR_MAX_DIMS 8
typedef struct sp_tensor {
    char name[128];
    sp_dtype dtype;
    int ndim;                          /* 0 = scalar */
    int64_t shape[SP_TENSOR_MAX_DIMS];
    int64_t numel;                     /* product of shape (1 for a scalar) */
    const unsigned char *data;         /* little-endian, C order; points into the parsed buffer */
    size_t nbytes;                     /* numel * sp_dtype_size(dtype) */
} sp_tensor;

/* Parses a whole .npy file held in buf[0..len) (format versions 1.0, 2.0, 3.0): magic, header
 * dict ('descr' little-endian or single-byte, 'fortran_order' False, 'shape'), and exactly
 * numel * itemsize data bytes after the header. t->data points into buf; t->name is left empty.
 * SP_ERR_FORMAT with a one-line message otherwise. */
sp_status sp_npy_parse(const void *buf, size_t len, sp_tensor *t, sp_error *err);

/* Parses a whole safetensors file in buf[0..len): 8-byte little-endian header length N, N bytes
 * of JSON ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}),
 * then the data. Every tensor's offsets must lie in the data section, match its dtype and shape,
 * and the tensors must tile the data section without overlap or gap. *tensors (malloc'd, the
 * caller frees; NULL when *n = 0) point into buf. */
sp_status sp_safetensors_parse(const void *buf, size_t len, sp_tensor **tensors, int *n, sp_error *err);

/* Converts t's numel elements to float into dst (caller-owned, numel floats). Integer and bool
 * dtypes convert exactly up to 2^24. Never fails for a tensor returned by the parsers. */
void sp_tensor_to_f32(const sp_tensor *t, float *dst);

/* ---- a Q/K/V tensor set -------------------------------------------------------------------- */
typedef struct sp_qkv_seq {
    char name[96];        /* "" for a file with one unnamed sequence */
    int n_tok;            /* T: tokens, padding included */
    int n_valid;          /* tokens that are not padding; they come first (see sp_qkv_load) */
    float *q;             /* (layers, heads, T, d) */
    float *k, *v;         /* (layers, kv_heads, T, d) */
    unsigned char *valid; /* (T) 1 = token, 0 = padding; NULL when every token is valid */
} sp_qkv_seq;

typedef struct sp_qkv {
    int layers, heads, kv_heads, d;
    int causal;           /* 1: query i sees keys 0..i */
    int n_seq;
    sp_qkv_seq *seq;      /* (n_seq), in name order */
    int reordered;        /* sequences whose padding was moved behind the tokens */
} sp_qkv;

/* Builds a tensor set from parsed tensors (names as in the file layout above). Checks names,
 * shapes (q/k/v/mask of a sequence agree; layers, heads, kv_heads and d agree across sequences;
 * heads a multiple of kv_heads), dtypes, mask and causal values, and that every Q/K/V value is
 * finite. A sequence whose padding is not at its end is reordered (tokens first, in order,
 * then padding): attention with a padding mask does not depend on where the padding sits, and
 * the simulator's baselines place padding at the end. origin names the file in messages. */
sp_status sp_qkv_from_tensors(const sp_tensor *t, int n, const char *origin, sp_qkv **out, sp_error *err);

/* From memory: a safetensors file (the fuzz target's entry point). */
sp_status sp_qkv_parse_safetensors(const void *buf, size_t len, const char *origin, sp_qkv **out, sp_error *err);

/* Loads PATH: a safetensors file, or a directory of .npy files (DIR/q.npy ... or DIR/NAME/q.npy
 * for several sequences; other files are ignored). SP_ERR_IO / SP_ERR_FORMAT on failure. */
sp_status sp_qkv_load(const char *path, sp_qkv **out, sp_error *err);

/* Writes the set as a safetensors file (F32 Q/K/V, U8 mask and causal); a mask is written only
 * for a sequence with padding. */
sp_status sp_qkv_save(const sp_qkv *q, const char *path, sp_error *err);

/* An empty set of the given shape with n_seq sequences of n_tok[i] tokens (zeroed, all valid),
 * named by their index ("000000", ...). */
sp_qkv *sp_qkv_new(int layers, int heads, int kv_heads, int d, int causal, int n_seq, const int *n_tok);
void sp_qkv_free(sp_qkv *q);

/* ---- running a set ------------------------------------------------------------------------ */
/* Hands every (layer, head) of every sequence to op as sp_model_forward does (kv_head =
 * head / (heads / kv_heads), seq_id = sequence index, q_offset 0, scale 1/sqrt(d), the padding
 * mask as key_valid and query_valid), the sequences of one (layer, head) in order; (layer,
 * head) pairs run in parallel over threads (0 = all cores). The op's observer sees every
 * query record. */
sp_status sp_qkv_run_op(const sp_qkv *q, sp_attn_op *op, int threads, sp_error *err);

/* The simulator on a tensor set, beside the presets: the op of workload.mode (thresholds from
 * policy.file, else policy.threshold / policy.delta_uncalibrated, as for the presets: there is
 * no model to calibrate with) makes the masks; each (layer, head, sequence) is one head
 * instance, summed per (layer, head) over sequences and then in (layer, head) order, as the
 * real-model traces are, so a set captured from a native run reproduces its cycles exactly.
 * name (may be NULL) names the workload in the report. */
sp_status sp_sim_run_qkv(const sp_config *cfg, const sp_qkv *q, const char *name, const sp_sim_opts *o,
                         sp_wl_result *out, sp_error *err);

/* The native capture: evaluates the corpus with the model and the op the real-model traces use
 * (workload.mode, calibrated on o->calib, else on the corpus, as there; mode dense gives the dense model's
 * tensors) and records the Q/K/V every attention call receives: one sequence per evaluation
 * window (seq_id order), causal, no padding. observer (may be NULL) is attached to the op, so
 * a caller gets the pruning records of the same run. *out is the caller's (sp_qkv_free). */
sp_status sp_qkv_capture_model(const sp_config *cfg, const sp_model *m, const sp_corpus *corpus, const sp_sim_opts *o,
                               sp_query_observer observer, void *observer_user, sp_qkv **out, sp_error *err);

/* The capture operator behind it, for callers that run the model themselves: forwards every
 * call to inner (which it owns and frees; set observers on inner) after copying the head's
 * Q, K and V into dst (seq_id = sequence index; K/V once per kv_head). A call that does not
 * fit dst (shape, seq_id, masks) is an SP_ERR_ARG error. */
sp_attn_op *sp_qkv_capture_op_create(sp_attn_op *inner, sp_qkv *dst);

#ifdef __cplusplus
}
#endif
#endif
