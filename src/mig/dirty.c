/* mig/dirty: the VFIO DMA logging feature on the VF's IOMMU domain.
 *
 * The argument checks are the uAPI's (vfio_main.c, in its order): no ranges
 * -EINVAL, too many -E2BIG, then per range unaligned -EINVAL and wrapping
 * -EOVERFLOW, then overlap -EINVAL; a second start -EBUSY. The device logs at
 * 4 KiB: a smaller requested page size is raised to 4 KiB (and written back),
 * its ranges widened to whole 4 KiB pages and merged where they then touch.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mig/mig_int.h"

#define MIG_LOG_MAX_RANGES (4096u / 16u) /* PAGE_SIZE / sizeof(range), as the kernel */

static int range_cmp(const void *a, const void *b)
{
    const struct iommu_range *x = a, *y = b;

    return x->iova < y->iova ? -1 : x->iova > y->iova;
}

/* Widens sorted, non-overlapping ranges to multiples of ps and merges the
 * ones that then touch; returns the new count. */
static uint32_t ranges_widen(struct iommu_range *r, uint32_t n, uint64_t ps)
{
    uint32_t out = 0;

    for (uint32_t i = 0; i < n; i++) {
        uint64_t start = AM_ALIGN_DOWN(r[i].iova, ps);
        uint64_t end = AM_ALIGN_UP(r[i].iova + r[i].length, ps);

        if (out > 0 && start <= r[out - 1].iova + r[out - 1].length) {
            r[out - 1].length = AM_MAX(end, r[out - 1].iova + r[out - 1].length) - r[out - 1].iova;
            continue;
        }
        r[out].iova = start;
        r[out].length = end - start;
        out++;
    }
    return out;
}

int mig_dma_logging_start(struct mig_dev *m, uint64_t *page_size, const struct iommu_range *ranges,
                          uint32_t nranges, int log_all)
{
    struct iommu_range sorted[MIG_LOG_MAX_RANGES];
    uint64_t ps, end;
    int rc;

    if (m == NULL || page_size == NULL)
        return -EINVAL;
    ps = *page_size;
    if (nranges == 0 && !log_all)
        return -EINVAL;
    if (nranges > MIG_LOG_MAX_RANGES)
        return -E2BIG;
    if (!AM_IS_POW2(ps) || (nranges > 0 && ranges == NULL))
        return -EINVAL;
    for (uint32_t i = 0; i < nranges; i++) {
        if (ranges[i].length == 0 || (ranges[i].iova & (ps - 1)) != 0 ||
            (ranges[i].length & (ps - 1)) != 0)
            return -EINVAL;
        if (am_add_overflows_u64(ranges[i].iova, ranges[i].length, &end))
            return -EOVERFLOW;
        sorted[i] = ranges[i];
    }
    qsort(sorted, nranges, sizeof(sorted[0]), range_cmp);
    for (uint32_t i = 1; i < nranges; i++)
        if (sorted[i - 1].iova + sorted[i - 1].length > sorted[i].iova)
            return -EINVAL;
    if (ps < IOMMU_PAGE_SIZE) {
        /* Widening must not wrap either. */
        for (uint32_t i = 0; i < nranges; i++)
            if (am_add_overflows_u64(sorted[i].iova + sorted[i].length, IOMMU_PAGE_SIZE - 1,
                                     &end))
                return -EOVERFLOW;
        nranges = ranges_widen(sorted, nranges, IOMMU_PAGE_SIZE);
        ps = IOMMU_PAGE_SIZE;
    }

    mig_lock(m);
    if (m->logging) {
        rc = -EBUSY;
        goto out_unlock;
    }
    rc = iommu_dirty_start(qm_dev_iommu(m->dev, m->vf_fn), ps, nranges > 0 ? sorted : NULL,
                           nranges);
    if (rc == 0) {
        m->logging = true;
        *page_size = ps;
    }
out_unlock:
    mig_unlock(m);
    return rc;
}

void mig_dirty_stop_locked(struct mig_dev *m)
{
    mig_assert_locked(m);
    if (!m->logging)
        return;
    iommu_dirty_stop(qm_dev_iommu(m->dev, m->vf_fn));
    m->logging = false;
}

int mig_dma_logging_stop(struct mig_dev *m)
{
    int rc = 0;

    if (m == NULL)
        return -EINVAL;
    mig_lock(m);
    if (!m->logging)
        rc = -EINVAL;
    else
        mig_dirty_stop_locked(m);
    mig_unlock(m);
    return rc;
}

int mig_dma_logging_report(struct mig_dev *m, uint64_t iova, uint64_t length, uint64_t page_size,
                           uint64_t *bitmap)
{
    uint64_t end;
    int rc;

    if (m == NULL || bitmap == NULL || page_size < IOMMU_PAGE_SIZE || !AM_IS_POW2(page_size))
        return -EINVAL;
    if (am_add_overflows_u64(iova, length, &end))
        return -EOVERFLOW;
    mig_lock(m);
    rc = m->logging ? iommu_dirty_report(qm_dev_iommu(m->dev, m->vf_fn), iova, length, page_size,
                                         bitmap)
                    : -EINVAL;
    mig_unlock(m);
    return rc;
}
