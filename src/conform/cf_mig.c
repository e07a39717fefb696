/* conform/migration: the migration feature as vfio-user carries the
 * kernel's uAPI: flags, every (from, to) pair the flags allow (expected
 * outcome from conform_fsm_next_step), each path walked arc by arc, the
 * data phase (MIG_DATA_READ/WRITE gating, stream ends, aborts), resuming
 * whole, segmented, truncated and corrupted streams, PRE_COPY and
 * MIG_DATA_SIZE. Needs DEVICE_RESET between cases: the only way back from
 * any state (and from ERROR) the spec gives. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "conform/cf_int.h"

#define SPEC_MIG "vfio-user.rst MIG_DEVICE_STATE"
#define SPEC_READ "vfio-user.rst MIG_DATA_READ"
#define STREAM_MAX (64u << 20) /* a stream that does not end by then never will */
#define CHUNK 65536u

struct mig {
    struct cf_ctx *x;
    uint32_t flags;
    unsigned fmt_bad; /* MIG_DATA_READ replies that broke the format */
    char fmt_why[160];
};

static const char *sn(unsigned s)
{
    return conform_state_name(s);
}

/* One MIG_DATA_READ of up to size bytes into buf: the count, or -errno
 * (-EPROTO: no answer). Checks the reply's format on the way. */
static long mig_read(struct mig *m, uint32_t size, uint8_t *buf)
{
    struct vfu_mig_data rq = {.argsz = (uint32_t)sizeof(rq) + size, .size = size}, rp;
    struct cf_res res;
    long ret;

    cf_call(m->x, VFU_CMD_MIG_DATA_READ, &rq, sizeof(rq), NULL, 0, &res);
    if (res.out != CF_OK) {
        ret = res.out == CF_ERR ? -(res.err ? res.err : EIO) : -EPROTO;
        cf_res_free(&res);
        return ret;
    }
    if (res.rep.len < sizeof(rp)) {
        m->fmt_bad++;
        snprintf(m->fmt_why, sizeof(m->fmt_why), "a %zu-byte reply", res.rep.len);
        cf_res_free(&res);
        return -EPROTO;
    }
    memcpy(&rp, res.rep.payload, sizeof(rp));
    if (rp.size != res.rep.len - sizeof(rp) || rp.argsz != res.rep.len || rp.size > size) {
        m->fmt_bad++;
        snprintf(m->fmt_why, sizeof(m->fmt_why),
                 "argsz %u, size %u, %zu data bytes, %u asked", rp.argsz, rp.size,
                 res.rep.len - sizeof(rp), size);
    }
    ret = (long)AM_MIN((size_t)AM_MIN(rp.size, size), res.rep.len - sizeof(rp));
    if (buf)
        memcpy(buf, res.rep.payload + sizeof(rp), (size_t)ret);
    cf_res_free(&res);
    return ret;
}

static int mig_write(struct cf_ctx *x, const uint8_t *data, size_t len, struct cf_res *res)
{
    uint8_t *b = malloc(sizeof(struct vfu_mig_data) + len);
    struct vfu_mig_data h = {.argsz = (uint32_t)(sizeof(h) + len), .size = (uint32_t)len};
    int ret;

    if (!b)
        return -ENOMEM;
    memcpy(b, &h, sizeof(h));
    memcpy(b + sizeof(h), data, len);
    cf_call(x, VFU_CMD_MIG_DATA_WRITE, b, sizeof(h) + len, NULL, 0, res);
    free(b);
    ret = res->out == CF_OK ? 0 : res->out == CF_ERR ? -(res->err ? res->err : EIO) : -EPROTO;
    return ret;
}

/* Reads until a short reply: the stream (malloc'd) and its length, or
 * -errno; -E2BIG when it never ends. */
