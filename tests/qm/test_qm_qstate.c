/* The queue-state registers of the migration door (qm_hw.h, defined here):
 * the bitmaps show what the guest's actions did to its queues, a host load
 * takes effect without posting or raising anything, a context load drops
 * the bits and a table load keeps them, the context cache window reads live
 * contexts and loads images as a mailbox would, CACHE_WB names what it could
 * not write, the function's mailbox and doorbell staging read and load, and
 * FLR clears it all. */
#include "qm_tdrv.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hpair(struct tenv *e, struct tdoor w, uint32_t off)
{
    return (uint64_t)thost_rd32(e, w, off + 4) << 32 | thost_rd32(e, w, off);
}

static void hpair_wr(struct tenv *e, struct tdoor w, uint32_t off, uint64_t v)
{
    thost_wr32(e, w, off, (uint32_t)v);
    thost_wr32(e, w, off + 4, (uint32_t)(v >> 32));
}

static void sqe_for(struct tenv *e, uint32_t sqe[ZIP_SQE_DWORDS], unsigned seed)
{
    struct tjob j = tjob_new(e, 1, 1000, seed);

    tjob_sqe(&j, sqe, seed);
}

static void test_the_bitmaps_show_what_the_guests_actions_did_to_its_queues(void **state)
{
    static uint8_t ro_ring[QM_CQ_DEPTH * 16] __attribute__((aligned(4096)));
    struct tenv e;
    struct tvf v;
    struct tdoor w = tdoor_window(1);
    uint32_t sqe[ZIP_SQE_DWORDS], aeqe[8];
    uint16_t slot;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    for (unsigned k = 0; k < 7; k++)
        assert_int_equal(hpair(&e, w, QM_WIN_SQ_STOPPED_L + 8 * k), 0);
    sqe_for(&e, sqe, 1);
    /* Queue 0: a CQE posted its EQE and was not re-armed: disarmed. */
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    tvf_submit(&v, 0, sqe);
    assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
    assert_int_equal(hpair(&e, w, QM_WIN_CQ_DISARMED_L), 0x1);
    tvf_cq_rearm(&v, 0);
    assert_int_equal(hpair(&e, w, QM_WIN_CQ_DISARMED_L), 0);
    /* Queue 1: a CQ of 4 filled (3 CQEs), then STOP_QP: stalled while full,
     * stopped with AEQE type 0 reported once. */
    tvf_start_qp_ex(&v, 1, ZIP_ALG_COMPRESS, 4, false);
    for (unsigned i = 0; i < 6; i++)
        tvf_submit(&v, 1, sqe);
    assert_true(twait_jobs_done(&e, 1, 4, T_TIMEOUT_MS));
    assert_int_equal(hpair(&e, w, QM_WIN_CQ_STALLED_L), 0x2);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_STOP_QP, 1, 0, false, NULL), 0);
    assert_int_equal(hpair(&e, w, QM_WIN_SQ_STOPPED_L), 0x2);
    assert_int_equal(hpair(&e, w, QM_WIN_CQ_OVERFLOW_L), 0x2);
    assert_int_equal(hpair(&e, w, QM_WIN_SQ_STOPPING_L), 0);
    /* Queue 2: its SQ ring outside the domain. Queue 3: its CQ read-only. */
    v.qp[2].sq = 0x7e000000ull;
    tvf_start_qp(&v, 2, ZIP_ALG_COMPRESS);
    twr64(&e, v.door, QM_DB_SQCQ, qm_db_value(2, QM_DB_CMD_SQ, 1, 0));
    assert_int_equal(iommu_map_host(qm_dev_iommu(e.dev, 1), 0x7f000000ull, sizeof(ro_ring),
                                    ro_ring, IOMMU_READ),
                     0);
    v.qp[3].cq = 0x7f000000ull;
    tvf_start_qp(&v, 3, ZIP_ALG_COMPRESS);
    tvf_submit(&v, 3, sqe);
    for (int i = 0; i < 200000 && !(tqueue(&e, 1, 2).sq_broken && tqueue(&e, 1, 3).cq_broken); i++)
        tsleep_us(100);
    /* One AEQE each: the CQ overflow, the SQ fault, the CQ fault. */
    assert_int_equal(tvf_aeq_drain(&v, aeqe, 8), 3);
    assert_int_equal(hpair(&e, w, QM_WIN_SQ_BROKEN_L), 0x4);
    assert_int_equal(hpair(&e, w, QM_WIN_CQ_BROKEN_L), 0x8);
    /* The guest's own BAR has no such registers (v4: the upper half). */
    assert_int_equal(trd32(&e, v.door, QM_V3_WIN(QM_WIN_SQ_BROKEN_L)), 0xffffffffu);
    tenv_fini(&e);
}

