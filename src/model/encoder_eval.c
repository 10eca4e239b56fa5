/* encoder_eval.c: the accuracy of an attention operator on an embedding model (issue 8):
 * the cosine similarity of each sentence's embedding under the operator to its dense
 * embedding (mean, min, fraction below 0.99), the attention-output error per layer, and the
 * calibration of the onchip/oracle delta to a mean-cosine target on calibration sentences. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sprint/encoder.h"
#include "sprint/functional.h"

void sp_sentences_free(char **s, int n) {
    if (!s) return;
    for (int i = 0; i < n; i++) free(s[i]);
    free(s);
}

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Appends the trimmed bytes [a, b) of s as a sentence if not empty. */
static void push(char ***out, int *n, int *cap, const char *s, size_t a, size_t b) {
    while (a < b && s[a] == ' ') a++;
    while (b > a && s[b - 1] == ' ') b--;
    if (a == b) return;
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        char **nv = realloc(*out, (size_t)*cap * sizeof **out);
        SP_ASSERT(nv);
        *out = nv;
    }
    char *d = sp_xmalloc(b - a + 1, 1);
    memcpy(d, s + a, b - a);
    d[b - a] = 0;
    (*out)[(*n)++] = d;
}

sp_status sp_sentences_split(const char *text, size_t len, char ***out, int *n, sp_error *err) {
    *out = NULL;
    *n = 0;
    int cap = 0;
    static const char sep[] = "<|endoftext|>";
    size_t seplen = sizeof sep - 1;
    char *buf = sp_xmalloc(len + 1, 1);
    size_t pos = 0;
    while (pos <= len) {
        /* one story: [pos, end) */
        size_t end = pos;
        while (end < len && !(end + seplen <= len && !memcmp(text + end, sep, seplen))) end++;
        /* collapse whitespace runs to one space, trim */
        size_t m = 0;
        for (size_t i = pos; i < end; i++) {
            if (is_space((unsigned char)text[i])) {
                if (m > 0 && buf[m - 1] != ' ') buf[m++] = ' ';
            } else {
                buf[m++] = text[i];
            }
        }
        while (m > 0 && buf[m - 1] == ' ') m--;
        size_t start = 0;
        for (size_t i = 0; i < m; i++) {
            char c = buf[i];
            if (c != '.' && c != '!' && c != '?') continue;
            size_t j = i + 1;
            for (;;) { /* closing quotes: '"' or U+201D (E2 80 9D) */
                if (j < m && buf[j] == '"') j++;
                else if (j + 3 <= m && (unsigned char)buf[j] == 0xE2 &&
                         (unsigned char)buf[j + 1] == 0x80 && (unsigned char)buf[j + 2] == 0x9D)
                    j += 3;
                else break;
            }
            if (j == m || buf[j] == ' ') {
                push(out, n, &cap, buf, start, j);
                start = j;
                i = j - 1;
            }
        }
        push(out, n, &cap, buf, start, m);
        if (end >= len) break;
        pos = end + seplen;
    }
    free(buf);
    if (*n == 0) return sp_error_set(err, SP_ERR_DATA, "the text holds no sentence");
    return SP_OK;
}

void sp_encoder_corpus_free(sp_encoder_corpus *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) free(c->ids[i]);
    free(c->ids);
    free(c->len);
    memset(c, 0, sizeof *c);
}

sp_status sp_encoder_corpus_build(const sp_spm *t, char *const *sent, int n, sp_encoder_corpus *out, sp_error *err) {
    memset(out, 0, sizeof *out);
    out->ids = sp_xcalloc(n > 0 ? (size_t)n : 1, sizeof *out->ids);
    out->len = sp_xcalloc(n > 0 ? (size_t)n : 1, sizeof *out->len);
    for (int i = 0; i < n; i++) {
        int *ids = NULL, k = 0;
        sp_status s = sp_spm_encode(t, sent[i], strlen(sent[i]), &ids, &k, err);
        if (s != SP_OK) {
            sp_encoder_corpus_free(out);
            return sp_error_set(err, s, "sentence %d: %s", i + 1, err ? err->msg : "");
        }
        if (k == 0) continue;
        out->ids[out->n] = ids;
        out->len[out->n] = k;
        out->n++;
        out->tokens += k;
    }
    if (out->n == 0) return sp_error_set(err, SP_ERR_DATA, "no sentence gives any token");
    return SP_OK;
}

static double cosine(const float *a, const float *b, int d) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < d; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0.0;
}

