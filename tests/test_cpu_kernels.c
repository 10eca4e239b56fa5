/* test_cpu_kernels.c: does runtime dispatch pick a level the CPU has and honour SPRINT_CPU, and
 * does every fast kernel (flash tile AVX2 / AVX-512) agree with its portable reference and
 * with the double dense reference, under causal, padding and query masks, for any thread
 * count? */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention/flash.h"
#include "cpu/cpu.h"
#include "cpu/gemm.h"
#include "sprint/cpu_attention.h"
#include "helpers.h"

static float *randn(size_t n, uint64_t seed, float sd) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = sd * (float)sp_rng_normal(sp_rng_key(seed, 3, (uint64_t)i, 0, 0));
    return x;
}

Test(cpu, level_names_and_detection) {
    cr_assert_str_eq(sp_cpu_level_name(SP_CPU_PORTABLE), "portable");
    cr_assert_str_eq(sp_cpu_level_name(SP_CPU_AVX2), "avx2");
    cr_assert_str_eq(sp_cpu_level_name(SP_CPU_AVX512), "avx512");
    sp_cpu_level a = sp_cpu_detect(), b = sp_cpu_detect();
    cr_assert_eq(a, b, "cached");
    cr_assert(a >= SP_CPU_PORTABLE && a <= SP_CPU_AVX512);
#if defined(__x86_64__)
    if (!getenv("SPRINT_CPU")) {
        /* the detected level agrees with the compiler's view of this CPU */
        __builtin_cpu_init();
        int has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        int has512 = has2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                     __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
        cr_assert_eq(a, has512 ? SP_CPU_AVX512 : has2 ? SP_CPU_AVX2 : SP_CPU_PORTABLE, "detected %s",
                     sp_cpu_level_name(a));
    }
#endif
}

/* SPRINT_CPU lowers the level, never raises it, and an unknown value is ignored (checked in a
 * child process: the level is cached per process). */
Test(cpu, environment_override) {
    const char *cases[][2] = {{"portable", "portable"}, {"avx2", NULL}, {"bogus", NULL}, {"avx512", NULL}};
    if (getenv("SPRINT_CPU")) cr_skip_test("SPRINT_CPU is set: the detected level is not the CPU's");
    sp_cpu_level hw = sp_cpu_detect();
    for (int i = 0; i < 4; i++) {
        char out[256] = {0}, errb[256];
        setenv("SPRINT_CPU", cases[i][0], 1);
        int rc = th_run_sprint("--version", out, sizeof out, errb, sizeof errb);
        unsetenv("SPRINT_CPU");
        cr_assert_eq(rc, 0, "%s", errb);
        const char *want = cases[i][1];
        sp_cpu_level wl = hw;
        if (!strcmp(cases[i][0], "avx2") && hw > SP_CPU_AVX2) wl = SP_CPU_AVX2;
        if (!want) want = sp_cpu_level_name(wl);
        char needle[64];
        snprintf(needle, sizeof needle, "cpu kernels: %s", want);
        cr_assert(strstr(out, needle), "SPRINT_CPU=%s: expected '%s' in: %s", cases[i][0], needle, out);
    }
}

/* --version names the integer screen: SPRINT_AMX=0 turns the AMX tiles off, and with it on the
 * report follows sp_cpu_attention_amx (the CPU's and the OS's offer). */
Test(cpu, version_names_the_screen) {
    if (getenv("SPRINT_CPU") || getenv("SPRINT_AMX")) cr_skip_test("SPRINT_CPU or SPRINT_AMX is set");
    char out[256] = {0}, errb[256];
    setenv("SPRINT_AMX", "0", 1);
    int rc = th_run_sprint("--version", out, sizeof out, errb, sizeof errb);
    unsetenv("SPRINT_AMX");
    cr_assert_eq(rc, 0, "%s", errb);
    cr_assert(strstr(out, "integer screen: simd"), "SPRINT_AMX=0: %s", out);
    rc = th_run_sprint("--version", out, sizeof out, errb, sizeof errb);
    cr_assert_eq(rc, 0, "%s", errb);
    cr_assert(strstr(out, sp_cpu_attention_amx() ? "integer screen: amx-int8" : "integer screen: simd"), "%s", out);
}

/* One tile at every level against the portable tile: random scores, a causal limit per row, a
 * padding bias, two chunks folded in sequence (exercises the online rescale). */
