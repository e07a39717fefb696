#include "vmm/vmstream.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "common/common.h"
#include "vmm/net.h"

/* ---- Wire format (docs/vm-stream-format.md). Little-endian, packed. ---- */

#define VMS_MAGIC "ACCMIGVM"
#define VMS_HELLO_MAX 4096u             /* a later minor may grow the hello */
#define VMS_RUNS_MAX 64u                /* runs in one RAM / ZERO record */
#define VMS_RAM_REC_PAGES 1024u         /* data pages in one RAM record (4 MiB) */
#define VMS_DEV_MAX (UINT32_C(1) << 20) /* bytes in one DEV record */
#define VMS_DEV_CHUNK (64u * 1024u)     /* what S asks the device for at once */
#define VMS_DRAIN_MS 5000               /* drain bound when there is no timeout */

struct vms_hello {
    char magic[8];       /* "ACCMIGVM" */
    uint16_t major;
    uint16_t minor;
    uint32_t hello_len;  /* bytes of this hello, >= 48 */
    uint32_t role;       /* enum vmstream_role of the sender */
    uint32_t page_size;
    uint64_t ram_size;
    uint16_t vendor_id;
    uint16_t device_id;
    uint32_t qp_count;
    uint8_t revision;
    uint8_t reserved[7]; /* zero when sent, ignored when read */
} __attribute__((packed));
_Static_assert(sizeof(struct vms_hello) == 48, "struct vms_hello is 48 bytes on the wire");

struct vms_rec {
    uint16_t type;
    uint16_t flags;  /* VMS_REC_F_*; other bits zero */
    uint32_t len;    /* payload bytes after this header */
    uint32_t nruns;  /* RAM / ZERO: runs at the start of the payload; else 0 */
    uint32_t seq;    /* record number in this direction, from 0 after the hello */
} __attribute__((packed));
_Static_assert(sizeof(struct vms_rec) == 16, "struct vms_rec is 16 bytes on the wire");

struct vms_run {
    uint64_t gpa;    /* page-aligned */
    uint64_t npages; /* >= 1 */
} __attribute__((packed));
_Static_assert(sizeof(struct vms_run) == 16, "struct vms_run is 16 bytes on the wire");

struct vms_reply {
    uint32_t status; /* VMS_STATUS_* */
    uint32_t phase;  /* VMS_PHASE_* it answers; a failure may come in any phase */
    /* then the reason, len - 8 bytes (<= VMSTREAM_REASON_MAX), no NUL */
} __attribute__((packed));
_Static_assert(sizeof(struct vms_reply) == 8, "struct vms_reply is 8 bytes on the wire");

struct vms_round {
    uint32_t round;
    uint32_t reserved;
    uint64_t pages;
    uint64_t zero_pages;
} __attribute__((packed));
_Static_assert(sizeof(struct vms_round) == 24, "struct vms_round is 24 bytes on the wire");

struct vms_end {
    uint32_t crc;    /* CRC32C of the records before END (see the doc) */
    uint32_t reserved;
    uint64_t bytes;  /* wire bytes of the records before END */
} __attribute__((packed));
_Static_assert(sizeof(struct vms_end) == 16, "struct vms_end is 16 bytes on the wire");

enum vms_rec_type {
    VMS_REC_REPLY = 1,     /* D -> S */
    VMS_REC_RAM = 2,
    VMS_REC_ZERO = 3,
    VMS_REC_DEV = 4,
    VMS_REC_DEV_CHECK = 5,
    VMS_REC_ROUND = 6,     /* sent optional */
    VMS_REC_STOP_COPY = 7,
    VMS_REC_END = 8,
    VMS_REC_COMMIT = 9,    /* S -> D, after READY: the source has handed over */
    VMS_REC_ABORT = 10,    /* S -> D, after READY instead of COMMIT: it has not */
};
#define VMS_REC_F_OPTIONAL 1u

enum { VMS_STATUS_OK = 0, VMS_STATUS_REFUSED = 1 };
enum {
    VMS_PHASE_STREAM = 0,
    VMS_PHASE_HELLO = 1,
    VMS_PHASE_DEVICE = 2,
    VMS_PHASE_END = 3,    /* READY: D restored the state, its guest does not run yet */
    VMS_PHASE_COMMIT = 4, /* COMMITTED: the guest runs on D (or, refused: it never will) */
};

struct vms_commit {
    uint64_t id; /* the migration's id, chosen by S */
} __attribute__((packed));
_Static_assert(sizeof(struct vms_commit) == 8, "struct vms_commit is 8 bytes on the wire");

/* The largest payload of any record: a full RAM record. */
#define VMS_REC_MAX (VMS_RUNS_MAX * sizeof(struct vms_run) + VMS_RAM_REC_PAGES * VM_RAM_PAGE_SIZE)
_Static_assert(VMS_REC_MAX <= UINT32_MAX && VMS_DEV_MAX <= VMS_REC_MAX, "record bounds");

/* ---- The channel ---- */

enum vms_state {
    VMS_NEW,     /* before the handshake */
    VMS_OPEN,    /* handshake done: precopy */
    VMS_STOPPED, /* stop-copy marker sent / received */
    VMS_READY,   /* END verified, READY sent / received: the handover is next */
    VMS_COMMIT,  /* S: COMMIT sent (past the point of no return); D: COMMIT read */
    VMS_ENDED,   /* COMMITTED sent / received */
};

struct vmstream {
    int fd;
    enum vmstream_role role;
    int timeout_ms;
    enum vms_state state;
    int failed;   /* sticky errno, 0 while healthy */
    int aborted;  /* set by vmstream_abort from any thread (atomic) */
    struct vmstream_profile peer;
    uint32_t tx_seq, rx_seq;
    uint32_t crc; /* S -> D stream CRC32C so far */
    uint32_t round;
    struct vmstream_stats st;
    uint8_t *buf; /* VMS_DEV_MAX bytes: device chunks, skipped records */
    char err[320];
};

static const char *role_name(uint32_t role)
{
    return role == VMSTREAM_SOURCE ? "source" : role == VMSTREAM_DEST ? "destination" : "unknown";
}

static const char *rec_name(uint16_t type)
{
    static const char *const names[] = {
        [VMS_REC_REPLY] = "REPLY", [VMS_REC_RAM] = "RAM", [VMS_REC_ZERO] = "ZERO",
        [VMS_REC_DEV] = "DEV", [VMS_REC_DEV_CHECK] = "DEV_CHECK", [VMS_REC_ROUND] = "ROUND",
        [VMS_REC_STOP_COPY] = "STOP_COPY", [VMS_REC_END] = "END", [VMS_REC_COMMIT] = "COMMIT",
        [VMS_REC_ABORT] = "ABORT",
    };
    return type < AM_ARRAY_SIZE(names) && names[type] != NULL ? names[type] : "unknown";
}

