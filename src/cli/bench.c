/* accmig bench <name> [options]: dispatch to one benchmark (bench/). */
#include <stdio.h>
#include <string.h>

#include "../../bench/bench.h"
#include "../../bench/bench_migrate.h"
#include "cli/cli.h"

struct bench_entry {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
};

static const struct bench_entry bench_entries[] = {
    {"engine", bench_engine, "ZIP throughput through the whole device path vs raw ISA-L\n"
                             "             (--engine sec|hpre: that engine vs raw libcrypto)"},
    {"vfu", bench_vfu, "vfio-user round trips vs a bare UNIX socket ping-pong"},
    {"ramcopy", bench_ram_copy_main, "guest RAM migration over vmstream vs a raw TCP copy"},
    {"migrate", bench_migrate_main, "VF device state and device downtime under load vs idle"},
    {"neighbours", bench_neighbours, "a tenant VF's throughput and downtime beside a hostile VF"},
};

static void bench_usage(FILE *f)
{
    fprintf(f, "usage: accmig bench <name> [options]   (accmig bench <name> --help)\n\nbenchmarks:\n");
    for (size_t i = 0; i < sizeof(bench_entries) / sizeof(bench_entries[0]); i++)
        fprintf(f, "  %-10s %s\n", bench_entries[i].name, bench_entries[i].help);
}

int cli_bench(int argc, char **argv)
{
    if (argc < 2) {
        bench_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        bench_usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(bench_entries) / sizeof(bench_entries[0]); i++)
        if (strcmp(argv[1], bench_entries[i].name) == 0)
            return bench_entries[i].run(argc - 1, argv + 1);
    fprintf(stderr, "accmig bench: unknown benchmark '%s'\n", argv[1]);
    bench_usage(stderr);
    return 2;
}
