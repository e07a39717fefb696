/* Interrupt moderation for a busy queue (qm_worker.c): the EQ MSI of a
 * completion may wait for the same queue's next completion while its worker
 * runs that next job, never past cfg.msi_mod_max completions, never when the
 * queue runs dry, and never past a pause. Every completion still gets its
 * interrupt: these tests drive the queue the way the Linux driver does (wait
 * for the MSI, walk the EQ by phase, take the CQEs, re-arm the CQ) and
 * count what the device raised.
 * The time bounds (msi_mod_job_ns, msi_mod_hold_ns) are set far above any
 * job here, so what is held depends only on the order of events, never on
 * timing; two tests set one of them to 0 to show what it cuts short. */
#include "qm_tdrv.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define M_SMALL 4096u
#define M_BIG (1u << 20)           /* 7 random bits a byte: the output spans many writes */
#define M_FREEZE_MS 5000
#define M_MOD_MAX 8u

struct menv {
    struct tenv e;
    struct tvf v;
};

/* One VF, queue 0 started, one worker (so job order is the only order). */
static void menv_init_hold(struct menv *m, unsigned mod_max, uint64_t job_ns, uint64_t hold_ns)
{
    struct qm_dev_config cfg;

    qm_dev_config_default(&cfg);
    cfg.workers = 1;
    cfg.msi_mod_max = mod_max;
    cfg.msi_mod_job_ns = job_ns;
    cfg.msi_mod_hold_ns = hold_ns;
    tenv_init(&m->e, &cfg);
    tvf_probe(&m->e, &m->v, 1);
    tvf_start_qp(&m->v, 0, ZIP_ALG_COMPRESS);
}

static void menv_init(struct menv *m, unsigned mod_max, uint64_t job_ns)
{
    menv_init_hold(m, mod_max, job_ns, UINT64_MAX);
}

/* Write n SQEs behind the SQ tail and ring the doorbell once: the worker
 * finds them all there when it starts. */
static void msubmit_burst(struct menv *m, const uint32_t (*sqes)[ZIP_SQE_DWORDS], unsigned n)
{
    struct tqp *q = &m->v.qp[0];

    for (unsigned i = 0; i < n; i++) {
        memcpy(tmem_ptr(&m->e, 1, q->sq + (uint64_t)q->sq_tail * ZIP_SQE_SIZE), sqes[i],
               ZIP_SQE_SIZE);
        q->sq_tail = (uint16_t)((q->sq_tail + 1) % q->depth);
    }
    tvf_ring(&m->v, 0, qm_db_value(0, QM_DB_CMD_SQ, q->sq_tail, 0));
}

/* n compression jobs of len bytes each, submitted as one burst. */
static void msubmit_jobs(struct menv *m, struct tjob *j, unsigned n, uint32_t len)
{
    uint32_t(*sqes)[ZIP_SQE_DWORDS] = calloc(n, sizeof(*sqes));

    assert_non_null(sqes);
    for (unsigned i = 0; i < n; i++) {
        j[i] = tjob_new(&m->e, 1, len, i + 1);
        tjob_sqe(&j[i], sqes[i], i);
    }
    msubmit_burst(m, (const uint32_t(*)[ZIP_SQE_DWORDS])sqes, n);
    free(sqes);
}

static void mwait_jobs_done(struct menv *m, uint64_t n)
{
    uint64_t deadline = am_now_ns() + (uint64_t)T_TIMEOUT_MS * 1000000u;

    while (tcounters(&m->e, 1).jobs_done < n) {
        assert_true(am_now_ns() < deadline);
        usleep(100);
    }
}

static unsigned meq_irqs(struct menv *m)
{
    return tenv_irqs(&m->e, 1, QM_VEC_EQ);
}

/* The driver's interrupt handler: walk the EQ, take every CQE there, re-arm
 * the CQ. Returns the CQEs taken; each slot must be the next expected. */
static unsigned mhandle_irq(struct menv *m, uint16_t *next_slot)
{
    uint16_t cqn[QM_EQ_DEPTH], slot;
    unsigned taken = 0;

    (void)tvf_eq_drain(&m->v, cqn, QM_EQ_DEPTH);
    while (tvf_cqe_take(&m->v, 0, &slot)) {
        assert_int_equal(slot, *next_slot);
        *next_slot = (uint16_t)((*next_slot + 1) % m->v.qp[0].depth);
        taken++;
    }
    tvf_cq_rearm(&m->v, 0);
    return taken;
}

