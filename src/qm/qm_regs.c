/* qm_regs: the register files as data (one table per address space), the
 * one dispatcher that serves every access, and the write hooks.
 *
 * Spaces: LOCAL = function-local registers (VF BAR2 0..0x7fff, PF BAR2
 * 0..0x3fff, and offsets 0..0xfff of a v4 window); WIN = the host-side
 * window registers (window offsets 0x1000..0x1fff, or the VF BAR's upper half
 * in v3 mode); PF = the PF's global registers at 0x100000.
 * Mailbox and doorbells are "trigger" ranges in front of the tables: their
 * bytes are staged and the action runs on the write covering the last byte.
 */
#include <errno.h>
#include <string.h>

#include "common/common.h"
#include "qm/qm_internal.h"

/* ---- hooks: function-local --------------------------------------------- */

bool qm_xeq_source(const struct qm_xeq *x)
{
    return x->valid && x->head != x->tail;
}

static uint32_t qm_rd_aeq_source(struct qm_access *a, const struct qm_reg *r)
{
    (void)r;
    return qm_xeq_source(&a->fn->aeq);
}

static uint32_t qm_rd_eq_source(struct qm_access *a, const struct qm_reg *r)
{
    (void)r;
    return qm_xeq_source(&a->fn->eq);
}

/* Constant per device: the engine's table says what the driver finds. */
static uint32_t qm_rd_engine_cap(struct qm_access *a, const struct qm_reg *r)
{
    return qm_engine_cap_read(a->dev->engine, r->off);
}

/* Unmasking with events pending raises the vector at once. */
static void qm_wr_xeq_mask(struct qm_access *a, const struct qm_reg *r, uint32_t old, uint32_t val)
{
    bool aeq = r->off == QM_AEQ_INT_MASK;

    if ((old & 1u) && !(val & 1u) && qm_xeq_source(aeq ? &a->fn->aeq : &a->fn->eq))
        qm_fn_msi_locked(a->fn, a->d, aeq ? QM_VEC_AEQ : QM_VEC_EQ);
}

/* IFC source of a function: a PF->VF message for a VF; any VF signal for the PF. */
static bool qm_ifc_pending(struct qm_access *a)
{
    const uint32_t *pr = a->dev->pf_regs;

    if (a->fn->idx == 0)
        return pr[QM_PR_IFC_INT_SOURCE_P] != 0 || pr[QM_PR_IFC_INT_SOURCE_P_H] != 0;
    return a->fn->regs[QM_R_IFC_INT_SOURCE_V] & 1u;
}

/* Only the guest's own write is an ack; a host write loaded the value (a
 * restore), which tells the PF nothing. */
static void qm_wr_ifc_source(struct qm_access *a, const struct qm_reg *r, uint32_t old,
                             uint32_t val)
{
    (void)r;
    if (a->port == QM_PORT_FN && a->fn->idx != 0 && (old & 1u) && !(val & 1u))
        a->d->pf_ready_clear = true; /* the VF's ack of a PF message */
}

static void qm_wr_ifc_mask(struct qm_access *a, const struct qm_reg *r, uint32_t old, uint32_t val)
{
    (void)r;
    if ((old & 1u) && !(val & 1u) && qm_ifc_pending(a))
        qm_fn_msi_locked(a->fn, a->d, QM_VEC_IFC);
}

static uint32_t qm_rd_ifc_status(struct qm_access *a, const struct qm_reg *r)
{
    (void)r;
    return qm_ifc_pending(a) && !(a->fn->regs[QM_R_IFC_INT_MASK] & 1u);
}

static void qm_wr_ifc_set(struct qm_access *a, const struct qm_reg *r, uint32_t old, uint32_t val)
{
    (void)r;
    if (a->fn->idx != 0 && !(old & 1u) && (val & 1u))
        a->d->pf_signal = true;
}

static void qm_wr_cache_wb(struct qm_access *a, const struct qm_reg *r, uint32_t old, uint32_t val)
{
    (void)r;
    (void)old;
    if (!(val & 1u))
        return;
    a->fn->regs[QM_R_CACHE_WB_DONE] = 0;
    qm_cache_writeback_locked(a->fn);
    a->fn->regs[QM_R_CACHE_WB_DONE] = 1;
}

/* ---- hooks: host window -------------------------------------------------- */

static struct qm_xeq *qm_win_xeq(struct qm_access *a, const struct qm_reg *r, unsigned *dw,
                                 bool *aeq)
{
    *aeq = r->off >= QM_WIN_AEQC_SHADOW;
    *dw = (r->off - (*aeq ? QM_WIN_AEQC_SHADOW : QM_WIN_EQC_SHADOW)) / 4;
    return *aeq ? &a->fn->aeq : &a->fn->eq;
}

static uint32_t qm_rd_xeqc(struct qm_access *a, const struct qm_reg *r)
{
    struct qm_eqc c;
    uint32_t w[7];
    unsigned dw;
    bool aeq;

    qm_xeq_to_ctx(qm_win_xeq(a, r, &dw, &aeq), &c);
    memcpy(w, &c, sizeof(w));
    return w[dw];
}

/* The shadow is the live context: each dword write forms a new image and
 * loads it when it is a usable context (the restore writes dw0..dw6 in
 * order, so the queue becomes valid with dw6). */
static void qm_wr_xeqc(struct qm_access *a, const struct qm_reg *r, uint32_t old, uint32_t val)
{
    struct qm_eqc c;
    uint32_t w[7];
    unsigned dw;
    bool aeq;
    struct qm_xeq *x = qm_win_xeq(a, r, &dw, &aeq);

    (void)old;
    qm_xeq_to_ctx(x, &c);
    memcpy(w, &c, sizeof(w));
    w[dw] = val;
    memcpy(&c, w, sizeof(w));
    if (qm_xeq_load_locked(a->fn, x, &c, aeq) != 0) {
        x->ctx = c;
        x->valid = false;
    }
}

static uint32_t qm_rd_qp_active(struct qm_access *a, const struct qm_reg *r)
{
    unsigned first = r->off == QM_WIN_QP_ACTIVE_L ? 0 : 32;
    uint32_t v = 0;

    /* A queue is active when either of its contexts is loaded: a CQ fed by
     * another queue's SQ is reloaded (and its re-arm honoured) as well. */
    for (unsigned i = 0; i < 32; i++)
        if (a->fn->q[first + i].sq.loaded || a->fn->q[first + i].cq.loaded)
            v |= 1u << i;
    return v;
}

static uint32_t qm_rd_int_pending(struct qm_access *a, const struct qm_reg *r)
{
    (void)r;
    return a->fn->int_pending;
}

