/* conform/run: the run (groups in order, sessions, the server), the call
 * path every check uses, and the expectations that turn one reply into
 * one verdict.
 *
 * Every reply passes the same header rules before any check looks at its
 * payload (vfio-user.rst "Header"): type Reply, the command's msg_id and
 * command echoed, and an error reply is the header alone ("If an error
 * occurs, the reply message must only include the reply header"). A reply
 * that breaks them is CF_BAD and fails whatever check asked for it. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "conform/cf_int.h"

#define CF_DEFAULT_TIMEOUT_MS 5000u

struct group {
    const char *name;
    void (*fn)(struct cf_ctx *x);
    const char *what;
};

static const struct group groups[] = {
    {"protocol", cf_group_protocol,
     "VERSION negotiation and capabilities; every command's length, argsz, flags and index rules; "
     "region and IRQ info (caps, mmap fds); framing errors; pipelining, no_reply; fd accounting"},
    {"dma", cf_group_dma,
     "DMA_MAP/UNMAP with real memfds: alignment, flags, wrap, overlap (EEXIST), unmap ranges as "
     "QEMU sends them (several maps, an end at 2^64), UNMAP_ALL, bad fds closed, max_dma_maps"},
    {"migration", cf_group_migration,
     "the MIGRATION flags; every (from, to) pair walked with the uAPI path rules; MIG_DATA_READ/"
     "WRITE in every state; stream ends, aborts, truncated and corrupted resumes; MIG_DATA_SIZE"},
    {"logging", cf_group_logging,
     "DMA_LOGGING_START/STOP/REPORT argument rules (kernel vfio_main.c), bitmap sizes, page sizes"},
    {"hostile", cf_group_hostile,
     "every command truncated at every field boundary, huge counts, bad and surplus fds, broken "
     "framing: the server answers or closes, never crashes (server log scanned with --server-cmd)"},
    {"stress", cf_group_stress,
     "a bounded random sequence of valid and invalid messages (--stress SECONDS, --seed S)"},
};

void conform_list(FILE *out)
{
    for (size_t i = 0; i < AM_ARRAY_SIZE(groups); i++)
        fprintf(out, "%-9s %s\n", groups[i].name, groups[i].what);
}

/* ---- checks ---- */

void cf_check(struct cf_ctx *x, const char *name, enum cf_verdict v, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    uint64_t now = am_now_ns();

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    cf_report_add(&x->rep, x->group, name, v, reason, (double)(now - x->t0) / 1e9);
    x->t0 = now;
}

const char *cf_res_str(const struct cf_res *res, char *buf, size_t cap)
{
    switch (res->out) {
    case CF_OK:
        snprintf(buf, cap, "success (%zu payload bytes)", res->rep.len);
        break;
    case CF_ERR:
        snprintf(buf, cap, "error %d (%s)", res->err, res->err ? strerror(res->err) : "no errno");
        break;
    case CF_CLOSED:
        snprintf(buf, cap, "connection closed");
        break;
    case CF_TIMEOUT:
        snprintf(buf, cap, "no reply within the timeout");
        break;
    case CF_BAD:
        snprintf(buf, cap, "malformed reply: %s", res->why);
        break;
    default:
        snprintf(buf, cap, "not sent: %s", res->why);
    }
    return buf;
}

bool cf_expect_ok(struct cf_ctx *x, const char *name, const struct cf_res *res, const char *rule)
{
    char b[256];
    bool ok = res->out == CF_OK;
    cf_check(x, name, ok ? CF_PASS : CF_FAIL, "%s: %s", rule, cf_res_str(res, b, sizeof(b)));
    return ok;
}

bool cf_expect_refused(struct cf_ctx *x, const char *name, const struct cf_res *res,
                       const char *rule)
{
    char b[256];
    bool ok = res->out == CF_ERR || res->out == CF_CLOSED;
    cf_check(x, name, ok ? CF_PASS : CF_FAIL, "%s: %s", rule, cf_res_str(res, b, sizeof(b)));
    return ok;
}

bool cf_expect_errno(struct cf_ctx *x, const char *name, const struct cf_res *res, int err,
                     const char *rule)
{
    char b[256];
    bool ok = res->out == CF_ERR && res->err == err;
    cf_check(x, name, ok ? CF_PASS : CF_FAIL, "%s (%s expected): %s", rule, strerror(err),
             cf_res_str(res, b, sizeof(b)));
    return ok;
}

