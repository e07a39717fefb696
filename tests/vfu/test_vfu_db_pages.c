/* BAR4, the doorbell pages, over vfio-user: what REGION_INFO says about it
 * (flags, size, the sparse-mmap capability, one sealed memfd, the argsz
 * rule), a client that maps it and sees the device's memory, trapped access
 * and its refusals, DEVICE_RESET through the mapping, a server without
 * doorbell isolation, a ZIP job whose doorbell is a store into the mapped
 * page, and a hostile server whose REGION_INFO must not make the client map
 * anything outside its reservation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <zlib.h>

#include "qm/qm_debug.h"
#include "qm/qm_hw.h"
#include "vfu/client.h"
#include "vfu/vfu_pci.h"
#include "vmm/vm_ram.h"
#include "zip/zip_hw.h"
#include "vfu_test_util.h"

#define QPS 2u
/* 2 queue pairs: two 64 KiB pages, a power of two already. */
#define DB_SIZE (QPS * (uint64_t)QM_DB_PAGE_SIZE)
#define CQE_WAIT_MS 20000

struct fixture {
    struct test_server ts;
    unsigned base_fds;
};

static int setup_policy(void **state, bool isolation, enum vfu_db_mmap policy)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct vfu_device_config dev;

    test_dev_config(&dev, 1, MIG_HW_V4);
    dev.qps_per_vf = QPS;
    dev.db_isolation = isolation;
    dev.db_mmap = policy;
    if (!f || test_server_start_dev(&f->ts, &dev, NULL)) {
        free(f);
        return -1;
    }
    f->base_fds = test_count_fds();
    *state = f;
    return 0;
}

static int setup_with(void **state, bool isolation)
{
    return setup_policy(state, isolation, VFU_DB_MMAP_COOPERATIVE);
}

static int setup(void **state)
{
    return setup_with(state, true);
}

static int setup_always(void **state)
{
    return setup_policy(state, true, VFU_DB_MMAP_ALWAYS);
}

static int setup_never(void **state)
{
    return setup_policy(state, true, VFU_DB_MMAP_NEVER);
}

static int setup_no_isolation(void **state)
{
    return setup_with(state, false);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->ts.srv)
        test_server_stop(&f->ts, false);
    free(f);
    return 0;
}

static struct qm_dev *model(struct fixture *f)
{
    return vfu_device_qm(vfu_server_device(f->ts.srv));
}

/* A client whose guest waits for taken doorbells (as accmig vm's), or one
 * that does not say so (as QEMU). */
static struct vfu_client *connect_as(struct fixture *f, bool cooperative)
{
    struct vfu_client_opts o = {.cooperative_doorbells = cooperative};
    struct vfu_client *c = NULL;

    assert_int_equal(vfu_client_connect(test_sock(&f->ts, 0), &o, &c), 0);
    return c;
}

static struct vfu_client *connect_vf(struct fixture *f)
{
    return connect_as(f, true);
}

static int raw_open_coop(struct raw_conn *rc, const char *path)
{
    int ret = raw_connect(rc, path);

    if (ret)
        return ret;
    return raw_version(rc, "{\"capabilities\":{\"max_msg_fds\":8,"
                           "\"accmig_cooperative_doorbells\":true}}");
}

/* One REGION_INFO over a raw connection: the reply payload into rep (cap
 * bytes), its length and its descriptors (closed unless fds is given). */
static int raw_region_info(struct raw_conn *rc, uint32_t index, uint32_t argsz, uint8_t *rep,
                           size_t cap, size_t *len, int *fds, size_t *nfds)
{
    struct vfu_region_info req = {.argsz = argsz, .index = index};
    struct vfu_msg m;
    int ret = raw_send(rc, VFU_CMD_DEVICE_GET_REGION_INFO, 0, &req, sizeof(req), NULL, 0);

    if (ret)
        return ret;
    ret = raw_recv(rc, &m);
    if (ret)
        return ret;
    *len = m.len;
    memcpy(rep, m.payload, AM_MIN(m.len, cap));
    *nfds = m.nfds;
    for (size_t i = 0; i < m.nfds; i++) {
        int fd = vfu_msg_take_fd(&m, i);
        if (fds)
            fds[i] = fd;
        else
            close(fd);
    }
    vfu_msg_release(&m);
    return 0;
}

/* ---- what REGION_INFO says ---- */

static void test_region_info_of_bar4_gives_mmap_a_sparse_cap_and_one_sealed_memfd(void **state)
{
    struct fixture *f = *state;
    struct raw_conn rc;
    struct vfu_region_info info;
    struct vfu_region_sparse_mmap sp;
    struct vfu_sparse_mmap_area area;
    uint8_t rep[4096];
    size_t len, nfds;
    struct stat st;
    int fd = -1, seals;

    assert_int_equal(qm_db_bar_size(model(f), 1), DB_SIZE);
    assert_int_equal(raw_open_coop(&rc, test_sock(&f->ts, 0)), 0);
    /* Room for the caps: everything, and one descriptor. */
    assert_int_equal(raw_region_info(&rc, VFU_REGION_BAR4, 64, rep, sizeof(rep), &len, &fd, &nfds),
                     0);
    assert_int_equal(len, 64);
    assert_int_equal(nfds, 1);
    memcpy(&info, rep, sizeof(info));
    assert_int_equal(info.argsz, 64);
    assert_int_equal(info.index, VFU_REGION_BAR4);
    assert_int_equal(info.flags, VFU_REGION_FLAG_READ | VFU_REGION_FLAG_WRITE |
                                     VFU_REGION_FLAG_MMAP | VFU_REGION_FLAG_CAPS);
    assert_int_equal(info.cap_offset, 32);
    assert_int_equal(info.size, DB_SIZE);
    assert_int_equal(info.offset, 0);
    memcpy(&sp, rep + 32, sizeof(sp));
    assert_int_equal(sp.header.id, VFU_REGION_INFO_CAP_SPARSE_MMAP);
    assert_int_equal(sp.header.version, 1);
    assert_int_equal(sp.header.next, 0);
    assert_int_equal(sp.nr_areas, 1);
    assert_int_equal(sp.reserved, 0);
    memcpy(&area, rep + 48, sizeof(area));
    assert_int_equal(area.offset, 0);
    assert_int_equal(area.size, DB_SIZE);
    /* The memfd covers the region and can neither shrink nor grow. */
    assert_int_equal(fstat(fd, &st), 0);
    assert_true((uint64_t)st.st_size >= DB_SIZE);
    seals = fcntl(fd, F_GET_SEALS);
    assert_true(seals >= 0);
    assert_int_equal(seals & (F_SEAL_SHRINK | F_SEAL_GROW), F_SEAL_SHRINK | F_SEAL_GROW);
    assert_int_not_equal(ftruncate(fd, 4096), 0);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    close(fd);

    /* Too small for the caps (32, and 63): argsz says what is needed, no
     * caps, no CAPS flag (QEMU 10.2 refuses CAPS at cap_offset 0), no
     * descriptor, and never more bytes than asked for. */
    for (uint32_t argsz = 32; argsz <= 63; argsz += 31) {
        assert_int_equal(raw_region_info(&rc, VFU_REGION_BAR4, argsz, rep, sizeof(rep), &len,
                                         NULL, &nfds),
                         0);
        assert_int_equal(len, 32);
        assert_int_equal(nfds, 0);
        memcpy(&info, rep, sizeof(info));
        assert_int_equal(info.argsz, 64);
        assert_int_equal(info.cap_offset, 0);
        assert_int_equal(info.flags,
                         VFU_REGION_FLAG_READ | VFU_REGION_FLAG_WRITE | VFU_REGION_FLAG_MMAP);
        assert_int_equal(info.size, DB_SIZE);
    }
    /* A larger argsz gets the 64 bytes there are. */
    assert_int_equal(raw_region_info(&rc, VFU_REGION_BAR4, 4096, rep, sizeof(rep), &len, NULL,
                                     &nfds),
                     0);
    assert_int_equal(len, 64);
    assert_int_equal(nfds, 1);
    memcpy(&info, rep, sizeof(info));
    assert_int_equal(info.argsz, 64);
    /* BAR2 is still trapped only. */
    assert_int_equal(raw_region_info(&rc, VFU_REGION_BAR2, 64, rep, sizeof(rep), &len, NULL,
                                     &nfds),
                     0);
    memcpy(&info, rep, sizeof(info));
    assert_int_equal(len, 32);
    assert_int_equal(nfds, 0);
    assert_int_equal(info.flags, VFU_REGION_FLAG_READ | VFU_REGION_FLAG_WRITE);
    raw_close(&rc);
    assert_int_equal(test_wait_fds(f->base_fds), f->base_fds);
}