/* Restoring held MSIs: kept while paused, delivered at once otherwise. */
static void qm_wr_int_pending(struct qm_access *a, const struct qm_reg *r, uint32_t old,
                              uint32_t val)
{
    (void)r;
    (void)old;
    a->fn->int_pending = val & ((1u << QM_NUM_VECTORS) - 1);
    if (a->fn->paused)
        return;
    for (unsigned v = 0; v < QM_NUM_VECTORS; v++)
        if (a->fn->int_pending & (1u << v))
            qm_fn_msi_locked(a->fn, a->d, v);
    a->fn->int_pending = 0;
}

static uint32_t qm_rd_pause_status(struct qm_access *a, const struct qm_reg *r)
{
    struct qm_fn *fn = a->fn;
    uint32_t v = 0;

    (void)r;
    if (fn->paused) {
        v |= QM_WIN_PAUSE_PAUSED;
        if (fn->jobs_inflight == 0 && atomic_load(&fn->irq_inflight) == 0)
            v |= QM_WIN_PAUSE_RETIRED;
    }
    return v;
}

static atomic_uint_fast64_t *qm_win_msg(struct qm_access *a, const struct qm_reg *r, bool *high)
{
    bool out = r->off >= QM_WIN_IFC_OUT_MSG_L;

    *high = r->off == QM_WIN_IFC_MSG_H || r->off == QM_WIN_IFC_OUT_MSG_H;
    return out ? &a->fn->ifc_out : &a->fn->ifc_in;
}

static uint32_t qm_rd_ifc_msg(struct qm_access *a, const struct qm_reg *r)
{
    bool high;
    uint64_t v = atomic_load(qm_win_msg(a, r, &high));

    return high ? (uint32_t)(v >> 32) : (uint32_t)v;
}

static void qm_wr_ifc_msg(struct qm_access *a, const struct qm_reg *r, uint32_t old, uint32_t val)
{
    bool high;
    atomic_uint_fast64_t *m = qm_win_msg(a, r, &high);
    uint_fast64_t cur = atomic_load(m), next;

    (void)old;
    do {
        next = high ? (cur & 0xffffffffull) | (uint64_t)val << 32
                    : (cur & ~0xffffffffull) | val;
    } while (!atomic_compare_exchange_weak(m, &cur, next));
}

/* QM_WIN_IFC_SOURCE_V: the function-local IFC_INT_SOURCE_V bit, loaded as
 * written (no ack, no interrupt). */
static uint32_t qm_rd_win_ifc_source(struct qm_access *a, const struct qm_reg *r)
{
    (void)r;
    return a->fn->regs[QM_R_IFC_INT_SOURCE_V];
}

static void qm_wr_win_ifc_source(struct qm_access *a, const struct qm_reg *r, uint32_t old,
                                 uint32_t val)
{
    (void)r;
    (void)old;
    a->fn->regs[QM_R_IFC_INT_SOURCE_V] = val & 1u;
}

static uint32_t qm_rd_db_ignored(struct qm_access *a, const struct qm_reg *r)
{
    (void)r;
    return (uint32_t)atomic_load_explicit(&a->fn->st.doorbells_ignored, memory_order_relaxed);
}

/* Queue state bitmaps: kind and first queue of the dword at r->off. */
static enum qm_qstate qm_win_qstate(const struct qm_reg *r, unsigned *first)
{
    unsigned dw = (r->off - QM_WIN_SQ_STOPPED_L) / 4;

    *first = (dw % 2) * 32;
    return (enum qm_qstate)(dw / 2);
}

static uint32_t qm_rd_qstate(struct qm_access *a, const struct qm_reg *r)
{
    unsigned first;
    enum qm_qstate k = qm_win_qstate(r, &first);
    uint32_t v = 0;

    for (unsigned i = 0; i < 32 && first + i < a->fn->qp_num; i++)
        if (qm_queue_state_get_locked(&a->fn->q[first + i], k))
            v |= 1u << i;
    return v;
}

static void qm_wr_qstate(struct qm_access *a, const struct qm_reg *r, uint32_t old, uint32_t val)
{
    unsigned first;
    enum qm_qstate k = qm_win_qstate(r, &first);

    (void)old;
    for (unsigned i = 0; i < 32 && first + i < a->fn->qp_num; i++)
        qm_queue_state_set_locked(a->fn, a->d, &a->fn->q[first + i], k, (val >> i) & 1u);
}

static uint32_t qm_rd_xeq_state(struct qm_access *a, const struct qm_reg *r)
{
    (void)r;
    return qm_xeq_state_get_locked(a->fn);
}

static void qm_wr_xeq_state(struct qm_access *a, const struct qm_reg *r, uint32_t old, uint32_t val)
{
    (void)r;
    (void)old;
    qm_xeq_state_set_locked(a->fn, a->d, val);
}

/* QM_WIN_QC_*: the context cache through registers (qm_hw.h). */
static struct qm_queue *qm_qc_selected(struct qm_access *a, bool *cq)
{
    uint32_t sel = a->fn->regs[QM_R_WIN_QC_SEL];
    unsigned qn = sel & 0x3fu;

    *cq = sel & QM_WIN_QC_SEL_CQ;
    return qn < a->fn->qp_num ? &a->fn->q[qn] : NULL;
}

static bool qm_qc_loaded(const struct qm_queue *q, bool cq)
{
    return q != NULL && (cq ? q->cq.loaded : q->sq.loaded);
}

static uint32_t qm_rd_qc_sel(struct qm_access *a, const struct qm_reg *r)
{
    bool cq;
    struct qm_queue *q = qm_qc_selected(a, &cq);

    (void)r;
    return a->fn->regs[QM_R_WIN_QC_SEL] | (qm_qc_loaded(q, cq) ? QM_WIN_QC_SEL_LOADED : 0);
}

static void qm_wr_qc_sel(struct qm_access *a, const struct qm_reg *r, uint32_t old, uint32_t val)
{
    (void)old;
    (void)r;
    a->fn->regs[QM_R_WIN_QC_SEL] = val & (0x3fu | QM_WIN_QC_SEL_CQ); /* bit 31 is derived */
    memset(&a->fn->regs[QM_R_WIN_QC_DW0], 0, 8 * sizeof(uint32_t));
}

