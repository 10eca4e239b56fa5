/* helpers.h: shared test utilities: locating ../shared, temporary files, running the tool. */
#ifndef SPRINT_TESTS_HELPERS_H
#define SPRINT_TESTS_HELPERS_H

#include <stddef.h>

/* Full path of shared/<rel> in buf, or NULL when absent (the test then skips with a clear
 * message naming where it looked and SPRINT_SHARED). */
const char *th_shared_path(const char *rel, char *buf, size_t n);
/* Writes len bytes to a fresh temporary file; returns its path (static storage, 16 slots). */
const char *th_temp_file(const void *data, size_t len);
/* Writes a NUL-terminated string to a fresh temporary file. */
const char *th_temp_text(const char *text);
/* Runs the sprint executable with the given argument string through /bin/sh, capturing
 * stdout and stderr (each truncated to n-1 bytes); returns the exit status. */
int th_run_sprint(const char *args, char *out, size_t nout, char *errbuf, size_t nerr);

#endif
