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
/* Applies the config files and overrides; exits 2 on the first config error. A --set key may
 * be given without its section when unique (--set msb_bits=3); an unknown key is an error
 * naming the closest one ("did you mean"). */
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
/* Splits the comma-separated list `text` given to option opt into items (pointers into buf,
 * bufsize bytes). Exits 2 (usage) when the text does not fit buf, when an entry is empty,
 * when the list is empty or when it has more than max entries: nothing is dropped silently.
 * Returns the number of entries. */
int cli_list(const cli_common *c, const char *opt, const char *text, char *buf, size_t bufsize, char **items,
             int max);
/* Opens an output file that is complete or absent (sp_outfile): exits 1 when it cannot be
 * created. Until cli_output_commit, an exit through cli_die removes the partial file. */
FILE *cli_output_open(const cli_common *c, const char *path);
/* Checks every write, closes and renames the file opened by cli_output_open; exits 1 (and
 * leaves no file) on a write error. */
void cli_output_commit(const cli_common *c);
/* Registered with atexit by main: flushes and closes stdout, and turns a write error
 * (`sprint run --json > /dev/full`) into a message and exit status 1. */
void cli_check_stdout_at_exit(void);
/* Exit status: 0 success; 1 an error in an input file, the data or the run (message names the
 * file, line or key); 2 a usage error: unknown command or option, a missing or bad option
 * value, a bad --set/--seed/--threads override, a bad list entry (README.md, "Exit status"). */
#define CLI_EXIT_ERROR 1
#define CLI_EXIT_USAGE 2
/* Common options help text. */
extern const char *CLI_COMMON_HELP;

/* 1 when a and b name the same existing file. */
int cli_same_file(const char *a, const char *b);

/* The stories a real-model trace (sprint run, sprint trace --real, sweep's real rows) runs on
 * and the ones its thresholds are calibrated on, read from cfg's eval.text with tok, by the
 * rule of sprint eval. The text is split in halves (after eval.max_stories) when eval.split =
 * halves, or auto with cfg's workload.mode and policy needing calibration
 * (sp_op_needs_calibration) and no policy.calib_text: the first sim.trace_stories of the
 * second half are traced and as many of the first half calibrate (sp_sim_trace_split).
 * Without the split, the first sim.trace_stories (at most eval.max_stories) are traced. A
 * policy that needs calibration and a policy.calib_text: that text's first sim.trace_stories
 * calibrate (warned when it is eval.text). Calibrating on the traced stories themselves
 * (eval.split = none) is warned on stderr. *calib is empty (n = 0) when nothing is calibrated
 * or the traced stories calibrate. Both are the caller's (sp_corpus_free). */
struct sp_corpus;
struct sp_tokenizer;
sp_status cli_trace_corpora(const cli_common *c, const sp_config *cfg, const struct sp_tokenizer *tok,
                            struct sp_corpus *calib, struct sp_corpus *traced, sp_error *err);

#endif

/* ---- names (issue 10): "did you mean" and config-key lookup ------------------------------- */
/* The candidate closest to word by edit distance (case-insensitive), or NULL when none is
 * within max(2, strlen(word) / 3) edits. */
const char *cli_closest(const char *word, const char *const *cands, int n);
/* Resolves a config key given as section.key or, when unique, key alone; returns its index
 * in sp_config_keys(), or dies (exit 2) naming the closest key ("did you mean"). what names
 * the option for the message. */
int cli_config_key(cli_common *c, const char *name, const char *what);
/* For commands whose output is not a table (generate, config, trace): --json and --csv, which
 * the common options accept, are refused with an error instead of being ignored. */
void cli_no_table_options(const cli_common *c);
/* The per-workload keys under short names: --seq N sets workload.<preset>_seq and --padding F
 * workload.<preset>_padding of every preset (the ones run are those --workload names).
 * Returns 1 when argv[*i] was one of them. */
int cli_workload_option(cli_common *c, int argc, char **argv, int *i);
extern const char *CLI_WORKLOAD_HELP;
/* For an unknown attention mode: a hint when the name is a simulator design (sprint-noreuse,
 * baseline-paper, ...: `sprint run` results, not functional modes) or close to a mode, else "". */
const char *cli_mode_hint(const char *name);
