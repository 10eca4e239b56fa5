/* kvcache.c: the CPU decode KV cache and one decode step (sprint/decode.h). The step:
 *   1. per query head, quantise q to 8 bits (s_q, q8, sum q8);
 *   2. SPRINT: per (KV head, chunk) task, screen every key's MSBs for the group's query heads
 *      (approximate scores a) and the chunk's maximum per head;
 *   3. per task: the threshold max_j a_j - margin per head (global max over chunks, merged in
 *      chunk order), the union of the group's survivors, exact scores of the union rows,
 *      softmax partials (max, sum, weighted V sum) per head over that head's own survivors;
 *      dense: the same over every key of the chunk;
 *   4. merge the partials of every head in chunk order.
 * Reading each union row once for the whole group is how GQA saves bandwidth here: the
 * group's query heads share the KV head's keys, as they share the crossbar in the hardware. */
#define _DEFAULT_SOURCE /* madvise */
#include <math.h>
#include <omp.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"
#include "decode/kv_kernels.h"

struct sp_kv_cache {
    int n_heads, n_kv_heads, d, cap, cap16, len, group, nchunk_max;
    sp_kv_dtype dtype;
    size_t esize;        /* bytes per element of K and V */
    unsigned char *k, *v; /* (n_kv_heads, cap, d) in dtype */
    uint8_t *msb;        /* (n_kv_heads, cap16 / 16, 8 d) */
    float *kscale;       /* (n_kv_heads, cap16) */
    /* scratch of one step */
    int32_t *iota;       /* (cap16): 0, 1, 2, ... (the dense path's row list) */
    float *a;            /* (n_heads, cap16): approximate scores */
    float *cmax;         /* (n_heads, nchunk_max): chunk maxima of a */
    int32_t *idx, *bits; /* (n_kv_heads, cap16): union lists, per task at its chunk's offset */
    float *s;            /* (n_heads, cap16): exact scores, then softmax weights */
    double *part;        /* (n_heads, nchunk_max, d + 2): m, l, acc */
    float *acc;          /* (n_heads, nchunk_max, d): per-task accumulators */
    int8_t *q8;          /* (n_heads, d) */
    float *coef;         /* (n_heads) scale * s_q */
    int32_t *qsum;       /* (n_heads) */
    double *kept;        /* (n_heads, nchunk_max) survivors per head and chunk */
    double *fetched;     /* (n_kv_heads, nchunk_max) */
};

/* Zeroed memory for the big arrays, 2 MiB aligned and marked for transparent huge pages: the
 * SPRINT step gathers scattered rows (about one survivor per 4 KiB page at 10% kept), and with
 * 4 KiB pages nearly every row would cost a page walk. */
static void *big_alloc(size_t n, size_t size) {
    SP_ASSERT(size == 0 || n <= SIZE_MAX / size);
    size_t bytes = n * size, al = (size_t)2 << 20;
    bytes = (bytes + al - 1) / al * al;
    void *p = NULL;
    if (posix_memalign(&p, al, bytes ? bytes : al) != 0) SP_ASSERT(!"out of memory");
#ifdef MADV_HUGEPAGE
    (void)madvise(p, bytes, MADV_HUGEPAGE); /* advisory: failure only costs speed */
#endif
    memset(p, 0, bytes);
    return p;
}

const char *sp_kv_dtype_name(sp_kv_dtype t) {
    switch (t) {
    case SP_KV_F32: return "f32";
    case SP_KV_F16: return "f16";
    case SP_KV_BF16: return "bf16";
    }
    return "?";
}

