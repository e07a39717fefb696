/* vfu_dev_ops: how a session reaches its VF's device (private to vfu/ and
 * its tests). As libvfio-user's device callbacks: the session validates
 * every message and then calls one of these; device.c implements them over
 * qm_*, mig_* and iommu_* (vfu_dev_ops_qm), and a test may wrap them.
 *
 * Contract
 * - ctx is the one given with the table (vfu_vf_ops_set; for
 *   vfu_dev_ops_qm, the struct vfu_vf *). The results and errnos are those
 *   of the calls underneath: qm.h (region access, reset), mig.h (migration,
 *   DMA logging), iommu.h (DMA maps), vfu_dev.h (interrupts).
 * - Threads: a session calls its table with its VF's session_lock held,
 *   one call at a time per VF; calls for different VFs run in parallel.
 *   The implementations may block (mailbox, PAUSE_QM, twin DMA) but take no
 *   lock of another VF.
 * - The session has checked region, bounds, migration state and argument
 *   sizes before a call; the table need not check them again.
 */
#ifndef ACCMIG_VFU_DEV_OPS_H
#define ACCMIG_VFU_DEV_OPS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "iommu/iommu.h"
#include "mig/mig.h"

struct vfu_vf;

struct vfu_dev_ops {
    /* Region VFU_REGION_BAR2 (qm_bar_read/write: size 1, 2, 4 or 8,
     * aligned), VFU_REGION_BAR4 (the doorbell pages: qm_db_bar_read/write,
     * the same sizes, the same memory a client's mapping shows) or
     * VFU_REGION_CONFIG (any bytes). */
    int (*region_read)(void *ctx, uint32_t region, uint64_t off, void *buf, uint32_t count);
    int (*region_write)(void *ctx, uint32_t region, uint64_t off, const void *buf,
                        uint32_t count);
    /* The descriptor a client maps region from (VFU_REGION_BAR4: a
     * close-on-exec dup of qm_db_bar_fd, region offset 0 = file offset 0):
     * a new descriptor the caller owns, or -ENOTSUP (the region is not
     * mmap-able), -ENODEV (no BAR4), -EMFILE / -ENFILE. NULL: no region of
     * the device is mmap-able. holder_kicks: the client said its guest kicks
     * a device that is not polling (qm_db_bar_holder_kicks). */
    int (*region_fd)(void *ctx, uint32_t region, bool holder_kicks);
    /* The ioeventfd of region's kick words (VFU_REGION_BAR4: a
     * close-on-exec dup of qm_db_bar_kick_fd; the words are the poll-state
     * word of each of *nqueues queue pages): a new descriptor the caller
     * owns, or -ENOTSUP (the region has none), -EPERM (its pages were not
     * handed out by region_fd), -ENODEV, -EMFILE / -ENFILE. NULL: no
     * region of the device has one. */
    int (*region_io_fd)(void *ctx, uint32_t region, unsigned *nqueues);
    /* VFIO_USER_DEVICE_RESET: vfu_vf_reset. */
    int (*reset)(void *ctx);
    /* The session ended (after its reset): nothing the client kept (a BAR4
     * descriptor or mapping) may reach the next one (qm_db_bar_renew).
     * NULL: nothing to do. */
    void (*release)(void *ctx);

    /* Migration: mig.h's calls of the VF's mig_dev. */
    uint32_t (*mig_flags)(void *ctx);
    enum vfio_mig_state (*mig_get_state)(void *ctx);
    int (*mig_set_state)(void *ctx, enum vfio_mig_state target);
    const char *(*mig_last_error)(void *ctx);
    ssize_t (*mig_data_read)(void *ctx, void *buf, size_t len);
    ssize_t (*mig_data_write)(void *ctx, const void *buf, size_t len);
    int (*mig_data_size)(void *ctx, uint64_t *stop_copy_length);
    int (*mig_precopy_info)(void *ctx, uint64_t *initial_bytes, uint64_t *dirty_bytes);
    int (*dma_logging_start)(void *ctx, uint64_t *page_size, const struct iommu_range *ranges,
                             uint32_t nranges, bool log_all);
    int (*dma_logging_stop)(void *ctx);
    int (*dma_logging_report)(void *ctx, uint64_t iova, uint64_t length, uint64_t page_size,
                              uint64_t *bitmap);

    /* DMA maps in the VF's IOMMU domain. fd >= 0: iommu_map_fd (the fd
     * stays the caller's); fd < 0: iommu_map_remote over remote/opaque.
     * dma_unmap is iommu_unmap_range: every mapping wholly inside
     * [iova, iova+size) goes (the end may be 2^64), *unmapped_bytes gets
     * their total; a mapping straddling an edge is -EINVAL, nothing gone. */
    unsigned (*dma_count)(void *ctx);
    int (*dma_map)(void *ctx, uint64_t iova, uint64_t size, int fd, uint64_t offset,
                   unsigned perm, const struct iommu_remote_ops *remote, void *opaque);
    int (*dma_unmap)(void *ctx, uint64_t iova, uint64_t size, uint64_t *unmapped_bytes);
    void (*dma_unmap_all)(void *ctx);

    /* Interrupts: vfu_vf_msi_set (ownership of every fd >= 0 passes) and
     * vfu_vf_msi_fire. */
    void (*irq_set)(void *ctx, unsigned start, unsigned count, const int *fds);
    void (*irq_trigger)(void *ctx, unsigned vector);
};

/* The table over the model (ctx: the struct vfu_vf *). */
extern const struct vfu_dev_ops vfu_dev_ops_qm;

/* The table and ctx the VF's next session will use (the default:
 * vfu_dev_ops_qm with the VF itself). */
void vfu_vf_ops_get(struct vfu_vf *vf, const struct vfu_dev_ops **ops, void **ctx);
/* Replaces them (ops NULL: back to the default); for tests that wrap the
 * device. -EBUSY while a session is open (it keeps the table it opened
 * with). */
int vfu_vf_ops_set(struct vfu_vf *vf, const struct vfu_dev_ops *ops, void *ctx);

#endif
