/* The vfu client library against the in-process server: description, MMIO,
 * MSI over eventfds, DMA through fds and through the twin socket, the guest
 * driver running compression jobs over vfio-user, a live migration between
 * two servers, disconnects, two clients at once, server restart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "guest/workload.h"
#include "qm/qm_hw.h"
#include "vfu/client.h"
#include "vmm/vm_ram.h"
#include "vfu_test_util.h"

struct fixture {
    struct test_server ts;
    unsigned base_fds;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f || test_server_start(&f->ts, 2, MIG_HW_V4, NULL)) {
        free(f);
        return -1;
    }
    f->base_fds = test_count_fds();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->ts.srv)
        test_server_stop(&f->ts, false);
    free(f);
    return 0;
}

static struct vfu_client *connect_path(const char *path, bool twin)
{
    struct vfu_client_opts o = {.twin_socket = twin};
    struct vfu_client *c = NULL;
    assert_int_equal(vfu_client_connect(path, &o, &c), 0);
    return c;
}

static struct vfu_client *connect_vf(struct fixture *f, unsigned vf, bool twin)
{
    return connect_path(test_sock(&f->ts, vf), twin);
}

static struct qm_dev *model(struct fixture *f)
{
    return vfu_device_qm(vfu_server_device(f->ts.srv));
}

static uint32_t mmio_read32(const struct vf_io *io, uint64_t off)
{
    uint32_t v = 0;
    assert_int_equal(io->mmio_read(io->opaque, off, &v, 4), 0);
    return v;
}

/* Issues a VF mailbox command through BAR2 and returns its status. */
static unsigned mailbox(const struct vf_io *io, unsigned cmd, bool op, uint64_t base)
{
    struct qm_mailbox m = {
        .w0 = (uint16_t)(cmd | 1u << QM_MB_BUSY_SHIFT | (op ? 1u << QM_MB_OP_SHIFT : 0)),
        .base_l = (uint32_t)base,
        .base_h = (uint32_t)(base >> 32),
    };
    uint32_t w0;
    assert_int_equal(io->mmio_write(io->opaque, QM_MAILBOX, &m, sizeof(m)), 0);
    w0 = mmio_read32(io, QM_MAILBOX);
    assert_false(w0 & (1u << QM_MB_BUSY_SHIFT));
    return (w0 >> QM_MB_STATUS_SHIFT) & QM_MB_STATUS_MASK;
}

/* ---- description and MMIO ---- */

static void test_the_client_negotiates_and_describes_the_vf(void **state)
{
    struct fixture *f = *state;
    struct vfu_client *c = connect_vf(f, 0, false);
    struct vfu_client_server_caps caps;
    struct vfu_device_info di;
    struct vfu_region_info ri;
    struct vfu_irq_info ii;
    uint64_t flags;

    vfu_client_server_caps(c, &caps);
    assert_int_equal(caps.major, 0);
    assert_int_equal(caps.minor, 0);
    assert_int_equal(caps.max_msg_fds, VFU_SERVER_MAX_MSG_FDS);
    assert_int_equal(caps.max_data_xfer_size, VFU_DEFAULT_MAX_XFER);
    assert_true(caps.write_multiple);
    assert_false(caps.twin_socket);
    assert_int_equal(vfu_client_device_info(c, &di), 0);
    assert_int_equal(di.num_regions, VFU_NUM_REGIONS);
    assert_int_equal(vfu_client_region_info(c, VFU_REGION_BAR2, &ri), 0);
    assert_int_equal(ri.size, QM_VF_BAR2_SIZE);
    assert_int_equal(vfu_client_region_info(c, 12, &ri), -EINVAL);
    assert_int_equal(vfu_client_irq_info(c, VFU_IRQ_MSI, &ii), 0);
    assert_int_equal(ii.count, QM_NUM_VECTORS);
    assert_int_equal(vfu_client_mig_flags(c, &flags), 0);
    assert_int_equal(flags, VFIO_MIG_FLAGS_ALL);
    vfu_client_destroy(c);
}

