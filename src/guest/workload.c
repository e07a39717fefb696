/* workload: vCPU-like threads running compression jobs through the guest
 * driver, with all state in guest RAM (workload.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "common/common.h"
#include "guest/wl_crypto.h"
#include "guest/workload.h"

#define WL_MAGIC 0x314b4c57u /* "WLK1" */
#define WL_VERSION 3u /* 2: stream jobs (config, job fields, context buffers); 3: engines */
#define WL_PAGE 4096u
#define WL_TAG_MAGIC 0xacc0ull
#define WL_IRQ_WAIT_MS 10
#define WL_WORKER_WAIT_MS 20
#define WL_VERIFY_CHUNK (64u << 10)
#define WL_STREAM_MIN_PIECES 4u
#define WL_STREAM_MAX_PIECES 16u /* a piece's bit in wl_job.piece_mask */
#define WL_TAG_PIECE_SHIFT 40
#define WL_STREAM_SEED 0x5354524d5354524dull /* "STRM": the stream draw's own sequence */

enum wl_step {
    WL_STEP_PICK = 0,
    WL_STEP_GEN,
    WL_STEP_SUBMIT_COMP,
    WL_STEP_WAIT_COMP,
    WL_STEP_VERIFY,
    WL_STEP_SUBMIT_DECOMP,
    WL_STEP_WAIT_DECOMP,
    WL_STEP_CHECK,
    WL_STEP_DONE,
};

enum wl_job_state { WL_JOB_NEW = 0, WL_JOB_RUNNING, WL_JOB_VERIFIED, WL_JOB_FAILED, WL_JOB_LOST };

enum wl_fail {
    WL_FAIL_NONE = 0,
    WL_FAIL_SUBMIT,
    WL_FAIL_COMP_STATUS,
    WL_FAIL_COMP_LEN,
    WL_FAIL_ZLIB,
    WL_FAIL_DECOMP_STATUS,
    WL_FAIL_DECOMP_DATA,
    WL_FAIL_LOST_COMP,
    WL_FAIL_LOST_DECOMP,
    WL_FAIL_OP0_STATUS,
    WL_FAIL_OP0_RESULT,
    WL_FAIL_OP1_STATUS,
    WL_FAIL_OP1_RESULT,
    WL_FAIL_GEN,
    WL_FAIL_COUNT,
};

static const char *const wl_fail_names[WL_FAIL_COUNT] = {
    [WL_FAIL_NONE] = "none",
    [WL_FAIL_SUBMIT] = "submission refused (queue stopped or dead)",
    [WL_FAIL_COMP_STATUS] = "compression status not OK",
    [WL_FAIL_COMP_LEN] = "compression produced/consumed out of range",
    [WL_FAIL_ZLIB] = "zlib could not inflate the device's output to the input",
    [WL_FAIL_DECOMP_STATUS] = "decompression status not OK",
    [WL_FAIL_DECOMP_DATA] = "decompression did not give the input back",
    [WL_FAIL_LOST_COMP] = "compression never completed",
    [WL_FAIL_LOST_DECOMP] = "decompression never completed",
    [WL_FAIL_OP0_STATUS] = "the first operation's status not OK",
    [WL_FAIL_OP0_RESULT] = "the first operation's result differs from libcrypto's",
    [WL_FAIL_OP1_STATUS] = "the second operation's status not OK",
    [WL_FAIL_OP1_RESULT] = "the second operation's result differs from libcrypto's",
    [WL_FAIL_GEN] = "the job's keys or inputs could not be made (libcrypto)",
};

#define WL_DATA_KINDS 3u

/* A job in guest RAM (80 bytes). *_done are completion counts per tag,
 * written by the completion path; the rest by the vCPU running the job.
 * A stream job (pieces > 0): comp_submitted counts the pieces submitted,
 * comp_done the completions, piece_mask has a bit per piece completed and
 * piece_dups counts completions of a piece already done (completion path);
 * piece is the one being run and comp_len the header plus every earlier
 * piece's output (vCPU). */
struct wl_job {
    uint32_t state, fail;
    uint32_t in_len, in_crc;
    uint32_t comp_len; /* header + produced */
    uint8_t type, sgl, window, kind;
    uint8_t hdr_len, pieces;
    uint16_t per_sgl;
    uint32_t piece_len;
    uint32_t comp_submitted, decomp_submitted;
    uint32_t comp_done, decomp_done;
    uint32_t comp_status, comp_produced, comp_consumed;
    uint32_t decomp_status, decomp_produced, decomp_consumed;
    uint16_t piece_mask;
    uint8_t piece, piece_dups;
    uint32_t qsel; /* SEC/HPRE: bit d set = operation d runs on the pair's odd queue */
};
_Static_assert(sizeof(struct wl_job) == 80, "struct wl_job is 80 bytes");

struct wl_vcpu {
    uint32_t step, job;
    uint32_t comp_qp, decomp_qp;
    uint64_t in_gpa, comp_gpa, out_gpa, sgl_src_gpa, sgl_dst_gpa;
    uint64_t steps;
};
_Static_assert(sizeof(struct wl_vcpu) == 64, "struct wl_vcpu is 64 bytes");

/* The root block at WORKLOAD_ROOT_GPA. */
struct wl_root {
    uint32_t magic, version;
    struct workload_config cfg;
    uint64_t ram_needed;
    uint64_t jobs_gpa, driver_gpa, driver_len;
    uint64_t in_cap, comp_cap, out_cap, sgl_cap;
    uint32_t next_job, rsvd;
    uint64_t stray_completions;
    uint64_t steps;
    struct wl_vcpu vcpu[WORKLOAD_MAX_VCPUS];
};

struct wl_thread {
    struct workload *w;
    unsigned idx; /* < vcpus: a worker; == vcpus: the interrupt thread */
};

struct workload {
    struct guest_ram ram;
    struct vf_io io;
    struct guest_vf *vf;
    /* Host side, not in guest RAM: where compressed results are exported
     * (workload_result_sink) and the test-only miscount knob. */
    workload_result_fn result_fn;
    void *result_opaque;
    uint32_t miscount_job; /* job + 1 counted verified without running; 0 none */
    struct wl_root *root; /* derived from ram; never stored in guest RAM */
    struct workload_config cfg;
    /* SEC/HPRE (NULL for ZIP): the job kinds, and keys derived from the
     * seed alone (host side: every host derives the same). */
    const struct wlc_ops *cops;
    struct wlc_ctx *cctx;
    unsigned nthreads;

    /* Protects started, parked, exited, finished; cond signals changes. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int started;
    unsigned parked, exited, finished;
    atomic_int pause_req, stop_req;

    /* Protects done_seq, bumped after every poll that delivered completions;
     * done_cond wakes the workers waiting for one. */
    pthread_mutex_t done_lock;
    pthread_cond_t done_cond;
    uint64_t done_seq;

    /* Start of the current wait per worker (host time; reset on resume, so
     * time spent paused or in transit never counts towards job_timeout). */
    uint64_t wait_since_ns[WORKLOAD_MAX_VCPUS];
    pthread_t threads[WORKLOAD_MAX_VCPUS + 1];
    struct wl_thread targs[WORKLOAD_MAX_VCPUS + 1];
};

/* ---- configuration and layout ---- */

void workload_config_default(struct workload_config *cfg)
{
    *cfg = (struct workload_config){
        .jobs = 2000,
        .qps = 4,
        .vcpus = 4,
        .min_size = 1u << 10,
        .max_size = 1u << 20,
        .seed = 1,
        .sgl_percent = 25,
        .job_timeout_ms = 30000,
        .stream_percent = 0,
    };
}

static int wl_why(char *why, size_t len, const char *msg)
{
    if (why && len)
        snprintf(why, len, "%s", msg);
    return -EINVAL;
}

int workload_config_check(const struct workload_config *c, char *why, size_t why_len)
{
    if (!c)
        return wl_why(why, why_len, "no configuration");
    if (c->jobs < 1 || c->jobs > WORKLOAD_MAX_JOBS)
        return wl_why(why, why_len, "jobs must be 1..16777216");
    if (c->qps < 2 || c->qps % 2 || c->qps > GUEST_VF_MAX_QPS)
        return wl_why(why, why_len, "qps must be even, 2..64 (a compress and a decompress queue per pair)");
    if (c->vcpus < 1 || c->vcpus > WORKLOAD_MAX_VCPUS)
        return wl_why(why, why_len, "vcpus must be 1..32");
    if (c->min_size < WORKLOAD_MIN_SIZE || c->max_size > WORKLOAD_MAX_SIZE || c->min_size > c->max_size)
        return wl_why(why, why_len, "sizes must satisfy 1 <= min-size <= max-size <= 4 MiB");
    if (c->sgl_percent > 100)
        return wl_why(why, why_len, "sgl percent must be 0..100");
    if (c->stream_percent > 100)
        return wl_why(why, why_len, "stream percent must be 0..100");
    if (c->job_timeout_ms < 1)
        return wl_why(why, why_len, "job timeout must be at least 1 ms");
    if (c->engine >= GUEST_ENGINE_COUNT)
        return wl_why(why, why_len, "engine must be zip, sec or hpre");
    if (c->engine != GUEST_ENGINE_ZIP && c->stream_percent)
        return wl_why(why, why_len, "stream jobs are ZIP's: stream percent must be 0 with sec or hpre");
    return 0;
}

/* SGL shapes a job may use: piece lengths x entries per SGL. */
static const uint32_t wl_sgl_pieces[] = {1000, 4096, 12345, 65536};
static const uint16_t wl_sgl_per[] = {8, 32, 255};

