/* vfu server, fault isolation: one client's fault stays its own (issue 8,
 * deliverable 5). One process holds the server (2 VFs, 2 workers) and both
 * guests. VF1 runs the compression workload (every job verified with zlib
 * and counted exactly once) while VF0's client misbehaves:
 * - it shrinks the memfd holding its job's buffers to 0 while the job is
 *   frozen mid-codec (qm_debug freeze: mid-job by construction, not by
 *   timing): the server's DMA meets SIGBUS, which the iommu turns into a
 *   counted bus fault and the job into status 0x02 (DMA fault);
 * - it writes a broken header on its socket: the server ends its session;
 * - it dies (closes its socket) with a job frozen mid-codec;
 * - it shrinks all of its RAM to 0 (rings, EQ, AEQ too) mid-job: its queue
 *   breaks and its VF halts until the reset its disconnect brings.
 * Each time the server (this process) lives on, VF1's workload finishes with
 * every job exactly once and no fault counted in its domain, VF0 is left
 * reset and unmapped with every descriptor closed, and a new client on VF0
 * maps fresh memory and runs verified jobs.
 *
 * VF0's guest RAM is two memfds, both created without MFD_ALLOW_SEALING so
 * the server cannot seal them: the driver's state and rings, then the job's
 * input and output. The first case truncates only the second, so the guest
 * driver (in this process, reading its rings through its own mapping) can
 * still read the job's status; the last one truncates both and leaves the
 * driver alone from then on.
 *
 * Nothing here measures time: every wait is bounded (FI_WAIT_MS, or
 * FI_WORKLOAD_MS for a whole workload under ASan on a busy machine) so a
 * hang fails instead of hanging. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "guest/guest.h"
#include "guest/workload.h"
#include "qm/qm_debug.h"
#include "qm/qm_hw.h"
#include "vfu/client.h"
#include "vmm/vm_ram.h"
#include "vfu_test_util.h"

#define FI_WAIT_MS 20000
#define FI_WORKLOAD_MS 60000
#define FI_VF1_JOBS 48u
#define FI_VF0_QP 0u
/* Large enough for many codec steps, so the freeze at the second one
 * leaves most of the input still to read. */
#define FI_JOB_BYTES (4u << 20)
#define FI_JOB_OUT_CAP (4u << 20)
#define FI_MAX_FD 1024

/* ---- fixture: the server, and VF1's guest running the workload ---- */

struct guest_side {
    struct vm_ram *ram;
    struct vfu_client *c;
    struct vf_io io;
    struct workload *w;
};

struct fixture {
    struct test_server ts;
    struct guest_side vf1;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct vfu_server_config cfg = {0};

    if (!f)
        return -1;
    snprintf(f->ts.dir, sizeof(f->ts.dir), "/tmp/accmig-vfu-XXXXXX");
    if (!mkdtemp(f->ts.dir))
        goto err_free;
    cfg.dir = f->ts.dir;
    vfu_device_config_default(&cfg.dev);
    cfg.dev.num_vfs = 2;
    cfg.dev.qps_per_vf = 2;
    /* Two workers: one may sit frozen in VF0's job while VF1's run. */
    cfg.dev.workers = 2;
    cfg.dev.hw = MIG_HW_V4;
    if (vfu_server_create(&cfg, &f->ts.srv))
        goto err_rmdir;
    if (pthread_create(&f->ts.thread, NULL, test_server_thread, &f->ts))
        goto err_destroy;
    *state = f;
    return 0;

err_destroy:
    vfu_server_destroy(f->ts.srv);
err_rmdir:
    rmdir(f->ts.dir);
err_free:
    free(f);
    return -1;
}