static void test_vf_io_over_the_client_reads_and_writes_bar2(void **state)
{
    struct fixture *f = *state;
    struct vfu_client *c = connect_vf(f, 0, false);
    struct vf_io io;
    uint32_t zero = 0;
    uint64_t cap;

    vfu_client_vf_io(c, &io);
    assert_int_equal(mmio_read32(&io, QM_VF_STATE), QM_VF_STATE_NOT_READY);
    assert_int_equal(io.mmio_write(io.opaque, QM_VF_STATE, &zero, 4), 0);
    assert_int_equal(mmio_read32(&io, QM_VF_STATE), QM_VF_STATE_READY);
    assert_int_equal(mmio_read32(&io, QM_CAP_VERSION) & 0xff, 1);
    assert_int_equal(io.mmio_read(io.opaque, QM_CAP_VERSION + 1, &cap, 4), -EINVAL);
    assert_int_equal(vfu_client_reset(c), 0);
    assert_int_equal(mmio_read32(&io, QM_VF_STATE), QM_VF_STATE_NOT_READY);
    vfu_client_destroy(c);
}

static void test_posted_writes_keep_their_order_with_later_reads(void **state)
{
    struct fixture *f = *state;
    struct vfu_client_opts o = {.posted_writes = true};
    struct vfu_client *c;
    struct vf_io io;
    uint32_t v;

    assert_int_equal(vfu_client_connect(test_sock(&f->ts, 0), &o, &c), 0);
    vfu_client_vf_io(c, &io);
    for (uint32_t i = 0; i < 200; i++) {
        v = i & 1;
        assert_int_equal(io.mmio_write(io.opaque, QM_VF_STATE, &v, 4), 0);
        assert_int_equal(mmio_read32(&io, QM_VF_STATE), i & 1);
    }
    /* A write the server refuses is only logged there; the stream goes on. */
    assert_int_equal(io.mmio_write(io.opaque, QM_VF_STATE + 1, &v, 4), 0);
    assert_int_equal(mmio_read32(&io, QM_VF_STATE), 1);
    vfu_client_destroy(c);
}

/* ---- interrupts ---- */

static void test_a_device_raised_msi_reaches_the_client_eventfd_once(void **state)
{
    struct fixture *f = *state;
    struct vfu_client *c = connect_vf(f, 1, false);
    struct vf_io io;
    uint32_t zero = 0;
    uint64_t delivered = 0, dropped, before;

    vfu_client_vf_io(c, &io);
    assert_int_equal(io.irq_wait(io.opaque, QM_VEC_IFC, 10), -EINVAL); /* not enabled */
    assert_int_equal(vfu_client_irqs_enable(c, QM_NUM_VECTORS), 0);
    assert_int_equal(io.mmio_write(io.opaque, QM_IFC_INT_MASK, &zero, 4), 0);
    /* The host's PF sends an IFC message to VF index 1 (function 2). */
    assert_int_equal(qm_bar_write32(model(f), 0, QM_PF_IFC_INT_CFG, 2), 0);
    assert_int_equal(qm_bar_write32(model(f), 0, QM_PF_IFC_INT_SET_P, 1), 0);
    assert_int_equal(io.irq_wait(io.opaque, QM_VEC_IFC, 10000), 0);
    assert_int_equal(io.irq_wait(io.opaque, QM_VEC_IFC, 20), -ETIMEDOUT); /* consumed */
    /* A wake ends one wait (here the next one, as nobody waits) and takes no
     * firing: with an MSI delivered too, the firing is taken first. */
    vfu_vf_irq_counts(vfu_device_vf(vfu_server_device(f->ts.srv), 1), &before, &dropped);
    assert_int_equal(qm_bar_write32(model(f), 0, QM_PF_IFC_INT_SET_P, 1), 0);
    for (int i = 0; i < 10000; i++) {
        vfu_vf_irq_counts(vfu_device_vf(vfu_server_device(f->ts.srv), 1), &delivered, &dropped);
        if (delivered > before)
            break;
        usleep(1000);
    }
    assert_true(delivered > before);
    io.irq_wake(io.opaque);
    assert_int_equal(io.irq_wait(io.opaque, QM_VEC_IFC, 10000), 0);
    assert_int_equal(io.irq_wait(io.opaque, QM_VEC_IFC, 10000), -EINTR);
    assert_int_equal(io.irq_wait(io.opaque, QM_VEC_IFC, 20), -ETIMEDOUT);
    vfu_vf_irq_counts(vfu_device_vf(vfu_server_device(f->ts.srv), 1), &delivered, &dropped);
    assert_true(delivered >= 1);
    assert_int_equal(vfu_client_irqs_disable(c), 0);
    vfu_client_destroy(c);
    assert_int_equal(test_wait_fds(f->base_fds), f->base_fds);
}

