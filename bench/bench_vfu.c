/* accmig bench vfu: the cost of the vfio-user path against a bare UNIX
 * socket ping-pong of the same sizes, in the same run.
 *
 * Cases (client thread -> in-process server, one connection):
 * - doorbell: REGION_WRITE of 8 bytes to the VF's SQ doorbell (a value the
 *   device validates and drops), 40-byte request, 32-byte reply;
 * - 4k: REGION_READ of the VF's 4 KiB config space, 32-byte request,
 *   4128-byte reply (a 4 KiB transfer round trip).
 * Their baseline is a socketpair with an echo thread that reads the
 * request's byte count and writes the reply's: the same bytes per direction,
 * the same two threads, no protocol.
 * - job4k: one ZIP compression job of 4 KiB (raw deflate, flat buffers)
 *   through the guest driver (guest/guest.h) over a vfio-user client of a
 *   second VF (guest RAM a memfd mapped by DMA_MAP, MSIs on eventfds), timed
 *   from the submit to the completion the driver's interrupt path delivers,
 *   one job at a time. Its baseline is the same driver and job through the
 *   in-process transport (vmm/inproc.h) to a device of the same shape, so
 *   the ratio is what the vfio-user transport adds to a job. req_bytes is
 *   the job's input, rep_bytes the compressed bytes it produced.
 *
 * Method (robust on a small, shared machine): both sides are warmed up, then
 * `rounds` pairs of measurements of `iterations` round trips each run back
 * to back, the order inside a pair alternating (vfu first, then bare first),
 * so a load that drifts during the run hits both sides alike. Each pair
 * gives a ratio; `ratio` is the median pair ratio (min and max beside it),
 * `best_ratio` the best vfu time over the best bare time, `cpu_ratio` the
 * median pair ratio of process CPU time per round trip (both ends of both
 * sides run in this process), which a busy machine disturbs far less.
 * With --json, one JSON object per case on its own line:
 *   {"bench":"vfu","case":"doorbell","req_bytes":40,"rep_bytes":32,
 *    "iterations":..,"rounds":..,"vfu_us":..,"bare_us":..,"ratio":..,
 *    "ratio_min":..,"ratio_max":..,"best_ratio":..,"vfu_cpu_us":..,
 *    "bare_cpu_us":..,"cpu_ratio":..}
 * vfu_us / bare_us (and the _cpu_ ones) are the medians of each side;
 * vfu_us_p50/_p99/_max and bare_us_p50/_p99/_max the spread of the rounds'
 * times per round trip (nearest rank).
 * With --load N, N CPU-bound threads (bench.h) spin from before the warm-up
 * to after the last pair: both sides of every pair run on the same loaded
 * host; their CPU is left out of the _cpu_ figures; every line carries
 * "load_threads".
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "common/common.h"
#include "guest/guest.h"
#include "iommu/iommu.h"
#include "qm/qm_hw.h"
#include "vfu/client.h"
#include "vfu/vfu.h"
#include "vmm/inproc.h"
#include "vmm/vm_ram.h"

#define BV_MAX_ITER 10000000ull
#define BV_MAX_ROUNDS 101u
#define BV_WARMUP 2000u
#define BV_NUM_VFS 2u    /* VF 0 for the round trips, VF 1 for job4k */
#define BV_JOB_VF 1u     /* socket index; PCI function BV_JOB_VF + 1 */
#define BV_JOB_QP 0u
#define BV_JOB_BYTES 4096u
#define BV_JOB_OUT_CAP 8192u
#define BV_JOB_WAIT_MS 1000
#define BV_JOB_DEADLINE_NS 10000000000ull /* a job not done by then is lost */