static void guest_side_detach(struct guest_side *g)
{
    if (g->w) {
        workload_shutdown(g->w);
        workload_destroy(g->w);
        g->w = NULL;
    }
    vfu_client_destroy(g->c);
    g->c = NULL;
    vm_ram_destroy(g->ram);
    g->ram = NULL;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    /* A failed assertion may leave a freeze armed or a worker frozen. */
    qm_debug_freeze_release(vfu_device_qm(vfu_server_device(f->ts.srv)), FI_WAIT_MS);
    guest_side_detach(&f->vf1);
    if (f->ts.srv)
        test_server_stop(&f->ts, false);
    free(f);
    return 0;
}

static struct qm_dev *fx_qm(struct fixture *f)
{
    return vfu_device_qm(vfu_server_device(f->ts.srv));
}

/* VF index i is PCI function i + 1 (function 0 is the PF). */
static struct iommu_domain *fx_dom(struct fixture *f, unsigned vf)
{
    return qm_dev_iommu(fx_qm(f), vf + 1);
}

/* A guest with its RAM in a vm_ram memfd, DMA-mapped whole, MSIs on
 * eventfds, and a workload of `jobs` jobs laid out in it (not started). */
static void guest_side_attach(struct fixture *f, unsigned vf, uint32_t jobs, struct guest_side *g)
{
    struct workload_config cfg;
    uint64_t size;

    workload_config_default(&cfg);
    cfg.jobs = jobs;
    cfg.qps = 2;
    cfg.vcpus = 2;
    cfg.min_size = 512;
    cfg.max_size = 32 << 10;
    size = workload_ram_size(&cfg);
    assert_int_equal(vm_ram_create(size, &g->ram), 0);
    assert_int_equal(vfu_client_connect(test_sock(&f->ts, vf), NULL, &g->c), 0);
    assert_int_equal(vfu_client_dma_map_fd(g->c, 0, size, vm_ram_fd(g->ram), 0,
                                           IOMMU_READ | IOMMU_WRITE),
                     0);
    assert_int_equal(vfu_client_irqs_enable(g->c, QM_NUM_VECTORS), 0);
    vfu_client_vf_io(g->c, &g->io);
    assert_int_equal(workload_create(&cfg, vm_ram_guest(g->ram), &g->io, &g->w), 0);
}

static void assert_exactly_once(struct workload *w, uint32_t jobs)
{
    struct workload_report r;

    workload_report_get(w, &r);
    if (r.jobs_verified != jobs)
        print_message("first failure: job %llu: %s\n", (unsigned long long)r.first_failed_job,
                      r.first_failure);
    assert_int_equal(r.jobs_submitted, jobs);
    assert_int_equal(r.jobs_completed, jobs);
    assert_int_equal(r.jobs_verified, jobs);
    assert_int_equal(r.jobs_duplicated, 0);
    assert_int_equal(r.jobs_lost, 0);
    assert_int_equal(r.jobs_failed, 0);
    assert_int_equal(r.stray_completions, 0);
    assert_int_equal(r.queues_fatal, 0);
}

static uint64_t workload_verified(struct workload *w)
{
    struct workload_report r;

    workload_report_get(w, &r);
    return r.jobs_verified;
}

/* Waits until VF1 verified more than `since` jobs, or finished them all:
 * VF1 makes progress while VF0 is in trouble. false after FI_WAIT_MS. */
static bool vf1_progresses(struct fixture *f, uint64_t since)
{
    uint64_t deadline = am_now_ns() + (uint64_t)FI_WAIT_MS * 1000000u;

    while (workload_verified(f->vf1.w) <= since && !workload_done(f->vf1.w)) {
        if (am_now_ns() >= deadline)
            return false;
        usleep(1000);
    }
    return true;
}

static void vf1_finishes_every_job_once(struct fixture *f)
{
    assert_int_equal(workload_wait(f->vf1.w, FI_WORKLOAD_MS), 0);
    assert_exactly_once(f->vf1.w, FI_VF1_JOBS);
    assert_int_equal(iommu_mapping_count(fx_dom(f, 1)), 1);
}

/* After VF0's client is gone: its session closes on the server's thread
 * (VF reset, mappings removed); 0 once the domain is empty. */
