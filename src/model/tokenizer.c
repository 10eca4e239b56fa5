/* tokenizer.c: the llama2.c BPE tokenizer (tokenizer.bin) and its encode/decode.
 *
 * File format: int32 max_token_length, then for each of vocab_size tokens: float32 score,
 * int32 len, len bytes. The vocabulary size is not stored; it must equal the model's, and a
 * file holding any other number of tokens is an error.
 *
 * Encoding follows llama2.c's encode() exactly: optional BOS, a dummy-prefix " " token when
 * the text is non-empty, one token per UTF-8 code point (byte fallback: byte + 3 when the code
 * point is not in the vocabulary), then repeatedly merge the adjacent pair whose concatenation
 * is the vocabulary entry of highest score (ties: the leftmost pair; scores must exceed -1e10).
 * llama2.c rescans every pair after every merge (quadratic); here a heap of candidate pairs
 * with lazy invalidation picks the same pair each step in O(log n). Unlike llama2.c the text
 * is validated as UTF-8 first. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sprint/model.h"

typedef struct sp_vocab_entry {
    const char *str;
    int id;
} sp_vocab_entry;

struct sp_tokenizer {
    int vocab_size;
    int max_token_length;
    char **vocab;            /* vocab[i]: NUL-terminated bytes of token i */
    float *scores;           /* merge scores */
    sp_vocab_entry *sorted;  /* vocabulary sorted by strcmp, for bsearch */
    char byte_pieces[512];   /* byte b as the string at byte_pieces + 2b */
    char *blob;              /* storage of every token string */
};

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const sp_vocab_entry *)a)->str, ((const sp_vocab_entry *)b)->str);
}

/* Token id of the string s, or -1. */
static int lookup(const sp_tokenizer *t, const char *s) {
    sp_vocab_entry key = {.str = s, .id = 0};
    const sp_vocab_entry *e = bsearch(&key, t->sorted, (size_t)t->vocab_size, sizeof key, cmp_entry);
    return e ? e->id : -1;
}

void sp_tokenizer_free(sp_tokenizer *t) {
    if (!t) return;
    free(t->vocab);
    free(t->scores);
    free(t->sorted);
    free(t->blob);
    free(t);
}

int sp_tokenizer_vocab_size(const sp_tokenizer *t) { return t->vocab_size; }

static int32_t rd_i32(const unsigned char *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

sp_status sp_tokenizer_load(const char *path, int vocab_size, sp_tokenizer **out, sp_error *err) {
    *out = NULL;
    if (vocab_size <= 0) return sp_error_set(err, SP_ERR_ARG, "tokenizer %s: vocabulary size %d", path, vocab_size);
    char *text = NULL;
    size_t len = 0;
    sp_status s = sp_read_file(path, &text, &len, err);
    if (s != SP_OK) return s;
    const unsigned char *b = (const unsigned char *)text;
    if (len < 4) {
        free(text);
        return sp_error_set(err, SP_ERR_FORMAT, "%s: truncated tokenizer: %zu bytes, no header", path, len);
    }
    int maxlen = rd_i32(b);
    if (maxlen <= 0 || maxlen > 65536) {
        free(text);
        return sp_error_set(err, SP_ERR_FORMAT, "%s: not a llama2.c tokenizer: max_token_length = %d", path, maxlen);
    }
    /* First pass: count the tokens and validate every record. */
    size_t off = 4, count = 0, bytes = 0;
    while (off < len) {
        if (len - off < 8) {
            free(text);
            return sp_error_set(err, SP_ERR_FORMAT, "%s: truncated tokenizer: token %zu record cut at byte %zu", path,
                                count, off);
        }
        float sc;
        memcpy(&sc, b + off, 4);
        int32_t tl = rd_i32(b + off + 4);
        if (!isfinite(sc) || tl <= 0 || tl > maxlen || (size_t)tl > len - off - 8) {
            free(text);
            return sp_error_set(err, SP_ERR_FORMAT,
                                "%s: bad tokenizer record %zu at byte %zu (score %g, length %d, max_token_length %d%s)",
                                path, count, off, (double)sc, (int)tl, maxlen,
                                tl > 0 && tl <= maxlen ? ", truncated" : "");
        }
        off += 8 + (size_t)tl;
        bytes += (size_t)tl + 1;
        count++;
    }
    if (count != (size_t)vocab_size) {
        free(text);
        return sp_error_set(err, SP_ERR_FORMAT, "%s: tokenizer has %zu tokens but the model's vocabulary has %d", path,
                            count, vocab_size);
    }
    sp_tokenizer *t = sp_xcalloc(1, sizeof *t);
    t->vocab_size = vocab_size;
    t->max_token_length = maxlen;
    t->vocab = sp_xmalloc((size_t)vocab_size, sizeof *t->vocab);
    t->scores = sp_xmalloc((size_t)vocab_size, sizeof *t->scores);
    t->sorted = sp_xmalloc((size_t)vocab_size, sizeof *t->sorted);
    t->blob = sp_xmalloc(bytes, 1);
    char *dst = t->blob;
    off = 4;
    for (int i = 0; i < vocab_size; i++) {
        memcpy(&t->scores[i], b + off, 4);
        size_t tl = (size_t)rd_i32(b + off + 4);
        memcpy(dst, b + off + 8, tl);
        dst[tl] = 0;
        t->vocab[i] = dst;
        t->sorted[i].str = dst;
        t->sorted[i].id = i;
        dst += tl + 1;
        off += 8 + tl;
    }
    free(text);
    qsort(t->sorted, (size_t)vocab_size, sizeof *t->sorted, cmp_entry);
    for (int i = 0; i < 256; i++) {
        t->byte_pieces[2 * i] = (char)i;
        t->byte_pieces[2 * i + 1] = 0;
    }
    *out = t;
    return SP_OK;
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when invalid (overlong forms,
 * surrogates, code points above U+10FFFF, truncated sequences, NUL bytes). */
static int utf8_len(const unsigned char *s, size_t avail) {
    unsigned c = s[0];
    if (c == 0) return 0;
    if (c < 0x80) return 1;
    int n;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) n = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, cp = c & 0x07;
    else return 0;
    if ((size_t)n > avail) return 0;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* A candidate merge of nodes (left, right), valid while both keep their versions. */
typedef struct pair_cand {
    float score;
    int left, right, id;
    unsigned vl, vr;
} pair_cand;

/* Heap order: higher score first, then the leftmost pair (llama2.c's strict '>' scan). */
static int cand_before(const pair_cand *a, const pair_cand *b) {
    if (a->score != b->score) return a->score > b->score;
    return a->left < b->left;
}

static void heap_push(pair_cand *h, int *n, pair_cand c) {
    int i = (*n)++;
    h[i] = c;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!cand_before(&h[i], &h[p])) break;
        pair_cand tmp = h[i];
        h[i] = h[p];
        h[p] = tmp;
        i = p;
    }
}

