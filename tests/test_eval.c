/* test_eval.c: does evaluation predict every target exactly once, reproduce the independent
 * dense NLL of stories260K on the dev text (1.217 nats/token within 0.5%), and report it
 * through `sprint eval --json`? */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <unistd.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "sprint/model.h"
#include "tiny_model.h"

/* Under the sanitizers (-O0, every access checked) the evaluation runs ~50x slower: those
 * builds check memory safety on the first stories only, against the value the optimised
 * build computes for them (the same bits: the float fast path has a fixed summation order).
 * The full-file figure is checked by the optimised build. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

typedef struct shared_set {
    sp_model *m;
    sp_tokenizer *t;
    char *text;
    size_t len;
} shared_set;

static int load_shared(shared_set *s) {
    char a[4096], b[4096], c[4096];
    const char *pm = th_shared_path("models/stories260K.bin", a, sizeof a);
    const char *pt = th_shared_path("models/tok512.bin", b, sizeof b);
    const char *px = th_shared_path("data/tinystories-valid-dev.txt", c, sizeof c);
    if (!pm || !pt || !px) return 0;
    sp_error err = {0};
    cr_assert_eq(sp_model_load(pm, &s->m, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(sp_tokenizer_load(pt, 512, &s->t, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(sp_read_file(px, &s->text, &s->len, &err), SP_OK, "%s", err.msg);
    return 1;
}

static void free_shared(shared_set *s) {
    sp_model_free(s->m);
    sp_tokenizer_free(s->t);
    free(s->text);
}

/* The figure that matters: an independent forward pass gives about 1.217 nats/token. */
Test(shared_eval, dense_nll_matches_independent_value) {
    shared_set s = {0};
    if (!load_shared(&s)) cr_skip_test("shared model, tokenizer or dev text not found (set SPRINT_SHARED)");
    sp_corpus c;
    sp_error err = {0};
    cr_assert_eq(sp_corpus_from_text(s.t, s.text, s.len, SANITIZED ? 4 : 0, &c, &err), SP_OK, "%s", err.msg);
    sp_attn_op *op = sp_attn_dense_fast_create(5, 8);
    sp_eval_opts o = {.threads = 2};
    sp_eval_result r;
    cr_assert_eq(sp_eval_corpus(s.m, &c, op, &o, &r, &err), SP_OK, "%s", err.msg);
    long targets = SANITIZED ? 1408 : 58900;
    cr_assert_eq(r.stories, SANITIZED ? 4 : 178);
    cr_assert_eq(r.tokens, targets);
    if (SANITIZED) /* first 4 stories, as the optimised build computes them */
        cr_assert(fabs(r.nll / 1.226703757198242 - 1) < 1e-6, "NLL of the first 4 stories %.15f", r.nll);
    else
        cr_assert(fabs(r.nll / 1.217 - 1) < 0.005, "dense NLL %.5f nats/token is more than 0.5%% from 1.217", r.nll);
    cr_assert_float_eq(r.ppl, exp(r.nll), 1e-9);
    cr_assert(r.top1 > 0.6 && r.top1 < 0.75, "top-1 %.4f", r.top1);
    cr_assert_float_eq(sp_attn_stats_kept_fraction(&r.attn), 1.0, 0);
    cr_assert_eq(r.attn.false_prunes, 0);
    /* every valid query of every (layer, head) is counted: 5 x 8 x targets */
    cr_assert_eq(r.attn.queries, 40.0 * (double)targets);
    sp_attn_op_free(op);
    sp_corpus_free(&c);
    free_shared(&s);
}

