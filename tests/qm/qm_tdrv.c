/* qm_tdrv: the in-test driver (see qm_tdrv.h). */
#include "qm_tdrv.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <zlib.h>

#include "common/common.h"

static void tenv_irq_raise(void *opaque, unsigned fn, unsigned vector)
{
    struct tenv *e = opaque;

    pthread_mutex_lock(&e->lock);
    if (fn < T_NFN_MAX && vector < QM_NUM_VECTORS)
        e->irq_count[fn][vector]++;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

void tenv_init(struct tenv *e, const struct qm_dev_config *cfg)
{
    struct qm_dev_config c;

    memset(e, 0, sizeof(*e));
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->cond, NULL);
    if (cfg) {
        c = *cfg;
    } else {
        qm_dev_config_default(&c);
    }
    c.irq.raise = tenv_irq_raise;
    c.irq.opaque = e;
    assert_int_equal(qm_dev_create(&c, &e->dev), 0);
    e->nfn = qm_dev_num_functions(e->dev);
    for (unsigned f = 0; f < e->nfn; f++) {
        struct tmem *m = &e->mem[f];

        m->size = T_MEM_SIZE;
        m->iova = T_IOVA(f);
        m->host = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        assert_true(m->host != MAP_FAILED);
        m->used = 0x1000; /* IOVA base itself stays unused: base 0 checks */
        assert_int_equal(iommu_map_host(qm_dev_iommu(e->dev, f), m->iova, m->size, m->host,
                                        IOMMU_READ | IOMMU_WRITE),
                         0);
        e->db_size[f] = qm_db_bar_size(e->dev, f);
        if (e->db_size[f] == 0)
            continue;
        e->db[f] = mmap(NULL, e->db_size[f], PROT_READ | PROT_WRITE, MAP_SHARED,
                        qm_db_bar_fd(e->dev, f), 0);
        assert_true(e->db[f] != MAP_FAILED);
    }
}

void tenv_fini(struct tenv *e)
{
    qm_dev_destroy(e->dev);
    for (unsigned f = 0; f < e->nfn; f++)
        if (e->db[f] != NULL)
            munmap(e->db[f], e->db_size[f]);
    for (unsigned f = 0; f < e->nfn; f++)
        if (!e->mem[f].borrowed)
            munmap(e->mem[f].host, e->mem[f].size);
    pthread_cond_destroy(&e->cond);
    pthread_mutex_destroy(&e->lock);
}

uint64_t tmem_alloc(struct tenv *e, unsigned fn, uint64_t size, uint64_t align)
{
    struct tmem *m = &e->mem[fn];
    uint64_t off = AM_ALIGN_UP(m->used, align);

    assert_true(off + size <= m->size);
    m->used = off + size;
    memset(m->host + off, 0, size);
    return m->iova + off;
}

void tmem_adopt(struct tenv *dst, struct tenv *src, unsigned fn)
{
    struct iommu_domain *d = qm_dev_iommu(dst->dev, fn);

    assert_int_equal(iommu_unmap(d, dst->mem[fn].iova, dst->mem[fn].size), 0);
    munmap(dst->mem[fn].host, dst->mem[fn].size);
    dst->mem[fn] = src->mem[fn];
    dst->mem[fn].borrowed = true;
    assert_int_equal(iommu_map_host(d, dst->mem[fn].iova, dst->mem[fn].size, dst->mem[fn].host,
                                    IOMMU_READ | IOMMU_WRITE),
                     0);
}

void *tmem_ptr(struct tenv *e, unsigned fn, uint64_t iova)
{
    struct tmem *m = &e->mem[fn];

    assert_true(iova >= m->iova && iova < m->iova + m->size);
    return m->host + (iova - m->iova);
}

unsigned tenv_irqs(struct tenv *e, unsigned fn, unsigned vec)
{
    unsigned n;

    pthread_mutex_lock(&e->lock);
    n = e->irq_count[fn][vec];
    pthread_mutex_unlock(&e->lock);
    return n;
}

