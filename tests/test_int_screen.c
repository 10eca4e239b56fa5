/* test_int_screen.c: is the integer in-memory score (packed int4 key MSBs x int8 DAC levels,
 * integer accumulation) bit-for-bit the fp32 emulation sp_reram_charge_block computes, at every
 * CPU level, on random heads and on real heads of the shared stories260K model? */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "functional/fn_internal.h"
#include "functional/int_screen.h"
#include "functional/int_screen_amx.h"
#include "helpers.h"

/* Integer charges at every level against the float emulation for one head. */
static void check_head(const float *q, const float *k, int nq, int nk, int d, int b, int dac_bits, const char *what) {
    int8_t *qi = malloc((size_t)nq * d), *ki = malloc((size_t)nk * d);
    float *sq = malloc((size_t)nq * sizeof *sq), *sk = malloc((size_t)nk * sizeof *sk);
    sp_quant_rows(q, nq, d, d, 0, NULL, qi, sq);
    sp_quant_rows(k, nk, d, d, 0, NULL, ki, sk);
    const int d8 = sp_iscreen_d8(d);
    float *qdf = malloc((size_t)nq * d * sizeof *qdf), *g = malloc((size_t)nk * d * sizeof *g);
    int8_t *qd = calloc((size_t)nq * d8, 1);
    uint8_t *m = malloc((size_t)nk * d);
    for (int i = 0; i < nq; i++)
        for (int c = 0; c < d; c++) {
            int lv = sp_dac_level(qi[i * d + c], dac_bits);
            qdf[i * d + c] = (float)lv;
            qd[i * d8 + c] = (int8_t)lv;
        }
    for (int j = 0; j < nk * d; j++) {
        m[j] = (uint8_t)sp_key_msb(ki[j], b);
        g[j] = (float)m[j];
    }
    float *Af = malloc((size_t)nq * nk * sizeof *Af);
    sp_reram_charge_block(nq, nk, d, qdf, g, Af);
    uint8_t *kp = malloc(sp_iscreen_pack_size(nk, d));
    sp_iscreen_pack(m, nk, d, d, kp);
    int32_t *Ai = malloc((size_t)nq * nk * sizeof *Ai);
    for (int L = 0; L <= (int)sp_cpu_detect(); L++) {
        memset(Ai, 0x55, (size_t)nq * nk * sizeof *Ai);
        sp_iscreen_block(kp, nk, d, qd, nq, Ai, nk, sp_iscreen_tile_for((sp_cpu_level)L));
        for (int t = 0; t < nq * nk; t++)
            cr_assert_eq((double)Ai[t], (double)Af[t], "%s level %s d %d b %d dac %d: pair %d integer %d vs float %.1f",
                         what, sp_cpu_level_name((sp_cpu_level)L), d, b, dac_bits, t, Ai[t], (double)Af[t]);
    }
    if (sp_iscreen_amx_available()) { /* AMX tiles: charges and comparator bits, 32 rows at a time */
        const int dA = sp_iscreen_amx_dA(d), nq32 = (nq + 31) / 32 * 32, nch = (nk + 63) / 64;
        const size_t ldm = (size_t)nch, lda = (size_t)nch * 64;
        uint8_t *kb = malloc(sp_iscreen_amx_pack_size(nk, d));
        sp_iscreen_amx_pack(m, nk, d, d, kb);
        int8_t *qa = calloc((size_t)nq32 * dA, 1);
        for (int i = 0; i < nq; i++) memcpy(qa + (size_t)i * dA, qd + (size_t)i * d8, (size_t)d);
        uint64_t *mk = malloc((size_t)nq32 * ldm * sizeof *mk);
        int32_t *A2 = malloc((size_t)nq32 * lda * sizeof *A2), tau[32];
        for (int i0 = 0; i0 < nq32; i0 += 32) {
            for (int r = 0; r < 32; r++) /* a reference near the row's charges: both outcomes occur */
                tau[r] = i0 + r < nq ? (int32_t)Af[(size_t)(i0 + r) * nk + (size_t)((i0 + r) % nk)] : INT32_MAX;
            sp_iscreen_amx_rows32(kb, nch, d, qa + (size_t)i0 * dA, tau, mk + (size_t)i0 * ldm, ldm,
                                  A2 + (size_t)i0 * lda, lda);
            for (int r = 0; r < 32 && i0 + r < nq; r++)
                for (int j = 0; j < nk; j++) {
                    int32_t want = (int32_t)Af[(size_t)(i0 + r) * nk + j];
                    cr_assert_eq(A2[(size_t)(i0 + r) * lda + j], want, "%s amx d %d b %d: row %d key %d: %d vs %d",
                                 what, d, b, i0 + r, j, A2[(size_t)(i0 + r) * lda + j], want);
                    int bit = (int)((mk[(size_t)(i0 + r) * ldm + j / 64] >> (j % 64)) & 1);
                    cr_assert_eq(bit, want >= tau[r], "%s amx: comparator bit row %d key %d", what, i0 + r, j);
                }
            /* the charges alone (the functional operator's onchip path) */
            memset(A2, 0x55, (size_t)32 * lda * sizeof *A2);
            sp_iscreen_amx_charges32(kb, nch, d, qa + (size_t)i0 * dA, A2, lda);
            for (int r = 0; r < 32 && i0 + r < nq; r++)
                for (int j = 0; j < nk; j++)
                    cr_assert_eq(A2[(size_t)r * lda + j], (int32_t)Af[(size_t)(i0 + r) * nk + j],
                                 "%s amx charges32 d %d b %d: row %d key %d", what, d, b, i0 + r, j);
        }
        free(kb), free(qa), free(mk), free(A2);
    } else
        cr_log_info("AMX not available here: the AMX screen is not tested on this machine");
    free(qi), free(ki), free(sq), free(sk), free(qdf), free(g), free(qd), free(m), free(Af), free(kp), free(Ai);
}

