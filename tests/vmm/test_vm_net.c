/* Migration transport: endpoint strings, listen/accept/connect with
 * timeouts, full transfers, and aborting a blocked transfer. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/common.h"
#include "vmm/net.h"

static void expect_parse_error(const char *s, const char *needle)
{
    struct vm_net_endpoint ep;
    char err[256];

    memset(&ep, 0x77, sizeof(ep));
    assert_int_equal(vm_net_endpoint_parse(s, &ep, err, sizeof(err)), -EINVAL);
    if (strstr(err, needle) == NULL)
        fail_msg("parsing '%s' said '%s', expected it to mention '%s'", s ? s : "(null)", err,
                 needle);
}

static void test_tcp_and_unix_endpoints_parse_and_format_back(void **state)
{
    struct vm_net_endpoint ep;
    char err[256], out[400];

    (void)state;
    assert_int_equal(vm_net_endpoint_parse("tcp:127.0.0.1:4444", &ep, err, sizeof(err)), 0);
    assert_int_equal(ep.kind, VM_NET_TCP);
    assert_string_equal(ep.host, "127.0.0.1");
    assert_int_equal(ep.port, 4444);
    assert_int_equal(vm_net_endpoint_format(&ep, out, sizeof(out)), 0);
    assert_string_equal(out, "tcp:127.0.0.1:4444");

    assert_int_equal(vm_net_endpoint_parse("tcp:[::1]:0", &ep, err, sizeof(err)), 0);
    assert_string_equal(ep.host, "::1");
    assert_int_equal(ep.port, 0);
    assert_int_equal(vm_net_endpoint_format(&ep, out, sizeof(out)), 0);
    assert_string_equal(out, "tcp:[::1]:0");

    assert_int_equal(vm_net_endpoint_parse("tcp:localhost:65535", &ep, err, sizeof(err)), 0);
    assert_string_equal(ep.host, "localhost");
    assert_int_equal(ep.port, 65535);

    assert_int_equal(vm_net_endpoint_parse("unix:/tmp/a:b.sock", &ep, err, sizeof(err)), 0);
    assert_int_equal(ep.kind, VM_NET_UNIX);
    assert_string_equal(ep.path, "/tmp/a:b.sock");
    assert_int_equal(vm_net_endpoint_format(&ep, out, sizeof(out)), 0);
    assert_string_equal(out, "unix:/tmp/a:b.sock");
    assert_int_equal(vm_net_endpoint_format(&ep, out, 5), -ENOSPC);
}

static void test_malformed_endpoints_are_refused_with_a_sentence_saying_why(void **state)
{
    char longhost[300], longpath[200];

    (void)state;
    expect_parse_error(NULL, "no endpoint");
    expect_parse_error("", "expected tcp:HOST:PORT or unix:PATH");
    expect_parse_error("udp:1.2.3.4:5", "expected tcp:HOST:PORT or unix:PATH");
    expect_parse_error("127.0.0.1:4444", "expected tcp:HOST:PORT or unix:PATH");
    expect_parse_error("tcp:", "missing ':PORT'");
    expect_parse_error("tcp:host", "missing ':PORT'");
    expect_parse_error("tcp::4444", "empty host");
    expect_parse_error("tcp:host:", "port '' is not a number");
    expect_parse_error("tcp:host:65536", "port '65536'");
    expect_parse_error("tcp:host:99999999", "port '99999999'");
    expect_parse_error("tcp:host:-1", "port '-1'");
    expect_parse_error("tcp:host:12ab", "port '12ab'");
    expect_parse_error("tcp:host:+80", "port '+80'");
    expect_parse_error("tcp:::1:4444", "must be in brackets");
    expect_parse_error("tcp:[::1:4444", "without a closing ']'");
    expect_parse_error("tcp:[::1]4444", "expected ':PORT' after ']'");
    expect_parse_error("tcp:[]:4444", "empty host");
    memset(longhost, 'h', sizeof(longhost));
    memcpy(longhost, "tcp:", 4);
    strcpy(longhost + 280, ":80");
    expect_parse_error(longhost, "host longer than 255 bytes");
    expect_parse_error("unix:", "empty UNIX socket path");
    memset(longpath, 'p', sizeof(longpath));
    memcpy(longpath, "unix:/", 6);
    longpath[5 + 108] = '\0';
    expect_parse_error(longpath, "longer than 107 bytes");
}

static void test_a_failed_parse_leaves_the_endpoint_untouched(void **state)
{
    struct vm_net_endpoint ep, before;
    char err[8];

    (void)state;
    memset(&ep, 0x5c, sizeof(ep));
    before = ep;
    assert_int_equal(vm_net_endpoint_parse("tcp:host:nope", &ep, err, sizeof(err)), -EINVAL);
    assert_memory_equal(&ep, &before, sizeof(ep));
    /* A short error buffer is still terminated. */
    assert_int_equal(strlen(err), sizeof(err) - 1);
}

