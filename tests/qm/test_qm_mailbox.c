/* Mailbox: every command with its errors, split writes, garbage words, the
 * two mailboxes of a v4 VF, PF<->VF messages (IFC). */
#include "qm_tdrv.h"

#include <string.h>

static uint64_t t_ctx(struct tenv *e, unsigned fn, const void *c, size_t len)
{
    uint64_t iova = tmem_alloc(e, fn, 64, 32);

    memcpy(tmem_ptr(e, fn, iova), c, len);
    return iova;
}

static struct qm_sqc t_sqc(uint64_t base, uint16_t cq_num)
{
    struct qm_sqc c = {0};

    c.base_l = (uint32_t)base;
    c.base_h = (uint32_t)(base >> 32);
    c.dw3 = QM_SQC_DW3(QM_SQ_DEPTH);
    c.cq_num = cq_num;
    c.w13 = QM_SQC_W13(0);
    return c;
}

static struct qm_cqc t_cqc(uint64_t base)
{
    struct qm_cqc c = {0};

    c.base_l = (uint32_t)base;
    c.base_h = (uint32_t)(base >> 32);
    c.dw3 = QM_CQC_DW3(QM_CQ_DEPTH);
    c.dw6 = QM_CQC_DW6_PHASE | QM_CQC_DW6_EQ_EN;
    return c;
}

static void test_every_queue_context_command_loads_and_dumps(void **state)
{
    struct tenv e;
    struct tvf v;
    struct qm_sqc sqc, sqd;
    struct qm_cqc cqc, cqd;
    struct qm_eqc eqd;
    uint64_t dump, w;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    sqc = t_sqc(v.qp[1].sq, 1);
    cqc = t_cqc(v.qp[1].cq);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_SQC, 1, t_ctx(&e, 1, &sqc, 32), false, NULL), 0);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_CQC, 1, t_ctx(&e, 1, &cqc, 32), false, NULL), 0);
    dump = tmem_alloc(&e, 1, 64, 32);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_SQC, 1, dump, true, NULL), 0);
    memcpy(&sqd, tmem_ptr(&e, 1, dump), 32);
    assert_memory_equal(&sqd, &sqc, 32);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_CQC, 1, dump, true, NULL), 0);
    memcpy(&cqd, tmem_ptr(&e, 1, dump), 32);
    assert_memory_equal(&cqd, &cqc, 32);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_EQC, 0, dump, true, NULL), 0);
    memcpy(&eqd, tmem_ptr(&e, 1, dump), 28);
    assert_int_equal((uint64_t)eqd.base_l | (uint64_t)eqd.base_h << 32, v.eqe);
    assert_int_equal(eqd.dw6, QM_EQC_DW6(QM_EQ_DEPTH, 1));
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_AEQC, 0, dump, true, NULL), 0);
    memcpy(&eqd, tmem_ptr(&e, 1, dump), 28);
    assert_int_equal((uint64_t)eqd.base_l | (uint64_t)eqd.base_h << 32, v.aeqe);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_SQC_BT, 0, 0, true, &w), 0);
    assert_int_equal(w, v.sqc_bt);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_CQC_BT, 0, 0, true, &w), 0);
    assert_int_equal(w, v.cqc_bt);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_STOP_QP, 1, 0, false, NULL), 0);
    assert_true(tqueue(&e, 1, 1).stopped);
    assert_int_equal(tcounters(&e, 1).mb_errors, 0);
    tenv_fini(&e);
}

static void test_queue_commands_beyond_the_queue_count_fail_and_change_nothing(void **state)
{
    struct tenv e;
    struct tvf v;
    struct qm_sqc sqc;
    uint64_t ctx, errs;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    sqc = t_sqc(v.qp[0].sq, 0);
    ctx = t_ctx(&e, 1, &sqc, 32);
    errs = tcounters(&e, 1).mb_errors;
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_SQC, 4, ctx, false, NULL), QM_MB_ST_BAD_QUEUE);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_CQC, 4, ctx, false, NULL), QM_MB_ST_BAD_QUEUE);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_STOP_QP, 0xffff, 0, false, NULL),
                     QM_MB_ST_BAD_QUEUE);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_SQC, 64, ctx, true, NULL), QM_MB_ST_BAD_QUEUE);
    assert_int_equal(tcounters(&e, 1).mb_errors - errs, 4);
    for (unsigned i = 0; i < QM_MAX_QPS_PER_VF; i++)
        assert_false(tqueue(&e, 1, i).sq_loaded);
    tenv_fini(&e);
}

