/* qm_internal: private structures of the device model, shared by the files
 * of src/qm. Nothing outside src/qm includes this.
 *
 * Locking (the rule every file follows)
 * - fn->lock protects all state of one function: its register array, mailbox
 *   ports, queue contexts and positions, EQ/AEQ, pause state, counters of
 *   jobs in flight and pending interrupts. Functions named *_locked need it.
 *   No thread ever holds two function locks: effects on another function
 *   (PF<->VF IFC, VFT changes) are queued in a struct qm_deferred and run by
 *   qm_fn_unlock after the lock is dropped. MSIs are raised there too, so the
 *   irq sink never runs under a model lock.
 * - dev->sched_lock protects the runnable ring and each queue's `queued`
 *   flag. It is a leaf lock: taken under fn->lock, never the other way round.
 *   A queue made runnable under fn->lock goes on the ring at once, but the
 *   workers are woken by qm_fn_unlock, once per access however many queues
 *   it started (RESUME_QM restarts them all): a woken worker would only
 *   block on the fn->lock still held, and one wakeup per queue would set the
 *   workers fighting the writer for it.
 * - A worker runs the engine (dev->engine) with no lock held; the commit (SQE result,
 *   CQE, head advance, EQE) happens under fn->lock.
 * - job->gate (struct qm_job) protects a job's revoked flag and the output
 *   write it has in progress (where, what, how long). The worker holds it only
 *   to publish or end a write, never across the copy itself; a revoker holds
 *   it across one helping copy (below). It is a leaf under fn->lock.
 *
 * Revocation: whatever must stop a job (PAUSE_QM, FLR, an SQC reload, a
 *   halted function, device stop) revokes it under fn->lock: the job is taken
 *   off its queue at once (the queue is idle again, the job stays on the SQ)
 *   and its worker can never start another guest write for it (the commit
 *   sees `revoked` too). A write already in progress is the one thing a
 *   revoker cannot stop, so PAUSE_QM helps instead of waiting: it lands the
 *   same bytes itself (they sit in the worker's own buffer, unchanged until
 *   the worker's copy returns), so what the worker's late copy writes is
 *   already there, byte for byte, before the pause returns. The late writer is
 *   counted in fn->stale_writes until its copy ends; RESUME_QM and FLR wait
 *   for that count to drop (they are off the downtime path), so a stale copy
 *   can never land on memory the guest has reused. The other revokers just
 *   wait for the write in progress. So a pause waits for no worker to be
 *   scheduled: only for the MSIs already decided (qm_fn_quiesced), and for
 *   fn->lock, which workers hold only for a fetch or a commit (a few small DMA
 *   accesses, no codec work).
 *
 * Scheduling: workers run under SCHED_BATCH: the full weight of a nice-0
 *   thread (a fair share of the CPU, never starved), but a waking worker does
 *   not preempt the thread that woke it (RESUME_QM wakes them all), which is
 *   what a CPU-bound engine should be to the host's scheduler. Workers may be
 *   pinned (qm_dev_config.worker_cpus).
 */
#ifndef ACCMIG_QM_INTERNAL_H
#define ACCMIG_QM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "common/ratelimit.h"
#include "qm/qm.h"
#include "qm/qm_debug.h"
#include "qm/qm_hw.h"
#include "qm/qm_engine.h"
#include "zip/zip.h"

#define QM_LOG "qm"
#define QM_NUM_FNS_MAX (1u + QM_MAX_VFS)
#define QM_MAX_WORKERS 64u
#define QM_PF_LOCAL_SIZE 0x4000u   /* PF BAR2: function-local registers */
#define QM_PF_GLOBAL_BASE 0x100000u
#define QM_PF_GLOBAL_SIZE 0x1000u
#define QM_WIN_LOCAL_SIZE 0x1000u  /* window: VF local offsets 0..0xfff */
#define QM_V3_SHADOW_SIZE 0x40u    /* VF 0x8000..0x803f: EQC/AEQC shadows */
/* Budgets of commands that wait for workers; both stay well inside the
 * driver's 1 ms mailbox timeout. */
#define QM_PAUSE_WAIT_NS 700000u
#define QM_STOP_WAIT_NS 700000u

