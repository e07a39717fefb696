/* The VM migration stream: handshake, RAM rounds, device state, END/CRC and
 * the final answer, over socketpairs and loopback TCP; and every kind of
 * malformed, truncated or foreign input, written byte by byte from
 * docs/vm-stream-format.md. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/common.h"
#include "vmm/net.h"
#include "vmm/vmstream.h"

#define MiB (UINT64_C(1) << 20)
#define PG VM_RAM_PAGE_SIZE
#define TIMEOUT_MS 3000

/* ---- fd leak check around every test ---- */

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    assert_non_null(d);
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

static int fds_setup(void **state)
{
    *state = (void *)(intptr_t)count_fds();
    return 0;
}

static int fds_teardown(void **state)
{
    int before = (int)(intptr_t)*state, after = count_fds();

    if (after != before) {
        fprintf(stderr, "fd leak: %d open before the test, %d after\n", before, after);
        return -1;
    }
    return 0;
}

/* ---- fixtures ---- */

static struct vmstream_profile profile(uint64_t ram_size)
{
    return (struct vmstream_profile){.vendor_id = 0x19e5, .device_id = 0xa251, .revision = 0x21,
                                     .qp_count = 64, .ram_size = ram_size, .page_size = PG};
}

static struct vm_ram *ram_new(uint64_t size)
{
    struct vm_ram *ram = NULL;

    assert_int_equal(vm_ram_create(size, &ram), 0);
    return ram;
}

static void page_fill(struct vm_ram *ram, uint64_t page, uint64_t seed)
{
    uint64_t *w = (uint64_t *)(void *)(vm_ram_host(ram) + page * PG);

    for (uint64_t i = 0; i < PG / 8; i++)
        w[i] = (seed + 1) * 0x9e3779b97f4a7c15ull ^ (page << 20) ^ i;
    guest_ram_mark_dirty(vm_ram_guest(ram), page * PG, PG);
}

/* Pages i%5==0 stay untouched (holes), i%5==1 are written with zeros
 * (backed but zero), the others get data. */
static void ram_populate(struct vm_ram *ram)
{
    for (uint64_t p = 0; p < vm_ram_pages(ram); p++) {
        if (p % 5 == 0)
            continue;
        if (p % 5 == 1)
            memset(vm_ram_host(ram) + p * PG, 0, PG);
        else
            page_fill(ram, p, 0);
    }
}

static void socket_pair(bool tcp, int fds[2])
{
    struct vm_net_endpoint ep;
    uint16_t port;
    int lfd;

    if (!tcp) {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        return;
    }
    assert_int_equal(vm_net_endpoint_parse("tcp:127.0.0.1:0", &ep, NULL, 0), 0);
    assert_int_equal(vm_net_listen(&ep, &lfd), 0);
    assert_int_equal(vm_net_listen_port(lfd, &port), 0);
    ep.port = port;
    assert_int_equal(vm_net_connect(&ep, TIMEOUT_MS, &fds[0]), 0);
    assert_int_equal(vm_net_accept(lfd, TIMEOUT_MS, &fds[1]), 0);
    close(lfd);
}

/* Device state on the source: the first precopy_len bytes are PRE_COPY
 * data (the match record), the rest comes after stop-copy. */
struct dev_src {
    const uint8_t *data;
    size_t len, precopy_len, off;
    bool stopped;
};

static ssize_t dev_src_read(void *opaque, void *buf, size_t len)
{
    struct dev_src *d = opaque;
    size_t limit = d->stopped ? d->len : d->precopy_len;
    size_t n = AM_MIN(len, limit - d->off);

    memcpy(buf, d->data + d->off, n);
    d->off += n;
    return (ssize_t)n;
}

/* Device on the destination: collects what it is given; may refuse once it
 * holds more than refuse_after bytes, or fail to resume. */
struct dev_sink {
    uint8_t *got;
    size_t len, cap;
    size_t refuse_after; /* 0: never */
    const char *refuse_why;
    const char *finish_why; /* non-NULL: finish fails */
    int finished;           /* atomic */
};

static int dev_sink_write(void *opaque, const void *buf, size_t len, char *why, size_t why_len)
{
    struct dev_sink *d = opaque;

    if ((d->refuse_after != 0 && d->len + len > d->refuse_after) || d->len + len > d->cap) {
        snprintf(why, why_len, "%s", d->refuse_why ? d->refuse_why : "too much state");
        return -EINVAL;
    }
    memcpy(d->got + d->len, buf, len);
    d->len += len;
    return 0;
}

static int dev_sink_finish(void *opaque, char *why, size_t why_len)
{
    struct dev_sink *d = opaque;

    if (d->finish_why != NULL) {
        snprintf(why, why_len, "%s", d->finish_why);
        return -EIO;
    }
    __atomic_store_n(&d->finished, 1, __ATOMIC_RELEASE);
    return 0;
}

static struct vmstream_device_ops sink_ops(struct dev_sink *d)
{
    return (struct vmstream_device_ops){.write = dev_sink_write, .finish = dev_sink_finish,
                                        .opaque = d};
}

/* ---- two sides on two threads ---- */

struct side;
typedef int (*side_fn)(struct side *sd);

struct side {
    struct vmstream *s;
    int fd; /* its end of the connection (run_pair) */
    struct vmstream_profile prof;
    struct vm_ram *ram;
    side_fn run;
    void *ctx;
    int ret;
    char err[400];
    struct vmstream_stats st;
};

static void *side_thread(void *arg)
{
    struct side *sd = arg;

    sd->ret = sd->run(sd);
    snprintf(sd->err, sizeof(sd->err), "%s", vmstream_error(sd->s));
    vmstream_stats_get(sd->s, &sd->st);
    return NULL;
}

/* Runs src and dst to completion over a fresh connection. */
static void run_pair(bool tcp, struct side *src, struct side *dst)
{
    pthread_t ts, td;
    int fds[2];

    socket_pair(tcp, fds);
    src->fd = fds[0];
    dst->fd = fds[1];
    assert_int_equal(vmstream_create(fds[0], VMSTREAM_SOURCE, TIMEOUT_MS, &src->s), 0);
    assert_int_equal(vmstream_create(fds[1], VMSTREAM_DEST, TIMEOUT_MS, &dst->s), 0);
    assert_int_equal(pthread_create(&ts, NULL, side_thread, src), 0);
    assert_int_equal(pthread_create(&td, NULL, side_thread, dst), 0);
    assert_int_equal(pthread_join(ts, NULL), 0);
    assert_int_equal(pthread_join(td, NULL), 0);
    vmstream_destroy(src->s);
    vmstream_destroy(dst->s);
    close(fds[0]);
    close(fds[1]);
}

static void assert_err_mentions(const char *err, const char *needle)
{
    if (strstr(err, needle) == NULL)
        fail_msg("error '%s' does not mention '%s'", err, needle);
}

static int dest_receive(struct side *sd)
{
    int ret = vmstream_handshake(sd->s, &sd->prof, NULL);

    return ret != 0 ? ret : vmstream_recv_loop(sd->s, sd->ram, sd->ctx);
}

static int source_handshake_only(struct side *sd)
{
    struct vmstream_profile peer;
    int ret = vmstream_handshake(sd->s, &sd->prof, &peer);

    if (ret == 0)
        assert_int_equal(peer.qp_count, sd->prof.qp_count);
    return ret;
}

/* What the source does, in order; the hooks let a test change the guest. */
struct plan {
    struct dev_src *dev;
    struct dev_sink *sink; /* to check the final answer comes after finish */
    int rounds;
    void (*mutate)(struct vm_ram *ram, int round);
    void (*after_round)(struct plan *p);
    void (*stop_guest)(struct plan *p);
    void *guest;
    int sink_finished_at_end;
    uint64_t last_round_pages;
};

/* The source's flow after the handshake (and its channels). */
static int source_migrate_open(struct side *sd)
{
    struct plan *p = sd->ctx;
    uint64_t words = vm_ram_bitmap_words(sd->ram);
    uint64_t *bitmap = calloc(words, sizeof(uint64_t));
    struct vmstream_round rr;
    int ret = 0;

    assert_non_null(bitmap);
    if (p->dev != NULL) {
        ret = vmstream_send_device(sd->s, &(struct vmstream_device_source){dev_src_read, p->dev},
                                   NULL);
        if (ret == 0)
            ret = vmstream_device_check(sd->s);
    }
    if (ret != 0)
        goto out;
    vm_ram_dirty_collect(sd->ram, bitmap); /* start the log from here */
    vm_ram_dirty_set_all(sd->ram, bitmap);
    for (int r = 0; r < p->rounds; r++) {
        ret = vmstream_send_ram_round(sd->s, sd->ram, bitmap, &rr);
        if (ret != 0)
            goto out;
        memset(bitmap, 0, words * sizeof(uint64_t));
        if (p->mutate != NULL)
            p->mutate(sd->ram, r);
        if (p->after_round != NULL)
            p->after_round(p);
        vm_ram_dirty_collect(sd->ram, bitmap);
    }
    if (p->stop_guest != NULL)
        p->stop_guest(p);
    vm_ram_dirty_collect(sd->ram, bitmap);
    ret = vmstream_send_stop_copy(sd->s);
    if (ret == 0)
        ret = vmstream_send_ram_round(sd->s, sd->ram, bitmap, &rr);
    if (ret != 0)
        goto out;
    p->last_round_pages = rr.pages + rr.zero_pages;
    if (p->dev != NULL) {
        p->dev->stopped = true;
        ret = vmstream_send_device(sd->s, &(struct vmstream_device_source){dev_src_read, p->dev},
                                   NULL);
        if (ret != 0)
            goto out;
    }
    ret = vmstream_send_end(sd->s);
    if (p->sink != NULL)
        p->sink_finished_at_end = __atomic_load_n(&p->sink->finished, __ATOMIC_ACQUIRE);
out:
    free(bitmap);
    return ret;
}

static int source_migrate(struct side *sd)
{
    int ret = vmstream_handshake(sd->s, &sd->prof, NULL);

    return ret != 0 ? ret : source_migrate_open(sd);
}

/* ---- the handover: READY, then COMMIT or ABORT ---- */

/* What each side does after READY. */
enum ho_src { HO_COMMIT, HO_ABORT, HO_ABORTED, HO_VANISH };
enum ho_dst { HO_ACCEPT, HO_REFUSE, HO_VANISH_AFTER_COMMIT };

struct ho_plan {
    struct plan p;
    enum ho_src src;
    enum ho_dst dst;
    uint64_t id_seen;
};

static int source_handover(struct side *sd)
{
    struct ho_plan *h = sd->ctx;
    struct side inner = *sd;
    int ret;

    inner.ctx = &h->p;
    ret = source_migrate(&inner);
    if (ret != 0)
        return ret;
    if (h->src == HO_ABORT) {
        vmstream_send_abort(sd->s);
        return 0;
    }
    if (h->src == HO_ABORTED) {
        /* As quit / SIGTERM does, from the control thread: ABORT goes out
         * before the shutdown, and COMMIT is refused from then on. */
        vmstream_abort(sd->s);
        ret = vmstream_send_commit(sd->s, 0x1234abcdull);
        return ret == -ECANCELED ? 0 : -EPROTO;
    }
    if (h->src == HO_VANISH) {
        shutdown(sd->fd, SHUT_RDWR); /* the connection ends, no word said (a crash) */
        return 0;
    }
    ret = vmstream_send_commit(sd->s, 0x1234abcdull);
    return ret != 0 ? ret : vmstream_wait_committed(sd->s);
}

