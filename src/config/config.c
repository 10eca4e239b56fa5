/* config.c: the table-driven configuration (parsing with inih, validation, overrides, dump,
 * Markdown reference). The table itself is include/sprint/keys_*.def. */
#define _POSIX_C_SOURCE 200809L
#include "sprint/config.h"
#include "config/config_internal.h"

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const sp_config_key KEYS[] = {
#define SP_CFG(sec, key, type, mn, mx, def, choices, unit, doc, source)                          \
    {#sec, #key, SP_CFG_##type, mn, mx, def, choices, unit, doc, source, offsetof(sp_config, sec##_##key)},
#include "sprint/config_keys.def"
#undef SP_CFG
};
#define NKEYS (sizeof KEYS / sizeof KEYS[0])
_Static_assert(NKEYS <= sizeof(((sp_config *)0)->is_set), "grow sp_config.is_set");

const sp_config_key *sp_config_keys(size_t *n) {
    if (n) *n = NKEYS;
    return KEYS;
}

int sp_config_find(const char *section, const char *name) {
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(KEYS[i].section, section) && !strcmp(KEYS[i].name, name)) return (int)i;
    return -1;
}

static int section_exists(const char *section) {
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(KEYS[i].section, section)) return 1;
    return 0;
}

int sp_config_enum_index(const char *choices, const char *value) {
    size_t n = strlen(value);
    int idx = 0;
    for (const char *p = choices; p && *p; idx++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, value, n)) return idx;
        if (!bar) break;
        p = bar + 1;
    }
    return -1;
}

static const char *type_name(sp_cfg_type t) {
    switch (t) {
    case SP_CFG_INT: return "integer";
    case SP_CFG_REAL: return "real";
    case SP_CFG_BOOL: return "bool";
    case SP_CFG_STRING: return "string";
    case SP_CFG_ENUM: return "enum";
    }
    return "?";
}

/* Text describing what a key accepts, for error messages and docs. */
static void expected_text(const sp_config_key *k, char *buf, size_t n) {
    switch (k->type) {
    case SP_CFG_INT: snprintf(buf, n, "an integer in [%.15g, %.15g]", k->min, k->max); break;
    case SP_CFG_REAL: snprintf(buf, n, "a real number in [%.15g, %.15g]", k->min, k->max); break;
    case SP_CFG_BOOL: snprintf(buf, n, "a boolean (true/false, 1/0, yes/no, on/off)"); break;
    case SP_CFG_STRING: snprintf(buf, n, "a string (up to 255 bytes)"); break;
    case SP_CFG_ENUM: snprintf(buf, n, "one of %s", k->choices); break;
    }
}

static void trim(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) s[--n] = 0;
    size_t i = 0;
    while (s[i] == ' ' || s[i] == '\t') i++;
    if (i) memmove(s, s + i, n - i + 1);
}

static sp_status set_index(sp_config *c, size_t idx, const char *raw, const char *origin, sp_error *err) {
    const sp_config_key *k = &KEYS[idx];
    char *field = (char *)c + k->offset;
    char v[300], exp[200];
    snprintf(v, sizeof v, "%s", raw ? raw : "");
    trim(v);
    expected_text(k, exp, sizeof exp);
#define BAD()                                                                                     \
    sp_error_set(err, SP_ERR_CONFIG, "%s: key %s.%s: expected %s%s%s, got '%s'", origin, k->section, \
                 k->name, exp, *k->unit && strcmp(k->unit, "-") ? " in " : "",                    \
                 *k->unit && strcmp(k->unit, "-") ? k->unit : "", v)
    switch (k->type) {
    case SP_CFG_INT: {
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        if (!*v || *end || errno || d != floor(d) || d < k->min || d > k->max) return BAD();
        *(long *)field = (long)d;
        break;
    }
    case SP_CFG_REAL: {
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(d) || d < k->min || d > k->max) return BAD();
        *(double *)field = d;
        break;
    }
    case SP_CFG_BOOL: {
        static const char *t[] = {"1", "true", "yes", "on"}, *f[] = {"0", "false", "no", "off"};
        int val = -1;
        for (int i = 0; i < 4; i++) {
            if (!strcmp(v, t[i])) val = 1;
            if (!strcmp(v, f[i])) val = 0;
        }
        if (val < 0) return BAD();
        *(int *)field = val;
        break;
    }
    case SP_CFG_STRING:
        if (strlen(v) > 255) return BAD();
        memcpy(field, v, strlen(v) + 1);
        break;
    case SP_CFG_ENUM:
        if (strlen(v) > 31 || sp_config_enum_index(k->choices, v) < 0) return BAD();
        memcpy(field, v, strlen(v) + 1);
        break;
    }
#undef BAD
    c->is_set[idx] = 1;
    return SP_OK;
}

