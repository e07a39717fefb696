/* accmig demo: run the guest workload on a VF of the device model and
 * check every job, exactly-once per tag: ZIP (zlib + the device's own
 * inflate), or with --engine sec|hpre the crypto jobs checked against
 * libcrypto (guest/workload.h).
 *
 * The run is built from three pieces so that live migration slots in
 * without rewriting it:
 *  - a vmm_inproc_host is one device instance (irq router + qm_dev + the
 *    VF's transport) serving a guest RAM; migration adds a second one;
 *  - the guest (vm_ram + workload) knows its VF only through a vf_io, and
 *    can be paused at a step boundary and resumed on another host's VF with
 *    workload_vcpus_resume (RAM copy + device state via mig.h in between);
 *  - demo_report prints what the workload's job table in guest RAM says,
 *    plus a migration_log array (one object per migration).
 * Exit: 0 when every job verified exactly once, 1 when a check failed, 2 for
 * bad usage or a setup failure.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "cli/demo_hosts.h"
#include "common/common.h"
#include "guest/workload.h"
#include "qm/qm.h"
#include "qm/qm_engine.h"
#include "vmm/inproc.h"
#include "vmm/migrate_inproc.h"
#include "vmm/vm_ram.h"

#define DEMO_VF_FN 1u /* the guest gets the first VF */
#define DEMO_WAIT_SLICE_MS 200

enum demo_transport { DEMO_INPROC = 0, DEMO_VFIO_USER = 1 };

struct demo_opts {
    struct workload_config wl;
    unsigned migrations;
    enum demo_transport transport;
    unsigned workers; /* device job workers */
    int json;
    const char *save_dir; /* --save-state: each migration's device state */
};

struct demo_run {
    struct demo_opts opts;
    struct vm_ram *ram;
    struct vmm_inproc_host host; /* the device instance the guest runs on */
    struct workload *w;
    struct vm_ram *peer_ram;        /* with --migrations: host B's RAM */
    struct vmm_mig_host *mig[2];    /* A (wraps host) and B, between which the guest moves */
    uint64_t elapsed_ns;
    json_object *migration_log; /* array, one object per migration */
};

static void demo_usage(FILE *f)
{
    fprintf(f,
            "usage: accmig demo [options]\n"
            "  Run a workload through a VF of the device model and verify every job,\n"
            "  exactly once per tag (ZIP: zlib inflate + device decompression; SEC and\n"
            "  HPRE: both operations of a job against libcrypto).\n"
            "  --engine E          zip (default) | sec (AES-CBC/CTR/XTS/GCM encrypt, then\n"
            "                      decrypt) | hpre (RSA public + CRT, DH-2048, X25519)\n"
            "  --jobs N            jobs to run (default 2000)\n"
            "  --qps N             queues used, even: half compress, half decompress (default 4)\n"
            "  --vcpus N           guest vCPU threads (default 4)\n"
            "  --min-size BYTES    smallest input (default 1K)\n"
            "  --max-size BYTES    largest input (default 1M; at most 4M)\n"
            "  --seed N            data and job mix seed (default 1)\n"
            "  --sgl-percent N     share of jobs on hardware SGLs (default 25)\n"
            "  --stream-percent N  share of stream jobs: one stream compressed in 4-16\n"
            "                      pieces, a stream-mode SQE each (default 0)\n"
            "  --workers N         device job worker threads (default 2)\n"
            "  --migrations M      live migrations during the run, alternating between two\n"
            "                      device instances A and B (default 0)\n"
            "  --save-state DIR    write each migration's device state to DIR/migration-<n>.bin\n"
            "  --transport T       inproc | vfio-user (only inproc for now)\n"
            "  --guests N          1 here: several guests migrated at once are the\n"
            "                      multi-process demo's (accmig demo --guests N)\n"
            "  --json              print one JSON object instead of the summary\n"
            "Exit status: 0 every job verified, 1 a check failed, 2 usage or setup error.\n");
}

enum {
    OPT_WORKERS = 1, OPT_MIGRATIONS, OPT_TRANSPORT, OPT_JSON, OPT_HELP, OPT_SAVE, OPT_GUESTS,
};