/* ---- DMA ---- */

static void test_device_dma_to_memory_mapped_without_an_fd_goes_over_the_twin_socket(
    void **state)
{
    struct fixture *f = *state;
    struct vfu_client *c = connect_vf(f, 0, true);
    struct vfu_client_server_caps caps;
    uint8_t *mem = aligned_alloc(4096, 1 << 16);
    struct qm_eqc eqc = {.base_l = 0x4000, .dw6 = QM_EQC_DW6(QM_EQ_DEPTH, 1)}, dump;
    struct vf_io io;

    vfu_client_server_caps(c, &caps);
    assert_true(caps.twin_socket);
    memset(mem, 0, 1 << 16);
    memcpy(mem + 0x100, &eqc, sizeof(eqc));
    assert_int_equal(vfu_client_dma_map_host(c, 0x10000, 1 << 16, mem, IOMMU_READ | IOMMU_WRITE), 0);
    vfu_client_vf_io(c, &io);
    /* EQC load reads 28 bytes at 0x10100 (a DMA_READ), the dump writes them
     * back at 0x10200 (a DMA_WRITE). */
    assert_int_equal(mailbox(&io, QM_MB_CMD_EQC, false, 0x10100), 0);
    assert_int_equal(mailbox(&io, QM_MB_CMD_EQC, true, 0x10200), 0);
    memcpy(&dump, mem + 0x200, sizeof(dump));
    assert_int_equal(dump.base_l, eqc.base_l);
    assert_int_equal(dump.dw6 & 0xffff, QM_EQ_DEPTH - 1);
    /* Outside the mapping: the device sees a fault, nothing else moves. */
    assert_int_not_equal(mailbox(&io, QM_MB_CMD_EQC, true, 0x40000), 0);
    assert_int_equal(vfu_client_dma_unmap(c, 0x10000, 1 << 16), 0);
    assert_int_equal(vfu_client_dma_unmap(c, 0x10000, 1 << 16), 0); /* nothing left in it */
    /* Map again, and unmap QEMU's way (two halves, the second ending at
     * 2^64): the device no longer reaches the memory. */
    assert_int_equal(vfu_client_dma_map_host(c, 0x10000, 1 << 16, mem, IOMMU_READ | IOMMU_WRITE), 0);
    assert_int_equal(mailbox(&io, QM_MB_CMD_EQC, false, 0x10100), 0);
    assert_int_equal(vfu_client_dma_unmap(c, 0, 1ull << 63), 0);
    assert_int_equal(vfu_client_dma_unmap(c, 1ull << 63, 1ull << 63), 0);
    assert_int_not_equal(mailbox(&io, QM_MB_CMD_EQC, false, 0x10100), 0);
    vfu_client_destroy(c);
    free(mem);
}

static void test_memory_mapped_without_an_fd_and_no_twin_socket_faults_cleanly(void **state)
{
    struct fixture *f = *state;
    struct vfu_client *c = connect_vf(f, 0, false);
    struct vfu_dma_map m = {.argsz = 32, .flags = 3, .addr = 0x10000, .size = 0x10000};
    struct vf_io io;

    assert_int_equal(vfu_client_dma_map_host(c, 0x10000, 0x10000, &m, IOMMU_READ), -ENOTSUP);
    /* A raw fd-less map is accepted (QEMU sends them for ROM), DMA fails. */
    assert_int_equal(vfu_client_call(c, VFU_CMD_DMA_MAP, &m, sizeof(m), NULL, 0, NULL, 0, NULL), 0);
    vfu_client_vf_io(c, &io);
    assert_int_not_equal(mailbox(&io, QM_MB_CMD_EQC, false, 0x10100), 0);
    vfu_client_destroy(c);
}

