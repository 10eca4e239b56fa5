/* sprint generate: text from a llama2.c model, greedy or top-p sampling. Decodes one token per
 * step through a KV cache (sp_model_step) and the chosen attention operator; --no-kv-cache
 * re-runs the forward pass over the whole prefix at every step (the earlier path, kept to
 * measure the cache's speed-up side by side). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "sprint/functional.h"
#include "sprint/model.h"

static void help(void) {
    printf("usage: sprint generate [--model M] [--tokenizer T] [--prompt S] [--steps N] [--temperature X]\n"
           "                       [--topp P] [--attention MODE] [--no-kv-cache] [common options]\n\n"
           "Generates text from the model, starting from BOS and the prompt. Greedy (argmax) when the\n"
           "temperature is 0, otherwise samples from softmax(logits / temperature) restricted to the\n"
           "smallest set of tokens whose probability reaches P (top-p), seeded by run.seed (--seed).\n"
           "Stops after N tokens, at the end of the context, or when the model emits BOS.\n\n"
           "  --model M          llama2.c checkpoint (default: model.checkpoint, else the shared stories260K.bin)\n"
           "  --tokenizer T      llama2.c tokenizer.bin (default: model.tokenizer, else the shared tok512.bin)\n"
           "  --prompt S         prompt text (default: empty)\n"
           "  --steps N          tokens to generate, integer in [1, 100000] (default 256 tokens)\n"
           "  --temperature X    softmax temperature, dimensionless, in [0, 100]; 0 = greedy (default 1.0)\n"
           "  --topp P           top-p probability mass, in (0, 1] (default 0.9)\n"
           "  --attention MODE   attention operator: %s (default dense); SPRINT\n"
           "                     operators take their thresholds from policy.* (no calibration data here)\n"
           "  --no-kv-cache      re-run the whole prefix every step instead of decoding with the KV cache\n"
           "Prints the text on stdout; on stderr the token count, time (s) and speed (tokens/s).\n\n%s",
           SP_ATTN_MODES, CLI_COMMON_HELP);
}

/* The number v of option opt, in [lo, hi] ((lo, hi] when lo_open), an integer when integral;
 * exits 2 with the expected range otherwise. */
static double parse_num(cli_common *c, const char *opt, const char *v, double lo, double hi, int lo_open,
                        int integral) {
    char *end = NULL;
    double x = strtod(v, &end);
    int ok = v[0] && !*end && (lo_open ? x > lo : x >= lo) && x <= hi && (!integral || x == floor(x));
    if (!ok)
        cli_die(c, 2, "%s expects %s in %c%g, %g], got '%s'", opt, integral ? "an integer" : "a number",
                lo_open ? '(' : '[', lo, hi, v);
    return x;
}

typedef struct prob_index {
    float p;
    int i;
} prob_index;

static int cmp_prob_desc(const void *a, const void *b) {
    const prob_index *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->i - y->i;
}

/* Next token from logits (V): argmax when temperature is 0, else top-p sampling with coin. */
static int sample(float *logits, int V, double temperature, double topp, double coin, prob_index *scratch) {
    if (temperature == 0.0) {
        int best = 0;
        for (int j = 1; j < V; j++)
            if (logits[j] > logits[best]) best = j;
        return best;
    }
    double mx = logits[0];
    for (int j = 1; j < V; j++)
        if (logits[j] > mx) mx = logits[j];
    double sum = 0.0;
    for (int j = 0; j < V; j++) sum += exp(((double)logits[j] - mx) / temperature);
    for (int j = 0; j < V; j++) {
        scratch[j].p = (float)(exp(((double)logits[j] - mx) / temperature) / sum);
        scratch[j].i = j;
    }
    qsort(scratch, (size_t)V, sizeof *scratch, cmp_prob_desc);
    double cum = 0.0;
    int last = V - 1;
    for (int j = 0; j < V; j++) {
        cum += scratch[j].p;
        if (cum >= topp) {
            last = j;
            break;
        }
    }
    double r = coin * cum, acc = 0.0;
    for (int j = 0; j <= last; j++) {
        acc += scratch[j].p;
        if (r < acc) return scratch[j].i;
    }
    return scratch[last].i;
}

/* Prints a decoded piece, skipping unprintable single bytes (as llama2.c's safe_printf). */
static void print_piece(const char *piece) {
    if (!piece[0]) return;
    if (!piece[1]) {
        unsigned char b = (unsigned char)piece[0];
        if (!(b >= 0x20 && b < 0x7f) && b != '\n' && b != '\t' && b < 0x80) return;
    }
    fputs(piece, stdout);
}

