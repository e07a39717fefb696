/* vfu codec, transports and config space: no device needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"
#include "qm/qm_hw.h"
#include "vfu/vfu_msg.h"
#include "vfu/vfu_pci.h"
#include "vfu/vfu_tran.h"
#include "vfu_test_util.h"

/* ---- header ---- */

static void test_header_of_the_wrong_type_is_refused(void **state)
{
    struct vfu_hdr h = {.size = 16, .flags = VFU_HDR_TYPE_REPLY};
    (void)state;
    assert_int_equal(vfu_hdr_check(&h, VFU_HDR_TYPE_COMMAND, 4096), -EINVAL);
    h.flags = 0x7;
    assert_int_equal(vfu_hdr_check(&h, VFU_HDR_TYPE_COMMAND, 4096), -EINVAL);
}

static void test_header_size_below_16_or_above_max_is_refused(void **state)
{
    struct vfu_hdr h = {.size = 15};
    (void)state;
    assert_int_equal(vfu_hdr_check(&h, VFU_HDR_TYPE_COMMAND, 4096), -EINVAL);
    h.size = 4097;
    assert_int_equal(vfu_hdr_check(&h, VFU_HDR_TYPE_COMMAND, 4096), -E2BIG);
    h.size = 4096;
    assert_int_equal(vfu_hdr_check(&h, VFU_HDR_TYPE_COMMAND, 4096), 0);
    h.size = 16;
    h.flags = VFU_HDR_NO_REPLY;
    assert_int_equal(vfu_hdr_check(&h, VFU_HDR_TYPE_COMMAND, 4096), 0);
}

static void test_every_spec_command_has_a_name(void **state)
{
    (void)state;
    for (unsigned c = 1; c < VFU_CMD_MAX; c++)
        if (c != 14)
            assert_string_not_equal(vfu_cmd_name(c), "UNKNOWN");
    assert_string_equal(vfu_cmd_name(14), "UNKNOWN");
    assert_string_equal(vfu_cmd_name(999), "UNKNOWN");
}

/* ---- capabilities ---- */

static int parse(const char *json, struct vfu_caps *c)
{
    return vfu_caps_parse(json, strlen(json) + 1, c);
}

static void test_qemu_capabilities_with_the_legacy_migration_object_parse(void **state)
{
    struct vfu_caps c;
    (void)state;
    assert_int_equal(parse("{\"capabilities\":{\"migration\":{\"pgsize\":4096,"
                           "\"max_bitmap_size\":268435456},\"max_msg_fds\":16,"
                           "\"max_data_xfer_size\":1048576,\"pgsizes\":4096,"
                           "\"max_dma_maps\":65535,\"write_multiple\":true}}",
                           &c),
                     0);
    assert_true(c.has_migration);
    assert_int_equal(c.migr_pgsize, 4096);
    assert_int_equal(c.migr_max_bitmap, 268435456);
    assert_int_equal(c.max_msg_fds, 16);
    assert_int_equal(c.max_xfer, 1048576);
    assert_int_equal(c.max_dma_maps, 65535);
    assert_true(c.write_multiple);
    assert_false(c.has_twin);
}

static void test_absent_capabilities_leave_everything_unset(void **state)
{
    struct vfu_caps c;
    (void)state;
    assert_int_equal(parse("{}", &c), 0);
    assert_false(c.has_max_msg_fds || c.has_max_xfer || c.has_pgsizes || c.has_twin);
    assert_int_equal(parse("{\"capabilities\":{},\"future\":[1,2]}", &c), 0);
    assert_int_equal(parse("{\"capabilities\":{\"unknown_key\":\"x\"}}", &c), 0);
}

