#define _GNU_SOURCE
/* sprint plot: the paper's figures from sprint's own outputs, with the paper's values beside
 * ours (issue 10), rendered by gnuplot to PNG and SVG:
 *   fig5    key MSB bits vs accuracy (and cost)   from a sweep over quant.msb_bits (results.csv)
 *   fig9    accuracy per design                   from `sprint compare --json` (or its --csv)
 *   fig10   main-memory traffic per chip size     from `sprint run --json`
 *   fig11   speedup per chip size                 from `sprint run --json`
 *   energy  energy breakdown per design           from `sprint run --json`
 *   sweep   any columns of a sweep CSV            from `sprint sweep` (results.csv)
 * The paper's values come from the library (sp_paper_lookup, sp_paper_fig5, sp_paper_fig9). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "sprint/paper.h"
#include "sprint/sim.h"

static void help(void) {
    printf("usage: sprint plot FIGURE INPUT [--out PREFIX] [--title T] [--size S|M|L]\n"
           "                  [--x COL --y COL[,COL...] [--by COL] [--logy]]\n\n"
           "Draws a figure of the paper from sprint's own output, the paper's values beside ours, with\n"
           "gnuplot, to PREFIX.png and PREFIX.svg (default PREFIX: the figure's name).\n\n"
           "  fig5    INPUT = results.csv of `sprint sweep --param quant.msb_bits --attention sprint,sprint-norecompute`\n"
           "          (with --measure accuracy,sim a third panel shows the simulator's speedup)\n"
           "  fig9    INPUT = `sprint compare --json` output (or its --csv file)\n"
           "  fig10   INPUT = `sprint run --json` output: traffic reduction per size vs the S baseline\n"
           "  fig11   INPUT = `sprint run --json` output: speedup per size\n"
           "  energy  INPUT = `sprint run --json` output: breakdown at --size (default M, see docs/simulator.md)\n"
           "  sweep   INPUT = a sweep results.csv; --x COL, --y COL[,COL...], optional --by COL (one line per\n"
           "          value) and --logy\n\n"
           "  --out PREFIX   output files PREFIX.png and PREFIX.svg\n"
           "  --title T      figure title (default: what the figure shows and the input file)\n"
           "  --size S|M|L   energy: chip size drawn\n"
           "  --quiet        no message on stderr\n");
}

typedef struct plot_ctx {
    cli_common c;
    const char *input, *out, *title;
    char dir[256];     /* temporary directory of the data files */
    int nfiles;
} plot_ctx;

/* ---- inputs ---------------------------------------------------------------------------- */
typedef struct csv {
    char *text;   /* the file; every field points into it */
    char **cols;
    int ncol;
    char ***rows; /* rows[r][c] */
    int nrow;
} csv;

static int split_line(char *line, char **f, int max) {
    int n = 0;
    char *p = line;
    while (n < max) {
        if (*p == '"') { /* quoted field, "" escapes a quote */
            char *w = ++p;
            f[n++] = w;
            while (*p && !(*p == '"' && p[1] != '"')) {
                if (*p == '"') p++;
                *w++ = *p++;
            }
            if (*p) p++;
            *w = 0;
            if (*p == ',') p++;
            else break;
        } else {
            f[n++] = p;
            char *cm = strchr(p, ',');
            if (!cm) break;
            *cm = 0;
            p = cm + 1;
        }
    }
    return n;
}

