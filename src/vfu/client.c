/* vfu/client: the vfio-user client library. */
#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "vfu/client.h"
#include "vfu/vfu_tran.h"

#define CLIENT_DEFAULT_TIMEOUT_MS 10000
#define CLIENT_MAX_VECTORS 4u
#define CLIENT_SEND_TIMEOUT_MS 10000
/* Requests up to this size (header included) are built in one buffer and
 * leave with one send. */
#define CLIENT_TX_ROOM (sizeof(struct vfu_hdr) + VFU_RX_BUF_SIZE)
/* The largest region info (with its capabilities) we take: room for 254
 * sparse areas. A server that names more is refused (-EPROTO). */
#define CLIENT_REGION_INFO_MAX 4096u
/* A server that asks for a larger argsz every time is refused after this. */
#define CLIENT_REGION_INFO_TRIES 3

/* A region mapped by vfu_client_region_map: len bytes reserved at base
 * (the region size rounded up to pages), the sparse areas mapped over it. */
struct region_map {
    uint8_t *base;
    uint64_t size;
    size_t len;
};

/* The sub-regions of a region IO FDS reply we take (DEVICE_GET_REGION_IO_FDS):
 * more is -EPROTO. Room for every queue of a VF's BAR4 many times over. */
#define CLIENT_IO_FDS_MAX 1024u
#define CLIENT_IO_FDS_TRIES 3

/* One ioeventfd the server named for a region: an exact write of size
 * bytes at offset (any size when 0; with match, only of that value) may be
 * an increment of fd instead (KVM_IOEVENTFD's rule). */
struct io_fd_sub {
    uint64_t offset, size, datamatch;
    bool match;
    int fd;
};

/* A region's ioeventfds, set once (vfu_client_region_io_fds) and read
 * without a lock; the descriptors are the client's until destroy. */
struct io_fds {
    uint32_t nsub, nfds;
    struct io_fd_sub *sub;
    int fds[VFU_MSG_MAX_FDS];
};

/* Memory served to the server over the twin socket. */
struct host_map {
    uint64_t iova, size;
    uint8_t *host;
    unsigned perm;
};

struct vfu_client {
    /* lock protects the main socket's request/reply exchange: tran, rx,
     * tx, next_id and broken. */
    pthread_mutex_t lock;
    int fd;
    struct vfu_tran tran;
    struct vfu_rx rx;
    uint8_t tx[CLIENT_TX_ROOM];
    uint16_t next_id;
    bool broken;
    bool posted_writes;
    int timeout_ms;
    uint64_t waiting_since_ns; /* atomic: a request's send time while its reply is due, else 0 */
    int broken_err;            /* atomic: the errno that made the connection unusable */
    uint64_t our_max_xfer;
    struct vfu_client_server_caps caps;

    /* MSI eventfds; changed only by irqs_enable/irqs_disable. */
    int msi_efd[CLIENT_MAX_VECTORS];
    unsigned nvec;
    /* Written by vfu_client_irq_wake: ends one irq_wait early. */
    int wake_efd;

    /* The twin socket and the thread serving DMA_READ/DMA_WRITE on it.
     * host_lock protects hosts/nhosts against that thread. */
    int twin_fd;
    bool twin_running;
    pthread_t twin_thread;
    pthread_mutex_t host_lock;
    struct host_map *hosts;
    size_t nhosts;

    /* map_lock protects maps[] and region_fd[]: the descriptor of each
     * region's last REGION_INFO reply that carried one (kept, as QEMU keeps
     * it, until the next such reply or destroy). */
    pthread_mutex_t map_lock;
    struct region_map maps[VFU_NUM_REGIONS];
    int region_fd[VFU_NUM_REGIONS];
    /* Set (release) under map_lock by vfu_client_region_io_fds, then only
     * read (acquire), by the guest's kicks; freed by destroy. */
    _Atomic(struct io_fds *) io_fds[VFU_NUM_REGIONS];
};

/* ---- request / reply ---- */

/* Where a reply goes. Its payload is copied, in order, into iov (a part
 * with a NULL base is skipped over); a payload longer than the parts is
 * -EMSGSIZE. len is what came. Descriptors are moved into fds when
 * take_fds is set, closed otherwise. Filled under the client's lock, so
 * nothing of a reply outlives its call in the receive buffer. */
struct client_rep {
    struct iovec iov[3];
    unsigned niov;
    size_t len;
    bool take_fds;
    int fds[VFU_MSG_MAX_FDS];
    size_t nfds;
};

static int client_rep_fill(struct client_rep *rep, struct vfu_msg *m)
{
    size_t off = 0;

    rep->len = m->len;
    for (unsigned i = 0; i < rep->niov && off < m->len; i++) {
        size_t n = AM_MIN(rep->iov[i].iov_len, m->len - off);
        if (rep->iov[i].iov_base)
            memcpy(rep->iov[i].iov_base, m->payload + off, n);
        off += n;
    }
    if (off < m->len)
        return -EMSGSIZE;
    if (rep->take_fds) {
        for (size_t i = 0; i < m->nfds; i++)
            rep->fds[i] = vfu_msg_take_fd(m, i);
        rep->nfds = m->nfds;
    }
    return 0;
}

/* Sends a request under the lock: built in tx and sent with one send when
 * it fits and carries no descriptor, with sendmsg otherwise. */
static int client_send_locked(struct vfu_client *c, struct vfu_hdr *h, const struct iovec *parts,
                              unsigned nparts, const int *fds, size_t nfds)
{
    size_t len = sizeof(*h);

    for (unsigned i = 0; i < nparts && len <= sizeof(c->tx); i++)
        len += parts[i].iov_len;
    if (nfds || len > sizeof(c->tx))
        return vfu_send(&c->tran, h, parts, nparts, fds, nfds);
    memcpy(c->tx, h, sizeof(*h));
    len = sizeof(*h);
    for (unsigned i = 0; i < nparts; i++) {
        if (parts[i].iov_len)
            memcpy(c->tx + len, parts[i].iov_base, parts[i].iov_len);
        len += parts[i].iov_len;
    }
    return vfu_send_msg(&c->tran, c->tx, len, NULL, 0);
}

/* Sends cmd with the payload parts and fds and waits for its reply (one
 * blocking read, usually), which goes into *rep; returns 0 or a negative
 * errno (error replies included). */
static int client_call_msg(struct vfu_client *c, uint16_t cmd, const struct iovec *parts,
                           unsigned nparts, const int *fds, size_t nfds, struct client_rep *rep)
{
    struct vfu_hdr h = {.cmd = cmd, .flags = VFU_HDR_TYPE_COMMAND};
    struct vfu_msg m;
    int ret;

    rep->len = 0;
    rep->nfds = 0;
    pthread_mutex_lock(&c->lock);
    if (c->broken) {
        ret = -EIO;
        goto out;
    }
    h.msg_id = ++c->next_id;
    ret = client_send_locked(c, &h, parts, nparts, fds, nfds);
    if (ret)
        goto out_broken;
    __atomic_store_n(&c->waiting_since_ns, am_now_ns(), __ATOMIC_RELAXED);
    ret = vfu_rx_recv(&c->rx, &c->tran, &m);
    __atomic_store_n(&c->waiting_since_ns, 0, __ATOMIC_RELAXED);
    if (ret < 0)
        goto out_broken;
    if (m.hdr.msg_id != h.msg_id || m.hdr.cmd != cmd) {
        vfu_msg_release(&m);
        ret = -EPROTO;
        goto out_broken;
    }
    if (m.hdr.flags & VFU_HDR_ERROR)
        ret = m.hdr.error ? -(int)AM_MIN(m.hdr.error, 4095u) : -EIO;
    else
        ret = client_rep_fill(rep, &m);
    vfu_msg_release(&m);
    goto out;
out_broken:
    /* Replies can no longer be matched to requests. */
    c->broken = true;
    __atomic_store_n(&c->broken_err, ret, __ATOMIC_RELAXED);
out:
    pthread_mutex_unlock(&c->lock);
    return ret;
}

