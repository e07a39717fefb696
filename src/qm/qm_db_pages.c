/* Doorbell isolation: each VF's BAR4 doorbell pages, and how the device
 * notices doorbells a guest stored straight into a mapped page.
 *
 * Real silicon sees every posted write; a page mapped into a guest is plain
 * shared memory, so the device must look. Its idle job workers look: a
 * worker with nothing to run takes the poll turn (one worker at a time) and
 * sweeps the doorbell words of the VFs whose pages have been handed out
 * (qm_db_bar_fd since the last renew): no one else can store into them, and
 * their trapped doorbells are taken where they arrive. A doorbell it finds
 * puts its queue on the ring, and the same worker runs the job: no second
 * thread is woken, and while jobs flow only the guest and one worker need a
 * CPU. With no VF handed out the workers just wait for work.
 * Phases of the poll turn (docs/doorbells.md gives what each costs):
 * - spin: for spin_ns after a completion (the guest's next doorbell
 *   usually follows within microseconds), sweeps with a pause between them;
 *   spin_ns adapts to the guests' gaps (qm_db_spin_adapt), up to 20 us.
 *   The worker that completes a job takes the turn over from a worker that
 *   naps or sleeps, so the spin is always the completer's own;
 * - nap: until QM_DB_NAP_PHASE_NS after the last event (a doorbell taken or
 *   a job completed), sweeps with a wait of QM_DB_NAP_NS between them
 *   (new work on the ring or a kick ends it at once).
 *   Waiting, not sched_yield(): a thread that yields stays runnable and
 *   waits behind every CPU hog for its turn (milliseconds on a loaded
 *   host). No nap while every holder has its kick eventfd (a kick then
 *   wakes the owner directly, so the pages say ON only during the spin),
 *   unless a sweep found a function's lock busy (its pages may still say
 *   ON);
 * - sleep: then waits from QM_DB_SLEEP_MIN_NS doubling up to
 *   QM_DB_SLEEP_MAX_NS between sweeps.
 * The owner waits in ppoll() on its own wake eventfd and on an epoll set of
 * the handed-out pages' kick eventfds (qm_db_bar_kick_fd): a client that
 * was given its pages' kick fd kicks by writing it, so a guest's kick wakes
 * the owner straight away, with no server thread in between (the trapped
 * kick, a REGION_WRITE to the poll-state word, still works). A kick carries
 * no value: the woken owner sweeps, and the sweep drains each kick fd under
 * its function's lock before it looks at the words.
 * A worker that takes a job while holding the turn gives it up and wakes
 * one idle worker, if any, to take it: another VF's doorbell does not wait
 * for this job. A worker that completes a job first takes its own
 * function's doorbell words (it holds the lock already), so a guest that
 * keeps its queue full is served without any sweep.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "qm/qm_internal.h"

#define QM_DB_NAP_NS 10000ull         /* nap between sweeps ... */
#define QM_DB_NAP_PHASE_NS 200000ull  /* ... for this long after any event */
#define QM_DB_SLEEP_MIN_NS 20000ull   /* first sleep once idle */
#define QM_DB_SLEEP_MAX_NS 2000000ull /* idle: ~500 sweeps a second */
#define QM_DB_SLEEP_KICKED_NS 100000000ull /* every holder kicks: 10 sweeps a second */

/* The poll turn. dev->sched_lock protects owner, owner_waits, drain_kicks
 * and sleep_ns; the rest is atomic or set up once. */
