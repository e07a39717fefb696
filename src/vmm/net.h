/* vmm/net: the byte streams a migration runs over: TCP or UNIX stream
 * sockets, named by endpoint strings "tcp:HOST:PORT" or "unix:PATH".
 *
 * Contract
 * - Every function returns 0 or a negative errno; none keeps global state.
 * - Connected sockets are close-on-exec and blocking; TCP ones get
 *   TCP_NODELAY. Listening sockets are non-blocking (vm_net_accept polls).
 *   Timeouts: vm_net_set_timeout() arms SO_RCVTIMEO/SO_SNDTIMEO, so every
 *   later blocking read or write on the socket gives up with -ETIMEDOUT when
 *   no byte moves for that long (no poll per call).
 * - The *_full helpers move exactly the requested bytes, resuming after
 *   EINTR and short transfers. A peer that closes (or a socket shut down by
 *   vm_net_abort) gives -ECONNRESET on read (*done, when given, says how many
 *   bytes arrived first) and -EPIPE or -ECONNRESET on write; writes never
 *   raise SIGPIPE.
 * - vm_net_abort may be called from another thread to end a transfer that is
 *   blocked in one of these helpers; the fd stays open (the owner closes it).
 */
#ifndef ACCMIG_VMM_NET_H
#define ACCMIG_VMM_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

enum vm_net_kind {
    VM_NET_TCP = 1,
    VM_NET_UNIX = 2,
};

#define VM_NET_HOST_MAX 256 /* bytes with the NUL (a DNS name is at most 253) */
#define VM_NET_PATH_MAX 108 /* sizeof(sun_path), with the NUL */

struct vm_net_endpoint {
    enum vm_net_kind kind;
    char host[VM_NET_HOST_MAX]; /* tcp: name or address, IPv6 without brackets */
    uint16_t port;              /* tcp: 0 means "any free port" when listening */
    char path[VM_NET_PATH_MAX]; /* unix */
};

/* Parses "tcp:HOST:PORT" (HOST a name, an IPv4 address or a bracketed IPv6
 * address such as [::1]; PORT decimal 0..65535) or "unix:PATH". -EINVAL on
 * anything else, with a sentence saying what is wrong written to err (always
 * NUL-terminated when errlen > 0). */
int vm_net_endpoint_parse(const char *s, struct vm_net_endpoint *ep, char *err, size_t errlen);
/* The canonical string of ep ("tcp:[::1]:4444", "unix:/run/x.sock");
 * -ENOSPC when it does not fit. */
int vm_net_endpoint_format(const struct vm_net_endpoint *ep, char *buf, size_t len);

/* A listening socket on ep. UNIX: a stale socket file at PATH (one nobody
 * accepts on) is replaced; a live one is -EADDRINUSE. */
int vm_net_listen(const struct vm_net_endpoint *ep, int *fd_out);
/* The port a TCP listening socket got (useful after port 0). */
int vm_net_listen_port(int listen_fd, uint16_t *port);
/* Closes a listening socket from vm_net_listen and removes its UNIX path. */
void vm_net_listen_close(const struct vm_net_endpoint *ep, int listen_fd);
/* Waits up to timeout_ms (< 0: forever) for a connection: -ETIMEDOUT. */
int vm_net_accept(int listen_fd, int timeout_ms, int *fd_out);
/* Connects within timeout_ms (< 0: forever), retrying while the peer is
 * not listening yet (refused, or no UNIX socket file); the last error after
 * the time is up (-ECONNREFUSED, -ENOENT, -ETIMEDOUT, -EHOSTUNREACH...).
 * A host name that does not resolve is -EHOSTUNREACH at once. */
int vm_net_connect(const struct vm_net_endpoint *ep, int timeout_ms, int *fd_out);

/* Arms the per-transfer timeout (timeout_ms <= 0: none). */
int vm_net_set_timeout(int fd, int timeout_ms);

int vm_net_read_full(int fd, void *buf, size_t len, size_t *done);
int vm_net_write_full(int fd, const void *buf, size_t len);
/* The iov array is consumed (its entries are advanced); iovcnt <= IOV_MAX. */
int vm_net_readv_full(int fd, struct iovec *iov, int iovcnt, size_t *done);
int vm_net_writev_full(int fd, struct iovec *iov, int iovcnt);

/* Ends the transfers on fd in both directions (shutdown): blocked readers
 * and writers in other threads return at once. */
void vm_net_abort(int fd);

#endif
