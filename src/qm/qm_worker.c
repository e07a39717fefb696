/* qm_worker: the job engines. Runnable queues wait on one FIFO ring; a worker
 * takes a queue, fetches the SQE at its head under the function lock, runs
 * the device's engine (qm_engine.h) with no lock held (output through
 * qm_job_write, which a revocation closes), and commits under the lock
 * again. A queue is served by one worker at a time (q->job), so its jobs
 * complete in order.
 * With more work on its queue a worker keeps it while no other queue waits,
 * and puts it back at the end of the ring otherwise (fair sharing without a
 * hand-off per job).
 *
 * Interrupt moderation (as NAPI or NVMe interrupt coalescing, invisible to
 * the driver): when a worker commits a job whose only effect on interrupts
 * is the EQ's MSI, and it keeps the queue for that queue's next job in the
 * same turn, the MSI waits for that next completion (fn->msi_mod_held). The
 * EQE and CQE are written as always; only the interrupt is later. It is
 * never held past cfg.msi_mod_max completions (default 8), nor when the job
 * took more than cfg.msi_mod_job_ns (default 100 us: the next one may well
 * be as long), nor once it has waited cfg.msi_mod_hold_ns (default 500 us;
 * checked at each commit and between the pieces of the next job, so a long
 * job after short ones holds it no longer). Everything else raises it at
 * once (qm_fn_msi_mod_flush_locked): the queue running dry or its CQ full,
 * the worker letting the queue go, any other EQE of the function, a
 * revocation (PAUSE_QM, FLR, SQC reload, halt, device stop). A guest that
 * took the EQE meanwhile (it polled) gets no needless interrupt: the flush
 * raises only for an EQ still non-empty and unmasked, which is what a
 * driver that loops on the phase bit needs. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "qm/qm_internal.h"

#define QM_WORKER_TIMER_SLACK_NS 1000ul /* see qm_worker_place */

/* Returns true when q went on the ring (it was not on it already). */
static bool qm_sched_push_locked(struct qm_dev *dev, struct qm_queue *q)
{
    if (dev->stopping || q->queued)
        return false;
    dev->ring[(dev->ring_head + dev->ring_count) % dev->ring_cap] = q;
    dev->ring_count++;
    q->queued = true;
    return true;
}

void qm_sched_enqueue(struct qm_dev *dev, struct qm_deferred *d, struct qm_queue *q)
{
    pthread_mutex_lock(&dev->sched_lock);
    if (qm_sched_push_locked(dev, q))
        d->sched_wake++;
    pthread_mutex_unlock(&dev->sched_lock);
}

void qm_sched_wake(struct qm_dev *dev, struct qm_deferred *d)
{
    unsigned n = d->sched_wake;

    if (n == 0)
        return;
    d->sched_wake = 0;
    pthread_mutex_lock(&dev->sched_lock);
    /* A worker waiting in the poll turn (qm_db_pages.c) is idle too, but
     * waits in ppoll, not on the condition: it goes first (it is the one a
     * kick or a doorbell would have woken anyway). */
    n -= qm_db_poll_wake_locked(dev, n);
    if (n >= dev->nworkers) {
        pthread_cond_broadcast(&dev->sched_cond);
    } else {
        for (unsigned i = 0; i < n; i++)
            pthread_cond_signal(&dev->sched_cond);
    }
    pthread_mutex_unlock(&dev->sched_lock);
}

/* ---- test freeze points (qm_debug.h) ----------------------------------- */

static void qm_freeze_point(struct qm_dev *dev, enum qm_freeze_stage stage)
{
    struct qm_freeze *f = &dev->freeze;

    if (atomic_load_explicit(&f->armed_fast, memory_order_relaxed) != (int)stage)
        return;
    pthread_mutex_lock(&f->lock);
    if (f->armed == stage) {
        f->armed = QM_FREEZE_NONE;
        atomic_store(&f->armed_fast, QM_FREEZE_NONE);
        f->frozen = true;
        pthread_cond_broadcast(&f->cond);
        while (!f->release)
            pthread_cond_wait(&f->cond, &f->lock);
        f->release = false;
        f->frozen = false;
        pthread_cond_broadcast(&f->cond);
    }
    pthread_mutex_unlock(&f->lock);
}