struct qm_db_poll {
    struct qm_worker *owner;          /* the worker whose turn it is, or NULL */
    bool owner_waits;                 /* ... and it waits between two sweeps */
    bool drain_kicks;                 /* a wait ended: the next sweep drains kick fds */
    uint64_t sleep_ns;                /* the sleep phase's next wait */
    /* The kick eventfds of the VFs whose pages are handed out (data.u32:
     * the function number). Added by qm_db_bar_fd and removed by renew,
     * both under the function's lock, so no descriptor is closed while in
     * the set. Waited on (as one fd) by the owner's ppoll. */
    int epfd;
    atomic_uint_fast64_t last_db_ns;  /* a doorbell taken */
    atomic_uint_fast64_t last_done_ns; /* a job completed */
    atomic_uint_fast64_t spin_ns;      /* the spin after a completion (qm_db_spin_adapt) */
    atomic_bool ring_awaited;          /* a job completed, no SQ/CQ doorbell since */
    atomic_uint_fast64_t ndone;        /* jobs completed: a turn that saw it change
                                        * since its sweep began sweeps again */
    /* handed[f]: VF f's pages were handed out since its last renew (no
     * lock: a stale value costs one sweep of idle pages, or one sweep's
     * delay for a VMM that has only just been given its fd). */
    atomic_bool *handed;
    atomic_uint nhanded;
    /* kicks[f]: VF f's holder rings trapped when its pages say the device
     * is not polling (qm_db_bar_holder_kicks), so its pages need no sweep
     * on a timer. Reset by renew. */
    atomic_bool *kicks;
    /* kick_fd_out[f]: VF f's holder was given its kick eventfd
     * (qm_db_bar_kick_fd), so its kicks wake the turn's owner with no
     * server thread. While every holder has it the turn does not nap: the
     * pages say ON only while it spins, and the owner sleeps after that (a
     * kick wakes it), instead of waking every 10 us for 200 us, CPU a
     * loaded host's guests need. Reset by renew. */
    atomic_bool *kick_fd_out;
};

/* A short wait in a spin loop that tells the CPU so (an SMT sibling or a
 * hypervisor gets the cycles). */
static inline void qm_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

static _Atomic uint64_t *qm_db_word(const struct qm_fn *fn, unsigned qn)
{
    return (_Atomic uint64_t *)(fn->db_pages + (uint64_t)qn * QM_DB_PAGE_SIZE + QM_DB_SQCQ);
}

static unsigned qm_db_queues(const struct qm_fn *fn)
{
    return (unsigned)(fn->db_size / QM_DB_PAGE_SIZE) < fn->dev->cfg.qps_per_vf
               ? (unsigned)(fn->db_size / QM_DB_PAGE_SIZE)
               : fn->dev->cfg.qps_per_vf;
}

/* One doorbell found in queue qn's page. The page names the queue; the
 * doorbell must agree, and only SQ/CQ doorbells live here. */
static void qm_db_page_execute(struct qm_access *a, unsigned qn, uint64_t db)
{
    unsigned cmd = (db >> 12) & 0xfu;

    QM_COUNT(a->fn, doorbells_paged);
    if ((db & 0xfffu) != qn || (cmd != QM_DB_CMD_SQ && cmd != QM_DB_CMD_CQ)) {
        QM_COUNT(a->fn, doorbells_ignored);
        QM_GUEST_LOG(a->fn, "doorbell 0x%016llx in queue %u's page ignored: not an SQ/CQ "
                     "doorbell of that queue", (unsigned long long)db, qn);
        return;
    }
    qm_db_execute(a, db, false);
}

static bool qm_db_take_one_locked(struct qm_access *a, unsigned qn)
{
    _Atomic uint64_t *w = qm_db_word(a->fn, qn);
    uint64_t db;

    if (atomic_load_explicit(w, memory_order_relaxed) == QM_DB_IDLE)
        return false;
    /* acquire: the SQE the guest wrote before its doorbell is visible. */
    uint64_t raw = atomic_exchange_explicit(w, QM_DB_IDLE, memory_order_acquire);
    uint8_t b[8];

    if (raw == QM_DB_IDLE)
        return false;
    memcpy(b, &raw, 8); /* the guest's little-endian bytes */
    db = am_le64(b);
    qm_db_page_execute(a, qn, db);
    return true;
}

void qm_db_pages_take_locked(struct qm_access *a)
{
    struct qm_fn *fn = a->fn;

    qm_fn_assert_locked(fn);
    if (fn->db_pages == NULL)
        return;
    for (unsigned qn = 0; qn < qm_db_queues(fn); qn++)
        qm_db_take_one_locked(a, qn);
}

void qm_db_pages_reset_locked(struct qm_fn *fn)
{
    qm_fn_assert_locked(fn);
    if (fn->db_pages == NULL)
        return;
    /* Every word, not only doorbells: the whole BAR reads as after reset. */
    for (uint64_t off = 0; off < fn->db_size; off += 8)
        atomic_store_explicit((_Atomic uint64_t *)(fn->db_pages + off), QM_DB_IDLE,
                              memory_order_relaxed);
    fn->db_poll_state = QM_DB_IDLE;
}