sp_status sp_kv_cache_init(const sp_kv_cache_opts *o, sp_kv_cache **out, sp_error *err) {
    *out = NULL;
    if (o->n_kv_heads < 1 || o->n_heads < o->n_kv_heads || o->n_heads % o->n_kv_heads ||
        o->n_heads / o->n_kv_heads > SP_KV_MAXG)
        return sp_error_set(err, SP_ERR_ARG, "kv cache: %d query heads over %d KV heads: need a multiple, group <= %d",
                            o->n_heads, o->n_kv_heads, SP_KV_MAXG);
    if (o->head_dim < 16 || o->head_dim > 1024 || o->head_dim % 16)
        return sp_error_set(err, SP_ERR_ARG, "kv cache: head dimension %d is not a multiple of 16 in [16, 1024]",
                            o->head_dim);
    if (o->capacity < 1 || o->capacity > (1 << 26))
        return sp_error_set(err, SP_ERR_ARG, "kv cache: capacity %d outside [1, 2^26] tokens", o->capacity);
    if (o->dtype != SP_KV_F32 && o->dtype != SP_KV_F16 && o->dtype != SP_KV_BF16)
        return sp_error_set(err, SP_ERR_ARG, "kv cache: unknown storage type %d", (int)o->dtype);
    sp_kv_cache *c = sp_xcalloc(1, sizeof *c);
    c->n_heads = o->n_heads;
    c->n_kv_heads = o->n_kv_heads;
    c->group = o->n_heads / o->n_kv_heads;
    c->d = o->head_dim;
    c->cap = o->capacity;
    c->cap16 = (o->capacity + SP_KV_BLOCK - 1) / SP_KV_BLOCK * SP_KV_BLOCK;
    c->nchunk_max = (c->cap16 + SP_DECODE_CHUNK - 1) / SP_DECODE_CHUNK;
    c->dtype = o->dtype;
    c->esize = o->dtype == SP_KV_F32 ? 4 : 2;
    size_t Hk = (size_t)c->n_kv_heads, H = (size_t)c->n_heads, C = (size_t)c->cap16, d = (size_t)c->d;
    size_t nc = (size_t)c->nchunk_max;
    c->k = big_alloc(Hk * C, d * c->esize);
    c->v = big_alloc(Hk * C, d * c->esize);
    c->msb = big_alloc(Hk * C, d / 2);
    c->kscale = sp_xcalloc(Hk * C, sizeof(float));
    c->iota = sp_xmalloc(C, sizeof(int32_t));
    for (size_t i = 0; i < C; i++) c->iota[i] = (int32_t)i;
    c->a = sp_xmalloc(H * C, sizeof(float));
    c->cmax = sp_xmalloc(H * nc, sizeof(float));
    c->idx = sp_xmalloc(Hk * C, sizeof(int32_t));
    c->bits = sp_xmalloc(Hk * C, sizeof(int32_t));
    c->s = sp_xmalloc(H * C, sizeof(float));
    c->part = sp_xmalloc(H * nc, (d + 2) * sizeof(double));
    c->acc = sp_xmalloc(H * nc, d * sizeof(float));
    c->q8 = sp_xmalloc(H, d);
    c->coef = sp_xmalloc(H, sizeof(float));
    c->qsum = sp_xmalloc(H, sizeof(int32_t));
    c->kept = sp_xmalloc(H * nc, sizeof(double));
    c->fetched = sp_xmalloc(Hk * nc, sizeof(double));
    *out = c;
    return SP_OK;
}

void sp_kv_cache_free(sp_kv_cache *c) {
    if (!c) return;
    void *bufs[] = {c->k, c->v, c->msb, c->kscale, c->iota, c->a, c->cmax, c->idx, c->bits, c->s, c->part,
                    c->acc, c->q8, c->coef, c->qsum, c->kept, c->fetched};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(c);
}

int sp_kv_cache_len(const sp_kv_cache *c) { return c->len; }
void sp_kv_cache_reset(sp_kv_cache *c) { c->len = 0; }

double sp_kv_cache_bytes_per_token(const sp_kv_cache *c, int with_msb) {
    double b = 2.0 * c->n_kv_heads * c->d * (double)c->esize;
    if (with_msb) b += c->n_kv_heads * (c->d / 2.0 + 4.0);
    return b;
}

/* 8-bit symmetric quantisation of x (n): q8 = round(x / s), s = max|x| / 127 (1 for a zero
 * row). Returns s. */
static float quant8(const float *x, int n, int8_t *q8) {
    float mx = 0.0f;
    for (int i = 0; i < n; i++) mx = fmaxf(mx, fabsf(x[i]));
    float s = mx > 0.0f ? mx / 127.0f : 1.0f;
    for (int i = 0; i < n; i++) {
        long r = lrintf(x[i] / s);
        q8[i] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
    }
    return s;
}

