/* A tamper campaign against the device-state stream (issue 11).
 *
 * Real streams are saved from three started VFs: the base (v4, 4 queues)
 * and two donors (a v3 VF, a v4 VF with 8 queues). From the base, every
 * field of every record is mutated (boundary values, wraps and every
 * single-bit flip), record headers and the stream header are mutated,
 * records are dropped, doubled, swapped and replaced by the donors'; the CRC
 * is recomputed each time, so only the stream check stands in the way.
 * Each stream then goes to a fresh destination, and exactly one of these
 * must hold:
 *   refused   RESUMING -> STOP fails, the state stays RESUMING, nothing the
 *             device shows has changed, and the message names the field;
 *   accepted  the load succeeds, the device holds every value of the stream
 *             at STOP (a context in the stream is live, registers read back),
 *             and STOP -> RUNNING succeeds.
 * ERROR (the device left in an unknown state) must never happen, nor an
 * accepted value the device silently does not hold.
 *
 * A second oracle asks the device itself: each state value is written
 * straight into a paused VF through the migration door, as the load would,
 * without the check. What the device takes and holds, the check must not
 * refuse (so no state a guest can put its VF in makes a destination refuse),
 * except the rules about the stream's own consistency (VF_STATE with state
 * records, derived registers, reserved words). The counts go to the log.
 *
 * A third base carries the 1.1 records with something in them (a stopped
 * queue, disarmed CQs, CQ contexts in no table): its QSTATE and QCTX
 * fields get the same treatment, and so do those of the plain bases (an
 * all-zero QSTATE). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/common.h"
#include "mig_fixture.h"
#include "qm/qm_debug.h"

#define MAX_RECS 16u
#define MAX_NOTES 8u /* per kind of failure, in the log */

/* ---- sources ------------------------------------------------------------- */

static struct tdrv_cfg source_cfg(unsigned qps)
{
    return (struct tdrv_cfg){.nqps = qps, .in_len = 2048, .out_len = 4096, .pool = 16};
}

/* Every side gets the RAM of the largest layout, so any RAM image fits. */
static uint64_t ram_size(void)
{
    struct tdrv_cfg c = source_cfg(8);

    return tdrv_ram_size(&c);
}

struct source {
    struct mig_side side;
    struct tdrv drv;
    uint8_t stream[MIG_STREAM_MAX];
    size_t len;
};

/* A started VF with queues [0, nstart) that ran jobs, saved at STOP_COPY
 * (and left there, so its RAM no longer changes). */
static void source_make(struct source *s, unsigned qps, uint8_t revision, enum mig_hw_mode mode,
                        unsigned nstart, unsigned jobs, uint32_t page_size)
{
    struct tdrv_cfg c = source_cfg(qps);

    side_create(&s->side, qps, revision, mode, ram_size());
    tdrv_bind(&s->drv, s->side.dev, 1, s->side.ram, ram_size(), &c);
    assert_int_equal(tdrv_init(&s->drv), 0);
    for (unsigned q = 0; q < nstart; q++)
        assert_int_equal(tdrv_qp_start(&s->drv, q, q), 0);
    assert_int_equal(tdrv_submit_many(&s->drv, nstart, jobs), 0);
    assert_int_equal(tdrv_drain(&s->drv), 0);
    assert_int_equal(tdrv_check_exactly_once(&s->drv), 0);
    tdrv_reg_write(&s->drv, QM_PAGE_SIZE, page_size);
    assert_int_equal(mig_set_state(s->side.mig, VFIO_MIG_STATE_STOP_COPY), 0);
    s->len = side_read_all(&s->side, s->stream, sizeof(s->stream), 0);
    assert_int_equal(s->len, mig_stream_full_len());
}

/* A started VF whose CQC table base was never set (its CQ contexts travel
 * in QCTX), queue 2 stopped, jobs completed and not reaped (disarmed CQs). */
static void source_make_qstate(struct source *s)
{
    struct tdrv_cfg c = source_cfg(4);
    uint64_t deadline = am_now_ns() + 60ull * 1000000000ull;

    c.cqc_table = TDRV_NO_TABLE;
    side_create(&s->side, 4, QM_REV_V4, MIG_HW_V4, ram_size());
    tdrv_bind(&s->drv, s->side.dev, 1, s->side.ram, ram_size(), &c);
    assert_int_equal(tdrv_init(&s->drv), 0);
    for (unsigned q = 0; q < 3; q++)
        assert_int_equal(tdrv_qp_start(&s->drv, q, q), 0);
    assert_int_equal(tdrv_submit_many(&s->drv, 3, 30), 0);
    assert_int_equal(tdrv_drain(&s->drv), 0);
    assert_int_equal(tdrv_qp_stop(&s->drv, 2), 0);
    assert_int_equal(tdrv_submit_many(&s->drv, 2, 4), 0);
    while (tdrv_cq_pending(&s->drv, 0) + tdrv_cq_pending(&s->drv, 1) < 4)
        assert_true(am_now_ns() < deadline);
    assert_int_equal(mig_set_state(s->side.mig, VFIO_MIG_STATE_STOP_COPY), 0);
    s->len = side_read_all(&s->side, s->stream, sizeof(s->stream), 0);
    assert_true(s->len > mig_stream_full_len());
}

/* ---- the migration door of the destination, as a driver sees it ----------- */

struct door {
    unsigned fn;                  /* function whose BAR2 is used */
    uint64_t regs;                /* function-local offsets start here */
    uint64_t eqc, aeqc;           /* the live EQC/AEQC shadows */
    uint64_t mig;                 /* QM_WIN_* registers add to this */
    uint64_t ifc_load;            /* where a write loads IFC_INT_SOURCE_V */
};

static struct door door_of(enum mig_hw_mode mode)
{
    if (mode == MIG_HW_V4)
        return (struct door){0, QM_PF_MIG_WINDOW(1), QM_PF_MIG_WINDOW(1) + QM_WIN_EQC_SHADOW,
                             QM_PF_MIG_WINDOW(1) + QM_WIN_AEQC_SHADOW, QM_PF_MIG_WINDOW(1),
                             QM_PF_MIG_WINDOW(1) + QM_IFC_INT_SOURCE_V};
    return (struct door){1, 0, QM_EQC_SHADOW_V3, QM_AEQC_SHADOW_V3, QM_V3_MIG_HALF,
                         QM_V3_WIN(QM_WIN_IFC_SOURCE_V)};
}

static uint32_t rd(struct qm_dev *dev, const struct door *d, uint64_t off)
{
    uint32_t v = 0;

    assert_int_equal(qm_bar_read32(dev, d->fn, off, &v), 0);
    return v;
}

static void wr(struct qm_dev *dev, const struct door *d, uint64_t off, uint32_t v)
{
    assert_int_equal(qm_bar_write32(dev, d->fn, off, v), 0);
}

static uint64_t rd_pair(struct qm_dev *dev, const struct door *d, uint64_t off)
{
    return (uint64_t)rd(dev, d, off + 4) << 32 | rd(dev, d, off);
}

