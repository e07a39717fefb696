/* migrate_inproc: live migration between two in-process hosts
 * (vmm/migrate_inproc.h). */
#include "vmm/migrate_inproc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "vmm/migrate_core.h"

struct vmm_mig_host {
    struct vmm_inproc_host own; /* zeroed for a wrapped host */
    struct vmm_inproc_host *ih; /* &own, or the borrowed one */
    struct vm_ram *ram;
    struct mig_dev *mig;
    unsigned fn;
};

/* ---- hosts ---- */

void vmm_mig_host_config_default(struct vmm_mig_host_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    qm_dev_config_default(&cfg->dev);
    cfg->vf_fn = 1;
    cfg->mode = MIG_HW_V4;
}

/* The migration driver for a host whose device and transport exist. */
static int vmm_mig_host_finish(struct vmm_mig_host *h, struct vmm_inproc_host *ih, unsigned fn,
                               enum mig_hw_mode mode, struct vm_ram *ram)
{
    h->ih = ih;
    h->ram = ram;
    h->fn = fn;
    return mig_dev_create(ih->dev, fn, mode, &h->mig);
}

int vmm_mig_host_create(const struct vmm_mig_host_config *cfg, struct vm_ram *ram,
                        struct vmm_mig_host **out)
{
    struct vmm_mig_host *h;
    int ret;

    if (!cfg || !ram || !out || (cfg->mode != MIG_HW_V4 && cfg->mode != MIG_HW_V3))
        return -EINVAL;
    h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    ret = vmm_inproc_host_create(&cfg->dev, cfg->vf_fn, vm_ram_guest(ram), &h->own);
    if (ret) {
        free(h);
        return ret;
    }
    ret = vmm_mig_host_finish(h, &h->own, cfg->vf_fn, cfg->mode, ram);
    if (ret) {
        vmm_inproc_host_destroy(&h->own);
        free(h);
        return ret;
    }
    *out = h;
    return 0;
}

int vmm_mig_host_wrap(struct vmm_inproc_host *ih, unsigned vf_fn, enum mig_hw_mode mode,
                      struct vm_ram *ram, struct vmm_mig_host **out)
{
    struct vmm_mig_host *h;
    int ret;

    if (!ih || !ih->dev || !ih->irq || !ih->vf || !ram || !out || vf_fn == 0 ||
        vf_fn >= qm_dev_num_functions(ih->dev) || (mode != MIG_HW_V4 && mode != MIG_HW_V3))
        return -EINVAL;
    h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    ret = vmm_mig_host_finish(h, ih, vf_fn, mode, ram);
    if (ret) {
        free(h);
        return ret;
    }
    *out = h;
    return 0;
}

void vmm_mig_host_destroy(struct vmm_mig_host *h)
{
    if (!h)
        return;
    mig_dev_destroy(h->mig);
    if (h->ih == &h->own)
        vmm_inproc_host_destroy(&h->own);
    free(h);
}

struct vm_ram *vmm_mig_host_ram(const struct vmm_mig_host *h) { return h->ram; }
const struct vf_io *vmm_mig_host_io(const struct vmm_mig_host *h) { return vmm_inproc_vf_io(h->ih->vf); }
struct qm_dev *vmm_mig_host_dev(const struct vmm_mig_host *h) { return h->ih->dev; }
struct mig_dev *vmm_mig_host_mig(const struct vmm_mig_host *h) { return h->mig; }

/* ---- the workload as a guest ---- */

static int vmm_mig_workload_pause(void *opaque)
{
    return workload_vcpus_pause(opaque);
}

static int vmm_mig_workload_resume(void *opaque, const struct guest_ram *ram, const struct vf_io *io)
{
    return workload_vcpus_resume(opaque, ram, io);
}

struct vmm_mig_guest vmm_mig_guest_of_workload(struct workload *w)
{
    return (struct vmm_mig_guest){vmm_mig_workload_pause, vmm_mig_workload_resume, w};
}

/* ---- one migration ---- */

static const char *const vmm_mig_step_names[VMM_MIG_STEP_COUNT] = {
    [VMM_MIG_STEP_NONE] = "none",
    [VMM_MIG_STEP_DST_RESUMING] = "dst-resuming",
    [VMM_MIG_STEP_SRC_PRE_COPY] = "src-pre-copy",
    [VMM_MIG_STEP_MATCH] = "match",
    [VMM_MIG_STEP_LOG_START] = "log-start",
    [VMM_MIG_STEP_RAM_PRECOPY] = "ram-precopy",
    [VMM_MIG_STEP_VCPUS_PAUSE] = "vcpus-pause",
    [VMM_MIG_STEP_SRC_STOP_COPY] = "src-stop-copy",
    [VMM_MIG_STEP_LOG_LAST] = "log-last",
    [VMM_MIG_STEP_RAM_LAST] = "ram-last",
    [VMM_MIG_STEP_DST_STATE] = "dst-state",
    [VMM_MIG_STEP_DST_RUNNING] = "dst-running",
    [VMM_MIG_STEP_VCPUS_RESUME] = "vcpus-resume",
    [VMM_MIG_STEP_SRC_RESET] = "src-reset",
};