static int read_stream(struct mig *m, uint8_t **out, size_t *len)
{
    size_t cap = CHUNK, n = 0;
    uint8_t *b = malloc(cap);

    if (!b)
        return -ENOMEM;
    for (;;) {
        long r;
        if (n + CHUNK > cap) {
            uint8_t *nb = cap >= STREAM_MAX ? NULL : realloc(b, cap * 2);
            if (!nb) {
                free(b);
                return cap >= STREAM_MAX ? -E2BIG : -ENOMEM;
            }
            b = nb;
            cap *= 2;
        }
        r = mig_read(m, CHUNK, b + n);
        if (r < 0) {
            free(b);
            return (int)r;
        }
        n += (size_t)r;
        if (r < (long)CHUNK)
            break;
    }
    *out = b;
    *len = n;
    return 0;
}

static int reset_to_running(struct cf_ctx *x)
{
    uint32_t st = 99;
    if (cf_reset(x) != 0 || cf_mig_get(x, &st) != 0)
        return -EIO;
    return st == CF_ST_RUNNING ? 0 : -EPROTO;
}

static int write_all(struct cf_ctx *x, const uint8_t *d, size_t len, size_t seg)
{
    struct cf_res res;
    for (size_t off = 0; off < len; off += seg) {
        int ret = mig_write(x, d + off, AM_MIN(seg, len - off), &res);
        cf_res_free(&res);
        if (ret)
            return ret;
    }
    return 0;
}

/* Puts a fresh device in state s (RESUMING with the saved stream loaded
 * when load is set). */
static int reach(struct mig *m, unsigned s, bool load)
{
    struct cf_ctx *x = m->x;
    uint32_t got = 99;

    if (reset_to_running(x))
        return -EIO;
    if (s == CF_ST_RUNNING)
        return 0;
    if (cf_mig_set(x, s, &got, NULL) || got != s)
        return -EPROTO;
    if (s == CF_ST_RESUMING && load && x->saved_len)
        return write_all(x, x->saved, x->saved_len, x->dev.max_xfer);
    return 0;
}

static void check_flags(struct mig *m)
{
    struct cf_ctx *x = m->x;
    cf_check(x, "flags/stop-copy", m->flags & CF_MIG_STOP_COPY ? CF_PASS : CF_FAIL,
             "vfio-user.rst MIGRATION: at least VFIO_MIGRATION_STOP_COPY must be set: flags 0x%x",
             m->flags);
    if (m->flags & ~(CF_MIG_STOP_COPY | CF_MIG_P2P | CF_MIG_PRE_COPY))
        cf_check(x, "flags/known", CF_SKIP,
                 "flags beyond STOP_COPY|P2P|PRE_COPY: behaviour defined in the future (vfio.h)");
    else
        cf_check(x, "flags/known", CF_PASS, "STOP_COPY%s%s", m->flags & CF_MIG_P2P ? "|P2P" : "",
                 m->flags & CF_MIG_PRE_COPY ? "|PRE_COPY" : "");
}

