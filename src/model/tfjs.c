/* tfjs.c: the TensorFlow.js graph-model weights format (model.json "weightsManifest" plus
 * binary shards), as written by tensorflowjs_converter.
 *
 * model.json: {"modelTopology": {...graph...}, "weightsManifest": [group, ...]}, each group
 * {"paths": ["group1-shard1of7", ...], "weights": [{"name", "shape": [..], "dtype"}, ...]}.
 * A group's shards, concatenated in order, hold its weights back to back in manifest order,
 * little-endian, 4 bytes per float32 / int32 element. Quantised weights ("quantization") and
 * string tensors are refused: the encoder sprint runs has neither. Every count is checked
 * before it is used, so a hostile manifest can only produce an error message
 * (tests/fuzz/fuzz_tfjs_manifest.c). */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"
#include "sprint/encoder.h"

/* Plausibility limits (project choice: far above the 28 MB encoder, small enough that no
 * product below overflows 64 bits). */
#define SP_TFJS_MAX_BYTES ((uint64_t)1 << 34) /* 16 GiB of weights per group */
#define SP_TFJS_MAX_TENSORS 10000
#define SP_TFJS_MAX_PATHS 10000

typedef struct tfjs_group {
    int n_paths;
    char **paths;
    uint64_t bytes;          /* declared by its weights */
    unsigned char *data;     /* shards concatenated; NULL until read */
} tfjs_group;

struct sp_tfjs_model {
    int n;
    sp_tfjs_tensor *t;
    char **names;
    int n_groups;
    tfjs_group *g;
};

void sp_tfjs_free(sp_tfjs_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) free(m->names[i]);
    free(m->names);
    free(m->t);
    for (int i = 0; i < m->n_groups; i++) {
        for (int j = 0; j < m->g[i].n_paths; j++) free(m->g[i].paths[j]);
        free(m->g[i].paths);
        free(m->g[i].data);
    }
    free(m->g);
    free(m);
}

int sp_tfjs_count(const sp_tfjs_model *m) { return m ? m->n : 0; }

const sp_tfjs_tensor *sp_tfjs_get(const sp_tfjs_model *m, int i) {
    return m && i >= 0 && i < m->n ? &m->t[i] : NULL;
}

const sp_tfjs_tensor *sp_tfjs_find(const sp_tfjs_model *m, const char *name) {
    if (!m || !name) return NULL;
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->t[i].name, name)) return &m->t[i];
    return NULL;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = sp_xmalloc(n, 1);
    memcpy(d, s, n);
    return d;
}

/* s made printable for a one-line message: control bytes become '?', cut at n - 1 bytes. */
static const char *clean(const char *s, char *buf, size_t n) {
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++) buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    buf[i] = 0;
    return buf;
}

/* A shard path must name a file beside model.json: no directories, no "..", not empty. */
static int path_is_safe(const char *p) {
    return p[0] && strcmp(p, ".") && strcmp(p, "..") && !strchr(p, '/') && !strchr(p, '\\');
}

