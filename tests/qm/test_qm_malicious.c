/* A malicious guest: DMA outside its domain, into read-only memory, into
 * another VF's memory, at BAR addresses; bad SQEs; random register storms.
 * Each gets a defined status or counter, and other VFs keep working. */
#include "qm_tdrv.h"

#include <stdlib.h>
#include <string.h>

/* Runs one job on queue qn and returns its SQE as completed. */
static void t_run(struct tvf *v, unsigned qn, uint32_t sqe[ZIP_SQE_DWORDS])
{
    uint16_t slot, want = tvf_submit(v, qn, sqe);

    assert_true(tvf_cqe_wait(v, qn, &slot, T_TIMEOUT_MS));
    assert_int_equal(slot, want);
    tvf_sqe(v, qn, slot, sqe);
}

static unsigned t_status(const uint32_t sqe[ZIP_SQE_DWORDS])
{
    return sqe[ZIP_SQE_DW3] & ZIP_DW3_STATUS_MASK;
}

/* A good job still completes on the same queue afterwards. */
static void t_queue_still_works(struct tvf *v, unsigned qn)
{
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint64_t src = tmem_alloc(v->env, v->fn, 4096, 64), dst = tmem_alloc(v->env, v->fn, 8192, 64);

    tfill(tmem_ptr(v->env, v->fn, src), 4096, 1);
    tsqe_flat(sqe, ZIP_REQ_DEFLATE, src, 4096, dst, 8192, 0);
    t_run(v, qn, sqe);
    assert_int_equal(t_status(sqe), ZIP_ST_OK);
}

static void test_a_job_reading_outside_its_domain_ends_with_a_dma_fault_status(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint64_t dst;
    struct iommu_stats st;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    dst = tmem_alloc(&e, 1, 8192, 64);
    tsqe_flat(sqe, ZIP_REQ_DEFLATE, 0x10000, 4096, dst, 8192, 0);
    t_run(&v, 0, sqe);
    assert_int_equal(t_status(sqe), ZIP_ST_DMA_FAULT);
    /* A source that runs off the end of the mapping. */
    tsqe_flat(sqe, ZIP_REQ_DEFLATE, T_IOVA(1) + T_MEM_SIZE - 100, 4096, dst, 8192, 0);
    t_run(&v, 0, sqe);
    assert_int_equal(t_status(sqe), ZIP_ST_DMA_FAULT);
    assert_int_equal(tcounters(&e, 1).jobs_dma_fault, 2);
    assert_int_equal(tcounters(&e, 1).aeqes_posted, 0); /* one bad job is not queue-fatal */
    iommu_stats_get(qm_dev_iommu(e.dev, 1), &st);
    assert_true(st.read_faults >= 2);
    t_queue_still_works(&v, 0);
    tenv_fini(&e);
}

static void test_a_job_writing_into_read_only_memory_touches_nothing(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint64_t src;
    static uint8_t ro[16384] __attribute__((aligned(4096)));
    const uint64_t ro_iova = 0x7f000000ull;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    memset(ro, 0x5a, sizeof(ro));
    assert_int_equal(iommu_map_host(qm_dev_iommu(e.dev, 1), ro_iova, sizeof(ro), ro, IOMMU_READ), 0);
    src = tmem_alloc(&e, 1, 4096, 64);
    tfill(tmem_ptr(&e, 1, src), 4096, 1);
    tsqe_flat(sqe, ZIP_REQ_DEFLATE, src, 4096, ro_iova, sizeof(ro), 0);
    t_run(&v, 0, sqe);
    assert_int_equal(t_status(sqe), ZIP_ST_DMA_FAULT);
    for (size_t i = 0; i < sizeof(ro); i++)
        assert_int_equal(ro[i], 0x5a);
    /* Reading from it is fine. */
    tsqe_flat(sqe, ZIP_REQ_DEFLATE, ro_iova, 4096, tmem_alloc(&e, 1, 8192, 64), 8192, 0);
    t_run(&v, 0, sqe);
    assert_int_equal(t_status(sqe), ZIP_ST_OK);
    tenv_fini(&e);
}

