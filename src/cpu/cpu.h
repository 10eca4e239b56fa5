/* cpu.h: runtime CPU dispatch (internal). Picks the best instruction-set level the CPU and the
 * OS support, so that AVX2 / AVX-512 kernels (each in its own .c file built with per-file
 * target flags) run only where they can, while the build itself stays portable. */
#ifndef SPRINT_CPU_H
#define SPRINT_CPU_H

typedef enum { SP_CPU_PORTABLE = 0, SP_CPU_AVX2 = 1, SP_CPU_AVX512 = 2 } sp_cpu_level;

/* Best level the CPU and OS support, lowered by the environment variable
 * SPRINT_CPU=portable|avx2|avx512 (unknown value or a level above the CPU's: the detected
 * level; cached after the first call). */
sp_cpu_level sp_cpu_detect(void);

/* "portable", "avx2", "avx512". */
const char *sp_cpu_level_name(sp_cpu_level level);

#endif