int cmd_generate(int argc, char **argv) {
    cli_common c;
    cli_init(&c, "generate");
    const char *prompt = "";
    int steps = 256;
    double temperature = 1.0, topp = 0.9;
    const char *mode = "dense";
    int use_cache = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_common_option(&c, argc, argv, &i) || cli_path_option(&c, argc, argv, &i, 0)) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help();
            return 0;
        } else if (!strcmp(a, "--prompt")) {
            prompt = cli_value(&c, argc, argv, &i);
        } else if (!strcmp(a, "--steps")) {
            steps = (int)parse_num(&c, a, cli_value(&c, argc, argv, &i), 1, 100000, 0, 1);
        } else if (!strcmp(a, "--temperature")) {
            temperature = parse_num(&c, a, cli_value(&c, argc, argv, &i), 0, 100, 0, 0);
        } else if (!strcmp(a, "--attention")) {
            mode = cli_value(&c, argc, argv, &i);
            if (sp_config_enum_index(SP_ATTN_MODES, mode) < 0)
                cli_die(&c, 2, "unknown attention mode '%s' (expected one of %s)", mode, SP_ATTN_MODES);
        } else if (!strcmp(a, "--no-kv-cache")) {
            use_cache = 0;
        } else if (!strcmp(a, "--topp")) {
            topp = parse_num(&c, a, cli_value(&c, argc, argv, &i), 0, 1, 1, 0);
        } else {
            cli_die(&c, 2, "unknown option '%s' (see sprint generate --help)", a);
        }
    }
    cli_no_table_options(&c); /* generated text, no table */
    cli_finish(&c);
    cli_resolve_paths(&c, 0);

    sp_error err = {0};
    sp_model *m = NULL;
    sp_tokenizer *t = NULL;
    if (sp_model_load(c.cfg.model_checkpoint, &m, &err) != SP_OK) cli_die_err(&c, &err);
    const sp_model_info *info = sp_model_get_info(m);
    cli_pick_tokenizer(&c, info);
    if (sp_tokenizer_load(c.cfg.model_tokenizer, info->vocab_size, &t, &err) != SP_OK) cli_die_err(&c, &err);
    int *ptok = NULL, np = 0;
    if (sp_tokenizer_encode(t, prompt, strlen(prompt), 1, 0, &ptok, &np, &err) != SP_OK) {
        cli_die(&c, 1, "--prompt: %s", err.msg);
    }
    int cap = info->seq_len;
    if (np > cap) cli_die(&c, 1, "prompt is %d tokens, longer than the model's context of %d", np, cap);
    /* buffers follow the work requested (prompt + steps), not the model's context length */
    if ((long)np + steps < cap) cap = np + steps;
    int V = info->vocab_size;
    size_t logit_rows = use_cache ? 1 : (size_t)cap; /* with the cache only the last position's logits */
    if (sp_alloc_check((double)logit_rows * V * sizeof(float), "the logits of the generated sequence", &err) != SP_OK)
        cli_die_err(&c, &err);
    int *seq = sp_xmalloc((size_t)cap, sizeof *seq);
    memcpy(seq, ptok, (size_t)np * sizeof *seq);
    free(ptok);
    float *logits = malloc(logit_rows * (size_t)V * sizeof *logits);
    if (!logits) cli_die(&c, 1, "cannot allocate %.3g GiB of logits", (double)logit_rows * V * 4 / 1073741824.0);
    prob_index *scratch = sp_xmalloc((size_t)V, sizeof *scratch);
    sp_op_request req = {.mode = mode, .cfg = &c.cfg};
    sp_attn_op *op = NULL;
    if (sp_attn_op_create(&req, info->n_layers, info->n_heads, &op, &err) != SP_OK) cli_die_err(&c, &err);
    sp_model_kv *kv = NULL;
    if (use_cache && sp_model_kv_init(m, cap, &kv, &err) != SP_OK) cli_die_err(&c, &err);
    sp_rng rng;
    sp_rng_seed(&rng, (uint64_t)c.cfg.run_seed);
    for (int i = 1; i < np; i++) print_piece(sp_tokenizer_decode(t, seq[i - 1], seq[i]));
    int n = np, made = 0;
    double t0 = sp_now_seconds();
    while (made < steps && n < cap) {
        const float *last;
        if (use_cache) { /* feed what the cache has not seen: the prompt, then each new token */
            while (sp_model_kv_len(kv) < n)
                if (sp_model_step(m, kv, seq[sp_model_kv_len(kv)], op, 0, logits, &err) != SP_OK) cli_die_err(&c, &err);
            last = logits;
        } else {
            if (sp_model_forward(m, seq, n, op, made, (int)c.cfg.run_threads, logits, &err) != SP_OK)
                cli_die_err(&c, &err);
            last = logits + (size_t)(n - 1) * V;
        }
        double coin = sp_rng_next_uniform(&rng);
        int next = sample((float *)last, V, temperature, topp, coin, scratch);
        if (next == 1) break; /* BOS: the model ends the story */
        print_piece(sp_tokenizer_decode(t, seq[n - 1], next));
        fflush(stdout);
        seq[n++] = next;
        made++;
    }
    printf("\n");
    double el = sp_now_seconds() - t0;
    if (!c.quiet)
        fprintf(stderr, "sprint generate: %d tokens in %.2f s (%.1f tokens/s, %s, attention %s)\n", made, el,
                el > 0 ? made / el : 0.0, use_cache ? "KV cache" : "no KV cache", op->name);
    sp_model_kv_free(kv);
    sp_attn_op_free(op);
    free(scratch);
    free(logits);
    free(seq);
    sp_tokenizer_free(t);
    sp_model_free(m);
    return 0;
}
