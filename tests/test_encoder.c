/* test_encoder.c: does the USE-lite encoder read its TF.js files, tokenize as the original JS
 * package does, and embed sentences as TensorFlow.js does (cosine >= 0.9999 on every fixture
 * sentence)? Are malformed manifests, shards and vocabularies refused with one-line errors,
 * is the padding mask honoured, and does an operator's accuracy come out of the evaluation?
 * The fixture tests/fixtures/use_lite_reference.json is written by
 * scripts/tfjs-reference/make-fixture.js (TF.js pure-JS CPU backend, see docs/model.md). */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"
#include "sprint/encoder.h"
#include "sprint/functional.h"
#include "sprint/model.h"

#define FIXTURE SP_SOURCE_DIR "/tests/fixtures/use_lite_reference.json"

static cJSON *load_fixture(void) {
    char *text = NULL;
    size_t len = 0;
    sp_error err = {0};
    cr_assert_eq(sp_read_file(FIXTURE, &text, &len, &err), SP_OK, "%s", err.msg);
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    cr_assert_not_null(j, "fixture is not JSON");
    return j;
}

static double cosine(const float *a, const double *b, int d) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < d; i++) ab += a[i] * b[i], aa += (double)a[i] * a[i], bb += b[i] * b[i];
    return ab / sqrt(aa * bb);
}

