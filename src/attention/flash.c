/* flash.c: dense flash attention on the CPU (see flash.h): the portable tile (the reference
 * the AVX2 and AVX-512 tiles are tested against), K packing, the blocked driver, the
 * multi-threaded entry point and the "dense" attention operator built on it.
 *
 * Blocking: 256 queries (64 tiles of 4) share every 64-key chunk of K and V while it is in L1
 * (64 keys x d = 64: 16 KB of K, 16 KB of V); their running state (m, l, o: 64 KB at d = 64)
 * streams from L2. Larger query blocks amortise the chunk's loads: at L = 4096, d = 64, one
 * thread, 32 queries gave 41% of the measured FMA peak, 64 gave 57%, 256 gave 59%. */
#include "attention/flash.h"
#include "attention/sprint_exact.h"
#include "cpu/linear.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define QBLOCK 256 /* queries per outer block (a multiple of SP_FLASH_ROWS) */
/* V rows that do not start on a 64-byte boundary are copied to aligned rows from this many
 * queries on: the copy (n_k x d floats, fresh pages) costs about as much as the split loads of
 * ~1000 queries (docs/RESULTS.md part 9z.w.3: n_k = 4096, d = 64 or 128, one thread, rows 16
 * bytes off a line; with the copy 1.1-3.2x the time at 1-64 queries, 0.95-1.05x at 512-1024,
 * 0.92-0.95x at 2048-4096). */
#define FLASH_COPY_MIN_Q 2048

/* *ha = *h, with V on 64-byte aligned rows when h has FLASH_COPY_MIN_Q queries or more and its V
 * rows are off a line; returns the copy for the caller to free (NULL: none). */
static float *flash_head_aligned_v(const sp_attn_head *h, sp_attn_head *ha) {
    *ha = *h;
    float *v_al = h->n_q >= FLASH_COPY_MIN_Q ? sp_rows_aligned(h->v, h->n_k, h->d, h->ldv, &ha->ldv) : NULL;
    if (v_al) ha->v = v_al;
    return v_al;
}

static inline float exp2_poly(float x) { return sp_flash_exp2(x); }


void sp_flash_tile_portable(sp_flash_tile *t) {
    const int d = t->d, n = t->nkc;
    float s[SP_FLASH_ROWS][SP_FLASH_CHUNK]; /* scores (log2 units), then weights */
    for (int r = 0; r < SP_FLASH_ROWS; r++)
        for (int u = 0; u < SP_FLASH_CHUNK; u++) s[r][u] = 0.0f;
    for (int c = 0; c < d; c++)
        for (int p = 0; p < SP_FLASH_CHUNK / 16; p++) {
            const float *kc = t->kpan[p] + (size_t)c * 16;
            for (int r = 0; r < SP_FLASH_ROWS; r++) {
                float qc = t->q[r][c];
                for (int u = 0; u < 16; u++) s[r][p * 16 + u] += qc * kc[u];
            }
        }
    for (int r = 0; r < SP_FLASH_ROWS; r++) {
        int lim = t->lim[r] < n ? t->lim[r] : n;
        float mx = -INFINITY, thr = t->thr[r] > -FLT_MAX ? t->thr[r] : -FLT_MAX;
        const float *bias = t->bias;
        const uint64_t allow = t->rmask ? t->rmask[r] : ~(uint64_t)0;
        uint64_t kept = 0;
        for (int u = 0; u < SP_FLASH_CHUNK; u++) {
            float x = u < lim && ((allow >> u) & 1) ? s[r][u] + (bias ? bias[u] : 0.0f) : -INFINITY;
            if (!(x >= thr)) x = -INFINITY;
            kept |= (uint64_t)(x != -INFINITY) << u;
            s[r][u] = x;
            mx = x > mx ? x : mx;
        }
        t->kept[r] = kept;
        float mold = t->m[r], mnew = mx > mold ? mx : mold;
        if (mnew == -INFINITY) continue; /* nothing visible yet: state unchanged */
        float alpha = mold == -INFINITY ? 0.0f : exp2_poly(mold - mnew);
        float sum = 0.0f;
        for (int u = 0; u < SP_FLASH_CHUNK; u++) {
            s[r][u] = exp2_poly(s[r][u] - mnew);
            sum += s[r][u];
        }
        t->m[r] = mnew;
        t->l[r] = t->l[r] * alpha + sum;
        float *o = t->o + (size_t)r * (size_t)d;
        for (int c = 0; c < d; c++) o[c] *= alpha;
        for (int u = 0; u < lim; u++) {
            const float *vr = t->v + (size_t)(t->vidx ? t->vidx[u] : u) * (size_t)t->ldv;
            float pu = s[r][u];
            for (int c = 0; c < d; c++) o[c] += pu * vr[c];
        }
    }
}