/* Waits on f->cond until done(f) or the deadline; returns done(f). */
static bool qm_freeze_wait_locked(struct qm_freeze *f, bool (*done)(const struct qm_freeze *),
                                  int timeout_ms)
{
    struct timespec ts;

    qm_ns_to_timespec(am_now_ns() + (uint64_t)timeout_ms * 1000000u, &ts);

    while (!done(f))
        if (pthread_cond_timedwait(&f->cond, &f->lock, &ts) == ETIMEDOUT)
            break;
    return done(f);
}

static bool qm_freeze_is_frozen(const struct qm_freeze *f)
{
    return f->frozen;
}

static bool qm_freeze_is_released(const struct qm_freeze *f)
{
    return !f->frozen;
}

int qm_debug_freeze_arm(struct qm_dev *dev, enum qm_freeze_stage stage)
{
    struct qm_freeze *f = &dev->freeze;
    int r = 0;

    if (stage <= QM_FREEZE_NONE || stage > QM_FREEZE_BEFORE_COMMIT)
        return -EINVAL;
    pthread_mutex_lock(&f->lock);
    if (f->armed != QM_FREEZE_NONE || f->frozen) {
        r = -EBUSY;
    } else {
        f->armed = stage;
        f->release = false;
        atomic_store(&f->armed_fast, (int)stage);
    }
    pthread_mutex_unlock(&f->lock);
    return r;
}

int qm_debug_freeze_wait(struct qm_dev *dev, int timeout_ms)
{
    struct qm_freeze *f = &dev->freeze;
    bool ok;

    pthread_mutex_lock(&f->lock);
    ok = qm_freeze_wait_locked(f, qm_freeze_is_frozen, timeout_ms);
    pthread_mutex_unlock(&f->lock);
    return ok ? 0 : -ETIMEDOUT;
}

int qm_debug_freeze_release(struct qm_dev *dev, int timeout_ms)
{
    struct qm_freeze *f = &dev->freeze;
    uint64_t deadline = am_now_ns() + (uint64_t)timeout_ms * 1000000u;
    bool ok;

    pthread_mutex_lock(&f->lock);
    f->armed = QM_FREEZE_NONE;
    atomic_store(&f->armed_fast, QM_FREEZE_NONE);
    if (f->frozen)
        f->release = true;
    pthread_cond_broadcast(&f->cond);
    ok = qm_freeze_wait_locked(f, qm_freeze_is_released, timeout_ms);
    pthread_mutex_unlock(&f->lock);
    /* The worker then finishes its job (dropping it when revoked). */
    while (ok && atomic_load(&dev->serving) > 0) {
        if (am_now_ns() >= deadline)
            return -ETIMEDOUT;
        sched_yield();
    }
    return ok ? 0 : -ETIMEDOUT;
}

/* ---- interrupt moderation (see the header) ----------------------------- */

void qm_fn_msi_mod_flush_locked(struct qm_fn *fn, struct qm_deferred *d)
{
    qm_fn_assert_locked(fn);
    if (fn->msi_mod_held == 0)
        return;
    fn->msi_mod_held = 0;
    fn->msi_mod_queue = NULL;
    if (qm_xeq_source(&fn->eq) && !(fn->regs[QM_R_EQ_INT_MASK] & 1u))
        qm_fn_msi_locked(fn, d, QM_VEC_EQ);
}

/* After the commit of a job of q that took job_ns: hold the EQ MSI it
 * decided (in *d) for q's next completion, or raise what is held. keep: the
 * worker runs q's next job right away. */
