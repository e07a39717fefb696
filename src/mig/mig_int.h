/* mig/mig_int: the mig_dev object, shared by mig.c and dirty.c (private). */
#ifndef ACCMIG_MIG_INT_H
#define ACCMIG_MIG_INT_H

#include <pthread.h>
#include <stdbool.h>

#include "common/common.h"
#include "mig/mig.h"
#include "mig/mig_hw.h"
#include "mig/stream.h"

struct mig_dev {
    /* Serialises every public call; protects everything below. Functions
     * named *_locked expect it held (mig_assert_locked). */
    pthread_mutex_t lock;
    pthread_t lock_owner;
    bool lock_held;

    struct qm_dev *dev;
    unsigned vf_fn;
    struct mig_hw hw;

    enum vfio_mig_state state;
    bool broken; /* set by an arc that left the device somewhere unknown */

    struct {             /* the saving group's stream */
        bool open;       /* false once the group is left: reads fail */
        bool complete;   /* STOP_COPY appended the state and END */
        struct mig_match match; /* sent in the head */
        size_t len, pos, head_len;
        uint8_t buf[MIG_STREAM_MAX];
    } save;

    struct {                      /* the RESUMING stream */
        bool open;                /* false once RESUMING is left */
        bool match_ok;            /* the MATCH record arrived and fits */
        bool refused;             /* known bad: every later write fails */
        char why[192];            /* why it was refused */
        struct mig_match local;   /* this function's own identity */
        size_t len;
        uint8_t buf[MIG_STREAM_MAX];
        struct mig_stream_content content; /* scratch for the final decode */
    } resume;

    /* After a restore: queues to reload from their tables at ->RUNNING. */
    bool reload_pending;
    uint64_t reload_qps;

    bool logging; /* DMA logging started through this object */

    struct mig_timing timing;
    char error[256];
};

void mig_lock(struct mig_dev *m);
void mig_unlock(struct mig_dev *m);
void mig_assert_locked(const struct mig_dev *m);
/* Records (and logs) why the current call fails; returns rc. */
int mig_fail_locked(struct mig_dev *m, int rc, enum am_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Stops DMA logging if this object started it (reset, destroy). */
void mig_dirty_stop_locked(struct mig_dev *m);

#endif
