/* eval.c: the evaluation corpus (stories split at <|endoftext|>) and next-token evaluation
 * (mean negative log-likelihood, perplexity, top-1 accuracy) with attention through an op.
 *
 * Windows: a story of len tokens has len - 1 targets. Window w covers inputs [s, s + W) with
 * s = w * W and predicts targets s + 1 .. s + W (clipped to the story), so each target is
 * predicted exactly once and each window is an independent sequence at positions 0..W-1
 * (no context is carried across windows, as in a fixed-context evaluation). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/model_internal.h"
#include "model/pool.h"

sp_status sp_open_regular(const char *path, const char *what, FILE **fp, long long *size, sp_error *err) {
    return sp_fopen_regular(path, what, "rb", fp, size, err);
}

sp_status sp_read_file(const char *path, char **text, size_t *len, sp_error *err) {
    *text = NULL;
    *len = 0;
    FILE *f;
    long long size;
    sp_status s = sp_open_regular(path, "", &f, &size, err);
    if (s != SP_OK) return s;
    size_t n = (size_t)size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return sp_error_set(err, SP_ERR_NOMEM, "cannot allocate %zu bytes for %s", n + 1, path);
    }
    size_t got = fread(buf, 1, n, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != n) {
        free(buf);
        return sp_error_set(err, SP_ERR_IO, "cannot read %s: read %zu of %zu bytes", path, got, n);
    }
    buf[n] = 0;
    *text = buf;
    *len = n;
    return SP_OK;
}

void sp_corpus_free(sp_corpus *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) free(c->tokens[i]);
    free(c->tokens);
    free(c->len);
    memset(c, 0, sizeof *c);
}

static int is_space(char ch) { return ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t' || ch == '\f' || ch == '\v'; }

/* Start of the next "<|endoftext|>" in [p, end), or end. */
static const char *find_sep(const char *p, const char *end) {
    static const char sep[] = "<|endoftext|>";
    size_t sl = sizeof sep - 1;
    while ((size_t)(end - p) >= sl) {
        const char *hit = memchr(p, '<', (size_t)(end - p) - sl + 1);
        if (!hit) break;
        if (!memcmp(hit, sep, sl)) return hit;
        p = hit + 1;
    }
    return end;
}

sp_status sp_corpus_from_text(const sp_tokenizer *t, const char *text, size_t len, int max_stories, sp_corpus *out,
                              sp_error *err) {
    memset(out, 0, sizeof *out);
    if (max_stories < 0) return sp_error_set(err, SP_ERR_ARG, "corpus: max_stories %d < 0", max_stories);
    const char *p = text, *end = text + len;
    int cap = 16;
    out->tokens = sp_xmalloc((size_t)cap, sizeof *out->tokens);
    out->len = sp_xmalloc((size_t)cap, sizeof *out->len);
    while (p <= end && (max_stories == 0 || out->n < max_stories)) {
        const char *sep = find_sep(p, end);
        const char *a = p, *b = sep;
        while (a < b && is_space(*a)) a++;
        while (b > a && is_space(b[-1])) b--;
        if (b > a) {
            int *tok = NULL, nt = 0;
            sp_status s = sp_tokenizer_encode(t, a, (size_t)(b - a), 1, 0, &tok, &nt, err);
            if (s != SP_OK) {
                /* name the story: rewrite the message with the offset into the text */
                char msg[sizeof err->msg];
                snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
                int story = out->n + 1;
                sp_corpus_free(out);
                return sp_error_set(err, s, "story %d (starting at byte %zu of the text): %s", story, (size_t)(a - text), msg);
            }
            if (out->n == cap) {
                cap *= 2;
                int **nt2 = realloc(out->tokens, (size_t)cap * sizeof *nt2);
                int *nl2 = realloc(out->len, (size_t)cap * sizeof *nl2);
                SP_ASSERT(nt2 && nl2);
                out->tokens = nt2;
                out->len = nl2;
            }
            out->tokens[out->n] = tok;
            out->len[out->n] = nt;
            out->total_targets += nt - 1;
            out->n++;
        }
        if (sep == end) break;
        p = sep + 13;
    }
    if (out->n == 0) {
        sp_corpus_free(out);
        return sp_error_set(err, SP_ERR_DATA, "empty text: no story left after splitting at <|endoftext|> and trimming");
    }
    return SP_OK;
}

/* Negative log-likelihood and top-1 hit of positions [i * NLL_CHUNK, ...) of one window. */
#define NLL_CHUNK 32
typedef struct nll_job {
    const float *logits; /* (n, V) */
    int V, n;
    const int *targets;  /* (n) */
    double *nll;         /* (n) */
    int *hit;            /* (n) */
} nll_job;

static void nll_chunk(void *ctx, int i) {
    const nll_job *j = ctx;
    int end = (i + 1) * NLL_CHUNK < j->n ? (i + 1) * NLL_CHUNK : j->n;
    for (int t = i * NLL_CHUNK; t < end; t++) {
        const float *lr = j->logits + (size_t)t * j->V;
        int arg = 0;
        float mx = lr[0];
        for (int v = 1; v < j->V; v++)
            if (lr[v] > mx) mx = lr[v], arg = v;
        double se = 0.0;
        for (int v = 0; v < j->V; v++) se += exp((double)lr[v] - (double)mx);
        j->nll[t] = log(se) + (double)mx - (double)lr[j->targets[t]];
        j->hit[t] = arg == j->targets[t];
    }
}

