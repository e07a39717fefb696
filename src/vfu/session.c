/* vfu/session: one client on one VF. Message dispatch in the fixed
 * validation order, one handle_<command> per command, one reply path, and
 * the twin socket that carries server->client DMA_READ/DMA_WRITE.
 *
 * Validation order (STYLE 5): the header was checked by vfu_rx before the
 * payload was allocated; the dispatcher checks the session state, the gating
 * table, the descriptor count and the fixed payload length of the command;
 * each handler then checks argsz, flags, indexes and every variable part,
 * with overflow-checked offset + length sums, before it touches the device.
 * Handlers return 0 or a negative errno; session_reply turns that into the
 * wire's error field, and vfu_msg_release closes every descriptor no handler
 * took.
 *
 * The device is reached only through the session's ops table
 * (vfu_dev_ops.h), with the VF's session_lock held: handlers of one VF run
 * one at a time, handlers of different VFs in parallel.
 */
#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"
#include "vfu/vfu_dev.h"

#define SESSION_MAX_XFER VFU_DEFAULT_MAX_XFER   /* what we receive per transfer */
#define SESSION_MSGS_PER_CALL 32u               /* vfu_session_process: then let others run */
/* Replies up to this size are built in the session's own buffer. */
#define SESSION_REPLY_ROOM VFU_RX_BUF_SIZE
#define TWIN_TIMEOUT_MS 5000                    /* a client that never answers DMA */
#define SEND_TIMEOUT_MS 10000                   /* a client that never reads */

struct vfu_session {
    struct vfu_vf *vf;
    /* The device, as the VF's table was when the session opened. */
    const struct vfu_dev_ops *ops;
    void *ctx;
    /* tran, rx, the negotiated values, in_handler and reply_buf belong to
     * the thread that drives the session (one at a time). */
    struct vfu_tran tran;
    struct vfu_rx rx;
    bool negotiated;
    uint64_t peer_max_fds;  /* descriptors the client takes per message */
    bool peer_coop_db;      /* VERSION: its guest waits for taken doorbells */
    uint64_t peer_max_xfer; /* the client's max_data_xfer_size */
    uint64_t max_dma_maps;
    bool in_handler; /* STYLE 12: set while a handler runs */
    bool trace;      /* debug log tier on: one line per message */

    /* The twin socket: twin_lock protects twin_tran, twin_rx and
     * twin_msg_id, so one DMA request/reply is on the wire at a time.
     * twin_broken is atomic: set on timeout, desync or close. */
    pthread_mutex_t twin_lock;
    int twin_fd; /* -1 unless negotiated */
    struct vfu_tran twin_tran;
    struct vfu_rx twin_rx;
    uint16_t twin_msg_id;
    bool twin_broken;
    bool twin_warned; /* atomic: "no twin socket" logged once */

    /* Where replies are built: the header, then up to SESSION_REPLY_ROOM
     * bytes, so a reply leaves with one send and no allocation. Used by the
     * one message being handled. 8-byte aligned (a DMA logging bitmap is
     * written into it as words). */
    uint8_t reply_buf[sizeof(struct vfu_hdr) + SESSION_REPLY_ROOM] __attribute__((aligned(8)));
};

/* A reply under construction: payload and at most one descriptor, which
 * the reply path sends and then closes. The payload goes after room for
 * the header: in the session's buffer, or (larger ones) in heap. */
struct reply {
    uint8_t *room; /* the session's reply_buf, or NULL: no payload possible */
    uint8_t *heap; /* a larger reply's own buffer, header room included */
    uint8_t *data;
    size_t len;
    int fd;
    const char *why; /* what was wrong, for the log of a failed command */
};

static void *reply_alloc(struct reply *r, size_t len)
{
    uint8_t *base = r->room;

    free(r->heap);
    r->heap = NULL;
    if (!base || len > SESSION_REPLY_ROOM) {
        if (len > SIZE_MAX - sizeof(struct vfu_hdr))
            return NULL;
        r->heap = malloc(sizeof(struct vfu_hdr) + len);
        if (!r->heap)
            return NULL;
        base = r->heap;
    }
    r->data = base + sizeof(struct vfu_hdr);
    memset(r->data, 0, len);
    r->len = len;
    return r->data;
}

static int fail(struct reply *r, int err, const char *why)
{
    r->why = why;
    return err;
}

static inline enum vfio_mig_state session_mig_state(struct vfu_session *s)
{
    return s->ops->mig_get_state(s->ctx);
}

/* ---- the twin socket: server -> client DMA ---- */

/* STYLE 11: a _locked function checks that its lock is held. */
static void twin_assert_locked(struct vfu_session *s)
{
    if (pthread_mutex_trylock(&s->twin_lock) == 0) {
        pthread_mutex_unlock(&s->twin_lock);
        assert(!"twin_lock not held");
    }
}

/* One request/reply of at most the client's transfer size. */
static int twin_dma_one_locked(struct vfu_session *s, uint16_t cmd, uint64_t addr, void *rbuf,
                               const void *wbuf, uint64_t count)
{
    struct vfu_dma_access req = {.addr = addr, .count = count};
    struct vfu_hdr h = {.msg_id = ++s->twin_msg_id, .cmd = cmd, .flags = VFU_HDR_TYPE_COMMAND};
    struct iovec parts[2] = {{&req, sizeof(req)}, {(void *)wbuf, wbuf ? count : 0}};
    struct vfu_msg m = {0};
    int ret;

    twin_assert_locked(s);
    ret = vfu_send(&s->twin_tran, &h, parts, wbuf ? 2 : 1, NULL, 0);
    if (ret)
        return ret;
    ret = vfu_rx_wait(&s->twin_rx, &s->twin_tran, &m, TWIN_TIMEOUT_MS);
    if (ret < 0)
        return ret;
    ret = 0;
    if (m.hdr.msg_id != h.msg_id || m.hdr.cmd != cmd || m.nfds) {
        ret = -EPROTO;
    } else if (m.hdr.flags & VFU_HDR_ERROR) {
        ret = -EIO;
    } else if (cmd == VFU_CMD_DMA_READ) {
        struct vfu_dma_access rep;
        if (m.len != sizeof(rep) + count)
            ret = -EPROTO;
        else {
            memcpy(&rep, m.payload, sizeof(rep));
            if (rep.addr != addr || rep.count != count)
                ret = -EPROTO;
            else
                memcpy(rbuf, m.payload + sizeof(rep), count);
        }
    } else if (m.len != 0 && m.len != 12 && m.len != sizeof(struct vfu_dma_access)) {
        /* DMA_WRITE: the spec's address + count, or QEMU's header alone */
        ret = -EPROTO;
    }
    vfu_msg_release(&m);
    return ret;
}

static int twin_dma(struct vfu_session *s, uint16_t cmd, uint64_t iova, void *rbuf,
                    const void *wbuf, uint64_t len)
{
    uint64_t chunk_max = AM_MIN(s->peer_max_xfer, (uint64_t)SESSION_MAX_XFER);
    int ret = 0;

    if (s->twin_fd < 0) {
        if (!__atomic_exchange_n(&s->twin_warned, true, __ATOMIC_RELAXED))
            am_log(AM_LOG_GUEST, "vfu",
                   "%s: device DMA to a range mapped without an fd, but the client did not "
                   "negotiate a twin socket: the access fails (map guest RAM with an fd)",
                   s->vf->name);
        return -EIO;
    }
    pthread_mutex_lock(&s->twin_lock);
    for (uint64_t off = 0; off < len && !ret;) {
        uint64_t n = AM_MIN(len - off, chunk_max);
        if (__atomic_load_n(&s->twin_broken, __ATOMIC_ACQUIRE)) {
            ret = -EIO;
            break;
        }
        ret = twin_dma_one_locked(s, cmd, iova + off, rbuf ? (uint8_t *)rbuf + off : NULL,
                                  wbuf ? (const uint8_t *)wbuf + off : NULL, n);
        if (ret) {
            /* A lost or odd reply would desynchronise every later one. */
            __atomic_store_n(&s->twin_broken, true, __ATOMIC_RELEASE);
            am_log(AM_LOG_GUEST, "vfu", "%s: twin socket %s of %llu bytes at 0x%llx failed (%s); "
                   "further device DMA to fd-less ranges fails", s->vf->name,
                   vfu_cmd_name(cmd), (unsigned long long)n,
                   (unsigned long long)(iova + off), strerror(-ret));
            ret = -EIO;
        }
        off += n;
    }
    pthread_mutex_unlock(&s->twin_lock);
    return ret;
}

