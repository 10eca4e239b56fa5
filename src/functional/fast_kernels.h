/* fast_kernels.h: the two inner loops of the fast functional operator (sprint_fast.c, issue 9)
 * that are not the integer screen (int_screen.h) or the digital row (attention/sprint_exact.h):
 * the comparator's selection of the in-memory survivors from the integer charges, and fp32
 * scores of a list of keys. Portable C and AVX-512 (F/BW/VL) versions chosen at run time
 * (cpu/cpu.h); the AVX-512 ones are tested against the portable ones (tests/test_fn_fast.c). */
#ifndef SPRINT_FAST_KERNELS_H
#define SPRINT_FAST_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "cpu/cpu.h"

/* The comparator (paper Fig. 6a) over keys [0, n): writes the j with A[j] >= tau and
 * (kvalid == NULL or kvalid[j] != 0) ascending into out (capacity n + 16: the vector version
 * stores whole vectors) and returns their count; bits[w] (w < ceil(n / 16)) gets the same set
 * as a bit mask, bit u of bits[w] for key 16 w + u. */
typedef int (*sp_fk_select_fn)(const int32_t *A, int n, int32_t tau, const unsigned char *kvalid, int32_t *out,
                               uint16_t *bits);
int sp_fk_select_portable(const int32_t *A, int n, int32_t tau, const unsigned char *kvalid, int32_t *out,
                          uint16_t *bits);
int sp_fk_select_avx512(const int32_t *A, int n, int32_t tau, const unsigned char *kvalid, int32_t *out,
                        uint16_t *bits);

/* out[t] = q . k_idx[t] in fp32 (d elements, key rows of stride ldk), t < n. Any summation
 * order: the caller relies only on the bound |fl(q.k) - q.k| <= gamma_d |q| |k|. */
typedef void (*sp_fk_dots_fn)(const float *q, const float *k, int ldk, int d, const int32_t *idx, int n,
                              float *out);
void sp_fk_dots_portable(const float *q, const float *k, int ldk, int d, const int32_t *idx, int n, float *out);
void sp_fk_dots_avx512(const float *q, const float *k, int ldk, int d, const int32_t *idx, int n, float *out);

/* out (d) = sum_t p_t v_idx[t] / sum_t p_t with p_t = 2^(qmul s[t] - max_t' qmul s[t']) (the
 * kernels' exp2 polynomial, flash.h), over n >= 1 keys with fp32 scores s (q.k units; qmul =
 * scale log2 e): softmax and the weighted sum of V over the kept keys. p: scratch of n + 16. */
typedef void (*sp_fk_softmax_wsum_fn)(const float *s, float qmul, const int32_t *idx, int n, const float *v, int ldv,
                                      int d, float *p, float *out);
void sp_fk_softmax_wsum_portable(const float *s, float qmul, const int32_t *idx, int n, const float *v, int ldv, int d,
                                 float *p, float *out);
void sp_fk_softmax_wsum_avx512(const float *s, float qmul, const int32_t *idx, int n, const float *v, int ldv, int d,
                               float *p, float *out);

/* p[t] = 2^(qmul s[t] - max) / sum_t' 2^(qmul s[t'] - max) over n >= 1 keys with fp32 scores s
 * (q.k units; qmul = scale log2 e; the kernels' exp2 polynomial, flash.h): the softmax weights
 * of the kept keys. p: n + 16 floats. */
typedef void (*sp_fk_softmax_fn)(const float *s, float qmul, int n, float *p);
void sp_fk_softmax_portable(const float *s, float qmul, int n, float *p);
void sp_fk_softmax_avx512(const float *s, float qmul, int n, float *p);

/* The weighted sums of up to 4 queries over the union of their kept keys, one V row load per
 * key of the union (adjacent queries keep mostly the same keys, sec. 2.4). Query r's kept keys
 * are kl[r ld ..] in ascending order, ended by INT32_MAX, with their weights at pl[r ld ..];
 * for each r < 4 with out[r] != NULL, out[r] (d) = sum over its kept keys u, in key order, of
 * p_u v_u (the 4 lists merged: at each key of the union, a query that did not keep it adds
 * 0 v_u, which changes no bit: V is finite). */
typedef void (*sp_fk_wsum4_fn)(const int32_t *kl, const float *pl, size_t ld, const float *v, int ldv, int d,
                               float *const out[4]);
