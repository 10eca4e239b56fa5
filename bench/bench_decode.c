/* bench_decode.c: the decode benchmark alone (bench/decode_cases.c has the cases and their
 * options); `bench_attention --mode decode` runs the same cases inside bench_attention's JSON
 * object ({"cases": [...]}, each case with "mode": "decode"). */
int bench_decode_main(int argc, char **argv);

int main(int argc, char **argv) { return bench_decode_main(argc, argv); }
