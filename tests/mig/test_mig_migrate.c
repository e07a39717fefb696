/* Whole migrations of a VF between two device models, driven by the in-test
 * guest driver (tdrv): every job completes exactly once with a correct
 * result, whatever was in flight, pending or stopped when the device moved. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/common.h"
#include "mig_fixture.h"
#include "qm/qm_debug.h"

static const struct tdrv_cfg cfg_small = {.nqps = 4, .in_len = 4096, .out_len = 8192, .pool = 64};

static struct tdrv drv; /* the guest driver's state, as big as a guest's */

static void wait_until(int (*cond)(void *), void *arg)
{
    uint64_t deadline = am_now_ns() + 60ull * 1000000000ull;
    struct timespec ts = {0, 100000};

    while (!cond(arg)) {
        assert_true(am_now_ns() < deadline);
        nanosleep(&ts, NULL);
    }
}

/* Source and destination for cfg, the driver started on the source with
 * queues [0, nstart). */
static void pair_setup(struct mig_side *src, struct mig_side *dst, const struct tdrv_cfg *c,
                       unsigned vf_qps, unsigned dst_qps, unsigned nstart)
{
    uint64_t size = tdrv_ram_size(c);

    side_create(src, vf_qps, QM_REV_V4, MIG_HW_V4, size);
    side_create(dst, dst_qps, QM_REV_V4, MIG_HW_V4, size);
    tdrv_bind(&drv, src->dev, 1, src->ram, size, c);
    assert_int_equal(tdrv_init(&drv), 0);
    for (unsigned q = 0; q < nstart; q++)
        assert_int_equal(tdrv_qp_start(&drv, q, q), 0);
}

static void finish_on(struct mig_side *s, unsigned nq, unsigned more)
{
    tdrv_switch(&drv, s->dev, s->ram);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(tdrv_submit_many(&drv, nq, more), 0);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(tdrv_check_exactly_once(&drv), 0);
}

static void test_a_loaded_vf_migrates_with_precopy_and_every_job_completes_once(void **state)
{
    static struct mig_side src, dst;
    struct tdrv_cfg c = cfg_small;
    uint8_t stream[MIG_STREAM_MAX];
    uint64_t h0, h1;
    size_t len;
    (void)state;

    c.in_len = 24 * 1024; /* long enough for jobs to be running at the pause */
    c.out_len = 32 * 1024;
    pair_setup(&src, &dst, &c, 4, 4, 4);
    assert_int_equal(tdrv_submit_many(&drv, 4, 4 * 40), 0);
    migrate(&src, &dst, 1, 0, stream, &len);
    assert_int_equal(len, mig_stream_full_len());
    assert_int_equal(mig_get_state(src.mig), VFIO_MIG_STATE_STOP_COPY);
    /* Nothing touches the source's RAM once it stopped. */
    h0 = am_crc32c(0, src.ram, src.ram_size);
    finish_on(&dst, 4, 4 * 16);
    h1 = am_crc32c(0, src.ram, src.ram_size);
    assert_int_equal(h0, h1);
    assert_true(drv.completions == 4 * 56);
    side_destroy(&src);
    side_destroy(&dst);
}

static void test_a_migration_straight_to_stop_copy_in_odd_pieces_works(void **state)
{
    static struct mig_side src, dst;
    (void)state;

    pair_setup(&src, &dst, &cfg_small, 4, 4, 2);
    assert_int_equal(tdrv_submit_many(&drv, 2, 50), 0);
    migrate(&src, &dst, 0, 7, NULL, NULL);
    finish_on(&dst, 2, 30);
    side_destroy(&src);
    side_destroy(&dst);
}

/* For each way into the saving group or the quiesced states, with jobs in
 * flight: back to RUNNING, and nothing is lost or done twice. */
