/* test_bad_inputs.c: does every malformed input give a clear one-line error and a non-zero exit,
 * through the library and through `sprint eval` / `sprint generate`, without crashing or reading out of bounds
 * (the sanitizer build runs this file too)? */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "sprint/model.h"
#include "tiny_bitnet.h"
#include "tiny_model.h"

static const tiny_spec SPEC = {.dim = 16, .hidden = 24, .layers = 2, .heads = 4, .kv_heads = 2, .vocab = 30,
                               .seq_len = 8, .seed = 21};

/* Runs `sprint COMMAND --quiet ARGS`, expects exit code `code` and exactly one stderr line,
 * naming the command and containing `needle`, and nothing on stdout. */
static void cmd_fails(const char *command, const char *args, int code, const char *needle) {
    static char out[1 << 14], err[1 << 14];
    char cmd[4096], prefix[64];
    snprintf(cmd, sizeof cmd, "%s --quiet %s", command, args);
    snprintf(prefix, sizeof prefix, "sprint %s: error: ", command);
    int rc = th_run_sprint(cmd, out, sizeof out, err, sizeof err);
    cr_assert_eq(rc, code, "sprint %s: exit %d, expected %d; stderr: %s", cmd, rc, code, err);
    size_t nl = 0;
    for (const char *p = err; *p; p++) nl += *p == '\n';
    cr_assert_eq(nl, 1, "sprint %s: stderr is not one line: %s", cmd, err);
    cr_assert(!strncmp(err, prefix, strlen(prefix)), "stderr: %s", err);
    cr_assert(strstr(err, needle), "sprint %s: stderr lacks '%s': %s", cmd, needle, err);
    cr_assert_eq(out[0], 0, "nothing on stdout on failure: %s", out);
}

static void cli_fails(const char *args, int code, const char *needle) { cmd_fails("eval", args, code, needle); }

static void lib_model_fails(const char *path, sp_status want, const char *needle) {
    sp_model *m = (sp_model *)1;
    sp_error err = {0};
    sp_status s = sp_model_load(path, &m, &err);
    cr_assert_eq(s, want, "%s: status %s, expected %s (%s)", path, sp_status_name(s), sp_status_name(want), err.msg);
    cr_assert_null(m);
    cr_assert(strstr(err.msg, needle), "message lacks '%s': %s", needle, err.msg);
    cr_assert_null(strchr(err.msg, '\n'), "message is not one line: %s", err.msg);
}

Test(checkpoint, missing_file) {
    lib_model_fails("/nonexistent/model.bin", SP_ERR_IO, "/nonexistent/model.bin");
    cli_fails("--model /nonexistent/model.bin --tokenizer /nonexistent/t.bin --text /nonexistent/x.txt", 1,
              "cannot open checkpoint /nonexistent/model.bin");
}

Test(checkpoint, truncated) {
    float *w = tiny_weights(&SPEC);
    const char *p = tiny_write(&SPEC, w, -100);
    lib_model_fails(p, SP_ERR_FORMAT, "truncated");
    char a[512];
    snprintf(a, sizeof a, "--model %s --tokenizer x --text y", p);
    cli_fails(a, 1, "truncated");
    int32_t h[7] = {16, 24, 2, 4, 2, 30, 8};
    unsigned char small[10];
    memcpy(small, h, 10);
    lib_model_fails(tiny_track(th_temp_file(small, 10)), SP_ERR_FORMAT, "header");
    lib_model_fails(tiny_track(th_temp_file("", 0)), SP_ERR_FORMAT, "truncated");
    free(w);
}