static void qm_fn_msi_mod_commit_locked(struct qm_fn *fn, struct qm_deferred *d,
                                        struct qm_queue *q, bool keep, uint64_t job_ns,
                                        uint64_t now)
{
    const struct qm_dev_config *cfg = &fn->dev->cfg;
    bool decided = d->irq_vectors == (1u << QM_VEC_EQ);

    if (fn->msi_mod_held > 0 && fn->msi_mod_queue != q)
        qm_fn_msi_mod_flush_locked(fn, d);
    if (!decided && fn->msi_mod_held == 0)
        return; /* nothing to hold: the CQ was not armed, or other vectors too */
    if (!keep || job_ns > cfg->msi_mod_job_ns || fn->msi_mod_held >= cfg->msi_mod_max ||
        (fn->msi_mod_held > 0 && now - fn->msi_mod_since_ns > cfg->msi_mod_hold_ns)) {
        qm_fn_msi_mod_flush_locked(fn, d);
        return;
    }
    if (decided) {
        /* Undo what qm_fn_msi_locked counted for this vector alone. */
        d->irq_vectors = 0;
        atomic_fetch_sub(&fn->irq_inflight, 1);
    }
    if (fn->msi_mod_held == 0) {
        fn->msi_mod_queue = q;
        fn->msi_mod_since_ns = now;
    }
    fn->msi_mod_held++;
    QM_COUNT(fn, msi_moderated);
}

/* Between two pieces of a job: an MSI held since before it has waited long
 * enough. w->mod_since_ns is the worker's own note that it held one (the
 * fn's state may have been flushed by someone else since: then this finds
 * nothing). */
static void qm_worker_msi_mod_expire(struct qm_worker *w)
{
    struct qm_fn *fn = w->job.sq->fn;
    struct qm_deferred d = {0};

    if (w->mod_since_ns == 0 || am_now_ns() - w->mod_since_ns <= w->dev->cfg.msi_mod_hold_ns)
        return;
    w->mod_since_ns = 0;
    qm_fn_lock(fn);
    if (fn->msi_mod_queue == w->job.sq)
        qm_fn_msi_mod_flush_locked(fn, &d);
    qm_fn_unlock(fn, &d);
}

/* ---- a job and its revocation ------------------------------------------ */

/* A revoked job's copy has ended: RESUME_QM / FLR may be waiting for it. */
static void qm_job_stale_write_done(struct qm_fn *fn)
{
    struct qm_deferred d = {0};

    qm_fn_lock(fn);
    fn->stale_writes--;
    qm_fn_wake_waiters_locked(fn);
    qm_fn_unlock(fn, &d);
}

static int qm_job_write(void *opaque, uint64_t iova, const void *buf, uint64_t len)
{
    struct qm_worker *w = opaque;
    struct qm_job *j = &w->job;
    struct qm_fn *fn = j->sq->fn;
    bool stale;
    int r;

    if (j->writes++ > 0)
        qm_freeze_point(w->dev, QM_FREEZE_MID_OUTPUT);
    pthread_mutex_lock(&j->gate);
    if (atomic_load(&j->revoked)) {
        pthread_mutex_unlock(&j->gate);
        return -ECANCELED;
    }
    j->writing = true;
    j->wr_iova = iova;
    j->wr_buf = buf;
    j->wr_len = len;
    pthread_mutex_unlock(&j->gate);
    if (j->writes > 1)
        qm_freeze_point(w->dev, QM_FREEZE_IN_WRITE);
    r = iommu_dma_write(fn->dom, iova, buf, len);

    pthread_mutex_lock(&j->gate);
    j->writing = false;
    stale = j->stale;
    j->stale = false;
    pthread_cond_broadcast(&j->write_done);
    pthread_mutex_unlock(&j->gate);
    if (stale)
        qm_job_stale_write_done(fn);
    return atomic_load(&j->revoked) ? -ECANCELED : r;
}

