/* qkv.c: the user's own Q/K/V as a workload (issue 8): a tensor set read from safetensors or a
 * directory of .npy files (tensorfile.c), run through the functional operator with the
 * simulator attached exactly as the real-model traces are (trace.c), and the capture of the
 * Q/K/V a native model run hands to its operator, so the round trip (capture, save, load, run)
 * reproduces the native masks and cycles bit for bit. Layout: docs/formats.md. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sprint/functional.h"
#include "sprint/qkv.h"

/* Bounds on a set's shape: generous, and they keep every index product inside int64. */
#define QKV_MAX_LAYERS 4096
#define QKV_MAX_HEADS 4096
#define QKV_MAX_D 65536
#define QKV_MAX_TOK (1 << 22)

sp_qkv *sp_qkv_new(int layers, int heads, int kv_heads, int d, int causal, int n_seq, const int *n_tok) {
    SP_ASSERT(layers > 0 && heads > 0 && kv_heads > 0 && heads % kv_heads == 0 && d > 0 && n_seq >= 0);
    sp_qkv *q = sp_xcalloc(1, sizeof *q);
    q->layers = layers;
    q->heads = heads;
    q->kv_heads = kv_heads;
    q->d = d;
    q->causal = causal;
    q->n_seq = n_seq;
    q->seq = n_seq ? sp_xcalloc((size_t)n_seq, sizeof *q->seq) : NULL;
    for (int i = 0; i < n_seq; i++) {
        sp_qkv_seq *s = &q->seq[i];
        SP_ASSERT(n_tok[i] >= 1);
        snprintf(s->name, sizeof s->name, "%06d", i);
        s->n_tok = s->n_valid = n_tok[i];
        size_t per = (size_t)n_tok[i] * (size_t)d;
        s->q = sp_xcalloc((size_t)layers * heads * per, sizeof(float));
        s->k = sp_xcalloc((size_t)layers * kv_heads * per, sizeof(float));
        s->v = sp_xcalloc((size_t)layers * kv_heads * per, sizeof(float));
    }
    return q;
}

void sp_qkv_free(sp_qkv *q) {
    if (!q) return;
    for (int i = 0; i < q->n_seq; i++) {
        free(q->seq[i].q);
        free(q->seq[i].k);
        free(q->seq[i].v);
        free(q->seq[i].valid);
    }
    free(q->seq);
    free(q);
}

/* ---- building a set from tensors -------------------------------------------------------------- */
typedef struct seq_parts {
    char name[96];
    const sp_tensor *q, *k, *v, *mask;
} seq_parts;

static int cmp_parts(const void *a, const void *b) { return strcmp(((const seq_parts *)a)->name, ((const seq_parts *)b)->name); }

static int is_float_dtype(sp_dtype t) { return t == SP_DTYPE_F32 || t == SP_DTYPE_F16 || t == SP_DTYPE_BF16 || t == SP_DTYPE_F64; }

/* A 0/1 flag tensor's values into out (numel bytes); the index of the first bad value or -1. */
static int64_t flags01(const sp_tensor *t, unsigned char *out) {
    float *f = sp_xmalloc(t->numel ? (size_t)t->numel : 1, sizeof *f);
    sp_tensor_to_f32(t, f);
    int64_t bad = -1;
    for (int64_t i = 0; i < t->numel; i++) {
        if (f[i] == 0.0f) out[i] = 0;
        else if (f[i] == 1.0f) out[i] = 1;
        else if (bad < 0) bad = i;
    }
    free(f);
    return bad;
}

/* Converts t into dst (numel floats) and checks every value is finite. */
static sp_status to_floats(const sp_tensor *t, float *dst, const char *origin, const char *what, sp_error *err) {
    sp_tensor_to_f32(t, dst);
    for (int64_t i = 0; i < t->numel; i++)
        if (!isfinite(dst[i]))
            return sp_error_set(err, SP_ERR_FORMAT, "%s: %s holds a non-finite value (%g) at element %lld (after conversion to "
                                "float)", origin, what, (double)dst[i], (long long)i);
    return SP_OK;
}

/* Moves the padding rows of every (layer, head) slab of x (n_slab slabs of T rows of d) behind
 * the tokens, keeping each group in order. */
static void reorder_rows(float *x, int n_slab, int T, int d, const unsigned char *valid, float *tmp) {
    for (int s = 0; s < n_slab; s++) {
        float *slab = x + (size_t)s * T * d;
        int o = 0;
        for (int pass = 1; pass >= 0; pass--)
            for (int t = 0; t < T; t++)
                if (valid[t] == pass) memcpy(tmp + (size_t)o++ * d, slab + (size_t)t * d, sizeof(float) * (size_t)d);
        memcpy(slab, tmp, sizeof(float) * (size_t)T * d);
    }
}

