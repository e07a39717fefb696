/* guest_vf: the QM part of the guest VF driver (probe, queues, completion).
 * See guest.h for the contract. The order of register accesses follows the
 * Linux VF driver (hisi_qm_init / hisi_qm_start / hisi_qm_start_qp /
 * qm_irq + qm_work_process); the code is our own.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "guest/guest.h"

#define GVF_MAGIC 0x31465647u /* "GVF1" */
#define GVF_VERSION 2u /* 2: the engine and its SQE size in the state */
#define GVF_PAGE 4096u

#define GVF_MB_POLL_NS 10000ull        /* the Linux driver polls busy every 10 us */
#define GVF_MB_BUDGET_NS 1000000ull    /* ... and gives up after 1 ms */
#define GVF_MB_MIN_POLLS 100u          /* 1 ms of 10 us polls, however long a sleep lasts */
/* A mapped doorbell word still holding a doorbell the device has not taken
 * yet, which the next one must not overwrite, and a transport with no
 * trapped way to BAR4: how long to wait for the device's sweep (it skips a
 * function whose lock is busy, e.g. during a mailbox command, so allow for
 * a scheduler that keeps it off its CPU). */
#define GVF_DB_TAKE_BUDGET_NS 1000000000ull

/* Capability register bits (0x3100). */
#define GVF_CAP_VER_MASK 0xffu
#define GVF_CAP_STOP_QP (1u << 9)
#define GVF_CAP_MB_COMMAND (1u << 11)
/* v3 defaults the Linux driver uses when CAP_VER reads 0. */
#define GVF_V3_XEQ_DEPTH 0x04000800u
#define GVF_V3_QP_DEPTH 0x04000400u
#define GVF_IRQ_TYPE_ENABLE (1u << 16)
#define GVF_ALG_DEFLATE (3u << 4)
#define GVF_ALG_DES3 (3u << 23) /* SEC: ecb/cbc(des3_ede), which no other engine has */
/* Polling mode: CQEs reaped but not yet acknowledged by a CQ doorbell, at
 * most (heads are cumulative, so one doorbell acknowledges them all). */
#define GVF_CQ_DB_BATCH 32u

/* Per-queue software state in guest RAM (64 bytes). */
struct gvf_qp {
    uint32_t state;    /* enum guest_qp_state */
    uint32_t alg;      /* enum zip_alg_dir */
    uint16_t sq_tail;  /* next slot to fill = last SQ doorbell index */
    uint16_t cq_head;  /* next CQE to look at */
    uint16_t cq_phase; /* phase a fresh CQE at cq_head carries */
    uint16_t used;     /* doorbelled and not yet reaped */
    uint64_t sq_gpa, cq_gpa, tags_gpa;
    uint64_t submitted, completed;
    uint16_t cq_db_head; /* the CQ head last rung: what the device knows */
    uint16_t mode;       /* enum guest_qp_mode */
    uint32_t rsvd;
};
_Static_assert(sizeof(struct gvf_qp) == 64, "struct gvf_qp is 64 bytes");

/* One in-flight table entry per SQ slot. */
struct gvf_tag {
    uint64_t tag;
    uint32_t busy;
    uint32_t rsvd;
};
_Static_assert(sizeof(struct gvf_tag) == 16, "struct gvf_tag is 16 bytes");

/* The driver's root block in guest RAM, at state_gpa. */
struct gvf_state {
    uint32_t magic, version;
    uint32_t qp_base, qp_num, qp_rings;
    uint32_t sq_depth, cq_depth, eq_depth, aeq_depth;
    uint32_t caps, alg_bitmap;
    uint32_t eq_vector, aeq_vector;
    uint32_t eq_head, eq_phase, aeq_head, aeq_phase;
    uint32_t ready; /* 1 between init and uninit */
    uint32_t engine; /* enum guest_engine */
    uint32_t rsvd0;
    uint64_t eq_gpa, aeq_gpa, sqc_bt_gpa, cqc_bt_gpa, scratch_gpa;
    struct guest_vf_stats stats;
    struct gvf_qp qp[GUEST_VF_MAX_QPS];
};

/* Layout of the state area (offsets from state_gpa). */
#define GVF_OFF_SCRATCH AM_ALIGN_UP((uint64_t)sizeof(struct gvf_state), GVF_PAGE)
#define GVF_OFF_SQC_BT (GVF_OFF_SCRATCH + GVF_PAGE)
#define GVF_OFF_CQC_BT (GVF_OFF_SQC_BT + GVF_PAGE)
#define GVF_OFF_EQ (GVF_OFF_CQC_BT + GVF_PAGE)
#define GVF_EQ_BYTES AM_ALIGN_UP((uint64_t)QM_EQ_DEPTH * 4u, GVF_PAGE)
#define GVF_OFF_AEQ (GVF_OFF_EQ + GVF_EQ_BYTES)
#define GVF_AEQ_BYTES AM_ALIGN_UP((uint64_t)QM_AEQ_DEPTH * 4u, GVF_PAGE)
#define GVF_OFF_RINGS (GVF_OFF_AEQ + GVF_AEQ_BYTES)
#define GVF_SQ_BYTES ((uint64_t)QM_SQ_DEPTH * GUEST_SQE_MAX_SIZE) /* any engine's SQEs fit */
#define GVF_CQ_BYTES AM_ALIGN_UP((uint64_t)QM_CQ_DEPTH * sizeof(struct qm_cqe), GVF_PAGE)
#define GVF_TAGS_BYTES AM_ALIGN_UP((uint64_t)QM_SQ_DEPTH * sizeof(struct gvf_tag), GVF_PAGE)
#define GVF_QP_BYTES (GVF_SQ_BYTES + GVF_CQ_BYTES + GVF_TAGS_BYTES)
_Static_assert(GUEST_VF_MAX_QPS * sizeof(struct qm_sqc) <= GVF_PAGE, "SQC table fits a page");

/* Where SQ/CQ doorbells go (QUE_ISO_CFG, read at init and attach). */
enum gvf_db_mode {
    GVF_DB_BAR2 = 0, /* no isolation: BAR2 QM_DB_SQCQ */
    GVF_DB_PAGES,    /* isolation, BAR4 mapped: a store into io.db_pages */
    GVF_DB_TRAPPED,  /* isolation, BAR4 trapped: io.db_write */
};

struct guest_vf {
    struct vf_io io;
    const struct guest_engine_desc *eng; /* derived from st->engine */
    enum gvf_db_mode db_mode; /* host-side: a new handle reads the register again */
    struct guest_ram ram;
    uint64_t state_gpa;
    struct gvf_state *st; /* = guest_ram_ptr(ram, state_gpa): derived, never stored in RAM */
    /* Serialises mailbox commands and the scratch buffer they use. */
    pthread_mutex_t mb_lock;
    /* Serialises the completion path: EQ/AEQ heads and phases, callbacks. */
    pthread_mutex_t poll_lock;
    /* Protects qp[i]'s software state, its SQ slots and in-flight table. */
    pthread_mutex_t qp_lock[GUEST_VF_MAX_QPS];
    guest_vf_complete_fn cb;
    void *cb_opaque;
};

/* ---- engines ---- */

/* What differs per engine for the driver (docs/engines.md, the QM's own
 * table in qm_engine.c): the SQE size, the SQC alg types, where the tag the
 * driver tracks lives, the result dword, the algorithms that must be there.
 * HPRE's own tag (dw8) is 16 bits, the Linux driver's request index; the
 * guest keeps its 64-bit tag in the reserved dw14-15, which the engine
 * never reads or writes. */