static int dest_handover(struct side *sd)
{
    struct ho_plan *h = sd->ctx;
    int ret = vmstream_handshake(sd->s, &sd->prof, NULL);

    if (ret == 0)
        ret = vmstream_recv_loop(sd->s, sd->ram, NULL);
    if (ret == 0)
        ret = vmstream_recv_commit(sd->s, &h->id_seen);
    if (ret != 0)
        return ret;
    if (h->dst == HO_VANISH_AFTER_COMMIT) {
        vmstream_abort(sd->s);
        return 0;
    }
    return vmstream_send_committed(sd->s, h->dst == HO_REFUSE ? -EIO : 0,
                                   h->dst == HO_REFUSE ? "the device did not resume" : "");
}

static void handover_pair(struct ho_plan *h, struct side *src, struct side *dst)
{
    struct vm_ram *sram = ram_new(MiB), *dram = ram_new(MiB);

    ram_populate(sram);
    h->p.rounds = 1;
    *src = (struct side){.prof = profile(MiB), .ram = sram, .run = source_handover, .ctx = h};
    *dst = (struct side){.prof = profile(MiB), .ram = dram, .run = dest_handover, .ctx = h};
    run_pair(false, src, dst);
    vm_ram_destroy(sram);
    vm_ram_destroy(dram);
}

static void test_commit_carries_the_migration_id_and_committed_ends_both_sides(void **state)
{
    struct ho_plan h = {.src = HO_COMMIT, .dst = HO_ACCEPT};
    struct side src, dst;

    (void)state;
    handover_pair(&h, &src, &dst);
    assert_int_equal(src.ret, 0);
    assert_int_equal(dst.ret, 0);
    assert_int_equal(h.id_seen, 0x1234abcdull);
    assert_true(src.st.done_ns >= src.st.ready_ns && src.st.ready_ns >= src.st.end_ns);
    assert_true(dst.st.done_ns >= dst.st.ready_ns);
}

static void test_an_abort_after_ready_tells_the_destination_to_discard(void **state)
{
    struct ho_plan h = {.src = HO_ABORT};
    struct side src, dst;

    (void)state;
    handover_pair(&h, &src, &dst);
    assert_int_equal(src.ret, 0);
    assert_int_equal(dst.ret, -ECONNABORTED);
    assert_err_mentions(dst.err, "ABORT");
}

static void test_a_source_aborted_after_ready_tells_the_destination_and_refuses_commit(
    void **state)
{
    struct ho_plan h = {.src = HO_ABORTED};
    struct side src, dst;

    (void)state;
    handover_pair(&h, &src, &dst);
    assert_int_equal(src.ret, 0);
    assert_int_equal(dst.ret, -ECONNABORTED);
    assert_err_mentions(dst.err, "ABORT");
}

static void test_a_source_gone_after_ready_leaves_the_destination_in_doubt(void **state)
{
    struct ho_plan h = {.src = HO_VANISH};
    struct side src, dst;

    (void)state;
    handover_pair(&h, &src, &dst);
    /* Not ABORT: the destination cannot tell whether a COMMIT was lost. */
    assert_true(dst.ret == -ECONNRESET || dst.ret == -EPIPE);
    assert_err_mentions(dst.err, "waiting for the source's commit");
}

static void test_a_destination_gone_after_commit_leaves_the_source_in_doubt(void **state)
{
    struct ho_plan h = {.src = HO_COMMIT, .dst = HO_VANISH_AFTER_COMMIT};
    struct side src, dst;

    (void)state;
    handover_pair(&h, &src, &dst);
    assert_int_equal(dst.ret, 0);
    assert_int_equal(src.ret, -EINPROGRESS);
}

static void test_a_destination_refusing_after_commit_gives_the_guest_back(void **state)
{
    struct ho_plan h = {.src = HO_COMMIT, .dst = HO_REFUSE};
    struct side src, dst;

    (void)state;
    handover_pair(&h, &src, &dst);
    assert_int_equal(dst.ret, 0);
    assert_int_equal(src.ret, -EREMOTEIO);
    assert_err_mentions(src.err, "the destination refused the handover: the device did not resume");
}

/* ---- handshake ---- */

static void test_handshake_accepts_an_identical_profile(void **state)
{
    struct side src = {.prof = profile(MiB), .run = source_handshake_only};
    /* The same call from the other side. */
    struct side dst = {.prof = profile(MiB), .run = source_handshake_only};

    (void)state;
    run_pair(false, &src, &dst);
    assert_int_equal(src.ret, 0);
    assert_int_equal(dst.ret, 0);
    assert_string_equal(src.err, "");
}

static void test_a_destination_with_another_qp_count_refuses_naming_it(void **state)
{
    struct vm_ram *sram = ram_new(MiB), *dram = ram_new(MiB);
    struct plan plan = {.rounds = 1};
    struct side src = {.prof = profile(MiB), .ram = sram, .run = source_migrate, .ctx = &plan};
    struct side dst = {.prof = profile(MiB), .ram = dram, .run = dest_receive};
    uint64_t a, b;

    (void)state;
    ram_populate(sram);
    dst.prof.qp_count = 32;
    run_pair(false, &src, &dst);
    assert_int_equal(src.ret, -EREMOTEIO);
    assert_err_mentions(src.err, "qp count differs: source 64, destination 32");
    assert_int_equal(dst.ret, -ENOTSUP);
    assert_err_mentions(dst.err, "qp count differs: source 64, destination 32");
    /* Refused before any RAM moved. */
    assert_int_equal(dst.st.ram_bytes, 0);
    assert_int_equal(vm_ram_find_data(dram, 0, &a, &b), 0);
    assert_int_equal(a, MiB);
    vm_ram_destroy(sram);
    vm_ram_destroy(dram);
}

static void test_a_refusal_names_every_field_that_differs(void **state)
{
    struct side src = {.prof = profile(MiB), .run = source_handshake_only};
    struct side dst = {.prof = profile(2 * MiB), .run = source_handshake_only};

    (void)state;
    dst.prof.revision = 0x30;
    dst.prof.device_id = 0xa250;
    run_pair(false, &src, &dst);
    assert_int_equal(src.ret, -EREMOTEIO);
    assert_int_equal(dst.ret, -ENOTSUP);
    assert_err_mentions(src.err, "device id differs: source 0xa251, destination 0xa250");
    assert_err_mentions(src.err, "revision differs: source 33, destination 48");
    assert_err_mentions(src.err, "RAM size differs: source 1048576, destination 2097152");
}

