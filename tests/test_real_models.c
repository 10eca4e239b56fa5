/* test_real_models.c: `sprint run` traces every real language model it is given (issue 8,
 * "real traces in the main job"): one row per model in the reproduction and workload tables,
 * named after the checkpoint, with the workload statistics (kept and in-memory kept fraction
 * with their range over the heads, adjacent overlap, new keys per query, score spread) and one
 * per_head JSON entry per (layer, head). Tiny llama2.c and BitNet fixtures written by the test;
 * the shared models when present. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "tiny_bitnet.h"

static char out[1 << 21], errb[16384];

static const char *base_name(const char *p, char *buf, size_t n) {
    const char *b = strrchr(p, '/');
    b = b ? b + 1 : p;
    size_t l = strlen(b);
    if (l > 4 && !strcmp(b + l - 4, ".bin")) l -= 4;
    snprintf(buf, n, "%.*s", (int)l, b);
    return buf;
}

static double numv(const cJSON *o, const char *k) {
    const cJSON *x = cJSON_GetObjectItem(o, k);
    cr_assert(x && cJSON_IsNumber(x), "missing number '%s'", k);
    return x->valuedouble;
}

/* Checks one real-model workload entry: its shape, and every statistic present and
 * consistent with the per-head entries (one per layer and head, in order). */
static void check_workload(const cJSON *w, const char *name, int layers, int heads, int stories) {
    cr_assert_str_eq(cJSON_GetObjectItem(w, "workload")->valuestring, name);
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(w, "synthetic")), "%s is not a real model", name);
    cr_assert_eq((int)numv(w, "layers"), layers);
    cr_assert_eq((int)numv(w, "heads"), heads);
    cr_assert_eq((int)numv(w, "sim_heads"), stories * layers * heads, "%s: all heads of %d stories", name, stories);
    double kept = numv(w, "kept_fraction"), mem = numv(w, "mem_kept_fraction");
    cr_assert(kept > 0 && kept <= mem && mem <= 1, "%s: kept %g, in memory %g", name, kept, mem);
    double ov = numv(w, "adjacent_overlap"), nf = numv(w, "new_fetch_fraction"), sp = numv(w, "score_spread_nats");
    cr_assert(ov > 0 && ov <= 1 && nf >= 0 && nf <= 1, "%s: overlap %g, new %g", name, ov, nf);
    cr_assert(sp > 0 && isfinite(sp), "%s: score spread %g", name, sp);
    double kmin = numv(w, "kept_fraction_head_min"), kmax = numv(w, "kept_fraction_head_max");
    double mmin = numv(w, "mem_kept_fraction_head_min"), mmax = numv(w, "mem_kept_fraction_head_max");
    cr_assert(kmin <= kept && kept <= kmax && mmin <= mem && mem <= mmax, "%s: range %g-%g, %g-%g", name, kmin, kmax,
              mmin, mmax);
    const cJSON *ph = cJSON_GetObjectItem(w, "per_head");
    cr_assert(cJSON_IsArray(ph), "%s: no per_head", name);
    cr_assert_eq(cJSON_GetArraySize(ph), layers * heads, "%s: %d per-head entries", name, cJSON_GetArraySize(ph));
    double lo = 2, hi = -1, spsum = 0;
    for (int i = 0; i < layers * heads; i++) {
        const cJSON *e = cJSON_GetArrayItem(ph, i);
        cr_assert_eq((int)numv(e, "layer"), i / heads);
        cr_assert_eq((int)numv(e, "head"), i % heads);
        cr_assert_gt(numv(e, "queries"), 0);
        double k = numv(e, "kept_fraction"), m = numv(e, "mem_kept_fraction");
        cr_assert(k >= 0 && k <= m && m <= 1, "%s head %d: kept %g, in memory %g", name, i, k, m);
        numv(e, "adjacent_overlap");
        numv(e, "new_fetch_fraction");
        double s = numv(e, "score_spread_nats");
        cr_assert(s >= 0 && isfinite(s));
        spsum += s;
        lo = k < lo ? k : lo, hi = k > hi ? k : hi;
    }
    cr_assert_float_eq(lo, kmin, 1e-12);
    cr_assert_float_eq(hi, kmax, 1e-12);
    cr_assert_gt(spsum, 0);
}

/* The test text's stories [from, to) in a temporary file. */
static const char *stories_range(int from, int to) {
    static char t[8192];
    t[0] = 0;
    /* six stories: the traces take up to 3 from the second half and calibrate on the first */
    const char *s[6] = {"once upon a time there was a little cat who liked to play in the garden with a red ball",
                        "the sun was bright and the birds sang in the tall green trees near the quiet old house",
                        "a small boy found a shiny stone by the river and took it home to show his kind mother",
                        "the dog ran fast across the field to catch the stick that his friend threw very far away",
                        "a girl and her friend baked a big cake for the party and shared it with every child there",
                        "the old man sat by the window and watched the rain fall on the little boats in the bay"};
    for (int i = from; i < to; i++) {
        strcat(t, s[i]);
        strcat(t, ". and then they were happy every day.\n<|endoftext|>\n");
    }
    return th_temp_text(t);
}

