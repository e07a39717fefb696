/* Quiesce and migration: PAUSE_QM cancels and holds, RESUME_QM replays;
 * doorbells and interrupts while paused are kept; the host window's shadows
 * and the context tables carry a function to another device; FLR. */
#include "qm_tdrv.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define T_BIG (2u << 20)

/* One source and four outputs, so four jobs can be queued at once. */
struct tbig {
    uint64_t src, dst[4];
    uint32_t cap;
};

static struct tbig tbig_new(struct tenv *e, unsigned fn, unsigned seed)
{
    struct tbig b = {.cap = T_BIG + T_BIG / 8};

    b.src = tmem_alloc(e, fn, T_BIG, 4096);
    for (unsigned i = 0; i < 4; i++)
        b.dst[i] = tmem_alloc(e, fn, b.cap, 4096);
    tfill(tmem_ptr(e, fn, b.src), T_BIG, seed);
    return b;
}

static void tbig_sqe(const struct tbig *b, unsigned i, uint32_t sqe[ZIP_SQE_DWORDS], uint64_t tag)
{
    tsqe_flat(sqe, ZIP_REQ_DEFLATE, b->src, T_BIG, b->dst[i % 4], b->cap, tag);
}

static void t_check_big(struct tvf *v, const struct tbig *b, const uint32_t sqe[ZIP_SQE_DWORDS])
{
    static uint8_t out[T_BIG + 1];
    uint64_t dst = (uint64_t)sqe[ZIP_SQE_DST_ADDR_L] | (uint64_t)sqe[ZIP_SQE_DST_ADDR_H] << 32;

    assert_int_equal(sqe[ZIP_SQE_DW3] & 0xffu, ZIP_ST_OK);
    assert_int_equal(tinflate_raw(tmem_ptr(v->env, v->fn, dst), sqe[ZIP_SQE_PRODUCED], out,
                                  sizeof(out)),
                     T_BIG);
    assert_memory_equal(out, tmem_ptr(v->env, v->fn, b->src), T_BIG);
}

static void t_resume(struct tenv *e, unsigned vf)
{
    assert_int_equal(tmb(e, tdoor_window(vf), QM_MB_CMD_RESUME_QM, 0, 0, false, NULL), 0);
}

static void test_pause_cancels_an_in_flight_job_which_then_completes_exactly_once(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct tbig b;
    unsigned nslots = 0;
    uint16_t seen[64] = {0};
    bool cancelled = false;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    b = tbig_new(&e, 1, 5);
    /* Back-to-back jobs keep the engine busy; pause lands inside one. */
    for (unsigned attempt = 0; attempt < 10 && !cancelled; attempt++) {
        uint64_t cancelled_before = tcounters(&e, 1).jobs_cancelled;

        for (unsigned i = 0; i < 4; i++) {
            tbig_sqe(&b, i, sqe, nslots + i);
            tvf_submit(&v, 0, sqe);
        }
        while (!tqueue(&e, 1, 0).busy && tqueue(&e, 1, 0).sq_head != v.qp[0].sq_tail)
            ;
        tpause(&e, 1);
        struct qm_queue_debug q = tqueue(&e, 1, 0);
        uint64_t done = tcounters(&e, 1).jobs_done;

        cancelled = tcounters(&e, 1).jobs_cancelled > cancelled_before;
        assert_false(q.busy);
        /* Held: nothing moves, no DMA into the CQ. */
        uint8_t cq_before[16 * 8];

        memcpy(cq_before, tmem_ptr(&e, 1, v.qp[0].cq), sizeof(cq_before));
        tsleep_us(30000);
        assert_int_equal(tcounters(&e, 1).jobs_done, done);
        assert_int_equal(tqueue(&e, 1, 0).sq_head, q.sq_head);
        assert_memory_equal(cq_before, tmem_ptr(&e, 1, v.qp[0].cq), sizeof(cq_before));
        if (cancelled) {
            /* The cancelled job is the one at head: its CQE slot is unwritten. */
            assert_int_equal(q.sq_head, done % QM_SQ_DEPTH);
            assert_int_equal(q.cq_tail, done % QM_CQ_DEPTH);
        }
        t_resume(&e, 1);
        for (unsigned i = 0; i < 4; i++) {
            uint16_t slot;

            assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
            assert_int_equal(slot, nslots);
            seen[slot]++;
            nslots++;
            tvf_sqe(&v, 0, slot, sqe);
            assert_int_equal(sqe[ZIP_SQE_TAG_L], slot);
            t_check_big(&v, &b, sqe);
        }
    }
    assert_true(cancelled);
    /* Every job completed exactly once; no extra CQE appeared. */
    for (unsigned i = 0; i < nslots; i++)
        assert_int_equal(seen[i], 1);
    tsleep_us(10000);
    uint16_t extra;

    assert_false(tvf_cqe_take(&v, 0, &extra));
    assert_int_equal(tcounters(&e, 1).jobs_done, nslots);
    tenv_fini(&e);
}