static void check_state_args(struct mig *m)
{
    struct cf_ctx *x = m->x;
    struct cf_res res;
    uint32_t st = 99;
    struct vfu_feature_mig_state s = {.device_state = CF_ST_RUNNING, .data_fd = -1};

    cf_check(x, "state/initial", cf_mig_get(x, &st) == 0 && st == CF_ST_RUNNING ? CF_PASS : CF_FAIL,
             "a new session's device is RUNNING: %s", sn(st));
    cf_feature(x, VFU_FEATURE_SET | CF_FEAT_MIG_STATE, 16, &s, 4, &res);
    cf_expect_refused(x, "state/set-4-bytes", &res,
                      SPEC_MIG ": device_state and data_fd, 8 bytes (libvfio-user over-read)");
    cf_res_free(&res);
    cf_feature(x, VFU_FEATURE_SET | CF_FEAT_MIG_STATE, 16, NULL, 0, &res);
    cf_expect_refused(x, "state/set-no-data", &res, SPEC_MIG ": a SET cut after the feature header");
    cf_res_free(&res);
    for (unsigned i = 0; i < 3; i++) {
        static const uint32_t bad[] = {CF_ST_ERROR, CF_ST_COUNT, UINT32_MAX};
        static const char *const names[] = {"state/set-error", "state/set-8", "state/set-max"};
        s.device_state = bad[i];
        cf_feature(x, VFU_FEATURE_SET | CF_FEAT_MIG_STATE, 16, &s, sizeof(s), &res);
        cf_expect_refused(x, names[i], &res, "vfio_mig_get_next_state: ERROR or no such state");
        cf_res_free(&res);
    }
    for (unsigned t = CF_ST_STOP; t < CF_ST_COUNT; t++) {
        char name[64];
        if (conform_fsm_state_supported(m->flags, t))
            continue;
        s.device_state = t;
        cf_feature(x, VFU_FEATURE_SET | CF_FEAT_MIG_STATE, 16, &s, sizeof(s), &res);
        snprintf(name, sizeof(name), "state/set-unsupported-%s", sn(t));
        cf_expect_refused(x, name, &res, "vfio.h: optional states the flags do not offer");
        cf_res_free(&res);
    }
    cf_feature(x, VFU_FEATURE_GET | CF_FEAT_MIG_STATE, 8, NULL, 0, &res);
    cf_expect_refused(x, "state/get-argsz-small", &res, "GET with argsz without room for the data");
    cf_res_free(&res);
    s.device_state = CF_ST_RUNNING;
    cf_feature(x, VFU_FEATURE_SET | CF_FEAT_MIG_STATE, 16, &s, sizeof(s), &res);
    if (cf_expect_ok(x, "state/set-current", &res, "setting the current state is a no-op")) {
        struct vfu_feature_mig_state r = {0};
        if (res.rep.len >= 16)
            memcpy(&r, res.rep.payload + 8, sizeof(r));
        cf_check(x, "state/set-reply", res.rep.len == 16 && r.device_state == CF_ST_RUNNING
                                           ? CF_PASS
                                           : CF_FAIL,
                 "vfio-user.rst DEVICE_FEATURE: a SET's reply is the request: %zu bytes, %s",
                 res.rep.len, sn(r.device_state));
    }
    cf_res_free(&res);
}

/* A complete STOP_COPY stream of a fresh device, kept for resuming. */
static void save_stream(struct mig *m)
{
    struct cf_ctx *x = m->x;
    uint8_t *s = NULL;
    size_t len = 0;
    long r;
    int ret;

    if (reach(m, CF_ST_STOP_COPY, false)) {
        cf_check(x, "save/reach-stop-copy", CF_FAIL, "RUNNING -> STOP_COPY failed");
        return;
    }
    ret = read_stream(m, &s, &len);
    cf_check(x, "save/stream-ends", ret == 0 ? CF_PASS : CF_FAIL,
             SPEC_READ ": \"If [size] is less than the requested size, there is no more migration "
                       "data\": %s, %zu bytes",
             ret ? strerror(-ret) : "ended", len);
    if (ret)
        return;
    cf_check(x, "save/stream-not-empty", len ? CF_PASS : CF_FAIL,
             "a device with migration state saves some: %zu bytes", len);
    r = mig_read(m, CHUNK, NULL);
    cf_check(x, "save/end-is-permanent", r == 0 || (r < 0 && r != -EPROTO) ? CF_PASS : CF_FAIL,
             "vfio.h: in STOP_COPY the end of the stream is permanent: %s",
             r == 0 ? "0 bytes" : r < 0 ? strerror((int)-r) : "more data after the end");
    free(x->saved);
    x->saved = s;
    x->saved_len = len;
}

