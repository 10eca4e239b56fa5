/* cpu_attention.c: the public CPU attention entry points (include/sprint/cpu_attention.h).
 * Dense: the flash kernel (flash.c). SPRINT: sprint_cpu.c. */
#include "sprint/cpu_attention.h"

#include "attention/flash.h"
#include "cpu/cpu.h"
#include "functional/int_screen_amx.h"

const char *sp_cpu_attention_level(void) { return sp_cpu_level_name(sp_cpu_detect()); }

int sp_cpu_attention_amx(void) { return sp_iscreen_amx_available(); }

sp_status sp_cpu_attention_dense(const sp_attn_head *h, int threads, sp_error *err) {
    return sp_flash_attention(h, threads, sp_cpu_detect(), err);
}