static const struct guest_engine_desc gvf_engines[GUEST_ENGINE_COUNT] = {
    [GUEST_ENGINE_ZIP] = {.name = "zip", .sqe_size = ZIP_SQE_SIZE, .sqe_size_log2 = 7,
                          .num_alg_types = 2, .tag_dw = ZIP_SQE_TAG_L, .result_dw = ZIP_SQE_DW3,
                          .alg_bitmap_need = GVF_ALG_DEFLATE, .alg_bitmap_forbid = GVF_ALG_DES3},
    [GUEST_ENGINE_SEC] = {.name = "sec", .sqe_size = 128, .sqe_size_log2 = 7, .num_alg_types = 1,
                          .tag_dw = 2, .result_dw = 28, .alg_bitmap_need = GVF_ALG_DES3},
    [GUEST_ENGINE_HPRE] = {.name = "hpre", .sqe_size = 64, .sqe_size_log2 = 6,
                           .num_alg_types = 2, .tag_dw = 14, .result_dw = 0,
                           .alg_bitmap_need = 0x23u /* rsa, dh, x25519 */,
                           .alg_bitmap_forbid = 0x18u /* ZIP's and SEC's bits 3-4 */},
};

const struct guest_engine_desc *guest_engine_desc(enum guest_engine e)
{
    return (unsigned)e < GUEST_ENGINE_COUNT ? &gvf_engines[e] : NULL;
}

int guest_engine_from_name(const char *name, enum guest_engine *out)
{
    for (unsigned i = 0; name && i < GUEST_ENGINE_COUNT; i++)
        if (strcmp(name, gvf_engines[i].name) == 0) {
            *out = (enum guest_engine)i;
            return 0;
        }
    return -EINVAL;
}

/* ---- guest RAM and MMIO helpers ---- */

static void *gvf_ptr(const struct guest_vf *vf, uint64_t gpa)
{
    return guest_ram_ptr(&vf->ram, gpa);
}

static void gvf_dirty(const struct guest_vf *vf, const void *p, uint64_t len)
{
    guest_ram_mark_dirty(&vf->ram, (uint64_t)((const uint8_t *)p - vf->ram.host), len);
}

static void gvf_stat_add(struct guest_vf *vf, uint64_t *ctr, uint64_t n)
{
    __atomic_fetch_add(ctr, n, __ATOMIC_RELAXED);
    gvf_dirty(vf, ctr, sizeof(*ctr));
}

static int gvf_rd32(struct guest_vf *vf, uint64_t off, uint32_t *v)
{
    return vf->io.mmio_read(vf->io.opaque, off, v, 4);
}

static int gvf_wr32(struct guest_vf *vf, uint64_t off, uint32_t v)
{
    return vf->io.mmio_write(vf->io.opaque, off, &v, 4);
}

/* True when doorbell `next` may replace `cur` in a mapped word the device
 * has not taken yet: the word holds one doorbell, so only one that says
 * everything the older one said may overwrite it (a later SQ tail over an
 * SQ tail, a CQ head over a CQ head unless it would drop a re-arm). An SQ
 * and a CQ doorbell of one queue share the word (the hardware's layout). */
static int gvf_db_supersedes(uint64_t cur, uint64_t next)
{
    return ((cur >> 12) & 0xfu) == ((next >> 12) & 0xfu) && (cur >> 48) <= (next >> 48);
}

/* A doorbell into queue qn's mapped page: a 64-bit store with release order
 * (the ring memory before it), as the Linux driver's writeq to an isolated
 * doorbell page. Caller holds qn's qp_lock, which every doorbell of that
 * queue is rung under, so only the device changes the word meanwhile.
 *
 * When the word still holds a doorbell this one does not supersede, the
 * device has yet to take it (its polling worker may be off its CPU on a
 * busy host): this one then goes trapped, and the device takes the pending
 * word before it acts on a trapped doorbell (qm_db_bar_write), so both
 * arrive in order at the cost of one exit. Only a transport without a
 * trapped path waits for the device's sweep instead. */
static int gvf_db_page(struct guest_vf *vf, uint16_t qn, uint64_t v)
{
    uint64_t off = (uint64_t)qn * QM_DB_PAGE_SIZE + QM_DB_SQCQ;
    _Atomic uint64_t *w = (_Atomic uint64_t *)((uint8_t *)vf->io.db_pages + off);
    uint64_t cur = atomic_load_explicit(w, memory_order_relaxed);

    if (cur != QM_DB_IDLE && !gvf_db_supersedes(cur, v) && vf->io.db_write)
        return vf->io.db_write(vf->io.opaque, off, &v, 8);
    if (cur != QM_DB_IDLE && !gvf_db_supersedes(cur, v)) {
        uint64_t deadline = am_now_ns() + GVF_DB_TAKE_BUDGET_NS;

        for (unsigned spins = 1;; spins++) {
            /* The polling worker may share our CPU: give it the core. */
            sched_yield();
            cur = atomic_load_explicit(w, memory_order_relaxed);
            if (cur == QM_DB_IDLE || gvf_db_supersedes(cur, v))
                break;
            if (spins % 64 == 0 && am_now_ns() > deadline) {
                am_log(AM_LOG_ERR, "guest",
                       "qp %u: doorbell 0x%016llx still pending after 1 s, 0x%016llx not rung",
                       qn, (unsigned long long)cur, (unsigned long long)v);
                return -ETIMEDOUT;
            }
        }
    }
    atomic_store_explicit(w, v, memory_order_release);
    /* A device between sweeps is kicked: a trapped write to the queue's
     * poll-state word, which takes the stored word (QM_DB_POLL_STATE). The
     * fence pairs with the device's between its poll-state store and its
     * sweep: either it finds this doorbell, or this load sees it is not
     * polling. */
    atomic_thread_fence(memory_order_seq_cst);
    uint64_t state_off = off - QM_DB_SQCQ + QM_DB_POLL_STATE, kick = 0;
    _Atomic uint64_t *state = (_Atomic uint64_t *)((uint8_t *)vf->io.db_pages + state_off);

    if (vf->io.db_write && atomic_load_explicit(state, memory_order_relaxed) != QM_DB_POLL_ON) {
        gvf_stat_add(vf, &vf->st->stats.doorbell_kicks, 1);
        /* The store was the doorbell; the kick only hurries it, posted
         * where the transport can (the vCPU does not wait for the host). A
         * refused kick (the host stopped the device for a migration) leaves
         * it to the device's resume or next sweep. */
        if (vf->io.db_kick)
            vf->io.db_kick(vf->io.opaque, state_off, &kick, 8);
        else
            (void)vf->io.db_write(vf->io.opaque, state_off, &kick, 8);
    }
    return 0;
}

static int gvf_db(struct guest_vf *vf, uint16_t qn, unsigned cmd, uint16_t index, uint16_t prio)
{
    uint64_t v = qm_db_value(qn, cmd, index, prio);
    int sqcq = cmd == QM_DB_CMD_SQ || cmd == QM_DB_CMD_CQ;

    /* Ring memory written before the doorbell must be visible to the device. */
    atomic_thread_fence(memory_order_release);
    if (sqcq && vf->db_mode == GVF_DB_PAGES)
        return gvf_db_page(vf, qn, v);
    if (sqcq && vf->db_mode == GVF_DB_TRAPPED)
        return vf->io.db_write(vf->io.opaque, (uint64_t)qn * QM_DB_PAGE_SIZE + QM_DB_SQCQ, &v, 8);
    return vf->io.mmio_write(vf->io.opaque, sqcq ? QM_DB_SQCQ : QM_DB_EQAEQ, &v, 8);
}

/* Doorbell isolation, as qm_get_pci_res: QUE_ISO_CFG bit0 moves SQ/CQ
 * doorbells into BAR4 (one page per queue); EQ/AEQ stay in BAR2. The BAR
 * must hold the doorbell word of every queue the VFT gives: -ENODEV when
 * it is too small, or when the transport offers no way to BAR4 at all. */
