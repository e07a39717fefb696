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
 * - A client that shrinks a file it gave to iommu_map_fd can fault only the
 *   DMA that touches the lost pages: that access fails with -EFAULT and is
 *   counted in bus_faults; the process, other mappings and other domains go
 *   on. iommu_translate serves fd mappings only when the file cannot shrink
 *   (see Decisions), so zero-copy users never hold a pointer that can fault.
 * - DMA writes (and translations for writing) mark the dirty log when logging
 *   is on. Logging is kept at 4 KiB internally and reported at any
 *   power-of-two page size >= 4 KiB (report-and-clear).
 * - Thread safety: all calls may come from any thread. Mapping changes wait
 *   until no thread is between iommu_dma_begin and iommu_dma_end; a thread
 *   inside begin/end may also call iommu_dma_read/write.
 *
 * Decisions (where the contract above was silent)
 * - Fault log lines are rate-limited per domain (common/ratelimit.h: 10
 *   per 5 s, then a summary); the stats count every fault.
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
 * - Unmap ranges follow the kernel's vfio_iommu_type1 (v2) DMA_UNMAP: a range
 *   removes every mapping wholly inside it, refuses (removing nothing) when a
 *   mapping straddles either edge, and succeeds with 0 bytes when it holds no
 *   mapping. Its end may be exactly 2^64 (QEMU unmaps the top of the space
 *   that way), although no mapping can reach that far.
 * - Shrunk files (issue 8.5). Two layers, because neither covers every fd:
 *   1. Seal: iommu_map_fd sets F_SEAL_SHRINK on a memfd that allows sealing
 *      (or finds it set: QEMU's memory-backend-memfd seals by default); its
 *      pages can then never go away. A seal is permanent and visible to the
 *      client, which is the point; growing and writing stay allowed.
 *   2. Guard: files that cannot be sealed (a memfd created without
 *      MFD_ALLOW_SEALING, as vmm/vm_ram makes, a tmpfs or regular file, an
 *      fd opened read-only) can still be truncated, and tmpfs can also raise
 *      SIGBUS when full. So every copy to or from fd-backed memory runs under
 *      a SIGBUS guard: sigsetjmp (no signal mask saved: no system call on the
 *      fast path) and a thread-local pointer to the current guard; the
 *      handler siglongjmps back only for a kernel-raised SIGBUS whose address
 *      lies in the bytes that copy was touching. Anything else goes to the
 *      handler that was installed before ours (or to the default action), so
 *      real crashes still crash. The handler is process state, the module's
 *      only static state (a signal handler cannot reach a domain any other
 *      way): each iommu_map_fd of an unsealable file checks, under a mutex,
 *      that our handler is the process's SIGBUS handler and installs it if
 *      not (the first time, or after a component replaced it: cmocka does
 *      around every test), saving the handler it replaces as the one to
 *      chain to; the handler is never removed. A component that replaces it
 *      after a mapping was made removes the guard until the next fd mapping.
 *      ASan (gcc 12): handle_sigbus=1 (the default) lets a program install
 *      its own SIGBUS handler, so ours is installed over ASan's and chains to
 *      it; with handle_sigbus=2 our handler cannot be installed and
 *      iommu_map_fd refuses unsealable files with -ENOTSUP rather than run
 *      unguarded. The handler uses SA_NODEFER and an empty mask, so jumping
 *      out leaves the thread's signal mask as it was.
 *   Zero-copy cannot be guarded (the caller touches the memory after we
 *   return), so iommu_translate returns -EREMOTE for fd mappings that are
 *   not sealed, and callers fall back to iommu_dma_read/write. (zip_codec no
 *   longer translates at all: it copies every piece through dma_read/write.)
 *   Host mappings (iommu_map_host) stay the caller's memory and its problem.
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
    uint64_t bus_faults;     /* accesses to fd-backed pages that went away (SIGBUS) */
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
 * included) offset+size must not pass its current end (-ENXIO). A memfd that
 * allows sealing is sealed with F_SEAL_SHRINK first (kept even if the call
 * then fails); a file shrunk later faults only the DMA that touches the lost
 * pages (-EFAULT, bus_faults). -ENOTSUP when the file cannot be sealed and
 * the SIGBUS guard cannot be installed (ASan with handle_sigbus=2).
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
/* DMA_UNMAP as vfio_iommu_type1 does it: remove every mapping lying wholly in
 * [iova, iova+size), where iova+size may be exactly 2^64. iova and size must
 * be 4 KiB aligned and size > 0 (-EINVAL); iova+size beyond 2^64 is
 * -EOVERFLOW; a mapping that straddles either edge of the range is -EINVAL
 * and nothing is removed; a range holding no mapping succeeds with 0 bytes.
 * *unmapped_bytes (may be NULL) gets the total size removed (0 on error).
 * Returns after no device access can still use the removed mappings. The
 * dirty log is not touched (see Decisions). */
int iommu_unmap_range(struct iommu_domain *d, uint64_t iova, uint64_t size,
                      uint64_t *unmapped_bytes);
void iommu_unmap_all(struct iommu_domain *d);
unsigned iommu_mapping_count(struct iommu_domain *d);

/* Copy between device memory and buf. -EFAULT (counted) if any byte is
 * unmapped or lacks permission; -EINVAL if iova+len wraps. len 0 is a no-op.
 * The whole range is checked before any byte moves. A remote callback's error
 * is returned as is, and a SIGBUS on fd-backed pages (the file shrank) is
 * -EFAULT counted in bus_faults, last_fault_iova naming the lost byte; in
 * both cases pieces of the range before the failing piece have been
 * transferred (and, for writes, they and the failing piece are marked dirty,
 * as part of it may have landed). */
int iommu_dma_read(struct iommu_domain *d, uint64_t iova, void *buf, uint64_t len);
int iommu_dma_write(struct iommu_domain *d, uint64_t iova, const void *buf, uint64_t len);

/* Pin the mapping table for zero-copy access (a read lock). Sections may be
 * open in many threads at once and may nest in one thread. Inside a section
 * (and inside a remote callback) never call map, unmap or iommu_dirty_*
 * other than iommu_dirty_active: they wait for every section to end. */
void iommu_dma_begin(struct iommu_domain *d);
void iommu_dma_end(struct iommu_domain *d);
/* Between begin and end: *host = the host address of [iova, iova+len) if it
 * lies in one host-backed or sealed fd-backed mapping with perm (-EFAULT,
 * counted, otherwise; -EREMOTE, not counted, for a remote range, an fd
 * mapping whose file could not be sealed against shrinking, or a range
 * spanning two mappings: use iommu_dma_read/write instead). IOMMU_WRITE marks the
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
