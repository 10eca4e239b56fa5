/* helpers.h: shared test utilities: locating ../shared, temporary files, running the tool. */
#ifndef SPRINT_TESTS_HELPERS_H
#define SPRINT_TESTS_HELPERS_H

#include <math.h>
#include <stddef.h>

/* Running maximum of errors that keeps a NaN (fmax drops it): md = th_maxerr(md, e), so a NaN
 * output makes md NaN and an assertion md <= tol fails. */
static inline double th_maxerr(double m, double e) { return isnan(m) || e <= m ? m : e; }

/* Full path of shared/<rel> in buf, or NULL when absent (the test then skips with a clear
 * message naming where it looked and SPRINT_SHARED). */
const char *th_shared_path(const char *rel, char *buf, size_t n);
/* Declares `const char *var` = the path of shared/<rel>, or skips the calling test with a
 * message naming the file and SPRINT_SHARED. Use at the top of a Test body. */
#define TH_NEED_SHARED(var, rel)                                                              \
    char var##_buf[4096];                                                                     \
    const char *var = th_shared_path(rel, var##_buf, sizeof var##_buf);                       \
    if (!var) cr_skip_test("%s not found in the shared directory (set SPRINT_SHARED)", rel)

/* Writes len bytes to a fresh temporary file; returns its path (static storage, 16 slots). */
const char *th_temp_file(const void *data, size_t len);
/* Writes a NUL-terminated string to a fresh temporary file. */
const char *th_temp_text(const char *text);
/* Runs the sprint executable with the given argument string through /bin/sh, capturing
 * stdout and stderr (each truncated to n-1 bytes); returns the exit status. */
int th_run_sprint(const char *args, char *out, size_t nout, char *errbuf, size_t nerr);

/* Q, K and V of one real head, copied to contiguous rows (th_capture_layer). */
typedef struct th_head {
    int nq, nk, d, causal, q_offset;
    float scale;
    float *q, *k, *v;
} th_head;
struct sp_model;
/* Runs the model's forward pass on n_tok fixed tokens (1 + (37 i + 11) mod (vocab - 1)) with
 * an operator that writes zero outputs and copies heads 0..7 of `layer` into out; returns how
 * many heads it captured (free each with th_head_free). Fails the calling test on an error. */
int th_capture_layer(struct sp_model *m, int n_tok, int layer, th_head out[8]);
void th_head_free(th_head *h);

#endif