/* Which door an access came through. FN: the function's own BAR2. HOST: the
 * PF window (v4) or the VF BAR's upper half (v3): the migration driver's. */
enum qm_port { QM_PORT_FN = 0, QM_PORT_HOST = 1, QM_NUM_PORTS = 2 };

/* Register address spaces, each a table. */
enum qm_space { QM_SPACE_LOCAL, QM_SPACE_WIN, QM_SPACE_PF };

enum qm_reg_access {
    QM_RO,  /* writes ignored and counted */
    QM_RW,  /* bits in wmask are written */
    QM_W1C, /* writing 1 to a bit in wmask clears it */
    /* W1C through the function's own BAR (the guest acks); a write through
     * the host port (v4 window, v3 upper half) loads the bits as written,
     * so a migration restore can bring a pending bit back. */
    QM_W1C_GUEST,
    QM_WO,  /* reads return the stored value (the reset value); writes go to the hook */
};

/* The per-queue state bitmaps of the window, in register order
 * (QM_WIN_SQ_STOPPED_L + 8 * kind). */
enum qm_qstate {
    QM_QS_SQ_STOPPED,
    QM_QS_SQ_STOPPING,
    QM_QS_SQ_BROKEN,
    QM_QS_CQ_BROKEN,
    QM_QS_CQ_DISARMED,
    QM_QS_CQ_OVERFLOW,
    QM_QS_CQ_STALLED, /* read-only, derived */
    QM_QS_COUNT,
};

/* Indices of the per-function register array: function-local registers,
 * then the host-side window registers. Order = ascending offset per table. */
enum qm_fn_reg {
    QM_R_AEQ_INT_SOURCE,
    QM_R_AEQ_INT_MASK,
    QM_R_EQ_INT_SOURCE,
    QM_R_EQ_INT_MASK,
    QM_R_IFC_INT_SOURCE_V,
    QM_R_IFC_INT_MASK,
    QM_R_IFC_INT_STATUS,
    QM_R_IFC_INT_SET_V,
    QM_R_QUE_ISO_CFG,
    QM_R_PAGE_SIZE,
    QM_R_VF_STATE,
    QM_R_CACHE_WB_START,
    QM_R_CACHE_WB_DONE,
    QM_R_CAP_VERSION,
    QM_R_CAP_EQ_AEQ_DEPTH,
    QM_R_CAP_SQ_CQ_DEPTH,
    QM_R_CAP_EQ_IRQ_TYPE,
    QM_R_CAP_AEQ_IRQ_TYPE,
    QM_R_CAP_ABN_IRQ_TYPE,
    QM_R_CAP_PF2VF_IRQ_TYPE,
    QM_R_CAP_IRQ_NUM,
    /* the engine's capability registers (qm_engine.h): QM_ENGINE_CAP_BASE + 4 i */
    QM_R_ENG_CAP0,
    QM_R_ENG_CAP_LAST = QM_R_ENG_CAP0 + QM_ENGINE_CAP_COUNT - 1,
    QM_R_LOCAL_COUNT,
    /* window space (QM_WIN_*) */
    QM_R_WIN_EQC0 = QM_R_LOCAL_COUNT,
    QM_R_WIN_EQC6 = QM_R_WIN_EQC0 + 6,
    QM_R_WIN_AEQC0,
    QM_R_WIN_AEQC6 = QM_R_WIN_AEQC0 + 6,
    QM_R_WIN_QP_ACTIVE_L,
    QM_R_WIN_QP_ACTIVE_H,
    QM_R_WIN_INT_PENDING,
    QM_R_WIN_PAUSE_STATUS,
    QM_R_WIN_IFC_MSG_L,
    QM_R_WIN_IFC_MSG_H,
    QM_R_WIN_DB_IGNORED,
    QM_R_WIN_IFC_OUT_MSG_L,
    QM_R_WIN_IFC_OUT_MSG_H,
    QM_R_WIN_IFC_SOURCE_V,
    /* queue state (qm_hw.h: QM_WIN_SQ_STOPPED_L ..): bitmaps as L/H pairs */
    QM_R_WIN_QSTATE0,
    QM_R_WIN_QSTATE_LAST = QM_R_WIN_QSTATE0 + 2 * QM_QS_COUNT - 1,
    QM_R_WIN_XEQ_STATE,
    QM_R_WIN_SQC_WB_FAIL_L,
    QM_R_WIN_SQC_WB_FAIL_H,
    QM_R_WIN_CQC_WB_FAIL_L,
    QM_R_WIN_CQC_WB_FAIL_H,
    QM_R_WIN_QC_SEL,
    QM_R_WIN_QC_DW0,
    QM_R_WIN_QC_DW7 = QM_R_WIN_QC_DW0 + 7,
    QM_R_WIN_FN_MB_STAGE0,
    QM_R_WIN_FN_MB_STAGE3 = QM_R_WIN_FN_MB_STAGE0 + 3,
    QM_R_WIN_FN_MB_W0,
    QM_R_WIN_FN_MB_DATA_L,
    QM_R_WIN_FN_MB_DATA_H,
    QM_R_WIN_FN_DB0, /* SQCQ L, H, EQAEQ L, H */
    QM_R_WIN_FN_DB3 = QM_R_WIN_FN_DB0 + 3,
    QM_R_FN_COUNT,
};