static void test_dma_logging_reports_pages_the_device_wrote(void **state)
{
    struct fixture *f = *state;
    struct vfu_client *c = connect_vf(f, 0, false);
    struct vm_ram *ram;
    struct qm_eqc eqc = {.base_l = 0x4000, .dw6 = QM_EQC_DW6(QM_EQ_DEPTH, 1)};
    uint64_t page_size = 4096, bitmap[4] = {0};
    struct vf_io io;

    assert_int_equal(vm_ram_create(1 << 20, &ram), 0);
    memcpy(vm_ram_host(ram) + 0x1000, &eqc, sizeof(eqc));
    assert_int_equal(vfu_client_dma_map_fd(c, 0, 1 << 20, vm_ram_fd(ram), 0,
                                           IOMMU_READ | IOMMU_WRITE),
                     0);
    assert_int_equal(vfu_client_dma_logging_start(c, &page_size, NULL, 0), 0);
    assert_int_equal(page_size, 4096);
    vfu_client_vf_io(c, &io);
    assert_int_equal(mailbox(&io, QM_MB_CMD_EQC, false, 0x1000), 0);  /* a read: not logged */
    assert_int_equal(mailbox(&io, QM_MB_CMD_EQC, true, 0x5000), 0);   /* a write to page 5 */
    assert_int_equal(vfu_client_dma_logging_report(c, 0, 1 << 20, 4096, bitmap), 0);
    assert_int_equal(bitmap[0], UINT64_C(1) << 5);
    assert_int_equal(vfu_client_dma_logging_report(c, 0, 1 << 20, 4096, bitmap), 0);
    assert_int_equal(bitmap[0], 0); /* report-and-clear */
    assert_int_equal(vfu_client_dma_logging_stop(c), 0);
    assert_int_equal(vfu_client_dma_logging_stop(c), -EINVAL);
    vfu_client_destroy(c);
    vm_ram_destroy(ram);
}

/* ---- the guest driver over vfio-user ---- */

struct guest_side {
    struct vm_ram *ram;
    struct vfu_client *c;
    struct vf_io io;
};

static void guest_side_attach(const char *path, uint64_t ram_size, struct guest_side *g)
{
    assert_int_equal(vm_ram_create(ram_size, &g->ram), 0);
    g->c = connect_path(path, false);
    assert_int_equal(vfu_client_dma_map_fd(g->c, 0, ram_size, vm_ram_fd(g->ram), 0,
                                           IOMMU_READ | IOMMU_WRITE),
                     0);
    assert_int_equal(vfu_client_irqs_enable(g->c, QM_NUM_VECTORS), 0);
    vfu_client_vf_io(g->c, &g->io);
}

static void guest_side_detach(struct guest_side *g)
{
    vfu_client_destroy(g->c);
    vm_ram_destroy(g->ram);
}

static void small_workload(struct workload_config *cfg, uint32_t jobs)
{
    workload_config_default(cfg);
    cfg->jobs = jobs;
    cfg->qps = 2;
    cfg->vcpus = 2;
    cfg->min_size = 512;
    cfg->max_size = 32 << 10;
}

static void assert_exactly_once(struct workload *w, uint32_t jobs)
{
    struct workload_report r;
    workload_report_get(w, &r);
    if (r.jobs_verified != jobs)
        print_message("first failure: job %llu: %s\n", (unsigned long long)r.first_failed_job,
                      r.first_failure);
    assert_int_equal(r.jobs_verified, jobs);
    assert_int_equal(r.jobs_duplicated, 0);
    assert_int_equal(r.jobs_lost, 0);
    assert_int_equal(r.jobs_failed, 0);
}

static void test_the_guest_driver_runs_compression_jobs_over_vfio_user(void **state)
{
    struct fixture *f = *state;
    struct workload_config cfg;
    struct guest_side g;
    struct workload *w;

    small_workload(&cfg, 24);
    guest_side_attach(test_sock(&f->ts, 0), workload_ram_size(&cfg), &g);
    assert_int_equal(workload_create(&cfg, vm_ram_guest(g.ram), &g.io, &w), 0);
    assert_int_equal(workload_vcpus_start(w), 0);
    assert_int_equal(workload_wait(w, 60000), 0);
    assert_exactly_once(w, cfg.jobs);
    assert_int_equal(workload_shutdown(w), 0);
    workload_destroy(w);
    guest_side_detach(&g);
}