sp_flash_tile_fn sp_flash_tile_for(sp_cpu_level level, int d) {
    if (level >= SP_CPU_AVX512 && d % 16 == 0) return sp_flash_tile_avx512;
    if (level >= SP_CPU_AVX2 && d % 8 == 0) return sp_flash_tile_avx2;
    return sp_flash_tile_portable;
}

size_t sp_flash_kpack_size(int n_k, int d) {
    size_t nk64 = ((size_t)(n_k > 0 ? n_k : 0) + SP_FLASH_CHUNK - 1) / SP_FLASH_CHUNK * SP_FLASH_CHUNK;
    return (nk64 > 0 ? nk64 : SP_FLASH_CHUNK) * (size_t)d;
}

/* The panels of cpu/linear.h (16 keys x d), zero-padded on to whole chunks: the reference
 * (an element at a time, after zeroing the whole buffer). */
void sp_flash_pack_k_portable(const float *k, int ldk, int n_k, int d, float *kp) {
    size_t total = sp_flash_kpack_size(n_k, d), packed = 0;
    if (n_k > 0) {
        sp_linear_pack_strided(k, ldk, n_k, d, kp);
        packed = sp_linear_packed_floats(n_k, d);
    }
    memset(kp + packed, 0, (total - packed) * sizeof *kp);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define T512F __attribute__((target("avx512f")))
/* The same floats, 16 keys x 16 dims at a time: 16 row loads (masked at d's end; keys past
 * n_k are zero vectors), a 16 x 16 transpose in registers, 16 stores; no pass that zeroes the
 * buffer first (only the panels past the last key are cleared). Part of both kernels' setup
 * (docs/RESULTS.md part 9z.s). */
T512F void sp_flash_pack_k_avx512(const float *k, int ldk, int n_k, int d, float *kp) {
    const size_t total = sp_flash_kpack_size(n_k, d), PD = (size_t)d * 16;
    const int np = n_k > 0 ? (n_k + 15) / 16 : 0;
    for (int p = 0; p < np; p++) {
        float *dst = kp + (size_t)p * PD;
        const int nu = n_k - 16 * p < 16 ? n_k - 16 * p : 16;
        for (int c0 = 0; c0 < d; c0 += 16) {
            const int nc = d - c0 < 16 ? d - c0 : 16;
            const __mmask16 m = nc == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nc) - 1u);
            __m512 r[16], t[16];
            #pragma GCC unroll 16
            for (int u = 0; u < 16; u++)
                r[u] = u < nu ? _mm512_maskz_loadu_ps(m, k + (size_t)(16 * p + u) * (size_t)ldk + c0)
                              : _mm512_setzero_ps();
            /* stage 1: pairs of rows interleaved by element; stage 2: by pairs of elements */
            #pragma GCC unroll 16
            for (int u = 0; u < 16; u += 2) {
                t[u] = _mm512_unpacklo_ps(r[u], r[u + 1]);
                t[u + 1] = _mm512_unpackhi_ps(r[u], r[u + 1]);
            }
            #pragma GCC unroll 16
            for (int u = 0; u < 16; u += 4) {
                r[u] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[u]), _mm512_castps_pd(t[u + 2])));
                r[u + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[u]), _mm512_castps_pd(t[u + 2])));
                r[u + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[u + 1]), _mm512_castps_pd(t[u + 3])));
                r[u + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[u + 1]), _mm512_castps_pd(t[u + 3])));
            }
            /* r[4a + b] now holds, in 128-bit lane L, element 4L + b of rows 4a .. 4a + 3;
             * stage 3 and 4: gather the lanes L of the four row quads */
            #pragma GCC unroll 16
            for (int b = 0; b < 4; b++) {
                const __m512 x0 = _mm512_shuffle_f32x4(r[b], r[4 + b], 0x88);      /* lanes 0, 2 of quads 0, 1 */
                const __m512 x1 = _mm512_shuffle_f32x4(r[b], r[4 + b], 0xDD);      /* lanes 1, 3 */
                const __m512 x2 = _mm512_shuffle_f32x4(r[8 + b], r[12 + b], 0x88);
                const __m512 x3 = _mm512_shuffle_f32x4(r[8 + b], r[12 + b], 0xDD);
                t[b] = _mm512_shuffle_f32x4(x0, x2, 0x88);      /* lane 0: element b */
                t[8 + b] = _mm512_shuffle_f32x4(x0, x2, 0xDD);  /* lane 2: element 8 + b */
                t[4 + b] = _mm512_shuffle_f32x4(x1, x3, 0x88);  /* lane 1: element 4 + b */
                t[12 + b] = _mm512_shuffle_f32x4(x1, x3, 0xDD); /* lane 3: element 12 + b */
            }
