/* Every queue state a guest can create migrates (issue 11): each one is
 * built on a source with the in-test driver (tdrv), migrated, and the
 * destination must show the same state through the migration door's
 * registers and qm_debug, and behave the same on the guest's next action
 * (a doorbell, a restart), with no job lost or run twice.
 *
 * Faults are made the way a guest makes them: a ring whose guest pages the
 * source's IOMMU does not map. The destination maps all of its RAM, so a
 * state lost in migration shows: the broken queue would simply run there. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/common.h"
#include "mig_fixture.h"
#include "qm/qm_debug.h"

#define SQ_RING_BYTES 0x20000ull
#define CQ_RING_BYTES 0x4000ull

static struct tdrv drv; /* the guest driver's state, as big as a guest's */
static const char *ready_stream_path; /* a 1.0 stream saved before 1.1 (argv[1]) */

static uint64_t sq_ring(unsigned q) { return TDRV_GPA_RINGS + q * TDRV_RING_STRIDE; }
static uint64_t cq_ring(unsigned q) { return sq_ring(q) + SQ_RING_BYTES; }

static void wait_until(bool (*cond)(void *), void *arg)
{
    uint64_t deadline = am_now_ns() + 60ull * 1000000000ull;
    struct timespec ts = {0, 100000};

    while (!cond(arg)) {
        assert_true(am_now_ns() < deadline);
        nanosleep(&ts, NULL);
    }
}

/* ---- the migration door of a side, as the host driver sees it ------------ */

struct door {
    unsigned fn;   /* function whose BAR2 is used */
    uint64_t mig;  /* QM_WIN_* registers add to this */
};

static struct door door_of(enum mig_hw_mode mode)
{
    return mode == MIG_HW_V4 ? (struct door){0, QM_PF_MIG_WINDOW(1)}
                             : (struct door){1, QM_V3_MIG_HALF};
}

static uint32_t win32(struct mig_side *s, enum mig_hw_mode mode, uint32_t off)
{
    struct door d = door_of(mode);
    uint32_t v = 0;

    assert_int_equal(qm_bar_read32(s->dev, d.fn, d.mig + off, &v), 0);
    return v;
}

static uint64_t win64(struct mig_side *s, enum mig_hw_mode mode, uint32_t off)
{
    return (uint64_t)win32(s, mode, off + 4) << 32 | win32(s, mode, off);
}

static struct qm_queue_debug dq(struct mig_side *s, unsigned q)
{
    struct qm_queue_debug d;

    assert_int_equal(qm_debug_queue(s->dev, 1, q, &d), 0);
    return d;
}

static struct qm_fn_debug dfn(struct mig_side *s)
{
    struct qm_fn_debug d;

    assert_int_equal(qm_debug_fn(s->dev, 1, &d), 0);
    return d;
}

static struct qm_fn_counters dcnt(struct mig_side *s)
{
    struct qm_fn_counters c;

    assert_int_equal(qm_debug_fn_counters(s->dev, 1, &c), 0);
    return c;
}

/* Guest RAM [gpa, gpa + len) leaves the VF's IOMMU domain (the rest stays
 * mapped): the device faults there, the driver's own accesses do not. */
static void unmap_pages(struct mig_side *s, uint64_t gpa, uint64_t len)
{
    struct iommu_domain *dom = qm_dev_iommu(s->dev, 1);

    iommu_unmap_all(dom);
    assert_int_equal(iommu_map_host(dom, 0, gpa, s->ram, IOMMU_READ | IOMMU_WRITE), 0);
    assert_int_equal(iommu_map_host(dom, gpa + len, s->ram_size - gpa - len, s->ram + gpa + len,
                                    IOMMU_READ | IOMMU_WRITE),
                     0);
}

/* Two holes, lo below hi. */
static void unmap_two(struct mig_side *s, uint64_t lo, uint64_t lo_len, uint64_t hi, uint64_t hi_len)
{
    struct iommu_domain *dom = qm_dev_iommu(s->dev, 1);
    const unsigned rw = IOMMU_READ | IOMMU_WRITE;

    iommu_unmap_all(dom);
    assert_int_equal(iommu_map_host(dom, 0, lo, s->ram, rw), 0);
    assert_int_equal(iommu_map_host(dom, lo + lo_len, hi - lo - lo_len, s->ram + lo + lo_len, rw), 0);
    assert_int_equal(iommu_map_host(dom, hi + hi_len, s->ram_size - hi - hi_len,
                                    s->ram + hi + hi_len, rw),
                     0);
}

static void pair_setup(struct mig_side *src, struct mig_side *dst, const struct tdrv_cfg *c,
                       unsigned qps, uint8_t rev, enum mig_hw_mode mode)
{
    uint64_t size = tdrv_ram_size(c);

    side_create(src, qps, rev, mode, size);
    side_create(dst, qps, rev, mode, size);
    tdrv_bind(&drv, src->dev, 1, src->ram, size, c);
    assert_int_equal(tdrv_init(&drv), 0);
}

static void pair_teardown(struct mig_side *src, struct mig_side *dst)
{
    side_destroy(src);
    side_destroy(dst);
}

/* The AEQE at index i of the guest's AEQ ring. */
static uint32_t aeqe_at(const struct mig_side *s, unsigned i)
{
    return am_le32(s->ram + TDRV_GPA_AEQ + 4u * i);
}

/* Polls (reaping) until no job of SQ q is in flight. */
static void reap_queue(unsigned q)
{
    uint64_t deadline = am_now_ns() + 60ull * 1000000000ull;
    struct timespec ts = {0, 100000};

    while (drv.q[q].inflight > 0) {
        if (tdrv_poll(&drv) == 0) {
            assert_true(am_now_ns() < deadline);
            nanosleep(&ts, NULL);
        }
    }
}

