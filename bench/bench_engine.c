/* accmig bench engine: ZIP compression (or, with --engine sec, SEC
 * cbc(aes)-128 encryption against raw libcrypto EVP on the same input: per
 * job on both sides a key and IV load into a context that holds the
 * fetched cipher, then one pass over the input) throughput through the
 * whole device path (guest SQE -> SQ doorbell -> SQE fetch -> DMA
 * translate -> codec -> CQE -> EQE -> MSI -> guest completion path) on one
 * queue, against the raw
 * ISA-L codec on the same input in the same run, with the engine's settings
 * (level 1, level buffer ISAL_DEF_LVL1_DEFAULT, 32 KiB window, raw deflate).
 *
 * Each size runs `rounds` pairs of measurements (raw, then engine, same job
 * count, back to back); the ratio of each pair is taken and the median pair
 * reported, which keeps a machine whose load drifts (other builds on a shared
 * 2-core box) from favouring either side. With --json, one JSON object per
 * size on its own line:
 *   {"bench":"engine","size":65536,"jobs":..,"depth":..,"workers":..,
 *    "mode":"irq","raw_mb_s":..,"engine_mb_s":..,"ratio":..,
 *    "ratio_min":..,"ratio_max":..,...}
 * raw_mb_s/engine_mb_s are the medians of each side. The *_cpu_* fields
 * divide by the process's CPU time instead of wall-clock time (device worker
 * + guest thread for the engine): what the whole path costs, which a busy
 * machine disturbs far less than it disturbs wall-clock rates; the CPU of
 * the --load threads is not counted. raw_job_us_* / engine_job_us_* are the
 * p50, p99 and max over the rounds of each side's wall-clock time per job.
 * With --load N, N CPU-bound threads (bench.h) spin from before the
 * calibration to after the last pair: both sides of every pair run on the
 * same loaded host; every line carries "load_threads".
 * MB = 10^6 bytes of input.
 */
#include <errno.h>
#include <getopt.h>
#include <isa-l/igzip_lib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "bench.h"
#include "common/common.h"
#include "sec/sec.h"
#include "guest/guest.h"
#include "guest/workload.h"
#include "vmm/inproc.h"
#include "vmm/vm_ram.h"

#define BE_VF_FN 1u
#define BE_QP 0u
#define BE_WINDOW 4u     /* 32 KiB: the largest window, ISA-L's default history */
#define BE_HIST_BITS 15u /* what the engine maps window 4 to */
#define BE_MAX_DEPTH 256u
#define BE_MAX_SIZE (8u << 20)
#define BE_STATE_GPA 0x1000u
#define BE_SEED 0x5eedull
#define BE_MAX_ROUNDS 99u

struct be_opts {
    uint32_t sizes[3];
    unsigned nsizes;
    uint64_t jobs;   /* 0: calibrate from seconds */
    double seconds;  /* per measurement when jobs is 0 */
    unsigned depth;  /* jobs in flight on the queue */
    unsigned workers;
    unsigned rounds;
    int poll;
    int json;
    unsigned load; /* CPU-bound threads beside the run (--load) */
    enum qm_engine_type engine; /* ZIP or SEC (--engine) */
};

/* SEC: the BD's key and IV in guest RAM, and the BD's reserved dw26 (the
 * no-scene layout's rsvd1, which the engine ignores) carrying the output
 * slot back, where the guest driver's completion reports "dw26-27". */
#define BE_SEC_KEY_GPA 0x800u
#define BE_SEC_IV_GPA 0xc00u
#define BE_SEC_SLOT_DW 26u

struct be_result {
    double mb_s;     /* input MB per wall-clock second */
    double cpu_mb_s; /* input MB per CPU second of the whole process */
    uint64_t out_bytes; /* of one job */
};

static void be_rates(struct be_result *r, double bytes, uint64_t wall_ns, uint64_t cpu_ns)
{
    r->mb_s = bytes / ((double)AM_MAX(wall_ns, (uint64_t)1) / 1e9) / 1e6;
    r->cpu_mb_s = bytes / ((double)AM_MAX(cpu_ns, (uint64_t)1) / 1e9) / 1e6;
}

/* The guest side of the benchmark: one VF, one compress queue, `depth`
 * output slots. Completion bookkeeping is host memory: the bench is never
 * migrated. */
