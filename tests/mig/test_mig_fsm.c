/* The combined-transition algorithm against an independent transcription of
 * the kernel's table (spec/vfio-migration.md), for all 8x8 pairs and every
 * flag subset. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mig/mig.h"

/* The spec's table, written as text: row = from, column = target, in the
 * order ERROR STOP RUN SC RES RP2P PC PCP2P; 'E' = ERROR. */
static const char *const ref_rows[VFIO_MIG_STATE_COUNT] = {
    /*          E  S  R  C  M  P  p  q */
    [0] = "E E E E E E E E",
    [1] = "E S P C M P P P", /* STOP */
    [2] = "E P R P P P p P", /* RUNNING */
    [3] = "E S S C S S E E", /* STOP_COPY */
    [4] = "E S S S M S S S", /* RESUMING */
    [5] = "E S R S S P R q", /* RUNNING_P2P */
    [6] = "E R R q R R p q", /* PRE_COPY */
    [7] = "E P P C P P p q", /* PRE_COPY_P2P */
};

static enum vfio_mig_state ref_letter(char c)
{
    switch (c) {
    case 'S': return VFIO_MIG_STATE_STOP;
    case 'R': return VFIO_MIG_STATE_RUNNING;
    case 'C': return VFIO_MIG_STATE_STOP_COPY;
    case 'M': return VFIO_MIG_STATE_RESUMING;
    case 'P': return VFIO_MIG_STATE_RUNNING_P2P;
    case 'p': return VFIO_MIG_STATE_PRE_COPY;
    case 'q': return VFIO_MIG_STATE_PRE_COPY_P2P;
    default: return VFIO_MIG_STATE_ERROR;
    }
}

static enum vfio_mig_state ref_table(unsigned from, unsigned to)
{
    return ref_letter(ref_rows[from][2 * to]);
}

static int ref_supported(uint32_t flags, unsigned s)
{
    switch (s) {
    case VFIO_MIG_STATE_ERROR: return 0;
    case VFIO_MIG_STATE_RUNNING_P2P: return (flags & VFIO_MIG_FLAG_P2P) != 0;
    case VFIO_MIG_STATE_PRE_COPY: return (flags & VFIO_MIG_FLAG_PRE_COPY) != 0;
    case VFIO_MIG_STATE_PRE_COPY_P2P:
        return (flags & VFIO_MIG_FLAG_P2P) && (flags & VFIO_MIG_FLAG_PRE_COPY);
    default: return 1;
    }
}

/* Reference next step: -1 when unreachable. */
static int ref_next(uint32_t flags, unsigned cur, unsigned target)
{
    unsigned s;

    if (!(flags & VFIO_MIG_FLAG_STOP_COPY) || !ref_supported(flags, cur) ||
        !ref_supported(flags, target))
        return -1;
    s = ref_table(cur, target);
    for (int guard = 0; guard < 16 && s != VFIO_MIG_STATE_ERROR && !ref_supported(flags, s);
         guard++)
        s = ref_table(s, target);
    return s == VFIO_MIG_STATE_ERROR || !ref_supported(flags, s) ? -1 : (int)s;
}

static const uint32_t optional_flags[] = {
    0,
    VFIO_MIG_FLAG_P2P,
    VFIO_MIG_FLAG_PRE_COPY,
    VFIO_MIG_FLAG_P2P | VFIO_MIG_FLAG_PRE_COPY,
};

/* Walks cur -> target with mig_fsm_next_step; returns the number of steps
 * (path[] gets the states after the start), or -1 when refused. */
static int walk(uint32_t flags, unsigned cur, unsigned target, enum vfio_mig_state *path)
{
    enum vfio_mig_state next;
    int n = 0;

    while (cur != target) {
        if (mig_fsm_next_step(flags, (enum vfio_mig_state)cur, (enum vfio_mig_state)target,
                              &next) != 0)
            return -1;
        assert_true(n < VFIO_MIG_STATE_COUNT); /* terminates */
        path[n++] = next;
        cur = next;
    }
    return n;
}

static void test_every_pair_and_flag_subset_matches_the_transcribed_table(void **state)
{
    (void)state;
    for (size_t f = 0; f < 4; f++) {
        uint32_t flags = VFIO_MIG_FLAG_STOP_COPY | optional_flags[f];

        for (unsigned cur = 0; cur < VFIO_MIG_STATE_COUNT; cur++) {
            for (unsigned target = 0; target < VFIO_MIG_STATE_COUNT; target++) {
                enum vfio_mig_state next = VFIO_MIG_STATE_ERROR;
                int want = ref_next(flags, cur, target);
                int rc = mig_fsm_next_step(flags, cur, target, &next);

                if (want < 0) {
                    assert_int_equal(rc, -EINVAL);
                } else {
                    assert_int_equal(rc, 0);
                    assert_int_equal(next, want);
                    assert_true(ref_supported(flags, next));
                }
            }
        }
    }
}