static void tile_case(int d, int nkc, int causal, int pad, int thr_on, uint64_t seed) {
    float *q = randn(4 * (size_t)d, seed, 0.4f), *k = randn(128 * (size_t)d, seed + 1, 1.0f);
    float *v = randn(128 * (size_t)d, seed + 2, 1.0f);
    float *kp = malloc(sp_flash_kpack_size(128, d) * sizeof *kp);
    sp_flash_pack_k(k, d, 128, d, kp);
    float bias[128 + 64] = {0};
    for (int j = 0; j < 128; j++) bias[j] = pad && j % 5 == 2 ? -INFINITY : 0.0f;
    float m[3][4], l[3][4], *o[3];
    uint64_t kept[3][2][4];
    sp_flash_tile_fn fns[3] = {sp_flash_tile_portable, sp_flash_tile_avx2, sp_flash_tile_avx512};
    int nlev = sp_cpu_detect() + 1;
    if (d % 16) nlev = nlev > 2 ? 2 : nlev;
    if (d % 8) nlev = 1;
    for (int L = 0; L < nlev; L++) {
        o[L] = calloc(4 * (size_t)d, sizeof(float));
        for (int r = 0; r < 4; r++) m[L][r] = -INFINITY, l[L][r] = 0;
        for (int ch = 0; ch < 2; ch++) {
            uint64_t rm[4] = {~0ull, ~0ull, 0x5555555555555555ull, ~0ull}; /* row 2: every other key */
            sp_flash_tile t = {.d = d, .nkc = ch ? nkc : 64, .kpan = {kp + (size_t)ch * 64 * d, kp + (size_t)(ch * 64 + 16) * d,
                               kp + (size_t)(ch * 64 + 32) * d, kp + (size_t)(ch * 64 + 48) * d}, .v = v + (size_t)ch * 64 * d,
                               .ldv = d, .bias = pad ? bias + ch * 64 : NULL, .m = m[L], .l = l[L], .o = o[L]};
            for (int r = 0; r < 4; r++) {
                t.q[r] = q + (size_t)r * d;
                t.lim[r] = causal ? 50 + 7 * r - 64 * ch + (ch ? 60 : 0) : 64;
                t.thr[r] = thr_on ? 0.2f * (float)r - 0.3f : -INFINITY;
                t.rmask = pad ? rm : NULL;
            }
            fns[L](&t);
            memcpy(kept[L][ch], t.kept, sizeof t.kept);
        }
    }
    for (int L = 1; L < nlev; L++)
        for (int r = 0; r < 4; r++) {
            for (int ch = 0; ch < 2; ch++)
                cr_assert_eq(kept[L][ch][r], kept[0][ch][r], "level %d row %d chunk %d: kept bits differ", L, r, ch);
            cr_assert(fabsf(m[L][r] - m[0][r]) <= 1e-5f * (1 + fabsf(m[0][r])), "level %d row %d m %g vs %g", L, r,
                      m[L][r], m[0][r]);
            cr_assert(fabsf(l[L][r] - l[0][r]) <= 1e-5f * l[0][r], "level %d row %d l %g vs %g", L, r, l[L][r],
                      l[0][r]);
            for (int c = 0; c < d; c++) {
                float a = o[L][r * d + c], b = o[0][r * d + c];
                cr_assert(fabsf(a - b) <= 1e-5f * (1 + fabsf(b)), "level %d d %d row %d col %d: %g vs %g", L, d, r, c,
                          a, b);
            }
        }
    for (int L = 0; L < nlev; L++) free(o[L]);
    free(q), free(k), free(v), free(kp);
}

Test(flash, tiles_match_portable) {
    int ds[] = {8, 16, 32, 48, 64, 80, 128};
    for (int i = 0; i < 7; i++) {
        tile_case(ds[i], 64, 0, 0, 0, 10 + (uint64_t)i);
        tile_case(ds[i], 37, 1, 0, 0, 20 + (uint64_t)i);
        tile_case(ds[i], 64, 1, 1, 0, 30 + (uint64_t)i);
        tile_case(ds[i], 5, 0, 1, 0, 40 + (uint64_t)i);
        tile_case(ds[i], 64, 0, 1, 1, 50 + (uint64_t)i);
        tile_case(ds[i], 50, 1, 0, 1, 60 + (uint64_t)i);
    }
}

/* Whole heads: every level and 1 or 2 threads against the double reference operator, with
 * causal and padding masks; the thread count never changes a bit. */
