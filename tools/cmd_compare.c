/* sprint compare: placeholder until its issue lands (owner replaces this file). */
#include "cli.h"
#include "commands.h"

int cmd_compare(int argc, char **argv) {
    cli_common c;
    cli_init(&c, "compare");
    (void)argc;
    (void)argv;
    cli_die(&c, 1, "not built yet");
}
