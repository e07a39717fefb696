/* The guest VF driver against the device model through the in-process
 * transport: probe sequence, queues, each format, phase wrap, SGL, STOP_QP
 * teardown, re-attach, AEQ handling and bad arguments. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <zlib.h>

#include "common/common.h"
#include "guest/guest.h"
#include "guest/workload.h"
#include "qm/qm_debug.h"
#include "vmm/inproc.h"
#include "vmm/vm_ram.h"

#define VF 1u
#define STATE_GPA 0x1000u
#define RAM_SIZE (16u << 20)
#define DATA_GPA (4u << 20) /* data buffers above the driver state */
#define MAX_CQ 4096u

/* A vf_io that records every write (and forwards to the real one). */
struct rec_entry {
    uint64_t off;
    unsigned size;
    uint8_t data[16];
    uint8_t ctx[32]; /* for mailbox loads: the context at base when issued */
};

struct fixture {
    struct vm_ram *ram;
    const struct guest_ram *g;
    struct vmm_inproc_host host;
    struct vf_io io;      /* recording wrapper */
    const struct vf_io *real;
    /* Protects rec and nrec (the transport may be called from any thread). */
    pthread_mutex_t rec_lock;
    struct rec_entry *rec;
    unsigned nrec, rec_cap;
    struct guest_vf *vf;
    /* completions seen by the callback */
    struct guest_vf_completion done[MAX_CQ];
    unsigned ndone;
    unsigned per_tag[MAX_CQ];
};

static int rec_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct fixture *f = opaque;
    return f->real->mmio_read(f->real->opaque, off, data, size);
}

static int rec_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct fixture *f = opaque;

    pthread_mutex_lock(&f->rec_lock);
    if (f->nrec < f->rec_cap) {
        struct rec_entry *e = &f->rec[f->nrec++];
        e->off = off;
        e->size = size;
        memcpy(e->data, data, size <= 16 ? size : 16);
        if (off == QM_MAILBOX && size == 16) {
            const struct qm_mailbox *mb = data;
            uint64_t base = (uint64_t)mb->base_h << 32 | mb->base_l;
            if (base && base + 32 <= f->g->size)
                memcpy(e->ctx, guest_ram_ptr(f->g, base), 32);
        }
    }
    pthread_mutex_unlock(&f->rec_lock);
    return f->real->mmio_write(f->real->opaque, off, data, size);
}

/* BAR4 doorbells (the device isolates them by default): recorded with
 * REC_BAR4 in the offset, forwarded. */
#define REC_BAR4 (1ull << 63)
static int rec_db_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct fixture *f = opaque;

    pthread_mutex_lock(&f->rec_lock);
    if (f->nrec < f->rec_cap) {
        struct rec_entry *e = &f->rec[f->nrec++];
        e->off = REC_BAR4 | off;
        e->size = size;
        memcpy(e->data, data, size <= 16 ? size : 16);
    }
    pthread_mutex_unlock(&f->rec_lock);
    return f->real->db_write(f->real->opaque, off, data, size);
}

static int rec_irq_wait(void *opaque, unsigned vector, int timeout_ms)
{
    struct fixture *f = opaque;
    return f->real->irq_wait(f->real->opaque, vector, timeout_ms);
}

static void on_complete(void *opaque, const struct guest_vf_completion *c)
{
    struct fixture *f = opaque;

    if (f->ndone < MAX_CQ)
        f->done[f->ndone] = *c;
    f->ndone++;
    if (c->tag < MAX_CQ)
        f->per_tag[c->tag]++;
}

static int setup_device_rev(void **state, uint8_t revision)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct qm_dev_config cfg;

    assert_non_null(f);
    assert_int_equal(vm_ram_create(RAM_SIZE, &f->ram), 0);
    f->g = vm_ram_guest(f->ram);
    qm_dev_config_default(&cfg);
    cfg.revision = revision;
    assert_int_equal(vmm_inproc_host_create(&cfg, VF, f->g, &f->host), 0);
    f->real = vmm_inproc_vf_io(f->host.vf);
    f->io = (struct vf_io){.mmio_read = rec_read,
                           .mmio_write = rec_write,
                           .irq_wait = rec_irq_wait,
                           .db_write = rec_db_write,
                           .db_pages_size = f->real->db_pages_size,
                           .opaque = f};
    pthread_mutex_init(&f->rec_lock, NULL);
    f->rec_cap = 4096;
    f->rec = calloc(f->rec_cap, sizeof(*f->rec));
    *state = f;
    return 0;
}

static int setup_device(void **state)
{
    return setup_device_rev(state, QM_REV_V4);
}

static int setup_rev(void **state, uint8_t revision)
{
    struct fixture *f;

    setup_device_rev(state, revision);
    f = *state;
    assert_int_equal(guest_vf_init(&f->io, f->g, STATE_GPA, guest_vf_state_size(4), &f->vf), 0);
    guest_vf_set_complete_cb(f->vf, on_complete, f);
    return 0;
}

static int setup(void **state)
{
    return setup_rev(state, QM_REV_V4);
}

static int setup_v3(void **state)
{
    return setup_rev(state, QM_REV_V3);
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    guest_vf_detach(f->vf);
    vmm_inproc_host_destroy(&f->host);
    vm_ram_destroy(f->ram);
    pthread_mutex_destroy(&f->rec_lock);
    free(f->rec);
    free(f);
    return 0;
}

static uint32_t bar32(struct fixture *f, uint64_t off)
{
    uint32_t v = 0xdeadbeef;
    assert_int_equal(f->real->mmio_read(f->real->opaque, off, &v, 4), 0);
    return v;
}

/* Index of the first recorded write at off from `from` on, or -1. */
static int rec_find(struct fixture *f, unsigned from, uint64_t off)
{
    for (unsigned i = from; i < f->nrec; i++)
        if (f->rec[i].off == off)
            return (int)i;
    return -1;
}

static int rec_find_mb(struct fixture *f, unsigned from, uint8_t cmd, int op)
{
    for (unsigned i = from; i < f->nrec; i++) {
        const struct qm_mailbox *mb = (const void *)f->rec[i].data;
        if (f->rec[i].off == QM_MAILBOX && f->rec[i].size == 16 && (mb->w0 & 0xff) == cmd &&
            !!(mb->w0 & (1u << QM_MB_OP_SHIFT)) == op)
            return (int)i;
    }
    return -1;
}

static int rec_find_db(struct fixture *f, unsigned from, uint64_t off, unsigned cmd, unsigned qn,
                       uint16_t index, uint16_t prio)
{
    uint64_t want = qm_db_value((uint16_t)qn, cmd, index, prio);
    for (unsigned i = from; i < f->nrec; i++) {
        uint64_t v;
        memcpy(&v, f->rec[i].data, 8);
        if (f->rec[i].off == off && f->rec[i].size == 8 && v == want)
            return (int)i;
    }
    return -1;
}

