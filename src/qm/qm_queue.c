/* qm_queue: SQ/CQ/EQ/AEQ contexts (the device's cached copies), doorbells,
 * the commit of a finished job (SQE result, CQE, EQE, MSI), AEQEs, the
 * context write-back, and the decision whether a queue may fetch.
 * Every function here runs under the function's lock. */
#include <stddef.h>
#include <errno.h>
#include <string.h>

#include "common/common.h"
#include "qm/qm_internal.h"

#define QM_QC_DEPTH_MASK 0xfffu
#define QM_QC_ESIZE_SHIFT 12
#define QM_CQE_SIZE_LOG2 4u
#define QM_XEQ_DEPTH_MASK 0xffffu
#define QM_XEQ_PHASE_SHIFT 16

/* ---- contexts ------------------------------------------------------------ */

static uint64_t qm_addr(uint32_t lo, uint32_t hi)
{
    return (uint64_t)lo | (uint64_t)hi << 32;
}

/* The ring [base, base + depth * esize) must not wrap the IOVA space. */
static bool qm_ring_ok(uint64_t base, unsigned depth, unsigned esize)
{
    uint64_t end;

    return base != 0 && !am_add_overflows_u64(base, (uint64_t)depth * esize, &end);
}

int qm_sq_load_locked(struct qm_fn *fn, struct qm_queue *q, const struct qm_sqc *c)
{
    uint64_t base = qm_addr(c->base_l, c->base_h);
    unsigned depth = (c->dw3 & QM_QC_DEPTH_MASK) + 1;
    /* The ring's entries are the engine's SQEs. */
    const struct qm_engine *e = fn->dev->engine;

    qm_fn_assert_locked(fn);
    if (depth < 2 || depth > QM_SQ_DEPTH ||
        ((c->dw3 >> QM_QC_ESIZE_SHIFT) & 0xfu) != e->sqe_size_log2 ||
        !qm_ring_ok(base, depth, e->sqe_size) || c->head >= depth || c->tail >= depth ||
        c->cq_num >= fn->qp_num)
        return -EINVAL;
    qm_queue_invalidate_locked(fn, q, true, false);
    q->sq.ctx = *c;
    q->sq.base = base;
    q->sq.depth = (uint16_t)depth;
    q->sq.head = c->head;
    q->sq.tail = c->tail;
    q->sq.loaded = true;
    return 0;
}

int qm_cq_load_locked(struct qm_fn *fn, struct qm_queue *q, const struct qm_cqc *c)
{
    uint64_t base = qm_addr(c->base_l, c->base_h);
    unsigned depth = (c->dw3 & QM_QC_DEPTH_MASK) + 1;

    qm_fn_assert_locked(fn);
    if (depth < 2 || depth > QM_CQ_DEPTH || ((c->dw3 >> QM_QC_ESIZE_SHIFT) & 0xfu) != QM_CQE_SIZE_LOG2 ||
        !qm_ring_ok(base, depth, sizeof(struct qm_cqe)) || c->head >= depth || c->tail >= depth)
        return -EINVAL;
    qm_queue_invalidate_locked(fn, q, false, true);
    q->cq.ctx = *c;
    q->cq.base = base;
    q->cq.depth = (uint16_t)depth;
    q->cq.head = c->head;
    q->cq.tail = c->tail;
    q->cq.phase = c->dw6 & QM_CQC_DW6_PHASE;
    q->cq.loaded = true;
    return 0;
}

int qm_xeq_load_locked(struct qm_fn *fn, struct qm_xeq *x, const struct qm_eqc *c, bool aeq)
{
    uint64_t base = qm_addr(c->base_l, c->base_h);
    unsigned depth = (c->dw6 & QM_XEQ_DEPTH_MASK) + 1;

    qm_fn_assert_locked(fn);
    if (depth < 2 || depth > (aeq ? QM_AEQ_DEPTH : QM_EQ_DEPTH) || !qm_ring_ok(base, depth, 4) ||
        c->head >= depth || c->tail >= depth)
        return -EINVAL;
    x->ctx = *c;
    x->base = base;
    x->depth = (uint16_t)depth;
    x->head = c->head;
    x->tail = c->tail;
    x->phase = (c->dw6 >> QM_XEQ_PHASE_SHIFT) & 1u;
    x->valid = true;
    x->overflowed = false;
    x->broken = false;
    return 0;
}

