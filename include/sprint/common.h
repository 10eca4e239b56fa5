/* sprint/common.h: status codes, error messages, assertions, progress and the seeded RNG
 * shared by every stage of the data path.
 *
 * Conventions (docs/design.md): library code never prints to stdout and never calls exit().
 * A user's mistake (bad file, bad config) returns a non-zero sp_status and a one-line message
 * in an sp_error; a broken invariant (a bug) aborts with file:line through SP_ASSERT. */
#ifndef SPRINT_COMMON_H
#define SPRINT_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sp_status {
    SP_OK = 0,
    SP_ERR_IO = 1,      /* a file is missing or unreadable */
    SP_ERR_FORMAT = 2,  /* a file is malformed (checkpoint, tokenizer, thresholds, text) */
    SP_ERR_CONFIG = 3,  /* a config key is unknown, duplicated, mistyped, out of range, missing */
    SP_ERR_ARG = 4,     /* a function argument or command-line option is invalid */
    SP_ERR_NOMEM = 5,   /* an allocation failed */
    SP_ERR_DATA = 6     /* input data is invalid (NaN/Inf scores, empty text, bad UTF-8) */
} sp_status;

/* A one-line, human-readable message describing the first error. Caller-owned, no heap. */
typedef struct sp_error {
    sp_status status;
    char msg[512];
} sp_error;

/* Sets err (if not NULL) and returns status, so callers can write
 * `return sp_error_set(err, SP_ERR_IO, "cannot open %s: %s", path, strerror(errno));` */
