/* qm_dev: device lifetime, BAR address decoding, the function lock and its
 * deferred work, MSI delivery, function-level reset, the PF's register-only
 * init (VFT programming as the PF host driver does it). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "qm/qm_internal.h"

void qm_dev_config_default(struct qm_dev_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->num_vfs = QM_DEFAULT_VFS;
    cfg->qps_per_vf = QM_DEFAULT_QPS_PER_VF;
    cfg->revision = QM_REV_V4;
    cfg->workers = 2;
    cfg->db_isolation = true;
    cfg->msi_mod_max = 8;
    cfg->msi_mod_job_ns = 100000;
    cfg->msi_mod_hold_ns = 500000;
}

/* ---- the function lock ------------------------------------------------ */

void qm_fn_lock(struct qm_fn *fn)
{
    pthread_mutex_lock(&fn->lock);
}

void qm_fn_assert_locked(struct qm_fn *fn)
{
    /* EBUSY from trylock means somebody (we, by contract) holds it. */
    int r = pthread_mutex_trylock(&fn->lock);

    if (r == 0) {
        pthread_mutex_unlock(&fn->lock);
        am_log(AM_LOG_ERR, QM_LOG, "fn %u: lock not held where required", fn->idx);
        abort();
    }
}

static void qm_fn_raise(struct qm_fn *fn, unsigned vectors)
{
    const struct qm_irq_sink *sink = &fn->dev->cfg.irq;

    for (unsigned v = 0; v < QM_NUM_VECTORS; v++) {
        if (!(vectors & (1u << v)))
            continue;
        QM_COUNT(fn, msi_raised);
        if (sink->raise)
            sink->raise(sink->opaque, fn->idx, v);
    }
    /* The last raiser wakes a PAUSE_QM / reset waiting for MSIs to drain. */
    if (atomic_fetch_sub(&fn->irq_inflight, 1) == 1 && atomic_load(&fn->quiesce_waiters) > 0) {
        pthread_mutex_lock(&fn->lock);
        pthread_cond_broadcast(&fn->cond);
        pthread_mutex_unlock(&fn->lock);
    }
}

/* Every unlock of a function lock that may carry deferred work comes here:
 * MSIs first (they were decided under the lock), then effects on other
 * functions, each of which locks and unlocks that function in turn. */
void qm_fn_unlock(struct qm_fn *fn, struct qm_deferred *d)
{
    struct qm_dev *dev = fn->dev;
    struct qm_deferred w = *d;

    memset(d, 0, sizeof(*d));
    pthread_mutex_unlock(&fn->lock);
    qm_sched_wake(dev, &w);
    if (w.irq_vectors)
        qm_fn_raise(fn, w.irq_vectors);
    if (w.pf_signal)
        qm_pf_ifc_signal(dev, fn->idx);
    if (w.pf_ready_clear)
        qm_pf_ifc_ready_clear(dev, fn->idx);
    for (unsigned i = 1; i < dev->nfn; i++) {
        if (w.vf_notify & (1ull << i))
            qm_vf_ifc_notify(dev, i);
        if (w.vf_ack & (1ull << i))
            qm_vf_ifc_ack(dev, i);
    }
    for (unsigned i = 0; i < dev->nfn; i++)
        if (w.vft_changed & (1ull << i))
            qm_pf_vft_apply(dev, i);
}

void qm_fn_msi_locked(struct qm_fn *fn, struct qm_deferred *d, unsigned v)
{
    qm_fn_assert_locked(fn);
    if (fn->resetting)
        return;
    if (fn->paused) {
        if (!(fn->int_pending & (1u << v)))
            QM_COUNT(fn, msi_held);
        fn->int_pending |= 1u << v;
        return;
    }
    if (!d->irq_vectors)
        atomic_fetch_add(&fn->irq_inflight, 1);
    d->irq_vectors |= 1u << v;
}

bool qm_fn_v4(const struct qm_dev *dev)
{
    return atomic_load(&((struct qm_dev *)dev)->v4_windows);
}

bool qm_fn_can_run_locked(const struct qm_fn *fn)
{
    return !fn->paused && !fn->resetting && !fn->halted;
}

void qm_fn_wake_waiters_locked(struct qm_fn *fn)
{
    if (atomic_load(&fn->quiesce_waiters) > 0)
        pthread_cond_broadcast(&fn->cond);
}

