/* accmig bench migrate --ram SIZE: whole-VM live migration (bench_vm.h).
 *
 * Setup, in this process: two vfio-user device servers (vfu.h) on their own
 * threads, one VF each ("host A", "host B"), and a mini-VMM (vmm/vm.h) on A
 * with SIZE bytes of guest RAM: the compression workload lays itself out at
 * the bottom and runs on its vCPU threads (the load), the rest of the RAM is
 * filled with incompressible data so every page travels with its bytes.
 *
 * Each round, under that load:
 *   raw        SIZE bytes of the running guest's RAM copied over a loopback
 *              TCP connection into a fresh, prefaulted memfd (as the
 *              incoming VMM's RAM: vm_config.prealloc) (write()/read() of 4 MiB,
 *              then a 1-byte ack), timed from the first write to the ack;
 *              once right before and once right after the migration, the
 *              mean of the two being the round's baseline;
 *   migration  a fresh incoming mini-VMM on the other host (its RAM
 *              prefaulted before the source connects, outside the timing), then
 *              vm_migrate_out: handshake, device PRE_COPY, precopy rounds
 *              until the rest fits the downtime goal, stop-copy, END, ack.
 * The guest then runs on the other host and the next round migrates it
 * back. RAM throughput is the wire bytes of the precopy rounds over their
 * time (each round ends with the destination confirming it has it all);
 * ratio = that / the same round's raw copy. The medians over the rounds are
 * printed with the worst downtime. At the end the guest is shut down and its
 * job table checked (no job failed, duplicated or lost). MB = 10^6 bytes.
 * Before each migration (after a settle) the same bytes are also copied raw
 * into the incoming VMM's own RAM, the memory the migration then writes, and
 * after it into the RAM the source VMM leaves: the mean of the two is
 * raw_dst_mb_s / ratio_dst (such RAM takes bytes slower than a fresh memfd).
 * --channels N migrates over N RAM channels (multifd) and adds, before and
 * after each migration, a raw copy of the same bytes over N connections at
 * once (slice i on connection i): the ratio against N raw streams beside the
 * one against a single stream. --load N spins N CPU-bound threads for the
 * whole run. The JSON also has the process CPU time per MB moved (the
 * guest's vCPUs included, for both) and the load average at start and end.
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
#include "bench_vm.h"
#include "common/common.h"
#include "guest/workload.h"
#include "vfu/vfu.h"
#include "vmm/net.h"
#include "vmm/vm.h"
#include "vmm/vm_ram.h"
#include "vmm/vmstream.h"

#define BV_MAX_ROUNDS 50u
#define BV_CHUNK (UINT64_C(4) << 20)
#define BV_TIMEOUT_MS 30000
#define BV_WARMUP_MS 300
#define BV_QPS 4u
/* A pause before each timed transfer: the kernel frees the RAM of the
 * previous copy or of the VMM that left (256 MiB of pages, TLB shootdowns)
 * after the fact, and that work should not land in the next measurement. */
#define BV_SETTLE_MS 300

struct bv_opts {
    uint64_t ram;
    unsigned rounds;
    uint32_t downtime_ms;
    struct workload_config wl;
    bool json;
    bool no_prealloc;
    unsigned channels; /* --channels: RAM channels of the migration (0: the main one) */
    unsigned load;     /* --load: CPU-bound threads beside the whole run */
};

struct bv_server {
    char dir[96];
    struct vfu_server *srv;
    pthread_t th;
    int ret;
    bool running;
};

struct bv_round {
    double raw_mb_s, ram_mb_s, ratio;
    double raw_before_mb_s, raw_after_mb_s; /* raw_mb_s is their mean */
    double rawn_mb_s, ratio_n; /* against N raw streams (--channels N) */
    double rawd_mb_s, ratio_d; /* against one raw stream into the destination VMM's own RAM */
    double cpu_raw_ns_mb, cpu_mig_ns_mb; /* process CPU (the guest's included) per MB moved */
    struct vm_mig_report rep;
    bool guest_busy; /* the guest still had jobs to run when it was paused */
};

