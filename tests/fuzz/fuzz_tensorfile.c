/* fuzz_tensorfile.c: libFuzzer target for the .npy and safetensors readers and the Q/K/V tensor-set
 * checks (src/workload/tensorfile.c, src/workload/qkv.c). Each input is parsed as a .npy file, as a
 * safetensors file and as a tensor set; every accepted tensor is converted to float. A crash, a
 * sanitizer report or an allocation beyond what the input can justify is a bug (the readers must
 * check declared sizes against the buffer before allocating). Seeds: tests/fuzz/corpus/tensorfile/.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude tests/fuzz/fuzz_tensorfile.c
 *         src/workload/tensorfile.c src/workload/qkv.c ... (the fuzz CMake target links libsprint) */
#include <stdint.h>
#include <stdlib.h>

#include "sprint/qkv.h"

static void convert(const sp_tensor *t) {
    /* numel * itemsize <= the input length, so this is bounded by 4x the input */
    float *f = malloc(((size_t)t->numel + 1) * sizeof *f);
    if (!f) return;
    sp_tensor_to_f32(t, f);
    free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sp_error err;
    sp_tensor t;
    if (sp_npy_parse(data, size, &t, &err) == SP_OK) convert(&t);
    sp_tensor *ts = NULL;
    int n = 0;
    if (sp_safetensors_parse(data, size, &ts, &n, &err) == SP_OK) {
        for (int i = 0; i < n; i++) convert(&ts[i]);
        free(ts);
    }
    sp_qkv *q = NULL;
    if (sp_qkv_parse_safetensors(data, size, "fuzz", &q, &err) == SP_OK) sp_qkv_free(q);
    return 0;
}