static uint64_t wl_comp_cap(uint32_t max_size)
{
    /* Incompressible input grows a little (stored or poorly coded blocks);
     * generous room keeps "destination too small" out of the picture. */
    return AM_ALIGN_UP((uint64_t)max_size + max_size / 8 + 1024 + GUEST_ZIP_MAX_HDR_LEN, WL_PAGE);
}

/* The drawn SGL shape, with full SGLs instead when the chain for len bytes
 * would be longer than the engine walks (ZIP_SGL_MAX_CHAIN). */
static uint16_t wl_sgl_per_for(uint64_t len, uint32_t piece, uint16_t per)
{
    uint64_t entries = (len + piece - 1) / piece;

    return (entries + per - 1) / per > ZIP_SGL_MAX_CHAIN ? (uint16_t)ZIP_SGL_MAX_ENTRIES : per;
}

static uint64_t wl_sgl_cap(uint64_t data_cap)
{
    uint64_t cap = 0;

    for (size_t p = 0; p < AM_ARRAY_SIZE(wl_sgl_pieces); p++)
        for (size_t e = 0; e < AM_ARRAY_SIZE(wl_sgl_per); e++) {
            uint16_t per = wl_sgl_per_for(data_cap, wl_sgl_pieces[p], wl_sgl_per[e]);
            cap = AM_MAX(cap, guest_sgl_size(data_cap, wl_sgl_pieces[p], per));
        }
    return AM_ALIGN_UP(cap, WL_PAGE);
}

struct wl_layout {
    uint64_t jobs_gpa, driver_gpa, driver_len, keys_gpa, bufs_gpa;
    uint64_t in_cap, comp_cap, out_cap, sgl_cap, ctx_cap, per_vcpu, total;
};

static void wl_layout(const struct workload_config *c, struct wl_layout *l)
{
    l->jobs_gpa = WORKLOAD_ROOT_GPA + AM_ALIGN_UP((uint64_t)sizeof(struct wl_root), WL_PAGE);
    l->driver_gpa = l->jobs_gpa + AM_ALIGN_UP((uint64_t)c->jobs * sizeof(struct wl_job), WL_PAGE);
    l->driver_len = guest_vf_state_size(c->qps);
    l->keys_gpa = l->driver_gpa + l->driver_len;
    l->bufs_gpa = l->keys_gpa;
    if (c->engine != GUEST_ENGINE_ZIP) {
        const struct wlc_ops *ops = wlc_ops_for(c->engine);

        /* The derived keys live in guest RAM, as a guest's keys do: they
         * migrate with it, and no host derives them again at resume. */
        l->bufs_gpa += AM_ALIGN_UP((uint64_t)(ops ? ops->ctx_size : 0), WL_PAGE);
        /* in = AAD | payload (or an operand); out1 = result | tag; out2;
         * the aux area (keys, IVs) where ZIP has its source SGLs. */
        l->in_cap = AM_ALIGN_UP((uint64_t)AM_MAX(c->max_size, WLC_MIN_IN) + WLC_IN_EXTRA, WL_PAGE);
        l->comp_cap = l->in_cap + WL_PAGE;
        l->out_cap = l->in_cap;
        l->sgl_cap = WLC_AUX_CAP;
        l->ctx_cap = 0;
        l->per_vcpu = l->in_cap + l->comp_cap + l->out_cap + 2 * l->sgl_cap;
        l->total = l->bufs_gpa + (uint64_t)c->vcpus * l->per_vcpu;
        return;
    }
    l->in_cap = AM_ALIGN_UP((uint64_t)c->max_size, WL_PAGE);
    l->comp_cap = wl_comp_cap(c->max_size);
    l->out_cap = l->in_cap;
    l->sgl_cap = wl_sgl_cap(l->comp_cap);
    /* A stream context per vCPU (it runs one stream at a time), only when
     * there are stream jobs, so the layout without them is as before. */
    l->ctx_cap = c->stream_percent ? GUEST_ZIP_STREAM_CTX_SIZE : 0;
    l->per_vcpu = l->in_cap + l->comp_cap + l->out_cap + 2 * l->sgl_cap + l->ctx_cap;
    l->total = l->bufs_gpa + (uint64_t)c->vcpus * l->per_vcpu;
}

uint64_t workload_ram_size(const struct workload_config *cfg)
{
    struct wl_layout l;

    if (workload_config_check(cfg, NULL, 0))
        return 0;
    wl_layout(cfg, &l);
    return l.total;
}

/* ---- deterministic data ---- */

static uint64_t wl_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t wl_job_seed(uint64_t seed, uint32_t job)
{
    uint64_t s = seed ^ ((uint64_t)job * 0xd1b54a32d192ed03ull);
    wl_rand(&s);
    return s;
}

/* Log-uniform in [lo, hi]: pick a power-of-two band, then a size inside it. */
static uint32_t wl_pick_size(uint64_t *s, uint32_t lo, uint32_t hi)
{
    unsigned blo = 31 - (unsigned)__builtin_clz(lo), bhi = 31 - (unsigned)__builtin_clz(hi);
    unsigned b = blo + (unsigned)(wl_rand(s) % (bhi - blo + 1));
    uint64_t v = (1ull << b) + wl_rand(s) % (1ull << b);

    return (uint32_t)AM_MIN(AM_MAX(v, (uint64_t)lo), (uint64_t)hi);
}

static const char *const wl_words[] = {
    "the", "queue", "manager", "fetches", "a", "submission", "entry", "and", "the", "engine",
    "compresses", "its", "input", "into", "guest", "memory", "before", "writing", "completion",
    "of", "each", "job", "to", "ring", "doorbell", "migration", "moves", "device", "state",
    "between", "hosts", "while", "virtual", "machine", "keeps", "running", "with", "no",
    "lost", "work", "interrupt", "event", "phase", "wraps", "when", "tail", "reaches", "depth",
    "page", "dirty", "log", "copy", "stop", "resume", "kunpeng", "accelerator", "function",
    "register", "mailbox", "context", "table", "zlib", "gzip", "deflate",
};

static void wl_gen_text(uint8_t *p, size_t len, uint64_t *s)
{
    size_t pos = 0;

    while (pos < len) {
        uint64_t r = wl_rand(s);
        const char *w = wl_words[(r & 0xff) % AM_ARRAY_SIZE(wl_words)];
        size_t wl = strlen(w);
        unsigned punct = (unsigned)(r >> 8) & 0x1f;

        for (size_t i = 0; i < wl && pos < len; i++)
            p[pos++] = (uint8_t)w[i];
        if (pos < len)
            p[pos++] = punct == 0 ? '\n' : punct == 1 ? '.' : punct == 2 ? ',' : ' ';
    }
}

static void wl_gen_random(uint8_t *p, size_t len, uint64_t *s)
{
    size_t pos = 0;

    while (pos < len) {
        uint64_t r = wl_rand(s);
        size_t n = AM_MIN(len - pos, sizeof(r));
        memcpy(p + pos, &r, n);
        pos += n;
    }
}

static void wl_gen(uint8_t *p, size_t len, unsigned kind, uint64_t *s)
{
    size_t pos = 0;
    unsigned k = 0;

    if (kind != WORKLOAD_DATA_MIXED) {
        (kind == WORKLOAD_DATA_TEXT ? wl_gen_text : wl_gen_random)(p, len, s);
        return;
    }
    while (pos < len) {
        /* One draw: AM_MIN evaluates its arguments twice, and a second draw
         * could make the run overshoot len (the ledger's regeneration of
         * the input found the write past the end). */
        size_t want = (size_t)(256 + wl_rand(s) % 8192), run = AM_MIN(len - pos, want);
        (k % 2 == 0 ? wl_gen_text : wl_gen_random)(p + pos, run, s);
        pos += run;
        k++;
    }
}

void workload_data_fill(uint8_t *buf, size_t len, enum workload_data_kind kind, uint64_t seed)
{
    uint64_t s = seed;

    wl_gen(buf, len, kind, &s);
}

/* ---- tags ---- */

/* magic (16 bits) | piece (8) | dir (8) | job (32); piece is 0 but for a
 * stream job's compression pieces. */
static uint64_t wl_tag_piece(uint32_t job, unsigned dir, unsigned piece)
{
    return WL_TAG_MAGIC << 48 | (uint64_t)piece << WL_TAG_PIECE_SHIFT | (uint64_t)dir << 32 | job;
}

static uint64_t wl_tag(uint32_t job, unsigned dir)
{
    return wl_tag_piece(job, dir, 0);
}

static int wl_tag_decode(const struct workload *w, uint64_t tag, uint32_t *job, unsigned *dir,
                         unsigned *piece)
{
    if (tag >> 48 != WL_TAG_MAGIC || ((tag >> 32) & 0xffu) > 1 || (uint32_t)tag >= w->cfg.jobs ||
        ((tag >> WL_TAG_PIECE_SHIFT) & 0xffu) >= WL_STREAM_MAX_PIECES)
        return -EINVAL;
    *job = (uint32_t)tag;
    *dir = (unsigned)(tag >> 32) & 1u;
    *piece = (unsigned)(tag >> WL_TAG_PIECE_SHIFT) & 0xffu;
    return 0;
}

/* ---- guest RAM access ---- */

static void *wl_ptr(const struct workload *w, uint64_t gpa)
{
    return guest_ram_ptr(&w->ram, gpa);
}

