/* sprint/encoder.h: a transformer ENCODER with real weights (the Universal Sentence Encoder
 * lite, "KonaTransformer", shipped as a TensorFlow.js graph model), its sentencepiece
 * tokenizer, and the accuracy of an attention operator measured on sentence embeddings.
 *
 * Three layers, each usable alone:
 *   sp_tfjs_*     the TF.js weights manifest (model.json) and its binary shards
 *   sp_spm_*      the vocab.json tokenizer, as the USE-lite JS package tokenizes
 *   sp_encoder_*  the forward pass (bidirectional attention with a padding mask through an
 *                 sp_attn_op), sentence splitting and the embedding-accuracy evaluation
 * Formats, the graph it follows and what was checked: docs/model.md, "The encoder". */
#ifndef SPRINT_ENCODER_H
#define SPRINT_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "sprint/attention.h"
#include "sprint/common.h"
#include "sprint/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- TF.js weights manifest ------------------------------------------------------------ */
#define SP_TFJS_MAX_DIMS 8

typedef enum sp_tfjs_dtype { SP_TFJS_FLOAT32 = 0, SP_TFJS_INT32 = 1 } sp_tfjs_dtype;

typedef struct sp_tfjs_tensor {
    const char *name;
    sp_tfjs_dtype dtype;
    int ndim;                         /* 0 = scalar */
    int64_t shape[SP_TFJS_MAX_DIMS];
    size_t count;                     /* elements */
    int group;                        /* index of its weightsManifest group */
    size_t offset;                    /* bytes from the start of its group's data */
    const void *data;                 /* little-endian values; NULL until the shards are read */
} sp_tfjs_tensor;

typedef struct sp_tfjs_model sp_tfjs_model;

/* Parses the "weightsManifest" of a model.json held in json[0..len): every group's shard
 * paths and every weight's name, dtype (float32 or int32) and shape. Nothing is read from
 * disk. origin names the file in messages. SP_ERR_FORMAT with a one-line message on a
 * malformed manifest (not JSON, missing or mistyped fields, negative or huge shapes,
 * unsupported dtype or quantisation, unsafe shard paths, duplicate names). */
sp_status sp_tfjs_manifest_parse(const char *json, size_t len, const char *origin, sp_tfjs_model **out,
                                 sp_error *err);
/* Reads dir/model.json and its shards: each group's shards concatenated in order must hold
 * exactly the bytes its weights declare. SP_ERR_IO for a missing file, SP_ERR_FORMAT for a
 * malformed manifest or a shard of the wrong size. */
sp_status sp_tfjs_load(const char *dir, sp_tfjs_model **out, sp_error *err);
void sp_tfjs_free(sp_tfjs_model *m);
int sp_tfjs_count(const sp_tfjs_model *m);
const sp_tfjs_tensor *sp_tfjs_get(const sp_tfjs_model *m, int i);
/* The tensor called name, or NULL. */
const sp_tfjs_tensor *sp_tfjs_find(const sp_tfjs_model *m, const char *name);

/* ---- sentencepiece tokenizer (vocab.json) ------------------------------------------------ */
typedef struct sp_spm sp_spm;

/* Parses vocab.json: a JSON array of [piece, score] pairs, id = position. SP_ERR_FORMAT on
 * anything else (with the entry's index). */
sp_status sp_spm_parse(const char *json, size_t len, const char *origin, sp_spm **out, sp_error *err);
sp_status sp_spm_load(const char *path, sp_spm **out, sp_error *err);
void sp_spm_free(sp_spm *t);
int sp_spm_vocab_size(const sp_spm *t);
/* Encodes UTF-8 text as @tensorflow-models/universal-sentence-encoder's Tokenizer.encode:
 * NFKC, a leading U+2581 and every ' ' replaced by U+2581 (nothing for an empty text),
 * Viterbi over the pieces (ids >= 6) on UTF-16 code units with that code's tie rules, an
 * unknown unit as id 0, consecutive unknowns merged. *ids is malloc'd (caller frees; NULL
 * when *n == 0). SP_ERR_DATA on invalid UTF-8. */
sp_status sp_spm_encode(const sp_spm *t, const char *text, size_t len, int **ids, int *n, sp_error *err);

/* ---- the encoder ------------------------------------------------------------------------- */
typedef struct sp_encoder_info {
    int n_layers;          /* 2 */
    int n_heads;           /* heads per layer (4 in both) */
    int head_dim[2];       /* 64, 128 */
    int d_model[2];        /* attention width of each layer: 256, 512 */
    int d_in;              /* embedding width: 256 */
    int d_out;             /* stream width after layer 0 and embedding size: 512 */
    int d_ff;              /* 1536 */
    int vocab;             /* embedding rows: 8002 */
    int max_len;           /* tokens kept per sentence: 128 (ClipToMaxLength) */
} sp_encoder_info;