/* PF-global registers (PF BAR2 0x100000..), stored in dev->pf_regs. */
enum qm_pf_reg {
    QM_PR_VFT_CFG_OP_ENABLE,
    QM_PR_VFT_CFG_OP_WR,
    QM_PR_VFT_CFG_TYPE,
    QM_PR_VFT_CFG,
    QM_PR_VFT_CFG_DATA_L,
    QM_PR_VFT_CFG_DATA_H,
    QM_PR_VFT_CFG_RDY,
    QM_PR_IFC_READY_STATUS,
    QM_PR_IFC_READY_STATUS_H,
    QM_PR_IFC_INT_SET_P,
    QM_PR_IFC_INT_CFG,
    QM_PR_IFC_INT_SOURCE_P,
    QM_PR_IFC_INT_SOURCE_P_H,
    QM_PR_MIG_REGION_SEL,
    QM_PR_COUNT,
};

struct qm_dev;
struct qm_fn;

/* Work to do after fn->lock is dropped (see the locking rule above). */
struct qm_deferred {
    unsigned irq_vectors;     /* MSI vectors of this function to raise */
    bool pf_signal;           /* this VF set IFC_INT_SET_V: tell the PF */
    bool pf_ready_clear;      /* this VF acked the PF's message */
    uint64_t vf_notify;       /* PF: functions whose IFC source to set */
    uint64_t vf_ack;          /* PF: functions whose IFC_INT_SET_V to clear */
    uint64_t vft_changed;     /* PF: functions whose VFT changed */
    unsigned sched_wake;      /* queues put on the runnable ring: workers to wake */
};

/* Context handed to register hooks. */
struct qm_access {
    struct qm_dev *dev;
    struct qm_fn *fn;         /* locked; the PF for QM_SPACE_PF */
    enum qm_port port;
    struct qm_deferred *d;
};

struct qm_reg;
typedef uint32_t (*qm_reg_read_hook)(struct qm_access *a, const struct qm_reg *r);
typedef void (*qm_reg_write_hook)(struct qm_access *a, const struct qm_reg *r, uint32_t old,
                                  uint32_t val);

struct qm_reg {
    uint32_t off;
    const char *name;
    enum qm_reg_access access;
    uint32_t reset;
    uint32_t wmask;
    qm_reg_read_hook read;    /* NULL: the stored value */
    qm_reg_write_hook write;  /* called after the stored value changed */
};

struct qm_reg_table {
    const struct qm_reg *regs;
    unsigned count;
    unsigned first;           /* index of regs[0] in the storage array */
};

/* A mailbox: the staging bytes as last written and the read-back image. */
struct qm_mb_port {
    uint8_t stage[QM_MAILBOX_SIZE];
    uint16_t w0;              /* read-back: command, op, status; busy below */
    uint64_t data;            /* MB_DATA_L/H */
    bool exec_busy;           /* a command is executing or draining (STOP_QP) */
    unsigned delay_reads;     /* test mode: busy reads still to report */
};