static int twin_read(void *opaque, uint64_t iova, void *buf, uint64_t len)
{
    return twin_dma(opaque, VFU_CMD_DMA_READ, iova, buf, NULL, len);
}

static int twin_write(void *opaque, uint64_t iova, const void *buf, uint64_t len)
{
    return twin_dma(opaque, VFU_CMD_DMA_WRITE, iova, NULL, buf, len);
}

static const struct iommu_remote_ops twin_ops = {
    .read = twin_read,
    .write = twin_write,
};

/* ---- VERSION ---- */

/* Our answer holds only keys the client proposed (the spec's subset rule).
 * When the JSON would make the reply larger than the request (QEMU reads
 * the reply into the request's buffer), keys go in this order: those equal
 * to the spec default first, then the rest; the twin socket last. */
static int version_format(struct vfu_caps *ours, char *buf, size_t cap)
{
    bool *drop_order[] = {&ours->has_max_dma_maps, &ours->has_pgsizes, &ours->has_max_xfer,
                          &ours->has_write_multiple, &ours->has_max_msg_fds, &ours->has_twin};
    int n = vfu_caps_format(ours, buf, cap);

    for (size_t i = 0; n == -ENOSPC && i < AM_ARRAY_SIZE(drop_order); i++) {
        *drop_order[i] = false;
        n = vfu_caps_format(ours, buf, cap);
    }
    return n;
}

static int twin_open(struct vfu_session *s, int *client_end)
{
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -errno;
    vfu_sock_set_send_timeout(sv[0], TWIN_TIMEOUT_MS);
    s->twin_fd = sv[0];
    vfu_tran_sock_init(&s->twin_tran, sv[0]);
    vfu_rx_init(&s->twin_rx, VFU_HDR_TYPE_REPLY, vfu_max_msg_size(SESSION_MAX_XFER), 0);
    *client_end = sv[1];
    return 0;
}

static void twin_close(struct vfu_session *s)
{
    if (s->twin_fd < 0)
        return;
    close(s->twin_fd);
    s->twin_fd = -1;
    vfu_rx_reset(&s->twin_rx);
}

/* Whether region idx is offered for mmap: only the doorbell pages (BAR2's
 * registers are a model), only to a client that takes descriptors, and as
 * the device's policy says (vfu.h, enum vfu_db_mmap). */
static bool region_mmapable(const struct vfu_session *s, uint32_t idx)
{
    bool allowed = s->vf->db_mmap == VFU_DB_MMAP_ALWAYS ||
                   (s->vf->db_mmap == VFU_DB_MMAP_COOPERATIVE && s->peer_coop_db);

    return idx == VFU_REGION_BAR4 && s->vf->db_size && s->ops->region_fd &&
           s->peer_max_fds >= 1 && allowed;
}

static int handle_version(struct vfu_session *s, struct vfu_msg *m, struct reply *r)
{
    struct vfu_version v;
    struct vfu_caps peer = {0}, ours = {0};
    size_t json_cap;
    int client_end = -1, n, ret;

    if (s->negotiated)
        return fail(r, -EINVAL, "VERSION already negotiated");
    memcpy(&v, m->payload, sizeof(v));
    if (v.major != VFU_VERSION_MAJOR)
        return fail(r, -ENOTSUP, "unsupported major version");
    if (m->len > sizeof(v)) {
        ret = vfu_caps_parse((const char *)m->payload + sizeof(v), m->len - sizeof(v), &peer);
        if (ret)
            return fail(r, ret, peer.error ? peer.error : "capabilities JSON refused");
    }
    s->peer_max_fds = peer.has_max_msg_fds ? peer.max_msg_fds : 1;
    s->peer_max_xfer = peer.has_max_xfer ? peer.max_xfer : VFU_DEFAULT_MAX_XFER;
    s->max_dma_maps = peer.has_max_dma_maps ? peer.max_dma_maps : VFU_DEFAULT_MAX_DMA_MAPS;
    s->peer_coop_db = peer.has_coop_db && peer.coop_db;

    ours.has_max_msg_fds = peer.has_max_msg_fds;
    ours.max_msg_fds = VFU_SERVER_MAX_MSG_FDS;
    ours.has_max_xfer = peer.has_max_xfer;
    ours.max_xfer = SESSION_MAX_XFER;
    ours.has_max_dma_maps = peer.has_max_dma_maps;
    ours.max_dma_maps = AM_MIN(s->max_dma_maps, (uint64_t)IOMMU_MAX_MAPPINGS);
    ours.has_pgsizes = peer.has_pgsizes;
    ours.pgsizes = VFU_DEFAULT_PGSIZES;
    ours.has_write_multiple = peer.has_write_multiple;
    ours.write_multiple = true;
    /* The answer: whether this client will be offered BAR4 to map. */
    ours.has_coop_db = peer.has_coop_db;
    ours.coop_db = region_mmapable(s, VFU_REGION_BAR4);
    if (peer.twin_supported && s->peer_max_fds >= 1) {
        ours.has_twin = true;
        ours.twin_supported = true;
        ours.has_twin_fd_index = true;
        ours.twin_fd_index = 0;
    }

    /* The reply may be no larger than the request. */
    json_cap = m->len - sizeof(v);
    if (!reply_alloc(r, sizeof(v) + AM_MAX(json_cap, (size_t)1)))
        return -ENOMEM;
    n = json_cap ? version_format(&ours, (char *)r->data + sizeof(v), json_cap) : -ENOSPC;
    if (n == -ENOMEM)
        return n;
    if (n < 0) {
        ours.has_twin = false;
        n = 0; /* not even "{}" fits: answer with the version alone */
    }
    if (ours.has_twin) {
        ret = twin_open(s, &client_end);
        if (ret)
            return fail(r, ret, "cannot create the twin socket");
        r->fd = client_end;
    }
    v.major = VFU_VERSION_MAJOR;
    v.minor = AM_MIN(v.minor, (uint16_t)VFU_VERSION_MINOR);
    memcpy(r->data, &v, sizeof(v));
    r->len = sizeof(v) + (size_t)n;
    s->negotiated = true;
    am_log(AM_LOG_INFO, "vfu",
           "%s: client speaks vfio-user %u.%u: max_msg_fds %llu, max_data_xfer_size %llu, "
           "max_dma_maps %llu%s%s",
           s->vf->name, v.major, v.minor, (unsigned long long)s->peer_max_fds,
           (unsigned long long)s->peer_max_xfer, (unsigned long long)s->max_dma_maps,
           peer.has_migration ? ", legacy migration object" : "",
           ours.has_twin ? ", twin socket" : "");
    return 0;
}

/* ---- DMA_MAP / DMA_UNMAP ---- */

