/* conform: private interfaces between the wire layer, the report, the
 * server supervisor and the check groups. */
#ifndef ACCMIG_CONFORM_INT_H
#define ACCMIG_CONFORM_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "conform/conform.h"
#include "vfu/vfu_msg.h"

#define CF_MAX_FDS 32u         /* descriptors we take in one reply */
#define CF_MAX_REGIONS 16u     /* regions we look at (more are counted, not probed) */
#define CF_MAX_IRQS 16u
#define CF_OUR_MAX_FDS 8u      /* what we propose as max_msg_fds */
#define CF_OUR_MAX_XFER (1u << 20)
#define CF_MAX_REPLY (80u << 20) /* larger replies are a framing error */

/* ---- wire (cf_wire.c) ---- */

struct cf_conn {
    int fd; /* -1: not connected */
    uint16_t next_id;
    unsigned timeout_ms;
};

/* One received message. fds are ours until cf_msg_free. */
struct cf_msg {
    struct vfu_hdr hdr;
    uint8_t *payload;
    size_t len;
    int fds[CF_MAX_FDS];
    size_t nfds;
    bool fds_truncated;
};

int cf_conn_open(struct cf_conn *c, const char *path, unsigned timeout_ms);
void cf_conn_close(struct cf_conn *c);
/* Sends exactly buf (a whole message or any bytes at all) with fds. */
int cf_send_raw(struct cf_conn *c, const void *buf, size_t len, const int *fds, size_t nfds);
/* Builds a command header and sends header + payload; *id gets its id. */
int cf_send_cmd(struct cf_conn *c, uint16_t cmd, uint32_t flags, const void *payload, size_t len,
                const int *fds, size_t nfds, uint16_t *id);
/* Receives one message within timeout_ms. 0, -ETIMEDOUT, -ECONNRESET (the
 * peer closed, before or inside a message), -EPROTO (a size below 16 or
 * above CF_MAX_REPLY), -ENOMEM. */
int cf_recv(struct cf_conn *c, struct cf_msg *m, unsigned timeout_ms);
void cf_msg_free(struct cf_msg *m);
/* Whether the peer has closed (POLLHUP/EOF pending) within timeout_ms. */
bool cf_conn_closed_by_peer(struct cf_conn *c, unsigned timeout_ms);

/* ---- the outcome of one call ---- */

enum cf_out {
    CF_OK,      /* a well-formed success reply */
    CF_ERR,     /* a well-formed error reply */
    CF_CLOSED,  /* the server closed the connection */
    CF_TIMEOUT, /* no reply in time */
    CF_BAD,     /* a reply that breaks the framing rules (why says which) */
    CF_NOSEND,  /* we could not send (connection gone before) */
};

struct cf_res {
    enum cf_out out;
    int err; /* errno of an error reply */
    struct cf_msg rep;
    char why[200];
};

/* ---- results (cf_report.c) ---- */

enum cf_verdict { CF_PASS, CF_FAIL, CF_SKIP };

struct cf_result {
    char *group, *name, *reason;
    enum cf_verdict v;
    double secs;
};

struct cf_report {
    struct cf_result *r;
    size_t n, cap;
    unsigned counts[3];
    FILE *out;
    bool json, verbose;
};

void cf_report_add(struct cf_report *rep, const char *group, const char *name, enum cf_verdict v,
                   const char *reason, double secs);
void cf_report_summary(struct cf_report *rep);
int cf_report_junit(const struct cf_report *rep, const char *path);
void cf_report_free(struct cf_report *rep);

/* ---- the server under test (cf_server.c) ---- */

struct cf_server {
    const char *cmd;
    char log_path[256];
    bool own_log;
    pid_t pid; /* 0: not ours / not running */
    off_t log_scanned;
    unsigned starts;
};

int cf_server_start(struct cf_server *s, const char *socket_path, unsigned timeout_ms);
/* 1 running, 0 exited (status in *status), -errno. */
int cf_server_alive(struct cf_server *s, int *status);
/* The first sanitizer line written since the last scan, or NULL (static
 * buffer in s is not used: the line goes to buf). */
bool cf_server_log_scan(struct cf_server *s, char *buf, size_t cap);
int cf_server_stop(struct cf_server *s, int *status);

/* ---- what was discovered about the device ---- */

struct cf_region {
    struct vfu_region_info info;
    bool have;
    bool got_fd;
    uint32_t nr_areas;
    struct vfu_sparse_mmap_area areas[8];
};

struct cf_device {
    bool have_info;
    struct vfu_device_info info;
    struct cf_region regions[CF_MAX_REGIONS];
    uint32_t nregions; /* min(num_regions, CF_MAX_REGIONS) */
    struct vfu_irq_info irqs[CF_MAX_IRQS];
    uint32_t nirqs;
    bool mig;             /* feature MIGRATION answered GET */
    uint32_t mig_flags;
    bool feat_state, feat_log_start, feat_log_stop, feat_log_report, feat_data_size;
    bool feat_precopy_info; /* accmig vendor feature (only probed with --accmig) */
    /* The server's VERSION reply. */
    uint16_t minor;
    uint64_t max_msg_fds, max_xfer, max_dma_maps, pgsizes;
    bool write_multiple, twin;
};