/* Parses one weight entry into t (name owned by names[i]). */
static sp_status parse_weight(const cJSON *w, const char *origin, int gi, int wi, sp_tfjs_tensor *t, char **name,
                              sp_error *err) {
    if (!cJSON_IsObject(w))
        return sp_error_set(err, SP_ERR_FORMAT, "%s: weightsManifest[%d].weights[%d] is not an object", origin, gi, wi);
    const cJSON *jn = cJSON_GetObjectItemCaseSensitive(w, "name");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(w, "shape");
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(w, "dtype");
    if (!cJSON_IsString(jn) || !jn->valuestring[0])
        return sp_error_set(err, SP_ERR_FORMAT, "%s: weightsManifest[%d].weights[%d] has no \"name\" string", origin,
                            gi, wi);
    char nmbuf[128], dtbuf[64];
    const char *nm = clean(jn->valuestring, nmbuf, sizeof nmbuf);
    if (!cJSON_IsArray(js))
        return sp_error_set(err, SP_ERR_FORMAT, "%s: weight '%s' has no \"shape\" array", origin, nm);
    if (!cJSON_IsString(jd))
        return sp_error_set(err, SP_ERR_FORMAT, "%s: weight '%s' has no \"dtype\" string", origin, nm);
    if (cJSON_GetObjectItemCaseSensitive(w, "quantization"))
        return sp_error_set(err, SP_ERR_FORMAT, "%s: weight '%s' is quantised; only float32/int32 weights are supported",
                            origin, nm);
    if (!strcmp(jd->valuestring, "float32")) t->dtype = SP_TFJS_FLOAT32;
    else if (!strcmp(jd->valuestring, "int32")) t->dtype = SP_TFJS_INT32;
    else
        return sp_error_set(err, SP_ERR_FORMAT, "%s: weight '%s' has dtype '%s'; expected float32 or int32", origin, nm,
                            clean(jd->valuestring, dtbuf, sizeof dtbuf));
    int nd = cJSON_GetArraySize(js);
    if (nd > SP_TFJS_MAX_DIMS)
        return sp_error_set(err, SP_ERR_FORMAT, "%s: weight '%s' has %d dimensions (at most %d supported)", origin, nm,
                            nd, SP_TFJS_MAX_DIMS);
    t->ndim = nd;
    uint64_t count = 1;
    int d = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, js) {
        double v = cJSON_IsNumber(x) ? x->valuedouble : -1;
        if (!cJSON_IsNumber(x) || v < 0 || v != (double)(int64_t)v || v > (double)SP_TFJS_MAX_BYTES)
            return sp_error_set(err, SP_ERR_FORMAT, "%s: weight '%s': shape[%d] is not an integer in [0, 2^34]", origin,
                                nm, d);
        t->shape[d++] = (int64_t)v;
        count *= (uint64_t)v; /* each factor <= 2^34 and the product is checked at every step */
        if (count > SP_TFJS_MAX_BYTES / 4)
            return sp_error_set(err, SP_ERR_FORMAT, "%s: weight '%s' declares more than 2^32 elements", origin, nm);
    }
    t->count = (size_t)count;
    t->group = gi;
    *name = xstrdup(jn->valuestring);
    t->name = *name;
    return SP_OK;
}

sp_status sp_tfjs_manifest_parse(const char *json, size_t len, const char *origin, sp_tfjs_model **out,
                                 sp_error *err) {
    *out = NULL;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return sp_error_set(err, SP_ERR_FORMAT, "%s: not valid JSON", origin);
    sp_status s = SP_OK;
    sp_tfjs_model *m = sp_xcalloc(1, sizeof *m);
    const cJSON *man = cJSON_GetObjectItemCaseSensitive(root, "weightsManifest");
    if (!cJSON_IsArray(man) || cJSON_GetArraySize(man) == 0) {
        s = sp_error_set(err, SP_ERR_FORMAT, "%s: no \"weightsManifest\" array (not a TF.js graph model)", origin);
        goto done;
    }
    /* count first, so the arrays are allocated once */
    int ng = cJSON_GetArraySize(man), nt = 0;
    const cJSON *g;
    int gi = 0;
    cJSON_ArrayForEach(g, man) {
        const cJSON *ws = cJSON_GetObjectItemCaseSensitive(g, "weights");
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(g, "paths");
        if (!cJSON_IsObject(g) || !cJSON_IsArray(ws) || !cJSON_IsArray(ps)) {
            s = sp_error_set(err, SP_ERR_FORMAT, "%s: weightsManifest[%d] needs a \"paths\" and a \"weights\" array",
                             origin, gi);
            goto done;
        }
        int np = cJSON_GetArraySize(ps), nw = cJSON_GetArraySize(ws);
        if (np > SP_TFJS_MAX_PATHS || nw > SP_TFJS_MAX_TENSORS - nt) {
            s = sp_error_set(err, SP_ERR_FORMAT, "%s: weightsManifest[%d] lists too many paths or weights", origin, gi);
            goto done;
        }
        nt += nw;
        gi++;
    }
    m->g = sp_xcalloc((size_t)ng, sizeof *m->g);
    m->n_groups = ng;
    m->t = sp_xcalloc(nt > 0 ? (size_t)nt : 1, sizeof *m->t);
    m->names = sp_xcalloc(nt > 0 ? (size_t)nt : 1, sizeof *m->names);
    gi = 0;
    cJSON_ArrayForEach(g, man) {
        tfjs_group *G = &m->g[gi];
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(g, "paths");
        const cJSON *ws = cJSON_GetObjectItemCaseSensitive(g, "weights");
        int np = cJSON_GetArraySize(ps);
        if (np == 0 && cJSON_GetArraySize(ws) > 0) {
            s = sp_error_set(err, SP_ERR_FORMAT, "%s: weightsManifest[%d] has weights but no shard paths", origin, gi);
            goto done;
        }
        G->paths = sp_xcalloc(np > 0 ? (size_t)np : 1, sizeof *G->paths);
        const cJSON *p;
        cJSON_ArrayForEach(p, ps) {
            if (!cJSON_IsString(p) || !path_is_safe(p->valuestring)) {
                s = sp_error_set(err, SP_ERR_FORMAT,
                                 "%s: weightsManifest[%d].paths[%d] is not a file name beside model.json", origin, gi,
                                 G->n_paths);
                goto done;
            }
            G->paths[G->n_paths++] = xstrdup(p->valuestring);
        }
        const cJSON *w;
        int wi = 0;
        cJSON_ArrayForEach(w, ws) {
            sp_tfjs_tensor *t = &m->t[m->n];
            s = parse_weight(w, origin, gi, wi, t, &m->names[m->n], err);
            if (s != SP_OK) goto done;
            m->n++;
            if (sp_tfjs_find(m, t->name) != t) {
                char nb[128];
                s = sp_error_set(err, SP_ERR_FORMAT, "%s: weight '%s' appears twice", origin, clean(t->name, nb, sizeof nb));
                goto done;
            }
            t->offset = (size_t)G->bytes;
            G->bytes += (uint64_t)t->count * 4;
            if (G->bytes > SP_TFJS_MAX_BYTES) {
                s = sp_error_set(err, SP_ERR_FORMAT, "%s: weightsManifest[%d] declares more than 16 GiB of weights",
                                 origin, gi);
                goto done;
            }
            wi++;
        }
        gi++;
    }
done:
    cJSON_Delete(root);
    if (s != SP_OK) {
        sp_tfjs_free(m);
        return s;
    }
    *out = m;
    return SP_OK;
}

