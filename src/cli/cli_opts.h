/* cli_opts: command-line pieces several `accmig` subcommands share, so a
 * number's range check, its error message and the guest workload's flags are
 * written once (demo, its multi-process form in demo_hosts.c, and vm). */
#ifndef ACCMIG_CLI_OPTS_H
#define ACCMIG_CLI_OPTS_H

#include <getopt.h>
#include <stdint.h>

#include "guest/workload.h"

/* getopt_long values of the workload's options; they start well above the
 * callers' own small enum values so both fit in one longopts table. */
enum {
    CLI_OPT_WL_JOBS = 0x1000,
    CLI_OPT_WL_QPS,
    CLI_OPT_WL_VCPUS,
    CLI_OPT_WL_MIN_SIZE,
    CLI_OPT_WL_MAX_SIZE,
    CLI_OPT_WL_SEED,
    CLI_OPT_WL_SGL_PERCENT,
    CLI_OPT_WL_STREAM_PERCENT,
    CLI_OPT_WL_ENGINE,
};

/* The workload's entries of a struct option table: put it inside the
 * caller's longopts array and pass what getopt_long returns for them to
 * cli_opt_workload. */
#define CLI_OPTS_WORKLOAD_LONGOPTS                                   \
    {"jobs", required_argument, NULL, CLI_OPT_WL_JOBS},              \
    {"qps", required_argument, NULL, CLI_OPT_WL_QPS},                \
    {"vcpus", required_argument, NULL, CLI_OPT_WL_VCPUS},            \
    {"min-size", required_argument, NULL, CLI_OPT_WL_MIN_SIZE},      \
    {"max-size", required_argument, NULL, CLI_OPT_WL_MAX_SIZE},      \
    {"seed", required_argument, NULL, CLI_OPT_WL_SEED},              \
    {"sgl-percent", required_argument, NULL, CLI_OPT_WL_SGL_PERCENT},    \
    {"stream-percent", required_argument, NULL, CLI_OPT_WL_STREAM_PERCENT}, \
    {"engine", required_argument, NULL, CLI_OPT_WL_ENGINE}

/* Parses ARG (as am_parse_u64 does: decimal, 0x hex, K/M/G suffixes) into
 * *out if it lies in min..max. Otherwise prints
 * "accmig <cmd>: <opt> wants a number in MIN..MAX, not 'ARG'" to stderr,
 * leaves *out alone and returns -EINVAL. Returns 0 on success. */
int cli_opt_num(const char *cmd, const char *opt, const char *arg, uint64_t min, uint64_t max,
                uint64_t *out);

/* Applies one workload option (which: a CLI_OPT_WL_* value from
 * CLI_OPTS_WORKLOAD_LONGOPTS) with its argument to *wl, range-checked as by
 * cli_opt_num. Returns 0 on success, -EINVAL on a bad value (reported on
 * stderr, *wl unchanged), -ENOENT if which is not a workload option (nothing
 * printed: the caller reports its own unknown options). Cross-field checks
 * (min <= max, ...) stay with workload_config_check. */
int cli_opt_workload(const char *cmd, int which, const char *arg, struct workload_config *wl);

#endif