void qm_ns_to_timespec(uint64_t ns, struct timespec *ts)
{
    ts->tv_sec = (time_t)(ns / 1000000000u);
    ts->tv_nsec = (long)(ns % 1000000000u);
}

bool qm_fn_wait_locked(struct qm_fn *fn, bool (*done)(struct qm_fn *, void *), void *arg,
                       uint64_t deadline_ns)
{
    struct timespec ts;

    qm_fn_assert_locked(fn);
    atomic_fetch_add(&fn->quiesce_waiters, 1);
    while (!done(fn, arg)) {
        uint64_t now = am_now_ns();

        if (deadline_ns && now >= deadline_ns)
            break;
        /* Without a deadline, still wake up now and then: robust against a
         * wake-up lost to a bug, at no cost on the normal path. */
        qm_ns_to_timespec(deadline_ns ? deadline_ns : now + 10000000u, &ts);
        pthread_cond_timedwait(&fn->cond, &fn->lock, &ts);
    }
    atomic_fetch_sub(&fn->quiesce_waiters, 1);
    return done(fn, arg);
}

/* ---- function-level reset ---------------------------------------------- */

/* Everything guest-visible back to reset values. The VFT, the IOMMU domain
 * and the debug counters are not function state and stay. */
static void qm_fn_reset_locked(struct qm_fn *fn, struct qm_deferred *d)
{
    qm_fn_assert_locked(fn);
    if (fn->idx != 0 && (fn->regs[QM_R_IFC_INT_SOURCE_V] & 1u))
        d->pf_ready_clear = true; /* the PF must not wait for an ack from a reset VF */
    qm_regs_reset(fn->regs, &qm_local_table);
    qm_regs_reset(fn->regs, &qm_win_table);
    if (fn->db_pages != NULL)
        fn->regs[QM_R_QUE_ISO_CFG] = QM_QUE_ISO_EN;
    qm_db_pages_reset_locked(fn);
    memset(fn->mb, 0, sizeof(fn->mb));
    memset(fn->db_stage, 0, sizeof(fn->db_stage));
    fn->sqc_bt = 0;
    fn->cqc_bt = 0;
    memset(&fn->eq, 0, sizeof(fn->eq));
    memset(&fn->aeq, 0, sizeof(fn->aeq));
    for (unsigned i = 0; i < QM_MAX_QPS_PER_VF; i++)
        qm_queue_invalidate_locked(fn, &fn->q[i], true, true);
    fn->paused = false;
    fn->halted = false;
    fn->int_pending = 0;
    fn->msi_mod_held = 0;
    fn->msi_mod_queue = NULL;
    atomic_store(&fn->ifc_in, 0);
    atomic_store(&fn->ifc_out, 0);
}

bool qm_fn_quiesced(struct qm_fn *fn, void *arg)
{
    (void)arg;
    return fn->jobs_inflight == 0 && atomic_load(&fn->irq_inflight) == 0;
}

bool qm_fn_idle(struct qm_fn *fn, void *arg)
{
    return qm_fn_quiesced(fn, arg) && fn->stale_writes == 0;
}

int qm_function_reset(struct qm_dev *dev, unsigned fnum)
{
    struct qm_deferred d = {0};
    struct qm_fn *fn;

    if (dev == NULL || fnum >= dev->nfn)
        return -EINVAL;
    fn = dev->fn[fnum];
    qm_fn_lock(fn);
    fn->resetting = true;
    /* Revocation waits at most for one output write; then MSIs already
     * decided and a paused job's late copy: no deadline needed. */
    qm_fn_revoke_jobs_locked(fn, &d, false);
    qm_fn_wait_locked(fn, qm_fn_idle, NULL, 0);
    qm_fn_reset_locked(fn, &d);
    fn->resetting = false;
    QM_COUNT(fn, resets);
    qm_fn_unlock(fn, &d);
    return 0;
}

/* ---- BAR decoding ------------------------------------------------------ */

enum qm_target_kind { QM_T_SPACE, QM_T_ONES, QM_T_UNKNOWN };

struct qm_target {
    enum qm_target_kind kind;
    struct qm_fn *fn;
    enum qm_space sp;
    enum qm_port port;
    uint32_t off;
};