struct bv_opts {
    uint64_t iterations;
    unsigned rounds;
    int json;
    unsigned load; /* CPU-bound threads beside the run (--load) */
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
    fprintf(f, "usage: accmig bench vfu [--iterations N] [--rounds N] [--load N] [--json]\n"
               "  vfio-user round trips (8-byte doorbell write, 4 KiB region read) against a\n"
               "  bare UNIX socket ping-pong of the same sizes in the same run, and a 4 KiB\n"
               "  ZIP job through the guest driver over vfio-user against the same job over\n"
               "  the in-process transport.\n"
               "  --iterations N   round trips per measurement (default 2000)\n"
               "  --rounds N       vfu/bare pairs, the median pair reported (default 31)\n"
               "  --load N         N CPU-bound threads spin for the whole run, both sides of\n"
               "                   every pair (0..64, default 0)\n"
               "  --json           one JSON object per case\n");
}

static int bv_parse(int argc, char **argv, struct bv_opts *o)
{
    enum { O_ITER = 1, O_ROUNDS, O_JSON, O_LOAD, O_HELP };
    static const struct option lo[] = {
        {"iterations", required_argument, NULL, O_ITER},
        {"rounds", required_argument, NULL, O_ROUNDS},
        {"json", no_argument, NULL, O_JSON},
        {"load", required_argument, NULL, O_LOAD},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int c;

    o->iterations = 2000;
    o->rounds = 31;
    o->json = 0;
    o->load = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case O_ITER:
            if (am_parse_u64(optarg, BV_MAX_ITER, &v) || v == 0)
                goto bad;
            o->iterations = v;
            break;
        case O_ROUNDS:
            if (am_parse_u64(optarg, BV_MAX_ROUNDS, &v) || v == 0)
                goto bad;
            o->rounds = (unsigned)v;
            break;
        case O_JSON:
            o->json = 1;
            break;
        case O_LOAD:
            if (bench_load_parse("vfu", optarg, &o->load))
                return -EINVAL;
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

/* The server: bench_server_create (bench.h) with BV_NUM_VFS VFs and one
 * device worker. */
static int bv_server_start(struct bench_server **s)
{
    struct vfu_device_config dev;

    vfu_device_config_default(&dev);
    dev.num_vfs = BV_NUM_VFS;
    dev.workers = 1;
    return bench_server_create("vfu", &dev, s);
}

/* What one measurement gives: wall-clock and process CPU time per round
 * trip, in nanoseconds. */
struct bv_sample {
    double ns, cpu_ns;
};

/* One side of a pair: n round trips (or jobs) measured into *out; the CPU
 * of `load`'s threads is left out of out->cpu_ns. */
struct bv_side {
    int (*run)(void *ctx, const struct bench_load *load, uint64_t n, struct bv_sample *out);
    void *ctx;
    const struct bench_load *load;
};

/* Round trips of one case over one vfio-user client. */
struct bv_rt {
    struct vfu_client *c;
    unsigned i; /* index into bv_cases */
};

/* n round trips of case i over vfio-user. */
static int bv_vfu_run(void *ctx, const struct bench_load *load, uint64_t n,
                      struct bv_sample *out)
{
    struct vfu_client *c = ((struct bv_rt *)ctx)->c;
    unsigned i = ((struct bv_rt *)ctx)->i;
    /* SQ doorbell of queue 0 with an index beyond the depth: checked and
     * dropped by the device, so the round trip is the whole cost. */
    uint64_t db = qm_db_value(0, QM_DB_CMD_SQ, (uint16_t)QM_SQ_DEPTH, 0);
    uint8_t buf[4096];
    uint64_t c0 = bench_cpu_ns(load), t0 = am_now_ns();

    for (uint64_t k = 0; k < n; k++) {
        int ret = i == 0 ? vfu_client_region_write(c, VFU_REGION_BAR2, QM_DB_SQCQ, &db, sizeof(db))
                         : vfu_client_region_read(c, VFU_REGION_CONFIG, 0, buf, sizeof(buf));
        if (ret)
            return ret;
    }
    out->ns = (double)(am_now_ns() - t0) / (double)n;
    out->cpu_ns = (double)(bench_cpu_ns(load) - c0) / (double)n;
    return 0;
}

/* ---- the bare baseline ---- */

/* A socketpair and an echo thread that answers each request's byte count
 * with the reply's byte count. */
struct bv_bare {
    int sv[2];
    size_t req, rep;
    pthread_t thread;
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
    struct bv_bare *e = arg;
    uint8_t buf[8192] = {0};

    while (bv_full_io(e->sv[1], buf, e->req, false) == 0)
        if (bv_full_io(e->sv[1], buf, e->rep, true))
            break;
    return NULL;
}

static int bv_bare_open(struct bv_bare *b, const struct bv_case *bc)
{
    int ret;

    b->req = bc->req_bytes;
    b->rep = bc->rep_bytes;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b->sv))
        return -errno;
    ret = -pthread_create(&b->thread, NULL, bv_echo_main, b);
    if (ret) {
        close(b->sv[0]);
        close(b->sv[1]);
    }
    return ret;
}