struct qm_sq {
    struct qm_sqc ctx;        /* as loaded; head/tail live below */
    uint64_t base;
    uint16_t head, tail, depth;
    uint32_t gen;             /* bumped on every (re)load, invalidation, reset */
    bool loaded, reload;      /* reload: load from the SQC table on first use */
    bool stopping, stopped, broken;
};

struct qm_cq {
    struct qm_cqc ctx;
    uint64_t base;
    uint16_t head, tail, depth;
    uint16_t reserved;        /* slots promised to jobs in flight */
    uint32_t gen;
    bool loaded, reload;
    /* disarmed: the CQ posted its EQE and waits for a priority-1 doorbell
     * (false is the state of a fresh context, so a dropped one is armed). */
    bool phase, disarmed, stalled, broken, overflow_posted;
};

struct qm_job;

struct qm_queue {
    struct qm_fn *fn;
    uint16_t qn;
    struct qm_sq sq;
    struct qm_cq cq;
    struct qm_job *job;       /* the job a worker holds at the SQ's head, or NULL */
    bool queued;              /* on the runnable ring (dev->sched_lock) */
    struct qm_mb_port *stop_port; /* mailbox whose STOP_QP completes when drained */
};

struct qm_xeq {               /* EQ or AEQ */
    struct qm_eqc ctx;        /* dw3 and reserved words as loaded */
    uint64_t base;
    uint16_t head, tail, depth;
    bool phase, valid, overflowed;
    bool broken;              /* a ring write fault invalidated it (ctx kept as loaded) */
};

struct qm_fn_stats {          /* qm_debug.h counters, relaxed atomics */
    atomic_uint_fast64_t jobs_done, jobs_cancelled, jobs_failed, jobs_dma_fault;
    atomic_uint_fast64_t doorbells, doorbells_ignored, doorbells_held, doorbells_paged;
    atomic_uint_fast64_t doorbell_kicks;
    atomic_uint_fast64_t access_errors, unknown_reads, unknown_writes, ro_writes;
    atomic_uint_fast64_t mb_commands, mb_errors, mb_ignored;
    atomic_uint_fast64_t ring_faults, cq_full_stalls;
    atomic_uint_fast64_t eqes_posted, eqes_dropped, aeqes_posted, aeqes_dropped;
    atomic_uint_fast64_t msi_raised, msi_held, msi_moderated;
    atomic_uint_fast64_t cache_writebacks, table_loads, pauses, resumes, resets, cfg_errors;
};
#define QM_COUNT(fn, field) atomic_fetch_add_explicit(&(fn)->st.field, 1, memory_order_relaxed)

struct qm_fn {
    struct qm_dev *dev;
    unsigned idx;             /* PCI function number = requester ID */
    struct iommu_domain *dom;
    pthread_mutex_t lock;     /* everything below except where noted */
    pthread_cond_t cond;      /* jobs retired, queues drained (CLOCK_MONOTONIC) */
    uint32_t regs[QM_R_FN_COUNT];
    struct qm_mb_port mb[QM_NUM_PORTS];
    uint8_t db_stage[QM_NUM_PORTS][2][8]; /* split doorbell writes */
    uint16_t qp_base, qp_num; /* applied VFT (0 queues until programmed) */
    uint64_t vft_word;        /* what SQC_VFT_V2 returns */
    uint64_t sqc_bt, cqc_bt;
    struct qm_xeq eq, aeq;
    struct qm_queue q[QM_MAX_QPS_PER_VF];
    bool paused;              /* PAUSE_QM */
    bool resetting;           /* FLR in progress */
    bool halted;              /* the AEQ could not be written: the function stops */
    unsigned jobs_inflight;   /* queues with a job */
    unsigned mb_delay_reads;  /* test mode: qm_debug_set_mailbox_delay */
    atomic_uint quiesce_waiters; /* threads waiting on cond (read without lock) */
    unsigned int_pending;     /* vectors held while paused */
    /* Interrupt moderation (qm_worker.c): EQ MSIs of mod_queue's last
     * completions not raised yet, because its worker runs that queue's next
     * job in the same turn; 0: none held. Raised (or found needless) by
     * qm_fn_msi_mod_flush_locked. */
    unsigned msi_mod_held;
    struct qm_queue *msi_mod_queue;
    uint64_t msi_mod_since_ns; /* when the first held one was decided */
    atomic_uint irq_inflight; /* MSIs decided but not yet raised (no lock) */
    unsigned stale_writes;    /* revoked jobs' copies still running (Revocation) */
    atomic_uint_fast64_t ifc_in;  /* PF->VF message (PF SRC, VF DST): no lock */
    atomic_uint_fast64_t ifc_out; /* VF->PF message (VF SRC, PF DST): no lock */
    struct qm_fn_stats st;    /* no lock */
    /* BAR4 doorbell pages (isolation; NULL otherwise). Under lock:
     * qm_db_bar_renew swaps pages and fd for new ones; db_size and whether
     * there are pages at all never change after create. The words are
     * shared with the VMM: only 64-bit atomics. */
    uint8_t *db_pages;
    uint64_t db_size;
    int db_fd;
    /* The pages' kick eventfd (qm_db_bar_kick_fd): a holder's client writes
     * it instead of sending a trapped kick. Under lock, renewed with the
     * pages; in the poll turn's epoll set while the pages are handed out;
     * drained by a sweep under lock. -1 without pages. */
    int db_kick_fd;
    uint64_t db_poll_state;   /* what the pages' QM_DB_POLL_STATE words hold */
    struct am_ratelimit log_rl; /* guest-triggered log lines (its own lock) */
};

