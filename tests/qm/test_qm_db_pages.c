/* Doorbell isolation: BAR4 doorbell pages, the workers that poll them, trapped access, and
 * what garbage, a torn write and FLR do (qm.h "Doorbell isolation"). */
#include "qm_tdrv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/common.h"
#include "qm/qm_internal.h"

static _Atomic uint64_t *t_word(struct tenv *e, unsigned fn, unsigned qn)
{
    return (_Atomic uint64_t *)(e->db[fn] + (uint64_t)qn * QM_DB_PAGE_SIZE + QM_DB_SQCQ);
}

/* Waits (bounded) until the device has taken the word. */
static void t_wait_taken(struct tenv *e, unsigned fn, unsigned qn)
{
    uint64_t end = am_now_ns() + (uint64_t)T_TIMEOUT_MS * 1000000u;

    while (atomic_load(t_word(e, fn, qn)) != QM_DB_IDLE) {
        assert_true(am_now_ns() < end);
        tsleep_us(10);
    }
}

/* Waits (bounded) until every queue's page of fn says `state`. */
static void t_wait_poll_state(struct tenv *e, unsigned fn, uint64_t state)
{
    uint64_t end = am_now_ns() + (uint64_t)T_TIMEOUT_MS * 1000000u;

    for (unsigned qn = 0; qn < qm_db_bar_size(e->dev, fn) / QM_DB_PAGE_SIZE; qn++) {
        _Atomic uint64_t *w = (_Atomic uint64_t *)(e->db[fn] + (uint64_t)qn * QM_DB_PAGE_SIZE +
                                                   QM_DB_POLL_STATE);

        while (atomic_load(w) != state) {
            assert_true(am_now_ns() < end);
            tsleep_us(10);
        }
    }
}

/* One SQE in queue qn's next slot, without ringing. */
static void t_place(struct tvf *v, unsigned qn, const uint32_t *sqe)
{
    struct tqp *q = &v->qp[qn];

    memcpy(tmem_ptr(v->env, v->fn, q->sq + (uint64_t)q->sq_tail * ZIP_SQE_SIZE), sqe,
           ZIP_SQE_SIZE);
    q->sq_tail = (uint16_t)((q->sq_tail + 1) % q->depth);
}

/* One SQE placed in queue qn of v and its SQ doorbell stored into the
 * mapped page, as a guest with the page mapped rings. */
static void t_submit_stored(struct tvf *v, unsigned qn, const uint32_t *sqe)
{
    t_place(v, qn, sqe);
    atomic_store_explicit(t_word(v->env, v->fn, qn),
                          qm_db_value(qn, QM_DB_CMD_SQ, v->qp[qn].sq_tail, 0),
                          memory_order_release);
}