static int vf0_released(struct fixture *f)
{
    uint64_t deadline = am_now_ns() + (uint64_t)FI_WAIT_MS * 1000000u;

    while (iommu_mapping_count(fx_dom(f, 0)) != 0) {
        if (am_now_ns() >= deadline)
            return -ETIMEDOUT;
        usleep(2000);
    }
    return 0;
}

/* A new client on VF0 with fresh memory runs verified jobs, exactly once. */
static void vf0_serves_a_new_client(struct fixture *f)
{
    struct guest_side g = {0};

    assert_int_equal(vf0_released(f), 0);
    assert_int_equal(mig_get_state(vfu_vf_mig(vfu_device_vf(vfu_server_device(f->ts.srv), 0))),
                     VFIO_MIG_STATE_RUNNING);
    guest_side_attach(f, 0, 6, &g);
    assert_int_equal(workload_vcpus_start(g.w), 0);
    assert_int_equal(workload_wait(g.w, FI_WORKLOAD_MS), 0);
    assert_exactly_once(g.w, 6);
    guest_side_detach(&g);
}

/* Every descriptor VF0's clients brought (sockets, eventfds, memfds on
 * both sides) is closed again once they are gone: the server's end of a
 * session that ended badly included. VF1's stay as they were. */
static void vf0_left_no_descriptor(unsigned base)
{
    assert_int_equal(test_wait_fds(base), base);
}

/* ---- VF0's guest: state memfd + data memfd, one compression queue ---- */

struct vf0_guest {
    struct vfu_client *c;
    struct vf_io io;
    int state_fd, data_fd; /* both without MFD_ALLOW_SEALING */
    int sock_fd;           /* the client library's socket (the library owns it) */
    uint8_t *host;         /* [0, state_len) state, then [data_gpa, +data_len) data */
    uint64_t state_len, data_gpa, data_len, map_len;
    struct guest_ram ram;
    struct guest_vf *vf;
    uint64_t tag;
    /* Written by the completion callback (the main thread polls). */
    unsigned completions;
    unsigned foreign;      /* completions with a tag we did not submit */
    struct guest_vf_completion last;
};

static void vf0_complete(void *opaque, const struct guest_vf_completion *c)
{
    struct vf0_guest *g = opaque;

    if (c->tag != g->tag)
        g->foreign++;
    g->last = *c;
    g->completions++;
}

static int fi_memfd(const char *name, uint64_t len)
{
    int fd = memfd_create(name, MFD_CLOEXEC); /* no MFD_ALLOW_SEALING */

    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)len), 0);
    /* The server will not be able to seal it either. */
    assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK), -1);
    return fd;
}

/* Whether fd is a connected UNIX socket whose peer has a name: a client's
 * end of a connection to a server (the server's ends have unnamed peers). */
static bool fi_is_client_socket(int fd)
{
    struct sockaddr_un a;
    socklen_t len = sizeof(a);

    memset(&a, 0, sizeof(a));
    return getpeername(fd, (struct sockaddr *)&a, &len) == 0 && a.sun_family == AF_UNIX &&
           len > offsetof(struct sockaddr_un, sun_path) && a.sun_path[0] != '\0';
}

/* Connects to VF0, maps both memfds, probes the VF, starts a compression
 * queue and fills the input with text-like bytes. */