static void test_sq_doorbells_while_paused_are_kept_and_run_after_resume(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint64_t src, dst;
    uint16_t slot;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    src = tmem_alloc(&e, 1, 4096, 64);
    dst = tmem_alloc(&e, 1, 8192, 64);
    tfill(tmem_ptr(&e, 1, src), 4096, 1);
    tsqe_flat(sqe, ZIP_REQ_DEFLATE, src, 4096, dst, 8192, 0);
    tpause(&e, 1);
    for (unsigned i = 0; i < 3; i++)
        tvf_submit(&v, 0, sqe);
    tsleep_us(20000);
    assert_int_equal(tcounters(&e, 1).jobs_done, 0);
    assert_int_equal(tcounters(&e, 1).doorbells_held, 3);
    assert_int_equal(tqueue(&e, 1, 0).sq_tail, 3);
    t_resume(&e, 1);
    for (unsigned i = 0; i < 3; i++) {
        assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
        assert_int_equal(slot, i);
    }
    tenv_fini(&e);
}

static void test_interrupts_while_paused_are_held_shown_and_delivered_on_resume(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint64_t src, dst;
    uint16_t slot;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    src = tmem_alloc(&e, 1, 4096, 64);
    dst = tmem_alloc(&e, 1, 8192, 64);
    tsqe_flat(sqe, ZIP_REQ_DEFLATE, src, 4096, dst, 8192, 0);
    twr32(&e, v.door, QM_EQ_INT_MASK, 1);
    tvf_submit(&v, 0, sqe);
    assert_true(twait_jobs_done(&e, 1, 1, T_TIMEOUT_MS));
    tpause(&e, 1);
    /* The guest unmasks while paused: the MSI is remembered, not sent. */
    twr32(&e, v.door, QM_EQ_INT_MASK, 0);
    assert_int_equal(tenv_irqs(&e, 1, QM_VEC_EQ), 0);
    assert_int_equal(thost_rd32(&e, tdoor_window(1), QM_WIN_INT_PENDING), 1u << QM_VEC_EQ);
    assert_int_equal(tcounters(&e, 1).msi_held, 1);
    /* A CQ re-arm with a CQE waiting posts no EQE while paused (no DMA)... */
    tvf_submit(&v, 0, sqe);
    assert_int_equal(tvf_eq_drain(&v, NULL, 0), 1);
    assert_true(tvf_cqe_take(&v, 0, &slot));
    t_resume(&e, 1);
    assert_true(twait_jobs_done(&e, 1, 2, T_TIMEOUT_MS));
    tvf_eq_drain(&v, NULL, 0);
    tpause(&e, 1);
    uint64_t eqes = tcounters(&e, 1).eqes_posted;

    tvf_cq_rearm(&v, 0);
    assert_int_equal(tcounters(&e, 1).eqes_posted, eqes);
    /* ...and the migration driver may set held vectors itself. */
    thost_wr32(&e, tdoor_window(1), QM_WIN_INT_PENDING, 1u << QM_VEC_AEQ);
    assert_int_equal(thost_rd32(&e, tdoor_window(1), QM_WIN_INT_PENDING), 1u << QM_VEC_AEQ);
    unsigned eq_irqs = tenv_irqs(&e, 1, QM_VEC_EQ);

    t_resume(&e, 1);
    assert_true(tenv_irq_wait(&e, 1, QM_VEC_AEQ, 0, T_TIMEOUT_MS));
    assert_int_equal(tcounters(&e, 1).eqes_posted, eqes + 1);
    assert_true(tenv_irq_wait(&e, 1, QM_VEC_EQ, eq_irqs, T_TIMEOUT_MS));
    assert_int_equal(thost_rd32(&e, tdoor_window(1), QM_WIN_INT_PENDING), 0);
    /* Written while running, a pending vector goes out at once. */
    unsigned ifc = tenv_irqs(&e, 1, QM_VEC_IFC);

    thost_wr32(&e, tdoor_window(1), QM_WIN_INT_PENDING, 1u << QM_VEC_IFC);
    assert_int_equal(tenv_irqs(&e, 1, QM_VEC_IFC), ifc + 1);
    tenv_fini(&e);
}