bool cf_expect_answer(struct cf_ctx *x, const char *name, const struct cf_res *res,
                      const char *rule)
{
    char b[256];
    bool ok = res->out == CF_OK || res->out == CF_ERR || res->out == CF_CLOSED;
    cf_check(x, name, ok ? CF_PASS : CF_FAIL, "%s: %s", rule, cf_res_str(res, b, sizeof(b)));
    return ok;
}

/* ---- sessions ---- */

static const char our_caps[] =
    "{\"capabilities\":{\"max_msg_fds\":8,\"max_data_xfer_size\":1048576,"
    "\"max_dma_maps\":65535,\"pgsizes\":4096,\"write_multiple\":true,"
    "\"migration\":{\"pgsize\":4096,\"max_bitmap_size\":1048576}}}";
/* --accmig: accmig offers its doorbell pages (BAR4) for mmap only to a
 * client that promises to follow its doorbell protocol (docs/usage.md). */
static const char our_caps_accmig[] =
    "{\"capabilities\":{\"max_msg_fds\":8,\"max_data_xfer_size\":1048576,"
    "\"max_dma_maps\":65535,\"pgsizes\":4096,\"write_multiple\":true,"
    "\"accmig_cooperative_doorbells\":true,"
    "\"migration\":{\"pgsize\":4096,\"max_bitmap_size\":1048576}}}";

static void parse_caps(struct cf_device *d, const char *json)
{
    struct json_object *root = json_tokener_parse(json), *caps, *v;

    d->max_msg_fds = 1;
    d->max_xfer = 1u << 20;
    d->max_dma_maps = 65535;
    d->pgsizes = 4096;
    d->write_multiple = false;
    if (!root)
        return;
    if (json_object_object_get_ex(root, "capabilities", &caps)) {
        if (json_object_object_get_ex(caps, "max_msg_fds", &v))
            d->max_msg_fds = (uint64_t)json_object_get_int64(v);
        if (json_object_object_get_ex(caps, "max_data_xfer_size", &v))
            d->max_xfer = (uint64_t)json_object_get_int64(v);
        if (json_object_object_get_ex(caps, "max_dma_maps", &v))
            d->max_dma_maps = (uint64_t)json_object_get_int64(v);
        if (json_object_object_get_ex(caps, "pgsizes", &v))
            d->pgsizes = (uint64_t)json_object_get_int64(v);
        if (json_object_object_get_ex(caps, "write_multiple", &v))
            d->write_multiple = json_object_get_boolean(v);
    }
    json_object_put(root);
    if (!d->max_xfer || d->max_xfer > CF_OUR_MAX_XFER)
        d->max_xfer = CF_OUR_MAX_XFER; /* we never ask for more than we proposed */
}

static int connect_server(struct cf_ctx *x)
{
    int ret = cf_conn_open(&x->conn, x->opts->socket, x->timeout_ms);
    int st;

    if (ret == 0 || !x->srv.cmd)
        return ret;
    /* Our server died (or never started): start it (again). */
    if (cf_server_alive(&x->srv, &st) == 1)
        return ret;
    ret = cf_server_start(&x->srv, x->opts->socket, 10000);
    if (ret)
        return ret;
    return cf_conn_open(&x->conn, x->opts->socket, x->timeout_ms);
}

static int session_once(struct cf_ctx *x);

/* A server that just closed a session may still be resetting the device
 * (or restarting): a few attempts over about two seconds before the
 * server counts as gone. */
int cf_session(struct cf_ctx *x)
{
    int ret = -ENOTCONN;

    if (x->server_gone)
        return ret;
    for (unsigned i = 0; i < 20; i++) {
        ret = session_once(x);
        if (ret == 0)
            return 0;
        nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
    }
    if (ret == -ECONNREFUSED || ret == -ENOENT)
        x->server_gone = true;
    return ret;
}

