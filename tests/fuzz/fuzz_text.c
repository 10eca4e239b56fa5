/* fuzz_text.c: splitting and encoding an evaluation text (sp_corpus_from_text in
 * src/model/eval.c, through the tokenizer's UTF-8 validation and BPE merges).
 *
 * The tokenizer is fixed: the 3 control tokens, 256 byte tokens <0xXX> and a few merges
 * (" a", "a b", "the", ...), written once per process. Property: no crash; either a one-line
 * error or a corpus whose stories all start with BOS, hold ids in range, and whose target
 * count is the sum of (len - 1). */
#include "fuzz_util.h"
#include "sprint/model.h"

static sp_tokenizer *tok;

static void put_token(FILE *f, float score, const char *s, int len) {
    fwrite(&score, 4, 1, f);
    fwrite(&len, 4, 1, f);
    fwrite(s, 1, (size_t)len, f);
}

static sp_tokenizer *make_tokenizer(int *vocab) {
    static const char *merges[] = {" ", "a", "b", "e", "h", "t", " a", "ab", "th", "the", " the", "he", "\xc3\xa9"};
    const int nm = (int)(sizeof merges / sizeof merges[0]);
    const char *p = fuzz_path(1);
    FILE *f = fopen(p, "wb");
    int maxlen = 8;
    fwrite(&maxlen, 4, 1, f);
    put_token(f, 0, "<unk>", 5);
    put_token(f, 0, "\n<s>\n", 5);
    put_token(f, 0, "\n</s>\n", 6);
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        put_token(f, 0, s, 6);
    }
    for (int i = 0; i < nm; i++) put_token(f, (float)(-i), merges[i], (int)strlen(merges[i]));
    fclose(f);
    *vocab = 259 + nm;
    sp_tokenizer *t = NULL;
    sp_error err;
    if (sp_tokenizer_load(p, *vocab, &t, &err) != SP_OK) {
        fprintf(stderr, "fuzz_text: %s\n", err.msg);
        abort();
    }
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int vocab;
    if (!tok) tok = make_tokenizer(&vocab);
    sp_corpus c;
    sp_error err = {0};
    int max_stories = size ? data[0] % 4 : 0;
    if (sp_corpus_from_text(tok, (const char *)data, size, max_stories, &c, &err) != SP_OK) {
        FUZZ_CHECK(err.msg[0] && !strchr(err.msg, '\n'), "failure without a one-line message");
        return 0;
    }
    long targets = 0;
    FUZZ_CHECK(c.n > 0 && (max_stories == 0 || c.n <= max_stories), "story count %d", c.n);
    for (int i = 0; i < c.n; i++) {
        FUZZ_CHECK(c.len[i] >= 2 && c.tokens[i][0] == 1, "story %d does not start with BOS", i);
        for (int j = 0; j < c.len[i]; j++)
            FUZZ_CHECK(c.tokens[i][j] >= 0 && c.tokens[i][j] < vocab, "token out of range");
        targets += c.len[i] - 1;
    }
    FUZZ_CHECK(targets == c.total_targets, "total_targets");
    sp_corpus_free(&c);
    return 0;
}
