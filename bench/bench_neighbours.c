/* accmig bench neighbours: what a hostile guest on one VF costs a tenant on
 * another VF of the same vfio-user server.
 *
 * One in-process vfio-user server (bench_server, bench.h) with 2 VFs and the
 * device's default workers (shared by all functions).
 * - VF1, the tenant: the guest driver (guest/guest.h) over a vfio-user client
 *   (guest RAM a memfd mapped by DMA_MAP, MSIs on eventfds), on the
 *   controlling thread, keeps BN_TENANT_DEPTH compression jobs of 64 KiB
 *   (text-like data) on each of BN_TENANT_QPS queues, reaping by MSI. Every
 *   BN_MIG_INTERVAL_MS its VF is migrated through its vfio-user migration
 *   interface, back onto itself (the same VF is source and destination, so
 *   both ends run on the server the neighbour hammers): DMA logging on,
 *   PRE_COPY and its data read; then the measured part, the device downtime:
 *   PRE_COPY_P2P (quiesce), STOP_COPY and the rest of the stream read,
 *   STOP, RESUMING (function reset), the stream written back, STOP (load),
 *   RUNNING (resume), each a vfio-user request; then the driver re-attaches
 *   to its state in RAM, as a destination's does. Jobs cancelled by the
 *   quiesce run again after RUNNING; at the end every tag must have
 *   completed exactly once with a good status (else exit 1).
 * - VF0, the neighbour: idle in a quiet phase; in a noisy phase a hostile
 *   guest on its own client hammers it from five threads: STOP_QP on busy
 *   queues (jobs doorbelled, STOP_QP, restart, again), mailbox storms
 *   (unknown commands, bad queue numbers, migration commands the VF may not
 *   send), doorbell floods (bad queue numbers and commands, and valid
 *   doorbells of an idle queue), DMA faults (jobs whose buffers lie in guest
 *   RAM that was never mapped), garbage MMIO (random offsets and sizes,
 *   reads and writes, many of them refused).
 * Quiet and noisy phases alternate in pairs (quiet first in even pairs,
 * noisy first in odd ones), all in one run, so a drifting machine load hits
 * both alike. The tenant's throughput of a phase is the input bytes of the
 * jobs that completed in it over its wall time (migrations included).
 * ratio = noisy/quiet per pair, median of the pairs (min, max beside it).
 * Downtimes are the spread over every migration of each kind of phase.
 * Targets (reported, not enforced): ratio >= 0.90, noisy downtime p99 within
 * 2x the quiet one.
 *
 * With --load N, N CPU-bound threads (bench.h) spin for the whole run.
 * Output: one line (JSON with --json).
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "common/common.h"
#include "guest/guest.h"
#include "guest/workload.h"
#include "iommu/iommu.h"
#include "qm/qm_hw.h"
#include "vfu/client.h"
#include "vfu/vfu.h"
#include "vmm/vm_ram.h"

#define BN_MAX_PAIRS 50u
#define BN_MAX_SECONDS 600u
#define BN_NUM_VFS 2u
#define BN_HOSTILE_VF 0u /* socket index; PCI function index + 1 */
#define BN_TENANT_VF 1u
#define BN_STATE_GPA 0x10000ull
#define BN_TENANT_QPS 2u
#define BN_TENANT_DEPTH 4u
#define BN_JOB_BYTES (64u << 10)
#define BN_OUT_CAP (128u << 10)
#define BN_MIG_INTERVAL_MS 100u
#define BN_STREAM_CAP (256u << 10)
#define BN_DRAIN_NS (60ull * 1000000000ull)
#define BN_MAX_MIGRATIONS (BN_MAX_PAIRS * BN_MAX_SECONDS * 1000u / BN_MIG_INTERVAL_MS + 2u)
/* The hostile guest: queues 0-1 STOP_QP targets, 2 DMA faults, 3 idle (its
 * doorbells are the valid part of the flood). */
#define BN_HOSTILE_QPS 4u
#define BN_HOSTILE_JOB (256u << 10)
#define BN_HOSTILE_MAPPED (4u << 20) /* RAM the hostile maps; beyond it nothing */
#define BN_HOSTILE_FAULT_GPA (64ull << 20)
#define BN_HOSTILE_THREADS 5u

struct bn_opts {
    unsigned pairs, seconds, load;
    bool json;
};

static void bn_usage(FILE *f)
{
    fprintf(f, "usage: accmig bench neighbours [--pairs N] [--seconds S] [--load N] [--json]\n"
               "  A tenant's compression throughput and device downtime (VF1 migrated every\n"
               "  %u ms through vfio-user) while a hostile guest hammers VF0 of the same server\n"
               "  (STOP_QP on busy queues, mailbox storms, doorbell floods, DMA faults, garbage\n"
               "  MMIO), against VF0 idle, in interleaved quiet/noisy pairs.\n"
               "  --pairs N     quiet/noisy pairs (1..%u, default 3)\n"
               "  --seconds S   length of each phase (1..%u, default 4)\n"
               "  --load N      N CPU-bound threads spin for the whole run (0..64, default 0)\n"
               "  --json        one JSON line\n",
            BN_MIG_INTERVAL_MS, BN_MAX_PAIRS, BN_MAX_SECONDS);
}

