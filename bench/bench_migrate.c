/* accmig bench migrate: what migrating a VF costs the device, under load.
 *
 * Two hosts (device instances, vmm/migrate_inproc.h) serve ONE guest RAM
 * (shared-RAM mode: nothing is copied, only the device moves), so what is
 * measured is the device's part alone. The guest is a QM/ZIP driver (guest.h)
 * on the controlling thread with `qps` compression queues; in the busy runs
 * it keeps `depth` large jobs (1 MiB..8 MiB inputs, log-uniform) on every
 * queue, so each queue holds work at every pause and the workers are in the
 * middle of a job when PAUSE_QM cancels it (the job runs again on the other
 * side). Between two migrations the device runs for `interval` and the guest
 * reaps and refills; then the guest is migrated to the other host.
 *
 * Per migration:
 *  - device downtime: from the source's STOP_COPY request (PRE_COPY ->
 *    PRE_COPY_P2P quiesce, -> STOP_COPY save, the stream read) to the
 *    destination RUNNING (stream written, RESUMING -> STOP restore, -> RUNNING
 *    resume), wall clock; RAM copy excluded by construction;
 *  - its parts as the migration driver times them (mig_timing_get);
 *  - the device-state bytes.
 * The baseline, measured in the same run right before: the same VF and
 * queues with no job in flight (idle). At the end every job must have
 * completed exactly once with a good status (else exit 1).
 *
 * With --load N, N CPU-bound threads (bench.h) spin from before the first
 * migration of the run to after its last: idle baseline and busy runs alike
 * are on a loaded host.
 *
 * Output: one JSON line per configuration (hw, qps, load), each with
 * "load_threads"; every time is given as p50, p99 and max.
 */
#include "bench.h"
#include "bench_migrate.h"
#include "bench_vm.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "guest/guest.h"
#include "guest/workload.h"
#include "qm/qm_debug.h"
#include "vmm/migrate_inproc.h"

#define BM_VF 1u
#define BM_STATE_GPA 0x10000ull
#define BM_MAX_LIST 8u
#define BM_MAX_MIGRATIONS 100000u
#define BM_DRAIN_NS (300ull * 1000000000ull)

struct bm_opts {
    unsigned migrations;
    unsigned qps[BM_MAX_LIST], nqps;
    enum mig_hw_mode hw[2];
    unsigned nhw;
    uint32_t min_size, max_size;
    unsigned depth;
    unsigned interval_us;
    unsigned workers;
    uint64_t seed;
    unsigned load; /* CPU-bound threads beside the run (--load) */
};

static void bm_usage(FILE *f)
{
    fprintf(f,
            "usage: accmig bench migrate [options]\n"
            "  Device-state bytes and device downtime (source quiesce to destination RUNNING)\n"
            "  of VF migrations with large jobs on every queue, against idle migrations of the\n"
            "  same VF in the same run. One JSON line per configuration.\n"
            "  --migrations N   migrations per configuration (default 200)\n"
            "  --qps LIST       queue pairs in use, comma-separated (default 1,16,64)\n"
            "  --hw LIST        migration control path: v4 (PF window), v3 (VF BAR + shared\n"
            "                   mailbox) (default v4,v3)\n"
            "  --min-size B     smallest job input (default 1M)\n"
            "  --max-size B     largest job input (default 8M, the most a request may name)\n"
            "  --depth N        jobs kept in flight per queue (default 2)\n"
            "  --interval-us N  device run time between migrations (default 5000)\n"
            "  --workers N      device job worker threads (default 2)\n"
            "  --seed N         job size sequence (default 1)\n"
            "  --load N         N CPU-bound threads spin for the whole run, baseline\n"
            "                   included (0..64, default 0)\n"
            "  --json           accepted; JSON lines are the only output\n"
            "  --ram SIZE       whole-VM migration over TCP instead (another benchmark)\n");
}

static int bm_parse_list(const char *s, unsigned *out, unsigned *n)
{
    char buf[128], *save = NULL, *tok;

    if (strlen(s) >= sizeof(buf))
        return -EINVAL;
    strcpy(buf, s);
    *n = 0;
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        uint64_t v;

        if (*n >= BM_MAX_LIST || am_parse_u64(tok, QM_MAX_QPS_PER_VF, &v) || v == 0)
            return -EINVAL;
        out[(*n)++] = (unsigned)v;
    }
    return *n > 0 ? 0 : -EINVAL;
}

