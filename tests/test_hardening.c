/* test_hardening.c: issue 11's reproduced items, each a regression test that fails without its
 * fix: hostile sizes, special files as inputs, config parsing and dump round trips, lists and
 * values that used to be cut or dropped silently, write errors, escaping, exit codes. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "sprint/config.h"
#include "sprint/functional.h"
#include "sprint/model.h"
#include "tiny_model.h"

static char out[1 << 16], errb[1 << 16];

/* Runs sprint with args; asserts the exit status and that stderr is one line holding needle. */
static void cli_fails(const char *args, int want_rc, const char *needle) {
    int rc = th_run_sprint(args, out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, want_rc, "'%s': exit %d (want %d): %s", args, rc, want_rc, errb);
    cr_assert(strstr(errb, needle), "'%s': message '%s' lacks '%s'", args, errb, needle);
    cr_assert(strchr(errb, '\n') == errb + strlen(errb) - 1, "'%s': not one line: %s", args, errb);
}

/* A fresh empty directory (static storage). */
static const char *temp_dir(void) {
    static char d[64];
    snprintf(d, sizeof d, "/tmp/sprint-hard-XXXXXX");
    cr_assert(mkdtemp(d));
    return d;
}

static int dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* ---- hostile sizes ---------------------------------------------------------------------- */

/* A valid checkpoint whose header claims a 2^20-token context and a 32000-token vocabulary,
 * and a matching 32000-token tokenizer: eval and generate used to allocate the logits of the
 * whole context up front (125 GiB) and abort. */
Test(sizes, huge_context_allocates_for_the_work_requested) {
    tiny_spec s = {.dim = 2, .hidden = 2, .layers = 1, .heads = 1, .kv_heads = 1, .vocab = 32000,
                   .seq_len = 1 << 20, .seed = 5};
    float *w = tiny_weights(&s);
    const char *model = tiny_write(&s, w, 0);
    free(w);
    size_t cap = 32000 * 16 + 16, off = 4;
    unsigned char *buf = malloc(cap);
    int32_t maxlen = 8;
    memcpy(buf, &maxlen, 4);
    const char *names[3] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < 32000; i++) {
        char piece[16];
        if (i < 3) snprintf(piece, sizeof piece, "%s", names[i]);
        else if (i < 259) snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        else snprintf(piece, sizeof piece, "w%d", i);
        tiny_tok_record(buf, &off, piece, -(float)i);
    }
    const char *tok = tiny_track(th_temp_file(buf, off));
    free(buf);
    const char *text = tiny_track(th_temp_text("a tiny story.<|endoftext|>another one"));
    char args[4096];
    snprintf(args, sizeof args, "eval --model %s --tokenizer %s --text %s --quiet --json", model, tok, text);
    int rc = th_run_sprint(args, out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0, "eval on a 2^20-context checkpoint: exit %d: %s", rc, errb);
    cr_assert(strstr(out, "\"nll\""), "%s", out);
    snprintf(args, sizeof args, "generate --model %s --tokenizer %s --steps 3 --quiet", model, tok);
    rc = th_run_sprint(args, out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0, "generate on a 2^20-context checkpoint: exit %d: %s", rc, errb);
}

Test(sizes, unaffordable_allocation_is_a_one_line_error) {
    sp_error err = {0};
    cr_assert_eq(sp_alloc_check(1e18, "the logits", &err), SP_ERR_NOMEM);
    cr_assert(strstr(err.msg, "the logits would need") && strstr(err.msg, "GiB"), "%s", err.msg);
    cr_assert_eq(sp_alloc_check(4096, "a page", &err), SP_OK);
}

/* ---- special files as inputs -------------------------------------------------------------- */

/* Every loader on a FIFO with no writer: an error naming it, not a hang (alarm kills a hang). */
Test(special_files, fifo_is_an_error_not_a_hang, .timeout = 20) {
    const char *d = temp_dir();
    char fifo[128];
    snprintf(fifo, sizeof fifo, "%s/pipe", d);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    sp_error err = {0};
    sp_model *m = NULL;
    cr_assert_eq(sp_model_load(fifo, &m, &err), SP_ERR_IO);
    cr_assert(strstr(err.msg, "named pipe"), "%s", err.msg);
    sp_tokenizer *t = NULL;
    cr_assert_eq(sp_tokenizer_load(fifo, 512, &t, &err), SP_ERR_IO);
    cr_assert(strstr(err.msg, "named pipe"), "%s", err.msg);
    char *text = NULL;
    size_t len;
    cr_assert_eq(sp_read_file(fifo, &text, &len, &err), SP_ERR_IO);
    sp_config c;
    sp_config_defaults(&c);
    cr_assert_eq(sp_config_load_file(&c, fifo, &err), SP_ERR_IO);
    cr_assert(strstr(err.msg, "named pipe"), "%s", err.msg);
    sp_thresholds *th = NULL;
    cr_assert_eq(sp_thresholds_load(fifo, &th, &err), SP_ERR_IO);
    cr_assert(strstr(err.msg, "named pipe"), "%s", err.msg);
    char args[256];
    snprintf(args, sizeof args, "config dump --config %s", fifo);
    cli_fails(args, 1, "named pipe");
    unlink(fifo);
    rmdir(d);
}

