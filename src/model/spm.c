/* spm.c: the USE-lite sentencepiece tokenizer (vocab.json).
 *
 * A port of Tokenizer.encode of the original USE-lite JS package
 * (@tensorflow-models/universal-sentence-encoder 1.3.3, dist/tokenizer/index.js), itself a
 * port of sentencepiece's EncodeAsIds, reproduced with its quirks so that ids match the
 * package bit for bit (checked against it in tests/test_encoder.c):
 *  - input: NFKC (ICU, as String.prototype.normalize in node), then, if not empty, U+2581
 *    in front and every U+0020 replaced by U+2581 (tabs and newlines stay, as unknowns);
 *  - symbols are UTF-16 code units (the package's ES5 loop), so a character outside the BMP
 *    is two unknown symbols (then merged into one unknown);
 *  - a null score (7 pieces containing ':' in the shipped vocab.json) counts as 0, as JS's
 *    null + x does;
 *  - ids 0..5 (unknown, control, user symbols) are never matched; a piece listed twice keeps
 *    its last id and score (the package's trie overwrites);
 *  - lattice: a start position with no matching piece gets the unknown (id 0, score 0, one
 *    symbol); for each end position, candidates are visited by ascending start and a candidate
 *    replaces the best when best == 0 or score >= best (so ties go to the shorter piece, and a
 *    best of exactly 0, e.g. after unknowns only, is always replaced); scores summed in double;
 *  - backtracking steps back by the UTF-16 length of the chosen piece's vocab string;
 *  - consecutive unknowns are merged into one. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include "sprint/encoder.h"
#include "sprint/model.h"

#define SP_SPM_RESERVED 6   /* the package's RESERVED_SYMBOLS_COUNT */
#define SP_SPM_MAX_VOCAB (1 << 22)
#define SP_SPM_SEP 0x2581   /* LOWER ONE EIGHTH BLOCK */

typedef struct spm_entry {
    UChar *s;        /* piece in UTF-16 */
    int len;         /* UTF-16 units */
    double score;
} spm_entry;

struct sp_spm {
    int n;
    spm_entry *v;
    int max_len;     /* longest matchable piece, UTF-16 units */
    /* open-addressing hash of matchable pieces -> id (the last id of a repeated piece) */
    int *slots;
    size_t n_slots;
};

static uint64_t hash_u16(const UChar *s, int n) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) h = (h ^ (uint64_t)s[i]) * 1099511628211ull;
    return h;
}

/* id of the piece s[0..n), or -1 */
static int spm_lookup(const sp_spm *t, const UChar *s, int n) {
    size_t mask = t->n_slots - 1, i = (size_t)hash_u16(s, n) & mask;
    for (;;) {
        int id = t->slots[i];
        if (id < 0) return -1;
        if (t->v[id].len == n && !memcmp(t->v[id].s, s, (size_t)n * sizeof(UChar))) return id;
        i = (i + 1) & mask;
    }
}

static void spm_insert(sp_spm *t, int id) {
    size_t mask = t->n_slots - 1, i = (size_t)hash_u16(t->v[id].s, t->v[id].len) & mask;
    for (;;) {
        int o = t->slots[i];
        if (o < 0 || (t->v[o].len == t->v[id].len && !memcmp(t->v[o].s, t->v[id].s, (size_t)t->v[id].len * sizeof(UChar)))) {
            t->slots[i] = id; /* a repeated piece: the later id wins, as in the package's trie */
            return;
        }
        i = (i + 1) & mask;
    }
}

void sp_spm_free(sp_spm *t) {
    if (!t) return;
    for (int i = 0; i < t->n; i++) free(t->v[i].s);
    free(t->v);
    free(t->slots);
    free(t);
}

int sp_spm_vocab_size(const sp_spm *t) { return t ? t->n : 0; }