static int handle_dma_map(struct vfu_session *s, struct vfu_msg *m, struct reply *r)
{
    struct vfu_dma_map req;
    uint64_t end;
    unsigned perm;
    int fd, ret;

    if (m->len != sizeof(req))
        return fail(r, -EINVAL, "payload is not a struct vfu_dma_map");
    memcpy(&req, m->payload, sizeof(req));
    if (req.argsz != sizeof(req))
        return fail(r, -EINVAL, "argsz is not 32");
    if (req.flags & ~(VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE))
        return fail(r, -EINVAL, "unknown flags");
    perm = (req.flags & VFU_DMA_FLAG_READ ? IOMMU_READ : 0) |
           (req.flags & VFU_DMA_FLAG_WRITE ? IOMMU_WRITE : 0);
    if (!perm)
        return fail(r, -EINVAL, "neither readable nor writeable");
    if (req.size == 0)
        return fail(r, -EINVAL, "size 0");
    if (am_add_overflows_u64(req.addr, req.size, &end))
        return fail(r, -EOVERFLOW, "address + size wraps");
    if ((req.addr | req.size | req.offset) % IOMMU_PAGE_SIZE)
        return fail(r, -EINVAL, "address, size or offset not 4 KiB aligned");
    if (s->ops->dma_count(s->ctx) >= s->max_dma_maps)
        return fail(r, -ENOSPC, "max_dma_maps reached");
    if (m->nfds == 1) {
        fd = vfu_msg_take_fd(m, 0);
        ret = s->ops->dma_map(s->ctx, req.addr, req.size, fd, req.offset, perm, NULL, NULL);
        close(fd); /* the domain keeps its own mapping */
    } else {
        if (req.offset != 0)
            return fail(r, -EINVAL, "offset without an fd");
        ret = s->ops->dma_map(s->ctx, req.addr, req.size, -1, 0, perm, &twin_ops, s);
    }
    if (ret == -EEXIST)
        return fail(r, ret, "overlaps an existing mapping");
    if (ret)
        return fail(r, ret, "the IOMMU refused the mapping");
    am_log(AM_LOG_DEBUG, "vfu", "%s: DMA_MAP 0x%llx+0x%llx %s%s%s", s->vf->name,
           (unsigned long long)req.addr, (unsigned long long)req.size, perm & IOMMU_READ ? "r" : "",
           perm & IOMMU_WRITE ? "w" : "", m->nfds ? " fd" : " remote");
    return 0;
}

/* DMA_UNMAP as QEMU sends it. QEMU's listener unmaps whole sections, which
 * may cover several earlier maps, in power-of-two pieces, the last one
 * ending exactly at 2^64 (hw/vfio-user/container.c vfio_user_dma_unmap
 * passes iova/size through unchanged): the range rules are
 * vfio_iommu_type1's (iommu_unmap_range), not the spec's "must match
 * exactly a previous mapping".
 * The reply: docs/interop/vfio-user.rst (DMA_UNMAP, Reply) says "the server
 * responds with the original DMA entry in the request", and QEMU reads no
 * field of it: it checks VFIO_USER_ERROR/error_reply only, and refuses a
 * reply larger than the request ("reply larger than recv buffer",
 * hw/vfio-user/proxy.c; rsize defaults to the request's size). So the
 * entry (flags, address, size) goes back as sent, 24 bytes; what was removed is logged. The
 * session keeps no record of its own per mapping (fds are closed after
 * DMA_MAP, remote maps live in the domain only), so the domain's table is
 * the only one to keep consistent. */
static int handle_dma_unmap(struct vfu_session *s, struct vfu_msg *m, struct reply *r)
{
    struct vfu_dma_unmap req;
    uint64_t last, unmapped = 0;
    int ret;

    if (m->len != sizeof(req))
        return fail(r, -EINVAL, "payload is not a struct vfu_dma_unmap");
    memcpy(&req, m->payload, sizeof(req));
    if (req.argsz < sizeof(req))
        return fail(r, -EINVAL, "argsz below 24");
    if (req.flags & VFU_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP)
        return fail(r, -ENOTSUP, "unmap dirty bitmaps are not offered (use DMA logging)");
    if (req.flags & ~VFU_DMA_UNMAP_FLAG_ALL)
        return fail(r, -EINVAL, "unknown flags");
    if (req.flags & VFU_DMA_UNMAP_FLAG_ALL) {
        if (req.addr || req.size)
            return fail(r, -EINVAL, "unmap-all with an address or size");
        s->ops->dma_unmap_all(s->ctx);
    } else {
        if (req.size == 0)
            return fail(r, -EINVAL, "size 0");
        /* The last byte must exist: an end of exactly 2^64 is allowed,
         * so addr + size itself is never computed. */
        if (am_add_overflows_u64(req.addr, req.size - 1, &last))
            return fail(r, -EOVERFLOW, "address + size beyond 2^64");
        if ((req.addr | req.size) % IOMMU_PAGE_SIZE)
            return fail(r, -EINVAL, "address or size not 4 KiB aligned");
        ret = s->ops->dma_unmap(s->ctx, req.addr, req.size, &unmapped);
        if (ret == -EINVAL)
            return fail(r, ret, "a mapping straddles an edge of the range: nothing unmapped");
        if (ret)
            return fail(r, ret, "the IOMMU refused the unmap");
        am_log(AM_LOG_DEBUG, "vfu", "%s: DMA_UNMAP 0x%llx..0x%llx: 0x%llx bytes unmapped",
               s->vf->name, (unsigned long long)req.addr, (unsigned long long)last,
               (unsigned long long)unmapped);
    }
    if (!reply_alloc(r, sizeof(req)))
        return -ENOMEM;
    req.argsz = sizeof(req); /* argsz of a reply: the size of its payload */
    memcpy(r->data, &req, sizeof(req));
    return 0;
}

/* ---- info ---- */

static int handle_device_get_info(struct vfu_session *s, struct vfu_msg *m, struct reply *r)
{
    struct vfu_device_info info;

    (void)s;
    if (m->len != sizeof(info))
        return fail(r, -EINVAL, "payload is not a struct vfu_device_info");
    memcpy(&info, m->payload, sizeof(info));
    if (info.argsz < sizeof(info))
        return fail(r, -EINVAL, "argsz below 16");
    info.argsz = sizeof(info);
    info.flags = VFU_DEVICE_FLAGS_RESET | VFU_DEVICE_FLAGS_PCI;
    info.num_regions = VFU_NUM_REGIONS;
    info.num_irqs = VFU_NUM_IRQS;
    if (!reply_alloc(r, sizeof(info)))
        return -ENOMEM;
    memcpy(r->data, &info, sizeof(info));
    return 0;
}

/* Size of region idx as the client sees it (0: absent). */
static uint64_t region_size(const struct vfu_session *s, uint32_t idx)
{
    if (idx == VFU_REGION_BAR2)
        return s->vf->bar_size;
    if (idx == VFU_REGION_BAR4)
        return s->vf->db_size;
    if (idx == VFU_REGION_CONFIG)
        return VFU_PCI_CFG_SIZE;
    return 0;
}


/* The capabilities of an mmap-able region: one sparse area, the whole
 * region, at fd offset 0. */
struct region_caps {
    struct vfu_region_sparse_mmap sparse;
    struct vfu_sparse_mmap_area area;
} __attribute__((packed));
_Static_assert(sizeof(struct region_caps) == 32, "struct region_caps is 32 bytes");

/* The argsz rule of the kernel's VFIO_DEVICE_GET_REGION_INFO: the reply is
 * never larger than the client's argsz, and argsz in the reply is the size
 * of the whole info with its caps, so a client that asked with too little
 * asks again (QEMU's vfio_device_get_region_info does). Unlike the kernel,
 * a reply without room for the caps does not say CAPS: QEMU 10.2's
 * vfio-user client refuses CAPS with a cap_offset below 32 (EINVAL,
 * hw/vfio-user/device.c) before it can retry. MMAP is said in both; the
 * descriptor goes only with the full reply (QEMU closes a short reply's). */