sp_status sp_kv_cache_append(sp_kv_cache *c, const float *k, const float *v, sp_error *err) {
    if (c->len >= c->cap) return sp_error_set(err, SP_ERR_ARG, "kv cache: full (%d tokens)", c->cap);
    int d = c->d;
    for (int i = 0; i < c->n_kv_heads * d; i++)
        if (!isfinite(k[i]) || !isfinite(v[i]))
            return sp_error_set(err, SP_ERR_DATA, "kv cache: non-finite key or value at element %d of token %d", i,
                                c->len);
    size_t t = (size_t)c->len;
    int8_t k8[1024];
    for (int kh = 0; kh < c->n_kv_heads; kh++) {
        const float *kr = k + (size_t)kh * d, *vr = v + (size_t)kh * d;
        size_t row = (size_t)kh * c->cap16 + t;
        unsigned char *kd = c->k + row * d * c->esize, *vd = c->v + row * d * c->esize;
        for (int i = 0; i < d; i++) {
            if (c->dtype == SP_KV_F32) {
                ((float *)kd)[i] = kr[i];
                ((float *)vd)[i] = vr[i];
            } else if (c->dtype == SP_KV_F16) {
                ((uint16_t *)kd)[i] = sp_f32_to_f16(kr[i]);
                ((uint16_t *)vd)[i] = sp_f32_to_f16(vr[i]);
            } else {
                ((uint16_t *)kd)[i] = sp_f32_to_bf16(kr[i]);
                ((uint16_t *)vd)[i] = sp_f32_to_bf16(vr[i]);
            }
        }
        c->kscale[row] = quant8(kr, d, k8);
        uint8_t *blk = c->msb + ((size_t)kh * (c->cap16 / SP_KV_BLOCK) + t / SP_KV_BLOCK) * 8 * (size_t)d;
        int r = (int)(t % SP_KV_BLOCK);
        for (int p = 0; p < d / 8; p++)
            for (int j = 0; j < 4; j++) {
                unsigned lo = (unsigned)(k8[8 * p + j] + 128) >> 4, hi = (unsigned)(k8[8 * p + 4 + j] + 128) >> 4;
                blk[64 * p + 4 * r + j] = (uint8_t)(lo | hi << 4);
            }
    }
    c->len++;
    return SP_OK;
}

static const sp_kv_kernels *pick(int portable) {
    if (portable) return &sp_kv_kernels_portable;
    sp_cpu_level lv = sp_cpu_detect();
    const sp_kv_kernels *k = NULL;
    if (lv >= SP_CPU_AVX512) k = sp_kv_kernels_avx512();
    if (!k && lv >= SP_CPU_AVX2) k = sp_kv_kernels_avx2();
    return k ? k : &sp_kv_kernels_portable;
}

const char *sp_decode_level_name(int portable) { return pick(portable)->name; }

typedef struct step_ctx {
    sp_kv_cache *c;
    const sp_kv_kernels *kk;
    const sp_decode_opts *o;
    const float *q;
    int nchunk;
} step_ctx;

/* Phase 2 of SPRINT: screen chunk ch of KV head kh for its group. */
static void task_screen(step_ctx *x, int kh, int ch) {
    sp_kv_cache *c = x->c;
    int g = c->group, d = c->d, j0 = ch * SP_DECODE_CHUNK;
    int j1 = j0 + SP_DECODE_CHUNK < c->len ? j0 + SP_DECODE_CHUNK : c->len;
    int nb = (j1 - j0 + SP_KV_BLOCK - 1) / SP_KV_BLOCK;
    int h0 = kh * g;
    const uint8_t *msb = c->msb + ((size_t)kh * (c->cap16 / SP_KV_BLOCK) + (size_t)j0 / SP_KV_BLOCK) * 8 * (size_t)d;
    x->kk->screen(msb, c->kscale + (size_t)kh * c->cap16 + j0, nb, d, c->q8 + (size_t)h0 * d, c->coef + h0,
                  c->qsum + h0, g, c->a + (size_t)h0 * c->cap16 + j0, c->cap16);
    for (int h = 0; h < g; h++)
        c->cmax[(size_t)(h0 + h) * c->nchunk_max + ch] = x->kk->maxf(c->a + (size_t)(h0 + h) * c->cap16 + j0, j1 - j0);
}

