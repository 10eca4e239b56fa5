/* sprint_bits_vbmi2.c: the SPRINT kernel's bit-mask-to-index lists with AVX512_VBMI2
 * (sprint_exact.h). One vpcompressb packs the byte offsets 0..63 of a 64-bit survivor word by its
 * bits (ascending, zeros above), then each 16-offset piece is widened to int32 (vpmovzxbd), offset
 * by the word's first key and stored: ceil(popcount / 16) stores per word, against the AVX-512
 * version's four vpcompressd + stores (sprint_exact_avx512.c). Register forms only: the memory
 * form of the compresses is microcoded on some cores. The portable loop in sprint_exact.c is the
 * reference (tests/test_cpu_sprint.c, bits_to_indices_match_portable). */
#include "attention/sprint_exact.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define TVB __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")))

/* Offsets of the set bits of w plus base to out[0 .. popcount(w)); writes up to 15 more. */
TVB static inline __attribute__((always_inline)) int word_to_indices(uint64_t w, int32_t base, int32_t *out) {
    const __m512i iota = _mm512_set_epi8(63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45,
                                         44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 32, 31, 30, 29, 28, 27, 26,
                                         25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6,
                                         5, 4, 3, 2, 1, 0);
    const __m512i c = _mm512_maskz_compress_epi8((__mmask64)w, iota);
    const __m512i b = _mm512_set1_epi32(base);
    const int cnt = __builtin_popcountll(w);
    _mm512_storeu_si512((void *)out, _mm512_add_epi32(b, _mm512_cvtepu8_epi32(_mm512_castsi512_si128(c))));
    if (cnt > 16)
        _mm512_storeu_si512((void *)(out + 16),
                            _mm512_add_epi32(b, _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(c, 1))));
    if (cnt > 32)
        _mm512_storeu_si512((void *)(out + 32),
                            _mm512_add_epi32(b, _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(c, 2))));
    if (cnt > 48)
        _mm512_storeu_si512((void *)(out + 48),
                            _mm512_add_epi32(b, _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(c, 3))));
    return cnt;
}

TVB int sp_sx_bits_vbmi2(const uint64_t *m, int nw, int32_t base, int32_t *out) {
    int n = 0;
    for (int u = 0; u < nw; u++)
        if (m[u]) n += word_to_indices(m[u], base + 64 * u, out + n);
    return n;
}

TVB void sp_sx_gather_group_vbmi2(const uint64_t m[4], int32_t base, int32_t *const out[4], int n[4]) {
    for (int r = 0; r < 4; r++)
        if (m[r]) n[r] += word_to_indices(m[r], base, out[r] + n[r]);
}
#else
int sp_sx_bits_vbmi2(const uint64_t *m, int nw, int32_t base, int32_t *out) {
    return sp_sx_bits_portable(m, nw, base, out);
}
void sp_sx_gather_group_vbmi2(const uint64_t m[4], int32_t base, int32_t *const out[4], int n[4]) {
    sp_sx_gather_group_portable(m, base, out, n);
}
#endif