static void test_a_client_that_takes_no_descriptors_is_not_offered_the_mmap(void **state)
{
    struct fixture *f = *state;
    struct raw_conn rc;
    struct vfu_region_info info;
    uint8_t rep[256];
    size_t len, nfds;

    assert_int_equal(raw_connect(&rc, test_sock(&f->ts, 0)), 0);
    assert_int_equal(raw_version(&rc, "{\"capabilities\":{\"max_msg_fds\":0}}"), 0);
    assert_int_equal(raw_region_info(&rc, VFU_REGION_BAR4, 64, rep, sizeof(rep), &len, NULL,
                                     &nfds),
                     0);
    memcpy(&info, rep, sizeof(info));
    assert_int_equal(len, 32);
    assert_int_equal(nfds, 0);
    assert_int_equal(info.argsz, 32);
    assert_int_equal(info.size, DB_SIZE);
    assert_int_equal(info.flags, VFU_REGION_FLAG_READ | VFU_REGION_FLAG_WRITE);
    raw_close(&rc);
}

static void test_config_space_declares_bar4_as_a_64_bit_memory_bar_of_the_region_size(void **state)
{
    struct fixture *f = *state;
    struct vfu_client *c = connect_vf(f);
    uint32_t v, ones = 0xffffffffu;

    assert_int_equal(vfu_client_region_read(c, VFU_REGION_CONFIG, 0x20, &v, 4), 0);
    assert_int_equal(v, 0x4);
    assert_int_equal(vfu_client_region_write(c, VFU_REGION_CONFIG, 0x20, &ones, 4), 0);
    assert_int_equal(vfu_client_region_read(c, VFU_REGION_CONFIG, 0x20, &v, 4), 0);
    assert_int_equal(v, ((uint32_t)~(DB_SIZE - 1) & 0xfffffff0u) | 0x4);
    /* Isolation on: QUE_ISO_CFG bit0 tells the driver to use BAR4. */
    assert_int_equal(vfu_client_region_read(c, VFU_REGION_BAR2, QM_QUE_ISO_CFG, &v, 4), 0);
    assert_int_equal(v & QM_QUE_ISO_EN, QM_QUE_ISO_EN);
    vfu_client_destroy(c);
}

/* ---- a client that maps it ---- */

/* The words the device writes to tell the guest whether it polls (qm_hw.h,
 * QM_DB_POLL_STATE): they may change at any sweep. */
static bool poll_state_word(uint64_t off)
{
    return off % QM_DB_PAGE_SIZE == QM_DB_POLL_STATE;
}

static uint64_t word_at(const uint8_t *base, uint64_t off)
{
    return __atomic_load_n((const uint64_t *)(const void *)(base + off), __ATOMIC_ACQUIRE);
}

static void test_a_mapped_bar4_shows_idle_doorbells_and_the_memory_region_access_sees(void **state)
{
    struct fixture *f = *state;
    struct vfu_client *c = connect_vf(f);
    static const uint64_t spots[] = {0, 8, 0x0ff8, 0x1010, 0x2000, QM_DB_PAGE_SIZE + 0x10,
                                     DB_SIZE - 8};
    struct vf_io io;
    uint8_t *base;
    void *b2;
    uint64_t size, size2, v;

    vfu_client_vf_io(c, &io);
    assert_null(io.db_pages); /* nothing mapped yet: doorbells trapped */
    assert_non_null(io.db_write);
    assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, (void **)&base, &size), 0);
    assert_int_equal(size, DB_SIZE);
    /* Idle, but for the poll-state words the device writes (qm_hw.h). */
    for (uint64_t off = 0; off < size; off += 8)
        if (word_at(base, off) != QM_DB_IDLE && !poll_state_word(off))
            fail_msg("word at 0x%llx is not idle", (unsigned long long)off);
    /* Non-doorbell words are plain memory, shared with the device: a store
     * through the mapping reads back through REGION_READ, and back. */
    for (size_t i = 0; i < AM_ARRAY_SIZE(spots); i++) {
        uint64_t garbage = 0x5a5a000000000000ull | spots[i];
        __atomic_store_n((uint64_t *)(void *)(base + spots[i]), garbage, __ATOMIC_RELEASE);
        assert_int_equal(vfu_client_region_read(c, VFU_REGION_BAR4, spots[i], &v, 8), 0);
        assert_int_equal(v, garbage);
        garbage = ~garbage;
        assert_int_equal(vfu_client_region_write(c, VFU_REGION_BAR4, spots[i], &garbage, 8), 0);
        assert_int_equal(word_at(base, spots[i]), garbage);
    }
    /* Smaller trapped accesses see the same bytes. */
    assert_int_equal(vfu_client_region_read(c, VFU_REGION_BAR4, 4, &v, 4), 0);
    assert_int_equal((uint32_t)v, (uint32_t)(word_at(base, 0) >> 32));
    /* vf_io now hands the guest the pages. */
    vfu_client_vf_io(c, &io);
    assert_ptr_equal(io.db_pages, base);
    assert_int_equal(io.db_pages_size, DB_SIZE);
    assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, &b2, &size2), -EEXIST);
    assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR2, &b2, &size2), -ENOTSUP);
    assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR0, &b2, &size2), -ENOTSUP);
    assert_int_equal(vfu_client_region_map(c, VFU_NUM_REGIONS, &b2, &size2), -EINVAL);
    vfu_client_destroy(c);
    assert_int_equal(test_wait_fds(f->base_fds), f->base_fds);
}

static void test_device_reset_sets_every_doorbell_word_idle_as_the_mapping_shows(void **state)
{
    struct fixture *f = *state;
    struct vfu_client *c = connect_vf(f);
    uint16_t flr = 0x8000 | 0x2810;
    uint8_t *base;
    uint64_t size;

    assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, (void **)&base, &size), 0);
    for (int round = 0; round < 2; round++) {
        /* Garbage everywhere, doorbell words included (the device takes
         * those and ignores them). */
        for (uint64_t off = 0; off < size; off += 8)
            __atomic_store_n((uint64_t *)(void *)(base + off), 0x1234567800000000ull | off,
                             __ATOMIC_RELAXED);
        if (round == 0)
            assert_int_equal(vfu_client_reset(c), 0);
        else /* a PCIe FLR through config space is the same reset */
            assert_int_equal(vfu_client_region_write(c, VFU_REGION_CONFIG, VFU_PCI_EXP_CAP + 8,
                                                     &flr, 2),
                             0);
        for (uint64_t off = 0; off < size; off += 8)
            if (word_at(base, off) != QM_DB_IDLE && !poll_state_word(off))
                fail_msg("round %d: word at 0x%llx is 0x%llx after reset", round,
                         (unsigned long long)off, (unsigned long long)word_at(base, off));
    }
    vfu_client_destroy(c);
}

/* ---- trapped access: refusals ---- */

static void test_bar4_region_access_out_of_bounds_count_0_or_odd_sizes_is_refused(void **state)
{
    struct fixture *f = *state;
    struct raw_conn rc;
    struct {
        struct vfu_region_access a;
        uint8_t data[16];
    } w = {{0}, {0}};
    static const struct {
        uint64_t off;
        uint32_t count;
    } bad[] = {
        {DB_SIZE, 8},         {DB_SIZE - 4, 8}, {DB_SIZE, 1},     {UINT64_MAX - 3, 8},
        {UINT64_MAX, 1},      {0, 0},           {0, 3},           {4, 8},
        {0, 16},              {1, 2},           {DB_SIZE + QM_DB_PAGE_SIZE + QM_DB_SQCQ, 8},
    };
    uint64_t v = 0;

    assert_int_equal(raw_open_coop(&rc, test_sock(&f->ts, 0)), 0);
    for (size_t i = 0; i < AM_ARRAY_SIZE(bad); i++) {
        struct vfu_region_access a = {.offset = bad[i].off, .region = VFU_REGION_BAR4,
                                      .count = bad[i].count};
        size_t wlen = sizeof(w.a) + AM_MIN(bad[i].count, sizeof(w.data));
        assert_int_equal(raw_call(&rc, VFU_CMD_REGION_READ, &a, sizeof(a), NULL, 0, NULL, 0, NULL),
                         -EINVAL);
        w.a = a;
        if (bad[i].count > sizeof(w.data))
            continue;
        assert_int_equal(raw_call(&rc, VFU_CMD_REGION_WRITE, &w, wlen, NULL, 0, NULL, 0, NULL),
                         -EINVAL);
    }
    raw_close(&rc);
    /* The server keeps serving: a client reads the last word. */
    {
        struct vfu_client *c = connect_vf(f);
        assert_int_equal(vfu_client_region_read(c, VFU_REGION_BAR4, DB_SIZE - 8, &v, 8), 0);
        assert_int_equal(v, QM_DB_IDLE);
        vfu_client_destroy(c);
    }
}