static uint32_t rec_u32(struct fixture *f, int i)
{
    uint32_t v;
    memcpy(&v, f->rec[i].data, 4);
    return v;
}

/* Run one job to completion through irq_wait + poll. */
static struct guest_vf_completion run_job(struct fixture *f, unsigned qp, const struct guest_zip_req *r)
{
    uint32_t sqe[ZIP_SQE_DWORDS];
    unsigned before = f->ndone;

    assert_int_equal(guest_zip_sqe_build(sqe, r), 0);
    assert_int_equal(guest_vf_submit(f->vf, qp, sqe), 0);
    for (int i = 0; i < 1000 && f->ndone == before; i++) {
        int irq = guest_vf_irq_wait(f->vf, 20) == 0;
        assert_true(guest_vf_poll(f->vf, irq) >= 0);
    }
    assert_int_equal(f->ndone, before + 1);
    return f->done[before];
}

static void fill_text(struct fixture *f, uint64_t gpa, size_t len, uint64_t seed)
{
    workload_data_fill(guest_ram_ptr(f->g, gpa), len, WORKLOAD_DATA_TEXT, seed);
}

static int zlib_inflate(const uint8_t *in, size_t in_len, uint8_t *out, size_t cap, int bits,
                        size_t *out_len)
{
    z_stream zs = {0};
    int ret;

    assert_int_equal(inflateInit2(&zs, bits), Z_OK);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)in_len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    ret = inflate(&zs, Z_FINISH);
    *out_len = zs.total_out;
    inflateEnd(&zs);
    return ret == Z_STREAM_END && zs.avail_in == 0 ? 0 : -1;
}

/* ---- probe ---- */

static void test_probe_follows_the_linux_vf_sequence(void **state)
{
    struct fixture *f = *state;
    int vft, ifc_src, ifc_mask, eqc, aeqc, sqc_bt, cqc_bt, page, aeq_db, eq_db, eq_mask, aeq_mask, vfs;
    struct qm_eqc ctx;

    vft = rec_find_mb(f, 0, QM_MB_CMD_SQC_VFT_V2, 1);
    ifc_src = rec_find(f, 0, QM_IFC_INT_SOURCE_V);
    ifc_mask = rec_find(f, 0, QM_IFC_INT_MASK);
    eqc = rec_find_mb(f, 0, QM_MB_CMD_EQC, 0);
    aeqc = rec_find_mb(f, 0, QM_MB_CMD_AEQC, 0);
    sqc_bt = rec_find_mb(f, 0, QM_MB_CMD_SQC_BT, 0);
    cqc_bt = rec_find_mb(f, 0, QM_MB_CMD_CQC_BT, 0);
    page = rec_find(f, 0, QM_PAGE_SIZE);
    aeq_db = rec_find_db(f, 0, QM_DB_EQAEQ, QM_DB_CMD_AEQ, 0, 0, 0);
    eq_db = rec_find_db(f, 0, QM_DB_EQAEQ, QM_DB_CMD_EQ, 0, 0, 0);
    eq_mask = rec_find(f, 0, QM_EQ_INT_MASK);
    aeq_mask = rec_find(f, 0, QM_AEQ_INT_MASK);
    vfs = rec_find(f, 0, QM_VF_STATE);

    assert_true(vft == 0); /* the first write of all */
    assert_true(vft < ifc_src && ifc_src < ifc_mask && ifc_mask < eqc && eqc < aeqc &&
                aeqc < sqc_bt && sqc_bt < cqc_bt && cqc_bt < page && page < aeq_db &&
                aeq_db < eq_db && eq_db < eq_mask && eq_mask < aeq_mask && aeq_mask < vfs);
    assert_int_equal(rec_u32(f, ifc_src) & 1u, 1);
    assert_int_equal(rec_u32(f, ifc_mask) & 1u, 0);
    memcpy(&ctx, f->rec[eqc].ctx, sizeof(ctx));
    assert_int_equal(ctx.dw6, (QM_EQ_DEPTH - 1) | 1u << 16);
    assert_true(ctx.base_l != 0);
    memcpy(&ctx, f->rec[aeqc].ctx, sizeof(ctx));
    assert_int_equal(ctx.dw6, (QM_AEQ_DEPTH - 1) | 1u << 16);
    assert_int_equal(rec_u32(f, page), 0);
    assert_int_equal(rec_u32(f, eq_mask), 0);
    assert_int_equal(rec_u32(f, aeq_mask), 0);
    assert_int_equal(rec_u32(f, vfs), QM_VF_STATE_READY);
    /* and the device agrees */
    assert_int_equal(bar32(f, QM_VF_STATE), QM_VF_STATE_READY);
    assert_int_equal(bar32(f, QM_EQ_INT_MASK), 0);
    assert_int_equal(bar32(f, QM_AEQ_INT_MASK), 0);
    assert_int_equal(guest_vf_qp_num(f->vf), QM_DEFAULT_QPS_PER_VF);
    assert_int_equal(guest_vf_qp_rings(f->vf), 4);
    assert_int_equal(guest_vf_qp_base(f->vf), QM_DEFAULT_QPS_PER_VF * VF);
    assert_int_equal(guest_vf_sq_depth(f->vf), QM_SQ_DEPTH);
}

static void test_queue_start_loads_sqc_and_cqc_as_the_zip_driver_does(void **state)
{
    struct fixture *f = *state;
    struct qm_sqc sqc, dumped;
    struct qm_cqc cqc;
    unsigned from = f->nrec;
    int s, c;

    assert_int_equal(guest_vf_qp_start(f->vf, 0, ZIP_ALG_COMPRESS), 0);
    assert_int_equal(guest_vf_qp_start(f->vf, 1, ZIP_ALG_DECOMPRESS), 0);
    s = rec_find_mb(f, from, QM_MB_CMD_SQC, 0);
    c = rec_find_mb(f, from, QM_MB_CMD_CQC, 0);
    assert_true(s >= 0 && c > s);
    memcpy(&sqc, f->rec[s].ctx, sizeof(sqc));
    memcpy(&cqc, f->rec[c].ctx, sizeof(cqc));
    assert_int_equal(((const struct qm_mailbox *)f->rec[s].data)->queue_num, 0);
    assert_int_equal(sqc.dw3, 0x73ff);
    assert_int_equal(sqc.cq_num, 0);
    assert_int_equal(sqc.w13, 0x0010);
    assert_int_equal(sqc.head, 0);
    assert_int_equal(sqc.tail, 0);
    assert_int_equal(cqc.dw3, 0x43ff);
    assert_int_equal(cqc.dw6, 3);
    s = rec_find_mb(f, (unsigned)c + 1, QM_MB_CMD_SQC, 0);
    memcpy(&sqc, f->rec[s].ctx, sizeof(sqc));
    assert_int_equal(sqc.w13, 0x0110);
    assert_int_equal(sqc.cq_num, 1);
    assert_int_equal(guest_vf_qp_state(f->vf, 0), GUEST_QP_STARTED);
    assert_int_equal(guest_vf_qp_start(f->vf, 0, ZIP_ALG_COMPRESS), -EBUSY);
    assert_int_equal(guest_vf_qp_start(f->vf, 4, ZIP_ALG_COMPRESS), -EINVAL);
    assert_int_equal(guest_vf_qp_start(f->vf, 2, 7), -EINVAL);
    assert_int_equal(guest_vf_qp_sqc_dump(f->vf, 1, &dumped), 0);
    assert_int_equal(dumped.w13 & 0xf00, 0x100);
}