Test(checkpoint, impossible_dimensions) {
    struct {
        int32_t h[7];
        const char *needle;
    } cases[] = {
        {{-16, 24, 2, 4, 2, 30, 8}, "dim = -16"},
        {{16, 0, 2, 4, 2, 30, 8}, "hidden_dim = 0"},
        {{16, 24, 0, 4, 2, 30, 8}, "n_layers = 0"},
        {{16, 24, 2, -4, 2, 30, 8}, "n_heads = -4"},
        {{16, 24, 2, 4, 2, 0, 8}, "vocab_size = 0"},
        {{16, 24, 2, 4, 2, (int32_t)0x80000000, 8}, "vocab_size"},
        {{16, 24, 2, 4, 2, 30, -1}, "seq_len = -1"},
        {{1000000000, 24, 2, 4, 2, 30, 8}, "dim = 1000000000"},
        {{16, 2000000000, 2, 4, 2, 30, 8}, "hidden_dim"},
        {{16, 24, 2, 4, 2, 30, 2000000000}, "seq_len"},
        {{16, 24, 2, 5, 5, 30, 8}, "n_heads = 5 does not divide dim = 16"},
        {{16, 24, 2, 32, 4, 30, 8}, "does not divide dim"},
        {{16, 24, 2, 4, 3, 30, 8}, "n_kv_heads = 3 does not divide n_heads = 4"},
        {{16, 24, 2, 4, 8, 30, 8}, "n_kv_heads = 8"},
        {{16, 24, 2, 16, 4, 30, 8}, "odd"}, /* head_dim 1: RoPE needs pairs */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *p = tiny_write_header(cases[i].h, 4096);
        lib_model_fails(p, SP_ERR_FORMAT, cases[i].needle);
    }
    const char *p = tiny_write_header(cases[0].h, 64);
    char a[512];
    snprintf(a, sizeof a, "--model %s --tokenizer x --text y", p);
    cli_fails(a, 1, "dim = -16");
    p = tiny_write_header(cases[10].h, 64);
    snprintf(a, sizeof a, "--model %s --tokenizer x --text y", p);
    cli_fails(a, 1, "does not divide");
}

Test(checkpoint, size_does_not_match_header) {
    float *w = tiny_weights(&SPEC);
    lib_model_fails(tiny_write(&SPEC, w, 4), SP_ERR_FORMAT, "does not match the header");
    lib_model_fails(tiny_write(&SPEC, w, 1), SP_ERR_FORMAT, "does not match the header");
    /* the separate-classifier flag on a file without a classifier */
    int32_t h[7] = {16, 24, 2, 4, 2, -30, 8};
    size_t nb = tiny_n_floats(&SPEC) * 4;
    const char *p = tiny_write_header(h, nb);
    lib_model_fails(p, SP_ERR_FORMAT, "classifier");
    char a[512];
    snprintf(a, sizeof a, "--model %s --tokenizer x --text y", p);
    cli_fails(a, 1, "does not match the header");
    /* a non-finite weight */
    w[5] = 1.0f / 0.0f;
    lib_model_fails(tiny_write(&SPEC, w, 0), SP_ERR_FORMAT, "not finite");
    free(w);
}

/* ---- BitNet ("ak42" v1) checkpoints ------------------------------------------------------ */
static const tiny_spec BSPEC = {.dim = 16, .hidden = 24, .layers = 2, .heads = 4, .kv_heads = 2, .vocab = 30,
                                .seq_len = 8, .seed = 23};

/* A valid tiny BitNet file with one edit: 4 bytes `val` written at byte offset `at` (at < 0:
 * none), then cut or extended to `size` bytes; the loader must fail with `needle`. */
static const char *bitnet_variant(size_t at, const void *val, size_t vlen, long extra) {
    size_t n = tinybit_size(&BSPEC);
    unsigned char *b = tinybit_bytes(&BSPEC);
    unsigned char *c = calloc(n + (extra > 0 ? (size_t)extra : 0) + 1, 1);
    memcpy(c, b, n);
    if (val) memcpy(c + at, val, vlen);
    const char *p = tinybit_write(c, (size_t)((long)n + extra));
    free(b), free(c);
    return p;
}

static void bitnet_header_fails(int field, int32_t v, const char *needle) {
    lib_model_fails(bitnet_variant(8 + 4 * (size_t)field, &v, 4, 0), SP_ERR_FORMAT, needle);
}