static void decode(const uint8_t *stream, size_t len, struct mig_stream_content *c)
{
    char err[192] = "";

    if (mig_stream_decode(stream, len, c, err, sizeof(err)) != 0)
        fail_msg("the saved stream does not decode: %s", err);
}

/* ---- conditions ------------------------------------------------------------- */

struct qcond {
    struct mig_side *s;
    unsigned q;
    unsigned n;
};

static bool cq_holds(void *arg)
{
    const struct qcond *c = arg;

    return tdrv_cq_pending(&drv, c->q) == c->n;
}

static bool sq_is_broken(void *arg)
{
    const struct qcond *c = arg;

    return dq(c->s, c->q).sq_broken;
}

static bool cq_is_broken(void *arg)
{
    const struct qcond *c = arg;

    return dq(c->s, c->q).cq_broken;
}

static bool eq_is_broken(void *arg)
{
    return dfn(arg).eq_broken;
}

static bool fn_is_halted(void *arg)
{
    return dfn(arg).halted;
}

/* ---- stopped with SQEs left ------------------------------------------------- */

/* Two SQs complete into CQ 0: SQ 0's 1023 jobs fill it, SQ 1's 300 wait
 * behind it; the guest stops consuming and stops SQ 1 with the CQ full: the
 * device posts AEQE type 0 once and stops SQ 1 with its SQEs unexecuted
 * (driver-compat.md, CQ full). */
static void stopped_behind_a_full_cq(uint8_t rev, enum mig_hw_mode mode)
{
    static struct mig_side src, dst;
    const struct tdrv_cfg c = {.nqps = 2, .in_len = 256, .out_len = 1024, .pool = 1100};
    struct qcond full = {&src, 0, TDRV_DEPTH - 1};
    struct qm_queue_debug before, after;
    struct qm_fn_counters cnt;
    uint16_t aeq_tail;

    pair_setup(&src, &dst, &c, 2, rev, mode);
    assert_int_equal(tdrv_qp_start(&drv, 0, 0), 0);
    assert_int_equal(tdrv_qp_start(&drv, 1, 0), 0);
    assert_int_equal(tdrv_submit_many(&drv, 1, TDRV_DEPTH - 1), 0);
    wait_until(cq_holds, &full);
    for (unsigned i = 0; i < 300; i++)
        assert_true(tdrv_submit(&drv, 1) >= 0);
    assert_int_equal(tdrv_mailbox(&drv, QM_MB_CMD_STOP_QP, 1, 0, 0, NULL), 0);
    before = dq(&src, 1);
    assert_true(before.stopped && before.sq_head != before.sq_tail);
    assert_true(dq(&src, 0).cq_overflow_posted);
    aeq_tail = dfn(&src).aeq_tail;
    assert_int_equal(aeq_tail, 1);
    assert_int_equal(win64(&src, mode, QM_WIN_SQ_STOPPED_L), 0x2);

    migrate(&src, &dst, 1, 0, NULL, NULL);

    /* The same state, through the registers and the model's own view. */
    assert_int_equal(win64(&dst, mode, QM_WIN_SQ_STOPPED_L), 0x2);
    assert_int_equal(win64(&dst, mode, QM_WIN_CQ_OVERFLOW_L), 0x1);
    /* Derived: CQ 0 is stalled again exactly when SQ 0 (not stopped) still
     * has SQEs waiting for it. */
    assert_int_equal(win64(&dst, mode, QM_WIN_CQ_STALLED_L),
                     dq(&dst, 0).sq_head != dq(&dst, 0).sq_tail ? 0x1 : 0);
    after = dq(&dst, 1);
    assert_true(after.stopped && !after.stopping);
    assert_int_equal(after.sq_head, before.sq_head);
    assert_int_equal(after.sq_tail, before.sq_tail);
    assert_int_equal(dfn(&dst).aeq_tail, aeq_tail);
    tdrv_switch(&drv, dst.dev, dst.ram);
    assert_int_equal(tdrv_cq_pending(&drv, 0), TDRV_DEPTH - 1);
    /* An SQ doorbell on the stopped queue is ignored, as on the source. */
    cnt = dcnt(&dst);
    tdrv_doorbell(&drv, 1, QM_DB_CMD_SQ, drv.q[1].sq_tail, 0);
    assert_int_equal(dcnt(&dst).doorbells_ignored, cnt.doorbells_ignored + 1);
    /* Reaping the CQ lets SQ 0 finish; SQ 1 stays stopped, untouched. */
    reap_queue(0);
    after = dq(&dst, 1);
    assert_true(after.stopped);
    assert_int_equal(after.sq_head, before.sq_head);
    assert_int_equal(drv.aeqes, 1); /* the one AEQE, posted on the source */
    assert_int_equal(aeqe_at(&dst, 0) >> QM_AEQE_TYPE_SHIFT, QM_AEQE_CQ_OVERFLOW);
    assert_int_equal(dcnt(&dst).aeqes_posted, 0);
    /* The guest starts SQ 1 again where it stopped: its SQEs run, once. */
    assert_int_equal(tdrv_qp_resume(&drv, 1), 0);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(tdrv_check_exactly_once(&drv), 0);
    assert_int_equal(drv.completions, TDRV_DEPTH - 1 + 300);
    pair_teardown(&src, &dst);
}

static void test_a_queue_stopped_behind_a_full_cq_stays_stopped_with_its_sqes_left(void **state)
{
    (void)state;
    stopped_behind_a_full_cq(QM_REV_V4, MIG_HW_V4);
}

