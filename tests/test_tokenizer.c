/* test_tokenizer.c: does the tokenizer encode exactly as llama2.c's encode() does, decode back
 * to the text, and refuse invalid input? Expected ids were derived once with a direct Python
 * port of llama2.c's encode() (the quadratic best-pair loop) on tok512.bin. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "sprint/model.h"
#include "tiny_model.h"

static sp_tokenizer *tok512(void) {
    char buf[4096];
    const char *p = th_shared_path("models/tok512.bin", buf, sizeof buf);
    if (!p) return NULL;
    sp_tokenizer *t = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_tokenizer_load(p, 512, &t, &err), SP_OK, "%s", err.msg);
    return t;
}
#define NEED_TOK512(t)                                                                  \
    sp_tokenizer *t = tok512();                                                         \
    if (!t) cr_skip_test("models/tok512.bin not found (set SPRINT_SHARED)")

static void expect_ids(const sp_tokenizer *t, const char *text, const int *want, int nwant) {
    int *ids = NULL, n = 0;
    sp_error err = {0};
    cr_assert_eq(sp_tokenizer_encode(t, text, strlen(text), 1, 0, &ids, &n, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(n, nwant, "'%s': %d tokens, expected %d", text, n, nwant);
    for (int i = 0; i < n; i++) cr_assert_eq(ids[i], want[i], "'%s': token %d is %d, expected %d", text, i, ids[i], want[i]);
    /* decoding restores the text */
    char out[1024] = "";
    for (int i = 1; i < n; i++) strcat(out, sp_tokenizer_decode(t, ids[i - 1], ids[i]));
    cr_assert_str_eq(out, text);
    free(ids);
}

Test(tok512, known_encodings) {
    NEED_TOK512(t);
    int a[] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426};
    expect_ids(t, "Once upon a time, there was a little girl named Lily.", a, 16);
    int b[] = {1, 346, 306, 414, 263, 304, 341};
    expect_ids(t, "Hello world", b, 7);
    /* code points absent from the vocabulary fall back to their bytes + 3 */
    int c[] = {1, 410, 485, 233, 154, 168, 233, 159, 175, 243, 162, 156, 133, 443};
    expect_ids(t, "\xc3\xa9\xe6\x97\xa5\xe6\x9c\xac\xf0\x9f\x99\x82!", c, 14);
    int d[] = {1, 261};
    expect_ids(t, "a", d, 2);
    int e[] = {1, 410, 410, 259, 424, 414, 410, 262, 427, 412, 331, 419, 13, 416, 411, 424, 421, 271, 411};
    expect_ids(t, "  two  spaces\nnewline", e, 19);
    int f[] = {1, 291, 376, 400, 428, 352, 303, 426, 13, 13, 447, 313, 429, 294, 436, 336, 467, 270, 417, 443};
    expect_ids(t, "The little dog ran.\n\nA \"cat\" said: hi!", f, 20);
    sp_tokenizer_free(t);
}

