/* vfu server, command by command, with raw (often malformed) messages over
 * the socket: happy path, truncation at every field, bad indexes, wrong
 * state, descriptor counts, unaligned and wrapping ranges, and descriptor
 * leaks. The server runs in-process on its own thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

#include "vfu/vfu_pci.h"
#include "vfu_test_util.h"

struct fixture {
    struct test_server ts;
    struct raw_conn rc;
    unsigned base_fds;
};

static int fixture_up(void **state, enum mig_hw_mode hw)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->rc.fd = -1;
    if (test_server_start(&f->ts, 2, hw, NULL) || raw_open(&f->rc, test_sock(&f->ts, 0))) {
        free(f);
        return -1;
    }
    f->base_fds = test_count_fds();
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return fixture_up(state, MIG_HW_V4);
}

static int setup_v3(void **state)
{
    return fixture_up(state, MIG_HW_V3);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    raw_close(&f->rc);
    test_server_stop(&f->ts, false);
    free(f);
    return 0;
}

static int call(struct fixture *f, uint16_t cmd, const void *p, size_t len, void *rep, size_t cap,
                size_t *rep_len)
{
    return raw_call(&f->rc, cmd, p, len, NULL, 0, rep, cap, rep_len);
}

static int call_fds(struct fixture *f, uint16_t cmd, const void *p, size_t len, const int *fds,
                    size_t nfds)
{
    return raw_call(&f->rc, cmd, p, len, fds, nfds, NULL, 0, NULL);
}

static int memfd(size_t size)
{
    int fd = memfd_create("vfu-test", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    return fd;
}

/* ---- VERSION and framing ---- */

static const char qemu_caps[] =
    "{\"capabilities\":{\"migration\":{\"pgsize\":4096,\"max_bitmap_size\":268435456},"
    "\"max_msg_fds\":16,\"max_data_xfer_size\":1048576,\"pgsizes\":4096,"
    "\"max_dma_maps\":65535,\"write_multiple\":true}}";

static void test_version_0_0_from_qemu_gets_0_0_and_a_reply_no_larger_than_the_request(
    void **state)
{
    struct fixture *f = *state;
    struct raw_conn rc;
    uint8_t req[512], rep[512];
    struct vfu_version v = {0, 0};
    struct vfu_caps caps;
    size_t n = strlen(qemu_caps) + 1, got = 0;

    assert_int_equal(raw_connect(&rc, test_sock(&f->ts, 1)), 0);
    memcpy(req, &v, sizeof(v));
    memcpy(req + 4, qemu_caps, n);
    assert_int_equal(raw_call(&rc, VFU_CMD_VERSION, req, 4 + n, NULL, 0, rep, sizeof(rep), &got), 0);
    assert_true(got <= 4 + n);
    memcpy(&v, rep, sizeof(v));
    assert_int_equal(v.major, 0);
    assert_int_equal(v.minor, 0);
    assert_int_equal(rep[got - 1], '\0'); /* the NUL exactly at msg_size */
    assert_int_equal(vfu_caps_parse((char *)rep + 4, got - 4, &caps), 0);
    assert_int_equal(caps.max_msg_fds, VFU_SERVER_MAX_MSG_FDS);
    assert_int_equal(caps.max_xfer, VFU_DEFAULT_MAX_XFER);
    assert_int_equal(caps.max_dma_maps, 65535);
    assert_int_equal(caps.pgsizes, 4096);
    assert_true(caps.write_multiple);
    assert_false(caps.has_twin); /* not asked for */
    raw_close(&rc);
}

/* libvfio-user's sample client takes 32 descriptors per message and a
 * 1 KiB transfer size; the server answers with its own 8 and serves it. */
static void test_version_with_max_msg_fds_32_is_answered_with_ours_and_the_session_works(
    void **state)
{
    struct fixture *f = *state;
    struct raw_conn rc;
    const char *json = "{\"capabilities\":{\"max_msg_fds\":32,\"max_data_xfer_size\":1024,"
                       "\"migration\":{\"pgsize\":4096}}}";
    struct vfu_region_access a = {.offset = 0, .region = VFU_REGION_CONFIG, .count = 2};
    uint8_t req[160], rep[160];
    struct vfu_version v = {0, 0};
    struct vfu_caps caps;
    size_t got = 0, n = strlen(json) + 1;

    assert_int_equal(raw_connect(&rc, test_sock(&f->ts, 1)), 0);
    memcpy(req, &v, sizeof(v));
    memcpy(req + 4, json, n);
    assert_int_equal(raw_call(&rc, VFU_CMD_VERSION, req, 4 + n, NULL, 0, rep, sizeof(rep), &got), 0);
    assert_int_equal(vfu_caps_parse((char *)rep + 4, got - 4, &caps), 0);
    assert_true(caps.has_max_msg_fds);
    assert_int_equal(caps.max_msg_fds, VFU_SERVER_MAX_MSG_FDS);
    assert_int_equal(raw_call(&rc, VFU_CMD_REGION_READ, &a, sizeof(a), NULL, 0, rep, sizeof(rep),
                              &got), 0);
    assert_int_equal(got, 18);
    assert_int_equal(am_le16(rep + 16), QM_VENDOR_ID);
    raw_close(&rc);
}

/* The spec (VERSION) lets a minor version add capabilities as a compatible
 * change, and the reply is a subset of what was proposed: a server skips the
 * names it does not know and answers none of them. Unknown keys of every
 * JSON type, nested or not, at the top and inside "capabilities", are
 * skipped, and the known ones still apply. */
static void test_version_ignores_unknown_capabilities_and_keys_of_any_type(void **state)
{
    struct fixture *f = *state;
    struct raw_conn rc;
    const char *json = "{\"capabilities\":{\"future_cap\":{\"a\":[1,{\"b\":null}]},"
                       "\"max_msg_fds\":4,\"x_str\":\"s\",\"x_num\":-1.5,\"x_bool\":false,"
                       "\"x_null\":null},\"vendor\":{\"k\":1},\"list\":[]}";
    uint8_t req[300], rep[300];
    struct vfu_version v = {0, 0};
    struct vfu_caps caps;
    size_t got = 0, n = strlen(json) + 1;

    assert_int_equal(raw_connect(&rc, test_sock(&f->ts, 1)), 0);
    memcpy(req, &v, sizeof(v));
    memcpy(req + 4, json, n);
    assert_int_equal(raw_call(&rc, VFU_CMD_VERSION, req, 4 + n, NULL, 0, rep, sizeof(rep), &got), 0);
    assert_true(got > 4);
    assert_int_equal(vfu_caps_parse((char *)rep + 4, got - 4, &caps), 0);
    assert_true(caps.has_max_msg_fds);
    assert_null(strstr((char *)rep + 4, "future_cap"));
    assert_null(strstr((char *)rep + 4, "vendor"));
    raw_close(&rc);
}

static void test_version_answers_only_what_was_proposed_and_minor_0_to_a_higher_minor(
    void **state)
{
    struct fixture *f = *state;
    struct raw_conn rc;
    const char *json = "{\"capabilities\":{\"max_data_xfer_size\":4194304}}";
    uint8_t req[128], rep[128];
    struct vfu_version v = {0, 7};
    struct vfu_caps caps;
    size_t got = 0, n = strlen(json) + 1;

    assert_int_equal(raw_connect(&rc, test_sock(&f->ts, 1)), 0);
    memcpy(req, &v, sizeof(v));
    memcpy(req + 4, json, n);
    assert_int_equal(raw_call(&rc, VFU_CMD_VERSION, req, 4 + n, NULL, 0, rep, sizeof(rep), &got), 0);
    memcpy(&v, rep, sizeof(v));
    assert_int_equal(v.minor, 0);
    assert_int_equal(vfu_caps_parse((char *)rep + 4, got - 4, &caps), 0);
    assert_true(caps.has_max_xfer);
    assert_false(caps.has_max_msg_fds || caps.has_pgsizes || caps.has_write_multiple);
    raw_close(&rc);
}

static void test_version_with_a_tiny_or_no_json_is_answered_with_the_version_alone(void **state)
{
    struct fixture *f = *state;
    struct raw_conn rc;
    uint8_t rep[64];
    size_t got = 0;
    struct vfu_version v = {0, 0};
    uint8_t req[8];

    assert_int_equal(raw_connect(&rc, test_sock(&f->ts, 1)), 0);
    memcpy(req, &v, 4);
    memcpy(req + 4, "{}", 3);
    assert_int_equal(raw_call(&rc, VFU_CMD_VERSION, req, 7, NULL, 0, rep, sizeof(rep), &got), 0);
    assert_int_equal(got, 4);
    raw_close(&rc);
    assert_int_equal(raw_connect(&rc, test_sock(&f->ts, 1)), 0);
    assert_int_equal(raw_call(&rc, VFU_CMD_VERSION, req, 4, NULL, 0, rep, sizeof(rep), &got), 0);
    assert_int_equal(got, 4);
    raw_close(&rc);
}

