/* fuzz_tfjs_manifest.c: libFuzzer target for the encoder's file parsers (src/model/tfjs.c,
 * src/model/spm.c). The input is parsed as a TF.js model.json weights manifest and as a
 * vocab.json; when it is a vocabulary, a few texts are tokenized with it. Either parser must
 * return SP_OK or a one-line error, never crash, leak or read out of bounds.
 *   clang -fsanitize=fuzzer,address,undefined -Iinclude -Isrc tests/fuzz/fuzz_tfjs_manifest.c \
 *         src/model/tfjs.c src/model/spm.c src/model/eval.c src/common/common.c ... (see
 *         docs/model.md) $(pkg-config --cflags --libs libcjson icu-uc)
 * Seeds: tests/fuzz/corpus/tfjs_manifest/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sprint/common.h"
#include "sprint/encoder.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sp_error err = {0};
    sp_tfjs_model *m = NULL;
    if (sp_tfjs_manifest_parse((const char *)data, size, "fuzz", &m, &err) == SP_OK) {
        SP_ASSERT(m != NULL);
        for (int i = 0; i < sp_tfjs_count(m); i++) {
            const sp_tfjs_tensor *t = sp_tfjs_get(m, i);
            SP_ASSERT(sp_tfjs_find(m, t->name) == t && t->data == NULL);
        }
        sp_tfjs_free(m);
    } else {
        SP_ASSERT(m == NULL && err.msg[0] && !strchr(err.msg, '\n'));
    }
    sp_spm *v = NULL;
    if (sp_spm_parse((const char *)data, size, "fuzz", &v, &err) == SP_OK) {
        static const char *texts[] = {"", "Once upon a time, a cat.", "ab ab  \xF0\x9F\x98\x80 \xEF\xAC\x81", "\xff"};
        for (size_t k = 0; k < sizeof texts / sizeof *texts; k++) {
            int *ids = NULL, n = 0;
            if (sp_spm_encode(v, texts[k], strlen(texts[k]), &ids, &n, &err) == SP_OK)
                for (int i = 0; i < n; i++) SP_ASSERT(ids[i] >= 0 && ids[i] < sp_spm_vocab_size(v));
            free(ids);
        }
        sp_spm_free(v);
    } else {
        SP_ASSERT(v == NULL);
    }
    return 0;
}
