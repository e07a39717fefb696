/* vfu_msg: the vfio-user wire format (QEMU docs/interop/vfio-user.rst) as
 * accmig speaks it, shared by the server, the client library, the fuzz
 * target and the tests.
 *
 * Every structure here is packed, fixed-width, in host byte order (the
 * protocol's), and carries a _Static_assert on its size. Structures describe
 * the payload that follows the 16-byte header; offsets in comments are from
 * the end of the header.
 *
 * Contract of the helpers
 * - vfu_hdr_check: the first validation of every received message, done
 *   before anything is allocated: type (command or reply as expected),
 *   sizeof(hdr) <= msg_size <= max_size. Returns 0, -EINVAL (type, size too
 *   small) or -E2BIG (size above max_size).
 * - vfu_caps_parse / vfu_caps_format: the VERSION capabilities JSON
 *   (json-c). See the comments at each.
 * - Names (vfu_cmd_name) never return NULL.
 */
#ifndef ACCMIG_VFU_MSG_H
#define ACCMIG_VFU_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vfu_cmd {
    VFU_CMD_VERSION = 1,
    VFU_CMD_DMA_MAP = 2,
    VFU_CMD_DMA_UNMAP = 3,
    VFU_CMD_DEVICE_GET_INFO = 4,
    VFU_CMD_DEVICE_GET_REGION_INFO = 5,
    VFU_CMD_DEVICE_GET_REGION_IO_FDS = 6,
    VFU_CMD_DEVICE_GET_IRQ_INFO = 7,
    VFU_CMD_DEVICE_SET_IRQS = 8,
    VFU_CMD_REGION_READ = 9,
    VFU_CMD_REGION_WRITE = 10,
    VFU_CMD_DMA_READ = 11,  /* server -> client */
    VFU_CMD_DMA_WRITE = 12, /* server -> client */
    VFU_CMD_DEVICE_RESET = 13,
    VFU_CMD_REGION_WRITE_MULTI = 15,
    VFU_CMD_DEVICE_FEATURE = 16,
    VFU_CMD_MIG_DATA_READ = 17,
    VFU_CMD_MIG_DATA_WRITE = 18,
    VFU_CMD_MAX = 19,
};

const char *vfu_cmd_name(unsigned cmd);

/* ---- header ---- */
#define VFU_HDR_TYPE_MASK 0xfu
#define VFU_HDR_TYPE_COMMAND 0x0u
#define VFU_HDR_TYPE_REPLY 0x1u
#define VFU_HDR_NO_REPLY (1u << 4)
#define VFU_HDR_ERROR (1u << 5)

struct vfu_hdr {
    uint16_t msg_id;
    uint16_t cmd;
    uint32_t size; /* whole message, header included */
    uint32_t flags;
    uint32_t error; /* errno of an error reply */
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_hdr) == 16, "struct vfu_hdr is 16 bytes");

int vfu_hdr_check(const struct vfu_hdr *h, unsigned expect_type, uint64_t max_size);

/* ---- protocol limits accmig uses ---- */
#define VFU_VERSION_MAJOR 0u
#define VFU_VERSION_MINOR 0u
/* What the server accepts per message (its max_msg_fds) and per transfer. */
#define VFU_SERVER_MAX_MSG_FDS 8u
#define VFU_DEFAULT_MAX_XFER (1u << 20)      /* spec default max_data_xfer_size */
#define VFU_MAX_MAX_XFER (64u << 20)         /* QEMU accepts at most this */
#define VFU_DEFAULT_MAX_DMA_MAPS 65535u
#define VFU_DEFAULT_PGSIZES 4096u
/* Room for the fixed part of any message around its data. */
#define VFU_MSG_OVERHEAD 64u
/* Largest message: header + fixed part + one transfer. */
static inline uint64_t vfu_max_msg_size(uint64_t max_xfer)
{
    return sizeof(struct vfu_hdr) + VFU_MSG_OVERHEAD + max_xfer;
}

/* ---- VERSION (1) ---- */
struct vfu_version {
    uint16_t major;
    uint16_t minor;
    /* then NUL-terminated JSON, ending exactly at the end of the message */
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_version) == 4, "struct vfu_version is 4 bytes");

/* Capabilities as one side states them; has_* says whether the key was
 * present (absent keys take the spec defaults when the caps are used). */