/* 0 ok, 1 help printed, -EINVAL bad usage (already reported). */
static int demo_parse(int argc, char **argv, struct demo_opts *o)
{
    static const struct option longopts[] = {
        CLI_OPTS_WORKLOAD_LONGOPTS,
        {"workers", required_argument, NULL, OPT_WORKERS},
        {"migrations", required_argument, NULL, OPT_MIGRATIONS},
        {"transport", required_argument, NULL, OPT_TRANSPORT},
        {"json", no_argument, NULL, OPT_JSON},
        {"save-state", required_argument, NULL, OPT_SAVE},
        {"guests", required_argument, NULL, OPT_GUESTS},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    char why[128];
    uint64_t v = 0;
    int c, ret = 0;

    memset(o, 0, sizeof(*o));
    workload_config_default(&o->wl);
    o->workers = 2;
    optind = 1;
    opterr = 0;
    while (ret == 0 && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_WORKERS:
            ret = cli_opt_num("demo", "--workers", optarg, 1, 64, &v);
            o->workers = (unsigned)v;
            break;
        case OPT_MIGRATIONS:
            ret = cli_opt_num("demo", "--migrations", optarg, 0, 1000, &v);
            o->migrations = (unsigned)v;
            break;
        case OPT_TRANSPORT:
            if (strcmp(optarg, "inproc") == 0) {
                o->transport = DEMO_INPROC;
            } else if (strcmp(optarg, "vfio-user") == 0) {
                o->transport = DEMO_VFIO_USER;
            } else {
                fprintf(stderr, "accmig demo: --transport is inproc or vfio-user, not '%s'\n", optarg);
                ret = -EINVAL;
            }
            break;
        case OPT_GUESTS:
            /* One device model in this process runs one guest; the
             * concurrent migrations of several live in demo_hosts.c. */
            ret = cli_opt_num("demo", "--guests", optarg, 1, UINT32_MAX, &v);
            if (ret == 0 && v != 1) {
                fprintf(stderr, "accmig demo: --guests %s is for the multi-process demo (drop "
                                "--transport inproc); the in-process demo runs one guest\n",
                        optarg);
                ret = -EINVAL;
            }
            break;
        case OPT_JSON: o->json = 1; break;
        case OPT_SAVE: o->save_dir = optarg; break;
        case OPT_HELP: demo_usage(stdout); return 1;
        default:
            ret = cli_opt_workload("demo", c, optarg, &o->wl);
            if (ret == -ENOENT) {
                fprintf(stderr, "accmig demo: unknown or incomplete option '%s'\n", argv[optind - 1]);
                ret = -EINVAL;
            }
        }
    }
    if (ret == 0 && optind < argc) {
        fprintf(stderr, "accmig demo: unexpected argument '%s'\n", argv[optind]);
        ret = -EINVAL;
    }
    if (ret == 0 && workload_config_check(&o->wl, why, sizeof(why))) {
        fprintf(stderr, "accmig demo: %s\n", why);
        ret = -EINVAL;
    }
    if (ret == 0 && o->save_dir && mkdir(o->save_dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "accmig demo: --save-state %s: %s\n", o->save_dir, strerror(errno));
        ret = -EINVAL;
    }
    if (ret == 0 && o->transport == DEMO_VFIO_USER) {
        fprintf(stderr, "accmig demo: --transport vfio-user is not wired into the demo yet; "
                        "use --transport inproc\n");
        ret = -EINVAL;
    }
    if (ret)
        demo_usage(stderr);
    return ret;
}

/* A device instance with enough queues per VF, the guest's VF attached. */
/* The device engine that serves a workload of engine e (enum guest_engine). */
static enum qm_engine_type demo_qm_engine(uint32_t e)
{
    return e == GUEST_ENGINE_SEC ? QM_ENGINE_SEC : e == GUEST_ENGINE_HPRE ? QM_ENGINE_HPRE
                                                                            : QM_ENGINE_ZIP;
}

static int demo_host_create(struct vmm_inproc_host *h, const struct demo_opts *o,
                            const struct guest_ram *ram)
{
    struct qm_dev_config cfg;

    qm_dev_config_default(&cfg);
    cfg.qps_per_vf = AM_MAX(cfg.qps_per_vf, o->wl.qps);
    cfg.workers = o->workers;
    cfg.engine = demo_qm_engine(o->wl.engine);
    return vmm_inproc_host_create(&cfg, DEMO_VF_FN, ram, h);
}

/* With --migrations: a second host B (its own device and RAM), then the
 * orchestrator runs the guest to the end, moving it A->B, B->A, ... while
 * its jobs are in flight; one migration_log object per migration. */