/* The double reference and the fast float operator agree on the first stories. */
Test(shared_eval, reference_and_fast_dense_agree) {
    shared_set s = {0};
    if (!load_shared(&s)) cr_skip_test("shared model, tokenizer or dev text not found (set SPRINT_SHARED)");
    sp_corpus c;
    int ns = SANITIZED ? 2 : 6;
    cr_assert_eq(sp_corpus_from_text(s.t, s.text, s.len, ns, &c, NULL), SP_OK);
    cr_assert_eq(c.n, ns);
    sp_attn_op *ref = sp_attn_dense_create(5, 8), *fast = sp_attn_dense_fast_create(5, 8);
    sp_eval_opts o = {.threads = 2};
    sp_eval_result a, b;
    cr_assert_eq(sp_eval_corpus(s.m, &c, ref, &o, &a, NULL), SP_OK);
    cr_assert_eq(sp_eval_corpus(s.m, &c, fast, &o, &b, NULL), SP_OK);
    cr_assert_eq(a.tokens, c.total_targets);
    cr_assert(fabs(a.nll - b.nll) < 1e-5 * a.nll, "reference %.9f vs fast %.9f", a.nll, b.nll);
    cr_assert_eq(memcmp(&a.attn, &b.attn, sizeof a.attn), 0, "statistics differ");
    /* stats are reset by every evaluation, not accumulated */
    cr_assert_eq(sp_eval_corpus(s.m, &c, fast, &o, &b, NULL), SP_OK);
    cr_assert_eq(b.attn.pairs_visible, a.attn.pairs_visible);
    sp_attn_op_free(ref);
    sp_attn_op_free(fast);
    sp_corpus_free(&c);
    free_shared(&s);
}

static void count_progress(void *user, const char *what, double done, double total) {
    cr_assert_str_eq(what, "stories");
    cr_assert_leq(done, total);
    (*(int *)user)++;
}

/* Windows: a story longer than the window is cut into consecutive windows; each target is
 * predicted once, and the NLL equals the sum over the windows computed by hand. */
Test(windows, each_target_once) {
    tiny_spec sp = {.dim = 16, .hidden = 24, .layers = 2, .heads = 4, .kv_heads = 2, .vocab = 20, .seq_len = 16,
                    .seed = 11};
    sp_model *m = tiny_load(&sp);
    cr_assert_not_null(m);
    int len = 23, tok[23];
    for (int i = 0; i < len; i++) tok[i] = (int)(sp_hash64((uint64_t)i + 5) % 20);
    int *tp = tok;
    sp_corpus c = {.n = 1, .tokens = &tp, .len = &len, .total_targets = len - 1};
    sp_attn_op *op = sp_attn_dense_create(2, 4);
    int calls = 0;
    sp_eval_opts o = {.window = 8, .threads = 1, .progress = count_progress, .progress_user = &calls};
    sp_eval_result r;
    cr_assert_eq(sp_eval_corpus(m, &c, op, &o, &r, NULL), SP_OK);
    cr_assert_eq(r.tokens, 22);
    cr_assert_eq(calls, 1, "one progress call per story");
    /* by hand: windows [0,8) [8,16) [16,22) predicting targets 1..8, 9..16, 17..22 */
    double nll = 0;
    float logits[16 * 20];
    int starts[3] = {0, 8, 16}, lens[3] = {8, 8, 6};
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(sp_model_forward(m, tok + starts[k], lens[k], op, k, 1, logits, NULL), SP_OK);
        for (int t = 0; t < lens[k]; t++) {
            double mx = -1e30, se = 0;
            for (int j = 0; j < 20; j++) mx = fmax(mx, logits[t * 20 + j]);
            for (int j = 0; j < 20; j++) se += exp(logits[t * 20 + j] - mx);
            nll += log(se) + mx - logits[t * 20 + tok[starts[k] + t + 1]];
        }
    }
    cr_assert(fabs(r.nll_sum - nll) < 1e-9 * nll, "eval %.12f vs by hand %.12f", r.nll_sum, nll);
    /* the default window (seq_len 16) gives different windows and so a different sum */
    o.window = 0;
    sp_eval_result r2;
    cr_assert_eq(sp_eval_corpus(m, &c, op, &o, &r2, NULL), SP_OK);
    cr_assert_eq(r2.tokens, 22);
    cr_assert_neq(r2.nll_sum, r.nll_sum);
    o.window = 17;
    sp_error err = {0};
    cr_assert_eq(sp_eval_corpus(m, &c, op, &o, &r2, &err), SP_ERR_ARG, "window beyond the context");
    sp_attn_op_free(op);
    sp_model_free(m);
}

