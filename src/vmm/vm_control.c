/* vmm/vm_control: the client side of a mini-VMM's control socket (vm.h). */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/common.h"
#include "vmm/vm.h"

static int vm_control_connect(const char *path, int *fd_out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    *fd_out = fd;
    return 0;
}

static int vm_control_wait(int fd, short events, uint64_t deadline, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    int ms = -1, rc;

    if (timeout_ms >= 0) {
        uint64_t now = am_now_ns();
        ms = now >= deadline ? 0 : (int)((deadline - now) / 1000000u) + 1;
    }
    do
        rc = poll(&p, 1, ms);
    while (rc < 0 && errno == EINTR);
    if (rc < 0)
        return -errno;
    return rc == 0 ? -ETIMEDOUT : 0;
}

int vm_control_request(const char *path, const char *line, char *reply, size_t cap,
                       int timeout_ms)
{
    uint64_t deadline = am_now_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000u;
    char req[VM_CONTROL_LINE_MAX];
    size_t len = strlen(line), got = 0, sent = 0;
    int fd = -1, ret;

    if (!reply || cap == 0)
        return -EINVAL;
    reply[0] = '\0';
    if (len + 1 > sizeof(req) || memchr(line, '\n', len))
        return -EMSGSIZE;
    memcpy(req, line, len);
    req[len++] = '\n';
    ret = vm_control_connect(path, &fd);
    if (ret)
        return ret;
    while (sent < len) {
        ssize_t n = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ret = -errno;
            goto out;
        }
        sent += (size_t)n;
    }
    for (;;) {
        ssize_t n;
        char *nl;

        ret = vm_control_wait(fd, POLLIN, deadline, timeout_ms);
        if (ret)
            goto out;
        n = recv(fd, reply + got, cap - 1 - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ret = -errno;
            goto out;
        }
        if (n == 0) {
            ret = -ECONNRESET;
            goto out;
        }
        got += (size_t)n;
        reply[got] = '\0';
        nl = memchr(reply, '\n', got);
        if (nl) {
            *nl = '\0';
            ret = 0;
            goto out;
        }
        if (got == cap - 1) {
            ret = -EMSGSIZE;
            goto out;
        }
    }
out:
    close(fd);
    return ret;
}