static void test_capabilities_of_the_wrong_type_or_range_are_refused_naming_the_problem(
    void **state)
{
    /* Each bad JSON and a word its error must contain. */
    static const struct { const char *json, *says; } bad[] = {
        {"{\"capabilities\":{\"max_msg_fds\":\"8\"}}", "max_msg_fds"},
        {"{\"capabilities\":{\"max_msg_fds\":-1}}", "max_msg_fds"},
        {"{\"capabilities\":{\"max_data_xfer_size\":0}}", "max_data_xfer_size is 0"},
        {"{\"capabilities\":{\"max_data_xfer_size\":67108865}}", "above 64 MiB"},
        {"{\"capabilities\":{\"max_data_xfer_size\":1.5}}", "max_data_xfer_size is not"},
        {"{\"capabilities\":{\"max_dma_maps\":65536}}", "max_dma_maps"},
        {"{\"capabilities\":{\"pgsizes\":2048}}", "pgsizes"},
        {"{\"capabilities\":{\"write_multiple\":1}}", "write_multiple"},
        {"{\"capabilities\":{\"migration\":[]}}", "\"migration\" is not an object"},
        {"{\"capabilities\":{\"migration\":{\"pgsize\":100}}}", "pgsize"},
        {"{\"capabilities\":{\"twin_socket\":{\"supported\":\"yes\"}}}", "supported"},
        {"{\"capabilities\":7}", "\"capabilities\" is not an object"},
        {"[1]", "not an object"},
        {"{\"capabilities\":{}} trailing", "after the JSON"},
        {"{\"capabilities\":{", "malformed"},
        {"", "malformed"},
    };
    struct vfu_caps c;
    (void)state;
    for (size_t i = 0; i < AM_ARRAY_SIZE(bad); i++) {
        assert_int_equal(parse(bad[i].json, &c), -EINVAL);
        assert_non_null(c.error);
        if (!strstr(c.error, bad[i].says))
            fail_msg("%s: error \"%s\" does not say \"%s\"", bad[i].json, c.error, bad[i].says);
        /* Well-formed JSON is never called malformed. */
        if (strcmp(bad[i].says, "malformed") != 0)
            assert_null(strstr(c.error, "malformed"));
    }
    assert_int_equal(parse("{}", &c), 0);
    assert_null(c.error);
}

static void test_any_max_msg_fds_is_accepted_libvfio_user_proposes_32(void **state)
{
    static const char *const good[] = {
        "{\"capabilities\":{\"max_msg_fds\":32}}",
        "{\"capabilities\":{\"max_msg_fds\":17}}",
        "{\"capabilities\":{\"max_msg_fds\":0}}",
        "{\"capabilities\":{\"max_msg_fds\":18446744073709551615}}",
    };
    static const uint64_t want[] = {32, 17, 0, UINT64_MAX};
    struct vfu_caps c;
    (void)state;
    for (size_t i = 0; i < AM_ARRAY_SIZE(good); i++) {
        assert_int_equal(parse(good[i], &c), 0);
        assert_true(c.has_max_msg_fds);
        assert_true(c.max_msg_fds == want[i]);
    }
}

static void test_capabilities_without_their_final_nul_or_with_an_inner_nul_are_refused(
    void **state)
{
    const char json[] = "{}\0{}";
    struct vfu_caps c;
    (void)state;
    assert_int_equal(vfu_caps_parse("{}", 2, &c), -EINVAL); /* no NUL at the end */
    assert_non_null(strstr(c.error, "does not end with a NUL"));
    assert_int_equal(vfu_caps_parse(json, sizeof(json), &c), -EINVAL);
    assert_non_null(strstr(c.error, "NUL inside"));
    assert_int_equal(vfu_caps_parse("", 0, &c), -EINVAL);
}

static void test_formatted_capabilities_parse_back_and_respect_the_buffer(void **state)
{
    struct vfu_caps in = {.has_max_msg_fds = true, .max_msg_fds = 8, .has_max_xfer = true,
                          .max_xfer = 1u << 20, .has_write_multiple = true,
                          .write_multiple = true, .has_twin = true, .twin_supported = true,
                          .has_twin_fd_index = true, .twin_fd_index = 0};
    struct vfu_caps out;
    char buf[256];
    int n;
    (void)state;
    n = vfu_caps_format(&in, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(buf) + 1);
    assert_int_equal(vfu_caps_parse(buf, (size_t)n, &out), 0);
    assert_int_equal(out.max_msg_fds, 8);
    assert_int_equal(out.max_xfer, 1u << 20);
    assert_true(out.write_multiple && out.twin_supported && out.has_twin_fd_index);
    assert_false(out.has_pgsizes);
    assert_int_equal(vfu_caps_format(&in, buf, (size_t)n - 1), -ENOSPC);
}