static void csv_load(plot_ctx *x, csv *t) {
    memset(t, 0, sizeof *t);
    char *text = NULL;
    size_t len = 0;
    sp_error err = {0};
    if (sp_read_file(x->input, &text, &len, &err) != SP_OK) cli_die_err(&x->c, &err);
    int cap = 16;
    t->rows = calloc((size_t)cap, sizeof *t->rows);
    char *save = NULL;
    for (char *line = strtok_r(text, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
        char **f = calloc(256, sizeof *f);
        int n = split_line(line, f, 256);
        if (!t->cols) {
            t->cols = f;
            t->ncol = n;
            continue;
        }
        if (n != t->ncol) cli_die(&x->c, 1, "%s: row %d has %d fields, the header %d", x->input, t->nrow + 2, n, t->ncol);
        if (t->nrow == cap) t->rows = realloc(t->rows, sizeof *t->rows * (size_t)(cap *= 2));
        t->rows[t->nrow++] = f;
    }
    if (!t->cols || !t->nrow) cli_die(&x->c, 1, "%s: no rows (expected a CSV with a header line)", x->input);
    t->text = text;
}

static void csv_free(csv *t) {
    for (int r = 0; r < t->nrow; r++) free(t->rows[r]);
    free(t->rows);
    free(t->cols);
    free(t->text);
    memset(t, 0, sizeof *t);
}

static int csv_col(const csv *t, const char *name) {
    for (int i = 0; i < t->ncol; i++)
        if (!strcmp(t->cols[i], name)) return i;
    return -1;
}

static int csv_need(plot_ctx *x, const csv *t, const char *name, const char *hint) {
    int i = csv_col(t, name);
    if (i < 0) cli_die(&x->c, 1, "%s: no column '%s' (%s)", x->input, name, hint);
    return i;
}

/* What the inputs were loaded into stays reachable from these until freed, so an error exit
 * (cli_die) leaves no leak behind for the sanitizer build. */
static cJSON *volatile loaded_json; /* volatile: the store is kept although never read */

static cJSON *json_load(plot_ctx *x) {
    char *text = NULL;
    size_t len = 0;
    sp_error err = {0};
    if (sp_read_file(x->input, &text, &len, &err) != SP_OK) cli_die_err(&x->c, &err);
    cJSON *o = cJSON_Parse(text);
    free(text);
    if (!o) cli_die(&x->c, 1, "%s: not JSON (expected the --json output of a sprint command)", x->input);
    loaded_json = o;
    return o;
}

static double jnum(plot_ctx *x, const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v)) cli_die(&x->c, 1, "%s: a result has no number '%s'", x->input, k);
    return v->valuedouble;
}

static const char *jstr(plot_ctx *x, const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(v)) cli_die(&x->c, 1, "%s: a result has no string '%s'", x->input, k);
    return v->valuestring;
}

/* ---- outputs ----------------------------------------------------------------------------- */
static FILE *data_file(plot_ctx *x, char *path, size_t n) {
    snprintf(path, n, "%s/d%d.dat", x->dir, x->nfiles++);
    FILE *f = fopen(path, "w");
    if (!f) cli_die(&x->c, 1, "cannot write %s: %s", path, strerror(errno));
    return f;
}

/* Runs the gnuplot script body twice (PNG, SVG) with the common preamble. */
static void render(plot_ctx *x, const char *size_png, const char *size_svg, const char *body) {
    const char *term[2] = {"pngcairo", "svg"}, *ext[2] = {"png", "svg"}, *sz[2] = {size_png, size_svg};
    for (int t = 0; t < 2; t++) {
        char script[512];
        snprintf(script, sizeof script, "%s/plot_%s.gp", x->dir, ext[t]);
        FILE *f = fopen(script, "w");
        if (!f) cli_die(&x->c, 1, "cannot write %s", script);
        fprintf(f, "set terminal %s size %s font \",11\"%s\nset output \"%s.%s\"\nset grid ytics\nset termoption noenhanced\n",
                term[t], sz[t],
                t ? " dynamic background rgb 'white'" : "", x->out, ext[t]);
        fputs(body, f);
        fclose(f);
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "gnuplot '%s' 2>'%s/gnuplot.err'", script, x->dir);
        int st = system(cmd);
        if (st != 0) {
            char errp[400], *msg = NULL;
            size_t len = 0;
            sp_error e = {0};
            snprintf(errp, sizeof errp, "%s/gnuplot.err", x->dir);
            sp_read_file(errp, &msg, &len, &e);
            cli_die(&x->c, 1, "gnuplot failed (%s): %.400s", WIFEXITED(st) && WEXITSTATUS(st) == 127 ?
                    "is gnuplot installed? scripts/install-deps" : "script error", msg ? msg : "");
        }
    }
    if (!x->c.quiet) fprintf(stderr, "sprint plot: wrote %s.png and %s.svg\n", x->out, x->out);
}

/* ---- figures ----------------------------------------------------------------------------- */
static const char *title_or(plot_ctx *x, char *buf, size_t n, const char *def) {
    if (x->title) snprintf(buf, n, "%s", x->title);
    else snprintf(buf, n, "%s (%s)", def, x->input);
    /* gnuplot strings are double-quoted: no quotes inside */
    for (char *p = buf; *p; p++)
        if (*p == '"') *p = '\'';
    return buf;
}

