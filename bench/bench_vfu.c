/* accmig bench vfu: the cost of the vfio-user path against a bare UNIX
 * socket ping-pong of the same sizes, in the same run.
 *
 * Cases (client thread -> in-process server on its own epoll thread):
 * - doorbell: REGION_WRITE of 8 bytes to the VF's SQ doorbell (a value the
 *   device validates and drops), 40-byte request, 32-byte reply;
 * - 4k: REGION_READ of the VF's 4 KiB config space, 32-byte request,
 *   4128-byte reply (a 4 KiB transfer round trip).
 * The baseline is a socketpair with an echo thread that reads the request's
 * byte count and writes the reply's. Each case alternates `rounds` vfu and
 * bare measurements; the best (least disturbed) of each is reported.
 * With --json, one JSON object per case on its own line:
 *   {"bench":"vfu","case":"doorbell","req_bytes":40,"rep_bytes":32,
 *    "iterations":..,"vfu_us":..,"bare_us":..,"ratio":..}
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "common/common.h"
#include "qm/qm_hw.h"
#include "vfu/client.h"
#include "vfu/vfu.h"

/* Until bench.h declares it (bench/ owner). */
int bench_vfu(int argc, char **argv);

#define BV_MAX_ITER 10000000ull

struct bv_opts {
    uint64_t iterations;
    unsigned rounds;
    int json;
};

struct bv_case {
    const char *name;
    size_t req_bytes, rep_bytes; /* on the wire, headers included */
};

static const struct bv_case bv_cases[] = {
    {"doorbell", sizeof(struct vfu_hdr) + sizeof(struct vfu_region_access) + 8,
     sizeof(struct vfu_hdr) + sizeof(struct vfu_region_access)},
    {"4k", sizeof(struct vfu_hdr) + sizeof(struct vfu_region_access),
     sizeof(struct vfu_hdr) + sizeof(struct vfu_region_access) + 4096},
};

static void bv_usage(FILE *f)
{
    fprintf(f, "usage: accmig bench vfu [--iterations N] [--rounds N] [--json]\n"
               "  vfio-user round trips (8-byte doorbell write, 4 KiB region read) against a\n"
               "  bare UNIX socket ping-pong of the same sizes in the same run.\n"
               "  --iterations N   round trips per measurement (default 20000)\n"
               "  --rounds N       vfu/bare alternations, best of each reported (default 3)\n"
               "  --json           one JSON object per case\n");
}