Test(special_files, config_directory_is_an_error) {
    cli_fails("config dump --config /tmp", 1, "not a regular file (a directory)");
    sp_thresholds *th = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_thresholds_load("/tmp", &th, &err), SP_ERR_IO);
}

/* ---- config parsing --------------------------------------------------------------------- */

static sp_status load(sp_config *c, const void *data, size_t len, sp_error *err) {
    sp_config_defaults(c);
    return sp_config_load_file(c, th_temp_file(data, len), err);
}

/* A NUL byte used to end inih's view of the line while the reader's long-line guard measured
 * the string up to the NUL: the rest of a long line came back as a line of its own, so a key
 * hidden after the NUL in a comment was applied. */
Test(config, nul_byte_is_an_error) {
    char text[600];
    size_t n = (size_t)snprintf(text, sizeof text, "[run]\n; note X%*s seed = 99\nthreads = 1\n", 250, "");
    char *x = strchr(text, 'X');
    *x = 0;
    sp_config c;
    sp_error err = {0};
    cr_assert_eq(load(&c, text, n, &err), SP_ERR_CONFIG, "seed = %ld", c.run_seed);
    cr_assert(strstr(err.msg, ":2:") && strstr(err.msg, "NUL"), "%s", err.msg);
}

Test(config, unclosed_section_is_reported_at_its_line) {
    const char *t = "[run\nseed = 5\n";
    sp_config c;
    sp_error err = {0};
    cr_assert_eq(load(&c, t, strlen(t), &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, ":1:") && strstr(err.msg, "']'"), "%s", err.msg);
}

Test(config, binary_bytes_are_escaped_in_errors) {
    const char t[] = "[run]\nse\x01\xff\xfe\x1b[31med = 5\n";
    sp_config c;
    sp_error err = {0};
    cr_assert_eq(load(&c, t, sizeof t - 1, &err), SP_ERR_CONFIG);
    for (const unsigned char *p = (const unsigned char *)err.msg; *p; p++)
        cr_assert(*p >= 0x20 && *p < 0x7f, "raw byte 0x%02x in '%s'", *p, err.msg);
    cr_assert(strstr(err.msg, "\\x01") && strstr(err.msg, "\\xff") && strstr(err.msg, "\\x1b"), "%s", err.msg);
    char esc[64];
    sp_escape_text("caf\xc3\xa9 \xc3", esc, sizeof esc); /* valid UTF-8 kept, a cut sequence escaped */
    cr_assert_str_eq(esc, "caf\xc3\xa9 \\xc3");
    char again[64];
    sp_escape_text(esc, again, sizeof again);
    cr_assert_str_eq(again, esc, "escaping is idempotent");
}

/* Values are never cut: --set values used to be cut at 299 bytes (the cut value then parsed). */
Test(config, long_values_are_errors_not_cut) {
    sp_config c;
    sp_config_defaults(&c);
    sp_error err = {0};
    char *a = malloc(1400);
    int n = snprintf(a, 1400, "policy.threshold=0.1");
    memset(a + n, '0', 1200);
    a[n + 1200] = 0;
    cr_assert_neq(sp_config_set(&c, a, "--set", &err), SP_OK, "a 1,203-byte value was accepted");
    cr_assert(strstr(err.msg, "longer than"), "%s", err.msg);
    /* 600 bytes fit (leading blanks are trimmed): the whole value is read */
    n = snprintf(a, 1400, "run.seed=%598s", "17");
    cr_assert_eq(sp_config_set(&c, a, "--set", &err), SP_OK, "%s", err.msg);
    cr_assert_eq(c.run_seed, 17);
    free(a);
}

/* `config dump` loads back unchanged whatever a string holds (newline, leading ';', '#'). */
Test(config, dump_round_trip_of_hostile_strings) {
    const char *vals[] = {"a\n[run]\nseed = 99", ";leading semicolon", "x ;inline", "#hash", " \"quoted\" ",
                          "back\\slash\ttab\x01"};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        sp_config c, d;
        sp_config_defaults(&c);
        sp_error err = {0};
        cr_assert_eq(sp_config_set_value(&c, "model", "checkpoint", vals[i], "test", &err), SP_OK, "%s", err.msg);
        char *txt = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&txt, &len);
        sp_config_dump(&c, f);
        fclose(f);
        sp_config_defaults(&d);
        cr_assert_eq(sp_config_load_file(&d, th_temp_text(txt), &err), SP_OK, "%s", err.msg);
        char want[1200];
        snprintf(want, sizeof want, "%s", vals[i]);
        /* set_value trims blanks at the ends, like the loader */
        cr_assert_str_eq(d.model_checkpoint, c.model_checkpoint, "value %zu changed in the round trip", i);
        cr_assert_eq(d.run_seed, c.run_seed, "value %zu injected a key", i);
        free(txt);
    }
}

