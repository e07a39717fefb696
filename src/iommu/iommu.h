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
 *
 * Decisions (where the contract above was silent)
 * - Locking: one reader-preferring pthread rwlock per domain (glibc's
 *   PTHREAD_RWLOCK_PREFER_READER_NP, set explicitly). DMA (read, write,
 *   begin..end) holds it for reading, so device threads never wait for each
 *   other; map, unmap, dirty start/stop/report hold it for writing. Reader
 *   preference is what lets a thread inside begin/end take it again in
 *   iommu_dma_read/write while a writer waits; the price is that a writer can
 *   wait as long as DMA sections keep overlapping without a gap.
 * - Mappings are a sorted array searched by bisection, with a one-entry hint
 *   (the last mapping found) so the common case costs no search.
 * - iova+size (and iova+len) must be representable in 64 bits, so the last
 *   4 KiB page of the iova space can never be mapped or accessed.
 * - Dirty marking happens after the data is copied (dma_write) and, for
 *   zero-copy, at translate time. Because a pointer from
 *   iommu_translate(IOMMU_WRITE) may still be written until iommu_dma_end,
 *   iommu_dirty_report takes the lock for writing: it waits for sections in
 *   flight, so it can never clear a bit whose write is yet to land.
 * - The dirty log is kept per logged range (not per mapping): unmapping or
 *   remapping inside a logged range keeps its log; mappings created after
 *   start are not logged unless they fall inside a logged range.
 */
#ifndef ACCMIG_IOMMU_H
#define ACCMIG_IOMMU_H

#include <stdbool.h>
#include <stdint.h>

#define IOMMU_PAGE_SIZE 4096u
#define IOMMU_MAX_MAPPINGS 65535u
/* iommu_dirty_start limits: number of explicit ranges, and total bytes logged
 * (2^48 B at 4 KiB = 2^36 bits: at most 8 GiB of bitmap address space,
 * reserved lazily; memory is committed only where DMA writes land, and a
 * report visits only 16 MiB blocks that hold writes, so a hostile client can
 * make us spend neither memory nor time on a huge, clean log). */
#define IOMMU_DIRTY_MAX_RANGES 4096u
#define IOMMU_DIRTY_MAX_BYTES (UINT64_C(1) << 48)

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
 * domain's mapping table pinned; they must not map or unmap. iova is the
 * device address of the first byte; len never crosses the mapping's end. */
struct iommu_remote_ops {
    int (*read)(void *opaque, uint64_t iova, void *buf, uint64_t len);
    int (*write)(void *opaque, uint64_t iova, const void *buf, uint64_t len);
};

struct iommu_stats {
    uint64_t read_faults;    /* reads outside any mapping */
    uint64_t write_faults;   /* writes outside any mapping */
    uint64_t perm_faults;    /* accesses a mapping's permissions forbid */
    uint64_t last_fault_iova; /* first faulting byte of the latest fault */
    uint64_t bytes_read;     /* successful iommu_dma_read bytes */
    uint64_t bytes_written;  /* successful iommu_dma_write bytes */
};

/* Returns 0 or -ENOMEM. */
int iommu_domain_create(uint16_t requester_id, struct iommu_domain **out);
/* Unmaps everything (munmapping fd-backed ranges), stops logging and frees
 * the domain. No other call on d may be running or follow. NULL is a no-op. */
void iommu_domain_destroy(struct iommu_domain *d);
uint16_t iommu_domain_rid(const struct iommu_domain *d);

/* Map [iova, iova+size) onto host memory. iova, size and (for fds) offset
 * must be 4 KiB aligned and size > 0 (-EINVAL); iova+size must not wrap
 * (-EOVERFLOW); overlap with an existing mapping is -EEXIST; more than
 * IOMMU_MAX_MAPPINGS is -ENOSPC; perm must be non-empty (-EINVAL).
 * iommu_map_fd mmaps the fd (MAP_SHARED) itself; the caller may close the fd
 * afterwards; mmap failure returns its errno. */
/* host must not be NULL and host+size must not wrap (-EINVAL). */
int iommu_map_host(struct iommu_domain *d, uint64_t iova, uint64_t size, void *host, unsigned perm);
/* offset+size must fit in off_t (-EOVERFLOW). For a regular file (memfd
 * included) offset+size must not pass its current end (-ENXIO), so that DMA
 * cannot raise SIGBUS; a file shrunk after mapping is the caller's problem.
 * PROT_READ/PROT_WRITE follow perm, so a read-only fd mapped with
 * IOMMU_WRITE gives -EACCES. */
int iommu_map_fd(struct iommu_domain *d, uint64_t iova, uint64_t size, int fd, uint64_t offset,
                 unsigned perm);
