/* Queues: jobs, completions, events, phases, CQ full, EQ overflow, context
 * write-back, STOP_QP drain. */
#include "qm_tdrv.h"

#include <stdlib.h>
#include <string.h>

static void test_a_compression_job_completes_with_cqe_eqe_and_msi(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS], back[ZIP_SQE_DWORDS];
    uint16_t slot, got, cqn[4];
    unsigned irqs;
    struct tjob j;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    j = tjob_new(&e, 1, 100000, 1);
    tjob_sqe(&j, sqe, 0x1122334455667788ull);
    irqs = tenv_irqs(&e, 1, QM_VEC_EQ);
    slot = tvf_submit(&v, 0, sqe);
    assert_true(tenv_irq_wait(&e, 1, QM_VEC_EQ, irqs, T_TIMEOUT_MS));
    assert_int_equal(trd32(&e, v.door, QM_EQ_INT_SOURCE) & 1u, 1);
    assert_int_equal(tvf_eq_drain(&v, cqn, 4), 1);
    assert_int_equal(cqn[0], 0);
    assert_int_equal(trd32(&e, v.door, QM_EQ_INT_SOURCE) & 1u, 0);
    assert_true(tvf_cqe_take(&v, 0, &got));
    assert_int_equal(got, slot);
    assert_int_equal(v.last_sq_num, 0);
    tvf_sqe(&v, 0, slot, back);
    tjob_check(&v, &j, back);
    /* Only dw0, dw1, dw3 changed. */
    for (unsigned i = 0; i < ZIP_SQE_DWORDS; i++)
        if (i != ZIP_SQE_CONSUMED && i != ZIP_SQE_PRODUCED && i != ZIP_SQE_DW3)
            assert_int_equal(back[i], sqe[i]);
    assert_int_equal(tcounters(&e, 1).jobs_done, 1);
    tenv_fini(&e);
}


static void test_jobs_of_one_queue_complete_in_submission_order(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct tjob j[64];
    uint16_t slot;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 2, ZIP_ALG_COMPRESS);
    for (unsigned i = 0; i < 64; i++) {
        j[i] = tjob_new(&e, 1, 4096 + i * 100, i);
        tjob_sqe(&j[i], sqe, i);
        assert_int_equal(tvf_submit(&v, 2, sqe), i);
    }
    for (unsigned i = 0; i < 64; i++) {
        assert_true(tvf_cqe_wait(&v, 2, &slot, T_TIMEOUT_MS));
        assert_int_equal(slot, i);
        tvf_sqe(&v, 2, slot, sqe);
        assert_int_equal(sqe[ZIP_SQE_TAG_L], i);
        tjob_check(&v, &j[i], sqe);
    }
    tenv_fini(&e);
}

static void test_the_cq_phase_flips_on_every_wrap_over_thousands_of_jobs(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct tjob j;
    unsigned sent = 0, done = 0, total = 2600;
    uint16_t slot;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    j = tjob_new(&e, 1, 256, 3);
    tjob_sqe(&j, sqe, 0);
    while (done < total) {
        /* Keep at most depth-1 jobs outstanding, as the driver does. */
        while (sent < total && sent - done < QM_SQ_DEPTH - 1) {
            sqe[ZIP_SQE_TAG_L] = sent;
            assert_int_equal(tvf_submit(&v, 0, sqe), sent % QM_SQ_DEPTH);
            sent++;
        }
        assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
        assert_int_equal(slot, done % QM_SQ_DEPTH);
        done++;
    }
    struct qm_queue_debug q = tqueue(&e, 1, 0);

    assert_int_equal(q.cq_tail, total % QM_CQ_DEPTH);
    assert_int_equal(q.cq_phase, 1); /* started at 1, flipped twice */
    assert_int_equal(v.qp[0].cq_phase, 1);
    assert_int_equal(tcounters(&e, 1).jobs_done, total);
    tenv_fini(&e);
}

