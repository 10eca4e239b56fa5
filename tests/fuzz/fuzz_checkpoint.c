/* fuzz_checkpoint.c: the llama2.c checkpoint loader (src/model/checkpoint.c) on arbitrary
 * bytes. Property: sp_model_load either fails with a one-line message or returns a model whose
 * header is consistent (every field positive, head_dim * n_heads == dim); it never crashes,
 * never reads out of bounds, never allocates more than the file holds. */
#include "fuzz_util.h"
#include "sprint/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fuzz_write(0, data, size);
    sp_model *m = NULL;
    sp_error err = {0};
    sp_status s = sp_model_load(p, &m, &err);
    if (s == SP_OK) {
        const sp_model_info *i = sp_model_get_info(m);
        FUZZ_CHECK(i->dim > 0 && i->n_heads > 0 && i->head_dim * i->n_heads == i->dim && i->vocab_size > 0 &&
                       i->seq_len > 0 && i->n_layers > 0,
                   "inconsistent header accepted");
        FUZZ_CHECK((size_t)i->vocab_size * (size_t)i->dim * 4 < size, "weights larger than the file");
        sp_model_free(m);
    } else {
        FUZZ_CHECK(m == NULL && err.msg[0] && !strchr(err.msg, '\n'), "failure without a one-line message");
    }
    return 0;
}