Test(bitnet_checkpoint, header) {
    /* the valid file loads, so every failure below is the edit's */
    sp_model *m = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_model_load(bitnet_variant(0, NULL, 0, 0), &m, &err), SP_OK, "%s", err.msg);
    sp_model_free(m);
    lib_model_fails(bitnet_variant(0, NULL, 0, 100 - (long)tinybit_size(&BSPEC)), SP_ERR_FORMAT,
                    "truncated BitNet checkpoint: 100 bytes");
    lib_model_fails(bitnet_variant(0, NULL, 0, 4 - (long)tinybit_size(&BSPEC)), SP_ERR_FORMAT, "truncated");
    int32_t two = 2, neg = -1;
    lib_model_fails(bitnet_variant(4, &two, 4, 0), SP_ERR_FORMAT, "version 2 is not supported");
    lib_model_fails(bitnet_variant(4, &neg, 4, 0), SP_ERR_FORMAT, "version -1 is not supported");
    bitnet_header_fails(0, 0, "dim = 0 is outside");
    bitnet_header_fails(1, -24, "hidden_dim = -24");
    bitnet_header_fails(2, 5000, "n_layers = 5000");
    bitnet_header_fails(5, -30, "vocab_size = -30"); /* no sign convention in ak42: the flag says it */
    bitnet_header_fails(6, 2000000000, "seq_len");
    bitnet_header_fails(3, 5, "n_heads = 5 does not divide dim = 16");
    bitnet_header_fails(4, 3, "n_kv_heads = 3 does not divide n_heads = 4");
    bitnet_header_fails(3, 16, "odd");
    /* dim 6, hidden 3, 3 heads of 2: w1 holds 18 codes, which do not fill whole bytes */
    int32_t odd[3] = {6, 3, 1};
    unsigned char *b = tinybit_bytes(&BSPEC);
    memcpy(b + 8, odd, 8); /* dim 6, hidden 3 */
    int32_t heads[2] = {3, 3};
    memcpy(b + 20, heads, 8);
    lib_model_fails(tinybit_write(b, 256), SP_ERR_FORMAT, "w1 has 3 x 6 weights, not a multiple of 4");
    free(b);
    unsigned char zero = 0, seven = 7, junk = 0x5a;
    lib_model_fails(bitnet_variant(36, &zero, 1, 0), SP_ERR_FORMAT, "shared-classifier flag = 0");
    lib_model_fails(bitnet_variant(36, &seven, 1, 0), SP_ERR_FORMAT, "shared-classifier flag = 7");
    lib_model_fails(bitnet_variant(200, &junk, 1, 0), SP_ERR_FORMAT, "padding byte 200 is 0x5a");
}

Test(bitnet_checkpoint, size_and_weights) {
    lib_model_fails(bitnet_variant(0, NULL, 0, -1), SP_ERR_FORMAT, "truncated checkpoint");
    lib_model_fails(bitnet_variant(0, NULL, 0, 4), SP_ERR_FORMAT, "does not match the BitNet header");
    float inf = 1.0f / 0.0f, nan = 0.0f / 0.0f, zero = 0.0f, negs = -0.5f;
    lib_model_fails(bitnet_variant(256 + 4 * 3, &inf, 4, 0), SP_ERR_FORMAT, "final norm weight 3 (byte offset 268)");
    lib_model_fails(bitnet_variant(256 + 4 * (16 + 17), &nan, 4, 0), SP_ERR_FORMAT,
                    "token embedding weight (1, 1)");
    size_t s0 = tinybit_mats_offset(&BSPEC); /* wq of layer 0: its scale, then 16 x 16 / 4 code bytes */
    lib_model_fails(bitnet_variant(s0, &nan, 4, 0), SP_ERR_FORMAT, "wq of layer 0: scale");
    lib_model_fails(bitnet_variant(s0, &zero, 4, 0), SP_ERR_FORMAT, "scale 0 (byte offset");
    lib_model_fails(bitnet_variant(s0 + 4 + 64, &negs, 4, 0), SP_ERR_FORMAT, "wq of layer 1: scale -0.5");
    /* code 10 (binary) is not ternary: in wk of layer 0 (after wq's 2 layers), code 2 of byte 3 */
    size_t wk0 = s0 + 2 * (4 + 64);
    unsigned char bad = 0x08; /* 00 00 10 00: element 4 * 3 + 2 = 14 of row 0 */
    lib_model_fails(bitnet_variant(wk0 + 4 + 3, &bad, 1, 0), SP_ERR_FORMAT,
                    "wk of layer 0: weight (0, 14) has the 2-bit code 10");
    char a[512];
    snprintf(a, sizeof a, "--model %s --tokenizer x --text y", bitnet_variant(wk0 + 4 + 3, &bad, 1, 0));
    cli_fails(a, 1, "not a ternary code");
    snprintf(a, sizeof a, "--model %s --tokenizer x --text y", bitnet_variant(0, NULL, 0, -1));
    cli_fails(a, 1, "truncated checkpoint");
}