/* Phase 3: exact attention of the group of KV head kh over chunk ch (its survivors for
 * SPRINT, every key for dense): partial (m, l, acc) per head. */
static void task_attend(step_ctx *x, int kh, int ch) {
    sp_kv_cache *c = x->c;
    const sp_kv_kernels *kk = x->kk;
    int g = c->group, d = c->d, j0 = ch * SP_DECODE_CHUNK, C = c->cap16;
    int j1 = j0 + SP_DECODE_CHUNK < c->len ? j0 + SP_DECODE_CHUNK : c->len;
    int h0 = kh * g, nu;
    const int32_t *idx;
    int32_t *bits = NULL;
    if (x->o->kernel == SP_DECODE_SPRINT) {
        float thr[SP_KV_MAXG];
        for (int h = 0; h < g; h++) {
            float m = -INFINITY;
            for (int k = 0; k < x->nchunk; k++) m = fmaxf(m, c->cmax[(size_t)(h0 + h) * c->nchunk_max + k]);
            thr[h] = m - x->o->margin;
        }
        int32_t *ib = c->idx + (size_t)kh * C + j0;
        bits = c->bits + (size_t)kh * C + j0;
        nu = kk->select(c->a + (size_t)h0 * C + j0, C, j1 - j0, g, thr, 0, ib, bits);
        idx = ib;
    } else {
        idx = c->iota;
        nu = j1 - j0;
    }
    size_t row0 = (size_t)kh * C + (size_t)j0;
    const unsigned char *K = c->k + row0 * d * c->esize, *V = c->v + row0 * d * c->esize;
    float *s = c->s + (size_t)h0 * C + j0;
    kk->dots(K, bits ? V : NULL, c->dtype, d, idx, nu, x->q + (size_t)h0 * d, g, x->o->scale, s, C);
    float *acc = c->acc + ((size_t)kh * c->nchunk_max + ch) * (size_t)g * d; /* this task's own */
    memset(acc, 0, (size_t)g * d * sizeof *acc);
    float l[SP_KV_MAXG], m[SP_KV_MAXG];
    for (int h = 0; h < g; h++) {
        float *sh = s + (size_t)h * C;
        int kept = nu;
        if (bits) {
            kept = 0;
            for (int i = 0; i < nu; i++) {
                if (!(bits[i] >> h & 1)) sh[i] = -INFINITY;
                else kept++;
            }
        }
        c->kept[(size_t)(h0 + h) * c->nchunk_max + ch] = kept;
        m[h] = kk->maxf(sh, nu);
        l[h] = m[h] == -INFINITY ? 0.0f : kk->expsum(sh, nu, m[h]);
    }
    c->fetched[(size_t)kh * c->nchunk_max + ch] = nu;
    kk->wsum(V, c->dtype, d, idx, nu, s, C, g, acc);
    for (int h = 0; h < g; h++) {
        double *pt = c->part + ((size_t)(h0 + h) * c->nchunk_max + ch) * (size_t)(d + 2);
        pt[0] = m[h];
        pt[1] = l[h];
        for (int i = 0; i < d; i++) pt[2 + i] = acc[(size_t)h * d + i];
    }
}

