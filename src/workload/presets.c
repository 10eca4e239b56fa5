/* presets.c: the paper's eight workloads (section 4, Fig. 10/11) with their published shapes.
 * Layers, heads and head dimension are the models' published architectures; sequence length
 * and padding share are config keys (workload.*_seq, workload.*_padding). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sprint/sim.h"

const char *const SP_WORKLOAD_PRESETS = "BERT-B|BERT-L|ALBERT-XL|ALBERT-XXL|ViT-B|GPT-2-L|Synth-1|Synth-2";

typedef struct preset {
    const char *name;
    int layers, heads, d, causal;
    size_t seq_off, pad_off, temp_off;
} preset;

#define OFF(f) offsetof(sp_config, f)
static const preset PRESETS[] = {
    /* BERT-Base: 12 layers, 12 heads, hidden 768 (Devlin 2019) */
    {"BERT-B", 12, 12, 64, 0, OFF(workload_bert_b_seq), OFF(workload_bert_b_padding), OFF(workload_bert_b_temperature)},
    /* BERT-Large: 24 layers, 16 heads, hidden 1024 */
    {"BERT-L", 24, 16, 64, 0, OFF(workload_bert_l_seq), OFF(workload_bert_l_padding), OFF(workload_bert_l_temperature)},
    /* ALBERT-xlarge: 24 layers, 16 heads, hidden 2048 (Lan 2020) */
    {"ALBERT-XL", 24, 16, 128, 0, OFF(workload_albert_xl_seq), OFF(workload_albert_xl_padding), OFF(workload_albert_xl_temperature)},
    /* ALBERT-xxlarge: 12 layers, 64 heads, hidden 4096 */
    {"ALBERT-XXL", 12, 64, 64, 0, OFF(workload_albert_xxl_seq), OFF(workload_albert_xxl_padding), OFF(workload_albert_xxl_temperature)},
    /* ViT-Base/16: 12 layers, 12 heads, hidden 768 (Dosovitskiy 2021) */
    {"ViT-B", 12, 12, 64, 0, OFF(workload_vit_b_seq), OFF(workload_vit_b_padding), OFF(workload_vit_b_temperature)},
    /* GPT-2 large: 36 layers, 20 heads, hidden 1280, causal (Radford 2019) */
    {"GPT-2-L", 36, 20, 64, 1, OFF(workload_gpt2_l_seq), OFF(workload_gpt2_l_padding), OFF(workload_gpt2_l_temperature)},
    /* Synthetic long sequences (paper silent on shape): BERT-B-like heads, causal */
    {"Synth-1", 12, 12, 64, 1, OFF(workload_synth1_seq), OFF(workload_synth1_padding), OFF(workload_synth1_temperature)},
    {"Synth-2", 12, 12, 64, 1, OFF(workload_synth2_seq), OFF(workload_synth2_padding), OFF(workload_synth2_temperature)},
};
#undef OFF

sp_status sp_workload_preset(const sp_config *cfg, const char *name, sp_workload *wl, sp_error *err) {
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++) {
        const preset *p = &PRESETS[i];
        if (strcasecmp(p->name, name)) continue;
        memset(wl, 0, sizeof *wl);
        snprintf(wl->name, sizeof wl->name, "%s", p->name);
        wl->layers = p->layers;
        wl->heads = p->heads;
        wl->d = p->d;
        wl->causal = p->causal;
        wl->seq = (int)*(const long *)((const char *)cfg + p->seq_off);
        wl->padding = *(const double *)((const char *)cfg + p->pad_off);
        wl->synthetic = 1;
        double t = *(const double *)((const char *)cfg + p->temp_off);
        wl->temperature = t > 0 ? t : cfg->workload_temperature;
        int valid = wl->seq - (int)(wl->padding * wl->seq + 0.5);
        if (valid < 1)
            return sp_error_set(err, SP_ERR_CONFIG, "workload %s: padding %.2f of %d tokens leaves no token", p->name,
                                wl->padding, wl->seq);
        return SP_OK;
    }
    return sp_error_set(err, SP_ERR_ARG, "unknown workload preset '%s' (expected one of %s)", name,
                        SP_WORKLOAD_PRESETS);
}