static void test_context_commands_with_base_zero_or_unmapped_fail(void **state)
{
    struct tenv e;
    struct tvf v;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_SQC, 0, 0, false, NULL), QM_MB_ST_BAD_ADDR);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_CQC, 0, 0, false, NULL), QM_MB_ST_BAD_ADDR);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_EQC, 0, 0, false, NULL), QM_MB_ST_BAD_ADDR);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_AEQC, 0, 0, true, NULL), QM_MB_ST_BAD_ADDR);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_SQC_BT, 0, 0, false, NULL), QM_MB_ST_BAD_ADDR);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_CQC_BT, 0, 0, false, NULL), QM_MB_ST_BAD_ADDR);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_CQC_BT, 0, UINT64_MAX - 64, false, NULL),
                     QM_MB_ST_BAD_ADDR);
    /* Addresses outside the domain: DMA faults, status, nothing loaded. */
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_SQC, 0, 0x1000, false, NULL), QM_MB_ST_BAD_ADDR);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_EQC, 0, T_IOVA(2) + 0x1000, false, NULL),
                     QM_MB_ST_BAD_ADDR);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_EQC, 0, T_IOVA(2) + 0x1000, true, NULL),
                     QM_MB_ST_BAD_ADDR);
    assert_true(tcounters(&e, 1).ring_faults >= 3);
    assert_false(tqueue(&e, 1, 0).sq_loaded);
    /* The EQ loaded by the probe is still there. */
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_EQC, 0, tmem_alloc(&e, 1, 32, 32), true, NULL), 0);
    /* Dumps of contexts never loaded. */
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_SQC, 2, tmem_alloc(&e, 1, 32, 32), true, NULL),
                     QM_MB_ST_NO_CTX);
    tenv_fini(&e);
}

static void test_unusable_contexts_are_refused(void **state)
{
    struct tenv e;
    struct tvf v;
    struct qm_sqc s;
    struct qm_cqc c;
    struct qm_eqc q = {0};

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
#define T_SQC_BAD(field, value)                                                              \
    do {                                                                                   \
        s = t_sqc(v.qp[0].sq, 0);                                                          \
        s.field = value;                                                                   \
        assert_int_equal(tmb(&e, v.door, QM_MB_CMD_SQC, 0, t_ctx(&e, 1, &s, 32), false, NULL), \
                         QM_MB_ST_BAD_CTX);                                                \
    } while (0)
    T_SQC_BAD(base_l, 0);
    T_SQC_BAD(dw3, QM_SQC_DW3(1));          /* depth 1 */
    T_SQC_BAD(dw3, QM_SQC_DW3(2048));       /* deeper than the device */
    T_SQC_BAD(dw3, (QM_SQ_DEPTH - 1) | 6u << 12); /* 64-byte SQEs */
    T_SQC_BAD(cq_num, 4);
    T_SQC_BAD(head, QM_SQ_DEPTH);
    T_SQC_BAD(tail, 0xffff);
    s = t_sqc(UINT64_MAX - 4096, 0);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_SQC, 0, t_ctx(&e, 1, &s, 32), false, NULL),
                     QM_MB_ST_BAD_CTX);
    c = t_cqc(v.qp[0].cq);
    c.dw3 = (QM_CQ_DEPTH - 1) | 5u << 12;
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_CQC, 0, t_ctx(&e, 1, &c, 32), false, NULL),
                     QM_MB_ST_BAD_CTX);
    q.base_l = (uint32_t)v.eqe;
    q.base_h = (uint32_t)(v.eqe >> 32);
    q.dw6 = QM_EQC_DW6(4096, 1);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_EQC, 0, t_ctx(&e, 1, &q, 28), false, NULL),
                     QM_MB_ST_BAD_CTX);
    q.dw6 = QM_EQC_DW6(2048, 1);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_AEQC, 0, t_ctx(&e, 1, &q, 28), false, NULL),
                     QM_MB_ST_BAD_CTX);
    assert_false(tqueue(&e, 1, 0).sq_loaded);
    assert_false(tqueue(&e, 1, 0).cq_loaded);
    tenv_fini(&e);
}

static void test_unknown_commands_fail_with_a_status(void **state)
{
    struct tenv e;
    uint8_t cmds[] = {0x7, 0x9, 0xa, 0xb, 0x10, 0x55, 0xff};

    (void)state;
    tenv_init(&e, NULL);
    for (size_t i = 0; i < sizeof(cmds); i++)
        assert_int_equal(tmb(&e, tdoor_vf(1), cmds[i], 0, 0x1000, false, NULL), QM_MB_ST_BAD_CMD);
    /* The status stays readable until the next command. */
    assert_int_equal((trd32(&e, tdoor_vf(1), QM_MAILBOX) >> 9) & 0xf, QM_MB_ST_BAD_CMD);
    assert_int_equal(tcounters(&e, 1).mb_errors, sizeof(cmds));
    tenv_fini(&e);
}

