/* fn_common.h: what sprint calibrate, sweep and compare share (issue 3): loading the shared
 * model/tokenizer/text like sprint eval, one evaluation, and the result table in text, JSON
 * and CSV with units. */
#ifndef SPRINT_TOOLS_FN_COMMON_H
#define SPRINT_TOOLS_FN_COMMON_H

#include <cjson/cJSON.h>

#include "cli.h"
#include "sprint/functional.h"
#include "sprint/model.h"

typedef struct fn_session {
    sp_model *model;
    const sp_model_info *info;
    sp_corpus corpus;      /* the evaluated stories */
    sp_corpus calib;       /* the calibration stories (sp_calibrate uses the first policy.calib_stories) */
    int split;             /* 1: calibrate on the first half of the text's stories, evaluate the second */
    int first_story;       /* 1-based index in the text of the first evaluated story */
    char calib_from[300];  /* the calibration text's path */
} fn_session;

/* Handles --model/--tokenizer/--text and --calib-text (returns 1 when argv[*i] was one). */
int fn_path_option(cli_common *c, int argc, char **argv, int *i);
/* The options every functional command takes: the common ones, --model/--tokenizer/--text,
 * and --help/-h (prints help() and exits 0). Returns 1 when argv[*i] was one of them. */
int fn_shared_option(cli_common *c, int argc, char **argv, int *i, void (*help)(void));
/* Prints o unformatted on one stdout line, then deletes it. */
void fn_print_json(cJSON *o);
/* Dies (exit 2) on an option the command does not know. */
_Noreturn void fn_unknown_option(cli_common *c, const char *arg);
/* After cli_finish: resolves paths like sprint eval and loads everything; dies on errors.
 * calibrates = 1 when the command will calibrate thresholds on s->calib: with eval.split =
 * auto and no policy.calib_text the text's stories are then split in halves (calibrate on
 * the first, evaluate the second); warns on stderr when the calibration stories are evaluated
 * too (eval.split = none, or policy.calib_text is the evaluated file). */
void fn_session_load(cli_common *c, fn_session *s, int calibrates);
void fn_session_free(fn_session *s);

typedef struct fn_row {
    char mode[32], policy[32], param[32];
    double value;            /* swept value (sweep) */
    double nll, ppl, dnll;   /* nats/token, -, relative change vs dense */
    double kept, mem_kept, fpr, nff, locality, mass_lost, seconds;
    double delta;            /* policy delta (nats) or NaN */
} fn_row;

/* Evaluates op over the session's corpus; fills r (dnll from nll_dense when > 0). */
void fn_eval(cli_common *c, fn_session *s, sp_attn_op *op, double nll_dense, fn_row *r);
/* Prints rows as a table (stdout), or JSON with --json; writes --csv when asked. sweep = 1
 * adds the param/value columns. */
void fn_print_rows(cli_common *c, const char *title, const fn_row *rows, int n, int sweep);
/* Points the session's model paths options help text. */
extern const char *FN_PATH_HELP;

#endif
