/* mig: the VFIO v2 migration driver of one VF (see mig.h).
 *
 * Arcs are implemented with register accesses through struct mig_hw only.
 * The device invariant behind them: the function is paused (PAUSE_QM) in
 * every state except RUNNING and PRE_COPY, so STOP, STOP_COPY, RESUMING and
 * the P2P states hold no DMA and no interrupts, and only the arcs into a
 * running state lift the pause (RESUME_QM).
 */
#include "mig/mig.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "mig/mig_hw.h"
#include "mig/mig_int.h"
#include "mig/stream.h"

#define MIG_PAUSED_AND_RETIRED (QM_WIN_PAUSE_PAUSED | QM_WIN_PAUSE_RETIRED)

void mig_lock(struct mig_dev *m)
{
    pthread_mutex_lock(&m->lock);
    m->lock_owner = pthread_self();
    m->lock_held = true;
}

void mig_unlock(struct mig_dev *m)
{
    m->lock_held = false;
    pthread_mutex_unlock(&m->lock);
}

void mig_assert_locked(const struct mig_dev *m)
{
    assert(m->lock_held && pthread_equal(m->lock_owner, pthread_self()));
    (void)m;
}

int mig_fail_locked(struct mig_dev *m, int rc, enum am_log_level level, const char *fmt, ...)
{
    va_list ap;

    mig_assert_locked(m);
    va_start(ap, fmt);
    vsnprintf(m->error, sizeof(m->error), fmt, ap);
    va_end(ap);
    am_log(level, "mig", "VF %u: %s", m->vf_fn, m->error);
    return rc;
}

/* ---- identity (the match data) ------------------------------------------ */

/* This function's identity as the device reports it through the door. */
static int mig_match_read_locked(struct mig_dev *m, struct mig_match *out)
{
    uint32_t eq_aeq, sq_cq, iso, vf_state;
    uint64_t vft;
    int rc;

    mig_assert_locked(m);
    rc = mig_hw_mailbox(&m->hw, QM_MB_CMD_SQC_VFT_V2, 0, 0, 1, &vft);
    if (rc != 0)
        return mig_fail_locked(m, rc, AM_LOG_ERR, "SQC_VFT_V2 query failed (%d)", rc);
    if (!((vft >> QM_VFT_VALID_SHIFT) & 1u))
        return mig_fail_locked(m, -EIO, AM_LOG_ERR, "the VF has no queue range (VFT invalid)");
    rc = mig_hw_read32(&m->hw, m->hw.caps + (QM_CAP_EQ_AEQ_DEPTH - QM_CAP_VERSION), &eq_aeq);
    if (rc == 0)
        rc = mig_hw_read32(&m->hw, m->hw.caps + (QM_CAP_SQ_CQ_DEPTH - QM_CAP_VERSION), &sq_cq);
    if (rc == 0)
        rc = mig_hw_read32(&m->hw, m->hw.regs + QM_QUE_ISO_CFG, &iso);
    if (rc == 0)
        rc = mig_hw_read32(&m->hw, m->hw.regs + QM_VF_STATE, &vf_state);
    if (rc != 0)
        return mig_fail_locked(m, rc, AM_LOG_ERR, "reading the identity registers failed (%d)",
                               rc);
    *out = (struct mig_match){
        .device_id = qm_dev_engine(m->dev)->vf_device_id,
        .revision = qm_dev_revision(m->dev),
        .format_major = MIG_STREAM_MAJOR,
        .qp_num = (uint16_t)(((vft >> QM_VFT_NUM_SHIFT) & QM_VFT_NUM_MASK) + 1u),
        .sq_depth = (uint16_t)sq_cq,
        .cq_depth = (uint16_t)(sq_cq >> 16),
        .eq_depth = (uint16_t)eq_aeq,
        .aeq_depth = (uint16_t)(eq_aeq >> 16),
        .que_iso_cfg = iso & mig_saved_regs[MIG_REG_QUE_ISO_CFG].valid_mask,
        /* The driver's convention: bit0 set means not (yet) started. */
        .vf_state = vf_state & 1u,
    };
    return 0;
}

/* ---- quiesce and resume -------------------------------------------------- */

static int mig_check_quiesced_locked(struct mig_dev *m)
{
    uint32_t st;
    int rc;

    mig_assert_locked(m);
    rc = mig_hw_read32(&m->hw, m->hw.mig_regs + QM_WIN_PAUSE_STATUS, &st);
    if (rc != 0)
        return mig_fail_locked(m, rc, AM_LOG_ERR, "reading PAUSE_STATUS failed");
    if ((st & MIG_PAUSED_AND_RETIRED) != MIG_PAUSED_AND_RETIRED)
        return mig_fail_locked(m, -EIO, AM_LOG_ERR,
                               "function not quiesced (PAUSE_STATUS %#x): refusing to stop", st);
    return 0;
}