static void test_the_vf_has_sealed_doorbell_pages_that_read_idle(void **state)
{
    struct tenv e;
    uint64_t w = 0;

    (void)state;
    tenv_init(&e, NULL);
    /* 4 queues of 64 KiB: a 256 KiB BAR4; the PF has none. */
    assert_int_equal(qm_db_bar_size(e.dev, 1), 4 * QM_DB_PAGE_SIZE);
    assert_int_equal(qm_db_bar_size(e.dev, 0), 0);
    assert_int_equal(qm_db_bar_fd(e.dev, 0), -ENODEV);
    assert_int_equal(trd32(&e, tdoor_vf(1), QM_QUE_ISO_CFG), QM_QUE_ISO_EN);
    int fd = qm_db_bar_fd(e.dev, 1);

    assert_true(fd >= 0);
    int seals = fcntl(fd, F_GET_SEALS);

    assert_true(seals & F_SEAL_SHRINK);
    assert_true(seals & F_SEAL_GROW);
    assert_true(seals & F_SEAL_SEAL);
    assert_int_not_equal(ftruncate(fd, 4096), 0); /* a VMM cannot pull the pages away */
    for (uint64_t off = 0; off < qm_db_bar_size(e.dev, 1); off += 8) {
        assert_int_equal(qm_db_bar_read(e.dev, 1, off, &w, 8), 0);
        if (off % QM_DB_PAGE_SIZE == QM_DB_POLL_STATE) /* the device writes it */
            assert_true(w == QM_DB_IDLE || w == QM_DB_POLL_OFF || w == QM_DB_POLL_ON);
        else
            assert_int_equal(w, QM_DB_IDLE);
    }
    /* Trapped access rules: aligned 1/2/4/8 inside the BAR. */
    assert_int_equal(qm_db_bar_read(e.dev, 1, 4 * QM_DB_PAGE_SIZE, &w, 8), -EINVAL);
    assert_int_equal(qm_db_bar_read(e.dev, 1, 4 * QM_DB_PAGE_SIZE - 4, &w, 8), -EINVAL);
    assert_int_equal(qm_db_bar_read(e.dev, 1, 4, &w, 8), -EINVAL);
    assert_int_equal(qm_db_bar_read(e.dev, 1, 0, &w, 3), -EINVAL);
    assert_int_equal(qm_db_bar_write(e.dev, 1, 0, &w, 16), -EINVAL);
    assert_int_equal(qm_db_bar_write(e.dev, 1, UINT64_MAX - 3, &w, 8), -EINVAL);
    assert_int_equal(qm_db_bar_read(e.dev, 9, 0, &w, 8), -EINVAL);
    tenv_fini(&e);
}

static void test_without_isolation_there_is_no_bar4_and_the_register_says_so(void **state)
{
    struct qm_dev_config cfg;
    struct tenv e;
    struct tvf v;
    uint64_t w;

    (void)state;
    qm_dev_config_default(&cfg);
    cfg.db_isolation = false;
    tenv_init(&e, &cfg);
    assert_int_equal(trd32(&e, tdoor_vf(1), QM_QUE_ISO_CFG), 0);
    assert_int_equal(qm_db_bar_size(e.dev, 1), 0);
    assert_int_equal(qm_db_bar_fd(e.dev, 1), -ENODEV);
    assert_int_equal(qm_db_bar_read(e.dev, 1, 0, &w, 8), -ENODEV);
    assert_int_equal(qm_db_bar_write(e.dev, 1, QM_DB_SQCQ, &w, 8), -ENODEV);
    /* The old layout works: BAR2 doorbells. */
    tvf_probe(&e, &v, 1);
    assert_false(v.db_iso);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    struct tjob j = tjob_new(&e, 1, 4096, 1);
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint16_t slot;

    tjob_sqe(&j, sqe, 0);
    tvf_submit(&v, 0, sqe);
    assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
    assert_int_equal(tcounters(&e, 1).doorbells_paged, 0);
    tenv_fini(&e);
}

/* Nothing but a store into shared memory: the poller notices it. */
/* With one worker (it polls between its jobs) and with two. */
static void test_a_doorbell_stored_into_the_mapped_page_runs_the_job(void **state)
{
    (void)state;
    for (unsigned workers = 1; workers <= 2; workers++) {
        struct qm_dev_config cfg;
        struct tenv e;
        struct tvf v;
        uint32_t sqe[ZIP_SQE_DWORDS];
        uint16_t slot;

        qm_dev_config_default(&cfg);
        cfg.workers = workers;
        tenv_init(&e, &cfg);
        tvf_probe(&e, &v, 1);
        tvf_start_qp(&v, 2, ZIP_ALG_COMPRESS);
        struct tjob j = tjob_new(&e, 1, 65536, 3);

        for (unsigned n = 1; n <= 20; n++) {
            uint64_t paged = tcounters(&e, 1).doorbells_paged;

            tjob_sqe(&j, sqe, n);
            t_submit_stored(&v, 2, sqe);
            assert_true(twait_jobs_done(&e, 1, n, T_TIMEOUT_MS));
            t_wait_taken(&e, 1, 2);
            assert_true(tcounters(&e, 1).doorbells_paged > paged);
            /* The CQ doorbell, by store too, once the SQ one was taken. */
            struct qm_cqe *cqe = tmem_ptr(&e, 1, v.qp[2].cq + (uint64_t)v.qp[2].cq_head * 16);

            assert_int_equal(cqe->sq_head, (uint16_t)(n - 1));
            assert_true(tvf_cqe_take(&v, 2, &slot)); /* rings via tvf_ring */
        }
        uint32_t back[ZIP_SQE_DWORDS];

        tvf_sqe(&v, 2, slot, back);
        tjob_check(&v, &j, back); /* zlib inflates the last output */
        assert_int_equal(tcounters(&e, 1).doorbells_ignored, 0);
        tenv_fini(&e);
    }
}

