/* The migration orchestrator (vmm/migrate_core.h) over a recording ops
 * table: the order of the steps, precopy rounds over the dirty union, the
 * RAM steps skipped for shared RAM, rollback once on a failure and never
 * for a handover in doubt, refusals of an incomplete table. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/migrate_core.h"

#define PAGES 128u

/* A fake transport: logs each call as one letter, dirties pages on
 * collect as a script says, fails one op when asked. */
struct fake {
    char trace[256];
    size_t n;
    uint64_t map[PAGES / 64];
    uint64_t dirty_per_collect[8]; /* pages set by collect k (0-based) */
    unsigned collects, rounds_sent, last_rounds;
    uint64_t sent_pages;
    uint64_t stop_below; /* precopy_done when dirty <= this */
    char fail_op;        /* letter of the op to fail, 0 none */
    int fail_err;
    int fail_step;       /* step_done of core step fail_step - 1 fails, 0 none */
    unsigned rollbacks;
    int rollback_err;
};

static void rec(struct fake *f, char c)
{
    if (f->n + 1 < sizeof(f->trace))
        f->trace[f->n++] = c;
    f->trace[f->n] = '\0';
}

static int maybe_fail(struct fake *f, char c)
{
    rec(f, c);
    return f->fail_op == c ? f->fail_err : 0;
}

static unsigned popcount_map(const uint64_t *map)
{
    unsigned n = 0;

    for (unsigned i = 0; i < PAGES / 64; i++)
        n += (unsigned)__builtin_popcountll(map[i]);
    return n;
}

static int op_open(void *o) { return maybe_fail(o, 'o'); }
static int op_log_start(void *o) { return maybe_fail(o, 'l'); }

static int op_send(void *o, uint64_t *map, unsigned round, bool last)
{
    struct fake *f = o;

    assert_ptr_equal(map, f->map);
    if (!last) {
        assert_int_equal(round, f->rounds_sent);
        f->rounds_sent++;
        f->sent_pages += round == 0 ? PAGES : popcount_map(map);
    } else {
        f->last_rounds++;
        f->sent_pages += popcount_map(map);
    }
    memset(map, 0, sizeof(f->map));
    return maybe_fail(f, last ? 'S' : 's');
}

static int op_collect(void *o, uint64_t *map, bool last)
{
    struct fake *f = o;
    uint64_t k = f->collects < 8 ? f->dirty_per_collect[f->collects] : 0;

    f->collects++;
    for (uint64_t p = 0; p < k && p < PAGES; p++)
        map[p / 64] |= UINT64_C(1) << (p % 64);
    return maybe_fail(f, last ? 'C' : 'c');
}

static bool op_precopy_done(void *o, unsigned rounds, uint64_t dirty)
{
    struct fake *f = o;

    assert_int_equal(rounds, f->rounds_sent);
    assert_int_equal(dirty, popcount_map(f->map));
    return dirty <= f->stop_below || rounds >= 8;
}

static int op_pause(void *o) { return maybe_fail(o, 'p'); }
static int op_stop(void *o) { return maybe_fail(o, 't'); }
static int op_state(void *o) { return maybe_fail(o, 'd'); }
static int op_handover(void *o) { return maybe_fail(o, 'h'); }

static int op_step_done(void *o, enum mig_core_step step)
{
    struct fake *f = o;

    return f->fail_step == (int)step + 1 ? -ECANCELED : 0;
}

static void op_rollback(void *o, int err)
{
    struct fake *f = o;

    f->rollbacks++;
    f->rollback_err = err;
    rec(f, 'R');
}

static const struct mig_core_ops ops = {
    .open = op_open, .log_start = op_log_start, .send_pages = op_send, .collect = op_collect,
    .precopy_done = op_precopy_done, .pause = op_pause, .stop_device = op_stop,
    .device_state = op_state, .handover = op_handover, .step_done = op_step_done,
    .rollback = op_rollback,
};

static int run(struct fake *f, bool ram)
{
    struct mig_core c = {.ops = &ops, .opaque = f, .ram = ram, .map = f->map, .pages = PAGES};

    return mig_core_run(&c);
}

