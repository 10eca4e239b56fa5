/* sprint_example.c: calling the sprint library from your own program (issue 10).
 *
 * Makes the Q, K, V of one attention head (n tokens, dimension d) with a local pattern, runs
 * them through the SPRINT functional model (8-bit quantisation, in-ReRAM approximate scores,
 * comparator, exact recompute of the survivors) and the dense reference, and feeds the same
 * per-query pruning records to the architecture simulator: cycles, energy and main-memory
 * traffic of SPRINT and of the paper's baseline.
 *
 * Build against an installed sprint:
 *   cc sprint_example.c $(pkg-config --cflags --libs sprint) -o sprint_example
 * or, in CMake: find_package(sprint) and target_link_libraries(x sprint::sprintshared). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <sprint/sprint.h> /* the whole API; which calls are stable is listed there */

enum { N = 256, D = 64 };

/* the simulator consumes every query's record as the operator produces it */
static void feed_simulator(void *user, const sp_query_record *rec) { sp_sim_head_query(user, rec); }

static int fail(const char *what, const sp_error *err) {
    fprintf(stderr, "sprint_example: %s: %s\n", what, err->msg);
    return 1;
}

int main(void) {
    static float q[N * D], k[N * D], v[N * D], out[N * D], ref[N * D];
    /* tokens belong to runs of 16 sharing a topic vector: queries attend to their own run */
    sp_rng rng;
    sp_rng_seed(&rng, 42);
    float topic[N / 16][D];
    for (int t = 0; t < N / 16; t++)
        for (int j = 0; j < D; j++) topic[t][j] = (float)sp_rng_next_normal(&rng);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++) {
            q[i * D + j] = topic[i / 16][j] + 0.3f * (float)sp_rng_next_normal(&rng);
            k[i * D + j] = topic[i / 16][j] + 0.3f * (float)sp_rng_next_normal(&rng);
            v[i * D + j] = (float)sp_rng_next_normal(&rng);
        }
    sp_attn_head head = {.layer = 0, .head = 0, .n_q = N, .n_k = N, .d = D, .q = q, .k = k, .v = v, .out = out,
                         .ldq = D, .ldk = D, .ldv = D, .ldo = D, .causal = 0, .scale = 1.0f / sqrtf((float)D)};

    sp_config cfg;
    sp_config_defaults(&cfg); /* every key at its documented default (docs/config.md) */
    sp_error err = {0};
    sp_hw hw[SP_SIZE_COUNT];
    unsigned sizes;
    if (sp_sim_hw(&cfg, hw, &sizes, &err) != SP_OK) return fail("hardware", &err);
    sp_head_shape shape = {.n_k = N, .d = D, .causal = 0, .n_valid = N};
    if (sp_hw_check_head(&hw[0], N, D, &err) != SP_OK) return fail("geometry", &err);
    sp_sim_head *sim = sp_sim_head_create(hw, sizes, &shape);

    /* SPRINT: no calibration data here, so the onchip policy uses policy.delta_uncalibrated */
    sp_op_request req = {.mode = "sprint", .cfg = &cfg};
    sp_attn_op *op = NULL, *dense = NULL;
    if (sp_attn_op_create(&req, 1, 1, &op, &err) != SP_OK) return fail("sprint operator", &err);
    op->observer = feed_simulator;
    op->observer_user = sim;
    if (op->run(op, &head, &err) != SP_OK) return fail("sprint run", &err);

    sp_op_request dreq = {.mode = "dense", .cfg = &cfg};
    if (sp_attn_op_create(&dreq, 1, 1, &dense, &err) != SP_OK) return fail("dense operator", &err);
    head.out = ref;
    if (dense->run(dense, &head, &err) != SP_OK) return fail("dense run", &err);
    double maxdiff = 0, maxref = 0;
    for (int i = 0; i < N * D; i++) {
        if (fabs(out[i] - ref[i]) > maxdiff) maxdiff = fabs(out[i] - ref[i]);
        if (fabs(ref[i]) > maxref) maxref = fabs(ref[i]);
    }

    sp_design_result res[SP_SIZE_COUNT][SP_DESIGN_COUNT] = {0};
    sp_wl_stats stats = {0};
    sp_sim_head_finish(sim, 1.0, res, &stats);
    const sp_design_result *s = &res[0][SP_DESIGN_SPRINT], *b = &res[0][SP_DESIGN_BASELINE];
    printf("sprint example: one head, %d tokens, d = %d\n", N, D);
    printf("functional: kept %.2f%% of (query, key) pairs (%.2f%% fetched after the in-memory comparator); "
           "output vs dense max |diff| %.4f (max |out| %.3f)\n",
           100 * sp_attn_stats_kept_fraction(&op->stats[0]), 100 * sp_attn_stats_mem_kept_fraction(&op->stats[0]),
           maxdiff, maxref);
    printf("simulator (chip size %s): SPRINT %.0f cycles, %.3g pJ, %.0f bytes read; baseline %.0f cycles, %.3g pJ, "
           "%.0f bytes read; speedup %.2fx\n",
           sp_size_name(0), s->cycles, s->energy_pj_total, s->bytes_read, b->cycles, b->energy_pj_total, b->bytes_read,
           s->cycles > 0 ? b->cycles / s->cycles : 0);
    sp_sim_head_free(sim);
    sp_attn_op_free(op);
    sp_attn_op_free(dense);
    return s->cycles > 0 && b->cycles > s->cycles ? 0 : 1;
}