/* The idle workers poll the pages: while one worker is held inside VF 1's
 * job, the other still notices VF 2's stored doorbell and runs its job (the
 * worker that took VF 1's job handed its poll turn on). */
static void test_a_stored_doorbell_is_served_while_another_vf_holds_a_worker(void **state)
{
    struct tenv e;
    struct tvf v1, v2;
    uint32_t sqe[ZIP_SQE_DWORDS];

    (void)state;
    tenv_init(&e, NULL); /* two workers */
    tvf_probe(&e, &v1, 1);
    tvf_probe(&e, &v2, 2);
    tvf_start_qp(&v1, 0, ZIP_ALG_COMPRESS);
    tvf_start_qp(&v2, 0, ZIP_ALG_COMPRESS);
    struct tjob j1 = tjob_new(&e, 1, 4096, 5), j2 = tjob_new(&e, 2, 4096, 6);

    assert_int_equal(qm_debug_freeze_arm(e.dev, QM_FREEZE_FETCHED), 0);
    tjob_sqe(&j1, sqe, 1);
    t_submit_stored(&v1, 0, sqe);
    assert_int_equal(qm_debug_freeze_wait(e.dev, T_TIMEOUT_MS), 0);
    for (unsigned n = 1; n <= 3; n++) {
        tjob_sqe(&j2, sqe, n);
        t_submit_stored(&v2, 0, sqe);
        assert_true(twait_jobs_done(&e, 2, n, T_TIMEOUT_MS));
    }
    assert_int_equal(tcounters(&e, 1).jobs_done, 0); /* still held */
    assert_int_equal(qm_debug_freeze_release(e.dev, T_TIMEOUT_MS), 0);
    assert_true(twait_jobs_done(&e, 1, 1, T_TIMEOUT_MS));
    uint32_t back[ZIP_SQE_DWORDS];

    tvf_sqe(&v1, 0, 0, back);
    tjob_check(&v1, &j1, back);
    tvf_sqe(&v2, 0, 2, back);
    tjob_check(&v2, &j2, back);
    tenv_fini(&e);
}

/* Garbage in a page: at the doorbell word it is taken, ignored and
 * counted; anywhere else the device never looks. The queue still works. */
