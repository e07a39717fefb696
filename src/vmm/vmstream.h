/* vmm/vmstream: the VMM-to-VMM live migration channel (guest RAM + VF
 * device state) over one connected stream socket. The wire format is
 * docs/vm-stream-format.md.
 *
 * Flow (S = source, D = destination):
 *   both    vmstream_handshake    hellos both ways (magic, version, role,
 *                                 profile); D answers accept/refuse before
 *                                 any RAM moves
 *   S       vmstream_send_device  PRE_COPY device data (match record first)
 *   S       vmstream_device_check D has fed it to its device: accept/refuse
 *   S       vmstream_send_ram_round  (repeat: precopy rounds)
 *   S       vmstream_send_stop_copy  the source guest and device are stopped
 *   S       vmstream_send_ram_round, vmstream_send_device  (final state)
 *   S       vmstream_send_end     END with the stream CRC32C, then waits for
 *                                 D's READY (state restored there, guest not
 *                                 running)
 *   S       vmstream_send_commit  COMMIT: the point of no return
 *   S       vmstream_wait_committed  D's COMMITTED (the guest runs there)
 *   S       vmstream_send_abort   instead of COMMIT: the source keeps its guest
 *   D       vmstream_recv_loop    D's side up to READY
 *   D       vmstream_recv_commit  waits for COMMIT (or ABORT)
 *   D       vmstream_send_committed  the guest runs here (or never will)
 *   docs/vm.md has the handover as a state machine for both sides.
 *
 * Contract
 * - Functions return 0 or a negative errno and leave a sentence in
 *   vmstream_error(). Errnos:
 *     -EBADMSG         the peer's bytes are not a valid stream (bad magic,
 *                      unknown mandatory or misplaced record, length, gpa,
 *                      count, sequence or CRC wrong); nothing past the bad
 *                      header is used
 *     -EPROTONOSUPPORT the peer speaks another major version
 *     -ENOTSUP         D: the source's profile or device is incompatible
 *                      (D refused, the reason went to S)
 *     -EREMOTEIO       S: the destination refused or failed; vmstream_error()
 *                      carries its reason
 *     -ECONNRESET/-EPIPE  the connection ended early (truncated stream)
 *     -ETIMEDOUT       no byte moved for timeout_ms
 *     -ECANCELED       vmstream_abort() was called
 *     -EINVAL          a call out of order or a bad argument (the channel is
 *                      still usable); any other failure is sticky: every later
 *                      call returns the same errno.
 * - The channel never owns the fd: the caller closes it after
 *   vmstream_destroy(). A channel that failed has shut the connection down
 *   (a destination after sending its reason), so the peer is not left
 *   waiting. Records are read with every length, type, gpa and
 *   count checked against the negotiated RAM size before use; allocations
 *   are fixed at create time (about 1 MiB).
 * - Thread safety: one thread drives a stream (the RAM channels' threads
 *   are the stream's own); vmstream_abort() may be called from any other
 *   thread to end a blocked transfer, on every channel.
 */
#ifndef ACCMIG_VMM_VMSTREAM_H
#define ACCMIG_VMM_VMSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmm/vm_ram.h"

#define VMSTREAM_VERSION_MAJOR 2 /* 2: END is answered READY, the handover follows */
#define VMSTREAM_VERSION_MINOR 1 /* 1: RAM channels (the hello's 16-byte extension) */
#define VMSTREAM_CHANNELS_MAX 16 /* RAM channels besides the main one */
#define VMSTREAM_REASON_MAX 512 /* bytes of a refusal reason on the wire */

enum vmstream_role {
    VMSTREAM_SOURCE = 1,
    VMSTREAM_DEST = 2,
};

/* What both sides must agree on before anything moves. */
struct vmstream_profile {
    uint16_t vendor_id;
    uint16_t device_id;
    uint8_t revision;
    uint32_t qp_count;
    uint64_t ram_size;  /* bytes of guest RAM */
    uint32_t page_size; /* dirty-tracking page; VM_RAM_PAGE_SIZE */
};

/* Counters of one side, for reports. Times are am_now_ns() values (0: not
 * reached yet). */
struct vmstream_stats {
    uint64_t rounds;          /* RAM rounds sent / announced by S */
    uint64_t ram_pages;       /* pages that travelled with their data */
    uint64_t zero_pages;      /* pages that travelled as zero runs */
    uint64_t ram_bytes;       /* wire bytes of RAM records, headers included */
    uint64_t dev_bytes;       /* device-state bytes */
    uint64_t records;         /* records S -> D */
    uint64_t bytes;           /* wire bytes S -> D after the hello */
    uint64_t stop_copy_ns;    /* stop-copy marker sent / received */
    uint64_t end_ns;          /* END sent / verified */
    uint64_t ready_ns;        /* READY received / sent */
    uint64_t done_ns;         /* COMMITTED received / sent */
};