static void bv_bare_close(struct bv_bare *b)
{
    shutdown(b->sv[0], SHUT_RDWR);
    pthread_join(b->thread, NULL);
    close(b->sv[0]);
    close(b->sv[1]);
}

static int bv_bare_run(void *ctx, const struct bench_load *load, uint64_t n,
                       struct bv_sample *out)
{
    struct bv_bare *b = ctx;
    uint8_t buf[8192] = {0};
    uint64_t c0 = bench_cpu_ns(load), t0 = am_now_ns();
    int ret = 0;

    for (uint64_t k = 0; k < n && !ret; k++) {
        ret = bv_full_io(b->sv[0], buf, b->req, true);
        if (!ret)
            ret = bv_full_io(b->sv[0], buf, b->rep, false);
    }
    out->ns = (double)(am_now_ns() - t0) / (double)n;
    out->cpu_ns = (double)(bench_cpu_ns(load) - c0) / (double)n;
    return ret;
}

/* ---- pairs and medians ---- */

struct bv_summary {
    double vfu_ns, bare_ns, ratio, ratio_min, ratio_max, best_ratio;
    double vfu_cpu_ns, bare_cpu_ns, cpu_ratio;
    struct bench_spread vfu, bare; /* ns per round trip, over the rounds */
};

static int bv_measure(const struct bv_opts *o, const struct bv_side *vs, const struct bv_side *bs,
                      struct bv_summary *m)
{
    double vfu[BV_MAX_ROUNDS], bare[BV_MAX_ROUNDS], ratio[BV_MAX_ROUNDS];
    double vfu_cpu[BV_MAX_ROUNDS], bare_cpu[BV_MAX_ROUNDS], cpu_ratio[BV_MAX_ROUNDS];
    double best_vfu = 0, best_bare = 0;
    struct bv_sample v, b;
    unsigned n = o->rounds;
    int ret;

    /* Warm both paths (caches, the server's buffers, the scheduler). */
    ret = vs->run(vs->ctx, vs->load, BV_WARMUP, &v);
    if (!ret)
        ret = bs->run(bs->ctx, bs->load, BV_WARMUP, &b);
    for (unsigned r = 0; r < n && !ret; r++) {
        if (r % 2 == 0) {
            ret = vs->run(vs->ctx, vs->load, o->iterations, &v);
            if (!ret)
                ret = bs->run(bs->ctx, bs->load, o->iterations, &b);
        } else {
            ret = bs->run(bs->ctx, bs->load, o->iterations, &b);
            if (!ret)
                ret = vs->run(vs->ctx, vs->load, o->iterations, &v);
        }
        if (ret)
            break;
        vfu[r] = v.ns;
        bare[r] = b.ns;
        ratio[r] = v.ns / b.ns;
        vfu_cpu[r] = v.cpu_ns;
        bare_cpu[r] = b.cpu_ns;
        cpu_ratio[r] = b.cpu_ns > 0 ? v.cpu_ns / b.cpu_ns : 0.0;
        best_vfu = r == 0 ? v.ns : AM_MIN(best_vfu, v.ns);
        best_bare = r == 0 ? b.ns : AM_MIN(best_bare, b.ns);
    }
    if (ret)
        return ret;
    m->vfu_ns = bench_median(vfu, n); /* sorts vfu[] */
    m->bare_ns = bench_median(bare, n);
    bench_spread(vfu, n, &m->vfu);
    bench_spread(bare, n, &m->bare);
    m->ratio = bench_median(ratio, n); /* sorts ratio[] */
    m->ratio_min = ratio[0];
    m->ratio_max = ratio[n - 1];
    m->best_ratio = best_vfu / best_bare;
    m->vfu_cpu_ns = bench_median(vfu_cpu, n);
    m->bare_cpu_ns = bench_median(bare_cpu, n);
    m->cpu_ratio = bench_median(cpu_ratio, n);
    return 0;
}

