/* The multi-process `accmig demo` (the default, and --transport vfio-user)
 * and the `accmig vm` / `accmig migrate` command lines as a user runs them:
 * reports and exit status, progress lines, clear refusals, and that an
 * interrupted or killed demo leaves no process and (when it can clean) no
 * directory behind. argv[1] is the accmig binary. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../vmm/vm_proc_util.h"

static const char *g_exe;

static int setup(void **state)
{
    return pt_fixture_new(state, g_exe);
}

/* Processes whose command line mentions s (our children pass the
 * directory in theirs). */
static unsigned procs_mentioning(const char *s)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    unsigned n = 0;

    assert_non_null(d);
    while ((e = readdir(d))) {
        char path[300], cmd[4096];
        size_t len;
        FILE *f;

        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        f = fopen(path, "r");
        if (!f)
            continue;
        len = fread(cmd, 1, sizeof(cmd) - 1, f);
        fclose(f);
        for (size_t i = 0; i < len; i++)
            if (cmd[i] == '\0')
                cmd[i] = ' ';
        cmd[len] = '\0';
        n += strstr(cmd, s) != NULL;
    }
    closedir(d);
    return n;
}

static bool demo_dir_exists(struct pt *t, char *name, size_t len)
{
    DIR *d = opendir(t->dir);
    struct dirent *e;
    bool found = false;

    assert_non_null(d);
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "accmig-demo-", 12) == 0) {
            snprintf(name, len, "%s/%.24s", t->dir, e->d_name);
            found = true;
        }
    closedir(d);
    return found;
}

static void test_the_default_demo_prints_progress_a_migration_and_the_verdict(void **state)
{
    struct pt *t = *state;
    const char *args[] = {"demo", "--jobs", "60", "--max-size", "32K", "--qps", "2", "--vcpus",
                          "2", NULL};
    char dir[200], *out;

    assert_int_equal(pt_run_once(t, "demo", args, PT_EXIT_MS * 2), 0);
    out = pt_log_read(t, "demo");
    /* plain progress lines (not a terminal), one migration, the summary */
    assert_non_null(strstr(out, "device server up"));
    assert_non_null(strstr(out, "migration 1: done"));
    assert_non_null(strstr(out, "transport vfio-user, 2 hosts, 1 of 1 migrations"));
    assert_non_null(strstr(out, "60 verified"));
    assert_non_null(strstr(out, "0 duplicated, 0 lost"));
    assert_non_null(strstr(out, "60 of 60 jobs checked, 0 mismatches"));
    assert_non_null(strstr(out, "verdict: OK"));
    assert_null(strstr(out, "\r"));
    free(out);
    assert_false(demo_dir_exists(t, dir, sizeof(dir)));
}

static void test_the_vfio_user_demo_without_migrations_uses_one_server(void **state)
{
    struct pt *t = *state;
    const char *args[] = {"demo", "--transport", "vfio-user", "--migrations", "0", "--jobs",
                          "40", "--max-size", "32K", "--json", NULL};
    char *out, *line;
    json_object *j, *log;

    assert_int_equal(pt_run_once(t, "demo", args, PT_EXIT_MS * 2), 0);
    out = pt_log_read(t, "demo");
    assert_null(strstr(out, "host B"));
    line = strstr(out, "{\"verdict\"");
    assert_non_null(line);
    j = json_tokener_parse(line);
    assert_non_null(j);
    assert_string_equal(pt_str(j, "verdict"), "ok");
    assert_int_equal(pt_int(j, "hosts"), 1);
    assert_int_equal(pt_int(j, "migrations"), 0);
    assert_int_equal(pt_int(j, "jobs_submitted"), 40);
    assert_int_equal(pt_int(j, "jobs_completed"), 40);
    assert_int_equal(pt_int(j, "jobs_verified"), 40);
    assert_int_equal(pt_int(j, "jobs_failed"), 0);
    assert_int_equal(pt_int(j, "jobs_duplicated"), 0);
    assert_int_equal(pt_int(j, "jobs_lost"), 0);
    assert_true(pt_int(j, "bytes_in") > 0);
    assert_true(pt_int(j, "bytes_out") > 0);
    assert_true(json_object_object_get_ex(j, "elapsed_ms", &log));
    assert_true(json_object_get_double(log) > 0);
    assert_true(json_object_object_get_ex(j, "migration_log", &log));
    assert_int_equal(json_object_array_length(log), 0);
    /* The supervisor checked every job itself. */
    assert_true(json_object_object_get_ex(j, "ledger", &log));
    assert_int_equal(pt_int(log, "jobs_checked"), 40);
    assert_int_equal(pt_int(log, "mismatches"), 0);
    json_object_put(j);
    free(out);
}