static void check_pairs(struct mig *m)
{
    struct cf_ctx *x = m->x;
    char name[64], b[200];

    for (unsigned from = CF_ST_STOP; from < CF_ST_COUNT; from++) {
        if (!conform_fsm_state_supported(m->flags, from))
            continue;
        for (unsigned to = 0; to < CF_ST_COUNT; to++) {
            unsigned next;
            uint32_t got = 99, now = 99;
            struct cf_res res;
            bool legal = conform_fsm_next_step(m->flags, from, to, &next) == 0;

            snprintf(name, sizeof(name), "pair/%s->%s", sn(from), sn(to));
            if (reach(m, from, true)) {
                cf_check(x, name, CF_FAIL, "could not bring a reset device to %s", sn(from));
                continue;
            }
            cf_mig_set(x, to, &got, &res);
            cf_mig_get(x, &now);
            if (legal) {
                bool ok = res.out == CF_OK && got == to && now == to;
                cf_check(x, name, ok ? CF_PASS : CF_FAIL,
                         "vfio.h combined transition: SET completes the whole path: %s, reply %s, "
                         "GET %s",
                         cf_res_str(&res, b, sizeof(b)), res.out == CF_OK ? sn(got) : "-", sn(now));
            } else {
                bool ok = (res.out == CF_ERR || res.out == CF_CLOSED) &&
                          (res.out == CF_CLOSED || now == from || now == CF_ST_ERROR);
                cf_check(x, name, ok ? CF_PASS : CF_FAIL,
                         "%s: refused, state unchanged: %s, GET %s",
                         to == CF_ST_ERROR ? "ERROR cannot be requested"
                         : !conform_fsm_state_supported(m->flags, to)
                             ? "a state the flags do not offer"
                             : "vfio-user.rst: STOP_COPY -> PRE_COPY is explicitly not allowed",
                         cf_res_str(&res, b, sizeof(b)), sn(now));
            }
            cf_res_free(&res);
        }
    }
}

/* Each legal path of two or more arcs, taken one arc at a time: every arc
 * the rules use must be implemented on its own. */
static void check_walks(struct mig *m)
{
    struct cf_ctx *x = m->x;
    char name[64];

    for (unsigned from = CF_ST_STOP; from < CF_ST_COUNT; from++) {
        if (!conform_fsm_state_supported(m->flags, from))
            continue;
        for (unsigned to = CF_ST_STOP; to < CF_ST_COUNT; to++) {
            unsigned s = from, next, steps = 0;
            char path[160];
            size_t pl;
            bool ok = true;

            if (from == to || conform_fsm_next_step(m->flags, from, to, &next) || next == to)
                continue;
            snprintf(name, sizeof(name), "walk/%s->%s", sn(from), sn(to));
            if (reach(m, from, true)) {
                cf_check(x, name, CF_FAIL, "could not bring a reset device to %s", sn(from));
                continue;
            }
            pl = (size_t)snprintf(path, sizeof(path), "%s", sn(from));
            while (ok && s != to && steps++ < 8) {
                uint32_t got = 99;
                conform_fsm_next_step(m->flags, s, to, &next);
                pl += (size_t)snprintf(path + pl, sizeof(path) - AM_MIN(pl, sizeof(path)), ",%s",
                                       sn(next));
                ok = cf_mig_set(x, next, &got, NULL) == 0 && got == next;
                s = next;
            }
            cf_check(x, name, ok && s == to ? CF_PASS : CF_FAIL,
                     "each arc of the path vfio_mig_get_next_state takes, alone: %s%s", path,
                     ok ? "" : " (the last arc failed)");
        }
    }
}