static float *randn(size_t n, uint64_t seed, float sd) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = sd * (float)sp_rng_normal(sp_rng_key(seed, 5, (uint64_t)i, 0, 0));
    return x;
}

Test(int_screen, random_heads_bit_exact) {
    /* 1, 5, 130: off the 4-byte groups the AMX packing copies whole */
    int ds[] = {8, 20, 32, 64, 128, 1, 5, 130};
    for (int t = 0; t < 8; t++) {
        int d = ds[t], nq = 13, nk = 150;
        float *q = randn((size_t)nq * d, 100 + (uint64_t)t, 1.0f), *k = randn((size_t)nk * d, 200 + (uint64_t)t, 1.0f);
        check_head(q, k, nq, nk, d, 4, 8, "random");
        check_head(q, k, nq, nk, d, 3, 6, "random");
        check_head(q, k, nq, nk, d, 2, 8, "random");
        free(q), free(k);
    }
}

/* The word-at-a-time packing gives the bytes of the nibble-at-a-time reference: random levels
 * with junk in the high nibbles (the packing keeps the low 4 bits), every d from 1 to 72 and
 * 130 (partial groups of 8), key counts off the 16-key panels and 64-key tiles, a row stride
 * larger than d. */
Test(int_screen, pack_matches_reference) {
    uint64_t st = 12345;
    for (int d = 1; d <= 130; d += d < 72 ? 1 : 58)
        for (int nk = 1; nk <= 200; nk += 37) {
            const int ldm = d + (nk % 3);
            uint8_t *m = malloc((size_t)nk * (size_t)ldm);
            for (size_t t = 0; t < (size_t)nk * (size_t)ldm; t++) {
                st = st * 6364136223846793005ull + 1442695040888963407ull;
                m[t] = (uint8_t)(st >> 56);
            }
            const size_t n = sp_iscreen_pack_size(nk, d);
            uint8_t *a = malloc(n), *b = malloc(n);
            memset(a, 0xA5, n), memset(b, 0x5A, n);
            sp_iscreen_pack(m, nk, d, ldm, a);
            sp_iscreen_pack_ref(m, nk, d, ldm, b);
            for (size_t t = 0; t < n; t++)
                cr_assert_eq(a[t], b[t], "d %d nk %d byte %zu: %02x vs %02x (reference)", d, nk, t, a[t], b[t]);
            free(m), free(a), free(b);
        }
}

/* Extreme levels: every MSB 15 against every query level +-127 (the largest sums). */
Test(int_screen, extreme_levels) {
    enum { D = 64, NK = 64 };
    uint8_t m[NK * D];
    memset(m, 15, sizeof m);
    int8_t q[4 * D];
    for (int c = 0; c < 4 * D; c++) q[c] = (int8_t)(c < 2 * D ? 127 : -127);
    uint8_t kp[NK * D / 2];
    cr_assert_eq(sp_iscreen_pack_size(NK, D), sizeof kp);
    sp_iscreen_pack(m, NK, D, D, kp);
    int32_t A[4 * NK];
    for (int L = 0; L <= (int)sp_cpu_detect(); L++) {
        sp_iscreen_block(kp, NK, D, q, 4, A, NK, sp_iscreen_tile_for((sp_cpu_level)L));
        for (int t = 0; t < 4 * NK; t++) cr_assert_eq(A[t], (t < 2 * NK ? 1 : -1) * 15 * 127 * D, "level %d", L);
    }
}