/* One mailbox command through the door; the mailbox status (0 = done). */
static unsigned door_mailbox(struct qm_dev *dev, const struct door *d, unsigned cmd, uint64_t base)
{
    struct qm_mailbox m = {
        .w0 = (uint16_t)(cmd | 1u << QM_MB_BUSY_SHIFT),
        .base_l = (uint32_t)base,
        .base_h = (uint32_t)(base >> 32),
    };
    uint32_t w;

    assert_false(rd(dev, d, d->regs + QM_MAILBOX) & (1u << QM_MB_BUSY_SHIFT));
    assert_int_equal(qm_bar_write(dev, d->fn, d->regs + QM_MAILBOX, &m, sizeof(m)), 0);
    w = rd(dev, d, d->regs + QM_MAILBOX);
    assert_false(w & (1u << QM_MB_BUSY_SHIFT)); /* table bases complete at once */
    return (w >> QM_MB_STATUS_SHIFT) & QM_MB_STATUS_MASK;
}

/* What the destination's VF shows: registers, shadows, messages through the
 * door, and the model's own view (qm_debug). */
struct view {
    uint32_t regs[MIG_REG_COUNT];
    uint32_t eqc[7], aeqc[7];
    uint64_t ifc_msg, ifc_out;
    uint32_t int_pending;
    bool paused, eq_valid, aeq_valid;
    uint64_t sqc_bt, cqc_bt;
    uint64_t mb_commands, doorbells;
    struct mig_queue_state qs;       /* through the window registers */
    bool qc_loaded[2][QM_MAX_QPS_PER_VF];
    uint32_t qc[2][QM_MAX_QPS_PER_VF][8]; /* through QM_WIN_QC_* */
};

#define VIEW_QPS 4u /* every destination here has 4 queues */

static void qstate_read(struct qm_dev *dev, const struct door *d, struct mig_queue_state *q)
{
    memset(q, 0, sizeof(*q));
    for (unsigned k = 0; k < MIG_QS_COUNT; k++)
        q->bits[k] = rd_pair(dev, d, d->mig + QM_WIN_SQ_STOPPED_L + 8 * k);
    q->xeq = rd(dev, d, d->mig + QM_WIN_XEQ_STATE);
    for (unsigned i = 0; i < 4; i++)
        am_st32(q->mb_stage + 4 * i, rd(dev, d, d->mig + QM_WIN_FN_MB_STAGE0 + 4 * i));
    q->mb_w0 = rd(dev, d, d->mig + QM_WIN_FN_MB_W0);
    q->mb_data = rd_pair(dev, d, d->mig + QM_WIN_FN_MB_DATA_L);
    q->db_stage[0] = rd_pair(dev, d, d->mig + QM_WIN_FN_DB_SQCQ_L);
    q->db_stage[1] = rd_pair(dev, d, d->mig + QM_WIN_FN_DB_EQAEQ_L);
}

/* One context through the cache window: loaded?, and its dwords. */
static bool qc_read(struct qm_dev *dev, const struct door *d, unsigned kind, unsigned q,
                    uint32_t dw[8])
{
    wr(dev, d, d->mig + QM_WIN_QC_SEL, q | (kind ? QM_WIN_QC_SEL_CQ : 0));
    for (unsigned i = 0; i < 8; i++)
        dw[i] = rd(dev, d, d->mig + QM_WIN_QC_DW(i));
    return rd(dev, d, d->mig + QM_WIN_QC_SEL) & QM_WIN_QC_SEL_LOADED;
}

static void view_read(struct mig_side *s, const struct door *d, struct view *v)
{
    struct qm_fn_debug dbg;
    struct qm_fn_counters cnt;

    memset(v, 0, sizeof(*v));
    for (unsigned i = 0; i < MIG_REG_COUNT; i++)
        v->regs[i] = rd(s->dev, d, d->regs + mig_saved_regs[i].offset);
    for (unsigned i = 0; i < 7; i++) {
        v->eqc[i] = rd(s->dev, d, d->eqc + 4 * i);
        v->aeqc[i] = rd(s->dev, d, d->aeqc + 4 * i);
    }
    v->ifc_msg = rd_pair(s->dev, d, d->mig + QM_WIN_IFC_MSG_L);
    v->ifc_out = rd_pair(s->dev, d, d->mig + QM_WIN_IFC_OUT_MSG_L);
    assert_int_equal(qm_debug_fn(s->dev, 1, &dbg), 0);
    assert_int_equal(qm_debug_fn_counters(s->dev, 1, &cnt), 0);
    v->int_pending = dbg.int_pending;
    v->paused = dbg.paused;
    v->eq_valid = dbg.eq_valid;
    v->aeq_valid = dbg.aeq_valid;
    v->sqc_bt = dbg.sqc_bt;
    v->cqc_bt = dbg.cqc_bt;
    v->mb_commands = cnt.mb_commands;
    v->doorbells = cnt.doorbells;
    qstate_read(s->dev, d, &v->qs);
    for (unsigned kind = 0; kind < 2; kind++)
        for (unsigned q = 0; q < VIEW_QPS; q++)
            v->qc_loaded[kind][q] = qc_read(s->dev, d, kind, q, v->qc[kind][q]);
}

static bool view_equal(const struct view *a, const struct view *b)
{
    return memcmp(a->regs, b->regs, sizeof(a->regs)) == 0 &&
           memcmp(a->eqc, b->eqc, sizeof(a->eqc)) == 0 &&
           memcmp(a->aeqc, b->aeqc, sizeof(a->aeqc)) == 0 && a->ifc_msg == b->ifc_msg &&
           a->ifc_out == b->ifc_out && a->int_pending == b->int_pending &&
           a->paused == b->paused && a->eq_valid == b->eq_valid && a->aeq_valid == b->aeq_valid &&
           a->sqc_bt == b->sqc_bt && a->cqc_bt == b->cqc_bt && a->mb_commands == b->mb_commands &&
           a->doorbells == b->doorbells && memcmp(&a->qs, &b->qs, sizeof(a->qs)) == 0 &&
           memcmp(a->qc_loaded, b->qc_loaded, sizeof(a->qc_loaded)) == 0 &&
           memcmp(a->qc, b->qc, sizeof(a->qc)) == 0;
}

static bool ctx_present(const uint32_t *dw)
{
    for (unsigned i = 0; i < 7; i++)
        if (dw[i] != 0)
            return true;
    return false;
}

/* Does the device hold the snapshot's values? why names the first that it
 * does not. A context is held when it is live, or when the stream says there
 * was none (all zero). */
