/* test_config.c: does the config table parse, validate, override, dump and document correctly,
 * and does every class of bad input give an error naming file, line, key and expectation? */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_internal.h"
#include "helpers.h"
#include "sprint/config.h"

static sp_status load_text(sp_config *c, const char *text, const char **path, sp_error *err) {
    *path = th_temp_text(text);
    sp_config_defaults(c);
    return sp_config_load_file(c, *path, err);
}

Test(config, defaults_are_in_range_and_match_table) {
    size_t n;
    const sp_config_key *k = sp_config_keys(&n);
    cr_assert_gt(n, 5);
    sp_config c;
    sp_config_defaults(&c);
    cr_assert_eq(c.run_seed, 1);
    for (size_t i = 0; i < n; i++) {
        cr_assert(k[i].doc && *k[i].doc, "key %s.%s has no doc", k[i].section, k[i].name);
        cr_assert(k[i].unit && *k[i].unit, "key %s.%s has no unit", k[i].section, k[i].name);
        cr_assert(k[i].source && *k[i].source, "key %s.%s has no source", k[i].section, k[i].name);
        cr_assert(!k[i].def || c.is_set[i], "default of %s.%s not applied", k[i].section, k[i].name);
        cr_assert_eq(sp_config_find(k[i].section, k[i].name), (int)i);
    }
}

Test(config, file_values_and_set_overrides_apply_in_order) {
    sp_config c;
    sp_error err = {0};
    const char *path;
    cr_assert_eq(load_text(&c, "; comment\n[run]\nseed = 42\nthreads=1\n[eval]\nmax_stories = 7\n", &path, &err), SP_OK,
                 "%s", err.msg);
    cr_assert_eq(c.run_seed, 42);
    cr_assert_eq(c.run_threads, 1);
    cr_assert_eq(c.eval_max_stories, 7);
    cr_assert_eq(sp_config_set(&c, "run.seed=9", "--set", &err), SP_OK, "%s", err.msg);
    cr_assert_eq(c.run_seed, 9);
    cr_assert_eq(sp_config_set(&c, "eval.text = /x/y.txt", "--set", &err), SP_OK, "%s", err.msg);
    cr_assert_str_eq(c.eval_text, "/x/y.txt");
}

Test(config, unknown_key_names_file_line_and_key) {
    sp_config c;
    sp_error err = {0};
    const char *path;
    cr_assert_eq(load_text(&c, "[run]\nseed = 3\n\nsede = 4\n", &path, &err), SP_ERR_CONFIG);
    char want[128];
    snprintf(want, sizeof want, "%s:4:", path);
    cr_assert(strstr(err.msg, want), "%s", err.msg);
    cr_assert(strstr(err.msg, "unknown key run.sede"), "%s", err.msg);
}

Test(config, unknown_section_is_an_error) {
    sp_config c;
    sp_error err = {0};
    const char *path;
    cr_assert_eq(load_text(&c, "[rum]\nseed = 3\n", &path, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, ":2:") && strstr(err.msg, "unknown section [rum]"), "%s", err.msg);
}

Test(config, duplicate_key_names_both_lines) {
    sp_config c;
    sp_error err = {0};
    const char *path;
    cr_assert_eq(load_text(&c, "[run]\nseed = 3\nthreads = 1\nseed = 4\n", &path, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, ":4:") && strstr(err.msg, "duplicate key run.seed") && strstr(err.msg, "line 2"), "%s",
              err.msg);
}

Test(config, wrong_type_says_what_was_expected) {
    sp_config c;
    sp_error err = {0};
    const char *path;
    cr_assert_eq(load_text(&c, "[run]\nthreads = two\n", &path, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, ":2:") && strstr(err.msg, "run.threads") && strstr(err.msg, "expected an integer") &&
                  strstr(err.msg, "'two'"),
              "%s", err.msg);
    cr_assert_eq(load_text(&c, "[run]\nthreads = 1.5\n", &path, &err), SP_ERR_CONFIG, "1.5 is not an integer");
}

Test(config, out_of_range_is_rejected_not_clamped) {
    sp_config c;
    sp_error err = {0};
    const char *path;
    cr_assert_eq(load_text(&c, "[run]\nthreads = 100000\n", &path, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, "[0, 256]"), "%s", err.msg);
    cr_assert_eq(c.run_threads, 0, "value must be untouched after a rejected set");
    cr_assert_eq(sp_config_set(&c, "run.seed=-1", "--set", &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, "--set") && strstr(err.msg, "run.seed"), "%s", err.msg);
}