static void head_case(int nq, int nk, int d, int causal, int qoff, int pad, uint64_t seed) {
    float *q = randn((size_t)nq * d, seed, 0.5f), *k = randn((size_t)nk * d, seed + 1, 1.0f);
    float *v = randn((size_t)nk * d, seed + 2, 1.0f);
    float *ref = malloc((size_t)nq * d * sizeof *ref), *o1 = malloc((size_t)nq * d * sizeof *o1);
    float *o2 = malloc((size_t)nq * d * sizeof *o2);
    unsigned char *kv = NULL, *qv = NULL;
    if (pad) {
        kv = malloc((size_t)nk), qv = malloc((size_t)nq);
        for (int j = 0; j < nk; j++) kv[j] = (j * 7 + 3) % 11 != 0;
        for (int i = 0; i < nq; i++) qv[i] = i % 13 != 4;
    }
    sp_attn_head h = {.n_q = nq, .n_k = nk, .d = d, .q = q, .k = k, .v = v, .out = ref, .ldq = d, .ldk = d,
                      .ldv = d, .ldo = d, .causal = causal, .q_offset = qoff, .key_valid = kv, .query_valid = qv,
                      .scale = 1.0f / sqrtf((float)d)};
    sp_attn_op *dr = sp_attn_dense_create(1, 1), *fl = sp_attn_flash_create(1, 1);
    sp_error err = {0};
    cr_assert_eq(dr->run(dr, &h, &err), SP_OK, "%s", err.msg);
    for (int L = 0; L <= (int)sp_cpu_detect(); L++) {
        h.out = o1;
        cr_assert_eq(sp_flash_attention(&h, 1, (sp_cpu_level)L, &err), SP_OK, "%s", err.msg);
        h.out = o2;
        cr_assert_eq(sp_flash_attention(&h, 2, (sp_cpu_level)L, &err), SP_OK, "%s", err.msg);
        cr_assert(!memcmp(o1, o2, (size_t)nq * d * sizeof *o1), "level %d: 1 and 2 threads differ", L);
        for (size_t t = 0; t < (size_t)nq * d; t++)
            cr_assert(fabsf(o1[t] - ref[t]) <= 2e-5f * (1 + fabsf(ref[t])), "level %d nq %d nk %d d %d: [%zu] %g vs %g",
                      L, nq, nk, d, t, o1[t], ref[t]);
    }
    /* the operator: same statistics as the reference */
    h.out = o1;
    cr_assert_eq(fl->run(fl, &h, &err), SP_OK, "%s", err.msg);
    cr_assert(!memcmp(&fl->stats[0], &dr->stats[0], sizeof fl->stats[0]), "operator statistics differ");
    sp_attn_op_free(dr), sp_attn_op_free(fl);
    free(q), free(k), free(v), free(ref), free(o1), free(o2), free(kv), free(qv);
}

/* The AVX-512 K packer (16 x 16 transposes, no zeroing pass) writes the floats of the portable
 * one, padding included, for key counts and head dims that end mid-block, with a row stride > d;
 * the buffer is filled with garbage first so a float it leaves unwritten shows. */
Test(flash, kpack_avx512_matches_portable) {
    if (sp_cpu_detect() < SP_CPU_AVX512) cr_skip_test("no AVX-512 here");
    const int nks[] = {0, 1, 15, 16, 17, 63, 64, 65, 100, 130}, ds[] = {1, 7, 16, 24, 33, 64, 80, 128};
    for (size_t a = 0; a < sizeof nks / sizeof *nks; a++)
        for (size_t b = 0; b < sizeof ds / sizeof *ds; b++) {
            const int nk = nks[a], d = ds[b], ld = d + 3;
            float *k = randn((size_t)(nk > 0 ? nk : 1) * (size_t)ld, 91 + a * 16 + b, 1.0f);
            const size_t n = sp_flash_kpack_size(nk, d);
            float *p0 = malloc(n * sizeof *p0), *p1 = malloc(n * sizeof *p1);
            for (size_t i = 0; i < n; i++) p0[i] = NAN, p1[i] = -1234.5f;
            sp_flash_pack_k_portable(k, ld, nk, d, p0);
            sp_flash_pack_k_avx512(k, ld, nk, d, p1);
            for (size_t i = 0; i < n; i++)
                cr_assert(!memcmp(&p0[i], &p1[i], sizeof *p0), "n_k %d d %d: float %zu: %g vs %g", nk, d, i,
                          (double)p0[i], (double)p1[i]);
            free(k), free(p0), free(p1);
        }
}