static void qm_decode_pf(struct qm_dev *dev, uint64_t off, struct qm_target *t)
{
    uint64_t wend = QM_PF_MIG_WINDOW_BASE + (uint64_t)dev->nfn * QM_PF_MIG_WINDOW_SIZE;

    t->fn = dev->fn[0];
    if (off < QM_PF_LOCAL_SIZE) {
        t->kind = QM_T_SPACE;
        t->sp = QM_SPACE_LOCAL;
        t->off = (uint32_t)off;
    } else if (off >= QM_PF_GLOBAL_BASE && off < QM_PF_GLOBAL_BASE + QM_PF_GLOBAL_SIZE) {
        t->kind = QM_T_SPACE;
        t->sp = QM_SPACE_PF;
        t->off = (uint32_t)off;
    } else if (off >= QM_PF_MIG_WINDOW(1) && off < wend && qm_fn_v4(dev)) {
        uint64_t rel = off - QM_PF_MIG_WINDOW_BASE;
        uint32_t woff = (uint32_t)(rel % QM_PF_MIG_WINDOW_SIZE);

        t->kind = QM_T_SPACE;
        t->fn = dev->fn[rel / QM_PF_MIG_WINDOW_SIZE];
        t->port = QM_PORT_HOST;
        t->sp = woff < QM_WIN_LOCAL_SIZE ? QM_SPACE_LOCAL : QM_SPACE_WIN;
        t->off = woff;
    }
}

static void qm_decode_vf(struct qm_dev *dev, struct qm_fn *fn, uint64_t off, struct qm_target *t)
{
    t->fn = fn;
    if (off < QM_V3_MIG_HALF) {
        t->kind = QM_T_SPACE;
        t->sp = QM_SPACE_LOCAL;
        t->off = (uint32_t)off;
        return;
    }
    if (qm_fn_v4(dev)) {
        t->kind = QM_T_ONES; /* v4: the migration half is not on the VF */
        return;
    }
    uint32_t sub = (uint32_t)(off - QM_V3_MIG_HALF);

    t->port = QM_PORT_HOST;
    if (sub < QM_V3_SHADOW_SIZE) {
        t->kind = QM_T_SPACE;
        t->sp = QM_SPACE_WIN;
        t->off = QM_WIN_EQC_SHADOW + sub;
    } else if (sub >= QM_WIN_LOCAL_SIZE && sub < QM_PF_MIG_WINDOW_SIZE) {
        t->kind = QM_T_SPACE;
        t->sp = QM_SPACE_WIN;
        t->off = sub;
    }
}

uint64_t qm_bar_size(const struct qm_dev *dev, unsigned fn)
{
    (void)dev;
    return fn == 0 ? QM_PF_BAR2_SIZE : QM_VF_BAR2_SIZE;
}

static int qm_bar_access(struct qm_dev *dev, unsigned fnum, uint64_t off, void *data,
                         unsigned size, bool write)
{
    struct qm_target t = {.kind = QM_T_UNKNOWN, .port = QM_PORT_FN};
    struct qm_deferred d = {0};
    bool size_ok;

    if (dev == NULL || fnum >= dev->nfn || data == NULL)
        return -EINVAL;
    if (fnum == 0)
        qm_decode_pf(dev, off, &t);
    else
        qm_decode_vf(dev, dev->fn[fnum], off, &t);

    size_ok = (size == 1 || size == 2 || size == 4 || size == 8) && off % size == 0;
    if (size == 16)
        size_ok = t.kind == QM_T_SPACE && t.sp == QM_SPACE_LOCAL && t.off == QM_MAILBOX;
    if (!size_ok || !am_range_ok(off, size, qm_bar_size(dev, fnum))) {
        QM_COUNT(dev->fn[fnum], access_errors);
        QM_GUEST_LOG(dev->fn[fnum], "refused %s of %u bytes at 0x%llx", write ? "write" : "read",
                     size, (unsigned long long)off);
        if (!write && size <= 16)
            memset(data, 0xff, size);
        return -EINVAL;
    }

    switch (t.kind) {
    case QM_T_ONES:
        if (write)
            QM_COUNT(t.fn, unknown_writes);
        else
            memset(data, 0xff, size);
        return 0;
    case QM_T_UNKNOWN:
        if (write) {
            QM_COUNT(t.fn, unknown_writes);
        } else {
            QM_COUNT(t.fn, unknown_reads);
            memset(data, 0, size);
        }
        return 0;
    case QM_T_SPACE:
        break;
    }

    struct qm_access a = {.dev = dev, .fn = t.fn, .port = t.port, .d = &d};

    qm_fn_lock(t.fn);
    qm_db_pages_take_locked(&a);
    if (write)
        qm_space_write(&a, t.sp, t.off, data, size);
    else
        qm_space_read(&a, t.sp, t.off, data, size);
    qm_fn_unlock(t.fn, &d);
    return 0;
}