/* ---- tokenizer and text, with the shared model ------------------------------------------ */
typedef struct shared_paths {
    char model[1024], tok[1024], text[1024];
} shared_paths;

static int shared(shared_paths *s) {
    return th_shared_path("models/stories260K.bin", s->model, sizeof s->model) &&
           th_shared_path("models/tok512.bin", s->tok, sizeof s->tok) &&
           th_shared_path("data/tinystories-valid-dev.txt", s->text, sizeof s->text);
}
#define NEED_SHARED(s)                                                                   \
    shared_paths s;                                                                      \
    if (!shared(&s)) cr_skip_test("shared model, tokenizer or dev text not found (set SPRINT_SHARED)")

Test(tokenizer, vocab_disagrees_with_model) {
    NEED_SHARED(s);
    sp_tokenizer *t = (sp_tokenizer *)1;
    sp_error err = {0};
    cr_assert_eq(sp_tokenizer_load(s.tok, 30, &t, &err), SP_ERR_FORMAT);
    cr_assert_null(t);
    cr_assert(strstr(err.msg, "512 tokens") && strstr(err.msg, "30"), "%s", err.msg);
    /* a tiny model (vocab 30) with tok512 */
    float *w = tiny_weights(&SPEC);
    char a[8192];
    snprintf(a, sizeof a, "--model %s --tokenizer %s --text %s", tiny_write(&SPEC, w, 0), s.tok, s.text);
    cli_fails(a, 1, "tokenizer has 512 tokens but the model's vocabulary has 30");
    free(w);
}

Test(tokenizer, missing_truncated_malformed) {
    NEED_SHARED(s);
    sp_tokenizer *t = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_tokenizer_load("/nonexistent/tok.bin", 512, &t, &err), SP_ERR_IO);
    cr_assert(strstr(err.msg, "/nonexistent/tok.bin"), "%s", err.msg);
    char *raw;
    size_t len;
    cr_assert_eq(sp_read_file(s.tok, &raw, &len, NULL), SP_OK);
    const char *p = tiny_track(th_temp_file(raw, len - 3));
    cr_assert_eq(sp_tokenizer_load(p, 512, &t, &err), SP_ERR_FORMAT);
    cr_assert(strstr(err.msg, "truncated"), "%s", err.msg);
    char a[8192];
    snprintf(a, sizeof a, "--model %s --tokenizer %s --text %s", s.model, p, s.text);
    cli_fails(a, 1, "truncated");
    int32_t bad = -5; /* max_token_length */
    memcpy(raw, &bad, 4);
    cr_assert_eq(sp_tokenizer_load(tiny_track(th_temp_file(raw, len)), 512, &t, &err), SP_ERR_FORMAT);
    cr_assert(strstr(err.msg, "max_token_length"), "%s", err.msg);
    int32_t huge = 1 << 30; /* a record length far beyond the file */
    int32_t good = 16;
    memcpy(raw, &good, 4);
    memcpy(raw + 8, &huge, 4);
    cr_assert_eq(sp_tokenizer_load(tiny_track(th_temp_file(raw, len)), 512, &t, &err), SP_ERR_FORMAT);
    cr_assert(strstr(err.msg, "record 0"), "%s", err.msg);
    cr_assert_eq(sp_tokenizer_load(tiny_track(th_temp_file(raw, 2)), 512, &t, &err), SP_ERR_FORMAT);
    free(raw);
    snprintf(a, sizeof a, "--model %s --tokenizer /nonexistent/tok.bin --text %s", s.model, s.text);
    cli_fails(a, 1, "/nonexistent/tok.bin");
}