static int handle_region_info(struct vfu_session *s, struct vfu_msg *m, struct reply *r)
{
    struct vfu_region_info info;
    struct region_caps caps;
    bool mmapable, whole;
    size_t need;
    int fd;

    if (m->len != sizeof(info))
        return fail(r, -EINVAL, "payload is not a struct vfu_region_info");
    memcpy(&info, m->payload, sizeof(info));
    if (info.argsz < sizeof(info))
        return fail(r, -EINVAL, "argsz below 32");
    if (info.index >= VFU_NUM_REGIONS)
        return fail(r, -EINVAL, "no such region index");
    info.size = region_size(s, info.index);
    info.flags = info.size ? VFU_REGION_FLAG_READ | VFU_REGION_FLAG_WRITE : 0;
    info.cap_offset = 0;
    info.offset = 0; /* the mmap-able region's fd offset */
    mmapable = info.size && region_mmapable(s, info.index);
    need = sizeof(info) + (mmapable ? sizeof(caps) : 0);
    whole = info.argsz >= need;
    if (mmapable) {
        info.flags |= VFU_REGION_FLAG_MMAP;
        if (whole) {
            /* A cooperative client's guest also kicks (docs/doorbells.md). */
            fd = s->ops->region_fd(s->ctx, info.index, s->peer_coop_db);
            if (fd < 0)
                return fail(r, fd, "the region's descriptor cannot be handed out");
            r->fd = fd; /* closed by the reply path, sent or not */
            info.flags |= VFU_REGION_FLAG_CAPS;
            info.cap_offset = sizeof(info);
            memset(&caps, 0, sizeof(caps));
            caps.sparse.header.id = VFU_REGION_INFO_CAP_SPARSE_MMAP;
            caps.sparse.header.version = VFU_REGION_INFO_CAP_SPARSE_MMAP_VERSION;
            caps.sparse.header.next = 0;
            caps.sparse.nr_areas = 1;
            caps.area.offset = 0;
            caps.area.size = info.size;
        }
    }
    info.argsz = (uint32_t)need;
    if (!reply_alloc(r, whole ? need : sizeof(info)))
        return -ENOMEM;
    memcpy(r->data, &info, sizeof(info));
    if (mmapable && whole)
        memcpy(r->data + sizeof(info), &caps, sizeof(caps));
    return 0;
}

/* ioeventfds: only BAR4's kick words (the poll-state word of each queue's
 * page, one eventfd for them all, no datamatch: a kick carries no value),
 * and only to the client the pages were handed to (REGION_INFO with the
 * descriptor): nobody else can store a doorbell there to kick for. Any
 * other existing region, or BAR4 of a client that did not get the pages,
 * has none: count 0, no descriptor. The argsz rule is REGION_INFO's: the
 * reply says the argsz the full reply needs, and carries the sub-regions
 * and the descriptor only when that fits (libvfio-user does the same). */
static int handle_region_io_fds(struct vfu_session *s, struct vfu_msg *m, struct reply *r)
{
    struct vfu_region_io_fds req;
    unsigned nq = 0;
    size_t need;
    int fd = -1;

    if (m->len != sizeof(req))
        return fail(r, -EINVAL, "payload is not a struct vfu_region_io_fds");
    memcpy(&req, m->payload, sizeof(req));
    if (req.flags != 0 || req.count != 0)
        return fail(r, -EINVAL, "flags and count must be zero");
    if (req.argsz < sizeof(req))
        return fail(r, -EINVAL, "argsz below 16");
    if (req.argsz > SESSION_MAX_XFER)
        return fail(r, -EINVAL, "argsz above max_data_xfer_size");
    if (req.index >= VFU_NUM_REGIONS)
        return fail(r, -EINVAL, "no such region index");
    if (region_size(s, req.index) == 0)
        return fail(r, -EINVAL, "the device has no such region");
    if (s->ops->region_io_fd && region_mmapable(s, req.index)) {
        fd = s->ops->region_io_fd(s->ctx, req.index, &nq);
        if (fd == -EPERM || fd == -ENOTSUP) {
            fd = -1; /* this client was not given the pages: none for it */
            nq = 0;
        } else if (fd < 0) {
            return fail(r, fd, "the region's ioeventfd cannot be handed out");
        }
    }
    need = sizeof(req) + (size_t)nq * sizeof(struct vfu_sub_region_ioeventfd);
    if (req.argsz < need && fd >= 0) {
        close(fd); /* a short reply: the client asks again with argsz */
        fd = -1;
    }
    bool whole = req.argsz >= need;

    if (!reply_alloc(r, whole ? need : sizeof(req))) {
        if (fd >= 0)
            close(fd);
        return -ENOMEM;
    }
    r->fd = fd; /* closed by the reply path, sent or not */
    req.argsz = (uint32_t)need;
    req.count = nq;
    memcpy(r->data, &req, sizeof(req));
    for (unsigned qn = 0; whole && qn < nq; qn++) {
        struct vfu_sub_region_ioeventfd e = {
            .offset = (uint64_t)qn * QM_DB_PAGE_SIZE + QM_DB_POLL_STATE,
            .size = 8,
            .fd_index = 0,
            .type = VFU_IO_FD_TYPE_IOEVENTFD,
        };

        memcpy(r->data + sizeof(req) + qn * sizeof(e), &e, sizeof(e));
    }
    return 0;
}

static uint32_t irq_count(uint32_t index)
{
    return index == VFU_IRQ_MSI ? QM_NUM_VECTORS : 0;
}

static int handle_irq_info(struct vfu_session *s, struct vfu_msg *m, struct reply *r)
{
    struct vfu_irq_info info;

    (void)s;
    if (m->len != sizeof(info))
        return fail(r, -EINVAL, "payload is not a struct vfu_irq_info");
    memcpy(&info, m->payload, sizeof(info));
    if (info.argsz < sizeof(info))
        return fail(r, -EINVAL, "argsz below 16");
    if (info.index >= VFU_NUM_IRQS)
        return fail(r, -EINVAL, "no such irq index");
    info.argsz = sizeof(info);
    info.count = irq_count(info.index);
    info.flags = info.count ? VFU_IRQ_INFO_EVENTFD | VFU_IRQ_INFO_NORESIZE : 0;
    if (!reply_alloc(r, sizeof(info)))
        return -ENOMEM;
    memcpy(r->data, &info, sizeof(info));
    return 0;
}

/* ---- SET_IRQS ---- */

static bool one_bit(uint32_t v)
{
    return v && !(v & (v - 1));
}

static int handle_set_irqs(struct vfu_session *s, struct vfu_msg *m, struct reply *r)
{
    struct vfu_irq_set req;
    uint32_t data, action, end;
    int fds[QM_NUM_VECTORS];

    memcpy(&req, m->payload, sizeof(req));
    if (req.argsz != m->len)
        return fail(r, -EINVAL, "argsz differs from the payload length");
    data = req.flags & VFU_IRQ_SET_DATA_MASK;
    action = req.flags & VFU_IRQ_SET_ACTION_MASK_ALL;
    if (req.flags & ~(VFU_IRQ_SET_DATA_MASK | VFU_IRQ_SET_ACTION_MASK_ALL))
        return fail(r, -EINVAL, "unknown flags");
    if (!one_bit(data) || !one_bit(action))
        return fail(r, -EINVAL, "not exactly one data type and one action");
    if (req.index >= VFU_NUM_IRQS)
        return fail(r, -EINVAL, "no such irq index");
    if (data != VFU_IRQ_SET_DATA_EVENTFD && m->nfds)
        return fail(r, -EINVAL, "descriptors without DATA_EVENTFD");
    if (action != VFU_IRQ_SET_ACTION_TRIGGER) {
        /* As vfio-pci: vfio_set_irqs_validate_and_prepare refuses a start
         * or start + count beyond the index's vectors and a short data
         * array (-EINVAL) first; then vfio_pci_set_irqs_ioctl finds no
         * handler for MASK/UNMASK of MSI or MSI-X ("XXX Need masking
         * support exported") and returns -ENOTTY. GET_IRQ_INFO never
         * says VFIO_IRQ_INFO_MASKABLE, which is how the vfio-user spec
         * tells a client that these actions are not supported. */
        if (req.start >= irq_count(req.index) ||
            __builtin_add_overflow(req.start, req.count, &end) || end > irq_count(req.index))
            return fail(r, -EINVAL, "start + count beyond the vectors of the index");
        if (m->len != sizeof(req) + (data == VFU_IRQ_SET_DATA_BOOL ? req.count : 0))
            return fail(r, -EINVAL, "data length differs from count");
        return fail(r, -ENOTTY, "MSI vectors are not maskable through SET_IRQS (as vfio-pci)");
    }
    /* count 0 with DATA_NONE: disable every vector of the index. */
    if (req.count == 0) {
        if (data != VFU_IRQ_SET_DATA_NONE || action != VFU_IRQ_SET_ACTION_TRIGGER ||
            req.start != 0 || m->len != sizeof(req))
            return fail(r, -EINVAL, "count 0 is only the disable-all form");
        if (req.index == VFU_IRQ_MSI)
            s->ops->irq_set(s->ctx, 0, QM_NUM_VECTORS, NULL);
        return 0;
    }
    if (__builtin_add_overflow(req.start, req.count, &end) || end > irq_count(req.index))
        return fail(r, -EINVAL, "start + count beyond the vectors of the index");
    switch (data) {
    case VFU_IRQ_SET_DATA_EVENTFD:
        if (m->len != sizeof(req))
            return fail(r, -EINVAL, "trailing data with DATA_EVENTFD");
        if (m->nfds != 0 && m->nfds != req.count)
            return fail(r, -EINVAL, "descriptor count differs from count");
        for (uint32_t i = 0; i < req.count; i++)
            fds[i] = m->nfds ? vfu_msg_take_fd(m, i) : -1;
        s->ops->irq_set(s->ctx, req.start, req.count, fds);
        return 0;
    case VFU_IRQ_SET_DATA_NONE:
        if (m->len != sizeof(req))
            return fail(r, -EINVAL, "trailing data with DATA_NONE");
        for (uint32_t i = 0; i < req.count; i++)
            s->ops->irq_trigger(s->ctx, req.start + i);
        return 0;
    default: /* DATA_BOOL: one byte per vector */
        if (m->len != sizeof(req) + req.count)
            return fail(r, -EINVAL, "DATA_BOOL array length differs from count");
        for (uint32_t i = 0; i < req.count; i++)
            if (m->payload[sizeof(req) + i])
                s->ops->irq_trigger(s->ctx, req.start + i);
        return 0;
    }
}

