/* cli_opts: see cli_opts.h. */
#include "cli/cli_opts.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>

#include "common/common.h"
#include "qm/qm.h"

int cli_opt_num(const char *cmd, const char *opt, const char *arg, uint64_t min, uint64_t max,
                uint64_t *out)
{
    uint64_t v;

    if (am_parse_u64(arg, max, &v) != 0 || v < min) {
        fprintf(stderr, "accmig %s: %s wants a number in %llu..%llu, not '%s'\n", cmd, opt,
                (unsigned long long)min, (unsigned long long)max, arg);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

/* One row per workload option: its flag, its range and the field it sets
 * (the seed is the one 64-bit field, handled apart). */
struct cli_opt_wl_u32 {
    int which;
    const char *opt;
    uint64_t min, max;
    size_t offset;
};

static const struct cli_opt_wl_u32 cli_opt_wl_u32s[] = {
    {CLI_OPT_WL_JOBS, "--jobs", 1, WORKLOAD_MAX_JOBS, offsetof(struct workload_config, jobs)},
    {CLI_OPT_WL_QPS, "--qps", 2, QM_MAX_QPS_PER_VF, offsetof(struct workload_config, qps)},
    {CLI_OPT_WL_VCPUS, "--vcpus", 1, WORKLOAD_MAX_VCPUS, offsetof(struct workload_config, vcpus)},
    {CLI_OPT_WL_MIN_SIZE, "--min-size", 1, WORKLOAD_MAX_SIZE,
     offsetof(struct workload_config, min_size)},
    {CLI_OPT_WL_MAX_SIZE, "--max-size", 1, WORKLOAD_MAX_SIZE,
     offsetof(struct workload_config, max_size)},
    {CLI_OPT_WL_SGL_PERCENT, "--sgl-percent", 0, 100, offsetof(struct workload_config, sgl_percent)},
    {CLI_OPT_WL_STREAM_PERCENT, "--stream-percent", 0, 100,
     offsetof(struct workload_config, stream_percent)},
};

int cli_opt_workload(const char *cmd, int which, const char *arg, struct workload_config *wl)
{
    uint64_t v;
    int ret;

    if (which == CLI_OPT_WL_SEED)
        return cli_opt_num(cmd, "--seed", arg, 0, UINT64_MAX, &wl->seed);
    if (which == CLI_OPT_WL_ENGINE) {
        enum guest_engine e;

        if (guest_engine_from_name(arg, &e) != 0) {
            fprintf(stderr, "accmig %s: --engine is zip, sec or hpre, not '%s'\n", cmd, arg);
            return -EINVAL;
        }
        wl->engine = (uint32_t)e;
        return 0;
    }
    for (size_t i = 0; i < AM_ARRAY_SIZE(cli_opt_wl_u32s); i++) {
        const struct cli_opt_wl_u32 *o = &cli_opt_wl_u32s[i];

        if (o->which != which)
            continue;
        ret = cli_opt_num(cmd, o->opt, arg, o->min, o->max, &v);
        if (ret == 0)
            *(uint32_t *)((char *)wl + o->offset) = (uint32_t)v;
        return ret;
    }
    return -ENOENT;
}
