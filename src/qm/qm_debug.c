/* qm_debug: snapshots for tests and reports (qm_debug.h). */
#include <errno.h>
#include <string.h>

#include "qm/qm_internal.h"

#define QM_LOAD(fn, f) (uint64_t) atomic_load_explicit(&(fn)->st.f, memory_order_relaxed)

int qm_debug_fn_counters(struct qm_dev *dev, unsigned f, struct qm_fn_counters *out)
{
    struct qm_fn *fn;

    if (dev == NULL || out == NULL || f >= dev->nfn)
        return -EINVAL;
    fn = dev->fn[f];
    *out = (struct qm_fn_counters){
        .jobs_done = QM_LOAD(fn, jobs_done),
        .jobs_cancelled = QM_LOAD(fn, jobs_cancelled),
        .jobs_failed = QM_LOAD(fn, jobs_failed),
        .jobs_dma_fault = QM_LOAD(fn, jobs_dma_fault),
        .doorbells = QM_LOAD(fn, doorbells),
        .doorbells_ignored = QM_LOAD(fn, doorbells_ignored),
        .doorbells_held = QM_LOAD(fn, doorbells_held),
        .doorbells_paged = QM_LOAD(fn, doorbells_paged),
        .doorbell_kicks = QM_LOAD(fn, doorbell_kicks),
        .access_errors = QM_LOAD(fn, access_errors),
        .unknown_reads = QM_LOAD(fn, unknown_reads),
        .unknown_writes = QM_LOAD(fn, unknown_writes),
        .ro_writes = QM_LOAD(fn, ro_writes),
        .mb_commands = QM_LOAD(fn, mb_commands),
        .mb_errors = QM_LOAD(fn, mb_errors),
        .mb_ignored = QM_LOAD(fn, mb_ignored),
        .ring_faults = QM_LOAD(fn, ring_faults),
        .cq_full_stalls = QM_LOAD(fn, cq_full_stalls),
        .eqes_posted = QM_LOAD(fn, eqes_posted),
        .eqes_dropped = QM_LOAD(fn, eqes_dropped),
        .aeqes_posted = QM_LOAD(fn, aeqes_posted),
        .aeqes_dropped = QM_LOAD(fn, aeqes_dropped),
        .msi_raised = QM_LOAD(fn, msi_raised),
        .msi_held = QM_LOAD(fn, msi_held),
        .msi_moderated = QM_LOAD(fn, msi_moderated),
        .cache_writebacks = QM_LOAD(fn, cache_writebacks),
        .table_loads = QM_LOAD(fn, table_loads),
        .pauses = QM_LOAD(fn, pauses),
        .resumes = QM_LOAD(fn, resumes),
        .resets = QM_LOAD(fn, resets),
        .cfg_errors = QM_LOAD(fn, cfg_errors),
    };
    return 0;
}

int qm_debug_fn(struct qm_dev *dev, unsigned f, struct qm_fn_debug *out)
{
    struct qm_deferred d = {0};
    struct qm_fn *fn;

    if (dev == NULL || out == NULL || f >= dev->nfn)
        return -EINVAL;
    fn = dev->fn[f];
    qm_fn_lock(fn);
    *out = (struct qm_fn_debug){
        .qp_base = fn->qp_base,
        .qp_num = fn->qp_num,
        .paused = fn->paused,
        .halted = fn->halted,
        .v4_windows = qm_fn_v4(dev),
        .jobs_inflight = fn->jobs_inflight,
        .int_pending = fn->int_pending,
        .eq_valid = fn->eq.valid,
        .aeq_valid = fn->aeq.valid,
        .eq_head = fn->eq.head,
        .eq_tail = fn->eq.tail,
        .eq_depth = fn->eq.depth,
        .aeq_head = fn->aeq.head,
        .aeq_tail = fn->aeq.tail,
        .aeq_depth = fn->aeq.depth,
        .eq_phase = fn->eq.phase,
        .aeq_phase = fn->aeq.phase,
        .eq_broken = fn->eq.broken,
        .aeq_broken = fn->aeq.broken,
        .eq_overflowed = fn->eq.overflowed,
        .fn_mb_busy = fn->mb[QM_PORT_FN].exec_busy,
        .sqc_bt = fn->sqc_bt,
        .cqc_bt = fn->cqc_bt,
    };
    qm_fn_unlock(fn, &d);
    return 0;
}

int qm_debug_queue(struct qm_dev *dev, unsigned f, unsigned qn, struct qm_queue_debug *out)
{
    struct qm_deferred d = {0};
    struct qm_queue *q;
    struct qm_fn *fn;

    if (dev == NULL || out == NULL || f >= dev->nfn || qn >= QM_MAX_QPS_PER_VF)
        return -EINVAL;
    fn = dev->fn[f];
    q = &fn->q[qn];
    qm_fn_lock(fn);
    *out = (struct qm_queue_debug){
        .sq_loaded = q->sq.loaded,
        .cq_loaded = q->cq.loaded,
        .sq_reload_pending = q->sq.reload,
        .cq_reload_pending = q->cq.reload,
        .stopping = q->sq.stopping,
        .stopped = q->sq.stopped,
        .sq_broken = q->sq.broken,
        .cq_broken = q->cq.broken,
        .busy = q->job != NULL,
        .cq_armed = !q->cq.disarmed,
        .cq_phase = q->cq.phase,
        .cq_stalled = q->cq.stalled,
        .cq_overflow_posted = q->cq.overflow_posted,
        .stop_waiting = q->stop_port != NULL,
        .sq_head = q->sq.head,
        .sq_tail = q->sq.tail,
        .sq_depth = q->sq.depth,
        .cq_head = q->cq.head,
        .cq_tail = q->cq.tail,
        .cq_depth = q->cq.depth,
        .cq_num = q->sq.ctx.cq_num,
        .alg_type = (uint8_t)((q->sq.ctx.w13 >> 8) & 0xfu),
    };
    qm_fn_unlock(fn, &d);
    return 0;
}

int qm_debug_set_mailbox_delay(struct qm_dev *dev, unsigned f, unsigned reads)
{
    struct qm_deferred d = {0};
    struct qm_fn *fn;

    if (dev == NULL || f >= dev->nfn)
        return -EINVAL;
    fn = dev->fn[f];
    qm_fn_lock(fn);
    fn->mb_delay_reads = reads;
    qm_fn_unlock(fn, &d);
    return 0;
}