/* Case i of bv_cases over client c against its bare ping-pong. */
static int bv_rt_measure(const struct bv_opts *o, const struct bench_load *load,
                         struct vfu_client *c, unsigned i, struct bv_summary *m)
{
    struct bv_rt rt = {c, i};
    struct bv_bare bb;
    struct bv_side vs = {bv_vfu_run, &rt, load}, bs = {bv_bare_run, &bb, load};
    int ret = bv_bare_open(&bb, &bv_cases[i]);

    if (ret)
        return ret;
    ret = bv_measure(o, &vs, &bs, m);
    bv_bare_close(&bb);
    return ret;
}

/* ---- job4k: one ZIP job through the guest driver ---- */

/* A guest: its RAM (driver state at gpa 0, then the input, then the
 * output) and its driver, over whichever transport it was started on. */
struct bv_job {
    struct vm_ram *ram;
    struct guest_vf *vf;
    uint64_t in_gpa, out_gpa;
    uint64_t tag;       /* the tag of the job last submitted */
    uint64_t completed; /* completions the driver delivered */
    uint32_t produced;  /* output bytes of the last completion */
    bool failed;        /* a completion with an error status or a stale tag */
};

static void bv_job_complete(void *opaque, const struct guest_vf_completion *c)
{
    struct bv_job *j = opaque;

    if ((c->status != ZIP_ST_OK && c->status != ZIP_ST_NEGATIVE_COMP) || c->tag != j->tag)
        j->failed = true;
    j->produced = c->produced;
    j->completed++;
}

/* j must be zeroed. The input is text-like bytes, so the job compresses. */
static int bv_job_ram_create(struct bv_job *j)
{
    static const char words[] = "vfio-user carries a 4 KiB compression job to the VF. ";
    uint8_t *in;
    int ret;

    j->in_gpa = guest_vf_state_size(1);
    j->out_gpa = j->in_gpa + BV_JOB_BYTES;
    ret = vm_ram_create(j->out_gpa + BV_JOB_OUT_CAP, &j->ram);
    if (ret)
        return ret;
    in = vm_ram_host(j->ram) + j->in_gpa;
    for (uint32_t k = 0; k < BV_JOB_BYTES; k++)
        in[k] = (uint8_t)words[(k + k / 512) % (sizeof(words) - 1)];
    return 0;
}

/* Probe the VF and start one compression queue, as a guest's driver does. */
static int bv_job_start(struct bv_job *j, const struct vf_io *io)
{
    int ret = guest_vf_init(io, vm_ram_guest(j->ram), 0, j->in_gpa, &j->vf);

    if (ret)
        return ret;
    guest_vf_set_complete_cb(j->vf, bv_job_complete, j);
    return guest_vf_qp_start(j->vf, BV_JOB_QP, ZIP_ALG_COMPRESS);
}

/* Driver down (while the transport is still there); RAM stays. */
static void bv_job_stop(struct bv_job *j)
{
    if (j->vf) {
        guest_vf_uninit(j->vf);
        guest_vf_detach(j->vf);
        j->vf = NULL;
    }
}

/* n jobs, one at a time: submit, then the driver's interrupt path (MSI
 * wait, poll) until the completion is delivered. */
static int bv_job_run(void *ctx, const struct bench_load *load, uint64_t n,
                      struct bv_sample *out)
{
    struct bv_job *j = ctx;
    uint64_t c0 = bench_cpu_ns(load), t0 = am_now_ns();