/* Reads a saving stream until a short reply; appends to buf. */
static size_t drain_stream(struct vfu_client *c, uint8_t *buf, size_t cap, size_t at)
{
    for (;;) {
        ssize_t n;
        assert_true(at + 4096 <= cap);
        n = vfu_client_mig_read(c, buf + at, 4096);
        assert_true(n >= 0);
        at += (size_t)n;
        if (n < 4096)
            return at;
    }
}

static void test_a_live_migration_between_two_servers_keeps_every_job_exactly_once(
    void **state)
{
    struct fixture *f = *state;
    struct test_server dst;
    struct workload_config cfg;
    struct guest_side src, d;
    struct workload *w;
    enum vfio_mig_state st;
    uint64_t initial, dirty, page_size = 4096, size_est;
    size_t cap = 1 << 20, len = 0, sent = 0;
    uint8_t *stream = malloc(cap);
    uint64_t *bitmap;

    assert_int_equal(test_server_start(&dst, 1, MIG_HW_V4, NULL), 0);
    small_workload(&cfg, 200);
    guest_side_attach(test_sock(&f->ts, 0), workload_ram_size(&cfg), &src);
    assert_int_equal(workload_create(&cfg, vm_ram_guest(src.ram), &src.io, &w), 0);
    assert_int_equal(workload_vcpus_start(w), 0);

    /* Precopy: device logging on, the match record goes first. */
    assert_int_equal(vfu_client_dma_logging_start(src.c, &page_size, NULL, 0), 0);
    assert_int_equal(vfu_client_mig_state_set(src.c, VFIO_MIG_STATE_PRE_COPY), 0);
    assert_int_equal(vfu_client_precopy_info(src.c, &initial, &dirty), 0);
    assert_true(initial > 0);
    assert_int_equal(vfu_client_mig_data_size(src.c, &size_est), 0);
    assert_true(size_est > 0);
    len = drain_stream(src.c, stream, cap, len);
    assert_true(len >= initial);

    /* The destination takes the early part (and could refuse it now). */
    guest_side_attach(test_sock(&dst, 0), workload_ram_size(&cfg), &d);
    assert_int_equal(vfu_client_mig_state_set(d.c, VFIO_MIG_STATE_RESUMING), 0);
    assert_int_equal(vfu_client_mig_write(d.c, stream, len), 0);
    sent = len;

    /* Stop-and-copy: vCPUs pause, the device stops, the rest of its state
     * and the RAM go over. */
    assert_int_equal(workload_vcpus_pause(w), 0);
    assert_int_equal(vfu_client_mig_state_set(src.c, VFIO_MIG_STATE_STOP_COPY), 0);
    assert_int_equal(vfu_client_mig_state_get(src.c, &st), 0);
    assert_int_equal(st, VFIO_MIG_STATE_STOP_COPY);
    len = drain_stream(src.c, stream, cap, len);
    bitmap = calloc(vm_ram_bitmap_words(src.ram), 8);
    assert_int_equal(vfu_client_dma_logging_report(src.c, 0, vm_ram_size(src.ram), 4096, bitmap), 0);
    assert_true(am_bitmap_weight(bitmap, vm_ram_pages(src.ram)) > 0); /* the device wrote */
    free(bitmap);
    memcpy(vm_ram_host(d.ram), vm_ram_host(src.ram), vm_ram_size(src.ram));
    assert_int_equal(vfu_client_mig_write(d.c, stream + sent, len - sent), 0);
    assert_int_equal(vfu_client_mig_state_set(d.c, VFIO_MIG_STATE_RUNNING), 0);

    /* The guest carries on at the destination. */
    assert_int_equal(workload_vcpus_resume(w, vm_ram_guest(d.ram), &d.io), 0);
    assert_int_equal(workload_wait(w, 60000), 0);
    assert_exactly_once(w, cfg.jobs);
    workload_destroy(w);
    guest_side_detach(&src);
    guest_side_detach(&d);
    test_server_stop(&dst, false);
    free(stream);
}

/* ---- sessions ---- */

