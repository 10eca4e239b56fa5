/* fileio.c: opening input files safely and writing output files atomically.
 *
 * Inputs: a named pipe (FIFO), a directory or a device given as a model, tokenizer, text,
 * config or thresholds file must be a clear error, not a hang: the file is opened with
 * O_NONBLOCK (so opening a FIFO with no writer returns at once), its status checked with
 * fstat, and only a regular file is handed back (blocking mode restored).
 *
 * Outputs: a file the tool writes (--csv, --out, thresholds) is complete or absent. It is
 * written to a temporary name in the same directory and renamed over the target only when
 * every write, the flush and the close succeeded; on failure the temporary file is removed. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sprint/common.h"

sp_status sp_fopen_regular(const char *path, const char *what, const char *mode, FILE **fp, long long *size,
                           sp_error *err) {
    *fp = NULL;
    if (size) *size = 0;
    if (!what) what = "";
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return sp_error_set(err, SP_ERR_IO, "cannot open %s%s: %s", what, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        const char *kind = S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a named pipe (FIFO)"
                           : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device" : "a socket or other special file";
        close(fd);
        return sp_error_set(err, SP_ERR_IO, "cannot read %s%s: not a regular file (%s)", what, path, kind);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    FILE *f = fdopen(fd, mode ? mode : "rb");
    if (!f) {
        int e = errno;
        close(fd);
        return sp_error_set(err, SP_ERR_IO, "cannot open %s%s: %s", what, path, strerror(e));
    }
    *fp = f;
    if (size) *size = (long long)st.st_size;
    return SP_OK;
}

struct sp_outfile {
    FILE *f;
    char *path; /* the target */
    char *tmp;  /* the temporary name it is written under */
};

sp_status sp_outfile_open(const char *path, sp_outfile **out, sp_error *err) {
    *out = NULL;
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        /* a device or pipe (e.g. /dev/stdout, /dev/null): written in place, no rename */
        FILE *f = fopen(path, "w");
        if (!f) return sp_error_set(err, SP_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        sp_outfile *o = sp_xcalloc(1, sizeof *o);
        o->f = f;
        o->path = strdup(path);
        *out = o;
        return SP_OK;
    }
    size_t n = strlen(path) + 32;
    char *tmp = sp_xmalloc(n, 1);
    snprintf(tmp, n, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        sp_status s = sp_error_set(err, SP_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        free(tmp);
        return s;
    }
    /* mkstemp makes the file 0600; give it the permissions a plain fopen would */
    mode_t um = umask(0);
    umask(um);
    fchmod(fd, 0666 & ~um);
    FILE *f = fdopen(fd, "w");
    if (!f) {
        sp_status s = sp_error_set(err, SP_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return s;
    }
    sp_outfile *o = sp_xcalloc(1, sizeof *o);
    o->f = f;
    o->path = strdup(path);
    o->tmp = tmp;
    *out = o;
    return SP_OK;
}

FILE *sp_outfile_stream(sp_outfile *o) { return o->f; }

static void outfile_free(sp_outfile *o) {
    free(o->path);
    free(o->tmp);
    free(o);
}

sp_status sp_outfile_commit(sp_outfile *o, sp_error *err) {
    if (!o) return SP_OK;
    int bad = ferror(o->f);
    errno = 0;
    if (fflush(o->f) != 0) bad = 1;
    int e = errno;
    if (fclose(o->f) != 0) {
        bad = 1;
        if (!e) e = errno;
    }
    sp_status s = SP_OK;
    if (bad) {
        s = sp_error_set(err, SP_ERR_IO, "cannot write %s: %s", o->path, e ? strerror(e) : "write error");
        if (o->tmp) unlink(o->tmp);
    } else if (o->tmp && rename(o->tmp, o->path) != 0) {
        s = sp_error_set(err, SP_ERR_IO, "cannot write %s: %s", o->path, strerror(errno));
        unlink(o->tmp);
    }
    outfile_free(o);
    return s;
}

void sp_outfile_abort(sp_outfile *o) {
    if (!o) return;
    fclose(o->f);
    if (o->tmp) unlink(o->tmp);
    outfile_free(o);
}