void sp_config_defaults(sp_config *c) {
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NKEYS; i++) {
        if (!KEYS[i].def) continue;
        sp_error e;
        sp_status s = set_index(c, i, KEYS[i].def, "default", &e);
        if (s != SP_OK) sp_assert_fail(e.msg, __FILE__, __LINE__); /* a bad table is a bug */
    }
}

sp_status sp_config_set_value(sp_config *c, const char *section, const char *name, const char *value,
                              const char *origin, sp_error *err) {
    int idx = sp_config_find(section, name);
    if (idx < 0) {
        if (!section_exists(section))
            return sp_error_set(err, SP_ERR_CONFIG, "%s: unknown section [%s] (key %s.%s); see docs/config.md",
                                origin, section, section, name);
        return sp_error_set(err, SP_ERR_CONFIG, "%s: unknown key %s.%s; see docs/config.md", origin,
                            section, name);
    }
    return set_index(c, (size_t)idx, value, origin, err);
}

sp_status sp_config_set(sp_config *c, const char *assignment, const char *origin, sp_error *err) {
    const char *eq = strchr(assignment, '=');
    const char *dot = strchr(assignment, '.');
    if (!eq || !dot || dot > eq || dot == assignment || dot + 1 == eq)
        return sp_error_set(err, SP_ERR_CONFIG, "%s: '%s' is not of the form section.key=value", origin,
                            assignment);
    char sec[64], name[64];
    size_t ls = (size_t)(dot - assignment), ln = (size_t)(eq - dot - 1);
    if (ls >= sizeof sec || ln >= sizeof name)
        return sp_error_set(err, SP_ERR_CONFIG, "%s: key name too long in '%s'", origin, assignment);
    memcpy(sec, assignment, ls);
    sec[ls] = 0;
    memcpy(name, dot + 1, ln);
    name[ln] = 0;
    trim(sec);
    trim(name);
    return sp_config_set_value(c, sec, name, eq + 1, origin, err);
}

/* inih does not pass line numbers to the handler in Debian's build, so we read the file
 * ourselves through ini_parse_stream and count lines in the reader: inih calls the handler
 * right after reading the line that holds the key. */
typedef struct load_state {
    FILE *f;
    const char *path;
    int line;
    sp_config *c;
    sp_error *err;
    sp_status status;
    unsigned char seen[sizeof(((sp_config *)0)->is_set)];
    int seen_line[sizeof(((sp_config *)0)->is_set)];
} load_state;

static char *reader(char *str, int num, void *stream) {
    load_state *st = stream;
    char *r = fgets(str, num, st->f);
    if (!r) return NULL;
    st->line++;
    size_t n = strlen(r);
    if (n == (size_t)num - 1 && r[n - 1] != '\n' && !feof(st->f) && st->status == SP_OK) {
        /* inih would silently split an over-long line in two; refuse it instead. */
        st->status = sp_error_set(st->err, SP_ERR_CONFIG, "%s:%d: line longer than %d characters", st->path,
                                  st->line, num - 2);
        int ch;
        while ((ch = fgetc(st->f)) != EOF && ch != '\n') {
        }
    }
    return r;
}

static int handler(void *user, const char *section, const char *name, const char *value) {
    load_state *st = user;
    if (st->status != SP_OK) return 1; /* keep the first error */
    char origin[300];
    snprintf(origin, sizeof origin, "%s:%d", st->path, st->line);
    if (!name) return 1; /* section header alone */
    if (!*section) {
        st->status = sp_error_set(st->err, SP_ERR_CONFIG, "%s: key '%s' outside any [section]", origin, name);
        return 0;
    }
    int idx = sp_config_find(section, name);
    if (idx >= 0 && st->seen[idx]) {
        st->status = sp_error_set(st->err, SP_ERR_CONFIG, "%s: duplicate key %s.%s (first set at line %d)",
                                  origin, section, name, st->seen_line[idx]);
        return 0;
    }
    sp_status s = sp_config_set_value(st->c, section, name, value, origin, st->err);
    if (s != SP_OK) {
        st->status = s;
        return 0;
    }
    st->seen[idx] = 1;
    st->seen_line[idx] = st->line;
    return 1;
}

sp_status sp_config_load_file(sp_config *c, const char *path, sp_error *err) {
    FILE *f = fopen(path, "r");
    if (!f) return sp_error_set(err, SP_ERR_IO, "cannot open config file %s: %s", path, strerror(errno));
    load_state *st = sp_xcalloc(1, sizeof *st);
    st->f = f;
    st->path = path;
    st->c = c;
    st->err = err;
    int rc = ini_parse_stream(reader, st, handler, st);
    fclose(f);
    sp_status s = st->status;
    if (s == SP_OK && rc != 0)
        s = sp_error_set(err, SP_ERR_CONFIG, "%s:%d: syntax error (expected [section] or key = value)", path,
                         rc > 0 ? rc : st->line);
    free(st);
    return s;
}

