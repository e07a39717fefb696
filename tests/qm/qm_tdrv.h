/* qm_tdrv: a minimal in-test driver for the device model. It reaches the
 * device only through register accesses (qm_bar_read/write) and DMA into
 * test-owned guest memory mapped in each function's IOMMU domain, the way a
 * driver would; qm_debug.h is used only to look, never to act. Failures
 * abort the test through cmocka asserts. */
#ifndef ACCMIG_TESTS_QM_TDRV_H
#define ACCMIG_TESTS_QM_TDRV_H

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/common.h"
#include "qm/qm.h"
#include "qm/qm_debug.h"
#include "qm/qm_hw.h"
#include "zip/zip_hw.h"

#define T_NFN_MAX (1 + QM_MAX_VFS)
#define T_MEM_SIZE (24u << 20)
#define T_IOVA(fn) (0x40000000ull + (uint64_t)(fn) * 0x10000000ull)
#define T_TIMEOUT_MS 20000

/* A door: which function's BAR and where its function-local block starts
 * (0 for a function's own BAR2, the window base for the PF window). */
struct tdoor {
    unsigned fn;
    uint64_t base;
    uint64_t host_base; /* WIN registers (0x1000..) of this door, 0 if none */
};

struct tmem {
    uint8_t *host;
    uint64_t iova, size, used;
    bool borrowed;          /* another environment's memory (a migration) */
};

struct tenv {
    struct qm_dev *dev;
    unsigned nfn;
    pthread_mutex_t lock;   /* protects irq_count (the sink runs on model threads) */
    pthread_cond_t cond;    /* broadcast on every MSI */
    unsigned irq_count[T_NFN_MAX][QM_NUM_VECTORS];
    struct tmem mem[T_NFN_MAX];
    uint8_t *db[T_NFN_MAX];   /* each VF's BAR4 doorbell pages, mapped as a VMM would */
    uint64_t db_size[T_NFN_MAX];
};

struct tqp {
    uint64_t sq, cq;        /* ring IOVAs */
    uint16_t sq_tail, cq_head;
    bool cq_phase;
    uint16_t depth;         /* SQ depth */
    uint16_t cq_depth;
};

struct tvf {
    struct tenv *env;
    unsigned fn;
    struct tdoor door;      /* the guest's door (the VF's own BAR) */
    uint32_t qp_base, qp_num;
    uint64_t eqe, aeqe, sqc_bt, cqc_bt;
    uint16_t eq_head, aeq_head, eq_depth;
    bool eq_phase, aeq_phase;
    struct tqp qp[QM_MAX_QPS_PER_VF];
    uint16_t last_sq_num;   /* sq_num of the last CQE taken */
    bool db_iso;            /* QUE_ISO_CFG: SQ/CQ doorbells in the mapped BAR4 pages */
};

/* Environment: device with cfg (NULL: defaults with 2 workers), memory
 * mapped read-write for every function. */
void tenv_init(struct tenv *e, const struct qm_dev_config *cfg);
void tenv_fini(struct tenv *e);
uint64_t tmem_alloc(struct tenv *e, unsigned fn, uint64_t size, uint64_t align);
/* Make function fn of dst use src's guest memory for fn (same IOVAs), as a
 * destination host does after the RAM has migrated. */
void tmem_adopt(struct tenv *dst, struct tenv *src, unsigned fn);
void *tmem_ptr(struct tenv *e, unsigned fn, uint64_t iova);
unsigned tenv_irqs(struct tenv *e, unsigned fn, unsigned vec);
/* Wait until the count of (fn, vec) exceeds `seen`; false on timeout. */
bool tenv_irq_wait(struct tenv *e, unsigned fn, unsigned vec, unsigned seen, int timeout_ms);

/* Doors. */
struct tdoor tdoor_vf(unsigned fn);
struct tdoor tdoor_window(unsigned vf_fn);     /* v4: PF window of a VF */
struct tdoor tdoor_v3_host(unsigned vf_fn);    /* v3: the VF's own BAR, host registers above 0x8000 */
/* Queue qn's SQ/CQ doorbell as the driver rings it: BAR4's mapped page with
 * isolation (after the device has taken the previous one: a page word
 * holds one doorbell), then a BAR2 read that flushes it; else BAR2. */