/* ops is copied; ops->read is required for IOMMU_READ and ops->write for
 * IOMMU_WRITE (-EINVAL). */
int iommu_map_remote(struct iommu_domain *d, uint64_t iova, uint64_t size, unsigned perm,
                     const struct iommu_remote_ops *ops, void *opaque);
/* Unmap a range that exactly matches one earlier map: -ENOENT otherwise.
 * Returns after no device access can still use it. */
int iommu_unmap(struct iommu_domain *d, uint64_t iova, uint64_t size);
void iommu_unmap_all(struct iommu_domain *d);
unsigned iommu_mapping_count(struct iommu_domain *d);

/* Copy between device memory and buf. -EFAULT (counted) if any byte is
 * unmapped or lacks permission; -EINVAL if iova+len wraps. len 0 is a no-op.
 * The whole range is checked before any byte moves. A remote callback's error
 * is returned as is; pieces of the range before the failing remote piece have
 * then been transferred (and, for writes, they and the failing piece are
 * marked dirty, as part of it may have landed). */
int iommu_dma_read(struct iommu_domain *d, uint64_t iova, void *buf, uint64_t len);
int iommu_dma_write(struct iommu_domain *d, uint64_t iova, const void *buf, uint64_t len);

/* Pin the mapping table for zero-copy access (a read lock). Sections may be
 * open in many threads at once and may nest in one thread. Inside a section
 * (and inside a remote callback) never call map, unmap or iommu_dirty_*
 * other than iommu_dirty_active: they wait for every section to end. */
void iommu_dma_begin(struct iommu_domain *d);
void iommu_dma_end(struct iommu_domain *d);
/* Between begin and end: *host = the host address of [iova, iova+len) if it
 * lies in one host- or fd-backed mapping with perm (-EFAULT, counted,
 * otherwise; -EREMOTE, not counted, for a remote range or a range spanning
 * two mappings: use iommu_dma_read/write instead). IOMMU_WRITE marks the
 * whole range dirty. The pointer is valid until iommu_dma_end.
 * -EINVAL (not counted) for len 0, iova+len wrapping, or perm empty or with
 * bits other than IOMMU_READ|IOMMU_WRITE. A range that fits in one mapping
 * is checked first; a range spanning mappings is -EREMOTE only if the whole
 * of it is mapped with perm, -EFAULT otherwise. */
int iommu_translate(struct iommu_domain *d, uint64_t iova, uint64_t len, unsigned perm, void **host);

/* DMA write logging (VFIO DMA_LOGGING_*).
 * start: page_size is a power of two >= 4096 (-EINVAL); ranges must be
 * page_size aligned (-EINVAL), non-empty, non-overlapping (-EINVAL) and not
 * wrap (-EOVERFLOW); nranges == 0 logs every range mapped at start time;
 * logging already on is -EBUSY; more than 4096 ranges is -E2BIG.
 * Also: ranges NULL with nranges > 0 is -EINVAL; ranges totalling more than
 * IOMMU_DIRTY_MAX_BYTES is -E2BIG (also for nranges == 0); -ENOMEM. Argument
 * errors are reported before -EBUSY. page_size only sets the alignment the
 * ranges are checked against; reports may use any page size. With
 * nranges == 0 adjacent mappings are merged into one logged range and the
 * 4096-range limit does not apply (a domain may hold 65535 mappings).
 * stop: -EINVAL when logging is off.
 * report: report-and-clear [iova, iova+length) at page_size (power of two
 * >= 4096, iova and length aligned to it, length > 0; -EINVAL otherwise,
 * -EOVERFLOW on wrap, -EINVAL when logging is off). bitmap holds
 * ceil(length/page_size) bits rounded up to whole u64 words and is fully
 * overwritten; bit i means a DMA write touched [iova+i*page_size, +page_size).
 * Pages outside the logged ranges read as clean.
 * Only the 4 KiB pages the report covers are cleared; a bit at a large
 * page_size is the OR of the 4 KiB pages under it. bitmap NULL is -EINVAL.
 * On error the bitmap is untouched and nothing is cleared. */
int iommu_dirty_start(struct iommu_domain *d, uint64_t page_size, const struct iommu_range *ranges,
                      uint32_t nranges);
int iommu_dirty_stop(struct iommu_domain *d);
int iommu_dirty_report(struct iommu_domain *d, uint64_t iova, uint64_t length, uint64_t page_size,
                       uint64_t *bitmap);
bool iommu_dirty_active(struct iommu_domain *d);

/* A consistent-enough snapshot: each counter is read atomically. */
void iommu_stats_get(struct iommu_domain *d, struct iommu_stats *out);

#endif
