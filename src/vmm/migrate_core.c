/* migrate_core: the migration steps over an ops table (migrate_core.h). */
#include "vmm/migrate_core.h"

#include <errno.h>
#include <stddef.h>

#include "common/common.h"

const char *mig_core_step_name(enum mig_core_step s)
{
    static const char *const names[MIG_CORE_STEP_COUNT] = {
        [MIG_CORE_OPEN] = "open",           [MIG_CORE_LOG_START] = "log-start",
        [MIG_CORE_PRECOPY] = "precopy",     [MIG_CORE_PAUSE] = "pause",
        [MIG_CORE_STOP_COPY] = "stop-copy", [MIG_CORE_LOG_LAST] = "log-last",
        [MIG_CORE_RAM_LAST] = "ram-last",   [MIG_CORE_DEVICE_STATE] = "device-state",
        [MIG_CORE_HANDOVER] = "handover",
    };
    return (unsigned)s < MIG_CORE_STEP_COUNT ? names[s] : "?";
}

static int mig_core_done(const struct mig_core *c, enum mig_core_step step)
{
    return c->ops->step_done ? c->ops->step_done(c->opaque, step) : 0;
}

/* Round 0 sends every page; each further round the union the logs caught
 * during the one before, until precopy_done says the rest can wait for the
 * stop (what is left stays in map). */
static int mig_core_precopy(const struct mig_core *c)
{
    const struct mig_core_ops *ops = c->ops;
    unsigned round = 0;
    int ret;

    for (;;) {
        ret = ops->send_pages(c->opaque, c->map, round, false);
        if (ret)
            return ret;
        round++;
        ret = ops->collect(c->opaque, c->map, false);
        if (ret)
            return ret;
        if (ops->precopy_done(c->opaque, round, am_bitmap_weight(c->map, c->pages)))
            return 0;
    }
}

static int mig_core_steps(const struct mig_core *c)
{
    const struct mig_core_ops *ops = c->ops;
    void *o = c->opaque;
    int ret;

    if ((ret = ops->open(o)) || (ret = mig_core_done(c, MIG_CORE_OPEN)))
        return ret;
    if (c->ram) {
        if ((ops->log_start && (ret = ops->log_start(o))) ||
            (ret = mig_core_done(c, MIG_CORE_LOG_START)))
            return ret;
        if ((ret = mig_core_precopy(c)) || (ret = mig_core_done(c, MIG_CORE_PRECOPY)))
            return ret;
    }
    if ((ret = ops->pause(o)) || (ret = mig_core_done(c, MIG_CORE_PAUSE)))
        return ret;
    if ((ret = ops->stop_device(o)) || (ret = mig_core_done(c, MIG_CORE_STOP_COPY)))
        return ret;
    if (c->ram) {
        /* After the device stopped: this report holds every DMA write it
         * will ever make, its write-back of queue positions among them. */
        if ((ret = ops->collect(o, c->map, true)) || (ret = mig_core_done(c, MIG_CORE_LOG_LAST)))
            return ret;
        if ((ret = ops->send_pages(o, c->map, 0, true)) ||
            (ret = mig_core_done(c, MIG_CORE_RAM_LAST)))
            return ret;
    }
    if ((ret = ops->device_state(o)) || (ret = mig_core_done(c, MIG_CORE_DEVICE_STATE)))
        return ret;
    return ops->handover(o);
}

int mig_core_run(const struct mig_core *c)
{
    const struct mig_core_ops *ops = c ? c->ops : NULL;
    int ret;

    if (!ops || !ops->open || !ops->pause || !ops->stop_device || !ops->device_state ||
        !ops->handover || !ops->rollback)
        return -EINVAL;
    if (c->ram && (!ops->send_pages || !ops->collect || !ops->precopy_done || !c->map))
        return -EINVAL;
    ret = mig_core_steps(c);
    if (ret && ret != -EINPROGRESS)
        ops->rollback(c->opaque, ret);
    return ret;
}
