/* inproc: the in-process VF transport and MSI router (vmm.h). */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "common/common.h"
#include "vmm/inproc.h"

struct vmm_irq_line {
    /* Protects pending, wake and count; cond signals either becoming true. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool pending;
    bool wake; /* vmm_irq_wake: the next wait returns -EINTR */
    uint64_t count;
};

struct vmm_irq_router {
    unsigned num_fns;
    uint64_t dropped; /* raises naming no line (atomic) */
    struct vmm_irq_line lines[];
};

static struct vmm_irq_line *vmm_irq_line(struct vmm_irq_router *r, unsigned fn, unsigned vector)
{
    if (!r || fn >= r->num_fns || vector >= QM_NUM_VECTORS)
        return NULL;
    return &r->lines[fn * QM_NUM_VECTORS + vector];
}

int vmm_irq_router_create(unsigned num_fns, struct vmm_irq_router **out)
{
    struct vmm_irq_router *r;
    pthread_condattr_t ca;

    if (!out || num_fns == 0 || num_fns > 1 + QM_MAX_VFS)
        return -EINVAL;
    r = calloc(1, sizeof(*r) + (size_t)num_fns * QM_NUM_VECTORS * sizeof(r->lines[0]));
    if (!r)
        return -ENOMEM;
    r->num_fns = num_fns;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    for (unsigned i = 0; i < num_fns * QM_NUM_VECTORS; i++) {
        pthread_mutex_init(&r->lines[i].lock, NULL);
        pthread_cond_init(&r->lines[i].cond, &ca);
    }
    pthread_condattr_destroy(&ca);
    *out = r;
    return 0;
}

void vmm_irq_router_destroy(struct vmm_irq_router *r)
{
    if (!r)
        return;
    for (unsigned i = 0; i < r->num_fns * QM_NUM_VECTORS; i++) {
        pthread_mutex_destroy(&r->lines[i].lock);
        pthread_cond_destroy(&r->lines[i].cond);
    }
    free(r);
}

static void vmm_irq_raise(void *opaque, unsigned fn, unsigned vector)
{
    struct vmm_irq_router *r = opaque;
    struct vmm_irq_line *l = vmm_irq_line(r, fn, vector);

    if (!l) {
        __atomic_fetch_add(&r->dropped, 1, __ATOMIC_RELAXED);
        am_log(AM_LOG_GUEST, "vmm", "MSI for fn %u vector %u dropped", fn, vector);
        return;
    }
    pthread_mutex_lock(&l->lock);
    l->pending = true;
    l->count++;
    pthread_mutex_unlock(&l->lock);
    /* After the unlock, so the woken waiter does not block on the lock at
     * once (a waiter tests pending under the lock, so no wake-up is lost). */
    pthread_cond_broadcast(&l->cond);
}

struct qm_irq_sink vmm_irq_router_sink(struct vmm_irq_router *r)
{
    return (struct qm_irq_sink){.raise = vmm_irq_raise, .opaque = r};
}

int vmm_irq_wait(struct vmm_irq_router *r, unsigned fn, unsigned vector, int timeout_ms)
{
    struct vmm_irq_line *l = vmm_irq_line(r, fn, vector);
    struct timespec dl;
    int ret = 0;

    if (!l || timeout_ms < 0)
        return -EINVAL;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&l->lock);
    while (!l->pending && !l->wake && ret == 0)
        ret = timeout_ms == 0 ? ETIMEDOUT : pthread_cond_timedwait(&l->cond, &l->lock, &dl);
    if (l->pending) {
        l->pending = false;
        ret = 0;
    } else if (l->wake) {
        l->wake = false;
        ret = EINTR;
    }
    pthread_mutex_unlock(&l->lock);
    return ret == 0 ? 0 : ret == EINTR ? -EINTR : -ETIMEDOUT;
}

void vmm_irq_wake(struct vmm_irq_router *r, unsigned fn)
{
    for (unsigned v = 0; v < QM_NUM_VECTORS; v++) {
        struct vmm_irq_line *l = vmm_irq_line(r, fn, v);

        if (!l)
            return;
        pthread_mutex_lock(&l->lock);
        l->wake = true;
        pthread_mutex_unlock(&l->lock);
        pthread_cond_broadcast(&l->cond);
    }
}

