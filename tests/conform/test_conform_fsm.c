/* tests/conform: conform's path rules (written from the uAPI text) and
 * mig/fsm.c (the kernel's table) are two independent implementations of
 * vfio_mig_get_next_state: they must agree on every (from, to) pair for
 * every flag set, including the refusals. A walk then checks that the
 * rules always reach the target and never pass through the saving group
 * in the middle of a path, as the uAPI demands. */
#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "conform/conform.h"
#include "mig/mig.h"

static bool saving(unsigned s)
{
    return s == CF_ST_PRE_COPY || s == CF_ST_PRE_COPY_P2P || s == CF_ST_STOP_COPY;
}

static void test_numbers_are_the_uapi_ones(void **state)
{
    (void)state;
    assert_int_equal(CF_ST_STOP, VFIO_MIG_STATE_STOP);
    assert_int_equal(CF_ST_RUNNING, VFIO_MIG_STATE_RUNNING);
    assert_int_equal(CF_ST_STOP_COPY, VFIO_MIG_STATE_STOP_COPY);
    assert_int_equal(CF_ST_RESUMING, VFIO_MIG_STATE_RESUMING);
    assert_int_equal(CF_ST_RUNNING_P2P, VFIO_MIG_STATE_RUNNING_P2P);
    assert_int_equal(CF_ST_PRE_COPY, VFIO_MIG_STATE_PRE_COPY);
    assert_int_equal(CF_ST_PRE_COPY_P2P, VFIO_MIG_STATE_PRE_COPY_P2P);
    assert_int_equal(CF_MIG_STOP_COPY, VFIO_MIG_FLAG_STOP_COPY);
    assert_int_equal(CF_MIG_P2P, VFIO_MIG_FLAG_P2P);
    assert_int_equal(CF_MIG_PRE_COPY, VFIO_MIG_FLAG_PRE_COPY);
}

/* 64 pairs x 16 flag values (the 8 subsets of the three flags, and 8
 * with an unknown bit): same answer, same next step. */
static void test_both_implementations_agree_on_every_pair_and_flag_set(void **state)
{
    unsigned compared = 0, legal = 0;
    (void)state;

    for (uint32_t flags = 0; flags < 16; flags++) {
        for (unsigned cur = 0; cur < CF_ST_COUNT; cur++) {
            for (unsigned to = 0; to < CF_ST_COUNT; to++) {
                enum vfio_mig_state kn = VFIO_MIG_STATE_ERROR;
                unsigned cn = 99;
                uint32_t f = flags & 8 ? (flags & 7) | (1u << 5) : flags;
                int kr = mig_fsm_next_step(f, (enum vfio_mig_state)cur, (enum vfio_mig_state)to, &kn);
                int cr = conform_fsm_next_step(f, cur, to, &cn);
                if (kr != cr || (kr == 0 && (unsigned)kn != cn))
                    fail_msg("flags 0x%x %s -> %s: mig/fsm %d (%s), conform %d (%s)", f,
                             conform_state_name(cur), conform_state_name(to), kr,
                             kr ? "-" : conform_state_name(kn), cr,
                             cr ? "-" : conform_state_name(cn));
                compared++;
                legal += cr == 0;
            }
        }
    }
    assert_int_equal(compared, 16 * 64);
    /* With all flags, 7 states and STOP_COPY -> PRE_COPY* refused: 49 - 2. */
    assert_true(legal > 47);
}

/* Every legal pair reaches its target within 8 steps, each step a
 * supported state, no saving-group state inside a path that does not
 * start and end in it, and STOP_COPY -> PRE_COPY* is refused. */
static void test_paths_reach_the_target_and_respect_the_saving_group(void **state)
{
    (void)state;
    for (uint32_t flags = 1; flags < 8; flags += 2) {
        for (unsigned cur = 1; cur < CF_ST_COUNT; cur++) {
            for (unsigned to = 1; to < CF_ST_COUNT; to++) {
                unsigned s = cur, steps = 0, next;
                if (!conform_fsm_state_supported(flags, cur) ||
                    !conform_fsm_state_supported(flags, to))
                    continue;
                if (cur == CF_ST_STOP_COPY && (to == CF_ST_PRE_COPY || to == CF_ST_PRE_COPY_P2P)) {
                    assert_int_equal(conform_fsm_next_step(flags, cur, to, &next), -EINVAL);
                    continue;
                }
                while (s != to) {
                    assert_int_equal(conform_fsm_next_step(flags, s, to, &next), 0);
                    assert_true(conform_fsm_state_supported(flags, next));
                    if (next != to && !(saving(cur) && saving(to)))
                        assert_false(saving(next));
                    s = next;
                    assert_true(++steps <= 8);
                }
            }
        }
    }
}

static void test_the_documented_examples(void **state)
{
    const uint32_t all = CF_MIG_STOP_COPY | CF_MIG_P2P | CF_MIG_PRE_COPY;
    unsigned n;
    (void)state;
    /* docs: RUN->SC = RUN, RP2P, STOP, SC with all flags; RUN, STOP, SC with STOP_COPY only. */
    assert_int_equal(conform_fsm_next_step(all, CF_ST_RUNNING, CF_ST_STOP_COPY, &n), 0);
    assert_int_equal(n, CF_ST_RUNNING_P2P);
    assert_int_equal(conform_fsm_next_step(CF_MIG_STOP_COPY, CF_ST_RUNNING, CF_ST_STOP_COPY, &n), 0);
    assert_int_equal(n, CF_ST_STOP);
    /* PC -> SC stays in the group: PC, PCP2P, SC. */
    assert_int_equal(conform_fsm_next_step(all, CF_ST_PRE_COPY, CF_ST_STOP_COPY, &n), 0);
    assert_int_equal(n, CF_ST_PRE_COPY_P2P);
    /* ERROR is never a target, nor a start. */
    assert_int_equal(conform_fsm_next_step(all, CF_ST_RUNNING, CF_ST_ERROR, &n), -EINVAL);
    assert_int_equal(conform_fsm_next_step(all, CF_ST_ERROR, CF_ST_RUNNING, &n), -EINVAL);
    /* No STOP_COPY flag: no migration at all. */
    assert_int_equal(conform_fsm_next_step(CF_MIG_P2P, CF_ST_RUNNING, CF_ST_STOP, &n), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbers_are_the_uapi_ones),
        cmocka_unit_test(test_both_implementations_agree_on_every_pair_and_flag_set),
        cmocka_unit_test(test_paths_reach_the_target_and_respect_the_saving_group),
        cmocka_unit_test(test_the_documented_examples),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
