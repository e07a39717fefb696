/* accmig: one binary, one subcommand per job. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
};


static const struct subcommand subcommands[] = {
    {"demo", cli_demo, "run a compression workload on a VF and live-migrate it"},
    {"serve", cli_serve, "serve a PF's VFs to VMMs over vfio-user"},
    {"vm", cli_vm, "run a mini-VMM with a guest that uses a VF"},
    {"migrate", cli_migrate, "tell a running mini-VMM to migrate"},
    {"inspect", cli_inspect, "decode a saved device-state stream"},
    {"bench", cli_bench, "measure the engine, migration or vfio-user paths"},
    {"conform", cli_conform, "check a vfio-user server against the spec and the VFIO uAPI"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: accmig <command> [options]   (accmig <command> --help)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
        fprintf(f, "  %-8s %s\n", subcommands[i].name, subcommands[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
        if (strcmp(argv[1], subcommands[i].name) == 0)
            return subcommands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "accmig: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
