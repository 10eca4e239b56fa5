/* helpers.c: shared test utilities. */
#define _POSIX_C_SOURCE 200809L
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sprint/common.h"

const char *th_shared_path(const char *rel, char *buf, size_t n) {
    char dir[2048];
    if (!sp_shared_find(rel, dir, sizeof dir)) return NULL;
    snprintf(buf, n, "%s/%s", dir, rel);
    return buf;
}

const char *th_temp_file(const void *data, size_t len) {
    static char paths[16][64];
    static int next = 0;
    char *p = paths[next++ % 16];
    snprintf(p, 64, "/tmp/sprint-test-XXXXXX");
    int fd = mkstemp(p);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "wb");
    if (len) fwrite(data, 1, len, f);
    fclose(f);
    return p;
}

const char *th_temp_text(const char *text) { return th_temp_file(text, strlen(text)); }

static void slurp(const char *path, char *buf, size_t n) {
    if (!buf || !n) return;
    buf[0] = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return;
    size_t r = fread(buf, 1, n - 1, f);
    buf[r] = 0;
    fclose(f);
}

int th_run_sprint(const char *args, char *out, size_t nout, char *errbuf, size_t nerr) {
    char o[64] = "/tmp/sprint-out-XXXXXX", e[64] = "/tmp/sprint-err-XXXXXX";
    int fo = mkstemp(o), fe = mkstemp(e);
    close(fo);
    close(fe);
    size_t cl = strlen(args) + 256;
    char *cmd = malloc(cl);
    snprintf(cmd, cl, "%s %s >%s 2>%s </dev/null", SP_SPRINT_EXE, args, o, e);
    int st = system(cmd);
    free(cmd);
    slurp(o, out, nout);
    slurp(e, errbuf, nerr);
    unlink(o);
    unlink(e);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}