static void test_split_mailbox_writes_execute_only_with_the_last_byte(void **state)
{
    static const unsigned splits[] = {8, 4, 2, 1};
    struct tenv e;
    uint64_t w;

    (void)state;
    tenv_init(&e, NULL);
    for (size_t i = 0; i < AM_ARRAY_SIZE(splits); i++) {
        w = 0;
        assert_int_equal(tmb_split(&e, tdoor_vf(2), QM_MB_CMD_SQC_VFT_V2, 0, 0, true, splits[i], &w),
                         0);
        assert_int_equal((w >> 28) & 0xffff, 8);
    }
    /* Nothing runs before the byte at 0x30f: stage a command without it. */
    struct qm_mailbox m = {.w0 = QM_MB_CMD_SQC_BT | 1u << 14 | 1u << 13};
    uint64_t before = tcounters(&e, 2).mb_commands;

    assert_int_equal(qm_bar_write(e.dev, 2, QM_MAILBOX, &m, 8), 0);
    assert_int_equal(qm_bar_write32(e.dev, 2, QM_MAILBOX + 8, 0), 0);
    assert_int_equal(tcounters(&e, 2).mb_commands, before);
    /* The last dword (any value) fires it with the bytes as last written. */
    assert_int_equal(qm_bar_write32(e.dev, 2, QM_MAILBOX + 12, 0xabcdef), 0);
    assert_int_equal(tcounters(&e, 2).mb_commands, before + 1);
    assert_int_equal(trd32(&e, tdoor_vf(2), QM_MAILBOX) & 0xffffu, QM_MB_CMD_SQC_BT | 1u << 14);
    assert_int_equal(trd32(&e, tdoor_vf(2), QM_MB_DATA_L), 0);
    tenv_fini(&e);
}

