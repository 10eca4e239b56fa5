/* paper_acc.c: the paper's accuracy figures as data (Fig. 5 and Fig. 9), read off the figures
 * (../shared/docs/sprint-paper.md: Fig. 5 table in section 1, Fig. 9 in section 5.4, pixel
 * estimates, about +-0.2 points). b = 4..8 share one value per series in the paper's plot. */
#include "sprint/paper.h"

static const struct {
    const char *name;
    double acc[8];
} FIG5[] = {
    {"BERT-MRPC", {0, 41, 79, 86.5, 86.5, 86.5, 86.5, 86.5}},
    {"BERT-SQuAD", {0, 2.5, 77, 80, 80, 80, 80, 80}},
    {"ViT", {0, 98.7, 98.7, 98.65, 98.65, 98.65, 98.65, 98.65}},
};

static const struct {
    const char *name, *unit;
    double v[4];
} FIG9[] = {
    {"BERT-B", "accuracy %", {80.3, 80.0, 77.8, 80.0}},     {"BERT-L", "accuracy %", {83.7, 83.4, 81.7, 83.4}},
    {"ALBERT-XL", "accuracy %", {85.7, 85.2, 80.9, 85.0}},  {"ALBERT-XXL", "accuracy %", {87.5, 87.2, 79.4, 87.1}},
    {"ViT-B", "accuracy %", {98.8, 98.1, 94.5, 98.6}},      {"GPT-2-L", "perplexity", {17.6, 17.5, 23.4, 17.6}},
};

const char *sp_paper_fig5(int s, double acc_pct[8]) {
    if (s < 0 || s >= (int)(sizeof FIG5 / sizeof FIG5[0])) return 0;
    for (int b = 0; b < 8; b++) acc_pct[b] = FIG5[s].acc[b];
    return FIG5[s].name;
}

const char *sp_paper_fig9(int m, double v[4], const char **unit) {
    if (m < 0 || m >= (int)(sizeof FIG9 / sizeof FIG9[0])) return 0;
    for (int i = 0; i < 4; i++) v[i] = FIG9[m].v[i];
    *unit = FIG9[m].unit;
    return FIG9[m].name;
}