/* Windows at their edges, against an independent formulation: target t (1 <= t < len) is
 * predicted from the inputs of its own window only, [floor((t-1)/W) W, t), as the last row of
 * a forward pass over exactly those inputs. Every story length around the window multiples,
 * several windows, and several stories at once (the sum, the count and the hits). */
Test(windows, edges_against_per_target_reference) {
    tiny_spec sp = {.dim = 16, .hidden = 24, .layers = 2, .heads = 4, .kv_heads = 2, .vocab = 20, .seq_len = 16,
                    .seed = 12};
    sp_model *m = tiny_load(&sp);
    cr_assert_not_null(m);
    int lens[] = {2, 3, 7, 8, 9, 10, 15, 16, 17, 18, 25, 33};
    enum { NS = sizeof lens / sizeof *lens, MAXLEN = 33 };
    int store[NS][MAXLEN], *tp[NS];
    long targets = 0;
    for (int i = 0; i < NS; i++) {
        for (int t = 0; t < lens[i]; t++) store[i][t] = (int)(sp_hash64((uint64_t)(i * 100 + t)) % 20);
        tp[i] = store[i];
        targets += lens[i] - 1;
    }
    sp_corpus c = {.n = NS, .tokens = tp, .len = lens, .total_targets = targets};
    sp_attn_op *op = sp_attn_dense_create(2, 4);
    float logits[16 * 20];
    int windows[] = {1, 5, 8, 16};
    for (int wi = 0; wi < 4; wi++) {
        int W = windows[wi];
        sp_eval_opts o = {.window = W, .threads = 2};
        sp_eval_result r;
        cr_assert_eq(sp_eval_corpus(m, &c, op, &o, &r, NULL), SP_OK);
        double nll = 0;
        long hits = 0;
        for (int i = 0; i < NS; i++)
            for (int t = 1; t < lens[i]; t++) {
                int s0 = (t - 1) / W * W, n = t - s0;
                cr_assert_eq(sp_model_forward(m, store[i] + s0, n, op, 0, 1, logits, NULL), SP_OK);
                const float *lr = logits + (size_t)(n - 1) * 20;
                double mx = -1e30, se = 0;
                int arg = 0;
                for (int j = 0; j < 20; j++)
                    if (lr[j] > mx) mx = lr[j], arg = j;
                for (int j = 0; j < 20; j++) se += exp(lr[j] - mx);
                nll += log(se) + mx - lr[store[i][t]];
                hits += arg == store[i][t];
            }
        cr_assert_eq(r.tokens, targets, "window %d: %ld targets predicted, expected %ld", W, r.tokens, targets);
        cr_assert(fabs(r.nll_sum - nll) < 1e-6 * nll, "window %d: eval %.12f vs per target %.12f", W, r.nll_sum, nll);
        cr_assert_float_eq(r.top1 * (double)targets, (double)hits, 1e-9, "window %d: top-1 hits", W);
        cr_assert_eq(r.attn.queries, 2.0 * 4 * (double)targets, "window %d: one query per target per head", W);
    }
    sp_attn_op_free(op);
    sp_model_free(m);
}