void qm_xeq_to_ctx(const struct qm_xeq *x, struct qm_eqc *c)
{
    *c = x->ctx;
    if (!x->valid)
        return; /* a half-written shadow reads back as written */
    c->head = x->head;
    c->tail = x->tail;
    c->dw6 = (x->ctx.dw6 & ~(QM_XEQ_DEPTH_MASK | 1u << QM_XEQ_PHASE_SHIFT)) |
             (uint32_t)(x->depth - 1) | (uint32_t)x->phase << QM_XEQ_PHASE_SHIFT;
}

void qm_sq_to_ctx(const struct qm_queue *q, struct qm_sqc *c)
{
    *c = q->sq.ctx;
    c->head = q->sq.head;
    c->tail = q->sq.tail;
}

void qm_cq_to_ctx(const struct qm_queue *q, struct qm_cqc *c)
{
    *c = q->cq.ctx;
    c->head = q->cq.head;
    c->tail = q->cq.tail;
    c->dw6 = (q->cq.ctx.dw6 & ~QM_CQC_DW6_PHASE) | (q->cq.phase ? QM_CQC_DW6_PHASE : 0);
}

/* Drop the cached context: a job in flight on the SQ is revoked; one that
 * completes into a dropped CQ is discarded at commit (generation check). */
void qm_queue_invalidate_locked(struct qm_fn *fn, struct qm_queue *q, bool sq, bool cq)
{
    qm_fn_assert_locked(fn);
    if (sq) {
        qm_job_revoke_locked(fn, q, false);
        qm_mb_stop_port_release_locked(fn, q);
        uint32_t gen = q->sq.gen + 1;

        memset(&q->sq, 0, sizeof(q->sq));
        q->sq.gen = gen;
    }
    if (cq) {
        uint32_t gen = q->cq.gen + 1;

        memset(&q->cq, 0, sizeof(q->cq));
        q->cq.gen = gen;
    }
}

/* Load from the table whatever a SQC_BT/CQC_BT left pending for this queue.
 * The state bits survive a table load (qm_hw.h, QM_WIN_SQ_STOPPED_L): the
 * table holds positions only, and a restore sets the rest before the load. */
void qm_queue_ensure_loaded_locked(struct qm_fn *fn, struct qm_queue *q)
{
    qm_fn_assert_locked(fn);
    if (q->sq.reload) {
        const struct qm_sq keep = q->sq;
        struct qm_mb_port *waiting = q->stop_port; /* a restored STOP_QP keeps waiting */
        struct qm_sqc c;

        q->sq.reload = false;
        q->stop_port = NULL;
        if (iommu_dma_read(fn->dom, fn->sqc_bt + q->qn * 32ull, &c, sizeof(c)) != 0) {
            QM_COUNT(fn, ring_faults);
        } else if (qm_sq_load_locked(fn, q, &c) == 0) {
            QM_COUNT(fn, table_loads);
            q->sq.stopped = keep.stopped;
            q->sq.stopping = keep.stopping;
            q->sq.broken = keep.broken;
        }
        q->stop_port = waiting;
    }
    if (q->cq.reload) {
        const struct qm_cq keep = q->cq;
        struct qm_cqc c;

        q->cq.reload = false;
        if (iommu_dma_read(fn->dom, fn->cqc_bt + q->qn * 32ull, &c, sizeof(c)) != 0) {
            QM_COUNT(fn, ring_faults);
        } else if (qm_cq_load_locked(fn, q, &c) == 0) {
            QM_COUNT(fn, table_loads);
            q->cq.broken = keep.broken;
            q->cq.disarmed = keep.disarmed;
            q->cq.overflow_posted = keep.overflow_posted;
        }
    }
}

