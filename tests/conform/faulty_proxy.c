/* faulty_proxy LISTEN UPSTREAM FAULT | --list: a test-only vfio-user proxy
 * that sits between a client (accmig conform) and a real server (accmig
 * serve on UPSTREAM) and injects ONE deliberate spec violation, chosen by
 * name, so tests/conform can prove that conform catches each one.
 *
 * It relays whole messages (with their descriptors) in both directions,
 * remembers the requests that wait for a reply (in order: servers answer
 * in order), and lets the fault rewrite a reply, answer a request itself
 * (the server never sees it), or keep what it should not. Faults marked
 * "control" are not violations (closing on a malformed message is allowed
 * by the spec): conform must report no failure for them. Anything the
 * proxy cannot parse (a broken header) is relayed raw from then on.
 *
 * Test code: one client at a time, blocking reads, exits on SIGTERM. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vfu/vfu_msg.h"

#define MAX_FDS 32
#define MAX_MSG (80u << 20)
#define MAX_PENDING 64

struct fault {
    const char *name;
    bool control; /* not a violation: conform must not fail */
    const char *what;
};

static const struct fault faults[] = {
    {"none", true, "relay only"},
    {"close-on-truncated", true, "close the connection on a payload shorter than its structure"},
    {"reply-padded", false, "DEVICE_GET_INFO reply padded 8 bytes beyond argsz"},
    {"wrong-msg-id", false, "DEVICE_GET_IRQ_INFO reply with another msg_id"},
    {"reply-cmd-wrong", false, "DEVICE_GET_INFO reply naming another command"},
    {"reply-type-command", false, "DEVICE_GET_REGION_INFO reply typed as a command"},
    {"error-with-payload", false, "error replies carry 4 payload bytes"},
    {"map-unaligned-accepted", false, "an unaligned DMA_MAP answered with success"},
    {"map-wrap-accepted", false, "a wrapping DMA_MAP answered with success"},
    {"map-overlap-accepted", false, "EEXIST of an overlapping DMA_MAP turned into success"},
    {"unmap-reply-altered", false, "DMA_UNMAP reply with another address than the request's"},
    {"unmap-end-2^64-refused", false, "a DMA_UNMAP ending exactly at 2^64 refused (EOVERFLOW)"},
    {"unmap-all-ignored", false, "DMA_UNMAP with UNMAP_ALL answered success, nothing unmapped"},
    {"mig-state-short-accepted", false, "a short MIG_DEVICE_STATE SET answered with success"},
    {"logging-start-short-accepted", false, "a short DMA_LOGGING_START answered with success"},
    {"logging-overlap-accepted", false, "overlapping DMA_LOGGING_START ranges answered success"},
    {"version-minor-bigger", false, "VERSION reply with a minor above the proposed one"},
    {"version-json-no-nul", false, "VERSION reply JSON without its NUL"},
    {"version-caps-superset", false, "VERSION reply with a capability nobody proposed"},
    {"region-mmap-no-fd", false, "REGION_INFO of config space says MMAP, sends no fd"},
    {"region-size-wrong", false, "REGION_INFO of config space with twice its size"},
    {"illegal-arc-accepted", false, "STOP_COPY -> PRE_COPY* answered with success"},
    {"mig-read-in-stop", false, "a refused MIG_DATA_READ answered with 16 bytes of data"},
    {"mig-read-size-mismatch", false, "MIG_DATA_READ reply whose size exceeds its data"},
    {"mig-state-reply-wrong", false, "SET MIG_DEVICE_STATE STOP replies with RUNNING"},
    {"mig-flags-no-stop-copy", false, "MIGRATION flags without the mandatory STOP_COPY"},
    {"resume-invalid-accepted", false, "a refused RESUMING -> * SET answered with success"},
    {"report-bitmap-short", false, "DMA_LOGGING_REPORT bitmap 8 bytes short"},
    {"no-reply-answered", false, "commands with No_reply get a reply anyway"},
    {"fd-leak", false, "descriptors of commands that take none are kept (leaked)"},
};

