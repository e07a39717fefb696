/* vfu/server: listening sockets, one epoll loop, sessions per VF. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "vfu/vfu_dev.h"

enum ep_kind { EP_STOP, EP_SIGNAL, EP_LISTEN, EP_CONN };

struct srv_vf;

/* What an epoll event points at. */
struct ep_tag {
    enum ep_kind kind;
    struct srv_vf *sv;
};

/* All fields are touched only by the thread in vfu_server_run (and by
 * create/destroy, which may not overlap it). */
struct srv_vf {
    struct vfu_vf *vf;
    int listen_fd;
    int conn_fd;
    struct vfu_session *session;
    struct ep_tag listen_tag, conn_tag;
    char path[PATH_MAX];
};

struct vfu_server {
    struct vfu_device *dev;
    int epfd;
    int stop_fd; /* eventfd written by vfu_server_stop */
    int sig_fd;  /* signalfd for SIGTERM/SIGINT, or -1 */
    struct ep_tag stop_tag, sig_tag;
    unsigned num_vfs;
    struct srv_vf *vfs;
};

static int ep_add(struct vfu_server *s, int fd, struct ep_tag *tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};
    return epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) ? -errno : 0;
}

static void srv_session_end(struct vfu_server *s, struct srv_vf *sv, int why)
{
    if (why == -ECONNRESET)
        am_log(AM_LOG_INFO, "vfu", "%s: client closed the connection", sv->vf->name);
    else
        am_log(AM_LOG_GUEST, "vfu", "%s: ending the session: %s", sv->vf->name, strerror(-why));
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, sv->conn_fd, NULL);
    vfu_session_close(sv->session);
    sv->session = NULL;
    close(sv->conn_fd);
    sv->conn_fd = -1;
}

static void srv_accept(struct vfu_server *s, struct srv_vf *sv)
{
    struct vfu_tran t;
    int fd, ret;

    fd = accept4(sv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
        am_log(AM_LOG_ERR, "vfu", "%s: accept: %s", sv->vf->name, strerror(errno));
        return;
    }
    if (sv->session) {
        am_log(AM_LOG_GUEST, "vfu", "%s: refused a second client (one at a time per VF)",
               sv->vf->name);
        close(fd);
        return;
    }
    vfu_tran_sock_init(&t, fd);
    ret = vfu_session_open(sv->vf, &t, &sv->session);
    if (!ret) {
        sv->conn_fd = fd;
        ret = ep_add(s, fd, &sv->conn_tag);
        if (ret) {
            vfu_session_close(sv->session);
            sv->session = NULL;
            sv->conn_fd = -1;
        }
    }
    if (ret) {
        am_log(AM_LOG_ERR, "vfu", "%s: cannot serve a client: %s", sv->vf->name, strerror(-ret));
        close(fd);
    }
}

