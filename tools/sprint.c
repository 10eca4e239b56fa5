/* sprint: the command-line tool. Dispatches to one subcommand per file (tools/cmd_*.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "sprint/cpu_attention.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} COMMANDS[] = {
    {"run", cmd_run, "simulate SPRINT and its baselines on the workload suite (the main job)"},
    {"trace", cmd_trace, "write the per-query pruning records that drive the simulator as CSV"},
    {"eval", cmd_eval, "evaluate a model on text with dense or SPRINT attention (NLL, perplexity)"},
    {"calibrate", cmd_calibrate, "learn thresholds for a target kept fraction or loss budget"},
    {"compare", cmd_compare, "compare attention modes x threshold policies on a model in one run"},
    {"sweep", cmd_sweep, "sweep any config keys over a grid in parallel: accuracy and simulator cost per point"},
    {"plot", cmd_plot, "draw a paper figure (Fig. 5, 9, 10, 11, energy) or a sweep from sprint's outputs"},
    {"decode", cmd_decode, "decoding on a growing KV cache: SPRINT functional model, simulator, endurance"},
    {"generate", cmd_generate, "generate text from a model (greedy or sampled), a smoke check"},
    {"config", cmd_config, "dump the effective config, write docs/config.md, or check a file"},
};
#define NCMD (sizeof COMMANDS / sizeof COMMANDS[0])

static void usage(FILE *f) {
    fprintf(f, "usage: sprint <command> [options]   (sprint <command> --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < NCMD; i++) fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].help);
    fprintf(f, "\nsprint %s. Docs: README.md, docs/. Every figure printed carries its unit.\n", SP_VERSION);
}

int main(int argc, char **argv) {
    /* every command's output reaches stdout or the exit status says it did not */
    atexit(cli_check_stdout_at_exit);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("sprint %s (cpu kernels: %s; integer screen: %s)\n", SP_VERSION, sp_cpu_attention_level(),
               sp_cpu_attention_amx() ? "amx-int8" : "simd");
        return 0;
    }
    for (size_t i = 0; i < NCMD; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].fn(argc - 1, argv + 1);
    const char *names[NCMD];
    for (size_t i = 0; i < NCMD; i++) names[i] = COMMANDS[i].name;
    const char *near = cli_closest(argv[1], names, (int)NCMD);
    if (near) {
        fprintf(stderr, "sprint: error: unknown command '%s'; did you mean '%s'?\n", argv[1], near);
        return 2;
    }
    fprintf(stderr, "sprint: error: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