static void test_host_loads_of_the_bits_act_at_once_and_post_nothing(void **state)
{
    struct tenv e;
    struct tvf v;
    struct tdoor w = tdoor_window(1);
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct qm_fn_counters c0;
    unsigned msi;
    uint16_t slot;
    uint64_t ign;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    tvf_start_qp(&v, 1, ZIP_ALG_COMPRESS);
    sqe_for(&e, sqe, 2);
    c0 = tcounters(&e, 1);
    msi = tenv_irqs(&e, 1, QM_VEC_AEQ) + tenv_irqs(&e, 1, QM_VEC_EQ);
    /* Every bit of every queue set: no AEQE, no EQE, no MSI. */
    for (unsigned k = 0; k < 6; k++)
        hpair_wr(&e, w, QM_WIN_SQ_STOPPED_L + 8 * k, ~0ull);
    assert_int_equal(tcounters(&e, 1).aeqes_posted, c0.aeqes_posted);
    assert_int_equal(tcounters(&e, 1).eqes_posted, c0.eqes_posted);
    assert_int_equal(tenv_irqs(&e, 1, QM_VEC_AEQ) + tenv_irqs(&e, 1, QM_VEC_EQ), msi);
    /* Bits beyond the VF's queues read 0; STOPPING did not load on the
     * stopped SQs (never both). */
    assert_int_equal(hpair(&e, w, QM_WIN_SQ_STOPPED_L), (1ull << v.qp_num) - 1);
    assert_int_equal(hpair(&e, w, QM_WIN_SQ_STOPPING_L), 0);
    assert_int_equal(hpair(&e, w, QM_WIN_CQ_STALLED_L), 0); /* read-only */
    /* A stopped SQ ignores doorbells; clearing the bit lets it run. */
    for (unsigned k = 0; k < 6; k++)
        hpair_wr(&e, w, QM_WIN_SQ_STOPPED_L + 8 * k, 0);
    hpair_wr(&e, w, QM_WIN_SQ_STOPPED_L, 0x1);
    ign = tcounters(&e, 1).doorbells_ignored;
    tvf_submit(&v, 0, sqe);
    assert_int_equal(tcounters(&e, 1).doorbells_ignored, ign + 1);
    hpair_wr(&e, w, QM_WIN_SQ_STOPPED_L, 0);
    twr64(&e, v.door, QM_DB_SQCQ, qm_db_value(0, QM_DB_CMD_SQ, 1, 0));
    assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
    /* A broken CQ takes no completion until the bit is cleared. */
    hpair_wr(&e, w, QM_WIN_CQ_BROKEN_L, 0x2);
    tvf_submit(&v, 1, sqe);
    assert_int_equal(tqueue(&e, 1, 1).sq_head, 0); /* it cannot fetch: decided at the doorbell */
    hpair_wr(&e, w, QM_WIN_CQ_BROKEN_L, 0);
    assert_true(tvf_cqe_wait(&v, 1, &slot, T_TIMEOUT_MS));
    /* A disarmed CQ posts no EQE for its next CQE. */
    hpair_wr(&e, w, QM_WIN_CQ_DISARMED_L, 0x1);
    c0 = tcounters(&e, 1);
    tvf_submit(&v, 0, sqe);
    assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
    assert_int_equal(tcounters(&e, 1).eqes_posted, c0.eqes_posted);
    tenv_fini(&e);
}

/* STOPPING loaded with the guest's mailbox busy on STOP_QP of that queue:
 * the guest sees its command in progress; it completes when the drain
 * ends (here: the host sets STOPPED). Busy of any other command is dropped. */
