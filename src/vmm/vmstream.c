#include "vmm/vmstream.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

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
#define VMS_CH_MAGIC "ACCMIGCH"
#define VMS_CH_BUF (64u * 1024u)         /* a RAM channel's buffer: skipped optional records */
/* Pages of guest RAM a channel thread takes at once from the round's bitmap
 * (8 MiB of address space: full RAM records, few atomic grabs). */
#define VMS_CH_CHUNK_PAGES 2048u

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

/* Appended to the hello from minor 1 on (hello_len >= 64). */
struct vms_hello_ext {
    uint32_t channels;     /* S: RAM channels asked for; D: agreed (<= S's) */
    uint32_t reserved;     /* zero when sent, ignored when read */
    uint64_t migration_id; /* S's id for this migration; D echoes it */
} __attribute__((packed));
_Static_assert(sizeof(struct vms_hello_ext) == 16, "struct vms_hello_ext is 16 bytes on the wire");
#define VMS_HELLO_EXT_LEN (sizeof(struct vms_hello) + sizeof(struct vms_hello_ext))

/* First bytes on a RAM channel's connection, S -> D; D does not answer on
 * the channel (its verdict comes on the main channel). */
struct vms_chan_hello {
    char magic[8];         /* "ACCMIGCH" */
    uint16_t major;
    uint16_t minor;
    uint32_t hello_len;    /* 32..4096 */
    uint64_t migration_id; /* the main hello's */
    uint32_t index;        /* 1..channels (0 is the main channel) */
    uint32_t channels;     /* the agreed count */
} __attribute__((packed));
_Static_assert(sizeof(struct vms_chan_hello) == 32, "struct vms_chan_hello is 32 bytes on the wire");

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
    VMS_REC_SYNC = 11,     /* RAM channels only: the end of a round's pages on this channel */
};
#define VMS_REC_F_OPTIONAL 1u

enum { VMS_STATUS_OK = 0, VMS_STATUS_REFUSED = 1 };
enum {
    VMS_PHASE_STREAM = 0,
    VMS_PHASE_HELLO = 1,
    VMS_PHASE_DEVICE = 2,
    VMS_PHASE_END = 3,    /* READY: D restored the state, its guest does not run yet */
    VMS_PHASE_COMMIT = 4, /* COMMITTED: the guest runs on D (or, refused: it never will) */
    VMS_PHASE_CHANNELS = 5, /* every RAM channel is in (or one was refused) */
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

/* What the main stream asks its source channel threads to do. */
enum vms_job { VMS_JOB_ROUND = 1, VMS_JOB_END = 2 };

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
    uint8_t *buf; /* buf_len bytes: device chunks, skipped records */
    size_t buf_len;
    char err[320];

    /* RAM channels. A channel is a struct vmstream of its own (fd, seq,
     * CRC, stats, state) with parent set; these fields are the main's. */
    struct vmstream *parent; /* a channel: its main stream; NULL for the main */
    unsigned index;          /* a channel: 1..n */
    unsigned chan_want;      /* S: asked for; D: the most accepted */
    unsigned nchan;          /* agreed in the handshake */
    unsigned nattached;      /* channels attached / accepted so far */
    uint64_t mig_id;
    struct vmstream *chan[VMSTREAM_CHANNELS_MAX];
    pthread_t chan_th[VMSTREAM_CHANNELS_MAX];
    bool chan_th_on[VMSTREAM_CHANNELS_MAX];
    struct vm_ram *chan_ram;  /* the RAM the channel threads read or fill */
    /* lock protects, in the main: job, job_gen, job_left, job_map, job_npages,
     * quit, chan_err, chan_msg, and in every channel: rx_rounds, rx_ended,
     * job_out. The cursor is atomic. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    enum vms_job job;
    unsigned job_gen, job_left;
    const uint64_t *job_map;
    uint64_t job_npages, job_cursor;
    bool quit;
    int chan_err;
    char chan_msg[360];
    /* S's main, under lock: END went out and COMMIT has not begun, so the
     * main connection's sender is idle and an ABORT may be written by
     * whoever aborts first (the worker's rollback or vmstream_abort). */
    bool abort_due;
    /* a channel's own */
    struct vmstream_round job_out; /* S: what the last job sent */
    uint32_t rx_rounds;            /* D: SYNCs read */
    bool rx_ended;                 /* D: END read and checked */
};

/* The RAM channels' side (end of the file). */
static void chan_stop_all(struct vmstream *s);
static void chan_shutdown_all(struct vmstream *s, int how);
static int chan_recv_start(struct vmstream *m, struct vm_ram *ram);
static int chan_recv_error(struct vmstream *m, int err);
static int chan_end_all(struct vmstream *m);
static int chan_wait(struct vmstream *m, uint32_t rounds, bool ended);

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
    if (s->role == VMSTREAM_SOURCE) {
        shutdown(s->fd, s->state == VMS_STOPPED && s->st.end_ns ? SHUT_RD : SHUT_RDWR);
        if (s->parent == NULL && s->st.end_ns == 0)
            chan_shutdown_all(s, SHUT_RDWR);
    }
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
    s->buf_len = VMS_DEV_MAX;
    s->buf = malloc(s->buf_len);
    if (s->buf == NULL) {
        free(s);
        return -ENOMEM;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
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
    chan_stop_all(s);
    for (unsigned i = 0; i < VMSTREAM_CHANNELS_MAX; i++) {
        if (s->chan[i] == NULL)
            continue;
        close(s->chan[i]->fd);
        pthread_mutex_destroy(&s->chan[i]->lock);
        pthread_cond_destroy(&s->chan[i]->cond);
        free(s->chan[i]->buf);
        free(s->chan[i]);
    }
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s->buf);
    free(s);
}