/* PAUSE_QM, then wait until the jobs it cancelled have retired. */
static int mig_pause_locked(struct mig_dev *m)
{
    uint32_t st = 0;
    int rc;

    mig_assert_locked(m);
    rc = mig_hw_mailbox(&m->hw, QM_MB_CMD_PAUSE_QM, 0, 0, 0, NULL);
    if (rc == -ETIMEDOUT) {
        m->broken = true; /* the command may or may not have run */
        return mig_fail_locked(m, rc, AM_LOG_ERR, "PAUSE_QM: mailbox stayed busy");
    }
    if (rc == -EBUSY)
        return mig_fail_locked(m, rc, AM_LOG_ERR, "PAUSE_QM: the mailbox is busy with another "
                                                  "command (nothing sent)");
    if (rc != 0)
        return mig_fail_locked(m, rc, AM_LOG_ERR, "PAUSE_QM refused by the device");
    rc = mig_hw_poll32(&m->hw, m->hw.mig_regs + QM_WIN_PAUSE_STATUS, MIG_PAUSED_AND_RETIRED,
                       MIG_PAUSED_AND_RETIRED, MIG_HW_RETIRE_BUDGET_NS, &st);
    if (rc == 0)
        return 0;
    /* Undo the pause so the device is where GET says (still running). */
    if (mig_hw_mailbox(&m->hw, QM_MB_CMD_RESUME_QM, 0, 0, 0, NULL) != 0)
        m->broken = true;
    return mig_fail_locked(m, rc, AM_LOG_ERR, "PAUSE_QM: jobs did not retire (PAUSE_STATUS %#x)",
                           st);
}

/* After a restore, make every queue that was active on the source reload
 * its context from the tables in guest RAM (one priority doorbell each);
 * then RESUME_QM (the device replays cancelled jobs and acts on doorbells it
 * recorded while paused). The doorbells go first, while the function is
 * still paused: they only reload, and RESUME_QM starts every queue at once,
 * so no job engine starts on the host's cores while the driver still has
 * registers to write. */
static int mig_resume_locked(struct mig_dev *m)
{
    int rc;

    mig_assert_locked(m);
    for (unsigned q = 0; m->reload_pending && q < MIG_MAX_QPS; q++) {
        if (!((m->reload_qps >> q) & 1u))
            continue;
        rc = mig_hw_sq_doorbell(&m->hw, (uint16_t)q, 0, 1);
        if (rc != 0) {
            m->broken = true; /* some queues not reloaded */
            return mig_fail_locked(m, rc, AM_LOG_ERR, "reload doorbell of queue %u failed", q);
        }
    }
    m->reload_pending = false;
    m->reload_qps = 0;
    rc = mig_hw_mailbox(&m->hw, QM_MB_CMD_RESUME_QM, 0, 0, 0, NULL);
    if (rc == -ETIMEDOUT)
        m->broken = true;
    if (rc != 0)
        return mig_fail_locked(m, rc, AM_LOG_ERR, "RESUME_QM failed (%d)", rc);
    return 0;
}

/* ---- saving -------------------------------------------------------------- */

static int mig_read_dwords_locked(struct mig_dev *m, uint64_t off, uint32_t *v, unsigned n)
{
    int rc = 0;

    for (unsigned i = 0; i < n && rc == 0; i++)
        rc = mig_hw_read32(&m->hw, off + 4u * i, &v[i]);
    return rc;
}

/* The queue state beyond positions (QSTATE), and the contexts CACHE_WB
 * could put in no table, read from the context cache (QCTX). */