static void test_a_loaded_stop_qp_in_progress_completes_when_the_drain_ends(void **state)
{
    struct tenv e;
    struct tvf v;
    struct tdoor w = tdoor_window(1);
    const uint32_t busy = 1u << QM_MB_BUSY_SHIFT;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 1, ZIP_ALG_COMPRESS);
    /* Busy with a query, or a STOP_QP of a queue not draining: dropped. */
    thost_wr32(&e, w, QM_WIN_FN_MB_STAGE0, QM_MB_CMD_STOP_QP | busy | 1u << 16);
    thost_wr32(&e, w, QM_WIN_FN_MB_W0, QM_MB_CMD_SQC_VFT_V2 | busy);
    assert_int_equal(thost_rd32(&e, w, QM_WIN_FN_MB_W0), QM_MB_CMD_SQC_VFT_V2);
    thost_wr32(&e, w, QM_WIN_FN_MB_W0, QM_MB_CMD_STOP_QP | busy);
    assert_int_equal(thost_rd32(&e, w, QM_WIN_FN_MB_W0), QM_MB_CMD_STOP_QP);
    assert_false(trd32(&e, v.door, QM_MAILBOX) & busy);
    /* Queue 1 draining: now the busy bit loads, and the guest sees it. */
    hpair_wr(&e, w, QM_WIN_SQ_STOPPING_L, 0x2);
    thost_wr32(&e, w, QM_WIN_FN_MB_W0, QM_MB_CMD_STOP_QP | busy);
    assert_int_equal(thost_rd32(&e, w, QM_WIN_FN_MB_W0), QM_MB_CMD_STOP_QP | busy);
    assert_int_equal(trd32(&e, v.door, QM_MAILBOX), QM_MB_CMD_STOP_QP | busy | 1u << 16);
    assert_true(tqueue(&e, 1, 1).stop_waiting);
    /* A guest write while busy is ignored, as for any command in progress. */
    assert_int_equal(tcounters(&e, 1).mb_ignored, 0);
    twr32(&e, v.door, QM_MAILBOX, QM_MB_CMD_SQC_VFT_V2 | busy);
    assert_int_equal(tcounters(&e, 1).mb_ignored, 1);
    /* The drain ends: the command completes with status 0. */
    hpair_wr(&e, w, QM_WIN_SQ_STOPPED_L, 0x2);
    assert_int_equal(trd32(&e, v.door, QM_MAILBOX) & (busy | QM_MB_STATUS_MASK << QM_MB_STATUS_SHIFT),
                     0);
    assert_int_equal(hpair(&e, w, QM_WIN_SQ_STOPPING_L), 0);
    assert_false(tqueue(&e, 1, 1).stop_waiting);
    /* A drain the device itself ends: the restored SQ has nothing left. */
    tvf_start_qp(&v, 1, ZIP_ALG_COMPRESS);
    hpair_wr(&e, w, QM_WIN_SQ_STOPPING_L, 0x2);
    thost_wr32(&e, w, QM_WIN_FN_MB_W0, QM_MB_CMD_STOP_QP | busy);
    assert_true(trd32(&e, v.door, QM_MAILBOX) & busy);
    twr64(&e, v.door, QM_DB_SQCQ, qm_db_value(1, QM_DB_CMD_SQ, 0, 1)); /* a kick */
    assert_false(trd32(&e, v.door, QM_MAILBOX) & busy);
    assert_true(tqueue(&e, 1, 1).stopped);
    tenv_fini(&e);
}