typedef struct sp_encoder sp_encoder;

/* Loads dir (model.json + shards) and checks that every tensor the forward pass needs is
 * there with the expected shape. SP_ERR_IO / SP_ERR_FORMAT on failure. */
sp_status sp_encoder_load(const char *dir, sp_encoder **out, sp_error *err);
void sp_encoder_free(sp_encoder *e);
const sp_encoder_info *sp_encoder_get_info(const sp_encoder *e);

/* Per-layer attention-output error of an operator against a reference run on the same
 * Q/K/V (the operator's own trajectory): sum over (sentence, head) of ||o - o_ref||^2 and
 * of ||o_ref||^2. rel_err = sqrt(num / den). */
typedef struct sp_encoder_attn_err {
    double num[2], den[2];
} sp_encoder_attn_err;

/* Embeds a batch of B sentences: ids[b] has lens[b] tokens (ids in [0, vocab); tokens past
 * max_len are dropped, as the graph does). Sentences are padded to the longest one and every
 * (sentence, layer, head) goes through op with key_valid/query_valid masks (bidirectional,
 * not causal); seq_id = seq_base + b. out is (B, d_out), caller-owned, L2-normalised. When
 * ref is given, it runs on the same heads and aerr (may be NULL) accumulates the error of
 * op against it. A sentence with no token is SP_ERR_ARG (the graph is not defined there). */
sp_status sp_encoder_embed(const sp_encoder *e, const int *const *ids, const int *lens, int B, sp_attn_op *op,
                           sp_attn_op *ref, long long seq_base, float *out, sp_encoder_attn_err *aerr, sp_error *err);

/* ---- sentences and evaluation -------------------------------------------------------------- */
/* Splits text into sentences: stories are separated by "<|endoftext|>"; every whitespace run
 * becomes one space; a sentence ends after '.', '!' or '?' plus any closing quotes ('"' or
 * U+201D) when a space or the end of the story follows; sentences are trimmed and empty ones
 * dropped. *out is an array of *n malloc'd strings (sp_sentences_free). */
sp_status sp_sentences_split(const char *text, size_t len, char ***out, int *n, sp_error *err);
void sp_sentences_free(char **s, int n);

typedef struct sp_encoder_corpus {
    int n;
    int **ids;
    int *len;
    long tokens;      /* sum of min(len, max_len) */
} sp_encoder_corpus;

/* Tokenizes every sentence (dropping the ones that give no token). */
sp_status sp_encoder_corpus_build(const sp_spm *t, char *const *sent, int n, sp_encoder_corpus *out, sp_error *err);
void sp_encoder_corpus_free(sp_encoder_corpus *c);

typedef struct sp_encoder_eval_result {
    long sentences, tokens;
    double cos_mean, cos_min;     /* cosine of each sentence's embedding to the dense one */
    double below_099;             /* fraction of sentences with cosine < 0.99 */
    double attn_rel_err[2];       /* per layer: sqrt(sum ||o - o_dense||^2 / sum ||o_dense||^2) */
    double seconds;
    sp_attn_stats attn;           /* op's stats summed over the evaluation */
} sp_encoder_eval_result;

/* Embeds every sentence of c with op and with the dense reference, batch sentences at a
 * time, and compares them. Resets op's stats first. dense_emb (n x d_out) may hold the dense
 * embeddings from an earlier call (then the dense pass is skipped) or be NULL. */
sp_status sp_encoder_eval(const sp_encoder *e, const sp_encoder_corpus *c, sp_attn_op *op, int batch,
                          const float *dense_emb, sp_progress_fn progress, void *progress_user,
                          sp_encoder_eval_result *res, sp_error *err);

/* Calibrates the oracle/onchip policy's delta (nats) for mode: the smallest delta (most
 * pruning) found by bisection in [0, 32] (policy.calib_iters steps, resolution 32 / 2^iters)
 * whose mean embedding cosine to dense on c is >= target.
 * Writes the thresholds object (kind = policy.kind, delta) to *out (sp_thresholds_free).
 * Other policy kinds: SP_ERR_CONFIG. */
struct sp_thresholds;
sp_status sp_encoder_calibrate(const sp_encoder *e, const sp_encoder_corpus *c, const sp_config *cfg,
                               const char *mode, double target, int batch, sp_progress_fn progress,
                               void *progress_user, struct sp_thresholds **out, sp_error *err);

#ifdef __cplusplus
}
#endif
#endif