static void test_eqc_shadow_writes_load_the_event_queue(void **state)
{
    struct tenv e;
    struct tdoor w = tdoor_window(2);
    uint64_t ring;
    struct qm_eqc c = {0};
    uint32_t dw[7];

    (void)state;
    tenv_init(&e, NULL);
    ring = tmem_alloc(&e, 2, QM_EQ_DEPTH * 4, 4096);
    c.head = 5;
    c.tail = 9;
    c.base_l = (uint32_t)ring;
    c.base_h = (uint32_t)(ring >> 32);
    c.dw6 = QM_EQC_DW6(QM_EQ_DEPTH, 0);
    memcpy(dw, &c, sizeof(dw));
    for (unsigned i = 0; i < 6; i++) {
        thost_wr32(&e, w, QM_WIN_EQC_SHADOW + 4 * i, dw[i]);
        assert_false(trd32(&e, tdoor_vf(2), QM_EQ_INT_SOURCE)); /* not yet a context */
    }
    thost_wr32(&e, w, QM_WIN_EQC_SHADOW + 24, dw[6]);
    for (unsigned i = 0; i < 7; i++)
        assert_int_equal(thost_rd32(&e, w, QM_WIN_EQC_SHADOW + 4 * i), dw[i]);
    /* Pending EQEs between head and tail: the source bit shows them. */
    assert_int_equal(trd32(&e, tdoor_vf(2), QM_EQ_INT_SOURCE), 1);
    struct qm_fn_debug d;

    assert_int_equal(qm_debug_fn(e.dev, 2, &d), 0);
    assert_true(d.eq_valid);
    assert_int_equal(d.eq_head, 5);
    assert_int_equal(d.eq_tail, 9);
    assert_false(d.eq_phase);
    /* A bad image (depth 1) invalidates it and reads back as written. */
    thost_wr32(&e, w, QM_WIN_EQC_SHADOW + 24, 0);
    assert_int_equal(thost_rd32(&e, w, QM_WIN_EQC_SHADOW + 24), 0);
    assert_int_equal(qm_debug_fn(e.dev, 2, &d), 0);
    assert_false(d.eq_valid);
    assert_int_equal(trd32(&e, tdoor_vf(2), QM_EQ_INT_SOURCE), 0);
    tenv_fini(&e);
}

/* What the migration driver saves of a paused function (window registers
 * and mailbox queries only). */
struct tsaved {
    uint32_t eqc[7], aeqc[7];
    uint32_t eq_mask, aeq_mask, ifc_mask, page_size, vf_state, int_pending;
    uint64_t sqc_bt, cqc_bt, qp_active;
};

