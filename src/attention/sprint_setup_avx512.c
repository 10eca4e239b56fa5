/* sprint_setup_avx512.c: the per-call setup of the SPRINT CPU kernel (sprint_cpu.c): the key
 * MSB levels with the integer row sums the sigma margins need (sp_sx_rows_*), the keys' levels,
 * row sums and packed MSBs in one pass (sp_sx_quant_keys), and the input check's row norms,
 * alone or with the tensor's largest |x| (sp_sx_max_norm_*, sp_sx_max_norm_amax_*), portable
 * and AVX-512 (sprint_exact.h; Q's levels are sp_quant_rows_tmax's). Tested byte for byte
 * against the portable loops (tests/test_cpu_sprint.c). */
#include "attention/sprint_exact.h"
#include "attention/flash.h"
#include "functional/quant_simd.h"
#include "functional/int_screen.h"
#include "functional/fn_internal.h"

#include <math.h>
#include <string.h>


void sp_sx_rows_portable(const int8_t *x, int n, int d, uint8_t *msb, int32_t *sum, int32_t *sum2) {
    for (int i = 0; i < n; i++) {
        const int8_t *r = x + (size_t)i * (size_t)d;
        int32_t s = 0, s2 = 0;
        for (int c = 0; c < d; c++) {
            if (msb) msb[(size_t)i * (size_t)d + (size_t)c] = (uint8_t)(((uint8_t)r[c] ^ 0x80u) >> 4);
            s += r[c], s2 += (int32_t)r[c] * r[c];
        }
        sum[i] = s, sum2[i] = s2;
    }
}

/* The keys' setup in one pass over K (no (n_k, d) int8 levels or MSB levels in memory): per
 * key, its 8-bit levels (sp_quant_rows' bytes at that level: the per-tensor scale from
 * tensor_max, zero levels for a padding key) into a row on the stack, their MSB levels, row
 * sum and sum of squares (sp_sx_rows_*), and the MSBs packed into kp as sp_iscreen_pack packs
 * them (sp_iscreen_pack_size(n_k, d) bytes; padding keys and dims zero). Tested against those
 * three calls in tests/test_cpu_sprint.c. */
void sp_sx_quant_keys(sp_cpu_level lv, const float *k, int n_k, int d, int ldk, const unsigned char *valid,
                      float tensor_max, uint8_t *kp, float *scales, int32_t *sum, int32_t *sum2) {
    const float s = tensor_max > 0.0f ? tensor_max / 127.0f : 1.0f; /* as sp_quant_rows_level */
    const int G = sp_iscreen_d8(d) / 8, Gf = d / 8;
    void (*rows_fn)(const int8_t *, int, int, uint8_t *, int32_t *, int32_t *) =
        lv >= SP_CPU_AVX512 ? sp_sx_rows_avx512 : sp_sx_rows_portable;
    int8_t row[SP_FLASH_MAX_D];
    uint8_t m[SP_FLASH_MAX_D + 8];
    SP_ASSERT(d <= SP_FLASH_MAX_D);
    if (Gf < G || n_k % SP_ISCREEN_CHUNK != 0 || n_k == 0) memset(kp, 0, sp_iscreen_pack_size(n_k, d));
    for (int j = 0; j < n_k; j++) {
        scales[j] = s;
        if (valid && !valid[j]) memset(row, 0, (size_t)d);
        else sp_quant_row_level(lv, k + (size_t)j * (size_t)ldk, d, s, row);
        rows_fn(row, 1, d, m, &sum[j], &sum2[j]);
        sp_iscreen_pack_key(m, d, kp + (size_t)(j / 16) * (size_t)G * 64 + 4 * (size_t)(j % 16));
    }
}

/* The largest row norm of the valid rows of x (n, d), or -1 when a value is not finite: the
 * computation of flash.c's max_norm (the input check both kernels run), the same sums in the
 * same order: per row 8 partial sums of squares in double (element c into sum c % 8 while
 * c + 8 <= d, the tail into sum 0), summed ((0 + 1) + (2 + 3)) + ((4 + 5) + (6 + 7)). */
static double row_sumsq(const float *r, int d) {
    double p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int c = 0;
    for (; c + 8 <= d; c += 8)
        for (int e = 0; e < 8; e++) p[e] += (double)r[c + e] * (double)r[c + e];
    for (; c < d; c++) p[0] += (double)r[c] * (double)r[c];
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}
double sp_sx_max_norm_portable(const float *x, int n, int d, int ld, const unsigned char *valid) {
    double mx = 0;
    for (int i = 0; i < n; i++) {
        if (valid && !valid[i]) continue;
        const double s = row_sumsq(x + (size_t)i * (size_t)ld, d);
        if (!isfinite(s)) return -1;
        mx = s > mx ? s : mx;
    }
    return sqrt(mx);
}
double sp_sx_max_norm_amax_portable(const float *x, int n, int d, int ld, const unsigned char *valid, float *amax) {
    *amax = sp_quant_absmax_portable(x, n, d, ld, valid);
    return sp_sx_max_norm_portable(x, n, d, ld, valid);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "attention/exp2_avx512.h" /* T512 */

/* sp_sx_rows_portable in AVX-512 BW: 64 bytes of a row at a time; MSB levels by xor / shift /
 * mask, sums and sums of squares by widening to 16 bits and vpmaddwd (exact integers). */
T512 void sp_sx_rows_avx512(const int8_t *x, int n, int d, uint8_t *msb, int32_t *sum, int32_t *sum2) {
    const __m512i ones = _mm512_set1_epi16(1), nib = _mm512_set1_epi8(0x0F), top = _mm512_set1_epi8((char)0x80);
    for (int i = 0; i < n; i++) {
        const int8_t *r = x + (size_t)i * (size_t)d;
        __m512i s = _mm512_setzero_si512(), s2 = s;
        for (int c = 0; c < d; c += 64) {
            const __mmask64 m = d - c >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (d - c)) - 1);
            const __m512i b = _mm512_maskz_loadu_epi8(m, r + c);
            if (msb)
                _mm512_mask_storeu_epi8(msb + (size_t)i * (size_t)d + (size_t)c, m,
                                        _mm512_and_si512(_mm512_srli_epi16(_mm512_xor_si512(b, top), 4), nib));
            const __m512i w0 = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(b));
            const __m512i w1 = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(b, 1));
            s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_madd_epi16(w0, ones), _mm512_madd_epi16(w1, ones)));
            s2 = _mm512_add_epi32(s2, _mm512_add_epi32(_mm512_madd_epi16(w0, w0), _mm512_madd_epi16(w1, w1)));
        }
        sum[i] = _mm512_reduce_add_epi32(s), sum2[i] = _mm512_reduce_add_epi32(s2);
    }
}
/* sp_sx_max_norm_portable in AVX-512: the 8 partial sums of a row are the 8 double lanes of
 * one accumulator (a square of a float is exact in double, so a fused multiply-add gives the
 * same sums); 8 rows at a time, as the sums of one row form a dependent chain (8 chains cover
 * the latency of the multiply-add). When d is a multiple of 8 the pairwise sum is a tree of
 * lane swaps, ((0 + 1) + (2 + 3)) + ((4 + 5) + (6 + 7)) in lane 0 (a + b == b + a exactly). */
