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

/* Longest value text accepted (a STRING holds at most 255 bytes, but its quoted form in a
 * dump may be longer); longer text is an error, never cut. */
#define SP_CFG_MAX_VALUE 1100

/* Decodes a quoted string value ("..." with \\ \" \n \t \r \xNN escapes, the form
 * sp_config_dump writes for strings that would not read back plain) in place. Returns 0 on a
 * malformed quoted string. */
static int unquote(char *v) {
    size_t n = strlen(v), o = 0;
    if (n < 2 || v[n - 1] != '"') return 0;
    for (size_t i = 1; i < n - 1; i++) {
        char ch = v[i];
        if (ch == '"') return 0;
        if (ch == '\\') {
            if (i + 1 >= n - 1) return 0;
            char e = v[++i];
            if (e == 'n') ch = '\n';
            else if (e == 't') ch = '\t';
            else if (e == 'r') ch = '\r';
            else if (e == '\\' || e == '"') ch = e;
            else if (e == 'x' && i + 2 < n - 1 && strchr("0123456789abcdefABCDEF", v[i + 1]) && v[i + 1] &&
                     strchr("0123456789abcdefABCDEF", v[i + 2]) && v[i + 2]) {
                char hex[3] = {v[i + 1], v[i + 2], 0};
                ch = (char)strtol(hex, NULL, 16);
                if (!ch) return 0;
                i += 2;
            } else return 0;
        }
        v[o++] = ch;
    }
    v[o] = 0;
    return 1;
}

/* 1 when the string s reads back unchanged from `key = s` in an INI file (inih trims blanks,
 * strips inline ';' comments; the reader unquotes a leading '"'). */
static int plain_ok(const char *s) {
    size_t n = strlen(s);
    if (n && (s[0] == ' ' || s[0] == '\t' || s[0] == '"' || s[n - 1] == ' ' || s[n - 1] == '\t')) return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == ';' || *p == '#') return 0;
    return 1;
}