/* --engine sec|hpre: both servers serve that engine, the guest's crypto jobs
 * live-migrate back and forth, and the supervisor's ledger recomputes every
 * job's first result with libcrypto from the configuration alone. */
static void demo_engine_migrates_twice(struct pt *t, const char *engine, const char *const *kinds)
{
    const char *args[] = {"demo", "--engine", engine, "--jobs", "48", "--max-size", "32K",
                          "--migrations", "2", "--json", NULL};
    json_object *j, *by_kind, *v;
    int64_t sum = 0;
    char *out, *line;

    assert_int_equal(pt_run_once(t, engine, args, PT_EXIT_MS * 2), 0);
    out = pt_log_read(t, engine);
    assert_non_null(strstr(out, engine));
    line = strstr(out, "{\"verdict\"");
    assert_non_null(line);
    j = json_tokener_parse(line);
    assert_non_null(j);
    assert_string_equal(pt_str(j, "verdict"), "ok");
    assert_string_equal(pt_str(j, "engine"), engine);
    assert_int_equal(pt_int(j, "migrations"), 2);
    assert_int_equal(pt_int(j, "jobs_verified"), 48);
    assert_int_equal(pt_int(j, "jobs_duplicated"), 0);
    assert_int_equal(pt_int(j, "jobs_lost"), 0);
    assert_true(json_object_object_get_ex(j, "jobs_by_kind", &by_kind));
    for (unsigned k = 0; kinds[k]; k++) {
        assert_true(json_object_object_get_ex(by_kind, kinds[k], &v));
        sum += json_object_get_int64(v);
    }
    assert_int_equal(sum, 48);
    assert_false(json_object_object_get_ex(j, "jobs_by_format", &v));
    assert_true(json_object_object_get_ex(j, "ledger", &v));
    assert_int_equal(pt_int(v, "jobs_checked"), 48);
    assert_int_equal(pt_int(v, "mismatches"), 0);
    json_object_put(j);
    free(out);
}

static void test_sec_and_hpre_demos_migrate_twice_and_the_ledger_checks_them(void **state)
{
    static const char *const sec[] = {"cbc(aes)", "ctr(aes)", "xts(aes)", "gcm(aes)", NULL};
    static const char *const hpre[] = {"rsa-1024", "rsa-2048", "dh-2048", "x25519", NULL};

    demo_engine_migrates_twice(*state, "sec", sec);
    demo_engine_migrates_twice(*state, "hpre", hpre);
}

/* A guest whose own counters lie (test-only knob: job 5 counted verified,
 * never run): its report says every job was verified, and the demo fails
 * anyway, on the ledger the supervisor keeps. */