bool tenv_irq_wait(struct tenv *e, unsigned fn, unsigned vec, unsigned seen, int timeout_ms)
{
    struct timespec ts;
    bool ok;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&e->lock);
    while (e->irq_count[fn][vec] <= seen)
        if (pthread_cond_timedwait(&e->cond, &e->lock, &ts) == ETIMEDOUT)
            break;
    ok = e->irq_count[fn][vec] > seen;
    pthread_mutex_unlock(&e->lock);
    return ok;
}

void tsleep_us(unsigned us)
{
    struct timespec ts = {.tv_sec = us / 1000000u, .tv_nsec = (long)(us % 1000000u) * 1000L};

    nanosleep(&ts, NULL);
}

/* ---- doors and registers --------------------------------------------------- */

struct tdoor tdoor_vf(unsigned fn)
{
    return (struct tdoor){.fn = fn, .base = 0, .host_base = 0};
}

struct tdoor tdoor_window(unsigned vf_fn)
{
    return (struct tdoor){.fn = 0, .base = QM_PF_MIG_WINDOW(vf_fn),
                          .host_base = QM_PF_MIG_WINDOW(vf_fn)};
}

struct tdoor tdoor_v3_host(unsigned vf_fn)
{
    return (struct tdoor){.fn = vf_fn, .base = 0, .host_base = QM_V3_MIG_HALF};
}

uint32_t trd32(struct tenv *e, struct tdoor d, uint64_t off)
{
    uint32_t v = 0;

    assert_int_equal(qm_bar_read32(e->dev, d.fn, d.base + off, &v), 0);
    return v;
}

void twr32(struct tenv *e, struct tdoor d, uint64_t off, uint32_t v)
{
    assert_int_equal(qm_bar_write32(e->dev, d.fn, d.base + off, v), 0);
}

void twr64(struct tenv *e, struct tdoor d, uint64_t off, uint64_t v)
{
    assert_int_equal(qm_bar_write64(e->dev, d.fn, d.base + off, v), 0);
}

uint32_t thost_rd32(struct tenv *e, struct tdoor d, uint32_t win_off)
{
    uint32_t v = 0;

    assert_int_equal(qm_bar_read32(e->dev, d.fn, d.host_base + win_off, &v), 0);
    return v;
}

void thost_wr32(struct tenv *e, struct tdoor d, uint32_t win_off, uint32_t v)
{
    assert_int_equal(qm_bar_write32(e->dev, d.fn, d.host_base + win_off, v), 0);
}

/* ---- mailbox ------------------------------------------------------------ */

static bool tmb_wait_ready(struct tenv *e, struct tdoor d, uint32_t *w0)
{
    /* The Linux driver: poll every 10 us, give up after 1 ms. Allow more
     * here so a loaded test machine does not fail on timing. */
    for (int i = 0; i < 20000; i++) {
        *w0 = trd32(e, d, QM_MAILBOX);
        if (!((*w0 >> QM_MB_BUSY_SHIFT) & 1u))
            return true;
        tsleep_us(10);
    }
    return false;
}

int tmb_split(struct tenv *e, struct tdoor d, uint8_t cmd, uint16_t qn, uint64_t base, bool op,
              unsigned split, uint64_t *data)
{
    struct qm_mailbox m = {
        .w0 = (uint16_t)(cmd | (op ? 1u << QM_MB_OP_SHIFT : 0) | 1u << QM_MB_BUSY_SHIFT),
        .queue_num = qn,
        .base_l = (uint32_t)base,
        .base_h = (uint32_t)(base >> 32),
    };
    uint32_t w0;

    if (!tmb_wait_ready(e, d, &w0))
        return -1;
    if (split == 0) {
        assert_int_equal(qm_bar_write(e->dev, d.fn, d.base + QM_MAILBOX, &m, sizeof(m)), 0);
    } else {
        for (unsigned o = 0; o < sizeof(m); o += split)
            assert_int_equal(
                qm_bar_write(e->dev, d.fn, d.base + QM_MAILBOX + o, (uint8_t *)&m + o, split), 0);
    }
    if (!tmb_wait_ready(e, d, &w0))
        return -1;
    if (data)
        *data = trd32(e, d, QM_MB_DATA_L) | (uint64_t)trd32(e, d, QM_MB_DATA_H) << 32;
    return (w0 >> QM_MB_STATUS_SHIFT) & QM_MB_STATUS_MASK;
}

