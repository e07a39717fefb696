/* iommu: DMA domains, translation with permissions, fault counting and the
 * DMA write dirty log. The contract and the design decisions are in iommu.h.
 */
#include "iommu/iommu.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "common/common.h"
#include "common/ratelimit.h"

_Static_assert(sizeof(size_t) == sizeof(uint64_t), "iommu assumes a 64-bit host");

#define IOMMU_PAGE_SHIFT 12u
#define IOMMU_PERM_ALL (IOMMU_READ | IOMMU_WRITE)

enum iommu_kind {
    IOMMU_KIND_HOST,   /* caller's memory */
    IOMMU_KIND_FD,     /* our own MAP_SHARED mmap of the caller's fd */
    IOMMU_KIND_REMOTE, /* served by ops */
};

struct iommu_mapping {
    uint64_t iova;
    uint64_t size;
    uint8_t *host; /* address of iova for HOST and FD (the mmap base for FD); NULL for REMOTE */
    unsigned perm;
    enum iommu_kind kind;
    bool sealed;                 /* FD only: the file can never shrink (translate may serve it) */
    struct iommu_remote_ops ops; /* REMOTE only */
    void *opaque;                /* REMOTE only */
};

/* One logged range: one bit per 4 KiB page, in an anonymous MAP_NORESERVE
 * mapping without huge pages, so only the bitmap pages writes touch cost
 * memory. A summary bit per block of IOMMU_DIRTY_BLOCK_WORDS bitmap words
 * (16 MiB of iova) says the block may hold a set bit: a report reads only
 * those blocks, so neither its time nor its memory grows with the size of
 * the log (reading a clean 8 GiB bitmap would commit it). Bits are set with
 * atomic ORs by concurrent DMA writers and cleared only by a report, which
 * holds the lock for writing. */
#define IOMMU_DIRTY_BLOCK_WORDS 64u
#define IOMMU_DIRTY_BLOCK_PAGES (IOMMU_DIRTY_BLOCK_WORDS * 64u)

struct iommu_dirty_range {
    uint64_t iova;
    uint64_t length;
    uint64_t *bits;
    size_t bits_bytes;
    uint64_t *summary; /* calloc'd, one bit per block */
};

struct iommu_domain {
    uint16_t rid;

    /* lock protects maps, nmaps, maps_cap, dranges, ndranges and dirty_on
     * (dirty_on is also read without it, atomically, by iommu_dirty_active).
     * Read-held by DMA (iommu_dma_read/write, begin..end); write-held by
     * map/unmap and dirty start/stop/report. Reader-preferring: see iommu.h. */
    pthread_rwlock_t lock;
    struct iommu_mapping *maps; /* sorted by iova, non-overlapping */
    uint32_t nmaps;
    uint32_t maps_cap;
    bool dirty_on;
    struct iommu_dirty_range *dranges; /* sorted by iova, non-overlapping */
    uint32_t ndranges;

    /* Atomics, no lock: the index of the last mapping found (a hint checked
     * before use, so a stale value is harmless), the number of open
     * begin/end sections (for assertions), and the stats counters. */
    uint32_t hint;
    uint32_t sections;
    struct iommu_stats stats;

    /* Fault lines are guest-triggered: at most IOMMU_FAULT_LOG_BURST per
     * IOMMU_FAULT_LOG_INTERVAL_NS per domain (the counters count them all). */
    struct am_ratelimit fault_log;
};

#define IOMMU_FAULT_LOG_BURST 10u
#define IOMMU_FAULT_LOG_INTERVAL_NS (UINT64_C(5) * 1000000000u)

static bool perm_valid(unsigned perm)
{
    return perm != 0 && (perm & ~(unsigned)IOMMU_PERM_ALL) == 0;
}