void qm_db_poll_note_done(struct qm_dev *dev)
{
    struct qm_db_poll *p = dev->poll;

    /* No pages handed out: no guest can store a doorbell, nothing to poll
     * for (an in-process device pays one load per job). */
    if (p != NULL && atomic_load_explicit(&p->nhanded, memory_order_relaxed) != 0) {
        atomic_store_explicit(&p->last_done_ns, am_now_ns(), memory_order_relaxed);
        atomic_fetch_add_explicit(&p->ndone, 1, memory_order_relaxed);
        atomic_store_explicit(&p->ring_awaited, true, memory_order_relaxed);
    }
}

void qm_db_poll_note_ring(struct qm_dev *dev)
{
    struct qm_db_poll *p = dev->poll;

    /* The first ring since a completion, by whatever path (a page, a
     * trapped write): how long its guest took is what the spin adapts to. */
    if (p != NULL && atomic_load_explicit(&p->nhanded, memory_order_relaxed) != 0 &&
        atomic_load_explicit(&p->ring_awaited, memory_order_relaxed) &&
        atomic_exchange_explicit(&p->ring_awaited, false, memory_order_relaxed)) {
        uint64_t now = am_now_ns();
        uint64_t done = atomic_load_explicit(&p->last_done_ns, memory_order_relaxed);
        uint64_t spin = atomic_load_explicit(&p->spin_ns, memory_order_relaxed);

        if (now >= done)
            atomic_store_explicit(&p->spin_ns, qm_db_spin_adapt(spin, now - done),
                                  memory_order_relaxed);
    }
}

/* The poll state every queue's page of fn shows its guest (qm_hw.h,
 * QM_DB_POLL_STATE), if it does not already. */
static void qm_db_poll_state_publish_locked(struct qm_fn *fn, uint64_t state)
{
    if (fn->db_poll_state == state)
        return;
    for (unsigned qn = 0; qn < qm_db_queues(fn); qn++)
        atomic_store_explicit((_Atomic uint64_t *)(fn->db_pages + (uint64_t)qn * QM_DB_PAGE_SIZE +
                                                   QM_DB_POLL_STATE),
                              state, memory_order_relaxed);
    fn->db_poll_state = state;
}

/* One pass over every VF, each under its function lock taken with trylock:
 * a function whose lock is busy (a mailbox command, a pause) is skipped and
 * counts as "something pending", so the next sweep comes soon; no other VF
 * waits for it. The lock also keeps the pages from being renewed under us.
 * Each VF's pages show `state` first; the full fence between that store and
 * the doorbell loads pairs with the guest's between its doorbell store and
 * its poll-state load: a guest either sees QM_DB_POLL_OFF and kicks, or its
 * doorbell is found by this sweep. */
static bool qm_db_sweep(struct qm_dev *dev, uint64_t state, bool drain, bool *busy)
{
    bool found = false;

    for (unsigned f = 1; f < dev->nfn; f++) {
        struct qm_fn *fn = dev->fn[f];

        if (!atomic_load_explicit(&dev->poll->handed[f], memory_order_relaxed))
            continue;
        if (pthread_mutex_trylock(&fn->lock) != 0) {
            found = true;
            *busy = true;
            continue;
        }
        struct qm_deferred d = {0};
        struct qm_access a = {.dev = dev, .fn = fn, .port = QM_PORT_FN, .d = &d};

        if (fn->db_pages != NULL) {
            uint64_t kicks;

            /* Before the words: a kick drained here was written after its
             * doorbell was stored, so the loads below see that doorbell. A
             * kick not drained (no wait since the last sweep) ends the
             * next wait at once, and that sweep drains it. */
            if (drain)
                (void)!read(fn->db_kick_fd, &kicks, sizeof(kicks));
            qm_db_poll_state_publish_locked(fn, state);
            atomic_thread_fence(memory_order_seq_cst);
            for (unsigned qn = 0; qn < qm_db_queues(fn); qn++)
                found |= qm_db_take_one_locked(&a, qn);
        }
        qm_fn_unlock(fn, &d);
    }
    return found;
}

/* No handed-out pages need a sweep on a timer: each holder kicks. */
static bool qm_db_every_holder_kicks(const struct qm_dev *dev)
{
    for (unsigned f = 1; f < dev->nfn; f++)
        if (atomic_load_explicit(&dev->poll->handed[f], memory_order_relaxed) &&
            !atomic_load_explicit(&dev->poll->kicks[f], memory_order_relaxed))
            return false;
    return true;
}

