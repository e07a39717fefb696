/* vfu/server: listening sockets, an epoll loop that accepts clients, and a
 * thread per connected client that reads its socket and handles its
 * messages. No lock is shared between VFs: a session's handlers run under
 * its VF's session lock (vfu_dev.h), and what the server keeps per VF has
 * its own small lock (conn_lock) or belongs to one thread. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
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

enum ep_kind { EP_STOP, EP_SIGNAL, EP_LISTEN };

struct srv_vf;

/* What an epoll event points at. */
struct ep_tag {
    enum ep_kind kind;
    struct srv_vf *sv;
};

struct srv_vf {
    struct vfu_server *srv;
    struct vfu_vf *vf;
    /* listen_fd, path, the tags, has_thread and client_thread belong to
     * the thread in vfu_server_run (and to create/destroy, which may not
     * overlap it): it starts and joins the client thread. */
    int listen_fd;
    struct ep_tag listen_tag;
    char path[PATH_MAX]; /* for logs; "" when unknown */
    bool unlink_path;    /* we created the socket at path */
    bool has_thread; /* client_thread is joinable */
    pthread_t client_thread;
    /* session: set by the run thread before it starts the client thread,
     * then the client thread's alone (it closes it, and opens the next one
     * for a handed-over client); pthread_create and pthread_join order the
     * hand-overs, so no lock. */
    struct vfu_session *session;
    /* conn_lock protects conn_fd, pending_fd and client_done (this VF
     * only): the run thread sets conn_fd at accept, polls it for a hang-up,
     * hands a reconnecting client over in pending_fd and shuts conn_fd down
     * at stop; the client thread closes conn_fd once its session has
     * ended, then serves pending_fd or sets client_done and ends. Held only
     * around those few calls (a close, a shutdown, a zero-timeout poll, a
     * store), never across a handler, a wait or another lock: whoever waits
     * for it waits that long at most. It is what keeps the run thread from
     * shutting down a number that close has already given to someone else,
     * and a handed-over client from being lost. */
    pthread_mutex_t conn_lock;
    int conn_fd;
    int pending_fd; /* a client waiting for the current session to end */
    bool client_done;
};

struct vfu_server {
    struct vfu_device *dev;
    /* stopping: set by the run thread while it detaches clients, read by
     * client threads for their last log line; atomic, no lock. */
    bool stopping;
    /* epfd, the listening sockets (srv_vf), sig_fd and the tags: set up by
     * create, used by the run thread alone (create, run and destroy never
     * overlap), so no lock. stop_fd is written by vfu_server_stop from any
     * thread or a signal handler: an eventfd write, no lock. */
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

/* STYLE 11: a _locked function checks that its lock is held. */
static void srv_conn_assert_locked(struct srv_vf *sv)
{
    if (pthread_mutex_trylock(&sv->conn_lock) == 0) {
        pthread_mutex_unlock(&sv->conn_lock);
        assert(!"conn_lock not held");
    }
}

/* Whether the VF's current client has hung up (its thread may still be
 * inside a handler, or ending the session). */
static bool srv_fd_hung_up(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};

    return fd >= 0 && poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static bool srv_conn_hung_up_locked(struct srv_vf *sv)
{
    srv_conn_assert_locked(sv);
    return srv_fd_hung_up(sv->conn_fd);
}

/* The client's session has ended: closes its connection and takes the
 * next one, if a client connected while this one was leaving. Returns
 * that fd (now conn_fd), or -1 after marking the thread done. */
static int srv_conn_next_locked(struct vfu_server *s, struct srv_vf *sv)
{
    int fd = sv->pending_fd;

    srv_conn_assert_locked(sv);
    if (sv->conn_fd >= 0)
        close(sv->conn_fd);
    sv->conn_fd = -1;
    sv->pending_fd = -1;
    /* stop shuts down conn_fd under this lock after setting stopping:
     * either it sees the new conn_fd, or we see stopping. */
    if (fd >= 0 && __atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE)) {
        close(fd);
        fd = -1;
    }
    if (fd < 0)
        sv->client_done = true;
    else
        sv->conn_fd = fd;
    return fd;
}

static void srv_session_log_end(struct vfu_server *s, struct srv_vf *sv, int why)
{
    if (__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE))
        am_log(AM_LOG_INFO, "vfu", "%s: detaching the client: the server stops", sv->vf->name);
    else if (why == -ECONNRESET)
        am_log(AM_LOG_INFO, "vfu", "%s: client closed the connection", sv->vf->name);
    else
        am_log(AM_LOG_GUEST, "vfu", "%s: ending the session: %s", sv->vf->name, strerror(-why));
}

/* A VF's client thread: blocking reads, each message handled under the
 * VF's session lock; when the session ends (VF reset, unmapped) the
 * connection is closed, and a client that connected meanwhile (while this
 * one was leaving) is served next by this same thread, so the accept loop
 * never waits for a handler. */