/* UTF-8 (len bytes) to a malloc'd UTF-16 buffer; -1 on invalid UTF-8. */
static int utf8_to_u16(const char *s, size_t len, UChar **out) {
    *out = NULL;
    if (len > (size_t)INT32_MAX / 2) return -1;
    UErrorCode ec = U_ZERO_ERROR;
    int32_t n = 0;
    u_strFromUTF8(NULL, 0, &n, s, (int32_t)len, &ec);
    if (ec != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(ec)) return -1;
    ec = U_ZERO_ERROR;
    UChar *b = sp_xmalloc((size_t)n + 1, sizeof *b);
    u_strFromUTF8(b, n + 1, NULL, s, (int32_t)len, &ec);
    if (U_FAILURE(ec)) {
        free(b);
        return -1;
    }
    *out = b;
    return n;
}

sp_status sp_spm_parse(const char *json, size_t len, const char *origin, sp_spm **out, sp_error *err) {
    *out = NULL;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return sp_error_set(err, SP_ERR_FORMAT, "%s: not valid JSON", origin);
    sp_status s = SP_OK;
    sp_spm *t = NULL;
    int n = cJSON_IsArray(root) ? cJSON_GetArraySize(root) : 0;
    if (n <= SP_SPM_RESERVED || n > SP_SPM_MAX_VOCAB) {
        s = sp_error_set(err, SP_ERR_FORMAT, "%s: expected a JSON array of %d..%d [piece, score] pairs", origin,
                         SP_SPM_RESERVED + 1, SP_SPM_MAX_VOCAB);
        goto done;
    }
    t = sp_xcalloc(1, sizeof *t);
    t->v = sp_xcalloc((size_t)n, sizeof *t->v);
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        int i = t->n;
        const cJSON *p = cJSON_GetArrayItem(e, 0), *sc = cJSON_GetArrayItem(e, 1);
        if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 || !cJSON_IsString(p) ||
            !(cJSON_IsNumber(sc) || cJSON_IsNull(sc))) {
            s = sp_error_set(err, SP_ERR_FORMAT, "%s: entry %d is not a [piece string, score number or null] pair",
                             origin, i);
            goto done;
        }
        int l = utf8_to_u16(p->valuestring, strlen(p->valuestring), &t->v[i].s);
        t->n++; /* owns v[i].s from here, even on the errors below */
        if (l < 0) {
            s = sp_error_set(err, SP_ERR_FORMAT, "%s: entry %d: piece is not valid UTF-8", origin, i);
            goto done;
        }
        if (l == 0 && i == 0) { /* the package steps back by its length after an unknown */
            s = sp_error_set(err, SP_ERR_FORMAT, "%s: entry 0 (the unknown piece) is empty", origin);
            goto done;
        }
        t->v[i].len = l;
        t->v[i].score = cJSON_IsNull(sc) ? 0.0 : sc->valuedouble; /* JS: null + x == x */
    }
    t->n_slots = 16;
    while (t->n_slots < 2 * (size_t)n) t->n_slots *= 2;
    t->slots = sp_xmalloc(t->n_slots, sizeof *t->slots);
    for (size_t i = 0; i < t->n_slots; i++) t->slots[i] = -1;
    for (int i = SP_SPM_RESERVED; i < n; i++) {
        if (t->v[i].len == 0) continue; /* the package's trie never matches an empty piece */
        spm_insert(t, i);
        if (t->v[i].len > t->max_len) t->max_len = t->v[i].len;
    }
done:
    cJSON_Delete(root);
    if (s != SP_OK) {
        sp_spm_free(t);
        return s;
    }
    *out = t;
    return SP_OK;
}

sp_status sp_spm_load(const char *path, sp_spm **out, sp_error *err) {
    char *json = NULL;
    size_t len = 0;
    *out = NULL;
    sp_status s = sp_read_file(path, &json, &len, err);
    if (s != SP_OK) return s;
    s = sp_spm_parse(json, len, path, out, err);
    free(json);
    return s;
}