struct msg {
    struct vfu_hdr hdr;
    uint8_t *payload;
    size_t len;
    int fds[MAX_FDS];
    size_t nfds;
};

struct pending {
    struct vfu_hdr hdr;
    uint8_t *payload;
    size_t len;
};

struct conn {
    int cl, up;
    struct pending q[MAX_PENDING];
    unsigned qhead, qlen;
    uint32_t mig_state; /* as the replies told, RUNNING after a reset */
    bool raw;
    int leaked[1024];
    unsigned nleaked;
};

static const char *fault;

static bool is(const char *name)
{
    return strcmp(fault, name) == 0;
}

static void msg_free(struct msg *m)
{
    for (size_t i = 0; i < m->nfds; i++)
        close(m->fds[i]);
    m->nfds = 0;
    free(m->payload);
    m->payload = NULL;
}

/* Reads len bytes (collecting fds); 0, or -1 on EOF/error (*got says how
 * many bytes came). */
static int read_full(int fd, void *buf, size_t len, struct msg *m, size_t *got)
{
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    } cm;
    size_t off = 0;

    while (off < len) {
        struct iovec iov = {.iov_base = (uint8_t *)buf + off, .iov_len = len - off};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
                            .msg_controllen = sizeof(cm.b)};
        ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            *got = off;
            return -1;
        }
        for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
            if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
                continue;
            size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            int fds[MAX_FDS];
            memcpy(fds, CMSG_DATA(h), k * sizeof(int));
            for (size_t i = 0; i < k; i++) {
                if (m->nfds < MAX_FDS)
                    m->fds[m->nfds++] = fds[i];
                else
                    close(fds[i]);
            }
        }
        off += (size_t)n;
    }
    *got = off;
    return 0;
}

static int send_all(int fd, const void *buf, size_t len, const int *fds, size_t nfds)
{
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    } cm;
    size_t off = 0;

    while (off < len || (len == 0 && nfds)) {
        struct iovec iov = {.iov_base = (uint8_t *)buf + off, .iov_len = len - off};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        if (off == 0 && nfds) {
            memset(&cm, 0, sizeof(cm));
            mh.msg_control = cm.b;
            mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
            struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
            h->cmsg_level = SOL_SOCKET;
            h->cmsg_type = SCM_RIGHTS;
            h->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
            memcpy(CMSG_DATA(h), fds, sizeof(int) * nfds);
        }
        ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        off += (size_t)n;
        if (len == 0)
            break;
    }
    return 0;
}

static int send_msg(int fd, struct msg *m)
{
    uint8_t *buf = malloc(sizeof(m->hdr) + m->len);
    int ret;

    if (!buf)
        return -1;
    m->hdr.size = (uint32_t)(sizeof(m->hdr) + m->len);
    memcpy(buf, &m->hdr, sizeof(m->hdr));
    if (m->len)
        memcpy(buf + sizeof(m->hdr), m->payload, m->len);
    ret = send_all(fd, buf, sizeof(m->hdr) + m->len, m->fds, m->nfds);
    free(buf);
    return ret;
}

/* A reply of our own to request r: header (+ payload). */
static int answer(struct conn *c, const struct msg *r, int err, const void *p, size_t len)
{
    struct msg a = {.hdr = {.msg_id = r->hdr.msg_id, .cmd = r->hdr.cmd,
                            .flags = VFU_HDR_TYPE_REPLY | (err ? VFU_HDR_ERROR : 0),
                            .error = (uint32_t)err}};
    int ret;

    if (r->hdr.flags & VFU_HDR_NO_REPLY)
        return 0;
    a.payload = len ? malloc(len) : NULL;
    if (len && !a.payload)
        return -1;
    if (len)
        memcpy(a.payload, p, len);
    a.len = len;
    ret = send_msg(c->cl, &a);
    free(a.payload);
    return ret;
}

