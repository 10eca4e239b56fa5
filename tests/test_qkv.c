/* test_qkv.c: are the user's own Q/K/V tensors read exactly, is every malformed .npy / safetensors
 * file refused with a one-line error (before any allocation of a declared size), and does a set
 * captured from a native run reproduce that run's masks and cycles bit for bit (issue 8)? */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"
#include "sprint/functional.h"
#include "sprint/qkv.h"

/* ---- builders ---------------------------------------------------------------------------------- */
static unsigned char g_buf[1 << 16];

/* A version-1 .npy file: preamble, the header dict padded to 64 bytes, then data. */
static size_t make_npy(const char *dict, const void *data, size_t nbytes) {
    size_t dl = strlen(dict), hl = (10 + dl + 1 + 63) / 64 * 64 - 10;
    memcpy(g_buf, "\x93NUMPY\x01\x00", 8);
    g_buf[8] = (unsigned char)(hl & 255);
    g_buf[9] = (unsigned char)(hl >> 8);
    memcpy(g_buf + 10, dict, dl);
    memset(g_buf + 10 + dl, ' ', hl - dl - 1);
    g_buf[10 + hl - 1] = '\n';
    if (nbytes) memcpy(g_buf + 10 + hl, data, nbytes);
    return 10 + hl + nbytes;
}

/* A safetensors file: 8-byte length, the JSON, then ndata bytes of data. */
static size_t make_st(const char *json, const void *data, size_t ndata) {
    size_t jl = strlen(json);
    for (int i = 0; i < 8; i++) g_buf[i] = (unsigned char)((uint64_t)jl >> (8 * i));
    memcpy(g_buf + 8, json, jl);
    if (ndata) memcpy(g_buf + 8 + jl, data, ndata);
    return 8 + jl + ndata;
}

static void npy_fails(const char *dict, size_t nbytes, const char *needle) {
    static float zeros[4096];
    size_t len = make_npy(dict, zeros, nbytes);
    sp_tensor t;
    sp_error err = {0};
    sp_status s = sp_npy_parse(g_buf, len, &t, &err);
    cr_assert_eq(s, SP_ERR_FORMAT, "%s: accepted", dict);
    cr_assert(strstr(err.msg, needle), "%s: message lacks '%s': %s", dict, needle, err.msg);
    cr_assert_null(strchr(err.msg, '\n'), "not one line: %s", err.msg);
}

static void st_fails_len(const char *json, size_t ndata, const char *needle) {
    static unsigned char zeros[4096];
    size_t len = make_st(json, zeros, ndata);
    sp_tensor *t = (sp_tensor *)1;
    int n = -1;
    sp_error err = {0};
    sp_status s = sp_safetensors_parse(g_buf, len, &t, &n, &err);
    cr_assert_eq(s, SP_ERR_FORMAT, "%s: accepted", json);
    cr_assert_null(t);
    cr_assert_eq(n, 0);
    cr_assert(strstr(err.msg, needle), "%s: message lacks '%s': %s", json, needle, err.msg);
    cr_assert_null(strchr(err.msg, '\n'), "not one line: %s", err.msg);
}

/* A tensor-set file that parses as safetensors but is refused as a Q/K/V set. */
static void set_fails(const char *json, size_t ndata, const char *needle) {
    static float data[4096];
    for (int i = 0; i < 4096; i++) data[i] = (float)(i % 7) - 3.0f;
    size_t len = make_st(json, data, ndata);
    sp_qkv *q = (sp_qkv *)1;
    sp_error err = {0};
    sp_status s = sp_qkv_parse_safetensors(g_buf, len, "x.safetensors", &q, &err);
    cr_assert_eq(s, SP_ERR_FORMAT, "%s: accepted (%s)", json, err.msg);
    cr_assert_null(q);
    cr_assert(strstr(err.msg, needle), "%s: message lacks '%s': %s", json, needle, err.msg);
    cr_assert(strstr(err.msg, "x.safetensors"), "message does not name the file: %s", err.msg);
    cr_assert_null(strchr(err.msg, '\n'), "not one line: %s", err.msg);
}

