/* The handover of a live migration between mini-VMMs as processes, with a
 * fault at every step of it (docs/vm.md, "The handover"): each direction
 * of the link cut, each process killed, each process frozen, at READY and
 * at COMMIT on either side. Each case checks that at most one side ever
 * runs the guest, that the guest ends on one side with every job verified
 * exactly once (nothing lost, nothing done twice), that an ambiguous end
 * leaves the source paused and `accmig migrate` exiting 3, that
 * `accmig migrate --resolve` asks the destination (or takes --side when a
 * side cannot be asked), and that the host left behind serves a new guest.
 * Faults come from ACCMIG_VM_FAULT=POINT:ACTION in the VMM's environment
 * (test-only, docs/vm.md). argv[1] is the accmig binary. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vm_proc_util.h"

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

/* vm0 on A's VF 0 with its guest, vm1 waiting on B's VF 0; each VMM with
 * the fault given (NULL: none) and its own extra options. */
static void start(struct pt *t, const char *src_fault, const char *dst_fault,
                  const char *const *dst_extra, char *listen, size_t len)
{
    pt_server(t, "A", 4, NULL);
    pt_server(t, "B", 4, NULL);
    if (src_fault)
        setenv("ACCMIG_VM_FAULT", src_fault, 1);
    pt_vm(t, "vm0", "A", 0, JOBS, NULL, NULL);
    unsetenv("ACCMIG_VM_FAULT");
    if (dst_fault)
        setenv("ACCMIG_VM_FAULT", dst_fault, 1);
    pt_vm_extra(t, "vm1", "B", 0, 0, "tcp:127.0.0.1:0", NULL, dst_extra);
    unsetenv("ACCMIG_VM_FAULT");
    pt_listen(t, "vm1", listen, len);
}

/* The VMM's process exists and has not exited (looked at without reaping
 * it: its exit status stays for pt_expect_exit). */
