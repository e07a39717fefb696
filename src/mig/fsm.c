/* mig/fsm: the VFIO v2 combined-transition algorithm as data.
 *
 * The table is the kernel's (vfio_mig_get_next_state, with the PRE_COPY rows
 * of 6.2+): T[cur][target] is the next state to pass through. States the
 * advertised flags do not support are skipped by looking up T[next][target]
 * again. ERROR in the table means "unreachable". Unlike the upstream loop,
 * which never ends when the lookup lands on ERROR (STOP_COPY -> PRE_COPY*),
 * this one stops there with -EINVAL, and is bounded in any case.
 */
#include <errno.h>

#include "mig/mig.h"

#define S_ERR VFIO_MIG_STATE_ERROR
#define S_STOP VFIO_MIG_STATE_STOP
#define S_RUN VFIO_MIG_STATE_RUNNING
#define S_SC VFIO_MIG_STATE_STOP_COPY
#define S_RES VFIO_MIG_STATE_RESUMING
#define S_RP2P VFIO_MIG_STATE_RUNNING_P2P
#define S_PC VFIO_MIG_STATE_PRE_COPY
#define S_PCP2P VFIO_MIG_STATE_PRE_COPY_P2P

static const uint8_t mig_fsm_table[VFIO_MIG_STATE_COUNT][VFIO_MIG_STATE_COUNT] = {
    /* target:  ERROR  STOP    RUNNING SC      RES     RP2P    PC      PCP2P */
    [S_ERR] = {S_ERR, S_ERR, S_ERR, S_ERR, S_ERR, S_ERR, S_ERR, S_ERR},
    [S_STOP] = {S_ERR, S_STOP, S_RP2P, S_SC, S_RES, S_RP2P, S_RP2P, S_RP2P},
    [S_RUN] = {S_ERR, S_RP2P, S_RUN, S_RP2P, S_RP2P, S_RP2P, S_PC, S_RP2P},
    [S_SC] = {S_ERR, S_STOP, S_STOP, S_SC, S_STOP, S_STOP, S_ERR, S_ERR},
    [S_RES] = {S_ERR, S_STOP, S_STOP, S_STOP, S_RES, S_STOP, S_STOP, S_STOP},
    [S_RP2P] = {S_ERR, S_STOP, S_RUN, S_STOP, S_STOP, S_RP2P, S_RUN, S_PCP2P},
    [S_PC] = {S_ERR, S_RUN, S_RUN, S_PCP2P, S_RUN, S_RUN, S_PC, S_PCP2P},
    [S_PCP2P] = {S_ERR, S_RP2P, S_RP2P, S_SC, S_RP2P, S_RP2P, S_PC, S_PCP2P},
};

/* Flags a state needs. ERROR needs an impossible flag: never supported. */
#define MIG_FLAG_NEVER (1u << 31)
static const uint32_t mig_state_needs[VFIO_MIG_STATE_COUNT] = {
    [S_ERR] = MIG_FLAG_NEVER,
    [S_STOP] = VFIO_MIG_FLAG_STOP_COPY,
    [S_RUN] = VFIO_MIG_FLAG_STOP_COPY,
    [S_SC] = VFIO_MIG_FLAG_STOP_COPY,
    [S_RES] = VFIO_MIG_FLAG_STOP_COPY,
    [S_RP2P] = VFIO_MIG_FLAG_STOP_COPY | VFIO_MIG_FLAG_P2P,
    [S_PC] = VFIO_MIG_FLAG_STOP_COPY | VFIO_MIG_FLAG_PRE_COPY,
    [S_PCP2P] = VFIO_MIG_FLAG_STOP_COPY | VFIO_MIG_FLAG_P2P | VFIO_MIG_FLAG_PRE_COPY,
};

static const char *const mig_state_names[VFIO_MIG_STATE_COUNT] = {
    [S_ERR] = "ERROR",         [S_STOP] = "STOP",       [S_RUN] = "RUNNING",
    [S_SC] = "STOP_COPY",      [S_RES] = "RESUMING",    [S_RP2P] = "RUNNING_P2P",
    [S_PC] = "PRE_COPY",       [S_PCP2P] = "PRE_COPY_P2P",
};

const char *mig_state_name(enum vfio_mig_state s)
{
    return (unsigned)s < VFIO_MIG_STATE_COUNT ? mig_state_names[s] : "INVALID";
}

static int state_supported(uint32_t flags, unsigned s)
{
    return (mig_state_needs[s] & flags) == mig_state_needs[s];
}

int mig_fsm_next_step(uint32_t flags, enum vfio_mig_state cur, enum vfio_mig_state target,
                      enum vfio_mig_state *next)
{
    unsigned s;

    if (!(flags & VFIO_MIG_FLAG_STOP_COPY) || (flags & ~VFIO_MIG_FLAGS_ALL))
        return -EINVAL;
    if ((unsigned)cur >= VFIO_MIG_STATE_COUNT || (unsigned)target >= VFIO_MIG_STATE_COUNT)
        return -EINVAL;
    if (!state_supported(flags, cur) || !state_supported(flags, target))
        return -EINVAL;
    s = mig_fsm_table[cur][target];
    /* Each skip moves to a state the flags do not support; there are fewer
     * of those than states, so the bound is never what ends the loop. */
    for (unsigned hops = 0; s != S_ERR && !state_supported(flags, s); hops++) {
        if (hops == VFIO_MIG_STATE_COUNT)
            return -EINVAL;
        s = mig_fsm_table[s][target];
    }
    if (s == S_ERR)
        return -EINVAL;
    *next = (enum vfio_mig_state)s;
    return 0;
}