static bool qm_job_cancelled(void *opaque)
{
    struct qm_worker *w = opaque;

    if (w->job.polls++ == 1)
        qm_freeze_point(w->dev, QM_FREEZE_MID_CODEC);
    qm_worker_msi_mod_expire(w);
    return atomic_load_explicit(&w->job.revoked, memory_order_acquire);
}

static int qm_job_write_at_commit(void *opaque, uint64_t iova, const void *buf, uint64_t len)
{
    struct qm_worker *w = opaque;

    if (len > QM_ENGINE_WRITE_MAX)
        return -EINVAL;
    if (atomic_load(&w->job.revoked))
        return -ECANCELED;
    if (w->ncw == w->cap_cw) {
        unsigned cap = w->cap_cw ? 2 * w->cap_cw : 16;
        struct qm_commit_write *cw = realloc(w->cw, cap * sizeof(*cw));

        if (cw == NULL)
            return -ENOMEM;
        w->cw = cw;
        w->cap_cw = cap;
    }
    w->cw[w->ncw++] = (struct qm_commit_write){.iova = iova, .len = len, .buf = buf};
    return 0;
}

static const struct qm_engine_io qm_job_ops = {
    .write = qm_job_write,
    .cancelled = qm_job_cancelled,
    .write_at_commit = qm_job_write_at_commit,
};

/* The job's held writes, with its commit (fn->lock held): false when one
 * faulted (the rest are not written). */
static bool qm_job_land_commit_writes_locked(struct qm_worker *w, struct qm_fn *fn)
{
    for (unsigned i = 0; i < w->ncw; i++)
        if (iommu_dma_write(fn->dom, w->cw[i].iova, w->cw[i].buf, w->cw[i].len) != 0)
            return false;
    return true;
}

/* Takes the job off its queue; the caller decides what the worker sees. */
static void qm_job_detach_locked(struct qm_fn *fn, struct qm_job *j)
{
    j->sq->job = NULL;
    fn->jobs_inflight--;
    if (j->cq->cq.gen == j->cq_gen)
        j->cq->cq.reserved--;
}

void qm_job_revoke_locked(struct qm_fn *fn, struct qm_queue *q, bool help)
{
    struct qm_job *j = q->job;

    qm_fn_assert_locked(fn);
    if (j == NULL)
        return;
    pthread_mutex_lock(&j->gate);
    atomic_store_explicit(&j->revoked, true, memory_order_release);
    if (j->writing && help) {
        /* Land the bytes the worker is copying (see Revocation); a fault
         * here is the worker's fault too, and the job reruns anyway. */
        if (iommu_dma_write(fn->dom, j->wr_iova, j->wr_buf, j->wr_len) != 0)
            QM_COUNT(fn, ring_faults);
        j->stale = true;
        fn->stale_writes++;
    }
    while (j->writing && !help)
        pthread_cond_wait(&j->write_done, &j->gate);
    pthread_mutex_unlock(&j->gate);
    qm_job_detach_locked(fn, j);
    QM_COUNT(fn, jobs_cancelled);
    qm_fn_wake_waiters_locked(fn);
}

void qm_fn_revoke_jobs_locked(struct qm_fn *fn, struct qm_deferred *d, bool help)
{
    /* Nothing keeps an interrupt back past a revocation: the vector goes
     * where any other would now (held while paused, dropped in an FLR). A
     * one-queue revocation (SQC reload) leaves it to the worker, which
     * raises it when it finds its job revoked or its queue gone. */
    qm_fn_msi_mod_flush_locked(fn, d);
    for (unsigned i = 0; i < QM_MAX_QPS_PER_VF; i++)
        qm_job_revoke_locked(fn, &fn->q[i], help);
}

/* Whether the worker of q, which can fetch again, keeps it for its next
 * job: no other queue waits. Otherwise q goes back on the ring (no wakeup:
 * this worker takes the ring's head next). Under fn->lock, so that a held
 * MSI is decided together with the queue's fate. */
