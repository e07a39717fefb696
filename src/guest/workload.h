/* workload: the guest's compression workload, run by "vCPU-like" threads.
 *
 * Each job: generate an input (deterministic from seed and job number;
 * text-like, random or mixed; 1 of 3 formats; flat buffers or hardware SGL),
 * compress it on a compress queue, verify the result with zlib (an
 * independent inflater), decompress it on a decompress queue, and check the
 * output equals the input. Every SQE carries a tag (job, direction); a job
 * table in guest RAM counts the completions of each tag, so exactly-once is
 * checkable: a tag completing twice is a duplicate, a tag submitted and never
 * completed is lost.
 *
 * Everything the workload and its driver know lives in guest RAM (root block
 * at WORKLOAD_ROOT_GPA): configuration, job table, per-vCPU step and
 * buffers, and the driver's state (guest.h). Each vCPU runs a state machine
 * whose steps are atomic with respect to pausing: workload_vcpus_pause
 * returns once every thread is between two steps, with nothing half-written
 * and no driver lock held. A paused guest can then be copied (RAM + device
 * state) and carried on by workload_vcpus_resume with the copy's RAM and
 * another VF's transport, or by workload_attach in another process.
 *
 * Threads: vcpus workers plus one interrupt thread (waits on MSI 0, runs
 * the driver's completion path, and wakes the workers). The public calls
 * are for one controlling thread.
 *
 * Steps of a vCPU: PICK (take the next job number) -> GEN (input, header,
 * SGLs) -> SUBMIT_COMP -> WAIT_COMP -> VERIFY (zlib) -> SUBMIT_DECOMP ->
 * WAIT_DECOMP -> CHECK -> PICK ... -> DONE. A job that waits longer than
 * job_timeout_ms of running time (time paused does not count) is declared
 * lost and the vCPU moves on; a late completion still counts.
 *
 * A stream job (stream_percent of them, always on flat buffers) compresses
 * its input as one stream in 4..16 pieces of random sizes (stream mode,
 * docs/stream-mode.md): each piece is its own SQE with its own tag (job,
 * direction, piece), submitted only once the previous piece completed,
 * with the stream's 64 KiB context in the vCPU's guest RAM. SUBMIT_COMP ->
 * WAIT_COMP -> VERIFY runs once per piece; the last VERIFY has zlib inflate
 * the concatenated output whole, then one stateless decompression follows
 * as for any job. Each piece must complete exactly once.
 */
#ifndef ACCMIG_GUEST_WORKLOAD_H
#define ACCMIG_GUEST_WORKLOAD_H

#include <stdint.h>

#include "guest/guest.h"
#include "guest/vf_io.h"

#define WORKLOAD_ROOT_GPA 0x1000u /* gpa 0 stays unused, so 0 means "none" */
#define WORKLOAD_MAX_VCPUS 32u
#define WORKLOAD_MAX_JOBS (1u << 24)
#define WORKLOAD_MIN_SIZE 1u
#define WORKLOAD_MAX_SIZE (4u << 20)

struct workload_config {
    uint32_t jobs;           /* 1..WORKLOAD_MAX_JOBS; default 2000 */
    uint32_t qps;            /* queues used, even, >= 2: 2k compress, 2k+1 decompress; default 4 */
    uint32_t vcpus;          /* 1..WORKLOAD_MAX_VCPUS; default 4 */
    uint32_t min_size;       /* input sizes, log-uniform; default 1 KiB */
    uint32_t max_size;       /* default 1 MiB; at most WORKLOAD_MAX_SIZE */
    uint64_t seed;           /* default 1 */
    uint32_t sgl_percent;    /* share of jobs on hardware SGLs, 0..100; default 25 */
    uint32_t job_timeout_ms; /* running time before a job is declared lost; default 30000 */
    uint32_t stream_percent; /* share of stream jobs, 0..100; default 0 */
    /* enum guest_engine: the VF's engine and so the job kind (default ZIP).
     * SEC: AES-CBC/CTR/XTS/GCM encrypt on 2k, decrypt on 2k+1, sizes as
     * for ZIP; HPRE: RSA-1024/-2048, DH-2048, X25519, sizes from the keys
     * (min/max_size unused). Both check every result against libcrypto,
     * on flat buffers (sgl_percent unused); stream jobs are ZIP's only. */
    uint32_t engine;
};