static void *srv_client_main(void *arg)
{
    struct srv_vf *sv = arg;
    struct vfu_server *s = sv->srv;

    for (;;) {
        struct vfu_tran t;
        int fd, ret;

        srv_session_log_end(s, sv, vfu_session_serve(sv->session));
        vfu_session_close(sv->session);
        sv->session = NULL;
        pthread_mutex_lock(&sv->conn_lock);
        fd = srv_conn_next_locked(s, sv);
        pthread_mutex_unlock(&sv->conn_lock);
        if (fd < 0)
            return NULL;
        vfu_tran_sock_init(&t, fd);
        ret = vfu_session_open(sv->vf, &t, &sv->session);
        if (ret) {
            am_log(AM_LOG_ERR, "vfu", "%s: cannot serve a client: %s", sv->vf->name,
                   strerror(-ret));
            pthread_mutex_lock(&sv->conn_lock);
            srv_conn_next_locked(s, sv); /* closes fd; nothing can be pending */
            pthread_mutex_unlock(&sv->conn_lock);
            return NULL;
        }
    }
}

/* Detaches every client (their sockets shut down, so blocked reads and
 * sends return; a handler in flight finishes first) and joins their
 * threads. */
static void srv_clients_stop(struct vfu_server *s)
{
    __atomic_store_n(&s->stopping, true, __ATOMIC_RELEASE);
    for (unsigned i = 0; s->vfs && i < s->num_vfs; i++) {
        struct srv_vf *sv = &s->vfs[i];
        pthread_mutex_lock(&sv->conn_lock);
        if (sv->conn_fd >= 0)
            shutdown(sv->conn_fd, SHUT_RDWR);
        pthread_mutex_unlock(&sv->conn_lock);
    }
    for (unsigned i = 0; s->vfs && i < s->num_vfs; i++) {
        if (s->vfs[i].has_thread) {
            pthread_join(s->vfs[i].client_thread, NULL);
            s->vfs[i].has_thread = false;
        }
    }
}

enum srv_room { ROOM_FREE, ROOM_HANDED_OVER, ROOM_TAKEN };

/* Where a new client of the VF goes: the VF is free (its thread, if any,
 * has ended and is joined: that join waits for nothing); the current
 * client hung up, so its thread takes fd once its session has ended (a
 * client that reconnects at once is served, not refused, and the loop
 * does not wait for that VF's handler in flight); or the VF has a live
 * client (or one waiting already). */
static enum srv_room srv_client_room(struct srv_vf *sv, int fd)
{
    enum srv_room room;

    if (!sv->has_thread)
        return ROOM_FREE;
    pthread_mutex_lock(&sv->conn_lock);
    if (sv->client_done) {
        room = ROOM_FREE;
    } else if (srv_conn_hung_up_locked(sv) &&
               (sv->pending_fd < 0 || srv_fd_hung_up(sv->pending_fd))) {
        /* A waiting client that has itself gone since gives up its place. */
        if (sv->pending_fd >= 0)
            close(sv->pending_fd);
        sv->pending_fd = fd;
        room = ROOM_HANDED_OVER;
    } else {
        room = ROOM_TAKEN;
    }
    pthread_mutex_unlock(&sv->conn_lock);
    if (room == ROOM_FREE) {
        pthread_join(sv->client_thread, NULL);
        sv->has_thread = false;
    }
    return room;
}

static void srv_accept(struct srv_vf *sv)
{
    struct vfu_tran t;
    int fd, ret;

    fd = accept4(sv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
        am_log(AM_LOG_ERR, "vfu", "%s: accept: %s", sv->vf->name, strerror(errno));
        return;
    }
    switch (srv_client_room(sv, fd)) {
    case ROOM_HANDED_OVER:
        am_log(AM_LOG_INFO, "vfu", "%s: a client reconnected: served once the last session ends",
               sv->vf->name);
        return;
    case ROOM_TAKEN:
        am_log(AM_LOG_GUEST, "vfu", "%s: refused a second client (one at a time per VF)",
               sv->vf->name);
        close(fd);
        return;
    case ROOM_FREE:
        break;
    }
    vfu_tran_sock_init(&t, fd);
    /* No client thread runs for this VF: its session lock is free. */
    ret = vfu_session_open(sv->vf, &t, &sv->session);
    if (!ret) {
        pthread_mutex_lock(&sv->conn_lock);
        sv->conn_fd = fd;
        sv->client_done = false;
        pthread_mutex_unlock(&sv->conn_lock);
        ret = -pthread_create(&sv->client_thread, NULL, srv_client_main, sv);
        if (!ret) {
            sv->has_thread = true;
            return;
        }
        vfu_session_close(sv->session);
        sv->session = NULL;
        pthread_mutex_lock(&sv->conn_lock);
        sv->conn_fd = -1;
        pthread_mutex_unlock(&sv->conn_lock);
    }
    am_log(AM_LOG_ERR, "vfu", "%s: cannot serve a client: %s", sv->vf->name, strerror(-ret));
    close(fd);
}