#pragma GCC unroll 16
            for (int c = 0; c < 16; c++) /* constant indices: t stays in registers */
                if (c < nc) _mm512_storeu_ps(dst + (size_t)(c0 + c) * 16, t[c]);
        }
    }
    memset(kp + (size_t)np * PD, 0, (total - (size_t)np * PD) * sizeof *kp);
}
#else
void sp_flash_pack_k_avx512(const float *k, int ldk, int n_k, int d, float *kp) {
    sp_flash_pack_k_portable(k, ldk, n_k, d, kp);
}
#endif

void sp_flash_pack_k(const float *k, int ldk, int n_k, int d, float *kp) {
    if (sp_cpu_detect() >= SP_CPU_AVX512) sp_flash_pack_k_avx512(k, ldk, n_k, d, kp);
    else sp_flash_pack_k_portable(k, ldk, n_k, d, kp);
}

void sp_flash_rows(const sp_attn_head *h, const float *kp, const float *bias, int i0, int i1, sp_flash_tile_fn fn) {
    const int d = h->d, nk = h->n_k;
    const size_t D = (size_t)d;
    const float qmul = h->scale * 1.44269504088896341f; /* scores in log2 units */
    float *qs = sp_xmalloc_aligned((size_t)QBLOCK * D, sizeof *qs);
    float *o = sp_xmalloc_aligned((size_t)QBLOCK * D, sizeof *o);
    float m[QBLOCK], l[QBLOCK];
    for (int b0 = i0; b0 < i1; b0 += QBLOCK) {
        const int nb = i1 - b0 < QBLOCK ? i1 - b0 : QBLOCK;
        for (int r = 0; r < QBLOCK; r++) {
            const float *qr = h->q + (size_t)(b0 + (r < nb ? r : nb - 1)) * (size_t)h->ldq;
            for (int c = 0; c < d; c++) qs[(size_t)r * D + (size_t)c] = qr[c] * qmul;
            m[r] = -INFINITY;
            l[r] = 0.0f;
        }
        memset(o, 0, (size_t)QBLOCK * D * sizeof *o);
        /* keys any query of the block sees: [0, end_blk) */
        int end_blk = h->causal ? h->q_offset + b0 + nb : nk;
        if (end_blk > nk) end_blk = nk;
        for (int jb = 0; jb < end_blk; jb += SP_FLASH_CHUNK) {
            sp_flash_tile t;
            t.d = d;
            t.nkc = nk - jb < SP_FLASH_CHUNK ? nk - jb : SP_FLASH_CHUNK;
            for (int p = 0; p < 4; p++) t.kpan[p] = kp + ((size_t)jb + 16 * (size_t)p) * D;
            t.rmask = NULL;
            t.v = h->v + (size_t)jb * (size_t)h->ldv;
            t.ldv = h->ldv;
            t.vidx = NULL;
            t.bias = bias ? bias + jb : NULL;
            for (int r = 0; r < SP_FLASH_ROWS; r++) t.thr[r] = -INFINITY;
            for (int r0 = 0; r0 < nb; r0 += SP_FLASH_ROWS) {
                int any = 0;
                for (int r = 0; r < SP_FLASH_ROWS; r++) {
                    int rr = r0 + r < nb ? r0 + r : nb - 1;
                    t.q[r] = qs + (size_t)(r0 + r) * D;
                    t.lim[r] = h->causal ? h->q_offset + b0 + rr + 1 - jb : SP_FLASH_CHUNK;
                    any |= t.lim[r] > 0;
                }
                if (!any) continue;
                t.m = m + r0;
                t.l = l + r0;
                t.o = o + (size_t)r0 * D;
                fn(&t);
            }
        }
        for (int r = 0; r < nb; r++) {
            int i = b0 + r;
            float *orow = h->out + (size_t)i * (size_t)h->ldo;
            if ((h->query_valid && !h->query_valid[i]) || !(l[r] > 0)) {
                memset(orow, 0, D * sizeof *orow);
                continue;
            }
            float inv = 1.0f / l[r];
            for (int c = 0; c < d; c++) orow[c] = o[(size_t)r * D + (size_t)c] * inv;
        }
    }
    free(qs);
    free(o);
}

