/* qm_engine_hpre: the HPRE engine (hpre/hpre.h) behind the QM's engine table
 * (qm_engine.h). The QM writes back dw0 only: the driver reads etype and
 * done from it in the SQ slot (hpre_alg_res_post_hf). */
#include <errno.h>

#include "common/common.h"
#include "hpre/hpre.h"
#include "qm/qm_engine_tables.h"

static int qm_hpre_create(void **eng)
{
    struct hpre_engine *e = NULL;
    int r = hpre_engine_create(&e);

    *eng = e;
    /* The table promises 0 or -ENOMEM; a libcrypto that cannot build the
     * NIST curves is out of memory for our purposes (logged by hpre). */
    return r == -EIO ? -ENOMEM : r;
}

static void qm_hpre_destroy(void *eng)
{
    hpre_engine_destroy(eng);
}

static int qm_hpre_run(void *eng, struct iommu_domain *d, uint32_t *sqe, unsigned alg_type,
                       const struct qm_engine_io *io, void *opaque)
{
    const struct hpre_job_ops ops = {.write = io->write, .cancelled = io->cancelled,
                                     .write_at_commit = io->write_at_commit};

    if (alg_type > HPRE_QTYPE_ECC)
        return -EINVAL;
    return hpre_engine_run(eng, d, sqe, alg_type, &ops, opaque);
}

static unsigned qm_hpre_etype(const uint32_t *sqe)
{
    return (sqe[HPRE_SQE_DW0] & HPRE_DW0_ETYPE_MASK) >> HPRE_DW0_ETYPE_SHIFT;
}

/* The driver's own test: etype 0 and done == 3. */
static bool qm_hpre_job_ok(const uint32_t *sqe)
{
    return qm_hpre_etype(sqe) == HPRE_ET_OK &&
           sqe[HPRE_SQE_DW0] >> HPRE_DW0_DONE_SHIFT == HPRE_DONE_TASK_DONE;
}

static bool qm_hpre_job_dma_fault(const uint32_t *sqe)
{
    return qm_hpre_etype(sqe) == HPRE_ET_DMA_FAULT;
}

static uint64_t qm_hpre_job_tag(const uint32_t *sqe)
{
    return sqe[HPRE_SQE_TAG] & 0xffffu;
}

static void qm_hpre_set_etype(uint32_t *sqe, unsigned et)
{
    sqe[HPRE_SQE_DW0] = (sqe[HPRE_SQE_DW0] & ~(HPRE_DW0_ETYPE_MASK | HPRE_DW0_DONE_MASK)) |
                        (uint32_t)et << HPRE_DW0_ETYPE_SHIFT |
                        HPRE_DONE_TASK_DONE << HPRE_DW0_DONE_SHIFT;
}

static void qm_hpre_refuse(uint32_t *sqe)
{
    qm_hpre_set_etype(sqe, HPRE_ET_BAD_ALG);
}

static void qm_hpre_set_dma_fault(uint32_t *sqe)
{
    qm_hpre_set_etype(sqe, HPRE_ET_DMA_FAULT);
}

static const char *qm_hpre_last_error(const void *eng)
{
    return hpre_engine_last_error(eng);
}

/* The v3 column of hpre_basic_info (hpre_main.c), the algorithm bitmaps cut
 * to what the engine implements (docs/engines.md, HPRE). */
static const struct qm_engine_cap qm_hpre_caps[] = {
    {HPRE_CAP_QM_NFE_MASK, HPRE_CAPV_QM_NFE_MASK},
    {HPRE_CAP_QM_RESET_MASK, HPRE_CAPV_QM_RESET_MASK},
    {HPRE_CAP_QM_CE_MASK, HPRE_CAPV_QM_CE_MASK},
    {HPRE_CAP_NFE_MASK, HPRE_CAPV_NFE_MASK},
    {HPRE_CAP_RESET_MASK, HPRE_CAPV_RESET_MASK},
    {HPRE_CAP_CE_MASK, HPRE_CAPV_CE_MASK},
    {HPRE_CAP_CLUSTER_CORE, HPRE_CAPV_CLUSTER_CORE},
    {HPRE_CAP_CORE_ENABLE, HPRE_CAPV_CORE_ENABLE},
    {HPRE_CAP_DRV_ALG_BITMAP, HPRE_CAPV_ALG_BITMAP},
    {HPRE_CAP_DEV_ALG_BITMAP, HPRE_CAPV_ALG_BITMAP},
    {HPRE_CAP_CORE1_ALG_BITMAP + 0x00, 0x7f}, {HPRE_CAP_CORE1_ALG_BITMAP + 0x04, 0x7f},
    {HPRE_CAP_CORE1_ALG_BITMAP + 0x08, 0x7f}, {HPRE_CAP_CORE1_ALG_BITMAP + 0x0c, 0x7f},
    {HPRE_CAP_CORE1_ALG_BITMAP + 0x10, 0x7f}, {HPRE_CAP_CORE1_ALG_BITMAP + 0x14, 0x7f},
    {HPRE_CAP_CORE1_ALG_BITMAP + 0x18, 0x7f}, {HPRE_CAP_CORE1_ALG_BITMAP + 0x1c, 0x7f},
    {HPRE_CAP_CORE1_ALG_BITMAP + 0x20, 0x10}, {HPRE_CAP_CORE10_ALG_BITMAP, 0x10},
};
_Static_assert(HPRE_CAP_CORE1_ALG_BITMAP + 0x24 == HPRE_CAP_CORE10_ALG_BITMAP,
               "ten per-core algorithm bitmaps");
_Static_assert(HPRE_CAP_QM_NFE_MASK >= QM_ENGINE_CAP_BASE &&
                   HPRE_CAP_CORE10_ALG_BITMAP < QM_ENGINE_CAP_BASE + 4u * QM_ENGINE_CAP_COUNT,
               "HPRE capability registers inside the engine's range");
_Static_assert(HPRE_SQE_SIZE == 1u << 6 && HPRE_SQE_SIZE <= QM_ENGINE_SQE_MAX, "HPRE SQE size");

const struct qm_engine qm_engine_hpre = {
    .name = "hpre",
    .type = QM_ENGINE_HPRE,
    .pf_device_id = HPRE_PCI_DEVICE_PF,
    .vf_device_id = HPRE_PCI_DEVICE_VF,
    .sqe_size = HPRE_SQE_SIZE,
    .sqe_size_log2 = 6,
    .num_alg_types = 2, /* HPRE_QTYPE_V2 (RSA, DH), HPRE_QTYPE_ECC */
    .writeback_mask = 1u << HPRE_SQE_DW0,
    .caps = qm_hpre_caps,
    .ncaps = AM_ARRAY_SIZE(qm_hpre_caps),
    .create = qm_hpre_create,
    .destroy = qm_hpre_destroy,
    .run = qm_hpre_run,
    .job_ok = qm_hpre_job_ok,
    .job_dma_fault = qm_hpre_job_dma_fault,
    .job_tag = qm_hpre_job_tag,
    .refuse = qm_hpre_refuse,
    .set_dma_fault = qm_hpre_set_dma_fault,
    .stream_ctx = NULL,
    .last_error = qm_hpre_last_error,
};
