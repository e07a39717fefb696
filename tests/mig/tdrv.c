/* tdrv: the migration tests' guest-side driver (see tdrv.h). */
#include "tdrv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <zlib.h>

#include "common/common.h"
#include "zip/zip_hw.h"

#define TDRV_EQ_DEPTH 2048u
#define TDRV_AEQ_DEPTH 1024u
#define TDRV_SQE_BYTES 128u
#define TDRV_CQE_BYTES 16u
#define TDRV_CQ_OFFSET 0x20000ull /* CQ ring after the 128 KiB SQ ring */
#define TDRV_MB_BUSY (1u << QM_MB_BUSY_SHIFT)

static uint64_t sq_gpa(unsigned q) { return TDRV_GPA_RINGS + q * TDRV_RING_STRIDE; }
static uint64_t cq_gpa(unsigned q) { return sq_gpa(q) + TDRV_CQ_OFFSET; }

static uint64_t out_gpa(const struct tdrv *d, unsigned q, unsigned b)
{
    return TDRV_GPA_RINGS + (uint64_t)d->cfg.nqps * TDRV_RING_STRIDE +
           ((uint64_t)q * d->cfg.pool + b) * d->cfg.out_len;
}

uint64_t tdrv_ram_size(const struct tdrv_cfg *cfg)
{
    uint64_t n = TDRV_GPA_RINGS + (uint64_t)cfg->nqps * TDRV_RING_STRIDE +
                 (uint64_t)cfg->nqps * cfg->pool * cfg->out_len;

    return AM_ALIGN_UP(n, 4096u);
}

static void fail(struct tdrv *d, const char *what, uint32_t tag)
{
    if (d->errors++ == 0)
        snprintf(d->first_error, sizeof(d->first_error), "%s (tag %u)", what, tag);
}

uint32_t tdrv_reg_read(struct tdrv *d, uint32_t off)
{
    uint32_t v = 0xffffffffu;

    if (qm_bar_read32(d->dev, d->fn, off, &v) != 0)
        fail(d, "register read refused", off);
    return v;
}

void tdrv_reg_write(struct tdrv *d, uint32_t off, uint32_t v)
{
    if (qm_bar_write32(d->dev, d->fn, off, v) != 0)
        fail(d, "register write refused", off);
}

static void doorbell(struct tdrv *d, uint32_t reg, uint16_t qn, unsigned cmd, uint16_t index,
                     uint16_t prio)
{
    if (qm_bar_write64(d->dev, d->fn, reg, qm_db_value(qn, cmd, index, prio)) != 0)
        fail(d, "doorbell refused", qn);
}

void tdrv_doorbell(struct tdrv *d, uint16_t qn, unsigned cmd, uint16_t index, uint16_t prio)
{
    doorbell(d, cmd >= QM_DB_CMD_EQ ? QM_DB_EQAEQ : QM_DB_SQCQ, qn, cmd, index, prio);
}

static void sleep_us(unsigned us)
{
    struct timespec ts = {0, (long)us * 1000};

    nanosleep(&ts, NULL);
}

/* The driver's mailbox: poll busy every 10 us for 1 ms, before and after. */
static int mailbox(struct tdrv *d, unsigned cmd, uint16_t queue, uint64_t base, int op,
                   uint64_t *data);

int tdrv_mailbox(struct tdrv *d, unsigned cmd, uint16_t queue, uint64_t base, int op,
                 uint64_t *data)
{
    return mailbox(d, cmd, queue, base, op, data);
}

int tdrv_mailbox_post(struct tdrv *d, unsigned cmd, uint16_t queue)
{
    struct qm_mailbox m = {.w0 = (uint16_t)(cmd | TDRV_MB_BUSY), .queue_num = queue};

    if (tdrv_reg_read(d, QM_MAILBOX) & TDRV_MB_BUSY)
        return -EBUSY;
    return qm_bar_write(d->dev, d->fn, QM_MAILBOX, &m, sizeof(m)) == 0 ? 0 : -EIO;
}

