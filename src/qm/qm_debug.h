/* qm_debug: inspection of the device model for tests and reports.
 *
 * No driver uses this header: drivers reach the device through registers and
 * DMA only (qm.h). Everything here is a snapshot taken under the function's
 * lock; it may be stale as soon as it returns.
 *
 * Contract
 * - Every call returns 0, or -EINVAL for a function number >= 1 + num_vfs
 *   (or a queue number >= QM_MAX_QPS_PER_VF), and never changes guest-visible
 *   state, except qm_debug_set_mailbox_delay, which only changes how long the
 *   busy bit reads as set after a command (a test mode).
 * - Counters are cumulative since qm_dev_create; a function reset does not
 *   clear them.
 */
#ifndef ACCMIG_QM_DEBUG_H
#define ACCMIG_QM_DEBUG_H

#include <stdbool.h>
#include <stdint.h>

#include "qm/qm.h"

struct qm_fn_counters {
    uint64_t jobs_done;          /* CQEs written */
    uint64_t jobs_cancelled;     /* in-flight jobs dropped by PAUSE_QM / reset / reload */
    uint64_t jobs_failed;        /* completed with a status other than OK / negative compression */
    uint64_t jobs_dma_fault;     /* completed with status 0x02 (the job's own buffers) */
    uint64_t doorbells;          /* doorbell writes executed (all kinds) */
    uint64_t doorbells_ignored;  /* malformed or out-of-range doorbells */
    uint64_t doorbells_held;     /* SQ tails recorded while paused */
    uint64_t doorbells_paged;    /* doorbells taken from BAR4 pages (mapped or trapped) */
    uint64_t doorbell_kicks;     /* trapped writes to a QM_DB_POLL_STATE word (qm_hw.h) */
    uint64_t access_errors;      /* bad size / alignment / beyond the BAR */
    uint64_t unknown_reads;      /* reads of unlisted offsets (read 0) */
    uint64_t unknown_writes;     /* writes to unlisted offsets (ignored) */
    uint64_t ro_writes;          /* writes to read-only registers (ignored) */
    uint64_t mb_commands;        /* mailbox commands executed (both mailboxes) */
    uint64_t mb_errors;          /* commands that ended with status != 0 */
    uint64_t mb_ignored;         /* mailbox writes that arrived while a command was still busy */
    uint64_t ring_faults;        /* DMA faults on SQ/CQ/EQ/AEQ rings, contexts and tables */
    uint64_t cq_full_stalls;     /* times fetching stopped because the target CQ was full */
    uint64_t eqes_posted;
    uint64_t eqes_dropped;       /* no EQ loaded, or EQ full (overflow) */
    uint64_t aeqes_posted;
    uint64_t aeqes_dropped;
    uint64_t msi_raised;         /* irq sink calls */
    uint64_t msi_held;           /* MSIs remembered while paused */
    uint64_t msi_moderated;      /* EQ MSIs held back for a busy queue's next completion */
    uint64_t cache_writebacks;   /* CACHE_WB_START executions */
    uint64_t table_loads;        /* contexts loaded from the SQC/CQC tables */
    uint64_t pauses;
    uint64_t resumes;
    uint64_t resets;
    uint64_t cfg_errors;         /* PF: refused VFT programming / IFC targets */
};

struct qm_queue_debug {
    bool sq_loaded, cq_loaded;
    bool sq_reload_pending, cq_reload_pending; /* load from table on first use */
    bool stopping, stopped;
    bool sq_broken, cq_broken;  /* a ring fault stopped the queue */
    bool busy;                  /* a worker holds a job of this queue */
    bool cq_armed;              /* the next CQE raises an EQE */
    bool cq_phase;
    bool cq_stalled;            /* an SQ waits for room in this CQ */
    bool cq_overflow_posted;    /* AEQE type 0 already posted for this CQ */
    bool stop_waiting;          /* a mailbox's STOP_QP waits for this SQ's drain */
    uint16_t sq_head, sq_tail, sq_depth;
    uint16_t cq_head, cq_tail, cq_depth;
    uint16_t cq_num;            /* the CQ this SQ completes into */
    uint8_t alg_type;
};

struct qm_fn_debug {
    uint16_t qp_base, qp_num;   /* from the VFT */
    bool paused, halted;        /* halted: even the AEQ could not be written */
    bool v4_windows;            /* device-wide: MIG_REGION_SEL bit0 on a v4 PF */
    unsigned jobs_inflight;
    unsigned int_pending;       /* MSI vectors held while paused */
    bool eq_valid, aeq_valid;
    uint16_t eq_head, eq_tail, eq_depth;
    uint16_t aeq_head, aeq_tail, aeq_depth;
    bool eq_phase, aeq_phase;
    bool eq_broken, aeq_broken; /* a ring write fault invalidated the queue */
    bool eq_overflowed;         /* AEQE type 1 posted, EQ not yet given room */
    bool fn_mb_busy;            /* the function's own mailbox reads busy */
    uint64_t sqc_bt, cqc_bt;
};

int qm_debug_fn_counters(struct qm_dev *dev, unsigned fn, struct qm_fn_counters *out);
int qm_debug_fn(struct qm_dev *dev, unsigned fn, struct qm_fn_debug *out);
int qm_debug_queue(struct qm_dev *dev, unsigned fn, unsigned qn, struct qm_queue_debug *out);
/* After each mailbox command on this function, the busy bit reads as set for
 * the next `reads` reads of the mailbox (both mailboxes), as a slow device
 * would. A driver polling every 10 us for 1 ms must cope with reads <= 90. */
int qm_debug_set_mailbox_delay(struct qm_dev *dev, unsigned fn, unsigned reads);
/* Freeze points of a worker's job, for tests that prove a pause waits for
 * no worker: right after the SQE was fetched; between two codec steps (the
 * second poll of the job); before an output write when one has already
 * landed; inside an output write (published, its copy not yet made: the copy
 * a pause lands for it); after the engine finished, before the commit. */
enum qm_freeze_stage {
    QM_FREEZE_NONE = 0,
    QM_FREEZE_FETCHED,
    QM_FREEZE_MID_CODEC,
    QM_FREEZE_MID_OUTPUT,
    QM_FREEZE_IN_WRITE,
    QM_FREEZE_BEFORE_COMMIT,
};
/* Arms stage: the next worker that reaches it stops there (holding no model
 * lock) until qm_debug_freeze_release. One freeze at a time: -EBUSY while
 * one is armed or frozen; -EINVAL for a bad stage. */
int qm_debug_freeze_arm(struct qm_dev *dev, enum qm_freeze_stage stage);
/* Waits until a worker is frozen: 0, or -ETIMEDOUT. */
int qm_debug_freeze_wait(struct qm_dev *dev, int timeout_ms);
/* Lets the frozen worker go on (or disarms an unused freeze), then waits
 * until no worker is serving any queue: 0, or -ETIMEDOUT. */
int qm_debug_freeze_release(struct qm_dev *dev, int timeout_ms);
/* Name of the register at off in the function-local space ("" if none). */
const char *qm_debug_reg_name(uint32_t off);

#endif