static uint32_t qm_rd_qc_dw(struct qm_access *a, const struct qm_reg *r)
{
    unsigned dw = (r->off - QM_WIN_QC_DW0) / 4;
    bool cq;
    struct qm_queue *q = qm_qc_selected(a, &cq);
    uint32_t w[8];

    if (!qm_qc_loaded(q, cq))
        return a->fn->regs[QM_R_WIN_QC_DW0 + dw];
    if (cq) {
        struct qm_cqc c;

        qm_cq_to_ctx(q, &c);
        memcpy(w, &c, sizeof(w));
    } else {
        struct qm_sqc c;

        qm_sq_to_ctx(q, &c);
        memcpy(w, &c, sizeof(w));
    }
    return w[dw];
}

/* dw0..dw6 stage; dw7 loads the staged 32 bytes into the selected queue as
 * a mailbox load from memory would (same checks). */
static void qm_wr_qc_dw(struct qm_access *a, const struct qm_reg *r, uint32_t old, uint32_t val)
{
    unsigned dw = (r->off - QM_WIN_QC_DW0) / 4;
    uint32_t *stage = &a->fn->regs[QM_R_WIN_QC_DW0];
    bool cq;
    struct qm_queue *q = qm_qc_selected(a, &cq);
    int rc;

    (void)old;
    stage[dw] = val;
    if (dw != 7)
        return;
    if (q == NULL) {
        QM_COUNT(a->fn, cfg_errors);
        QM_GUEST_LOG(a->fn, "context shadow: queue %u out of range",
                     a->fn->regs[QM_R_WIN_QC_SEL] & 0x3fu);
        return;
    }
    if (cq) {
        struct qm_cqc c;

        memcpy(&c, stage, sizeof(c));
        rc = qm_cq_load_locked(a->fn, q, &c);
        if (rc == 0)
            qm_fn_kick_all_locked(a->fn, a->d);
    } else {
        struct qm_sqc c;

        memcpy(&c, stage, sizeof(c));
        rc = qm_sq_load_locked(a->fn, q, &c);
        if (rc == 0)
            qm_queue_kick_locked(a->fn, a->d, q);
    }
    if (rc != 0) {
        QM_COUNT(a->fn, cfg_errors);
        QM_GUEST_LOG(a->fn, "context shadow: unusable %s image for queue %u", cq ? "CQC" : "SQC",
                     q->qn);
    }
}

/* The function's own mailbox and doorbell staging (qm_hw.h, QM_WIN_FN_*). */
static uint32_t qm_rd_fn_stage(struct qm_access *a, const struct qm_reg *r)
{
    if (r->off >= QM_WIN_FN_DB_SQCQ_L) {
        unsigned i = (r->off - QM_WIN_FN_DB_SQCQ_L) / 4;

        return am_le32(&a->fn->db_stage[QM_PORT_FN][i / 2][4 * (i % 2)]);
    }
    return am_le32(&a->fn->mb[QM_PORT_FN].stage[r->off - QM_WIN_FN_MB_STAGE0]);
}

static void qm_wr_fn_stage(struct qm_access *a, const struct qm_reg *r, uint32_t old, uint32_t val)
{
    (void)old;
    if (r->off >= QM_WIN_FN_DB_SQCQ_L) {
        unsigned i = (r->off - QM_WIN_FN_DB_SQCQ_L) / 4;

        am_st32(&a->fn->db_stage[QM_PORT_FN][i / 2][4 * (i % 2)], val);
        return;
    }
    am_st32(&a->fn->mb[QM_PORT_FN].stage[r->off - QM_WIN_FN_MB_STAGE0], val);
}

static uint32_t qm_rd_fn_mb(struct qm_access *a, const struct qm_reg *r)
{
    uint64_t data = a->fn->mb[QM_PORT_FN].data;

    if (r->off == QM_WIN_FN_MB_W0)
        return qm_mb_fn_w0_get_locked(a->fn);
    return r->off == QM_WIN_FN_MB_DATA_L ? (uint32_t)data : (uint32_t)(data >> 32);
}

static void qm_wr_fn_mb(struct qm_access *a, const struct qm_reg *r, uint32_t old, uint32_t val)
{
    uint64_t *data = &a->fn->mb[QM_PORT_FN].data;

    (void)old;
    if (r->off == QM_WIN_FN_MB_W0)
        qm_mb_fn_w0_set_locked(a->fn, val);
    else if (r->off == QM_WIN_FN_MB_DATA_L)
        *data = (*data & ~0xffffffffull) | val;
    else
        *data = (*data & 0xffffffffull) | (uint64_t)val << 32;
}

/* ---- hooks: PF globals ------------------------------------------------- */

bool qm_vft_sqc_valid(const struct qm_dev *dev, uint64_t w)
{
    uint64_t base = (w >> QM_VFT_BASE_SHIFT) & QM_VFT_BASE_MASK;
    uint64_t num = ((w >> QM_VFT_NUM_SHIFT) & QM_VFT_NUM_MASK) + 1;

    if (!(w & (1ull << QM_VFT_VALID_SHIFT)))
        return true; /* clearing a function's range is always allowed */
    return num <= QM_MAX_QPS_PER_VF && base + num <= dev->total_qps;
}

/* VFT_CFG_OP_ENABLE: one VFT read or write, complete before RDY is read. */
static void qm_wr_vft_op(struct qm_access *a, const struct qm_reg *r, uint32_t old, uint32_t val)
{
    struct qm_dev *dev = a->dev;
    uint32_t *pr = dev->pf_regs;
    uint32_t type = pr[QM_PR_VFT_CFG_TYPE];
    uint32_t f = pr[QM_PR_VFT_CFG];
    uint64_t data = pr[QM_PR_VFT_CFG_DATA_L] | (uint64_t)pr[QM_PR_VFT_CFG_DATA_H] << 32;
    uint64_t *slot;

    (void)r;
    (void)old;
    if (!(val & 1u))
        return;
    pr[QM_PR_VFT_CFG_RDY] = 1;
    if (type == QM_PF_VFT_TYPE_SHAPER)
        f &= 0x3fu; /* the shaper form carries the queue base above bit 6 */
    if (f >= dev->nfn || type > QM_PF_VFT_TYPE_SHAPER) {
        QM_COUNT(a->fn, cfg_errors);
        QM_GUEST_LOG(a->fn, "VFT op refused: function %u, type %u", f, type);
        return;
    }
    slot = type == QM_PF_VFT_TYPE_SQC   ? &dev->vft_sqc[f]
           : type == QM_PF_VFT_TYPE_CQC ? &dev->vft_cqc[f]
                                        : &dev->vft_shaper[f];
    if (pr[QM_PR_VFT_CFG_OP_WR] & 1u) {
        pr[QM_PR_VFT_CFG_DATA_L] = (uint32_t)*slot;
        pr[QM_PR_VFT_CFG_DATA_H] = (uint32_t)(*slot >> 32);
        return;
    }
    if (type == QM_PF_VFT_TYPE_SQC && !qm_vft_sqc_valid(dev, data)) {
        QM_COUNT(a->fn, cfg_errors);
        QM_GUEST_LOG(a->fn, "VFT of function %u refused: 0x%llx", f, (unsigned long long)data);
        return;
    }
    *slot = data;
    if (type == QM_PF_VFT_TYPE_SQC)
        a->d->vft_changed |= 1ull << f;
}

