/* `accmig bench <name> --load N`: a bad N is refused with a message naming
 * --load and exit status 2, for every benchmark that takes it; a tiny run
 * with --load 1 --json prints "load_threads":1 on every JSON line, and each
 * time it gives as p50/p99/max is ordered. argv[1] is the accmig binary. No
 * timing thresholds: the runs are far too short to mean anything. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
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

/* Runs accmig args to its end; its exit status. */
static int run(struct pt *t, const char *name, const char *const *args)
{
    return pt_run_once(t, name, args, PT_EXIT_MS * 4);
}

static const char *const benches[] = {"migrate", "engine", "vfu", "ramcopy"};

static void test_a_bad_load_is_refused_by_every_benchmark_with_a_clear_message(void **state)
{
    struct pt *t = *state;
    static const char *const bad[] = {"65", "x", "-1", "1.5", ""};

    for (size_t b = 0; b < AM_ARRAY_SIZE(benches); b++) {
        for (size_t v = 0; v < AM_ARRAY_SIZE(bad); v++) {
            const char *args[] = {"bench", benches[b], "--load", bad[v], "--json", NULL};
            char name[24], want[64], *log;

            snprintf(name, sizeof(name), "bad%zu_%zu", b, v);
            assert_int_equal(run(t, name, args), 2);
            log = pt_log_read(t, name);
            snprintf(want, sizeof(want), "accmig bench %s: bad value '%s' for --load", benches[b],
                     bad[v]);
            if (!strstr(log, want) || !strstr(log, "0 to 64"))
                fail_msg("%s --load '%s': no clear message in:\n%s", benches[b], bad[v], log);
            assert_null(strchr(log, '{')); /* nothing was measured */
            free(log);
        }
    }
}

/* Runs args; every JSON line must carry "load_threads":1. The number of
 * JSON lines. */
static unsigned check_lines(struct pt *t, const char *name, const char *const *args,
                            const char *bench)
{
    char *log, *line, *save = NULL;
    unsigned n = 0;
    int st = run(t, name, args);

    log = pt_log_read(t, name);
    if (st != 0)
        fail_msg("%s exited with %d:\n%s", name, st, log);
    for (line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_object *j;

        if (line[0] != '{')
            continue;
        j = json_tokener_parse(line);
        if (!j)
            fail_msg("%s: not JSON: %s", name, line);
        assert_string_equal(pt_str(j, "bench"), bench);
        assert_int_equal(pt_int(j, "load_threads"), 1);
        if (strcmp(bench, "migrate") == 0) {
            pt_assert_ordered(j, "downtime_p50_us", "downtime_p99_us", "downtime_max_us");
            pt_assert_ordered(j, "quiesce_p50_us", "quiesce_p99_us", "quiesce_max_us");
            pt_assert_ordered(j, "resume_p50_us", "resume_p99_us", "resume_max_us");
            assert_true(json_object_get_boolean(json_object_object_get(j, "exactly_once")));
        } else if (strcmp(bench, "engine") == 0) {
            pt_assert_ordered(j, "engine_job_us_p50", "engine_job_us_p99", "engine_job_us_max");
            pt_assert_ordered(j, "raw_job_us_p50", "raw_job_us_p99", "raw_job_us_max");
        } else if (strcmp(bench, "vfu") == 0 && strcmp(pt_str(j, "case"), "idle") == 0) {
            assert_true(pt_num(j, "idle_server_cpu_pct") >= 0);
            assert_int_equal(pt_int(j, "idle_ms"), 100);
        } else if (strcmp(bench, "vfu") == 0) {
            pt_assert_ordered(j, "vfu_us_p50", "vfu_us_p99", "vfu_us_max");
            pt_assert_ordered(j, "bare_us_p50", "bare_us_p99", "bare_us_max");
            if (strncmp(pt_str(j, "case"), "job4k", 5) == 0) {
                /* median between min and max, for both sides */
                pt_assert_ordered(j, "vfu_us_min", "vfu_us", "vfu_us_max");
                pt_assert_ordered(j, "bare_us_min", "bare_us", "bare_us_max");
                const char *c = pt_str(j, "case");
                bool trapped = strstr(c, "_trapped") != NULL;

                assert_true(strcmp(c, "job4k") == 0 || strcmp(c, "job4k_trapped") == 0 ||
                            strcmp(c, "job4k_irq") == 0 || strcmp(c, "job4k_irq_trapped") == 0);
                assert_string_equal(pt_str(j, "doorbells"), trapped ? "trapped" : "mapped");
                assert_string_equal(pt_str(j, "completion"),
                                    strstr(c, "_irq") != NULL ? "irq" : "poll");
            }
        }
        json_object_put(j);
        n++;
    }
    free(log);
    return n;
}

