#define _GNU_SOURCE
/* sprint sweep: design-space sweeps over any config key (issue 10), accuracy and simulator
 * alike. Each point of the grid (the cartesian product of every --param's values, times the
 * --attention modes) is one full configuration run by its own process: the functional model's
 * accuracy on a real model (NLL, kept fraction, false prunes) and/or the simulator's cycles,
 * energy and traffic on a workload, in one row. Each finished point is written atomically
 * (temp file + rename) to OUT/points/; a restart skips the points present, so a sweep killed
 * at any moment (even SIGKILL) resumes with no point lost or duplicated. --shard i/n, --list
 * and --point K let GNU parallel, Slurm arrays or mpirun drive the same points (README).
 *
 * Thresholds (accuracy): calibrated once at the base configuration (OUT/thresholds.txt) and
 * held fixed over the sweep, so a point shows the swept key's effect alone (as paper Fig. 5);
 * --calibrate point calibrates every point for itself (default when a policy.* key is swept).
 * The dense reference NLL is cached per (model, text, eval window) in OUT/dense-*.txt. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "commands.h"
#include "fn_common.h"
#include "progress.h"
#include "sprint/sim.h"

#define MAX_AXES 8
#define MAX_VALUES 64

typedef struct axis {
    int key;                      /* index in sp_config_keys() */
    char name[96];                /* section.key */
    char *vals[MAX_VALUES];
    int nv;
} axis;

typedef struct plan {
    axis ax[MAX_AXES];
    int nax;
    char *modes[4];               /* accuracy: attention modes (an innermost axis) */
    int nm;
    int acc, sim;                 /* what each point measures */
    char workload[32];            /* sim: preset name or "real" */
    int size;                     /* sim: 0 S, 1 M, 2 L */
    int cal_point;                /* 1: calibrate every point, 0: once at the base config */
    int each;                     /* 1: one axis at a time around the base (no grid) */
    long npoints;
    const char *out;              /* output directory */
    int temp;                     /* out is a temporary directory, removed at the end */
} plan;

/* default value lists for the keys of the paper's figures (used when --values is absent) */
static const struct {
    const char *key, *values;
} DEFAULTS[] = {
    {"quant.msb_bits", "1,2,3,4,5,6,7,8"},          {"reram.dac_bits", "2,3,4,5,6,8"},
    {"reram.d2d_sigma", "0,0.02,0.05,0.1,0.2"},     {"reram.c2c_sigma", "0,0.02,0.05,0.1,0.2"},
    {"reram.cmp_offset_sigma", "0,0.0001,0.0003,0.001,0.003"},
    {"reram.onoff_ratio", "0,1000,100,30,10"},      {"reram.stuck_at_0", "0,0.001,0.01,0.05"},
    {"reram.stuck_at_1", "0,0.001,0.01,0.05"},      {"sprint.margin_sigma", "0,1,2,3,4,6"},
    {"chip.buffer_kb_s", "4,8,16,32,64"},           {"controller.lookahead", "0,1,2,4,8,16"},
    {"memory.channels", "1,2,4,8"},                 {"chip.corelets_s", "1,2,4,8"},
};
#define NDEFAULTS (int)(sizeof DEFAULTS / sizeof DEFAULTS[0])

/* The default value lists with each key's unit, for --help. */
static const char *default_lists(void) {
    static char buf[4096];
    size_t len = 0, nk;
    const sp_config_key *keys = sp_config_keys(&nk);
    for (int d = 0; d < NDEFAULTS; d++) {
        const char *unit = "-";
        for (size_t k = 0; k < nk; k++) {
            char name[96];
            snprintf(name, sizeof name, "%s.%s", keys[k].section, keys[k].name);
            if (!strcmp(name, DEFAULTS[d].key)) unit = keys[k].unit;
        }
        len += (size_t)snprintf(buf + len, sizeof buf - len, "                       %-24s %s (%s)\n", DEFAULTS[d].key,
                                DEFAULTS[d].values, unit);
        if (len >= sizeof buf) break;
    }
    return buf;
}

static void help(void) {
    printf("usage: sprint sweep --param KEY [--values LIST] [--param KEY2 [--values LIST2]]...\n"
           "                    [--attention MODES] [--workload NAME] [--size S|M|L] [--measure accuracy,sim]\n"
           "                    [--each] [--max-points N] [--out DIR] [--jobs N] [--shard I/N] [--list] [--point K] [--calibrate base|point]\n"
           "                    [--model M] [--tokenizer T] [--text F] [common options]\n\n"
           "Runs every point of the grid (the product of the --param values, times the --attention modes) as\n"
           "an independent process, in parallel, and prints one row per point with every config key that\n"
           "differs from the defaults, then what was measured:\n"
           "  accuracy  the functional model on the real model and text: NLL (nats/token), NLL change vs\n"
           "            dense (fraction), kept and mem-kept fractions, false-prune rate (thresholds calibrated\n"
           "            once at the base configuration and held fixed, unless --calibrate point)\n"
           "  sim       the simulator on --workload at --size: SPRINT cycles, energy (pJ), main-memory bytes\n"
           "            read, the same for the paper's baseline, speedup, energy and traffic reduction\n"
           "Finished points are written atomically to DIR/points/; a restart with the same arguments skips\n"
           "them, so a killed sweep resumes with no point lost or duplicated. When every point is present,\n"
           "DIR/results.csv and DIR/results.json hold the rows (JSON keys = CSV columns).\n\n"
           "  --param KEY        config key to sweep (section.key, or key alone when unique; repeatable: a grid)\n"
           "  --values LIST      comma-separated values of the preceding --param; default lists:\n"
           "%s"
           "  --each             one --param at a time around the base configuration instead of the grid\n"
           "  --max-points N     refuse grids larger than N points (default 1000)\n"
           "  --attention MODES  accuracy: comma-separated modes (default sprint; pruning, sprint-norecompute);\n"
           "                     with sim too, the simulator's masks come from the same mode (workload.mode)\n"
           "  --workload NAME    sim: a preset (%s) or 'real' (the real model's traces)\n"
           "  --size S|M|L       sim: chip size reported (default S)\n"
           "  --measure LIST     accuracy, sim or both (default: sim when --workload is given, else accuracy)\n"
           "  --out DIR          output directory (default: a temporary one, removed at the end: no resume)\n"
           "  --jobs N           points run at once (default: the number of online cores)\n"
           "  --shard I/N        run only points with index %% N == I (0 <= I < N), e.g. one Slurm array task\n"
           "  --list             print the indices of the points this shard still has to run, one a line\n"
           "  --point K          run point K only (what --jobs spawns; for GNU parallel and mpirun)\n"
           "  --calibrate WHEN   base (default) or point (default when a policy.* key is swept)\n"
           "%s\n%s",
           default_lists(), SP_WORKLOAD_PRESETS, FN_PATH_HELP, CLI_COMMON_HELP);
}