static pair_cand heap_pop(pair_cand *h, int *n) {
    pair_cand top = h[0];
    h[0] = h[--*n];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, best = i;
        if (l < *n && cand_before(&h[l], &h[best])) best = l;
        if (r < *n && cand_before(&h[r], &h[best])) best = r;
        if (best == i) break;
        pair_cand tmp = h[i];
        h[i] = h[best];
        h[best] = tmp;
        i = best;
    }
    return top;
}

typedef struct merge_state {
    const sp_tokenizer *t;
    int *tok, *next, *prev;
    unsigned *ver;
    pair_cand *heap;
    int nheap;
    char *buf;
} merge_state;

/* Pushes the merge of nodes a and b if their concatenation is a token eligible for merging. */
static void consider(merge_state *ms, int a, int b) {
    if (a < 0 || b < 0) return;
    const sp_tokenizer *t = ms->t;
    const char *sa = t->vocab[ms->tok[a]], *sb = t->vocab[ms->tok[b]];
    size_t la = strlen(sa), lb = strlen(sb);
    memcpy(ms->buf, sa, la);
    memcpy(ms->buf + la, sb, lb + 1);
    int id = lookup(t, ms->buf);
    if (id < 0 || !(t->scores[id] > -1e10f)) return;
    pair_cand c = {.score = t->scores[id], .left = a, .right = b, .id = id, .vl = ms->ver[a], .vr = ms->ver[b]};
    heap_push(ms->heap, &ms->nheap, c);
}

/* Appends the token of the code point cp (cl bytes), or its bytes as byte-fallback tokens
 * (id byte + 3). Returns 0, or the fallback id that lies outside the vocabulary. */
static int push_piece(const sp_tokenizer *t, const char *cp, int cl, int *tok, int *n) {
    int id = lookup(t, cp);
    if (id >= 0) {
        tok[(*n)++] = id;
        return 0;
    }
    for (int j = 0; j < cl; j++)
        if ((unsigned char)cp[j] + 3 >= t->vocab_size) return (unsigned char)cp[j] + 3;
    for (int j = 0; j < cl; j++) tok[(*n)++] = (unsigned char)cp[j] + 3;
    return 0;
}