struct vfu_caps {
    bool has_max_msg_fds, has_max_xfer, has_max_dma_maps, has_pgsizes, has_write_multiple;
    bool has_migration, has_twin;
    uint64_t max_msg_fds;
    uint64_t max_xfer;
    uint64_t max_dma_maps;
    uint64_t pgsizes;
    bool write_multiple;
    uint64_t migr_pgsize, migr_max_bitmap; /* legacy "migration" object */
    bool twin_supported;
    /* "accmig_cooperative_doorbells": the client's guest stores a doorbell
     * into a mapped BAR4 page only once the device has taken the previous
     * one (docs/doorbells.md), so mapping the pages loses nothing, and
     * kicks after a store when the page's poll-state word says the device
     * is not polling (qm_hw.h, QM_DB_POLL_STATE). */
    bool has_coop_db, coop_db;
    bool has_twin_fd_index;
    uint64_t twin_fd_index;
    /* vfu_caps_parse: why it returned -EINVAL (a static string naming the
     * key or the syntax problem), NULL on success. */
    const char *error;
};

/* Parses json (len bytes, NUL included as the last byte, no NUL before it).
 * Absent "capabilities" or absent keys are fine; a key of the wrong type or a
 * value out of range (max_data_xfer_size 0 or > 64 MiB, max_dma_maps 0 or
 * > 65535, pgsizes without any size >= 4 KiB) is -EINVAL, as is malformed
 * JSON; out->error then says which. max_msg_fds takes any non-negative
 * integer (it bounds what the parser's side may send). Unknown keys are
 * ignored. */
int vfu_caps_parse(const char *json, size_t len, struct vfu_caps *out);
/* Formats {"capabilities":{...}} with the keys whose has_* is set (the
 * legacy "migration" object is parsed, never sent), into buf (cap bytes, NUL
 * included). Returns the length including the NUL, or -ENOSPC when it does
 * not fit, -ENOMEM. */
int vfu_caps_format(const struct vfu_caps *caps, char *buf, size_t cap);

/* ---- DMA_MAP (2) / DMA_UNMAP (3) ---- */
#define VFU_DMA_FLAG_READ (1u << 0)
#define VFU_DMA_FLAG_WRITE (1u << 1)
#define VFU_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP (1u << 0) /* refused: use DMA logging */
#define VFU_DMA_UNMAP_FLAG_ALL (1u << 1)

struct vfu_dma_map {
    uint32_t argsz; /* 32 */
    uint32_t flags;
    uint64_t offset; /* in the fd */
    uint64_t addr;   /* IOVA */
    uint64_t size;
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_dma_map) == 32, "struct vfu_dma_map is 32 bytes");

struct vfu_dma_unmap {
    uint32_t argsz;
    uint32_t flags;
    uint64_t addr;
    uint64_t size;
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_dma_unmap) == 24, "struct vfu_dma_unmap is 24 bytes");

/* ---- DEVICE_GET_INFO (4) ---- */
#define VFU_DEVICE_FLAGS_RESET (1u << 0)
#define VFU_DEVICE_FLAGS_PCI (1u << 1)

struct vfu_device_info {
    uint32_t argsz;
    uint32_t flags;
    uint32_t num_regions;
    uint32_t num_irqs;
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_device_info) == 16, "struct vfu_device_info is 16 bytes");

/* ---- DEVICE_GET_REGION_INFO (5) ---- */
enum vfu_region_index {
    VFU_REGION_BAR0 = 0,
    VFU_REGION_BAR2 = 2,
    VFU_REGION_BAR4 = 4, /* doorbell pages (doorbell isolation), mmap-able */
    VFU_REGION_ROM = 6,
    VFU_REGION_CONFIG = 7,
    VFU_REGION_VGA = 8,
    VFU_NUM_REGIONS = 9,
};
#define VFU_REGION_FLAG_READ (1u << 0)
#define VFU_REGION_FLAG_WRITE (1u << 1)
#define VFU_REGION_FLAG_MMAP (1u << 2)
#define VFU_REGION_FLAG_CAPS (1u << 3)

struct vfu_region_info {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t cap_offset;
    uint64_t size;
    uint64_t offset;
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_region_info) == 32, "struct vfu_region_info is 32 bytes");