static void test_version_refuses_major_1_bad_json_and_a_second_handshake(void **state)
{
    struct fixture *f = *state;
    struct raw_conn rc;
    struct vfu_version v = {1, 0};
    uint8_t req[32];

    assert_int_equal(raw_connect(&rc, test_sock(&f->ts, 1)), 0);
    assert_int_equal(raw_call(&rc, VFU_CMD_VERSION, &v, 4, NULL, 0, NULL, 0, NULL), -ENOTSUP);
    v.major = 0;
    memcpy(req, &v, 4);
    memcpy(req + 4, "{}x", 3); /* no NUL at the end */
    assert_int_equal(raw_call(&rc, VFU_CMD_VERSION, req, 7, NULL, 0, NULL, 0, NULL), -EINVAL);
    assert_int_equal(raw_call(&rc, VFU_CMD_VERSION, req, 3, NULL, 0, NULL, 0, NULL), -EINVAL);
    assert_int_equal(raw_version(&rc, "{}"), 0);
    assert_int_equal(raw_version(&rc, "{}"), -EINVAL);
    raw_close(&rc);
}

static void test_commands_before_version_are_refused(void **state)
{
    struct fixture *f = *state;
    struct raw_conn rc;
    struct vfu_device_info info = {.argsz = 16};

    assert_int_equal(raw_connect(&rc, test_sock(&f->ts, 1)), 0);
    assert_int_equal(raw_call(&rc, VFU_CMD_DEVICE_GET_INFO, &info, sizeof(info), NULL, 0, NULL, 0,
                              NULL),
                     -EINVAL);
    assert_int_equal(raw_version(&rc, NULL), 0);
    assert_int_equal(raw_call(&rc, VFU_CMD_DEVICE_GET_INFO, &info, sizeof(info), NULL, 0, NULL, 0,
                              NULL),
                     0);
    raw_close(&rc);
}

static void test_a_header_above_the_maximum_size_gets_e2big_and_the_connection_ends(void **state)
{
    struct fixture *f = *state;
    struct vfu_hdr h = {.msg_id = 77, .cmd = VFU_CMD_REGION_WRITE, .size = 64u << 20};
    struct vfu_msg m;
    struct raw_conn rc2;

    assert_int_equal(write(f->rc.fd, &h, sizeof(h)), (ssize_t)sizeof(h));
    assert_int_equal(vfu_rx_wait(&f->rc.rx, &f->rc.t, &m, TEST_REPLY_TIMEOUT_MS), 1);
    assert_int_equal(m.hdr.msg_id, 77);
    assert_true(m.hdr.flags & VFU_HDR_ERROR);
    assert_int_equal(m.hdr.error, E2BIG);
    vfu_msg_release(&m);
    assert_int_equal(vfu_rx_wait(&f->rc.rx, &f->rc.t, &m, TEST_REPLY_TIMEOUT_MS), -ECONNRESET);
    /* The VF is free for the next client. */
    assert_int_equal(raw_open(&rc2, test_sock(&f->ts, 0)), 0);
    raw_close(&rc2);
}

static void test_a_reply_or_a_size_below_16_from_the_client_ends_the_connection(void **state)
{
    struct fixture *f = *state;
    struct vfu_hdr h = {.msg_id = 5, .cmd = VFU_CMD_DEVICE_RESET, .size = 16,
                        .flags = VFU_HDR_TYPE_REPLY};
    struct vfu_msg m;
    struct raw_conn rc;

    assert_int_equal(write(f->rc.fd, &h, sizeof(h)), (ssize_t)sizeof(h));
    assert_int_equal(vfu_rx_wait(&f->rc.rx, &f->rc.t, &m, TEST_REPLY_TIMEOUT_MS), 1);
    assert_int_equal(m.hdr.error, EINVAL);
    vfu_msg_release(&m);
    assert_int_equal(vfu_rx_wait(&f->rc.rx, &f->rc.t, &m, TEST_REPLY_TIMEOUT_MS), -ECONNRESET);

    assert_int_equal(raw_open(&rc, test_sock(&f->ts, 0)), 0);
    h.flags = 0;
    h.size = 8;
    assert_int_equal(write(rc.fd, &h, sizeof(h)), (ssize_t)sizeof(h));
    assert_int_equal(vfu_rx_wait(&rc.rx, &rc.t, &m, TEST_REPLY_TIMEOUT_MS), 1);
    assert_int_equal(m.hdr.error, EINVAL);
    vfu_msg_release(&m);
    raw_close(&rc);
}

static void test_unknown_commands_and_client_sent_dma_are_refused(void **state)
{
    struct fixture *f = *state;
    struct vfu_dma_access a = {0, 8};

    assert_int_equal(call(f, 14, NULL, 0, NULL, 0, NULL), -ENOTSUP);
    assert_int_equal(call(f, 200, NULL, 0, NULL, 0, NULL), -ENOTSUP);
    assert_int_equal(call(f, VFU_CMD_DMA_READ, &a, sizeof(a), NULL, 0, NULL), -EINVAL);
    assert_int_equal(call(f, VFU_CMD_DMA_WRITE, &a, sizeof(a), NULL, 0, NULL), -EINVAL);
}

static void test_a_no_reply_command_is_not_answered_and_the_next_one_is(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[24] = {0};
    struct vfu_region_access *a = (void *)buf;
    uint8_t line = 0x5a;
    uint8_t rep[32];
    size_t got = 0;

    a->offset = 0x3c;
    a->region = VFU_REGION_CONFIG;
    a->count = 1;
    buf[16] = line;
    assert_int_equal(raw_send(&f->rc, VFU_CMD_REGION_WRITE, VFU_HDR_NO_REPLY, buf, 17, NULL, 0), 0);
    a->count = 1;
    assert_int_equal(call(f, VFU_CMD_REGION_READ, a, 16, rep, sizeof(rep), &got), 0);
    assert_int_equal(got, 17);
    assert_int_equal(rep[16], line);
}

static void test_commands_pipelined_in_one_write_are_answered_in_order(void **state)
{
    struct fixture *f = *state;
    uint8_t wire[3 * 32];
    struct vfu_region_access a = {.offset = 0, .region = VFU_REGION_CONFIG, .count = 2};
    struct vfu_msg m;

    for (unsigned i = 0; i < 3; i++) {
        struct vfu_hdr h = {.msg_id = (uint16_t)(700 + i), .cmd = VFU_CMD_REGION_READ,
                            .size = 32, .flags = VFU_HDR_TYPE_COMMAND};
        a.offset = 2 * i; /* vendor, device, command */
        memcpy(wire + 32 * i, &h, sizeof(h));
        memcpy(wire + 32 * i + 16, &a, sizeof(a));
    }
    assert_int_equal(write(f->rc.fd, wire, sizeof(wire)), (ssize_t)sizeof(wire));
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(vfu_rx_wait(&f->rc.rx, &f->rc.t, &m, TEST_REPLY_TIMEOUT_MS), 1);
        assert_int_equal(m.hdr.msg_id, 700 + i);
        assert_false(m.hdr.flags & VFU_HDR_ERROR);
        assert_int_equal(m.len, 16 + 2);
        if (i < 2)
            assert_int_equal(am_le16(m.payload + 16), i == 0 ? QM_VENDOR_ID : QM_ZIP_VF_DEVICE_ID);
        vfu_msg_release(&m);
    }
}

static void test_a_client_stuck_inside_a_message_holds_up_no_other_vf(void **state)
{
    struct fixture *f = *state;
    struct vfu_region_access a = {.offset = 0, .region = VFU_REGION_CONFIG, .count = 2};
    uint8_t wire[32], rep[32];
    struct vfu_hdr h = {.msg_id = 42, .cmd = VFU_CMD_REGION_READ, .size = 32,
                        .flags = VFU_HDR_TYPE_COMMAND};
    struct raw_conn other;
    struct vfu_msg m;
    size_t got = 0;

    memcpy(wire, &h, sizeof(h));
    memcpy(wire + 16, &a, sizeof(a));
    /* VF0's client stops in the middle of its header. */
    assert_int_equal(write(f->rc.fd, wire, 10), 10);
    assert_int_equal(raw_open(&other, test_sock(&f->ts, 1)), 0);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(raw_call(&other, VFU_CMD_REGION_READ, &a, sizeof(a), NULL, 0, rep,
                                  sizeof(rep), &got), 0);
        assert_int_equal(got, 18);
        assert_int_equal(am_le16(rep + 16), QM_VENDOR_ID);
    }
    raw_close(&other);
    /* The rest of VF0's message arrives: it is answered. */
    assert_int_equal(write(f->rc.fd, wire + 10, sizeof(wire) - 10), (ssize_t)(sizeof(wire) - 10));
    assert_int_equal(vfu_rx_wait(&f->rc.rx, &f->rc.t, &m, TEST_REPLY_TIMEOUT_MS), 1);
    assert_int_equal(m.hdr.msg_id, 42);
    assert_int_equal(m.len, 18);
    vfu_msg_release(&m);
}