/* ---- region access ---- */

static bool bar_access_allowed(enum vfio_mig_state st, bool write)
{
    switch (st) {
    case VFIO_MIG_STATE_RUNNING:
    case VFIO_MIG_STATE_RUNNING_P2P:
    case VFIO_MIG_STATE_PRE_COPY:
    case VFIO_MIG_STATE_PRE_COPY_P2P:
    case VFIO_MIG_STATE_STOP:
        return true;
    case VFIO_MIG_STATE_STOP_COPY: /* a write would race the saved state */
        return !write;
    default: /* RESUMING (being loaded), ERROR */
        return false;
    }
}

/* Checks and performs one access; data is count bytes. */
static int region_access(struct vfu_session *s, uint32_t region, uint64_t off, uint8_t *data,
                         uint32_t count, bool write, struct reply *r)
{
    uint64_t size = region_size(s, region);
    int ret;

    if (region >= VFU_NUM_REGIONS || size == 0)
        return fail(r, -EINVAL, "no such region");
    if (count == 0)
        return fail(r, -EINVAL, "count 0");
    if (!am_range_ok(off, count, size))
        return fail(r, -EINVAL, "offset + count beyond the region");
    if (region == VFU_REGION_CONFIG)
        return write ? s->ops->region_write(s->ctx, region, off, data, count)
                     : s->ops->region_read(s->ctx, region, off, data, count);
    if (!bar_access_allowed(session_mig_state(s), write))
        return fail(r, -EBUSY, "BAR access not allowed in this migration state");
    ret = write ? s->ops->region_write(s->ctx, region, off, data, count)
                : s->ops->region_read(s->ctx, region, off, data, count);
    if (ret)
        return fail(r, ret, "the device refused the access (size or alignment)");
    return 0;
}

static int handle_region_read(struct vfu_session *s, struct vfu_msg *m, struct reply *r)
{
    struct vfu_region_access req;
    uint8_t *out;
    int ret;

    if (m->len != sizeof(req))
        return fail(r, -EINVAL, "payload is not a struct vfu_region_access");
    memcpy(&req, m->payload, sizeof(req));
    if (req.count > SESSION_MAX_XFER)
        return fail(r, -E2BIG, "count above max_data_xfer_size");
    out = reply_alloc(r, sizeof(req) + req.count);
    if (!out)
        return -ENOMEM;
    ret = region_access(s, req.region, req.offset, out + sizeof(req), req.count, false, r);
    if (ret)
        return ret;
    memcpy(out, &req, sizeof(req));
    return 0;
}

static int handle_region_write(struct vfu_session *s, struct vfu_msg *m, struct reply *r)
{
    struct vfu_region_access req;
    int ret;

    memcpy(&req, m->payload, sizeof(req));
    if (req.count > SESSION_MAX_XFER)
        return fail(r, -E2BIG, "count above max_data_xfer_size");
    if (m->len - sizeof(req) != req.count)
        return fail(r, -EINVAL, "data length differs from count");
    ret = region_access(s, req.region, req.offset, m->payload + sizeof(req), req.count, true, r);
    if (ret)
        return ret;
    if (!reply_alloc(r, sizeof(req)))
        return -ENOMEM;
    memcpy(r->data, &req, sizeof(req));
    return 0;
}

static int handle_region_write_multi(struct vfu_session *s, struct vfu_msg *m, struct reply *r)
{
    struct vfu_write_multi hdr;
    int ret;

    memcpy(&hdr, m->payload, sizeof(hdr));
    if (hdr.wr_cnt == 0 || hdr.wr_cnt > VFU_WRITE_MULTI_MAX)
        return fail(r, -EINVAL, "wr_cnt 0 or above 1024");
    if (m->len != sizeof(hdr) + hdr.wr_cnt * sizeof(struct vfu_write_one))
        return fail(r, -EINVAL, "payload length differs from wr_cnt writes");
    for (uint64_t i = 0; i < hdr.wr_cnt; i++) {
        struct vfu_write_one w;
        memcpy(&w, m->payload + sizeof(hdr) + i * sizeof(w), sizeof(w));
        if (w.count == 0 || w.count > VFU_WRITE_ONE_DATA)
            return fail(r, -EINVAL, "a write's count is not 1..8");
        /* Earlier writes stay done, as on a CPU. */
        ret = region_access(s, w.region, w.offset, w.data, w.count, true, r);
        if (ret)
            return ret;
    }
    if (!reply_alloc(r, sizeof(hdr)))
        return -ENOMEM;
    memcpy(r->data, &hdr, sizeof(hdr));
    return 0;
}

static int handle_dma_rw(struct vfu_session *s, struct vfu_msg *m, struct reply *r)
{
    (void)s;
    (void)m;
    return fail(r, -EINVAL, "DMA_READ/DMA_WRITE go from server to client");
}

static int handle_device_reset(struct vfu_session *s, struct vfu_msg *m, struct reply *r)
{
    if (m->len != 0)
        return fail(r, -EINVAL, "DEVICE_RESET has no payload");
    return s->ops->reset(s->ctx);
}

/* ---- DEVICE_FEATURE ---- */

/* Feature handlers get the feature data (after the 8-byte header) and fill
 * the reply's data part; the reply path writes the header. */
struct feature_call {
    struct vfu_feature hdr;
    const uint8_t *data;
    size_t data_len;
    bool get;
};

static void *feature_reply(struct reply *r, const struct feature_call *fc, size_t data_len)
{
    struct vfu_feature h = {.argsz = (uint32_t)(sizeof(h) + data_len), .flags = fc->hdr.flags};
    uint8_t *p = reply_alloc(r, sizeof(h) + data_len);
    if (!p)
        return NULL;
    memcpy(p, &h, sizeof(h));
    return p + sizeof(h);
}

/* The reply to a SET is the request, possibly updated by the caller. */
static void *feature_echo(struct reply *r, const struct feature_call *fc)
{
    uint8_t *p = feature_reply(r, fc, fc->data_len);
    if (p)
        memcpy(p, fc->data, fc->data_len);
    return p;
}

