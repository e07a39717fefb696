/* mig_fixture: a device + migration object + guest RAM per side, and a
 * whole live migration between two sides, for the mig tests. */
#ifndef ACCMIG_TESTS_MIG_FIXTURE_H
#define ACCMIG_TESTS_MIG_FIXTURE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "mig/mig.h"
#include "mig/stream.h"
#include "tdrv.h"

struct mig_side {
    struct qm_dev *dev;
    struct mig_dev *mig;
    uint8_t *ram;
    uint64_t ram_size;
    atomic_uint msi[QM_NUM_VECTORS]; /* MSIs the VF (function 1) raised */
};

/* One VF (function 1) with qps queue pairs, guest RAM of ram_size mapped
 * into its domain, a mig_dev in mode. Asserts on failure. */
void side_create(struct mig_side *s, unsigned qps, uint8_t revision, enum mig_hw_mode mode,
                 uint64_t ram_size);
/* The same from a device configuration (num_vfs, workers and the irq sink
 * are the fixture's). */
void side_create_cfg(struct mig_side *s, const struct qm_dev_config *cfg, enum mig_hw_mode mode,
                     uint64_t ram_size);
void side_destroy(struct mig_side *s);

/* Reads the saving stream until it ends (0) or pauses (-ENOMSG), piece
 * bytes at a time (0 = all at once); returns the bytes read. */
size_t side_read_all(struct mig_side *s, uint8_t *buf, size_t cap, size_t piece);
/* Writes len bytes piece at a time; returns the first error or 0. */
int side_write_all(struct mig_side *s, const uint8_t *buf, size_t len, size_t piece);

/* A live migration of the VF from src to dst: PRE_COPY (when precopy) with
 * the head written to the destination early, STOP_COPY, guest RAM copied,
 * the rest written, destination RUNNING. The stream is kept in
 * stream/len when stream is not NULL. The source is left in STOP_COPY. */
void migrate(struct mig_side *src, struct mig_side *dst, int precopy, size_t piece,
             uint8_t *stream, size_t *len);
/* The same up to the destination in STOP (restored, not yet running). */
void migrate_to_stop(struct mig_side *src, struct mig_side *dst, int precopy, size_t piece,
                     uint8_t *stream, size_t *len);

#endif
