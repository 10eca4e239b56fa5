/* sprint: the command-line tool. Dispatches to one subcommand per file (tools/cmd_*.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
/* 1 when a sanitizer replaces malloc (its mallopt does nothing and returns 0) */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SP_MALLOC_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define SP_MALLOC_SANITIZED 1
#endif
#endif
#ifndef SP_MALLOC_SANITIZED
#define SP_MALLOC_SANITIZED 0
#endif

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

/* Keeps glibc malloc from handing large buffers back to the kernel between uses. By default
 * glibc serves blocks above a dynamic threshold (128 KiB at start) with their own mmap and
 * unmaps them at free, and trims the heap top above 128 KiB; sprint run allocates and frees
 * buffers of a few hundred KiB to a few MiB per head, layer and design again and again, so
 * every round faulted its pages in afresh (sprint run at 6c4dac2: ~50k minor page faults and
 * 0.14-0.26 s of system time). With blocks up to 32 MiB (glibc's largest allowed mmap
 * threshold on 64-bit) served from the heap and the heap trimmed only above 1 GiB of free top,
 * freed pages are reused (~12.5k faults, 0.03-0.12 s; docs/RESULTS.md part 9x). Only where
 * memory is placed changes, never a result. Returns 0 when
 * both settings took (or the C library is not glibc, or a sanitizer owns malloc and ignores
 * mallopt), else -1. */
static int tune_malloc(void) {
#if defined(__GLIBC__) && !SP_MALLOC_SANITIZED
    int ok = mallopt(M_MMAP_THRESHOLD, 32 << 20); /* bytes; mallopt returns 1 on success, 0 on error */
    ok &= mallopt(M_TRIM_THRESHOLD, 1 << 30);     /* bytes */
    return ok == 1 ? 0 : -1;
#else
    return 0;
#endif
}

int main(int argc, char **argv) {
    /* before any allocation, so that no buffer is placed under the default thresholds; a
     * failure costs only speed (same output), so it is a warning */
    if (tune_malloc() != 0)
        fprintf(stderr, "sprint: warning: mallopt(M_MMAP_THRESHOLD, M_TRIM_THRESHOLD) failed; running with glibc's defaults (slower, same results)\n");
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