/* One RAM round, as sent by S. */
struct vmstream_round {
    uint64_t pages;      /* with data */
    uint64_t zero_pages;
    uint64_t bytes;      /* wire bytes */
};

/* S: where device state comes from (mig_read in a saving state).
 * read copies up to len bytes and returns the count, 0 when nothing more is
 * available now (PRE_COPY's temporary end, mig_read's -ENOMSG) or ever
 * (STOP_COPY's end), or a negative errno (the channel then fails with it). */
struct vmstream_device_source {
    ssize_t (*read)(void *opaque, void *buf, size_t len);
    void *opaque;
};

/* D: where device state goes (mig_write in RESUMING).
 * write absorbs the next bytes (any segmentation); 0 or a negative errno
 *   with a sentence in why (e.g. mig_last_error: "qp count differs ...").
 * finish is called once the END record and its CRC checked out: load the
 *   state (RESUMING -> STOP) and check the guest RAM, but run nothing yet;
 *   0 or a negative errno with a reason. Only after it returns 0 does S
 *   hear READY; the guest may run only after COMMIT (vmstream_recv_commit).
 * Either may be NULL (no device); device records then make D refuse. */
struct vmstream_device_ops {
    int (*write)(void *opaque, const void *buf, size_t len, char *why, size_t why_len);
    int (*finish)(void *opaque, char *why, size_t why_len);
    void *opaque;
};

struct vmstream;

/* fd: a connected stream socket (TCP, UNIX, socketpair). timeout_ms > 0
 * bounds every wait for the peer (<= 0: wait forever). -EINVAL on a bad
 * role, -ENOMEM. */
int vmstream_create(int fd, enum vmstream_role role, int timeout_ms, struct vmstream **out);
void vmstream_destroy(struct vmstream *s);

/* Exchanges hellos. mine is this side's profile; peer (may be NULL)
 * receives the other side's. D compares the source's profile with its own
 * (every field; the reason names each field that differs, e.g. "qp count
 * differs: source 64, destination 32"), answers accept or refuse and returns
 * 0 or -ENOTSUP. S returns 0 when D accepted, -EREMOTEIO when it refused. */
int vmstream_handshake(struct vmstream *s, const struct vmstream_profile *mine,
                       struct vmstream_profile *peer);

/* S: pulls device state from src until it returns 0 and sends it in
 * records; *bytes (may be NULL) gets the count. */
int vmstream_send_device(struct vmstream *s, const struct vmstream_device_source *src,
                         uint64_t *bytes);
/* S: asks D whether its device accepted the device state so far (the
 * PRE_COPY match data); 0 or -EREMOTEIO with D's reason. */
int vmstream_device_check(struct vmstream *s);

/* S: sends every page whose bit is set in bitmap (vm_ram_bitmap_words(ram)
 * words, left unchanged). The first round sends untouched (never backed)
 * pages as zero runs without reading them and every backed page as data;
 * later rounds send every page set as data (a page logged dirty since the
 * first round was written, so it is backed; one that was not reads as
 * zeros). ram must have the negotiated
 * size (-EINVAL). Before the stop-copy marker the guest may still write:
 * the caller resends what it logs. out (may be NULL) gets the counts. A
 * failure the destination reported meanwhile is returned as -EREMOTEIO. */
int vmstream_send_ram_round(struct vmstream *s, struct vm_ram *ram, const uint64_t *bitmap,
                            struct vmstream_round *out);
/* S: the source guest and device are stopped; what follows is final. */
int vmstream_send_stop_copy(struct vmstream *s);
/* S: sends END (stream CRC32C) and waits for D's READY: 0 when the
 * destination holds the state, loaded and not running; -EREMOTEIO with D's
 * reason otherwise. Whatever it returns, S has not handed over yet: on a
 * failure it resumes its guest (and calls vmstream_send_abort). */
int vmstream_send_end(struct vmstream *s);
/* S, after READY: sends COMMIT carrying the migration's id. This is the
 * point of no return: from its first byte on the destination may run the
 * guest, so S must never resume it by itself. 0 sent; -EINPROGRESS the send
 * failed (the handover is in doubt: D may or may not have it);
 * -ECANCELED/-EINVAL nothing was sent (vmstream_abort came first, or out of
 * order). */
int vmstream_send_commit(struct vmstream *s, uint64_t id);
/* S, after vmstream_send_commit: waits for COMMITTED. 0 the guest runs on D;
 * -EREMOTEIO D refused (it does not run the guest and never will: S may
 * resume); -EINPROGRESS no answer (reset, timeout, abort, garbage): in
 * doubt, vmstream_error says why. */