static void test_aborting_from_every_step_back_to_running_loses_nothing(void **state)
{
    static const enum vfio_mig_state targets[] = {
        VFIO_MIG_STATE_RUNNING_P2P, VFIO_MIG_STATE_STOP,         VFIO_MIG_STATE_STOP_COPY,
        VFIO_MIG_STATE_PRE_COPY,    VFIO_MIG_STATE_PRE_COPY_P2P,
    };
    static struct mig_side src, dst;
    struct tdrv_cfg c = cfg_small;
    uint8_t buf[MIG_STREAM_MAX];
    (void)state;

    c.in_len = 16 * 1024;
    c.out_len = 32 * 1024;
    pair_setup(&src, &dst, &c, 4, 4, 4);
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        for (int via_precopy = 0; via_precopy < 2; via_precopy++) {
            assert_int_equal(tdrv_submit_many(&drv, 4, 24), 0);
            if (via_precopy)
                assert_int_equal(mig_set_state(src.mig, VFIO_MIG_STATE_PRE_COPY), 0);
            assert_int_equal(mig_set_state(src.mig, targets[i]), 0);
            assert_int_equal(mig_get_state(src.mig), targets[i]);
            if (targets[i] != VFIO_MIG_STATE_RUNNING_P2P && targets[i] != VFIO_MIG_STATE_STOP)
                assert_int_equal(mig_read(src.mig, buf, 5), 5); /* a partly read stream */
            assert_int_equal(mig_set_state(src.mig, VFIO_MIG_STATE_RUNNING), 0);
            assert_int_equal(tdrv_drain(&drv), 0);
            assert_int_equal(tdrv_check_exactly_once(&drv), 0);
        }
    }
    side_destroy(&src);
    side_destroy(&dst);
}

/* Every arc the driver implements on the saving side, one SET each, with
 * jobs submitted whenever the VF runs and doorbells rung while it is paused
 * (held by the device, acted on after the pause). */
static void test_every_saving_side_arc_under_load_loses_nothing(void **state)
{
    static const enum vfio_mig_state walk[] = {
        VFIO_MIG_STATE_PRE_COPY,     VFIO_MIG_STATE_PRE_COPY_P2P, VFIO_MIG_STATE_PRE_COPY,
        VFIO_MIG_STATE_RUNNING,      VFIO_MIG_STATE_RUNNING_P2P,  VFIO_MIG_STATE_PRE_COPY_P2P,
        VFIO_MIG_STATE_RUNNING_P2P,  VFIO_MIG_STATE_STOP,         VFIO_MIG_STATE_STOP_COPY,
        VFIO_MIG_STATE_STOP,         VFIO_MIG_STATE_RUNNING_P2P,  VFIO_MIG_STATE_PRE_COPY_P2P,
        VFIO_MIG_STATE_STOP_COPY,    VFIO_MIG_STATE_STOP,         VFIO_MIG_STATE_RUNNING_P2P,
        VFIO_MIG_STATE_RUNNING,
    };
    static struct mig_side src, dst;
    struct tdrv_cfg c = cfg_small;
    uint8_t buf[MIG_STREAM_MAX];
    (void)state;

    c.in_len = 16 * 1024;
    c.out_len = 32 * 1024;
    pair_setup(&src, &dst, &c, 4, 4, 4);
    assert_int_equal(tdrv_submit_many(&drv, 4, 16), 0);
    for (size_t i = 0; i < sizeof(walk) / sizeof(walk[0]); i++) {
        assert_int_equal(mig_set_state(src.mig, walk[i]), 0);
        assert_int_equal(mig_get_state(src.mig), walk[i]);
        if (walk[i] == VFIO_MIG_STATE_STOP_COPY)
            assert_true(side_read_all(&src, buf, sizeof(buf), 0) > 0);
        /* Running or not, the guest keeps ringing doorbells. */
        assert_int_equal(tdrv_submit_many(&drv, 4, 8), 0);
        tdrv_poll(&drv);
    }
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(tdrv_check_exactly_once(&drv), 0);
    assert_int_equal(drv.completions, 16 + 8 * sizeof(walk) / sizeof(walk[0]));
    side_destroy(&src);
    side_destroy(&dst);
}