/* IFC_INT_SET_P: deliver the PF's message(s) to the VFs IFC_INT_CFG names. */
static void qm_wr_ifc_set_p(struct qm_access *a, const struct qm_reg *r, uint32_t old,
                            uint32_t val)
{
    struct qm_dev *dev = a->dev;
    uint32_t *pr = dev->pf_regs;
    uint32_t target = pr[QM_PR_IFC_INT_CFG] & QM_PF_IFC_SEND_ALL_VFS;
    uint64_t mask, ready;

    (void)r;
    (void)old;
    pr[QM_PR_IFC_INT_SET_P] = 0; /* a trigger, not a state */
    if (!(val & 1u))
        return;
    if (target == QM_PF_IFC_SEND_ALL_VFS) {
        mask = ((dev->nfn == 64 ? 0 : 1ull << dev->nfn) - 1) & ~1ull;
    } else if (target >= 1 && target < dev->nfn) {
        mask = 1ull << target;
    } else {
        QM_COUNT(a->fn, cfg_errors);
        return;
    }
    ready = pr[QM_PR_IFC_READY_STATUS] | (uint64_t)pr[QM_PR_IFC_READY_STATUS_H] << 32;
    ready |= mask;
    pr[QM_PR_IFC_READY_STATUS] = (uint32_t)ready;
    pr[QM_PR_IFC_READY_STATUS_H] = (uint32_t)(ready >> 32);
    a->d->vf_notify |= mask;
}

static void qm_wr_ifc_source_p(struct qm_access *a, const struct qm_reg *r, uint32_t old,
                               uint32_t val)
{
    uint64_t cleared = old & ~val;

    if (r->off == QM_PF_IFC_INT_SOURCE_P_H)
        cleared <<= 32;
    a->d->vf_ack |= cleared & ~1ull;
}

static void qm_wr_mig_region_sel(struct qm_access *a, const struct qm_reg *r, uint32_t old,
                                 uint32_t val)
{
    (void)r;
    (void)old;
    if (a->dev->cfg.revision != QM_REV_V4)
        a->dev->pf_regs[QM_PR_MIG_REGION_SEL] = 0; /* v3 silicon has no windows */
    atomic_store(&a->dev->v4_windows,
                 a->dev->cfg.revision == QM_REV_V4 && (val & 1u));
}

/* ---- the tables ------------------------------------------------------- */

#define QM_RO_REG(o, n, v) {(o), (n), QM_RO, (v), 0, NULL, NULL}
/* The engine's capability registers read through its table (qm_engine.h). */
#define QM_ENG_CAP_REG(i)                                                                          \
    [QM_R_ENG_CAP0 + (i)] = {QM_ENGINE_CAP_BASE + 4u * (i), "ENGINE_CAP" #i, QM_RO, 0, 0,         \
                             qm_rd_engine_cap, NULL}
_Static_assert(QM_ENGINE_CAP_BASE + 4u * QM_ENGINE_CAP_COUNT <= 0x4000u,
               "engine capabilities are function-local registers");

/* Capability values: the v3 column of the Linux driver's tables
 * (docs/driver-compat.md). */
#define QM_CAP_VERSION_V3 (0x01u | 1u << 8 | 1u << 9 | 1u << 11 | 1u << 14)

static const struct qm_reg qm_local_regs[QM_R_LOCAL_COUNT] = {
    [QM_R_AEQ_INT_SOURCE] = {QM_AEQ_INT_SOURCE, "AEQ_INT_SOURCE", QM_RO, 0, 0, qm_rd_aeq_source, NULL},
    [QM_R_AEQ_INT_MASK] = {QM_AEQ_INT_MASK, "AEQ_INT_MASK", QM_RW, 1, 1, NULL, qm_wr_xeq_mask},
    [QM_R_EQ_INT_SOURCE] = {QM_EQ_INT_SOURCE, "EQ_INT_SOURCE", QM_RO, 0, 0, qm_rd_eq_source, NULL},
    [QM_R_EQ_INT_MASK] = {QM_EQ_INT_MASK, "EQ_INT_MASK", QM_RW, 1, 1, NULL, qm_wr_xeq_mask},
    [QM_R_IFC_INT_SOURCE_V] = {QM_IFC_INT_SOURCE_V, "IFC_INT_SOURCE_V", QM_W1C_GUEST, 0, 1, NULL,
                               qm_wr_ifc_source},
    [QM_R_IFC_INT_MASK] = {QM_IFC_INT_MASK, "IFC_INT_MASK", QM_RW, 1, 1, NULL, qm_wr_ifc_mask},
    [QM_R_IFC_INT_STATUS] = {QM_IFC_INT_STATUS, "IFC_INT_STATUS", QM_RO, 0, 0, qm_rd_ifc_status, NULL},
    [QM_R_IFC_INT_SET_V] = {QM_IFC_INT_SET_V, "IFC_INT_SET_V", QM_RW, 0, 1, NULL, qm_wr_ifc_set},
    /* bit0: doorbell isolation, set from the device config (qm_db_pages.c)
     * and read-only; the restore's write of the saved value is accepted. */
    [QM_R_QUE_ISO_CFG] = {QM_QUE_ISO_CFG, "QUE_ISO_CFG", QM_RW, 0, 0, NULL, NULL},
    [QM_R_PAGE_SIZE] = {QM_PAGE_SIZE, "PAGE_SIZE", QM_RW, 0, 3, NULL, NULL},
    [QM_R_VF_STATE] = {QM_VF_STATE, "VF_STATE", QM_RW, QM_VF_STATE_NOT_READY, 1, NULL, NULL},
    [QM_R_CACHE_WB_START] = {QM_CACHE_WB_START, "CACHE_WB_START", QM_WO, 0, 1, NULL, qm_wr_cache_wb},
    [QM_R_CACHE_WB_DONE] = QM_RO_REG(QM_CACHE_WB_DONE, "CACHE_WB_DONE", 0),
    [QM_R_CAP_VERSION] = QM_RO_REG(QM_CAP_VERSION, "CAP_VERSION", QM_CAP_VERSION_V3),
    [QM_R_CAP_EQ_AEQ_DEPTH] = QM_RO_REG(QM_CAP_EQ_AEQ_DEPTH, "CAP_EQ_AEQ_DEPTH",
                                        QM_AEQ_DEPTH << 16 | QM_EQ_DEPTH),
    [QM_R_CAP_SQ_CQ_DEPTH] = QM_RO_REG(QM_CAP_SQ_CQ_DEPTH, "CAP_SQ_CQ_DEPTH",
                                       QM_CQ_DEPTH << 16 | QM_SQ_DEPTH),
    [QM_R_CAP_EQ_IRQ_TYPE] = QM_RO_REG(QM_CAP_EQ_IRQ_TYPE, "CAP_EQ_IRQ_TYPE", 0x10000 | QM_VEC_EQ),
    [QM_R_CAP_AEQ_IRQ_TYPE] = QM_RO_REG(QM_CAP_AEQ_IRQ_TYPE, "CAP_AEQ_IRQ_TYPE", 0x10000 | QM_VEC_AEQ),
    [QM_R_CAP_ABN_IRQ_TYPE] = QM_RO_REG(QM_CAP_ABN_IRQ_TYPE, "CAP_ABN_IRQ_TYPE", 0x10000 | QM_VEC_RSVD),
    [QM_R_CAP_PF2VF_IRQ_TYPE] = QM_RO_REG(QM_CAP_PF2VF_IRQ_TYPE, "CAP_PF2VF_IRQ_TYPE",
                                          0x10000 | QM_VEC_IFC),
    [QM_R_CAP_IRQ_NUM] = QM_RO_REG(QM_CAP_IRQ_NUM, "CAP_IRQ_NUM", 0x00040003),
    QM_ENG_CAP_REG(0), QM_ENG_CAP_REG(1), QM_ENG_CAP_REG(2), QM_ENG_CAP_REG(3),
    QM_ENG_CAP_REG(4), QM_ENG_CAP_REG(5), QM_ENG_CAP_REG(6), QM_ENG_CAP_REG(7),
    QM_ENG_CAP_REG(8), QM_ENG_CAP_REG(9), QM_ENG_CAP_REG(10), QM_ENG_CAP_REG(11),
    QM_ENG_CAP_REG(12), QM_ENG_CAP_REG(13), QM_ENG_CAP_REG(14), QM_ENG_CAP_REG(15),
    QM_ENG_CAP_REG(16), QM_ENG_CAP_REG(17), QM_ENG_CAP_REG(18), QM_ENG_CAP_REG(19),
    QM_ENG_CAP_REG(20), QM_ENG_CAP_REG(21), QM_ENG_CAP_REG(22),
};