static struct wl_job *wl_job(const struct workload *w, uint32_t j)
{
    return (struct wl_job *)wl_ptr(w, w->root->jobs_gpa) + j;
}

static void wl_dirty(const struct workload *w, const void *p, uint64_t len)
{
    guest_ram_mark_dirty(&w->ram, (uint64_t)((const uint8_t *)p - w->ram.host), len);
}

/* Which queue of its pair operation dir of job j goes to: ZIP compresses
 * on 2k and decompresses on 2k+1; SEC and HPRE say per job (qsel). */
static unsigned wl_op_parity(const struct workload *w, uint32_t j, unsigned dir)
{
    if (!w->cops)
        return dir;
    return (__atomic_load_n(&wl_job(w, j)->qsel, __ATOMIC_ACQUIRE) >> dir) & 1u;
}

static unsigned wl_op_qp(const struct workload *w, const struct wl_vcpu *v, uint32_t j,
                         unsigned dir)
{
    return wl_op_parity(w, j, dir) ? v->decomp_qp : v->comp_qp;
}

/* The completion path's callback: count the tag, keep the result. */
static void wl_on_complete(void *opaque, const struct guest_vf_completion *c)
{
    struct workload *w = opaque;
    struct wl_job *job;
    uint32_t j;
    unsigned dir, piece;

    if (wl_tag_decode(w, c->tag, &j, &dir, &piece) || (c->qp % 2) != wl_op_parity(w, j, dir) ||
        (piece && (dir != ZIP_ALG_COMPRESS || piece >= wl_job(w, j)->pieces))) {
        __atomic_fetch_add(&w->root->stray_completions, 1, __ATOMIC_RELAXED);
        wl_dirty(w, &w->root->stray_completions, sizeof(uint64_t));
        am_log(AM_LOG_ERR, "workload", "completion on qp %u with stray tag 0x%llx", c->qp,
               (unsigned long long)c->tag);
        return;
    }
    job = wl_job(w, j);
    if (dir == ZIP_ALG_COMPRESS) {
        job->comp_status = c->status;
        job->comp_produced = c->produced;
        job->comp_consumed = c->consumed;
        if (job->pieces) {
            uint16_t bit = (uint16_t)(1u << piece);
            if (__atomic_load_n(&job->piece_mask, __ATOMIC_RELAXED) & bit)
                __atomic_fetch_add(&job->piece_dups, 1, __ATOMIC_RELAXED);
            /* Release: the results above are visible to whoever sees the bit. */
            __atomic_fetch_or(&job->piece_mask, bit, __ATOMIC_RELEASE);
        }
        __atomic_fetch_add(&job->comp_done, 1, __ATOMIC_RELEASE);
    } else {
        job->decomp_status = c->status;
        job->decomp_produced = c->produced;
        job->decomp_consumed = c->consumed;
        __atomic_fetch_add(&job->decomp_done, 1, __ATOMIC_RELEASE);
    }
    wl_dirty(w, job, sizeof(*job));
}

/* ---- the vCPU state machine ---- */

enum wl_result { WL_PROGRESS, WL_WAIT, WL_DONE };

static void wl_job_fail(struct workload *w, struct wl_job *job, uint32_t j, enum wl_fail why,
                        enum wl_job_state st)
{
    job->state = st;
    job->fail = why;
    wl_dirty(w, job, sizeof(*job));
    am_log(AM_LOG_ERR, "workload", "job %u (type %u, %u bytes, %s): %s", j, job->type, job->in_len,
           job->sgl ? "sgl" : "flat", wl_fail_names[why]);
}

static enum wl_result wl_step_pick(struct workload *w, struct wl_vcpu *v)
{
    uint32_t j = __atomic_fetch_add(&w->root->next_job, 1, __ATOMIC_RELAXED);

    wl_dirty(w, &w->root->next_job, sizeof(uint32_t));
    if (j >= w->cfg.jobs) {
        v->step = WL_STEP_DONE;
        return WL_DONE;
    }
    v->job = j;
    v->step = WL_STEP_GEN;
    return WL_PROGRESS;
}

/* What a job's seed decides before its data, in the order the generator
 * draws it; the data follows from *s. One source for the guest and for
 * workload_job_input. */
struct wl_params {
    uint32_t in_len;
    uint8_t kind, type, window, sgl;
    uint32_t piece_len;
    uint16_t per_choice;
};

static void wl_params_draw(const struct workload_config *cfg, uint32_t job, struct wl_params *p,
                           uint64_t *s)
{
    *s = wl_job_seed(cfg->seed, job);
    p->in_len = wl_pick_size(s, cfg->min_size, cfg->max_size);
    p->kind = (uint8_t)(wl_rand(s) % WL_DATA_KINDS);
    p->type = (uint8_t)(ZIP_REQ_DEFLATE + wl_rand(s) % 3);
    p->window = (uint8_t)(wl_rand(s) % 5);
    p->sgl = wl_rand(s) % 100 < cfg->sgl_percent;
    p->piece_len = wl_sgl_pieces[wl_rand(s) % AM_ARRAY_SIZE(wl_sgl_pieces)];
    p->per_choice = wl_sgl_per[wl_rand(s) % AM_ARRAY_SIZE(wl_sgl_per)];
}

/* Whether job is a stream job and how its input is cut, drawn from a
 * sequence of its own so that the other draws, and so the data, do not
 * depend on stream_percent. Returns the number of pieces (0: a stateless
 * job); for i below it, *off and *len (when not NULL) get piece i's range
 * of the in_len input bytes (random sizes; the pieces cover it exactly). */
static unsigned wl_stream_draw(const struct workload_config *cfg, uint32_t job, uint32_t in_len,
                               unsigned i, uint32_t *off, uint32_t *len)
{
    uint32_t wt[WL_STREAM_MAX_PIECES];
    uint64_t s, sum = 0, before = 0;
    unsigned n;

    if (!cfg->stream_percent)
        return 0;
    s = wl_job_seed(cfg->seed ^ WL_STREAM_SEED, job);
    if (wl_rand(&s) % 100 >= cfg->stream_percent)
        return 0;
    n = WL_STREAM_MIN_PIECES +
        (unsigned)(wl_rand(&s) % (WL_STREAM_MAX_PIECES - WL_STREAM_MIN_PIECES + 1));
    for (unsigned k = 0; k < n; k++) {
        wt[k] = 1 + (uint32_t)(wl_rand(&s) % 1000);
        sum += wt[k];
        before += k < i ? wt[k] : 0;
    }
    if (off && len && i < n) {
        uint64_t a = (uint64_t)in_len * before / sum;
        uint64_t b = (uint64_t)in_len * (before + wt[i]) / sum;
        *off = (uint32_t)a;
        *len = (uint32_t)(b - a);
    }
    return n;
}

int workload_job_input(const struct workload_config *cfg, uint32_t job, uint8_t *buf, size_t cap,
                       uint32_t *len, enum zip_req_type *type)
{
    struct wl_params p;
    uint64_t s;

    if (!cfg || job >= cfg->jobs || !len || !type)
        return -EINVAL;
    wl_params_draw(cfg, job, &p, &s);
    *len = p.in_len;
    *type = (enum zip_req_type)p.type;
    if (!buf || cap < p.in_len)
        return -ENOSPC;
    wl_gen(buf, p.in_len, p.kind, &s);
    return 0;
}

unsigned workload_job_stream_pieces(const struct workload_config *cfg, uint32_t job)
{
    struct wl_params p;
    uint64_t s;

    if (!cfg || job >= cfg->jobs)
        return 0;
    wl_params_draw(cfg, job, &p, &s);
    return wl_stream_draw(cfg, job, p.in_len, 0, NULL, NULL);
}

void workload_result_sink(struct workload *w, workload_result_fn fn, void *opaque)
{
    w->result_fn = fn;
    w->result_opaque = opaque;
}

void workload_test_miscount(struct workload *w, uint32_t job_plus_one)
{
    w->miscount_job = job_plus_one;
}

static enum wl_result wl_cstep_gen(struct workload *w, struct wl_vcpu *v, struct wl_job *job);

static enum wl_result wl_step_gen(struct workload *w, struct wl_vcpu *v)
{
    struct wl_job *job = wl_job(w, v->job);
    uint8_t *in = wl_ptr(w, v->in_gpa);
    struct wl_params p;
    uint64_t s;
    int hdr;

    wl_params_draw(&w->cfg, v->job, &p, &s);
    memset(job, 0, sizeof(*job));
    if (w->miscount_job == v->job + 1) {
        /* Test-only: a guest that counts a job it never ran (the demo's
         * ledger must catch it). */
        job->state = WL_JOB_VERIFIED;
        wl_dirty(w, job, sizeof(*job));
        v->step = WL_STEP_PICK;
        return WL_PROGRESS;
    }
    if (w->cops)
        return wl_cstep_gen(w, v, job);
    job->state = WL_JOB_RUNNING;
    job->in_len = p.in_len;
    job->kind = p.kind;
    job->type = p.type;
    job->window = p.window;
    job->sgl = p.sgl;
    job->piece_len = p.piece_len;
    job->per_sgl = wl_sgl_per_for(w->root->comp_cap, job->piece_len, p.per_choice);
    job->pieces = (uint8_t)wl_stream_draw(&w->cfg, v->job, p.in_len, 0, NULL, NULL);
    if (job->pieces)
        job->sgl = 0; /* stream jobs run on flat buffers */
    wl_gen(in, job->in_len, job->kind, &s);
    wl_dirty(w, in, job->in_len);
    job->in_crc = am_crc32c(0, in, job->in_len);
    hdr = guest_zip_header_write((enum zip_req_type)job->type, wl_ptr(w, v->comp_gpa),
                                 w->root->comp_cap);
    job->hdr_len = (uint8_t)hdr;
    job->comp_len = job->pieces ? job->hdr_len : 0; /* a stream's output grows piece by piece */
    wl_dirty(w, wl_ptr(w, v->comp_gpa), GUEST_ZIP_MAX_HDR_LEN);
    wl_dirty(w, job, sizeof(*job));
    v->step = WL_STEP_SUBMIT_COMP;
    return WL_PROGRESS;
}