static void qm_bit_set(uint32_t *pair, unsigned i)
{
    pair[i / 32] |= 1u << (i % 32);
}

/* CACHE_WB: every cached context, with live positions, into its table slot.
 * A context with no table, or whose slot cannot be written, is recorded in
 * the WB_FAIL bitmaps: the host then reads it through QM_WIN_QC_*. */
void qm_cache_writeback_locked(struct qm_fn *fn)
{
    uint32_t *sq_fail = &fn->regs[QM_R_WIN_SQC_WB_FAIL_L];
    uint32_t *cq_fail = &fn->regs[QM_R_WIN_CQC_WB_FAIL_L];

    qm_fn_assert_locked(fn);
    QM_COUNT(fn, cache_writebacks);
    sq_fail[0] = sq_fail[1] = cq_fail[0] = cq_fail[1] = 0;
    for (unsigned i = 0; i < fn->qp_num; i++) {
        struct qm_queue *q = &fn->q[i];

        if (q->sq.loaded) {
            struct qm_sqc c;

            qm_sq_to_ctx(q, &c);
            if (fn->sqc_bt == 0 ||
                iommu_dma_write(fn->dom, fn->sqc_bt + i * 32ull, &c, sizeof(c)) != 0) {
                QM_COUNT(fn, ring_faults);
                qm_bit_set(sq_fail, i);
            }
        }
        if (q->cq.loaded) {
            struct qm_cqc c;

            qm_cq_to_ctx(q, &c);
            if (fn->cqc_bt == 0 ||
                iommu_dma_write(fn->dom, fn->cqc_bt + i * 32ull, &c, sizeof(c)) != 0) {
                QM_COUNT(fn, ring_faults);
                qm_bit_set(cq_fail, i);
            }
        }
    }
}

/* ---- queue state bits (window registers) --------------------------------- */

bool qm_queue_state_get_locked(const struct qm_queue *q, enum qm_qstate k)
{
    switch (k) {
    case QM_QS_SQ_STOPPED: return q->sq.stopped;
    case QM_QS_SQ_STOPPING: return q->sq.stopping;
    case QM_QS_SQ_BROKEN: return q->sq.broken;
    case QM_QS_CQ_BROKEN: return q->cq.broken;
    case QM_QS_CQ_DISARMED: return q->cq.disarmed;
    case QM_QS_CQ_OVERFLOW: return q->cq.overflow_posted;
    case QM_QS_CQ_STALLED: return q->cq.stalled;
    case QM_QS_COUNT: break;
    }
    return false;
}

/* A host load of one state bit. Nothing is posted or raised: the bit says
 * what already happened. The queue is kicked when the change may let it
 * (or an SQ waiting on the CQ) fetch; a paused function fetches nothing. */
void qm_queue_state_set_locked(struct qm_fn *fn, struct qm_deferred *d, struct qm_queue *q,
                               enum qm_qstate k, bool on)
{
    qm_fn_assert_locked(fn);
    if (qm_queue_state_get_locked(q, k) == on)
        return;
    switch (k) {
    case QM_QS_SQ_STOPPED:
        q->sq.stopped = on;
        if (on && q->sq.stopping) {
            q->sq.stopping = false; /* the drain is over: a waiting STOP_QP completes */
            qm_mb_stop_port_release_locked(fn, q);
            qm_fn_wake_waiters_locked(fn);
        }
        break;
    case QM_QS_SQ_STOPPING:
        if (on && q->sq.stopped)
            return; /* STOP_QP on a stopped SQ returns at once: never both */
        q->sq.stopping = on;
        if (!on)
            qm_mb_stop_port_release_locked(fn, q);
        /* No settle here: the SQ may still wait for its table load, and a
         * drain is only judged against a loaded context. */
        return;
    case QM_QS_SQ_BROKEN:
        q->sq.broken = on;
        break;
    case QM_QS_CQ_BROKEN:
        q->cq.broken = on;
        if (!on)
            qm_fn_kick_all_locked(fn, d);
        return;
    case QM_QS_CQ_DISARMED:
        q->cq.disarmed = on;
        return;
    case QM_QS_CQ_OVERFLOW:
        q->cq.overflow_posted = on;
        return;
    case QM_QS_CQ_STALLED:
    case QM_QS_COUNT:
        return;
    }
    if (q->sq.loaded)
        qm_queue_kick_locked(fn, d, q);
}