sp_status sp_encoder_eval(const sp_encoder *e, const sp_encoder_corpus *c, sp_attn_op *op, int batch,
                          const float *dense_emb, sp_progress_fn progress, void *progress_user,
                          sp_encoder_eval_result *res, sp_error *err) {
    memset(res, 0, sizeof *res);
    if (batch < 1) return sp_error_set(err, SP_ERR_ARG, "encoder batch must be >= 1 sentence");
    const sp_encoder_info *in = sp_encoder_get_info(e);
    int d = in->d_out;
    sp_attn_op_reset_stats(op);
    sp_attn_op *dense = sp_attn_dense_create(in->n_layers, in->n_heads);
    float *emb = sp_xmalloc((size_t)batch * d, sizeof *emb);
    float *demb = sp_xmalloc((size_t)batch * d, sizeof *demb);
    sp_encoder_attn_err ae = {{0, 0}, {0, 0}};
    double t0 = sp_now_seconds(), sum = 0, mn = INFINITY;
    long below = 0;
    sp_status s = SP_OK;
    for (int b0 = 0; b0 < c->n && s == SP_OK; b0 += batch) {
        int B = c->n - b0 < batch ? c->n - b0 : batch;
        const int *const *ids = (const int *const *)(c->ids + b0);
        s = sp_encoder_embed(e, ids, c->len + b0, B, op, dense, b0, emb, &ae, err);
        if (s != SP_OK) break;
        const float *ref = demb;
        if (dense_emb) {
            ref = dense_emb + (size_t)b0 * d;
        } else {
            s = sp_encoder_embed(e, ids, c->len + b0, B, dense, NULL, b0, demb, NULL, err);
            if (s != SP_OK) break;
        }
        for (int b = 0; b < B; b++) {
            double cs = cosine(emb + (size_t)b * d, ref + (size_t)b * d, d);
            sum += cs;
            if (cs < mn) mn = cs;
            if (cs < 0.99) below++;
            int n = c->len[b0 + b] < in->max_len ? c->len[b0 + b] : in->max_len;
            res->tokens += n;
        }
        if (progress) progress(progress_user, "sentences", b0 + B, c->n);
    }
    free(emb);
    free(demb);
    sp_attn_op_free(dense);
    if (s != SP_OK) return s;
    res->sentences = c->n;
    res->cos_mean = sum / c->n;
    res->cos_min = mn;
    res->below_099 = (double)below / c->n;
    for (int l = 0; l < 2; l++) res->attn_rel_err[l] = ae.den[l] > 0 ? sqrt(ae.num[l] / ae.den[l]) : 0.0;
    res->seconds = sp_now_seconds() - t0;
    sp_attn_stats_total(op, &res->attn);
    return SP_OK;
}

/* The op of mode with policy delta (nats). */
static sp_status op_with_delta(const sp_config *cfg, const char *mode, const char *kind, int L, int H, double delta,
                               sp_attn_op **op, sp_error *err) {
    sp_thresholds *t = sp_thresholds_new(kind, L, H, 0);
    t->delta = delta;
    sp_op_request req = {.mode = mode, .cfg = cfg, .thresholds = t};
    sp_status s = sp_attn_op_create(&req, L, H, op, err);
    sp_thresholds_free(t);
    return s;
}

sp_status sp_encoder_calibrate(const sp_encoder *e, const sp_encoder_corpus *c, const sp_config *cfg,
                               const char *mode, double target, int batch, sp_progress_fn progress,
                               void *progress_user, sp_thresholds **out, sp_error *err) {
    *out = NULL;
    const char *kind = cfg->policy_kind;
    if (strcmp(kind, "onchip") && strcmp(kind, "oracle"))
        return sp_error_set(err, SP_ERR_CONFIG,
                            "encoder calibration supports policy.kind onchip or oracle (delta), not '%s'", kind);
    if (!(target > 0 && target <= 1))
        return sp_error_set(err, SP_ERR_ARG, "cosine target %g outside (0, 1]", target);
    const sp_encoder_info *in = sp_encoder_get_info(e);
    int L = in->n_layers, H = in->n_heads, d = in->d_out;
    /* dense embeddings once */
    float *dense_emb = sp_xmalloc((size_t)c->n * d, sizeof *dense_emb);
    sp_attn_op *dense = sp_attn_dense_create(L, H);
    sp_status s = SP_OK;
    for (int b0 = 0; b0 < c->n && s == SP_OK; b0 += batch) {
        int B = c->n - b0 < batch ? c->n - b0 : batch;
        s = sp_encoder_embed(e, (const int *const *)(c->ids + b0), c->len + b0, B, dense, NULL, b0,
                             dense_emb + (size_t)b0 * d, NULL, err);
    }
    sp_attn_op_free(dense);
    int iters = (int)cfg->policy_calib_iters;
    double lo = 0.0, hi = 32.0; /* the delta range of calibrate.c */
    for (int it = 0; it < iters && s == SP_OK; it++) {
        double mid = 0.5 * (lo + hi);
        sp_attn_op *op = NULL;
        s = op_with_delta(cfg, mode, kind, L, H, mid, &op, err);
        if (s != SP_OK) break;
        sp_encoder_eval_result r;
        s = sp_encoder_eval(e, c, op, batch, dense_emb, NULL, NULL, &r, err);
        sp_attn_op_free(op);
        if (s != SP_OK) break;
        if (r.cos_mean >= target) hi = mid;
        else lo = mid;
        if (progress) progress(progress_user, "calibration evals", it + 1, iters);
    }
    free(dense_emb);
    if (s != SP_OK) return s;
    sp_thresholds *t = sp_thresholds_new(kind, L, H, 0);
    t->delta = hi;
    snprintf(t->mode, sizeof t->mode, "%s", mode);
    t->calib_stories = c->n;
    *out = t;
    return SP_OK;
}