/* The epoll loop until a stop; 0 on a clean stop. */
static int srv_loop(struct vfu_server *s)
{
    struct epoll_event evs[16];

    for (;;) {
        int n = epoll_wait(s->epfd, evs, (int)AM_ARRAY_SIZE(evs), -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        for (int i = 0; i < n; i++) {
            struct ep_tag *tag = evs[i].data.ptr;

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
                srv_accept(tag->sv);
                break;
            }
        }
    }
}

int vfu_server_run(struct vfu_server *s)
{
    int ret;

    __atomic_store_n(&s->stopping, false, __ATOMIC_RELEASE);
    am_log(AM_LOG_INFO, "vfu", "serving %u VFs (a thread per client)", s->num_vfs);
    ret = srv_loop(s);
    /* No client is served once run returns. */
    srv_clients_stop(s);
    return ret;
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

static bool srv_has(const char *s)
{
    return s && s[0];
}

/* Exactly one place for the sockets; one VF unless a directory. */
static int srv_config_check(const struct vfu_server_config *cfg)
{
    int places = srv_has(cfg->dir) + srv_has(cfg->socket_path) + cfg->has_listen_fd;

    if (places != 1)
        return -EINVAL;
    if (!srv_has(cfg->dir) && cfg->dev.num_vfs != 1)
        return -EINVAL;
    if (cfg->has_listen_fd && cfg->listen_fd < 0)
        return -EBADF;
    return 0;
}

/* Serves VF sv on fd, a listening AF_UNIX stream socket someone else
 * created (an inherited --fd). It becomes ours only once it is in the
 * epoll set, so a failed create leaves it to the caller. */
static int srv_adopt_listen_fd(struct vfu_server *s, struct srv_vf *sv, int fd)
{
    socklen_t len = sizeof(int);
    int v, ret, flags = fcntl(fd, F_GETFD);

    if (flags < 0)
        return -errno; /* -EBADF: not open */
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) != 0)
        return -errno; /* -ENOTSOCK */
    if (v != AF_UNIX)
        return -EAFNOSUPPORT;
    len = sizeof(v);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) != 0)
        return -errno;
    if (v != SOCK_STREAM)
        return -EPROTOTYPE;
    len = sizeof(v);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) != 0)
        return -errno;
    if (!v)
        return -EINVAL; /* not listening */
    /* It is ours now: no child we might start inherits it. */
    if (fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0)
        return -errno;
    /* No path: the name it was bound to need not be where it is now (a
     * bind then rename, as vfu_sock_listen does), and it is the parent's. */
    ret = ep_add(s, fd, &sv->listen_tag);
    if (ret)
        return ret;
    sv->listen_fd = fd;
    return 0;
}

int vfu_server_create(const struct vfu_server_config *cfg, struct vfu_server **out)
{
    struct vfu_server *s;
    int ret;

    ret = srv_config_check(cfg);
    if (ret)
        return ret;
    if (srv_has(cfg->dir)) {
        ret = srv_make_dir(cfg->dir);
        if (ret)
            return ret;
    }
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
        pthread_mutex_init(&s->vfs[i].conn_lock, NULL);
        s->vfs[i].srv = s;
        s->vfs[i].listen_fd = s->vfs[i].conn_fd = s->vfs[i].pending_fd = -1;
        s->vfs[i].vf = vfu_device_vf(s->dev, i);
        s->vfs[i].listen_tag = (struct ep_tag){EP_LISTEN, &s->vfs[i]};
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
    if (cfg->has_listen_fd) {
        ret = srv_adopt_listen_fd(s, &s->vfs[0], cfg->listen_fd);
        if (ret)
            goto fail;
    }
    for (unsigned i = 0; !cfg->has_listen_fd && i < s->num_vfs; i++) {
        struct srv_vf *sv = &s->vfs[i];
        int n = srv_has(cfg->dir)
                    ? snprintf(sv->path, sizeof(sv->path), "%s/vf%u.sock", cfg->dir, i)
                    : snprintf(sv->path, sizeof(sv->path), "%s", cfg->socket_path);
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
        sv->unlink_path = true;
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
    /* Ends the sessions (each client thread resets its VF). */
    srv_clients_stop(s);
    for (unsigned i = 0; s->vfs && i < s->num_vfs; i++) {
        struct srv_vf *sv = &s->vfs[i];
        if (sv->listen_fd >= 0)
            close(sv->listen_fd);
        if (sv->pending_fd >= 0) /* the joined threads took it; defensive */
            close(sv->pending_fd);
        if (sv->unlink_path)
            unlink(sv->path);
        pthread_mutex_destroy(&sv->conn_lock);
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