static void t_save(struct tenv *e, unsigned vf, struct tsaved *s)
{
    struct tdoor w = tdoor_window(vf);

    twr32(e, w, QM_CACHE_WB_START, 1);
    assert_int_equal(trd32(e, w, QM_CACHE_WB_DONE), 1);
    for (unsigned i = 0; i < 7; i++) {
        s->eqc[i] = thost_rd32(e, w, QM_WIN_EQC_SHADOW + 4 * i);
        s->aeqc[i] = thost_rd32(e, w, QM_WIN_AEQC_SHADOW + 4 * i);
    }
    s->eq_mask = trd32(e, w, QM_EQ_INT_MASK);
    s->aeq_mask = trd32(e, w, QM_AEQ_INT_MASK);
    s->ifc_mask = trd32(e, w, QM_IFC_INT_MASK);
    s->page_size = trd32(e, w, QM_PAGE_SIZE);
    s->vf_state = trd32(e, w, QM_VF_STATE);
    s->int_pending = thost_rd32(e, w, QM_WIN_INT_PENDING);
    s->qp_active = thost_rd32(e, w, QM_WIN_QP_ACTIVE_L) |
                   (uint64_t)thost_rd32(e, w, QM_WIN_QP_ACTIVE_H) << 32;
    assert_int_equal(tmb(e, w, QM_MB_CMD_SQC_BT, 0, 0, true, &s->sqc_bt), 0);
    assert_int_equal(tmb(e, w, QM_MB_CMD_CQC_BT, 0, 0, true, &s->cqc_bt), 0);
}

static void t_restore(struct tenv *e, unsigned vf, const struct tsaved *s)
{
    struct tdoor w = tdoor_window(vf);

    tpause(e, vf); /* held until the end of the restore */
    twr32(e, w, QM_VF_STATE, s->vf_state);
    twr32(e, w, QM_EQ_INT_MASK, s->eq_mask);
    twr32(e, w, QM_AEQ_INT_MASK, s->aeq_mask);
    twr32(e, w, QM_IFC_INT_MASK, s->ifc_mask);
    twr32(e, w, QM_PAGE_SIZE, s->page_size);
    for (unsigned i = 0; i < 7; i++)
        thost_wr32(e, w, QM_WIN_EQC_SHADOW + 4 * i, s->eqc[i]);
    for (unsigned i = 0; i < 7; i++)
        thost_wr32(e, w, QM_WIN_AEQC_SHADOW + 4 * i, s->aeqc[i]);
    assert_int_equal(tmb(e, w, QM_MB_CMD_SQC_BT, 0, s->sqc_bt, false, NULL), 0);
    assert_int_equal(tmb(e, w, QM_MB_CMD_CQC_BT, 0, s->cqc_bt, false, NULL), 0);
    thost_wr32(e, w, QM_WIN_INT_PENDING, s->int_pending);
    t_resume(e, vf);
    /* The HiSilicon host driver's re-arm: priority-1 SQ doorbell per queue. */
    for (unsigned q = 0; q < 64; q++)
        if (s->qp_active & (1ull << q))
            twr64(e, w, QM_WIN_DB_SQCQ, qm_db_value((uint16_t)q, QM_DB_CMD_SQ, 0, 1));
}

