/* `accmig demo --guests N`: several guests on their own VFs, each round's
 * migrations started together, each guest's jobs checked exactly once on
 * its own, the per-guest report (JSON and text) and the refusals of a bad
 * count. argv[1] is the accmig binary. No timing thresholds: the overlap
 * asserted below follows from the design (every request of a round is
 * ready before any goes out, and all are joined before the next round). */
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

static json_object *get(json_object *o, const char *k)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(o, k, &v))
        fail_msg("no '%s' in %s", k, json_object_to_json_string(o));
    return v;
}

static void test_two_guests_migrate_together_and_each_verifies_its_own_jobs(void **state)
{
    struct pt *t = *state;
    const char *args[] = {"demo", "--guests", "2", "--migrations", "2", "--jobs", "60",
                          "--max-size", "32K", "--qps", "2", "--vcpus", "2", "--json", NULL};
    json_object *j, *guests, *log, *m[2][2];
    char *out, *line;

    assert_int_equal(pt_run_once(t, "demo", args, PT_EXIT_MS * 2), 0);
    out = pt_log_read(t, "demo");
    line = strstr(out, "{\"verdict\"");
    assert_non_null(line);
    j = json_tokener_parse(line);
    assert_non_null(j);
    /* today's totals, summed over the guests */
    assert_string_equal(pt_str(j, "verdict"), "ok");
    assert_int_equal(pt_int(j, "hosts"), 2);
    assert_int_equal(pt_int(j, "jobs"), 120);
    assert_int_equal(pt_int(j, "jobs_verified"), 120);
    assert_int_equal(pt_int(j, "jobs_duplicated"), 0);
    assert_int_equal(pt_int(j, "jobs_lost"), 0);
    assert_int_equal(pt_int(j, "migrations"), 4);
    assert_int_equal(pt_int(j, "migrations_planned"), 4);
    assert_int_equal(json_object_array_length(get(j, "migration_log")), 4);

    guests = get(j, "guests");
    assert_int_equal(json_object_array_length(guests), 2);
    for (int g = 0; g < 2; g++) {
        json_object *gu = json_object_array_get_idx(guests, (size_t)g);

        assert_int_equal(pt_int(gu, "guest"), g);
        assert_int_equal(pt_int(gu, "seed"), 1 + g); /* its own workload */
        assert_string_equal(pt_str(gu, "verdict"), "ok");
        assert_int_equal(pt_int(gu, "jobs"), 60);
        assert_int_equal(pt_int(gu, "jobs_submitted"), 60);
        assert_int_equal(pt_int(gu, "jobs_completed"), 60);
        assert_int_equal(pt_int(gu, "jobs_verified"), 60);
        assert_int_equal(pt_int(gu, "jobs_failed"), 0);
        assert_int_equal(pt_int(gu, "jobs_duplicated"), 0);
        assert_int_equal(pt_int(gu, "jobs_lost"), 0);
        assert_int_equal(pt_int(gu, "stray_completions"), 0);
        log = get(gu, "migration_log");
        assert_int_equal(json_object_array_length(log), 2);
        for (int k = 0; k < 2; k++) {
            m[g][k] = json_object_array_get_idx(log, (size_t)k);
            assert_true(json_object_get_boolean(get(m[g][k], "ok")));
            assert_int_equal(pt_int(m[g][k], "guest"), g);
            assert_int_equal(pt_int(m[g][k], "n"), k + 1);
            assert_string_equal(pt_str(m[g][k], "direction"), k == 0 ? "A->B" : "B->A");
            assert_true(pt_int(m[g][k], "start_us") > 0);
            assert_true(pt_int(m[g][k], "ready_us") <= pt_int(m[g][k], "start_us"));
            assert_true(pt_int(m[g][k], "start_us") < pt_int(m[g][k], "end_us"));
            assert_true(pt_int(m[g][k], "device_downtime_us") > 0);
            assert_true(pt_int(m[g][k], "downtime_us") >= pt_int(m[g][k], "device_downtime_us"));
        }
        /* the rounds are joined: round 2 starts after round 1 ended */
        assert_true(pt_int(m[g][1], "start_us") > pt_int(m[g][0], "end_us"));
    }
    for (int k = 0; k < 2; k++) {
        /* both started before either was waited for... */
        assert_true(pt_int(m[0][k], "ready_us") < pt_int(m[1][k], "end_us"));
        assert_true(pt_int(m[1][k], "ready_us") < pt_int(m[0][k], "end_us"));
        /* ...and they ran at the same time */
        assert_true(pt_int(m[0][k], "start_us") < pt_int(m[1][k], "end_us"));
        assert_true(pt_int(m[1][k], "start_us") < pt_int(m[0][k], "end_us"));
        /* never two guests on one VF of a host at the same time */
        assert_int_not_equal(pt_int(m[0][k], "to_vf"), pt_int(m[1][k], "to_vf"));
        assert_int_not_equal(pt_int(m[0][k], "from_vf"), pt_int(m[1][k], "from_vf"));
    }
    json_object_put(j);
    free(out);
}

static void test_the_text_report_has_a_line_per_guest(void **state)
{
    struct pt *t = *state;
    const char *args[] = {"demo", "--guests", "2", "--jobs", "40", "--max-size", "32K",
                          "--qps", "2", "--vcpus", "2", NULL};
    char *out;

    assert_int_equal(pt_run_once(t, "demo", args, PT_EXIT_MS * 2), 0);
    out = pt_log_read(t, "demo");
    assert_non_null(strstr(out, "host A: device server up (4 VFs"));
    assert_non_null(strstr(out, "guest 1: migration 1: done"));
    assert_non_null(strstr(out, "2 guests, 40 zip jobs each"));
    assert_non_null(strstr(out, "2 of 2 migrations"));
    assert_non_null(strstr(out, "guest 0 (seed 1): 40/40 verified, 0 failed, 0 duplicated, 0 lost"));
    assert_non_null(strstr(out, "guest 1 (seed 2): 40/40 verified, 0 failed, 0 duplicated, 0 lost"));
    assert_non_null(strstr(out, "80 verified"));
    assert_non_null(strstr(out, "verdict: OK"));
    free(out);
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

static void test_a_guest_count_the_hosts_cannot_hold_is_refused_with_a_clear_message(void **state)
{
    struct pt *t = *state;
    const char *zero[] = {"demo", "--guests", "0", NULL};
    const char *many[] = {"demo", "--guests", "99", NULL};
    const char *word[] = {"demo", "--guests", "two", NULL};
    const char *inproc[] = {"demo", "--transport", "inproc", "--guests", "2", NULL};

    expect_usage(t, "zero", zero, "--guests wants a number in 1..31, not '0'");
    expect_usage(t, "many", many, "--guests wants a number in 1..31, not '99'");
    expect_usage(t, "many2", many, "two VFs of each host");
    expect_usage(t, "word", word, "--guests wants a number");
    expect_usage(t, "inproc", inproc, "--guests 2 is for the multi-process demo");
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, pt_fixture_free)
    const struct CMUnitTest tests[] = {
        T(test_two_guests_migrate_together_and_each_verifies_its_own_jobs),
        T(test_the_text_report_has_a_line_per_guest),
        T(test_a_guest_count_the_hosts_cannot_hold_is_refused_with_a_clear_message),
    };
#undef T
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-TO-ACCMIG\n", argv[0]);
        return 2;
    }
    g_exe = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
