/* progress.c: see progress.h. */
#define _POSIX_C_SOURCE 200809L
#include "progress.h"

#include <stdio.h>
#include <unistd.h>

static int n_stages = 0, stage = 0;
static double run_t0 = -1;

void progress_stages(int n) {
    n_stages = n > 0 ? n : 0;
    stage = 0;
    run_t0 = sp_now_seconds();
}

void progress_stage(const cli_common *c, const char *what) {
    stage++;
    if (run_t0 < 0) run_t0 = sp_now_seconds();
    if (c && c->quiet) return;
    double el = sp_now_seconds() - run_t0;
    if (el < 1.0) return; /* short runs stay silent; the progress lines carry the stage */
    cli_progress_done();
    if (n_stages > 0) {
        double frac = (double)(stage - 1) / n_stages;
        if (frac > 0 && el > 1.0)
            fprintf(stderr, "[%s] stage %d/%d: %s (%.0f s elapsed, ~%.0f s left)\n", c ? c->cmd : "sprint", stage,
                    n_stages, what, el, el * (1 - frac) / frac);
        else
            fprintf(stderr, "[%s] stage %d/%d: %s\n", c ? c->cmd : "sprint", stage, n_stages, what);
    } else {
        fprintf(stderr, "[%s] %s\n", c ? c->cmd : "sprint", what);
    }
}

double progress_overall(double frac, char *prefix, size_t n) {
    if (n_stages <= 0 || stage <= 0) {
        if (n) prefix[0] = 0;
        return -1;
    }
    snprintf(prefix, n, "stage %d/%d, ", stage > n_stages ? n_stages : stage, n_stages);
    double f = (stage - 1 + (frac < 0 ? 0 : frac > 1 ? 1 : frac)) / n_stages;
    return f > 1 ? 1 : f;
}

double progress_run_elapsed(void) { return run_t0 < 0 ? 0 : sp_now_seconds() - run_t0; }

void progress_counter_init(progress_counter *p, const cli_common *c, const char *what, long total) {
    p->c = c;
    p->what = what;
    p->total = total;
    p->t0 = sp_now_seconds();
    p->last = 0;
    p->open = 0;
}

void progress_counter_step(progress_counter *p, long done) {
    if (p->c && p->c->quiet) return;
    double now = sp_now_seconds(), el = now - p->t0;
    int tty = isatty(2), final = done >= p->total;
    if (el < 1.0 && !final) return;
    if (!final && now - p->last < (tty ? 0.2 : 2.0)) return;
    p->last = now;
    double eta = done > 0 && p->total > done ? el * (double)(p->total - done) / (double)done : 0;
    fprintf(stderr, "%s[%s] %ld/%ld %s done (%.0f%%), %.1f s elapsed, ~%.0f s left%s", tty ? "\r" : "",
            p->c ? p->c->cmd : "sprint", done, p->total, p->what, p->total > 0 ? 100.0 * done / p->total : 100.0, el, eta,
            tty ? "\033[K" : "\n");
    p->open = tty;
}

void progress_counter_clear(progress_counter *p) {
    if (p->open) fputc('\n', stderr);
    p->open = 0;
}
