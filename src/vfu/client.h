/* vfu client: a vfio-user client library for accmig's server (and any
 * spec-conforming one). The mini-VMM, the tests, the benchmarks and tools
 * build on it.
 *
 * Contract
 * - Every call returns 0 (or a byte count where stated) or a negative
 *   errno: the server's error reply as -errno, -ETIMEDOUT when the server
 *   stayed silent for timeout_ms while a reply was due (the connection is
 *   then unusable: later calls give -EIO),
 *   -ECONNRESET when the server went away, -EINVAL for arguments refused
 *   before anything is sent.
 * - Thread safety: calls may come from several threads; one request is on
 *   the wire at a time (a mutex around each request/reply). irq_wait waits
 *   without that mutex. irqs_enable/irqs_disable must not race irq_wait.
 * - Cost: a request leaves with one send (sendmsg when it carries
 *   descriptors or is larger than 8 KiB), and its reply is read with one
 *   blocking read into the connection's buffer, from which the payload is
 *   copied straight into the caller's buffer.
 * - Guest RAM: map it with an fd (memfd, MAP_SHARED) via
 *   vfu_client_dma_map_fd: the server mmaps it, device DMA is zero-copy.
 *   vfu_client_dma_map_host maps memory without an fd: the server then
 *   reads/writes it with DMA_READ/DMA_WRITE over the twin socket, which a
 *   client thread serves; it needs opts.twin_socket and the server's
 *   agreement (-ENOTSUP otherwise). The host memory must stay valid until
 *   it is unmapped (or the client destroyed).
 * - Interrupts: vfu_client_irqs_enable creates one eventfd per MSI vector
 *   and hands them to the server (SET_IRQS); vfu_client_irq_wait consumes
 *   them. The eventfds are the client's and closed by irqs_disable/destroy.
 */
#ifndef ACCMIG_VFU_CLIENT_H
#define ACCMIG_VFU_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "guest/vf_io.h"
#include "iommu/iommu.h"
#include "mig/mig.h"
#include "vfu/vfu_msg.h"

struct vfu_client;

struct vfu_client_opts {
    uint32_t max_data_xfer_size; /* largest transfer we receive; 0: 1 MiB */
    bool twin_socket;            /* ask for the server->client DMA channel */
    /* Longest silence while a reply is due (the socket's receive timeout);
     * 0: 10 s (migration steps can take a while). */
    int timeout_ms;
    /* Region writes go out with the no-reply flag, as QEMU posts MMIO
     * writes: the call returns once sent (a write the server refuses is
     * only logged there); ordering with later calls is kept because the
     * server handles messages in order. */
    bool posted_writes;
    /* Say in VERSION that the guest behind this client stores a BAR4
     * doorbell only once the device took the previous one (accmig's guest
     * driver does; Linux's does not): a server with the default policy then
     * offers BAR4 for mmap (docs/doorbells.md). */
    bool cooperative_doorbells;
};

/* What the server answered in VERSION (spec defaults where it was silent). */
struct vfu_client_server_caps {
    uint16_t major, minor;
    uint64_t max_msg_fds;
    uint64_t max_data_xfer_size;
    uint64_t max_dma_maps;
    uint64_t pgsizes;
    bool write_multiple;
    bool twin_socket; /* negotiated and running */
    bool cooperative_doorbells; /* the server will offer BAR4 for mmap */
};

/* Connects to a server socket and negotiates the version (0.0). opts may
 * be NULL (defaults). -ENAMETOOLONG, connect's errno, -EPROTO for a version
 * reply that breaks the rules (major differs, minor higher, bad JSON). */
int vfu_client_connect(const char *path, const struct vfu_client_opts *opts,
                       struct vfu_client **out);
/* Closes the connection (the server resets the VF), stops the twin
 * thread, closes eventfds. NULL is a no-op. */
void vfu_client_destroy(struct vfu_client *c);
void vfu_client_server_caps(const struct vfu_client *c, struct vfu_client_server_caps *out);
/* The connection's socket, for poll only (to see the server hang up at
 * once): never read, write or close it. Valid until vfu_client_destroy. */
int vfu_client_fd(const struct vfu_client *c);
/* How long the request now on the wire has waited for its reply, in ns (0:
 * none is waiting). Any thread. */
uint64_t vfu_client_waiting_ns(const struct vfu_client *c);
/* 0 while the connection is usable; else the errno of the request that made
 * it unusable (-ETIMEDOUT: a reply did not come in time), which later calls'
 * -EIO stands for. Any thread. */
int vfu_client_broken(const struct vfu_client *c);
/* Cuts the connection (shutdown, both sockets) from any thread: a request
 * blocked on a frozen server returns at once with an error, and every later
 * call fails (-EIO or -ECONNRESET). For an exit that must not wait; the
 * client is still destroyed as usual. */
void vfu_client_cut(struct vfu_client *c);

/* Raw request: sends cmd with req (req_len bytes) and fds, waits for the
 * reply and copies its payload (up to rep_cap bytes; -EMSGSIZE if longer,
 * rep then holds its first rep_cap bytes) into rep, setting *rep_len. For
 * tools and tests. */
int vfu_client_call(struct vfu_client *c, uint16_t cmd, const void *req, size_t req_len,
                    const int *fds, size_t nfds, void *rep, size_t rep_cap, size_t *rep_len);

/* Device description. region_info asks with argsz 32 and again with the
 * argsz the server names (a region with capabilities), as QEMU does; out
 * gets the info without its capabilities. A descriptor in the reply is kept
 * for the region (the next such reply or destroy closes it). -EPROTO for a
 * reply larger than the argsz asked with, or naming more than 4 KiB. */