static int demo_run_migrating(struct demo_run *run)
{
    struct vmm_mig_host_config hc;
    struct vmm_mig_plan plan;
    int ret;

    vmm_mig_host_config_default(&hc);
    hc.dev.qps_per_vf = AM_MAX(hc.dev.qps_per_vf, run->opts.wl.qps);
    hc.dev.workers = run->opts.workers;
    hc.dev.engine = demo_qm_engine(run->opts.wl.engine);
    hc.vf_fn = DEMO_VF_FN;
    ret = vm_ram_create(vm_ram_size(run->ram), &run->peer_ram);
    if (!ret)
        ret = vmm_mig_host_wrap(&run->host, DEMO_VF_FN, MIG_HW_V4, run->ram, &run->mig[0]);
    if (!ret)
        ret = vmm_mig_host_create(&hc, run->peer_ram, &run->mig[1]);
    if (ret)
        return ret;
    memset(&plan, 0, sizeof(plan));
    plan.migrations = run->opts.migrations;
    vmm_mig_config_default(&plan.mig);
    plan.save_dir = run->opts.save_dir;
    plan.log = run->migration_log;
    return vmm_mig_workload_run(run->w, run->mig[0], run->mig[1], &plan, NULL, NULL);
}

/* Start the guest and let it run to the end. */
static int demo_run_guest(struct demo_run *run)
{
    uint64_t t0 = am_now_ns();
    int ret = workload_vcpus_start(run->w);

    if (ret)
        return ret;
    if (run->opts.migrations > 0)
        ret = demo_run_migrating(run);
    else
        while ((ret = workload_wait(run->w, DEMO_WAIT_SLICE_MS)) == -ETIMEDOUT)
            ;
    run->elapsed_ns = am_now_ns() - t0;
    if (ret)
        return ret;
    return workload_shutdown(run->w);
}

static int demo_verdict(const struct workload_report *r)
{
    return r->jobs_verified == r->jobs && r->jobs_failed == 0 && r->jobs_duplicated == 0 &&
           r->jobs_lost == 0 && r->stray_completions == 0 && r->driver.bad_cqes == 0 &&
           r->queues_fatal == 0;
}

static void demo_print_json(const struct demo_run *run, const struct workload_report *r, int ok)
{
    const struct demo_opts *o = &run->opts;
    json_object *j = json_object_new_object(), *d = json_object_new_object(),
                *t = json_object_new_object();
    char ms[32];

    json_object_object_add(j, "verdict", json_object_new_string(ok ? "ok" : "failed"));
    json_object_object_add(j, "transport", json_object_new_string("inproc"));
    json_object_object_add(j, "engine", json_object_new_string(workload_engine_name(o->wl.engine)));
    json_object_object_add(j, "jobs", json_object_new_int64((int64_t)r->jobs));
    json_object_object_add(j, "jobs_submitted", json_object_new_int64((int64_t)r->jobs_submitted));
    json_object_object_add(j, "jobs_completed", json_object_new_int64((int64_t)r->jobs_completed));
    json_object_object_add(j, "jobs_verified", json_object_new_int64((int64_t)r->jobs_verified));
    json_object_object_add(j, "jobs_failed", json_object_new_int64((int64_t)r->jobs_failed));
    json_object_object_add(j, "jobs_duplicated", json_object_new_int64((int64_t)r->jobs_duplicated));
    json_object_object_add(j, "jobs_lost", json_object_new_int64((int64_t)r->jobs_lost));
    json_object_object_add(j, "stray_completions", json_object_new_int64((int64_t)r->stray_completions));
    json_object_object_add(j, "bytes_in", json_object_new_int64((int64_t)r->bytes_in));
    json_object_object_add(j, "bytes_out", json_object_new_int64((int64_t)r->bytes_out));
    json_object_object_add(j, "sgl_jobs", json_object_new_int64((int64_t)r->sgl_jobs));
    json_object_object_add(j, "stream_jobs", json_object_new_int64((int64_t)r->stream_jobs));
    json_object_object_add(j, "stream_pieces", json_object_new_int64((int64_t)r->stream_pieces));
    json_object_object_add(j, "queues_fatal", json_object_new_int64((int64_t)r->queues_fatal));
    /* ZIP: jobs_by_format (deflate, zlib, gzip); SEC/HPRE: jobs_by_kind. */
    for (unsigned k = 0; k < AM_ARRAY_SIZE(r->jobs_by_type); k++)
        if (workload_kind_name(&o->wl, k))
            json_object_object_add(t, workload_kind_name(&o->wl, k),
                                   json_object_new_int64((int64_t)r->jobs_by_type[k]));
    json_object_object_add(j, o->wl.engine == GUEST_ENGINE_ZIP ? "jobs_by_format" : "jobs_by_kind", t);
    json_object_object_add(j, "qps", json_object_new_int64(o->wl.qps));
    json_object_object_add(j, "vcpus", json_object_new_int64(o->wl.vcpus));
    json_object_object_add(j, "seed", json_object_new_int64((int64_t)o->wl.seed));
    json_object_object_add(j, "migrations", json_object_new_int64(o->migrations));
    snprintf(ms, sizeof(ms), "%.1f", (double)run->elapsed_ns / 1e6);
    json_object_object_add(j, "elapsed_ms", json_object_new_double_s(strtod(ms, NULL), ms));
    json_object_object_add(j, "migration_log", json_object_get(run->migration_log));
    json_object_object_add(d, "irqs", json_object_new_int64((int64_t)r->driver.irqs));
    json_object_object_add(d, "spurious_irqs", json_object_new_int64((int64_t)r->driver.spurious_irqs));
    json_object_object_add(d, "eqes", json_object_new_int64((int64_t)r->driver.eqes));
    json_object_object_add(d, "cqes", json_object_new_int64((int64_t)r->driver.cqes));
    json_object_object_add(d, "cqes_without_irq", json_object_new_int64((int64_t)r->driver.cqes_without_irq));
    json_object_object_add(d, "aeqes", json_object_new_int64((int64_t)r->driver.aeqes));
    json_object_object_add(d, "bad_cqes", json_object_new_int64((int64_t)r->driver.bad_cqes));
    json_object_object_add(d, "submit_busy", json_object_new_int64((int64_t)r->driver.submit_busy));
    json_object_object_add(j, "driver", d);
    if (!ok && r->first_failed_job != UINT64_MAX) {
        json_object_object_add(j, "first_failed_job", json_object_new_int64((int64_t)r->first_failed_job));
        json_object_object_add(j, "first_failure", json_object_new_string(r->first_failure));
    }
    printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
    json_object_put(j);
}

