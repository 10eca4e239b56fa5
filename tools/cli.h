/* cli.h: what every sprint command shares: common options, config assembly, error exits,
 * progress on stderr. No model logic lives in tools/. */
#ifndef SPRINT_TOOLS_CLI_H
#define SPRINT_TOOLS_CLI_H

#include <stdio.h>

#include "sprint/common.h"
#include "sprint/config.h"

#define CLI_MAX_SOURCES 64

typedef struct cli_common {
    const char *cmd;        /* command name, for messages */
    sp_config cfg;          /* effective configuration after cli_finish() */
    int json;               /* --json */
    const char *csv_path;   /* --csv FILE */
    int quiet;              /* --quiet: no progress */
    /* config sources, applied in order by cli_finish(): files first, then --set */
    const char *files[CLI_MAX_SOURCES];
    int n_files;
    const char *sets[CLI_MAX_SOURCES];
    int n_sets;
    const char *path_opt[3]; /* --model, --tokenizer, --text as given (cli_path_option) */
    int tokenizer_auto;      /* model.tokenizer came from the shared directory (cli_pick_tokenizer) */
} cli_common;

void cli_init(cli_common *c, const char *cmd);
/* If argv[*i] is a common option (--config F, --set k=v, --seed N, --threads N, --json,
 * --csv F, --quiet), consumes it (and its value) and returns 1; returns 0 otherwise. Exits
 * with status 2 on a missing value. */
int cli_common_option(cli_common *c, int argc, char **argv, int *i);
/* Returns argv[*i + 1] and advances *i, or exits 2 with a message when the value is missing. */
const char *cli_value(cli_common *c, int argc, char **argv, int *i);
/* Applies the config files and overrides; exits 2 on the first config error. */
void cli_finish(cli_common *c);
/* Prints "sprint <cmd>: <msg>" on stderr and exits with code (1 user error, 2 usage). */
_Noreturn void cli_die(const cli_common *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
_Noreturn void cli_die_err(const cli_common *c, const sp_error *err);
/* Fills empty model.checkpoint, model.tokenizer and eval.text from the shared directory.
 * Returns 1 when all three exist, 0 otherwise (msg then says where to get them). */
int cli_resolve_shared(cli_common *c, char *msg, size_t msgsize);
/* If argv[*i] is --model M or --tokenizer T (or --text F when with_text), records the path
 * (applied by cli_resolve_paths) and returns 1; returns 0 otherwise. */
int cli_path_option(cli_common *c, int argc, char **argv, int *i, int with_text);
/* After cli_finish(): the recorded paths override the config; empty ones come from the shared
 * directory, and a shared file that is missing exits 1 with directions. Paths named explicitly
 * are left to the loaders (their messages say what is wrong). */
void cli_resolve_paths(cli_common *c, int with_text);
/* After the model is loaded: when the tokenizer was not named (--tokenizer, model.tokenizer),
 * picks the shared one matching the model's vocabulary of V tokens: models/tok<V>.bin
 * (tok512.bin for stories260K and bitnet-3M), models/tokenizer.bin for V = 32000 (llama2.c's
 * name for the Llama 2 tokenizer); exits 1 naming what it looked for when it is missing. */
struct sp_model_info;
void cli_pick_tokenizer(cli_common *c, const struct sp_model_info *info);
/* 1 when path names a directory (sprint eval --model DIR: the TF.js encoder's hook). */
int cli_is_dir(const char *path);
/* Progress callback (sp_progress_fn) printing to stderr, silent for the first second and
 * with --quiet; user must be the cli_common. */
void cli_progress(void *user, const char *what, double done, double total);
/* Ends a progress line (newline) if one was printed. */
void cli_progress_done(void);
/* Common options help text. */
extern const char *CLI_COMMON_HELP;

#endif