static bool view_holds(struct mig_side *s, const struct door *d, const struct mig_vf_snapshot *snap,
                       char *why, size_t whylen)
{
    struct view v;

    view_read(s, d, &v);
    for (unsigned i = 0; i < MIG_REG_COUNT; i++) {
        if (mig_saved_regs[i].restore == MIG_REG_DERIVED || v.regs[i] == snap->regs[i])
            continue;
        snprintf(why, whylen, "%s reads %#x, the stream has %#x", mig_saved_regs[i].name,
                 v.regs[i], snap->regs[i]);
        return false;
    }
    /* Live unless QSTATE says it broke (then it reads as loaded, not live). */
    if (v.eq_valid != (ctx_present(snap->eqc) && !(snap->qs.xeq & QM_XEQ_ST_EQ_BROKEN)) ||
        memcmp(v.eqc, snap->eqc, sizeof(v.eqc)) != 0) {
        snprintf(why, whylen, "EQC %s", v.eq_valid ? "differs" : "not live");
        return false;
    }
    if (v.aeq_valid != (ctx_present(snap->aeqc) && !(snap->qs.xeq & QM_XEQ_ST_AEQ_BROKEN)) ||
        memcmp(v.aeqc, snap->aeqc, sizeof(v.aeqc)) != 0) {
        snprintf(why, whylen, "AEQC %s", v.aeq_valid ? "differs" : "not live");
        return false;
    }
    if (v.sqc_bt != snap->sqc_bt || v.cqc_bt != snap->cqc_bt) {
        snprintf(why, whylen, "table bases %#llx/%#llx, the stream has %#llx/%#llx",
                 (unsigned long long)v.sqc_bt, (unsigned long long)v.cqc_bt,
                 (unsigned long long)snap->sqc_bt, (unsigned long long)snap->cqc_bt);
        return false;
    }
    if (v.int_pending != snap->int_pending || v.ifc_msg != snap->ifc_msg ||
        v.ifc_out != snap->ifc_out_msg) {
        snprintf(why, whylen, "IRQ state differs");
        return false;
    }
    for (unsigned k = 0; k < MIG_QS_COUNT; k++) {
        if (v.qs.bits[k] == snap->qs.bits[k])
            continue;
        snprintf(why, whylen, "QSTATE %s reads %#llx, the stream has %#llx", mig_qs_names[k],
                 (unsigned long long)v.qs.bits[k], (unsigned long long)snap->qs.bits[k]);
        return false;
    }
    if (memcmp(&v.qs, &snap->qs, sizeof(v.qs)) != 0) {
        snprintf(why, whylen, "QSTATE event queue or mailbox/doorbell staging differs "
                 "(XEQ %#x/%#x, w0 %#x/%#x)", v.qs.xeq, snap->qs.xeq, v.qs.mb_w0, snap->qs.mb_w0);
        return false;
    }
    for (unsigned kind = 0; kind < 2; kind++) {
        uint64_t mask = kind ? snap->ctx_cq : snap->ctx_sq;
        const uint32_t(*ctx)[8] = kind ? snap->cqc : snap->sqc;

        for (unsigned q = 0; q < VIEW_QPS; q++) {
            if (!((mask >> q) & 1u))
                continue;
            if (!v.qc_loaded[kind][q] || memcmp(v.qc[kind][q], ctx[q], 32) != 0) {
                snprintf(why, whylen, "QCTX %s %u %s", kind ? "CQC" : "SQC", q,
                         v.qc_loaded[kind][q] ? "differs" : "not loaded");
                return false;
            }
        }
    }
    return true;
}

/* ---- the campaign ---------------------------------------------------------- */

struct campaign {
    const char *label;
    const struct source *base; /* the stream and RAM mutations start from */
    struct mig_side *dst;
    struct door door;
    unsigned streams, refused, identity, accepted, errors, unheld, overstrict;
    unsigned nnotes[3];
    char notes[3][MAX_NOTES][200];
};

enum note_kind { NOTE_ERROR, NOTE_UNHELD, NOTE_OVERSTRICT };

static void note(struct campaign *c, enum note_kind k, const char *what, const char *name,
                 const char *detail)
{
    if (c->nnotes[k] < MAX_NOTES)
        snprintf(c->notes[k][c->nnotes[k]++], sizeof(c->notes[0][0]), "%s: %s: %s", what, name,
                 detail);
}

/* A fresh destination function: reset, guest RAM as the source left it,
 * RESUMING (the function is paused). */
static void dst_fresh(struct campaign *c)
{
    assert_int_equal(mig_reset(c->dst->mig), 0);
    memcpy(c->dst->ram, c->base->side.ram, ram_size());
    assert_int_equal(mig_set_state(c->dst->mig, VFIO_MIG_STATE_RESUMING), 0);
}

/* The device's own verdict on a snapshot: the load's writes, made straight
 * through the door of a paused fresh VF, with no check in front. */
static bool device_takes(struct campaign *c, const struct mig_vf_snapshot *s)
{
    struct qm_dev *dev = c->dst->dev;
    const struct door *d = &c->door;
    char why[160];
    bool ok = true;

    dst_fresh(c);
    for (unsigned i = 0; i < MIG_REG_COUNT; i++) {
        uint32_t off = mig_saved_regs[i].offset;

        if (mig_saved_regs[i].restore != MIG_REG_DERIVED)
            wr(dev, d, off == QM_IFC_INT_SOURCE_V ? d->ifc_load : d->regs + off, s->regs[i]);
    }
    for (unsigned i = 0; i < 7; i++)
        wr(dev, d, d->eqc + 4 * i, s->eqc[i]);
    for (unsigned i = 0; i < 7; i++)
        wr(dev, d, d->aeqc + 4 * i, s->aeqc[i]);
    if (s->sqc_bt != 0 && door_mailbox(dev, d, QM_MB_CMD_SQC_BT, s->sqc_bt) != 0)
        ok = false;
    if (s->cqc_bt != 0 && door_mailbox(dev, d, QM_MB_CMD_CQC_BT, s->cqc_bt) != 0)
        ok = false;
    for (unsigned kind = 0; kind < 2; kind++) {
        uint64_t mask = kind ? s->ctx_cq : s->ctx_sq;

        for (unsigned q = 0; q < QM_MAX_QPS_PER_VF; q++) {
            if (!((mask >> q) & 1u))
                continue;
            wr(dev, d, d->mig + QM_WIN_QC_SEL, q | (kind ? QM_WIN_QC_SEL_CQ : 0));
            for (unsigned i = 0; i < 8; i++)
                wr(dev, d, d->mig + QM_WIN_QC_DW(i), kind ? s->cqc[q][i] : s->sqc[q][i]);
            if (!(rd(dev, d, d->mig + QM_WIN_QC_SEL) & QM_WIN_QC_SEL_LOADED))
                ok = false;
        }
    }
    for (unsigned k = 0; k < MIG_QS_COUNT; k++) {
        wr(dev, d, d->mig + QM_WIN_SQ_STOPPED_L + 8 * k, (uint32_t)s->qs.bits[k]);
        wr(dev, d, d->mig + QM_WIN_SQ_STOPPED_L + 8 * k + 4, (uint32_t)(s->qs.bits[k] >> 32));
    }
    wr(dev, d, d->mig + QM_WIN_XEQ_STATE, s->qs.xeq);
    for (unsigned i = 0; i < 4; i++)
        wr(dev, d, d->mig + QM_WIN_FN_MB_STAGE0 + 4 * i, am_le32(s->qs.mb_stage + 4 * i));
    wr(dev, d, d->mig + QM_WIN_FN_MB_W0, s->qs.mb_w0);
    wr(dev, d, d->mig + QM_WIN_FN_MB_DATA_L, (uint32_t)s->qs.mb_data);
    wr(dev, d, d->mig + QM_WIN_FN_MB_DATA_H, (uint32_t)(s->qs.mb_data >> 32));
    wr(dev, d, d->mig + QM_WIN_FN_DB_SQCQ_L, (uint32_t)s->qs.db_stage[0]);
    wr(dev, d, d->mig + QM_WIN_FN_DB_SQCQ_H, (uint32_t)(s->qs.db_stage[0] >> 32));
    wr(dev, d, d->mig + QM_WIN_FN_DB_EQAEQ_L, (uint32_t)s->qs.db_stage[1]);
    wr(dev, d, d->mig + QM_WIN_FN_DB_EQAEQ_H, (uint32_t)(s->qs.db_stage[1] >> 32));
    wr(dev, d, d->mig + QM_WIN_IFC_MSG_L, (uint32_t)s->ifc_msg);
    wr(dev, d, d->mig + QM_WIN_IFC_MSG_H, (uint32_t)(s->ifc_msg >> 32));
    wr(dev, d, d->mig + QM_WIN_IFC_OUT_MSG_L, (uint32_t)s->ifc_out_msg);
    wr(dev, d, d->mig + QM_WIN_IFC_OUT_MSG_H, (uint32_t)(s->ifc_out_msg >> 32));
    wr(dev, d, d->mig + QM_WIN_INT_PENDING, s->int_pending);
    if (ok)
        ok = view_holds(c->dst, d, s, why, sizeof(why));
    assert_int_equal(mig_reset(c->dst->mig), 0);
    return ok;
}