static int mailbox(struct tdrv *d, unsigned cmd, uint16_t queue, uint64_t base, int op,
                   uint64_t *data)
{
    struct qm_mailbox m = {
        .w0 = (uint16_t)(cmd | TDRV_MB_BUSY | (op ? 1u << QM_MB_OP_SHIFT : 0u)),
        .queue_num = queue,
        .base_l = (uint32_t)base,
        .base_h = (uint32_t)(base >> 32),
    };
    uint32_t w = 0;
    int i;

    for (i = 0; i < 101 && ((w = tdrv_reg_read(d, QM_MAILBOX)) & TDRV_MB_BUSY); i++)
        sleep_us(10);
    if (w & TDRV_MB_BUSY)
        return -ETIMEDOUT;
    if (qm_bar_write(d->dev, d->fn, QM_MAILBOX, &m, sizeof(m)) != 0)
        return -EIO;
    for (i = 0; i < 101 && ((w = tdrv_reg_read(d, QM_MAILBOX)) & TDRV_MB_BUSY); i++)
        sleep_us(10);
    if (w & TDRV_MB_BUSY)
        return -ETIMEDOUT;
    if ((w >> QM_MB_STATUS_SHIFT) & QM_MB_STATUS_MASK)
        return -EIO;
    if (data != NULL)
        *data = (uint64_t)tdrv_reg_read(d, QM_MB_DATA_H) << 32 | tdrv_reg_read(d, QM_MB_DATA_L);
    return 0;
}

static void fill_input(uint8_t *p, size_t n)
{
    static const char *const words[] = {"queue ", "manager ", "deflate ", "migration ",
                                        "doorbell ", "context ", "vector ", "window "};
    uint32_t x = 12345;
    size_t i = 0;

    while (i < n) {
        const char *w;

        x = x * 1103515245u + 12345u;
        w = words[(x >> 16) % 8];
        for (size_t k = 0; w[k] != '\0' && i < n; k++)
            p[i++] = (uint8_t)w[k];
    }
}

void tdrv_bind(struct tdrv *d, struct qm_dev *dev, unsigned fn, uint8_t *ram, uint64_t ram_size,
               const struct tdrv_cfg *cfg)
{
    memset(d, 0, sizeof(*d));
    d->dev = dev;
    d->fn = fn;
    d->ram = ram;
    d->ram_size = ram_size;
    d->cfg = *cfg;
    d->eq_phase = true;
    d->aeq_phase = true;
    fill_input(ram + TDRV_GPA_INPUT, TDRV_INPUT_MAX);
}

int tdrv_map(struct qm_dev *dev, unsigned fn, uint8_t *ram, uint64_t size)
{
    return iommu_map_host(qm_dev_iommu(dev, fn), 0, size, ram, IOMMU_READ | IOMMU_WRITE);
}

void tdrv_switch(struct tdrv *d, struct qm_dev *dev, uint8_t *ram)
{
    d->dev = dev;
    d->ram = ram;
}

int tdrv_init(struct tdrv *d)
{
    struct qm_eqc eqc = {0};
    uint64_t vft;
    int rc;

    rc = mailbox(d, QM_MB_CMD_SQC_VFT_V2, 0, 0, 1, &vft);
    if (rc != 0)
        return rc;
    d->qp_num = (unsigned)((vft >> QM_VFT_NUM_SHIFT) & QM_VFT_NUM_MASK) + 1u;
    tdrv_reg_write(d, QM_IFC_INT_SOURCE_V, 1);
    tdrv_reg_write(d, QM_IFC_INT_MASK, 0);
    eqc.base_l = (uint32_t)TDRV_GPA_EQ;
    eqc.dw3 = 2u << 12;
    eqc.dw6 = QM_EQC_DW6(TDRV_EQ_DEPTH, 1);
    memcpy(d->ram + TDRV_GPA_SCRATCH, &eqc, sizeof(eqc));
    rc = mailbox(d, QM_MB_CMD_EQC, 0, TDRV_GPA_SCRATCH, 0, NULL);
    if (rc != 0)
        return rc;
    eqc.base_l = (uint32_t)TDRV_GPA_AEQ;
    eqc.dw6 = QM_EQC_DW6(TDRV_AEQ_DEPTH, 1);
    memcpy(d->ram + TDRV_GPA_SCRATCH, &eqc, sizeof(eqc));
    rc = mailbox(d, QM_MB_CMD_AEQC, 0, TDRV_GPA_SCRATCH, 0, NULL);
    if (rc == 0 && d->cfg.sqc_table != TDRV_NO_TABLE)
        rc = mailbox(d, QM_MB_CMD_SQC_BT, 0,
                     d->cfg.sqc_table ? d->cfg.sqc_table : TDRV_GPA_SQC_TABLE, 0, NULL);
    if (rc == 0 && d->cfg.cqc_table != TDRV_NO_TABLE)
        rc = mailbox(d, QM_MB_CMD_CQC_BT, 0,
                     d->cfg.cqc_table ? d->cfg.cqc_table : TDRV_GPA_CQC_TABLE, 0, NULL);
    if (rc != 0)
        return rc;
    tdrv_reg_write(d, QM_PAGE_SIZE, 0);
    doorbell(d, QM_DB_EQAEQ, 0, QM_DB_CMD_AEQ, 0, 0);
    doorbell(d, QM_DB_EQAEQ, 0, QM_DB_CMD_EQ, 0, 0);
    tdrv_reg_write(d, QM_EQ_INT_MASK, 0);
    tdrv_reg_write(d, QM_AEQ_INT_MASK, 0);
    tdrv_reg_write(d, QM_VF_STATE, QM_VF_STATE_READY);
    return d->errors ? -EIO : 0;
}