static void test_a_stopped_queue_with_sqes_left_migrates_in_v3_mode_too(void **state)
{
    (void)state;
    stopped_behind_a_full_cq(QM_REV_V3, MIG_HW_V3);
}

/* ---- STOP_QP still draining ------------------------------------------------- */

/* A worker frozen on the queue's first job makes the STOP_QP outlast its
 * budget: the guest's mailbox stays busy (v4: the host has its own). The
 * destination keeps it busy and completes it when the drain ends there. */
static void test_a_stop_qp_still_draining_completes_on_the_destination(void **state)
{
    static struct mig_side src, dst;
    static struct mig_stream_content content;
    const struct tdrv_cfg c = {.nqps = 2, .in_len = 4096, .out_len = 8192, .pool = 32};
    uint8_t stream[MIG_STREAM_MAX];
    uint64_t deadline;
    struct qm_fn_counters cnt;
    uint32_t mb = 0;
    size_t len;
    (void)state;

    pair_setup(&src, &dst, &c, 2, QM_REV_V4, MIG_HW_V4);
    assert_int_equal(tdrv_qp_start(&drv, 0, 0), 0);
    assert_int_equal(qm_debug_freeze_arm(src.dev, QM_FREEZE_FETCHED), 0);
    assert_int_equal(tdrv_submit_many(&drv, 1, 20), 0);
    assert_int_equal(qm_debug_freeze_wait(src.dev, 20000), 0);
    assert_int_equal(tdrv_mailbox_post(&drv, QM_MB_CMD_STOP_QP, 0), 0);
    assert_true(dq(&src, 0).stopping && dfn(&src).fn_mb_busy);

    migrate_to_stop(&src, &dst, 1, 0, stream, &len);
    assert_int_equal(qm_debug_freeze_release(src.dev, 20000), 0);
    decode(stream, len, &content);
    assert_int_equal(content.state.qs.bits[MIG_QS_SQ_STOPPING], 0x1);
    assert_int_equal(content.state.qs.mb_w0 & 0xffu, QM_MB_CMD_STOP_QP);
    assert_true(content.state.qs.mb_w0 & (1u << QM_MB_BUSY_SHIFT));
    /* Restored, not yet running: the guest's mailbox reads busy, on STOP_QP. */
    assert_int_equal(qm_bar_read32(dst.dev, 1, QM_MAILBOX, &mb), 0);
    assert_true(mb & (1u << QM_MB_BUSY_SHIFT));
    assert_int_equal(mb & 0xffu, QM_MB_CMD_STOP_QP);
    assert_int_equal(win64(&dst, MIG_HW_V4, QM_WIN_SQ_STOPPING_L), 0x1);
    assert_true(dq(&dst, 0).stop_waiting);
    assert_int_equal(mig_set_state(dst.mig, VFIO_MIG_STATE_RUNNING), 0);

    /* Running: the drain finishes there and the command completes, OK. */
    tdrv_switch(&drv, dst.dev, dst.ram);
    deadline = am_now_ns() + 60ull * 1000000000ull;
    while (tdrv_reg_read(&drv, QM_MAILBOX) & (1u << QM_MB_BUSY_SHIFT)) {
        assert_true(am_now_ns() < deadline);
        tdrv_poll(&drv);
    }
    assert_int_equal((tdrv_reg_read(&drv, QM_MAILBOX) >> QM_MB_STATUS_SHIFT) & QM_MB_STATUS_MASK,
                     0);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(drv.completions, 20);
    assert_true(dq(&dst, 0).stopped);
    assert_int_equal(win64(&dst, MIG_HW_V4, QM_WIN_SQ_STOPPED_L), 0x1);
    cnt = dcnt(&dst);
    tdrv_doorbell(&drv, 0, QM_DB_CMD_SQ, 5, 0);
    assert_int_equal(dcnt(&dst).doorbells_ignored, cnt.doorbells_ignored + 1);
    /* A restart (a new SQC) runs new work. */
    assert_int_equal(tdrv_qp_start(&drv, 0, 0), 0);
    assert_int_equal(tdrv_submit_many(&drv, 1, 10), 0);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(tdrv_check_exactly_once(&drv), 0);
    pair_teardown(&src, &dst);
}

/* ---- broken queues ---------------------------------------------------------- */

/* SQ 1's ring is outside the source's mapping: its first fetch breaks it
 * (AEQE type 2). On the destination the ring is mapped, so a lost state
 * would let it run; it must stay broken until the guest restarts it. */
