/* Live migration between mini-VMMs as separate processes (`accmig serve`,
 * `accmig vm`, `accmig migrate`, `accmig demo`): several migrations back and
 * forth; the destination VMM or server killed, the connection cut or the
 * destination frozen during precopy and during stop-copy (the source guest
 * carries on, nothing lost); the source killed (the destination discards
 * and its VF serves the next client); a destination whose device differs
 * refused before any downtime; doorbells mapped (the default), trapped
 * (--trap-doorbells) on both ends, or trapped at the source and mapped at the
 * destination. Every test ends with exactly-once checked on the guest's job
 * table. Fault injection: the source VMM's "hold PHASE"
 * control command (docs/vm.md). argv[1] is the accmig binary. */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "vm_proc_util.h"
#include "vmm/net.h"

#define JOBS 300u

static const char *g_exe;

static int setup(void **state)
{
    return pt_fixture_new(state, g_exe);
}

static int teardown(void **state)
{
    return pt_fixture_free(state);
}

/* Two hosts (servers A and B, 4 queue pairs each unless said), vm0 running
 * the guest on A's VF 0, vm1 waiting on B's VF 0; *listen where vm1 waits. */
static void two_hosts(struct pt *t, unsigned qps_b, char *listen, size_t len)
{
    pt_server(t, "A", 4, NULL);
    pt_server(t, "B", qps_b, NULL);
    pt_vm(t, "vm0", "A", 0, JOBS, NULL, NULL);
    pt_vm(t, "vm1", "B", 0, 0, "tcp:127.0.0.1:0", NULL);
    pt_listen(t, "vm1", listen, len);
}

static bool jbool(json_object *o, const char *k)
{
    json_object *v;
    return json_object_object_get_ex(o, k, &v) && json_object_get_boolean(v);
}

/* ---- success ---- */

static void test_the_demo_migrates_a_busy_guest_back_and_forth_and_every_job_completes_once(
    void **state)
{
    struct pt *t = *state;
    const char *args[] = {"demo", "--migrations", "4", "--jobs", "400", "--qps", "2", "--vcpus",
                          "2", "--max-size", "96K", "--json", NULL};
    char path[160], buf[65536], tmpenv[128], *line;
    json_object *j, *log, *m;
    FILE *f;
    size_t n;

    /* The demo's private directory goes under ours: it must be gone after. */
    snprintf(tmpenv, sizeof(tmpenv), "%s", t->dir);
    setenv("TMPDIR", tmpenv, 1);
    pt_spawn(t, "demo", NULL, args);
    unsetenv("TMPDIR");
    pt_expect_exit(t, "demo", 0);
    snprintf(path, sizeof(path), "%s/demo.log", t->dir);
    f = fopen(path, "r");
    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    line = strstr(buf, "{\"verdict\"");
    assert_non_null(line);
    j = json_tokener_parse(line);
    assert_non_null(j);
    assert_string_equal(pt_str(j, "verdict"), "ok");
    assert_string_equal(pt_str(j, "transport"), "vfio-user");
    assert_int_equal(pt_int(j, "migrations"), 4);
    assert_int_equal(pt_int(j, "jobs_verified"), 400);
    assert_int_equal(pt_int(j, "jobs_duplicated"), 0);
    assert_int_equal(pt_int(j, "jobs_lost"), 0);
    assert_true(json_object_object_get_ex(j, "migration_log", &log));
    assert_int_equal(json_object_array_length(log), 4);
    for (size_t i = 0; i < 4; i++) {
        m = json_object_array_get_idx(log, i);
        assert_true(jbool(m, "ok"));
        assert_string_equal(pt_str(m, "direction"), i % 2 ? "B->A" : "A->B");
        assert_true(pt_int(m, "precopy_rounds") >= 1);
        assert_true(pt_int(m, "ram_bytes") > 0);
        assert_true(pt_int(m, "device_state_bytes") > 0);
        assert_true(pt_int(m, "downtime_us") > 0);
        assert_true(jbool(m, "dest_reported"));
    }
    json_object_put(j);
    /* The demo's private directory is gone. */
    snprintf(path, sizeof(path), "ls -d %s/accmig-demo-* >/dev/null 2>&1", t->dir);
    assert_int_not_equal(system(path), 0);
}