/* ---- one job of each format ---- */

static void roundtrip(struct fixture *f, enum zip_req_type type, enum zip_buf_type buf, size_t len,
                      enum workload_data_kind kind, uint32_t piece, unsigned per_sgl)
{
    const uint64_t in = DATA_GPA, comp = DATA_GPA + (2u << 20), out = DATA_GPA + (4u << 20);
    const uint64_t sgl_a = DATA_GPA + (7u << 20), sgl_b = sgl_a + (256u << 10);
    const uint64_t cap = len + len / 8 + 1024 + GUEST_ZIP_MAX_HDR_LEN;
    uint8_t *inp = guest_ram_ptr(f->g, in);
    uint8_t *check = malloc(len + 1);
    struct guest_zip_req r = {.type = type, .buf_type = buf, .window = 4};
    struct guest_vf_completion c;
    size_t hl, got;
    int hdr, bits = type == ZIP_REQ_DEFLATE ? -15 : type == ZIP_REQ_ZLIB ? 15 : 31;

    workload_data_fill(inp, len, kind, len * 31 + type);
    hdr = guest_zip_header_write(type, guest_ram_ptr(f->g, comp), cap);
    assert_true(hdr >= 0);
    if (buf == ZIP_BUF_SGL) {
        assert_int_equal(guest_sgl_build(f->g, sgl_a, 256u << 10, in, len, piece, per_sgl), 0);
        assert_int_equal(guest_sgl_build(f->g, sgl_b, 256u << 10, comp, cap, piece, per_sgl), 0);
    }
    r.src = buf == ZIP_BUF_SGL ? sgl_a : in;
    r.dst = buf == ZIP_BUF_SGL ? sgl_b : comp;
    r.in_len = (uint32_t)len;
    r.out_off = (uint32_t)hdr;
    r.dest_avail = (uint32_t)(cap - (uint64_t)hdr);
    r.tag = 100 + type;
    c = run_job(f, 0, &r);
    assert_int_equal(c.qp, 0);
    assert_int_equal(c.tag, 100 + type);
    assert_true(c.status == ZIP_ST_OK || c.status == ZIP_ST_NEGATIVE_COMP);
    assert_int_equal(c.status == ZIP_ST_NEGATIVE_COMP, c.produced > len);
    assert_int_equal(c.consumed, len);
    /* an independent inflater reads it */
    assert_int_equal(zlib_inflate(guest_ram_ptr(f->g, comp), (size_t)hdr + c.produced, check,
                                  len + 1, bits, &got), 0);
    assert_int_equal(got, len);
    assert_memory_equal(check, inp, len);

    /* and the device inflates it back, header stripped by the driver */
    assert_int_equal(guest_zip_header_parse(type, guest_ram_ptr(f->g, comp), (size_t)hdr + c.produced,
                                            &hl), 0);
    assert_int_equal(hl, (size_t)hdr);
    memset(guest_ram_ptr(f->g, out), 0x5a, len);
    if (buf == ZIP_BUF_SGL) {
        assert_int_equal(guest_sgl_build(f->g, sgl_a, 256u << 10, comp, hl + c.produced, piece,
                                         per_sgl), 0);
        assert_int_equal(guest_sgl_build(f->g, sgl_b, 256u << 10, out, len, piece, per_sgl), 0);
    }
    r.src = buf == ZIP_BUF_SGL ? sgl_a : comp;
    r.dst = buf == ZIP_BUF_SGL ? sgl_b : out;
    r.in_off = (uint32_t)hl;
    r.in_len = c.produced;
    r.out_off = 0;
    r.dest_avail = (uint32_t)len;
    r.tag = 200 + type;
    c = run_job(f, 1, &r);
    assert_int_equal(c.qp, 1);
    assert_int_equal(c.tag, 200 + type);
    assert_int_equal(c.status, ZIP_ST_OK);
    assert_int_equal(c.produced, len);
    assert_memory_equal(guest_ram_ptr(f->g, out), inp, len);
    free(check);
}

static void start_pair(struct fixture *f)
{
    assert_int_equal(guest_vf_qp_start(f->vf, 0, ZIP_ALG_COMPRESS), 0);
    assert_int_equal(guest_vf_qp_start(f->vf, 1, ZIP_ALG_DECOMPRESS), 0);
}

static void test_each_format_compresses_inflates_with_zlib_and_decompresses_back(void **state)
{
    struct fixture *f = *state;

    start_pair(f);
    for (enum zip_req_type t = ZIP_REQ_DEFLATE; t <= ZIP_REQ_GZIP; t++) {
        roundtrip(f, t, ZIP_BUF_FLAT, 100000, WORKLOAD_DATA_TEXT, 0, 0);
        roundtrip(f, t, ZIP_BUF_FLAT, 1, WORKLOAD_DATA_TEXT, 0, 0);
        roundtrip(f, t, ZIP_BUF_FLAT, 70000, WORKLOAD_DATA_MIXED, 0, 0);
    }
    assert_int_equal(f->ndone, 18);
}

static void test_random_input_reports_negative_compression_yet_stays_valid(void **state)
{
    struct fixture *f = *state;

    start_pair(f);
    roundtrip(f, ZIP_REQ_GZIP, ZIP_BUF_FLAT, 50000, WORKLOAD_DATA_RANDOM, 0, 0);
    assert_int_equal(f->done[0].status, ZIP_ST_NEGATIVE_COMP);
}

static void test_sgl_jobs_of_every_shape_round_trip(void **state)
{
    struct fixture *f = *state;
    static const uint32_t pieces[] = {1000, 4096, 12345};
    static const unsigned pers[] = {1, 8, 255};

    start_pair(f);
    for (size_t p = 0; p < 3; p++)
        for (size_t e = 0; e < 3; e++)
            roundtrip(f, (enum zip_req_type)(1 + (p + e) % 3), ZIP_BUF_SGL, 150000 + 777 * p,
                      WORKLOAD_DATA_MIXED, pieces[p], pers[e]);
    assert_int_equal(f->ndone, 18);
}