static void test_a_disarmed_cq_posts_no_event_until_a_priority_1_doorbell_rearms_it(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct tjob j;
    uint16_t slot, cqn[4];
    unsigned irqs;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    j = tjob_new(&e, 1, 1000, 1);
    tjob_sqe(&j, sqe, 0);
    tvf_submit(&v, 0, sqe);
    assert_true(twait_jobs_done(&e, 1, 1, T_TIMEOUT_MS));
    assert_int_equal(tcounters(&e, 1).eqes_posted, 1);
    assert_false(tqueue(&e, 1, 0).cq_armed);
    assert_int_equal(tvf_eq_drain(&v, cqn, 4), 1);
    /* Disarmed: the next completions raise nothing. */
    tvf_submit(&v, 0, sqe);
    assert_true(twait_jobs_done(&e, 1, 2, T_TIMEOUT_MS));
    assert_true(tvf_cqe_take(&v, 0, &slot));
    assert_true(tvf_cqe_take(&v, 0, &slot));
    tvf_submit(&v, 0, sqe);
    assert_true(twait_jobs_done(&e, 1, 3, T_TIMEOUT_MS));
    assert_int_equal(tcounters(&e, 1).eqes_posted, 1);
    assert_int_equal(trd32(&e, v.door, QM_EQ_INT_SOURCE), 0);
    /* Re-arm with a CQE waiting beyond the head: an EQE at once, and its MSI. */
    irqs = tenv_irqs(&e, 1, QM_VEC_EQ);
    tvf_cq_rearm(&v, 0);
    assert_int_equal(tcounters(&e, 1).eqes_posted, 2);
    assert_true(tenv_irq_wait(&e, 1, QM_VEC_EQ, irqs, T_TIMEOUT_MS));
    assert_int_equal(tvf_eq_drain(&v, cqn, 4), 1);
    assert_int_equal(cqn[0], 0);
    assert_true(tvf_cqe_take(&v, 0, &slot));
    /* Re-arm with nothing waiting: no EQE now, one with the next CQE. */
    tvf_cq_rearm(&v, 0);
    assert_int_equal(tcounters(&e, 1).eqes_posted, 2);
    assert_true(tqueue(&e, 1, 0).cq_armed);
    tvf_submit(&v, 0, sqe);
    assert_true(twait_jobs_done(&e, 1, 4, T_TIMEOUT_MS));
    assert_int_equal(tcounters(&e, 1).eqes_posted, 3);
    tenv_fini(&e);
}

static void test_a_full_cq_stops_fetching_without_overwriting_and_resumes_when_drained(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct tjob j;
    uint16_t slot;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp_ex(&v, 0, ZIP_ALG_COMPRESS, 8, true);
    j = tjob_new(&e, 1, 2000, 1);
    tjob_sqe(&j, sqe, 0);
    for (unsigned i = 0; i < 20; i++)
        tvf_submit(&v, 0, sqe);
    /* A CQ of 8 holds 7. */
    assert_true(twait_jobs_done(&e, 1, 7, T_TIMEOUT_MS));
    tsleep_us(20000);
    assert_int_equal(tcounters(&e, 1).jobs_done, 7);
    assert_true(tcounters(&e, 1).cq_full_stalls >= 1);
    assert_int_equal(tqueue(&e, 1, 0).sq_head, 7);
    assert_int_equal(tcounters(&e, 1).aeqes_posted, 0); /* it can still resolve */
    /* Each CQ doorbell that makes room lets the next job through. */
    for (unsigned i = 0; i < 20; i++) {
        assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
        assert_int_equal(slot, i);
    }
    assert_int_equal(tcounters(&e, 1).jobs_done, 20);
    tenv_fini(&e);
}

static void test_eq_overflow_posts_one_aeqe_of_type_1(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS], aeqe[4];
    struct tjob j;
    unsigned irqs;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_load_eq(&v, 4); /* room for 3 */
    j = tjob_new(&e, 1, 1000, 1);
    tjob_sqe(&j, sqe, 0);
    irqs = tenv_irqs(&e, 1, QM_VEC_AEQ);
    for (unsigned q = 0; q < 4; q++) {
        tvf_start_qp(&v, q, ZIP_ALG_COMPRESS);
        tvf_submit(&v, q, sqe);
        assert_true(twait_jobs_done(&e, 1, q + 1, T_TIMEOUT_MS));
    }
    assert_int_equal(tcounters(&e, 1).eqes_posted, 3);
    assert_int_equal(tcounters(&e, 1).eqes_dropped, 1);
    assert_true(tenv_irq_wait(&e, 1, QM_VEC_AEQ, irqs, T_TIMEOUT_MS));
    assert_int_equal(trd32(&e, v.door, QM_AEQ_INT_SOURCE), 1);
    assert_int_equal(tvf_aeq_drain(&v, aeqe, 4), 1);
    assert_int_equal(aeqe[0] >> QM_AEQE_TYPE_SHIFT, QM_AEQE_EQ_OVERFLOW);
    assert_int_equal(trd32(&e, v.door, QM_AEQ_INT_SOURCE), 0);
    tenv_fini(&e);
}