static void check_data_gating(struct mig *m)
{
    struct cf_ctx *x = m->x;
    char name[64], b[200];

    for (unsigned s = CF_ST_STOP; s < CF_ST_COUNT; s++) {
        bool saving = s == CF_ST_STOP_COPY || s == CF_ST_PRE_COPY || s == CF_ST_PRE_COPY_P2P;
        struct cf_res res;
        long r;

        if (!conform_fsm_state_supported(m->flags, s))
            continue;
        snprintf(name, sizeof(name), "data/read-in-%s", sn(s));
        if (reach(m, s, false)) {
            cf_check(x, name, CF_FAIL, "could not reach %s", sn(s));
            continue;
        }
        r = mig_read(m, 64, NULL);
        if (saving)
            cf_check(x, name, r >= 0 ? CF_PASS : CF_FAIL,
                     SPEC_READ ": reads in a saving state: %s", r >= 0 ? "data" : strerror((int)-r));
        else
            cf_check(x, name, r < 0 && r != -EPROTO ? CF_PASS : CF_FAIL,
                     SPEC_READ ": only in PRE_COPY or STOP_COPY: %s",
                     r >= 0 ? "answered with data" : strerror((int)-r));
        snprintf(name, sizeof(name), "data/write-in-%s", sn(s));
        if (s == CF_ST_RESUMING) {
            if (x->saved_len) {
                mig_write(x, x->saved, AM_MIN(x->saved_len, 8u), &res);
                cf_expect_ok(x, name, &res,
                             "vfio-user.rst MIG_DATA_WRITE: in RESUMING, the first bytes of a "
                             "stream of this device");
                cf_res_free(&res);
            }
            continue;
        }
        mig_write(x, (const uint8_t *)"conform!", 8, &res);
        bool ok = res.out == CF_ERR || res.out == CF_CLOSED;
        cf_check(x, name, ok ? CF_PASS : CF_FAIL,
                 "vfio-user.rst MIG_DATA_WRITE: only in RESUMING: %s",
                 cf_res_str(&res, b, sizeof(b)));
        cf_res_free(&res);
    }
}

static void check_read_args(struct mig *m)
{
    struct cf_ctx *x = m->x;
    struct cf_res res;

    if (reach(m, CF_ST_STOP_COPY, false))
        return;
    {
        struct vfu_mig_data rq = {.argsz = 8 + 16, .size = 4096};
        cf_call(x, VFU_CMD_MIG_DATA_READ, &rq, sizeof(rq), NULL, 0, &res);
        bool ok = res.out == CF_ERR || res.out == CF_CLOSED ||
                  (res.out == CF_OK && res.rep.len <= rq.argsz);
        char b[200];
        cf_check(x, "data/read-argsz-honoured", ok ? CF_PASS : CF_FAIL,
                 SPEC_READ ": argsz is the maximum size of the reply payload (24 for 4096 asked): %s",
                 cf_res_str(&res, b, sizeof(b)));
        cf_res_free(&res);
    }
    {
        struct vfu_mig_data rq = {.argsz = UINT32_MAX, .size = (uint32_t)x->dev.max_xfer + 1};
        cf_call(x, VFU_CMD_MIG_DATA_READ, &rq, sizeof(rq), NULL, 0, &res);
        cf_expect_refused(x, "data/read-above-max-xfer", &res,
                          "vfio-user.rst: transfers are bounded by max_data_xfer_size");
        cf_res_free(&res);
    }
    {
        uint8_t b4[4] = {0};
        cf_call(x, VFU_CMD_MIG_DATA_READ, b4, sizeof(b4), NULL, 0, &res);
        cf_expect_refused(x, "data/read-short", &res, SPEC_READ ": a 4-byte request");
        cf_res_free(&res);
    }
    /* Abort with data unread: leaving the saving group ends the stream.
     * (A server may have closed on the malformed requests above.) */
    if (reach(m, CF_ST_STOP_COPY, false))
        return;
    long r = mig_read(m, 16, NULL);
    uint32_t got = 99;
    int ret = cf_mig_set(x, CF_ST_STOP, &got, NULL);
    cf_check(x, "data/abort-unread", r >= 0 && ret == 0 && got == CF_ST_STOP ? CF_PASS : CF_FAIL,
             "vfio-user.rst: STOP_COPY -> STOP terminates the session, data unread or not: %s",
             ret ? strerror(-ret) : sn(got));
    r = mig_read(m, 64, NULL);
    cf_check(x, "data/read-after-abort", r < 0 && r != -EPROTO ? CF_PASS : CF_FAIL,
             "vfio.h: a stream whose session ended fails every later read: %s",
             r >= 0 ? "data" : strerror((int)-r));
    if (cf_mig_set(x, CF_ST_STOP_COPY, &got, NULL) == 0) {
        uint8_t *s = NULL;
        size_t len = 0;
        ret = read_stream(m, &s, &len);
        cf_check(x, "data/new-stream-after-abort", ret == 0 && len ? CF_PASS : CF_FAIL,
                 "STOP -> STOP_COPY opens a new, complete stream: %zu bytes", len);
        free(s);
    }
}