/* ---- files ------------------------------------------------------------------------------ */
static void mkdir_p(cli_common *c, const char *dir) {
    char buf[1200];
    if (strlen(dir) >= sizeof buf) cli_die(c, 2, "directory name too long: %.80s...", dir);
    memcpy(buf, dir, strlen(dir) + 1);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) cli_die(c, 1, "cannot create directory %s: %s", buf, strerror(errno));
            *p = '/';
        }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) cli_die(c, 1, "cannot create directory %s: %s", buf, strerror(errno));
}

/* Writes text to path atomically: a temp file in the same directory, fsync, rename. Returns 0
 * on success. */
static int write_atomic(const char *path, const char *text) {
    char tmp[1200];
    const char *slash = strrchr(path, '/');
    int dl = slash ? (int)(slash - path + 1) : 0;
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    snprintf(tmp, sizeof tmp, "%.*s.%s.tmp.%s.%ld", dl, path, slash ? slash + 1 : path, host, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) return -1;
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w <= 0) {
            close(fd);
            unlink(tmp);
            return -1;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void point_path(const plan *p, long k, char *buf, size_t n) { snprintf(buf, n, "%s/points/p%06ld.json", p->out, k); }

/* ---- the grid ------------------------------------------------------------------------------ */
/* Point k's configuration (base + its assignments) and attention mode (NULL without accuracy). */
static void point_config(cli_common *c, const plan *p, long k, sp_config *cfg, const char **mode) {
    *cfg = c->cfg;
    long r = k;
    *mode = NULL;
    if (p->nm) {
        *mode = p->modes[r % p->nm];
        r /= p->nm;
    }
    sp_error err = {0};
    if (p->each) { /* the values of axis 0, then of axis 1, ... each alone on the base */
        for (int a = 0; a < p->nax; a++) {
            const axis *x = &p->ax[a];
            if (r >= x->nv) {
                r -= x->nv;
                continue;
            }
            size_t nk;
            const sp_config_key *kk = &sp_config_keys(&nk)[x->key];
            if (sp_config_set_value(cfg, kk->section, kk->name, x->vals[r], "--values", &err) != SP_OK) cli_die_err(c, &err);
            return;
        }
        SP_ASSERT(0);
    }
    for (int a = p->nax - 1; a >= 0; a--) {
        const axis *x = &p->ax[a];
        const char *v = x->vals[r % x->nv];
        r /= x->nv;
        size_t nk;
        const sp_config_key *kk = &sp_config_keys(&nk)[x->key];
        if (sp_config_set_value(cfg, kk->section, kk->name, v, "--values", &err) != SP_OK) cli_die_err(c, &err);
    }
}

/* The keys of cfg that differ from the defaults (run.threads excluded: results do not depend
 * on it), as a JSON object of value texts. */
static cJSON *diff_keys(const sp_config *cfg) {
    sp_config def;
    sp_config_defaults(&def);
    size_t nk;
    const sp_config_key *keys = sp_config_keys(&nk);
    cJSON *o = cJSON_CreateObject();
    for (size_t k = 0; k < nk; k++) {
        if (!strcmp(keys[k].section, "run") && !strcmp(keys[k].name, "threads")) continue;
        char a[300], b[300], name[96];
        sp_config_value_text(cfg, &keys[k], a, sizeof a);
        sp_config_value_text(&def, &keys[k], b, sizeof b);
        if (strcmp(a, b)) {
            snprintf(name, sizeof name, "%s.%s", keys[k].section, keys[k].name);
            cJSON_AddStringToObject(o, name, a);
        }
    }
    return o;
}

/* What identifies the sweep: the grid, what is measured and the base configuration. A
 * directory holding another sweep's points is refused instead of mixed. */
static char *signature(cli_common *c, const plan *p) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) cli_die(c, 1, "out of memory");
    fprintf(f, "# sprint sweep plan (written by sprint sweep; a restart must match it)\n");
    for (int a = 0; a < p->nax; a++) {
        fprintf(f, "# param %s =", p->ax[a].name);
        for (int v = 0; v < p->ax[a].nv; v++) fprintf(f, "%s%s", v ? "," : " ", p->ax[a].vals[v]);
        fputc('\n', f);
    }
    if (p->nm) {
        fprintf(f, "# attention =");
        for (int m = 0; m < p->nm; m++) fprintf(f, "%s%s", m ? "," : " ", p->modes[m]);
        fputc('\n', f);
    }
    fprintf(f, "# measure accuracy=%d sim=%d workload=%s size=%s calibrate=%s %s points=%ld\n", p->acc, p->sim,
            p->sim ? p->workload : "-", sp_size_name(p->size), p->cal_point ? "point" : "base", p->each ? "each" : "grid",
            p->npoints);
    sp_config base = c->cfg;
    base.run_threads = 0;
    sp_config_dump(&base, f);
    fclose(f);
    return buf;
}

