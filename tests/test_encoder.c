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
    double worst = 1;
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
        cr_assert_geq(c, 0.9999, "'%.60s': cosine to TF.js %.7f < 0.9999", text, c);
        free(ids);
        n_checked++;
    }
    cr_assert_geq(n_checked, 36, "only %d sentences checked", n_checked);
    cr_assert_geq(n_long, 1, "no sentence longer than 128 tokens in the fixture");
    cr_log_info("dense vs TF.js: min cosine %.8f over %d sentences", worst, n_checked);
    sp_attn_op_free(op);
    cJSON_Delete(fx);
    sp_spm_free(t);
    sp_encoder_free(e);
}