/* Real heads: Q and K of every layer and head of stories260K on a 200-token sequence. */
Test(int_screen, real_heads_bit_exact) {
    TH_NEED_SHARED(path, "models/stories260K.bin");
    sp_model *m = NULL;
    sp_error err = {0};
    cr_assert_eq(sp_model_load(path, &m, &err), SP_OK, "%s", err.msg);
    const sp_model_info *mi = sp_model_get_info(m);
    enum { N = 200 };
    for (int layer = 0; layer < mi->n_layers; layer++) {
        th_head cap[8];
        int nh = th_capture_layer(m, N, layer, cap);
        cr_assert_eq(nh, mi->n_heads < 8 ? mi->n_heads : 8);
        for (int h = 0; h < nh; h++) {
            check_head(cap[h].q, cap[h].k, N, cap[h].nk, cap[h].d, 4, 8, "stories260K");
            th_head_free(&cap[h]);
        }
    }
    sp_model_free(m);
}

/* The bits-only screen (sp_iscreen_masks_*: the tiles back to back, no charges) against the
 * tile of the same level chunk by chunk (charges and bits), with thresholds that cut through
 * the charges (each row's median-ish), INT32_MAX and INT32_MIN + 1, a row stride ldm > nchunk
 * whose other words must stay untouched, and d with a partial group. */
Test(int_screen, masks_match_the_tiles) {
    const int ds[] = {8, 12, 64, 72}, nks[] = {64, 200, 512};
    for (unsigned di = 0; di < sizeof ds / sizeof *ds; di++)
        for (unsigned ni = 0; ni < sizeof nks / sizeof *nks; ni++) {
            const int d = ds[di], nk = nks[ni], d8 = sp_iscreen_d8(d), G = d8 / 8, nch = (nk + 63) / 64;
            uint8_t *m = malloc((size_t)nk * d), *kp = malloc(sp_iscreen_pack_size(nk, d));
            int8_t q[4 * 80] = {0};
            for (int t = 0; t < nk * d; t++) m[t] = (uint8_t)(sp_rng_uniform(sp_rng_key(61, di, ni, (uint64_t)t, 0)) * 16);
            for (int r = 0; r < 4; r++)
                for (int c = 0; c < d; c++)
                    q[r * d8 + c] = (int8_t)(sp_rng_uniform(sp_rng_key(62, di, ni, (uint64_t)r, (uint64_t)c)) * 255 - 127);
            sp_iscreen_pack(m, nk, d, d, kp);
            const int8_t *rows[4] = {q, q + d8, q + 2 * d8, q + 3 * d8};
            for (int L = 0; L <= (int)sp_cpu_detect(); L++)
                for (int tc = 0; tc < 3; tc++) {
                    int32_t A[4][64], tau[4];
                    uint64_t want[4][9], got[4][10], mk[4];
                    sp_iscreen_tile_for((sp_cpu_level)L)(kp, G, rows, A, NULL, NULL);
                    for (int r = 0; r < 4; r++)
                        tau[r] = tc == 0 ? A[r][r * 7] : tc == 1 ? (r % 2 ? INT32_MAX : INT32_MIN + 1) : A[r][63] + r - 1;
                    for (int ch = 0; ch < nch; ch++) {
                        sp_iscreen_tile_for((sp_cpu_level)L)(kp + (size_t)ch * 4 * G * 64, G, rows, A, tau, mk);
                        for (int r = 0; r < 4; r++) want[r][ch] = mk[r];
                    }
                    memset(got, 0x5A, sizeof got);
                    sp_iscreen_masks_for((sp_cpu_level)L)(kp, G, nch, rows, tau, &got[0][0], 10);
                    for (int r = 0; r < 4; r++) {
                        for (int ch = 0; ch < nch; ch++)
                            cr_assert_eq(got[r][ch], want[r][ch], "level %d d %d nk %d case %d row %d chunk %d", L, d, nk,
                                         tc, r, ch);
                        for (int ch = nch; ch < 10; ch++) cr_assert_eq(got[r][ch], 0x5A5A5A5A5A5A5A5Aull, "wrote past");
                    }
                }
            free(m), free(kp);
        }
}
