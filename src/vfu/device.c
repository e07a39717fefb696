/* vfu/device: the qm_dev behind the server and its VFs as vfio-user
 * devices: config space, interrupt routing, reset, command gating, and the
 * device ops table the sessions call (vfu_dev_ops_qm). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "qm/qm_debug.h"
#include "vfu/vfu_dev.h"

struct vfu_device {
    struct qm_dev *qm;
    unsigned num_vfs;
    enum mig_hw_mode hw;
    enum vfu_db_mmap db_mmap;
    unsigned qps_per_vf;
    /* The PF driver's VF message service; set once after the model is
     * created, read by the irq sink (atomically: an IFC MSI may come first). */
    struct mig_pf_msg *pf_msg;
    /* Filled before any job can run; read by the irq sink on worker
     * threads without a lock (the array never changes afterwards). */
    struct vfu_vf **vfs;
};

void vfu_device_config_default(struct vfu_device_config *cfg)
{
    cfg->num_vfs = QM_DEFAULT_VFS;
    cfg->qps_per_vf = QM_DEFAULT_QPS_PER_VF;
    cfg->hw = MIG_HW_V4;
    cfg->workers = 2;
    cfg->worker_cpus = 0;
    cfg->db_isolation = true;
    cfg->db_mmap = VFU_DB_MMAP_COOPERATIVE;
    cfg->engine = QM_ENGINE_ZIP;
}

/* ---- interrupts ---- */

void vfu_vf_msi_fire(struct vfu_vf *vf, unsigned v)
{
    static const uint64_t one = 1;
    bool delivered = false;

    if (v >= QM_NUM_VECTORS)
        return;
    pthread_mutex_lock(&vf->irq_lock);
    if (vf->msi_efd[v] >= 0) {
        /* EAGAIN only if the counter is about to overflow: the client has
         * a pending indication already, so nothing is lost. */
        if (write(vf->msi_efd[v], &one, sizeof(one)) == sizeof(one) || errno == EAGAIN)
            delivered = true;
    }
    pthread_mutex_unlock(&vf->irq_lock);
    if (delivered)
        __atomic_fetch_add(&vf->irq_delivered, 1, __ATOMIC_RELAXED);
    else
        __atomic_fetch_add(&vf->irq_dropped, 1, __ATOMIC_RELAXED);
}

void vfu_vf_msi_set(struct vfu_vf *vf, unsigned start, unsigned count, const int *fds)
{
    pthread_mutex_lock(&vf->irq_lock);
    for (unsigned i = 0; i < count && start + i < QM_NUM_VECTORS; i++) {
        int *slot = &vf->msi_efd[start + i];
        if (*slot >= 0)
            close(*slot);
        *slot = fds ? fds[i] : -1;
    }
    pthread_mutex_unlock(&vf->irq_lock);
}

void vfu_vf_irq_counts(struct vfu_vf *vf, uint64_t *delivered, uint64_t *dropped)
{
    *delivered = __atomic_load_n(&vf->irq_delivered, __ATOMIC_RELAXED);
    *dropped = __atomic_load_n(&vf->irq_dropped, __ATOMIC_RELAXED);
}

/* The qm_dev irq sink: worker threads (or a register writer) raise MSI
 * vector `vector` of function fn. The PF's own vectors have no client: its
 * IFC vector (a VF's message) goes to the PF driver's message service. */
static void device_irq_raise(void *opaque, unsigned fn, unsigned vector)
{
    struct vfu_device *d = opaque;
    struct vfu_vf *vf;

    if (fn == 0 && vector == QM_VEC_IFC) {
        mig_pf_msg_irq(__atomic_load_n(&d->pf_msg, __ATOMIC_ACQUIRE));
        return;
    }
    if (fn == 0 || fn > d->num_vfs)
        return;
    vf = __atomic_load_n(&d->vfs[fn - 1], __ATOMIC_ACQUIRE);
    if (vf)
        vfu_vf_msi_fire(vf, vector);
}

/* ---- reset ---- */

int vfu_vf_reset(struct vfu_vf *vf)
{
    int ret = qm_function_reset(vf->qm, vf->fn);
    int ret2 = mig_reset(vf->mig);

    am_log(AM_LOG_INFO, "vfu", "%s: device reset (%s)", vf->name, ret || ret2 ? "failed" : "ok");
    return ret ? ret : ret2;
}