int vfu_server_run(struct vfu_server *s)
{
    struct epoll_event evs[16];

    am_log(AM_LOG_INFO, "vfu", "serving %u VFs (one epoll thread)", s->num_vfs);
    for (;;) {
        int n = epoll_wait(s->epfd, evs, (int)AM_ARRAY_SIZE(evs), -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        for (int i = 0; i < n; i++) {
            struct ep_tag *tag = evs[i].data.ptr;
            struct srv_vf *sv = tag->sv;
            int ret;

            switch (tag->kind) {
            case EP_STOP: {
                uint64_t v;
                if (read(s->stop_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                    return -errno;
                am_log(AM_LOG_INFO, "vfu", "stop requested");
                return 0;
            }
            case EP_SIGNAL: {
                struct signalfd_siginfo si;
                if (read(s->sig_fd, &si, sizeof(si)) == sizeof(si))
                    am_log(AM_LOG_INFO, "vfu", "signal %u: shutting down", si.ssi_signo);
                return 0;
            }
            case EP_LISTEN:
                srv_accept(s, sv);
                break;
            case EP_CONN:
                if (!sv->session)
                    break; /* ended earlier in this batch */
                ret = vfu_session_process(sv->session);
                if (ret)
                    srv_session_end(s, sv, ret);
                break;
            }
        }
    }
}

void vfu_server_stop(struct vfu_server *s)
{
    uint64_t one = 1;
    /* write(2) is async-signal-safe; a full counter still wakes the loop. */
    ssize_t n = write(s->stop_fd, &one, sizeof(one));
    (void)n;
}

static int srv_make_dir(const char *dir)
{
    struct stat st;

    if (mkdir(dir, 0700) == 0)
        return 0;
    if (errno != EEXIST)
        return -errno;
    if (stat(dir, &st) != 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int vfu_server_create(const struct vfu_server_config *cfg, struct vfu_server **out)
{
    struct vfu_server *s;
    int ret;

    if (!cfg->dir || !cfg->dir[0])
        return -EINVAL;
    ret = srv_make_dir(cfg->dir);
    if (ret)
        return ret;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->epfd = s->stop_fd = s->sig_fd = -1;
    ret = vfu_device_create(&cfg->dev, &s->dev);
    if (ret) {
        free(s);
        return ret;
    }
    s->num_vfs = vfu_device_num_vfs(s->dev);
    s->vfs = calloc(s->num_vfs, sizeof(*s->vfs));
    if (!s->vfs) {
        ret = -ENOMEM;
        goto fail;
    }
    for (unsigned i = 0; i < s->num_vfs; i++) {
        s->vfs[i].listen_fd = s->vfs[i].conn_fd = -1;
        s->vfs[i].vf = vfu_device_vf(s->dev, i);
        s->vfs[i].listen_tag = (struct ep_tag){EP_LISTEN, &s->vfs[i]};
        s->vfs[i].conn_tag = (struct ep_tag){EP_CONN, &s->vfs[i]};
    }
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->epfd < 0 || s->stop_fd < 0) {
        ret = -errno;
        goto fail;
    }
    s->stop_tag = (struct ep_tag){EP_STOP, NULL};
    ret = ep_add(s, s->stop_fd, &s->stop_tag);
    if (ret)
        goto fail;
    if (cfg->handle_signals) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        s->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
        if (s->sig_fd < 0) {
            ret = -errno;
            goto fail;
        }
        s->sig_tag = (struct ep_tag){EP_SIGNAL, NULL};
        ret = ep_add(s, s->sig_fd, &s->sig_tag);
        if (ret)
            goto fail;
    }
    for (unsigned i = 0; i < s->num_vfs; i++) {
        struct srv_vf *sv = &s->vfs[i];
        int n = snprintf(sv->path, sizeof(sv->path), "%s/vf%u.sock", cfg->dir, i);
        if (n < 0 || (size_t)n >= sizeof(sv->path)) {
            ret = -ENAMETOOLONG;
            goto fail;
        }
        ret = vfu_sock_listen(sv->path, &sv->listen_fd);
        if (ret) {
            am_log(AM_LOG_ERR, "vfu", "cannot listen on %s: %s", sv->path, strerror(-ret));
            sv->path[0] = '\0';
            goto fail;
        }
        ret = ep_add(s, sv->listen_fd, &sv->listen_tag);
        if (ret)
            goto fail;
    }
    *out = s;
    return 0;
fail:
    vfu_server_destroy(s);
    return ret;
}

void vfu_server_destroy(struct vfu_server *s)
{
    if (!s)
        return;
    for (unsigned i = 0; s->vfs && i < s->num_vfs; i++) {
        struct srv_vf *sv = &s->vfs[i];
        if (sv->session) {
            vfu_session_close(sv->session);
            close(sv->conn_fd);
        }
        if (sv->listen_fd >= 0) {
            close(sv->listen_fd);
            unlink(sv->path);
        }
    }
    if (s->sig_fd >= 0)
        close(s->sig_fd);
    if (s->stop_fd >= 0)
        close(s->stop_fd);
    if (s->epfd >= 0)
        close(s->epfd);
    free(s->vfs);
    vfu_device_destroy(s->dev);
    free(s);
}

const char *vfu_server_socket_path(const struct vfu_server *s, unsigned i)
{
    return i < s->num_vfs ? s->vfs[i].path : "";
}

struct vfu_device *vfu_server_device(struct vfu_server *s)
{
    return s->dev;
}