static int feature_migration(struct vfu_session *s, const struct feature_call *fc, struct reply *r)
{
    struct vfu_feature_migration out = {.flags = s->ops->mig_flags(s->ctx)};
    uint8_t *p = feature_reply(r, fc, sizeof(out));
    if (!p)
        return -ENOMEM;
    memcpy(p, &out, sizeof(out));
    return 0;
}

static int feature_mig_state(struct vfu_session *s, const struct feature_call *fc, struct reply *r)
{
    struct vfu_feature_mig_state st;
    enum vfio_mig_state from;
    uint8_t *p;
    int ret;

    if (!fc->get) {
        /* The libvfio-user over-read: a SET cut after the feature header. */
        if (fc->data_len != sizeof(st))
            return fail(r, -EINVAL, "MIG_DEVICE_STATE data is not 8 bytes");
        memcpy(&st, fc->data, sizeof(st));
        if (st.device_state >= VFIO_MIG_STATE_COUNT)
            return fail(r, -EINVAL, "no such migration state");
        from = session_mig_state(s);
        ret = s->ops->mig_set_state(s->ctx, (enum vfio_mig_state)st.device_state);
        if (ret) {
            am_log(AM_LOG_GUEST, "vfu", "%s: migration %s -> %s failed at %s: %s", s->vf->name,
                   mig_state_name(from), mig_state_name((enum vfio_mig_state)st.device_state),
                   mig_state_name(session_mig_state(s)), s->ops->mig_last_error(s->ctx));
            return fail(r, ret, "migration state change failed");
        }
        am_log(AM_LOG_INFO, "vfu", "%s: migration state %s -> %s", s->vf->name,
               mig_state_name(from), mig_state_name((enum vfio_mig_state)st.device_state));
    }
    st.device_state = (uint32_t)session_mig_state(s);
    st.data_fd = -1;
    p = feature_reply(r, fc, sizeof(st));
    if (!p)
        return -ENOMEM;
    memcpy(p, &st, sizeof(st));
    return 0;
}

static int feature_logging_start(struct vfu_session *s, const struct feature_call *fc,
                                 struct reply *r)
{
    struct vfu_feature_dma_logging_control ctl;
    struct iommu_range *ranges = NULL;
    uint64_t page_size;
    uint8_t *p;
    int ret;

    if (fc->data_len < sizeof(ctl))
        return fail(r, -EINVAL, "DMA_LOGGING_START data shorter than its control block");
    memcpy(&ctl, fc->data, sizeof(ctl));
    if (ctl.num_ranges > VFU_DMA_LOGGING_MAX_RANGES)
        return fail(r, -E2BIG, "more than 256 ranges");
    if (fc->data_len != sizeof(ctl) + (size_t)ctl.num_ranges * sizeof(struct iommu_range))
        return fail(r, -EINVAL, "data length differs from num_ranges ranges");
    if (ctl.num_ranges) {
        ranges = calloc(ctl.num_ranges, sizeof(*ranges));
        if (!ranges)
            return -ENOMEM;
        for (uint32_t i = 0; i < ctl.num_ranges; i++) {
            struct vfu_feature_dma_logging_range w;
            memcpy(&w, fc->data + sizeof(ctl) + i * sizeof(w), sizeof(w));
            ranges[i].iova = w.iova;
            ranges[i].length = w.length;
        }
    }
    page_size = ctl.page_size;
    ret = s->ops->dma_logging_start(s->ctx, &page_size, ranges, ctl.num_ranges,
                                    ctl.num_ranges == 0);
    free(ranges);
    if (ret)
        return fail(r, ret, "DMA logging refused the ranges or is already on");
    p = feature_echo(r, fc);
    if (!p)
        return -ENOMEM;
    memcpy(p, &page_size, sizeof(page_size)); /* the page size chosen */
    return 0;
}

static int feature_logging_stop(struct vfu_session *s, const struct feature_call *fc,
                                struct reply *r)
{
    int ret = s->ops->dma_logging_stop(s->ctx);
    if (ret)
        return fail(r, ret, "DMA logging is not on");
    return feature_echo(r, fc) ? 0 : -ENOMEM;
}

static int feature_logging_report(struct vfu_session *s, const struct feature_call *fc,
                                  struct reply *r)
{
    struct vfu_feature_dma_logging_report req;
    uint64_t end, bits, bytes;
    uint8_t *p;
    int ret;

    if (fc->data_len != sizeof(req))
        return fail(r, -EINVAL, "DMA_LOGGING_REPORT data is not 24 bytes");
    memcpy(&req, fc->data, sizeof(req));
    if (!AM_IS_POW2(req.page_size) || req.page_size < IOMMU_PAGE_SIZE)
        return fail(r, -EINVAL, "page_size not a power of two >= 4096");
    if (req.length == 0 || (req.iova | req.length) & (req.page_size - 1))
        return fail(r, -EINVAL, "iova/length empty or not page aligned");
    if (am_add_overflows_u64(req.iova, req.length, &end))
        return fail(r, -EOVERFLOW, "iova + length wraps");
    bits = req.length / req.page_size;
    bytes = am_bitmap_words(bits) * 8;
    if (bytes > SESSION_MAX_XFER)
        return fail(r, -E2BIG, "bitmap above max_data_xfer_size");
    if (fc->hdr.argsz < sizeof(struct vfu_feature) + sizeof(req) + bytes)
        return fail(r, -EINVAL, "argsz too small for the bitmap");
    p = feature_reply(r, fc, sizeof(req) + bytes);
    if (!p)
        return -ENOMEM;
    memcpy(p, &req, sizeof(req));
    /* The reply buffer is heap (or the aligned inline buffer) and the
     * bitmap starts 32 bytes in: 8-byte aligned. */
    ret = s->ops->dma_logging_report(s->ctx, req.iova, req.length, req.page_size,
                                     (uint64_t *)(void *)(p + sizeof(req)));
    if (ret)
        return fail(r, ret, "DMA logging report failed (logging off or range)");
    return 0;
}

static int feature_mig_data_size(struct vfu_session *s, const struct feature_call *fc,
                                 struct reply *r)
{
    struct vfu_feature_mig_data_size out;
    uint64_t len;
    uint8_t *p;
    int ret = s->ops->mig_data_size(s->ctx, &len);

    if (ret)
        return fail(r, ret, "no data size estimate");
    out.stop_copy_length = len;
    p = feature_reply(r, fc, sizeof(out));
    if (!p)
        return -ENOMEM;
    memcpy(p, &out, sizeof(out));
    return 0;
}

static int feature_precopy_info(struct vfu_session *s, const struct feature_call *fc,
                                struct reply *r)
{
    struct vfu_feature_precopy_info out;
    uint64_t initial, dirty;
    uint8_t *p;
    int ret = s->ops->mig_precopy_info(s->ctx, &initial, &dirty);

    if (ret)
        return fail(r, ret, "precopy info is only valid in PRE_COPY/PRE_COPY_P2P");
    out.initial_bytes = initial;
    out.dirty_bytes = dirty;
    p = feature_reply(r, fc, sizeof(out));
    if (!p)
        return -ENOMEM;
    memcpy(p, &out, sizeof(out));
    return 0;
}

struct feature_entry {
    uint16_t feature;
    uint32_t ops;     /* VFU_FEATURE_GET and/or _SET */
    size_t get_len;   /* fixed GET data length (0: the handler checks) */
    int (*fn)(struct vfu_session *s, const struct feature_call *fc, struct reply *r);
    const char *name;
};

