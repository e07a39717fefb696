/* vfu/pci_cfg: the VF's configuration space as a table of fields and one
 * dispatcher (STYLE 3). */
#include <errno.h>
#include <string.h>

#include "common/common.h"
#include "qm/qm_hw.h"
#include "vfu/vfu_pci.h"

#define PCI_CLASS_ACCELERATOR 0x12u
#define PCI_CAP_ID_MSI 0x05u
#define PCI_CAP_ID_EXP 0x10u
#define PCI_STATUS_CAP_LIST 0x0010u
#define PCI_DEVICE_ID 0x02u
#define PCI_SUBSYSTEM_ID 0x2eu
#define PCI_BAR2 0x18u
#define PCI_BAR4 0x20u
#define PCI_BAR_MEM_64 0x4u
#define PCI_BAR_PREFETCH 0x8u
#define PCI_MSI_64BIT 0x0080u
#define PCI_MSI_MMC_4 (2u << 1) /* multiple message capable: 2^2 vectors */
#define PCI_EXP_DEVCAP_FLR (1u << 28)
#define PCI_EXP_DEVCAP_RBER (1u << 15)
#define PCI_EXP_DEVCTL 0x08u
#define PCI_EXP_DEVCTL_FLR (1u << 15)
#define PCI_EXP_CAP_V2_ENDPOINT 0x0002u
#define PCI_EXP_CAP_LEN 0x3cu

enum cfg_hook { CFG_HOOK_NONE = 0, CFG_HOOK_FLR };

struct cfg_field {
    uint16_t off;
    uint8_t size; /* 1, 2 or 4 */
    uint32_t reset;
    uint32_t wmask; /* bits a write may change */
    uint32_t w1c;   /* bits a written 1 clears */
    enum cfg_hook hook;
    const char *name;
};

/* Everything not listed reads 0 and ignores writes. The revision byte and
 * the BARs' size bits depend on the device and are filled in by reset (an
 * absent BAR4 is cleared there). */
static const struct cfg_field cfg_fields[] = {
    /* type 0 header */
    {0x00, 2, QM_VENDOR_ID, 0, 0, CFG_HOOK_NONE, "vendor"},
    {PCI_DEVICE_ID, 2, 0, 0, 0, CFG_HOOK_NONE, "device"}, /* the engine's: reset fills it */
    {0x04, 2, 0, 0x0406, 0, CFG_HOOK_NONE, "command"}, /* memory, bus master, INTx off */
    {0x06, 2, PCI_STATUS_CAP_LIST, 0, 0xf900, CFG_HOOK_NONE, "status"},
    {0x08, 4, PCI_CLASS_ACCELERATOR << 24, 0, 0, CFG_HOOK_NONE, "class_revision"},
    {0x0c, 1, 0, 0xff, 0, CFG_HOOK_NONE, "cache_line"},
    {PCI_BAR2, 4, PCI_BAR_MEM_64 | PCI_BAR_PREFETCH, 0, 0, CFG_HOOK_NONE, "bar2_lo"},
    {PCI_BAR2 + 4, 4, 0, 0, 0, CFG_HOOK_NONE, "bar2_hi"},
    /* Doorbells are stores with side effects: not prefetchable. */
    {PCI_BAR4, 4, PCI_BAR_MEM_64, 0, 0, CFG_HOOK_NONE, "bar4_lo"},
    {PCI_BAR4 + 4, 4, 0, 0, 0, CFG_HOOK_NONE, "bar4_hi"},
    {0x2c, 2, QM_VENDOR_ID, 0, 0, CFG_HOOK_NONE, "subsys_vendor"},
    {PCI_SUBSYSTEM_ID, 2, 0, 0, 0, CFG_HOOK_NONE, "subsys_id"},
    {0x34, 1, VFU_PCI_MSI_CAP, 0, 0, CFG_HOOK_NONE, "cap_ptr"},
    {0x3c, 1, 0, 0xff, 0, CFG_HOOK_NONE, "int_line"},
    /* MSI, 64-bit, 4 vectors, no per-vector masking */
    {VFU_PCI_MSI_CAP + 0x0, 1, PCI_CAP_ID_MSI, 0, 0, CFG_HOOK_NONE, "msi_id"},
    {VFU_PCI_MSI_CAP + 0x1, 1, VFU_PCI_EXP_CAP, 0, 0, CFG_HOOK_NONE, "msi_next"},
    {VFU_PCI_MSI_CAP + 0x2, 2, PCI_MSI_64BIT | PCI_MSI_MMC_4, 0x0071, 0, CFG_HOOK_NONE, "msi_ctrl"},
    {VFU_PCI_MSI_CAP + 0x4, 4, 0, 0xfffffffcu, 0, CFG_HOOK_NONE, "msi_addr_lo"},
    {VFU_PCI_MSI_CAP + 0x8, 4, 0, 0xffffffffu, 0, CFG_HOOK_NONE, "msi_addr_hi"},
    {VFU_PCI_MSI_CAP + 0xc, 2, 0, 0xffff, 0, CFG_HOOK_NONE, "msi_data"},
    /* PCI Express v2 endpoint (0x3c bytes, the rest reads 0) */
    {VFU_PCI_EXP_CAP + 0x0, 1, PCI_CAP_ID_EXP, 0, 0, CFG_HOOK_NONE, "exp_id"},
    {VFU_PCI_EXP_CAP + 0x1, 1, 0, 0, 0, CFG_HOOK_NONE, "exp_next"},
    {VFU_PCI_EXP_CAP + 0x2, 2, PCI_EXP_CAP_V2_ENDPOINT, 0, 0, CFG_HOOK_NONE, "exp_caps"},
    {VFU_PCI_EXP_CAP + 0x4, 4, PCI_EXP_DEVCAP_FLR | PCI_EXP_DEVCAP_RBER, 0, 0, CFG_HOOK_NONE,
     "exp_devcap"},
    /* reset: max read request 512, no snoop, relaxed ordering; bit 15 is
     * the write-only FLR trigger */
    {VFU_PCI_EXP_CAP + PCI_EXP_DEVCTL, 2, 0x2810, 0x7fff, 0, CFG_HOOK_FLR, "exp_devctl"},
    {VFU_PCI_EXP_CAP + 0xa, 2, 0, 0, 0x000f, CFG_HOOK_NONE, "exp_devsta"},
};