/* Inputs the kernel handles: finite Q, K, V and |q| |k| scale log2(e) well inside fp32. */
sp_status sp_flash_check_inputs(const sp_attn_head *h, sp_error *err) {
    double nrm[3];
    return sp_flash_check_inputs_norms(h, nrm, err);
}

sp_status sp_flash_check_inputs_norms(const sp_attn_head *h, double nrm[3], sp_error *err) {
    return sp_flash_check_inputs_norms_amax(h, nrm, NULL, err);
}

sp_status sp_flash_check_inputs_norms_amax(const sp_attn_head *h, double nrm[3], float amax[2], sp_error *err) {
    /* largest row norms of the valid rows (-1: a value is not finite): 8 partial sums per row
     * (sprint_exact.h), in AVX-512 at that level; the SPRINT kernel runs this same check, so
     * flash, the baseline, pays no more for it than SPRINT does */
    const int v512 = sp_cpu_detect() >= SP_CPU_AVX512;
    double (*max_norm)(const float *, int, int, int, const unsigned char *) =
        v512 ? sp_sx_max_norm_avx512 : sp_sx_max_norm_portable;
    double (*max_norm_amax)(const float *, int, int, int, const unsigned char *, float *) =
        v512 ? sp_sx_max_norm_amax_avx512 : sp_sx_max_norm_amax_portable;
    double qn = amax ? max_norm_amax(h->q, h->n_q, h->d, h->ldq, h->query_valid, &amax[0])
                     : max_norm(h->q, h->n_q, h->d, h->ldq, h->query_valid);
    double kn = amax ? max_norm_amax(h->k, h->n_k, h->d, h->ldk, h->key_valid, &amax[1])
                     : max_norm(h->k, h->n_k, h->d, h->ldk, h->key_valid);
    double vn = max_norm(h->v, h->n_k, h->d, h->ldv, h->key_valid);
    nrm[0] = qn, nrm[1] = kn, nrm[2] = vn;
    if (qn < 0 || kn < 0 || vn < 0)
        return sp_error_set(err, SP_ERR_DATA, "attention layer %d head %d: NaN or infinite value in %s", h->layer,
                            h->head, qn < 0 ? "Q" : kn < 0 ? "K" : "V");
    if (qn * kn * fabs((double)h->scale) * 1.4426950408889634 >= 0.25 * (double)FLT_MAX ||
        vn >= 0.25 * (double)FLT_MAX / ((double)h->n_k + 1))
        return sp_error_set(err, SP_ERR_DATA, "attention layer %d head %d: scores or sums may exceed the fp32 range",
                            h->layer, h->head);
    return SP_OK;
}

static float *make_bias(const sp_attn_head *h) {
    if (!h->key_valid) return NULL;
    float *b = sp_xcalloc((size_t)h->n_k + SP_FLASH_CHUNK, sizeof *b);
    for (int j = 0; j < h->n_k; j++) b[j] = h->key_valid[j] ? 0.0f : -INFINITY;
    return b;
}

