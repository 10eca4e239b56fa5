/* policy.c: threshold policy names and the thresholds file (docs/functional.md,
 * "Thresholds file"). The file is line-oriented text, versioned, and carries the model shape
 * so that a file calibrated for another model is a clear error. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fn_internal.h"

#define SP_THRESHOLDS_MAX_SLOTS (1 << 20) /* layers x heads of a thresholds file */

static const char *const KIND_NAMES[] = {"layer", "head", "topk", "oracle", "onchip"};

int sp_policy_kind_parse(const char *name) {
    for (int i = 0; i < 5; i++)
        if (!strcmp(name, KIND_NAMES[i])) return i;
    return -1;
}

const char *sp_policy_kind_name(int kind) {
    SP_ASSERT(kind >= 0 && kind < 5);
    return KIND_NAMES[kind];
}

sp_thresholds *sp_thresholds_new(const char *kind, int n_layers, int n_heads, int head_dim) {
    SP_ASSERT(n_layers > 0 && n_heads > 0);
    sp_thresholds *t = sp_xcalloc(1, sizeof *t);
    snprintf(t->kind, sizeof t->kind, "%s", kind);
    t->n_layers = n_layers;
    t->n_heads = n_heads;
    t->head_dim = head_dim;
    int k = sp_policy_kind_parse(kind);
    if (k == SP_POLICY_LAYER || k == SP_POLICY_HEAD)
        t->values = sp_xcalloc((size_t)n_layers * (size_t)n_heads, sizeof *t->values);
    snprintf(t->mode, sizeof t->mode, "-");
    return t;
}

void sp_thresholds_free(sp_thresholds *t) {
    if (!t) return;
    free(t->values);
    free(t);
}

sp_status sp_thresholds_save(const sp_thresholds *t, const char *path, sp_error *err) {
    sp_outfile *of;
    sp_status s = sp_outfile_open(path, &of, err);
    if (s != SP_OK) return s;
    FILE *f = sp_outfile_stream(of);
    fprintf(f, "# sprint thresholds file (docs/functional.md). Scores s = scale * q.k in nats.\n");
    fprintf(f, "sprint-thresholds %d\n", SP_THRESHOLDS_VERSION);
    fprintf(f, "kind %s\nlayers %d\nheads %d\nhead_dim %d\n", t->kind, t->n_layers, t->n_heads, t->head_dim);
    fprintf(f, "delta %.17g\n", t->delta);
    fprintf(f, "mode %s\nloss_budget %.17g\ntarget_kept %.17g\ncalib_stories %d\n", t->mode[0] ? t->mode : "-",
            t->loss_budget, t->target_kept, t->calib_stories);
    fprintf(f, "nll_dense %.17g\nnll %.17g\nkept_fraction %.17g\n", t->nll_dense, t->nll, t->kept_fraction);
    if (t->values) {
        int per_layer = !strcmp(t->kind, "layer");
        fprintf(f, "values\n");
        for (int l = 0; l < t->n_layers; l++) {
            for (int h = 0; h < (per_layer ? 1 : t->n_heads); h++)
                fprintf(f, "%s%.17g", h ? " " : "", t->values[l * t->n_heads + h]);
            fputc('\n', f);
        }
    }
    return sp_outfile_commit(of, err); /* complete or absent */
}

/* Next non-comment, non-empty line into buf (newline stripped); 0 at EOF. */
static int next_line(FILE *f, char *buf, size_t n, int *line) {
    while (fgets(buf, (int)n, f)) {
        (*line)++;
        size_t len = strlen(buf);
        while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ')) buf[--len] = 0;
        const char *p = buf;
        while (*p == ' ' || *p == '\t') p++;
        if (!*p || *p == '#') continue;
        return 1;
    }
    return 0;
}

