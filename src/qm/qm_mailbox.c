/* qm_mailbox: the 16-byte command mailbox at 0x300, one per door (the
 * function's own, and in v4 the PF window's), and one handler per command.
 *
 * A command executes when the write covering byte 0x30f arrives, with all 16
 * bytes as last written (a 16-byte store, or 8/4/2/1-byte pieces). It
 * completes before that write returns, except STOP_QP when the queue cannot
 * drain within the budget: then busy stays set and the worker that retires
 * the queue's last job clears it. Errors set status != 0 and change nothing.
 */
#include <string.h>

#include "common/common.h"
#include "qm/qm_internal.h"

#define QM_MB_ASYNC 0xffu /* handler result: still running, busy stays set */
#define QM_MB_BUSY (1u << QM_MB_BUSY_SHIFT)
#define QM_MB_STATUS_BITS (QM_MB_STATUS_MASK << QM_MB_STATUS_SHIFT)

typedef uint8_t (*qm_mb_handler)(struct qm_access *a, struct qm_mb_port *p,
                                 const struct qm_mailbox *m, bool op);

static uint64_t qm_mb_base(const struct qm_mailbox *m)
{
    return (uint64_t)m->base_l | (uint64_t)m->base_h << 32;
}

static uint8_t qm_mb_dma_read(struct qm_fn *fn, uint64_t iova, void *buf, uint64_t len)
{
    if (iommu_dma_read(fn->dom, iova, buf, len) == 0)
        return QM_MB_ST_OK;
    QM_COUNT(fn, ring_faults);
    return QM_MB_ST_BAD_ADDR;
}

static uint8_t qm_mb_dma_write(struct qm_fn *fn, uint64_t iova, const void *buf, uint64_t len)
{
    if (iommu_dma_write(fn->dom, iova, buf, len) == 0)
        return QM_MB_ST_OK;
    QM_COUNT(fn, ring_faults);
    return QM_MB_ST_BAD_ADDR;
}

/* PAUSE_QM / RESUME_QM come from the migration side only: the PF window's
 * mailbox in v4 mode, the VF's own (shared) mailbox in v3 mode. */
static bool qm_mb_from_migration_side(const struct qm_access *a)
{
    if (a->fn->idx == 0)
        return false;
    return qm_fn_v4(a->dev) ? a->port == QM_PORT_HOST : a->port == QM_PORT_FN;
}

/* SQC and CQC name a queue of this function and a context address: the
 * checks both commands make before touching anything. */
static uint8_t qm_mb_queue_target(struct qm_fn *fn, const struct qm_mailbox *m, struct qm_queue **q)
{
    if (m->queue_num >= fn->qp_num)
        return QM_MB_ST_BAD_QUEUE;
    if (qm_mb_base(m) == 0)
        return QM_MB_ST_BAD_ADDR;
    *q = &fn->q[m->queue_num];
    return QM_MB_ST_OK;
}

static uint8_t handle_sqc(struct qm_access *a, struct qm_mb_port *p, const struct qm_mailbox *m,
                          bool op)
{
    struct qm_fn *fn = a->fn;
    uint64_t base = qm_mb_base(m);
    struct qm_queue *q;
    struct qm_sqc c;
    uint8_t st;

    (void)p;
    st = qm_mb_queue_target(fn, m, &q);
    if (st)
        return st;
    if (op) {
        qm_queue_ensure_loaded_locked(fn, q);
        if (!q->sq.loaded)
            return QM_MB_ST_NO_CTX;
        qm_sq_to_ctx(q, &c);
        return qm_mb_dma_write(fn, base, &c, sizeof(c));
    }
    st = qm_mb_dma_read(fn, base, &c, sizeof(c));
    if (st)
        return st;
    if (qm_sq_load_locked(fn, q, &c))
        return QM_MB_ST_BAD_CTX;
    qm_queue_kick_locked(fn, a->d, q);
    return QM_MB_ST_OK;
}

