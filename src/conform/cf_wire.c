/* conform/wire: the checker's own vfio-user transport. Deliberately small
 * and independent of vfu/tran.c and vfu/client.c, so a bug there cannot
 * hide the same bug in the server: messages are sent exactly as built (the
 * hostile checks send any bytes at all) and replies are read whole, with
 * every descriptor that came along. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/common.h"
#include "conform/cf_int.h"

int cf_conn_open(struct cf_conn *c, const char *path, unsigned timeout_ms)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd;

    c->fd = -1;
    c->timeout_ms = timeout_ms;
    if (strlen(path) >= sizeof(a.sun_path))
        return -ENAMETOOLONG;
    strcpy(a.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    c->fd = fd;
    return 0;
}

void cf_conn_close(struct cf_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

int cf_send_raw(struct cf_conn *c, const void *buf, size_t len, const int *fds, size_t nfds)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * CF_MAX_FDS)];
    } cm;
    const uint8_t *p = buf;
    size_t off = 0;

    if (c->fd < 0)
        return -ENOTCONN;
    if (nfds > CF_MAX_FDS)
        return -E2BIG;
    /* The descriptors go with the first byte; the rest follows plainly. */
    do {
        struct iovec iov = {.iov_base = (void *)(p + off), .iov_len = len - off};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n;

        if (off == 0 && nfds) {
            memset(&cm, 0, sizeof(cm));
            mh.msg_control = cm.buf;
            mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
            struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
            h->cmsg_level = SOL_SOCKET;
            h->cmsg_type = SCM_RIGHTS;
            h->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
            memcpy(CMSG_DATA(h), fds, sizeof(int) * nfds);
        }
        n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        off += (size_t)n;
    } while (off < len);
    return 0;
}

int cf_send_cmd(struct cf_conn *c, uint16_t cmd, uint32_t flags, const void *payload, size_t len,
                const int *fds, size_t nfds, uint16_t *id)
{
    struct vfu_hdr h = {.msg_id = c->next_id++, .cmd = cmd, .size = (uint32_t)(sizeof(h) + len),
                        .flags = flags};
    uint8_t *buf;
    int ret;

    if (len > UINT32_MAX - sizeof(h))
        return -E2BIG;
    buf = malloc(sizeof(h) + len);
    if (!buf)
        return -ENOMEM;
    memcpy(buf, &h, sizeof(h));
    if (len)
        memcpy(buf + sizeof(h), payload, len);
    ret = cf_send_raw(c, buf, sizeof(h) + len, fds, nfds);
    free(buf);
    if (id)
        *id = h.msg_id;
    return ret;
}

/* Reads exactly len bytes (collecting descriptors) before the deadline. */
static int recv_exact(struct cf_conn *c, void *buf, size_t len, struct cf_msg *m,
                      uint64_t deadline)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * CF_MAX_FDS)];
    } cm;
    uint8_t *p = buf;
    size_t off = 0;

    while (off < len) {
        struct iovec iov = {.iov_base = p + off, .iov_len = len - off};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
                            .msg_controllen = sizeof(cm.buf)};
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        uint64_t now = am_now_ns();
        ssize_t n;
        int pr;

        if (now >= deadline)
            return -ETIMEDOUT;
        pr = poll(&pfd, 1, (int)((deadline - now) / 1000000u) + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            return -errno;
        if (pr == 0)
            return -ETIMEDOUT;
        n = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == ECONNRESET ? -ECONNRESET : -errno;
        if (n == 0)
            return -ECONNRESET;
        if (mh.msg_flags & MSG_CTRUNC)
            m->fds_truncated = true;
        for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
            if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
                continue;
            size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            int fds[CF_MAX_FDS];
            memcpy(fds, CMSG_DATA(h), k * sizeof(int));
            for (size_t i = 0; i < k; i++) {
                if (m->nfds < CF_MAX_FDS)
                    m->fds[m->nfds++] = fds[i];
                else
                    close(fds[i]);
            }
        }
        off += (size_t)n;
    }
    return 0;
}

int cf_recv(struct cf_conn *c, struct cf_msg *m, unsigned timeout_ms)
{
    uint64_t deadline = am_now_ns() + (uint64_t)timeout_ms * 1000000u;
    int ret;

    memset(m, 0, sizeof(*m));
    if (c->fd < 0)
        return -ENOTCONN;
    ret = recv_exact(c, &m->hdr, sizeof(m->hdr), m, deadline);
    if (ret)
        goto out_free;
    if (m->hdr.size < sizeof(m->hdr) || m->hdr.size > CF_MAX_REPLY) {
        ret = -EPROTO;
        goto out_free;
    }
    m->len = m->hdr.size - sizeof(m->hdr);
    if (m->len) {
        m->payload = malloc(m->len);
        if (!m->payload) {
            ret = -ENOMEM;
            goto out_free;
        }
        ret = recv_exact(c, m->payload, m->len, m, deadline);
        if (ret)
            goto out_free;
    }
    return 0;
out_free:
    cf_msg_free(m);
    return ret;
}

void cf_msg_free(struct cf_msg *m)
{
    for (size_t i = 0; i < m->nfds; i++)
        close(m->fds[i]);
    m->nfds = 0;
    free(m->payload);
    m->payload = NULL;
    m->len = 0;
}

bool cf_conn_closed_by_peer(struct cf_conn *c, unsigned timeout_ms)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN | POLLRDHUP};
    char b;

    if (c->fd < 0)
        return true;
    if (poll(&pfd, 1, (int)timeout_ms) <= 0)
        return false;
    if (pfd.revents & (POLLHUP | POLLRDHUP | POLLERR))
        return true;
    /* Readable: EOF, or data we did not expect (not a close). */
    return recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}