static void test_a_client_that_reconnects_at_once_finds_its_vf_free(void **state)
{
    struct fixture *f = *state;
    struct raw_conn rc;

    for (int i = 0; i < 50; i++) {
        assert_int_equal(raw_open(&rc, test_sock(&f->ts, 1)), 0);
        raw_close(&rc);
    }
}

/* Every fixed-size command with its payload cut at each byte. */
static void test_every_command_truncated_at_each_field_is_einval(void **state)
{
    static const struct { uint16_t cmd; size_t len; } fixed[] = {
        {VFU_CMD_DMA_MAP, 32},          {VFU_CMD_DMA_UNMAP, 24},
        {VFU_CMD_DEVICE_GET_INFO, 16},  {VFU_CMD_DEVICE_GET_REGION_INFO, 32},
        {VFU_CMD_DEVICE_GET_REGION_IO_FDS, 16}, {VFU_CMD_DEVICE_GET_IRQ_INFO, 16},
        {VFU_CMD_DEVICE_SET_IRQS, 20},  {VFU_CMD_REGION_READ, 16},
        {VFU_CMD_REGION_WRITE, 16},     {VFU_CMD_REGION_WRITE_MULTI, 8},
        {VFU_CMD_DEVICE_FEATURE, 8},    {VFU_CMD_MIG_DATA_READ, 8},
        {VFU_CMD_MIG_DATA_WRITE, 8},    {VFU_CMD_VERSION, 4},
    };
    struct fixture *f = *state;
    uint8_t payload[64];

    memset(payload, 0xff, sizeof(payload));
    for (size_t i = 0; i < AM_ARRAY_SIZE(fixed); i++)
        for (size_t len = 0; len < fixed[i].len; len++)
            assert_int_equal(call(f, fixed[i].cmd, payload, len, NULL, 0, NULL), -EINVAL);
}

/* ---- DMA_MAP / DMA_UNMAP ---- */

static struct vfu_dma_map map_req(uint64_t addr, uint64_t size, uint32_t flags)
{
    return (struct vfu_dma_map){.argsz = 32, .flags = flags, .addr = addr, .size = size};
}

static void test_dma_map_with_an_fd_then_unmap_of_the_exact_range_succeeds(void **state)
{
    struct fixture *f = *state;
    int fd = memfd(1 << 20);
    struct vfu_dma_map m = map_req(0x100000, 1 << 20, 3);
    struct vfu_dma_unmap u = {.argsz = 24, .addr = 0x100000, .size = 1 << 20}, rep;
    size_t got = 0;

    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1), 0);
    assert_int_equal(iommu_mapping_count(qm_dev_iommu(vfu_device_qm(vfu_server_device(f->ts.srv)), 1)), 1);
    assert_int_equal(call(f, VFU_CMD_DMA_UNMAP, &u, sizeof(u), &rep, sizeof(rep), &got), 0);
    assert_int_equal(got, sizeof(rep));
    assert_int_equal(rep.addr, 0x100000);
    assert_int_equal(rep.size, 1 << 20);
    close(fd);
}

static void test_dma_map_refuses_bad_argsz_flags_sizes_alignment_and_wrap(void **state)
{
    struct fixture *f = *state;
    int fd = memfd(1 << 16);
    struct vfu_dma_map m;
    uint8_t big[33] = {0};

    m = map_req(0, 4096, 3);
    m.argsz = 31;
    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1), -EINVAL);
    m = map_req(0, 4096, 0);
    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1), -EINVAL);
    m = map_req(0, 4096, 4 | 1);
    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1), -EINVAL);
    m = map_req(0, 0, 3);
    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1), -EINVAL);
    m = map_req(0x800, 4096, 3);
    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1), -EINVAL);
    m = map_req(0, 4097, 3);
    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1), -EINVAL);
    m = map_req(0, 4096, 3);
    m.offset = 100;
    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1), -EINVAL);
    m = map_req(UINT64_MAX - 4095, 8192, 3);
    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1), -EOVERFLOW);
    m = map_req(0, 4096, 3);
    memcpy(big, &m, sizeof(m));
    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, big, sizeof(big), &fd, 1), -EINVAL);
    m.offset = 4096; /* offset without an fd */
    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m, sizeof(m), NULL, 0), -EINVAL);
    close(fd);
    assert_int_equal(test_count_fds(), f->base_fds);
}

static void test_dma_map_beyond_the_end_of_its_file_is_refused(void **state)
{
    struct fixture *f = *state;
    int fd = memfd(4096);
    struct vfu_dma_map m = map_req(0, 8192, 3);

    /* mmap would succeed and the first device access past EOF would kill
     * the server with SIGBUS: refused up front. */
    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1), -ENXIO);
    m = map_req(0, 4096, 3);
    m.offset = 4096;
    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1), -ENXIO);
    close(fd);
}

static void test_dma_map_over_an_existing_range_is_eexist(void **state)
{
    struct fixture *f = *state;
    int fd = memfd(1 << 20);
    struct vfu_dma_map m = map_req(0x10000, 0x10000, 3);

    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1), 0);
    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1), -EEXIST);
    m = map_req(0x18000, 0x10000, 3);
    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1), -EEXIST);
    m = map_req(0x20000, 0x10000, 3);
    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1), 0);
    close(fd);
}

static void test_dma_map_with_two_fds_is_einval_and_closes_both(void **state)
{
    struct fixture *f = *state;
    int fds[2] = {memfd(4096), memfd(4096)};
    struct vfu_dma_map m = map_req(0, 4096, 3);

    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m, sizeof(m), fds, 2), -EINVAL);
    close(fds[0]);
    close(fds[1]);
    assert_int_equal(test_count_fds(), f->base_fds);
}

/* DMA_UNMAP of ranges (several maps, 2^64 ends, straddling): test_vfu_dma_unmap.c. */

static void test_dma_unmap_all_removes_everything_and_refuses_an_address(void **state)
{
    struct fixture *f = *state;
    int fd = memfd(1 << 16);
    struct vfu_dma_map m1 = map_req(0x10000, 0x4000, 1), m2 = map_req(0x20000, 0x4000, 2);
    struct vfu_dma_unmap u = {.argsz = 24, .flags = VFU_DMA_UNMAP_FLAG_ALL, .addr = 0x10000};

    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m1, sizeof(m1), &fd, 1), 0);
    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m2, sizeof(m2), &fd, 1), 0);
    assert_int_equal(call(f, VFU_CMD_DMA_UNMAP, &u, sizeof(u), NULL, 0, NULL), -EINVAL);
    u.addr = 0;
    assert_int_equal(call(f, VFU_CMD_DMA_UNMAP, &u, sizeof(u), NULL, 0, NULL), 0);
    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m1, sizeof(m1), &fd, 1), 0); /* free again */
    u.flags = VFU_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
    assert_int_equal(call(f, VFU_CMD_DMA_UNMAP, &u, sizeof(u), NULL, 0, NULL), -ENOTSUP);
    u.flags = 1u << 7;
    assert_int_equal(call(f, VFU_CMD_DMA_UNMAP, &u, sizeof(u), NULL, 0, NULL), -EINVAL);
    close(fd);
}

/* ---- info ---- */

static void test_device_info_says_pci_with_reset_9_regions_5_irqs(void **state)
{
    struct fixture *f = *state;
    struct vfu_device_info info = {.argsz = 16}, rep;
    size_t got = 0;

    assert_int_equal(call(f, VFU_CMD_DEVICE_GET_INFO, &info, sizeof(info), &rep, sizeof(rep), &got), 0);
    assert_int_equal(got, 16);
    assert_int_equal(rep.flags, VFU_DEVICE_FLAGS_RESET | VFU_DEVICE_FLAGS_PCI);
    assert_int_equal(rep.num_regions, 9);
    assert_int_equal(rep.num_irqs, 5);
    info.argsz = 15;
    assert_int_equal(call(f, VFU_CMD_DEVICE_GET_INFO, &info, sizeof(info), NULL, 0, NULL), -EINVAL);
}