/* ---- measurements ---------------------------------------------------------------------- */
static int needs_calibration(const sp_config *cfg) {
    int relative = !strcmp(cfg->policy_kind, "oracle") || !strcmp(cfg->policy_kind, "onchip");
    return strcmp(cfg->policy_kind, "topk") && !cfg->policy_file[0] && !(relative && cfg->policy_delta >= 0);
}

static uint64_t hash_str(uint64_t h, const char *s) {
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Dense NLL of the session's corpus, cached in OUT/dense-<hash>.txt (it depends only on the
 * model, tokenizer, text and eval keys). */
static double dense_nll(cli_common *c, const plan *p, fn_session *s) {
    char key[1200], path[1300];
    snprintf(key, sizeof key, "%s|%s|%s|%ld|%ld", c->cfg.model_checkpoint, c->cfg.model_tokenizer, c->cfg.eval_text,
             c->cfg.eval_max_stories, c->cfg.eval_window);
    snprintf(path, sizeof path, "%s/dense-%016llx.txt", p->out, (unsigned long long)hash_str(14695981039346656037ull, key));
    FILE *f = fopen(path, "r");
    double nll = 0;
    if (f) {
        int ok = fscanf(f, "%lf", &nll) == 1 && nll > 0;
        fclose(f);
        if (ok) return nll;
    }
    sp_op_request dreq = {.mode = "dense", .cfg = &c->cfg};
    sp_attn_op *op = NULL;
    sp_error err = {0};
    if (sp_attn_op_create(&dreq, s->info->n_layers, s->info->n_heads, &op, &err) != SP_OK) cli_die_err(c, &err);
    fn_row r;
    memset(&r, 0, sizeof r);
    fn_eval(c, s, op, 0, &r);
    sp_attn_op_free(op);
    char txt[64];
    snprintf(txt, sizeof txt, "%.17g\n", r.nll);
    if (write_atomic(path, txt) != 0) cli_die(c, 1, "cannot write %s: %s", path, strerror(errno));
    return r.nll;
}

/* Thresholds calibrated once at the base configuration: OUT/thresholds.txt (written
 * atomically by whichever process gets there first; every process computes the same). */
static void base_thresholds_path(const plan *p, char *buf, size_t n) { snprintf(buf, n, "%s/thresholds.txt", p->out); }

static sp_thresholds *base_thresholds(cli_common *c, const plan *p, const sp_config *base, fn_session *s) {
    if (p->cal_point || !needs_calibration(base)) return NULL;
    char path[1100];
    base_thresholds_path(p, path, sizeof path);
    sp_thresholds *t = NULL;
    sp_error err = {0};
    if (file_exists(path)) {
        if (sp_thresholds_load(path, &t, &err) != SP_OK) cli_die_err(c, &err);
        return t;
    }
    sp_config cfg = *base;
    sp_op_request creq = {.mode = "sprint", .cfg = &cfg, .model = s->model, .calib = &s->calib,
                          .progress = cli_progress, .progress_user = c};
    if (sp_calibrate(&creq, &t, &err) != SP_OK) cli_die_err(c, &err);
    cli_progress_done();
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (sp_thresholds_save(t, tmp, &err) != SP_OK) cli_die_err(c, &err);
    if (rename(tmp, path) != 0) cli_die(c, 1, "cannot write %s: %s", path, strerror(errno));
    return t;
}

static void add_accuracy(cli_common *c, const plan *p, const sp_config *base, const char *mode, cJSON *m) {
    fn_session s;
    sp_config pcfg = c->cfg;
    c->cfg = *base; /* thresholds and the dense reference at the base configuration */
    /* when thresholds are calibrated: on the first half of the stories, evaluate the second (issue 8) */
    fn_session_load(c, &s, needs_calibration(base) || p->cal_point);
    sp_thresholds *t = base_thresholds(c, p, base, &s);
    /* the paths as resolved (shared directory) for the point too */
    memcpy(pcfg.model_checkpoint, c->cfg.model_checkpoint, sizeof pcfg.model_checkpoint);
    memcpy(pcfg.model_tokenizer, c->cfg.model_tokenizer, sizeof pcfg.model_tokenizer);
    memcpy(pcfg.eval_text, c->cfg.eval_text, sizeof pcfg.eval_text);
    c->cfg = pcfg;
    double nll_dense = dense_nll(c, p, &s);
    sp_op_request req = {.mode = mode, .cfg = &c->cfg, .model = s.model, .calib = &s.calib, .thresholds = t};
    sp_attn_op *op = NULL;
    sp_error err = {0};
    if (sp_attn_op_create(&req, s.info->n_layers, s.info->n_heads, &op, &err) != SP_OK) cli_die_err(c, &err);
    fn_row r;
    memset(&r, 0, sizeof r);
    fn_eval(c, &s, op, nll_dense, &r);
    sp_attn_op_free(op);
    cJSON_AddNumberToObject(m, "nll_nats_per_token", r.nll);
    cJSON_AddNumberToObject(m, "nll_dense_nats_per_token", nll_dense);
    cJSON_AddNumberToObject(m, "nll_change_fraction", r.dnll);
    cJSON_AddNumberToObject(m, "kept_fraction", r.kept);
    cJSON_AddNumberToObject(m, "mem_kept_fraction", r.mem_kept);
    cJSON_AddNumberToObject(m, "false_prune_rate", r.fpr);
    cJSON_AddNumberToObject(m, "new_fetch_fraction", r.nff);
    if (t) cJSON_AddNumberToObject(m, "policy_delta_nats", t->delta);
    sp_thresholds_free(t);
    fn_session_free(&s);
}

