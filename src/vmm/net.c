#include "vmm/net.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"

#define NET_LISTEN_BACKLOG 8
#define NET_CONNECT_RETRY_NS (20 * 1000 * 1000)

/* Writes "<problem> in endpoint '<input>'" (the input cut at 80 bytes, so
 * the problem always fits) and returns -EINVAL. */
static int parse_fail(char *err, size_t errlen, const char *whole, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int parse_fail(char *err, size_t errlen, const char *whole, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (err == NULL || errlen == 0)
        return -EINVAL;
    va_start(ap, fmt);
    n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (whole != NULL && n >= 0 && (size_t)n < errlen)
        snprintf(err + n, errlen - (size_t)n, " in endpoint '%.80s%s'", whole,
                 strlen(whole) > 80 ? "..." : "");
    return -EINVAL;
}

static int parse_port(const char *s, uint16_t *port)
{
    unsigned v = 0;
    size_t n = strlen(s);

    if (n == 0 || n > 5)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -EINVAL;
    *port = (uint16_t)v;
    return 0;
}

static int parse_tcp(const char *rest, const char *whole, struct vm_net_endpoint *ep, char *err,
                     size_t errlen)
{
    const char *host = rest, *host_end, *port;
    size_t hlen;

    if (rest[0] == '[') {
        host = rest + 1;
        host_end = strchr(host, ']');
        if (host_end == NULL)
            return parse_fail(err, errlen, whole, "'[' without a closing ']'");
        if (host_end[1] != ':')
            return parse_fail(err, errlen, whole, "expected ':PORT' after ']'");
        port = host_end + 2;
    } else {
        host_end = strrchr(rest, ':');
        if (host_end == NULL)
            return parse_fail(err, errlen, whole, "missing ':PORT' (expected tcp:HOST:PORT)");
        if (memchr(rest, ':', (size_t)(host_end - rest)) != NULL)
            return parse_fail(err, errlen, whole,
                              "an IPv6 address must be in brackets, e.g. tcp:[::1]:4444");
        port = host_end + 1;
    }
    hlen = (size_t)(host_end - host);
    if (hlen == 0)
        return parse_fail(err, errlen, whole, "empty host");
    if (hlen >= sizeof(ep->host))
        return parse_fail(err, errlen, whole, "host longer than %zu bytes",
                          sizeof(ep->host) - 1);
    if (parse_port(port, &ep->port) != 0)
        return parse_fail(err, errlen, whole, "port '%.16s' is not a number in 0..65535",
                          port);
    memcpy(ep->host, host, hlen);
    ep->host[hlen] = '\0';
    ep->kind = VM_NET_TCP;
    return 0;
}

int vm_net_endpoint_parse(const char *s, struct vm_net_endpoint *ep, char *err, size_t errlen)
{
    struct vm_net_endpoint e;
    int ret;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (s == NULL || ep == NULL)
        return parse_fail(err, errlen, NULL, "no endpoint given");
    memset(&e, 0, sizeof(e));
    if (strncmp(s, "tcp:", 4) == 0) {
        ret = parse_tcp(s + 4, s, &e, err, errlen);
        if (ret != 0)
            return ret;
    } else if (strncmp(s, "unix:", 5) == 0) {
        size_t n = strlen(s + 5);

        if (n == 0)
            return parse_fail(err, errlen, s, "empty UNIX socket path");
        if (n >= sizeof(e.path))
            return parse_fail(err, errlen, s, "UNIX socket path longer than %zu bytes",
                              sizeof(e.path) - 1);
        memcpy(e.path, s + 5, n + 1);
        e.kind = VM_NET_UNIX;
    } else {
        return parse_fail(err, errlen, s, "expected tcp:HOST:PORT or unix:PATH");
    }
    *ep = e;
    return 0;
}

int vm_net_endpoint_format(const struct vm_net_endpoint *ep, char *buf, size_t len)
{
    int n;

    if (ep->kind == VM_NET_UNIX)
        n = snprintf(buf, len, "unix:%s", ep->path);
    else if (strchr(ep->host, ':') != NULL)
        n = snprintf(buf, len, "tcp:[%s]:%u", ep->host, (unsigned)ep->port);
    else
        n = snprintf(buf, len, "tcp:%s:%u", ep->host, (unsigned)ep->port);
    return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

static int tcp_resolve(const struct vm_net_endpoint *ep, int passive, struct addrinfo **res)
{
    struct addrinfo hints;
    char port[8];
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    snprintf(port, sizeof(port), "%u", (unsigned)ep->port);
    rc = getaddrinfo(ep->host, port, &hints, res);
    if (rc == EAI_SYSTEM)
        return -errno;
    if (rc == EAI_MEMORY)
        return -ENOMEM;
    if (rc != 0) {
        am_log(AM_LOG_INFO, "vmm-net", "cannot resolve '%s': %s", ep->host, gai_strerror(rc));
        return -EHOSTUNREACH;
    }
    return 0;
}

static void unix_addr(const struct vm_net_endpoint *ep, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    /* The parser bounded the path below sizeof(sun_path). */
    memcpy(sa->sun_path, ep->path, strlen(ep->path) + 1);
}

static int set_nodelay(int fd)
{
    int one = 1;

    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0 ? 0 : -errno;
}

/* True when a UNIX socket file exists at the path and nobody accepts on it. */
static int unix_path_is_stale(const struct sockaddr_un *sa)
{
    struct stat st;
    int fd, stale;

    if (stat(sa->sun_path, &st) != 0 || !S_ISSOCK(st.st_mode))
        return 0;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    stale = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0 && errno == ECONNREFUSED;
    close(fd);
    return stale;
}

static int listen_unix(const struct vm_net_endpoint *ep, int *fd_out)
{
    struct sockaddr_un sa;
    int fd, ret;

    unix_addr(ep, &sa);
    /* Non-blocking so that vm_net_accept never blocks past its timeout. */
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (unix_path_is_stale(&sa))
        unlink(sa.sun_path);
    if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(fd, NET_LISTEN_BACKLOG) != 0) {
        ret = -errno;
        close(fd);
        return ret;
    }
    *fd_out = fd;
    return 0;
}

static int listen_tcp(const struct vm_net_endpoint *ep, int *fd_out)
{
    struct addrinfo *res, *ai;
    int ret, one = 1;

    ret = tcp_resolve(ep, 1, &res);
    if (ret != 0)
        return ret == -EHOSTUNREACH ? -EADDRNOTAVAIL : ret;
    ret = -EADDRNOTAVAIL;
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);

        if (fd < 0) {
            ret = -errno;
            continue;
        }
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
            bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, NET_LISTEN_BACKLOG) != 0) {
            ret = -errno;
            close(fd);
            continue;
        }
        *fd_out = fd;
        ret = 0;
        break;
    }
    freeaddrinfo(res);
    return ret;
}