static bool qm_worker_keeps_locked(struct qm_dev *dev, struct qm_queue *q)
{
    bool others;

    pthread_mutex_lock(&dev->sched_lock);
    others = dev->ring_count > 0 || dev->stopping;
    if (others)
        (void)qm_sched_push_locked(dev, q);
    pthread_mutex_unlock(&dev->sched_lock);
    return !others;
}

/* One job of q. Returns true when the worker keeps q and fetches from it
 * again right away; q went back on the ring when it can fetch but others
 * wait. */
static bool qm_worker_serve(struct qm_worker *w, struct qm_queue *q)
{
    struct qm_fn *fn = q->fn;
    const struct qm_engine *e = w->dev->engine;
    struct qm_job *j = &w->job;
    struct qm_deferred d = {0};
    struct qm_queue *c;
    unsigned alg;
    uint16_t slot;
    uint64_t t0, t1;
    int r;

    bool more, keep;

    qm_fn_lock(fn);
    c = qm_queue_fetchable_locked(fn, q);
    if (c == NULL) {
        qm_fn_msi_mod_flush_locked(fn, &d); /* the queue ran dry or stopped */
        w->mod_since_ns = 0;
        qm_queue_settle_locked(fn, &d, q); /* a STOP_QP may wait on it */
        qm_fn_unlock(fn, &d);
        return false;
    }
    slot = q->sq.head;
    if (iommu_dma_read(fn->dom, q->sq.base + (uint64_t)slot * e->sqe_size, w->sqe, e->sqe_size)) {
        QM_COUNT(fn, ring_faults);
        q->sq.broken = true;
        qm_fn_msi_mod_flush_locked(fn, &d);
        w->mod_since_ns = 0;
        qm_post_aeqe_locked(fn, &d, q->qn, QM_AEQE_CQE_ERROR);
        qm_queue_settle_locked(fn, &d, q);
        qm_fn_unlock(fn, &d);
        return false;
    }
    atomic_store(&j->revoked, false);
    j->sq = q;
    j->cq = c;
    j->cq_gen = c->cq.gen;
    j->polls = 0;
    j->writes = 0;
    w->ncw = 0;
    q->job = j;
    fn->jobs_inflight++;
    c->cq.reserved++;
    alg = (q->sq.ctx.w13 >> 8) & 0xfu;
    qm_fn_unlock(fn, &d);

    qm_freeze_point(w->dev, QM_FREEZE_FETCHED);
    t0 = am_now_ns();
    if (alg >= e->num_alg_types) {
        /* The queue's alg_type is none the engine has (for ZIP: neither
         * compress nor decompress). */
        e->refuse(w->sqe);
        r = 0;
    } else {
        r = e->run(w->eng, fn->dom, w->sqe, alg, &qm_job_ops, w);
    }
    t1 = am_now_ns();
    qm_freeze_point(w->dev, QM_FREEZE_BEFORE_COMMIT);

    qm_fn_lock(fn);
    if (atomic_load(&j->revoked)) {
        /* Its revoker took the job off the queue and counted it; the queue
         * may already be someone else's. Touch nothing of it; an MSI still
         * held (an SQC reload revokes one queue only) goes out. */
        qm_fn_msi_mod_flush_locked(fn, &d);
        w->mod_since_ns = 0;
        qm_fn_unlock(fn, &d);
        return false;
    }
    qm_job_detach_locked(fn, j);
    if (r == 0 && c->cq.gen == j->cq_gen) {
        uint64_t ctx_iova;
        const void *ctx;
        uint32_t ctx_len;

        /* Stream mode: the context the piece leaves is written with its
         * commit, under the lock a revoker takes, so a job revoked before
         * this point leaves the old context and its replay starts from it. */
        if (alg < e->num_alg_types && e->stream_ctx != NULL &&
            e->stream_ctx(w->eng, &ctx_iova, &ctx, &ctx_len) &&
            iommu_dma_write(fn->dom, ctx_iova, ctx, ctx_len) != 0)
            e->set_dma_fault(w->sqe);
        /* In-place output lands only now, for the same reason: a job
         * revoked before this point has changed none of its input. */
        if (!qm_job_land_commit_writes_locked(w, fn))
            e->set_dma_fault(w->sqe);
        if (!e->job_ok(w->sqe))
            QM_GUEST_LOG(fn, "q %u job tag %016llx: %s error: %s", q->qn,
                         (unsigned long long)e->job_tag(w->sqe), e->name,
                         alg >= e->num_alg_types ? "queue alg_type unknown to the engine"
                                                 : e->last_error(w->eng));
        /* Before the CQE: a guest that sees it and rings at once finds
         * the device polling and needs no kick. */
        qm_db_poll_state_on_locked(fn);
        qm_job_commit_locked(fn, &d, q, c, slot, w->sqe);
        /* The guest may have rung again while this job ran: see it now,
         * under the lock held anyway, rather than at the next sweep. */
        qm_db_pages_take_locked(&(struct qm_access){.dev = w->dev, .fn = fn,
                                                    .port = QM_PORT_FN, .d = &d});
    } else {
        /* The CQ was reloaded under the job, or the engine failed: the job
         * stays on the SQ (head unchanged) and runs again when fetched next. */
        QM_COUNT(fn, jobs_cancelled);
        if (r != 0 && r != -ECANCELED)
            am_log(AM_LOG_ERR, QM_LOG, "fn %u q %u: engine failed: %d", fn->idx, q->qn, r);
    }
    more = qm_queue_settle_locked(fn, &d, q);
    keep = more && qm_worker_keeps_locked(w->dev, q);
    qm_fn_msi_mod_commit_locked(fn, &d, q, keep, t1 - t0, t1);
    w->mod_since_ns = fn->msi_mod_held > 0 ? fn->msi_mod_since_ns : 0;
    qm_fn_wake_waiters_locked(fn);
    qm_fn_unlock(fn, &d);
    return keep;
}