sp_status sp_error_set(sp_error *err, sp_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sp_error_clear(sp_error *err);
/* Copies in to out (outsize bytes, always NUL-terminated, cut at a whole character) with
 * control bytes and bytes that are not valid UTF-8 written as \xNN, so any text can be quoted
 * on one line of a terminal (idempotent on its own output). sp_error_set applies it to every
 * message. */
void sp_escape_text(const char *in, char *out, size_t outsize);
const char *sp_status_name(sp_status s);

/* Aborts with file:line in every build: for broken invariants (bugs), never for user input. */
#define SP_ASSERT(cond)                                                                    \
    do {                                                                                   \
        if (!(cond)) sp_assert_fail(#cond, __FILE__, __LINE__);                            \
    } while (0)
_Noreturn void sp_assert_fail(const char *cond, const char *file, int line);

/* malloc/calloc that abort on failure (an allocation failure is not a user error we can
 * meaningfully recover from inside a kernel). Sizes are checked for overflow. */
void *sp_xmalloc(size_t n, size_t size);
void *sp_xcalloc(size_t n, size_t size);
/* sp_xmalloc on a 64-byte boundary (a cache line; free with free()): buffers that kernels read
 * 64 bytes at a time, so that no load spans two lines (malloc's 16-byte alignment put the
 * packed K of the flash and SPRINT kernels 16-48 bytes off a line: docs/RESULTS.md 9z.v). */
void *sp_xmalloc_aligned(size_t n, size_t size);
/* Rows that kernels load 64 bytes at a time (K and V of an attention head): NULL, with *ld_out
 * untouched, when x and the stride ld floats are both multiples of 64 bytes (every row starts
 * on a line), or n <= 0, or d < 16 (a row is under one line); else a copy on 64-byte boundaries
 * (sp_xmalloc_aligned, the caller frees it) with stride *ld_out = d rounded up to 16, the
 * padding 0. The same values, so the same results; a row off a line splits every such load
 * over two lines (a malloc'd array starts 16 bytes into one; docs/RESULTS.md parts 9n and
 * 9z.w). The copy costs a pass over the rows and fresh pages: the kernels take it only when
 * they read each row often enough (flash.c, sprint_cpu.c). */
float *sp_rows_aligned(const float *x, int n, int d, int ld, int *ld_out);
/* SP_ERR_NOMEM with a one-line message ("<what> would need X GiB, more than this machine's Y
 * GiB") when an allocation of `bytes` cannot succeed: called before any allocation whose size
 * comes from a file or an option, so a hostile size is an error, not an abort. */
sp_status sp_alloc_check(double bytes, const char *what, sp_error *err);

/* Progress reporting: the library calls this (if set) during long runs; the tool prints it
 * to stderr. done/total are in units named by `what` (e.g. "stories", "workloads"). */
typedef void (*sp_progress_fn)(void *user, const char *what, double done, double total);

/* ---- Deterministic, counter-based random numbers -------------------------------------
 * Every stochastic effect draws from a stream keyed by (seed, purpose, indices...), so a
 * result depends only on the seed and on what is drawn, never on the thread count or the
 * order in which heads are processed. */
uint64_t sp_hash64(uint64_t x);                       /* splitmix64 finaliser */
uint64_t sp_rng_key(uint64_t seed, uint64_t a, uint64_t b, uint64_t c, uint64_t d);
/* sp_rng_key in steps, for loops that share leading arguments: sp_rng_key(seed, a, b, c, d) =
 * step(step(step(step(start(seed), a), b), c), d), so a shared prefix is hashed once. */
uint64_t sp_rng_key_start(uint64_t seed);
uint64_t sp_rng_key_step(uint64_t h, uint64_t x);
double sp_rng_uniform(uint64_t key);                  /* in [0, 1), 53-bit */
double sp_rng_normal(uint64_t key);                   /* standard normal (Box-Muller on key) */

/* Sequential generator for sampling (generate) and synthetic workloads: xoshiro256**. */
typedef struct sp_rng { uint64_t s[4]; } sp_rng;
void sp_rng_seed(sp_rng *r, uint64_t seed);
uint64_t sp_rng_next(sp_rng *r);
double sp_rng_next_uniform(sp_rng *r);                /* [0, 1) */
double sp_rng_next_normal(sp_rng *r);

/* ---- Files (src/common/fileio.c) ---------------------------------------------------------
 * Opens path for reading only if it is a regular file: a FIFO, directory or device is an
 * SP_ERR_IO error naming what it is, without blocking (it is opened O_NONBLOCK and checked with
 * fstat before any read). what prefixes the path in messages ("checkpoint ", may be NULL);
 * mode is the fdopen mode ("rb", "r"); *size (if not NULL) gets the file size in bytes. The
 * caller fcloses *fp. */
#include <stdio.h>
sp_status sp_fopen_regular(const char *path, const char *what, const char *mode, FILE **fp, long long *size,
                           sp_error *err);

/* An output file that is complete or absent: sp_outfile_open writes to a temporary name next
 * to path; sp_outfile_commit checks every write, the flush and the close, then renames it to
 * path (on any failure the temporary is removed and path is untouched); sp_outfile_abort
 * discards it. A path that exists and is not a regular file (/dev/stdout) is written in place.
 * Both commit and abort free the handle; abort(NULL) is a no-op. */
typedef struct sp_outfile sp_outfile;
sp_status sp_outfile_open(const char *path, sp_outfile **out, sp_error *err);
FILE *sp_outfile_stream(sp_outfile *o);
sp_status sp_outfile_commit(sp_outfile *o, sp_error *err);
void sp_outfile_abort(sp_outfile *o);

/* ---- Shared data (../shared) ----------------------------------------------------------
 * Directory holding models/ and data/: $SPRINT_SHARED if set, else "../shared" relative to
 * the working directory, else SP_SOURCE_DIR/../shared. Writes the directory into buf and
 * returns 1 when it holds `relpath` (e.g. "models/stories260K.bin"), 0 otherwise (buf then
 * holds the first candidate, for the error message). */
int sp_shared_find(const char *relpath, char *buf, size_t bufsize);

/* Wall clock in seconds (monotonic), for rates such as tokens/s. */
double sp_now_seconds(void);

#ifdef __cplusplus
}
#endif
#endif