int tdrv_qp_start(struct tdrv *d, unsigned q, unsigned cq)
{
    struct tdrv_queue *s = &d->q[q];
    struct qm_sqc sqc = {0};
    struct qm_cqc cqc = {0};
    int rc;

    if (q >= d->cfg.nqps || cq >= d->cfg.nqps)
        return -EINVAL;
    sqc.base_l = (uint32_t)sq_gpa(q);
    sqc.dw3 = QM_SQC_DW3(TDRV_DEPTH);
    sqc.w13 = QM_SQC_W13(ZIP_ALG_COMPRESS);
    sqc.cq_num = (uint16_t)cq;
    memcpy(d->ram + TDRV_GPA_SCRATCH, &sqc, sizeof(sqc));
    rc = mailbox(d, QM_MB_CMD_SQC, (uint16_t)q, TDRV_GPA_SCRATCH, 0, NULL);
    if (rc != 0)
        return rc;
    cqc.base_l = (uint32_t)cq_gpa(q);
    cqc.dw3 = QM_CQC_DW3(TDRV_DEPTH);
    cqc.dw6 = QM_CQC_DW6_PHASE | QM_CQC_DW6_EQ_EN;
    memcpy(d->ram + TDRV_GPA_SCRATCH, &cqc, sizeof(cqc));
    rc = mailbox(d, QM_MB_CMD_CQC, (uint16_t)q, TDRV_GPA_SCRATCH, 0, NULL);
    if (rc != 0)
        return rc;
    memset(d->ram + cq_gpa(q), 0, TDRV_DEPTH * TDRV_CQE_BYTES);
    s->started = true;
    s->stopped = false;
    s->sq_tail = 0;
    s->cq_head = 0;
    s->cq_phase = true;
    s->inflight = 0;
    s->cq = (uint16_t)cq;
    memset(s->buf_busy, 0, sizeof(s->buf_busy));
    return 0;
}

static int submit(struct tdrv *d, unsigned q, bool ring);

int tdrv_submit(struct tdrv *d, unsigned q)
{
    return submit(d, q, true);
}

int tdrv_submit_nodb(struct tdrv *d, unsigned q)
{
    return submit(d, q, false);
}