static int bv_parse(int argc, char **argv, struct bv_opts *o)
{
    enum { O_ITER = 1, O_ROUNDS, O_JSON, O_HELP };
    static const struct option lo[] = {
        {"iterations", required_argument, NULL, O_ITER},
        {"rounds", required_argument, NULL, O_ROUNDS},
        {"json", no_argument, NULL, O_JSON},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int c;

    o->iterations = 20000;
    o->rounds = 3;
    o->json = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case O_ITER:
            if (am_parse_u64(optarg, BV_MAX_ITER, &v) || v == 0)
                goto bad;
            o->iterations = v;
            break;
        case O_ROUNDS:
            if (am_parse_u64(optarg, 100, &v) || v == 0)
                goto bad;
            o->rounds = (unsigned)v;
            break;
        case O_JSON:
            o->json = 1;
            break;
        case O_HELP:
            bv_usage(stdout);
            return 1;
        default:
            bv_usage(stderr);
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "accmig bench vfu: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    return 0;
bad:
    fprintf(stderr, "accmig bench vfu: bad value '%s' for %s\n", optarg, argv[optind - 1]);
    return -EINVAL;
}

/* ---- the vfio-user side ---- */

struct bv_server {
    char dir[64];
    struct vfu_server *srv;
    pthread_t thread;
};

static void *bv_server_main(void *arg)
{
    vfu_server_run(arg);
    return NULL;
}

static int bv_server_start(struct bv_server *s)
{
    struct vfu_server_config cfg = {0};
    int ret;

    snprintf(s->dir, sizeof(s->dir), "/tmp/accmig-bench-vfu-XXXXXX");
    if (!mkdtemp(s->dir))
        return -errno;
    cfg.dir = s->dir;
    vfu_device_config_default(&cfg.dev);
    cfg.dev.num_vfs = 1;
    cfg.dev.workers = 1;
    ret = vfu_server_create(&cfg, &s->srv);
    if (ret) {
        rmdir(s->dir);
        return ret;
    }
    ret = -pthread_create(&s->thread, NULL, bv_server_main, s->srv);
    if (ret) {
        vfu_server_destroy(s->srv);
        rmdir(s->dir);
    }
    return ret;
}

static void bv_server_stop(struct bv_server *s)
{
    vfu_server_stop(s->srv);
    pthread_join(s->thread, NULL);
    vfu_server_destroy(s->srv);
    rmdir(s->dir);
}

/* n round trips of case i over vfio-user; nanoseconds per round trip. */
static int bv_vfu_run(struct vfu_client *c, unsigned i, uint64_t n, double *ns)
{
    /* SQ doorbell of queue 0 with an index beyond the depth: checked and
     * dropped by the device, so the round trip is the whole cost. */
    uint64_t db = qm_db_value(0, QM_DB_CMD_SQ, (uint16_t)QM_SQ_DEPTH, 0);
    uint8_t buf[4096];
    uint64_t t0 = am_now_ns();

    for (uint64_t k = 0; k < n; k++) {
        int ret = i == 0 ? vfu_client_region_write(c, VFU_REGION_BAR2, QM_DB_SQCQ, &db, sizeof(db))
                         : vfu_client_region_read(c, VFU_REGION_CONFIG, 0, buf, sizeof(buf));
        if (ret)
            return ret;
    }
    *ns = (double)(am_now_ns() - t0) / (double)n;
    return 0;
}

/* ---- the bare baseline ---- */

struct bv_echo {
    int fd;
    size_t req, rep;
};

static int bv_full_io(int fd, void *buf, size_t len, bool write_it)
{
    for (size_t off = 0; off < len;) {
        ssize_t n = write_it ? write(fd, (uint8_t *)buf + off, len - off)
                             : read(fd, (uint8_t *)buf + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n == 0 ? -ECONNRESET : -errno;
        off += (size_t)n;
    }
    return 0;
}

static void *bv_echo_main(void *arg)
{
    struct bv_echo *e = arg;
    uint8_t buf[8192] = {0};

    while (bv_full_io(e->fd, buf, e->req, false) == 0)
        if (bv_full_io(e->fd, buf, e->rep, true))
            break;
    return NULL;
}

static int bv_bare_run(const struct bv_case *bc, uint64_t n, double *ns)
{
    struct bv_echo e = {.req = bc->req_bytes, .rep = bc->rep_bytes};
    uint8_t buf[8192] = {0};
    pthread_t t;
    int sv[2], ret = 0;
    uint64_t t0;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
        return -errno;
    e.fd = sv[1];
    ret = -pthread_create(&t, NULL, bv_echo_main, &e);
    if (ret) {
        close(sv[0]);
        close(sv[1]);
        return ret;
    }
    t0 = am_now_ns();
    for (uint64_t k = 0; k < n && !ret; k++) {
        ret = bv_full_io(sv[0], buf, bc->req_bytes, true);
        if (!ret)
            ret = bv_full_io(sv[0], buf, bc->rep_bytes, false);
    }
    *ns = (double)(am_now_ns() - t0) / (double)n;
    shutdown(sv[0], SHUT_RDWR);
    pthread_join(t, NULL);
    close(sv[0]);
    close(sv[1]);
    return ret;
}

int bench_vfu(int argc, char **argv)
{
    struct bv_opts o;
    struct bv_server s;
    struct vfu_client *c;
    int ret = bv_parse(argc, argv, &o);

    if (ret)
        return ret > 0 ? 0 : 2;
    ret = bv_server_start(&s);
    if (ret) {
        fprintf(stderr, "accmig bench vfu: cannot start the server: %s\n", strerror(-ret));
        return 2;
    }
    ret = vfu_client_connect(vfu_server_socket_path(s.srv, 0), NULL, &c);
    if (ret) {
        fprintf(stderr, "accmig bench vfu: cannot connect: %s\n", strerror(-ret));
        bv_server_stop(&s);
        return 2;
    }
    if (!o.json)
        printf("vfio-user round trips vs a bare UNIX socket ping-pong (best of %u x %llu)\n",
               o.rounds, (unsigned long long)o.iterations);
    for (unsigned i = 0; i < AM_ARRAY_SIZE(bv_cases) && !ret; i++) {
        const struct bv_case *bc = &bv_cases[i];
        double best_vfu = 0, best_bare = 0;

        for (unsigned r = 0; r < o.rounds && !ret; r++) {
            double v, b;
            ret = bv_vfu_run(c, i, o.iterations, &v);
            if (!ret)
                ret = bv_bare_run(bc, o.iterations, &b);
            if (!ret) {
                best_vfu = r == 0 ? v : AM_MIN(best_vfu, v);
                best_bare = r == 0 ? b : AM_MIN(best_bare, b);
            }
        }
        if (ret)
            break;
        if (o.json)
            printf("{\"bench\":\"vfu\",\"case\":\"%s\",\"req_bytes\":%zu,\"rep_bytes\":%zu,"
                   "\"iterations\":%llu,\"rounds\":%u,\"vfu_us\":%.3f,\"bare_us\":%.3f,"
                   "\"ratio\":%.2f}\n",
                   bc->name, bc->req_bytes, bc->rep_bytes, (unsigned long long)o.iterations,
                   o.rounds, best_vfu / 1000.0, best_bare / 1000.0, best_vfu / best_bare);
        else
            printf("  %-8s %5zu B -> %5zu B   vfio-user %8.2f us   bare %8.2f us   ratio %.2f\n",
                   bc->name, bc->req_bytes, bc->rep_bytes, best_vfu / 1000.0, best_bare / 1000.0,
                   best_vfu / best_bare);
    }
    vfu_client_destroy(c);
    bv_server_stop(&s);
    if (ret) {
        fprintf(stderr, "accmig bench vfu: a round trip failed: %s\n", strerror(-ret));
        return 1;
    }
    return 0;
}