static uint32_t t_rand(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

static void test_garbage_mailbox_words_never_hurt_the_device(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t seed = 7;
    uint8_t m[16];

    (void)state;
    tenv_init(&e, NULL);
    for (unsigned i = 0; i < 3000; i++) {
        for (unsigned k = 0; k < 16; k++)
            m[k] = (uint8_t)t_rand(&seed);
        if (i % 3 == 0) /* keep addresses inside the domain now and then */
            memcpy(m + 4, &(uint64_t){T_IOVA(1) + (t_rand(&seed) % (T_MEM_SIZE - 64))}, 8);
        unsigned fn = 1 + i % 2;

        assert_int_equal(qm_bar_write(e.dev, fn, QM_MAILBOX, m, 16), 0);
        assert_int_equal((trd32(&e, tdoor_vf(fn), QM_MAILBOX) >> 13) & 1u, 0);
    }
    /* Another VF is untouched; the battered ones work after a reset. */
    tvf_probe(&e, &v, 3);
    for (unsigned fn = 1; fn <= 2; fn++) {
        assert_int_equal(qm_function_reset(e.dev, fn), 0);
        tvf_probe(&e, &v, fn);
        tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    }
    tenv_fini(&e);
}

static void test_pause_and_resume_come_only_from_the_migration_side(void **state)
{
    struct qm_dev_config cfg;
    struct tenv e;

    (void)state;
    tenv_init(&e, NULL);
    /* v4: the guest's mailbox may not pause its own function. */
    assert_int_equal(tmb(&e, tdoor_vf(1), QM_MB_CMD_PAUSE_QM, 0, 0, false, NULL), QM_MB_ST_DENIED);
    assert_int_equal(tmb(&e, tdoor_vf(1), QM_MB_CMD_RESUME_QM, 0, 0, false, NULL),
                     QM_MB_ST_DENIED);
    assert_int_equal(tmb(&e, tdoor_vf(0), QM_MB_CMD_PAUSE_QM, 0, 0, false, NULL), QM_MB_ST_DENIED);
    assert_int_equal(thost_rd32(&e, tdoor_window(1), QM_WIN_PAUSE_STATUS), 0);
    assert_int_equal(tmb(&e, tdoor_window(1), QM_MB_CMD_PAUSE_QM, 0, 0, false, NULL), 0);
    assert_int_equal(thost_rd32(&e, tdoor_window(1), QM_WIN_PAUSE_STATUS), 3);
    assert_int_equal(thost_rd32(&e, tdoor_window(2), QM_WIN_PAUSE_STATUS), 0);
    assert_int_equal(tmb(&e, tdoor_window(1), QM_MB_CMD_PAUSE_QM, 0, 0, false, NULL), 0);
    assert_int_equal(tmb(&e, tdoor_window(1), QM_MB_CMD_RESUME_QM, 0, 0, false, NULL), 0);
    assert_int_equal(thost_rd32(&e, tdoor_window(1), QM_WIN_PAUSE_STATUS), 0);
    assert_int_equal(tmb(&e, tdoor_window(1), QM_MB_CMD_RESUME_QM, 0, 0, false, NULL), 0);
    /* The window's mailbox carries no IFC traffic. */
    assert_int_equal(tmb(&e, tdoor_window(1), QM_MB_CMD_SRC, 0, 5, false, NULL), QM_MB_ST_DENIED);
    assert_int_equal(tmb(&e, tdoor_window(1), QM_MB_CMD_DST, 0, 0, false, NULL), QM_MB_ST_DENIED);
    tenv_fini(&e);

    /* v3: the one shared mailbox is the migration side (the v3 weakness). */
    qm_dev_config_default(&cfg);
    cfg.revision = QM_REV_V3;
    tenv_init(&e, &cfg);
    assert_int_equal(tmb(&e, tdoor_vf(1), QM_MB_CMD_PAUSE_QM, 0, 0, false, NULL), 0);
    assert_int_equal(thost_rd32(&e, tdoor_v3_host(1), QM_WIN_PAUSE_STATUS), 3);
    assert_int_equal(tmb(&e, tdoor_vf(1), QM_MB_CMD_RESUME_QM, 0, 0, false, NULL), 0);
    assert_int_equal(thost_rd32(&e, tdoor_v3_host(1), QM_WIN_PAUSE_STATUS), 0);
    tenv_fini(&e);
}

static void test_the_window_mailbox_is_separate_from_the_guest_mailbox(void **state)
{
    struct tenv e;
    struct tvf v;
    uint64_t w;
    struct qm_mailbox half = {.w0 = QM_MB_CMD_SQC_VFT_V2 | 1u << 14 | 1u << 13};

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    uint32_t data_before = trd32(&e, v.door, QM_MB_DATA_L);

    /* The guest leaves a half-written command in its mailbox... */
    assert_int_equal(qm_bar_write(e.dev, 1, QM_MAILBOX, &half, 8), 0);
    /* ...the host's commands run regardless and see the same function. */
    assert_int_equal(tmb(&e, tdoor_window(1), QM_MB_CMD_SQC_BT, 0, 0, true, &w), 0);
    assert_int_equal(w, v.sqc_bt);
    assert_int_equal(tmb(&e, tdoor_window(1), QM_MB_CMD_PAUSE_QM, 0, 0, false, NULL), 0);
    /* The guest's MB_DATA did not see the host's answer. */
    assert_int_equal(trd32(&e, v.door, QM_MB_DATA_L), data_before);
    /* The guest finishes its own command. */
    assert_int_equal(qm_bar_write(e.dev, 1, QM_MAILBOX + 8, (uint8_t *)&half + 8, 8), 0);
    assert_int_equal(trd32(&e, v.door, QM_MB_DATA_L) | (uint64_t)trd32(&e, v.door, QM_MB_DATA_H) << 32,
                     (uint64_t)4 << 28 | 1ull << 44 | 3ull << 45);
    tenv_fini(&e);
}

static void test_a_slow_mailbox_stays_busy_for_a_while_and_then_completes(void **state)
{
    struct tenv e;
    unsigned busy = 0;
    uint32_t w0;
    struct qm_mailbox m = {.w0 = QM_MB_CMD_SQC_VFT_V2 | 1u << 14 | 1u << 13};

    (void)state;
    tenv_init(&e, NULL);
    assert_int_equal(qm_debug_set_mailbox_delay(e.dev, 1, 50), 0);
    assert_int_equal(qm_bar_write(e.dev, 1, QM_MAILBOX, &m, 16), 0);
    do {
        w0 = trd32(&e, tdoor_vf(1), QM_MAILBOX);
        busy += (w0 >> 13) & 1u;
    } while ((w0 >> 13) & 1u);
    assert_int_equal(busy, 50);
    assert_int_equal((w0 >> 9) & 0xf, 0);
    /* The driver's own poller copes. */
    assert_int_equal(tmb(&e, tdoor_vf(1), QM_MB_CMD_SQC_VFT_V2, 0, 0, true, NULL), 0);
    assert_int_equal(qm_debug_set_mailbox_delay(e.dev, e.nfn, 1), -EINVAL);
    tenv_fini(&e);
}

/* PF -> VF, as qm_ping_single_vf and the VF's qm_handle_cmd_msg do it. */
static void test_a_pf_message_reaches_the_vf_with_vector_2_and_is_acked(void **state)
{
    struct tenv e;
    struct tvf v;
    struct tdoor pf = tdoor_vf(0);
    uint64_t msg = 0, ready;
    unsigned irqs;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 2);
    irqs = tenv_irqs(&e, 2, QM_VEC_IFC);
    assert_int_equal(tmb(&e, pf, QM_MB_CMD_SRC, 2, QM_IFC_PF_FLR_PREPARE, false, NULL), 0);
    twr32(&e, pf, QM_PF_IFC_INT_CFG, (trd32(&e, pf, QM_PF_IFC_INT_CFG) & ~0x7fu) | 2);
    twr32(&e, pf, QM_PF_IFC_INT_SET_P, trd32(&e, pf, QM_PF_IFC_INT_SET_P) | 1);
    assert_true(tenv_irq_wait(&e, 2, QM_VEC_IFC, irqs, T_TIMEOUT_MS));
    assert_int_equal(tenv_irqs(&e, 1, QM_VEC_IFC), 0);
    assert_int_equal(qm_bar_read(e.dev, 0, QM_PF_IFC_READY_STATUS, &ready, 8), 0);
    assert_int_equal(ready, 1u << 2);
    /* VF: qm_mb_cmd_irq, then DST from function 0, then ack. */
    assert_int_equal(trd32(&e, v.door, QM_IFC_INT_STATUS) & 1u, 1);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_DST, 0, 0, false, &msg), 0);
    assert_int_equal(msg, QM_IFC_PF_FLR_PREPARE);
    twr32(&e, v.door, QM_IFC_INT_SOURCE_V, trd32(&e, v.door, QM_IFC_INT_SOURCE_V) | 1);
    assert_int_equal(trd32(&e, v.door, QM_IFC_INT_STATUS), 0);
    assert_int_equal(qm_bar_read(e.dev, 0, QM_PF_IFC_READY_STATUS, &ready, 8), 0);
    assert_int_equal(ready, 0);
    /* Broadcast to every VF. */
    assert_int_equal(tmb(&e, pf, QM_MB_CMD_SRC, 0xffff, QM_IFC_PF_RESET_DONE, false, NULL), 0);
    twr32(&e, pf, QM_PF_IFC_INT_CFG, QM_PF_IFC_SEND_ALL_VFS);
    twr32(&e, pf, QM_PF_IFC_INT_SET_P, 1);
    assert_int_equal(qm_bar_read(e.dev, 0, QM_PF_IFC_READY_STATUS, &ready, 8), 0);
    assert_int_equal(ready, 0x1e);
    for (unsigned f = 1; f < e.nfn; f++) {
        assert_int_equal(tmb(&e, tdoor_vf(f), QM_MB_CMD_DST, 0, 0, false, &msg), 0);
        assert_int_equal(msg, QM_IFC_PF_RESET_DONE);
        assert_int_equal(trd32(&e, tdoor_vf(f), QM_IFC_INT_SOURCE_V), 1);
    }
    /* Masked VFs (1, 3, 4 never unmasked) got no interrupt; VF 2 did. */
    assert_int_equal(tenv_irqs(&e, 1, QM_VEC_IFC), 0);
    assert_int_equal(tenv_irqs(&e, 2, QM_VEC_IFC), irqs + 2);
    /* Unmasking with the message pending raises it. */
    twr32(&e, tdoor_vf(3), QM_IFC_INT_MASK, 0);
    assert_true(tenv_irq_wait(&e, 3, QM_VEC_IFC, 0, T_TIMEOUT_MS));
    tenv_fini(&e);
}

