/* A VMM whose device server dies (SIGKILL) notices it from the socket's
 * hang-up, not when its guest's jobs time out: its status says failed and
 * device_gone, it keeps answering its control socket, `quit` and SIGTERM
 * end it, and it exits with its own status (3) or, waiting for a
 * migration, 1; a destination after the handover likewise. The reaction
 * times are printed (not asserted on, beyond a bound that only catches a
 * hang). argv[1] is the accmig binary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vm_proc_util.h"

#define JOBS 80000u /* runs for many seconds: still busy when its server dies */
#define HANG_MS 10000 /* a reaction slower than this is a hang */

static const char *g_exe;

static int setup(void **state)
{
    return pt_fixture_new(state, g_exe);
}

static int teardown(void **state)
{
    return pt_fixture_free(state);
}

static bool status_bool(struct pt *t, const char *vm, const char *key)
{
    json_object *j = pt_ctl(t, vm, "status"), *st, *v;
    bool b;

    assert_true(json_object_object_get_ex(j, "status", &st));
    assert_true(json_object_object_get_ex(st, key, &v));
    b = json_object_get_boolean(v);
    json_object_put(j);
    return b;
}

/* Milliseconds from now until vm's status state is want (fails on a hang). */
static double ms_until_state(struct pt *t, const char *vm, const char *want, uint64_t t0)
{
    char got[64];

    for (;;) {
        pt_status_str(t, vm, "state", got, sizeof(got));
        if (strcmp(got, want) == 0)
            return (double)(am_now_ns() - t0) / 1e6;
        if (am_now_ns() - t0 > (uint64_t)HANG_MS * 1000000u)
            fail_msg("%s: state '%s' %d ms after its server died, want '%s'", vm, got, HANG_MS,
                     want);
        usleep(2000);
    }
}

/* A guest running on server A's VF 0, its jobs under way. */
static void running_guest(struct pt *t)
{
    json_object *j, *st;

    pt_server(t, "A", 4, NULL);
    pt_vm(t, "vm0", "A", 0, JOBS, NULL, NULL);
    for (int i = 0; i < 3000; i++) {
        j = pt_ctl(t, "vm0", "status");
        assert_true(json_object_object_get_ex(j, "status", &st));
        if (pt_int(st, "jobs_completed") > 0) {
            json_object_put(j);
            return;
        }
        json_object_put(j);
        usleep(10000);
    }
    fail_msg("vm0's guest completed no job");
}

static void test_a_running_guests_vmm_fails_at_once_answers_and_quits(void **state)
{
    struct pt *t = *state;
    uint64_t t0;
    double ms;

    running_guest(t);
    assert_false(status_bool(t, "vm0", "device_gone"));
    t0 = am_now_ns();
    pt_kill(t, "A", SIGKILL);
    ms = ms_until_state(t, "vm0", "failed", t0);
    printf("reaction: running guest, server SIGKILLed -> status failed in %.1f ms\n", ms);
    assert_true(status_bool(t, "vm0", "device_gone"));
    /* Still answering (--stay), and reports what its guest did. */
    json_object_put(pt_ctl(t, "vm0", "report"));
    t0 = am_now_ns();
    json_object_put(pt_ctl(t, "vm0", "quit"));
    pt_expect_exit(t, "vm0", 3);
    printf("reaction: quit answered and exited in %.1f ms\n", (double)(am_now_ns() - t0) / 1e6);
}

static void test_a_failed_vmm_ends_on_sigterm(void **state)
{
    struct pt *t = *state;
    uint64_t t0;
    double ms;
    int got;

    running_guest(t);
    t0 = am_now_ns();
    pt_kill(t, "A", SIGKILL);
    ms = ms_until_state(t, "vm0", "failed", t0);
    printf("reaction: server SIGKILLed -> status failed in %.1f ms\n", ms);
    t0 = am_now_ns();
    pt_kill(t, "vm0", SIGTERM);
    got = pt_wait(t, "vm0", HANG_MS);
    if (got < 0)
        fail_msg("vm0 still runs %d ms after SIGTERM", HANG_MS);
    printf("reaction: SIGTERM -> exit in %.1f ms\n", (double)(am_now_ns() - t0) / 1e6);
    assert_int_equal(got, 3);
}

/* Without --stay the VMM ends by itself. */
static void test_a_vmm_without_stay_exits_3_by_itself(void **state)
{
    struct pt *t = *state;
    char sock[160], ctl[160], jobs[16];
    const char *args[] = {"vm", "--attach", sock, "--control", ctl, "--ram", PT_RAM, "--jobs",
                          jobs, "--qps", "2", "--vcpus", "2", "--max-size", "16K", NULL};
    uint64_t t0;
    json_object *j, *st;
    int got = -1;

    snprintf(jobs, sizeof(jobs), "%u", JOBS);
    pt_server(t, "A", 4, NULL);
    pt_sock(t, "A", 0, sock, sizeof(sock));
    pt_ctl_path(t, "vm0", ctl, sizeof(ctl));
    pt_spawn(t, "vm0", NULL, args);
    pt_wait_path(t, ctl, "vm0");
    for (int i = 0; i < 3000; i++) {
        j = pt_ctl(t, "vm0", "status");
        assert_true(json_object_object_get_ex(j, "status", &st));
        got = (int)pt_int(st, "jobs_completed");
        json_object_put(j);
        if (got > 0)
            break;
        usleep(10000);
    }
    assert_true(got > 0);
    t0 = am_now_ns();
    pt_kill(t, "A", SIGKILL);
    got = pt_wait(t, "vm0", HANG_MS);
    if (got < 0)
        fail_msg("vm0 still runs %d ms after its server died", HANG_MS);
    printf("reaction: server SIGKILLed -> VMM exited by itself in %.1f ms\n",
           (double)(am_now_ns() - t0) / 1e6);
    assert_int_equal(got, 3);
}

