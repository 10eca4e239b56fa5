/* sprint/paper.h: the paper's accuracy figures as data (issue 10), for plots beside ours.
 * Values read off the figures (../shared/docs/sprint-paper.md sections 1 and 5.4, [F], pixel
 * estimates): Fig. 5 (task accuracy vs key MSB bits b) and Fig. 9 (accuracy per design). The
 * architecture figures (Fig. 10, Fig. 11, energy) are sp_paper_lookup in sprint/sim.h. */
#ifndef SPRINT_PAPER_H
#define SPRINT_PAPER_H

#ifdef __cplusplus
extern "C" {
#endif

/* Fig. 5 series s (0..2: BERT-MRPC, BERT-SQuAD, ViT): writes the accuracy (%) at b = 1..8
 * into acc_pct[0..7] and returns the series name; NULL when s is out of range. */
const char *sp_paper_fig5(int s, double acc_pct[8]);

/* Fig. 9 model m (0..5: BERT-B, BERT-L, ALBERT-XL, ALBERT-XXL, ViT-B, GPT-2-L): writes the
 * value for the designs Baseline, Runtime Pruning, SPRINT w/o recompute, SPRINT into v[0..3]
 * and *unit ("accuracy %" or "perplexity"); returns the model name, NULL when out of range. */
const char *sp_paper_fig9(int m, double v[4], const char **unit);

#ifdef __cplusplus
}
#endif
#endif