static void test_a_context_load_drops_the_bits_and_a_table_load_keeps_them(void **state)
{
    struct tenv e;
    struct tvf v;
    struct tdoor w = tdoor_window(1);
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint16_t slot;
    uint64_t ign;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    sqe_for(&e, sqe, 3);
    hpair_wr(&e, w, QM_WIN_SQ_STOPPED_L, 0x1);
    hpair_wr(&e, w, QM_WIN_CQ_OVERFLOW_L, 0x1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS); /* the guest's restart */
    assert_int_equal(hpair(&e, w, QM_WIN_SQ_STOPPED_L), 0);
    assert_int_equal(hpair(&e, w, QM_WIN_CQ_OVERFLOW_L), 0);
    /* Write back, drop the cache with the table bases: bits go too. */
    hpair_wr(&e, w, QM_WIN_SQ_BROKEN_L, 0x1);
    twr32(&e, v.door, QM_CACHE_WB_START, 1);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_SQC_BT, 0, v.sqc_bt, false, NULL), 0);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_CQC_BT, 0, v.cqc_bt, false, NULL), 0);
    assert_int_equal(hpair(&e, w, QM_WIN_SQ_BROKEN_L), 0);
    /* Set on a queue still waiting for its table load (a restore): held
     * before the load and kept by it. */
    assert_true(tqueue(&e, 1, 0).sq_reload_pending);
    hpair_wr(&e, w, QM_WIN_SQ_STOPPED_L, 0x1);
    hpair_wr(&e, w, QM_WIN_CQ_DISARMED_L, 0x1);
    assert_int_equal(hpair(&e, w, QM_WIN_SQ_STOPPED_L), 0x1);
    ign = tcounters(&e, 1).doorbells_ignored;
    tvf_submit(&v, 0, sqe); /* loads queue 0 from its table, then refuses */
    assert_true(tqueue(&e, 1, 0).sq_loaded);
    assert_true(tqueue(&e, 1, 0).stopped);
    assert_false(tqueue(&e, 1, 0).cq_armed);
    assert_int_equal(tcounters(&e, 1).doorbells_ignored, ign + 1);
    assert_int_equal(tcounters(&e, 1).table_loads, 2);
    /* The guest restarts it; the job runs. */
    v.qp[0].sq_tail = 0;
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    tvf_submit(&v, 0, sqe);
    assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
    tenv_fini(&e);
}

static void test_xeq_state_shows_and_loads_broken_event_queues_and_the_halt(void **state)
{
    static uint8_t ro_eq[QM_EQ_DEPTH * 4] __attribute__((aligned(4096)));
    struct tenv e;
    struct tvf v;
    struct tdoor w = tdoor_window(1);
    uint32_t sqe[ZIP_SQE_DWORDS], shadow[7], aeqe[4];
    uint16_t slot, cqn[8];
    uint64_t ign;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    sqe_for(&e, sqe, 4);
    /* An EQ of 4 that the guest does not drain: the 4th EQE overflows. */
    tvf_load_eq(&v, 4);
    for (unsigned i = 0; i < 4; i++) {
        tvf_submit(&v, 0, sqe);
        assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
        tvf_cq_rearm(&v, 0);
    }
    assert_int_equal(thost_rd32(&e, w, QM_WIN_XEQ_STATE), QM_XEQ_ST_EQ_OVERFLOW);
    assert_int_equal(tvf_eq_drain(&v, cqn, 8), 3);
    assert_int_equal(thost_rd32(&e, w, QM_WIN_XEQ_STATE), 0);
    assert_int_equal(tvf_aeq_drain(&v, aeqe, 4), 1);
    /* An EQ whose ring cannot be written breaks; its shadow reads as loaded. */
    assert_int_equal(iommu_map_host(qm_dev_iommu(e.dev, 1), 0x7f000000ull, sizeof(ro_eq), ro_eq,
                                    IOMMU_READ),
                     0);
    {
        struct qm_eqc eqc = {.base_l = 0x7f000000u, .dw6 = QM_EQC_DW6(QM_EQ_DEPTH, 1)};
        uint64_t ctx = tmem_alloc(&e, 1, 32, 32);

        memcpy(tmem_ptr(&e, 1, ctx), &eqc, sizeof(eqc));
        assert_int_equal(tmb(&e, v.door, QM_MB_CMD_EQC, 0, ctx, false, NULL), 0);
    }
    for (unsigned i = 0; i < 7; i++)
        shadow[i] = thost_rd32(&e, w, QM_WIN_EQC_SHADOW + 4 * i);
    tvf_submit(&v, 0, sqe);
    assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
    assert_int_equal(thost_rd32(&e, w, QM_WIN_XEQ_STATE), QM_XEQ_ST_EQ_BROKEN);
    for (unsigned i = 0; i < 7; i++)
        assert_int_equal(thost_rd32(&e, w, QM_WIN_EQC_SHADOW + 4 * i), shadow[i]);
    ign = tcounters(&e, 1).doorbells_ignored;
    twr64(&e, v.door, QM_DB_EQAEQ, qm_db_value(0, QM_DB_CMD_EQ, 0, 0));
    assert_int_equal(tcounters(&e, 1).doorbells_ignored, ign + 1);
    /* A shadow load mends it (the restore's order: shadow, then state). */
    for (unsigned i = 0; i < 7; i++)
        thost_wr32(&e, w, QM_WIN_EQC_SHADOW + 4 * i, shadow[i]);
    assert_int_equal(thost_rd32(&e, w, QM_WIN_XEQ_STATE), 0);
    /* Loading the state: the AEQ broken and the function halted. */
    thost_wr32(&e, w, QM_WIN_XEQ_STATE, QM_XEQ_ST_AEQ_BROKEN | QM_XEQ_ST_HALTED | 0xf0u);
    assert_int_equal(thost_rd32(&e, w, QM_WIN_XEQ_STATE), QM_XEQ_ST_AEQ_BROKEN | QM_XEQ_ST_HALTED);
    {
        struct qm_fn_debug d;

        assert_int_equal(qm_debug_fn(e.dev, 1, &d), 0);
        assert_true(d.halted && d.aeq_broken && !d.aeq_valid);
    }
    tvf_submit(&v, 0, sqe);
    assert_int_equal(tqueue(&e, 1, 0).sq_head, tqueue(&e, 1, 0).sq_tail - 1);
    /* Clearing HALTED lets it fetch again. */
    thost_wr32(&e, w, QM_WIN_XEQ_STATE, 0);
    assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
    tenv_fini(&e);
}