/* A PCIe FLR written into Device Control is the same reset. */
static void vf_cfg_flr(void *opaque)
{
    struct vfu_vf *vf = opaque;
    am_log(AM_LOG_INFO, "vfu", "%s: function-level reset through config space", vf->name);
    vfu_vf_reset(vf);
}

/* ---- the ops table over the model (vfu_dev_ops.h) ---- */

void vfu_vf_assert_session_locked(struct vfu_vf *vf)
{
    if (pthread_mutex_trylock(&vf->session_lock) == 0) {
        pthread_mutex_unlock(&vf->session_lock);
        assert(!"session_lock not held");
    }
    (void)vf;
}

static int ops_region_read(void *ctx, uint32_t region, uint64_t off, void *buf, uint32_t count)
{
    struct vfu_vf *vf = ctx;

    if (region == VFU_REGION_CONFIG)
        return vfu_pci_cfg_read(&vf->cfg, off, buf, count);
    if (region == VFU_REGION_BAR4)
        return qm_db_bar_read(vf->qm, vf->fn, off, buf, count);
    if (region != VFU_REGION_BAR2)
        return -EINVAL;
    return qm_bar_read(vf->qm, vf->fn, off, buf, count);
}

static int ops_region_write(void *ctx, uint32_t region, uint64_t off, const void *buf,
                            uint32_t count)
{
    struct vfu_vf *vf = ctx;

    if (region == VFU_REGION_CONFIG)
        return vfu_pci_cfg_write(&vf->cfg, off, buf, count);
    if (region == VFU_REGION_BAR4)
        return qm_db_bar_write(vf->qm, vf->fn, off, buf, count);
    if (region != VFU_REGION_BAR2)
        return -EINVAL;
    return qm_bar_write(vf->qm, vf->fn, off, buf, count);
}

static int ops_region_fd(void *ctx, uint32_t region, bool holder_kicks)
{
    struct vfu_vf *vf = ctx;
    int fd;

    if (region != VFU_REGION_BAR4)
        return -ENOTSUP;
    fd = qm_db_bar_fd(vf->qm, vf->fn);
    if (fd < 0)
        return fd;
    if (holder_kicks) {
        int r = qm_db_bar_holder_kicks(vf->qm, vf->fn);

        if (r)
            return r;
    }
    /* The model's memfd is borrowed; the reply path closes what it sends. */
    fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return fd < 0 ? -errno : fd;
}

static int ops_region_io_fd(void *ctx, uint32_t region, unsigned *nqueues)
{
    struct vfu_vf *vf = ctx;
    int fd;

    if (region != VFU_REGION_BAR4)
        return -ENOTSUP;
    fd = qm_db_bar_kick_fd(vf->qm, vf->fn);
    if (fd < 0)
        return fd;
    *nqueues = vf->owner->qps_per_vf;
    if ((uint64_t)*nqueues * QM_DB_PAGE_SIZE > vf->db_size)
        *nqueues = (unsigned)(vf->db_size / QM_DB_PAGE_SIZE);
    /* Borrowed from the model, as the pages' memfd is. */
    fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return fd < 0 ? -errno : fd;
}

static int ops_reset(void *ctx)
{
    return vfu_vf_reset(ctx);
}

static void ops_release(void *ctx)
{
    struct vfu_vf *vf = ctx;
    struct qm_fn_counters n;

    if (qm_debug_fn_counters(vf->qm, vf->fn, &n) == 0)
        am_log(AM_LOG_INFO, "vfu", "%s: session ended: %llu doorbells (%llu from BAR4), %llu jobs",
               vf->name, (unsigned long long)n.doorbells, (unsigned long long)n.doorbells_paged,
               (unsigned long long)n.jobs_done);

    if (vf->db_size && qm_db_bar_renew(vf->qm, vf->fn) != 0)
        am_log(AM_LOG_ERR, "vfu", "%s: cannot renew the doorbell pages: the next client shares "
               "the old ones", vf->name);
}

static uint32_t ops_mig_flags(void *ctx)
{
    return mig_flags(((struct vfu_vf *)ctx)->mig);
}

static enum vfio_mig_state ops_mig_get_state(void *ctx)
{
    return mig_get_state(((struct vfu_vf *)ctx)->mig);
}