/* Every handed-out holder was given its kick eventfd (kick_fd_out). */
static bool qm_db_every_holder_has_kick_fd(const struct qm_dev *dev)
{
    for (unsigned f = 1; f < dev->nfn; f++)
        if (atomic_load_explicit(&dev->poll->handed[f], memory_order_relaxed) &&
            !atomic_load_explicit(&dev->poll->kick_fd_out[f], memory_order_relaxed))
            return false;
    return true;
}

/* The guest's next doorbell is due: a job completed within spin_ns and no
 * doorbell was taken since. */
static bool qm_db_spin_due(const struct qm_db_poll *p, uint64_t now)
{
    uint64_t db = atomic_load_explicit(&p->last_db_ns, memory_order_relaxed);
    uint64_t done = atomic_load_explicit(&p->last_done_ns, memory_order_relaxed);

    return done >= db && now - done < atomic_load_explicit(&p->spin_ns, memory_order_relaxed);
}

/* Within QM_DB_NAP_PHASE_NS of the last event (a doorbell taken, a job
 * completed): the turn naps between sweeps, it does not sleep. */
static bool qm_db_nap_due(const struct qm_db_poll *p, uint64_t now)
{
    uint64_t db = atomic_load_explicit(&p->last_db_ns, memory_order_relaxed);
    uint64_t done = atomic_load_explicit(&p->last_done_ns, memory_order_relaxed);

    return now - AM_MAX(db, done) < QM_DB_NAP_PHASE_NS;
}

/* The turn sweeps within microseconds now: it spins, or naps between two
 * sweeps (QM_DB_POLL_ON is true to the guest in both). */
static bool qm_db_polls_now(const struct qm_db_poll *p, uint64_t now, bool naps)
{
    return qm_db_spin_due(p, now) || (naps && qm_db_nap_due(p, now));
}

/* After a sweep: how long the turn's owner waits before the next one (0:
 * spin on). naps: the nap phase applies (not every holder has its kick
 * eventfd, or a function's lock was busy, so its pages may still say ON).
 * Under sched_lock (sleep_ns). */
static uint64_t qm_db_poll_wait_ns(struct qm_db_poll *p, bool found, bool naps)
{
    uint64_t now = am_now_ns();

    if (found) {
        atomic_store_explicit(&p->last_db_ns, now, memory_order_relaxed);
        p->sleep_ns = QM_DB_SLEEP_MIN_NS; /* doorbells come again: short sleeps */
    }
    if (qm_db_spin_due(p, now)) {
        p->sleep_ns = QM_DB_SLEEP_MIN_NS;
        return 0;
    }
    if (qm_db_nap_due(p, now)) {
        p->sleep_ns = QM_DB_SLEEP_MIN_NS;
        if (naps)
            return QM_DB_NAP_NS;
    }
    uint64_t ns = p->sleep_ns;

    if (p->sleep_ns < QM_DB_SLEEP_MAX_NS)
        p->sleep_ns *= 2;
    return ns;
}

void qm_db_poll_state_on_locked(struct qm_fn *fn)
{
    struct qm_db_poll *p = fn->dev->poll;

    qm_fn_assert_locked(fn);
    if (p != NULL && fn->db_pages != NULL &&
        atomic_load_explicit(&p->handed[fn->idx], memory_order_relaxed))
        qm_db_poll_state_publish_locked(fn, QM_DB_POLL_ON);
}

/* The owner's wait of ns between two sweeps: ppoll on its wake eventfd and
 * on the kick eventfds (the epoll set, readable while one is). Entered and
 * left under sched_lock. Not on sched_cond: a condition variable cannot
 * wait for a descriptor. */
static void qm_db_poll_wait_locked(struct qm_dev *dev, struct qm_worker *w, uint64_t ns)
{
    struct qm_db_poll *p = dev->poll;
    struct pollfd pf[2] = {{.fd = p->epfd, .events = POLLIN}, {.fd = w->wake_fd, .events = POLLIN}};
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u)};
    uint64_t v;

    p->owner_waits = true;
    w->in_poll = true;
    w->woken = false;
    pthread_mutex_unlock(&dev->sched_lock);
    (void)ppoll(pf, 2, &ts, NULL);
    pthread_mutex_lock(&dev->sched_lock);
    /* Every write to wake_fd was made while in_poll was set, for this wait. */
    (void)!read(w->wake_fd, &v, sizeof(v));
    w->in_poll = false;
    w->woken = false;
    if (p->owner == w) {
        p->owner_waits = false;
        p->drain_kicks = true; /* a kick may have ended it */
    }
}

