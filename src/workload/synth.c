/* synth.c: synthetic Q, K, V with realistic attention structure (paper section 4 workloads,
 * section 2.4 locality). The head dimension is split in two halves:
 *   positional half  random Fourier features of the token position, so q_i.k_j ~ band_weight
 *                    * exp(-(i-j)^2 / (2 w^2)) with the half-height at band_width tokens;
 *   content half     a cluster centroid (topics come in runs of geometric length segment_len,
 *                    so adjacent tokens share clusters), i.i.d. noise, and for the first
 *                    n_sinks tokens (keys) a "sink" direction every query also carries.
 * Queries are scaled so that scale*q.k of a perfectly aligned pair is `temperature` nats.
 * Every draw comes from sp_rng_key(seed, purpose, layer, head, index): thread-count free. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sprint/sim.h"

enum { P_SEG = 11, P_CLUSTER, P_CENTROID, P_FREQ, P_PHASE, P_NOISE_Q, P_NOISE_K, P_SINK, P_V };

/* The per-token draws share (seed, purpose, lh) and then t, so those hashes are taken once
 * (key_prefix, then sp_rng_key_step per token and per element): the same keys as sp_rng_key,
 * the same numbers. */
static uint64_t key_prefix(uint64_t seed, uint64_t a, uint64_t b) {
    return sp_rng_key_step(sp_rng_key_step(sp_rng_key_start(seed), a), b);
}

void sp_workload_synth_head(const sp_config *cfg, const sp_workload *wl, int layer, int head, float *q, float *k,
                            float *v) {
    const int n = wl->seq, d = wl->d;
    const uint64_t seed = (uint64_t)cfg->run_seed;
    /* streams differ per workload (name), layer and head */
    uint64_t lh = sp_hash64((uint64_t)layer * 1000003u + (uint64_t)head);
    for (const char *c = wl->name; *c; c++) lh = sp_hash64(lh ^ (uint64_t)(unsigned char)*c);
    const int dp = d / 2, dc = d - dp, nf = dp / 2 > 0 ? dp / 2 : 1;
    /* Gaussian kernel exp(-s^2 D^2 / 2) halves at D = sqrt(2 ln 2) / s. */
    const double sigma = cfg->workload_band_width > 0 ? sqrt(2.0 * log(2.0)) / cfg->workload_band_width : 0.0;
    double *freq = sp_xmalloc((size_t)nf, sizeof *freq);
    for (int f = 0; f < nf; f++) freq[f] = sigma * sp_rng_normal(sp_rng_key(seed, P_FREQ, lh, (uint64_t)f, 0));
    const int ncl = (int)cfg->workload_n_clusters;
    double *cent = sp_xmalloc((size_t)ncl * (size_t)dc, sizeof *cent);
    for (int c = 0; c < ncl; c++) {
        double nrm = 0;
        for (int e = 0; e < dc; e++) {
            double x = sp_rng_normal(sp_rng_key(seed, P_CENTROID, lh, (uint64_t)c, (uint64_t)e));
            cent[(size_t)c * dc + e] = x;
            nrm += x * x;
        }
        nrm = sqrt(nrm > 0 ? nrm : 1);
        for (int e = 0; e < dc; e++) cent[(size_t)c * dc + e] /= nrm;
    }
    double *sink = sp_xmalloc((size_t)dc, sizeof *sink), snrm = 0;
    for (int e = 0; e < dc; e++) {
        sink[e] = sp_rng_normal(sp_rng_key(seed, P_SINK, lh, (uint64_t)e, 0));
        snrm += sink[e] * sink[e];
    }
    for (int e = 0; e < dc; e++) sink[e] /= sqrt(snrm > 0 ? snrm : 1);
    const double wb = sqrt(cfg->workload_band_weight / nf), wc = sqrt(cfg->workload_cluster_weight);
    const double wn = cfg->workload_noise / sqrt((double)dc), ws = sqrt(cfg->workload_sink_weight);
    /* queries carry the temperature; the op applies scale = 1/sqrt(d) */
    const double qs = (wl->temperature > 0 ? wl->temperature : cfg->workload_temperature) * sqrt((double)d);
    const double p_new = 1.0 / cfg->workload_segment_len;
    const uint64_t pq = key_prefix(seed, P_NOISE_Q, lh), pk = key_prefix(seed, P_NOISE_K, lh);
    const uint64_t pv = key_prefix(seed, P_V, lh);
    int cl = 0;
    for (int t = 0; t < n; t++) {
        if (t == 0 || sp_rng_uniform(sp_rng_key(seed, P_SEG, lh, (uint64_t)t, 0)) < p_new)
            cl = (int)(sp_rng_uniform(sp_rng_key(seed, P_CLUSTER, lh, (uint64_t)t, 0)) * ncl);
        float *qr = q + (size_t)t * d, *kr = k + (size_t)t * d, *vr = v ? v + (size_t)t * d : NULL;
        for (int f = 0; f < dp; f++) {
            int fi = f / 2 < nf ? f / 2 : nf - 1;
            double ph = freq[fi] * t;
            double x = (f & 1) ? sin(ph) : cos(ph);
            if (dp % 2 && f == dp - 1) x = 0; /* odd leftover dimension unused */
            qr[f] = (float)(qs * wb * x);
            kr[f] = (float)(wb * x);
        }
        /* = sp_rng_key(seed, P_NOISE_Q / P_NOISE_K / P_V, lh, t, e) */
        const uint64_t hq = sp_rng_key_step(pq, (uint64_t)t), hk = sp_rng_key_step(pk, (uint64_t)t);
        const uint64_t hv = v ? sp_rng_key_step(pv, (uint64_t)t) : 0;
        for (int e = 0; e < dc; e++) {
            double c = cent[(size_t)cl * dc + e];
            double nq = sp_rng_normal(sp_rng_key_step(hq, (uint64_t)e));
            double nk = sp_rng_normal(sp_rng_key_step(hk, (uint64_t)e));
            double sq = ws * sink[e];
            double sk = t < cfg->workload_n_sinks ? ws * sink[e] : 0.0;
            qr[dp + e] = (float)(qs * (wc * c + wn * nq + sq));
            kr[dp + e] = (float)(wc * c + wn * nk + sk);
        }
        if (vr)
            for (int e = 0; e < d; e++) vr[e] = (float)sp_rng_normal(sp_rng_key_step(hv, (uint64_t)e));
    }
    free(freq);
    free(cent);
    free(sink);
}
