/* vmm/migrate_inproc: live migration of a running guest between two "hosts"
 * in one process.
 *
 * A host is one device instance (its own qm_dev, IOMMU and MSI router), the
 * guest's VF on it attached to that host's guest RAM (vm_ram) through the
 * in-process transport, and the VF's migration driver (mig.h). A guest is
 * anything that can stop its vCPUs at a step boundary and carry on with
 * another RAM and VF (struct vmm_mig_guest; the workload is one).
 *
 * One migration (vmm_mig_run), in this order, run by the orchestrator the
 * mini-VMM shares (vmm/migrate_core.h; these steps are its ops); the
 * numbers are enum vmm_mig_step:
 *   1 DST_RESUMING   destination VF -> RESUMING (function reset, paused);
 *                    its RAM is emptied and its stale MSIs dropped
 *   2 SRC_PRE_COPY   source VF -> PRE_COPY (still running)
 *   3 MATCH          the stream head (match data) read and written to the
 *                    destination: an incompatible destination refuses here,
 *                    before any downtime
 *   4 LOG_START      device DMA logging over the whole RAM on the source VF;
 *                    the CPU dirty log is cleared
 *   5 RAM_PRECOPY    round 1 copies every page holding data; each further
 *                    round copies the union of the CPU and DMA logs, until
 *                    it is at most max_remaining_pages or max_rounds ran
 *   6 VCPUS_PAUSE    the guest stops at a step boundary (downtime starts)
 *   7 SRC_STOP_COPY  source -> STOP_COPY (PRE_COPY_P2P quiesces it, the
 *                    CACHE_WB writes queue positions into guest RAM), the
 *                    rest of the device state is read
 *   8 LOG_LAST       a last DMA report (it holds the CACHE_WB writes) and
 *                    CPU collect, then DMA logging stops
 *   9 RAM_LAST       the remaining dirty pages are copied
 *  10 DST_STATE      the rest of the state is written to the destination
 *  11 DST_RUNNING    destination -> RUNNING (through STOP: the stream is
 *                    validated and loaded, the queues reloaded)
 *  12 VCPUS_RESUME   the guest carries on with the destination's RAM and VF
 *                    (downtime ends) -- the commit point
 *  13 SRC_RESET      the source VF is reset (back to RUNNING, empty)
 *
 * Contract
 * - Hosts: vmm_mig_host_create builds a device from cfg and attaches its VF
 *   to ram (the caller's, which must outlive the host); vmm_mig_host_wrap
 *   borrows a vmm_inproc_host someone else built (its device, router and
 *   transport stay theirs) and adds only the migration driver. Errors:
 *   -EINVAL (NULL, fn not a VF of the device, a mode other than V4/V3),
 *   -ENODEV (v4 mode on v3 silicon),
 *   -ENOMEM, or the creates' errors; on failure nothing is left over.
 * - vmm_mig_run(src, dst, guest, cfg, st): the guest must run on src (its
 *   RAM and VF). Returns 0 when the guest runs on dst; then the source VF is
 *   reset (a failing reset is logged, counted in st->src_reset_error, and
 *   does not undo the migration). Any failure before the commit point
 *   returns its negative errno with the guest running on src exactly where it
 *   was, the source VF RUNNING and its jobs intact (nothing lost: jobs the
 *   quiesce cancelled stay on their queues), the destination VF reset.
 *   Errnos: -EINVAL bad arguments or config, or RAM sizes that differ
 *   (nothing touched); -EBUSY a VF not in RUNNING (another migration, or
 *   ERROR); -ECANCELED a fault injected by cfg->fail_after; otherwise the
 *   errno of the failing call (mig.h: an incompatible destination gives
 *   -EINVAL at MATCH). st->failed_step and st->error say where and why; if
 *   the rollback itself fails (the source cannot return to RUNNING),
 *   st->rollback_error holds its errno and the guest is resumed on src
 *   anyway (its jobs will then fail, not vanish).
 * - Shared RAM: when src and dst serve the same vm_ram (both VFs map the same
 *   memory, as in a shared-memory migration), nothing is copied or logged:
 *   steps 4, 5, 8 and 9 are skipped and only the device moves. The commit
 *   point is then DST_RUNNING (the destination writes the one RAM from then
 *   on): cfg->fail_after must be below it, and a failing guest resume is
 *   returned with the destination device running and the guest paused.
 * - Threads: one controlling thread per pair of hosts; the guest's own
 *   threads keep running until VCPUS_PAUSE.
 */