static uint8_t handle_cqc(struct qm_access *a, struct qm_mb_port *p, const struct qm_mailbox *m,
                          bool op)
{
    struct qm_fn *fn = a->fn;
    uint64_t base = qm_mb_base(m);
    struct qm_queue *q;
    struct qm_cqc c;
    uint8_t st;

    (void)p;
    st = qm_mb_queue_target(fn, m, &q);
    if (st)
        return st;
    if (op) {
        qm_queue_ensure_loaded_locked(fn, q);
        if (!q->cq.loaded)
            return QM_MB_ST_NO_CTX;
        qm_cq_to_ctx(q, &c);
        return qm_mb_dma_write(fn, base, &c, sizeof(c));
    }
    st = qm_mb_dma_read(fn, base, &c, sizeof(c));
    if (st)
        return st;
    if (qm_cq_load_locked(fn, q, &c))
        return QM_MB_ST_BAD_CTX;
    qm_fn_kick_all_locked(fn, a->d); /* SQs waiting for this CQ may go */
    return QM_MB_ST_OK;
}

static uint8_t qm_mb_xeqc(struct qm_access *a, const struct qm_mailbox *m, bool op, bool aeq)
{
    struct qm_fn *fn = a->fn;
    struct qm_xeq *x = aeq ? &fn->aeq : &fn->eq;
    uint64_t base = qm_mb_base(m);
    struct qm_eqc c;
    uint8_t st;

    if (base == 0)
        return QM_MB_ST_BAD_ADDR;
    if (op) {
        if (!x->valid)
            return QM_MB_ST_NO_CTX;
        qm_xeq_to_ctx(x, &c);
        return qm_mb_dma_write(fn, base, &c, sizeof(c));
    }
    st = qm_mb_dma_read(fn, base, &c, sizeof(c));
    if (st)
        return st;
    return qm_xeq_load_locked(fn, x, &c, aeq) ? QM_MB_ST_BAD_CTX : QM_MB_ST_OK;
}

static uint8_t handle_eqc(struct qm_access *a, struct qm_mb_port *p, const struct qm_mailbox *m,
                          bool op)
{
    (void)p;
    return qm_mb_xeqc(a, m, op, false);
}

static uint8_t handle_aeqc(struct qm_access *a, struct qm_mb_port *p, const struct qm_mailbox *m,
                           bool op)
{
    (void)p;
    return qm_mb_xeqc(a, m, op, true);
}

/* Setting a table base drops the cached contexts of that kind: each queue is
 * then loaded from the table when a doorbell or STOP_QP first names it (how a
 * restored function picks up its queue positions). */
static uint8_t qm_mb_table_base(struct qm_access *a, struct qm_mb_port *p,
                                const struct qm_mailbox *m, bool op, bool cq)
{
    struct qm_fn *fn = a->fn;
    uint64_t base = qm_mb_base(m), end;

    if (op) {
        p->data = cq ? fn->cqc_bt : fn->sqc_bt;
        return QM_MB_ST_OK;
    }
    if (base == 0 || am_add_overflows_u64(base, QM_MAX_QPS_PER_VF * 32ull, &end))
        return QM_MB_ST_BAD_ADDR;
    if (cq)
        fn->cqc_bt = base;
    else
        fn->sqc_bt = base;
    for (unsigned i = 0; i < QM_MAX_QPS_PER_VF; i++) {
        qm_queue_invalidate_locked(fn, &fn->q[i], !cq, cq);
        if (cq)
            fn->q[i].cq.reload = true;
        else
            fn->q[i].sq.reload = true;
    }
    return QM_MB_ST_OK;
}

static uint8_t handle_sqc_bt(struct qm_access *a, struct qm_mb_port *p, const struct qm_mailbox *m,
                             bool op)
{
    return qm_mb_table_base(a, p, m, op, false);
}

static uint8_t handle_cqc_bt(struct qm_access *a, struct qm_mb_port *p, const struct qm_mailbox *m,
                             bool op)
{
    return qm_mb_table_base(a, p, m, op, true);
}

/* Query: this function's queue range. Set (PF's own mailbox only): the
 * range of function queue_num, in the same bit layout. */