static void test_a_cq_ring_that_cannot_be_written_breaks_only_its_queue(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS], aeqe[4];
    struct tjob j;
    uint16_t slot;
    static uint8_t ro_ring[QM_CQ_DEPTH * 16] __attribute__((aligned(4096)));
    const uint64_t ro_iova = 0x7f000000ull;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    assert_int_equal(iommu_map_host(qm_dev_iommu(e.dev, 1), ro_iova, sizeof(ro_ring), ro_ring,
                                    IOMMU_READ),
                     0);
    v.qp[1].cq = ro_iova;
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    tvf_start_qp(&v, 1, ZIP_ALG_COMPRESS); /* its CQ lies in read-only memory */
    j = tjob_new(&e, 1, 1000, 1);
    tjob_sqe(&j, sqe, 0);
    tvf_submit(&v, 1, sqe);
    assert_true(tenv_irq_wait(&e, 1, QM_VEC_AEQ, 0, T_TIMEOUT_MS));
    assert_int_equal(tvf_aeq_drain(&v, aeqe, 4), 1);
    assert_int_equal(aeqe[0] >> QM_AEQE_TYPE_SHIFT, QM_AEQE_CQE_ERROR);
    assert_int_equal(aeqe[0] & 0xffffu, 1);
    assert_true(tqueue(&e, 1, 1).cq_broken);
    assert_true(tcounters(&e, 1).ring_faults >= 1);
    /* The job's result reached its SQE; nothing was written to the ring. */
    for (size_t i = 0; i < sizeof(ro_ring); i++)
        assert_int_equal(ro_ring[i], 0);
    /* Queue 0 goes on. */
    tvf_submit(&v, 0, sqe);
    assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
    /* Reloading the CQ mends queue 1. */
    v.qp[1].cq = tmem_alloc(&e, 1, QM_CQ_DEPTH * 16, 4096);
    v.qp[1].sq_tail = 0;
    tvf_start_qp(&v, 1, ZIP_ALG_COMPRESS);
    tvf_submit(&v, 1, sqe);
    assert_true(tvf_cqe_wait(&v, 1, &slot, T_TIMEOUT_MS));
    tenv_fini(&e);
}

static void test_an_sq_ring_outside_the_domain_breaks_the_queue(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t aeqe[4];

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    v.qp[2].sq = 0x7e000000ull; /* not mapped */
    tvf_start_qp(&v, 2, ZIP_ALG_COMPRESS);
    twr64(&e, v.door, QM_DB_SQCQ, qm_db_value(2, QM_DB_CMD_SQ, 1, 0));
    assert_true(tenv_irq_wait(&e, 1, QM_VEC_AEQ, 0, T_TIMEOUT_MS));
    assert_int_equal(tvf_aeq_drain(&v, aeqe, 4), 1);
    assert_int_equal(aeqe[0], 2u | 1u << 16 | QM_AEQE_CQE_ERROR << QM_AEQE_TYPE_SHIFT);
    assert_true(tqueue(&e, 1, 2).sq_broken);
    assert_int_equal(tcounters(&e, 1).jobs_done, 0);
    /* Later doorbells on the broken SQ are ignored and counted. */
    uint64_t ign = tcounters(&e, 1).doorbells_ignored;

    twr64(&e, v.door, QM_DB_SQCQ, qm_db_value(2, QM_DB_CMD_SQ, 2, 0));
    assert_int_equal(tcounters(&e, 1).doorbells_ignored, ign + 1);
    tenv_fini(&e);
}

