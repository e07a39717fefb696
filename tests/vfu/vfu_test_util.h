/* Helpers shared by the vfu tests: an in-process server on its own thread,
 * raw messages over a socket, descriptor counting. */
#ifndef ACCMIG_TESTS_VFU_UTIL_H
#define ACCMIG_TESTS_VFU_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "vfu/vfu.h"
#include "vfu/vfu_msg.h"
#include "vfu/vfu_tran.h"

#define TEST_REPLY_TIMEOUT_MS 10000
#define TEST_SETTLE_TIMEOUT_MS 5000

struct test_server {
    char dir[64];
    struct vfu_server *srv;
    pthread_t thread;
    int run_ret;
};

static inline void *test_server_thread(void *arg)
{
    struct test_server *ts = arg;
    ts->run_ret = vfu_server_run(ts->srv);
    return NULL;
}

/* Starts a server with the device dev in a fresh directory (or dir if
 * given). */
static inline int test_server_start_dev(struct test_server *ts, const struct vfu_device_config *dev,
                                        const char *dir)
{
    struct vfu_server_config cfg = {0};
    int ret;

    if (dir) {
        snprintf(ts->dir, sizeof(ts->dir), "%s", dir);
    } else {
        snprintf(ts->dir, sizeof(ts->dir), "/tmp/accmig-vfu-XXXXXX");
        if (!mkdtemp(ts->dir))
            return -errno;
    }
    cfg.dir = ts->dir;
    cfg.dev = *dev;
    ret = vfu_server_create(&cfg, &ts->srv);
    if (ret)
        return ret;
    return -pthread_create(&ts->thread, NULL, test_server_thread, ts);
}

/* The tests' usual device: num_vfs VFs of 2 queue pairs, 1 worker. */
static inline void test_dev_config(struct vfu_device_config *dev, unsigned num_vfs,
                                   enum mig_hw_mode hw)
{
    vfu_device_config_default(dev);
    dev->num_vfs = num_vfs;
    dev->qps_per_vf = 2;
    dev->workers = 1;
    dev->hw = hw;
}

/* Starts a server with num_vfs VFs in a fresh directory (or dir if given). */
static inline int test_server_start(struct test_server *ts, unsigned num_vfs, enum mig_hw_mode hw,
                                    const char *dir)
{
    struct vfu_device_config dev;

    test_dev_config(&dev, num_vfs, hw);
    return test_server_start_dev(ts, &dev, dir);
}

/* Stops and destroys; keep_dir leaves the directory for a restart. */
static inline int test_server_stop(struct test_server *ts, bool keep_dir)
{
    vfu_server_stop(ts->srv);
    pthread_join(ts->thread, NULL);
    vfu_server_destroy(ts->srv);
    ts->srv = NULL;
    if (!keep_dir)
        rmdir(ts->dir);
    return ts->run_ret;
}

static inline const char *test_sock(struct test_server *ts, unsigned vf)
{
    return vfu_server_socket_path(ts->srv, vf);
}

static inline unsigned test_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    unsigned n = 0;
    struct dirent *e;

    if (!d)
        return 0;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

/* Waits until the descriptor count is back to want (the server thread
 * closes a session's descriptors after it notices the disconnect). */
static inline unsigned test_wait_fds(unsigned want)
{
    uint64_t deadline = am_now_ns() + (uint64_t)TEST_SETTLE_TIMEOUT_MS * 1000000u;
    unsigned n;

    while ((n = test_count_fds()) != want && am_now_ns() < deadline)
        usleep(2000);
    return n;
}

/* ---- raw messages ---- */

struct raw_conn {
    int fd;
    struct vfu_tran t;
    struct vfu_rx rx;
    uint16_t id;
};

static inline int raw_connect(struct raw_conn *rc, const char *path)
{
    int ret = vfu_sock_connect(path, &rc->fd);
    if (ret)
        return ret;
    vfu_tran_sock_init(&rc->t, rc->fd);
    vfu_rx_init(&rc->rx, VFU_HDR_TYPE_REPLY, vfu_max_msg_size(VFU_MAX_MAX_XFER), VFU_MSG_MAX_FDS);
    rc->id = 100;
    return 0;
}

static inline void raw_close(struct raw_conn *rc)
{
    vfu_rx_reset(&rc->rx);
    if (rc->fd >= 0)
        close(rc->fd);
    rc->fd = -1;
}

/* Sends cmd with payload (len bytes) and fds, with extra header flags. */
static inline int raw_send(struct raw_conn *rc, uint16_t cmd, uint32_t flags, const void *payload,
                           size_t len, const int *fds, size_t nfds)
{
    struct vfu_hdr h = {.msg_id = ++rc->id, .cmd = cmd, .flags = VFU_HDR_TYPE_COMMAND | flags};
    struct iovec part = {(void *)payload, len};
    return vfu_send(&rc->t, &h, &part, len ? 1 : 0, fds, nfds);
}

/* Receives the reply to the last raw_send: 0 and *m (release it), the
 * negative error of an error reply (the message released), or a transport
 * error. */
static inline int raw_recv(struct raw_conn *rc, struct vfu_msg *m)
{
    int ret = vfu_rx_wait(&rc->rx, &rc->t, m, TEST_REPLY_TIMEOUT_MS);
    if (ret < 0)
        return ret;
    if (m->hdr.msg_id != rc->id)
        return -EPROTO;
    if (m->hdr.flags & VFU_HDR_ERROR) {
        ret = -(int)m->hdr.error;
        vfu_msg_release(m);
        return ret ? ret : -EIO;
    }
    return 0;
}

/* Send + receive; the reply payload is copied into rep (cap bytes). */
static inline int raw_call(struct raw_conn *rc, uint16_t cmd, const void *payload, size_t len,
                           const int *fds, size_t nfds, void *rep, size_t cap, size_t *rep_len)
{
    struct vfu_msg m;
    int ret = raw_send(rc, cmd, 0, payload, len, fds, nfds);
    if (ret)
        return ret;
    ret = raw_recv(rc, &m);
    if (ret)
        return ret;
    if (rep_len)
        *rep_len = m.len;
    if (rep && m.len)
        memcpy(rep, m.payload, AM_MIN(m.len, cap));
    vfu_msg_release(&m);
    return 0;
}

/* The VERSION handshake with the given JSON (NULL: none). */
static inline int raw_version(struct raw_conn *rc, const char *json)
{
    uint8_t buf[1024];
    struct vfu_version v = {0, 0};
    size_t n = json ? strlen(json) + 1 : 0;

    memcpy(buf, &v, sizeof(v));
    if (json)
        memcpy(buf + sizeof(v), json, n);
    return raw_call(rc, VFU_CMD_VERSION, buf, sizeof(v) + n, NULL, 0, NULL, 0, NULL);
}

static inline int raw_open(struct raw_conn *rc, const char *path)
{
    int ret = raw_connect(rc, path);
    if (ret)
        return ret;
    return raw_version(rc, "{\"capabilities\":{\"max_msg_fds\":8}}");
}

#endif