static const char *stories_text(void) { return stories_range(0, 6); }

/* The "workloads" and "results" of a run's JSON without its wall-clock "seconds" fields. */
static char *rows_without_seconds(const char *json) {
    cJSON *j = cJSON_Parse(json);
    cr_assert(j, "not JSON: %.300s", json);
    cJSON *w;
    cJSON_ArrayForEach(w, cJSON_GetObjectItem(j, "workloads")) cJSON_DeleteItemFromObject(w, "seconds");
    cJSON *keep = cJSON_CreateObject();
    cJSON_AddItemToObject(keep, "workloads", cJSON_DetachItemFromObject(j, "workloads"));
    cJSON_AddItemToObject(keep, "results", cJSON_DetachItemFromObject(j, "results"));
    char *txt = cJSON_PrintUnformatted(keep);
    cJSON_Delete(keep);
    cJSON_Delete(j);
    return txt;
}

Test(real_models, every_model_is_a_row_with_its_statistics) {
    tiny_spec a = {.dim = 32, .hidden = 48, .layers = 2, .heads = 4, .kv_heads = 2, .vocab = 40, .seq_len = 160, .seed = 7};
    float *w = tiny_weights(&a);
    char pa[128], pb[128];
    snprintf(pa, sizeof pa, "%s", tiny_write(&a, w, 0));
    free(w);
    tiny_spec b = {.dim = 64, .hidden = 96, .layers = 3, .heads = 4, .kv_heads = 2, .vocab = 40, .seq_len = 160, .seed = 9};
    unsigned char *bb = tinybit_bytes(&b);
    snprintf(pb, sizeof pb, "%s", tinybit_write(bb, tinybit_size(&b)));
    free(bb);
    char tok[128], txt[128];
    snprintf(tok, sizeof tok, "%s", tiny_tokenizer(40));
    snprintf(txt, sizeof txt, "%s", stories_text());
    char args[2048];
    snprintf(args, sizeof args,
             "run --real-only --json --quiet --sizes S --set sim.real_models=%s,%s:1 --set model.tokenizer=%s "
             "--set eval.text=%s --set sim.trace_stories=3",
             pa, pb, tok, txt);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, errb, sizeof errb), 0, "%s", errb);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j, "not JSON: %.300s", out);
    const cJSON *wls = cJSON_GetObjectItem(j, "workloads");
    cr_assert_eq(cJSON_GetArraySize(wls), 2, "one row per real model");
    char na[64], nb[64];
    check_workload(cJSON_GetArrayItem(wls, 0), base_name(pa, na, sizeof na), 2, 4, 3);
    check_workload(cJSON_GetArrayItem(wls, 1), base_name(pb, nb, sizeof nb), 3, 4, 1);
    /* both in the reproduction results too */
    int seen[2] = {0, 0};
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(j, "results")) {
        const char *n = cJSON_GetObjectItem(r, "workload")->valuestring;
        seen[0] += !strcmp(n, na), seen[1] += !strcmp(n, nb);
    }
    cr_assert(seen[0] > 0 && seen[1] > 0);
    cJSON_Delete(j);
    /* the text report: a row of each table per model */
    snprintf(args, sizeof args,
             "run --real-only --quiet --sizes S --set sim.real_models=%s,%s:1 --set model.tokenizer=%s --set eval.text=%s "
             "--set sim.trace_stories=3",
             pa, pb, tok, txt);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, errb, sizeof errb), 0, "%s", errb);
    const char *realism = strstr(out, "Workload realism");
    cr_assert(realism, "%s", out);
    for (int i = 0; i < 2; i++) {
        const char *n = i ? nb : na;
        const char *first = strstr(out, n);
        cr_assert(first && first < realism, "%s not in the reproduction table:\n%s", n, out);
        cr_assert(strstr(realism, n), "%s not in the workload table:\n%s", n, out);
    }
    cr_assert(strstr(realism, "spread_nat"), "%s", realism);
    /* the header states the run's memory even without a preset (it used to print 0.0 GB/s) */
    cr_assert(strstr(out, "409.6 GB/s effective") && strstr(out, "no preset in this run"), "%.400s", out);
}

/* sprint run's real-model rows trace the text's second half and calibrate on as many stories of
 * its first half: the same rows as tracing a file of the second half's stories with a file of
 * the first half's as policy.calib_text (eval.split = none); calibrating on the traced stories
 * themselves (eval.split = none alone) gives other rows, with a warning. */