    for (uint64_t k = 0; k < n; k++) {
        struct guest_zip_req q = {
            .type = ZIP_REQ_DEFLATE,
            .buf_type = ZIP_BUF_FLAT,
            .src = j->in_gpa,
            .dst = j->out_gpa,
            .in_len = BV_JOB_BYTES,
            .dest_avail = BV_JOB_OUT_CAP,
            .window = 0,
            .tag = ++j->tag,
        };
        uint32_t sqe[ZIP_SQE_DWORDS];
        uint64_t want = j->completed + 1, deadline = am_now_ns() + BV_JOB_DEADLINE_NS;
        int ret = guest_zip_sqe_build(sqe, &q);

        if (!ret)
            ret = guest_vf_submit(j->vf, BV_JOB_QP, sqe);
        while (!ret && j->completed < want) {
            int irq = guest_vf_irq_wait(j->vf, BV_JOB_WAIT_MS) == 0;
            int got = guest_vf_poll(j->vf, irq);

            /* The poll also checks the CQ itself, so a late MSI only
             * delays; a busy machine may starve the device's worker a
             * while, hence a generous deadline before calling it lost. */
            ret = got < 0 ? got : am_now_ns() > deadline ? -ETIMEDOUT : 0;
        }
        if (ret)
            return ret;
        if (j->failed)
            return -EIO;
    }
    out->ns = (double)(am_now_ns() - t0) / (double)n;
    out->cpu_ns = (double)(bench_cpu_ns(load) - c0) / (double)n;
    return 0;
}

static void bv_print(const struct bv_opts *o, const struct bv_case *bc, const struct bv_summary *m)
{
    if (o->json)
        printf("{\"bench\":\"vfu\",\"case\":\"%s\",\"req_bytes\":%zu,\"rep_bytes\":%zu,"
               "\"iterations\":%llu,\"rounds\":%u,\"vfu_us\":%.3f,\"bare_us\":%.3f,"
               "\"ratio\":%.2f,\"ratio_min\":%.2f,\"ratio_max\":%.2f,\"best_ratio\":%.2f,"
               "\"vfu_cpu_us\":%.3f,\"bare_cpu_us\":%.3f,\"cpu_ratio\":%.2f,"
               "\"vfu_us_p50\":%.3f,\"vfu_us_p99\":%.3f,\"vfu_us_max\":%.3f,"
               "\"bare_us_p50\":%.3f,\"bare_us_p99\":%.3f,\"bare_us_max\":%.3f,"
               "\"load_threads\":%u}\n",
               bc->name, bc->req_bytes, bc->rep_bytes, (unsigned long long)o->iterations,
               o->rounds, m->vfu_ns / 1000.0, m->bare_ns / 1000.0, m->ratio, m->ratio_min,
               m->ratio_max, m->best_ratio, m->vfu_cpu_ns / 1000.0, m->bare_cpu_ns / 1000.0,
               m->cpu_ratio, m->vfu.p50 / 1000.0, m->vfu.p99 / 1000.0, m->vfu.max / 1000.0,
               m->bare.p50 / 1000.0, m->bare.p99 / 1000.0, m->bare.max / 1000.0, o->load);
    else
        printf("  %-8s %5zu B -> %5zu B   vfio-user %7.2f us   bare %7.2f us   ratio %.2f "
               "(%.2f..%.2f, best %.2f)   CPU ratio %.2f   vfio-user p99 %.2f max %.2f us\n",
               bc->name, bc->req_bytes, bc->rep_bytes, m->vfu_ns / 1000.0, m->bare_ns / 1000.0,
               m->ratio, m->ratio_min, m->ratio_max, m->best_ratio, m->cpu_ratio,
               m->vfu.p99 / 1000.0, m->vfu.max / 1000.0);
    fflush(stdout);
}

/* job4k: a guest on VF BV_JOB_VF of the server against a guest on the
 * same VF of an in-process device of the same shape. Fills *produced with
 * the compressed size of the job. */