sp_status sp_decode_step(sp_kv_cache *c, const float *q, float *out, const sp_decode_opts *o,
                         sp_decode_stats *stats, sp_error *err) {
    if (c->len < 1) return sp_error_set(err, SP_ERR_ARG, "decode step: the KV cache is empty");
    if (o->kernel != SP_DECODE_DENSE && o->kernel != SP_DECODE_SPRINT)
        return sp_error_set(err, SP_ERR_ARG, "decode step: unknown kernel %d", (int)o->kernel);
    if (!(o->margin >= 0.0f) || !isfinite(o->scale) || o->threads < 0)
        return sp_error_set(err, SP_ERR_ARG, "decode step: margin %g must be >= 0, scale finite, threads >= 0",
                            (double)o->margin);
    int d = c->d, H = c->n_heads, Hk = c->n_kv_heads;
    for (int i = 0; i < H * d; i++)
        if (!isfinite(q[i])) return sp_error_set(err, SP_ERR_DATA, "decode step: non-finite query element %d", i);
    step_ctx x = {.c = c, .kk = pick(o->portable), .o = o, .q = q,
                  .nchunk = (c->len + SP_DECODE_CHUNK - 1) / SP_DECODE_CHUNK};
    if (o->kernel == SP_DECODE_SPRINT)
        for (int h = 0; h < H; h++) {
            int8_t *q8 = c->q8 + (size_t)h * d;
            float sq = quant8(q + (size_t)h * d, d, q8);
            int32_t sum = 0;
            for (int i = 0; i < d; i++) sum += q8[i];
            c->qsum[h] = sum;
            c->coef[h] = o->scale * sq;
        }
    int ntask = Hk * x.nchunk;
    int nth = o->threads > 0 ? o->threads : omp_get_max_threads();
    if (nth > ntask) nth = ntask;
#pragma omp parallel num_threads(nth)
    {
        if (o->kernel == SP_DECODE_SPRINT) {
#pragma omp for schedule(dynamic, 1)
            for (int t = 0; t < ntask; t++) task_screen(&x, t / x.nchunk, t % x.nchunk);
        }
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < ntask; t++) task_attend(&x, t / x.nchunk, t % x.nchunk);
    }
    /* merge the partials of every head in chunk order */
    for (int h = 0; h < H; h++) {
        const double *pt = c->part + (size_t)h * c->nchunk_max * (size_t)(d + 2);
        double M = -INFINITY, L = 0.0;
        for (int k = 0; k < x.nchunk; k++) M = fmax(M, pt[(size_t)k * (d + 2)]);
        double accd[1024];
        for (int i = 0; i < d; i++) accd[i] = 0.0;
        for (int k = 0; k < x.nchunk; k++) {
            const double *p = pt + (size_t)k * (d + 2);
            if (p[0] == -INFINITY) continue;
            double f = exp(p[0] - M);
            L += f * p[1];
            for (int i = 0; i < d; i++) accd[i] += f * p[2 + i];
        }
        SP_ASSERT(L > 0.0); /* the best key always survives */
        for (int i = 0; i < d; i++) out[(size_t)h * d + i] = (float)(accd[i] / L);
        if (stats) {
            stats->keys_visible += c->len;
            for (int k = 0; k < x.nchunk; k++) stats->keys_kept += c->kept[(size_t)h * c->nchunk_max + k];
        }
    }
    if (stats)
        for (int kh = 0; kh < Hk; kh++)
            for (int k = 0; k < x.nchunk; k++) stats->keys_fetched += c->fetched[(size_t)kh * c->nchunk_max + k];
    return SP_OK;
}

void sp_decode_ref(const float *K, const float *V, int n, int n_heads, int n_kv_heads, int d, float scale,
                   const float *q, float *out) {
    int g = n_heads / n_kv_heads;
    double *sc = sp_xmalloc((size_t)n, sizeof *sc);
    for (int h = 0; h < n_heads; h++) {
        int kh = h / g;
        const float *qh = q + (size_t)h * d;
        double mx = -INFINITY;
        for (int j = 0; j < n; j++) {
            const float *kr = K + ((size_t)j * n_kv_heads + kh) * d;
            double acc = 0.0;
            for (int c = 0; c < d; c++) acc += (double)qh[c] * kr[c];
            sc[j] = (double)scale * acc;
            if (sc[j] > mx) mx = sc[j];
        }
        double sum = 0.0;
        for (int j = 0; j < n; j++) sum += (sc[j] = exp(sc[j] - mx));
        for (int c = 0; c < d; c++) {
            double acc = 0.0;
            for (int j = 0; j < n; j++) acc += sc[j] * V[((size_t)j * n_kv_heads + kh) * d + c];
            out[(size_t)h * d + c] = (float)(acc / sum);
        }
    }
    free(sc);
}