uint32_t qm_xeq_state_get_locked(const struct qm_fn *fn)
{
    return (fn->eq.broken ? QM_XEQ_ST_EQ_BROKEN : 0) |
           (fn->eq.overflowed ? QM_XEQ_ST_EQ_OVERFLOW : 0) |
           (fn->aeq.broken ? QM_XEQ_ST_AEQ_BROKEN : 0) | (fn->halted ? QM_XEQ_ST_HALTED : 0);
}

static void qm_xeq_set_broken(struct qm_xeq *x, bool on)
{
    x->broken = on;
    if (on)
        x->valid = false; /* the context stays as loaded: the shadow reads it */
}

/* A host load of QM_WIN_XEQ_STATE. Clearing BROKEN does not revive the
 * queue (a context load does); clearing HALTED lets the function fetch. */
void qm_xeq_state_set_locked(struct qm_fn *fn, struct qm_deferred *d, uint32_t v)
{
    bool was_halted = fn->halted;

    qm_fn_assert_locked(fn);
    qm_xeq_set_broken(&fn->eq, v & QM_XEQ_ST_EQ_BROKEN);
    fn->eq.overflowed = v & QM_XEQ_ST_EQ_OVERFLOW;
    qm_xeq_set_broken(&fn->aeq, v & QM_XEQ_ST_AEQ_BROKEN);
    fn->halted = v & QM_XEQ_ST_HALTED;
    if (fn->halted && !was_halted)
        qm_fn_revoke_jobs_locked(fn, d, false);
    else if (!fn->halted && was_halted)
        qm_fn_kick_all_locked(fn, d);
}

/* ---- event queues --------------------------------------------------------- */

static bool qm_xeq_full(const struct qm_xeq *x)
{
    return (uint16_t)((x->tail + 1) % x->depth) == x->head;
}

/* Writes one entry; returns false on a ring fault. The MSI goes out when the
 * queue turns non-empty; an EQ/AEQ doorbell that leaves entries behind raises
 * it again, so no entry is ever left without an interrupt. */
static bool qm_xeq_push_locked(struct qm_fn *fn, struct qm_deferred *d, struct qm_xeq *x,
                               uint32_t dw0, enum qm_fn_reg mask_reg, unsigned vector)
{
    bool was_empty = x->head == x->tail;

    dw0 |= (uint32_t)x->phase << QM_XEQ_PHASE_SHIFT;
    if (iommu_dma_write(fn->dom, x->base + x->tail * 4ull, &dw0, sizeof(dw0)) != 0)
        return false;
    x->tail = (uint16_t)((x->tail + 1) % x->depth);
    if (x->tail == 0)
        x->phase = !x->phase;
    if (was_empty && !(fn->regs[mask_reg] & 1u))
        qm_fn_msi_locked(fn, d, vector);
    return true;
}

void qm_post_aeqe_locked(struct qm_fn *fn, struct qm_deferred *d, uint16_t qn,
                         enum qm_aeqe_type type)
{
    struct qm_xeq *x = &fn->aeq;