static const struct feature_entry features[] = {
    {VFIO_FEATURE_MIGRATION, VFU_FEATURE_GET, sizeof(struct vfu_feature_migration),
     feature_migration, "MIGRATION"},
    {VFIO_FEATURE_MIG_DEVICE_STATE, VFU_FEATURE_GET | VFU_FEATURE_SET,
     sizeof(struct vfu_feature_mig_state), feature_mig_state, "MIG_DEVICE_STATE"},
    {VFIO_FEATURE_DMA_LOGGING_START, VFU_FEATURE_SET, 0, feature_logging_start,
     "DMA_LOGGING_START"},
    {VFIO_FEATURE_DMA_LOGGING_STOP, VFU_FEATURE_SET, 0, feature_logging_stop, "DMA_LOGGING_STOP"},
    {VFIO_FEATURE_DMA_LOGGING_REPORT, VFU_FEATURE_GET, 0, feature_logging_report,
     "DMA_LOGGING_REPORT"},
    {VFIO_FEATURE_MIG_DATA_SIZE, VFU_FEATURE_GET, sizeof(struct vfu_feature_mig_data_size),
     feature_mig_data_size, "MIG_DATA_SIZE"},
    {ACCMIG_FEATURE_PRECOPY_INFO, VFU_FEATURE_GET, sizeof(struct vfu_feature_precopy_info),
     feature_precopy_info, "ACCMIG_PRECOPY_INFO"},
};

static int handle_device_feature(struct vfu_session *s, struct vfu_msg *m, struct reply *r)
{
    struct feature_call fc;
    const struct feature_entry *fe = NULL;
    uint32_t ops;

    memcpy(&fc.hdr, m->payload, sizeof(fc.hdr));
    fc.data = m->payload + sizeof(fc.hdr);
    fc.data_len = m->len - sizeof(fc.hdr);
    if (fc.hdr.flags & ~(VFU_FEATURE_MASK | VFU_FEATURE_GET | VFU_FEATURE_SET | VFU_FEATURE_PROBE))
        return fail(r, -EINVAL, "unknown feature flags");
    for (size_t i = 0; i < AM_ARRAY_SIZE(features); i++)
        if (features[i].feature == (fc.hdr.flags & VFU_FEATURE_MASK))
            fe = &features[i];
    if (!fe)
        return fail(r, -ENOTTY, "no such device feature");
    ops = fc.hdr.flags & (VFU_FEATURE_GET | VFU_FEATURE_SET);
    if (ops & ~fe->ops)
        return fail(r, -EINVAL, "GET/SET not supported by this feature");
    if (fc.hdr.flags & VFU_FEATURE_PROBE) {
        /* The probe's answer is the request header. */
        if (!reply_alloc(r, sizeof(fc.hdr)))
            return -ENOMEM;
        memcpy(r->data, &fc.hdr, sizeof(fc.hdr));
        return 0;
    }
    if (ops != VFU_FEATURE_GET && ops != VFU_FEATURE_SET)
        return fail(r, -EINVAL, "exactly one of GET and SET without PROBE");
    fc.get = ops == VFU_FEATURE_GET;
    if (fc.get && fc.hdr.argsz < sizeof(fc.hdr) + fe->get_len)
        return fail(r, -EINVAL, "argsz too small for the feature data");
    if (!fc.get && fc.hdr.argsz < m->len)
        return fail(r, -EINVAL, "argsz too small for the echoed request");
    return fe->fn(s, &fc, r);
}

/* ---- migration data ---- */

static int handle_mig_data_read(struct vfu_session *s, struct vfu_msg *m, struct reply *r)
{
    struct vfu_mig_data req;
    uint8_t *out;
    size_t got = 0;

    memcpy(&req, m->payload, sizeof(req));
    if (m->len != sizeof(req))
        return fail(r, -EINVAL, "payload is not a struct vfu_mig_data");
    if (req.size == 0)
        return fail(r, -EINVAL, "size 0");
    if (req.size > SESSION_MAX_XFER)
        return fail(r, -E2BIG, "size above max_data_xfer_size");
    if (req.argsz < sizeof(req) + (uint64_t)req.size)
        return fail(r, -EINVAL, "argsz too small for size bytes");
    out = reply_alloc(r, sizeof(req) + req.size);
    if (!out)
        return -ENOMEM;
    /* Fill as much as the stream has now: a short reply means end of
     * stream in STOP_COPY and "nothing more for now" in PRE_COPY. */
    while (got < req.size) {
        ssize_t n = s->ops->mig_data_read(s->ctx, out + sizeof(req) + got, req.size - got);
        if (n == 0 || n == -ENOMSG)
            break;
        if (n < 0) {
            if (got)
                break; /* deliver what we have; the error shows next time */
            return fail(r, (int)n, "the migration stream refused the read");
        }
        got += (size_t)n;
    }
    req.argsz = (uint32_t)(sizeof(req) + got);
    req.size = (uint32_t)got;
    memcpy(out, &req, sizeof(req));
    r->len = sizeof(req) + got;
    return 0;
}

static int handle_mig_data_write(struct vfu_session *s, struct vfu_msg *m, struct reply *r)
{
    struct vfu_mig_data req;
    ssize_t n;

    memcpy(&req, m->payload, sizeof(req));
    if (req.size > SESSION_MAX_XFER)
        return fail(r, -E2BIG, "size above max_data_xfer_size");
    if (m->len - sizeof(req) != req.size)
        return fail(r, -EINVAL, "data length differs from size");
    if (req.size == 0)
        return fail(r, -EINVAL, "size 0");
    n = s->ops->mig_data_write(s->ctx, m->payload + sizeof(req), req.size);
    if (n < 0) {
        am_log(AM_LOG_GUEST, "vfu", "%s: migration data refused: %s", s->vf->name,
               s->ops->mig_last_error(s->ctx));
        return fail(r, (int)n, "the migration stream refused the data");
    }
    if ((size_t)n != req.size)
        return fail(r, -EIO, "short write into the migration stream");
    return 0;
}

/* ---- dispatch ---- */

typedef int (*handler_fn)(struct vfu_session *s, struct vfu_msg *m, struct reply *r);

struct cmd_entry {
    handler_fn fn;
    size_t min_len; /* fixed part of the payload */
    size_t max_fds;
};

static const struct cmd_entry cmd_table[VFU_CMD_MAX] = {
    [VFU_CMD_VERSION] = {handle_version, sizeof(struct vfu_version), 0},
    [VFU_CMD_DMA_MAP] = {handle_dma_map, sizeof(struct vfu_dma_map), 1},
    [VFU_CMD_DMA_UNMAP] = {handle_dma_unmap, sizeof(struct vfu_dma_unmap), 0},
    [VFU_CMD_DEVICE_GET_INFO] = {handle_device_get_info, sizeof(struct vfu_device_info), 0},
    [VFU_CMD_DEVICE_GET_REGION_INFO] = {handle_region_info, sizeof(struct vfu_region_info), 0},
    [VFU_CMD_DEVICE_GET_REGION_IO_FDS] = {handle_region_io_fds, sizeof(struct vfu_region_io_fds), 0},
    [VFU_CMD_DEVICE_GET_IRQ_INFO] = {handle_irq_info, sizeof(struct vfu_irq_info), 0},
    [VFU_CMD_DEVICE_SET_IRQS] = {handle_set_irqs, sizeof(struct vfu_irq_set), QM_NUM_VECTORS},
    [VFU_CMD_REGION_READ] = {handle_region_read, sizeof(struct vfu_region_access), 0},
    [VFU_CMD_REGION_WRITE] = {handle_region_write, sizeof(struct vfu_region_access), 0},
    [VFU_CMD_DMA_READ] = {handle_dma_rw, 0, 0},
    [VFU_CMD_DMA_WRITE] = {handle_dma_rw, 0, 0},
    [VFU_CMD_DEVICE_RESET] = {handle_device_reset, 0, 0},
    [VFU_CMD_REGION_WRITE_MULTI] = {handle_region_write_multi, sizeof(struct vfu_write_multi), 0},
    [VFU_CMD_DEVICE_FEATURE] = {handle_device_feature, sizeof(struct vfu_feature), 0},
    [VFU_CMD_MIG_DATA_READ] = {handle_mig_data_read, sizeof(struct vfu_mig_data), 0},
    [VFU_CMD_MIG_DATA_WRITE] = {handle_mig_data_write, sizeof(struct vfu_mig_data), 0},
};

/* The one reply path: negative errno -> the wire's error field; the
 * reply's descriptor is closed once sent (or not sent). */
