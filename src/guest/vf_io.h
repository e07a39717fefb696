/* vf_io: how a guest reaches its VF, whatever the transport (in-process,
 * vfio-user client): BAR2 MMIO and MSI. Guest RAM is reached directly
 * (struct guest_ram) and the device DMAs into it at IOVA == guest physical
 * address.
 *
 * Contract: mmio_read/mmio_write take size 1/2/4/8 (16 for the mailbox) and
 * return 0 or a negative errno. irq_wait blocks until MSI vector `vector` has
 * fired at least once since the last irq_wait on that vector, or timeout_ms
 * passes (-ETIMEDOUT); it consumes the pending indication (several MSIs
 * before one wait count as one, as a pending bit does). timeout_ms 0 only
 * tests and consumes; a negative timeout or a vector >= 4 is -EINVAL. All
 * three may be called from several threads at once. irq_wake (optional)
 * makes one irq_wait in progress return -EINTR at once, or the next one if
 * none is waiting; it consumes no firing, so a guest can stop its interrupt
 * thread for a pause without waiting out its timeout.
 */
#ifndef ACCMIG_GUEST_VF_IO_H
#define ACCMIG_GUEST_VF_IO_H

#include <stdint.h>

struct vf_io {
    int (*mmio_read)(void *opaque, uint64_t off, void *data, unsigned size);
    int (*mmio_write)(void *opaque, uint64_t off, const void *data, unsigned size);
    int (*irq_wait)(void *opaque, unsigned vector, int timeout_ms);
    void (*irq_wake)(void *opaque);
    /* BAR4, the doorbell pages (when QUE_ISO_CFG bit0 is set): db_pages
     * maps them (db_pages_size bytes; the guest stores each 64-bit
     * doorbell there with release order and the device polls), or is NULL
     * and db_write reaches them trapped (size 8). */
    int (*db_write)(void *opaque, uint64_t off, const void *data, unsigned size);
    /* Optional: db_write posted (no reply awaited, errors not reported),
     * for kicks (qm_hw.h, QM_DB_POLL_STATE), which carry no doorbell and
     * may arrive late. NULL: kicks use db_write. */
    void (*db_kick)(void *opaque, uint64_t off, const void *data, unsigned size);
    void *db_pages;
    uint64_t db_pages_size;
    void *opaque;
};

/* Guest RAM as the guest (and its VMM) sees it: gpa 0 .. size-1 at host.
 * cpu_dirty, when non-NULL, is the VMM's log of guest CPU writes at 4 KiB
 * pages; the guest marks pages it writes with guest_ram_mark_dirty. */
struct guest_ram {
    uint8_t *host;
    uint64_t size;
    uint64_t *cpu_dirty;
};

static inline void *guest_ram_ptr(const struct guest_ram *ram, uint64_t gpa)
{
    return ram->host + gpa;
}
void guest_ram_mark_dirty(const struct guest_ram *ram, uint64_t gpa, uint64_t len);

#endif