static void fig5(plot_ctx *x) {
    static csv t; /* static: reachable on an error exit */
    csv_load(x, &t);
    const char *hint = "expected sprint sweep --param quant.msb_bits with accuracy";
    int cb = csv_need(x, &t, "quant.msb_bits", hint), cm = csv_col(&t, "attention"),
        cn = csv_need(x, &t, "nll_change_fraction", hint), ck = csv_need(x, &t, "mem_kept_fraction", hint),
        cs = csv_col(&t, "speedup"), ct = csv_col(&t, "thresholding_busy_cycles"), cc = csv_col(&t, "cycles");
    static const char *const modes[3] = {"sprint", "sprint-norecompute", "pruning"};
    static const char *const labels[3] = {"SPRINT (recompute)", "SPRINT w/o recompute", "runtime pruning"};
    char path[3][400], ppath[400];
    int have[3] = {0, 0, 0};
    for (int m = 0; m < 3; m++) {
        FILE *f = data_file(x, path[m], sizeof path[m]);
        for (int b = 1; b <= 8; b++)
            for (int r = 0; r < t.nrow; r++) {
                const char *mode = cm >= 0 ? t.rows[r][cm] : "sprint";
                if (strcmp(mode, modes[m]) || atoi(t.rows[r][cb]) != b) continue;
                double dn = 100 * atof(t.rows[r][cn]);
                fprintf(f, "%d %.6g %.6g %s %s %s\n", b, dn > 0.01 ? dn : 0.01, 100 * atof(t.rows[r][ck]),
                        cs >= 0 ? t.rows[r][cs] : "NaN", ct >= 0 && cc >= 0 ? t.rows[r][ct] : "NaN",
                        cc >= 0 ? t.rows[r][cc] : "NaN");
                have[m] = 1;
                break;
            }
        fclose(f);
    }
    if (!have[0] && !have[1] && !have[2]) cli_die(&x->c, 1, "%s: no rows of mode sprint, sprint-norecompute or pruning", x->input);
    FILE *f = data_file(x, ppath, sizeof ppath);
    for (int b = 0; b < 8; b++) {
        fprintf(f, "%d", b + 1);
        double acc[8];
        for (int s = 0; sp_paper_fig5(s, acc); s++) fprintf(f, " %g", acc[b]);
        fputc('\n', f);
    }
    fclose(f);
    int cost = cs >= 0;
    char title[600], *body = NULL;
    size_t len = 0;
    FILE *g = open_memstream(&body, &len);
    fprintf(g, "set multiplot layout 1,%d title \"%s\"\nset xlabel \"b (key MSB bits in ReRAM)\"\nset xtics 1\n"
               "set xrange [0.5:8.5]\nset key top right\n",
            cost ? 3 : 2, title_or(x, title, sizeof title, "Fig. 5: key MSB bits vs accuracy"));
    fprintf(g, "set title \"ours: NLL change vs dense\"\nset ylabel \"mean NLL change (%%, log)\"\nset logscale y\nplot ");
    int first = 1;
    for (int m = 0; m < 3; m++)
        if (have[m]) {
            fprintf(g, "%s\"%s\" using 1:2 with linespoints lw 2 pt 7 title \"%s\"", first ? "" : ", ", path[m], labels[m]);
            first = 0;
        }
    fprintf(g, "\nunset logscale y\nset title \"paper Fig. 5: task accuracy\"\nset ylabel \"accuracy (%%)\"\n"
               "set yrange [0:100]\nset key bottom right\nplot ");
    double acc[8];
    for (int s = 0; sp_paper_fig5(s, acc); s++)
        fprintf(g, "%s\"%s\" using 1:%d with linespoints lw 2 dt 2 pt 6 title \"paper %s\"", s ? ", " : "", ppath, s + 2,
                sp_paper_fig5(s, acc));
    fputc('\n', g);
    if (cost) {
        fprintf(g, "set title \"ours: simulator cost (%s)\"\nset yrange [0:*]\nset ylabel \"speedup over the baseline (x)\"\n"
                   "set y2label \"thresholding busy (%% of cycles)\"\nset y2tics\nset y2range [0:*]\nset ytics nomirror\nset key bottom right\n"
                   "plot \"%s\" using 1:4 with linespoints lw 2 pt 7 title \"speedup\", "
                   "\"%s\" using 1:(100*$5/$6) axes x1y2 with linespoints lw 2 pt 5 title \"thresholding busy\"\n",
                cm >= 0 ? "mode sprint" : "", path[0], path[0]);
    }
    fprintf(g, "unset multiplot\n");
    fclose(g);
    render(x, cost ? "1500,460" : "1000,440", cost ? "1500,460" : "1000,440", body);
    free(body);
    csv_free(&t);
}