static void bv_usage(FILE *f)
{
    fprintf(f,
            "usage: accmig bench migrate --ram SIZE [options]\n"
            "  Whole-VM live migration between two mini-VMMs over loopback TCP (two\n"
            "  vfio-user servers in this process), the guest's compression workload\n"
            "  running; each migration against a raw TCP copy of the same RAM bytes.\n"
            "  --ram SIZE         guest RAM, a 4 KiB multiple (e.g. 256M); all of it data\n"
            "  --rounds N         migrations, alternating hosts (default 7)\n"
            "  --downtime-ms N    downtime goal (default %d)\n"
            "  --jobs N --vcpus N --max-size B   the workload (default 100000 jobs, 4 vCPUs,\n"
            "                     256K: it keeps running for the whole benchmark)\n"
            "  --no-prealloc      the incoming VMM's RAM (and the raw copy's) is not\n"
            "                     prefaulted: both pay first-touch page faults while copying\n"
            "  --channels N       RAM over N connections of their own, one thread each\n"
            "                     (multifd, 1..%d); each migration is then also compared\n"
            "                     with N raw TCP streams copying the same bytes in parallel\n"
            "  --load N           N CPU-bound threads spin for the whole run (0..64)\n"
            "  --json             one JSON object\n",
            VM_DEFAULT_DOWNTIME_MS, VMSTREAM_CHANNELS_MAX);
}

static int bv_num(const char *name, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (am_parse_u64(s, max, out) != 0 || *out < min) {
        fprintf(stderr, "accmig bench migrate: %s wants a number in %llu..%llu, not '%s'\n", name,
                (unsigned long long)min, (unsigned long long)max, s);
        return -EINVAL;
    }
    return 0;
}