static int ops_mig_set_state(void *ctx, enum vfio_mig_state target)
{
    return mig_set_state(((struct vfu_vf *)ctx)->mig, target);
}

static const char *ops_mig_last_error(void *ctx)
{
    return mig_last_error(((struct vfu_vf *)ctx)->mig);
}

static ssize_t ops_mig_data_read(void *ctx, void *buf, size_t len)
{
    return mig_read(((struct vfu_vf *)ctx)->mig, buf, len);
}

static ssize_t ops_mig_data_write(void *ctx, const void *buf, size_t len)
{
    return mig_write(((struct vfu_vf *)ctx)->mig, buf, len);
}

static int ops_mig_data_size(void *ctx, uint64_t *stop_copy_length)
{
    return mig_data_size(((struct vfu_vf *)ctx)->mig, stop_copy_length);
}

static int ops_mig_precopy_info(void *ctx, uint64_t *initial_bytes, uint64_t *dirty_bytes)
{
    return mig_precopy_info(((struct vfu_vf *)ctx)->mig, initial_bytes, dirty_bytes);
}

static int ops_dma_logging_start(void *ctx, uint64_t *page_size, const struct iommu_range *ranges,
                                 uint32_t nranges, bool log_all)
{
    return mig_dma_logging_start(((struct vfu_vf *)ctx)->mig, page_size, ranges, nranges,
                                 log_all);
}

static int ops_dma_logging_stop(void *ctx)
{
    return mig_dma_logging_stop(((struct vfu_vf *)ctx)->mig);
}

static int ops_dma_logging_report(void *ctx, uint64_t iova, uint64_t length, uint64_t page_size,
                                  uint64_t *bitmap)
{
    return mig_dma_logging_report(((struct vfu_vf *)ctx)->mig, iova, length, page_size, bitmap);
}

static unsigned ops_dma_count(void *ctx)
{
    return iommu_mapping_count(((struct vfu_vf *)ctx)->dom);
}

static int ops_dma_map(void *ctx, uint64_t iova, uint64_t size, int fd, uint64_t offset,
                       unsigned perm, const struct iommu_remote_ops *remote, void *opaque)
{
    struct vfu_vf *vf = ctx;

    if (fd >= 0)
        return iommu_map_fd(vf->dom, iova, size, fd, offset, perm);
    return iommu_map_remote(vf->dom, iova, size, perm, remote, opaque);
}

static int ops_dma_unmap(void *ctx, uint64_t iova, uint64_t size, uint64_t *unmapped_bytes)
{
    return iommu_unmap_range(((struct vfu_vf *)ctx)->dom, iova, size, unmapped_bytes);
}

static void ops_dma_unmap_all(void *ctx)
{
    iommu_unmap_all(((struct vfu_vf *)ctx)->dom);
}

static void ops_irq_set(void *ctx, unsigned start, unsigned count, const int *fds)
{
    vfu_vf_msi_set(ctx, start, count, fds);
}

static void ops_irq_trigger(void *ctx, unsigned vector)
{
    vfu_vf_msi_fire(ctx, vector);
}

const struct vfu_dev_ops vfu_dev_ops_qm = {
    .region_read = ops_region_read,
    .region_write = ops_region_write,
    .region_fd = ops_region_fd,
    .region_io_fd = ops_region_io_fd,
    .reset = ops_reset,
    .release = ops_release,
    .mig_flags = ops_mig_flags,
    .mig_get_state = ops_mig_get_state,
    .mig_set_state = ops_mig_set_state,
    .mig_last_error = ops_mig_last_error,
    .mig_data_read = ops_mig_data_read,
    .mig_data_write = ops_mig_data_write,
    .mig_data_size = ops_mig_data_size,
    .mig_precopy_info = ops_mig_precopy_info,
    .dma_logging_start = ops_dma_logging_start,
    .dma_logging_stop = ops_dma_logging_stop,
    .dma_logging_report = ops_dma_logging_report,
    .dma_count = ops_dma_count,
    .dma_map = ops_dma_map,
    .dma_unmap = ops_dma_unmap,
    .dma_unmap_all = ops_dma_unmap_all,
    .irq_set = ops_irq_set,
    .irq_trigger = ops_irq_trigger,
};