static void test_a_vf_cannot_reach_another_vfs_memory(void **state)
{
    struct tenv e;
    struct tvf v1, v2;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint64_t secret, target, src1;
    uint8_t *snap;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v1, 1);
    tvf_probe(&e, &v2, 2);
    tvf_start_qp(&v1, 0, ZIP_ALG_COMPRESS);
    tvf_start_qp(&v2, 0, ZIP_ALG_COMPRESS);
    secret = tmem_alloc(&e, 2, 4096, 4096);
    target = tmem_alloc(&e, 2, 8192, 4096);
    tfill(tmem_ptr(&e, 2, secret), 4096, 42);
    memset(tmem_ptr(&e, 2, target), 0x11, 8192);
    snap = malloc(T_MEM_SIZE);
    assert_non_null(snap);
    memcpy(snap, e.mem[2].host, T_MEM_SIZE);
    /* VF1 names VF2's IOVAs: they are not in VF1's domain. */
    tsqe_flat(sqe, ZIP_REQ_DEFLATE, secret, 4096, tmem_alloc(&e, 1, 8192, 64), 8192, 0);
    t_run(&v1, 0, sqe);
    assert_int_equal(t_status(sqe), ZIP_ST_DMA_FAULT);
    src1 = tmem_alloc(&e, 1, 4096, 64);
    tsqe_flat(sqe, ZIP_REQ_DEFLATE, src1, 4096, target, 8192, 0);
    t_run(&v1, 0, sqe);
    assert_int_equal(t_status(sqe), ZIP_ST_DMA_FAULT);
    /* Rings and contexts there fail too. */
    assert_int_equal(tmb(&e, v1.door, QM_MB_CMD_SQC, 1, secret, false, NULL), QM_MB_ST_BAD_ADDR);
    assert_int_equal(tmb(&e, v1.door, QM_MB_CMD_EQC, 0, target, true, NULL), QM_MB_ST_BAD_ADDR);
    v1.qp[1].sq = target;
    tvf_start_qp(&v1, 1, ZIP_ALG_COMPRESS);
    twr64(&e, v1.door, QM_DB_SQCQ, qm_db_value(1, QM_DB_CMD_SQ, 1, 0));
    assert_true(tenv_irq_wait(&e, 1, QM_VEC_AEQ, 0, T_TIMEOUT_MS));
    assert_true(tqueue(&e, 1, 1).sq_broken);
    /* Not one byte of VF2's memory changed; VF2 works on. */
    assert_memory_equal(snap, e.mem[2].host, T_MEM_SIZE);
    free(snap);
    t_queue_still_works(&v2, 0);
    t_queue_still_works(&v1, 0);
    tenv_fini(&e);
}

/* The device's registers are not in any domain: using their offsets (or
 * RAM the guest maps at those numbers) as DMA addresses never reaches them. */
