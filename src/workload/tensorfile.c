/* tensorfile.c: .npy and safetensors readers over memory buffers (issue 8, the user's own
 * tensors). Formats: NumPy's NEP 1 .npy (format versions 1.0-3.0) and Hugging Face's
 * safetensors (8-byte little-endian header length, JSON header, raw little-endian data).
 *
 * Every size a file declares is checked against the buffer it came in (with overflow-safe
 * arithmetic) before anything is allocated or read, so a file declaring a huge shape is
 * refused instead of allocated; the readers only point into the caller's buffer. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sprint/qkv.h"

static const char *const DTYPE_NAMES[SP_DTYPE_COUNT] = {"F32", "F16", "BF16", "F64", "BOOL",
                                                         "U8",  "I8",  "I16",  "I32", "I64"};
static const size_t DTYPE_SIZES[SP_DTYPE_COUNT] = {4, 2, 2, 8, 1, 1, 1, 2, 4, 8};

const char *sp_dtype_name(sp_dtype t) { return (unsigned)t < SP_DTYPE_COUNT ? DTYPE_NAMES[t] : "?"; }
size_t sp_dtype_size(sp_dtype t) { return (unsigned)t < SP_DTYPE_COUNT ? DTYPE_SIZES[t] : 0; }

/* The largest element count or byte size a file may declare: far above any real tensor, and
 * small enough that numel * 8 never overflows. The real bound is the buffer length. */
#define MAX_ELEMS ((int64_t)1 << 56)

/* numel of shape, or -1 when it exceeds MAX_ELEMS (checked per factor: no overflow). */
static int64_t shape_numel(const int64_t *shape, int ndim) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] == 0) n = 0;
        else if (n > MAX_ELEMS / shape[i]) return -1;
        else n *= shape[i];
    }
    return n;
}