static void test_cache_writeback_puts_live_positions_into_the_tables(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct tjob j;
    struct qm_sqc sqc;
    struct qm_cqc cqc;
    uint16_t slot;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    tvf_start_qp(&v, 1, ZIP_ALG_DECOMPRESS);
    j = tjob_new(&e, 1, 1000, 1);
    tjob_sqe(&j, sqe, 0);
    for (unsigned i = 0; i < 5; i++)
        tvf_submit(&v, 0, sqe);
    for (unsigned i = 0; i < 3; i++)
        assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
    assert_true(twait_jobs_done(&e, 1, 5, T_TIMEOUT_MS));
    assert_int_equal(trd32(&e, v.door, QM_CACHE_WB_DONE), 0);
    twr32(&e, v.door, QM_CACHE_WB_START, 1);
    assert_int_equal(trd32(&e, v.door, QM_CACHE_WB_DONE), 1);
    memcpy(&sqc, tmem_ptr(&e, 1, v.sqc_bt), 32);
    memcpy(&cqc, tmem_ptr(&e, 1, v.cqc_bt), 32);
    assert_int_equal(sqc.head, 5);
    assert_int_equal(sqc.tail, 5);
    assert_int_equal((uint64_t)sqc.base_l | (uint64_t)sqc.base_h << 32, v.qp[0].sq);
    assert_int_equal(sqc.dw3, QM_SQC_DW3(QM_SQ_DEPTH));
    assert_int_equal(sqc.w13, QM_SQC_W13(0));
    assert_int_equal(cqc.head, 3);
    assert_int_equal(cqc.tail, 5);
    assert_int_equal(cqc.dw6, QM_CQC_DW6_PHASE | QM_CQC_DW6_EQ_EN);
    memcpy(&sqc, tmem_ptr(&e, 1, v.sqc_bt + 32), 32);
    assert_int_equal(sqc.w13, QM_SQC_W13(1));
    assert_int_equal(tcounters(&e, 1).cache_writebacks, 1);
    tenv_fini(&e);
}

static void test_stop_qp_drains_every_doorbelled_sqe_and_then_refuses_more(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct tjob j;
    uint64_t ign;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    j = tjob_new(&e, 1, 200000, 1);
    tjob_sqe(&j, sqe, 0);
    for (unsigned i = 0; i < 30; i++)
        tvf_submit(&v, 0, sqe);
    /* The CQ is not consumed meanwhile (the driver marked the qp stopped). */
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_STOP_QP, 0, 0, false, NULL), 0);
    assert_int_equal(tcounters(&e, 1).jobs_done, 30);
    assert_true(tqueue(&e, 1, 0).stopped);
    assert_int_equal(tqueue(&e, 1, 0).sq_head, 30);
    ign = tcounters(&e, 1).doorbells_ignored;
    tvf_submit(&v, 0, sqe);
    assert_int_equal(tcounters(&e, 1).doorbells_ignored, ign + 1);
    assert_int_equal(tcounters(&e, 1).jobs_done, 30);
    /* A fresh SQC restarts it. */
    v.qp[0].sq_tail = 0;
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    tvf_submit(&v, 0, sqe);
    assert_true(twait_jobs_done(&e, 1, 31, T_TIMEOUT_MS));
    tenv_fini(&e);
}

static void test_stop_qp_behind_a_full_cq_reports_cq_overflow_and_stops(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS], aeqe[4];
    struct tjob j;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp_ex(&v, 3, ZIP_ALG_COMPRESS, 4, true);
    j = tjob_new(&e, 1, 1000, 1);
    tjob_sqe(&j, sqe, 0);
    for (unsigned i = 0; i < 10; i++)
        tvf_submit(&v, 3, sqe);
    assert_true(twait_jobs_done(&e, 1, 3, T_TIMEOUT_MS));
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_STOP_QP, 3, 0, false, NULL), 0);
    assert_true(tqueue(&e, 1, 3).stopped);
    assert_int_equal(tcounters(&e, 1).jobs_done, 3);
    assert_int_equal(tvf_aeq_drain(&v, aeqe, 4), 1);
    assert_int_equal(aeqe[0] >> QM_AEQE_TYPE_SHIFT, QM_AEQE_CQ_OVERFLOW);
    assert_int_equal(aeqe[0] & 0xffffu, 3);
    tenv_fini(&e);
}