/* ---- rings ---- */

static void test_more_jobs_than_the_rings_hold_wrap_cq_and_eq_phases(void **state)
{
    struct fixture *f = *state;
    const unsigned jobs = QM_EQ_DEPTH + 100; /* > CQ depth and > EQ depth */
    struct guest_zip_req r = {.type = ZIP_REQ_DEFLATE, .buf_type = ZIP_BUF_FLAT, .src = DATA_GPA,
                              .dst = DATA_GPA + 0x10000, .in_len = 64, .dest_avail = 4096};
    struct guest_vf_stats st;
    unsigned max_inflight = 0;

    fill_text(f, DATA_GPA, 64, 9);
    start_pair(f);
    /* One at a time, so every completion posts its own EQE. */
    for (unsigned i = 0; i < jobs; i++) {
        struct guest_vf_completion c;
        r.tag = i;
        c = run_job(f, 0, &r);
        assert_int_equal(c.tag, i);
        assert_int_equal(c.sq_slot, i % QM_SQ_DEPTH);
        assert_int_equal(c.status, ZIP_ST_OK);
        max_inflight = guest_vf_qp_inflight(f->vf, 0) > max_inflight ? guest_vf_qp_inflight(f->vf, 0)
                                                                     : max_inflight;
    }
    for (unsigned i = 0; i < jobs; i++)
        assert_int_equal(f->per_tag[i], 1);
    guest_vf_stats_get(f->vf, &st);
    assert_int_equal(st.cqes, jobs);
    assert_true(st.eqes > QM_EQ_DEPTH); /* the EQ wrapped too */
    assert_int_equal(st.bad_cqes, 0);
    assert_int_equal(max_inflight, 0);
    assert_int_equal(guest_vf_qp_sq_tail(f->vf, 0), jobs % QM_SQ_DEPTH);
}

static void test_a_full_sq_refuses_the_depth_th_job_and_drains_in_order(void **state)
{
    struct fixture *f = *state;
    struct guest_zip_req r = {.type = ZIP_REQ_ZLIB, .buf_type = ZIP_BUF_FLAT, .src = DATA_GPA,
                              .dst = DATA_GPA + 0x10000, .in_len = 32, .out_off = 2, .dest_avail = 4096};
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct guest_vf_stats st;
    unsigned n = 0;

    fill_text(f, DATA_GPA, 32, 3);
    start_pair(f);
    /* Fill the SQ to depth-1 without reaping anything: the CQ (same depth)
     * holds whatever completes meanwhile. */
    for (unsigned i = 0; i < QM_SQ_DEPTH - 1; i++) {
        r.tag = i;
        assert_int_equal(guest_zip_sqe_build(sqe, &r), 0);
        assert_int_equal(guest_vf_submit(f->vf, 0, sqe), 0);
    }
    assert_int_equal(guest_vf_qp_inflight(f->vf, 0), QM_SQ_DEPTH - 1);
    r.tag = 9999;
    assert_int_equal(guest_zip_sqe_build(sqe, &r), 0);
    assert_int_equal(guest_vf_submit(f->vf, 0, sqe), -EBUSY);
    for (int i = 0; i < 2000 && f->ndone < QM_SQ_DEPTH - 1; i++) {
        int irq = guest_vf_irq_wait(f->vf, 20) == 0;
        assert_true(guest_vf_poll(f->vf, irq) >= 0);
    }
    assert_int_equal(f->ndone, QM_SQ_DEPTH - 1);
    for (unsigned i = 0; i < f->ndone && i < MAX_CQ; i++)
        n += f->done[i].tag == i; /* one queue completes in submission order */
    assert_int_equal(n, QM_SQ_DEPTH - 1);
    assert_int_equal(guest_vf_qp_inflight(f->vf, 0), 0);
    guest_vf_stats_get(f->vf, &st);
    assert_int_equal(st.submit_busy, 1);
    /* and the queue takes jobs again */
    assert_int_equal(guest_vf_submit(f->vf, 0, sqe), 0);
}

/* ---- teardown, attach ---- */

static void test_stop_qp_drains_every_job_in_flight_and_closes_the_queue(void **state)
{
    struct fixture *f = *state;
    struct guest_zip_req r = {.type = ZIP_REQ_GZIP, .buf_type = ZIP_BUF_FLAT, .src = DATA_GPA,
                              .in_len = 256u << 10, .out_off = 10, .dest_avail = 300u << 10};
    uint32_t sqe[ZIP_SQE_DWORDS];
    unsigned from;
    struct qm_queue_debug qd;

    fill_text(f, DATA_GPA, 256u << 10, 5);
    start_pair(f);
    for (unsigned i = 0; i < 8; i++) {
        r.dst = DATA_GPA + (1u << 20) + i * (320u << 10);
        guest_zip_header_write(ZIP_REQ_GZIP, guest_ram_ptr(f->g, r.dst), 10);
        r.tag = i;
        assert_int_equal(guest_zip_sqe_build(sqe, &r), 0);
        assert_int_equal(guest_vf_submit(f->vf, 0, sqe), 0);
    }
    from = f->nrec;
    assert_int_equal(guest_vf_qp_stop(f->vf, 0, 10000), 0);
    assert_true(rec_find_mb(f, from, QM_MB_CMD_STOP_QP, 0) >= 0);
    assert_int_equal(f->ndone, 8);
    for (unsigned i = 0; i < 8; i++) {
        assert_int_equal(f->per_tag[i], 1);
        assert_int_equal(f->done[i].status, ZIP_ST_OK);
    }
    assert_int_equal(guest_vf_qp_state(f->vf, 0), GUEST_QP_STOPPED);
    assert_int_equal(guest_vf_qp_inflight(f->vf, 0), 0);
    assert_int_equal(guest_vf_submit(f->vf, 0, sqe), -EIO);
    assert_int_equal(qm_debug_queue(f->host.dev, VF, 0, &qd), 0);
    assert_true(qd.stopped);
    assert_int_equal(guest_vf_qp_stop(f->vf, 0, 100), -ENOENT);
    assert_int_equal(guest_vf_qp_stop(f->vf, 2, 100), -ENOENT); /* never started */
    /* a stopped queue may be started again, from slot 0 */
    assert_int_equal(guest_vf_qp_start(f->vf, 0, ZIP_ALG_COMPRESS), 0);
    assert_int_equal(guest_vf_qp_sq_tail(f->vf, 0), 0);
}