static void test_a_function_migrated_to_another_device_completes_every_job_once(void **state)
{
    struct tenv a, b;
    struct tvf v;
    struct tsaved s;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint64_t src, dst[24];
    unsigned seen[24] = {0}, taken = 0;
    uint16_t slot;
    const uint32_t len = 512u << 10;

    (void)state;
    tenv_init(&a, NULL);
    tvf_probe(&a, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    tvf_start_qp(&v, 1, ZIP_ALG_COMPRESS);
    src = tmem_alloc(&a, 1, len, 4096);
    tfill(tmem_ptr(&a, 1, src), len, 11);
    for (unsigned i = 0; i < 24; i++) {
        dst[i] = tmem_alloc(&a, 1, len + len / 8, 4096);
        tsqe_flat(sqe, ZIP_REQ_DEFLATE, src, len, dst[i], len + len / 8, i);
        tvf_submit(&v, i % 2, sqe);
    }
    /* Take a few completions on the source, then migrate mid-stream. */
    while (taken < 4) {
        if (tvf_cqe_take(&v, taken % 2, &slot)) {
            seen[2 * slot + taken % 2]++;
            taken++;
        }
    }
    tpause(&a, 1);
    t_save(&a, 1, &s);
    assert_int_equal(s.qp_active, 3);
    assert_int_equal(s.vf_state, QM_VF_STATE_READY);

    tenv_init(&b, NULL);
    tmem_adopt(&b, &a, 1);
    t_restore(&b, 1, &s);
    v.env = &b; /* the guest runs on: its state lives in its memory */
    uint64_t deadline = am_now_ns() + (uint64_t)T_TIMEOUT_MS * 1000000u;

    while (taken < 24) {
        bool got = false;

        for (unsigned q = 0; q < 2; q++) {
            if (!tvf_cqe_take(&v, q, &slot))
                continue;
            uint32_t back[ZIP_SQE_DWORDS];

            tvf_sqe(&v, q, slot, back);
            assert_int_equal(back[ZIP_SQE_TAG_L], 2 * slot + q);
            assert_int_equal(back[ZIP_SQE_DW3] & 0xffu, ZIP_ST_OK);
            seen[back[ZIP_SQE_TAG_L]]++;
            taken++;
            got = true;
        }
        if (!got) {
            assert_true(am_now_ns() < deadline);
            tsleep_us(100);
        }
    }
    for (unsigned i = 0; i < 24; i++)
        assert_int_equal(seen[i], 1);
    /* The source stays held; the destination did the rest. */
    assert_int_equal(tcounters(&a, 1).jobs_done + tcounters(&b, 1).jobs_done, 24);
    assert_true(tcounters(&b, 1).table_loads >= 4);
    uint8_t *out = malloc(len);

    assert_non_null(out);
    for (unsigned i = 0; i < 24; i++) {
        tvf_sqe(&v, i % 2, (uint16_t)(i / 2), sqe);
        assert_int_equal(tinflate_raw(tmem_ptr(&b, 1, dst[i]), sqe[ZIP_SQE_PRODUCED], out, len), len);
    }
    free(out);
    tenv_fini(&b);
    tenv_fini(&a);
}

/* Doorbells stored into the mapped BAR4 page while the function is paused:
 * taken and recorded but not acted on; those still in the page when the
 * migration driver writes the caches back (STOP_COPY) travel in the SQC
 * table; the destination runs every one after RESUME, exactly once. */
static void test_doorbells_stored_in_the_page_while_paused_run_once_after_migration(void **state)
{
    struct tenv a, b;
    struct tvf v;
    struct tsaved s;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint64_t src, dst[6];
    unsigned seen[6] = {0}, taken = 0;
    uint16_t slot;

    (void)state;
    tenv_init(&a, NULL);
    tvf_probe(&a, &v, 1);
    assert_true(v.db_iso);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    src = tmem_alloc(&a, 1, 4096, 4096);
    tfill(tmem_ptr(&a, 1, src), 4096, 5);
    tpause(&a, 1);
    _Atomic uint64_t *w = (_Atomic uint64_t *)(a.db[1] + QM_DB_SQCQ);

    for (unsigned i = 0; i < 6; i++) {
        dst[i] = tmem_alloc(&a, 1, 8192, 4096);
        tsqe_flat(sqe, ZIP_REQ_DEFLATE, src, 4096, dst[i], 8192, i);
        memcpy(tmem_ptr(&a, 1, v.qp[0].sq + (uint64_t)i * ZIP_SQE_SIZE), sqe, ZIP_SQE_SIZE);
        v.qp[0].sq_tail = (uint16_t)(i + 1);
        /* The first three: the poller takes them while paused. */
        if (i < 3) {
            while (atomic_load(w) != QM_DB_IDLE)
                tsleep_us(10);
        }
        atomic_store(w, qm_db_value(0, QM_DB_CMD_SQ, v.qp[0].sq_tail, 0));
    }
    tsleep_us(20000);
    assert_int_equal(tcounters(&a, 1).jobs_done, 0); /* paused: not acted on */
    t_save(&a, 1, &s); /* CACHE_WB_START takes whatever the page still holds */
    assert_int_equal(atomic_load(w), QM_DB_IDLE);
    assert_int_equal(tqueue(&a, 1, 0).sq_tail, 6);
    assert_int_equal(tcounters(&a, 1).jobs_done, 0);

    tenv_init(&b, NULL);
    tmem_adopt(&b, &a, 1);
    t_restore(&b, 1, &s);
    v.env = &b;
    uint64_t deadline = am_now_ns() + (uint64_t)T_TIMEOUT_MS * 1000000u;

    while (taken < 6) {
        if (tvf_cqe_take(&v, 0, &slot)) {
            uint32_t back[ZIP_SQE_DWORDS];

            tvf_sqe(&v, 0, slot, back);
            assert_int_equal(back[ZIP_SQE_DW3] & 0xffu, ZIP_ST_OK);
            seen[back[ZIP_SQE_TAG_L]]++;
            taken++;
            continue;
        }
        assert_true(am_now_ns() < deadline);
        tsleep_us(100);
    }
    for (unsigned i = 0; i < 6; i++)
        assert_int_equal(seen[i], 1);
    assert_int_equal(tcounters(&a, 1).jobs_done, 0); /* the source ran none */
    /* After RESUME the destination's own page works. */
    tsqe_flat(sqe, ZIP_REQ_DEFLATE, src, 4096, dst[0], 8192, 0);
    tvf_submit(&v, 0, sqe);
    assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
    assert_int_equal(tcounters(&b, 1).jobs_done, 7);
    assert_true(tcounters(&b, 1).doorbells_paged > 0);
    tenv_fini(&b);
    tenv_fini(&a);
}

static void test_the_v3_path_pauses_through_the_shared_mailbox_and_upper_half(void **state)
{
    struct qm_dev_config cfg;
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint64_t src, dst;
    uint16_t slot;

    (void)state;
    qm_dev_config_default(&cfg);
    cfg.revision = QM_REV_V3;
    tenv_init(&e, &cfg);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_PAUSE_QM, 0, 0, false, NULL), 0);
    assert_int_equal(thost_rd32(&e, tdoor_v3_host(1), QM_WIN_PAUSE_STATUS), 3);
    assert_int_equal(trd32(&e, v.door, QM_EQC_SHADOW_V3 + 4), (uint32_t)v.eqe);
    assert_int_equal(trd32(&e, v.door, QM_AEQC_SHADOW_V3 + 4), (uint32_t)v.aeqe);
    src = tmem_alloc(&e, 1, 4096, 64);
    dst = tmem_alloc(&e, 1, 8192, 64);
    tsqe_flat(sqe, ZIP_REQ_DEFLATE, src, 4096, dst, 8192, 0);
    tvf_submit(&v, 0, sqe);
    tsleep_us(10000);
    assert_int_equal(tcounters(&e, 1).jobs_done, 0);
    assert_int_equal(tmb(&e, v.door, QM_MB_CMD_RESUME_QM, 0, 0, false, NULL), 0);
    assert_true(tvf_cqe_wait(&v, 0, &slot, T_TIMEOUT_MS));
    /* The host doorbell mirror sits at 0x9000 in v3. */
    uint64_t dbs = tcounters(&e, 1).doorbells;

    thost_wr32(&e, tdoor_v3_host(1), QM_WIN_DB_SQCQ, 0);
    thost_wr32(&e, tdoor_v3_host(1), QM_WIN_DB_SQCQ + 4, (uint32_t)(qm_db_value(0, 0, 0, 1) >> 32));
    assert_int_equal(tcounters(&e, 1).doorbells, dbs + 1);
    assert_int_equal(tcounters(&e, 1).doorbells_ignored, 0);
    tenv_fini(&e);
}