#define QM_XEQC_REG(base, i, n) {(base) + 4 * (i), n, QM_RW, 0, 0xffffffffu, qm_rd_xeqc, qm_wr_xeqc}
/* Two dwords per state kind, queues 0..31 then 32..63. */
#define QM_QSTATE_REG(k, n, acc)                                                                   \
    {QM_WIN_SQ_STOPPED_L + 8 * (k), n "_L", acc, 0, 0xffffffffu, qm_rd_qstate, qm_wr_qstate},      \
        {QM_WIN_SQ_STOPPED_L + 8 * (k) + 4, n "_H", acc, 0, 0xffffffffu, qm_rd_qstate, qm_wr_qstate}
#define QM_QC_REG(i, n) {QM_WIN_QC_DW(i), n, QM_RW, 0, 0xffffffffu, qm_rd_qc_dw, qm_wr_qc_dw}
#define QM_FN_STAGE_REG(o, n) {(o), n, QM_RW, 0, 0xffffffffu, qm_rd_fn_stage, qm_wr_fn_stage}

static const struct qm_reg qm_win_regs[QM_R_FN_COUNT - QM_R_LOCAL_COUNT] = {
    QM_XEQC_REG(QM_WIN_EQC_SHADOW, 0, "WIN_EQC_DW0"),
    QM_XEQC_REG(QM_WIN_EQC_SHADOW, 1, "WIN_EQC_DW1"),
    QM_XEQC_REG(QM_WIN_EQC_SHADOW, 2, "WIN_EQC_DW2"),
    QM_XEQC_REG(QM_WIN_EQC_SHADOW, 3, "WIN_EQC_DW3"),
    QM_XEQC_REG(QM_WIN_EQC_SHADOW, 4, "WIN_EQC_DW4"),
    QM_XEQC_REG(QM_WIN_EQC_SHADOW, 5, "WIN_EQC_DW5"),
    QM_XEQC_REG(QM_WIN_EQC_SHADOW, 6, "WIN_EQC_DW6"),
    QM_XEQC_REG(QM_WIN_AEQC_SHADOW, 0, "WIN_AEQC_DW0"),
    QM_XEQC_REG(QM_WIN_AEQC_SHADOW, 1, "WIN_AEQC_DW1"),
    QM_XEQC_REG(QM_WIN_AEQC_SHADOW, 2, "WIN_AEQC_DW2"),
    QM_XEQC_REG(QM_WIN_AEQC_SHADOW, 3, "WIN_AEQC_DW3"),
    QM_XEQC_REG(QM_WIN_AEQC_SHADOW, 4, "WIN_AEQC_DW4"),
    QM_XEQC_REG(QM_WIN_AEQC_SHADOW, 5, "WIN_AEQC_DW5"),
    QM_XEQC_REG(QM_WIN_AEQC_SHADOW, 6, "WIN_AEQC_DW6"),
    {QM_WIN_QP_ACTIVE_L, "WIN_QP_ACTIVE_L", QM_RO, 0, 0, qm_rd_qp_active, NULL},
    {QM_WIN_QP_ACTIVE_H, "WIN_QP_ACTIVE_H", QM_RO, 0, 0, qm_rd_qp_active, NULL},
    {QM_WIN_INT_PENDING, "WIN_INT_PENDING", QM_RW, 0, 0xf, qm_rd_int_pending, qm_wr_int_pending},
    {QM_WIN_PAUSE_STATUS, "WIN_PAUSE_STATUS", QM_RO, 0, 0, qm_rd_pause_status, NULL},
    {QM_WIN_IFC_MSG_L, "WIN_IFC_MSG_L", QM_RW, 0, 0xffffffffu, qm_rd_ifc_msg, qm_wr_ifc_msg},
    {QM_WIN_IFC_MSG_H, "WIN_IFC_MSG_H", QM_RW, 0, 0xffffffffu, qm_rd_ifc_msg, qm_wr_ifc_msg},
    {QM_WIN_DB_IGNORED, "WIN_DB_IGNORED", QM_RO, 0, 0, qm_rd_db_ignored, NULL},
    {QM_WIN_IFC_OUT_MSG_L, "WIN_IFC_OUT_MSG_L", QM_RW, 0, 0xffffffffu, qm_rd_ifc_msg, qm_wr_ifc_msg},
    {QM_WIN_IFC_OUT_MSG_H, "WIN_IFC_OUT_MSG_H", QM_RW, 0, 0xffffffffu, qm_rd_ifc_msg, qm_wr_ifc_msg},
    {QM_WIN_IFC_SOURCE_V, "WIN_IFC_SOURCE_V", QM_RW, 0, 1, qm_rd_win_ifc_source, qm_wr_win_ifc_source},
    QM_QSTATE_REG(QM_QS_SQ_STOPPED, "WIN_SQ_STOPPED", QM_RW),
    QM_QSTATE_REG(QM_QS_SQ_STOPPING, "WIN_SQ_STOPPING", QM_RW),
    QM_QSTATE_REG(QM_QS_SQ_BROKEN, "WIN_SQ_BROKEN", QM_RW),
    QM_QSTATE_REG(QM_QS_CQ_BROKEN, "WIN_CQ_BROKEN", QM_RW),
    QM_QSTATE_REG(QM_QS_CQ_DISARMED, "WIN_CQ_DISARMED", QM_RW),
    QM_QSTATE_REG(QM_QS_CQ_OVERFLOW, "WIN_CQ_OVERFLOW", QM_RW),
    QM_QSTATE_REG(QM_QS_CQ_STALLED, "WIN_CQ_STALLED", QM_RO),
    {QM_WIN_XEQ_STATE, "WIN_XEQ_STATE", QM_RW, 0, QM_XEQ_ST_MASK, qm_rd_xeq_state, qm_wr_xeq_state},
    QM_RO_REG(QM_WIN_SQC_WB_FAIL_L, "WIN_SQC_WB_FAIL_L", 0),
    QM_RO_REG(QM_WIN_SQC_WB_FAIL_H, "WIN_SQC_WB_FAIL_H", 0),
    QM_RO_REG(QM_WIN_CQC_WB_FAIL_L, "WIN_CQC_WB_FAIL_L", 0),
    QM_RO_REG(QM_WIN_CQC_WB_FAIL_H, "WIN_CQC_WB_FAIL_H", 0),
    {QM_WIN_QC_SEL, "WIN_QC_SEL", QM_RW, 0, 0x3fu | QM_WIN_QC_SEL_CQ, qm_rd_qc_sel, qm_wr_qc_sel},
    QM_QC_REG(0, "WIN_QC_DW0"), QM_QC_REG(1, "WIN_QC_DW1"), QM_QC_REG(2, "WIN_QC_DW2"),
    QM_QC_REG(3, "WIN_QC_DW3"), QM_QC_REG(4, "WIN_QC_DW4"), QM_QC_REG(5, "WIN_QC_DW5"),
    QM_QC_REG(6, "WIN_QC_DW6"), QM_QC_REG(7, "WIN_QC_DW7"),
    QM_FN_STAGE_REG(QM_WIN_FN_MB_STAGE0, "WIN_FN_MB_STAGE0"),
    QM_FN_STAGE_REG(QM_WIN_FN_MB_STAGE0 + 4, "WIN_FN_MB_STAGE1"),
    QM_FN_STAGE_REG(QM_WIN_FN_MB_STAGE0 + 8, "WIN_FN_MB_STAGE2"),
    QM_FN_STAGE_REG(QM_WIN_FN_MB_STAGE0 + 12, "WIN_FN_MB_STAGE3"),
    {QM_WIN_FN_MB_W0, "WIN_FN_MB_W0", QM_RW, 0, 0xffffu, qm_rd_fn_mb, qm_wr_fn_mb},
    {QM_WIN_FN_MB_DATA_L, "WIN_FN_MB_DATA_L", QM_RW, 0, 0xffffffffu, qm_rd_fn_mb, qm_wr_fn_mb},
    {QM_WIN_FN_MB_DATA_H, "WIN_FN_MB_DATA_H", QM_RW, 0, 0xffffffffu, qm_rd_fn_mb, qm_wr_fn_mb},
    QM_FN_STAGE_REG(QM_WIN_FN_DB_SQCQ_L, "WIN_FN_DB_SQCQ_L"),
    QM_FN_STAGE_REG(QM_WIN_FN_DB_SQCQ_H, "WIN_FN_DB_SQCQ_H"),
    QM_FN_STAGE_REG(QM_WIN_FN_DB_EQAEQ_L, "WIN_FN_DB_EQAEQ_L"),
    QM_FN_STAGE_REG(QM_WIN_FN_DB_EQAEQ_H, "WIN_FN_DB_EQAEQ_H"),
};