static size_t fixed_len(unsigned cmd)
{
    switch (cmd) {
    case VFU_CMD_VERSION: return sizeof(struct vfu_version);
    case VFU_CMD_DMA_MAP: return sizeof(struct vfu_dma_map);
    case VFU_CMD_DMA_UNMAP: return sizeof(struct vfu_dma_unmap);
    case VFU_CMD_DEVICE_GET_INFO: return sizeof(struct vfu_device_info);
    case VFU_CMD_DEVICE_GET_REGION_INFO: return sizeof(struct vfu_region_info);
    case VFU_CMD_DEVICE_GET_REGION_IO_FDS: return sizeof(struct vfu_region_io_fds);
    case VFU_CMD_DEVICE_GET_IRQ_INFO: return sizeof(struct vfu_irq_info);
    case VFU_CMD_DEVICE_SET_IRQS: return sizeof(struct vfu_irq_set);
    case VFU_CMD_REGION_READ:
    case VFU_CMD_REGION_WRITE: return sizeof(struct vfu_region_access);
    case VFU_CMD_REGION_WRITE_MULTI: return sizeof(struct vfu_write_multi);
    case VFU_CMD_DEVICE_FEATURE: return sizeof(struct vfu_feature);
    case VFU_CMD_MIG_DATA_READ:
    case VFU_CMD_MIG_DATA_WRITE: return sizeof(struct vfu_mig_data);
    default: return 0;
    }
}

static uint32_t feature_of(const uint8_t *p, size_t len)
{
    struct vfu_feature f = {0};
    if (len >= sizeof(f))
        memcpy(&f, p, sizeof(f));
    return f.flags;
}

/* 1: answered (do not forward), 0: forward, -1: drop the connection. */
static int on_request(struct conn *c, struct msg *r)
{
    const uint8_t *p = r->payload;
    size_t len = r->len;
    uint32_t ff = r->hdr.cmd == VFU_CMD_DEVICE_FEATURE ? feature_of(p, len) : 0;
    bool set = ff & VFU_FEATURE_SET, probe = ff & VFU_FEATURE_PROBE;
    unsigned feat = ff & VFU_FEATURE_MASK;

    if (is("close-on-truncated") && len < fixed_len(r->hdr.cmd))
        return -1;
    if (is("fd-leak") && r->nfds && r->hdr.cmd != VFU_CMD_DMA_MAP &&
        r->hdr.cmd != VFU_CMD_DEVICE_SET_IRQS) {
        for (size_t i = 0; i < r->nfds && c->nleaked < 1024; i++)
            c->leaked[c->nleaked++] = dup(r->fds[i]);
    }
    if (r->hdr.cmd == VFU_CMD_DMA_MAP && len >= sizeof(struct vfu_dma_map)) {
        struct vfu_dma_map m;
        uint64_t end;
        memcpy(&m, p, sizeof(m));
        if (is("map-unaligned-accepted") && ((m.addr | m.size | m.offset) & 0xfff))
            return answer(c, r, 0, NULL, 0) ? -1 : 1;
        if (is("map-wrap-accepted") && __builtin_add_overflow(m.addr, m.size, &end))
            return answer(c, r, 0, NULL, 0) ? -1 : 1;
    }
    if (r->hdr.cmd == VFU_CMD_DMA_UNMAP && len >= sizeof(struct vfu_dma_unmap)) {
        struct vfu_dma_unmap u;
        memcpy(&u, p, sizeof(u));
        if (is("unmap-end-2^64-refused") && u.addr && u.size && u.addr + u.size == 0)
            return answer(c, r, EOVERFLOW, NULL, 0) ? -1 : 1;
        if (is("unmap-all-ignored") && (u.flags & VFU_DMA_UNMAP_FLAG_ALL) && !u.addr && !u.size)
            return answer(c, r, 0, &u, sizeof(u)) ? -1 : 1;
    }
    if (r->hdr.cmd == VFU_CMD_DEVICE_FEATURE && set && !probe) {
        size_t data = len - sizeof(struct vfu_feature);
        if (is("mig-state-short-accepted") && feat == 2 && data < 8)
            return answer(c, r, 0, p, len) ? -1 : 1;
        if (is("logging-start-short-accepted") && feat == 6 && data < 16)
            return answer(c, r, 0, p, len) ? -1 : 1;
        if (is("logging-overlap-accepted") && feat == 6 && data >= 16 + 32) {
            struct vfu_feature_dma_logging_range a, b;
            memcpy(&a, p + 8 + 16, sizeof(a));
            memcpy(&b, p + 8 + 32, sizeof(b));
            if (a.iova < b.iova + b.length && b.iova < a.iova + a.length)
                return answer(c, r, 0, p, len) ? -1 : 1;
        }
        if (is("illegal-arc-accepted") && feat == 2 && data >= 8 &&
            c->mig_state == 3 /* STOP_COPY */) {
            uint32_t target;
            memcpy(&target, p + 8, 4);
            if (target == 6 || target == 7) {
                c->mig_state = target;
                return answer(c, r, 0, p, len) ? -1 : 1;
            }
        }
    }
    if (is("no-reply-answered") && (r->hdr.flags & VFU_HDR_NO_REPLY)) {
        struct msg a = {.hdr = {.msg_id = r->hdr.msg_id, .cmd = r->hdr.cmd,
                                .flags = VFU_HDR_TYPE_REPLY}};
        if (send_msg(c->cl, &a))
            return -1;
    }
    return 0;
}

