/* int_screen_amx.c: the integer screen on AMX tiles (int_screen_amx.h). Per 64-key chunk: four
 * 16 x 16 int32 accumulator tiles (one per 16-key panel), the 16 query rows as the A tile and
 * each panel's keys as a B tile, dA / 64 TDPBSUD steps (amx_chunk). sp_iscreen_amx_rows32
 * stores the accumulators to a 4 KB buffer and AVX-512 compares them with each row's
 * comparator reference; sp_iscreen_amx_charges32 stores them straight to the caller's A. */
#define _DEFAULT_SOURCE /* syscall() */
#include "functional/int_screen_amx.h"

#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"

size_t sp_iscreen_amx_pack_size(int n_k, int d) {
    size_t chunks = ((size_t)(n_k > 0 ? n_k : 0) + 63) / 64;
    if (chunks == 0) chunks = 1;
    return chunks * 64 * (size_t)sp_iscreen_amx_dA(d);
}

/* 4 consecutive dims of a key are 4 consecutive bytes of the layout: copied 4 at a time. */
void sp_iscreen_amx_pack(const uint8_t *m, int n_k, int d, int ldm, uint8_t *kb) {
    const size_t S = (size_t)sp_iscreen_amx_dA(d) / 64;
    memset(kb, 0, sp_iscreen_amx_pack_size(n_k, d));
    for (int j = 0; j < n_k; j++) {
        const uint8_t *row = m + (size_t)j * (size_t)ldm;
        size_t p = (size_t)j / 16, u = (size_t)j % 16;
        int c = 0;
        for (; c + 4 <= d; c += 4) {
            size_t s = (size_t)c / 64, g = ((size_t)c % 64) / 4;
            uint32_t x;
            memcpy(&x, row + c, 4);
            x &= 0x0F0F0F0Fu;
            memcpy(kb + (p * S + s) * 1024 + g * 64 + 4 * u, &x, 4);
        }
        for (; c < d; c++) {
            size_t s = (size_t)c / 64, g = ((size_t)c % 64) / 4, e = (size_t)c % 4;
            kb[(p * S + s) * 1024 + g * 64 + 4 * u + e] = row[c] & 15;
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cpuid.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static int amx_probe(void) {
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if (!((d >> 24) & 1) || !((d >> 25) & 1)) return 0; /* AMX-TILE, AMX-INT8 */
    __cpuid(1, a, b, c, d);
    if (!((c >> 27) & 1)) return 0; /* OSXSAVE */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return 0; /* XTILECFG and XTILEDATA state */
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

static int amx_cached = -1;

int sp_iscreen_amx_available(void) {
    int v = __atomic_load_n(&amx_cached, __ATOMIC_ACQUIRE);
    if (v < 0) {
        const char *env = getenv("SPRINT_AMX");
        v = sp_cpu_detect() >= SP_CPU_AVX512 && !(env && !strcmp(env, "0")) && amx_probe();
        __atomic_store_n(&amx_cached, v, __ATOMIC_RELEASE);
    }
    return v;
}

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_cfg;

#define TAMX __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl")))

/* Configures the 8 tiles as 16 rows x 64 bytes (0-3: charges (rows 0-15 | 16-31) x (even |
 * odd panel), 4-5: query halves, 6-7: keys) and, when the queries fit one 64-byte step (S ==
 * 1), loads the query tiles once. */
static inline TAMX void amx_begin(const int8_t *qa, int dA, int S) {
    amx_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) cfg.rows[t] = 16, cfg.colsb[t] = 64;
    _tile_loadconfig(&cfg);
    if (S == 1) {
        _tile_loadd(4, qa, dA);
        _tile_loadd(5, qa + (size_t)16 * dA, dA);
    }
}

/* The 32 x 64 charges of key chunk ch (after amx_begin) into dst[r * ld + j], r < 32, j < 64. */
static inline TAMX void amx_chunk(const uint8_t *kb, int ch, int S, const int8_t *qa, int dA, int32_t *dst,
                                  size_t ld) {
    const uint8_t *kc = kb + (size_t)ch * 4 * (size_t)S * 1024;
    const size_t ldb = ld * sizeof(int32_t);
    for (int pp = 0; pp < 4; pp += 2) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int s = 0; s < S; s++) {
            if (S > 1) {
                _tile_loadd(4, qa + 64 * s, dA);
                _tile_loadd(5, qa + (size_t)16 * dA + 64 * s, dA);
            }
            _tile_loadd(6, kc + ((size_t)pp * S + (size_t)s) * 1024, 64);
            _tile_loadd(7, kc + ((size_t)(pp + 1) * S + (size_t)s) * 1024, 64);
            _tile_dpbsud(0, 4, 6);
            _tile_dpbsud(1, 4, 7);
            _tile_dpbsud(2, 5, 6);
            _tile_dpbsud(3, 5, 7);
        }
        int32_t *a0 = dst + 16 * (size_t)pp;
        _tile_stored(0, a0, ldb);
        _tile_stored(1, a0 + 16, ldb);
        _tile_stored(2, a0 + 16 * ld, ldb);
        _tile_stored(3, a0 + 16 * ld + 16, ldb);
    }
}

TAMX void sp_iscreen_amx_rows32(const uint8_t *kb, int nchunk, int d, const int8_t *qa, const int32_t tau[32],
                                uint64_t *mask, size_t ldm, int32_t *A, size_t lda) {
    const int dA = sp_iscreen_amx_dA(d), S = dA / 64;
    amx_begin(qa, dA, S);
    int32_t C[2][32][64] __attribute__((aligned(64))); /* double-buffered: chunk ch's charges are stored while chunk ch - 1's are compared */
    for (int ch = 0; ch <= nchunk; ch++) {
        if (ch < nchunk) amx_chunk(kb, ch, S, qa, dA, &C[ch & 1][0][0], 64);
        if (ch == 0) continue;
        const int pc = ch - 1;
        int32_t (*Cp)[64] = C[pc & 1];
        for (int r = 0; r < 32; r++) {
            const __m512i t = _mm512_set1_epi32(tau[r]);
            uint64_t m = (uint64_t)_mm512_cmpge_epi32_mask(_mm512_load_si512((const void *)&Cp[r][0]), t);
            m |= (uint64_t)_mm512_cmpge_epi32_mask(_mm512_load_si512((const void *)&Cp[r][16]), t) << 16;
            m |= (uint64_t)_mm512_cmpge_epi32_mask(_mm512_load_si512((const void *)&Cp[r][32]), t) << 32;
            m |= (uint64_t)_mm512_cmpge_epi32_mask(_mm512_load_si512((const void *)&Cp[r][48]), t) << 48;
            mask[(size_t)r * ldm + (size_t)pc] = m;
            if (A) memcpy(A + (size_t)r * lda + (size_t)pc * 64, Cp[r], sizeof Cp[r]);
        }
    }
    _tile_release();
}

/* The charges only (no comparator): the accumulator tiles go straight to A. */
TAMX void sp_iscreen_amx_charges32(const uint8_t *kb, int nchunk, int d, const int8_t *qa, int32_t *A, size_t lda) {
    const int dA = sp_iscreen_amx_dA(d), S = dA / 64;
    amx_begin(qa, dA, S);
    for (int ch = 0; ch < nchunk; ch++) amx_chunk(kb, ch, S, qa, dA, A + (size_t)ch * 64, lda);
    _tile_release();
}
#else
int sp_iscreen_amx_available(void) { return 0; }
void sp_iscreen_amx_charges32(const uint8_t *kb, int nchunk, int d, const int8_t *qa, int32_t *A, size_t lda) {
    (void)kb, (void)nchunk, (void)d, (void)qa, (void)A, (void)lda;
    abort(); /* unreachable: sp_iscreen_amx_available() is 0 */
}
void sp_iscreen_amx_rows32(const uint8_t *kb, int nchunk, int d, const int8_t *qa, const int32_t tau[32],
                           uint64_t *mask, size_t ldm, int32_t *A, size_t lda) {
    (void)kb, (void)nchunk, (void)d, (void)qa, (void)tau, (void)mask, (void)ldm, (void)A, (void)lda;
    abort(); /* unreachable: sp_iscreen_amx_available() is 0 */
}
#endif