/* The migration side loads IFC_INT_SOURCE_V (window + 0x20, or its
 * QM_WIN_IFC_SOURCE_V alias): no ack to the PF, no interrupt. The guest's
 * own write of 1 still acks. */
static void test_a_window_write_loads_the_ifc_source_and_a_guest_write_acks_it(void **state)
{
    struct tenv e;
    struct tvf v;
    struct tdoor pf = tdoor_vf(0), win = tdoor_window(2);
    uint64_t ready;
    unsigned irqs;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 2);
    irqs = tenv_irqs(&e, 2, QM_VEC_IFC);
    assert_int_equal(trd32(&e, v.door, QM_IFC_INT_SOURCE_V), 0);
    twr32(&e, win, QM_IFC_INT_SOURCE_V, 1);
    assert_int_equal(trd32(&e, v.door, QM_IFC_INT_SOURCE_V), 1);
    assert_int_equal(thost_rd32(&e, win, QM_WIN_IFC_SOURCE_V), 1);
    assert_int_equal(trd32(&e, v.door, QM_IFC_INT_STATUS), 1);
    /* Writing the loaded value again keeps it (a W1C would clear it). */
    twr32(&e, win, QM_IFC_INT_SOURCE_V, 1);
    assert_int_equal(trd32(&e, v.door, QM_IFC_INT_SOURCE_V), 1);
    assert_int_equal(tenv_irqs(&e, 2, QM_VEC_IFC), irqs);
    /* A window write of 0 loads 0; the alias loads too; bits above 0 are
     * not stored. */
    twr32(&e, win, QM_IFC_INT_SOURCE_V, 0);
    assert_int_equal(trd32(&e, v.door, QM_IFC_INT_SOURCE_V), 0);
    thost_wr32(&e, win, QM_WIN_IFC_SOURCE_V, 0xffffffffu);
    assert_int_equal(trd32(&e, v.door, QM_IFC_INT_SOURCE_V), 1);
    /* The guest acks with its write of 1. */
    twr32(&e, v.door, QM_IFC_INT_SOURCE_V, 1);
    assert_int_equal(trd32(&e, v.door, QM_IFC_INT_SOURCE_V), 0);
    assert_int_equal(thost_rd32(&e, win, QM_WIN_IFC_SOURCE_V), 0);
    /* With a real PF message pending, a window load of 0 is not the VF's
     * ack (READY_STATUS keeps the bit); the guest's ack is. */
    assert_int_equal(tmb(&e, pf, QM_MB_CMD_SRC, 2, QM_IFC_PF_SET_QOS, false, NULL), 0);
    twr32(&e, pf, QM_PF_IFC_INT_CFG, 2);
    twr32(&e, pf, QM_PF_IFC_INT_SET_P, 1);
    assert_true(tenv_irq_wait(&e, 2, QM_VEC_IFC, irqs, T_TIMEOUT_MS));
    twr32(&e, win, QM_IFC_INT_SOURCE_V, 0);
    assert_int_equal(qm_bar_read(e.dev, 0, QM_PF_IFC_READY_STATUS, &ready, 8), 0);
    assert_int_equal(ready, 1u << 2);
    twr32(&e, win, QM_IFC_INT_SOURCE_V, 1);
    twr32(&e, v.door, QM_IFC_INT_SOURCE_V, 1);
    assert_int_equal(trd32(&e, v.door, QM_IFC_INT_SOURCE_V), 0);
    assert_int_equal(qm_bar_read(e.dev, 0, QM_PF_IFC_READY_STATUS, &ready, 8), 0);
    assert_int_equal(ready, 0);
    tenv_fini(&e);
}

