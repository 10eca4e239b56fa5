/* fuzz_config.c: the INI config reader and `--set` overrides (src/config/config.c, inih).
 *
 * First byte even: the rest is an INI file applied on top of the defaults. First byte odd: the
 * rest is split at NUL bytes into `--set section.key=value` assignments. Property: no crash;
 * an error is one line; and whatever loads, `config dump` loads back unchanged (the dump of
 * the reloaded configuration is byte-identical to the first dump). */
#include "fuzz_util.h"
#include "sprint/config.h"

static char *dump(const sp_config *c, int k) {
    FILE *f = fopen(fuzz_path(k), "wb");
    if (!f) abort();
    sp_config_dump(c, f);
    fclose(f);
    return fuzz_read(k, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    sp_config c;
    sp_config_defaults(&c);
    sp_error err = {0};
    sp_status s = SP_OK;
    if (data[0] % 2 == 0) {
        s = sp_config_load_file(&c, fuzz_write(0, data + 1, size - 1), &err);
    } else {
        /* NUL-separated, so a value may hold any other byte (newlines too) */
        char *buf = malloc(size);
        memcpy(buf, data + 1, size - 1);
        buf[size - 1] = 0;
        for (char *line = buf; line < buf + size && s == SP_OK; line += strlen(line) + 1)
            s = sp_config_set(&c, line, "--set", &err);
        free(buf);
    }
    if (s != SP_OK) {
        FUZZ_CHECK(err.msg[0] && !strchr(err.msg, '\n'), "failure without a one-line message: %s", err.msg);
        return 0;
    }
    char *d1 = dump(&c, 1);
    sp_config c2;
    sp_config_defaults(&c2);
    s = sp_config_load_file(&c2, fuzz_path(1), &err);
    FUZZ_CHECK(s == SP_OK, "the dump does not load back: %s", err.msg);
    char *d2 = dump(&c2, 2);
    FUZZ_CHECK(!strcmp(d1, d2), "the dump changed on reload");
    free(d1);
    free(d2);
    return 0;
}