void vfu_vf_ops_get(struct vfu_vf *vf, const struct vfu_dev_ops **ops, void **ctx)
{
    pthread_mutex_lock(&vf->session_lock);
    *ops = vf->ops;
    *ctx = vf->ops_ctx;
    pthread_mutex_unlock(&vf->session_lock);
}

int vfu_vf_ops_set(struct vfu_vf *vf, const struct vfu_dev_ops *ops, void *ctx)
{
    int ret = 0;

    pthread_mutex_lock(&vf->session_lock);
    if (vf->session) {
        ret = -EBUSY;
    } else {
        vf->ops = ops ? ops : &vfu_dev_ops_qm;
        vf->ops_ctx = ops ? ctx : vf;
    }
    pthread_mutex_unlock(&vf->session_lock);
    return ret;
}

/* ---- gating ---- */

#define ST(s) (1u << VFIO_MIG_STATE_##s)
#define ST_ALL 0xffu
#define ST_SAVING (ST(PRE_COPY) | ST(PRE_COPY_P2P) | ST(STOP_COPY))

/* Which states admit each command (data, one row per command). Everything
 * that only describes or configures the VMM side of the device (info,
 * interrupts, DMA maps: QEMU restores MSI and may change its memory map
 * during RESUMING), resets (the only way out of ERROR) and the feature
 * interface work in every state; migration data only in its states. Region
 * accesses are refined per region in vfu_region_access_allowed. */
static const uint8_t cmd_states[VFU_CMD_MAX] = {
    [VFU_CMD_VERSION] = ST_ALL,
    [VFU_CMD_DMA_MAP] = ST_ALL,
    [VFU_CMD_DMA_UNMAP] = ST_ALL,
    [VFU_CMD_DEVICE_GET_INFO] = ST_ALL,
    [VFU_CMD_DEVICE_GET_REGION_INFO] = ST_ALL,
    [VFU_CMD_DEVICE_GET_REGION_IO_FDS] = ST_ALL,
    [VFU_CMD_DEVICE_GET_IRQ_INFO] = ST_ALL,
    [VFU_CMD_DEVICE_SET_IRQS] = ST_ALL,
    [VFU_CMD_REGION_READ] = ST_ALL,
    [VFU_CMD_REGION_WRITE] = ST_ALL,
    [VFU_CMD_DEVICE_RESET] = ST_ALL,
    [VFU_CMD_REGION_WRITE_MULTI] = ST_ALL,
    [VFU_CMD_DEVICE_FEATURE] = ST_ALL,
    [VFU_CMD_MIG_DATA_READ] = ST_SAVING,
    [VFU_CMD_MIG_DATA_WRITE] = ST(RESUMING),
};

bool vfu_cmd_allowed(unsigned cmd, enum vfio_mig_state state)
{
    if (cmd >= VFU_CMD_MAX || (unsigned)state >= VFIO_MIG_STATE_COUNT)
        return false;
    return (cmd_states[cmd] >> state) & 1u;
}

/* ---- the device ---- */

/* After the model's workers have stopped: nothing can raise any more. */
static void vf_free(struct vfu_vf *vf)
{
    if (!vf)
        return;
    vfu_vf_msi_set(vf, 0, QM_NUM_VECTORS, NULL);
    pthread_mutex_destroy(&vf->irq_lock);
    pthread_mutex_destroy(&vf->session_lock);
    free(vf);
}

static int vf_create(struct vfu_device *d, unsigned index, struct vfu_vf **out)
{
    struct vfu_vf *vf = calloc(1, sizeof(*vf));
    int ret;

    if (!vf)
        return -ENOMEM;
    vf->owner = d;
    vf->qm = d->qm;
    vf->index = index;
    vf->fn = index + 1;
    snprintf(vf->name, sizeof(vf->name), "vf%u", index);
    vf->dom = qm_dev_iommu(d->qm, vf->fn);
    vf->bar_size = d->hw == MIG_HW_V3 ? QM_VF_BAR2_V3_GUEST_SIZE : qm_bar_size(d->qm, vf->fn);
    vf->db_size = qm_db_bar_size(d->qm, vf->fn);
    vf->db_mmap = d->db_mmap;
    for (unsigned v = 0; v < QM_NUM_VECTORS; v++)
        vf->msi_efd[v] = -1;
    pthread_mutex_init(&vf->irq_lock, NULL);
    pthread_mutex_init(&vf->session_lock, NULL);
    vf->ops = &vfu_dev_ops_qm;
    vf->ops_ctx = vf;
    vfu_pci_cfg_init(&vf->cfg, qm_dev_revision(d->qm), vf->bar_size, vf->db_size, vf_cfg_flr,
                     vf);
    vfu_pci_cfg_set_device_id(&vf->cfg, qm_dev_engine(d->qm)->vf_device_id);
    ret = mig_dev_create(d->qm, vf->fn, d->hw, &vf->mig);
    if (ret) {
        pthread_mutex_destroy(&vf->irq_lock);
        pthread_mutex_destroy(&vf->session_lock);
        free(vf);
        return ret;
    }
    *out = vf;
    return 0;
}