static void on_reply(struct conn *c, const struct pending *rq, struct msg *m)
{
    bool err = m->hdr.flags & VFU_HDR_ERROR;
    uint32_t ff = rq->hdr.cmd == VFU_CMD_DEVICE_FEATURE ? feature_of(rq->payload, rq->len) : 0;
    unsigned feat = ff & VFU_FEATURE_MASK;
    bool probe = ff & VFU_FEATURE_PROBE;
    uint8_t *np;

#define GROW(n)                                                    \
    do {                                                           \
        np = realloc(m->payload, m->len + (n));                    \
        if (!np)                                                   \
            return;                                                \
        memset(np + m->len, 0, (n));                               \
        m->payload = np;                                           \
        m->len += (n);                                             \
    } while (0)

    /* Track the migration state the server reports. */
    if (!err && rq->hdr.cmd == VFU_CMD_DEVICE_FEATURE && feat == 2 && !probe && m->len >= 12)
        memcpy(&c->mig_state, m->payload + 8, 4);
    if (!err && rq->hdr.cmd == VFU_CMD_DEVICE_RESET)
        c->mig_state = 2;

    if (err) {
        if (is("error-with-payload"))
            GROW(4);
        if (is("map-overlap-accepted") && rq->hdr.cmd == VFU_CMD_DMA_MAP &&
            m->hdr.error == EEXIST) {
            m->hdr.flags &= ~VFU_HDR_ERROR;
            m->hdr.error = 0;
        }
        if (is("mig-read-in-stop") && rq->hdr.cmd == VFU_CMD_MIG_DATA_READ) {
            struct vfu_mig_data d = {.argsz = 8 + 16, .size = 16};
            m->hdr.flags &= ~VFU_HDR_ERROR;
            m->hdr.error = 0;
            GROW(8 + 16);
            memcpy(m->payload, &d, sizeof(d));
        }
        if (is("resume-invalid-accepted") && rq->hdr.cmd == VFU_CMD_DEVICE_FEATURE && feat == 2 &&
            (ff & VFU_FEATURE_SET) && !probe && c->mig_state == 4 && rq->len >= 16) {
            m->hdr.flags &= ~VFU_HDR_ERROR;
            m->hdr.error = 0;
            GROW(rq->len);
            memcpy(m->payload, rq->payload, rq->len);
            memcpy(&c->mig_state, rq->payload + 8, 4);
        }
        return;
    }
    switch (rq->hdr.cmd) {
    case VFU_CMD_DEVICE_GET_INFO:
        if (is("reply-padded"))
            GROW(8);
        if (is("reply-cmd-wrong"))
            m->hdr.cmd = VFU_CMD_DEVICE_GET_REGION_INFO;
        break;
    case VFU_CMD_DEVICE_GET_IRQ_INFO:
        if (is("wrong-msg-id"))
            m->hdr.msg_id ^= 1;
        break;
    case VFU_CMD_DEVICE_GET_REGION_INFO:
        if (is("reply-type-command"))
            m->hdr.flags &= ~VFU_HDR_TYPE_MASK;
        if (m->len >= sizeof(struct vfu_region_info)) {
            struct vfu_region_info ri;
            memcpy(&ri, m->payload, sizeof(ri));
            if (ri.index == VFU_REGION_CONFIG && is("region-mmap-no-fd"))
                ri.flags |= VFU_REGION_FLAG_MMAP;
            if (ri.index == VFU_REGION_CONFIG && is("region-size-wrong"))
                ri.size *= 2;
            memcpy(m->payload, &ri, sizeof(ri));
        }
        break;
    case VFU_CMD_DMA_UNMAP:
        if (is("unmap-reply-altered") && m->len >= sizeof(struct vfu_dma_unmap)) {
            struct vfu_dma_unmap u;
            memcpy(&u, m->payload, sizeof(u));
            u.addr += 4096;
            memcpy(m->payload, &u, sizeof(u));
        }
        break;
    case VFU_CMD_VERSION:
        if (m->len >= 4 && rq->len >= 4 && is("version-minor-bigger")) {
            uint16_t minor;
            memcpy(&minor, rq->payload + 2, 2);
            minor++;
            memcpy(m->payload + 2, &minor, 2);
        }
        if (m->len > 4 && is("version-json-no-nul"))
            m->len--; /* the NUL goes */
        if (m->len > 4 && is("version-caps-superset")) {
            static const char key[] = "\"capabilities\":{";
            static const char add[] = "\"bogus_cap\":1,";
            char *at = memmem(m->payload, m->len, key, sizeof(key) - 1);
            if (at && at[sizeof(key) - 1] != '}') {
                size_t pos = (size_t)((uint8_t *)at - m->payload) + sizeof(key) - 1;
                GROW(sizeof(add) - 1);
                memmove(m->payload + pos + sizeof(add) - 1, m->payload + pos,
                        m->len - pos - (sizeof(add) - 1));
                memcpy(m->payload + pos, add, sizeof(add) - 1);
            }
        }
        break;
    case VFU_CMD_MIG_DATA_READ:
        if (is("mig-read-size-mismatch") && m->len >= 8) {
            struct vfu_mig_data d;
            memcpy(&d, m->payload, sizeof(d));
            d.size += 4;
            memcpy(m->payload, &d, sizeof(d));
        }
        break;
    case VFU_CMD_DEVICE_FEATURE:
        if (probe)
            break;
        if (is("mig-state-reply-wrong") && feat == 2 && (ff & VFU_FEATURE_SET) && m->len >= 12 &&
            rq->len >= 12) {
            uint32_t target, running = 2;
            memcpy(&target, rq->payload + 8, 4);
            if (target == 1)
                memcpy(m->payload + 8, &running, 4);
        }
        if (is("mig-flags-no-stop-copy") && feat == 1 && m->len >= 16) {
            uint64_t fl;
            memcpy(&fl, m->payload + 8, 8);
            fl &= ~1ull;
            memcpy(m->payload + 8, &fl, 8);
        }
        if (is("report-bitmap-short") && feat == 8 && m->len >= 8 + 24 + 8) {
            uint32_t argsz;
            m->len -= 8;
            argsz = (uint32_t)m->len;
            memcpy(m->payload, &argsz, 4);
        }
        break;
    default:
        break;
    }
#undef GROW
}