#ifndef ACCMIG_VMM_MIGRATE_INPROC_H
#define ACCMIG_VMM_MIGRATE_INPROC_H

#include <stdint.h>

#include <json-c/json.h>

#include "guest/vf_io.h"
#include "guest/workload.h"
#include "mig/mig.h"
#include "mig/stream.h"
#include "vmm/inproc.h"
#include "vmm/vm_ram.h"

/* ---- hosts ---- */

struct vmm_mig_host_config {
    struct qm_dev_config dev; /* its irq sink is replaced by the host's router */
    unsigned vf_fn;           /* the guest's VF: 1..dev.num_vfs */
    enum mig_hw_mode mode;    /* MIG_HW_V4 needs dev.revision QM_REV_V4 */
};

/* qm_dev_config_default, VF 1, v4. */
void vmm_mig_host_config_default(struct vmm_mig_host_config *cfg);

struct vmm_mig_host;

int vmm_mig_host_create(const struct vmm_mig_host_config *cfg, struct vm_ram *ram,
                        struct vmm_mig_host **out);
int vmm_mig_host_wrap(struct vmm_inproc_host *ih, unsigned vf_fn, enum mig_hw_mode mode,
                      struct vm_ram *ram, struct vmm_mig_host **out);
/* Destroys what the host owns (everything, or for a wrapped host only its
 * migration driver). NULL is a no-op. */
void vmm_mig_host_destroy(struct vmm_mig_host *h);

struct vm_ram *vmm_mig_host_ram(const struct vmm_mig_host *h);
const struct vf_io *vmm_mig_host_io(const struct vmm_mig_host *h);
struct qm_dev *vmm_mig_host_dev(const struct vmm_mig_host *h);
struct mig_dev *vmm_mig_host_mig(const struct vmm_mig_host *h);

/* ---- the guest being moved ---- */

struct vmm_mig_guest {
    /* Stop every vCPU at a step boundary; 0 or a negative errno. */
    int (*pause)(void *opaque);
    /* Carry on; ram and io NULL = where it was (rollback), else the
     * destination's. 0 or a negative errno (the guest stays paused). */
    int (*resume)(void *opaque, const struct guest_ram *ram, const struct vf_io *io);
    void *opaque;
};

/* The workload's vCPUs as a guest (workload_vcpus_pause/resume). */
struct vmm_mig_guest vmm_mig_guest_of_workload(struct workload *w);

/* ---- one migration ---- */

enum vmm_mig_step {
    VMM_MIG_STEP_NONE = 0,
    VMM_MIG_STEP_DST_RESUMING,
    VMM_MIG_STEP_SRC_PRE_COPY,
    VMM_MIG_STEP_MATCH,
    VMM_MIG_STEP_LOG_START,
    VMM_MIG_STEP_RAM_PRECOPY,
    VMM_MIG_STEP_VCPUS_PAUSE,
    VMM_MIG_STEP_SRC_STOP_COPY,
    VMM_MIG_STEP_LOG_LAST,
    VMM_MIG_STEP_RAM_LAST,
    VMM_MIG_STEP_DST_STATE,
    VMM_MIG_STEP_DST_RUNNING,
    VMM_MIG_STEP_VCPUS_RESUME,
    VMM_MIG_STEP_SRC_RESET,
    VMM_MIG_STEP_COUNT,
};

/* "dst-resuming", ...; "?" out of range. */
const char *vmm_mig_step_name(enum vmm_mig_step s);

#define VMM_MIG_MAX_ROUNDS 64u

struct vmm_mig_config {
    /* Precopy stops once the dirty union is at most this many pages
     * (default 64), or after max_rounds rounds (1..VMM_MIG_MAX_ROUNDS,
     * default 30). */
    uint64_t max_remaining_pages;
    unsigned max_rounds;
    /* Fault injection: NONE, or a step below VCPUS_RESUME (below
     * DST_RUNNING with shared RAM): once that step has completed, the
     * migration fails with -ECANCELED as if the next one had. */
    enum vmm_mig_step fail_after;
};