int vfu_device_create(const struct vfu_device_config *cfg, struct vfu_device **out)
{
    struct qm_dev_config qc;
    struct vfu_device *d;
    int ret;

    if (cfg->num_vfs == 0 || cfg->num_vfs > QM_MAX_VFS || cfg->workers == 0 ||
        (cfg->hw != MIG_HW_V3 && cfg->hw != MIG_HW_V4))
        return -EINVAL;
    d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->num_vfs = cfg->num_vfs;
    d->hw = cfg->hw;
    d->db_mmap = cfg->db_mmap;
    d->qps_per_vf = cfg->qps_per_vf;
    d->vfs = calloc(cfg->num_vfs, sizeof(*d->vfs));
    if (!d->vfs) {
        free(d);
        return -ENOMEM;
    }
    qm_dev_config_default(&qc);
    qc.num_vfs = cfg->num_vfs;
    qc.qps_per_vf = cfg->qps_per_vf;
    qc.revision = cfg->hw == MIG_HW_V3 ? QM_REV_V3 : QM_REV_V4;
    qc.workers = cfg->workers;
    qc.worker_cpus = cfg->worker_cpus;
    qc.db_isolation = cfg->db_isolation;
    qc.engine = cfg->engine;
    qc.irq.raise = device_irq_raise;
    qc.irq.opaque = d;
    ret = qm_dev_create(&qc, &d->qm);
    if (ret) {
        free(d->vfs);
        free(d);
        return ret;
    }
    struct mig_pf_msg *pf;

    ret = mig_pf_msg_create(d->qm, &pf);
    if (ret) {
        vfu_device_destroy(d);
        return ret;
    }
    __atomic_store_n(&d->pf_msg, pf, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < cfg->num_vfs; i++) {
        struct vfu_vf *vf;
        ret = vf_create(d, i, &vf);
        if (ret) {
            vfu_device_destroy(d);
            return ret;
        }
        __atomic_store_n(&d->vfs[i], vf, __ATOMIC_RELEASE);
    }
    *out = d;
    return 0;
}

void vfu_device_destroy(struct vfu_device *d)
{
    if (!d)
        return;
    /* Migration drivers go while the model still stands; then the model
     * (its workers stop, so no interrupt is raised after); then the VFs. */
    for (unsigned i = 0; i < d->num_vfs; i++) {
        if (d->vfs[i]) {
            mig_dev_destroy(d->vfs[i]->mig);
            d->vfs[i]->mig = NULL;
        }
    }
    /* The message service leaves before the model it drives; an IFC MSI
     * raised meanwhile finds no service and is dropped. */
    struct mig_pf_msg *pf = __atomic_exchange_n(&d->pf_msg, NULL, __ATOMIC_ACQ_REL);

    mig_pf_msg_destroy(pf);
    qm_dev_destroy(d->qm);
    for (unsigned i = 0; i < d->num_vfs; i++)
        vf_free(d->vfs[i]);
    free(d->vfs);
    free(d);
}

unsigned vfu_device_num_vfs(const struct vfu_device *d)
{
    return d->num_vfs;
}

struct vfu_vf *vfu_device_vf(struct vfu_device *d, unsigned index)
{
    return index < d->num_vfs ? d->vfs[index] : NULL;
}

struct qm_dev *vfu_device_qm(struct vfu_device *d)
{
    return d->qm;
}

struct mig_dev *vfu_vf_mig(struct vfu_vf *vf)
{
    return vf->mig;
}

unsigned vfu_vf_fn(const struct vfu_vf *vf)
{
    return vf->fn;
}
