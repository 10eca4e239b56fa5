/* test_cli.c: is the command line consistent (issue 10)? Every option a command's --help
 * lists is accepted by that command; unknown commands and keys get "did you mean"; a --set key
 * without its section works when unique; commands without a table refuse --json/--csv;
 * `run --workload X` runs only X; --seq sets the presets' sequence length. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

static char out[1 << 17], err[1 << 14];

/* The commands `sprint --help` lists. */
static int commands(char names[][32], int max) {
    cr_assert_eq(th_run_sprint("--help", out, sizeof out, err, sizeof err), 0);
    int n = 0;
    const char *p = strstr(out, "commands:");
    cr_assert(p != NULL, "%s", out);
    for (char *line = strchr(p, '\n'); line && n < max; line = strchr(line + 1, '\n')) {
        char name[32];
        if (sscanf(line + 1, "  %31[a-z] ", name) == 1 && line[1] == ' ' && line[2] == ' ') snprintf(names[n++], 32, "%s", name);
        else if (line[1] == '\n' || line[1] == 0) break;
    }
    return n;
}

Test(cli, every_listed_option_is_accepted, .timeout = 300) {
    char names[32][32];
    int nc = commands(names, 32);
    cr_assert(nc >= 9, "only %d commands listed", nc);
    int checked = 0;
    for (int ci = 0; ci < nc; ci++) {
        char args[2048];
        const char *pre = !strcmp(names[ci], "config") ? "config dump" : names[ci];
        snprintf(args, sizeof args, "%s --help", names[ci]);
        cr_assert_eq(th_run_sprint(args, out, sizeof out, err, sizeof err), 0, "%s: %s", args, err);
        /* every --option token in the help */
        char opts[128][40];
        int no = 0;
        for (char *p = strstr(out, "--"); p && no < 128; p = strstr(p + 2, "--")) {
            /* listed options: "  --opt" at the start of a line, or "[--opt" in the usage */
            const char *q = p;
            while (q > out && q[-1] == ' ') q--;
            if (!(q == out || q[-1] == '\n' || (p > out && p[-1] == '['))) continue;
            int len = 2;
            while (len < 39 && (islower((unsigned char)p[len]) || p[len] == '-' || isdigit((unsigned char)p[len]))) len++;
            if (len <= 3) continue;
            char o[40];
            memcpy(o, p, (size_t)len);
            o[len] = 0;
            int dup = 0;
            for (int j = 0; j < no; j++) dup |= !strcmp(opts[j], o);
            if (!dup) snprintf(opts[no++], 40, "%s", o);
        }
        cr_assert(no > 0, "%s --help lists no option", names[ci]);
        for (int j = 0; j < no; j++) {
            if (!strcmp(opts[j], "--help")) continue;
            char unknown[80];
            snprintf(unknown, sizeof unknown, "unknown option '%s'", opts[j]);
            /* with a value "1" then --help: a value option takes "1" and prints the help (or
             * refuses the value), a flag leaves "1" as an unknown argument; neither runs the
             * command. Only an option the parser does not know is named "unknown". */
            snprintf(args, sizeof args, "%s %s 1 --help", pre, opts[j]);
            th_run_sprint(args, out, sizeof out, err, sizeof err);
            int ok = !strstr(err, unknown);
            cr_assert(ok, "sprint %s lists %s but refuses it as unknown: %s", names[ci], opts[j], err);
            checked++;
        }
    }
    cr_assert(checked > 40, "only %d options checked", checked);
}

