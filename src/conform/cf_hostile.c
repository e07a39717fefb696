/* conform/hostile: what a buggy or malicious client sends. Every command
 * cut at every field boundary of its structure (and of the feature data
 * behind DEVICE_FEATURE), counts that promise far more than the message
 * holds, descriptors of the wrong kind, broken framing. The server must
 * refuse (an error reply, or closing the connection, which the spec
 * allows) and stay alive and clean: after every case the server answers a
 * new request, and with --server-cmd its process is alive and its log has
 * no sanitizer report (the libvfio-user over-reads are silent otherwise). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"
#include "conform/cf_int.h"

#define OVERREAD "a payload cut short must be refused, not read past (the libvfio-user over-read)"

struct trunc {
    const char *cmd;
    uint16_t id;
    uint8_t tmpl[40];
    size_t size;
    size_t cuts[8];
    unsigned ncuts;
};

static void one(struct cf_ctx *x, const char *name, uint16_t cmd, const void *p, size_t len,
                const int *fds, size_t nfds, const char *rule)
{
    struct cf_res res;

    cf_call(x, cmd, p, len, fds, nfds, &res);
    cf_expect_refused(x, name, &res, rule);
    cf_res_free(&res);
    cf_alive(x, name);
}

static void answer_one(struct cf_ctx *x, const char *name, uint16_t cmd, const void *p, size_t len,
                       const int *fds, size_t nfds, const char *rule)
{
    struct cf_res res;

    cf_call(x, cmd, p, len, fds, nfds, &res);
    cf_expect_answer(x, name, &res, rule);
    cf_res_free(&res);
    cf_alive(x, name);
}

static void truncations(struct cf_ctx *x)
{
    struct trunc t[14];
    unsigned n = 0;
    char name[96];

#define T(c, i, obj, ...)                                                          \
    do {                                                                           \
        __typeof__(obj) o_ = obj;                                                  \
        t[n].cmd = c;                                                              \
        t[n].id = i;                                                               \
        memcpy(t[n].tmpl, &o_, sizeof(o_));                                        \
        t[n].size = sizeof(o_);                                                    \
        size_t cuts_[] = {__VA_ARGS__};                                            \
        memcpy(t[n].cuts, cuts_, sizeof(cuts_));                                   \
        t[n].ncuts = AM_ARRAY_SIZE(cuts_);                                         \
        n++;                                                                       \
    } while (0)
    T("version", VFU_CMD_VERSION, ((struct vfu_version){0, 0}), 0, 2, 3);
    T("dma-map", VFU_CMD_DMA_MAP,
      ((struct vfu_dma_map){.argsz = 32, .flags = 3, .addr = x->dma_base, .size = 4096}), 0, 4, 8,
      16, 24, 31);
    T("dma-unmap", VFU_CMD_DMA_UNMAP,
      ((struct vfu_dma_unmap){.argsz = 24, .addr = x->dma_base, .size = 4096}), 0, 4, 8, 16, 23);
    T("get-info", VFU_CMD_DEVICE_GET_INFO, ((struct vfu_device_info){.argsz = 16}), 0, 4, 8, 12, 15);
    T("region-info", VFU_CMD_DEVICE_GET_REGION_INFO,
      ((struct vfu_region_info){.argsz = 32, .index = VFU_REGION_CONFIG}), 0, 4, 8, 12, 16, 24, 31);
    T("io-fds", VFU_CMD_DEVICE_GET_REGION_IO_FDS, ((struct vfu_region_io_fds){.argsz = 16}), 0, 4,
      8, 12, 15);
    T("irq-info", VFU_CMD_DEVICE_GET_IRQ_INFO, ((struct vfu_irq_info){.argsz = 16, .index = 1}), 0,
      4, 8, 12, 15);
    T("set-irqs", VFU_CMD_DEVICE_SET_IRQS,
      ((struct vfu_irq_set){.argsz = 20, .flags = VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER,
                            .index = 1}),
      0, 4, 8, 12, 16, 19);
    T("region-read", VFU_CMD_REGION_READ,
      ((struct vfu_region_access){.offset = 0, .region = VFU_REGION_CONFIG, .count = 4}), 0, 8, 12,
      15);
    T("region-write", VFU_CMD_REGION_WRITE,
      ((struct vfu_region_access){.offset = 0x40, .region = VFU_REGION_CONFIG, .count = 0}), 0, 8,
      12, 15);
    T("write-multi", VFU_CMD_REGION_WRITE_MULTI, ((struct vfu_write_multi){.wr_cnt = 1}), 0, 4, 7);
    T("feature", VFU_CMD_DEVICE_FEATURE,
      ((struct vfu_feature){.argsz = 16, .flags = VFU_FEATURE_GET | CF_FEAT_MIGRATION}), 0, 4, 7);
    T("mig-data-read", VFU_CMD_MIG_DATA_READ, ((struct vfu_mig_data){.argsz = 24, .size = 16}), 0,
      4, 7);
    T("mig-data-write", VFU_CMD_MIG_DATA_WRITE, ((struct vfu_mig_data){.argsz = 8, .size = 0}), 0,
      4, 7);
#undef T
    for (unsigned i = 0; i < n; i++) {
        for (unsigned c = 0; c < t[i].ncuts; c++) {
            snprintf(name, sizeof(name), "truncated/%s-%zu-of-%zu", t[i].cmd, t[i].cuts[c],
                     t[i].size);
            /* VERSION first needs its own connection. */
            if (t[i].id == VFU_CMD_VERSION) {
                cf_conn_close(&x->conn);
                if (cf_conn_open(&x->conn, x->opts->socket, x->timeout_ms) != 0)
                    continue;
            }
            if (t[i].id == VFU_CMD_VERSION) {
                struct cf_res res;
                cf_call(x, t[i].id, t[i].tmpl, t[i].cuts[c], NULL, 0, &res);
                cf_expect_refused(x, name, &res, OVERREAD);
                cf_res_free(&res);
                cf_conn_close(&x->conn); /* not negotiated: a new session for the rest */
                cf_alive(x, name);
                continue;
            }
            one(x, name, t[i].id, t[i].tmpl, t[i].cuts[c], NULL, 0, OVERREAD);
        }
    }
}