/* SCHED_BATCH (qm_internal.h, Scheduling) and the configured CPUs, if any.
 * Best effort: without them the model is correct, only placed differently. */
static void qm_worker_place(const struct qm_dev *dev)
{
    struct sched_param sp = {0};
    cpu_set_t set;
    int r;

    r = pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
    if (r != 0)
        am_log(AM_LOG_INFO, QM_LOG, "worker left under SCHED_OTHER: errno %d", r);
    /* A worker's nap between two sweeps of the doorbell pages should last
     * about its 10 us, not the default slack's 60. */
    if (dev->poll != NULL)
        (void)prctl(PR_SET_TIMERSLACK, QM_WORKER_TIMER_SLACK_NS, 0, 0, 0);
    if (dev->cfg.worker_cpus == 0)
        return;
    CPU_ZERO(&set);
    for (unsigned c = 0; c < 64; c++)
        if (dev->cfg.worker_cpus & (1ull << c))
            CPU_SET(c, &set);
    r = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    if (r != 0)
        am_log(AM_LOG_INFO, QM_LOG, "worker not pinned: errno %d", r);
}

static void *qm_worker_main(void *arg)
{
    struct qm_worker *w = arg;
    struct qm_dev *dev = w->dev;
    bool back_from_job = false;

    qm_worker_place(dev);
    pthread_mutex_lock(&dev->sched_lock);
    while (!dev->stopping) {
        if (dev->ring_count == 0) {
            /* Idle: look at the doorbell pages, or wait for work. */
            if (!qm_db_poll_turn_locked(dev, w, back_from_job)) {
                dev->idle_waiting++;
                pthread_cond_wait(&dev->sched_cond, &dev->sched_lock);
                dev->idle_waiting--;
            }
            back_from_job = false;
            continue;
        }
        struct qm_queue *q = dev->ring[dev->ring_head];

        dev->ring_head = (dev->ring_head + 1) % dev->ring_cap;
        dev->ring_count--;
        q->queued = false;
        qm_db_poll_leave_locked(dev, w, dev->idle_waiting);
        if (back_from_job)
            (void)qm_db_poll_wake_owner_locked(dev);
        back_from_job = false;
        atomic_fetch_add(&dev->serving, 1);
        pthread_mutex_unlock(&dev->sched_lock);
        while (qm_worker_serve(w, q))
            ;
        atomic_fetch_sub(&dev->serving, 1);
        back_from_job = true;
        pthread_mutex_lock(&dev->sched_lock);
    }
    pthread_mutex_unlock(&dev->sched_lock);
    return NULL;
}