int qm_bar_read(struct qm_dev *dev, unsigned fn, uint64_t off, void *data, unsigned size)
{
    return qm_bar_access(dev, fn, off, data, size, false);
}

int qm_bar_write(struct qm_dev *dev, unsigned fn, uint64_t off, const void *data, unsigned size)
{
    return qm_bar_access(dev, fn, off, (void *)data, size, true);
}

/* ---- PF init: what the PF host driver does before VFs are used --------- */

static int qm_pf_vft_program(struct qm_dev *dev, unsigned fnum, unsigned type, uint64_t data)
{
    uint32_t rdy = 0;

    /* Same sequence as the PF driver: wait ready, set op/type/function and
     * data, clear ready, enable, wait ready. The model completes at once. */
    qm_bar_read32(dev, 0, QM_PF_VFT_CFG_RDY, &rdy);
    if (!(rdy & 1u))
        return -EIO;
    qm_bar_write32(dev, 0, QM_PF_VFT_CFG_OP_WR, 0);
    qm_bar_write32(dev, 0, QM_PF_VFT_CFG_TYPE, type);
    qm_bar_write32(dev, 0, QM_PF_VFT_CFG, fnum);
    qm_bar_write32(dev, 0, QM_PF_VFT_CFG_DATA_L, (uint32_t)data);
    qm_bar_write32(dev, 0, QM_PF_VFT_CFG_DATA_H, (uint32_t)(data >> 32));
    qm_bar_write32(dev, 0, QM_PF_VFT_CFG_RDY, 0);
    qm_bar_write32(dev, 0, QM_PF_VFT_CFG_OP_ENABLE, 1);
    qm_bar_read32(dev, 0, QM_PF_VFT_CFG_RDY, &rdy);
    return (rdy & 1u) ? 0 : -EIO;
}

static int qm_pf_init(struct qm_dev *dev)
{
    unsigned n = dev->cfg.qps_per_vf;

    for (unsigned f = 0; f < dev->nfn; f++) {
        uint64_t base = (uint64_t)f * n;
        uint64_t sqc = base << QM_VFT_BASE_SHIFT | 1ull << QM_VFT_VALID_SHIFT |
                       (uint64_t)(n - 1) << QM_VFT_NUM_SHIFT;
        int r = qm_pf_vft_program(dev, f, QM_PF_VFT_TYPE_SQC, sqc);

        if (r == 0)
            r = qm_pf_vft_program(dev, f, QM_PF_VFT_TYPE_CQC, QM_CQC_VFT_VALID);
        if (r)
            return r;
    }
    if (dev->cfg.revision == QM_REV_V4)
        qm_bar_write32(dev, 0, QM_PF_MIG_REGION_SEL, 1);
    return 0;
}

/* ---- lifetime ------------------------------------------------------------ */

static void qm_fn_destroy(struct qm_fn *fn)
{
    if (fn == NULL)
        return;
    if (fn->dom)
        iommu_domain_destroy(fn->dom);
    am_ratelimit_destroy(&fn->log_rl);
    pthread_cond_destroy(&fn->cond);
    pthread_mutex_destroy(&fn->lock);
    free(fn);
}

