/* mig/mig_hw: the migration driver's register door to one VF (private).
 *
 * Everything the driver does to the device goes through here, as register
 * accesses on one function: the PF's per-VF control window (v4) or the VF's
 * own BAR, upper half for the migration registers (v3). Nothing here knows
 * the model's internals: swap qm_bar_read/qm_bar_write for a mapped BAR and
 * it still makes sense.
 *
 * All functions return 0 or a negative errno: -EIO for an access the device
 * refused or a mailbox status other than 0, -ETIMEDOUT when a poll ran out of
 * budget (the device state is then unknown to the caller).
 */
#ifndef ACCMIG_MIG_HW_H
#define ACCMIG_MIG_HW_H

#include <stdint.h>

#include "mig/mig.h"

struct mig_hw {
    struct qm_dev *dev;
    unsigned fn;          /* function whose BAR2 is used: 0 (PF) in v4, the VF in v3 */
    uint64_t regs;        /* where the VF's function-local offsets 0x000..0xfff start */
    uint64_t db_sqcq;     /* host-side SQ/CQ doorbell of the VF */
    uint64_t eqc_shadow;  /* 7 dwords of live EQC */
    uint64_t aeqc_shadow; /* 7 dwords of live AEQC */
    uint64_t mig_regs;    /* base the QM_WIN_* migration registers (0x1c40..) add to */
    uint64_t caps;        /* where the capability registers (0x3100..) are read */
    uint64_t ifc_source_load; /* where a write loads IFC_INT_SOURCE_V (does not ack it) */
};

/* Sets up the door for vf_fn in mode. v4 checks (and sets, as the PF driver
 * does) MIG_REGION_SEL bit0: -ENODEV when the device offers no windows. */
int mig_hw_init(struct mig_hw *hw, struct qm_dev *dev, unsigned vf_fn, enum mig_hw_mode mode);

/* Where the driver writes function-local register `off` (a QM_* offset
 * below 0x1000) so that the write loads the saved value: through the v4
 * window every register loads; in v3 the function-local registers are the
 * guest's own door, where IFC_INT_SOURCE_V is write-1-to-ack, so that one
 * goes to its load register in the upper half (QM_WIN_IFC_SOURCE_V). */
uint64_t mig_hw_restore_addr(const struct mig_hw *hw, uint32_t off);

int mig_hw_read32(struct mig_hw *hw, uint64_t off, uint32_t *v);
int mig_hw_write32(struct mig_hw *hw, uint64_t off, uint32_t v);
/* A 64-bit value kept as two dwords, low at off, high at off + 4. */
int mig_hw_read_pair(struct mig_hw *hw, uint64_t off, uint64_t *v);
int mig_hw_write_pair(struct mig_hw *hw, uint64_t off, uint64_t v);

/* Polls (off & mask) == want every 10 us; gives up after budget_ns of wall
 * time AND at least budget_ns / 10 us reads, so a descheduled caller is not
 * mistaken for a stuck device. *last gets the last value read. */
int mig_hw_poll32(struct mig_hw *hw, uint64_t off, uint32_t mask, uint32_t want,
                  uint64_t budget_ns, uint32_t *last);

/* One mailbox command the way the driver does it: wait until not busy,
 * write the 16 bytes as one store, wait until not busy (10 us period, 1 ms
 * budget each), check status. For op=1 queries *data (if not NULL) gets
 * MB_DATA_H:MB_DATA_L. -EBUSY: busy before sending (nothing was sent);
 * -ETIMEDOUT: busy after sending (the command's fate is unknown); -EIO: a
 * refused access or a status other than 0. */
int mig_hw_mailbox(struct mig_hw *hw, unsigned cmd, uint16_t queue, uint64_t base, int op,
                   uint64_t *data);

/* The VF's host-side SQ doorbell. */
int mig_hw_sq_doorbell(struct mig_hw *hw, uint16_t qn, uint16_t index, uint16_t priority);

#define MIG_HW_POLL_PERIOD_NS 10000u   /* 10 us, the driver's poll period */
#define MIG_HW_MB_BUDGET_NS 1000000u   /* 1 ms, the driver's mailbox budget */
/* Cancelled jobs retire when the engine next checks its cancel flag (per
 * codec chunk): bounded, but longer than a mailbox command. */
#define MIG_HW_RETIRE_BUDGET_NS 100000000u

#endif