static void broken_sq(uint8_t rev, enum mig_hw_mode mode)
{
    static struct mig_side src, dst;
    const struct tdrv_cfg c = {.nqps = 2, .in_len = 2048, .out_len = 4096, .pool = 32};
    struct qcond broken = {&src, 1, 0};
    struct qm_fn_counters cnt;
    uint16_t head;

    pair_setup(&src, &dst, &c, 2, rev, mode);
    assert_int_equal(tdrv_qp_start(&drv, 0, 0), 0);
    assert_int_equal(tdrv_qp_start(&drv, 1, 1), 0);
    unmap_pages(&src, sq_ring(1), SQ_RING_BYTES);
    assert_true(tdrv_submit(&drv, 1) >= 0);
    wait_until(sq_is_broken, &broken);
    assert_int_equal(tdrv_submit_many(&drv, 1, 10), 0); /* SQ 0 works on */
    head = dq(&src, 1).sq_head;
    assert_int_equal(dfn(&src).aeq_tail, 1);

    migrate(&src, &dst, 1, 0, NULL, NULL);

    assert_int_equal(win64(&dst, mode, QM_WIN_SQ_BROKEN_L), 0x2);
    assert_true(dq(&dst, 1).sq_broken);
    assert_int_equal(dq(&dst, 1).sq_head, head);
    tdrv_switch(&drv, dst.dev, dst.ram);
    cnt = dcnt(&dst);
    tdrv_doorbell(&drv, 1, QM_DB_CMD_SQ, drv.q[1].sq_tail, 0);
    assert_int_equal(dcnt(&dst).doorbells_ignored, cnt.doorbells_ignored + 1);
    reap_queue(0);
    assert_int_equal(drv.q[1].inflight, 1); /* not run */
    assert_int_equal(drv.aeqes, 1);
    assert_int_equal(aeqe_at(&dst, 0) & 0xffffu, 1);
    assert_int_equal(aeqe_at(&dst, 0) >> QM_AEQE_TYPE_SHIFT, QM_AEQE_CQE_ERROR);
    assert_int_equal(dcnt(&dst).aeqes_posted, 0); /* not posted twice */
    /* The guest's restart of SQ 1 (same ring, same head) runs its job once. */
    assert_int_equal(tdrv_qp_resume(&drv, 1), 0);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(tdrv_check_exactly_once(&drv), 0);
    assert_int_equal(drv.completions, 11);
    assert_int_equal(dcnt(&dst).aeqes_posted, 0);
    pair_teardown(&src, &dst);
}

static void test_a_broken_sq_stays_broken_and_its_aeqe_is_not_posted_twice(void **state)
{
    (void)state;
    broken_sq(QM_REV_V4, MIG_HW_V4);
}

static void test_a_broken_sq_stays_broken_in_v3_mode_too(void **state)
{
    (void)state;
    broken_sq(QM_REV_V3, MIG_HW_V3);
}

/* CQ 1's ring is outside the mapping: the job's CQE cannot be written, the
 * CQ breaks (AEQE type 2) and the job stays at the SQ's head. */
static void broken_cq(uint8_t rev, enum mig_hw_mode mode)
{
    static struct mig_side src, dst;
    const struct tdrv_cfg c = {.nqps = 2, .in_len = 2048, .out_len = 4096, .pool = 32};
    struct qcond broken = {&src, 1, 0};

    pair_setup(&src, &dst, &c, 2, rev, mode);
    assert_int_equal(tdrv_qp_start(&drv, 0, 0), 0);
    assert_int_equal(tdrv_qp_start(&drv, 1, 1), 0);
    unmap_pages(&src, cq_ring(1), CQ_RING_BYTES);
    assert_true(tdrv_submit(&drv, 1) >= 0);
    wait_until(cq_is_broken, &broken);
    assert_int_equal(dq(&src, 1).sq_head, 0);

    migrate(&src, &dst, 0, 0, NULL, NULL);

    assert_int_equal(win64(&dst, mode, QM_WIN_CQ_BROKEN_L), 0x2);
    assert_true(dq(&dst, 1).cq_broken);
    tdrv_switch(&drv, dst.dev, dst.ram);
    /* Nothing completes into a broken CQ: a new job waits too. */
    assert_true(tdrv_submit(&drv, 1) >= 0);
    tdrv_poll(&drv);
    assert_int_equal(dcnt(&dst).jobs_done, 0);
    assert_int_equal(dq(&dst, 1).sq_head, 0);
    assert_int_equal(drv.aeqes, 1);
    assert_int_equal(dcnt(&dst).aeqes_posted, 0);
    /* The guest loads CQ 1 again: both jobs run, once each. */
    assert_int_equal(tdrv_cq_restart(&drv, 1), 0);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(tdrv_check_exactly_once(&drv), 0);
    assert_int_equal(drv.completions, 2);
    pair_teardown(&src, &dst);
}

static void test_a_broken_cq_stays_broken_until_the_guest_reloads_it(void **state)
{
    (void)state;
    broken_cq(QM_REV_V4, MIG_HW_V4);
}

static void test_a_broken_cq_stays_broken_in_v3_mode_too(void **state)
{
    (void)state;
    broken_cq(QM_REV_V3, MIG_HW_V3);
}

/* The EQ's ring is outside the mapping: the first EQE breaks it (AEQE type
 * 2 with the CQ's number). Its shadow still reads the context as loaded,
 * which used to come back live on the destination. */
