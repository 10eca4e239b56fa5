/* fuzz_util.h: helpers shared by the libFuzzer targets (tests/fuzz/fuzz_*.c).
 *
 * The file parsers take a path (they check the regular-file status and the size first), so a
 * target writes its input to one temporary file per process and hands the path over. */
#ifndef SPRINT_FUZZ_UTIL_H
#define SPRINT_FUZZ_UTIL_H

#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Path of this process's scratch file number k (0..3), created on first use and removed at
 * exit. */
static char fuzz_paths[4][256];

static void fuzz_cleanup(void) {
    for (int k = 0; k < 4; k++)
        if (fuzz_paths[k][0]) unlink(fuzz_paths[k]);
}

static __attribute__((unused)) const char *fuzz_path(int k) {
    if (!fuzz_paths[k][0]) {
        const char *dir = getenv("TMPDIR");
        snprintf(fuzz_paths[k], sizeof fuzz_paths[k], "%s/sprint-fuzz-%ld-%d", dir && *dir ? dir : "/tmp",
                 (long)getpid(), k);
        static int registered = 0;
        if (!registered) atexit(fuzz_cleanup);
        registered = 1;
    }
    return fuzz_paths[k];
}

/* Writes data to scratch file k and returns its path; aborts when the disk refuses (that is
 * an environment problem, not a finding). */
static __attribute__((unused)) const char *fuzz_write(int k, const uint8_t *data, size_t size) {
    const char *p = fuzz_path(k);
    FILE *f = fopen(p, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        fprintf(stderr, "fuzz: cannot write scratch file %s\n", p);
        abort();
    }
    return p;
}

/* Reads scratch file k back (malloc'd, NUL-terminated). */
static __attribute__((unused)) char *fuzz_read(int k, size_t *len) {
    FILE *f = fopen(fuzz_path(k), "rb");
    if (!f) abort();
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    size_t got;
    while ((got = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) b = realloc(b, cap *= 2);
    }
    fclose(f);
    b[n] = 0;
    if (len) *len = n;
    return b;
}

/* Fails the run with a message (libFuzzer reports the abort as a crash and saves the input). */
#define FUZZ_CHECK(cond, ...)                                                                     \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "fuzz property failed: %s: ", #cond);                                 \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
