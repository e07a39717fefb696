/* vfu server, per-VF isolation: no lock is shared by the handlers of
 * different VFs. A test-only ops table wraps one VF's device and holds its
 * handler inside a device call (a register write or a migration arc) until
 * the test releases it; meanwhile the other VF's client must get through
 * MMIO and migration, reconnects must work, and a stop must still detach
 * everyone. Nothing here measures time: a gate that is never released
 * would show up as the other VF's calls failing (the client's timeout). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <sys/mman.h>
#include <time.h>

#include "qm/qm_hw.h"
#include "vfu/client.h"
#include "vfu/vfu_dev_ops.h"
#include "vfu_test_util.h"

/* ---- the gate: an ops table that forwards to the model, but blocks ---- */

enum gate_point { GATE_REGION_WRITE, GATE_MIG_SET_STATE };

struct gate {
    const struct vfu_dev_ops *inner;
    void *inner_ctx;
    enum gate_point point;
    pthread_mutex_t mu; /* protects armed, inside, released */
    pthread_cond_t cv;
    bool armed;    /* the next call at point blocks */
    bool inside;   /* a handler is blocked in the gate now */
    bool released; /* the test let it go */
};

static void gate_init(struct gate *g, struct vfu_vf *vf, enum gate_point point)
{
    memset(g, 0, sizeof(*g));
    vfu_vf_ops_get(vf, &g->inner, &g->inner_ctx);
    g->point = point;
    g->armed = true;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
}