    qm_fn_assert_locked(fn);
    if (!x->valid || qm_xeq_full(x)) {
        QM_COUNT(fn, aeqes_dropped);
        return;
    }
    if (!qm_xeq_push_locked(fn, d, x, qn | (uint32_t)type << QM_AEQE_TYPE_SHIFT, QM_R_AEQ_INT_MASK,
                            QM_VEC_AEQ)) {
        /* Nothing left to report through: the function stops. */
        QM_COUNT(fn, ring_faults);
        qm_xeq_set_broken(x, true);
        fn->halted = true;
        qm_fn_revoke_jobs_locked(fn, d, false);
        QM_GUEST_LOG(fn, "AEQ ring not writable: function halted%s", "");
        return;
    }
    QM_COUNT(fn, aeqes_posted);
}

static void qm_post_eqe_locked(struct qm_fn *fn, struct qm_deferred *d, uint16_t cqn)
{
    struct qm_xeq *x = &fn->eq;

    qm_fn_assert_locked(fn);
    /* An EQE behind one whose MSI is held back would raise none itself. */
    qm_fn_msi_mod_flush_locked(fn, d);
    if (!x->valid) {
        QM_COUNT(fn, eqes_dropped);
        return;
    }
    if (qm_xeq_full(x)) {
        QM_COUNT(fn, eqes_dropped);
        if (!x->overflowed) {
            x->overflowed = true;
            qm_post_aeqe_locked(fn, d, 0, QM_AEQE_EQ_OVERFLOW);
        }
        return;
    }
    if (!qm_xeq_push_locked(fn, d, x, cqn, QM_R_EQ_INT_MASK, QM_VEC_EQ)) {
        QM_COUNT(fn, ring_faults);
        qm_xeq_set_broken(x, true);
        qm_post_aeqe_locked(fn, d, cqn, QM_AEQE_CQE_ERROR);
        return;
    }
    QM_COUNT(fn, eqes_posted);
}

/* ---- fetch decision ------------------------------------------------------- */

static unsigned qm_cq_used(const struct qm_cq *cq)
{
    return (unsigned)(cq->tail + cq->depth - cq->head) % cq->depth;
}

/* The CQ an SQ completes into, loaded from its table if that is pending;
 * NULL if it is not usable. */
static struct qm_queue *qm_queue_target_cq(struct qm_fn *fn, struct qm_queue *q)
{
    struct qm_queue *c;

    if (q->sq.ctx.cq_num >= fn->qp_num)
        return NULL;
    c = &fn->q[q->sq.ctx.cq_num];
    qm_queue_ensure_loaded_locked(fn, c);
    return c->cq.loaded && !c->cq.broken ? c : NULL;
}

static bool qm_cq_has_room(const struct qm_cq *cq)
{
    return qm_cq_used(cq) + cq->reserved < (unsigned)cq->depth - 1;
}

struct qm_queue *qm_queue_fetchable_locked(struct qm_fn *fn, struct qm_queue *q)
{
    struct qm_queue *c;

    qm_fn_assert_locked(fn);
    if (!qm_fn_can_run_locked(fn) || !q->sq.loaded || q->sq.stopped || q->sq.broken ||
        q->job != NULL || q->sq.head == q->sq.tail)
        return NULL;
    c = qm_queue_target_cq(fn, q);
    if (c == NULL)
        return NULL;
    if (!qm_cq_has_room(&c->cq)) {
        if (!c->cq.stalled)
            QM_COUNT(fn, cq_full_stalls);
        c->cq.stalled = true; /* the CQ doorbell that makes room kicks again */
        return NULL;
    }
    return c;
}

static bool qm_queue_drained_locked(const struct qm_queue *q)
{
    return !q->sq.loaded || (q->sq.head == q->sq.tail && q->job == NULL);
}

static void qm_queue_stop_finish_locked(struct qm_fn *fn, struct qm_queue *q)
{
    q->sq.stopping = false;
    q->sq.stopped = true;
    qm_mb_stop_port_release_locked(fn, q);
    qm_fn_wake_waiters_locked(fn);
}

