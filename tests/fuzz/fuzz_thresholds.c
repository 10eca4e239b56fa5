/* fuzz_thresholds.c: the thresholds file reader (sp_thresholds_load, src/functional/policy.c).
 * Property: no crash; a loaded file saves and loads back to the same kind, shape and values
 * (bit for bit: %.17g round-trips every double). */
#include <math.h>

#include "fuzz_util.h"
#include "sprint/functional.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fuzz_write(0, data, size);
    sp_thresholds *t = NULL;
    sp_error err = {0};
    if (sp_thresholds_load(p, &t, &err) != SP_OK) {
        FUZZ_CHECK(t == NULL && err.msg[0] && !strchr(err.msg, '\n'), "failure without a one-line message");
        return 0;
    }
    FUZZ_CHECK(sp_thresholds_save(t, fuzz_path(1), &err) == SP_OK, "save: %s", err.msg);
    sp_thresholds *u = NULL;
    FUZZ_CHECK(sp_thresholds_load(fuzz_path(1), &u, &err) == SP_OK, "reload of a saved file: %s", err.msg);
    FUZZ_CHECK(!strcmp(t->kind, u->kind) && t->n_layers == u->n_layers && t->n_heads == u->n_heads &&
                   t->head_dim == u->head_dim && (t->values == NULL) == (u->values == NULL),
               "shape changed on reload");
    if (t->values)
        for (int i = 0; i < t->n_layers * t->n_heads; i++)
            FUZZ_CHECK(t->values[i] == u->values[i] || (isinf(t->values[i]) && t->values[i] == u->values[i]),
                       "value %d changed on reload", i);
    sp_thresholds_free(u);
    sp_thresholds_free(t);
    return 0;
}