void sp_fk_wsum4_portable(const int32_t *kl, const float *pl, size_t ld, const float *v, int ldv, int d,
                          float *const out[4]);
void sp_fk_wsum4_avx512(const int32_t *kl, const float *pl, size_t ld, const float *v, int ldv, int d,
                        float *const out[4]);

/* The exact threshold's clear cases: copies the (idx[t], s[t]) with s[t] >= hi to (kept,
 * ksc) in order and returns their count, or -1 when some s[t] lies in [lo, hi) (the caller then
 * decides that query key by key). kept and ksc have n + 16 entries. */
typedef int (*sp_fk_threshold_fn)(const float *s, const int32_t *idx, int n, float lo, float hi, int32_t *kept,
                                  float *ksc);
int sp_fk_threshold_portable(const float *s, const int32_t *idx, int n, float lo, float hi, int32_t *kept, float *ksc);
int sp_fk_threshold_avx512(const float *s, const int32_t *idx, int n, float lo, float hi, int32_t *kept, float *ksc);

/* max_t s[t] over n floats (-inf when n = 0). */
typedef float (*sp_fk_max_fn)(const float *s, int n);
float sp_fk_max_portable(const float *s, int n);
float sp_fk_max_avx512(const float *s, int n);


/* One query's statistics over every visible pair (the reference's loops in sprint_op.c), from
 * its fp32 scores S (n = keys [0, end)), skipping keys with kv[j] == 0 (kv may be NULL):
 *   want_pass:   x_j = scale S_j against the exact threshold's band: x >= hi passes, x < lo
 *                fails (counted: n_pass, n_fk = kept in memory (A_j >= ti) but failing, n_fp =
 *                passing but pruned); keys in [lo, hi) go to amb (capacity n + 16) for the
 *                caller's exact decision, uncounted;
 *   want_mass:   Z = sum_j mass_exp(max(x_j - smax, cut)) (sp_fn_mass_exp, cut: -60 below -30);
 *   want_spread: s1 = sum_j (x_j - smax), s2 = sum_j (x_j - smax)^2, cnt = valid keys.
 * Every term equals the reference's; the vector version sums them in another order (sums
 * within ~1e-15 relative). */
typedef struct sp_fk_dense_in {
    const float *S;
    int n;
    const unsigned char *kv;
    const int32_t *A;
    int32_t ti;
    double scale, smax, hi, lo;
    int want_pass, want_mass, want_spread;
} sp_fk_dense_in;
typedef struct sp_fk_dense_out {
    int n_pass, n_fk, n_fp, n_amb;
    double Z, s1, s2;
    long cnt;
} sp_fk_dense_out;
typedef void (*sp_fk_dense_fn)(const sp_fk_dense_in *in, int32_t *amb, sp_fk_dense_out *out);
void sp_fk_dense_portable(const sp_fk_dense_in *in, int32_t *amb, sp_fk_dense_out *out);
void sp_fk_dense_avx512(const sp_fk_dense_in *in, int32_t *amb, sp_fk_dense_out *out);

sp_fk_select_fn sp_fk_select_for(sp_cpu_level level);
sp_fk_dense_fn sp_fk_dense_for(sp_cpu_level level);
sp_fk_max_fn sp_fk_max_for(sp_cpu_level level);
sp_fk_threshold_fn sp_fk_threshold_for(sp_cpu_level level);
sp_fk_softmax_wsum_fn sp_fk_softmax_wsum_for(sp_cpu_level level);
sp_fk_softmax_fn sp_fk_softmax_for(sp_cpu_level level);
sp_fk_wsum4_fn sp_fk_wsum4_for(sp_cpu_level level);
sp_fk_dots_fn sp_fk_dots_for(sp_cpu_level level);

/* Blocked survivor scores (issue 9, second pass): FX_SUB = 4 adjacent queries share each K row
 * or packed K panel they load, as the hardware's adjacent queries share on-chip keys (sec. 2.4). */

/* sc4[4 idx[t] + r] = q_r . k_idx[t] in fp32 for the queries r < nr <= 4 (rows q + r ldq), t < n;
 * the slots r >= nr of those keys get unspecified values. Any summation order (as sp_fk_dots). */
typedef void (*sp_fk_dots4_fn)(const float *q, int ldq, int nr, const float *k, int ldk, int d, const int32_t *idx,
                               int n, float *sc4);
void sp_fk_dots4_portable(const float *q, int ldq, int nr, const float *k, int ldk, int d, const int32_t *idx, int n,
                          float *sc4);