static void add_sim(cli_common *c, const plan *p, const char *mode, cJSON *m) {
    sp_config cfg = c->cfg;
    /* with accuracy in the same row, the simulator's masks come from the same mode */
    if (mode) snprintf(cfg.workload_mode, sizeof cfg.workload_mode, "%s", mode);
    snprintf(cfg.chip_sizes, sizeof cfg.chip_sizes, "%s", sp_size_name(p->size));
    sp_error err = {0};
    sp_wl_result res;
    memset(&res, 0, sizeof res);
    sp_sim_opts o = {.threads = (int)cfg.run_threads, .progress = cli_progress, .progress_user = c};
    if (!strcmp(p->workload, "real")) {
        sp_config save = c->cfg;
        c->cfg = cfg;
        fn_session s;
        fn_session_load(c, &s, 0); /* the model; the stories are sprint run's (below) */
        cfg = c->cfg;
        c->cfg = save;
        /* masks and cost of the stories sprint run traces at this point (cli_trace_corpora, as
         * if no base thresholds were given): with the base configuration's thresholds (below;
         * calibrated on the first half's policy.calib_stories, so held out) or calibrated on
         * the held-out stories as sprint run does */
        sp_tokenizer *tok = NULL;
        sp_corpus cal, tr;
        if (sp_tokenizer_load(cfg.model_tokenizer, s.info->vocab_size, &tok, &err) != SP_OK ||
            cli_trace_corpora(c, &cfg, tok, &cal, &tr, &err) != SP_OK)
            cli_die_err(c, &err);
        sp_tokenizer_free(tok);
        char thr[1100];
        base_thresholds_path(p, thr, sizeof thr);
        if (!p->cal_point && needs_calibration(&cfg) && file_exists(thr))
        {
            if (strlen(thr) >= sizeof cfg.policy_file) cli_die(c, 2, "--out path too long for policy.file: %s", thr);
            memcpy(cfg.policy_file, thr, strlen(thr) + 1);
        }
        o.calib = cal.n ? &cal : NULL;
        if (sp_sim_run_model(&cfg, s.model, &tr, &o, &res, &err) != SP_OK) cli_die_err(c, &err);
        sp_corpus_free(&cal);
        sp_corpus_free(&tr);
        fn_session_free(&s);
    } else {
        sp_workload wl;
        if (sp_workload_preset(&cfg, p->workload, &wl, &err) != SP_OK) cli_die_err(c, &err);
        if (sp_sim_run_synthetic(&cfg, &wl, &o, &res, &err) != SP_OK) cli_die_err(c, &err);
    }
    cli_progress_done();
    const sp_design_result *r = &res.r[p->size][SP_DESIGN_SPRINT], *b = &res.r[p->size][SP_DESIGN_BASELINE];
    sp_ratios x = sp_result_ratios(&res, p->size, SP_DESIGN_SPRINT, 0);
    cJSON_AddStringToObject(m, "workload", res.wl.name);
    cJSON_AddStringToObject(m, "size", sp_size_name(p->size));
    cJSON_AddNumberToObject(m, "cycles", r->cycles);
    cJSON_AddNumberToObject(m, "energy_pj", r->energy_pj_total);
    cJSON_AddNumberToObject(m, "bytes_read", r->bytes_read);
    cJSON_AddNumberToObject(m, "prune_energy_pj", r->energy_pj[SP_E_PRUNE]);
    cJSON_AddNumberToObject(m, "thresholding_busy_cycles", r->busy_thr);
    cJSON_AddNumberToObject(m, "baseline_cycles", b->cycles);
    cJSON_AddNumberToObject(m, "baseline_energy_pj", b->energy_pj_total);
    cJSON_AddNumberToObject(m, "baseline_bytes_read", b->bytes_read);
    cJSON_AddNumberToObject(m, "speedup", x.speedup);
    cJSON_AddNumberToObject(m, "energy_reduction", x.energy_reduction);
    cJSON_AddNumberToObject(m, "traffic_reduction_fraction", x.traffic_reduction);
    double vis = res.stats.pairs_visible;
    cJSON_AddNumberToObject(m, "sim_kept_fraction", vis > 0 ? res.stats.pairs_kept / vis : 0);
    cJSON_AddNumberToObject(m, "sim_mem_kept_fraction", vis > 0 ? res.stats.pairs_mem_kept / vis : 0);
}

/* Runs point k and writes OUT/points/pK.json atomically. */
static void run_point(cli_common *c, const plan *p, long k) {
    char path[1100];
    point_path(p, k, path, sizeof path);
    if (file_exists(path)) return;
    sp_config base = c->cfg, cfg;
    const char *mode;
    point_config(c, p, k, &cfg, &mode);
    double t0 = sp_now_seconds();
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "point", (double)k);
    cJSON_AddItemToObject(o, "config", diff_keys(&cfg));
    if (mode) cJSON_AddStringToObject(o, "attention", mode);
    cJSON *m = cJSON_AddObjectToObject(o, "metrics");
    c->cfg = cfg;
    if (p->acc) add_accuracy(c, p, &base, mode, m);
    if (p->sim) add_sim(c, p, mode, m);
    cJSON_AddNumberToObject(m, "seconds", sp_now_seconds() - t0);
    c->cfg = base;
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    size_t n = strlen(txt);
    char *line = malloc(n + 2);
    memcpy(line, txt, n);
    line[n] = '\n';
    line[n + 1] = 0;
    cJSON_free(txt);
    if (write_atomic(path, line) != 0) cli_die(c, 1, "cannot write %s: %s", path, strerror(errno));
    free(line);
}

/* ---- collecting the rows --------------------------------------------------------------- */
static cJSON *load_point(const plan *p, long k) {
    char path[1100];
    point_path(p, k, path, sizeof path);
    char *txt = NULL;
    size_t len = 0;
    sp_error err = {0};
    if (sp_read_file(path, &txt, &len, &err) != SP_OK) return NULL;
    cJSON *o = cJSON_Parse(txt);
    free(txt);
    return o;
}

static void csv_field(FILE *f, const cJSON *v) {
    if (cJSON_IsNumber(v)) fprintf(f, "%.10g", v->valuedouble);
    else if (cJSON_IsString(v)) {
        if (strpbrk(v->valuestring, ",\"\n")) {
            fputc('"', f);
            for (const char *s = v->valuestring; *s; s++) {
                if (*s == '"') fputc('"', f);
                fputc(*s, f);
            }
            fputc('"', f);
        } else {
            fputs(v->valuestring, f);
        }
    }
}

