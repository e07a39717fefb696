/* Register files: identity and capability values, reset values, access
 * rules, the v3/v4 halves, the VFT as the PF programs it and VFs read it. */
#include "qm_tdrv.h"

#include <string.h>

static const struct {
    uint32_t off, val;
} t_caps[] = {
    {QM_CAP_VERSION, 0x4b01},          {QM_CAP_EQ_AEQ_DEPTH, 0x04000800},
    {QM_CAP_SQ_CQ_DEPTH, 0x04000400},  {QM_CAP_EQ_IRQ_TYPE, 0x10000},
    {QM_CAP_AEQ_IRQ_TYPE, 0x10001},    {QM_CAP_ABN_IRQ_TYPE, 0x10003},
    {QM_CAP_PF2VF_IRQ_TYPE, 0x10002},  {QM_CAP_IRQ_NUM, 0x00040003},
    {ZIP_CAP_CORE_NUM, 0x12050203},    {ZIP_CAP_CORE_BITMAP, 0x001c0003},
    {ZIP_CAP_DRV_ALG_BITMAP, 0x3f},    {ZIP_CAP_DEV_ALG_BITMAP, 0x3f},
    {ZIP_CAP_QM_NFE_MASK, 0x7c77},     {ZIP_CAP_QM_RESET_MASK, 0x6c77},
    {ZIP_CAP_QM_CE_MASK, 0x8},         {ZIP_CAP_NFE_MASK, 0x1ffe},
    {ZIP_CAP_RESET_MASK, 0x7fe},       {ZIP_CAP_CE_MASK, 0x1},
    {ZIP_CAP_CORE1_ALG_BITMAP, 0xd5},  {ZIP_CAP_CORE3_ALG_BITMAP, 0x2a},
};

static void test_capability_registers_read_the_v3_values_on_every_function(void **state)
{
    struct tenv e;

    (void)state;
    tenv_init(&e, NULL);
    for (unsigned f = 0; f < e.nfn; f++)
        for (size_t i = 0; i < AM_ARRAY_SIZE(t_caps); i++)
            assert_int_equal(trd32(&e, tdoor_vf(f), t_caps[i].off), t_caps[i].val);
    /* What the Linux VF driver derives from them. */
    uint32_t cap = trd32(&e, tdoor_vf(1), QM_CAP_VERSION);

    assert_int_equal(cap & 0xffu, 1);               /* CAP_VER */
    assert_true(cap & (1u << 9));                   /* STOP_QP */
    assert_true(cap & (1u << 11));                  /* MB_COMMAND */
    assert_false(cap & (1u << 12));                 /* no VF runtime PM */
    assert_int_equal(trd32(&e, tdoor_vf(1), QM_CAP_IRQ_NUM) & 0xffffu, 3);
    assert_int_equal(trd32(&e, tdoor_vf(1), ZIP_CAP_DRV_ALG_BITMAP) & 0x30u, 0x30u);
    tenv_fini(&e);
}

static void test_function_local_registers_start_at_their_reset_values(void **state)
{
    struct tenv e;
    struct tdoor d = tdoor_vf(2);

    (void)state;
    tenv_init(&e, NULL);
    assert_int_equal(trd32(&e, d, QM_AEQ_INT_MASK), 1);
    assert_int_equal(trd32(&e, d, QM_EQ_INT_MASK), 1);
    assert_int_equal(trd32(&e, d, QM_IFC_INT_MASK), 1);
    assert_int_equal(trd32(&e, d, QM_AEQ_INT_SOURCE), 0);
    assert_int_equal(trd32(&e, d, QM_EQ_INT_SOURCE), 0);
    assert_int_equal(trd32(&e, d, QM_IFC_INT_SOURCE_V), 0);
    assert_int_equal(trd32(&e, d, QM_QUE_ISO_CFG), QM_QUE_ISO_EN); /* default: isolation */
    assert_int_equal(trd32(&e, d, QM_PAGE_SIZE), 0);
    assert_int_equal(trd32(&e, d, QM_VF_STATE), QM_VF_STATE_NOT_READY);
    assert_int_equal(trd32(&e, d, QM_MAILBOX), 0);
    tenv_fini(&e);
}

