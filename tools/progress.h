/* progress.h: one progress display for every sprint command (issue 10), on stderr:
 * the overall stage k of n of a run, the work done within the stage and an ETA for the whole
 * run; and a counter of finished items (sweep points) with its ETA. Silent for runs under a
 * second and with --quiet; one updating line on a terminal, a line every few seconds in a log. */
#ifndef SPRINT_TOOLS_PROGRESS_H
#define SPRINT_TOOLS_PROGRESS_H

#include "cli.h"

/* Declares that the run has n stages (0 = unknown); resets the stage count and the clock. */
void progress_stages(int n);
/* Starts the next stage, named what; prints "[cmd] stage k/n: what" (unless --quiet or the run
 * is younger than a second). The
 * library's progress callbacks (cli_progress) then show "stage k/n" and an overall ETA. */
void progress_stage(const cli_common *c, const char *what);
/* For cli_progress: writes the "stage k/n, " prefix (empty without stages) and returns the
 * fraction of the whole run done when the current stage is at frac (or -1 without stages). */
double progress_overall(double frac, char *prefix, size_t n);
/* Seconds since progress_stages() (0 before). */
double progress_run_elapsed(void);

/* Counts finished items (sweep points) out of total, with elapsed time and ETA. */
typedef struct progress_counter {
    const cli_common *c;
    const char *what;
    long total;
    double t0, last;
    int open;  /* a terminal line is open */
} progress_counter;
void progress_counter_init(progress_counter *p, const cli_common *c, const char *what, long total);
void progress_counter_step(progress_counter *p, long done);
/* Ends an open terminal line (before other messages). */
void progress_counter_clear(progress_counter *p);

#endif
