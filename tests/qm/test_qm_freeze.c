/* A pause that waits for no scheduler: a worker frozen at any stage of a job
 * (fetched, mid-codec, mid-output, inside an output copy, just before
 * commit) does not hold up
 * PAUSE_QM or FLR, and once released it writes nothing guest-visible; the
 * job runs again exactly once. The freeze is the model's test hook
 * (qm_debug_freeze_*): the frozen worker never runs until released, which is
 * what a starved thread on a busy host looks like, made deterministic. */
#include "qm_tdrv.h"

#include <stdlib.h>
#include <string.h>

#define F_IN (1u << 20)             /* 7 random bits a byte: the output spans many writes */
#define F_CAP (F_IN + F_IN / 8)
#define F_FREEZE_MS 5000

static const enum qm_freeze_stage f_stages[] = {
    QM_FREEZE_FETCHED,  QM_FREEZE_MID_CODEC,      QM_FREEZE_MID_OUTPUT,
    QM_FREEZE_IN_WRITE, QM_FREEZE_BEFORE_COMMIT,
};

struct fjob {
    struct tenv e;
    struct tvf v;
    uint64_t src, dst;
};

/* Bytes a guest could see change: the output buffer, the SQE slot, the CQ
 * and EQ rings. */
struct fview {
    uint8_t *dst, sqe[ZIP_SQE_SIZE], cq[QM_CQ_DEPTH * 16], eq[QM_EQ_DEPTH * 4];
};

static void fjob_init(struct fjob *f, unsigned workers)
{
    struct qm_dev_config cfg;

    qm_dev_config_default(&cfg);
    cfg.workers = workers;
    tenv_init(&f->e, &cfg);
    tvf_probe(&f->e, &f->v, 1);
    tvf_start_qp(&f->v, 0, ZIP_ALG_COMPRESS);
    f->src = tmem_alloc(&f->e, 1, F_IN, 4096);
    f->dst = tmem_alloc(&f->e, 1, F_CAP, 4096);
    tfill_noise(tmem_ptr(&f->e, 1, f->src), F_IN, 0x5eed);
    memset(tmem_ptr(&f->e, 1, f->dst), 0xa5, F_CAP);
}

static void fjob_submit_frozen(struct fjob *f, enum qm_freeze_stage stage)
{
    uint32_t sqe[ZIP_SQE_DWORDS];

    assert_int_equal(qm_debug_freeze_arm(f->e.dev, stage), 0);
    tsqe_flat(sqe, ZIP_REQ_DEFLATE, f->src, F_IN, f->dst, F_CAP, 0x7a6);
    tvf_submit(&f->v, 0, sqe);
    assert_int_equal(qm_debug_freeze_wait(f->e.dev, F_FREEZE_MS), 0);
}

static void fview_take(struct fjob *f, struct fview *w)
{
    w->dst = malloc(F_CAP);
    assert_non_null(w->dst);
    memcpy(w->dst, tmem_ptr(&f->e, 1, f->dst), F_CAP);
    memcpy(w->sqe, tmem_ptr(&f->e, 1, f->v.qp[0].sq), sizeof(w->sqe));
    memcpy(w->cq, tmem_ptr(&f->e, 1, f->v.qp[0].cq), sizeof(w->cq));
    memcpy(w->eq, tmem_ptr(&f->e, 1, f->v.eqe), sizeof(w->eq));
}

static void fview_assert_unchanged(struct fjob *f, const struct fview *w)
{
    assert_memory_equal(w->dst, tmem_ptr(&f->e, 1, f->dst), F_CAP);
    assert_memory_equal(w->sqe, tmem_ptr(&f->e, 1, f->v.qp[0].sq), sizeof(w->sqe));
    assert_memory_equal(w->cq, tmem_ptr(&f->e, 1, f->v.qp[0].cq), sizeof(w->cq));
    assert_memory_equal(w->eq, tmem_ptr(&f->e, 1, f->v.eqe), sizeof(w->eq));
}

/* PAUSE_QM through the PF window returns "paused and retired" at once: no
 * polling, so it cannot have waited for the frozen worker. */
static void fpause_now(struct fjob *f)
{
    assert_int_equal(tmb(&f->e, tdoor_window(1), QM_MB_CMD_PAUSE_QM, 0, 0, false, NULL), 0);
    assert_int_equal(thost_rd32(&f->e, tdoor_window(1), QM_WIN_PAUSE_STATUS), 3);
    assert_false(tqueue(&f->e, 1, 0).busy);
}

static void fresume(struct fjob *f)
{
    assert_int_equal(tmb(&f->e, tdoor_window(1), QM_MB_CMD_RESUME_QM, 0, 0, false, NULL), 0);
}

/* The job completes once, with output zlib inflates back to the input, and
 * no second CQE ever follows. */
static void fjob_assert_done_once(struct fjob *f)
{
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint8_t *out = malloc(F_IN + 1);
    uint16_t slot;

    assert_non_null(out);
    assert_true(tvf_cqe_wait(&f->v, 0, &slot, T_TIMEOUT_MS));
    assert_int_equal(slot, 0);
    tvf_sqe(&f->v, 0, slot, sqe);
    assert_int_equal(sqe[ZIP_SQE_DW3] & 0xffu, ZIP_ST_OK);
    assert_int_equal(tinflate_raw(tmem_ptr(&f->e, 1, f->dst), sqe[ZIP_SQE_PRODUCED], out, F_IN + 1),
                     F_IN);
    assert_memory_equal(out, tmem_ptr(&f->e, 1, f->src), F_IN);
    free(out);
    assert_int_equal(qm_debug_freeze_release(f->e.dev, F_FREEZE_MS), 0);
    assert_false(tvf_cqe_take(&f->v, 0, &slot));
    assert_int_equal(tcounters(&f->e, 1).jobs_done, 1);
}