static uint64_t region_size_of(struct fixture *f, uint32_t index, int *err)
{
    struct vfu_region_info ri = {.argsz = 32, .index = index}, rep;
    *err = call(f, VFU_CMD_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), &rep, sizeof(rep), NULL);
    return *err ? 0 : rep.size;
}

static void test_region_info_gives_bar2_64k_config_4k_and_refuses_index_9(void **state)
{
    struct fixture *f = *state;
    int err;

    assert_int_equal(region_size_of(f, VFU_REGION_BAR2, &err), 64 << 10);
    assert_int_equal(err, 0);
    assert_int_equal(region_size_of(f, VFU_REGION_CONFIG, &err), 4096);
    assert_int_equal(region_size_of(f, VFU_REGION_BAR0, &err), 0);
    assert_int_equal(err, 0);
    region_size_of(f, 9, &err);
    assert_int_equal(err, -EINVAL);
    region_size_of(f, UINT32_MAX, &err);
    assert_int_equal(err, -EINVAL);
}

static void test_v3_mode_shows_only_the_lower_32k_of_bar2(void **state)
{
    struct fixture *f = *state;
    struct vfu_region_access a = {.offset = 0x8000, .region = VFU_REGION_BAR2, .count = 4};
    int err;

    assert_int_equal(region_size_of(f, VFU_REGION_BAR2, &err), 32 << 10);
    assert_int_equal(call(f, VFU_CMD_REGION_READ, &a, sizeof(a), NULL, 0, NULL), -EINVAL);
    a.offset = QM_VF_STATE;
    assert_int_equal(call(f, VFU_CMD_REGION_READ, &a, sizeof(a), NULL, 0, NULL), 0);
}

/* GET_REGION_IO_FDS: BAR2 (trapped registers) and config space have no
 * ioeventfd: count 0, no descriptor; BAR4's come only to the client its
 * pages were handed to (test_vfu_db_pages.c). Malformed requests get
 * EINVAL, each for its own reason. */
static void test_region_io_fds_offers_none_outside_bar4_and_refuses_malformed_requests(
    void **state)
{
    struct fixture *f = *state;
    struct vfu_region_io_fds r = {.argsz = 16, .index = VFU_REGION_BAR2}, rep;
    size_t got = 0;

    assert_int_equal(call(f, VFU_CMD_DEVICE_GET_REGION_IO_FDS, &r, sizeof(r), &rep, sizeof(rep),
                          &got),
                     0);
    assert_int_equal(got, 16);
    assert_int_equal(rep.argsz, 16);
    assert_int_equal(rep.count, 0);
    assert_int_equal(rep.index, VFU_REGION_BAR2);
    r.index = VFU_REGION_CONFIG;
    assert_int_equal(call(f, VFU_CMD_DEVICE_GET_REGION_IO_FDS, &r, sizeof(r), &rep, sizeof(rep),
                          &got),
                     0);
    assert_int_equal(rep.count, 0);
    /* a region index beyond the device's, and one the device does not have */
    r.index = 9;
    assert_int_equal(call(f, VFU_CMD_DEVICE_GET_REGION_IO_FDS, &r, sizeof(r), NULL, 0, NULL), -EINVAL);
    r.index = UINT32_MAX;
    assert_int_equal(call(f, VFU_CMD_DEVICE_GET_REGION_IO_FDS, &r, sizeof(r), NULL, 0, NULL), -EINVAL);
    r.index = VFU_REGION_BAR0;
    assert_int_equal(call(f, VFU_CMD_DEVICE_GET_REGION_IO_FDS, &r, sizeof(r), NULL, 0, NULL), -EINVAL);
    /* argsz below the struct, and above anything a reply could be */
    r.index = VFU_REGION_BAR2;
    r.argsz = 15;
    assert_int_equal(call(f, VFU_CMD_DEVICE_GET_REGION_IO_FDS, &r, sizeof(r), NULL, 0, NULL), -EINVAL);
    r.argsz = UINT32_MAX;
    assert_int_equal(call(f, VFU_CMD_DEVICE_GET_REGION_IO_FDS, &r, sizeof(r), NULL, 0, NULL), -EINVAL);
    /* flags and count must be zero; the payload must be the struct */
    r.argsz = 16;
    r.flags = 1;
    assert_int_equal(call(f, VFU_CMD_DEVICE_GET_REGION_IO_FDS, &r, sizeof(r), NULL, 0, NULL), -EINVAL);
    r.flags = 0;
    r.count = 1;
    assert_int_equal(call(f, VFU_CMD_DEVICE_GET_REGION_IO_FDS, &r, sizeof(r), NULL, 0, NULL), -EINVAL);
    r.count = 0;
    assert_int_equal(call(f, VFU_CMD_DEVICE_GET_REGION_IO_FDS, &r, 12, NULL, 0, NULL), -EINVAL);
    assert_int_equal(test_count_fds(), f->base_fds);
}

static void test_irq_info_gives_4_msi_vectors_and_refuses_index_5(void **state)
{
    struct fixture *f = *state;
    struct vfu_irq_info i = {.argsz = 16, .index = VFU_IRQ_MSI}, rep;

    assert_int_equal(call(f, VFU_CMD_DEVICE_GET_IRQ_INFO, &i, sizeof(i), &rep, sizeof(rep), NULL), 0);
    assert_int_equal(rep.count, 4);
    assert_true(rep.flags & VFU_IRQ_INFO_EVENTFD);
    assert_false(rep.flags & VFU_IRQ_INFO_MASKABLE);
    i.index = VFU_IRQ_MSIX;
    assert_int_equal(call(f, VFU_CMD_DEVICE_GET_IRQ_INFO, &i, sizeof(i), &rep, sizeof(rep), NULL), 0);
    assert_int_equal(rep.count, 0);
    i.index = 5;
    assert_int_equal(call(f, VFU_CMD_DEVICE_GET_IRQ_INFO, &i, sizeof(i), NULL, 0, NULL), -EINVAL);
}

/* ---- SET_IRQS ---- */

static struct vfu_irq_set irq_req(uint32_t flags, uint32_t start, uint32_t count)
{
    return (struct vfu_irq_set){.argsz = 20, .flags = flags, .index = VFU_IRQ_MSI, .start = start,
                                .count = count};
}

static bool efd_fired(int efd)
{
    uint64_t v;
    return read(efd, &v, sizeof(v)) == sizeof(v) && v > 0;
}

static void test_set_irqs_eventfds_deliver_loopback_triggers_and_disable_closes_them(void **state)
{
    struct fixture *f = *state;
    int efd[4];
    struct vfu_irq_set s = irq_req(VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_TRIGGER, 0, 4);
    uint8_t boolreq[24];

    for (int i = 0; i < 4; i++)
        efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    assert_int_equal(call_fds(f, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), efd, 4), 0);
    assert_int_equal(test_count_fds(), f->base_fds + 8); /* ours and the server's */
    s = irq_req(VFU_IRQ_SET_DATA_BOOL | VFU_IRQ_SET_ACTION_TRIGGER, 0, 4);
    s.argsz = 24;
    memcpy(boolreq, &s, 20);
    boolreq[20] = 0;
    boolreq[21] = 1;
    boolreq[22] = 0;
    boolreq[23] = 1;
    assert_int_equal(call(f, VFU_CMD_DEVICE_SET_IRQS, boolreq, 24, NULL, 0, NULL), 0);
    assert_false(efd_fired(efd[0]));
    assert_true(efd_fired(efd[1]));
    assert_true(efd_fired(efd[3]));
    s = irq_req(VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER, 2, 1);
    assert_int_equal(call(f, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, NULL), 0);
    assert_true(efd_fired(efd[2]));
    s = irq_req(VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER, 0, 0);
    assert_int_equal(call(f, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, NULL), 0);
    assert_int_equal(test_count_fds(), f->base_fds + 4);
    for (int i = 0; i < 4; i++)
        close(efd[i]);
}

static void test_set_irqs_refuses_fd_count_mismatch_and_closes_the_fds(void **state)
{
    struct fixture *f = *state;
    int efd[2] = {eventfd(0, EFD_CLOEXEC), eventfd(0, EFD_CLOEXEC)};
    struct vfu_irq_set s = irq_req(VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_TRIGGER, 0, 4);

    assert_int_equal(call_fds(f, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), efd, 2), -EINVAL);
    s = irq_req(VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER, 0, 2);
    assert_int_equal(call_fds(f, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), efd, 2), -EINVAL);
    close(efd[0]);
    close(efd[1]);
    assert_int_equal(test_count_fds(), f->base_fds);
}