int tmb(struct tenv *e, struct tdoor d, uint8_t cmd, uint16_t qn, uint64_t base, bool op,
        uint64_t *data)
{
    return tmb_split(e, d, cmd, qn, base, op, 0, data);
}

void tpause(struct tenv *e, unsigned vf)
{
    assert_int_equal(tmb(e, tdoor_window(vf), QM_MB_CMD_PAUSE_QM, 0, 0, false, NULL), 0);
    for (int i = 0; i < 100000; i++) {
        if (thost_rd32(e, tdoor_window(vf), QM_WIN_PAUSE_STATUS) == 3)
            return;
        tsleep_us(10);
    }
    fail_msg("PAUSE_STATUS never showed the jobs retired");
}

/* ---- the VF driver ------------------------------------------------------- */

void tvf_probe(struct tenv *e, struct tvf *v, unsigned fn)
{
    struct tdoor d = tdoor_vf(fn);
    uint64_t vft, ctx;
    struct qm_eqc eqc = {0};
    uint32_t val;

    memset(v, 0, sizeof(*v));
    v->env = e;
    v->fn = fn;
    v->door = d;
    /* qm_get_hw_caps / qm_get_qp_num */
    v->db_iso = trd32(e, d, QM_QUE_ISO_CFG) & QM_QUE_ISO_EN;
    assert_int_equal(v->db_iso, e->db[fn] != NULL);
    assert_int_equal(trd32(e, d, QM_CAP_VERSION) & 0xffu, 1);
    assert_int_equal(tmb(e, d, QM_MB_CMD_SQC_VFT_V2, 0, 0, true, &vft), 0);
    v->qp_base = (vft >> QM_VFT_BASE_SHIFT) & QM_VFT_BASE_MASK;
    v->qp_num = ((vft >> QM_VFT_NUM_SHIFT) & QM_VFT_NUM_MASK) + 1;
    assert_true(v->qp_num >= 2 && v->qp_num <= QM_MAX_QPS_PER_VF);
    /* qm_cmd_init */
    val = trd32(e, d, QM_IFC_INT_SOURCE_V);
    twr32(e, d, QM_IFC_INT_SOURCE_V, val | 1u);
    val = trd32(e, d, QM_IFC_INT_MASK);
    twr32(e, d, QM_IFC_INT_MASK, val & ~1u);
    /* hisi_qm_memory_init: eqe, aeqe, sqc, cqc in one block */
    v->eqe = tmem_alloc(e, fn, QM_EQ_DEPTH * 4, 4096);
    v->aeqe = tmem_alloc(e, fn, QM_AEQ_DEPTH * 4, 32);
    v->sqc_bt = tmem_alloc(e, fn, v->qp_num * 32, 32);
    v->cqc_bt = tmem_alloc(e, fn, v->qp_num * 32, 32);
    for (unsigned i = 0; i < v->qp_num; i++) {
        v->qp[i].sq = tmem_alloc(e, fn, QM_SQ_DEPTH * ZIP_SQE_SIZE, 4096);
        v->qp[i].cq = tmem_alloc(e, fn, QM_CQ_DEPTH * 16, 4096);
        v->qp[i].depth = QM_SQ_DEPTH;
    }
    /* hisi_qm_start: EQC, AEQC, SQC_BT, CQC_BT, prefetch, interrupts on */
    ctx = tmem_alloc(e, fn, 64, 32);
    eqc.base_l = (uint32_t)v->eqe;
    eqc.base_h = (uint32_t)(v->eqe >> 32);
    eqc.dw6 = QM_EQC_DW6(QM_EQ_DEPTH, 1);
    memcpy(tmem_ptr(e, fn, ctx), &eqc, sizeof(eqc));
    assert_int_equal(tmb(e, d, QM_MB_CMD_EQC, 0, ctx, false, NULL), 0);
    eqc.base_l = (uint32_t)v->aeqe;
    eqc.base_h = (uint32_t)(v->aeqe >> 32);
    eqc.dw6 = QM_EQC_DW6(QM_AEQ_DEPTH, 1);
    memcpy(tmem_ptr(e, fn, ctx), &eqc, sizeof(eqc));
    assert_int_equal(tmb(e, d, QM_MB_CMD_AEQC, 0, ctx, false, NULL), 0);
    v->eq_phase = true;
    v->aeq_phase = true;
    v->eq_depth = QM_EQ_DEPTH;
    assert_int_equal(tmb(e, d, QM_MB_CMD_SQC_BT, 0, v->sqc_bt, false, NULL), 0);
    assert_int_equal(tmb(e, d, QM_MB_CMD_CQC_BT, 0, v->cqc_bt, false, NULL), 0);
    twr32(e, d, QM_PAGE_SIZE, 0);
    twr64(e, d, QM_DB_EQAEQ, qm_db_value(0, QM_DB_CMD_AEQ, 0, 0));
    twr64(e, d, QM_DB_EQAEQ, qm_db_value(0, QM_DB_CMD_EQ, 0, 0));
    twr32(e, d, QM_EQ_INT_MASK, 0);
    twr32(e, d, QM_AEQ_INT_MASK, 0);
    twr32(e, d, QM_VF_STATE, QM_VF_STATE_READY);
}