static void test_when_the_queue_runs_dry_the_last_completion_raises_the_held_msi(void **state)
{
    struct menv m;
    struct tjob j[3];
    uint16_t next = 0, slot;

    (void)state;
    menv_init(&m, M_MOD_MAX, UINT64_MAX);
    msubmit_jobs(&m, j, 3, M_SMALL);
    /* Jobs 1 and 2 were followed by another on the same queue: their MSI
     * waited. Job 3 left the queue empty: its commit raised it. So when the
     * interrupt arrives, all three CQEs are already there. */
    assert_true(tenv_irq_wait(&m.e, 1, QM_VEC_EQ, 0, T_TIMEOUT_MS));
    assert_int_equal(tcounters(&m.e, 1).jobs_done, 3);
    assert_int_equal(tcounters(&m.e, 1).msi_moderated, 2);
    assert_int_equal(mhandle_irq(&m, &next), 3);
    for (unsigned i = 0; i < 3; i++) {
        uint32_t sqe[ZIP_SQE_DWORDS];

        tvf_sqe(&m.v, 0, (uint16_t)i, sqe);
        tjob_check(&m.v, &j[i], sqe);
    }
    /* One interrupt for the three; nothing left to signal. */
    assert_int_equal(meq_irqs(&m), 1);
    assert_int_equal(trd32(&m.e, m.v.door, QM_EQ_INT_SOURCE) & 1u, 0);
    assert_false(tvf_cqe_take(&m.v, 0, &slot));
    tenv_fini(&m.e);
}

static void test_no_more_than_msi_mod_max_completions_wait_behind_one_msi(void **state)
{
    struct menv m;
    struct tjob j[20];
    uint16_t next = 0;

    (void)state;
    menv_init(&m, M_MOD_MAX, UINT64_MAX);
    msubmit_jobs(&m, j, 20, M_SMALL);
    /* The guest does not answer: after job 1's EQE the CQ stays disarmed.
     * Jobs 1..8 held the MSI, job 9 raised it; jobs 10..20 had nothing to
     * hold (no EQE while disarmed). */
    mwait_jobs_done(&m, 20);
    assert_true(tenv_irq_wait(&m.e, 1, QM_VEC_EQ, 0, T_TIMEOUT_MS));
    assert_int_equal(tcounters(&m.e, 1).msi_moderated, M_MOD_MAX);
    assert_int_equal(meq_irqs(&m), 1);
    assert_int_equal(mhandle_irq(&m, &next), 20);
    assert_int_equal(meq_irqs(&m), 1);
    tenv_fini(&m.e);
}

static void test_every_completion_of_a_burst_reaches_a_driver_that_only_waits_for_msis(void **state)
{
    struct menv m;
    struct tjob *j = calloc(4 * 32, sizeof(*j));
    uint16_t next = 0;
    unsigned taken = 0, seen = 0;

    (void)state;
    assert_non_null(j);
    menv_init(&m, M_MOD_MAX, UINT64_MAX);
    /* Four bursts of 32, each while the previous one is still running. */
    for (unsigned b = 0; b < 4; b++) {
        msubmit_jobs(&m, j + 32 * b, 32, M_SMALL);
        while (taken < 32 * (b + 1) - (b < 3 ? 16 : 0)) {
            /* Every CQE comes with an interrupt: the driver never polls. */
            assert_true(tenv_irq_wait(&m.e, 1, QM_VEC_EQ, seen, T_TIMEOUT_MS));
            seen = meq_irqs(&m);
            taken += mhandle_irq(&m, &next);
        }
    }
    assert_int_equal(taken, 4 * 32);
    assert_int_equal(tcounters(&m.e, 1).jobs_done, 4 * 32);
    /* Held MSIs happened (the first job of each burst had followers). */
    assert_true(tcounters(&m.e, 1).msi_moderated > 0);
    assert_true(meq_irqs(&m) < 4 * 32);
    free(j);
    tenv_fini(&m.e);
}