static int gvf_db_setup(struct guest_vf *vf, unsigned qp_num)
{
    uint64_t need = (uint64_t)(qp_num - 1) * QM_DB_PAGE_SIZE + QM_DB_SQCQ + 8;
    uint32_t iso;
    int ret = gvf_rd32(vf, QM_QUE_ISO_CFG, &iso);

    if (ret)
        return ret;
    if (!(iso & QM_QUE_ISO_EN)) {
        vf->db_mode = GVF_DB_BAR2;
        return 0;
    }
    if (vf->io.db_pages) {
        if (vf->io.db_pages_size < need || (uintptr_t)vf->io.db_pages % 8) {
            am_log(AM_LOG_ERR, "guest", "BAR4 of %llu bytes (at %p) holds no doorbell for %u queues",
                   (unsigned long long)vf->io.db_pages_size, vf->io.db_pages, qp_num);
            return -ENODEV;
        }
        vf->db_mode = GVF_DB_PAGES;
        return 0;
    }
    if (vf->io.db_write) {
        /* A transport that knows the BAR's size says so; trapped, the
         * device checks every offset anyway. */
        if (vf->io.db_pages_size && vf->io.db_pages_size < need) {
            am_log(AM_LOG_ERR, "guest", "BAR4 of %llu bytes holds no doorbell for %u queues",
                   (unsigned long long)vf->io.db_pages_size, qp_num);
            return -ENODEV;
        }
        vf->db_mode = GVF_DB_TRAPPED;
        return 0;
    }
    am_log(AM_LOG_ERR, "guest", "QUE_ISO_CFG says doorbells are in BAR4, the transport has none");
    return -ENODEV;
}

static void gvf_sleep_ns(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull), .tv_nsec = (long)(ns % 1000000000ull)};
    nanosleep(&ts, NULL);
}

/* Poll the mailbox busy bit every 10 us for budget_ns, and for at least
 * GVF_MB_MIN_POLLS polls (a sleep of "10 us" often lasts far longer). */
static int gvf_mb_wait_ready(struct guest_vf *vf, uint32_t *w, uint64_t budget_ns)
{
    uint64_t deadline = am_now_ns() + budget_ns;

    for (unsigned polls = 0;; polls++) {
        int ret = gvf_rd32(vf, QM_MAILBOX, w);
        if (ret)
            return ret;
        if (!(*w & (1u << QM_MB_BUSY_SHIFT)))
            return 0;
        if (polls >= GVF_MB_MIN_POLLS && am_now_ns() > deadline)
            return -ETIMEDOUT;
        gvf_sleep_ns(GVF_MB_POLL_NS);
    }
}

/* One mailbox command, as hisi_qm_mb: wait ready, one 16-byte store, wait
 * ready (done_budget_ns), check status. Caller holds mb_lock. */
static int gvf_mb_budget_locked(struct guest_vf *vf, uint8_t cmd, uint64_t base, uint16_t queue,
                                int op, uint64_t done_budget_ns)
{
    struct qm_mailbox mb = {
        .w0 = (uint16_t)(cmd | 1u << QM_MB_BUSY_SHIFT | (op ? 1u << QM_MB_OP_SHIFT : 0)),
        .queue_num = queue,
        .base_l = (uint32_t)base,
        .base_h = (uint32_t)(base >> 32),
    };
    uint32_t w;
    int ret;

    ret = gvf_mb_wait_ready(vf, &w, GVF_MB_BUDGET_NS);
    if (!ret) {
        atomic_thread_fence(memory_order_release); /* the context in RAM first */
        ret = vf->io.mmio_write(vf->io.opaque, QM_MAILBOX, &mb, QM_MAILBOX_SIZE);
    }
    if (!ret)
        ret = gvf_mb_wait_ready(vf, &w, done_budget_ns);
    if (!ret && ((w >> QM_MB_STATUS_SHIFT) & QM_MB_STATUS_MASK))
        ret = -EIO;
    if (ret) {
        gvf_stat_add(vf, &vf->st->stats.mailbox_errors, 1);
        am_log(AM_LOG_ERR, "guest", "mailbox cmd 0x%x queue %u op %d failed: %d", cmd, queue, op,
               ret);
    }
    return ret;
}

static int gvf_mb_locked(struct guest_vf *vf, uint8_t cmd, uint64_t base, uint16_t queue, int op)
{
    return gvf_mb_budget_locked(vf, cmd, base, queue, op, GVF_MB_BUDGET_NS);
}

static int gvf_mb(struct guest_vf *vf, uint8_t cmd, uint64_t base, uint16_t queue, int op)
{
    pthread_mutex_lock(&vf->mb_lock);
    int ret = gvf_mb_locked(vf, cmd, base, queue, op);
    pthread_mutex_unlock(&vf->mb_lock);
    return ret;
}

/* Load a context from the scratch buffer: copy ctx there, then mailbox. */
static int gvf_mb_load(struct guest_vf *vf, uint8_t cmd, uint16_t queue, const void *ctx, size_t len)
{
    void *scratch = gvf_ptr(vf, vf->st->scratch_gpa);
    int ret;

    pthread_mutex_lock(&vf->mb_lock);
    memset(scratch, 0, 64);
    memcpy(scratch, ctx, len);
    gvf_dirty(vf, scratch, 64);
    ret = gvf_mb_locked(vf, cmd, vf->st->scratch_gpa, queue, 0);
    pthread_mutex_unlock(&vf->mb_lock);
    return ret;
}

/* ---- handle life cycle ---- */

uint64_t guest_vf_state_size(unsigned nqps)
{
    if (nqps < 1)
        nqps = 1;
    if (nqps > GUEST_VF_MAX_QPS)
        nqps = GUEST_VF_MAX_QPS;
    return GVF_OFF_RINGS + (uint64_t)nqps * GVF_QP_BYTES;
}

static int gvf_handle_new(const struct vf_io *io, const struct guest_ram *ram, uint64_t state_gpa,
                          uint64_t state_len, struct guest_vf **out)
{
    struct guest_vf *vf;

    if (!io || !io->mmio_read || !io->mmio_write || !io->irq_wait || !ram || !ram->host || !out)
        return -EINVAL;
    if (state_gpa % GVF_PAGE || !am_range_ok(state_gpa, state_len, ram->size))
        return -EINVAL;
    vf = calloc(1, sizeof(*vf));
    if (!vf)
        return -ENOMEM;
    vf->io = *io;
    vf->ram = *ram;
    vf->state_gpa = state_gpa;
    vf->st = gvf_ptr(vf, state_gpa);
    pthread_mutex_init(&vf->mb_lock, NULL);
    pthread_mutex_init(&vf->poll_lock, NULL);
    for (unsigned i = 0; i < GUEST_VF_MAX_QPS; i++)
        pthread_mutex_init(&vf->qp_lock[i], NULL);
    *out = vf;
    return 0;
}

void guest_vf_detach(struct guest_vf *vf)
{
    if (!vf)
        return;
    pthread_mutex_destroy(&vf->mb_lock);
    pthread_mutex_destroy(&vf->poll_lock);
    for (unsigned i = 0; i < GUEST_VF_MAX_QPS; i++)
        pthread_mutex_destroy(&vf->qp_lock[i]);
    free(vf);
}

/* Capabilities, as qm_get_hw_caps / hisi_zip_set_user_domain_and_cache read
 * them: depths, interrupt vectors, algorithms. */