/* ---- the run ---- */

struct cf_ctx {
    const struct conform_opts *opts;
    struct cf_report rep;
    struct cf_server srv;
    struct cf_conn conn;
    struct cf_device dev;
    const char *group;
    unsigned timeout_ms;
    uint64_t t0;         /* start of the current check, ns */
    bool server_gone;    /* cannot reconnect: the rest is skipped */
    unsigned memfd_seq;
    uint64_t dma_base;   /* IOVA where the dma group maps its memory */
    uint8_t *saved;      /* a complete saved device state, for resuming */
    size_t saved_len;
};

/* Records a check of the current group. */
void cf_check(struct cf_ctx *x, const char *name, enum cf_verdict v, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A fresh session: close, connect, VERSION with our capabilities. */
int cf_session(struct cf_ctx *x);
/* Makes sure a session is open (after the server closed it). */
int cf_ensure(struct cf_ctx *x);
/* Sends a command and reads its reply; checks the reply's header against
 * the spec (type, msg_id, command, error replies without payload). */
void cf_call(struct cf_ctx *x, uint16_t cmd, const void *p, size_t len, const int *fds,
             size_t nfds, struct cf_res *res);
/* Sends buf as it is (a whole message, header included, or any bytes) and
 * reads one reply, which must echo buf's msg_id and command. */
void cf_call_raw(struct cf_ctx *x, const void *buf, size_t len, const int *fds, size_t nfds,
                 struct cf_res *res);
void cf_res_free(struct cf_res *res);
/* A pipe whose write end we send: the read end sees POLLHUP once every copy
 * of the write end, the server's included, is closed. */
int cf_pipe(int p[2]);
bool cf_fd_released(int rd, unsigned timeout_ms);
/* "OK", "error EINVAL", "closed", ... for reasons. */
const char *cf_res_str(const struct cf_res *res, char *buf, size_t cap);

/* Expectation helpers: each records one check. */
bool cf_expect_ok(struct cf_ctx *x, const char *name, const struct cf_res *res, const char *rule);
/* A malformed or forbidden request: an error reply, or (allowed by the
 * spec) closing the connection. Success, silence or a bad reply fail. */
bool cf_expect_refused(struct cf_ctx *x, const char *name, const struct cf_res *res,
                       const char *rule);
/* An error reply with exactly this errno (where the spec names it). */
bool cf_expect_errno(struct cf_ctx *x, const char *name, const struct cf_res *res, int err,
                     const char *rule);
/* Any well-formed answer or a close (robustness only). */
bool cf_expect_answer(struct cf_ctx *x, const char *name, const struct cf_res *res,
                      const char *rule);

/* After a check that may have broken the connection: the server is still
 * there (reconnects; with --server-cmd also checks the process and its
 * log, restarting it if it died). Records a FAIL only when it is not. */
bool cf_alive(struct cf_ctx *x, const char *name);

/* Common requests. */
void cf_feature(struct cf_ctx *x, uint32_t flags, uint32_t argsz, const void *data, size_t len,
                struct cf_res *res);
int cf_mig_get(struct cf_ctx *x, uint32_t *state);
int cf_mig_set(struct cf_ctx *x, uint32_t state, uint32_t *reached, struct cf_res *res);
int cf_reset(struct cf_ctx *x);
int cf_memfd(struct cf_ctx *x, size_t size);
int cf_dma_map(struct cf_ctx *x, uint64_t iova, uint64_t size, int fd, uint64_t off,
               uint32_t flags, struct cf_res *res);
int cf_dma_unmap(struct cf_ctx *x, uint64_t iova, uint64_t size, uint32_t flags,
                 struct cf_res *res);
int cf_discover(struct cf_ctx *x);
uint64_t cf_splitmix(uint64_t *state);

/* Groups. */
void cf_group_protocol(struct cf_ctx *x);
void cf_group_dma(struct cf_ctx *x);
void cf_group_migration(struct cf_ctx *x);
void cf_group_logging(struct cf_ctx *x);
void cf_group_hostile(struct cf_ctx *x);
void cf_group_stress(struct cf_ctx *x);

/* Feature numbers (vfio.h VFIO_DEVICE_FEATURE_*). */
#define CF_FEAT_MIGRATION 1u
#define CF_FEAT_MIG_STATE 2u
#define CF_FEAT_LOG_START 6u
#define CF_FEAT_LOG_STOP 7u
#define CF_FEAT_LOG_REPORT 8u
#define CF_FEAT_MIG_DATA_SIZE 9u
#define CF_FEAT_ACCMIG_PRECOPY_INFO 0x8001u

#endif