void sp_fk_dots4_avx512(const float *q, int ldq, int nr, const float *k, int ldk, int d, const int32_t *idx, int n,
                        float *sc4);

/* Score cache lookup for slot r of a 4-query cache: for t < n, key list[t] is cached when
 * stamp[list[t]] == now, and then out[t] = sc4[4 list[t] + r]; the others are appended to
 * (miss, mpos) = (key, t), in order (each n + 16 entries); returns their count. */
typedef int (*sp_fk_lookup4_fn)(const int32_t *list, int n, const int *stamp, int now, const float *sc4, int r,
                                float *out, int32_t *miss, int32_t *mpos);
int sp_fk_lookup4_portable(const int32_t *list, int n, const int *stamp, int now, const float *sc4, int r, float *out,
                           int32_t *miss, int32_t *mpos);
int sp_fk_lookup4_avx512(const int32_t *list, int n, const int *stamp, int now, const float *sc4, int r, float *out,
                         int32_t *miss, int32_t *mpos);

/* The scores of a whole 16-key panel for up to 4 queries: out[4 u + r] = q_r . k_(16 p + u) in
 * fp32 (u < 16, r < nr; slots r >= nr unspecified) from the panel's packed K (kpan: d rows of 16
 * floats, flash.h's sp_flash_pack_k layout). Any summation order (as sp_fk_dots). */
typedef void (*sp_fk_panel4_fn)(const float *q, int ldq, int nr, const float *kpan, int d, float *out);
void sp_fk_panel4_portable(const float *q, int ldq, int nr, const float *kpan, int d, float *out);
void sp_fk_panel4_avx512(const float *q, int ldq, int nr, const float *kpan, int d, float *out);

/* sp_fk_select with the comparator's bits already computed (the AMX screen's): key j is a
 * survivor when bit j % 64 of mask[j / 64] is set (and kvalid[j] != 0, kvalid may be NULL). */
typedef int (*sp_fk_select_mask_fn)(const uint64_t *mask, int n, const unsigned char *kvalid, int32_t *out,
                                    uint16_t *bits);
int sp_fk_select_mask_portable(const uint64_t *mask, int n, const unsigned char *kvalid, int32_t *out, uint16_t *bits);
int sp_fk_select_mask_avx512(const uint64_t *mask, int n, const unsigned char *kvalid, int32_t *out, uint16_t *bits);

/* out[t] = S[idx[t]], t < n (the dense block's scores of a key list). */
typedef void (*sp_fk_gather_fn)(const float *S, const int32_t *idx, int n, float *out);
void sp_fk_gather_portable(const float *S, const int32_t *idx, int n, float *out);
void sp_fk_gather_avx512(const float *S, const int32_t *idx, int n, float *out);

/* out[t] = sc4[4 idx[t] + r], t < n: slot r of a 4-query score cache for a key list (the onchip
 * sub-block's scores once every key of the list is scored, sprint_fast.c fx_scores_bits). */
typedef void (*sp_fk_gather4_fn)(const float *sc4, int r, const int32_t *idx, int n, float *out);
void sp_fk_gather4_portable(const float *sc4, int r, const int32_t *idx, int n, float *out);
void sp_fk_gather4_avx512(const float *sc4, int r, const int32_t *idx, int n, float *out);

/* The words u < nw with need[u] & ~done[u] != 0, ascending, into words (capacity nw + 32);
 * returns their count (the onchip sub-block's panels with keys still to score). */
typedef int (*sp_fk_todo16_fn)(const uint16_t *need, const uint16_t *done, int nw, int32_t *words);
int sp_fk_todo16_portable(const uint16_t *need, const uint16_t *done, int nw, int32_t *words);
int sp_fk_todo16_avx512(const uint16_t *need, const uint16_t *done, int nw, int32_t *words);
sp_fk_todo16_fn sp_fk_todo16_for(sp_cpu_level level);

/* Slots r and r + 1 (r <= 2) of the cache at once: out[t] = sc4[4 idx[t] + r], out1[t] =
 * sc4[4 idx[t] + r + 1], t < n (a query's survivors' scores and the next query's sources'). */
typedef void (*sp_fk_gather4x2_fn)(const float *sc4, int r, const int32_t *idx, int n, float *out, float *out1);
void sp_fk_gather4x2_portable(const float *sc4, int r, const int32_t *idx, int n, float *out, float *out1);
void sp_fk_gather4x2_avx512(const float *sc4, int r, const int32_t *idx, int n, float *out, float *out1);