static int gvf_read_caps(struct guest_vf *vf)
{
    struct gvf_state *st = vf->st;
    uint32_t xeq, qpd, eq_irq, aeq_irq;
    int ret;

    ret = gvf_rd32(vf, QM_CAP_VERSION, &st->caps);
    if (!ret && (st->caps & GVF_CAP_VER_MASK)) {
        ret = gvf_rd32(vf, QM_CAP_EQ_AEQ_DEPTH, &xeq);
        if (!ret)
            ret = gvf_rd32(vf, QM_CAP_SQ_CQ_DEPTH, &qpd);
    } else {
        xeq = GVF_V3_XEQ_DEPTH;
        qpd = GVF_V3_QP_DEPTH;
    }
    if (!ret)
        ret = gvf_rd32(vf, QM_CAP_EQ_IRQ_TYPE, &eq_irq);
    if (!ret)
        ret = gvf_rd32(vf, QM_CAP_AEQ_IRQ_TYPE, &aeq_irq);
    if (!ret)
        ret = gvf_rd32(vf, ZIP_CAP_DRV_ALG_BITMAP, &st->alg_bitmap);
    if (ret)
        return ret;

    st->eq_depth = xeq & 0xffffu;
    st->aeq_depth = xeq >> 16;
    st->sq_depth = qpd & 0xffffu;
    st->cq_depth = qpd >> 16;
    if (st->eq_depth < 2 || st->eq_depth > QM_EQ_DEPTH || st->aeq_depth < 2 ||
        st->aeq_depth > QM_AEQ_DEPTH || st->sq_depth < 2 || st->sq_depth > QM_SQ_DEPTH ||
        st->cq_depth < st->sq_depth || st->cq_depth > QM_CQ_DEPTH) {
        am_log(AM_LOG_ERR, "guest", "unsupported depths: eq %u aeq %u sq %u cq %u", st->eq_depth,
               st->aeq_depth, st->sq_depth, st->cq_depth);
        return -ENODEV;
    }
    if (!(eq_irq & GVF_IRQ_TYPE_ENABLE) || !(aeq_irq & GVF_IRQ_TYPE_ENABLE) ||
        (eq_irq & 0xffffu) >= QM_NUM_VECTORS || (aeq_irq & 0xffffu) >= QM_NUM_VECTORS) {
        am_log(AM_LOG_ERR, "guest", "EQ/AEQ irq types 0x%x/0x%x unusable", eq_irq, aeq_irq);
        return -ENODEV;
    }
    st->eq_vector = eq_irq & 0xffffu;
    st->aeq_vector = aeq_irq & 0xffffu;
    if ((st->alg_bitmap & vf->eng->alg_bitmap_need) != vf->eng->alg_bitmap_need ||
        (st->alg_bitmap & vf->eng->alg_bitmap_forbid)) {
        am_log(AM_LOG_ERR, "guest", "not a %s VF: alg bitmap 0x%x (needs 0x%x, not 0x%x)",
               vf->eng->name, st->alg_bitmap, vf->eng->alg_bitmap_need,
               vf->eng->alg_bitmap_forbid);
        return -ENODEV;
    }
    return 0;
}

/* SQC_VFT_V2 query: this function's queue range. */
static int gvf_get_vft(struct guest_vf *vf)
{
    uint32_t lo, hi;
    uint64_t vft;
    int ret;

    pthread_mutex_lock(&vf->mb_lock);
    ret = gvf_mb_locked(vf, QM_MB_CMD_SQC_VFT_V2, 0, 0, 1);
    if (!ret)
        ret = gvf_rd32(vf, QM_MB_DATA_L, &lo);
    if (!ret)
        ret = gvf_rd32(vf, QM_MB_DATA_H, &hi);
    pthread_mutex_unlock(&vf->mb_lock);
    if (ret)
        return ret;
    vft = (uint64_t)hi << 32 | lo;
    vf->st->qp_base = (uint32_t)((vft >> QM_VFT_BASE_SHIFT) & QM_VFT_BASE_MASK);
    vf->st->qp_num = (uint32_t)((vft >> QM_VFT_NUM_SHIFT) & QM_VFT_NUM_MASK) + 1;
    if (!(vft & (1ull << QM_VFT_VALID_SHIFT))) {
        am_log(AM_LOG_ERR, "guest", "VFT not valid (0x%llx)", (unsigned long long)vft);
        return -ENODEV;
    }
    if (vf->st->qp_num > GUEST_VF_MAX_QPS)
        vf->st->qp_num = GUEST_VF_MAX_QPS;
    return 0;
}

/* Clear the PF->VF interrupt source and unmask the channel (qm_cmd_init). */
static int gvf_ifc_init(struct guest_vf *vf)
{
    uint32_t v;
    int ret;

    if (!(vf->st->caps & GVF_CAP_MB_COMMAND))
        return 0;
    ret = gvf_rd32(vf, QM_IFC_INT_SOURCE_V, &v);
    if (!ret)
        ret = gvf_wr32(vf, QM_IFC_INT_SOURCE_V, v | 1u);
    if (!ret)
        ret = gvf_rd32(vf, QM_IFC_INT_MASK, &v);
    if (!ret)
        ret = gvf_wr32(vf, QM_IFC_INT_MASK, v & ~1u);
    return ret;
}

/* EQC then AEQC, table bases, prefetch page size, doorbells, unmask. */
static int gvf_qm_start(struct guest_vf *vf)
{
    struct gvf_state *st = vf->st;
    struct qm_eqc eqc = {0};
    int ret;

    memset(gvf_ptr(vf, st->eq_gpa), 0, GVF_EQ_BYTES);
    gvf_dirty(vf, gvf_ptr(vf, st->eq_gpa), GVF_EQ_BYTES);
    memset(gvf_ptr(vf, st->aeq_gpa), 0, GVF_AEQ_BYTES);
    gvf_dirty(vf, gvf_ptr(vf, st->aeq_gpa), GVF_AEQ_BYTES);
    memset(gvf_ptr(vf, st->sqc_bt_gpa), 0, GVF_PAGE);
    gvf_dirty(vf, gvf_ptr(vf, st->sqc_bt_gpa), GVF_PAGE);
    memset(gvf_ptr(vf, st->cqc_bt_gpa), 0, GVF_PAGE);
    gvf_dirty(vf, gvf_ptr(vf, st->cqc_bt_gpa), GVF_PAGE);
    st->eq_head = 0;
    st->aeq_head = 0;
    st->eq_phase = 1;
    st->aeq_phase = 1;
    gvf_dirty(vf, st, sizeof(*st));

    eqc.base_l = (uint32_t)st->eq_gpa;
    eqc.base_h = (uint32_t)(st->eq_gpa >> 32);
    eqc.dw6 = QM_EQC_DW6(st->eq_depth, 1);
    ret = gvf_mb_load(vf, QM_MB_CMD_EQC, 0, &eqc, sizeof(eqc));
    if (ret)
        return ret;
    eqc.base_l = (uint32_t)st->aeq_gpa;
    eqc.base_h = (uint32_t)(st->aeq_gpa >> 32);
    eqc.dw6 = QM_EQC_DW6(st->aeq_depth, 1);
    ret = gvf_mb_load(vf, QM_MB_CMD_AEQC, 0, &eqc, sizeof(eqc));
    if (!ret)
        ret = gvf_mb(vf, QM_MB_CMD_SQC_BT, st->sqc_bt_gpa, 0, 0);
    if (!ret)
        ret = gvf_mb(vf, QM_MB_CMD_CQC_BT, st->cqc_bt_gpa, 0, 0);
    if (!ret)
        ret = gvf_wr32(vf, QM_PAGE_SIZE, 0);
    if (!ret)
        ret = gvf_db(vf, 0, QM_DB_CMD_AEQ, 0, 0);
    if (!ret)
        ret = gvf_db(vf, 0, QM_DB_CMD_EQ, 0, 0);
    if (!ret)
        ret = gvf_wr32(vf, QM_EQ_INT_MASK, 0);
    if (!ret)
        ret = gvf_wr32(vf, QM_AEQ_INT_MASK, 0);
    if (!ret)
        ret = gvf_wr32(vf, QM_VF_STATE, QM_VF_STATE_READY);
    return ret;
}

int guest_vf_init(const struct vf_io *io, const struct guest_ram *ram, uint64_t state_gpa,
                  uint64_t state_len, struct guest_vf **out)
{
    return guest_vf_init_engine(io, ram, state_gpa, state_len, GUEST_ENGINE_ZIP, out);
}