/* A line a guest can trigger at will: rate-limited per function
 * (QM_LOG_BURST lines per QM_LOG_INTERVAL_NS, then a count of the rest). */
#define QM_LOG_BURST 10u
#define QM_LOG_INTERVAL_NS 5000000000ull
#define QM_GUEST_LOG(fn, fmt, ...) \
    am_log_limited(&(fn)->log_rl, AM_LOG_GUEST, QM_LOG, "fn %u: " fmt, (fn)->idx, __VA_ARGS__)

/* The job a worker holds. It lives in the worker (a revoked job is never
 * reused by another worker while its own may still be running). */
struct qm_job {
    pthread_mutex_t gate;     /* see the locking rule: output writes vs revocation */
    pthread_cond_t write_done; /* with gate: `writing` went false */
    atomic_bool revoked;      /* written under fn->lock and gate; read under either */
    bool writing;             /* gate: a copy to wr_iova is in progress */
    bool stale;               /* gate: revoked during that copy, which a revoker landed */
    uint64_t wr_iova, wr_len; /* gate */
    const void *wr_buf;       /* gate */
    struct qm_queue *sq;      /* fn->lock: where the job came from */
    struct qm_queue *cq;      /* fn->lock: the CQ it holds a slot of */
    uint32_t cq_gen;
    unsigned polls, writes;   /* worker only: for the test freeze points */
};

/* An output write held for the job's commit (qm_engine_io.write_at_commit). */
struct qm_commit_write {
    uint64_t iova, len;
    const void *buf;
};

struct qm_worker {
    struct qm_dev *dev;
    void *eng;                  /* dev->engine's instance of this worker */
    pthread_t thread;
    struct qm_job job;
    uint32_t sqe[QM_ENGINE_SQE_DWORDS_MAX];
    /* Worker only: the job's writes held for its commit, ncw of cap_cw. */
    struct qm_commit_write *cw;
    unsigned ncw, cap_cw;
    /* The poll turn's wait (qm_db_pages.c): an eventfd that ends this
     * worker's ppoll (-1 without doorbell isolation); in_poll and woken are
     * under dev->sched_lock: it waits in ppoll, and someone wrote wake_fd
     * since it began to. */
    int wake_fd;
    bool in_poll, woken;
    /* Worker only: when it last held an EQ MSI back (interrupt moderation,
     * qm_worker.c), 0 when it holds none as far as it knows. */
    uint64_t mod_since_ns;
};

/* Test hook (qm_debug_freeze_*): the next worker to reach `armed` blocks
 * there until released. lock protects everything here but `armed_fast`, an
 * atomic copy of `armed` read on the job path without the lock. */
struct qm_freeze {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    atomic_int armed_fast;
    enum qm_freeze_stage armed;
    bool frozen, release;
};

