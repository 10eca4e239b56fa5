/* factory.c: builds an attention operator by mode name. */
#include <string.h>

#include "sprint/functional.h"

const char *const SP_ATTN_MODES = "dense";

sp_status sp_attn_op_create(const sp_op_request *req, int n_layers, int n_heads, sp_attn_op **out,
                            sp_error *err) {
    *out = NULL;
    if (n_layers <= 0 || n_heads <= 0)
        return sp_error_set(err, SP_ERR_ARG, "attention operator needs positive layers and heads");
    if (!strcmp(req->mode, "dense")) {
        *out = sp_attn_dense_create(n_layers, n_heads);
        return SP_OK;
    }
    return sp_error_set(err, SP_ERR_ARG, "unknown attention mode '%s' (expected one of %s)", req->mode,
                        SP_ATTN_MODES);
}