/* ---- buffer transport and message assembly ---- */

static size_t put_msg(uint8_t *p, uint16_t id, uint16_t cmd, const void *payload, uint32_t len)
{
    struct vfu_hdr h = {.msg_id = id, .cmd = cmd, .size = 16 + len};
    memcpy(p, &h, sizeof(h));
    if (len)
        memcpy(p + 16, payload, len);
    return 16 + len;
}

static void test_messages_split_into_single_bytes_are_reassembled(void **state)
{
    uint8_t in[256], data[40];
    struct vfu_buf_tran b = {0};
    struct vfu_tran t;
    struct vfu_rx rx;
    struct vfu_msg m;
    size_t n = 0;
    int ret, got = 0;
    (void)state;
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)i;
    n += put_msg(in + n, 1, VFU_CMD_REGION_READ, data, 16);
    n += put_msg(in + n, 2, VFU_CMD_DEVICE_RESET, NULL, 0);
    n += put_msg(in + n, 3, VFU_CMD_REGION_WRITE, data, 40);
    b.in = in;
    b.in_len = n;
    b.max_chunk = 1;
    vfu_tran_buf_init(&t, &b);
    vfu_rx_init(&rx, VFU_HDR_TYPE_COMMAND, 4096, 0);
    while ((ret = vfu_rx_step(&rx, &t, &m)) == 1) {
        got++;
        assert_int_equal(m.hdr.msg_id, got);
        assert_int_equal(m.len, got == 1 ? 16 : got == 2 ? 0 : 40);
        if (m.len)
            assert_memory_equal(m.payload, data, m.len);
        vfu_msg_release(&m);
    }
    assert_int_equal(got, 3);
    assert_int_equal(ret, -ECONNRESET);
}

/* Messages of every size back to back, handed to the receiver all at once
 * or in odd chunks: small ones, one straddling the receive buffer's end,
 * one larger than the buffer (assembled in its own allocation). */
static void check_pipelined_messages(size_t max_chunk)
{
    static const uint32_t lens[] = {16, 0, VFU_RX_BUF_SIZE - 40, 24, 3 * VFU_RX_BUF_SIZE + 5, 8, 1};
    static uint8_t in[6 * VFU_RX_BUF_SIZE], data[4 * VFU_RX_BUF_SIZE];
    struct vfu_buf_tran b = {0};
    struct vfu_tran t;
    struct vfu_rx rx;
    struct vfu_msg m;
    size_t n = 0;
    int ret;
    unsigned got = 0;

    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + 3);
    for (unsigned i = 0; i < AM_ARRAY_SIZE(lens); i++)
        n += put_msg(in + n, (uint16_t)(i + 1), VFU_CMD_REGION_WRITE, data, lens[i]);
    b.in = in;
    b.in_len = n;
    b.max_chunk = max_chunk;
    vfu_tran_buf_init(&t, &b);
    vfu_rx_init(&rx, VFU_HDR_TYPE_COMMAND, 4 * VFU_RX_BUF_SIZE, 0);
    while ((ret = vfu_rx_step(&rx, &t, &m)) == 1) {
        assert_true(got < AM_ARRAY_SIZE(lens));
        assert_int_equal(m.hdr.msg_id, got + 1);
        assert_int_equal(m.len, lens[got]);
        /* In place when it fits the buffer, its own allocation otherwise. */
        assert_int_equal(m.borrowed, lens[got] && lens[got] + 16 <= VFU_RX_BUF_SIZE);
        if (m.len)
            assert_memory_equal(m.payload, data, m.len);
        vfu_msg_release(&m);
        assert_null(m.payload);
        got++;
    }
    assert_int_equal(got, AM_ARRAY_SIZE(lens));
    assert_int_equal(ret, -ECONNRESET);
}

static void test_pipelined_messages_of_every_size_come_out_whole_and_in_order(void **state)
{
    (void)state;
    check_pipelined_messages(0);
    check_pipelined_messages(7);
    check_pipelined_messages(VFU_RX_BUF_SIZE - 1);
}