static void fig9(plot_ctx *x) {
    /* ours: rows of mode x policy with nll_change (JSON) or nll_change_fraction (CSV) */
    static const char *const modes[4] = {"dense", "pruning", "sprint-norecompute", "sprint"};
    char pol[8][32];
    int np = 0;
    double val[8][4];
    for (int p = 0; p < 8; p++)
        for (int m = 0; m < 4; m++) val[p][m] = NAN;
    size_t il = strlen(x->input);
    if (il > 4 && !strcmp(x->input + il - 4, ".csv")) {
        static csv t; /* static: reachable on an error exit */
        csv_load(x, &t);
        int cm = csv_need(x, &t, "mode", "expected sprint compare --csv"), cp = csv_need(x, &t, "policy", "compare CSV"),
            cn = csv_need(x, &t, "nll_change_fraction", "compare CSV");
        for (int r = 0; r < t.nrow; r++) {
            const char *mode = t.rows[r][cm], *policy = t.rows[r][cp];
            double v = 100 * atof(t.rows[r][cn]);
            if (!strcmp(mode, "dense")) continue;
            int pi = -1;
            for (int p = 0; p < np; p++)
                if (!strcmp(pol[p], policy)) pi = p;
            if (pi < 0 && np < 8) snprintf(pol[pi = np++], sizeof pol[0], "%s", policy);
            for (int m = 0; m < 4 && pi >= 0; m++)
                if (!strcmp(modes[m], mode)) val[pi][m] = v;
        }
        csv_free(&t);
    } else {
        cJSON *o = json_load(x);
        const cJSON *rows = cJSON_GetObjectItemCaseSensitive(o, "rows"), *r;
        if (!cJSON_IsArray(rows)) cli_die(&x->c, 1, "%s: no \"rows\" (expected sprint compare --json)", x->input);
        cJSON_ArrayForEach(r, rows) {
            const char *mode = jstr(x, r, "mode"), *policy = jstr(x, r, "policy");
            if (!strcmp(mode, "dense")) continue;
            /* nll_change_fraction (the CSV name, since issue 10); nll_change in older files */
            const cJSON *nc = cJSON_GetObjectItemCaseSensitive(r, "nll_change_fraction");
            double v = 100 * (cJSON_IsNumber(nc) ? nc->valuedouble : jnum(x, r, "nll_change"));
            int pi = -1;
            for (int p = 0; p < np; p++)
                if (!strcmp(pol[p], policy)) pi = p;
            if (pi < 0 && np < 8) snprintf(pol[pi = np++], sizeof pol[0], "%s", policy);
            for (int m = 0; m < 4 && pi >= 0; m++)
                if (!strcmp(modes[m], mode)) val[pi][m] = v;
        }
        cJSON_Delete(o);
    }
    if (!np) cli_die(&x->c, 1, "%s: no non-dense rows", x->input);
    char ours[400], paper[400];
    FILE *f = data_file(x, ours, sizeof ours);
    static const char *const mlab[4] = {"dense", "pruning", "w/o-recompute", "SPRINT"};
    for (int m = 1; m < 4; m++) {
        fprintf(f, "%s", mlab[m]);
        for (int p = 0; p < np; p++) fprintf(f, " %g", isnan(val[p][m]) ? NAN : val[p][m] > 0.01 ? val[p][m] : 0.01);
        fputc('\n', f);
    }
    fclose(f);
    f = data_file(x, paper, sizeof paper);
    /* paper: loss vs its baseline, accuracy points (or perplexity change %) */
    const char *unit;
    double v[4];
    for (int d = 1; d < 4; d++) {
        fprintf(f, "%s", mlab[d]);
        for (int m = 0; sp_paper_fig9(m, v, &unit); m++) {
            double loss = !strcmp(unit, "perplexity") ? 100 * (v[d] - v[0]) / v[0] : v[0] - v[d];
            fprintf(f, " %g", loss > 0.01 ? loss : 0.01);
        }
        fputc('\n', f);
    }
    fclose(f);
    char title[600], *body = NULL;
    size_t len = 0;
    FILE *g = open_memstream(&body, &len);
    fprintf(g, "set multiplot layout 1,2 title \"%s\"\nset style data histograms\nset style histogram clustered gap 1\n"
               "set style fill solid 0.8 border -1\nset logscale y\nset yrange [0.01:*]\nset key top left\n",
            title_or(x, title, sizeof title, "Fig. 9: accuracy per design"));
    fprintf(g, "set title \"ours: NLL change vs dense, per threshold policy\"\nset ylabel \"mean NLL change (%%, log)\"\nplot ");
    for (int p = 0; p < np; p++) fprintf(g, "%s\"%s\" using %d%s title \"%s\"", p ? ", " : "", ours, p + 2, p ? "" : ":xtic(1)", pol[p]);
    fprintf(g, "\nset title \"paper Fig. 9: loss vs its baseline\"\nset ylabel \"accuracy loss (points; GPT-2-L: perplexity +%%, log)\"\nplot ");
    for (int m = 0; sp_paper_fig9(m, v, &unit); m++)
        fprintf(g, "%s\"%s\" using %d%s title \"%s\"", m ? ", " : "", paper, m + 2, m ? "" : ":xtic(1)", sp_paper_fig9(m, v, &unit));
    fprintf(g, "\nunset multiplot\n");
    fclose(g);
    render(x, "1300,480", "1300,480", body);
    free(body);
}