/* Ends w's ppoll, if it waits there and nobody did already. */
static bool qm_db_poll_wake_one_locked(struct qm_worker *w)
{
    uint64_t one = 1;

    if (w == NULL || !w->in_poll || w->woken)
        return false;
    w->woken = true;
    (void)!write(w->wake_fd, &one, sizeof(one));
    return true;
}

bool qm_db_poll_turn_locked(struct qm_dev *dev, struct qm_worker *w, bool back_from_job)
{
    struct qm_db_poll *p = dev->poll;

    if (p == NULL || atomic_load_explicit(&p->nhanded, memory_order_relaxed) == 0)
        return false;
    /* A waiting owner hands the turn to a worker back from a job (whose
     * guest rings next); it is left in its wait (waking it would cost a
     * context switch per job), and on waking finds the turn gone and waits
     * for work like any idle worker. Until then it is one of the workers
     * qm_db_poll_wake_locked wakes for new work. */
    if (p->owner != NULL && p->owner != w && !(back_from_job && p->owner_waits))
        return false;
    if (p->owner != w)
        p->drain_kicks = true; /* the old owner's last wait may have been kicked */
    p->owner = w;
    p->owner_waits = false;
    /* The pages say ON only while this turn spins or naps (QM_DB_POLL_STATE):
     * a doorbell stored then is seen within a nap, sooner than a kick's
     * round trip through the server would bring it. */
    bool naps = !qm_db_every_holder_has_kick_fd(dev), busy = false;
    bool polls = qm_db_polls_now(p, am_now_ns(), naps);
    uint64_t done0 = atomic_load_explicit(&p->ndone, memory_order_relaxed);
    bool drain = p->drain_kicks;

    p->drain_kicks = false;
    pthread_mutex_unlock(&dev->sched_lock);
    bool found = qm_db_sweep(dev, polls ? QM_DB_POLL_ON : QM_DB_POLL_OFF, drain, &busy);

    pthread_mutex_lock(&dev->sched_lock);
    if (p->owner != w)
        return true;
    uint64_t ns = qm_db_poll_wait_ns(p, found, naps || busy);

    if (ns == 0) {
        pthread_mutex_unlock(&dev->sched_lock);
        for (unsigned k = 0; k < 16; k++)
            qm_cpu_relax();
        pthread_mutex_lock(&dev->sched_lock);
        return true;
    }
    if (polls && ns > QM_DB_NAP_NS) {
        /* The naps end: the guests are told first, and a doorbell stored
         * before they could see it is found by one more sweep. */
        pthread_mutex_unlock(&dev->sched_lock);
        found = qm_db_sweep(dev, QM_DB_POLL_OFF, false, &busy);
        pthread_mutex_lock(&dev->sched_lock);
        if (p->owner != w)
            return true;
        if (found) {
            (void)qm_db_poll_wait_ns(p, true, naps || busy);
            return true;
        }
    }
    /* A job completed meanwhile: its commit told its guest the device
     * polls (qm_db_poll_state_on_locked), so no wait before another sweep;
     * its worker saw this turn busy, or it would have taken it. */
    if (atomic_load_explicit(&p->ndone, memory_order_relaxed) != done0)
        return true;
    if (dev->ring_count == 0 && !dev->stopping) {
        /* In the sleep phase with every holder kicking, the timer is only
         * the fallback for one that broke its promise. Not in a nap: the
         * pages say ON then, and a function whose lock a sweep could not
         * take may still say ON (the sweep counts it as found: a nap). */
        if (ns > QM_DB_NAP_NS && qm_db_every_holder_kicks(dev))
            ns = QM_DB_SLEEP_KICKED_NS;
        /* Work put on the ring (a trapped doorbell, a trapped kick, a
         * resume: qm_sched_wake), pages handed out or a stop end the wait
         * through w->wake_fd; a kick eventfd ends it by itself. */
        qm_db_poll_wait_locked(dev, w, ns);
    }
    return true;
}

bool qm_db_poll_wake_owner_locked(struct qm_dev *dev)
{
    struct qm_db_poll *p = dev->poll;

    return p != NULL && p->owner_waits && qm_db_poll_wake_one_locked(p->owner);
}