/* ---- .npy ---------------------------------------------------------------------------------------- */
Test(npy, reads_shape_dtype_and_data) {
    float v[6] = {1, 2, 3, 4, 5, -6.5f};
    size_t len = make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", v, sizeof v);
    sp_tensor t;
    sp_error err = {0};
    cr_assert_eq(sp_npy_parse(g_buf, len, &t, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(t.dtype, SP_DTYPE_F32);
    cr_assert_eq(t.ndim, 2);
    cr_assert_eq(t.shape[0], 2);
    cr_assert_eq(t.shape[1], 3);
    float out[6];
    sp_tensor_to_f32(&t, out);
    cr_assert_arr_eq(out, v, sizeof v);
    /* scalar and 1-D with a trailing comma, single-byte dtype */
    unsigned char one = 1;
    len = make_npy("{'descr': '|u1', 'fortran_order': False, 'shape': (), }", &one, 1);
    cr_assert_eq(sp_npy_parse(g_buf, len, &t, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(t.ndim, 0);
    cr_assert_eq(t.numel, 1);
    /* a 1-D array saved with fortran_order True is still contiguous */
    len = make_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (3,), }", v, 12);
    cr_assert_eq(sp_npy_parse(g_buf, len, &t, &err), SP_OK, "%s", err.msg);
}

Test(npy, malformed_files_are_refused) {
    npy_fails("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8, "big-endian");
    npy_fails("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16, "unsupported dtype");
    npy_fails("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8, "structured");
    npy_fails("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24, "Fortran");
    npy_fails("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20, "truncated");
    npy_fails("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 28, "4 bytes after the data");
    npy_fails("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1048576), }", 0, "truncated");
    npy_fails("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 0, "'shape'");
    npy_fails("{'descr': '<f4', 'shape': (2,), }", 8, "lacks 'fortran_order'");
    npy_fails("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }", 8, "fortran_order");
    npy_fails("['descr', '<f4']", 8, "not a dict");
    npy_fails("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8, "unexpected key");
    npy_fails("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} extra", 8, "trailing");
    /* magic, version, header length */
    sp_tensor t;
    sp_error err = {0};
    cr_assert_eq(sp_npy_parse("\x93NUMPX\x01\x00\x10\x00", 10, &t, &err), SP_ERR_FORMAT);
    cr_assert(strstr(err.msg, "bad magic"), "%s", err.msg);
    cr_assert_eq(sp_npy_parse("\x93NUMPY\x04\x00\x10\x00", 10, &t, &err), SP_ERR_FORMAT);
    cr_assert(strstr(err.msg, "version 4.0"), "%s", err.msg);
    cr_assert_eq(sp_npy_parse("\x93NUMPY\x01\x00\xff\xff{", 11, &t, &err), SP_ERR_FORMAT);
    cr_assert(strstr(err.msg, "header length 65535 exceeds"), "%s", err.msg);
    cr_assert_eq(sp_npy_parse("\x93NUMPY\x02\x00\xff\xff\xff\x7f", 12, &t, &err), SP_ERR_FORMAT);
    cr_assert(strstr(err.msg, "exceeds the file"), "%s", err.msg);
    cr_assert_eq(sp_npy_parse("", 0, &t, &err), SP_ERR_FORMAT);
}

Test(npy, half_and_bfloat_conversion) {
    /* F16: 1.0, -2.5, 65504 (max), 2^-24 (smallest subnormal); BF16: 1.0, -2.5 */
    uint16_t h[4] = {0x3c00, 0xc100, 0x7bff, 0x0001};
    sp_tensor t = {.dtype = SP_DTYPE_F16, .ndim = 1, .shape = {4}, .numel = 4, .data = (const unsigned char *)h, .nbytes = 8};
    float f[4];
    sp_tensor_to_f32(&t, f);
    cr_assert_eq(f[0], 1.0f);
    cr_assert_eq(f[1], -2.5f);
    cr_assert_eq(f[2], 65504.0f);
    cr_assert_eq(f[3], ldexpf(1.0f, -24));
    uint16_t b[2] = {0x3f80, 0xc020};
    sp_tensor tb = {.dtype = SP_DTYPE_BF16, .ndim = 1, .shape = {2}, .numel = 2, .data = (const unsigned char *)b, .nbytes = 4};
    sp_tensor_to_f32(&tb, f);
    cr_assert_eq(f[0], 1.0f);
    cr_assert_eq(f[1], -2.5f);
}

/* ---- safetensors ------------------------------------------------------------------------------ */
Test(safetensors, reads_tensors_and_metadata) {
    float d[6] = {1, 2, 3, 4, 5, 6};
    size_t len = make_st("{\"__metadata__\":{\"a\":\"b\"},\"x\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[8,24]},"
                         "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  ",
                         d, sizeof d);
    sp_tensor *t = NULL;
    int n = 0;
    sp_error err = {0};
    cr_assert_eq(sp_safetensors_parse(g_buf, len, &t, &n, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(t[0].name, "x");
    cr_assert_eq(t[0].shape[1], 2);
    float out[4];
    sp_tensor_to_f32(&t[0], out);
    cr_assert_eq(out[0], 3.0f);
    cr_assert_eq(out[3], 6.0f);
    free(t);
}

Test(safetensors, malformed_files_are_refused) {
    const char *x = "\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
    char j[512];
    st_fails_len("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "beyond the 4 data bytes");
    st_fails_len("{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "does not match its 8 data bytes");
    st_fails_len("{\"x\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, "unsupported dtype 'F8_E4M3'");
    st_fails_len("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "0 <= begin <= end");
    st_fails_len("{\"x\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "not a whole number");
    st_fails_len("{\"x\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,8]}}", 8,
                 "does not match");
    st_fails_len("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap");
    st_fails_len("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20, "gap of 4 bytes");
    st_fails_len("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, "not covered");
    snprintf(j, sizeof j, "{%s,%s}", x, x);
    st_fails_len(j, 8, "appears twice");
    st_fails_len("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "invalid JSON");
    st_fails_len("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", 8, "bytes after the JSON");
    st_fails_len("{\"x\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "data_offsets");
    st_fails_len("{\"__metadata__\":{\"a\":1}}", 0, "__metadata__");
    st_fails_len("[1,2]", 0, "does not start with '{'");
    /* the header length itself: beyond the file, and absurd */
    sp_tensor *t = NULL;
    int n = 0;
    sp_error err = {0};
    unsigned char big[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    cr_assert_eq(sp_safetensors_parse(big, sizeof big, &t, &n, &err), SP_ERR_FORMAT);
    cr_assert(strstr(err.msg, "header length 9223372036854775807 exceeds the file"), "%s", err.msg);
    cr_assert_eq(sp_safetensors_parse(big, 5, &t, &n, &err), SP_ERR_FORMAT);
    cr_assert(strstr(err.msg, "shorter than its 8-byte header length"), "%s", err.msg);
}

/* ---- tensor sets -------------------------------------------------------------------------------- */
/* One sequence: q [1,2,3,2] (12 floats, 48 B), k/v [1,1,3,2] (6 floats, 24 B each), causal U8. */
#define QKV_OK                                                                                          \
    "{\"q\":{\"dtype\":\"F32\",\"shape\":[1,2,3,2],\"data_offsets\":[0,48]},"                           \
    "\"k\":{\"dtype\":\"F32\",\"shape\":[1,1,3,2],\"data_offsets\":[48,72]},"                           \
    "\"v\":{\"dtype\":\"F32\",\"shape\":[1,1,3,2],\"data_offsets\":[72,96]},"

Test(qkv, reads_a_set_with_gqa_and_causal) {
    float d[25];
    for (int i = 0; i < 24; i++) d[i] = (float)i;
    ((unsigned char *)&d[24])[0] = 1;
    size_t len = make_st(QKV_OK "\"causal\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[96,97]}}", d, 97);
    sp_qkv *q = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_qkv_parse_safetensors(g_buf, len, "x", &q, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(q->layers, 1);
    cr_assert_eq(q->heads, 2);
    cr_assert_eq(q->kv_heads, 1);
    cr_assert_eq(q->d, 2);
    cr_assert_eq(q->causal, 1);
    cr_assert_eq(q->n_seq, 1);
    cr_assert_eq(q->seq[0].n_tok, 3);
    cr_assert_eq(q->seq[0].q[11], 11.0f);
    cr_assert_eq(q->seq[0].k[0], 12.0f);
    cr_assert_eq(q->seq[0].v[5], 23.0f);
    cr_assert_null(q->seq[0].valid);
    sp_qkv_free(q);
}

Test(qkv, malformed_sets_are_refused) {
    const char *causal = "\"causal\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[96,97]}}";
    char j[1024];
    set_fails(QKV_OK "\"c\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[96,97]}}", 97, "unknown tensor 'c'");
    set_fails("{\"q\":{\"dtype\":\"F32\",\"shape\":[1,2,3,2],\"data_offsets\":[0,48]},"
              "\"k\":{\"dtype\":\"F32\",\"shape\":[1,1,3,2],\"data_offsets\":[48,72]},"
              "\"v\":{\"dtype\":\"F32\",\"shape\":[1,1,3,2],\"data_offsets\":[72,96]}}", 96, "no 'causal' tensor");
    snprintf(j, sizeof j, "{\"q\":{\"dtype\":\"F32\",\"shape\":[1,2,3,2],\"data_offsets\":[0,48]},"
                          "\"k\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[48,72]},"
                          "\"v\":{\"dtype\":\"F32\",\"shape\":[1,1,3,2],\"data_offsets\":[72,96]},%s", causal);
    set_fails(j, 97, "do not match");
    snprintf(j, sizeof j, "{\"q\":{\"dtype\":\"F32\",\"shape\":[1,3,2,2],\"data_offsets\":[0,48]},"
                          "\"k\":{\"dtype\":\"F32\",\"shape\":[1,2,2,1],\"data_offsets\":[48,64]},"
                          "\"v\":{\"dtype\":\"F32\",\"shape\":[1,2,2,1],\"data_offsets\":[64,80]},"
                          "\"causal\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[80,81]}}");
    set_fails(j, 81, "do not match");
    snprintf(j, sizeof j, "{\"q\":{\"dtype\":\"F32\",\"shape\":[1,3,2,2],\"data_offsets\":[0,48]},"
                          "\"k\":{\"dtype\":\"F32\",\"shape\":[1,2,2,2],\"data_offsets\":[48,80]},"
                          "\"v\":{\"dtype\":\"F32\",\"shape\":[1,2,2,2],\"data_offsets\":[80,112]},"
                          "\"causal\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[112,113]}}");
    set_fails(j, 113, "not a multiple of 2 key/value heads");
    snprintf(j, sizeof j, "{\"q\":{\"dtype\":\"I32\",\"shape\":[1,2,3,2],\"data_offsets\":[0,48]},"
                          "\"k\":{\"dtype\":\"F32\",\"shape\":[1,1,3,2],\"data_offsets\":[48,72]},"
                          "\"v\":{\"dtype\":\"F32\",\"shape\":[1,1,3,2],\"data_offsets\":[72,96]},%s", causal);
    set_fails(j, 97, "q has dtype I32");
    snprintf(j, sizeof j, "{\"q\":{\"dtype\":\"F32\",\"shape\":[2,3,2],\"data_offsets\":[0,48]},"
                          "\"k\":{\"dtype\":\"F32\",\"shape\":[1,1,3,2],\"data_offsets\":[48,72]},"
                          "\"v\":{\"dtype\":\"F32\",\"shape\":[1,1,3,2],\"data_offsets\":[72,96]},%s", causal);
    set_fails(j, 97, "3 dimensions");
    set_fails(QKV_OK "\"mask\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[96,98]},"
                     "\"causal\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[98,99]}}", 99, "mask must have shape [3]");
    set_fails(QKV_OK "\"causal\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[96,98]}}", 98, "must be a scalar");
    set_fails(QKV_OK "\"a/b/q\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[96,97]}}", 97, "no '/'");
    /* the causal flag is 2, a mask value 2, an all-padding mask */
    static unsigned char d[200];
    memset(d, 0, sizeof d);
    d[96] = 2;
    size_t len = make_st(QKV_OK "\"causal\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[96,97]}}", d, 97);
    sp_qkv *q = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_qkv_parse_safetensors(g_buf, len, "x", &q, &err), SP_ERR_FORMAT);
    cr_assert(strstr(err.msg, "'causal' must be 0"), "%s", err.msg);
    const char *mj = QKV_OK "\"mask\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[96,99]},"
                            "\"causal\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[99,100]}}";
    d[96] = 1, d[97] = 2, d[98] = 1, d[99] = 0;
    len = make_st(mj, d, 100);
    cr_assert_eq(sp_qkv_parse_safetensors(g_buf, len, "x", &q, &err), SP_ERR_FORMAT);
    cr_assert(strstr(err.msg, "mask[1] is neither 0 nor 1"), "%s", err.msg);
    d[96] = d[97] = d[98] = 0;
    len = make_st(mj, d, 100);
    cr_assert_eq(sp_qkv_parse_safetensors(g_buf, len, "x", &q, &err), SP_ERR_FORMAT);
    cr_assert(strstr(err.msg, "every token as padding"), "%s", err.msg);
    /* a NaN in k */
    float f[25] = {0};
    f[13] = NAN;
    len = make_st(QKV_OK "\"causal\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[96,97]}}", f, 97);
    cr_assert_eq(sp_qkv_parse_safetensors(g_buf, len, "x", &q, &err), SP_ERR_FORMAT);
    cr_assert(strstr(err.msg, "k holds a non-finite value") && strstr(err.msg, "element 1"), "%s", err.msg);
}

Test(qkv, padding_is_moved_behind_the_tokens) {
    /* q rows t = 0..2 of head 0 hold t; mask 0,1,1: token 0 is padding */
    float d[25] = {0};
    for (int t = 0; t < 3; t++) d[2 * t] = d[6 + 2 * t] = d[12 + 2 * t] = (float)t;
    unsigned char *m = (unsigned char *)&d[24];
    m[0] = 0, m[1] = 1, m[2] = 1;
    ((unsigned char *)d)[99] = 0; /* not causal */
    unsigned char buf[100];
    memcpy(buf, d, 99);
    buf[99] = 0;
    size_t len = make_st(QKV_OK "\"mask\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[96,99]},"
                                "\"causal\":{\"dtype\":\"BOOL\",\"shape\":[],\"data_offsets\":[99,100]}}", buf, 100);
    sp_qkv *q = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_qkv_parse_safetensors(g_buf, len, "x", &q, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(q->reordered, 1);
    cr_assert_eq(q->seq[0].n_valid, 2);
    cr_assert_not_null(q->seq[0].valid);
    cr_assert_eq(q->seq[0].valid[0] + 2 * q->seq[0].valid[1] + 4 * q->seq[0].valid[2], 3);
    cr_assert_eq(q->seq[0].q[0], 1.0f); /* tokens 1, 2 first, then the padding token 0 */
    cr_assert_eq(q->seq[0].q[2], 2.0f);
    cr_assert_eq(q->seq[0].q[4], 0.0f);
    cr_assert_eq(q->seq[0].k[0], 1.0f);
    sp_qkv_free(q);
}

/* Several named sequences through save and load: every value and mask bit comes back. */
Test(qkv, save_and_load_round_trip) {
    int ntok[2] = {5, 3};
    sp_qkv *q = sp_qkv_new(2, 4, 2, 3, 0, 2, ntok);
    sp_rng r;
    sp_rng_seed(&r, 7);
    for (int s = 0; s < 2; s++) {
        size_t nq = (size_t)2 * 4 * ntok[s] * 3, nk = (size_t)2 * 2 * ntok[s] * 3;
        for (size_t i = 0; i < nq; i++) q->seq[s].q[i] = (float)sp_rng_next_normal(&r);
        for (size_t i = 0; i < nk; i++) q->seq[s].k[i] = (float)sp_rng_next_normal(&r), q->seq[s].v[i] = (float)i;
    }
    q->seq[1].valid = malloc(3);
    q->seq[1].valid[0] = q->seq[1].valid[1] = 1, q->seq[1].valid[2] = 0;
    q->seq[1].n_valid = 2;
    char path[] = "/tmp/sprint-qkv-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    sp_error err = {0};
    cr_assert_eq(sp_qkv_save(q, path, &err), SP_OK, "%s", err.msg);
    sp_qkv *b = NULL;
    cr_assert_eq(sp_qkv_load(path, &b, &err), SP_OK, "%s", err.msg);
    unlink(path);
    cr_assert_eq(b->n_seq, 2);
    cr_assert_eq(b->causal, 0);
    cr_assert_eq(b->kv_heads, 2);
    for (int s = 0; s < 2; s++) {
        cr_assert_str_eq(b->seq[s].name, q->seq[s].name);
        cr_assert_eq(b->seq[s].n_tok, ntok[s]);
        cr_assert_arr_eq(b->seq[s].q, q->seq[s].q, sizeof(float) * 2 * 4 * ntok[s] * 3);
        cr_assert_arr_eq(b->seq[s].k, q->seq[s].k, sizeof(float) * 2 * 2 * ntok[s] * 3);
        cr_assert_arr_eq(b->seq[s].v, q->seq[s].v, sizeof(float) * 2 * 2 * ntok[s] * 3);
    }
    cr_assert_null(b->seq[0].valid);
    cr_assert_eq(b->seq[1].n_valid, 2);
    cr_assert_arr_eq(b->seq[1].valid, q->seq[1].valid, 3);
    sp_qkv_free(q);
    sp_qkv_free(b);
}

/* A directory of .npy files (NAME/q.npy ...) loads like the safetensors file. */
Test(qkv, npy_directory) {
    char dir[] = "/tmp/sprint-qkvdir-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char p[512];
    snprintf(p, sizeof p, "%s/a", dir);
    mkdir(p, 0700);
    float d[12];
    for (int i = 0; i < 12; i++) d[i] = (float)i;
    const char *names[3] = {"q", "k", "v"};
    for (int i = 0; i < 3; i++) {
        size_t len = make_npy(i ? "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 3, 2), }"
                                : "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3, 2), }",
                              d, i ? 24 : 48);
        snprintf(p, sizeof p, "%s/a/%s.npy", dir, names[i]);
        FILE *f = fopen(p, "wb");
        fwrite(g_buf, 1, len, f);
        fclose(f);
    }
    unsigned char one = 1;
    size_t len = make_npy("{'descr': '|b1', 'fortran_order': False, 'shape': (), }", &one, 1);
    snprintf(p, sizeof p, "%s/causal.npy", dir);
    FILE *f = fopen(p, "wb");
    fwrite(g_buf, 1, len, f);
    fclose(f);
    sp_qkv *q = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_qkv_load(dir, &q, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(q->n_seq, 1);
    cr_assert_str_eq(q->seq[0].name, "a");
    cr_assert_eq(q->heads, 2);
    cr_assert_eq(q->seq[0].k[5], 5.0f);
    sp_qkv_free(q);
    /* a truncated q.npy is refused naming the file */
    len = make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3, 2), }", d, 40);
    snprintf(p, sizeof p, "%s/a/q.npy", dir);
    f = fopen(p, "wb");
    fwrite(g_buf, 1, len, f);
    fclose(f);
    cr_assert_eq(sp_qkv_load(dir, &q, &err), SP_ERR_FORMAT);
    cr_assert(strstr(err.msg, "a/q.npy") && strstr(err.msg, "truncated"), "%s", err.msg);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* ---- the exact round trip: native run, capture, save, load, run ------------------------------ */
typedef struct mask_hash {
    atomic_ullong sum; /* order-independent: records arrive from several threads */
    atomic_long n;
} mask_hash;

static void hash_record(void *user, const sp_query_record *r) {
    mask_hash *m = user;
    uint64_t h = sp_hash64(((uint64_t)r->layer << 48) ^ ((uint64_t)r->head << 40) ^ ((uint64_t)r->seq_id << 20) ^ (uint64_t)r->qi);
    for (int i = 0; i < r->n_mem_kept; i++) h = sp_hash64(h ^ (uint64_t)r->mem_kept[i]);
    h = sp_hash64(h ^ 0xabcdef);
    for (int i = 0; i < r->n_kept; i++) h = sp_hash64(h ^ (uint64_t)r->kept[i]);
    atomic_fetch_add(&m->sum, h);
    atomic_fetch_add(&m->n, 1);
}

Test(qkv, native_round_trip_gives_identical_masks_and_cycles, .timeout = 300) {
    TH_NEED_SHARED(model, "models/stories260K.bin");
    TH_NEED_SHARED(tokp, "models/tok512.bin");
    TH_NEED_SHARED(textp, "data/tinystories-valid-dev.txt");
    sp_config cfg;
    sp_config_defaults(&cfg);
    cfg.policy_delta = 3.0; /* the same thresholds in both runs (no model to calibrate with on the tensor side) */
    cfg.sim_trace_stories = 2;
    sp_model *m = NULL;
    sp_tokenizer *t = NULL;
    char *text = NULL;
    size_t len = 0;
    sp_corpus corpus;
    sp_error err = {0};
    cr_assert_eq(sp_model_load(model, &m, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(sp_tokenizer_load(tokp, sp_model_get_info(m)->vocab_size, &t, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(sp_read_file(textp, &text, &len, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(sp_corpus_from_text(t, text, len, 2, &corpus, &err), SP_OK, "%s", err.msg);
    sp_sim_opts o = {.threads = 2};
    sp_wl_result *native = calloc(1, sizeof *native), *back = calloc(1, sizeof *back), *other = calloc(1, sizeof *other);
    cr_assert_eq(sp_sim_run_model(&cfg, m, &corpus, &o, native, &err), SP_OK, "%s", err.msg);
    mask_hash hn = {0}, hb = {0}, ho = {0};
    sp_qkv *cap = NULL, *loaded = NULL;
    cr_assert_eq(sp_qkv_capture_model(&cfg, m, &corpus, &o, hash_record, &hn, &cap, &err), SP_OK, "%s", err.msg);
    char path[] = "/tmp/sprint-qkvrt-XXXXXX";
    close(mkstemp(path));
    cr_assert_eq(sp_qkv_save(cap, path, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(sp_qkv_load(path, &loaded, &err), SP_OK, "%s", err.msg);
    unlink(path);
    cr_assert_eq(loaded->n_seq, cap->n_seq);
    cr_assert_geq(loaded->n_seq, 2);
    /* masks: the same records from the tensor set */
    sp_config *ocfg = sp_sim_op_config(&cfg);
    sp_op_request req = {.mode = "sprint", .cfg = ocfg};
    sp_attn_op *op = NULL;
    cr_assert_eq(sp_attn_op_create(&req, loaded->layers, loaded->heads, &op, &err), SP_OK, "%s", err.msg);
    op->observer = hash_record;
    op->observer_user = &hb;
    cr_assert_eq(sp_qkv_run_op(loaded, op, 2, &err), SP_OK, "%s", err.msg);
    sp_attn_op_free(op);
    cr_assert_gt(atomic_load(&hn.n), 10000);
    cr_assert_eq(atomic_load(&hb.n), atomic_load(&hn.n));
    cr_assert_eq(atomic_load(&hb.sum), atomic_load(&hn.sum), "masks differ between the native run and the tensor set");
    /* the hash sees a change of thresholds (the comparison can fail) */
    ocfg->policy_delta = 2.5;
    cr_assert_eq(sp_attn_op_create(&req, loaded->layers, loaded->heads, &op, &err), SP_OK, "%s", err.msg);
    op->observer = hash_record;
    op->observer_user = &ho;
    cr_assert_eq(sp_qkv_run_op(loaded, op, 1, &err), SP_OK, "%s", err.msg);
    sp_attn_op_free(op);
    cr_assert_neq(atomic_load(&ho.sum), atomic_load(&hn.sum));
    free(ocfg);
    /* cycles, energy, traffic and statistics: bit for bit */
    cr_assert_eq(sp_sim_run_qkv(&cfg, loaded, "rt", &o, back, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(back->sizes_mask, native->sizes_mask);
    for (int s = 0; s < SP_SIZE_COUNT; s++)
        for (int D = 0; D < SP_DESIGN_COUNT; D++) {
            cr_assert_gt(native->r[s][D].cycles, 0);
            cr_assert_eq(back->r[s][D].cycles, native->r[s][D].cycles, "size %d design %s: %.17g vs %.17g cycles", s,
                         sp_design_name((sp_design)D), back->r[s][D].cycles, native->r[s][D].cycles);
            cr_assert(!memcmp(&back->r[s][D], &native->r[s][D], sizeof back->r[s][D]), "size %d design %s differs", s,
                      sp_design_name((sp_design)D));
        }
    cr_assert(!memcmp(&back->stats, &native->stats, sizeof back->stats));
    sp_qkv_free(cap);
    sp_qkv_free(loaded);
    free(native), free(back), free(other);
    sp_corpus_free(&corpus);
    free(text);
    sp_tokenizer_free(t);
    sp_model_free(m);
}

/* ---- the command line -------------------------------------------------------------------------- */
Test(qkv_cli, malformed_file_is_one_line_error) {
    static char out[1 << 14], errb[1 << 14];
    unsigned char bad[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{'};
    const char *p = th_temp_file(bad, sizeof bad);
    char args[512];
    snprintf(args, sizeof args, "run --quiet --qkv-only --qkv %s", p);
    int rc = th_run_sprint(args, out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 1, "exit %d: %s", rc, errb);
    cr_assert(strstr(errb, "sprint run: error: ") == errb && strstr(errb, "header length 65535 exceeds"), "%s", errb);
    cr_assert_eq(strchr(errb, '\n'), errb + strlen(errb) - 1, "not one line: %s", errb);
    cr_assert_eq(out[0], 0);
    rc = th_run_sprint("run --quiet --qkv-only", out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 2, "%s", errb);
    rc = th_run_sprint("trace --quiet --export-qkv /tmp/x.safetensors", out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 2, "%s", errb);
    cr_assert(strstr(errb, "--export-qkv needs --real"), "%s", errb);
    rc = th_run_sprint("run --quiet --qkv-only --qkv /nonexistent/q.safetensors", out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 1, "%s", errb);
    cr_assert(strstr(errb, "cannot open tensor file /nonexistent/q.safetensors"), "%s", errb);
}

/* Whether JSON text holds "key": followed (after white space) by a value starting with val. */
static int json_has(const char *js, const char *key, const char *val) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    for (const char *p = strstr(js, k); p; p = strstr(p + 1, k)) {
        const char *v = p + strlen(k);
        while (*v == ' ' || *v == '\t') v++;
        if (!strncmp(v, val, strlen(val))) return 1;
    }
    return 0;
}

/* A small set through sprint run --qkv-only --json: reported as a workload with its shape. */
Test(qkv_cli, run_reports_the_set) {
    int ntok[2] = {40, 33};
    sp_qkv *q = sp_qkv_new(2, 2, 1, 16, 0, 2, ntok);
    sp_rng r;
    sp_rng_seed(&r, 3);
    for (int s = 0; s < 2; s++)
        for (size_t i = 0; i < (size_t)2 * 2 * ntok[s] * 16; i++) {
            q->seq[s].q[i] = (float)sp_rng_next_normal(&r);
            if (i < (size_t)2 * ntok[s] * 16) q->seq[s].k[i] = (float)sp_rng_next_normal(&r), q->seq[s].v[i] = 1.0f;
        }
    q->seq[1].valid = calloc(33, 1); /* sequence 1: 30 tokens, 3 padding */
    memset(q->seq[1].valid, 1, 30);
    q->seq[1].n_valid = 30;
    char path[] = "/tmp/sprint-qkvcli-XXXXXX";
    close(mkstemp(path));
    sp_error err = {0};
    cr_assert_eq(sp_qkv_save(q, path, &err), SP_OK, "%s", err.msg);
    /* the simulator's totals do not depend on the thread count */
    sp_config cfg;
    sp_config_defaults(&cfg);
    sp_wl_result *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    sp_sim_opts o1 = {.threads = 1}, o2 = {.threads = 2};
    cr_assert_eq(sp_sim_run_qkv(&cfg, q, "t", &o1, a, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(sp_sim_run_qkv(&cfg, q, "t", &o2, b, &err), SP_OK, "%s", err.msg);
    cr_assert(!memcmp(a->r, b->r, sizeof a->r) && !memcmp(&a->stats, &b->stats, sizeof a->stats));
    cr_assert_float_eq(a->wl.padding, 3.0 / 73.0, 1e-12);
    cr_assert_eq(a->stats.queries, 2.0 * 2 * (40 + 30)); /* padding queries are not counted */
    /* per-head statistics (issue 8): every (layer, head) in order, summing to the totals */
    cr_assert_eq(a->n_head_stats, 4);
    double qsum = 0;
    for (int i = 0; i < 4; i++) {
        cr_assert(a->head_stats[i].layer == i / 2 && a->head_stats[i].head == i % 2);
        qsum += a->head_stats[i].st.queries;
    }
    cr_assert_eq(qsum, a->stats.queries);
    cr_assert(a->stats.spread_queries > 0 && a->stats.spread_sum > 0, "score spread not reported");
    free(a), free(b);
    sp_qkv_free(q);
    static char out[1 << 16], errb[1 << 14];
    char args[512];
    snprintf(args, sizeof args, "run --quiet --qkv-only --qkv %s --json --sizes S", path);
    int rc = th_run_sprint(args, out, sizeof out, errb, sizeof errb);
    unlink(path);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, errb);
    cr_assert(json_has(out, "workload", "\"qkv:sprint-qkvcli-"), "%.300s", out);
    cr_assert(json_has(out, "d", "16,"), "%.300s", out);
    cr_assert(json_has(out, "causal", "false,"), "%.300s", out);
    cr_assert(json_has(out, "sim_heads", "8,"), "%.300s", out);
    cr_assert(json_has(out, "padding", "0.0410"), "%.300s", out); /* 3 of 73 tokens */
}

/* The numpy exporter (scripts/export-qkv, an independent forward pass) against the C capture of the
 * dense model: the same tensor names and shapes, values within 1e-4 of each tensor's magnitude. */
Test(qkv_cli, numpy_exporter_matches_the_c_capture, .timeout = 300) {
    TH_NEED_SHARED(model, "models/stories260K.bin");
    TH_NEED_SHARED(tokp, "models/tok512.bin");
    TH_NEED_SHARED(textp, "data/tinystories-valid-dev.txt");
    if (system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0)
        cr_skip_test("/usr/bin/python3 with numpy not found (scripts/install-deps installs python3-numpy)");
    char dir[] = "/tmp/sprint-qkvnp-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/scripts/export-qkv --model %s --tokenizer %s --text %s --stories 2 "
             "--out %s/np.safetensors 2>/dev/null", SP_SOURCE_DIR, model, tokp, textp, dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    static char out[1 << 14], errb[1 << 14];
    snprintf(cmd, sizeof cmd, "trace --quiet --real --set sim.trace_stories=2 --set workload.mode=dense --out /dev/null "
             "--export-qkv %s/c.safetensors", dir);
    int rc = th_run_sprint(cmd, out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0, "%s", errb);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/scripts/compare-qkv --tol 1e-4 %s/c.safetensors %s/np.safetensors",
             SP_SOURCE_DIR, dir, dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    /* the comparison can fail: a perturbed tolerance of 0 flags the float differences */
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/scripts/compare-qkv --tol 0 %s/c.safetensors %s/np.safetensors >/dev/null",
             SP_SOURCE_DIR, dir, dir);
    cr_assert_neq(system(cmd), 0, "numpy and C forward passes agree bit for bit: the tolerance test cannot fail");
    snprintf(cmd, sizeof cmd, "run --quiet --qkv-only --qkv %s/np.safetensors --sizes S --summary", dir);
    rc = th_run_sprint(cmd, out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0, "%s", errb);
    cr_assert(strstr(out, "qkv:np.safetensors"), "%.300s", out);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* `trace --real --export-qkv` on the defaults (the onchip policy, which needs calibrated
 * thresholds): the capture calibrates on the traced stories, as sprint run does, instead of
 * refusing (a regression when operator creation stopped calibrating implicitly). */
Test(qkv_cli, export_on_the_defaults_calibrates, .timeout = 300) {
    TH_NEED_SHARED(model, "models/stories260K.bin");
    char path[] = "/tmp/sprint-qkvexp-XXXXXX";
    close(mkstemp(path));
    unlink(path);
    static char out[1 << 16], errb[1 << 14];
    char args[512];
    snprintf(args, sizeof args, "trace --real --quiet --set sim.trace_stories=1 --export-qkv %s --out /dev/null", path);
    int rc = th_run_sprint(args, out, sizeof out, errb, sizeof errb);
    struct stat st;
    int exists = stat(path, &st) == 0 && st.st_size > 0;
    unlink(path);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, errb);
    cr_assert(exists, "no tensor file written");
}

/* More (layer, head) pairs than the per-head list holds: every head is in the totals, the list
 * keeps the first SP_SIM_MAX_HEAD_STATS and the result says how many it left out. */
Test(qkv, per_head_list_reports_what_it_omits) {
    int ntok[1] = {12};
    int layers = SP_SIM_MAX_HEAD_STATS / 16 + 1, heads = 16;
    sp_qkv *q = sp_qkv_new(layers, heads, heads, 8, 1, 1, ntok);
    sp_rng r;
    sp_rng_seed(&r, 5);
    for (size_t i = 0; i < (size_t)layers * heads * ntok[0] * 8; i++) {
        q->seq[0].q[i] = (float)sp_rng_next_normal(&r);
        q->seq[0].k[i] = (float)sp_rng_next_normal(&r);
        q->seq[0].v[i] = 1.0f;
    }
    sp_config cfg;
    sp_config_defaults(&cfg);
    snprintf(cfg.chip_sizes, sizeof cfg.chip_sizes, "S");
    sp_wl_result *a = calloc(1, sizeof *a);
    sp_error err = {0};
    sp_sim_opts o = {.threads = 1};
    cr_assert_eq(sp_sim_run_qkv(&cfg, q, "many", &o, a, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(a->n_head_stats, SP_SIM_MAX_HEAD_STATS);
    cr_assert_eq(a->n_head_stats_omitted, layers * heads - SP_SIM_MAX_HEAD_STATS);
    cr_assert_eq(a->stats.queries, (double)layers * heads * ntok[0], "every head is in the totals");
    free(a);
    sp_qkv_free(q);
}