static void test_a_guest_jamming_the_shared_v3_mailbox_only_denies_migration(void **state)
{
    static struct mig_side src, dst;
    uint64_t size = tdrv_ram_size(&cfg_small);
    struct qm_mailbox q = {.w0 = QM_MB_CMD_SQC_VFT_V2 | 1u << QM_MB_BUSY_SHIFT |
                                 1u << QM_MB_OP_SHIFT};
    (void)state;

    side_create(&src, 4, QM_REV_V3, MIG_HW_V3, size);
    side_create(&dst, 4, QM_REV_V3, MIG_HW_V3, size);
    tdrv_bind(&drv, src.dev, 1, src.ram, size, &cfg_small);
    assert_int_equal(tdrv_init(&drv), 0);
    assert_int_equal(tdrv_qp_start(&drv, 0, 0), 0);
    assert_int_equal(tdrv_submit_many(&drv, 1, 20), 0);
    /* The guest's own command leaves the one mailbox busy far too long. */
    assert_int_equal(qm_debug_set_mailbox_delay(src.dev, 1, 1000000), 0);
    assert_int_equal(qm_bar_write(src.dev, 1, QM_MAILBOX, &q, sizeof(q)), 0);
    assert_int_equal(mig_set_state(src.mig, VFIO_MIG_STATE_STOP_COPY), -EBUSY);
    assert_int_equal(mig_get_state(src.mig), VFIO_MIG_STATE_RUNNING);
    assert_non_null(strstr(mig_last_error(src.mig), "busy"));
    /* The host and the guest's jobs carry on; once the guest lets go, the
     * migration goes through. */
    assert_int_equal(qm_debug_set_mailbox_delay(src.dev, 1, 0), 0);
    for (int i = 0; i < 2000000 && (tdrv_reg_read(&drv, QM_MAILBOX) & (1u << QM_MB_BUSY_SHIFT));
         i++)
        ;
    migrate(&src, &dst, 1, 0, NULL, NULL);
    finish_on(&dst, 1, 10);
    side_destroy(&src);
    side_destroy(&dst);
}

static int cq_full(void *arg)
{
    return tdrv_cq_pending(&drv, (unsigned)(uintptr_t)arg) == TDRV_DEPTH - 1;
}

static void test_a_full_cq_with_sqes_waiting_behind_it_migrates(void **state)
{
    static struct mig_side src, dst;
    struct tdrv_cfg c = {.nqps = 2, .in_len = 256, .out_len = 1024, .pool = 800};
    (void)state;

    /* Two SQs complete into CQ 0: 1023 CQEs fill it, the rest must wait. */
    side_create(&src, 2, QM_REV_V4, MIG_HW_V4, tdrv_ram_size(&c));
    side_create(&dst, 2, QM_REV_V4, MIG_HW_V4, tdrv_ram_size(&c));
    tdrv_bind(&drv, src.dev, 1, src.ram, src.ram_size, &c);
    assert_int_equal(tdrv_init(&drv), 0);
    assert_int_equal(tdrv_qp_start(&drv, 0, 0), 0);
    assert_int_equal(tdrv_qp_start(&drv, 1, 0), 0);
    assert_int_equal(tdrv_submit_many(&drv, 2, 1400), 0);
    wait_until(cq_full, (void *)0);
    assert_int_equal(tdrv_cq_pending(&drv, 0), TDRV_DEPTH - 1);
    migrate(&src, &dst, 1, 0, NULL, NULL);
    tdrv_switch(&drv, dst.dev, dst.ram);
    assert_int_equal(tdrv_cq_pending(&drv, 0), TDRV_DEPTH - 1);
    finish_on(&dst, 2, 100);
    assert_int_equal(drv.completions, 1500);
    side_destroy(&src);
    side_destroy(&dst);
}

static int some_cqes_written(void *arg)
{
    return tdrv_cq_pending(&drv, 0) == (unsigned)(uintptr_t)arg;
}

/* A VF with unread EQEs is sent a PF message while quiesced, then migrates
 * (revision/mode as given). */
