/* test_sweep.c: does `sprint sweep` (issue 10) run every point of a grid exactly once, whatever
 * happens? Shards cover every point exactly once; a sweep killed with SIGKILL at arbitrary
 * moments and restarted ends with the same rows as an uninterrupted run (no point lost or
 * duplicated); a directory holding another sweep is refused; unknown keys get a suggestion. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

/* a 12-point simulator grid, ~0.2-1.5 s per point */
#define GRID "--workload GPT-2-L --set workload.sim_heads=2 --param quant.msb_bits --values 2,4,6,8 " \
             "--param chip.buffer_kb_s --values 4,8,16"
#define NPTS 12

static char *mktmp(void) {
    char tmpl[] = "/tmp/sp_sweep_test_XXXXXX";
    char *d = mkdtemp(tmpl);
    cr_assert(d != NULL);
    return strdup(d);
}

static void rm_rf(const char *d) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    cr_assert_eq(system(cmd), 0);
}

/* results.csv without its last column (seconds, the only run-dependent value) */
static char *rows_without_seconds(const char *dir, int *nrows) {
    char path[1100];
    snprintf(path, sizeof path, "%s/results.csv", dir);
    FILE *f = fopen(path, "r");
    cr_assert(f != NULL, "no %s", path);
    char *out = calloc(1, 1 << 16), line[4096];
    size_t len = 0;
    *nrows = -1;
    while (fgets(line, sizeof line, f)) {
        char *c = strrchr(line, ',');
        cr_assert(c != NULL);
        *c = 0;
        len += (size_t)snprintf(out + len, (1 << 16) - len, "%s\n", line);
        ++*nrows;
    }
    fclose(f);
    return out;
}

static int count_points(const char *dir) {
    char p[1100];
    snprintf(p, sizeof p, "%s/points", dir);
    DIR *d = opendir(p);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] == 'p' && strstr(e->d_name, ".json") != NULL;
    if (d) closedir(d);
    return n;
}

Test(sweep, shards_cover_every_point_once) {
    char *dir = mktmp();
    for (int n = 1; n <= 5; n++) {
        int seen[NPTS] = {0};
        for (int i = 0; i < n; i++) {
            char args[1400], out[4096], err[4096];
            snprintf(args, sizeof args, "sweep " GRID " --out %s --list --shard %d/%d", dir, i, n);
            cr_assert_eq(th_run_sprint(args, out, sizeof out, err, sizeof err), 0, "%s", err);
            for (char *save = NULL, *t = strtok_r(out, "\n", &save); t; t = strtok_r(NULL, "\n", &save)) {
                int k = atoi(t);
                cr_assert(k >= 0 && k < NPTS, "point %d out of range", k);
                seen[k]++;
            }
        }
        for (int k = 0; k < NPTS; k++) cr_assert_eq(seen[k], 1, "%d shards: point %d listed %d times", n, k, seen[k]);
    }
    /* a finished point is no longer listed; a bad shard is refused */
    char args[1400], out[4096], err[4096];
    snprintf(args, sizeof args, "sweep " GRID " --out %s --point 5", dir);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, err, sizeof err), 0, "%s", err);
    snprintf(args, sizeof args, "sweep " GRID " --out %s --list", dir);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(out, "\n5\n") == NULL && strncmp(out, "5\n", 2) != 0, "done point 5 still listed:\n%s", out);
    snprintf(args, sizeof args, "sweep " GRID " --out %s --list --shard 3/3", dir);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, err, sizeof err), 2);
    cr_assert(strstr(err, "--shard") != NULL, "%s", err);
    rm_rf(dir);
    free(dir);
}

/* Starts the sweep in dir and SIGKILLs it after delay_s or as soon as `more` new points
 * appeared, whichever comes first (so every kill interrupts work in progress). */
static void run_and_kill(const char *dir, double delay_s, int more) {
    char cmd[1600];
    snprintf(cmd, sizeof cmd, "exec %s sweep " GRID " --out %s --jobs 2 --quiet >/dev/null 2>&1", SP_SPRINT_EXE, dir);
    int start = count_points(dir);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    struct timespec ts = {0, 5000000L};
    for (double t = 0; t < delay_s && count_points(dir) < start + more; t += 0.005) nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
}

