/* bench_load: CPU-bound threads that make the host a loaded one for the
 * length of a benchmark run (`--load N`, bench.h).
 *
 * Each thread runs a xorshift64* generator and folds its outputs into its
 * own counter, in its own cache line, with a relaxed atomic store every
 * round: work the compiler cannot drop, and no cache line written by two
 * threads, so the measured code sees what any CPU hog would do to it (it
 * loses CPU time and shares caches) and nothing more. The stop flag is read
 * by every thread but written once, at the end, so it stays in every core's
 * cache as a shared line for the whole run.
 *
 * The threads are SCHED_OTHER, not pinned, and keep the process's nice
 * value (0 for an ordinary run): the scheduler treats them exactly as it
 * treats the device's workers.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "common/common.h"

#define BL_LINE 64u
#define BL_ROUND 4096u /* generator steps between two looks at the stop flag */

/* One spinning thread. Aligned and padded to a cache line each, so that no
 * two threads' counters share one. */
struct bl_thread {
    alignas(BL_LINE) _Atomic uint64_t sum; /* written only by this thread */
    pthread_t tid;
    struct bench_load *load;
    bool started;
};

struct bench_load {
    alignas(BL_LINE) atomic_bool stop; /* written once by bench_load_destroy */
    unsigned n;
    struct bl_thread *t; /* n of them */
};

_Static_assert(sizeof(struct bl_thread) % BL_LINE == 0, "struct bl_thread fills whole lines");

static void *bl_spin(void *arg)
{
    struct bl_thread *t = arg;
    uint64_t x = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)t, acc = 0;

    while (!atomic_load_explicit(&t->load->stop, memory_order_relaxed)) {
        for (unsigned i = 0; i < BL_ROUND; i++) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            acc += x * 0x2545f4914f6cdd1dull;
        }
        atomic_store_explicit(&t->sum, acc, memory_order_relaxed);
    }
    return NULL;
}

int bench_load_parse(const char *bench, const char *arg, unsigned *n)
{
    uint64_t v;

    if (!arg || am_parse_u64(arg, BENCH_LOAD_MAX, &v)) {
        fprintf(stderr,
                "accmig bench %s: bad value '%s' for --load: a number of CPU-bound threads, "
                "0 to %u\n", bench, arg ? arg : "", BENCH_LOAD_MAX);
        return -EINVAL;
    }
    *n = (unsigned)v;
    return 0;
}

/* The work of bench_load_create, without the message. */
static int bl_create(unsigned n, struct bench_load **out)
{
    struct bench_load *l;
    pthread_attr_t attr;
    struct sched_param sp = {.sched_priority = 0};
    int ret;

    *out = NULL;
    if (n > BENCH_LOAD_MAX)
        return -EINVAL;
    l = aligned_alloc(BL_LINE, AM_ALIGN_UP(sizeof(*l), BL_LINE));
    if (!l)
        return -ENOMEM;
    memset(l, 0, sizeof(*l));
    atomic_init(&l->stop, false);
    l->n = n;
    if (n) {
        l->t = aligned_alloc(BL_LINE, (size_t)n * sizeof(*l->t));
        if (!l->t) {
            free(l);
            return -ENOMEM;
        }
        memset(l->t, 0, (size_t)n * sizeof(*l->t));
    }
    /* SCHED_OTHER whatever the creating thread runs at; the nice value is
     * the process's. */
    ret = -pthread_attr_init(&attr);
    if (!ret)
        ret = -pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
    if (!ret)
        ret = -pthread_attr_setschedpolicy(&attr, SCHED_OTHER);
    if (!ret)
        ret = -pthread_attr_setschedparam(&attr, &sp);
    for (unsigned i = 0; i < n && !ret; i++) {
        l->t[i].load = l;
        atomic_init(&l->t[i].sum, 0);
        ret = -pthread_create(&l->t[i].tid, &attr, bl_spin, &l->t[i]);
        l->t[i].started = ret == 0;
    }
    pthread_attr_destroy(&attr);
    if (ret) {
        bench_load_destroy(l);
        return ret;
    }
    *out = l;
    return 0;
}

int bench_load_create(const char *bench, unsigned n, struct bench_load **out)
{
    int ret = bl_create(n, out);

    if (ret)
        fprintf(stderr, "accmig bench %s: cannot start %u load threads: %s\n", bench, n,
                strerror(-ret));
    return ret;
}

void bench_load_destroy(struct bench_load *l)
{
    if (!l)
        return;
    atomic_store_explicit(&l->stop, true, memory_order_relaxed);
    for (unsigned i = 0; i < l->n; i++)
        if (l->t[i].started)
            pthread_join(l->t[i].tid, NULL);
    free(l->t);
    free(l);
}

unsigned bench_load_threads(const struct bench_load *l)
{
    return l ? l->n : 0;
}

/* Process CPU time less the load threads' own: what the measured code
 * (both sides of a pair run in this process) spent. */
uint64_t bench_cpu_ns(const struct bench_load *l)
{
    struct timespec ts;
    uint64_t own, load = 0;

    /* The load threads first, then the process: the load's CPU between the
     * two reads is counted as ours (never the other way round), an error
     * of a few microseconds per load thread. */
    for (unsigned i = 0; l && i < l->n; i++) {
        clockid_t cid;

        if (pthread_getcpuclockid(l->t[i].tid, &cid) == 0 && clock_gettime(cid, &ts) == 0)
            load += (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    own = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    return own - AM_MIN(own, load);
}