sp_status sp_config_check_required_in(const sp_config_key *keys, size_t n, const unsigned char *is_set,
                                      sp_error *err) {
    for (size_t i = 0; i < n; i++)
        if (!keys[i].def && !is_set[i])
            return sp_error_set(err, SP_ERR_CONFIG, "missing required key %s.%s (%s, in %s)", keys[i].section,
                                keys[i].name, keys[i].doc, keys[i].unit);
    return SP_OK;
}

sp_status sp_config_check_required(const sp_config *c, sp_error *err) {
    return sp_config_check_required_in(KEYS, NKEYS, c->is_set, err);
}

void sp_config_value_text(const sp_config *c, const sp_config_key *k, char *buf, size_t n) {
    const char *field = (const char *)c + k->offset;
    switch (k->type) {
    case SP_CFG_INT: snprintf(buf, n, "%ld", *(const long *)field); break;
    case SP_CFG_REAL: {
        /* the shortest text that reads back to the same double (0.05, not 0.050000000000000003) */
        double v = *(const double *)field;
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, n, "%.*g", prec, v);
            if (strtod(buf, NULL) == v) break;
        }
        break;
    }
    case SP_CFG_BOOL: snprintf(buf, n, "%s", *(const int *)field ? "true" : "false"); break;
    case SP_CFG_STRING:
    case SP_CFG_ENUM: snprintf(buf, n, "%s", field); break;
    }
}

void sp_config_dump(const sp_config *c, FILE *f) {
    const char *sec = "";
    fprintf(f, "; sprint effective configuration (loadable with --config)\n");
    for (size_t i = 0; i < NKEYS; i++) {
        const sp_config_key *k = &KEYS[i];
        if (strcmp(sec, k->section)) {
            fprintf(f, "\n[%s]\n", k->section);
            sec = k->section;
        }
        char v[300];
        sp_config_value_text(c, k, v, sizeof v);
        /* inih reads lines of at most INI_MAX_LINE (200) bytes: wrap the doc comment. */
        char doc[1200];
        snprintf(doc, sizeof doc, "%s [%s]", k->doc, k->unit);
        const char *p = doc;
        while (*p) {
            size_t len = strlen(p), cut = len;
            if (len > 96) {
                cut = 96;
                while (cut > 40 && p[cut] != ' ') cut--;
            }
            fprintf(f, "; %.*s\n", (int)cut, p);
            p += cut;
            while (*p == ' ') p++;
        }
        if (!c->is_set[i])
            fprintf(f, ";%s =   (required, not set)\n", k->name);
        else
            fprintf(f, "%s = %s\n", k->name, v);
    }
}

static void md_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else fputc(*s, f);
    }
}

void sp_config_write_markdown(FILE *f) {
    fprintf(f, "# Configuration reference\n\n"
               "Generated by `sprint config doc` from the key table (`include/sprint/keys_*.def`);\n"
               "`tests/test_config.c` fails when this file is out of date. Regenerate with\n"
               "`build/sprint config doc > docs/config.md`.\n\n"
               "Set keys in an INI file (`--config FILE`) or on the command line\n"
               "(`--set section.key=value`, applied after the files). `sprint config dump` prints the\n"
               "effective configuration as a loadable INI file.\n");
    const char *sec = "";
    for (size_t i = 0; i < NKEYS; i++) {
        const sp_config_key *k = &KEYS[i];
        if (strcmp(sec, k->section)) {
            fprintf(f, "\n## [%s]\n\n| key | type | range | default | unit | meaning | source of default |\n"
                       "|---|---|---|---|---|---|---|\n", k->section);
            sec = k->section;
        }
        char range[120] = "";
        if (k->type == SP_CFG_INT || k->type == SP_CFG_REAL) snprintf(range, sizeof range, "%.10g .. %.10g", k->min, k->max);
        else if (k->type == SP_CFG_ENUM) snprintf(range, sizeof range, "%s", k->choices);
        fprintf(f, "| `%s` | %s | ", k->name, type_name(k->type));
        md_escape(f, range);
        fprintf(f, " | ");
        if (!k->def) fputs("**required**", f);
        else if (!*k->def) fputs("(empty)", f);
        else { fputc('`', f); md_escape(f, k->def); fputc('`', f); }
        fprintf(f, " | ");
        md_escape(f, k->unit);
        fprintf(f, " | ");
        md_escape(f, k->doc);
        fprintf(f, " | ");
        md_escape(f, k->source);
        fprintf(f, " |\n");
    }
}