static void test_set_irqs_refuses_bad_index_range_flags_and_argsz(void **state)
{
    struct fixture *f = *state;
    const uint32_t trig_none = VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER;
    struct vfu_irq_set s;

    s = irq_req(trig_none, 0, 1);
    s.index = 5;
    assert_int_equal(call(f, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, NULL), -EINVAL);
    s.index = VFU_IRQ_INTX; /* no INTx on a VF */
    assert_int_equal(call(f, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, NULL), -EINVAL);
    s = irq_req(trig_none, 3, 2);
    assert_int_equal(call(f, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, NULL), -EINVAL);
    s = irq_req(trig_none, UINT32_MAX, 2); /* start + count wraps */
    assert_int_equal(call(f, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, NULL), -EINVAL);
    s = irq_req(VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_DATA_BOOL | VFU_IRQ_SET_ACTION_TRIGGER, 0, 1);
    assert_int_equal(call(f, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, NULL), -EINVAL);
    s = irq_req(trig_none | (1u << 9), 0, 1);
    assert_int_equal(call(f, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, NULL), -EINVAL);
    s = irq_req(trig_none, 0, 1);
    s.argsz = 24;
    assert_int_equal(call(f, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, NULL), -EINVAL);
    s = irq_req(VFU_IRQ_SET_DATA_BOOL | VFU_IRQ_SET_ACTION_TRIGGER, 0, 2); /* bools missing */
    assert_int_equal(call(f, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, NULL), -EINVAL);
}

/* vfio-pci (vfio_pci_set_irqs_ioctl) has no MASK/UNMASK for MSI or MSI-X:
 * -ENOTTY once the range and data checks pass, -EINVAL before that. The
 * VF has no MSI-X vectors, so every MSI-X range is -EINVAL, as the kernel's
 * vfio_set_irqs_validate_and_prepare says for an index of 0 vectors. */
static void test_set_irqs_mask_and_unmask_of_msi_are_enotty_like_vfio_pci(void **state)
{
    struct fixture *f = *state;
    const uint32_t actions[] = {VFU_IRQ_SET_ACTION_MASK, VFU_IRQ_SET_ACTION_UNMASK};
    uint8_t req[sizeof(struct vfu_irq_set) + 4] = {0};
    int efd = eventfd(0, EFD_CLOEXEC);
    struct vfu_irq_set s;

    assert_true(efd >= 0);
    for (unsigned i = 0; i < 2; i++) {
        s = irq_req(VFU_IRQ_SET_DATA_NONE | actions[i], 0, QM_NUM_VECTORS);
        assert_int_equal(call(f, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, NULL), -ENOTTY);
        s = irq_req(VFU_IRQ_SET_DATA_NONE | actions[i], 0, 0);
        assert_int_equal(call(f, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, NULL), -ENOTTY);
        s = irq_req(VFU_IRQ_SET_DATA_BOOL | actions[i], 1, 2);
        s.argsz = 22;
        memcpy(req, &s, sizeof(s));
        req[sizeof(s)] = 1;
        assert_int_equal(call(f, VFU_CMD_DEVICE_SET_IRQS, req, 22, NULL, 0, NULL), -ENOTTY);
        assert_int_equal(call(f, VFU_CMD_DEVICE_SET_IRQS, req, 21, NULL, 0, NULL), -EINVAL);
        s = irq_req(VFU_IRQ_SET_DATA_EVENTFD | actions[i], 3, 1);
        assert_int_equal(raw_call(&f->rc, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), &efd, 1, NULL,
                                  0, NULL), -ENOTTY);
        /* The range is checked first: -EINVAL as the kernel's validation. */
        s = irq_req(VFU_IRQ_SET_DATA_NONE | actions[i], 3, 2);
        assert_int_equal(call(f, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, NULL), -EINVAL);
        s = irq_req(VFU_IRQ_SET_DATA_NONE | actions[i], QM_NUM_VECTORS, 0);
        assert_int_equal(call(f, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, NULL), -EINVAL);
        s = irq_req(VFU_IRQ_SET_DATA_NONE | actions[i], 0, 1);
        s.index = VFU_IRQ_MSIX;
        assert_int_equal(call(f, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, NULL), -EINVAL);
    }
    close(efd);
    assert_int_equal(test_count_fds(), f->base_fds);
}

/* ---- region access ---- */

static int region_read(struct fixture *f, uint32_t region, uint64_t off, void *buf, uint32_t count)
{
    struct vfu_region_access a = {.offset = off, .region = region, .count = count};
    uint8_t *rep = malloc(16 + (size_t)count);
    size_t got = 0;
    int ret = call(f, VFU_CMD_REGION_READ, &a, sizeof(a), rep, 16 + (size_t)count, &got);
    if (!ret) {
        assert_int_equal(got, 16 + (size_t)count);
        memcpy(buf, rep + 16, count);
    }
    free(rep);
    return ret;
}

static int region_write(struct fixture *f, uint32_t region, uint64_t off, const void *buf,
                        uint32_t count)
{
    uint8_t req[64];
    struct vfu_region_access a = {.offset = off, .region = region, .count = count};
    memcpy(req, &a, 16);
    memcpy(req + 16, buf, count);
    return call(f, VFU_CMD_REGION_WRITE, req, 16 + count, NULL, 0, NULL);
}

static void test_region_read_of_the_whole_config_space_and_of_bar2_registers(void **state)
{
    struct fixture *f = *state;
    uint8_t cfg[4096];
    uint32_t v;

    assert_int_equal(region_read(f, VFU_REGION_CONFIG, 0, cfg, sizeof(cfg)), 0);
    assert_int_equal(am_le16(cfg), QM_VENDOR_ID);
    assert_int_equal(am_le16(cfg + 2), QM_ZIP_VF_DEVICE_ID);
    assert_int_equal(cfg[8], QM_REV_V4);
    assert_int_equal(region_read(f, VFU_REGION_BAR2, QM_VF_STATE, &v, 4), 0);
    assert_int_equal(v, QM_VF_STATE_NOT_READY);
    v = 0;
    assert_int_equal(region_write(f, VFU_REGION_BAR2, QM_VF_STATE, &v, 4), 0);
    assert_int_equal(region_read(f, VFU_REGION_BAR2, QM_VF_STATE, &v, 4), 0);
    assert_int_equal(v, QM_VF_STATE_READY);
}

static void test_region_access_refuses_bad_region_range_count_and_alignment(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[16] = {0};
    struct vfu_region_access a = {.offset = 0, .region = VFU_REGION_CONFIG, .count = 4};
    uint8_t req[32];

    assert_int_equal(region_read(f, VFU_REGION_BAR0, 0, buf, 4), -EINVAL);
    assert_int_equal(region_read(f, 9, 0, buf, 4), -EINVAL);
    assert_int_equal(region_read(f, VFU_REGION_CONFIG, 4094, buf, 4), -EINVAL);
    assert_int_equal(region_read(f, VFU_REGION_CONFIG, UINT64_MAX - 1, buf, 4), -EINVAL);
    assert_int_equal(region_read(f, VFU_REGION_BAR2, 64 << 10, buf, 4), -EINVAL);
    assert_int_equal(region_read(f, VFU_REGION_BAR2, 1, buf, 4), -EINVAL);  /* unaligned */
    assert_int_equal(region_read(f, VFU_REGION_BAR2, 0, buf, 3), -EINVAL);  /* odd size */
    a.count = 0;
    assert_int_equal(call(f, VFU_CMD_REGION_READ, &a, sizeof(a), NULL, 0, NULL), -EINVAL);
    a.count = (1u << 20) + 1;
    assert_int_equal(call(f, VFU_CMD_REGION_READ, &a, sizeof(a), NULL, 0, NULL), -E2BIG);
    a.count = 8; /* write with 4 data bytes */
    memcpy(req, &a, 16);
    assert_int_equal(call(f, VFU_CMD_REGION_WRITE, req, 20, NULL, 0, NULL), -EINVAL);
    a.count = 4;
    memcpy(req, &a, 16);
    assert_int_equal(call(f, VFU_CMD_REGION_WRITE, req, 24, NULL, 0, NULL), -EINVAL);
    assert_int_equal(call(f, VFU_CMD_REGION_READ, req, 17, NULL, 0, NULL), -EINVAL);
}