/* Capabilities follow the info in the same reply (flag CAPS): the first at
 * cap_offset, each header's next the offset of the following one, 0 ends
 * the chain; offsets count from the start of the info (the kernel's
 * vfio_info_cap_header). A reply is never larger than the request's argsz:
 * when the caps do not fit, argsz says how large it must be. */
#define VFU_REGION_INFO_CAP_SPARSE_MMAP 1u
#define VFU_REGION_INFO_CAP_SPARSE_MMAP_VERSION 1u

struct vfu_info_cap_header {
    uint16_t id;
    uint16_t version;
    uint32_t next;
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_info_cap_header) == 8, "struct vfu_info_cap_header is 8 bytes");

/* The parts of an mmap-able region that may be mapped: each area at fd
 * offset (info.offset + area.offset), region offset area.offset. */
struct vfu_region_sparse_mmap {
    struct vfu_info_cap_header header;
    uint32_t nr_areas;
    uint32_t reserved;
    /* then nr_areas struct vfu_sparse_mmap_area */
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_region_sparse_mmap) == 16,
               "struct vfu_region_sparse_mmap is 16 bytes");

struct vfu_sparse_mmap_area {
    uint64_t offset;
    uint64_t size;
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_sparse_mmap_area) == 16, "struct vfu_sparse_mmap_area is 16 bytes");

/* ---- DEVICE_GET_REGION_IO_FDS (6) ---- */
struct vfu_region_io_fds {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t count;
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_region_io_fds) == 16, "struct vfu_region_io_fds is 16 bytes");

/* One sub-region of the reply, after the struct vfu_region_io_fds (count
 * of them; argsz = 16 + count * 40, the size the full reply needs: a reply
 * to a smaller argsz carries the header alone and no descriptor). A write
 * of size bytes (0: any size) at offset in the region may instead be an
 * increment of the eventfd the reply's descriptor fd_index is. accmig
 * offers, for BAR4, one eventfd shared by every queue's poll-state word
 * (qm_hw.h QM_DB_POLL_STATE, 8 bytes, no datamatch): a kick. */
#define VFU_IO_FD_TYPE_IOEVENTFD 0u
#define VFU_IO_FD_TYPE_IOREGIONFD 1u
#define VFU_IOEVENTFD_FLAG_DATAMATCH (1u << 0) /* KVM_IOEVENTFD_FLAG_DATAMATCH */

struct vfu_sub_region_ioeventfd {
    uint64_t offset;
    uint64_t size;
    uint32_t fd_index;
    uint32_t type;
    uint32_t flags;
    uint32_t padding;
    uint64_t datamatch;
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_sub_region_ioeventfd) == 40,
               "struct vfu_sub_region_ioeventfd is 40 bytes");

/* ---- DEVICE_GET_IRQ_INFO (7) / DEVICE_SET_IRQS (8) ---- */
enum vfu_irq_index {
    VFU_IRQ_INTX = 0,
    VFU_IRQ_MSI = 1,
    VFU_IRQ_MSIX = 2,
    VFU_IRQ_ERR = 3,
    VFU_IRQ_REQ = 4,
    VFU_NUM_IRQS = 5,
};
#define VFU_IRQ_INFO_EVENTFD (1u << 0)
#define VFU_IRQ_INFO_MASKABLE (1u << 1)
#define VFU_IRQ_INFO_AUTOMASKED (1u << 2)
#define VFU_IRQ_INFO_NORESIZE (1u << 3)

struct vfu_irq_info {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t count;
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_irq_info) == 16, "struct vfu_irq_info is 16 bytes");

#define VFU_IRQ_SET_DATA_NONE (1u << 0)
#define VFU_IRQ_SET_DATA_BOOL (1u << 1)
#define VFU_IRQ_SET_DATA_EVENTFD (1u << 2)
#define VFU_IRQ_SET_DATA_MASK 0x7u
#define VFU_IRQ_SET_ACTION_MASK (1u << 3)
#define VFU_IRQ_SET_ACTION_UNMASK (1u << 4)
#define VFU_IRQ_SET_ACTION_TRIGGER (1u << 5)
#define VFU_IRQ_SET_ACTION_MASK_ALL 0x38u

struct vfu_irq_set {
    uint32_t argsz; /* 20, + count bytes with DATA_BOOL */
    uint32_t flags;
    uint32_t index;
    uint32_t start;
    uint32_t count;
    /* DATA_BOOL: count bytes; DATA_EVENTFD: the fds travel as SCM_RIGHTS */
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_irq_set) == 20, "struct vfu_irq_set is 20 bytes");

