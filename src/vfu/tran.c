/* vfu/tran: socket and buffer transports, message assembly and sending. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/common.h"
#include "vfu/vfu_tran.h"

/* Control buffer for the descriptors of one recvmsg: room for the most any
 * peer may send (QEMU: 16), so a bigger batch shows up as MSG_CTRUNC. */
#define TRAN_CMSG_FDS 16u

/* ---- socket transport ---- */

static void sock_take_fds(struct msghdr *mh, int *fds, size_t max_fds, size_t *nfds,
                          bool *fds_lost)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        size_t n;
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (*nfds < max_fds) {
                fds[(*nfds)++] = fd;
            } else {
                close(fd);
                *fds_lost = true;
            }
        }
    }
    if (mh->msg_flags & MSG_CTRUNC)
        *fds_lost = true; /* the kernel dropped (and closed) what did not fit */
}

static ssize_t sock_recv(struct vfu_tran *t, void *buf, size_t len, bool wait, int *fds,
                         size_t max_fds, size_t *nfds, bool *fds_lost)
{
    union {
        char buf[CMSG_SPACE(TRAN_CMSG_FDS * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr mh = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = ctl.buf,
        .msg_controllen = sizeof(ctl.buf),
    };
    ssize_t n;

    do {
        n = recvmsg(t->fd, &mh, MSG_CMSG_CLOEXEC | (wait ? 0 : MSG_DONTWAIT));
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    sock_take_fds(&mh, fds, max_fds, nfds, fds_lost);
    return n;
}

/* One contiguous buffer without descriptors: send(2), no msghdr to build
 * or for the kernel to copy in. */
static int sock_send_one(int fd, const uint8_t *p, size_t len)
{
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int sock_send(struct vfu_tran *t, const struct iovec *iov_in, unsigned iovcnt,
                     const int *fds, size_t nfds)
{
    union {
        char buf[CMSG_SPACE(TRAN_CMSG_FDS * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov[8];
    struct msghdr mh = {.msg_iov = iov};
    unsigned first = 0;

    if (iovcnt > AM_ARRAY_SIZE(iov) || nfds > TRAN_CMSG_FDS)
        return -EINVAL;
    if (iovcnt == 1 && nfds == 0)
        return sock_send_one(t->fd, iov_in[0].iov_base, iov_in[0].iov_len);
    memcpy(iov, iov_in, iovcnt * sizeof(*iov));
    if (nfds) {
        struct cmsghdr *c;
        memset(ctl.buf, 0, sizeof(ctl.buf));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    while (first < iovcnt) {
        ssize_t n;
        mh.msg_iov = iov + first;
        mh.msg_iovlen = iovcnt - first;
        n = sendmsg(t->fd, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
        }
        /* Descriptors go with the first bytes only. */
        mh.msg_control = NULL;
        mh.msg_controllen = 0;
        while (first < iovcnt && (size_t)n >= iov[first].iov_len) {
            n -= (ssize_t)iov[first].iov_len;
            first++;
        }
        if (first < iovcnt) {
            iov[first].iov_base = (uint8_t *)iov[first].iov_base + n;
            iov[first].iov_len -= (size_t)n;
        }
    }
    return 0;
}

static const struct vfu_tran_ops sock_ops = {
    .recv = sock_recv,
    .send = sock_send,
};

void vfu_tran_sock_init(struct vfu_tran *t, int fd)
{
    t->ops = &sock_ops;
    t->fd = fd;
    t->ctx = NULL;
}

/* ---- buffer transport ---- */

static ssize_t buf_recv(struct vfu_tran *t, void *buf, size_t len, bool wait, int *fds,
                        size_t max_fds, size_t *nfds, bool *fds_lost)
{
    struct vfu_buf_tran *b = t->ctx;
    size_t n = b->in_len - b->in_pos;

    (void)wait; /* never blocks: what is not there will not come */
    (void)fds;
    (void)max_fds;
    (void)nfds;
    (void)fds_lost;
    if (n == 0)
        return 0;
    if (n > len)
        n = len;
    if (b->max_chunk && n > b->max_chunk)
        n = b->max_chunk;
    memcpy(buf, b->in + b->in_pos, n);
    b->in_pos += n;
    return (ssize_t)n;
}

static int buf_send(struct vfu_tran *t, const struct iovec *iov, unsigned iovcnt, const int *fds,
                    size_t nfds)
{
    struct vfu_buf_tran *b = t->ctx;

    (void)fds;
    if (nfds)
        return -EINVAL;
    for (unsigned i = 0; i < iovcnt; i++) {
        size_t room = b->out_cap - b->out_len;
        size_t n = AM_MIN(room, iov[i].iov_len);
        if (n && b->out)
            memcpy(b->out + b->out_len, iov[i].iov_base, n);
        if (b->out)
            b->out_len += n;
        b->out_total += iov[i].iov_len;
    }
    return 0;
}

static const struct vfu_tran_ops buf_ops = {
    .recv = buf_recv,
    .send = buf_send,
};

void vfu_tran_buf_init(struct vfu_tran *t, struct vfu_buf_tran *b)
{
    t->ops = &buf_ops;
    t->fd = -1;
    t->ctx = b;
}

/* ---- messages ---- */

int vfu_msg_take_fd(struct vfu_msg *m, size_t i)
{
    int fd;
    if (i >= m->nfds)
        return -1;
    fd = m->fds[i];
    m->fds[i] = -1;
    return fd;
}

void vfu_msg_release(struct vfu_msg *m)
{
    for (size_t i = 0; i < m->nfds; i++) {
        if (m->fds[i] >= 0)
            close(m->fds[i]);
        m->fds[i] = -1;
    }
    m->nfds = 0;
    if (!m->borrowed)
        free(m->payload);
    m->payload = NULL;
    m->borrowed = false;
    m->len = 0;
}

void vfu_rx_init(struct vfu_rx *rx, unsigned expect_type, uint64_t max_size, size_t max_fds)
{
    memset(rx, 0, sizeof(*rx));
    rx->expect_type = expect_type;
    rx->max_size = max_size;
    rx->max_fds = AM_MIN(max_fds, (size_t)VFU_MSG_MAX_FDS);
}

static void rx_fds_close(struct vfu_rx_fds *g)
{
    for (size_t i = 0; i < g->nfds; i++)
        close(g->fds[i]);
    g->nfds = 0;
}

void vfu_rx_reset(struct vfu_rx *rx)
{
    vfu_msg_release(&rx->big);
    memset(&rx->big, 0, sizeof(rx->big));
    rx->in_big = false;
    rx->big_got = 0;
    for (size_t g = 0; g < rx->ngrp; g++)
        rx_fds_close(&rx->grp[g]);
    rx->ngrp = 0;
    rx->start = rx->end = 0;
    rx->pos = 0;
}

/* Keeps the descriptors that came with one read for the message at stream
 * offset owner, up to max_fds (the rest closed, the group flagged). */
static void rx_fds_add(struct vfu_rx *rx, uint64_t owner, const int *fds, size_t n, bool lost)
{
    struct vfu_rx_fds *g = NULL;

    if (rx->ngrp && rx->grp[rx->ngrp - 1].owner == owner) {
        g = &rx->grp[rx->ngrp - 1];
    } else if (rx->ngrp < AM_ARRAY_SIZE(rx->grp)) {
        /* Reads happen only while the first message not handed out is
         * incomplete, so a pending group belongs to it and a new read adds
         * at most one more: two slots always suffice. */
        g = &rx->grp[rx->ngrp++];
        g->owner = owner;
        g->nfds = 0;
        g->lost = false;
    }
    for (size_t i = 0; i < n; i++) {
        if (g && g->nfds < rx->max_fds) {
            g->fds[g->nfds++] = fds[i];
        } else {
            close(fds[i]);
            lost = true;
        }
    }
    if (g && lost)
        g->lost = true;
}

/* Hands m the descriptors of the message at stream offset at; groups of
 * earlier offsets (no message started there: a sender breaking framing)
 * are closed. */
static void rx_fds_attach(struct vfu_rx *rx, uint64_t at, struct vfu_msg *m)
{
    size_t keep = 0;

    m->nfds = 0;
    m->fds_lost = false;
    for (size_t g = 0; g < rx->ngrp; g++) {
        struct vfu_rx_fds *grp = &rx->grp[g];
        if (grp->owner == at) {
            memcpy(m->fds, grp->fds, grp->nfds * sizeof(int));
            m->nfds = grp->nfds;
            m->fds_lost = grp->lost;
        } else if (grp->owner < at) {
            rx_fds_close(grp);
        } else {
            if (keep != g)
                rx->grp[keep] = *grp;
            keep++;
        }
    }
    rx->ngrp = keep;
    for (size_t i = m->nfds; i < VFU_MSG_MAX_FDS; i++)
        m->fds[i] = -1;
}

/* The stream offset of the message that holds the last byte in the buffer
 * (headers not yet checked are only walked, never trusted). */
static uint64_t rx_owner_of_last_byte(const struct vfu_rx *rx)
{
    size_t p = rx->start;

    for (;;) {
        struct vfu_hdr h;
        if (rx->end - p < sizeof(h))
            break;
        memcpy(&h, rx->buf + p, sizeof(h));
        if (h.size < sizeof(h) || (uint64_t)p + h.size >= rx->end)
            break;
        p += h.size;
    }
    return rx->pos + (p - rx->start);
}

/* Takes the next whole message out of what was received: 1 (*out set), 0
 * when more bytes are needed, or a framing error / -ENOMEM. */
static int rx_parse(struct vfu_rx *rx, struct vfu_msg *out)
{
    size_t avail = rx->end - rx->start;
    struct vfu_hdr h;
    int ret;

    if (rx->in_big) {
        if (rx->big_got < rx->big.len)
            return 0;
        *out = rx->big;
        rx_fds_attach(rx, rx->big_pos, out);
        rx->pos = rx->big_pos + rx->big.hdr.size;
        memset(&rx->big, 0, sizeof(rx->big));
        rx->in_big = false;
        rx->big_got = 0;
        return 1;
    }
    if (avail < sizeof(h))
        return 0;
    /* The header is checked before anything is allocated for it. */
    memcpy(&h, rx->buf + rx->start, sizeof(h));
    ret = vfu_hdr_check(&h, rx->expect_type, rx->max_size);
    if (ret) {
        memset(out, 0, sizeof(*out));
        out->hdr = h;
        vfu_rx_reset(rx);
        return ret;
    }
    if (h.size <= avail) {
        /* Whole in the buffer: handed out in place. */
        out->hdr = h;
        out->len = h.size - sizeof(h);
        out->payload = out->len ? rx->buf + rx->start + sizeof(h) : NULL;
        out->borrowed = out->payload != NULL;
        rx_fds_attach(rx, rx->pos, out);
        rx->start += h.size;
        rx->pos += h.size;
        if (rx->start == rx->end)
            rx->start = rx->end = 0;
        return 1;
    }
    if (h.size <= sizeof(rx->buf))
        return 0; /* the rest will fit */
    /* Larger than the buffer: assembled in its own allocation, the rest
     * read straight into it. */
    rx->big.hdr = h;
    rx->big.len = h.size - sizeof(h);
    rx->big.payload = malloc(rx->big.len);
    if (!rx->big.payload) {
        vfu_rx_reset(rx);
        return -ENOMEM;
    }
    rx->big_got = avail - sizeof(h);
    memcpy(rx->big.payload, rx->buf + rx->start + sizeof(h), rx->big_got);
    rx->big_pos = rx->pos;
    rx->in_big = true;
    rx->start = rx->end = 0;
    return 0;
}

/* One transport read: into the big message (exactly what it still lacks,
 * so the read never reaches the next message), or into the buffer (as much
 * as fits: one read usually brings whole messages). */
static ssize_t rx_fill(struct vfu_rx *rx, struct vfu_tran *t, bool wait)
{
    int fds[VFU_MSG_MAX_FDS];
    size_t nfds = 0;
    bool lost = false;
    uint64_t owner = rx->pos;
    ssize_t n;

    if (rx->in_big) {
        n = t->ops->recv(t, rx->big.payload + rx->big_got, rx->big.len - rx->big_got, wait, fds,
                         rx->max_fds, &nfds, &lost);
        if (n > 0)
            rx->big_got += (size_t)n;
        owner = rx->big_pos;
    } else {
        if (rx->start) {
            /* Only the start of one message is left: move it to the front. */
            memmove(rx->buf, rx->buf + rx->start, rx->end - rx->start);
            rx->end -= rx->start;
            rx->start = 0;
        }
        n = t->ops->recv(t, rx->buf + rx->end, sizeof(rx->buf) - rx->end, wait, fds, rx->max_fds,
                         &nfds, &lost);
        if (n > 0) {
            rx->end += (size_t)n;
            if (nfds || lost)
                owner = rx_owner_of_last_byte(rx);
        }
    }
    if (nfds || lost)
        rx_fds_add(rx, owner, fds, nfds, lost);
    return n;
}

static int rx_next(struct vfu_rx *rx, struct vfu_tran *t, struct vfu_msg *out, bool wait)
{
    for (;;) {
        int ret = rx_parse(rx, out);
        ssize_t n;

        if (ret)
            return ret;
        n = rx_fill(rx, t, wait);
        if (n == -EAGAIN)
            return wait ? -ETIMEDOUT : 0;
        if (n <= 0) {
            vfu_rx_reset(rx);
            return n == 0 ? -ECONNRESET : (int)n;
        }
    }
}

int vfu_rx_step(struct vfu_rx *rx, struct vfu_tran *t, struct vfu_msg *out)
{
    return rx_next(rx, t, out, false);
}

int vfu_rx_recv(struct vfu_rx *rx, struct vfu_tran *t, struct vfu_msg *out)
{
    return rx_next(rx, t, out, true);
}

int vfu_rx_wait(struct vfu_rx *rx, struct vfu_tran *t, struct vfu_msg *out, int timeout_ms)
{
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX
                                       : am_now_ns() + (uint64_t)timeout_ms * 1000000u;

    for (;;) {
        struct pollfd p = {.fd = t->fd, .events = POLLIN};
        int ret = vfu_rx_step(rx, t, out);
        int wait_ms;
        uint64_t now;

        if (ret != 0)
            return ret;
        now = am_now_ns();
        if (now >= deadline)
            return -ETIMEDOUT;
        wait_ms = deadline == UINT64_MAX ? -1 : (int)AM_MIN((deadline - now) / 1000000u + 1, 60000u);
        ret = poll(&p, 1, wait_ms);
        if (ret < 0 && errno != EINTR)
            return -errno;
    }
}

int vfu_send(struct vfu_tran *t, struct vfu_hdr *h, const struct iovec *parts, unsigned nparts,
             const int *fds, size_t nfds)
{
    struct iovec iov[8];
    uint64_t size = sizeof(*h);

    if (nparts + 1 > AM_ARRAY_SIZE(iov))
        return -EINVAL;
    iov[0].iov_base = h;
    iov[0].iov_len = sizeof(*h);
    for (unsigned i = 0; i < nparts; i++) {
        iov[i + 1] = parts[i];
        size += parts[i].iov_len;
    }
    if (size > UINT32_MAX)
        return -EMSGSIZE;
    h->size = (uint32_t)size;
    return t->ops->send(t, iov, nparts + 1, fds, nfds);
}

int vfu_send_msg(struct vfu_tran *t, void *msg, size_t len, const int *fds, size_t nfds)
{
    struct iovec iov = {.iov_base = msg, .iov_len = len};
    uint32_t size;

    if (len < sizeof(struct vfu_hdr) || len > UINT32_MAX)
        return -EMSGSIZE;
    size = (uint32_t)len;
    memcpy((uint8_t *)msg + offsetof(struct vfu_hdr, size), &size, sizeof(size));
    return t->ops->send(t, &iov, 1, fds, nfds);
}

/* ---- UNIX sockets ---- */

static int sock_addr(const char *path, struct sockaddr_un *sa)
{
    size_t n = strlen(path);
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (n == 0 || n >= sizeof(sa->sun_path))
        return -ENAMETOOLONG;
    memcpy(sa->sun_path, path, n + 1);
    return 0;
}

int vfu_sock_listen(const char *path, int *out_fd)
{
    struct sockaddr_un sa, tmp = {0};
    struct stat st;
    int fd, ret;

    ret = sock_addr(path, &sa);
    if (ret)
        return ret;
    /* Bound under a temporary name, made 0600 and listening, then renamed:
     * the final path only ever names a ready socket with the right mode. */
    if (snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s.tmp", path) >=
        (int)sizeof(tmp.sun_path))
        return -ENAMETOOLONG;
    tmp.sun_family = AF_UNIX;
    if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
        return -EEXIST;
    if (lstat(tmp.sun_path, &st) == 0 && (!S_ISSOCK(st.st_mode) || unlink(tmp.sun_path) != 0))
        return -EEXIST;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&tmp, sizeof(tmp)) != 0)
        goto fail;
    /* A stale socket at path is replaced by the rename. */
    if (chmod(tmp.sun_path, 0600) != 0 || listen(fd, 8) != 0 || rename(tmp.sun_path, path) != 0)
        goto fail_unlink;
    *out_fd = fd;
    return 0;
fail_unlink:
    ret = -errno;
    unlink(tmp.sun_path);
    close(fd);
    return ret;
fail:
    ret = -errno;
    close(fd);
    return ret;
}

int vfu_sock_connect(const char *path, int *out_fd)
{
    struct sockaddr_un sa;
    int fd, ret;

    ret = sock_addr(path, &sa);
    if (ret)
        return ret;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        ret = -errno;
        close(fd);
        return ret;
    }
    *out_fd = fd;
    return 0;
}

static int sock_set_timeout(int fd, int opt, int timeout_ms)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    if (setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv)) != 0)
        return -errno;
    return 0;
}

int vfu_sock_set_send_timeout(int fd, int timeout_ms)
{
    return sock_set_timeout(fd, SO_SNDTIMEO, timeout_ms);
}

int vfu_sock_set_recv_timeout(int fd, int timeout_ms)
{
    return sock_set_timeout(fd, SO_RCVTIMEO, timeout_ms);
}