static int mig_qstate_read_locked(struct mig_dev *m, struct mig_vf_snapshot *s)
{
    struct mig_queue_state *q = &s->qs;
    const uint64_t r = m->hw.mig_regs;
    uint64_t fail[2];
    uint32_t sel;
    int rc = 0;

    mig_assert_locked(m);
    for (unsigned k = 0; k < MIG_QS_COUNT && rc == 0; k++)
        rc = mig_hw_read_pair(&m->hw, r + QM_WIN_SQ_STOPPED_L + 8u * k, &q->bits[k]);
    if (rc == 0)
        rc = mig_hw_read32(&m->hw, r + QM_WIN_XEQ_STATE, &q->xeq);
    for (unsigned i = 0; i < QM_MAILBOX_SIZE / 4 && rc == 0; i++) {
        uint32_t v;

        rc = mig_hw_read32(&m->hw, r + QM_WIN_FN_MB_STAGE0 + 4u * i, &v);
        am_st32(q->mb_stage + 4 * i, v);
    }
    if (rc == 0)
        rc = mig_hw_read32(&m->hw, r + QM_WIN_FN_MB_W0, &q->mb_w0);
    if (rc == 0)
        rc = mig_hw_read_pair(&m->hw, r + QM_WIN_FN_MB_DATA_L, &q->mb_data);
    if (rc == 0)
        rc = mig_hw_read_pair(&m->hw, r + QM_WIN_FN_DB_SQCQ_L, &q->db_stage[0]);
    if (rc == 0)
        rc = mig_hw_read_pair(&m->hw, r + QM_WIN_FN_DB_EQAEQ_L, &q->db_stage[1]);
    if (rc == 0)
        rc = mig_hw_read_pair(&m->hw, r + QM_WIN_SQC_WB_FAIL_L, &fail[0]);
    if (rc == 0)
        rc = mig_hw_read_pair(&m->hw, r + QM_WIN_CQC_WB_FAIL_L, &fail[1]);
    for (unsigned kind = 0; kind < 2 && rc == 0; kind++) {
        for (unsigned qn = 0; qn < MIG_MAX_QPS && rc == 0; qn++) {
            if (!((fail[kind] >> qn) & 1u))
                continue;
            rc = mig_hw_write32(&m->hw, r + QM_WIN_QC_SEL, qn | (kind ? QM_WIN_QC_SEL_CQ : 0));
            if (rc == 0)
                rc = mig_read_dwords_locked(m, r + QM_WIN_QC_DW0, kind ? s->cqc[qn] : s->sqc[qn],
                                            8);
            if (rc == 0)
                rc = mig_hw_read32(&m->hw, r + QM_WIN_QC_SEL, &sel);
            if (rc == 0 && !(sel & QM_WIN_QC_SEL_LOADED))
                rc = -EIO; /* it failed its write-back, so it was loaded */
        }
    }
    s->ctx_sq = fail[0];
    s->ctx_cq = fail[1];
    return rc;
}

/* Device state of a started function; the function is paused. */
static int mig_snapshot_read_locked(struct mig_dev *m, struct mig_vf_snapshot *s)
{
    uint32_t done;
    int rc;

    mig_assert_locked(m);
    memset(s, 0, sizeof(*s));
    /* Queue positions go to the SQC/CQC tables in guest RAM. */
    rc = mig_hw_write32(&m->hw, m->hw.regs + QM_CACHE_WB_START, 1);
    if (rc == 0)
        rc = mig_hw_poll32(&m->hw, m->hw.regs + QM_CACHE_WB_DONE, 1, 1, MIG_HW_MB_BUDGET_NS,
                           &done);
    if (rc != 0)
        return mig_fail_locked(m, rc, AM_LOG_ERR, "context cache write-back failed (%d)", rc);
    for (unsigned i = 0; i < MIG_REG_COUNT && rc == 0; i++) {
        rc = mig_hw_read32(&m->hw, m->hw.regs + mig_saved_regs[i].offset, &s->regs[i]);
        /* Only the architected bits of a register travel. */
        s->regs[i] &= mig_saved_regs[i].valid_mask;
    }
    if (rc == 0)
        rc = mig_read_dwords_locked(m, m->hw.eqc_shadow, s->eqc, 7);
    if (rc == 0)
        rc = mig_read_dwords_locked(m, m->hw.aeqc_shadow, s->aeqc, 7);
    if (rc == 0)
        rc = mig_hw_mailbox(&m->hw, QM_MB_CMD_SQC_BT, 0, 0, 1, &s->sqc_bt);
    if (rc == 0)
        rc = mig_hw_mailbox(&m->hw, QM_MB_CMD_CQC_BT, 0, 0, 1, &s->cqc_bt);
    if (rc == 0)
        rc = mig_hw_read_pair(&m->hw, m->hw.mig_regs + QM_WIN_QP_ACTIVE_L, &s->qp_active);
    if (rc == 0)
        rc = mig_hw_read32(&m->hw, m->hw.mig_regs + QM_WIN_INT_PENDING, &s->int_pending);
    if (rc == 0)
        rc = mig_hw_read_pair(&m->hw, m->hw.mig_regs + QM_WIN_IFC_MSG_L, &s->ifc_msg);
    if (rc == 0)
        rc = mig_hw_read_pair(&m->hw, m->hw.mig_regs + QM_WIN_IFC_OUT_MSG_L, &s->ifc_out_msg);
    if (rc == 0)
        rc = mig_qstate_read_locked(m, s);
    if (rc != 0)
        return mig_fail_locked(m, rc, AM_LOG_ERR, "reading the device state failed (%d)", rc);
    /* Restored here but never run: its queues still wait for their reload. */
    if (m->reload_pending)
        s->qp_active |= m->reload_qps;
    return 0;
}