static void test_every_path_terminates_through_supported_states_only(void **state)
{
    (void)state;
    for (size_t f = 0; f < 4; f++) {
        uint32_t flags = VFIO_MIG_FLAG_STOP_COPY | optional_flags[f];

        for (unsigned cur = 1; cur < VFIO_MIG_STATE_COUNT; cur++) {
            if (!ref_supported(flags, cur))
                continue;
            for (unsigned target = 1; target < VFIO_MIG_STATE_COUNT; target++) {
                enum vfio_mig_state path[VFIO_MIG_STATE_COUNT];
                int n = walk(flags, cur, target, path);
                int sc_to_pc = cur == VFIO_MIG_STATE_STOP_COPY &&
                               (target == VFIO_MIG_STATE_PRE_COPY ||
                                target == VFIO_MIG_STATE_PRE_COPY_P2P);

                if (!ref_supported(flags, target) || sc_to_pc) {
                    assert_int_equal(n, -1);
                    continue;
                }
                assert_true(n >= 0 && n <= 5);
                for (int i = 0; i < n; i++)
                    assert_true(ref_supported(flags, path[i]));
            }
        }
    }
}

static void check_path(uint32_t flags, enum vfio_mig_state from, enum vfio_mig_state to,
                       const enum vfio_mig_state *want, int nwant)
{
    enum vfio_mig_state path[VFIO_MIG_STATE_COUNT];
    int n = walk(flags, from, to, path);

    assert_int_equal(n, nwant);
    for (int i = 0; i < n; i++)
        assert_int_equal(path[i], want[i]);
}

static void test_spec_examples_take_the_documented_paths(void **state)
{
    const uint32_t all = VFIO_MIG_FLAGS_ALL, sc = VFIO_MIG_FLAG_STOP_COPY;
    (void)state;
    check_path(all, VFIO_MIG_STATE_RUNNING, VFIO_MIG_STATE_STOP_COPY,
               (enum vfio_mig_state[]){VFIO_MIG_STATE_RUNNING_P2P, VFIO_MIG_STATE_STOP,
                                       VFIO_MIG_STATE_STOP_COPY},
               3);
    check_path(all, VFIO_MIG_STATE_PRE_COPY, VFIO_MIG_STATE_STOP,
               (enum vfio_mig_state[]){VFIO_MIG_STATE_RUNNING, VFIO_MIG_STATE_RUNNING_P2P,
                                       VFIO_MIG_STATE_STOP},
               3);
    check_path(all, VFIO_MIG_STATE_RESUMING, VFIO_MIG_STATE_PRE_COPY,
               (enum vfio_mig_state[]){VFIO_MIG_STATE_STOP, VFIO_MIG_STATE_RUNNING_P2P,
                                       VFIO_MIG_STATE_RUNNING, VFIO_MIG_STATE_PRE_COPY},
               4);
    check_path(sc, VFIO_MIG_STATE_RUNNING, VFIO_MIG_STATE_STOP,
               (enum vfio_mig_state[]){VFIO_MIG_STATE_STOP}, 1);
    check_path(sc, VFIO_MIG_STATE_RUNNING, VFIO_MIG_STATE_STOP_COPY,
               (enum vfio_mig_state[]){VFIO_MIG_STATE_STOP, VFIO_MIG_STATE_STOP_COPY}, 2);
    check_path(all, VFIO_MIG_STATE_PRE_COPY_P2P, VFIO_MIG_STATE_STOP_COPY,
               (enum vfio_mig_state[]){VFIO_MIG_STATE_STOP_COPY}, 1);
}

static void test_stop_copy_to_pre_copy_is_refused_instead_of_spinning(void **state)
{
    enum vfio_mig_state next = VFIO_MIG_STATE_STOP;
    (void)state;
    for (size_t f = 0; f < 4; f++) {
        uint32_t flags = VFIO_MIG_FLAG_STOP_COPY | optional_flags[f];

        assert_int_equal(mig_fsm_next_step(flags, VFIO_MIG_STATE_STOP_COPY,
                                           VFIO_MIG_STATE_PRE_COPY, &next),
                         -EINVAL);
        assert_int_equal(mig_fsm_next_step(flags, VFIO_MIG_STATE_STOP_COPY,
                                           VFIO_MIG_STATE_PRE_COPY_P2P, &next),
                         -EINVAL);
    }
    assert_int_equal(next, VFIO_MIG_STATE_STOP); /* untouched on failure */
}

