/* qm: the device model, a PF with N SR-IOV VFs behind a queue manager, whose
 * queues feed one engine (ZIP, SEC, ...: qm_engine.h; cfg.engine).
 *
 * This is the "silicon". Drivers reach it only through BAR2 register
 * accesses (qm_bar_read/qm_bar_write) and DMA through each function's IOMMU
 * domain; interrupts leave through the irq sink. qm_debug.h has a separate
 * inspection API for tests and reports; no driver uses it.
 *
 * Functions are numbered as PCI functions: 0 = PF, 1..num_vfs = VFs.
 *
 * Contract
 * - qm_bar_read/qm_bar_write: size 1, 2, 4 or 8 and naturally aligned, or
 *   16 at the mailbox; off + size within the BAR. Anything else returns
 *   -EINVAL and is counted as an access error (the value read is all-ones).
 *   Unknown offsets read 0 and ignore writes (counted), returning 0.
 *   Mailbox commands execute synchronously on the write that covers the last
 *   mailbox byte and finish within the driver's 1 ms budget.
 * - Accesses may come from any thread. Jobs run on the model's own worker
 *   threads (normal priority, pinned to worker_cpus if set); the irq sink is
 *   called from those threads (or from the caller of a register write) with
 *   no model lock held.
 * - PAUSE_QM, FLR and an SQC reload revoke jobs in flight: once the command
 *   returns (PAUSE_STATUS "paused and retired"), no write of a revoked job
 *   reaches guest memory, however late its worker runs again; the pause
 *   waits for no worker to be scheduled (at most for one output write of
 *   ZIP_CHUNK bytes in progress and for MSIs already decided).
 * - qm_function_reset is an FLR: the function's registers, queues, contexts,
 *   pause state and pending interrupts return to reset values. Its IOMMU
 *   mappings are the VMM's and stay, and so does the VFT (device config).
 *   Jobs in flight are cancelled first; the call waits for them.
 * - BAR2 layout. VF: 0x0000..0x7fff function-local registers; 0x8000..
 *   all-ones in v4 mode, the host-side registers in v3 mode (qm_hw.h,
 *   QM_V3_WIN). PF: 0x0000..0x3fff its own function-local registers,
 *   0x100000.. PF-global registers (VFT, IFC, MIG_REGION_SEL), and in v4 mode
 *   one window per VF at QM_PF_MIG_WINDOW(fn). v4 mode = revision QM_REV_V4
 *   with MIG_REGION_SEL bit0 set, which qm_dev_create does (as the PF driver
 *   would); docs/driver-compat.md lists every behaviour the model defines.
 * - Doorbell isolation (cfg.db_isolation, VFs only): QUE_ISO_CFG reads 1
 *   and the VF has BAR4 (qm_db_bar_size bytes, a power of two): one 64 KiB
 *   page per queue pair, the SQ/CQ doorbell word at qn * QM_DB_PAGE_SIZE +
 *   QM_DB_SQCQ (qm_hw.h). The pages are a sealed memfd (qm_db_bar_fd) that a
 *   VMM may map into its guest: the device polls the doorbell words of every
 *   VF whose fd was handed out (qm_db_bar_fd called since the last
 *   qm_db_bar_renew; no one else can store into them, so the pages of an
 *   in-process or trapped-only VF cost no polling) and takes a doorbell by
 *   swapping QM_DB_IDLE in. A trapped access (qm_db_bar_read/write) sees
 *   the same memory; a trapped 8-byte write to a doorbell word first takes
 *   the doorbell that word still holds, then its own, both at once (so a
 *   driver that finds its word pending may ring trapped and keep the
 *   order). Only aligned 64-bit doorbells count: a
 *   word holding anything else (a torn or garbage write, another queue's
 *   qn) is taken, ignored and counted. A mapped word holds one doorbell:
 *   two stored before the device takes the first leave only the second, so
 *   a driver stores only once the word reads QM_DB_IDLE (docs/doorbells.md
 *   says what a driver that does not check risks). Any trapped BAR2 access
 *   to the function first takes its pending doorbell words (PCIe order: an
 *   MMIO access after a posted write sees the write's effect).
 *   A paused function's doorbells are taken but not acted on (the SQ tail
 *   is recorded, as a trapped doorbell is); CACHE_WB_START takes every
 *   pending word first, so the write-back carries it. FLR sets the pages to
 *   QM_DB_IDLE.
 * - MSI: vector 0 EQ, 1 AEQ, 2 PF<->VF messages; 3 is never raised. A
 *   function paused by PAUSE_QM raises nothing (vectors are held).
 */
#ifndef ACCMIG_QM_H
#define ACCMIG_QM_H

#include <stdbool.h>
#include <stdint.h>

#include "iommu/iommu.h"
#include "qm/qm_engine.h"
#include "qm/qm_hw.h"

#define QM_MAX_VFS 63u
#define QM_MAX_QPS_PER_VF 64u
#define QM_DEFAULT_VFS 4u
#define QM_DEFAULT_QPS_PER_VF 4u

struct qm_dev;

struct qm_irq_sink {
    /* Raise MSI vector `vector` of function `fn`. */
    void (*raise)(void *opaque, unsigned fn, unsigned vector);
    void *opaque;
};