sp_status sp_tokenizer_encode(const sp_tokenizer *t, const char *text, size_t len, int bos, int eos, int **tokens,
                              int *n_tokens, sp_error *err) {
    *tokens = NULL;
    *n_tokens = 0;
    const unsigned char *s = (const unsigned char *)text;
    if (len > (size_t)(INT_MAX / 4)) /* token counts and node indices are int */
        return sp_error_set(err, SP_ERR_DATA, "text of %zu bytes is too long to encode at once (at most %d)", len,
                            INT_MAX / 4);
    for (size_t i = 0; i < len;) {
        int n = utf8_len(s + i, len - i);
        if (!n)
            return sp_error_set(err, SP_ERR_DATA, "text is not valid UTF-8: %s byte 0x%02X at offset %zu",
                                s[i] ? "bad" : "NUL", s[i], i);
        i += (size_t)n;
    }
    /* BOS/EOS are ids 1 and 2, byte b falls back to id b + 3 (llama2.c's convention): a small
     * vocabulary may lack them, which is a data error, not a bug. */
    if ((bos || eos) && t->vocab_size <= (eos ? 2 : 1))
        return sp_error_set(err, SP_ERR_DATA, "tokenizer vocabulary of %d tokens has no %s token (id %d)",
                            t->vocab_size, eos ? "EOS" : "BOS", eos ? 2 : 1);
    size_t cap = len + 3, bad_off = 0;
    int *tok = sp_xmalloc(cap, sizeof *tok);
    int n = 0, s_bad;
    if (bos) tok[n++] = 1;
    if (len > 0 && (s_bad = push_piece(t, " ", 1, tok, &n)) != 0) goto no_token;
    char cp[5];
    for (size_t i = 0; i < len;) {
        int cl = utf8_len(s + i, len - i);
        memcpy(cp, s + i, (size_t)cl);
        cp[cl] = 0;
        if ((s_bad = push_piece(t, cp, cl, tok, &n)) != 0) {
            bad_off = i;
            goto no_token;
        }
        i += (size_t)cl;
    }
    /* Merges over a doubly linked list of nodes; node index order is sequence order. */
    merge_state ms = {.t = t, .tok = tok, .nheap = 0};
    size_t nn = (size_t)n + 1;
    ms.next = sp_xmalloc(nn, sizeof(int));
    ms.prev = sp_xmalloc(nn, sizeof(int));
    ms.ver = sp_xcalloc(nn, sizeof(unsigned));
    ms.heap = sp_xmalloc(3 * nn, sizeof(pair_cand));
    ms.buf = sp_xmalloc(2 * (size_t)t->max_token_length + 2, 1);
    for (int i = 0; i < n; i++) {
        ms.next[i] = i + 1 < n ? i + 1 : -1;
        ms.prev[i] = i - 1;
    }
    for (int i = 0; i + 1 < n; i++) consider(&ms, i, i + 1);
    int alive = n;
    while (ms.nheap > 0) {
        pair_cand c = heap_pop(ms.heap, &ms.nheap);
        if (ms.ver[c.left] != c.vl || ms.ver[c.right] != c.vr || ms.next[c.left] != c.right) continue;
        /* merge right into left */
        tok[c.left] = c.id;
        ms.ver[c.left]++;
        ms.ver[c.right]++; /* right is dead: every candidate naming it is stale */
        int r2 = ms.next[c.right];
        ms.next[c.left] = r2;
        if (r2 >= 0) ms.prev[r2] = c.left;
        ms.next[c.right] = -2;
        alive--;
        consider(&ms, ms.prev[c.left], c.left);
        consider(&ms, c.left, r2);
    }
    int *res = sp_xmalloc((size_t)alive + 2, sizeof *res);
    int m = 0;
    for (int i = n > 0 ? 0 : -1; i >= 0; i = ms.next[i]) res[m++] = tok[i];
    SP_ASSERT(m == alive);
    if (eos) res[m++] = 2;
    free(tok);
    free(ms.next);
    free(ms.prev);
    free(ms.ver);
    free(ms.heap);
    free(ms.buf);
    *tokens = res;
    *n_tokens = m;
    return SP_OK;
no_token:
    free(tok);
    return sp_error_set(err, SP_ERR_DATA,
                        "character at offset %zu is not in the vocabulary and its byte-fallback token %d is "
                        "outside the vocabulary of %d tokens", bad_off, s_bad, t->vocab_size);
}

/* Value of the hex digit c, or -1. */
static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

const char *sp_tokenizer_decode(const sp_tokenizer *t, int prev, int tok) {
    if (tok < 0 || tok >= t->vocab_size) return "";
    const char *piece = t->vocab[tok];
    if (prev == 1 && piece[0] == ' ') piece++;
    /* raw byte tokens look like "<0x0A>" (hex digits of either case, as llama2.c's sscanf %X) */
    if (strlen(piece) == 6 && !strncmp(piece, "<0x", 3) && piece[5] == '>') {
        int hi = hex_digit(piece[3]), lo = hex_digit(piece[4]);
        if (hi >= 0 && lo >= 0) return t->byte_pieces + 2 * (hi * 16 + lo);
    }
    return piece;
}