/* A config value text as a JSON number when it is one, else a string. */
static cJSON *value_item(const char *text) {
    char *end;
    double x = strtod(text, &end);
    if (*text && !*end && end != text) return cJSON_CreateNumber(x);
    return cJSON_CreateString(text);
}

/* Every point present: builds the rows (columns: point, the union of differing keys in table
 * order, attention, metrics in their order), writes OUT/results.csv and .json atomically,
 * prints the table or JSON and writes --csv. */
static void collect(cli_common *c, const plan *p) {
    size_t nk;
    const sp_config_key *keys = sp_config_keys(&nk);
    unsigned char used[512] = {0};
    cJSON **pts = calloc((size_t)p->npoints, sizeof *pts);
    for (long k = 0; k < p->npoints; k++) {
        pts[k] = load_point(p, k);
        if (!pts[k]) cli_die(c, 1, "%s/points: point %ld is missing or unreadable; run the sweep again to redo it", p->out, k);
        const cJSON *cf = cJSON_GetObjectItemCaseSensitive(pts[k], "config");
        for (size_t i = 0; i < nk && i < 512; i++) {
            char name[96];
            snprintf(name, sizeof name, "%s.%s", keys[i].section, keys[i].name);
            if (cJSON_GetObjectItemCaseSensitive(cf, name)) used[i] = 1;
        }
    }
    sp_config def;
    sp_config_defaults(&def);
    cJSON *rows = cJSON_CreateArray();
    for (long k = 0; k < p->npoints; k++) {
        cJSON *row = cJSON_CreateObject();
        cJSON_AddNumberToObject(row, "point", (double)k);
        const cJSON *cf = cJSON_GetObjectItemCaseSensitive(pts[k], "config");
        for (size_t i = 0; i < nk && i < 512; i++) {
            if (!used[i]) continue;
            char name[96], dv[300];
            snprintf(name, sizeof name, "%s.%s", keys[i].section, keys[i].name);
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(cf, name);
            sp_config_value_text(&def, &keys[i], dv, sizeof dv);
            cJSON_AddItemToObject(row, name, value_item(cJSON_IsString(v) ? v->valuestring : dv));
        }
        const cJSON *mode = cJSON_GetObjectItemCaseSensitive(pts[k], "attention");
        if (cJSON_IsString(mode)) cJSON_AddStringToObject(row, "attention", mode->valuestring);
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(pts[k], "metrics"), *it;
        cJSON_ArrayForEach(it, m) cJSON_AddItemToObject(row, it->string, cJSON_Duplicate(it, 1));
        cJSON_AddItemToArray(rows, row);
        cJSON_Delete(pts[k]);
    }
    free(pts);
    /* CSV: the columns of the first row (every row has the same ones) */
    char *csv = NULL;
    size_t csvlen = 0;
    FILE *f = open_memstream(&csv, &csvlen);
    const cJSON *first = cJSON_GetArrayItem(rows, 0), *row, *col;
    cJSON_ArrayForEach(col, first) fprintf(f, "%s%s", col == first->child ? "" : ",", col->string);
    fputc('\n', f);
    cJSON_ArrayForEach(row, rows) {
        cJSON_ArrayForEach(col, first) {
            if (col != first->child) fputc(',', f);
            csv_field(f, cJSON_GetObjectItemCaseSensitive(row, col->string));
        }
        fputc('\n', f);
    }
    fclose(f);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "command", "sweep");
    cJSON_AddNumberToObject(doc, "points", (double)p->npoints);
    cJSON_AddItemToObject(doc, "rows", rows);
    char *json = cJSON_PrintUnformatted(doc);
    char path[1100];
    snprintf(path, sizeof path, "%s/results.csv", p->out);
    if (write_atomic(path, csv) != 0) cli_die(c, 1, "cannot write %s: %s", path, strerror(errno));
    snprintf(path, sizeof path, "%s/results.json", p->out);
    size_t jl = strlen(json);
    char *jline = malloc(jl + 2);
    memcpy(jline, json, jl);
    memcpy(jline + jl, "\n", 2);
    if (write_atomic(path, jline) != 0) cli_die(c, 1, "cannot write %s: %s", path, strerror(errno));
    if (c->csv_path && write_atomic(c->csv_path, csv) != 0) cli_die(c, 1, "cannot write %s: %s", c->csv_path, strerror(errno));
    if (c->json) {
        fputs(jline, stdout);
    } else {
        /* aligned text table: every column, widths from the content */
        int ncol = cJSON_GetArraySize(first), w[128] = {0}, ci = 0;
        cJSON_ArrayForEach(col, first) { if (ci < 128) w[ci++] = (int)strlen(col->string); }
        char cell[128];
        cJSON_ArrayForEach(row, rows) {
            ci = 0;
            cJSON_ArrayForEach(col, row) {
                if (cJSON_IsNumber(col)) snprintf(cell, sizeof cell, "%.6g", col->valuedouble);
                else snprintf(cell, sizeof cell, "%s", cJSON_IsString(col) ? col->valuestring : "");
                if (ci < 128 && (int)strlen(cell) > w[ci]) w[ci] = (int)strlen(cell);
                ci++;
            }
        }
        printf("sprint sweep: %ld points in %s (units: nats/token, fractions, core cycles, pJ, bytes, s)\n",
               p->npoints, p->temp ? "a temporary directory (--out DIR keeps them)" : p->out);
        ci = 0;
        cJSON_ArrayForEach(col, first) {
            printf("%-*s%s", ci < 128 ? w[ci] : 8, col->string, ci + 1 < ncol ? " " : "\n");
            ci++;
        }
        cJSON_ArrayForEach(row, rows) {
            ci = 0;
            cJSON_ArrayForEach(col, row) {
                if (cJSON_IsNumber(col)) snprintf(cell, sizeof cell, "%.6g", col->valuedouble);
                else snprintf(cell, sizeof cell, "%s", cJSON_IsString(col) ? col->valuestring : "");
                printf("%-*s%s", ci < 128 ? w[ci] : 8, cell, ci + 1 < ncol ? " " : "\n");
                ci++;
            }
        }
    }
    free(jline);
    cJSON_free(json);
    cJSON_Delete(doc);
    free(csv);
    /* temp files of killed points are garbage once the sweep is complete */
    char pdir[1100];
    snprintf(pdir, sizeof pdir, "%s/points", p->out);
    DIR *d = opendir(pdir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] == '.' && strstr(e->d_name, ".tmp.")) {
            char q[1400];
            snprintf(q, sizeof q, "%s/%s", pdir, e->d_name);
            unlink(q);
        }
    if (d) closedir(d);
}