static void test_the_context_cache_window_reads_live_contexts_and_loads_images(void **state)
{
    struct tenv e;
    struct tvf v;
    struct tdoor w = tdoor_window(1);
    uint32_t sqe[ZIP_SQE_DWORDS], dw[8];
    struct qm_sqc sqc;
    struct qm_cqc cqc;
    uint64_t cfg_errors;
    uint16_t slot;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_DECOMPRESS);
    sqe_for(&e, sqe, 5);
    /* Queue 0's live SQC: loaded, the guest's fields, the live tail. */
    twr64(&e, v.door, QM_DB_SQCQ, qm_db_value(0, QM_DB_CMD_SQ, 3, 0)); /* 3 garbage SQEs */
    assert_true(tvf_wait_idle(&v, 0, T_TIMEOUT_MS));
    thost_wr32(&e, w, QM_WIN_QC_SEL, 0);
    assert_int_equal(thost_rd32(&e, w, QM_WIN_QC_SEL), QM_WIN_QC_SEL_LOADED);
    for (unsigned i = 0; i < 8; i++)
        dw[i] = thost_rd32(&e, w, QM_WIN_QC_DW(i));
    memcpy(&sqc, dw, sizeof(sqc));
    assert_int_equal(sqc.head, 3);
    assert_int_equal(sqc.tail, 3);
    assert_int_equal(sqc.base_l, (uint32_t)v.qp[0].sq);
    assert_int_equal(sqc.w13, QM_SQC_W13(ZIP_ALG_DECOMPRESS));
    /* Queue 2 has no context: an image loads on dw7, as a mailbox SQC would. */
    thost_wr32(&e, w, QM_WIN_QC_SEL, 2);
    assert_int_equal(thost_rd32(&e, w, QM_WIN_QC_SEL), 2);
    sqc = (struct qm_sqc){.base_l = (uint32_t)v.qp[2].sq, .base_h = (uint32_t)(v.qp[2].sq >> 32),
                          .dw3 = QM_SQC_DW3(QM_SQ_DEPTH), .cq_num = 2,
                          .w13 = QM_SQC_W13(ZIP_ALG_COMPRESS)};
    memcpy(dw, &sqc, sizeof(dw));
    for (unsigned i = 0; i < 7; i++)
        thost_wr32(&e, w, QM_WIN_QC_DW(i), dw[i]);
    assert_false(tqueue(&e, 1, 2).sq_loaded);
    assert_int_equal(thost_rd32(&e, w, QM_WIN_QC_DW(1)), dw[1]); /* staged */
    thost_wr32(&e, w, QM_WIN_QC_DW(7), dw[7]);
    assert_true(tqueue(&e, 1, 2).sq_loaded);
    assert_int_equal(thost_rd32(&e, w, QM_WIN_QC_SEL), 2 | QM_WIN_QC_SEL_LOADED);
    cqc = (struct qm_cqc){.base_l = (uint32_t)v.qp[2].cq, .base_h = (uint32_t)(v.qp[2].cq >> 32),
                          .dw3 = QM_CQC_DW3(QM_CQ_DEPTH), .dw6 = QM_CQC_DW6_PHASE | QM_CQC_DW6_EQ_EN};
    memcpy(dw, &cqc, sizeof(dw));
    thost_wr32(&e, w, QM_WIN_QC_SEL, 2 | QM_WIN_QC_SEL_CQ);
    for (unsigned i = 0; i < 8; i++)
        thost_wr32(&e, w, QM_WIN_QC_DW(i), dw[i]);
    assert_true(tqueue(&e, 1, 2).cq_loaded);
    memset(tmem_ptr(&e, 1, v.qp[2].cq), 0, QM_CQ_DEPTH * 16);
    v.qp[2].cq_phase = true;
    v.qp[2].cq_depth = QM_CQ_DEPTH;
    tvf_submit(&v, 2, sqe);
    assert_true(tvf_cqe_wait(&v, 2, &slot, T_TIMEOUT_MS));
    /* Unusable images (entry size, depth 1) and a queue out of range load
     * nothing and are counted; the queue keeps what it had. */
    cfg_errors = tcounters(&e, 1).cfg_errors;
    thost_wr32(&e, w, QM_WIN_QC_SEL, 3);
    sqc.dw3 = QM_CQC_DW3(QM_SQ_DEPTH);
    memcpy(dw, &sqc, sizeof(dw));
    for (unsigned i = 0; i < 8; i++)
        thost_wr32(&e, w, QM_WIN_QC_DW(i), dw[i]);
    assert_false(tqueue(&e, 1, 3).sq_loaded);
    thost_wr32(&e, w, QM_WIN_QC_SEL, 0);
    sqc.dw3 = QM_SQC_DW3(1);
    memcpy(dw, &sqc, sizeof(dw));
    for (unsigned i = 0; i < 8; i++)
        thost_wr32(&e, w, QM_WIN_QC_DW(i), dw[i]);
    assert_int_equal(tqueue(&e, 1, 0).sq_head, 3); /* queue 0 as it was */
    thost_wr32(&e, w, QM_WIN_QC_SEL, 63);
    thost_wr32(&e, w, QM_WIN_QC_DW(7), 0);
    assert_int_equal(tcounters(&e, 1).cfg_errors, cfg_errors + 3);
    /* SEL clears the staging dwords; bit 31 and unknown bits are not stored. */
    thost_wr32(&e, w, QM_WIN_QC_SEL, 3 | 0x7fff0000u);
    assert_int_equal(thost_rd32(&e, w, QM_WIN_QC_SEL), 3);
    assert_int_equal(thost_rd32(&e, w, QM_WIN_QC_DW(1)), 0);
    tenv_fini(&e);
}