static uint8_t handle_sqc_vft(struct qm_access *a, struct qm_mb_port *p,
                              const struct qm_mailbox *m, bool op)
{
    struct qm_dev *dev = a->dev;
    uint64_t w = qm_mb_base(m);

    if (op) {
        p->data = a->fn->vft_word;
        return QM_MB_ST_OK;
    }
    if (a->fn->idx != 0 || a->port != QM_PORT_FN)
        return QM_MB_ST_BAD_CMD;
    if (m->queue_num >= dev->nfn)
        return QM_MB_ST_BAD_FN;
    if (!qm_vft_sqc_valid(dev, w))
        return QM_MB_ST_BAD_CTX;
    dev->vft_sqc[m->queue_num] = w; /* PF state: we hold the PF's lock */
    a->d->vft_changed |= 1ull << m->queue_num;
    return QM_MB_ST_OK;
}

static bool qm_stop_done(struct qm_fn *fn, void *arg)
{
    const struct qm_queue *q = arg;

    (void)fn;
    return !q->sq.stopping;
}

static uint8_t handle_stop_qp(struct qm_access *a, struct qm_mb_port *p,
                              const struct qm_mailbox *m, bool op)
{
    struct qm_fn *fn = a->fn;
    struct qm_queue *q;

    (void)op;
    if (m->queue_num >= fn->qp_num)
        return QM_MB_ST_BAD_QUEUE;
    q = &fn->q[m->queue_num];
    qm_queue_ensure_loaded_locked(fn, q);
    if (!q->sq.loaded || q->sq.stopped)
        return QM_MB_ST_OK;
    q->sq.stopping = true;
    qm_queue_kick_locked(fn, a->d, q);
    qm_sched_wake(a->dev, a->d); /* the drain needs a worker now, not at unlock */
    if (qm_fn_wait_locked(fn, qm_stop_done, q, am_now_ns() + QM_STOP_WAIT_NS))
        return QM_MB_ST_OK;
    q->stop_port = p; /* the drain goes on: busy stays set until it ends */
    return QM_MB_ASYNC;
}

static uint8_t handle_src(struct qm_access *a, struct qm_mb_port *p, const struct qm_mailbox *m,
                          bool op)
{
    struct qm_dev *dev = a->dev;
    uint64_t msg = qm_mb_base(m);

    (void)p;
    (void)op;
    if (a->port != QM_PORT_FN)
        return QM_MB_ST_DENIED;
    if (a->fn->idx != 0) {
        if (m->queue_num != 0)
            return QM_MB_ST_BAD_FN; /* a VF talks to the PF only */
        atomic_store(&a->fn->ifc_out, msg);
        return QM_MB_ST_OK;
    }
    if (m->queue_num == 0xffff) {
        for (unsigned i = 1; i < dev->nfn; i++)
            atomic_store(&dev->fn[i]->ifc_in, msg);
        return QM_MB_ST_OK;
    }
    if (m->queue_num == 0 || m->queue_num >= dev->nfn)
        return QM_MB_ST_BAD_FN;
    atomic_store(&dev->fn[m->queue_num]->ifc_in, msg);
    return QM_MB_ST_OK;
}

static uint8_t handle_dst(struct qm_access *a, struct qm_mb_port *p, const struct qm_mailbox *m,
                          bool op)
{
    struct qm_dev *dev = a->dev;

    (void)op;
    if (a->port != QM_PORT_FN)
        return QM_MB_ST_DENIED;
    if (a->fn->idx != 0) {
        if (m->queue_num != 0)
            return QM_MB_ST_BAD_FN;
        p->data = atomic_load(&a->fn->ifc_in);
        return QM_MB_ST_OK;
    }
    if (m->queue_num == 0 || m->queue_num >= dev->nfn)
        return QM_MB_ST_BAD_FN;
    p->data = atomic_load(&dev->fn[m->queue_num]->ifc_out);
    return QM_MB_ST_OK;
}