static void assert_doorbells(struct pt *t, const char *vm, const char *want)
{
    char got[32];

    pt_status_str(t, vm, "doorbells", got, sizeof(got));
    assert_string_equal(got, want);
}

static void test_accmig_migrate_moves_a_running_guest_and_frees_the_source_vf(void **state)
{
    struct pt *t = *state;
    char listen[128];
    json_object *rep;

    two_hosts(t, 4, listen, sizeof(listen));
    /* By default both VMMs map their VF's doorbell pages. */
    assert_doorbells(t, "vm0", "mapped");
    assert_doorbells(t, "vm1", "mapped");
    assert_int_equal(pt_migrate_cli(t, "vm0", listen, NULL, &rep), 0);
    assert_non_null(rep);
    assert_true(jbool(rep, "ok"));
    assert_string_equal(pt_str(rep, "to"), listen);
    assert_true(pt_int(rep, "precopy_rounds") >= 1);
    assert_true(pt_int(rep, "downtime_us") > 0);
    assert_true(pt_int(rep, "device_state_bytes") > 0);
    assert_true(jbool(rep, "dest_reported"));
    json_object_put(rep);
    /* The source VMM hands over and leaves with status 0. */
    pt_expect_exit(t, "vm0", 0);
    pt_assert_guest_ok(t, "vm1", JOBS);
    pt_assert_vf_serves_a_new_guest(t, "A", "vm2");
}

/* `accmig migrate --channels 3`: the RAM goes over three more connections
 * (multifd); the destination's report says it took three, and every job
 * still completes exactly once. */
static void test_accmig_migrate_over_three_ram_channels_moves_the_guest(void **state)
{
    struct pt *t = *state;
    char listen[128];
    json_object *rep;

    two_hosts(t, 4, listen, sizeof(listen));
    assert_int_equal(pt_migrate_cli(t, "vm0", listen, "--channels=3", &rep), 0);
    assert_non_null(rep);
    assert_true(jbool(rep, "ok"));
    assert_int_equal(pt_int(rep, "channels"), 3);
    assert_true(pt_int(rep, "ram_pages") > 0);
    json_object_put(rep);
    pt_expect_exit(t, "vm0", 0);
    pt_assert_guest_ok(t, "vm1", JOBS);
}

/* vm0 (doorbells as src_extra says) migrates its busy guest to vm1 (as
 * dst_extra says); every job completes exactly once on vm1. */
static void migrate_with_doorbells(struct pt *t, const char *const *src_extra, const char *src_db,
                                   const char *const *dst_extra, const char *dst_db)
{
    char listen[128];
    json_object *rep;

    pt_server(t, "A", 4, NULL);
    pt_server(t, "B", 4, NULL);
    pt_vm_extra(t, "vm0", "A", 0, JOBS, NULL, NULL, src_extra);
    pt_vm_extra(t, "vm1", "B", 0, 0, "tcp:127.0.0.1:0", NULL, dst_extra);
    pt_listen(t, "vm1", listen, sizeof(listen));
    assert_doorbells(t, "vm0", src_db);
    assert_doorbells(t, "vm1", dst_db);
    assert_int_equal(pt_migrate_cli(t, "vm0", listen, NULL, &rep), 0);
    assert_non_null(rep);
    assert_true(jbool(rep, "ok"));
    json_object_put(rep);
    pt_expect_exit(t, "vm0", 0);
    pt_assert_guest_ok(t, "vm1", JOBS);
}

static void test_a_guest_with_trapped_doorbells_migrates_and_every_job_completes_once(void **state)
{
    static const char *const trap[] = {"--trap-doorbells", NULL};

    migrate_with_doorbells(*state, trap, "trapped", trap, "trapped");
}