sp_status sp_thresholds_load(const char *path, sp_thresholds **out, sp_error *err) {
    *out = NULL;
    FILE *f;
    sp_status st0 = sp_fopen_regular(path, "thresholds file ", "r", &f, NULL, err);
    if (st0 != SP_OK) return st0;
    char buf[65536];
    int line = 0, version = 0;
    sp_status st = SP_OK;
#define FAIL(...)                                                                                         \
    do {                                                                                                  \
        st = sp_error_set(err, SP_ERR_FORMAT, __VA_ARGS__);                                               \
        goto done;                                                                                        \
    } while (0)
    sp_thresholds tmp;
    memset(&tmp, 0, sizeof tmp);
    sp_thresholds *t = NULL;
    int used = 0;
    if (!next_line(f, buf, sizeof buf, &line) || sscanf(buf, "sprint-thresholds %d%n", &version, &used) != 1 ||
        strspn(buf + used, " \t\r\n") != strlen(buf + used))
        FAIL("%s:%d: not a sprint thresholds file (expected 'sprint-thresholds %d')", path, line,
             SP_THRESHOLDS_VERSION);
    if (version != SP_THRESHOLDS_VERSION)
        FAIL("%s:%d: thresholds file version %d, this sprint reads version %d", path, line, version,
             SP_THRESHOLDS_VERSION);
    tmp.n_layers = tmp.n_heads = -1;
    tmp.head_dim = -1;
    int got_values = 0;
    while (next_line(f, buf, sizeof buf, &line)) {
        char key[64], val[256];
        int tail = 0;
        if (!strcmp(buf, "values")) {
            got_values = 1;
            break;
        }
        if (sscanf(buf, "%63s %255s %n", key, val, &tail) != 2 || !tail)
            FAIL("%s:%d: expected 'key value', got '%.200s'", path, line, buf);
        if (buf[tail]) FAIL("%s:%d: key %s: unexpected text after the value: '%.200s'", path, line, key, buf + tail);
        char *end;
        double num = strtod(val, &end);
        int isnum = *end == 0;
        if (!strcmp(key, "kind")) {
            if (sp_policy_kind_parse(val) < 0) FAIL("%s:%d: unknown policy kind '%s'", path, line, val);
            snprintf(tmp.kind, sizeof tmp.kind, "%.31s", val);
        } else if (!strcmp(key, "mode")) {
            snprintf(tmp.mode, sizeof tmp.mode, "%.31s", val);
        } else if (!isnum || !isfinite(num)) {
            FAIL("%s:%d: key %s: expected a finite number, got '%s'", path, line, key, val);
        } else if (!strcmp(key, "layers") || !strcmp(key, "heads") || !strcmp(key, "head_dim") ||
                   !strcmp(key, "calib_stories")) {
            /* counts: whole numbers in range before the conversion (a double outside int's
             * range does not convert) */
            if (num != floor(num) || num < 0 || num > 1e6)
                FAIL("%s:%d: key %s: expected a whole number in 0..1000000, got '%s'", path, line, key, val);
            int v = (int)num;
            if (key[0] == 'l') tmp.n_layers = v;
            else if (key[0] == 'c') tmp.calib_stories = v;
            else if (!strcmp(key, "heads")) tmp.n_heads = v;
            else tmp.head_dim = v;
        } else if (!strcmp(key, "delta")) tmp.delta = num;
        else if (!strcmp(key, "loss_budget")) tmp.loss_budget = num;
        else if (!strcmp(key, "target_kept")) tmp.target_kept = num;
        else if (!strcmp(key, "nll_dense")) tmp.nll_dense = num;
        else if (!strcmp(key, "nll")) tmp.nll = num;
        else if (!strcmp(key, "kept_fraction")) tmp.kept_fraction = num;
        else FAIL("%s:%d: unknown key '%s'", path, line, key);
    }
    if (!tmp.kind[0]) FAIL("%s: missing 'kind'", path);
    /* layers x heads bounded so a corrupt file cannot ask for a huge allocation */
    if (tmp.n_layers <= 0 || tmp.n_heads <= 0 || tmp.head_dim <= 0 ||
        (double)tmp.n_layers * (double)tmp.n_heads > SP_THRESHOLDS_MAX_SLOTS)
        FAIL("%s: missing or invalid model shape (layers, heads, head_dim > 0, layers x heads <= %d)", path,
             SP_THRESHOLDS_MAX_SLOTS);
    if (tmp.delta < 0) FAIL("%s: delta must be >= 0", path);
    t = sp_thresholds_new(tmp.kind, tmp.n_layers, tmp.n_heads, tmp.head_dim);
    double *vals = t->values;
    memcpy(t, &tmp, sizeof *t);
    t->values = vals;
    if (vals) {
        if (!got_values) FAIL("%s: kind %s needs a 'values' section", path, t->kind);
        int per_layer = !strcmp(t->kind, "layer");
        int ncol = per_layer ? 1 : t->n_heads;
        for (int l = 0; l < t->n_layers; l++) {
            if (!next_line(f, buf, sizeof buf, &line))
                FAIL("%s: values: expected %d rows (one per layer), got %d", path, t->n_layers, l);
            char *p = buf;
            for (int h = 0; h < ncol; h++) {
                char *end;
                errno = 0;
                double v = strtod(p, &end);
                if (end == p || errno || isnan(v)) FAIL("%s:%d: layer %d: expected %d numbers", path, line, l, ncol);
                p = end;
                if (per_layer)
                    for (int hh = 0; hh < t->n_heads; hh++) vals[l * t->n_heads + hh] = v;
                else vals[l * t->n_heads + h] = v;
            }
            while (*p == ' ' || *p == '\t') p++;
            if (*p) FAIL("%s:%d: layer %d: more than %d numbers", path, line, l, ncol);
        }
        if (next_line(f, buf, sizeof buf, &line)) FAIL("%s:%d: unexpected line after the values", path, line);
    } else if (got_values) {
        FAIL("%s: kind %s takes no 'values' section", path, t->kind);
    }
done:
#undef FAIL
    fclose(f);
    if (st != SP_OK) {
        sp_thresholds_free(t);
        return st;
    }
    *out = t;
    return SP_OK;
}