static void test_a_worker_frozen_at_any_stage_neither_delays_a_pause_nor_writes_after_it(void **state)
{
    (void)state;
    for (unsigned i = 0; i < AM_ARRAY_SIZE(f_stages); i++) {
        struct fjob f;
        struct fview w;

        fjob_init(&f, 1);
        fjob_submit_frozen(&f, f_stages[i]);
        fpause_now(&f);
        fview_take(&f, &w);
        /* Released while paused: it must find its job revoked. */
        assert_int_equal(qm_debug_freeze_release(f.e.dev, F_FREEZE_MS), 0);
        fview_assert_unchanged(&f, &w);
        assert_int_equal(tcounters(&f.e, 1).jobs_done, 0);
        assert_int_equal(tqueue(&f.e, 1, 0).sq_head, 0);
        fresume(&f);
        fjob_assert_done_once(&f);
        free(w.dst);
        tenv_fini(&f.e);
    }
}

static void test_after_resume_another_worker_runs_the_job_and_the_frozen_one_adds_nothing(void **state)
{
    (void)state;
    for (unsigned i = 0; i < AM_ARRAY_SIZE(f_stages); i++) {
        struct fjob f;

        /* Frozen inside a copy, the worker holds RESUME_QM back until it is
         * released (its late copy must not land on reused memory): that
         * case is the first test's. */
        if (f_stages[i] == QM_FREEZE_IN_WRITE)
            continue;
        fjob_init(&f, 2);
        fjob_submit_frozen(&f, f_stages[i]);
        fpause_now(&f);
        /* The frozen worker is still frozen: the other one takes the job. */
        fresume(&f);
        fjob_assert_done_once(&f);
        tenv_fini(&f.e);
    }
}

static void test_flr_completes_while_a_worker_is_frozen_and_nothing_is_written_after(void **state)
{
    (void)state;
    for (unsigned i = 0; i < AM_ARRAY_SIZE(f_stages); i++) {
        struct fjob f;
        struct fview w;

        /* FLR waits for a copy in progress (the memory may be reused
         * next): a worker frozen inside one holds it, by design. */
        if (f_stages[i] == QM_FREEZE_IN_WRITE)
            continue;
        fjob_init(&f, 1);
        fjob_submit_frozen(&f, f_stages[i]);
        assert_int_equal(qm_function_reset(f.e.dev, 1), 0);
        assert_false(tqueue(&f.e, 1, 0).busy);
        fview_take(&f, &w);
        assert_int_equal(qm_debug_freeze_release(f.e.dev, F_FREEZE_MS), 0);
        fview_assert_unchanged(&f, &w);
        assert_int_equal(tcounters(&f.e, 1).jobs_done, 0);
        free(w.dst);
        tenv_fini(&f.e);
    }
}

static void test_freeze_arming_refuses_a_bad_stage_and_a_second_freeze(void **state)
{
    struct tenv e;

    (void)state;
    tenv_init(&e, NULL);
    assert_int_equal(qm_debug_freeze_arm(e.dev, QM_FREEZE_NONE), -EINVAL);
    assert_int_equal(qm_debug_freeze_arm(e.dev, (enum qm_freeze_stage)99), -EINVAL);
    assert_int_equal(qm_debug_freeze_arm(e.dev, QM_FREEZE_BEFORE_COMMIT + 1), -EINVAL);
    assert_int_equal(qm_debug_freeze_arm(e.dev, QM_FREEZE_FETCHED), 0);
    assert_int_equal(qm_debug_freeze_arm(e.dev, QM_FREEZE_MID_CODEC), -EBUSY);
    assert_int_equal(qm_debug_freeze_wait(e.dev, 10), -ETIMEDOUT);
    assert_int_equal(qm_debug_freeze_release(e.dev, F_FREEZE_MS), 0);
    assert_int_equal(qm_debug_freeze_arm(e.dev, QM_FREEZE_MID_CODEC), 0);
    tenv_fini(&e); /* destroy disarms and never hangs on an armed freeze */
}

static void test_device_destroy_never_hangs_on_a_worker_frozen_at_any_stage(void **state)
{
    (void)state;
    for (unsigned i = 0; i < AM_ARRAY_SIZE(f_stages); i++) {
        struct fjob f;

        fjob_init(&f, 1);
        fjob_submit_frozen(&f, f_stages[i]);
        tenv_fini(&f.e); /* releases the freeze, revokes, joins */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_worker_frozen_at_any_stage_neither_delays_a_pause_nor_writes_after_it),
        cmocka_unit_test(test_after_resume_another_worker_runs_the_job_and_the_frozen_one_adds_nothing),
        cmocka_unit_test(test_flr_completes_while_a_worker_is_frozen_and_nothing_is_written_after),
        cmocka_unit_test(test_freeze_arming_refuses_a_bad_stage_and_a_second_freeze),
        cmocka_unit_test(test_device_destroy_never_hangs_on_a_worker_frozen_at_any_stage),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