static void test_unlisted_offsets_read_zero_and_ignored_writes_are_counted(void **state)
{
    struct tenv e;
    struct tdoor d = tdoor_vf(1);
    struct qm_fn_counters c0, c1;

    (void)state;
    tenv_init(&e, NULL);
    c0 = tcounters(&e, 1);
    assert_int_equal(trd32(&e, d, 0x0040), 0);
    assert_int_equal(trd32(&e, d, 0x4000), 0);
    twr32(&e, d, 0x0040, 0xdeadbeef);
    twr32(&e, d, 0x7ffc, 0xdeadbeef);
    assert_int_equal(trd32(&e, d, 0x0040), 0);
    c1 = tcounters(&e, 1);
    assert_int_equal(c1.unknown_writes - c0.unknown_writes, 2);
    assert_int_equal(c1.unknown_reads - c0.unknown_reads, 3);
    tenv_fini(&e);
}

static void test_bad_sizes_alignments_and_offsets_are_refused_and_counted(void **state)
{
    struct tenv e;
    uint8_t buf[32];
    uint64_t before;

    (void)state;
    tenv_init(&e, NULL);
    before = tcounters(&e, 1).access_errors;
    memset(buf, 0, sizeof(buf));
    assert_int_equal(qm_bar_read(e.dev, 1, QM_PAGE_SIZE, buf, 3), -EINVAL);
    assert_int_equal(buf[0], 0xff); /* a refused read gives all-ones */
    assert_int_equal(qm_bar_write(e.dev, 1, QM_PAGE_SIZE, buf, 0), -EINVAL);
    assert_int_equal(qm_bar_write(e.dev, 1, QM_PAGE_SIZE + 2, buf, 4), -EINVAL);
    assert_int_equal(qm_bar_write(e.dev, 1, QM_DB_SQCQ + 4, buf, 8), -EINVAL);
    assert_int_equal(qm_bar_write(e.dev, 1, QM_PAGE_SIZE, buf, 16), -EINVAL);
    assert_int_equal(qm_bar_write(e.dev, 1, QM_MAILBOX + 8, buf, 16), -EINVAL);
    assert_int_equal(qm_bar_write(e.dev, 1, QM_VF_BAR2_SIZE, buf, 4), -EINVAL);
    assert_int_equal(qm_bar_write(e.dev, 1, UINT64_MAX - 3, buf, 4), -EINVAL);
    assert_int_equal(qm_bar_write(e.dev, 1, QM_PAGE_SIZE, buf, 32), -EINVAL);
    assert_int_equal(tcounters(&e, 1).access_errors - before, 9);
    /* Bad function numbers and NULL buffers never reach a function. */
    assert_int_equal(qm_bar_read(e.dev, e.nfn, 0, buf, 4), -EINVAL);
    assert_int_equal(qm_bar_read(e.dev, 1, 0, NULL, 4), -EINVAL);
    /* Nothing changed. */
    assert_int_equal(trd32(&e, tdoor_vf(1), QM_PAGE_SIZE), 0);
    tenv_fini(&e);
}

static void test_read_only_registers_ignore_writes_and_count_them(void **state)
{
    struct tenv e;
    struct tdoor d = tdoor_vf(1);
    uint64_t before;

    (void)state;
    tenv_init(&e, NULL);
    before = tcounters(&e, 1).ro_writes;
    twr32(&e, d, QM_CAP_VERSION, 0);
    twr32(&e, d, QM_EQ_INT_SOURCE, 1);
    twr32(&e, d, QM_CACHE_WB_DONE, 1);
    assert_int_equal(trd32(&e, d, QM_CAP_VERSION), 0x4b01);
    assert_int_equal(trd32(&e, d, QM_EQ_INT_SOURCE), 0);
    assert_int_equal(trd32(&e, d, QM_CACHE_WB_DONE), 0);
    assert_int_equal(tcounters(&e, 1).ro_writes - before, 3);
    /* Writable bits only: PAGE_SIZE keeps [1:0], VF_STATE bit0. */
    twr32(&e, d, QM_PAGE_SIZE, 0xffffffff);
    assert_int_equal(trd32(&e, d, QM_PAGE_SIZE), 3);
    twr32(&e, d, QM_VF_STATE, 0xfffffffe);
    assert_int_equal(trd32(&e, d, QM_VF_STATE), 0);
    /* QUE_ISO_CFG is what the device is, not what a driver wants. */
    twr32(&e, d, QM_QUE_ISO_CFG, 0);
    assert_int_equal(trd32(&e, d, QM_QUE_ISO_CFG), QM_QUE_ISO_EN);
    tenv_fini(&e);
}