/* Feature data cut short (the MIG_DEVICE_STATE and DMA_LOGGING handlers of
 * libvfio-user read past such messages). */
static void feature_truncations(struct cf_ctx *x)
{
    struct {
        const char *name;
        uint32_t flags;
        size_t full;
        size_t cuts[6];
        unsigned ncuts;
        bool need;
    } f[] = {
        {"mig-state-set", VFU_FEATURE_SET | CF_FEAT_MIG_STATE, 8, {0, 4, 7}, 3, x->dev.feat_state},
        {"logging-start", VFU_FEATURE_SET | CF_FEAT_LOG_START, 32, {0, 8, 12, 15, 16 + 8, 16 + 15},
         6, x->dev.feat_log_start},
        {"logging-report", VFU_FEATURE_GET | CF_FEAT_LOG_REPORT, 24, {0, 8, 16, 23}, 4,
         x->dev.feat_log_report},
    };
    uint8_t data[32] = {0};
    char name[96];

    for (size_t i = 0; i < AM_ARRAY_SIZE(f); i++) {
        if (!f[i].need)
            continue;
        memset(data, 0, sizeof(data));
        if (i == 0)
            am_st32(data, CF_ST_STOP);
        if (i == 1) {
            am_st64(data, 4096);
            am_st32(data + 8, 1);
            am_st64(data + 16, x->dma_base);
            am_st64(data + 24, 1u << 20);
        }
        if (i == 2) {
            am_st64(data, x->dma_base);
            am_st64(data + 8, 1u << 20);
            am_st64(data + 16, 4096);
        }
        for (unsigned c = 0; c < f[i].ncuts; c++) {
            struct cf_res res;
            snprintf(name, sizeof(name), "truncated/%s-%zu-of-%zu", f[i].name, f[i].cuts[c],
                     f[i].full);
            cf_feature(x, f[i].flags, 4096, data, f[i].cuts[c], &res);
            cf_expect_refused(x, name, &res, OVERREAD);
            cf_res_free(&res);
            cf_alive(x, name);
        }
    }
    /* Variable parts that promise more than they carry. */
    {
        uint8_t b[sizeof(struct vfu_region_access) + 3];
        struct vfu_region_access a = {.offset = 0x40, .region = VFU_REGION_CONFIG, .count = 4};
        for (unsigned k = 0; k < 4; k++) {
            memcpy(b, &a, sizeof(a));
            memset(b + sizeof(a), 0, 3);
            snprintf(name, sizeof(name), "truncated/region-write-data-%u-of-4", k);
            one(x, name, VFU_CMD_REGION_WRITE, b, sizeof(a) + k, NULL, 0, OVERREAD);
        }
    }
    {
        uint8_t b[sizeof(struct vfu_write_multi) + sizeof(struct vfu_write_one)] = {0};
        struct vfu_write_multi h = {.wr_cnt = 1};
        struct vfu_write_one w = {.offset = 0x40, .region = VFU_REGION_CONFIG, .count = 4};
        static const size_t cuts[] = {0, 8, 12, 16, 23};
        memcpy(b, &h, sizeof(h));
        memcpy(b + sizeof(h), &w, sizeof(w));
        for (size_t k = 0; k < AM_ARRAY_SIZE(cuts); k++) {
            snprintf(name, sizeof(name), "truncated/write-multi-entry-%zu-of-24", cuts[k]);
            one(x, name, VFU_CMD_REGION_WRITE_MULTI, b, sizeof(h) + cuts[k], NULL, 0, OVERREAD);
        }
    }
    {
        uint8_t b[sizeof(struct vfu_irq_set) + 4] = {0};
        struct vfu_irq_set s = {.argsz = sizeof(b),
                                .flags = VFU_IRQ_SET_DATA_BOOL | VFU_IRQ_SET_ACTION_TRIGGER,
                                .index = 1, .start = 0, .count = 4};
        memcpy(b, &s, sizeof(s));
        for (unsigned k = 0; k < 4; k++) {
            snprintf(name, sizeof(name), "truncated/set-irqs-bool-%u-of-4", k);
            one(x, name, VFU_CMD_DEVICE_SET_IRQS, b, sizeof(s) + k, NULL, 0, OVERREAD);
        }
    }
    {
        uint8_t b[sizeof(struct vfu_mig_data) + 8] = {0};
        struct vfu_mig_data d = {.argsz = sizeof(b), .size = 8};
        memcpy(b, &d, sizeof(d));
        for (unsigned k = 0; k < 8; k += 4) {
            snprintf(name, sizeof(name), "truncated/mig-data-write-%u-of-8", k);
            one(x, name, VFU_CMD_MIG_DATA_WRITE, b, sizeof(d) + k, NULL, 0, OVERREAD);
        }
    }
}