static void test_bar4_access_is_gated_by_migration_state_as_bar2_is(void **state)
{
    struct fixture *f = *state;
    struct vfu_client *c = connect_vf(f);
    uint64_t v = 7;

    assert_int_equal(vfu_client_mig_state_set(c, VFIO_MIG_STATE_STOP), 0);
    assert_int_equal(vfu_client_region_write(c, VFU_REGION_BAR4, 0, &v, 8), 0);
    assert_int_equal(vfu_client_mig_state_set(c, VFIO_MIG_STATE_STOP_COPY), 0);
    assert_int_equal(vfu_client_region_read(c, VFU_REGION_BAR4, 0, &v, 8), 0);
    assert_int_equal(v, 7);
    assert_int_equal(vfu_client_region_write(c, VFU_REGION_BAR4, 0, &v, 8), -EBUSY);
    assert_int_equal(vfu_client_mig_state_set(c, VFIO_MIG_STATE_STOP), 0);
    assert_int_equal(vfu_client_mig_state_set(c, VFIO_MIG_STATE_RESUMING), 0);
    assert_int_equal(vfu_client_region_read(c, VFU_REGION_BAR4, 0, &v, 8), -EBUSY);
    assert_int_equal(vfu_client_region_write(c, VFU_REGION_BAR4, 0, &v, 8), -EBUSY);
    vfu_client_destroy(c);
}

/* ---- without doorbell isolation ---- */

static void test_without_doorbell_isolation_there_is_no_bar4(void **state)
{
    struct fixture *f = *state;
    struct vfu_client *c = connect_vf(f);
    struct vfu_region_info info;
    struct raw_conn rc;
    struct vf_io io;
    uint8_t rep[256];
    size_t len, nfds;
    uint32_t v = 1, ones = 0xffffffffu;
    uint64_t size;
    void *base;

    assert_int_equal(qm_db_bar_size(model(f), 1), 0);
    assert_int_equal(vfu_client_region_info(c, VFU_REGION_BAR4, &info), 0);
    assert_int_equal(info.size, 0);
    assert_int_equal(info.flags, 0);
    assert_int_equal(info.cap_offset, 0);
    assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, &base, &size), -ENOTSUP);
    assert_int_equal(vfu_client_region_read(c, VFU_REGION_BAR2, QM_QUE_ISO_CFG, &v, 4), 0);
    assert_int_equal(v, 0);
    assert_int_equal(vfu_client_region_read(c, VFU_REGION_BAR4, 0, &v, 4), -EINVAL);
    assert_int_equal(vfu_client_region_write(c, VFU_REGION_BAR4, 0, &v, 4), -EINVAL);
    assert_int_equal(vfu_client_region_write(c, VFU_REGION_CONFIG, 0x20, &ones, 4), 0);
    assert_int_equal(vfu_client_region_read(c, VFU_REGION_CONFIG, 0x20, &v, 4), 0);
    assert_int_equal(v, 0);
    vfu_client_vf_io(c, &io);
    assert_null(io.db_pages);
    assert_int_equal(io.db_pages_size, 0);
    vfu_client_destroy(c);
    /* No descriptor with the reply either. */
    assert_int_equal(raw_open_coop(&rc, test_sock(&f->ts, 0)), 0);
    assert_int_equal(raw_region_info(&rc, VFU_REGION_BAR4, 64, rep, sizeof(rep), &len, NULL,
                                     &nfds),
                     0);
    assert_int_equal(len, 32);
    assert_int_equal(nfds, 0);
    raw_close(&rc);
}

/* ---- a ZIP job whose doorbell is a store into the mapped page ---- */

/* Guest RAM layout (IOVA = guest physical address). */
#define G_CTX 0x1000u
#define G_EQE 0x2000u
#define G_AEQE 0x4000u
#define G_SQC_BT 0x5000u
#define G_CQC_BT 0x6000u
#define G_SQ 0x10000u
#define G_CQ 0x30000u
#define G_SRC 0x40000u
#define G_DST 0x50000u
#define G_RAM (1u << 20)
#define JOB_LEN 4096u

struct guest {
    struct vm_ram *ram;
    uint8_t *mem;
    struct vfu_client *c;
    struct vf_io io;
    uint8_t *db; /* the mapped doorbell pages */
    uint16_t sq_tail, cq_head;
};

static void g_wr32(struct guest *g, uint64_t off, uint32_t v)
{
    assert_int_equal(g->io.mmio_write(g->io.opaque, off, &v, 4), 0);
}

static void g_wr64(struct guest *g, uint64_t off, uint64_t v)
{
    assert_int_equal(g->io.mmio_write(g->io.opaque, off, &v, 8), 0);
}

/* A mailbox command through BAR2 (the context at G_CTX); its status. */
static unsigned g_mailbox(struct guest *g, unsigned cmd, uint16_t qn, const void *ctx,
                          size_t ctx_len, uint64_t base)
{
    struct qm_mailbox m = {
        .w0 = (uint16_t)(cmd | 1u << QM_MB_BUSY_SHIFT),
        .queue_num = qn,
        .base_l = (uint32_t)base,
        .base_h = (uint32_t)(base >> 32),
    };
    uint32_t w0 = 0;

    if (ctx)
        memcpy(g->mem + G_CTX, ctx, ctx_len);
    assert_int_equal(g->io.mmio_write(g->io.opaque, QM_MAILBOX, &m, sizeof(m)), 0);
    assert_int_equal(g->io.mmio_read(g->io.opaque, QM_MAILBOX, &w0, 4), 0);
    assert_false(w0 & (1u << QM_MB_BUSY_SHIFT));
    return (w0 >> QM_MB_STATUS_SHIFT) & QM_MB_STATUS_MASK;
}

/* The Linux VF driver's start, trimmed: event queues, context tables,
 * queue 0 for compression, the VF ready; BAR4 mapped. */
static void guest_start(struct fixture *f, struct guest *g)
{
    struct qm_eqc eqc = {0};
    struct qm_sqc sqc = {0};
    struct qm_cqc cqc = {0};
    uint64_t size;

    memset(g, 0, sizeof(*g));
    assert_int_equal(vm_ram_create(G_RAM, &g->ram), 0);
    g->mem = vm_ram_host(g->ram);
    g->c = connect_vf(f);
    assert_int_equal(vfu_client_dma_map_fd(g->c, 0, G_RAM, vm_ram_fd(g->ram), 0,
                                           IOMMU_READ | IOMMU_WRITE),
                     0);
    assert_int_equal(vfu_client_region_map(g->c, VFU_REGION_BAR4, (void **)&g->db, &size), 0);
    assert_int_equal(size, DB_SIZE);
    vfu_client_vf_io(g->c, &g->io);
    assert_ptr_equal(g->io.db_pages, g->db);

    eqc.base_l = G_EQE;
    eqc.dw6 = QM_EQC_DW6(QM_EQ_DEPTH, 1);
    assert_int_equal(g_mailbox(g, QM_MB_CMD_EQC, 0, &eqc, sizeof(eqc), G_CTX), 0);
    eqc.base_l = G_AEQE;
    eqc.dw6 = QM_EQC_DW6(QM_AEQ_DEPTH, 1);
    assert_int_equal(g_mailbox(g, QM_MB_CMD_AEQC, 0, &eqc, sizeof(eqc), G_CTX), 0);
    assert_int_equal(g_mailbox(g, QM_MB_CMD_SQC_BT, 0, NULL, 0, G_SQC_BT), 0);
    assert_int_equal(g_mailbox(g, QM_MB_CMD_CQC_BT, 0, NULL, 0, G_CQC_BT), 0);
    g_wr32(g, QM_PAGE_SIZE, 0);
    /* EQ/AEQ doorbells stay in BAR2. */
    g_wr64(g, QM_DB_EQAEQ, qm_db_value(0, QM_DB_CMD_AEQ, 0, 0));
    g_wr64(g, QM_DB_EQAEQ, qm_db_value(0, QM_DB_CMD_EQ, 0, 0));
    g_wr32(g, QM_VF_STATE, QM_VF_STATE_READY);

    sqc.base_l = G_SQ;
    sqc.dw3 = QM_SQC_DW3(QM_SQ_DEPTH);
    sqc.cq_num = 0;
    sqc.w13 = QM_SQC_W13(ZIP_ALG_COMPRESS);
    assert_int_equal(g_mailbox(g, QM_MB_CMD_SQC, 0, &sqc, sizeof(sqc), G_CTX), 0);
    cqc.base_l = G_CQ;
    cqc.dw3 = QM_CQC_DW3(QM_CQ_DEPTH);
    cqc.dw6 = QM_CQC_DW6_PHASE;
    assert_int_equal(g_mailbox(g, QM_MB_CMD_CQC, 0, &cqc, sizeof(cqc), G_CTX), 0);
}