static void test_cache_writeback_names_the_contexts_it_could_not_write(void **state)
{
    struct tenv e;
    struct tvf v;
    struct tdoor w = tdoor_window(1);
    uint64_t top;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    tvf_start_qp(&v, 1, ZIP_ALG_COMPRESS);
    twr32(&e, v.door, QM_CACHE_WB_START, 1);
    assert_int_equal(hpair(&e, w, QM_WIN_SQC_WB_FAIL_L), 0);
    assert_int_equal(hpair(&e, w, QM_WIN_CQC_WB_FAIL_L), 0);
    /* After FLR no table base is set: contexts loaded by mailbox only. */
    assert_int_equal(qm_function_reset(e.dev, 1), 0);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_SQC_VFT_V2, 0, 0, true, NULL), 0);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    tvf_start_qp(&v, 3, ZIP_ALG_COMPRESS);
    twr32(&e, v.door, QM_CACHE_WB_START, 1);
    assert_int_equal(hpair(&e, w, QM_WIN_SQC_WB_FAIL_L), 0x9);
    assert_int_equal(hpair(&e, w, QM_WIN_CQC_WB_FAIL_L), 0x9);
    /* A CQC table whose slot 3 lies past the end of the guest's memory. */
    top = e.mem[1].iova + e.mem[1].size;
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_CQC_BT, 0, top - 3 * 32, false, NULL), 0);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    tvf_start_qp(&v, 3, ZIP_ALG_COMPRESS);
    twr32(&e, v.door, QM_CACHE_WB_START, 1);
    assert_int_equal(hpair(&e, w, QM_WIN_CQC_WB_FAIL_L), 0x8);
    assert_int_equal(hpair(&e, w, QM_WIN_SQC_WB_FAIL_L), 0x9);
    /* Read-only. */
    thost_wr32(&e, w, QM_WIN_SQC_WB_FAIL_L, 0);
    assert_int_equal(hpair(&e, w, QM_WIN_SQC_WB_FAIL_L), 0x9);
    tenv_fini(&e);
}