sp_status sp_qkv_from_tensors(const sp_tensor *t, int n, const char *origin, sp_qkv **out, sp_error *err) {
    *out = NULL;
    if (!origin) origin = "tensor set";
    seq_parts *parts = sp_xcalloc((size_t)n + 1, sizeof *parts);
    int np = 0, causal = -1;
    sp_status st = SP_OK;
    for (int i = 0; i < n && st == SP_OK; i++) {
        const char *name = t[i].name, *slash = strrchr(name, '/');
        const char *leaf = slash ? slash + 1 : name;
        size_t plen = slash ? (size_t)(slash - name) : 0;
        if (!strcmp(name, "causal")) {
            unsigned char f;
            if (t[i].numel != 1 || t[i].ndim > 1)
                st = sp_error_set(err, SP_ERR_FORMAT, "%s: 'causal' must be a scalar (shape [] or [1]), not %d-dimensional "
                                  "with %lld elements", origin, t[i].ndim, (long long)t[i].numel);
            else if (flags01(&t[i], &f) >= 0)
                st = sp_error_set(err, SP_ERR_FORMAT, "%s: 'causal' must be 0 (encoder) or 1 (decoder)", origin);
            else
                causal = f;
            continue;
        }
        if (slash && (plen == 0 || plen >= sizeof parts[0].name || memchr(name, '/', plen))) {
            st = sp_error_set(err, SP_ERR_FORMAT, "%s: tensor '%s': expected NAME/q, NAME/k, NAME/v or NAME/mask with a "
                              "non-empty NAME of at most %zu characters and no '/'", origin, name, sizeof parts[0].name - 1);
            break;
        }
        int which = !strcmp(leaf, "q") ? 0 : !strcmp(leaf, "k") ? 1 : !strcmp(leaf, "v") ? 2 : !strcmp(leaf, "mask") ? 3 : -1;
        if (which < 0) {
            st = sp_error_set(err, SP_ERR_FORMAT, "%s: unknown tensor '%s' (expected q, k, v, mask, each optionally under "
                              "NAME/, and causal)", origin, name);
            break;
        }
        int p;
        for (p = 0; p < np; p++)
            if (strlen(parts[p].name) == plen && !strncmp(parts[p].name, name, plen)) break;
        if (p == np) {
            memcpy(parts[np].name, name, plen);
            parts[np].name[plen] = 0;
            np++;
        }
        const sp_tensor **slot = which == 0 ? &parts[p].q : which == 1 ? &parts[p].k : which == 2 ? &parts[p].v : &parts[p].mask;
        if (*slot) st = sp_error_set(err, SP_ERR_FORMAT, "%s: tensor '%s' appears twice", origin, name);
        *slot = &t[i];
    }
    if (st == SP_OK && causal < 0)
        st = sp_error_set(err, SP_ERR_FORMAT, "%s: no 'causal' tensor: add a scalar causal = 1 (decoder, query i sees keys "
                          "0..i) or 0 (encoder)", origin);
    if (st == SP_OK && np == 0) st = sp_error_set(err, SP_ERR_FORMAT, "%s: no q/k/v tensors", origin);
    if (st != SP_OK) {
        free(parts);
        return st;
    }
    qsort(parts, (size_t)np, sizeof *parts, cmp_parts);
    /* shapes, before any allocation: every size is already bounded by the file */
    int L = 0, H = 0, KVH = 0, D = 0;
    for (int p = 0; p < np && st == SP_OK; p++) {
        seq_parts *sp = &parts[p];
        const char *sn = sp->name[0] ? sp->name : "(unnamed)";
        if (!sp->q || !sp->k || !sp->v) {
            st = sp_error_set(err, SP_ERR_FORMAT, "%s: sequence %s lacks its %s tensor", origin, sn, !sp->q ? "q" : !sp->k ? "k" : "v");
            break;
        }
        const sp_tensor *x[3] = {sp->q, sp->k, sp->v};
        for (int j = 0; j < 3 && st == SP_OK; j++) {
            if (!is_float_dtype(x[j]->dtype))
                st = sp_error_set(err, SP_ERR_FORMAT, "%s: sequence %s: %c has dtype %s (expected F32, F16, BF16 or F64)", origin,
                                  sn, "qkv"[j], sp_dtype_name(x[j]->dtype));
            else if (x[j]->ndim != 4)
                st = sp_error_set(err, SP_ERR_FORMAT, "%s: sequence %s: %c has %d dimensions (expected [layers, heads, tokens, "
                                  "head_dim])", origin, sn, "qkv"[j], x[j]->ndim);
        }
        if (st != SP_OK) break;
        const int64_t *qs = sp->q->shape, *ks = sp->k->shape, *vs = sp->v->shape;
        if (ks[0] != qs[0] || ks[2] != qs[2] || ks[3] != qs[3] || memcmp(ks, vs, 4 * sizeof *ks)) {
            st = sp_error_set(err, SP_ERR_FORMAT, "%s: sequence %s: shapes of q [%lld, %lld, %lld, %lld], k [%lld, %lld, %lld, "
                              "%lld] and v [%lld, %lld, %lld, %lld] do not match (k and v equal; layers, tokens, head_dim as q)",
                              origin, sn, (long long)qs[0], (long long)qs[1], (long long)qs[2], (long long)qs[3],
                              (long long)ks[0], (long long)ks[1], (long long)ks[2], (long long)ks[3], (long long)vs[0],
                              (long long)vs[1], (long long)vs[2], (long long)vs[3]);
            break;
        }
        if (qs[0] < 1 || qs[0] > QKV_MAX_LAYERS || qs[1] < 1 || qs[1] > QKV_MAX_HEADS || ks[1] < 1 || qs[2] < 1 ||
            qs[2] > QKV_MAX_TOK || qs[3] < 1 || qs[3] > QKV_MAX_D) {
            st = sp_error_set(err, SP_ERR_FORMAT, "%s: sequence %s: q shape [%lld, %lld, %lld, %lld] outside [1..%d layers, "
                              "1..%d heads, 1..%d tokens, 1..%d head_dim]", origin, sn, (long long)qs[0], (long long)qs[1],
                              (long long)qs[2], (long long)qs[3], QKV_MAX_LAYERS, QKV_MAX_HEADS, QKV_MAX_TOK, QKV_MAX_D);
            break;
        }
        if (qs[1] % ks[1]) {
            st = sp_error_set(err, SP_ERR_FORMAT, "%s: sequence %s: %lld query heads is not a multiple of %lld key/value heads",
                              origin, sn, (long long)qs[1], (long long)ks[1]);
            break;
        }
        if (p == 0) {
            L = (int)qs[0], H = (int)qs[1], KVH = (int)ks[1], D = (int)qs[3];
        } else if (qs[0] != L || qs[1] != H || ks[1] != KVH || qs[3] != D) {
            st = sp_error_set(err, SP_ERR_FORMAT, "%s: sequence %s has %lld layers, %lld heads, %lld kv heads, head_dim %lld; "
                              "sequence %s has %d, %d, %d, %d (all sequences must agree)", origin, sn, (long long)qs[0],
                              (long long)qs[1], (long long)ks[1], (long long)qs[3], parts[0].name[0] ? parts[0].name : "(unnamed)",
                              L, H, KVH, D);
            break;
        }
        if (sp->mask && (sp->mask->ndim != 1 || sp->mask->shape[0] != qs[2]))
            st = sp_error_set(err, SP_ERR_FORMAT, "%s: sequence %s: mask must have shape [%lld] (one 0/1 per token)", origin, sn,
                              (long long)qs[2]);
        if (st == SP_OK && sp->mask && sp->mask->dtype == SP_DTYPE_BF16)
            st = sp_error_set(err, SP_ERR_FORMAT, "%s: sequence %s: mask of dtype BF16 (expected BOOL, an integer type, F32 "
                              "or F64)", origin, sn);
    }
    if (st != SP_OK) {
        free(parts);
        return st;
    }
    int *ntok = sp_xmalloc((size_t)np, sizeof *ntok);
    for (int p = 0; p < np; p++) ntok[p] = (int)parts[p].q->shape[2];
    sp_qkv *q = sp_qkv_new(L, H, KVH, D, causal, np, ntok);
    free(ntok);
    for (int p = 0; p < np && st == SP_OK; p++) {
        sp_qkv_seq *s = &q->seq[p];
        const char *sn = parts[p].name[0] ? parts[p].name : "(unnamed)";
        snprintf(s->name, sizeof s->name, "%s", parts[p].name);
        char what[160];
        snprintf(what, sizeof what, "sequence %s: q", sn);
        st = to_floats(parts[p].q, s->q, origin, what, err);
        what[strlen(what) - 1] = 'k';
        if (st == SP_OK) st = to_floats(parts[p].k, s->k, origin, what, err);
        what[strlen(what) - 1] = 'v';
        if (st == SP_OK) st = to_floats(parts[p].v, s->v, origin, what, err);
        if (st != SP_OK || !parts[p].mask) continue;
        int T = s->n_tok;
        unsigned char *valid = sp_xmalloc((size_t)T, 1);
        int64_t bad = flags01(parts[p].mask, valid);
        if (bad >= 0) {
            free(valid);
            st = sp_error_set(err, SP_ERR_FORMAT, "%s: sequence %s: mask[%lld] is neither 0 nor 1", origin, sn, (long long)bad);
            break;
        }
        int nv = 0, suffix = 1;
        for (int i = 0; i < T; i++) {
            nv += valid[i];
            if (i && valid[i] && !valid[i - 1]) suffix = 0;
        }
        if (nv == 0) {
            free(valid);
            st = sp_error_set(err, SP_ERR_FORMAT, "%s: sequence %s: mask marks every token as padding", origin, sn);
            break;
        }
        if (!suffix) {
            float *tmp = sp_xmalloc((size_t)T * D, sizeof *tmp);
            reorder_rows(s->q, L * H, T, D, valid, tmp);
            reorder_rows(s->k, L * KVH, T, D, valid, tmp);
            reorder_rows(s->v, L * KVH, T, D, valid, tmp);
            free(tmp);
            for (int i = 0; i < T; i++) valid[i] = i < nv;
            q->reordered++;
        }
        s->n_valid = nv;
        if (nv < T) s->valid = valid;
        else free(valid);
    }
    free(parts);
    if (st != SP_OK) {
        sp_qkv_free(q);
        return st;
    }
    *out = q;
    return SP_OK;
}