int qm_workers_start(struct qm_dev *dev)
{
    int r;

    dev->workers = calloc(dev->cfg.workers, sizeof(*dev->workers));
    if (dev->workers == NULL)
        return -ENOMEM;
    dev->nworkers = dev->cfg.workers;
    for (unsigned i = 0; i < dev->nworkers; i++)
        dev->workers[i].wake_fd = -1; /* qm_workers_stop closes what was opened */
    for (unsigned i = 0; i < dev->nworkers; i++) {
        struct qm_worker *w = &dev->workers[i];

        w->dev = dev;
        pthread_mutex_init(&w->job.gate, NULL);
        pthread_cond_init(&w->job.write_done, NULL);
        atomic_init(&w->job.revoked, false);
        r = dev->engine->create(&w->eng);
        if (r)
            return r;
        /* The poll turn's wait (qm_db_pages.c) ends on it. */
        if (dev->poll != NULL) {
            w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            if (w->wake_fd < 0)
                return -errno;
        }
        r = pthread_create(&w->thread, NULL, qm_worker_main, w);
        if (r)
            return -r;
        dev->nstarted++;
    }
    return 0;
}

/* Revoke what runs, release a frozen worker, wake everybody, join. Safe on
 * a partial start. */
void qm_workers_stop(struct qm_dev *dev)
{
    pthread_mutex_lock(&dev->sched_lock);
    dev->stopping = true;
    pthread_cond_broadcast(&dev->sched_cond);
    (void)qm_db_poll_wake_locked(dev, UINT_MAX);
    pthread_mutex_unlock(&dev->sched_lock);
    /* A frozen worker first: revocation may wait for its copy. */
    pthread_mutex_lock(&dev->freeze.lock);
    dev->freeze.armed = QM_FREEZE_NONE;
    atomic_store(&dev->freeze.armed_fast, QM_FREEZE_NONE);
    dev->freeze.release = dev->freeze.frozen;
    pthread_cond_broadcast(&dev->freeze.cond);
    pthread_mutex_unlock(&dev->freeze.lock);
    for (unsigned f = 0; f < dev->nfn; f++) {
        struct qm_fn *fn = dev->fn[f];

        if (fn == NULL)
            continue;
        struct qm_deferred d = {0};

        qm_fn_lock(fn);
        qm_fn_revoke_jobs_locked(fn, &d, false);
        qm_fn_unlock(fn, &d);
    }
    for (unsigned i = 0; i < dev->nstarted; i++)
        pthread_join(dev->workers[i].thread, NULL);
    for (unsigned i = 0; dev->workers && i < dev->nworkers; i++) {
        if (dev->workers[i].eng)
            dev->engine->destroy(dev->workers[i].eng);
        free(dev->workers[i].cw);
        if (dev->workers[i].wake_fd >= 0)
            close(dev->workers[i].wake_fd);
        pthread_mutex_destroy(&dev->workers[i].job.gate);
        pthread_cond_destroy(&dev->workers[i].job.write_done);
    }
    free(dev->workers);
    dev->workers = NULL;
    dev->nstarted = 0;
}