static int session_once(struct cf_ctx *x)
{
    uint8_t req[sizeof(struct vfu_version) + sizeof(our_caps_accmig)];
    struct vfu_version v = {.major = 0, .minor = 0};
    const char *caps = x->opts->accmig ? our_caps_accmig : our_caps;
    size_t caps_len = strlen(caps) + 1;
    struct cf_res res;
    int ret;

    cf_conn_close(&x->conn);
    ret = connect_server(x);
    if (ret)
        return ret;
    memcpy(req, &v, sizeof(v));
    memcpy(req + sizeof(v), caps, caps_len);
    cf_call(x, VFU_CMD_VERSION, req, sizeof(v) + caps_len, NULL, 0, &res);
    if (res.out != CF_OK || res.rep.len < sizeof(v)) {
        ret = res.out == CF_ERR ? -(res.err ? res.err : EPROTO) : -EPROTO;
        cf_res_free(&res);
        cf_conn_close(&x->conn);
        return ret;
    }
    memcpy(&v, res.rep.payload, sizeof(v));
    x->dev.minor = v.minor;
    if (res.rep.len > sizeof(v) && res.rep.payload[res.rep.len - 1] == 0)
        parse_caps(&x->dev, (const char *)res.rep.payload + sizeof(v));
    else
        parse_caps(&x->dev, "{}");
    cf_res_free(&res);
    return 0;
}

int cf_ensure(struct cf_ctx *x)
{
    if (x->conn.fd >= 0)
        return 0;
    return cf_session(x);
}

void cf_res_free(struct cf_res *res)
{
    cf_msg_free(&res->rep);
}

/* Reads the reply to (id, cmd) and applies the header rules. */
static void finish_call(struct cf_ctx *x, uint16_t id, uint16_t cmd, struct cf_res *res)
{
    int ret = cf_recv(&x->conn, &res->rep, x->timeout_ms);

    if (ret == -ECONNRESET) {
        res->out = CF_CLOSED;
        cf_conn_close(&x->conn);
        return;
    }
    if (ret == -ETIMEDOUT) {
        res->out = CF_TIMEOUT;
        cf_conn_close(&x->conn); /* a late reply would desynchronise us */
        return;
    }
    if (ret) {
        res->out = CF_BAD;
        snprintf(res->why, sizeof(res->why), "message size below 16 or above %u bytes",
                 CF_MAX_REPLY);
        cf_conn_close(&x->conn);
        return;
    }
    const struct vfu_hdr *h = &res->rep.hdr;
    if ((h->flags & VFU_HDR_TYPE_MASK) != VFU_HDR_TYPE_REPLY) {
        res->out = CF_BAD;
        snprintf(res->why, sizeof(res->why), "type %u, not Reply (1)", h->flags & 0xfu);
    } else if (h->msg_id != id) {
        res->out = CF_BAD;
        snprintf(res->why, sizeof(res->why), "msg_id %u does not echo the command's %u", h->msg_id,
                 id);
    } else if (h->cmd != cmd) {
        res->out = CF_BAD;
        snprintf(res->why, sizeof(res->why), "command %u does not echo the command's %u", h->cmd,
                 cmd);
    } else if (h->flags & VFU_HDR_ERROR) {
        if (res->rep.len) {
            res->out = CF_BAD;
            snprintf(res->why, sizeof(res->why), "an error reply (errno %u) with %zu payload bytes",
                     h->error, res->rep.len);
        } else {
            res->out = CF_ERR;
            res->err = (int)h->error;
        }
    } else {
        res->out = CF_OK;
    }
    if (res->out == CF_BAD)
        cf_conn_close(&x->conn); /* the stream cannot be trusted */
}

static bool send_failed(struct cf_ctx *x, int ret, struct cf_res *res)
{
    if (!ret)
        return false;
    /* A peer that closed while we sent: that is its answer. */
    res->out = ret == -EPIPE || ret == -ECONNRESET ? CF_CLOSED : CF_NOSEND;
    snprintf(res->why, sizeof(res->why), "send: %s", strerror(-ret));
    cf_conn_close(&x->conn);
    return true;
}

void cf_call(struct cf_ctx *x, uint16_t cmd, const void *p, size_t len, const int *fds,
             size_t nfds, struct cf_res *res)
{
    uint16_t id;

    memset(res, 0, sizeof(*res));
    if (x->conn.fd < 0 && cmd != VFU_CMD_VERSION && cf_ensure(x) != 0) {
        res->out = CF_NOSEND;
        snprintf(res->why, sizeof(res->why), "no session with the server");
        return;
    }
    if (send_failed(x, cf_send_cmd(&x->conn, cmd, 0, p, len, fds, nfds, &id), res))
        return;
    finish_call(x, id, cmd, res);
}