static long long demo_jint(json_object *o, const char *key)
{
    json_object *v;

    return json_object_object_get_ex(o, key, &v) ? (long long)json_object_get_int64(v) : -1;
}

/* One line per migration_log entry (vmm/migrate_inproc.h names the fields). */
static void demo_print_migration(json_object *m)
{
    json_object *v;
    const char *dir = json_object_object_get_ex(m, "direction", &v) ? json_object_get_string(v) : "?";

    if (json_object_object_get_ex(m, "ok", &v) && !json_object_get_boolean(v)) {
        printf("  migration %lld %s: FAILED at %s: %s (the guest carried on at the source)\n",
               demo_jint(m, "n"), dir,
               json_object_object_get_ex(m, "failed_step", &v) ? json_object_get_string(v) : "?",
               json_object_object_get_ex(m, "error", &v) ? json_object_get_string(v) : "?");
        return;
    }
    printf("  migration %lld %s: %lld SQEs in flight; device state %lld B (%lld B early); RAM %lld "
           "KiB in %lld precopy rounds + %lld pages stopped; downtime %lld us, device %lld us "
           "(quiesce %lld, save %lld, restore %lld, resume %lld)\n",
           demo_jint(m, "n"), dir, demo_jint(m, "sqes_in_flight_at_pause"),
           demo_jint(m, "device_state_bytes"), demo_jint(m, "device_head_bytes"),
           demo_jint(m, "ram_bytes") / 1024, demo_jint(m, "precopy_rounds"),
           demo_jint(m, "last_pages"), demo_jint(m, "downtime_us"),
           demo_jint(m, "device_downtime_us"), demo_jint(m, "quiesce_us"), demo_jint(m, "save_us"),
           demo_jint(m, "restore_us"), demo_jint(m, "resume_us"));
}