/* One message from `from`; 0 ok, -1 the connection is over. */
static int relay_one(struct conn *c, bool from_client)
{
    int from = from_client ? c->cl : c->up, to = from_client ? c->up : c->cl;
    struct msg m = {0};
    size_t got;

    if (c->raw) {
        uint8_t buf[65536];
        ssize_t n = read(from, buf, sizeof(buf));
        if (n <= 0)
            return -1;
        return send_all(to, buf, (size_t)n, NULL, 0);
    }
    if (read_full(from, &m.hdr, sizeof(m.hdr), &m, &got)) {
        if (got)
            send_all(to, &m.hdr, got, m.fds, m.nfds);
        msg_free(&m);
        return -1;
    }
    if (m.hdr.size < sizeof(m.hdr) || m.hdr.size > MAX_MSG) {
        /* Nothing to parse any more: bytes from now on. */
        c->raw = true;
        int ret = send_all(to, &m.hdr, sizeof(m.hdr), m.fds, m.nfds);
        msg_free(&m);
        return ret;
    }
    m.len = m.hdr.size - sizeof(m.hdr);
    m.payload = m.len ? malloc(m.len) : NULL;
    if (m.len && !m.payload)
        return -1;
    if (m.len && read_full(from, m.payload, m.len, &m, &got)) {
        send_all(to, &m.hdr, sizeof(m.hdr), m.fds, m.nfds);
        send_all(to, m.payload, got, NULL, 0);
        msg_free(&m);
        return -1;
    }
    if (from_client) {
        int a = on_request(c, &m);
        if (a) {
            msg_free(&m);
            return a < 0 ? -1 : 0;
        }
        if (!(m.hdr.flags & VFU_HDR_NO_REPLY) &&
            (m.hdr.flags & VFU_HDR_TYPE_MASK) == VFU_HDR_TYPE_COMMAND && c->qlen < MAX_PENDING) {
            struct pending *p = &c->q[(c->qhead + c->qlen++) % MAX_PENDING];
            p->hdr = m.hdr;
            p->len = m.len < 4096 ? m.len : 4096;
            p->payload = malloc(p->len ? p->len : 1);
            if (p->payload && p->len)
                memcpy(p->payload, m.payload, p->len);
        }
    } else if (c->qlen) {
        struct pending *p = &c->q[c->qhead];
        if (p->hdr.msg_id == m.hdr.msg_id && p->hdr.cmd == m.hdr.cmd) {
            on_reply(c, p, &m);
            free(p->payload);
            c->qhead = (c->qhead + 1) % MAX_PENDING;
            c->qlen--;
        }
    }
    int ret = send_msg(to, &m);
    msg_free(&m);
    return ret;
}