static void shape_str(const sp_tensor *t, char *buf, size_t n) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int i = 0; i < t->ndim && o < n; i++) o += (size_t)snprintf(buf + o, n - o, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

/* ---- .npy ------------------------------------------------------------------------------------ */
/* A cursor over the header dict, a Python literal such as
 * {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } */
typedef struct pcur {
    const char *p, *end;
} pcur;

static void pskip(pcur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int peat(pcur *c, char ch) {
    pskip(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted string ('...' or "...", no escapes) into buf; 0 on a malformed one. */
static int pstring(pcur *c, char *buf, size_t n) {
    pskip(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
    char q = *c->p++;
    size_t o = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || o + 1 >= n) return 0;
        buf[o++] = *c->p++;
    }
    if (c->p >= c->end) return 0;
    c->p++;
    buf[o] = 0;
    return 1;
}

static int pword(pcur *c, const char *w) {
    pskip(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) >= n && !memcmp(c->p, w, n)) {
        c->p += n;
        return 1;
    }
    return 0;
}

/* A shape tuple: (), (n,), (a, b, ...); 0 on a malformed one. */
static int pshape(pcur *c, int64_t *shape, int *ndim) {
    *ndim = 0;
    if (!peat(c, '(')) return 0;
    for (;;) {
        if (peat(c, ')')) return 1;
        pskip(c);
        if (c->p >= c->end || *c->p < '0' || *c->p > '9') return 0;
        int64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            if (v > (MAX_ELEMS - 9) / 10) return 0; /* absurd dimension */
            v = v * 10 + (*c->p++ - '0');
        }
        if (*ndim >= SP_TENSOR_MAX_DIMS) return 0;
        shape[(*ndim)++] = v;
        if (peat(c, ',')) continue;
        if (peat(c, ')')) return 1;
        return 0;
    }
}

static int npy_descr(const char *d, sp_dtype *t, const char **why) {
    static const struct {
        const char *s;
        sp_dtype t;
    } map[] = {{"<f4", SP_DTYPE_F32}, {"<f2", SP_DTYPE_F16}, {"<f8", SP_DTYPE_F64}, {"|b1", SP_DTYPE_BOOL},
               {"|u1", SP_DTYPE_U8},  {"|i1", SP_DTYPE_I8},  {"<i2", SP_DTYPE_I16}, {"<i4", SP_DTYPE_I32},
               {"<i8", SP_DTYPE_I64}, {"<u1", SP_DTYPE_U8},  {"<i1", SP_DTYPE_I8},  {"<b1", SP_DTYPE_BOOL}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(d, map[i].s)) {
            *t = map[i].t;
            return 1;
        }
    *why = d[0] == '>' ? "big-endian data is not supported (save with dtype '<f4')"
                       : "unsupported dtype (expected <f4, <f2, <f8, |b1, |u1, |i1, <i2, <i4 or <i8)";
    return 0;
}

sp_status sp_npy_parse(const void *buf, size_t len, sp_tensor *t, sp_error *err) {
    const unsigned char *b = buf;
    memset(t, 0, sizeof *t);
    if (len < 10 || memcmp(b, "\x93NUMPY", 6))
        return sp_error_set(err, SP_ERR_FORMAT, "not a .npy file (bad magic; expected \\x93NUMPY)");
    int major = b[6];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) return sp_error_set(err, SP_ERR_FORMAT, ".npy header truncated (%zu bytes)", len);
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        hstart = 12;
    } else {
        return sp_error_set(err, SP_ERR_FORMAT, ".npy format version %d.%d is not supported (expected 1.0-3.0)", major,
                            b[7]);
    }
    if (hlen > len - hstart)
        return sp_error_set(err, SP_ERR_FORMAT, ".npy header length %zu exceeds the file (%zu bytes after the preamble)",
                            hlen, len - hstart);
    pcur c = {(const char *)b + hstart, (const char *)b + hstart + hlen};
    char descr[16] = "";
    int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0;
    if (!peat(&c, '{')) return sp_error_set(err, SP_ERR_FORMAT, ".npy header is not a dict literal");
    while (!peat(&c, '}')) {
        char key[32];
        if (!pstring(&c, key, sizeof key) || !peat(&c, ':'))
            return sp_error_set(err, SP_ERR_FORMAT, ".npy header: malformed dict near offset %ld",
                                (long)(c.p - (const char *)b));
        if (!strcmp(key, "descr")) {
            if (!pstring(&c, descr, sizeof descr))
                return sp_error_set(err, SP_ERR_FORMAT, ".npy header: 'descr' is not a simple dtype string "
                                                        "(structured dtypes are not supported)");
            have_descr = 1;
        } else if (!strcmp(key, "fortran_order")) {
            if (pword(&c, "True")) fortran = 1;
            else if (!pword(&c, "False"))
                return sp_error_set(err, SP_ERR_FORMAT, ".npy header: 'fortran_order' is not True or False");
            have_fortran = 1;
        } else if (!strcmp(key, "shape")) {
            if (!pshape(&c, t->shape, &t->ndim))
                return sp_error_set(err, SP_ERR_FORMAT, ".npy header: 'shape' is not a tuple of at most %d whole numbers",
                                    SP_TENSOR_MAX_DIMS);
            have_shape = 1;
        } else {
            return sp_error_set(err, SP_ERR_FORMAT, ".npy header: unexpected key '%s'", key);
        }
        if (!peat(&c, ',')) {
            if (!peat(&c, '}')) return sp_error_set(err, SP_ERR_FORMAT, ".npy header: expected ',' or '}'");
            break;
        }
    }
    pskip(&c);
    if (c.p != c.end) return sp_error_set(err, SP_ERR_FORMAT, ".npy header: trailing characters after the dict");
    if (!have_descr || !have_fortran || !have_shape)
        return sp_error_set(err, SP_ERR_FORMAT, ".npy header lacks '%s'",
                            !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
    const char *why = NULL;
    if (!npy_descr(descr, &t->dtype, &why))
        return sp_error_set(err, SP_ERR_FORMAT, ".npy dtype '%s': %s", descr, why);
    int big_dims = 0;
    for (int i = 0; i < t->ndim; i++) big_dims += t->shape[i] > 1;
    if (fortran && big_dims > 1)
        return sp_error_set(err, SP_ERR_FORMAT,
                            ".npy array is in Fortran (column-major) order: save a C-contiguous array "
                            "(numpy.ascontiguousarray)");
    t->numel = shape_numel(t->shape, t->ndim);
    size_t avail = len - hstart - hlen, isz = sp_dtype_size(t->dtype);
    char ss[160];
    shape_str(t, ss, sizeof ss);
    if (t->numel < 0 || (uint64_t)t->numel > avail / isz)
        return sp_error_set(err, SP_ERR_FORMAT, ".npy data truncated: shape %s of %s needs %s bytes, the file holds %zu",
                            ss, sp_dtype_name(t->dtype), t->numel < 0 ? "more than 2^56" : "more", avail);
    t->nbytes = (size_t)t->numel * isz;
    if (t->nbytes != avail)
        return sp_error_set(err, SP_ERR_FORMAT, ".npy has %zu bytes after the data of shape %s (%s): not one array",
                            avail - t->nbytes, ss, sp_dtype_name(t->dtype));
    t->data = b + hstart + hlen;
    return SP_OK;
}