static void test_an_oversized_header_is_refused_before_any_allocation(void **state)
{
    struct vfu_hdr h = {.msg_id = 9, .cmd = VFU_CMD_REGION_WRITE, .size = 1u << 30};
    struct vfu_buf_tran b = {.in = (const uint8_t *)&h, .in_len = sizeof(h)};
    struct vfu_tran t;
    struct vfu_rx rx;
    struct vfu_msg m;
    (void)state;
    vfu_tran_buf_init(&t, &b);
    vfu_rx_init(&rx, VFU_HDR_TYPE_COMMAND, 4096, 0);
    assert_int_equal(vfu_rx_step(&rx, &t, &m), -E2BIG);
    assert_int_equal(m.hdr.msg_id, 9);
    assert_null(m.payload);
}

static void test_a_stream_cut_inside_a_message_ends_without_a_message(void **state)
{
    uint8_t in[64], data[20] = {0};
    size_t n = put_msg(in, 1, VFU_CMD_REGION_WRITE, data, 20);
    struct vfu_buf_tran b = {.in = in, .in_len = n - 3};
    struct vfu_tran t;
    struct vfu_rx rx;
    struct vfu_msg m;
    (void)state;
    vfu_tran_buf_init(&t, &b);
    vfu_rx_init(&rx, VFU_HDR_TYPE_COMMAND, 4096, 0);
    assert_int_equal(vfu_rx_step(&rx, &t, &m), -ECONNRESET);
}

static void test_buffer_transport_keeps_replies_up_to_its_capacity(void **state)
{
    uint8_t out[20];
    struct vfu_buf_tran b = {.out = out, .out_cap = sizeof(out)};
    struct vfu_tran t;
    struct vfu_hdr h = {.cmd = 1};
    uint8_t payload[10] = {0};
    struct iovec part = {payload, sizeof(payload)};
    int fd = 0;
    (void)state;
    vfu_tran_buf_init(&t, &b);
    assert_int_equal(vfu_send(&t, &h, &part, 1, NULL, 0), 0);
    assert_int_equal(h.size, 26);
    assert_int_equal(b.out_len, 20);
    assert_int_equal(b.out_total, 26);
    assert_int_equal(vfu_send(&t, &h, &part, 1, &fd, 1), -EINVAL);
}

static void test_descriptors_beyond_the_receiver_limit_are_closed_and_flagged(void **state)
{
    int sv[2], fds[3], fd;
    unsigned base;
    struct vfu_tran tx, trx;
    struct vfu_rx rx;
    struct vfu_hdr h = {.cmd = VFU_CMD_DEVICE_SET_IRQS};
    struct vfu_msg m;
    uint8_t payload[4] = {0};
    struct iovec part = {payload, sizeof(payload)};
    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    base = test_count_fds();
    for (int i = 0; i < 3; i++)
        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    vfu_tran_sock_init(&tx, sv[0]);
    vfu_tran_sock_init(&trx, sv[1]);
    assert_int_equal(vfu_send(&tx, &h, &part, 1, fds, 3), 0);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    vfu_rx_init(&rx, VFU_HDR_TYPE_COMMAND, 4096, 2);
    assert_int_equal(vfu_rx_wait(&rx, &trx, &m, 5000), 1);
    assert_int_equal(m.nfds, 2);
    assert_true(m.fds_lost);
    assert_int_equal(test_count_fds(), base + 2); /* the third was closed */
    fd = vfu_msg_take_fd(&m, 0);
    assert_true(fd >= 0);
    assert_int_equal(vfu_msg_take_fd(&m, 0), -1);
    close(fd);
    vfu_msg_release(&m);
    vfu_msg_release(&m); /* idempotent */
    assert_int_equal(test_count_fds(), base);
    close(sv[0]);
    close(sv[1]);
}

/* Sends a message with the given descriptors (one sendmsg, as a client
 * does), payload 8 bytes. */
static void send_with_fds(struct vfu_tran *t, uint16_t id, const int *fds, size_t nfds)
{
    struct vfu_hdr h = {.msg_id = id, .cmd = VFU_CMD_DEVICE_SET_IRQS};
    uint8_t payload[8] = {0};
    struct iovec part = {payload, sizeof(payload)};
    assert_int_equal(vfu_send(t, &h, &part, 1, fds, nfds), 0);
}