/* ---- against TensorFlow.js --------------------------------------------------------------- */
Test(encoder_reference, ids_and_embeddings_match_tfjs, .timeout = 120) {
    TH_NEED_SHARED(dir, "models/use-lite/model.json");
    char mdir[4096], vpath[4200];
    snprintf(mdir, sizeof mdir, "%.*s", (int)(strlen(dir) - strlen("/model.json")), dir);
    snprintf(vpath, sizeof vpath, "%s/vocab.json", mdir);
    sp_error err = {0};
    sp_encoder *e = NULL;
    sp_spm *t = NULL;
    cr_assert_eq(sp_encoder_load(mdir, &e, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(sp_spm_load(vpath, &t, &err), SP_OK, "%s", err.msg);
    const sp_encoder_info *in = sp_encoder_get_info(e);
    cr_assert(in->n_heads == 4 && in->head_dim[0] == 64 && in->head_dim[1] == 128 && in->max_len == 128 &&
              in->d_out == 512 && in->vocab == 8002);
    cJSON *fx = load_fixture();
    const cJSON *arr = cJSON_GetObjectItem(fx, "sentences"), *it;
    sp_attn_op *op = sp_attn_dense_create(2, 4);
    int n_checked = 0, n_long = 0;
    double worst = 1, maxdiff = 0;
    cJSON_ArrayForEach(it, arr) {
        const char *text = cJSON_GetObjectItem(it, "text")->valuestring;
        const cJSON *jid = cJSON_GetObjectItem(it, "ids"), *jemb = cJSON_GetObjectItem(it, "embedding");
        int *ids = NULL, n = 0;
        cr_assert_eq(sp_spm_encode(t, text, strlen(text), &ids, &n, &err), SP_OK, "%s", err.msg);
        cr_assert_eq(n, cJSON_GetArraySize(jid), "'%s': %d ids, the JS tokenizer gives %d", text, n,
                     cJSON_GetArraySize(jid));
        for (int i = 0; i < n; i++)
            cr_assert_eq(ids[i], cJSON_GetArrayItem(jid, i)->valueint, "'%s': id %d is %d, the JS tokenizer gives %d",
                         text, i, ids[i], cJSON_GetArrayItem(jid, i)->valueint);
        if (n == 0) {
            cr_assert(cJSON_IsNull(jemb));
            const int *p = ids;
            float out[512];
            cr_assert_eq(sp_encoder_embed(e, &p, &n, 1, op, NULL, 0, out, NULL, &err), SP_ERR_ARG);
            continue;
        }
        if (n > 128) n_long++;
        double ref[512];
        cr_assert_eq(cJSON_GetArraySize(jemb), 512);
        for (int i = 0; i < 512; i++) ref[i] = cJSON_GetArrayItem(jemb, i)->valuedouble;
        float out[512];
        const int *p = ids;
        cr_assert_eq(sp_encoder_embed(e, &p, &n, 1, op, NULL, 0, out, NULL, &err), SP_OK, "%s", err.msg);
        double c = cosine(out, ref, 512);
        if (c < worst) worst = c;
        for (int i = 0; i < 512; i++)
            if (fabs(out[i] - ref[i]) > maxdiff) maxdiff = fabs(out[i] - ref[i]);
        cr_assert_geq(c, 0.9999, "'%.60s': cosine to TF.js %.7f < 0.9999", text, c);
        free(ids);
        n_checked++;
    }
    cr_assert_geq(n_checked, 36, "only %d sentences checked", n_checked);
    /* the fixture's 32 dev sentences were picked by the JS port of sp_sentences_split: the C
     * splitter finds the same count and the same sentences at the same indices */
    {
        TH_NEED_SHARED(dev, "data/tinystories-valid-dev.txt");
        char *text = NULL, **s = NULL;
        size_t len = 0;
        int ns = 0;
        cr_assert_eq(sp_read_file(dev, &text, &len, &err), SP_OK);
        cr_assert_eq(sp_sentences_split(text, len, &s, &ns, &err), SP_OK);
        cr_assert_eq(ns, cJSON_GetObjectItem(fx, "n_dev_sentences")->valueint, "C splits %d sentences, JS %d", ns,
                     cJSON_GetObjectItem(fx, "n_dev_sentences")->valueint);
        for (int i = 0; i < 32; i++)
            cr_assert_str_eq(s[(long)i * ns / 32], cJSON_GetArrayItem(arr, i)->child->valuestring, "sentence %d", i);
        sp_sentences_free(s, ns);
        free(text);
    }
    cr_assert_geq(n_long, 1, "no sentence longer than 128 tokens in the fixture");
    cr_log_info("dense vs TF.js: min cosine %.10f (1 - min = %.2g), max |difference| %.3g over %d sentences x 512", worst, 1 - worst, maxdiff,
                n_checked);
    sp_attn_op_free(op);
    cJSON_Delete(fx);
    sp_spm_free(t);
    sp_encoder_free(e);
}

/* ---- TF.js manifests: every malformed case is a one-line SP_ERR_FORMAT ------------------ */
static void expect_manifest_error(const char *json, const char *want) {
    sp_tfjs_model *m = NULL;
    sp_error err = {0};
    sp_status s = sp_tfjs_manifest_parse(json, strlen(json), "m.json", &m, &err);
    cr_assert_eq(s, SP_ERR_FORMAT, "accepted: %s", json);
    cr_assert_null(m);
    cr_assert(strstr(err.msg, want), "message '%s' lacks '%s'", err.msg, want);
    cr_assert(!strchr(err.msg, '\n'), "message has several lines: %s", err.msg);
    cr_assert(!strncmp(err.msg, "m.json: ", 8), "message does not name the file: %s", err.msg);
}

#define W(x) "{\"weightsManifest\":[{\"paths\":[\"s1\"],\"weights\":[" x "]}]}"
Test(tfjs_manifest, malformed_are_refused) {
    expect_manifest_error("{", "not valid JSON");
    expect_manifest_error("{\"modelTopology\":{}}", "no \"weightsManifest\"");
    expect_manifest_error("{\"weightsManifest\":[]}", "no \"weightsManifest\"");
    expect_manifest_error("{\"weightsManifest\":[{\"weights\":[]}]}", "needs a \"paths\"");
    expect_manifest_error("{\"weightsManifest\":[{\"paths\":[\"../etc/passwd\"],\"weights\":[]}]}",
                          "not a file name beside model.json");
    expect_manifest_error("{\"weightsManifest\":[{\"paths\":[\"/abs\"],\"weights\":[]}]}", "not a file name");
    expect_manifest_error("{\"weightsManifest\":[{\"paths\":[3],\"weights\":[]}]}", "not a file name");
    expect_manifest_error("{\"weightsManifest\":[{\"paths\":[],\"weights\":[{\"name\":\"a\",\"shape\":[],\"dtype\":\"float32\"}]}]}",
                          "no shard paths");
    expect_manifest_error(W("3"), "weights[0] is not an object");
    expect_manifest_error(W("{\"shape\":[1],\"dtype\":\"float32\"}"), "no \"name\"");
    expect_manifest_error(W("{\"name\":\"a\",\"dtype\":\"float32\"}"), "no \"shape\" array");
    expect_manifest_error(W("{\"name\":\"a\",\"shape\":[1]}"), "no \"dtype\"");
    expect_manifest_error(W("{\"name\":\"a\",\"shape\":[1],\"dtype\":\"string\"}"), "dtype 'string'");
    /* strings from the file are quoted on one line (found by fuzz_tfjs_manifest) */
    expect_manifest_error(W("{\"name\":\"a\\nb\",\"shape\":[1],\"dtype\":\"f\\n\"}"), "weight 'a?b' has dtype 'f?'");
    expect_manifest_error(W("{\"name\":\"a\",\"shape\":[1],\"dtype\":\"float32\",\"quantization\":{\"dtype\":\"uint8\"}}"),
                          "quantised");
    expect_manifest_error(W("{\"name\":\"a\",\"shape\":[-1],\"dtype\":\"float32\"}"), "shape[0] is not an integer");
    expect_manifest_error(W("{\"name\":\"a\",\"shape\":[2,1.5],\"dtype\":\"float32\"}"), "shape[1] is not an integer");
    expect_manifest_error(W("{\"name\":\"a\",\"shape\":[\"2\"],\"dtype\":\"int32\"}"), "shape[0] is not an integer");
    expect_manifest_error(W("{\"name\":\"a\",\"shape\":[1e30],\"dtype\":\"int32\"}"), "shape[0] is not an integer");
    expect_manifest_error(W("{\"name\":\"a\",\"shape\":[65536,65536,65536],\"dtype\":\"int32\"}"), "more than 2^32");
    expect_manifest_error(W("{\"name\":\"a\",\"shape\":[1,1,1,1,1,1,1,1,1],\"dtype\":\"int32\"}"), "9 dimensions");
    expect_manifest_error(W("{\"name\":\"a\",\"shape\":[1],\"dtype\":\"int32\"},{\"name\":\"a\",\"shape\":[1],\"dtype\":\"int32\"}"),
                          "appears twice");
}

Test(tfjs_manifest, offsets_follow_manifest_order) {
    const char *j = "{\"weightsManifest\":[{\"paths\":[\"s1\",\"s2\"],\"weights\":["
                    "{\"name\":\"a\",\"shape\":[2,3],\"dtype\":\"float32\"},{\"name\":\"b\",\"shape\":[],\"dtype\":\"int32\"}]},"
                    "{\"paths\":[\"t1\"],\"weights\":[{\"name\":\"c\",\"shape\":[4],\"dtype\":\"float32\"}]}]}";
    sp_tfjs_model *m = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_tfjs_manifest_parse(j, strlen(j), "m.json", &m, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(sp_tfjs_count(m), 3);
    const sp_tfjs_tensor *a = sp_tfjs_find(m, "a"), *b = sp_tfjs_find(m, "b"), *c = sp_tfjs_find(m, "c");
    cr_assert(a && b && c && !sp_tfjs_find(m, "d"));
    cr_assert(a->count == 6 && a->offset == 0 && a->group == 0 && a->ndim == 2 && a->shape[1] == 3);
    cr_assert(b->count == 1 && b->offset == 24 && b->dtype == SP_TFJS_INT32 && b->ndim == 0);
    cr_assert(c->group == 1 && c->offset == 0 && c->count == 4);
    cr_assert_null(a->data);
    sp_tfjs_free(m);
    sp_tfjs_free(NULL);
}

/* A model directory with model.json and shards of the given sizes (bytes of 0..n-1). */
static const char *make_dir(const char *json, const size_t *shard_bytes, int n_shards) {
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/sp_enc_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char p[128];
    snprintf(p, sizeof p, "%s/model.json", dir);
    FILE *f = fopen(p, "w");
    fputs(json, f);
    fclose(f);
    for (int i = 0; i < n_shards; i++) {
        snprintf(p, sizeof p, "%s/s%d", dir, i + 1);
        f = fopen(p, "wb");
        for (size_t k = 0; k < shard_bytes[i]; k++) fputc((int)(k & 0xff), f);
        fclose(f);
    }
    return dir;
}

static const char *TWO_SHARDS = "{\"weightsManifest\":[{\"paths\":[\"s1\",\"s2\"],\"weights\":["
                                "{\"name\":\"a\",\"shape\":[3],\"dtype\":\"float32\"},"
                                "{\"name\":\"b\",\"shape\":[2],\"dtype\":\"int32\"}]}]}";

Test(tfjs_load, shards_are_concatenated_and_sized) {
    sp_tfjs_model *m = NULL;
    sp_error err = {0};
    size_t ok[2] = {8, 12};
    const char *dir = make_dir(TWO_SHARDS, ok, 2);
    cr_assert_eq(sp_tfjs_load(dir, &m, &err), SP_OK, "%s", err.msg);
    const sp_tfjs_tensor *b = sp_tfjs_find(m, "b");
    /* b starts at byte 12 = byte 4 of shard 2 */
    cr_assert_eq(((const unsigned char *)b->data)[0], 4);
    sp_tfjs_free(m);
    size_t short_[2] = {8, 11}, long_[2] = {8, 13}, one[1] = {20};
    struct { const size_t *sz; int n; sp_status st; const char *want; } cases[] = {
        {short_, 2, SP_ERR_FORMAT, "hold 19 bytes, its weights declare 20"},
        {long_, 2, SP_ERR_FORMAT, "hold more than the 20 bytes"},
        {one, 1, SP_ERR_IO, "s2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dir = make_dir(TWO_SHARDS, cases[i].sz, cases[i].n);
        m = NULL;
        cr_assert_eq(sp_tfjs_load(dir, &m, &err), cases[i].st, "case %zu: %s", i, err.msg);
        cr_assert_null(m);
        cr_assert(strstr(err.msg, cases[i].want), "case %zu: '%s' lacks '%s'", i, err.msg, cases[i].want);
        cr_assert(!strchr(err.msg, '\n'));
    }
    cr_assert_eq(sp_tfjs_load("/nonexistent/dir", &m, &err), SP_ERR_IO);
}

Test(tfjs_load, encoder_needs_its_weights) {
    size_t ok[2] = {8, 12};
    const char *dir = make_dir(TWO_SHARDS, ok, 2);
    sp_encoder *e = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_encoder_load(dir, &e, &err), SP_ERR_FORMAT);
    cr_assert(strstr(err.msg, "not the USE-lite encoder: no weight 'module/Embeddings_en'"), "%s", err.msg);
    /* right name, wrong shape */
    const char *j = "{\"weightsManifest\":[{\"paths\":[\"s1\"],\"weights\":["
                    "{\"name\":\"module/Embeddings_en\",\"shape\":[4],\"dtype\":\"float32\"}]}]}";
    size_t sz[1] = {16};
    dir = make_dir(j, sz, 1);
    cr_assert_eq(sp_encoder_load(dir, &e, &err), SP_ERR_FORMAT);
    cr_assert(strstr(err.msg, "is float32 [4], expected float32 [-1x-1]"), "%s", err.msg);
    cr_assert_null(e);
}

/* ---- the tokenizer --------------------------------------------------------------------------- */
#define RESERVED "[\"\xEF\xBF\xBD\",0],[\"<s>\",0],[\"</s>\",0],[\"a\",0],[\"b\",0],[\"c\",0]"
static sp_spm *tiny_vocab(void) {
    /* ids: 6 = U+2581, 7 = U+2581 a, 8 = b, 9 = ab, 10 = U+2581 ab, 11 = ':' with a null score */
    const char *v = "[" RESERVED ",[\"\xE2\x96\x81\",-1],[\"\xE2\x96\x81" "a\",-2],[\"b\",-3],[\"ab\",-4],"
                    "[\"\xE2\x96\x81" "ab\",-6.5],[\":\",null]]";
    sp_spm *t = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_spm_parse(v, strlen(v), "v.json", &t, &err), SP_OK, "%s", err.msg);
    return t;
}

static void expect_tiny(const sp_spm *t, const char *text, const int *want, int nwant) {
    int *ids = NULL, n = 0;
    sp_error err = {0};
    cr_assert_eq(sp_spm_encode(t, text, strlen(text), &ids, &n, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(n, nwant, "'%s': %d ids, expected %d", text, n, nwant);
    for (int i = 0; i < n; i++) cr_assert_eq(ids[i], want[i], "'%s': id %d is %d, expected %d", text, i, ids[i], want[i]);
    free(ids);
}

Test(spm, viterbi_ties_unknowns_and_reserved_ids) {
    sp_spm *t = tiny_vocab();
    /* "ab": U+2581ab (-6.5) loses to U+2581 + ab (-5), which ties with U+2581a + b (-5): the
     * later start (shorter piece) wins the tie in the JS package */
    expect_tiny(t, "ab", (int[]){7, 8}, 2);
    /* unknowns x, y (reserved 'a'..'c' are never matched): merged into one id 0 */
    expect_tiny(t, "xy", (int[]){6, 0}, 2);
    /* a character outside the BMP is two UTF-16 units: two unknowns, merged */
    expect_tiny(t, "\xF0\x9F\x98\x80", (int[]){6, 0}, 2);
    /* spaces become U+2581; "c" is reserved, so unknown */
    expect_tiny(t, "b c", (int[]){6, 8, 6, 0}, 4);
    /* a null score counts as 0 */
    expect_tiny(t, ":", (int[]){6, 11}, 2);
    /* NFKC: U+FF41 (fullwidth a) is 'a' */
    expect_tiny(t, "\xEF\xBD\x81" "b", (int[]){7, 8}, 2);
    expect_tiny(t, "", NULL, 0);
    int *ids = NULL, n = 0;
    sp_error err = {0};
    cr_assert_eq(sp_spm_encode(t, "\xff", 1, &ids, &n, &err), SP_ERR_DATA);
    cr_assert(strstr(err.msg, "UTF-8"));
    cr_assert_eq(sp_spm_vocab_size(t), 12);
    sp_spm_free(t);
    sp_spm_free(NULL);
}

static void expect_vocab_error(const char *v, const char *want) {
    sp_spm *t = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_spm_parse(v, strlen(v), "v.json", &t, &err), SP_ERR_FORMAT, "accepted %s", v);
    cr_assert_null(t);
    cr_assert(strstr(err.msg, want), "'%s' lacks '%s'", err.msg, want);
    cr_assert(!strchr(err.msg, '\n'));
}

Test(spm, malformed_vocabularies_are_refused) {
    expect_vocab_error("[", "not valid JSON");
    expect_vocab_error("{}", "expected a JSON array");
    expect_vocab_error("[" RESERVED "]", "expected a JSON array of 7..");
    expect_vocab_error("[" RESERVED ",[\"x\"]]", "entry 6 is not a [piece string, score");
    expect_vocab_error("[" RESERVED ",[\"x\",\"1\"]]", "entry 6 is not");
    expect_vocab_error("[" RESERVED ",[2,1]]", "entry 6 is not");
    expect_vocab_error("[" RESERVED ",[\"\xff\",1]]", "entry 6: piece is not valid UTF-8");
    expect_vocab_error("[[\"\",0],[\"<s>\",0],[\"</s>\",0],[\"a\",0],[\"b\",0],[\"c\",0],[\"x\",1]]",
                       "entry 0 (the unknown piece) is empty");
}

/* ---- sentences ------------------------------------------------------------------------------- */
Test(sentences, split_rule) {
    const char *text = "Hi there. \"Go!\" she said.  Ok?\nMr.Smith came \xE2\x80\x9CYes.\xE2\x80\x9D He left"
                       "\n<|endoftext|>\n  New story\n\n<|endoftext|>\n";
    const char *want[] = {"Hi there.", "\"Go!\"", "she said.", "Ok?", "Mr.Smith came \xE2\x80\x9CYes.\xE2\x80\x9D",
                          "He left", "New story"};
    char **s = NULL;
    int n = 0;
    sp_error err = {0};
    cr_assert_eq(sp_sentences_split(text, strlen(text), &s, &n, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(n, 7, "%d sentences", n);
    for (int i = 0; i < n; i++) cr_assert_str_eq(s[i], want[i]);
    sp_sentences_free(s, n);
    cr_assert_eq(sp_sentences_split(" \n<|endoftext|> ", 16, &s, &n, &err), SP_ERR_DATA);
}

/* ---- the forward pass with operators ------------------------------------------------------------ */
typedef struct enc_fixture {
    sp_encoder *e;
    sp_spm *t;
    sp_encoder_corpus c;
} enc_fixture;

/* The encoder and the first n sentences of the dev text; 0 when the shared files are absent. */
static int enc_setup(enc_fixture *f, int n) {
    char mbuf[4096], dbuf[4096];
    const char *mj = th_shared_path("models/use-lite/model.json", mbuf, sizeof mbuf);
    const char *dev = th_shared_path("data/tinystories-valid-dev.txt", dbuf, sizeof dbuf);
    if (!mj || !dev) return 0;
    char dir[4096], vpath[4200];
    snprintf(dir, sizeof dir, "%.*s", (int)(strlen(mj) - strlen("/model.json")), mj);
    snprintf(vpath, sizeof vpath, "%s/vocab.json", dir);
    sp_error err = {0};
    cr_assert_eq(sp_encoder_load(dir, &f->e, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(sp_spm_load(vpath, &f->t, &err), SP_OK, "%s", err.msg);
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(sp_read_file(dev, &text, &len, &err), SP_OK);
    char **s = NULL;
    int ns = 0;
    cr_assert_eq(sp_sentences_split(text, len, &s, &ns, &err), SP_OK);
    free(text);
    cr_assert_geq(ns, n);
    cr_assert_eq(sp_encoder_corpus_build(f->t, s, n, &f->c, &err), SP_OK, "%s", err.msg);
    sp_sentences_free(s, ns);
    return 1;
}
static void enc_teardown(enc_fixture *f) {
    sp_encoder_corpus_free(&f->c);
    sp_spm_free(f->t);
    sp_encoder_free(f->e);
}
#define NEED_ENC(f, n)                                                                         \
    enc_fixture f = {0};                                                                       \
    if (!enc_setup(&f, n)) cr_skip_test("models/use-lite or the dev text not found (set SPRINT_SHARED)")

static sp_attn_op *sprint_op(double delta, int msb_bits) {
    sp_config cfg;
    sp_config_defaults(&cfg);
    cfg.quant_msb_bits = msb_bits;
    sp_thresholds *t = sp_thresholds_new("onchip", 2, 4, 0);
    t->delta = delta;
    sp_op_request req = {.mode = "sprint", .cfg = &cfg, .thresholds = t};
    sp_attn_op *op = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_attn_op_create(&req, 2, 4, &op, &err), SP_OK, "%s", err.msg);
    sp_thresholds_free(t);
    return op;
}

/* Padding: a batch padded to its longest sentence gives the same bits as one sentence at a
 * time (dense reference and SPRINT), and padding pairs are never counted. */
Test(encoder_ops, padding_mask_changes_nothing, .timeout = 120) {
    NEED_ENC(f, 12);
    int d = 512, B = f.c.n;
    float *one = malloc((size_t)B * d * sizeof *one), *bat = malloc((size_t)B * d * sizeof *bat);
    sp_error err = {0};
    for (int pass = 0; pass < 2; pass++) {
        sp_attn_op *op1 = pass ? sprint_op(3.0, 4) : sp_attn_dense_create(2, 4);
        sp_attn_op *opb = pass ? sprint_op(3.0, 4) : sp_attn_dense_create(2, 4);
        for (int b = 0; b < B; b++) {
            const int *p = f.c.ids[b];
            cr_assert_eq(sp_encoder_embed(f.e, &p, &f.c.len[b], 1, op1, NULL, b, one + (size_t)b * d, NULL, &err), SP_OK,
                         "%s", err.msg);
        }
        cr_assert_eq(sp_encoder_embed(f.e, (const int *const *)f.c.ids, f.c.len, B, opb, NULL, 0, bat, NULL, &err), SP_OK,
                     "%s", err.msg);
        int maxlen = 0;
        double pairs = 0;
        for (int b = 0; b < B; b++) {
            pairs += 4.0 * f.c.len[b] * f.c.len[b];
            if (f.c.len[b] > maxlen) maxlen = f.c.len[b];
        }
        cr_assert_gt(maxlen * B * maxlen * 4.0, pairs, "the batch has no padding to test");
        for (int i = 0; i < B * d; i++)
            cr_assert_eq(one[i], bat[i], "%s: element %d differs with padding: %g vs %g", pass ? "sprint" : "dense", i,
                         one[i], bat[i]);
        sp_attn_stats s1, sb;
        sp_attn_stats_total(op1, &s1);
        sp_attn_stats_total(opb, &sb);
        cr_assert_eq(sb.pairs_visible, 2 * pairs, "visible pairs %g, expected %g (2 layers)", sb.pairs_visible, 2 * pairs);
        cr_assert_eq(s1.pairs_kept, sb.pairs_kept);
        cr_assert_eq(s1.new_fetch, sb.new_fetch);
        sp_attn_op_free(op1);
        sp_attn_op_free(opb);
    }
    free(one);
    free(bat);
    enc_teardown(&f);
}

/* The evaluation's figures respond to pruning: nothing pruned = cosine 1 and error 0 per
 * layer; aggressive pruning lowers the cosine and raises the error. */
Test(encoder_ops, accuracy_of_an_operator, .timeout = 180) {
    NEED_ENC(f, 24);
    sp_error err = {0};
    sp_encoder_eval_result r;
    sp_attn_op *dense = sp_attn_dense_fast_create(2, 4);
    cr_assert_eq(sp_encoder_eval(f.e, &f.c, dense, 5, NULL, NULL, NULL, &r, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(r.sentences, 24);
    cr_assert_geq(r.cos_min, 0.999999, "fast dense vs reference: min cosine %.8f", r.cos_min);
    cr_assert_lt(r.attn_rel_err[0], 1e-5);
    cr_assert_eq(sp_attn_stats_kept_fraction(&r.attn), 1.0);
    sp_attn_op_free(dense);

    sp_attn_op *loose = sprint_op(1000.0, 4), *tight = sprint_op(0.25, 4);
    sp_encoder_eval_result rl, rt;
    cr_assert_eq(sp_encoder_eval(f.e, &f.c, loose, 5, NULL, NULL, NULL, &rl, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(sp_encoder_eval(f.e, &f.c, tight, 5, NULL, NULL, NULL, &rt, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(sp_attn_stats_kept_fraction(&rl.attn), 1.0);
    cr_assert_geq(rl.cos_mean, 0.9999, "nothing pruned, 8-bit arithmetic: cosine %.6f", rl.cos_mean);
    cr_assert_lt(sp_attn_stats_kept_fraction(&rt.attn), 0.5);
    cr_assert_lt(rt.cos_mean, 0.999, "delta 0.25 nats pruned but cosine %.6f", rt.cos_mean);
    cr_assert_leq(rt.cos_min, rt.cos_mean);
    for (int l = 0; l < 2; l++)
        cr_assert_gt(rt.attn_rel_err[l], 10 * rl.attn_rel_err[l], "layer %d: error %.3g (tight) vs %.3g (loose)", l,
                     rt.attn_rel_err[l], rl.attn_rel_err[l]);
    sp_attn_op_free(loose);
    sp_attn_op_free(tight);
    enc_teardown(&f);
}

Test(encoder_ops, calibration_meets_its_target, .timeout = 300) {
    NEED_ENC(f, 24);
    sp_config cfg;
    sp_config_defaults(&cfg);
    cfg.policy_calib_iters = 6;
    sp_error err = {0};
    sp_thresholds *t = NULL;
    cr_assert_eq(sp_encoder_calibrate(f.e, &f.c, &cfg, "sprint", 0.995, 8, NULL, NULL, &t, &err), SP_OK, "%s",
                 err.msg);
    cr_assert(t->delta > 0 && t->delta < 32, "delta %g", t->delta);
    sp_attn_op *op = sprint_op(t->delta, 4);
    sp_encoder_eval_result r;
    cr_assert_eq(sp_encoder_eval(f.e, &f.c, op, 8, NULL, NULL, NULL, &r, &err), SP_OK);
    cr_assert_geq(r.cos_mean, 0.995, "calibrated delta %.3f gives cosine %.5f on its own sentences", t->delta, r.cos_mean);
    cr_assert_lt(sp_attn_stats_kept_fraction(&r.attn), 1.0);
    sp_attn_op_free(op);
    /* one bisection step less pruning would have been enough too: the step below fails */
    op = sprint_op(t->delta - 32.0 / 64, 4);
    cr_assert_eq(sp_encoder_eval(f.e, &f.c, op, 8, NULL, NULL, NULL, &r, &err), SP_OK);
    cr_assert_lt(r.cos_mean, 0.995, "delta %.3f also meets the target: calibration is not the smallest", t->delta - 0.5);
    sp_attn_op_free(op);
    sp_thresholds_free(t);
    strcpy(cfg.policy_kind, "layer");
    cr_assert_eq(sp_encoder_calibrate(f.e, &f.c, &cfg, "sprint", 0.995, 8, NULL, NULL, &t, &err), SP_ERR_CONFIG);
    enc_teardown(&f);
}

/* ---- the CLI ----------------------------------------------------------------------------------- */
Test(encoder_cli, eval_json_and_errors, .timeout = 300) {
    TH_NEED_SHARED(mj, "models/use-lite/model.json");
    char dir[4096], args[8192], out[16384], errb[4096];
    snprintf(dir, sizeof dir, "%.*s", (int)(strlen(mj) - strlen("/model.json")), mj);
    snprintf(args, sizeof args,
             "eval --model %s --attention sprint --json --quiet --set encoder.calib_sentences=16 "
             "--set encoder.max_sentences=24 --set policy.calib_iters=4",
             dir);
    int rc = th_run_sprint(args, out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, errb);
    cJSON *j = cJSON_Parse(out);
    cr_assert_not_null(j, "not JSON: %s", out);
    const char *keys[] = {"embedding_cosine_mean", "embedding_cosine_min", "kept_fraction", "mem_kept_fraction",
                          "new_fetch_fraction", "delta", "fraction_below_0_99"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(j, keys[i])), "no number '%s' in %s", keys[i], out);
    cr_assert_eq(cJSON_GetObjectItem(j, "sentences")->valueint, 24);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "heads")), 8);
    double c = cJSON_GetObjectItem(j, "embedding_cosine_mean")->valuedouble;
    cr_assert(c > 0.9 && c <= 1.0 + 1e-9, "cosine %g", c);
    cJSON_Delete(j);
    /* text table has units */
    snprintf(args, sizeof args, "eval --model %s --quiet --set encoder.calib_sentences=4 --set encoder.max_sentences=4", dir);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, errb, sizeof errb), 0, "%s", errb);
    cr_assert(strstr(out, "embedding cosine mean") && strstr(out, "to dense") && strstr(out, "of visible pairs"), "%s",
              out);
    /* a separate calibration text: too short is an error; else all evaluated sentences are kept */
    const char *cal = th_temp_text("The cat sat. The dog ran! Was it fun?");
    snprintf(args, sizeof args, "eval --model %s --attention sprint --quiet --set encoder.calib_text=%s", dir, cal);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, errb, sizeof errb), 1);
    cr_assert(strstr(errb, "has 3 sentences, encoder.calib_sentences = 256"), "%s", errb);
    snprintf(args, sizeof args,
             "eval --model %s --attention sprint --quiet --json --set encoder.calib_text=%s --set encoder.calib_sentences=3 "
             "--set encoder.max_sentences=5 --set policy.calib_iters=3",
             dir, cal);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, errb, sizeof errb), 0, "%s", errb);
    j = cJSON_Parse(out);
    cr_assert_not_null(j);
    cr_assert_eq(cJSON_GetObjectItem(j, "calib_sentences")->valueint, 3);
    cr_assert_eq(cJSON_GetObjectItem(j, "sentences")->valueint, 5);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "calib_text")->valuestring, cal);
    cJSON_Delete(j);
    /* a broken model directory: one line, exit 1 */
    size_t sz[1] = {4};
    const char *bad = make_dir("{\"weightsManifest\":[{\"paths\":[\"s1\"],\"weights\":[{\"name\":\"x\",\"shape\":[2],"
                               "\"dtype\":\"float32\"}]}]}",
                               sz, 1);
    snprintf(args, sizeof args, "eval --model %s", bad);
    rc = th_run_sprint(args, out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 1, "exit %d", rc);
    cr_assert(strstr(errb, "hold 4 bytes, its weights declare 8"), "%s", errb);
    cr_assert_eq(strchr(errb, '\n'), errb + strlen(errb) - 1, "not one line: %s", errb);
}