/* Corpus splitting: at <|endoftext|>, trimmed, empty stories dropped, each with BOS. */
Test(corpus, split_trim_drop) {
    TH_NEED_SHARED(p, "models/tok512.bin");
    sp_tokenizer *t = NULL;
    cr_assert_eq(sp_tokenizer_load(p, 512, &t, NULL), SP_OK);
    const char *text = "  Hello world \n<|endoftext|>\n \n<|endoftext|><|endoftext|>a<|endoftext|>\n";
    sp_corpus c;
    sp_error err = {0};
    cr_assert_eq(sp_corpus_from_text(t, text, strlen(text), 0, &c, &err), SP_OK, "%s", err.msg);
    cr_assert_eq(c.n, 2);
    int want0[] = {1, 346, 306, 414, 263, 304, 341}; /* "Hello world", as in test_tokenizer */
    cr_assert_eq(c.len[0], 7);
    for (int i = 0; i < 7; i++) cr_assert_eq(c.tokens[0][i], want0[i]);
    cr_assert_eq(c.len[1], 2);
    cr_assert_eq(c.tokens[1][0], 1);
    cr_assert_eq(c.total_targets, 6 + 1);
    sp_corpus_free(&c);
    cr_assert_eq(sp_corpus_from_text(t, text, strlen(text), 1, &c, NULL), SP_OK);
    cr_assert_eq(c.n, 1, "max_stories");
    sp_corpus_free(&c);
    /* nothing left: a data error */
    const char *empties[] = {"", "  \n\t", "<|endoftext|>", " <|endoftext|> \n<|endoftext|>"};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(sp_corpus_from_text(t, empties[i], strlen(empties[i]), 0, &c, &err), SP_ERR_DATA, "case %d", i);
        cr_assert(strstr(err.msg, "empty"), "%s", err.msg);
    }
    /* a bad byte in the second story is reported with the story */
    const char *bad = "fine<|endoftext|>not \xff fine";
    cr_assert_eq(sp_corpus_from_text(t, bad, strlen(bad), 0, &c, &err), SP_ERR_DATA);
    cr_assert(strstr(err.msg, "story 2") && strstr(err.msg, "UTF-8"), "%s", err.msg);
    sp_tokenizer_free(t);
}

/* `sprint eval --json` reports what the library computes (same stories, same bits), under the
 * key names scripts depend on. A few stories keep it quick; the full file is checked above. */
Test(cli, eval_json_keys_and_value) {
    shared_set s = {0};
    if (!load_shared(&s)) cr_skip_test("shared model, tokenizer or dev text not found (set SPRINT_SHARED)");
    sp_corpus c;
    int ns = SANITIZED ? 3 : 20;
    cr_assert_eq(sp_corpus_from_text(s.t, s.text, s.len, ns, &c, NULL), SP_OK);
    sp_attn_op *op = sp_attn_dense_fast_create(5, 8);
    sp_eval_opts eo = {.threads = 1};
    sp_eval_result r;
    cr_assert_eq(sp_eval_corpus(s.m, &c, op, &eo, &r, NULL), SP_OK);
    static char out[1 << 16], errb[1 << 16];
    char cmd[128];
    snprintf(cmd, sizeof cmd, "eval --json --quiet --set eval.max_stories=%d", ns);
    int rc = th_run_sprint(cmd, out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0, "exit %d, stderr: %s", rc, errb);
    cJSON *o = cJSON_Parse(out);
    cr_assert_not_null(o, "not JSON: %s", out);
    const char *keys[] = {"tokens", "nll", "ppl", "kept_fraction", "false_prune_rate", "new_fetch_fraction", "stories",
                          "top1", "tokens_per_s", "mem_kept_fraction", "locality", "mass_lost_per_query", "seconds"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(o, keys[i])), "key %s missing or not a number", keys[i]);
    cr_assert(cJSON_IsString(cJSON_GetObjectItem(o, "attention")));
    /* cJSON prints 15 significant digits when they read back within its epsilon */
    cr_assert_float_eq(cJSON_GetObjectItem(o, "nll")->valuedouble, r.nll, 1e-12, "CLI %.17g vs library %.17g",
                       cJSON_GetObjectItem(o, "nll")->valuedouble, r.nll);
    cr_assert_eq(cJSON_GetObjectItem(o, "tokens")->valuedouble, (double)r.tokens);
    cr_assert_eq(cJSON_GetObjectItem(o, "stories")->valuedouble, ns);
    cr_assert_float_eq(cJSON_GetObjectItem(o, "top1")->valuedouble, r.top1, 1e-12);
    cr_assert_eq(cJSON_GetObjectItem(o, "kept_fraction")->valuedouble, 1.0);
    cr_assert_float_eq(cJSON_GetObjectItem(o, "new_fetch_fraction")->valuedouble,
                       sp_attn_stats_new_fetch_fraction(&r.attn), 1e-12);
    cJSON_Delete(o);
    /* the table names units; the reference operator is selectable */
    rc = th_run_sprint("eval --quiet --attention dense-ref --set eval.max_stories=1", out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0, "exit %d, stderr: %s", rc, errb);
    cr_assert(strstr(out, "nats/token") && strstr(out, "tokens/s") && strstr(out, "perplexity"), "%s", out);
    rc = th_run_sprint("eval --help", out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0);
    cr_assert(strstr(out, "--attention"), "%s", out);
    sp_attn_op_free(op);
    sp_corpus_free(&c);
    free_shared(&s);
}