/* Sends cmd with the no-reply flag: nothing comes back. */
static int client_post_msg(struct vfu_client *c, uint16_t cmd, const struct iovec *parts,
                           unsigned nparts)
{
    struct vfu_hdr h = {.cmd = cmd, .flags = VFU_HDR_TYPE_COMMAND | VFU_HDR_NO_REPLY};
    int ret;

    pthread_mutex_lock(&c->lock);
    if (c->broken) {
        ret = -EIO;
    } else {
        h.msg_id = ++c->next_id;
        ret = client_send_locked(c, &h, parts, nparts, NULL, 0);
        if (ret)
            c->broken = true;
    }
    pthread_mutex_unlock(&c->lock);
    return ret;
}

int vfu_client_call(struct vfu_client *c, uint16_t cmd, const void *req, size_t req_len,
                    const int *fds, size_t nfds, void *rep, size_t rep_cap, size_t *rep_len)
{
    struct iovec part = {(void *)req, req_len};
    struct client_rep r = {.iov = {{rep, rep ? rep_cap : 0}}, .niov = 1};
    int ret = client_call_msg(c, cmd, &part, req_len ? 1 : 0, fds, nfds, &r);

    if (!ret && rep_len)
        *rep_len = r.len;
    return ret;
}

/* A call whose reply must be exactly rep_len bytes. */
static int client_call_exact(struct vfu_client *c, uint16_t cmd, const void *req, size_t req_len,
                             const int *fds, size_t nfds, void *rep, size_t rep_len)
{
    size_t got = 0;
    int ret = vfu_client_call(c, cmd, req, req_len, fds, nfds, rep, rep_len, &got);
    if (ret)
        return ret;
    return got == rep_len ? 0 : -EPROTO;
}

static uint64_t client_xfer(const struct vfu_client *c)
{
    return AM_MIN(c->caps.max_data_xfer_size, c->our_max_xfer);
}

/* ---- the twin socket ---- */

static const struct host_map *host_find_locked(struct vfu_client *c, uint64_t iova,
                                               uint64_t len, unsigned perm)
{
    if (pthread_mutex_trylock(&c->host_lock) == 0) { /* STYLE 11: must be held */
        pthread_mutex_unlock(&c->host_lock);
        assert(!"host_lock not held");
    }
    for (size_t i = 0; i < c->nhosts; i++) {
        const struct host_map *h = &c->hosts[i];
        if (iova >= h->iova && am_range_ok(iova - h->iova, len, h->size) && (h->perm & perm) == perm)
            return h;
    }
    return NULL;
}

/* Serves one DMA_READ/DMA_WRITE from the server. */
static int twin_serve(struct vfu_client *c, struct vfu_tran *t, struct vfu_msg *m)
{
    struct vfu_hdr h = {.msg_id = m->hdr.msg_id, .cmd = m->hdr.cmd, .flags = VFU_HDR_TYPE_REPLY};
    struct vfu_dma_access req;
    const struct host_map *hm;
    struct iovec parts[2];
    unsigned nparts = 0;
    int err = 0;

    if ((m->hdr.cmd != VFU_CMD_DMA_READ && m->hdr.cmd != VFU_CMD_DMA_WRITE) ||
        m->len < sizeof(req)) {
        err = EINVAL;
    } else {
        memcpy(&req, m->payload, sizeof(req));
        if (req.count > c->our_max_xfer ||
            (m->hdr.cmd == VFU_CMD_DMA_WRITE && m->len - sizeof(req) != req.count) ||
            (m->hdr.cmd == VFU_CMD_DMA_READ && m->len != sizeof(req)))
            err = EINVAL;
    }
    pthread_mutex_lock(&c->host_lock);
    if (!err) {
        hm = host_find_locked(c, req.addr, req.count,
                              m->hdr.cmd == VFU_CMD_DMA_READ ? IOMMU_READ : IOMMU_WRITE);
        if (!hm) {
            err = EFAULT;
        } else if (m->hdr.cmd == VFU_CMD_DMA_WRITE) {
            memcpy(hm->host + (req.addr - hm->iova), m->payload + sizeof(req), req.count);
            parts[nparts++] = (struct iovec){&req, sizeof(req)};
        } else {
            parts[nparts++] = (struct iovec){&req, sizeof(req)};
            parts[nparts++] = (struct iovec){hm->host + (req.addr - hm->iova), req.count};
        }
    }
    if (err) {
        h.flags |= VFU_HDR_ERROR;
        h.error = (uint32_t)err;
        nparts = 0;
    }
    /* Sent under host_lock: the memory read stays mapped until sent. */
    err = vfu_send(t, &h, parts, nparts, NULL, 0);
    pthread_mutex_unlock(&c->host_lock);
    return err;
}

static void *twin_thread_main(void *arg)
{
    struct vfu_client *c = arg;
    struct vfu_tran t;
    struct vfu_rx rx;

    vfu_tran_sock_init(&t, c->twin_fd);
    vfu_rx_init(&rx, VFU_HDR_TYPE_COMMAND, vfu_max_msg_size(c->our_max_xfer), 0);
    for (;;) {
        struct vfu_msg m;
        int ret = vfu_rx_recv(&rx, &t, &m); /* the twin socket has no receive timeout */
        if (ret < 0)
            break; /* closed (destroy shuts the socket down) or broken */
        ret = twin_serve(c, &t, &m);
        vfu_msg_release(&m);
        if (ret)
            break;
    }
    vfu_rx_reset(&rx);
    return NULL;
}

/* ---- connect / destroy ---- */