void workload_config_default(struct workload_config *cfg);

/* The job data generator, for anyone who needs the same kind of bytes
 * (benchmarks, tests): deterministic from seed. Text-like data compresses
 * about 3:1 at ISA-L level 1; random does not compress; mixed alternates
 * runs of both. */
enum workload_data_kind { WORKLOAD_DATA_TEXT = 0, WORKLOAD_DATA_RANDOM, WORKLOAD_DATA_MIXED };
void workload_data_fill(uint8_t *buf, size_t len, enum workload_data_kind kind, uint64_t seed);
/* 0, or -EINVAL with a one-line reason in why (may be NULL). */
int workload_config_check(const struct workload_config *cfg, char *why, size_t why_len);

/* The input of job `job` of a workload with cfg, as the guest generates it:
 * *len and *type always (when job < cfg->jobs); the bytes into buf when cap
 * is enough. 0, -EINVAL (bad job), -ENOSPC (buf too small or NULL). For a
 * checker outside the guest (the demo's ledger). */
int workload_job_input(const struct workload_config *cfg, uint32_t job, uint8_t *buf, size_t cap,
                       uint32_t *len, enum zip_req_type *type);

/* How many pieces job `job` of a workload with cfg is compressed in: 0 for
 * a stateless job (or a bad job), 4..16 for a stream job. For a checker
 * outside the guest (the demo counts its stream jobs). */
unsigned workload_job_stream_pieces(const struct workload_config *cfg, uint32_t job);

/* The engine's name ("zip", "sec", "hpre"), or "?" for a bad value. */
const char *workload_engine_name(uint32_t engine);
/* The name of job kind `kind` (jobs_by_type's index) for cfg's engine:
 * "deflate", "zlib", "gzip" for ZIP; "cbc(aes)", "ctr(aes)", "xts(aes)",
 * "gcm(aes)" for SEC; "rsa-1024", "rsa-2048", "dh-2048", "x25519" for HPRE;
 * NULL past the last. */
const char *workload_kind_name(const struct workload_config *cfg, unsigned kind);

/* A checker outside the guest for a SEC or HPRE workload (the demo's
 * ledger): the first operation's result of each job (what the result sink
 * exports) recomputed with libcrypto from cfg alone. new: 0, -EINVAL (bad
 * config, or ZIP: check ZIP results with zlib), -ENOMEM/-EIO. check: 0
 * when data (len bytes, kind type) is job's expected result, -EBADMSG when
 * it is not, -EINVAL for a job out of range. */
struct workload_checker;
int workload_checker_new(const struct workload_config *cfg, struct workload_checker **out);
int workload_checker_check(struct workload_checker *c, uint32_t job, uint32_t type,
                           const uint8_t *data, uint32_t len);
void workload_checker_free(struct workload_checker *c);

/* Guest RAM the workload needs (from 0, including the unused first page),
 * rounded up to 4 KiB; 0 for an invalid config. */
uint64_t workload_ram_size(const struct workload_config *cfg);

struct workload;

/* Lay the workload out in ram, probe the VF (guest_vf_init) and start its
 * queues. No thread runs yet. -EINVAL bad config, -ENOSPC ram too small,
 * -ENODEV the VF has fewer queues than cfg->qps, or the driver's errors.
 * io and ram are copied; ram->host must stay valid until destroy or resume
 * with another RAM. */
int workload_create(const struct workload_config *cfg, const struct guest_ram *ram,
                    const struct vf_io *io, struct workload **out);

/* Bind to a workload that already lives in ram (a migrated copy): validates
 * the root block and the driver state (-EINVAL), touches no register. No
 * thread runs yet; workload_vcpus_start carries on where the copy stopped. */
int workload_attach(const struct guest_ram *ram, const struct vf_io *io, struct workload **out);

/* A job's compressed result as the device produced it (header included),
 * handed to the host the moment its CQE is read, before the guest checks it.
 * data points into guest RAM and is valid only during the call. */
struct workload_result {
    uint32_t job;
    uint64_t tag;            /* the compression SQE's tag (SEC/HPRE: the first operation's) */
    enum zip_req_type type;  /* SEC/HPRE: the job kind; data is the first operation's result */
    const uint8_t *data;
    uint32_t len;
};
typedef void (*workload_result_fn)(void *opaque, const struct workload_result *r);
/* Host side (not migrated): fn is called from the vCPU threads, maybe
 * several at once. Set before workload_vcpus_start; NULL turns it off. */