unsigned qm_db_poll_wake_locked(struct qm_dev *dev, unsigned n)
{
    unsigned woken = 0;

    if (dev->poll == NULL || n == 0)
        return 0;
    if (qm_db_poll_wake_owner_locked(dev))
        woken++;
    for (unsigned i = 0; i < dev->nstarted && woken < n; i++)
        if (qm_db_poll_wake_one_locked(&dev->workers[i]))
            woken++;
    return woken;
}

void qm_db_poll_leave_locked(struct qm_dev *dev, const struct qm_worker *w, unsigned idle_workers)
{
    struct qm_db_poll *p = dev->poll;

    if (p == NULL || p->owner != w)
        return;
    p->owner = NULL;
    p->owner_waits = false;
    /* A worker whose turn was taken over while it waited still sits in
     * ppoll, where the condition does not reach it: it is the one woken
     * when no worker waits on the condition. */
    if (idle_workers > 0)
        pthread_cond_signal(&dev->sched_cond);
    else
        (void)qm_db_poll_wake_locked(dev, 1);
}

/* A sealed memfd, all idle: the VMM that maps it can write doorbells but can
 * neither shrink it under the device's mapping (SIGBUS) nor grow it. */
static int qm_db_pages_new(uint64_t size, uint8_t **pages, int *fdp)
{
    int fd = memfd_create("accmig-db-pages", MFD_CLOEXEC | MFD_ALLOW_SEALING);

    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)size) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        int e = -errno;

        close(fd);
        return e;
    }
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

    if (m == MAP_FAILED) {
        int e = -errno;

        close(fd);
        return e;
    }
    for (uint64_t off = 0; off < size; off += 8)
        atomic_store_explicit((_Atomic uint64_t *)((uint8_t *)m + off), QM_DB_IDLE,
                              memory_order_relaxed);
    *pages = m;
    *fdp = fd;
    return 0;
}

static int qm_db_kick_fd_new(void)
{
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

    return fd < 0 ? -errno : fd;
}

static int qm_db_pages_map(struct qm_fn *fn, uint64_t size)
{
    int kick_fd = qm_db_kick_fd_new(), r;

    if (kick_fd < 0)
        return kick_fd;
    r = qm_db_pages_new(size, &fn->db_pages, &fn->db_fd);
    if (r) {
        close(kick_fd);
        return r;
    }
    fn->db_kick_fd = kick_fd;
    fn->db_size = size;
    fn->db_poll_state = QM_DB_IDLE; /* as the fresh words read */
    fn->regs[QM_R_QUE_ISO_CFG] = QM_QUE_ISO_EN;
    return 0;
}

int qm_db_bar_renew(struct qm_dev *dev, unsigned fnum)
{
    uint8_t *pages, *old;
    int fd, old_fd, kick_fd, old_kick_fd, r;

    if (dev == NULL || fnum >= dev->nfn)
        return -EINVAL;
    struct qm_fn *fn = dev->fn[fnum];

    if (fn->db_pages == NULL)
        return -ENODEV;
    r = qm_db_pages_new(fn->db_size, &pages, &fd);
    if (r)
        return r;
    kick_fd = qm_db_kick_fd_new();
    if (kick_fd < 0) {
        munmap(pages, fn->db_size);
        close(fd);
        return kick_fd;
    }
    /* Doorbells left in the old pages belonged to the previous owner, who
     * is gone: they are dropped with the pages. So are its kicks: its copy
     * of the old kick fd reaches an eventfd nobody waits on. */
    qm_fn_lock(fn);
    old = fn->db_pages;
    old_fd = fn->db_fd;
    old_kick_fd = fn->db_kick_fd;
    fn->db_pages = pages;
    fn->db_fd = fd;
    fn->db_kick_fd = kick_fd;
    fn->db_poll_state = QM_DB_IDLE;
    /* Nobody holds the new pages yet: no sweep until they are handed out.
     * Out of the epoll set before it is closed: the client still holds the
     * file, so closing ours would not remove it. */
    if (dev->poll != NULL &&
        atomic_exchange_explicit(&dev->poll->handed[fnum], false, memory_order_relaxed)) {
        atomic_fetch_sub_explicit(&dev->poll->nhanded, 1, memory_order_relaxed);
        (void)epoll_ctl(dev->poll->epfd, EPOLL_CTL_DEL, old_kick_fd, NULL);
    }
    if (dev->poll != NULL) {
        atomic_store_explicit(&dev->poll->kicks[fnum], false, memory_order_relaxed);
        atomic_store_explicit(&dev->poll->kick_fd_out[fnum], false, memory_order_relaxed);
    }
    pthread_mutex_unlock(&fn->lock);
    munmap(old, fn->db_size);
    close(old_fd);
    close(old_kick_fd);
    return 0;
}