/* The run JSON's results of the paper baseline dataflow: value of key k for workload w, size
 * s, design d (NaN when absent). */
static double run_value(plot_ctx *x, const cJSON *results, const char *w, const char *s, const char *d, const char *k) {
    const cJSON *r;
    cJSON_ArrayForEach(r, results) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(r, "baseline");
        if (cJSON_IsString(b) && strcmp(b->valuestring, "paper")) continue;
        if (!strcmp(jstr(x, r, "workload"), w) && !strcmp(jstr(x, r, "size"), s) && !strcmp(jstr(x, r, "design"), d)) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, k);
            return cJSON_IsNumber(v) ? v->valuedouble : NAN;
        }
    }
    return NAN;
}

/* Workload names of a run JSON, in order. */
static int run_workloads(plot_ctx *x, const cJSON *o, const char **names, int max) {
    const cJSON *wl = cJSON_GetObjectItemCaseSensitive(o, "workloads"), *w;
    if (!cJSON_IsArray(wl)) cli_die(&x->c, 1, "%s: no \"workloads\" (expected sprint run --json)", x->input);
    int n = 0;
    cJSON_ArrayForEach(w, wl) if (n < max) names[n++] = jstr(x, w, "workload");
    if (!n) cli_die(&x->c, 1, "%s: no workloads", x->input);
    return n;
}

static void fig10_11(plot_ctx *x, int fig) {
    cJSON *o = json_load(x);
    const cJSON *results = cJSON_GetObjectItemCaseSensitive(o, "results");
    if (!cJSON_IsArray(results)) cli_die(&x->c, 1, "%s: no \"results\" (expected sprint run --json)", x->input);
    const char *names[64];
    int n = run_workloads(x, o, names, 64);
    static const char *const sizes[3] = {"S", "M", "L"};
    char path[400];
    FILE *f = data_file(x, path, sizeof path);
    for (int i = 0; i < n; i++) {
        sp_paper_ref ref;
        sp_paper_lookup(names[i], &ref);
        fprintf(f, "%s", names[i]);
        if (fig == 11) {
            for (int s = 0; s < 3; s++) fprintf(f, " %g", run_value(x, results, names[i], sizes[s], "sprint", "speedup"));
            for (int s = 0; s < 3; s++) fprintf(f, " %g", ref.speedup[s]);
        } else {
            /* reduction vs the S baseline's bytes, as the paper normalises Fig. 10 */
            double b0 = run_value(x, results, names[i], "S", "baseline-paper", "bytes_read");
            for (int s = 0; s < 3; s++)
                fprintf(f, " %g %g", 100 * (1 - run_value(x, results, names[i], sizes[s], "mask-only", "bytes_read") / b0),
                        100 * (1 - run_value(x, results, names[i], sizes[s], "sprint", "bytes_read") / b0));
            for (int s = 0; s < 3; s++) fprintf(f, " %g %g", ref.traffic_mask[s], ref.traffic_sprint[s]);
        }
        fputc('\n', f);
    }
    fclose(f);
    cJSON_Delete(o);
    char title[600], *body = NULL;
    size_t len = 0;
    FILE *g = open_memstream(&body, &len);
    fprintf(g, "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.85 border -1\n"
               "set xtics rotate by -30\n");
    if (fig == 11) {
        fprintf(g, "set title \"%s\"\nset ylabel \"speedup over the iso-buffer baseline (x, log)\"\nset logscale y\n"
                   "set yrange [1:*]\nset key top left\n",
                title_or(x, title, sizeof title, "Fig. 11: SPRINT speedup per chip size, ours (solid) vs paper (hatched)"));
        fprintf(g, "plot \"%s\" using 2:xtic(1) lc rgb '#1f77b4' title \"ours S\", '' using 3 lc rgb '#ff7f0e' title \"ours M\", "
                   "'' using 4 lc rgb '#2ca02c' title \"ours L\", '' using 5 lc rgb '#1f77b4' fs pattern 4 title \"paper S\", "
                   "'' using 6 lc rgb '#ff7f0e' fs pattern 4 title \"paper M\", '' using 7 lc rgb '#2ca02c' fs pattern 4 title \"paper L\"\n",
                path);
        fclose(g);
        render(x, "1100,480", "1100,480", body);
    } else {
        fprintf(g, "set multiplot layout 1,3 title \"%s\"\nset yrange [0:128]\nset ytics 0,20,100\n"
                   "set ylabel \"traffic reduction vs the S baseline (%%)\"\nset key top left horizontal maxrows 2 font \",9\"\n",
                title_or(x, title, sizeof title, "Fig. 10: main-memory traffic reduction, ours (solid) vs paper (hatched)"));
        for (int s = 0; s < 3; s++)
            fprintf(g, "set title \"size %s\"\nplot \"%s\" using %d:xtic(1) lc rgb '#999999' title \"ours mask-only\", "
                       "'' using %d lc rgb '#1f77b4' title \"ours SPRINT\", '' using %d lc rgb '#999999' fs pattern 4 title \"paper mask-only\", "
                       "'' using %d lc rgb '#1f77b4' fs pattern 4 title \"paper SPRINT\"\n",
                    sizes[s], path, 2 + 2 * s, 3 + 2 * s, 8 + 2 * s, 9 + 2 * s), fprintf(g, "unset key\n");
        fprintf(g, "unset multiplot\n");
        fclose(g);
        render(x, "1600,500", "1600,500", body);
    }
    free(body);
}