int vm_net_listen(const struct vm_net_endpoint *ep, int *fd_out)
{
    if (ep == NULL || fd_out == NULL)
        return -EINVAL;
    switch (ep->kind) {
    case VM_NET_TCP: return listen_tcp(ep, fd_out);
    case VM_NET_UNIX: return listen_unix(ep, fd_out);
    }
    return -EINVAL;
}

int vm_net_listen_port(int listen_fd, uint16_t *port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(listen_fd, (struct sockaddr *)&ss, &len) != 0)
        return -errno;
    if (ss.ss_family == AF_INET)
        *port = ntohs(((const struct sockaddr_in *)&ss)->sin_port);
    else if (ss.ss_family == AF_INET6)
        *port = ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
    else
        return -EINVAL;
    return 0;
}

void vm_net_listen_close(const struct vm_net_endpoint *ep, int listen_fd)
{
    close(listen_fd);
    if (ep->kind == VM_NET_UNIX)
        unlink(ep->path);
}

static int64_t remaining_ms(uint64_t deadline)
{
    uint64_t now = am_now_ns();

    return now >= deadline ? 0 : (int64_t)((deadline - now + 999999) / 1000000);
}

int vm_net_accept(int listen_fd, int timeout_ms, int *fd_out)
{
    uint64_t deadline = am_now_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000u;
    struct pollfd pfd = {.fd = listen_fd, .events = POLLIN};
    struct sockaddr_storage ss;
    socklen_t len;
    int fd, rc, ret;

    for (;;) {
        rc = poll(&pfd, 1, timeout_ms < 0 ? -1 : (int)remaining_ms(deadline));
        if (rc < 0 && errno != EINTR)
            return -errno;
        if (rc == 0)
            return -ETIMEDOUT;
        len = sizeof(ss);
        /* The new socket is blocking (accept4 does not pass O_NONBLOCK on). */
        fd = accept4(listen_fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
        if (fd >= 0)
            break;
        /* EAGAIN: the client went away between poll and accept. */
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
            errno != ECONNABORTED)
            return -errno;
    }
    if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
        ret = set_nodelay(fd);
        if (ret != 0) {
            close(fd);
            return ret;
        }
    }
    *fd_out = fd;
    return 0;
}

/* One non-blocking connect attempt bounded by timeout_ms (< 0: none). */
static int connect_once(int family, const struct sockaddr *sa, socklen_t salen, int timeout_ms,
                        int *fd_out)
{
    struct pollfd pfd;
    int fd, rc, err = 0, flags;
    socklen_t elen = sizeof(err);

    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, sa, salen) != 0) {
        if (errno != EINPROGRESS && errno != EAGAIN) {
            err = errno;
            goto err_close;
        }
        pfd.fd = fd;
        pfd.events = POLLOUT;
        do
            rc = poll(&pfd, 1, timeout_ms);
        while (rc < 0 && errno == EINTR);
        if (rc <= 0) {
            err = rc == 0 ? ETIMEDOUT : errno;
            goto err_close;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
            err = errno;
        if (err != 0)
            goto err_close;
    }
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0 ||
        (family != AF_UNIX && set_nodelay(fd) != 0)) {
        err = errno;
        goto err_close;
    }
    *fd_out = fd;
    return 0;