static void test_uninit_stops_queues_masks_interrupts_and_says_not_ready(void **state)
{
    struct fixture *f = *state;

    start_pair(f);
    assert_int_equal(guest_vf_uninit(f->vf), 0);
    assert_int_equal(guest_vf_qp_state(f->vf, 0), GUEST_QP_STOPPED);
    assert_int_equal(guest_vf_qp_state(f->vf, 1), GUEST_QP_STOPPED);
    assert_int_equal(bar32(f, QM_VF_STATE), QM_VF_STATE_NOT_READY);
    assert_int_equal(bar32(f, QM_EQ_INT_MASK) & 1u, 1);
    assert_int_equal(bar32(f, QM_AEQ_INT_MASK) & 1u, 1);
}

static void test_a_new_handle_attached_to_the_ram_carries_on(void **state)
{
    struct fixture *f = *state;
    struct guest_zip_req r = {.type = ZIP_REQ_DEFLATE, .buf_type = ZIP_BUF_FLAT, .src = DATA_GPA,
                              .dst = DATA_GPA + 0x10000, .in_len = 1000, .dest_avail = 4096};
    struct guest_vf_completion c;

    fill_text(f, DATA_GPA, 1000, 1);
    start_pair(f);
    for (unsigned i = 0; i < 5; i++) {
        r.tag = i;
        run_job(f, 0, &r);
    }
    guest_vf_detach(f->vf);
    f->vf = NULL;
    assert_int_equal(guest_vf_attach(&f->io, f->g, STATE_GPA, &f->vf), 0);
    guest_vf_set_complete_cb(f->vf, on_complete, f);
    assert_int_equal(guest_vf_qp_sq_tail(f->vf, 0), 5);
    r.tag = 5;
    c = run_job(f, 0, &r);
    assert_int_equal(c.sq_slot, 5);
    assert_int_equal(c.tag, 5);
    assert_int_equal(f->per_tag[5], 1);
}

static void test_attach_refuses_ram_that_holds_no_driver_state(void **state)
{
    struct fixture *f = *state;
    struct guest_vf *vf = NULL;
    uint32_t *magic = guest_ram_ptr(f->g, STATE_GPA);
    uint32_t saved = *magic;

    assert_int_equal(guest_vf_attach(&f->io, f->g, STATE_GPA + 0x100000, &vf), -EINVAL);
    assert_int_equal(guest_vf_attach(&f->io, f->g, STATE_GPA + 8, &vf), -EINVAL); /* unaligned */
    assert_int_equal(guest_vf_attach(&f->io, f->g, f->g->size, &vf), -EINVAL);
    *magic = saved ^ 1;
    assert_int_equal(guest_vf_attach(&f->io, f->g, STATE_GPA, &vf), -EINVAL);
    *magic = saved;
    /* a queue whose software state was corrupted */
    ((uint8_t *)magic)[12] = 0xff; /* qp_num (dword 3) -> 255 */
    assert_int_equal(guest_vf_attach(&f->io, f->g, STATE_GPA, &vf), -EINVAL);
    ((uint8_t *)magic)[12] = QM_DEFAULT_QPS_PER_VF;
    assert_int_equal(guest_vf_attach(&f->io, f->g, STATE_GPA, &vf), 0);
    guest_vf_detach(vf);
}

static void test_init_refuses_bad_arguments_and_small_state(void **state)
{
    struct fixture *f = *state;
    struct guest_vf *vf = NULL;
    struct vf_io broken = f->io;

    assert_int_equal(guest_vf_init(&f->io, f->g, STATE_GPA, guest_vf_state_size(1) - 4096, &vf),
                     -ENOSPC);
    assert_int_equal(guest_vf_init(&f->io, f->g, STATE_GPA + 64, guest_vf_state_size(1), &vf), -EINVAL);
    assert_int_equal(guest_vf_init(&f->io, f->g, f->g->size - 4096, guest_vf_state_size(1), &vf),
                     -EINVAL);
    broken.irq_wait = NULL;
    assert_int_equal(guest_vf_init(&broken, f->g, STATE_GPA, guest_vf_state_size(1), &vf), -EINVAL);
    assert_null(vf);
    /* one queue of ring memory is enough to probe; only qp 0 can start */
    assert_int_equal(guest_vf_init(&f->io, f->g, STATE_GPA, guest_vf_state_size(1), &vf), 0);
    assert_int_equal(guest_vf_qp_rings(vf), 1);
    assert_int_equal(guest_vf_qp_start(vf, 1, ZIP_ALG_COMPRESS), -ENOSPC);
    assert_int_equal(guest_vf_qp_start(vf, 0, ZIP_ALG_COMPRESS), 0);
    guest_vf_detach(vf);
}

static void test_probe_copes_with_a_slow_mailbox(void **state)
{
    struct fixture *f = *state;
    struct guest_vf *vf = NULL;

    assert_int_equal(qm_debug_set_mailbox_delay(f->host.dev, VF, 50), 0);
    assert_int_equal(guest_vf_init(&f->io, f->g, STATE_GPA, guest_vf_state_size(2), &vf), 0);
    assert_int_equal(guest_vf_qp_start(vf, 0, ZIP_ALG_COMPRESS), 0);
    guest_vf_detach(vf);
}

