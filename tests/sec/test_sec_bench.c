/* `accmig bench engine --engine sec` as a user runs it: a tiny run prints
 * one JSON object per size with both sides measured, the ratios ordered and
 * every byte of the ciphertext accounted for (the bench itself fails when
 * the VF's ciphertext differs from libcrypto's); bad options are refused
 * with exit status 2 and a message, before anything is measured. argv[1] is
 * the accmig binary. No timing thresholds: the runs are far too short. */
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

static void run_sizes(struct pt *t, const char *name, const char *mode_opt, const char *mode)
{
    static const int64_t sizes[] = {4096, 65536, 1048576};
    const char *args[] = {"bench", "engine", "--engine", "sec", "--jobs", "6", "--rounds", "3",
                          "--load", "1", "--json", mode_opt, NULL};
    char *log, *line, *save = NULL;
    unsigned n = 0;
    int st = pt_run_once(t, name, args, PT_EXIT_MS * 4);

    log = pt_log_read(t, name);
    if (st != 0)
        fail_msg("exit %d:\n%s", st, log);
    for (line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_object *j;

        if (line[0] != '{')
            continue;
        j = json_tokener_parse(line);
        if (!j)
            fail_msg("not JSON: %s", line);
        assert_true(n < AM_ARRAY_SIZE(sizes));
        assert_string_equal(pt_str(j, "bench"), "engine");
        assert_string_equal(pt_str(j, "engine"), "sec");
        assert_string_equal(pt_str(j, "alg"), "cbc(aes)-128");
        assert_string_equal(pt_str(j, "raw"), "libcrypto");
        assert_string_equal(pt_str(j, "mode"), mode);
        assert_int_equal(pt_int(j, "size"), sizes[n]);
        assert_int_equal(pt_int(j, "jobs"), 6);
        assert_int_equal(pt_int(j, "rounds"), 3);
        assert_int_equal(pt_int(j, "load_threads"), 1);
        /* CBC without padding: as many bytes out as in, on both sides. */
        assert_int_equal(pt_int(j, "raw_out_bytes"), sizes[n]);
        assert_int_equal(pt_int(j, "engine_out_bytes"), sizes[n]);
        assert_true(pt_num(j, "raw_mb_s") > 0);
        assert_true(pt_num(j, "engine_mb_s") > 0);
        assert_true(pt_num(j, "cpu_ratio") > 0);
        assert_true(pt_num(j, "ratio_min") <= pt_num(j, "ratio"));
        assert_true(pt_num(j, "ratio") <= pt_num(j, "ratio_max"));
        json_object_put(j);
        n++;
    }
    assert_int_equal(n, AM_ARRAY_SIZE(sizes));
    free(log);
}

static void a_tiny_run_reports_every_size_against_libcrypto(void **state)
{
    run_sizes(*state, "irq", NULL, "irq");
}

static void a_polling_run_reports_every_size_too(void **state)
{
    run_sizes(*state, "poll", "--poll", "poll");
}

static void bad_options_are_refused_before_anything_is_measured(void **state)
{
    struct pt *t = *state;
    static const struct pt_refusal bad[] = {
        {"--engine", "rng", "bad value 'rng' for --engine"},
        {"--size", "4097", "wants a size that is a multiple of 16"},
        {"--size", "0", "bad value '0' for --size"},
        {"--depth", "0", "bad value '0' for --depth"},
        {"--rounds", "0", "bad value '0' for --rounds"},
        {"--load", "65", "bad value '65' for --load"},
    };

    static const char *const args[] = {"bench", "engine", "--engine", "sec", NULL};

    pt_expect_refusals(t, args, bad, AM_ARRAY_SIZE(bad));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_tiny_run_reports_every_size_against_libcrypto, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_polling_run_reports_every_size_too, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_options_are_refused_before_anything_is_measured,
                                        setup, teardown),
    };

    if (argc < 2)
        return 2;
    g_exe = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