Test(text, empty_and_missing) {
    NEED_SHARED(s);
    char a[8192];
    const char *texts[] = {"", "\n  \n", "<|endoftext|>\n<|endoftext|>"};
    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof a, "--model %s --tokenizer %s --text %s", s.model, s.tok, tiny_track(th_temp_text(texts[i])));
        cli_fails(a, 1, "empty text");
    }
    snprintf(a, sizeof a, "--model %s --tokenizer %s --text /nonexistent/dev.txt", s.model, s.tok);
    cli_fails(a, 1, "cannot open /nonexistent/dev.txt");
    snprintf(a, sizeof a, "--model %s --tokenizer %s --text /tmp", s.model, s.tok);
    cli_fails(a, 1, "not a regular file");
}

Test(text, invalid_utf8) {
    NEED_SHARED(s);
    char a[8192];
    const char *p = tiny_track(th_temp_text("Once upon a time.<|endoftext|>Then \xc3\x28 broke."));
    snprintf(a, sizeof a, "--model %s --tokenizer %s --text %s", s.model, s.tok, p);
    cli_fails(a, 1, "not valid UTF-8");
    cli_fails(a, 1, "story 2");
    sp_tokenizer *t = NULL;
    cr_assert_eq(sp_tokenizer_load(s.tok, 512, &t, NULL), SP_OK);
    int *ids = NULL, n = 0;
    sp_error err = {0};
    cr_assert_eq(sp_tokenizer_encode(t, "\xe2\x28\xa1", 3, 1, 0, &ids, &n, &err), SP_ERR_DATA);
    cr_assert(strstr(err.msg, "offset 0"), "%s", err.msg);
    sp_tokenizer_free(t);
}

Test(cli, usage_errors) {
    NEED_SHARED(s);
    cli_fails("--attention nonsense --set eval.max_stories=1", 2, "nonsense");
    cli_fails("--bogus", 2, "unknown option '--bogus'");
    cli_fails("--model", 2, "needs a value");
    cli_fails("--set eval.window=513 --set eval.max_stories=1", 2, "window 513");
}