static void set_err_v(struct vmstream *s, const char *fmt, va_list ap)
{
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
}

/* A failure that ends the channel: the errno sticks, the sentence is kept. */
static int vms_fail(struct vmstream *s, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int vms_fail(struct vmstream *s, int err, const char *fmt, ...)
{
    va_list ap;

    if (__atomic_load_n(&s->aborted, __ATOMIC_ACQUIRE)) {
        err = -ECANCELED;
        snprintf(s->err, sizeof(s->err), "migration stream aborted");
    } else {
        va_start(ap, fmt);
        set_err_v(s, fmt, ap);
        va_end(ap);
    }
    s->failed = err;
    /* A source that failed is done with the connection: hanging up at once
     * lets a destination that is draining stop waiting. (The destination
     * hangs up itself after it has sent its reason.) */
    if (s->role == VMSTREAM_SOURCE)
        shutdown(s->fd, s->state == VMS_STOPPED && s->st.end_ns ? SHUT_RD : SHUT_RDWR);
    /* Peer mistakes in the guest tier; the rest is returned to the caller,
     * who reports it, so it is only information here. */
    am_log(err == -EBADMSG || err == -EPROTONOSUPPORT ? AM_LOG_GUEST : AM_LOG_INFO,
           "vmstream", "%s: %s", role_name(s->role), s->err);
    return err;
}

/* A call the caller got wrong: the channel stays usable. */
static int vms_usage(struct vmstream *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int vms_usage(struct vmstream *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    set_err_v(s, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* Turns a transport error into a sticky failure with a sentence. */
static int io_fail(struct vmstream *s, int ret, const char *what, size_t done, size_t len)
{
    switch (ret) {
    case -ECONNRESET:
        return vms_fail(s, ret, "stream truncated: the peer closed the connection in %s "
                        "(%zu of %zu bytes)", what, done, len);
    case -EPIPE:
        return vms_fail(s, ret, "the peer closed the connection while sending %s", what);
    case -ETIMEDOUT:
        return vms_fail(s, ret, "nothing moved for %d ms in %s (%zu of %zu bytes)", s->timeout_ms,
                        what, done, len);
    default:
        return vms_fail(s, ret, "%s failed: %s", what, strerror(-ret));
    }
}

static int vms_read(struct vmstream *s, void *buf, size_t len, const char *what)
{
    size_t done = 0;
    int ret = vm_net_read_full(s->fd, buf, len, &done);

    return ret == 0 ? 0 : io_fail(s, ret, what, done, len);
}

int vmstream_create(int fd, enum vmstream_role role, int timeout_ms, struct vmstream **out)
{
    struct vmstream *s;
    int ret;

    if (fd < 0 || out == NULL || (role != VMSTREAM_SOURCE && role != VMSTREAM_DEST))
        return -EINVAL;
    ret = vm_net_set_timeout(fd, timeout_ms);
    if (ret != 0)
        return ret;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->buf = malloc(VMS_DEV_MAX);
    if (s->buf == NULL) {
        free(s);
        return -ENOMEM;
    }
    s->fd = fd;
    s->role = role;
    s->timeout_ms = timeout_ms;
    s->state = VMS_NEW;
    *out = s;
    return 0;
}

void vmstream_destroy(struct vmstream *s)
{
    if (s == NULL)
        return;
    free(s->buf);
    free(s);
}

void vmstream_abort(struct vmstream *s)
{
    __atomic_store_n(&s->aborted, 1, __ATOMIC_RELEASE);
    vm_net_abort(s->fd);
}

const char *vmstream_error(const struct vmstream *s) { return s->err; }
void vmstream_stats_get(const struct vmstream *s, struct vmstream_stats *out) { *out = s->st; }

/* Common entry check: sticky failure, role and state. */
static int vms_enter(struct vmstream *s, enum vmstream_role role, enum vms_state lo,
                     enum vms_state hi, const char *call)
{
    if (s->failed != 0)
        return s->failed;
    if (s->role != role)
        return vms_usage(s, "%s is for the %s side", call, role_name(role));
    if (s->state < lo || s->state > hi)
        return vms_usage(s, "%s called out of order", call);
    return 0;
}

/* ---- Sending (both directions) ---- */

/* Sends one record: header + payload iovecs. The first `covered` payload
 * iovecs always count in the stream CRC; the others (RAM page data) only
 * once the source is stopped, since before that the guest may change them
 * while they travel (they are resent when it does). */
static int send_record(struct vmstream *s, uint16_t type, uint16_t flags, uint32_t nruns,
                       struct iovec *payload, int npayload, int covered)
{
    struct iovec iov[1 + 1 + VMS_RUNS_MAX];
    struct vms_rec h;
    uint64_t len = 0;
    int ret;

    for (int i = 0; i < npayload; i++)
        len += payload[i].iov_len;
    h = (struct vms_rec){.type = type, .flags = flags, .len = (uint32_t)len, .nruns = nruns,
                         .seq = s->tx_seq};
    iov[0] = (struct iovec){.iov_base = &h, .iov_len = sizeof(h)};
    if (npayload > 0)
        memcpy(&iov[1], payload, (size_t)npayload * sizeof(*payload));
    if (s->role == VMSTREAM_SOURCE) {
        s->crc = am_crc32c(s->crc, &h, sizeof(h));
        for (int i = 0; i < npayload; i++)
            if (i < covered || s->state >= VMS_STOPPED)
                s->crc = am_crc32c(s->crc, payload[i].iov_base, payload[i].iov_len);
        s->st.records++;
        s->st.bytes += sizeof(h) + len;
    }
    ret = vm_net_writev_full(s->fd, iov, 1 + npayload);
    if (ret != 0)
        return ret;
    s->tx_seq++;
    return 0;
}

static void reason_sanitize(char *dst, size_t dstlen, const uint8_t *src, size_t n)
{
    size_t i;

    for (i = 0; i < n && i + 1 < dstlen; i++)
        dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? (char)src[i] : '?';
    dst[i] = '\0';
}

/* ---- Source side ---- */

/* Reads one REPLY from D. OK for the expected phase: 0; a refusal/failure:
 * -EREMOTEIO with D's reason; anything else: -EBADMSG. */
static int read_reply(struct vmstream *s, uint32_t phase)
{
    static const char *const what[] = {"the migration", "the handshake", "the device state",
                                       "the end of the stream", "the handover"};
    uint8_t payload[sizeof(struct vms_reply) + VMSTREAM_REASON_MAX];
    char reason[VMSTREAM_REASON_MAX + 1];
    struct vms_reply r;
    struct vms_rec h;
    int ret;

    ret = vms_read(s, &h, sizeof(h), "the destination's reply header");
    if (ret != 0)
        return ret;
    if (h.type != VMS_REC_REPLY || h.flags != 0 || h.nruns != 0 || h.seq != s->rx_seq ||
        h.len < sizeof(r) || h.len > sizeof(payload))
        return vms_fail(s, -EBADMSG, "bad reply from the destination: type %u (%s), flags 0x%x, "
                        "runs %u, seq %u (expected %u), length %u", h.type, rec_name(h.type),
                        h.flags, h.nruns, h.seq, s->rx_seq, h.len);
    ret = vms_read(s, payload, h.len, "the destination's reply");
    if (ret != 0)
        return ret;
    s->rx_seq++;
    memcpy(&r, payload, sizeof(r));
    reason_sanitize(reason, sizeof(reason), payload + sizeof(r), h.len - sizeof(r));
    if (r.status == VMS_STATUS_OK && r.phase == phase)
        return 0;
    if (r.status == VMS_STATUS_OK)
        return vms_fail(s, -EBADMSG, "the destination accepted phase %u while phase %u was asked",
                        r.phase, phase);
    return vms_fail(s, -EREMOTEIO, "the destination refused %s: %s",
                    r.phase < AM_ARRAY_SIZE(what) ? what[r.phase] : "the migration",
                    reason[0] != '\0' ? reason : "(no reason given)");
}

/* A source send failed: if the destination hung up after saying why, that
 * reason is the error worth reporting. */
static int send_fail(struct vmstream *s, int ret, const char *what, size_t len)
{
    if ((ret == -EPIPE || ret == -ECONNRESET) && !__atomic_load_n(&s->aborted, __ATOMIC_ACQUIRE) &&
        s->role == VMSTREAM_SOURCE && read_reply(s, VMS_PHASE_STREAM) == -EREMOTEIO)
        return -EREMOTEIO;
    return io_fail(s, ret, what, 0, len);
}

/* Between rounds: has the destination reported a failure meanwhile? */
static int check_peer(struct vmstream *s)
{
    uint8_t b;
    ssize_t n = recv(s->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

    if (n > 0)
        return read_reply(s, VMS_PHASE_STREAM) == 0
                   ? vms_fail(s, -EBADMSG, "unsolicited accept from the destination")
                   : s->failed;
    if (n == 0)
        return vms_fail(s, -ECONNRESET, "the destination closed the connection");
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    return io_fail(s, -errno, "checking the destination", 0, 1);
}

/* ---- Handshake ---- */

static void hello_fill(struct vms_hello *h, enum vmstream_role role,
                       const struct vmstream_profile *p)
{
    memset(h, 0, sizeof(*h));
    memcpy(h->magic, VMS_MAGIC, sizeof(h->magic));
    h->major = VMSTREAM_VERSION_MAJOR;
    h->minor = VMSTREAM_VERSION_MINOR;
    h->hello_len = sizeof(*h);
    h->role = role;
    h->page_size = p->page_size;
    h->ram_size = p->ram_size;
    h->vendor_id = p->vendor_id;
    h->device_id = p->device_id;
    h->qp_count = p->qp_count;
    h->revision = p->revision;
}

/* Reads and validates the peer's hello: magic, major version, length,
 * role. Fills s->peer. */
static int hello_read(struct vmstream *s)
{
    uint32_t want = s->role == VMSTREAM_SOURCE ? VMSTREAM_DEST : VMSTREAM_SOURCE;
    struct vms_hello h;
    char magic[2 * sizeof(h.magic) + 1];
    size_t done = 0;
    int ret;

    /* The fixed part first, so a foreign stream fails on its magic before
     * any length from it is trusted. */
    ret = vm_net_read_full(s->fd, &h, sizeof(h), &done);
    if (ret == -ETIMEDOUT && done == 0)
        return vms_fail(s, ret, "no hello from the peer within %d ms", s->timeout_ms);
    if (ret != 0)
        return io_fail(s, ret, "the peer's hello", done, sizeof(h));
    if (memcmp(h.magic, VMS_MAGIC, sizeof(h.magic)) != 0) {
        for (size_t i = 0; i < sizeof(h.magic); i++)
            snprintf(magic + 2 * i, 3, "%02x", (uint8_t)h.magic[i]);
        return vms_fail(s, -EBADMSG, "not an accmig VM migration stream (magic %s, expected "
                        "\"%s\")", magic, VMS_MAGIC);
    }
    if (h.major != VMSTREAM_VERSION_MAJOR)
        return vms_fail(s, -EPROTONOSUPPORT, "the peer speaks stream version %u.%u, this side "
                        "%u.%u: major versions differ", h.major, h.minor,
                        VMSTREAM_VERSION_MAJOR, VMSTREAM_VERSION_MINOR);
    if (h.hello_len < sizeof(h) || h.hello_len > VMS_HELLO_MAX)
        return vms_fail(s, -EBADMSG, "hello length %u outside %zu..%u", h.hello_len, sizeof(h),
                        VMS_HELLO_MAX);
    if (h.role != want)
        return vms_fail(s, -EBADMSG, "the peer is a %s too (role %u); connect a source to a "
                        "destination", role_name(h.role), h.role);
    /* A later minor's extra hello bytes: read and ignore. */
    ret = vms_read(s, s->buf, h.hello_len - sizeof(h), "the rest of the peer's hello");
    if (ret != 0)
        return ret;
    s->peer = (struct vmstream_profile){.vendor_id = h.vendor_id, .device_id = h.device_id,
                                        .revision = h.revision, .qp_count = h.qp_count,
                                        .ram_size = h.ram_size, .page_size = h.page_size};
    return 0;
}

static int hello_write(struct vmstream *s, const struct vmstream_profile *mine)
{
    struct vms_hello h;
    int ret;

    hello_fill(&h, s->role, mine);
    ret = vm_net_write_full(s->fd, &h, sizeof(h));
    return ret == 0 ? 0 : send_fail(s, ret, "the hello", sizeof(h));
}

/* D: every field that differs, in one sentence. Returns its length. */
static size_t profile_diff(const struct vmstream_profile *src, const struct vmstream_profile *dst,
                           char *out, size_t outlen)
{
    size_t n = 0;

#define PROFILE_DIFF(field, label, fmt)                                                       \
    do {                                                                                       \
        if (src->field != dst->field && n < outlen)                                            \
            n += (size_t)snprintf(out + n, outlen - n, "%s" label " differs: source " fmt      \
                                  ", destination " fmt, n ? "; " : "",                         \
                                  (unsigned long long)src->field, (unsigned long long)dst->field); \
    } while (0)
    out[0] = '\0';
    PROFILE_DIFF(vendor_id, "vendor id", "0x%04llx");
    PROFILE_DIFF(device_id, "device id", "0x%04llx");
    PROFILE_DIFF(revision, "revision", "%llu");
    PROFILE_DIFF(qp_count, "qp count", "%llu");
    PROFILE_DIFF(ram_size, "RAM size", "%llu");
    PROFILE_DIFF(page_size, "page size", "%llu");
#undef PROFILE_DIFF
    return AM_MIN(n, outlen - 1);
}

static int send_reply(struct vmstream *s, uint32_t phase, uint32_t status, const char *reason)
{
    struct vms_reply r = {.status = status, .phase = phase};
    size_t rlen = AM_MIN(strlen(reason), (size_t)VMSTREAM_REASON_MAX);
    struct iovec iov[2] = {{.iov_base = &r, .iov_len = sizeof(r)},
                           {.iov_base = (void *)reason, .iov_len = rlen}};

    return send_record(s, VMS_REC_REPLY, 0, 0, iov, 2, 2);
}

static int handshake_source(struct vmstream *s, const struct vmstream_profile *mine)
{
    int ret = hello_write(s, mine);

    if (ret == 0)
        ret = hello_read(s);
    if (ret == 0)
        ret = read_reply(s, VMS_PHASE_HELLO);
    return ret;
}

static int handshake_dest(struct vmstream *s, const struct vmstream_profile *mine)
{
    char reason[VMSTREAM_REASON_MAX + 1];
    int ret = hello_read(s), wret;

    if (ret == -ETIMEDOUT || ret == -ECONNRESET || ret == -ECANCELED)
        return ret;
    /* Even to a bad hello we answer with ours and a reason: a peer of
     * another version learns why. */
    wret = hello_write(s, mine);
    if (ret != 0) {
        if (wret == 0)
            send_reply(s, VMS_PHASE_HELLO, VMS_STATUS_REFUSED, s->err);
        shutdown(s->fd, SHUT_RDWR);
        return ret;
    }
    if (wret != 0)
        return wret;
    if (profile_diff(&s->peer, mine, reason, sizeof(reason)) != 0) {
        send_reply(s, VMS_PHASE_HELLO, VMS_STATUS_REFUSED, reason);
        shutdown(s->fd, SHUT_RDWR);
        return vms_fail(s, -ENOTSUP, "refused the source: %s", reason);
    }
    ret = send_reply(s, VMS_PHASE_HELLO, VMS_STATUS_OK, "");
    return ret == 0 ? 0 : io_fail(s, ret, "the handshake reply", 0, 0);
}

int vmstream_handshake(struct vmstream *s, const struct vmstream_profile *mine,
                       struct vmstream_profile *peer)
{
    int ret = vms_enter(s, s->role, VMS_NEW, VMS_NEW, "vmstream_handshake");

    if (ret != 0)
        return ret;
    if (mine == NULL)
        return vms_usage(s, "vmstream_handshake needs this side's profile");
    if (mine->page_size != VM_RAM_PAGE_SIZE || mine->ram_size == 0 ||
        mine->ram_size % VM_RAM_PAGE_SIZE != 0 || mine->ram_size > VM_RAM_MAX_SIZE)
        return vms_usage(s, "profile: RAM size %llu / page size %u not supported",
                         (unsigned long long)mine->ram_size, mine->page_size);
    ret = s->role == VMSTREAM_SOURCE ? handshake_source(s, mine) : handshake_dest(s, mine);
    if (ret != 0)
        return ret;
    if (peer != NULL)
        *peer = s->peer;
    s->state = VMS_OPEN;
    return 0;
}

/* ---- Source: device state ---- */

int vmstream_send_device(struct vmstream *s, const struct vmstream_device_source *src,
                         uint64_t *bytes)
{
    uint64_t total = 0;
    int ret = vms_enter(s, VMSTREAM_SOURCE, VMS_OPEN, VMS_STOPPED, "vmstream_send_device");

    if (ret != 0)
        return ret;
    if (src == NULL || src->read == NULL)
        return vms_usage(s, "vmstream_send_device needs a read callback");
    for (;;) {
        ssize_t n = src->read(src->opaque, s->buf, VMS_DEV_CHUNK);
        struct iovec iov;

        if (n < 0)
            return vms_fail(s, (int)n, "reading the device state failed: %s", strerror((int)-n));
        if (n == 0)
            break;
        if ((size_t)n > VMS_DEV_CHUNK)
            return vms_fail(s, -EIO, "the device read callback returned %zd bytes, asked %u", n,
                            VMS_DEV_CHUNK);
        iov = (struct iovec){.iov_base = s->buf, .iov_len = (size_t)n};
        ret = send_record(s, VMS_REC_DEV, 0, 0, &iov, 1, 1);
        if (ret != 0)
            return send_fail(s, ret, "device state", (size_t)n);
        total += (uint64_t)n;
        s->st.dev_bytes += (uint64_t)n;
    }
    if (bytes != NULL)
        *bytes = total;
    return 0;
}

int vmstream_device_check(struct vmstream *s)
{
    int ret = vms_enter(s, VMSTREAM_SOURCE, VMS_OPEN, VMS_STOPPED, "vmstream_device_check");

    if (ret != 0)
        return ret;
    ret = send_record(s, VMS_REC_DEV_CHECK, 0, 0, NULL, 0, 0);
    if (ret != 0)
        return send_fail(s, ret, "the device check", 0);
    return read_reply(s, VMS_PHASE_DEVICE);
}

/* ---- Source: RAM ---- */

/* Runs waiting to go out in one record: data runs (RAM) or zero runs. */
struct ram_batch {
    struct vms_run runs[VMS_RUNS_MAX];
    uint32_t nruns;
    uint64_t pages;
    bool data;
};

struct ram_round {
    struct vmstream *s;
    struct vm_ram *ram;
    struct ram_batch data, zero;
    struct vmstream_round out;
};

static int batch_flush(struct ram_round *r, struct ram_batch *b)
{
    struct vmstream *s = r->s;
    struct iovec iov[1 + VMS_RUNS_MAX];
    uint64_t bytes;
    int n = 1, ret;

    if (b->nruns == 0)
        return 0;
    iov[0] = (struct iovec){.iov_base = b->runs, .iov_len = b->nruns * sizeof(struct vms_run)};
    if (b->data)
        for (uint32_t i = 0; i < b->nruns; i++)
            iov[n++] = (struct iovec){.iov_base = vm_ram_host(r->ram) + b->runs[i].gpa,
                                      .iov_len = b->runs[i].npages << VM_RAM_PAGE_SHIFT};
    bytes = sizeof(struct vms_rec) + iov[0].iov_len + (b->data ? b->pages << VM_RAM_PAGE_SHIFT : 0);
    ret = send_record(s, b->data ? VMS_REC_RAM : VMS_REC_ZERO, 0, b->nruns, iov, n, 1);
    if (ret != 0)
        return send_fail(s, ret, b->data ? "RAM pages" : "zero pages", (size_t)bytes);
    if (b->data) {
        r->out.pages += b->pages;
        s->st.ram_pages += b->pages;
    } else {
        r->out.zero_pages += b->pages;
        s->st.zero_pages += b->pages;
    }
    r->out.bytes += bytes;
    s->st.ram_bytes += bytes;
    b->nruns = 0;
    b->pages = 0;
    return 0;
}

/* Queues pages [first, first+count) in b, flushing whenever a record is full. */
static int batch_add(struct ram_round *r, struct ram_batch *b, uint64_t first, uint64_t count)
{
    while (count > 0) {
        uint64_t take = b->data ? AM_MIN(count, VMS_RAM_REC_PAGES - b->pages) : count;
        struct vms_run *last = b->nruns ? &b->runs[b->nruns - 1] : NULL;
        int ret;

        if (last != NULL && last->gpa + (last->npages << VM_RAM_PAGE_SHIFT) ==
                                first << VM_RAM_PAGE_SHIFT) {
            last->npages += take;
        } else {
            b->runs[b->nruns++] = (struct vms_run){.gpa = first << VM_RAM_PAGE_SHIFT,
                                                   .npages = take};
        }
        b->pages += take;
        first += take;
        count -= take;
        if (b->nruns == VMS_RUNS_MAX || (b->data && b->pages == VMS_RAM_REC_PAGES)) {
            ret = batch_flush(r, b);
            if (ret != 0)
                return ret;
        }
    }
    return 0;
}

/* Finds the next run of set bits at or after `from`: [*a, *b). */
static bool bitmap_next_run(const uint64_t *map, uint64_t nbits, uint64_t from, uint64_t *a,
                            uint64_t *b)
{
    uint64_t i = from;

    while (i < nbits) {
        uint64_t w = map[i / 64] >> (i % 64);

        if (w == 0) {
            i = AM_ALIGN_DOWN(i, 64) + 64;
            continue;
        }
        i += (uint64_t)__builtin_ctzll(w);
        break;
    }
    if (i >= nbits)
        return false;
    *a = i;
    while (i < nbits) {
        uint64_t w = ~map[i / 64] >> (i % 64);

        if (w == 0) {
            i = AM_ALIGN_DOWN(i, 64) + 64;
            continue;
        }
        i += (uint64_t)__builtin_ctzll(w);
        break;
    }
    *b = AM_MIN(i, nbits);
    return true;
}

int vmstream_send_ram_round(struct vmstream *s, struct vm_ram *ram, const uint64_t *bitmap,
                            struct vmstream_round *out)
{
    struct ram_round r;
    uint64_t npages, from = 0, a, b, known_end = 0, data_start = 0, data_end = 0;
    struct vms_round rr;
    struct iovec iov;
    int ret = vms_enter(s, VMSTREAM_SOURCE, VMS_OPEN, VMS_STOPPED, "vmstream_send_ram_round");

    if (ret != 0)
        return ret;
    if (ram == NULL || bitmap == NULL)
        return vms_usage(s, "vmstream_send_ram_round needs RAM and a bitmap");
    if (vm_ram_size(ram) != s->peer.ram_size)
        return vms_usage(s, "RAM of %llu bytes, the stream negotiated %llu",
                         (unsigned long long)vm_ram_size(ram),
                         (unsigned long long)s->peer.ram_size);
    memset(&r, 0, sizeof(r));
    r.s = s;
    r.ram = ram;
    r.data.data = true;
    npages = vm_ram_pages(ram);
    while (bitmap_next_run(bitmap, npages, from, &a, &b)) {
        uint64_t page = a;

        while (page < b) {
            uint64_t gpa = page << VM_RAM_PAGE_SHIFT, stop;

            if (gpa >= known_end) {
                /* Where are the holes? One query serves every run up to
                 * the end of the backed range it finds. */
                if (vm_ram_find_data(ram, gpa, &data_start, &data_end) != 0) {
                    data_start = gpa;
                    data_end = vm_ram_size(ram);
                }
                known_end = data_end;
            }
            if (gpa < data_start) {
                stop = AM_MIN(b, data_start >> VM_RAM_PAGE_SHIFT);
                ret = batch_add(&r, &r.zero, page, stop - page);
            } else {
                /* Backed pages were touched (by the guest or a DMA) and go
                 * as data, even one that happens to read as zero: looking
                 * for zeros would pull every page from memory once more
                 * before the kernel's copy does, which costs far more than
                 * sending the few that are. Holes cover the zeros. */
                stop = AM_MIN(b, data_end >> VM_RAM_PAGE_SHIFT);
                ret = batch_add(&r, &r.data, page, stop - page);
            }
            if (ret != 0)
                return ret;
            page = stop;
        }
        from = b;
    }
    ret = batch_flush(&r, &r.data);
    if (ret == 0)
        ret = batch_flush(&r, &r.zero);
    if (ret != 0)
        return ret;
    rr = (struct vms_round){.round = s->round, .pages = r.out.pages,
                           .zero_pages = r.out.zero_pages};
    iov = (struct iovec){.iov_base = &rr, .iov_len = sizeof(rr)};
    ret = send_record(s, VMS_REC_ROUND, VMS_REC_F_OPTIONAL, 0, &iov, 1, 1);
    if (ret != 0)
        return send_fail(s, ret, "the round record", sizeof(rr));
    s->round++;
    s->st.rounds++;
    if (out != NULL)
        *out = r.out;
    return check_peer(s);
}

int vmstream_send_stop_copy(struct vmstream *s)
{
    int ret = vms_enter(s, VMSTREAM_SOURCE, VMS_OPEN, VMS_OPEN, "vmstream_send_stop_copy");

    if (ret != 0)
        return ret;
    ret = send_record(s, VMS_REC_STOP_COPY, 0, 0, NULL, 0, 0);
    if (ret != 0)
        return send_fail(s, ret, "the stop-copy marker", 0);
    s->state = VMS_STOPPED;
    s->st.stop_copy_ns = am_now_ns();
    return 0;
}

int vmstream_send_end(struct vmstream *s)
{
    struct vms_end e;
    struct iovec iov;
    int ret = vms_enter(s, VMSTREAM_SOURCE, VMS_STOPPED, VMS_STOPPED, "vmstream_send_end");

    if (ret != 0)
        return ret;
    e = (struct vms_end){.crc = s->crc, .bytes = s->st.bytes};
    iov = (struct iovec){.iov_base = &e, .iov_len = sizeof(e)};
    ret = send_record(s, VMS_REC_END, 0, 0, &iov, 1, 1);
    if (ret != 0)
        return send_fail(s, ret, "the end record", sizeof(e));
    s->st.end_ns = am_now_ns();
    ret = read_reply(s, VMS_PHASE_END);
    if (ret != 0)
        return ret;
    s->state = VMS_READY;
    s->st.ready_ns = am_now_ns();
    return 0;
}

int vmstream_send_commit(struct vmstream *s, uint64_t id)
{
    struct vms_commit c = {.id = id};
    struct iovec iov = {.iov_base = &c, .iov_len = sizeof(c)};
    int ret = vms_enter(s, VMSTREAM_SOURCE, VMS_READY, VMS_READY, "vmstream_send_commit");

    if (ret != 0)
        return ret;
    if (__atomic_load_n(&s->aborted, __ATOMIC_ACQUIRE))
        return vms_fail(s, -ECANCELED, "aborted before the handover");
    /* From the first byte on, the destination may run the guest. */
    s->state = VMS_COMMIT;
    ret = send_record(s, VMS_REC_COMMIT, 0, 0, &iov, 1, 1);
    if (ret != 0) {
        io_fail(s, ret, "the commit record", 0, sizeof(c));
        return -EINPROGRESS;
    }
    return 0;
}

int vmstream_wait_committed(struct vmstream *s)
{
    int ret = vms_enter(s, VMSTREAM_SOURCE, VMS_COMMIT, VMS_COMMIT, "vmstream_wait_committed");

    if (ret == -EINVAL)
        return ret;
    if (ret != 0)
        return -EINPROGRESS;
    ret = read_reply(s, VMS_PHASE_COMMIT);
    if (ret == -EREMOTEIO)
        return ret; /* D says it does not and will not run the guest */
    if (ret != 0)
        return -EINPROGRESS;
    s->state = VMS_ENDED;
    s->st.done_ns = am_now_ns();
    return 0;
}

void vmstream_send_abort(struct vmstream *s)
{
    struct vms_rec h = {.type = VMS_REC_ABORT, .seq = s->tx_seq};

    /* After END (READY read or not: a frozen destination may still send
     * it and wait for our word). */
    if (s->role != VMSTREAM_SOURCE || __atomic_load_n(&s->aborted, __ATOMIC_ACQUIRE) ||
        !(s->state == VMS_READY || (s->state == VMS_STOPPED && s->st.end_ns != 0)))
        return;
    /* Best effort and past any sticky failure: a destination that reads it
     * discards at once instead of waiting in doubt. */
    if (vm_net_write_full(s->fd, &h, sizeof(h)) == 0)
        s->tx_seq++;
    shutdown(s->fd, SHUT_RDWR);
}

/* ---- Destination ---- */

struct recv_ctx {
    struct vmstream *s;
    struct vm_ram *ram;
    const struct vmstream_device_ops *ops;
    struct vms_rec h;
    uint64_t off;       /* stream byte offset of h */
    uint32_t crc_before; /* stream CRC before h (END's own header is not covered) */
    uint32_t phase;     /* what a failure answer says D was doing */
};

static int rec_fail(struct recv_ctx *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int rec_fail(struct recv_ctx *c, int err, const char *fmt, ...)
{
    char what[200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return vms_fail(c->s, err, "record %u (%s) at stream byte %llu: %s", c->h.seq,
                    rec_name(c->h.type), (unsigned long long)c->off, what);
}

/* Reads payload bytes of the current record that always count in the CRC. */
static int rec_read(struct recv_ctx *c, void *buf, size_t len, const char *what)
{
    int ret = vms_read(c->s, buf, len, what);

    if (ret == 0) {
        c->s->crc = am_crc32c(c->s->crc, buf, len);
        c->s->st.bytes += len;
    }
    return ret;
}

/* Reads and checks the run table of a RAM or ZERO record; *pages gets the
 * total page count. */
static int recv_runs(struct recv_ctx *c, struct vms_run *runs, uint64_t *pages)
{
    uint64_t size = vm_ram_size(c->ram), max_pages = vm_ram_pages(c->ram), total = 0;
    int ret;

    if (c->h.nruns == 0 || c->h.nruns > VMS_RUNS_MAX)
        return rec_fail(c, -EBADMSG, "%u runs, expected 1..%u", c->h.nruns, VMS_RUNS_MAX);
    if (c->h.len < c->h.nruns * sizeof(struct vms_run))
        return rec_fail(c, -EBADMSG, "length %u shorter than its %u runs", c->h.len, c->h.nruns);
    ret = rec_read(c, runs, c->h.nruns * sizeof(struct vms_run), "a run table");
    if (ret != 0)
        return ret;
    for (uint32_t i = 0; i < c->h.nruns; i++) {
        /* npages is bounded by the RAM's page count before it is shifted,
         * so npages * 4096 cannot wrap. */
        if (runs[i].gpa % VM_RAM_PAGE_SIZE != 0)
            return rec_fail(c, -EBADMSG, "run %u: gpa 0x%llx is not page-aligned", i,
                            (unsigned long long)runs[i].gpa);
        if (runs[i].npages == 0)
            return rec_fail(c, -EBADMSG, "run %u: no pages", i);
        if (runs[i].npages > max_pages ||
            !am_range_ok(runs[i].gpa, runs[i].npages << VM_RAM_PAGE_SHIFT, size))
            return rec_fail(c, -EBADMSG, "run %u: gpa 0x%llx + %llu pages is beyond RAM of "
                            "0x%llx bytes", i, (unsigned long long)runs[i].gpa,
                            (unsigned long long)runs[i].npages, (unsigned long long)size);
        total += runs[i].npages; /* <= 64 runs * 2^24 pages: no wrap */
    }
    *pages = total;
    return 0;
}

static int recv_ram(struct recv_ctx *c)
{
    struct vmstream *s = c->s;
    struct vms_run runs[VMS_RUNS_MAX];
    struct iovec iov[VMS_RUNS_MAX];
    uint64_t pages, data;
    size_t done = 0;
    int ret = recv_runs(c, runs, &pages);

    if (ret != 0)
        return ret;
    if (pages > VMS_RAM_REC_PAGES)
        return rec_fail(c, -EBADMSG, "%llu pages, at most %u in one record",
                        (unsigned long long)pages, VMS_RAM_REC_PAGES);
    data = pages << VM_RAM_PAGE_SHIFT;
    if ((uint64_t)c->h.len != c->h.nruns * sizeof(struct vms_run) + data)
        return rec_fail(c, -EBADMSG, "length %u does not match %u runs of %llu pages in all",
                        c->h.len, c->h.nruns, (unsigned long long)pages);
    /* Every run checked: the data goes straight into guest RAM. */
    for (uint32_t i = 0; i < c->h.nruns; i++)
        iov[i] = (struct iovec){.iov_base = vm_ram_host(c->ram) + runs[i].gpa,
                                .iov_len = runs[i].npages << VM_RAM_PAGE_SHIFT};
    ret = vm_net_readv_full(s->fd, iov, (int)c->h.nruns, &done);
    if (ret != 0)
        return io_fail(s, ret, "RAM page data", done, (size_t)data);
    if (s->state >= VMS_STOPPED)
        for (uint32_t i = 0; i < c->h.nruns; i++)
            s->crc = am_crc32c(s->crc, vm_ram_host(c->ram) + runs[i].gpa,
                               runs[i].npages << VM_RAM_PAGE_SHIFT);
    s->st.bytes += data;
    s->st.ram_pages += pages;
    s->st.ram_bytes += sizeof(struct vms_rec) + c->h.len;
    return 0;
}

static int recv_zero(struct recv_ctx *c)
{
    struct vms_run runs[VMS_RUNS_MAX];
    uint64_t pages;
    int ret = recv_runs(c, runs, &pages);

    if (ret != 0)
        return ret;
    if (c->h.len != c->h.nruns * sizeof(struct vms_run))
        return rec_fail(c, -EBADMSG, "length %u, expected %zu for %u runs", c->h.len,
                        c->h.nruns * sizeof(struct vms_run), c->h.nruns);
    for (uint32_t i = 0; i < c->h.nruns; i++) {
        ret = vm_ram_zero_range(c->ram, runs[i].gpa, runs[i].npages << VM_RAM_PAGE_SHIFT);
        if (ret != 0)
            return vms_fail(c->s, ret, "clearing %llu zero pages at 0x%llx failed: %s",
                            (unsigned long long)runs[i].npages, (unsigned long long)runs[i].gpa,
                            strerror(-ret));
    }
    c->s->st.zero_pages += pages;
    c->s->st.ram_bytes += sizeof(struct vms_rec) + c->h.len;
    return 0;
}

static int recv_dev(struct recv_ctx *c)
{
    struct vmstream *s = c->s;
    char why[VMSTREAM_REASON_MAX - 64];
    int ret;

    if (c->h.len == 0 || c->h.len > VMS_DEV_MAX)
        return rec_fail(c, -EBADMSG, "device chunk of %u bytes, expected 1..%u", c->h.len,
                        VMS_DEV_MAX);
    ret = rec_read(c, s->buf, c->h.len, "device state");
    if (ret != 0)
        return ret;
    c->phase = VMS_PHASE_DEVICE;
    if (c->ops == NULL || c->ops->write == NULL)
        return vms_fail(s, -ENOTSUP, "the source sends device state but the destination has no "
                        "device");
    why[0] = '\0';
    ret = c->ops->write(c->ops->opaque, s->buf, c->h.len, why, sizeof(why));
    if (ret != 0)
        return vms_fail(s, -ENOTSUP, "the destination device refused the state: %s",
                        why[0] != '\0' ? why : strerror(ret < 0 ? -ret : EIO));
    s->st.dev_bytes += c->h.len;
    return 0;
}

static int recv_end(struct recv_ctx *c)
{
    struct vmstream *s = c->s;
    uint32_t crc = c->crc_before;
    uint64_t bytes = s->st.bytes - sizeof(struct vms_rec);
    char why[VMSTREAM_REASON_MAX - 64];
    struct vms_end e;
    int ret;

    if (s->state != VMS_STOPPED)
        return rec_fail(c, -EBADMSG, "END before the stop-copy marker");
    if (c->h.len != sizeof(e))
        return rec_fail(c, -EBADMSG, "length %u, expected %zu", c->h.len, sizeof(e));
    ret = vms_read(s, &e, sizeof(e), "the end record");
    if (ret != 0)
        return ret;
    if (e.crc != crc)
        return rec_fail(c, -EBADMSG, "stream CRC32C mismatch: the source says 0x%08x, the "
                        "received stream gives 0x%08x", e.crc, crc);
    if (e.bytes != bytes)
        return rec_fail(c, -EBADMSG, "the source sent %llu bytes, %llu arrived",
                        (unsigned long long)e.bytes, (unsigned long long)bytes);
    s->st.bytes += sizeof(e);
    s->st.end_ns = am_now_ns();
    c->phase = VMS_PHASE_END;
    if (c->ops != NULL && c->ops->finish != NULL) {
        why[0] = '\0';
        ret = c->ops->finish(c->ops->opaque, why, sizeof(why));
        if (ret != 0)
            return vms_fail(s, ret < 0 ? ret : -EIO, "the destination device did not resume: %s",
                            why[0] != '\0' ? why : strerror(ret < 0 ? -ret : EIO));
    }
    ret = send_reply(s, VMS_PHASE_END, VMS_STATUS_OK, "");
    if (ret != 0)
        return io_fail(s, ret, "the ready answer", 0, 0);
    s->state = VMS_READY;
    s->st.ready_ns = am_now_ns();
    return 0;
}

/* Skips an optional record of a type this version does not know. */
static int recv_skip(struct recv_ctx *c)
{
    uint32_t left = c->h.len;

    while (left > 0) {
        uint32_t n = AM_MIN(left, VMS_DEV_MAX);
        int ret = rec_read(c, c->s->buf, n, "an optional record");

        if (ret != 0)
            return ret;
        left -= n;
    }
    return 0;
}

/* One record: the header is checked (sequence, flags, length bound, type
 * against the state) before anything else is read. */
static int recv_record(struct recv_ctx *c)
{
    struct vmstream *s = c->s;
    struct vms_round rr;
    size_t done = 0;
    int ret;

    c->off = s->st.bytes;
    c->crc_before = s->crc;
    c->phase = VMS_PHASE_STREAM;
    ret = vm_net_read_full(s->fd, &c->h, sizeof(c->h), &done);
    if (ret != 0)
        return io_fail(s, ret, done == 0 ? "the next record header (stream ended without END)"
                                         : "a record header", done, sizeof(c->h));
    s->crc = am_crc32c(s->crc, &c->h, sizeof(c->h));
    s->st.bytes += sizeof(c->h);
    s->st.records++;
    if (c->h.seq != s->rx_seq)
        return rec_fail(c, -EBADMSG, "sequence number %u, expected %u", c->h.seq, s->rx_seq);
    s->rx_seq++;
    if ((c->h.flags & ~VMS_REC_F_OPTIONAL) != 0)
        return rec_fail(c, -EBADMSG, "unknown flags 0x%x", c->h.flags);
    if (c->h.len > VMS_REC_MAX)
        return rec_fail(c, -EBADMSG, "length %u exceeds the largest record (%zu)", c->h.len,
                        (size_t)VMS_REC_MAX);
    if (c->h.nruns != 0 && c->h.type != VMS_REC_RAM && c->h.type != VMS_REC_ZERO)
        return rec_fail(c, -EBADMSG, "%u runs in a record that has none", c->h.nruns);
    switch (c->h.type) {
    case VMS_REC_RAM:
        return recv_ram(c);
    case VMS_REC_ZERO:
        return recv_zero(c);
    case VMS_REC_DEV:
        return recv_dev(c);
    case VMS_REC_DEV_CHECK:
        if (c->h.len != 0)
            return rec_fail(c, -EBADMSG, "length %u, expected 0", c->h.len);
        ret = send_reply(s, VMS_PHASE_DEVICE, VMS_STATUS_OK, "");
        return ret == 0 ? 0 : io_fail(s, ret, "the device check answer", 0, 0);
    case VMS_REC_ROUND:
        if (c->h.len != sizeof(rr))
            return rec_fail(c, -EBADMSG, "length %u, expected %zu", c->h.len, sizeof(rr));
        ret = rec_read(c, &rr, sizeof(rr), "a round record");
        if (ret == 0)
            s->st.rounds++;
        return ret;
    case VMS_REC_STOP_COPY:
        if (c->h.len != 0)
            return rec_fail(c, -EBADMSG, "length %u, expected 0", c->h.len);
        if (s->state != VMS_OPEN)
            return rec_fail(c, -EBADMSG, "a second stop-copy marker");
        s->state = VMS_STOPPED;
        s->st.stop_copy_ns = am_now_ns();
        return 0;
    case VMS_REC_END:
        return recv_end(c);
    case VMS_REC_COMMIT:
    case VMS_REC_ABORT:
        return rec_fail(c, -EBADMSG, "a handover record before END");
    case VMS_REC_REPLY:
        return rec_fail(c, -EBADMSG, "a source never sends REPLY records");
    default:
        if (c->h.flags & VMS_REC_F_OPTIONAL)
            return recv_skip(c);
        return rec_fail(c, -EBADMSG, "unknown mandatory record type %u", c->h.type);
    }
}

/* After a failure D cannot go on with: tell S why (it may be blocked
 * sending), then read and drop what S still sends until it hangs up, for a
 * bounded time, so that S reads the reason instead of a reset. */
static void recv_fail_answer(struct recv_ctx *c, int err)
{
    struct vmstream *s = c->s;
    int ms = s->timeout_ms > 0 ? s->timeout_ms : VMS_DRAIN_MS;
    uint64_t deadline = am_now_ns() + (uint64_t)ms * 1000000u;
    char reason[sizeof(s->err)];

    if (err == -ECONNRESET || err == -EPIPE || err == -ETIMEDOUT || err == -ECANCELED)
        return; /* the peer is gone or silent: nobody to tell */
    memcpy(reason, s->err, sizeof(reason));
    if (send_reply(s, c->phase, VMS_STATUS_REFUSED, reason) != 0)
        return;
    shutdown(s->fd, SHUT_WR);
    if (vm_net_set_timeout(s->fd, ms) != 0)
        return;
    while (am_now_ns() < deadline && !__atomic_load_n(&s->aborted, __ATOMIC_ACQUIRE)) {
        ssize_t n = recv(s->fd, s->buf, VMS_DEV_MAX, 0);

        if (n == 0 || (n < 0 && errno != EINTR))
            break;
    }
    shutdown(s->fd, SHUT_RDWR);
}

int vmstream_recv_loop(struct vmstream *s, struct vm_ram *ram,
                       const struct vmstream_device_ops *ops)
{
    struct recv_ctx c = {.s = s, .ram = ram, .ops = ops, .phase = VMS_PHASE_STREAM};
    int ret = vms_enter(s, VMSTREAM_DEST, VMS_OPEN, VMS_OPEN, "vmstream_recv_loop");

    if (ret != 0)
        return ret;
    if (ram == NULL || vm_ram_size(ram) != s->peer.ram_size)
        return vms_usage(s, "destination RAM must have the negotiated %llu bytes",
                         (unsigned long long)s->peer.ram_size);
    while (s->state != VMS_READY) {
        ret = recv_record(&c);
        if (ret != 0) {
            recv_fail_answer(&c, ret);
            return ret;
        }
    }
    return 0;
}

/* ---- Destination: the handover ---- */

int vmstream_recv_commit(struct vmstream *s, uint64_t *id)
{
    struct vms_commit cm;
    struct vms_rec h;
    size_t done = 0;
    int ret = vms_enter(s, VMSTREAM_DEST, VMS_READY, VMS_READY, "vmstream_recv_commit");

    if (ret != 0)
        return ret;
    ret = vm_net_read_full(s->fd, &h, sizeof(h), &done);
    if (ret != 0)
        return io_fail(s, ret, done == 0 ? "waiting for the source's commit" : "the commit header",
                       done, sizeof(h));
    if (h.seq != s->rx_seq || h.flags != 0 || h.nruns != 0)
        return vms_fail(s, -EBADMSG, "bad handover record: type %u (%s), seq %u (expected %u)",
                        h.type, rec_name(h.type), h.seq, s->rx_seq);
    s->rx_seq++;
    if (h.type == VMS_REC_ABORT && h.len == 0)
        return vms_fail(s, -ECONNABORTED, "the source did not hand over (ABORT): it keeps the "
                        "guest");
    if (h.type != VMS_REC_COMMIT || h.len != sizeof(cm))
        return vms_fail(s, -EBADMSG, "expected COMMIT after END, got type %u (%s) of %u bytes",
                        h.type, rec_name(h.type), h.len);
    ret = vms_read(s, &cm, sizeof(cm), "the commit record");
    if (ret != 0)
        return ret;
    s->state = VMS_COMMIT;
    if (id != NULL)
        *id = cm.id;
    return 0;
}

int vmstream_send_committed(struct vmstream *s, int err, const char *reason)
{
    int ret = vms_enter(s, VMSTREAM_DEST, VMS_COMMIT, VMS_COMMIT, "vmstream_send_committed");

    if (ret != 0)
        return ret;
    ret = send_reply(s, VMS_PHASE_COMMIT, err == 0 ? VMS_STATUS_OK : VMS_STATUS_REFUSED,
                     reason != NULL ? reason : "");
    if (ret != 0)
        return io_fail(s, ret, "the committed answer", 0, 0);
    s->state = VMS_ENDED;
    s->st.done_ns = am_now_ns();
    return 0;
}