static void guest_stop(struct guest *g)
{
    vfu_client_destroy(g->c);
    vm_ram_destroy(g->ram);
}

/* Writes a deflate SQE for JOB_LEN bytes of compressible text at the SQ
 * tail; returns the new tail (the doorbell's index). */
static uint16_t guest_queue_job(struct guest *g, unsigned seed)
{
    uint32_t sqe[ZIP_SQE_DWORDS] = {0};
    char *src = (char *)g->mem + G_SRC;

    for (unsigned i = 0; i < JOB_LEN; i++)
        src[i] = "the doorbell page is mapped into the guest\n"[(i + seed) % 43];
    memset(g->mem + G_DST, 0, 2 * JOB_LEN);
    sqe[ZIP_SQE_INPUT_LEN] = JOB_LEN;
    sqe[ZIP_SQE_DW7] = ZIP_SQE_TYPE_V3 << ZIP_DW7_SQE_TYPE_SHIFT;
    sqe[ZIP_SQE_DW9] = ZIP_REQ_DEFLATE | ZIP_BUF_FLAT << ZIP_DW9_BUF_TYPE_SHIFT;
    sqe[ZIP_SQE_DEST_AVAIL] = 2 * JOB_LEN;
    sqe[ZIP_SQE_SRC_ADDR_L] = G_SRC;
    sqe[ZIP_SQE_DST_ADDR_L] = G_DST;
    sqe[ZIP_SQE_TAG_L] = 100 + seed;
    memcpy(g->mem + G_SQ + (uint64_t)g->sq_tail * ZIP_SQE_SIZE, sqe, sizeof(sqe));
    g->sq_tail = (uint16_t)((g->sq_tail + 1) % QM_SQ_DEPTH);
    return g->sq_tail;
}

/* Waits (bounded, no timing asserted) for the CQE at the head; consumes
 * it. The phase of the first lap is 1. */
static bool guest_cqe_wait(struct guest *g, uint16_t *sq_head)
{
    struct qm_cqe *cqe = (struct qm_cqe *)(void *)(g->mem + G_CQ + (uint64_t)g->cq_head * 16);
    uint16_t *w7 = (uint16_t *)(void *)((uint8_t *)cqe + offsetof(struct qm_cqe, w7));
    uint64_t deadline = am_now_ns() + (uint64_t)CQE_WAIT_MS * 1000000u;

    while (!(__atomic_load_n(w7, __ATOMIC_ACQUIRE) & 1u)) {
        if (am_now_ns() > deadline)
            return false;
        usleep(200);
    }
    *sq_head = cqe->sq_head;
    g->cq_head++;
    return true;
}

/* The job's output inflates back to its input. */
static void guest_check_output(struct guest *g, unsigned slot)
{
    const uint32_t *sqe = (const uint32_t *)(const void *)(g->mem + G_SQ +
                                                           (uint64_t)slot * ZIP_SQE_SIZE);
    uint8_t out[JOB_LEN];
    z_stream z = {0};

    assert_int_equal(sqe[ZIP_SQE_DW3] & ZIP_DW3_STATUS_MASK, 0);
    assert_true(sqe[ZIP_SQE_PRODUCED] > 0 && sqe[ZIP_SQE_PRODUCED] < JOB_LEN);
    assert_int_equal(inflateInit2(&z, -15), Z_OK);
    z.next_in = g->mem + G_DST;
    z.avail_in = sqe[ZIP_SQE_PRODUCED];
    z.next_out = out;
    z.avail_out = sizeof(out);
    assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
    assert_int_equal(z.total_out, JOB_LEN);
    inflateEnd(&z);
    assert_memory_equal(out, g->mem + G_SRC, JOB_LEN);
}

static void test_a_doorbell_stored_into_the_mapped_page_runs_the_job_and_its_cqe_appears(
    void **state)
{
    struct fixture *f = *state;
    uint64_t *sq_db;
    struct guest g;
    uint16_t head;

    guest_start(f, &g);
    sq_db = (uint64_t *)(void *)(g.db + 0 * QM_DB_PAGE_SIZE + QM_DB_SQCQ);
    /* The SQE is written before the doorbell: a release store, as the
     * guest driver would. No message goes to the server for it. */
    head = guest_queue_job(&g, 1);
    __atomic_store_n(sq_db, qm_db_value(0, QM_DB_CMD_SQ, head, 0), __ATOMIC_RELEASE);
    assert_true(guest_cqe_wait(&g, &head));
    assert_int_equal(head, 0);
    guest_check_output(&g, 0);
    /* The device took the doorbell: the word is idle again. */
    assert_int_equal(word_at(g.db, QM_DB_SQCQ), QM_DB_IDLE);
    /* The CQ doorbell through the mapping too, then a second job rung
     * through the trapped path (REGION_WRITE of BAR4). */
    __atomic_store_n(sq_db, qm_db_value(0, QM_DB_CMD_CQ, g.cq_head, 0), __ATOMIC_RELEASE);
    head = guest_queue_job(&g, 2);
    {
        uint64_t db = qm_db_value(0, QM_DB_CMD_SQ, head, 0);
        assert_int_equal(g.io.db_write(g.io.opaque, QM_DB_SQCQ, &db, 8), 0);
    }
    assert_true(guest_cqe_wait(&g, &head));
    assert_int_equal(head, 1);
    guest_check_output(&g, 1);
    guest_stop(&g);
}

/* ---- a hostile server ---- */

/* Answers VERSION, then every REGION_INFO with what the test scripted:
 * reply (len bytes; its argsz field is what the server claims) when the
 * request's argsz is at least need, else the first 32 bytes alone, and fd
 * (dup'ed) with the long reply. ignore_argsz sends the long reply always. */
struct evil {
    int listen_fd;
    pthread_t thread;
    pthread_mutex_t mu; /* protects the script below */
    uint8_t reply[512];
    size_t len, need;
    int fd;
    bool ignore_argsz;
    /* GET_REGION_IO_FDS: io_reply (io_len bytes) to an argsz of at least
     * io_need, else its first 16 bytes; io_fd (dup'ed) with the long one. */
    uint8_t io_reply[512];
    size_t io_len, io_need;
    int io_fd;
};

