/* sprint/model.h: the transformer runner: llama2.c and BitNet (bitllama2.c "ak42" v1)
 * checkpoints, tokenizers, a forward pass whose attention goes through an sp_attn_op, and
 * evaluation on real text. */
#ifndef SPRINT_MODEL_H
#define SPRINT_MODEL_H

#include <stddef.h>

#include "sprint/attention.h"
#include "sprint/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Checkpoint architectures, detected from the file's header (docs/model.md). */
typedef enum sp_model_arch {
    SP_MODEL_ARCH_LLAMA2 = 0, /* llama2.c legacy export: fp32, RMSNorm gains before attention and MLP */
    SP_MODEL_ARCH_BITNET = 1  /* bitllama2.c "ak42" v1: ternary linears, every linear input scaled to
                                 x / (||x|| sqrt(n)), no per-layer gains */
} sp_model_arch;

/* The llama2.c header: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 * seq_len); a negative vocab_size means a separate classifier matrix follows the weights.
 * BitNet files carry the same 7 fields after a magic and a version. */
typedef struct sp_model_info {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int head_dim;          /* dim / n_heads */
    int shared_classifier; /* 1 when the classifier is the token embedding */
    sp_model_arch arch;    /* which forward pass the weights belong to */
} sp_model_info;

/* "llama2" or "bitnet". */
const char *sp_model_arch_name(sp_model_arch arch);

typedef struct sp_model sp_model;

/* Loads a checkpoint: a BitNet "ak42" v1 file when it starts with the magic 0x616b3432, else a
 * llama2.c legacy export. Every header field and the file size are validated against each
 * other before anything is read; SP_ERR_IO / SP_ERR_FORMAT with a one-line message on failure. */
sp_status sp_model_load(const char *path, sp_model **out, sp_error *err);
void sp_model_free(sp_model *m);
const sp_model_info *sp_model_get_info(const sp_model *m);

/* Forward pass over tokens[0..n) (n <= seq_len), positions 0..n-1, causal attention through
 * op. logits is (n, vocab_size), caller-owned. seq_id identifies the sequence for the op.
 * threads: worker threads over attention heads (0 = OpenMP default). */
sp_status sp_model_forward(const sp_model *m, const int *tokens, int n, sp_attn_op *op, long long seq_id,
                           int threads, float *logits, sp_error *err);

/* ---- tokenizer (llama2.c tokenizer.bin) ---------------------------------------------- */
typedef struct sp_tokenizer sp_tokenizer;
/* vocab_size must match the model's; a file with a different vocabulary is an error. */
sp_status sp_tokenizer_load(const char *path, int vocab_size, sp_tokenizer **out, sp_error *err);
void sp_tokenizer_free(sp_tokenizer *t);
int sp_tokenizer_vocab_size(const sp_tokenizer *t);
/* Encodes UTF-8 text as llama2.c does (dummy prefix space, code points with byte fallback,
 * repeated best-score merges). *tokens is malloc'd (caller frees); SP_ERR_DATA on invalid
 * UTF-8. bos/eos add token 1 / 2. */
sp_status sp_tokenizer_encode(const sp_tokenizer *t, const char *text, size_t len, int bos, int eos,
                              int **tokens, int *n_tokens, sp_error *err);
/* The text of token `tok` following `prev` (strips the leading space after BOS, decodes
 * <0xXX> byte tokens). The pointer stays valid until the next call or sp_tokenizer_free. */
const char *sp_tokenizer_decode(const sp_tokenizer *t, int prev, int tok);

/* ---- corpus and evaluation ------------------------------------------------------------ */
typedef struct sp_corpus {
    int n;          /* stories */
    int **tokens;   /* tokens[i] has len[i] tokens, starting with BOS */
    int *len;
    long total_targets; /* predicted tokens: sum of (len[i] - 1) */
} sp_corpus;

/* Splits text at "<|endoftext|>", trims each story, drops empty ones, encodes each with BOS.
 * max_stories 0 = all. SP_ERR_DATA when no story is left or the text is not valid UTF-8. */
sp_status sp_corpus_from_text(const sp_tokenizer *t, const char *text, size_t len, int max_stories,
                              sp_corpus *out, sp_error *err);
/* Reads a whole file (caller frees *text). */
sp_status sp_read_file(const char *path, char **text, size_t *len, sp_error *err);
void sp_corpus_free(sp_corpus *c);
/* out = a deep copy of stories [from, to) of c (free with sp_corpus_free); SP_ERR_ARG for an
 * empty or out-of-range slice. */
sp_status sp_corpus_slice(const sp_corpus *c, int from, int to, sp_corpus *out, sp_error *err);

typedef struct sp_eval_opts {
    int window;               /* 0 = the model's seq_len */
    int threads;              /* 0 = default */
    sp_progress_fn progress;  /* may be NULL */
    void *progress_user;
} sp_eval_opts;

typedef struct sp_eval_result {
    long stories;
    long tokens;          /* predicted tokens */
    double nll_sum;       /* nats */
    double nll;           /* mean nats per token */
    double ppl;           /* exp(nll) */
    double top1;          /* fraction of targets that are the argmax */
    double seconds;       /* wall time of the evaluation */
    double tokens_per_s;
    sp_attn_stats attn;   /* totals of the op's stats over this evaluation */
} sp_eval_result;

/* Evaluates every story (windows of `window` tokens; each target predicted once) with
 * attention through op. Resets op's stats first. Deterministic for a given op and seed. */
sp_status sp_eval_corpus(const sp_model *m, const sp_corpus *c, sp_attn_op *op, const sp_eval_opts *o,
                         sp_eval_result *res, sp_error *err);

/* ---- decoding with a KV cache (src/model/step.c, issue 12) ------------------------------ */
typedef struct sp_model_kv sp_model_kv;
/* A cache of every layer's key and value rows for up to `capacity` positions (<= seq_len).
 * Caller frees with sp_model_kv_free (NULL is a no-op). */
sp_status sp_model_kv_init(const sp_model *m, int capacity, sp_model_kv **out, sp_error *err);
void sp_model_kv_free(sp_model_kv *kv);
void sp_model_kv_reset(sp_model_kv *kv); /* a new sequence */
int sp_model_kv_len(const sp_model_kv *kv);
/* One decode step: token at position sp_model_kv_len(kv); appends its keys and values and
 * writes logits (vocab_size). Attention goes through op as n_q = 1 heads (q_offset = pos).
 * SP_ERR_ARG when the cache is full, the token is out of range or op does not fit the model. */
sp_status sp_model_step(const sp_model *m, sp_model_kv *kv, int token, sp_attn_op *op, long long seq_id,
                        float *logits, sp_error *err);
/* sp_eval_corpus, teacher-forced one token per step through the KV cache (the same windows,
 * targets and sequence ids); the NLL equals the prefill path's to float rounding for dense
 * attention and for any operator whose per-query result depends only on keys up to its own
 * position (tests/test_model_decode.c). */
sp_status sp_eval_corpus_decode(const sp_model *m, const sp_corpus *c, sp_attn_op *op, const sp_eval_opts *o,
                                sp_eval_result *res, sp_error *err);

#ifdef __cplusplus
}
#endif
#endif