static const struct qm_reg qm_pf_regs[QM_PR_COUNT] = {
    [QM_PR_VFT_CFG_OP_ENABLE] = {QM_PF_VFT_CFG_OP_ENABLE, "VFT_CFG_OP_ENABLE", QM_WO, 0, 1, NULL, qm_wr_vft_op},
    [QM_PR_VFT_CFG_OP_WR] = {QM_PF_VFT_CFG_OP_WR, "VFT_CFG_OP_WR", QM_RW, 0, 1, NULL, NULL},
    [QM_PR_VFT_CFG_TYPE] = {QM_PF_VFT_CFG_TYPE, "VFT_CFG_TYPE", QM_RW, 0, 3, NULL, NULL},
    [QM_PR_VFT_CFG] = {QM_PF_VFT_CFG, "VFT_CFG", QM_RW, 0, 0xffffffffu, NULL, NULL},
    [QM_PR_VFT_CFG_DATA_L] = {QM_PF_VFT_CFG_DATA_L, "VFT_CFG_DATA_L", QM_RW, 0, 0xffffffffu, NULL, NULL},
    [QM_PR_VFT_CFG_DATA_H] = {QM_PF_VFT_CFG_DATA_H, "VFT_CFG_DATA_H", QM_RW, 0, 0xffffffffu, NULL, NULL},
    [QM_PR_VFT_CFG_RDY] = {QM_PF_VFT_CFG_RDY, "VFT_CFG_RDY", QM_RW, 1, 1, NULL, NULL},
    [QM_PR_IFC_READY_STATUS] = QM_RO_REG(QM_PF_IFC_READY_STATUS, "IFC_READY_STATUS", 0),
    [QM_PR_IFC_READY_STATUS_H] = QM_RO_REG(QM_PF_IFC_READY_STATUS_H, "IFC_READY_STATUS_H", 0),
    [QM_PR_IFC_INT_SET_P] = {QM_PF_IFC_INT_SET_P, "IFC_INT_SET_P", QM_RW, 0, 1, NULL, qm_wr_ifc_set_p},
    [QM_PR_IFC_INT_CFG] = {QM_PF_IFC_INT_CFG, "IFC_INT_CFG", QM_RW, 0, 0x7f, NULL, NULL},
    [QM_PR_IFC_INT_SOURCE_P] = {QM_PF_IFC_INT_SOURCE_P, "IFC_INT_SOURCE_P", QM_W1C, 0, 0xffffffffu, NULL,
                                qm_wr_ifc_source_p},
    [QM_PR_IFC_INT_SOURCE_P_H] = {QM_PF_IFC_INT_SOURCE_P_H, "IFC_INT_SOURCE_P_H", QM_W1C, 0, 0xffffffffu,
                                  NULL, qm_wr_ifc_source_p},
    [QM_PR_MIG_REGION_SEL] = {QM_PF_MIG_REGION_SEL, "MIG_REGION_SEL", QM_RW, 0, 1, NULL, qm_wr_mig_region_sel},
};