static sp_status set_index(sp_config *c, size_t idx, const char *raw, const char *origin, sp_error *err) {
    const sp_config_key *k = &KEYS[idx];
    char *field = (char *)c + k->offset;
    char v[SP_CFG_MAX_VALUE + 1], exp[200];
    if (!raw) raw = "";
    if (strlen(raw) > SP_CFG_MAX_VALUE)
        return sp_error_set(err, SP_ERR_CONFIG, "%s: key %s.%s: value is %zu bytes long, longer than the %d accepted",
                            origin, k->section, k->name, strlen(raw), SP_CFG_MAX_VALUE);
    memcpy(v, raw, strlen(raw) + 1);
    trim(v);
    expected_text(k, exp, sizeof exp);
#define BAD()                                                                                     \
    sp_error_set(err, SP_ERR_CONFIG, "%s: key %s.%s: expected %s%s%s, got '%.300s'", origin, k->section, \
                 k->name, exp, *k->unit && strcmp(k->unit, "-") ? " in " : "",                    \
                 *k->unit && strcmp(k->unit, "-") ? k->unit : "", v)
    switch (k->type) {
    case SP_CFG_INT: {
        /* decimal digits only: strtod would take "0x10" as 16, "1e3" as 1000, "inf" */
        size_t sign = v[0] == '-' || v[0] == '+';
        if (!v[sign] || strspn(v + sign, "0123456789") != strlen(v + sign)) return BAD();
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        if (!*v || *end || errno || d != floor(d) || d < k->min || d > k->max) return BAD();
        *(long *)field = (long)d;
        break;
    }
    case SP_CFG_REAL: {
        char *end;
        if (strpbrk(v, "xX")) return BAD(); /* no hexadecimal floats: decimal text only */
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
        if (v[0] == '"' && !unquote(v))
            return sp_error_set(err, SP_ERR_CONFIG,
                                "%s: key %s.%s: malformed quoted string %.300s (escapes: \\\\ \\\" \\n \\t \\r \\xNN)",
                                origin, k->section, k->name, v);
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
 * right after reading the line that holds the key. The reader also guards what inih cannot
 * see: a NUL byte (inih would stop reading the line there, so text hidden after it in a
 * comment would be applied) is an error, and a `key = value` line longer than inih's line
 * buffer is handed over as `key = <placeholder>` with the value kept here (quoted strings in
 * a dump can exceed it), instead of being split in two. */
typedef struct load_state {
    FILE *f;
    const char *path;
    int line;
    sp_config *c;
    sp_error *err;
    sp_status status;
    char *buf;           /* the current physical line (getline) */
    size_t cap;
    char *long_value;    /* value of an over-long key line, or NULL */
    unsigned char seen[sizeof(((sp_config *)0)->is_set)];
    int seen_line[sizeof(((sp_config *)0)->is_set)];
} load_state;

#define LONG_VALUE_MARK "\x01long-value\x01"

static char *reader(char *str, int num, void *stream) {
    load_state *st = stream;
    if (st->status != SP_OK) return NULL; /* stop at the first error */
    ssize_t n = getline(&st->buf, &st->cap, st->f);
    if (n < 0) return NULL;
    st->line++;
    if (memchr(st->buf, 0, (size_t)n)) {
        st->status = sp_error_set(st->err, SP_ERR_CONFIG, "%s:%d: NUL byte in the line (not a text file?)", st->path,
                                  st->line);
        return NULL;
    }
    const char *p = st->buf;
    while (*p == ' ' || *p == '\t') p++;
    const char *eq = strchr(p, '=');
    if (*p == '[' && !strchr(p, ']')) {
        st->status = sp_error_set(st->err, SP_ERR_CONFIG, "%s:%d: section header without its closing ']'", st->path,
                                  st->line);
        return NULL;
    }
    if (*p && *p != '\n' && *p != '\r' && *p != ';' && *p != '#' && *p != '[' && !eq && !strchr(p, ':')) {
        st->status = sp_error_set(st->err, SP_ERR_CONFIG, "%s:%d: syntax error (expected [section] or key = value)",
                                  st->path, st->line);
        return NULL;
    }
    if (n <= num - 1) {
        memcpy(str, st->buf, (size_t)n + 1);
        return str;
    }
    /* over-long: a comment is dropped; a key line keeps its value aside */
    if (*p == ';' || *p == '#') {
        snprintf(str, (size_t)num, ";\n");
        return str;
    }
    if (*p != '[' && eq && eq - p < 100 && n <= SP_CFG_MAX_VALUE + 100) {
        free(st->long_value);
        st->long_value = strdup(eq + 1);
        /* inih strips an inline comment (';' after a blank) from the value: do the same */
        for (char *q = st->long_value; *q; q++)
            if (*q == ';' && q > st->long_value && (q[-1] == ' ' || q[-1] == '\t')) {
                *q = 0;
                break;
            }
        snprintf(str, (size_t)num, "%.*s= %s\n", (int)(eq - p), p, LONG_VALUE_MARK);
        return str;
    }
    st->status = sp_error_set(st->err, SP_ERR_CONFIG, "%s:%d: line longer than %d characters", st->path, st->line,
                              eq && *p != '[' ? SP_CFG_MAX_VALUE + 100 : num - 2);
    return NULL;
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
    if (value && !strcmp(value, LONG_VALUE_MARK) && st->long_value) value = st->long_value;
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
    FILE *f;
    sp_status s = sp_fopen_regular(path, "config file ", "r", &f, NULL, err);
    if (s != SP_OK) return s;
    load_state *st = sp_xcalloc(1, sizeof *st);
    st->f = f;
    st->path = path;
    st->c = c;
    st->err = err;
    int rc = ini_parse_stream(reader, st, handler, st);
    fclose(f);
    s = st->status;
    if (s == SP_OK && rc != 0)
        s = sp_error_set(err, SP_ERR_CONFIG, "%s:%d: syntax error (expected [section] or key = value)", path,
                         rc > 0 ? rc : st->line);
    free(st->buf);
    free(st->long_value);
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
        if (!plain_ok(field)) {
            /* quoted, so that `config dump` loads back unchanged (a newline would otherwise
             * end the value and could inject keys; a leading ';' would read as a comment) */
            size_t o = 0;
            if (n < 3) break;
            buf[o++] = '"';
            for (const unsigned char *p = (const unsigned char *)field; *p && o + 5 < n; p++) {
                if (*p == '\\' || *p == '"') o += (size_t)snprintf(buf + o, n - o, "\\%c", *p);
                else if (*p == '\n') o += (size_t)snprintf(buf + o, n - o, "\\n");
                else if (*p == '\t') o += (size_t)snprintf(buf + o, n - o, "\\t");
                else if (*p == '\r') o += (size_t)snprintf(buf + o, n - o, "\\r");
                else if (*p < 0x20 || *p == 0x7f || *p == ';' || *p == '#')
                    o += (size_t)snprintf(buf + o, n - o, "\\x%02x", *p);
                else buf[o++] = (char)*p;
            }
            buf[o++] = '"';
            buf[o] = 0;
            break;
        }
        snprintf(buf, n, "%s", field);
        break;
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
        char v[SP_CFG_VALUE_TEXT_MAX];
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