Test(flash, heads_match_reference) {
    head_case(100, 100, 64, 1, 0, 0, 1);
    head_case(100, 100, 64, 0, 0, 0, 2);
    head_case(70, 130, 64, 1, 60, 1, 3);
    head_case(33, 200, 32, 0, 0, 1, 4);
    head_case(65, 65, 8, 1, 0, 1, 5);
    head_case(1, 1, 16, 1, 0, 0, 6);
    head_case(129, 129, 128, 1, 0, 0, 7);
    head_case(40, 77, 24, 0, 0, 0, 8);
}

/* A key far below the max underflows to exactly 0, a query whose keys are all padding gets a
 * zero row, and a huge input is a data error rather than an overflow. */
Test(flash, edges) {
    float q[2 * 16] = {0}, k[2 * 16] = {0}, v[2 * 16], out[2 * 16];
    for (int c = 0; c < 16; c++) v[c] = 1, v[16 + c] = 2;
    q[0] = 1000, k[0] = 1, k[16] = -1; /* query 0: scores +1000 / -1000 */
    q[16] = 1;
    unsigned char kv[2] = {1, 1}, qv[2] = {1, 1};
    sp_attn_head h = {.n_q = 2, .n_k = 2, .d = 16, .q = q, .k = k, .v = v, .out = out, .ldq = 16, .ldk = 16,
                      .ldv = 16, .ldo = 16, .key_valid = kv, .query_valid = qv, .scale = 1.0f};
    for (int L = 0; L <= (int)sp_cpu_detect(); L++) {
        cr_assert_eq(sp_flash_attention(&h, 1, (sp_cpu_level)L, NULL), SP_OK);
        cr_assert_eq(out[0], 1.0f, "level %d: %g", L, out[0]);
        kv[0] = kv[1] = 0;
        cr_assert_eq(sp_flash_attention(&h, 1, (sp_cpu_level)L, NULL), SP_OK);
        for (int c = 0; c < 32; c++) cr_assert_eq(out[c], 0.0f);
        kv[0] = kv[1] = 1;
    }
    q[0] = 3e38f;
    sp_error err = {0};
    cr_assert_eq(sp_flash_attention(&h, 1, sp_cpu_detect(), &err), SP_ERR_DATA);
    cr_assert(strstr(err.msg, "fp32"), "%s", err.msg);
}

/* The input check (sp_flash_check_inputs, run by the flash and SPRINT kernels) finds a NaN or
 * an infinity at any position of Q, K or V, including the columns past a multiple of 8, and a
 * value large enough to overflow the scores wherever it sits; padding rows are not checked. */
Test(flash, input_check_sees_every_position) {
    enum { N = 3, D = 19 };
    float q[N * D], k[N * D], v[N * D], out[N * D];
    unsigned char kv[N] = {1, 1, 1};
    sp_attn_head h = {.n_q = N, .n_k = N, .d = D, .q = q, .k = k, .v = v, .out = out, .ldq = D, .ldk = D,
                      .ldv = D, .ldo = D, .key_valid = kv, .scale = 0.25f};
    float *t[3] = {q, k, v};
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    for (int which = 0; which < 3; which++)
        for (int pos = 0; pos < N * D; pos++)
            for (int b = 0; b < 4; b++) {
                for (int u = 0; u < N * D; u++) q[u] = k[u] = v[u] = 0.5f + 0.1f * (float)(u % 7);
                /* case 3: |q| |k| scale log2(e) or |v| (n_k + 1) above FLT_MAX / 4 */
                t[which][pos] = b < 3 ? bad[b] : 1e38f;
                sp_error err = {0};
                cr_assert_eq(sp_flash_check_inputs(&h, &err), SP_ERR_DATA, "tensor %d pos %d case %d", which, pos, b);
                if (which > 0) { /* the key (and its V row) is padding: not checked */
                    kv[pos / D] = 0;
                    cr_assert_eq(sp_flash_check_inputs(&h, &err), SP_OK, "padding key %d", pos / D);
                    kv[pos / D] = 1;
                }
            }
}

/* B packed once (sp_gemm_b) gives sp_gemm_nt's bits at every level for the same row blocks
 * (several A blocks against one B): ragged shapes, strides, a block of one row. */