static void test_byte_halfword_and_qword_accesses_reach_the_containing_registers(void **state)
{
    struct tenv e;
    struct tdoor d = tdoor_vf(1);
    uint8_t b = 2;
    uint16_t h = 0;
    uint64_t q = 0;

    (void)state;
    tenv_init(&e, NULL);
    assert_int_equal(qm_bar_write(e.dev, 1, QM_PAGE_SIZE, &b, 1), 0);
    assert_int_equal(trd32(&e, d, QM_PAGE_SIZE), 2);
    /* A byte write to byte 1 leaves bit0 alone. */
    b = 0xff;
    assert_int_equal(qm_bar_write(e.dev, 1, QM_VF_STATE + 1, &b, 1), 0);
    assert_int_equal(trd32(&e, d, QM_VF_STATE), 1);
    assert_int_equal(qm_bar_read(e.dev, 1, QM_CAP_EQ_AEQ_DEPTH + 2, &h, 2), 0);
    assert_int_equal(h, 0x0400);
    assert_int_equal(qm_bar_read(e.dev, 1, QM_CAP_SQ_CQ_DEPTH, &q, 8), 0);
    assert_int_equal(q, 0x0001000004000400ull);
    /* A qword write spans two registers. */
    q = 0x0000000000000000ull;
    assert_int_equal(qm_bar_write(e.dev, 1, QM_EQ_INT_SOURCE, &q, 8), 0);
    assert_int_equal(trd32(&e, d, QM_EQ_INT_MASK), 0);
    tenv_fini(&e);
}

static void test_v4_vf_upper_half_reads_all_ones_and_ignores_writes(void **state)
{
    struct tenv e;
    struct tdoor d = tdoor_vf(1);

    (void)state;
    tenv_init(&e, NULL);
    assert_int_equal(trd32(&e, d, QM_EQC_SHADOW_V3), 0xffffffffu);
    assert_int_equal(trd32(&e, d, QM_V3_WIN(QM_WIN_PAUSE_STATUS)), 0xffffffffu);
    twr32(&e, d, QM_EQC_SHADOW_V3 + 24, 0x7ff);
    assert_int_equal(trd32(&e, tdoor_window(1), QM_WIN_EQC_SHADOW + 24), 0);
    /* The window is there instead; the PF has v4 windows on. */
    assert_int_equal(trd32(&e, tdoor_vf(0), QM_PF_MIG_REGION_SEL), 1);
    assert_int_equal(trd32(&e, tdoor_window(1), QM_VF_STATE), QM_VF_STATE_NOT_READY);
    tenv_fini(&e);
}

static void test_window_local_registers_are_the_vfs_own(void **state)
{
    struct tenv e;

    (void)state;
    tenv_init(&e, NULL);
    twr32(&e, tdoor_vf(2), QM_PAGE_SIZE, 1);
    assert_int_equal(trd32(&e, tdoor_window(2), QM_PAGE_SIZE), 1);
    twr32(&e, tdoor_window(2), QM_EQ_INT_MASK, 0);
    assert_int_equal(trd32(&e, tdoor_vf(2), QM_EQ_INT_MASK), 0);
    assert_int_equal(trd32(&e, tdoor_vf(1), QM_EQ_INT_MASK), 1);
    /* The window of function 0 (the PF itself) is not a window. */
    assert_int_equal(trd32(&e, tdoor_vf(0), QM_PF_MIG_WINDOW_BASE + QM_PAGE_SIZE), 0);
    /* Nor is anything past the last VF. */
    assert_int_equal(trd32(&e, tdoor_vf(0), QM_PF_MIG_WINDOW(e.nfn) + QM_VF_STATE), 0);
    tenv_fini(&e);
}