int vfu_client_device_info(struct vfu_client *c, struct vfu_device_info *out);
int vfu_client_region_info(struct vfu_client *c, uint32_t index, struct vfu_region_info *out);
int vfu_client_irq_info(struct vfu_client *c, uint32_t index, struct vfu_irq_info *out);

/* Region access (region 2 = BAR2, 7 = config space); len at most the
 * server's max_data_xfer_size. */
int vfu_client_region_read(struct vfu_client *c, uint32_t region, uint64_t off, void *buf,
                           uint32_t len);
int vfu_client_region_write(struct vfu_client *c, uint32_t region, uint64_t off, const void *buf,
                            uint32_t len);

/* DMA. perm: IOMMU_READ | IOMMU_WRITE (device reads / writes). */
int vfu_client_dma_map_fd(struct vfu_client *c, uint64_t iova, uint64_t size, int fd,
                          uint64_t offset, unsigned perm);
int vfu_client_dma_map_host(struct vfu_client *c, uint64_t iova, uint64_t size, void *host,
                            unsigned perm);
/* Every mapping wholly inside [iova, iova+size) goes (the end may be 2^64);
 * one straddling an edge: -EINVAL and none goes; none inside: 0. */
int vfu_client_dma_unmap(struct vfu_client *c, uint64_t iova, uint64_t size);
int vfu_client_dma_unmap_all(struct vfu_client *c);

/* MSI vectors 0..nvec-1 (nvec <= 4) on eventfds; wait consumes a firing.
 * irq_wait: -ETIMEDOUT, -EINVAL for a vector not enabled, -EINTR when
 * irq_wake ended it (one wait, in progress or the next; no firing taken). */
int vfu_client_irqs_enable(struct vfu_client *c, unsigned nvec);
int vfu_client_irqs_disable(struct vfu_client *c);
int vfu_client_irq_wait(struct vfu_client *c, unsigned vector, int timeout_ms);
void vfu_client_irq_wake(struct vfu_client *c);

int vfu_client_reset(struct vfu_client *c);

/* Migration (VFIO v2 over vfio-user device features). */
int vfu_client_mig_flags(struct vfu_client *c, uint64_t *flags);
int vfu_client_mig_state_get(struct vfu_client *c, enum vfio_mig_state *state);
/* On failure, vfu_client_mig_state_get tells where the device stopped. */
int vfu_client_mig_state_set(struct vfu_client *c, enum vfio_mig_state target);
int vfu_client_mig_data_size(struct vfu_client *c, uint64_t *stop_copy_length);
/* accmig vendor feature; -EINVAL outside PRE_COPY / PRE_COPY_P2P. */
int vfu_client_precopy_info(struct vfu_client *c, uint64_t *initial_bytes, uint64_t *dirty_bytes);
/* nranges 0: log every DMA write. *page_size may be changed by the device. */
int vfu_client_dma_logging_start(struct vfu_client *c, uint64_t *page_size,
                                 const struct iommu_range *ranges, uint32_t nranges);
int vfu_client_dma_logging_stop(struct vfu_client *c);
/* Report-and-clear; bitmap holds ceil(length/page_size) bits in u64 words.
 * Large ranges are split into several requests. */
int vfu_client_dma_logging_report(struct vfu_client *c, uint64_t iova, uint64_t length,
                                  uint64_t page_size, uint64_t *bitmap);
/* One MIG_DATA_READ of up to len bytes (capped at the transfer size):
 * returns the count; fewer than asked means end of stream in STOP_COPY and
 * "nothing more for now" in PRE_COPY (0 included). */
ssize_t vfu_client_mig_read(struct vfu_client *c, void *buf, size_t len);
/* Writes all of buf in RESUMING, in chunks of the transfer size. */
int vfu_client_mig_write(struct vfu_client *c, const void *buf, size_t len);

/* Maps an mmap-able region (REGION_INFO with the MMAP flag: the fd it
 * carries, its sparse areas, read/write; the rest of the region stays
 * PROT_NONE): *base and *size describe it until vfu_client_destroy.
 * -ENOTSUP when the region is not mmap-able, -EEXIST when already mapped.
 * The reply is checked before anything is mapped: -EPROTO when no
 * descriptor came, an area lies outside the region, is not page aligned or
 * wraps, the capability chain leaves the reply or goes backwards, the file
 * offset is unaligned or leaves off_t, or the file is shorter than its
 * areas; mmap's errno otherwise. Nothing is mapped after a failure. */
int vfu_client_region_map(struct vfu_client *c, uint32_t region, void **base, uint64_t *size);

/* Asks for region's ioeventfds (DEVICE_GET_REGION_IO_FDS, argsz grown as
 * the reply names, as for REGION_INFO) and keeps them until
 * vfu_client_destroy. Only the guest's kick uses them (vf_io.db_kick, the
 * one write whose value does not matter): a kick at an offset one of them
 * covers is an eventfd increment, with no message; every other write stays
 * REGION_WRITE. Returns how many sub-regions were kept (> 0); -ENOTSUP when
 * the server offers none we can use (count 0, or only ioregionfds or port
 * I/O), the server's error for a server that does not implement the
 * command, -EEXIST when already done, -EPROTO for a reply that breaks the
 * rules (larger than asked, index or flags not as asked, more than 1024
 * sub-regions, an entry below 40 bytes, no descriptor, an fd_index beyond
 * the descriptors, a sub-region outside the region, or argsz growing three
 * times). Nothing is kept after a failure. */
int vfu_client_region_io_fds(struct vfu_client *c, uint32_t region);

/* The guest's door over vfio-user: BAR2 MMIO and MSI waits (irqs must be
 * enabled for irq_wait); doorbells in BAR4 mapped if vfu_client_region_map
 * mapped it before, else trapped (REGION_WRITE). */
void vfu_client_vf_io(struct vfu_client *c, struct vf_io *io);

#endif