/* A destination waiting for a migration whose server dies: the incoming
 * migration fails (exit 1) rather than waiting for a source. */
static void test_an_incoming_vmm_whose_server_dies_stops_waiting(void **state)
{
    struct pt *t = *state;
    char listen[128];
    uint64_t t0;
    int got;

    pt_server(t, "B", 4, NULL);
    pt_vm(t, "vm1", "B", 0, 0, "tcp:127.0.0.1:0", NULL);
    pt_listen(t, "vm1", listen, sizeof(listen));
    t0 = am_now_ns();
    pt_kill(t, "B", SIGKILL);
    got = pt_wait(t, "vm1", HANG_MS);
    if (got < 0)
        fail_msg("vm1 still waits %d ms after its server died", HANG_MS);
    printf("reaction: incoming VMM, server SIGKILLed -> exited in %.1f ms\n",
           (double)(am_now_ns() - t0) / 1e6);
    assert_int_equal(got, 1);
}

/* The symptom that started this: the destination's server SIGKILLed right
 * after the handover left its VMM `running` until the guest's jobs timed
 * out (about 29 s). */
static void test_a_destination_whose_server_dies_after_the_handover_fails_at_once(void **state)
{
    struct pt *t = *state;
    char listen[128];
    json_object *rep = NULL;
    uint64_t t0;
    double ms;
    int got;

    running_guest(t);
    pt_server(t, "B", 4, NULL);
    pt_vm(t, "vm1", "B", 0, 0, "tcp:127.0.0.1:0", NULL);
    pt_listen(t, "vm1", listen, sizeof(listen));
    assert_int_equal(pt_migrate_cli(t, "vm0", listen, NULL, &rep), 0);
    json_object_put(rep);
    pt_wait_status(t, "vm1", "state", "running");
    t0 = am_now_ns();
    pt_kill(t, "B", SIGKILL);
    ms = ms_until_state(t, "vm1", "failed", t0);
    printf("reaction: destination after the handover, server SIGKILLed -> failed in %.1f ms\n",
           ms);
    assert_true(status_bool(t, "vm1", "device_gone"));
    t0 = am_now_ns();
    json_object_put(pt_ctl(t, "vm1", "quit"));
    got = pt_wait(t, "vm1", HANG_MS);
    if (got < 0)
        fail_msg("vm1 still runs %d ms after quit", HANG_MS);
    printf("reaction: quit -> exit in %.1f ms\n", (double)(am_now_ns() - t0) / 1e6);
    assert_int_equal(got, 3);
    pt_expect_exit(t, "vm0", 0); /* the source left once the guest had migrated */
}

/* The source's server SIGKILLed during a migration (held in precopy, then
 * let go): the migration fails, the source says its device is gone and
 * exits 3; the destination discards and exits 1. */
static void test_a_source_whose_server_dies_during_precopy_fails(void **state)
{
    struct pt *t = *state;
    char listen[128], got_state[64];
    json_object *rep = NULL;
    uint64_t t0;
    double ms;
    int got;

    running_guest(t);
    pt_server(t, "B", 4, NULL);
    pt_vm(t, "vm1", "B", 0, 0, "tcp:127.0.0.1:0", NULL);
    pt_listen(t, "vm1", listen, sizeof(listen));
    json_object_put(pt_ctl(t, "vm0", "hold precopy"));
    pt_migrate_start(t, "vm0", listen, NULL);
    pt_wait_status(t, "vm0", "held", "precopy");
    t0 = am_now_ns();
    pt_kill(t, "A", SIGKILL);
    for (;;) { /* seen while the migration is still held */
        if (status_bool(t, "vm0", "device_gone"))
            break;
        if (am_now_ns() - t0 > (uint64_t)HANG_MS * 1000000u)
            fail_msg("vm0 did not see its server die in %d ms", HANG_MS);
        usleep(2000);
    }
    ms = (double)(am_now_ns() - t0) / 1e6;
    printf("reaction: source held in precopy, server SIGKILLed -> device_gone in %.1f ms\n", ms);
    json_object_put(pt_ctl(t, "vm0", "continue"));
    assert_int_not_equal(pt_migrate_finish(t, "vm0", &rep), 0);
    json_object_put(rep);
    pt_status_str(t, "vm0", "state", got_state, sizeof(got_state));
    printf("source state after the failed migration: %s\n", got_state);
    assert_string_not_equal(got_state, "running");
    assert_string_not_equal(got_state, "migrated");
    json_object_put(pt_ctl(t, "vm0", "quit"));
    got = pt_wait(t, "vm0", HANG_MS);
    assert_int_equal(got, 3);
    pt_expect_exit_within(t, "vm1", 1, PT_EXIT_MS, "its source ended");
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_a_running_guests_vmm_fails_at_once_answers_and_quits),
        T(test_a_failed_vmm_ends_on_sigterm),
        T(test_a_vmm_without_stay_exits_3_by_itself),
        T(test_an_incoming_vmm_whose_server_dies_stops_waiting),
        T(test_a_destination_whose_server_dies_after_the_handover_fails_at_once),
        T(test_a_source_whose_server_dies_during_precopy_fails),
    };
#undef T
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-TO-ACCMIG\n", argv[0]);
        return 2;
    }
    g_exe = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