sp_status sp_qkv_parse_safetensors(const void *buf, size_t len, const char *origin, sp_qkv **out, sp_error *err) {
    *out = NULL;
    sp_tensor *t = NULL;
    int n = 0;
    sp_status st = sp_safetensors_parse(buf, len, &t, &n, err);
    if (st != SP_OK) return sp_error_set(err, st, "%s: %s", origin ? origin : "safetensors", err->msg);
    st = sp_qkv_from_tensors(t, n, origin, out, err);
    free(t);
    return st;
}

/* ---- files -------------------------------------------------------------------------------- */
static sp_status read_all(const char *path, unsigned char **buf, size_t *len, sp_error *err) {
    char *text = NULL;
    sp_status st = sp_read_file(path, &text, len, err);
    *buf = (unsigned char *)text;
    return st;
}

/* A parsed .npy file of a directory set: its buffer and its tensor. */
typedef struct npy_file {
    unsigned char *buf;
} npy_file;

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a > b && !strcmp(s + a - b, suf);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Appends the .npy files of dir (relative names under prefix) to names; recurses one level. */
static sp_status list_npy(const char *root, const char *prefix, int depth, char ***names, int *n, int *cap, sp_error *err) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s%s%s", root, prefix[0] ? "/" : "", prefix);
    DIR *d = opendir(dir);
    if (!d) return sp_error_set(err, SP_ERR_IO, "cannot open directory %s: %s", dir, strerror(errno));
    sp_status st = SP_OK;
    struct dirent *e;
    while (st == SP_OK && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char rel[1024], full[4096];
        snprintf(rel, sizeof rel, "%s%s%s", prefix, prefix[0] ? "/" : "", e->d_name);
        snprintf(full, sizeof full, "%s/%s", root, rel);
        struct stat sb;
        if (stat(full, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode) && depth == 0) {
            st = list_npy(root, rel, 1, names, n, cap, err);
        } else if (S_ISREG(sb.st_mode) && ends_with(e->d_name, ".npy")) {
            if (*n == *cap) {
                *cap = *cap ? 2 * *cap : 16;
                char **nn = realloc(*names, (size_t)*cap * sizeof *nn);
                SP_ASSERT(nn);
                *names = nn;
            }
            (*names)[(*n)++] = strdup(rel);
        }
    }
    closedir(d);
    return st;
}