/* The usage errors of sprint generate, each before anything is loaded. */
Test(cli, generate_usage_errors) {
    struct {
        const char *args, *needle;
    } cases[] = {
        {"--steps 0", "--steps expects an integer in [1, 100000], got '0'"},
        {"--steps -5", "got '-5'"},
        {"--steps 1.5", "--steps expects an integer"},
        {"--steps many", "got 'many'"},
        {"--temperature -0.5", "--temperature expects a number in [0, 100]"},
        {"--temperature nan", "got 'nan'"},
        {"--topp 0", "--topp expects a number in (0, 1], got '0'"},
        {"--topp 1.01", "got '1.01'"},
        {"--topp -1", "got '-1'"},
        {"--bogus", "unknown option '--bogus'"},
        {"--text x.txt", "unknown option '--text'"}, /* generate reads no text */
        {"--steps", "needs a value"},
        {"--seed 123456789012345678901234567890123456789012345678901234567890123456789", "--seed expects an integer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) cmd_fails("generate", cases[i].args, 2, cases[i].needle);
    /* unknown attention mode: a usage error found before any file is read */
    cli_fails("--attention bogus --model /nonexistent/m.bin", 2, "unknown attention mode 'bogus'");
}

/* Bad files through sprint generate: the same one-line errors as eval. */
Test(cli, generate_bad_files) {
    float *w = tiny_weights(&SPEC);
    char a[1024];
    cmd_fails("generate", "--model /nonexistent/model.bin --tokenizer /nonexistent/t.bin", 1,
              "cannot open checkpoint /nonexistent/model.bin");
    snprintf(a, sizeof a, "--model %s --tokenizer x", tiny_write(&SPEC, w, -7));
    cmd_fails("generate", a, 1, "truncated");
    const char *m = tiny_write(&SPEC, w, 0);
    snprintf(a, sizeof a, "--model %s --tokenizer %s", m, tiny_tokenizer(29));
    cmd_fails("generate", a, 1, "tokenizer has 29 tokens but the model's vocabulary has 30");
    snprintf(a, sizeof a, "--model %s --tokenizer %s --prompt $(printf 'ab\\377')", m, tiny_tokenizer(30));
    cmd_fails("generate", a, 1, "not valid UTF-8");
    free(w);
}

/* A vocabulary without byte tokens (<0xXX> at ids 3..258): a character outside it has no
 * fallback. That is bad data (one-line error), not an internal error (abort). */
Test(tokenizer, no_byte_fallback_in_small_vocabulary) {
    sp_tokenizer *t = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_tokenizer_load(tiny_tokenizer(30), 30, &t, &err), SP_OK, "%s", err.msg);
    int *ids = (int *)1, n = -1;
    /* ids: ' ' 3, 'a' 4, 'b' 5: every character present */
    cr_assert_eq(sp_tokenizer_encode(t, "ab a", 4, 1, 1, &ids, &n, &err), SP_OK, "%s", err.msg);
    int want[] = {1, 3, 4, 5, 3, 4, 2};
    cr_assert_eq(n, 7);
    for (int i = 0; i < 7; i++) cr_assert_eq(ids[i], want[i], "token %d: %d", i, ids[i]);
    free(ids);
    /* 'Z' (byte 0x5A, fallback id 93) and a two-byte character are not in a 30-token vocabulary */
    const char *bad[] = {"abZ", "a\xc3\xa9", "Z"};
    size_t off[] = {2, 1, 0};
    for (int i = 0; i < 3; i++) {
        ids = (int *)1;
        cr_assert_eq(sp_tokenizer_encode(t, bad[i], strlen(bad[i]), 1, 0, &ids, &n, &err), SP_ERR_DATA, "case %d", i);
        cr_assert_null(ids);
        char want_off[64];
        snprintf(want_off, sizeof want_off, "at offset %zu ", off[i]);
        cr_assert(strstr(err.msg, want_off) && strstr(err.msg, "byte-fallback"), "case %d: %s", i, err.msg);
    }
    sp_tokenizer_free(t);
    /* BOS is id 1, EOS id 2: a vocabulary too small for them is refused at encoding */
    const char *p1 = tiny_tokenizer(2);
    cr_assert_eq(sp_tokenizer_load(p1, 2, &t, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(sp_tokenizer_encode(t, "", 0, 1, 1, &ids, &n, &err), SP_ERR_DATA);
    cr_assert(strstr(err.msg, "EOS"), "%s", err.msg);
    cr_assert_eq(sp_tokenizer_encode(t, "", 0, 1, 0, &ids, &n, &err), SP_OK, "BOS (id 1) exists");
    free(ids);
    sp_tokenizer_free(t);
    /* through the CLI */
    tiny_spec s = SPEC;
    float *w = tiny_weights(&s);
    char a[1024];
    snprintf(a, sizeof a, "--model %s --tokenizer %s --text %s", tiny_write(&s, w, 0), tiny_tokenizer(30),
             tiny_track(th_temp_text("a cab<|endoftext|>a Zebra")));
    cli_fails(a, 1, "story 2 (starting at byte 18 of the text): character at offset 2 is not in the vocabulary");
    free(w);
}

/* A record longer than the file's own max_token_length, and a negative length. */
Test(tokenizer, absurd_token_length) {
    const char *p = tiny_tokenizer(30);
    char *raw;
    size_t len;
    cr_assert_eq(sp_read_file(p, &raw, &len, NULL), SP_OK);
    sp_tokenizer *t = (sp_tokenizer *)1;
    sp_error err = {0};
    int32_t one = 1; /* max_token_length 1, but "<unk>" is 5 bytes */
    memcpy(raw, &one, 4);
    cr_assert_eq(sp_tokenizer_load(tiny_track(th_temp_file(raw, len)), 30, &t, &err), SP_ERR_FORMAT);
    cr_assert_null(t);
    cr_assert(strstr(err.msg, "record 0") && strstr(err.msg, "length 5"), "%s", err.msg);
    int32_t five = 5, neg = -3;
    memcpy(raw, &five, 4);
    memcpy(raw + 8, &neg, 4);
    cr_assert_eq(sp_tokenizer_load(tiny_track(th_temp_file(raw, len)), 30, &t, &err), SP_ERR_FORMAT);
    cr_assert(strstr(err.msg, "length -3"), "%s", err.msg);
    int32_t huge = 0x7fffffff;
    memcpy(raw, &huge, 4);
    cr_assert_eq(sp_tokenizer_load(tiny_track(th_temp_file(raw, len)), 30, &t, &err), SP_ERR_FORMAT);
    cr_assert(strstr(err.msg, "max_token_length"), "%s", err.msg);
    free(raw);
}

/* Every command in this file's scope documents its options with units and exits 0 on --help. */
Test(cli, help_names_units) {
    static char out[1 << 14], err[1 << 14];
    struct {
        const char *args;
        const char *needles[3];
    } cases[] = {
        {"eval --help", {"nats/token", "tokens/s", "(tokens, 0 = the model's context"}},
        {"generate --help", {"(0, 1]", "tokens/s", "[1, 100000]"}},
        {"config --help", {"dump", "--set", "threads, 0 = all cores"}},
        {"--help", {"eval", "generate", "unit"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = th_run_sprint(cases[i].args, out, sizeof out, err, sizeof err);
        cr_assert_eq(rc, 0, "sprint %s: exit %d", cases[i].args, rc);
        for (int k = 0; k < 3; k++)
            cr_assert(strstr(out, cases[i].needles[k]), "sprint %s lacks '%s': %s", cases[i].args, cases[i].needles[k], out);
    }
}

/* A story longer than the model's context (seq_len 8) is evaluated in windows, not refused:
 * every target is counted, through the CLI. */
Test(text, story_longer_than_context) {
    float *w = tiny_weights(&SPEC);
    const char *tokp = tiny_tokenizer(30);
    const char *story = "a cat sat on a mat and a dog ran to the cat";
    sp_tokenizer *t = NULL;
    cr_assert_eq(sp_tokenizer_load(tokp, 30, &t, NULL), SP_OK);
    int *ids = NULL, n = 0;
    cr_assert_eq(sp_tokenizer_encode(t, story, strlen(story), 1, 0, &ids, &n, NULL), SP_OK);
    cr_assert_gt(n, 3 * SPEC.seq_len, "the story must span several windows");
    free(ids);
    sp_tokenizer_free(t);
    static char out[1 << 14], err[1 << 14];
    char a[1024], want[64];
    snprintf(a, sizeof a, "eval --quiet --json --model %s --tokenizer %s --text %s", tiny_write(&SPEC, w, 0), tokp,
             tiny_track(th_temp_text(story)));
    int rc = th_run_sprint(a, out, sizeof out, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
    snprintf(want, sizeof want, "\"tokens\":%d,", n - 1);
    cr_assert(strstr(out, want), "expected %s in %s", want, out);
    cr_assert(strstr(out, "\"window\":8"), "%s", out);
    free(w);
}

/* No paths and no shared directory: directions, on one line, naming the missing file; generate
 * does not need the text. */
Test(cli, missing_shared_files_give_directions) {
    cr_assert_eq(setenv("SPRINT_SHARED", "/nonexistent/shared", 1), 0);
    cli_fails("", 1, "/nonexistent/shared/models/stories260K.bin not found. Get stories260K.bin");
    float *w = tiny_weights(&SPEC);
    char a[1024];
    snprintf(a, sizeof a, "--model %s", tiny_write(&SPEC, w, 0));
    cmd_fails("generate", a, 1, "/nonexistent/shared/models/tok512.bin not found");
    cli_fails(a, 1, "tok512.bin not found");
    free(w);
}