Test(gemm, packed_b_same_bits_as_gemm_nt) {
    int shapes[][3] = {{64, 300, 64}, {5, 17, 8}, {1, 1, 1}, {67, 129, 32}, {3, 64, 130}, {130, 65, 5}};
    for (int s = 0; s < 6; s++) {
        int m = shapes[s][0], n = shapes[s][1], d = shapes[s][2], lda = d + 3, ldb = d + 1, ldc = n + 5;
        float *a = randn((size_t)m * lda, 170 + (uint64_t)s, 1.0f), *b = randn((size_t)n * ldb, 180 + (uint64_t)s, 1.0f);
        float *c1 = calloc((size_t)m * ldc, sizeof *c1), *c2 = calloc((size_t)m * ldc, sizeof *c2);
        for (int L = 0; L <= (int)sp_cpu_detect(); L++) {
            sp_gemm_nt_level((sp_cpu_level)L, m, n, d, a, lda, b, ldb, c1, ldc); /* one call, all rows */
            sp_gemm_b pb;
            sp_gemm_b_init_level(&pb, (sp_cpu_level)L, n, d, b, ldb);
            cr_assert(pb.packed != NULL, "level %d packs", L);
            for (int i0 = 0; i0 < m; i0 += 7) { /* blocks of 7 rows, the last ragged */
                int bm = m - i0 < 7 ? m - i0 : 7;
                sp_gemm_nt_b(bm, a + (size_t)i0 * lda, lda, &pb, c2 + (size_t)i0 * ldc, ldc);
            }
            sp_gemm_b_free(&pb);
            for (int i = 0; i < m; i++)
                cr_assert(!memcmp(c1 + (size_t)i * ldc, c2 + (size_t)i * ldc, (size_t)n * sizeof *c1),
                          "level %d shape %d row %d differs", L, s, i);
        }
        free(a), free(b), free(c1), free(c2);
    }
}

/* C = A B^T at every level: within the fp32 rounding bound gamma_d sum|a||b| of the double
 * product, strided operands, ragged shapes; small-integer operands exactly. */
Test(gemm, matches_double_reference_and_is_exact_on_integers) {
    int shapes[][3] = {{64, 300, 64}, {5, 17, 8}, {1, 1, 1}, {67, 129, 32}, {3, 64, 130}};
    for (int s = 0; s < 5; s++) {
        int m = shapes[s][0], n = shapes[s][1], d = shapes[s][2], lda = d + 3, ldb = d + 1, ldc = n + 5;
        float *a = randn((size_t)m * lda, 70 + (uint64_t)s, 1.0f), *b = randn((size_t)n * ldb, 80 + (uint64_t)s, 1.0f);
        float *c = malloc((size_t)m * ldc * sizeof *c);
        for (int integer = 0; integer < 2; integer++) {
            if (integer) {
                for (int t = 0; t < m * lda; t++) a[t] = (float)((int)(a[t] * 60) % 127);
                for (int t = 0; t < n * ldb; t++) b[t] = (float)((int)fabsf(b[t] * 8) % 16);
            }
            for (int L = 0; L <= (int)sp_cpu_detect(); L++) {
                sp_gemm_nt_level((sp_cpu_level)L, m, n, d, a, lda, b, ldb, c, ldc);
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++) {
                        double ex = 0, mag = 0;
                        for (int k = 0; k < d; k++) {
                            ex += (double)a[i * lda + k] * b[j * ldb + k];
                            mag += fabs((double)a[i * lda + k] * b[j * ldb + k]);
                        }
                        double bound = integer ? 0.0 : 1.01 * d * ldexp(1.0, -24) * mag;
                        cr_assert(fabs(c[i * ldc + j] - ex) <= bound, "level %d shape %d (%d,%d): %g vs %g (bound %g)", L,
                                  s, i, j, c[i * ldc + j], ex, bound);
                    }
            }
        }
        free(a), free(b), free(c);
    }
}

/* Each entry of sp_gemm_nt is the level's chain s = s + a[i][k] b[j][k] (gemm.h) whatever the
 * shape: random shapes (odd sizes, strides, sub-blocks of a larger product) give, bit for bit,
 * the entry computed alone (1 x 1) and in a different block at the same level; the portable
 * entry is the scalar chain (product rounded, then sum) and the AVX2 and AVX-512 entries are
 * the fmaf chain, so AVX2 == AVX-512 where both run. A BLAS (whose order depends on the shape)
 * fails this. */