Test(config, hexadecimal_numbers_are_refused) {
    cli_fails("config dump --seed 0x10", 2, "run.seed");
    cli_fails("config dump --set policy.threshold=0x1p3", 2, "policy.threshold");
    int rc = th_run_sprint("config dump --seed 16", out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0, "%s", errb);
    cr_assert(strstr(out, "seed = 16"), "%s", out);
}

/* ---- thresholds file ------------------------------------------------------------------------ */

Test(thresholds, trailing_tokens_are_errors) {
    const char *t = th_temp_text("sprint-thresholds 1\nkind oracle\nlayers 1\nheads 1\nhead_dim 8\ndelta 0.5 0.75\n");
    sp_thresholds *th = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_thresholds_load(t, &th, &err), SP_ERR_FORMAT);
    cr_assert(strstr(err.msg, ":6:") && strstr(err.msg, "after the value"), "%s", err.msg);
    t = th_temp_text("sprint-thresholds 1\nkind oracle extra\nlayers 1\nheads 1\nhead_dim 8\n");
    cr_assert_eq(sp_thresholds_load(t, &th, &err), SP_ERR_FORMAT);
}

/* ---- lists, exit codes -------------------------------------------------------------------- */

Test(lists, extra_empty_and_overlong_lists_are_usage_errors) {
    cli_fails("compare --modes sprint,sprint,sprint,sprint,sprint,sprint,sprint,sprint,sprint --quiet", 2,
              "more than 8 entries");
    cli_fails("compare --policies '' --quiet", 2, "empty list");
    cli_fails("compare --modes sprint,,pruning --quiet", 2, "empty entry 2");
    cli_fails("sweep --param msb_bits --attention sprint,sprint,sprint,sprint,sprint --quiet", 2, "more than 4 entries");
    /* a 600-byte --values list used to be cut at 511 bytes: its last (bad) value was dropped
     * and the sweep ran; now the whole list is read and the bad value refused up front */
    char args[1024] = "sweep --param msb_bits --quiet --values ";
    for (int i = 0; i < 60; i++) strcat(args, "00000000008,"); /* 720 bytes, 61 values */
    strcat(args, "9");
    cli_fails(args, 2, "quant.msb_bits");
}

Test(exit_codes, usage_errors_exit_2_everywhere) {
    const char *cmds[] = {"run", "trace", "eval", "calibrate --out /tmp/never-written", "compare", "sweep --param msb_bits", "generate",
                          "config dump"};
    char args[256];
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        snprintf(args, sizeof args, "%s --set run.seed=abc --quiet", cmds[i]);
        cli_fails(args, 2, "run.seed");
        snprintf(args, sizeof args, "%s --no-such-option", cmds[i]);
        cli_fails(args, 2, "--no-such-option");
    }
}

/* ---- write errors ------------------------------------------------------------------------- */

static int run_shell(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

Test(write_errors, stdout_and_csv_write_errors_exit_1) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s run --no-real --workload BERT-B --sizes S --heads 1 --json --quiet >/dev/full 2>/dev/null",
             SP_SPRINT_EXE);
    cr_assert_eq(run_shell(cmd), 1, "run --json > /dev/full");
    snprintf(cmd, sizeof cmd, "%s config dump >/dev/full 2>/dev/null", SP_SPRINT_EXE);
    cr_assert_eq(run_shell(cmd), 1, "config dump > /dev/full");
    snprintf(cmd, sizeof cmd, "%s run --no-real --workload BERT-B --sizes S --heads 1 --csv /dev/full --quiet "
                              ">/dev/null 2>/dev/null", SP_SPRINT_EXE);
    cr_assert_eq(run_shell(cmd), 1, "run --csv /dev/full");
}

/* trace --out that fails after opening its file leaves nothing behind (neither the file nor a
 * temporary); one that succeeds leaves the complete file and no temporary. */
Test(write_errors, failed_trace_leaves_no_partial_file) {
    TH_NEED_SHARED(model, "models/stories260K.bin");
    const char *d = temp_dir();
    char args[1024];
    /* the tokenizer exists (so the command gets as far as opening --out) but is not one */
    snprintf(args, sizeof args, "trace --real --out %s/t.csv --set model.checkpoint=%s --set model.tokenizer=%s --quiet", d,
             model, model);
    int rc = th_run_sprint(args, out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 1, "%s", errb);
    cr_assert_eq(dir_entries(d), 0, "trace left a file behind in %s", d);
    snprintf(args, sizeof args, "trace --workload BERT-B --out %s/t.csv --quiet", d);
    rc = th_run_sprint(args, out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0, "%s", errb);
    cr_assert_eq(dir_entries(d), 1, "a temporary was left next to the output");
    char p[128];
    snprintf(p, sizeof p, "%s/t.csv", d);
    struct stat st;
    cr_assert(stat(p, &st) == 0 && st.st_size > 1000);
    unlink(p);
    rmdir(d);
}