static void check_resume(struct mig *m)
{
    struct cf_ctx *x = m->x;
    uint32_t got = 99;
    uint8_t *bad;
    int ret;
    char b[200];

    if (!x->saved_len) {
        cf_check(x, "resume/all", CF_SKIP, "no saved stream");
        return;
    }
    ret = reach(m, CF_ST_RESUMING, true);
    if (ret == 0)
        ret = cf_mig_set(x, CF_ST_STOP, &got, NULL);
    cf_check(x, "resume/whole", ret == 0 && got == CF_ST_STOP ? CF_PASS : CF_FAIL,
             "a stream of this device, one write per max_data_xfer_size: RESUMING -> STOP: %s",
             ret ? strerror(-ret) : sn(got));
    if (cf_mig_set(x, CF_ST_RUNNING, &got, NULL) == 0)
        cf_check(x, "resume/run", got == CF_ST_RUNNING ? CF_PASS : CF_FAIL,
                 "the resumed device runs: %s", sn(got));
    {
        size_t seg = AM_MAX((size_t)7, x->saved_len / 200);
        ret = reach(m, CF_ST_RESUMING, false);
        if (ret == 0)
            ret = write_all(x, x->saved, x->saved_len, seg);
        if (ret == 0)
            ret = cf_mig_set(x, CF_ST_STOP, &got, NULL);
        cf_check(x, "resume/segmented", ret == 0 ? CF_PASS : CF_FAIL,
                 "vfio.h: the user is not required to preserve buffer segmentation (%zu-byte "
                 "writes): %s",
                 seg, ret ? strerror(-ret) : "loaded");
    }
    /* Truncated: every byte but the last. */
    ret = reach(m, CF_ST_RESUMING, false);
    if (ret == 0)
        ret = write_all(x, x->saved, x->saved_len - 1, x->dev.max_xfer);
    {
        struct cf_res res;
        uint32_t now = 99;
        cf_mig_set(x, CF_ST_STOP, &got, &res);
        cf_mig_get(x, &now);
        bool refused = ret != 0 || res.out == CF_ERR || res.out == CF_CLOSED;
        cf_check(x, "resume/truncated", refused ? CF_PASS : CF_FAIL,
                 "vfio-user.rst: RESUMING -> STOP with incomplete data fails the SET: %s",
                 ret ? "a write was refused" : cf_res_str(&res, b, sizeof(b)));
        if (ret == 0 && res.out == CF_ERR)
            cf_check(x, "resume/truncated-state",
                     now == CF_ST_RESUMING || now == CF_ST_ERROR ? CF_PASS : CF_FAIL,
                     "vfio.h: a failed SET leaves the device where it was, or in ERROR: %s",
                     sn(now));
        cf_res_free(&res);
        cf_check(x, "resume/reset-recovers", reset_to_running(x) == 0 ? CF_PASS : CF_FAIL,
                 "vfio-user.rst: DEVICE_RESET returns to RUNNING, from ERROR too");
    }
    /* Corrupted: the first byte, then (accmig: CRC-covered) a middle one. */
    bad = malloc(x->saved_len);
    if (!bad)
        return;
    for (unsigned k = 0; k < 2; k++) {
        size_t at = k == 0 ? 0 : x->saved_len / 2;
        const char *name = k == 0 ? "resume/corrupted-first-byte" : "resume/corrupted-middle";
        struct cf_res res;
        if (k == 1 && !x->opts->accmig)
            continue;
        memcpy(bad, x->saved, x->saved_len);
        bad[at] ^= 0x5a;
        ret = reach(m, CF_ST_RESUMING, false);
        if (ret) {
            cf_check(x, name, CF_FAIL, "could not reach RESUMING");
            continue;
        }
        ret = write_all(x, bad, x->saved_len, x->dev.max_xfer);
        cf_mig_set(x, CF_ST_STOP, &got, &res);
        bool refused = ret != 0 || res.out == CF_ERR || res.out == CF_CLOSED;
        cf_check(x, name, refused ? CF_PASS : CF_FAIL,
                 "%s: invalid data fails a write or the SET: %s",
                 k == 0 ? "vfio-user.rst (\"inconsistent, or otherwise invalid\")"
                        : "accmig docs/stream-format.md: END's CRC32C covers the stream",
                 ret ? "a write was refused" : cf_res_str(&res, b, sizeof(b)));
        cf_res_free(&res);
    }
    free(bad);
    {
        struct cf_res res;
        ret = reach(m, CF_ST_RESUMING, false);
        cf_mig_set(x, CF_ST_STOP, &got, &res);
        cf_check(x, "resume/empty", ret == 0 && (res.out == CF_ERR || res.out == CF_CLOSED)
                                        ? CF_PASS
                                        : CF_FAIL,
                 "RESUMING -> STOP with nothing written (incomplete) fails: %s",
                 cf_res_str(&res, b, sizeof(b)));
        cf_res_free(&res);
    }
    reset_to_running(x);
}