static int client_version(struct vfu_client *c, bool want_twin, bool coop_db)
{
    struct vfu_caps ours = {
        .has_max_msg_fds = true, .max_msg_fds = 8,
        .has_max_xfer = true, .max_xfer = c->our_max_xfer,
        .has_max_dma_maps = true, .max_dma_maps = VFU_DEFAULT_MAX_DMA_MAPS,
        .has_pgsizes = true, .pgsizes = VFU_DEFAULT_PGSIZES,
        .has_write_multiple = true, .write_multiple = false,
        .has_twin = want_twin, .twin_supported = want_twin,
        .has_coop_db = coop_db, .coop_db = coop_db,
    };
    struct vfu_version v = {.major = VFU_VERSION_MAJOR, .minor = VFU_VERSION_MINOR};
    struct vfu_caps theirs = {0};
    char json[512];
    char rep_json[4096]; /* a server's reply is no larger than our request */
    struct iovec parts[2];
    struct client_rep r = {.iov = {{&v, sizeof(v)}, {rep_json, sizeof(rep_json)}},
                           .niov = 2, .take_fds = true};
    int n, ret;

    n = vfu_caps_format(&ours, json, sizeof(json));
    if (n < 0)
        return n;
    parts[0] = (struct iovec){&v, sizeof(v)};
    parts[1] = (struct iovec){json, (size_t)n};
    ret = client_call_msg(c, VFU_CMD_VERSION, parts, 2, NULL, 0, &r);
    if (ret == -EMSGSIZE)
        return -EPROTO;
    if (ret)
        return ret;
    ret = -EPROTO;
    if (r.len < sizeof(v))
        goto out;
    if (v.major != VFU_VERSION_MAJOR || v.minor > VFU_VERSION_MINOR)
        goto out;
    if (r.len > sizeof(v) && vfu_caps_parse(rep_json, r.len - sizeof(v), &theirs))
        goto out;
    c->caps.major = v.major;
    c->caps.minor = v.minor;
    c->caps.max_msg_fds = theirs.has_max_msg_fds ? theirs.max_msg_fds : 1;
    c->caps.max_data_xfer_size = theirs.has_max_xfer ? theirs.max_xfer : VFU_DEFAULT_MAX_XFER;
    c->caps.max_dma_maps = theirs.has_max_dma_maps ? theirs.max_dma_maps : VFU_DEFAULT_MAX_DMA_MAPS;
    c->caps.pgsizes = theirs.has_pgsizes ? theirs.pgsizes : VFU_DEFAULT_PGSIZES;
    c->caps.write_multiple = theirs.has_write_multiple && theirs.write_multiple;
    c->caps.cooperative_doorbells = coop_db && theirs.has_coop_db && theirs.coop_db;
    if (want_twin && theirs.twin_supported) {
        /* Supported with a valid descriptor index, or the reply is
         * inconsistent (the spec says: abort). */
        if (!theirs.has_twin_fd_index || theirs.twin_fd_index >= r.nfds)
            goto out;
        c->twin_fd = r.fds[theirs.twin_fd_index];
        r.fds[theirs.twin_fd_index] = -1;
    }
    ret = 0;
out:
    for (size_t i = 0; i < r.nfds; i++)
        if (r.fds[i] >= 0)
            close(r.fds[i]);
    return ret;
}

int vfu_client_connect(const char *path, const struct vfu_client_opts *opts,
                       struct vfu_client **out)
{
    struct vfu_client_opts def = {0};
    struct vfu_client *c;
    int ret;

    if (!opts)
        opts = &def;
    if (opts->max_data_xfer_size > VFU_MAX_MAX_XFER)
        return -EINVAL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->fd = c->twin_fd = -1;
    c->wake_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->wake_efd < 0) {
        free(c);
        return -errno;
    }
    for (unsigned v = 0; v < CLIENT_MAX_VECTORS; v++)
        c->msi_efd[v] = -1;
    for (unsigned i = 0; i < VFU_NUM_REGIONS; i++)
        c->region_fd[i] = -1;
    c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : CLIENT_DEFAULT_TIMEOUT_MS;
    c->posted_writes = opts->posted_writes;
    c->our_max_xfer = opts->max_data_xfer_size ? opts->max_data_xfer_size : VFU_DEFAULT_MAX_XFER;
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->host_lock, NULL);
    pthread_mutex_init(&c->map_lock, NULL);
    ret = vfu_sock_connect(path, &c->fd);
    if (ret)
        goto fail;
    vfu_sock_set_send_timeout(c->fd, CLIENT_SEND_TIMEOUT_MS);
    /* Bounds each wait for a reply: the reply read blocks (no poll). */
    vfu_sock_set_recv_timeout(c->fd, c->timeout_ms);
    vfu_tran_sock_init(&c->tran, c->fd);
    /* Replies are bounded by what we ask for, and we never ask for more
     * than our own transfer size. */
    vfu_rx_init(&c->rx, VFU_HDR_TYPE_REPLY, vfu_max_msg_size(AM_MAX(c->our_max_xfer, 4096u)),
                VFU_MSG_MAX_FDS);
    ret = client_version(c, opts->twin_socket, opts->cooperative_doorbells);
    if (ret)
        goto fail;
    if (c->twin_fd >= 0) {
        vfu_sock_set_send_timeout(c->twin_fd, CLIENT_SEND_TIMEOUT_MS);
        ret = -pthread_create(&c->twin_thread, NULL, twin_thread_main, c);
        if (ret)
            goto fail;
        c->twin_running = true;
        c->caps.twin_socket = true;
    }
    *out = c;
    return 0;
fail:
    vfu_client_destroy(c);
    return ret;
}

void vfu_client_destroy(struct vfu_client *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd); /* the server resets the VF and closes the twin */
    if (c->twin_fd >= 0) {
        shutdown(c->twin_fd, SHUT_RDWR);
        if (c->twin_running)
            pthread_join(c->twin_thread, NULL);
        close(c->twin_fd);
    }
    for (unsigned v = 0; v < CLIENT_MAX_VECTORS; v++)
        if (c->msi_efd[v] >= 0)
            close(c->msi_efd[v]);
    close(c->wake_efd);
    vfu_rx_reset(&c->rx);
    free(c->hosts);
    /* The mappings outlive the connection (a file mapping holds its file):
     * they go only here. */
    for (unsigned i = 0; i < VFU_NUM_REGIONS; i++) {
        if (c->maps[i].base)
            munmap(c->maps[i].base, c->maps[i].len);
        if (c->region_fd[i] >= 0)
            close(c->region_fd[i]);
        struct io_fds *f = atomic_load_explicit(&c->io_fds[i], memory_order_relaxed);

        if (f) {
            for (uint32_t k = 0; k < f->nfds; k++)
                close(f->fds[k]);
            free(f->sub);
            free(f);
        }
    }
    pthread_mutex_destroy(&c->map_lock);
    pthread_mutex_destroy(&c->host_lock);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void vfu_client_server_caps(const struct vfu_client *c, struct vfu_client_server_caps *out)
{
    *out = c->caps;
}

/* ---- description ---- */

int vfu_client_device_info(struct vfu_client *c, struct vfu_device_info *out)
{
    struct vfu_device_info req = {.argsz = sizeof(req)};
    return client_call_exact(c, VFU_CMD_DEVICE_GET_INFO, &req, sizeof(req), NULL, 0, out,
                             sizeof(*out));
}

/* Keeps fd as region index's descriptor (closing the one before). */
static void region_fd_keep(struct vfu_client *c, uint32_t index, int fd)
{
    pthread_mutex_lock(&c->map_lock);
    if (c->region_fd[index] >= 0)
        close(c->region_fd[index]);
    c->region_fd[index] = fd;
    pthread_mutex_unlock(&c->map_lock);
}

/* REGION_INFO with its capabilities, as QEMU's vfio_device_get_region_info
 * asks: argsz 32 first, then again with the argsz the reply names while it
 * is larger than the one asked with (a short reply's descriptor is closed).
 * buf (CLIENT_REGION_INFO_MAX bytes) gets the info and its caps, *len how
 * many came, *fd the final reply's descriptor (the caller's) or -1. A reply
 * longer than the argsz asked with, shorter than the info, with more than
 * one descriptor, or an argsz above CLIENT_REGION_INFO_MAX is -EPROTO. */