static void test_a_client_that_disconnects_mid_migration_leaves_the_vf_reset_and_reusable(
    void **state)
{
    struct fixture *f = *state;
    struct vfu_client *c = connect_vf(f, 0, true);
    uint8_t *mem = aligned_alloc(4096, 1 << 16);
    uint64_t page_size = 4096;
    enum vfio_mig_state st;
    int efd_count_before;
    uint8_t buf[64];

    assert_int_equal(vfu_client_dma_map_host(c, 0, 1 << 16, mem, IOMMU_READ | IOMMU_WRITE), 0);
    assert_int_equal(vfu_client_irqs_enable(c, 4), 0);
    assert_int_equal(vfu_client_dma_logging_start(c, &page_size, NULL, 0), 0);
    assert_int_equal(vfu_client_mig_state_set(c, VFIO_MIG_STATE_PRE_COPY), 0);
    assert_true(vfu_client_mig_read(c, buf, 16) > 0);
    assert_int_equal(vfu_client_mig_state_set(c, VFIO_MIG_STATE_STOP_COPY), 0);
    efd_count_before = (int)test_count_fds();
    assert_true(efd_count_before > (int)f->base_fds);
    vfu_client_destroy(c); /* gone mid-stream */
    assert_int_equal(test_wait_fds(f->base_fds), f->base_fds);

    c = connect_vf(f, 0, false);
    assert_int_equal(vfu_client_mig_state_get(c, &st), 0);
    assert_int_equal(st, VFIO_MIG_STATE_RUNNING);
    assert_int_equal(vfu_client_mig_read(c, buf, 16), -EINVAL); /* the stream ended */
    assert_int_equal(vfu_client_dma_logging_stop(c), -EINVAL);  /* logging was stopped */
    assert_int_equal(iommu_mapping_count(qm_dev_iommu(model(f), 1)), 0);
    assert_int_equal(vfu_client_mig_state_set(c, VFIO_MIG_STATE_PRE_COPY), 0);
    assert_true(vfu_client_mig_read(c, buf, 16) > 0); /* a fresh stream */
    vfu_client_destroy(c);
    free(mem);
}

struct hammer {
    const char *path;
    unsigned rounds;
    int ret;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    struct vfu_client *c;
    struct vf_io io;

    h->ret = vfu_client_connect(h->path, NULL, &c);
    if (h->ret)
        return NULL;
    vfu_client_vf_io(c, &io);
    for (unsigned i = 0; i < h->rounds && !h->ret; i++) {
        uint32_t v = i & 1, back = 2;
        h->ret = io.mmio_write(io.opaque, QM_VF_STATE, &v, 4);
        if (!h->ret)
            h->ret = io.mmio_read(io.opaque, QM_VF_STATE, &back, 4);
        if (!h->ret && back != v)
            h->ret = -EIO;
    }
    vfu_client_destroy(c);
    return NULL;
}

static void test_two_clients_on_two_vfs_work_at_once_and_a_second_client_per_vf_is_refused(
    void **state)
{
    struct fixture *f = *state;
    struct hammer h[2] = {{test_sock(&f->ts, 0), 500, 0}, {test_sock(&f->ts, 1), 500, 0}};
    pthread_t t[2];
    struct vfu_client *c1, *c2 = NULL;

    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer_main, &h[i]), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(h[i].ret, 0);
    }
    c1 = connect_vf(f, 0, false);
    assert_true(vfu_client_connect(test_sock(&f->ts, 0), NULL, &c2) < 0);
    assert_null(c2);
    vfu_client_destroy(c1);
    c1 = connect_vf(f, 0, false); /* free again */
    vfu_client_destroy(c1);
}