static void test_a_function_reset_cancels_running_jobs_and_lifts_the_pause(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct tbig b;
    uint64_t done;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    b = tbig_new(&e, 1, 2);
    for (unsigned i = 0; i < 4; i++) {
        tbig_sqe(&b, i, sqe, i);
        tvf_submit(&v, 0, sqe);
    }
    assert_int_equal(qm_function_reset(e.dev, 1), 0);
    done = tcounters(&e, 1).jobs_done;
    tsleep_us(20000);
    assert_int_equal(tcounters(&e, 1).jobs_done, done);
    assert_int_equal(trd32(&e, v.door, QM_VF_STATE), 1);
    assert_false(tqueue(&e, 1, 0).busy);
    tpause(&e, 1);
    assert_int_equal(qm_function_reset(e.dev, 1), 0);
    assert_int_equal(thost_rd32(&e, tdoor_window(1), QM_WIN_PAUSE_STATUS), 0);
    assert_int_equal(tcounters(&e, 1).resets, 2);
    tenv_fini(&e);
}

static void test_pause_with_sixty_four_busy_queues_retires_every_job(void **state)
{
    struct qm_dev_config cfg;
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint64_t src, t0, worst = 0;
    const uint32_t len = 128u << 10;
    uint16_t slot;

    (void)state;
    qm_dev_config_default(&cfg);
    cfg.num_vfs = 1;
    cfg.qps_per_vf = 64;
    cfg.workers = 4;
    tenv_init(&e, &cfg);
    tvf_probe(&e, &v, 1);
    src = tmem_alloc(&e, 1, len, 4096);
    tfill(tmem_ptr(&e, 1, src), len, 3);
    for (unsigned q = 0; q < 64; q++) {
        tvf_start_qp(&v, q, ZIP_ALG_COMPRESS);
        uint64_t dst = tmem_alloc(&e, 1, len + len / 8, 4096);

        tsqe_flat(sqe, ZIP_REQ_DEFLATE, src, len, dst, len + len / 8, q);
        for (unsigned i = 0; i < 3; i++)
            tvf_submit(&v, q, sqe);
    }
    for (unsigned round = 0; round < 5; round++) {
        t0 = am_now_ns();
        tpause(&e, 1);
        worst = AM_MAX(worst, am_now_ns() - t0);
        struct qm_fn_debug d;

        assert_int_equal(qm_debug_fn(e.dev, 1, &d), 0);
        assert_int_equal(d.jobs_inflight, 0);
        t_resume(&e, 1);
        tsleep_us(2000);
    }
    print_message("pause with 64 busy queues: worst %.3f ms (information only)\n", worst / 1e6);
    for (unsigned q = 0; q < 64; q++)
        for (unsigned i = 0; i < 3; i++)
            assert_true(tvf_cqe_wait(&v, q, &slot, T_TIMEOUT_MS));
    assert_int_equal(tcounters(&e, 1).jobs_done, 192);
    tenv_fini(&e);
}