/* NFKC of u[0..n) into a malloc'd buffer; returns its length or -1. */
static int nfkc(const UChar *u, int n, UChar **out) {
    UErrorCode ec = U_ZERO_ERROR;
    const UNormalizer2 *nf = unorm2_getNFKCInstance(&ec);
    if (U_FAILURE(ec)) return -1;
    int32_t cap = n * 4 + 16; /* NFKC may expand (e.g. U+FDFA to 18 units); retried if short */
    for (int attempt = 0; attempt < 2; attempt++) {
        UChar *b = sp_xmalloc((size_t)cap, sizeof *b);
        ec = U_ZERO_ERROR;
        int32_t m = unorm2_normalize(nf, u, n, b, cap, &ec);
        if (ec == U_BUFFER_OVERFLOW_ERROR) {
            free(b);
            cap = m + 1;
            continue;
        }
        if (U_FAILURE(ec)) {
            free(b);
            return -1;
        }
        *out = b;
        return m;
    }
    return -1;
}

sp_status sp_spm_encode(const sp_spm *t, const char *text, size_t len, int **ids, int *n_ids, sp_error *err) {
    *ids = NULL;
    *n_ids = 0;
    UChar *u = NULL, *nf = NULL;
    int n = utf8_to_u16(text, len, &u);
    if (n < 0) return sp_error_set(err, SP_ERR_DATA, "text is not valid UTF-8");
    int m = nfkc(u, n, &nf);
    free(u);
    if (m < 0) return sp_error_set(err, SP_ERR_DATA, "text cannot be NFKC-normalised");
    if (m == 0) {
        free(nf);
        return SP_OK;
    }
    /* sym = U+2581 + normalised text with ' ' -> U+2581 */
    int ns = m + 1;
    UChar *sym = sp_xmalloc((size_t)ns, sizeof *sym);
    sym[0] = SP_SPM_SEP;
    for (int i = 0; i < m; i++) sym[i + 1] = nf[i] == 0x20 ? SP_SPM_SEP : nf[i];
    free(nf);

    double *best = sp_xcalloc((size_t)ns + 1, sizeof *best);
    int *words = sp_xcalloc((size_t)ns + 1, sizeof *words);
    /* Viterbi: for each end, starts ascending (= piece lengths descending). A start with no
     * piece at all contributes the unknown of length 1 (score 0). */
    for (int end = 1; end <= ns; end++) {
        int lmax = end < t->max_len ? end : t->max_len;
        if (lmax < 1) lmax = 1;
        for (int start = end - lmax; start < end; start++) {
            int l = end - start, id = spm_lookup(t, sym + start, l);
            double sc;
            if (id >= 0) {
                sc = t->v[id].score;
            } else if (l == 1) {
                /* unknown only if nothing at all matches from this start */
                int any = 0;
                for (int k = 1; k <= t->max_len && start + k <= ns && !any; k++)
                    any = spm_lookup(t, sym + start, k) >= 0;
                if (any) continue;
                id = 0;
                sc = 0.0;
            } else {
                continue;
            }
            double score = sc + best[start];
            if (best[end] == 0 || score >= best[end]) {
                best[end] = score;
                words[end] = id;
            }
        }
    }
    int *res = sp_xmalloc((size_t)ns, sizeof *res);
    int nr = 0;
    for (int it = ns; it > 0;) {
        int id = words[it];
        res[nr++] = id;
        it -= t->v[id].len > 0 ? t->v[id].len : 1;
    }
    /* merge consecutive unknowns (on the reversed list, as the package does), then reverse */
    int *outv = sp_xmalloc((size_t)nr + 1, sizeof *outv);
    int no = 0, prev_unk = 0;
    for (int i = 0; i < nr; i++) {
        if (!(prev_unk && res[i] == 0)) outv[no++] = res[i];
        prev_unk = res[i] == 0;
    }
    for (int i = 0; i < no / 2; i++) {
        int x = outv[i];
        outv[i] = outv[no - 1 - i];
        outv[no - 1 - i] = x;
    }
    free(res);
    free(best);
    free(words);
    free(sym);
    *ids = outv;
    *n_ids = no;
    return SP_OK;
}