static void test_a_guest_that_miscounts_its_jobs_cannot_make_the_demo_pass(void **state)
{
    struct pt *t = *state;
    const char *args[] = {"demo", "--migrations", "2", "--jobs", "40", "--max-size", "32K",
                          "--qps", "2", "--vcpus", "2", "--json", NULL};
    json_object *j, *l;
    char *out, *line;

    setenv("ACCMIG_TEST_GUEST_MISCOUNT", "5", 1);
    assert_int_equal(pt_run_once(t, "demo", args, PT_EXIT_MS * 2), 1);
    unsetenv("ACCMIG_TEST_GUEST_MISCOUNT");
    out = pt_log_read(t, "demo");
    line = strstr(out, "{\"verdict\"");
    assert_non_null(line);
    j = json_tokener_parse(line);
    assert_non_null(j);
    assert_string_equal(pt_str(j, "verdict"), "failed");
    /* The guest's own word: all verified, nothing lost or duplicated. */
    assert_int_equal(pt_int(j, "jobs_verified"), 40);
    assert_int_equal(pt_int(j, "jobs_lost"), 0);
    assert_int_equal(pt_int(j, "jobs_duplicated"), 0);
    assert_int_equal(pt_int(j, "migrations"), 2);
    /* The supervisor's: one job has no result. */
    assert_true(json_object_object_get_ex(j, "ledger", &l));
    assert_int_equal(pt_int(l, "jobs_checked"), 39);
    assert_int_equal(pt_int(l, "missing"), 1);
    assert_int_equal(pt_int(l, "mismatches"), 1);
    assert_non_null(strstr(pt_str(l, "first_problem"), "job 5"));
    json_object_put(j);
    free(out);
}

static void test_an_interrupted_demo_stops_every_child_and_removes_its_directory(void **state)
{
    struct pt *t = *state;
    const char *args[] = {"demo", "--jobs", "100000", "--max-size", "64K", "--qps", "2",
                          "--vcpus", "2", NULL};
    uint64_t deadline = am_now_ns() + (uint64_t)PT_START_MS * 1000000u;
    char dir[200], ctl[240];

    setenv("TMPDIR", t->dir, 1);
    pt_spawn(t, "demo", NULL, args);
    unsetenv("TMPDIR");
    /* Wait until the guest's VMM is up: every kind of child exists. */
    for (;;) {
        if (demo_dir_exists(t, dir, sizeof(dir))) {
            snprintf(ctl, sizeof(ctl), "%s/vm0.ctl", dir);
            if (access(ctl, F_OK) == 0)
                break;
        }
        assert_true(am_now_ns() < deadline);
        usleep(10000);
    }
    assert_true(procs_mentioning(dir) >= 2);
    pt_kill(t, "demo", SIGINT);
    pt_expect_exit(t, "demo", 1);
    assert_int_equal(procs_mentioning(dir), 0);
    assert_int_not_equal(access(dir, F_OK), 0);
}

static void test_a_killed_demo_takes_its_children_with_it(void **state)
{
    struct pt *t = *state;
    const char *args[] = {"demo", "--jobs", "100000", "--max-size", "64K", "--qps", "2",
                          "--vcpus", "2", NULL};
    uint64_t deadline = am_now_ns() + (uint64_t)PT_START_MS * 1000000u;
    char dir[200], ctl[240];

    setenv("TMPDIR", t->dir, 1);
    pt_spawn(t, "demo", NULL, args);
    unsetenv("TMPDIR");
    for (;;) {
        if (demo_dir_exists(t, dir, sizeof(dir))) {
            snprintf(ctl, sizeof(ctl), "%s/vm0.ctl", dir);
            if (access(ctl, F_OK) == 0)
                break;
        }
        assert_true(am_now_ns() < deadline);
        usleep(10000);
    }
    pt_kill(t, "demo", SIGKILL);
    pt_expect_exit(t, "demo", 128 + SIGKILL);
    /* PR_SET_PDEATHSIG: the servers and VMMs die with it. */
    deadline = am_now_ns() + (uint64_t)PT_EXIT_MS * 1000000u;
    while (procs_mentioning(dir) != 0) {
        assert_true(am_now_ns() < deadline);
        usleep(10000);
    }
}