/* Opens the saving stream with its head (header + MATCH). */
static int mig_save_open_locked(struct mig_dev *m)
{
    size_t len = 0;
    int rc;

    mig_assert_locked(m);
    rc = mig_match_read_locked(m, &m->save.match);
    if (rc != 0)
        return rc;
    rc = mig_stream_encode_head(&m->save.match, m->save.buf, sizeof(m->save.buf), &len);
    if (rc != 0)
        return mig_fail_locked(m, rc, AM_LOG_ERR, "encoding the stream head failed");
    m->save.len = len;
    m->save.head_len = len;
    m->save.pos = 0;
    m->save.complete = false;
    m->save.open = true;
    return 0;
}

/* Appends the device state and the END record; the function is stopped. */
static int mig_save_tail_locked(struct mig_dev *m)
{
    struct mig_vf_snapshot snap;
    struct mig_match now;
    uint64_t t0 = am_now_ns();
    size_t len = m->save.len;
    char why[128];
    int rc;

    mig_assert_locked(m);
    rc = mig_match_read_locked(m, &now);
    if (rc != 0)
        return rc;
    if (mig_match_check(&m->save.match, &now, why, sizeof(why)) != 0)
        return mig_fail_locked(m, -EIO, AM_LOG_ERR, "identity changed since PRE_COPY: %s", why);
    if (now.vf_state != QM_VF_STATE_READY) {
        /* The guest never started the QM: the match data is all there is. */
        rc = mig_stream_encode_tail(NULL, m->save.buf, sizeof(m->save.buf), &len);
    } else {
        rc = mig_snapshot_read_locked(m, &snap);
        if (rc != 0)
            return rc;
        rc = mig_stream_encode_tail(&snap, m->save.buf, sizeof(m->save.buf), &len);
    }
    if (rc != 0)
        return mig_fail_locked(m, rc, AM_LOG_ERR, "encoding the device state failed");
    m->save.len = len;
    m->save.complete = true;
    m->timing.save_ns = am_now_ns() - t0;
    return 0;
}

static void mig_streams_end_locked(struct mig_dev *m)
{
    mig_assert_locked(m);
    m->save.open = false;
    m->resume.open = false;
}

/* ---- resuming ------------------------------------------------------------ */

/* A fresh resuming session: the function is reset (so nothing of an earlier
 * life survives a restore), paused again, and its own identity read. */
static int mig_resume_open_locked(struct mig_dev *m)
{
    int rc;

    mig_assert_locked(m);
    if (qm_function_reset(m->dev, m->vf_fn) != 0)
        return mig_fail_locked(m, -EIO, AM_LOG_ERR, "function reset before RESUMING failed");
    m->reload_pending = false;
    m->reload_qps = 0;
    rc = mig_pause_locked(m);
    if (rc != 0) {
        m->broken = true; /* reset and running: not the STOP GET would report */
        return rc;
    }
    rc = mig_match_read_locked(m, &m->resume.local);
    if (rc != 0)
        return rc;
    m->resume.len = 0;
    m->resume.refused = false;
    m->resume.match_ok = false;
    m->resume.open = true;
    return 0;
}

static int mig_write_dwords_locked(struct mig_dev *m, uint64_t off, const uint32_t *v, unsigned n)
{
    int rc = 0;

    /* Ascending order: the last dword (dw6) is what loads a context. */
    for (unsigned i = 0; i < n && rc == 0; i++)
        rc = mig_hw_write32(&m->hw, off + 4u * i, v[i]);
    return rc;
}

/* QCTX straight into the context cache, then QSTATE. After the table
 * bases (which drop contexts and their state) and the EQC/AEQC shadows
 * (whose load clears the event queues' state); queues still waiting for
 * their table load keep the bits (qm_hw.h). */