/* Shuts every RAM channel's connection down (how), so that the channel
 * threads blocked on them return. */
static void chan_shutdown_all(struct vmstream *s, int how)
{
    pthread_mutex_lock(&s->lock);
    for (unsigned i = 0; i < VMSTREAM_CHANNELS_MAX; i++)
        if (s->chan[i] != NULL)
            shutdown(s->chan[i]->fd, how);
    pthread_mutex_unlock(&s->lock);
}

static void abort_tell_locked(struct vmstream *s);

void vmstream_abort(struct vmstream *s)
{
    __atomic_store_n(&s->aborted, 1, __ATOMIC_RELEASE);
    pthread_mutex_lock(&s->lock);
    for (unsigned i = 0; i < VMSTREAM_CHANNELS_MAX; i++)
        if (s->chan[i] != NULL)
            __atomic_store_n(&s->chan[i]->aborted, 1, __ATOMIC_RELEASE);
    /* Before the shutdown below, which would leave the rollback nothing to
     * send it on: a destination that has the whole stream (it may be
     * frozen and read it later) then discards instead of waiting in doubt. */
    abort_tell_locked(s);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    chan_shutdown_all(s, SHUT_RDWR);
    vm_net_abort(s->fd);
}

const char *vmstream_error(const struct vmstream *s) { return s->err; }
/* Channels' page counts are added in: call it from the driving thread,
 * between calls (the channel threads are idle or done then). */
void vmstream_stats_get(const struct vmstream *s, struct vmstream_stats *out)
{
    *out = s->st;
    for (unsigned i = 0; i < VMSTREAM_CHANNELS_MAX; i++) {
        const struct vmstream *c = s->chan[i];

        if (c == NULL)
            continue;
        out->ram_pages += c->st.ram_pages;
        out->zero_pages += c->st.zero_pages;
        out->ram_bytes += c->st.ram_bytes;
        out->records += c->st.records;
        out->bytes += c->st.bytes;
    }
}

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
                                       "the end of the stream", "the handover",
                                       "the RAM channels"};
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
        s->role == VMSTREAM_SOURCE && s->parent == NULL &&
        read_reply(s, VMS_PHASE_STREAM) == -EREMOTEIO)
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
    h->hello_len = VMS_HELLO_EXT_LEN;
    h->role = role;
    h->page_size = p->page_size;
    h->ram_size = p->ram_size;
    h->vendor_id = p->vendor_id;
    h->device_id = p->device_id;
    h->qp_count = p->qp_count;
    h->revision = p->revision;
}

/* Reads and validates the peer's hello: magic, major version, length,
 * role. Fills s->peer and *ext (zero when the peer is a 2.0 one: no
 * channels). */
static int hello_read(struct vmstream *s, struct vms_hello_ext *ext)
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
    /* Minor 1's extension, then a later minor's extra bytes (ignored). */
    ret = vms_read(s, s->buf, h.hello_len - sizeof(h), "the rest of the peer's hello");
    if (ret != 0)
        return ret;
    memset(ext, 0, sizeof(*ext));
    if (h.minor >= 1 && h.hello_len >= VMS_HELLO_EXT_LEN)
        memcpy(ext, s->buf, sizeof(*ext));
    s->peer = (struct vmstream_profile){.vendor_id = h.vendor_id, .device_id = h.device_id,
                                        .revision = h.revision, .qp_count = h.qp_count,
                                        .ram_size = h.ram_size, .page_size = h.page_size};
    return 0;
}

static int hello_write(struct vmstream *s, const struct vmstream_profile *mine, unsigned channels)
{
    struct vms_hello_ext ext = {.channels = channels, .migration_id = s->mig_id};
    struct vms_hello h;
    struct iovec iov[2] = {{.iov_base = &h, .iov_len = sizeof(h)},
                           {.iov_base = &ext, .iov_len = sizeof(ext)}};
    int ret;

    hello_fill(&h, s->role, mine);
    ret = vm_net_writev_full(s->fd, iov, 2);
    return ret == 0 ? 0 : send_fail(s, ret, "the hello", sizeof(h) + sizeof(ext));
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
    struct vms_hello_ext ext;
    int ret = hello_write(s, mine, s->chan_want);

    if (ret == 0)
        ret = hello_read(s, &ext);
    if (ret == 0)
        ret = read_reply(s, VMS_PHASE_HELLO);
    if (ret != 0)
        return ret;
    /* A 2.0 destination has no channels: the pages go on the main one. */
    if (ext.channels > s->chan_want)
        return vms_fail(s, -EBADMSG, "the destination agreed to %u RAM channels, %u were asked",
                        ext.channels, s->chan_want);
    if (ext.channels > 0 && ext.migration_id != s->mig_id)
        return vms_fail(s, -EBADMSG, "the destination answered for migration 0x%016llx, this "
                        "is 0x%016llx", (unsigned long long)ext.migration_id,
                        (unsigned long long)s->mig_id);
    s->nchan = ext.channels;
    return 0;
}