uint64_t vmm_irq_count(struct vmm_irq_router *r, unsigned fn, unsigned vector)
{
    struct vmm_irq_line *l = vmm_irq_line(r, fn, vector);
    uint64_t n;

    if (!l)
        return 0;
    pthread_mutex_lock(&l->lock);
    n = l->count;
    pthread_mutex_unlock(&l->lock);
    return n;
}

struct vmm_inproc_vf {
    struct qm_dev *dev;
    unsigned fn;
    struct vmm_irq_router *irq;
    struct iommu_domain *dom;
    uint64_t ram_size;
    struct vf_io io;
};

static int vmm_inproc_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct vmm_inproc_vf *v = opaque;
    return qm_bar_read(v->dev, v->fn, off, data, size);
}

static int vmm_inproc_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct vmm_inproc_vf *v = opaque;
    return qm_bar_write(v->dev, v->fn, off, data, size);
}

/* BAR4 doorbells stay function calls here (trapped): a VMM in the device's
 * own process has nothing to map. */
static int vmm_inproc_db_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct vmm_inproc_vf *v = opaque;
    return qm_db_bar_write(v->dev, v->fn, off, data, size);
}

static int vmm_inproc_irq_wait(void *opaque, unsigned vector, int timeout_ms)
{
    struct vmm_inproc_vf *v = opaque;
    return vmm_irq_wait(v->irq, v->fn, vector, timeout_ms);
}

static void vmm_inproc_irq_wake(void *opaque)
{
    struct vmm_inproc_vf *v = opaque;
    vmm_irq_wake(v->irq, v->fn);
}

int vmm_inproc_vf_create(struct qm_dev *dev, unsigned fn, struct vmm_irq_router *irq,
                         const struct guest_ram *ram, struct vmm_inproc_vf **out)
{
    struct vmm_inproc_vf *v;
    int ret;

    if (!dev || !irq || !ram || !ram->host || !out || fn == 0 || fn >= qm_dev_num_functions(dev) ||
        fn >= irq->num_fns)
        return -EINVAL;
    v = calloc(1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    v->dev = dev;
    v->fn = fn;
    v->irq = irq;
    v->dom = qm_dev_iommu(dev, fn);
    v->ram_size = ram->size;
    ret = v->dom ? iommu_map_host(v->dom, 0, ram->size, ram->host, IOMMU_READ | IOMMU_WRITE)
                 : -EINVAL;
    if (ret) {
        free(v);
        return ret;
    }
    v->io = (struct vf_io){
        .mmio_read = vmm_inproc_read,
        .mmio_write = vmm_inproc_write,
        .irq_wait = vmm_inproc_irq_wait,
        .irq_wake = vmm_inproc_irq_wake,
        .db_write = vmm_inproc_db_write,
        .db_pages_size = qm_db_bar_size(dev, fn),
        .opaque = v,
    };
    *out = v;
    return 0;
}

void vmm_inproc_vf_destroy(struct vmm_inproc_vf *v)
{
    if (!v)
        return;
    iommu_unmap(v->dom, 0, v->ram_size);
    free(v);
}

const struct vf_io *vmm_inproc_vf_io(struct vmm_inproc_vf *v)
{
    return &v->io;
}

void vmm_inproc_host_destroy(struct vmm_inproc_host *h)
{
    vmm_inproc_vf_destroy(h->vf);
    if (h->dev)
        qm_dev_destroy(h->dev);
    vmm_irq_router_destroy(h->irq);
    h->vf = NULL;
    h->dev = NULL;
    h->irq = NULL;
}

int vmm_inproc_host_create(const struct qm_dev_config *cfg, unsigned fn, const struct guest_ram *ram,
                           struct vmm_inproc_host *h)
{
    struct qm_dev_config c;
    int ret;

    if (!cfg || !h)
        return -EINVAL;
    h->vf = NULL;
    h->dev = NULL;
    h->irq = NULL;
    c = *cfg;
    ret = vmm_irq_router_create(1 + c.num_vfs, &h->irq);
    if (ret)
        return ret;
    c.irq = vmm_irq_router_sink(h->irq);
    ret = qm_dev_create(&c, &h->dev);
    if (!ret)
        ret = vmm_inproc_vf_create(h->dev, fn, h->irq, ram, &h->vf);
    if (ret)
        vmm_inproc_host_destroy(h);
    return ret;
}