Test(sweep, sigkill_at_any_moment_resumes_without_loss_or_duplicates, .timeout = 600) {
    char *ref = mktmp(), *dir = mktmp();
    char args[1400], out[1 << 15], err[4096];
    snprintf(args, sizeof args, "sweep " GRID " --out %s --jobs 2 --quiet", ref);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, err, sizeof err), 0, "%s", err);
    int nref, nres;
    char *want = rows_without_seconds(ref, &nref);
    cr_assert_eq(nref, NPTS);
    /* kill at several moments: before any point, during the first ones, later */
    const double delays[] = {0.02, 0.3, 5, 0.15, 5};
    const int more[] = {1, 1, 1, 2, 2};
    int before = 0;
    for (size_t i = 0; i < sizeof delays / sizeof delays[0]; i++) {
        run_and_kill(dir, delays[i], more[i]);
        int now = count_points(dir);
        cr_assert(now >= before && now <= NPTS, "points went from %d to %d", before, now);
        before = now;
    }
    cr_assert(before < NPTS, "every point finished before the last kill: the test did not interrupt anything");
    snprintf(args, sizeof args, "sweep " GRID " --out %s --jobs 2 --quiet", dir);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, err, sizeof err), 0, "%s", err);
    char *got = rows_without_seconds(dir, &nres);
    cr_assert_eq(nres, NPTS);
    cr_assert_str_eq(got, want);
    cr_assert_eq(count_points(dir), NPTS);
    free(want);
    free(got);
    rm_rf(ref);
    rm_rf(dir);
    free(ref);
    free(dir);
}

Test(sweep, refuses_another_sweeps_directory_and_suggests_keys) {
    char *dir = mktmp();
    char args[1400], out[4096], err[4096];
    snprintf(args, sizeof args, "sweep " GRID " --out %s --list", dir);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, err, sizeof err), 0, "%s", err);
    snprintf(args, sizeof args, "sweep " GRID ",32 --out %s --list", dir);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, err, sizeof err), 2);
    cr_assert(strstr(err, "another sweep") != NULL, "%s", err);
    cr_assert_eq(th_run_sprint("sweep --param msb_bit --values 1", out, sizeof out, err, sizeof err), 2);
    cr_assert(strstr(err, "did you mean 'quant.msb_bits'") != NULL, "%s", err);
    /* a value out of the key's range is a usage error (exit 2, as for --set), before any work */
    cr_assert_eq(th_run_sprint("sweep --param quant.msb_bits --values 9 --out /nonexistent/sp_sweep", out, sizeof out, err,
                               sizeof err), 2);
    cr_assert(strstr(err, "msb_bits") != NULL, "%s", err);
    /* a huge grid is refused with directions instead of started */
    cr_assert_eq(th_run_sprint("sweep --param d2d_sigma --param c2c_sigma --param stuck_at_0 --param stuck_at_1 "
                               "--param margin_sigma --param onoff_ratio --list --out /nonexistent/sp_sweep", out, sizeof out, err,
                               sizeof err), 2);
    cr_assert(strstr(err, "--each") && strstr(err, "12000 points"), "%s", err);
    /* --each: one key at a time, 4 + 3 points */
    char dir2[1200];
    snprintf(dir2, sizeof dir2, "%s/each", dir);
    snprintf(args, sizeof args, "sweep " GRID " --each --out %s --list", dir2);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, err, sizeof err), 0, "%s", err);
    int lines = 0;
    for (char *q = out; *q; q++) lines += *q == '\n';
    cr_assert_eq(lines, 7, "--each listed %d points:\n%s", lines, out);
    rm_rf(dir);
    free(dir);
}

Test(sweep, rows_hold_differing_keys_accuracy_and_cost, .timeout = 600) {
    TH_NEED_SHARED(model, "models/stories260K.bin");
    char *dir = mktmp();
    char args[1400], out[1 << 15], err[8192];
    snprintf(args, sizeof args,
             "sweep --measure accuracy,sim --workload BERT-B --param quant.msb_bits --values 3,6 --set eval.max_stories=2 "
             "--set policy.delta=3 --out %s --json --quiet", dir);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, err, sizeof err), 0, "%s", err);
    /* columns: the swept key and the other non-default keys, accuracy and cost */
    const char *cols[] = {"\"quant.msb_bits\":3", "\"quant.msb_bits\":6", "\"eval.max_stories\":2", "\"policy.delta\":3",
                          "\"nll_nats_per_token\"", "\"cycles\"", "\"energy_pj\"", "\"bytes_read\"", "\"speedup\""};
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) cr_assert(strstr(out, cols[i]) != NULL, "no %s in %s", cols[i], out);
    char csv[1100];
    snprintf(csv, sizeof csv, "%s/results.csv", dir);
    FILE *f = fopen(csv, "r");
    cr_assert(f != NULL);
    char head[2048];
    cr_assert(fgets(head, sizeof head, f) != NULL);
    fclose(f);
    cr_assert(strncmp(head, "point,eval.max_stories,quant.msb_bits,policy.delta,attention,nll_nats_per_token", 79) == 0, "%s",
              head);
    rm_rf(dir);
    free(dir);
}