static bool alive(struct pt *t, const char *vm)
{
    for (unsigned i = 0; i < PT_MAX_KIDS; i++) {
        siginfo_t si = {0};

        if (t->kids[i].pid <= 0 || strcmp(t->kids[i].name, vm) != 0)
            continue;
        if (waitid(P_PID, (id_t)t->kids[i].pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
            return false;
        return si.si_pid == 0;
    }
    return false;
}

/* The status field of a VMM that runs, or "" when it is gone. */
static void state_of(struct pt *t, const char *vm, const char *key, char *buf, size_t len)
{
    buf[0] = '\0';
    if (alive(t, vm))
        pt_status_str(t, vm, key, buf, len);
}

static bool runs_guest(const char *state)
{
    return strcmp(state, "running") == 0 || strcmp(state, "finished") == 0;
}

/* At most one of the two VMMs runs the guest right now (a frozen one
 * cannot answer: only the other is looked at; a frozen process runs
 * nothing). */
static void assert_at_most_one_runs_frozen(struct pt *t, const char *frozen)
{
    char a[32], b[32];

    if (frozen && strcmp(frozen, "vm0") == 0)
        snprintf(a, sizeof(a), "frozen");
    else
        state_of(t, "vm0", "state", a, sizeof(a));
    if (frozen && strcmp(frozen, "vm1") == 0)
        snprintf(b, sizeof(b), "frozen");
    else
        state_of(t, "vm1", "state", b, sizeof(b));
    if (runs_guest(a) && runs_guest(b))
        fail_msg("both sides run the guest (vm0 %s, vm1 %s)", a, b);
}

static void assert_at_most_one_runs(struct pt *t)
{
    assert_at_most_one_runs_frozen(t, NULL);
}

/* `accmig migrate --resolve` with the given options: its exit status. */
static int resolve(struct pt *t, bool ask_src, bool ask_dst, const char *side)
{
    char src[160], dst[160];
    const char *args[12] = {"migrate", "--resolve", "--json"};
    unsigned n = 3;
    static unsigned k;
    char name[24];

    pt_ctl_path(t, "vm0", src, sizeof(src));
    pt_ctl_path(t, "vm1", dst, sizeof(dst));
    if (ask_src) {
        args[n++] = "--vm";
        args[n++] = src;
    }
    if (ask_dst) {
        args[n++] = "--peer";
        args[n++] = dst;
    }
    if (side) {
        args[n++] = "--side";
        args[n++] = side;
    }
    args[n] = NULL;
    snprintf(name, sizeof(name), "resolve%u", k++);
    return pt_run_once(t, name, args, PT_EXIT_MS);
}

/* A migration that ends in doubt: accmig migrate says so (3), the source
 * is paused in doubt. */
static void migrate_in_doubt_frozen(struct pt *t, const char *listen, const char *extra,
                                    const char *frozen)
{
    json_object *rep = NULL;
    char st[32];

    assert_int_equal(pt_migrate_cli(t, "vm0", listen, extra, &rep), 3);
    assert_non_null(rep);
    assert_false(json_object_get_boolean(json_object_object_get(rep, "ok")));
    assert_true(json_object_get_boolean(json_object_object_get(rep, "in_doubt")));
    assert_false(json_object_get_boolean(json_object_object_get(rep, "rolled_back")));
    assert_string_equal(pt_str(rep, "phase"), "handover");
    json_object_put(rep);
    pt_status_str(t, "vm0", "state", st, sizeof(st));
    assert_string_equal(st, "in-doubt");
    pt_status_str(t, "vm0", "handover", st, sizeof(st));
    assert_string_equal(st, "in-doubt");
    assert_at_most_one_runs_frozen(t, frozen);
}

static void migrate_in_doubt(struct pt *t, const char *listen, const char *extra)
{
    migrate_in_doubt_frozen(t, listen, extra, NULL);
}

static void migrate_rolled_back(struct pt *t, const char *listen, const char *extra)
{
    json_object *rep = NULL;

    assert_int_equal(pt_migrate_cli(t, "vm0", listen, extra, &rep), 1);
    assert_non_null(rep);
    assert_true(json_object_get_boolean(json_object_object_get(rep, "rolled_back")));
    json_object_put(rep);
}

/* The guest ended on `winner`: the other VMM is gone with status
 * loser_exit (or was killed: -1 skips), every job verified exactly once on
 * the winner, and the loser's host serves a new guest. */
static void assert_guest_on(struct pt *t, const char *winner, const char *loser, int loser_exit)
{
    const char *loser_host = strcmp(loser, "vm0") == 0 ? "A" : "B";

    if (loser_exit >= 0)
        pt_expect_exit(t, loser, loser_exit);
    assert_at_most_one_runs(t);
    pt_assert_guest_ok(t, winner, JOBS);
    pt_assert_vf_serves_a_new_guest(t, loser_host, "vm-new");
}

/* ---- before the point of no return: the source keeps the guest ---- */

static void test_a_destination_killed_before_ready_leaves_the_source_running(void **state)
{
    struct pt *t = *state;
    char listen[128];

    start(t, NULL, "dst-end:kill", NULL, listen, sizeof(listen));
    migrate_rolled_back(t, listen, NULL);
    pt_expect_exit(t, "vm1", 128 + SIGKILL);
    assert_guest_on(t, "vm0", "vm1", -1);
}

static void test_a_destination_frozen_before_ready_is_told_abort_and_discards(void **state)
{
    struct pt *t = *state;
    char listen[128];

    start(t, NULL, "dst-end:stop", NULL, listen, sizeof(listen));
    migrate_rolled_back(t, listen, "--timeout-ms=1500");
    assert_at_most_one_runs_frozen(t, "vm1");
    /* Thawed, it sends READY to nobody and reads the source's ABORT. */
    pt_kill(t, "vm1", SIGCONT);
    assert_guest_on(t, "vm0", "vm1", 1);
}

/* ---- the link dies in the window: in doubt, resolved by asking ---- */

static void test_the_link_to_the_destination_cut_before_commit_is_resolved_to_the_source(
    void **state)
{
    struct pt *t = *state;
    char listen[128], st[32];

    /* S's sending direction dies as it is about to commit. */
    start(t, "src-ready:cut-send", NULL, NULL, listen, sizeof(listen));
    migrate_in_doubt(t, listen, NULL);
    pt_wait_status(t, "vm1", "state", "in-doubt");
    pt_status_str(t, "vm1", "handover", st, sizeof(st));
    assert_string_equal(st, "in-doubt");
    assert_at_most_one_runs(t);
    assert_int_equal(resolve(t, true, true, NULL), 0);
    assert_guest_on(t, "vm0", "vm1", 1);
}

static void test_the_destination_not_reading_the_commit_is_resolved_to_the_source(void **state)
{
    struct pt *t = *state;
    char listen[128];

    start(t, NULL, "dst-ready:cut-recv", NULL, listen, sizeof(listen));
    migrate_in_doubt(t, listen, "--timeout-ms=1500");
    pt_wait_status(t, "vm1", "state", "in-doubt");
    assert_int_equal(resolve(t, true, true, NULL), 0);
    assert_guest_on(t, "vm0", "vm1", 1);
}

static void test_the_committed_answer_lost_on_the_way_back_is_resolved_to_the_destination(
    void **state)
{
    struct pt *t = *state;
    char listen[128], id0[32], id1[32];

    start(t, NULL, "dst-commit:cut-send", NULL, listen, sizeof(listen));
    migrate_in_doubt(t, listen, NULL);
    /* The destination runs it, the source is paused: one side. */
    pt_status_str(t, "vm1", "handover", id1, sizeof(id1));
    assert_string_equal(id1, "committed");
    pt_status_str(t, "vm0", "migration_id", id0, sizeof(id0));
    pt_status_str(t, "vm1", "migration_id", id1, sizeof(id1));
    assert_string_equal(id0, id1);
    assert_at_most_one_runs(t);
    assert_int_equal(resolve(t, true, true, NULL), 0);
    assert_guest_on(t, "vm1", "vm0", 0);
}

static void test_the_source_deaf_after_commit_is_resolved_to_the_destination(void **state)
{
    struct pt *t = *state;
    char listen[128];

    start(t, "src-commit:cut-recv", NULL, NULL, listen, sizeof(listen));
    migrate_in_doubt(t, listen, NULL);
    pt_wait_status(t, "vm1", "handover", "committed");
    assert_int_equal(resolve(t, true, true, NULL), 0);
    assert_guest_on(t, "vm1", "vm0", 0);
}

/* ---- a peer killed in the window ---- */

static void test_a_destination_killed_after_ready_needs_the_operator_and_the_source_resumes(
    void **state)
{
    struct pt *t = *state;
    char listen[128];

    start(t, NULL, "dst-ready:kill", NULL, listen, sizeof(listen));
    migrate_in_doubt(t, listen, NULL);
    pt_expect_exit(t, "vm1", 128 + SIGKILL);
    /* Nobody to ask: nothing is done without the operator's word. */
    assert_int_equal(resolve(t, true, true, NULL), 3);
    pt_wait_status(t, "vm0", "state", "in-doubt");
    assert_int_equal(resolve(t, true, false, "source"), 0);
    assert_guest_on(t, "vm0", "vm1", -1);
}

static void test_a_destination_killed_after_commit_is_resolved_by_the_operator_to_the_source(
    void **state)
{
    struct pt *t = *state;
    char listen[128];

    start(t, NULL, "dst-commit:kill", NULL, listen, sizeof(listen));
    migrate_in_doubt(t, listen, NULL);
    pt_expect_exit(t, "vm1", 128 + SIGKILL);
    assert_int_equal(resolve(t, true, true, NULL), 3);
    assert_int_equal(resolve(t, true, true, "source"), 0);
    assert_guest_on(t, "vm0", "vm1", -1);
}

static void test_a_source_killed_before_commit_leaves_the_destination_holding_until_told(
    void **state)
{
    struct pt *t = *state;
    char listen[128];
    json_object *rep = NULL;

    start(t, "src-ready:kill", NULL, NULL, listen, sizeof(listen));
    assert_int_equal(pt_migrate_cli(t, "vm0", listen, NULL, &rep), 2);
    json_object_put(rep);
    pt_expect_exit(t, "vm0", 128 + SIGKILL);
    pt_wait_status(t, "vm1", "state", "in-doubt");
    /* The destination never runs it by itself; asked, it waits for a word. */
    assert_int_equal(resolve(t, true, true, NULL), 3);
    assert_int_equal(resolve(t, false, true, "destination"), 0);
    assert_guest_on(t, "vm1", "vm0", -1);
}

static void test_a_source_killed_after_commit_leaves_the_guest_running_on_the_destination(
    void **state)
{
    struct pt *t = *state;
    char listen[128];
    json_object *rep = NULL;

    start(t, "src-commit:kill", NULL, NULL, listen, sizeof(listen));
    assert_int_equal(pt_migrate_cli(t, "vm0", listen, NULL, &rep), 2);
    json_object_put(rep);
    pt_expect_exit(t, "vm0", 128 + SIGKILL);
    pt_wait_status(t, "vm1", "handover", "committed");
    assert_guest_on(t, "vm1", "vm0", -1);
}

/* ---- a peer frozen in the window ---- */

static void test_a_destination_frozen_after_ready_runs_the_guest_once_thawed(void **state)
{
    struct pt *t = *state;
    char listen[128];

    start(t, NULL, "dst-ready:stop", NULL, listen, sizeof(listen));
    migrate_in_doubt_frozen(t, listen, "--timeout-ms=1500", "vm1");
    pt_kill(t, "vm1", SIGCONT);
    /* It reads the commit it was sent and runs the guest; the source is
     * still paused, so still one side. */
    pt_wait_status(t, "vm1", "handover", "committed");
    assert_at_most_one_runs(t);
    assert_int_equal(resolve(t, true, true, NULL), 0);
    assert_guest_on(t, "vm1", "vm0", 0);
}

static void test_a_source_frozen_before_commit_is_resolved_to_the_source(void **state)
{
    struct pt *t = *state;
    static const char *const quick[] = {"--timeout-ms", "1500", NULL};
    char listen[128];
    json_object *rep = NULL;

    start(t, "src-ready:stop", NULL, quick, listen, sizeof(listen));
    pt_migrate_start(t, "vm0", listen, NULL);
    /* The destination gives up waiting for the commit: in doubt, holding. */
    pt_wait_status(t, "vm1", "state", "in-doubt");
    pt_kill(t, "vm0", SIGCONT);
    assert_int_equal(pt_migrate_finish(t, "vm0", &rep), 3);
    json_object_put(rep);
    assert_at_most_one_runs(t);
    assert_int_equal(resolve(t, true, true, NULL), 0);
    assert_guest_on(t, "vm0", "vm1", 1);
}

static void test_a_source_frozen_after_commit_completes_the_migration_once_thawed(void **state)
{
    struct pt *t = *state;
    char listen[128];
    json_object *rep = NULL;

    start(t, "src-commit:stop", NULL, NULL, listen, sizeof(listen));
    pt_migrate_start(t, "vm0", listen, NULL);
    pt_wait_status(t, "vm1", "handover", "committed");
    pt_kill(t, "vm0", SIGCONT);
    assert_int_equal(pt_migrate_finish(t, "vm0", &rep), 0);
    json_object_put(rep);
    assert_guest_on(t, "vm1", "vm0", 0);
}

/* ---- resolve refuses what it cannot do ---- */

static void test_resolve_refuses_bad_usage_and_a_vmm_with_no_handover(void **state)
{
    struct pt *t = *state;
    char ctl[160], reply[1024];
    const char *bad[] = {"migrate", "--resolve", "--side", "both", "--vm", ctl, NULL};
    const char *none[] = {"migrate", "--resolve", NULL};

    pt_server(t, "A", 4, NULL);
    pt_vm(t, "vm0", "A", 0, JOBS, NULL, NULL);
    pt_ctl_path(t, "vm0", ctl, sizeof(ctl));
    assert_int_equal(pt_run_once(t, "bad", bad, PT_EXIT_MS), 2);
    assert_int_equal(pt_run_once(t, "none", none, PT_EXIT_MS), 2);
    assert_int_equal(vm_control_request(ctl, "resolve destination", reply, sizeof(reply), 10000),
                     0);
    assert_non_null(strstr(reply, "took part in no handover"));
    assert_int_equal(vm_control_request(ctl, "resolve sideways", reply, sizeof(reply), 10000), 0);
    assert_non_null(strstr(reply, "\"ok\":false"));
    pt_assert_guest_ok(t, "vm0", JOBS);
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_a_destination_killed_before_ready_leaves_the_source_running),
        T(test_a_destination_frozen_before_ready_is_told_abort_and_discards),
        T(test_the_link_to_the_destination_cut_before_commit_is_resolved_to_the_source),
        T(test_the_destination_not_reading_the_commit_is_resolved_to_the_source),
        T(test_the_committed_answer_lost_on_the_way_back_is_resolved_to_the_destination),
        T(test_the_source_deaf_after_commit_is_resolved_to_the_destination),
        T(test_a_destination_killed_after_ready_needs_the_operator_and_the_source_resumes),
        T(test_a_destination_killed_after_commit_is_resolved_by_the_operator_to_the_source),
        T(test_a_source_killed_before_commit_leaves_the_destination_holding_until_told),
        T(test_a_source_killed_after_commit_leaves_the_guest_running_on_the_destination),
        T(test_a_destination_frozen_after_ready_runs_the_guest_once_thawed),
        T(test_a_source_frozen_before_commit_is_resolved_to_the_source),
        T(test_a_source_frozen_after_commit_completes_the_migration_once_thawed),
        T(test_resolve_refuses_bad_usage_and_a_vmm_with_no_handover),
    };
#undef T
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-TO-ACCMIG\n", argv[0]);
        return 2;
    }
    g_exe = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