static void test_garbage_in_the_pages_is_ignored_and_counted(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint16_t slot;
    uint32_t half = 0x12345678;
    const uint64_t bad[] = {
        qm_db_value(1, QM_DB_CMD_SQ, 1, 0),   /* another queue's qn */
        qm_db_value(0, QM_DB_CMD_EQ, 0, 0),   /* an EQ doorbell in a queue page */
        qm_db_value(0, QM_DB_CMD_AEQ, 0, 0),
        qm_db_value(0, 7, 1, 0),              /* unknown command */
        qm_db_value(0, QM_DB_CMD_SQ, 4000, 0), /* index beyond depth */
        0x0123456789abcdefull,
    };

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    for (size_t i = 0; i < AM_ARRAY_SIZE(bad); i++) {
        uint64_t ign = tcounters(&e, 1).doorbells_ignored;

        atomic_store(t_word(&e, 1, 0), bad[i]);
        t_wait_taken(&e, 1, 0);
        (void)trd32(&e, tdoor_vf(1), QM_VF_STATE); /* the take has finished */
        assert_int_equal(tcounters(&e, 1).doorbells_ignored, ign + 1);
    }
    /* Bytes elsewhere in the page stay as written: not doorbells. */
    memset(e.db[1] + 0x2000, 0xa5, 0x1000);
    memset(e.db[1] + 3 * QM_DB_PAGE_SIZE + 0x1010, 0x5a, 0x100);
    tsleep_us(5000);
    assert_int_equal(e.db[1][0x2000], 0xa5);
    uint64_t w;

    assert_int_equal(qm_db_bar_read(e.dev, 1, 0x2000, &w, 8), 0);
    assert_int_equal(w, 0xa5a5a5a5a5a5a5a5ull);
    /* A torn (4-byte, trapped) write at the doorbell word is not a doorbell. */
    uint64_t ign = tcounters(&e, 1).doorbells_ignored;

    assert_int_equal(qm_db_bar_write(e.dev, 1, QM_DB_SQCQ, &half, 4), 0);
    t_wait_taken(&e, 1, 0);
    (void)trd32(&e, tdoor_vf(1), QM_VF_STATE);
    assert_int_equal(tcounters(&e, 1).doorbells_ignored, ign + 1);
    assert_int_equal(tcounters(&e, 1).jobs_done, 0);
    /* The queue is unharmed. */
    struct tjob j = tjob_new(&e, 1, 4096, 9);

    tjob_sqe(&j, sqe, 0);
    tvf_submit(&v, 0, sqe);
    assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
    tvf_sqe(&v, 0, slot, sqe);
    tjob_check(&v, &j, sqe);
    tenv_fini(&e);
}

/* A trapped 8-byte write of a doorbell is taken at once, after one already
 * stored in the page (which is taken first): a client that does not map
 * BAR4 gets the same device. */
static void test_a_trapped_doorbell_write_acts_at_once(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint16_t slot;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 1, ZIP_ALG_COMPRESS);
    struct tjob j = tjob_new(&e, 1, 4096, 2);

    tjob_sqe(&j, sqe, 0);
    t_place(&v, 1, sqe);
    uint64_t db = qm_db_value(1, QM_DB_CMD_SQ, v.qp[1].sq_tail, 0);
    uint64_t dbs = tcounters(&e, 1).doorbells;

    assert_int_equal(qm_db_bar_write(e.dev, 1, 1 * QM_DB_PAGE_SIZE + QM_DB_SQCQ, &db, 8), 0);
    assert_int_equal(tcounters(&e, 1).doorbells, dbs + 1); /* synchronous */
    assert_int_equal(atomic_load(t_word(&e, 1, 1)), QM_DB_IDLE);
    assert_true(tvf_cqe_wait(&v, 1, &slot, T_TIMEOUT_MS));
    tvf_sqe(&v, 1, slot, sqe);
    tjob_check(&v, &j, sqe);
    tenv_fini(&e);
}

/* FLR: every word of every page reads QM_DB_IDLE again, and a doorbell
 * stored before the reset is gone with the queue it named. */
static void test_a_function_reset_clears_the_pages(void **state)
{
    struct tenv e;
    struct tvf v;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 2);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    memset(e.db[2], 0x3c, qm_db_bar_size(e.dev, 2));
    /* The poller takes the doorbell words (garbage); the rest stays. */
    for (unsigned qn = 0; qn < 4; qn++)
        t_wait_taken(&e, 2, qn);
    assert_int_equal(e.db[2][0], 0x3c);
    assert_int_equal(qm_function_reset(e.dev, 2), 0);
    /* Idle, but for the poll-state words a sweep may have rewritten since. */
    for (uint64_t off = 0; off < qm_db_bar_size(e.dev, 2); off += 8)
        if (off % QM_DB_PAGE_SIZE != QM_DB_POLL_STATE)
            assert_int_equal(*(uint64_t *)(e.db[2] + off), QM_DB_IDLE);
    t_wait_poll_state(&e, 2, QM_DB_POLL_OFF); /* told again, after the reset */
    assert_int_equal(trd32(&e, tdoor_vf(2), QM_QUE_ISO_CFG), QM_QUE_ISO_EN);
    /* Another VF's pages were never touched. */
    assert_int_equal(atomic_load(t_word(&e, 1, 0)), QM_DB_IDLE);
    tenv_fini(&e);
}