/* Does msg contain one of the '|'-separated names? */
static bool names_one_of(const char *msg, const char *names)
{
    char buf[128], *save = NULL;

    snprintf(buf, sizeof(buf), "%s", names);
    for (char *t = strtok_r(buf, "|", &save); t != NULL; t = strtok_r(NULL, "|", &save))
        if (strstr(msg, t) != NULL)
            return true;
    return false;
}

/* One tampered stream. expect: the field name(s) a refusal must name (NULL:
 * any reason). oracle: ask the device itself too (value mutations of state
 * records the device loads as they are). */
static void evaluate(struct campaign *c, const uint8_t *buf, size_t len, const char *name,
                     const char *expect, bool oracle)
{
    static struct mig_stream_content content;
    struct mig_side *d = c->dst;
    struct view before, after;
    char err[192], why[160];
    bool device_ok = false;
    int chk, rc;

    c->streams++;
    /* The verdict without a destination: what `accmig inspect` says. */
    chk = mig_stream_check(buf, len, NULL, &content, err, sizeof(err));
    if (oracle) {
        assert_true(content.has_state);
        device_ok = device_takes(c, &content.state);
    }
    dst_fresh(c);
    view_read(d, &c->door, &before);
    rc = side_write_all(d, buf, len, 0);
    if (rc == 0)
        rc = mig_set_state(d->mig, VFIO_MIG_STATE_STOP);
    else
        assert_int_equal(mig_set_state(d->mig, VFIO_MIG_STATE_STOP), -EINVAL);
    if (rc != 0) {
        const char *msg = mig_last_error(d->mig);

        if (mig_get_state(d->mig) == VFIO_MIG_STATE_ERROR) {
            c->errors++;
            note(c, NOTE_ERROR, "ERROR at RESUMING -> STOP", name, msg);
            return;
        }
        assert_int_equal(mig_get_state(d->mig), VFIO_MIG_STATE_RESUMING);
        view_read(d, &c->door, &after);
        if (!view_equal(&before, &after))
            fail_msg("%s: refused (%s) but the device changed", name, msg);
        assert_true(msg[0] != '\0');
        if (expect != NULL && !names_one_of(msg, expect))
            fail_msg("%s: refused with \"%s\", which names none of %s", name, msg, expect);
        if (chk == 0) {
            /* Only the destination can tell: its own identity differs. */
            assert_non_null(strstr(msg, "destination"));
            c->identity++;
        } else if (device_ok) {
            c->overstrict++;
            note(c, NOTE_OVERSTRICT, "refused though the device takes it", name, msg);
        }
        c->refused++;
        return;
    }
    /* The destination runs the same check, with its identity on top. */
    assert_int_equal(chk, 0);
    if (content.has_state && !view_holds(d, &c->door, &content.state, why, sizeof(why))) {
        c->unheld++;
        note(c, NOTE_UNHELD, "accepted, not held by the device", name, why);
    }
    rc = mig_set_state(d->mig, VFIO_MIG_STATE_RUNNING);
    if (rc != 0 || mig_get_state(d->mig) != VFIO_MIG_STATE_RUNNING) {
        c->errors++;
        note(c, NOTE_ERROR, "ERROR at STOP -> RUNNING", name, mig_last_error(d->mig));
        return;
    }
    c->accepted++;
}

/* ---- streams as record lists ---------------------------------------------- */

struct rec {
    uint16_t type, flags;
    uint32_t declared; /* the header's length */
    uint32_t len;      /* payload bytes present */
    uint8_t p[MIG_STREAM_MAX];
};

struct slist {
    uint8_t hdr[MIG_STREAM_HDR_LEN];
    unsigned n;
    struct rec r[MAX_RECS];
};

static void slist_parse(struct slist *s, const uint8_t *buf, size_t len)
{
    static struct mig_stream_content content;

    assert_int_equal(mig_stream_check(buf, len, NULL, &content, NULL, 0), 0);
    memcpy(s->hdr, buf, MIG_STREAM_HDR_LEN);
    s->n = content.nrecords;
    for (unsigned i = 0; i < s->n; i++) {
        const struct mig_stream_record *r = &content.records[i];

        s->r[i].type = r->type;
        s->r[i].flags = r->flags;
        s->r[i].declared = s->r[i].len = r->length;
        memcpy(s->r[i].p, buf + r->offset + MIG_REC_HDR_LEN, r->length);
    }
}

/* The bytes, with the CRC of every END record recomputed over what
 * precedes its CRC field: tampering that the CRC cannot see. */
static size_t slist_bytes(const struct slist *s, uint8_t *out, size_t cap)
{
    size_t n = MIG_STREAM_HDR_LEN;

    memcpy(out, s->hdr, MIG_STREAM_HDR_LEN);
    for (unsigned i = 0; i < s->n; i++) {
        const struct rec *r = &s->r[i];

        assert_true(n + MIG_REC_HDR_LEN + r->len <= cap);
        am_st16(out + n, r->type);
        am_st16(out + n + 2, r->flags);
        am_st32(out + n + 4, r->declared);
        n += MIG_REC_HDR_LEN;
        memcpy(out + n, r->p, r->len);
        if (r->type == MIG_REC_END && r->len == MIG_END_LEN)
            am_st32(out + n, am_crc32c(0, out, n));
        n += r->len;
    }
    return n;
}

static int slist_find(const struct slist *s, uint16_t type)
{
    for (unsigned i = 0; i < s->n; i++)
        if (s->r[i].type == type)
            return (int)i;
    return -1;
}

