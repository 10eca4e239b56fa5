/* cpu.h: runtime CPU dispatch. The build targets x86-64-v2 (portable); hot kernels also come
 * compiled for AVX2+FMA and for AVX-512 (F/BW/VL + VNNI) in their own files, and the caller
 * picks one at run time with sp_cpu_detect(). Every fast kernel has a portable reference it is
 * tested against (tests/test_cpu_kernels.c). */
#ifndef SPRINT_CPU_H
#define SPRINT_CPU_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { SP_CPU_PORTABLE = 0, SP_CPU_AVX2 = 1, SP_CPU_AVX512 = 2 } sp_cpu_level;

/* Best level the CPU and the OS support (CPUID feature bits and the XCR0 register saving the
 * YMM / ZMM state), lowered by the environment variable SPRINT_CPU=portable|avx2|avx512. An
 * unknown value, or a level above the CPU's, gives the detected level. The result is cached
 * after the first call (thread-safe: every call computes the same value). */
sp_cpu_level sp_cpu_detect(void);

/* Whether the AVX-512 level is in use (sp_cpu_detect(), so SPRINT_CPU below avx512 turns it off)
 * and the CPU also has AVX512_VBMI2 (vpcompressb: the SPRINT kernel's bit-mask-to-index lists,
 * sprint_exact.h). Cached after the first call. */
int sp_cpu_has_vbmi2(void);

/* Whether the AVX2 level or above is in use (sp_cpu_detect(), so SPRINT_CPU=portable turns it
 * off) and the CPU has BMI1 and BMI2 (the DRAM scheduler's second instance, timing/memory.c).
 * Cached after the first call. */
int sp_cpu_has_bmi12(void);

/* "portable", "avx2", "avx512" (static strings); "?" for a value outside the enum. */
const char *sp_cpu_level_name(sp_cpu_level level);

#ifdef __cplusplus
}
#endif
#endif