static void pending_ifc_message_migrates(uint8_t revision, enum mig_hw_mode mode)
{
    static struct mig_side src, dst;
    struct qm_mailbox pf_src = {
        .w0 = QM_MB_CMD_SRC | 1u << QM_MB_BUSY_SHIFT, .queue_num = 1, .base_l = QM_IFC_PF_SET_QOS};
    struct qm_mailbox vf_dst = {.w0 = QM_MB_CMD_DST | 1u << QM_MB_BUSY_SHIFT};
    static struct mig_stream_content content;
    uint64_t size = tdrv_ram_size(&cfg_small);
    uint8_t stream[MIG_STREAM_MAX];
    size_t len = 0;
    uint64_t msg = 0;

    side_create(&src, 4, revision, mode, size);
    side_create(&dst, 4, revision, mode, size);
    tdrv_bind(&drv, src.dev, 1, src.ram, size, &cfg_small);
    assert_int_equal(tdrv_init(&drv), 0);
    assert_int_equal(tdrv_qp_start(&drv, 0, 0), 0);
    assert_int_equal(tdrv_submit_many(&drv, 1, 32), 0);
    wait_until(some_cqes_written, (void *)32);
    assert_int_equal(tdrv_reg_read(&drv, QM_EQ_INT_SOURCE) & 1u, 1);
    /* While the VF is quiesced, the PF sends it a message: its interrupt is
     * held by the pause and must reach the destination's guest. */
    assert_int_equal(mig_set_state(src.mig, VFIO_MIG_STATE_RUNNING_P2P), 0);
    assert_int_equal(qm_bar_write(src.dev, 0, QM_MAILBOX, &pf_src, sizeof(pf_src)), 0);
    assert_int_equal(qm_bar_write32(src.dev, 0, QM_PF_IFC_INT_CFG, 1), 0);
    assert_int_equal(qm_bar_write32(src.dev, 0, QM_PF_IFC_INT_SET_P, 1), 0);
    migrate(&src, &dst, 0, 0, stream, &len);
    /* The stream carries the unacked message, its source bit and the
     * interrupt the pause held back. */
    assert_int_equal(mig_stream_decode(stream, len, &content, NULL, 0), 0);
    assert_int_equal(content.state.regs[MIG_REG_IFC_INT_SOURCE], 1);
    assert_int_equal(content.state.regs[MIG_REG_EQ_INT_SOURCE], 1);
    assert_int_equal(content.state.ifc_msg, QM_IFC_PF_SET_QOS);
    assert_true(content.state.int_pending & (1u << QM_VEC_IFC));
    tdrv_switch(&drv, dst.dev, dst.ram);
    assert_int_equal(tdrv_reg_read(&drv, QM_EQ_INT_SOURCE) & 1u, 1);
    assert_true(atomic_load(&dst.msi[QM_VEC_IFC]) >= 1);
    /* The restore loaded the pending bit: a guest that checks it before
     * fetching sees the message, unmasked. */
    assert_int_equal(tdrv_reg_read(&drv, QM_IFC_INT_SOURCE_V), 1);
    assert_int_equal(tdrv_reg_read(&drv, QM_IFC_INT_STATUS), 1);
    /* The guest fetches the message with DST on its own mailbox and acks it
     * with the usual write 1. */
    assert_int_equal(qm_bar_write(dst.dev, 1, QM_MAILBOX, &vf_dst, sizeof(vf_dst)), 0);
    msg = (uint64_t)tdrv_reg_read(&drv, QM_MB_DATA_H) << 32 | tdrv_reg_read(&drv, QM_MB_DATA_L);
    assert_int_equal(msg, QM_IFC_PF_SET_QOS);
    assert_int_equal(qm_bar_write32(dst.dev, 1, QM_IFC_INT_SOURCE_V, 1), 0);
    assert_int_equal(tdrv_reg_read(&drv, QM_IFC_INT_SOURCE_V), 0);
    finish_on(&dst, 1, 8);
    assert_true(drv.eqes >= 1);
    assert_int_equal(drv.completions, 40);
    side_destroy(&src);
    side_destroy(&dst);
}

static void test_unread_eq_entries_and_a_pending_ifc_message_survive(void **state)
{
    (void)state;
    pending_ifc_message_migrates(QM_REV_V4, MIG_HW_V4);
}

static void test_a_pending_ifc_message_survives_in_v3_mode_too(void **state)
{
    (void)state;
    pending_ifc_message_migrates(QM_REV_V3, MIG_HW_V3);
}

static void test_a_stopped_queue_stays_quiet_and_restarts_after_migration(void **state)
{
    static struct mig_side src, dst;
    (void)state;

    pair_setup(&src, &dst, &cfg_small, 4, 4, 2);
    assert_int_equal(tdrv_submit_many(&drv, 2, 40), 0);
    assert_int_equal(tdrv_qp_stop(&drv, 1), 0);
    assert_int_equal(tdrv_submit_many(&drv, 1, 10), 0);
    migrate(&src, &dst, 1, 0, NULL, NULL);
    finish_on(&dst, 1, 10);
    assert_int_equal(tdrv_cq_pending(&drv, 1), 0);
    assert_int_equal(tdrv_qp_start(&drv, 1, 1), 0);
    assert_int_equal(tdrv_submit_many(&drv, 2, 20), 0);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(tdrv_check_exactly_once(&drv), 0);
    side_destroy(&src);
    side_destroy(&dst);
}

