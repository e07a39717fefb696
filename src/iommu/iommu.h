/* iommu: one DMA domain per requester ID (PCI function).
 *
 * Contract
 * - A domain holds non-overlapping mappings iova -> host memory (a pointer the
 *   caller keeps valid, an fd the domain mmaps itself, or a "remote" range
 *   served by callbacks, used when a vfio-user client gives no fd).
 * - Every device access goes through iommu_dma_read/iommu_dma_write or, for
 *   zero-copy, iommu_translate between iommu_dma_begin/iommu_dma_end. An
 *   access that is not wholly inside mappings with the needed permission fails
 *   with -EFAULT, is counted in the domain's stats, and touches nothing.
 * - DMA writes (and translations for writing) mark the dirty log when logging
 *   is on. Logging is kept at 4 KiB internally and reported at any
 *   power-of-two page size >= 4 KiB (report-and-clear).
 * - Thread safety: all calls may come from any thread. Mapping changes wait
 *   until no thread is between iommu_dma_begin and iommu_dma_end; a thread
 *   inside begin/end may also call iommu_dma_read/write.
 */
#ifndef ACCMIG_IOMMU_H
#define ACCMIG_IOMMU_H

#include <stdbool.h>
#include <stdint.h>

#define IOMMU_PAGE_SIZE 4096u
#define IOMMU_MAX_MAPPINGS 65535u

enum iommu_perm {
    IOMMU_READ = 1u << 0,
    IOMMU_WRITE = 1u << 1,
};

struct iommu_domain;

struct iommu_range {
    uint64_t iova;
    uint64_t length;
};

/* Callbacks for a range whose memory lives in another process (vfio-user
 * DMA_READ/DMA_WRITE). Each returns 0 or a negative errno. Called with the
 * domain's mapping table pinned; they must not map or unmap. */
struct iommu_remote_ops {
    int (*read)(void *opaque, uint64_t iova, void *buf, uint64_t len);
    int (*write)(void *opaque, uint64_t iova, const void *buf, uint64_t len);
};

struct iommu_stats {
    uint64_t read_faults;    /* reads outside any mapping */
    uint64_t write_faults;   /* writes outside any mapping */
    uint64_t perm_faults;    /* accesses a mapping's permissions forbid */
    uint64_t last_fault_iova;
    uint64_t bytes_read;
    uint64_t bytes_written;
};

/* Returns 0 or -ENOMEM. */
int iommu_domain_create(uint16_t requester_id, struct iommu_domain **out);
/* Unmaps everything (munmapping fd-backed ranges) and frees the domain. */
void iommu_domain_destroy(struct iommu_domain *d);
uint16_t iommu_domain_rid(const struct iommu_domain *d);

/* Map [iova, iova+size) onto host memory. iova, size and (for fds) offset
 * must be 4 KiB aligned and size > 0 (-EINVAL); iova+size must not wrap
 * (-EOVERFLOW); overlap with an existing mapping is -EEXIST; more than
 * IOMMU_MAX_MAPPINGS is -ENOSPC; perm must be non-empty (-EINVAL).
 * iommu_map_fd mmaps the fd (MAP_SHARED) itself; the caller may close the fd
 * afterwards; mmap failure returns its errno. */
int iommu_map_host(struct iommu_domain *d, uint64_t iova, uint64_t size, void *host, unsigned perm);
int iommu_map_fd(struct iommu_domain *d, uint64_t iova, uint64_t size, int fd, uint64_t offset,
                 unsigned perm);
int iommu_map_remote(struct iommu_domain *d, uint64_t iova, uint64_t size, unsigned perm,
                     const struct iommu_remote_ops *ops, void *opaque);
/* Unmap a range that exactly matches one earlier map: -ENOENT otherwise.
 * Returns after no device access can still use it. */
int iommu_unmap(struct iommu_domain *d, uint64_t iova, uint64_t size);
void iommu_unmap_all(struct iommu_domain *d);
unsigned iommu_mapping_count(struct iommu_domain *d);

/* Copy between device memory and buf. -EFAULT (counted) if any byte is
 * unmapped or lacks permission; -EINVAL if iova+len wraps. len 0 is a no-op. */
int iommu_dma_read(struct iommu_domain *d, uint64_t iova, void *buf, uint64_t len);
int iommu_dma_write(struct iommu_domain *d, uint64_t iova, const void *buf, uint64_t len);

/* Pin the mapping table for zero-copy access (a read lock). */
void iommu_dma_begin(struct iommu_domain *d);
void iommu_dma_end(struct iommu_domain *d);
/* Between begin and end: *host = the host address of [iova, iova+len) if it
 * lies in one host- or fd-backed mapping with perm (-EFAULT, counted,
 * otherwise; -EREMOTE, not counted, for a remote range or a range spanning
 * two mappings: use iommu_dma_read/write instead). IOMMU_WRITE marks the
 * whole range dirty. The pointer is valid until iommu_dma_end. */
int iommu_translate(struct iommu_domain *d, uint64_t iova, uint64_t len, unsigned perm, void **host);

/* DMA write logging (VFIO DMA_LOGGING_*).
 * start: page_size is a power of two >= 4096 (-EINVAL); ranges must be
 * page_size aligned (-EINVAL), non-empty, non-overlapping (-EINVAL) and not
 * wrap (-EOVERFLOW); nranges == 0 logs every range mapped at start time;
 * logging already on is -EBUSY; more than 4096 ranges is -E2BIG.
 * stop: -EINVAL when logging is off.
 * report: report-and-clear [iova, iova+length) at page_size (power of two
 * >= 4096, iova and length aligned to it, length > 0; -EINVAL otherwise,
 * -EOVERFLOW on wrap, -EINVAL when logging is off). bitmap holds
 * ceil(length/page_size) bits rounded up to whole u64 words and is fully
 * overwritten; bit i means a DMA write touched [iova+i*page_size, +page_size).
 * Pages outside the logged ranges read as clean. */
int iommu_dirty_start(struct iommu_domain *d, uint64_t page_size, const struct iommu_range *ranges,
                      uint32_t nranges);
int iommu_dirty_stop(struct iommu_domain *d);
int iommu_dirty_report(struct iommu_domain *d, uint64_t iova, uint64_t length, uint64_t page_size,
                       uint64_t *bitmap);
bool iommu_dirty_active(struct iommu_domain *d);

void iommu_stats_get(struct iommu_domain *d, struct iommu_stats *out);

#endif