const struct qm_reg_table qm_local_table = {qm_local_regs, QM_R_LOCAL_COUNT, 0};
const struct qm_reg_table qm_win_table = {qm_win_regs, QM_R_FN_COUNT - QM_R_LOCAL_COUNT,
                                          QM_R_LOCAL_COUNT};
const struct qm_reg_table qm_pf_table = {qm_pf_regs, QM_PR_COUNT, 0};

/* The tables are searched by bisection: offsets must ascend, be dword
 * aligned and every slot filled. */
static int qm_regs_check_table(const struct qm_reg_table *t)
{
    for (unsigned i = 0; i < t->count; i++) {
        if (t->regs[i].name == NULL || t->regs[i].off % 4 != 0 ||
            (i > 0 && t->regs[i].off <= t->regs[i - 1].off)) {
            am_log(AM_LOG_ERR, QM_LOG, "register table broken at entry %u", i);
            return -EINVAL;
        }
    }
    return 0;
}

int qm_regs_check_tables(void)
{
    int r = qm_regs_check_table(&qm_local_table);

    if (r == 0)
        r = qm_regs_check_table(&qm_win_table);
    if (r == 0)
        r = qm_regs_check_table(&qm_pf_table);
    return r;
}

void qm_regs_reset(uint32_t *storage, const struct qm_reg_table *t)
{
    for (unsigned i = 0; i < t->count; i++)
        storage[t->first + i] = t->regs[i].reset;
}

