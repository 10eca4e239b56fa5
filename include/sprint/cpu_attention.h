/* sprint/cpu_attention.h: attention kernels for an ordinary CPU, usable without the simulator.
 *
 *   sp_cpu_attention_dense   flash attention (cache-blocked, online softmax, vectorised exp)
 *   sp_cpu_attention_sprint  SPRINT's algorithm as a software kernel (paper sec. 1.3-1.5):
 *                            a 4-bit screen of every (query, key) pair (packed int4 key MSBs x
 *                            int8 queries, integer accumulation: AVX-512 VNNI vpdpbusd, AVX2
 *                            maddubs or portable C; AMX-INT8 tiles where offered, SPRINT_AMX=0
 *                            turns them off), then exact fp32 scores, the exact threshold,
 *                            softmax and the weighted sum of V for the survivors only.
 *
 * Tensors and masks are described by an sp_attn_head (attention.h: causal, q_offset,
 * key_valid, query_valid, scale); layer/head/seq_id are ignored. Kernels are chosen at run time
 * (AVX-512 + VNNI, AVX2 + FMA, portable; SPRINT_CPU=portable|avx2|avx512 lowers the choice).
 * Results are the same for any thread count. */
#ifndef SPRINT_CPU_ATTENTION_H
#define SPRINT_CPU_ATTENTION_H

#include "sprint/attention.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Name of the kernel level in use: "portable", "avx2" or "avx512" (static string). */
const char *sp_cpu_attention_level(void);

/* 1 when the SPRINT kernel's integer screen runs on AMX-INT8 tiles (the CPU and the OS offer
 * them, the level is avx512 and SPRINT_AMX is not "0"), else 0. */
int sp_cpu_attention_amx(void);

/* Dense attention softmax(scale q.k) v into h->out with `threads` threads (<= 0: all cores).
 * SP_ERR_ARG on a bad head or d > 512; SP_ERR_DATA on non-finite inputs or scores that could
 * leave the fp32 range. */
sp_status sp_cpu_attention_dense(const sp_attn_head *h, int threads, sp_error *err);

/* Threshold policies (scores s = scale q.k, in nats). */
typedef enum sp_cpu_policy {
    SP_CPU_POLICY_FIXED = 0,    /* keep key j iff s_ij >= threshold (layer/head thresholds) */
    SP_CPU_POLICY_RELATIVE = 1  /* keep key j iff s_ij >= max_j' s_ij' - delta (oracle) */
} sp_cpu_policy;

typedef struct sp_cpu_sprint_opts {
    sp_cpu_policy policy;
    double threshold;      /* nats (FIXED) */
    double delta;          /* nats >= 0 (RELATIVE) */
    /* The screen keeps key j when its 4-bit estimate, plus margin_sigma standard deviations of
     * the estimate's error (LSB centring and 8-bit quantisation, the functional model's
     * "sigma" margin, docs/functional.md), reaches the threshold. 0 = no margin. */
    double margin_sigma;
    int threads;           /* <= 0: all cores */
    /* Optional outputs (NULL = not computed; the kernel then skips their work): */
    unsigned char *kept;   /* (n_q, n_k) row-major: 1 = key entered softmax */
    sp_attn_stats *stats;  /* added to: queries, pairs_visible, pairs_mem_kept (screen
                            * survivors), pairs_kept, and with want_exact_stats also
                            * exact_pass / false_prunes / false_keeps (every visible pair's
                            * exact score: a dense pass, only when asked) */
    int want_exact_stats;
} sp_cpu_sprint_opts;

/* SPRINT-pruned attention into h->out: out_i = softmax over the kept keys of s_ij, times V.
 * A valid query with no kept key gets a zero row. SP_ERR_ARG on a bad head, d > 512 or bad
 * options (delta < 0, margin_sigma < 0, non-finite threshold); SP_ERR_DATA on non-finite
 * inputs. */
sp_status sp_cpu_attention_sprint(const sp_attn_head *h, const sp_cpu_sprint_opts *o, sp_error *err);

#ifdef __cplusplus
}
#endif
#endif
