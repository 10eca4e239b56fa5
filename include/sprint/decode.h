/* sprint/decode.h: SPRINT decoding on a CPU: a growing KV cache that stores packed 4-bit key
 * MSBs beside the full keys and values, and one decode step of multi-head / grouped-query
 * attention over it.
 *
 * Why this pays on a CPU (issue 12): a decode step reads the whole cache for one query per
 * head, so it is bound by memory bandwidth, not arithmetic. The SPRINT step first screens the
 * keys' 4-bit MSBs (d/2 bytes a key, an eighth of the fp32 key) the way the paper's ReRAM
 * crossbar does (sec. 1.2: approximate q.k from the key MSBs), keeps the keys whose
 * approximate score is within `margin` of the best one (a relative threshold, the software
 * counterpart of the comparator), and reads full keys and values only for those survivors,
 * with exact scores, softmax and weighted sum over them (the paper's on-chip recompute).
 *
 * Quantisation of a key row (per key, per KV head): s_k = max|k| / 127, k8 = round(k / s_k)
 * in [-127, 127], the 4 MSBs u = (k8 + 128) >> 4 in [0, 15] (k8's top nibble, offset binary),
 * which stand for k8 ~ 16 u - 120 (the middle of the 16-wide bin). The query is quantised the
 * same way per head (s_q, q8), and the approximate score is
 *     a_j = scale * s_q * s_k[j] * (16 * sum_c q8_c u_jc - 120 * sum_c q8_c).
 * The integer sum is what a VNNI dot product (vpdpbusd, u8 x s8) computes directly.
 *
 * Layout: per KV head, keys and values (cap, d) in the cache's storage type (fp32, fp16 or
 * bf16), MSBs in blocks of 16 keys (see src/decode/kv_kernels.h), one fp32 scale per key.
 *
 * Threads: a step splits into (KV head, chunk of SP_DECODE_CHUNK keys) tasks; partial softmax
 * sums are merged in chunk order, so the output is the same bits for any thread count. */
#ifndef SPRINT_DECODE_H
#define SPRINT_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "sprint/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SP_DECODE_CHUNK 2048 /* keys per task; fixed, so results do not depend on threads */

typedef enum sp_kv_dtype { SP_KV_F32 = 0, SP_KV_F16 = 1, SP_KV_BF16 = 2 } sp_kv_dtype;

/* "f32", "f16", "bf16". */
const char *sp_kv_dtype_name(sp_kv_dtype t);

typedef struct sp_kv_cache_opts {
    int n_heads;        /* query heads, a multiple of n_kv_heads (GQA group = n_heads / n_kv_heads <= 16) */
    int n_kv_heads;     /* key/value heads */
    int head_dim;       /* d, a multiple of 16, at most 1024 */
    int capacity;       /* keys the cache can hold (tokens), >= 1 */
    sp_kv_dtype dtype;  /* storage of full keys and values */
} sp_kv_cache_opts;

typedef struct sp_kv_cache sp_kv_cache;

/* Allocates an empty cache (and the scratch a step needs). SP_ERR_ARG on bad options.
 * The caller frees it with sp_kv_cache_free. */
sp_status sp_kv_cache_init(const sp_kv_cache_opts *o, sp_kv_cache **out, sp_error *err);
void sp_kv_cache_free(sp_kv_cache *c); /* NULL is a no-op */
int sp_kv_cache_len(const sp_kv_cache *c);
void sp_kv_cache_reset(sp_kv_cache *c); /* empties it (keeps the allocation) */
/* Bytes the cache holds per token: full K and V in the storage type, MSBs and key scales. */
double sp_kv_cache_bytes_per_token(const sp_kv_cache *c, int with_msb);

/* Appends one token: k and v are (n_kv_heads, d) fp32 rows. Quantises the key and writes its
 * MSBs. SP_ERR_ARG when the cache is full, SP_ERR_DATA on a non-finite value. */
sp_status sp_kv_cache_append(sp_kv_cache *c, const float *k, const float *v, sp_error *err);

typedef enum sp_decode_kernel {
    SP_DECODE_DENSE = 0, /* exact attention over every key (the dense baseline) */
    SP_DECODE_SPRINT = 1 /* MSB screen, relative threshold, exact attention over survivors */
} sp_decode_kernel;

typedef struct sp_decode_opts {
    sp_decode_kernel kernel;
    float scale;   /* score = scale * q.k (1/sqrt(d) in a transformer) */
    float margin;  /* SPRINT: keep key j iff a_j >= max_j' a_j' - margin (score units, nats); >= 0 */
    int threads;   /* worker threads (0 = OpenMP default) */
    int portable;  /* 1: force the portable kernels (tests); 0: best level of sp_cpu_detect() */
} sp_decode_opts;

typedef struct sp_decode_stats {
    double keys_visible; /* sum over query heads of the keys in the cache */
    double keys_kept;    /* sum over query heads of the keys entering softmax */
    double keys_fetched; /* full K/V rows read: per KV head, the union of its group's survivors */
} sp_decode_stats;

/* One decode step: q (n_heads, d) fp32 attends to every key in the cache (the newest key is
 * the query's own token: append before attending). out (n_heads, d). stats (may be NULL) are
 * added to. Not reentrant for one cache (the cache holds the step's scratch). SP_ERR_ARG on an
 * empty cache or bad options, SP_ERR_DATA on a non-finite query. */
sp_status sp_decode_step(sp_kv_cache *c, const float *q, float *out, const sp_decode_opts *o,
                         sp_decode_stats *stats, sp_error *err);

/* The reference: exact dense attention in double over fp32 rows K, V (n, n_kv_heads, d)
 * (token-major, as a model produces them), q and out (n_heads, d). Written for clarity. */
void sp_decode_ref(const float *K, const float *V, int n, int n_heads, int n_kv_heads, int d, float scale,
                   const float *q, float *out);

/* The name of the kernel level a step would use ("portable", "avx2", "avx512", "avx512-vnni"). */
const char *sp_decode_level_name(int portable);

/* Read bandwidth of main memory in GB/s (1e9 bytes/s): the best of `reps` passes reading a
 * `bytes`-long buffer (make it several times the last-level cache) on `threads` threads
 * (0 = OpenMP default). A STREAM-like measurement; returns 0 on a zero size. */
double sp_membw_read_gbs(size_t bytes, int threads, int reps);
/* One timed read pass over buf (n 64-bit words, caller-owned and already touched): GB/s. For
 * benchmarks that interleave the bandwidth measurement with the kernels they compare. */
double sp_membw_read_pass(const uint64_t *buf, size_t n, int threads);

#ifdef __cplusplus
}
#endif
#endif