static void vf0_guest_create(struct fixture *f, struct vf0_guest *g)
{
    bool was_client[FI_MAX_FD];
    uint8_t *p;

    memset(g, 0, sizeof(*g));
    g->state_len = (guest_vf_state_size(2) + 4095) & ~(uint64_t)4095;
    g->data_gpa = g->state_len;
    g->data_len = FI_JOB_BYTES + FI_JOB_OUT_CAP;
    g->map_len = g->state_len + g->data_len;
    g->state_fd = fi_memfd("fi-vf0-state", g->state_len);
    g->data_fd = fi_memfd("fi-vf0-data", g->data_len);
    /* One contiguous guest RAM view over the two files. */
    g->host = mmap(NULL, g->map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g->host != MAP_FAILED);
    p = mmap(g->host, g->state_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, g->state_fd, 0);
    assert_ptr_equal(p, g->host);
    p = mmap(g->host + g->data_gpa, g->data_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
             g->data_fd, 0);
    assert_ptr_equal(p, g->host + g->data_gpa);
    g->ram.host = g->host;
    g->ram.size = g->map_len;
    g->ram.cpu_dirty = NULL;
    workload_data_fill(g->host + g->data_gpa, FI_JOB_BYTES, WORKLOAD_DATA_TEXT, 8);

    /* The client library keeps its socket to itself; the test finds it as
     * the one client socket that appears with the connection. */
    for (int fd = 0; fd < FI_MAX_FD; fd++)
        was_client[fd] = fi_is_client_socket(fd);
    assert_int_equal(vfu_client_connect(test_sock(&f->ts, 0), NULL, &g->c), 0);
    g->sock_fd = -1;
    for (int fd = 0; fd < FI_MAX_FD; fd++)
        if (!was_client[fd] && fi_is_client_socket(fd)) {
            assert_int_equal(g->sock_fd, -1);
            g->sock_fd = fd;
        }
    assert_true(g->sock_fd >= 0);
    assert_int_equal(vfu_client_dma_map_fd(g->c, 0, g->state_len, g->state_fd, 0,
                                           IOMMU_READ | IOMMU_WRITE),
                     0);
    assert_int_equal(vfu_client_dma_map_fd(g->c, g->data_gpa, g->data_len, g->data_fd, 0,
                                           IOMMU_READ | IOMMU_WRITE),
                     0);
    assert_int_equal(vfu_client_irqs_enable(g->c, QM_NUM_VECTORS), 0);
    vfu_client_vf_io(g->c, &g->io);
    assert_int_equal(guest_vf_init(&g->io, &g->ram, 0, g->state_len, &g->vf), 0);
    guest_vf_set_complete_cb(g->vf, vf0_complete, g);
    assert_int_equal(guest_vf_qp_start(g->vf, FI_VF0_QP, ZIP_ALG_COMPRESS), 0);
}

/* Frees the host side only (the client, if still there, is destroyed:
 * the server then resets the VF). */
static void vf0_guest_destroy(struct vf0_guest *g)
{
    if (g->vf)
        guest_vf_detach(g->vf);
    g->vf = NULL;
    vfu_client_destroy(g->c);
    g->c = NULL;
    if (g->host)
        munmap(g->host, g->map_len);
    g->host = NULL;
    close(g->state_fd);
    close(g->data_fd);
}

static void vf0_submit_big_job(struct vf0_guest *g)
{
    struct guest_zip_req q = {
        .type = ZIP_REQ_DEFLATE,
        .buf_type = ZIP_BUF_FLAT,
        .src = g->data_gpa,
        .dst = g->data_gpa + FI_JOB_BYTES,
        .in_len = FI_JOB_BYTES,
        .dest_avail = FI_JOB_OUT_CAP,
        .window = 4,
        .tag = ++g->tag,
    };
    uint32_t sqe[ZIP_SQE_DWORDS];

    assert_int_equal(guest_zip_sqe_build(sqe, &q), 0);
    assert_int_equal(guest_vf_submit(g->vf, FI_VF0_QP, sqe), 0);
}

/* The driver's interrupt path until `want` completions were delivered:
 * 0, -ETIMEDOUT after FI_WAIT_MS, or the poll's MMIO error. */
static int vf0_wait_completions(struct vf0_guest *g, unsigned want)
{
    uint64_t deadline = am_now_ns() + (uint64_t)FI_WAIT_MS * 1000000u;

    while (g->completions < want) {
        int irq = guest_vf_irq_wait(g->vf, 50) == 0;
        int got = guest_vf_poll(g->vf, irq);

        if (got < 0)
            return got;
        if (am_now_ns() >= deadline)
            return -ETIMEDOUT;
    }
    return 0;
}