/* ---- running points as processes --------------------------------------------------------- */
static int online_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Spawns `sprint sweep <args> --point K --out DIR --quiet [--threads T]` with stderr to
 * OUT/points/pK.log; the child dies with this process (PR_SET_PDEATHSIG), so a killed sweep
 * leaves no orphan. */
static pid_t spawn_point(cli_common *c, const plan *p, int argc, char **argv, long k, int threads) {
    char kbuf[32], tbuf[32], log[1100];
    snprintf(kbuf, sizeof kbuf, "%ld", k);
    snprintf(tbuf, sizeof tbuf, "%d", threads);
    snprintf(log, sizeof log, "%s/points/p%06ld.log", p->out, k);
    char **av = calloc((size_t)argc + 12, sizeof *av);
    int n = 0;
    av[n++] = "sprint";
    for (int i = 0; i < argc; i++) av[n++] = argv[i];
    av[n++] = "--point";
    av[n++] = kbuf;
    av[n++] = "--out";
    av[n++] = (char *)p->out;
    av[n++] = "--quiet";
    if (threads > 0) {
        av[n++] = "--threads";
        av[n++] = tbuf;
    }
    av[n] = NULL;
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) cli_die(c, 1, "fork failed: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        int nul = open("/dev/null", O_WRONLY);
        if (nul >= 0) dup2(nul, 1);
        execv("/proc/self/exe", av);
        fprintf(stderr, "cannot run /proc/self/exe: %s\n", strerror(errno));
        _exit(127);
    }
    free(av);
    return pid;
}

static void print_log_tail(const char *log) {
    FILE *f = fopen(log, "r");
    if (!f) return;
    char line[1024], last[4][1024] = {{0}};
    int n = 0;
    while (fgets(line, sizeof line, f)) snprintf(last[n++ % 4], sizeof last[0], "%s", line);
    fclose(f);
    for (int i = n > 4 ? n - 4 : 0; i < n; i++) fprintf(stderr, "    %s", last[i % 4]);
}

/* ---- main -------------------------------------------------------------------------------- */
static int remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char q[2048];
        snprintf(q, sizeof q, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(q, &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(q);
        else unlink(q);
    }
    closedir(d);
    return rmdir(dir);
}

static void split_values(cli_common *c, axis *x, char *list) {
    /* every entry is kept or refused: an empty entry or list is a usage error, never skipped */
    x->nv = 0;
    int idx = 0;
    for (char *t = list; t; idx++) {
        char *comma = strchr(t, ',');
        if (comma) *comma = 0;
        while (*t == ' ') t++;
        if (!*t) cli_die(c, 2, "--values for %s: empty entry %d", x->name, idx + 1);
        if (x->nv >= MAX_VALUES) cli_die(c, 2, "--values: at most %d values per --param", MAX_VALUES);
        x->vals[x->nv++] = t;
        t = comma ? comma + 1 : NULL;
    }
}