static int submit(struct tdrv *d, unsigned q, bool ring)
{
    struct tdrv_queue *s = &d->q[q];
    uint32_t sqe[ZIP_SQE_DWORDS] = {0};
    uint32_t tag = d->next_tag;
    unsigned b, slot;
    uint64_t src, dst;

    if (q >= d->cfg.nqps || !s->started || s->stopped)
        return -EINVAL;
    if (s->inflight >= TDRV_DEPTH - 1 || tag >= TDRV_MAX_TAGS)
        return -EBUSY;
    for (b = 0; b < d->cfg.pool && s->buf_busy[b]; b++)
        ;
    if (b == d->cfg.pool)
        return -EBUSY;
    slot = s->sq_tail;
    src = TDRV_GPA_INPUT + tag % 64u;
    dst = out_gpa(d, q, b);
    sqe[ZIP_SQE_INPUT_LEN] = d->cfg.in_len;
    sqe[ZIP_SQE_DW7] = ZIP_SQE_TYPE_V3 << ZIP_DW7_SQE_TYPE_SHIFT;
    sqe[ZIP_SQE_DW9] = ZIP_REQ_DEFLATE | ZIP_BUF_FLAT << ZIP_DW9_BUF_TYPE_SHIFT |
                       ZIP_WIN_MAX << ZIP_DW9_WIN_SHIFT;
    sqe[ZIP_SQE_DEST_AVAIL] = d->cfg.out_len;
    sqe[ZIP_SQE_SRC_ADDR_L] = (uint32_t)src;
    sqe[ZIP_SQE_SRC_ADDR_H] = (uint32_t)(src >> 32);
    sqe[ZIP_SQE_DST_ADDR_L] = (uint32_t)dst;
    sqe[ZIP_SQE_DST_ADDR_H] = (uint32_t)(dst >> 32);
    sqe[ZIP_SQE_TAG_L] = tag;
    memcpy(d->ram + sq_gpa(q) + (uint64_t)slot * TDRV_SQE_BYTES, sqe, sizeof(sqe));
    s->slot_tag[slot] = tag;
    s->slot_buf[slot] = (uint16_t)b;
    s->buf_busy[b] = 1;
    s->inflight++;
    s->sq_tail = (uint16_t)((slot + 1) % TDRV_DEPTH);
    d->next_tag++;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    if (ring)
        doorbell(d, QM_DB_SQCQ, (uint16_t)q, QM_DB_CMD_SQ, s->sq_tail, 0);
    return (int)tag;
}

int tdrv_submit_many(struct tdrv *d, unsigned nq, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        int rc = tdrv_submit(d, i % nq);

        if (rc < 0)
            return rc;
    }
    return 0;
}

static void check_result(struct tdrv *d, unsigned q, unsigned slot)
{
    struct tdrv_queue *s = &d->q[q];
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint32_t tag = s->slot_tag[slot], produced;
    uint8_t plain[TDRV_INPUT_MAX];
    z_stream z;
    int zr;

    memcpy(sqe, d->ram + sq_gpa(q) + (uint64_t)slot * TDRV_SQE_BYTES, sizeof(sqe));
    if (sqe[ZIP_SQE_TAG_L] != tag) {
        fail(d, "CQE names an SQE slot holding another tag", tag);
        return;
    }
    if (tag >= TDRV_MAX_TAGS || d->done[tag]++ != 0) {
        fail(d, "a job completed twice", tag);
        return;
    }
    if ((sqe[ZIP_SQE_DW3] & ZIP_DW3_STATUS_MASK) != 0) {
        fail(d, "a job ended with a status other than OK", tag);
        return;
    }
    produced = sqe[ZIP_SQE_PRODUCED];
    memset(&z, 0, sizeof(z));
    if (produced > d->cfg.out_len || inflateInit2(&z, -15) != Z_OK) {
        fail(d, "a job produced more than its buffer", tag);
        return;
    }
    z.next_in = d->ram + out_gpa(d, q, s->slot_buf[slot]);
    z.avail_in = produced;
    z.next_out = plain;
    z.avail_out = sizeof(plain);
    zr = inflate(&z, Z_FINISH);
    if (zr != Z_STREAM_END || z.total_out != d->cfg.in_len ||
        memcmp(plain, d->ram + TDRV_GPA_INPUT + tag % 64u, d->cfg.in_len) != 0)
        fail(d, "a job's output does not inflate to its input", tag);
    inflateEnd(&z);
}

static const uint8_t *cqe_at(const struct tdrv *d, unsigned cq, unsigned idx)
{
    return d->ram + cq_gpa(cq) + (uint64_t)idx * TDRV_CQE_BYTES;
}

static bool cqe_phase(const uint8_t *cqe)
{
    uint16_t w7 = __atomic_load_n((const uint16_t *)(cqe + 14), __ATOMIC_ACQUIRE);

    return w7 & 1u;
}