struct thost {
    struct tenv *e;
    unsigned vf, rounds;
    atomic_bool stop;
    unsigned errors, pauses;
};

/* The migration side, raw registers only (no cmocka calls off the main
 * thread): pause, wait for retirement, hold a little, resume. */
static int thost_mb(struct thost *h, uint8_t cmd)
{
    uint64_t base = QM_PF_MIG_WINDOW(h->vf);
    struct qm_mailbox m = {.w0 = (uint16_t)(cmd | 1u << QM_MB_BUSY_SHIFT)};
    uint32_t w0 = 0;

    if (qm_bar_write(h->e->dev, 0, base + QM_MAILBOX, &m, sizeof(m)))
        return -1;
    for (int i = 0; i < 100000; i++) {
        if (qm_bar_read32(h->e->dev, 0, base + QM_MAILBOX, &w0))
            return -1;
        if (!((w0 >> QM_MB_BUSY_SHIFT) & 1u))
            return (w0 >> QM_MB_STATUS_SHIFT) & QM_MB_STATUS_MASK;
        tsleep_us(10);
    }
    return -1;
}

static void *thost_main(void *arg)
{
    struct thost *h = arg;
    uint64_t base = QM_PF_MIG_WINDOW(h->vf);

    while (!atomic_load(&h->stop) && h->pauses < h->rounds) {
        uint32_t st = 0;

        if (thost_mb(h, QM_MB_CMD_PAUSE_QM) != 0)
            h->errors++;
        for (int i = 0; i < 100000 && st != 3; i++) {
            qm_bar_read32(h->e->dev, 0, base + QM_WIN_PAUSE_STATUS, &st);
            if (st != 3)
                tsleep_us(10);
        }
        if (st != 3)
            h->errors++;
        h->pauses++;
        tsleep_us(300);
        if (thost_mb(h, QM_MB_CMD_RESUME_QM) != 0)
            h->errors++;
        tsleep_us(1500);
    }
    return NULL;
}