static void huge_counts(struct cf_ctx *x)
{
    const char *rule = "a count far beyond what the message carries or the limits allow";
    {
        struct vfu_region_access a = {.offset = 0, .region = VFU_REGION_CONFIG, .count = UINT32_MAX};
        one(x, "huge/region-read-count", VFU_CMD_REGION_READ, &a, sizeof(a), NULL, 0, rule);
        uint8_t b[sizeof(a) + 4] = {0};
        memcpy(b, &a, sizeof(a));
        one(x, "huge/region-write-count", VFU_CMD_REGION_WRITE, b, sizeof(b), NULL, 0, rule);
    }
    {
        uint8_t b[sizeof(struct vfu_write_multi) + sizeof(struct vfu_write_one)] = {0};
        struct vfu_write_one w = {.offset = 0x40, .region = VFU_REGION_CONFIG, .count = 4};
        uint64_t counts[] = {UINT64_MAX, 1ull << 63, UINT32_MAX, 2};
        const char *names[] = {"huge/write-multi-2^64-1", "huge/write-multi-2^63",
                               "huge/write-multi-2^32-1", "huge/write-multi-2-for-1"};
        memcpy(b + sizeof(struct vfu_write_multi), &w, sizeof(w));
        for (unsigned i = 0; i < 4; i++) {
            am_st64(b, counts[i]);
            one(x, names[i], VFU_CMD_REGION_WRITE_MULTI, b, sizeof(b), NULL, 0, rule);
        }
    }
    {
        uint8_t b[sizeof(struct vfu_irq_set) + 4] = {0};
        struct vfu_irq_set s = {.argsz = sizeof(b),
                                .flags = VFU_IRQ_SET_DATA_BOOL | VFU_IRQ_SET_ACTION_TRIGGER,
                                .index = 1, .start = 0, .count = UINT32_MAX};
        memcpy(b, &s, sizeof(s));
        one(x, "huge/set-irqs-bool-count", VFU_CMD_DEVICE_SET_IRQS, b, sizeof(b), NULL, 0, rule);
        s.flags = VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_TRIGGER;
        s.argsz = sizeof(s);
        one(x, "huge/set-irqs-eventfd-count", VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, rule);
        s.start = UINT32_MAX;
        s.count = 1;
        one(x, "huge/set-irqs-start", VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, rule);
    }
    {
        struct vfu_mig_data d = {.argsz = UINT32_MAX, .size = UINT32_MAX};
        one(x, "huge/mig-data-read-size", VFU_CMD_MIG_DATA_READ, &d, sizeof(d), NULL, 0, rule);
        uint8_t b[sizeof(d) + 8] = {0};
        memcpy(b, &d, sizeof(d));
        one(x, "huge/mig-data-write-size", VFU_CMD_MIG_DATA_WRITE, b, sizeof(b), NULL, 0, rule);
    }
    if (x->dev.feat_log_start) {
        uint8_t b[16 + 16] = {0};
        struct cf_res res;
        am_st64(b, 4096);
        am_st32(b + 8, 0x10000000u);
        am_st64(b + 16, x->dma_base);
        am_st64(b + 24, 4096);
        cf_feature(x, VFU_FEATURE_SET | CF_FEAT_LOG_START, UINT32_MAX, b, sizeof(b), &res);
        cf_expect_refused(x, "huge/logging-num-ranges", &res, rule);
        cf_res_free(&res);
        cf_alive(x, "huge/logging-num-ranges");
    }
    if (x->dev.feat_log_report) {
        uint8_t b[24] = {0};
        struct cf_res res;
        am_st64(b, 0);
        am_st64(b + 8, 1ull << 63);
        am_st64(b + 16, 4096);
        cf_feature(x, VFU_FEATURE_GET | CF_FEAT_LOG_REPORT, UINT32_MAX, b, sizeof(b), &res);
        cf_expect_refused(x, "huge/logging-report-length", &res, rule);
        cf_res_free(&res);
        cf_alive(x, "huge/logging-report-length");
    }
    {
        int fd = cf_memfd(x, 4096);
        struct vfu_dma_map m = {.argsz = 32, .flags = 3, .addr = x->dma_base, .size = 1ull << 62};
        if (fd >= 0) {
            one(x, "huge/dma-map-size", VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1, rule);
            m.size = 4096;
            m.offset = 1ull << 62;
            one(x, "huge/dma-map-offset", VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1, rule);
            close(fd);
        }
    }
    {
        /* JSON nested far deeper than any parser should recurse. */
        size_t depth = 20000;
        char *j = malloc(4 + 2 * depth + 1);
        if (j) {
            memset(j, 0, 4);
            memset(j + 4, '[', depth);
            memset(j + 4 + depth, ']', depth);
            j[4 + 2 * depth] = 0;
            cf_conn_close(&x->conn);
            if (cf_conn_open(&x->conn, x->opts->socket, x->timeout_ms) == 0) {
                struct cf_res res;
                cf_call(x, VFU_CMD_VERSION, j, 4 + 2 * depth + 1, NULL, 0, &res);
                cf_expect_answer(x, "huge/version-json-depth", &res,
                                 "20000 nested arrays: answered, not a stack overflow");
                cf_res_free(&res);
                cf_conn_close(&x->conn);
                cf_alive(x, "huge/version-json-depth");
            }
            free(j);
        }
    }
}