static void test_a_guest_from_trapped_doorbells_uses_the_destinations_mapped_pages(void **state)
{
    static const char *const trap[] = {"--trap-doorbells", NULL};

    migrate_with_doorbells(*state, trap, "trapped", NULL, "mapped");
}

/* ---- the destination fails ---- */

/* vm0 migrates to `to`, held at phase; while held, `hurt` runs; the
 * migration fails and vm0's guest carries on to the end. Returns the
 * report (put it). */
static json_object *migrate_and_fail_at(struct pt *t, const char *to, const char *phase,
                                        void (*hurt)(struct pt *t, void *arg), void *arg,
                                        const char *extra)
{
    char cmd[64];
    json_object *rep = NULL;

    snprintf(cmd, sizeof(cmd), "hold %s", phase);
    json_object_put(pt_ctl(t, "vm0", cmd));
    pt_migrate_start(t, "vm0", to, extra);
    pt_wait_status(t, "vm0", "held", phase);
    hurt(t, arg);
    json_object_put(pt_ctl(t, "vm0", "continue"));
    assert_int_equal(pt_migrate_finish(t, "vm0", &rep), 1);
    assert_non_null(rep);
    assert_false(jbool(rep, "ok"));
    assert_true(jbool(rep, "rolled_back"));
    pt_assert_guest_ok(t, "vm0", JOBS);
    return rep;
}

static void hurt_kill(struct pt *t, void *arg)
{
    pt_kill(t, arg, SIGKILL);
}

static void dest_vmm_killed(void **state, const char *phase)
{
    struct pt *t = *state;
    char listen[128];

    two_hosts(t, 4, listen, sizeof(listen));
    json_object_put(migrate_and_fail_at(t, listen, phase, hurt_kill, "vm1", NULL));
    pt_expect_exit(t, "vm1", 128 + SIGKILL);
    pt_assert_vf_serves_a_new_guest(t, "B", "vm2");
}

static void test_a_destination_vmm_killed_during_precopy_leaves_the_source_guest_running(
    void **state)
{
    dest_vmm_killed(state, "precopy");
}

static void test_a_destination_vmm_killed_during_stop_copy_leaves_the_source_guest_running(
    void **state)
{
    dest_vmm_killed(state, "stop-copy");
}

static void dest_server_killed(void **state, const char *phase)
{
    struct pt *t = *state;
    char listen[128];
    json_object *rep;

    two_hosts(t, 4, listen, sizeof(listen));
    rep = migrate_and_fail_at(t, listen, phase, hurt_kill, "B", NULL);
    /* The destination noticed at its next device access and said so. */
    assert_non_null(strstr(pt_str(rep, "error"), "destination"));
    json_object_put(rep);
    pt_expect_exit(t, "vm1", 1);
}

static void test_a_destination_server_killed_during_precopy_leaves_the_source_guest_running(
    void **state)
{
    dest_server_killed(state, "precopy");
}

static void test_a_destination_server_killed_during_stop_copy_leaves_the_source_guest_running(
    void **state)
{
    dest_server_killed(state, "stop-copy");
}

static void hurt_stop(struct pt *t, void *arg)
{
    pt_freeze(t, arg);
}

static void test_a_frozen_destination_times_out_and_the_source_guest_carries_on(void **state)
{
    struct pt *t = *state;
    char listen[128];
    json_object *rep;

    two_hosts(t, 4, listen, sizeof(listen));
    rep = migrate_and_fail_at(t, listen, "stop-copy", hurt_stop, "vm1", "--timeout-ms=1500");
    assert_non_null(strstr(pt_str(rep, "error"), "1500 ms"));
    json_object_put(rep);
    pt_kill(t, "vm1", SIGKILL);
    pt_kill(t, "vm1", SIGCONT);
    pt_expect_exit(t, "vm1", 128 + SIGKILL);
}