static sp_status load_npy_dir(const char *path, sp_qkv **out, sp_error *err) {
    char **names = NULL;
    int n = 0, cap = 0;
    sp_status st = list_npy(path, "", 0, &names, &n, &cap, err);
    if (st == SP_OK && n == 0)
        st = sp_error_set(err, SP_ERR_FORMAT, "%s: no .npy files (expected q.npy, k.npy, v.npy, causal.npy, optional mask.npy, "
                          "or NAME/q.npy ... per sequence)", path);
    if (n > 1) qsort(names, (size_t)n, sizeof *names, cmp_str);
    sp_tensor *t = n ? sp_xcalloc((size_t)n, sizeof *t) : NULL;
    npy_file *files = n ? sp_xcalloc((size_t)n, sizeof *files) : NULL;
    for (int i = 0; i < n && st == SP_OK; i++) {
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", path, names[i]);
        size_t len = 0;
        st = read_all(full, &files[i].buf, &len, err);
        if (st == SP_OK) {
            st = sp_npy_parse(files[i].buf, len, &t[i], err);
            if (st != SP_OK) st = sp_error_set(err, st, "%s: %s", full, err->msg);
        }
        size_t nl = strlen(names[i]) - 4;
        if (nl >= sizeof t[i].name) nl = sizeof t[i].name - 1;
        memcpy(t[i].name, names[i], nl);
        t[i].name[nl] = 0;
    }
    if (st == SP_OK) st = sp_qkv_from_tensors(t, n, path, out, err);
    for (int i = 0; i < n; i++) {
        free(files[i].buf);
        free(names[i]);
    }
    free(files);
    free(names);
    free(t);
    return st;
}

sp_status sp_qkv_load(const char *path, sp_qkv **out, sp_error *err) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return sp_error_set(err, SP_ERR_IO, "cannot open tensor file %s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return load_npy_dir(path, out, err);
    unsigned char *buf = NULL;
    size_t len = 0;
    sp_status st = read_all(path, &buf, &len, err);
    if (st != SP_OK) return st;
    if (len >= 6 && !memcmp(buf, "\x93NUMPY", 6))
        st = sp_error_set(err, SP_ERR_FORMAT, "%s is a single .npy file: put q.npy, k.npy, v.npy and causal.npy (optional "
                          "mask.npy) in a directory and pass the directory", path);
    else
        st = sp_qkv_parse_safetensors(buf, len, path, out, err);
    free(buf);
    return st;
}