void tvf_start_qp(struct tvf *v, unsigned qn, unsigned alg_type)
{
    tvf_start_qp_ex(v, qn, alg_type, QM_CQ_DEPTH, true);
}

void tvf_start_qp_ex(struct tvf *v, unsigned qn, unsigned alg_type, unsigned cq_depth,
                     bool cq_events)
{
    struct tenv *e = v->env;
    struct tqp *q = &v->qp[qn];
    uint64_t ctx = tmem_alloc(e, v->fn, 64, 32);
    struct qm_sqc sqc = {0};
    struct qm_cqc cqc = {0};

    sqc.base_l = (uint32_t)q->sq;
    sqc.base_h = (uint32_t)(q->sq >> 32);
    sqc.dw3 = QM_SQC_DW3(QM_SQ_DEPTH);
    sqc.cq_num = (uint16_t)qn;
    sqc.w13 = QM_SQC_W13(alg_type);
    memcpy(tmem_ptr(e, v->fn, ctx), &sqc, sizeof(sqc));
    assert_int_equal(tmb(e, v->door, QM_MB_CMD_SQC, (uint16_t)qn, ctx, false, NULL), 0);
    cqc.base_l = (uint32_t)q->cq;
    cqc.base_h = (uint32_t)(q->cq >> 32);
    cqc.dw3 = QM_CQC_DW3(cq_depth);
    cqc.dw6 = QM_CQC_DW6_PHASE | (cq_events ? QM_CQC_DW6_EQ_EN : 0);
    memcpy(tmem_ptr(e, v->fn, ctx), &cqc, sizeof(cqc));
    assert_int_equal(tmb(e, v->door, QM_MB_CMD_CQC, (uint16_t)qn, ctx, false, NULL), 0);
    if (q->cq >= e->mem[v->fn].iova && q->cq < e->mem[v->fn].iova + e->mem[v->fn].size)
        memset(tmem_ptr(e, v->fn, q->cq), 0, (size_t)cq_depth * 16);
    q->sq_tail = 0;
    q->cq_head = 0;
    q->cq_phase = true;
    q->cq_depth = (uint16_t)cq_depth;
}