static void test_a_job_longer_than_the_bound_never_holds_its_msi(void **state)
{
    struct menv m;
    struct tjob j[3];
    uint16_t next = 0;
    unsigned taken = 0, seen = 0;

    (void)state;
    menv_init(&m, M_MOD_MAX, 0); /* every job takes longer than 0 ns */
    msubmit_jobs(&m, j, 3, M_SMALL);
    while (taken < 3) {
        assert_true(tenv_irq_wait(&m.e, 1, QM_VEC_EQ, seen, T_TIMEOUT_MS));
        seen = meq_irqs(&m);
        taken += mhandle_irq(&m, &next);
    }
    assert_int_equal(tcounters(&m.e, 1).msi_moderated, 0);
    tenv_fini(&m.e);
}

static void test_an_msi_held_longer_than_the_hold_bound_goes_out_at_the_next_commit(void **state)
{
    struct menv m;
    struct tjob j[3];
    uint16_t next = 0;

    (void)state;
    menv_init_hold(&m, M_MOD_MAX, UINT64_MAX, 0); /* any hold is too long by the next commit */
    msubmit_jobs(&m, j, 3, M_SMALL);
    /* The guest does not answer: job 1 held its MSI, job 2 found it held
     * too long and raised it, job 3 had nothing to hold (CQ disarmed). */
    mwait_jobs_done(&m, 3);
    assert_true(tenv_irq_wait(&m.e, 1, QM_VEC_EQ, 0, T_TIMEOUT_MS));
    assert_int_equal(tcounters(&m.e, 1).msi_moderated, 1);
    assert_int_equal(meq_irqs(&m), 1);
    assert_int_equal(mhandle_irq(&m, &next), 3);
    tenv_fini(&m.e);
}

static void test_moderation_off_holds_nothing(void **state)
{
    struct menv m;
    struct tjob j[3];
    uint16_t next = 0;
    unsigned taken = 0, seen = 0;

    (void)state;
    menv_init(&m, 0, UINT64_MAX);
    msubmit_jobs(&m, j, 3, M_SMALL);
    while (taken < 3) {
        assert_true(tenv_irq_wait(&m.e, 1, QM_VEC_EQ, seen, T_TIMEOUT_MS));
        seen = meq_irqs(&m);
        taken += mhandle_irq(&m, &next);
    }
    assert_int_equal(tcounters(&m.e, 1).msi_moderated, 0);
    tenv_fini(&m.e);
}

static void test_a_pause_in_the_middle_of_a_burst_keeps_the_held_msi_for_resume(void **state)
{
    struct menv m;
    struct tjob j[2];
    uint32_t sqes[2][ZIP_SQE_DWORDS];
    struct qm_fn_debug fd;
    uint16_t next = 0;
    unsigned taken = 0, seen = 0;

    (void)state;
    menv_init(&m, M_MOD_MAX, UINT64_MAX);
    j[0] = tjob_new(&m.e, 1, M_SMALL, 1);
    j[1] = tjob_new(&m.e, 1, M_BIG, 2);
    tfill_noise(tmem_ptr(&m.e, 1, j[1].src), M_BIG, 0x5eed);
    tjob_sqe(&j[0], sqes[0], 0);
    tjob_sqe(&j[1], sqes[1], 1);
    /* Job 1 (one output write) commits and holds its MSI for job 2, which
     * freezes before its second output write. */
    assert_int_equal(qm_debug_freeze_arm(m.e.dev, QM_FREEZE_MID_OUTPUT), 0);
    msubmit_burst(&m, (const uint32_t(*)[ZIP_SQE_DWORDS])sqes, 2);
    assert_int_equal(qm_debug_freeze_wait(m.e.dev, M_FREEZE_MS), 0);
    assert_int_equal(tcounters(&m.e, 1).jobs_done, 1);
    assert_int_equal(tcounters(&m.e, 1).msi_moderated, 1);
    assert_int_equal(meq_irqs(&m), 0);
    assert_int_equal(trd32(&m.e, m.v.door, QM_EQ_INT_SOURCE) & 1u, 1);

    /* The pause takes the held MSI over as one held while paused. */
    tpause(&m.e, 1);
    assert_int_equal(qm_debug_fn(m.e.dev, 1, &fd), 0);
    assert_true(fd.paused);
    assert_int_equal(fd.int_pending & (1u << QM_VEC_EQ), 1u << QM_VEC_EQ);
    assert_int_equal(qm_debug_freeze_release(m.e.dev, M_FREEZE_MS), 0);
    assert_int_equal(meq_irqs(&m), 0);

    /* RESUME_QM raises it; job 2 runs again and gets its own. */
    assert_int_equal(tmb(&m.e, tdoor_window(1), QM_MB_CMD_RESUME_QM, 0, 0, false, NULL), 0);
    while (taken < 2) {
        assert_true(tenv_irq_wait(&m.e, 1, QM_VEC_EQ, seen, T_TIMEOUT_MS));
        seen = meq_irqs(&m);
        taken += mhandle_irq(&m, &next);
    }
    assert_int_equal(tcounters(&m.e, 1).jobs_done, 2);
    for (unsigned i = 0; i < 2; i++) {
        uint32_t sqe[ZIP_SQE_DWORDS];

        tvf_sqe(&m.v, 0, (uint16_t)i, sqe);
        tjob_check(&m.v, &j[i], sqe);
    }
    tenv_fini(&m.e);
}