/* ---- writing ------------------------------------------------------------------------------ */
typedef struct wt {
    char name[128];
    const char *dtype;
    int ndim;
    long long shape[4];
    const void *data;
    size_t nbytes;
} wt;

sp_status sp_qkv_save(const sp_qkv *q, const char *path, sp_error *err) {
    int cap = 4 * q->n_seq + 1, n = 0;
    wt *w = sp_xcalloc((size_t)cap, sizeof *w);
    static const unsigned char one = 1, zero = 0;
    for (int i = 0; i < q->n_seq; i++) {
        const sp_qkv_seq *s = &q->seq[i];
        const char *sep = s->name[0] ? "/" : "";
        size_t per = (size_t)s->n_tok * q->d * sizeof(float);
        const char *nm[3] = {"q", "k", "v"};
        const float *p[3] = {s->q, s->k, s->v};
        for (int j = 0; j < 3; j++) {
            wt *x = &w[n++];
            snprintf(x->name, sizeof x->name, "%s%s%s", s->name, sep, nm[j]);
            x->dtype = "F32";
            x->ndim = 4;
            x->shape[0] = q->layers;
            x->shape[1] = j ? q->kv_heads : q->heads;
            x->shape[2] = s->n_tok;
            x->shape[3] = q->d;
            x->data = p[j];
            x->nbytes = per * (size_t)q->layers * (size_t)(j ? q->kv_heads : q->heads);
        }
    }
    for (int i = 0; i < q->n_seq; i++) {
        const sp_qkv_seq *s = &q->seq[i];
        const char *sep = s->name[0] ? "/" : "";
        if (s->valid) {
            wt *x = &w[n++];
            snprintf(x->name, sizeof x->name, "%s%smask", s->name, sep);
            x->dtype = "U8";
            x->ndim = 1;
            x->shape[0] = s->n_tok;
            x->data = s->valid;
            x->nbytes = (size_t)s->n_tok;
        }
    }
    /* one-byte tensors last, so every F32 tensor starts 4-byte aligned */
    w[n++] = (wt){.name = "causal", .dtype = "U8", .ndim = 0, .data = q->causal ? &one : &zero, .nbytes = 1};
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "sprint-qkv-1");
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_AddObjectToObject(root, w[i].name);
        cJSON_AddStringToObject(o, "dtype", w[i].dtype);
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        for (int k = 0; k < w[i].ndim; k++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)w[i].shape[k]));
        cJSON *of = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + w[i].nbytes)));
        off += w[i].nbytes;
    }
    char *js = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    SP_ASSERT(js);
    size_t jl = strlen(js), padded = (jl + 7) / 8 * 8; /* 8-byte aligned data, as the reference writer */
    FILE *f = fopen(path, "wb");
    sp_status st = SP_OK;
    if (!f) {
        st = sp_error_set(err, SP_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    } else {
        unsigned char hl[8];
        for (int i = 0; i < 8; i++) hl[i] = (unsigned char)((uint64_t)padded >> (8 * i));
        fwrite(hl, 1, 8, f);
        fwrite(js, 1, jl, f);
        for (size_t i = jl; i < padded; i++) fputc(' ', f);
        for (int i = 0; i < n; i++) fwrite(w[i].data, 1, w[i].nbytes, f); /* little-endian host (x86_64) */
        if (ferror(f) | (fclose(f) != 0)) st = sp_error_set(err, SP_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    }
    free(js);
    free(w);
    return st;
}

/* ---- running a set ---------------------------------------------------------------------------- */
sp_status sp_qkv_run_op(const sp_qkv *q, sp_attn_op *op, int threads, sp_error *err) {
    int slots = q->layers * q->heads, group = q->heads / q->kv_heads;
    if (op->n_layers < q->layers || op->n_heads < q->heads)
        return sp_error_set(err, SP_ERR_ARG, "operator has %d layers x %d heads, the tensor set %d x %d", op->n_layers,
                            op->n_heads, q->layers, q->heads);
    sp_status *hst = sp_xcalloc((size_t)slots, sizeof *hst);
    sp_error *herr = sp_xcalloc((size_t)slots, sizeof *herr);
    int nthreads = threads > 0 ? threads : omp_get_max_threads();
    const int d = q->d;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int sl = 0; sl < slots; sl++) {
        int layer = sl / q->heads, head = sl % q->heads, kvh = head / group;
        int maxT = 1;
        for (int i = 0; i < q->n_seq; i++)
            if (q->seq[i].n_tok > maxT) maxT = q->seq[i].n_tok;
        float *outb = sp_xmalloc((size_t)maxT * d, sizeof *outb);
        for (int i = 0; i < q->n_seq && hst[sl] == SP_OK; i++) {
            const sp_qkv_seq *s = &q->seq[i];
            size_t T = (size_t)s->n_tok;
            sp_attn_head ah = {.layer = layer, .head = head, .kv_head = kvh, .seq_id = i, .n_q = s->n_tok, .n_k = s->n_tok,
                               .d = d, .q = s->q + ((size_t)layer * q->heads + head) * T * d,
                               .k = s->k + ((size_t)layer * q->kv_heads + kvh) * T * d,
                               .v = s->v + ((size_t)layer * q->kv_heads + kvh) * T * d, .out = outb, .ldq = d, .ldk = d,
                               .ldv = d, .ldo = d, .causal = q->causal, .q_offset = 0, .key_valid = s->valid,
                               .query_valid = s->valid, .scale = (float)(1.0 / sqrt((double)d))};
            hst[sl] = op->run(op, &ah, &herr[sl]);
            if (hst[sl] != SP_OK)
                sp_error_set(&herr[sl], hst[sl], "sequence %s, layer %d, head %d: %s", s->name[0] ? s->name : "(unnamed)", layer,
                             head, herr[sl].msg);
        }
        free(outb);
    }
    sp_status st = SP_OK;
    for (int sl = 0; sl < slots && st == SP_OK; sl++)
        if (hst[sl] != SP_OK) st = sp_error_set(err, hst[sl], "%s", herr[sl].msg);
    free(hst);
    free(herr);
    return st;
}