static int mig_qstate_load_locked(struct mig_dev *m, const struct mig_vf_snapshot *s)
{
    const struct mig_queue_state *q = &s->qs;
    const uint64_t r = m->hw.mig_regs;
    uint32_t sel;
    int rc = 0;

    mig_assert_locked(m);
    for (unsigned kind = 0; kind < 2 && rc == 0; kind++) {
        uint64_t mask = kind ? s->ctx_cq : s->ctx_sq;

        for (unsigned qn = 0; qn < MIG_MAX_QPS && rc == 0; qn++) {
            if (!((mask >> qn) & 1u))
                continue;
            rc = mig_hw_write32(&m->hw, r + QM_WIN_QC_SEL, qn | (kind ? QM_WIN_QC_SEL_CQ : 0));
            if (rc == 0)
                rc = mig_write_dwords_locked(m, r + QM_WIN_QC_DW0, kind ? s->cqc[qn] : s->sqc[qn],
                                             8);
            if (rc == 0)
                rc = mig_hw_read32(&m->hw, r + QM_WIN_QC_SEL, &sel);
            if (rc == 0 && !(sel & QM_WIN_QC_SEL_LOADED))
                rc = -EIO;
        }
    }
    /* STOPPED before STOPPING (never both), STOPPING before the mailbox
     * that waits on it. */
    for (unsigned k = 0; k < MIG_QS_COUNT && rc == 0; k++)
        rc = mig_hw_write_pair(&m->hw, r + QM_WIN_SQ_STOPPED_L + 8u * k, q->bits[k]);
    if (rc == 0)
        rc = mig_hw_write32(&m->hw, r + QM_WIN_XEQ_STATE, q->xeq);
    for (unsigned i = 0; i < QM_MAILBOX_SIZE / 4 && rc == 0; i++)
        rc = mig_hw_write32(&m->hw, r + QM_WIN_FN_MB_STAGE0 + 4u * i, am_le32(q->mb_stage + 4 * i));
    if (rc == 0)
        rc = mig_hw_write32(&m->hw, r + QM_WIN_FN_MB_W0, q->mb_w0);
    if (rc == 0)
        rc = mig_hw_write_pair(&m->hw, r + QM_WIN_FN_MB_DATA_L, q->mb_data);
    if (rc == 0)
        rc = mig_hw_write_pair(&m->hw, r + QM_WIN_FN_DB_SQCQ_L, q->db_stage[0]);
    if (rc == 0)
        rc = mig_hw_write_pair(&m->hw, r + QM_WIN_FN_DB_EQAEQ_L, q->db_stage[1]);
    return rc;
}

static int mig_snapshot_load_locked(struct mig_dev *m, const struct mig_vf_snapshot *s)
{
    int rc = 0;

    mig_assert_locked(m);
    for (unsigned i = 0; i < MIG_REG_COUNT && rc == 0; i++)
        if (mig_saved_regs[i].restore != MIG_REG_DERIVED)
            rc = mig_hw_write32(&m->hw, mig_hw_restore_addr(&m->hw, mig_saved_regs[i].offset),
                                s->regs[i]);
    if (rc == 0)
        rc = mig_write_dwords_locked(m, m->hw.eqc_shadow, s->eqc, 7);
    if (rc == 0)
        rc = mig_write_dwords_locked(m, m->hw.aeqc_shadow, s->aeqc, 7);
    /* A base of 0 means the guest never set that table: leave it unset. */
    if (rc == 0 && s->sqc_bt != 0)
        rc = mig_hw_mailbox(&m->hw, QM_MB_CMD_SQC_BT, 0, s->sqc_bt, 0, NULL);
    if (rc == 0 && s->cqc_bt != 0)
        rc = mig_hw_mailbox(&m->hw, QM_MB_CMD_CQC_BT, 0, s->cqc_bt, 0, NULL);
    if (rc == 0)
        rc = mig_qstate_load_locked(m, s);
    if (rc == 0)
        rc = mig_hw_write_pair(&m->hw, m->hw.mig_regs + QM_WIN_IFC_MSG_L, s->ifc_msg);
    if (rc == 0)
        rc = mig_hw_write_pair(&m->hw, m->hw.mig_regs + QM_WIN_IFC_OUT_MSG_L, s->ifc_out_msg);
    /* Held by the pause, delivered on RESUME_QM. */
    if (rc == 0)
        rc = mig_hw_write32(&m->hw, m->hw.mig_regs + QM_WIN_INT_PENDING, s->int_pending);
    return rc;
}

/* Validates the written stream completely, then loads it. A stream that
 * fails validation changes nothing (the state stays RESUMING); a load that
 * fails half-way leaves the device in an unknown state (ERROR). */