struct be_ctx {
    const struct be_opts *o;
    const struct bench_load *load; /* its CPU time is left out of cpu_mb_s */
    struct vm_ram *ram;
    struct vmm_inproc_host host;
    struct guest_vf *vf;
    uint64_t in_gpa, out_gpa, out_cap;
    unsigned free_slots[BE_MAX_DEPTH], nfree;
    uint64_t completed, failed, last_produced;
    uint8_t *raw_level_buf;
    uint64_t sq_gpa;             /* SEC: the SQ ring, to read each BD's dw28 */
    EVP_CIPHER_CTX *raw_cipher;  /* SEC: the raw side's context ... */
    EVP_CIPHER *raw_aes;         /* ... set up once with the fetched cipher */
    uint32_t raw_out_crc;        /* SEC: CRC32C of the raw side's last output */
};

static void be_usage(FILE *f)
{
    fprintf(f,
            "usage: accmig bench engine [options]\n"
            "  ZIP compression throughput through the whole device path on one queue vs\n"
            "  the raw ISA-L codec (same level 1, same input) in the same run.\n"
            "  --engine zip|sec zip (default), or sec: cbc(aes)-128 encryption through a\n"
            "                   SEC VF vs raw libcrypto (EVP) on the same input\n"
            "  --size BYTES     job size (default: 4K, 64K and 1M in turn)\n"
            "  --jobs N         jobs per measurement (default: as many as --seconds allows)\n"
            "  --seconds S      length of each measurement when --jobs is not given (default 0.5)\n"
            "  --depth N        jobs in flight on the queue (default 32, at most 256)\n"
            "  --workers N      device job worker threads (default 1: one codec thread,\n"
            "                   like the raw side)\n"
            "  --rounds N       raw/engine pairs, the median pair reported (default 7)\n"
            "  --poll           reap completions by polling instead of waiting for MSIs\n"
            "  --load N         N CPU-bound threads spin for the whole run, both sides of\n"
            "                   every pair (0..64, default 0)\n"
            "  --json           one JSON object per size\n");
}