/* ---- REGION_READ (9) / REGION_WRITE (10) ---- */
struct vfu_region_access {
    uint64_t offset;
    uint32_t region;
    uint32_t count;
    /* then count bytes of data (write request, read reply) */
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_region_access) == 16, "struct vfu_region_access is 16 bytes");

/* ---- DMA_READ (11) / DMA_WRITE (12), server -> client (spec layout) ---- */
struct vfu_dma_access {
    uint64_t addr;
    uint64_t count;
    /* then count bytes of data (write request, read reply) */
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_dma_access) == 16, "struct vfu_dma_access is 16 bytes");

/* ---- REGION_WRITE_MULTI (15) ---- */
#define VFU_WRITE_ONE_DATA 8u
#define VFU_WRITE_MULTI_MAX 1024u /* writes per message accmig accepts (QEMU sends <= 200) */

struct vfu_write_multi {
    uint64_t wr_cnt;
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_write_multi) == 8, "struct vfu_write_multi is 8 bytes");

struct vfu_write_one {
    uint64_t offset;
    uint32_t region;
    uint32_t count; /* 1..8 */
    uint8_t data[VFU_WRITE_ONE_DATA];
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_write_one) == 24, "struct vfu_write_one is 24 bytes");

/* ---- DEVICE_FEATURE (16) ---- */
#define VFU_FEATURE_MASK 0xffffu
#define VFU_FEATURE_GET (1u << 16)
#define VFU_FEATURE_SET (1u << 17)
#define VFU_FEATURE_PROBE (1u << 18)

struct vfu_feature {
    uint32_t argsz; /* the largest reply payload the client takes */
    uint32_t flags; /* feature[15:0] | GET | SET | PROBE */
    /* then the feature's data */
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_feature) == 8, "struct vfu_feature is 8 bytes");

struct vfu_feature_migration {
    uint64_t flags; /* VFIO_MIG_FLAG_* */
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_feature_migration) == 8, "struct vfu_feature_migration is 8 bytes");

struct vfu_feature_mig_state {
    uint32_t device_state;
    int32_t data_fd; /* unused over vfio-user: -1 in replies */
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_feature_mig_state) == 8, "struct vfu_feature_mig_state is 8 bytes");

struct vfu_feature_mig_data_size {
    uint64_t stop_copy_length;
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_feature_mig_data_size) == 8,
               "struct vfu_feature_mig_data_size is 8 bytes");

/* DMA_LOGGING_START / STOP: control, then num_ranges ranges inline. */
#define VFU_DMA_LOGGING_MAX_RANGES (4096u / 16u)
struct vfu_feature_dma_logging_control {
    uint64_t page_size;
    uint32_t num_ranges; /* 0: log every write */
    uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_feature_dma_logging_control) == 16,
               "struct vfu_feature_dma_logging_control is 16 bytes");

struct vfu_feature_dma_logging_range {
    uint64_t iova;
    uint64_t length;
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_feature_dma_logging_range) == 16,
               "struct vfu_feature_dma_logging_range is 16 bytes");

/* DMA_LOGGING_REPORT (GET): request, and the reply adds the bitmap after it
 * (feature data offset 24). */
struct vfu_feature_dma_logging_report {
    uint64_t iova;
    uint64_t length;
    uint64_t page_size;
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_feature_dma_logging_report) == 24,
               "struct vfu_feature_dma_logging_report is 24 bytes");

/* accmig vendor feature ACCMIG_FEATURE_PRECOPY_INFO (GET), valid in
 * PRE_COPY / PRE_COPY_P2P: the kernel's vfio_precopy_info without its own
 * argsz/flags (the feature header carries those). */
struct vfu_feature_precopy_info {
    uint64_t initial_bytes;
    uint64_t dirty_bytes;
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_feature_precopy_info) == 16,
               "struct vfu_feature_precopy_info is 16 bytes");

/* ---- MIG_DATA_READ (17) / MIG_DATA_WRITE (18) ---- */
struct vfu_mig_data {
    uint32_t argsz;
    uint32_t size;
    /* then size bytes (read reply, write request) */
} __attribute__((packed));
_Static_assert(sizeof(struct vfu_mig_data) == 8, "struct vfu_mig_data is 8 bytes");

#endif