static int region_query(struct vfu_client *c, uint32_t index, uint8_t *buf, size_t *len,
                        int *fd_out)
{
    uint32_t argsz = sizeof(struct vfu_region_info);

    if (index >= VFU_NUM_REGIONS)
        return -EINVAL;
    for (int tries = 0; tries < CLIENT_REGION_INFO_TRIES; tries++) {
        struct vfu_region_info req = {.argsz = argsz, .index = index}, got;
        struct iovec part = {&req, sizeof(req)};
        struct client_rep r = {.iov = {{buf, argsz}}, .niov = 1, .take_fds = true};
        int ret = client_call_msg(c, VFU_CMD_DEVICE_GET_REGION_INFO, &part, 1, NULL, 0, &r);
        int fd = -1;

        if (ret == -EMSGSIZE)
            return -EPROTO; /* larger than argsz: the rule is broken */
        if (ret)
            return ret;
        /* One descriptor at most: the region's. */
        for (size_t i = 0; i < r.nfds; i++) {
            if (i == 0)
                fd = r.fds[0];
            else
                close(r.fds[i]);
        }
        if (r.len < sizeof(got) || r.nfds > 1) {
            if (fd >= 0)
                close(fd);
            return -EPROTO;
        }
        memcpy(&got, buf, sizeof(got));
        if (got.argsz > argsz) {
            if (fd >= 0)
                close(fd);
            if (got.argsz > CLIENT_REGION_INFO_MAX)
                return -EPROTO;
            argsz = got.argsz;
            continue;
        }
        *fd_out = fd;
        *len = r.len;
        return 0;
    }
    return -EPROTO;
}

int vfu_client_region_info(struct vfu_client *c, uint32_t index, struct vfu_region_info *out)
{
    uint8_t buf[CLIENT_REGION_INFO_MAX];
    size_t len;
    int fd, ret = region_query(c, index, buf, &len, &fd);

    if (ret)
        return ret;
    region_fd_keep(c, index, fd);
    memcpy(out, buf, sizeof(*out));
    return 0;
}

int vfu_client_irq_info(struct vfu_client *c, uint32_t index, struct vfu_irq_info *out)
{
    struct vfu_irq_info req = {.argsz = sizeof(req), .index = index};
    return client_call_exact(c, VFU_CMD_DEVICE_GET_IRQ_INFO, &req, sizeof(req), NULL, 0, out,
                             sizeof(*out));
}

/* ---- regions ---- */

int vfu_client_region_read(struct vfu_client *c, uint32_t region, uint64_t off, void *buf,
                           uint32_t len)
{
    struct vfu_region_access req = {.offset = off, .region = region, .count = len};
    struct vfu_region_access echo;
    struct iovec part = {&req, sizeof(req)};
    /* The data lands in buf straight from the receive buffer. */
    struct client_rep r = {.iov = {{&echo, sizeof(echo)}, {buf, len}}, .niov = 2};
    int ret;

    if (len == 0 || len > client_xfer(c))
        return -EINVAL;
    ret = client_call_msg(c, VFU_CMD_REGION_READ, &part, 1, NULL, 0, &r);
    if (ret == -EMSGSIZE)
        return -EPROTO;
    if (ret)
        return ret;
    return r.len == sizeof(req) + len ? 0 : -EPROTO;
}

int vfu_client_region_write(struct vfu_client *c, uint32_t region, uint64_t off, const void *buf,
                            uint32_t len)
{
    struct vfu_region_access req = {.offset = off, .region = region, .count = len};
    struct vfu_region_access echo;
    struct iovec parts[2] = {{&req, sizeof(req)}, {(void *)buf, len}};
    struct client_rep r = {.iov = {{&echo, sizeof(echo)}}, .niov = 1};
    int ret;

    if (len == 0 || len > client_xfer(c))
        return -EINVAL;
    if (c->posted_writes)
        return client_post_msg(c, VFU_CMD_REGION_WRITE, parts, 2);
    ret = client_call_msg(c, VFU_CMD_REGION_WRITE, parts, 2, NULL, 0, &r);
    if (ret == -EMSGSIZE)
        return -EPROTO;
    if (ret)
        return ret;
    return r.len == sizeof(req) ? 0 : -EPROTO;
}

/* ---- DMA ---- */

static uint32_t dma_flags(unsigned perm)
{
    return (perm & IOMMU_READ ? VFU_DMA_FLAG_READ : 0) | (perm & IOMMU_WRITE ? VFU_DMA_FLAG_WRITE : 0);
}

int vfu_client_dma_map_fd(struct vfu_client *c, uint64_t iova, uint64_t size, int fd,
                          uint64_t offset, unsigned perm)
{
    struct vfu_dma_map req = {.argsz = sizeof(req), .flags = dma_flags(perm), .offset = offset,
                              .addr = iova, .size = size};
    if (fd < 0)
        return -EINVAL;
    return client_call_exact(c, VFU_CMD_DMA_MAP, &req, sizeof(req), &fd, 1, NULL, 0);
}

/* Forget the host ranges the server no longer maps: the one at iova/size
 * (and host, when given), or all of them when all. */
static void hosts_forget_match(struct vfu_client *c, uint64_t iova, uint64_t size,
                               const void *host, bool all)
{
    pthread_mutex_lock(&c->host_lock);
    for (size_t i = 0; i < c->nhosts;) {
        const struct host_map *h = &c->hosts[i];
        if (all || (h->iova == iova && h->size == size && (!host || h->host == host)))
            c->hosts[i] = c->hosts[--c->nhosts];
        else
            i++;
    }
    pthread_mutex_unlock(&c->host_lock);
}

static void hosts_forget(struct vfu_client *c, uint64_t iova, uint64_t size, const void *host)
{
    hosts_forget_match(c, iova, size, host, false);
}

/* After a DMA_UNMAP of [iova, iova+size) succeeded: the server removed
 * every mapping wholly inside it (the end may be 2^64, so only last bytes
 * are compared), and so does the record of host memory served over the
 * twin socket. */
static void hosts_forget_inside(struct vfu_client *c, uint64_t iova, uint64_t size)
{
    uint64_t last = iova + (size - 1); /* the server checked: no wrap, size > 0 */

    pthread_mutex_lock(&c->host_lock);
    for (size_t i = 0; i < c->nhosts;) {
        const struct host_map *h = &c->hosts[i];
        if (h->iova >= iova && h->iova - iova + (h->size - 1) <= last - iova)
            c->hosts[i] = c->hosts[--c->nhosts];
        else
            i++;
    }
    pthread_mutex_unlock(&c->host_lock);
}

int vfu_client_dma_map_host(struct vfu_client *c, uint64_t iova, uint64_t size, void *host,
                            unsigned perm)
{
    struct vfu_dma_map req = {.argsz = sizeof(req), .flags = dma_flags(perm), .addr = iova,
                              .size = size};
    struct host_map *grown;
    int ret;

    if (!c->caps.twin_socket)
        return -ENOTSUP;
    if (!host || size == 0)
        return -EINVAL;
    /* Registered before the map, so the server never sees a hole. */
    pthread_mutex_lock(&c->host_lock);
    grown = realloc(c->hosts, (c->nhosts + 1) * sizeof(*c->hosts));
    if (grown) {
        c->hosts = grown;
        c->hosts[c->nhosts++] = (struct host_map){iova, size, host, perm};
    }
    pthread_mutex_unlock(&c->host_lock);
    if (!grown)
        return -ENOMEM;
    ret = client_call_exact(c, VFU_CMD_DMA_MAP, &req, sizeof(req), NULL, 0, NULL, 0);
    if (ret)
        hosts_forget(c, iova, size, host);
    return ret;
}

