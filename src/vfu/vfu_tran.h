/* vfu_tran: how vfio-user bytes and file descriptors move.
 *
 * Two transports behind one small ops table (the libvfio-user tran_sock /
 * tran_pipe split):
 * - the UNIX stream socket, with descriptors as SCM_RIGHTS;
 * - a memory buffer (input bytes in, replies appended to an output buffer,
 *   no descriptors), which makes the protocol handler fuzzable and lets tests
 *   feed exact byte sequences.
 *
 * On top of a transport, vfu_rx assembles whole messages in the fixed
 * validation order: the 16-byte header is read and checked (type, size
 * bounds) before the payload is allocated.
 *
 * Ownership: descriptors received with a message belong to the vfu_msg.
 * A handler that keeps one takes it with vfu_msg_take_fd; vfu_msg_release is
 * the one place that closes the rest.
 */
#ifndef ACCMIG_VFU_TRAN_H
#define ACCMIG_VFU_TRAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "vfu/vfu_msg.h"

struct vfu_tran;

struct vfu_tran_ops {
    /* Reads up to len bytes without blocking. Descriptors that arrive with
     * them are stored in fds (at most max_fds, *nfds set); extra ones are
     * closed and *fds_lost set. Returns bytes read (> 0), 0 at end of stream,
     * -EAGAIN when nothing is available now, or another negative errno. */
    ssize_t (*recv)(struct vfu_tran *t, void *buf, size_t len, int *fds, size_t max_fds,
                    size_t *nfds, bool *fds_lost);
    /* Sends all of iov, fds with the first byte; blocks until done (the
     * socket's send timeout bounds it). 0, -EPIPE/-ECONNRESET when the peer
     * is gone, -ETIMEDOUT, or another negative errno. */
    int (*send)(struct vfu_tran *t, const struct iovec *iov, unsigned iovcnt, const int *fds,
                size_t nfds);
};

struct vfu_tran {
    const struct vfu_tran_ops *ops;
    int fd;    /* socket transport: the connected socket (not owned) */
    void *ctx; /* buffer transport: its struct vfu_buf_tran */
};

/* The socket transport over a connected AF_UNIX stream socket. */
void vfu_tran_sock_init(struct vfu_tran *t, int fd);

/* The buffer transport. Input: in[0..in_len), handed out at most max_chunk
 * bytes per recv (0 = no limit) to exercise partial reads. Output: replies
 * are appended to out while they fit in out_cap (the rest is counted in
 * out_total but dropped), so out may be NULL for a fuzzer. Never carries
 * descriptors: a send with fds returns -EINVAL. */
struct vfu_buf_tran {
    const uint8_t *in;
    size_t in_len, in_pos, max_chunk;
    uint8_t *out;
    size_t out_len, out_cap;
    uint64_t out_total;
};
void vfu_tran_buf_init(struct vfu_tran *t, struct vfu_buf_tran *b);

/* ---- messages ---- */
#define VFU_MSG_MAX_FDS 16u /* storage per message; receivers set a lower limit */

struct vfu_msg {
    struct vfu_hdr hdr;
    uint8_t *payload; /* hdr.size - 16 bytes (NULL when empty) */
    size_t len;
    int fds[VFU_MSG_MAX_FDS];
    size_t nfds;
    bool fds_lost; /* more descriptors came than the receiver takes */
};

/* Takes descriptor i out of the message (the caller now owns it); -1 if
 * there is none at i or it was already taken. */
int vfu_msg_take_fd(struct vfu_msg *m, size_t i);
/* Frees the payload and closes every descriptor not taken. Idempotent. */
void vfu_msg_release(struct vfu_msg *m);

struct vfu_rx {
    unsigned expect_type; /* VFU_HDR_TYPE_COMMAND or _REPLY */
    uint64_t max_size;
    size_t max_fds;
    /* assembly state */
    struct vfu_msg cur;
    size_t hdr_got, payload_got;
};

void vfu_rx_init(struct vfu_rx *rx, unsigned expect_type, uint64_t max_size, size_t max_fds);
/* Reads what is available and returns 1 with *out a whole message (the
 * caller releases it), 0 when more bytes are needed, -ECONNRESET at end of
 * stream (a partial message is dropped), -EINVAL/-E2BIG when the header
 * fails vfu_hdr_check (out->hdr holds it so the caller can answer; nothing
 * was allocated; the stream cannot continue), -ENOMEM, or a transport
 * error. */
int vfu_rx_step(struct vfu_rx *rx, struct vfu_tran *t, struct vfu_msg *out);
/* Like vfu_rx_step on a socket transport, but waits (poll) up to timeout_ms
 * (< 0: forever) for a whole message; -ETIMEDOUT when it does not come. */
int vfu_rx_wait(struct vfu_rx *rx, struct vfu_tran *t, struct vfu_msg *out, int timeout_ms);
/* Drops a partially assembled message. */
void vfu_rx_reset(struct vfu_rx *rx);

/* Sends h followed by the parts; sets h->size (-EMSGSIZE above 4 GiB). */
int vfu_send(struct vfu_tran *t, struct vfu_hdr *h, const struct iovec *parts, unsigned nparts,
             const int *fds, size_t nfds);

/* ---- UNIX sockets ---- */
/* Binds and listens on path with mode 0600; path appears only once the
 * socket listens (bound as "<path>.tmp", then renamed). A stale socket at
 * path is replaced; any other kind of file there (or at <path>.tmp) is
 * -EEXIST. -ENAMETOOLONG if "<path>.tmp" does not fit sockaddr_un. */
int vfu_sock_listen(const char *path, int *out_fd);
/* Connects a blocking, close-on-exec socket to path. */
int vfu_sock_connect(const char *path, int *out_fd);
/* Sets the send timeout that bounds vfu_tran send on fd. */
int vfu_sock_set_send_timeout(int fd, int timeout_ms);

#endif