/* The poll-state words (qm_hw.h): an idle device says it does not poll,
 * so a guest that kicks rings it trapped; a holder that kicks gets its
 * trapped doorbells acted on at once while the device waits with no sweep
 * due; a stored doorbell of a holder that broke its promise still runs, at
 * the fallback sweep. The PF has no pages to promise anything about. */
static void test_the_pages_say_whether_the_device_polls_and_a_kick_is_acted_on(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];

    (void)state;
    tenv_init(&e, NULL);
    assert_int_equal(qm_db_bar_holder_kicks(e.dev, 0), -ENODEV);
    assert_int_equal(qm_db_bar_holder_kicks(e.dev, 1), 0);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 1, ZIP_ALG_COMPRESS);
    struct tjob j = tjob_new(&e, 1, 4096, 9);

    t_wait_poll_state(&e, 1, QM_DB_POLL_OFF);
    /* A kick: stored, then a trapped write to the queue's poll-state word,
     * which takes the stored word at once and is not itself stored. */
    tjob_sqe(&j, sqe, 1);
    t_submit_stored(&v, 1, sqe);
    uint64_t junk = 0x5a5a5a5a5a5a5a5aull;
    uint64_t state_off = (uint64_t)1 * QM_DB_PAGE_SIZE + QM_DB_POLL_STATE;

    assert_int_equal(qm_db_bar_write(e.dev, 1, state_off, &junk, 8), 0);
    assert_int_equal(atomic_load(t_word(&e, 1, 1)), QM_DB_IDLE); /* taken by the kick */
    assert_true(twait_jobs_done(&e, 1, 1, T_TIMEOUT_MS));
    assert_int_equal(tcounters(&e, 1).doorbell_kicks, 1);
    assert_true(*(uint64_t *)(e.db[1] + state_off) != junk);
    /* Idle again: the spin after the completion ends, the pages say so. */
    t_wait_poll_state(&e, 1, QM_DB_POLL_OFF);
    /* No kick this time: a later sweep (a nap's or the fallback's) finds it. */
    tjob_sqe(&j, sqe, 2);
    t_submit_stored(&v, 1, sqe);
    assert_true(twait_jobs_done(&e, 1, 2, T_TIMEOUT_MS));
    uint32_t back[ZIP_SQE_DWORDS];

    tvf_sqe(&v, 1, 1, back);
    tjob_check(&v, &j, back);
    tenv_fini(&e);
}

/* A mailbox command after a stored doorbell sees it (PCIe ordering): STOP_QP
 * drains the SQE doorbelled a moment before, whether or not the poller has
 * looked yet. */
static void test_a_trapped_access_takes_the_doorbells_stored_before_it(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    struct tjob j = tjob_new(&e, 1, 4096, 4);

    for (unsigned round = 0; round < 20; round++) {
        tjob_sqe(&j, sqe, round);
        t_place(&v, 0, sqe);
        atomic_store(t_word(&e, 1, 0), qm_db_value(0, QM_DB_CMD_SQ, v.qp[0].sq_tail, 0));
        assert_int_equal(tmb(&e, v.door, QM_MB_CMD_STOP_QP, 0, 0, false, NULL), 0);
        assert_int_equal(tcounters(&e, 1).jobs_done, round + 1);
        assert_true(tqueue(&e, 1, 0).stopped);
        tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS); /* a fresh SQC restarts it at slot 0 */
    }
    tenv_fini(&e);
}

/* A new owner gets new pages: the previous owner's fd and mapping reach
 * nothing the device looks at any more. */
