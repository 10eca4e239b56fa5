/* fuzz_tokenizer.c: the llama2.c tokenizer loader, encoder and decoder (src/model/tokenizer.c).
 *
 * Input layout: 2 bytes little-endian = vocabulary size the "model" expects (1..1024), then
 * the tokenizer.bin bytes. When the file loads, a fixed text and the file's own bytes are
 * encoded, and every token is decoded after every possible predecessor class (BOS and not).
 * Property: no crash; encoded ids are in [0, vocab); decode never returns NULL. */
#include "fuzz_util.h"
#include "sprint/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    int vocab = 1 + ((data[0] | data[1] << 8) % 1024);
    const char *p = fuzz_write(0, data + 2, size - 2);
    sp_tokenizer *t = NULL;
    sp_error err = {0};
    if (sp_tokenizer_load(p, vocab, &t, &err) != SP_OK) {
        FUZZ_CHECK(t == NULL && err.msg[0] && !strchr(err.msg, '\n'), "failure without a one-line message");
        return 0;
    }
    FUZZ_CHECK(sp_tokenizer_vocab_size(t) == vocab, "vocab size");
    static const char text[] = "Once upon a time, \xc3\xa9t\xc3\xa9 <0x41> a cat\n\xe2\x82\xac!";
    const char *texts[2] = {text, (const char *)data + 2};
    size_t lens[2] = {sizeof text - 1, size - 2};
    for (int k = 0; k < 2; k++) {
        int *tok = NULL, n = 0;
        if (sp_tokenizer_encode(t, texts[k], lens[k], 1, 1, &tok, &n, &err) == SP_OK) {
            for (int i = 0; i < n; i++) FUZZ_CHECK(tok[i] >= 0 && tok[i] < vocab, "token %d out of range", tok[i]);
            free(tok);
        }
    }
    for (int i = 0; i < vocab; i++) {
        FUZZ_CHECK(sp_tokenizer_decode(t, 1, i) != NULL, "decode after BOS");
        FUZZ_CHECK(sp_tokenizer_decode(t, 5 % vocab, i) != NULL, "decode");
    }
    sp_tokenizer_free(t);
    return 0;
}