static void test_the_functions_mailbox_and_doorbell_staging_read_and_load(void **state)
{
    struct tenv e;
    struct tvf v;
    struct tdoor w = tdoor_window(1);
    uint8_t m[16] = {0};
    uint64_t vft = 0;
    uint16_t slot;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint64_t db;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 1, ZIP_ALG_COMPRESS);
    /* A result: W0 and DATA as the guest reads them back. */
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_SQC_VFT_V2, 0, 0, true, &vft), 0);
    assert_int_equal(thost_rd32(&e, w, QM_WIN_FN_MB_W0),
                     QM_MB_CMD_SQC_VFT_V2 | 1u << QM_MB_OP_SHIFT);
    assert_int_equal(hpair(&e, w, QM_WIN_FN_MB_DATA_L), vft);
    /* Half a store: the staged bytes. */
    am_st32(m, QM_MB_CMD_SQC_BT | 1u << QM_MB_BUSY_SHIFT | 1u << QM_MB_OP_SHIFT);
    am_st32(m + 4, 0x1234);
    assert_int_equal(qm_bar_write(e.dev, 1, QM_MAILBOX, m, 8), 0);
    assert_int_equal(thost_rd32(&e, w, QM_WIN_FN_MB_STAGE0), am_le32(m));
    assert_int_equal(thost_rd32(&e, w, QM_WIN_FN_MB_STAGE0 + 4), 0x1234);
    /* Loads: the guest reads what was loaded, and finishing the store runs
     * the staged command. */
    thost_wr32(&e, w, QM_WIN_FN_MB_W0, QM_MB_CMD_CQC | 3u << QM_MB_STATUS_SHIFT);
    hpair_wr(&e, w, QM_WIN_FN_MB_DATA_L, 0x1122334455667788ull);
    assert_int_equal(trd32(&e, v.door, QM_MAILBOX) & 0xffffu, QM_MB_CMD_CQC | 3u << QM_MB_STATUS_SHIFT);
    assert_int_equal(trd32(&e, v.door, QM_MB_DATA_H), 0x11223344u);
    assert_int_equal(qm_bar_write(e.dev, 1, QM_MAILBOX + 8, m + 8, 8), 0);
    assert_int_equal((uint64_t)trd32(&e, v.door, QM_MB_DATA_H) << 32 | trd32(&e, v.door, QM_MB_DATA_L),
                     v.sqc_bt);
    /* A doorbell: low dword on the guest's side, then a host load of the
     * stage, then the high dword: it rings with the loaded low half. */
    sqe_for(&e, sqe, 6);
    memcpy(tmem_ptr(&e, 1, v.qp[1].sq), sqe, sizeof(sqe));
    db = qm_db_value(1, QM_DB_CMD_SQ, 1, 0);
    assert_int_equal(qm_bar_write32(e.dev, 1, QM_DB_SQCQ, 0x5u), 0); /* qn 5: wrong */
    assert_int_equal(thost_rd32(&e, w, QM_WIN_FN_DB_SQCQ_L), 0x5u);
    thost_wr32(&e, w, QM_WIN_FN_DB_SQCQ_L, (uint32_t)db);
    assert_int_equal(qm_bar_write32(e.dev, 1, QM_DB_SQCQ + 4, (uint32_t)(db >> 32)), 0);
    assert_true(tvf_cqe_wait(&v, 1, &slot, T_TIMEOUT_MS));
    assert_int_equal(hpair(&e, w, QM_WIN_FN_DB_SQCQ_L), db);
    thost_wr32(&e, w, QM_WIN_FN_DB_EQAEQ_H, 0xabcd);
    assert_int_equal(thost_rd32(&e, w, QM_WIN_FN_DB_EQAEQ_H), 0xabcd);
    tenv_fini(&e);
}