static int listen_loopback(uint16_t *port)
{
    struct vm_net_endpoint ep;
    int fd;

    assert_int_equal(vm_net_endpoint_parse("tcp:127.0.0.1:0", &ep, NULL, 0), 0);
    assert_int_equal(vm_net_listen(&ep, &fd), 0);
    assert_int_equal(vm_net_listen_port(fd, port), 0);
    assert_true(*port != 0);
    return fd;
}

struct writer {
    int fd;
    const void *buf;
    size_t len;
    int ret;
};

static void *write_all(void *arg)
{
    struct writer *w = arg;

    w->ret = vm_net_write_full(w->fd, w->buf, w->len);
    return NULL;
}

static void test_tcp_connect_accept_and_full_transfers_move_every_byte(void **state)
{
    struct vm_net_endpoint ep;
    uint8_t *out = malloc(8 << 20), *in = malloc(8 << 20);
    uint16_t port;
    int lfd, cfd, afd;
    size_t done = 0;

    (void)state;
    lfd = listen_loopback(&port);
    memset(&ep, 0, sizeof(ep));
    ep.kind = VM_NET_TCP;
    strcpy(ep.host, "127.0.0.1");
    ep.port = port;
    assert_int_equal(vm_net_connect(&ep, 2000, &cfd), 0);
    assert_int_equal(vm_net_accept(lfd, 2000, &afd), 0);
    assert_int_equal(vm_net_set_timeout(afd, 5000), 0);
    for (size_t i = 0; i < (8 << 20); i++)
        out[i] = (uint8_t)(i * 7 + (i >> 13));
    /* 8 MiB does not fit the socket buffers: the writer runs alongside. */
    struct writer w = {.fd = cfd, .buf = out, .len = 8 << 20, .ret = 1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, write_all, &w), 0);
    assert_int_equal(vm_net_read_full(afd, in, 8 << 20, &done), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(w.ret, 0);
    assert_int_equal(done, 8 << 20);
    assert_memory_equal(in, out, 8 << 20);
    close(cfd);
    /* The writer is gone: the next read ends with -ECONNRESET, 0 bytes. */
    assert_int_equal(vm_net_read_full(afd, in, 1, &done), -ECONNRESET);
    assert_int_equal(done, 0);
    close(afd);
    close(lfd);
    free(in);
    free(out);
}

static void test_connect_to_nobody_fails_after_retrying_for_the_timeout(void **state)
{
    struct vm_net_endpoint ep;
    uint16_t port;
    uint64_t t0;
    int lfd, fd = -1;

    (void)state;
    /* A port that was just free: nobody listens on it any more. */
    lfd = listen_loopback(&port);
    close(lfd);
    memset(&ep, 0, sizeof(ep));
    ep.kind = VM_NET_TCP;
    strcpy(ep.host, "127.0.0.1");
    ep.port = port;
    t0 = am_now_ns();
    assert_int_equal(vm_net_connect(&ep, 150, &fd), -ECONNREFUSED);
    assert_true(am_now_ns() - t0 >= 100 * 1000000ull);
    assert_int_equal(fd, -1);
    strcpy(ep.host, "no-such-host.invalid");
    assert_int_equal(vm_net_connect(&ep, 100, &fd), -EHOSTUNREACH);
}