static void test_write_multi_applies_writes_in_order_and_stops_at_a_bad_one(void **state)
{
    struct fixture *f = *state;
    uint8_t req[8 + 3 * 24] = {0};
    struct vfu_write_one w[3] = {
        {.offset = 0x3c, .region = VFU_REGION_CONFIG, .count = 1, .data = {0x11}},
        {.offset = VFU_PCI_MSI_CAP + 0xc, .region = VFU_REGION_CONFIG, .count = 2,
         .data = {0x22, 0x33}},
        {.offset = 0, .region = VFU_REGION_BAR0, .count = 4},
    };
    uint64_t cnt = 2, rep;
    uint8_t b[2];

    memcpy(req, &cnt, 8);
    memcpy(req + 8, w, 48);
    assert_int_equal(call(f, VFU_CMD_REGION_WRITE_MULTI, req, 8 + 48, &rep, sizeof(rep), NULL), 0);
    assert_int_equal(rep, 2);
    assert_int_equal(region_read(f, VFU_REGION_CONFIG, 0x3c, b, 1), 0);
    assert_int_equal(b[0], 0x11);
    assert_int_equal(region_read(f, VFU_REGION_CONFIG, VFU_PCI_MSI_CAP + 0xc, b, 2), 0);
    assert_int_equal(am_le16(b), 0x3322);
    /* third write names an absent region: EINVAL, the first two done */
    w[0].data[0] = 0x44;
    cnt = 3;
    memcpy(req, &cnt, 8);
    memcpy(req + 8, w, 72);
    assert_int_equal(call(f, VFU_CMD_REGION_WRITE_MULTI, req, sizeof(req), NULL, 0, NULL), -EINVAL);
    assert_int_equal(region_read(f, VFU_REGION_CONFIG, 0x3c, b, 1), 0);
    assert_int_equal(b[0], 0x44);
    cnt = 0;
    memcpy(req, &cnt, 8);
    assert_int_equal(call(f, VFU_CMD_REGION_WRITE_MULTI, req, 8, NULL, 0, NULL), -EINVAL);
    cnt = 2; /* length says 3 */
    memcpy(req, &cnt, 8);
    assert_int_equal(call(f, VFU_CMD_REGION_WRITE_MULTI, req, sizeof(req), NULL, 0, NULL), -EINVAL);
    cnt = UINT64_MAX / 24 + 2; /* wr_cnt * 24 would wrap */
    memcpy(req, &cnt, 8);
    assert_int_equal(call(f, VFU_CMD_REGION_WRITE_MULTI, req, 32, NULL, 0, NULL), -EINVAL);
    cnt = 1;
    w[0].count = 9;
    memcpy(req, &cnt, 8);
    memcpy(req + 8, w, 24);
    assert_int_equal(call(f, VFU_CMD_REGION_WRITE_MULTI, req, 32, NULL, 0, NULL), -EINVAL);
}

static void test_device_reset_takes_no_payload_and_brings_registers_back(void **state)
{
    struct fixture *f = *state;
    uint32_t v = 0;

    assert_int_equal(region_write(f, VFU_REGION_BAR2, QM_VF_STATE, &v, 4), 0);
    assert_int_equal(call(f, VFU_CMD_DEVICE_RESET, &v, 4, NULL, 0, NULL), -EINVAL);
    assert_int_equal(call(f, VFU_CMD_DEVICE_RESET, NULL, 0, NULL, 0, NULL), 0);
    assert_int_equal(region_read(f, VFU_REGION_BAR2, QM_VF_STATE, &v, 4), 0);
    assert_int_equal(v, QM_VF_STATE_NOT_READY);
}

/* ---- DEVICE_FEATURE ---- */

static int feature(struct fixture *f, uint32_t flags, uint32_t argsz, const void *data, size_t len,
                   void *rep, size_t cap, size_t *got)
{
    uint8_t req[4096 + 64];
    struct vfu_feature h = {.argsz = argsz, .flags = flags};
    memcpy(req, &h, 8);
    if (len)
        memcpy(req + 8, data, len);
    return call(f, VFU_CMD_DEVICE_FEATURE, req, 8 + len, rep, cap, got);
}

static int set_state(struct fixture *f, uint32_t st)
{
    struct vfu_feature_mig_state s = {st, -1};
    return feature(f, VFU_FEATURE_SET | VFIO_FEATURE_MIG_DEVICE_STATE, 16, &s, 8, NULL, 0, NULL);
}

static uint32_t get_state(struct fixture *f)
{
    uint8_t rep[16];
    struct vfu_feature_mig_state s;
    assert_int_equal(feature(f, VFU_FEATURE_GET | VFIO_FEATURE_MIG_DEVICE_STATE, 16, NULL, 0, rep,
                             sizeof(rep), NULL),
                     0);
    memcpy(&s, rep + 8, 8);
    assert_int_equal(s.data_fd, -1);
    return s.device_state;
}

static void test_migration_feature_advertises_all_flags_probes_and_refuses_set(void **state)
{
    struct fixture *f = *state;
    uint8_t rep[16];
    size_t got = 0;
    uint64_t flags;

    assert_int_equal(feature(f, VFU_FEATURE_GET | VFIO_FEATURE_MIGRATION, 16, NULL, 0, rep,
                             sizeof(rep), &got),
                     0);
    assert_int_equal(got, 16);
    memcpy(&flags, rep + 8, 8);
    assert_int_equal(flags, VFIO_MIG_FLAGS_ALL);
    assert_int_equal(feature(f, VFU_FEATURE_PROBE | VFU_FEATURE_GET | VFIO_FEATURE_MIGRATION, 8,
                             NULL, 0, rep, sizeof(rep), &got),
                     0);
    assert_int_equal(got, 8);
    assert_int_equal(feature(f, VFU_FEATURE_PROBE | VFU_FEATURE_SET | VFIO_FEATURE_MIGRATION, 8,
                             NULL, 0, NULL, 0, NULL),
                     -EINVAL);
    assert_int_equal(feature(f, VFU_FEATURE_SET | VFIO_FEATURE_MIGRATION, 16, rep, 8, NULL, 0, NULL),
                     -EINVAL);
    assert_int_equal(feature(f, VFU_FEATURE_GET | VFIO_FEATURE_MIGRATION, 8, NULL, 0, NULL, 0, NULL),
                     -EINVAL); /* argsz cannot hold the flags */
}

static void test_unknown_features_are_enotty_and_bad_op_combinations_einval(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(feature(f, VFU_FEATURE_GET | 3, 16, NULL, 0, NULL, 0, NULL), -ENOTTY);
    assert_int_equal(feature(f, VFU_FEATURE_PROBE | 0x7777, 8, NULL, 0, NULL, 0, NULL), -ENOTTY);
    assert_int_equal(feature(f, VFU_FEATURE_GET | VFU_FEATURE_SET | VFIO_FEATURE_MIG_DEVICE_STATE,
                             16, NULL, 0, NULL, 0, NULL),
                     -EINVAL);
    assert_int_equal(feature(f, VFIO_FEATURE_MIG_DEVICE_STATE, 16, NULL, 0, NULL, 0, NULL), -EINVAL);
    assert_int_equal(feature(f, (1u << 20) | VFU_FEATURE_GET | VFIO_FEATURE_MIGRATION, 16, NULL, 0,
                             NULL, 0, NULL),
                     -EINVAL);
}

static void test_mig_state_set_cut_after_the_feature_header_is_einval_not_an_over_read(
    void **state)
{
    struct fixture *f = *state;
    struct vfu_feature_mig_state s = {VFIO_MIG_STATE_STOP, -1};

    /* argsz claims the 8 data bytes, the message stops at the header */
    assert_int_equal(feature(f, VFU_FEATURE_SET | VFIO_FEATURE_MIG_DEVICE_STATE, 16, NULL, 0, NULL,
                             0, NULL),
                     -EINVAL);
    assert_int_equal(feature(f, VFU_FEATURE_SET | VFIO_FEATURE_MIG_DEVICE_STATE, 16, &s, 4, NULL,
                             0, NULL),
                     -EINVAL);
    assert_int_equal(get_state(f), VFIO_MIG_STATE_RUNNING);
    assert_int_equal(set_state(f, VFIO_MIG_STATE_COUNT), -EINVAL); /* '>=' bound */
    assert_int_equal(set_state(f, VFIO_MIG_STATE_ERROR), -EINVAL);
    assert_int_equal(get_state(f), VFIO_MIG_STATE_RUNNING);
}

