/* `accmig bench engine --engine hpre` as a user runs it: a tiny run prints
 * one JSON object per operation with both sides measured and the ratios
 * ordered; bad options are refused with exit status 2 and a message, before
 * anything is measured. argv[1] is the accmig binary. No timing thresholds:
 * the runs are far too short to mean anything. */
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

static void tiny_run(struct pt *t, const char *path)
{
    static const char *const ops[] = {"rsa2048_pub", "rsa2048_crt", "dh2048", "p256", "x25519"};
    const char *args[] = {"bench", "engine", "--engine", "hpre", "--jobs", "4", "--rounds", "3",
                          "--load", "1", "--path", path, "--json", NULL};
    char *log, *line, *save = NULL;
    unsigned n = 0;
    int st = pt_run_once(t, path, args, PT_EXIT_MS * 4);

    log = pt_log_read(t, path);
    if (st != 0)
        fail_msg("exit %d:\n%s", st, log);
    for (line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_object *j;

        if (line[0] != '{')
            continue;
        j = json_tokener_parse(line);
        if (!j)
            fail_msg("not JSON: %s", line);
        assert_true(n < AM_ARRAY_SIZE(ops));
        assert_string_equal(pt_str(j, "bench"), "engine");
        assert_string_equal(pt_str(j, "engine"), "hpre");
        assert_string_equal(pt_str(j, "op"), ops[n]);
        assert_string_equal(pt_str(j, "path"), path);
        assert_int_equal(pt_int(j, "jobs"), 4);
        assert_int_equal(pt_int(j, "rounds"), 3);
        assert_int_equal(pt_int(j, "load_threads"), 1);
        assert_true(pt_num(j, "raw_ops_s") > 0);
        assert_true(pt_num(j, "engine_ops_s") > 0);
        assert_true(pt_num(j, "raw_cpu_us_per_op") > 0);
        assert_true(pt_num(j, "engine_cpu_us_per_op") > 0);
        assert_true(pt_num(j, "ratio_min") <= pt_num(j, "ratio"));
        assert_true(pt_num(j, "ratio") <= pt_num(j, "ratio_max"));
        json_object_put(j);
        n++;
    }
    assert_int_equal(n, AM_ARRAY_SIZE(ops));
    free(log);
}

static void a_tiny_run_reports_every_operation_against_libcrypto(void **state)
{
    tiny_run(*state, "engine");
}

/* The same through a VF of the device model: every job's CQE came back with
 * etype 0 (the benchmark fails otherwise). */
static void a_tiny_run_through_the_device_reports_every_operation(void **state)
{
    tiny_run(*state, "device");
}

static void bad_options_are_refused_before_anything_is_measured(void **state)
{
    struct pt *t = *state;
    static const struct pt_refusal bad[] = {
        {"--op", "rsa9999", "bad value 'rsa9999' for --op"},
        {"--rounds", "0", "bad value '0' for --rounds"},
        {"--jobs", "x", "bad value 'x' for --jobs"},
        {"--load", "65", "accmig bench engine: bad value '65' for --load"},
        {"--size", "4096", "unknown or incomplete option '--size'"},
        {"--path", "qemu", "bad value 'qemu' for --path"},
    };

    static const char *const args[] = {"bench", "engine", "--engine", "hpre", NULL};

    pt_expect_refusals(t, args, bad, AM_ARRAY_SIZE(bad));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_tiny_run_reports_every_operation_against_libcrypto,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_tiny_run_through_the_device_reports_every_operation,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(bad_options_are_refused_before_anything_is_measured,
                                        setup, teardown),
    };

    if (argc < 2)
        return 2;
    g_exe = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