/* Reaps every CQE of CQ c. */
static int drain_cq(struct tdrv *d, unsigned c)
{
    struct tdrv_queue *cqs = &d->q[c];
    int n = 0;

    while (cqe_phase(cqe_at(d, c, cqs->cq_head)) == cqs->cq_phase) {
        const uint8_t *cqe = cqe_at(d, c, cqs->cq_head);
        unsigned sq = am_le16(cqe + 10), slot = am_le16(cqe + 8);

        if (sq >= d->cfg.nqps || slot >= TDRV_DEPTH || d->q[sq].inflight == 0) {
            fail(d, "a CQE names no job in flight", slot);
        } else {
            check_result(d, sq, slot);
            d->q[sq].buf_busy[d->q[sq].slot_buf[slot]] = 0;
            d->q[sq].inflight--;
        }
        d->completions++;
        n++;
        cqs->cq_head = (uint16_t)((cqs->cq_head + 1) % TDRV_DEPTH);
        if (cqs->cq_head == 0)
            cqs->cq_phase = !cqs->cq_phase;
        doorbell(d, QM_DB_SQCQ, (uint16_t)c, QM_DB_CMD_CQ, cqs->cq_head, 0);
    }
    if (n > 0)
        doorbell(d, QM_DB_SQCQ, (uint16_t)c, QM_DB_CMD_CQ, cqs->cq_head, 1);
    return n;
}

static void drain_xeq(struct tdrv *d, bool aeq)
{
    uint64_t ring = aeq ? TDRV_GPA_AEQ : TDRV_GPA_EQ;
    unsigned depth = aeq ? TDRV_AEQ_DEPTH : TDRV_EQ_DEPTH;
    uint16_t *head = aeq ? &d->aeq_head : &d->eq_head;
    bool *phase = aeq ? &d->aeq_phase : &d->eq_phase;
    unsigned n = 0;

    for (;;) {
        uint32_t dw0 = __atomic_load_n((const uint32_t *)(d->ram + ring + *head * 4u),
                                       __ATOMIC_ACQUIRE);

        if (((dw0 >> 16) & 1u) != *phase)
            break;
        if (aeq)
            d->aeqes++;
        else
            d->eqes++;
        n++;
        *head = (uint16_t)((*head + 1) % depth);
        if (*head == 0)
            *phase = !*phase;
    }
    if (n > 0)
        doorbell(d, QM_DB_EQAEQ, 0, aeq ? QM_DB_CMD_AEQ : QM_DB_CMD_EQ, *head, 0);
}

int tdrv_poll(struct tdrv *d)
{
    int n = 0;

    drain_xeq(d, false);
    for (unsigned c = 0; c < d->cfg.nqps; c++) {
        bool used = false;

        for (unsigned q = 0; q < d->cfg.nqps; q++)
            used |= d->q[q].started && d->q[q].cq == c;
        if (used)
            n += drain_cq(d, c);
    }
    drain_xeq(d, true);
    return n;
}

unsigned tdrv_inflight(const struct tdrv *d)
{
    unsigned n = 0;

    for (unsigned q = 0; q < d->cfg.nqps; q++)
        n += d->q[q].inflight;
    return n;
}

int tdrv_drain(struct tdrv *d)
{
    uint64_t deadline = am_now_ns() + 60ull * 1000000000ull;

    while (tdrv_inflight(d) > 0) {
        if (tdrv_poll(d) == 0) {
            if (am_now_ns() > deadline)
                return -ETIMEDOUT;
            sleep_us(100);
        }
    }
    return 0;
}

unsigned tdrv_cq_pending(const struct tdrv *d, unsigned c)
{
    const struct tdrv_queue *cqs = &d->q[c];
    unsigned n = 0, idx = cqs->cq_head;
    bool phase = cqs->cq_phase;

    while (n < TDRV_DEPTH && cqe_phase(cqe_at(d, c, idx)) == phase) {
        n++;
        idx = (idx + 1) % TDRV_DEPTH;
        if (idx == 0)
            phase = !phase;
    }
    return n;
}