struct qm_dev_config {
    unsigned num_vfs;      /* 1..QM_MAX_VFS */
    unsigned qps_per_vf;   /* 2..QM_MAX_QPS_PER_VF; the PF keeps its own share */
    uint8_t revision;      /* QM_REV_V3 or QM_REV_V4 */
    unsigned workers;      /* job worker threads, >= 1 */
    uint64_t worker_cpus;  /* bit c: workers may run on CPU c; 0 = anywhere */
    bool db_isolation;     /* VF doorbells in BAR4 pages (default true) */
    enum qm_engine_type engine; /* the engine behind the queues (default ZIP); qm_engine.h */
    /* Interrupt moderation for a busy queue (qm_worker.c): at most
     * msi_mod_max completions (0..QM_MSI_MOD_MAX_LIMIT, 0: off) wait behind
     * one held EQ MSI while the queue's worker runs its next job; a job that
     * took longer than msi_mod_job_ns raises it at once, and none is held
     * longer than msi_mod_hold_ns (checked at each commit and between the
     * pieces of a job). */
    unsigned msi_mod_max;
    uint64_t msi_mod_job_ns;
    uint64_t msi_mod_hold_ns;
    struct qm_irq_sink irq;
};
#define QM_MSI_MOD_MAX_LIMIT 64u

/* Fills the defaults: 4 VFs, 4 queue pairs each, v4, 2 workers, doorbell
 * isolation, the ZIP engine, moderation of up to 8 completions (jobs of at
 * most 100 us, held at most 500 us), no irq sink. */
void qm_dev_config_default(struct qm_dev_config *cfg);

/* Creates the device with its VFT programmed (each VF gets qps_per_vf
 * contiguous queues) and worker threads started. -EINVAL on a bad config. */
int qm_dev_create(const struct qm_dev_config *cfg, struct qm_dev **out);
/* Stops the workers (cancelling jobs in flight) and frees everything. */
void qm_dev_destroy(struct qm_dev *dev);

unsigned qm_dev_num_functions(const struct qm_dev *dev); /* 1 + num_vfs */
uint8_t qm_dev_revision(const struct qm_dev *dev);
/* The engine of the device's queues (its PCI ids, SQE size, capabilities). */
const struct qm_engine *qm_dev_engine(const struct qm_dev *dev);
/* BAR2 size of a function: 4 MiB for the PF, 64 KiB for a VF. */
uint64_t qm_bar_size(const struct qm_dev *dev, unsigned fn);

int qm_bar_read(struct qm_dev *dev, unsigned fn, uint64_t off, void *data, unsigned size);
int qm_bar_write(struct qm_dev *dev, unsigned fn, uint64_t off, const void *data, unsigned size);
static inline int qm_bar_read32(struct qm_dev *dev, unsigned fn, uint64_t off, uint32_t *v)
{
    return qm_bar_read(dev, fn, off, v, 4);
}
static inline int qm_bar_write32(struct qm_dev *dev, unsigned fn, uint64_t off, uint32_t v)
{
    return qm_bar_write(dev, fn, off, &v, 4);
}
static inline int qm_bar_write64(struct qm_dev *dev, unsigned fn, uint64_t off, uint64_t v)
{
    return qm_bar_write(dev, fn, off, &v, 8);
}

/* BAR4 (doorbell pages) of function fn: its size, 0 when the function has
 * none (the PF, or isolation off); the memfd behind it (sealed against
 * shrinking and growing; the device's, borrowed until the next
 * qm_db_bar_renew of fn: dup it to hand it out; -ENODEV when none; from
 * this call on, until the next renew, idle workers sweep fn's pages);
 * trapped accesses (size 1, 2, 4 or 8, aligned, inside the BAR, else
 * -EINVAL; -ENODEV when none). */
uint64_t qm_db_bar_size(const struct qm_dev *dev, unsigned fn);
int qm_db_bar_fd(struct qm_dev *dev, unsigned fn);
/* The holder of fn's pages, until the next renew, rings a doorbell trapped
 * too whenever the page says the device is not polling (qm_hw.h,
 * QM_DB_POLL_STATE; accmig's guest driver does): the device then waits for
 * the kick instead of sweeping fn's pages on a timer, so an idle device
 * whose every holder kicks costs no CPU. A holder that breaks the promise
 * only delays its own doorbells, to the device's next sweep. 0, or -ENODEV
 * when fn has no pages. */
int qm_db_bar_holder_kicks(struct qm_dev *dev, unsigned fn);
/* The kick eventfd of fn's pages (the device's, borrowed until the next
 * qm_db_bar_renew of fn: dup it to hand it out): writing it does what a
 * trapped 8-byte write to a poll-state word does (qm_hw.h,
 * QM_DB_POLL_STATE: the pages' stored doorbells are taken now), without a
 * trapped access. A kick carries no value and names no queue: the device
 * takes every stored word of fn. -ENODEV when fn has no pages, -EPERM when
 * they have not been handed out (qm_db_bar_fd) since the last renew: only
 * their holder kicks. The renew closes it; a kick written after that
 * reaches nothing. */
int qm_db_bar_kick_fd(struct qm_dev *dev, unsigned fn);
/* Fresh pages (all idle, a new memfd) for a new owner of the VF, so one that
 * kept the old fd or mapping reaches nothing; the old fd is closed (get the
 * new one with qm_db_bar_fd). Doorbells still in the old pages are dropped.
 * The new pages are not swept until qm_db_bar_fd hands them out.
 * -ENODEV when the function has no BAR4, or memfd/mmap's errno. */
int qm_db_bar_renew(struct qm_dev *dev, unsigned fn);
int qm_db_bar_read(struct qm_dev *dev, unsigned fn, uint64_t off, void *data, unsigned size);
int qm_db_bar_write(struct qm_dev *dev, unsigned fn, uint64_t off, const void *data,
                    unsigned size);

/* The IOMMU domain DMA of function fn goes through (requester ID = fn). */
struct iommu_domain *qm_dev_iommu(struct qm_dev *dev, unsigned fn);

/* Function-level reset; -EINVAL for a bad fn. */
int qm_function_reset(struct qm_dev *dev, unsigned fn);

#endif