err_close:
    close(fd);
    return -err;
}

static int connect_attempt(const struct vm_net_endpoint *ep, int timeout_ms, int *fd_out)
{
    struct addrinfo *res, *ai;
    struct sockaddr_un sa;
    int ret;

    if (ep->kind == VM_NET_UNIX) {
        unix_addr(ep, &sa);
        return connect_once(AF_UNIX, (const struct sockaddr *)&sa, sizeof(sa), timeout_ms, fd_out);
    }
    ret = tcp_resolve(ep, 0, &res);
    if (ret != 0)
        return ret;
    ret = -EHOSTUNREACH;
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        ret = connect_once(ai->ai_family, ai->ai_addr, ai->ai_addrlen, timeout_ms, fd_out);
        if (ret == 0)
            break;
    }
    freeaddrinfo(res);
    return ret;
}

int vm_net_connect(const struct vm_net_endpoint *ep, int timeout_ms, int *fd_out)
{
    uint64_t deadline = am_now_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000u;
    int ret;

    if (ep == NULL || fd_out == NULL || (ep->kind != VM_NET_TCP && ep->kind != VM_NET_UNIX))
        return -EINVAL;
    for (;;) {
        int64_t left = timeout_ms < 0 ? -1 : remaining_ms(deadline);

        ret = connect_attempt(ep, left < 0 ? -1 : (int)left, fd_out);
        if (ret != -ECONNREFUSED && ret != -ENOENT)
            return ret;
        /* The peer is not listening yet: try again until the time is up. */
        if (timeout_ms >= 0 && remaining_ms(deadline) <= NET_CONNECT_RETRY_NS / 1000000)
            return ret;
        nanosleep(&(struct timespec){.tv_nsec = NET_CONNECT_RETRY_NS}, NULL);
    }
}

int vm_net_set_timeout(int fd, int timeout_ms)
{
    struct timeval tv = {0, 0};

    if (timeout_ms > 0) {
        tv.tv_sec = timeout_ms / 1000;
        tv.tv_usec = (timeout_ms % 1000) * 1000;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0)
        return -errno;
    return 0;
}

static int io_errno(int e)
{
    /* SO_RCVTIMEO/SO_SNDTIMEO expiry shows as EAGAIN on a blocking socket. */
    return e == EAGAIN || e == EWOULDBLOCK ? -ETIMEDOUT : -e;
}

/* Drops n transferred bytes from the front of an iovec array. */
static void iov_advance(struct iovec **iov, int *iovcnt, size_t n)
{
    while (*iovcnt > 0 && n >= (*iov)->iov_len) {
        n -= (*iov)->iov_len;
        (*iov)++;
        (*iovcnt)--;
    }
    if (*iovcnt > 0) {
        (*iov)->iov_base = (uint8_t *)(*iov)->iov_base + n;
        (*iov)->iov_len -= n;
    }
}

int vm_net_readv_full(int fd, struct iovec *iov, int iovcnt, size_t *done)
{
    size_t total = 0;

    if (iovcnt < 0 || iovcnt > IOV_MAX)
        return -EINVAL;
    iov_advance(&iov, &iovcnt, 0); /* skip leading empty entries */
    while (iovcnt > 0) {
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
        ssize_t n = recvmsg(fd, &msg, MSG_WAITALL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (done != NULL)
                *done = total;
            return io_errno(errno);
        }
        if (n == 0) {
            if (done != NULL)
                *done = total;
            return -ECONNRESET;
        }
        total += (size_t)n;
        iov_advance(&iov, &iovcnt, (size_t)n);
    }
    if (done != NULL)
        *done = total;
    return 0;
}

int vm_net_writev_full(int fd, struct iovec *iov, int iovcnt)
{
    if (iovcnt < 0 || iovcnt > IOV_MAX)
        return -EINVAL;
    iov_advance(&iov, &iovcnt, 0);
    while (iovcnt > 0) {
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return io_errno(errno);
        }
        iov_advance(&iov, &iovcnt, (size_t)n);
    }
    return 0;
}

int vm_net_read_full(int fd, void *buf, size_t len, size_t *done)
{
    struct iovec iov = {.iov_base = buf, .iov_len = len};

    return vm_net_readv_full(fd, &iov, 1, done);
}

int vm_net_write_full(int fd, const void *buf, size_t len)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};

    return vm_net_writev_full(fd, &iov, 1);
}

void vm_net_abort(int fd)
{
    shutdown(fd, SHUT_RDWR);
}