/* `sprint eval` of a pruning mode computes the statistics over every visible pair only with
 * --stats (or the keys given with --set): without, they are null, and the pruning itself (kept
 * fraction, NLL) is the same. */
Test(cli, eval_dense_statistics_only_when_asked) {
    char buf[4096];
    if (!th_shared_path("models/stories260K.bin", buf, sizeof buf) || !th_shared_path("models/tok512.bin", buf, sizeof buf))
        cr_skip_test("shared model or tokenizer not found (set SPRINT_SHARED)");
    static char out[3][1 << 16], errb[1 << 16];
    const char *cmds[3] = {"eval --json --quiet --attention sprint --set policy.delta=3 --set eval.max_stories=2",
                           "eval --json --quiet --attention sprint --stats --set policy.delta=3 --set eval.max_stories=2",
                           "eval --json --quiet --attention sprint --set sprint.mass_lost=1 --set policy.delta=3 "
                           "--set eval.max_stories=2"};
    cJSON *o[3];
    for (int k = 0; k < 3; k++) {
        int rc = th_run_sprint(cmds[k], out[k], sizeof out[k], errb, sizeof errb);
        cr_assert_eq(rc, 0, "exit %d, stderr: %s", rc, errb);
        o[k] = cJSON_Parse(out[k]);
        cr_assert_not_null(o[k], "not JSON: %s", out[k]);
    }
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(o[0], "false_prune_rate")), "%s", out[0]);
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(o[0], "mass_lost_per_query")), "%s", out[0]);
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(o[1], "false_prune_rate")), "%s", out[1]);
    cr_assert(cJSON_GetObjectItem(o[1], "mass_lost_per_query")->valuedouble > 0, "%s", out[1]);
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(o[2], "false_prune_rate")), "%s", out[2]);
    cr_assert_float_eq(cJSON_GetObjectItem(o[2], "mass_lost_per_query")->valuedouble,
                       cJSON_GetObjectItem(o[1], "mass_lost_per_query")->valuedouble, 1e-12);
    for (int k = 1; k < 3; k++) {
        cr_assert_eq(cJSON_GetObjectItem(o[k], "kept_fraction")->valuedouble,
                     cJSON_GetObjectItem(o[0], "kept_fraction")->valuedouble);
        cr_assert_eq(cJSON_GetObjectItem(o[k], "nll")->valuedouble, cJSON_GetObjectItem(o[0], "nll")->valuedouble);
    }
    for (int k = 0; k < 3; k++) cJSON_Delete(o[k]);
    int rc = th_run_sprint("eval --quiet --attention sprint --set policy.delta=3 --set eval.max_stories=1", out[0],
                           sizeof out[0], errb, sizeof errb);
    cr_assert_eq(rc, 0);
    cr_assert(strstr(out[0], "not computed"), "%s", out[0]);
}

/* What eval prints as "not computed" is what the operator left out: the reference pruning
 * operators always compute the false-prune rate (so it is a number without --stats), and a
 * --config file can turn the statistics on as --set can. */