static void test_v3_has_the_queue_state_registers_in_the_vf_upper_half(void **state)
{
    struct qm_dev_config c;
    struct tenv e;
    struct tvf v;
    struct tdoor h = tdoor_v3_host(1);

    (void)state;
    qm_dev_config_default(&c);
    c.revision = QM_REV_V3;
    tenv_init(&e, &c);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_STOP_QP, 0, 0, false, NULL), 0);
    assert_int_equal(hpair(&e, h, QM_WIN_SQ_STOPPED_L), 0x1);
    thost_wr32(&e, h, QM_WIN_XEQ_STATE, QM_XEQ_ST_EQ_OVERFLOW);
    assert_int_equal(thost_rd32(&e, h, QM_WIN_XEQ_STATE), QM_XEQ_ST_EQ_OVERFLOW);
    thost_wr32(&e, h, QM_WIN_QC_SEL, 0);
    assert_int_equal(thost_rd32(&e, h, QM_WIN_QC_SEL), QM_WIN_QC_SEL_LOADED);
    tenv_fini(&e);
}

static void test_function_reset_clears_every_queue_state_register(void **state)
{
    struct tenv e;
    struct tvf v;
    struct tdoor w = tdoor_window(1);

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 1, ZIP_ALG_COMPRESS);
    for (unsigned k = 0; k < 6; k++)
        hpair_wr(&e, w, QM_WIN_SQ_STOPPED_L + 8 * k, 0x2);
    thost_wr32(&e, w, QM_WIN_XEQ_STATE, QM_XEQ_ST_MASK);
    thost_wr32(&e, w, QM_WIN_QC_SEL, 5);
    thost_wr32(&e, w, QM_WIN_QC_DW(2), 77);
    thost_wr32(&e, w, QM_WIN_FN_MB_STAGE0 + 8, 99);
    hpair_wr(&e, w, QM_WIN_FN_MB_DATA_L, 7);
    hpair_wr(&e, w, QM_WIN_FN_DB_EQAEQ_L, 8);
    twr32(&e, v.door, QM_CACHE_WB_START, 1);
    assert_int_equal(qm_function_reset(e.dev, 1), 0);
    for (uint32_t off = QM_WIN_SQ_STOPPED_L; off <= QM_WIN_FN_DB_EQAEQ_H; off += 4) {
        uint32_t got = thost_rd32(&e, w, off);

        if (got != 0)
            fail_msg("window register %#x reads %#x after FLR", off, got);
    }
    tenv_fini(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_bitmaps_show_what_the_guests_actions_did_to_its_queues),
        cmocka_unit_test(test_host_loads_of_the_bits_act_at_once_and_post_nothing),
        cmocka_unit_test(test_a_loaded_stop_qp_in_progress_completes_when_the_drain_ends),
        cmocka_unit_test(test_a_context_load_drops_the_bits_and_a_table_load_keeps_them),
        cmocka_unit_test(test_xeq_state_shows_and_loads_broken_event_queues_and_the_halt),
        cmocka_unit_test(test_the_context_cache_window_reads_live_contexts_and_loads_images),
        cmocka_unit_test(test_cache_writeback_names_the_contexts_it_could_not_write),
        cmocka_unit_test(test_the_functions_mailbox_and_doorbell_staging_read_and_load),
        cmocka_unit_test(test_v3_has_the_queue_state_registers_in_the_vf_upper_half),
        cmocka_unit_test(test_function_reset_clears_every_queue_state_register),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