struct qm_dev {
    struct qm_dev_config cfg;
    const struct qm_engine *engine; /* qm_engine_get(cfg.engine), never NULL */
    unsigned nfn;
    unsigned total_qps;       /* queue pool the VFT may hand out */
    struct qm_fn *fn[QM_NUM_FNS_MAX];
    /* Protected by fn[0]->lock (the PF's lock). */
    uint32_t pf_regs[QM_PR_COUNT];
    uint64_t vft_sqc[QM_NUM_FNS_MAX], vft_cqc[QM_NUM_FNS_MAX], vft_shaper[QM_NUM_FNS_MAX];
    atomic_bool v4_windows;   /* copy of MIG_REGION_SEL bit0 on v4 (read without lock) */
    /* Scheduler: dev->sched_lock protects ring, counts, stopping. */
    pthread_mutex_t sched_lock;
    pthread_cond_t sched_cond;
    struct qm_queue **ring;
    unsigned ring_cap, ring_head, ring_count;
    bool stopping;
    struct qm_worker *workers;
    unsigned nworkers, nstarted;
    atomic_uint serving;      /* workers between taking a queue and letting go */
    unsigned idle_waiting;    /* workers waiting on sched_cond with no deadline */
    struct qm_freeze freeze;
    struct qm_db_poll *poll;  /* the poll turn; NULL without doorbell isolation */
};

/* qm_dev.c */
void qm_fn_lock(struct qm_fn *fn);
void qm_fn_unlock(struct qm_fn *fn, struct qm_deferred *d);
void qm_fn_assert_locked(struct qm_fn *fn);
/* Raise vector v now (after unlock) or hold it while paused. */
void qm_fn_msi_locked(struct qm_fn *fn, struct qm_deferred *d, unsigned v);
bool qm_fn_v4(const struct qm_dev *dev);
bool qm_fn_can_run_locked(const struct qm_fn *fn);
void qm_fn_wake_waiters_locked(struct qm_fn *fn);
/* An absolute CLOCK_MONOTONIC time in ns (am_now_ns) as a timespec for
 * pthread_cond_timedwait on the model's conditions (all CLOCK_MONOTONIC). */
void qm_ns_to_timespec(uint64_t ns, struct timespec *ts);
/* Wait on fn->cond until done(fn) or deadline (absolute, CLOCK_MONOTONIC ns;
 * 0 = no deadline). Returns done(fn). */
bool qm_fn_wait_locked(struct qm_fn *fn, bool (*done)(struct qm_fn *, void *), void *arg,
                       uint64_t deadline_ns);
/* done() for qm_fn_wait_locked: no job in flight, no MSI being raised. */
bool qm_fn_quiesced(struct qm_fn *fn, void *arg);
/* done(): quiesced, and no revoked job's copy still running. */
bool qm_fn_idle(struct qm_fn *fn, void *arg);

/* qm_regs.c */
extern const struct qm_reg_table qm_local_table, qm_win_table, qm_pf_table;
void qm_regs_reset(uint32_t *storage, const struct qm_reg_table *t);
int qm_regs_check_tables(void);
/* One access inside a space, size already validated. */
void qm_space_read(struct qm_access *a, enum qm_space sp, uint32_t off, uint8_t *data,
                   unsigned size);
void qm_space_write(struct qm_access *a, enum qm_space sp, uint32_t off, const uint8_t *data,
                    unsigned size);
bool qm_xeq_source(const struct qm_xeq *q);
bool qm_vft_sqc_valid(const struct qm_dev *dev, uint64_t sqc_vft);
void qm_pf_vft_apply(struct qm_dev *dev, unsigned fn);
void qm_pf_ifc_signal(struct qm_dev *dev, unsigned vf);
void qm_pf_ifc_ready_clear(struct qm_dev *dev, unsigned vf);
void qm_vf_ifc_notify(struct qm_dev *dev, unsigned vf);
void qm_vf_ifc_ack(struct qm_dev *dev, unsigned vf);

