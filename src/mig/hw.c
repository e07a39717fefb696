/* mig/hw: register accesses, polls and mailbox commands of the migration
 * driver (see mig_hw.h). */
#include "mig/mig_hw.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "common/common.h"

#define MIG_HW_MB_BUSY (1u << QM_MB_BUSY_SHIFT)

int mig_hw_init(struct mig_hw *hw, struct qm_dev *dev, unsigned vf_fn, enum mig_hw_mode mode)
{
    uint32_t sel;
    int rc;

    if (dev == NULL || vf_fn == 0 || vf_fn >= qm_dev_num_functions(dev))
        return -EINVAL;
    memset(hw, 0, sizeof(*hw));
    hw->dev = dev;
    switch (mode) {
    case MIG_HW_V4:
        /* The PF's window onto the VF; its mailbox is the host's own. */
        hw->fn = 0;
        hw->regs = QM_PF_MIG_WINDOW(vf_fn);
        hw->db_sqcq = hw->regs + QM_WIN_DB_SQCQ;
        hw->eqc_shadow = hw->regs + QM_WIN_EQC_SHADOW;
        hw->aeqc_shadow = hw->regs + QM_WIN_AEQC_SHADOW;
        hw->mig_regs = hw->regs;
        hw->caps = QM_CAP_VERSION; /* the PF's, which describe the same engine */
        hw->ifc_source_load = hw->regs + QM_IFC_INT_SOURCE_V;
        rc = mig_hw_read32(hw, QM_PF_MIG_REGION_SEL, &sel);
        if (rc == 0 && !(sel & 1u))
            rc = mig_hw_write32(hw, QM_PF_MIG_REGION_SEL, sel | 1u);
        if (rc == 0)
            rc = mig_hw_read32(hw, QM_PF_MIG_REGION_SEL, &sel);
        if (rc != 0)
            return rc;
        return (sel & 1u) ? 0 : -ENODEV;
    case MIG_HW_V3:
        /* The VF's own BAR: its registers, its (shared) mailbox and doorbell,
         * and the migration half above QM_V3_MIG_HALF. */
        hw->fn = vf_fn;
        hw->regs = 0;
        hw->db_sqcq = QM_DB_SQCQ;
        hw->eqc_shadow = QM_EQC_SHADOW_V3;
        hw->aeqc_shadow = QM_AEQC_SHADOW_V3;
        hw->mig_regs = QM_V3_MIG_HALF;
        hw->caps = QM_CAP_VERSION;
        hw->ifc_source_load = QM_V3_WIN(QM_WIN_IFC_SOURCE_V);
        return 0;
    }
    return -EINVAL;
}

uint64_t mig_hw_restore_addr(const struct mig_hw *hw, uint32_t off)
{
    return off == QM_IFC_INT_SOURCE_V ? hw->ifc_source_load : hw->regs + off;
}

int mig_hw_read32(struct mig_hw *hw, uint64_t off, uint32_t *v)
{
    return qm_bar_read32(hw->dev, hw->fn, off, v) == 0 ? 0 : -EIO;
}

int mig_hw_write32(struct mig_hw *hw, uint64_t off, uint32_t v)
{
    return qm_bar_write32(hw->dev, hw->fn, off, v) == 0 ? 0 : -EIO;
}

int mig_hw_read_pair(struct mig_hw *hw, uint64_t off, uint64_t *v)
{
    uint32_t lo, hi;
    int rc = mig_hw_read32(hw, off, &lo);

    if (rc == 0)
        rc = mig_hw_read32(hw, off + 4, &hi);
    if (rc == 0)
        *v = (uint64_t)hi << 32 | lo;
    return rc;
}

int mig_hw_write_pair(struct mig_hw *hw, uint64_t off, uint64_t v)
{
    int rc = mig_hw_write32(hw, off, (uint32_t)v);

    return rc != 0 ? rc : mig_hw_write32(hw, off + 4, (uint32_t)(v >> 32));
}

static void sleep_poll_period(void)
{
    struct timespec ts = {0, MIG_HW_POLL_PERIOD_NS};

    nanosleep(&ts, NULL);
}

int mig_hw_poll32(struct mig_hw *hw, uint64_t off, uint32_t mask, uint32_t want,
                  uint64_t budget_ns, uint32_t *last)
{
    uint64_t start = am_now_ns();
    uint64_t min_reads = budget_ns / MIG_HW_POLL_PERIOD_NS;
    uint32_t v = 0;
    int rc;

    for (uint64_t reads = 1;; reads++) {
        rc = mig_hw_read32(hw, off, &v);
        if (rc != 0)
            break;
        if ((v & mask) == want)
            break;
        if (reads >= min_reads && am_now_ns() - start >= budget_ns) {
            rc = -ETIMEDOUT;
            break;
        }
        sleep_poll_period();
    }
    if (last != NULL)
        *last = v;
    return rc;
}

int mig_hw_mailbox(struct mig_hw *hw, unsigned cmd, uint16_t queue, uint64_t base, int op,
                   uint64_t *data)
{
    const uint64_t mb = hw->regs + QM_MAILBOX;
    struct qm_mailbox m = {
        .w0 = (uint16_t)((cmd & 0xffu) | MIG_HW_MB_BUSY | (op ? 1u << QM_MB_OP_SHIFT : 0u)),
        .queue_num = queue,
        .base_l = (uint32_t)base,
        .base_h = (uint32_t)(base >> 32),
    };
    uint32_t w;
    int rc;

    /* w0 is the low half of the mailbox's first dword. Busy before we
     * send means someone else's command (v3: the guest shares the mailbox):
     * nothing was sent, so say -EBUSY, not -ETIMEDOUT. */
    rc = mig_hw_poll32(hw, mb, MIG_HW_MB_BUSY, 0, MIG_HW_MB_BUDGET_NS, NULL);
    if (rc != 0)
        return rc == -ETIMEDOUT ? -EBUSY : rc;
    if (qm_bar_write(hw->dev, hw->fn, mb, &m, sizeof(m)) != 0)
        return -EIO;
    rc = mig_hw_poll32(hw, mb, MIG_HW_MB_BUSY, 0, MIG_HW_MB_BUDGET_NS, &w);
    if (rc != 0)
        return rc;
    if ((w >> QM_MB_STATUS_SHIFT) & QM_MB_STATUS_MASK)
        return -EIO;
    if (data == NULL)
        return 0;
    return mig_hw_read_pair(hw, hw->regs + QM_MB_DATA_L, data);
}

int mig_hw_sq_doorbell(struct mig_hw *hw, uint16_t qn, uint16_t index, uint16_t priority)
{
    uint64_t db = qm_db_value(qn, QM_DB_CMD_SQ, index, priority);

    return qm_bar_write64(hw->dev, hw->fn, hw->db_sqcq, db) == 0 ? 0 : -EIO;
}