/* Fills res from the sums of an evaluation that started at t0 (sp_now_seconds): NLL and
 * perplexity per predicted token, top-1 accuracy, speed, and the operator's statistics. Used by
 * the prefill (sp_eval_corpus) and decode (sp_eval_corpus_decode) paths. */
void sp_eval_result_finish(sp_eval_result *res, int stories, long ntok, double nll_sum, long hits, double t0,
                           const sp_attn_op *op) {
    res->seconds = sp_now_seconds() - t0;
    res->stories = stories;
    res->tokens = ntok;
    res->nll_sum = nll_sum;
    res->nll = ntok ? nll_sum / (double)ntok : 0.0;
    res->ppl = exp(res->nll);
    res->top1 = ntok ? (double)hits / (double)ntok : 0.0;
    res->tokens_per_s = res->seconds > 0 ? (double)ntok / res->seconds : 0.0;
    sp_attn_stats_total(op, &res->attn);
}

/* The checks and resets every evaluation path starts with (prefill sp_eval_corpus, decode
 * sp_eval_corpus_decode): res zeroed, the window (o->window, 0 = the model's context) checked
 * into *W, an empty corpus refused, the operator's statistics reset. */
sp_status sp_eval_begin(const sp_model *m, const sp_corpus *c, sp_attn_op *op, const sp_eval_opts *o,
                        sp_eval_result *res, int *W, sp_error *err) {
    memset(res, 0, sizeof *res);
    const sp_model_info *p = &m->info;
    *W = o->window ? o->window : p->seq_len;
    if (*W < 1 || *W > p->seq_len)
        return sp_error_set(err, SP_ERR_ARG, "evaluation window %d outside [1, %d] (the model's context length)", *W,
                            p->seq_len);
    if (c->n <= 0) return sp_error_set(err, SP_ERR_DATA, "empty corpus: no story to evaluate");
    sp_attn_op_reset_stats(op);
    return SP_OK;
}

sp_status sp_eval_corpus(const sp_model *m, const sp_corpus *c, sp_attn_op *op, const sp_eval_opts *o,
                         sp_eval_result *res, sp_error *err) {
    const sp_model_info *p = &m->info;
    sp_eval_opts def = {0};
    if (!o) o = &def;
    int W;
    sp_status s0 = sp_eval_begin(m, c, op, o, res, &W, err);
    if (s0 != SP_OK) return s0;
    int V = p->vocab_size;
    /* buffers follow the work requested: the longest window actually evaluated, not the
     * model's context (a header may claim 2^20 positions for a story of 50 tokens) */
    int Wa = 1;
    for (int i = 0; i < c->n; i++)
        if (c->len[i] - 1 > Wa) Wa = c->len[i] - 1 < W ? c->len[i] - 1 : W;
    sp_status s = sp_alloc_check((double)Wa * V * sizeof(float), "the logits of one evaluation window", err);
    if (s != SP_OK) return s;
    float *logits = malloc((size_t)Wa * (size_t)V * sizeof(float)); /* (Wa, vocab) */
    if (!logits)
        return sp_error_set(err, SP_ERR_NOMEM, "cannot allocate %.3g GiB for the logits of a %d-position window",
                            (double)Wa * V * 4 / 1073741824.0, Wa);
    double *tnll = sp_xmalloc((size_t)Wa, sizeof *tnll); /* (Wa) NLL per position */
    int *thit = sp_xmalloc((size_t)Wa, sizeof *thit);    /* (Wa) argmax == target */
    int nthreads = o->threads > 0 ? o->threads : sp_pool_default_threads();
    double t0 = sp_now_seconds();
    long long seq_id = 0;
    double nll_sum = 0.0;
    long hits = 0, ntok = 0;
    for (int i = 0; i < c->n && s == SP_OK; i++) {
        const int *tok = c->tokens[i];
        int len = c->len[i];
        for (int st = 0; st + 1 < len && s == SP_OK; st += W) {
            int n = len - 1 - st < W ? len - 1 - st : W; /* inputs [st, st + n), targets st+1 .. st+n */
            SP_ASSERT(n <= Wa);
            s = sp_model_forward(m, tok + st, n, op, seq_id++, o->threads, logits, err);
            if (s != SP_OK) break;
            /* per-position NLL and hit in parallel, summed in position order (deterministic) */
            nll_job job = {.logits = logits, .V = V, .n = n, .targets = tok + st + 1, .nll = tnll, .hit = thit};
            sp_pool_run(n >= 64 ? nthreads : 1, (n + NLL_CHUNK - 1) / NLL_CHUNK, nll_chunk, &job);
            for (int t = 0; t < n; t++) {
                nll_sum += tnll[t];
                hits += thit[t];
            }
            ntok += n;
        }
        if (o->progress) o->progress(o->progress_user, "stories", i + 1, c->n);
    }
    free(logits);
    free(tnll);
    free(thit);
    if (s != SP_OK) return s;
    sp_eval_result_finish(res, c->n, ntok, nll_sum, hits, t0, op);
    return SP_OK;
}