_Static_assert(VFU_PCI_EXP_CAP + PCI_EXP_CAP_LEN <= 0x100, "capabilities fit the legacy space");

static void cfg_put(uint8_t *arr, unsigned off, unsigned size, uint32_t v)
{
    for (unsigned i = 0; i < size; i++)
        arr[off + i] = (uint8_t)(v >> (8 * i));
}

/* A 64-bit memory BAR of size bytes (a power of two) at off: the address
 * bits below the size read back as 0 after the all-ones probe, in both
 * dwords. Size 0: the BAR is absent, reads 0 and ignores writes. */
static void cfg_bar64(struct vfu_pci_cfg *cfg, unsigned off, uint64_t size)
{
    uint64_t mask = size ? ~(size - 1) & ~UINT64_C(0xf) : 0;

    if (!size) {
        cfg_put(cfg->bytes, off, 4, 0);
        cfg_put(cfg->bytes, off + 4, 4, 0);
    }
    cfg_put(cfg->wmask, off, 4, (uint32_t)mask);
    cfg_put(cfg->wmask, off + 4, 4, (uint32_t)(mask >> 32));
}

void vfu_pci_cfg_reset(struct vfu_pci_cfg *cfg)
{
    memset(cfg->bytes, 0, sizeof(cfg->bytes));
    memset(cfg->wmask, 0, sizeof(cfg->wmask));
    memset(cfg->w1c, 0, sizeof(cfg->w1c));
    for (size_t i = 0; i < AM_ARRAY_SIZE(cfg_fields); i++) {
        const struct cfg_field *f = &cfg_fields[i];
        cfg_put(cfg->bytes, f->off, f->size, f->reset);
        cfg_put(cfg->wmask, f->off, f->size, f->wmask);
        cfg_put(cfg->w1c, f->off, f->size, f->w1c);
    }
    cfg->bytes[0x08] = cfg->revision;
    cfg_put(cfg->bytes, PCI_DEVICE_ID, 2, cfg->device_id);
    cfg_put(cfg->bytes, PCI_SUBSYSTEM_ID, 2, cfg->device_id);
    cfg_bar64(cfg, PCI_BAR2, cfg->bar2_size);
    cfg_bar64(cfg, PCI_BAR4, cfg->bar4_size);
}

void vfu_pci_cfg_init(struct vfu_pci_cfg *cfg, uint8_t revision, uint64_t bar2_size,
                      uint64_t bar4_size, void (*flr)(void *opaque), void *opaque)
{
    cfg->revision = revision;
    cfg->device_id = QM_ZIP_VF_DEVICE_ID;
    cfg->bar2_size = bar2_size;
    cfg->bar4_size = bar4_size;
    cfg->flr = flr;
    cfg->opaque = opaque;
    vfu_pci_cfg_reset(cfg);
}

void vfu_pci_cfg_set_device_id(struct vfu_pci_cfg *cfg, uint16_t device_id)
{
    cfg->device_id = device_id;
    cfg_put(cfg->bytes, PCI_DEVICE_ID, 2, device_id);
    cfg_put(cfg->bytes, PCI_SUBSYSTEM_ID, 2, device_id);
}

int vfu_pci_cfg_read(const struct vfu_pci_cfg *cfg, uint64_t off, void *buf, uint64_t len)
{
    if (!am_range_ok(off, len, VFU_PCI_CFG_SIZE))
        return -EINVAL;
    memcpy(buf, cfg->bytes + off, len);
    return 0;
}

/* The byte of value v (as written at off, len bytes) at config offset at,
 * if the write covers it. */
static bool cfg_written_byte(uint64_t off, uint64_t len, const uint8_t *v, unsigned at,
                             uint8_t *out)
{
    if (at < off || at >= off + len)
        return false;
    *out = v[at - off];
    return true;
}

int vfu_pci_cfg_write(struct vfu_pci_cfg *cfg, uint64_t off, const void *buf, uint64_t len)
{
    const uint8_t *v = buf;
    bool flr = false;

    if (!am_range_ok(off, len, VFU_PCI_CFG_SIZE))
        return -EINVAL;
    for (uint64_t i = 0; i < len; i++) {
        uint8_t *b = &cfg->bytes[off + i];
        uint8_t wm = cfg->wmask[off + i];
        *b = (uint8_t)((*b & ~wm) | (v[i] & wm));
        *b &= (uint8_t)~(v[i] & cfg->w1c[off + i]);
    }
    for (size_t i = 0; i < AM_ARRAY_SIZE(cfg_fields); i++) {
        const struct cfg_field *f = &cfg_fields[i];
        uint8_t hi;
        if (f->hook == CFG_HOOK_FLR &&
            cfg_written_byte(off, len, v, f->off + 1u, &hi) && (hi & (PCI_EXP_DEVCTL_FLR >> 8)))
            flr = true;
    }
    if (flr && cfg->flr)
        cfg->flr(cfg->opaque);
    return 0;
}