int guest_vf_init_engine(const struct vf_io *io, const struct guest_ram *ram, uint64_t state_gpa,
                         uint64_t state_len, enum guest_engine eng, struct guest_vf **out)
{
    struct guest_vf *vf;
    struct gvf_state *st;
    uint64_t rings;
    int ret;

    if (!guest_engine_desc(eng))
        return -EINVAL;
    if (state_len < guest_vf_state_size(1))
        return io && ram && out ? -ENOSPC : -EINVAL;
    ret = gvf_handle_new(io, ram, state_gpa, state_len, &vf);
    if (ret)
        return ret;
    st = vf->st;
    memset(st, 0, sizeof(*st));
    st->magic = GVF_MAGIC;
    st->version = GVF_VERSION;
    st->engine = (uint32_t)eng;
    vf->eng = guest_engine_desc(eng);
    st->scratch_gpa = state_gpa + GVF_OFF_SCRATCH;
    st->sqc_bt_gpa = state_gpa + GVF_OFF_SQC_BT;
    st->cqc_bt_gpa = state_gpa + GVF_OFF_CQC_BT;
    st->eq_gpa = state_gpa + GVF_OFF_EQ;
    st->aeq_gpa = state_gpa + GVF_OFF_AEQ;
    gvf_dirty(vf, st, sizeof(*st));

    ret = gvf_read_caps(vf);
    if (!ret)
        ret = gvf_get_vft(vf);
    if (!ret)
        ret = gvf_db_setup(vf, st->qp_num);
    if (!ret)
        ret = gvf_ifc_init(vf);
    if (ret)
        goto err_free;
    rings = (state_len - GVF_OFF_RINGS) / GVF_QP_BYTES;
    st->qp_rings = (uint32_t)AM_MIN(rings, (uint64_t)st->qp_num);
    for (unsigned i = 0; i < st->qp_rings; i++) {
        uint64_t base = state_gpa + GVF_OFF_RINGS + (uint64_t)i * GVF_QP_BYTES;
        st->qp[i].sq_gpa = base;
        st->qp[i].cq_gpa = base + GVF_SQ_BYTES;
        st->qp[i].tags_gpa = base + GVF_SQ_BYTES + GVF_CQ_BYTES;
    }
    gvf_dirty(vf, st, sizeof(*st));
    ret = gvf_qm_start(vf);
    if (ret)
        goto err_free;
    st->ready = 1;
    gvf_dirty(vf, st, sizeof(*st));
    *out = vf;
    return 0;

err_free:
    am_log(AM_LOG_ERR, "guest", "VF probe failed: %d", ret);
    st->magic = 0;
    gvf_dirty(vf, st, sizeof(*st));
    guest_vf_detach(vf);
    return ret;
}

/* True when [gpa, gpa+len) is inside ram and does not overlap the root block. */
static int gvf_area_ok(const struct guest_vf *vf, uint64_t gpa, uint64_t len)
{
    uint64_t end;

    if (!am_range_ok(gpa, len, vf->ram.size) || am_add_overflows_u64(gpa, len, &end))
        return 0;
    return end <= vf->state_gpa || gpa >= vf->state_gpa + sizeof(struct gvf_state);
}

int guest_vf_attach(const struct vf_io *io, const struct guest_ram *ram, uint64_t state_gpa,
                    struct guest_vf **out)
{
    struct guest_vf *vf;
    const struct gvf_state *st;
    int ret;

    ret = gvf_handle_new(io, ram, state_gpa, sizeof(struct gvf_state), &vf);
    if (ret)
        return ret;
    st = vf->st;
    ret = -EINVAL;
    if (st->magic != GVF_MAGIC || st->version != GVF_VERSION || st->engine >= GUEST_ENGINE_COUNT)
        goto err_free;
    vf->eng = guest_engine_desc((enum guest_engine)st->engine);
    if (st->qp_num < 1 || st->qp_num > GUEST_VF_MAX_QPS || st->qp_rings > st->qp_num ||
        st->eq_depth < 2 || st->eq_depth > QM_EQ_DEPTH || st->aeq_depth < 2 ||
        st->aeq_depth > QM_AEQ_DEPTH || st->sq_depth < 2 || st->sq_depth > QM_SQ_DEPTH ||
        st->cq_depth < st->sq_depth || st->cq_depth > QM_CQ_DEPTH ||
        st->eq_head >= st->eq_depth || st->aeq_head >= st->aeq_depth || st->eq_phase > 1 ||
        st->aeq_phase > 1 || st->eq_vector >= QM_NUM_VECTORS || st->aeq_vector >= QM_NUM_VECTORS)
        goto err_free;
    if (!gvf_area_ok(vf, st->scratch_gpa, 64) || !gvf_area_ok(vf, st->sqc_bt_gpa, GVF_PAGE) ||
        !gvf_area_ok(vf, st->cqc_bt_gpa, GVF_PAGE) || !gvf_area_ok(vf, st->eq_gpa, GVF_EQ_BYTES) ||
        !gvf_area_ok(vf, st->aeq_gpa, GVF_AEQ_BYTES))
        goto err_free;
    for (unsigned i = 0; i < st->qp_num; i++) {
        const struct gvf_qp *q = &st->qp[i];
        if (q->state > GUEST_QP_FATAL || (q->state != GUEST_QP_IDLE && i >= st->qp_rings))
            goto err_free;
        if (i >= st->qp_rings)
            continue;
        if (!gvf_area_ok(vf, q->sq_gpa, GVF_SQ_BYTES) || !gvf_area_ok(vf, q->cq_gpa, GVF_CQ_BYTES) ||
            !gvf_area_ok(vf, q->tags_gpa, GVF_TAGS_BYTES) || q->sq_tail >= st->sq_depth ||
            q->cq_head >= st->cq_depth || q->cq_phase > 1 || q->used >= st->sq_depth ||
            q->cq_db_head >= st->cq_depth || q->mode > GUEST_QP_MODE_POLL)
            goto err_free;
    }
    /* The transport may have changed (a migration): where do doorbells go
     * on this device? */
    ret = gvf_db_setup(vf, st->qp_num);
    if (ret)
        goto err_free;
    *out = vf;
    return 0;

err_free:
    if (ret == -EINVAL)
        am_log(AM_LOG_ERR, "guest", "no valid driver state at gpa 0x%llx",
               (unsigned long long)state_gpa);
    guest_vf_detach(vf);
    return ret;
}

void guest_vf_set_complete_cb(struct guest_vf *vf, guest_vf_complete_fn fn, void *opaque)
{
    pthread_mutex_lock(&vf->poll_lock);
    vf->cb = fn;
    vf->cb_opaque = opaque;
    pthread_mutex_unlock(&vf->poll_lock);
}

unsigned guest_vf_qp_num(const struct guest_vf *vf) { return vf->st->qp_num; }
unsigned guest_vf_qp_rings(const struct guest_vf *vf) { return vf->st->qp_rings; }
unsigned guest_vf_qp_base(const struct guest_vf *vf) { return vf->st->qp_base; }
unsigned guest_vf_sq_depth(const struct guest_vf *vf) { return vf->st->sq_depth; }
uint32_t guest_vf_alg_bitmap(const struct guest_vf *vf) { return vf->st->alg_bitmap; }
enum guest_engine guest_vf_engine(const struct guest_vf *vf)
{
    return (enum guest_engine)vf->st->engine;
}

uint64_t guest_vf_state_gpa(const struct guest_vf *vf) { return vf->state_gpa; }

