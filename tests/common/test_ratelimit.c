/* Tests of src/common/ratelimit: bursts, windows, the suppressed count, and
 * many threads, all on an injected clock (no sleeping, no timing). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/ratelimit.h"

struct fake_clock {
    uint64_t now; /* atomic */
};

static uint64_t fake_now(void *opaque)
{
    return __atomic_load_n(&((struct fake_clock *)opaque)->now, __ATOMIC_RELAXED);
}

static void test_init_refuses_a_zero_burst_or_interval(void **state)
{
    struct am_ratelimit rl;

    (void)state;
    assert_int_equal(am_ratelimit_init(&rl, 0, 1000, NULL, NULL), -EINVAL);
    assert_int_equal(am_ratelimit_init(&rl, 1, 0, NULL, NULL), -EINVAL);
    assert_int_equal(am_ratelimit_init(&rl, 1, 1000, NULL, NULL), 0);
    assert_true(am_ratelimit_allow(&rl, NULL)); /* the real clock works too */
    am_ratelimit_destroy(&rl);
}

static void test_a_burst_passes_then_lines_are_refused_until_the_window_ends(void **state)
{
    struct fake_clock c = { .now = 5000 };
    struct am_ratelimit rl;
    uint64_t n = 99;

    (void)state;
    assert_int_equal(am_ratelimit_init(&rl, 3, 1000, fake_now, &c), 0);
    for (int i = 0; i < 3; i++) {
        assert_true(am_ratelimit_allow(&rl, &n));
        assert_int_equal(n, 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_false(am_ratelimit_allow(&rl, &n));
        assert_int_equal(n, 0);
    }
    c.now = 5999; /* still the window that began at the first call */
    assert_false(am_ratelimit_allow(&rl, NULL));
    c.now = 6000;
    assert_true(am_ratelimit_allow(&rl, &n));
    assert_int_equal(n, 5); /* reported once, by the first line let through */
    assert_true(am_ratelimit_allow(&rl, &n));
    assert_int_equal(n, 0);
    am_ratelimit_destroy(&rl);
}

static void test_the_window_starts_at_the_first_call_not_at_init(void **state)
{
    struct fake_clock c = { .now = 0 };
    struct am_ratelimit rl;

    (void)state;
    assert_int_equal(am_ratelimit_init(&rl, 1, 1000, fake_now, &c), 0);
    c.now = 10500;
    assert_true(am_ratelimit_allow(&rl, NULL));
    c.now = 11000; /* 500 after the first call: same window */
    assert_false(am_ratelimit_allow(&rl, NULL));
    c.now = 11500;
    assert_true(am_ratelimit_allow(&rl, NULL));
    am_ratelimit_destroy(&rl);
}

static void test_a_clock_stepping_back_keeps_the_current_window(void **state)
{
    struct fake_clock c = { .now = 10000 };
    struct am_ratelimit rl;

    (void)state;
    assert_int_equal(am_ratelimit_init(&rl, 1, 1000, fake_now, &c), 0);
    assert_true(am_ratelimit_allow(&rl, NULL));
    c.now = 2000;
    assert_false(am_ratelimit_allow(&rl, NULL));
    c.now = 11000;
    assert_true(am_ratelimit_allow(&rl, NULL));
    am_ratelimit_destroy(&rl);
}

struct caller {
    struct am_ratelimit *rl;
    unsigned allowed;
    uint64_t suppressed_seen;
};

#define CALLS_PER_THREAD 5000

static void *caller_main(void *arg)
{
    struct caller *t = arg;
    uint64_t n;

    for (int i = 0; i < CALLS_PER_THREAD; i++) {
        if (am_ratelimit_allow(t->rl, &n))
            t->allowed++;
        t->suppressed_seen += n;
    }
    return NULL;
}

static void test_many_threads_share_one_burst_and_lose_no_suppressed_count(void **state)
{
    struct fake_clock c = { .now = 1 };
    struct am_ratelimit rl;
    struct caller t[4];
    pthread_t th[4];
    unsigned allowed = 0;
    uint64_t seen = 0, n;

    (void)state;
    assert_int_equal(am_ratelimit_init(&rl, 10, 1000, fake_now, &c), 0);
    for (int i = 0; i < 4; i++) {
        t[i] = (struct caller){ .rl = &rl };
        assert_int_equal(pthread_create(&th[i], NULL, caller_main, &t[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        allowed += t[i].allowed;
        seen += t[i].suppressed_seen;
    }
    /* The clock never moved: one window, one burst, everything else counted. */
    assert_int_equal(allowed, 10);
    c.now = 1001;
    assert_true(am_ratelimit_allow(&rl, &n));
    assert_int_equal(seen + n, 4 * CALLS_PER_THREAD - 10);
    am_ratelimit_destroy(&rl);
}

/* Runs fn with stderr sent to a temporary file and returns what it wrote. */
static char *stderr_of(void (*fn)(struct am_ratelimit *), struct am_ratelimit *rl)
{
    static char out[4096];
    FILE *tmp = tmpfile();
    int saved = dup(STDERR_FILENO);
    size_t n;

    assert_non_null(tmp);
    assert_true(saved >= 0);
    fflush(stderr);
    assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
    fn(rl);
    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    rewind(tmp);
    n = fread(out, 1, sizeof(out) - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
    return out;
}

static void five_guest_lines(struct am_ratelimit *rl)
{
    for (int i = 0; i < 5; i++)
        am_log_limited(rl, AM_LOG_GUEST, "test", "guest line %d", i);
}

static void test_log_limited_prints_the_burst_then_a_summary_with_the_next_line(void **state)
{
    struct fake_clock c = { .now = 100 };
    struct am_ratelimit rl;
    char *out;

    (void)state;
    assert_int_equal(am_ratelimit_init(&rl, 2, 1000, fake_now, &c), 0);
    /* Below the threshold: nothing printed and nothing consumed. */
    assert_int_equal(setenv("ACCMIG_LOG", "err", 1), 0);
    out = stderr_of(five_guest_lines, &rl);
    assert_string_equal(out, "");
    assert_int_equal(setenv("ACCMIG_LOG", "guest", 1), 0);
    out = stderr_of(five_guest_lines, &rl);
    assert_non_null(strstr(out, "guest line 0\n"));
    assert_non_null(strstr(out, "guest line 1\n"));
    assert_null(strstr(out, "guest line 2"));
    assert_null(strstr(out, "suppressed"));
    c.now = 1100;
    out = stderr_of(five_guest_lines, &rl);
    assert_non_null(strstr(out, "guest line 0 (3 similar lines suppressed)\n"));
    assert_non_null(strstr(out, "guest line 1\n"));
    assert_null(strstr(out, "guest line 2"));
    unsetenv("ACCMIG_LOG");
    am_ratelimit_destroy(&rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_refuses_a_zero_burst_or_interval),
        cmocka_unit_test(test_a_burst_passes_then_lines_are_refused_until_the_window_ends),
        cmocka_unit_test(test_the_window_starts_at_the_first_call_not_at_init),
        cmocka_unit_test(test_a_clock_stepping_back_keeps_the_current_window),
        cmocka_unit_test(test_many_threads_share_one_burst_and_lose_no_suppressed_count),
        cmocka_unit_test(test_log_limited_prints_the_burst_then_a_summary_with_the_next_line),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