static void test_a_restarted_server_serves_the_same_sockets_and_replaces_stale_ones(
    void **state)
{
    struct fixture *f = *state;
    char dir[64];
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct vfu_client *c;
    enum vfio_mig_state st;
    int stale;

    c = connect_vf(f, 0, false);
    assert_int_equal(vfu_client_mig_state_set(c, VFIO_MIG_STATE_STOP), 0);
    snprintf(dir, sizeof(dir), "%s", f->ts.dir);
    test_server_stop(&f->ts, true);
    /* The old client sees the server gone. */
    assert_true(vfu_client_mig_state_get(c, &st) < 0);
    vfu_client_destroy(c);
    /* A stale socket from a server that died without cleaning up. */
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/vf0.sock", dir);
    stale = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(stale, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(stale);
    assert_int_equal(test_server_start(&f->ts, 2, MIG_HW_V4, dir), 0);
    c = connect_vf(f, 0, false);
    assert_int_equal(vfu_client_mig_state_get(c, &st), 0);
    assert_int_equal(st, VFIO_MIG_STATE_RUNNING);
    vfu_client_destroy(c);
}

/* ---- a server that answers VERSION and then nothing ---- */

struct silent_server {
    int listen_fd;
    int requests; /* commands read after VERSION */
};

static void *silent_server_main(void *arg)
{
    struct silent_server *ss = arg;
    int fd = accept4(ss->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    struct vfu_tran t;
    struct vfu_rx rx;
    struct vfu_msg m;

    if (fd < 0)
        return NULL;
    vfu_tran_sock_init(&t, fd);
    vfu_rx_init(&rx, VFU_HDR_TYPE_COMMAND, 1 << 20, VFU_MSG_MAX_FDS);
    if (vfu_rx_recv(&rx, &t, &m) == 1) {
        struct vfu_hdr h = {.msg_id = m.hdr.msg_id, .cmd = m.hdr.cmd, .flags = VFU_HDR_TYPE_REPLY};
        struct vfu_version v = {0, 0};
        struct iovec part = {&v, sizeof(v)};
        vfu_msg_release(&m);
        vfu_send(&t, &h, &part, 1, NULL, 0); /* the version alone: no capabilities */
        while (vfu_rx_recv(&rx, &t, &m) == 1) {
            ss->requests++;
            vfu_msg_release(&m);
        }
    }
    vfu_rx_reset(&rx);
    close(fd);
    return NULL;
}

static void test_a_server_that_stays_silent_gives_etimedout_then_eio(void **state)
{
    struct fixture *f = *state;
    struct silent_server ss = {.listen_fd = -1};
    struct vfu_client_opts o = {.timeout_ms = 100};
    struct vfu_client *c = NULL;
    char path[128];
    pthread_t t;
    uint32_t v;
    uint64_t t0;

    snprintf(path, sizeof(path), "%s/silent.sock", f->ts.dir);
    assert_int_equal(vfu_sock_listen(path, &ss.listen_fd), 0);
    assert_int_equal(pthread_create(&t, NULL, silent_server_main, &ss), 0);
    assert_int_equal(vfu_client_connect(path, &o, &c), 0);
    t0 = am_now_ns();
    assert_int_equal(vfu_client_region_read(c, VFU_REGION_BAR2, QM_VF_STATE, &v, 4), -ETIMEDOUT);
    assert_true(am_now_ns() - t0 >= 90ull * 1000000u); /* it did wait for the reply */
    /* Replies can no longer be matched: nothing more is sent. */
    assert_int_equal(vfu_client_region_read(c, VFU_REGION_BAR2, QM_VF_STATE, &v, 4), -EIO);
    vfu_client_destroy(c);
    pthread_join(t, NULL);
    assert_int_equal(ss.requests, 1);
    close(ss.listen_fd);
    unlink(path);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_the_client_negotiates_and_describes_the_vf),
        T(test_vf_io_over_the_client_reads_and_writes_bar2),
        T(test_posted_writes_keep_their_order_with_later_reads),
        T(test_a_device_raised_msi_reaches_the_client_eventfd_once),
        T(test_device_dma_to_memory_mapped_without_an_fd_goes_over_the_twin_socket),
        T(test_memory_mapped_without_an_fd_and_no_twin_socket_faults_cleanly),
        T(test_dma_logging_reports_pages_the_device_wrote),
        T(test_the_guest_driver_runs_compression_jobs_over_vfio_user),
        T(test_a_live_migration_between_two_servers_keeps_every_job_exactly_once),
        T(test_a_client_that_disconnects_mid_migration_leaves_the_vf_reset_and_reusable),
        T(test_two_clients_on_two_vfs_work_at_once_and_a_second_client_per_vf_is_refused),
        T(test_a_restarted_server_serves_the_same_sockets_and_replaces_stale_ones),
        T(test_a_server_that_stays_silent_gives_etimedout_then_eio),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