/* Arms the mid-codec freeze, submits the big job, and waits until its
 * worker is frozen inside it (VF1's vCPUs must not run yet, so the freeze
 * can only catch this job). */
static void vf0_job_frozen_mid_codec(struct fixture *f, struct vf0_guest *g)
{
    struct qm_queue_debug qd;

    assert_int_equal(qm_debug_freeze_arm(fx_qm(f), QM_FREEZE_MID_CODEC), 0);
    vf0_submit_big_job(g);
    assert_int_equal(qm_debug_freeze_wait(fx_qm(f), FI_WAIT_MS), 0);
    assert_int_equal(qm_debug_queue(fx_qm(f), 1, FI_VF0_QP, &qd), 0);
    assert_true(qd.busy);
}

/* Lets the frozen worker go on. The release's own wait is for every worker
 * of the device to go idle, which VF1's running workload may not allow for
 * a while: its result is not VF0's, so it is not asserted here; the
 * callers check what the job itself did. */
static void fi_release(struct fixture *f)
{
    (void)qm_debug_freeze_release(fx_qm(f), FI_WAIT_MS);
}

/* ---- the cases ---- */

static void test_a_client_that_truncates_its_memory_mid_job_faults_only_its_own_job(void **state)
{
    struct fixture *f = *state;
    unsigned base_fds;
    struct iommu_stats s0, s1;
    struct qm_fn_counters k0, k1;
    struct vf0_guest g;
    uint64_t verified;

    guest_side_attach(f, 1, FI_VF1_JOBS, &f->vf1);
    base_fds = test_count_fds();
    vf0_guest_create(f, &g);
    vf0_job_frozen_mid_codec(f, &g);
    /* VF0's job holds one worker; VF1's workload runs on the other. */
    assert_int_equal(workload_vcpus_start(f->vf1.w), 0);
    assert_true(vf1_progresses(f, 0));
    assert_int_equal(g.completions, 0);

    /* The client takes the pages of its job's buffers away under the
     * device: the rest of the input read and every output write fault. */
    assert_int_equal(ftruncate(g.data_fd, 0), 0);
    verified = workload_verified(f->vf1.w);
    fi_release(f);
    assert_int_equal(vf0_wait_completions(&g, 1), 0);

    /* The job ends with the device's DMA-fault status (zip_hw.h 0x02, the
     * job's own buffers), once; its queue and VF stay usable (the rings
     * were not in the truncated file). */
    assert_int_equal(g.completions, 1);
    assert_int_equal(g.foreign, 0);
    assert_int_equal(g.last.tag, g.tag);
    assert_int_equal(g.last.status, ZIP_ST_DMA_FAULT);
    assert_int_equal(guest_vf_qp_state(g.vf, FI_VF0_QP), GUEST_QP_STARTED);
    assert_int_equal(guest_vf_qp_inflight(g.vf, FI_VF0_QP), 0);

    /* The fault is VF0's alone: counted in its domain, none in VF1's. */
    iommu_stats_get(fx_dom(f, 0), &s0);
    iommu_stats_get(fx_dom(f, 1), &s1);
    assert_true(s0.bus_faults > 0);
    assert_true(s0.last_fault_iova >= g.data_gpa && s0.last_fault_iova < g.data_gpa + g.data_len);
    assert_int_equal(s1.bus_faults, 0);
    assert_int_equal(s1.read_faults + s1.write_faults + s1.perm_faults, 0);
    assert_int_equal(qm_debug_fn_counters(fx_qm(f), 1, &k0), 0);
    assert_int_equal(qm_debug_fn_counters(fx_qm(f), 2, &k1), 0);
    assert_int_equal(k0.jobs_dma_fault, 1);
    assert_int_equal(k0.ring_faults, 0);
    assert_int_equal(k1.jobs_failed, 0);
    assert_int_equal(k1.ring_faults, 0);

    /* VF1 carried on through all of it, and finishes every job once. */
    assert_true(vf1_progresses(f, verified));
    vf1_finishes_every_job_once(f);

    /* VF0's client leaves the way a driver does, then a new one attaches. */
    assert_int_equal(guest_vf_uninit(g.vf), 0);
    vf0_guest_destroy(&g);
    vf0_serves_a_new_client(f);
    vf0_left_no_descriptor(base_fds);
}