int cmd_sweep(int argc, char **argv) {
    cli_common c;
    cli_init(&c, "sweep");
    plan p;
    memset(&p, 0, sizeof p);
    const char *values[MAX_AXES] = {0}, *measure = NULL, *shard = NULL, *cal = NULL, *size = "S";
    char modes_buf[256];
    const char *modes_text = "sprint";
    int jobs = 0, list = 0, modes_given = 0, threads_given = 0;
    long max_points = 1000;
    long point = -1;
    char *tmpdir = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--threads")) threads_given = 1;
        if (fn_shared_option(&c, argc, argv, &i, help)) continue;
        if (!strcmp(a, "--param")) {
            if (p.nax >= MAX_AXES) cli_die(&c, 2, "at most %d --param options", MAX_AXES);
            const char *name = cli_value(&c, argc, argv, &i);
            axis *x = &p.ax[p.nax++];
            x->key = cli_config_key(&c, name, "--param");
            size_t nk;
            const sp_config_key *k = &sp_config_keys(&nk)[x->key];
            snprintf(x->name, sizeof x->name, "%s.%s", k->section, k->name);
            for (int j = 0; j < p.nax - 1; j++)
                if (p.ax[j].key == x->key) cli_die(&c, 2, "--param %s given twice", x->name);
        } else if (!strcmp(a, "--values")) {
            const char *v = cli_value(&c, argc, argv, &i);
            if (!p.nax) cli_die(&c, 2, "--values must follow the --param it belongs to");
            if (values[p.nax - 1]) cli_die(&c, 2, "two --values for --param %s", p.ax[p.nax - 1].name);
            values[p.nax - 1] = v;
        } else if (!strcmp(a, "--attention")) {
            modes_text = cli_value(&c, argc, argv, &i);
            modes_given = 1;
        } else if (!strcmp(a, "--workload")) {
            snprintf(p.workload, sizeof p.workload, "%s", cli_value(&c, argc, argv, &i));
        } else if (!strcmp(a, "--size")) {
            size = cli_value(&c, argc, argv, &i);
        } else if (!strcmp(a, "--measure")) {
            measure = cli_value(&c, argc, argv, &i);
        } else if (!strcmp(a, "--out")) {
            p.out = cli_value(&c, argc, argv, &i);
        } else if (!strcmp(a, "--jobs")) {
            const char *v = cli_value(&c, argc, argv, &i);
            char *end;
            long n = strtol(v, &end, 10);
            if (end == v || *end || n < 1 || n > 1024) cli_die(&c, 2, "--jobs: expected a whole number 1..1024, got '%s'", v);
            jobs = (int)n;
        } else if (!strcmp(a, "--shard")) {
            shard = cli_value(&c, argc, argv, &i);
        } else if (!strcmp(a, "--max-points")) {
            const char *v = cli_value(&c, argc, argv, &i);
            char *end;
            max_points = strtol(v, &end, 10);
            if (end == v || *end || max_points < 1) cli_die(&c, 2, "--max-points: expected a whole number >= 1, got '%s'", v);
        } else if (!strcmp(a, "--each")) {
            p.each = 1;
        } else if (!strcmp(a, "--list")) {
            list = 1;
        } else if (!strcmp(a, "--point")) {
            const char *v = cli_value(&c, argc, argv, &i);
            char *end;
            point = strtol(v, &end, 10);
            if (end == v || *end || point < 0) cli_die(&c, 2, "--point: expected a point index >= 0, got '%s'", v);
        } else if (!strcmp(a, "--calibrate")) {
            cal = cli_value(&c, argc, argv, &i);
        } else {
            fn_unknown_option(&c, a);
        }
    }
    if (!p.nax) cli_die(&c, 2, "give at least one --param KEY (see sprint sweep --help)");
    cli_finish(&c);
    /* values of each axis, checked against the key's type and range before any work */
    static char vbuf[MAX_AXES][1024];
    sp_error err = {0};
    p.npoints = p.each ? 0 : 1;
    for (int a = 0; a < p.nax; a++) {
        axis *x = &p.ax[a];
        const char *v = values[a];
        for (int d = 0; d < NDEFAULTS && !v; d++)
            if (!strcmp(DEFAULTS[d].key, x->name)) v = DEFAULTS[d].values;
        if (!v) cli_die(&c, 2, "--param %s needs --values (no default list for it)", x->name);
        if (strlen(v) >= sizeof vbuf[a]) cli_die(&c, 2, "--values for %s: list longer than %zu bytes", x->name, sizeof vbuf[a] - 1);
        snprintf(vbuf[a], sizeof vbuf[a], "%s", v);
        split_values(&c, x, vbuf[a]);
        size_t nk;
        const sp_config_key *k = &sp_config_keys(&nk)[x->key];
        for (int j = 0; j < x->nv; j++) {
            sp_config tmp = c.cfg;
            if (sp_config_set_value(&tmp, k->section, k->name, x->vals[j], "--values", &err) != SP_OK)
                cli_die(&c, 2, "%s", err.msg); /* a bad value is a usage error (exit 2), as for --set */
        }
        p.npoints = p.each ? p.npoints + x->nv : p.npoints * x->nv;
        if (!strcmp(k->section, "policy") && !cal) cal = "point";
    }
    /* what is measured */
    if (measure) {
        char mb[64];
        snprintf(mb, sizeof mb, "%s", measure);
        for (char *save = NULL, *t = strtok_r(mb, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (!strcmp(t, "accuracy")) p.acc = 1;
            else if (!strcmp(t, "sim")) p.sim = 1;
            else cli_die(&c, 2, "--measure: expected accuracy, sim or accuracy,sim, got '%s'", t);
        }
    } else {
        p.sim = p.workload[0] != 0;
        p.acc = !p.sim;
    }
    if (p.sim && !p.workload[0]) snprintf(p.workload, sizeof p.workload, "BERT-B");
    if (!p.sim && p.workload[0]) cli_die(&c, 2, "--workload is for --measure sim");
    if (p.sim && strcmp(p.workload, "real")) {
        sp_workload wl;
        if (sp_workload_preset(&c.cfg, p.workload, &wl, &err) != SP_OK) cli_die_err(&c, &err);
    }
    p.size = !strcmp(size, "S") ? 0 : !strcmp(size, "M") ? 1 : !strcmp(size, "L") ? 2 : -1;
    if (p.size < 0) cli_die(&c, 2, "--size: expected S, M or L, got '%s'", size);
    if (cal && strcmp(cal, "base") && strcmp(cal, "point"))
        cli_die(&c, 2, "--calibrate: expected base or point, got '%s'", cal);
    p.cal_point = cal && !strcmp(cal, "point");
    if (p.acc) {
        /* the whole list or a usage error: never cut, no empty entry (cli_list) */
        p.nm = cli_list(&c, "--attention", modes_text, modes_buf, sizeof modes_buf, p.modes, 4);
        for (int m = 0; m < p.nm; m++) {
            const char *t = p.modes[m];
            if (strcmp(t, "pruning") && strcmp(t, "sprint-norecompute") && strcmp(t, "sprint"))
                cli_die(&c, 2, "--attention: unknown mode '%s' (pruning, sprint-norecompute, sprint)%s", t, cli_mode_hint(t));
        }
        p.npoints *= p.nm;
    } else if (modes_given) {
        cli_die(&c, 2, "--attention is for --measure accuracy (the simulator's op is workload.mode)");
    }
    if (p.npoints > max_points)
        cli_die(&c, 2, "the grid has %ld points (the product of the value counts%s); sweep one key at a time with --each, "
                "or allow it with --max-points %ld", p.npoints, p.nm > 1 ? " and modes" : "", p.npoints);
    long shard_i = 0, shard_n = 1;
    if (shard) {
        char *end;
        shard_i = strtol(shard, &end, 10);
        if (end == shard || *end != '/' || (shard_n = strtol(end + 1, &end, 10)) < 1 || *end || shard_i < 0 ||
            shard_i >= shard_n)
            cli_die(&c, 2, "--shard: expected I/N with 0 <= I < N, got '%s'", shard);
    }
    if (point >= p.npoints) cli_die(&c, 2, "--point %ld: the sweep has points 0..%ld", point, p.npoints - 1);

    /* the output directory and its plan */
    if (!p.out) {
        if (point >= 0 || list || shard) cli_die(&c, 2, "--point, --list and --shard need --out DIR (the points are shared through it)");
        const char *td = getenv("TMPDIR");
        char tmpl[1024];
        snprintf(tmpl, sizeof tmpl, "%s/sprint-sweep-XXXXXX", td && *td ? td : "/tmp");
        tmpdir = strdup(tmpl);
        if (!mkdtemp(tmpdir)) cli_die(&c, 1, "cannot create a temporary directory %s: %s", tmpl, strerror(errno));
        p.out = tmpdir;
        p.temp = 1;
    }
    char pdir[1100], planf[1100];
    snprintf(pdir, sizeof pdir, "%s/points", p.out);
    mkdir_p(&c, pdir);
    snprintf(planf, sizeof planf, "%s/sweep.ini", p.out);
    static char *sig, *old; /* static: reachable on an error exit */
    sig = signature(&c, &p);
    {
        old = NULL;
        size_t len = 0;
        if (sp_read_file(planf, &old, &len, &err) == SP_OK) {
            if (strcmp(old, sig))
                cli_die(&c, 2, "%s holds another sweep (its plan %s differs from these arguments): use another --out", p.out,
                        planf);
            free(old);
        } else if (write_atomic(planf, sig) != 0) {
            cli_die(&c, 1, "cannot write %s: %s", planf, strerror(errno));
        }
    }
    free(sig);
    if (point >= 0) {
        run_point(&c, &p, point);
        return 0;
    }
    /* the points this shard still has to run */
    long *todo = malloc(sizeof *todo * (size_t)p.npoints), ntodo = 0, present = 0;
    for (long k = 0; k < p.npoints; k++) {
        char path[1100];
        point_path(&p, k, path, sizeof path);
        int done = file_exists(path);
        present += done;
        if (k % shard_n == shard_i && !done) todo[ntodo++] = k;
    }
    if (list) {
        for (long t = 0; t < ntodo; t++) printf("%ld\n", todo[t]);
        free(todo);
        return 0;
    }
    if (!jobs) jobs = online_cores();
    if (jobs > ntodo && ntodo > 0) jobs = (int)ntodo;
    int threads = 0;
    if (!threads_given) threads = online_cores() / (jobs > 0 ? jobs : 1) > 0 ? online_cores() / (jobs > 0 ? jobs : 1) : 1;
    /* shared artifacts once, before the points: base thresholds and the dense reference */
    if (ntodo && p.acc && (!p.cal_point && needs_calibration(&c.cfg))) {
        char thr[1100];
        base_thresholds_path(&p, thr, sizeof thr);
        if (!file_exists(thr)) {
            progress_stage(&c, "calibrating thresholds at the base configuration");
            fn_session s;
            sp_config base = c.cfg;
            fn_session_load(&c, &s, 1);
            sp_thresholds_free(base_thresholds(&c, &p, &base, &s));
            dense_nll(&c, &p, &s);
            fn_session_free(&s);
            c.cfg = base;
        }
    }
    if (!c.quiet)
        fprintf(stderr, "[sweep] %ld points (%ld already done in %s), %ld to run%s, %d at a time\n", p.npoints, present,
                p.out, ntodo, shard ? " in this shard" : "", jobs);
    pid_t *pids = calloc((size_t)jobs, sizeof *pids);
    long *pk = calloc((size_t)jobs, sizeof *pk);
    long next = 0, finished = 0, failed = 0;
    int running = 0;
    progress_counter pc;
    progress_counter_init(&pc, &c, "points", ntodo);
    while (next < ntodo || running > 0) {
        while (running < jobs && next < ntodo) {
            for (int s = 0; s < jobs; s++)
                if (!pids[s]) {
                    pk[s] = todo[next++];
                    pids[s] = spawn_point(&c, &p, argc, argv, pk[s], threads);
                    running++;
                    break;
                }
        }
        int st;
        pid_t w = waitpid(-1, &st, 0);
        if (w < 0) {
            if (errno == EINTR) continue;
            cli_die(&c, 1, "waitpid: %s", strerror(errno));
        }
        for (int s = 0; s < jobs; s++)
            if (pids[s] == w) {
                char path[1100], log[1100];
                point_path(&p, pk[s], path, sizeof path);
                snprintf(log, sizeof log, "%s/points/p%06ld.log", p.out, pk[s]);
                if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && file_exists(path)) {
                    unlink(log);
                } else {
                    failed++;
                    progress_counter_clear(&pc);
                    fprintf(stderr, "sprint sweep: point %ld failed (%s %d); its messages (%s):\n", pk[s],
                            WIFEXITED(st) ? "exit status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), log);
                    print_log_tail(log);
                }
                pids[s] = 0;
                running--;
                finished++;
                progress_counter_step(&pc, finished);
            }
    }
    progress_counter_clear(&pc);
    free(pids);
    free(pk);
    free(todo);
    if (failed) cli_die(&c, 1, "%ld of %ld points failed (messages above); run the same command again to retry them", failed,
                        ntodo);
    present = 0;
    for (long k = 0; k < p.npoints; k++) {
        char path[1100];
        point_path(&p, k, path, sizeof path);
        present += file_exists(path);
    }
    if (present < p.npoints) {
        if (!c.quiet)
            fprintf(stderr, "[sweep] shard %ld/%ld done; %ld of %ld points present in %s: run without --shard to collect\n",
                    shard_i, shard_n, present, p.npoints, p.out);
        return 0;
    }
    collect(&c, &p);
    if (tmpdir) {
        remove_tree(tmpdir);
        free(tmpdir);
    }
    return 0;
}
