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
 *   through the guest driver (guest/guest.h), timed from the submit to the
 *   completion, one job at a time, on a polled queue (GUEST_QP_MODE_POLL:
 *   the guest reads its CQ, as a UADK queue; job4k, job4k_trapped) and
 *   then on an interrupt-driven one (MSI wait and the driver's interrupt
 *   path; job4k_irq, job4k_irq_trapped), each in
 *   three variants measured interleaved: the in-process transport
 *   (vmm/inproc.h) to a device of the same shape (the baseline), and a
 *   vfio-user client of a VF of the server (guest RAM a memfd mapped by
 *   DMA_MAP, MSIs on eventfds) with its doorbell pages (BAR4, doorbell
 *   isolation) mapped ("job4k": the guest stores its SQ/CQ doorbells, the
 *   device polls) or trapped ("job4k_trapped": every doorbell a
 *   REGION_WRITE, the path before mapping), each on its own VF. Each
 *   vfio-user variant's line compares it with the in-process one. req_bytes
 *   is the job's input, rep_bytes the compressed bytes it produced. The
 *   in-process device has the server's shape, doorbell isolation
 *   included; it hands no pages out, so its poller never sweeps (qm.h).
 *   The trapped client does not vouch for its guest (as QEMU), so its
 *   VF's pages are never handed out or swept either.
 * - idle: the server with those two guests' queues started and nothing to
 *   do, for --idle-ms (2 s): the process's CPU time over that span (the
 *   load threads' left out) as a share of one CPU, idle_server_cpu_pct.
 *   Everything else in the process is blocked then, so that is the server:
 *   its doorbell poller backing off, its client threads in their reads.
 *
 * Method (robust on a small, shared machine): both sides are warmed up, then
 * `rounds` pairs of measurements of `iterations` round trips each run back
 * to back, the order inside a pair alternating (vfu first, then bare first;
 * job4k's three variants rotate, each going first, second and last in
 * turn), so a load that drifts during the run hits every side alike. Each pair
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
 * times per round trip (nearest rank). The job4k lines add "doorbells"
 * ("mapped" or "trapped"), "completion" ("poll" or "irq") and vfu_us_min /
 * bare_us_min (bare = in-process);
 * the idle line is
 *   {"bench":"vfu","case":"idle","idle_ms":..,"idle_server_cpu_pct":..,
 *    "workers":..,"load_threads":..}
 * --workers N (default 1) sets the job workers of both devices, the
 * server's and the in-process one; every line carries "workers".
 * With --load N, N CPU-bound threads (bench.h) spin from before the warm-up
 * to after the last pair: both sides of every pair run on the same loaded
 * host; their CPU is left out of the _cpu_ figures; every line carries
 * "load_threads".
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
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
#define BV_NUM_VFS 3u    /* VF 0 for the round trips, 1 and 2 for job4k */
#define BV_JOB_VF 1u     /* job4k mapped: socket index; PCI function BV_JOB_VF + 1 */
#define BV_JOB_TRAP_VF 2u /* job4k trapped */
#define BV_JOB_QP 0u     /* polled (GUEST_QP_MODE_POLL): job4k, job4k_trapped */
#define BV_JOB_IRQ_QP 1u /* interrupt-driven: job4k_irq, job4k_irq_trapped */
#define BV_MAX_SIDES 3u
/* A polled guest finding its CQ empty: pause-spin this long (about one
 * 4 KiB job), then yield the CPU at every empty poll (the device's worker
 * may need this CPU). The same for every variant. */
#define BV_POLL_SPIN_NS 20000ull
#define BV_IDLE_MS 2000u
#define BV_JOB_BYTES 4096u
#define BV_JOB_OUT_CAP 8192u
#define BV_JOB_WAIT_MS 1000
#define BV_JOB_DEADLINE_NS 10000000000ull /* a job not done by then is lost */