static void test_bar_addresses_are_never_dma_targets(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint64_t src;
    static const uint64_t bar_offs[] = {
        QM_MAILBOX, QM_DB_SQCQ, QM_DB_EQAEQ, QM_V3_MIG_HALF, QM_PF_VFT_CFG,
        QM_PF_MIG_WINDOW(1), QM_PF_MIG_WINDOW(1) + QM_MAILBOX, QM_PF_MIG_WINDOW(1) + QM_WIN_DB_SQCQ,
    };
    static uint8_t ram[0x4000] __attribute__((aligned(4096)));

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    src = tmem_alloc(&e, 1, 4096, 64);
    tfill(tmem_ptr(&e, 1, src), 4096, 1);
    for (size_t i = 0; i < AM_ARRAY_SIZE(bar_offs); i++) {
        tsqe_flat(sqe, ZIP_REQ_DEFLATE, src, 4096, bar_offs[i], 8192, 0);
        t_run(&v, 0, sqe);
        assert_int_equal(t_status(sqe), ZIP_ST_DMA_FAULT);
        assert_int_equal(tmb(&e, v.door, QM_MB_CMD_EQC, 0, bar_offs[i], true, NULL),
                         QM_MB_ST_BAD_ADDR);
    }
    /* The guest maps RAM at the window's numbers: DMA lands in RAM. */
    assert_int_equal(iommu_map_host(qm_dev_iommu(e.dev, 1), QM_PF_MIG_WINDOW(1), sizeof(ram), ram,
                                    IOMMU_READ | IOMMU_WRITE),
                     0);
    uint64_t cmds = tcounters(&e, 1).mb_commands;

    tsqe_flat(sqe, ZIP_REQ_DEFLATE, src, 4096, QM_PF_MIG_WINDOW(1) + QM_MAILBOX, 4096, 0);
    t_run(&v, 0, sqe);
    assert_int_equal(t_status(sqe), ZIP_ST_OK);
    assert_int_not_equal(ram[QM_MAILBOX], 0);
    assert_int_equal(tcounters(&e, 1).mb_commands, cmds);
    assert_int_equal(thost_rd32(&e, tdoor_window(1), QM_WIN_PAUSE_STATUS), 0);
    tenv_fini(&e);
}

static void test_bad_sqe_fields_get_a_status_and_the_queue_goes_on(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS], good[ZIP_SQE_DWORDS];
    uint64_t src, dst;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    tvf_start_qp(&v, 1, ZIP_ALG_DECOMPRESS);
    src = tmem_alloc(&e, 1, 65536, 64);
    dst = tmem_alloc(&e, 1, 65536 * 2, 64);
    tfill(tmem_ptr(&e, 1, src), 65536, 3);
    tsqe_flat(good, ZIP_REQ_DEFLATE, src, 65536, dst, 65536 * 2, 0);
#define T_BAD(q, dw, value, want)                                                          \
    do {                                                                                   \
        memcpy(sqe, good, sizeof(sqe));                                                    \
        sqe[dw] = value;                                                                   \
        t_run(&v, q, sqe);                                                                 \
        assert_int_equal(t_status(sqe), want);                                             \
    } while (0)
    T_BAD(0, ZIP_SQE_DW7, 0, ZIP_ST_BAD_SQE);                           /* sqe_type 0 */
    T_BAD(0, ZIP_SQE_DW7, 0xfu << 28, ZIP_ST_BAD_SQE);
    T_BAD(0, ZIP_SQE_DW9, 0, ZIP_ST_BAD_SQE);                           /* request type 0 */
    T_BAD(0, ZIP_SQE_DW9, 0x7f, ZIP_ST_BAD_SQE);
    T_BAD(0, ZIP_SQE_DW9, ZIP_REQ_DEFLATE | 7u << 8, ZIP_ST_BAD_SQE);   /* buffer type 7 */
    T_BAD(0, ZIP_SQE_INPUT_LEN, (8u << 20) + 1, ZIP_ST_TOO_BIG);
    T_BAD(0, ZIP_SQE_INPUT_LEN, 0xffffffffu, ZIP_ST_TOO_BIG);
    T_BAD(0, ZIP_SQE_DEST_AVAIL, 10, ZIP_ST_DEST_TOO_SMALL);
    /* Offsets past the data (dw7/dw8 low 24 bits) are caught, whatever the code. */
    memcpy(sqe, good, sizeof(sqe));
    sqe[ZIP_SQE_DW7] |= 0xffffffu;
    t_run(&v, 0, sqe);
    assert_int_not_equal(t_status(sqe), ZIP_ST_OK);
    /* Garbage to inflate: corrupt input. */
    memset(tmem_ptr(&e, 1, dst), 0xff, 1000);
    tsqe_flat(sqe, ZIP_REQ_DEFLATE, dst, 1000, src, 65536, 0);
    t_run(&v, 1, sqe);
    assert_int_equal(t_status(sqe), ZIP_ST_CORRUPT);
    assert_true(tcounters(&e, 1).jobs_failed >= 10);
    assert_int_equal(tcounters(&e, 1).aeqes_posted, 0);
    /* A queue whose direction is neither compress nor decompress. */
    struct qm_sqc c = {0};
    uint64_t ctx = tmem_alloc(&e, 1, 32, 32);

    c.base_l = (uint32_t)v.qp[2].sq;
    c.base_h = (uint32_t)(v.qp[2].sq >> 32);
    c.dw3 = QM_SQC_DW3(QM_SQ_DEPTH);
    c.cq_num = 0;
    c.w13 = QM_SQC_W13(5);
    memcpy(tmem_ptr(&e, 1, ctx), &c, sizeof(c));
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_SQC, 2, ctx, false, NULL), 0);
    memcpy(sqe, good, sizeof(sqe));
    memcpy(tmem_ptr(&e, 1, v.qp[2].sq), sqe, sizeof(sqe));
    twr64(&e, v.door, QM_DB_SQCQ, qm_db_value(2, QM_DB_CMD_SQ, 1, 0));
    uint16_t slot;

    assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS)); /* it completes into CQ 0 */
    assert_int_equal(v.last_sq_num, 2);
    tvf_sqe(&v, 2, slot, sqe);
    assert_int_equal(t_status(sqe), ZIP_ST_BAD_SQE);
    memcpy(sqe, good, sizeof(sqe));
    t_run(&v, 0, sqe);
    assert_int_equal(t_status(sqe), ZIP_ST_OK);
    tenv_fini(&e);
}