static int be_parse(int argc, char **argv, struct be_opts *o)
{
    enum { O_SIZE = 1, O_JOBS, O_SECONDS, O_DEPTH, O_WORKERS, O_ROUNDS, O_POLL, O_JSON, O_LOAD, O_HELP,
           O_ENGINE };
    static const struct option lo[] = {
        {"size", required_argument, NULL, O_SIZE},     {"jobs", required_argument, NULL, O_JOBS},
        {"seconds", required_argument, NULL, O_SECONDS}, {"depth", required_argument, NULL, O_DEPTH},
        {"workers", required_argument, NULL, O_WORKERS}, {"rounds", required_argument, NULL, O_ROUNDS},
        {"poll", no_argument, NULL, O_POLL},           {"json", no_argument, NULL, O_JSON},
        {"load", required_argument, NULL, O_LOAD},     {"help", no_argument, NULL, O_HELP},
        {"engine", required_argument, NULL, O_ENGINE},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    char *end;
    int c, li = 0;

    *o = (struct be_opts){.sizes = {4u << 10, 64u << 10, 1u << 20}, .nsizes = 3, .seconds = 0.5,
                          .depth = 32, .workers = 1, .rounds = 7};
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, &li)) != -1) {
        switch (c) {
        case O_SIZE:
            if (am_parse_u64(optarg, BE_MAX_SIZE, &v) || v == 0)
                goto bad;
            o->sizes[0] = (uint32_t)v;
            o->nsizes = 1;
            break;
        case O_JOBS:
            if (am_parse_u64(optarg, 100000000, &v) || v == 0)
                goto bad;
            o->jobs = v;
            break;
        case O_SECONDS:
            o->seconds = strtod(optarg, &end);
            if (*end || !(o->seconds > 0.0 && o->seconds <= 600.0))
                goto bad;
            break;
        case O_DEPTH:
            if (am_parse_u64(optarg, BE_MAX_DEPTH, &v) || v == 0)
                goto bad;
            o->depth = (unsigned)v;
            break;
        case O_WORKERS:
            if (am_parse_u64(optarg, 64, &v) || v == 0)
                goto bad;
            o->workers = (unsigned)v;
            break;
        case O_ROUNDS:
            if (am_parse_u64(optarg, BE_MAX_ROUNDS, &v) || v == 0)
                goto bad;
            o->rounds = (unsigned)v;
            break;
        case O_POLL: o->poll = 1; break;
        case O_JSON: o->json = 1; break;
        case O_LOAD:
            if (bench_load_parse("engine", optarg, &o->load))
                return -EINVAL;
            break;
        case O_ENGINE:
            if (strcmp(optarg, "zip") == 0)
                o->engine = QM_ENGINE_ZIP;
            else if (strcmp(optarg, "sec") == 0)
                o->engine = QM_ENGINE_SEC;
            else
                goto bad;
            break;
        case O_HELP: be_usage(stdout); return 1;
        default:
            fprintf(stderr, "accmig bench engine: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            be_usage(stderr);
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "accmig bench engine: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    for (unsigned i = 0; o->engine == QM_ENGINE_SEC && i < o->nsizes; i++) {
        if (o->sizes[i] % 16) {
            fprintf(stderr, "accmig bench engine: --engine sec (cbc) wants a size that is a "
                    "multiple of 16\n");
            return -EINVAL;
        }
    }
    return 0;
bad:
    fprintf(stderr, "accmig bench engine: bad value '%s' for --%s\n", optarg, lo[li].name);
    be_usage(stderr);
    return -EINVAL;
}

static uint64_t be_out_cap(uint32_t size)
{
    return AM_ALIGN_UP((uint64_t)size + size / 8 + 4096, 4096);
}

static uint8_t *be_host(const struct be_ctx *x, uint64_t gpa);

static void be_on_complete(void *opaque, const struct guest_vf_completion *c)
{
    struct be_ctx *x = opaque;

    if (x->o->engine == QM_ENGINE_SEC) {
        /* The SEC result is dw28 of the BD in its SQ slot. */
        uint32_t bd[SEC_SQE_DWORDS];

        memcpy(bd, be_host(x, x->sq_gpa + (uint64_t)c->sq_slot * SEC_SQE_SIZE), sizeof(bd));
        if (!sec_bd_ok(bd))
            x->failed++;
        x->last_produced = bd[SEC_DW_CIPHER_LEN] & SEC_LEN_MASK;
        x->completed++;
        if (bd[BE_SEC_SLOT_DW] < BE_MAX_DEPTH && x->nfree < BE_MAX_DEPTH)
            x->free_slots[x->nfree++] = bd[BE_SEC_SLOT_DW];
        return;
    }
    if (c->status != ZIP_ST_OK && c->status != ZIP_ST_NEGATIVE_COMP)
        x->failed++;
    x->last_produced = c->produced;
    x->completed++;
    if (c->tag < BE_MAX_DEPTH && x->nfree < BE_MAX_DEPTH)
        x->free_slots[x->nfree++] = (unsigned)c->tag;
}

static int be_ctx_create(struct be_ctx *x, const struct be_opts *o, const struct bench_load *load,
                         uint32_t max_size)
{
    struct qm_dev_config cfg;
    uint64_t state_len = guest_vf_state_size(1), ram_size;
    int ret;

    memset(x, 0, sizeof(*x));
    x->o = o;
    x->load = load;
    x->out_cap = be_out_cap(max_size);
    x->in_gpa = BE_STATE_GPA + state_len;
    x->out_gpa = x->in_gpa + AM_ALIGN_UP((uint64_t)max_size, 4096);
    ram_size = x->out_gpa + (uint64_t)o->depth * x->out_cap;
    x->raw_level_buf = malloc(ISAL_DEF_LVL1_DEFAULT);
    x->raw_cipher = EVP_CIPHER_CTX_new();
    if (!x->raw_level_buf || !x->raw_cipher)
        return -ENOMEM;
    if (o->engine == QM_ENGINE_SEC) {
        x->raw_aes = EVP_CIPHER_fetch(NULL, "AES-128-CBC", NULL);
        if (x->raw_aes == NULL ||
            EVP_EncryptInit_ex(x->raw_cipher, x->raw_aes, NULL, NULL, NULL) != 1 ||
            EVP_CIPHER_CTX_set_padding(x->raw_cipher, 0) != 1)
            return -EIO;
    }
    ret = vm_ram_create(ram_size, &x->ram);
    if (ret)
        return ret;
    qm_dev_config_default(&cfg);
    cfg.workers = o->workers;
    cfg.engine = o->engine;
    ret = vmm_inproc_host_create(&cfg, BE_VF_FN, vm_ram_guest(x->ram), &x->host);
    if (ret)
        return ret;
    ret = guest_vf_init_engine(vmm_inproc_vf_io(x->host.vf), vm_ram_guest(x->ram), BE_STATE_GPA,
                               state_len,
                               o->engine == QM_ENGINE_SEC ? GUEST_ENGINE_SEC : GUEST_ENGINE_ZIP,
                               &x->vf);
    if (ret)
        return ret;
    guest_vf_set_complete_cb(x->vf, be_on_complete, x);
    ret = guest_vf_qp_start(x->vf, BE_QP, ZIP_ALG_COMPRESS); /* alg_type 0: SEC's too */
    if (ret == 0 && o->engine == QM_ENGINE_SEC) {
        struct qm_sqc sqc;

        ret = guest_vf_qp_sqc_dump(x->vf, BE_QP, &sqc);
        x->sq_gpa = (uint64_t)sqc.base_h << 32 | sqc.base_l;
        workload_data_fill(be_host(x, BE_SEC_KEY_GPA), 16, WORKLOAD_DATA_RANDOM, BE_SEED + 1);
        workload_data_fill(be_host(x, BE_SEC_IV_GPA), 16, WORKLOAD_DATA_RANDOM, BE_SEED + 2);
    }
    return ret;
}

static void be_ctx_destroy(struct be_ctx *x)
{
    if (x->vf) {
        guest_vf_uninit(x->vf);
        guest_vf_detach(x->vf);
    }
    vmm_inproc_host_destroy(&x->host);
    vm_ram_destroy(x->ram);
    free(x->raw_level_buf);
    EVP_CIPHER_CTX_free(x->raw_cipher);
    EVP_CIPHER_free(x->raw_aes);
}

static uint8_t *be_host(const struct be_ctx *x, uint64_t gpa)
{
    return vm_ram_host(x->ram) + gpa;
}

/* The raw SEC side: what the engine does per job (the key and IV loaded
 * into a context that already holds the fetched cipher, one pass over the
 * input), on the same input; its output goes to the first slot every
 * time, as a synchronous caller's would. */
static int be_run_raw_sec(struct be_ctx *x, uint32_t size, uint64_t jobs, struct be_result *r)
{
    uint64_t t0 = am_now_ns(), c0 = bench_cpu_ns(x->load);

    for (uint64_t i = 0; i < jobs; i++) {
        int n = 0;

        if (EVP_EncryptInit_ex(x->raw_cipher, NULL, NULL, be_host(x, BE_SEC_KEY_GPA),
                               be_host(x, BE_SEC_IV_GPA)) != 1 ||
            EVP_EncryptUpdate(x->raw_cipher, be_host(x, x->out_gpa), &n, be_host(x, x->in_gpa),
                              (int)size) != 1 ||
            (uint32_t)n != size)
            return -EIO;
        r->out_bytes = (uint64_t)n;
    }
    be_rates(r, (double)size * (double)jobs, am_now_ns() - t0, bench_cpu_ns(x->load) - c0);
    x->raw_out_crc = am_crc32c(0, be_host(x, x->out_gpa), size);
    return 0;
}

/* The raw codec: one isal_deflate call per job over the same buffers. */
static int be_run_raw(struct be_ctx *x, uint32_t size, uint64_t jobs, struct be_result *r)
{
    struct isal_zstream zs;
    uint64_t t0 = am_now_ns(), c0 = bench_cpu_ns(x->load);

    if (x->o->engine == QM_ENGINE_SEC)
        return be_run_raw_sec(x, size, jobs, r);

    for (uint64_t i = 0; i < jobs; i++) {
        isal_deflate_init(&zs);
        zs.level = 1;
        zs.level_buf = x->raw_level_buf;
        zs.level_buf_size = ISAL_DEF_LVL1_DEFAULT;
        zs.hist_bits = BE_HIST_BITS;
        zs.gzip_flag = IGZIP_DEFLATE;
        zs.flush = NO_FLUSH;
        zs.end_of_stream = 1;
        zs.next_in = be_host(x, x->in_gpa);
        zs.avail_in = size;
        zs.next_out = be_host(x, x->out_gpa);
        zs.avail_out = (uint32_t)x->out_cap;
        if (isal_deflate(&zs) != COMP_OK || zs.internal_state.state != ZSTATE_END)
            return -EIO;
        r->out_bytes = zs.total_out;
    }
    be_rates(r, (double)size * (double)jobs, am_now_ns() - t0, bench_cpu_ns(x->load) - c0);
    return 0;
}

/* A cbc(aes)-128 encryption BD as hisi_sec2 fills it (flat buffers). */
static int be_sec_bd(const struct be_ctx *x, uint32_t *bd, uint32_t size, unsigned slot)
{
    const uint64_t dst = x->out_gpa + (uint64_t)slot * x->out_cap;

    memset(bd, 0, SEC_SQE_SIZE);
    bd[SEC_DW_BD_PARAM] = SEC_BD_TYPE3 | 1u << SEC_BD_DE_SHIFT;
    bd[SEC_DW_CIPHER] = SEC_DIR_ENC | SEC_MODE_CBC << SEC_CMODE_SHIFT | SEC_ALG_AES << SEC_CALG_SHIFT;
    bd[SEC_DW_AUTH] = 2u << 25; /* CTR counter rollover: the driver always sets it */
    bd[SEC_DW_CIPHER_LEN] = size;
    bd[SEC_DW_SRC_L] = (uint32_t)x->in_gpa;
    bd[SEC_DW_SRC_H] = (uint32_t)(x->in_gpa >> 32);
    bd[SEC_DW_DST_L] = (uint32_t)dst;
    bd[SEC_DW_DST_H] = (uint32_t)(dst >> 32);
    bd[SEC_DW_CKEY_L] = BE_SEC_KEY_GPA;
    bd[SEC_DW_CIV_L] = BE_SEC_IV_GPA;
    bd[BE_SEC_SLOT_DW] = slot;
    return 0;
}

/* The device path: keep `depth` jobs in flight on one queue. */
static int be_run_engine(struct be_ctx *x, uint32_t size, uint64_t jobs, struct be_result *r)
{
    uint64_t submitted = 0, t0, c0;
    int ret = 0;

    x->nfree = 0;
    for (unsigned i = 0; i < x->o->depth; i++)
        x->free_slots[x->nfree++] = x->o->depth - 1 - i;
    x->completed = x->failed = 0;
    t0 = am_now_ns();
    c0 = bench_cpu_ns(x->load);
    while (x->completed < jobs) {
        while (x->nfree > 0 && submitted < jobs) {
            unsigned slot = x->free_slots[x->nfree - 1];
            struct guest_zip_req q = {
                .type = ZIP_REQ_DEFLATE,
                .buf_type = ZIP_BUF_FLAT,
                .src = x->in_gpa,
                .dst = x->out_gpa + (uint64_t)slot * x->out_cap,
                .in_len = size,
                .dest_avail = (uint32_t)x->out_cap,
                .window = BE_WINDOW,
                .tag = slot,
            };
            uint32_t sqe[ZIP_SQE_DWORDS];

            if (x->o->engine == QM_ENGINE_SEC)
                ret = be_sec_bd(x, sqe, size, slot);
            else
                ret = guest_zip_sqe_build(sqe, &q);
            if (!ret)
                ret = guest_vf_submit(x->vf, BE_QP, sqe);
            if (ret)
                return ret;
            x->nfree--;
            submitted++;
        }
        if (x->o->poll) {
            ret = guest_vf_poll(x->vf, 0);
        } else {
            int irq = guest_vf_irq_wait(x->vf, 1000) == 0;
            ret = guest_vf_poll(x->vf, irq);
        }
        if (ret < 0)
            return ret;
    }
    be_rates(r, (double)size * (double)jobs, am_now_ns() - t0, bench_cpu_ns(x->load) - c0);
    r->out_bytes = x->last_produced;
    if (x->failed)
        return -EIO;
    /* Same input, key and IV for every job: each slot must hold what the
     * raw side computed (slot 0 is the first job's, the raw side's too). */
    if (x->o->engine == QM_ENGINE_SEC &&
        am_crc32c(0, be_host(x, x->out_gpa), size) != x->raw_out_crc) {
        fprintf(stderr, "accmig bench engine: the SEC VF's ciphertext differs from libcrypto's\n");
        return -EIO;
    }
    return 0;
}

struct be_summary {
    double raw_mb_s, engine_mb_s, ratio, ratio_min, ratio_max;
    double raw_cpu_mb_s, engine_cpu_mb_s, cpu_ratio;
    struct bench_spread raw_job_us, engine_job_us; /* wall clock per job, over the rounds */
    uint64_t raw_out, engine_out;
};

static void be_print(const struct be_opts *o, uint32_t size, uint64_t jobs, const struct be_summary *m)
{
    if (o->json) {
        printf("{\"bench\":\"engine\",\"engine\":\"%s\",\"size\":%u,\"jobs\":%llu,\"depth\":%u,"
               "\"workers\":%u,\"rounds\":%u,\"mode\":\"%s\",%s"
               "\"raw_mb_s\":%.1f,\"engine_mb_s\":%.1f,\"ratio\":%.3f,"
               "\"ratio_min\":%.3f,\"ratio_max\":%.3f,"
               "\"raw_cpu_mb_s\":%.1f,\"engine_cpu_mb_s\":%.1f,\"cpu_ratio\":%.3f,"
               "\"raw_job_us_p50\":%.1f,\"raw_job_us_p99\":%.1f,\"raw_job_us_max\":%.1f,"
               "\"engine_job_us_p50\":%.1f,\"engine_job_us_p99\":%.1f,\"engine_job_us_max\":%.1f,"
               "\"raw_out_bytes\":%llu,\"engine_out_bytes\":%llu,\"load_threads\":%u}\n",
               o->engine == QM_ENGINE_SEC ? "sec" : "zip", size, (unsigned long long)jobs, o->depth,
               o->workers, o->rounds, o->poll ? "poll" : "irq",
               o->engine == QM_ENGINE_SEC ? "\"alg\":\"cbc(aes)-128\",\"raw\":\"libcrypto\","
                                          : "\"level\":1,\"format\":\"deflate\",",
               m->raw_mb_s, m->engine_mb_s, m->ratio, m->ratio_min,
               m->ratio_max, m->raw_cpu_mb_s, m->engine_cpu_mb_s, m->cpu_ratio,
               m->raw_job_us.p50, m->raw_job_us.p99, m->raw_job_us.max, m->engine_job_us.p50,
               m->engine_job_us.p99, m->engine_job_us.max, (unsigned long long)m->raw_out,
               (unsigned long long)m->engine_out, o->load);
    } else {
        printf("%8u B x %-6llu raw %7.1f MB/s  engine %7.1f MB/s  ratio %.3f (%.3f..%.3f)  "
               "per CPU-s: raw %.1f engine %.1f ratio %.3f  engine job us p50 %.1f p99 %.1f max %.1f\n",
               size, (unsigned long long)jobs, m->raw_mb_s, m->engine_mb_s, m->ratio, m->ratio_min,
               m->ratio_max, m->raw_cpu_mb_s, m->engine_cpu_mb_s, m->cpu_ratio,
               m->engine_job_us.p50, m->engine_job_us.p99, m->engine_job_us.max);
    }
    fflush(stdout);
}

/* rounds pairs of raw + engine runs of jobs each; medians into *m. */
static int be_measure(struct be_ctx *x, uint32_t size, uint64_t jobs, struct be_summary *m)
{
    double raw[BE_MAX_ROUNDS], eng[BE_MAX_ROUNDS], ratio[BE_MAX_ROUNDS];
    double rawc[BE_MAX_ROUNDS], engc[BE_MAX_ROUNDS], cratio[BE_MAX_ROUNDS];
    double rawj[BE_MAX_ROUNDS], engj[BE_MAX_ROUNDS];
    unsigned n = x->o->rounds;
    int ret = 0;

    for (unsigned k = 0; k < n && ret == 0; k++) {
        struct be_result a, b;
        ret = be_run_raw(x, size, jobs, &a);
        if (!ret)
            ret = be_run_engine(x, size, jobs, &b);
        if (ret)
            break;
        raw[k] = a.mb_s;
        eng[k] = b.mb_s;
        ratio[k] = a.mb_s > 0 ? b.mb_s / a.mb_s : 0.0;
        rawc[k] = a.cpu_mb_s;
        engc[k] = b.cpu_mb_s;
        cratio[k] = a.cpu_mb_s > 0 ? b.cpu_mb_s / a.cpu_mb_s : 0.0;
        rawj[k] = a.mb_s > 0 ? (double)size / a.mb_s : 0.0; /* bytes / (bytes/us) */
        engj[k] = b.mb_s > 0 ? (double)size / b.mb_s : 0.0;
        m->raw_out = a.out_bytes;
        m->engine_out = b.out_bytes;
    }
    if (ret)
        return ret;
    m->raw_mb_s = bench_median(raw, n);
    m->engine_mb_s = bench_median(eng, n);
    m->ratio = bench_median(ratio, n); /* sorts ratio[] */
    m->ratio_min = ratio[0];
    m->ratio_max = ratio[n - 1];
    m->raw_cpu_mb_s = bench_median(rawc, n);
    m->engine_cpu_mb_s = bench_median(engc, n);
    m->cpu_ratio = bench_median(cratio, n);
    bench_spread(rawj, n, &m->raw_job_us);
    bench_spread(engj, n, &m->engine_job_us);
    return 0;
}

int bench_engine(int argc, char **argv)
{
    struct be_opts o;
    struct be_ctx x;
    struct bench_load *load;
    uint32_t max_size = 0;
    int ret;

    /* --engine hpre: its own benchmark (bench_hpre.c); zip is this one. */
    for (int i = 1; i < argc; i++)
        if ((!strcmp(argv[i], "--engine") && i + 1 < argc && !strcmp(argv[i + 1], "hpre")) ||
            !strcmp(argv[i], "--engine=hpre"))
            return bench_engine_hpre(argc, argv);
    ret = be_parse(argc, argv, &o);
    if (ret)
        return ret > 0 ? 0 : 2;
    for (unsigned i = 0; i < o.nsizes; i++)
        max_size = AM_MAX(max_size, o.sizes[i]);
    if (bench_load_create("engine", o.load, &load))
        return 2;
    ret = be_ctx_create(&x, &o, load, max_size);
    if (ret) {
        fprintf(stderr, "accmig bench engine: setup failed: %s\n", strerror(-ret));
        be_ctx_destroy(&x);
        bench_load_destroy(load);
        return 2;
    }
    workload_data_fill(be_host(&x, x.in_gpa), max_size, WORKLOAD_DATA_TEXT, BE_SEED);
    guest_ram_mark_dirty(vm_ram_guest(x.ram), x.in_gpa, max_size);
    if (!o.json)
        printf("accmig bench engine: %s, one queue, depth %u, %u device worker(s), %s, text-like "
               "input, %u load thread(s)\n",
               o.engine == QM_ENGINE_SEC ? "SEC cbc(aes)-128 vs raw libcrypto"
                                         : "ZIP deflate level 1 vs raw ISA-L",
               o.depth, o.workers, o.poll ? "polling" : "MSI-driven", o.load);

    for (unsigned i = 0; i < o.nsizes && ret == 0; i++) {
        uint32_t size = o.sizes[i];
        uint64_t jobs = o.jobs;
        struct be_summary m = {0};

        if (!jobs) { /* calibrate on the raw codec */
            struct be_result cal;
            uint64_t n = AM_MAX((uint64_t)1, (uint64_t)(4u << 20) / size);
            ret = be_run_raw(&x, size, n, &cal);
            jobs = (uint64_t)(cal.mb_s * 1e6 * o.seconds / size);
            jobs = AM_MAX(jobs, (uint64_t)16);
        }
        if (!ret)
            ret = be_measure(&x, size, jobs, &m);
        if (!ret)
            be_print(&o, size, jobs, &m);
    }
    if (ret)
        fprintf(stderr, "accmig bench engine: run failed: %s\n", strerror(-ret));
    be_ctx_destroy(&x);
    bench_load_destroy(load);
    return ret ? 1 : 0;
}