/* Describe src/dst for a job: flat addresses, or SGL chains built now. */
static int wl_bufs(struct workload *w, const struct wl_vcpu *v, const struct wl_job *job,
                   uint64_t src, uint64_t src_len, uint64_t dst, uint64_t dst_len,
                   struct guest_zip_req *r)
{
    int ret;

    r->type = (enum zip_req_type)job->type;
    r->buf_type = job->sgl ? ZIP_BUF_SGL : ZIP_BUF_FLAT;
    if (!job->sgl) {
        r->src = src;
        r->dst = dst;
        return 0;
    }
    ret = guest_sgl_build(&w->ram, v->sgl_src_gpa, w->root->sgl_cap, src, src_len, job->piece_len,
                          job->per_sgl);
    if (!ret)
        ret = guest_sgl_build(&w->ram, v->sgl_dst_gpa, w->root->sgl_cap, dst, dst_len,
                              job->piece_len, job->per_sgl);
    r->src = v->sgl_src_gpa;
    r->dst = v->sgl_dst_gpa;
    return ret;
}

/* Submit sqe (built by the caller: ret its builder's result) for
 * operation dir of the vCPU's job. */
static enum wl_result wl_submit_sqe(struct workload *w, unsigned idx, struct wl_vcpu *v,
                                    struct wl_job *job, unsigned dir, const uint32_t *sqe, int ret)
{
    unsigned qp = wl_op_qp(w, v, v->job, dir);

    if (!ret)
        ret = guest_vf_submit_sqe(w->vf, qp, sqe);
    if (ret == -EBUSY)
        return WL_WAIT; /* SQ full: a completion will free a slot */
    if (ret) {
        wl_job_fail(w, job, v->job, WL_FAIL_SUBMIT, WL_JOB_FAILED);
        v->step = WL_STEP_PICK;
        return WL_PROGRESS;
    }
    if (dir == ZIP_ALG_COMPRESS)
        job->comp_submitted = job->pieces ? job->piece + 1u : 1u;
    else
        job->decomp_submitted = 1;
    wl_dirty(w, job, sizeof(*job));
    w->wait_since_ns[idx] = am_now_ns();
    v->step = dir == ZIP_ALG_COMPRESS ? WL_STEP_WAIT_COMP : WL_STEP_WAIT_DECOMP;
    return WL_PROGRESS;
}

static enum wl_result wl_submit(struct workload *w, unsigned idx, struct wl_vcpu *v,
                                struct wl_job *job, unsigned dir, const struct guest_zip_req *r)
{
    uint32_t sqe[ZIP_SQE_DWORDS];
    int ret = guest_zip_sqe_build(sqe, r);

    return wl_submit_sqe(w, idx, v, job, dir, sqe, ret);
}

/* The stream's context buffer: the vCPU's last region (wl_layout). */
static uint64_t wl_ctx_gpa(const struct workload *w, const struct wl_vcpu *v)
{
    return v->sgl_dst_gpa + w->root->sgl_cap;
}

/* Piece job->piece of a stream job: its input range, output after what the
 * earlier pieces wrote, the vCPU's context, first/last flags. */
static enum wl_result wl_submit_piece(struct workload *w, unsigned idx, struct wl_vcpu *v,
                                      struct wl_job *job)
{
    struct guest_zip_req r = {0};
    uint32_t off = 0, len = 0;

    if (job->pieces > WL_STREAM_MAX_PIECES || job->piece >= job->pieces ||
        wl_stream_draw(&w->cfg, v->job, job->in_len, job->piece, &off, &len) != job->pieces ||
        job->comp_len > w->root->comp_cap) {
        wl_job_fail(w, job, v->job, WL_FAIL_SUBMIT, WL_JOB_FAILED);
        v->step = WL_STEP_PICK;
        return WL_PROGRESS;
    }
    r.type = (enum zip_req_type)job->type;
    r.buf_type = ZIP_BUF_FLAT;
    r.src = v->in_gpa + off;
    r.in_len = len;
    r.dst = v->comp_gpa;
    r.out_off = job->comp_len;
    r.dest_avail = (uint32_t)(w->root->comp_cap - job->comp_len);
    r.window = job->window;
    r.tag = wl_tag_piece(v->job, ZIP_ALG_COMPRESS, job->piece);
    r.stream_ctx = wl_ctx_gpa(w, v);
    r.stream_flags = (job->piece == 0 ? GUEST_ZIP_STREAM_FIRST : 0) |
                     (job->piece + 1u == job->pieces ? GUEST_ZIP_STREAM_LAST : 0);
    return wl_submit(w, idx, v, job, ZIP_ALG_COMPRESS, &r);
}

static enum wl_result wl_step_submit_comp(struct workload *w, unsigned idx, struct wl_vcpu *v)
{
    struct wl_job *job = wl_job(w, v->job);
    struct guest_zip_req r = {0};

    if (job->pieces)
        return wl_submit_piece(w, idx, v, job);

    if (wl_bufs(w, v, job, v->in_gpa, job->in_len, v->comp_gpa, w->root->comp_cap, &r)) {
        wl_job_fail(w, job, v->job, WL_FAIL_SUBMIT, WL_JOB_FAILED);
        v->step = WL_STEP_PICK;
        return WL_PROGRESS;
    }
    r.in_len = job->in_len;
    r.out_off = job->hdr_len;
    r.dest_avail = (uint32_t)(w->root->comp_cap - job->hdr_len);
    r.window = job->window;
    r.tag = wl_tag(v->job, ZIP_ALG_COMPRESS);
    return wl_submit(w, idx, v, job, ZIP_ALG_COMPRESS, &r);
}

static enum wl_result wl_step_wait(struct workload *w, unsigned idx, struct wl_vcpu *v, unsigned dir)
{
    struct wl_job *job = wl_job(w, v->job);
    uint32_t *done = dir == ZIP_ALG_COMPRESS ? &job->comp_done : &job->decomp_done;
    int complete;

    if (dir == ZIP_ALG_COMPRESS && job->pieces)
        complete = job->piece < WL_STREAM_MAX_PIECES &&
                   (__atomic_load_n(&job->piece_mask, __ATOMIC_ACQUIRE) >> job->piece & 1u);
    else
        complete = __atomic_load_n(done, __ATOMIC_ACQUIRE) > 0;
    if (complete) {
        v->step = dir == ZIP_ALG_COMPRESS ? WL_STEP_VERIFY : WL_STEP_CHECK;
        return WL_PROGRESS;
    }
    if (am_now_ns() - w->wait_since_ns[idx] > (uint64_t)w->cfg.job_timeout_ms * 1000000ull) {
        wl_job_fail(w, job, v->job, dir == ZIP_ALG_COMPRESS ? WL_FAIL_LOST_COMP : WL_FAIL_LOST_DECOMP,
                    WL_JOB_LOST);
        v->step = WL_STEP_PICK;
        return WL_PROGRESS;
    }
    return WL_WAIT;
}

/* Inflate the device's compressed output with zlib, comparing as it goes. */
static int wl_zlib_check(const uint8_t *comp, uint32_t comp_len, const uint8_t *in, uint32_t in_len,
                         unsigned type)
{
    int bits = type == ZIP_REQ_DEFLATE ? -15 : type == ZIP_REQ_ZLIB ? 15 : 15 + 16;
    uint8_t *chunk = malloc(WL_VERIFY_CHUNK);
    z_stream zs = {0};
    uLong pos = 0;
    int zr = Z_OK, ok = 0;

    if (!chunk || inflateInit2(&zs, bits) != Z_OK) {
        free(chunk);
        return -ENOMEM;
    }
    zs.next_in = (Bytef *)comp;
    zs.avail_in = comp_len;
    while (zr == Z_OK) {
        zs.next_out = chunk;
        zs.avail_out = WL_VERIFY_CHUNK;
        zr = inflate(&zs, Z_NO_FLUSH);
        uLong got = WL_VERIFY_CHUNK - zs.avail_out;
        if ((zr != Z_OK && zr != Z_STREAM_END) || pos + got > in_len ||
            memcmp(chunk, in + pos, got) != 0)
            break;
        pos += got;
        if (zr == Z_OK && got == 0 && zs.avail_in == 0)
            break; /* truncated stream */
    }
    ok = zr == Z_STREAM_END && pos == in_len && zs.avail_in == 0;
    inflateEnd(&zs);
    free(chunk);
    return ok ? 0 : -EBADMSG;
}

static enum wl_result wl_step_verify(struct workload *w, struct wl_vcpu *v)
{
    struct wl_job *job = wl_job(w, v->job);
    uint64_t room = w->root->comp_cap - job->hdr_len;