static void test_two_sources_connected_together_both_fail_clearly(void **state)
{
    struct side a = {.prof = profile(MiB), .run = source_handshake_only};
    struct side b = {.prof = profile(MiB), .run = source_handshake_only};
    pthread_t ta, tb;
    int fds[2];

    (void)state;
    socket_pair(false, fds);
    assert_int_equal(vmstream_create(fds[0], VMSTREAM_SOURCE, TIMEOUT_MS, &a.s), 0);
    assert_int_equal(vmstream_create(fds[1], VMSTREAM_SOURCE, TIMEOUT_MS, &b.s), 0);
    assert_int_equal(pthread_create(&ta, NULL, side_thread, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, side_thread, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(a.ret, -EBADMSG);
    assert_int_equal(b.ret, -EBADMSG);
    assert_err_mentions(a.err, "the peer is a source too");
    vmstream_destroy(a.s);
    vmstream_destroy(b.s);
    close(fds[0]);
    close(fds[1]);
}

static void test_calls_out_of_order_are_refused_and_leave_the_channel_usable(void **state)
{
    struct vm_ram *ram = ram_new(MiB);
    uint64_t bitmap[4] = {0};
    struct vmstream *s;
    int fds[2];

    (void)state;
    socket_pair(false, fds);
    assert_int_equal(vmstream_create(fds[0], VMSTREAM_SOURCE, TIMEOUT_MS, &s), 0);
    assert_int_equal(vmstream_send_ram_round(s, ram, bitmap, NULL), -EINVAL);
    assert_err_mentions(vmstream_error(s), "out of order");
    assert_int_equal(vmstream_send_end(s), -EINVAL);
    assert_int_equal(vmstream_recv_loop(s, ram, NULL), -EINVAL);
    assert_err_mentions(vmstream_error(s), "for the destination side");
    assert_int_equal(vmstream_handshake(s, NULL, NULL), -EINVAL);
    {
        struct vmstream_profile p = profile(MiB);
        p.page_size = 8192;
        assert_int_equal(vmstream_handshake(s, &p, NULL), -EINVAL);
    }
    assert_int_equal(vmstream_create(-1, VMSTREAM_SOURCE, 0, &s) == -EINVAL, 1);
    assert_int_equal(vmstream_create(fds[1], (enum vmstream_role)7, 0, &s), -EINVAL);
    vmstream_destroy(s);
    vmstream_destroy(NULL);
    close(fds[0]);
    close(fds[1]);
    vm_ram_destroy(ram);
}

/* ---- RAM ---- */

static void mutate_pages(struct vm_ram *ram, int round)
{
    uint64_t pages = vm_ram_pages(ram);

    for (uint64_t k = 0; k < 50; k++)
        page_fill(ram, (round * 37 + k * 13) % pages, 100 + (uint64_t)round);
    /* Pages that had data become zero: the destination must clear them. */
    for (uint64_t p = 2 + (uint64_t)round * 5; p < pages; p += 97) {
        memset(vm_ram_host(ram) + p * PG, 0, PG);
        guest_ram_mark_dirty(vm_ram_guest(ram), p * PG, PG);
    }
    /* A page nobody touched before. */
    page_fill(ram, 5 * (uint64_t)(round + 3), 7);
}

static void migrate_and_compare(bool tcp, uint64_t size)
{
    struct vm_ram *sram = ram_new(size), *dram = ram_new(size);
    struct plan plan = {.rounds = 3, .mutate = mutate_pages};
    struct side src = {.prof = profile(size), .ram = sram, .run = source_migrate, .ctx = &plan};
    struct side dst = {.prof = profile(size), .ram = dram, .run = dest_receive};

    /* The destination held stale data: every page must end up right. */
    memset(vm_ram_host(dram), 0xee, size);
    ram_populate(sram);
    run_pair(tcp, &src, &dst);
    assert_int_equal(src.ret, 0);
    assert_int_equal(dst.ret, 0);
    assert_memory_equal(vm_ram_host(sram), vm_ram_host(dram), size);
    assert_int_equal(src.st.rounds, 4);
    assert_int_equal(dst.st.rounds, 4);
    assert_int_equal(dst.st.ram_pages, src.st.ram_pages);
    assert_int_equal(dst.st.zero_pages, src.st.zero_pages);
    assert_int_equal(dst.st.bytes, src.st.bytes);
    /* Holes travel without data; touched pages go as data, the ones the
     * guest wrote zeros to included (the source does not scan for zeros). */
    assert_true(src.st.zero_pages >= vm_ram_pages(sram) / 5);
    assert_true(src.st.ram_pages >= vm_ram_pages(sram) * 4 / 5);
    assert_true(src.st.ram_pages < vm_ram_pages(sram));
    assert_true(src.st.ram_bytes < src.st.ram_pages * PG + src.st.zero_pages * 64 + 65536);
    /* The last round carried only what the last mutation dirtied. */
    assert_true(plan.last_round_pages > 0 && plan.last_round_pages < 100);
    assert_true(dst.st.stop_copy_ns != 0 && dst.st.end_ns >= dst.st.stop_copy_ns);
    assert_true(src.st.ready_ns >= src.st.end_ns);
    vm_ram_destroy(sram);
    vm_ram_destroy(dram);
}

static void test_ram_with_dirty_rounds_arrives_identical_over_a_socketpair(void **state)
{
    (void)state;
    migrate_and_compare(false, 8 * MiB);
}

static void test_ram_with_dirty_rounds_arrives_identical_over_loopback_tcp(void **state)
{
    (void)state;
    migrate_and_compare(true, 16 * MiB + 3 * PG);
}

static void test_untouched_ram_travels_as_zero_runs_and_stays_unbacked(void **state)
{
    struct vm_ram *sram = ram_new(64 * MiB), *dram = ram_new(64 * MiB);
    struct plan plan = {.rounds = 1};
    struct side src = {.prof = profile(64 * MiB), .ram = sram, .run = source_migrate, .ctx = &plan};
    struct side dst = {.prof = profile(64 * MiB), .ram = dram, .run = dest_receive};
    uint64_t a, b;

    (void)state;
    page_fill(sram, 1000, 1);
    run_pair(false, &src, &dst);
    assert_int_equal(src.ret, 0);
    assert_int_equal(dst.ret, 0);
    assert_int_equal(src.st.ram_pages, 1);
    assert_int_equal(src.st.zero_pages, 64 * MiB / PG - 1);
    /* Neither side read the holes into memory. */
    assert_int_equal(vm_ram_find_data(sram, 0, &a, &b), 0);
    assert_int_equal(a, 1000 * PG);
    assert_int_equal(b, 1001 * PG);
    assert_int_equal(vm_ram_find_data(dram, 0, &a, &b), 0);
    assert_int_equal(a, 1000 * PG);
    assert_int_equal(b, 1001 * PG);
    assert_memory_equal(vm_ram_host(dram) + 1000 * PG, vm_ram_host(sram) + 1000 * PG, PG);
    vm_ram_destroy(sram);
    vm_ram_destroy(dram);
}

/* A guest that keeps writing while precopy runs. */
struct busy_guest {
    struct vm_ram *ram;
    int stop;        /* atomic */
    uint64_t writes; /* atomic */
    uint64_t seen;   /* writes at the end of the previous round */
    pthread_t t;
};

static void *busy_guest_run(void *arg)
{
    struct busy_guest *g = arg;
    uint64_t x = 88172645463325252ull, pages = vm_ram_pages(g->ram);

    while (!__atomic_load_n(&g->stop, __ATOMIC_ACQUIRE)) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        page_fill(g->ram, x % pages, x);
        __atomic_fetch_add(&g->writes, 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

/* Between rounds: let the guest write a few pages for sure, so every round
 * overlaps guest writes whatever the scheduling. */
static void busy_guest_progress(struct plan *p)
{
    struct busy_guest *g = p->guest;

    while (__atomic_load_n(&g->writes, __ATOMIC_ACQUIRE) < g->seen + 64)
        nanosleep(&(struct timespec){.tv_nsec = 100000}, NULL);
    g->seen = __atomic_load_n(&g->writes, __ATOMIC_ACQUIRE);
}

static void busy_guest_stop(struct plan *p)
{
    struct busy_guest *g = p->guest;

    __atomic_store_n(&g->stop, 1, __ATOMIC_RELEASE);
    pthread_join(g->t, NULL);
}

static void test_pages_the_guest_writes_during_precopy_are_resent(void **state)
{
    struct vm_ram *sram = ram_new(16 * MiB), *dram = ram_new(16 * MiB);
    struct busy_guest g = {.ram = sram};
    struct plan plan = {.rounds = 4, .after_round = busy_guest_progress,
                        .stop_guest = busy_guest_stop, .guest = &g};
    struct side src = {.prof = profile(16 * MiB), .ram = sram, .run = source_migrate, .ctx = &plan};
    struct side dst = {.prof = profile(16 * MiB), .ram = dram, .run = dest_receive};

    (void)state;
    ram_populate(sram);
    assert_int_equal(pthread_create(&g.t, NULL, busy_guest_run, &g), 0);
    run_pair(true, &src, &dst);
    assert_int_equal(src.ret, 0);
    assert_int_equal(dst.ret, 0);
    assert_true(g.writes >= 4 * 64);
    assert_memory_equal(vm_ram_host(sram), vm_ram_host(dram), 16 * MiB);
    vm_ram_destroy(sram);
    vm_ram_destroy(dram);
}

static void test_a_round_with_ram_of_another_size_is_refused(void **state)
{
    struct vm_ram *ram = ram_new(2 * MiB);
    struct side src = {.prof = profile(MiB), .run = source_handshake_only};
    struct side dst = {.prof = profile(MiB), .run = source_handshake_only};
    uint64_t bitmap[8] = {1};
    int fds[2];
    pthread_t ts, td;

    (void)state;
    socket_pair(false, fds);
    assert_int_equal(vmstream_create(fds[0], VMSTREAM_SOURCE, TIMEOUT_MS, &src.s), 0);
    assert_int_equal(vmstream_create(fds[1], VMSTREAM_DEST, TIMEOUT_MS, &dst.s), 0);
    pthread_create(&ts, NULL, side_thread, &src);
    pthread_create(&td, NULL, side_thread, &dst);
    pthread_join(ts, NULL);
    pthread_join(td, NULL);
    assert_int_equal(src.ret, 0);
    assert_int_equal(vmstream_send_ram_round(src.s, ram, bitmap, NULL), -EINVAL);
    assert_err_mentions(vmstream_error(src.s), "negotiated");
    assert_int_equal(vmstream_recv_loop(dst.s, ram, NULL), -EINVAL);
    vmstream_destroy(src.s);
    vmstream_destroy(dst.s);
    close(fds[0]);
    close(fds[1]);
    vm_ram_destroy(ram);
}

/* ---- device state ---- */

static void test_device_state_arrives_whole_and_the_final_answer_follows_resume(void **state)
{
    static uint8_t blob[200000];
    struct vm_ram *sram = ram_new(MiB), *dram = ram_new(MiB);
    struct dev_src dev = {.data = blob, .len = sizeof(blob), .precopy_len = 40};
    struct dev_sink sink = {.got = malloc(sizeof(blob)), .cap = sizeof(blob)};
    struct vmstream_device_ops ops = sink_ops(&sink);
    struct plan plan = {.rounds = 2, .dev = &dev, .sink = &sink};
    struct side src = {.prof = profile(MiB), .ram = sram, .run = source_migrate, .ctx = &plan};
    struct side dst = {.prof = profile(MiB), .ram = dram, .run = dest_receive, .ctx = &ops};

    (void)state;
    for (size_t i = 0; i < sizeof(blob); i++)
        blob[i] = (uint8_t)(i * 31 + 7);
    ram_populate(sram);
    run_pair(false, &src, &dst);
    assert_int_equal(src.ret, 0);
    assert_int_equal(dst.ret, 0);
    assert_int_equal(sink.len, sizeof(blob));
    assert_memory_equal(sink.got, blob, sizeof(blob));
    assert_int_equal(src.st.dev_bytes, sizeof(blob));
    assert_int_equal(dst.st.dev_bytes, sizeof(blob));
    assert_int_equal(plan.sink_finished_at_end, 1);
    assert_memory_equal(vm_ram_host(sram), vm_ram_host(dram), MiB);
    free(sink.got);
    vm_ram_destroy(sram);
    vm_ram_destroy(dram);
}

static void test_a_device_refusing_the_match_data_stops_the_migration_before_ram(void **state)
{
    static uint8_t blob[100];
    struct vm_ram *sram = ram_new(MiB), *dram = ram_new(MiB);
    struct dev_src dev = {.data = blob, .len = sizeof(blob), .precopy_len = 40};
    struct dev_sink sink = {.got = malloc(sizeof(blob)), .cap = sizeof(blob), .refuse_after = 39,
                            .refuse_why = "qp number mismatch: source 64, destination 32"};
    struct vmstream_device_ops ops = sink_ops(&sink);
    struct plan plan = {.rounds = 2, .dev = &dev};
    struct side src = {.prof = profile(MiB), .ram = sram, .run = source_migrate, .ctx = &plan};
    struct side dst = {.prof = profile(MiB), .ram = dram, .run = dest_receive, .ctx = &ops};

    (void)state;
    ram_populate(sram);
    run_pair(false, &src, &dst);
    assert_int_equal(src.ret, -EREMOTEIO);
    assert_err_mentions(src.err, "qp number mismatch: source 64, destination 32");
    assert_int_equal(dst.ret, -ENOTSUP);
    assert_err_mentions(dst.err, "destination device refused the state");
    assert_int_equal(src.st.ram_bytes, 0);
    assert_int_equal(dst.st.ram_bytes, 0);
    free(sink.got);
    vm_ram_destroy(sram);
    vm_ram_destroy(dram);
}

static void test_a_device_that_fails_to_resume_keeps_the_source_in_charge(void **state)
{
    static uint8_t blob[100];
    struct vm_ram *sram = ram_new(MiB), *dram = ram_new(MiB);
    struct dev_src dev = {.data = blob, .len = sizeof(blob), .precopy_len = 40};
    struct dev_sink sink = {.got = malloc(sizeof(blob)), .cap = sizeof(blob),
                            .finish_why = "RESUMING -> STOP failed: bad EQC"};
    struct vmstream_device_ops ops = sink_ops(&sink);
    struct plan plan = {.rounds = 1, .dev = &dev};
    struct side src = {.prof = profile(MiB), .ram = sram, .run = source_migrate, .ctx = &plan};
    struct side dst = {.prof = profile(MiB), .ram = dram, .run = dest_receive, .ctx = &ops};

    (void)state;
    run_pair(false, &src, &dst);
    assert_int_equal(src.ret, -EREMOTEIO);
    assert_err_mentions(src.err, "did not resume: RESUMING -> STOP failed: bad EQC");
    assert_int_equal(dst.ret, -EIO);
    free(sink.got);
    vm_ram_destroy(sram);
    vm_ram_destroy(dram);
}

static void test_device_state_sent_to_a_destination_without_a_device_is_refused(void **state)
{
    static uint8_t blob[64];
    struct vm_ram *sram = ram_new(MiB), *dram = ram_new(MiB);
    struct dev_src dev = {.data = blob, .len = sizeof(blob), .precopy_len = 40};
    struct plan plan = {.rounds = 1, .dev = &dev};
    struct side src = {.prof = profile(MiB), .ram = sram, .run = source_migrate, .ctx = &plan};
    struct side dst = {.prof = profile(MiB), .ram = dram, .run = dest_receive, .ctx = NULL};

    (void)state;
    run_pair(false, &src, &dst);
    assert_int_equal(src.ret, -EREMOTEIO);
    assert_err_mentions(src.err, "has no device");
    assert_int_equal(dst.ret, -ENOTSUP);
    vm_ram_destroy(sram);
    vm_ram_destroy(dram);
}

/* ---- connection failures: clean errors, no hang, no leak ---- */

static int source_vanishes_after_a_round(struct side *sd)
{
    uint64_t *bitmap = calloc(vm_ram_bitmap_words(sd->ram), sizeof(uint64_t));
    int ret = vmstream_handshake(sd->s, &sd->prof, NULL);

    vm_ram_dirty_set_all(sd->ram, bitmap);
    if (ret == 0)
        ret = vmstream_send_ram_round(sd->s, sd->ram, bitmap, NULL);
    free(bitmap);
    /* The source process dies here (the caller closes its socket). */
    return ret;
}

static void test_a_source_that_disappears_mid_stream_gives_a_truncation_error(void **state)
{
    struct vm_ram *sram = ram_new(4 * MiB), *dram = ram_new(4 * MiB);
    struct side src = {.prof = profile(4 * MiB), .ram = sram, .run = source_vanishes_after_a_round};
    struct side dst = {.prof = profile(4 * MiB), .ram = dram, .run = dest_receive};
    pthread_t ts, td;
    int fds[2];

    (void)state;
    ram_populate(sram);
    socket_pair(true, fds);
    assert_int_equal(vmstream_create(fds[0], VMSTREAM_SOURCE, TIMEOUT_MS, &src.s), 0);
    assert_int_equal(vmstream_create(fds[1], VMSTREAM_DEST, TIMEOUT_MS, &dst.s), 0);
    pthread_create(&ts, NULL, side_thread, &src);
    pthread_create(&td, NULL, side_thread, &dst);
    pthread_join(ts, NULL);
    assert_int_equal(src.ret, 0);
    close(fds[0]); /* the source is gone */
    pthread_join(td, NULL);
    assert_int_equal(dst.ret, -ECONNRESET);
    assert_err_mentions(dst.err, "stream truncated");
    assert_err_mentions(dst.err, "stream ended without END");
    vmstream_destroy(src.s);
    vmstream_destroy(dst.s);
    close(fds[1]);
    vm_ram_destroy(sram);
    vm_ram_destroy(dram);
}

static int dest_handshake_then_hang_up(struct side *sd)
{
    int ret = vmstream_handshake(sd->s, &sd->prof, NULL);
    char b[4096];

    /* Take a little of the first round, then die. */
    if (ret == 0)
        ret = vm_net_read_full(*(int *)sd->ctx, b, sizeof(b), NULL);
    shutdown(*(int *)sd->ctx, SHUT_RDWR);
    return ret;
}

static void test_a_destination_that_disappears_mid_round_fails_the_source_cleanly(void **state)
{
    struct vm_ram *sram = ram_new(32 * MiB);
    struct plan plan = {.rounds = 2};
    struct side src = {.prof = profile(32 * MiB), .ram = sram, .run = source_migrate, .ctx = &plan};
    struct side dst = {.prof = profile(32 * MiB), .run = dest_handshake_then_hang_up};
    pthread_t ts, td;
    int fds[2];

    (void)state;
    for (uint64_t p = 0; p < 32 * MiB / PG; p++)
        page_fill(sram, p, 3);
    socket_pair(true, fds);
    dst.ctx = &fds[1];
    assert_int_equal(vmstream_create(fds[0], VMSTREAM_SOURCE, TIMEOUT_MS, &src.s), 0);
    assert_int_equal(vmstream_create(fds[1], VMSTREAM_DEST, TIMEOUT_MS, &dst.s), 0);
    pthread_create(&ts, NULL, side_thread, &src);
    pthread_create(&td, NULL, side_thread, &dst);
    pthread_join(td, NULL);
    close(fds[1]);
    pthread_join(ts, NULL);
    assert_int_equal(dst.ret, 0);
    assert_true(src.ret == -EPIPE || src.ret == -ECONNRESET);
    assert_err_mentions(src.err, "closed the connection");
    /* The failure sticks. */
    assert_int_equal(vmstream_send_stop_copy(src.s), src.ret);
    vmstream_destroy(src.s);
    vmstream_destroy(dst.s);
    close(fds[0]);
    vm_ram_destroy(sram);
}

static void test_a_silent_source_times_out_the_destination(void **state)
{
    struct vm_ram *dram = ram_new(MiB);
    struct vmstream *d;
    int fds[2];
    uint64_t t0;

    (void)state;
    socket_pair(false, fds);
    assert_int_equal(vmstream_create(fds[1], VMSTREAM_DEST, 200, &d), 0);
    t0 = am_now_ns();
    assert_int_equal(vmstream_handshake(d, &(struct vmstream_profile){0x19e5, 0xa251, 0x21, 64,
                                                                      MiB, PG}, NULL),
                     -ETIMEDOUT);
    assert_true(am_now_ns() - t0 >= 150 * 1000000ull);
    assert_err_mentions(vmstream_error(d), "no hello from the peer within 200 ms");
    vmstream_destroy(d);
    close(fds[0]);
    close(fds[1]);
    vm_ram_destroy(dram);
}

static void test_abort_ends_a_destination_blocked_waiting_for_records(void **state)
{
    struct vm_ram *dram = ram_new(MiB);
    struct side src = {.prof = profile(MiB), .run = source_handshake_only};
    struct side dst = {.prof = profile(MiB), .ram = dram, .run = dest_receive};
    pthread_t ts, td;
    int fds[2];

    (void)state;
    socket_pair(false, fds);
    assert_int_equal(vmstream_create(fds[0], VMSTREAM_SOURCE, 0, &src.s), 0);
    assert_int_equal(vmstream_create(fds[1], VMSTREAM_DEST, 0, &dst.s), 0); /* no timeout */
    pthread_create(&ts, NULL, side_thread, &src);
    pthread_create(&td, NULL, side_thread, &dst);
    pthread_join(ts, NULL);
    assert_int_equal(src.ret, 0);
    nanosleep(&(struct timespec){.tv_nsec = 50 * 1000000}, NULL);
    vmstream_abort(dst.s);
    pthread_join(td, NULL);
    assert_int_equal(dst.ret, -ECANCELED);
    assert_err_mentions(dst.err, "aborted");
    assert_int_equal(vmstream_recv_loop(dst.s, dram, NULL), -ECANCELED);
    vmstream_destroy(src.s);
    vmstream_destroy(dst.s);
    close(fds[0]);
    close(fds[1]);
    vm_ram_destroy(dram);
}

/* ---- hand-made streams (docs/vm-stream-format.md) ---- */

struct craft {
    uint8_t *buf;
    size_t len, cap;
    uint32_t seq, crc;
    uint64_t bytes;
    bool stopped;
};

static void craft_put(struct craft *c, const void *p, size_t n)
{
    if (c->len + n > c->cap) {
        c->cap = (c->len + n) * 2;
        c->buf = realloc(c->buf, c->cap);
        assert_non_null(c->buf);
    }
    memcpy(c->buf + c->len, p, n);
    c->len += n;
}

static void craft_hello(struct craft *c, const char *magic, uint16_t major, uint32_t hello_len,
                        uint32_t role, const struct vmstream_profile *p)
{
    uint8_t h[48] = {0};

    memcpy(h, magic, 8);
    am_st16(h + 8, major);
    am_st16(h + 10, 0);
    am_st32(h + 12, hello_len);
    am_st32(h + 16, role);
    am_st32(h + 20, p->page_size);
    am_st64(h + 24, p->ram_size);
    am_st16(h + 32, p->vendor_id);
    am_st16(h + 34, p->device_id);
    am_st32(h + 36, p->qp_count);
    h[40] = p->revision;
    craft_put(c, h, sizeof(h));
    for (uint32_t i = sizeof(h); i < hello_len && hello_len <= 4096; i++)
        craft_put(c, "", 1);
}

static void craft_source_hello(struct craft *c, uint64_t ram_size)
{
    struct vmstream_profile p = profile(ram_size);

    craft_hello(c, "ACCMIGVM", VMSTREAM_VERSION_MAJOR, 48, VMSTREAM_SOURCE, &p);
}

/* A record; the first crc_len payload bytes count in the stream CRC (all of
 * them once stopped). */
static void craft_rec_ex(struct craft *c, uint16_t type, uint16_t flags, uint32_t len_field,
                         uint32_t nruns, uint32_t seq, const void *payload, size_t len,
                         size_t crc_len)
{
    uint8_t h[16];

    am_st16(h, type);
    am_st16(h + 2, flags);
    am_st32(h + 4, len_field);
    am_st32(h + 8, nruns);
    am_st32(h + 12, seq);
    c->crc = am_crc32c(c->crc, h, sizeof(h));
    c->crc = am_crc32c(c->crc, payload, c->stopped ? len : crc_len);
    c->bytes += sizeof(h) + len;
    craft_put(c, h, sizeof(h));
    if (len > 0)
        craft_put(c, payload, len);
    c->seq++;
    if (type == 7)
        c->stopped = true;
}

static void craft_rec(struct craft *c, uint16_t type, uint32_t nruns, const void *payload,
                      size_t len)
{
    craft_rec_ex(c, type, 0, (uint32_t)len, nruns, c->seq, payload, len, len);
}

/* RAM record with the given runs, data filled with a byte pattern. */
static void craft_ram(struct craft *c, uint16_t type, const uint64_t *runs, uint32_t nruns,
                      uint64_t data_pages)
{
    size_t tlen = nruns * 16, len = tlen + data_pages * PG;
    uint8_t *p = malloc(len ? len : 1);

    for (uint32_t i = 0; i < nruns; i++) {
        am_st64(p + i * 16, runs[2 * i]);
        am_st64(p + i * 16 + 8, runs[2 * i + 1]);
    }
    for (size_t i = tlen; i < len; i++)
        p[i] = (uint8_t)(i * 13 + 1);
    craft_rec_ex(c, type, 0, (uint32_t)len, nruns, c->seq, p, len, tlen);
    free(p);
}

static void craft_end(struct craft *c)
{
    uint8_t e[16] = {0};

    am_st32(e, c->crc);
    am_st64(e + 8, c->bytes);
    craft_rec(c, 8, 0, e, sizeof(e));
}

static void craft_free(struct craft *c) { free(c->buf); }

struct feeder {
    int fd;
    const uint8_t *buf;
    size_t len;
};

static void *feed(void *arg)
{
    struct feeder *f = arg;

    vm_net_write_full(f->fd, f->buf, f->len);
    shutdown(f->fd, SHUT_WR);
    return NULL;
}

struct dest_result {
    int ret;
    char err[400];
    char answer[1024]; /* printable bytes of what D sent back */
    struct vmstream_stats st;
};

/* Plays the source with the first len bytes of c against a real destination
 * (handshake + receive loop) and collects its verdict and its answers. */
static void run_dest_len(const struct craft *c, size_t len, struct vm_ram *ram,
                         const struct vmstream_device_ops *ops, struct dest_result *r)
{
    struct vmstream_profile p = profile(vm_ram_size(ram));
    struct feeder f;
    struct vmstream *d;
    uint8_t back[4096];
    size_t got = 0, i, n = 0;
    pthread_t t;
    int fds[2];

    socket_pair(false, fds);
    f = (struct feeder){.fd = fds[0], .buf = c->buf, .len = len};
    assert_int_equal(pthread_create(&t, NULL, feed, &f), 0);
    assert_int_equal(vmstream_create(fds[1], VMSTREAM_DEST, TIMEOUT_MS, &d), 0);
    r->ret = vmstream_handshake(d, &p, NULL);
    if (r->ret == 0)
        r->ret = vmstream_recv_loop(d, ram, ops);
    snprintf(r->err, sizeof(r->err), "%s", vmstream_error(d));
    vmstream_stats_get(d, &r->st);
    vmstream_destroy(d);
    shutdown(fds[1], SHUT_RDWR);
    pthread_join(t, NULL);
    vm_net_set_timeout(fds[0], 200);
    vm_net_read_full(fds[0], back, sizeof(back), &got);
    for (i = 0; i < got && n + 1 < sizeof(r->answer); i++)
        if (back[i] >= 0x20 && back[i] < 0x7f)
            r->answer[n++] = (char)back[i];
    r->answer[n] = '\0';
    close(fds[0]);
    close(fds[1]);
}

static void run_dest(const struct craft *c, struct vm_ram *ram,
                     const struct vmstream_device_ops *ops, struct dest_result *r)
{
    run_dest_len(c, c->len, ram, ops, r);
}

static void expect_refused(const struct craft *c, int err, const char *needle)
{
    struct vm_ram *ram = ram_new(MiB);
    struct dest_result r;
    uint64_t a, b;

    run_dest(c, ram, NULL, &r);
    if (r.ret != err)
        fail_msg("expected %d, got %d (%s)", err, r.ret, r.err);
    assert_err_mentions(r.err, needle);
    /* The reason went back to the source too. */
    assert_err_mentions(r.answer, needle);
    /* Nothing from the bad record reached guest RAM. */
    assert_int_equal(vm_ram_find_data(ram, 0, &a, &b), 0);
    assert_int_equal(a, MiB);
    vm_ram_destroy(ram);
}

static void test_a_well_formed_hand_made_stream_is_accepted(void **state)
{
    struct craft c = {0};
    struct vm_ram *ram = ram_new(MiB);
    uint64_t runs[] = {0, 2, 8 * PG, 1};
    uint64_t zruns[] = {16 * PG, 16};
    uint8_t rr[24] = {0};
    struct dest_result r;

    (void)state;
    craft_source_hello(&c, MiB);
    craft_ram(&c, 2, runs, 2, 3);
    craft_ram(&c, 3, zruns, 1, 0);
    craft_rec_ex(&c, 6, 1, sizeof(rr), 0, c.seq, rr, sizeof(rr), sizeof(rr));
    craft_rec(&c, 7, 0, NULL, 0);
    craft_ram(&c, 2, runs, 1, 2);
    craft_end(&c);
    run_dest(&c, ram, NULL, &r);
    assert_int_equal(r.ret, 0);
    assert_int_equal(r.st.ram_pages, 5);
    assert_int_equal(r.st.zero_pages, 16);
    assert_int_equal(r.st.rounds, 1);
    /* Page 0 as the last record (after stop-copy, table of one run) left it. */
    assert_int_equal(vm_ram_host(ram)[0], (uint8_t)(16 * 13 + 1));
    assert_int_equal(vm_ram_host(ram)[PG + 1], (uint8_t)((16 + PG + 1) * 13 + 1));
    assert_int_equal(vm_ram_host(ram)[8 * PG], (uint8_t)((32 + 2 * PG) * 13 + 1));
    assert_err_mentions(r.answer, "ACCMIGVM");
    vm_ram_destroy(ram);
    craft_free(&c);
}

static void test_a_foreign_stream_is_refused_on_its_magic(void **state)
{
    struct craft c = {0};
    const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n..........................";

    (void)state;
    craft_put(&c, http, 48);
    expect_refused(&c, -EBADMSG, "not an accmig VM migration stream");
    craft_free(&c);
}

static void test_another_major_version_is_refused_with_both_versions_named(void **state)
{
    struct craft c = {0};
    struct vmstream_profile p = profile(MiB);

    (void)state;
    craft_hello(&c, "ACCMIGVM", 1, 48, VMSTREAM_SOURCE, &p);
    expect_refused(&c, -EPROTONOSUPPORT, "stream version 1.0, this side 2.1");
    craft_free(&c);
}

static void test_a_hello_with_an_impossible_length_is_refused(void **state)
{
    struct craft c = {0};
    struct vmstream_profile p = profile(MiB);

    (void)state;
    craft_hello(&c, "ACCMIGVM", VMSTREAM_VERSION_MAJOR, 40, VMSTREAM_SOURCE, &p);
    expect_refused(&c, -EBADMSG, "hello length 40 outside 48..4096");
    craft_free(&c);
    memset(&c, 0, sizeof(c));
    craft_hello(&c, "ACCMIGVM", VMSTREAM_VERSION_MAJOR, 5000, VMSTREAM_SOURCE, &p);
    expect_refused(&c, -EBADMSG, "hello length 5000");
    craft_free(&c);
}

static void test_a_longer_hello_from_a_later_minor_is_accepted(void **state)
{
    struct craft c = {0};
    struct vmstream_profile p = profile(MiB);
    struct vm_ram *ram = ram_new(MiB);
    struct dest_result r;

    (void)state;
    craft_hello(&c, "ACCMIGVM", VMSTREAM_VERSION_MAJOR, 64, VMSTREAM_SOURCE, &p);
    craft_rec(&c, 7, 0, NULL, 0);
    craft_end(&c);
    run_dest(&c, ram, NULL, &r);
    assert_int_equal(r.ret, 0);
    vm_ram_destroy(ram);
    craft_free(&c);
}

/* One bad record after a good hello. */
static void expect_record_refused(void (*build)(struct craft *c), const char *needle)
{
    struct craft c = {0};

    craft_source_hello(&c, MiB);
    build(&c);
    expect_refused(&c, -EBADMSG, needle);
    craft_free(&c);
}

static void bad_seq(struct craft *c) { craft_rec_ex(c, 7, 0, 0, 0, 5, NULL, 0, 0); }
static void bad_flags(struct craft *c) { craft_rec_ex(c, 7, 2, 0, 0, 0, NULL, 0, 0); }
static void bad_huge_len(struct craft *c) { craft_rec_ex(c, 4, 0, UINT32_MAX, 0, 0, NULL, 0, 0); }
static void bad_dev_empty(struct craft *c) { craft_rec(c, 4, 0, NULL, 0); }
static void bad_runs_on_dev(struct craft *c) { craft_rec(c, 4, 3, "abcd", 4); }
static void bad_unknown_type(struct craft *c) { craft_rec(c, 99, 0, "abcd", 4); }
static void bad_reply_from_source(struct craft *c) { craft_rec(c, 1, 0, "\0\0\0\0\0\0\0\0", 8); }
static void bad_check_len(struct craft *c) { craft_rec(c, 5, 0, "abcd", 4); }
static void bad_round_len(struct craft *c) { craft_rec(c, 6, 0, "abcd", 4); }
static void bad_end_early(struct craft *c) { craft_end(c); }
static void bad_two_stops(struct craft *c)
{
    craft_rec(c, 7, 0, NULL, 0);
    craft_rec(c, 7, 0, NULL, 0);
}
static void bad_ram_no_runs(struct craft *c) { craft_ram(c, 2, NULL, 0, 1); }
static void bad_ram_65_runs(struct craft *c)
{
    uint64_t runs[2 * 65];

    for (int i = 0; i < 65; i++) {
        runs[2 * i] = (uint64_t)i * 2 * PG;
        runs[2 * i + 1] = 1;
    }
    craft_ram(c, 2, runs, 65, 65);
}
static void bad_ram_beyond(struct craft *c)
{
    uint64_t runs[] = {MiB, 1};
    craft_ram(c, 2, runs, 1, 1);
}
static void bad_ram_straddles_end(struct craft *c)
{
    uint64_t runs[] = {MiB - PG, 2};
    craft_ram(c, 2, runs, 1, 2);
}
static void bad_ram_unaligned(struct craft *c)
{
    uint64_t runs[] = {100, 1};
    craft_ram(c, 2, runs, 1, 1);
}
static void bad_ram_zero_pages(struct craft *c)
{
    uint64_t runs[] = {0, 0};
    craft_ram(c, 2, runs, 1, 0);
}
static void bad_ram_count_overflow(struct craft *c)
{
    /* 2^52 + 1 pages: times 4096 wraps to 4096. */
    uint64_t runs[] = {0, (UINT64_C(1) << 52) + 1};
    craft_ram(c, 2, runs, 1, 1);
}
static void bad_ram_gpa_wraps(struct craft *c)
{
    uint64_t runs[] = {UINT64_MAX - PG + 1, 2};
    craft_ram(c, 2, runs, 1, 2);
}
static void bad_ram_too_many_pages(struct craft *c)
{
    uint8_t t[5 * 16];

    /* The run table alone: its 1025 pages could never fit a record. */
    for (int i = 0; i < 5; i++) {
        am_st64(t + 16 * i, 0);
        am_st64(t + 16 * i + 8, 205);
    }
    craft_rec_ex(c, 2, 0, sizeof(t), 5, 0, t, sizeof(t), sizeof(t));
}
static void bad_ram_len_mismatch(struct craft *c)
{
    uint64_t runs[] = {0, 2};
    craft_ram(c, 2, runs, 1, 1);
}
static void bad_ram_len_short_of_table(struct craft *c)
{
    uint8_t t[16] = {0};
    craft_rec_ex(c, 2, 0, 8, 1, 0, t, 8, 8);
}
static void bad_zero_with_data(struct craft *c)
{
    uint64_t runs[] = {0, 1};
    craft_ram(c, 3, runs, 1, 1);
}
static void bad_zero_beyond(struct craft *c)
{
    uint64_t runs[] = {0, 257 * 1024};
    craft_ram(c, 3, runs, 1, 0);
}
static void bad_end_len(struct craft *c)
{
    craft_rec(c, 7, 0, NULL, 0);
    craft_rec(c, 8, 0, "abcd", 4);
}
static void bad_end_bytes(struct craft *c)
{
    uint8_t e[16] = {0};

    craft_rec(c, 7, 0, NULL, 0);
    am_st32(e, c->crc);
    am_st64(e + 8, c->bytes + 1);
    craft_rec(c, 8, 0, e, sizeof(e));
}

static void test_every_malformed_record_is_refused_with_a_reason(void **state)
{
    (void)state;
    expect_record_refused(bad_seq, "sequence number 5, expected 0");
    expect_record_refused(bad_flags, "unknown flags 0x2");
    expect_record_refused(bad_huge_len, "length 4294967295 exceeds the largest record");
    expect_record_refused(bad_dev_empty, "device chunk of 0 bytes");
    expect_record_refused(bad_runs_on_dev, "3 runs in a record that has none");
    expect_record_refused(bad_unknown_type, "unknown mandatory record type 99");
    expect_record_refused(bad_reply_from_source, "a source never sends REPLY records");
    expect_record_refused(bad_check_len, "DEV_CHECK) at stream byte 0: length 4, expected 0");
    expect_record_refused(bad_round_len, "length 4, expected 24");
    expect_record_refused(bad_end_early, "END before the stop-copy marker");
    expect_record_refused(bad_two_stops, "a second stop-copy marker");
    expect_record_refused(bad_ram_no_runs, "0 runs, expected 1..64");
    expect_record_refused(bad_ram_65_runs, "65 runs, expected 1..64");
    expect_record_refused(bad_ram_beyond, "run 0: gpa 0x100000 + 1 pages is beyond RAM");
    expect_record_refused(bad_ram_straddles_end, "gpa 0xff000 + 2 pages is beyond RAM");
    expect_record_refused(bad_ram_unaligned, "gpa 0x64 is not page-aligned");
    expect_record_refused(bad_ram_zero_pages, "run 0: no pages");
    expect_record_refused(bad_ram_count_overflow, "+ 4503599627370497 pages is beyond RAM");
    expect_record_refused(bad_ram_gpa_wraps, "is beyond RAM");
    expect_record_refused(bad_ram_too_many_pages, "1025 pages, at most 1024 in one record");
    expect_record_refused(bad_ram_len_mismatch, "does not match 1 runs of 2 pages");
    expect_record_refused(bad_ram_len_short_of_table, "length 8 shorter than its 1 runs");
    expect_record_refused(bad_zero_with_data, "(ZERO)");
    expect_record_refused(bad_zero_beyond, "is beyond RAM");
    expect_record_refused(bad_end_len, "length 4, expected 16");
    expect_record_refused(bad_end_bytes, "the source sent 17 bytes, 16 arrived");
}

static void test_an_unknown_optional_record_is_skipped(void **state)
{
    struct craft c = {0};
    struct vm_ram *ram = ram_new(MiB);
    uint8_t junk[3000];
    struct dest_result r;

    (void)state;
    memset(junk, 0xa5, sizeof(junk));
    craft_source_hello(&c, MiB);
    craft_rec_ex(&c, 77, 1, sizeof(junk), 0, 0, junk, sizeof(junk), sizeof(junk));
    craft_rec(&c, 7, 0, NULL, 0);
    craft_end(&c);
    run_dest(&c, ram, NULL, &r);
    assert_int_equal(r.ret, 0);
    vm_ram_destroy(ram);
    craft_free(&c);
}

static void build_full_stream(struct craft *c)
{
    uint64_t runs[] = {0, 2, 8 * PG, 1};
    uint64_t zruns[] = {16 * PG, 16};
    uint8_t dev[100], rr[24] = {0};

    memset(dev, 0x3c, sizeof(dev));
    craft_source_hello(c, MiB);
    craft_rec(c, 4, 0, dev, sizeof(dev));
    craft_rec(c, 5, 0, NULL, 0);
    craft_ram(c, 2, runs, 2, 3);
    craft_ram(c, 3, zruns, 1, 0);
    craft_rec_ex(c, 6, 1, sizeof(rr), 0, c->seq, rr, sizeof(rr), sizeof(rr));
    craft_rec(c, 7, 0, NULL, 0);
    craft_ram(c, 2, runs, 2, 3);
    craft_rec(c, 4, 0, dev, sizeof(dev));
    craft_end(c);
}

static int accept_all(void *opaque, const void *buf, size_t len, char *why, size_t why_len)
{
    (void)opaque, (void)buf, (void)len, (void)why, (void)why_len;
    return 0;
}

static void test_a_corrupted_byte_is_caught_by_the_stream_crc(void **state)
{
    struct vmstream_device_ops ops = {.write = accept_all};
    struct craft c = {0};
    struct dest_result r;
    struct vm_ram *ram = ram_new(MiB);
    size_t last_dev, stop_ram;

    (void)state;
    build_full_stream(&c);
    run_dest(&c, ram, &ops, &r);
    assert_int_equal(r.ret, 0);
    /* A device byte (always covered) flipped. */
    last_dev = c.len - 32 - 100;
    c.buf[last_dev + 5] ^= 1;
    run_dest(&c, ram, &ops, &r);
    assert_int_equal(r.ret, -EBADMSG);
    assert_err_mentions(r.err, "stream CRC32C mismatch");
    assert_err_mentions(r.answer, "stream CRC32C mismatch");
    c.buf[last_dev + 5] ^= 1;
    /* A RAM byte after the stop-copy marker (covered too) flipped. */
    stop_ram = last_dev - 16 - 3 * PG;
    c.buf[stop_ram + 77] ^= 0x80;
    run_dest(&c, ram, &ops, &r);
    assert_int_equal(r.ret, -EBADMSG);
    assert_err_mentions(r.err, "CRC32C mismatch");
    c.buf[stop_ram + 77] ^= 0x80;
    /* The END's CRC itself wrong. */
    c.buf[c.len - 16] ^= 0xff;
    run_dest(&c, ram, &ops, &r);
    assert_int_equal(r.ret, -EBADMSG);
    assert_err_mentions(r.err, "CRC32C mismatch");
    vm_ram_destroy(ram);
    craft_free(&c);
}

static void test_a_stream_truncated_anywhere_fails_cleanly(void **state)
{
    struct vmstream_device_ops ops = {.write = accept_all};
    struct craft c = {0};
    struct vm_ram *ram = ram_new(MiB);
    struct dest_result r;
    size_t cuts[400], n = 0, off;

    (void)state;
    build_full_stream(&c);
    /* Every byte of the hello and of the record headers, and points inside
     * run tables and page data. */
    for (off = 0; off < 48; off++)
        cuts[n++] = off;
    off = 48;
    while (off < c.len && n + 20 < AM_ARRAY_SIZE(cuts)) {
        uint32_t len = am_le32(c.buf + off + 4);

        for (size_t k = 0; k < 16; k++)
            cuts[n++] = off + k;
        if (len > 0)
            cuts[n++] = off + 16 + len / 2;
        if (len > 1)
            cuts[n++] = off + 16 + len - 1;
        off += 16 + len;
    }
    assert_int_equal(off, c.len);
    for (size_t i = 0; i < n; i++) {
        run_dest_len(&c, cuts[i], ram, &ops, &r);
        if (r.ret != -ECONNRESET || strstr(r.err, "truncated") == NULL)
            fail_msg("cut at %zu: %d (%s)", cuts[i], r.ret, r.err);
    }
    vm_ram_destroy(ram);
    craft_free(&c);
}

/* The test plays the destination against a real source. */
static void *source_handshake_thread(void *arg)
{
    struct side *sd = arg;

    return (void *)(intptr_t)source_handshake_only(sd);
}

static void test_a_garbled_reply_fails_the_source(void **state)
{
    struct side src = {.prof = profile(MiB)};
    struct vmstream_profile p = profile(MiB);
    struct craft c = {0};
    uint8_t hello[48];
    pthread_t t;
    void *ret;
    int fds[2];

    (void)state;
    craft_hello(&c, "ACCMIGVM", VMSTREAM_VERSION_MAJOR, 48, VMSTREAM_DEST, &p);
    /* A REPLY whose length field is huge. */
    craft_rec_ex(&c, 1, 0, 1u << 30, 0, 0, NULL, 0, 0);
    socket_pair(false, fds);
    assert_int_equal(vmstream_create(fds[0], VMSTREAM_SOURCE, TIMEOUT_MS, &src.s), 0);
    pthread_create(&t, NULL, source_handshake_thread, &src);
    assert_int_equal(vm_net_read_full(fds[1], hello, sizeof(hello), NULL), 0);
    assert_memory_equal(hello, "ACCMIGVM", 8);
    assert_int_equal(vm_net_write_full(fds[1], c.buf, c.len), 0);
    pthread_join(t, &ret);
    assert_int_equal((int)(intptr_t)ret, -EBADMSG);
    assert_err_mentions(vmstream_error(src.s), "bad reply from the destination");
    vmstream_destroy(src.s);
    close(fds[0]);
    close(fds[1]);
    craft_free(&c);
}

static void test_a_refusal_reason_is_shown_printable(void **state)
{
    struct side src = {.prof = profile(MiB)};
    struct vmstream_profile p = profile(MiB);
    struct craft c = {0};
    uint8_t hello[48], reply[8 + 12] = {1, 0, 0, 0, 1, 0, 0, 0};
    pthread_t t;
    void *ret;
    int fds[2];

    (void)state;
    memcpy(reply + 8, "bad\x1b[31mred\n", 12);
    craft_hello(&c, "ACCMIGVM", VMSTREAM_VERSION_MAJOR, 48, VMSTREAM_DEST, &p);
    craft_rec(&c, 1, 0, reply, sizeof(reply));
    socket_pair(false, fds);
    assert_int_equal(vmstream_create(fds[0], VMSTREAM_SOURCE, TIMEOUT_MS, &src.s), 0);
    pthread_create(&t, NULL, source_handshake_thread, &src);
    assert_int_equal(vm_net_read_full(fds[1], hello, sizeof(hello), NULL), 0);
    assert_int_equal(vm_net_write_full(fds[1], c.buf, c.len), 0);
    pthread_join(t, &ret);
    assert_int_equal((int)(intptr_t)ret, -EREMOTEIO);
    assert_err_mentions(vmstream_error(src.s), "refused the handshake: bad?[31mred?");
    vmstream_destroy(src.s);
    close(fds[0]);
    close(fds[1]);
    craft_free(&c);
}

/* ---- RAM channels (docs/vm-stream-format.md, "Channels") ---- */

#define CH_ID 0x5eed1234abcd0001ull
#define CH_MAX 4

/* A real source and destination with n RAM channels: the channels' fds
 * are handed over by the test (attach / accept own them). */
struct chan_sides {
    int fds[CH_MAX][2];
    unsigned n;     /* asked for by the source */
    unsigned max;   /* accepted by the destination */
    unsigned agreed_src, agreed_dst;
    struct plan plan;
};

static int chan_source(struct side *sd)
{
    struct chan_sides *c = sd->ctx;
    struct side inner = *sd;
    int ret = vmstream_set_channels(sd->s, c->n, CH_ID);

    if (ret != 0)
        return ret;
    /* source_migrate does the handshake; the channels go right after it,
     * so attach them from the plan's first hook instead: simpler to do the
     * whole flow here. */
    ret = vmstream_handshake(sd->s, &sd->prof, NULL);
    if (ret != 0)
        return ret;
    c->agreed_src = vmstream_channels(sd->s);
    for (unsigned i = 0; i < c->agreed_src && ret == 0; i++) {
        ret = vmstream_attach_channel(sd->s, c->fds[i][0]);
        c->fds[i][0] = -1;
    }
    if (ret == 0)
        ret = vmstream_channels_wait(sd->s);
    if (ret != 0)
        return ret;
    inner.ctx = &c->plan;
    c->plan.rounds = c->plan.rounds ? c->plan.rounds : 3;
    return source_migrate_open(&inner);
}

static int chan_dest(struct side *sd)
{
    struct chan_sides *c = sd->ctx;
    int ret = vmstream_set_channels(sd->s, c->max, 0);

    if (ret == 0)
        ret = vmstream_handshake(sd->s, &sd->prof, NULL);
    if (ret != 0)
        return ret;
    c->agreed_dst = vmstream_channels(sd->s);
    for (unsigned i = 0; i < c->agreed_dst && ret == 0; i++) {
        ret = vmstream_accept_channel(sd->s, c->fds[i][1]);
        c->fds[i][1] = -1;
    }
    return ret != 0 ? ret : vmstream_recv_loop(sd->s, sd->ram, NULL);
}

static void chan_migrate_and_compare(bool tcp, uint64_t size, unsigned n, unsigned max)
{
    struct vm_ram *sram = ram_new(size), *dram = ram_new(size);
    struct chan_sides c = {.n = n, .max = max, .plan = {.rounds = 3, .mutate = mutate_pages}};
    struct side src = {.prof = profile(size), .ram = sram, .run = chan_source, .ctx = &c};
    struct side dst = {.prof = profile(size), .ram = dram, .run = chan_dest, .ctx = &c};
    unsigned want = AM_MIN(n, max);

    for (unsigned i = 0; i < CH_MAX; i++)
        c.fds[i][0] = c.fds[i][1] = -1;
    for (unsigned i = 0; i < want; i++)
        socket_pair(tcp, c.fds[i]);
    memset(vm_ram_host(dram), 0xee, size);
    ram_populate(sram);
    run_pair(tcp, &src, &dst);
    if (src.ret != 0 || dst.ret != 0)
        fail_msg("source %d (%s), destination %d (%s)", src.ret, src.err, dst.ret, dst.err);
    assert_int_equal(c.agreed_src, want);
    assert_int_equal(c.agreed_dst, want);
    assert_memory_equal(vm_ram_host(sram), vm_ram_host(dram), size);
    assert_int_equal(src.st.rounds, 4);
    assert_int_equal(dst.st.rounds, 4);
    assert_int_equal(dst.st.ram_pages, src.st.ram_pages);
    assert_int_equal(dst.st.zero_pages, src.st.zero_pages);
    assert_int_equal(dst.st.bytes, src.st.bytes);
    assert_true(src.st.ram_pages >= vm_ram_pages(sram) * 4 / 5);
    assert_true(c.plan.last_round_pages > 0 && c.plan.last_round_pages < 100);
    for (unsigned i = 0; i < CH_MAX; i++) {
        if (c.fds[i][0] >= 0)
            close(c.fds[i][0]);
        if (c.fds[i][1] >= 0)
            close(c.fds[i][1]);
    }
    vm_ram_destroy(sram);
    vm_ram_destroy(dram);
}

static void test_ram_over_three_channels_arrives_identical_over_loopback_tcp(void **state)
{
    (void)state;
    chan_migrate_and_compare(true, 16 * MiB + 3 * PG, 3, 3);
}

static void test_ram_over_two_channels_arrives_identical_over_socketpairs(void **state)
{
    (void)state;
    chan_migrate_and_compare(false, 8 * MiB, 2, 4);
}

static void test_a_destination_accepting_fewer_channels_gets_that_many(void **state)
{
    (void)state;
    chan_migrate_and_compare(false, 4 * MiB, 4, 1);
}

static void test_a_destination_without_channels_gets_the_pages_on_the_main_one(void **state)
{
    (void)state;
    chan_migrate_and_compare(false, 4 * MiB, 2, 0);
}

/* Hand-made channel streams. */

static void craft_hello_ch(struct craft *c, uint64_t ram_size, uint32_t channels, uint64_t id)
{
    struct vmstream_profile p = profile(ram_size);
    uint8_t ext[16] = {0};

    craft_hello(c, "ACCMIGVM", VMSTREAM_VERSION_MAJOR, 48, VMSTREAM_SOURCE, &p);
    am_st16(c->buf + 10, 1);  /* minor */
    am_st32(c->buf + 12, 64); /* hello length */
    am_st32(ext, channels);
    am_st64(ext + 8, id);
    craft_put(c, ext, sizeof(ext));
}

static void craft_chan_hello(struct craft *c, const char *magic, uint16_t major, uint64_t id,
                             uint32_t index, uint32_t channels)
{
    uint8_t h[32] = {0};

    memcpy(h, magic, 8);
    am_st16(h + 8, major);
    am_st16(h + 10, 1);
    am_st32(h + 12, 32);
    am_st64(h + 16, id);
    am_st32(h + 24, index);
    am_st32(h + 28, channels);
    craft_put(c, h, sizeof(h));
}

static void craft_round(struct craft *c, uint16_t type, uint32_t round)
{
    uint8_t r[24] = {0};

    am_st32(r, round);
    craft_rec(c, type, 0, r, sizeof(r));
}

/* Main stream with channels: two rounds announced, the stop-copy between. */
static void craft_main_ch(struct craft *m, uint32_t channels)
{
    craft_hello_ch(m, MiB, channels, CH_ID);
    craft_round(m, 6, 0);
    craft_rec(m, 7, 0, NULL, 0);
    craft_round(m, 6, 1);
    craft_end(m);
}

/* A well-formed channel: pages of round 0, SYNC, stop-copy, round 1's,
 * SYNC, END. first_page picks which pages it carries. */
static void craft_chan_ok(struct craft *c, uint32_t index, uint32_t channels, uint64_t first_page)
{
    uint64_t run[2] = {first_page * PG, 2};

    craft_chan_hello(c, "ACCMIGCH", VMSTREAM_VERSION_MAJOR, CH_ID, index, channels);
    craft_ram(c, 2, run, 1, 2);
    craft_round(c, 11, 0);
    craft_rec(c, 7, 0, NULL, 0);
    craft_ram(c, 2, run, 1, 2);
    craft_round(c, 11, 1);
    craft_end(c);
}

/* The destination against a hand-made main stream and n hand-made
 * channels (accepted in array order). */
static void run_dest_ch(const struct craft *m, const struct craft *ch, unsigned n, unsigned max,
                        struct vm_ram *ram, struct dest_result *r)
{
    struct vmstream_profile p = profile(vm_ram_size(ram));
    struct feeder f[1 + CH_MAX];
    pthread_t t[1 + CH_MAX];
    int fds[1 + CH_MAX][2];
    struct vmstream *d;
    uint8_t back[4096];
    size_t got = 0, k = 0;

    memset(r, 0, sizeof(*r));
    for (unsigned i = 0; i <= n; i++) {
        socket_pair(false, fds[i]);
        f[i] = (struct feeder){.fd = fds[i][0], .buf = i ? ch[i - 1].buf : m->buf,
                               .len = i ? ch[i - 1].len : m->len};
        assert_int_equal(pthread_create(&t[i], NULL, feed, &f[i]), 0);
    }
    assert_int_equal(vmstream_create(fds[0][1], VMSTREAM_DEST, TIMEOUT_MS, &d), 0);
    assert_int_equal(vmstream_set_channels(d, max, 0), 0);
    r->ret = vmstream_handshake(d, &p, NULL);
    for (unsigned i = 1; i <= n; i++) {
        if (r->ret == 0)
            r->ret = vmstream_accept_channel(d, fds[i][1]);
        else
            close(fds[i][1]);
    }
    if (r->ret == 0)
        r->ret = vmstream_recv_loop(d, ram, NULL);
    snprintf(r->err, sizeof(r->err), "%s", vmstream_error(d));
    vmstream_stats_get(d, &r->st);
    vmstream_destroy(d); /* closes the channels it took */
    shutdown(fds[0][1], SHUT_RDWR);
    for (unsigned i = 0; i <= n; i++)
        pthread_join(t[i], NULL);
    vm_net_set_timeout(fds[0][0], 200);
    vm_net_read_full(fds[0][0], back, sizeof(back), &got);
    for (size_t i = 0; i < got && k + 1 < sizeof(r->answer); i++)
        if (back[i] >= 0x20 && back[i] < 0x7f)
            r->answer[k++] = (char)back[i];
    r->answer[k] = '\0';
    close(fds[0][1]);
    for (unsigned i = 0; i <= n; i++)
        close(fds[i][0]);
}

static void expect_ch(const struct craft *m, const struct craft *ch, unsigned n, int err,
                      const char *needle, bool answered)
{
    struct vm_ram *ram = ram_new(MiB);
    struct dest_result r;

    run_dest_ch(m, ch, n, CH_MAX, ram, &r);
    if (r.ret != err)
        fail_msg("expected %d, got %d (%s)", err, r.ret, r.err);
    if (needle != NULL)
        assert_err_mentions(r.err, needle);
    if (needle != NULL && answered)
        assert_err_mentions(r.answer, needle); /* the source heard why */
    vm_ram_destroy(ram);
}

static void chan_case_free(struct craft *m, struct craft *ch, unsigned n)
{
    craft_free(m);
    for (unsigned i = 0; i < n; i++)
        craft_free(&ch[i]);
}

static void test_a_hand_made_two_channel_stream_is_accepted(void **state)
{
    struct craft m = {0}, ch[2] = {{0}};
    struct vm_ram *ram = ram_new(MiB);
    struct dest_result r;

    (void)state;
    craft_main_ch(&m, 2);
    craft_chan_ok(&ch[0], 1, 2, 0);
    craft_chan_ok(&ch[1], 2, 2, 10);
    run_dest_ch(&m, ch, 2, CH_MAX, ram, &r);
    if (r.ret != 0)
        fail_msg("refused: %s", r.err);
    assert_int_equal(r.st.ram_pages, 8);
    assert_int_equal(r.st.rounds, 2);
    /* Page data as crafted (craft_ram's pattern starts after the run table). */
    assert_int_equal(vm_ram_host(ram)[10 * PG], (uint8_t)(16 * 13 + 1));
    chan_case_free(&m, ch, 2);
    vm_ram_destroy(ram);
}

static void test_a_channel_hello_with_another_migration_id_is_refused(void **state)
{
    struct craft m = {0}, ch[2] = {{0}};

    (void)state;
    craft_main_ch(&m, 2);
    craft_chan_ok(&ch[0], 1, 2, 0);
    craft_chan_hello(&ch[1], "ACCMIGCH", VMSTREAM_VERSION_MAJOR, CH_ID + 1, 2, 2);
    expect_ch(&m, ch, 2, -EBADMSG, "migration id 0x5eed1234abcd0002, this migration is "
              "0x5eed1234abcd0001", true);
    chan_case_free(&m, ch, 2);
}

static void test_a_channel_index_outside_the_agreed_count_is_refused(void **state)
{
    static const uint32_t bad[] = {0, 3, 0xffffffffu};

    (void)state;
    for (unsigned i = 0; i < AM_ARRAY_SIZE(bad); i++) {
        struct craft m = {0}, ch[1] = {{0}};

        craft_main_ch(&m, 2);
        craft_chan_hello(&ch[0], "ACCMIGCH", VMSTREAM_VERSION_MAJOR, CH_ID, bad[i], 2);
        expect_ch(&m, ch, 1, -EBADMSG, "outside 1..2", true);
        chan_case_free(&m, ch, 1);
    }
}

static void test_a_duplicate_channel_is_refused(void **state)
{
    struct craft m = {0}, ch[2] = {{0}};

    (void)state;
    craft_main_ch(&m, 2);
    craft_chan_ok(&ch[0], 1, 2, 0);
    craft_chan_ok(&ch[1], 1, 2, 10);
    expect_ch(&m, ch, 2, -EBADMSG, "a second channel 1", true);
    chan_case_free(&m, ch, 2);
}

static void test_a_bad_channel_hello_is_refused_naming_what_is_wrong(void **state)
{
    struct craft m = {0}, ch[1] = {{0}};

    (void)state;
    craft_main_ch(&m, 1);
    craft_chan_hello(&ch[0], "ACCMIGVM", VMSTREAM_VERSION_MAJOR, CH_ID, 1, 1);
    expect_ch(&m, ch, 1, -EBADMSG, "not a RAM channel", true);
    chan_case_free(&m, ch, 1);

    memset(&m, 0, sizeof(m));
    memset(ch, 0, sizeof(ch));
    craft_main_ch(&m, 1);
    craft_chan_hello(&ch[0], "ACCMIGCH", 3, CH_ID, 1, 1);
    expect_ch(&m, ch, 1, -EPROTONOSUPPORT, "version 3.1", true);
    chan_case_free(&m, ch, 1);

    memset(&m, 0, sizeof(m));
    memset(ch, 0, sizeof(ch));
    craft_main_ch(&m, 1);
    craft_chan_hello(&ch[0], "ACCMIGCH", VMSTREAM_VERSION_MAJOR, CH_ID, 1, 2);
    expect_ch(&m, ch, 1, -EBADMSG, "2 channels announced, 1 were agreed", true);
    chan_case_free(&m, ch, 1);

    /* Cut short: 20 of its 32 bytes. */
    memset(&m, 0, sizeof(m));
    memset(ch, 0, sizeof(ch));
    craft_main_ch(&m, 1);
    craft_chan_hello(&ch[0], "ACCMIGCH", VMSTREAM_VERSION_MAJOR, CH_ID, 1, 1);
    ch[0].len = 20;
    expect_ch(&m, ch, 1, -ECONNRESET, "truncated after 20 of 32 bytes", true);
    chan_case_free(&m, ch, 1);
}

static void test_a_source_asking_for_too_many_channels_is_refused(void **state)
{
    struct craft m = {0};

    (void)state;
    craft_hello_ch(&m, MiB, VMSTREAM_CHANNELS_MAX + 1, CH_ID);
    expect_ch(&m, NULL, 0, -EBADMSG, "asks for 17 RAM channels, at most 16", true);
    craft_free(&m);
    memset(&m, 0, sizeof(m));
    craft_hello_ch(&m, MiB, 2, 0);
    expect_ch(&m, NULL, 0, -EBADMSG, "without a migration id", true);
    craft_free(&m);
}

/* A channel whose records are wrong: each case a good hello, then what
 * goes wrong; the other channel is well-formed. */
static void expect_bad_channel(void (*make)(struct craft *c), int err, const char *needle)
{
    struct craft m = {0}, ch[2] = {{0}};

    craft_main_ch(&m, 2);
    craft_chan_ok(&ch[0], 1, 2, 0);
    craft_chan_hello(&ch[1], "ACCMIGCH", VMSTREAM_VERSION_MAJOR, CH_ID, 2, 2);
    make(&ch[1]);
    expect_ch(&m, ch, 2, err, needle, err != -ECONNRESET);
    chan_case_free(&m, ch, 2);
}

static void bad_oversized(struct craft *c)
{
    uint8_t h[16] = {0};

    am_st16(h, 2);
    am_st32(h + 4, 64u << 20);
    am_st32(h + 8, 1);
    craft_put(c, h, sizeof(h));
}

static void bad_out_of_range(struct craft *c)
{
    uint64_t run[2] = {MiB - PG, 2};

    craft_ram(c, 2, run, 1, 2);
}

static void bad_dev_on_channel(struct craft *c)
{
    craft_rec(c, 4, 0, "abcd", 4);
}

static void bad_short_frame(struct craft *c)
{
    uint64_t run[2] = {20 * PG, 4};

    craft_ram(c, 2, run, 1, 4);
    c->len -= PG + 100; /* the connection ends inside the page data */
}

static void bad_sync_round(struct craft *c)
{
    craft_round(c, 11, 5);
}

static void bad_crc(struct craft *c)
{
    uint64_t run[2] = {20 * PG, 1};

    craft_round(c, 11, 0);
    craft_rec(c, 7, 0, NULL, 0);
    craft_ram(c, 2, run, 1, 1);
    craft_round(c, 11, 1);
    c->buf[c->len - 24 - 16 - 10] ^= 1; /* a final page's byte, after the checksum */
    craft_end(c);
}

static void bad_end_before_stop(struct craft *c)
{
    craft_round(c, 11, 0);
    craft_end(c);
}

static void test_malformed_channel_records_are_refused_with_a_reason(void **state)
{
    (void)state;
    expect_bad_channel(bad_oversized, -EBADMSG, "RAM channel 2: record 0 (RAM) at stream byte "
                       "0: length 67108864 exceeds the largest record");
    expect_bad_channel(bad_out_of_range, -EBADMSG, "RAM channel 2: record 0 (RAM) at stream "
                       "byte 0: run 0: gpa 0xff000 + 2 pages is beyond RAM");
    expect_bad_channel(bad_dev_on_channel, -EBADMSG, "a DEV record does not belong on a RAM "
                       "channel");
    expect_bad_channel(bad_short_frame, -ECONNRESET, "RAM channel 2: stream truncated");
    expect_bad_channel(bad_sync_round, -EBADMSG, "sync of round 5, expected 0");
    expect_bad_channel(bad_crc, -EBADMSG, "channel CRC32C mismatch");
    expect_bad_channel(bad_end_before_stop, -EBADMSG, "END before the channel's stop-copy");
}

static void test_pages_on_the_main_channel_are_refused_when_channels_carry_them(void **state)
{
    struct craft m = {0}, ch[1] = {{0}};
    uint64_t run[2] = {0, 1};

    (void)state;
    craft_hello_ch(&m, MiB, 1, CH_ID);
    craft_ram(&m, 2, run, 1, 1);
    craft_chan_ok(&ch[0], 1, 1, 0);
    expect_ch(&m, ch, 1, -EBADMSG, "pages on the main channel while 1 RAM channels carry them",
              true);
    chan_case_free(&m, ch, 1);
}

static void test_channel_calls_out_of_order_are_refused(void **state)
{
    struct vmstream *s;
    int fds[2], cfd[2];

    (void)state;
    socket_pair(false, fds);
    assert_int_equal(vmstream_create(fds[0], VMSTREAM_SOURCE, TIMEOUT_MS, &s), 0);
    assert_int_equal(vmstream_set_channels(s, VMSTREAM_CHANNELS_MAX + 1, CH_ID), -EINVAL);
    assert_int_equal(vmstream_set_channels(s, 2, 0), -EINVAL);
    socket_pair(false, cfd);
    assert_int_equal(vmstream_attach_channel(s, cfd[0]), -EINVAL); /* before the handshake */
    assert_int_equal(vmstream_channels(s), 0);
    vmstream_destroy(s);
    close(cfd[1]);
    close(fds[0]);
    close(fds[1]);
}

#define T(f) cmocka_unit_test_setup_teardown(f, fds_setup, fds_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_handshake_accepts_an_identical_profile),
        T(test_a_destination_with_another_qp_count_refuses_naming_it),
        T(test_a_refusal_names_every_field_that_differs),
        T(test_two_sources_connected_together_both_fail_clearly),
        T(test_calls_out_of_order_are_refused_and_leave_the_channel_usable),
        T(test_ram_with_dirty_rounds_arrives_identical_over_a_socketpair),
        T(test_ram_with_dirty_rounds_arrives_identical_over_loopback_tcp),
        T(test_untouched_ram_travels_as_zero_runs_and_stays_unbacked),
        T(test_pages_the_guest_writes_during_precopy_are_resent),
        T(test_a_round_with_ram_of_another_size_is_refused),
        T(test_device_state_arrives_whole_and_the_final_answer_follows_resume),
        T(test_a_device_refusing_the_match_data_stops_the_migration_before_ram),
        T(test_a_device_that_fails_to_resume_keeps_the_source_in_charge),
        T(test_device_state_sent_to_a_destination_without_a_device_is_refused),
        T(test_a_source_that_disappears_mid_stream_gives_a_truncation_error),
        T(test_a_destination_that_disappears_mid_round_fails_the_source_cleanly),
        T(test_a_silent_source_times_out_the_destination),
        T(test_abort_ends_a_destination_blocked_waiting_for_records),
        T(test_a_well_formed_hand_made_stream_is_accepted),
        T(test_a_foreign_stream_is_refused_on_its_magic),
        T(test_another_major_version_is_refused_with_both_versions_named),
        T(test_a_hello_with_an_impossible_length_is_refused),
        T(test_a_longer_hello_from_a_later_minor_is_accepted),
        T(test_every_malformed_record_is_refused_with_a_reason),
        T(test_an_unknown_optional_record_is_skipped),
        T(test_a_corrupted_byte_is_caught_by_the_stream_crc),
        T(test_a_stream_truncated_anywhere_fails_cleanly),
        T(test_a_garbled_reply_fails_the_source),
        T(test_a_refusal_reason_is_shown_printable),
        T(test_commit_carries_the_migration_id_and_committed_ends_both_sides),
        T(test_an_abort_after_ready_tells_the_destination_to_discard),
        T(test_a_source_aborted_after_ready_tells_the_destination_and_refuses_commit),
        T(test_a_source_gone_after_ready_leaves_the_destination_in_doubt),
        T(test_a_destination_gone_after_commit_leaves_the_source_in_doubt),
        T(test_a_destination_refusing_after_commit_gives_the_guest_back),
        T(test_ram_over_three_channels_arrives_identical_over_loopback_tcp),
        T(test_ram_over_two_channels_arrives_identical_over_socketpairs),
        T(test_a_destination_accepting_fewer_channels_gets_that_many),
        T(test_a_destination_without_channels_gets_the_pages_on_the_main_one),
        T(test_a_hand_made_two_channel_stream_is_accepted),
        T(test_a_channel_hello_with_another_migration_id_is_refused),
        T(test_a_channel_index_outside_the_agreed_count_is_refused),
        T(test_a_duplicate_channel_is_refused),
        T(test_a_bad_channel_hello_is_refused_naming_what_is_wrong),
        T(test_a_source_asking_for_too_many_channels_is_refused),
        T(test_malformed_channel_records_are_refused_with_a_reason),
        T(test_pages_on_the_main_channel_are_refused_when_channels_carry_them),
        T(test_channel_calls_out_of_order_are_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