int tdrv_qp_stop(struct tdrv *d, unsigned q)
{
    uint64_t deadline = am_now_ns() + 60ull * 1000000000ull;
    int rc = mailbox(d, QM_MB_CMD_STOP_QP, (uint16_t)q, 0, 0, NULL);

    /* A long drain keeps the mailbox busy past the driver's budget; a test
     * waits it out (reaping meanwhile) instead of failing on timing. */
    while (rc == -ETIMEDOUT && am_now_ns() < deadline) {
        tdrv_poll(d);
        if (!(tdrv_reg_read(d, QM_MAILBOX) & TDRV_MB_BUSY))
            rc = ((tdrv_reg_read(d, QM_MAILBOX) >> QM_MB_STATUS_SHIFT) & QM_MB_STATUS_MASK)
                     ? -EIO
                     : 0;
        else
            sleep_us(100);
    }
    if (rc == 0)
        rc = tdrv_drain(d);
    d->q[q].stopped = true;
    return rc;
}

int tdrv_qp_resume(struct tdrv *d, unsigned q)
{
    int rc;

    if (q >= d->cfg.nqps || !d->q[q].started)
        return -EINVAL;
    /* The device's own view of the stopped SQ, loaded again as it is: the
     * same ring, head and tail, without the stop. */
    rc = mailbox(d, QM_MB_CMD_SQC, (uint16_t)q, TDRV_GPA_SCRATCH, 1, NULL);
    if (rc == 0)
        rc = mailbox(d, QM_MB_CMD_SQC, (uint16_t)q, TDRV_GPA_SCRATCH, 0, NULL);
    if (rc != 0)
        return rc;
    d->q[q].stopped = false;
    doorbell(d, QM_DB_SQCQ, (uint16_t)q, QM_DB_CMD_SQ, d->q[q].sq_tail, 0);
    return d->errors ? -EIO : 0;
}

int tdrv_cq_restart(struct tdrv *d, unsigned c)
{
    struct tdrv_queue *s = &d->q[c];
    struct qm_cqc cqc = {0};
    int rc;

    if (c >= d->cfg.nqps)
        return -EINVAL;
    cqc.base_l = (uint32_t)cq_gpa(c);
    cqc.dw3 = QM_CQC_DW3(TDRV_DEPTH);
    cqc.dw6 = QM_CQC_DW6_PHASE | QM_CQC_DW6_EQ_EN;
    memset(d->ram + cq_gpa(c), 0, TDRV_DEPTH * TDRV_CQE_BYTES);
    memcpy(d->ram + TDRV_GPA_SCRATCH, &cqc, sizeof(cqc));
    rc = mailbox(d, QM_MB_CMD_CQC, (uint16_t)c, TDRV_GPA_SCRATCH, 0, NULL);
    if (rc != 0)
        return rc;
    s->cq_head = 0;
    s->cq_phase = true;
    return 0;
}

int tdrv_eq_reload(struct tdrv *d)
{
    struct qm_eqc eqc = {0};
    int rc;

    eqc.base_l = (uint32_t)TDRV_GPA_EQ;
    eqc.dw3 = 2u << 12;
    eqc.dw6 = QM_EQC_DW6(TDRV_EQ_DEPTH, 1);
    memset(d->ram + TDRV_GPA_EQ, 0, TDRV_EQ_DEPTH * 4u);
    memcpy(d->ram + TDRV_GPA_SCRATCH, &eqc, sizeof(eqc));
    rc = mailbox(d, QM_MB_CMD_EQC, 0, TDRV_GPA_SCRATCH, 0, NULL);
    if (rc != 0)
        return rc;
    d->eq_head = 0;
    d->eq_phase = true;
    return 0;
}

int tdrv_check_exactly_once(const struct tdrv *d)
{
    if (d->errors != 0) {
        fprintf(stderr, "tdrv: %llu error(s), first: %s\n", (unsigned long long)d->errors,
                d->first_error);
        return -EIO;
    }
    for (uint32_t t = 0; t < d->next_tag; t++)
        if (d->done[t] != 1) {
            fprintf(stderr, "tdrv: tag %u completed %u times\n", t, d->done[t]);
            return -EIO;
        }
    return 0;
}
