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
 * validation order: each 16-byte header is checked (type, size bounds)
 * before anything is allocated for its payload. It reads as much as the
 * transport has into a per-connection buffer (one read usually brings a
 * whole message, or several) and hands the messages out one by one; a
 * message that fits the buffer is handed out in place, without a copy or an
 * allocation.
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
    /* Reads up to len bytes: without blocking, or when wait is set, blocking
     * until some bytes come (the socket's receive timeout, if any, bounds
     * the wait). Descriptors that arrive with them are stored in fds (at
     * most max_fds, *nfds set); extra ones are closed and *fds_lost set.
     * Returns bytes read (> 0), 0 at end of stream, -EAGAIN when nothing is
     * available now (or the receive timeout passed), or another negative
     * errno. */
    ssize_t (*recv)(struct vfu_tran *t, void *buf, size_t len, bool wait, int *fds,
                    size_t max_fds, size_t *nfds, bool *fds_lost);
    /* Sends all of iov, fds with the first byte; blocks until done (the
     * socket's send timeout bounds it). One iovec and no descriptors go out
     * with one send(2), anything else with sendmsg(2). 0, -EPIPE/-ECONNRESET
     * when the peer is gone, -ETIMEDOUT, or another negative errno. */
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
    /* payload lies in the receiver's buffer (vfu_rx): valid until the next
     * vfu_rx_step/recv/wait/reset on that receiver; release does not free
     * it. Otherwise payload is the message's own allocation. */
    bool borrowed;
    int fds[VFU_MSG_MAX_FDS];
    size_t nfds;
    bool fds_lost; /* more descriptors came than the receiver takes */
};

/* Takes descriptor i out of the message (the caller now owns it); -1 if
 * there is none at i or it was already taken. */
int vfu_msg_take_fd(struct vfu_msg *m, size_t i);
/* Frees the payload and closes every descriptor not taken. Idempotent. */
void vfu_msg_release(struct vfu_msg *m);

/* Receive buffer per connection: a 4 KiB transfer with its header and
 * room to spare; larger messages get their own allocation. */
#define VFU_RX_BUF_SIZE 8192u

/* Descriptors that came with a read, waiting for the message they belong
 * to: the one holding the read's last byte (a socket read stops right after
 * the bytes that carried descriptors, and a sender attaches them to the
 * first byte of its message). */
struct vfu_rx_fds {
    uint64_t owner; /* stream offset of that message's first byte */
    int fds[VFU_MSG_MAX_FDS];
    size_t nfds;
    bool lost;
};

struct vfu_rx {
    unsigned expect_type; /* VFU_HDR_TYPE_COMMAND or _REPLY */
    uint64_t max_size;
    size_t max_fds;
    /* Read-ahead: buf[start, end) is received and not handed out yet;
     * buf[start] is at stream offset pos. */
    uint8_t buf[VFU_RX_BUF_SIZE];
    size_t start, end;
    uint64_t pos;
    /* A message larger than buf, assembled in its own allocation, with
     * big_got payload bytes in so far (in_big set). */
    struct vfu_msg big;
    size_t big_got;
    uint64_t big_pos;
    bool in_big;
    /* Descriptor groups waiting for their message: at most the one of the
     * partly received message plus the one of the latest read. */
    struct vfu_rx_fds grp[2];
    size_t ngrp;
};

void vfu_rx_init(struct vfu_rx *rx, unsigned expect_type, uint64_t max_size, size_t max_fds);
/* Returns 1 with *out the next whole message (the caller releases it;
 * a borrowed payload is valid until the next call on rx), reading what the
 * transport has without blocking; 0 when more bytes are needed;
 * -ECONNRESET at end of stream (a partial message is dropped);
 * -EINVAL/-E2BIG when a header fails vfu_hdr_check (out->hdr holds it so the
 * caller can answer; nothing was allocated; the stream cannot continue);
 * -ENOMEM, or a transport error. */
int vfu_rx_step(struct vfu_rx *rx, struct vfu_tran *t, struct vfu_msg *out);
/* Like vfu_rx_step, but blocks in the transport's reads until a whole
 * message is in: the socket's receive timeout (vfu_sock_set_recv_timeout)
 * bounds each silence, -ETIMEDOUT when it passes. Never 0. */
int vfu_rx_recv(struct vfu_rx *rx, struct vfu_tran *t, struct vfu_msg *out);
/* Like vfu_rx_step on a socket transport, but waits (poll) up to timeout_ms
 * (< 0: forever) for a whole message; -ETIMEDOUT when it does not come. */
int vfu_rx_wait(struct vfu_rx *rx, struct vfu_tran *t, struct vfu_msg *out, int timeout_ms);
/* Drops what was received and not handed out (a partial message, read-ahead
 * bytes, their descriptors). */
void vfu_rx_reset(struct vfu_rx *rx);

/* Sends h followed by the parts; sets h->size (-EMSGSIZE above 4 GiB). */
int vfu_send(struct vfu_tran *t, struct vfu_hdr *h, const struct iovec *parts, unsigned nparts,
             const int *fds, size_t nfds);
/* Sends a message built in one buffer: msg[0, len) starts with its header,
 * whose size this sets to len (one send(2) without descriptors).
 * -EMSGSIZE when len is below 16 or above 4 GiB. */
int vfu_send_msg(struct vfu_tran *t, void *msg, size_t len, const int *fds, size_t nfds);

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
/* Sets the receive timeout that bounds each blocking read (vfu_rx_recv). */
int vfu_sock_set_recv_timeout(int fd, int timeout_ms);

#endif
