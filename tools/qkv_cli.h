/* qkv_cli.h: the command-line side of the user's own Q/K/V tensors (issue 8): `sprint run
 * --qkv FILE` and `sprint trace --qkv FILE / --export-qkv FILE` call these. */
#ifndef SPRINT_TOOLS_QKV_CLI_H
#define SPRINT_TOOLS_QKV_CLI_H

#include "cli.h"
#include "sprint/qkv.h"
#include "sprint/sim.h"

/* Loads the tensor set at path and simulates it (sp_sim_run_qkv) into out, named
 * "qkv:<file name>"; dies with a one-line message on a malformed file. */
void qkv_cli_run(cli_common *c, const char *path, sp_wl_result *out);
/* Loads a tensor set or dies with a one-line message. Notes reordered padding on stderr. */
sp_qkv *qkv_cli_load(cli_common *c, const char *path);

#endif