static float chain_portable(int d, const float *a, const float *b) {
    volatile float s = 0.0f; /* volatile: no contraction into an FMA, whatever the flags */
    for (int k = 0; k < d; k++) {
        volatile float p = a[k] * b[k];
        s = s + p;
    }
    return s;
}
static float chain_fma(int d, const float *a, const float *b) {
    float s = 0.0f;
    for (int k = 0; k < d; k++) s = fmaf(a[k], b[k], s);
    return s;
}
Test(gemm, every_entry_is_the_level_chain_whatever_the_shape) {
    uint64_t st = 0x9e3779b97f4a7c15u;
    for (int s = 0; s < 24; s++) {
        st = st * 6364136223846793005u + 1442695040888963407u;
        int m = 1 + (int)((st >> 33) % 37u), n = 1 + (int)((st >> 40) % 150u), d = 1 + (int)((st >> 50) % 97u);
        if (s == 0) m = 64, n = 300, d = 64; /* the score block's shape */
        int lda = d + (s % 3), ldb = d + (s % 5), ldc = n + 3;
        /* mixed magnitudes, so that the order of the sum shows in the last bits */
        float *a = randn((size_t)m * lda, 300 + (uint64_t)s, 1.0f), *b = randn((size_t)n * ldb, 400 + (uint64_t)s, 1.0f);
        for (int t = 0; t < n * ldb; t += 7) b[t] *= 1000.0f;
        float *c[3] = {NULL, NULL, NULL}, *cs = calloc((size_t)m * ldc, sizeof *cs);
        for (int L = 0; L <= (int)sp_cpu_detect(); L++) {
            c[L] = calloc((size_t)m * ldc, sizeof *c[L]);
            sp_gemm_nt_level((sp_cpu_level)L, m, n, d, a, lda, b, ldb, c[L], ldc);
            /* a sub-block [i0, i0 + bm) x [j0, j0 + bn) alone */
            int i0 = (int)((st >> 20) % (uint64_t)m), j0 = (int)((st >> 27) % (uint64_t)n);
            int bm = 1 + (int)((st >> 13) % (uint64_t)(m - i0)), bn = 1 + (int)((st >> 7) % (uint64_t)(n - j0));
            sp_gemm_nt_level((sp_cpu_level)L, bm, bn, d, a + (size_t)i0 * lda, lda, b + (size_t)j0 * ldb, ldb,
                             cs, ldc);
            for (int i = 0; i < bm; i++)
                for (int j = 0; j < bn; j++)
                    cr_assert(!memcmp(&cs[i * ldc + j], &c[L][(i0 + i) * ldc + j0 + j], sizeof *cs),
                              "level %d shape %d (%dx%dx%d): block entry (%d,%d) %a vs %a", L, s, m, n, d, i0 + i,
                              j0 + j, cs[i * ldc + j], c[L][(i0 + i) * ldc + j0 + j]);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) {
                    const float *ai = a + (size_t)i * lda, *bj = b + (size_t)j * ldb;
                    float one = NAN;
                    if ((i * 31 + j) % 5 == 0) { /* 1 x 1 products, a fifth of the entries */
                        sp_gemm_nt_level((sp_cpu_level)L, 1, 1, d, ai, lda, bj, ldb, &one, 1);
                        cr_assert(!memcmp(&one, &c[L][i * ldc + j], sizeof one), "level %d shape %d (%d,%d): 1x1 %a vs %a",
                                  L, s, i, j, one, c[L][i * ldc + j]);
                    }
                    float want = L == SP_CPU_PORTABLE ? chain_portable(d, ai, bj) : chain_fma(d, ai, bj);
                    cr_assert(!memcmp(&want, &c[L][i * ldc + j], sizeof want),
                              "level %d shape %d (%dx%dx%d) (%d,%d): chain %a vs %a", L, s, m, n, d, i, j, want,
                              c[L][i * ldc + j]);
                }
        }
        if (sp_cpu_detect() >= SP_CPU_AVX512)
            for (int i = 0; i < m; i++)
                cr_assert(!memcmp(c[SP_CPU_AVX2] + (size_t)i * ldc, c[SP_CPU_AVX512] + (size_t)i * ldc, (size_t)n * sizeof *cs),
                          "shape %d row %d: AVX2 and AVX-512 differ", s, i);
        free(a), free(b), free(cs), free(c[0]), free(c[1]), free(c[2]);
    }
}