Test(cli, eval_not_computed_is_what_the_operator_skipped) {
    char buf[4096];
    if (!th_shared_path("models/stories260K.bin", buf, sizeof buf) || !th_shared_path("models/tok512.bin", buf, sizeof buf))
        cr_skip_test("shared model or tokenizer not found (set SPRINT_SHARED)");
    char ini[] = "/tmp/sprint_eval_statsXXXXXX";
    int fd = mkstemp(ini);
    cr_assert(fd >= 0);
    const char *txt = "[sprint]\nexact_stats = 1\n";
    cr_assert_eq(write(fd, txt, strlen(txt)), (ssize_t)strlen(txt));
    close(fd);
    static char out[3][1 << 16], errb[1 << 16], cmd[3][512];
    snprintf(cmd[0], sizeof cmd[0], "eval --json --quiet --attention sprint --set sprint.impl=reference "
                                    "--set policy.delta=3 --set eval.max_stories=1");
    snprintf(cmd[1], sizeof cmd[1], "eval --json --quiet --attention sprint --config %s --set policy.delta=3 "
                                    "--set eval.max_stories=1", ini);
    snprintf(cmd[2], sizeof cmd[2], "eval --json --quiet --attention sprint --set policy.delta=3 "
                                    "--set eval.max_stories=1");
    cJSON *o[3];
    for (int k = 0; k < 3; k++) {
        int rc = th_run_sprint(cmd[k], out[k], sizeof out[k], errb, sizeof errb);
        cr_assert_eq(rc, 0, "%s: exit %d, stderr: %s", cmd[k], rc, errb);
        o[k] = cJSON_Parse(out[k]);
        cr_assert_not_null(o[k], "not JSON: %s", out[k]);
    }
    remove(ini);
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(o[0], "false_prune_rate")), "reference op: %s", out[0]);
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(o[0], "mass_lost_per_query")), "%s", out[0]);
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(o[1], "false_prune_rate")), "config file: %s", out[1]);
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(o[2], "false_prune_rate")), "default: %s", out[2]);
    cr_assert_eq(cJSON_GetObjectItem(o[0], "false_prune_rate")->valuedouble,
                 cJSON_GetObjectItem(o[1], "false_prune_rate")->valuedouble);
    for (int k = 0; k < 3; k++) cJSON_Delete(o[k]);
}

Test(cli, generate_greedy_is_deterministic) {
    char buf[4096];
    if (!th_shared_path("models/stories260K.bin", buf, sizeof buf) || !th_shared_path("models/tok512.bin", buf, sizeof buf))
        cr_skip_test("shared model or tokenizer not found (set SPRINT_SHARED)");
    static char o1[8192], o2[8192], e[8192];
    int rc = th_run_sprint("generate --quiet --temperature 0 --steps 20 --prompt 'Once upon a time'", o1, sizeof o1, e,
                           sizeof e);
    cr_assert_eq(rc, 0, "%s", e);
    cr_assert(!strncmp(o1, "Once upon a time, there was a little girl named Lily", 52), "%s", o1);
    rc = th_run_sprint("generate --quiet --temperature 0 --steps 20 --prompt 'Once upon a time' --threads 1", o2,
                       sizeof o2, e, sizeof e);
    cr_assert_str_eq(o1, o2);
    /* sampling: same seed, same text; the seed matters */
    rc = th_run_sprint("generate --quiet --steps 30 --seed 7", o1, sizeof o1, e, sizeof e);
    cr_assert_eq(rc, 0, "%s", e);
    th_run_sprint("generate --quiet --steps 30 --seed 7", o2, sizeof o2, e, sizeof e);
    cr_assert_str_eq(o1, o2);
    th_run_sprint("generate --quiet --steps 30 --seed 8", o2, sizeof o2, e, sizeof e);
    cr_assert_str_neq(o1, o2);
    rc = th_run_sprint("generate --help", o1, sizeof o1, e, sizeof e);
    cr_assert_eq(rc, 0);
    cr_assert(strstr(o1, "--temperature"));
    rc = th_run_sprint("generate --steps 0", o1, sizeof o1, e, sizeof e);
    cr_assert_eq(rc, 2, "bad --steps is a usage error");
}