int vfu_client_dma_unmap(struct vfu_client *c, uint64_t iova, uint64_t size)
{
    struct vfu_dma_unmap req = {.argsz = sizeof(req), .addr = iova, .size = size};
    struct vfu_dma_unmap rep;
    int ret = client_call_exact(c, VFU_CMD_DMA_UNMAP, &req, sizeof(req), NULL, 0, &rep,
                                sizeof(rep));
    if (!ret && size)
        hosts_forget_inside(c, iova, size);
    return ret;
}

int vfu_client_dma_unmap_all(struct vfu_client *c)
{
    struct vfu_dma_unmap req = {.argsz = sizeof(req), .flags = VFU_DMA_UNMAP_FLAG_ALL};
    struct vfu_dma_unmap rep;
    int ret = client_call_exact(c, VFU_CMD_DMA_UNMAP, &req, sizeof(req), NULL, 0, &rep,
                                sizeof(rep));
    if (!ret)
        hosts_forget_match(c, 0, 0, NULL, true);
    return ret;
}

/* ---- interrupts ---- */

int vfu_client_irqs_enable(struct vfu_client *c, unsigned nvec)
{
    struct vfu_irq_set req = {.argsz = sizeof(req),
                              .flags = VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_TRIGGER,
                              .index = VFU_IRQ_MSI};
    int efd[CLIENT_MAX_VECTORS];
    unsigned per_msg;
    int ret = 0;

    if (nvec == 0 || nvec > CLIENT_MAX_VECTORS)
        return -EINVAL;
    vfu_client_irqs_disable(c);
    for (unsigned v = 0; v < nvec; v++) {
        efd[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (efd[v] < 0) {
            ret = -errno;
            while (v--)
                close(efd[v]);
            return ret;
        }
    }
    /* No more descriptors per message than the server takes. */
    per_msg = (unsigned)AM_MAX(AM_MIN(c->caps.max_msg_fds, (uint64_t)nvec), 1u);
    for (unsigned v = 0; v < nvec && !ret; v += per_msg) {
        req.start = v;
        req.count = AM_MIN(per_msg, nvec - v);
        ret = client_call_exact(c, VFU_CMD_DEVICE_SET_IRQS, &req, sizeof(req), efd + v, req.count,
                                NULL, 0);
    }
    if (ret) {
        for (unsigned v = 0; v < nvec; v++)
            close(efd[v]);
        vfu_client_irqs_disable(c);
        return ret;
    }
    memcpy(c->msi_efd, efd, nvec * sizeof(int));
    c->nvec = nvec;
    return 0;
}

int vfu_client_irqs_disable(struct vfu_client *c)
{
    struct vfu_irq_set req = {.argsz = sizeof(req),
                              .flags = VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER,
                              .index = VFU_IRQ_MSI};
    int ret = client_call_exact(c, VFU_CMD_DEVICE_SET_IRQS, &req, sizeof(req), NULL, 0, NULL, 0);

    for (unsigned v = 0; v < CLIENT_MAX_VECTORS; v++) {
        if (c->msi_efd[v] >= 0)
            close(c->msi_efd[v]);
        c->msi_efd[v] = -1;
    }
    c->nvec = 0;
    return ret;
}

int vfu_client_irq_wait(struct vfu_client *c, unsigned vector, int timeout_ms)
{
    struct pollfd p[2];
    uint64_t v;
    int ret;

    if (vector >= c->nvec || c->msi_efd[vector] < 0)
        return -EINVAL;
    p[0] = (struct pollfd){.fd = c->msi_efd[vector], .events = POLLIN};
    p[1] = (struct pollfd){.fd = c->wake_efd, .events = POLLIN};
    do {
        ret = poll(p, 2, timeout_ms);
    } while (ret < 0 && errno == EINTR);
    if (ret < 0)
        return -errno;
    if (ret == 0)
        return -ETIMEDOUT;
    if (p[0].revents) {
        /* Another waiter may have taken it (EAGAIN): that firing is consumed. */
        if (read(p[0].fd, &v, sizeof(v)) != sizeof(v) && errno != EAGAIN)
            return -errno;
        return 0;
    }
    /* Another waiter may have taken the wake: it ends one wait only. */
    if (read(c->wake_efd, &v, sizeof(v)) != sizeof(v) && errno != EAGAIN)
        return -errno;
    return -EINTR;
}

void vfu_client_irq_wake(struct vfu_client *c)
{
    uint64_t one = 1;
    /* Fails only with EAGAIN on a full counter, which wakes anyway. */
    ssize_t n = write(c->wake_efd, &one, sizeof(one));

    (void)n;
}

int vfu_client_reset(struct vfu_client *c)
{
    return client_call_exact(c, VFU_CMD_DEVICE_RESET, NULL, 0, NULL, 0, NULL, 0);
}

/* ---- device features ---- */

/* GET feature: reply data (after the 8-byte header) must be exactly len. */
static int feature_get(struct vfu_client *c, uint32_t feature, const void *req_data,
                       size_t req_len, void *out, size_t len)
{
    struct vfu_feature h = {.argsz = (uint32_t)(sizeof(h) + AM_MAX(len, req_len)),
                            .flags = feature | VFU_FEATURE_GET};
    struct iovec parts[2] = {{&h, sizeof(h)}, {(void *)req_data, req_len}};
    struct client_rep r = {.iov = {{NULL, sizeof(h)}, {out, len}}, .niov = 2};
    int ret = client_call_msg(c, VFU_CMD_DEVICE_FEATURE, parts, req_len ? 2 : 1, NULL, 0, &r);

    if (ret == -EMSGSIZE)
        return -EPROTO;
    if (ret)
        return ret;
    return r.len == sizeof(h) + len ? 0 : -EPROTO;
}

/* SET feature; the echoed data (same length) is copied to out if given. */
static int feature_set(struct vfu_client *c, uint32_t feature, const void *data, size_t len,
                       void *out)
{
    struct vfu_feature h = {.argsz = (uint32_t)(sizeof(h) + len), .flags = feature | VFU_FEATURE_SET};
    struct iovec parts[2] = {{&h, sizeof(h)}, {(void *)data, len}};
    struct client_rep r = {.iov = {{NULL, sizeof(h)}, {out, len}}, .niov = 2};
    int ret = client_call_msg(c, VFU_CMD_DEVICE_FEATURE, parts, len ? 2 : 1, NULL, 0, &r);

    if (ret == -EMSGSIZE)
        return -EPROTO;
    if (ret)
        return ret;
    return r.len == sizeof(h) + len ? 0 : -EPROTO;
}

int vfu_client_mig_flags(struct vfu_client *c, uint64_t *flags)
{
    struct vfu_feature_migration out;
    int ret = feature_get(c, VFIO_FEATURE_MIGRATION, NULL, 0, &out, sizeof(out));
    if (!ret)
        *flags = out.flags;
    return ret;
}

int vfu_client_mig_state_get(struct vfu_client *c, enum vfio_mig_state *state)
{
    struct vfu_feature_mig_state out;
    int ret = feature_get(c, VFIO_FEATURE_MIG_DEVICE_STATE, NULL, 0, &out, sizeof(out));
    if (!ret)
        *state = (enum vfio_mig_state)out.device_state;
    return ret;
}

int vfu_client_mig_state_set(struct vfu_client *c, enum vfio_mig_state target)
{
    struct vfu_feature_mig_state req = {.device_state = (uint32_t)target, .data_fd = -1};
    return feature_set(c, VFIO_FEATURE_MIG_DEVICE_STATE, &req, sizeof(req), NULL);
}

int vfu_client_mig_data_size(struct vfu_client *c, uint64_t *stop_copy_length)
{
    struct vfu_feature_mig_data_size out;
    int ret = feature_get(c, VFIO_FEATURE_MIG_DATA_SIZE, NULL, 0, &out, sizeof(out));
    if (!ret)
        *stop_copy_length = out.stop_copy_length;
    return ret;
}

int vfu_client_precopy_info(struct vfu_client *c, uint64_t *initial_bytes, uint64_t *dirty_bytes)
{
    struct vfu_feature_precopy_info out;
    int ret = feature_get(c, ACCMIG_FEATURE_PRECOPY_INFO, NULL, 0, &out, sizeof(out));
    if (!ret) {
        *initial_bytes = out.initial_bytes;
        *dirty_bytes = out.dirty_bytes;
    }
    return ret;
}

int vfu_client_dma_logging_start(struct vfu_client *c, uint64_t *page_size,
                                 const struct iommu_range *ranges, uint32_t nranges)
{
    struct vfu_feature_dma_logging_control ctl = {.page_size = *page_size, .num_ranges = nranges};
    size_t len = sizeof(ctl) + (size_t)nranges * sizeof(struct vfu_feature_dma_logging_range);
    uint8_t *buf;
    int ret;

    if (nranges > VFU_DMA_LOGGING_MAX_RANGES || (nranges && !ranges))
        return -EINVAL;
    buf = malloc(len);
    if (!buf)
        return -ENOMEM;
    memcpy(buf, &ctl, sizeof(ctl));
    for (uint32_t i = 0; i < nranges; i++) {
        struct vfu_feature_dma_logging_range w = {ranges[i].iova, ranges[i].length};
        memcpy(buf + sizeof(ctl) + i * sizeof(w), &w, sizeof(w));
    }
    ret = feature_set(c, VFIO_FEATURE_DMA_LOGGING_START, buf, len, buf);
    if (!ret) {
        memcpy(&ctl, buf, sizeof(ctl));
        *page_size = ctl.page_size;
    }
    free(buf);
    return ret;
}

int vfu_client_dma_logging_stop(struct vfu_client *c)
{
    return feature_set(c, VFIO_FEATURE_DMA_LOGGING_STOP, NULL, 0, NULL);
}

/* One REPORT whose bitmap fits a transfer; bitmap receives its words. */
static int logging_report_one(struct vfu_client *c, uint64_t iova, uint64_t length,
                              uint64_t page_size, uint64_t *bitmap)
{
    struct vfu_feature_dma_logging_report req = {iova, length, page_size};
    uint64_t bytes = am_bitmap_words(length / page_size) * 8;
    struct vfu_feature h = {.argsz = (uint32_t)(sizeof(h) + sizeof(req) + bytes),
                            .flags = VFIO_FEATURE_DMA_LOGGING_REPORT | VFU_FEATURE_GET};
    struct iovec parts[2] = {{&h, sizeof(h)}, {&req, sizeof(req)}};
    struct client_rep r = {.iov = {{NULL, sizeof(h) + sizeof(req)}, {bitmap, bytes}}, .niov = 2};
    int ret = client_call_msg(c, VFU_CMD_DEVICE_FEATURE, parts, 2, NULL, 0, &r);

    if (ret == -EMSGSIZE)
        return -EPROTO;
    if (ret)
        return ret;
    return r.len == sizeof(h) + sizeof(req) + bytes ? 0 : -EPROTO;
}

int vfu_client_dma_logging_report(struct vfu_client *c, uint64_t iova, uint64_t length,
                                  uint64_t page_size, uint64_t *bitmap)
{
    /* Pages per request: whole u64 words of bitmap within a transfer. */
    uint64_t max_pages = (client_xfer(c) - 64) / 8 * 64;
    uint64_t end;

    if (!AM_IS_POW2(page_size) || page_size < IOMMU_PAGE_SIZE || length == 0 ||
        (iova | length) & (page_size - 1) || am_add_overflows_u64(iova, length, &end) || !bitmap)
        return -EINVAL;
    for (uint64_t done = 0; done < length;) {
        uint64_t pages = AM_MIN((length - done) / page_size, max_pages);
        int ret = logging_report_one(c, iova + done, pages * page_size, page_size,
                                     bitmap + done / page_size / 64);
        if (ret)
            return ret;
        done += pages * page_size;
    }
    return 0;
}

/* ---- migration data ---- */

ssize_t vfu_client_mig_read(struct vfu_client *c, void *buf, size_t len)
{
    struct vfu_mig_data req, echo;
    struct iovec part = {&req, sizeof(req)};
    struct client_rep r = {.iov = {{&echo, sizeof(echo)}, {buf, 0}}, .niov = 2};
    int ret;

    len = AM_MIN(len, client_xfer(c) - sizeof(req));
    if (len == 0)
        return -EINVAL;
    req.argsz = (uint32_t)(sizeof(req) + len);
    req.size = (uint32_t)len;
    r.iov[1].iov_len = len;
    ret = client_call_msg(c, VFU_CMD_MIG_DATA_READ, &part, 1, NULL, 0, &r);
    if (ret == -EMSGSIZE)
        return -EPROTO;
    if (ret)
        return ret;
    if (r.len < sizeof(echo) || echo.size > len || r.len != sizeof(echo) + echo.size)
        return -EPROTO;
    return echo.size;
}

int vfu_client_mig_write(struct vfu_client *c, const void *buf, size_t len)
{
    size_t chunk = client_xfer(c) - sizeof(struct vfu_mig_data);

    for (size_t off = 0; off < len;) {
        size_t n = AM_MIN(len - off, chunk);
        struct vfu_mig_data req = {.argsz = sizeof(req), .size = (uint32_t)n};
        struct iovec parts[2] = {{&req, sizeof(req)}, {(uint8_t *)buf + off, n}};
        /* Whatever the reply carries is not looked at. */
        struct client_rep r = {.iov = {{NULL, SIZE_MAX}}, .niov = 1};
        int ret = client_call_msg(c, VFU_CMD_MIG_DATA_WRITE, parts, 2, NULL, 0, &r);
        if (ret)
            return ret;
        off += n;
    }
    return 0;
}

/* ---- mapping a region ---- */

/* The mmap-able parts of a region, from its info reply (len bytes of buf):
 * the areas of its sparse-mmap capability, or the whole region when it has
 * none (the kernel's rule). Nothing the server sent is trusted: the chain
 * stays inside the reply and only goes forward; each area (size 0 ones are
 * skipped, as QEMU does) lies inside the region, page aligned, and its file
 * range (info.offset + area) neither wraps nor leaves off_t. */
struct region_areas {
    const uint8_t *list; /* nr areas, unaligned; NULL: the whole region */
    uint32_t nr;
    uint64_t file_end; /* the largest file offset an area reaches */
};

static int region_areas_check(const struct vfu_region_info *info, uint64_t off, uint64_t size,
                              uint64_t page, uint64_t *file_end)
{
    uint64_t end, fend;

    if ((off | size) & (page - 1))
        return -EPROTO;
    if (am_add_overflows_u64(off, size, &end) || end > info->size)
        return -EPROTO;
    if (am_add_overflows_u64(info->offset, end, &fend) || fend > (uint64_t)INT64_MAX)
        return -EPROTO;
    *file_end = AM_MAX(*file_end, fend);
    return 0;
}

static int region_areas_find(const uint8_t *buf, size_t len, const struct vfu_region_info *info,
                             uint64_t page, struct region_areas *out)
{
    uint64_t at = info->cap_offset;
    struct vfu_region_sparse_mmap sp;

    *out = (struct region_areas){0};
    if (info->offset & (page - 1))
        return -EPROTO;
    if (!(info->flags & VFU_REGION_FLAG_CAPS))
        return region_areas_check(info, 0, info->size, page, &out->file_end);
    for (;;) {
        struct vfu_info_cap_header h;

        if (at < sizeof(*info) || at > len || len - at < sizeof(h))
            return -EPROTO;
        memcpy(&h, buf + at, sizeof(h));
        if (h.id == VFU_REGION_INFO_CAP_SPARSE_MMAP)
            break;
        if (h.next == 0) /* no sparse areas: the whole region */
            return region_areas_check(info, 0, info->size, page, &out->file_end);
        if (h.next <= at) /* forward only, so the walk ends */
            return -EPROTO;
        at = h.next;
    }
    if (len - at < sizeof(sp))
        return -EPROTO;
    memcpy(&sp, buf + at, sizeof(sp));
    if (sp.header.version != VFU_REGION_INFO_CAP_SPARSE_MMAP_VERSION)
        return -EPROTO;
    if (sp.nr_areas > (len - at - sizeof(sp)) / sizeof(struct vfu_sparse_mmap_area))
        return -EPROTO;
    out->list = buf + at + sizeof(sp);
    out->nr = sp.nr_areas;
    for (uint32_t i = 0; i < out->nr; i++) {
        struct vfu_sparse_mmap_area a;
        int ret;

        memcpy(&a, out->list + i * sizeof(a), sizeof(a));
        if (a.size == 0)
            continue;
        ret = region_areas_check(info, a.offset, a.size, page, &out->file_end);
        if (ret)
            return ret;
    }
    return 0;
}

/* Maps every area of ra from fd over a PROT_NONE reservation of the region. */
static int region_map_areas(const struct vfu_region_info *info, const struct region_areas *ra,
                            int fd, uint64_t page, struct region_map *out)
{
    int prot = (info->flags & VFU_REGION_FLAG_READ ? PROT_READ : 0) |
               (info->flags & VFU_REGION_FLAG_WRITE ? PROT_WRITE : 0);
    uint64_t len;
    uint8_t *base;

    if (info->size > SIZE_MAX - page)
        return -ENOMEM;
    len = AM_ALIGN_UP(info->size, page);
    base = mmap(NULL, (size_t)len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
        return -errno;
    for (uint32_t i = 0; i < (ra->list ? ra->nr : 1); i++) {
        struct vfu_sparse_mmap_area a = {0, info->size};

        if (ra->list)
            memcpy(&a, ra->list + i * sizeof(a), sizeof(a));
        if (a.size == 0)
            continue;
        /* Inside the reservation (checked): MAP_FIXED replaces only it. */
        if (mmap(base + a.offset, (size_t)a.size, prot, MAP_SHARED | MAP_FIXED, fd,
                 (off_t)(info->offset + a.offset)) == MAP_FAILED) {
            int err = -errno;
            munmap(base, (size_t)len);
            return err;
        }
    }
    *out = (struct region_map){base, info->size, (size_t)len};
    return 0;
}

int vfu_client_region_map(struct vfu_client *c, uint32_t region, void **base, uint64_t *size)
{
    uint8_t buf[CLIENT_REGION_INFO_MAX];
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    struct vfu_region_info info;
    struct region_areas ra;
    struct region_map map;
    struct stat st;
    size_t len;
    int fd, ret;

    if (region >= VFU_NUM_REGIONS || !base || !size)
        return -EINVAL;
    pthread_mutex_lock(&c->map_lock);
    ret = c->maps[region].base ? -EEXIST : 0;
    pthread_mutex_unlock(&c->map_lock);
    if (ret)
        return ret;
    ret = region_query(c, region, buf, &len, &fd);
    if (ret)
        return ret;
    memcpy(&info, buf, sizeof(info));
    if (!(info.flags & VFU_REGION_FLAG_MMAP) || info.size == 0)
        ret = -ENOTSUP;
    else if (fd < 0)
        ret = -EPROTO; /* mmap-able, but no descriptor came */
    else
        ret = region_areas_find(buf, len, &info, page, &ra);
    if (!ret && fstat(fd, &st) != 0)
        ret = -errno;
    if (!ret && S_ISREG(st.st_mode) && (uint64_t)st.st_size < ra.file_end)
        ret = -EPROTO; /* a file too short would fault on first touch */
    if (!ret) {
        pthread_mutex_lock(&c->map_lock);
        if (c->maps[region].base) {
            ret = -EEXIST; /* another thread was quicker */
        } else {
            ret = region_map_areas(&info, &ra, fd, page, &map);
            if (!ret)
                c->maps[region] = map;
        }
        pthread_mutex_unlock(&c->map_lock);
    }
    region_fd_keep(c, region, fd); /* the latest reply's, as REGION_INFO does */
    if (ret)
        return ret;
    *base = map.base;
    *size = map.size;
    return 0;
}

/* ---- ioeventfds (DEVICE_GET_REGION_IO_FDS) ---- */

static void io_fds_close(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* The reply (len bytes of buf, argsz and count checked by the caller) as
 * sub-regions of a region of region_size bytes, into f; the descriptors
 * stay in f->fds (closed by the caller on failure). Sub-regions we cannot
 * use (ioregionfd, port I/O, unknown flags) are skipped; a descriptor no
 * sub-region uses is closed. */
static int io_fds_parse(const uint8_t *buf, uint32_t count, size_t stride, uint64_t region_size,
                        struct io_fds *f)
{
    bool used[VFU_MSG_MAX_FDS] = {false};

    f->sub = calloc(count, sizeof(*f->sub));
    if (!f->sub)
        return -ENOMEM;
    for (uint32_t i = 0; i < count; i++) {
        struct vfu_sub_region_ioeventfd e;
        uint64_t end;

        memcpy(&e, buf + sizeof(struct vfu_region_io_fds) + i * stride, sizeof(e));
        if (e.fd_index >= f->nfds)
            return -EPROTO;
        if (am_add_overflows_u64(e.offset, e.size, &end) || end > region_size)
            return -EPROTO;
        if (e.type != VFU_IO_FD_TYPE_IOEVENTFD || (e.flags & ~VFU_IOEVENTFD_FLAG_DATAMATCH))
            continue;
        f->sub[f->nsub++] = (struct io_fd_sub){.offset = e.offset, .size = e.size,
                                               .datamatch = e.datamatch,
                                               .match = e.flags & VFU_IOEVENTFD_FLAG_DATAMATCH,
                                               .fd = f->fds[e.fd_index]};
        used[e.fd_index] = true;
    }
    for (uint32_t k = 0; k < f->nfds; k++) {
        if (!used[k]) {
            close(f->fds[k]);
            f->fds[k] = -1;
        } else {
            /* A kick must never block a vCPU: a full counter is a wake
             * already pending. */
            int fl = fcntl(f->fds[k], F_GETFL);

            if (fl < 0 || fcntl(f->fds[k], F_SETFL, fl | O_NONBLOCK) != 0)
                return -errno;
        }
    }
    return f->nsub ? 0 : -ENOTSUP;
}

int vfu_client_region_io_fds(struct vfu_client *c, uint32_t region)
{
    struct vfu_region_info info;
    uint32_t argsz = sizeof(struct vfu_region_io_fds);
    int ret;

    if (region >= VFU_NUM_REGIONS)
        return -EINVAL;
    if (atomic_load_explicit(&c->io_fds[region], memory_order_acquire))
        return -EEXIST;
    ret = vfu_client_region_info(c, region, &info);
    if (ret)
        return ret;
    for (int tries = 0; tries < CLIENT_IO_FDS_TRIES; tries++) {
        struct vfu_region_io_fds req = {.argsz = argsz, .index = region}, got;
        struct iovec part = {&req, sizeof(req)};
        uint8_t *buf = malloc(argsz);
        struct client_rep r = {.iov = {{buf, argsz}}, .niov = 1, .take_fds = true};
        struct io_fds *f;
        size_t stride;

        if (!buf)
            return -ENOMEM;
        ret = client_call_msg(c, VFU_CMD_DEVICE_GET_REGION_IO_FDS, &part, 1, NULL, 0, &r);
        if (ret) {
            free(buf);
            return ret == -EMSGSIZE ? -EPROTO : ret; /* larger than argsz: the rule is broken */
        }
        if (r.len < sizeof(got)) {
            ret = -EPROTO;
            goto out_reply;
        }
        memcpy(&got, buf, sizeof(got));
        if (got.index != region || got.flags != 0 || got.count > CLIENT_IO_FDS_MAX) {
            ret = -EPROTO;
            goto out_reply;
        }
        if (got.count == 0) {
            ret = r.nfds ? -EPROTO : -ENOTSUP; /* the server offers none */
            goto out_reply;
        }
        /* argsz: the whole reply's size; each entry (argsz - 16) / count
         * bytes, at least the 40 we read. */
        if (got.argsz < sizeof(got) || (got.argsz - sizeof(got)) % got.count != 0 ||
            (got.argsz - sizeof(got)) / got.count < sizeof(struct vfu_sub_region_ioeventfd)) {
            ret = -EPROTO;
            goto out_reply;
        }
        if (got.argsz > argsz) { /* asked with too little: again, with what it names */
            io_fds_close(r.fds, r.nfds);
            free(buf);
            argsz = got.argsz;
            continue;
        }
        if (r.len != got.argsz || r.nfds == 0) {
            ret = -EPROTO;
            goto out_reply;
        }
        stride = (got.argsz - sizeof(got)) / got.count;
        f = calloc(1, sizeof(*f));
        if (!f) {
            ret = -ENOMEM;
            goto out_reply;
        }
        f->nfds = (uint32_t)r.nfds;
        memcpy(f->fds, r.fds, r.nfds * sizeof(int));
        ret = io_fds_parse(buf, got.count, stride, info.size, f);
        free(buf);
        if (!ret) {
            pthread_mutex_lock(&c->map_lock);
            if (atomic_load_explicit(&c->io_fds[region], memory_order_relaxed)) {
                ret = -EEXIST; /* another thread was quicker */
            } else {
                atomic_store_explicit(&c->io_fds[region], f, memory_order_release);
                ret = (int)f->nsub;
            }
            pthread_mutex_unlock(&c->map_lock);
            if (ret > 0)
                return ret;
        }
        io_fds_close(f->fds, f->nfds);
        free(f->sub);
        free(f);
        return ret;
out_reply:
        io_fds_close(r.fds, r.nfds);
        free(buf);
        return ret;
    }
    return -EPROTO; /* a server that asks for more every time */
}

/* The ioeventfd an exact write of size bytes of data at off in region may
 * go to instead, or -1. */
static int io_fd_find(struct vfu_client *c, uint32_t region, uint64_t off, const void *data,
                      unsigned size)
{
    const struct io_fds *f = atomic_load_explicit(&c->io_fds[region], memory_order_acquire);
    uint64_t v = 0;

    if (!f)
        return -1;
    if (size <= sizeof(v))
        memcpy(&v, data, size);
    for (uint32_t i = 0; i < f->nsub; i++) {
        const struct io_fd_sub *e = &f->sub[i];

        if (e->offset != off || (e->size != 0 && e->size != size))
            continue;
        if (e->match && (size > sizeof(v) || e->datamatch != v))
            continue;
        return e->fd;
    }
    return -1;
}

/* ---- the guest's door ---- */

static int vfio_mmio_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    return vfu_client_region_read(opaque, VFU_REGION_BAR2, off, data, size);
}

static int vfio_mmio_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    return vfu_client_region_write(opaque, VFU_REGION_BAR2, off, data, size);
}

/* A kick (QM_DB_POLL_STATE): an increment of the ioeventfd the server gave
 * for that word (vfu_client_region_io_fds), which wakes the device with no
 * message and no server thread; else REGION_WRITE with no reply. It
 * carries no doorbell, so arriving after later requests is harmless; a
 * broken link shows at the next call. A full eventfd (EAGAIN) is a wake
 * already pending. */
static void vfio_db_kick(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct vfu_region_access req = {.offset = off, .region = VFU_REGION_BAR4, .count = size};
    struct iovec parts[2] = {{&req, sizeof(req)}, {(void *)data, size}};
    int efd = io_fd_find(opaque, VFU_REGION_BAR4, off, data, size);
    uint64_t one = 1;

    if (efd >= 0 && (write(efd, &one, sizeof(one)) == sizeof(one) || errno == EAGAIN))
        return;
    (void)client_post_msg(opaque, VFU_CMD_REGION_WRITE, parts, 2);
}

static int vfio_irq_wait(void *opaque, unsigned vector, int timeout_ms)
{
    return vfu_client_irq_wait(opaque, vector, timeout_ms);
}

static void vfio_irq_wake(void *opaque)
{
    vfu_client_irq_wake(opaque);
}

static int vfio_db_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    return vfu_client_region_write(opaque, VFU_REGION_BAR4, off, data, size);
}