static void energy(plot_ctx *x, const char *size) {
    cJSON *o = json_load(x);
    const cJSON *results = cJSON_GetObjectItemCaseSensitive(o, "results");
    if (!cJSON_IsArray(results)) cli_die(&x->c, 1, "%s: no \"results\" (expected sprint run --json)", x->input);
    const char *names[64];
    int n = run_workloads(x, o, names, 64);
    static const char *const designs[3] = {"baseline-paper", "pruning", "sprint"};
    static const char *const dlab[3] = {"B", "P", "S"};
    char path[400], ppath[400];
    FILE *f = data_file(x, path, sizeof path), *pf = data_file(x, ppath, sizeof ppath);
    double xpos = 0;
    for (int i = 0; i < n; i++) {
        double base = run_value(x, results, names[i], size, "baseline-paper", "energy_pj");
        if (!(base > 0)) cli_die(&x->c, 1, "%s: no size %s results for %s (run with --sizes including %s)", x->input, size,
                                 names[i], size);
        sp_paper_ref ref;
        sp_paper_lookup(names[i], &ref);
        for (int d = 0; d < 3; d++, xpos += 1) {
            /* cumulative shares of the baseline total, category by category */
            const cJSON *r, *bd = NULL;
            cJSON_ArrayForEach(r, results) {
                const cJSON *b = cJSON_GetObjectItemCaseSensitive(r, "baseline");
                if (cJSON_IsString(b) && strcmp(b->valuestring, "paper")) continue;
                if (!strcmp(jstr(x, r, "workload"), names[i]) && !strcmp(jstr(x, r, "size"), size) &&
                    !strcmp(jstr(x, r, "design"), designs[d]))
                    bd = cJSON_GetObjectItemCaseSensitive(r, "energy_breakdown_pj");
            }
            if (!cJSON_IsObject(bd)) cli_die(&x->c, 1, "%s: no energy_breakdown_pj for %s %s %s", x->input, names[i], size, designs[d]);
            fprintf(f, "%g \"%s\"", xpos, d == 1 ? names[i] : "");
            double cum = 0;
            for (int c = 0; c < SP_E_COUNT; c++) {
                cum += 100 * jnum(x, bd, sp_energy_cat_name((sp_energy_cat)c)) / base;
                fprintf(f, " %g", cum);
            }
            fprintf(f, " %s\n", dlab[d]);
            double pr = d == 1 ? ref.energy_ratio_pruning : d == 2 ? ref.energy_ratio : 1;
            if (!isnan(pr)) fprintf(pf, "%g %g\n", xpos, 100 / pr);
        }
        xpos += 0.8;
    }
    fclose(f);
    fclose(pf);
    cJSON_Delete(o);
    static const char *const colors[SP_E_COUNT] = {"#1f77b4", "#aec7e8", "#d62728", "#2ca02c", "#98df8a", "#ff7f0e", "#ffbb78", "#9467bd"};
    char title[600], *body = NULL;
    size_t len = 0;
    FILE *g = open_memstream(&body, &len);
    char def[200];
    snprintf(def, sizeof def, "Energy breakdown at size %s: B baseline, P digital pruning, S SPRINT; diamonds: the paper's total", size);
    fprintf(g, "set title \"%s\"\nset ylabel \"energy (%% of the baseline's)\"\nset yrange [0:105]\nset boxwidth 0.8\n"
               "set style fill solid 0.9 border -1\nset key outside right\nset xtics scale 0 rotate by -30\n"
               "set grid noxtics\nplot ",
            title_or(x, title, sizeof title, def));
    for (int c = SP_E_COUNT - 1; c >= 0; c--)
        fprintf(g, "\"%s\" using 1:%d%s with boxes lc rgb '%s' title \"%s\", ", path, 3 + c, c == SP_E_COUNT - 1 ? ":xtic(2)" : "",
                colors[c], sp_energy_cat_name((sp_energy_cat)c));
    fprintf(g, "\"%s\" using 1:($%d + 2.5):%d with labels font \",9\" notitle, ", path, 2 + SP_E_COUNT, 3 + SP_E_COUNT);
    fprintf(g, "\"%s\" using 1:2 with points pt 13 ps 1.5 lc rgb 'black' title \"paper total\"\n", ppath);
    fclose(g);
    render(x, "1500,520", "1500,520", body);
    free(body);
}