/* ---- safetensors ------------------------------------------------------------------------------ */
/* The JSON header is bounded (the reference implementation's limit) so a file cannot make the
 * parser allocate more than this. */
#define ST_MAX_HEADER (100u << 20)

static int st_dtype(const char *s, sp_dtype *t) {
    for (int i = 0; i < SP_DTYPE_COUNT; i++)
        if (!strcmp(s, DTYPE_NAMES[i])) {
            *t = (sp_dtype)i;
            return 1;
        }
    return 0;
}

/* A JSON number that is a whole number in [0, 2^53]; 0 otherwise. */
static int json_uint(const cJSON *j, int64_t *v) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != floor(d)) return 0;
    *v = (int64_t)d;
    return 1;
}

static int cmp_begin(const void *a, const void *b) {
    const sp_tensor *x = a, *y = b;
    return x->data < y->data ? -1 : x->data > y->data ? 1 : 0;
}

sp_status sp_safetensors_parse(const void *buf, size_t len, sp_tensor **tensors, int *n, sp_error *err) {
    const unsigned char *b = buf;
    *tensors = NULL;
    *n = 0;
    if (len < 8) return sp_error_set(err, SP_ERR_FORMAT, "safetensors file of %zu bytes: shorter than its 8-byte header length", len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
    if (hl > len - 8)
        return sp_error_set(err, SP_ERR_FORMAT, "safetensors header length %llu exceeds the file (%zu bytes after the length)",
                            (unsigned long long)hl, len - 8);
    if (hl > ST_MAX_HEADER)
        return sp_error_set(err, SP_ERR_FORMAT, "safetensors header length %llu exceeds the %u-byte limit",
                            (unsigned long long)hl, ST_MAX_HEADER);
    if (hl < 2 || b[8] != '{')
        return sp_error_set(err, SP_ERR_FORMAT, "safetensors header does not start with '{' (not a safetensors file?)");
    const char *js = (const char *)b + 8, *jend = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(js, (size_t)hl, &jend, 0);
    if (!root) {
        const char *e = cJSON_GetErrorPtr();
        long off = e && e >= js && e <= js + hl ? (long)(e - js) : -1;
        return sp_error_set(err, SP_ERR_FORMAT, "safetensors header: invalid JSON near byte %ld of the header", off);
    }
    for (const char *p = jend; p && p < js + hl; p++)
        if (*p != ' ') {
            cJSON_Delete(root);
            return sp_error_set(err, SP_ERR_FORMAT, "safetensors header: bytes after the JSON object (only space padding is allowed)");
        }
    sp_status st = SP_OK;
    size_t data_len = len - 8 - (size_t)hl;
    const unsigned char *data = b + 8 + hl;
    int cap = cJSON_GetArraySize(root), cnt = 0;
    sp_tensor *ts = cap > 0 ? calloc((size_t)cap, sizeof *ts) : NULL;
    if (!cJSON_IsObject(root)) st = sp_error_set(err, SP_ERR_FORMAT, "safetensors header is not a JSON object");
    if (cap > 0 && !ts) st = sp_error_set(err, SP_ERR_NOMEM, "cannot allocate %d tensor descriptions", cap);
    for (const cJSON *e = root->child; e && st == SP_OK; e = e->next) {
        const char *name = e->string ? e->string : "";
        if (!strcmp(name, "__metadata__")) {
            if (!cJSON_IsObject(e)) st = sp_error_set(err, SP_ERR_FORMAT, "safetensors __metadata__ is not an object");
            for (const cJSON *m = e->child; m && st == SP_OK; m = m->next)
                if (!cJSON_IsString(m))
                    st = sp_error_set(err, SP_ERR_FORMAT, "safetensors __metadata__ value '%.60s' is not a string",
                                      m->string ? m->string : "");
            continue;
        }
        if (strlen(name) >= sizeof ts[0].name) {
            st = sp_error_set(err, SP_ERR_FORMAT, "safetensors tensor name '%.60s...' longer than %zu bytes", name,
                              sizeof ts[0].name - 1);
            break;
        }
        for (int i = 0; i < cnt; i++)
            if (!strcmp(ts[i].name, name)) st = sp_error_set(err, SP_ERR_FORMAT, "safetensors tensor '%s' appears twice", name);
        if (st != SP_OK) break;
        sp_tensor *t = &ts[cnt];
        snprintf(t->name, sizeof t->name, "%s", name);
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
        const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of)) {
            st = sp_error_set(err, SP_ERR_FORMAT, "safetensors tensor '%s': expected an object with dtype, shape, data_offsets", name);
            break;
        }
        if (!st_dtype(dt->valuestring, &t->dtype)) {
            st = sp_error_set(err, SP_ERR_FORMAT, "safetensors tensor '%s': unsupported dtype '%.20s' (expected F32, F16, BF16, "
                              "F64, BOOL, U8, I8, I16, I32 or I64)", name, dt->valuestring);
            break;
        }
        int nd = cJSON_GetArraySize(sh);
        if (nd > SP_TENSOR_MAX_DIMS) {
            st = sp_error_set(err, SP_ERR_FORMAT, "safetensors tensor '%s': %d dimensions (at most %d)", name, nd, SP_TENSOR_MAX_DIMS);
            break;
        }
        t->ndim = 0;
        for (const cJSON *d = sh->child; d; d = d->next)
            if (!json_uint(d, &t->shape[t->ndim++])) {
                st = sp_error_set(err, SP_ERR_FORMAT, "safetensors tensor '%s': shape holds a value that is not a whole number >= 0", name);
                break;
            }
        if (st != SP_OK) break;
        int64_t beg, end;
        if (cJSON_GetArraySize(of) != 2 || !json_uint(of->child, &beg) || !json_uint(of->child->next, &end) || end < beg) {
            st = sp_error_set(err, SP_ERR_FORMAT, "safetensors tensor '%s': data_offsets is not [begin, end] with 0 <= begin <= end", name);
            break;
        }
        if ((uint64_t)end > data_len) {
            st = sp_error_set(err, SP_ERR_FORMAT, "safetensors tensor '%s': data_offsets [%lld, %lld] beyond the %zu data bytes "
                              "(truncated file?)", name, (long long)beg, (long long)end, data_len);
            break;
        }
        t->numel = shape_numel(t->shape, t->ndim);
        char ss[160];
        shape_str(t, ss, sizeof ss);
        size_t isz = sp_dtype_size(t->dtype);
        if (t->numel < 0 || (uint64_t)t->numel > (uint64_t)(end - beg) / isz || (uint64_t)t->numel * isz != (uint64_t)(end - beg)) {
            st = sp_error_set(err, SP_ERR_FORMAT, "safetensors tensor '%s': shape %s of %s does not match its %lld data bytes",
                              name, ss, sp_dtype_name(t->dtype), (long long)(end - beg));
            break;
        }
        t->data = data + beg;
        t->nbytes = (size_t)(end - beg);
        cnt++;
    }
    cJSON_Delete(root);
    if (st == SP_OK && cnt > 1) {
        /* the tensors must tile the data section: sorted by begin, each starts where the last ended */
        sp_tensor *sorted = malloc((size_t)cnt * sizeof *sorted);
        if (!sorted) {
            st = sp_error_set(err, SP_ERR_NOMEM, "cannot allocate %d tensor descriptions", cnt);
        } else {
            memcpy(sorted, ts, (size_t)cnt * sizeof *sorted);
            qsort(sorted, (size_t)cnt, sizeof *sorted, cmp_begin);
            for (int i = 1; i < cnt && st == SP_OK; i++) {
                const sp_tensor *a = &sorted[i - 1], *c2 = &sorted[i];
                if (c2->data < a->data + a->nbytes)
                    st = sp_error_set(err, SP_ERR_FORMAT, "safetensors tensors '%s' and '%s' overlap (data_offsets)", a->name, c2->name);
                else if (c2->data > a->data + a->nbytes)
                    st = sp_error_set(err, SP_ERR_FORMAT, "safetensors data has a gap of %zu bytes between '%s' and '%s'",
                                      (size_t)(c2->data - (a->data + a->nbytes)), a->name, c2->name);
            }
            if (st == SP_OK) {
                size_t first = (size_t)(sorted[0].data - data), last = (size_t)(sorted[cnt - 1].data - data) + sorted[cnt - 1].nbytes;
                if (first != 0 || last != data_len)
                    st = sp_error_set(err, SP_ERR_FORMAT, "safetensors data section of %zu bytes is not covered by the tensors "
                                      "(%zu unindexed bytes)", data_len, first + (data_len - last));
            }
            free(sorted);
        }
    } else if (st == SP_OK && cnt == 1 && (ts[0].data != data || ts[0].nbytes != data_len)) {
        st = sp_error_set(err, SP_ERR_FORMAT, "safetensors data section of %zu bytes is not covered by its one tensor '%s'",
                          data_len, ts[0].name);
    } else if (st == SP_OK && cnt == 0 && data_len) {
        st = sp_error_set(err, SP_ERR_FORMAT, "safetensors file holds %zu data bytes but no tensor", data_len);
    }
    if (st != SP_OK) {
        free(ts);
        return st;
    }
    *tensors = ts;
    *n = cnt;
    return SP_OK;
}

