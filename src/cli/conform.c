/* accmig conform SOCKET [--server-cmd CMD] [--server-log FILE] [--json]
 * [--junit FILE] [--only GROUP,...] [--list] [--accmig] [--stress SECONDS]
 * [--ops N] [--seed S] [--timeout MS]: check a vfio-user server against the
 * spec and the VFIO migration uAPI (src/conform, docs/conform.md). Exit 0
 * when no check failed, 1 when one did, 2 for bad usage or when the checks
 * could not run (no server). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "conform/conform.h"

int cli_conform(int argc, char **argv);

static void usage(FILE *f)
{
    fprintf(f,
            "usage: accmig conform SOCKET [--server-cmd CMD] [--json] [--junit FILE]\n"
            "                      [--only GROUP,...] [--list] [--accmig]\n"
            "                      [--stress SECONDS --seed S] [--ops N] [--timeout MS]\n"
            "  Check the vfio-user server on SOCKET against QEMU's vfio-user spec and the\n"
            "  kernel's VFIO migration uAPI; one line per check (PASS|FAIL|SKIP group/name:\n"
            "  reason), then \"N passed, N failed, N skipped\". Exit 0 only if none failed.\n"
            "  --server-cmd CMD  start the server with /bin/sh -c CMD (it must listen on\n"
            "                    SOCKET); restarted when it dies; its stdout/stderr go to\n"
            "                    --server-log FILE (default a temp file) and are scanned for\n"
            "                    sanitizer reports\n"
            "  --json            one JSON object per check and a summary object\n"
            "  --junit FILE      also write JUnit XML\n"
            "  --only LIST       groups to run (see --list)\n"
            "  --list            print the groups and exit\n"
            "  --accmig          also check accmig's documented extensions and choices\n"
            "  --stress SECONDS  run the stress group for this long (default: a bounded\n"
            "                    run of --ops operations, 300)\n"
            "  --seed S          seed of the stress group (default 1); the same seed\n"
            "                    gives the same sequence\n"
            "  --timeout MS      how long to wait for each reply (default 5000)\n");
}

int cli_conform(int argc, char **argv)
{
    enum { O_SERVER_CMD = 1, O_SERVER_LOG, O_JSON, O_JUNIT, O_ONLY, O_LIST, O_ACCMIG, O_STRESS,
           O_SEED, O_OPS, O_TIMEOUT, O_VERBOSE, O_HELP };
    static const struct option longopts[] = {
        {"server-cmd", required_argument, NULL, O_SERVER_CMD},
        {"server-log", required_argument, NULL, O_SERVER_LOG},
        {"json", no_argument, NULL, O_JSON},
        {"junit", required_argument, NULL, O_JUNIT},
        {"only", required_argument, NULL, O_ONLY},
        {"list", no_argument, NULL, O_LIST},
        {"accmig", no_argument, NULL, O_ACCMIG},
        {"stress", required_argument, NULL, O_STRESS},
        {"seed", required_argument, NULL, O_SEED},
        {"ops", required_argument, NULL, O_OPS},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"verbose", no_argument, NULL, O_VERBOSE},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    struct conform_opts o = {.seed = 1};
    uint64_t v;
    int c, ret;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case O_SERVER_CMD: o.server_cmd = optarg; break;
        case O_SERVER_LOG: o.server_log = optarg; break;
        case O_JSON: o.json = true; break;
        case O_JUNIT: o.junit_path = optarg; break;
        case O_ONLY: o.only = optarg; break;
        case O_LIST:
            conform_list(stdout);
            return 0;
        case O_ACCMIG: o.accmig = true; break;
        case O_VERBOSE: o.verbose = true; break;
        case O_STRESS:
            if (cli_opt_num("conform", "--stress", optarg, 1, 86400, &v))
                return 2;
            o.stress_seconds = (unsigned)v;
            break;
        case O_OPS:
            if (cli_opt_num("conform", "--ops", optarg, 1, 10000000, &v))
                return 2;
            o.stress_ops = (unsigned)v;
            break;
        case O_SEED:
            if (cli_opt_num("conform", "--seed", optarg, 0, UINT64_MAX, &o.seed))
                return 2;
            break;
        case O_TIMEOUT:
            if (cli_opt_num("conform", "--timeout", optarg, 100, 600000, &v))
                return 2;
            o.timeout_ms = (unsigned)v;
            break;
        case O_HELP:
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "accmig conform: exactly one SOCKET wanted\n");
        usage(stderr);
        return 2;
    }
    o.socket = argv[optind];
    ret = conform_run(&o, stdout);
    if (ret == -EINVAL) {
        fprintf(stderr, "accmig conform: unknown group in --only '%s' (see --list)\n",
                o.only ? o.only : "");
        return 2;
    }
    if (ret < 0)
        return 2;
    return ret ? 1 : 0;
}
