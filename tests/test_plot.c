/* test_plot.c: does `sprint plot` (issue 10) draw every figure from sprint's own outputs, with
 * the paper's values beside ours, to a valid PNG and SVG, and refuse bad input clearly? */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "sprint/paper.h"

static char dir[64];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/sp_plot_test_XXXXXX");
    cr_assert(mkdtemp(dir) != NULL);
}
static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* PREFIX.png starts with the PNG signature; PREFIX.svg is an SVG holding every string of want */
static void check_outputs(const char *prefix, const char *const *want, int nwant) {
    char p[256];
    snprintf(p, sizeof p, "%s.png", prefix);
    FILE *f = fopen(p, "rb");
    cr_assert(f != NULL, "no %s", p);
    unsigned char sig[8];
    cr_assert_eq(fread(sig, 1, 8, f), 8);
    fclose(f);
    cr_assert(!memcmp(sig, "\x89PNG\r\n\x1a\n", 8), "%s is not a PNG", p);
    snprintf(p, sizeof p, "%s.svg", prefix);
    f = fopen(p, "rb");
    cr_assert(f != NULL, "no %s", p);
    static char svg[1 << 21];
    size_t n = fread(svg, 1, sizeof svg - 1, f);
    svg[n] = 0;
    fclose(f);
    cr_assert(strstr(svg, "<svg") != NULL, "%s is not an SVG", p);
    for (int i = 0; i < nwant; i++) cr_assert(strstr(svg, want[i]) != NULL, "%s lacks '%s'", p, want[i]);
}

static int run(const char *fmt, const char *a, const char *b, char *err, size_t nerr) {
    char args[1024], out[4096];
    snprintf(args, sizeof args, fmt, a, b, b);
    return th_run_sprint(args, out, sizeof out, err, nerr);
}

Test(plot, architecture_figures_from_run_json, .init = setup, .fini = teardown, .timeout = 300) {
    char args[512], out[1 << 16], err[4096], path[128];
    snprintf(path, sizeof path, "%s/run.json", dir);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s run --workload BERT-B --workload ViT-B --no-real --json --quiet > %s", SP_SPRINT_EXE, path);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    const char *figs[3] = {"fig10", "fig11", "energy"};
    for (int i = 0; i < 3; i++) {
        char prefix[128];
        snprintf(prefix, sizeof prefix, "%s/%s", dir, figs[i]);
        snprintf(args, sizeof args, "plot %s %s --out %s --quiet", figs[i], path, prefix);
        cr_assert_eq(th_run_sprint(args, out, sizeof out, err, sizeof err), 0, "%s: %s", figs[i], err);
        const char *want[3] = {"BERT-B", "ViT-B", "paper"};
        check_outputs(prefix, want, 3);
    }
    /* wrong input kinds are clear errors */
    cr_assert_eq(run("plot fig11 %s/nothing.json --out %s/x", dir, dir, err, sizeof err), 1);
    cr_assert_eq(run("plot fig9 %s/run.json --out %s/x%s", dir, dir, err, sizeof err), 1);
    cr_assert(strstr(err, "rows") != NULL, "%s", err);
    cr_assert_eq(th_run_sprint("plot fig12 x.json", out, sizeof out, err, sizeof err), 2);
    cr_assert(strstr(err, "did you mean 'fig10'") != NULL || strstr(err, "did you mean 'fig11'") != NULL, "%s", err);
}

Test(plot, accuracy_figures_and_sweeps, .init = setup, .fini = teardown, .timeout = 300) {
    char path[128], out[4096], err[4096];
    /* a sweep CSV as sprint sweep writes it (accuracy and cost columns) and a compare JSON */
    snprintf(path, sizeof path, "%s/sweep.csv", dir);
    FILE *f = fopen(path, "w");
    fputs("point,quant.msb_bits,attention,nll_nats_per_token,nll_change_fraction,kept_fraction,mem_kept_fraction,"
          "cycles,thresholding_busy_cycles,speedup,seconds\n", f);
    for (int b = 1; b <= 8; b++)
        for (int m = 0; m < 2; m++)
            fprintf(f, "%d,%d,%s,1.3,%g,0.1,%g,%d,%d,%g,1\n", 2 * (b - 1) + m, b, m ? "sprint-norecompute" : "sprint",
                    (m ? 2.0 : 0.01) / b, 1.0 / b, 1000 + b, 100 * b, 10.0 * b);
    fclose(f);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s/fig5", dir);
    cr_assert_eq(run("plot fig5 %s --out %s --quiet", path, prefix, err, sizeof err), 0, "%s", err);
    double acc[8];
    const char *want5[4] = {"SPRINT w/o recompute", "paper BERT-SQuAD", "speedup", sp_paper_fig5(2, acc)};
    check_outputs(prefix, want5, 4);
    snprintf(prefix, sizeof prefix, "%s/sweep", dir);
    char args[512];
    snprintf(args, sizeof args, "plot sweep %s --x quant.msb_bits --y speedup,kept_fraction --by attention --out %s --quiet",
             path, prefix);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, err, sizeof err), 0, "%s", err);
    const char *wants[2] = {"speedup, attention = sprint-norecompute", "kept_fraction, attention = sprint"};
    check_outputs(prefix, wants, 2);
    snprintf(args, sizeof args, "plot sweep %s --x quant.msb_bits --y nope --out %s --quiet", path, prefix);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, err, sizeof err), 1);
    cr_assert(strstr(err, "no column 'nope'") != NULL, "%s", err);

    snprintf(path, sizeof path, "%s/compare.json", dir);
    f = fopen(path, "w");
    fputs("{\"command\":\"compare\",\"rows\":[{\"mode\":\"dense\",\"policy\":\"-\",\"nll_change\":0},"
          "{\"mode\":\"pruning\",\"policy\":\"onchip\",\"nll_change_fraction\":0.001},"
          "{\"mode\":\"sprint-norecompute\",\"policy\":\"onchip\",\"nll_change_fraction\":0.5},"
          "{\"mode\":\"sprint\",\"policy\":\"onchip\",\"nll_change\":0.003}]}\n", f);
    fclose(f);
    snprintf(prefix, sizeof prefix, "%s/fig9", dir);
    cr_assert_eq(run("plot fig9 %s --out %s --quiet", path, prefix, err, sizeof err), 0, "%s", err);
    const char *want9[3] = {"onchip", "GPT-2-L", "w/o-recompute"};
    check_outputs(prefix, want9, 3);
}

Test(plot, paper_values_are_the_documented_ones) {
    double a[8], v[4];
    const char *unit;
    cr_assert_str_eq(sp_paper_fig5(1, a), "BERT-SQuAD");
    cr_assert_float_eq(a[1], 2.5, 1e-12);
    cr_assert_float_eq(a[3], 80, 1e-12);
    cr_assert_null(sp_paper_fig5(3, a));
    cr_assert_str_eq(sp_paper_fig9(5, v, &unit), "GPT-2-L");
    cr_assert_str_eq(unit, "perplexity");
    cr_assert_float_eq(v[2], 23.4, 1e-12);
    cr_assert_null(sp_paper_fig9(6, v, &unit));
}