/* qm_mailbox.c */
void qm_mb_read(struct qm_access *a, uint32_t off, uint8_t *data, unsigned size);
void qm_mb_write(struct qm_access *a, uint32_t off, const uint8_t *data, unsigned size);
/* Ends an asynchronous STOP_QP on q (status OK), if one is pending. */
void qm_mb_stop_port_release_locked(struct qm_fn *fn, struct qm_queue *q);
/* QM_WIN_FN_MB_W0: the function's own mailbox w0 as read back (busy
 * included), and its load (busy only for a STOP_QP whose queue drains). */
uint32_t qm_mb_fn_w0_get_locked(const struct qm_fn *fn);
void qm_mb_fn_w0_set_locked(struct qm_fn *fn, uint32_t v);

/* qm_queue.c */
void qm_db_execute(struct qm_access *a, uint64_t db, bool eq_port);
int qm_sq_load_locked(struct qm_fn *fn, struct qm_queue *q, const struct qm_sqc *c);
int qm_cq_load_locked(struct qm_fn *fn, struct qm_queue *q, const struct qm_cqc *c);
int qm_xeq_load_locked(struct qm_fn *fn, struct qm_xeq *x, const struct qm_eqc *c, bool aeq);
void qm_xeq_to_ctx(const struct qm_xeq *x, struct qm_eqc *c);
void qm_sq_to_ctx(const struct qm_queue *q, struct qm_sqc *c);
void qm_cq_to_ctx(const struct qm_queue *q, struct qm_cqc *c);
void qm_queue_invalidate_locked(struct qm_fn *fn, struct qm_queue *q, bool sq, bool cq);
void qm_queue_ensure_loaded_locked(struct qm_fn *fn, struct qm_queue *q);
bool qm_queue_settle_locked(struct qm_fn *fn, struct qm_deferred *d, struct qm_queue *q);
void qm_queue_kick_locked(struct qm_fn *fn, struct qm_deferred *d, struct qm_queue *q);
void qm_fn_kick_all_locked(struct qm_fn *fn, struct qm_deferred *d);
/* The CQ the job at q's head would complete into, with a slot free for it;
 * NULL when q may not fetch now. */
struct qm_queue *qm_queue_fetchable_locked(struct qm_fn *fn, struct qm_queue *q);
void qm_job_commit_locked(struct qm_fn *fn, struct qm_deferred *d, struct qm_queue *q,
                          struct qm_queue *c, uint16_t slot, const uint32_t *sqe);
void qm_post_aeqe_locked(struct qm_fn *fn, struct qm_deferred *d, uint16_t qn,
                         enum qm_aeqe_type type);
void qm_cache_writeback_locked(struct qm_fn *fn);
void qm_fn_resume_events_locked(struct qm_fn *fn, struct qm_deferred *d);
/* Queue state bits (QM_WIN_SQ_STOPPED_L ..): read, and load as written. */
bool qm_queue_state_get_locked(const struct qm_queue *q, enum qm_qstate k);
void qm_queue_state_set_locked(struct qm_fn *fn, struct qm_deferred *d, struct qm_queue *q,
                               enum qm_qstate k, bool on);
/* QM_WIN_XEQ_STATE */
uint32_t qm_xeq_state_get_locked(const struct qm_fn *fn);
void qm_xeq_state_set_locked(struct qm_fn *fn, struct qm_deferred *d, uint32_t v);

/* Doorbell pages (qm_db_pages.c). A sweep takes function locks with
 * trylock only, so a function whose lock is held long delays nobody else. */
int qm_db_pages_create(struct qm_dev *dev);
/* After qm_workers_stop. */
void qm_db_pages_destroy(struct qm_dev *dev);
/* Takes every pending doorbell word of a->fn (PCIe order: a trapped access
 * after a posted doorbell sees its effect). */
void qm_db_pages_take_locked(struct qm_access *a);
/* Back to QM_DB_IDLE (FLR). */
void qm_db_pages_reset_locked(struct qm_fn *fn);
/* A job completed: the guest will likely ring again soon, so spin. */
void qm_db_poll_note_done(struct qm_dev *dev);

/* A guest rang an SQ or CQ doorbell (any path: a page, a trapped write):
 * the first since a completion adapts the spin (qm_db_spin_adapt). Under
 * the function's lock. */
