/* accmig vm: placeholder until its issue lands; it says so and fails. */
#include <stdio.h>

#include "cli/cli.h"

int cli_vm(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "accmig vm: not built yet\n");
    return 2;
}
