/* qkv_cli.c: loading and simulating a user's Q/K/V tensor set for sprint run / sprint trace. */
#include "qkv_cli.h"

#include <stdio.h>
#include <string.h>

sp_qkv *qkv_cli_load(cli_common *c, const char *path) {
    sp_error err = {0};
    sp_qkv *q = NULL;
    if (sp_qkv_load(path, &q, &err) != SP_OK) cli_die_err(c, &err);
    if (!c->quiet) {
        long tok = 0;
        for (int i = 0; i < q->n_seq; i++) tok += q->seq[i].n_tok;
        fprintf(stderr, "[%s] %s: %d sequences (%ld tokens), %d layers x %d heads (%d kv heads) of %d, %s\n", c->cmd, path,
                q->n_seq, tok, q->layers, q->heads, q->kv_heads, q->d, q->causal ? "causal" : "bidirectional");
        if (q->reordered)
            fprintf(stderr, "[%s] %s: padding moved behind the tokens in %d sequences (key indices refer to the reordered "
                    "tokens)\n", c->cmd, path, q->reordered);
    }
    return q;
}

void qkv_cli_run(cli_common *c, const char *path, sp_wl_result *out) {
    sp_qkv *q = qkv_cli_load(c, path);
    char tmp[1024], name[64];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (size_t l = strlen(tmp); l > 1 && tmp[l - 1] == '/'; l--) tmp[l - 1] = 0; /* DIR/ names DIR */
    const char *base = strrchr(tmp, '/');
    /* the label keeps the directory's first 59 bytes (the run names the workload with 31,
     * sim.h); the bound in the format is what -Wformat-truncation checks */
    snprintf(name, sizeof name, "qkv:%.59s", base && base[1] ? base + 1 : tmp);
    sp_error err = {0};
    sp_sim_opts o = {.threads = (int)c->cfg.run_threads, .progress = cli_progress, .progress_user = c};
    sp_status st = sp_sim_run_qkv(&c->cfg, q, name, &o, out, &err);
    cli_progress_done();
    sp_qkv_free(q);
    if (st != SP_OK) cli_die_err(c, &err);
}