    v->step = WL_STEP_PICK;
    if (job->comp_status != ZIP_ST_OK && job->comp_status != ZIP_ST_NEGATIVE_COMP) {
        wl_job_fail(w, job, v->job, WL_FAIL_COMP_STATUS, WL_JOB_FAILED);
        return WL_PROGRESS;
    }
    if (job->pieces) {
        /* One piece: it takes all of its input; its output follows the
         * earlier pieces'. The whole stream is checked after the last. */
        uint32_t off = 0, len = 0;

        wl_stream_draw(&w->cfg, v->job, job->in_len, job->piece, &off, &len);
        if (job->comp_consumed != len || job->comp_produced > w->root->comp_cap - job->comp_len) {
            wl_job_fail(w, job, v->job, WL_FAIL_COMP_LEN, WL_JOB_FAILED);
            return WL_PROGRESS;
        }
        job->comp_len += job->comp_produced;
        if (job->piece + 1u < job->pieces) {
            job->piece++;
            wl_dirty(w, job, sizeof(*job));
            v->step = WL_STEP_SUBMIT_COMP;
            return WL_PROGRESS;
        }
    } else if (job->comp_produced > room || job->comp_consumed != job->in_len) {
        wl_job_fail(w, job, v->job, WL_FAIL_COMP_LEN, WL_JOB_FAILED);
        return WL_PROGRESS;
    } else {
        job->comp_len = job->hdr_len + job->comp_produced;
    }
    wl_dirty(w, job, sizeof(*job));
    if (w->result_fn) {
        /* Exported before the guest's own check: whoever reads it checks
         * for itself. */
        struct workload_result res = {.job = v->job, .tag = wl_tag(v->job, ZIP_ALG_COMPRESS),
                                      .type = (enum zip_req_type)job->type,
                                      .data = wl_ptr(w, v->comp_gpa), .len = job->comp_len};
        w->result_fn(w->result_opaque, &res);
    }
    if (wl_zlib_check(wl_ptr(w, v->comp_gpa), job->comp_len, wl_ptr(w, v->in_gpa), job->in_len,
                      job->type)) {
        wl_job_fail(w, job, v->job, WL_FAIL_ZLIB, WL_JOB_FAILED);
        return WL_PROGRESS;
    }
    v->step = WL_STEP_SUBMIT_DECOMP;
    return WL_PROGRESS;
}

static enum wl_result wl_step_submit_decomp(struct workload *w, unsigned idx, struct wl_vcpu *v)
{
    struct wl_job *job = wl_job(w, v->job);
    struct guest_zip_req r = {0};
    uint8_t *out = wl_ptr(w, v->out_gpa);
    size_t hl;

    /* Strip the header as the driver does; the device reads body + trailer. */
    if (guest_zip_header_parse((enum zip_req_type)job->type, wl_ptr(w, v->comp_gpa), job->comp_len,
                               &hl) ||
        hl > job->comp_len ||
        wl_bufs(w, v, job, v->comp_gpa, job->comp_len, v->out_gpa, w->root->out_cap, &r)) {
        wl_job_fail(w, job, v->job, WL_FAIL_SUBMIT, WL_JOB_FAILED);
        v->step = WL_STEP_PICK;
        return WL_PROGRESS;
    }
    /* Poison the output so stale bytes can never pass the check. */
    memset(out, 0xa5, job->in_len);
    wl_dirty(w, out, job->in_len);
    r.in_off = (uint32_t)hl;
    r.in_len = job->comp_len - (uint32_t)hl;
    r.dest_avail = (uint32_t)w->root->out_cap;
    r.tag = wl_tag(v->job, ZIP_ALG_DECOMPRESS);
    return wl_submit(w, idx, v, job, ZIP_ALG_DECOMPRESS, &r);
}

static enum wl_result wl_step_check(struct workload *w, struct wl_vcpu *v)
{
    struct wl_job *job = wl_job(w, v->job);
    const uint8_t *out = wl_ptr(w, v->out_gpa);

    v->step = WL_STEP_PICK;
    if (job->decomp_status != ZIP_ST_OK) {
        wl_job_fail(w, job, v->job, WL_FAIL_DECOMP_STATUS, WL_JOB_FAILED);
        return WL_PROGRESS;
    }
    if (job->decomp_produced != job->in_len || am_crc32c(0, out, job->in_len) != job->in_crc ||
        memcmp(out, wl_ptr(w, v->in_gpa), job->in_len) != 0) {
        wl_job_fail(w, job, v->job, WL_FAIL_DECOMP_DATA, WL_JOB_FAILED);
        return WL_PROGRESS;
    }
    job->state = WL_JOB_VERIFIED;
    wl_dirty(w, job, sizeof(*job));
    return WL_PROGRESS;
}

/* ---- SEC and HPRE jobs (wl_crypto.h) ---- */

static void wl_cbufs(const struct workload *w, const struct wl_vcpu *v, struct wlc_bufs *b)
{
    b->in_gpa = v->in_gpa;
    b->out1_gpa = v->comp_gpa;
    b->out2_gpa = v->out_gpa;
    b->aux_gpa = v->sgl_src_gpa;
    b->in = wl_ptr(w, b->in_gpa);
    b->out1 = wl_ptr(w, b->out1_gpa);
    b->out2 = wl_ptr(w, b->out2_gpa);
    b->aux = wl_ptr(w, b->aux_gpa);
}

/* The job's draw, checked against what the guest recorded at GEN (a job
 * table entry in RAM that disagrees with the configuration is a failure,
 * never an overrun). */
static int wl_cdraw(const struct workload *w, const struct wl_vcpu *v, const struct wl_job *job,
                    struct wlc_job *cj)
{
    w->cops->draw(w->cctx, &w->cfg, v->job, cj);
    if (cj->kind != job->type || cj->in_len != job->in_len ||
        (uint64_t)cj->aad_len + cj->in_len > w->root->in_cap ||
        (uint64_t)cj->res_off + cj->res_len > w->root->comp_cap ||
        (uint64_t)cj->out2_off + cj->out2_len > w->root->out_cap)
        return -EINVAL;
    return 0;
}

static enum wl_result wl_cstep_gen(struct workload *w, struct wl_vcpu *v, struct wl_job *job)
{
    struct wlc_bufs b;
    struct wlc_job cj;

    wl_cbufs(w, v, &b);
    w->cops->draw(w->cctx, &w->cfg, v->job, &cj);
    job->state = WL_JOB_RUNNING;
    job->type = (uint8_t)cj.kind;
    job->in_len = cj.in_len;
    job->comp_len = cj.res_len;
    job->qsel = cj.parity[0] | cj.parity[1] << 1;
    wl_dirty(w, job, sizeof(*job));
    if (wl_cdraw(w, v, job, &cj) || w->cops->gen(w->cctx, &cj, &b)) {
        wl_job_fail(w, job, v->job, WL_FAIL_GEN, WL_JOB_FAILED);
        v->step = WL_STEP_PICK;
        return WL_PROGRESS;
    }
    wl_dirty(w, b.in, (uint64_t)cj.aad_len + cj.in_len);
    wl_dirty(w, b.out1, (uint64_t)cj.res_off + cj.res_len);
    wl_dirty(w, b.out2, (uint64_t)cj.out2_off + cj.out2_len);
    wl_dirty(w, b.aux, WLC_AUX_CAP);
    job->in_crc = am_crc32c(0, cj.in_place ? b.out1 : b.in, (size_t)cj.aad_len + cj.in_len);
    wl_dirty(w, job, sizeof(*job));
    v->step = WL_STEP_SUBMIT_COMP;
    return WL_PROGRESS;
}

static enum wl_result wl_cstep_submit(struct workload *w, unsigned idx, struct wl_vcpu *v,
                                      unsigned op)
{
    struct wl_job *job = wl_job(w, v->job);
    uint32_t sqe[GUEST_SQE_MAX_DWORDS];
    struct wlc_bufs b;
    struct wlc_job cj;
    int ret;

    wl_cbufs(w, v, &b);
    ret = wl_cdraw(w, v, job, &cj);
    if (!ret)
        ret = w->cops->sqe(&cj, &b, op, wl_tag(v->job, op), sqe);
    return wl_submit_sqe(w, idx, v, job, op, sqe, ret);
}

/* Operation op's result in guest RAM against libcrypto's. */
static enum wl_result wl_cstep_verify(struct workload *w, struct wl_vcpu *v, unsigned op)
{
    struct wl_job *job = wl_job(w, v->job);
    uint32_t status = op == 0 ? job->comp_status : job->decomp_status;
    struct wlc_bufs b;
    struct wlc_job cj;
    const uint8_t *got;
    uint8_t *want = NULL;
    uint32_t len;
    int ok;

    v->step = WL_STEP_PICK;
    wl_cbufs(w, v, &b);
    if (wl_cdraw(w, v, job, &cj)) {
        wl_job_fail(w, job, v->job, WL_FAIL_GEN, WL_JOB_FAILED);
        return WL_PROGRESS;
    }
    if (!w->cops->status_ok(status)) {
        wl_job_fail(w, job, v->job, op == 0 ? WL_FAIL_OP0_STATUS : WL_FAIL_OP1_STATUS,
                    WL_JOB_FAILED);
        return WL_PROGRESS;
    }
    got = op == 0 ? b.out1 + cj.res_off : b.out2 + cj.out2_off;
    len = op == 0 ? cj.res_len : cj.out2_len;
    if (op == 0 && w->result_fn) {
        /* Exported before the guest's own check: whoever reads it checks
         * for itself. */
        struct workload_result res = {.job = v->job, .tag = wl_tag(v->job, 0),
                                      .type = (enum zip_req_type)job->type, .data = got,
                                      .len = len};
        w->result_fn(w->result_opaque, &res);
    }
    want = malloc(AM_MAX(len, 1u));
    ok = want && w->cops->expect(w->cctx, &cj, op, want, len) == 0 && memcmp(want, got, len) == 0;
    free(want);
    if (!ok) {
        wl_job_fail(w, job, v->job, op == 0 ? WL_FAIL_OP0_RESULT : WL_FAIL_OP1_RESULT,
                    WL_JOB_FAILED);
        return WL_PROGRESS;
    }
    if (op == 0) {
        v->step = WL_STEP_SUBMIT_DECOMP;
        return WL_PROGRESS;
    }
    job->state = WL_JOB_VERIFIED;
    wl_dirty(w, job, sizeof(*job));
    return WL_PROGRESS;
}