static int handshake_dest(struct vmstream *s, const struct vmstream_profile *mine)
{
    char reason[VMSTREAM_REASON_MAX + 1];
    struct vms_hello_ext ext = {0};
    int ret = hello_read(s, &ext), wret;
    unsigned agreed = 0;

    if (ret == -ETIMEDOUT || ret == -ECONNRESET || ret == -ECANCELED)
        return ret;
    if (ret == 0 && ext.channels > VMSTREAM_CHANNELS_MAX)
        ret = vms_fail(s, -EBADMSG, "the source asks for %u RAM channels, at most %u",
                       ext.channels, VMSTREAM_CHANNELS_MAX);
    else if (ret == 0 && ext.channels > 0 && ext.migration_id == 0)
        ret = vms_fail(s, -EBADMSG, "the source asks for %u RAM channels without a migration id",
                       ext.channels);
    if (ret == 0) {
        agreed = AM_MIN(ext.channels, s->chan_want);
        s->mig_id = ext.migration_id;
    }
    /* Even to a bad hello we answer with ours and a reason: a peer of
     * another version learns why. */
    wret = hello_write(s, mine, agreed);
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
    if (ret != 0)
        return io_fail(s, ret, "the handshake reply", 0, 0);
    s->nchan = agreed;
    return 0;
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
    struct vmstream *s; /* the main stream or a RAM channel */
    struct vm_ram *ram;
    struct ram_batch data, zero;
    struct vmstream_round out;
    uint64_t known_end, data_start, data_end; /* the last vm_ram_find_data answer */
    /* Only the first round asks where the holes are: a page set in a later
     * round was written since (CPU or DMA log), so it is backed. The query
     * walks the memfd's page cache from the page asked to the next hole,
     * 2 ms for 256 MiB of backed RAM here: a third of a small round's time,
     * and downtime in the last one. */
    bool query_holes;
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

/* Queues every page set in bitmap within [from, to): holes as zero runs,
 * backed pages as data. Calls for one round must come with increasing
 * from (the hole query's answer is kept). */
static int ram_scan(struct ram_round *r, const uint64_t *bitmap, uint64_t from, uint64_t to)
{
    struct vm_ram *ram = r->ram;
    uint64_t a, b;
    int ret;

    while (bitmap_next_run(bitmap, to, from, &a, &b)) {
        uint64_t page = a;

        while (page < b) {
            uint64_t gpa = page << VM_RAM_PAGE_SHIFT, stop;

            if (!r->query_holes) {
                r->data_start = gpa;
                r->data_end = vm_ram_size(ram);
                r->known_end = r->data_end;
            } else if (gpa >= r->known_end) {
                /* Where are the holes? One query serves every run up to
                 * the end of the backed range it finds. */
                if (vm_ram_find_data(ram, gpa, &r->data_start, &r->data_end) != 0) {
                    r->data_start = gpa;
                    r->data_end = vm_ram_size(ram);
                }
                r->known_end = r->data_end;
            }
            if (gpa < r->data_start) {
                stop = AM_MIN(b, r->data_start >> VM_RAM_PAGE_SHIFT);
                ret = batch_add(r, &r->zero, page, stop - page);
            } else {
                /* Backed pages were touched (by the guest or a DMA) and go
                 * as data, even one that happens to read as zero: looking
                 * for zeros would pull every page from memory once more
                 * before the kernel's copy does, which costs far more than
                 * sending the few that are. Holes cover the zeros. */
                stop = AM_MIN(b, r->data_end >> VM_RAM_PAGE_SHIFT);
                ret = batch_add(r, &r->data, page, stop - page);
            }
            if (ret != 0)
                return ret;
            page = stop;
        }
        from = b;
    }
    return 0;
}

static int ram_round_flush(struct ram_round *r)
{
    int ret = batch_flush(r, &r->data);

    return ret == 0 ? batch_flush(r, &r->zero) : ret;
}

static int chan_round(struct vmstream *s, struct vm_ram *ram, const uint64_t *bitmap,
                      struct vmstream_round *out);

int vmstream_send_ram_round(struct vmstream *s, struct vm_ram *ram, const uint64_t *bitmap,
                            struct vmstream_round *out)
{
    struct ram_round r;
    struct vmstream_round total;
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
    if (s->nchan > 0) {
        ret = chan_round(s, ram, bitmap, &total);
    } else {
        memset(&r, 0, sizeof(r));
        r.s = s;
        r.ram = ram;
        r.data.data = true;
        r.query_holes = s->round == 0;
        ret = ram_scan(&r, bitmap, 0, vm_ram_pages(ram));
        if (ret == 0)
            ret = ram_round_flush(&r);
        total = r.out;
    }
    if (ret != 0)
        return ret;
    rr = (struct vms_round){.round = s->round, .pages = total.pages,
                           .zero_pages = total.zero_pages};
    iov = (struct iovec){.iov_base = &rr, .iov_len = sizeof(rr)};
    ret = send_record(s, VMS_REC_ROUND, VMS_REC_F_OPTIONAL, 0, &iov, 1, 1);
    if (ret != 0)
        return send_fail(s, ret, "the round record", sizeof(rr));
    s->round++;
    s->st.rounds++;
    if (out != NULL)
        *out = total;
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
    if (s->nchan > 0 && (ret = chan_end_all(s)) != 0)
        return ret;
    e = (struct vms_end){.crc = s->crc, .bytes = s->st.bytes};
    iov = (struct iovec){.iov_base = &e, .iov_len = sizeof(e)};
    ret = send_record(s, VMS_REC_END, 0, 0, &iov, 1, 1);
    if (ret != 0)
        return send_fail(s, ret, "the end record", sizeof(e));
    s->st.end_ns = am_now_ns();
    pthread_mutex_lock(&s->lock);
    s->abort_due = true;
    pthread_mutex_unlock(&s->lock);
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
    /* Under the lock: either an abort told ABORT and this refuses, or this
     * goes ahead and no ABORT is written any more. */
    pthread_mutex_lock(&s->lock);
    if (__atomic_load_n(&s->aborted, __ATOMIC_ACQUIRE)) {
        pthread_mutex_unlock(&s->lock);
        return vms_fail(s, -ECANCELED, "aborted before the handover");
    }
    s->abort_due = false;
    pthread_mutex_unlock(&s->lock);
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

/* ABORT, once, if it is due (abort_due); lock held. Best effort and past
 * any sticky failure: a destination that reads it discards at once instead
 * of waiting in doubt. Never blocks (a frozen destination's full buffer
 * loses it: that destination is in doubt, as without it). */
static void abort_tell_locked(struct vmstream *s)
{
    struct vms_rec h = {.type = VMS_REC_ABORT, .seq = s->tx_seq};

    if (!s->abort_due)
        return;
    s->abort_due = false;
    if (send(s->fd, &h, sizeof(h), MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof(h))
        s->tx_seq++;
}

void vmstream_send_abort(struct vmstream *s)
{
    bool due;

    /* After END (READY read or not: a frozen destination may still send
     * it and wait for our word), unless vmstream_abort told it already
     * (and shut the connection down). */
    pthread_mutex_lock(&s->lock);
    due = s->abort_due;
    abort_tell_locked(s);
    pthread_mutex_unlock(&s->lock);
    if (due)
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
    /* Every RAM channel's END (its pages and CRC checked) before the state
     * may load. */
    if (s->nchan > 0 && (ret = chan_wait(s, 0, true)) != 0)
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
        uint32_t n = (uint32_t)AM_MIN((size_t)left, c->s->buf_len);
        int ret = rec_read(c, c->s->buf, n, "an optional record");

        if (ret != 0)
            return ret;
        left -= n;
    }
    return 0;
}

/* Reads a record header and checks what every record must satisfy
 * (sequence, flags, length bound, runs only in RAM/ZERO). */
static int recv_header(struct recv_ctx *c)
{
    struct vmstream *s = c->s;
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
    return 0;
}

/* One record of the main stream: the header is checked (sequence, flags,
 * length bound, type against the state) before anything else is read. */
static int recv_record(struct recv_ctx *c)
{
    struct vmstream *s = c->s;
    struct vms_round rr;
    int ret = recv_header(c);

    if (ret != 0)
        return ret;
    if ((c->h.type == VMS_REC_RAM || c->h.type == VMS_REC_ZERO) && s->nchan > 0)
        return rec_fail(c, -EBADMSG, "pages on the main channel while %u RAM channels carry "
                        "them", s->nchan);
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
        if (ret != 0)
            return ret;
        if (s->nchan > 0) {
            /* Every channel's SYNC of this round first: the device check
             * that follows is then answered with all its pages in. */
            if (rr.round != s->st.rounds)
                return rec_fail(c, -EBADMSG, "round %u, expected %llu", rr.round,
                                (unsigned long long)s->st.rounds);
            ret = chan_wait(s, rr.round + 1, false);
            if (ret != 0)
                return ret;
        }
        s->st.rounds++;
        return 0;
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
    if (s->nattached != s->nchan)
        return vms_usage(s, "%u of %u RAM channels accepted", s->nattached, s->nchan);
    ret = chan_recv_start(s, ram);
    while (ret == 0 && s->state != VMS_READY)
        ret = recv_record(&c);
    if (ret != 0) {
        ret = chan_recv_error(s, ret);
        recv_fail_answer(&c, ret);
    }
    chan_stop_all(s);
    return ret;
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
    if (s->mig_id != 0 && cm.id != s->mig_id)
        return vms_fail(s, -EBADMSG, "COMMIT for migration 0x%016llx, the hello said 0x%016llx",
                        (unsigned long long)cm.id, (unsigned long long)s->mig_id);
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

/* ---- RAM channels (docs/vm-stream-format.md, "Channels") ---- */

int vmstream_set_channels(struct vmstream *s, unsigned n, uint64_t id)
{
    if (s->state != VMS_NEW)
        return vms_usage(s, "vmstream_set_channels after the handshake");
    if (n > VMSTREAM_CHANNELS_MAX)
        return vms_usage(s, "%u RAM channels, at most %u", n, VMSTREAM_CHANNELS_MAX);
    if (s->role == VMSTREAM_SOURCE && n > 0 && id == 0)
        return vms_usage(s, "RAM channels need a non-zero migration id");
    s->chan_want = n;
    if (s->role == VMSTREAM_SOURCE)
        s->mig_id = id;
    return 0;
}

unsigned vmstream_channels(const struct vmstream *s) { return s->nchan; }
uint64_t vmstream_migration_id(const struct vmstream *s) { return s->mig_id; }

static int chan_new(struct vmstream *m, int fd, unsigned index, struct vmstream **out)
{
    struct vmstream *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return -ENOMEM;
    c->buf_len = VMS_CH_BUF;
    c->buf = malloc(c->buf_len);
    if (c->buf == NULL) {
        free(c);
        return -ENOMEM;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->fd = fd;
    c->role = m->role;
    c->timeout_ms = m->timeout_ms;
    c->state = VMS_OPEN;
    c->peer = m->peer;
    c->parent = m;
    c->index = index;
    c->mig_id = m->mig_id;
    *out = c;
    return 0;
}

/* Ends the channel threads (they are idle or their connections are shut
 * down) and joins them. */
static void chan_stop_all(struct vmstream *s)
{
    pthread_mutex_lock(&s->lock);
    s->quit = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    for (unsigned i = 0; i < VMSTREAM_CHANNELS_MAX; i++) {
        if (s->chan_th_on[i]) {
            pthread_join(s->chan_th[i], NULL);
            s->chan_th_on[i] = false;
        }
    }
}

/* A channel thread's failure, kept once for the main (lock held). */
static void chan_note_err_locked(struct vmstream *m, struct vmstream *c, int err)
{
    if (m->chan_err != 0)
        return;
    m->chan_err = err;
    snprintf(m->chan_msg, sizeof(m->chan_msg), "RAM channel %u: %s", c->index, c->err);
}

/* ---- source channels ---- */

static int chan_stop_copy(struct vmstream *c)
{
    int ret = send_record(c, VMS_REC_STOP_COPY, 0, 0, NULL, 0, 0);

    if (ret != 0)
        return send_fail(c, ret, "the stop-copy marker", 0);
    c->state = VMS_STOPPED;
    return 0;
}

/* This channel's share of the round: chunks of the bitmap taken in turn
 * with the other channels, then SYNC. */
static int chan_send_round(struct vmstream *c)
{
    struct vmstream *m = c->parent;
    struct ram_round r = {.s = c, .ram = m->chan_ram, .data.data = true,
                          .query_holes = m->round == 0};
    struct vms_round rr;
    struct iovec iov;
    int ret = 0;

    if (m->state >= VMS_STOPPED && c->state < VMS_STOPPED)
        ret = chan_stop_copy(c);
    while (ret == 0) {
        uint64_t from = __atomic_fetch_add(&m->job_cursor, VMS_CH_CHUNK_PAGES, __ATOMIC_RELAXED);

        if (from >= m->job_npages)
            break;
        ret = ram_scan(&r, m->job_map, from, AM_MIN(from + VMS_CH_CHUNK_PAGES, m->job_npages));
    }
    if (ret == 0)
        ret = ram_round_flush(&r);
    if (ret != 0)
        return ret;
    rr = (struct vms_round){.round = m->round, .pages = r.out.pages,
                           .zero_pages = r.out.zero_pages};
    iov = (struct iovec){.iov_base = &rr, .iov_len = sizeof(rr)};
    ret = send_record(c, VMS_REC_SYNC, 0, 0, &iov, 1, 1);
    if (ret != 0)
        return send_fail(c, ret, "the sync record", sizeof(rr));
    c->job_out = r.out;
    return 0;
}

static int chan_send_end(struct vmstream *c)
{
    struct vms_end e;
    struct iovec iov;
    int ret = c->state < VMS_STOPPED ? chan_stop_copy(c) : 0;

    if (ret != 0)
        return ret;
    e = (struct vms_end){.crc = c->crc, .bytes = c->st.bytes};
    iov = (struct iovec){.iov_base = &e, .iov_len = sizeof(e)};
    ret = send_record(c, VMS_REC_END, 0, 0, &iov, 1, 1);
    if (ret != 0)
        return send_fail(c, ret, "the end record", sizeof(e));
    c->st.end_ns = am_now_ns();
    return 0;
}

static void *chan_send_main(void *arg)
{
    struct vmstream *c = arg, *m = c->parent;
    unsigned seen = 0;

    pthread_mutex_lock(&m->lock);
    for (;;) {
        enum vms_job job;
        int ret;

        while (m->job_gen == seen && !m->quit)
            pthread_cond_wait(&m->cond, &m->lock);
        if (m->quit)
            break;
        seen = m->job_gen;
        job = m->job;
        pthread_mutex_unlock(&m->lock);
        ret = c->failed != 0 ? c->failed : job == VMS_JOB_ROUND ? chan_send_round(c)
                                                                : chan_send_end(c);
        pthread_mutex_lock(&m->lock);
        if (ret != 0)
            chan_note_err_locked(m, c, ret);
        if (--m->job_left == 0)
            pthread_cond_broadcast(&m->cond);
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

int vmstream_attach_channel(struct vmstream *s, int fd)
{
    struct vms_chan_hello h = {.major = VMSTREAM_VERSION_MAJOR, .minor = VMSTREAM_VERSION_MINOR,
                               .hello_len = sizeof(h)};
    struct vmstream *c = NULL;
    int ret = vms_enter(s, VMSTREAM_SOURCE, VMS_OPEN, VMS_OPEN, "vmstream_attach_channel");

    if (ret == 0 && s->nattached >= s->nchan)
        ret = vms_usage(s, "%u RAM channels were agreed, all are attached", s->nchan);
    if (ret == 0)
        ret = vm_net_set_timeout(fd, s->timeout_ms);
    if (ret == 0)
        ret = chan_new(s, fd, s->nattached + 1, &c);
    if (ret != 0) {
        close(fd);
        return ret;
    }
    memcpy(h.magic, VMS_CH_MAGIC, sizeof(h.magic));
    h.migration_id = s->mig_id;
    h.index = c->index;
    h.channels = s->nchan;
    pthread_mutex_lock(&s->lock);
    s->chan[s->nattached++] = c; /* from here on destroy closes fd */
    pthread_mutex_unlock(&s->lock);
    ret = vm_net_write_full(fd, &h, sizeof(h));
    if (ret != 0)
        return send_fail(s, ret, "a RAM channel's hello", sizeof(h));
    ret = -pthread_create(&s->chan_th[c->index - 1], NULL, chan_send_main, c);
    if (ret != 0)
        return vms_fail(s, ret, "starting RAM channel %u's thread: %s", c->index,
                        strerror(-ret));
    s->chan_th_on[c->index - 1] = true;
    return 0;
}

int vmstream_channels_wait(struct vmstream *s)
{
    int ret = vms_enter(s, VMSTREAM_SOURCE, VMS_OPEN, VMS_OPEN, "vmstream_channels_wait");

    if (ret != 0)
        return ret;
    if (s->nattached != s->nchan)
        return vms_usage(s, "%u of %u RAM channels attached", s->nattached, s->nchan);
    if (s->nchan == 0)
        return 0;
    return read_reply(s, VMS_PHASE_CHANNELS);
}

/* Runs one job on every channel and waits for all of them. Meanwhile the
 * main connection is watched: a destination that failed says why there
 * (and the channels it stopped reading would otherwise block until the
 * timeout). */
static int chan_job(struct vmstream *m, enum vms_job job)
{
    int err;

    if (m->nattached != m->nchan)
        return vms_usage(m, "%u of %u RAM channels attached", m->nattached, m->nchan);
    pthread_mutex_lock(&m->lock);
    m->job = job;
    m->job_cursor = 0;
    m->job_left = m->nchan;
    m->job_gen++;
    pthread_cond_broadcast(&m->cond);
    while (m->job_left > 0) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        if (pthread_cond_timedwait(&m->cond, &m->lock, &ts) != ETIMEDOUT || m->failed != 0)
            continue;
        pthread_mutex_unlock(&m->lock);
        (void)check_peer(m); /* on a failure it shuts the channels down */
        pthread_mutex_lock(&m->lock);
    }
    err = m->chan_err;
    pthread_mutex_unlock(&m->lock);
    if (m->failed != 0)
        return m->failed;
    if (err == 0)
        return 0;
    /* A channel cut by the destination: its reason, when it gave one. */
    if ((err == -EPIPE || err == -ECONNRESET) && check_peer(m) != 0)
        return m->failed;
    return vms_fail(m, err, "%s", m->chan_msg);
}

static int chan_round(struct vmstream *m, struct vm_ram *ram, const uint64_t *bitmap,
                      struct vmstream_round *out)
{
    int ret;

    m->chan_ram = ram;
    m->job_map = bitmap;
    m->job_npages = vm_ram_pages(ram);
    ret = chan_job(m, VMS_JOB_ROUND);
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; ret == 0 && i < m->nchan; i++) {
        out->pages += m->chan[i]->job_out.pages;
        out->zero_pages += m->chan[i]->job_out.zero_pages;
        out->bytes += m->chan[i]->job_out.bytes;
    }
    return ret;
}

static int chan_end_all(struct vmstream *m)
{
    return chan_job(m, VMS_JOB_END);
}

/* ---- destination channels ---- */

/* A bad channel hello refuses the whole migration on the main channel. */
static int chan_refuse(struct vmstream *m, int fd, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int chan_refuse(struct vmstream *m, int fd, int err, const char *fmt, ...)
{
    char what[240];
    va_list ap;

    close(fd);
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    err = vms_fail(m, err, "RAM channel hello: %s", what);
    if (err != -ECANCELED && send_reply(m, VMS_PHASE_CHANNELS, VMS_STATUS_REFUSED, m->err) == 0)
        shutdown(m->fd, SHUT_WR);
    chan_shutdown_all(m, SHUT_RDWR);
    return err;
}

int vmstream_accept_channel(struct vmstream *s, int fd)
{
    struct vms_chan_hello h;
    struct vmstream *c = NULL;
    char magic[2 * sizeof(h.magic) + 1];
    size_t done = 0;
    int ret = vms_enter(s, VMSTREAM_DEST, VMS_OPEN, VMS_OPEN, "vmstream_accept_channel");

    if (ret == 0 && s->nattached >= s->nchan)
        ret = vms_usage(s, "%u RAM channels were agreed, all are in", s->nchan);
    if (ret != 0) {
        close(fd);
        return ret;
    }
    ret = vm_net_set_timeout(fd, s->timeout_ms);
    if (ret == 0)
        ret = vm_net_read_full(fd, &h, sizeof(h), &done);
    if (ret != 0)
        return chan_refuse(s, fd, ret, "%s after %zu of %zu bytes",
                           ret == -ECONNRESET ? "truncated" : strerror(-ret), done, sizeof(h));
    if (memcmp(h.magic, VMS_CH_MAGIC, sizeof(h.magic)) != 0) {
        for (size_t i = 0; i < sizeof(h.magic); i++)
            snprintf(magic + 2 * i, 3, "%02x", (uint8_t)h.magic[i]);
        return chan_refuse(s, fd, -EBADMSG, "not a RAM channel (magic %s, expected \"%s\")",
                           magic, VMS_CH_MAGIC);
    }
    if (h.major != VMSTREAM_VERSION_MAJOR)
        return chan_refuse(s, fd, -EPROTONOSUPPORT, "version %u.%u, this side %u.%u", h.major,
                           h.minor, VMSTREAM_VERSION_MAJOR, VMSTREAM_VERSION_MINOR);
    if (h.hello_len < sizeof(h) || h.hello_len > VMS_HELLO_MAX)
        return chan_refuse(s, fd, -EBADMSG, "length %u outside %zu..%u", h.hello_len, sizeof(h),
                           VMS_HELLO_MAX);
    if (h.migration_id != s->mig_id)
        return chan_refuse(s, fd, -EBADMSG, "migration id 0x%016llx, this migration is "
                           "0x%016llx", (unsigned long long)h.migration_id,
                           (unsigned long long)s->mig_id);
    if (h.channels != s->nchan)
        return chan_refuse(s, fd, -EBADMSG, "%u channels announced, %u were agreed", h.channels,
                           s->nchan);
    if (h.index == 0 || h.index > s->nchan)
        return chan_refuse(s, fd, -EBADMSG, "index %u outside 1..%u", h.index, s->nchan);
    if (s->chan[h.index - 1] != NULL)
        return chan_refuse(s, fd, -EBADMSG, "a second channel %u", h.index);
    if (h.hello_len > sizeof(h)) {
        ret = vm_net_read_full(fd, s->buf, h.hello_len - sizeof(h), &done);
        if (ret != 0)
            return chan_refuse(s, fd, ret, "truncated after %zu of its %u bytes",
                               sizeof(h) + done, h.hello_len);
    }
    ret = chan_new(s, fd, h.index, &c);
    if (ret != 0)
        return chan_refuse(s, fd, ret, "%s", strerror(-ret));
    pthread_mutex_lock(&s->lock);
    s->chan[h.index - 1] = c;
    s->nattached++;
    pthread_mutex_unlock(&s->lock);
    if (s->nattached < s->nchan)
        return 0;
    ret = send_reply(s, VMS_PHASE_CHANNELS, VMS_STATUS_OK, "");
    return ret == 0 ? 0 : io_fail(s, ret, "the channels answer", 0, 0);
}

static int chan_recv_end(struct recv_ctx *x)
{
    struct vmstream *c = x->s;
    uint64_t bytes = c->st.bytes - sizeof(struct vms_rec);
    struct vms_end e;
    int ret;

    if (c->state != VMS_STOPPED)
        return rec_fail(x, -EBADMSG, "END before the channel's stop-copy marker");
    if (x->h.len != sizeof(e))
        return rec_fail(x, -EBADMSG, "length %u, expected %zu", x->h.len, sizeof(e));
    ret = vms_read(c, &e, sizeof(e), "the end record");
    if (ret != 0)
        return ret;
    if (e.crc != x->crc_before)
        return rec_fail(x, -EBADMSG, "channel CRC32C mismatch: the source says 0x%08x, the "
                        "received channel gives 0x%08x", e.crc, x->crc_before);
    if (e.bytes != bytes)
        return rec_fail(x, -EBADMSG, "the source sent %llu bytes, %llu arrived",
                        (unsigned long long)e.bytes, (unsigned long long)bytes);
    c->st.bytes += sizeof(e);
    c->st.end_ns = am_now_ns();
    return 0;
}

/* SYNC of round n: this channel has all its pages of round n. The channel
 * then waits until every channel has: a page resent in round n+1 on
 * another channel must not land before its round-n copy. */
static int chan_recv_sync(struct recv_ctx *x)
{
    struct vmstream *c = x->s, *m = c->parent;
    struct vms_round rr;
    int ret;

    if (x->h.len != sizeof(rr))
        return rec_fail(x, -EBADMSG, "length %u, expected %zu", x->h.len, sizeof(rr));
    ret = rec_read(x, &rr, sizeof(rr), "a sync record");
    if (ret != 0)
        return ret;
    if (rr.round != c->rx_rounds)
        return rec_fail(x, -EBADMSG, "sync of round %u, expected %u", rr.round, c->rx_rounds);
    pthread_mutex_lock(&m->lock);
    c->rx_rounds++;
    pthread_cond_broadcast(&m->cond);
    for (;;) {
        bool all = true;
        struct timespec ts;

        for (unsigned i = 0; i < m->nchan; i++)
            all = all && m->chan[i]->rx_rounds >= c->rx_rounds;
        if (all || m->quit || m->chan_err != 0 || __atomic_load_n(&c->aborted, __ATOMIC_ACQUIRE))
            break;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec++;
        pthread_cond_timedwait(&m->cond, &m->lock, &ts);
    }
    ret = m->quit || m->chan_err != 0 || __atomic_load_n(&c->aborted, __ATOMIC_ACQUIRE)
              ? -ECANCELED : 0;
    pthread_mutex_unlock(&m->lock);
    if (ret != 0)
        return vms_fail(c, ret, "stopped while waiting for the other channels' sync");
    return 0;
}

/* One record on a RAM channel: pages, SYNC, the channel's stop-copy
 * marker and END; nothing else belongs here. */
static int chan_recv_record(struct recv_ctx *x)
{
    struct vmstream *c = x->s;
    int ret = recv_header(x);

    if (ret != 0)
        return ret;
    switch (x->h.type) {
    case VMS_REC_RAM:
        return recv_ram(x);
    case VMS_REC_ZERO:
        return recv_zero(x);
    case VMS_REC_SYNC:
        return chan_recv_sync(x);
    case VMS_REC_STOP_COPY:
        if (x->h.len != 0)
            return rec_fail(x, -EBADMSG, "length %u, expected 0", x->h.len);
        if (c->state != VMS_OPEN)
            return rec_fail(x, -EBADMSG, "a second stop-copy marker");
        c->state = VMS_STOPPED;
        return 0;
    case VMS_REC_END:
        return chan_recv_end(x);
    default:
        if (x->h.flags & VMS_REC_F_OPTIONAL && x->h.type > VMS_REC_SYNC)
            return recv_skip(x);
        return rec_fail(x, -EBADMSG, "a %s record does not belong on a RAM channel",
                        rec_name(x->h.type));
    }
}

static void *chan_recv_main(void *arg)
{
    struct vmstream *c = arg, *m = c->parent;
    struct recv_ctx x = {.s = c, .ram = m->chan_ram, .phase = VMS_PHASE_STREAM};
    int ret = 0;

    while (ret == 0 && c->st.end_ns == 0)
        ret = chan_recv_record(&x);
    pthread_mutex_lock(&m->lock);
    if (ret == 0)
        c->rx_ended = true;
    else if (!m->quit)
        chan_note_err_locked(m, c, ret);
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    if (ret != 0)
        shutdown(m->fd, SHUT_RD); /* the main thread may be blocked reading: it answers S */
    return NULL;
}

static int chan_recv_start(struct vmstream *m, struct vm_ram *ram)
{
    m->chan_ram = ram;
    for (unsigned i = 0; i < m->nchan; i++) {
        int ret = -pthread_create(&m->chan_th[i], NULL, chan_recv_main, m->chan[i]);

        if (ret != 0)
            return vms_fail(m, ret, "starting RAM channel %u's thread: %s", i + 1,
                            strerror(-ret));
        m->chan_th_on[i] = true;
    }
    return 0;
}

/* Waits until every channel has read `rounds` SYNCs (and its END when
 * ended); a channel's failure becomes the main's. No deadline of its own:
 * each channel's socket times out when its bytes stop. */
static int chan_wait(struct vmstream *m, uint32_t rounds, bool ended)
{
    int err;

    pthread_mutex_lock(&m->lock);
    for (;;) {
        bool all = true;
        struct timespec ts;

        for (unsigned i = 0; i < m->nchan; i++)
            all = all && m->chan[i]->rx_rounds >= rounds && (!ended || m->chan[i]->rx_ended);
        if (all || m->chan_err != 0 || __atomic_load_n(&m->aborted, __ATOMIC_ACQUIRE))
            break;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec++;
        pthread_cond_timedwait(&m->cond, &m->lock, &ts);
    }
    err = m->chan_err;
    pthread_mutex_unlock(&m->lock);
    if (__atomic_load_n(&m->aborted, __ATOMIC_ACQUIRE))
        return vms_fail(m, -ECANCELED, "aborted");
    return err == 0 ? 0 : vms_fail(m, err, "%s", m->chan_msg);
}

/* After the main loop failed: a channel's failure is the one to report
 * (the main may only have been woken by it); every channel then stops. */
static int chan_recv_error(struct vmstream *m, int err)
{
    int cerr;

    pthread_mutex_lock(&m->lock);
    cerr = m->chan_err;
    m->quit = true;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    if (cerr != 0 && strstr(m->err, "RAM channel") == NULL)
        err = vms_fail(m, cerr, "%s", m->chan_msg);
    chan_shutdown_all(m, SHUT_RDWR);
    return err;
}