void tvf_load_eq(struct tvf *v, unsigned depth)
{
    struct qm_eqc eqc = {0};
    uint64_t ctx = tmem_alloc(v->env, v->fn, 32, 32);

    memset(tmem_ptr(v->env, v->fn, v->eqe), 0, QM_EQ_DEPTH * 4);
    eqc.base_l = (uint32_t)v->eqe;
    eqc.base_h = (uint32_t)(v->eqe >> 32);
    eqc.dw6 = QM_EQC_DW6(depth, 1);
    memcpy(tmem_ptr(v->env, v->fn, ctx), &eqc, sizeof(eqc));
    assert_int_equal(tmb(v->env, v->door, QM_MB_CMD_EQC, 0, ctx, false, NULL), 0);
    v->eq_head = 0;
    v->eq_phase = true;
    v->eq_depth = (uint16_t)depth;
}

void tvf_ring(struct tvf *v, unsigned qn, uint64_t db)
{
    if (!v->db_iso) {
        twr64(v->env, v->door, QM_DB_SQCQ, db);
        return;
    }
    assert_true((uint64_t)(qn + 1) * QM_DB_PAGE_SIZE <= v->env->db_size[v->fn]);
    _Atomic uint64_t *w =
        (_Atomic uint64_t *)(v->env->db[v->fn] + (uint64_t)qn * QM_DB_PAGE_SIZE + QM_DB_SQCQ);
    uint64_t end = am_now_ns() + 5000000000ull;

    while (atomic_load_explicit(w, memory_order_acquire) != QM_DB_IDLE) {
        assert_true(am_now_ns() < end); /* the device never took the last one */
        tsleep_us(10);
    }
    atomic_store_explicit(w, db, memory_order_release);
    /* A read flushes the posted doorbell, as a driver does: the device takes
     * it before the read completes (tests of the poller store on their own). */
    (void)trd32(v->env, v->door, QM_VF_STATE);
}

uint16_t tvf_submit(struct tvf *v, unsigned qn, const uint32_t sqe[ZIP_SQE_DWORDS])
{
    struct tqp *q = &v->qp[qn];
    uint16_t slot = q->sq_tail;

    memcpy(tmem_ptr(v->env, v->fn, q->sq + (uint64_t)slot * ZIP_SQE_SIZE), sqe, ZIP_SQE_SIZE);
    q->sq_tail = (uint16_t)((slot + 1) % q->depth);
    tvf_ring(v, qn, qm_db_value((uint16_t)qn, QM_DB_CMD_SQ, q->sq_tail, 0));
    return slot;
}

void tvf_sqe(struct tvf *v, unsigned qn, uint16_t slot, uint32_t sqe[ZIP_SQE_DWORDS])
{
    memcpy(sqe, tmem_ptr(v->env, v->fn, v->qp[qn].sq + (uint64_t)slot * ZIP_SQE_SIZE),
           ZIP_SQE_SIZE);
}

bool tvf_cqe_take(struct tvf *v, unsigned qn, uint16_t *slot)
{
    struct tqp *q = &v->qp[qn];
    struct qm_cqe *cqe = tmem_ptr(v->env, v->fn, q->cq + (uint64_t)q->cq_head * 16);
    /* The phase bit first, then the rest (the device writes it last). */
    uint16_t *w7p = (uint16_t *)((uint8_t *)cqe + offsetof(struct qm_cqe, w7));
    uint16_t w7 = __atomic_load_n(w7p, __ATOMIC_ACQUIRE);

    if ((w7 & 1u) != q->cq_phase)
        return false;
    *slot = cqe->sq_head;
    v->last_sq_num = cqe->sq_num;
    q->cq_head = (uint16_t)((q->cq_head + 1) % q->cq_depth);
    if (q->cq_head == 0)
        q->cq_phase = !q->cq_phase;
    tvf_ring(v, qn, qm_db_value((uint16_t)qn, QM_DB_CMD_CQ, q->cq_head, 0));
    return true;
}