static int mig_resume_load_locked(struct mig_dev *m)
{
    struct mig_stream_content *c = &m->resume.content;
    uint64_t t0 = am_now_ns();
    char why[160];
    int rc;

    mig_assert_locked(m);
    if (m->resume.refused)
        return mig_fail_locked(m, -EINVAL, AM_LOG_GUEST, "%s", m->resume.why);
    /* Everything is checked before the first register write. */
    rc = mig_stream_check(m->resume.buf, m->resume.len, &m->resume.local, c, why, sizeof(why));
    if (rc != 0) {
        m->resume.refused = true;
        snprintf(m->resume.why, sizeof(m->resume.why), "stream refused: %s", why);
        return mig_fail_locked(m, rc, AM_LOG_GUEST, "%s", m->resume.why);
    }
    if (c->has_state) {
        rc = mig_snapshot_load_locked(m, &c->state);
        if (rc != 0) {
            m->broken = true;
            return mig_fail_locked(m, rc, AM_LOG_ERR, "loading the device state failed (%d)", rc);
        }
        m->reload_qps = c->state.qp_active;
        m->reload_pending = true;
    }
    m->resume.open = false;
    m->timing.restore_ns = am_now_ns() - t0;
    return 0;
}

/* ---- the step function ---------------------------------------------------- */

static bool arc_is(enum vfio_mig_state cur, enum vfio_mig_state next, enum vfio_mig_state a,
                   enum vfio_mig_state b)
{
    return cur == a && next == b;
}

/* One arc of the FSM (only those the next-step table produces with every
 * flag advertised). Returns 0 when the device is now in `next`. */
static int mig_step_locked(struct mig_dev *m, enum vfio_mig_state next)
{
    const enum vfio_mig_state cur = m->state;
    uint64_t t0 = am_now_ns();
    int rc;

    mig_assert_locked(m);

    /* Quiesce: no new SQE fetched, jobs in flight cancelled for replay. */
    if (arc_is(cur, next, VFIO_MIG_STATE_RUNNING, VFIO_MIG_STATE_RUNNING_P2P) ||
        arc_is(cur, next, VFIO_MIG_STATE_PRE_COPY, VFIO_MIG_STATE_PRE_COPY_P2P)) {
        rc = mig_pause_locked(m);
        if (rc == 0)
            m->timing.quiesce_ns = am_now_ns() - t0;
        return rc;
    }

    /* Back to running: lift the pause, reload restored queues. */
    if (arc_is(cur, next, VFIO_MIG_STATE_RUNNING_P2P, VFIO_MIG_STATE_RUNNING) ||
        arc_is(cur, next, VFIO_MIG_STATE_PRE_COPY_P2P, VFIO_MIG_STATE_PRE_COPY)) {
        rc = mig_resume_locked(m);
        if (rc == 0)
            m->timing.resume_ns = am_now_ns() - t0;
        return rc;
    }

    /* Stop: the pause already holds DMA and interrupts; make sure of it. */
    if (arc_is(cur, next, VFIO_MIG_STATE_RUNNING_P2P, VFIO_MIG_STATE_STOP))
        return mig_check_quiesced_locked(m);

    /* Out of STOP into P2P: nothing to do, the function stays paused until
     * an arc into a running state. */
    if (arc_is(cur, next, VFIO_MIG_STATE_STOP, VFIO_MIG_STATE_RUNNING_P2P))
        return 0;

    /* Open a saving stream: the match data now, the state at STOP_COPY. */
    if (arc_is(cur, next, VFIO_MIG_STATE_RUNNING, VFIO_MIG_STATE_PRE_COPY) ||
        arc_is(cur, next, VFIO_MIG_STATE_RUNNING_P2P, VFIO_MIG_STATE_PRE_COPY_P2P))
        return mig_save_open_locked(m);
    if (arc_is(cur, next, VFIO_MIG_STATE_STOP, VFIO_MIG_STATE_STOP_COPY)) {
        rc = mig_save_open_locked(m);
        if (rc == 0)
            rc = mig_save_tail_locked(m);
        if (rc != 0)
            m->save.open = false;
        return rc;
    }

    /* Saving stream continues into STOP_COPY: the function stops, the rest
     * of the state is appended. */
    if (arc_is(cur, next, VFIO_MIG_STATE_PRE_COPY_P2P, VFIO_MIG_STATE_STOP_COPY)) {
        rc = mig_check_quiesced_locked(m);
        return rc != 0 ? rc : mig_save_tail_locked(m);
    }

    /* Leave the saving group: the stream ends, the device is untouched. */
    if (arc_is(cur, next, VFIO_MIG_STATE_STOP_COPY, VFIO_MIG_STATE_STOP) ||
        arc_is(cur, next, VFIO_MIG_STATE_PRE_COPY_P2P, VFIO_MIG_STATE_RUNNING_P2P) ||
        arc_is(cur, next, VFIO_MIG_STATE_PRE_COPY, VFIO_MIG_STATE_RUNNING)) {
        m->save.open = false;
        return 0;
    }

    /* Resuming: open a stream on a fresh function, then absorb it. */
    if (arc_is(cur, next, VFIO_MIG_STATE_STOP, VFIO_MIG_STATE_RESUMING))
        return mig_resume_open_locked(m);
    if (arc_is(cur, next, VFIO_MIG_STATE_RESUMING, VFIO_MIG_STATE_STOP))
        return mig_resume_load_locked(m);

    assert(!"impossible arc: mig_fsm_next_step produced an arc this driver lacks");
    return mig_fail_locked(m, -EINVAL, AM_LOG_ERR, "impossible arc %s -> %s", mig_state_name(cur),
                           mig_state_name(next));
}