static void test_malformed_doorbells_are_ignored_and_counted(void **state)
{
    struct tenv e;
    struct tvf v;
    uint64_t before;
    static const struct {
        uint64_t off;
        uint16_t qn;
        unsigned cmd;
        uint16_t index;
    } bad[] = {
        {QM_DB_SQCQ, 4, QM_DB_CMD_SQ, 1},      /* qn beyond the VF's 4 queues */
        {QM_DB_SQCQ, 0xfff, QM_DB_CMD_CQ, 1},
        {QM_DB_SQCQ, 0, QM_DB_CMD_SQ, 1024},   /* index beyond depth */
        {QM_DB_SQCQ, 0, QM_DB_CMD_CQ, 5000},
        {QM_DB_SQCQ, 1, QM_DB_CMD_SQ, 1},      /* queue without a context */
        {QM_DB_SQCQ, 0, 4, 0},                 /* unknown command */
        {QM_DB_SQCQ, 0, 15, 0},
        {QM_DB_SQCQ, 0, QM_DB_CMD_EQ, 0},      /* EQ command at the SQ/CQ address */
        {QM_DB_EQAEQ, 0, QM_DB_CMD_SQ, 1},     /* SQ command at the EQ/AEQ address */
        {QM_DB_EQAEQ, 1, QM_DB_CMD_EQ, 0},     /* EQ doorbell with qn != 0 */
        {QM_DB_EQAEQ, 0, QM_DB_CMD_EQ, 2048},
        {QM_DB_EQAEQ, 0, QM_DB_CMD_AEQ, 1024},
    };

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    before = tcounters(&e, 1).doorbells_ignored;
    for (size_t i = 0; i < AM_ARRAY_SIZE(bad); i++)
        twr64(&e, v.door, bad[i].off, qm_db_value(bad[i].qn, bad[i].cmd, bad[i].index, 0));
    assert_int_equal(tcounters(&e, 1).doorbells_ignored - before, AM_ARRAY_SIZE(bad));
    assert_int_equal(thost_rd32(&e, tdoor_window(1), QM_WIN_DB_IGNORED),
                     (uint32_t)tcounters(&e, 1).doorbells_ignored);
    assert_int_equal(tqueue(&e, 1, 0).sq_tail, 0);
    assert_int_equal(tqueue(&e, 1, 0).cq_head, 0);
    assert_int_equal(tcounters(&e, 1).jobs_done, 0);
    tenv_fini(&e);
}

static void test_a_doorbell_split_into_two_dwords_rings_once_with_the_second(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct tjob j;
    uint64_t db;
    uint16_t slot;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    j = tjob_new(&e, 1, 1000, 1);
    tjob_sqe(&j, sqe, 0);
    memcpy(tmem_ptr(&e, 1, v.qp[0].sq), sqe, sizeof(sqe));
    v.qp[0].sq_tail = 1;
    db = qm_db_value(0, QM_DB_CMD_SQ, 1, 0);
    twr32(&e, v.door, QM_DB_SQCQ, (uint32_t)db);
    assert_int_equal(tcounters(&e, 1).doorbells, 2); /* the probe's EQ and AEQ only */
    twr32(&e, v.door, QM_DB_SQCQ + 4, (uint32_t)(db >> 32));
    assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
    assert_int_equal(slot, 0);
    assert_int_equal(tcounters(&e, 1).jobs_done, 1);
    tenv_fini(&e);
}

static void test_a_decompression_queue_inflates_what_a_compression_queue_made(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct tjob j;
    uint64_t back;
    uint16_t slot;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 2);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    tvf_start_qp(&v, 1, ZIP_ALG_DECOMPRESS);
    j = tjob_new(&e, 2, 300000, 9);
    tjob_sqe(&j, sqe, 1);
    tvf_submit(&v, 0, sqe);
    assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
    tvf_sqe(&v, 0, slot, sqe);
    tjob_check(&v, &j, sqe);
    back = tmem_alloc(&e, 2, j.len, 64);
    tsqe_flat(sqe, ZIP_REQ_DEFLATE, j.dst, sqe[ZIP_SQE_PRODUCED], back, j.len, 2);
    tvf_submit(&v, 1, sqe);
    assert_true(tvf_cqe_wait(&v, 1, &slot, T_TIMEOUT_MS));
    tvf_sqe(&v, 1, slot, sqe);
    assert_int_equal(sqe[ZIP_SQE_DW3] & 0xffu, ZIP_ST_OK);
    assert_int_equal(sqe[ZIP_SQE_PRODUCED], j.len);
    assert_memory_equal(tmem_ptr(&e, 2, back), tmem_ptr(&e, 2, j.src), j.len);
    tenv_fini(&e);
}

static void test_a_queue_without_cq_events_completes_silently(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct tjob j;
    uint16_t slot;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp_ex(&v, 0, ZIP_ALG_COMPRESS, QM_CQ_DEPTH, false);
    j = tjob_new(&e, 1, 1000, 1);
    tjob_sqe(&j, sqe, 0);
    tvf_submit(&v, 0, sqe);
    assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
    tvf_cq_rearm(&v, 0);
    assert_int_equal(tcounters(&e, 1).eqes_posted, 0);
    assert_int_equal(tenv_irqs(&e, 1, QM_VEC_EQ), 0);
    tenv_fini(&e);
}