static void test_a_broken_cq_ring_raises_an_aeqe_and_the_queue_dies(void **state)
{
    struct fixture *f = *state;
    struct iommu_domain *d = qm_dev_iommu(f->host.dev, VF);
    struct guest_zip_req r = {.type = ZIP_REQ_DEFLATE, .buf_type = ZIP_BUF_FLAT, .src = DATA_GPA,
                              .dst = DATA_GPA + 0x10000, .in_len = 100, .dest_avail = 4096, .tag = 1};
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct guest_vf_stats st;
    /* Ring memory of qp 0 starts right after the fixed part of the state;
     * find its CQ through the SQC/CQC table the driver set up: the CQC dump
     * is not offered, so unmap everything from the CQ area of qp 0 on and
     * map the rest back. The CQ of qp 0 lies 128 KiB after its SQ. */
    struct qm_sqc sqc;
    uint64_t sq, cq;

    fill_text(f, DATA_GPA, 100, 2);
    start_pair(f);
    assert_int_equal(guest_vf_qp_sqc_dump(f->vf, 0, &sqc), 0);
    sq = (uint64_t)sqc.base_h << 32 | sqc.base_l;
    cq = sq + QM_SQ_DEPTH * ZIP_SQE_SIZE;
    assert_int_equal(iommu_unmap(d, 0, RAM_SIZE), 0);
    assert_int_equal(iommu_map_host(d, 0, cq, guest_ram_ptr(f->g, 0), IOMMU_READ | IOMMU_WRITE), 0);
    assert_int_equal(iommu_map_host(d, cq + 4096 * 4, RAM_SIZE - cq - 4096 * 4,
                                    guest_ram_ptr(f->g, cq + 4096 * 4), IOMMU_READ | IOMMU_WRITE), 0);
    assert_int_equal(guest_zip_sqe_build(sqe, &r), 0);
    assert_int_equal(guest_vf_submit(f->vf, 0, sqe), 0);
    for (int i = 0; i < 200 && guest_vf_qp_state(f->vf, 0) != GUEST_QP_FATAL; i++) {
        guest_vf_irq_wait(f->vf, 10);
        assert_true(guest_vf_poll(f->vf, 0) >= 0);
    }
    assert_int_equal(guest_vf_qp_state(f->vf, 0), GUEST_QP_FATAL);
    guest_vf_stats_get(f->vf, &st);
    assert_true(st.aeqes >= 1);
    assert_int_equal(guest_vf_submit(f->vf, 0, sqe), -EIO);
    assert_int_equal(guest_vf_qp_state(f->vf, 1), GUEST_QP_STARTED); /* others live on */
    /* restore the mapping the host helper will unmap */
    assert_int_equal(iommu_unmap(d, 0, cq), 0);
    assert_int_equal(iommu_unmap(d, cq + 4096 * 4, RAM_SIZE - cq - 4096 * 4), 0);
    assert_int_equal(iommu_map_host(d, 0, RAM_SIZE, guest_ram_ptr(f->g, 0), IOMMU_READ | IOMMU_WRITE), 0);
}

/* A transport whose MSIs never arrive: irq_wait only ever times out. */
static int deaf_irq_wait(void *opaque, unsigned vector, int timeout_ms)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 200000};
    (void)opaque;
    (void)vector;
    (void)timeout_ms;
    nanosleep(&ts, NULL);
    return -ETIMEDOUT;
}

static void test_lost_msis_delay_completions_but_lose_none(void **state)
{
    struct fixture *f = *state;
    struct guest_zip_req r = {.type = ZIP_REQ_ZLIB, .buf_type = ZIP_BUF_FLAT, .src = DATA_GPA,
                              .dst = DATA_GPA + 0x10000, .in_len = 3000, .out_off = 2,
                              .dest_avail = 8192};
    struct guest_vf_stats st;
    struct guest_vf_completion c;

    fill_text(f, DATA_GPA, 3000, 4);
    start_pair(f);
    f->io.irq_wait = deaf_irq_wait;
    guest_vf_detach(f->vf);
    assert_int_equal(guest_vf_attach(&f->io, f->g, STATE_GPA, &f->vf), 0);
    guest_vf_set_complete_cb(f->vf, on_complete, f);
    for (unsigned i = 0; i < 20; i++) {
        r.tag = i;
        c = run_job(f, 0, &r);
        assert_int_equal(c.tag, i);
        assert_int_equal(c.status, ZIP_ST_OK);
    }
    guest_vf_stats_get(f->vf, &st);
    assert_int_equal(st.irqs, 0);
    assert_int_equal(st.cqes, 20);
    assert_int_equal(st.cqes_without_irq, 20);
    assert_true(st.eqes >= 1); /* the events were posted; only the MSIs went missing */
}

static void test_the_in_process_transport_rings_isolated_doorbells_as_bar4_calls(void **state)
{
    struct fixture *f = *state;
    struct guest_zip_req r = {.type = ZIP_REQ_DEFLATE, .buf_type = ZIP_BUF_FLAT, .src = DATA_GPA,
                              .dst = DATA_GPA + 0x10000, .in_len = 1000, .dest_avail = 4096,
                              .tag = 1};
    unsigned from = f->nrec;

    /* The device isolates doorbells by default; nothing is mapped here. */
    assert_int_equal(bar32(f, QM_QUE_ISO_CFG) & QM_QUE_ISO_EN, QM_QUE_ISO_EN);
    assert_null(f->real->db_pages);
    fill_text(f, DATA_GPA, 1000, 3);
    assert_int_equal(guest_vf_qp_start(f->vf, 1, ZIP_ALG_COMPRESS), 0);
    assert_int_equal(run_job(f, 1, &r).status, ZIP_ST_OK);
    assert_true(rec_find_db(f, from, REC_BAR4 | (QM_DB_PAGE_SIZE + QM_DB_SQCQ), QM_DB_CMD_SQ, 1, 1,
                            0) >= 0);
    assert_true(rec_find_db(f, from, REC_BAR4 | (QM_DB_PAGE_SIZE + QM_DB_SQCQ), QM_DB_CMD_CQ, 1, 1,
                            1) >= 0);
    assert_true(rec_find(f, from, QM_DB_SQCQ) < 0);
    assert_true(rec_find_db(f, from, QM_DB_EQAEQ, QM_DB_CMD_EQ, 0, 1, 0) >= 0);
}

static void test_submit_and_poll_refuse_bad_queue_numbers(void **state)
{
    struct fixture *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS] = {0};
    struct qm_sqc sqc;

    assert_int_equal(guest_vf_submit(f->vf, 64, sqe), -EINVAL);
    assert_int_equal(guest_vf_submit(f->vf, 0, NULL), -EINVAL);
    assert_int_equal(guest_vf_submit(f->vf, 0, sqe), -EIO); /* not started */
    assert_int_equal(guest_vf_qp_sqc_dump(f->vf, 99, &sqc), -EINVAL);
    assert_int_equal(guest_vf_poll(f->vf, 0), 0);
    assert_int_equal(guest_vf_qp_state(f->vf, 99), GUEST_QP_IDLE);
}

/* ---- polling mode ---- */

/* Submit r, then reap qp by polling its CQ only (no MSI wait, no EQ). */
static struct guest_vf_completion run_polled_job(struct fixture *f, unsigned qp,
                                                 const struct guest_zip_req *r)
{
    uint32_t sqe[ZIP_SQE_DWORDS];
    unsigned before = f->ndone;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 20000};

    assert_int_equal(guest_zip_sqe_build(sqe, r), 0);
    assert_int_equal(guest_vf_submit(f->vf, qp, sqe), 0);
    for (int i = 0; i < 200000 && f->ndone == before; i++) {
        int n = guest_vf_qp_poll(f->vf, qp);

        assert_true(n >= 0);
        if (n == 0)
            nanosleep(&ts, NULL);
    }
    assert_int_equal(f->ndone, before + 1);
    return f->done[before];
}