int vmstream_wait_committed(struct vmstream *s);
/* S, after END (READY read or not) and instead of COMMIT: tells D, best
 * effort (never blocking), that the source keeps the guest; then hangs up.
 * A no-op before END, after COMMIT, and once vmstream_abort told D. */
void vmstream_send_abort(struct vmstream *s);

/* D: after a successful handshake, receives records into ram (which must
 * have the negotiated size), device state into ops, answers the device
 * check, verifies END and calls ops->finish, then answers READY.
 * Returns 0 after READY went out. On any failure D sends S a
 * failure answer with the reason (best effort), drains what S still sends
 * for at most the timeout, and returns the error: S cannot have handed over,
 * so D discards. (A failure to send READY itself also returns an error: S
 * cannot have read a whole READY, so it cannot commit.) */
int vmstream_recv_loop(struct vmstream *s, struct vm_ram *ram,
                       const struct vmstream_device_ops *ops);
/* D, after vmstream_recv_loop returned 0: waits (timeout_ms) for the
 * source's word. 0 COMMIT (*id its migration id, which must be the one the
 * source's hello named, when it named one: -EBADMSG otherwise): the guest
 * is D's to run;
 * -ECONNABORTED ABORT: S keeps the guest, D discards; any other errno
 * (-ECONNRESET, -ETIMEDOUT, -ECANCELED, -EBADMSG): in doubt, S may or may
 * not have committed, and D must neither run nor drop the guest by itself. */
int vmstream_recv_commit(struct vmstream *s, uint64_t *id);
/* D, after COMMIT: err 0 tells S the guest runs here; otherwise that it does
 * not and never will (reason). 0 or the send's errno. */
int vmstream_send_committed(struct vmstream *s, int err, const char *reason);

/* ---- RAM channels (multifd) ----
 * With channels, RAM pages travel over n extra connections, each driven by
 * its own thread inside the stream; the hello, device state, rounds,
 * stop-copy, END and the handover stay on the main one
 * (docs/vm-stream-format.md, "Channels").
 *
 * S: vmstream_set_channels(s, n, id) before the handshake asks for n
 *   channels (0..VMSTREAM_CHANNELS_MAX) under migration id (non-zero when
 *   n > 0); D: vmstream_set_channels(s, max, 0) sets how many it accepts
 *   (default 0). -EINVAL on a bad count or a zero id, or after the
 *   handshake. After the handshake vmstream_channels() is the agreed count
 *   (min of both; 0 with a 2.0 peer: pages then go on the main channel), and
 *   vmstream_migration_id() S's id.
 * S: vmstream_attach_channel(s, fd) for each agreed channel, in index order
 *   (1..n): sends the channel hello and starts the channel's thread; the
 *   stream owns fd from then on, even on failure (it closes it at destroy).
 *   vmstream_channels_wait(s) then reads D's answer: 0 all channels are in,
 *   -EREMOTEIO with D's reason. Later calls (send_ram_round, send_end) spread
 *   the pages over the channels and end every round with a per-channel SYNC.
 * D: vmstream_accept_channel(s, fd) for each connection accepted after the
 *   handshake: reads and checks the channel hello (magic, version, migration
 *   id, index 1..n, no duplicate, channel count); the stream owns fd from
 *   then on. 0 taken (after the n-th, D has told S that all are in);
 *   -EBADMSG/-EPROTONOSUPPORT the hello was wrong (D has refused the
 *   migration with the reason), -ECONNRESET/-ETIMEDOUT it did not come.
 *   vmstream_recv_loop then runs one receiving thread per channel.
 */
int vmstream_set_channels(struct vmstream *s, unsigned n, uint64_t id);
unsigned vmstream_channels(const struct vmstream *s);
uint64_t vmstream_migration_id(const struct vmstream *s);
int vmstream_attach_channel(struct vmstream *s, int fd);
int vmstream_channels_wait(struct vmstream *s);
int vmstream_accept_channel(struct vmstream *s, int fd);

/* Ends a blocked transfer from another thread: the driving call returns
 * -ECANCELED (and so does every later call). A source between END and
 * COMMIT first tells D ABORT, as vmstream_send_abort would (the connection
 * is shut down here, so its rollback could not), and COMMIT is then
 * refused: D, even one that reads the stream later (frozen), discards. */
void vmstream_abort(struct vmstream *s);

/* The last error sentence ("" if none). */
const char *vmstream_error(const struct vmstream *s);
void vmstream_stats_get(const struct vmstream *s, struct vmstream_stats *out);

#endif