static int bm_parse_hw(const char *s, struct bm_opts *o)
{
    char buf[32], *save = NULL, *tok;

    if (strlen(s) >= sizeof(buf))
        return -EINVAL;
    strcpy(buf, s);
    o->nhw = 0;
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (o->nhw >= 2)
            return -EINVAL;
        if (strcmp(tok, "v4") == 0)
            o->hw[o->nhw++] = MIG_HW_V4;
        else if (strcmp(tok, "v3") == 0)
            o->hw[o->nhw++] = MIG_HW_V3;
        else
            return -EINVAL;
    }
    return o->nhw > 0 ? 0 : -EINVAL;
}

/* 0 ok, 1 help printed, -EINVAL bad usage (already reported). */
static int bm_parse(int argc, char **argv, struct bm_opts *o)
{
    enum { O_MIG = 1, O_QPS, O_HW, O_MIN, O_MAX, O_DEPTH, O_INTERVAL, O_WORKERS, O_SEED, O_LOAD, O_JSON, O_HELP };
    static const struct option lo[] = {
        {"migrations", required_argument, NULL, O_MIG},
        {"qps", required_argument, NULL, O_QPS},
        {"hw", required_argument, NULL, O_HW},
        {"min-size", required_argument, NULL, O_MIN},
        {"max-size", required_argument, NULL, O_MAX},
        {"depth", required_argument, NULL, O_DEPTH},
        {"interval-us", required_argument, NULL, O_INTERVAL},
        {"workers", required_argument, NULL, O_WORKERS},
        {"seed", required_argument, NULL, O_SEED},
        {"load", required_argument, NULL, O_LOAD},
        {"json", no_argument, NULL, O_JSON},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    uint64_t v = 0;
    int c, bad = 0;

    memset(o, 0, sizeof(*o));
    o->migrations = 200;
    o->qps[0] = 1, o->qps[1] = 16, o->qps[2] = 64, o->nqps = 3;
    o->hw[0] = MIG_HW_V4, o->hw[1] = MIG_HW_V3, o->nhw = 2;
    o->min_size = 1u << 20;
    o->max_size = 8u << 20;
    o->depth = 2;
    o->interval_us = 5000;
    o->workers = 2;
    o->seed = 1;
    optind = 1;
    opterr = 0;
    while (!bad && (c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case O_MIG:
            bad = am_parse_u64(optarg, BM_MAX_MIGRATIONS, &v) || v == 0;
            o->migrations = (unsigned)v;
            break;
        case O_QPS: bad = bm_parse_list(optarg, o->qps, &o->nqps) != 0; break;
        case O_HW: bad = bm_parse_hw(optarg, o) != 0; break;
        case O_MIN:
            bad = am_parse_u64(optarg, ZIP_MAX_REQUEST, &v) || v == 0;
            o->min_size = (uint32_t)v;
            break;
        case O_MAX:
            bad = am_parse_u64(optarg, ZIP_MAX_REQUEST, &v) || v == 0;
            o->max_size = (uint32_t)v;
            break;
        case O_DEPTH:
            bad = am_parse_u64(optarg, 64, &v) || v == 0;
            o->depth = (unsigned)v;
            break;
        case O_INTERVAL:
            bad = am_parse_u64(optarg, 10000000, &v);
            o->interval_us = (unsigned)v;
            break;
        case O_WORKERS:
            bad = am_parse_u64(optarg, 64, &v) || v == 0;
            o->workers = (unsigned)v;
            break;
        case O_SEED: bad = am_parse_u64(optarg, UINT64_MAX, &o->seed) != 0; break;
        case O_LOAD:
            if (bench_load_parse("migrate", optarg, &o->load))
                return -EINVAL;
            break;
        case O_JSON: break;
        case O_HELP: bm_usage(stdout); return 1;
        default:
            fprintf(stderr, "accmig bench migrate: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            bm_usage(stderr);
            return -EINVAL;
        }
    }
    if (bad) {
        fprintf(stderr, "accmig bench migrate: bad value '%s' for %s\n", optarg, argv[optind - 1]);
        return -EINVAL;
    }
    if (optind < argc) {
        fprintf(stderr, "accmig bench migrate: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    if (o->min_size > o->max_size) {
        fprintf(stderr, "accmig bench migrate: --min-size is above --max-size\n");
        return -EINVAL;
    }
    return 0;
}

/* ---- the guest: a driver on the controlling thread ---- */

struct bm_guest {
    const struct bm_opts *o;
    struct vm_ram *ram;
    struct vmm_mig_host *host[2];
    unsigned at;      /* the host the guest runs on */
    unsigned qps;
    bool busy;        /* keep jobs on every queue */
    struct guest_vf *vf;
    uint64_t in_gpa, out_gpa, out_cap;
    uint64_t rng;
    uint8_t *done;    /* completions per tag */
    uint64_t tags, tags_cap;
    uint64_t completions, bad_status, bad_tag;
    unsigned busy_qps_at_pause, executing_at_pause;
};

static void bm_on_complete(void *opaque, const struct guest_vf_completion *c)
{
    struct bm_guest *g = opaque;

    g->completions++;
    if (c->tag >= g->tags) {
        g->bad_tag++;
        return;
    }
    if (g->done[c->tag] < UINT8_MAX)
        g->done[c->tag]++;
    if (c->status != 0)
        g->bad_status++;
}

/* Log-uniform in [min, max] by power-of-two bands: a band, then a size in it. */
static uint32_t bm_job_size(struct bm_guest *g)
{
    uint32_t lo = g->o->min_size, hi = g->o->max_size, a, b;
    unsigned blo = 31 - (unsigned)__builtin_clz(lo), bhi = 31 - (unsigned)__builtin_clz(hi), band;

    g->rng = g->rng * 6364136223846793005ull + 1442695040888963407ull;
    band = blo + (unsigned)((g->rng >> 33) % (bhi - blo + 1));
    a = AM_MAX(lo, 1u << band);
    b = band >= 31 ? hi : AM_MIN(hi, (2u << band) - 1);
    g->rng = g->rng * 6364136223846793005ull + 1442695040888963407ull;
    return a + (uint32_t)((g->rng >> 33) % ((uint64_t)b - a + 1));
}

static int bm_submit(struct bm_guest *g, unsigned q)
{
    struct guest_zip_req req = {
        .type = ZIP_REQ_DEFLATE, .buf_type = ZIP_BUF_FLAT,
        .src = g->in_gpa, .dst = g->out_gpa + (uint64_t)q * g->out_cap,
        .in_len = bm_job_size(g), .dest_avail = (uint32_t)g->out_cap, .window = 4,
    };
    uint32_t sqe[ZIP_SQE_DWORDS];
    int ret;

    if (g->tags == g->tags_cap) {
        uint64_t cap = g->tags_cap ? g->tags_cap * 2 : 1024;
        uint8_t *d = realloc(g->done, cap);

        if (!d)
            return -ENOMEM;
        memset(d + g->tags_cap, 0, cap - g->tags_cap);
        g->done = d;
        g->tags_cap = cap;
    }
    req.tag = g->tags;
    ret = guest_zip_sqe_build(sqe, &req);
    if (!ret)
        ret = guest_vf_submit(g->vf, q, sqe);
    if (!ret)
        g->tags++;
    return ret;
}

/* Reap what completed, then refill every queue to depth. */
static int bm_refill(struct bm_guest *g)
{
    int ret = guest_vf_poll(g->vf, 0);

    if (ret < 0 || !g->busy)
        return ret < 0 ? ret : 0;
    for (unsigned q = 0; q < g->qps; q++)
        while (guest_vf_qp_inflight(g->vf, q) < g->o->depth)
            if ((ret = bm_submit(g, q)))
                return ret;
    return 0;
}

static int bm_pause(void *opaque)
{
    struct bm_guest *g = opaque;
    struct qm_fn_debug fd;
    int ret = guest_vf_poll(g->vf, 0);

    if (ret < 0)
        return ret;
    g->busy_qps_at_pause = 0;
    for (unsigned q = 0; q < g->qps; q++)
        g->busy_qps_at_pause += guest_vf_qp_inflight(g->vf, q) > 0;
    g->executing_at_pause =
        qm_debug_fn(vmm_mig_host_dev(g->host[g->at]), BM_VF, &fd) == 0 ? fd.jobs_inflight : 0;
    return 0;
}

static int bm_resume(void *opaque, const struct guest_ram *ram, const struct vf_io *io)
{
    struct bm_guest *g = opaque;
    struct guest_vf *vf;
    int ret;

    if (!ram)
        return 0;
    ret = guest_vf_attach(io, ram, BM_STATE_GPA, &vf);
    if (ret)
        return ret;
    guest_vf_detach(g->vf);
    g->vf = vf;
    guest_vf_set_complete_cb(vf, bm_on_complete, g);
    g->at ^= 1;
    return 0;
}

/* ---- one configuration ---- */

struct bm_samples {
    double *stop_to_run, *sum, *quiesce, *save, *restore, *resume, *guest;
    uint64_t state_min, state_max;
    unsigned busy_min, busy_sum, exec_sum, n;
};

static int bm_samples_alloc(struct bm_samples *s, unsigned n)
{
    double **all[] = {&s->stop_to_run, &s->sum, &s->quiesce, &s->save, &s->restore, &s->resume,
                      &s->guest};

    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < AM_ARRAY_SIZE(all); i++)
        if (!(*all[i] = calloc(n, sizeof(double))))
            return -ENOMEM;
    s->state_min = UINT64_MAX;
    s->busy_min = UINT32_MAX;
    return 0;
}

static void bm_samples_free(struct bm_samples *s)
{
    free(s->stop_to_run);
    free(s->sum);
    free(s->quiesce);
    free(s->save);
    free(s->restore);
    free(s->resume);
    free(s->guest);
}

static void bm_samples_add(struct bm_samples *s, const struct vmm_mig_stats *st, const struct bm_guest *g)
{
    unsigned i = s->n++;

    s->stop_to_run[i] = (double)st->stop_to_run_ns / 1e3;
    s->sum[i] = (double)st->device_downtime_ns / 1e3;
    s->quiesce[i] = (double)st->quiesce_ns / 1e3;
    s->save[i] = (double)st->save_ns / 1e3;
    s->restore[i] = (double)st->restore_ns / 1e3;
    s->resume[i] = (double)st->resume_ns / 1e3;
    s->guest[i] = (double)st->downtime_ns / 1e3;
    s->state_min = AM_MIN(s->state_min, st->device_state_bytes);
    s->state_max = AM_MAX(s->state_max, st->device_state_bytes);
    s->busy_min = AM_MIN(s->busy_min, g->busy_qps_at_pause);
    s->busy_sum += g->busy_qps_at_pause;
    s->exec_sum += g->executing_at_pause;
}

struct bm_result {
    struct bench_spread down, sum, q, s, r, u, g;
    uint64_t state_min, state_max;
    unsigned busy_min;
    double busy_mean, exec_mean;
    uint64_t jobs, completions, bad_status;
    bool exactly_once;
    unsigned failed_migrations;
};

static void bm_summarise(struct bm_samples *s, struct bm_result *r)
{
    unsigned n = s->n;

    bench_spread(s->stop_to_run, n, &r->down);
    bench_spread(s->sum, n, &r->sum);
    bench_spread(s->quiesce, n, &r->q);
    bench_spread(s->save, n, &r->s);
    bench_spread(s->restore, n, &r->r);
    bench_spread(s->resume, n, &r->u);
    bench_spread(s->guest, n, &r->g);
    r->state_min = s->state_min;
    r->state_max = s->state_max;
    r->busy_min = s->busy_min;
    r->busy_mean = (double)s->busy_sum / n;
    r->exec_mean = (double)s->exec_sum / n;
}

/* Polls until no job is in flight; then every tag must have completed once. */
static int bm_drain(struct bm_guest *g, struct bm_result *r)
{
    uint64_t deadline = am_now_ns() + BM_DRAIN_NS;
    struct timespec ts = {0, 200000};
    unsigned left;

    g->busy = false;
    do {
        int ret = guest_vf_poll(g->vf, 0);

        if (ret < 0)
            return ret;
        left = 0;
        for (unsigned q = 0; q < g->qps; q++)
            left += guest_vf_qp_inflight(g->vf, q);
        if (left)
            nanosleep(&ts, NULL);
    } while (left && am_now_ns() < deadline);
    r->jobs = g->tags;
    r->completions = g->completions;
    r->bad_status = g->bad_status + g->bad_tag;
    r->exactly_once = left == 0 && g->bad_tag == 0 && g->bad_status == 0;
    for (uint64_t t = 0; t < g->tags; t++)
        r->exactly_once = r->exactly_once && g->done[t] == 1;
    return left ? -ETIMEDOUT : 0;
}

static int bm_hosts_create(const struct bm_opts *o, enum mig_hw_mode hw, unsigned qps,
                           struct vm_ram *ram, struct vmm_mig_host **h)
{
    struct vmm_mig_host_config hc;
    int ret;

    vmm_mig_host_config_default(&hc);
    hc.dev.num_vfs = 1;
    hc.dev.qps_per_vf = AM_MAX(qps, 2u); /* the model's smallest VF has 2 */
    hc.dev.revision = hw == MIG_HW_V4 ? QM_REV_V4 : QM_REV_V3;
    hc.dev.workers = o->workers;
    hc.vf_fn = BM_VF;
    hc.mode = hw;
    ret = vmm_mig_host_create(&hc, ram, &h[0]);
    if (!ret)
        ret = vmm_mig_host_create(&hc, ram, &h[1]);
    return ret;
}

static int bm_run(const struct bm_opts *o, enum mig_hw_mode hw, unsigned qps, bool busy,
                  struct bm_result *r)
{
    struct bm_guest g;
    struct bm_samples s;
    struct vmm_mig_config mc;
    struct vmm_mig_guest ops = {bm_pause, bm_resume, &g};
    struct vmm_mig_stats *st = malloc(sizeof(*st));
    struct timespec iv = {o->interval_us / 1000000u, (long)(o->interval_us % 1000000u) * 1000L};
    uint64_t state_len = AM_ALIGN_UP(guest_vf_state_size(AM_MAX(qps, 2u)), VM_RAM_PAGE_SIZE);
    int ret;

    memset(&g, 0, sizeof(g));
    memset(r, 0, sizeof(*r));
    g.o = o;
    g.qps = qps;
    g.busy = busy;
    g.rng = o->seed;
    /* Output room per queue: as much as one request may name (text-like
     * input compresses about 3:1); only the pages a job writes are ever
     * allocated. */
    g.out_cap = ZIP_MAX_REQUEST;
    g.in_gpa = BM_STATE_GPA + state_len;
    g.out_gpa = g.in_gpa + AM_ALIGN_UP((uint64_t)o->max_size, VM_RAM_PAGE_SIZE);
    ret = bm_samples_alloc(&s, o->migrations);
    if (!ret && !st)
        ret = -ENOMEM;
    if (!ret)
        ret = vm_ram_create(g.out_gpa + qps * g.out_cap, &g.ram);
    if (!ret)
        ret = bm_hosts_create(o, hw, qps, g.ram, g.host);
    if (!ret) {
        const struct guest_ram *gr = vm_ram_guest(g.ram);

        workload_data_fill(gr->host + g.in_gpa, o->max_size, WORKLOAD_DATA_TEXT, o->seed);
        ret = guest_vf_init(vmm_mig_host_io(g.host[0]), gr, BM_STATE_GPA, state_len, &g.vf);
    }
    if (!ret) {
        guest_vf_set_complete_cb(g.vf, bm_on_complete, &g);
        for (unsigned q = 0; q < qps && !ret; q++)
            ret = guest_vf_qp_start(g.vf, q, ZIP_ALG_COMPRESS);
    }
    vmm_mig_config_default(&mc);
    for (unsigned i = 0; i < o->migrations && !ret; i++) {
        ret = bm_refill(&g);
        nanosleep(&iv, NULL);
        if (!ret)
            ret = bm_refill(&g);
        if (ret)
            break;
        ret = vmm_mig_run(g.host[g.at], g.host[g.at ^ 1], &ops, &mc, st);
        if (ret) {
            fprintf(stderr, "accmig bench migrate: migration %u failed at %s: %s\n", i + 1,
                    vmm_mig_step_name(st->failed_step), st->error);
            r->failed_migrations++;
            ret = 0; /* the guest carries on at the source; the run goes on */
            continue;
        }
        bm_samples_add(&s, st, &g);
    }
    if (!ret && s.n == 0)
        ret = -EIO;
    if (!ret)
        bm_summarise(&s, r);
    if (g.vf) {
        int dret = bm_drain(&g, r);

        if (!ret)
            ret = dret;
        guest_vf_detach(g.vf);
    }
    vmm_mig_host_destroy(g.host[0]);
    vmm_mig_host_destroy(g.host[1]);
    vm_ram_destroy(g.ram);
    bm_samples_free(&s);
    free(g.done);
    free(st);
    return ret;
}

/* One time as "<name>_p50_us","<name>_p99_us","<name>_max_us". */
static void bm_print_spread(const char *name, const struct bench_spread *v)
{
    printf(",\"%s_p50_us\":%.1f,\"%s_p99_us\":%.1f,\"%s_max_us\":%.1f", name, v->p50, name,
           v->p99, name, v->max);
}

static void bm_print(const struct bm_opts *o, enum mig_hw_mode hw, unsigned qps, bool busy,
                     const struct bm_result *r, const struct bm_result *idle)
{
    printf("{\"bench\":\"migrate\",\"hw\":\"%s\",\"qps\":%u,\"vf_qps\":%u,\"load\":\"%s\","
           "\"load_threads\":%u,\"migrations\":%u,\"failed_migrations\":%u,\"min_size\":%u,"
           "\"max_size\":%u,\"depth\":%u,\"interval_us\":%u,\"workers\":%u,"
           "\"state_bytes\":%llu,\"state_bytes_max\":%llu",
           hw == MIG_HW_V4 ? "v4" : "v3", qps, AM_MAX(qps, 2u), busy ? "busy" : "idle", o->load,
           o->migrations, r->failed_migrations, busy ? o->min_size : 0, busy ? o->max_size : 0,
           busy ? o->depth : 0, o->interval_us, o->workers, (unsigned long long)r->state_min,
           (unsigned long long)r->state_max);
    bm_print_spread("downtime", &r->down);
    bm_print_spread("parts_sum", &r->sum);
    bm_print_spread("quiesce", &r->q);
    bm_print_spread("save", &r->s);
    bm_print_spread("restore", &r->r);
    bm_print_spread("resume", &r->u);
    bm_print_spread("guest_pause", &r->g);
    printf(",\"busy_qps_min\":%u,\"busy_qps_mean\":%.1f,\"executing_mean\":%.2f,"
           "\"jobs\":%llu,\"completions\":%llu,\"bad_completions\":%llu,\"exactly_once\":%s",
           r->busy_min, r->busy_mean, r->exec_mean, (unsigned long long)r->jobs,
           (unsigned long long)r->completions, (unsigned long long)r->bad_status,
           r->exactly_once ? "true" : "false");
    if (idle)
        printf(",\"idle_p50_us\":%.1f,\"idle_p99_us\":%.1f,\"idle_max_us\":%.1f,"
               "\"load_ratio_p50\":%.2f,\"load_ratio_p99\":%.2f,\"load_ratio_max\":%.2f",
               idle->down.p50, idle->down.p99, idle->down.max,
               idle->down.p50 > 0 ? r->down.p50 / idle->down.p50 : 0.0,
               idle->down.p99 > 0 ? r->down.p99 / idle->down.p99 : 0.0,
               idle->down.max > 0 ? r->down.max / idle->down.max : 0.0);
    printf(",\"state_target_met\":%s,\"downtime_target_met\":%s}\n",
           r->state_max <= 512 ? "true" : "false", r->down.p99 < 1000.0 ? "true" : "false");
    fflush(stdout);
}

int bench_migrate_main(int argc, char **argv)
{
    struct bm_opts o;
    struct bench_load *load;
    int ret, failed = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ram") == 0 || strncmp(argv[i], "--ram=", 6) == 0) {
            return bench_vm_migrate_main(argc, argv); /* whole-VM migration, bench_vm.h */
        }
    }
    ret = bm_parse(argc, argv, &o);
    if (ret)
        return ret > 0 ? 0 : 2;
    if (bench_load_create("migrate", o.load, &load))
        return 2;
    for (unsigned h = 0; h < o.nhw && !ret; h++) {
        for (unsigned i = 0; i < o.nqps && !ret; i++) {
            struct bm_result idle, busy;

            ret = bm_run(&o, o.hw[h], o.qps[i], false, &idle);
            if (!ret) {
                bm_print(&o, o.hw[h], o.qps[i], false, &idle, NULL);
                ret = bm_run(&o, o.hw[h], o.qps[i], true, &busy);
            }
            if (!ret)
                bm_print(&o, o.hw[h], o.qps[i], true, &busy, &idle);
            if (ret) {
                fprintf(stderr, "accmig bench migrate: %s, %u qps: %s\n",
                        o.hw[h] == MIG_HW_V4 ? "v4" : "v3", o.qps[i], strerror(-ret));
                break;
            }
            failed |= !idle.exactly_once || !busy.exactly_once || idle.failed_migrations ||
                      busy.failed_migrations;
        }
    }
    bench_load_destroy(load);
    if (ret)
        return ret == -ENOMEM || ret == -ENODEV || ret == -EINVAL ? 2 : 1;
    return failed ? 1 : 0;
}
