/* sprint/config.h: the one configuration table.
 *
 * Every key of sprint is declared once, in include/sprint/keys_*.def, with its section, name,
 * type, range, default (or "required"), unit, one-line doc and the source of its default.
 * That table drives parsing of INI files (inih), validation, `--set section.key=value`
 * overrides, `sprint config dump` (a loadable INI file) and docs/config.md.
 *
 * Fields of sp_config are named <section>_<key>; types: INT -> long, REAL -> double,
 * BOOL -> int (0/1), STRING -> char[256], ENUM -> char[32] holding one of the choices. */
#ifndef SPRINT_CONFIG_H
#define SPRINT_CONFIG_H

#include <stdio.h>

#include "sprint/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sp_cfg_type { SP_CFG_INT, SP_CFG_REAL, SP_CFG_BOOL, SP_CFG_STRING, SP_CFG_ENUM } sp_cfg_type;

#define SP_CFG_FIELD_INT(f) long f;
#define SP_CFG_FIELD_REAL(f) double f;
#define SP_CFG_FIELD_BOOL(f) int f;
#define SP_CFG_FIELD_STRING(f) char f[256];
#define SP_CFG_FIELD_ENUM(f) char f[32];

typedef struct sp_config {
#define SP_CFG(sec, key, type, min, max, def, choices, unit, doc, source) SP_CFG_FIELD_##type(sec##_##key)
#include "sprint/config_keys.def"
#undef SP_CFG
    /* which keys were given a value (default, file or --set); indexed like sp_config_keys() */
    unsigned char is_set[512];
} sp_config;

typedef struct sp_config_key {
    const char *section, *name;
    sp_cfg_type type;
    double min, max;      /* inclusive range for INT and REAL */
    const char *def;      /* default as text; NULL = required */
    const char *choices;  /* ENUM: "a|b|c"; else NULL */
    const char *unit, *doc, *source;
    size_t offset;        /* offsetof(sp_config, field) */
} sp_config_key;

/* The table, in declaration order. */
const sp_config_key *sp_config_keys(size_t *n);
/* Index of section.name in the table, or -1. */
int sp_config_find(const char *section, const char *name);

/* Fills every key with its default; required keys are left unset. */
void sp_config_defaults(sp_config *c);
/* Applies an INI file on top of c. Unknown section or key, duplicate key within the file,
 * wrong type, out-of-range value: SP_ERR_CONFIG naming file, line, key and what was expected. */
sp_status sp_config_load_file(sp_config *c, const char *path, sp_error *err);
/* Applies one `section.key=value` override (origin names it in errors, e.g. "--set"). */
sp_status sp_config_set(sp_config *c, const char *assignment, const char *origin, sp_error *err);
/* Sets one key from text; origin is "file:line" or "--set" for messages. */
sp_status sp_config_set_value(sp_config *c, const char *section, const char *name, const char *value,
                              const char *origin, sp_error *err);
/* Checks that every required key has a value. */
sp_status sp_config_check_required(const sp_config *c, sp_error *err);

/* Text of one key's current value as a dump writes it: a string that would not read back
 * plain (newline, ';', '#', blanks at the ends, leading '"') is quoted with \\ \" \n \t \r
 * \xNN escapes, which the loader decodes. buf must hold SP_CFG_VALUE_TEXT_MAX bytes. */
#define SP_CFG_VALUE_TEXT_MAX 1100
void sp_config_value_text(const sp_config *c, const sp_config_key *k, char *buf, size_t n);
/* Prints the effective configuration as a loadable INI file, each key with its doc and unit. */
void sp_config_dump(const sp_config *c, FILE *f);
/* Writes the Markdown reference of every key (docs/config.md). */
void sp_config_write_markdown(FILE *f);

/* ENUM helper: index of the current value within its choices (0-based), or -1. */
int sp_config_enum_index(const char *choices, const char *value);

#ifdef __cplusplus
}
#endif
#endif