/* Three messages sent before the receiver reads: one read brings several
 * of them, and each descriptor must stay with the message it came with. */
static void check_descriptors_follow_their_message(unsigned with_fds)
{
    int sv[2], fd;
    unsigned base;
    struct vfu_tran tx, trx;
    struct vfu_rx rx;
    struct vfu_msg m;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    base = test_count_fds();
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    vfu_tran_sock_init(&tx, sv[0]);
    vfu_tran_sock_init(&trx, sv[1]);
    for (unsigned i = 0; i < 3; i++)
        send_with_fds(&tx, (uint16_t)i, &fd, i == with_fds ? 1 : 0);
    close(fd);
    vfu_rx_init(&rx, VFU_HDR_TYPE_COMMAND, 4096, 4);
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(vfu_rx_recv(&rx, &trx, &m), 1);
        assert_int_equal(m.hdr.msg_id, i);
        assert_int_equal(m.nfds, i == with_fds ? 1 : 0);
        assert_false(m.fds_lost);
        vfu_msg_release(&m);
    }
    assert_int_equal(test_count_fds(), base);
    close(sv[0]);
    close(sv[1]);
}

static void test_descriptors_stay_with_their_message_when_one_read_brings_several(void **state)
{
    (void)state;
    check_descriptors_follow_their_message(0);
    check_descriptors_follow_their_message(1);
    check_descriptors_follow_their_message(2);
}

static void test_a_blocking_receive_gives_etimedout_when_the_peer_stays_silent(void **state)
{
    int sv[2];
    struct vfu_tran tx, trx;
    struct vfu_rx rx;
    struct vfu_msg m;
    uint8_t msg[24] = {0};
    struct vfu_hdr h = {.msg_id = 5, .cmd = VFU_CMD_DEVICE_RESET, .size = sizeof(msg)};
    (void)state;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    vfu_tran_sock_init(&tx, sv[0]);
    vfu_tran_sock_init(&trx, sv[1]);
    assert_int_equal(vfu_sock_set_recv_timeout(sv[1], 50), 0);
    vfu_rx_init(&rx, VFU_HDR_TYPE_COMMAND, 4096, 0);
    assert_int_equal(vfu_rx_recv(&rx, &trx, &m), -ETIMEDOUT);
    /* Half a message, then silence: still a timeout, and nothing is lost. */
    memcpy(msg, &h, sizeof(h));
    assert_int_equal(write(sv[0], msg, 10), 10);
    assert_int_equal(vfu_rx_recv(&rx, &trx, &m), -ETIMEDOUT);
    assert_int_equal(write(sv[0], msg + 10, sizeof(msg) - 10), (ssize_t)(sizeof(msg) - 10));
    assert_int_equal(vfu_rx_recv(&rx, &trx, &m), 1);
    assert_int_equal(m.hdr.msg_id, 5);
    assert_int_equal(m.len, 8);
    vfu_msg_release(&m);
    close(sv[0]);
    assert_int_equal(vfu_rx_recv(&rx, &trx, &m), -ECONNRESET);
    close(sv[1]);
}

static void test_a_message_built_in_one_buffer_goes_out_with_its_size_set(void **state)
{
    uint8_t out[64], msg[24] = {0};
    struct vfu_buf_tran b = {.out = out, .out_cap = sizeof(out)};
    struct vfu_tran t;
    struct vfu_hdr h;
    (void)state;
    vfu_tran_buf_init(&t, &b);
    assert_int_equal(vfu_send_msg(&t, msg, sizeof(msg), NULL, 0), 0);
    assert_int_equal(b.out_len, sizeof(msg));
    memcpy(&h, out, sizeof(h));
    assert_int_equal(h.size, sizeof(msg));
    assert_int_equal(vfu_send_msg(&t, msg, 15, NULL, 0), -EMSGSIZE);
    assert_int_equal(b.out_len, sizeof(msg));
}