static void broken_eq(uint8_t rev, enum mig_hw_mode mode)
{
    static struct mig_side src, dst;
    const struct tdrv_cfg c = {.nqps = 2, .in_len = 2048, .out_len = 4096, .pool = 32};
    struct qm_fn_counters cnt;
    uint32_t shadow[7];

    pair_setup(&src, &dst, &c, 2, rev, mode);
    assert_int_equal(tdrv_qp_start(&drv, 0, 0), 0);
    unmap_pages(&src, TDRV_GPA_EQ, 0x2000);
    assert_true(tdrv_submit(&drv, 0) >= 0);
    wait_until(eq_is_broken, &src);
    for (unsigned i = 0; i < 7; i++)
        shadow[i] = win32(&src, mode, mode == MIG_HW_V4 ? QM_WIN_EQC_SHADOW + 4 * i : 4 * i);

    migrate(&src, &dst, 1, 0, NULL, NULL);

    assert_int_equal(win32(&dst, mode, QM_WIN_XEQ_STATE), QM_XEQ_ST_EQ_BROKEN);
    assert_false(dfn(&dst).eq_valid);
    assert_true(dfn(&dst).eq_broken);
    for (unsigned i = 0; i < 7; i++)
        assert_int_equal(win32(&dst, mode, mode == MIG_HW_V4 ? QM_WIN_EQC_SHADOW + 4 * i : 4 * i),
                         shadow[i]);
    tdrv_switch(&drv, dst.dev, dst.ram);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(drv.aeqes, 1);
    assert_int_equal(aeqe_at(&dst, 0) >> QM_AEQE_TYPE_SHIFT, QM_AEQE_CQE_ERROR);
    /* More jobs complete (the guest polls its CQs), with no EQE and no
     * second AEQE. */
    cnt = dcnt(&dst);
    assert_int_equal(tdrv_submit_many(&drv, 1, 5), 0);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(dcnt(&dst).eqes_posted, 0);
    assert_true(dcnt(&dst).eqes_dropped > cnt.eqes_dropped);
    assert_int_equal(dcnt(&dst).aeqes_posted, 0);
    /* The guest loads its EQ again: events come back. */
    assert_int_equal(tdrv_eq_reload(&drv), 0);
    assert_int_equal(win32(&dst, mode, QM_WIN_XEQ_STATE), 0);
    assert_int_equal(tdrv_submit_many(&drv, 1, 5), 0);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_true(dcnt(&dst).eqes_posted > 0);
    assert_int_equal(tdrv_check_exactly_once(&drv), 0);
    assert_int_equal(drv.completions, 11);
    pair_teardown(&src, &dst);
}

static void test_a_broken_eq_stays_broken_and_events_return_when_the_guest_reloads_it(void **state)
{
    (void)state;
    broken_eq(QM_REV_V4, MIG_HW_V4);
}

static void test_a_broken_eq_stays_broken_in_v3_mode_too(void **state)
{
    (void)state;
    broken_eq(QM_REV_V3, MIG_HW_V3);
}

/* An AEQE that cannot be written halts the function until FLR. */
static void test_a_function_halted_by_an_aeq_fault_stays_halted_until_reset(void **state)
{
    static struct mig_side src, dst;
    const struct tdrv_cfg c = {.nqps = 2, .in_len = 2048, .out_len = 4096, .pool = 32};
    (void)state;

    pair_setup(&src, &dst, &c, 2, QM_REV_V4, MIG_HW_V4);
    assert_int_equal(tdrv_qp_start(&drv, 0, 0), 0);
    assert_int_equal(tdrv_qp_start(&drv, 1, 1), 0);
    unmap_two(&src, TDRV_GPA_AEQ, 0x1000, cq_ring(1), CQ_RING_BYTES);
    assert_true(tdrv_submit(&drv, 1) >= 0);
    wait_until(fn_is_halted, &src);

    migrate(&src, &dst, 1, 0, NULL, NULL);

    assert_int_equal(win32(&dst, MIG_HW_V4, QM_WIN_XEQ_STATE),
                     QM_XEQ_ST_AEQ_BROKEN | QM_XEQ_ST_HALTED);
    assert_true(dfn(&dst).halted);
    assert_true(dq(&dst, 1).cq_broken);
    tdrv_switch(&drv, dst.dev, dst.ram);
    /* Nothing runs on a halted function. */
    assert_true(tdrv_submit(&drv, 0) >= 0);
    tdrv_poll(&drv);
    assert_int_equal(dcnt(&dst).jobs_done, 0);
    assert_int_equal(dq(&dst, 0).sq_head, 0);
    /* The guest's way out is a reset and a fresh start. */
    assert_int_equal(qm_function_reset(dst.dev, 1), 0);
    assert_int_equal(win32(&dst, MIG_HW_V4, QM_WIN_XEQ_STATE), 0);
    tdrv_bind(&drv, dst.dev, 1, dst.ram, dst.ram_size, &c);
    assert_int_equal(tdrv_init(&drv), 0);
    assert_int_equal(tdrv_qp_start(&drv, 0, 0), 0);
    assert_int_equal(tdrv_submit_many(&drv, 1, 8), 0);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(tdrv_check_exactly_once(&drv), 0);
    pair_teardown(&src, &dst);
}

/* ---- CQ arming --------------------------------------------------------------- */

/* Jobs completed, their EQE posted, the guest has not reaped: the CQ is
 * disarmed (no EQE for the next CQEs) and must not post a spurious EQE when
 * the destination resumes; one re-armed while paused posts it then, as
 * RESUME_QM does on the source. cq is the CQ SQ 0 completes into. */