static void test_an_flr_with_an_msi_held_leaves_nothing_behind(void **state)
{
    struct menv m;
    struct tjob j[2];
    uint32_t sqes[2][ZIP_SQE_DWORDS];
    struct qm_fn_debug fd;

    (void)state;
    menv_init(&m, M_MOD_MAX, UINT64_MAX);
    j[0] = tjob_new(&m.e, 1, M_SMALL, 1);
    j[1] = tjob_new(&m.e, 1, M_BIG, 2);
    tfill_noise(tmem_ptr(&m.e, 1, j[1].src), M_BIG, 0x5eed);
    tjob_sqe(&j[0], sqes[0], 0);
    tjob_sqe(&j[1], sqes[1], 1);
    assert_int_equal(qm_debug_freeze_arm(m.e.dev, QM_FREEZE_MID_OUTPUT), 0);
    msubmit_burst(&m, (const uint32_t(*)[ZIP_SQE_DWORDS])sqes, 2);
    assert_int_equal(qm_debug_freeze_wait(m.e.dev, M_FREEZE_MS), 0);
    assert_int_equal(tcounters(&m.e, 1).msi_moderated, 1);
    /* The reset drops the event queue and with it the held MSI. */
    assert_int_equal(qm_function_reset(m.e.dev, 1), 0);
    assert_int_equal(qm_debug_freeze_release(m.e.dev, M_FREEZE_MS), 0);
    assert_int_equal(qm_debug_fn(m.e.dev, 1, &fd), 0);
    assert_int_equal(fd.int_pending, 0);
    assert_int_equal(meq_irqs(&m), 0);
    /* The function works again from a fresh probe, its interrupts too. */
    tvf_probe(&m.e, &m.v, 1);
    tvf_start_qp(&m.v, 0, ZIP_ALG_COMPRESS);
    {
        struct tjob k[3];
        uint16_t next = 0;
        unsigned taken = 0, seen = 0;

        msubmit_jobs(&m, k, 3, M_SMALL);
        while (taken < 3) {
            assert_true(tenv_irq_wait(&m.e, 1, QM_VEC_EQ, seen, T_TIMEOUT_MS));
            seen = meq_irqs(&m);
            taken += mhandle_irq(&m, &next);
        }
    }
    tenv_fini(&m.e);
}

static void test_a_config_with_too_large_a_moderation_count_is_refused(void **state)
{
    struct qm_dev_config cfg;
    struct qm_dev *dev = NULL;

    (void)state;
    qm_dev_config_default(&cfg);
    assert_int_equal(cfg.msi_mod_max, M_MOD_MAX);
    cfg.msi_mod_max = QM_MSI_MOD_MAX_LIMIT + 1;
    assert_int_equal(qm_dev_create(&cfg, &dev), -EINVAL);
    assert_null(dev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_when_the_queue_runs_dry_the_last_completion_raises_the_held_msi),
        cmocka_unit_test(test_no_more_than_msi_mod_max_completions_wait_behind_one_msi),
        cmocka_unit_test(test_every_completion_of_a_burst_reaches_a_driver_that_only_waits_for_msis),
        cmocka_unit_test(test_a_job_longer_than_the_bound_never_holds_its_msi),
        cmocka_unit_test(test_an_msi_held_longer_than_the_hold_bound_goes_out_at_the_next_commit),
        cmocka_unit_test(test_moderation_off_holds_nothing),
        cmocka_unit_test(test_a_pause_in_the_middle_of_a_burst_keeps_the_held_msi_for_resume),
        cmocka_unit_test(test_an_flr_with_an_msi_held_leaves_nothing_behind),
        cmocka_unit_test(test_a_config_with_too_large_a_moderation_count_is_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