void cf_call_raw(struct cf_ctx *x, const void *buf, size_t len, const int *fds, size_t nfds,
                 struct cf_res *res)
{
    struct vfu_hdr h = {0};

    memset(res, 0, sizeof(*res));
    memcpy(&h, buf, AM_MIN(len, sizeof(h)));
    if (x->conn.fd < 0 && cf_ensure(x) != 0) {
        res->out = CF_NOSEND;
        snprintf(res->why, sizeof(res->why), "no session with the server");
        return;
    }
    if (send_failed(x, cf_send_raw(&x->conn, buf, len, fds, nfds), res))
        return;
    finish_call(x, h.msg_id, h.cmd, res);
}

bool cf_alive(struct cf_ctx *x, const char *name)
{
    char line[300], b[256];
    struct vfu_device_info di = {.argsz = sizeof(di)};
    struct cf_res res;
    int st = 0, a;

    if (x->srv.cmd) {
        a = cf_server_alive(&x->srv, &st);
        if (a == 0) {
            cf_check(x, name, CF_FAIL, "the server died (%s %d); restarting it",
                     WIFSIGNALED(st) ? "signal" : "exit status",
                     WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            if (cf_server_log_scan(&x->srv, line, sizeof(line)))
                cf_check(x, name, CF_FAIL, "server log: %s", line);
            cf_conn_close(&x->conn);
            return false;
        }
        if (cf_server_log_scan(&x->srv, line, sizeof(line))) {
            cf_check(x, name, CF_FAIL, "server log: %s", line);
            return false;
        }
    }
    if (x->conn.fd < 0 && cf_session(x) != 0) {
        cf_check(x, name, CF_FAIL, "cannot open a new session after the server closed one");
        return false;
    }
    cf_call(x, VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0, &res);
    if (res.out == CF_CLOSED && cf_session(x) == 0) {
        cf_res_free(&res);
        cf_call(x, VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0, &res);
    }
    if (res.out != CF_OK) {
        cf_check(x, name, CF_FAIL, "the server does not answer DEVICE_GET_INFO any more: %s",
                 cf_res_str(&res, b, sizeof(b)));
        cf_res_free(&res);
        return false;
    }
    cf_res_free(&res);
    return true;
}

/* ---- common requests ---- */

void cf_feature(struct cf_ctx *x, uint32_t flags, uint32_t argsz, const void *data, size_t len,
                struct cf_res *res)
{
    uint8_t *buf = malloc(sizeof(struct vfu_feature) + len);
    struct vfu_feature f = {.argsz = argsz, .flags = flags};

    if (!buf) {
        memset(res, 0, sizeof(*res));
        res->out = CF_NOSEND;
        snprintf(res->why, sizeof(res->why), "out of memory");
        return;
    }
    memcpy(buf, &f, sizeof(f));
    if (len)
        memcpy(buf + sizeof(f), data, len);
    cf_call(x, VFU_CMD_DEVICE_FEATURE, buf, sizeof(f) + len, NULL, 0, res);
    free(buf);
}

int cf_mig_get(struct cf_ctx *x, uint32_t *state)
{
    struct cf_res res;
    struct vfu_feature_mig_state st;
    int ret = -EPROTO;

    cf_feature(x, VFU_FEATURE_GET | CF_FEAT_MIG_STATE, sizeof(struct vfu_feature) + sizeof(st), NULL,
               0, &res);
    if (res.out == CF_ERR)
        ret = -(res.err ? res.err : EIO);
    if (res.out == CF_OK && res.rep.len >= sizeof(struct vfu_feature) + sizeof(st)) {
        memcpy(&st, res.rep.payload + sizeof(struct vfu_feature), sizeof(st));
        *state = st.device_state;
        ret = 0;
    }
    cf_res_free(&res);
    return ret;
}

int cf_mig_set(struct cf_ctx *x, uint32_t state, uint32_t *reached, struct cf_res *res)
{
    struct vfu_feature_mig_state st = {.device_state = state, .data_fd = -1};
    struct cf_res local;
    struct cf_res *r = res ? res : &local;
    int ret = -EPROTO;

    cf_feature(x, VFU_FEATURE_SET | CF_FEAT_MIG_STATE, sizeof(struct vfu_feature) + sizeof(st), &st,
               sizeof(st), r);
    if (r->out == CF_ERR)
        ret = -(r->err ? r->err : EIO);
    if (r->out == CF_OK && r->rep.len >= sizeof(struct vfu_feature) + sizeof(st)) {
        memcpy(&st, r->rep.payload + sizeof(struct vfu_feature), sizeof(st));
        if (reached)
            *reached = st.device_state;
        ret = 0;
    }
    if (!res)
        cf_res_free(&local);
    return ret;
}

int cf_reset(struct cf_ctx *x)
{
    struct cf_res res;
    int ret;

    cf_call(x, VFU_CMD_DEVICE_RESET, NULL, 0, NULL, 0, &res);
    ret = res.out == CF_OK ? 0 : res.out == CF_ERR ? -(res.err ? res.err : EIO) : -EPROTO;
    cf_res_free(&res);
    return ret;
}

int cf_memfd(struct cf_ctx *x, size_t size)
{
    char name[64];
    int fd;

    snprintf(name, sizeof(name), "accmig-conform-%d-%u", (int)getpid(), x->memfd_seq++);
    fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)size) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