Test(real_models, traces_calibrate_on_the_first_half, .timeout = 120) {
    tiny_spec a = {.dim = 32, .hidden = 48, .layers = 2, .heads = 4, .kv_heads = 2, .vocab = 40, .seq_len = 160, .seed = 7};
    float *w = tiny_weights(&a);
    char pa[128], tok[128], all[128], first[128], second[128], args[2048];
    snprintf(pa, sizeof pa, "%s", tiny_write(&a, w, 0));
    free(w);
    snprintf(tok, sizeof tok, "%s", tiny_tokenizer(40));
    snprintf(all, sizeof all, "%s", stories_range(0, 6));
    snprintf(first, sizeof first, "%s", stories_range(0, 3));
    snprintf(second, sizeof second, "%s", stories_range(3, 6));
    const char *common = "run --real-only --json --quiet --sizes S --set sim.trace_stories=2 --set policy.calib_stories=2";
    snprintf(args, sizeof args, "%s --set sim.real_models=%s --set model.tokenizer=%s --set eval.text=%s", common, pa, tok, all);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, errb, sizeof errb), 0, "%s", errb);
    cr_assert(!strstr(errb, "warning"), "%s", errb);
    char *split = rows_without_seconds(out);
    snprintf(args, sizeof args,
             "%s --set sim.real_models=%s --set model.tokenizer=%s --set eval.text=%s --set eval.split=none "
             "--set policy.calib_text=%s",
             common, pa, tok, second, first);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, errb, sizeof errb), 0, "%s", errb);
    char *files = rows_without_seconds(out);
    cr_assert_str_eq(split, files, "the default split must trace stories 4-5 calibrated on stories 1-2");
    snprintf(args, sizeof args, "%s --set sim.real_models=%s --set model.tokenizer=%s --set eval.text=%s --set eval.split=none",
             common, pa, tok, second);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, errb, sizeof errb), 0, "%s", errb);
    cr_assert(strstr(errb, "warning: eval.split = none"), "%s", errb);
    char *self = rows_without_seconds(out);
    cr_assert_str_neq(split, self, "calibrating on the traced stories themselves should change the rows");
    free(split), free(files), free(self);
}

/* A model named explicitly that does not exist is an error naming it; a bad :N is refused. */
Test(real_models, explicit_missing_model_is_an_error) {
    int rc = th_run_sprint("run --real-only --quiet --sizes S --set sim.real_models=/nonexistent/dir/none.bin", out, sizeof out,
                           errb, sizeof errb);
    cr_assert_neq(rc, 0);
    cr_assert(strstr(errb, "/nonexistent/dir/none.bin") && strstr(errb, "not found"), "%s", errb);
    rc = th_run_sprint("run --real-only --quiet --sizes S --set sim.real_models=stories260K:x1", out, sizeof out, errb,
                       sizeof errb);
    cr_assert_neq(rc, 0);
    cr_assert(strstr(errb, "NAME:STORIES"), "%s", errb);
}

/* The shared models by name: stories260K (5 x 8 heads) and bitnet-3M (8 x 8), every head. */
Test(real_models, shared_models_by_name) {
    char p[4096];
    if (!th_shared_path("models/bitnet-3M.bin", p, sizeof p) || !th_shared_path("models/stories260K.bin", p, sizeof p))
        cr_skip_test("shared models not found (set SPRINT_SHARED)");
    cr_assert_eq(th_run_sprint("run --real-only --json --quiet --sizes S --set sim.real_models=stories260K,bitnet-3M.bin:1 "
                               "--set sim.trace_stories=1",
                               out, sizeof out, errb, sizeof errb),
                 0, "%s", errb);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j);
    const cJSON *wls = cJSON_GetObjectItem(j, "workloads");
    cr_assert_eq(cJSON_GetArraySize(wls), 2);
    check_workload(cJSON_GetArrayItem(wls, 0), "stories260K", 5, 8, 1);
    check_workload(cJSON_GetArrayItem(wls, 1), "bitnet-3M", 8, 8, 1);
    cr_assert_eq((int)numv(cJSON_GetArrayItem(wls, 1), "d"), 32);
    cJSON_Delete(j);
}

/* sim_heads of a real model counts head instances: one per (layer, head, evaluation window), so
 * a story split into windows counts once per window (it used to count stories x heads). The
 * windows are counted independently from sprint trace's sequence ids. */
Test(real_models, head_instances_count_windows, .timeout = 120) {
    char p[4096];
    if (!th_shared_path("models/stories260K.bin", p, sizeof p)) cr_skip_test("shared model not found (set SPRINT_SHARED)");
    const char *keys = "--set sim.trace_stories=1 --set eval.window=64 --set policy.delta=3 --quiet";
    char args[512];
    snprintf(args, sizeof args, "trace --real %s", keys);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, errb, sizeof errb), 0, "%s", errb);
    long long seqs[64];
    int nseq = 0;
    for (const char *line = strchr(out, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
        int l, h;
        long long s;
        if (sscanf(line + 1, "%d,%d,%lld,", &l, &h, &s) != 3) continue;
        int seen = 0;
        for (int i = 0; i < nseq; i++) seen |= seqs[i] == s;
        if (!seen && nseq < 64) seqs[nseq++] = s;
    }
    cr_assert(nseq >= 2, "the story should span several 64-token windows, got %d", nseq);
    snprintf(args, sizeof args, "run --real-only --json --sizes S --set sim.real_models=stories260K.bin %s", keys);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, errb, sizeof errb), 0, "%s", errb);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j);
    const cJSON *w = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "workloads"), 0);
    cr_assert_eq((int)numv(w, "sim_heads"), nseq * 5 * 8, "sim_heads %d, windows %d", (int)numv(w, "sim_heads"), nseq);
    cJSON_Delete(j);
}