/* v3: the host loads through QM_V3_WIN(QM_WIN_IFC_SOURCE_V); 0x8020 stays
 * the AEQC shadow and 0x20 stays the guest's write-1-to-ack. */
static void test_v3_upper_half_loads_the_ifc_source_and_the_guest_write_acks_it(void **state)
{
    struct qm_dev_config cfg;
    struct tenv e;
    struct tvf v;
    struct tdoor host = tdoor_v3_host(1);
    uint32_t aeqc_dw6;

    (void)state;
    qm_dev_config_default(&cfg);
    cfg.revision = QM_REV_V3;
    tenv_init(&e, &cfg);
    tvf_probe(&e, &v, 1);
    aeqc_dw6 = trd32(&e, v.door, QM_AEQC_SHADOW_V3 + 24);
    assert_int_not_equal(aeqc_dw6, 0);
    thost_wr32(&e, host, QM_WIN_IFC_SOURCE_V, 1);
    assert_int_equal(trd32(&e, v.door, QM_IFC_INT_SOURCE_V), 1);
    assert_int_equal(trd32(&e, v.door, QM_V3_WIN(QM_WIN_IFC_SOURCE_V)), 1);
    assert_int_equal(trd32(&e, v.door, QM_AEQC_SHADOW_V3 + 24), aeqc_dw6);
    thost_wr32(&e, host, QM_WIN_IFC_SOURCE_V, 1);
    assert_int_equal(trd32(&e, v.door, QM_IFC_INT_SOURCE_V), 1);
    twr32(&e, v.door, QM_IFC_INT_SOURCE_V, 1);
    assert_int_equal(trd32(&e, v.door, QM_IFC_INT_SOURCE_V), 0);
    assert_int_equal(thost_rd32(&e, host, QM_WIN_IFC_SOURCE_V), 0);
    tenv_fini(&e);
}