static void test_a_vf_with_64_queue_pairs_migrates_every_queue(void **state)
{
    static struct mig_side src, dst;
    struct tdrv_cfg c = {.nqps = 64, .in_len = 1024, .out_len = 2048, .pool = 4};
    (void)state;

    pair_setup(&src, &dst, &c, 64, 64, 64);
    assert_int_equal(tdrv_submit_many(&drv, 64, 64 * 3), 0);
    migrate(&src, &dst, 1, 0, NULL, NULL);
    finish_on(&dst, 64, 64);
    side_destroy(&src);
    side_destroy(&dst);
}

static void test_a_vf_using_one_queue_pair_migrates(void **state)
{
    static struct mig_side src, dst;
    struct tdrv_cfg c = {.nqps = 2, .in_len = 2048, .out_len = 4096, .pool = 32};
    (void)state;

    pair_setup(&src, &dst, &c, 2, 2, 1);
    assert_int_equal(tdrv_submit_many(&drv, 1, 30), 0);
    migrate(&src, &dst, 1, 3, NULL, NULL);
    finish_on(&dst, 1, 30);
    side_destroy(&src);
    side_destroy(&dst);
}

static void test_a_vf_never_started_migrates_its_identity_only(void **state)
{
    static struct mig_side src, dst;
    uint8_t stream[MIG_STREAM_MAX];
    size_t len = 0;
    uint64_t size = tdrv_ram_size(&cfg_small);
    (void)state;

    side_create(&src, 4, QM_REV_V4, MIG_HW_V4, size);
    side_create(&dst, 4, QM_REV_V4, MIG_HW_V4, size);
    tdrv_bind(&drv, src.dev, 1, src.ram, size, &cfg_small);
    migrate(&src, &dst, 1, 0, stream, &len);
    assert_int_equal(len, MIG_STREAM_HDR_LEN + 2 * MIG_REC_HDR_LEN + MIG_MATCH_LEN + MIG_END_LEN);
    tdrv_switch(&drv, dst.dev, dst.ram);
    assert_int_equal(tdrv_reg_read(&drv, QM_VF_STATE), QM_VF_STATE_NOT_READY);
    /* The guest starts its driver on the destination as on any fresh VF. */
    assert_int_equal(tdrv_init(&drv), 0);
    assert_int_equal(tdrv_qp_start(&drv, 0, 0), 0);
    finish_on(&dst, 1, 20);
    side_destroy(&src);
    side_destroy(&dst);
}

static void test_v3_mode_migrates_through_the_vf_upper_half(void **state)
{
    static struct mig_side src, dst;
    uint64_t size = tdrv_ram_size(&cfg_small);
    uint8_t stream[MIG_STREAM_MAX];
    size_t len;
    (void)state;

    side_create(&src, 4, QM_REV_V3, MIG_HW_V3, size);
    side_create(&dst, 4, QM_REV_V3, MIG_HW_V3, size);
    tdrv_bind(&drv, src.dev, 1, src.ram, size, &cfg_small);
    assert_int_equal(tdrv_init(&drv), 0);
    for (unsigned q = 0; q < 4; q++)
        assert_int_equal(tdrv_qp_start(&drv, q, q), 0);
    assert_int_equal(tdrv_submit_many(&drv, 4, 80), 0);
    migrate(&src, &dst, 1, 0, stream, &len);
    assert_int_equal(len, mig_stream_full_len());
    finish_on(&dst, 4, 40);
    side_destroy(&src);
    side_destroy(&dst);
}

static void test_an_incompatible_destination_refuses_during_precopy(void **state)
{
    static struct mig_side src, dst, dst3;
    uint8_t head[MIG_STREAM_MAX];
    size_t n;
    (void)state;

    pair_setup(&src, &dst, &cfg_small, 4, 8, 4);
    side_create(&dst3, 4, QM_REV_V3, MIG_HW_V3, 1 << 20);
    assert_int_equal(tdrv_submit_many(&drv, 4, 40), 0);
    assert_int_equal(mig_set_state(src.mig, VFIO_MIG_STATE_PRE_COPY), 0);
    n = side_read_all(&src, head, sizeof(head), 0);
    assert_int_equal(mig_set_state(dst.mig, VFIO_MIG_STATE_RESUMING), 0);
    assert_int_equal(side_write_all(&dst, head, n, 0), -EINVAL);
    assert_non_null(strstr(mig_last_error(dst.mig), "qp count: source 4, destination 8"));
    assert_int_equal(mig_write(dst.mig, head, 1), -EINVAL); /* stays refused */
    assert_int_equal(mig_set_state(dst.mig, VFIO_MIG_STATE_STOP), -EINVAL);
    assert_int_equal(mig_get_state(dst.mig), VFIO_MIG_STATE_RESUMING);
    assert_int_equal(mig_set_state(dst3.mig, VFIO_MIG_STATE_RESUMING), 0);
    assert_int_equal(side_write_all(&dst3, head, n, 1), -EINVAL);
    assert_non_null(strstr(mig_last_error(dst3.mig), "revision: source 0x50, destination 0x30"));
    /* The source never stopped: it goes back to running, nothing lost. */
    assert_int_equal(mig_get_state(src.mig), VFIO_MIG_STATE_PRE_COPY);
    assert_int_equal(mig_set_state(src.mig, VFIO_MIG_STATE_RUNNING), 0);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(tdrv_check_exactly_once(&drv), 0);
    side_destroy(&dst3);
    side_destroy(&src);
    side_destroy(&dst);
}