void guest_vf_stats_get(const struct guest_vf *vf, struct guest_vf_stats *out)
{
    const uint64_t *src = (const uint64_t *)&vf->st->stats;
    uint64_t *dst = (uint64_t *)out;

    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

enum guest_qp_state guest_vf_qp_state(const struct guest_vf *vf, unsigned qp)
{
    if (qp >= vf->st->qp_num)
        return GUEST_QP_IDLE;
    return (enum guest_qp_state)__atomic_load_n(&vf->st->qp[qp].state, __ATOMIC_ACQUIRE);
}

unsigned guest_vf_qp_inflight(const struct guest_vf *vf, unsigned qp)
{
    if (qp >= vf->st->qp_num)
        return 0;
    return __atomic_load_n(&vf->st->qp[qp].used, __ATOMIC_ACQUIRE);
}

uint16_t guest_vf_qp_sq_tail(const struct guest_vf *vf, unsigned qp)
{
    if (qp >= vf->st->qp_num)
        return 0;
    return __atomic_load_n(&vf->st->qp[qp].sq_tail, __ATOMIC_ACQUIRE);
}

unsigned guest_vf_qp_inflight_tags(const struct guest_vf *vf, unsigned qp, uint64_t *tags,
                                   unsigned max)
{
    const struct gvf_state *st = vf->st;
    const struct gvf_qp *q;
    const struct gvf_tag *t;
    unsigned n = 0;

    if (qp >= st->qp_rings)
        return 0;
    q = &st->qp[qp];
    t = gvf_ptr(vf, q->tags_gpa);
    /* Busy slots sit just before the tail, in submission order. */
    for (unsigned k = 0; k < st->sq_depth; k++) {
        unsigned slot = (q->sq_tail + k) % st->sq_depth;
        if (!t[slot].busy)
            continue;
        if (n < max)
            tags[n] = t[slot].tag;
        n++;
    }
    return n;
}

/* ---- queues ---- */

/* CQEs the driver has read that no CQ doorbell has acknowledged yet. */
static unsigned gvf_cq_unacked(const struct gvf_state *st, const struct gvf_qp *q)
{
    return ((unsigned)q->cq_head + st->cq_depth - q->cq_db_head) % st->cq_depth;
}

/* A polled queue's acknowledgement batch: GVF_CQ_DB_BATCH, less on a short
 * CQ so that acknowledging never has to wait for a full one. */
static unsigned gvf_cq_db_batch(const struct gvf_state *st)
{
    return AM_MAX(1u, AM_MIN(GVF_CQ_DB_BATCH, st->cq_depth / 4u));
}

/* CQ doorbell of qp at the driver's head (cumulative: it acknowledges every
 * CQE before it). Caller holds qp's qp_lock. */
static int gvf_cq_db(struct guest_vf *vf, unsigned qp, uint16_t prio)
{
    struct gvf_qp *q = &vf->st->qp[qp];
    int ret = gvf_db(vf, (uint16_t)qp, QM_DB_CMD_CQ, q->cq_head, prio);

    if (ret)
        return ret;
    q->cq_db_head = q->cq_head;
    gvf_dirty(vf, q, sizeof(*q));
    gvf_stat_add(vf, &vf->st->stats.cq_doorbells, 1);
    return 0;
}

int guest_vf_qp_start(struct guest_vf *vf, unsigned qp, enum zip_alg_dir dir)
{
    return guest_vf_qp_start_mode(vf, qp, dir, GUEST_QP_MODE_IRQ);
}

int guest_vf_qp_start_mode(struct guest_vf *vf, unsigned qp, enum zip_alg_dir dir,
                           enum guest_qp_mode mode)
{
    if (dir != ZIP_ALG_COMPRESS && dir != ZIP_ALG_DECOMPRESS)
        return -EINVAL;
    return guest_vf_qp_start_type(vf, qp, (unsigned)dir, mode);
}

int guest_vf_qp_start_type(struct guest_vf *vf, unsigned qp, unsigned alg_type,
                           enum guest_qp_mode mode)
{
    struct gvf_state *st = vf->st;
    struct gvf_qp *q;
    struct qm_sqc sqc = {0};
    struct qm_cqc cqc = {0};
    int ret;

    if (qp >= st->qp_num || alg_type >= vf->eng->num_alg_types ||
        (mode != GUEST_QP_MODE_IRQ && mode != GUEST_QP_MODE_POLL))
        return -EINVAL;
    if (qp >= st->qp_rings)
        return -ENOSPC;
    q = &st->qp[qp];
    pthread_mutex_lock(&vf->qp_lock[qp]);
    if (q->state == GUEST_QP_STARTED) {
        pthread_mutex_unlock(&vf->qp_lock[qp]);
        return -EBUSY;
    }
    /* A fresh CQ holds phase-0 entries, so no stale CQE looks new. */
    memset(gvf_ptr(vf, q->cq_gpa), 0, GVF_CQ_BYTES);
    gvf_dirty(vf, gvf_ptr(vf, q->cq_gpa), GVF_CQ_BYTES);
    memset(gvf_ptr(vf, q->tags_gpa), 0, GVF_TAGS_BYTES);
    gvf_dirty(vf, gvf_ptr(vf, q->tags_gpa), GVF_TAGS_BYTES);
    q->alg = alg_type;
    q->sq_tail = 0;
    q->cq_head = 0;
    q->cq_phase = 1;
    q->used = 0;
    q->cq_db_head = 0;
    q->mode = (uint16_t)mode;
    gvf_dirty(vf, q, sizeof(*q));

    sqc.base_l = (uint32_t)q->sq_gpa;
    sqc.base_h = (uint32_t)(q->sq_gpa >> 32);
    /* The entry size the engine's SQEs have (QM_MK_SQC_DW3_V2(sqe_size, depth)). */
    sqc.dw3 = (st->sq_depth - 1u) | vf->eng->sqe_size_log2 << 12;
    sqc.cq_num = (uint16_t)qp;
    sqc.w13 = QM_SQC_W13(alg_type);
    ret = gvf_mb_load(vf, QM_MB_CMD_SQC, (uint16_t)qp, &sqc, sizeof(sqc));
    if (!ret) {
        cqc.base_l = (uint32_t)q->cq_gpa;
        cqc.base_h = (uint32_t)(q->cq_gpa >> 32);
        cqc.dw3 = QM_CQC_DW3(st->cq_depth);
        /* A polled CQ raises no event at all: nobody would read its EQE. */
        cqc.dw6 = QM_CQC_DW6_PHASE | (mode == GUEST_QP_MODE_IRQ ? QM_CQC_DW6_EQ_EN : 0u);
        ret = gvf_mb_load(vf, QM_MB_CMD_CQC, (uint16_t)qp, &cqc, sizeof(cqc));
    }
    if (!ret) {
        __atomic_store_n(&q->state, GUEST_QP_STARTED, __ATOMIC_RELEASE);
        gvf_dirty(vf, q, sizeof(*q));
    }
    pthread_mutex_unlock(&vf->qp_lock[qp]);
    return ret;
}

int guest_vf_submit(struct guest_vf *vf, unsigned qp, const uint32_t sqe[ZIP_SQE_DWORDS])
{
    return guest_vf_submit_sqe(vf, qp, sqe);
}

int guest_vf_submit_sqe(struct guest_vf *vf, unsigned qp, const void *sqe_bytes)
{
    const unsigned sqe_size = vf->eng->sqe_size, tag_dw = vf->eng->tag_dw;
    const uint32_t *sqe = sqe_bytes;
    struct gvf_state *st = vf->st;
    struct gvf_qp *q;
    struct gvf_tag *tags;
    uint8_t *slot;
    uint16_t tail, next;
    int ret;

    if (qp >= st->qp_num || !sqe)
        return -EINVAL;
    q = &st->qp[qp];
    pthread_mutex_lock(&vf->qp_lock[qp]);
    if (q->state != GUEST_QP_STARTED) {
        ret = -EIO;
        goto out_unlock;
    }
    if (q->used >= st->sq_depth - 1) {
        gvf_stat_add(vf, &st->stats.submit_busy, 1);
        ret = -EBUSY;
        goto out_unlock;
    }
    tail = q->sq_tail;
    next = (uint16_t)((tail + 1u) % st->sq_depth);
    slot = gvf_ptr(vf, q->sq_gpa + (uint64_t)tail * sqe_size);
    memcpy(slot, sqe, sqe_size);
    gvf_dirty(vf, slot, sqe_size);
    tags = gvf_ptr(vf, q->tags_gpa);
    tags[tail].tag = (uint64_t)sqe[tag_dw + 1] << 32 | sqe[tag_dw];
    tags[tail].busy = 1;
    gvf_dirty(vf, &tags[tail], sizeof(tags[tail]));
    /* A polled queue acknowledges CQEs in batches; the device fetches this
     * SQE only if the CQ has room for it counting every CQE it still
     * thinks is unread (qm_cq_has_room: used + promised < depth - 1). */
    ret = 0;
    if (q->mode == GUEST_QP_MODE_POLL && gvf_cq_unacked(st, q) + q->used >= st->cq_depth - 1u)
        ret = gvf_cq_db(vf, qp, 0);
    if (!ret)
        ret = gvf_db(vf, (uint16_t)qp, QM_DB_CMD_SQ, next, 0);
    if (ret) {
        tags[tail].busy = 0;
        gvf_dirty(vf, &tags[tail], sizeof(tags[tail]));
        goto out_unlock;
    }
    __atomic_store_n(&q->used, (uint16_t)(q->used + 1), __ATOMIC_RELEASE);
    __atomic_store_n(&q->sq_tail, next, __ATOMIC_RELEASE);
    q->submitted++;
    gvf_dirty(vf, q, sizeof(*q));
    gvf_stat_add(vf, &st->stats.submits, 1);
out_unlock:
    pthread_mutex_unlock(&vf->qp_lock[qp]);
    return ret;
}

int guest_vf_irq_wait(struct guest_vf *vf, int timeout_ms)
{
    return vf->io.irq_wait(vf->io.opaque, vf->st->eq_vector, timeout_ms);
}

/* ---- completion path ---- */

#define GVF_CQ_BATCH 64u

/* Take up to GVF_CQ_BATCH CQEs of qp under its lock into c[]: read the SQE
 * slot each names, free the slot. An interrupt-driven queue rings a CQ
 * doorbell per CQE and, when the CQ is found empty, the final priority-1
 * doorbell that re-arms its event. A polled queue rings one priority-0
 * doorbell once GVF_CQ_DB_BATCH CQEs are unacknowledged (guest.h).
 * Returns the count taken; *more says the batch filled up. */
static int gvf_cq_take(struct guest_vf *vf, unsigned qp, struct guest_vf_completion *c, int *more)
{
    struct gvf_state *st = vf->st;
    struct gvf_qp *q = &st->qp[qp];
    struct qm_cqe *ring;
    struct gvf_tag *tags;
    int n = 0, ret = 0;

    *more = 0;
    pthread_mutex_lock(&vf->qp_lock[qp]);
    if (q->state == GUEST_QP_IDLE || qp >= st->qp_rings) {
        pthread_mutex_unlock(&vf->qp_lock[qp]);
        return 0;
    }
    ring = gvf_ptr(vf, q->cq_gpa);
    tags = gvf_ptr(vf, q->tags_gpa);
    for (;;) {
        struct qm_cqe *cqe = &ring[q->cq_head];
        /* CQEs are 16-byte aligned in the ring, so w7 is 2-byte aligned. */
        uint16_t w7 = __atomic_load_n((const uint16_t *)((const uint8_t *)cqe +
                                                         offsetof(struct qm_cqe, w7)),
                                      __ATOMIC_ACQUIRE);
        uint16_t slot;
        const uint32_t *sqe;

        if ((w7 & 1u) != q->cq_phase)
            break;
        if (n == (int)GVF_CQ_BATCH) {
            *more = 1;
            break;
        }
        slot = cqe->sq_head;
        if (slot >= st->sq_depth || cqe->sq_num != qp || !tags[slot].busy) {
            gvf_stat_add(vf, &st->stats.bad_cqes, 1);
            am_log(AM_LOG_ERR, "guest", "qp %u: CQE %u names sq %u slot %u (busy %u): dropped", qp,
                   q->cq_head, cqe->sq_num, slot, slot < st->sq_depth ? tags[slot].busy : 0);
        } else {
            const struct guest_engine_desc *eng = vf->eng;
            const int zip = eng == &gvf_engines[GUEST_ENGINE_ZIP];

            sqe = gvf_ptr(vf, q->sq_gpa + (uint64_t)slot * eng->sqe_size);
            c[n].qp = qp;
            c[n].sq_slot = slot;
            c[n].tag = (uint64_t)sqe[eng->tag_dw + 1] << 32 | sqe[eng->tag_dw];
            c[n].status = zip ? sqe[ZIP_SQE_DW3] & ZIP_DW3_STATUS_MASK : sqe[eng->result_dw];
            c[n].consumed = zip ? sqe[ZIP_SQE_CONSUMED] : 0;
            c[n].produced = zip ? sqe[ZIP_SQE_PRODUCED] : 0;
            if (c[n].tag != tags[slot].tag) {
                gvf_stat_add(vf, &st->stats.bad_cqes, 1);
                am_log(AM_LOG_ERR, "guest", "qp %u slot %u: tag 0x%llx, submitted 0x%llx", qp, slot,
                       (unsigned long long)c[n].tag, (unsigned long long)tags[slot].tag);
            }
            tags[slot].busy = 0;
            gvf_dirty(vf, &tags[slot], sizeof(tags[slot]));
            __atomic_store_n(&q->used, (uint16_t)(q->used - 1), __ATOMIC_RELEASE);
            q->completed++;
            n++;
        }
        if (q->cq_head == st->cq_depth - 1) {
            q->cq_head = 0;
            q->cq_phase ^= 1u;
        } else {
            q->cq_head++;
        }
        gvf_dirty(vf, q, sizeof(*q));
        if (q->mode == GUEST_QP_MODE_POLL)
            continue;
        ret = gvf_cq_db(vf, qp, 0);
        if (ret)
            break;
    }
    if (!ret && n > 0 && q->mode != GUEST_QP_MODE_POLL && !*more)
        ret = gvf_cq_db(vf, qp, 1);
    if (!ret && q->mode == GUEST_QP_MODE_POLL && gvf_cq_unacked(st, q) >= gvf_cq_db_batch(st))
        ret = gvf_cq_db(vf, qp, 0);
    pthread_mutex_unlock(&vf->qp_lock[qp]);
    if (n > 0)
        gvf_stat_add(vf, &st->stats.cqes, (uint64_t)n);
    return ret ? ret : n;
}

/* Drain one CQ, delivering completions. Caller holds poll_lock. */
static int gvf_cq_drain_locked(struct guest_vf *vf, unsigned qp)
{
    struct guest_vf_completion c[GVF_CQ_BATCH];
    int total = 0, more;

    do {
        int n = gvf_cq_take(vf, qp, c, &more);
        if (n < 0)
            return n;
        for (int i = 0; i < n; i++)
            if (vf->cb)
                vf->cb(vf->cb_opaque, &c[i]);
        total += n;
    } while (more);
    return total;
}

/* Walk EQEs by phase (at most one lap), ring the EQ doorbell, and note
 * which CQs have news. The CQ set is a bitmap, so unlike the Linux driver's
 * array there is no need to stop at half the EQ. */
static int gvf_eq_walk_locked(struct guest_vf *vf, uint64_t *cq_mask, int ring_always)
{
    struct gvf_state *st = vf->st;
    const uint32_t *ring = gvf_ptr(vf, st->eq_gpa);
    unsigned n = 0;

    for (;;) {
        uint32_t dw0 = __atomic_load_n(&ring[st->eq_head], __ATOMIC_ACQUIRE);
        unsigned cqn;

        if (((dw0 & QM_EQE_PHASE) ? 1u : 0u) != st->eq_phase || n == st->eq_depth)
            break;
        cqn = dw0 & 0xffffu;
        if (cqn < st->qp_num)
            *cq_mask |= 1ull << cqn;
        else
            am_log(AM_LOG_ERR, "guest", "EQE names cq %u of %u", cqn, st->qp_num);
        if (st->eq_head == st->eq_depth - 1) {
            st->eq_head = 0;
            st->eq_phase ^= 1u;
        } else {
            st->eq_head++;
        }
        n++;
    }
    if (n > 0) {
        gvf_dirty(vf, &st->eq_head, 2 * sizeof(uint32_t));
        gvf_stat_add(vf, &st->stats.eqes, n);
    }
    if (n > 0 || ring_always)
        return gvf_db(vf, 0, QM_DB_CMD_EQ, (uint16_t)st->eq_head, 0);
    return 0;
}

/* Mark a queue fatal after an AEQE; the Linux driver stops it. */
static void gvf_qp_fatal(struct guest_vf *vf, unsigned qp, unsigned type)
{
    struct gvf_qp *q = &vf->st->qp[qp];

    am_log(AM_LOG_ERR, "guest", "AEQE type %u on qp %u: queue is dead", type, qp);
    pthread_mutex_lock(&vf->qp_lock[qp]);
    if (q->state == GUEST_QP_STARTED) {
        __atomic_store_n(&q->state, GUEST_QP_FATAL, __ATOMIC_RELEASE);
        gvf_dirty(vf, q, sizeof(*q));
    }
    pthread_mutex_unlock(&vf->qp_lock[qp]);
}

static int gvf_aeq_walk_locked(struct guest_vf *vf)
{
    struct gvf_state *st = vf->st;
    const uint32_t *ring = gvf_ptr(vf, st->aeq_gpa);
    unsigned n = 0;

    for (;;) {
        uint32_t dw0 = __atomic_load_n(&ring[st->aeq_head], __ATOMIC_ACQUIRE);
        unsigned qn = dw0 & 0xffffu, type = dw0 >> QM_AEQE_TYPE_SHIFT;

        if (((dw0 & QM_EQE_PHASE) ? 1u : 0u) != st->aeq_phase)
            break;
        if (type == QM_AEQE_EQ_OVERFLOW) {
            for (unsigned i = 0; i < st->qp_num; i++)
                gvf_qp_fatal(vf, i, type);
        } else if (qn < st->qp_num) {
            gvf_qp_fatal(vf, qn, type);
        } else {
            am_log(AM_LOG_ERR, "guest", "AEQE type %u names queue %u of %u", type, qn, st->qp_num);
        }
        if (st->aeq_head == st->aeq_depth - 1) {
            st->aeq_head = 0;
            st->aeq_phase ^= 1u;
        } else {
            st->aeq_head++;
        }
        n++;
    }
    if (!n)
        return 0;
    gvf_dirty(vf, &st->aeq_head, 2 * sizeof(uint32_t));
    gvf_stat_add(vf, &st->stats.aeqes, n);
    return gvf_db(vf, 0, QM_DB_CMD_AEQ, (uint16_t)st->aeq_head, 0);
}

int guest_vf_poll(struct guest_vf *vf, int from_irq)
{
    struct gvf_state *st = vf->st;
    uint64_t cq_mask = 0;
    uint32_t src = 0;
    int ret = 0, total = 0;

    pthread_mutex_lock(&vf->poll_lock);
    if (from_irq) {
        gvf_stat_add(vf, &st->stats.irqs, 1);
        ret = gvf_rd32(vf, QM_EQ_INT_SOURCE, &src);
        if (!ret && !src)
            gvf_stat_add(vf, &st->stats.spurious_irqs, 1);
    }
    if (!ret)
        ret = gvf_eq_walk_locked(vf, &cq_mask, from_irq);
    /* CQs named by EQEs first, then every other live CQ as the safety net
     * for an event or MSI that never came (counted). */
    for (unsigned pass = 0; !ret && pass < 2; pass++) {
        for (unsigned i = 0; i < st->qp_rings; i++) {
            int n;
            if (((cq_mask >> i) & 1u) != (pass == 0 ? 1u : 0u))
                continue;
            n = gvf_cq_drain_locked(vf, i);
            if (n < 0) {
                ret = n;
                break;
            }
            total += n;
            if (n > 0 && (!from_irq || pass == 1))
                gvf_stat_add(vf, &st->stats.cqes_without_irq, (uint64_t)n);
        }
    }
    if (!ret)
        ret = gvf_aeq_walk_locked(vf);
    pthread_mutex_unlock(&vf->poll_lock);
    return ret ? ret : total;
}

int guest_vf_qp_poll(struct guest_vf *vf, unsigned qp)
{
    int n;

    if (qp >= vf->st->qp_num)
        return -EINVAL;
    pthread_mutex_lock(&vf->poll_lock);
    n = gvf_cq_drain_locked(vf, qp);
    pthread_mutex_unlock(&vf->poll_lock);
    return n;
}

enum guest_qp_mode guest_vf_qp_mode(const struct guest_vf *vf, unsigned qp)
{
    if (qp >= vf->st->qp_num)
        return GUEST_QP_MODE_IRQ;
    return (enum guest_qp_mode)__atomic_load_n(&vf->st->qp[qp].mode, __ATOMIC_RELAXED);
}

int guest_vf_qp_stop(struct guest_vf *vf, unsigned qp, int timeout_ms)
{
    struct gvf_state *st = vf->st;
    struct gvf_qp *q;
    uint64_t deadline;
    int ret = 0;

    if (qp >= st->qp_num)
        return -EINVAL;
    q = &st->qp[qp];
    if (q->state != GUEST_QP_STARTED && q->state != GUEST_QP_FATAL)
        return -ENOENT;
    pthread_mutex_lock(&vf->qp_lock[qp]);
    __atomic_store_n(&q->state, GUEST_QP_STOPPED, __ATOMIC_RELEASE); /* no new submissions */
    gvf_dirty(vf, q, sizeof(*q));
    pthread_mutex_unlock(&vf->qp_lock[qp]);

    /* A drain of long jobs outlasts the 1 ms mailbox budget: the device keeps
     * busy set until the queue is empty, so wait for it up to timeout_ms.
     * (The Linux driver logs a timeout here and carries on.) */
    deadline = am_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000ull;
    if (st->caps & GVF_CAP_STOP_QP) {
        pthread_mutex_lock(&vf->mb_lock);
        ret = gvf_mb_budget_locked(vf, QM_MB_CMD_STOP_QP, 0, (uint16_t)qp, 0,
                                   AM_MAX(deadline - am_now_ns(), GVF_MB_BUDGET_NS));
        pthread_mutex_unlock(&vf->mb_lock);
    }
    /* Reap what the drain completed (the Linux driver flushes its workqueue). */
    for (;;) {
        pthread_mutex_lock(&vf->poll_lock);
        int n = gvf_cq_drain_locked(vf, qp);
        pthread_mutex_unlock(&vf->poll_lock);
        if (n < 0 && !ret)
            ret = n;
        if (n < 0 || guest_vf_qp_inflight(vf, qp) == 0)
            break;
        if (am_now_ns() >= deadline) {
            am_log(AM_LOG_ERR, "guest", "qp %u: %u jobs still owed after STOP_QP", qp,
                   guest_vf_qp_inflight(vf, qp));
            if (!ret)
                ret = -ETIMEDOUT;
            break;
        }
        gvf_sleep_ns(100000);
    }
    return ret;
}

int guest_vf_uninit(struct guest_vf *vf)
{
    struct gvf_state *st = vf->st;
    int first = 0, ret;

    for (unsigned i = 0; i < st->qp_rings; i++) {
        if (st->qp[i].state != GUEST_QP_STARTED && st->qp[i].state != GUEST_QP_FATAL)
            continue;
        ret = guest_vf_qp_stop(vf, i, 5000);
        if (ret && !first)
            first = ret;
    }
    ret = gvf_wr32(vf, QM_EQ_INT_MASK, 1);
    if (!ret)
        ret = gvf_wr32(vf, QM_AEQ_INT_MASK, 1);
    if (!ret)
        ret = gvf_wr32(vf, QM_VF_STATE, QM_VF_STATE_NOT_READY);
    if (ret && !first)
        first = ret;
    st->ready = 0;
    gvf_dirty(vf, st, sizeof(*st));
    return first;
}

int guest_vf_qp_sqc_dump(struct guest_vf *vf, unsigned qp, struct qm_sqc *out)
{
    int ret;

    if (qp >= vf->st->qp_num || !out)
        return -EINVAL;
    pthread_mutex_lock(&vf->mb_lock);
    ret = gvf_mb_locked(vf, QM_MB_CMD_SQC, vf->st->scratch_gpa, (uint16_t)qp, 1);
    if (!ret) {
        atomic_thread_fence(memory_order_acquire);
        memcpy(out, gvf_ptr(vf, vf->st->scratch_gpa), sizeof(*out));
    }
    pthread_mutex_unlock(&vf->mb_lock);
    return ret;
}