Test(config, malformed_set_and_syntax_errors) {
    sp_config c;
    sp_error err = {0};
    sp_config_defaults(&c);
    cr_assert_eq(sp_config_set(&c, "seed=3", "--set", &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, "section.key=value"), "%s", err.msg);
    const char *path;
    cr_assert_eq(load_text(&c, "[run]\nseed 3\n", &path, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, ":2:"), "%s", err.msg);
    cr_assert_eq(sp_config_load_file(&c, "/nonexistent/sprint.ini", &err), SP_ERR_IO);
    cr_assert(strstr(err.msg, "/nonexistent/sprint.ini"), "%s", err.msg);
}

Test(config, missing_required_key_is_named) {
    /* The live table has no required key today; the check is exercised on a table of its own. */
    sp_config_key keys[2] = {
        {"a", "x", SP_CFG_INT, 0, 10, "1", NULL, "-", "doc x", "test", 0},
        {"b", "path", SP_CFG_STRING, 0, 0, NULL, NULL, "path", "input file", "test", 0},
    };
    unsigned char set[2] = {1, 0};
    sp_error err = {0};
    cr_assert_eq(sp_config_check_required_in(keys, 2, set, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, "missing required key b.path"), "%s", err.msg);
    set[1] = 1;
    cr_assert_eq(sp_config_check_required_in(keys, 2, set, &err), SP_OK);
}

Test(config, dump_loads_back_to_identical_values) {
    sp_config c, d;
    sp_error err = {0};
    sp_config_defaults(&c);
    cr_assert_eq(sp_config_set(&c, "run.seed=123", "--set", &err), SP_OK);
    cr_assert_eq(sp_config_set(&c, "eval.window=77", "--set", &err), SP_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    sp_config_dump(&c, f);
    fclose(f);
    const char *path = th_temp_text(buf);
    sp_config_defaults(&d);
    cr_assert_eq(sp_config_load_file(&d, path, &err), SP_OK, "%s", err.msg);
    size_t n;
    const sp_config_key *k = sp_config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        char a[300], b[300];
        sp_config_value_text(&c, &k[i], a, sizeof a);
        sp_config_value_text(&d, &k[i], b, sizeof b);
        cr_assert_str_eq(a, b, "key %s.%s changed in the round trip", k[i].section, k[i].name);
    }
    free(buf);
}

Test(config, docs_config_md_is_current) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    sp_config_write_markdown(f);
    fclose(f);
    FILE *g = fopen(SP_SOURCE_DIR "/docs/config.md", "rb");
    cr_assert(g, "docs/config.md missing: run build/sprint config doc > docs/config.md");
    char *doc = calloc(len + 2, 1);
    size_t r = fread(doc, 1, len + 1, g);
    fclose(g);
    cr_assert(r == len && memcmp(doc, buf, len) == 0,
              "docs/config.md is out of date: run build/sprint config doc > docs/config.md");
    free(doc);
    free(buf);
}

Test(config_cli, dump_round_trips_and_bad_set_exits_nonzero) {
    char out[1 << 16], err[4096];
    int rc = th_run_sprint("config dump --set run.seed=77", out, sizeof out, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(out, "seed = 77"), "%s", out);
    const char *path = th_temp_text(out);
    char args[256];
    snprintf(args, sizeof args, "config check %s", path);
    rc = th_run_sprint(args, out, sizeof out, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
    rc = th_run_sprint("config dump --set run.threads=-3", out, sizeof out, err, sizeof err);
    cr_assert_neq(rc, 0);
    cr_assert(strstr(err, "run.threads") && strchr(err, '\n') == err + strlen(err) - 1, "one-line error: %s", err);
}

Test(config, over_long_line_is_refused_not_split) {
    char text[600];
    snprintf(text, sizeof text, "[eval]\ntext = /%0300d\n[run]\nseed = 5\n", 0);
    sp_config c;
    sp_error err = {0};
    const char *path;
    cr_assert_eq(load_text(&c, text, &path, &err), SP_ERR_CONFIG);
    /* the whole value reaches the key's check (inih's 200-byte line buffer does not split it) */
    cr_assert(strstr(err.msg, ":2:") && strstr(err.msg, "eval.text") && strstr(err.msg, "up to 255 bytes"), "%s",
              err.msg);
    char big[3000];
    snprintf(big, sizeof big, "[eval]\ntext = /%01500d\n[run]\nseed = 5\n", 0);
    cr_assert_eq(load_text(&c, big, &path, &err), SP_ERR_CONFIG);
    cr_assert(strstr(err.msg, ":2:") && strstr(err.msg, "longer than"), "%s", err.msg);
}