static void test_bar_writes_are_refused_in_stop_copy_and_resuming_config_always_works(
    void **state)
{
    struct fixture *f = *state;
    uint32_t v = 0, id;

    assert_int_equal(set_state(f, VFIO_MIG_STATE_STOP), 0);
    assert_int_equal(get_state(f), VFIO_MIG_STATE_STOP);
    assert_int_equal(region_write(f, VFU_REGION_BAR2, QM_VF_STATE, &v, 4), 0);
    assert_int_equal(set_state(f, VFIO_MIG_STATE_STOP_COPY), 0);
    assert_int_equal(region_write(f, VFU_REGION_BAR2, QM_VF_STATE, &v, 4), -EBUSY);
    assert_int_equal(region_read(f, VFU_REGION_BAR2, QM_VF_STATE, &v, 4), 0);
    assert_int_equal(region_read(f, VFU_REGION_CONFIG, 0, &id, 4), 0);
    assert_int_equal(set_state(f, VFIO_MIG_STATE_STOP), 0);
    assert_int_equal(set_state(f, VFIO_MIG_STATE_RESUMING), 0);
    assert_int_equal(region_read(f, VFU_REGION_BAR2, QM_VF_STATE, &v, 4), -EBUSY);
    assert_int_equal(region_read(f, VFU_REGION_CONFIG, 0, &id, 4), 0);
    assert_int_equal(id & 0xffff, QM_VENDOR_ID);
    v = 0x3c;
    assert_int_equal(region_write(f, VFU_REGION_CONFIG, 0x3c, &v, 1), 0);
    assert_int_equal(call(f, VFU_CMD_DEVICE_RESET, NULL, 0, NULL, 0, NULL), 0);
    assert_int_equal(get_state(f), VFIO_MIG_STATE_RUNNING);
}

static void test_mig_data_read_and_write_only_in_their_states_with_checked_sizes(void **state)
{
    struct fixture *f = *state;
    struct vfu_mig_data r = {.argsz = 8 + 64, .size = 64};
    uint8_t req[8 + 16] = {0};

    assert_int_equal(call(f, VFU_CMD_MIG_DATA_READ, &r, sizeof(r), NULL, 0, NULL), -EINVAL);
    r.size = 16;
    memcpy(req, &r, 8);
    assert_int_equal(call(f, VFU_CMD_MIG_DATA_WRITE, req, sizeof(req), NULL, 0, NULL), -EINVAL);
    assert_int_equal(set_state(f, VFIO_MIG_STATE_PRE_COPY), 0);
    r.size = 0;
    assert_int_equal(call(f, VFU_CMD_MIG_DATA_READ, &r, sizeof(r), NULL, 0, NULL), -EINVAL);
    r.size = (1u << 20) + 1;
    r.argsz = UINT32_MAX;
    assert_int_equal(call(f, VFU_CMD_MIG_DATA_READ, &r, sizeof(r), NULL, 0, NULL), -E2BIG);
    r.size = 64;
    r.argsz = 8; /* no room for the data */
    assert_int_equal(call(f, VFU_CMD_MIG_DATA_READ, &r, sizeof(r), NULL, 0, NULL), -EINVAL);
    assert_int_equal(call(f, VFU_CMD_MIG_DATA_READ, &r, 7, NULL, 0, NULL), -EINVAL);
    assert_int_equal(set_state(f, VFIO_MIG_STATE_RUNNING), 0);
    assert_int_equal(set_state(f, VFIO_MIG_STATE_STOP), 0);
    assert_int_equal(set_state(f, VFIO_MIG_STATE_RESUMING), 0);
    r.size = 20; /* 16 bytes follow */
    memcpy(req, &r, 8);
    assert_int_equal(call(f, VFU_CMD_MIG_DATA_WRITE, req, sizeof(req), NULL, 0, NULL), -EINVAL);
}

static void test_stop_copy_stream_is_read_until_a_short_reply(void **state)
{
    struct fixture *f = *state;
    struct vfu_mig_data r = {.argsz = 8 + 64, .size = 64};
    uint8_t rep[8 + 64];
    size_t got, total = 0;
    struct vfu_mig_data h;

    assert_int_equal(set_state(f, VFIO_MIG_STATE_STOP_COPY), 0);
    for (int i = 0; i < 100000; i++) {
        assert_int_equal(call(f, VFU_CMD_MIG_DATA_READ, &r, sizeof(r), rep, sizeof(rep), &got), 0);
        memcpy(&h, rep, 8);
        assert_int_equal(got, 8 + h.size);
        assert_int_equal(h.argsz, 8 + h.size);
        total += h.size;
        if (h.size < 64)
            break;
    }
    assert_true(total >= 40); /* at least the match record */
}

static void test_precopy_info_is_einval_outside_pre_copy_and_counts_inside(void **state)
{
    struct fixture *f = *state;
    uint8_t rep[24];
    struct vfu_feature_precopy_info pi;
    uint64_t len;

    assert_int_equal(feature(f, VFU_FEATURE_GET | ACCMIG_FEATURE_PRECOPY_INFO, 24, NULL, 0, rep,
                             sizeof(rep), NULL),
                     -EINVAL);
    assert_int_equal(set_state(f, VFIO_MIG_STATE_PRE_COPY), 0);
    assert_int_equal(feature(f, VFU_FEATURE_GET | ACCMIG_FEATURE_PRECOPY_INFO, 24, NULL, 0, rep,
                             sizeof(rep), NULL),
                     0);
    memcpy(&pi, rep + 8, sizeof(pi));
    assert_true(pi.initial_bytes > 0); /* the match record waits */
    assert_int_equal(feature(f, VFU_FEATURE_GET | VFIO_FEATURE_MIG_DATA_SIZE, 16, NULL, 0, rep,
                             sizeof(rep), NULL),
                     0);
    memcpy(&len, rep + 8, 8);
    assert_true(len > 0);
}

static void test_dma_logging_start_report_stop_and_their_checks(void **state)
{
    struct fixture *f = *state;
    int fd = memfd(1 << 20);
    struct vfu_dma_map m = map_req(0x100000, 1 << 20, 3);
    uint8_t data[16 + 257 * 16] = {0}, rep[8 + 24 + 64];
    struct vfu_feature_dma_logging_control ctl = {.page_size = 4096, .num_ranges = 1};
    struct vfu_feature_dma_logging_range rg = {0x100000, 1 << 20};
    struct vfu_feature_dma_logging_report rr = {0x100000, 1 << 20, 4096};
    uint64_t bitmap[4];
    size_t got = 0;

    assert_int_equal(call_fds(f, VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1), 0);
    close(fd);
    memcpy(data, &ctl, 16);
    memcpy(data + 16, &rg, 16);
    assert_int_equal(feature(f, VFU_FEATURE_SET | VFIO_FEATURE_DMA_LOGGING_START, 8 + 32, data, 31,
                             NULL, 0, NULL),
                     -EINVAL);
    assert_int_equal(feature(f, VFU_FEATURE_SET | VFIO_FEATURE_DMA_LOGGING_START, 8 + 32, NULL, 0,
                             NULL, 0, NULL),
                     -EINVAL);
    ctl.num_ranges = 257;
    memcpy(data, &ctl, 16);
    assert_int_equal(feature(f, VFU_FEATURE_SET | VFIO_FEATURE_DMA_LOGGING_START,
                             8 + sizeof(data), data, sizeof(data), NULL, 0, NULL),
                     -E2BIG);
    ctl.num_ranges = 1;
    ctl.page_size = 4096;
    memcpy(data, &ctl, 16);
    rg.iova = 0x100800; /* unaligned */
    memcpy(data + 16, &rg, 16);
    assert_true(feature(f, VFU_FEATURE_SET | VFIO_FEATURE_DMA_LOGGING_START, 8 + 32, data, 32,
                        NULL, 0, NULL) < 0);
    /* report before start */
    assert_int_equal(feature(f, VFU_FEATURE_GET | VFIO_FEATURE_DMA_LOGGING_REPORT, sizeof(rep), &rr,
                             24, rep, sizeof(rep), NULL),
                     -EINVAL);
    rg.iova = 0x100000;
    memcpy(data + 16, &rg, 16);
    assert_int_equal(feature(f, VFU_FEATURE_SET | VFIO_FEATURE_DMA_LOGGING_START, 8 + 32, data, 32,
                             rep, sizeof(rep), &got),
                     0);
    assert_int_equal(got, 8 + 32);
    assert_true(feature(f, VFU_FEATURE_SET | VFIO_FEATURE_DMA_LOGGING_START, 8 + 32, data, 32,
                        NULL, 0, NULL) < 0); /* already on */
    /* 256 pages: 4 words of bitmap after the 24-byte echo */
    assert_int_equal(feature(f, VFU_FEATURE_GET | VFIO_FEATURE_DMA_LOGGING_REPORT, sizeof(rep), &rr,
                             24, rep, sizeof(rep), &got),
                     0);
    assert_int_equal(got, 8 + 24 + 32);
    memcpy(bitmap, rep + 32, 32);
    for (int i = 0; i < 4; i++)
        assert_int_equal(bitmap[i], 0);
    /* any page-aligned part of a mapping, not only the whole of it */
    rr.iova = 0x180000;
    rr.length = 0x10000;
    assert_int_equal(feature(f, VFU_FEATURE_GET | VFIO_FEATURE_DMA_LOGGING_REPORT, sizeof(rep), &rr,
                             24, rep, sizeof(rep), &got),
                     0);
    assert_int_equal(got, 8 + 24 + 8);
    /* the DMA_LOGGING over-reads of libvfio-user: data cut short */
    assert_int_equal(feature(f, VFU_FEATURE_GET | VFIO_FEATURE_DMA_LOGGING_REPORT, sizeof(rep), &rr,
                             16, NULL, 0, NULL),
                     -EINVAL);
    assert_int_equal(feature(f, VFU_FEATURE_GET | VFIO_FEATURE_DMA_LOGGING_REPORT, sizeof(rep), NULL,
                             0, NULL, 0, NULL),
                     -EINVAL);
    rr.iova = 0x100000;
    rr.length = 1 << 20;
    rr.page_size = 3000;
    assert_int_equal(feature(f, VFU_FEATURE_GET | VFIO_FEATURE_DMA_LOGGING_REPORT, sizeof(rep), &rr,
                             24, NULL, 0, NULL),
                     -EINVAL);
    rr.page_size = 4096;
    rr.iova = UINT64_MAX - 4095;
    rr.length = 8192;
    assert_int_equal(feature(f, VFU_FEATURE_GET | VFIO_FEATURE_DMA_LOGGING_REPORT, sizeof(rep), &rr,
                             24, NULL, 0, NULL),
                     -EOVERFLOW);
    rr.iova = 0x100000;
    rr.length = 1 << 20;
    assert_int_equal(feature(f, VFU_FEATURE_GET | VFIO_FEATURE_DMA_LOGGING_REPORT, 40, &rr, 24,
                             NULL, 0, NULL),
                     -EINVAL); /* argsz has no room for the bitmap */
    rr.length = UINT64_C(1) << 40; /* a bitmap above the transfer size */
    rr.iova = 0;
    assert_int_equal(feature(f, VFU_FEATURE_GET | VFIO_FEATURE_DMA_LOGGING_REPORT, UINT32_MAX, &rr,
                             24, NULL, 0, NULL),
                     -E2BIG);
    assert_int_equal(feature(f, VFU_FEATURE_SET | VFIO_FEATURE_DMA_LOGGING_STOP, 8, NULL, 0, NULL,
                             0, NULL),
                     0);
    assert_true(feature(f, VFU_FEATURE_SET | VFIO_FEATURE_DMA_LOGGING_STOP, 8, NULL, 0, NULL, 0,
                        NULL) < 0);
}