static int bv_job_measure(const struct bv_opts *o, const struct bench_load *load,
                          struct bench_server *s, struct bv_summary *m, uint32_t *produced)
{
    struct bv_job jv = {0}, jb = {0};
    struct vmm_inproc_host h = {0};
    struct vfu_client *c = NULL;
    struct bv_side vs = {bv_job_run, &jv, load}, bs = {bv_job_run, &jb, load};
    struct qm_dev_config cfg;
    struct vf_io io;
    int ret = bv_job_ram_create(&jv);

    if (!ret)
        ret = vfu_client_connect(bench_server_socket_path(s, BV_JOB_VF), NULL, &c);
    if (!ret)
        ret = vfu_client_dma_map_fd(c, 0, vm_ram_size(jv.ram), vm_ram_fd(jv.ram), 0,
                                    IOMMU_READ | IOMMU_WRITE);
    if (!ret)
        ret = vfu_client_irqs_enable(c, QM_NUM_VECTORS);
    if (!ret) {
        vfu_client_vf_io(c, &io);
        ret = bv_job_start(&jv, &io);
    }
    if (!ret)
        ret = bv_job_ram_create(&jb);
    if (!ret) {
        qm_dev_config_default(&cfg);
        cfg.num_vfs = BV_NUM_VFS;
        cfg.workers = 1; /* as the server's device */
        ret = vmm_inproc_host_create(&cfg, BV_JOB_VF + 1, vm_ram_guest(jb.ram), &h);
    }
    if (!ret)
        ret = bv_job_start(&jb, vmm_inproc_vf_io(h.vf));
    if (!ret)
        ret = bv_measure(o, &vs, &bs, m);
    *produced = jv.produced;
    bv_job_stop(&jb);
    vmm_inproc_host_destroy(&h);
    vm_ram_destroy(jb.ram);
    bv_job_stop(&jv);
    if (c)
        vfu_client_destroy(c);
    vm_ram_destroy(jv.ram);
    return ret;
}

int bench_vfu(int argc, char **argv)
{
    struct bv_opts o;
    struct bench_server *s;
    struct vfu_client *c;
    struct bench_load *load;
    int ret = bv_parse(argc, argv, &o);

    if (ret)
        return ret > 0 ? 0 : 2;
    if (bench_load_create("vfu", o.load, &load))
        return 2;
    ret = bv_server_start(&s);
    if (ret) {
        fprintf(stderr, "accmig bench vfu: cannot start the server: %s\n", strerror(-ret));
        bench_load_destroy(load);
        return 2;
    }
    ret = vfu_client_connect(bench_server_socket_path(s, 0), NULL, &c);
    if (ret) {
        fprintf(stderr, "accmig bench vfu: cannot connect: %s\n", strerror(-ret));
        bench_server_destroy(s);
        bench_load_destroy(load);
        return 2;
    }
    if (!o.json)
        printf("vfio-user round trips vs a bare UNIX socket ping-pong (median of %u pairs x "
               "%llu, %u load thread(s))\n", o.rounds, (unsigned long long)o.iterations, o.load);
    for (unsigned i = 0; i < AM_ARRAY_SIZE(bv_cases) && !ret; i++) {
        struct bv_summary m;
        ret = bv_rt_measure(&o, load, c, i, &m);
        if (!ret)
            bv_print(&o, &bv_cases[i], &m);
    }
    if (!ret) {
        struct bv_summary m;
        uint32_t produced = 0;

        ret = bv_job_measure(&o, load, s, &m, &produced);
        if (!ret) {
            struct bv_case job = {"job4k", BV_JOB_BYTES, produced};
            bv_print(&o, &job, &m);
        }
    }
    vfu_client_destroy(c);
    bench_server_destroy(s);
    bench_load_destroy(load);
    if (ret) {
        fprintf(stderr, "accmig bench vfu: a round trip or job failed: %s\n", strerror(-ret));
        return 1;
    }
    return 0;
}