static void test_accept_times_out_when_nobody_connects(void **state)
{
    uint16_t port;
    int lfd = listen_loopback(&port), fd = -1;

    (void)state;
    assert_int_equal(vm_net_accept(lfd, 50, &fd), -ETIMEDOUT);
    assert_int_equal(fd, -1);
    close(lfd);
}

static void test_unix_listen_replaces_a_stale_socket_but_not_a_live_one(void **state)
{
    struct vm_net_endpoint ep;
    char path[64];
    struct stat st;
    int l1, l2, c, a;

    (void)state;
    snprintf(path, sizeof(path), "/tmp/accmig-test-net-%d.sock", (int)getpid());
    unlink(path);
    memset(&ep, 0, sizeof(ep));
    ep.kind = VM_NET_UNIX;
    strcpy(ep.path, path);
    assert_int_equal(vm_net_listen(&ep, &l1), 0);
    assert_int_equal(vm_net_listen(&ep, &l2), -EADDRINUSE);
    close(l1); /* leaves the socket file behind: stale */
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(vm_net_listen(&ep, &l2), 0);
    assert_int_equal(vm_net_connect(&ep, 1000, &c), 0);
    assert_int_equal(vm_net_accept(l2, 1000, &a), 0);
    assert_int_equal(vm_net_write_full(c, "hi", 2), 0);
    {
        char b[2];
        assert_int_equal(vm_net_read_full(a, b, 2, NULL), 0);
        assert_memory_equal(b, "hi", 2);
    }
    close(a);
    close(c);
    vm_net_listen_close(&ep, l2);
    assert_int_equal(stat(path, &st), -1);
}

static void test_a_read_with_no_data_times_out(void **state)
{
    int sv[2];
    char b[4];
    size_t done = 9;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(vm_net_set_timeout(sv[0], 50), 0);
    assert_int_equal(vm_net_write_full(sv[1], "ab", 2), 0);
    assert_int_equal(vm_net_read_full(sv[0], b, 4, &done), -ETIMEDOUT);
    assert_int_equal(done, 2);
    close(sv[0]);
    close(sv[1]);
}

static void test_writing_to_a_closed_peer_is_an_error_not_a_signal(void **state)
{
    int sv[2];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]);
    assert_int_equal(vm_net_write_full(sv[0], "x", 1), -EPIPE);
    close(sv[0]);
}

struct blocked_read {
    int fd;
    int ret;
};

static void *read_blocked(void *arg)
{
    struct blocked_read *b = arg;
    char c;

    b->ret = vm_net_read_full(b->fd, &c, 1, NULL);
    return NULL;
}

static void test_abort_ends_a_read_blocked_in_another_thread(void **state)
{
    struct blocked_read b;
    pthread_t t;
    int sv[2];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    b.fd = sv[0];
    b.ret = 1;
    assert_int_equal(pthread_create(&t, NULL, read_blocked, &b), 0);
    nanosleep(&(struct timespec){.tv_nsec = 50 * 1000000}, NULL);
    vm_net_abort(sv[0]);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(b.ret, -ECONNRESET);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_and_unix_endpoints_parse_and_format_back),
        cmocka_unit_test(test_malformed_endpoints_are_refused_with_a_sentence_saying_why),
        cmocka_unit_test(test_a_failed_parse_leaves_the_endpoint_untouched),
        cmocka_unit_test(test_tcp_connect_accept_and_full_transfers_move_every_byte),
        cmocka_unit_test(test_connect_to_nobody_fails_after_retrying_for_the_timeout),
        cmocka_unit_test(test_accept_times_out_when_nobody_connects),
        cmocka_unit_test(test_unix_listen_replaces_a_stale_socket_but_not_a_live_one),
        cmocka_unit_test(test_a_read_with_no_data_times_out),
        cmocka_unit_test(test_writing_to_a_closed_peer_is_an_error_not_a_signal),
        cmocka_unit_test(test_abort_ends_a_read_blocked_in_another_thread),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