/* 0 ok, 1 help printed, -EINVAL (reported). */
static int bv_parse(int argc, char **argv, struct bv_opts *o)
{
    static const struct option longopts[] = {
        {"ram", required_argument, NULL, 'r'},
        {"rounds", required_argument, NULL, 'n'},
        {"downtime-ms", required_argument, NULL, 'd'},
        {"jobs", required_argument, NULL, 'j'},
        {"vcpus", required_argument, NULL, 'v'},
        {"max-size", required_argument, NULL, 'm'},
        {"json", no_argument, NULL, 'J'},
        {"no-prealloc", no_argument, NULL, 'P'},
        {"channels", required_argument, NULL, 'c'},
        {"load", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t v = 0;
    char why[128];
    int c, ret = 0;

    memset(o, 0, sizeof(*o));
    workload_config_default(&o->wl);
    o->wl.jobs = 100000;
    o->wl.max_size = 256u << 10;
    o->rounds = 7;
    o->downtime_ms = VM_DEFAULT_DOWNTIME_MS;
    optind = 1;
    opterr = 0;
    while (ret == 0 && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'r':
            ret = bv_num("--ram", optarg, VM_RAM_PAGE_SIZE, VM_RAM_MAX_SIZE, &o->ram);
            if (ret == 0 && o->ram % VM_RAM_PAGE_SIZE) {
                fprintf(stderr, "accmig bench migrate: --ram %s is not a multiple of 4 KiB\n",
                        optarg);
                ret = -EINVAL;
            }
            break;
        case 'n':
            ret = bv_num("--rounds", optarg, 1, BV_MAX_ROUNDS, &v);
            o->rounds = (unsigned)v;
            break;
        case 'd':
            ret = bv_num("--downtime-ms", optarg, 1, 60000, &v);
            o->downtime_ms = (uint32_t)v;
            break;
        case 'j':
            ret = bv_num("--jobs", optarg, 1, WORKLOAD_MAX_JOBS, &v);
            o->wl.jobs = (uint32_t)v;
            break;
        case 'v':
            ret = bv_num("--vcpus", optarg, 1, WORKLOAD_MAX_VCPUS, &v);
            o->wl.vcpus = (uint32_t)v;
            break;
        case 'm':
            ret = bv_num("--max-size", optarg, 1, WORKLOAD_MAX_SIZE, &v);
            o->wl.max_size = (uint32_t)v;
            break;
        case 'J': o->json = true; break;
        case 'P': o->no_prealloc = true; break;
        case 'c':
            ret = bv_num("--channels", optarg, 1, VMSTREAM_CHANNELS_MAX, &v);
            o->channels = (unsigned)v;
            break;
        case 'l':
            ret = bench_load_parse("migrate", optarg, &o->load) ? -EINVAL : 0;
            break;
        case 'h': bv_usage(stdout); return 1;
        default:
            fprintf(stderr, "accmig bench migrate: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            ret = -EINVAL;
        }
    }
    if (ret == 0 && optind < argc) {
        fprintf(stderr, "accmig bench migrate: unexpected argument '%s'\n", argv[optind]);
        ret = -EINVAL;
    }
    if (ret == 0 && workload_config_check(&o->wl, why, sizeof(why))) {
        fprintf(stderr, "accmig bench migrate: %s\n", why);
        ret = -EINVAL;
    }
    if (ret == 0 && o->ram < AM_ALIGN_UP(workload_ram_size(&o->wl), VM_RAM_PAGE_SIZE)) {
        fprintf(stderr, "accmig bench migrate: --ram must be at least %llu bytes for the "
                        "workload\n",
                (unsigned long long)AM_ALIGN_UP(workload_ram_size(&o->wl), VM_RAM_PAGE_SIZE));
        ret = -EINVAL;
    }
    if (ret)
        bv_usage(stderr);
    return ret;
}

/* ---- the two hosts' device servers ---- */

static void *bv_server_main(void *arg)
{
    struct bv_server *s = arg;

    s->ret = vfu_server_run(s->srv);
    return NULL;
}

static int bv_server_start(struct bv_server *s, const char *dir)
{
    struct vfu_server_config cfg = {.dir = s->dir};
    int ret;

    snprintf(s->dir, sizeof(s->dir), "%s", dir);
    vfu_device_config_default(&cfg.dev);
    cfg.dev.num_vfs = 1;
    cfg.dev.qps_per_vf = BV_QPS;
    ret = vfu_server_create(&cfg, &s->srv);
    if (ret)
        return ret;
    ret = -pthread_create(&s->th, NULL, bv_server_main, s);
    if (ret) {
        vfu_server_destroy(s->srv);
        return ret;
    }
    s->running = true;
    return 0;
}

static void bv_server_stop(struct bv_server *s)
{
    if (!s->running)
        return;
    vfu_server_stop(s->srv);
    pthread_join(s->th, NULL);
    vfu_server_destroy(s->srv);
    rmdir(s->dir);
    s->running = false;
}

/* ---- the raw copy ---- */

struct bv_raw_stream {
    int fd[2];          /* sender, receiver */
    uint8_t *src, *dst; /* this stream's slice */
    uint64_t len;
    int ret_tx, ret_rx;
    pthread_t tx, rx;
    bool tx_on, rx_on;
};

static void *bv_raw_rx_main(void *arg)
{
    struct bv_raw_stream *r = arg;
    char ack = 1;
    int ret = 0;

    for (uint64_t off = 0; off < r->len && ret == 0; off += BV_CHUNK)
        ret = vm_net_read_full(r->fd[1], r->dst + off, AM_MIN(BV_CHUNK, r->len - off), NULL);
    if (ret == 0)
        ret = vm_net_write_full(r->fd[1], &ack, 1);
    r->ret_rx = ret;
    return NULL;
}

static void *bv_raw_tx_main(void *arg)
{
    struct bv_raw_stream *r = arg;
    char ack;
    int ret = 0;

    for (uint64_t off = 0; off < r->len && ret == 0; off += BV_CHUNK)
        ret = vm_net_write_full(r->fd[0], r->src + off, AM_MIN(BV_CHUNK, r->len - off));
    if (ret == 0)
        ret = vm_net_read_full(r->fd[0], &ack, 1, NULL);
    if (ret != 0)
        vm_net_abort(r->fd[0]);
    r->ret_tx = ret;
    return NULL;
}

/* Copies src's bytes over n loopback TCP connections at once (slice i on
 * connection i, one sending and one receiving thread each) into `into`
 * (NULL: a fresh memfd, prefaulted first when prealloc): MB/s from the first
 * write to the last ack; *cpu_ns the process's CPU time meanwhile. */
static int bv_raw_copy(struct vm_ram *src, struct vm_ram *into, bool prealloc, unsigned n,
                       const struct bench_load *l, double *mb_s, uint64_t *cpu_ns)
{
    struct vm_net_endpoint ep;
    struct bv_raw_stream st[VMSTREAM_CHANNELS_MAX];
    struct vm_ram *dst = into, *fresh = NULL;
    uint64_t size = vm_ram_size(src), pages = size / VM_RAM_PAGE_SIZE, t0, c0;
    int lfd = -1, ret;
    char err[64];

    memset(st, 0, sizeof(st));
    for (unsigned i = 0; i < n; i++)
        st[i].fd[0] = st[i].fd[1] = -1;
    ret = vm_net_endpoint_parse("tcp:127.0.0.1:0", &ep, err, sizeof(err));
    if (!ret)
        ret = vm_net_listen(&ep, &lfd);
    if (!ret)
        ret = vm_net_listen_port(lfd, &ep.port);
    for (unsigned i = 0; i < n && !ret; i++) {
        ret = vm_net_connect(&ep, BV_TIMEOUT_MS, &st[i].fd[0]);
        if (!ret)
            ret = vm_net_accept(lfd, BV_TIMEOUT_MS, &st[i].fd[1]);
        if (!ret)
            ret = vm_net_set_timeout(st[i].fd[0], BV_TIMEOUT_MS);
        if (!ret)
            ret = vm_net_set_timeout(st[i].fd[1], BV_TIMEOUT_MS);
    }
    if (!ret && !into) {
        ret = vm_ram_create(size, &fresh);
        dst = fresh;
        if (!ret && prealloc)
            ret = vm_ram_prealloc(dst); /* as the incoming VMM's RAM */
    }
    if (ret)
        goto out;
    for (unsigned i = 0; i < n; i++) {
        uint64_t first = pages * i / n, last = pages * (i + 1) / n;

        st[i].src = vm_ram_host(src) + first * VM_RAM_PAGE_SIZE;
        st[i].dst = vm_ram_host(dst) + first * VM_RAM_PAGE_SIZE;
        st[i].len = (last - first) * VM_RAM_PAGE_SIZE;
    }
    t0 = am_now_ns();
    c0 = bench_cpu_ns(l);
    for (unsigned i = 0; i < n && !ret; i++) {
        ret = -pthread_create(&st[i].rx, NULL, bv_raw_rx_main, &st[i]);
        st[i].rx_on = ret == 0;
        if (!ret)
            ret = -pthread_create(&st[i].tx, NULL, bv_raw_tx_main, &st[i]);
        st[i].tx_on = ret == 0;
    }
    for (unsigned i = 0; i < n; i++) {
        if (ret && st[i].fd[0] >= 0)
            vm_net_abort(st[i].fd[0]);
        if (st[i].tx_on)
            pthread_join(st[i].tx, NULL);
        if (st[i].rx_on)
            pthread_join(st[i].rx, NULL);
        if (!ret)
            ret = st[i].ret_tx ? st[i].ret_tx : st[i].ret_rx;
    }
    if (ret == 0) {
        *mb_s = (double)size / ((double)(am_now_ns() - t0) / 1e9) / 1e6;
        *cpu_ns = bench_cpu_ns(l) - c0;
    }
out:
    for (unsigned i = 0; i < n; i++) {
        if (st[i].fd[0] >= 0)
            close(st[i].fd[0]);
        if (st[i].fd[1] >= 0)
            close(st[i].fd[1]);
    }
    if (lfd >= 0)
        vm_net_listen_close(&ep, lfd);
    vm_ram_destroy(fresh);
    return ret;
}

/* ---- a migration ---- */

struct bv_incoming {
    struct vm *vm;
    int lfd;
    struct vm_mig_report rep;
    int ret;
};

static void *bv_incoming_main(void *arg)
{
    struct bv_incoming *in = arg;

    in->ret = vm_incoming(in->vm, in->lfd, BV_TIMEOUT_MS, &in->rep);
    return NULL;
}

/* Fills RAM above the workload with incompressible data. */
static void bv_fill(struct vm *vm, uint64_t from)
{
    struct vm_ram *ram = vm_ram_get(vm);
    uint64_t size = vm_ram_size(ram);

    for (uint64_t off = from; off < size; off += BV_CHUNK)
        workload_data_fill(vm_ram_host(ram) + off, AM_MIN(BV_CHUNK, size - off),
                           WORKLOAD_DATA_RANDOM, off);
}

static int bv_vm_create(const struct bv_opts *o, const struct bv_server *host, bool incoming,
                        struct vm **out)
{
    char sock[160];
    struct vm_config cfg = {.attach = sock, .ram_size = o->ram, .wl = o->wl,
                            .timeout_ms = BV_TIMEOUT_MS, .prealloc = incoming && !o->no_prealloc};

    snprintf(sock, sizeof(sock), "%s/vf0.sock", host->dir);
    return vm_create(&cfg, out);
}

/* One round: the guest from *cur to a new VMM on host dst, with a raw copy
 * of its RAM right before and right after; the round's baseline is their
 * mean, so that neither side profits from running first (the guest's load
 * and the kernel's supply of free pages drift). */
static int bv_raw_pair(const struct bv_opts *o, const struct bench_load *l, struct vm *cur,
                       double *raw1, double *rawn, uint64_t *cpu1)
{
    uint64_t cpun = 0;
    int ret;

    usleep(BV_SETTLE_MS * 1000);
    ret = bv_raw_copy(vm_ram_get(cur), NULL, !o->no_prealloc, 1, l, raw1, cpu1);
    if (ret == 0 && o->channels > 0) {
        usleep(BV_SETTLE_MS * 1000);
        ret = bv_raw_copy(vm_ram_get(cur), NULL, !o->no_prealloc, o->channels, l, rawn, &cpun);
    }
    if (ret)
        fprintf(stderr, "accmig bench migrate: raw copy: %s\n", strerror(-ret));
    return ret;
}

static int bv_round(const struct bv_opts *o, const struct bench_load *l,
                    const struct bv_server *dst_host, struct vm **cur, struct bv_round *r)
{
    double raw[2] = {0, 0}, rawn[2] = {0, 0}, rawd[2] = {0, 0};
    uint64_t cpu[2] = {0, 0}, c0, cpu_mig, cpu_d = 0;
    struct bv_incoming in = {.lfd = -1};
    struct vm_mig_opts mo = {.downtime_ms = o->downtime_ms, .timeout_ms = BV_TIMEOUT_MS,
                             .channels = o->channels};
    struct vm_net_endpoint ep;
    struct vm_status st;
    char to[64], err[64];
    pthread_t th;
    int ret;

    if ((ret = bv_raw_pair(o, l, *cur, &raw[0], &rawn[0], &cpu[0])) != 0)
        return ret;
    ret = bv_vm_create(o, dst_host, true, &in.vm);
    if (ret) {
        fprintf(stderr, "accmig bench migrate: destination VMM: %s\n", strerror(-ret));
        return ret;
    }
    /* The same bytes into the memory the migration will write: the
     * incoming VMM's RAM (prefaulted, shared with its device server), which
     * takes them slower than a fresh memfd does. After the migration the
     * mirror image: the guest's bytes into the RAM the source VMM leaves. */
    usleep(BV_SETTLE_MS * 1000);
    ret = bv_raw_copy(vm_ram_get(*cur), vm_ram_get(in.vm), false, 1, l, &rawd[0], &cpu_d);
    if (ret) {
        fprintf(stderr, "accmig bench migrate: raw copy: %s\n", strerror(-ret));
        vm_destroy(in.vm);
        return ret;
    }
    ret = vm_net_endpoint_parse("tcp:127.0.0.1:0", &ep, err, sizeof(err));
    if (!ret)
        ret = vm_net_listen(&ep, &in.lfd);
    if (!ret)
        ret = vm_net_listen_port(in.lfd, &ep.port);
    if (!ret)
        ret = -pthread_create(&th, NULL, bv_incoming_main, &in);
    if (ret) {
        if (in.lfd >= 0)
            vm_net_listen_close(&ep, in.lfd);
        vm_destroy(in.vm);
        return ret;
    }
    snprintf(to, sizeof(to), "tcp:127.0.0.1:%u", ep.port);
    usleep(BV_SETTLE_MS * 1000);
    vm_status_get(*cur, &st);
    r->guest_busy = st.state == VM_RUNNING;
    c0 = bench_cpu_ns(l);
    ret = vm_migrate_out(*cur, to, &mo, &r->rep);
    cpu_mig = bench_cpu_ns(l) - c0;
    if (ret)
        vm_abort(in.vm); /* the destination may still wait for a connection */
    pthread_join(th, NULL);
    vm_net_listen_close(&ep, in.lfd);
    if (ret || in.ret) {
        fprintf(stderr, "accmig bench migrate: migration failed: %s%s%s\n", r->rep.error,
                in.ret ? "; destination: " : "", in.ret ? in.rep.error : "");
        vm_destroy(in.vm);
        return ret ? ret : in.ret;
    }
    r->rep.dest_reported = true; /* in process: take the destination's own figures */
    r->rep.dest_restore_us = in.rep.dest_restore_us;
    r->rep.dest_resume_us = in.rep.dest_resume_us;
    r->rep.dest_guest_us = in.rep.dest_guest_us;
    usleep(BV_SETTLE_MS * 1000);
    ret = bv_raw_copy(vm_ram_get(in.vm), vm_ram_get(*cur), false, 1, l, &rawd[1], &cpu_d);
    vm_destroy(*cur); /* migrated away: its VF was reset */
    *cur = in.vm;
    if (ret) {
        fprintf(stderr, "accmig bench migrate: raw copy: %s\n", strerror(-ret));
        return ret;
    }
    if ((ret = bv_raw_pair(o, l, *cur, &raw[1], &rawn[1], &cpu[1])) != 0)
        return ret;
    r->raw_before_mb_s = raw[0];
    r->raw_after_mb_s = raw[1];
    r->raw_mb_s = (raw[0] + raw[1]) / 2;
    r->rawd_mb_s = (rawd[0] + rawd[1]) / 2;
    r->rawn_mb_s = (rawn[0] + rawn[1]) / 2;
    r->ram_mb_s = (double)r->rep.ram_bytes_per_s / 1e6;
    r->ratio = r->raw_mb_s > 0 ? r->ram_mb_s / r->raw_mb_s : 0;
    r->ratio_n = r->rawn_mb_s > 0 ? r->ram_mb_s / r->rawn_mb_s : 0;
    r->ratio_d = r->rawd_mb_s > 0 ? r->ram_mb_s / r->rawd_mb_s : 0;
    /* CPU per MB: the whole migration (its rounds, collects, device steps)
     * over its RAM bytes, against the raw copies' (the guest's vCPUs run
     * through both). */
    r->cpu_raw_ns_mb = (double)(cpu[0] + cpu[1]) / 2 / ((double)vm_ram_size(vm_ram_get(*cur)) / 1e6);
    r->cpu_mig_ns_mb = r->rep.ram_bytes ? (double)cpu_mig / ((double)r->rep.ram_bytes / 1e6) : 0;
    return 0;
}

/* ---- report ---- */

static int bv_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double bv_median(const struct bv_round *r, unsigned n, double (*get)(const struct bv_round *))
{
    double v[BV_MAX_ROUNDS];

    for (unsigned i = 0; i < n; i++)
        v[i] = get(&r[i]);
    qsort(v, n, sizeof(v[0]), bv_cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double g_raw(const struct bv_round *r) { return r->raw_mb_s; }
static double g_ram(const struct bv_round *r) { return r->ram_mb_s; }
static double g_ratio(const struct bv_round *r) { return r->ratio; }
static double g_down(const struct bv_round *r) { return (double)r->rep.downtime_us / 1e3; }
static double g_total(const struct bv_round *r) { return (double)r->rep.total_us / 1e3; }
static double g_rounds(const struct bv_round *r) { return (double)r->rep.precopy_rounds; }
static double g_rawn(const struct bv_round *r) { return r->rawn_mb_s; }
static double g_ration(const struct bv_round *r) { return r->ratio_n; }
static double g_cpu_raw(const struct bv_round *r) { return r->cpu_raw_ns_mb; }
static double g_rawd(const struct bv_round *r) { return r->rawd_mb_s; }
static double g_ratiod(const struct bv_round *r) { return r->ratio_d; }
static double g_cpu_mig(const struct bv_round *r) { return r->cpu_mig_ns_mb; }

static double bv_min(const struct bv_round *r, unsigned n, double (*get)(const struct bv_round *))
{
    double v = get(&r[0]);

    for (unsigned i = 1; i < n; i++)
        v = AM_MIN(v, get(&r[i]));
    return v;
}

static double bv_max(const struct bv_round *r, unsigned n, double (*get)(const struct bv_round *))
{
    double v = get(&r[0]);

    for (unsigned i = 1; i < n; i++)
        v = AM_MAX(v, get(&r[i]));
    return v;
}

static void bv_print(const struct bv_opts *o, const struct bv_round *r, unsigned n,
                     const struct workload_report *w, bool ok, const double load_avg[2])
{
    double down_max = 0, ratio = bv_median(r, n, g_ratio), down = bv_median(r, n, g_down);

    for (unsigned i = 0; i < n; i++)
        down_max = AM_MAX(down_max, g_down(&r[i]));
    if (o->json) {
        printf("{\"bench\":\"migrate_vm\",\"channels\":%u,\"load_threads\":%u,"
               "\"loadavg_start\":%.2f,\"loadavg_end\":%.2f,\"ratio_min\":%.3f,"
               "\"ratio_max\":%.3f,\"raw_n_mb_s\":%.1f,\"ratio_n\":%.3f,"
               "\"cpu_raw_ns_per_mb\":%.0f,\"cpu_mig_ns_per_mb\":%.0f,\"cpu_ratio\":%.3f,"
               "\"raw_dst_mb_s\":%.1f,\"ratio_dst\":%.3f,",
               o->channels, o->load, load_avg[0], load_avg[1], bv_min(r, n, g_ratio),
               bv_max(r, n, g_ratio), o->channels ? bv_median(r, n, g_rawn) : 0,
               o->channels ? bv_median(r, n, g_ration) : 0, bv_median(r, n, g_cpu_raw),
               bv_median(r, n, g_cpu_mig),
               bv_median(r, n, g_cpu_raw) > 0
                   ? bv_median(r, n, g_cpu_mig) / bv_median(r, n, g_cpu_raw) : 0,
               bv_median(r, n, g_rawd), bv_median(r, n, g_ratiod));
        printf("\"ram_bytes\":%llu,\"rounds\":%u,\"downtime_goal_ms\":%u,"
               "\"prealloc\":%s,"
               "\"vcpus\":%u,\"max_size\":%u,\"raw_mb_s\":%.1f,\"ram_mb_s\":%.1f,\"ratio\":%.3f,"
               "\"total_ms\":%.1f,\"downtime_ms\":%.2f,\"downtime_ms_max\":%.2f,"
               "\"precopy_rounds\":%.0f,\"device_state_bytes\":%llu,\"per_round\":[",
               (unsigned long long)o->ram, n, o->downtime_ms, o->no_prealloc ? "false" : "true",
               o->wl.vcpus, o->wl.max_size,
               bv_median(r, n, g_raw), bv_median(r, n, g_ram), ratio, bv_median(r, n, g_total),
               down, down_max, bv_median(r, n, g_rounds),
               (unsigned long long)r[0].rep.device_state_bytes);
        for (unsigned i = 0; i < n; i++) {
            const struct vm_mig_report *m = &r[i].rep;
            printf("%s{\"raw_mb_s\":%.1f,\"raw_before_mb_s\":%.1f,\"raw_after_mb_s\":%.1f,"
                   "\"ram_mb_s\":%.1f,\"round0_mb_s\":%.1f,\"ratio\":%.3f,"
                   "\"raw_dst_mb_s\":%.1f,\"ratio_dst\":%.3f,\"total_ms\":%.1f,"
                   "\"downtime_us\":%llu,\"pause_us\":%llu,\"quiesce_us\":%llu,\"save_us\":%llu,"
                   "\"final_ram_us\":%llu,\"final_collect_us\":%llu,\"handover_us\":%llu,\"last_pages\":%llu,\"device_send_us\":%llu,"
                   "\"end_to_ack_us\":%llu,\"restore_us\":%llu,\"resume_us\":%llu,"
                   "\"guest_start_us\":%llu,\"precopy_rounds\":%llu,\"guest_busy\":%s}",
                   i ? "," : "", r[i].raw_mb_s, r[i].raw_before_mb_s, r[i].raw_after_mb_s,
                   r[i].ram_mb_s, (double)m->round0_bytes_per_s / 1e6,
                   r[i].ratio, r[i].rawd_mb_s, r[i].ratio_d,
                   (double)m->total_us / 1e3, (unsigned long long)m->downtime_us,
                   (unsigned long long)m->pause_us, (unsigned long long)m->quiesce_us,
                   (unsigned long long)m->save_us, (unsigned long long)m->final_ram_us,
                   (unsigned long long)m->final_collect_us, (unsigned long long)m->handover_us,
                   (unsigned long long)m->final_ram_pages, (unsigned long long)m->device_send_us,
                   (unsigned long long)m->end_us, (unsigned long long)m->dest_restore_us,
                   (unsigned long long)m->dest_resume_us, (unsigned long long)m->dest_guest_us,
                   (unsigned long long)m->precopy_rounds, r[i].guest_busy ? "true" : "false");
        }
        printf("],\"jobs_verified\":%llu,\"ratio_target_met\":%s,\"downtime_target_met\":%s,"
               "\"verdict\":\"%s\"}\n",
               (unsigned long long)w->jobs_verified, ratio >= 0.95 ? "true" : "false",
               down_max < 10.0 ? "true" : "false", ok ? "ok" : "failed");
        fflush(stdout);
        return;
    }
    printf("accmig bench migrate: %llu MiB guest, %u vCPUs of compression jobs up to %u KiB, "
           "%u migrations, downtime goal %u ms, receiving RAM %s\n",
           (unsigned long long)(o->ram >> 20), o->wl.vcpus, o->wl.max_size >> 10, n,
           o->downtime_ms, o->no_prealloc ? "not prefaulted" : "prefaulted");
    printf("  round  raw MB/s  RAM MB/s  ratio  total ms  downtime ms (pause, quiesce+save, last "
           "RAM, dev, END->ack)  precopy rounds\n");
    for (unsigned i = 0; i < n; i++) {
        const struct vm_mig_report *m = &r[i].rep;
        printf("  %5u  %8.1f  %8.1f  %5.3f  %8.1f  %6.2f (%.2f, %.2f, %.2f, %.2f, %.2f)  %llu\n",
               i + 1, r[i].raw_mb_s, r[i].ram_mb_s, r[i].ratio, (double)m->total_us / 1e3,
               (double)m->downtime_us / 1e3, (double)m->pause_us / 1e3,
               (double)(m->quiesce_us + m->save_us) / 1e3, (double)m->final_ram_us / 1e3,
               (double)m->device_send_us / 1e3, (double)m->end_us / 1e3,
               (unsigned long long)m->precopy_rounds);
    }
    printf("  median: RAM %.1f MB/s = %.3f of the raw copy (min %.3f, max %.3f; target 0.95: %s); "
           "downtime %.2f ms, worst %.2f ms (target < 10 ms: %s)\n",
           bv_median(r, n, g_ram), ratio, bv_min(r, n, g_ratio), bv_max(r, n, g_ratio),
           ratio >= 0.95 ? "met" : "NOT met", down, down_max, down_max < 10.0 ? "met" : "NOT met");
    printf("  raw copy into the destination VMM's own RAM: %.1f MB/s, ratio %.3f\n",
           bv_median(r, n, g_rawd), bv_median(r, n, g_ratiod));
    if (o->channels)
        printf("  %u channels: %u raw streams %.1f MB/s, ratio %.3f\n", o->channels, o->channels,
               bv_median(r, n, g_rawn), bv_median(r, n, g_ration));
    printf("  CPU per MB (the guest's included): raw %.0f ns, migration %.0f ns; load average "
           "%.2f at the start, %.2f at the end, %u load threads\n",
           bv_median(r, n, g_cpu_raw), bv_median(r, n, g_cpu_mig), load_avg[0], load_avg[1],
           o->load);
    printf("  guest: %llu jobs verified, %llu failed, %llu duplicated, %llu lost: %s\n",
           (unsigned long long)w->jobs_verified, (unsigned long long)w->jobs_failed,
           (unsigned long long)w->jobs_duplicated, (unsigned long long)w->jobs_lost,
           ok ? "OK" : "FAILED");
}

int bench_vm_migrate_main(int argc, char **argv)
{
    struct bv_server host[2] = {{.ret = 0}};
    struct bv_round *r = NULL;
    struct workload_report w = {0};
    struct bv_opts o;
    struct vm *cur = NULL;
    char dir[64] = "/tmp/accmig-bench-vm-XXXXXX", sub[96];
    struct bench_load *load = NULL;
    double load_avg[2] = {0, 0};
    unsigned done = 0;
    bool ok = false;
    int ret;

    ret = bv_parse(argc, argv, &o);
    if (ret)
        return ret > 0 ? 0 : 2;
    r = calloc(o.rounds, sizeof(*r));
    if (!r || !mkdtemp(dir)) {
        fprintf(stderr, "accmig bench migrate: setup: %s\n", strerror(errno));
        free(r);
        return 2;
    }
    if (bench_load_create("migrate", o.load, &load) != 0)
        ret = -EAGAIN;
    for (int i = 0; i < 2 && ret == 0; i++) {
        snprintf(sub, sizeof(sub), "%s/%c", dir, 'a' + i);
        ret = bv_server_start(&host[i], sub);
    }
    if (ret == 0)
        ret = bv_vm_create(&o, &host[0], false, &cur);
    if (ret == 0) {
        bv_fill(cur, AM_ALIGN_UP(workload_ram_size(&o.wl), VM_RAM_PAGE_SIZE));
        ret = vm_guest_start(cur);
    }
    if (ret) {
        fprintf(stderr, "accmig bench migrate: setup: %s\n", strerror(-ret));
        goto out;
    }
    usleep(BV_WARMUP_MS * 1000);
    getloadavg(&load_avg[0], 1);
    for (; done < o.rounds; done++) {
        ret = bv_round(&o, load, &host[(done + 1) % 2], &cur, &r[done]);
        if (ret)
            break;
    }
    getloadavg(&load_avg[1], 1);
    if (vm_guest_poll(cur) == VM_RUNNING || vm_guest_poll(cur) == VM_FINISHED)
        vm_guest_shutdown(cur);
    if (vm_guest_report(cur, &w) == 0)
        ok = ret == 0 && w.jobs_verified > 0 && w.jobs_failed == 0 && w.jobs_duplicated == 0 &&
             w.jobs_lost == 0 && w.stray_completions == 0 && w.driver.bad_cqes == 0;
    if (done > 0)
        bv_print(&o, r, done, &w, ok, load_avg);
out:
    vm_destroy(cur);
    bv_server_stop(&host[0]);
    bv_server_stop(&host[1]);
    rmdir(dir);
    free(r);
    bench_load_destroy(load);
    return ret && done == 0 ? 2 : ok ? 0 : 1;
}
