/* cpu.c: runtime CPU dispatch (see cpu.h). AVX2 level: AVX2 + FMA with the OS saving YMM
 * state and F16C. AVX-512 level: AVX-512 F, DQ, BW, VL and VNNI (vpdpbusd) with the OS saving ZMM and
 * opmask state (XCR0 bits 1, 2, 5, 6, 7). */
#include "cpu/cpu.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned long long xgetbv0(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static sp_cpu_level hw_level(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return SP_CPU_PORTABLE;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return SP_CPU_PORTABLE;
    unsigned long long xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return SP_CPU_PORTABLE; /* SSE and YMM state */
    if (__get_cpuid_max(0, NULL) < 7) return SP_CPU_PORTABLE;
    __cpuid_count(7, 0, a, b, c, d);
    int avx2 = (b >> 5) & 1;
    int f512 = (b >> 16) & 1, dq512 = (b >> 17) & 1, bw512 = (b >> 30) & 1, vl512 = (b >> 31) & 1, vnni512 = (c >> 11) & 1;
    if (!avx2 || !fma || !f16c) return SP_CPU_PORTABLE; /* the decode kernels' AVX2 file uses F16C */
    if (f512 && dq512 && bw512 && vl512 && vnni512 && (xcr0 & 0xE6) == 0xE6) return SP_CPU_AVX512;
    return SP_CPU_AVX2;
}
/* AVX512_VBMI2 (CPUID leaf 7 ECX bit 6: vpcompressb / vpexpandb), on top of the AVX-512 level. */
static int hw_vbmi2(void) {
    unsigned int a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    (void)a, (void)b, (void)d;
    return (c >> 6) & 1;
}
/* BMI1 and BMI2 (CPUID leaf 7 EBX bits 3 and 8: tzcnt, blsr, shlx / sarx ...). */
static int hw_bmi12(void) {
    unsigned int a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    (void)a, (void)c, (void)d;
    return ((b >> 3) & 1) && ((b >> 8) & 1);
}
#else
static sp_cpu_level hw_level(void) { return SP_CPU_PORTABLE; }
static int hw_vbmi2(void) { return 0; }
static int hw_bmi12(void) { return 0; }
#endif

static int cached = -1;

sp_cpu_level sp_cpu_detect(void) {
    int v = __atomic_load_n(&cached, __ATOMIC_ACQUIRE);
    if (v >= 0) return (sp_cpu_level)v;
    sp_cpu_level lv = hw_level();
    const char *env = getenv("SPRINT_CPU");
    if (env) {
        sp_cpu_level want = lv;
        if (!strcmp(env, "portable")) want = SP_CPU_PORTABLE;
        else if (!strcmp(env, "avx2")) want = SP_CPU_AVX2;
        else if (!strcmp(env, "avx512")) want = SP_CPU_AVX512;
        if (want < lv) lv = want; /* only lowers: a level above the CPU's is ignored */
    }
    __atomic_store_n(&cached, (int)lv, __ATOMIC_RELEASE);
    return lv;
}

/* A feature flag on top of a dispatch level: probed once (hw), and only while the level in use
 * (sp_cpu_detect(), lowered by SPRINT_CPU) is at least `need`. */
static int cached_feature(int *cache, sp_cpu_level need, int (*hw)(void)) {
    int v = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
    if (v >= 0) return v;
    v = sp_cpu_detect() >= need && hw();
    __atomic_store_n(cache, v, __ATOMIC_RELEASE);
    return v;
}

static int cached_vbmi2 = -1, cached_bmi12 = -1;

int sp_cpu_has_vbmi2(void) { return cached_feature(&cached_vbmi2, SP_CPU_AVX512, hw_vbmi2); }

int sp_cpu_has_bmi12(void) { return cached_feature(&cached_bmi12, SP_CPU_AVX2, hw_bmi12); }

const char *sp_cpu_level_name(sp_cpu_level level) {
    switch (level) {
    case SP_CPU_PORTABLE: return "portable";
    case SP_CPU_AVX2: return "avx2";
    case SP_CPU_AVX512: return "avx512";
    }
    return "?";
}