static void test_error_state_unknown_states_and_bad_flags_are_refused(void **state)
{
    enum vfio_mig_state next;
    (void)state;
    for (unsigned s = 0; s < VFIO_MIG_STATE_COUNT; s++) {
        assert_int_equal(mig_fsm_next_step(VFIO_MIG_FLAGS_ALL, s, VFIO_MIG_STATE_ERROR, &next),
                         -EINVAL);
        assert_int_equal(mig_fsm_next_step(VFIO_MIG_FLAGS_ALL, VFIO_MIG_STATE_ERROR, s, &next),
                         -EINVAL);
        assert_int_equal(mig_fsm_next_step(VFIO_MIG_FLAGS_ALL, s, (enum vfio_mig_state)8, &next),
                         -EINVAL);
        assert_int_equal(mig_fsm_next_step(VFIO_MIG_FLAGS_ALL, (enum vfio_mig_state)99, s, &next),
                         -EINVAL);
        /* STOP_COPY is mandatory; unknown flag bits are refused. */
        for (size_t f = 0; f < 4; f++)
            assert_int_equal(mig_fsm_next_step(optional_flags[f], VFIO_MIG_STATE_RUNNING, s,
                                               &next),
                             -EINVAL);
        assert_int_equal(mig_fsm_next_step(VFIO_MIG_FLAGS_ALL | 8u, VFIO_MIG_STATE_RUNNING, s,
                                           &next),
                         -EINVAL);
    }
}

/* The arcs used with every flag are exactly the spec's list: the driver's
 * step function implements these and nothing else. */
static void test_arcs_used_with_all_flags_are_exactly_the_specified_ones(void **state)
{
    static const struct {
        enum vfio_mig_state from, to;
    } spec_arcs[] = {
        {VFIO_MIG_STATE_RUNNING, VFIO_MIG_STATE_RUNNING_P2P},
        {VFIO_MIG_STATE_STOP, VFIO_MIG_STATE_RUNNING_P2P},
        {VFIO_MIG_STATE_PRE_COPY_P2P, VFIO_MIG_STATE_RUNNING_P2P},
        {VFIO_MIG_STATE_RUNNING_P2P, VFIO_MIG_STATE_STOP},
        {VFIO_MIG_STATE_STOP_COPY, VFIO_MIG_STATE_STOP},
        {VFIO_MIG_STATE_RESUMING, VFIO_MIG_STATE_STOP},
        {VFIO_MIG_STATE_RUNNING_P2P, VFIO_MIG_STATE_RUNNING},
        {VFIO_MIG_STATE_PRE_COPY, VFIO_MIG_STATE_RUNNING},
        {VFIO_MIG_STATE_RUNNING, VFIO_MIG_STATE_PRE_COPY},
        {VFIO_MIG_STATE_RUNNING_P2P, VFIO_MIG_STATE_PRE_COPY_P2P},
        {VFIO_MIG_STATE_STOP, VFIO_MIG_STATE_STOP_COPY},
        {VFIO_MIG_STATE_PRE_COPY, VFIO_MIG_STATE_PRE_COPY_P2P},
        {VFIO_MIG_STATE_PRE_COPY_P2P, VFIO_MIG_STATE_PRE_COPY},
        {VFIO_MIG_STATE_PRE_COPY_P2P, VFIO_MIG_STATE_STOP_COPY},
        {VFIO_MIG_STATE_STOP, VFIO_MIG_STATE_RESUMING},
    };
    int used[VFIO_MIG_STATE_COUNT][VFIO_MIG_STATE_COUNT] = {{0}};
    (void)state;

    for (unsigned cur = 1; cur < VFIO_MIG_STATE_COUNT; cur++)
        for (unsigned target = 1; target < VFIO_MIG_STATE_COUNT; target++) {
            enum vfio_mig_state next;

            if (cur != target &&
                mig_fsm_next_step(VFIO_MIG_FLAGS_ALL, cur, target, &next) == 0)
                used[cur][next] = 1;
        }
    for (size_t i = 0; i < sizeof(spec_arcs) / sizeof(spec_arcs[0]); i++) {
        assert_true(used[spec_arcs[i].from][spec_arcs[i].to]);
        used[spec_arcs[i].from][spec_arcs[i].to] = 0;
    }
    for (unsigned a = 0; a < VFIO_MIG_STATE_COUNT; a++)
        for (unsigned b = 0; b < VFIO_MIG_STATE_COUNT; b++)
            assert_int_equal(used[a][b], 0);
}

static void test_state_names_cover_every_state_and_flag_invalid_values(void **state)
{
    (void)state;
    assert_string_equal(mig_state_name(VFIO_MIG_STATE_PRE_COPY_P2P), "PRE_COPY_P2P");
    assert_string_equal(mig_state_name(VFIO_MIG_STATE_ERROR), "ERROR");
    assert_string_equal(mig_state_name((enum vfio_mig_state)42), "INVALID");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_pair_and_flag_subset_matches_the_transcribed_table),
        cmocka_unit_test(test_every_path_terminates_through_supported_states_only),
        cmocka_unit_test(test_spec_examples_take_the_documented_paths),
        cmocka_unit_test(test_stop_copy_to_pre_copy_is_refused_instead_of_spinning),
        cmocka_unit_test(test_error_state_unknown_states_and_bad_flags_are_refused),
        cmocka_unit_test(test_arcs_used_with_all_flags_are_exactly_the_specified_ones),
        cmocka_unit_test(test_state_names_cover_every_state_and_flag_invalid_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