static void stat_add(uint64_t *counter, uint64_t n)
{
    __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

/* ---- the SIGBUS guard (iommu.h, Decisions: shrunk files) ------------------- */

/* One copy that touches fd-backed memory: [lo, hi) are the mapped bytes it
 * may fault on; fault_addr is set by the handler before it jumps back. */
struct bus_guard {
    sigjmp_buf env;
    uintptr_t lo, hi;
    uintptr_t fault_addr;
};

/* Process state, by necessity (a signal handler has no other way in): the
 * guard of the copy this thread is running (NULL outside one); initial-exec
 * so that the handler's access is a plain load, never an allocation. */
static __thread struct bus_guard *bus_guard_current __attribute__((tls_model("initial-exec")));
/* The handlers we chain to, one slot per (re)install; bus_guard_slot (an
 * atomic) names the live one, so the handler never reads a slot being
 * written. bus_guard_mutex protects installs: bus_guard_prev and writes of
 * bus_guard_slot. */
#define BUS_GUARD_SLOTS 8u
static struct sigaction bus_guard_prev[BUS_GUARD_SLOTS];
static unsigned bus_guard_slot;
static pthread_mutex_t bus_guard_mutex = PTHREAD_MUTEX_INITIALIZER;

/* A SIGBUS we do not own: hand it to whoever had the signal before us. */
static void bus_guard_chain(int sig, siginfo_t *si, void *uc)
{
    const struct sigaction *prev = &bus_guard_prev[__atomic_load_n(&bus_guard_slot,
                                                                    __ATOMIC_ACQUIRE)];

    if (prev->sa_flags & SA_SIGINFO) {
        prev->sa_sigaction(sig, si, uc);
        return;
    }
    if (prev->sa_handler == SIG_IGN && si->si_code <= 0)
        return; /* a sent signal the process chose to ignore */
    if (prev->sa_handler == SIG_DFL || prev->sa_handler == SIG_IGN) {
        /* A real fault cannot be ignored: restore the default action; the
         * faulting access runs again and kills us where it happened. */
        struct sigaction dfl = { .sa_handler = SIG_DFL };

        sigemptyset(&dfl.sa_mask);
        sigaction(sig, &dfl, NULL);
        if (si->si_code <= 0)
            raise(sig);
        return;
    }
    prev->sa_handler(sig);
}

static void bus_guard_handler(int sig, siginfo_t *si, void *uc)
{
    struct bus_guard *g = bus_guard_current;
    uintptr_t a = (uintptr_t)si->si_addr;

    /* si_code > 0: raised by the kernel for an access, so si_addr is real. */
    if (g != NULL && si->si_code > 0 && a >= g->lo && a < g->hi) {
        g->fault_addr = a;
        siglongjmp(g->env, 1);
    }
    bus_guard_chain(sig, si, uc);
}

static bool bus_guard_is_ours(const struct sigaction *sa)
{
    return (sa->sa_flags & SA_SIGINFO) && sa->sa_sigaction == bus_guard_handler;
}

/* Makes sure our handler is the process's SIGBUS handler: 0, -ENOTSUP when
 * it cannot be (ASan with handle_sigbus=2 accepts the call and keeps its
 * own), or sigaction's errno. Idempotent: when ours is in place this only
 * reads. When another one is (nothing was installed yet, or some component,
 * cmocka for one, replaced ours), that one becomes the handler we chain to. */
static int bus_guard_ready(void)
{
    struct sigaction sa = { .sa_sigaction = bus_guard_handler };
    struct sigaction now;
    unsigned next;
    int rc = 0;

    /* SA_NODEFER and an empty mask: the handler runs with the thread's own
     * mask, so jumping out of it needs no mask restore. SA_ONSTACK keeps
     * whatever alternate stack the previous handler (ASan's) relied on. */
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    pthread_mutex_lock(&bus_guard_mutex);
    if (sigaction(SIGBUS, NULL, &now) != 0) {
        rc = -errno;
        goto out_unlock;
    }
    if (bus_guard_is_ours(&now))
        goto out_unlock;
    /* Publish the handler to chain to before ours can run. */
    next = (__atomic_load_n(&bus_guard_slot, __ATOMIC_RELAXED) + 1) % BUS_GUARD_SLOTS;
    bus_guard_prev[next] = now;
    __atomic_store_n(&bus_guard_slot, next, __ATOMIC_RELEASE);
    if (sigaction(SIGBUS, &sa, NULL) != 0)
        rc = -errno;
    else if (sigaction(SIGBUS, NULL, &now) != 0 || !bus_guard_is_ours(&now))
        rc = -ENOTSUP;
out_unlock:
    pthread_mutex_unlock(&bus_guard_mutex);
    return rc;
}

/* memcpy(dst, src, n) where [map, map+n) is the fd-backed side. Returns 0, or
 * -EFAULT with *fault_off = the offset into map of the byte that faulted.
 * noinline and with no locals live across sigsetjmp but g, so nothing the
 * jump could clobber is used after it. */
__attribute__((noinline)) static int bus_guard_copy(void *dst, const void *src, size_t n,
                                                    const void *map, uint64_t *fault_off)
{
    struct bus_guard g = { .lo = (uintptr_t)map, .hi = (uintptr_t)map + n };
    struct bus_guard *outer = bus_guard_current;

    if (sigsetjmp(g.env, 0) != 0) {
        sigset_t bus;

        bus_guard_current = outer;
        /* The mask is already as it was (SA_NODEFER); make sure anyway, on
         * this slow path only, so a second fault cannot meet a blocked SIGBUS. */
        sigemptyset(&bus);
        sigaddset(&bus, SIGBUS);
        pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
        /* Written by the handler behind the compiler's back. */
        *fault_off = *(volatile uintptr_t *)&g.fault_addr - g.lo;
        return -EFAULT;
    }
    bus_guard_current = &g;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    memcpy(dst, src, n);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    bus_guard_current = outer;
    return 0;
}

/* ---- creation and teardown ------------------------------------------------ */

int iommu_domain_create(uint16_t requester_id, struct iommu_domain **out)
{
    struct iommu_domain *d = calloc(1, sizeof(*d));
    pthread_rwlockattr_t attr;

    if (d == NULL)
        return -ENOMEM;
    d->rid = requester_id;
    if (pthread_rwlockattr_init(&attr) != 0)
        goto err_free;
    /* Readers must be able to re-enter while a writer waits (iommu.h). */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_READER_NP);
    if (pthread_rwlock_init(&d->lock, &attr) != 0) {
        pthread_rwlockattr_destroy(&attr);
        goto err_free;
    }
    pthread_rwlockattr_destroy(&attr);
    if (am_ratelimit_init(&d->fault_log, IOMMU_FAULT_LOG_BURST, IOMMU_FAULT_LOG_INTERVAL_NS, NULL,
                          NULL) != 0)
        goto err_lock;
    *out = d;
    return 0;

err_lock:
    pthread_rwlock_destroy(&d->lock);
err_free:
    free(d);
    return -ENOMEM;
}

static void mapping_release(struct iommu_mapping *m)
{
    if (m->kind == IOMMU_KIND_FD)
        munmap(m->host, m->size);
}