int qm_db_pages_create(struct qm_dev *dev)
{
    uint64_t size = QM_DB_PAGE_SIZE;
    struct qm_db_poll *p;
    int r;

    for (unsigned f = 0; f < dev->nfn; f++) {
        dev->fn[f]->db_fd = -1;
        dev->fn[f]->db_kick_fd = -1;
    }
    if (!dev->cfg.db_isolation)
        return 0;
    while (size < (uint64_t)dev->cfg.qps_per_vf * QM_DB_PAGE_SIZE)
        size *= 2; /* a BAR is a power of two */
    for (unsigned f = 1; f < dev->nfn; f++) {
        r = qm_db_pages_map(dev->fn[f], size);
        if (r)
            return r;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    p->handed = calloc(dev->nfn, sizeof(*p->handed));
    p->kicks = calloc(dev->nfn, sizeof(*p->kicks));
    p->kick_fd_out = calloc(dev->nfn, sizeof(*p->kick_fd_out));
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->handed == NULL || p->kicks == NULL || p->kick_fd_out == NULL || p->epfd < 0) {
        r = p->epfd < 0 ? -errno : -ENOMEM;
        if (p->epfd >= 0)
            close(p->epfd);
        free(p->handed);
        free(p->kicks);
        free(p->kick_fd_out);
        free(p);
        return r;
    }
    p->sleep_ns = QM_DB_SLEEP_MIN_NS;
    atomic_init(&p->spin_ns, QM_DB_SPIN_MAX_NS);
    dev->poll = p;
    return 0;
}

/* After the workers stopped: nobody sweeps any more. */
void qm_db_pages_destroy(struct qm_dev *dev)
{
    if (dev->poll != NULL) {
        close(dev->poll->epfd);
        free(dev->poll->handed);
        free(dev->poll->kicks);
        free(dev->poll->kick_fd_out);
        free(dev->poll);
        dev->poll = NULL;
    }
    for (unsigned f = 0; f < dev->nfn; f++) {
        struct qm_fn *fn = dev->fn[f];

        if (fn == NULL || fn->db_pages == NULL)
            continue;
        munmap(fn->db_pages, fn->db_size);
        close(fn->db_fd);
        if (fn->db_kick_fd >= 0)
            close(fn->db_kick_fd);
        fn->db_pages = NULL;
        fn->db_fd = -1;
        fn->db_kick_fd = -1;
    }
}

/* ---- the BAR as a driver sees it --------------------------------------- */

uint64_t qm_db_bar_size(const struct qm_dev *dev, unsigned fn)
{
    return dev != NULL && fn < dev->nfn ? dev->fn[fn]->db_size : 0;
}

int qm_db_bar_fd(struct qm_dev *dev, unsigned fn)
{
    struct qm_db_poll *p;

    if (dev == NULL || fn >= dev->nfn || dev->fn[fn]->db_pages == NULL)
        return -ENODEV;
    /* Whoever gets the fd can map the pages: from now on they are swept
     * and their kick fd is waited on; an idle worker waiting for work takes
     * the poll turn, and an owner that waits sweeps once more (its wait
     * was set for the holders before this one). */
    p = dev->poll;
    if (p != NULL) {
        struct qm_fn *f = dev->fn[fn];

        qm_fn_lock(f);
        if (!atomic_exchange(&p->handed[fn], true)) {
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = fn};

            if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, f->db_kick_fd, &ev) != 0)
                am_log(AM_LOG_ERR, QM_LOG, "fn %u: kick eventfd not waited on (errno %d): "
                       "its kicks wait for a sweep", fn, errno);
            pthread_mutex_lock(&dev->sched_lock);
            atomic_fetch_add(&p->nhanded, 1);
            pthread_cond_broadcast(&dev->sched_cond);
            (void)qm_db_poll_wake_owner_locked(dev);
            pthread_mutex_unlock(&dev->sched_lock);
        }
        pthread_mutex_unlock(&f->lock);
    }
    return dev->fn[fn]->db_fd;
}