static int session_reply(struct vfu_session *s, const struct vfu_msg *m, int ret, struct reply *r)
{
    struct vfu_hdr h = {.msg_id = m->hdr.msg_id, .cmd = m->hdr.cmd, .flags = VFU_HDR_TYPE_REPLY};
    int sret = 0;

    if (ret < 0) {
        /* What we do not offer is its own log tier (STYLE 13). */
        enum am_log_level lvl = ret == -ENOTSUP || ret == -ENOTTY ? AM_LOG_UNIMP : AM_LOG_GUEST;
        am_log(lvl, "vfu", "%s: msg %u %s: %s (%s)", s->vf->name, m->hdr.msg_id,
               vfu_cmd_name(m->hdr.cmd), strerror(-ret), r->why ? r->why : "");
        h.flags |= VFU_HDR_ERROR;
        h.error = (uint32_t)-ret;
    } else if (s->trace) {
        am_log(AM_LOG_DEBUG, "vfu", "%s: msg %u %s: ok, %zu reply bytes", s->vf->name,
               m->hdr.msg_id, vfu_cmd_name(m->hdr.cmd), r->len);
    }
    if (!(m->hdr.flags & VFU_HDR_NO_REPLY)) {
        bool with_fd = ret >= 0 && r->fd >= 0;
        const int *fds = with_fd ? &r->fd : NULL;
        if (ret < 0 || !r->len) {
            sret = vfu_send_msg(&s->tran, &h, sizeof(h), fds, with_fd ? 1 : 0);
        } else {
            /* The header goes in front of the payload: one send. */
            memcpy(r->data - sizeof(h), &h, sizeof(h));
            sret = vfu_send_msg(&s->tran, r->data - sizeof(h), sizeof(h) + r->len, fds,
                                with_fd ? 1 : 0);
        }
        if (sret)
            am_log(AM_LOG_GUEST, "vfu", "%s: msg %u %s: reply not delivered (%s)", s->vf->name,
                   m->hdr.msg_id, vfu_cmd_name(m->hdr.cmd), strerror(-sret));
    }
    if (r->fd >= 0)
        close(r->fd);
    free(r->heap);
    return sret;
}

static int session_handle_locked(struct vfu_session *s, struct vfu_msg *m, struct reply *r)
{
    unsigned cmd = m->hdr.cmd;
    const struct cmd_entry *e = cmd < VFU_CMD_MAX ? &cmd_table[cmd] : NULL;

    vfu_vf_assert_session_locked(s->vf);
    if (!e || !e->fn)
        return fail(r, -ENOTSUP, "unknown command");
    if (!s->negotiated && cmd != VFU_CMD_VERSION)
        return fail(r, -EINVAL, "VERSION must come first");
    if (m->fds_lost || m->nfds > e->max_fds)
        return fail(r, -EINVAL, "more descriptors than the command takes");
    if (m->len < e->min_len)
        return fail(r, -EINVAL, "payload shorter than the command's structure");
    if (!vfu_cmd_allowed(cmd, session_mig_state(s)))
        return fail(r, -EINVAL, "not allowed in this migration state");
    return e->fn(s, m, r);
}

/* Handles m and answers. The handler runs with the VF's session_lock held;
 * the reply leaves after it is dropped (it is built in the session's own
 * buffer, which only this thread touches), so a client slow to read holds
 * only its own thread. The request's untaken descriptors are closed before
 * the reply leaves, so a client that sees the reply sees them gone. */
static int session_dispatch(struct vfu_session *s, struct vfu_msg *m)
{
    struct reply r = {.room = s->reply_buf, .fd = -1};
    int ret;

    pthread_mutex_lock(&s->vf->session_lock);
    s->in_handler = true;
    ret = session_handle_locked(s, m, &r);
    s->in_handler = false;
    pthread_mutex_unlock(&s->vf->session_lock);
    vfu_msg_release(m);
    return session_reply(s, m, ret, &r);
}

/* The framing of the stream cannot be trusted any more: say why, then the
 * session ends. */
static void session_framing_error(struct vfu_session *s, struct vfu_msg *m, int err)
{
    struct reply r = {.fd = -1, .why = err == -E2BIG ? "message above the maximum size"
                                                     : "bad header type or size"};
    m->hdr.flags = 0;
    session_reply(s, m, err, &r);
}

int vfu_session_process(struct vfu_session *s)
{
    assert(!s->in_handler); /* no re-entry from a device callback */
    for (unsigned i = 0; i < SESSION_MSGS_PER_CALL; i++) {
        struct vfu_msg m = {0};
        int ret = vfu_rx_step(&s->rx, &s->tran, &m);

        if (ret == 0)
            return 0;
        if (ret == -EINVAL || ret == -E2BIG) {
            session_framing_error(s, &m, ret);
            return ret;
        }
        if (ret < 0)
            return ret;
        ret = session_dispatch(s, &m);
        if (ret)
            return ret;
    }
    return 0;
}

int vfu_session_serve(struct vfu_session *s)
{
    assert(!s->in_handler);
    for (;;) {
        struct vfu_msg m = {0};
        /* Blocks without any lock: a client that sends half a message
         * holds up only itself. */
        int ret = vfu_rx_recv(&s->rx, &s->tran, &m);

        if (ret == -EINVAL || ret == -E2BIG) {
            session_framing_error(s, &m, ret);
            return ret;
        }
        if (ret < 0)
            return ret;
        ret = session_dispatch(s, &m);
        if (ret)
            return ret;
    }
}

int vfu_session_open(struct vfu_vf *vf, const struct vfu_tran *t, struct vfu_session **out)
{
    struct vfu_session *s = calloc(1, sizeof(*s));

    if (!s)
        return -ENOMEM;
    pthread_mutex_lock(&vf->session_lock);
    if (vf->session) {
        pthread_mutex_unlock(&vf->session_lock);
        free(s);
        return -EBUSY;
    }
    s->vf = vf;
    s->ops = vf->ops;
    s->ctx = vf->ops_ctx;
    s->tran = *t;
    s->twin_fd = -1;
    s->peer_max_fds = 1;
    s->peer_max_xfer = VFU_DEFAULT_MAX_XFER;
    s->max_dma_maps = VFU_DEFAULT_MAX_DMA_MAPS;
    s->trace = am_log_enabled(AM_LOG_DEBUG);
    pthread_mutex_init(&s->twin_lock, NULL);
    vfu_rx_init(&s->rx, VFU_HDR_TYPE_COMMAND, vfu_max_msg_size(SESSION_MAX_XFER),
                VFU_SERVER_MAX_MSG_FDS);
    if (t->fd >= 0)
        vfu_sock_set_send_timeout(t->fd, SEND_TIMEOUT_MS);
    vf->session = s;
    pthread_mutex_unlock(&vf->session_lock);
    am_log(AM_LOG_INFO, "vfu", "%s: client attached", vf->name);
    *out = s;
    return 0;
}

void vfu_session_close(struct vfu_session *s)
{
    struct vfu_vf *vf;

    if (!s)
        return;
    assert(!s->in_handler);
    vf = s->vf;
    /* Wake device threads waiting in twin DMA; new ones fail at once. */
    __atomic_store_n(&s->twin_broken, true, __ATOMIC_RELEASE);
    if (s->twin_fd >= 0)
        shutdown(s->twin_fd, SHUT_RDWR);
    pthread_mutex_lock(&vf->session_lock);
    s->ops->irq_set(s->ctx, 0, QM_NUM_VECTORS, NULL);
    s->ops->reset(s->ctx);
    if (s->ops->release)
        s->ops->release(s->ctx);
    /* Waits for DMA in flight; afterwards no remote range refers to s. */
    s->ops->dma_unmap_all(s->ctx);
    twin_close(s);
    vfu_rx_reset(&s->rx);
    pthread_mutex_destroy(&s->twin_lock);
    vf->session = NULL;
    pthread_mutex_unlock(&vf->session_lock);
    am_log(AM_LOG_INFO, "vfu", "%s: client detached; device reset, DMA unmapped, ready", vf->name);
    free(s);
}