static void cq_arming(uint8_t rev, enum mig_hw_mode mode, bool rearm_while_paused, unsigned cq)
{
    static struct mig_side src, dst;
    const struct tdrv_cfg c = {.nqps = 4, .in_len = 2048, .out_len = 4096, .pool = 32};
    struct qcond five = {&src, cq, 5};
    uint16_t eq_tail;

    pair_setup(&src, &dst, &c, 4, rev, mode);
    if (cq != 0)
        assert_int_equal(tdrv_cq_restart(&drv, cq), 0); /* a CQ of its own, no SQ */
    assert_int_equal(tdrv_qp_start(&drv, 0, cq), 0);
    assert_int_equal(tdrv_submit_many(&drv, 1, 5), 0);
    wait_until(cq_holds, &five);
    assert_false(dq(&src, cq).cq_armed);
    eq_tail = dfn(&src).eq_tail;
    assert_int_equal(eq_tail, 1); /* one EQE for the five CQEs */
    if (rearm_while_paused) {
        assert_int_equal(mig_set_state(src.mig, VFIO_MIG_STATE_RUNNING_P2P), 0);
        tdrv_doorbell(&drv, (uint16_t)cq, QM_DB_CMD_CQ, 0, 1);
        assert_true(dq(&src, cq).cq_armed);
        assert_int_equal(dfn(&src).eq_tail, eq_tail); /* held by the pause */
    }
    assert_int_equal(win64(&src, mode, QM_WIN_CQ_DISARMED_L), rearm_while_paused ? 0 : 1u << cq);

    migrate(&src, &dst, !rearm_while_paused, 0, NULL, NULL);

    /* Disarmed either way: by the EQE on the source, or by the one the
     * re-armed CQ posted when the destination resumed. */
    assert_int_equal(win64(&dst, mode, QM_WIN_CQ_DISARMED_L), 1u << cq);
    assert_int_equal(dcnt(&dst).eqes_posted, rearm_while_paused ? 1 : 0);
    assert_int_equal(dfn(&dst).eq_tail, eq_tail + (rearm_while_paused ? 1 : 0));
    tdrv_switch(&drv, dst.dev, dst.ram);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(drv.eqes, rearm_while_paused ? 2 : 1);
    assert_int_equal(tdrv_submit_many(&drv, 1, 5), 0);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(tdrv_check_exactly_once(&drv), 0);
    assert_int_equal(drv.completions, 10);
    pair_teardown(&src, &dst);
}

static void test_a_disarmed_cq_posts_no_spurious_eqe_on_the_destination(void **state)
{
    (void)state;
    cq_arming(QM_REV_V4, MIG_HW_V4, false, 0);
    cq_arming(QM_REV_V3, MIG_HW_V3, false, 0);
}

static void test_a_cq_rearmed_while_paused_posts_its_eqe_when_the_destination_resumes(void **state)
{
    (void)state;
    cq_arming(QM_REV_V4, MIG_HW_V4, true, 0);
    cq_arming(QM_REV_V3, MIG_HW_V3, true, 0);
}

/* The same for a CQ no SQ of its own number uses: it is reloaded too. */
static void test_a_cq_fed_by_another_queues_sq_keeps_its_arming(void **state)
{
    (void)state;
    cq_arming(QM_REV_V4, MIG_HW_V4, false, 2);
    cq_arming(QM_REV_V4, MIG_HW_V4, true, 2);
}

/* ---- CQ full ------------------------------------------------------------------ */

static void test_a_full_cq_migrates_stalled_and_a_cq_doorbell_restarts_its_sqs(void **state)
{
    static struct mig_side src, dst;
    const struct tdrv_cfg c = {.nqps = 2, .in_len = 256, .out_len = 1024, .pool = 800};
    struct qcond full = {&src, 0, TDRV_DEPTH - 1};
    (void)state;

    pair_setup(&src, &dst, &c, 2, QM_REV_V4, MIG_HW_V4);
    assert_int_equal(tdrv_qp_start(&drv, 0, 0), 0);
    assert_int_equal(tdrv_qp_start(&drv, 1, 0), 0);
    assert_int_equal(tdrv_submit_many(&drv, 2, 1400), 0);
    wait_until(cq_holds, &full);
    assert_int_equal(win64(&src, MIG_HW_V4, QM_WIN_CQ_STALLED_L), 0x1);
    migrate(&src, &dst, 1, 0, NULL, NULL);
    /* Derived, not carried: the first fetch on the destination finds the
     * CQ full again. */
    assert_int_equal(win64(&dst, MIG_HW_V4, QM_WIN_CQ_STALLED_L), 0x1);
    assert_true(dq(&dst, 0).cq_stalled);
    assert_int_equal(dcnt(&dst).jobs_done, 0);
    tdrv_switch(&drv, dst.dev, dst.ram);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(win64(&dst, MIG_HW_V4, QM_WIN_CQ_STALLED_L), 0);
    assert_int_equal(tdrv_check_exactly_once(&drv), 0);
    assert_int_equal(drv.completions, 1400);
    pair_teardown(&src, &dst);
}

/* ---- contexts in no table --------------------------------------------------------- */

/* A guest that loads its SQC/CQC by mailbox and never sets a table base (or
 * sets one whose slots lie outside its RAM): CACHE_WB cannot put those
 * contexts in guest RAM, so they travel in QCTX and are loaded straight
 * into the destination's context cache. */
static void contexts_in_no_table(uint8_t rev, enum mig_hw_mode mode, uint64_t sqc_table,
                                 uint64_t cqc_table, uint64_t want_sq, uint64_t want_cq)
{
    static struct mig_side a, b;
    static struct mig_stream_content content;
    struct tdrv_cfg c = {.nqps = 4, .in_len = 8192, .out_len = 16384, .pool = 16};
    uint8_t stream[MIG_STREAM_MAX];
    size_t len;

    c.sqc_table = sqc_table;
    c.cqc_table = cqc_table;
    pair_setup(&a, &b, &c, 4, rev, mode);
    for (unsigned q = 0; q < 4; q++)
        assert_int_equal(tdrv_qp_start(&drv, q, q), 0);
    assert_int_equal(tdrv_submit_many(&drv, 4, 48), 0);
    migrate(&a, &b, 1, 0, stream, &len);
    decode(stream, len, &content);
    assert_int_equal(content.state.ctx_sq, want_sq);
    assert_int_equal(content.state.ctx_cq, want_cq);
    assert_int_equal(len, mig_stream_full_len() + MIG_REC_HDR_LEN + MIG_QCTX_HDR_LEN +
                              MIG_QC_LEN * (am_bitmap_weight(&want_sq, 64) +
                                            am_bitmap_weight(&want_cq, 64)));
    for (unsigned q = 0; q < 4; q++) {
        struct qm_queue_debug d = dq(&b, q);

        assert_true(d.sq_loaded && d.cq_loaded);
    }
    tdrv_switch(&drv, b.dev, b.ram);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(tdrv_submit_many(&drv, 4, 24), 0);
    /* And back again, with jobs in flight. */
    assert_int_equal(mig_reset(a.mig), 0);
    migrate(&b, &a, 0, 0, NULL, NULL);
    tdrv_switch(&drv, a.dev, a.ram);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(tdrv_check_exactly_once(&drv), 0);
    assert_int_equal(drv.completions, 72);
    pair_teardown(&a, &b);
}