static const struct qm_reg *qm_reg_find(const struct qm_reg_table *t, uint32_t off)
{
    unsigned lo = 0, hi = t->count;

    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;

        if (t->regs[mid].off == off)
            return &t->regs[mid];
        if (t->regs[mid].off < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *qm_debug_reg_name(uint32_t off)
{
    const struct qm_reg *r = qm_reg_find(&qm_local_table, off & ~3u);

    return r ? r->name : "";
}

/* ---- trigger ranges: mailbox and doorbells ------------------------------ */

enum qm_trig_kind { QM_TRIG_MB, QM_TRIG_DB_SQCQ, QM_TRIG_DB_EQAEQ };

struct qm_trigger {
    uint32_t off, len;
    enum qm_trig_kind kind;
};

static const struct qm_trigger qm_local_triggers[] = {
    {QM_MAILBOX, QM_MAILBOX_SIZE, QM_TRIG_MB},
    {QM_DB_SQCQ, 8, QM_TRIG_DB_SQCQ},
    {QM_DB_EQAEQ, 8, QM_TRIG_DB_EQAEQ},
};

static const struct qm_trigger qm_win_triggers[] = {
    {QM_WIN_DB_SQCQ, 8, QM_TRIG_DB_SQCQ},
    {QM_WIN_DB_EQAEQ, 8, QM_TRIG_DB_EQAEQ},
};

static const struct qm_trigger *qm_trigger_find(enum qm_space sp, uint32_t off)
{
    const struct qm_trigger *t = sp == QM_SPACE_LOCAL ? qm_local_triggers : qm_win_triggers;
    size_t n = sp == QM_SPACE_LOCAL ? AM_ARRAY_SIZE(qm_local_triggers)
               : sp == QM_SPACE_WIN ? AM_ARRAY_SIZE(qm_win_triggers)
                                    : 0;

    /* Accesses are naturally aligned and at most 16 bytes (only at the
     * mailbox), so one that starts in a range lies wholly inside it. */
    for (size_t i = 0; i < n; i++)
        if (off >= t[i].off && off < t[i].off + t[i].len)
            return &t[i];
    return NULL;
}

static void qm_trigger_write(struct qm_access *a, const struct qm_trigger *t, uint32_t off,
                             const uint8_t *data, unsigned size)
{
    uint8_t *stage;

    if (t->kind == QM_TRIG_MB) {
        qm_mb_write(a, off, data, size);
        return;
    }
    stage = a->fn->db_stage[a->port][t->kind == QM_TRIG_DB_EQAEQ];
    memcpy(stage + (off - t->off), data, size);
    if (off + size == t->off + t->len)
        qm_db_execute(a, am_le64(stage), t->kind == QM_TRIG_DB_EQAEQ);
}

/* ---- the dispatcher ----------------------------------------------------- */

static const struct qm_reg_table *qm_space_table(enum qm_space sp)
{
    return sp == QM_SPACE_LOCAL ? &qm_local_table : sp == QM_SPACE_WIN ? &qm_win_table : &qm_pf_table;
}

static uint32_t *qm_space_storage(struct qm_access *a, enum qm_space sp)
{
    return sp == QM_SPACE_PF ? a->dev->pf_regs : a->fn->regs;
}

static uint32_t qm_reg_value(struct qm_access *a, const struct qm_reg_table *t, uint32_t *storage,
                             const struct qm_reg *r)
{
    return r->read ? r->read(a, r) : storage[t->first + (unsigned)(r - t->regs)];
}

void qm_space_read(struct qm_access *a, enum qm_space sp, uint32_t off, uint8_t *data,
                   unsigned size)
{
    const struct qm_trigger *trig = qm_trigger_find(sp, off);
    const struct qm_reg_table *t = qm_space_table(sp);
    uint32_t *storage = qm_space_storage(a, sp);
    bool unknown = false;

    if (trig) {
        if (trig->kind == QM_TRIG_MB)
            qm_mb_read(a, off, data, size);
        else
            memset(data, 0, size); /* doorbells read as zero */
        return;
    }
    for (unsigned done = 0; done < size;) {
        uint32_t word = (off + done) & ~3u, boff = (off + done) & 3u;
        unsigned n = AM_MIN(4 - boff, size - done);
        const struct qm_reg *r = qm_reg_find(t, word);
        uint32_t v = 0;

        if (r)
            v = qm_reg_value(a, t, storage, r);
        else
            unknown = true;
        for (unsigned i = 0; i < n; i++)
            data[done + i] = (uint8_t)(v >> (8 * (boff + i)));
        done += n;
    }
    if (unknown)
        QM_COUNT(a->fn, unknown_reads);
}

static void qm_reg_write(struct qm_access *a, const struct qm_reg_table *t, uint32_t *storage,
                         const struct qm_reg *r, uint32_t val, uint32_t bytemask)
{
    uint32_t old = qm_reg_value(a, t, storage, r);
    uint32_t m = r->wmask & bytemask;
    uint32_t nv;

    switch (r->access) {
    case QM_RO:
        QM_COUNT(a->fn, ro_writes);
        QM_GUEST_LOG(a->fn, "write to read-only %s ignored", r->name);
        return;
    case QM_RW:
        nv = (old & ~m) | (val & m);
        break;
    case QM_W1C:
        nv = old & ~(val & m);
        break;
    case QM_W1C_GUEST:
        nv = a->port == QM_PORT_HOST ? (old & ~m) | (val & m) : old & ~(val & m);
        break;
    case QM_WO:
    default:
        nv = val & m;
        break;
    }
    if (r->access != QM_WO && r->read == NULL)
        storage[t->first + (unsigned)(r - t->regs)] = nv;
    if (r->write)
        r->write(a, r, old, nv);
}

void qm_space_write(struct qm_access *a, enum qm_space sp, uint32_t off, const uint8_t *data,
                    unsigned size)
{
    const struct qm_trigger *trig = qm_trigger_find(sp, off);
    const struct qm_reg_table *t = qm_space_table(sp);
    uint32_t *storage = qm_space_storage(a, sp);
    bool unknown = false;

    if (trig) {
        qm_trigger_write(a, trig, off, data, size);
        return;
    }
    for (unsigned done = 0; done < size;) {
        uint32_t word = (off + done) & ~3u, boff = (off + done) & 3u;
        unsigned n = AM_MIN(4 - boff, size - done);
        const struct qm_reg *r = qm_reg_find(t, word);
        uint32_t v = 0, bm = 0;

        for (unsigned i = 0; i < n; i++) {
            v |= (uint32_t)data[done + i] << (8 * (boff + i));
            bm |= 0xffu << (8 * (boff + i));
        }
        if (r)
            qm_reg_write(a, t, storage, r, v, bm);
        else
            unknown = true;
        done += n;
    }
    if (unknown) {
        QM_COUNT(a->fn, unknown_writes);
        QM_GUEST_LOG(a->fn, "write of %u bytes to unlisted offset 0x%x ignored", size, off);
    }
}

/* ---- cross-function effects (run from qm_fn_unlock, no lock held) -------- */

void qm_pf_vft_apply(struct qm_dev *dev, unsigned f)
{
    struct qm_fn *pf = dev->fn[0], *fn = dev->fn[f];
    struct qm_deferred d = {0};
    uint64_t w;

    qm_fn_lock(pf);
    w = dev->vft_sqc[f];
    qm_fn_unlock(pf, &d);

    qm_fn_lock(fn);
    fn->vft_word = w;
    if (w & (1ull << QM_VFT_VALID_SHIFT)) {
        fn->qp_base = (uint16_t)((w >> QM_VFT_BASE_SHIFT) & QM_VFT_BASE_MASK);
        fn->qp_num = (uint16_t)(((w >> QM_VFT_NUM_SHIFT) & QM_VFT_NUM_MASK) + 1);
    } else {
        fn->qp_base = 0;
        fn->qp_num = 0;
    }
    for (unsigned i = fn->qp_num; i < QM_MAX_QPS_PER_VF; i++)
        qm_queue_invalidate_locked(fn, &fn->q[i], true, true);
    qm_fn_unlock(fn, &d);
}

/* A VF raised IFC_INT_SET_V: the PF sees its bit in IFC_INT_SOURCE_P. */
void qm_pf_ifc_signal(struct qm_dev *dev, unsigned vf)
{
    struct qm_fn *pf = dev->fn[0];
    struct qm_deferred d = {0};
    uint32_t *pr = dev->pf_regs;

    qm_fn_lock(pf);
    if (vf < 32)
        pr[QM_PR_IFC_INT_SOURCE_P] |= 1u << vf;
    else
        pr[QM_PR_IFC_INT_SOURCE_P_H] |= 1u << (vf - 32);
    if (!(pf->regs[QM_R_IFC_INT_MASK] & 1u))
        qm_fn_msi_locked(pf, &d, QM_VEC_IFC);
    qm_fn_unlock(pf, &d);
}

void qm_pf_ifc_ready_clear(struct qm_dev *dev, unsigned vf)
{
    struct qm_fn *pf = dev->fn[0];
    struct qm_deferred d = {0};
    uint32_t *pr = dev->pf_regs;

    qm_fn_lock(pf);
    if (vf < 32)
        pr[QM_PR_IFC_READY_STATUS] &= ~(1u << vf);
    else
        pr[QM_PR_IFC_READY_STATUS_H] &= ~(1u << (vf - 32));
    qm_fn_unlock(pf, &d);
}

/* The PF triggered a message to this VF. */
void qm_vf_ifc_notify(struct qm_dev *dev, unsigned vf)
{
    struct qm_fn *fn = dev->fn[vf];
    struct qm_deferred d = {0};

    qm_fn_lock(fn);
    fn->regs[QM_R_IFC_INT_SOURCE_V] |= 1u;
    if (!(fn->regs[QM_R_IFC_INT_MASK] & 1u))
        qm_fn_msi_locked(fn, &d, QM_VEC_IFC);
    qm_fn_unlock(fn, &d);
}

/* The PF cleared this VF's bit in IFC_INT_SOURCE_P: the VF's signal is acked. */
void qm_vf_ifc_ack(struct qm_dev *dev, unsigned vf)
{
    struct qm_fn *fn = dev->fn[vf];
    struct qm_deferred d = {0};

    qm_fn_lock(fn);
    fn->regs[QM_R_IFC_INT_SET_V] = 0;
    qm_fn_unlock(fn, &d);
}