static void try_slist(struct campaign *c, const struct slist *s, const char *name,
                      const char *expect, bool oracle)
{
    uint8_t buf[MIG_STREAM_MAX * 2];
    size_t len = slist_bytes(s, buf, sizeof(buf));

    evaluate(c, buf, len, name, expect, oracle);
}

/* ---- field mutations ------------------------------------------------------- */

enum special {
    SP_NONE, SP_XEQ_POS, SP_XEQ_DEPTH, SP_XEQ_BASE, SP_TABLE, SP_QPS, SP_QP_COUNT,
    SP_QC_POS, SP_QC_DEPTH, SP_QC_BASE, /* a CQC of QCTX */
    SP_MB_W0,
};

struct field {
    uint16_t type;
    unsigned off, size;
    const char *name;   /* in the test's own log */
    const char *expect; /* what a refusal names */
    bool oracle;        /* the device's own verdict applies */
    enum special sp;
};

static uint64_t get_val(const uint8_t *p, unsigned size)
{
    return size == 1 ? p[0] : size == 2 ? am_le16(p) : size == 4 ? am_le32(p) : am_le64(p);
}

static void put_val(uint8_t *p, unsigned size, uint64_t v)
{
    if (size == 1)
        p[0] = (uint8_t)v;
    else if (size == 2)
        am_st16(p, (uint16_t)v);
    else if (size == 4)
        am_st32(p, (uint32_t)v);
    else
        am_st64(p, v);
}

struct values {
    unsigned n;
    uint64_t v[160];
};

static void add_value(struct values *vs, uint64_t v, uint64_t max, uint64_t orig)
{
    v &= max;
    if (v == orig)
        return;
    for (unsigned i = 0; i < vs->n; i++)
        if (vs->v[i] == v)
            return;
    assert_true(vs->n < AM_ARRAY_SIZE(vs->v));
    vs->v[vs->n++] = v;
}

/* Boundary values, wraps and every single-bit flip of the field, plus the
 * values that sit on the edges of its rule. */
static void field_values(const struct field *f, uint64_t orig, const struct mig_stream_content *b,
                         struct values *vs)
{
    const uint64_t max = f->size == 8 ? UINT64_MAX : (1ull << (8 * f->size)) - 1;
    const bool aeq = f->type == MIG_REC_AEQC;
    const uint32_t *ctx = aeq ? b->state.aeqc : b->state.eqc;
    const uint64_t depth = (ctx[6] & 0xffffu) + 1u;
    const uint64_t cap = aeq ? b->match.aeq_depth : b->match.eq_depth;
    const uint64_t qps = b->match.qp_num;
    const uint64_t generic[] = {0, 1, 2, 3, orig - 1, orig + 1, max, max - 1, max / 2 + 1};

    vs->n = 0;
    for (size_t i = 0; i < AM_ARRAY_SIZE(generic); i++)
        add_value(vs, generic[i], max, orig);
    for (unsigned bit = 0; bit < 8 * f->size; bit++)
        add_value(vs, orig ^ (1ull << bit), max, orig);
    switch (f->sp) {
    case SP_XEQ_POS: {
        const uint64_t v[] = {depth - 1, depth, depth + 1};

        for (size_t i = 0; i < AM_ARRAY_SIZE(v); i++)
            add_value(vs, v[i], max, orig);
        break;
    }
    case SP_XEQ_DEPTH: { /* the field is depth - 1 */
        const uint64_t v[] = {cap - 3, cap - 2, cap - 1, cap, cap + 1};

        for (size_t i = 0; i < AM_ARRAY_SIZE(v); i++)
            add_value(vs, v[i], max, orig);
        break;
    }
    case SP_XEQ_BASE: {
        const uint64_t v[] = {1ull << 32, 0 - depth * 4, 0 - depth * 4 + 1, 0 - depth * 4 - 4,
                              0xffffffffffffff00ull, orig + 2, orig + 3, orig + 4,
                              ram_size() - 4, ram_size(), 1ull << 48};

        for (size_t i = 0; i < AM_ARRAY_SIZE(v); i++)
            add_value(vs, v[i], max, orig);
        break;
    }
    case SP_TABLE: {
        const uint64_t span = QM_MAX_QPS_PER_VF * 32ull;
        const uint64_t v[] = {0 - span, 0 - span + 1, 0 - span - 32, 0 - qps * 32,
                              0xffffffffffffff00ull, 0 - 32, orig + 31, orig + 32, orig + 0x1000,
                              ram_size(), 1ull << 48};

        for (size_t i = 0; i < AM_ARRAY_SIZE(v); i++)
            add_value(vs, v[i], max, orig);
        break;
    }
    case SP_QPS: {
        const uint64_t v[] = {1ull << (qps - 1), 1ull << qps, (1ull << qps) - 1, 1ull << 63};

        for (size_t i = 0; i < AM_ARRAY_SIZE(v); i++)
            add_value(vs, v[i], max, orig);
        break;
    }
    case SP_QP_COUNT: {
        const uint64_t v[] = {qps - 1, qps + 1, 8, 63, 64, 65};

        for (size_t i = 0; i < AM_ARRAY_SIZE(v); i++)
            add_value(vs, v[i], max, orig);
        break;
    }
    case SP_QC_POS: {
        const uint64_t v[] = {b->match.cq_depth - 1, b->match.cq_depth, b->match.cq_depth + 1};

        for (size_t i = 0; i < AM_ARRAY_SIZE(v); i++)
            add_value(vs, v[i], max, orig);
        break;
    }
    case SP_QC_DEPTH: { /* dw3's low half: (depth - 1) | entry size << 12 */
        const uint64_t cqd = b->match.cq_depth, v[] = {0x4000, 0x4001, 0x4000 | (cqd - 2),
                                                       0x4000 | cqd, 0x7000 | (cqd - 1), 0x4fff};

        for (size_t i = 0; i < AM_ARRAY_SIZE(v); i++)
            add_value(vs, v[i], max, orig);
        break;
    }
    case SP_QC_BASE: {
        const uint64_t span = (uint64_t)b->match.cq_depth * 16u;
        const uint64_t v[] = {0 - span, 0 - span + 1, 0 - span - 16, 0xffffffffffffff00ull,
                              orig + 1, orig + 16, ram_size(), 1ull << 48};

        for (size_t i = 0; i < AM_ARRAY_SIZE(v); i++)
            add_value(vs, v[i], max, orig);
        break;
    }
    case SP_MB_W0: { /* busy with each command, and a STOP_QP of each queue */
        const uint64_t busy = 1u << QM_MB_BUSY_SHIFT;

        for (uint64_t cmd = 0; cmd < 16; cmd++)
            add_value(vs, busy | cmd, max, orig);
        add_value(vs, busy | QM_MB_CMD_STOP_QP | 1u << QM_MB_OP_SHIFT, max, orig);
        break;
    }
    case SP_NONE:
        break;
    }
}

#define REG_FIELD(i, name, oracle)                                                             \
    {MIG_REC_REGS, 4 * (i), 4, "REGS." name, name, oracle, SP_NONE}