void tvf_ring(struct tvf *v, unsigned qn, uint64_t db);
uint32_t trd32(struct tenv *e, struct tdoor d, uint64_t off);
void twr32(struct tenv *e, struct tdoor d, uint64_t off, uint32_t v);
void twr64(struct tenv *e, struct tdoor d, uint64_t off, uint64_t v);
uint32_t thost_rd32(struct tenv *e, struct tdoor d, uint32_t win_off);
void thost_wr32(struct tenv *e, struct tdoor d, uint32_t win_off, uint32_t v);

/* Mailbox: write 16 bytes in one store (split = 0) or in pieces of `split`
 * bytes, poll busy like the Linux driver; returns the status (0 OK), or -1
 * if busy never cleared. *data receives MB_DATA when non-NULL. */
int tmb_split(struct tenv *e, struct tdoor d, uint8_t cmd, uint16_t qn, uint64_t base, bool op,
              unsigned split, uint64_t *data);
int tmb(struct tenv *e, struct tdoor d, uint8_t cmd, uint16_t qn, uint64_t base, bool op,
        uint64_t *data);

/* The migration driver's PAUSE_QM on VF vf's PF window, then its poll of
 * PAUSE_STATUS until the in-flight jobs retired (fails the test if they
 * never do). */
void tpause(struct tenv *e, unsigned vf);

/* The Linux VF probe + hisi_qm_start sequence on the VF's own door. */
void tvf_probe(struct tenv *e, struct tvf *v, unsigned fn);
void tvf_start_qp(struct tvf *v, unsigned qn, unsigned alg_type);
/* Same with a CQ of cq_depth entries, events on or off. */
void tvf_start_qp_ex(struct tvf *v, unsigned qn, unsigned alg_type, unsigned cq_depth,
                     bool cq_events);
/* Reload the EQ with a smaller depth (head, tail 0, phase 1). */
void tvf_load_eq(struct tvf *v, unsigned depth);
/* Write the SQE at the tail and ring the SQ doorbell; returns the slot. */
uint16_t tvf_submit(struct tvf *v, unsigned qn, const uint32_t sqe[ZIP_SQE_DWORDS]);
/* Copy the SQE slot back. */
void tvf_sqe(struct tvf *v, unsigned qn, uint16_t slot, uint32_t sqe[ZIP_SQE_DWORDS]);
/* Next CQE if present (phase matches); consumes it and rings the CQ doorbell
 * (priority 0). Returns true and the finished slot. */
bool tvf_cqe_take(struct tvf *v, unsigned qn, uint16_t *slot);
/* Poll for the next CQE until timeout; false on timeout. */
bool tvf_cqe_wait(struct tvf *v, unsigned qn, uint16_t *slot, int timeout_ms);
void tvf_cq_rearm(struct tvf *v, unsigned qn);
/* Consume every EQE present (returns the count), ring the EQ doorbell. */
unsigned tvf_eq_drain(struct tvf *v, uint16_t *cqns, unsigned max);
unsigned tvf_aeq_drain(struct tvf *v, uint32_t *dw0s, unsigned max);

/* A flat-buffer SQE. */
void tsqe_flat(uint32_t sqe[ZIP_SQE_DWORDS], unsigned req_type, uint64_t src, uint32_t in_len,
               uint64_t dst, uint32_t out_avail, uint64_t tag);
/* Compressible test data. */
void tfill(uint8_t *p, size_t n, unsigned seed);
/* Barely compressible test data (7-bit xorshift noise): slow jobs. */
void tfill_noise(uint8_t *p, size_t n, uint64_t seed);
/* A compression job over fresh buffers in fn's memory (input filled from
 * seed); its SQE; and the check that a finished one inflates back. */
struct tjob {
    uint64_t src, dst;
    uint32_t len, cap;
};
struct tjob tjob_new(struct tenv *e, unsigned fn, uint32_t len, unsigned seed);
void tjob_sqe(const struct tjob *j, uint32_t sqe[ZIP_SQE_DWORDS], uint64_t tag);
void tjob_check(struct tvf *v, const struct tjob *j, const uint32_t sqe[ZIP_SQE_DWORDS]);

/* Inflate raw deflate with zlib; returns the length or -1. */
long tinflate_raw(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap);

struct qm_fn_counters tcounters(struct tenv *e, unsigned fn);
struct qm_queue_debug tqueue(struct tenv *e, unsigned fn, unsigned qn);
/* Wait until the queue has no job in flight and head == tail. */
bool tvf_wait_idle(struct tvf *v, unsigned qn, int timeout_ms);
void tsleep_us(unsigned us);
/* Wait until fn has completed at least n jobs in total. */
bool twait_jobs_done(struct tenv *e, unsigned fn, uint64_t n, int timeout_ms);

#endif