static void test_repeated_pause_and_resume_under_load_complete_every_job_once(void **state)
{
    enum { NQ = 4, NJOBS = 600, OUTSTANDING = 8 };
    struct tenv e;
    struct tvf v;
    struct thost h = {.vf = 1, .rounds = 40};
    pthread_t thr;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint64_t src;
    unsigned *seen = calloc(NJOBS, sizeof(unsigned));
    unsigned sent[NQ] = {0}, got[NQ] = {0}, total = 0, next = 0;
    uint64_t dst[NQ][OUTSTANDING];
    const uint32_t len = 64u << 10;

    (void)state;
    assert_non_null(seen);
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    src = tmem_alloc(&e, 1, len, 4096);
    tfill(tmem_ptr(&e, 1, src), len, 77);
    for (unsigned q = 0; q < NQ; q++) {
        tvf_start_qp(&v, q, ZIP_ALG_COMPRESS);
        for (unsigned k = 0; k < OUTSTANDING; k++)
            dst[q][k] = tmem_alloc(&e, 1, len + len / 8, 4096);
    }
    h.e = &e;
    atomic_init(&h.stop, false);
    assert_int_equal(pthread_create(&thr, NULL, thost_main, &h), 0);
    uint64_t deadline = am_now_ns() + 60ull * 1000000000u;

    while (total < NJOBS) {
        for (unsigned q = 0; q < NQ; q++) {
            while (next < NJOBS && sent[q] - got[q] < OUTSTANDING) {
                tsqe_flat(sqe, ZIP_REQ_DEFLATE, src, len, dst[q][sent[q] % OUTSTANDING],
                          len + len / 8, next++);
                tvf_submit(&v, q, sqe);
                sent[q]++;
            }
            uint16_t slot;

            while (tvf_cqe_take(&v, q, &slot)) {
                uint32_t back[ZIP_SQE_DWORDS];

                tvf_sqe(&v, q, slot, back);
                assert_int_equal(slot, got[q] % QM_SQ_DEPTH);
                assert_int_equal(back[ZIP_SQE_DW3] & 0xffu, ZIP_ST_OK);
                assert_true(back[ZIP_SQE_TAG_L] < NJOBS);
                seen[back[ZIP_SQE_TAG_L]]++;
                got[q]++;
                total++;
            }
        }
        assert_true(am_now_ns() < deadline);
        tsleep_us(50);
    }
    atomic_store(&h.stop, true);
    pthread_join(thr, NULL);
    for (unsigned i = 0; i < NJOBS; i++)
        assert_int_equal(seen[i], 1);
    assert_int_equal(h.errors, 0);
    assert_true(h.pauses > 0);
    assert_int_equal(tcounters(&e, 1).jobs_done, NJOBS);
    print_message("%u pauses, %llu jobs cancelled and replayed\n", h.pauses,
                  (unsigned long long)tcounters(&e, 1).jobs_cancelled);
    free(seen);
    tenv_fini(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pause_cancels_an_in_flight_job_which_then_completes_exactly_once),
        cmocka_unit_test(test_sq_doorbells_while_paused_are_kept_and_run_after_resume),
        cmocka_unit_test(test_interrupts_while_paused_are_held_shown_and_delivered_on_resume),
        cmocka_unit_test(test_eqc_shadow_writes_load_the_event_queue),
        cmocka_unit_test(test_a_function_migrated_to_another_device_completes_every_job_once),
        cmocka_unit_test(test_doorbells_stored_in_the_page_while_paused_run_once_after_migration),
        cmocka_unit_test(test_the_v3_path_pauses_through_the_shared_mailbox_and_upper_half),
        cmocka_unit_test(test_a_function_reset_cancels_running_jobs_and_lifts_the_pause),
        cmocka_unit_test(test_pause_with_sixty_four_busy_queues_retires_every_job),
        cmocka_unit_test(test_repeated_pause_and_resume_under_load_complete_every_job_once),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