/* ---- a cut connection: a forwarder the test can cut ---- */

struct proxy {
    struct vm_net_endpoint to;
    int lfd;
    uint16_t port;
    int cut;      /* atomic: set by the test */
    pthread_t th;
};

static void *proxy_main(void *arg)
{
    struct proxy *p = arg;
    int a = -1, b = -1;
    char buf[65536];

    if (vm_net_accept(p->lfd, 20000, &a) != 0 || vm_net_connect(&p->to, 5000, &b) != 0)
        goto out;
    while (!__atomic_load_n(&p->cut, __ATOMIC_ACQUIRE)) {
        struct pollfd f[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};

        if (poll(f, 2, 20) <= 0)
            continue;
        for (int i = 0; i < 2; i++) {
            if (!f[i].revents)
                continue;
            ssize_t n = read(f[i].fd, buf, sizeof(buf));
            if (n <= 0 || vm_net_write_full(i ? a : b, buf, (size_t)n) != 0)
                goto out;
        }
    }
out:
    /* Both sides see the connection end at once, as when a link dies and
     * a middlebox resets it. */
    if (a >= 0) {
        shutdown(a, SHUT_RDWR);
        close(a);
    }
    if (b >= 0) {
        shutdown(b, SHUT_RDWR);
        close(b);
    }
    return NULL;
}

static void proxy_start(struct proxy *p, const char *to, char *listen, size_t len)
{
    struct vm_net_endpoint ep;
    char err[128];

    memset(p, 0, sizeof(*p));
    assert_int_equal(vm_net_endpoint_parse(to, &p->to, err, sizeof(err)), 0);
    assert_int_equal(vm_net_endpoint_parse("tcp:127.0.0.1:0", &ep, err, sizeof(err)), 0);
    assert_int_equal(vm_net_listen(&ep, &p->lfd), 0);
    assert_int_equal(vm_net_listen_port(p->lfd, &p->port), 0);
    snprintf(listen, len, "tcp:127.0.0.1:%u", p->port);
    assert_int_equal(pthread_create(&p->th, NULL, proxy_main, p), 0);
}

static void hurt_cut(struct pt *t, void *arg)
{
    struct proxy *p = arg;

    (void)t;
    __atomic_store_n(&p->cut, 1, __ATOMIC_RELEASE);
    pthread_join(p->th, NULL);
}

static void test_a_cut_connection_during_stop_copy_keeps_the_source_and_frees_the_destination(
    void **state)
{
    struct pt *t = *state;
    char listen[128], via[128];
    struct proxy p;

    two_hosts(t, 4, listen, sizeof(listen));
    proxy_start(&p, listen, via, sizeof(via));
    json_object_put(migrate_and_fail_at(t, via, "stop-copy", hurt_cut, &p, NULL));
    close(p.lfd);
    /* The destination discards what it had and leaves its VF reset. */
    pt_expect_exit(t, "vm1", 1);
    pt_assert_vf_serves_a_new_guest(t, "B", "vm2");
}

/* ---- the source fails ---- */

static void test_a_killed_source_leaves_the_destination_discarding_and_its_vf_ready(void **state)
{
    struct pt *t = *state;
    char listen[128];
    json_object *rep = NULL;

    two_hosts(t, 4, listen, sizeof(listen));
    json_object_put(pt_ctl(t, "vm0", "hold precopy"));
    pt_migrate_start(t, "vm0", listen, NULL);
    pt_wait_status(t, "vm0", "held", "precopy");
    pt_kill(t, "vm0", SIGKILL);
    pt_expect_exit(t, "vm0", 128 + SIGKILL);
    /* accmig migrate lost its VMM: no report, status 2. */
    assert_int_equal(pt_migrate_finish(t, "vm0", &rep), 2);
    json_object_put(rep);
    /* The destination gives up at once (connection reset), exits 1. */
    pt_expect_exit(t, "vm1", 1);
    /* Both VFs serve new clients. */
    pt_assert_vf_serves_a_new_guest(t, "B", "vm2");
    pt_assert_vf_serves_a_new_guest(t, "A", "vm3");
}