/* One step of vCPU idx. Atomic with respect to pausing: it runs whole. */
static enum wl_result wl_vcpu_step(struct workload *w, unsigned idx)
{
    struct wl_vcpu *v = &w->root->vcpu[idx];
    enum wl_result r;

    if (w->cops && v->step != WL_STEP_PICK && v->step != WL_STEP_WAIT_COMP &&
        v->step != WL_STEP_WAIT_DECOMP && v->step < WL_STEP_DONE) {
        switch (v->step) {
        case WL_STEP_GEN: r = wl_step_gen(w, v); break;
        case WL_STEP_SUBMIT_COMP: r = wl_cstep_submit(w, idx, v, 0); break;
        case WL_STEP_VERIFY: r = wl_cstep_verify(w, v, 0); break;
        case WL_STEP_SUBMIT_DECOMP: r = wl_cstep_submit(w, idx, v, 1); break;
        default: r = wl_cstep_verify(w, v, 1); break; /* WL_STEP_CHECK */
        }
        goto stepped;
    }
    switch (v->step) {
    case WL_STEP_PICK: r = wl_step_pick(w, v); break;
    case WL_STEP_GEN: r = wl_step_gen(w, v); break;
    case WL_STEP_SUBMIT_COMP: r = wl_step_submit_comp(w, idx, v); break;
    case WL_STEP_WAIT_COMP: r = wl_step_wait(w, idx, v, ZIP_ALG_COMPRESS); break;
    case WL_STEP_VERIFY: r = wl_step_verify(w, v); break;
    case WL_STEP_SUBMIT_DECOMP: r = wl_step_submit_decomp(w, idx, v); break;
    case WL_STEP_WAIT_DECOMP: r = wl_step_wait(w, idx, v, ZIP_ALG_DECOMPRESS); break;
    case WL_STEP_CHECK: r = wl_step_check(w, v); break;
    default: return WL_DONE;
    }
stepped:
    if (r == WL_PROGRESS) {
        v->steps++;
        __atomic_fetch_add(&w->root->steps, 1, __ATOMIC_RELAXED);
        wl_dirty(w, &w->root->steps, sizeof(uint64_t));
    }
    wl_dirty(w, v, sizeof(*v));
    return r;
}

/* ---- threads ---- */

/* A step boundary: park while a pause is requested. 1 = the thread must end. */
static int wl_boundary(struct workload *w)
{
    int stop;

    if (!atomic_load(&w->pause_req) && !atomic_load(&w->stop_req))
        return 0;
    pthread_mutex_lock(&w->lock);
    w->parked++;
    pthread_cond_broadcast(&w->cond);
    while (atomic_load(&w->pause_req) && !atomic_load(&w->stop_req))
        pthread_cond_wait(&w->cond, &w->lock);
    w->parked--;
    stop = atomic_load(&w->stop_req);
    pthread_mutex_unlock(&w->lock);
    return stop;
}