static void test_a_client_that_breaks_framing_is_dropped_and_the_other_vf_keeps_working(
    void **state)
{
    struct fixture *f = *state;
    unsigned base_fds;
    /* A header claiming 4 GiB, then bytes that are no message at all. */
    const struct vfu_hdr bad = {.msg_id = 7, .cmd = VFU_CMD_REGION_READ, .size = 0xffffffffu,
                                .flags = VFU_HDR_TYPE_COMMAND};
    uint8_t junk[sizeof(bad) + 64];
    struct vfu_device_info di;
    struct vf0_guest g;
    uint64_t verified;
    int fd;

    guest_side_attach(f, 1, FI_VF1_JOBS, &f->vf1);
    base_fds = test_count_fds();
    assert_int_equal(workload_vcpus_start(f->vf1.w), 0);
    vf0_guest_create(f, &g);
    /* A job in flight (or done: either way the session owns mappings,
     * eventfds and a started queue when it breaks). */
    vf0_submit_big_job(&g);

    fd = g.sock_fd;
    memcpy(junk, &bad, sizeof(bad));
    memset(junk + sizeof(bad), 0xa5, sizeof(junk) - sizeof(bad));
    verified = workload_verified(f->vf1.w);
    /* One send, queued whole before the server reads any of it (a second
     * one could meet the closed connection); no SIGPIPE either way. */
    assert_int_equal(send(fd, junk, sizeof(junk), MSG_NOSIGNAL), (ssize_t)sizeof(junk));

    /* The server drops the connection (its next request gets no reply),
     * resets VF0 and removes its mappings. */
    assert_true(vfu_client_device_info(g.c, &di) < 0);
    assert_int_equal(vf0_released(f), 0);
    assert_true(vf1_progresses(f, verified));

    vf0_guest_destroy(&g);
    vf1_finishes_every_job_once(f);
    vf0_serves_a_new_client(f);
    vf0_left_no_descriptor(base_fds);
}

static void test_a_client_that_dies_mid_job_leaves_its_vf_reusable_and_the_other_vf_alone(
    void **state)
{
    struct fixture *f = *state;
    unsigned base_fds;
    struct qm_fn_counters k0;
    struct vf0_guest g;
    uint64_t verified;

    guest_side_attach(f, 1, FI_VF1_JOBS, &f->vf1);
    base_fds = test_count_fds();
    vf0_guest_create(f, &g);
    vf0_job_frozen_mid_codec(f, &g);
    assert_int_equal(workload_vcpus_start(f->vf1.w), 0);
    assert_true(vf1_progresses(f, 0));

    /* The client dies: its socket closes with the job mid-codec. The
     * session's reset waits for the frozen job; VF1 does not. */
    verified = workload_verified(f->vf1.w);
    guest_vf_detach(g.vf);
    g.vf = NULL;
    vfu_client_destroy(g.c);
    g.c = NULL;
    assert_true(vf1_progresses(f, verified));
    fi_release(f);
    assert_int_equal(vf0_released(f), 0);

    /* The dead client's job was dropped by the reset, not completed. */
    assert_int_equal(qm_debug_fn_counters(fx_qm(f), 1, &k0), 0);
    assert_true(k0.jobs_cancelled >= 1);
    assert_int_equal(k0.jobs_done, 0);
    assert_true(k0.resets >= 1);

    vf0_guest_destroy(&g);
    vf1_finishes_every_job_once(f);
    vf0_serves_a_new_client(f);
    vf0_left_no_descriptor(base_fds);
}