/* ---- an incompatible destination ---- */

static void test_a_destination_with_another_queue_count_is_refused_before_any_downtime(
    void **state)
{
    struct pt *t = *state;
    char listen[128];
    json_object *rep = NULL;

    two_hosts(t, 8, listen, sizeof(listen));
    assert_int_equal(pt_migrate_cli(t, "vm0", listen, NULL, &rep), 1);
    assert_non_null(rep);
    assert_false(jbool(rep, "ok"));
    assert_true(jbool(rep, "rolled_back"));
    assert_string_equal(pt_str(rep, "phase"), "handshake");
    assert_non_null(strstr(pt_str(rep, "error"), "qp count differs: source 4, destination 8"));
    assert_int_equal(pt_int(rep, "downtime_us"), 0);
    assert_int_equal(pt_int(rep, "ram_bytes"), 0);
    json_object_put(rep);
    pt_expect_exit(t, "vm1", 1);
    pt_assert_guest_ok(t, "vm0", JOBS);
}

/* ---- control socket and usage ---- */

static void test_the_control_socket_refuses_bad_commands_with_a_reason(void **state)
{
    struct pt *t = *state;
    char ctl[160], reply[1024], big[1200];
    const char *const bad[] = {"frobnicate", "migrate", "migrate tcp:nowhere", "hold sometime",
                               "migrate tcp:127.0.0.1:1 downtime_ms=0", "migrate unix:/x x=1",
                               "migrate tcp:127.0.0.1:1 channels=17",
                               "migrate tcp:127.0.0.1:1 channels=0"};

    pt_server(t, "A", 4, NULL);
    pt_vm(t, "vm0", "A", 0, JOBS, NULL, NULL);
    pt_ctl_path(t, "vm0", ctl, sizeof(ctl));
    for (size_t i = 0; i < AM_ARRAY_SIZE(bad); i++) {
        assert_int_equal(vm_control_request(ctl, bad[i], reply, sizeof(reply), 10000), 0);
        if (!strstr(reply, "\"ok\":false") || !strstr(reply, "\"error\""))
            fail_msg("'%s' got %s", bad[i], reply);
    }
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(vm_control_request(ctl, big, reply, sizeof(reply), 10000), -EMSGSIZE);
    /* Nothing came to harm: the guest finishes. */
    pt_assert_guest_ok(t, "vm0", JOBS);
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_the_demo_migrates_a_busy_guest_back_and_forth_and_every_job_completes_once),
        T(test_accmig_migrate_moves_a_running_guest_and_frees_the_source_vf),
        T(test_accmig_migrate_over_three_ram_channels_moves_the_guest),
        T(test_a_guest_with_trapped_doorbells_migrates_and_every_job_completes_once),
        T(test_a_guest_from_trapped_doorbells_uses_the_destinations_mapped_pages),
        T(test_a_destination_vmm_killed_during_precopy_leaves_the_source_guest_running),
        T(test_a_destination_vmm_killed_during_stop_copy_leaves_the_source_guest_running),
        T(test_a_destination_server_killed_during_precopy_leaves_the_source_guest_running),
        T(test_a_destination_server_killed_during_stop_copy_leaves_the_source_guest_running),
        T(test_a_frozen_destination_times_out_and_the_source_guest_carries_on),
        T(test_a_cut_connection_during_stop_copy_keeps_the_source_and_frees_the_destination),
        T(test_a_killed_source_leaves_the_destination_discarding_and_its_vf_ready),
        T(test_a_destination_with_another_queue_count_is_refused_before_any_downtime),
        T(test_the_control_socket_refuses_bad_commands_with_a_reason),
    };
#undef T
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-TO-ACCMIG\n", argv[0]);
        return 2;
    }
    g_exe = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