static void test_listening_refuses_a_regular_file_in_the_way_and_replaces_a_stale_socket(
    void **state)
{
    char dir[] = "/tmp/accmig-vfu-codec-XXXXXX", path[128];
    struct stat st;
    int fd, fd2;
    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/x.sock", dir);
    fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(vfu_sock_listen(path, &fd), -EEXIST);
    unlink(path);
    assert_int_equal(vfu_sock_listen(path, &fd), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    close(fd); /* the file stays: a stale socket */
    assert_int_equal(vfu_sock_listen(path, &fd2), 0);
    close(fd2);
    unlink(path);
    rmdir(dir);
}

/* ---- config space ---- */

static int flr_count;
static void count_flr(void *opaque)
{
    (void)opaque;
    flr_count++;
}

static uint32_t cfg32(struct vfu_pci_cfg *c, unsigned off)
{
    uint32_t v = 0;
    assert_int_equal(vfu_pci_cfg_read(c, off, &v, 4), 0);
    return v;
}

static void test_config_space_shows_the_zip_vf_identity_and_capabilities(void **state)
{
    struct vfu_pci_cfg c;
    uint16_t msi_ctrl, exp_caps;
    (void)state;
    vfu_pci_cfg_init(&c, QM_REV_V4, QM_VF_BAR2_SIZE, 0, NULL, NULL);
    assert_int_equal(cfg32(&c, 0) & 0xffff, QM_VENDOR_ID);
    assert_int_equal(cfg32(&c, 0) >> 16, QM_ZIP_VF_DEVICE_ID);
    assert_int_equal(cfg32(&c, 8), 0x12000000u | QM_REV_V4);
    assert_true((cfg32(&c, 4) >> 16) & 0x10); /* capability list */
    assert_int_equal(cfg32(&c, 0x34) & 0xff, VFU_PCI_MSI_CAP);
    assert_int_equal(cfg32(&c, VFU_PCI_MSI_CAP) & 0xff, 0x05);
    msi_ctrl = (uint16_t)(cfg32(&c, VFU_PCI_MSI_CAP) >> 16);
    assert_int_equal((msi_ctrl >> 1) & 7, 2); /* 4 vectors */
    assert_true(msi_ctrl & 0x80);              /* 64-bit */
    assert_int_equal((cfg32(&c, VFU_PCI_MSI_CAP) >> 8) & 0xff, VFU_PCI_EXP_CAP);
    assert_int_equal(cfg32(&c, VFU_PCI_EXP_CAP) & 0xff, 0x10);
    exp_caps = (uint16_t)(cfg32(&c, VFU_PCI_EXP_CAP) >> 16);
    assert_int_equal(exp_caps & 0xf, 2);
    assert_true(cfg32(&c, VFU_PCI_EXP_CAP + 4) & (1u << 28)); /* FLR */
    assert_int_equal(cfg32(&c, 0x100), 0); /* no extended capabilities */
}

static void test_bar2_answers_the_size_probe_for_64k_and_for_the_v3_32k_half(void **state)
{
    struct vfu_pci_cfg c;
    uint32_t ones = 0xffffffffu;
    (void)state;
    vfu_pci_cfg_init(&c, QM_REV_V4, QM_VF_BAR2_SIZE, 0, NULL, NULL);
    assert_int_equal(vfu_pci_cfg_write(&c, 0x18, &ones, 4), 0);
    assert_int_equal(cfg32(&c, 0x18), (~(QM_VF_BAR2_SIZE - 1u) & 0xfffffff0u) | 0xc);
    assert_int_equal(vfu_pci_cfg_write(&c, 0x1c, &ones, 4), 0);
    assert_int_equal(cfg32(&c, 0x1c), 0xffffffffu);
    assert_int_equal(cfg32(&c, 0x10), 0); /* BAR0 absent: not writable */
    assert_int_equal(vfu_pci_cfg_write(&c, 0x10, &ones, 4), 0);
    assert_int_equal(cfg32(&c, 0x10), 0);
    vfu_pci_cfg_init(&c, QM_REV_V3, QM_VF_BAR2_V3_GUEST_SIZE, 0, NULL, NULL);
    assert_int_equal(vfu_pci_cfg_write(&c, 0x18, &ones, 4), 0);
    assert_int_equal(cfg32(&c, 0x18), 0xffff800cu);
    assert_int_equal(cfg32(&c, 8) & 0xff, QM_REV_V3);
}

static void test_bar4_answers_the_size_probe_when_present_and_reads_0_when_absent(void **state)
{
    struct vfu_pci_cfg c;
    uint32_t ones = 0xffffffffu, addr = 0x12340000u;
    (void)state;
    /* 4 doorbell pages of 64 KiB: 256 KiB, 64-bit, not prefetchable. */
    vfu_pci_cfg_init(&c, QM_REV_V4, QM_VF_BAR2_SIZE, 4u * QM_DB_PAGE_SIZE, NULL, NULL);
    assert_int_equal(cfg32(&c, 0x20), 0x4);
    assert_int_equal(vfu_pci_cfg_write(&c, 0x20, &ones, 4), 0);
    assert_int_equal(cfg32(&c, 0x20), (~(4u * QM_DB_PAGE_SIZE - 1u) & 0xfffffff0u) | 0x4);
    assert_int_equal(vfu_pci_cfg_write(&c, 0x24, &ones, 4), 0);
    assert_int_equal(cfg32(&c, 0x24), 0xffffffffu);
    assert_int_equal(vfu_pci_cfg_write(&c, 0x20, &addr, 4), 0);
    assert_int_equal(cfg32(&c, 0x20), addr | 0x4);
    /* BAR2 is unchanged by it. */
    assert_int_equal(vfu_pci_cfg_write(&c, 0x18, &ones, 4), 0);
    assert_int_equal(cfg32(&c, 0x18), (~(QM_VF_BAR2_SIZE - 1u) & 0xfffffff0u) | 0xc);
    /* A reset brings the type bits back and the address to 0. */
    vfu_pci_cfg_reset(&c);
    assert_int_equal(cfg32(&c, 0x20), 0x4);
    assert_int_equal(cfg32(&c, 0x24), 0);
    /* Larger than 4 GiB: the probe reaches into the upper dword. */
    vfu_pci_cfg_init(&c, QM_REV_V4, QM_VF_BAR2_SIZE, UINT64_C(1) << 33, NULL, NULL);
    assert_int_equal(vfu_pci_cfg_write(&c, 0x20, &ones, 4), 0);
    assert_int_equal(vfu_pci_cfg_write(&c, 0x24, &ones, 4), 0);
    assert_int_equal(cfg32(&c, 0x20), 0x4);
    assert_int_equal(cfg32(&c, 0x24), 0xfffffffeu);
    /* Absent (no doorbell isolation): reads 0, not writable. */
    vfu_pci_cfg_init(&c, QM_REV_V4, QM_VF_BAR2_SIZE, 0, NULL, NULL);
    assert_int_equal(vfu_pci_cfg_write(&c, 0x20, &ones, 4), 0);
    assert_int_equal(vfu_pci_cfg_write(&c, 0x24, &ones, 4), 0);
    assert_int_equal(cfg32(&c, 0x20), 0);
    assert_int_equal(cfg32(&c, 0x24), 0);
}

static void test_config_writes_change_only_writable_bits(void **state)
{
    struct vfu_pci_cfg c;
    uint32_t ones = 0xffffffffu;
    uint16_t status_w1c = 0xf900, cmd;
    (void)state;
    vfu_pci_cfg_init(&c, QM_REV_V4, QM_VF_BAR2_SIZE, 0, NULL, NULL);
    assert_int_equal(vfu_pci_cfg_write(&c, 0, &ones, 4), 0); /* ids are read-only */
    assert_int_equal(cfg32(&c, 0), QM_VENDOR_ID | (uint32_t)QM_ZIP_VF_DEVICE_ID << 16);
    assert_int_equal(vfu_pci_cfg_write(&c, 4, &ones, 2), 0);
    cmd = (uint16_t)cfg32(&c, 4);
    assert_int_equal(cmd, 0x0406);
    assert_int_equal(vfu_pci_cfg_write(&c, 6, &status_w1c, 2), 0);
    assert_true((cfg32(&c, 4) >> 16) & 0x10); /* capability bit survives */
    assert_int_equal(vfu_pci_cfg_write(&c, VFU_PCI_MSI_CAP + 4, &ones, 4), 0);
    assert_int_equal(cfg32(&c, VFU_PCI_MSI_CAP + 4), 0xfffffffcu);
}

static void test_config_access_outside_the_4k_space_is_refused(void **state)
{
    struct vfu_pci_cfg c;
    uint8_t buf[8];
    (void)state;
    vfu_pci_cfg_init(&c, QM_REV_V4, QM_VF_BAR2_SIZE, 0, NULL, NULL);
    assert_int_equal(vfu_pci_cfg_read(&c, 4095, buf, 2), -EINVAL);
    assert_int_equal(vfu_pci_cfg_read(&c, UINT64_MAX, buf, 2), -EINVAL);
    assert_int_equal(vfu_pci_cfg_write(&c, 4096, buf, 1), -EINVAL);
    assert_int_equal(vfu_pci_cfg_read(&c, 4095, buf, 1), 0);
}

static void test_writing_the_flr_bit_calls_the_reset_hook_and_reads_back_zero(void **state)
{
    struct vfu_pci_cfg c;
    uint16_t v = 0x8000 | 0x0010;
    uint8_t hi = 0x80;
    (void)state;
    flr_count = 0;
    vfu_pci_cfg_init(&c, QM_REV_V4, QM_VF_BAR2_SIZE, 0, count_flr, NULL);
    assert_int_equal(vfu_pci_cfg_write(&c, VFU_PCI_EXP_CAP + 8, &v, 2), 0);
    assert_int_equal(flr_count, 1);
    assert_int_equal(cfg32(&c, VFU_PCI_EXP_CAP + 8) & 0x8000, 0);
    assert_int_equal(vfu_pci_cfg_write(&c, VFU_PCI_EXP_CAP + 9, &hi, 1), 0);
    assert_int_equal(flr_count, 2);
    v = 0x0010;
    assert_int_equal(vfu_pci_cfg_write(&c, VFU_PCI_EXP_CAP + 8, &v, 2), 0);
    assert_int_equal(flr_count, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_of_the_wrong_type_is_refused),
        cmocka_unit_test(test_header_size_below_16_or_above_max_is_refused),
        cmocka_unit_test(test_every_spec_command_has_a_name),
        cmocka_unit_test(test_qemu_capabilities_with_the_legacy_migration_object_parse),
        cmocka_unit_test(test_absent_capabilities_leave_everything_unset),
        cmocka_unit_test(test_capabilities_of_the_wrong_type_or_range_are_refused_naming_the_problem),
        cmocka_unit_test(test_any_max_msg_fds_is_accepted_libvfio_user_proposes_32),
        cmocka_unit_test(test_capabilities_without_their_final_nul_or_with_an_inner_nul_are_refused),
        cmocka_unit_test(test_formatted_capabilities_parse_back_and_respect_the_buffer),
        cmocka_unit_test(test_messages_split_into_single_bytes_are_reassembled),
        cmocka_unit_test(test_pipelined_messages_of_every_size_come_out_whole_and_in_order),
        cmocka_unit_test(test_an_oversized_header_is_refused_before_any_allocation),
        cmocka_unit_test(test_a_stream_cut_inside_a_message_ends_without_a_message),
        cmocka_unit_test(test_buffer_transport_keeps_replies_up_to_its_capacity),
        cmocka_unit_test(test_descriptors_beyond_the_receiver_limit_are_closed_and_flagged),
        cmocka_unit_test(test_descriptors_stay_with_their_message_when_one_read_brings_several),
        cmocka_unit_test(test_a_blocking_receive_gives_etimedout_when_the_peer_stays_silent),
        cmocka_unit_test(test_a_message_built_in_one_buffer_goes_out_with_its_size_set),
        cmocka_unit_test(test_listening_refuses_a_regular_file_in_the_way_and_replaces_a_stale_socket),
        cmocka_unit_test(test_config_space_shows_the_zip_vf_identity_and_capabilities),
        cmocka_unit_test(test_bar2_answers_the_size_probe_for_64k_and_for_the_v3_32k_half),
        cmocka_unit_test(test_bar4_answers_the_size_probe_when_present_and_reads_0_when_absent),
        cmocka_unit_test(test_config_writes_change_only_writable_bits),
        cmocka_unit_test(test_config_access_outside_the_4k_space_is_refused),
        cmocka_unit_test(test_writing_the_flr_bit_calls_the_reset_hook_and_reads_back_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