/* Bounded pause: fetch stops, jobs in flight are revoked (they stay on their
 * SQ and no worker can change guest memory for them any more); the command
 * returns when the MSIs already decided are out too, or when the budget is
 * spent (PAUSE_STATUS bit1 tells which). It waits for no worker to be
 * scheduled (qm_internal.h, Revocation). */
static uint8_t handle_pause_qm(struct qm_access *a, struct qm_mb_port *p,
                               const struct qm_mailbox *m, bool op)
{
    struct qm_fn *fn = a->fn;

    (void)p;
    (void)m;
    (void)op;
    if (!qm_mb_from_migration_side(a))
        return QM_MB_ST_DENIED;
    if (!fn->paused) {
        fn->paused = true;
        QM_COUNT(fn, pauses);
    }
    qm_fn_revoke_jobs_locked(fn, a->d, true);
    qm_fn_wait_locked(fn, qm_fn_quiesced, NULL, am_now_ns() + QM_PAUSE_WAIT_NS);
    return QM_MB_ST_OK;
}

static uint8_t handle_resume_qm(struct qm_access *a, struct qm_mb_port *p,
                                const struct qm_mailbox *m, bool op)
{
    struct qm_fn *fn = a->fn;
    unsigned held;

    (void)p;
    (void)m;
    (void)op;
    if (!qm_mb_from_migration_side(a))
        return QM_MB_ST_DENIED;
    if (!fn->paused)
        return QM_MB_ST_OK;
    /* A revoked job's late copy must end before its queue runs again. */
    qm_fn_wait_locked(fn, qm_fn_idle, NULL, 0);
    fn->paused = false;
    QM_COUNT(fn, resumes);
    held = fn->int_pending;
    fn->int_pending = 0;
    for (unsigned v = 0; v < QM_NUM_VECTORS; v++)
        if (held & (1u << v))
            qm_fn_msi_locked(fn, a->d, v);
    /* Doorbells stored during the pause run now, not at the next sweep
     * (a guest's kick may have been refused meanwhile). */
    qm_db_pages_take_locked(a);
    qm_fn_resume_events_locked(fn, a->d);
    return QM_MB_ST_OK;
}

static const struct {
    const char *name;
    qm_mb_handler handle;
} qm_mb_cmds[16] = {
    [QM_MB_CMD_SQC] = {"SQC", handle_sqc},
    [QM_MB_CMD_CQC] = {"CQC", handle_cqc},
    [QM_MB_CMD_EQC] = {"EQC", handle_eqc},
    [QM_MB_CMD_AEQC] = {"AEQC", handle_aeqc},
    [QM_MB_CMD_SQC_BT] = {"SQC_BT", handle_sqc_bt},
    [QM_MB_CMD_CQC_BT] = {"CQC_BT", handle_cqc_bt},
    [QM_MB_CMD_SQC_VFT_V2] = {"SQC_VFT_V2", handle_sqc_vft},
    [QM_MB_CMD_STOP_QP] = {"STOP_QP", handle_stop_qp},
    [QM_MB_CMD_SRC] = {"SRC", handle_src},
    [QM_MB_CMD_DST] = {"DST", handle_dst},
    [QM_MB_CMD_PAUSE_QM] = {"PAUSE_QM", handle_pause_qm},
    [QM_MB_CMD_RESUME_QM] = {"RESUME_QM", handle_resume_qm},
};

static void qm_mb_finish(struct qm_fn *fn, struct qm_mb_port *p, uint8_t st)
{
    p->w0 = (uint16_t)((p->w0 & ~(QM_MB_BUSY | QM_MB_STATUS_BITS)) | (unsigned)st << QM_MB_STATUS_SHIFT);
    p->exec_busy = false;
    p->delay_reads = fn->mb_delay_reads;
    if (st != QM_MB_ST_OK)
        QM_COUNT(fn, mb_errors);
}