bool tvf_cqe_wait(struct tvf *v, unsigned qn, uint16_t *slot, int timeout_ms)
{
    uint64_t end = am_now_ns() + (uint64_t)timeout_ms * 1000000u;

    while (!tvf_cqe_take(v, qn, slot)) {
        if (am_now_ns() > end)
            return false;
        tsleep_us(50);
    }
    return true;
}

void tvf_cq_rearm(struct tvf *v, unsigned qn)
{
    tvf_ring(v, qn, qm_db_value((uint16_t)qn, QM_DB_CMD_CQ, v->qp[qn].cq_head, 1));
}

unsigned tvf_eq_drain(struct tvf *v, uint16_t *cqns, unsigned max)
{
    unsigned n = 0;

    for (;;) {
        uint32_t *eqe = tmem_ptr(v->env, v->fn, v->eqe + (uint64_t)v->eq_head * 4);
        uint32_t dw0 = __atomic_load_n(eqe, __ATOMIC_ACQUIRE);

        if (((dw0 >> 16) & 1u) != v->eq_phase)
            break;
        if (n < max && cqns)
            cqns[n] = (uint16_t)dw0;
        n++;
        v->eq_head = (uint16_t)((v->eq_head + 1) % v->eq_depth);
        if (v->eq_head == 0)
            v->eq_phase = !v->eq_phase;
    }
    twr64(v->env, v->door, QM_DB_EQAEQ, qm_db_value(0, QM_DB_CMD_EQ, v->eq_head, 0));
    return n;
}

unsigned tvf_aeq_drain(struct tvf *v, uint32_t *dw0s, unsigned max)
{
    unsigned n = 0;

    for (;;) {
        uint32_t *aeqe = tmem_ptr(v->env, v->fn, v->aeqe + (uint64_t)v->aeq_head * 4);
        uint32_t dw0 = __atomic_load_n(aeqe, __ATOMIC_ACQUIRE);

        if (((dw0 >> 16) & 1u) != v->aeq_phase)
            break;
        if (n < max && dw0s)
            dw0s[n] = dw0;
        n++;
        v->aeq_head = (uint16_t)((v->aeq_head + 1) % QM_AEQ_DEPTH);
        if (v->aeq_head == 0)
            v->aeq_phase = !v->aeq_phase;
    }
    twr64(v->env, v->door, QM_DB_EQAEQ, qm_db_value(0, QM_DB_CMD_AEQ, v->aeq_head, 0));
    return n;
}

/* ---- jobs --------------------------------------------------------------- */

void tsqe_flat(uint32_t sqe[ZIP_SQE_DWORDS], unsigned req_type, uint64_t src, uint32_t in_len,
               uint64_t dst, uint32_t out_avail, uint64_t tag)
{
    memset(sqe, 0, ZIP_SQE_SIZE);
    sqe[ZIP_SQE_INPUT_LEN] = in_len;
    sqe[ZIP_SQE_DW7] = ZIP_SQE_TYPE_V3 << ZIP_DW7_SQE_TYPE_SHIFT;
    sqe[ZIP_SQE_DW9] = req_type | ZIP_BUF_FLAT << ZIP_DW9_BUF_TYPE_SHIFT;
    sqe[ZIP_SQE_DEST_AVAIL] = out_avail;
    sqe[ZIP_SQE_SRC_ADDR_L] = (uint32_t)src;
    sqe[ZIP_SQE_SRC_ADDR_H] = (uint32_t)(src >> 32);
    sqe[ZIP_SQE_DST_ADDR_L] = (uint32_t)dst;
    sqe[ZIP_SQE_DST_ADDR_H] = (uint32_t)(dst >> 32);
    sqe[ZIP_SQE_TAG_L] = (uint32_t)tag;
    sqe[ZIP_SQE_TAG_H] = (uint32_t)(tag >> 32);
}