static void bad_fds(struct cf_ctx *x)
{
    struct vfu_dma_map m = {.argsz = 32, .flags = 3, .addr = x->dma_base, .size = 4096};
    int fd;

    fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        one(x, "fd/dma-map-dev-null", VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1,
            "an fd that cannot be mmap'd (/dev/null)");
        close(fd);
    }
    fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        one(x, "fd/dma-map-directory", VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1, "a directory fd");
        close(fd);
    }
    {
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0) {
            one(x, "fd/dma-map-socket", VFU_CMD_DMA_MAP, &m, sizeof(m), &sp[0], 1, "a socket fd");
            close(sp[0]);
            close(sp[1]);
        }
    }
    {
        int rw = cf_memfd(x, 4096);
        char path[64];
        if (rw >= 0) {
            snprintf(path, sizeof(path), "/proc/self/fd/%d", rw);
            fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                one(x, "fd/dma-map-read-only-fd-writable", VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1,
                    "a read-only fd mapped for device writes (mmap MAP_SHARED|PROT_WRITE: EACCES)");
                close(fd);
            }
            close(rw);
        }
    }
    {
        /* A pipe read end as an interrupt "eventfd": triggering it must not
         * hurt the server. */
        int p[2];
        if (cf_pipe(p) == 0) {
            struct vfu_irq_set s = {.argsz = 20,
                                    .flags = VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_TRIGGER,
                                    .index = 1, .start = 0, .count = 1};
            answer_one(x, "fd/irq-pipe-read-end", VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), &p[0], 1,
                       "a pipe's read end where an eventfd belongs");
            s.flags = VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER;
            answer_one(x, "fd/irq-pipe-trigger", VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0,
                       "triggering it");
            s.count = 0;
            answer_one(x, "fd/irq-pipe-disable", VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0,
                       "and disabling it");
            close(p[0]);
            close(p[1]);
        }
    }
    {
        int efd[8], made = 0;
        struct vfu_irq_set s = {.argsz = 20,
                                .flags = VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_TRIGGER,
                                .index = 1, .start = 0, .count = 1};
        for (; made < 8; made++)
            if ((efd[made] = eventfd(0, EFD_CLOEXEC)) < 0)
                break;
        one(x, "fd/irq-8-fds-for-1", VFU_CMD_DEVICE_SET_IRQS, &s, sizeof(s), efd, (size_t)made,
            "more eventfds than count");
        for (int i = 0; i < made; i++)
            close(efd[i]);
    }
}