static void test_queues_loaded_without_table_bases_work_after_migration(void **state)
{
    (void)state;
    contexts_in_no_table(QM_REV_V4, MIG_HW_V4, TDRV_NO_TABLE, TDRV_NO_TABLE, 0xf, 0xf);
    contexts_in_no_table(QM_REV_V3, MIG_HW_V3, TDRV_NO_TABLE, TDRV_NO_TABLE, 0xf, 0xf);
    /* One table set, the other not. */
    contexts_in_no_table(QM_REV_V4, MIG_HW_V4, 0, TDRV_NO_TABLE, 0, 0xf);
}

static void test_contexts_whose_table_slots_are_outside_guest_ram_travel_in_the_stream(void **state)
{
    struct tdrv_cfg c = {.nqps = 4, .in_len = 8192, .out_len = 16384, .pool = 16};
    (void)state;

    /* Slots 0 and 1 are the last 64 bytes of RAM, 2 and 3 beyond it. */
    contexts_in_no_table(QM_REV_V4, MIG_HW_V4, tdrv_ram_size(&c) - 64, 0, 0xc, 0);
}

/* ---- staging and results the guest has not finished with ------------------------ */

/* A doorbell and a mailbox store split across the pause, and a mailbox
 * result read only after it: the destination has the same staged bytes and
 * result (v4: in v3 the host's own commands and doorbells share these). */
static void test_a_split_doorbell_a_split_mailbox_and_an_unread_result_survive(void **state)
{
    static struct mig_side src, dst;
    const struct tdrv_cfg c = {.nqps = 2, .in_len = 2048, .out_len = 4096, .pool = 32};
    struct qm_mailbox dump = {
        .w0 = QM_MB_CMD_SQC | 1u << QM_MB_BUSY_SHIFT | 1u << QM_MB_OP_SHIFT,
        .queue_num = 1,
        .base_l = (uint32_t)TDRV_GPA_SCRATCH,
    };
    uint8_t m[16];
    uint64_t vft = 0, db;
    struct qm_sqc sqc;
    (void)state;

    pair_setup(&src, &dst, &c, 2, QM_REV_V4, MIG_HW_V4);
    assert_int_equal(tdrv_qp_start(&drv, 0, 0), 0);
    assert_int_equal(tdrv_qp_start(&drv, 1, 1), 0);
    /* A query whose result the guest reads after the migration. */
    assert_int_equal(tdrv_mailbox(&drv, QM_MB_CMD_SQC_VFT_V2, 0, 0, 1, &vft), 0);
    /* Three jobs on SQ 1, rung with a doorbell split in two dwords: the
     * low one (qn 1, SQ) before the pause. */
    for (unsigned i = 0; i < 3; i++)
        assert_true(tdrv_submit_nodb(&drv, 1) >= 0);
    db = qm_db_value(1, QM_DB_CMD_SQ, drv.q[1].sq_tail, 0);
    assert_int_equal(qm_bar_write32(src.dev, 1, QM_DB_SQCQ, (uint32_t)db), 0);
    /* The first 12 bytes of an SQC dump of queue 1 (x86 memcpy_toio). */
    memcpy(m, &dump, sizeof(m));
    for (unsigned i = 0; i < 12; i += 4)
        assert_int_equal(qm_bar_write(src.dev, 1, QM_MAILBOX + i, m + i, 4), 0);
    memset(src.ram + TDRV_GPA_SCRATCH, 0, sizeof(sqc));

    migrate(&src, &dst, 1, 0, NULL, NULL);

    tdrv_switch(&drv, dst.dev, dst.ram);
    assert_int_equal((uint64_t)tdrv_reg_read(&drv, QM_MB_DATA_H) << 32 |
                         tdrv_reg_read(&drv, QM_MB_DATA_L),
                     vft);
    /* The rest of the mailbox store: the command runs with all 16 bytes. */
    assert_int_equal(qm_bar_write(dst.dev, 1, QM_MAILBOX + 12, m + 12, 4), 0);
    assert_int_equal((tdrv_reg_read(&drv, QM_MAILBOX) >> QM_MB_STATUS_SHIFT) & QM_MB_STATUS_MASK,
                     0);
    memcpy(&sqc, dst.ram + TDRV_GPA_SCRATCH, sizeof(sqc));
    assert_int_equal(sqc.base_l, (uint32_t)sq_ring(1));
    assert_int_equal(sqc.dw3, QM_SQC_DW3(TDRV_DEPTH));
    /* The doorbell's high dword: SQ 1 gets its tail, the jobs run once. */
    assert_int_equal(dq(&dst, 1).sq_tail, 0);
    assert_int_equal(qm_bar_write32(dst.dev, 1, QM_DB_SQCQ + 4, (uint32_t)(db >> 32)), 0);
    assert_int_equal(dq(&dst, 1).sq_tail, 3);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(tdrv_check_exactly_once(&drv), 0);
    assert_int_equal(drv.completions, 3);
    pair_teardown(&src, &dst);
}