static void qm_mb_execute(struct qm_access *a, struct qm_mb_port *p)
{
    struct qm_mailbox m;
    unsigned cmd;
    const char *name;
    uint8_t st;

    memcpy(&m, p->stage, sizeof(m));
    cmd = m.w0 & 0xffu;
    name = cmd < 16 && qm_mb_cmds[cmd].handle ? qm_mb_cmds[cmd].name : "unknown";
    p->w0 = m.w0;
    p->exec_busy = true; /* writes during a wait below are dropped */
    QM_COUNT(a->fn, mb_commands);
    st = cmd < 16 && qm_mb_cmds[cmd].handle
             ? qm_mb_cmds[cmd].handle(a, p, &m, (m.w0 >> QM_MB_OP_SHIFT) & 1u)
             : QM_MB_ST_BAD_CMD;
    if (st == QM_MB_ASYNC)
        return;
    if (st != QM_MB_ST_OK)
        QM_GUEST_LOG(a->fn, "mailbox %s (cmd 0x%x, queue %u) failed, status %u", name, cmd,
                     m.queue_num, st);
    qm_mb_finish(a->fn, p, st);
}

void qm_mb_stop_port_release_locked(struct qm_fn *fn, struct qm_queue *q)
{
    qm_fn_assert_locked(fn);
    if (q->stop_port) {
        qm_mb_finish(fn, q->stop_port, QM_MB_ST_OK);
        q->stop_port = NULL;
    }
}

uint32_t qm_mb_fn_w0_get_locked(const struct qm_fn *fn)
{
    const struct qm_mb_port *p = &fn->mb[QM_PORT_FN];

    return p->exec_busy ? (uint32_t)p->w0 | QM_MB_BUSY : p->w0;
}

/* A host load of the function's own mailbox read-back (QM_WIN_FN_MB_W0).
 * On a paused function the only command that can be in progress is a
 * STOP_QP whose drain outlasted its budget, so busy loads only as that:
 * the port waits on the queue's drain again, exactly as handle_stop_qp
 * left it. Clearing busy detaches a waiting port (it then reads done). */
void qm_mb_fn_w0_set_locked(struct qm_fn *fn, uint32_t v)
{
    struct qm_mb_port *p = &fn->mb[QM_PORT_FN];
    uint16_t qn = am_le16(p->stage + 2);

    qm_fn_assert_locked(fn);
    for (unsigned i = 0; i < QM_MAX_QPS_PER_VF; i++)
        if (fn->q[i].stop_port == p)
            fn->q[i].stop_port = NULL;
    p->exec_busy = false;
    p->w0 = (uint16_t)(v & ~QM_MB_BUSY);
    if (!(v & QM_MB_BUSY) || (v & 0xffu) != QM_MB_CMD_STOP_QP || qn >= fn->qp_num ||
        !fn->q[qn].sq.stopping || fn->q[qn].stop_port != NULL)
        return;
    p->exec_busy = true;
    fn->q[qn].stop_port = p;
}

void qm_mb_write(struct qm_access *a, uint32_t off, const uint8_t *data, unsigned size)
{
    struct qm_mb_port *p = &a->fn->mb[a->port];
    uint32_t rel = off - QM_MAILBOX;

    if (p->exec_busy) {
        QM_COUNT(a->fn, mb_ignored);
        QM_GUEST_LOG(a->fn, "mailbox written while busy: ignored%s", "");
        return;
    }
    memcpy(p->stage + rel, data, size);
    if (rel + size == QM_MAILBOX_SIZE)
        qm_mb_execute(a, p);
}

/* Read-back image: w0 (busy/status), queue_num as written, MB_DATA_L/H,
 * then a zero dword. */
void qm_mb_read(struct qm_access *a, uint32_t off, uint8_t *data, unsigned size)
{
    struct qm_mb_port *p = &a->fn->mb[a->port];
    uint32_t rel = off - QM_MAILBOX;
    uint8_t img[QM_MAILBOX_SIZE] = {0};
    uint16_t w0 = p->w0;

    if (p->exec_busy) {
        w0 |= QM_MB_BUSY;
    } else if (rel < 2 && p->delay_reads > 0) {
        w0 |= QM_MB_BUSY;
        p->delay_reads--;
    }
    am_st16(img, w0);
    memcpy(img + 2, p->stage + 2, 2);
    am_st64(img + 4, p->data);
    memcpy(data, img + rel, size);
}