static void broken_framing(struct cf_ctx *x)
{
    uint8_t junk[64];
    struct vfu_hdr h = {.msg_id = 1, .cmd = VFU_CMD_DEVICE_GET_INFO, .size = 64};
    uint64_t seed = 0x5eed;

    /* A message that stops in the middle, then the client is gone. */
    cf_ensure(x);
    memcpy(junk, &h, sizeof(h));
    memset(junk + sizeof(h), 0, sizeof(junk) - sizeof(h));
    cf_send_raw(&x->conn, junk, 20, NULL, 0);
    cf_conn_close(&x->conn);
    cf_check(x, "framing/partial-then-close", cf_alive(x, "framing/partial-then-close-alive")
                                                  ? CF_PASS
                                                  : CF_FAIL,
             "a client that dies in the middle of a message costs only its session");
    /* Random bytes. */
    for (unsigned k = 0; k < 4; k++) {
        char name[64];
        struct cf_res res;
        for (size_t i = 0; i < sizeof(junk); i++)
            junk[i] = (uint8_t)cf_splitmix(&seed);
        snprintf(name, sizeof(name), "framing/random-bytes-%u", k);
        cf_ensure(x);
        cf_send_raw(&x->conn, junk, sizeof(junk), NULL, 0);
        /* Whatever comes back (or nothing), the session is over for us. */
        bool closed = cf_conn_closed_by_peer(&x->conn, 300);
        cf_conn_close(&x->conn);
        (void)res;
        cf_check(x, name, cf_alive(x, name) ? CF_PASS : CF_FAIL,
                 "64 random bytes: the server %s and still serves", closed ? "closed" : "waited");
    }
    /* 1000 requests pipelined before any reply is read. */
    {
        struct vfu_device_info di = {.argsz = sizeof(di)};
        size_t one_len = sizeof(h) + sizeof(di), nmsg = 1000;
        uint8_t *buf = malloc(one_len * nmsg);
        bool ok = buf != NULL;
        cf_session(x);
        for (size_t i = 0; ok && i < nmsg; i++) {
            struct vfu_hdr hh = {.msg_id = (uint16_t)i, .cmd = VFU_CMD_DEVICE_GET_INFO,
                                 .size = (uint32_t)one_len};
            memcpy(buf + i * one_len, &hh, sizeof(hh));
            memcpy(buf + i * one_len + sizeof(hh), &di, sizeof(di));
        }
        ok = ok && cf_send_raw(&x->conn, buf, one_len * nmsg, NULL, 0) == 0;
        for (size_t i = 0; ok && i < nmsg; i++) {
            struct cf_msg m;
            ok = cf_recv(&x->conn, &m, x->timeout_ms) == 0 && m.hdr.msg_id == (uint16_t)i;
            cf_msg_free(&m);
        }
        free(buf);
        cf_check(x, "framing/pipeline-1000", ok ? CF_PASS : CF_FAIL,
                 "1000 pipelined commands are answered, in order");
        cf_session(x);
    }
}

void cf_group_hostile(struct cf_ctx *x)
{
    truncations(x);
    feature_truncations(x);
    huge_counts(x);
    bad_fds(x);
    broken_framing(x);
    cf_check(x, "alive-at-end", cf_alive(x, "alive-at-end") ? CF_PASS : CF_FAIL,
             "the server survived the hostile group%s",
             x->srv.cmd ? " (process alive, no sanitizer report in its log)" : "");
}