/* ---- conversion -------------------------------------------------------------------------- */
static float half_to_float(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 0) v = ldexpf((float)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexpf((float)(m | 1024), e - 25);
    return (h & 0x8000) ? -v : v;
}

void sp_tensor_to_f32(const sp_tensor *t, float *dst) {
    const unsigned char *p = t->data;
    size_t isz = sp_dtype_size(t->dtype);
    for (int64_t i = 0; i < t->numel; i++, p += isz) {
        uint64_t u = 0;
        for (size_t k = isz; k-- > 0;) u = u << 8 | p[k]; /* little-endian whatever the host */
        float f;
        switch (t->dtype) {
        case SP_DTYPE_F32: {
            uint32_t w = (uint32_t)u;
            memcpy(&f, &w, 4);
            break;
        }
        case SP_DTYPE_F16: f = half_to_float((uint16_t)u); break;
        case SP_DTYPE_BF16: {
            uint32_t w = (uint32_t)u << 16;
            memcpy(&f, &w, 4);
            break;
        }
        case SP_DTYPE_F64: {
            double d;
            memcpy(&d, &u, 8);
            f = (float)d;
            break;
        }
        case SP_DTYPE_BOOL:
        case SP_DTYPE_U8: f = (float)(uint8_t)u; break;
        case SP_DTYPE_I8: f = (float)(int8_t)(uint8_t)u; break;
        case SP_DTYPE_I16: f = (float)(int16_t)(uint16_t)u; break;
        case SP_DTYPE_I32: f = (float)(int32_t)(uint32_t)u; break;
        case SP_DTYPE_I64: f = (float)(int64_t)u; break;
        default: f = NAN; break;
        }
        dst[i] = f;
    }
}