static void test_renewed_pages_cut_off_the_previous_owner(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint16_t slot;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    uint8_t *old = e.db[1];
    int old_fd = dup(qm_db_bar_fd(e.dev, 1));

    assert_true(old_fd >= 0);
    assert_int_equal(qm_db_bar_renew(e.dev, 1), 0);
    assert_int_equal(qm_db_bar_renew(e.dev, 0), -ENODEV);
    e.db[1] = mmap(NULL, e.db_size[1], PROT_READ | PROT_WRITE, MAP_SHARED, qm_db_bar_fd(e.dev, 1), 0);
    assert_true(e.db[1] != MAP_FAILED);
    struct tjob j = tjob_new(&e, 1, 4096, 8);

    /* The old owner rings through its stale mapping and its stale fd. */
    tjob_sqe(&j, sqe, 0);
    t_place(&v, 0, sqe);
    atomic_store((_Atomic uint64_t *)(old + QM_DB_SQCQ), qm_db_value(0, QM_DB_CMD_SQ, 1, 0));
    uint8_t *again = mmap(NULL, e.db_size[1], PROT_READ | PROT_WRITE, MAP_SHARED, old_fd, 0);

    assert_true(again != MAP_FAILED);
    atomic_store((_Atomic uint64_t *)(again + QM_DB_SQCQ), qm_db_value(0, QM_DB_CMD_SQ, 1, 0));
    tsleep_us(20000);
    (void)trd32(&e, tdoor_vf(1), QM_VF_STATE);
    assert_int_equal(tcounters(&e, 1).jobs_done, 0);
    assert_int_equal(atomic_load(t_word(&e, 1, 0)), QM_DB_IDLE);
    /* The new owner's page works. */
    atomic_store(t_word(&e, 1, 0), qm_db_value(0, QM_DB_CMD_SQ, 1, 0));
    assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
    munmap(again, e.db_size[1]);
    munmap(old, e.db_size[1]);
    close(old_fd);
    tenv_fini(&e);
}

/* The kick eventfd's counter, read through a copy of it (a kick the
 * device consumed reads 0, one nobody waits on keeps its count). */
static uint64_t t_kicks_pending(int kick_fd)
{
    uint64_t n = 0;
    int fl = fcntl(kick_fd, F_GETFL);

    assert_true(fl >= 0 && (fl & O_NONBLOCK));
    if (read(kick_fd, &n, sizeof(n)) != sizeof(n)) {
        assert_int_equal(errno, EAGAIN);
        return 0;
    }
    return n;
}

/* The kick eventfd (qm_db_bar_kick_fd): only for a VF whose pages were
 * handed out; a write to it does what a trapped kick does, with no trapped
 * access at all (the trapped kick counter stays 0), and the device consumes
 * it. Every holder kicks, so without it the device would wait 100 ms. */
static void test_a_kick_by_the_eventfd_takes_the_stored_doorbells(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint64_t one = 1;

    (void)state;
    tenv_init(&e, NULL);
    assert_int_equal(qm_db_bar_kick_fd(e.dev, 0), -ENODEV);
    assert_int_equal(qm_db_bar_kick_fd(e.dev, 99), -ENODEV);
    assert_int_equal(qm_db_bar_holder_kicks(e.dev, 1), 0);
    int kfd = dup(qm_db_bar_kick_fd(e.dev, 1));

    assert_true(kfd >= 0);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    tvf_start_qp(&v, 1, ZIP_ALG_COMPRESS);
    struct tjob j0 = tjob_new(&e, 1, 4096, 12), j1 = tjob_new(&e, 1, 4096, 15);
    uint16_t slot0 = 0, slot1 = 0;

    for (unsigned n = 1; n <= 6; n++) {
        t_wait_poll_state(&e, 1, QM_DB_POLL_OFF);
        /* Two queues' doorbells stored, one kick: it names no queue. */
        tjob_sqe(&j0, sqe, 2 * n);
        t_submit_stored(&v, 0, sqe);
        tjob_sqe(&j1, sqe, 2 * n + 1);
        t_submit_stored(&v, 1, sqe);
        assert_int_equal(write(kfd, &one, sizeof(one)), sizeof(one));
        assert_true(twait_jobs_done(&e, 1, 2 * n, T_TIMEOUT_MS));
        t_wait_taken(&e, 1, 0);
        t_wait_taken(&e, 1, 1);
        assert_true(tvf_cqe_wait(&v, 0, &slot0, T_TIMEOUT_MS));
        assert_true(tvf_cqe_wait(&v, 1, &slot1, T_TIMEOUT_MS));
    }
    assert_int_equal(tcounters(&e, 1).doorbell_kicks, 0); /* none was trapped */
    assert_int_equal(tcounters(&e, 1).doorbells_ignored, 0);
    /* Every kick was consumed (the device drains the eventfd when it sweeps). */
    t_wait_poll_state(&e, 1, QM_DB_POLL_OFF);
    assert_int_equal(t_kicks_pending(kfd), 0);
    uint32_t back[ZIP_SQE_DWORDS];

    tvf_sqe(&v, 0, slot0, back);
    tjob_check(&v, &j0, back);
    tvf_sqe(&v, 1, slot1, back);
    tjob_check(&v, &j1, back);
    close(kfd);
    tenv_fini(&e);
}

