/* split.c: slices of a corpus, for the accuracy protocol of issue 8: thresholds are calibrated
 * on stories that are not evaluated (by default the first half of a text's stories calibrate,
 * the second half is evaluated; docs/model.md, "Calibration and evaluation text"). */
#include <stdlib.h>
#include <string.h>

#include "sprint/model.h"

sp_status sp_corpus_slice(const sp_corpus *c, int from, int to, sp_corpus *out, sp_error *err) {
    memset(out, 0, sizeof *out);
    if (from < 0 || to > c->n || from >= to)
        return sp_error_set(err, SP_ERR_ARG, "corpus slice [%d, %d) outside the %d stories or empty", from, to, c->n);
    out->n = to - from;
    out->tokens = sp_xcalloc((size_t)out->n, sizeof *out->tokens);
    out->len = sp_xmalloc((size_t)out->n, sizeof *out->len);
    for (int i = 0; i < out->n; i++) {
        int l = c->len[from + i];
        out->len[i] = l;
        out->tokens[i] = sp_xmalloc((size_t)l, sizeof(int));
        memcpy(out->tokens[i], c->tokens[from + i], (size_t)l * sizeof(int));
        out->total_targets += l - 1;
    }
    return SP_OK;
}
