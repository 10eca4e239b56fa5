/* helpers.c: shared test utilities. */
#define _POSIX_C_SOURCE 200809L
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sprint/attention.h"
#include "sprint/common.h"
#include "sprint/model.h"

const char *th_shared_path(const char *rel, char *buf, size_t n) {
    char dir[2048];
    if (!sp_shared_find(rel, dir, sizeof dir)) return NULL;
    snprintf(buf, n, "%s/%s", dir, rel);
    return buf;
}

const char *th_temp_file(const void *data, size_t len) {
    static char paths[16][64];
    static int next = 0;
    char *p = paths[next++ % 16];
    snprintf(p, 64, "/tmp/sprint-test-XXXXXX");
    int fd = mkstemp(p);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "wb");
    if (len) fwrite(data, 1, len, f);
    fclose(f);
    return p;
}

const char *th_temp_text(const char *text) { return th_temp_file(text, strlen(text)); }

static void slurp(const char *path, char *buf, size_t n) {
    if (!buf || !n) return;
    buf[0] = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return;
    size_t r = fread(buf, 1, n - 1, f);
    buf[r] = 0;
    fclose(f);
}

int th_run_sprint(const char *args, char *out, size_t nout, char *errbuf, size_t nerr) {
    char o[64] = "/tmp/sprint-out-XXXXXX", e[64] = "/tmp/sprint-err-XXXXXX";
    int fo = mkstemp(o), fe = mkstemp(e);
    close(fo);
    close(fe);
    size_t cl = strlen(args) + 256;
    char *cmd = malloc(cl);
    snprintf(cmd, cl, "%s %s >%s 2>%s </dev/null", SP_SPRINT_EXE, args, o, e);
    int st = system(cmd);
    free(cmd);
    slurp(o, out, nout);
    slurp(e, errbuf, nerr);
    unlink(o);
    unlink(e);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

typedef struct capture_ctx {
    int layer, n_heads;
    th_head *out;
} capture_ctx;

static sp_status capture_run(sp_attn_op *op, const sp_attn_head *h, sp_error *err) {
    capture_ctx *c = op->ctx;
    (void)err;
    for (int i = 0; i < h->n_q; i++) memset(h->out + (size_t)i * h->ldo, 0, (size_t)h->d * sizeof(float));
    if (h->layer != c->layer || h->head >= 8) return SP_OK;
    th_head *t = &c->out[h->head];
    *t = (th_head){.nq = h->n_q, .nk = h->n_k, .d = h->d, .causal = h->causal, .q_offset = h->q_offset,
                   .scale = h->scale};
    t->q = malloc(sizeof(float) * (size_t)h->n_q * h->d), t->k = malloc(sizeof(float) * (size_t)h->n_k * h->d);
    t->v = malloc(sizeof(float) * (size_t)h->n_k * h->d);
    for (int i = 0; i < h->n_q; i++) memcpy(t->q + (size_t)i * h->d, h->q + (size_t)i * h->ldq, sizeof(float) * h->d);
    for (int j = 0; j < h->n_k; j++) {
        memcpy(t->k + (size_t)j * h->d, h->k + (size_t)j * h->ldk, sizeof(float) * h->d);
        memcpy(t->v + (size_t)j * h->d, h->v + (size_t)j * h->ldv, sizeof(float) * h->d);
    }
    if (h->head + 1 > c->n_heads) c->n_heads = h->head + 1;
    return SP_OK;
}

int th_capture_layer(sp_model *m, int n_tok, int layer, th_head out[8]) {
    const sp_model_info *mi = sp_model_get_info(m);
    int *tok = malloc(sizeof(int) * (size_t)n_tok);
    for (int i = 0; i < n_tok; i++) tok[i] = 1 + (i * 37 + 11) % (mi->vocab_size - 1);
    float *logits = malloc(sizeof(float) * (size_t)n_tok * mi->vocab_size);
    capture_ctx c = {.layer = layer, .out = out};
    memset(out, 0, 8 * sizeof *out);
    sp_attn_op *op = sp_attn_op_alloc("capture", mi->n_layers, mi->n_heads);
    op->ctx = &c;
    op->run = capture_run;
    sp_error err = {0};
    sp_status s = sp_model_forward(m, tok, n_tok, op, 0, 1, logits, &err);
    op->ctx = NULL;
    sp_attn_op_free(op);
    free(tok), free(logits);
    if (s != SP_OK) {
        fprintf(stderr, "th_capture_layer: %s\n", err.msg);
        abort();
    }
    return c.n_heads;
}

void th_head_free(th_head *h) {
    free(h->q), free(h->k), free(h->v);
    h->q = h->k = h->v = NULL;
}