T512 static inline double lanes_sum(__m512d a, const float *r, int c, int d) {
    if (c == d) {
        a = _mm512_add_pd(a, _mm512_permute_pd(a, 0x55));                      /* lane 2k: p2k + p2k+1 */
        a = _mm512_add_pd(a, _mm512_permutex_pd(a, _MM_SHUFFLE(1, 0, 3, 2)));  /* lane 4k: quads */
        a = _mm512_add_pd(a, _mm512_shuffle_f64x2(a, a, _MM_SHUFFLE(1, 0, 3, 2))); /* lane 0: halves */
        return _mm512_cvtsd_f64(a);
    }
    double p[8];
    _mm512_storeu_pd(p, a);
    for (; c < d; c++) p[0] += (double)r[c] * (double)r[c];
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}
/* The norms and, when amax is non-NULL, the largest |x| (from the same loads: one pass over
 * the tensor for the input check and the quantiser's scale). Inlined into both entries. */
T512 static inline __attribute__((always_inline)) double max_norm_avx512(const float *x, int n, int d, int ld,
                                                                        const unsigned char *valid, float *amax) {
    double mx = 0;
    const int d8 = d / 8 * 8;
    __m256 am = _mm256_setzero_ps();
    const __m256 nosign = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    float amt = 0.0f; /* the maximum over the d mod 8 tails */
    int i = 0;
    while (i < n) {
        const float *r[8];
        int nr = 0;
        for (; i < n && nr < 8; i++)
            if (!valid || valid[i]) r[nr++] = x + (size_t)i * (size_t)ld;
        if (nr == 0) break;
        for (int t = nr; t < 8; t++) r[t] = r[0];
        __m512d a[8];
#pragma GCC unroll 8
        for (int t = 0; t < 8; t++) a[t] = _mm512_setzero_pd();
        for (int c = 0; c < d8; c += 8)
#pragma GCC unroll 8
            for (int t = 0; t < 8; t++) {
                const __m256 f = _mm256_loadu_ps(r[t] + c);
                if (amax) am = _mm256_max_ps(am, _mm256_and_ps(f, nosign));
                const __m512d v = _mm512_cvtps_pd(f);
                a[t] = _mm512_fmadd_pd(v, v, a[t]);
            }
        double s[8];
#pragma GCC unroll 8
        for (int t = 0; t < 8; t++) s[t] = lanes_sum(a[t], r[t], d8, d);
        if (amax && d8 < d)
            for (int t = 0; t < nr; t++)
                for (int c = d8; c < d; c++) amt = fabsf(r[t][c]) > amt ? fabsf(r[t][c]) : amt;
        for (int t = 0; t < nr; t++) { /* in row order: the first non-finite row stops, as in the scalar loop */
            if (!isfinite(s[t])) return -1;
            mx = s[t] > mx ? s[t] : mx;
        }
    }
    if (amax) { /* every value was finite here: the maximum is the one of any order */
        float m8[8];
        _mm256_storeu_ps(m8, am);
        for (int e = 0; e < 8; e++) amt = m8[e] > amt ? m8[e] : amt;
        *amax = amt;
    }
    return sqrt(mx);
}
T512 double sp_sx_max_norm_avx512(const float *x, int n, int d, int ld, const unsigned char *valid) {
    return max_norm_avx512(x, n, d, ld, valid, NULL);
}
T512 double sp_sx_max_norm_amax_avx512(const float *x, int n, int d, int ld, const unsigned char *valid, float *amax) {
    return max_norm_avx512(x, n, d, ld, valid, amax);
}
#else
double sp_sx_max_norm_avx512(const float *x, int n, int d, int ld, const unsigned char *valid) {
    return sp_sx_max_norm_portable(x, n, d, ld, valid);
}
double sp_sx_max_norm_amax_avx512(const float *x, int n, int d, int ld, const unsigned char *valid, float *amax) {
    return sp_sx_max_norm_amax_portable(x, n, d, ld, valid, amax);
}
void sp_sx_rows_avx512(const int8_t *x, int n, int d, uint8_t *msb, int32_t *sum, int32_t *sum2) {
    sp_sx_rows_portable(x, n, d, msb, sum, sum2);
}
#endif