struct bv_opts {
    uint64_t iterations;
    unsigned rounds;
    int json;
    unsigned load; /* CPU-bound threads beside the run (--load) */
    unsigned idle_ms; /* the idle server's measurement (--idle-ms) */
    unsigned workers; /* job workers of both devices (--workers) */
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
    fprintf(f, "usage: accmig bench vfu [--iterations N] [--rounds N] [--load N] [--idle-ms MS]\n"
               "                        [--json]\n"
               "  vfio-user round trips (8-byte doorbell write, 4 KiB region read) against a\n"
               "  bare UNIX socket ping-pong of the same sizes in the same run; a 4 KiB ZIP\n"
               "  job through the guest driver over vfio-user with mapped doorbells and with\n"
               "  trapped ones, against the same job over the in-process transport; the\n"
               "  server's CPU while its queues are started and idle.\n"
               "  --iterations N   round trips per measurement (default 2000)\n"
               "  --rounds N       vfu/bare pairs, the median pair reported (default 31)\n"
               "  --load N         N CPU-bound threads spin for the whole run, both sides of\n"
               "                   every pair (0..64, default 0)\n"
               "  --idle-ms MS     how long the idle server is measured (100..60000,\n"
               "                   default 2000)\n"
               "  --workers N      job worker threads of the server's device and of the\n"
               "                   in-process one (1..8, default 1)\n"
               "  --json           one JSON object per case\n");
}

static int bv_parse(int argc, char **argv, struct bv_opts *o)
{
    enum { O_ITER = 1, O_ROUNDS, O_JSON, O_LOAD, O_IDLE, O_WORKERS, O_HELP };
    static const struct option lo[] = {
        {"iterations", required_argument, NULL, O_ITER},
        {"rounds", required_argument, NULL, O_ROUNDS},
        {"json", no_argument, NULL, O_JSON},
        {"load", required_argument, NULL, O_LOAD},
        {"idle-ms", required_argument, NULL, O_IDLE},
        {"workers", required_argument, NULL, O_WORKERS},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int c, li = 0;

    o->iterations = 2000;
    o->rounds = 31;
    o->json = 0;
    o->load = 0;
    o->idle_ms = BV_IDLE_MS;
    o->workers = 1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, &li)) != -1) {
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
        case O_IDLE:
            if (am_parse_u64(optarg, 60000, &v) || v < 100)
                goto bad;
            o->idle_ms = (unsigned)v;
            break;
        case O_WORKERS:
            if (am_parse_u64(optarg, 8, &v) || v == 0)
                goto bad;
            o->workers = (unsigned)v;
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
    fprintf(stderr, "accmig bench vfu: bad value '%s' for --%s\n", optarg, lo[li].name);
    return -EINVAL;
}

/* ---- the vfio-user side ---- */

/* The server: bench_server_create (bench.h) with BV_NUM_VFS VFs and one
 * device worker. */