int cf_dma_map(struct cf_ctx *x, uint64_t iova, uint64_t size, int fd, uint64_t off,
               uint32_t flags, struct cf_res *res)
{
    struct vfu_dma_map m = {.argsz = sizeof(m), .flags = flags, .offset = off, .addr = iova,
                            .size = size};
    cf_call(x, VFU_CMD_DMA_MAP, &m, sizeof(m), fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0, res);
    return res->out == CF_OK ? 0 : res->out == CF_ERR ? -(res->err ? res->err : EIO) : -EPROTO;
}

int cf_dma_unmap(struct cf_ctx *x, uint64_t iova, uint64_t size, uint32_t flags,
                 struct cf_res *res)
{
    struct vfu_dma_unmap u = {.argsz = sizeof(u), .flags = flags, .addr = iova, .size = size};
    cf_call(x, VFU_CMD_DMA_UNMAP, &u, sizeof(u), NULL, 0, res);
    return res->out == CF_OK ? 0 : res->out == CF_ERR ? -(res->err ? res->err : EIO) : -EPROTO;
}

uint64_t cf_splitmix(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- discovery ---- */

static void parse_region_caps(struct cf_region *r, const uint8_t *p, size_t len)
{
    uint32_t off = r->info.cap_offset;

    /* Walk at most 16 headers that lie inside the reply; the protocol group
     * checks the chain's rules, here we only collect the sparse areas. */
    for (unsigned i = 0; i < 16 && off && off + sizeof(struct vfu_info_cap_header) <= len; i++) {
        struct vfu_info_cap_header h;
        memcpy(&h, p + off, sizeof(h));
        if (h.id == VFU_REGION_INFO_CAP_SPARSE_MMAP &&
            off + sizeof(struct vfu_region_sparse_mmap) <= len) {
            struct vfu_region_sparse_mmap sm;
            memcpy(&sm, p + off, sizeof(sm));
            r->nr_areas = 0;
            for (uint32_t a = 0; a < sm.nr_areas && a < AM_ARRAY_SIZE(r->areas); a++) {
                size_t at = off + sizeof(sm) + a * sizeof(struct vfu_sparse_mmap_area);
                if (at + sizeof(struct vfu_sparse_mmap_area) > len)
                    break;
                memcpy(&r->areas[a], p + at, sizeof(r->areas[a]));
                r->nr_areas = a + 1;
            }
        }
        if (h.next <= off)
            break;
        off = h.next;
    }
}

int cf_discover(struct cf_ctx *x)
{
    struct cf_device *d = &x->dev;
    struct vfu_device_info di = {.argsz = sizeof(di)};
    struct cf_res res;

    d->have_info = false;
    cf_call(x, VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0, &res);
    if (res.out != CF_OK || res.rep.len < sizeof(di)) {
        cf_res_free(&res);
        return -EPROTO;
    }
    memcpy(&d->info, res.rep.payload, sizeof(d->info));
    cf_res_free(&res);
    d->have_info = true;
    d->nregions = AM_MIN(d->info.num_regions, CF_MAX_REGIONS);
    d->nirqs = AM_MIN(d->info.num_irqs, CF_MAX_IRQS);
    for (uint32_t i = 0; i < d->nregions; i++) {
        struct vfu_region_info ri = {.argsz = sizeof(ri), .index = i};
        struct cf_region *r = &d->regions[i];
        memset(r, 0, sizeof(*r));
        for (int attempt = 0; attempt < 2; attempt++) {
            cf_call(x, VFU_CMD_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), NULL, 0, &res);
            if (res.out != CF_OK || res.rep.len < sizeof(ri)) {
                cf_res_free(&res);
                break;
            }
            memcpy(&r->info, res.rep.payload, sizeof(r->info));
            r->have = true;
            r->got_fd = res.rep.nfds > 0;
            if (r->info.argsz > ri.argsz && r->info.argsz <= 4096 && attempt == 0) {
                ri.argsz = r->info.argsz; /* ask again with room for the caps */
                cf_res_free(&res);
                continue;
            }
            if (r->info.flags & VFU_REGION_FLAG_CAPS)
                parse_region_caps(r, res.rep.payload, res.rep.len);
            cf_res_free(&res);
            break;
        }
    }
    for (uint32_t i = 0; i < d->nirqs; i++) {
        struct vfu_irq_info ii = {.argsz = sizeof(ii), .index = i};
        memset(&d->irqs[i], 0, sizeof(d->irqs[i]));
        cf_call(x, VFU_CMD_DEVICE_GET_IRQ_INFO, &ii, sizeof(ii), NULL, 0, &res);
        if (res.out == CF_OK && res.rep.len >= sizeof(ii))
            memcpy(&d->irqs[i], res.rep.payload, sizeof(ii));
        cf_res_free(&res);
    }
    /* Features: a PROBE with the operations we will use. */
    struct {
        uint32_t flags;
        bool *have;
    } probes[] = {
        {VFU_FEATURE_GET | CF_FEAT_MIGRATION, &d->mig},
        {VFU_FEATURE_GET | VFU_FEATURE_SET | CF_FEAT_MIG_STATE, &d->feat_state},
        {VFU_FEATURE_SET | CF_FEAT_LOG_START, &d->feat_log_start},
        {VFU_FEATURE_SET | CF_FEAT_LOG_STOP, &d->feat_log_stop},
        {VFU_FEATURE_GET | CF_FEAT_LOG_REPORT, &d->feat_log_report},
        {VFU_FEATURE_GET | CF_FEAT_MIG_DATA_SIZE, &d->feat_data_size},
        {VFU_FEATURE_GET | CF_FEAT_ACCMIG_PRECOPY_INFO, &d->feat_precopy_info},
    };
    for (size_t i = 0; i < AM_ARRAY_SIZE(probes); i++) {
        if (probes[i].have == &d->feat_precopy_info && !x->opts->accmig) {
            d->feat_precopy_info = false;
            continue;
        }
        cf_feature(x, probes[i].flags | VFU_FEATURE_PROBE, sizeof(struct vfu_feature), NULL, 0,
                   &res);
        *probes[i].have = res.out == CF_OK;
        cf_res_free(&res);
    }
    d->mig_flags = 0;
    if (d->mig) {
        cf_feature(x, VFU_FEATURE_GET | CF_FEAT_MIGRATION, sizeof(struct vfu_feature) + 8, NULL, 0,
                   &res);
        if (res.out == CF_OK && res.rep.len >= sizeof(struct vfu_feature) + 8)
            d->mig_flags = (uint32_t)am_le64(res.rep.payload + sizeof(struct vfu_feature));
        else
            d->mig = false;
        cf_res_free(&res);
    }
    return 0;
}