static void test_a_polled_queue_raises_no_event_and_acknowledges_cqes_in_batches(void **state)
{
    struct fixture *f = *state;
    const unsigned jobs = 200;
    struct guest_zip_req r = {.type = ZIP_REQ_DEFLATE, .buf_type = ZIP_BUF_FLAT, .src = DATA_GPA,
                              .dst = DATA_GPA + 0x10000, .in_len = 64, .dest_avail = 4096};
    struct qm_fn_counters n0, n1;
    struct guest_vf_stats st;
    unsigned from, ncq = 0;

    fill_text(f, DATA_GPA, 64, 21);
    assert_int_equal(guest_vf_qp_start_mode(f->vf, 0, ZIP_ALG_COMPRESS, GUEST_QP_MODE_POLL), 0);
    assert_int_equal(guest_vf_qp_mode(f->vf, 0), GUEST_QP_MODE_POLL);
    assert_int_equal(qm_debug_fn_counters(f->host.dev, VF, &n0), 0);
    from = f->nrec;
    for (unsigned i = 0; i < jobs; i++) {
        r.tag = i;
        struct guest_vf_completion c = run_polled_job(f, 0, &r);

        assert_int_equal(c.tag, i);
        assert_int_equal(c.status, ZIP_ST_OK);
    }
    for (unsigned i = 0; i < jobs; i++)
        assert_int_equal(f->per_tag[i], 1);
    assert_int_equal(qm_debug_fn_counters(f->host.dev, VF, &n1), 0);
    /* The CQC has no EQ enable: no EQE, no MSI, no EQ doorbell. */
    assert_int_equal(n1.eqes_posted - n0.eqes_posted, 0);
    assert_int_equal(n1.msi_raised - n0.msi_raised, 0);
    assert_true(rec_find(f, from, QM_DB_EQAEQ) < 0);
    /* One priority-0 CQ doorbell per 32 CQEs, each at a multiple of 32. */
    for (unsigned i = from; i < f->nrec; i++) {
        uint64_t v;

        memcpy(&v, f->rec[i].data, 8);
        if (f->rec[i].size != 8 || ((v >> 12) & 0xfu) != QM_DB_CMD_CQ)
            continue;
        ncq++;
        assert_int_equal(v >> 48, 0);                      /* priority 0 */
        assert_int_equal(((v >> 32) & 0xffffu) % 32u, 0); /* cumulative head */
    }
    assert_int_equal(ncq, jobs / 32);
    guest_vf_stats_get(f->vf, &st);
    assert_int_equal(st.cq_doorbells, jobs / 32);
    assert_int_equal(st.cqes, jobs);
    assert_int_equal(st.irqs, 0);
    assert_int_equal(st.eqes, 0);
    assert_int_equal(n1.cq_full_stalls - n0.cq_full_stalls, 0);
    assert_int_equal(n1.doorbells_ignored - n0.doorbells_ignored, 0);
}

/* CQEs read but not acknowledged still fill the CQ as the device counts
 * it: a submission that could not be fetched otherwise acknowledges them
 * first, so a queue filled to depth-1 never stalls. */
static void test_a_polled_queue_acknowledges_before_the_device_would_find_its_cq_full(void **state)
{
    struct fixture *f = *state;
    struct guest_zip_req r = {.type = ZIP_REQ_DEFLATE, .buf_type = ZIP_BUF_FLAT, .src = DATA_GPA,
                              .dst = DATA_GPA + 0x10000, .in_len = 32, .dest_avail = 4096};
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct qm_fn_counters n0, n1;
    struct guest_vf_stats s0, s1;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 100000};

    fill_text(f, DATA_GPA, 32, 5);
    assert_int_equal(guest_vf_qp_start_mode(f->vf, 0, ZIP_ALG_COMPRESS, GUEST_QP_MODE_POLL), 0);
    /* 31 CQEs read, none acknowledged (one short of a batch). */
    for (unsigned i = 0; i < 31; i++) {
        r.tag = i;
        run_polled_job(f, 0, &r);
    }
    guest_vf_stats_get(f->vf, &s0);
    assert_int_equal(s0.cq_doorbells, 0);
    assert_int_equal(qm_debug_fn_counters(f->host.dev, VF, &n0), 0);
    /* Then the SQ filled to depth-1 with nothing reaped meanwhile. */
    for (unsigned i = 0; i < QM_SQ_DEPTH - 1; i++) {
        r.tag = 100 + i;
        assert_int_equal(guest_zip_sqe_build(sqe, &r), 0);
        assert_int_equal(guest_vf_submit(f->vf, 0, sqe), 0);
    }
    guest_vf_stats_get(f->vf, &s1);
    assert_int_equal(s1.cq_doorbells, 1); /* rung by a submission */
    for (int i = 0; i < 20000 && f->ndone < 31 + QM_SQ_DEPTH - 1; i++) {
        int n = guest_vf_qp_poll(f->vf, 0);

        assert_true(n >= 0);
        if (n == 0)
            nanosleep(&ts, NULL);
    }
    assert_int_equal(f->ndone, 31 + QM_SQ_DEPTH - 1);
    assert_int_equal(guest_vf_qp_inflight(f->vf, 0), 0);
    assert_int_equal(qm_debug_fn_counters(f->host.dev, VF, &n1), 0);
    assert_int_equal(n1.cq_full_stalls - n0.cq_full_stalls, 0);
    for (unsigned i = 0; i < QM_SQ_DEPTH - 1; i++)
        assert_int_equal(f->per_tag[100 + i], 1);
}

/* Both modes on one VF: the irq queue's completions come by MSI and EQ,
 * the polled one's by its CQ alone; guest_vf_poll serves both; the mode
 * survives a re-attach and a restart may change it. */