/* Routes each record to the head instance of its (layer, head) slot: one thread per slot. */
typedef struct qsim_ctx {
    sp_sim_head **cur;
    int n_heads;
} qsim_ctx;

static void qsim_observer(void *user, const sp_query_record *rec) {
    qsim_ctx *c = user;
    sp_sim_head *h = c->cur[rec->layer * c->n_heads + rec->head];
    SP_ASSERT(h != NULL);
    sp_sim_head_query(h, rec);
}

/* One (layer, head) slot of the simulation: its sequences in order, each one head instance. */
typedef struct qslot {
    sp_design_result res[SP_SIZE_COUNT][SP_DESIGN_COUNT];
    sp_wl_stats st;
    sp_status status;
    sp_error err;
} qslot;

sp_status sp_sim_run_qkv(const sp_config *cfg, const sp_qkv *q, const char *name, const sp_sim_opts *o, sp_wl_result *out,
                         sp_error *err) {
    double t0 = sp_now_seconds();
    memset(out, 0, sizeof *out);
    snprintf(out->wl.name, sizeof out->wl.name, "%s", name && name[0] ? name : "qkv");
    out->wl.layers = q->layers;
    out->wl.heads = q->heads;
    out->wl.d = q->d;
    out->wl.causal = q->causal;
    out->wl.synthetic = 0;
    long tok = 0, valid = 0;
    int minT = q->n_seq ? q->seq[0].n_tok : 1, maxT = 1;
    for (int i = 0; i < q->n_seq; i++) {
        tok += q->seq[i].n_tok;
        valid += q->seq[i].n_valid;
        if (q->seq[i].n_tok < minT) minT = q->seq[i].n_tok;
        if (q->seq[i].n_tok > maxT) maxT = q->seq[i].n_tok;
    }
    out->wl.seq = q->n_seq ? (int)(tok / q->n_seq) : 0; /* the mean sequence length, as for real-model traces */
    out->wl.padding = tok ? 1.0 - (double)valid / (double)tok : 0.0;
    sp_hw hw[SP_SIZE_COUNT];
    sp_status st = sp_sim_hw(cfg, hw, &out->sizes_mask, err);
    if (st != SP_OK) return st;
    for (int s = 0; s < SP_SIZE_COUNT; s++) {
        if (!(out->sizes_mask & (1u << s))) continue;
        st = sp_hw_check_head(&hw[s], minT, q->d, err);
        if (st != SP_OK) return sp_error_set(err, st, "tensor set %s: %s", out->wl.name, err->msg);
    }
    for (int s = 0; s < SP_SIZE_COUNT; s++) out->corelets[s] = hw[s].corelets;
    out->channels = hw[0].channels;
    double need = 3.0 * maxT * (double)q->d * q->layers * q->heads;
    if (need > hw[0].capacity_bytes)
        return sp_error_set(err, SP_ERR_CONFIG, "tensor set %s needs %.0f MiB of main memory for Q, K, V of one sequence, more "
                            "than memory.capacity_mib=%.0f", out->wl.name, need / 1048576.0, hw[0].capacity_bytes / 1048576.0);
    sp_attn_op *op = NULL;
    sp_error oerr = {0};
    st = sp_sim_mask_op_create(cfg, q->layers, q->heads, NULL, NULL, 0, NULL, NULL, &op, out->mask_source,
                               sizeof out->mask_source, &oerr);
    if (st != SP_OK) return sp_error_set(err, st, "tensor set %s: %s", out->wl.name, oerr.msg);
    int slots = q->layers * q->heads;
    qsim_ctx ctx = {.cur = sp_xcalloc((size_t)slots, sizeof *ctx.cur), .n_heads = q->heads};
    op->observer = qsim_observer;
    op->observer_user = &ctx;
    qslot *per = sp_xcalloc((size_t)slots, sizeof *per);
    int nthreads = o && o->threads > 0 ? o->threads : omp_get_max_threads();
    int done = 0;
    const int d = q->d, group = q->heads / q->kv_heads;
    float *outs = sp_xmalloc((size_t)nthreads * maxT * d, sizeof *outs);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int sl = 0; sl < slots; sl++) {
        int layer = sl / q->heads, head = sl % q->heads, kvh = head / group;
        float *outb = outs + (size_t)omp_get_thread_num() * maxT * d;
        for (int i = 0; i < q->n_seq && per[sl].status == SP_OK; i++) {
            const sp_qkv_seq *s = &q->seq[i];
            size_t T = (size_t)s->n_tok;
            sp_head_shape sh = {.n_k = s->n_tok, .d = d, .causal = q->causal, .n_valid = s->n_valid};
            sp_sim_head *sim = sp_sim_head_create(hw, out->sizes_mask, &sh);
            ctx.cur[sl] = sim;
            sp_attn_head ah = {.layer = layer, .head = head, .kv_head = kvh, .seq_id = i, .n_q = s->n_tok, .n_k = s->n_tok,
                               .d = d, .q = s->q + ((size_t)layer * q->heads + head) * T * d,
                               .k = s->k + ((size_t)layer * q->kv_heads + kvh) * T * d,
                               .v = s->v + ((size_t)layer * q->kv_heads + kvh) * T * d, .out = outb, .ldq = d, .ldk = d,
                               .ldv = d, .ldo = d, .causal = q->causal, .q_offset = 0, .key_valid = s->valid,
                               .query_valid = s->valid, .scale = (float)(1.0 / sqrt((double)d))};
            per[sl].status = op->run(op, &ah, &per[sl].err);
            if (per[sl].status == SP_OK)
                sp_sim_head_finish(sim, 1.0, per[sl].res, &per[sl].st);
            else
                sp_error_set(&per[sl].err, per[sl].status, "sequence %s, layer %d, head %d: %s",
                             s->name[0] ? s->name : "(unnamed)", layer, head, per[sl].err.msg);
            ctx.cur[sl] = NULL;
            sp_sim_head_free(sim);
        }
#pragma omp critical(sp_qkv_progress)
        {
            done++;
            if (o && o->progress) o->progress(o->progress_user, "heads", done, slots);
        }
    }
    st = SP_OK;
    for (int sl = 0; sl < slots; sl++) { /* (layer, head) order, as sp_sim_observer_finish */
        if (per[sl].status != SP_OK) {
            if (st == SP_OK) st = sp_error_set(err, per[sl].status, "tensor set %s: %s", out->wl.name, per[sl].err.msg);
            continue;
        }
        for (int s = 0; s < SP_SIZE_COUNT; s++)
            for (int D = 0; D < SP_DESIGN_COUNT; D++) sp_design_result_add(&out->r[s][D], &per[sl].res[s][D], 1.0);
        const double *a = (const double *)&per[sl].st;
        double *b = (double *)&out->stats;
        for (size_t k = 0; k < sizeof per[sl].st / sizeof(double); k++) b[k] += a[k];
        if (out->n_head_stats < SP_SIM_MAX_HEAD_STATS) { /* every (layer, head), as for real models */
            sp_head_stats *hs = &out->head_stats[out->n_head_stats++];
            hs->layer = sl / q->heads, hs->head = sl % q->heads, hs->st = per[sl].st;
        } else {
            out->n_head_stats_omitted++;
        }
    }
    if (st == SP_OK)
        for (int s = 0; s < SP_SIZE_COUNT; s++)
            for (int D = 0; D < SP_DESIGN_COUNT; D++) sp_design_result_check(&out->r[s][D]);
    out->sim_heads = q->n_seq * slots;
    out->scale = 1.0;
    free(outs);
    free(per);
    free(ctx.cur);
    sp_attn_op_free(op);
    out->seconds = sp_now_seconds() - t0;
    return st;
}

