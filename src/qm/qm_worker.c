/* qm_worker: the job engines. Runnable queues wait on one FIFO ring; a worker
 * takes a queue, fetches the SQE at its head under the function lock, runs
 * the ZIP engine with no lock held, and commits under the lock again. A queue
 * is served by one worker at a time (sq.busy), so its jobs complete in order.
 * With more work on its queue a worker keeps it while no other queue waits,
 * and puts it back at the end of the ring otherwise (fair sharing without a
 * hand-off per job). */
#include <errno.h>
#include <stdlib.h>
#include <sched.h>

#include "common/common.h"
#include "qm/qm_internal.h"

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
    if (n >= dev->nworkers) {
        pthread_cond_broadcast(&dev->sched_cond);
    } else {
        for (unsigned i = 0; i < n; i++)
            pthread_cond_signal(&dev->sched_cond);
    }
    pthread_mutex_unlock(&dev->sched_lock);
}

/* One job of q. Returns true when q can fetch again right away. */
static bool qm_worker_serve(struct qm_worker *w, struct qm_queue *q)
{
    struct qm_fn *fn = q->fn;
    struct qm_deferred d = {0};
    struct qm_queue *c;
    uint32_t sgen, cgen;
    unsigned alg;
    uint16_t slot;
    int r;

    bool more;

    qm_fn_lock(fn);
    c = qm_queue_fetchable_locked(fn, q);
    if (c == NULL) {
        qm_queue_settle_locked(fn, &d, q); /* a STOP_QP may wait on it */
        qm_fn_unlock(fn, &d);
        return false;
    }
    slot = q->sq.head;
    if (iommu_dma_read(fn->dom, q->sq.base + (uint64_t)slot * ZIP_SQE_SIZE, w->sqe, ZIP_SQE_SIZE)) {
        QM_COUNT(fn, ring_faults);
        q->sq.broken = true;
        qm_post_aeqe_locked(fn, &d, q->qn, QM_AEQE_CQE_ERROR);
        qm_queue_settle_locked(fn, &d, q);
        qm_fn_unlock(fn, &d);
        return false;
    }
    q->sq.busy = true;
    fn->jobs_inflight++;
    c->cq.reserved++;
    sgen = q->sq.gen;
    cgen = c->cq.gen;
    alg = (q->sq.ctx.w13 >> 8) & 0xfu;
    atomic_store(&q->cancel, false);
    qm_fn_unlock(fn, &d);

    if (alg > ZIP_ALG_DECOMPRESS) {
        /* The queue's direction is neither compress nor decompress. */
        w->sqe[ZIP_SQE_CONSUMED] = 0;
        w->sqe[ZIP_SQE_PRODUCED] = 0;
        w->sqe[ZIP_SQE_DW3] = (w->sqe[ZIP_SQE_DW3] & ~ZIP_DW3_STATUS_MASK) | ZIP_ST_BAD_SQE;
        r = 0;
    } else {
        r = zip_engine_run(w->eng, fn->dom, w->sqe, (enum zip_alg_dir)alg, &q->cancel);
    }

    qm_fn_lock(fn);
    q->sq.busy = false;
    fn->jobs_inflight--;
    if (c->cq.gen == cgen)
        c->cq.reserved--;
    if (r == 0 && q->sq.gen == sgen && c->cq.gen == cgen && qm_fn_can_run_locked(fn)) {
        qm_job_commit_locked(fn, &d, q, c, slot, w->sqe);
    } else {
        /* Cancelled, or the queue changed under the job: it stays on the SQ
         * (head unchanged) and runs again when fetched next. */
        QM_COUNT(fn, jobs_cancelled);
        if (r != 0 && r != -ECANCELED)
            am_log(AM_LOG_ERR, QM_LOG, "fn %u q %u: engine failed: %d", fn->idx, q->qn, r);
    }
    more = qm_queue_settle_locked(fn, &d, q);
    qm_fn_wake_waiters_locked(fn);
    qm_fn_unlock(fn, &d);
    return more;
}

/* The workers stand for silicon, which never takes a core from the host: the
 * control path (MMIO, mailbox, the migration driver on its own thread) must
 * not wait behind a CPU-bound job. So a worker runs under SCHED_IDLE (see
 * qm_internal.h). Best effort: without it the model is correct, only slower
 * to react. */
static void qm_worker_lower_priority(void)
{
    struct sched_param sp = {0};
    int r = pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);

    if (r != 0)
        am_log(AM_LOG_INFO, QM_LOG, "worker left at normal priority: errno %d", r);
}

static void *qm_worker_main(void *arg)
{
    struct qm_worker *w = arg;
    struct qm_dev *dev = w->dev;

    qm_worker_lower_priority();
    pthread_mutex_lock(&dev->sched_lock);
    for (;;) {
        while (!dev->stopping && dev->ring_count == 0)
            pthread_cond_wait(&dev->sched_cond, &dev->sched_lock);
        if (dev->stopping)
            break;
        struct qm_queue *q = dev->ring[dev->ring_head];

        dev->ring_head = (dev->ring_head + 1) % dev->ring_cap;
        dev->ring_count--;
        q->queued = false;
        pthread_mutex_unlock(&dev->sched_lock);
        while (qm_worker_serve(w, q)) {
            bool others;

            pthread_mutex_lock(&dev->sched_lock);
            others = dev->ring_count > 0 || dev->stopping;
            if (others) /* no wakeup: this worker takes the ring's head next */
                (void)qm_sched_push_locked(dev, q);
            pthread_mutex_unlock(&dev->sched_lock);
            if (others)
                break;
        }
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
    for (unsigned i = 0; i < dev->nworkers; i++) {
        struct qm_worker *w = &dev->workers[i];

        w->dev = dev;
        r = zip_engine_create(&w->eng);
        if (r)
            return r;
        r = pthread_create(&w->thread, NULL, qm_worker_main, w);
        if (r)
            return -r;
        dev->nstarted++;
    }
    return 0;
}

/* Cancel what runs, wake everybody, join. Safe on a partial start. */
void qm_workers_stop(struct qm_dev *dev)
{
    pthread_mutex_lock(&dev->sched_lock);
    dev->stopping = true;
    pthread_cond_broadcast(&dev->sched_cond);
    pthread_mutex_unlock(&dev->sched_lock);
    for (unsigned f = 0; f < dev->nfn; f++) {
        struct qm_fn *fn = dev->fn[f];

        if (fn == NULL)
            continue;
        struct qm_deferred d = {0};

        qm_fn_lock(fn);
        for (unsigned i = 0; i < QM_MAX_QPS_PER_VF; i++)
            if (fn->q[i].sq.busy)
                atomic_store(&fn->q[i].cancel, true);
        qm_fn_unlock(fn, &d);
    }
    for (unsigned i = 0; i < dev->nstarted; i++)
        pthread_join(dev->workers[i].thread, NULL);
    for (unsigned i = 0; dev->workers && i < dev->nworkers; i++)
        if (dev->workers[i].eng)
            zip_engine_destroy(dev->workers[i].eng);
    free(dev->workers);
    dev->workers = NULL;
    dev->nstarted = 0;
}