static void *evil_main(void *arg)
{
    struct evil *e = arg;
    int fd = accept4(e->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    struct vfu_tran t;
    struct vfu_rx rx;
    struct vfu_msg m;

    if (fd < 0)
        return NULL;
    vfu_tran_sock_init(&t, fd);
    vfu_rx_init(&rx, VFU_HDR_TYPE_COMMAND, 1 << 20, VFU_MSG_MAX_FDS);
    while (vfu_rx_recv(&rx, &t, &m) == 1) {
        struct vfu_hdr h = {.msg_id = m.hdr.msg_id, .cmd = m.hdr.cmd, .flags = VFU_HDR_TYPE_REPLY};
        struct vfu_version v = {0, 0};
        struct vfu_region_info req = {0};
        struct iovec part;
        int out_fd = -1;

        if (m.hdr.cmd == VFU_CMD_VERSION) {
            part = (struct iovec){&v, sizeof(v)};
            vfu_send(&t, &h, &part, 1, NULL, 0);
        } else if (m.hdr.cmd == VFU_CMD_DEVICE_GET_REGION_IO_FDS) {
            memcpy(&req, m.payload, AM_MIN(m.len, sizeof(req)));
            pthread_mutex_lock(&e->mu);
            if (req.argsz >= e->io_need) {
                part = (struct iovec){e->io_reply, e->io_len};
                if (e->io_fd >= 0)
                    out_fd = dup(e->io_fd);
            } else {
                part = (struct iovec){e->io_reply, sizeof(struct vfu_region_io_fds)};
            }
            vfu_send(&t, &h, &part, 1, out_fd >= 0 ? &out_fd : NULL, out_fd >= 0 ? 1 : 0);
            pthread_mutex_unlock(&e->mu);
            if (out_fd >= 0)
                close(out_fd);
        } else {
            memcpy(&req, m.payload, AM_MIN(m.len, sizeof(req)));
            pthread_mutex_lock(&e->mu);
            if (e->ignore_argsz || req.argsz >= e->need) {
                part = (struct iovec){e->reply, e->len};
                if (e->fd >= 0)
                    out_fd = dup(e->fd);
            } else {
                part = (struct iovec){e->reply, sizeof(req)};
            }
            vfu_send(&t, &h, &part, 1, out_fd >= 0 ? &out_fd : NULL, out_fd >= 0 ? 1 : 0);
            pthread_mutex_unlock(&e->mu);
            if (out_fd >= 0)
                close(out_fd);
        }
        vfu_msg_release(&m);
    }
    vfu_rx_reset(&rx);
    close(fd);
    return NULL;
}

/* A well-formed BAR4 info: region of size bytes, areas as given. */
static void evil_script(struct evil *e, uint64_t size, uint64_t fd_offset,
                        const struct vfu_sparse_mmap_area *areas, uint32_t nr, int fd)
{
    struct vfu_region_info info = {.index = VFU_REGION_BAR4, .size = size, .offset = fd_offset,
                                   .cap_offset = 32,
                                   .flags = VFU_REGION_FLAG_READ | VFU_REGION_FLAG_WRITE |
                                            VFU_REGION_FLAG_MMAP | VFU_REGION_FLAG_CAPS};
    struct vfu_region_sparse_mmap sp = {.header = {VFU_REGION_INFO_CAP_SPARSE_MMAP, 1, 0},
                                        .nr_areas = nr};

    pthread_mutex_lock(&e->mu);
    e->len = sizeof(info) + sizeof(sp) + nr * sizeof(*areas);
    assert_true(e->len <= sizeof(e->reply));
    info.argsz = (uint32_t)e->len;
    e->need = e->len;
    memcpy(e->reply, &info, sizeof(info));
    memcpy(e->reply + sizeof(info), &sp, sizeof(sp));
    memcpy(e->reply + sizeof(info) + sizeof(sp), areas, nr * sizeof(*areas));
    e->fd = fd;
    e->ignore_argsz = false;
    pthread_mutex_unlock(&e->mu);
}

/* Changes what the server asks for and whether it listens (after
 * evil_script). */
static void evil_rules(struct evil *e, size_t need, bool ignore_argsz)
{
    pthread_mutex_lock(&e->mu);
    e->need = need;
    e->ignore_argsz = ignore_argsz;
    pthread_mutex_unlock(&e->mu);
}

/* Changes bytes of the scripted reply (after evil_script). */
static void evil_poke(struct evil *e, size_t off, const void *v, size_t n)
{
    pthread_mutex_lock(&e->mu);
    assert_true(off + n <= sizeof(e->reply));
    memcpy(e->reply + off, v, n);
    pthread_mutex_unlock(&e->mu);
}

/* The permissions /proc/self/maps gives the page at addr ("" if none). */
static void page_perms(const void *addr, char perms[8])
{
    FILE *fp = fopen("/proc/self/maps", "r");
    char line[512];

    perms[0] = '\0';
    assert_non_null(fp);
    while (fgets(line, sizeof(line), fp)) {
        unsigned long lo, hi;
        char p[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, p) == 3 && (uintptr_t)addr >= lo &&
            (uintptr_t)addr < hi) {
            snprintf(perms, 8, "%s", p);
            break;
        }
    }
    fclose(fp);
}

/* Whether any mapping of this process is of the memfd called name. */
static bool maps_mention(const char *name)
{
    FILE *fp = fopen("/proc/self/maps", "r");
    char line[512], want[64];
    bool found = false;

    assert_non_null(fp);
    snprintf(want, sizeof(want), "/memfd:%s (deleted)", name);
    while (!found && fgets(line, sizeof(line), fp))
        found = strstr(line, want) != NULL;
    fclose(fp);
    return found;
}

static void test_a_hostile_region_info_never_makes_the_client_map_outside_its_region(
    void **state)
{
    struct fixture *f = *state;
    const uint64_t S = 8 * 4096, P = 4096;
    struct evil e = {.listen_fd = -1, .fd = -1};
    struct vfu_client *c = NULL;
    char path[128], perms[8];
    uint8_t *base;
    uint64_t size, v64;
    uint32_t v32;
    int memfd, small;
    void *b;
    static const struct {
        const char *what;
        struct vfu_sparse_mmap_area a;
    } bad_areas[] = {
        {"past the end", {8 * 4096, 4096}},
        {"longer than the region", {0, 9 * 4096}},
        {"straddling the end", {7 * 4096, 2 * 4096}},
        {"unaligned offset", {0x800, 4096}},
        {"unaligned size", {0, 0x800}},
        {"wrapping", {UINT64_MAX - 4095, 2 * 4096}},
    };

    if ((uint64_t)sysconf(_SC_PAGESIZE) != P)
        skip();
    snprintf(path, sizeof(path), "%s/evil.sock", f->ts.dir);
    assert_int_equal(vfu_sock_listen(path, &e.listen_fd), 0);
    pthread_mutex_init(&e.mu, NULL);
    assert_int_equal(pthread_create(&e.thread, NULL, evil_main, &e), 0);
    assert_int_equal(vfu_client_connect(path, NULL, &c), 0);
    memfd = memfd_create("evil", MFD_CLOEXEC);
    assert_true(memfd >= 0);
    assert_int_equal(ftruncate(memfd, (off_t)(4 * S)), 0);
    small = memfd_create("evil-small", MFD_CLOEXEC);
    assert_true(small >= 0);
    assert_int_equal(ftruncate(small, (off_t)P), 0);

    for (size_t i = 0; i < AM_ARRAY_SIZE(bad_areas); i++) {
        struct vfu_sparse_mmap_area two[2] = {{0, P}, bad_areas[i].a};
        evil_script(&e, S, 0, two, 2, memfd);
        if (vfu_client_region_map(c, VFU_REGION_BAR4, &b, &size) != -EPROTO)
            fail_msg("an area %s was not refused", bad_areas[i].what);
    }
    {
        struct vfu_sparse_mmap_area a = {0, P};
        uint32_t u32;
        uint64_t u64;

        /* nr_areas beyond the bytes sent */
        evil_script(&e, S, 0, &a, 1, memfd);
        u32 = 100;
        evil_poke(&e, 32 + 8, &u32, 4);
        assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, &b, &size), -EPROTO);
        /* cap_offset inside the info, past the reply, or a chain that loops */
        for (uint32_t co = 0; co < 3; co++) {
            static const uint32_t offs[] = {16, 200, 32};
            evil_script(&e, S, 0, &a, 1, memfd);
            evil_poke(&e, offsetof(struct vfu_region_info, cap_offset), &offs[co], 4);
            if (co == 2) {
                struct vfu_info_cap_header loop = {99, 1, 32};
                evil_poke(&e, 32, &loop, sizeof(loop));
            }
            assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, &b, &size), -EPROTO);
        }
        /* a sparse capability of another version */
        evil_script(&e, S, 0, &a, 1, memfd);
        u32 = 2 << 16 | VFU_REGION_INFO_CAP_SPARSE_MMAP;
        evil_poke(&e, 32, &u32, 4);
        assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, &b, &size), -EPROTO);
        /* a file offset that is unaligned, or that leaves off_t */
        evil_script(&e, S, 0x10, &a, 1, memfd);
        assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, &b, &size), -EPROTO);
        evil_script(&e, S, (uint64_t)INT64_MAX - P + 1, &a, 1, memfd);
        assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, &b, &size), -EPROTO);
        /* MMAP without a descriptor, or with a file too short */
        evil_script(&e, S, 0, &a, 1, -1);
        assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, &b, &size), -EPROTO);
        evil_script(&e, S, P, &a, 1, small);
        assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, &b, &size), -EPROTO);
        /* a reply larger than the argsz asked with */
        evil_script(&e, S, 0, &a, 1, memfd);
        evil_rules(&e, e.len, true);
        assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, &b, &size), -EPROTO);
        /* an argsz no client should have to give */
        evil_script(&e, S, 0, &a, 1, memfd);
        u32 = 8192;
        evil_poke(&e, 0, &u32, 4);
        evil_rules(&e, 8192, false);
        assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, &b, &size), -EPROTO);
        /* a region size that wraps when rounded to pages (no caps) */
        evil_script(&e, S, 0, &a, 1, memfd);
        u64 = UINT64_MAX - 10;
        evil_poke(&e, offsetof(struct vfu_region_info, size), &u64, 8);
        u32 = VFU_REGION_FLAG_READ | VFU_REGION_FLAG_MMAP;
        evil_poke(&e, offsetof(struct vfu_region_info, flags), &u32, 4);
        assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, &b, &size), -EPROTO);
        /* not mmap-able at all */
        evil_script(&e, S, 0, &a, 1, memfd);
        u32 = VFU_REGION_FLAG_READ;
        evil_poke(&e, offsetof(struct vfu_region_info, flags), &u32, 4);
        assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, &b, &size), -ENOTSUP);
    }
    /* After all that, a good answer maps: two areas (pages 1 and 5, the
     * second at file offset P + 5 P), the rest of the region PROT_NONE. */
    {
        struct vfu_sparse_mmap_area two[2] = {{P, P}, {5 * P, P}};
        v64 = 0x0123456789abcdefull;
        assert_int_equal(pwrite(memfd, &v64, 8, (off_t)(P + 5 * P)), 8);
        evil_script(&e, S, P, two, 2, memfd);
        assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, (void **)&base, &size), 0);
        assert_int_equal(size, S);
        memcpy(&v64, base + 5 * P, 8);
        assert_int_equal(v64, 0x0123456789abcdefull);
        v32 = 0xfeedu;
        memcpy(base + P, &v32, 4); /* a shared mapping: the file sees it */
        assert_int_equal(pread(memfd, &v32, 4, (off_t)(2 * P)), 4);
        assert_int_equal(v32, 0xfeedu);
        for (uint64_t pg = 0; pg < S / P; pg++) {
            page_perms(base + pg * P, perms);
            if (pg == 1 || pg == 5)
                assert_string_equal(perms, "rw-s");
            else
                assert_string_equal(perms, "---p");
        }
        assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, &b, &size), -EEXIST);
        assert_true(maps_mention("evil"));
    }
    vfu_client_destroy(c);
    assert_false(maps_mention("evil")); /* unmapped by destroy */
    pthread_join(e.thread, NULL);
    pthread_mutex_destroy(&e.mu);
    close(memfd);
    close(small);
    close(e.listen_fd);
    unlink(path);
    assert_int_equal(test_wait_fds(f->base_fds), f->base_fds);
}