/* VF -> PF, as qm_ping_pf and the PF's qm_cmd_process do it. */
static void test_a_vf_message_reaches_the_pf_and_the_pf_ack_clears_it(void **state)
{
    struct tenv e;
    struct tvf v;
    struct tdoor pf = tdoor_vf(0);
    uint64_t src, msg = 0;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 3);
    twr32(&e, pf, QM_IFC_INT_MASK, 0); /* the PF driver's qm_cmd_init */
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_SRC, 0, QM_IFC_VF_GET_QOS | 7ull << 32, false, NULL),
                     0);
    twr32(&e, v.door, QM_IFC_INT_SET_V, trd32(&e, v.door, QM_IFC_INT_SET_V) | 1);
    assert_true(tenv_irq_wait(&e, 0, QM_VEC_IFC, 0, T_TIMEOUT_MS));
    assert_int_equal(trd32(&e, pf, QM_IFC_INT_STATUS) & 1u, 1);
    assert_int_equal(qm_bar_read(e.dev, 0, QM_PF_IFC_INT_SOURCE_P, &src, 8), 0);
    assert_int_equal(src, 1u << 3);
    assert_int_equal(tmb(&e, pf, QM_MB_CMD_DST, 3, 0, false, &msg), 0);
    assert_int_equal(msg, QM_IFC_VF_GET_QOS | 7ull << 32);
    /* The VF polls IFC_INT_SET_V until the PF acks. */
    assert_int_equal(trd32(&e, v.door, QM_IFC_INT_SET_V), 1);
    assert_int_equal(qm_bar_write64(e.dev, 0, QM_PF_IFC_INT_SOURCE_P, src), 0);
    assert_int_equal(trd32(&e, v.door, QM_IFC_INT_SET_V), 0);
    assert_int_equal(qm_bar_read(e.dev, 0, QM_PF_IFC_INT_SOURCE_P, &src, 8), 0);
    assert_int_equal(src, 0);
    /* The window shows (and restores) the VF's outgoing message. */
    assert_int_equal(thost_rd32(&e, tdoor_window(3), QM_WIN_IFC_OUT_MSG_L), QM_IFC_VF_GET_QOS);
    assert_int_equal(thost_rd32(&e, tdoor_window(3), QM_WIN_IFC_OUT_MSG_H), 7);
    thost_wr32(&e, tdoor_window(3), QM_WIN_IFC_MSG_H, 0x55);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_DST, 0, 0, false, &msg), 0);
    assert_int_equal(msg, 0x55ull << 32);
    tenv_fini(&e);
}

static void test_messages_to_functions_that_do_not_exist_fail(void **state)
{
    struct tenv e;
    uint64_t cfg_errs;

    (void)state;
    tenv_init(&e, NULL);
    assert_int_equal(tmb(&e, tdoor_vf(1), QM_MB_CMD_SRC, 2, 1, false, NULL), QM_MB_ST_BAD_FN);
    assert_int_equal(tmb(&e, tdoor_vf(1), QM_MB_CMD_DST, 3, 0, false, NULL), QM_MB_ST_BAD_FN);
    assert_int_equal(tmb(&e, tdoor_vf(0), QM_MB_CMD_SRC, 5, 1, false, NULL), QM_MB_ST_BAD_FN);
    assert_int_equal(tmb(&e, tdoor_vf(0), QM_MB_CMD_SRC, 0, 1, false, NULL), QM_MB_ST_BAD_FN);
    assert_int_equal(tmb(&e, tdoor_vf(0), QM_MB_CMD_DST, 0, 0, false, NULL), QM_MB_ST_BAD_FN);
    assert_int_equal(tmb(&e, tdoor_vf(0), QM_MB_CMD_DST, 99, 0, false, NULL), QM_MB_ST_BAD_FN);
    cfg_errs = tcounters(&e, 0).cfg_errors;
    twr32(&e, tdoor_vf(0), QM_PF_IFC_INT_CFG, 9);
    twr32(&e, tdoor_vf(0), QM_PF_IFC_INT_SET_P, 1);
    assert_int_equal(tcounters(&e, 0).cfg_errors, cfg_errs + 1);
    for (unsigned f = 1; f < e.nfn; f++)
        assert_int_equal(trd32(&e, tdoor_vf(f), QM_IFC_INT_SOURCE_V), 0);
    tenv_fini(&e);
}