static void demo_print_text(const struct demo_run *run, const struct workload_report *r, int ok)
{
    double s = (double)run->elapsed_ns / 1e9;

    const struct workload_config *wl = &run->opts.wl;

    printf("accmig demo: %llu %s jobs on %u queues (%u vCPUs), seed %llu, transport inproc, "
           "%u migrations\n",
           (unsigned long long)r->jobs, workload_engine_name(wl->engine), wl->qps, wl->vcpus,
           (unsigned long long)wl->seed, run->opts.migrations);
    if (wl->engine == GUEST_ENGINE_ZIP)
        printf("  formats: %llu deflate, %llu zlib, %llu gzip; %llu on hardware SGLs\n",
               (unsigned long long)r->jobs_by_type[ZIP_REQ_DEFLATE],
               (unsigned long long)r->jobs_by_type[ZIP_REQ_ZLIB],
               (unsigned long long)r->jobs_by_type[ZIP_REQ_GZIP], (unsigned long long)r->sgl_jobs);
    else
        printf("  kinds: %llu %s, %llu %s, %llu %s, %llu %s (each checked against libcrypto)\n",
               (unsigned long long)r->jobs_by_type[0], workload_kind_name(wl, 0),
               (unsigned long long)r->jobs_by_type[1], workload_kind_name(wl, 1),
               (unsigned long long)r->jobs_by_type[2], workload_kind_name(wl, 2),
               (unsigned long long)r->jobs_by_type[3], workload_kind_name(wl, 3));
    if (r->stream_jobs)
        printf("  streams: %llu jobs in %llu pieces\n", (unsigned long long)r->stream_jobs,
               (unsigned long long)r->stream_pieces);
    printf("  jobs: %llu submitted, %llu completed, %llu verified, %llu failed\n",
           (unsigned long long)r->jobs_submitted, (unsigned long long)r->jobs_completed,
           (unsigned long long)r->jobs_verified, (unsigned long long)r->jobs_failed);
    printf("  exactly once: %llu duplicated, %llu lost, %llu stray completions\n",
           (unsigned long long)r->jobs_duplicated, (unsigned long long)r->jobs_lost,
           (unsigned long long)r->stray_completions);
    printf("  bytes: %llu in, %llu out (ratio %.3f); %.2f s, %.1f MB/s of input\n",
           (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out,
           r->bytes_in ? (double)r->bytes_out / (double)r->bytes_in : 0.0, s,
           s > 0 ? (double)r->bytes_in / s / 1e6 : 0.0);
    printf("  driver: %llu MSIs (%llu spurious), %llu EQEs, %llu CQEs (%llu found without an MSI), "
           "%llu AEQEs, %llu dead queues\n",
           (unsigned long long)r->driver.irqs, (unsigned long long)r->driver.spurious_irqs,
           (unsigned long long)r->driver.eqes, (unsigned long long)r->driver.cqes,
           (unsigned long long)r->driver.cqes_without_irq, (unsigned long long)r->driver.aeqes,
           (unsigned long long)r->queues_fatal);
    for (size_t i = 0; i < json_object_array_length(run->migration_log); i++)
        demo_print_migration(json_object_array_get_idx(run->migration_log, i));
    if (!ok && r->first_failed_job != UINT64_MAX)
        printf("  first failure: job %llu: %s\n", (unsigned long long)r->first_failed_job,
               r->first_failure);
    printf("verdict: %s\n", ok ? "OK, every job verified exactly once" : "FAILED");
}

int cli_demo(int argc, char **argv)
{
    struct demo_run run;
    struct workload_report rep;
    uint64_t ram_size;
    int ret, ok;

    /* Without --transport inproc: the multi-process demo (demo_hosts.c). */
    if (!demo_hosts_is_inproc(argc, argv))
        return demo_hosts_main(argc, argv);
    memset(&run, 0, sizeof(run));
    ret = demo_parse(argc, argv, &run.opts);
    if (ret)
        return ret > 0 ? 0 : 2;
    ram_size = AM_ALIGN_UP(workload_ram_size(&run.opts.wl), VM_RAM_PAGE_SIZE);
    ret = vm_ram_create(ram_size, &run.ram);
    if (ret) {
        fprintf(stderr, "accmig demo: guest RAM of %llu bytes: %s\n", (unsigned long long)ram_size,
                strerror(-ret));
        return 2;
    }
    ret = demo_host_create(&run.host, &run.opts, vm_ram_guest(run.ram));
    if (ret) {
        fprintf(stderr, "accmig demo: device model: %s\n", strerror(-ret));
        goto out_ram;
    }
    ret = workload_create(&run.opts.wl, vm_ram_guest(run.ram), vmm_inproc_vf_io(run.host.vf), &run.w);
    if (ret) {
        fprintf(stderr, "accmig demo: guest driver probe: %s\n", strerror(-ret));
        goto out_host;
    }
    run.migration_log = json_object_new_array();
    ret = demo_run_guest(&run);
    if (ret)
        fprintf(stderr, "accmig demo: guest run: %s\n", strerror(-ret));
    workload_report_get(run.w, &rep);
    ok = ret == 0 && demo_verdict(&rep);
    if (run.opts.json)
        demo_print_json(&run, &rep, ok);
    else
        demo_print_text(&run, &rep, ok);
    json_object_put(run.migration_log);
    workload_destroy(run.w);
    vmm_mig_host_destroy(run.mig[0]);
    vmm_mig_host_destroy(run.mig[1]);
    vm_ram_destroy(run.peer_ram);
    vmm_inproc_host_destroy(&run.host);
    vm_ram_destroy(run.ram);
    return ok ? 0 : 1;

out_host:
    vmm_inproc_host_destroy(&run.host);
out_ram:
    vm_ram_destroy(run.ram);
    return 2;
}