void tfill_noise(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed | 1;

    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)(x >> 24) & 0x7fu;
    }
}

void tfill(uint8_t *p, size_t n, unsigned seed)
{
    static const char words[][8] = {"alpha ", "beta ", "gamma ", "delta ", "qm ", "zip ", "\n"};
    uint32_t x = seed * 2654435761u + 1;
    size_t i = 0;

    while (i < n) {
        x = x * 1103515245u + 12345u;
        const char *w = words[(x >> 16) % AM_ARRAY_SIZE(words)];

        for (size_t k = 0; w[k] && i < n; k++)
            p[i++] = (uint8_t)w[k];
    }
}

long tinflate_raw(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap)
{
    z_stream s;
    int r;

    memset(&s, 0, sizeof(s));
    if (inflateInit2(&s, -15) != Z_OK)
        return -1;
    s.next_in = (Bytef *)in;
    s.avail_in = (uInt)in_len;
    s.next_out = out;
    s.avail_out = (uInt)out_cap;
    r = inflate(&s, Z_FINISH);
    inflateEnd(&s);
    return r == Z_STREAM_END ? (long)s.total_out : -1;
}

struct qm_fn_counters tcounters(struct tenv *e, unsigned fn)
{
    struct qm_fn_counters c;

    assert_int_equal(qm_debug_fn_counters(e->dev, fn, &c), 0);
    return c;
}

struct qm_queue_debug tqueue(struct tenv *e, unsigned fn, unsigned qn)
{
    struct qm_queue_debug q;

    assert_int_equal(qm_debug_queue(e->dev, fn, qn, &q), 0);
    return q;
}

bool tvf_wait_idle(struct tvf *v, unsigned qn, int timeout_ms)
{
    uint64_t end = am_now_ns() + (uint64_t)timeout_ms * 1000000u;

    for (;;) {
        struct qm_queue_debug q = tqueue(v->env, v->fn, qn);

        if (!q.busy && q.sq_head == q.sq_tail)
            return true;
        if (am_now_ns() > end)
            return false;
        tsleep_us(100);
    }
}

bool twait_jobs_done(struct tenv *e, unsigned fn, uint64_t n, int timeout_ms)
{
    uint64_t end = am_now_ns() + (uint64_t)timeout_ms * 1000000u;

    while (tcounters(e, fn).jobs_done < n) {
        if (am_now_ns() > end)
            return false;
        tsleep_us(100);
    }
    return true;
}

struct tjob tjob_new(struct tenv *e, unsigned fn, uint32_t len, unsigned seed)
{
    struct tjob j = {.len = len, .cap = len + len / 8 + 1024};

    j.src = tmem_alloc(e, fn, len, 64);
    j.dst = tmem_alloc(e, fn, j.cap, 64);
    tfill(tmem_ptr(e, fn, j.src), len, seed);
    return j;
}

void tjob_sqe(const struct tjob *j, uint32_t sqe[ZIP_SQE_DWORDS], uint64_t tag)
{
    tsqe_flat(sqe, ZIP_REQ_DEFLATE, j->src, j->len, j->dst, j->cap, tag);
}

/* The output of a finished compression job inflates back to its input. */
void tjob_check(struct tvf *v, const struct tjob *j, const uint32_t sqe[ZIP_SQE_DWORDS])
{
    uint8_t *out = malloc(j->len + 1);
    long n;

    assert_non_null(out);
    assert_int_equal(sqe[ZIP_SQE_DW3] & ZIP_DW3_STATUS_MASK, ZIP_ST_OK);
    assert_int_equal(sqe[ZIP_SQE_CONSUMED], j->len);
    n = tinflate_raw(tmem_ptr(v->env, v->fn, j->dst), sqe[ZIP_SQE_PRODUCED], out, j->len + 1);
    assert_int_equal(n, j->len);
    assert_memory_equal(out, tmem_ptr(v->env, v->fn, j->src), j->len);
    free(out);
}