Test(tok512, empty_text_bos_eos) {
    NEED_TOK512(t);
    int *ids = NULL, n = -1;
    cr_assert_eq(sp_tokenizer_encode(t, "", 0, 1, 1, &ids, &n, NULL), SP_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(ids[0], 1);
    cr_assert_eq(ids[1], 2);
    free(ids);
    cr_assert_eq(sp_tokenizer_encode(t, "", 0, 0, 0, &ids, &n, NULL), SP_OK);
    cr_assert_eq(n, 0, "no BOS, no text: no tokens (no dummy prefix either)");
    free(ids);
    sp_tokenizer_free(t);
}

Test(tok512, decode_byte_tokens) {
    NEED_TOK512(t);
    cr_assert_str_eq(sp_tokenizer_decode(t, 5, 13), "\n"); /* <0x0A> */
    cr_assert_str_eq(sp_tokenizer_decode(t, 5, 3 + 'A'), "A");
    /* the leading space of the first piece after BOS is dropped, not elsewhere */
    cr_assert_str_eq(sp_tokenizer_decode(t, 1, 403), "Once");
    cr_assert_str_eq(sp_tokenizer_decode(t, 5, 403), " Once");
    cr_assert_str_eq(sp_tokenizer_decode(t, 5, 512), "", "out-of-range token decodes to nothing");
    sp_tokenizer_free(t);
}

/* Every story of the dev text round-trips, and the corpus has the token count that the Python
 * port of llama2.c's encode() gives (59078 tokens including one BOS per story, 178 stories). */
Test(tok512, dev_text_round_trip_and_count) {
    NEED_TOK512(t);
    TH_NEED_SHARED(p, "data/tinystories-valid-dev.txt");
    char *text;
    size_t len;
    cr_assert_eq(sp_read_file(p, &text, &len, NULL), SP_OK);
    sp_corpus c;
    sp_error err = {0};
    cr_assert_eq(sp_corpus_from_text(t, text, len, 0, &c, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(c.n, 178);
    long total = 0;
    for (int i = 0; i < c.n; i++) total += c.len[i];
    cr_assert_eq(total, 59078);
    cr_assert_eq(c.total_targets, 59078 - 178);
    cr_assert_eq(c.len[0], 170);
    int first[12] = {1, 301, 427, 309, 426, 301, 427, 309, 394, 265, 262, 415};
    for (int i = 0; i < 12; i++) cr_assert_eq(c.tokens[0][i], first[i]);
    /* decode story 1 (the second one) back and find it in the text */
    size_t cap = 1 << 16, n = 0;
    char *dec = malloc(cap);
    for (int i = 1; i < c.len[1]; i++) {
        const char *piece = sp_tokenizer_decode(t, c.tokens[1][i - 1], c.tokens[1][i]);
        size_t pl = strlen(piece);
        cr_assert_lt(n + pl, cap);
        memcpy(dec + n, piece, pl);
        n += pl;
    }
    dec[n] = 0;
    cr_assert_gt(n, 100);
    cr_assert(strstr(text, dec) != NULL, "decoded story 1 is not in the text: '%.80s...'", dec);
    free(dec);
    free(text);
    sp_corpus_free(&c);
    sp_tokenizer_free(t);
}

Test(tok512, invalid_utf8_is_a_data_error) {
    NEED_TOK512(t);
    const char *bad[] = {"abc\xff", "\xc3", "x\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ok\x80", "\xe2\x82"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int *ids = (int *)1, n = 7;
        sp_error err = {0};
        cr_assert_eq(sp_tokenizer_encode(t, bad[i], strlen(bad[i]), 1, 0, &ids, &n, &err), SP_ERR_DATA, "case %zu", i);
        cr_assert(strstr(err.msg, "UTF-8"), "%s", err.msg);
        cr_assert_null(ids);
        cr_assert_eq(n, 0);
    }
    /* an embedded NUL is refused too (llama2.c would silently stop there) */
    int *ids = NULL, n = 0;
    cr_assert_eq(sp_tokenizer_encode(t, "a\0b", 3, 1, 0, &ids, &n, NULL), SP_ERR_DATA);
    sp_tokenizer_free(t);
}

/* A long text encodes in well under a second (the merge loop is O(n log n), not quadratic). */
Test(tok512, long_text_is_fast) {
    NEED_TOK512(t);
    size_t n = 400000;
    char *s = malloc(n + 1);
    const char *src = "The little dog ran to the park and played with a ball. ";
    size_t sl = strlen(src);
    for (size_t i = 0; i < n; i++) s[i] = src[i % sl];
    s[n] = 0;
    double t0 = sp_now_seconds();
    int *ids = NULL, nt = 0;
    cr_assert_eq(sp_tokenizer_encode(t, s, n, 1, 0, &ids, &nt, NULL), SP_OK);
    double el = sp_now_seconds() - t0;
    cr_assert_lt(nt, (int)(n / 2));
    cr_assert_lt(el, 20.0, "encoding %zu bytes took %.1f s", n, el); /* generous: ASan, shared machine */
    free(ids);
    free(s);
    sp_tokenizer_free(t);
}

/* ---- a synthetic vocabulary: merge order and tie-breaking, independent of shared files ---- */
/* ids: 0 <unk>, 1 "\n<s>\n", 2 "\n</s>\n", 3..258 <0xXX>, 259 " ", 260 "a", 261 "b", 262 "ab",
 * 263 "ba", 264 " a" */
static const char *synth_tok(float s_ab, float s_ba, float s_sa) {
    static unsigned char buf[8192];
    size_t off = 0;
    int32_t maxlen = 6;
    memcpy(buf, &maxlen, 4);
    off = 4;
    char piece[16];
    for (int i = 0; i < 265; i++) {
        float sc = 0;
        if (i == 0) strcpy(piece, "<unk>");
        else if (i == 1) strcpy(piece, "\n<s>\n");
        else if (i == 2) strcpy(piece, "\n</s>\n");
        else if (i < 259) snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        else {
            const char *names[6] = {" ", "a", "b", "ab", "ba", " a"};
            float scores[6] = {-1, -2, -3, s_ab, s_ba, s_sa};
            strcpy(piece, names[i - 259]);
            sc = scores[i - 259];
        }
        tiny_tok_record(buf, &off, piece, sc);
    }
    return tiny_track(th_temp_file(buf, off));
}

static void synth_expect(float s_ab, float s_ba, float s_sa, const char *text, const int *want, int nwant) {
    sp_tokenizer *t = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_tokenizer_load(synth_tok(s_ab, s_ba, s_sa), 265, &t, &err), SP_OK, "%s", err.msg);
    int *ids = NULL, n = 0;
    cr_assert_eq(sp_tokenizer_encode(t, text, strlen(text), 1, 0, &ids, &n, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(n, nwant, "'%s': %d tokens, expected %d", text, n, nwant);
    for (int i = 0; i < n; i++) cr_assert_eq(ids[i], want[i], "'%s' token %d: %d, expected %d", text, i, ids[i], want[i]);
    free(ids);
    sp_tokenizer_free(t);
}

Test(synthetic, merge_order_and_ties) {
    /* " aba": " a" scores highest: [" a", "b", "a"] then "ba" -> [" a", "ba"] */
    int w1[] = {1, 264, 263};
    synth_expect(1, 1, 5, "aba", w1, 3);
    /* " a" unattractive and "ab" == "ba": the leftmost of the tied pairs wins: " ", "ab", "a";
     * then " a"? no: " " + "ab" is not a token; stops */
    int w2[] = {1, 259, 262, 260};
    synth_expect(1, 1, -1e11f, "aba", w2, 4);
    /* "ba" better than "ab" */
    int w3[] = {1, 259, 260, 263};
    synth_expect(1, 2, -1e11f, "aba", w3, 4);
    /* unknown characters fall back to bytes + 3 */
    int w4[] = {1, 259, 'z' + 3, 262};
    synth_expect(1, 0, -1e11f, "zab", w4, 4);
}

Test(synthetic, vocab_size_must_match) {
    const char *p = synth_tok(1, 1, 1);
    sp_tokenizer *t = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_tokenizer_load(p, 264, &t, &err), SP_ERR_FORMAT);
    cr_assert(strstr(err.msg, "265 tokens") && strstr(err.msg, "264"), "%s", err.msg);
    cr_assert_eq(sp_tokenizer_load(p, 266, &t, &err), SP_ERR_FORMAT);
    cr_assert_null(t);
    cr_assert_eq(sp_tokenizer_load(p, 265, &t, &err), SP_OK);
    cr_assert_eq(sp_tokenizer_vocab_size(t), 265);
    sp_tokenizer_free(t);
}

/* ---- the heap-based merges against llama2.c's quadratic loop, written here ---------------
 * The reference reads tokenizer.bin itself and rescans every adjacent pair after every merge,
 * keeping the leftmost pair of highest score (llama2.c's strict '>'), as run.c does. */
typedef struct naive_tok {
    int V;
    char **str;
    float *score;
    int *order; /* ids sorted by string, for bsearch */
} naive_tok;

static const naive_tok *naive_cur;
static int cmp_ids(const void *a, const void *b) {
    return strcmp(naive_cur->str[*(const int *)a], naive_cur->str[*(const int *)b]);
}
static int cmp_key(const void *key, const void *b) { return strcmp(key, naive_cur->str[*(const int *)b]); }

static int naive_lookup(const naive_tok *nt, const char *s) {
    naive_cur = nt;
    const int *e = bsearch(s, nt->order, (size_t)nt->V, sizeof(int), cmp_key);
    return e ? *e : -1;
}

static void naive_load(naive_tok *nt, const char *path, int V) {
    char *raw;
    size_t len, off = 4;
    cr_assert_eq(sp_read_file(path, &raw, &len, NULL), SP_OK);
    nt->V = V;
    nt->str = calloc((size_t)V, sizeof *nt->str);
    nt->score = calloc((size_t)V, sizeof *nt->score);
    nt->order = calloc((size_t)V, sizeof *nt->order);
    for (int i = 0; i < V; i++) {
        int32_t l;
        memcpy(&nt->score[i], raw + off, 4);
        memcpy(&l, raw + off + 4, 4);
        nt->str[i] = calloc((size_t)l + 1, 1);
        memcpy(nt->str[i], raw + off + 8, (size_t)l);
        off += 8 + (size_t)l;
        nt->order[i] = i;
    }
    free(raw);
    naive_cur = nt;
    qsort(nt->order, (size_t)V, sizeof(int), cmp_ids);
}

static void naive_free(naive_tok *nt) {
    for (int i = 0; i < nt->V; i++) free(nt->str[i]);
    free(nt->str), free(nt->score), free(nt->order);
}

/* llama2.c encode() with bos = 1, eos = 0; returns the count (ids has room for len + 2). */
static int naive_encode(const naive_tok *nt, const char *text, int *ids) {
    int n = 0;
    ids[n++] = 1;
    if (text[0]) ids[n++] = naive_lookup(nt, " ");
    for (const char *c = text; *c;) {
        int cl = 1;
        while ((c[cl] & 0xC0) == 0x80 && cl < 4) cl++;
        char cp[5] = {0};
        memcpy(cp, c, (size_t)cl);
        int id = naive_lookup(nt, cp);
        if (id >= 0) ids[n++] = id;
        else
            for (int j = 0; j < cl; j++) ids[n++] = (unsigned char)cp[j] + 3;
        c += cl;
    }
    char buf[256];
    for (;;) {
        float best = -1e10f;
        int bi = -1, bid = -1;
        for (int i = 0; i + 1 < n; i++) {
            snprintf(buf, sizeof buf, "%s%s", nt->str[ids[i]], nt->str[ids[i + 1]]);
            int id = naive_lookup(nt, buf);
            if (id >= 0 && nt->score[id] > best) best = nt->score[id], bi = i, bid = id;
        }
        if (bi < 0) break;
        ids[bi] = bid;
        memmove(ids + bi + 1, ids + bi + 2, (size_t)(n - bi - 2) * sizeof *ids);
        n--;
    }
    return n;
}

Test(tok512, heap_merges_equal_llama2c_loop) {
    char buf[4096], tbuf[4096];
    const char *p = th_shared_path("models/tok512.bin", buf, sizeof buf);
    const char *tp = th_shared_path("data/tinystories-valid-dev.txt", tbuf, sizeof tbuf);
    if (!p || !tp) cr_skip_test("models/tok512.bin or the dev text not found (set SPRINT_SHARED)");
    sp_tokenizer *t = NULL;
    cr_assert_eq(sp_tokenizer_load(p, 512, &t, NULL), SP_OK);
    naive_tok nt;
    naive_load(&nt, p, 512);
    char *text;
    size_t len;
    cr_assert_eq(sp_read_file(tp, &text, &len, NULL), SP_OK);
    /* texts: pieces of the dev text (line by line, the first 12 KB), and strings of random
     * characters (ASCII the vocabulary merges, repeated letters that make ties, characters
     * outside it that take the byte fallback) */
    static const char *alphabet[] = {"a", "e", "t", "h", " ", "  ", "the", "ing", ".", ",", "\n", "é", "日", "🙂", "aa", "ee", "Z", "q", "l", "o", "s", "m", "p"};
    int *want = malloc(sizeof(int) * 20000), checked = 0;
    char *piece = malloc(16384);
    for (int k = 0; k < 400; k++) {
        if (k < 200) { /* line k of the text */
            const char *s = text;
            for (int line = 0; line < k && s; line++) {
                s = strchr(s, '\n');
                if (s) s++;
            }
            if (!s) continue;
            const char *e = strchr(s, '\n');
            size_t l = e ? (size_t)(e - s) : strlen(s);
            if (l > 4000) l = 4000;
            memcpy(piece, s, l);
            piece[l] = 0;
        } else {
            piece[0] = 0;
            int nparts = 1 + (int)(sp_hash64((uint64_t)k) % 60);
            for (int j = 0; j < nparts; j++)
                strcat(piece, alphabet[sp_hash64((uint64_t)k * 1000 + (uint64_t)j) % (sizeof alphabet / sizeof *alphabet)]);
        }
        int nw = naive_encode(&nt, piece, want);
        int *ids = NULL, n = 0;
        sp_error err = {0};
        cr_assert_eq(sp_tokenizer_encode(t, piece, strlen(piece), 1, 0, &ids, &n, &err), SP_OK, "%s", err.msg);
        cr_assert_eq(n, nw, "'%.60s': %d tokens, llama2.c loop %d", piece, n, nw);
        for (int i = 0; i < n; i++) cr_assert_eq(ids[i], want[i], "'%.60s' token %d: %d, llama2.c loop %d", piece, i, ids[i], want[i]);
        free(ids);
        checked++;
    }
    cr_assert_gt(checked, 300);
    free(piece), free(want), free(text);
    naive_free(&nt);
    sp_tokenizer_free(t);
}

/* Byte pieces: <0xXX> with hex digits of either case decode to the byte (llama2.c's sscanf
 * %X); anything else of that shape stays literal. */
Test(synthetic, decode_byte_pieces) {
    const char *pieces[] = {"<unk>", "<s>", "</s>", "<0x0a>", "<0xZZ>", "<0x4A>", "<0x4A", " x"};
    unsigned char buf[512];
    size_t off = 4;
    int32_t maxlen = 6;
    memcpy(buf, &maxlen, 4);
    for (int i = 0; i < 8; i++) tiny_tok_record(buf, &off, pieces[i], 0.0f);
    sp_tokenizer *t = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_tokenizer_load(tiny_track(th_temp_file(buf, off)), 8, &t, &err), SP_OK, "%s", err.msg);
    cr_assert_str_eq(sp_tokenizer_decode(t, 0, 3), "\n");
    cr_assert_str_eq(sp_tokenizer_decode(t, 0, 4), "<0xZZ>");
    cr_assert_str_eq(sp_tokenizer_decode(t, 0, 5), "J");
    cr_assert_str_eq(sp_tokenizer_decode(t, 0, 6), "<0x4A");
    cr_assert_str_eq(sp_tokenizer_decode(t, 1, 7), "x", "the leading space after BOS is dropped");
    cr_assert_str_eq(sp_tokenizer_decode(t, 0, 7), " x");
    cr_assert_str_eq(sp_tokenizer_decode(t, 0, -1), "");
    sp_tokenizer_free(t);
}