/* Reads the shards of group G of a model in dir into one allocation of G->bytes. */
static sp_status read_group(const char *dir, int gi, tfjs_group *G, sp_error *err) {
    G->data = sp_xmalloc(G->bytes > 0 ? (size_t)G->bytes : 1, 1);
    uint64_t at = 0;
    char path[4096];
    for (int j = 0; j < G->n_paths; j++) {
        snprintf(path, sizeof path, "%s/%s", dir, G->paths[j]);
        FILE *f = NULL;
        long long size = 0;
        sp_status s = sp_open_regular(path, "weight shard ", &f, &size, err);
        if (s != SP_OK) return s;
        if ((uint64_t)size > G->bytes - at) {
            fclose(f);
            return sp_error_set(err, SP_ERR_FORMAT,
                                "%s: the shards of weightsManifest[%d] hold more than the %llu bytes its weights declare",
                                path, gi, (unsigned long long)G->bytes);
        }
        size_t got = size > 0 ? fread(G->data + at, 1, (size_t)size, f) : 0;
        fclose(f);
        if (got != (size_t)size) return sp_error_set(err, SP_ERR_IO, "%s: read error", path);
        at += (uint64_t)size;
    }
    if (at != G->bytes)
        return sp_error_set(err, SP_ERR_FORMAT,
                            "%s: the shards of weightsManifest[%d] hold %llu bytes, its weights declare %llu "
                            "(truncated or missing shard)",
                            dir, gi, (unsigned long long)at, (unsigned long long)G->bytes);
    return SP_OK;
}

sp_status sp_tfjs_load(const char *dir, sp_tfjs_model **out, sp_error *err) {
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/model.json", dir);
    char *json = NULL;
    size_t len = 0;
    sp_status s = sp_read_file(path, &json, &len, err);
    if (s != SP_OK) return s;
    sp_tfjs_model *m = NULL;
    s = sp_tfjs_manifest_parse(json, len, path, &m, err);
    free(json);
    if (s != SP_OK) return s;
    for (int gi = 0; gi < m->n_groups && s == SP_OK; gi++) s = read_group(dir, gi, &m->g[gi], err);
    if (s != SP_OK) {
        sp_tfjs_free(m);
        return s;
    }
    for (int i = 0; i < m->n; i++) m->t[i].data = m->g[m->t[i].group].data + m->t[i].offset;
    *out = m;
    return SP_OK;
}
