/* bench_stream.c: this machine's main-memory read bandwidth (GB/s), one and all threads, from
 * a STREAM-like read of a buffer far larger than the last-level cache (sp_membw_read_gbs). The
 * decode kernels' bandwidth (bench_decode) is quoted as a fraction of it.
 *
 * usage: bench_stream [MiB]   (default 1024 MiB); JSON on stdout */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "sprint/decode.h"

int main(int argc, char **argv) {
    long mib = argc > 1 ? strtol(argv[1], NULL, 10) : 1024;
    if (mib < 64 || mib > 16384) {
        fprintf(stderr, "bench_stream: buffer size %ld MiB outside [64, 16384]\n", mib);
        return 2;
    }
    int all = omp_get_max_threads();
    printf("[");
    for (int t = 1; t <= all; t = t == all ? all + 1 : (t * 2 > all ? all : t * 2)) {
        double gbs = sp_membw_read_gbs((size_t)mib << 20, t, 5);
        printf("%s\n  {\"mode\": \"stream-read\", \"threads\": %d, \"bytes\": %zu, \"gb_per_s\": %.2f}", t > 1 ? "," : "",
               t, (size_t)mib << 20, gbs);
        fflush(stdout);
    }
    printf("\n]\n");
    return 0;
}