static void check_precopy(struct mig *m)
{
    struct cf_ctx *x = m->x;
    uint8_t *all = NULL, *rest = NULL;
    size_t len = 0, rlen = 0, cap = 0;
    uint32_t got;
    int ret;
    long r;

    if (!(m->flags & CF_MIG_PRE_COPY)) {
        cf_check(x, "precopy/all", CF_SKIP, "the device does not offer PRE_COPY");
        return;
    }
    if (reach(m, CF_ST_PRE_COPY, false)) {
        cf_check(x, "precopy/reach", CF_FAIL, "RUNNING -> PRE_COPY failed");
        return;
    }
    if (x->dev.feat_precopy_info) {
        struct cf_res res;
        cf_feature(x, VFU_FEATURE_GET | CF_FEAT_ACCMIG_PRECOPY_INFO, 8 + 16, NULL, 0, &res);
        cf_expect_ok(x, "precopy/info", &res, "accmig ACCMIG_PRECOPY_INFO in PRE_COPY");
        cf_res_free(&res);
    }
    /* Read until a short reply: "no more for now" (not the end). */
    for (unsigned i = 0; i < 1024; i++) {
        if (len + CHUNK > cap) {
            uint8_t *nb = realloc(all, cap = cap ? cap * 2 : 2 * CHUNK);
            if (!nb)
                break;
            all = nb;
        }
        r = mig_read(m, CHUNK, all + len);
        if (r < 0)
            break;
        len += (size_t)r;
        if (r < (long)CHUNK)
            break;
    }
    r = mig_read(m, CHUNK, NULL);
    cf_check(x, "precopy/short-is-not-the-end", r >= 0 ? CF_PASS : CF_FAIL,
             "vfio.h: in PRE_COPY a short read is a temporary end; reading again is fine: %s",
             r >= 0 ? "answered" : strerror((int)-r));
    if (r > 0)
        len = 0; /* more came: the concatenation below is then unknown; skip it */
    ret = cf_mig_set(x, CF_ST_STOP_COPY, &got, NULL);
    cf_check(x, "precopy/to-stop-copy", ret == 0 && got == CF_ST_STOP_COPY ? CF_PASS : CF_FAIL,
             "vfio-user.rst: PRE_COPY -> STOP_COPY continues the stream: %s",
             ret ? strerror(-ret) : sn(got));
    if (ret == 0 && r == 0 && read_stream(m, &rest, &rlen) == 0) {
        uint8_t *s = malloc(len + rlen);
        if (s) {
            memcpy(s, all, len);
            memcpy(s + len, rest, rlen);
            ret = reach(m, CF_ST_RESUMING, false);
            if (ret == 0)
                ret = write_all(x, s, len + rlen, x->dev.max_xfer);
            if (ret == 0)
                ret = cf_mig_set(x, CF_ST_STOP, &got, NULL);
            cf_check(x, "precopy/stream-resumes", ret == 0 ? CF_PASS : CF_FAIL,
                     "PRE_COPY data + STOP_COPY data is one stream a RESUMING device loads "
                     "(%zu + %zu bytes): %s",
                     len, rlen, ret ? strerror(-ret) : "loaded");
            free(s);
        }
    }
    free(all);
    free(rest);
    if (x->dev.feat_precopy_info && reach(m, CF_ST_RUNNING, false) == 0) {
        struct cf_res res;
        cf_feature(x, VFU_FEATURE_GET | CF_FEAT_ACCMIG_PRECOPY_INFO, 8 + 16, NULL, 0, &res);
        cf_expect_refused(x, "precopy/info-in-running", &res,
                          "vfio.h VFIO_MIG_GET_PRECOPY_INFO: only in PRE_COPY states (EINVAL)");
        cf_res_free(&res);
    }
}