static void test_polled_and_interrupt_driven_queues_share_a_vf(void **state)
{
    struct fixture *f = *state;
    struct guest_zip_req r = {.type = ZIP_REQ_DEFLATE, .buf_type = ZIP_BUF_FLAT, .src = DATA_GPA,
                              .dst = DATA_GPA + 0x10000, .in_len = 500, .dest_avail = 4096};
    struct guest_vf_stats st;

    fill_text(f, DATA_GPA, 500, 8);
    assert_int_equal(guest_vf_qp_start_mode(f->vf, 0, ZIP_ALG_COMPRESS, GUEST_QP_MODE_POLL), 0);
    assert_int_equal(guest_vf_qp_start_mode(f->vf, 1, ZIP_ALG_COMPRESS, GUEST_QP_MODE_IRQ), 0);
    for (unsigned i = 0; i < 40; i++) {
        r.tag = i;
        assert_int_equal((i % 2 ? run_job(f, 1, &r) : run_polled_job(f, 0, &r)).tag, i);
    }
    /* The interrupt path also drains a polled CQ it comes across. */
    r.tag = 40;
    assert_int_equal(run_job(f, 0, &r).tag, 40);
    guest_vf_stats_get(f->vf, &st);
    assert_int_equal(st.cqes, 41);
    assert_true(st.irqs >= 1 && st.irqs <= 21);
    assert_true(st.eqes >= 1 && st.eqes <= 20); /* queue 1's only */
    guest_vf_detach(f->vf);
    assert_int_equal(guest_vf_attach(&f->io, f->g, STATE_GPA, &f->vf), 0);
    guest_vf_set_complete_cb(f->vf, on_complete, f);
    assert_int_equal(guest_vf_qp_mode(f->vf, 0), GUEST_QP_MODE_POLL);
    assert_int_equal(guest_vf_qp_mode(f->vf, 1), GUEST_QP_MODE_IRQ);
    r.tag = 41;
    assert_int_equal(run_polled_job(f, 0, &r).tag, 41);
    assert_int_equal(guest_vf_qp_stop(f->vf, 0, 1000), 0);
    assert_int_equal(guest_vf_qp_start_mode(f->vf, 0, ZIP_ALG_COMPRESS, GUEST_QP_MODE_IRQ), 0);
    assert_int_equal(guest_vf_qp_mode(f->vf, 0), GUEST_QP_MODE_IRQ);
    r.tag = 42;
    assert_int_equal(run_job(f, 0, &r).tag, 42);
    for (unsigned i = 0; i <= 42; i++)
        assert_int_equal(f->per_tag[i], 1);
    /* Bad arguments. */
    assert_int_equal(guest_vf_qp_start_mode(f->vf, 2, ZIP_ALG_COMPRESS, (enum guest_qp_mode)2),
                     -EINVAL);
    assert_int_equal(guest_vf_qp_start_mode(f->vf, 2, ZIP_ALG_COMPRESS, (enum guest_qp_mode)-1),
                     -EINVAL);
    assert_int_equal(guest_vf_qp_state(f->vf, 2), GUEST_QP_IDLE);
    assert_int_equal(guest_vf_qp_poll(f->vf, GUEST_VF_MAX_QPS), -EINVAL);
    assert_int_equal(guest_vf_qp_poll(f->vf, 3), 0); /* never started */
    assert_int_equal(guest_vf_qp_mode(f->vf, GUEST_VF_MAX_QPS), GUEST_QP_MODE_IRQ);
}

/* The device's poller sweeps only pages someone was given the fd of (since
 * the last renew): the in-process transport gives none, so a word in its
 * pages stays as stored until a trapped access takes it, however long;
 * once the fd is handed out the poller takes it; fresh pages are unswept
 * again. A 4-byte trapped write lands in the page as a torn store would. */
static void test_the_poller_sweeps_only_pages_that_were_handed_out(void **state)
{
    struct fixture *f = *state;
    struct qm_dev *dev = f->host.dev;
    uint32_t torn = 0x1234;
    uint64_t w = 0, end;
    struct qm_fn_counters n;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 50000000};

    for (int round = 0; round < 2; round++) {
        assert_int_equal(qm_db_bar_write(dev, VF, QM_DB_SQCQ, &torn, 4), 0);
        nanosleep(&ts, NULL); /* a sweeping poller takes it within 2 ms */
        assert_int_equal(qm_db_bar_read(dev, VF, QM_DB_SQCQ, &w, 8), 0);
        assert_int_not_equal(w, QM_DB_IDLE);
        assert_int_equal(qm_debug_fn_counters(dev, VF, &n), 0);
        assert_int_equal(n.doorbells_ignored, (uint64_t)round);
        assert_true(qm_db_bar_fd(dev, VF) >= 0);
        end = am_now_ns() + 5000000000ull;
        do {
            nanosleep(&(struct timespec){.tv_nsec = 100000}, NULL);
            assert_int_equal(qm_db_bar_read(dev, VF, QM_DB_SQCQ, &w, 8), 0);
        } while (w != QM_DB_IDLE && am_now_ns() < end);
        assert_int_equal(w, QM_DB_IDLE);
        assert_int_equal(qm_debug_fn_counters(dev, VF, &n), 0);
        assert_int_equal(n.doorbells_ignored, (uint64_t)round + 1); /* torn: taken, ignored */
        assert_int_equal(qm_db_bar_renew(dev, VF), 0);
    }
    /* A trapped BAR2 access takes what unswept pages hold (PCIe order). */
    assert_int_equal(qm_db_bar_write(dev, VF, QM_DB_SQCQ, &torn, 4), 0);
    assert_int_equal(qm_db_bar_read(dev, VF, QM_DB_SQCQ, &w, 8), 0);
    assert_int_not_equal(w, QM_DB_IDLE);
    (void)bar32(f, QM_QUE_ISO_CFG);
    assert_int_equal(qm_db_bar_read(dev, VF, QM_DB_SQCQ, &w, 8), 0);
    assert_int_equal(w, QM_DB_IDLE);
    assert_int_equal(qm_db_bar_fd(dev, 0), -ENODEV); /* the PF has no pages */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_probe_follows_the_linux_vf_sequence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_start_loads_sqc_and_cqc_as_the_zip_driver_does,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_each_format_compresses_inflates_with_zlib_and_decompresses_back, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_each_format_compresses_inflates_with_zlib_and_decompresses_back, setup_v3, teardown),
        cmocka_unit_test_setup_teardown(test_stop_qp_drains_every_job_in_flight_and_closes_the_queue,
                                        setup_v3, teardown),
        cmocka_unit_test_setup_teardown(test_random_input_reports_negative_compression_yet_stays_valid,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_sgl_jobs_of_every_shape_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_more_jobs_than_the_rings_hold_wrap_cq_and_eq_phases,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_full_sq_refuses_the_depth_th_job_and_drains_in_order,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_qp_drains_every_job_in_flight_and_closes_the_queue,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_uninit_stops_queues_masks_interrupts_and_says_not_ready,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_new_handle_attached_to_the_ram_carries_on, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_attach_refuses_ram_that_holds_no_driver_state, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_init_refuses_bad_arguments_and_small_state,
                                        setup_device, teardown),
        cmocka_unit_test_setup_teardown(test_probe_copes_with_a_slow_mailbox, setup_device, teardown),
        cmocka_unit_test_setup_teardown(test_a_broken_cq_ring_raises_an_aeqe_and_the_queue_dies,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_msis_delay_completions_but_lose_none, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_the_in_process_transport_rings_isolated_doorbells_as_bar4_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_submit_and_poll_refuse_bad_queue_numbers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_a_polled_queue_raises_no_event_and_acknowledges_cqes_in_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_polled_queue_acknowledges_before_the_device_would_find_its_cq_full, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_polled_and_interrupt_driven_queues_share_a_vf, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_the_poller_sweeps_only_pages_that_were_handed_out,
                                        setup_device, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