static void test_v3_mode_has_host_registers_in_the_vf_upper_half_and_no_window(void **state)
{
    struct qm_dev_config cfg;
    struct tenv e;

    (void)state;
    qm_dev_config_default(&cfg);
    cfg.revision = QM_REV_V3;
    tenv_init(&e, &cfg);
    /* v3 silicon has no windows: MIG_REGION_SEL stays 0. */
    twr32(&e, tdoor_vf(0), QM_PF_MIG_REGION_SEL, 1);
    assert_int_equal(trd32(&e, tdoor_vf(0), QM_PF_MIG_REGION_SEL), 0);
    assert_int_equal(trd32(&e, tdoor_vf(0), QM_PF_MIG_WINDOW(1) + QM_VF_STATE), 0);
    /* Upper half: EQC shadow at 0x8000 and its mirror at the window offset. */
    twr32(&e, tdoor_vf(1), QM_EQC_SHADOW_V3 + 4, 0x12345000);
    assert_int_equal(trd32(&e, tdoor_vf(1), QM_EQC_SHADOW_V3 + 4), 0x12345000);
    assert_int_equal(trd32(&e, tdoor_vf(1), QM_V3_WIN(QM_WIN_EQC_SHADOW) + 4), 0x12345000);
    assert_int_equal(trd32(&e, tdoor_vf(1), QM_V3_WIN(QM_WIN_PAUSE_STATUS)), 0);
    assert_int_equal(trd32(&e, tdoor_vf(1), QM_VF_STATE), QM_VF_STATE_NOT_READY);
    tenv_fini(&e);
}

/* hisi_acc_vfio_pci's pf_qm_get_qp_num: read a VF's VFT through the PF. */
static uint64_t t_pf_vft_read(struct tenv *e, unsigned fn)
{
    struct tdoor pf = tdoor_vf(0);

    assert_int_equal(trd32(e, pf, QM_PF_VFT_CFG_RDY) & 1u, 1);
    twr32(e, pf, QM_PF_VFT_CFG_OP_WR, 1);
    twr32(e, pf, QM_PF_VFT_CFG_TYPE, QM_PF_VFT_TYPE_SQC);
    twr32(e, pf, QM_PF_VFT_CFG, fn);
    twr32(e, pf, QM_PF_VFT_CFG_RDY, 0);
    twr32(e, pf, QM_PF_VFT_CFG_OP_ENABLE, 1);
    assert_int_equal(trd32(e, pf, QM_PF_VFT_CFG_RDY) & 1u, 1);
    return trd32(e, pf, QM_PF_VFT_CFG_DATA_L) | (uint64_t)trd32(e, pf, QM_PF_VFT_CFG_DATA_H) << 32;
}

static void t_pf_vft_write(struct tenv *e, unsigned fn, uint64_t data)
{
    struct tdoor pf = tdoor_vf(0);

    twr32(e, pf, QM_PF_VFT_CFG_OP_WR, 0);
    twr32(e, pf, QM_PF_VFT_CFG_TYPE, QM_PF_VFT_TYPE_SQC);
    twr32(e, pf, QM_PF_VFT_CFG, fn);
    twr32(e, pf, QM_PF_VFT_CFG_DATA_L, (uint32_t)data);
    twr32(e, pf, QM_PF_VFT_CFG_DATA_H, (uint32_t)(data >> 32));
    twr32(e, pf, QM_PF_VFT_CFG_RDY, 0);
    twr32(e, pf, QM_PF_VFT_CFG_OP_ENABLE, 1);
}

static uint64_t t_vft(unsigned base, unsigned num)
{
    return (uint64_t)base << 28 | 1ull << 44 | (uint64_t)(num - 1) << 45;
}