/* ---- the run ---- */

static bool selected(const char *only, const char *name)
{
    size_t n = strlen(name);
    const char *p = only;

    if (!only)
        return true;
    while ((p = strstr(p, name)) != NULL) {
        if ((p == only || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
            return true;
        p += n;
    }
    return false;
}

static int check_only(const char *only)
{
    const char *p = only;

    while (p && *p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        bool known = false;
        for (size_t i = 0; i < AM_ARRAY_SIZE(groups); i++)
            known |= strlen(groups[i].name) == n && strncmp(groups[i].name, p, n) == 0;
        if (!known)
            return -EINVAL;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

int conform_run(const struct conform_opts *opts, FILE *out)
{
    struct cf_ctx *x;
    int ret, st;
    char line[300];

    if (!opts->socket || check_only(opts->only))
        return -EINVAL;
    x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    x->opts = opts;
    x->rep.out = out;
    x->rep.json = opts->json;
    x->rep.verbose = opts->verbose;
    x->conn.fd = -1;
    x->timeout_ms = opts->timeout_ms ? opts->timeout_ms : CF_DEFAULT_TIMEOUT_MS;
    x->srv.cmd = opts->server_cmd;
    x->dma_base = 0x100000000ull;
    if (opts->server_log)
        snprintf(x->srv.log_path, sizeof(x->srv.log_path), "%s", opts->server_log);
    x->t0 = am_now_ns();
    if (x->srv.cmd) {
        ret = cf_server_start(&x->srv, opts->socket, 10000);
        if (ret) {
            fprintf(stderr, "accmig conform: the server command did not listen on %s: %s\n",
                    opts->socket, strerror(-ret));
            goto out_free;
        }
    }
    ret = cf_session(x);
    if (ret) {
        fprintf(stderr, "accmig conform: no vfio-user session on %s: %s\n", opts->socket,
                strerror(-ret));
        goto out_stop;
    }
    cf_discover(x);
    for (size_t i = 0; i < AM_ARRAY_SIZE(groups); i++) {
        if (!selected(opts->only, groups[i].name))
            continue;
        x->group = groups[i].name;
        x->t0 = am_now_ns();
        if (x->server_gone) {
            cf_check(x, "all", CF_SKIP, "the server is gone");
            continue;
        }
        if (cf_session(x) != 0) {
            cf_check(x, "session", CF_FAIL, "cannot open a session for the group");
            continue;
        }
        groups[i].fn(x);
    }
    cf_conn_close(&x->conn);
    if (x->srv.cmd) {
        x->group = "server";
        ret = cf_server_stop(&x->srv, &st);
        cf_check(x, "sigterm", ret == 0 ? CF_PASS : CF_FAIL,
                 "the backend program honours SIGTERM (vfio-user.rst, backend program "
                 "conventions): %s",
                 ret == 0 ? "exited" : "still running after 5 s, killed");
        if (cf_server_log_scan(&x->srv, line, sizeof(line)))
            cf_check(x, "log-clean", CF_FAIL, "server log: %s", line);
        else
            cf_check(x, "log-clean", CF_PASS, "no sanitizer report in %s (%u start%s)",
                     x->srv.log_path, x->srv.starts, x->srv.starts == 1 ? "" : "s");
    }
    cf_report_summary(&x->rep);
    if (opts->junit_path && cf_report_junit(&x->rep, opts->junit_path) != 0)
        fprintf(stderr, "accmig conform: cannot write %s\n", opts->junit_path);
    ret = (int)AM_MIN(x->rep.counts[CF_FAIL], (unsigned)INT32_MAX);
out_stop:
    if (x->srv.pid)
        cf_server_stop(&x->srv, NULL);
    if (x->srv.own_log && ret == 0)
        unlink(x->srv.log_path);
out_free:
    cf_conn_close(&x->conn);
    free(x->saved);
    cf_report_free(&x->rep);
    free(x);
    return ret;
}

int cf_pipe(int p[2])
{
    return pipe2(p, O_CLOEXEC) < 0 ? -errno : 0;
}

bool cf_fd_released(int rd, unsigned timeout_ms)
{
    struct pollfd pfd = {.fd = rd, .events = POLLIN};
    uint64_t deadline = am_now_ns() + (uint64_t)timeout_ms * 1000000u;

    /* The server may close a descriptor it did not take a little after
     * its reply; wait for the hang-up rather than sample once. */
    while (am_now_ns() < deadline) {
        if (poll(&pfd, 1, 50) > 0 && (pfd.revents & POLLHUP))
            return true;
    }
    return false;
}