/* ---- capture ------------------------------------------------------------------------------- */
typedef struct cap_ctx {
    sp_attn_op *inner;
    sp_qkv *dst;
} cap_ctx;

static void copy_rows(float *dst, const float *src, int n, int d, int ld) {
    for (int i = 0; i < n; i++) memcpy(dst + (size_t)i * d, src + (size_t)i * ld, sizeof(float) * (size_t)d);
}

static sp_status cap_run(sp_attn_op *op, const sp_attn_head *h, sp_error *err) {
    cap_ctx *c = op->ctx;
    sp_qkv *q = c->dst;
    sp_status st = sp_attn_head_check(h, err);
    if (st != SP_OK) return st;
    if (h->seq_id < 0 || h->seq_id >= q->n_seq || h->layer < 0 || h->layer >= q->layers || h->head < 0 ||
        h->head >= q->heads || h->kv_head != h->head / (q->heads / q->kv_heads) || h->d != q->d ||
        h->n_q != q->seq[h->seq_id].n_tok || h->n_k != h->n_q || h->q_offset != 0 || h->key_valid || h->query_valid ||
        h->causal != q->causal)
        return sp_error_set(err, SP_ERR_ARG, "Q/K/V capture: head (layer %d, head %d, kv_head %d, sequence %lld, %d x %d "
                            "tokens, d %d) does not fit the capture set", h->layer, h->head, h->kv_head, h->seq_id, h->n_q,
                            h->n_k, h->d);
    sp_qkv_seq *s = &q->seq[h->seq_id];
    size_t T = (size_t)s->n_tok, d = (size_t)q->d;
    copy_rows(s->q + ((size_t)h->layer * q->heads + h->head) * T * d, h->q, h->n_q, h->d, h->ldq);
    if (h->head % (q->heads / q->kv_heads) == 0) { /* the first head of its group writes the shared K/V */
        copy_rows(s->k + ((size_t)h->layer * q->kv_heads + h->kv_head) * T * d, h->k, h->n_k, h->d, h->ldk);
        copy_rows(s->v + ((size_t)h->layer * q->kv_heads + h->kv_head) * T * d, h->v, h->n_k, h->d, h->ldv);
    }
    return c->inner->run(c->inner, h, err);
}