static void test_a_restored_vf_migrates_again_before_it_ever_runs(void **state)
{
    static struct mig_side a, b, c;
    uint8_t stream[MIG_STREAM_MAX];
    size_t len;
    (void)state;

    pair_setup(&a, &b, &cfg_small, 4, 4, 4);
    side_create(&c, 4, QM_REV_V4, MIG_HW_V4, a.ram_size);
    assert_int_equal(tdrv_submit_many(&drv, 4, 60), 0);
    /* a -> b, b restored but left in STOP. */
    assert_int_equal(mig_set_state(b.mig, VFIO_MIG_STATE_RESUMING), 0);
    assert_int_equal(mig_set_state(a.mig, VFIO_MIG_STATE_STOP_COPY), 0);
    len = side_read_all(&a, stream, sizeof(stream), 0);
    memcpy(b.ram, a.ram, a.ram_size);
    assert_int_equal(side_write_all(&b, stream, len, 0), 0);
    assert_int_equal(mig_set_state(b.mig, VFIO_MIG_STATE_STOP), 0);
    /* b -> c straight away: its queues are still waiting for their reload. */
    migrate(&b, &c, 0, 0, NULL, NULL);
    finish_on(&c, 4, 40);
    side_destroy(&a);
    side_destroy(&b);
    side_destroy(&c);
}

static void test_migrating_back_and_forth_keeps_every_job(void **state)
{
    static struct mig_side a, b;
    (void)state;

    pair_setup(&a, &b, &cfg_small, 4, 4, 4);
    for (int round = 0; round < 4; round++) {
        struct mig_side *from = round % 2 ? &b : &a, *to = round % 2 ? &a : &b;

        assert_int_equal(tdrv_submit_many(&drv, 4, 48), 0);
        migrate(from, to, round % 2, 0, NULL, NULL);
        assert_int_equal(mig_reset(from->mig), 0);
        tdrv_switch(&drv, to->dev, to->ram);
        tdrv_poll(&drv);
    }
    finish_on(&a, 4, 8);
    side_destroy(&a);
    side_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_loaded_vf_migrates_with_precopy_and_every_job_completes_once),
        cmocka_unit_test(test_a_migration_straight_to_stop_copy_in_odd_pieces_works),
        cmocka_unit_test(test_aborting_from_every_step_back_to_running_loses_nothing),
        cmocka_unit_test(test_every_saving_side_arc_under_load_loses_nothing),
        cmocka_unit_test(test_a_guest_jamming_the_shared_v3_mailbox_only_denies_migration),
        cmocka_unit_test(test_a_full_cq_with_sqes_waiting_behind_it_migrates),
        cmocka_unit_test(test_unread_eq_entries_and_a_pending_ifc_message_survive),
        cmocka_unit_test(test_a_pending_ifc_message_survives_in_v3_mode_too),
        cmocka_unit_test(test_a_stopped_queue_stays_quiet_and_restarts_after_migration),
        cmocka_unit_test(test_a_vf_with_64_queue_pairs_migrates_every_queue),
        cmocka_unit_test(test_a_vf_using_one_queue_pair_migrates),
        cmocka_unit_test(test_a_vf_never_started_migrates_its_identity_only),
        cmocka_unit_test(test_v3_mode_migrates_through_the_vf_upper_half),
        cmocka_unit_test(test_an_incompatible_destination_refuses_during_precopy),
        cmocka_unit_test(test_a_restored_vf_migrates_again_before_it_ever_runs),
        cmocka_unit_test(test_migrating_back_and_forth_keeps_every_job),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