static void wl_deadline(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void wl_worker(struct workload *w, unsigned idx)
{
    for (;;) {
        uint64_t seq;
        enum wl_result r;

        if (wl_boundary(w))
            return;
        pthread_mutex_lock(&w->done_lock);
        seq = w->done_seq;
        pthread_mutex_unlock(&w->done_lock);
        r = wl_vcpu_step(w, idx);
        if (r == WL_DONE) {
            bool last;

            pthread_mutex_lock(&w->lock);
            last = ++w->finished == w->cfg.vcpus;
            pthread_mutex_unlock(&w->lock);
            /* The interrupt thread exits once it sees every vCPU done, but
             * no MSI follows the last completion. */
            if (last && w->io.irq_wake)
                w->io.irq_wake(w->io.opaque);
            return;
        }
        if (r == WL_WAIT) {
            struct timespec dl;
            wl_deadline(&dl, WL_WORKER_WAIT_MS);
            pthread_mutex_lock(&w->done_lock);
            while (w->done_seq == seq && !atomic_load(&w->pause_req) && !atomic_load(&w->stop_req))
                if (pthread_cond_timedwait(&w->done_cond, &w->done_lock, &dl) == ETIMEDOUT)
                    break;
            pthread_mutex_unlock(&w->done_lock);
        }
    }
}

/* The guest's interrupt handler thread: MSI 0 -> driver completion path. */
static void wl_irq_thread(struct workload *w)
{
    for (;;) {
        int irq, n;
        unsigned finished;

        if (wl_boundary(w))
            return;
        pthread_mutex_lock(&w->lock);
        finished = w->finished;
        pthread_mutex_unlock(&w->lock);
        if (finished == w->cfg.vcpus)
            return;
        irq = guest_vf_irq_wait(w->vf, WL_IRQ_WAIT_MS);
        if (irq == -EINTR)
            continue; /* woken for a pause: to the step boundary */
        n = guest_vf_poll(w->vf, irq == 0);
        if (n < 0)
            am_log(AM_LOG_ERR, "workload", "completion path failed: %d", n);
        if (n > 0) {
            pthread_mutex_lock(&w->done_lock);
            w->done_seq++;
            pthread_cond_broadcast(&w->done_cond);
            pthread_mutex_unlock(&w->done_lock);
        }
    }
}

static void *wl_thread_main(void *arg)
{
    struct wl_thread *t = arg;
    struct workload *w = t->w;

    if (t->idx < w->cfg.vcpus)
        wl_worker(w, t->idx);
    else
        wl_irq_thread(w);
    pthread_mutex_lock(&w->lock);
    w->exited++;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* ---- life cycle ---- */

static int wl_new(const struct guest_ram *ram, const struct vf_io *io, struct workload **out)
{
    struct workload *w;
    pthread_condattr_t ca;

    if (!ram || !ram->host || !io || !out)
        return -EINVAL;
    w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->ram = *ram;
    w->io = *io;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    pthread_mutex_init(&w->done_lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->done_cond, &ca);
    pthread_condattr_destroy(&ca);
    *out = w;
    return 0;
}

/* SEC/HPRE: the job kinds, and the keys in guest RAM at l's keys_gpa
 * (derived from w->cfg's seed when derive, else those already there). */
static int wl_crypto_setup(struct workload *w, const struct wl_layout *l, bool derive)
{
    w->cops = wlc_ops_for(w->cfg.engine);
    if (!w->cops || !w->cops->ctx_size)
        return 0;
    w->cctx = wl_ptr(w, l->keys_gpa);
    if (!derive)
        return 0;
    wl_dirty(w, w->cctx, w->cops->ctx_size);
    return w->cops->ctx_derive(&w->cfg, w->cctx);
}

static void wl_free(struct workload *w)
{
    guest_vf_detach(w->vf);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->done_lock);
    pthread_cond_destroy(&w->done_cond);
    free(w);
}

int workload_create(const struct workload_config *cfg, const struct guest_ram *ram,
                    const struct vf_io *io, struct workload **out)
{
    struct workload *w;
    struct wl_root *root;
    struct wl_layout l;
    int ret;

    if (workload_config_check(cfg, NULL, 0))
        return -EINVAL;
    wl_layout(cfg, &l);
    if (!ram || l.total > ram->size)
        return ram ? -ENOSPC : -EINVAL;
    ret = wl_new(ram, io, &w);
    if (ret)
        return ret;
    w->cfg = *cfg;
    ret = wl_crypto_setup(w, &l, true);
    if (ret) {
        wl_free(w);
        return ret;
    }
    root = w->root = wl_ptr(w, WORKLOAD_ROOT_GPA);
    memset(root, 0, sizeof(*root));
    root->magic = WL_MAGIC;
    root->version = WL_VERSION;
    root->cfg = *cfg;
    root->ram_needed = l.total;
    root->jobs_gpa = l.jobs_gpa;
    root->driver_gpa = l.driver_gpa;
    root->driver_len = l.driver_len;
    root->in_cap = l.in_cap;
    root->comp_cap = l.comp_cap;
    root->out_cap = l.out_cap;
    root->sgl_cap = l.sgl_cap;
    for (unsigned i = 0; i < cfg->vcpus; i++) {
        struct wl_vcpu *v = &root->vcpu[i];
        uint64_t base = l.bufs_gpa + (uint64_t)i * l.per_vcpu;
        unsigned pair = i % (cfg->qps / 2);

        v->step = WL_STEP_PICK;
        v->comp_qp = 2 * pair;
        v->decomp_qp = 2 * pair + 1;
        v->in_gpa = base;
        v->comp_gpa = base + l.in_cap;
        v->out_gpa = v->comp_gpa + l.comp_cap;
        v->sgl_src_gpa = v->out_gpa + l.out_cap;
        v->sgl_dst_gpa = v->sgl_src_gpa + l.sgl_cap;
    }
    memset(wl_ptr(w, l.jobs_gpa), 0, (size_t)cfg->jobs * sizeof(struct wl_job));
    wl_dirty(w, wl_ptr(w, l.jobs_gpa), (uint64_t)cfg->jobs * sizeof(struct wl_job));
    wl_dirty(w, root, sizeof(*root));

    ret = guest_vf_init_engine(&w->io, &w->ram, l.driver_gpa, l.driver_len,
                               (enum guest_engine)cfg->engine, &w->vf);
    if (ret)
        goto err_free;
    if (guest_vf_qp_num(w->vf) < cfg->qps) {
        am_log(AM_LOG_ERR, "workload", "the VF has %u queues, %u asked for",
               guest_vf_qp_num(w->vf), cfg->qps);
        ret = -ENODEV;
        goto err_uninit;
    }
    guest_vf_set_complete_cb(w->vf, wl_on_complete, w);
    for (unsigned q = 0; q < cfg->qps; q++) {
        /* ZIP: compress on 2k, decompress on 2k+1; the others as their
         * ops say (SEC: all type 0; HPRE: type 0 on 2k, ECC on 2k+1). */
        unsigned type = w->cops ? w->cops->queue_alg_type(q) : q % 2;
        ret = guest_vf_qp_start_type(w->vf, q, type, GUEST_QP_MODE_IRQ);
        if (ret)
            goto err_uninit;
    }
    *out = w;
    return 0;

err_uninit:
    guest_vf_uninit(w->vf);
err_free:
    root->magic = 0;
    wl_dirty(w, root, sizeof(*root));
    wl_free(w);
    return ret;
}

/* Check that a root block read from RAM describes a layout inside it. */
static int wl_root_valid(const struct guest_ram *ram, const struct wl_root *root)
{
    struct wl_layout l;

    if (root->magic != WL_MAGIC || root->version != WL_VERSION ||
        workload_config_check(&root->cfg, NULL, 0))
        return 0;
    wl_layout(&root->cfg, &l);
    if (l.total > ram->size || root->ram_needed != l.total || root->jobs_gpa != l.jobs_gpa ||
        root->driver_gpa != l.driver_gpa || root->driver_len != l.driver_len ||
        root->in_cap != l.in_cap || root->comp_cap != l.comp_cap || root->out_cap != l.out_cap ||
        root->sgl_cap != l.sgl_cap)
        return 0;
    for (unsigned i = 0; i < root->cfg.vcpus; i++) {
        const struct wl_vcpu *v = &root->vcpu[i];
        uint64_t base = l.bufs_gpa + (uint64_t)i * l.per_vcpu;
        if (v->step > WL_STEP_DONE || v->in_gpa != base || v->comp_gpa != base + l.in_cap ||
            v->out_gpa != v->comp_gpa + l.comp_cap || v->sgl_src_gpa != v->out_gpa + l.out_cap ||
            v->sgl_dst_gpa != v->sgl_src_gpa + l.sgl_cap || v->comp_qp >= root->cfg.qps ||
            v->decomp_qp >= root->cfg.qps ||
            (v->step != WL_STEP_PICK && v->step != WL_STEP_DONE && v->job >= root->cfg.jobs))
            return 0;
    }
    return 1;
}

int workload_attach(const struct guest_ram *ram, const struct vf_io *io, struct workload **out)
{
    struct workload *w;
    struct wl_layout l;
    int ret;

    if (!ram || !ram->host || ram->size < WORKLOAD_ROOT_GPA + sizeof(struct wl_root))
        return -EINVAL;
    if (!wl_root_valid(ram, guest_ram_ptr(ram, WORKLOAD_ROOT_GPA)))
        return -EINVAL;
    ret = wl_new(ram, io, &w);
    if (ret)
        return ret;
    w->root = wl_ptr(w, WORKLOAD_ROOT_GPA);
    w->cfg = w->root->cfg;
    wl_layout(&w->cfg, &l);
    ret = wl_crypto_setup(w, &l, false);
    if (!ret)
        ret = guest_vf_attach(&w->io, &w->ram, w->root->driver_gpa, &w->vf);
    if (!ret && guest_vf_engine(w->vf) != (enum guest_engine)w->cfg.engine) {
        am_log(AM_LOG_ERR, "workload", "the driver state is for engine %u, the workload %u",
               guest_vf_engine(w->vf), w->cfg.engine);
        ret = -EINVAL;
    }
    if (ret) {
        wl_free(w);
        return ret;
    }
    guest_vf_set_complete_cb(w->vf, wl_on_complete, w);
    *out = w;
    return 0;
}

int workload_vcpus_start(struct workload *w)
{
    uint64_t now = am_now_ns();

    if (w->started)
        return -EALREADY;
    atomic_store(&w->pause_req, 0);
    atomic_store(&w->stop_req, 0);
    w->nthreads = w->cfg.vcpus + 1;
    w->parked = w->exited = 0;
    w->finished = 0; /* a worker whose copy is already DONE counts itself at once */
    for (unsigned i = 0; i < w->cfg.vcpus; i++)
        w->wait_since_ns[i] = now;
    for (unsigned i = 0; i < w->nthreads; i++) {
        int ret;
        w->targs[i] = (struct wl_thread){.w = w, .idx = i};
        ret = pthread_create(&w->threads[i], NULL, wl_thread_main, &w->targs[i]);
        if (ret) {
            atomic_store(&w->stop_req, 1);
            for (unsigned k = 0; k < i; k++)
                pthread_join(w->threads[k], NULL);
            return -ret;
        }
    }
    w->started = 1;
    return 0;
}

static unsigned wl_finished_in_ram(const struct workload *w)
{
    unsigned n = 0;

    for (unsigned i = 0; i < w->cfg.vcpus; i++)
        n += w->root->vcpu[i].step == WL_STEP_DONE;
    return n;
}

/* After a pause or stop request: wake the vCPUs waiting for completions
 * and the interrupt thread in its MSI wait (up to WL_IRQ_WAIT_MS
 * otherwise), so they reach their step boundaries now. */
static void wl_wake_waiters(struct workload *w)
{
    pthread_mutex_lock(&w->done_lock);
    pthread_cond_broadcast(&w->done_cond);
    pthread_mutex_unlock(&w->done_lock);
    if (w->io.irq_wake)
        w->io.irq_wake(w->io.opaque);
}

int workload_vcpus_pause(struct workload *w)
{
    if (!w->started || atomic_load(&w->pause_req))
        return -EINVAL;
    atomic_store(&w->pause_req, 1);
    wl_wake_waiters(w);
    pthread_mutex_lock(&w->lock);
    while (w->parked + w->exited < w->nthreads)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

int workload_vcpus_resume(struct workload *w, const struct guest_ram *ram, const struct vf_io *io)
{
    struct guest_ram new_ram = ram ? *ram : w->ram;
    struct vf_io new_io = io ? *io : w->io;
    uint64_t now = am_now_ns();

    if (!w->started || !atomic_load(&w->pause_req))
        return -EINVAL;
    if (ram || io) {
        struct guest_vf *vf;
        const struct wl_root *root;
        int ret;

        if (!new_ram.host || new_ram.size < WORKLOAD_ROOT_GPA + sizeof(struct wl_root))
            return -EINVAL;
        root = guest_ram_ptr(&new_ram, WORKLOAD_ROOT_GPA);
        if (!wl_root_valid(&new_ram, root) || memcmp(&root->cfg, &w->cfg, sizeof(w->cfg)) != 0)
            return -EINVAL;
        ret = guest_vf_attach(&new_io, &new_ram, root->driver_gpa, &vf);
        if (ret)
            return ret;
        guest_vf_detach(w->vf);
        w->vf = vf;
        w->ram = new_ram;
        w->io = new_io;
        w->root = wl_ptr(w, WORKLOAD_ROOT_GPA);
        guest_vf_set_complete_cb(w->vf, wl_on_complete, w);
    }
    for (unsigned i = 0; i < w->cfg.vcpus; i++)
        w->wait_since_ns[i] = now;
    pthread_mutex_lock(&w->lock);
    atomic_store(&w->pause_req, 0);
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

int workload_done(struct workload *w)
{
    unsigned n;

    pthread_mutex_lock(&w->lock);
    /* While threads run, their own count (RAM steps are theirs to write). */
    n = w->started ? w->finished : wl_finished_in_ram(w);
    pthread_mutex_unlock(&w->lock);
    return n == w->cfg.vcpus;
}

int workload_wait(struct workload *w, int timeout_ms)
{
    struct timespec dl;
    int ret = 0;

    if (!w->started)
        return workload_done(w) ? 0 : -EINVAL;
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&w->lock);
    while (w->exited < w->nthreads && ret == 0)
        ret = timeout_ms < 0 ? pthread_cond_wait(&w->cond, &w->lock)
                             : pthread_cond_timedwait(&w->cond, &w->lock, &dl);
    pthread_mutex_unlock(&w->lock);
    return ret == 0 ? 0 : -ETIMEDOUT;
}

static void wl_threads_stop(struct workload *w)
{
    if (!w->started)
        return;
    pthread_mutex_lock(&w->lock);
    atomic_store(&w->stop_req, 1);
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    wl_wake_waiters(w);
    for (unsigned i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    w->started = 0;
    atomic_store(&w->pause_req, 0);
}

int workload_shutdown(struct workload *w)
{
    wl_threads_stop(w);
    return guest_vf_uninit(w->vf);
}

void workload_destroy(struct workload *w)
{
    if (!w)
        return;
    wl_threads_stop(w);
    wl_free(w);
}

/* ---- reports and checks ---- */

void workload_report_get(const struct workload *w, struct workload_report *r)
{
    memset(r, 0, sizeof(*r));
    r->engine = w->cfg.engine;
    r->jobs = w->cfg.jobs;
    r->first_failed_job = UINT64_MAX;
    r->stray_completions = __atomic_load_n(&w->root->stray_completions, __ATOMIC_RELAXED);
    for (uint32_t j = 0; j < w->cfg.jobs; j++) {
        const struct wl_job *job = wl_job(w, j);
        uint32_t cd = __atomic_load_n(&job->comp_done, __ATOMIC_ACQUIRE);
        uint32_t dd = __atomic_load_n(&job->decomp_done, __ATOMIC_ACQUIRE);
        /* Stateless: one tag each way. Stream: a tag per piece submitted. */
        int lost = cd < job->comp_submitted || (job->decomp_submitted && dd == 0);
        uint32_t comp_once = job->pieces ? job->comp_submitted : 1u;
        unsigned pieces_done =
            (unsigned)__builtin_popcount(__atomic_load_n(&job->piece_mask, __ATOMIC_ACQUIRE));

        if (job->state == WL_JOB_NEW)
            continue;
        if (job->type < AM_ARRAY_SIZE(r->jobs_by_type))
            r->jobs_by_type[job->type]++;
        r->sgl_jobs += job->sgl;
        if (job->pieces) {
            r->stream_jobs++;
            r->stream_pieces += pieces_done;
            r->streams_open += pieces_done > 0 && pieces_done < job->pieces;
        }
        if (job->comp_submitted)
            r->jobs_submitted++;
        if (job->comp_submitted && !lost)
            r->jobs_completed++;
        if (job->state == WL_JOB_VERIFIED)
            r->jobs_verified++;
        if (job->state == WL_JOB_FAILED || job->state == WL_JOB_LOST) {
            r->jobs_failed++;
            if (r->first_failed_job == UINT64_MAX) {
                r->first_failed_job = j;
                snprintf(r->first_failure, sizeof(r->first_failure), "%s",
                         wl_fail_names[job->fail < WL_FAIL_COUNT ? job->fail : 0]);
            }
        }
        if (cd > comp_once || __atomic_load_n(&job->piece_dups, __ATOMIC_RELAXED) || dd > 1)
            r->jobs_duplicated++;
        if (lost)
            r->jobs_lost++;
        if (cd > 0) {
            r->bytes_in += job->in_len;
            r->bytes_out += job->pieces || w->cops ? job->comp_len
                                                   : job->hdr_len + (uint64_t)job->comp_produced;
        }
    }
    for (unsigned q = 0; q < w->cfg.qps; q++)
        r->queues_fatal += guest_vf_qp_state(w->vf, q) == GUEST_QP_FATAL;
    guest_vf_stats_get(w->vf, &r->driver);
}

static int wl_check_fail(char *why, size_t len, const char *fmt, unsigned a, unsigned b)
{
    if (why && len)
        snprintf(why, len, fmt, a, b);
    return -EPROTO;
}

int workload_check_paused(const struct workload *w, char *why, size_t why_len)
{
    uint64_t tags[QM_SQ_DEPTH];
    unsigned expected[GUEST_VF_MAX_QPS] = {0};

    if (w->started && !atomic_load(&w->pause_req)) {
        if (why && why_len)
            snprintf(why, why_len, "the vCPUs are running");
        return -EPROTO;
    }
    /* Every vCPU waiting on a job that has not completed owns one in-flight
     * tag on its queue; a vCPU about to submit owns none. */
    for (unsigned i = 0; i < w->cfg.vcpus; i++) {
        const struct wl_vcpu *v = &w->root->vcpu[i];
        const struct wl_job *job;
        unsigned dir, qp, n, piece;
        uint32_t done, submitted;
        int found = 0;

        if (v->step != WL_STEP_WAIT_COMP && v->step != WL_STEP_WAIT_DECOMP &&
            v->step != WL_STEP_SUBMIT_COMP && v->step != WL_STEP_SUBMIT_DECOMP)
            continue;
        job = wl_job(w, v->job);
        dir = (v->step == WL_STEP_WAIT_COMP || v->step == WL_STEP_SUBMIT_COMP) ? 0 : 1;
        qp = wl_op_qp(w, v, v->job, dir);
        piece = !dir && job->pieces ? job->piece : 0;
        if (!dir && job->pieces) {
            /* A stream job's vCPU owns its current piece's tag only. */
            done = piece < WL_STREAM_MAX_PIECES ? job->piece_mask >> piece & 1u : 0;
            submitted = job->comp_submitted > piece;
        } else {
            done = dir ? job->decomp_done : job->comp_done;
            submitted = dir ? job->decomp_submitted : job->comp_submitted;
        }
        n = guest_vf_qp_inflight_tags(w->vf, qp, tags, QM_SQ_DEPTH);
        for (unsigned k = 0; k < n && k < QM_SQ_DEPTH; k++)
            found += tags[k] == wl_tag_piece(v->job, dir, piece);
        if (v->step == WL_STEP_SUBMIT_COMP || v->step == WL_STEP_SUBMIT_DECOMP) {
            if (submitted || found)
                return wl_check_fail(why, why_len, "vCPU %u about to submit job %u has it in flight",
                                     i, v->job);
            continue;
        }
        if (!submitted)
            return wl_check_fail(why, why_len, "vCPU %u waits on job %u never submitted", i, v->job);
        if (done == 0 && found != 1)
            return wl_check_fail(why, why_len, "vCPU %u waits on job %u: tag not in flight", i,
                                 v->job);
        if (done > 0 && found != 0)
            return wl_check_fail(why, why_len, "job %u completed but its tag is still in flight (vCPU %u)",
                                 v->job, i);
        expected[qp] += done == 0;
    }
    /* Nothing else is in flight (lost jobs aside: they are failures anyway),
     * and the driver's count matches its table. */
    for (unsigned q = 0; q < w->cfg.qps; q++) {
        unsigned n = guest_vf_qp_inflight_tags(w->vf, q, tags, QM_SQ_DEPTH);
        if (n != guest_vf_qp_inflight(w->vf, q))
            return wl_check_fail(why, why_len, "qp %u: %u busy slots, driver counts otherwise", q, n);
        if (n < expected[q])
            return wl_check_fail(why, why_len, "qp %u: %u jobs in flight, fewer than waiting", q, n);
    }
    return 0;
}

struct guest_vf *workload_vf(const struct workload *w)
{
    return w->vf;
}

const struct workload_config *workload_config_get(const struct workload *w)
{
    return &w->cfg;
}

uint64_t workload_steps(const struct workload *w)
{
    return __atomic_load_n(&w->root->steps, __ATOMIC_RELAXED);
}

/* ---- engines, kinds and the checker outside the guest ---- */

const char *workload_engine_name(uint32_t engine)
{
    const struct guest_engine_desc *d = guest_engine_desc((enum guest_engine)engine);

    return d ? d->name : "?";
}

const char *workload_kind_name(const struct workload_config *cfg, unsigned kind)
{
    static const char *const zip_kinds[] = {
        [ZIP_REQ_DEFLATE] = "deflate", [ZIP_REQ_ZLIB] = "zlib", [ZIP_REQ_GZIP] = "gzip",
    };
    const struct wlc_ops *ops = cfg ? wlc_ops_for(cfg->engine) : NULL;

    if (!cfg)
        return NULL;
    if (ops)
        return kind < ops->nkinds ? ops->kind_names[kind] : NULL;
    return kind < AM_ARRAY_SIZE(zip_kinds) ? zip_kinds[kind] : NULL;
}

struct workload_checker {
    struct workload_config cfg;
    const struct wlc_ops *ops;
    struct wlc_ctx *ctx; /* its own keys, derived from cfg, not the guest's */
};

int workload_checker_new(const struct workload_config *cfg, struct workload_checker **out)
{
    struct workload_checker *c;
    int ret;

    if (!out || workload_config_check(cfg, NULL, 0) || !wlc_ops_for(cfg->engine))
        return -EINVAL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->cfg = *cfg;
    c->ops = wlc_ops_for(cfg->engine);
    if (c->ops->ctx_size) {
        c->ctx = calloc(1, c->ops->ctx_size);
        ret = c->ctx ? c->ops->ctx_derive(cfg, c->ctx) : -ENOMEM;
        if (ret) {
            workload_checker_free(c);
            return ret;
        }
    }
    *out = c;
    return 0;
}

int workload_checker_check(struct workload_checker *c, uint32_t job, uint32_t type,
                           const uint8_t *data, uint32_t len)
{
    struct wlc_job cj;
    uint8_t *want;
    int ret;

    if (!c || job >= c->cfg.jobs || (len && !data))
        return -EINVAL;
    c->ops->draw(c->ctx, &c->cfg, job, &cj);
    if (type != cj.kind || len != cj.res_len)
        return -EBADMSG;
    want = malloc(AM_MAX(len, 1u));
    if (!want)
        return -ENOMEM;
    ret = c->ops->expect(c->ctx, &cj, 0, want, len);
    if (ret == 0 && memcmp(want, data, len) != 0)
        ret = -EBADMSG;
    free(want);
    return ret == -ENOMEM ? ret : ret ? -EBADMSG : 0;
}

void workload_checker_free(struct workload_checker *c)
{
    if (!c)
        return;
    if (c->ctx)
        explicit_bzero(c->ctx, c->ops->ctx_size);
    free(c->ctx);
    free(c);
}