static void sweep_plot(plot_ctx *x, const char *xcol, const char *ycols, const char *bycol, int logy) {
    if (!xcol || !ycols) cli_die(&x->c, 2, "sweep plots need --x COL and --y COL[,COL...] (columns of %s)", x->input);
    static csv t; /* static: reachable on an error exit */
    csv_load(x, &t);
    int cx = csv_need(x, &t, xcol, "--x"), cb = bycol ? csv_need(x, &t, bycol, "--by") : -1;
    char ybuf[512];
    snprintf(ybuf, sizeof ybuf, "%s", ycols);
    char *ys[8];
    int ny = 0;
    for (char *save = NULL, *tok = strtok_r(ybuf, ",", &save); tok && ny < 8; tok = strtok_r(NULL, ",", &save)) ys[ny++] = tok;
    int cy[8];
    for (int i = 0; i < ny; i++) cy[i] = csv_need(x, &t, ys[i], "--y");
    /* groups: distinct values of --by in order of appearance */
    const char *groups[32];
    int ng = 0;
    for (int r = 0; r < t.nrow; r++) {
        const char *gv = cb >= 0 ? t.rows[r][cb] : "";
        int found = 0;
        for (int i = 0; i < ng; i++) found |= !strcmp(groups[i], gv);
        if (!found && ng < 32) groups[ng++] = gv;
    }
    char title[600], *body = NULL;
    size_t len = 0;
    FILE *g = open_memstream(&body, &len);
    char def[300];
    snprintf(def, sizeof def, "sweep: %s vs %s", ycols, xcol);
    fprintf(g, "set title \"%s\" noenhanced\nset xlabel \"%s\" noenhanced\nset ylabel \"%s\" noenhanced\nset key noenhanced\n%s"
               "plot ",
            title_or(x, title, sizeof title, def), xcol, ny == 1 ? ys[0] : "value", logy ? "set logscale y\n" : "");
    int first = 1;
    for (int gi = 0; gi < ng; gi++) {
        char path[400];
        FILE *f = data_file(x, path, sizeof path);
        /* rows of the group sorted by x (insertion order of a small table) */
        int idx[4096], m = 0;
        for (int r = 0; r < t.nrow && m < 4096; r++)
            if (cb < 0 || !strcmp(t.rows[r][cb], groups[gi])) idx[m++] = r;
        for (int a = 1; a < m; a++)
            for (int b = a; b > 0 && atof(t.rows[idx[b]][cx]) < atof(t.rows[idx[b - 1]][cx]); b--) {
                int tmp = idx[b];
                idx[b] = idx[b - 1];
                idx[b - 1] = tmp;
            }
        for (int k = 0; k < m; k++) {
            fprintf(f, "%s", t.rows[idx[k]][cx]);
            for (int i = 0; i < ny; i++) fprintf(f, " %s", t.rows[idx[k]][cy[i]][0] ? t.rows[idx[k]][cy[i]] : "NaN");
            fputc('\n', f);
        }
        fclose(f);
        for (int i = 0; i < ny; i++) {
            char lab[200];
            if (cb >= 0 && ny > 1) snprintf(lab, sizeof lab, "%s, %s = %s", ys[i], bycol, groups[gi]);
            else if (cb >= 0) snprintf(lab, sizeof lab, "%s = %s", bycol, groups[gi]);
            else snprintf(lab, sizeof lab, "%s", ys[i]);
            for (char *p = lab; *p; p++)
                if (*p == '"') *p = '\'';
            fprintf(g, "%s\"%s\" using 1:%d with linespoints lw 2 pt 7 title \"%s\"", first ? "" : ", ", path, i + 2, lab);
            first = 0;
        }
    }
    fputc('\n', g);
    fclose(g);
    render(x, "900,560", "900,560", body);
    free(body);
    csv_free(&t);
}