static void test_an_sgl_chain_that_loops_is_a_bad_sqe(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint64_t sgl_in, sgl_out, data, out;
    struct zip_sgl_hdr *h;
    struct zip_sgl_entry *en;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    data = tmem_alloc(&e, 1, 4096, 64);
    out = tmem_alloc(&e, 1, 8192, 64);
    sgl_in = tmem_alloc(&e, 1, 128, ZIP_SGL_ALIGN);
    sgl_out = tmem_alloc(&e, 1, 128, ZIP_SGL_ALIGN);
    h = tmem_ptr(&e, 1, sgl_in);
    h->next_dma = sgl_in; /* points at itself */
    h->entry_sum_in_sgl = 1;
    h->entry_length_in_sgl = 1;
    en = (struct zip_sgl_entry *)(h + 1);
    en->buf = data;
    en->len = 100;
    h = tmem_ptr(&e, 1, sgl_out);
    h->entry_sum_in_sgl = 1;
    h->entry_length_in_sgl = 1;
    en = (struct zip_sgl_entry *)(h + 1);
    en->buf = out;
    en->len = 8192;
    tsqe_flat(sqe, ZIP_REQ_DEFLATE, sgl_in, 100000, sgl_out, 8192, 0);
    sqe[ZIP_SQE_DW9] |= ZIP_BUF_SGL << ZIP_DW9_BUF_TYPE_SHIFT;
    t_run(&v, 0, sqe);
    assert_int_equal(t_status(sqe), ZIP_ST_BAD_SQE);
    t_queue_still_works(&v, 0);
    tenv_fini(&e);
}