static void test_a_tiny_loaded_migrate_run_says_load_threads_on_every_line(void **state)
{
    const char *args[] = {"bench", "migrate", "--migrations", "3", "--qps", "1", "--hw", "v4",
                          "--min-size", "4K", "--max-size", "16K", "--interval-us", "100",
                          "--load", "1", "--json", NULL};

    assert_int_equal(check_lines(*state, "migrate", args, "migrate"), 2); /* idle, busy */
}

static void test_a_tiny_loaded_engine_run_says_load_threads_on_every_line(void **state)
{
    const char *args[] = {"bench", "engine", "--size", "4096", "--jobs", "16", "--rounds", "2",
                          "--load", "1", "--json", NULL};

    assert_int_equal(check_lines(*state, "engine", args, "engine"), 1);
}

static void test_a_tiny_loaded_vfu_run_says_load_threads_on_every_line(void **state)
{
    const char *args[] = {"bench", "vfu", "--iterations", "10", "--rounds", "2", "--load", "1",
                          "--idle-ms", "100", "--json", NULL};

    /* doorbell, 4k, job4k (mapped, polled), job4k_trapped, job4k_irq,
     * job4k_irq_trapped, idle */
    assert_int_equal(check_lines(*state, "vfu", args, "vfu"), 7);
}

static void test_bench_vfu_refuses_an_idle_span_out_of_range(void **state)
{
    struct pt *t = *state;
    static const char *const bad[] = {"99", "60001", "x", ""};

    for (size_t v = 0; v < AM_ARRAY_SIZE(bad); v++) {
        const char *args[] = {"bench", "vfu", "--idle-ms", bad[v], "--json", NULL};
        char name[24], want[64], *log;

        snprintf(name, sizeof(name), "idle%zu", v);
        assert_int_equal(run(t, name, args), 2);
        log = pt_log_read(t, name);
        snprintf(want, sizeof(want), "bad value '%s' for --idle-ms", bad[v]);
        if (!strstr(log, want))
            fail_msg("--idle-ms '%s': no clear message in:\n%s", bad[v], log);
        assert_null(strchr(log, '{'));
        free(log);
    }
}

static void test_a_tiny_loaded_ramcopy_run_says_load_threads(void **state)
{
    const char *args[] = {"bench", "ramcopy", "--size", "1M", "--rounds", "1", "--load", "1",
                          "--json", NULL};

    assert_int_equal(check_lines(*state, "ramcopy", args, "ramcopy"), 1);
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_a_bad_load_is_refused_by_every_benchmark_with_a_clear_message),
        T(test_a_tiny_loaded_migrate_run_says_load_threads_on_every_line),
        T(test_a_tiny_loaded_engine_run_says_load_threads_on_every_line),
        T(test_a_tiny_loaded_vfu_run_says_load_threads_on_every_line),
        T(test_bench_vfu_refuses_an_idle_span_out_of_range),
        T(test_a_tiny_loaded_ramcopy_run_says_load_threads),
    };
#undef T
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-TO-ACCMIG\n", argv[0]);
        return 2;
    }
    g_exe = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