/* Waits until VF0's function has counted a ring fault: 0, or -ETIMEDOUT. */
static int vf0_ring_faulted(struct fixture *f, struct qm_fn_counters *k)
{
    uint64_t deadline = am_now_ns() + (uint64_t)FI_WAIT_MS * 1000000u;

    for (;;) {
        assert_int_equal(qm_debug_fn_counters(fx_qm(f), 1, k), 0);
        if (k->ring_faults > 0)
            return 0;
        if (am_now_ns() >= deadline)
            return -ETIMEDOUT;
        usleep(1000);
    }
}

static void test_a_client_whose_whole_ram_vanishes_mid_job_halts_only_its_own_vf(void **state)
{
    struct fixture *f = *state;
    unsigned base_fds;
    struct qm_fn_counters k0, k1;
    struct qm_fn_debug d0, d1;
    struct qm_queue_debug qd;
    struct iommu_stats s0, s1;
    struct vf0_guest g;
    uint64_t verified;

    guest_side_attach(f, 1, FI_VF1_JOBS, &f->vf1);
    base_fds = test_count_fds();
    vf0_guest_create(f, &g);
    vf0_job_frozen_mid_codec(f, &g);
    assert_int_equal(workload_vcpus_start(f->vf1.w), 0);
    assert_true(vf1_progresses(f, 0));

    /* Rings, queue contexts, EQ and AEQ go too. From here on the guest
     * driver must not run: its own reads of that memory would fault this
     * process. */
    assert_int_equal(ftruncate(g.data_fd, 0), 0);
    assert_int_equal(ftruncate(g.state_fd, 0), 0);
    verified = workload_verified(f->vf1.w);
    fi_release(f);

    /* The job's commit cannot write back its SQE or CQE: the queue breaks
     * and its AEQE cannot be written either, which halts the function until
     * an FLR (docs/driver-compat.md). All of it counted in VF0's domain. */
    assert_int_equal(vf0_ring_faulted(f, &k0), 0);
    assert_int_equal(qm_debug_fn(fx_qm(f), 1, &d0), 0);
    assert_true(d0.halted);
    assert_int_equal(qm_debug_queue(fx_qm(f), 1, FI_VF0_QP, &qd), 0);
    assert_true(qd.sq_broken);
    assert_true(k0.ring_faults >= 2); /* the SQE write-back, then the AEQE */
    assert_int_equal(k0.jobs_done, 0);
    iommu_stats_get(fx_dom(f, 0), &s0);
    assert_true(s0.bus_faults > 0);
    assert_true(s0.last_fault_iova < g.map_len);

    /* VF1 saw none of it. */
    assert_true(vf1_progresses(f, verified));
    vf1_finishes_every_job_once(f);
    iommu_stats_get(fx_dom(f, 1), &s1);
    assert_int_equal(s1.bus_faults + s1.read_faults + s1.write_faults + s1.perm_faults, 0);
    assert_int_equal(qm_debug_fn_counters(fx_qm(f), 2, &k1), 0);
    assert_int_equal(k1.ring_faults + k1.jobs_failed, 0);
    assert_int_equal(qm_debug_fn(fx_qm(f), 2, &d1), 0);
    assert_false(d1.halted);

    /* The client goes without its driver's teardown (it cannot run); the
     * session's reset un-halts VF0 for the next client. */
    vf0_guest_destroy(&g);
    vf0_serves_a_new_client(f);
    assert_int_equal(qm_debug_fn(fx_qm(f), 1, &d0), 0);
    assert_false(d0.halted);
    vf0_left_no_descriptor(base_fds);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_a_client_that_truncates_its_memory_mid_job_faults_only_its_own_job),
        T(test_a_client_that_breaks_framing_is_dropped_and_the_other_vf_keeps_working),
        T(test_a_client_that_dies_mid_job_leaves_its_vf_reusable_and_the_other_vf_alone),
        T(test_a_client_whose_whole_ram_vanishes_mid_job_halts_only_its_own_vf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