static void check_data_size(struct mig *m)
{
    struct cf_ctx *x = m->x;
    struct cf_res res;
    uint64_t v = 0;

    if (!x->dev.feat_data_size) {
        cf_check(x, "data-size/all", CF_SKIP, "MIG_DATA_SIZE not probed");
        return;
    }
    for (unsigned k = 0; k < 2; k++) {
        const char *name = k ? "data-size/in-stop-copy" : "data-size/in-running";
        if (reach(m, k ? CF_ST_STOP_COPY : CF_ST_RUNNING, false))
            continue;
        cf_feature(x, VFU_FEATURE_GET | CF_FEAT_MIG_DATA_SIZE, 16, NULL, 0, &res);
        if (cf_expect_ok(x, name, &res, "vfio.h VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: GET, u64")) {
            if (res.rep.len >= 16)
                v = am_le64(res.rep.payload + 8);
            cf_check(x, k ? "data-size/reply-sc" : "data-size/reply",
                     res.rep.len == 16 && am_le32(res.rep.payload) == 16 ? CF_PASS : CF_FAIL,
                     "feature header + u64, argsz 16: %zu bytes, stop_copy_length %llu",
                     res.rep.len, (unsigned long long)v);
            if (x->opts->accmig)
                cf_check(x, k ? "data-size/nonzero-sc" : "data-size/nonzero",
                         v ? CF_PASS : CF_FAIL,
                         "accmig (vfio-migration.md): never 0, QEMU sizes a buffer from it");
        }
        cf_res_free(&res);
    }
    cf_feature(x, VFU_FEATURE_SET | CF_FEAT_MIG_DATA_SIZE, 16, "\0\0\0\0\0\0\0\0", 8, &res);
    cf_expect_refused(x, "data-size/set", &res, "MIG_DATA_SIZE is GET only");
    cf_res_free(&res);
    reset_to_running(x);
}

void cf_group_migration(struct cf_ctx *x)
{
    struct mig m = {.x = x, .flags = x->dev.mig_flags};

    if (!x->dev.mig || !x->dev.feat_state) {
        cf_check(x, "all", CF_SKIP, "the device offers no MIGRATION/MIG_DEVICE_STATE feature");
        return;
    }
    if (!(x->dev.info.flags & VFU_DEVICE_FLAGS_RESET)) {
        cf_check(x, "all", CF_SKIP, "no DEVICE_RESET: the cases cannot be isolated");
        return;
    }
    check_flags(&m);
    if (!(m.flags & CF_MIG_STOP_COPY))
        return;
    check_state_args(&m);
    save_stream(&m);
    check_pairs(&m);
    check_walks(&m);
    check_data_gating(&m);
    check_read_args(&m);
    check_resume(&m);
    check_precopy(&m);
    check_data_size(&m);
    cf_check(x, "data/read-reply-format", m.fmt_bad ? CF_FAIL : CF_PASS,
             SPEC_READ ": reply argsz = 8 + size, size = the data returned, <= asked%s%s",
             m.fmt_bad ? ": " : "", m.fmt_bad ? m.fmt_why : "");
    reset_to_running(x);
}