static void expect_usage(struct pt *t, const char *name, const char *const *args,
                         const char *words)
{
    char *out;

    if (pt_run_once(t, name, args, PT_EXIT_MS * 2) != 2)
        fail_msg("%s: exit status is not 2", name);
    out = pt_log_read(t, name);
    if (!strstr(out, words))
        fail_msg("%s: output does not mention '%s': %s", name, words, out);
    free(out);
}

static void test_the_command_lines_refuse_what_they_cannot_do_with_a_clear_message(void **state)
{
    struct pt *t = *state;
    const char *vm_none[] = {"vm", NULL};
    const char *vm_sock[] = {"vm", "--attach", "/nonexistent/vf0.sock", NULL};
    const char *vm_ram[] = {"vm", "--attach", "x", "--ram", "12345", NULL};
    const char *vm_small[] = {"vm", "--attach", "x", "--ram", "64K", NULL};
    const char *vm_in[] = {"vm", "--attach", "x", "--incoming", "udp:1.2.3.4:5", NULL};
    const char *mig_none[] = {"migrate", "--to", "tcp:127.0.0.1:1", NULL};
    const char *mig_vm[] = {"migrate", "--vm", "/nonexistent.ctl", "--to", "tcp:127.0.0.1:1",
                            NULL};
    const char *mig_dt[] = {"migrate", "--vm", "x", "--to", "y", "--downtime-ms", "0", NULL};
    const char *demo_w[] = {"demo", "--workers", "2", NULL};
    const char *demo_m[] = {"demo", "--migrations", "1001", NULL};
    const char *demo_t[] = {"demo", "--transport", "pigeon", NULL};
    const char *demo_d[] = {"demo", "--downtime-ms", "0", NULL};
    const char *demo_e[] = {"demo", "--engine", "rng", NULL};
    const char *vm_e[] = {"vm", "--attach", "x", "--engine", "", NULL};

    expect_usage(t, "vm_none", vm_none, "--attach SOCK is required");
    expect_usage(t, "vm_sock", vm_sock, "cannot attach to /nonexistent/vf0.sock");
    expect_usage(t, "vm_ram", vm_ram, "not a multiple of 4 KiB");
    expect_usage(t, "vm_small", vm_small, "smaller than the workload needs");
    expect_usage(t, "vm_in", vm_in, "--incoming udp:1.2.3.4:5");
    expect_usage(t, "mig_none", mig_none, "--vm CONTROL and --to ENDPOINT are required");
    expect_usage(t, "mig_vm", mig_vm, "no answer from the VMM at /nonexistent.ctl");
    expect_usage(t, "mig_dt", mig_dt, "--downtime-ms wants a number");
    expect_usage(t, "demo_w", demo_w, "--workers is for --transport inproc");
    expect_usage(t, "demo_m", demo_m, "--migrations");
    expect_usage(t, "demo_t", demo_t, "pigeon");
    expect_usage(t, "demo_d", demo_d, "--downtime-ms");
    expect_usage(t, "demo_e", demo_e, "--engine is zip, sec or hpre, not 'rng'");
    expect_usage(t, "vm_e", vm_e, "--engine is zip, sec or hpre, not ''");
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, pt_fixture_free)
    const struct CMUnitTest tests[] = {
        T(test_the_default_demo_prints_progress_a_migration_and_the_verdict),
        T(test_the_vfio_user_demo_without_migrations_uses_one_server),
        T(test_sec_and_hpre_demos_migrate_twice_and_the_ledger_checks_them),
        T(test_a_guest_that_miscounts_its_jobs_cannot_make_the_demo_pass),
        T(test_an_interrupted_demo_stops_every_child_and_removes_its_directory),
        T(test_a_killed_demo_takes_its_children_with_it),
        T(test_the_command_lines_refuse_what_they_cannot_do_with_a_clear_message),
    };
#undef T
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-TO-ACCMIG\n", argv[0]);
        return 2;
    }
    g_exe = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