static void remove_dir(const char *dir) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) { /* leftover temp files are harmless */
    }
}

int cmd_plot(int argc, char **argv) {
    plot_ctx x;
    memset(&x, 0, sizeof x);
    cli_init(&x.c, "plot");
    const char *fig = NULL, *size = "M", *xcol = NULL, *ycol = NULL, *by = NULL;
    int logy = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help();
            return 0;
        } else if (!strcmp(a, "--out")) {
            x.out = cli_value(&x.c, argc, argv, &i);
        } else if (!strcmp(a, "--title")) {
            x.title = cli_value(&x.c, argc, argv, &i);
        } else if (!strcmp(a, "--size")) {
            size = cli_value(&x.c, argc, argv, &i);
        } else if (!strcmp(a, "--x")) {
            xcol = cli_value(&x.c, argc, argv, &i);
        } else if (!strcmp(a, "--y")) {
            ycol = cli_value(&x.c, argc, argv, &i);
        } else if (!strcmp(a, "--by")) {
            by = cli_value(&x.c, argc, argv, &i);
        } else if (!strcmp(a, "--logy")) {
            logy = 1;
        } else if (!strcmp(a, "--quiet")) {
            x.c.quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            cli_die(&x.c, 2, "unknown option '%s' (see sprint plot --help)", a);
        } else if (!fig) {
            fig = a;
        } else if (!x.input) {
            x.input = a;
        } else {
            cli_die(&x.c, 2, "unexpected argument '%s' (see sprint plot --help)", a);
        }
    }
    static const char *const figs[6] = {"fig5", "fig9", "fig10", "fig11", "energy", "sweep"};
    if (!fig || !x.input) cli_die(&x.c, 2, "usage: sprint plot FIGURE INPUT (FIGURE: fig5 fig9 fig10 fig11 energy sweep)");
    int which = -1;
    for (int i = 0; i < 6; i++)
        if (!strcmp(fig, figs[i])) which = i;
    if (which < 0) {
        const char *s = cli_closest(fig, figs, 6);
        if (s) cli_die(&x.c, 2, "unknown figure '%s'; did you mean '%s'? (fig5 fig9 fig10 fig11 energy sweep)", fig, s);
        cli_die(&x.c, 2, "unknown figure '%s' (fig5 fig9 fig10 fig11 energy sweep)", fig);
    }
    if (strcmp(size, "S") && strcmp(size, "M") && strcmp(size, "L")) cli_die(&x.c, 2, "--size: expected S, M or L, got '%s'", size);
    if (which != 5 && (xcol || ycol || by || logy)) cli_die(&x.c, 2, "--x, --y, --by and --logy are for 'sprint plot sweep'");
    if (which != 4 && strcmp(size, "M")) cli_die(&x.c, 2, "--size is for 'sprint plot energy'");
    if (!x.out) x.out = fig;
    const char *td = getenv("TMPDIR");
    snprintf(x.dir, sizeof x.dir, "%s/sprint-plot-XXXXXX", td && *td ? td : "/tmp");
    if (!mkdtemp(x.dir)) cli_die(&x.c, 1, "cannot create a temporary directory: %s", strerror(errno));
    switch (which) {
    case 0: fig5(&x); break;
    case 1: fig9(&x); break;
    case 2: fig10_11(&x, 10); break;
    case 3: fig10_11(&x, 11); break;
    case 4: energy(&x, size); break;
    default: sweep_plot(&x, xcol, ycol, by, logy); break;
    }
    remove_dir(x.dir);
    return 0;
}