/* ---- descriptors ---- */

static void test_malformed_messages_with_descriptors_leak_none(void **state)
{
    struct fixture *f = *state;
    int fds[9];
    struct vfu_device_info info = {.argsz = 16};
    struct vfu_irq_set s = irq_req(VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_TRIGGER, 0, 4);

    for (int i = 0; i < 9; i++)
        fds[i] = eventfd(0, EFD_CLOEXEC);
    /* descriptors on a command that takes none */
    assert_int_equal(call_fds(f, VFU_CMD_DEVICE_GET_INFO, &info, sizeof(info), fds, 3), -EINVAL);
    /* more than max_msg_fds */
    assert_int_equal(call_fds(f, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), fds, 9), -EINVAL);
    /* truncated payload with descriptors */
    assert_int_equal(call_fds(f, VFU_CMD_DEVICE_SET_IRQS, &s, 10, fds, 4), -EINVAL);
    /* unknown command with descriptors */
    assert_int_equal(call_fds(f, 99, NULL, 0, fds, 2), -ENOTSUP);
    for (int i = 0; i < 9; i++)
        close(fds[i]);
    assert_int_equal(test_count_fds(), f->base_fds);
}

static void test_a_client_that_disconnects_leaves_no_descriptor_behind(void **state)
{
    struct fixture *f = *state;
    int efd[4], fd;
    struct vfu_irq_set s = irq_req(VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_TRIGGER, 0, 4);
    struct vfu_dma_map m = map_req(0, 1 << 16, 3);
    struct raw_conn rc;
    unsigned base;

    raw_close(&f->rc); /* our socket and the server's end go */
    base = test_wait_fds(f->base_fds - 2);
    assert_int_equal(base, f->base_fds - 2);
    assert_int_equal(raw_open(&rc, test_sock(&f->ts, 0)), 0);
    fd = memfd(1 << 16);
    for (int i = 0; i < 4; i++)
        efd[i] = eventfd(0, EFD_CLOEXEC);
    assert_int_equal(raw_call(&rc, VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), efd, 4, NULL, 0, NULL), 0);
    assert_int_equal(raw_call(&rc, VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1, NULL, 0, NULL), 0);
    for (int i = 0; i < 4; i++)
        close(efd[i]);
    close(fd);
    raw_close(&rc);
    assert_int_equal(test_wait_fds(base), base);
    assert_int_equal(iommu_mapping_count(qm_dev_iommu(vfu_device_qm(vfu_server_device(f->ts.srv)), 1)), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define T3(fn) cmocka_unit_test_setup_teardown(fn, setup_v3, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_version_0_0_from_qemu_gets_0_0_and_a_reply_no_larger_than_the_request),
        T(test_version_with_max_msg_fds_32_is_answered_with_ours_and_the_session_works),
        T(test_version_ignores_unknown_capabilities_and_keys_of_any_type),
        T(test_version_answers_only_what_was_proposed_and_minor_0_to_a_higher_minor),
        T(test_version_with_a_tiny_or_no_json_is_answered_with_the_version_alone),
        T(test_version_refuses_major_1_bad_json_and_a_second_handshake),
        T(test_commands_before_version_are_refused),
        T(test_a_header_above_the_maximum_size_gets_e2big_and_the_connection_ends),
        T(test_a_reply_or_a_size_below_16_from_the_client_ends_the_connection),
        T(test_unknown_commands_and_client_sent_dma_are_refused),
        T(test_a_no_reply_command_is_not_answered_and_the_next_one_is),
        T(test_commands_pipelined_in_one_write_are_answered_in_order),
        T(test_a_client_stuck_inside_a_message_holds_up_no_other_vf),
        T(test_a_client_that_reconnects_at_once_finds_its_vf_free),
        T(test_every_command_truncated_at_each_field_is_einval),
        T(test_dma_map_with_an_fd_then_unmap_of_the_exact_range_succeeds),
        T(test_dma_map_refuses_bad_argsz_flags_sizes_alignment_and_wrap),
        T(test_dma_map_beyond_the_end_of_its_file_is_refused),
        T(test_dma_map_over_an_existing_range_is_eexist),
        T(test_dma_map_with_two_fds_is_einval_and_closes_both),
        T(test_dma_unmap_all_removes_everything_and_refuses_an_address),
        T(test_device_info_says_pci_with_reset_9_regions_5_irqs),
        T(test_region_info_gives_bar2_64k_config_4k_and_refuses_index_9),
        T3(test_v3_mode_shows_only_the_lower_32k_of_bar2),
        T(test_region_io_fds_offers_none_outside_bar4_and_refuses_malformed_requests),
        T(test_irq_info_gives_4_msi_vectors_and_refuses_index_5),
        T(test_set_irqs_eventfds_deliver_loopback_triggers_and_disable_closes_them),
        T(test_set_irqs_refuses_fd_count_mismatch_and_closes_the_fds),
        T(test_set_irqs_refuses_bad_index_range_flags_and_argsz),
        T(test_set_irqs_mask_and_unmask_of_msi_are_enotty_like_vfio_pci),
        T(test_region_read_of_the_whole_config_space_and_of_bar2_registers),
        T(test_region_access_refuses_bad_region_range_count_and_alignment),
        T(test_write_multi_applies_writes_in_order_and_stops_at_a_bad_one),
        T(test_device_reset_takes_no_payload_and_brings_registers_back),
        T(test_migration_feature_advertises_all_flags_probes_and_refuses_set),
        T(test_unknown_features_are_enotty_and_bad_op_combinations_einval),
        T(test_mig_state_set_cut_after_the_feature_header_is_einval_not_an_over_read),
        T(test_bar_writes_are_refused_in_stop_copy_and_resuming_config_always_works),
        T(test_mig_data_read_and_write_only_in_their_states_with_checked_sizes),
        T(test_stop_copy_stream_is_read_until_a_short_reply),
        T(test_precopy_info_is_einval_outside_pre_copy_and_counts_inside),
        T(test_dma_logging_start_report_stop_and_their_checks),
        T(test_malformed_messages_with_descriptors_leak_none),
        T(test_a_client_that_disconnects_leaves_no_descriptor_behind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