/* A scripted IO_FDS reply: count sub-regions (entries of stride bytes,
 * the first 40 of each from subs), argsz as claimed, fd with it. */
static void evil_io_script(struct evil *e, uint32_t index, uint32_t count, size_t stride,
                           const struct vfu_sub_region_ioeventfd *subs, int fd)
{
    struct vfu_region_io_fds h = {.index = index, .count = count};

    pthread_mutex_lock(&e->mu);
    e->io_len = sizeof(h) + count * stride;
    assert_true(e->io_len <= sizeof(e->io_reply));
    h.argsz = (uint32_t)e->io_len;
    e->io_need = e->io_len;
    memset(e->io_reply, 0, sizeof(e->io_reply));
    memcpy(e->io_reply, &h, sizeof(h));
    for (uint32_t i = 0; i < count; i++)
        memcpy(e->io_reply + sizeof(h) + i * stride, &subs[i], AM_MIN(stride, sizeof(subs[i])));
    e->io_fd = fd;
    pthread_mutex_unlock(&e->mu);
}

/* A hostile GET_REGION_IO_FDS reply is refused whole (-EPROTO) and leaves
 * nothing behind: a descriptor with count 0, another index, an entry
 * outside the region or naming a descriptor that did not come, entries
 * below 40 bytes, no descriptor, a reply larger than asked or an argsz
 * that never fits. Only ioregionfds or port I/O: -ENOTSUP. A good reply
 * makes the guest's kick an increment of that eventfd. */
static void test_a_hostile_region_io_fds_reply_is_refused_and_leaks_nothing(void **state)
{
    struct fixture *f = *state;
    const uint64_t S = 2 * (uint64_t)QM_DB_PAGE_SIZE;
    struct evil e = {.listen_fd = -1, .fd = -1, .io_fd = -1};
    struct vfu_sparse_mmap_area a = {0, S};
    struct vfu_sub_region_ioeventfd good[2] = {
        {.offset = QM_DB_POLL_STATE, .size = 8, .type = VFU_IO_FD_TYPE_IOEVENTFD},
        {.offset = QM_DB_PAGE_SIZE + QM_DB_POLL_STATE, .size = 8,
         .type = VFU_IO_FD_TYPE_IOEVENTFD}};
    struct vfu_sub_region_ioeventfd bad[2];
    const size_t W = sizeof(struct vfu_sub_region_ioeventfd);
    struct vfu_client *c = NULL;
    char path[128];
    unsigned fds_before;
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

    assert_true(efd >= 0);
    snprintf(path, sizeof(path), "%s/evil-io.sock", f->ts.dir);
    assert_int_equal(vfu_sock_listen(path, &e.listen_fd), 0);
    pthread_mutex_init(&e.mu, NULL);
    assert_int_equal(pthread_create(&e.thread, NULL, evil_main, &e), 0);
    assert_int_equal(vfu_client_connect(path, NULL, &c), 0);
    evil_script(&e, S, 0, &a, 1, -1); /* REGION_INFO: a region of S bytes */
    fds_before = test_count_fds();

    evil_io_script(&e, VFU_REGION_BAR4, 0, W, good, efd); /* count 0, yet a descriptor */
    assert_int_equal(vfu_client_region_io_fds(c, VFU_REGION_BAR4), -EPROTO);
    evil_io_script(&e, VFU_REGION_BAR2, 2, W, good, efd); /* another region's */
    assert_int_equal(vfu_client_region_io_fds(c, VFU_REGION_BAR4), -EPROTO);
    memcpy(bad, good, sizeof(bad));
    bad[1].offset = S - 4; /* past the end */
    evil_io_script(&e, VFU_REGION_BAR4, 2, W, bad, efd);
    assert_int_equal(vfu_client_region_io_fds(c, VFU_REGION_BAR4), -EPROTO);
    bad[1].offset = UINT64_MAX - 3; /* wrapping */
    evil_io_script(&e, VFU_REGION_BAR4, 2, W, bad, efd);
    assert_int_equal(vfu_client_region_io_fds(c, VFU_REGION_BAR4), -EPROTO);
    memcpy(bad, good, sizeof(bad));
    bad[0].fd_index = 1; /* one descriptor came */
    evil_io_script(&e, VFU_REGION_BAR4, 2, W, bad, efd);
    assert_int_equal(vfu_client_region_io_fds(c, VFU_REGION_BAR4), -EPROTO);
    evil_io_script(&e, VFU_REGION_BAR4, 2, 24, good, efd); /* entries below 40 bytes */
    assert_int_equal(vfu_client_region_io_fds(c, VFU_REGION_BAR4), -EPROTO);
    evil_io_script(&e, VFU_REGION_BAR4, 2, W, good, -1); /* no descriptor */
    assert_int_equal(vfu_client_region_io_fds(c, VFU_REGION_BAR4), -EPROTO);
    evil_io_script(&e, VFU_REGION_BAR4, 2, W, good, efd); /* the whole reply to any argsz */
    pthread_mutex_lock(&e.mu);
    e.io_need = 0;
    pthread_mutex_unlock(&e.mu);
    assert_int_equal(vfu_client_region_io_fds(c, VFU_REGION_BAR4), -EPROTO);
    evil_io_script(&e, VFU_REGION_BAR4, 2, W, good, efd); /* an argsz that never fits */
    pthread_mutex_lock(&e.mu);
    e.io_need = SIZE_MAX;
    pthread_mutex_unlock(&e.mu);
    assert_int_equal(vfu_client_region_io_fds(c, VFU_REGION_BAR4), -EPROTO);
    memcpy(bad, good, sizeof(bad));
    bad[0].type = VFU_IO_FD_TYPE_IOREGIONFD;
    bad[1].flags = 1u << 1; /* KVM_IOEVENTFD_FLAG_PIO */
    evil_io_script(&e, VFU_REGION_BAR4, 2, W, bad, efd);
    assert_int_equal(vfu_client_region_io_fds(c, VFU_REGION_BAR4), -ENOTSUP);
    assert_int_equal(test_count_fds(), fds_before);

    /* A good reply (entries may be longer than 40 bytes): the kick at the
     * second queue's word is an eventfd increment; one at another offset
     * is not. */
    struct vf_io io;
    const uint64_t zero = 0;
    uint64_t n = 0;

    evil_io_script(&e, VFU_REGION_BAR4, 2, W + 8, good, efd);
    assert_int_equal(vfu_client_region_io_fds(c, VFU_REGION_BAR4), 2);
    vfu_client_vf_io(c, &io);
    io.db_kick(io.opaque, QM_DB_PAGE_SIZE + QM_DB_POLL_STATE, &zero, 8);
    assert_int_equal(read(efd, &n, sizeof(n)), sizeof(n));
    assert_int_equal(n, 1);
    io.db_kick(io.opaque, QM_DB_PAGE_SIZE + QM_DB_SQCQ, &zero, 8); /* trapped: not ours */
    assert_true(read(efd, &n, sizeof(n)) < 0);
    vfu_client_destroy(c);
    pthread_join(e.thread, NULL);
    pthread_mutex_destroy(&e.mu);
    close(efd);
    close(e.listen_fd);
    unlink(path);
    assert_int_equal(test_wait_fds(f->base_fds), f->base_fds);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define T0(fn) cmocka_unit_test_setup_teardown(fn, setup_no_isolation, teardown)
#define TA(fn) cmocka_unit_test_setup_teardown(fn, setup_always, teardown)
#define TN(fn) cmocka_unit_test_setup_teardown(fn, setup_never, teardown)

/* ---- who may map: the policy ---- */

/* A client that does not vouch for its guest (QEMU with the Linux driver,
 * which can store an SQ and a CQ doorbell before the device looks) gets
 * BAR4 trapped under the default policy: no MMAP, no descriptor; its
 * doorbells through REGION_WRITE still run jobs. */
static void test_a_client_that_does_not_vouch_gets_bar4_trapped(void **state)
{
    struct fixture *f = *state;
    struct vfu_client_server_caps caps;
    struct vfu_region_info info;
    struct raw_conn rc;
    uint8_t rep[4096];
    size_t len, nfds;
    void *base;
    uint64_t size;

    assert_int_equal(raw_open(&rc, test_sock(&f->ts, 0)), 0);
    assert_int_equal(raw_region_info(&rc, VFU_REGION_BAR4, 64, rep, sizeof(rep), &len, NULL,
                                     &nfds),
                     0);
    memcpy(&info, rep, sizeof(info));
    assert_int_equal(len, 32);
    assert_int_equal(nfds, 0);
    assert_int_equal(info.flags, VFU_REGION_FLAG_READ | VFU_REGION_FLAG_WRITE);
    assert_int_equal(info.size, DB_SIZE);
    raw_close(&rc);

    struct vfu_client *c = connect_as(f, false);

    vfu_client_server_caps(c, &caps);
    assert_false(caps.cooperative_doorbells);
    assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, &base, &size), -ENOTSUP);
    vfu_client_destroy(c);
    /* A client that does vouch is told so in the VERSION reply. */
    c = connect_as(f, true);
    vfu_client_server_caps(c, &caps);
    assert_true(caps.cooperative_doorbells);
    vfu_client_destroy(c);
}

