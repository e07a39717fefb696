/* vmm/migrate_core: the one implementation of a live migration's steps,
 * shared by the mini-VMM (vm.c, over vfio-user and a vmstream) and the
 * in-process path (migrate_inproc.c, two devices in one process).
 *
 * The core owns the order of the steps and when rollback happens; an ops
 * table says what each step does on one transport (send or copy pages,
 * read the device, pause the guest, hand over). In this order:
 *   OPEN        the device's early steps while the guest runs (pre-copy
 *               state, match data, connection)
 *   LOG_START   both dirty logs on (NULL op: OPEN started them)
 *   PRECOPY     rounds: send_pages(round 0, every page), then collect the
 *               union of the CPU and DMA logs, ask precopy_done, send it, ...
 *   PAUSE       the vCPUs stop (downtime starts)
 *   STOP_COPY   the device stops; its state is read
 *   LOG_LAST    a last collect of both logs (the stop's write-back in it)
 *   RAM_LAST    the remaining union is sent
 *   DEVICE_STATE the rest of the device state goes to the destination
 *   HANDOVER    the destination runs the guest; the source lets go
 * With ram false (the two sides share one RAM) LOG_START, PRECOPY,
 * LOG_LAST and RAM_LAST do not run.
 *
 * After each step, step_done (when set) may fail the migration (fault
 * injection) or note the time. On any failure the core calls rollback once
 * with the errno, except -EINPROGRESS from handover: past the point of no
 * return the source never resumes by itself (docs/vm.md, "The handover").
 * What rollback undoes is the transport's: it knows how far it got.
 */
#ifndef ACCMIG_VMM_MIGRATE_CORE_H
#define ACCMIG_VMM_MIGRATE_CORE_H

#include <stdbool.h>
#include <stdint.h>

enum mig_core_step {
    MIG_CORE_OPEN,
    MIG_CORE_LOG_START,
    MIG_CORE_PRECOPY,
    MIG_CORE_PAUSE,
    MIG_CORE_STOP_COPY,
    MIG_CORE_LOG_LAST,
    MIG_CORE_RAM_LAST,
    MIG_CORE_DEVICE_STATE,
    MIG_CORE_HANDOVER,
    MIG_CORE_STEP_COUNT,
};

/* "open", "log-start", ...; "?" out of range. */
const char *mig_core_step_name(enum mig_core_step s);

/* Every op returns 0 or a negative errno and has recorded why it failed. */
struct mig_core_ops {
    int (*open)(void *opaque);
    int (*log_start)(void *opaque); /* may be NULL */
    /* Sends (or copies) the pages set in map and clears it. round counts
     * from 0 (every page); last: the vCPUs are stopped. */
    int (*send_pages)(void *opaque, uint64_t *map, unsigned round, bool last);
    /* ORs the CPU and DMA logs into map (report and clear). */
    int (*collect)(void *opaque, uint64_t *map, bool last);
    /* After precopy round `rounds` (from 1) left `dirty` pages in the
     * union: true to stop precopy. */
    bool (*precopy_done)(void *opaque, unsigned rounds, uint64_t dirty);
    int (*pause)(void *opaque);
    int (*stop_device)(void *opaque);
    int (*device_state)(void *opaque);
    /* 0 once the destination runs the guest; -EINPROGRESS when the end is
     * in doubt (no rollback). */
    int (*handover)(void *opaque);
    int (*step_done)(void *opaque, enum mig_core_step step); /* may be NULL */
    void (*rollback)(void *opaque, int err);
};

struct mig_core {
    const struct mig_core_ops *ops;
    void *opaque;
    bool ram;      /* RAM travels: the logs and the rounds run */
    uint64_t *map; /* the dirty union, pages bits (unused when !ram) */
    uint64_t pages;
};

/* Runs one migration. 0 when the destination runs the guest; otherwise
 * the failing op's errno (-EINVAL for a bad table), after rollback unless
 * it is -EINPROGRESS. */
int mig_core_run(const struct mig_core *c);

#endif