#define XEQ_FIELDS(t, n)                                                                        \
    {t, 0, 2, n ".head", n, true, SP_XEQ_POS}, {t, 2, 2, n ".tail", n, true, SP_XEQ_POS},      \
        {t, 4, 4, n ".dw1", n, true, SP_NONE}, {t, 8, 4, n ".dw2", n, true, SP_NONE},          \
        {t, 4, 8, n ".base", n, true, SP_XEQ_BASE}, {t, 12, 4, n ".dw3", n, true, SP_NONE},    \
        {t, 16, 4, n ".dw4", n, true, SP_NONE}, {t, 20, 4, n ".dw5", n, true, SP_NONE},        \
        {t, 24, 4, n ".dw6", n, true, SP_NONE}, {t, 24, 2, n ".depth", n, true, SP_XEQ_DEPTH}

#define QS_FIELD(k, n) {MIG_REC_QSTATE, 8 * (k), 8, "QSTATE." n, "QSTATE", true, SP_QPS}
#define QC_FIELDS(o, n)                                                                           \
    {MIG_REC_QCTX, (o), 2, n ".head", "QCTX", true, SP_QC_POS},                                  \
        {MIG_REC_QCTX, (o) + 2, 2, n ".tail", "QCTX", true, SP_QC_POS},                          \
        {MIG_REC_QCTX, (o) + 4, 8, n ".base", "QCTX", true, SP_QC_BASE},                         \
        {MIG_REC_QCTX, (o) + 12, 4, n ".dw3", "QCTX", true, SP_NONE},                            \
        {MIG_REC_QCTX, (o) + 12, 2, n ".depth", "QCTX", true, SP_QC_DEPTH},                      \
        {MIG_REC_QCTX, (o) + 16, 4, n ".dw4", "QCTX", true, SP_NONE},                            \
        {MIG_REC_QCTX, (o) + 20, 4, n ".dw5", "QCTX", true, SP_NONE},                            \
        {MIG_REC_QCTX, (o) + 24, 4, n ".dw6", "QCTX", true, SP_NONE},                            \
        {MIG_REC_QCTX, (o) + 28, 4, n ".dw7", "QCTX", true, SP_NONE}

static const struct field fields[] = {
    {MIG_REC_MATCH, 0, 2, "MATCH.device_id", "device id", false, SP_NONE},
    {MIG_REC_MATCH, 2, 1, "MATCH.revision", "revision", false, SP_NONE},
    {MIG_REC_MATCH, 3, 1, "MATCH.format_major", "format major", false, SP_NONE},
    {MIG_REC_MATCH, 4, 2, "MATCH.qp_num", "qp count", false, SP_QP_COUNT},
    {MIG_REC_MATCH, 6, 2, "MATCH.sq_depth", "SQ depth", false, SP_NONE},
    {MIG_REC_MATCH, 8, 2, "MATCH.cq_depth", "CQ depth", false, SP_NONE},
    {MIG_REC_MATCH, 10, 2, "MATCH.eq_depth", "EQ depth", false, SP_NONE},
    {MIG_REC_MATCH, 12, 2, "MATCH.aeq_depth", "AEQ depth", false, SP_NONE},
    {MIG_REC_MATCH, 14, 2, "MATCH.reserved", "MATCH", false, SP_NONE},
    {MIG_REC_MATCH, 16, 4, "MATCH.que_iso_cfg", "QUE_ISO_CFG", false, SP_NONE},
    {MIG_REC_MATCH, 20, 4, "MATCH.vf_state", "VF_STATE", false, SP_NONE},
    /* Derived registers are not loaded and VF_STATE must say READY: rules
     * about the stream itself, where the device has no verdict. */
    REG_FIELD(MIG_REG_AEQ_INT_SOURCE, "AEQ_INT_SOURCE", false),
    REG_FIELD(MIG_REG_AEQ_INT_MASK, "AEQ_INT_MASK", true),
    REG_FIELD(MIG_REG_EQ_INT_SOURCE, "EQ_INT_SOURCE", false),
    REG_FIELD(MIG_REG_EQ_INT_MASK, "EQ_INT_MASK", true),
    REG_FIELD(MIG_REG_IFC_INT_SOURCE, "IFC_INT_SOURCE_V", true),
    REG_FIELD(MIG_REG_IFC_INT_MASK, "IFC_INT_MASK", true),
    REG_FIELD(MIG_REG_IFC_INT_SET, "IFC_INT_SET_V", true),
    REG_FIELD(MIG_REG_QUE_ISO_CFG, "QUE_ISO_CFG", true),
    REG_FIELD(MIG_REG_PAGE_SIZE, "PAGE_SIZE", true),
    REG_FIELD(MIG_REG_VF_STATE, "VF_STATE", false),
    XEQ_FIELDS(MIG_REC_EQC, "EQC"),
    XEQ_FIELDS(MIG_REC_AEQC, "AEQC"),
    {MIG_REC_TABLES, 0, 8, "TABLES.sqc_bt", "TABLES", true, SP_TABLE},
    {MIG_REC_TABLES, 8, 8, "TABLES.cqc_bt", "TABLES", true, SP_TABLE},
    /* Whether a queue reloads depends on its table in guest RAM, which the
     * stream does not carry: no device verdict from the stream alone. */
    {MIG_REC_QP_ACTIVE, 0, 8, "QP_ACTIVE", "QP_ACTIVE", false, SP_QPS},
    {MIG_REC_IRQ, 0, 4, "IRQ.int_pending", "IRQ", true, SP_NONE},
    {MIG_REC_IRQ, 4, 4, "IRQ.reserved", "IRQ", false, SP_NONE},
    {MIG_REC_IRQ, 8, 8, "IRQ.ifc_msg", "IRQ", true, SP_NONE},
    {MIG_REC_IRQ, 16, 8, "IRQ.ifc_out_msg", "IRQ", true, SP_NONE},
    /* QSTATE: everything loads as written but what the check refuses (the
     * device's own verdict applies to every field). */
    QS_FIELD(MIG_QS_SQ_STOPPED, "SQ stopped"),
    QS_FIELD(MIG_QS_SQ_STOPPING, "SQ stopping"),
    QS_FIELD(MIG_QS_SQ_BROKEN, "SQ broken"),
    QS_FIELD(MIG_QS_CQ_BROKEN, "CQ broken"),
    QS_FIELD(MIG_QS_CQ_DISARMED, "CQ disarmed"),
    QS_FIELD(MIG_QS_CQ_OVERFLOW, "CQ overflow"),
    {MIG_REC_QSTATE, 48, 4, "QSTATE.xeq", "QSTATE", true, SP_NONE},
    {MIG_REC_QSTATE, 52, 4, "QSTATE.mb_w0", "QSTATE", true, SP_MB_W0},
    {MIG_REC_QSTATE, 56, 4, "QSTATE.mb_stage0", "QSTATE", true, SP_NONE},
    {MIG_REC_QSTATE, 58, 2, "QSTATE.mb_queue_num", "QSTATE", true, SP_QP_COUNT},
    {MIG_REC_QSTATE, 60, 4, "QSTATE.mb_stage1", "QSTATE", true, SP_NONE},
    {MIG_REC_QSTATE, 68, 4, "QSTATE.mb_stage3", "QSTATE", true, SP_NONE},
    {MIG_REC_QSTATE, 72, 8, "QSTATE.mb_data", "QSTATE", true, SP_NONE},
    {MIG_REC_QSTATE, 80, 8, "QSTATE.db_sqcq", "QSTATE", true, SP_NONE},
    {MIG_REC_QSTATE, 88, 8, "QSTATE.db_eqaeq", "QSTATE", true, SP_NONE},
    /* QCTX (the queue-state base: CQCs of queues 0..2): the masks set the
     * record's length, so there the check alone decides. */
    {MIG_REC_QCTX, 0, 8, "QCTX.sq_mask", "QCTX", false, SP_QPS},
    {MIG_REC_QCTX, 8, 8, "QCTX.cq_mask", "QCTX", false, SP_QPS},
    QC_FIELDS(16, "QCTX.cqc0"),
    QC_FIELDS(48, "QCTX.cqc1"),
};