sp_fk_gather_fn sp_fk_gather_for(sp_cpu_level level);
sp_fk_gather4_fn sp_fk_gather4_for(sp_cpu_level level);
sp_fk_gather4x2_fn sp_fk_gather4x2_for(sp_cpu_level level);
sp_fk_select_mask_fn sp_fk_select_mask_for(sp_cpu_level level);
/* sp_fk_panel4 for the panels plist[0..np) of K packed whole (kpf, sp_flash_pack_k: panel p at
 * kpf + 16 d p), panel p's scores to sc4 + 64 p (the 4-slot cache's layout, sc4[4 j + r]). */
typedef void (*sp_fk_panels4_fn)(const float *q, int ldq, int nr, const float *kpf, int d, const int32_t *plist,
                                 int np, float *sc4);
void sp_fk_panels4_portable(const float *q, int ldq, int nr, const float *kpf, int d, const int32_t *plist, int np,
                            float *sc4);
void sp_fk_panels4_avx512(const float *q, int ldq, int nr, const float *kpf, int d, const int32_t *plist, int np,
                          float *sc4);
sp_fk_panel4_fn sp_fk_panel4_for(sp_cpu_level level);
sp_fk_panels4_fn sp_fk_panels4_for(sp_cpu_level level);
sp_fk_dots4_fn sp_fk_dots4_for(sp_cpu_level level);
sp_fk_lookup4_fn sp_fk_lookup4_for(sp_cpu_level level);

/* The per-head pass over the 8-bit keys ki (n x d, row stride d): the key MSBs msb[j d + c] =
 * sp_key_msb(ki, b) = (ki + 128) >> (8 - b) of every row, and over the rows with valid[j]
 * (NULL: all) the integer sums s[0] = sum ki^2, s[1] = sum m^2, s[2] = sum (2^b - 1 - m)^2
 * and *kmax = max |ki| (0 if none): the head statistics of the comparator margin, exact in
 * integers (sprint_fast.c turns them into the reference's doubles). b in 1..8, d * 16384 < 2^31. */
typedef void (*sp_fk_kmsb_fn)(const int8_t *ki, int n, int d, const unsigned char *valid, int b, uint8_t *msb,
                              int64_t s[3], int *kmax);
void sp_fk_kmsb_portable(const int8_t *ki, int n, int d, const unsigned char *valid, int b, uint8_t *msb,
                         int64_t s[3], int *kmax);
void sp_fk_kmsb_avx512(const int8_t *ki, int n, int d, const unsigned char *valid, int b, uint8_t *msb, int64_t s[3],
                       int *kmax);
sp_fk_kmsb_fn sp_fk_kmsb_for(sp_cpu_level level);

/* The 8-bit query DAC (dac_bits = 8: level = max(q, -127), sp_dac_level) of qi (n x d, row
 * stride d): as ints to qd (row stride d) and as bytes to qd8 (row stride d8 >= d; columns d..d8
 * untouched). */
typedef void (*sp_fk_dac8_fn)(const int8_t *qi, int n, int d, int *qd, int8_t *qd8, int d8);
void sp_fk_dac8_portable(const int8_t *qi, int n, int d, int *qd, int8_t *qd8, int d8);
void sp_fk_dac8_avx512(const int8_t *qi, int n, int d, int *qd, int8_t *qd8, int d8);
sp_fk_dac8_fn sp_fk_dac8_for(sp_cpu_level level);

/* The integer sums of one 8-bit query qi (d elements) through the 8-bit DAC (level qd =
 * max(q, -127), step 1, rounding error e = q - qd in {0, -1}): s[0] = sum q, s[1] = sum q^2,
 * s[2] = sum |q|, s[3] = the count of q = -128 (= sum e^2 = sum |e|). The comparator margin's
 * DAC sums (sp_fn_dac_sums_of) follow from them exactly (sprint_fast.c). d < 2^16. */
typedef void (*sp_fk_dacsums8_fn)(const int8_t *qi, int d, int64_t s[4]);
void sp_fk_dacsums8_portable(const int8_t *qi, int d, int64_t s[4]);
void sp_fk_dacsums8_avx512(const int8_t *qi, int d, int64_t s[4]);
sp_fk_dacsums8_fn sp_fk_dacsums8_for(sp_cpu_level level);

#endif
