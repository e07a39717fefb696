/* vfu_pci: the emulated PCI Express configuration space of a ZIP VF
 * (private to vfu/).
 *
 * The layout is data (pci_cfg.c: a table of fields with reset value, writable
 * bits, write-1-to-clear bits and an optional hook) applied by one
 * dispatcher. What it shows: vendor 0x19e5 / device 0xa251, the QM revision,
 * class 0x12 (processing accelerator), BAR2 as a 64-bit prefetchable memory
 * BAR whose size answers the usual all-ones probe, BAR4 (the doorbell pages,
 * when the VF has them) as a 64-bit non-prefetchable memory BAR with the same
 * probe (absent: reads 0, not writable), an MSI capability with 64-bit
 * addresses and 4 vectors at 0x40, a PCIe v2 endpoint capability (FLR
 * capable) at 0x50, and no extended capabilities. The MSI capability is
 * informational: delivery follows SET_IRQS (as with vfio-pci).
 *
 * Contract: reads and writes of any length within the 4 KiB space; a write
 * changes only writable bits and clears write-1-to-clear bits; writing the
 * FLR bit of Device Control (reads as 0) calls the flr hook after the write.
 * Not thread safe: the owner serialises calls.
 */
#ifndef ACCMIG_VFU_PCI_H
#define ACCMIG_VFU_PCI_H

#include <stdint.h>

#define VFU_PCI_CFG_SIZE 4096u
#define VFU_PCI_MSI_CAP 0x40u
#define VFU_PCI_EXP_CAP 0x50u

struct vfu_pci_cfg {
    uint8_t bytes[VFU_PCI_CFG_SIZE];
    uint8_t wmask[VFU_PCI_CFG_SIZE];
    uint8_t w1c[VFU_PCI_CFG_SIZE];
    uint8_t revision;
    uint16_t device_id; /* the engine's VF id (vfu_pci_cfg_set_device_id); ZIP's after init */
    uint64_t bar2_size;
    uint64_t bar4_size; /* 0: no BAR4 */
    void (*flr)(void *opaque); /* PCIe function-level reset requested */
    void *opaque;
};

/* bar2_size must be a power of two >= 16 (the VF region size); bar4_size
 * too, or 0 when the VF has no BAR4. */
void vfu_pci_cfg_init(struct vfu_pci_cfg *cfg, uint8_t revision, uint64_t bar2_size,
                      uint64_t bar4_size, void (*flr)(void *opaque), void *opaque);
/* The VF's PCI device id (and subsystem id): the engine's (qm_engine.h),
 * written at once and kept across resets. */
void vfu_pci_cfg_set_device_id(struct vfu_pci_cfg *cfg, uint16_t device_id);
/* Back to reset values (a function-level reset). */
void vfu_pci_cfg_reset(struct vfu_pci_cfg *cfg);
/* -EINVAL when [off, off+len) is not inside the space. */
int vfu_pci_cfg_read(const struct vfu_pci_cfg *cfg, uint64_t off, void *buf, uint64_t len);
int vfu_pci_cfg_write(struct vfu_pci_cfg *cfg, uint64_t off, const void *buf, uint64_t len);

#endif