const char *vmm_mig_step_name(enum vmm_mig_step s)
{
    return (unsigned)s < VMM_MIG_STEP_COUNT ? vmm_mig_step_names[s] : "?";
}

void vmm_mig_config_default(struct vmm_mig_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_remaining_pages = 64;
    cfg->max_rounds = 30;
    cfg->fail_after = VMM_MIG_STEP_NONE;
}

/* One migration in progress. */
struct vmm_mig_ctx {
    struct vmm_mig_host *src, *dst;
    const struct vmm_mig_guest *guest;
    const struct vmm_mig_config *cfg;
    struct vmm_mig_stats *st;
    bool shared;  /* src and dst serve the same RAM: nothing to copy */
    bool logging; /* DMA logging started on the source VF */
    bool paused;  /* the guest's vCPUs are stopped */
    uint64_t pages;
    uint64_t *dirty; /* the union to copy next, one bit per page */
    uint64_t *dma;   /* scratch for DMA_LOGGING_REPORT */
    uint64_t t_pause, t_stop;
};

static int vmm_mig_fail(struct vmm_mig_ctx *c, enum vmm_mig_step step, int ret, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int vmm_mig_fail(struct vmm_mig_ctx *c, enum vmm_mig_step step, int ret, const char *fmt, ...)
{
    va_list ap;

    c->st->failed_step = step;
    va_start(ap, fmt);
    vsnprintf(c->st->error, sizeof(c->st->error), fmt, ap);
    va_end(ap);
    am_log(AM_LOG_INFO, "vmm", "migration failed at %s: %s", vmm_mig_step_name(step), c->st->error);
    return ret;
}

/* Fault injection: the step just completed is the one to fail after. */
static int vmm_mig_done(struct vmm_mig_ctx *c, enum vmm_mig_step step)
{
    if (c->cfg->fail_after != step)
        return 0;
    return vmm_mig_fail(c, step + 1, -ECANCELED, "fault injected after %s", vmm_mig_step_name(step));
}

static int vmm_mig_set_state(struct vmm_mig_ctx *c, enum vmm_mig_step step, struct mig_dev *m,
                             const char *who, enum vfio_mig_state target)
{
    int ret = mig_set_state(m, target);

    if (ret)
        return vmm_mig_fail(c, step, ret, "%s -> %s: %s", who, mig_state_name(target),
                            mig_last_error(m));
    return 0;
}

/* Reads the saving stream until it ends (0) or pauses (-ENOMSG), appending
 * to st->device_state. */
static int vmm_mig_state_read(struct vmm_mig_ctx *c, enum vmm_mig_step step)
{
    struct vmm_mig_stats *st = c->st;

    for (;;) {
        size_t room = sizeof(st->device_state) - st->device_state_bytes;
        ssize_t n;

        if (room == 0)
            return vmm_mig_fail(c, step, -EFBIG, "device state longer than %u bytes",
                                MIG_STREAM_MAX);
        n = mig_read(c->src->mig, st->device_state + st->device_state_bytes, room);
        if (n == 0 || n == -ENOMSG)
            return 0;
        if (n < 0)
            return vmm_mig_fail(c, step, (int)n, "reading the device state: %s",
                                mig_last_error(c->src->mig));
        st->device_state_bytes += (uint64_t)n;
    }
}

static int vmm_mig_state_write(struct vmm_mig_ctx *c, enum vmm_mig_step step, uint64_t from,
                               uint64_t to)
{
    while (from < to) {
        ssize_t n = mig_write(c->dst->mig, c->st->device_state + from, (size_t)(to - from));

        if (n <= 0)
            return vmm_mig_fail(c, step, n < 0 ? (int)n : -EIO, "writing the device state: %s",
                                mig_last_error(c->dst->mig));
        from += (uint64_t)n;
    }
    return 0;
}

/* Copies [first, first+count) pages from the source RAM to the destination's. */
static void vmm_mig_copy_run(struct vmm_mig_ctx *c, uint64_t first, uint64_t count)
{
    uint64_t off = first << VM_RAM_PAGE_SHIFT, len = count << VM_RAM_PAGE_SHIFT;

    memcpy(vm_ram_host(c->dst->ram) + off, vm_ram_host(c->src->ram) + off, len);
}

/* Copies every page set in c->dirty and clears it; returns the pages copied. */
static uint64_t vmm_mig_copy_dirty(struct vmm_mig_ctx *c)
{
    uint64_t words = am_bitmap_words(c->pages), copied = 0, run_first = 0, run_len = 0;

    for (uint64_t w = 0; w < words; w++) {
        uint64_t v = c->dirty[w];

        c->dirty[w] = 0;
        if (v == 0 && run_len == 0)
            continue;
        for (unsigned b = 0; b < 64; b++) {
            uint64_t page = w * 64 + b;

            if ((v >> b) & 1) {
                if (run_len == 0)
                    run_first = page;
                run_len++;
                copied++;
            } else if (run_len > 0) {
                vmm_mig_copy_run(c, run_first, run_len);
                run_len = 0;
            }
        }
    }
    if (run_len > 0)
        vmm_mig_copy_run(c, run_first, run_len);
    return copied;
}

/* Round 1: every page of the source that holds data (holes read as zero on
 * both sides, so they are skipped without being touched). */
static int vmm_mig_copy_data(struct vmm_mig_ctx *c, uint64_t *pages)
{
    uint64_t size = vm_ram_size(c->src->ram), gpa = 0, start, end;

    *pages = 0;
    while (gpa < size) {
        int ret = vm_ram_find_data(c->src->ram, gpa, &start, &end);

        if (ret)
            return vmm_mig_fail(c, VMM_MIG_STEP_RAM_PRECOPY, ret, "finding data in guest RAM: %s",
                                strerror(-ret));
        if (start >= end)
            break;
        vmm_mig_copy_run(c, start >> VM_RAM_PAGE_SHIFT, (end - start) >> VM_RAM_PAGE_SHIFT);
        *pages += (end - start) >> VM_RAM_PAGE_SHIFT;
        gpa = end;
    }
    return 0;
}

/* ORs the CPU log and the device's DMA log into c->dirty (both
 * report-and-clear); *dma_pages gets what the device reported. */
static int vmm_mig_collect(struct vmm_mig_ctx *c, enum vmm_mig_step step, uint64_t *dma_pages)
{
    uint64_t size = vm_ram_size(c->src->ram);
    int ret;

    c->st->cpu_dirty_pages += vm_ram_dirty_collect(c->src->ram, c->dirty);
    ret = mig_dma_logging_report(c->src->mig, 0, size, VM_RAM_PAGE_SIZE, c->dma);
    if (ret)
        return vmm_mig_fail(c, step, ret, "DMA logging report: %s", mig_last_error(c->src->mig));
    ret = vm_ram_dirty_merge_dma(c->src->ram, c->dirty, c->dma, 0, size, VM_RAM_PAGE_SIZE);
    if (ret)
        return vmm_mig_fail(c, step, ret, "merging the DMA log: %s", strerror(-ret));
    *dma_pages = am_bitmap_weight(c->dma, c->pages);
    c->st->dma_dirty_pages += *dma_pages;
    return 0;
}

/* Back to where the migration started: destination reset, source RUNNING,
 * the guest carrying on there. */
static void vmm_mig_rollback(struct vmm_mig_ctx *c)
{
    int ret;

    if (c->logging) {
        mig_dma_logging_stop(c->src->mig);
        c->logging = false;
    }
    /* First stop whatever the destination may have started (a function reset
     * cancels its jobs); it never wrote the source's RAM. */
    if (mig_reset(c->dst->mig))
        am_log(AM_LOG_ERR, "vmm", "migration rollback: destination reset failed: %s",
               mig_last_error(c->dst->mig));
    ret = mig_set_state(c->src->mig, VFIO_MIG_STATE_RUNNING);
    if (ret) {
        c->st->rollback_error = ret;
        am_log(AM_LOG_ERR, "vmm", "migration rollback: source -> RUNNING failed: %s",
               mig_last_error(c->src->mig));
    }
    if (c->paused) {
        ret = c->guest->resume(c->guest->opaque, NULL, NULL);
        if (ret) {
            if (!c->st->rollback_error)
                c->st->rollback_error = ret;
            am_log(AM_LOG_ERR, "vmm", "migration rollback: the guest did not resume: %d", ret);
        }
        c->paused = false;
    }
}

/* ---- the steps, as ops of the orchestrator (vmm/migrate_core.h) ---- */

/* Round 0 copies every page holding data (holes read as zero on both
 * sides), later rounds the union in map; the last one goes with the vCPUs
 * stopped. */
static int vmm_mig_op_send_pages(void *opaque, uint64_t *map, unsigned round, bool last)
{
    struct vmm_mig_ctx *c = opaque;
    struct vmm_mig_stats *st = c->st;
    uint64_t pages;
    int ret;

    (void)map; /* c->dirty */
    if (last) {
        st->last_pages = vmm_mig_copy_dirty(c);
        return 0;
    }
    if (round == 0) {
        ret = vmm_mig_copy_data(c, &pages);
        if (ret)
            return ret;
    } else {
        pages = vmm_mig_copy_dirty(c);
    }
    st->round_pages[st->precopy_rounds++] = pages;
    st->precopy_bytes += pages << VM_RAM_PAGE_SHIFT;
    return 0;
}

static int vmm_mig_op_collect(void *opaque, uint64_t *map, bool last)
{
    struct vmm_mig_ctx *c = opaque;
    uint64_t dma = 0;
    int ret;

    (void)map;
    ret = vmm_mig_collect(c, last ? VMM_MIG_STEP_LOG_LAST : VMM_MIG_STEP_RAM_PRECOPY, &dma);
    if (ret || !last)
        return ret;
    c->st->last_dma_pages = dma;
    mig_dma_logging_stop(c->src->mig);
    c->logging = false;
    return 0;
}

/* What is left in the union then goes with the vCPUs stopped. */
static bool vmm_mig_op_precopy_done(void *opaque, unsigned rounds, uint64_t dirty)
{
    struct vmm_mig_ctx *c = opaque;

    return dirty <= c->cfg->max_remaining_pages || rounds >= c->cfg->max_rounds;
}

/* Steps 1-3: the destination paused and empty, the source in PRE_COPY,
 * the match data across. */
static int vmm_mig_op_open(void *opaque)
{
    struct vmm_mig_ctx *c = opaque;
    struct vmm_mig_stats *st = c->st;
    int ret;

    ret = vmm_mig_set_state(c, VMM_MIG_STEP_DST_RESUMING, c->dst->mig, "destination",
                            VFIO_MIG_STATE_RESUMING);
    if (ret)
        return ret;
    /* The destination's VF is reset and paused: drop MSIs left from an
     * earlier stay of a guest there, and start from an empty RAM. */
    for (unsigned v = 0; v < QM_NUM_VECTORS; v++)
        vmm_irq_wait(c->dst->ih->irq, c->dst->fn, v, 0);
    if (!c->shared) {
        ret = vm_ram_zero_range(c->dst->ram, 0, vm_ram_size(c->dst->ram));
        if (ret)
            return vmm_mig_fail(c, VMM_MIG_STEP_DST_RESUMING, ret,
                                "emptying the destination RAM: %s", strerror(-ret));
        vm_ram_dirty_collect(c->dst->ram, c->dirty);
        memset(c->dirty, 0, am_bitmap_words(c->pages) * sizeof(uint64_t));
    }
    if ((ret = vmm_mig_done(c, VMM_MIG_STEP_DST_RESUMING)))
        return ret;

    ret = vmm_mig_set_state(c, VMM_MIG_STEP_SRC_PRE_COPY, c->src->mig, "source",
                            VFIO_MIG_STATE_PRE_COPY);
    if (ret || (ret = vmm_mig_done(c, VMM_MIG_STEP_SRC_PRE_COPY)))
        return ret;

    ret = vmm_mig_state_read(c, VMM_MIG_STEP_MATCH);
    if (ret)
        return ret;
    st->device_head_bytes = st->device_state_bytes;
    ret = vmm_mig_state_write(c, VMM_MIG_STEP_MATCH, 0, st->device_head_bytes);
    if (ret || (ret = vmm_mig_done(c, VMM_MIG_STEP_MATCH)))
        return ret;
    return 0;
}

static int vmm_mig_op_log_start(void *opaque)
{
    struct vmm_mig_ctx *c = opaque;
    struct iommu_range range = {0, vm_ram_size(c->src->ram)};
    uint64_t page_size = VM_RAM_PAGE_SIZE;
    int ret;

    ret = mig_dma_logging_start(c->src->mig, &page_size, &range, 1, 0);
    if (ret)
        return vmm_mig_fail(c, VMM_MIG_STEP_LOG_START, ret, "DMA logging start: %s",
                            mig_last_error(c->src->mig));
    c->logging = true;
    if (page_size != VM_RAM_PAGE_SIZE)
        return vmm_mig_fail(c, VMM_MIG_STEP_LOG_START, -EINVAL,
                            "the device logs at %llu-byte pages", (unsigned long long)page_size);
    /* Round 1 copies every page with data, so older CPU writes are moot. */
    vm_ram_dirty_collect(c->src->ram, c->dirty);
    memset(c->dirty, 0, am_bitmap_words(c->pages) * sizeof(uint64_t));
    return 0;
}

static int vmm_mig_op_pause(void *opaque)
{
    struct vmm_mig_ctx *c = opaque;
    int ret;

    c->t_pause = am_now_ns();
    ret = c->guest->pause(c->guest->opaque);
    if (ret)
        return vmm_mig_fail(c, VMM_MIG_STEP_VCPUS_PAUSE, ret, "pausing the vCPUs: %d", ret);
    c->paused = true;
    c->st->pause_ns = am_now_ns() - c->t_pause;
    return 0;
}

/* STOP_COPY (PRE_COPY_P2P quiesces it, the CACHE_WB writes queue positions
 * into guest RAM) and the rest of the state read. */
static int vmm_mig_op_stop_device(void *opaque)
{
    struct vmm_mig_ctx *c = opaque;
    int ret;

    c->t_stop = am_now_ns();
    ret = vmm_mig_set_state(c, VMM_MIG_STEP_SRC_STOP_COPY, c->src->mig, "source",
                            VFIO_MIG_STATE_STOP_COPY);
    return ret ? ret : vmm_mig_state_read(c, VMM_MIG_STEP_SRC_STOP_COPY);
}

static int vmm_mig_op_device_state(void *opaque)
{
    struct vmm_mig_ctx *c = opaque;

    return vmm_mig_state_write(c, VMM_MIG_STEP_DST_STATE, c->st->device_head_bytes,
                               c->st->device_state_bytes);
}

/* Steps 11-12: the destination RUNNING, the guest carrying on there. */
static int vmm_mig_op_handover(void *opaque)
{
    struct vmm_mig_ctx *c = opaque;
    struct vmm_mig_stats *st = c->st;
    struct mig_timing ts, td;
    int ret;

    ret = vmm_mig_set_state(c, VMM_MIG_STEP_DST_RUNNING, c->dst->mig, "destination",
                            VFIO_MIG_STATE_RUNNING);
    if (ret)
        return ret;
    st->stop_to_run_ns = am_now_ns() - c->t_stop;
    mig_timing_get(c->src->mig, &ts);
    mig_timing_get(c->dst->mig, &td);
    st->quiesce_ns = ts.quiesce_ns;
    st->save_ns = ts.save_ns;
    st->restore_ns = td.restore_ns;
    st->resume_ns = td.resume_ns;
    st->device_downtime_ns = st->quiesce_ns + st->save_ns + st->restore_ns + st->resume_ns;
    if ((ret = vmm_mig_done(c, VMM_MIG_STEP_DST_RUNNING)))
        return ret;

    ret = c->guest->resume(c->guest->opaque, vm_ram_guest(c->dst->ram), vmm_mig_host_io(c->dst));
    if (ret)
        return vmm_mig_fail(c, VMM_MIG_STEP_VCPUS_RESUME, ret,
                            "the guest did not resume on the destination: %d", ret);
    c->paused = false;
    st->downtime_ns = am_now_ns() - c->t_pause;
    return 0;
}

/* The core's steps are this path's; the ones inside OPEN and HANDOVER
 * (DST_RESUMING, SRC_PRE_COPY, MATCH, DST_RUNNING) are checked there. */
static int vmm_mig_op_step_done(void *opaque, enum mig_core_step step)
{
    static const enum vmm_mig_step steps[MIG_CORE_STEP_COUNT] = {
        [MIG_CORE_OPEN] = VMM_MIG_STEP_NONE,
        [MIG_CORE_LOG_START] = VMM_MIG_STEP_LOG_START,
        [MIG_CORE_PRECOPY] = VMM_MIG_STEP_RAM_PRECOPY,
        [MIG_CORE_PAUSE] = VMM_MIG_STEP_VCPUS_PAUSE,
        [MIG_CORE_STOP_COPY] = VMM_MIG_STEP_SRC_STOP_COPY,
        [MIG_CORE_LOG_LAST] = VMM_MIG_STEP_LOG_LAST,
        [MIG_CORE_RAM_LAST] = VMM_MIG_STEP_RAM_LAST,
        [MIG_CORE_DEVICE_STATE] = VMM_MIG_STEP_DST_STATE,
        [MIG_CORE_HANDOVER] = VMM_MIG_STEP_NONE,
    };

    if ((unsigned)step >= MIG_CORE_STEP_COUNT || steps[step] == VMM_MIG_STEP_NONE)
        return 0;
    return vmm_mig_done(opaque, steps[step]);
}

static void vmm_mig_op_rollback(void *opaque, int err)
{
    struct vmm_mig_ctx *c = opaque;

    (void)err;
    /* With shared RAM the destination writes the one RAM from DST_RUNNING
     * on: a failing guest resume leaves it running and the guest paused. */
    if (c->shared && c->st->failed_step >= VMM_MIG_STEP_VCPUS_RESUME)
        return;
    vmm_mig_rollback(c);
}

static const struct mig_core_ops vmm_mig_ops = {
    .open = vmm_mig_op_open,
    .log_start = vmm_mig_op_log_start,
    .send_pages = vmm_mig_op_send_pages,
    .collect = vmm_mig_op_collect,
    .precopy_done = vmm_mig_op_precopy_done,
    .pause = vmm_mig_op_pause,
    .stop_device = vmm_mig_op_stop_device,
    .device_state = vmm_mig_op_device_state,
    .handover = vmm_mig_op_handover,
    .step_done = vmm_mig_op_step_done,
    .rollback = vmm_mig_op_rollback,
};

static int vmm_mig_check(const struct vmm_mig_host *src, const struct vmm_mig_host *dst,
                         const struct vmm_mig_guest *guest, const struct vmm_mig_config *cfg)
{
    bool shared;

    if (!src || !dst || src == dst || !guest || !guest->pause || !guest->resume || !cfg)
        return -EINVAL;
    shared = src->ram == dst->ram;
    if (vm_ram_size(src->ram) != vm_ram_size(dst->ram) || cfg->max_rounds < 1 ||
        cfg->max_rounds > VMM_MIG_MAX_ROUNDS || (unsigned)cfg->fail_after >= VMM_MIG_STEP_COUNT)
        return -EINVAL;
    if (cfg->fail_after >= (shared ? VMM_MIG_STEP_DST_RUNNING : VMM_MIG_STEP_VCPUS_RESUME))
        return -EINVAL;
    if (shared && (cfg->fail_after == VMM_MIG_STEP_LOG_START ||
                   cfg->fail_after == VMM_MIG_STEP_RAM_PRECOPY ||
                   cfg->fail_after == VMM_MIG_STEP_LOG_LAST || cfg->fail_after == VMM_MIG_STEP_RAM_LAST))
        return -EINVAL; /* steps that do not run with shared RAM */
    return 0;
}

int vmm_mig_run(struct vmm_mig_host *src, struct vmm_mig_host *dst, const struct vmm_mig_guest *guest,
                const struct vmm_mig_config *cfg, struct vmm_mig_stats *st)
{
    struct vmm_mig_stats local;
    struct vmm_mig_ctx c;
    uint64_t t0 = am_now_ns();
    int ret;

    if (!st)
        st = &local;
    memset(st, 0, sizeof(*st));
    ret = vmm_mig_check(src, dst, guest, cfg);
    if (ret) {
        snprintf(st->error, sizeof(st->error), "bad arguments");
        return ret;
    }
    if (mig_get_state(src->mig) != VFIO_MIG_STATE_RUNNING ||
        mig_get_state(dst->mig) != VFIO_MIG_STATE_RUNNING) {
        snprintf(st->error, sizeof(st->error), "a VF is not RUNNING (source %s, destination %s)",
                 mig_state_name(mig_get_state(src->mig)), mig_state_name(mig_get_state(dst->mig)));
        return -EBUSY;
    }
    memset(&c, 0, sizeof(c));
    c.src = src;
    c.dst = dst;
    c.guest = guest;
    c.cfg = cfg;
    c.st = st;
    c.shared = src->ram == dst->ram;
    c.pages = vm_ram_pages(src->ram);
    st->shared_ram = c.shared;
    if (!c.shared) {
        c.dirty = calloc(am_bitmap_words(c.pages), sizeof(uint64_t));
        c.dma = calloc(am_bitmap_words(c.pages), sizeof(uint64_t));
        if (!c.dirty || !c.dma) {
            free(c.dirty);
            free(c.dma);
            snprintf(st->error, sizeof(st->error), "no memory for the dirty bitmaps");
            return -ENOMEM;
        }
    }
    ret = mig_core_run(&(struct mig_core){.ops = &vmm_mig_ops, .opaque = &c, .ram = !c.shared,
                                           .map = c.dirty, .pages = c.pages});
    if (ret == 0) {
        /* Committed: the source keeps nothing of the guest. */
        st->ram_bytes = st->precopy_bytes + (st->last_pages << VM_RAM_PAGE_SHIFT);
        st->src_reset_error = mig_reset(src->mig);
        if (st->src_reset_error)
            am_log(AM_LOG_ERR, "vmm", "migration done, but the source reset failed: %s",
                   mig_last_error(src->mig));
    }
    st->total_ns = am_now_ns() - t0;
    free(c.dirty);
    free(c.dma);
    return ret;
}

/* ---- the migration log ---- */

static void vmm_mig_json_add(json_object *o, const char *key, uint64_t v)
{
    json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

static uint64_t vmm_mig_us(uint64_t ns)
{
    return (ns + 500) / 1000;
}

json_object *vmm_mig_stats_json(unsigned n, const char *from, const char *to, int ret,
                                const struct vmm_mig_stats *st)
{
    json_object *o = json_object_new_object(), *rounds = json_object_new_array();
    char dir[64];

    if (!o || !rounds) {
        json_object_put(o);
        json_object_put(rounds);
        return NULL;
    }
    snprintf(dir, sizeof(dir), "%s->%s", from, to);
    vmm_mig_json_add(o, "n", n);
    json_object_object_add(o, "direction", json_object_new_string(dir));
    json_object_object_add(o, "from", json_object_new_string(from));
    json_object_object_add(o, "to", json_object_new_string(to));
    json_object_object_add(o, "ok", json_object_new_boolean(ret == 0));
    vmm_mig_json_add(o, "device_state_bytes", st->device_state_bytes);
    vmm_mig_json_add(o, "device_head_bytes", st->device_head_bytes);
    vmm_mig_json_add(o, "precopy_rounds", st->precopy_rounds);
    for (unsigned i = 0; i < st->precopy_rounds && i < VMM_MIG_MAX_ROUNDS; i++)
        json_object_array_add(rounds, json_object_new_int64((int64_t)st->round_pages[i]));
    json_object_object_add(o, "round_pages", rounds);
    vmm_mig_json_add(o, "precopy_bytes", st->precopy_bytes);
    vmm_mig_json_add(o, "last_pages", st->last_pages);
    vmm_mig_json_add(o, "ram_bytes", st->ram_bytes);
    vmm_mig_json_add(o, "dma_dirty_pages", st->dma_dirty_pages);
    vmm_mig_json_add(o, "last_dma_pages", st->last_dma_pages);
    vmm_mig_json_add(o, "cpu_dirty_pages", st->cpu_dirty_pages);
    vmm_mig_json_add(o, "downtime_us", vmm_mig_us(st->downtime_ns));
    vmm_mig_json_add(o, "pause_us", vmm_mig_us(st->pause_ns));
    vmm_mig_json_add(o, "stop_to_run_us", vmm_mig_us(st->stop_to_run_ns));
    vmm_mig_json_add(o, "quiesce_us", vmm_mig_us(st->quiesce_ns));
    vmm_mig_json_add(o, "save_us", vmm_mig_us(st->save_ns));
    vmm_mig_json_add(o, "restore_us", vmm_mig_us(st->restore_ns));
    vmm_mig_json_add(o, "resume_us", vmm_mig_us(st->resume_ns));
    vmm_mig_json_add(o, "device_downtime_us", vmm_mig_us(st->device_downtime_ns));
    vmm_mig_json_add(o, "total_us", vmm_mig_us(st->total_ns));
    if (ret) {
        json_object_object_add(o, "failed_step",
                               json_object_new_string(vmm_mig_step_name(st->failed_step)));
        json_object_object_add(o, "error", json_object_new_string(st->error));
    }
    return o;
}

/* ---- a workload migrated M times ---- */

static int vmm_mig_state_save(const char *dir, unsigned n, const struct vmm_mig_stats *st)
{
    char path[4096];
    FILE *f;
    int ret = 0;

    if (snprintf(path, sizeof(path), "%s/migration-%u.bin", dir, n) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    f = fopen(path, "wb");
    if (!f) {
        ret = -errno;
        am_log(AM_LOG_ERR, "vmm", "saving the device state to %s: %s", path, strerror(-ret));
        return ret;
    }
    if (fwrite(st->device_state, 1, st->device_state_bytes, f) != st->device_state_bytes)
        ret = -EIO;
    if (fclose(f) != 0 && ret == 0)
        ret = -EIO;
    if (ret)
        am_log(AM_LOG_ERR, "vmm", "saving the device state to %s failed", path);
    return ret;
}

/* Progress of the vCPUs in jobs: a job is 8 steps (workload.h: PICK, GEN,
 * SUBMIT_COMP, WAIT_COMP, VERIFY, SUBMIT_DECOMP, WAIT_DECOMP, CHECK), and
 * the step count is one word in guest RAM, cheap to read every poll. */
#define VMM_MIG_STEPS_PER_JOB 8u

/* The workload as a guest that also counts, once its vCPUs are stopped,
 * the SQEs its driver has doorbelled and not yet reaped: the jobs the
 * device holds at the migration (O(queues), so cheap inside the downtime). */
struct vmm_mig_counting_guest {
    struct workload *w;
    uint64_t sqes_in_flight;
};

static int vmm_mig_counting_pause(void *opaque)
{
    struct vmm_mig_counting_guest *g = opaque;
    int ret = workload_vcpus_pause(g->w);
    const struct guest_vf *vf = workload_vf(g->w);

    g->sqes_in_flight = 0;
    for (unsigned q = 0; ret == 0 && q < guest_vf_qp_rings(vf); q++)
        g->sqes_in_flight += guest_vf_qp_inflight(vf, q);
    return ret;
}

static int vmm_mig_counting_resume(void *opaque, const struct guest_ram *ram, const struct vf_io *io)
{
    struct vmm_mig_counting_guest *g = opaque;

    return workload_vcpus_resume(g->w, ram, io);
}

/* Appends migration k's entry, with what the job table said just before
 * and what the device held at the pause. */
static void vmm_mig_log_add(json_object *log, unsigned k, const char *from, const char *to, int ret,
                            const struct vmm_mig_stats *st, const struct workload_report *before,
                            uint64_t sqes_in_flight)
{
    json_object *entry = vmm_mig_stats_json(k, from, to, ret, st);

    if (!entry)
        return;
    vmm_mig_json_add(entry, "jobs_finished_before", before->jobs_verified + before->jobs_failed);
    vmm_mig_json_add(entry, "sqes_in_flight_at_pause", sqes_in_flight);
    json_object_array_add(log, entry);
}

int vmm_mig_workload_run(struct workload *w, struct vmm_mig_host *a, struct vmm_mig_host *b,
                         const struct vmm_mig_plan *plan, unsigned *done, int *on_b)
{
    struct vmm_mig_host *hosts[2] = {a, b};
    static const char *const names[2] = {"A", "B"};
    struct vmm_mig_counting_guest counting = {w, 0};
    struct vmm_mig_guest guest = {vmm_mig_counting_pause, vmm_mig_counting_resume, &counting};
    struct workload_report before;
    struct vmm_mig_stats *st;
    unsigned at = 0, k = 0, m;
    int poll_ms, ret = 0, failed = 0;
    uint64_t steps_total;

    if (done)
        *done = 0;
    if (on_b)
        *on_b = 0;
    if (!w || !a || !b || !plan)
        return -EINVAL;
    st = malloc(sizeof(*st));
    if (!st)
        return -ENOMEM;
    m = plan->migrations;
    steps_total = (uint64_t)workload_config_get(w)->jobs * VMM_MIG_STEPS_PER_JOB;
    poll_ms = plan->poll_ms ? (int)AM_MIN(plan->poll_ms, 1000u) : 1;
    for (;;) {
        bool finished = workload_wait(w, 0) == 0;
        bool due = !failed && k < m &&
                   (finished || workload_steps(w) * (m + 1) >= (uint64_t)(k + 1) * steps_total);
        unsigned to = at ^ 1;
        int mret;

        if (!due) {
            if (finished)
                break;
            workload_wait(w, poll_ms);
            continue;
        }
        k++;
        workload_report_get(w, &before);
        counting.sqes_in_flight = 0;
        mret = vmm_mig_run(hosts[at], hosts[to], &guest, &plan->mig, st);
        if (plan->log)
            vmm_mig_log_add(plan->log, k, names[at], names[to], mret, st, &before,
                            counting.sqes_in_flight);
        if (mret) {
            am_log(AM_LOG_ERR, "vmm", "migration %u %s->%s failed at %s: %s", k, names[at],
                   names[to], vmm_mig_step_name(st->failed_step), st->error);
            failed = 1;
            ret = mret;
            continue;
        }
        at = to;
        if (done)
            (*done)++;
        if (plan->save_dir && vmm_mig_state_save(plan->save_dir, k, st) && ret == 0)
            ret = -EIO;
    }
    if (on_b)
        *on_b = (int)at;
    free(st);
    return ret;
}