void qm_db_poll_note_ring(struct qm_dev *dev);

/* How long the poll turn spins after a completion adapts to how long the
 * guests take to ring again (KVM's halt polling does the same for a vCPU):
 * gap_ns, from a completion to the next SQ or CQ doorbell. A doorbell within
 * the spin keeps it; one that a longer spin would have caught (up to
 * QM_DB_SPIN_MAX_NS) doubles it, from QM_DB_SPIN_START_NS; one later than
 * that halves it, to 0 below the start: a guest that is not running (a
 * loaded host deschedules it for whole time slices) gets the CPU back
 * instead of a spin that cannot find its doorbell, and rings by kick.
 * Returns the new spin time. */
#define QM_DB_SPIN_START_NS 2500ull
#define QM_DB_SPIN_MAX_NS 20000ull
static inline uint64_t qm_db_spin_adapt(uint64_t spin_ns, uint64_t gap_ns)
{
    if (gap_ns <= spin_ns)
        return spin_ns;
    if (gap_ns <= QM_DB_SPIN_MAX_NS)
        return AM_MIN(AM_MAX(spin_ns * 2, QM_DB_SPIN_START_NS), QM_DB_SPIN_MAX_NS);
    return spin_ns / 2 < QM_DB_SPIN_START_NS ? 0 : spin_ns / 2;
}
/* An idle worker w, under dev->sched_lock with the ring empty: if pages are
 * handed out and the poll turn is free (or its owner waits and w is back
 * from a job), w takes the turn: one sweep, then the phase's pause or wait
 * in ppoll on w->wake_fd and the handed-out pages' kick eventfds (not on
 * sched_cond: whoever wakes a waiting owner uses qm_db_poll_wake_locked or
 * qm_db_poll_wake_owner_locked). Returns true with sched_lock held again (look at the ring
 * again), false when w should wait for work. */
bool qm_db_poll_turn_locked(struct qm_dev *dev, struct qm_worker *w, bool back_from_job);
/* A job of fn is about to complete: its pages say QM_DB_POLL_ON (if they
 * were handed out), as the completing worker spins next. */
void qm_db_poll_state_on_locked(struct qm_fn *fn);
/* A worker back from a job takes another from the ring instead of polling:
 * the job's commit told its guest the device polls, so a waiting turn owner
 * is woken to sweep. Returns whether it woke it. Under dev->sched_lock. */
bool qm_db_poll_wake_owner_locked(struct qm_dev *dev);
/* Wakes up to n workers waiting in the poll turn's ppoll (the owner first,
 * then workers whose turn was taken over while they waited), as
 * pthread_cond_signal wakes the workers waiting for work; returns how many
 * it woke. Under dev->sched_lock. */
unsigned qm_db_poll_wake_locked(struct qm_dev *dev, unsigned n);
/* w takes a job: if it held the turn, it gives it up and signals one of
 * idle_workers, if any, to take it. Under dev->sched_lock. */
void qm_db_poll_leave_locked(struct qm_dev *dev, const struct qm_worker *w, unsigned idle_workers);

/* qm_worker.c */
int qm_workers_start(struct qm_dev *dev);
void qm_workers_stop(struct qm_dev *dev);
/* Puts q on the runnable ring (once) and counts it in d->sched_wake. */
void qm_sched_enqueue(struct qm_dev *dev, struct qm_deferred *d, struct qm_queue *q);
/* Wakes workers for the d->sched_wake queues made runnable, and clears it:
 * qm_fn_unlock does it; a command waiting for workers under fn->lock calls
 * it before it waits. */
void qm_sched_wake(struct qm_dev *dev, struct qm_deferred *d);
/* Revokes q's job, if it has one (see Revocation above). help: land a write
 * in progress instead of waiting for it (PAUSE_QM). */
void qm_job_revoke_locked(struct qm_fn *fn, struct qm_queue *q, bool help);
/* Raise the EQ MSI that interrupt moderation holds back, if any (qm_worker.c). */
void qm_fn_msi_mod_flush_locked(struct qm_fn *fn, struct qm_deferred *d);
void qm_fn_revoke_jobs_locked(struct qm_fn *fn, struct qm_deferred *d, bool help);

#endif