/* Settle a pending STOP_QP; then tell whether the queue may fetch now. */
bool qm_queue_settle_locked(struct qm_fn *fn, struct qm_deferred *d, struct qm_queue *q)
{
    qm_fn_assert_locked(fn);
    if (q->sq.stopping) {
        qm_queue_ensure_loaded_locked(fn, q); /* a drain is judged on the context */
        if (qm_queue_drained_locked(q) || q->sq.broken) {
            qm_queue_stop_finish_locked(fn, q);
            return false;
        }
        if (q->job == NULL && qm_fn_can_run_locked(fn)) {
            struct qm_queue *c = qm_queue_target_cq(fn, q);

            /* The consumer asked to stop, so a full CQ can never drain: report
             * the overflow once and stop with the rest unexecuted. */
            if (c == NULL || !qm_cq_has_room(&c->cq)) {
                if (c && !c->cq.overflow_posted) {
                    c->cq.overflow_posted = true;
                    qm_post_aeqe_locked(fn, d, c->qn, QM_AEQE_CQ_OVERFLOW);
                }
                qm_queue_stop_finish_locked(fn, q);
                return false;
            }
        }
    }
    return qm_queue_fetchable_locked(fn, q) != NULL;
}

/* Schedule the queue if it can fetch. */
void qm_queue_kick_locked(struct qm_fn *fn, struct qm_deferred *d, struct qm_queue *q)
{
    if (qm_queue_settle_locked(fn, d, q))
        qm_sched_enqueue(fn->dev, d, q);
}

void qm_fn_kick_all_locked(struct qm_fn *fn, struct qm_deferred *d)
{
    qm_fn_assert_locked(fn);
    for (unsigned i = 0; i < fn->qp_num; i++)
        qm_queue_kick_locked(fn, d, &fn->q[i]);
}

/* RESUME_QM: post the EQEs whose doorbell re-arm arrived while paused,
 * re-assert interrupts whose cause is still pending, restart fetching. */
void qm_fn_resume_events_locked(struct qm_fn *fn, struct qm_deferred *d)
{
    qm_fn_assert_locked(fn);
    for (unsigned i = 0; i < fn->qp_num; i++) {
        struct qm_cq *cq = &fn->q[i].cq;

        if (cq->loaded && !cq->broken && !cq->disarmed && (cq->ctx.dw6 & QM_CQC_DW6_EQ_EN) &&
            cq->tail != cq->head) {
            cq->disarmed = true;
            qm_post_eqe_locked(fn, d, (uint16_t)i);
        }
    }
    if (qm_xeq_source(&fn->eq) && !(fn->regs[QM_R_EQ_INT_MASK] & 1u))
        qm_fn_msi_locked(fn, d, QM_VEC_EQ);
    if (qm_xeq_source(&fn->aeq) && !(fn->regs[QM_R_AEQ_INT_MASK] & 1u))
        qm_fn_msi_locked(fn, d, QM_VEC_AEQ);
    if ((fn->regs[QM_R_IFC_INT_SOURCE_V] & 1u) && !(fn->regs[QM_R_IFC_INT_MASK] & 1u))
        qm_fn_msi_locked(fn, d, QM_VEC_IFC);
    qm_fn_kick_all_locked(fn, d);
}

/* ---- job commit -------------------------------------------------------- */

/* The result dwords of the engine (mask bit i = dword i), each run of
 * consecutive dwords in one write. */
static int qm_sqe_write_back(struct qm_fn *fn, uint64_t sqe_iova, uint32_t mask,
                             const uint32_t *sqe)
{
    for (unsigned i = 0; i < 32 && (mask >> i) != 0;) {
        unsigned n = 0;

        if (!((mask >> i) & 1u)) {
            i++;
            continue;
        }
        while (i + n < 32 && ((mask >> (i + n)) & 1u))
            n++;
        if (iommu_dma_write(fn->dom, sqe_iova + 4u * i, &sqe[i], 4u * n) != 0)
            return -EFAULT;
        i += n;
    }
    return 0;
}