static int qm_fn_create(struct qm_dev *dev, unsigned idx, struct qm_fn **out)
{
    struct qm_fn *fn = calloc(1, sizeof(*fn));
    pthread_condattr_t ca;
    int r;

    if (fn == NULL)
        return -ENOMEM;
    fn->dev = dev;
    fn->idx = idx;
    pthread_mutex_init(&fn->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&fn->cond, &ca);
    pthread_condattr_destroy(&ca);
    r = am_ratelimit_init(&fn->log_rl, QM_LOG_BURST, QM_LOG_INTERVAL_NS, NULL, NULL);
    if (r) {
        pthread_cond_destroy(&fn->cond);
        pthread_mutex_destroy(&fn->lock);
        free(fn);
        return r;
    }
    r = iommu_domain_create((uint16_t)idx, &fn->dom);
    if (r) {
        qm_fn_destroy(fn);
        return r;
    }
    for (unsigned i = 0; i < QM_MAX_QPS_PER_VF; i++) {
        fn->q[i].fn = fn;
        fn->q[i].qn = (uint16_t)i;
    }
    qm_regs_reset(fn->regs, &qm_local_table);
    qm_regs_reset(fn->regs, &qm_win_table);
    *out = fn;
    return 0;
}

int qm_dev_create(const struct qm_dev_config *cfg, struct qm_dev **out)
{
    struct qm_dev *dev;
    pthread_condattr_t ca;
    int r;

    if (cfg == NULL || out == NULL || cfg->num_vfs < 1 || cfg->num_vfs > QM_MAX_VFS ||
        cfg->qps_per_vf < 2 || cfg->qps_per_vf > QM_MAX_QPS_PER_VF ||
        (cfg->revision != QM_REV_V3 && cfg->revision != QM_REV_V4) || cfg->workers < 1 ||
        cfg->workers > QM_MAX_WORKERS || qm_engine_get(cfg->engine) == NULL ||
        cfg->msi_mod_max > QM_MSI_MOD_MAX_LIMIT)
        return -EINVAL;
    r = qm_regs_check_tables();
    if (r)
        return r;
    dev = calloc(1, sizeof(*dev));
    if (dev == NULL)
        return -ENOMEM;
    dev->cfg = *cfg;
    dev->engine = qm_engine_get(cfg->engine);
    dev->nfn = 1 + cfg->num_vfs;
    dev->total_qps = dev->nfn * cfg->qps_per_vf;
    pthread_mutex_init(&dev->sched_lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&dev->sched_cond, &ca);
    pthread_cond_init(&dev->freeze.cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&dev->freeze.lock, NULL);
    atomic_init(&dev->freeze.armed_fast, QM_FREEZE_NONE);
    dev->ring_cap = dev->nfn * QM_MAX_QPS_PER_VF;
    dev->ring = calloc(dev->ring_cap, sizeof(*dev->ring));
    if (dev->ring == NULL) {
        r = -ENOMEM;
        goto err_destroy;
    }
    qm_regs_reset(dev->pf_regs, &qm_pf_table);
    for (unsigned i = 0; i < dev->nfn; i++) {
        r = qm_fn_create(dev, i, &dev->fn[i]);
        if (r)
            goto err_destroy;
    }
    r = qm_pf_init(dev);
    if (r)
        goto err_destroy;
    r = qm_db_pages_create(dev);
    if (r)
        goto err_destroy;
    r = qm_workers_start(dev);
    if (r)
        goto err_destroy;
    *out = dev;
    return 0;

err_destroy:
    qm_dev_destroy(dev);
    return r;
}

void qm_dev_destroy(struct qm_dev *dev)
{
    if (dev == NULL)
        return;
    qm_workers_stop(dev); /* the workers sweep the pages: they go first */
    qm_db_pages_destroy(dev);
    for (unsigned i = 0; i < dev->nfn; i++)
        qm_fn_destroy(dev->fn[i]);
    free(dev->ring);
    pthread_cond_destroy(&dev->sched_cond);
    pthread_mutex_destroy(&dev->sched_lock);
    pthread_cond_destroy(&dev->freeze.cond);
    pthread_mutex_destroy(&dev->freeze.lock);
    free(dev);
}

unsigned qm_dev_num_functions(const struct qm_dev *dev)
{
    return dev->nfn;
}

uint8_t qm_dev_revision(const struct qm_dev *dev)
{
    return dev->cfg.revision;
}

const struct qm_engine *qm_dev_engine(const struct qm_dev *dev)
{
    return dev->engine;
}

struct iommu_domain *qm_dev_iommu(struct qm_dev *dev, unsigned fn)
{
    if (dev == NULL || fn >= dev->nfn)
        return NULL;
    return dev->fn[fn]->dom;
}