sp_status sp_flash_attention(const sp_attn_head *h, int threads, sp_cpu_level level, sp_error *err) {
    sp_status s = sp_attn_head_check(h, err);
    if (s != SP_OK) return s;
    if (h->d > SP_FLASH_MAX_D)
        return sp_error_set(err, SP_ERR_ARG, "flash attention: head dim %d > %d", h->d, SP_FLASH_MAX_D);
    s = sp_flash_check_inputs(h, err);
    if (s != SP_OK) return s;
    if (h->n_q == 0) return SP_OK;
    float *kp = sp_xmalloc_aligned(sp_flash_kpack_size(h->n_k, h->d), sizeof *kp);
    sp_flash_pack_k(h->k, h->ldk, h->n_k, h->d, kp);
    float *bias = make_bias(h);
    sp_flash_tile_fn fn = sp_flash_tile_for(level, h->d);
    sp_attn_head ha; /* V rows on 64-byte boundaries (K is packed) when the copy pays */
    float *v_al = flash_head_aligned_v(h, &ha);
    h = &ha;
    int nblk = (h->n_q + QBLOCK - 1) / QBLOCK;
    int nt = threads > 0 ? threads : omp_get_max_threads();
    if (nt > nblk) nt = nblk;
    if (nt <= 1) {
        sp_flash_rows(h, kp, bias, 0, h->n_q, fn);
    } else {
        /* blocks in reverse: with causal masks the last blocks are the longest */
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
        for (int b = nblk - 1; b >= 0; b--) {
            int i0 = b * QBLOCK, i1 = i0 + QBLOCK < h->n_q ? i0 + QBLOCK : h->n_q;
            sp_flash_rows(h, kp, bias, i0, i1, fn);
        }
    }
    free(bias);
    free(kp);
    free(v_al);
    return SP_OK;
}

/* ---- the "dense" operator ------------------------------------------------------------- */

typedef struct flash_ctx {
    sp_status (*ref_run)(sp_attn_op *op, const sp_attn_head *h, sp_error *err);
} flash_ctx;

static sp_status flash_op_run(sp_attn_op *op, const sp_attn_head *h, sp_error *err) {
    flash_ctx *cx = op->ctx;
    sp_attn_stats *st = NULL;
    sp_status s = sp_attn_op_check(op, h, &st, err);
    if (s != SP_OK) return s;
    /* The observer wants kept-key lists, non-finite inputs want the reference's message
     * with the query and key: both through the reference code. */
    if (op->observer || h->d > SP_FLASH_MAX_D || sp_flash_check_inputs(h, NULL) != SP_OK) return cx->ref_run(op, h, err);
    if (h->n_q > 0) {
        float *kp = sp_xmalloc_aligned(sp_flash_kpack_size(h->n_k, h->d), sizeof *kp);
        sp_flash_pack_k(h->k, h->ldk, h->n_k, h->d, kp);
        float *bias = make_bias(h);
        sp_attn_head ha; /* V rows on 64-byte boundaries when the copy pays, as sp_flash_attention */
        float *v_al = flash_head_aligned_v(h, &ha);
        sp_flash_rows(&ha, kp, bias, 0, h->n_q, sp_flash_tile_for(sp_cpu_detect(), h->d));
        free(bias);
        free(kp);
        free(v_al);
    }
    /* statistics exactly as the reference counts them (every visible key kept) */
    int prev_n = -1, nvalid = 0, upto = 0;
    for (int i = 0; i < h->n_q; i++) {
        int end = h->causal ? h->q_offset + i + 1 : h->n_k;
        for (; upto < end; upto++) nvalid += !h->key_valid || h->key_valid[upto];
        if (h->query_valid && !h->query_valid[i]) continue;
        int n = nvalid;
        st->queries += 1;
        st->pairs_visible += n;
        st->pairs_kept += n;
        st->pairs_mem_kept += n;
        st->exact_pass += n;
        if (prev_n >= 0) {
            int ov = prev_n < n ? prev_n : n;
            st->reuse_pairs += ov;
            st->new_fetch += n - ov;
            st->prev_kept += n;
            st->later_visible += n;
        }
        prev_n = n;
    }
    return SP_OK;
}

static void flash_destroy(sp_attn_op *op) {
    free(op->ctx);
    op->ctx = NULL;
}

sp_attn_op *sp_attn_flash_create(int n_layers, int n_heads) {
    sp_attn_op *ref = sp_attn_dense_create(1, 1);
    flash_ctx *cx = sp_xcalloc(1, sizeof *cx);
    cx->ref_run = ref->run;
    sp_attn_op_free(ref);
    sp_attn_op *op = sp_attn_op_alloc("dense", n_layers, n_heads);
    op->ctx = cx;
    op->run = flash_op_run;
    op->destroy = flash_destroy;
    return op;
}