/* ---- public API ----------------------------------------------------------- */

int mig_dev_create(struct qm_dev *dev, unsigned vf_fn, enum mig_hw_mode mode, struct mig_dev **out)
{
    struct mig_dev *m;
    int rc;

    if (out == NULL || (mode != MIG_HW_V4 && mode != MIG_HW_V3))
        return -EINVAL;
    m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -ENOMEM;
    rc = mig_hw_init(&m->hw, dev, vf_fn, mode);
    if (rc != 0) {
        free(m);
        return rc;
    }
    pthread_mutex_init(&m->lock, NULL);
    m->dev = dev;
    m->vf_fn = vf_fn;
    m->state = VFIO_MIG_STATE_RUNNING;
    *out = m;
    return 0;
}

void mig_dev_destroy(struct mig_dev *m)
{
    if (m == NULL)
        return;
    mig_lock(m);
    mig_dirty_stop_locked(m);
    mig_unlock(m);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

uint32_t mig_flags(const struct mig_dev *m)
{
    (void)m;
    return VFIO_MIG_FLAGS_ALL;
}

enum vfio_mig_state mig_get_state(struct mig_dev *m)
{
    enum vfio_mig_state s;

    mig_lock(m);
    s = m->state;
    mig_unlock(m);
    return s;
}

int mig_set_state(struct mig_dev *m, enum vfio_mig_state target)
{
    enum vfio_mig_state next;
    int rc = 0;

    mig_lock(m);
    if (m->state == VFIO_MIG_STATE_ERROR) {
        rc = mig_fail_locked(m, -EINVAL, AM_LOG_GUEST,
                             "device is in ERROR: only a reset leaves it");
        goto out_unlock;
    }
    while (m->state != target) {
        rc = mig_fsm_next_step(mig_flags(m), m->state, target, &next);
        if (rc != 0) {
            mig_fail_locked(m, rc, AM_LOG_GUEST, "no transition from %s to %s",
                            mig_state_name(m->state), mig_state_name(target));
            break;
        }
        rc = mig_step_locked(m, next);
        if (rc != 0)
            break;
        m->state = next;
    }
    if (m->broken) {
        /* The device cannot say where it is: only a reset recovers. */
        m->state = VFIO_MIG_STATE_ERROR;
        mig_streams_end_locked(m);
    }
out_unlock:
    mig_unlock(m);
    return rc;
}

static bool state_is_saving(enum vfio_mig_state s)
{
    return s == VFIO_MIG_STATE_PRE_COPY || s == VFIO_MIG_STATE_PRE_COPY_P2P ||
           s == VFIO_MIG_STATE_STOP_COPY;
}

ssize_t mig_read(struct mig_dev *m, void *buf, size_t len)
{
    ssize_t n;
    size_t avail;

    mig_lock(m);
    if (!state_is_saving(m->state) || !m->save.open) {
        n = mig_fail_locked(m, -EINVAL, AM_LOG_GUEST, "read in %s: no saving stream",
                            mig_state_name(m->state));
        goto out_unlock;
    }
    avail = m->save.len - m->save.pos;
    if (avail == 0) {
        /* PRE_COPY: more comes at STOP_COPY. STOP_COPY: the permanent end. */
        n = m->state == VFIO_MIG_STATE_STOP_COPY ? 0 : -ENOMSG;
        goto out_unlock;
    }
    if (buf == NULL && len > 0) {
        n = mig_fail_locked(m, -EINVAL, AM_LOG_GUEST, "read into a NULL buffer");
        goto out_unlock;
    }
    n = (ssize_t)AM_MIN(avail, len);
    memcpy(buf, m->save.buf + m->save.pos, (size_t)n);
    m->save.pos += (size_t)n;
out_unlock:
    mig_unlock(m);
    return n;
}

ssize_t mig_write(struct mig_dev *m, const void *buf, size_t len)
{
    struct mig_match src;
    char why[160];
    ssize_t n;
    int rc;

    mig_lock(m);
    if (m->state != VFIO_MIG_STATE_RESUMING || !m->resume.open) {
        n = mig_fail_locked(m, -EINVAL, AM_LOG_GUEST, "write in %s: no resuming stream",
                            mig_state_name(m->state));
        goto out_unlock;
    }
    if (m->resume.refused) {
        n = mig_fail_locked(m, -EINVAL, AM_LOG_GUEST, "%s", m->resume.why);
        goto out_unlock;
    }
    if (len == 0) {
        n = 0;
        goto out_unlock;
    }
    if (buf == NULL || !am_range_ok(m->resume.len, len, sizeof(m->resume.buf))) {
        m->resume.refused = true;
        snprintf(m->resume.why, sizeof(m->resume.why),
                 buf == NULL ? "stream refused: write from a NULL buffer"
                             : "stream refused: longer than the %u-byte limit",
                 MIG_STREAM_MAX);
        n = mig_fail_locked(m, buf == NULL ? -EINVAL : -EFBIG, AM_LOG_GUEST, "%s",
                            m->resume.why);
        goto out_unlock;
    }
    memcpy(m->resume.buf + m->resume.len, buf, len);
    m->resume.len += len;
    n = (ssize_t)len;
    if (m->resume.match_ok)
        goto out_unlock;
    /* Refuse an incompatible source as soon as its match data is complete. */
    rc = mig_stream_peek_match(m->resume.buf, m->resume.len, &src, why, sizeof(why));
    if (rc == 0)
        rc = mig_match_check(&src, &m->resume.local, why, sizeof(why));
    if (rc == -EAGAIN)
        goto out_unlock;
    if (rc == 0) {
        m->resume.match_ok = true;
        goto out_unlock;
    }
    m->resume.refused = true;
    snprintf(m->resume.why, sizeof(m->resume.why), "stream refused: %s", why);
    n = mig_fail_locked(m, -EINVAL, AM_LOG_GUEST, "%s", m->resume.why);
out_unlock:
    mig_unlock(m);
    return n;
}

int mig_precopy_info(struct mig_dev *m, uint64_t *initial_bytes, uint64_t *dirty_bytes)
{
    int rc = 0;

    mig_lock(m);
    if ((m->state != VFIO_MIG_STATE_PRE_COPY && m->state != VFIO_MIG_STATE_PRE_COPY_P2P) ||
        !m->save.open || initial_bytes == NULL || dirty_bytes == NULL) {
        rc = mig_fail_locked(m, -EINVAL, AM_LOG_GUEST, "precopy info in %s",
                             mig_state_name(m->state));
        goto out_unlock;
    }
    /* The head is all there is before STOP_COPY; the rest of the state is
     * small and captured with the function stopped, so nothing gets dirty. */
    *initial_bytes = m->save.head_len > m->save.pos ? m->save.head_len - m->save.pos : 0;
    *dirty_bytes = 0;
out_unlock:
    mig_unlock(m);
    return rc;
}

int mig_data_size(struct mig_dev *m, uint64_t *stop_copy_length)
{
    if (stop_copy_length == NULL)
        return -EINVAL;
    mig_lock(m);
    *stop_copy_length = m->save.open && m->save.complete ? m->save.len : mig_stream_full_len();
    mig_unlock(m);
    return 0;
}

int mig_reset(struct mig_dev *m)
{
    int rc;

    mig_lock(m);
    rc = qm_function_reset(m->dev, m->vf_fn) == 0 ? 0 : -EIO;
    mig_streams_end_locked(m);
    mig_dirty_stop_locked(m);
    m->state = VFIO_MIG_STATE_RUNNING;
    m->broken = false;
    m->reload_pending = false;
    m->reload_qps = 0;
    m->error[0] = '\0';
    if (rc != 0)
        mig_fail_locked(m, rc, AM_LOG_ERR, "function reset failed");
    mig_unlock(m);
    return rc;
}

void mig_timing_get(struct mig_dev *m, struct mig_timing *out)
{
    mig_lock(m);
    *out = m->timing;
    mig_unlock(m);
}

const char *mig_last_error(struct mig_dev *m)
{
    return m->error;
}