/* A renew closes the device's kick eventfd and takes it out of what the
 * workers wait on: a stale holder's copy reaches nothing (its count stays
 * unread, nothing runs), the new pages get a new one, refused (-EPERM)
 * until they are handed out. */
static void test_after_a_renew_the_old_kick_eventfd_reaches_nothing(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint64_t one = 1;
    uint16_t slot;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    uint8_t *old = e.db[1];
    int old_kfd = dup(qm_db_bar_kick_fd(e.dev, 1));

    assert_true(old_kfd >= 0);
    assert_int_equal(qm_db_bar_renew(e.dev, 1), 0);
    assert_int_equal(qm_db_bar_kick_fd(e.dev, 1), -EPERM); /* not handed out yet */
    e.db[1] = mmap(NULL, e.db_size[1], PROT_READ | PROT_WRITE, MAP_SHARED, qm_db_bar_fd(e.dev, 1), 0);
    assert_true(e.db[1] != MAP_FAILED);
    int new_kfd = qm_db_bar_kick_fd(e.dev, 1);

    assert_true(new_kfd >= 0);
    struct tjob j = tjob_new(&e, 1, 4096, 13);

    /* The old holder stores through its stale mapping and kicks its stale fd. */
    tjob_sqe(&j, sqe, 0);
    t_place(&v, 0, sqe);
    atomic_store((_Atomic uint64_t *)(old + QM_DB_SQCQ), qm_db_value(0, QM_DB_CMD_SQ, 1, 0));
    assert_int_equal(write(old_kfd, &one, sizeof(one)), sizeof(one));
    tsleep_us(20000);
    (void)trd32(&e, tdoor_vf(1), QM_VF_STATE);
    assert_int_equal(tcounters(&e, 1).jobs_done, 0);
    assert_int_equal(t_kicks_pending(old_kfd), 1); /* nobody read it */
    /* The new owner's store and kick work. */
    atomic_store(t_word(&e, 1, 0), qm_db_value(0, QM_DB_CMD_SQ, 1, 0));
    assert_int_equal(write(new_kfd, &one, sizeof(one)), sizeof(one));
    assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
    munmap(old, e.db_size[1]);
    close(old_kfd);
    tenv_fini(&e);
}

/* A kick while the function is paused: the stored doorbell is taken and
 * held (not run, not lost), and runs at RESUME_QM. */