static uint32_t t_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void test_a_register_storm_on_one_vf_leaves_the_others_working(void **state)
{
    static const unsigned sizes[] = {1, 2, 3, 4, 8, 16};
    struct tenv e;
    struct tvf v2;
    uint32_t seed = 12345, sqe[ZIP_SQE_DWORDS];
    uint64_t src, dst;
    uint8_t buf[16];
    uint16_t slot;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v2, 2);
    tvf_start_qp(&v2, 0, ZIP_ALG_COMPRESS);
    src = tmem_alloc(&e, 2, 65536, 64);
    dst = tmem_alloc(&e, 2, 65536 * 2, 64);
    tfill(tmem_ptr(&e, 2, src), 65536, 8);
    tsqe_flat(sqe, ZIP_REQ_DEFLATE, src, 65536, dst, 65536 * 2, 0);
    for (unsigned round = 0; round < 40; round++) {
        tvf_submit(&v2, 0, sqe);
        for (unsigned i = 0; i < 500; i++) {
            uint64_t off = t_rand(&seed) % (QM_VF_BAR2_SIZE + 64);
            unsigned size = sizes[t_rand(&seed) % AM_ARRAY_SIZE(sizes)];

            /* Favour the interesting registers now and then. */
            if (i % 4 == 0)
                off = (t_rand(&seed) & 1 ? QM_DB_SQCQ : QM_MAILBOX) + (t_rand(&seed) % 16);
            for (unsigned k = 0; k < sizeof(buf); k++)
                buf[k] = (uint8_t)t_rand(&seed);
            if (t_rand(&seed) & 1)
                qm_bar_write(e.dev, 1, off, buf, size);
            else
                qm_bar_read(e.dev, 1, off, buf, size);
        }
        assert_true(tvf_cqe_wait(&v2, 0, &slot, T_TIMEOUT_MS));
        tvf_sqe(&v2, 0, slot, sqe);
        assert_int_equal(t_status(sqe), ZIP_ST_OK);
    }
    assert_true(tcounters(&e, 1).access_errors > 0);
    assert_int_equal(tcounters(&e, 2).access_errors, 0);
    /* The stormed VF comes back with a reset. */
    struct tvf v1;

    assert_int_equal(qm_function_reset(e.dev, 1), 0);
    tvf_probe(&e, &v1, 1);
    tvf_start_qp(&v1, 0, ZIP_ALG_COMPRESS);
    t_queue_still_works(&v1, 0);
    tenv_fini(&e);
}

static void test_random_pf_bar_accesses_never_crash_the_device(void **state)
{
    struct tenv e;
    uint32_t seed = 99;
    uint8_t buf[8];

    (void)state;
    tenv_init(&e, NULL);
    for (unsigned i = 0; i < 20000; i++) {
        uint64_t off;
        unsigned size = 1u << (t_rand(&seed) % 4);

        switch (t_rand(&seed) % 3) {
        case 0:
            off = 0x100000u + t_rand(&seed) % 0x200;
            break;
        case 1:
            off = QM_PF_MIG_WINDOW_BASE + t_rand(&seed) % (6 * QM_PF_MIG_WINDOW_SIZE);
            break;
        default:
            off = t_rand(&seed) % QM_PF_BAR2_SIZE;
            break;
        }
        off &= ~(uint64_t)(size - 1);
        /* Leave the VFT alone: the host may reprogram it, that is not the point. */
        if (off >= QM_PF_VFT_CFG_OP_ENABLE && off <= QM_PF_VFT_CFG_RDY)
            continue;
        for (unsigned k = 0; k < sizeof(buf); k++)
            buf[k] = (uint8_t)t_rand(&seed);
        if (t_rand(&seed) & 1)
            assert_int_equal(qm_bar_write(e.dev, 0, off, buf, size), 0);
        else
            assert_int_equal(qm_bar_read(e.dev, 0, off, buf, size), 0);
    }
    /* Whatever state that left, a reset VF probes and runs. */
    struct tvf v;

    for (unsigned f = 1; f < e.nfn; f++)
        assert_int_equal(qm_function_reset(e.dev, f), 0);
    twr32(&e, tdoor_vf(0), QM_PF_MIG_REGION_SEL, 1);
    tvf_probe(&e, &v, 3);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    t_queue_still_works(&v, 0);
    tenv_fini(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_job_reading_outside_its_domain_ends_with_a_dma_fault_status),
        cmocka_unit_test(test_a_job_writing_into_read_only_memory_touches_nothing),
        cmocka_unit_test(test_a_vf_cannot_reach_another_vfs_memory),
        cmocka_unit_test(test_bar_addresses_are_never_dma_targets),
        cmocka_unit_test(test_bad_sqe_fields_get_a_status_and_the_queue_goes_on),
        cmocka_unit_test(test_an_sgl_chain_that_loops_is_a_bad_sqe),
        cmocka_unit_test(test_a_register_storm_on_one_vf_leaves_the_others_working),
        cmocka_unit_test(test_random_pf_bar_accesses_never_crash_the_device),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
