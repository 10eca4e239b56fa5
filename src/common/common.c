/* common.c: errors, assertions, allocation, deterministic RNG and shared-data lookup. */
#define _POSIX_C_SOURCE 200809L
#include "sprint/common.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Length of the valid UTF-8 sequence at s (2-4 bytes), or 0. */
static size_t utf8_seq(const unsigned char *s) {
    size_t n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] <= 0xdf ? 2 : 0;
    if (!n || s[0] >= 0xf5) return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (n == 3 && ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))) return 0;
    if (n == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))) return 0;
    return n;
}

void sp_escape_text(const char *in, char *out, size_t outsize) {
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0;
    if (!outsize) return;
    while (*s) {
        size_t n = *s >= 0x80 ? utf8_seq(s) : 1;
        char esc[5];
        const char *piece = (const char *)s;
        size_t plen = n;
        if (n == 0 || *s < 0x20 || *s == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", *s);
            piece = esc;
            plen = 4;
            n = 1;
        }
        if (o + plen >= outsize) break;
        memcpy(out + o, piece, plen);
        o += plen;
        s += n;
    }
    out[o] = 0;
}

sp_status sp_error_set(sp_error *err, sp_status status, const char *fmt, ...) {
    if (err) {
        /* formatted into a local buffer first: callers may pass err->msg itself as an argument
         * ("context: %s", err->msg), which vsnprintf into err->msg would make undefined. The
         * message is one line of text whatever it quotes: control bytes and bytes that are not
         * UTF-8 (a binary file, a value holding a newline) are shown as \xNN. */
        char buf[sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        sp_escape_text(buf, err->msg, sizeof err->msg);
        err->status = status;
    }
    return status;
}

void sp_error_clear(sp_error *err) {
    if (err) {
        err->status = SP_OK;
        err->msg[0] = '\0';
    }
}

const char *sp_status_name(sp_status s) {
    switch (s) {
    case SP_OK: return "ok";
    case SP_ERR_IO: return "io";
    case SP_ERR_FORMAT: return "format";
    case SP_ERR_CONFIG: return "config";
    case SP_ERR_ARG: return "argument";
    case SP_ERR_NOMEM: return "out of memory";
    case SP_ERR_DATA: return "data";
    }
    return "unknown";
}

_Noreturn void sp_assert_fail(const char *cond, const char *file, int line) {
    fprintf(stderr, "sprint: internal error (bug): assertion `%s' failed at %s:%d\n", cond, file,
            line);
    abort();
}

void *sp_xmalloc(size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) sp_assert_fail("allocation size overflow", __FILE__, __LINE__);
    void *p = malloc((n * size) != 0 ? n * size : 1);
    if (!p) {
        fprintf(stderr, "sprint: out of memory allocating %zu bytes\n", n * size);
        abort();
    }
    return p;
}

void *sp_xmalloc_aligned(size_t n, size_t size) {
    if (size && n > (SIZE_MAX - 64) / size) sp_assert_fail("allocation size overflow", __FILE__, __LINE__);
    const size_t bytes = ((n * size) + 63) / 64 * 64; /* aligned_alloc: a multiple of the alignment */
    void *p = aligned_alloc(64, bytes != 0 ? bytes : 64);
    if (!p) {
        fprintf(stderr, "sprint: out of memory allocating %zu bytes\n", n * size);
        abort();
    }
    return p;
}

float *sp_rows_aligned(const float *x, int n, int d, int ld, int *ld_out) {
    if (n <= 0 || d < 16 || ((uintptr_t)x % 64 == 0 && ((size_t)ld * sizeof(float)) % 64 == 0)) return NULL;
    const size_t la = ((size_t)d + 15) / 16 * 16;
    float *y = sp_xmalloc_aligned((size_t)n * la, sizeof(float));
    for (int j = 0; j < n; j++) {
        memcpy(y + (size_t)j * la, x + (size_t)j * (size_t)ld, (size_t)d * sizeof(float));
        memset(y + (size_t)j * la + d, 0, (la - (size_t)d) * sizeof(float));
    }
    *ld_out = (int)la;
    return y;
}

void *sp_xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "sprint: out of memory allocating %zu x %zu bytes\n", n, size);
        abort();
    }
    return p;
}

sp_status sp_alloc_check(double bytes, const char *what, sp_error *err) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    double phys = pages > 0 && page > 0 ? (double)pages * (double)page : 0;
    if (bytes > (double)SIZE_MAX / 2 || (phys > 0 && bytes > phys))
        return sp_error_set(err, SP_ERR_NOMEM, "%s would need %.3g GiB, more than this machine's %.3g GiB of memory",
                            what, bytes / 1073741824.0, phys / 1073741824.0);
    return SP_OK;
}

uint64_t sp_hash64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t sp_rng_key_start(uint64_t seed) { return sp_hash64(seed); }
uint64_t sp_rng_key_step(uint64_t h, uint64_t x) { return sp_hash64(h ^ x); }

uint64_t sp_rng_key(uint64_t seed, uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
    uint64_t h = sp_rng_key_start(seed);
    h = sp_rng_key_step(h, a);
    h = sp_rng_key_step(h, b);
    h = sp_rng_key_step(h, c);
    return sp_rng_key_step(h, d);
}

double sp_rng_uniform(uint64_t key) { return (double)(sp_hash64(key) >> 11) * 0x1.0p-53; }

double sp_rng_normal(uint64_t key) {
    double u1 = (double)((sp_hash64(key) >> 11) + 1) * 0x1.0p-53; /* (0, 1] */
    double u2 = sp_rng_uniform(key ^ 0xd1b54a32d192ed03ULL);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void sp_rng_seed(sp_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) {
        x = sp_hash64(x + (uint64_t)i);
        r->s[i] = x ? x : 0x9e3779b97f4a7c15ULL;
    }
}

uint64_t sp_rng_next(sp_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double sp_rng_next_uniform(sp_rng *r) { return (double)(sp_rng_next(r) >> 11) * 0x1.0p-53; }

double sp_rng_next_normal(sp_rng *r) {
    double u1 = (double)((sp_rng_next(r) >> 11) + 1) * 0x1.0p-53;
    double u2 = sp_rng_next_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static int holds(const char *dir, const char *rel) {
    char p[4096];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    return stat(p, &st) == 0;
}

int sp_shared_find(const char *relpath, char *buf, size_t bufsize) {
    const char *env = getenv("SPRINT_SHARED");
    const char *cands[3] = {env && *env ? env : NULL, "../shared", SP_SOURCE_DIR "/../shared"};
    const char *first = NULL;
    for (int i = 0; i < 3; i++) {
        if (!cands[i]) continue;
        if (!first) first = cands[i];
        if (holds(cands[i], relpath)) {
            snprintf(buf, bufsize, "%s", cands[i]);
            return 1;
        }
        if (i == 0) break; /* an explicit SPRINT_SHARED is the only place looked at */
    }
    snprintf(buf, bufsize, "%s", first ? first : "../shared");
    return 0;
}

double sp_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