static void test_a_masked_eq_raises_its_msi_only_when_unmasked(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct tjob j;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    twr32(&e, v.door, QM_EQ_INT_MASK, 1);
    j = tjob_new(&e, 1, 1000, 1);
    tjob_sqe(&j, sqe, 0);
    tvf_submit(&v, 0, sqe);
    assert_true(twait_jobs_done(&e, 1, 1, T_TIMEOUT_MS));
    assert_int_equal(trd32(&e, v.door, QM_EQ_INT_SOURCE), 1);
    assert_int_equal(tenv_irqs(&e, 1, QM_VEC_EQ), 0);
    twr32(&e, v.door, QM_EQ_INT_MASK, 0);
    assert_true(tenv_irq_wait(&e, 1, QM_VEC_EQ, 0, T_TIMEOUT_MS));
    tenv_fini(&e);
}

static void test_an_eq_doorbell_that_leaves_entries_behind_interrupts_again(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct tjob j;
    unsigned irqs;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    j = tjob_new(&e, 1, 1000, 1);
    tjob_sqe(&j, sqe, 0);
    for (unsigned q = 0; q < 2; q++) {
        tvf_start_qp(&v, q, ZIP_ALG_COMPRESS);
        tvf_submit(&v, q, sqe);
        assert_true(twait_jobs_done(&e, 1, q + 1, T_TIMEOUT_MS));
    }
    assert_int_equal(tenv_irqs(&e, 1, QM_VEC_EQ), 1); /* raised when the EQ became non-empty */
    irqs = tenv_irqs(&e, 1, QM_VEC_EQ);
    twr64(&e, v.door, QM_DB_EQAEQ, qm_db_value(0, QM_DB_CMD_EQ, 1, 0));
    assert_int_equal(tenv_irqs(&e, 1, QM_VEC_EQ), irqs + 1);
    assert_int_equal(trd32(&e, v.door, QM_EQ_INT_SOURCE), 1);
    twr64(&e, v.door, QM_DB_EQAEQ, qm_db_value(0, QM_DB_CMD_EQ, 2, 0));
    assert_int_equal(tenv_irqs(&e, 1, QM_VEC_EQ), irqs + 1);
    assert_int_equal(trd32(&e, v.door, QM_EQ_INT_SOURCE), 0);
    tenv_fini(&e);
}

static void test_many_queues_of_many_functions_all_complete(void **state)
{
    struct qm_dev_config cfg;
    struct tenv e;
    struct tvf v[4];
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct tjob j[4];
    uint16_t slot;

    (void)state;
    qm_dev_config_default(&cfg);
    cfg.workers = 3;
    tenv_init(&e, &cfg);
    for (unsigned f = 0; f < 4; f++) {
        tvf_probe(&e, &v[f], f + 1);
        j[f] = tjob_new(&e, f + 1, 50000, f);
        for (unsigned q = 0; q < 4; q++)
            tvf_start_qp(&v[f], q, ZIP_ALG_COMPRESS);
    }
    for (unsigned n = 0; n < 20; n++)
        for (unsigned f = 0; f < 4; f++)
            for (unsigned q = 0; q < 4; q++) {
                tjob_sqe(&j[f], sqe, n);
                /* Each job has its own output buffer. */
                uint64_t dst = tmem_alloc(&e, f + 1, j[f].cap, 64);

                sqe[ZIP_SQE_DST_ADDR_L] = (uint32_t)dst;
                sqe[ZIP_SQE_DST_ADDR_H] = (uint32_t)(dst >> 32);
                tvf_submit(&v[f], q, sqe);
            }
    for (unsigned f = 0; f < 4; f++)
        for (unsigned q = 0; q < 4; q++)
            for (unsigned n = 0; n < 20; n++) {
                assert_true(tvf_cqe_wait(&v[f], q, &slot, T_TIMEOUT_MS));
                assert_int_equal(slot, n);
                tvf_sqe(&v[f], q, slot, sqe);
                struct tjob jj = j[f];

                jj.dst = (uint64_t)sqe[ZIP_SQE_DST_ADDR_L] | (uint64_t)sqe[ZIP_SQE_DST_ADDR_H] << 32;
                tjob_check(&v[f], &jj, sqe);
            }
    tenv_fini(&e);
}