/* The CQE is the commit point: SQE result first, then the CQE (phase last),
 * then the EQE. A ring that cannot be written breaks its queue (AEQE 2). */
void qm_job_commit_locked(struct qm_fn *fn, struct qm_deferred *d, struct qm_queue *q,
                          struct qm_queue *c, uint16_t slot, const uint32_t *sqe)
{
    const struct qm_engine *e = fn->dev->engine;
    uint64_t sqe_iova = q->sq.base + (uint64_t)slot * e->sqe_size;
    uint64_t cqe_iova = c->cq.base + (uint64_t)c->cq.tail * sizeof(struct qm_cqe);
    struct qm_cqe cqe = {0};

    qm_fn_assert_locked(fn);
    if (qm_sqe_write_back(fn, sqe_iova, e->writeback_mask, sqe) != 0) {
        QM_COUNT(fn, ring_faults);
        q->sq.broken = true;
        qm_post_aeqe_locked(fn, d, q->qn, QM_AEQE_CQE_ERROR);
        return;
    }
    cqe.sq_head = slot;
    cqe.sq_num = q->qn;
    cqe.w7 = c->cq.phase ? 1u : 0u;
    /* The phase bit goes last: a consumer that sees it sees the whole CQE. */
    int r = iommu_dma_write(fn->dom, cqe_iova, &cqe, offsetof(struct qm_cqe, w7));

    if (r == 0) {
        atomic_thread_fence(memory_order_release);
        r = iommu_dma_write(fn->dom, cqe_iova + offsetof(struct qm_cqe, w7), &cqe.w7, 2);
    }
    if (r != 0) {
        QM_COUNT(fn, ring_faults);
        c->cq.broken = true;
        qm_post_aeqe_locked(fn, d, c->qn, QM_AEQE_CQE_ERROR);
        return;
    }
    c->cq.tail = (uint16_t)((c->cq.tail + 1) % c->cq.depth);
    if (c->cq.tail == 0)
        c->cq.phase = !c->cq.phase;
    q->sq.head = (uint16_t)((slot + 1) % q->sq.depth);
    QM_COUNT(fn, jobs_done);
    if (e->job_dma_fault(sqe))
        QM_COUNT(fn, jobs_dma_fault);
    if (!e->job_ok(sqe))
        QM_COUNT(fn, jobs_failed);
    if ((c->cq.ctx.dw6 & QM_CQC_DW6_EQ_EN) && !c->cq.disarmed) {
        c->cq.disarmed = true;
        qm_post_eqe_locked(fn, d, c->qn);
    }
    qm_db_poll_note_done(fn->dev);
}

/* ---- doorbells ----------------------------------------------------------- */

static void qm_db_ignore(struct qm_fn *fn, uint64_t db, const char *why)
{
    QM_COUNT(fn, doorbells_ignored);
    QM_GUEST_LOG(fn, "doorbell 0x%016llx ignored: %s", (unsigned long long)db, why);
}

static void qm_db_sq(struct qm_access *a, uint64_t db, struct qm_queue *q, uint16_t index,
                     bool prio)
{
    struct qm_fn *fn = a->fn;

    if (!q->sq.loaded) {
        /* A reload of a queue that only has a CQ (fed by another SQ) did
         * its work above. */
        if (!prio || !q->cq.loaded)
            qm_db_ignore(fn, db, "SQ has no context");
        return;
    }
    if (prio) {
        /* Restore re-arm: the context is (re)loaded above; just resume. */
        qm_queue_kick_locked(fn, a->d, q);
        return;
    }
    if (index >= q->sq.depth) {
        qm_db_ignore(fn, db, "SQ index beyond depth");
        return;
    }
    if (q->sq.stopping || q->sq.stopped || q->sq.broken) {
        qm_db_ignore(fn, db, "SQ stopped");
        return;
    }
    q->sq.tail = index;
    if (fn->paused)
        QM_COUNT(fn, doorbells_held); /* acted on at RESUME_QM */
    qm_queue_kick_locked(fn, a->d, q);
}

