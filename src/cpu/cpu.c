/* cpu.c: runtime CPU dispatch (see cpu.h). gcc's __builtin_cpu_supports reads CPUID and, for
 * AVX and AVX-512, checks with XGETBV that the OS saves the wide registers. */
#include "cpu/cpu.h"

#include <stdlib.h>
#include <string.h>

static sp_cpu_level hw_level(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma"))
        return SP_CPU_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SP_CPU_AVX2;
#endif
    return SP_CPU_PORTABLE;
}

sp_cpu_level sp_cpu_detect(void) {
    static int cached = -1; /* a benign race: every thread computes the same value */
    if (cached >= 0) return (sp_cpu_level)cached;
    sp_cpu_level lv = hw_level();
    const char *env = getenv("SPRINT_CPU");
    if (env) {
        sp_cpu_level want = lv;
        if (!strcmp(env, "portable")) want = SP_CPU_PORTABLE;
        else if (!strcmp(env, "avx2")) want = SP_CPU_AVX2;
        else if (!strcmp(env, "avx512")) want = SP_CPU_AVX512;
        if (want < lv) lv = want;
    }
    cached = (int)lv;
    return lv;
}

const char *sp_cpu_level_name(sp_cpu_level level) {
    switch (level) {
    case SP_CPU_PORTABLE: return "portable";
    case SP_CPU_AVX2: return "avx2";
    case SP_CPU_AVX512: return "avx512";
    }
    return "unknown";
}
