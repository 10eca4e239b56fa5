/* sprint config: dump the effective configuration, write the key reference, check a file. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

static void help(void) {
    printf("usage: sprint config dump [--config FILE]... [--set SEC.KEY=VALUE]... [--seed N] [--threads N]\n"
           "       sprint config doc                 Markdown reference of every key (docs/config.md)\n"
           "       sprint config check FILE...       validate config files; exit 1 on the first error\n\n"
           "dump prints the effective configuration (defaults, then files, then --set) as an INI\n"
           "file that --config loads back unchanged. (--json and --csv are refused: the output is INI.)\n\n%s",
           CLI_COMMON_HELP);
}

int cmd_config(int argc, char **argv) {
    cli_common c;
    cli_init(&c, "config");
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        help();
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "doc")) {
        sp_config_write_markdown(stdout);
        return 0;
    }
    if (!strcmp(sub, "check")) {
        if (argc < 3) cli_die(&c, 2, "config check needs at least one FILE");
        for (int i = 2; i < argc; i++) {
            sp_error err = {0};
            sp_config cfg;
            sp_config_defaults(&cfg);
            if (sp_config_load_file(&cfg, argv[i], &err) != SP_OK) cli_die_err(&c, &err);
            printf("%s: ok\n", argv[i]);
        }
        return 0;
    }
    if (strcmp(sub, "dump")) cli_die(&c, 2, "unknown config subcommand '%s' (dump, doc, check)", sub);
    for (int i = 2; i < argc; i++) {
        if (cli_common_option(&c, argc, argv, &i)) continue;
        if (!strcmp(argv[i], "--help")) {
            help();
            return 0;
        }
        cli_die(&c, 2, "unknown option '%s' (see sprint config --help)", argv[i]);
    }
    cli_no_table_options(&c);
    cli_finish(&c);
    sp_config_dump(&c.cfg, stdout);
    return 0;
}