static void test_the_steps_run_in_order_and_precopy_rounds_over_the_union(void **state)
{
    struct fake f = {.dirty_per_collect = {40, 20, 5, 9}, .stop_below = 8};

    (void)state;
    assert_int_equal(run(&f, true), 0);
    /* rounds 0..2 (every page, 40, 20); 5 left go with the vCPUs stopped,
     * with the 9 the last collect adds (the same low pages: 9 in all). */
    assert_string_equal(f.trace, "olscscscptCSdh");
    assert_int_equal(f.rounds_sent, 3);
    assert_int_equal(f.last_rounds, 1);
    assert_int_equal(f.sent_pages, PAGES + 40 + 20 + 9);
    assert_int_equal(f.rollbacks, 0);
}

static void test_shared_ram_skips_the_logs_and_the_rounds(void **state)
{
    struct fake f = {0};
    struct mig_core c = {.ops = &ops, .opaque = &f, .ram = false, .map = NULL, .pages = 0};

    (void)state;
    assert_int_equal(mig_core_run(&c), 0);
    assert_string_equal(f.trace, "optdh");
    assert_int_equal(f.collects, 0);
}

static void test_a_failing_op_rolls_back_once_with_its_errno(void **state)
{
    static const char ops_to_fail[] = "olscptCSdh";

    (void)state;
    for (const char *p = ops_to_fail; *p; p++) {
        struct fake f = {.dirty_per_collect = {3}, .stop_below = 8, .fail_op = *p,
                         .fail_err = -EIO};
        size_t len;

        assert_int_equal(run(&f, true), -EIO);
        assert_int_equal(f.rollbacks, 1);
        assert_int_equal(f.rollback_err, -EIO);
        len = strlen(f.trace);
        /* nothing after the failing op but the rollback */
        assert_true(len >= 2);
        assert_int_equal(f.trace[len - 1], 'R');
        assert_int_equal(f.trace[len - 2], *p);
        assert_ptr_equal(strchr(f.trace, *p), &f.trace[len - 2]);
    }
}

static void test_a_step_done_failure_stops_after_that_step(void **state)
{
    struct fake f = {.dirty_per_collect = {3}, .stop_below = 8, .fail_step = MIG_CORE_PAUSE + 1};

    (void)state;
    assert_int_equal(run(&f, true), -ECANCELED);
    assert_string_equal(f.trace, "olscpR");
    assert_int_equal(f.rollback_err, -ECANCELED);
}

static void test_a_handover_in_doubt_is_never_rolled_back(void **state)
{
    struct fake f = {.stop_below = 8, .fail_op = 'h', .fail_err = -EINPROGRESS};

    (void)state;
    assert_int_equal(run(&f, true), -EINPROGRESS);
    assert_int_equal(f.rollbacks, 0);
    assert_int_equal(f.trace[strlen(f.trace) - 1], 'h');
}

static void test_an_incomplete_table_is_refused_before_any_step(void **state)
{
    struct mig_core_ops bad = ops;
    struct fake f = {0};
    struct mig_core c = {.ops = &bad, .opaque = &f, .ram = true, .map = f.map, .pages = PAGES};

    (void)state;
    assert_int_equal(mig_core_run(NULL), -EINVAL);
    bad.rollback = NULL;
    assert_int_equal(mig_core_run(&c), -EINVAL);
    bad = ops;
    bad.collect = NULL;
    assert_int_equal(mig_core_run(&c), -EINVAL);
    c.ram = false; /* the RAM ops are not needed then */
    assert_int_equal(mig_core_run(&c), 0);
    bad = ops;
    c.ram = true;
    c.map = NULL;
    f.n = 0;
    assert_int_equal(mig_core_run(&c), -EINVAL);
    assert_int_equal(f.rollbacks, 0);
    assert_string_equal(mig_core_step_name(MIG_CORE_PRECOPY), "precopy");
    assert_string_equal(mig_core_step_name(MIG_CORE_STEP_COUNT), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_steps_run_in_order_and_precopy_rounds_over_the_union),
        cmocka_unit_test(test_shared_ram_skips_the_logs_and_the_rounds),
        cmocka_unit_test(test_a_failing_op_rolls_back_once_with_its_errno),
        cmocka_unit_test(test_a_step_done_failure_stops_after_that_step),
        cmocka_unit_test(test_a_handover_in_doubt_is_never_rolled_back),
        cmocka_unit_test(test_an_incomplete_table_is_refused_before_any_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
