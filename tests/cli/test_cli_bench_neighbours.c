/* `accmig bench neighbours`: a tiny run (one pair of 1 s phases, --load 1)
 * exits 0 with one JSON line that carries every field, the tenant's jobs
 * completed exactly once, every kind of hostile operation done at least once
 * in the noisy phase, and ordered p50/p99/max; every bad option is refused
 * with exit status 2 and a message naming it. argv[1] is the accmig binary.
 * No timing thresholds: a 1 s phase means nothing. */
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

static int teardown(void **state)
{
    return pt_fixture_free(state);
}

static void test_a_tiny_run_prints_every_field_and_keeps_the_tenants_jobs_exactly_once(
    void **state)
{
    static const char *const ops[] = {"hostile_stop_qp", "hostile_mailbox_invalid",
                                      "hostile_doorbell_bad", "hostile_doorbell_valid",
                                      "hostile_dma_fault_jobs", "hostile_mmio_garbage",
                                      "hostile_mmio_refused"};
    static const char *const fields[] = {"quiet_mb_s", "noisy_mb_s", "ratio_target_met",
                                         "downtime_target_met", "jobs", "completions"};
    const char *args[] = {"bench", "neighbours", "--pairs", "1", "--seconds", "1", "--load", "1",
                          "--json", NULL};
    struct pt *t = *state;
    char *log, *line, *save = NULL;
    unsigned lines = 0;
    int st = pt_run_once(t, "tiny", args, PT_EXIT_MS * 4);

    log = pt_log_read(t, "tiny");
    if (st != 0)
        fail_msg("bench neighbours exited with %d:\n%s", st, log);
    for (line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_object *j;

        if (line[0] != '{')
            continue;
        j = json_tokener_parse(line);
        if (!j)
            fail_msg("not JSON: %s", line);
        assert_string_equal(pt_str(j, "bench"), "neighbours");
        assert_int_equal(pt_int(j, "load_threads"), 1);
        assert_int_equal(pt_int(j, "pairs"), 1);
        assert_true(json_object_get_boolean(json_object_object_get(j, "exactly_once")));
        assert_int_equal(pt_int(j, "failed_migrations"), 0);
        assert_true(pt_int(j, "migrations_quiet") > 0);
        assert_true(pt_int(j, "migrations_noisy") > 0);
        assert_true(pt_int(j, "jobs") > 0);
        assert_int_equal(pt_int(j, "completions"), pt_int(j, "jobs"));
        for (size_t i = 0; i < AM_ARRAY_SIZE(ops); i++)
            if (pt_int(j, ops[i]) <= 0)
                fail_msg("no %s in the noisy phase: %s", ops[i], line);
        for (size_t i = 0; i < AM_ARRAY_SIZE(fields); i++)
            (void)pt_num(j, fields[i]);
        pt_assert_ordered(j, "ratio_min", "ratio", "ratio_max");
        pt_assert_ordered(j, "downtime_p50_quiet_us", "downtime_p99_quiet_us",
                       "downtime_max_quiet_us");
        pt_assert_ordered(j, "downtime_p50_noisy_us", "downtime_p99_noisy_us",
                       "downtime_max_noisy_us");
        json_object_put(j);
        lines++;
    }
    free(log);
    assert_int_equal(lines, 1);
}

static void test_every_bad_option_is_refused_with_exit_status_2_and_a_message_naming_it(
    void **state)
{
    static const struct {
        const char *opt, *val, *want;
    } bad[] = {
        {"--pairs", "0", "bad value '0' for --pairs"},
        {"--pairs", "51", "bad value '51' for --pairs"},
        {"--pairs", "x", "bad value 'x' for --pairs"},
        {"--seconds", "0", "bad value '0' for --seconds"},
        {"--seconds", "601", "bad value '601' for --seconds"},
        {"--seconds", "1.5", "bad value '1.5' for --seconds"},
        {"--load", "65", "bad value '65' for --load"},
        {"--bogus", NULL, "unknown option or missing value: '--bogus'"},
        {"--pairs", NULL, "unknown option or missing value: '--pairs'"},
        {"extra", NULL, "unexpected argument 'extra'"},
    };
    struct pt *t = *state;

    for (size_t i = 0; i < AM_ARRAY_SIZE(bad); i++) {
        const char *args[] = {"bench", "neighbours", "--json", bad[i].opt, bad[i].val, NULL};
        char name[16], *log;

        snprintf(name, sizeof(name), "bad%zu", i);
        assert_int_equal(pt_run_once(t, name, args, PT_EXIT_MS), 2);
        log = pt_log_read(t, name);
        if (!strstr(log, "accmig bench neighbours: ") || !strstr(log, bad[i].want))
            fail_msg("%s %s: no clear message in:\n%s", bad[i].opt, bad[i].val ? bad[i].val : "",
                     log);
        assert_null(strchr(log, '{')); /* nothing was measured */
        free(log);
    }
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_every_bad_option_is_refused_with_exit_status_2_and_a_message_naming_it),
        T(test_a_tiny_run_prints_every_field_and_keeps_the_tenants_jobs_exactly_once),
    };
#undef T
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-TO-ACCMIG\n", argv[0]);
        return 2;
    }
    g_exe = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