/* ---- streams without the 1.1 records ------------------------------------------ */

/* A 1.1 stream with QSTATE taken out and the minor set to 0 is what a 1.0
 * source sent: it loads as before (every queue fresh from its table), and
 * a saved 1.0 file still passes the check and loads. */
static void test_streams_without_qstate_still_load_as_before(void **state)
{
    static struct mig_side src, dst, old;
    static struct mig_stream_content content;
    const struct tdrv_cfg c = {.nqps = 4, .in_len = 2048, .out_len = 4096, .pool = 32};
    uint8_t stream[MIG_STREAM_MAX], v10[MIG_STREAM_MAX];
    struct qm_dev_config cfg;
    size_t len, n = 0, qoff;
    FILE *f;
    (void)state;

    pair_setup(&src, &dst, &c, 4, QM_REV_V4, MIG_HW_V4);
    for (unsigned q = 0; q < 4; q++)
        assert_int_equal(tdrv_qp_start(&drv, q, q), 0);
    assert_int_equal(tdrv_submit_many(&drv, 4, 40), 0);
    assert_int_equal(mig_set_state(dst.mig, VFIO_MIG_STATE_RESUMING), 0);
    assert_int_equal(mig_set_state(src.mig, VFIO_MIG_STATE_STOP_COPY), 0);
    len = side_read_all(&src, stream, sizeof(stream), 0);
    decode(stream, len, &content);
    assert_int_equal(content.records[7].type, MIG_REC_QSTATE);
    /* Every queue as a fresh load gives it: optional, a 1.0 reader skips it. */
    assert_int_equal(content.records[7].flags, 0);
    qoff = content.records[7].offset;
    memcpy(v10, stream, qoff);
    am_st16(v10 + 6, 0);
    n = qoff;
    assert_int_equal(mig_stream_put_end(v10, sizeof(v10), &n), 0);
    assert_int_equal(n, len - MIG_REC_HDR_LEN - MIG_QSTATE_LEN);
    memcpy(dst.ram, src.ram, src.ram_size);
    assert_int_equal(side_write_all(&dst, v10, n, 0), 0);
    assert_int_equal(mig_set_state(dst.mig, VFIO_MIG_STATE_RUNNING), 0);
    tdrv_switch(&drv, dst.dev, dst.ram);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(tdrv_check_exactly_once(&drv), 0);
    assert_int_equal(drv.completions, 40);
    pair_teardown(&src, &dst);

    if (ready_stream_path == NULL)
        return;
    f = fopen(ready_stream_path, "rb");
    assert_non_null(f);
    n = fread(v10, 1, sizeof(v10), f);
    fclose(f);
    decode(v10, n, &content);
    assert_int_equal(content.minor, 0);
    /* The file's VF: 4 queues, v4, no doorbell isolation. */
    qm_dev_config_default(&cfg);
    cfg.qps_per_vf = 4;
    cfg.db_isolation = false;
    side_create_cfg(&old, &cfg, MIG_HW_V4, 1u << 20);
    assert_int_equal(mig_set_state(old.mig, VFIO_MIG_STATE_RESUMING), 0);
    assert_int_equal(side_write_all(&old, v10, n, 0), 0);
    assert_int_equal(mig_set_state(old.mig, VFIO_MIG_STATE_RUNNING), 0);
    for (unsigned k = 0; k < MIG_QS_COUNT; k++)
        assert_int_equal(win64(&old, MIG_HW_V4, QM_WIN_SQ_STOPPED_L + 8 * k), 0);
    assert_int_equal(win32(&old, MIG_HW_V4, QM_WIN_XEQ_STATE), 0);
    side_destroy(&old);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_queue_stopped_behind_a_full_cq_stays_stopped_with_its_sqes_left),
        cmocka_unit_test(test_a_stopped_queue_with_sqes_left_migrates_in_v3_mode_too),
        cmocka_unit_test(test_a_stop_qp_still_draining_completes_on_the_destination),
        cmocka_unit_test(test_a_broken_sq_stays_broken_and_its_aeqe_is_not_posted_twice),
        cmocka_unit_test(test_a_broken_sq_stays_broken_in_v3_mode_too),
        cmocka_unit_test(test_a_broken_cq_stays_broken_until_the_guest_reloads_it),
        cmocka_unit_test(test_a_broken_cq_stays_broken_in_v3_mode_too),
        cmocka_unit_test(test_a_broken_eq_stays_broken_and_events_return_when_the_guest_reloads_it),
        cmocka_unit_test(test_a_broken_eq_stays_broken_in_v3_mode_too),
        cmocka_unit_test(test_a_function_halted_by_an_aeq_fault_stays_halted_until_reset),
        cmocka_unit_test(test_a_disarmed_cq_posts_no_spurious_eqe_on_the_destination),
        cmocka_unit_test(test_a_cq_rearmed_while_paused_posts_its_eqe_when_the_destination_resumes),
        cmocka_unit_test(test_a_cq_fed_by_another_queues_sq_keeps_its_arming),
        cmocka_unit_test(test_a_full_cq_migrates_stalled_and_a_cq_doorbell_restarts_its_sqs),
        cmocka_unit_test(test_queues_loaded_without_table_bases_work_after_migration),
        cmocka_unit_test(test_contexts_whose_table_slots_are_outside_guest_ram_travel_in_the_stream),
        cmocka_unit_test(test_a_split_doorbell_a_split_mailbox_and_an_unread_result_survive),
        cmocka_unit_test(test_streams_without_qstate_still_load_as_before),
    };

    if (argc > 1)
        ready_stream_path = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