/* --db-mmap always: everyone is offered the mapping; never: nobody. */
static void test_policy_always_offers_every_client_the_mapping(void **state)
{
    struct fixture *f = *state;
    struct vfu_client *c = connect_as(f, false);
    void *base;
    uint64_t size;

    assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, &base, &size), 0);
    assert_int_equal(size, DB_SIZE);
    assert_int_equal(*(volatile uint64_t *)((uint8_t *)base + QM_DB_SQCQ), QM_DB_IDLE);
    vfu_client_destroy(c);
}

static void test_policy_never_offers_nobody_the_mapping(void **state)
{
    struct fixture *f = *state;
    struct vfu_client_server_caps caps;
    struct vfu_client *c = connect_as(f, true);
    void *base;
    uint64_t size, v = 0;

    vfu_client_server_caps(c, &caps);
    assert_false(caps.cooperative_doorbells);
    assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, &base, &size), -ENOTSUP);
    assert_int_equal(vfu_client_region_read(c, VFU_REGION_BAR4, QM_DB_SQCQ, &v, 8), 0);
    assert_int_equal(v, QM_DB_IDLE);
    vfu_client_destroy(c);
}

/* A client that kept its mapping and descriptor after it left reaches
 * nothing of the next client's pages (they are new). */
static void test_the_next_client_gets_pages_the_last_one_cannot_reach(void **state)
{
    struct fixture *f = *state;
    struct vfu_client *c1 = connect_vf(f), *c2;
    uint8_t *p1, *p2;
    uint64_t size;

    assert_int_equal(vfu_client_region_map(c1, VFU_REGION_BAR4, (void **)&p1, &size), 0);
    /* Keep a mapping of the first owner's pages past its session, as a
     * hostile VMM would (the client's own goes with destroy). */
    uint8_t *kept = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED,
                         qm_db_bar_fd(model(f), 1), 0);

    assert_true(kept != MAP_FAILED);
    vfu_client_destroy(c1);
    /* The server serves the next client once the first one's session is
     * closed (and its pages renewed). */
    c2 = connect_vf(f);
    assert_int_equal(vfu_client_region_map(c2, VFU_REGION_BAR4, (void **)&p2, &size), 0);
    memset(kept, 0x11, 64);
    *(volatile uint64_t *)(kept + QM_DB_SQCQ) = qm_db_value(0, QM_DB_CMD_SQ, 1, 0);
    assert_int_equal(*(volatile uint64_t *)(p2 + QM_DB_SQCQ), QM_DB_IDLE);
    assert_int_equal(p2[0], 0xff);
    munmap(kept, size);
    vfu_client_destroy(c2);
}

/* ---- the kick's ioeventfd (DEVICE_GET_REGION_IO_FDS) ---- */

/* One GET_REGION_IO_FDS over a raw connection, as raw_region_info. */
static int raw_io_fds(struct raw_conn *rc, uint32_t index, uint32_t argsz, uint8_t *rep,
                      size_t cap, size_t *len, int *fds, size_t *nfds)
{
    struct vfu_region_io_fds req = {.argsz = argsz, .index = index};
    struct vfu_msg m;
    int ret = raw_send(rc, VFU_CMD_DEVICE_GET_REGION_IO_FDS, 0, &req, sizeof(req), NULL, 0);

    if (ret)
        return ret;
    ret = raw_recv(rc, &m);
    if (ret)
        return ret;
    if (m.hdr.flags & VFU_HDR_ERROR) {
        ret = -(int)m.hdr.error;
        vfu_msg_release(&m);
        return ret;
    }
    *len = m.len;
    memcpy(rep, m.payload, AM_MIN(m.len, cap));
    *nfds = m.nfds;
    for (size_t i = 0; i < m.nfds; i++) {
        int fd = vfu_msg_take_fd(&m, i);
        if (fds)
            fds[i] = fd;
        else
            close(fd);
    }
    vfu_msg_release(&m);
    return 0;
}

/* BAR4's ioeventfds: one sub-region per queue, its poll-state word (8
 * bytes, no datamatch), all on one eventfd, and only once the pages were
 * handed to this client; the argsz rule of REGION_INFO (a short argsz
 * gets the header alone, with the argsz needed and no descriptor);
 * malformed requests are refused and nothing leaks. */