int qm_db_bar_kick_fd(struct qm_dev *dev, unsigned fn)
{
    int fd;

    if (dev == NULL || fn >= dev->nfn || dev->fn[fn]->db_pages == NULL || dev->poll == NULL)
        return -ENODEV;
    qm_fn_lock(dev->fn[fn]);
    fd = atomic_load_explicit(&dev->poll->handed[fn], memory_order_relaxed)
             ? dev->fn[fn]->db_kick_fd : -EPERM;
    if (fd >= 0)
        atomic_store_explicit(&dev->poll->kick_fd_out[fn], true, memory_order_relaxed);
    pthread_mutex_unlock(&dev->fn[fn]->lock);
    return fd;
}

int qm_db_bar_holder_kicks(struct qm_dev *dev, unsigned fn)
{
    if (dev == NULL || fn >= dev->nfn || dev->fn[fn]->db_pages == NULL || dev->poll == NULL)
        return -ENODEV;
    atomic_store_explicit(&dev->poll->kicks[fn], true, memory_order_relaxed);
    return 0;
}

static int qm_db_bar_check(struct qm_dev *dev, unsigned fnum, uint64_t off, const void *data,
                           unsigned size, bool write)
{
    if (dev == NULL || fnum >= dev->nfn || data == NULL)
        return -EINVAL;
    struct qm_fn *fn = dev->fn[fnum];

    if (fn->db_pages == NULL)
        return -ENODEV;
    if ((size != 1 && size != 2 && size != 4 && size != 8) || off % size != 0 ||
        !am_range_ok(off, size, fn->db_size)) {
        QM_COUNT(fn, access_errors);
        QM_GUEST_LOG(fn, "refused BAR4 %s of %u bytes at 0x%llx", write ? "write" : "read", size,
                     (unsigned long long)off);
        return -EINVAL;
    }
    return 0;
}

int qm_db_bar_read(struct qm_dev *dev, unsigned fnum, uint64_t off, void *data, unsigned size)
{
    int r = qm_db_bar_check(dev, fnum, off, data, size, false);

    if (r) {
        if (r == -EINVAL && data != NULL && size <= 8)
            memset(data, 0xff, size);
        return r;
    }
    /* The 8-byte word holding the bytes, read at once (it may change). */
    struct qm_fn *fn = dev->fn[fnum];
    uint8_t b[8];

    qm_fn_lock(fn);
    uint64_t w = atomic_load_explicit((_Atomic uint64_t *)(fn->db_pages + (off & ~7ull)),
                                      memory_order_relaxed);

    pthread_mutex_unlock(&fn->lock);
    memcpy(b, &w, 8);
    memcpy(data, b + (off & 7), size);
    return 0;
}

int qm_db_bar_write(struct qm_dev *dev, unsigned fnum, uint64_t off, const void *data,
                    unsigned size)
{
    int r = qm_db_bar_check(dev, fnum, off, data, size, true);

    if (r)
        return r;
    struct qm_fn *fn = dev->fn[fnum];
    bool is_db = size == 8 && off % QM_DB_PAGE_SIZE == QM_DB_SQCQ &&
                 off / QM_DB_PAGE_SIZE < qm_db_queues(fn);
    bool is_kick = size == 8 && off % QM_DB_PAGE_SIZE == QM_DB_POLL_STATE &&
                   off / QM_DB_PAGE_SIZE < qm_db_queues(fn);
    struct qm_deferred d = {0};
    struct qm_access a = {.dev = dev, .fn = fn, .port = QM_PORT_FN, .d = &d};

    qm_fn_lock(fn);
    if (is_kick) {
        /* The queue's stored doorbell, if any, now (qm_hw.h). */
        QM_COUNT(fn, doorbell_kicks);
        qm_db_take_one_locked(&a, (unsigned)(off / QM_DB_PAGE_SIZE));
    } else if (is_db) {
        /* Taken at once, after any doorbell already stored in the page. */
        qm_db_take_one_locked(&a, (unsigned)(off / QM_DB_PAGE_SIZE));
        qm_db_page_execute(&a, (unsigned)(off / QM_DB_PAGE_SIZE), am_le64(data));
    } else {
        /* Any other bytes land in the page as a mapped store would. */
        _Atomic uint64_t *w = (_Atomic uint64_t *)(fn->db_pages + (off & ~7ull));
        uint64_t old = atomic_load_explicit(w, memory_order_relaxed), v;
        uint8_t b[8];

        memcpy(b, &old, 8);
        memcpy(b + (off & 7), data, size);
        memcpy(&v, b, 8);
        atomic_store_explicit(w, v, memory_order_release);
    }
    qm_fn_unlock(fn, &d);
    return 0;
}
