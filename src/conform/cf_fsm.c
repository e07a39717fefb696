/* conform/fsm: the migration path rules, written from the uAPI text rather
 * than from a table (mig/fsm.c holds accmig's table; tests/conform proves
 * the two agree on every pair and flag set).
 *
 * Arcs: the ones vfio_main.c (vfio_mig_get_next_state) requires a driver to
 * implement for its flags, and the vfio-user spec's "Direct State
 * Transitions". Paths (vfio.h, and vfio-user.rst "Complex State
 * Transitions"): select the shortest path; saving-group states (PRE_COPY,
 * PRE_COPY_P2P, STOP_COPY) are never interior, except that a path between
 * two saving states stays inside the group (the stream carries on; leaving
 * the group would end it, which is why STOP_COPY -> PRE_COPY has no path:
 * "explicitly not allowed").
 */
#include <errno.h>
#include <stdbool.h>

#include "conform/conform.h"

static const char *const state_names[CF_ST_COUNT] = {
    "ERROR", "STOP", "RUNNING", "STOP_COPY", "RESUMING", "RUNNING_P2P", "PRE_COPY", "PRE_COPY_P2P",
};

const char *conform_state_name(unsigned state)
{
    return state < CF_ST_COUNT ? state_names[state] : "INVALID";
}

bool conform_fsm_state_supported(uint32_t flags, unsigned s)
{
    if (!(flags & CF_MIG_STOP_COPY))
        return false;
    switch (s) {
    case CF_ST_STOP:
    case CF_ST_RUNNING:
    case CF_ST_STOP_COPY:
    case CF_ST_RESUMING:
        return true;
    case CF_ST_RUNNING_P2P:
        return flags & CF_MIG_P2P;
    case CF_ST_PRE_COPY:
        return flags & CF_MIG_PRE_COPY;
    case CF_ST_PRE_COPY_P2P:
        return (flags & CF_MIG_P2P) && (flags & CF_MIG_PRE_COPY);
    default: /* ERROR can never be requested */
        return false;
    }
}

static bool saving(unsigned s)
{
    return s == CF_ST_PRE_COPY || s == CF_ST_PRE_COPY_P2P || s == CF_ST_STOP_COPY;
}

/* Whether the device must implement the direct arc a -> b. */
static bool arc(uint32_t flags, unsigned a, unsigned b)
{
    bool p2p = flags & CF_MIG_P2P, pre = flags & CF_MIG_PRE_COPY;

#define IS(x, y) (a == CF_ST_##x && b == CF_ST_##y)
    /* Every migratable device: stop/resume sessions around STOP. */
    if (IS(RESUMING, STOP) || IS(STOP, RESUMING) || IS(STOP, STOP_COPY) || IS(STOP_COPY, STOP))
        return true;
    /* Quiescing: through RUNNING_P2P when offered, directly otherwise. */
    if (p2p && (IS(RUNNING, RUNNING_P2P) || IS(RUNNING_P2P, RUNNING) || IS(RUNNING_P2P, STOP) ||
                IS(STOP, RUNNING_P2P)))
        return true;
    if (!p2p && (IS(RUNNING, STOP) || IS(STOP, RUNNING)))
        return true;
    /* Pre-copy: the saving group entered from RUNNING (and RUNNING_P2P). */
    if (pre && (IS(RUNNING, PRE_COPY) || IS(PRE_COPY, RUNNING)))
        return true;
    if (pre && !p2p && IS(PRE_COPY, STOP_COPY))
        return true;
    if (pre && p2p &&
        (IS(PRE_COPY, PRE_COPY_P2P) || IS(PRE_COPY_P2P, PRE_COPY) || IS(PRE_COPY_P2P, RUNNING_P2P) ||
         IS(PRE_COPY_P2P, STOP_COPY) || IS(RUNNING_P2P, PRE_COPY_P2P)))
        return true;
#undef IS
    return false;
}

int conform_fsm_next_step(uint32_t flags, unsigned cur, unsigned target, unsigned *next)
{
    unsigned parent[CF_ST_COUNT], queue[CF_ST_COUNT], head = 0, tail = 0;
    bool seen[CF_ST_COUNT] = {false}, inside;

    if (flags & ~(CF_MIG_STOP_COPY | CF_MIG_P2P | CF_MIG_PRE_COPY))
        return -EINVAL;
    if (cur >= CF_ST_COUNT || target >= CF_ST_COUNT || !conform_fsm_state_supported(flags, cur) ||
        !conform_fsm_state_supported(flags, target))
        return -EINVAL;
    if (cur == target) {
        *next = cur;
        return 0;
    }
    /* Which states may be interior to the path. */
    inside = saving(cur) && saving(target);
    seen[cur] = true;
    queue[tail++] = cur;
    while (head < tail) {
        unsigned s = queue[head++];
        for (unsigned n = 0; n < CF_ST_COUNT; n++) {
            if (seen[n] || !conform_fsm_state_supported(flags, n) || !arc(flags, s, n))
                continue;
            seen[n] = true;
            parent[n] = s;
            if (n == target) {
                /* Walk back to the step right after cur. */
                while (parent[n] != cur)
                    n = parent[n];
                *next = n;
                return 0;
            }
            if (saving(n) == inside)
                queue[tail++] = n;
        }
    }
    return -EINVAL;
}