static void mutate_fields(struct campaign *c, const struct slist *base,
                          const struct mig_stream_content *b)
{
    static struct slist s;
    struct values vs;
    char name[96];

    for (size_t i = 0; i < AM_ARRAY_SIZE(fields); i++) {
        const struct field *f = &fields[i];
        int r = slist_find(base, f->type);
        uint64_t orig;

        if (r < 0 && f->type == MIG_REC_QCTX)
            continue; /* a base whose contexts are all in tables */
        assert_true(r >= 0);
        orig = get_val(base->r[r].p + f->off, f->size);
        field_values(f, orig, b, &vs);
        for (unsigned k = 0; k < vs.n; k++) {
            s = *base;
            put_val(s.r[r].p + f->off, f->size, vs.v[k]);
            snprintf(name, sizeof(name), "%s=%#llx", f->name, (unsigned long long)vs.v[k]);
            try_slist(c, &s, name, f->expect, f->oracle);
        }
    }
}

/* Record headers (type, flags, length) and the stream header. */
static void mutate_headers(struct campaign *c, const struct slist *base)
{
    static const uint16_t types[] = {MIG_REC_MATCH, MIG_REC_REGS,      MIG_REC_EQC,
                                     MIG_REC_AEQC,  MIG_REC_TABLES,    MIG_REC_QP_ACTIVE,
                                     MIG_REC_IRQ,   MIG_REC_END,       0x0042};
    static struct slist s;
    char name[96];

    for (unsigned i = 0; i < base->n; i++) {
        const struct rec *r = &base->r[i];
        const uint32_t lens[] = {0, r->len - 1, r->len + 1, r->len + 4, 0xffff, 0xffffffffu};

        for (unsigned bit = 0; bit < 16; bit++) {
            s = *base;
            s.r[i].flags ^= (uint16_t)(1u << bit);
            snprintf(name, sizeof(name), "%s flags ^= %#x", mig_rec_type_name(r->type), 1u << bit);
            try_slist(c, &s, name, NULL, false);
        }
        for (size_t t = 0; t < AM_ARRAY_SIZE(types); t++) {
            if (types[t] == r->type)
                continue;
            s = *base;
            s.r[i].type = types[t];
            snprintf(name, sizeof(name), "%s type = %#x", mig_rec_type_name(r->type), types[t]);
            try_slist(c, &s, name, NULL, false);
            s.r[i].flags &= (uint16_t)~MIG_REC_F_MANDATORY;
            snprintf(name, sizeof(name), "%s type = %#x, optional", mig_rec_type_name(r->type),
                     types[t]);
            try_slist(c, &s, name, NULL, false);
        }
        for (size_t l = 0; l < AM_ARRAY_SIZE(lens); l++) {
            s = *base;
            s.r[i].declared = lens[l];
            snprintf(name, sizeof(name), "%s length = %u", mig_rec_type_name(r->type), lens[l]);
            try_slist(c, &s, name, NULL, false);
        }
    }
    for (unsigned byte = 0; byte < MIG_STREAM_HDR_LEN; byte++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            s = *base;
            s.hdr[byte] ^= (uint8_t)(1u << bit);
            snprintf(name, sizeof(name), "header byte %u ^= %#x", byte, 1u << bit);
            /* A later minor is accepted by design (it may only add records). */
            try_slist(c, &s, name, NULL, false);
        }
    }
}

/* Records dropped, doubled, swapped; an optional record added; contexts of
 * a guest that never loaded them. */
static void mutate_structure(struct campaign *c, const struct slist *base)
{
    static struct slist s;
    char name[96];

    for (unsigned i = 0; i < base->n; i++) {
        s = *base;
        memmove(&s.r[i], &s.r[i + 1], (s.n - i - 1) * sizeof(s.r[0]));
        s.n--;
        snprintf(name, sizeof(name), "%s dropped", mig_rec_type_name(base->r[i].type));
        try_slist(c, &s, name, NULL, false);
        s = *base;
        memmove(&s.r[i + 1], &s.r[i], (s.n - i) * sizeof(s.r[0]));
        s.n++;
        snprintf(name, sizeof(name), "%s doubled", mig_rec_type_name(base->r[i].type));
        try_slist(c, &s, name, NULL, false);
        if (i + 1 < base->n) {
            s = *base;
            s.r[i] = base->r[i + 1];
            s.r[i + 1] = base->r[i];
            snprintf(name, sizeof(name), "%s and %s swapped", mig_rec_type_name(base->r[i].type),
                     mig_rec_type_name(base->r[i + 1].type));
            try_slist(c, &s, name, NULL, false);
        }
    }
    s = *base;
    s.r[s.n] = s.r[s.n - 1];
    s.r[s.n - 1] = (struct rec){.type = 0x0100, .flags = 0, .declared = 8, .len = 8};
    s.n++;
    try_slist(c, &s, "an unknown optional record before END", NULL, false);
    for (unsigned k = 0; k < 2; k++) {
        int r = slist_find(base, k == 0 ? MIG_REC_EQC : MIG_REC_AEQC);

        if (r < 0) {
            fail_msg("the base stream has no %s record", k == 0 ? "EQC" : "AEQC");
            return;
        }
        s = *base;
        memset(s.r[r].p, 0, MIG_EQC_LEN);
        try_slist(c, &s, k == 0 ? "EQC never loaded (all zero)" : "AEQC never loaded (all zero)",
                  NULL, true);
    }
}

/* Each record of the base replaced by a donor's, and the donor's state
 * records under the base's MATCH. */
static void splice_from(struct campaign *c, const struct slist *base, const struct source *donor,
                        const char *label)
{
    static struct slist s, d;
    char name[96];

    slist_parse(&d, donor->stream, donor->len);
    for (unsigned i = 0; i + 1 < base->n; i++) {
        int r = slist_find(&d, base->r[i].type);

        if (r < 0 && base->r[i].type == MIG_REC_QCTX)
            continue; /* the donor's contexts are all in tables */
        assert_true(r >= 0);
        s = *base;
        s.r[i] = d.r[r];
        snprintf(name, sizeof(name), "%s from %s", mig_rec_type_name(base->r[i].type), label);
        try_slist(c, &s, name, NULL, false);
    }
    s = d;
    s.r[0] = base->r[0];
    memcpy(s.hdr, base->hdr, sizeof(s.hdr));
    snprintf(name, sizeof(name), "every state record from %s", label);
    try_slist(c, &s, name, NULL, false);
}