uint64_t vfu_client_waiting_ns(const struct vfu_client *c)
{
    uint64_t since = __atomic_load_n(&c->waiting_since_ns, __ATOMIC_RELAXED), now = am_now_ns();

    return since != 0 && now > since ? now - since : 0;
}

int vfu_client_broken(const struct vfu_client *c)
{
    return __atomic_load_n(&c->broken_err, __ATOMIC_RELAXED);
}

void vfu_client_cut(struct vfu_client *c)
{
    shutdown(c->fd, SHUT_RDWR);
    if (c->twin_fd >= 0)
        shutdown(c->twin_fd, SHUT_RDWR);
}

int vfu_client_fd(const struct vfu_client *c)
{
    return c->fd;
}

void vfu_client_vf_io(struct vfu_client *c, struct vf_io *io)
{
    io->mmio_read = vfio_mmio_read;
    io->mmio_write = vfio_mmio_write;
    io->irq_wait = vfio_irq_wait;
    io->irq_wake = vfio_irq_wake;
    io->db_write = vfio_db_write;
    io->db_kick = vfio_db_kick;
    pthread_mutex_lock(&c->map_lock);
    io->db_pages = c->maps[VFU_REGION_BAR4].base;
    io->db_pages_size = io->db_pages ? c->maps[VFU_REGION_BAR4].size : 0;
    pthread_mutex_unlock(&c->map_lock);
    io->opaque = c;
}