/* The whole Linux VF bring-up and teardown, step by step. */
static void test_the_linux_vf_probe_and_uninit_sequence_brings_the_function_up_and_down(void **state)
{
    struct tenv e;
    struct tvf v;
    struct qm_fn_debug d;
    uint64_t w;

    (void)state;
    tenv_init(&e, NULL);
    assert_int_equal(qm_debug_fn(e.dev, 1, &d), 0);
    assert_false(d.eq_valid);
    tvf_probe(&e, &v, 1);
    assert_int_equal(qm_debug_fn(e.dev, 1, &d), 0);
    assert_true(d.eq_valid && d.aeq_valid);
    assert_int_equal(d.eq_depth, QM_EQ_DEPTH);
    assert_int_equal(d.aeq_depth, QM_AEQ_DEPTH);
    assert_true(d.eq_phase && d.aeq_phase);
    assert_int_equal(d.sqc_bt, v.sqc_bt);
    assert_int_equal(d.cqc_bt, v.cqc_bt);
    assert_int_equal(d.qp_base, 4);
    assert_int_equal(d.qp_num, 4);
    assert_int_equal(trd32(&e, v.door, QM_VF_STATE), QM_VF_STATE_READY);
    assert_int_equal(trd32(&e, v.door, QM_EQ_INT_MASK), 0);
    assert_int_equal(trd32(&e, v.door, QM_AEQ_INT_MASK), 0);
    assert_int_equal(trd32(&e, v.door, QM_IFC_INT_MASK), 0);
    assert_int_equal(trd32(&e, v.door, QM_EQ_INT_SOURCE), 0);
    assert_int_equal(tcounters(&e, 1).mb_errors, 0);
    assert_int_equal(tcounters(&e, 1).doorbells_ignored, 0);
    assert_int_equal(tcounters(&e, 1).unknown_writes, 0);
    /* What the host migration driver checks before saving. */
    assert_int_equal(trd32(&e, tdoor_window(1), QM_IFC_INT_STATUS), 0);
    assert_int_equal(trd32(&e, tdoor_window(1), QM_IFC_INT_SET_V), 0);
    /* Per transform: two queues; teardown: STOP_QP each. */
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    tvf_start_qp(&v, 1, ZIP_ALG_DECOMPRESS);
    assert_int_equal(thost_rd32(&e, tdoor_window(1), QM_WIN_QP_ACTIVE_L), 3);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_STOP_QP, 0, 0, false, NULL), 0);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_STOP_QP, 1, 0, false, NULL), 0);
    /* hisi_qm_uninit: cache write-back, VF_STATE = NOT_READY, IFC masked. */
    twr32(&e, v.door, QM_IFC_INT_MASK, trd32(&e, v.door, QM_IFC_INT_MASK) | 1);
    twr32(&e, v.door, QM_CACHE_WB_START, 1);
    assert_int_equal(trd32(&e, v.door, QM_CACHE_WB_DONE) & 1u, 1);
    twr32(&e, v.door, QM_VF_STATE, QM_VF_STATE_NOT_READY);
    assert_int_equal(trd32(&e, tdoor_window(1), QM_VF_STATE), QM_VF_STATE_NOT_READY);
    /* A second probe (module reload) works on the same function. */
    tvf_probe(&e, &v, 1);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_SQC_BT, 0, 0, true, &w), 0);
    assert_int_equal(w, v.sqc_bt);
    tenv_fini(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_linux_vf_probe_and_uninit_sequence_brings_the_function_up_and_down),
        cmocka_unit_test(test_every_queue_context_command_loads_and_dumps),
        cmocka_unit_test(test_queue_commands_beyond_the_queue_count_fail_and_change_nothing),
        cmocka_unit_test(test_context_commands_with_base_zero_or_unmapped_fail),
        cmocka_unit_test(test_unusable_contexts_are_refused),
        cmocka_unit_test(test_unknown_commands_fail_with_a_status),
        cmocka_unit_test(test_split_mailbox_writes_execute_only_with_the_last_byte),
        cmocka_unit_test(test_garbage_mailbox_words_never_hurt_the_device),
        cmocka_unit_test(test_pause_and_resume_come_only_from_the_migration_side),
        cmocka_unit_test(test_the_window_mailbox_is_separate_from_the_guest_mailbox),
        cmocka_unit_test(test_a_slow_mailbox_stays_busy_for_a_while_and_then_completes),
        cmocka_unit_test(test_a_pf_message_reaches_the_vf_with_vector_2_and_is_acked),
        cmocka_unit_test(test_a_window_write_loads_the_ifc_source_and_a_guest_write_acks_it),
        cmocka_unit_test(test_v3_upper_half_loads_the_ifc_source_and_the_guest_write_acks_it),
        cmocka_unit_test(test_a_vf_message_reaches_the_pf_and_the_pf_ack_clears_it),
        cmocka_unit_test(test_messages_to_functions_that_do_not_exist_fail),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