/* 0 ok, 1 help printed, -EINVAL bad usage (already reported). */
static int bn_parse(int argc, char **argv, struct bn_opts *o)
{
    enum { O_PAIRS = 1, O_SECONDS, O_LOAD, O_JSON, O_HELP };
    static const struct option lo[] = {
        {"pairs", required_argument, NULL, O_PAIRS},
        {"seconds", required_argument, NULL, O_SECONDS},
        {"load", required_argument, NULL, O_LOAD},
        {"json", no_argument, NULL, O_JSON},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int c;

    o->pairs = 3;
    o->seconds = 4;
    o->load = 0;
    o->json = false;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case O_PAIRS:
            if (am_parse_u64(optarg, BN_MAX_PAIRS, &v) || v == 0) {
                fprintf(stderr, "accmig bench neighbours: bad value '%s' for --pairs "
                        "(1 to %u)\n", optarg, BN_MAX_PAIRS);
                return -EINVAL;
            }
            o->pairs = (unsigned)v;
            break;
        case O_SECONDS:
            if (am_parse_u64(optarg, BN_MAX_SECONDS, &v) || v == 0) {
                fprintf(stderr, "accmig bench neighbours: bad value '%s' for --seconds "
                        "(1 to %u)\n", optarg, BN_MAX_SECONDS);
                return -EINVAL;
            }
            o->seconds = (unsigned)v;
            break;
        case O_LOAD:
            if (bench_load_parse("neighbours", optarg, &o->load))
                return -EINVAL;
            break;
        case O_JSON:
            o->json = true;
            break;
        case O_HELP:
            bn_usage(stdout);
            return 1;
        default:
            fprintf(stderr, "accmig bench neighbours: unknown option or missing value: '%s'\n",
                    argv[optind - 1]);
            bn_usage(stderr);
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "accmig bench neighbours: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    return 0;
}

/* ---- a guest over a vfio-user client ---- */

struct bn_side {
    struct vfu_client *c;
    struct vm_ram *ram;
    struct guest_vf *vf;
    struct vf_io io;
};

/* Connect to sock, map the first `mapped` bytes of a fresh RAM of ram_size,
 * enable MSIs, probe the VF. */
static int bn_side_open(struct bn_side *g, const char *sock, uint64_t ram_size, uint64_t mapped)
{
    uint64_t state_len = guest_vf_state_size(BN_HOSTILE_QPS);
    int ret = vm_ram_create(ram_size, &g->ram);

    if (!ret)
        ret = vfu_client_connect(sock, NULL, &g->c);
    if (!ret)
        ret = vfu_client_dma_map_fd(g->c, 0, mapped, vm_ram_fd(g->ram), 0,
                                    IOMMU_READ | IOMMU_WRITE);
    if (!ret)
        ret = vfu_client_irqs_enable(g->c, QM_NUM_VECTORS);
    if (!ret) {
        vfu_client_vf_io(g->c, &g->io);
        ret = guest_vf_init(&g->io, vm_ram_guest(g->ram), BN_STATE_GPA, state_len, &g->vf);
    }
    return ret;
}

static void bn_side_close(struct bn_side *g)
{
    if (g->vf)
        guest_vf_detach(g->vf);
    if (g->c)
        vfu_client_destroy(g->c);
    vm_ram_destroy(g->ram);
}

/* ---- the tenant (VF1) ---- */

struct bn_tenant {
    struct bn_side s;
    uint64_t in_gpa, out_gpa;
    uint8_t *done; /* completions per tag */
    uint64_t tags, tags_cap;
    uint64_t completions, bad_status, bad_tag;
    uint64_t bytes; /* input bytes of good completions */
    uint8_t *stream;
    double *down;   /* downtime of each migration, us */
    unsigned ndown, failed_migrations;
};

static void bn_tenant_complete(void *opaque, const struct guest_vf_completion *c)
{
    struct bn_tenant *t = opaque;

    t->completions++;
    if (c->tag >= t->tags) {
        t->bad_tag++;
        return;
    }
    if (t->done[c->tag] < UINT8_MAX)
        t->done[c->tag]++;
    if (c->status != ZIP_ST_OK && c->status != ZIP_ST_NEGATIVE_COMP)
        t->bad_status++;
    else
        t->bytes += c->consumed;
}

static int bn_tenant_submit(struct bn_tenant *t, unsigned q, unsigned slot)
{
    struct guest_zip_req req = {
        .type = ZIP_REQ_DEFLATE, .buf_type = ZIP_BUF_FLAT, .src = t->in_gpa,
        .dst = t->out_gpa + (uint64_t)(q * BN_TENANT_DEPTH + slot) * BN_OUT_CAP,
        .in_len = BN_JOB_BYTES, .dest_avail = BN_OUT_CAP, .window = 4,
    };
    uint32_t sqe[ZIP_SQE_DWORDS];
    int ret;

    if (t->tags == t->tags_cap) {
        uint64_t cap = t->tags_cap ? t->tags_cap * 2 : 4096;
        uint8_t *d = realloc(t->done, cap);

        if (!d)
            return -ENOMEM;
        memset(d + t->tags_cap, 0, cap - t->tags_cap);
        t->done = d;
        t->tags_cap = cap;
    }
    req.tag = t->tags;
    ret = guest_zip_sqe_build(sqe, &req);
    if (!ret)
        ret = guest_vf_submit(t->s.vf, q, sqe);
    if (!ret)
        t->tags++;
    return ret;
}

/* Every queue back to its depth. */
static int bn_tenant_refill(struct bn_tenant *t)
{
    for (unsigned q = 0; q < BN_TENANT_QPS; q++) {
        unsigned n = guest_vf_qp_inflight(t->s.vf, q);

        for (; n < BN_TENANT_DEPTH; n++) {
            int ret = bn_tenant_submit(t, q, (unsigned)(t->tags % BN_TENANT_DEPTH));

            if (ret)
                return ret;
        }
    }
    return 0;
}

static int bn_tenant_create(struct bn_tenant *t, const char *sock)
{
    uint64_t state_len = guest_vf_state_size(BN_HOSTILE_QPS), size;
    int ret;

    memset(t, 0, sizeof(*t));
    t->in_gpa = BN_STATE_GPA + state_len;
    t->out_gpa = t->in_gpa + BN_JOB_BYTES;
    size = t->out_gpa + (uint64_t)BN_TENANT_QPS * BN_TENANT_DEPTH * BN_OUT_CAP;
    t->stream = malloc(BN_STREAM_CAP);
    t->down = calloc(BN_MAX_MIGRATIONS, sizeof(double));
    if (!t->stream || !t->down)
        return -ENOMEM;
    ret = bn_side_open(&t->s, sock, size, size);
    if (ret)
        return ret;
    workload_data_fill(vm_ram_host(t->s.ram) + t->in_gpa, BN_JOB_BYTES, WORKLOAD_DATA_TEXT, 1);
    guest_vf_set_complete_cb(t->s.vf, bn_tenant_complete, t);
    for (unsigned q = 0; q < BN_TENANT_QPS && !ret; q++)
        ret = guest_vf_qp_start(t->s.vf, q, ZIP_ALG_COMPRESS);
    return ret;
}

static void bn_tenant_destroy(struct bn_tenant *t)
{
    bn_side_close(&t->s);
    free(t->done);
    free(t->stream);
    free(t->down);
}

/* Reads the migration stream until a short read; appends at *len. */
static int bn_stream_drain(struct bn_tenant *t, size_t *len)
{
    for (;;) {
        size_t want = AM_MIN((size_t)4096, BN_STREAM_CAP - *len);
        ssize_t n;

        if (want == 0)
            return -ENOSPC;
        n = vfu_client_mig_read(t->s.c, t->stream + *len, want);
        if (n < 0)
            return (int)n;
        *len += (size_t)n;
        if ((size_t)n < want)
            return 0;
    }
}

/* One loopback migration of VF1 (see the top of the file); *down_ns is the
 * device downtime, PRE_COPY_P2P request to RUNNING reply. */
static int bn_tenant_migrate(struct bn_tenant *t, uint64_t *down_ns)
{
    struct vfu_client *c = t->s.c;
    static const enum vfio_mig_state save[] = {VFIO_MIG_STATE_PRE_COPY_P2P,
                                               VFIO_MIG_STATE_STOP_COPY};
    static const enum vfio_mig_state load[] = {VFIO_MIG_STATE_STOP, VFIO_MIG_STATE_RESUMING};
    uint64_t page = VM_RAM_PAGE_SIZE, t0;
    struct guest_vf *vf;
    size_t len = 0;
    int ret = vfu_client_dma_logging_start(c, &page, NULL, 0);

    if (!ret)
        ret = vfu_client_mig_state_set(c, VFIO_MIG_STATE_PRE_COPY);
    if (!ret)
        ret = bn_stream_drain(t, &len);
    t0 = am_now_ns();
    for (size_t i = 0; i < AM_ARRAY_SIZE(save) && !ret; i++)
        ret = vfu_client_mig_state_set(c, save[i]);
    if (!ret)
        ret = bn_stream_drain(t, &len);
    if (!ret)
        ret = vfu_client_dma_logging_stop(c);
    for (size_t i = 0; i < AM_ARRAY_SIZE(load) && !ret; i++)
        ret = vfu_client_mig_state_set(c, load[i]);
    if (!ret)
        ret = vfu_client_mig_write(c, t->stream, len);
    if (!ret)
        ret = vfu_client_mig_state_set(c, VFIO_MIG_STATE_STOP);
    if (!ret)
        ret = vfu_client_mig_state_set(c, VFIO_MIG_STATE_RUNNING);
    *down_ns = am_now_ns() - t0;
    if (ret)
        return ret;
    /* The destination's driver binds to its state in RAM. */
    ret = guest_vf_attach(&t->s.io, vm_ram_guest(t->s.ram), BN_STATE_GPA, &vf);
    if (ret)
        return ret;
    guest_vf_detach(t->s.vf);
    t->s.vf = vf;
    guest_vf_set_complete_cb(vf, bn_tenant_complete, t);
    return 0;
}

/* After a failed migration: back to RUNNING if the device can get there
 * (then the run goes on), else the error. */
static int bn_tenant_recover(struct bn_tenant *t, int err)
{
    enum vfio_mig_state st = VFIO_MIG_STATE_ERROR;

    vfu_client_dma_logging_stop(t->s.c);
    if (vfu_client_mig_state_get(t->s.c, &st) == 0 && st != VFIO_MIG_STATE_ERROR &&
        st != VFIO_MIG_STATE_RESUMING && vfu_client_mig_state_set(t->s.c, VFIO_MIG_STATE_RUNNING) == 0)
        return 0;
    return err;
}

/* One phase: keep the queues full and migrate every BN_MIG_INTERVAL_MS for
 * `seconds`; *mb_s the throughput, downtimes appended to t->down. */
static int bn_tenant_phase(struct bn_tenant *t, unsigned seconds, double *mb_s)
{
    uint64_t t0 = am_now_ns(), end = t0 + (uint64_t)seconds * 1000000000ull;
    uint64_t next_mig = t0 + BN_MIG_INTERVAL_MS * 1000000ull, bytes0 = t->bytes, now;
    int ret = 0;

    while (!ret && (now = am_now_ns()) < end) {
        if (now >= next_mig) {
            uint64_t down = 0;

            ret = bn_tenant_migrate(t, &down);
            if (ret) {
                fprintf(stderr, "accmig bench neighbours: migration failed: %s\n",
                        strerror(-ret));
                t->failed_migrations++;
                ret = bn_tenant_recover(t, ret);
            } else if (t->ndown < BN_MAX_MIGRATIONS) {
                t->down[t->ndown++] = (double)down / 1e3;
            }
            next_mig = am_now_ns() + BN_MIG_INTERVAL_MS * 1000000ull;
            continue;
        }
        ret = bn_tenant_refill(t);
        if (!ret) {
            int irq = guest_vf_irq_wait(t->s.vf, 2) == 0;
            int got = guest_vf_poll(t->s.vf, irq);

            ret = got < 0 ? got : 0;
        }
    }
    *mb_s = (double)(t->bytes - bytes0) / ((double)(am_now_ns() - t0) / 1e9) / 1e6;
    return ret;
}

/* Stop refilling, reap until nothing is in flight; then every tag must have
 * completed exactly once. */
static bool bn_tenant_drain(struct bn_tenant *t)
{
    uint64_t deadline = am_now_ns() + BN_DRAIN_NS;
    unsigned left;

    do {
        left = 0;
        if (guest_vf_poll(t->s.vf, guest_vf_irq_wait(t->s.vf, 2) == 0) < 0)
            return false;
        for (unsigned q = 0; q < BN_TENANT_QPS; q++)
            left += guest_vf_qp_inflight(t->s.vf, q);
    } while (left && am_now_ns() < deadline);
    if (left || t->bad_tag || t->bad_status)
        return false;
    for (uint64_t k = 0; k < t->tags; k++)
        if (t->done[k] != 1)
            return false;
    return true;
}

/* ---- the hostile guest (VF0) ---- */

enum bn_op {
    BN_OP_STOP_QP,
    BN_OP_MAILBOX,
    BN_OP_DOORBELL_BAD,
    BN_OP_DOORBELL_VALID,
    BN_OP_DMA_FAULT,
    BN_OP_MMIO,
    BN_OP_MMIO_REFUSED,
    BN_OP_COUNT
};

static const char *const bn_op_names[BN_OP_COUNT] = {
    "stop_qp", "mailbox_invalid", "doorbell_bad", "doorbell_valid", "dma_fault_jobs",
    "mmio_garbage", "mmio_refused",
};

struct bn_hostile {
    struct bn_side s;
    pthread_t threads[BN_HOSTILE_THREADS];
    unsigned nthreads;
    atomic_bool stop;                 /* set to end a noisy phase */
    _Atomic uint64_t ops[BN_OP_COUNT];
    _Atomic uint64_t completions;     /* of its own jobs, any status */
    atomic_bool dead;                 /* its connection failed: ops end */
};

/* One thread's xorshift state (never shared). */
static uint64_t bn_rand(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void bn_hostile_complete(void *opaque, const struct guest_vf_completion *c)
{
    struct bn_hostile *h = opaque;

    (void)c;
    atomic_fetch_add(&h->completions, 1);
}

static void bn_op(struct bn_hostile *h, enum bn_op op)
{
    atomic_fetch_add_explicit(&h->ops[op], 1, memory_order_relaxed);
}

/* A transport failure of a raw region access ends the hostile's work (a
 * refusal does not). */
static bool bn_hostile_lost(struct bn_hostile *h, int ret)
{
    if (ret == -ECONNRESET || ret == -EIO || ret == -ETIMEDOUT || ret == -EPIPE) {
        atomic_store(&h->dead, true);
        return true;
    }
    return false;
}

static bool bn_hostile_on(struct bn_hostile *h)
{
    return !atomic_load(&h->stop) && !atomic_load(&h->dead);
}

static int bn_hostile_job(struct bn_hostile *h, unsigned q, uint64_t src, uint64_t dst)
{
    struct guest_zip_req req = {
        .type = ZIP_REQ_DEFLATE, .buf_type = ZIP_BUF_FLAT, .src = src, .dst = dst,
        .in_len = BN_HOSTILE_JOB, .dest_avail = 2 * BN_HOSTILE_JOB, .window = 4, .tag = q,
    };
    uint32_t sqe[ZIP_SQE_DWORDS];
    int ret = guest_zip_sqe_build(sqe, &req);

    return ret ? ret : guest_vf_submit(h->s.vf, q, sqe);
}

/* Busy queues 0 and 1: jobs doorbelled, then STOP_QP while they run, then
 * the queue started again. The driver's errors (a mailbox the storm thread
 * confused, a queue a fault killed) are part of the game, not the end of it:
 * only the raw-MMIO threads decide that the connection is gone. */
static void *bn_hostile_stopper(void *arg)
{
    struct bn_hostile *h = arg;
    uint64_t src = BN_STATE_GPA + guest_vf_state_size(BN_HOSTILE_QPS);

    for (unsigned q = 0; bn_hostile_on(h); q ^= 1) {
        for (unsigned k = 0; k < 4; k++)
            if (bn_hostile_job(h, q, src, src + BN_HOSTILE_JOB))
                break;
        guest_vf_qp_stop(h->s.vf, q, 50);
        bn_op(h, BN_OP_STOP_QP);
        guest_vf_qp_start(h->s.vf, q, ZIP_ALG_COMPRESS);
    }
    return NULL;
}

/* Queue 2: jobs whose buffers lie where nothing is mapped. */
static void *bn_hostile_faulter(void *arg)
{
    struct bn_hostile *h = arg;
    uint64_t x = 0x9e3779b97f4a7c15ull;

    while (bn_hostile_on(h)) {
        uint64_t src = BN_HOSTILE_FAULT_GPA + (bn_rand(&x) % 256) * 4096;
        int ret = bn_hostile_job(h, 2, src, src + (16u << 20));

        if (ret == 0)
            bn_op(h, BN_OP_DMA_FAULT);
        else if (ret == -EIO) /* a fault killed the queue: start it again */
            guest_vf_qp_start(h->s.vf, 2, ZIP_ALG_COMPRESS);
        guest_vf_poll(h->s.vf, 0);
    }
    return NULL;
}

/* Commands the VF's mailbox must refuse: unknown ones, known ones naming a
 * queue it does not have, and migration commands a VF may not send. */
static void *bn_hostile_mailbox(void *arg)
{
    struct bn_hostile *h = arg;
    uint64_t x = 0xd1b54a32d192ed03ull;
    static const uint8_t known[] = {QM_MB_CMD_SQC, QM_MB_CMD_CQC, QM_MB_CMD_STOP_QP};
    static const uint8_t denied[] = {QM_MB_CMD_PAUSE_QM, QM_MB_CMD_RESUME_QM, QM_MB_CMD_SRC,
                                     QM_MB_CMD_DST};

    while (bn_hostile_on(h)) {
        uint64_t r = bn_rand(&x);
        struct qm_mailbox mb = {.base_l = (uint32_t)r, .base_h = (uint32_t)(r >> 32)};
        unsigned kind = (unsigned)(r % 3), cmd;
        int ret;

        if (kind == 0)
            cmd = 0x10u + (unsigned)((r >> 8) % 0xf0u); /* unknown */
        else if (kind == 1)
            cmd = known[(r >> 8) % AM_ARRAY_SIZE(known)];
        else
            cmd = denied[(r >> 8) % AM_ARRAY_SIZE(denied)];
        mb.w0 = (uint16_t)(cmd | 1u << QM_MB_BUSY_SHIFT);
        mb.queue_num = (uint16_t)(kind == 1 ? BN_HOSTILE_QPS + (r >> 16) % 1000u : 0);
        ret = vfu_client_region_write(h->s.c, VFU_REGION_BAR2, QM_MAILBOX, &mb, sizeof(mb));
        bn_op(h, BN_OP_MAILBOX);
        if (bn_hostile_lost(h, ret))
            break;
    }
    return NULL;
}

/* Doorbells: bad queue numbers, bad commands, indexes beyond the depth, and
 * valid SQ/CQ doorbells of idle queue 3 at its current positions. */
static void *bn_hostile_doorbell(void *arg)
{
    struct bn_hostile *h = arg;
    uint64_t x = 0xbf58476d1ce4e5b9ull;

    while (bn_hostile_on(h)) {
        uint64_t r = bn_rand(&x), db;
        bool valid = r % 4 == 0;
        int ret;

        if (valid)
            db = r & 8 ? qm_db_value(3, QM_DB_CMD_SQ, guest_vf_qp_sq_tail(h->s.vf, 3), 0)
                       : qm_db_value(3, QM_DB_CMD_CQ, 0, 0);
        else if (r % 4 == 1)
            db = qm_db_value((uint16_t)(BN_HOSTILE_QPS + (r >> 8) % 4000u), QM_DB_CMD_SQ,
                             (uint16_t)(r >> 20), 0);
        else if (r % 4 == 2)
            db = qm_db_value((uint16_t)((r >> 8) % BN_HOSTILE_QPS), 4u + (unsigned)((r >> 12) % 12u),
                             (uint16_t)(r >> 20), 0);
        else
            db = qm_db_value(3, QM_DB_CMD_SQ, (uint16_t)(QM_SQ_DEPTH + (r >> 20) % 1000u), 0);
        ret = vfu_client_region_write(h->s.c, VFU_REGION_BAR2, QM_DB_SQCQ, &db, sizeof(db));
        bn_op(h, valid ? BN_OP_DOORBELL_VALID : BN_OP_DOORBELL_BAD);
        if (bn_hostile_lost(h, ret))
            break;
    }
    return NULL;
}

/* Random offsets (up to twice the BAR) and sizes, reads and writes; writes
 * keep off the mailbox and the doorbell pages (the other threads' work). */
static void *bn_hostile_garbage(void *arg)
{
    static const uint32_t sizes[] = {0, 1, 2, 3, 4, 5, 7, 8, 16, 64, 4096};
    struct bn_hostile *h = arg;
    uint64_t x = 0x94d049bb133111ebull;
    uint8_t buf[4096];

    while (bn_hostile_on(h)) {
        uint64_t r = bn_rand(&x), off = (r >> 8) % (2u * QM_VF_BAR2_SIZE);
        uint32_t size = sizes[(r >> 40) % AM_ARRAY_SIZE(sizes)];
        bool write = r & 1;
        int ret;

        if (write && ((off < QM_MAILBOX + QM_MAILBOX_SIZE && off + size > QM_MAILBOX) ||
                      (off < QM_DB_EQAEQ + 0x1000 && off + size > QM_DB_SQCQ)))
            write = false;
        for (uint32_t k = 0; k < size && k < 16; k++)
            buf[k] = (uint8_t)bn_rand(&x);
        ret = write ? vfu_client_region_write(h->s.c, VFU_REGION_BAR2, off, buf, size)
                    : vfu_client_region_read(h->s.c, VFU_REGION_BAR2, off, buf, size);
        bn_op(h, BN_OP_MMIO);
        if (ret)
            bn_op(h, BN_OP_MMIO_REFUSED);
        if (bn_hostile_lost(h, ret))
            break;
    }
    return NULL;
}

static int bn_hostile_create(struct bn_hostile *h, const char *sock)
{
    uint64_t state_len = guest_vf_state_size(BN_HOSTILE_QPS);
    int ret;

    memset(h, 0, sizeof(*h));
    ret = bn_side_open(&h->s, sock, BN_HOSTILE_MAPPED, BN_HOSTILE_MAPPED);
    if (ret)
        return ret;
    workload_data_fill(vm_ram_host(h->s.ram) + BN_STATE_GPA + state_len, BN_HOSTILE_JOB,
                       WORKLOAD_DATA_TEXT, 2);
    guest_vf_set_complete_cb(h->s.vf, bn_hostile_complete, h);
    for (unsigned q = 0; q < BN_HOSTILE_QPS && !ret; q++)
        ret = guest_vf_qp_start(h->s.vf, q, ZIP_ALG_COMPRESS);
    return ret;
}

/* A noisy phase begins: the five threads start. */
static int bn_hostile_start(struct bn_hostile *h)
{
    void *(*const fns[BN_HOSTILE_THREADS])(void *) = {
        bn_hostile_stopper, bn_hostile_faulter, bn_hostile_mailbox, bn_hostile_doorbell,
        bn_hostile_garbage,
    };
    int ret = 0;

    atomic_store(&h->stop, false);
    h->nthreads = 0;
    for (unsigned i = 0; i < BN_HOSTILE_THREADS && !ret; i++) {
        ret = -pthread_create(&h->threads[i], NULL, fns[i], h);
        if (!ret)
            h->nthreads++;
    }
    return ret;
}

/* A noisy phase ends: the threads stop and are joined. */
static void bn_hostile_stop(struct bn_hostile *h)
{
    atomic_store(&h->stop, true);
    for (unsigned i = 0; i < h->nthreads; i++)
        pthread_join(h->threads[i], NULL);
    h->nthreads = 0;
}

static void bn_hostile_destroy(struct bn_hostile *h)
{
    bn_hostile_stop(h);
    bn_side_close(&h->s);
}

/* ---- the run ---- */

struct bn_result {
    double quiet[BN_MAX_PAIRS], noisy[BN_MAX_PAIRS], ratio[BN_MAX_PAIRS];
    double *down_quiet, *down_noisy;
    unsigned nq, nn;
    struct bench_spread dq, dn;
    double quiet_mb_s, noisy_mb_s, ratio_med;
    uint64_t ops[BN_OP_COUNT], hostile_completions;
    bool hostile_dead, exactly_once;
    uint64_t jobs, completions;
    unsigned failed_migrations;
};

/* One phase; downtimes of its migrations copied to the kind's array. */
static int bn_phase(struct bn_tenant *t, struct bn_hostile *h, const struct bn_opts *o,
                    bool noisy, struct bn_result *r, double *mb_s)
{
    unsigned first = t->ndown;
    int ret = noisy ? bn_hostile_start(h) : 0;

    if (!ret)
        ret = bn_tenant_phase(t, o->seconds, mb_s);
    if (noisy)
        bn_hostile_stop(h);
    for (unsigned i = first; i < t->ndown; i++) {
        if (noisy)
            r->down_noisy[r->nn++] = t->down[i];
        else
            r->down_quiet[r->nq++] = t->down[i];
    }
    return ret;
}

static int bn_run(const struct bn_opts *o, struct bench_server *srv, struct bn_result *r)
{
    struct bn_tenant t;
    struct bn_hostile h;
    int ret;

    memset(&h, 0, sizeof(h));
    ret = bn_tenant_create(&t, bench_server_socket_path(srv, BN_TENANT_VF));
    if (ret)
        fprintf(stderr, "accmig bench neighbours: tenant on VF1: %s\n", strerror(-ret));
    if (!ret) {
        ret = bn_hostile_create(&h, bench_server_socket_path(srv, BN_HOSTILE_VF));
        if (ret)
            fprintf(stderr, "accmig bench neighbours: hostile guest on VF0: %s\n", strerror(-ret));
    }
    r->down_quiet = calloc(BN_MAX_MIGRATIONS, sizeof(double));
    r->down_noisy = calloc(BN_MAX_MIGRATIONS, sizeof(double));
    if (!ret && (!r->down_quiet || !r->down_noisy))
        ret = -ENOMEM;
    for (unsigned p = 0; p < o->pairs && !ret; p++) {
        bool noisy_first = p % 2 == 1;

        ret = bn_phase(&t, &h, o, noisy_first, r, noisy_first ? &r->noisy[p] : &r->quiet[p]);
        if (!ret)
            ret = bn_phase(&t, &h, o, !noisy_first, r, noisy_first ? &r->quiet[p] : &r->noisy[p]);
        if (!ret)
            r->ratio[p] = r->quiet[p] > 0 ? r->noisy[p] / r->quiet[p] : 0.0;
    }
    if (t.s.vf) {
        r->exactly_once = bn_tenant_drain(&t);
        r->jobs = t.tags;
        r->completions = t.completions;
        r->failed_migrations = t.failed_migrations;
    }
    for (unsigned i = 0; i < BN_OP_COUNT; i++)
        r->ops[i] = atomic_load(&h.ops[i]);
    r->hostile_completions = atomic_load(&h.completions);
    r->hostile_dead = atomic_load(&h.dead);
    bn_hostile_destroy(&h);
    bn_tenant_destroy(&t);
    if (ret)
        return ret;
    r->quiet_mb_s = bench_median(r->quiet, o->pairs);
    r->noisy_mb_s = bench_median(r->noisy, o->pairs);
    r->ratio_med = bench_median(r->ratio, o->pairs); /* sorts ratio[] */
    bench_spread(r->down_quiet, r->nq, &r->dq);
    bench_spread(r->down_noisy, r->nn, &r->dn);
    return 0;
}

static void bn_print(const struct bn_opts *o, const struct bn_result *r)
{
    bool ratio_met = r->ratio_med >= 0.90;
    bool down_met = r->dn.p99 <= 2.0 * r->dq.p99;

    if (!o->json) {
        printf("tenant VF1 throughput: quiet %.1f MB/s, noisy %.1f MB/s, ratio %.2f "
               "(%.2f..%.2f, target >= 0.90: %s)\n"
               "VF1 device downtime (us): quiet p50 %.0f p99 %.0f max %.0f (%u), noisy p50 %.0f "
               "p99 %.0f max %.0f (%u) (target noisy p99 <= 2x quiet: %s)\n"
               "hostile ops on VF0:",
               r->quiet_mb_s, r->noisy_mb_s, r->ratio_med, r->ratio[0], r->ratio[o->pairs - 1],
               ratio_met ? "met" : "missed", r->dq.p50, r->dq.p99, r->dq.max, r->nq, r->dn.p50,
               r->dn.p99, r->dn.max, r->nn, down_met ? "met" : "missed");
        for (unsigned i = 0; i < BN_OP_COUNT; i++)
            printf(" %s %llu", bn_op_names[i], (unsigned long long)r->ops[i]);
        printf("\nexactly once: %s (%llu jobs), %u load thread(s)\n",
               r->exactly_once ? "yes" : "NO", (unsigned long long)r->jobs, o->load);
        fflush(stdout);
        return;
    }
    printf("{\"bench\":\"neighbours\",\"pairs\":%u,\"seconds\":%u,\"load_threads\":%u,"
           "\"tenant_qps\":%u,\"tenant_depth\":%u,\"job_bytes\":%u,\"mig_interval_ms\":%u,"
           "\"quiet_mb_s\":%.1f,\"noisy_mb_s\":%.1f,\"ratio\":%.3f,\"ratio_min\":%.3f,"
           "\"ratio_max\":%.3f,\"migrations_quiet\":%u,\"migrations_noisy\":%u,"
           "\"failed_migrations\":%u,"
           "\"downtime_p50_quiet_us\":%.1f,\"downtime_p99_quiet_us\":%.1f,"
           "\"downtime_max_quiet_us\":%.1f,\"downtime_p50_noisy_us\":%.1f,"
           "\"downtime_p99_noisy_us\":%.1f,\"downtime_max_noisy_us\":%.1f",
           o->pairs, o->seconds, o->load, BN_TENANT_QPS, BN_TENANT_DEPTH, BN_JOB_BYTES,
           BN_MIG_INTERVAL_MS, r->quiet_mb_s, r->noisy_mb_s, r->ratio_med, r->ratio[0],
           r->ratio[o->pairs - 1], r->nq, r->nn, r->failed_migrations, r->dq.p50, r->dq.p99,
           r->dq.max, r->dn.p50, r->dn.p99, r->dn.max);
    for (unsigned i = 0; i < BN_OP_COUNT; i++)
        printf(",\"hostile_%s\":%llu", bn_op_names[i], (unsigned long long)r->ops[i]);
    printf(",\"hostile_completions\":%llu,\"hostile_connection_lost\":%s,\"jobs\":%llu,"
           "\"completions\":%llu,\"exactly_once\":%s,\"ratio_target_met\":%s,"
           "\"downtime_target_met\":%s}\n",
           (unsigned long long)r->hostile_completions, r->hostile_dead ? "true" : "false",
           (unsigned long long)r->jobs, (unsigned long long)r->completions,
           r->exactly_once ? "true" : "false", ratio_met ? "true" : "false",
           down_met ? "true" : "false");
    fflush(stdout);
}

int bench_neighbours(int argc, char **argv)
{
    struct vfu_device_config dev;
    struct bench_server *srv;
    struct bench_load *load;
    struct bn_result *r;
    struct bn_opts o;
    int ret = bn_parse(argc, argv, &o);

    if (ret)
        return ret > 0 ? 0 : 2;
    r = calloc(1, sizeof(*r));
    if (!r)
        return 2;
    if (bench_load_create("neighbours", o.load, &load)) {
        free(r);
        return 2;
    }
    vfu_device_config_default(&dev);
    dev.num_vfs = BN_NUM_VFS;
    ret = bench_server_create("neighbours", &dev, &srv);
    if (ret) {
        fprintf(stderr, "accmig bench neighbours: cannot start the server: %s\n", strerror(-ret));
        bench_load_destroy(load);
        free(r);
        return 2;
    }
    ret = bn_run(&o, srv, r);
    bench_server_destroy(srv);
    bench_load_destroy(load);
    if (!ret)
        bn_print(&o, r);
    else
        fprintf(stderr, "accmig bench neighbours: the run failed: %s\n", strerror(-ret));
    if (!ret && (!r->exactly_once || r->failed_migrations))
        ret = -EIO;
    free(r->down_quiet);
    free(r->down_noisy);
    free(r);
    return ret ? 1 : 0;
}