static void test_region_io_fds_of_bar4_names_each_queue_s_poll_state_word_on_one_eventfd(
    void **state)
{
    struct fixture *f = *state;
    const uint32_t need = sizeof(struct vfu_region_io_fds) +
                          QPS * sizeof(struct vfu_sub_region_ioeventfd);
    struct raw_conn rc;
    uint8_t rep[512];
    struct vfu_region_io_fds h;
    size_t len, nfds;
    int fds[4];

    assert_int_equal(raw_open_coop(&rc, test_sock(&f->ts, 0)), 0);
    /* Before REGION_INFO handed the pages out: none. */
    assert_int_equal(raw_io_fds(&rc, VFU_REGION_BAR4, need, rep, sizeof(rep), &len, NULL, &nfds), 0);
    memcpy(&h, rep, sizeof(h));
    assert_int_equal(len, 16);
    assert_int_equal(h.count, 0);
    assert_int_equal(h.argsz, 16);
    assert_int_equal(nfds, 0);
    assert_int_equal(raw_region_info(&rc, VFU_REGION_BAR4, 64, rep, sizeof(rep), &len, NULL, &nfds),
                     0);
    assert_int_equal(nfds, 1);
    /* argsz 16: the header says what the whole reply needs; no descriptor. */
    assert_int_equal(raw_io_fds(&rc, VFU_REGION_BAR4, 16, rep, sizeof(rep), &len, NULL, &nfds), 0);
    memcpy(&h, rep, sizeof(h));
    assert_int_equal(len, 16);
    assert_int_equal(h.argsz, need);
    assert_int_equal(h.count, QPS);
    assert_int_equal(h.index, VFU_REGION_BAR4);
    assert_int_equal(nfds, 0);
    /* The whole reply. */
    assert_int_equal(raw_io_fds(&rc, VFU_REGION_BAR4, need, rep, sizeof(rep), &len, fds, &nfds), 0);
    memcpy(&h, rep, sizeof(h));
    assert_int_equal(len, need);
    assert_int_equal(h.argsz, need);
    assert_int_equal(h.count, QPS);
    assert_int_equal(h.flags, 0);
    assert_int_equal(nfds, 1);
    for (unsigned qn = 0; qn < QPS; qn++) {
        struct vfu_sub_region_ioeventfd e;

        memcpy(&e, rep + sizeof(h) + qn * sizeof(e), sizeof(e));
        assert_int_equal(e.offset, (uint64_t)qn * QM_DB_PAGE_SIZE + QM_DB_POLL_STATE);
        assert_int_equal(e.size, 8);
        assert_int_equal(e.fd_index, 0);
        assert_int_equal(e.type, VFU_IO_FD_TYPE_IOEVENTFD);
        assert_int_equal(e.flags, 0);
        assert_int_equal(e.datamatch, 0);
    }
    /* It is an eventfd (8-byte increments only). */
    uint64_t one = 1;
    uint32_t short_write = 1;

    assert_int_equal(write(fds[0], &one, sizeof(one)), sizeof(one));
    assert_true(write(fds[0], &short_write, sizeof(short_write)) < 0);
    close(fds[0]);
    /* A larger argsz than needed is fine; malformed ones are not. */
    assert_int_equal(raw_io_fds(&rc, VFU_REGION_BAR4, need + 100, rep, sizeof(rep), &len, NULL,
                                &nfds),
                     0);
    assert_int_equal(len, need);
    assert_int_equal(raw_io_fds(&rc, VFU_REGION_BAR4, 1u << 30, rep, sizeof(rep), &len, NULL, &nfds),
                     -EINVAL);
    assert_int_equal(raw_io_fds(&rc, VFU_REGION_BAR4, 8, rep, sizeof(rep), &len, NULL, &nfds),
                     -EINVAL);
    assert_int_equal(raw_io_fds(&rc, VFU_NUM_REGIONS, need, rep, sizeof(rep), &len, NULL, &nfds),
                     -EINVAL);
    raw_close(&rc);
    /* A client that was not offered the mapping gets no ioeventfd either. */
    struct vfu_client *c = connect_as(f, false);

    assert_int_equal(vfu_client_region_io_fds(c, VFU_REGION_BAR4), -ENOTSUP);
    vfu_client_destroy(c);
    assert_int_equal(test_wait_fds(f->base_fds), f->base_fds);
}

/* Waits (bounded) until queue 0's page says the device does not poll. */
static void wait_poll_off(struct guest *g)
{
    uint64_t deadline = am_now_ns() + (uint64_t)CQE_WAIT_MS * 1000000u;

    while (word_at(g->db, QM_DB_POLL_STATE) != QM_DB_POLL_OFF) {
        assert_true(am_now_ns() < deadline);
        usleep(200);
    }
}

/* Waits (bounded) until the device took the word at off. */
static void wait_word_idle(struct guest *g, uint64_t off)
{
    uint64_t deadline = am_now_ns() + (uint64_t)CQE_WAIT_MS * 1000000u;

    while (word_at(g->db, off) != QM_DB_IDLE) {
        assert_true(am_now_ns() < deadline);
        usleep(100);
    }
}

/* The guest's kick (vf_io.db_kick) with the ioeventfd: an eventfd write,
 * no message; the device runs the stored doorbell and counts no trapped
 * kick. Without it (a server that offers none), the kick is a trapped write
 * and counted. */
static void test_a_kick_goes_by_the_ioeventfd_when_the_client_has_it_and_trapped_otherwise(
    void **state)
{
    struct fixture *f = *state;
    struct qm_fn_counters cnt;
    const uint64_t zero = 0;
    struct guest g;
    uint16_t head;

    for (int with_fd = 1; with_fd >= 0; with_fd--) {
        guest_start(f, &g);
        if (with_fd) {
            assert_int_equal(vfu_client_region_io_fds(g.c, VFU_REGION_BAR4), QPS);
            assert_int_equal(vfu_client_region_io_fds(g.c, VFU_REGION_BAR4), -EEXIST);
            assert_int_equal(vfu_client_region_io_fds(g.c, VFU_REGION_BAR2), -ENOTSUP);
            assert_int_equal(vfu_client_region_io_fds(g.c, VFU_NUM_REGIONS), -EINVAL);
        }
        assert_int_equal(qm_debug_fn_counters(model(f), 1, &cnt), 0);
        uint64_t kicks0 = cnt.doorbell_kicks;

        for (unsigned n = 0; n < 3; n++) {
            uint64_t *sq_db = (uint64_t *)(void *)(g.db + QM_DB_SQCQ);

            wait_poll_off(&g);
            head = guest_queue_job(&g, 10 + n);
            __atomic_store_n(sq_db, qm_db_value(0, QM_DB_CMD_SQ, head, 0), __ATOMIC_RELEASE);
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            g.io.db_kick(g.io.opaque, QM_DB_POLL_STATE, &zero, 8);
            assert_true(guest_cqe_wait(&g, &head));
            assert_int_equal(head, n);
            guest_check_output(&g, n);
            /* The CQ head, stored too once the SQ doorbell was taken; the
             * device takes it before it stops polling. */
            wait_word_idle(&g, QM_DB_SQCQ);
            __atomic_store_n(sq_db, qm_db_value(0, QM_DB_CMD_CQ, g.cq_head, 0), __ATOMIC_RELEASE);
            wait_poll_off(&g);
            wait_word_idle(&g, QM_DB_SQCQ);
        }
        /* A read through the socket: every trapped kick before it was handled. */
        uint32_t st;

        assert_int_equal(vfu_client_region_read(g.c, VFU_REGION_BAR2, QM_VF_STATE, &st, 4), 0);
        assert_int_equal(qm_debug_fn_counters(model(f), 1, &cnt), 0);
        assert_int_equal(cnt.doorbell_kicks - kicks0, with_fd ? 0 : 3);
        guest_stop(&g);
        test_wait_fds(f->base_fds);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_region_info_of_bar4_gives_mmap_a_sparse_cap_and_one_sealed_memfd),
        T(test_a_client_that_takes_no_descriptors_is_not_offered_the_mmap),
        T(test_config_space_declares_bar4_as_a_64_bit_memory_bar_of_the_region_size),
        T(test_a_mapped_bar4_shows_idle_doorbells_and_the_memory_region_access_sees),
        T(test_device_reset_sets_every_doorbell_word_idle_as_the_mapping_shows),
        T(test_bar4_region_access_out_of_bounds_count_0_or_odd_sizes_is_refused),
        T(test_bar4_access_is_gated_by_migration_state_as_bar2_is),
        T0(test_without_doorbell_isolation_there_is_no_bar4),
        T(test_a_doorbell_stored_into_the_mapped_page_runs_the_job_and_its_cqe_appears),
        T(test_a_hostile_region_info_never_makes_the_client_map_outside_its_region),
        T(test_a_client_that_does_not_vouch_gets_bar4_trapped),
        TA(test_policy_always_offers_every_client_the_mapping),
        TN(test_policy_never_offers_nobody_the_mapping),
        T(test_the_next_client_gets_pages_the_last_one_cannot_reach),
        T(test_region_io_fds_of_bar4_names_each_queue_s_poll_state_word_on_one_eventfd),
        T(test_a_kick_goes_by_the_ioeventfd_when_the_client_has_it_and_trapped_otherwise),
        T(test_a_hostile_region_io_fds_reply_is_refused_and_leaks_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