void vmm_mig_config_default(struct vmm_mig_config *cfg);

struct vmm_mig_stats {
    /* device */
    uint64_t device_state_bytes; /* the whole stream */
    uint64_t device_head_bytes;  /* of which sent in PRE_COPY (match data) */
    uint8_t device_state[MIG_STREAM_MAX];
    /* RAM (pages of VM_RAM_PAGE_SIZE) */
    unsigned precopy_rounds;
    uint64_t round_pages[VMM_MIG_MAX_ROUNDS]; /* copied in each precopy round */
    uint64_t precopy_bytes;   /* copied while the guest ran */
    uint64_t last_pages;      /* copied with the vCPUs paused */
    uint64_t ram_bytes;       /* everything copied */
    uint64_t dma_dirty_pages; /* pages the device's DMA log reported, all reports */
    uint64_t last_dma_pages;  /* of which in the last report (CACHE_WB, late completions) */
    uint64_t cpu_dirty_pages; /* pages the CPU log reported, all collects */
    int shared_ram;
    /* time, ns */
    uint64_t total_ns;    /* the whole migration */
    uint64_t pause_ns;    /* pause request until every vCPU parked */
    uint64_t downtime_ns; /* pause request until the guest resumed on dst */
    uint64_t stop_to_run_ns; /* source STOP_COPY request to destination RUNNING */
    uint64_t quiesce_ns, save_ns;   /* source (mig_timing_get) */
    uint64_t restore_ns, resume_ns; /* destination */
    uint64_t device_downtime_ns;    /* quiesce + save + restore + resume */
    /* outcome */
    enum vmm_mig_step failed_step; /* NONE on success */
    int rollback_error;            /* 0, or why the source could not resume */
    int src_reset_error;           /* 0, or the failed mig_reset after commit */
    char error[192];
};

int vmm_mig_run(struct vmm_mig_host *src, struct vmm_mig_host *dst, const struct vmm_mig_guest *guest,
                const struct vmm_mig_config *cfg, struct vmm_mig_stats *st);

/* One migration_log entry: {"n", "direction": "A->B", "from", "to", "ok",
 * device_state_bytes, device_head_bytes, precopy_rounds, round_pages[],
 * precopy_bytes, last_pages, ram_bytes, dma_dirty_pages, cpu_dirty_pages,
 * downtime_us, pause_us, stop_to_run_us, quiesce_us, save_us, restore_us,
 * resume_us, device_downtime_us, total_us, and on failure failed_step and
 * error}. Times in whole microseconds (rounded). NULL on allocation
 * failure; the caller owns the object. */
json_object *vmm_mig_stats_json(unsigned n, const char *from, const char *to, int ret,
                                const struct vmm_mig_stats *st);

/* ---- a workload migrated M times ---- */

struct vmm_mig_plan {
    unsigned migrations;   /* M, alternating a->b, b->a, ... */
    struct vmm_mig_config mig;
    const char *save_dir;  /* when set: each stream to save_dir/migration-<n>.bin, n from 1 */
    json_object *log;      /* when set: an array; vmm_mig_stats_json of each migration appended */
    unsigned poll_ms;      /* progress check interval (default 0 = 1 ms) */
};

/* Runs a started workload (its vCPUs on host a) until every vCPU is done,
 * migrating it plan->migrations times: migration k starts once the vCPUs
 * have done about k/(M+1) of the jobs (by their step count in guest RAM), so
 * migrations happen while jobs are in flight (several in a row when M is
 * large); any not started when the jobs end are still carried out on the
 * idle guest. Each log entry also gets jobs_finished_before (the job table
 * just before the migration) and sqes_in_flight_at_pause (SQEs the guest's
 * driver had doorbelled and not reaped when its vCPUs stopped). A failed migration (the guest carries on
 * where it was) ends the migrating; the workload still runs to its end.
 * Returns 0 when the workload finished and every migration succeeded, the
 * first migration's errno, -EIO when a stream could not be saved, or
 * -EINVAL for bad arguments. *done gets the migrations that succeeded and
 * *on_b whether the guest ended on b (both may be NULL). */
int vmm_mig_workload_run(struct workload *w, struct vmm_mig_host *a, struct vmm_mig_host *b,
                         const struct vmm_mig_plan *plan, unsigned *done, int *on_b);

#endif