static void test_a_kick_while_paused_is_held_and_acted_on_at_resume(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint64_t one = 1;
    uint16_t slot;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    int kfd = qm_db_bar_kick_fd(e.dev, 1);

    assert_true(kfd >= 0);
    struct tjob j = tjob_new(&e, 1, 4096, 14);

    tpause(&e, 1);
    tjob_sqe(&j, sqe, 0);
    t_submit_stored(&v, 0, sqe);
    assert_int_equal(write(kfd, &one, sizeof(one)), sizeof(one));
    t_wait_taken(&e, 1, 0);
    tsleep_us(20000);
    assert_int_equal(tcounters(&e, 1).jobs_done, 0);
    assert_int_equal(tcounters(&e, 1).doorbells_held, 1);
    assert_int_equal(tqueue(&e, 1, 0).sq_tail, 1);
    assert_int_equal(tmb(&e, tdoor_window(1), QM_MB_CMD_RESUME_QM, 0, 0, false, NULL), 0);
    assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
    assert_int_equal(slot, 0);
    uint32_t back[ZIP_SQE_DWORDS];

    tvf_sqe(&v, 0, slot, back);
    tjob_check(&v, &j, back);
    tenv_fini(&e);
}

/* The poll turn's spin after a completion (qm_db_spin_adapt, as KVM's halt
 * polling): a guest that rings within it keeps it, one a longer spin would
 * have caught grows it, from the start value, up to the cap, and one that
 * rings later than any spin would wait (a descheduled guest) shrinks it,
 * to none. */
static void test_the_spin_adapts_to_how_soon_guests_ring_again(void **state)
{
    uint64_t spin = QM_DB_SPIN_MAX_NS;

    (void)state;
    assert_int_equal(qm_db_spin_adapt(spin, 1000), spin);          /* caught: kept */
    assert_int_equal(qm_db_spin_adapt(spin, spin), spin);
    for (int i = 0; i < 3; i++)                                     /* rings 2 ms late */
        spin = qm_db_spin_adapt(spin, 2000000);
    assert_int_equal(spin, QM_DB_SPIN_MAX_NS / 8);
    spin = qm_db_spin_adapt(spin, 2000000);
    assert_int_equal(spin, 0);                                      /* below the start: none */
    assert_int_equal(qm_db_spin_adapt(0, 2000000), 0);
    spin = qm_db_spin_adapt(0, 3000);                               /* back: grows from the start */
    assert_int_equal(spin, QM_DB_SPIN_START_NS);
    spin = qm_db_spin_adapt(spin, 3000);
    assert_int_equal(spin, 2 * QM_DB_SPIN_START_NS);
    for (int i = 0; i < 8; i++)
        spin = qm_db_spin_adapt(spin, QM_DB_SPIN_MAX_NS);
    assert_int_equal(spin, QM_DB_SPIN_MAX_NS);                      /* capped */
    assert_int_equal(qm_db_spin_adapt(spin, QM_DB_SPIN_MAX_NS + 1), QM_DB_SPIN_MAX_NS / 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_vf_has_sealed_doorbell_pages_that_read_idle),
        cmocka_unit_test(test_without_isolation_there_is_no_bar4_and_the_register_says_so),
        cmocka_unit_test(test_a_doorbell_stored_into_the_mapped_page_runs_the_job),
        cmocka_unit_test(test_a_stored_doorbell_is_served_while_another_vf_holds_a_worker),
        cmocka_unit_test(test_garbage_in_the_pages_is_ignored_and_counted),
        cmocka_unit_test(test_a_trapped_doorbell_write_acts_at_once),
        cmocka_unit_test(test_a_function_reset_clears_the_pages),
        cmocka_unit_test(test_the_pages_say_whether_the_device_polls_and_a_kick_is_acted_on),
        cmocka_unit_test(test_a_trapped_access_takes_the_doorbells_stored_before_it),
        cmocka_unit_test(test_renewed_pages_cut_off_the_previous_owner),
        cmocka_unit_test(test_a_kick_by_the_eventfd_takes_the_stored_doorbells),
        cmocka_unit_test(test_after_a_renew_the_old_kick_eventfd_reaches_nothing),
        cmocka_unit_test(test_a_kick_while_paused_is_held_and_acted_on_at_resume),
        cmocka_unit_test(test_the_spin_adapts_to_how_soon_guests_ring_again),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