static void test_each_vf_reads_the_range_the_pf_programmed_in_the_driver_layout(void **state)
{
    struct qm_dev_config cfg;
    struct tenv e;
    uint64_t w;

    (void)state;
    qm_dev_config_default(&cfg);
    cfg.num_vfs = 3;
    cfg.qps_per_vf = 8;
    tenv_init(&e, &cfg);
    for (unsigned f = 1; f < e.nfn; f++) {
        assert_int_equal(tmb(&e, tdoor_vf(f), QM_MB_CMD_SQC_VFT_V2, 0, 0, true, &w), 0);
        /* qm_get_vft_v2's decoding */
        assert_int_equal((w >> 28) & 0xffff, f * 8);
        assert_int_equal(((w >> 45) & 0x3ff) + 1, 8);
        assert_true(w & (1ull << 44));
        assert_int_equal(w, t_vft(f * 8, 8));
        assert_int_equal(t_pf_vft_read(&e, f), w);
        /* The window's mailbox answers for the VF too. */
        assert_int_equal(tmb(&e, tdoor_window(f), QM_MB_CMD_SQC_VFT_V2, 0, 0, true, &w), 0);
        assert_int_equal(w, t_vft(f * 8, 8));
    }
    tenv_fini(&e);
}

static void test_reprogrammed_vft_changes_the_range_and_bad_ranges_are_refused(void **state)
{
    struct tenv e;
    uint64_t w;
    uint64_t errs;

    (void)state;
    tenv_init(&e, NULL); /* 5 functions x 4 = 20 queues */
    t_pf_vft_write(&e, 2, t_vft(12, 2));
    assert_int_equal(tmb(&e, tdoor_vf(2), QM_MB_CMD_SQC_VFT_V2, 0, 0, true, &w), 0);
    assert_int_equal(w, t_vft(12, 2));
    /* queue 2 is gone: its SQC is refused */
    assert_int_equal(tmb(&e, tdoor_vf(2), QM_MB_CMD_SQC, 2, T_IOVA(2) + 0x1000, false, NULL),
                     QM_MB_ST_BAD_QUEUE);
    errs = tcounters(&e, 0).cfg_errors;
    t_pf_vft_write(&e, 2, t_vft(19, 2));   /* past the pool */
    t_pf_vft_write(&e, 2, t_vft(0, 65));   /* more than a function may hold */
    t_pf_vft_write(&e, 9, t_vft(0, 2));    /* no such function */
    assert_int_equal(tcounters(&e, 0).cfg_errors - errs, 3);
    assert_int_equal(tmb(&e, tdoor_vf(2), QM_MB_CMD_SQC_VFT_V2, 0, 0, true, &w), 0);
    assert_int_equal(w, t_vft(12, 2));
    /* The PF's own mailbox may set a range in the same layout. */
    assert_int_equal(tmb(&e, tdoor_vf(0), QM_MB_CMD_SQC_VFT_V2, 3, t_vft(8, 3), false, NULL), 0);
    assert_int_equal(tmb(&e, tdoor_vf(3), QM_MB_CMD_SQC_VFT_V2, 0, 0, true, &w), 0);
    assert_int_equal(w, t_vft(8, 3));
    assert_int_equal(tmb(&e, tdoor_vf(0), QM_MB_CMD_SQC_VFT_V2, 7, t_vft(8, 3), false, NULL),
                     QM_MB_ST_BAD_FN);
    /* A VF may not. */
    assert_int_equal(tmb(&e, tdoor_vf(1), QM_MB_CMD_SQC_VFT_V2, 1, t_vft(0, 2), false, NULL),
                     QM_MB_ST_BAD_CMD);
    tenv_fini(&e);
}