void workload_result_sink(struct workload *w, workload_result_fn fn, void *opaque);
/* Test-only: job_plus_one - 1 is counted verified without ever running (a
 * guest whose own counters lie); 0 turns it off. Host side. */
void workload_test_miscount(struct workload *w, uint32_t job_plus_one);

/* Start the threads. -EALREADY if they run. */
int workload_vcpus_start(struct workload *w);

/* Ask every thread to stop at its next step boundary and wait until all are
 * parked (or finished). -EINVAL when not running. After it returns, nothing
 * the guest owns changes until resume, except what the device DMAs. */
int workload_vcpus_pause(struct workload *w);

/* Carry on from a pause. ram and io, when not NULL, replace the ones in use
 * (the RAM copy and the VF on the destination): the driver is re-attached to
 * its state in the new RAM. -EINVAL when not paused or the new RAM holds no
 * valid workload (the workload stays paused on the old binding). */
int workload_vcpus_resume(struct workload *w, const struct guest_ram *ram, const struct vf_io *io);

/* Wait up to timeout_ms (< 0: forever) for every vCPU to finish its jobs.
 * 0 or -ETIMEDOUT. */
int workload_wait(struct workload *w, int timeout_ms);
/* True once every vCPU reached DONE. */
int workload_done(struct workload *w);

/* Guest shutdown: stop the threads (at a step boundary), then tear the
 * driver down (STOP_QP per queue, VF_STATE = NOT_READY). Jobs not finished
 * stay as they are in the job table (lost, if submitted). */
int workload_shutdown(struct workload *w);

/* Stop the threads and free host-side objects; guest RAM and the device are
 * left untouched (the source side of a migration ends this way). */
void workload_destroy(struct workload *w);

struct workload_report {
    uint32_t engine;           /* the workload's (enum guest_engine): names jobs_by_type */
    uint64_t jobs;             /* configured */
    uint64_t jobs_submitted;   /* compression doorbelled */
    uint64_t jobs_completed;   /* every submitted tag completed */
    uint64_t jobs_verified;    /* zlib and the device's own inflate gave the input back */
    uint64_t jobs_failed;      /* a bad status, a mismatch, a dead queue, or lost */
    uint64_t jobs_duplicated;  /* some tag completed more than once */
    uint64_t jobs_lost;        /* some tag submitted and never completed */
    uint64_t stray_completions; /* completions whose tag names no job */
    uint64_t bytes_in;         /* input bytes of jobs whose compression completed */
    uint64_t bytes_out;        /* compressed bytes (headers included) of those */
    uint64_t sgl_jobs;
    uint64_t queues_fatal;     /* queues an AEQE killed (driver state FATAL) */
    uint64_t jobs_by_type[4];  /* index = zip_req_type, or the SEC/HPRE job kind
                                * (workload_kind_name) */
    uint64_t stream_jobs;      /* jobs compressed as a stream of pieces */
    uint64_t stream_pieces;    /* their pieces completed */
    uint64_t streams_open;     /* stream jobs with some but not all pieces completed */
    uint64_t first_failed_job; /* UINT64_MAX if none */
    char first_failure[96];    /* why that job failed */
    struct guest_vf_stats driver;
};

/* Counters from the job table in guest RAM (any time; exact when paused or
 * finished). */
void workload_report_get(const struct workload *w, struct workload_report *r);

/* With the vCPUs paused: check that guest RAM holds no half-done submission:
 * every vCPU waiting on a job has that job's tag in flight on the right
 * queue, every busy slot of the driver's in-flight tables belongs to such a
 * job, and the driver's counts agree. 0, or -EPROTO with a reason. */
int workload_check_paused(const struct workload *w, char *why, size_t why_len);

/* The driver handle in use (valid until the next resume or destroy). */
struct guest_vf *workload_vf(const struct workload *w);
const struct workload_config *workload_config_get(const struct workload *w);
/* Steps executed by all vCPUs so far (progress indicator, kept in RAM). */
uint64_t workload_steps(const struct workload *w);

#endif