static int unix_listen(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || strlen(path) >= sizeof(a.sun_path))
        return -1;
    strcpy(a.sun_path, path);
    unlink(path);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 8))
        return -1;
    return fd;
}

static int unix_connect(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || strlen(path) >= sizeof(a.sun_path))
        return -1;
    strcpy(a.sun_path, path);
    /* The server may still be resetting the previous session's VF. */
    for (int i = 0; i < 100; i++) {
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
            return fd;
        usleep(20000);
    }
    close(fd);
    return -1;
}

static void serve(int cl, const char *upstream)
{
    struct conn c = {.cl = cl, .mig_state = 2};

    c.up = unix_connect(upstream);
    if (c.up < 0) {
        close(cl);
        return;
    }
    for (;;) {
        struct pollfd p[2] = {{.fd = c.cl, .events = POLLIN}, {.fd = c.up, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) && relay_one(&c, true))
            break;
        if ((p[1].revents & (POLLIN | POLLHUP | POLLERR)) && relay_one(&c, false))
            break;
    }
    close(c.cl);
    close(c.up);
    while (c.qlen) {
        free(c.q[c.qhead].payload);
        c.qhead = (c.qhead + 1) % MAX_PENDING;
        c.qlen--;
    }
    /* fd-leak: the kept descriptors stay open until the proxy exits. */
    (void)c.leaked;
}

int main(int argc, char **argv)
{
    int lfd;
    bool known = false;

    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
            printf("%s %s %s\n", faults[i].name, faults[i].control ? "control" : "violation",
                   faults[i].what);
        return 0;
    }
    if (argc != 4) {
        fprintf(stderr, "usage: faulty_proxy LISTEN UPSTREAM FAULT | --list\n");
        return 2;
    }
    fault = argv[3];
    for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
        known |= is(faults[i].name);
    if (!known) {
        fprintf(stderr, "faulty_proxy: unknown fault '%s'\n", fault);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    lfd = unix_listen(argv[1]);
    if (lfd < 0) {
        perror("faulty_proxy: listen");
        return 1;
    }
    for (;;) {
        int cl = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (cl < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        serve(cl, argv[2]);
    }
}