Test(cli, did_you_mean_and_short_keys) {
    cr_assert_eq(th_run_sprint("swep", out, sizeof out, err, sizeof err), 2);
    cr_assert(strstr(err, "did you mean 'sweep'"), "%s", err);
    cr_assert_eq(th_run_sprint("config dump --set msb_bit=3", out, sizeof out, err, sizeof err), 2);
    cr_assert(strstr(err, "did you mean 'quant.msb_bits'"), "%s", err);
    cr_assert_eq(th_run_sprint("config dump --set msb_bits=3", out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(out, "\nmsb_bits = 3"), "short key not applied");
    cr_assert_eq(th_run_sprint("config dump --set chip.buffer_kb_x=3", out, sizeof out, err, sizeof err), 2);
    cr_assert(strstr(err, "did you mean 'chip.buffer_kb_s'"), "%s", err);
}

Test(cli, modes_and_designs_not_confused) {
    cr_assert_eq(th_run_sprint("compare --modes sprint-noreuse", out, sizeof out, err, sizeof err), 2);
    cr_assert(strstr(err, "simulator design"), "%s", err);
    cr_assert_eq(th_run_sprint("sweep --param msb_bits --values 4 --attention sprint-norecompte", out, sizeof out, err,
                               sizeof err), 2);
    cr_assert(strstr(err, "did you mean 'sprint-norecompute'"), "%s", err);
}

Test(cli, no_silently_ignored_output_options) {
    cr_assert_eq(th_run_sprint("config dump --json", out, sizeof out, err, sizeof err), 2);
    cr_assert(strstr(err, "--json"), "%s", err);
    cr_assert_eq(th_run_sprint("config dump --csv /tmp/x.csv", out, sizeof out, err, sizeof err), 2);
    cr_assert_eq(th_run_sprint("generate --json --steps 2", out, sizeof out, err, sizeof err), 2);
    cr_assert(strstr(err, "--json"), "%s", err);
    /* trace: --json refused, --csv FILE writes the trace (it used to write nothing) */
    cr_assert_eq(th_run_sprint("trace --workload ViT-B --set workload.vit_b_seq=32 --json --quiet", out, sizeof out, err, sizeof err), 2);
    cr_assert(strstr(err, "--json"), "%s", err);
    const char *csv = "/tmp/sp_cli_trace.csv";
    remove(csv);
    char args[256];
    snprintf(args, sizeof args, "trace --workload ViT-B --set workload.vit_b_seq=32 --csv %s --quiet", csv);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, err, sizeof err), 0, "%s", err);
    FILE *f = fopen(csv, "r");
    cr_assert(f != NULL, "trace --csv wrote nothing");
    int lines = 0;
    for (int ch; (ch = fgetc(f)) != EOF;) lines += ch == '\n';
    fclose(f);
    remove(csv);
    cr_assert_eq(lines, 1 + 32, "header + one row per query, got %d lines", lines);
}

Test(cli, run_workload_runs_only_what_it_names, .timeout = 120) {
    cr_assert_eq(th_run_sprint("run --workload ViT-B --sizes S --seq 64 --json --quiet", out, sizeof out, err, sizeof err), 0,
                 "%s", err);
    cr_assert(strstr(out, "\"workload\":\"ViT-B\"") || strstr(out, "\"workload\":\t\"ViT-B\""), "%.300s", out);
    cr_assert(!strstr(out, "stories260K") && !strstr(out, "\"real"), "run --workload ViT-B also ran the real model");
    cr_assert(strstr(out, "\"seq\":\t64") || strstr(out, "\"seq\":64"), "--seq 64 not applied: %.300s", out);
}

/* compare --json and --csv name each quantity the same way (the CSV header = the JSON keys) */
Test(cli, json_keys_are_csv_columns, .timeout = 300) {
    TH_NEED_SHARED(model, "models/stories260K.bin");
    char args[512];
    const char *csv = "/tmp/sp_cli_compare.csv";
    snprintf(args, sizeof args, "compare --policies oracle --modes sprint --set policy.delta=3 --set eval.max_stories=1 "
                                "--json --csv %s --quiet", csv);
    cr_assert_eq(th_run_sprint(args, out, sizeof out, err, sizeof err), 0, "%s", err);
    FILE *f = fopen(csv, "r");
    cr_assert(f != NULL);
    char head[1024];
    cr_assert(fgets(head, sizeof head, f) != NULL);
    fclose(f);
    remove(csv);
    head[strcspn(head, "\n")] = 0;
    const char *sprint_row = strstr(out, "\"mode\":\"sprint\"");
    cr_assert(sprint_row != NULL, "%s", out);
    int n = 0;
    for (char *save = NULL, *col = strtok_r(head, ",", &save); col; col = strtok_r(NULL, ",", &save), n++) {
        char key[80];
        snprintf(key, sizeof key, "\"%s\":", col);
        cr_assert(strstr(sprint_row, key) != NULL, "CSV column %s is not a JSON key: %s", col, sprint_row);
    }
    cr_assert(n >= 12, "%d columns", n);
}