static void cap_destroy(sp_attn_op *op) {
    cap_ctx *c = op->ctx;
    sp_attn_op_free(c->inner);
    free(c);
}

sp_attn_op *sp_qkv_capture_op_create(sp_attn_op *inner, sp_qkv *dst) {
    sp_attn_op *op = sp_attn_op_alloc("qkv-capture", inner->n_layers, inner->n_heads);
    cap_ctx *c = sp_xcalloc(1, sizeof *c);
    c->inner = inner;
    c->dst = dst;
    op->ctx = c;
    op->run = cap_run;
    op->destroy = cap_destroy;
    return op;
}

sp_status sp_qkv_capture_model(const sp_config *cfg, const sp_model *m, const sp_corpus *corpus, const sp_sim_opts *o,
                               sp_query_observer observer, void *observer_user, sp_qkv **out, sp_error *err) {
    *out = NULL;
    const sp_model_info *mi = sp_model_get_info(m);
    int W = cfg->eval_window ? (int)cfg->eval_window : mi->seq_len;
    if (W < 1 || W > mi->seq_len)
        return sp_error_set(err, SP_ERR_ARG, "evaluation window %d outside [1, %d] (the model's context length)", W, mi->seq_len);
    /* the windows sp_eval_corpus makes, in seq_id order */
    int nw = 0;
    for (int i = 0; i < corpus->n; i++)
        for (int s = 0; s + 1 < corpus->len[i]; s += W) nw++;
    if (nw == 0) return sp_error_set(err, SP_ERR_DATA, "Q/K/V capture: the corpus has no story of two tokens or more");
    int *ntok = sp_xmalloc((size_t)nw, sizeof *ntok), k = 0;
    for (int i = 0; i < corpus->n; i++)
        for (int s = 0; s + 1 < corpus->len[i]; s += W) ntok[k++] = corpus->len[i] - 1 - s < W ? corpus->len[i] - 1 - s : W;
    sp_qkv *q = sp_qkv_new(mi->n_layers, mi->n_heads, mi->n_kv_heads, mi->head_dim, 1, nw, ntok);
    free(ntok);
    /* the op of the real-model traces (trace.c): workload.mode, calibrated on o->calib, else
     * on the corpus */
    sp_attn_op *inner = NULL;
    const sp_corpus *calib = o && o->calib ? o->calib : corpus;
    sp_status st = sp_sim_mask_op_create(cfg, mi->n_layers, mi->n_heads, m, calib, 1, o ? o->progress : NULL,
                                         o ? o->progress_user : NULL, &inner, NULL, 0, err);
    if (st != SP_OK) {
        sp_qkv_free(q);
        return sp_error_set(err, st, "Q/K/V capture: %s", err->msg);
    }
    inner->observer = observer;
    inner->observer_user = observer_user;
    sp_attn_op *op = sp_qkv_capture_op_create(inner, q);
    sp_eval_opts eo = {.window = W, .threads = o ? o->threads : 0, .progress = o ? o->progress : NULL,
                       .progress_user = o ? o->progress_user : NULL};
    sp_eval_result er;
    st = sp_eval_corpus(m, corpus, op, &eo, &er, err);
    sp_attn_op_free(op);
    if (st != SP_OK) {
        sp_qkv_free(q);
        return st;
    }
    *out = q;
    return SP_OK;
}