static void gate_destroy(struct gate *g)
{
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

/* In the server's handler: blocks when armed, until released. */
static void gate_pass(struct gate *g, enum gate_point point)
{
    pthread_mutex_lock(&g->mu);
    if (g->armed && g->point == point) {
        g->armed = false;
        g->inside = true;
        pthread_cond_broadcast(&g->cv);
        while (!g->released)
            pthread_cond_wait(&g->cv, &g->mu);
        g->inside = false;
    }
    pthread_mutex_unlock(&g->mu);
}

/* Waits until a handler is inside the gate; false after 10 s (a broken
 * server, not a timing check: the gate is entered at once when it works). */
static bool gate_wait_inside(struct gate *g)
{
    struct timespec ts;
    bool inside;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += TEST_REPLY_TIMEOUT_MS / 1000;
    pthread_mutex_lock(&g->mu);
    while (!g->inside && pthread_cond_timedwait(&g->cv, &g->mu, &ts) == 0)
        ;
    inside = g->inside;
    pthread_mutex_unlock(&g->mu);
    return inside;
}

static bool gate_is_inside(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    bool inside = g->inside;
    pthread_mutex_unlock(&g->mu);
    return inside;
}

static void gate_release(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->released = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

#define G(ctx) ((struct gate *)(ctx))

static int gw_region_read(void *ctx, uint32_t region, uint64_t off, void *buf, uint32_t count)
{
    return G(ctx)->inner->region_read(G(ctx)->inner_ctx, region, off, buf, count);
}

static int gw_region_write(void *ctx, uint32_t region, uint64_t off, const void *buf,
                           uint32_t count)
{
    if (region == VFU_REGION_BAR2)
        gate_pass(G(ctx), GATE_REGION_WRITE);
    return G(ctx)->inner->region_write(G(ctx)->inner_ctx, region, off, buf, count);
}

static int gw_region_fd(void *ctx, uint32_t region, bool holder_kicks)
{
    return G(ctx)->inner->region_fd(G(ctx)->inner_ctx, region, holder_kicks);
}

static int gw_reset(void *ctx)
{
    return G(ctx)->inner->reset(G(ctx)->inner_ctx);
}

static uint32_t gw_mig_flags(void *ctx)
{
    return G(ctx)->inner->mig_flags(G(ctx)->inner_ctx);
}

static enum vfio_mig_state gw_mig_get_state(void *ctx)
{
    return G(ctx)->inner->mig_get_state(G(ctx)->inner_ctx);
}

static int gw_mig_set_state(void *ctx, enum vfio_mig_state target)
{
    gate_pass(G(ctx), GATE_MIG_SET_STATE);
    return G(ctx)->inner->mig_set_state(G(ctx)->inner_ctx, target);
}

static const char *gw_mig_last_error(void *ctx)
{
    return G(ctx)->inner->mig_last_error(G(ctx)->inner_ctx);
}

static ssize_t gw_mig_data_read(void *ctx, void *buf, size_t len)
{
    return G(ctx)->inner->mig_data_read(G(ctx)->inner_ctx, buf, len);
}

static ssize_t gw_mig_data_write(void *ctx, const void *buf, size_t len)
{
    return G(ctx)->inner->mig_data_write(G(ctx)->inner_ctx, buf, len);
}

static int gw_mig_data_size(void *ctx, uint64_t *len)
{
    return G(ctx)->inner->mig_data_size(G(ctx)->inner_ctx, len);
}

static int gw_mig_precopy_info(void *ctx, uint64_t *initial, uint64_t *dirty)
{
    return G(ctx)->inner->mig_precopy_info(G(ctx)->inner_ctx, initial, dirty);
}

static int gw_dma_logging_start(void *ctx, uint64_t *page_size, const struct iommu_range *ranges,
                                uint32_t nranges, bool log_all)
{
    return G(ctx)->inner->dma_logging_start(G(ctx)->inner_ctx, page_size, ranges, nranges,
                                            log_all);
}

static int gw_dma_logging_stop(void *ctx)
{
    return G(ctx)->inner->dma_logging_stop(G(ctx)->inner_ctx);
}

static int gw_dma_logging_report(void *ctx, uint64_t iova, uint64_t length, uint64_t page_size,
                                 uint64_t *bitmap)
{
    return G(ctx)->inner->dma_logging_report(G(ctx)->inner_ctx, iova, length, page_size, bitmap);
}

static unsigned gw_dma_count(void *ctx)
{
    return G(ctx)->inner->dma_count(G(ctx)->inner_ctx);
}

static int gw_dma_map(void *ctx, uint64_t iova, uint64_t size, int fd, uint64_t offset,
                      unsigned perm, const struct iommu_remote_ops *remote, void *opaque)
{
    return G(ctx)->inner->dma_map(G(ctx)->inner_ctx, iova, size, fd, offset, perm, remote,
                                  opaque);
}

static int gw_dma_unmap(void *ctx, uint64_t iova, uint64_t size, uint64_t *unmapped_bytes)
{
    return G(ctx)->inner->dma_unmap(G(ctx)->inner_ctx, iova, size, unmapped_bytes);
}

static void gw_dma_unmap_all(void *ctx)
{
    G(ctx)->inner->dma_unmap_all(G(ctx)->inner_ctx);
}

static void gw_irq_set(void *ctx, unsigned start, unsigned count, const int *fds)
{
    G(ctx)->inner->irq_set(G(ctx)->inner_ctx, start, count, fds);
}

static void gw_irq_trigger(void *ctx, unsigned vector)
{
    G(ctx)->inner->irq_trigger(G(ctx)->inner_ctx, vector);
}

static const struct vfu_dev_ops gate_ops = {
    .region_read = gw_region_read,
    .region_write = gw_region_write,
    .region_fd = gw_region_fd,
    .reset = gw_reset,
    .mig_flags = gw_mig_flags,
    .mig_get_state = gw_mig_get_state,
    .mig_set_state = gw_mig_set_state,
    .mig_last_error = gw_mig_last_error,
    .mig_data_read = gw_mig_data_read,
    .mig_data_write = gw_mig_data_write,
    .mig_data_size = gw_mig_data_size,
    .mig_precopy_info = gw_mig_precopy_info,
    .dma_logging_start = gw_dma_logging_start,
    .dma_logging_stop = gw_dma_logging_stop,
    .dma_logging_report = gw_dma_logging_report,
    .dma_count = gw_dma_count,
    .dma_map = gw_dma_map,
    .dma_unmap = gw_dma_unmap,
    .dma_unmap_all = gw_dma_unmap_all,
    .irq_set = gw_irq_set,
    .irq_trigger = gw_irq_trigger,
};

/* ---- fixture: a server with 2 VFs, the gate on one of them ---- */

struct fixture {
    struct test_server ts;
    struct gate gate;
    unsigned gated; /* the VF index behind the gate */
    bool gate_on;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    if (test_server_start(&f->ts, 2, MIG_HW_V4, NULL)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->gate_on)
        gate_release(&f->gate);
    if (f->ts.srv)
        test_server_stop(&f->ts, false);
    if (f->gate_on)
        gate_destroy(&f->gate);
    free(f);
    return 0;
}

static struct vfu_vf *fx_vf(struct fixture *f, unsigned i)
{
    return vfu_device_vf(vfu_server_device(f->ts.srv), i);
}

/* Puts VF i behind the gate (before its client connects). */
static void fx_gate(struct fixture *f, unsigned i, enum gate_point point)
{
    gate_init(&f->gate, fx_vf(f, i), point);
    f->gated = i;
    f->gate_on = true;
    assert_int_equal(vfu_vf_ops_set(fx_vf(f, i), &gate_ops, &f->gate), 0);
}

static struct vfu_client *fx_connect(struct fixture *f, unsigned i)
{
    struct vfu_client *c = NULL;
    assert_int_equal(vfu_client_connect(test_sock(&f->ts, i), NULL, &c), 0);
    return c;
}

/* A client that makes one call on its own thread (the call the gate holds). */
struct blocked_call {
    struct vfu_client *c;
    enum gate_point point;
    pthread_t thread;
    int ret;
    bool done; /* atomic */
};

static void *blocked_call_main(void *arg)
{
    struct blocked_call *b = arg;
    uint32_t ready = QM_VF_STATE_READY;

    if (b->point == GATE_REGION_WRITE)
        b->ret = vfu_client_region_write(b->c, VFU_REGION_BAR2, QM_VF_STATE, &ready, 4);
    else
        b->ret = vfu_client_mig_state_set(b->c, VFIO_MIG_STATE_STOP);
    __atomic_store_n(&b->done, true, __ATOMIC_RELEASE);
    return NULL;
}

static void blocked_call_start(struct blocked_call *b, struct vfu_client *c, enum gate_point p)
{
    b->c = c;
    b->point = p;
    b->ret = -1;
    b->done = false;
    assert_int_equal(pthread_create(&b->thread, NULL, blocked_call_main, b), 0);
}

/* What the free VF's client must get through while the other VF is held. */
static void free_vf_works(struct vfu_client *c)
{
    uint32_t v = QM_VF_STATE_READY, got = 0xffffffffu;
    enum vfio_mig_state st;
    uint8_t cfg[4];

    for (int i = 0; i < 10; i++) {
        assert_int_equal(vfu_client_region_write(c, VFU_REGION_BAR2, QM_VF_STATE, &v, 4), 0);
        assert_int_equal(vfu_client_region_read(c, VFU_REGION_BAR2, QM_VF_STATE, &got, 4), 0);
        assert_int_equal(got, QM_VF_STATE_READY);
        assert_int_equal(vfu_client_region_read(c, VFU_REGION_CONFIG, 0, cfg, 4), 0);
        assert_int_equal(am_le16(cfg), QM_VENDOR_ID);
    }
    /* A migration state change, there and back (PAUSE_QM and RESUME_QM
     * run through the PF's window for this VF). */
    assert_int_equal(vfu_client_mig_state_set(c, VFIO_MIG_STATE_STOP), 0);
    assert_int_equal(vfu_client_mig_state_get(c, &st), 0);
    assert_int_equal(st, VFIO_MIG_STATE_STOP);
    assert_int_equal(vfu_client_mig_state_set(c, VFIO_MIG_STATE_RUNNING), 0);
    assert_int_equal(vfu_client_mig_state_get(c, &st), 0);
    assert_int_equal(st, VFIO_MIG_STATE_RUNNING);
}

static void held_vf_does_not_hold_up_the_other(struct fixture *f, enum gate_point point)
{
    struct vfu_client *c0, *c1;
    struct blocked_call b;
    enum vfio_mig_state st;
    uint32_t v = 0xffffffffu;

    fx_gate(f, 0, point);
    c0 = fx_connect(f, 0);
    blocked_call_start(&b, c0, point);
    assert_true(gate_wait_inside(&f->gate));
    /* VF0's handler is inside its device call, holding VF0's session lock;
     * VF1 connects, negotiates, reads, writes and migrates. */
    c1 = fx_connect(f, 1);
    free_vf_works(c1);
    /* VF0 is still held: all of that happened while its handler waited. */
    assert_true(gate_is_inside(&f->gate));
    assert_false(__atomic_load_n(&b.done, __ATOMIC_ACQUIRE));
    gate_release(&f->gate);
    pthread_join(b.thread, NULL);
    assert_int_equal(b.ret, 0);
    if (point == GATE_REGION_WRITE) {
        assert_int_equal(vfu_client_region_read(c0, VFU_REGION_BAR2, QM_VF_STATE, &v, 4), 0);
        assert_int_equal(v, QM_VF_STATE_READY);
    } else {
        assert_int_equal(vfu_client_mig_state_get(c0, &st), 0);
        assert_int_equal(st, VFIO_MIG_STATE_STOP);
    }
    vfu_client_destroy(c1);
    vfu_client_destroy(c0);
}

static void test_a_vf_held_inside_a_register_write_holds_up_no_other_vf(void **state)
{
    held_vf_does_not_hold_up_the_other(*state, GATE_REGION_WRITE);
}

static void test_a_vf_held_inside_a_migration_arc_holds_up_no_other_vf(void **state)
{
    held_vf_does_not_hold_up_the_other(*state, GATE_MIG_SET_STATE);
}

static void test_a_second_client_of_a_vf_held_in_a_handler_is_refused_at_once(void **state)
{
    struct fixture *f = *state;
    struct vfu_client *c0;
    struct blocked_call b;
    struct raw_conn second;

    fx_gate(f, 0, GATE_REGION_WRITE);
    c0 = fx_connect(f, 0);
    blocked_call_start(&b, c0, GATE_REGION_WRITE);
    assert_true(gate_wait_inside(&f->gate));
    /* One client per VF holds while its handler is blocked: a second one
     * is refused at once (the accept loop never waits for the session). */
    assert_int_equal(raw_connect(&second, test_sock(&f->ts, 0)), 0);
    assert_true(raw_version(&second, "{}") < 0);
    raw_close(&second);
    gate_release(&f->gate);
    pthread_join(b.thread, NULL);
    assert_int_equal(b.ret, 0);
    vfu_client_destroy(c0);
}

static void test_stop_detaches_both_clients_and_resets_both_vfs(void **state)
{
    struct fixture *f = *state;
    struct vfu_client *c0 = fx_connect(f, 0), *c1 = fx_connect(f, 1);
    struct vfu_device_info di;
    uint32_t v = QM_VF_STATE_READY;
    int memfd0 = memfd_create("vfu-iso", MFD_CLOEXEC);

    assert_true(memfd0 >= 0);
    assert_int_equal(ftruncate(memfd0, 1 << 16), 0);
    assert_int_equal(vfu_client_dma_map_fd(c0, 0, 1 << 16, memfd0, 0, IOMMU_READ | IOMMU_WRITE), 0);
    assert_int_equal(vfu_client_mig_state_set(c0, VFIO_MIG_STATE_STOP), 0);
    assert_int_equal(vfu_client_region_write(c1, VFU_REGION_BAR2, QM_VF_STATE, &v, 4), 0);
    assert_int_equal(vfu_client_mig_state_set(c1, VFIO_MIG_STATE_PRE_COPY), 0);
    vfu_server_stop(f->ts.srv);
    pthread_join(f->ts.thread, NULL);
    assert_int_equal(f->ts.run_ret, 0);
    /* run returned: both sessions are closed, both VFs reset. */
    for (unsigned i = 0; i < 2; i++) {
        assert_int_equal(mig_get_state(vfu_vf_mig(fx_vf(f, i))), VFIO_MIG_STATE_RUNNING);
        assert_int_equal(iommu_mapping_count(qm_dev_iommu(vfu_device_qm(vfu_server_device(
                             f->ts.srv)), i + 1)), 0);
    }
    assert_true(vfu_client_device_info(c0, &di) < 0);
    assert_true(vfu_client_device_info(c1, &di) < 0);
    vfu_server_destroy(f->ts.srv);
    f->ts.srv = NULL;
    rmdir(f->ts.dir);
    vfu_client_destroy(c0);
    vfu_client_destroy(c1);
    close(memfd0);
}

/* 0 once the client's calls fail (the server let it go); -ETIMEDOUT if
 * they still work after TEST_SETTLE_TIMEOUT_MS. */
static int wait_detached(struct vfu_client *c)
{
    uint64_t deadline = am_now_ns() + (uint64_t)TEST_SETTLE_TIMEOUT_MS * 1000000u;
    struct vfu_device_info di;

    while (vfu_client_device_info(c, &di) == 0) {
        if (am_now_ns() >= deadline)
            return -ETIMEDOUT;
        usleep(2000);
    }
    return 0;
}

static void test_stop_while_a_handler_is_held_detaches_both_once_it_returns(void **state)
{
    struct fixture *f = *state;
    struct vfu_client *c0, *c1;
    struct blocked_call b;
    struct vfu_device_info di;

    fx_gate(f, 0, GATE_MIG_SET_STATE);
    c0 = fx_connect(f, 0);
    c1 = fx_connect(f, 1);
    blocked_call_start(&b, c0, GATE_MIG_SET_STATE);
    assert_true(gate_wait_inside(&f->gate));
    vfu_server_stop(f->ts.srv);
    /* VF1's client is detached while VF0's handler is still held (the
     * loop notices the stop on its own thread: ask until it has). */
    assert_int_equal(wait_detached(c1), 0);
    assert_true(gate_is_inside(&f->gate));
    gate_release(&f->gate);
    pthread_join(f->ts.thread, NULL);
    assert_int_equal(f->ts.run_ret, 0);
    pthread_join(b.thread, NULL);
    for (unsigned i = 0; i < 2; i++)
        assert_int_equal(mig_get_state(vfu_vf_mig(fx_vf(f, i))), VFIO_MIG_STATE_RUNNING);
    assert_true(vfu_client_device_info(c0, &di) < 0);
    vfu_server_destroy(f->ts.srv);
    f->ts.srv = NULL;
    rmdir(f->ts.dir);
    vfu_client_destroy(c0);
    vfu_client_destroy(c1);
}

static void test_a_vf_reconnects_at_once_while_the_other_vf_is_held_in_a_handler(void **state)
{
    struct fixture *f = *state;
    struct vfu_client *c1;
    struct blocked_call b;
    uint8_t cfg[4];

    fx_gate(f, 1, GATE_REGION_WRITE);
    c1 = fx_connect(f, 1);
    blocked_call_start(&b, c1, GATE_REGION_WRITE);
    assert_true(gate_wait_inside(&f->gate));
    for (int i = 0; i < 30; i++) {
        struct vfu_client *c0 = fx_connect(f, 0);
        assert_int_equal(vfu_client_region_read(c0, VFU_REGION_CONFIG, 0, cfg, 4), 0);
        assert_int_equal(am_le16(cfg), QM_VENDOR_ID);
        vfu_client_destroy(c0);
    }
    assert_true(gate_is_inside(&f->gate));
    gate_release(&f->gate);
    pthread_join(b.thread, NULL);
    assert_int_equal(b.ret, 0);
    vfu_client_destroy(c1);
    /* The held VF's client left; it reconnects at once too. */
    for (int i = 0; i < 10; i++)
        vfu_client_destroy(fx_connect(f, 1));
}

static void test_a_client_that_hangs_up_inside_a_held_handler_and_reconnects_is_served_after_it(
    void **state)
{
    struct fixture *f = *state;
    struct vfu_region_access a = {.offset = QM_VF_STATE, .region = VFU_REGION_BAR2, .count = 4};
    uint8_t req[20] = {0};
    struct vfu_version v = {0, 0};
    struct raw_conn old, again;
    struct vfu_client *c1;
    struct vfu_msg m;

    fx_gate(f, 0, GATE_REGION_WRITE);
    assert_int_equal(raw_open(&old, test_sock(&f->ts, 0)), 0);
    memcpy(req, &a, sizeof(a));
    assert_int_equal(raw_send(&old, VFU_CMD_REGION_WRITE, 0, req, sizeof(req), NULL, 0), 0);
    assert_true(gate_wait_inside(&f->gate));
    /* The client dies while its handler is held, and reconnects at once:
     * the new connection is taken (not refused) and waits for the old
     * session to end. */
    raw_close(&old);
    assert_int_equal(raw_connect(&again, test_sock(&f->ts, 0)), 0);
    assert_int_equal(raw_send(&again, VFU_CMD_VERSION, 0, &v, sizeof(v), NULL, 0), 0);
    /* Meanwhile the accept loop serves the other VF: it waits for no
     * handler of VF0. */
    c1 = fx_connect(f, 1);
    free_vf_works(c1);
    vfu_client_destroy(c1);
    assert_true(gate_is_inside(&f->gate));
    gate_release(&f->gate);
    /* The old session ends (VF0 reset) and the waiting client is served. */
    assert_int_equal(raw_recv(&again, &m), 0);
    assert_int_equal(m.hdr.cmd, VFU_CMD_VERSION);
    vfu_msg_release(&m);
    assert_int_equal(mig_get_state(vfu_vf_mig(fx_vf(f, 0))), VFIO_MIG_STATE_RUNNING);
    raw_close(&again);
    /* And the VF is free again afterwards. */
    vfu_client_destroy(fx_connect(f, 0));
}

static void test_a_third_client_while_one_waits_for_a_held_session_is_refused(void **state)
{
    struct fixture *f = *state;
    struct vfu_region_access a = {.offset = QM_VF_STATE, .region = VFU_REGION_BAR2, .count = 4};
    uint8_t req[20] = {0};
    struct raw_conn old, waiting, third;

    fx_gate(f, 0, GATE_REGION_WRITE);
    assert_int_equal(raw_open(&old, test_sock(&f->ts, 0)), 0);
    memcpy(req, &a, sizeof(a));
    assert_int_equal(raw_send(&old, VFU_CMD_REGION_WRITE, 0, req, sizeof(req), NULL, 0), 0);
    assert_true(gate_wait_inside(&f->gate));
    raw_close(&old);
    /* Connections are accepted in order: `waiting` is handed over first. */
    assert_int_equal(raw_connect(&waiting, test_sock(&f->ts, 0)), 0);
    assert_int_equal(raw_connect(&third, test_sock(&f->ts, 0)), 0);
    assert_true(raw_version(&third, "{}") < 0);
    raw_close(&third);
    gate_release(&f->gate);
    assert_int_equal(raw_version(&waiting, "{}"), 0);
    raw_close(&waiting);
}

static void test_stop_with_a_client_waiting_for_a_held_session_closes_it_and_leaks_nothing(
    void **state)
{
    struct fixture *f = *state;
    struct vfu_region_access a = {.offset = QM_VF_STATE, .region = VFU_REGION_BAR2, .count = 4};
    uint8_t req[20] = {0};
    struct raw_conn old, waiting;
    unsigned base = test_count_fds();

    fx_gate(f, 0, GATE_REGION_WRITE);
    assert_int_equal(raw_open(&old, test_sock(&f->ts, 0)), 0);
    memcpy(req, &a, sizeof(a));
    assert_int_equal(raw_send(&old, VFU_CMD_REGION_WRITE, 0, req, sizeof(req), NULL, 0), 0);
    assert_true(gate_wait_inside(&f->gate));
    raw_close(&old);
    assert_int_equal(raw_connect(&waiting, test_sock(&f->ts, 0)), 0);
    /* A client of VF1 served after that connect means the loop has taken
     * `waiting` too (its event was ready first; the stop below is seen by
     * a later epoll_wait): the stop meets a handed-over client. */
    vfu_client_destroy(fx_connect(f, 1));
    vfu_server_stop(f->ts.srv);
    gate_release(&f->gate);
    pthread_join(f->ts.thread, NULL);
    assert_int_equal(f->ts.run_ret, 0);
    /* The waiting client was closed, not served: VERSION gets no answer. */
    assert_true(raw_version(&waiting, "{}") < 0);
    raw_close(&waiting);
    assert_int_equal(mig_get_state(vfu_vf_mig(fx_vf(f, 0))), VFIO_MIG_STATE_RUNNING);
    /* Every server-side descriptor of both connections is closed. */
    assert_int_equal(test_count_fds(), base);
    vfu_server_destroy(f->ts.srv);
    f->ts.srv = NULL;
    rmdir(f->ts.dir);
}

static void test_the_ops_table_cannot_change_under_an_open_session(void **state)
{
    struct fixture *f = *state;
    struct vfu_client *c0 = fx_connect(f, 0);
    const struct vfu_dev_ops *ops;
    void *ctx;

    assert_int_equal(vfu_vf_ops_set(fx_vf(f, 0), NULL, NULL), -EBUSY);
    vfu_client_destroy(c0);
    /* The session ends on the server's client thread; retry until then. */
    uint64_t deadline = am_now_ns() + (uint64_t)TEST_SETTLE_TIMEOUT_MS * 1000000u;
    int ret;
    while ((ret = vfu_vf_ops_set(fx_vf(f, 0), NULL, NULL)) == -EBUSY && am_now_ns() < deadline)
        usleep(2000);
    assert_int_equal(ret, 0);
    vfu_vf_ops_get(fx_vf(f, 0), &ops, &ctx);
    assert_ptr_equal(ops, &vfu_dev_ops_qm);
    assert_ptr_equal(ctx, fx_vf(f, 0));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_a_vf_held_inside_a_register_write_holds_up_no_other_vf),
        T(test_a_vf_held_inside_a_migration_arc_holds_up_no_other_vf),
        T(test_a_second_client_of_a_vf_held_in_a_handler_is_refused_at_once),
        T(test_stop_detaches_both_clients_and_resets_both_vfs),
        T(test_stop_while_a_handler_is_held_detaches_both_once_it_returns),
        T(test_a_vf_reconnects_at_once_while_the_other_vf_is_held_in_a_handler),
        T(test_a_client_that_hangs_up_inside_a_held_handler_and_reconnects_is_served_after_it),
        T(test_a_third_client_while_one_waits_for_a_held_session_is_refused),
        T(test_stop_with_a_client_waiting_for_a_held_session_closes_it_and_leaks_nothing),
        T(test_the_ops_table_cannot_change_under_an_open_session),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
