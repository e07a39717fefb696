/* accmig migrate: placeholder until its issue lands; it says so and fails. */
#include <stdio.h>

#include "cli/cli.h"

int cli_migrate(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "accmig migrate: not built yet\n");
    return 2;
}