static void dirty_ranges_free(struct iommu_dirty_range *r, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        munmap(r[i].bits, r[i].bits_bytes);
        free(r[i].summary);
    }
    free(r);
}

/* Caller holds d->lock for writing. */
static void unmap_all_locked(struct iommu_domain *d)
{
    for (uint32_t i = 0; i < d->nmaps; i++)
        mapping_release(&d->maps[i]);
    d->nmaps = 0;
}

void iommu_domain_destroy(struct iommu_domain *d)
{
    if (d == NULL)
        return;
    assert(__atomic_load_n(&d->sections, __ATOMIC_RELAXED) == 0);
    unmap_all_locked(d);
    free(d->maps);
    dirty_ranges_free(d->dranges, d->ndranges);
    am_ratelimit_destroy(&d->fault_log);
    pthread_rwlock_destroy(&d->lock);
    free(d);
}

uint16_t iommu_domain_rid(const struct iommu_domain *d)
{
    return d->rid;
}

/* ---- the mapping table ---------------------------------------------------- */

/* Index of the first mapping whose iova is > iova (0..nmaps).
 * Caller holds d->lock. */
static uint32_t mapping_upper_bound_locked(const struct iommu_domain *d, uint64_t iova)
{
    uint32_t lo = 0, hi = d->nmaps;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (d->maps[mid].iova <= iova)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool mapping_contains(const struct iommu_mapping *m, uint64_t iova)
{
    return iova >= m->iova && iova - m->iova < m->size;
}

/* Index of the mapping that contains iova, or -1. Caller holds d->lock. */
static int64_t mapping_find_locked(struct iommu_domain *d, uint64_t iova)
{
    uint32_t h = __atomic_load_n(&d->hint, __ATOMIC_RELAXED);
    uint32_t i;

    if (h < d->nmaps && mapping_contains(&d->maps[h], iova))
        return h;
    i = mapping_upper_bound_locked(d, iova);
    if (i == 0 || !mapping_contains(&d->maps[i - 1], iova))
        return -1;
    __atomic_store_n(&d->hint, i - 1, __ATOMIC_RELAXED);
    return i - 1;
}

/* The checks every map call shares. */
static int map_args_check(uint64_t iova, uint64_t size, unsigned perm)
{
    uint64_t end;

    if (!perm_valid(perm) || size == 0 || iova % IOMMU_PAGE_SIZE != 0 ||
        size % IOMMU_PAGE_SIZE != 0)
        return -EINVAL;
    if (am_add_overflows_u64(iova, size, &end))
        return -EOVERFLOW;
    return 0;
}

/* Inserts m keeping the table sorted: -EEXIST on overlap, -ENOSPC when full,
 * -ENOMEM. Caller holds d->lock for writing. */
static int mapping_insert_locked(struct iommu_domain *d, const struct iommu_mapping *m)
{
    uint32_t i = mapping_upper_bound_locked(d, m->iova);

    if (i > 0 && d->maps[i - 1].iova + d->maps[i - 1].size > m->iova)
        return -EEXIST;
    if (i < d->nmaps && d->maps[i].iova < m->iova + m->size)
        return -EEXIST;
    if (d->nmaps >= IOMMU_MAX_MAPPINGS)
        return -ENOSPC;
    if (d->nmaps == d->maps_cap) {
        uint32_t cap = d->maps_cap ? AM_MIN(d->maps_cap * 2, IOMMU_MAX_MAPPINGS) : 16;
        struct iommu_mapping *maps = realloc(d->maps, cap * sizeof(*maps));
        if (maps == NULL)
            return -ENOMEM;
        d->maps = maps;
        d->maps_cap = cap;
    }
    memmove(&d->maps[i + 1], &d->maps[i], (d->nmaps - i) * sizeof(*d->maps));
    d->maps[i] = *m;
    d->nmaps++;
    return 0;
}

static int mapping_add(struct iommu_domain *d, const struct iommu_mapping *m)
{
    int rc;

    pthread_rwlock_wrlock(&d->lock);
    rc = mapping_insert_locked(d, m);
    pthread_rwlock_unlock(&d->lock);
    return rc;
}

int iommu_map_host(struct iommu_domain *d, uint64_t iova, uint64_t size, void *host, unsigned perm)
{
    struct iommu_mapping m = {
        .iova = iova, .size = size, .host = host, .perm = perm, .kind = IOMMU_KIND_HOST,
    };
    uintptr_t host_end;
    int rc = map_args_check(iova, size, perm);

    if (rc != 0)
        return rc;
    if (host == NULL || __builtin_add_overflow((uintptr_t)host, size, &host_end))
        return -EINVAL;
    return mapping_add(d, &m);
}

/* True when the file can never shrink: F_SEAL_SHRINK was set already, or we
 * could add it. Fails quietly for anything but a sealable memfd opened for
 * writing (F_GET_SEALS gives EINVAL for other files, F_ADD_SEALS EPERM). */
static bool fd_seal_shrink(int fd)
{
    int seals = fcntl(fd, F_GET_SEALS);

    if (seals < 0)
        return false;
    if (seals & F_SEAL_SHRINK)
        return true;
    if (seals & F_SEAL_SEAL)
        return false;
    return fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0;
}

int iommu_map_fd(struct iommu_domain *d, uint64_t iova, uint64_t size, int fd, uint64_t offset,
                 unsigned perm)
{
    struct iommu_mapping m = { .iova = iova, .size = size, .perm = perm, .kind = IOMMU_KIND_FD };
    int prot = 0;
    uint64_t off_end;
    struct stat st;
    void *p;
    int rc = map_args_check(iova, size, perm);

    if (rc != 0)
        return rc;
    if (offset % IOMMU_PAGE_SIZE != 0)
        return -EINVAL;
    if (am_add_overflows_u64(offset, size, &off_end) || off_end > (uint64_t)INT64_MAX)
        return -EOVERFLOW;
    /* Seal before the size check, so the size checked is the size kept. */
    m.sealed = fd_seal_shrink(fd);
    if (!m.sealed) {
        /* Copies are guarded either way; an unsealed file needs the guard. */
        rc = bus_guard_ready();
        if (rc != 0)
            return rc;
    }
    if (fstat(fd, &st) != 0)
        return -errno;
    if (S_ISREG(st.st_mode) && off_end > (uint64_t)st.st_size)
        return -ENXIO;
    if (perm & IOMMU_READ)
        prot |= PROT_READ;
    if (perm & IOMMU_WRITE)
        prot |= PROT_WRITE;
    /* mmap outside the lock: it can be slow and needs no table access. */
    p = mmap(NULL, size, prot, MAP_SHARED, fd, (off_t)offset);
    if (p == MAP_FAILED)
        return -errno;
    m.host = p;
    rc = mapping_add(d, &m);
    if (rc != 0)
        munmap(p, size);
    return rc;
}

int iommu_map_remote(struct iommu_domain *d, uint64_t iova, uint64_t size, unsigned perm,
                     const struct iommu_remote_ops *ops, void *opaque)
{
    struct iommu_mapping m = {
        .iova = iova, .size = size, .perm = perm, .kind = IOMMU_KIND_REMOTE, .opaque = opaque,
    };
    int rc = map_args_check(iova, size, perm);

    if (rc != 0)
        return rc;
    if (ops == NULL || ((perm & IOMMU_READ) && ops->read == NULL) ||
        ((perm & IOMMU_WRITE) && ops->write == NULL))
        return -EINVAL;
    m.ops = *ops;
    return mapping_add(d, &m);
}

/* The one unmap: removes the mappings lying wholly in [iova, last] (last
 * inclusive, so the range may end at 2^64). exact (iommu_unmap) asks for
 * exactly one mapping equal to the range and says -ENOENT otherwise; a range
 * (iommu_unmap_range) is -EINVAL when a mapping straddles an edge and removes
 * nothing then, and removes 0 bytes when it holds no mapping. */
static int unmap_span(struct iommu_domain *d, uint64_t iova, uint64_t last, bool exact,
                      uint64_t *unmapped_bytes)
{
    const int straddle = exact ? -ENOENT : -EINVAL;
    struct iommu_mapping *victims;
    uint64_t bytes = 0;
    uint32_t lo, hi, n;

    pthread_rwlock_wrlock(&d->lock);
    /* lo: the first mapping that starts at or after iova. */
    lo = mapping_upper_bound_locked(d, iova);
    if (lo > 0 && mapping_contains(&d->maps[lo - 1], iova)) {
        if (d->maps[lo - 1].iova != iova)
            goto err_straddle;
        lo--;
    }
    /* Mappings never reach 2^64, so m->iova + m->size - 1 cannot wrap. */
    for (hi = lo; hi < d->nmaps && d->maps[hi].iova <= last; hi++) {
        if (d->maps[hi].iova + d->maps[hi].size - 1 > last)
            goto err_straddle;
        bytes += d->maps[hi].size;
    }
    n = hi - lo;
    if (exact && (n != 1 || d->maps[lo].iova != iova || bytes - 1 != last - iova))
        goto err_straddle;
    if (n == 0)
        goto out_unlock;
    /* Release outside the lock (a large munmap is slow and DMA waits for
     * the lock); without memory for the list, release under it. */
    victims = malloc(n * sizeof(*victims));
    if (victims != NULL)
        memcpy(victims, &d->maps[lo], n * sizeof(*victims));
    else
        for (uint32_t i = lo; i < hi; i++)
            mapping_release(&d->maps[i]);
    memmove(&d->maps[lo], &d->maps[hi], (d->nmaps - hi) * sizeof(*d->maps));
    d->nmaps -= n;
    pthread_rwlock_unlock(&d->lock);
    /* No reader can reach them any more. */
    if (victims != NULL) {
        for (uint32_t i = 0; i < n; i++)
            mapping_release(&victims[i]);
        free(victims);
    }
    if (unmapped_bytes != NULL)
        *unmapped_bytes = bytes;
    return 0;

out_unlock:
    pthread_rwlock_unlock(&d->lock);
    if (unmapped_bytes != NULL)
        *unmapped_bytes = 0;
    return 0;
err_straddle:
    pthread_rwlock_unlock(&d->lock);
    return straddle;
}

int iommu_unmap(struct iommu_domain *d, uint64_t iova, uint64_t size)
{
    uint64_t last;

    if (size == 0 || am_add_overflows_u64(iova, size - 1, &last))
        return -ENOENT;
    return unmap_span(d, iova, last, true, NULL);
}

int iommu_unmap_range(struct iommu_domain *d, uint64_t iova, uint64_t size,
                      uint64_t *unmapped_bytes)
{
    uint64_t last;

    if (unmapped_bytes != NULL)
        *unmapped_bytes = 0;
    if (size == 0 || iova % IOMMU_PAGE_SIZE != 0 || size % IOMMU_PAGE_SIZE != 0)
        return -EINVAL;
    /* The end may be 2^64 exactly: only the last byte must be representable. */
    if (am_add_overflows_u64(iova, size - 1, &last))
        return -EOVERFLOW;
    return unmap_span(d, iova, last, false, unmapped_bytes);
}

void iommu_unmap_all(struct iommu_domain *d)
{
    pthread_rwlock_wrlock(&d->lock);
    unmap_all_locked(d);
    pthread_rwlock_unlock(&d->lock);
}

unsigned iommu_mapping_count(struct iommu_domain *d)
{
    unsigned n;

    pthread_rwlock_rdlock(&d->lock);
    n = d->nmaps;
    pthread_rwlock_unlock(&d->lock);
    return n;
}

/* ---- the dirty log (DMA side) --------------------------------------------- */

/* Index of the first logged range that ends after iova. Caller holds d->lock. */
static uint32_t dirty_range_first_locked(const struct iommu_domain *d, uint64_t iova)
{
    uint32_t lo = 0, hi = d->ndranges;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const struct iommu_dirty_range *r = &d->dranges[mid];
        if (r->iova + r->length <= iova)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Marks the 4 KiB pages of [iova, iova+len) that lie in logged ranges.
 * iova+len does not wrap. Caller holds d->lock (read suffices: bits are
 * set atomically). */
static void dirty_mark_locked(struct iommu_domain *d, uint64_t iova, uint64_t len)
{
    uint64_t end = iova + len;

    if (!d->dirty_on || len == 0)
        return;
    for (uint32_t i = dirty_range_first_locked(d, iova); i < d->ndranges; i++) {
        const struct iommu_dirty_range *r = &d->dranges[i];
        uint64_t lo, hi, first, last;

        if (r->iova >= end)
            break;
        lo = AM_MAX(iova, r->iova);
        hi = AM_MIN(end, r->iova + r->length);
        first = (lo - r->iova) >> IOMMU_PAGE_SHIFT;
        last = (hi - 1 - r->iova) >> IOMMU_PAGE_SHIFT;
        am_bitmap_set_range(r->bits, first, last - first + 1);
        /* Test first: the summary line is shared by every writer. */
        for (uint64_t b = first / IOMMU_DIRTY_BLOCK_PAGES; b <= last / IOMMU_DIRTY_BLOCK_PAGES; b++) {
            if (!am_bitmap_test(r->summary, b))
                am_bitmap_set(r->summary, b);
        }
    }
}

/* ---- DMA ------------------------------------------------------------------- */

static void fault_record(struct iommu_domain *d, uint64_t iova, unsigned perm, bool perm_fault)
{
    if (perm_fault)
        stat_add(&d->stats.perm_faults, 1);
    else if (perm & IOMMU_WRITE)
        stat_add(&d->stats.write_faults, 1);
    else
        stat_add(&d->stats.read_faults, 1);
    __atomic_store_n(&d->stats.last_fault_iova, iova, __ATOMIC_RELAXED);
    am_log_limited(&d->fault_log, AM_LOG_GUEST, "iommu", "rid %04x: %s %s fault at iova 0x%" PRIx64, d->rid,
           (perm & IOMMU_WRITE) ? "write" : "read", perm_fault ? "permission" : "translation",
           iova);
}

/* A copy hit fd-backed pages that are gone (the client shrank its file). */
static void bus_fault_record(struct iommu_domain *d, uint64_t iova, bool write)
{
    stat_add(&d->stats.bus_faults, 1);
    __atomic_store_n(&d->stats.last_fault_iova, iova, __ATOMIC_RELAXED);
    am_log_limited(&d->fault_log, AM_LOG_GUEST, "iommu", "rid %04x: %s bus fault at iova 0x%" PRIx64
           " (the backing file shrank)", d->rid, write ? "write" : "read", iova);
}

/* Checks that [iova, iova+len) (len > 0, no wrap) lies wholly in adjacent
 * mappings that all allow perm. Returns the index of the mapping holding
 * iova, or -EFAULT after counting the fault at its first offending byte.
 * Caller holds d->lock. */
static int64_t access_check_locked(struct iommu_domain *d, uint64_t iova, uint64_t len,
                                   unsigned perm)
{
    uint64_t end = iova + len, pos = iova;
    int64_t first = mapping_find_locked(d, iova);
    uint32_t i;

    if (first < 0) {
        fault_record(d, iova, perm, false);
        return -EFAULT;
    }
    for (i = (uint32_t)first;; i++) {
        const struct iommu_mapping *m = &d->maps[i];
        uint64_t m_end = m->iova + m->size;

        if ((m->perm & perm) != perm) {
            fault_record(d, pos, perm, true);
            return -EFAULT;
        }
        if (end <= m_end)
            return first;
        pos = m_end;
        if (i + 1 >= d->nmaps || d->maps[i + 1].iova != pos) {
            fault_record(d, pos, perm, false);
            return -EFAULT;
        }
    }
}

/* Copies len bytes starting in mapping idx, already checked by
 * access_check_locked. Marks written bytes dirty after they land (before a
 * report could clear them, the data is in place). Caller holds d->lock. */
static int dma_copy_locked(struct iommu_domain *d, uint32_t idx, uint64_t iova, uint8_t *buf,
                           uint64_t len, bool write)
{
    uint64_t start = iova;
    int rc = 0;

    while (len > 0) {
        const struct iommu_mapping *m = &d->maps[idx++];
        uint64_t off = iova - m->iova;
        uint64_t chunk = AM_MIN(len, m->size - off);

        if (m->kind == IOMMU_KIND_REMOTE) {
            rc = write ? m->ops.write(m->opaque, iova, buf, chunk)
                       : m->ops.read(m->opaque, iova, buf, chunk);
            if (rc != 0) {
                /* Part of a failed write may have landed: log it too. */
                iova += chunk;
                rc = rc < 0 ? rc : -EIO;
                break;
            }
        } else if (m->kind == IOMMU_KIND_FD) {
            /* Even a sealed file can fail a page (tmpfs full, memory
             * error): the guard costs a sigsetjmp without a system call. */
            uint64_t fault_off;

            rc = write ? bus_guard_copy(m->host + off, buf, chunk, m->host + off, &fault_off)
                       : bus_guard_copy(buf, m->host + off, chunk, m->host + off, &fault_off);
            if (rc != 0) {
                bus_fault_record(d, iova + fault_off, write);
                iova += chunk;
                break;
            }
        } else if (write) {
            memcpy(m->host + off, buf, chunk);
        } else {
            memcpy(buf, m->host + off, chunk);
        }
        iova += chunk;
        buf += chunk;
        len -= chunk;
    }
    if (write)
        dirty_mark_locked(d, start, iova - start);
    return rc;
}

static int dma_access(struct iommu_domain *d, uint64_t iova, uint8_t *buf, uint64_t len,
                      bool write)
{
    uint64_t end;
    int64_t idx;
    int rc;

    if (len == 0)
        return 0;
    if (buf == NULL || am_add_overflows_u64(iova, len, &end))
        return -EINVAL;
    pthread_rwlock_rdlock(&d->lock);
    idx = access_check_locked(d, iova, len, write ? IOMMU_WRITE : IOMMU_READ);
    rc = idx < 0 ? (int)idx : dma_copy_locked(d, (uint32_t)idx, iova, buf, len, write);
    pthread_rwlock_unlock(&d->lock);
    if (rc == 0)
        stat_add(write ? &d->stats.bytes_written : &d->stats.bytes_read, len);
    return rc;
}

int iommu_dma_read(struct iommu_domain *d, uint64_t iova, void *buf, uint64_t len)
{
    return dma_access(d, iova, buf, len, false);
}

int iommu_dma_write(struct iommu_domain *d, uint64_t iova, const void *buf, uint64_t len)
{
    /* dma_copy_locked only reads buf when write is true. */
    return dma_access(d, iova, (uint8_t *)(uintptr_t)buf, len, true);
}

void iommu_dma_begin(struct iommu_domain *d)
{
    pthread_rwlock_rdlock(&d->lock);
    __atomic_fetch_add(&d->sections, 1, __ATOMIC_RELAXED);
}

void iommu_dma_end(struct iommu_domain *d)
{
    uint32_t was = __atomic_fetch_sub(&d->sections, 1, __ATOMIC_RELAXED);

    assert(was > 0);
    (void)was;
    pthread_rwlock_unlock(&d->lock);
}

int iommu_translate(struct iommu_domain *d, uint64_t iova, uint64_t len, unsigned perm, void **host)
{
    const struct iommu_mapping *m;
    uint64_t end;
    int64_t idx;

    /* Only meaningful inside begin/end: the pointer lives until end. */
    assert(__atomic_load_n(&d->sections, __ATOMIC_RELAXED) > 0);
    if (len == 0 || !perm_valid(perm) || am_add_overflows_u64(iova, len, &end))
        return -EINVAL;
    idx = mapping_find_locked(d, iova);
    if (idx < 0) {
        fault_record(d, iova, perm, false);
        return -EFAULT;
    }
    m = &d->maps[idx];
    if (end - m->iova > m->size) {
        /* Spans mappings: a fault if any byte is, else not ours to serve. */
        idx = access_check_locked(d, iova, len, perm);
        return idx < 0 ? (int)idx : -EREMOTE;
    }
    if ((m->perm & perm) != perm) {
        fault_record(d, iova, perm, true);
        return -EFAULT;
    }
    /* An unsealed file may shrink while the caller holds the pointer, and
     * the caller's accesses cannot be guarded: make it copy instead. */
    if (m->kind == IOMMU_KIND_REMOTE || (m->kind == IOMMU_KIND_FD && !m->sealed))
        return -EREMOTE;
    if (perm & IOMMU_WRITE)
        dirty_mark_locked(d, iova, len);
    *host = m->host + (iova - m->iova);
    return 0;
}

/* ---- the dirty log (control side) ----------------------------------------- */

static int range_cmp(const void *a, const void *b)
{
    const struct iommu_dirty_range *x = a, *y = b;

    return x->iova < y->iova ? -1 : x->iova > y->iova;
}

/* Checks ranges per the VFIO uAPI rules and copies them, sorted, into *out. */
static int dirty_ranges_from_args(uint64_t page_size, const struct iommu_range *ranges,
                                  uint32_t nranges, struct iommu_dirty_range **out)
{
    struct iommu_dirty_range *r;
    uint64_t end;

    if (ranges == NULL)
        return -EINVAL;
    for (uint32_t i = 0; i < nranges; i++) {
        if (ranges[i].length == 0 || ranges[i].iova % page_size != 0 ||
            ranges[i].length % page_size != 0)
            return -EINVAL;
        if (am_add_overflows_u64(ranges[i].iova, ranges[i].length, &end))
            return -EOVERFLOW;
    }
    r = calloc(nranges, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < nranges; i++) {
        r[i].iova = ranges[i].iova;
        r[i].length = ranges[i].length;
    }
    qsort(r, nranges, sizeof(*r), range_cmp);
    for (uint32_t i = 1; i < nranges; i++) {
        if (r[i].iova < r[i - 1].iova + r[i - 1].length) {
            free(r);
            return -EINVAL;
        }
    }
    *out = r;
    return 0;
}

/* The mapped ranges, adjacent mappings merged. Caller holds d->lock. */
static int dirty_ranges_from_maps_locked(const struct iommu_domain *d,
                                         struct iommu_dirty_range **out, uint32_t *n_out)
{
    struct iommu_dirty_range *r = calloc(AM_MAX(d->nmaps, 1u), sizeof(*r));
    uint32_t n = 0;

    if (r == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < d->nmaps; i++) {
        const struct iommu_mapping *m = &d->maps[i];

        if (n > 0 && r[n - 1].iova + r[n - 1].length == m->iova) {
            r[n - 1].length += m->size;
            continue;
        }
        r[n].iova = m->iova;
        r[n].length = m->size;
        n++;
    }
    *out = r;
    *n_out = n;
    return 0;
}

/* -E2BIG when the ranges log more than IOMMU_DIRTY_MAX_BYTES in total. */
static int dirty_ranges_total_check(const struct iommu_dirty_range *r, uint32_t n)
{
    uint64_t total = 0;

    for (uint32_t i = 0; i < n; i++) {
        if (am_add_overflows_u64(total, r[i].length, &total) || total > IOMMU_DIRTY_MAX_BYTES)
            return -E2BIG;
    }
    return 0;
}

/* Gives each range its bitmap and summary: 0 or -ENOMEM (then nothing
 * stays allocated). */
static int dirty_ranges_alloc(struct iommu_dirty_range *r, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        uint64_t words = am_bitmap_words(r[i].length >> IOMMU_PAGE_SHIFT);
        void *p;

        r[i].bits_bytes = words * sizeof(uint64_t);
        p = mmap(NULL, r[i].bits_bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        r[i].summary = calloc(am_bitmap_words(AM_ALIGN_UP(words, IOMMU_DIRTY_BLOCK_WORDS) /
                                              IOMMU_DIRTY_BLOCK_WORDS),
                              sizeof(uint64_t));
        if (p == MAP_FAILED || r[i].summary == NULL) {
            if (p != MAP_FAILED)
                munmap(p, r[i].bits_bytes);
            free(r[i].summary);
            for (uint32_t j = 0; j < i; j++) {
                munmap(r[j].bits, r[j].bits_bytes);
                free(r[j].summary);
            }
            return -ENOMEM;
        }
        /* A huge page would commit 2 MiB of bitmap for one 4 KiB write. */
        madvise(p, r[i].bits_bytes, MADV_NOHUGEPAGE);
        r[i].bits = p;
    }
    return 0;
}

int iommu_dirty_start(struct iommu_domain *d, uint64_t page_size, const struct iommu_range *ranges,
                      uint32_t nranges)
{
    struct iommu_dirty_range *r = NULL;
    uint32_t n = nranges;
    int rc;

    if (!AM_IS_POW2(page_size) || page_size < IOMMU_PAGE_SIZE)
        return -EINVAL;
    if (nranges > IOMMU_DIRTY_MAX_RANGES)
        return -E2BIG;
    if (nranges > 0) {
        rc = dirty_ranges_from_args(page_size, ranges, nranges, &r);
        if (rc != 0)
            return rc;
    }
    pthread_rwlock_wrlock(&d->lock);
    if (nranges == 0) {
        rc = dirty_ranges_from_maps_locked(d, &r, &n);
        if (rc != 0)
            goto out_unlock;
    }
    rc = dirty_ranges_total_check(r, n);
    if (rc == 0 && d->dirty_on)
        rc = -EBUSY;
    if (rc == 0)
        rc = dirty_ranges_alloc(r, n);
    if (rc != 0) {
        free(r);
        goto out_unlock;
    }
    d->dranges = r;
    d->ndranges = n;
    __atomic_store_n(&d->dirty_on, true, __ATOMIC_RELAXED);
out_unlock:
    pthread_rwlock_unlock(&d->lock);
    return rc;
}

int iommu_dirty_stop(struct iommu_domain *d)
{
    struct iommu_dirty_range *r;
    uint32_t n;

    pthread_rwlock_wrlock(&d->lock);
    if (!d->dirty_on) {
        pthread_rwlock_unlock(&d->lock);
        return -EINVAL;
    }
    r = d->dranges;
    n = d->ndranges;
    d->dranges = NULL;
    d->ndranges = 0;
    __atomic_store_n(&d->dirty_on, false, __ATOMIC_RELAXED);
    pthread_rwlock_unlock(&d->lock);
    dirty_ranges_free(r, n);
    return 0;
}

bool iommu_dirty_active(struct iommu_domain *d)
{
    return __atomic_load_n(&d->dirty_on, __ATOMIC_RELAXED);
}

/* Moves the dirty 4 KiB pages [first, last_excl) of word w of r into the
 * report bitmap (report starts at iova, 2^shift bytes a bit) and clears them.
 * Caller holds d->lock for writing. */
static void dirty_word_report_locked(const struct iommu_dirty_range *r, uint64_t w,
                                     uint64_t first, uint64_t last_excl, uint64_t iova,
                                     unsigned shift, uint64_t *bitmap)
{
    uint64_t lo = AM_MAX(first, w * 64), hi = AM_MIN(last_excl, w * 64 + 64);
    uint64_t mask = (hi - lo == 64) ? UINT64_MAX : ((UINT64_C(1) << (hi - lo)) - 1) << (lo % 64);
    uint64_t dirty;

    if ((__atomic_load_n(&r->bits[w], __ATOMIC_RELAXED) & mask) == 0)
        return;
    dirty = __atomic_fetch_and(&r->bits[w], ~mask, __ATOMIC_RELAXED) & mask;
    while (dirty != 0) {
        uint64_t page = w * 64 + (uint64_t)__builtin_ctzll(dirty);
        uint64_t bit = (r->iova + (page << IOMMU_PAGE_SHIFT) - iova) >> shift;
        /* First 4 KiB page after this report page: skip to it. */
        uint64_t next = (iova + ((bit + 1) << shift) - r->iova) >> IOMMU_PAGE_SHIFT;

        bitmap[bit / 64] |= UINT64_C(1) << (bit % 64);
        if (next - w * 64 >= 64)
            break;
        dirty &= ~((UINT64_C(1) << (next - w * 64)) - 1);
    }
}

/* Reports and clears the pages [first, last_excl) of r, visiting only the
 * blocks the summary marks, and drops summary bits of blocks left clean.
 * Caller holds d->lock for writing, so no bit is set meanwhile. */
static void dirty_range_report_locked(const struct iommu_dirty_range *r, uint64_t first,
                                      uint64_t last_excl, uint64_t iova, unsigned shift,
                                      uint64_t *bitmap)
{
    uint64_t w_first = first / 64, w_last = (last_excl - 1) / 64;
    uint64_t nwords = r->bits_bytes / sizeof(uint64_t);

    for (uint64_t b = w_first / IOMMU_DIRTY_BLOCK_WORDS; b <= w_last / IOMMU_DIRTY_BLOCK_WORDS;
         b++) {
        uint64_t b_lo = b * IOMMU_DIRTY_BLOCK_WORDS;
        uint64_t b_hi = AM_MIN(b_lo + IOMMU_DIRTY_BLOCK_WORDS, nwords);
        bool clean = true;

        if (!am_bitmap_test(r->summary, b))
            continue;
        for (uint64_t w = AM_MAX(w_first, b_lo); w <= AM_MIN(w_last, b_hi - 1); w++)
            dirty_word_report_locked(r, w, first, last_excl, iova, shift, bitmap);
        for (uint64_t w = b_lo; w < b_hi && clean; w++)
            clean = __atomic_load_n(&r->bits[w], __ATOMIC_RELAXED) == 0;
        if (clean)
            __atomic_fetch_and(&r->summary[b / 64], ~(UINT64_C(1) << (b % 64)), __ATOMIC_RELAXED);
    }
}

int iommu_dirty_report(struct iommu_domain *d, uint64_t iova, uint64_t length, uint64_t page_size,
                       uint64_t *bitmap)
{
    unsigned shift;
    uint64_t end;

    if (!AM_IS_POW2(page_size) || page_size < IOMMU_PAGE_SIZE || length == 0 ||
        iova % page_size != 0 || length % page_size != 0 || bitmap == NULL)
        return -EINVAL;
    if (am_add_overflows_u64(iova, length, &end))
        return -EOVERFLOW;
    shift = (unsigned)__builtin_ctzll(page_size);
    /* For writing: a pointer from translate(IOMMU_WRITE) may be written until
     * its section ends, so clear nothing while one is open (iommu.h). */
    pthread_rwlock_wrlock(&d->lock);
    if (!d->dirty_on) {
        pthread_rwlock_unlock(&d->lock);
        return -EINVAL;
    }
    memset(bitmap, 0, am_bitmap_words(length >> shift) * sizeof(uint64_t));
    for (uint32_t i = dirty_range_first_locked(d, iova); i < d->ndranges; i++) {
        const struct iommu_dirty_range *r = &d->dranges[i];
        uint64_t lo, hi;

        if (r->iova >= end)
            break;
        lo = AM_MAX(iova, r->iova);
        hi = AM_MIN(end, r->iova + r->length);
        dirty_range_report_locked(r, (lo - r->iova) >> IOMMU_PAGE_SHIFT,
                                  (hi - r->iova) >> IOMMU_PAGE_SHIFT, iova, shift, bitmap);
    }
    pthread_rwlock_unlock(&d->lock);
    return 0;
}

void iommu_stats_get(struct iommu_domain *d, struct iommu_stats *out)
{
    out->read_faults = __atomic_load_n(&d->stats.read_faults, __ATOMIC_RELAXED);
    out->write_faults = __atomic_load_n(&d->stats.write_faults, __ATOMIC_RELAXED);
    out->perm_faults = __atomic_load_n(&d->stats.perm_faults, __ATOMIC_RELAXED);
    out->bus_faults = __atomic_load_n(&d->stats.bus_faults, __ATOMIC_RELAXED);
    out->last_fault_iova = __atomic_load_n(&d->stats.last_fault_iova, __ATOMIC_RELAXED);
    out->bytes_read = __atomic_load_n(&d->stats.bytes_read, __ATOMIC_RELAXED);
    out->bytes_written = __atomic_load_n(&d->stats.bytes_written, __ATOMIC_RELAXED);
}
