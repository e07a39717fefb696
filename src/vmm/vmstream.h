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
 *                                 D's final answer (device RUNNING there)
 *   D       vmstream_recv_loop    does all of D's side after the handshake
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
 * - Thread safety: one thread drives a channel; vmstream_abort() may be
 *   called from any other thread to end a blocked transfer.
 */
#ifndef ACCMIG_VMM_VMSTREAM_H
#define ACCMIG_VMM_VMSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmm/vm_ram.h"

#define VMSTREAM_VERSION_MAJOR 1
#define VMSTREAM_VERSION_MINOR 0
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
    uint64_t done_ns;         /* final answer received / sent */
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
 * finish is called once the END record and its CRC checked out: bring the
 *   device to RUNNING (RESUMING -> STOP -> RUNNING); 0 or a negative errno
 *   with a reason. Only after it returns 0 does S hear that it may release.
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
 * words, left unchanged): untouched (never backed) pages as zero runs
 * without reading them, every backed page as data. ram must have the negotiated
 * size (-EINVAL). Before the stop-copy marker the guest may still write:
 * the caller resends what it logs. out (may be NULL) gets the counts. A
 * failure the destination reported meanwhile is returned as -EREMOTEIO. */
int vmstream_send_ram_round(struct vmstream *s, struct vm_ram *ram, const uint64_t *bitmap,
                            struct vmstream_round *out);
/* S: the source guest and device are stopped; what follows is final. */
int vmstream_send_stop_copy(struct vmstream *s);
/* S: sends END (stream CRC32C) and waits for D's final answer: 0 when the
 * destination's device is RUNNING (S may release its guest), -EREMOTEIO
 * with D's reason otherwise (S keeps running its guest). */
int vmstream_send_end(struct vmstream *s);

/* D: after a successful handshake, receives records into ram (which must
 * have the negotiated size), device state into ops, answers the device
 * check, verifies END and calls ops->finish, then tells S it may release.
 * Returns 0 after that final answer went out. On any failure D sends S a
 * failure answer with the reason (best effort), drains what S still sends
 * for at most the timeout, and returns the error. */
int vmstream_recv_loop(struct vmstream *s, struct vm_ram *ram,
                       const struct vmstream_device_ops *ops);

/* Ends a blocked transfer from another thread: the driving call returns
 * -ECANCELED (and so does every later call). */
void vmstream_abort(struct vmstream *s);

/* The last error sentence ("" if none). */
const char *vmstream_error(const struct vmstream *s);
void vmstream_stats_get(const struct vmstream *s, struct vmstream_stats *out);

#endif