static void test_a_priority_1_sq_doorbell_resumes_without_moving_the_tail(void **state)
{
    struct tenv e;
    struct tvf v;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    twr64(&e, v.door, QM_DB_SQCQ, qm_db_value(0, QM_DB_CMD_SQ, 77, 1));
    assert_int_equal(tqueue(&e, 1, 0).sq_tail, 0);
    assert_int_equal(tcounters(&e, 1).doorbells_ignored, 0);
    tsleep_us(10000);
    assert_int_equal(tcounters(&e, 1).jobs_done, 0);
    tenv_fini(&e);
}

static void test_table_base_commands_reload_contexts_from_the_table_on_first_use(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct tjob j;
    uint16_t slot;
    uint64_t ign;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    tvf_start_qp(&v, 1, ZIP_ALG_COMPRESS);
    j = tjob_new(&e, 1, 1000, 1);
    tjob_sqe(&j, sqe, 0);
    tvf_submit(&v, 0, sqe);
    assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
    twr32(&e, v.door, QM_CACHE_WB_START, 1);
    /* Setting the bases again drops the cache; the tables hold the state. */
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_SQC_BT, 0, v.sqc_bt, false, NULL), 0);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_CQC_BT, 0, v.cqc_bt, false, NULL), 0);
    assert_false(tqueue(&e, 1, 0).sq_loaded);
    assert_true(tqueue(&e, 1, 0).sq_reload_pending);
    /* The next doorbell naming queue 0 loads it, position included. */
    tvf_submit(&v, 0, sqe);
    assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
    assert_int_equal(slot, 1);
    assert_int_equal(tcounters(&e, 1).table_loads, 2);
    /* Queue 1's slot was written back too; queue 2's is empty: no context. */
    ign = tcounters(&e, 1).doorbells_ignored;
    twr64(&e, v.door, QM_DB_SQCQ, qm_db_value(2, QM_DB_CMD_SQ, 1, 0));
    assert_int_equal(tcounters(&e, 1).doorbells_ignored, ign + 1);
    assert_false(tqueue(&e, 1, 2).sq_reload_pending);
    tvf_submit(&v, 1, sqe);
    assert_true(tvf_cqe_wait(&v, 1, &slot, T_TIMEOUT_MS));
    assert_int_equal(tcounters(&e, 1).table_loads, 4);
    tenv_fini(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_compression_job_completes_with_cqe_eqe_and_msi),
        cmocka_unit_test(test_jobs_of_one_queue_complete_in_submission_order),
        cmocka_unit_test(test_the_cq_phase_flips_on_every_wrap_over_thousands_of_jobs),
        cmocka_unit_test(test_a_disarmed_cq_posts_no_event_until_a_priority_1_doorbell_rearms_it),
        cmocka_unit_test(test_a_full_cq_stops_fetching_without_overwriting_and_resumes_when_drained),
        cmocka_unit_test(test_eq_overflow_posts_one_aeqe_of_type_1),
        cmocka_unit_test(test_a_cq_ring_that_cannot_be_written_breaks_only_its_queue),
        cmocka_unit_test(test_an_sq_ring_outside_the_domain_breaks_the_queue),
        cmocka_unit_test(test_cache_writeback_puts_live_positions_into_the_tables),
        cmocka_unit_test(test_stop_qp_drains_every_doorbelled_sqe_and_then_refuses_more),
        cmocka_unit_test(test_stop_qp_behind_a_full_cq_reports_cq_overflow_and_stops),
        cmocka_unit_test(test_malformed_doorbells_are_ignored_and_counted),
        cmocka_unit_test(test_a_doorbell_split_into_two_dwords_rings_once_with_the_second),
        cmocka_unit_test(test_a_decompression_queue_inflates_what_a_compression_queue_made),
        cmocka_unit_test(test_a_queue_without_cq_events_completes_silently),
        cmocka_unit_test(test_a_masked_eq_raises_its_msi_only_when_unmasked),
        cmocka_unit_test(test_an_eq_doorbell_that_leaves_entries_behind_interrupts_again),
        cmocka_unit_test(test_many_queues_of_many_functions_all_complete),
        cmocka_unit_test(test_a_priority_1_sq_doorbell_resumes_without_moving_the_tail),
        cmocka_unit_test(test_table_base_commands_reload_contexts_from_the_table_on_first_use),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