static int bv_server_start(unsigned workers, struct bench_server **s)
{
    struct vfu_device_config dev;

    vfu_device_config_default(&dev);
    dev.num_vfs = BV_NUM_VFS;
    dev.workers = workers;
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

/* One side measured against the baseline (side 0) of the same rounds. */
struct bv_summary {
    double vfu_ns, bare_ns, ratio, ratio_min, ratio_max, best_ratio;
    double vfu_cpu_ns, bare_cpu_ns, cpu_ratio;
    struct bench_spread vfu, bare; /* ns per round trip, over the rounds */
};

/* Warms every side up, then o->rounds rounds, each measuring every side
 * once, the order rotating from round to round (with two sides: side 1
 * first in even rounds, side 0 first in odd ones). m[i - 1] compares side i
 * with side 0: per-round ratios, their median, min and max. */
static int bv_measure_sides(const struct bv_opts *o, const struct bv_side *sides, unsigned nsides,
                            struct bv_summary *m)
{
    double t[BV_MAX_SIDES][BV_MAX_ROUNDS] = {{0}}, cpu[BV_MAX_SIDES][BV_MAX_ROUNDS] = {{0}};
    double ratio[BV_MAX_ROUNDS], cpu_ratio[BV_MAX_ROUNDS], best[BV_MAX_SIDES];
    unsigned n = o->rounds;
    struct bv_sample smp;
    int ret = 0;

    /* Warm every path (caches, the server's buffers, the scheduler). */
    for (unsigned i = 0; i < nsides && !ret; i++)
        ret = sides[i].run(sides[i].ctx, sides[i].load, BV_WARMUP, &smp);
    for (unsigned r = 0; r < n && !ret; r++) {
        for (unsigned k = 0; k < nsides && !ret; k++) {
            unsigned i = (r + k + 1) % nsides;

            ret = sides[i].run(sides[i].ctx, sides[i].load, o->iterations, &smp);
            t[i][r] = smp.ns;
            cpu[i][r] = smp.cpu_ns;
        }
    }
    if (ret)
        return ret;
    for (unsigned i = 0; i < nsides; i++) {
        best[i] = t[i][0];
        for (unsigned r = 1; r < n; r++)
            best[i] = AM_MIN(best[i], t[i][r]);
    }
    for (unsigned i = 1; i < nsides; i++) {
        struct bv_summary *s = &m[i - 1];
        double v[BV_MAX_ROUNDS], b[BV_MAX_ROUNDS], vc[BV_MAX_ROUNDS], bc[BV_MAX_ROUNDS];

        for (unsigned r = 0; r < n; r++) {
            v[r] = t[i][r];
            b[r] = t[0][r];
            vc[r] = cpu[i][r];
            bc[r] = cpu[0][r];
            ratio[r] = t[i][r] / t[0][r];
            cpu_ratio[r] = cpu[0][r] > 0 ? cpu[i][r] / cpu[0][r] : 0.0;
        }
        s->vfu_ns = bench_median(v, n); /* sorts v[] */
        s->bare_ns = bench_median(b, n);
        bench_spread(v, n, &s->vfu);
        bench_spread(b, n, &s->bare);
        s->ratio = bench_median(ratio, n); /* sorts ratio[] */
        s->ratio_min = ratio[0];
        s->ratio_max = ratio[n - 1];
        s->best_ratio = best[i] / best[0];
        s->vfu_cpu_ns = bench_median(vc, n);
        s->bare_cpu_ns = bench_median(bc, n);
        s->cpu_ratio = bench_median(cpu_ratio, n);
    }
    return 0;
}

static int bv_measure(const struct bv_opts *o, const struct bv_side *vs, const struct bv_side *bs,
                      struct bv_summary *m)
{
    struct bv_side sides[2] = {*bs, *vs};

    return bv_measure_sides(o, sides, 2, m);
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

    j->in_gpa = guest_vf_state_size(2); /* two queues: polled and irq */
    j->out_gpa = j->in_gpa + BV_JOB_BYTES;
    ret = vm_ram_create(j->out_gpa + BV_JOB_OUT_CAP, &j->ram);
    if (ret)
        return ret;
    in = vm_ram_host(j->ram) + j->in_gpa;
    for (uint32_t k = 0; k < BV_JOB_BYTES; k++)
        in[k] = (uint8_t)words[(k + k / 512) % (sizeof(words) - 1)];
    return 0;
}

/* Probe the VF and start two compression queues, as a guest's driver does:
 * BV_JOB_QP polled, as a user-space queue is (UADK), and BV_JOB_IRQ_QP
 * interrupt-driven, as the kernel driver's are. */
static int bv_job_start(struct bv_job *j, const struct vf_io *io)
{
    int ret = guest_vf_init(io, vm_ram_guest(j->ram), 0, j->in_gpa, &j->vf);

    if (ret)
        return ret;
    guest_vf_set_complete_cb(j->vf, bv_job_complete, j);
    ret = guest_vf_qp_start_mode(j->vf, BV_JOB_QP, ZIP_ALG_COMPRESS, GUEST_QP_MODE_POLL);
    if (!ret)
        ret = guest_vf_qp_start_mode(j->vf, BV_JOB_IRQ_QP, ZIP_ALG_COMPRESS, GUEST_QP_MODE_IRQ);
    return ret;
}

/* One guest's queue in one mode: a side of job4k (polled) or job4k_irq. */
struct bv_jq {
    struct bv_job *j;
    bool poll;
};

static inline void bv_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
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

/* n jobs, one at a time: submit, then until the completion is delivered
 * either the polled queue's CQ read in memory (guest_vf_qp_poll: a short
 * pause-spin, then a yield at every empty look) or the driver's interrupt
 * path (MSI wait, guest_vf_poll). */
static int bv_job_run(void *ctx, const struct bench_load *load, uint64_t n,
                      struct bv_sample *out)
{
    struct bv_job *j = ((struct bv_jq *)ctx)->j;
    bool poll = ((struct bv_jq *)ctx)->poll;
    unsigned qp = poll ? BV_JOB_QP : BV_JOB_IRQ_QP;
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
            ret = guest_vf_submit(j->vf, qp, sqe);
        for (uint64_t spin_end = am_now_ns() + BV_POLL_SPIN_NS; poll && !ret && j->completed < want;) {
            int got = guest_vf_qp_poll(j->vf, qp);

            if (got < 0)
                ret = got;
            else if (got > 0)
                continue;
            else if (am_now_ns() < spin_end)
                bv_cpu_relax();
            else if (am_now_ns() > deadline)
                ret = -ETIMEDOUT;
            else
                sched_yield();
        }
        while (!poll && !ret && j->completed < want) {
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

/* One case's line; doorbells names a job4k variant (NULL for the round
 * trips, whose lines stay as they were). */
static void bv_print(const struct bv_opts *o, const struct bv_case *bc, const struct bv_summary *m,
                     const char *doorbells)
{
    if (o->json) {
        printf("{\"bench\":\"vfu\",\"case\":\"%s\",", bc->name);
        if (doorbells)
            printf("\"doorbells\":\"%s\",\"completion\":\"%s\",", doorbells,
                   strstr(bc->name, "_irq") ? "irq" : "poll");
        printf("\"req_bytes\":%zu,\"rep_bytes\":%zu,"
               "\"iterations\":%llu,\"rounds\":%u,\"vfu_us\":%.3f,\"bare_us\":%.3f,"
               "\"ratio\":%.2f,\"ratio_min\":%.2f,\"ratio_max\":%.2f,\"best_ratio\":%.2f,"
               "\"vfu_cpu_us\":%.3f,\"bare_cpu_us\":%.3f,\"cpu_ratio\":%.2f,"
               "\"vfu_us_p50\":%.3f,\"vfu_us_p99\":%.3f,\"vfu_us_max\":%.3f,"
               "\"bare_us_p50\":%.3f,\"bare_us_p99\":%.3f,\"bare_us_max\":%.3f,",
               bc->req_bytes, bc->rep_bytes, (unsigned long long)o->iterations,
               o->rounds, m->vfu_ns / 1000.0, m->bare_ns / 1000.0, m->ratio, m->ratio_min,
               m->ratio_max, m->best_ratio, m->vfu_cpu_ns / 1000.0, m->bare_cpu_ns / 1000.0,
               m->cpu_ratio, m->vfu.p50 / 1000.0, m->vfu.p99 / 1000.0, m->vfu.max / 1000.0,
               m->bare.p50 / 1000.0, m->bare.p99 / 1000.0, m->bare.max / 1000.0);
        if (doorbells)
            printf("\"vfu_us_min\":%.3f,\"bare_us_min\":%.3f,", m->vfu.min / 1000.0,
                   m->bare.min / 1000.0);
        printf("\"workers\":%u,\"load_threads\":%u}\n", o->workers, o->load);
    } else if (doorbells) {
        printf("  %-17s %5zu B -> %5zu B   vfio-user %7.2f us (%.2f..%.2f)   in-process %7.2f us "
               "(%.2f..%.2f)   ratio %.2f (%.2f..%.2f, best %.2f)   CPU ratio %.2f\n",
               bc->name, bc->req_bytes, bc->rep_bytes, m->vfu_ns / 1000.0, m->vfu.min / 1000.0,
               m->vfu.max / 1000.0, m->bare_ns / 1000.0, m->bare.min / 1000.0,
               m->bare.max / 1000.0, m->ratio, m->ratio_min, m->ratio_max, m->best_ratio,
               m->cpu_ratio);
    } else {
        printf("  %-13s %5zu B -> %5zu B   vfio-user %7.2f us   bare %7.2f us   ratio %.2f "
               "(%.2f..%.2f, best %.2f)   CPU ratio %.2f   vfio-user p99 %.2f max %.2f us\n",
               bc->name, bc->req_bytes, bc->rep_bytes, m->vfu_ns / 1000.0, m->bare_ns / 1000.0,
               m->ratio, m->ratio_min, m->ratio_max, m->best_ratio, m->cpu_ratio,
               m->vfu.p99 / 1000.0, m->vfu.max / 1000.0);
    }
    fflush(stdout);
}

/* A job4k guest over vfio-user on the server's VF vf: RAM by fd, MSIs on
 * eventfds, BAR4 mapped first when map (the guest then stores its
 * doorbells), queue started. The VF must isolate doorbells, and a mapped
 * variant must get its mapping: -ENOTSUP (with a message) otherwise. */
static int bv_job_vfu_start(struct bench_server *s, unsigned vf, bool map, struct bv_job *j,
                            struct vfu_client **c)
{
    /* The guest driver never overwrites a doorbell it does not supersede,
     * so the server lets this client map BAR4 (vfu/client.h). The trapped
     * variant does not ask, as QEMU does not: it is never given the pages'
     * fd, so the device's poller never sweeps them. */
    struct vfu_client_opts co = {.cooperative_doorbells = map};
    struct vf_io io = {0};
    uint32_t iso = 0;
    uint64_t size = 0;
    void *base = NULL;
    int ret = bv_job_ram_create(j);

    if (!ret)
        ret = vfu_client_connect(bench_server_socket_path(s, vf), &co, c);
    if (!ret)
        ret = vfu_client_dma_map_fd(*c, 0, vm_ram_size(j->ram), vm_ram_fd(j->ram), 0,
                                    IOMMU_READ | IOMMU_WRITE);
    if (!ret)
        ret = vfu_client_irqs_enable(*c, QM_NUM_VECTORS);
    if (!ret)
        ret = vfu_client_region_read(*c, VFU_REGION_BAR2, QM_QUE_ISO_CFG, &iso, 4);
    if (!ret && !(iso & QM_QUE_ISO_EN)) {
        fprintf(stderr, "accmig bench vfu: the VF does not isolate its doorbells\n");
        ret = -ENOTSUP;
    }
    if (!ret && map) {
        ret = vfu_client_region_map(*c, VFU_REGION_BAR4, &base, &size);
        if (ret)
            fprintf(stderr, "accmig bench vfu: cannot map BAR4: %s\n", strerror(-ret));
    }
    /* Kicks by the poll-state words' ioeventfd, as the mini-VMM does. */
    if (!ret && map) {
        ret = vfu_client_region_io_fds(*c, VFU_REGION_BAR4);
        if (ret < 0)
            fprintf(stderr, "accmig bench vfu: no ioeventfd for BAR4: %s\n", strerror(-ret));
        ret = ret < 0 ? ret : 0;
    }
    if (!ret) {
        vfu_client_vf_io(*c, &io);
        if (map != (io.db_pages != NULL)) {
            fprintf(stderr, "accmig bench vfu: the client's vf_io %s the doorbell pages\n",
                    map ? "lacks" : "maps");
            ret = -ENOTSUP;
        }
    }
    if (!ret)
        ret = bv_job_start(j, &io);
    return ret;
}

/* job4k: in-process (side 0), mapped (1) and trapped (2) doorbells, each
 * guest on its own VF, first all three on their polled queues (m[0] mapped
 * and m[1] trapped against in-process), then all three on their
 * interrupt-driven queues (m[2], m[3]). Then, with the two vfio-user guests
 * still attached and idle, the server's CPU share over o->idle_ms into
 * *idle_pct. Fills *produced with the compressed size of the job. */
static int bv_job_measure(const struct bv_opts *o, const struct bench_load *load,
                          struct bench_server *s, struct bv_summary m[4], uint32_t *produced,
                          double *idle_pct)
{
    struct bv_job jm = {0}, jt = {0}, jb = {0};
    struct vmm_inproc_host h = {0};
    struct vfu_client *cm = NULL, *ct = NULL;
    struct bv_jq q[2][3] = {{{&jb, true}, {&jm, true}, {&jt, true}},
                            {{&jb, false}, {&jm, false}, {&jt, false}}};
    struct bv_side sides[2][3];
    struct qm_dev_config cfg;
    int ret = bv_job_vfu_start(s, BV_JOB_VF, true, &jm, &cm);

    if (!ret)
        ret = bv_job_vfu_start(s, BV_JOB_TRAP_VF, false, &jt, &ct);
    if (!ret)
        ret = bv_job_ram_create(&jb);
    if (!ret) {
        qm_dev_config_default(&cfg);
        cfg.num_vfs = BV_NUM_VFS;
        cfg.workers = o->workers; /* as the server's device */
        /* The server's shape, doorbell isolation included: the in-process
         * transport rings BAR4 by function call and hands no pages out, so
         * the device's poller never sweeps them (qm.h). */
        ret = vmm_inproc_host_create(&cfg, BV_JOB_VF + 1, vm_ram_guest(jb.ram), &h);
    }
    if (!ret)
        ret = bv_job_start(&jb, vmm_inproc_vf_io(h.vf));
    for (unsigned g = 0; g < 2; g++)
        for (unsigned i = 0; i < 3; i++)
            sides[g][i] = (struct bv_side){bv_job_run, &q[g][i], load};
    if (!ret)
        ret = bv_measure_sides(o, sides[0], 3, m);
    if (!ret)
        ret = bv_measure_sides(o, sides[1], 3, m + 2);
    *produced = jm.produced;
    bv_job_stop(&jb);
    vmm_inproc_host_destroy(&h);
    vm_ram_destroy(jb.ram);
    if (!ret) {
        /* Queues started, no job: only the server can use CPU now. */
        uint64_t c0 = bench_cpu_ns(load), t0 = am_now_ns();
        struct timespec ts = {.tv_sec = o->idle_ms / 1000,
                              .tv_nsec = (long)(o->idle_ms % 1000) * 1000000L};

        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        uint64_t c1 = bench_cpu_ns(load);

        /* c1 < c0 only by the load's share between two reads: nothing. */
        *idle_pct = 100.0 * (double)(c1 - AM_MIN(c0, c1)) / (double)(am_now_ns() - t0);
    }
    bv_job_stop(&jt);
    bv_job_stop(&jm);
    if (ct)
        vfu_client_destroy(ct);
    if (cm)
        vfu_client_destroy(cm);
    vm_ram_destroy(jt.ram);
    vm_ram_destroy(jm.ram);
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
    ret = bv_server_start(o.workers, &s);
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
            bv_print(&o, &bv_cases[i], &m, NULL);
    }
    if (!ret) {
        struct bv_summary m[4];
        uint32_t produced = 0;
        double idle_pct = 0;

        if (!o.json)
            printf("4 KiB jobs over vfio-user (doorbells mapped, trapped) vs in-process, "
                   "interleaved: polled queues, then interrupt-driven ones (_irq)\n");
        ret = bv_job_measure(&o, load, s, m, &produced, &idle_pct);
        if (!ret) {
            struct bv_case job = {"job4k", BV_JOB_BYTES, produced};
            struct bv_case trapped = {"job4k_trapped", BV_JOB_BYTES, produced};
            struct bv_case irq = {"job4k_irq", BV_JOB_BYTES, produced};
            struct bv_case irq_trapped = {"job4k_irq_trapped", BV_JOB_BYTES, produced};

            bv_print(&o, &job, &m[0], "mapped");
            bv_print(&o, &trapped, &m[1], "trapped");
            bv_print(&o, &irq, &m[2], "mapped");
            bv_print(&o, &irq_trapped, &m[3], "trapped");
            if (o.json)
                printf("{\"bench\":\"vfu\",\"case\":\"idle\",\"idle_ms\":%u,"
                       "\"idle_server_cpu_pct\":%.3f,\"workers\":%u,\"load_threads\":%u}\n",
                       o.idle_ms, idle_pct, o.workers, o.load);
            else
                printf("  idle server (queues started, no jobs, %u ms): %.3f%% of a CPU\n",
                       o.idle_ms, idle_pct);
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