static void qm_db_cq(struct qm_access *a, uint64_t db, struct qm_queue *q, uint16_t index,
                     bool prio)
{
    struct qm_fn *fn = a->fn;
    struct qm_cq *cq = &q->cq;

    if (!cq->loaded) {
        qm_db_ignore(fn, db, "CQ has no context");
        return;
    }
    if (index >= cq->depth) {
        qm_db_ignore(fn, db, "CQ index beyond depth");
        return;
    }
    cq->head = index;
    if (cq->stalled) {
        cq->stalled = false;
        qm_fn_kick_all_locked(fn, a->d);
    }
    if (!prio)
        return;
    /* Re-arm: CQEs already waiting get their event now (after resume if
     * paused), so no completion is ever left without one. */
    cq->disarmed = false;
    if (cq->tail != cq->head && (cq->ctx.dw6 & QM_CQC_DW6_EQ_EN) && qm_fn_can_run_locked(fn)) {
        cq->disarmed = true;
        qm_post_eqe_locked(fn, a->d, q->qn);
    }
}

static void qm_db_xeq(struct qm_access *a, uint64_t db, bool aeq, uint16_t index)
{
    struct qm_fn *fn = a->fn;
    struct qm_xeq *x = aeq ? &fn->aeq : &fn->eq;
    enum qm_fn_reg mask = aeq ? QM_R_AEQ_INT_MASK : QM_R_EQ_INT_MASK;

    if (!x->valid) {
        qm_db_ignore(fn, db, "event queue has no context");
        return;
    }
    if (index >= x->depth) {
        qm_db_ignore(fn, db, "event queue index beyond depth");
        return;
    }
    x->head = index;
    if (!qm_xeq_full(x))
        x->overflowed = false;
    /* Entries left behind (a driver handles at most half a queue per pass):
     * interrupt again. */
    if (x->head != x->tail && !(fn->regs[mask] & 1u))
        qm_fn_msi_locked(fn, a->d, aeq ? QM_VEC_AEQ : QM_VEC_EQ);
}

/* One 64-bit doorbell: qn[11:0] cmd[15:12] randata[31:16] index[47:32]
 * priority[63:48]. eq_port: it arrived at the EQ/AEQ doorbell address. */
void qm_db_execute(struct qm_access *a, uint64_t db, bool eq_port)
{
    struct qm_fn *fn = a->fn;
    unsigned qn = db & 0xfffu, cmd = (db >> 12) & 0xfu;
    uint16_t index = (uint16_t)(db >> 32);
    bool prio = (db >> 48) != 0;

    qm_fn_assert_locked(fn);
    QM_COUNT(fn, doorbells);
    if (cmd > QM_DB_CMD_AEQ) {
        qm_db_ignore(fn, db, "unknown command");
        return;
    }
    if (eq_port != (cmd == QM_DB_CMD_EQ || cmd == QM_DB_CMD_AEQ)) {
        qm_db_ignore(fn, db, "command at the wrong doorbell address");
        return;
    }
    if (cmd == QM_DB_CMD_EQ || cmd == QM_DB_CMD_AEQ) {
        if (qn != 0)
            qm_db_ignore(fn, db, "event queue doorbell with qn != 0");
        else
            qm_db_xeq(a, db, cmd == QM_DB_CMD_AEQ, index);
        return;
    }
    if (qn >= fn->qp_num) {
        qm_db_ignore(fn, db, "queue number out of range");
        return;
    }
    struct qm_queue *q = &fn->q[qn];

    qm_queue_ensure_loaded_locked(fn, q);
    qm_db_poll_note_ring(fn->dev);
    if (cmd == QM_DB_CMD_SQ)
        qm_db_sq(a, db, q, index, prio);
    else
        qm_db_cq(a, db, q, index, prio);
}