static void test_function_reset_returns_registers_to_reset_values(void **state)
{
    struct tenv e;
    struct tvf v;
    uint64_t w;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    assert_int_equal(trd32(&e, v.door, QM_VF_STATE), QM_VF_STATE_READY);
    assert_int_equal(qm_function_reset(e.dev, 1), 0);
    assert_int_equal(trd32(&e, v.door, QM_VF_STATE), QM_VF_STATE_NOT_READY);
    assert_int_equal(trd32(&e, v.door, QM_EQ_INT_MASK), 1);
    assert_int_equal(trd32(&e, v.door, QM_IFC_INT_MASK), 1);
    assert_false(tqueue(&e, 1, 0).sq_loaded);
    /* table bases are gone, the VFT (device configuration) stays */
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_SQC_BT, 0, 0, true, &w), 0);
    assert_int_equal(w, 0);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_SQC_VFT_V2, 0, 0, true, &w), 0);
    assert_int_equal(w, t_vft(4, 4));
    assert_int_equal(qm_function_reset(e.dev, e.nfn), -EINVAL);
    /* The function works again after a new probe. */
    tvf_probe(&e, &v, 1);
    tenv_fini(&e);
}

static void test_bad_configurations_are_refused(void **state)
{
    struct qm_dev_config cfg;
    struct qm_dev *dev = NULL;

    (void)state;
    qm_dev_config_default(&cfg);
    assert_int_equal(cfg.num_vfs, 4);
    assert_int_equal(cfg.qps_per_vf, 4);
    assert_int_equal(cfg.revision, QM_REV_V4);
    cfg.num_vfs = 0;
    assert_int_equal(qm_dev_create(&cfg, &dev), -EINVAL);
    cfg.num_vfs = QM_MAX_VFS + 1;
    assert_int_equal(qm_dev_create(&cfg, &dev), -EINVAL);
    qm_dev_config_default(&cfg);
    cfg.qps_per_vf = 1;
    assert_int_equal(qm_dev_create(&cfg, &dev), -EINVAL);
    cfg.qps_per_vf = QM_MAX_QPS_PER_VF + 1;
    assert_int_equal(qm_dev_create(&cfg, &dev), -EINVAL);
    qm_dev_config_default(&cfg);
    cfg.revision = 0x21;
    assert_int_equal(qm_dev_create(&cfg, &dev), -EINVAL);
    qm_dev_config_default(&cfg);
    cfg.workers = 0;
    assert_int_equal(qm_dev_create(&cfg, &dev), -EINVAL);
    assert_null(dev);
    /* The largest device comes up and every VF reads its range. */
    qm_dev_config_default(&cfg);
    cfg.num_vfs = QM_MAX_VFS;
    cfg.qps_per_vf = QM_MAX_QPS_PER_VF;
    assert_int_equal(qm_dev_create(&cfg, &dev), 0);
    assert_int_equal(qm_dev_num_functions(dev), 64);
    assert_int_equal(qm_bar_size(dev, 0), QM_PF_BAR2_SIZE);
    assert_int_equal(qm_bar_size(dev, 63), QM_VF_BAR2_SIZE);
    assert_non_null(qm_dev_iommu(dev, 63));
    assert_null(qm_dev_iommu(dev, 64));
    qm_dev_destroy(dev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capability_registers_read_the_v3_values_on_every_function),
        cmocka_unit_test(test_function_local_registers_start_at_their_reset_values),
        cmocka_unit_test(test_unlisted_offsets_read_zero_and_ignored_writes_are_counted),
        cmocka_unit_test(test_bad_sizes_alignments_and_offsets_are_refused_and_counted),
        cmocka_unit_test(test_read_only_registers_ignore_writes_and_count_them),
        cmocka_unit_test(test_byte_halfword_and_qword_accesses_reach_the_containing_registers),
        cmocka_unit_test(test_v4_vf_upper_half_reads_all_ones_and_ignores_writes),
        cmocka_unit_test(test_window_local_registers_are_the_vfs_own),
        cmocka_unit_test(test_v3_mode_has_host_registers_in_the_vf_upper_half_and_no_window),
        cmocka_unit_test(test_each_vf_reads_the_range_the_pf_programmed_in_the_driver_layout),
        cmocka_unit_test(test_reprogrammed_vft_changes_the_range_and_bad_ranges_are_refused),
        cmocka_unit_test(test_function_reset_returns_registers_to_reset_values),
        cmocka_unit_test(test_bad_configurations_are_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