static void campaign_report(const struct campaign *c)
{
    print_message("tamper campaign %s: %u streams: %u refused (%u only by the destination's "
                  "identity), %u accepted; %u ERROR, %u accepted but not held by the device, %u "
                  "refused though the device takes them\n",
                  c->label, c->streams, c->refused, c->identity, c->accepted, c->errors, c->unheld,
                  c->overstrict);
    for (unsigned k = 0; k < 3; k++)
        for (unsigned i = 0; i < c->nnotes[k]; i++)
            print_message("  %s\n", c->notes[k][i]);
}

/* ---- the tests ------------------------------------------------------------- */

static struct source base4, donor3, donor8, base3, base4q;
static struct mig_side dst4, dst3;

static int setup(void **state)
{
    (void)state;
    source_make(&base4, 4, QM_REV_V4, MIG_HW_V4, 2, 24, 1);
    source_make(&donor3, 4, QM_REV_V3, MIG_HW_V3, 3, 40, 2);
    source_make(&donor8, 8, QM_REV_V4, MIG_HW_V4, 6, 30, 0);
    source_make_qstate(&base4q);
    side_create(&dst4, 4, QM_REV_V4, MIG_HW_V4, ram_size());
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    side_destroy(&base4.side);
    side_destroy(&donor3.side);
    side_destroy(&donor8.side);
    side_destroy(&base4q.side);
    side_destroy(&dst4);
    return 0;
}

static void run_campaign(struct campaign *c, const struct source *donor_a, const char *label_a,
                         const struct source *donor_b, const char *label_b)
{
    static struct mig_stream_content b;
    static struct slist base;

    slist_parse(&base, c->base->stream, c->base->len);
    assert_int_equal(mig_stream_check(c->base->stream, c->base->len, NULL, &b, NULL, 0), 0);
    /* The untampered stream itself loads and runs. */
    evaluate(c, c->base->stream, c->base->len, "the saved stream", NULL, true);
    assert_int_equal(c->accepted, 1);
    mutate_fields(c, &base, &b);
    mutate_headers(c, &base);
    mutate_structure(c, &base);
    splice_from(c, &base, donor_a, label_a);
    splice_from(c, &base, donor_b, label_b);
    assert_int_equal(mig_reset(c->dst->mig), 0);
    campaign_report(c);
    assert_int_equal(c->streams, c->refused + c->accepted + c->errors);
    assert_int_equal(c->errors, 0);
    assert_int_equal(c->unheld, 0);
    assert_int_equal(c->overstrict, 0);
}

static void test_no_tampered_stream_sends_a_v4_destination_to_error(void **state)
{
    static struct campaign c;
    (void)state;

    c = (struct campaign){.label = "v4", .base = &base4, .dst = &dst4,
                          .door = door_of(MIG_HW_V4)};
    run_campaign(&c, &donor3, "a v3 VF", &donor8, "an 8-queue VF");
}

static void test_no_tampered_stream_sends_a_v3_destination_to_error(void **state)
{
    static struct campaign c;
    (void)state;

    source_make(&base3, 4, QM_REV_V3, MIG_HW_V3, 2, 24, 1);
    side_create(&dst3, 4, QM_REV_V3, MIG_HW_V3, ram_size());
    c = (struct campaign){.label = "v3", .base = &base3, .dst = &dst3,
                          .door = door_of(MIG_HW_V3)};
    run_campaign(&c, &base4, "a v4 VF", &donor8, "an 8-queue VF");
    side_destroy(&base3.side);
    side_destroy(&dst3);
}

static void test_no_tampered_queue_state_sends_a_destination_to_error(void **state)
{
    static struct campaign c;
    static struct mig_stream_content b;
    (void)state;

    /* The base carries what the records are for. */
    assert_int_equal(mig_stream_check(base4q.stream, base4q.len, NULL, &b, NULL, 0), 0);
    assert_int_equal(b.state.qs.bits[MIG_QS_SQ_STOPPED], 0x4);
    assert_true(b.state.qs.bits[MIG_QS_CQ_DISARMED] != 0);
    assert_int_equal(b.state.ctx_cq, 0x7);
    assert_int_equal(b.state.ctx_sq, 0);
    c = (struct campaign){.label = "v4 queue states", .base = &base4q, .dst = &dst4,
                          .door = door_of(MIG_HW_V4)};
    run_campaign(&c, &base4, "a v4 VF", &donor8, "an 8-queue VF");
}

/* Issue 11's v4 denial: whatever a guest writes to a register the stream
 * carries, its VF still migrates, and the destination holds what the
 * source held (PAGE_SIZE 3 included: the register keeps two bits). */
static void test_every_value_a_guest_writes_to_a_saved_register_migrates(void **state)
{
    static struct mig_side src, dst;
    static struct tdrv drv;
    const struct tdrv_cfg c = source_cfg(4);
    unsigned migrations = 0;
    (void)state;

    side_create(&src, 4, QM_REV_V4, MIG_HW_V4, ram_size());
    side_create(&dst, 4, QM_REV_V4, MIG_HW_V4, ram_size());
    for (unsigned r = 0; r < MIG_REG_COUNT; r++) {
        const struct mig_reg_desc *d = &mig_saved_regs[r];

        if (d->restore == MIG_REG_DERIVED)
            continue; /* read-only */
        for (uint64_t v = 0; v <= (uint64_t)d->valid_mask + 1; v++) {
            uint32_t value = v > d->valid_mask ? 0xffffffffu : (uint32_t)v, held, got = 0;

            assert_int_equal(mig_reset(src.mig), 0);
            tdrv_bind(&drv, src.dev, 1, src.ram, ram_size(), &c);
            assert_int_equal(tdrv_init(&drv), 0);
            assert_int_equal(tdrv_qp_start(&drv, 0, 0), 0);
            tdrv_reg_write(&drv, d->offset, value);
            held = tdrv_reg_read(&drv, d->offset);
            assert_int_equal(drv.errors, 0);
            migrate(&src, &dst, 1, 0, NULL, NULL); /* asserts the destination RUNNING */
            assert_int_equal(qm_bar_read32(dst.dev, 1, d->offset, &got), 0);
            if (got != held)
                fail_msg("%s: the guest wrote %#x, the source held %#x, the destination %#x",
                         d->name, value, held, got);
            migrations++;
        }
    }
    print_message("%u migrations, one per value a guest wrote to a saved register\n",
                  migrations);
    side_destroy(&src);
    side_destroy(&dst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_tampered_stream_sends_a_v4_destination_to_error),
        cmocka_unit_test(test_no_tampered_stream_sends_a_v3_destination_to_error),
        cmocka_unit_test(test_no_tampered_queue_state_sends_a_destination_to_error),
        cmocka_unit_test(test_every_value_a_guest_writes_to_a_saved_register_migrates),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
