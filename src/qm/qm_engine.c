/* qm_engine: the engine tables (qm_engine.h) and the adapters that put each
 * engine's own API behind them. */
#include <errno.h>
#include <string.h>

#include "common/common.h"
#include "qm/qm_engine.h"
#include "qm/qm_engine_tables.h"
#include "qm/qm_hw.h"
#include "sec/sec.h"
#include "zip/zip.h"

/* ---- ZIP ------------------------------------------------------------------ */

static int qm_zip_create(void **eng)
{
    struct zip_engine *e = NULL;
    int r = zip_engine_create(&e);

    *eng = e;
    return r;
}

static void qm_zip_destroy(void *eng)
{
    if (eng != NULL)
        zip_engine_destroy(eng);
}

static int qm_zip_run(void *eng, struct iommu_domain *d, uint32_t *sqe, unsigned alg_type,
                      const struct qm_engine_io *io, void *opaque)
{
    const struct zip_job_ops ops = {.write = io->write, .cancelled = io->cancelled};

    if (alg_type > ZIP_ALG_DECOMPRESS)
        return -EINVAL;
    return zip_engine_run(eng, d, sqe, (enum zip_alg_dir)alg_type, &ops, opaque);
}

static bool qm_zip_job_ok(const uint32_t *sqe)
{
    return zip_status_is_success(sqe[ZIP_SQE_DW3] & ZIP_DW3_STATUS_MASK);
}

static bool qm_zip_job_dma_fault(const uint32_t *sqe)
{
    return (sqe[ZIP_SQE_DW3] & ZIP_DW3_STATUS_MASK) == ZIP_ST_DMA_FAULT;
}

static uint64_t qm_zip_job_tag(const uint32_t *sqe)
{
    return (uint64_t)sqe[ZIP_SQE_TAG_H] << 32 | sqe[ZIP_SQE_TAG_L];
}

static void qm_zip_set_status(uint32_t *sqe, uint32_t st)
{
    sqe[ZIP_SQE_DW3] = (sqe[ZIP_SQE_DW3] & ~ZIP_DW3_STATUS_MASK) | st;
}

static void qm_zip_refuse(uint32_t *sqe)
{
    sqe[ZIP_SQE_CONSUMED] = 0;
    sqe[ZIP_SQE_PRODUCED] = 0;
    qm_zip_set_status(sqe, ZIP_ST_BAD_SQE);
}

static void qm_zip_set_dma_fault(uint32_t *sqe)
{
    qm_zip_set_status(sqe, ZIP_ST_DMA_FAULT);
}

static bool qm_zip_stream_ctx(const void *eng, uint64_t *iova, const void **buf, uint32_t *len)
{
    return zip_engine_stream_ctx(eng, iova, buf, len);
}

static const char *qm_zip_last_error(const void *eng)
{
    return zip_engine_last_error(eng);
}

/* The v3 column of the Linux zip driver's zip_basic_cap_info
 * (docs/driver-compat.md). */
static const struct qm_engine_cap qm_zip_caps[] = {
    {ZIP_CAP_QM_NFE_MASK, 0x7c77},     {ZIP_CAP_QM_RESET_MASK, 0x6c77},
    {ZIP_CAP_QM_CE_MASK, 0x8},         {ZIP_CAP_NFE_MASK, 0x1ffe},
    {ZIP_CAP_RESET_MASK, 0x7fe},       {ZIP_CAP_CE_MASK, 0x1},
    {ZIP_CAP_CORE_NUM, 0x12050203},    {ZIP_CAP_CORE_BITMAP, 0x001c0003},
    {ZIP_CAP_DRV_ALG_BITMAP, 0x3f},    {ZIP_CAP_DEV_ALG_BITMAP, 0x3f},
    {ZIP_CAP_CORE1_ALG_BITMAP, 0xd5},  {ZIP_CAP_CORE2_ALG_BITMAP, 0xd5},
    {ZIP_CAP_CORE3_ALG_BITMAP, 0x2a},  {ZIP_CAP_CORE4_ALG_BITMAP, 0x2a},
    {ZIP_CAP_CORE5_ALG_BITMAP, 0x2a},
};

static const struct qm_engine qm_engine_zip = {
    .name = "zip",
    .type = QM_ENGINE_ZIP,
    .pf_device_id = QM_ZIP_PF_DEVICE_ID,
    .vf_device_id = QM_ZIP_VF_DEVICE_ID,
    .sqe_size = ZIP_SQE_SIZE,
    .sqe_size_log2 = 7,
    .num_alg_types = 2, /* compress, decompress */
    .writeback_mask = 1u << ZIP_SQE_CONSUMED | 1u << ZIP_SQE_PRODUCED | 1u << ZIP_SQE_DW3,
    .caps = qm_zip_caps,
    .ncaps = AM_ARRAY_SIZE(qm_zip_caps),
    .create = qm_zip_create,
    .destroy = qm_zip_destroy,
    .run = qm_zip_run,
    .job_ok = qm_zip_job_ok,
    .job_dma_fault = qm_zip_job_dma_fault,
    .job_tag = qm_zip_job_tag,
    .refuse = qm_zip_refuse,
    .set_dma_fault = qm_zip_set_dma_fault,
    .stream_ctx = qm_zip_stream_ctx,
    .last_error = qm_zip_last_error,
};
_Static_assert(ZIP_SQE_SIZE == 1u << 7 && ZIP_SQE_SIZE <= QM_ENGINE_SQE_MAX, "ZIP SQE size");

/* ---- SEC ------------------------------------------------------------------ */

static int qm_sec_create(void **eng)
{
    struct sec_engine *e = NULL;
    int r = sec_engine_create(&e);

    *eng = e;
    return r;
}

static void qm_sec_destroy(void *eng)
{
    sec_engine_destroy(eng);
}

static int qm_sec_run(void *eng, struct iommu_domain *d, uint32_t *sqe, unsigned alg_type,
                      const struct qm_engine_io *io, void *opaque)
{
    const struct sec_job_ops ops = {.write = io->write, .cancelled = io->cancelled,
                                    .write_at_commit = io->write_at_commit};

    return sec_engine_run(eng, d, sqe, alg_type, &ops, opaque);
}

static bool qm_sec_job_ok(const uint32_t *sqe)
{
    return sec_bd_ok(sqe);
}

static bool qm_sec_job_dma_fault(const uint32_t *sqe)
{
    return sec_bd_error(sqe) == SEC_E_DMA_FAULT;
}

static uint64_t qm_sec_job_tag(const uint32_t *sqe)
{
    return (uint64_t)sqe[SEC_DW_TAG_H] << 32 | sqe[SEC_DW_TAG_L];
}

static void qm_sec_set_error(uint32_t *sqe, enum sec_error err)
{
    sqe[SEC_DW_DONE] = SEC_DONE | SEC_FLAG_CIPHER << SEC_FLAG_SHIFT | (uint32_t)err << SEC_ERR_SHIFT;
}

static void qm_sec_refuse(uint32_t *sqe)
{
    qm_sec_set_error(sqe, SEC_E_BAD_BD);
}

static void qm_sec_set_dma_fault(uint32_t *sqe)
{
    qm_sec_set_error(sqe, SEC_E_DMA_FAULT);
}

static const char *qm_sec_last_error(const void *eng)
{
    return sec_engine_last_error(eng);
}

/* The v3 column of the Linux hisi_sec2 driver's sec_basic_info (cap_ver 1
 * reads them), except the algorithm bitmaps: DRV_ALG (what the driver
 * registers) and DEV_ALG (what uacce advertises) name what the engine
 * computes and the guest kernel can back with a software fallback: AES
 * ECB/CBC/CTR/XTS/OFB/CFB (bits 0-5), CCM/GCM(AES) (6, 7), 3DES ECB/CBC (23,
 * 24), authenc(hmac(sha1/sha256/sha512),cbc(aes)) (43-45). No SM4: Debian's
 * 6.1 kernel has no SM4 for the driver's fallback tfm (docs/engines.md). */
#define QM_SEC_ALG_LOW 0x018000ffu
#define QM_SEC_ALG_HIGH 0x00003800u
static const struct qm_engine_cap qm_sec_caps[] = {
    {0x3124, 0x7c77},      /* QM_NFE_MASK */
    {0x3128, 0x6c77},      /* QM_RESET_MASK, QM_OOO_SHUTDOWN */
    {0x312c, 0x8},         /* QM_CE_MASK */
    {0x3130, 0x60177},     /* NFE_MASK */
    {0x3134, 0x177},       /* RESET_MASK, OOO_SHUTDOWN */
    {0x3138, 0xc088},      /* CE_MASK */
    {0x313c, 0x00110404},  /* 1 cluster, 1 core type, 4 cores, 4 per cluster */
    {0x3140, 0xf},         /* CORE_ENABLE_BITMAP */
    {0x3144, QM_SEC_ALG_LOW}, {0x3148, QM_SEC_ALG_HIGH}, /* DRV_ALG_BITMAP */
    {0x314c, QM_SEC_ALG_LOW}, {0x3150, QM_SEC_ALG_HIGH}, /* DEV_ALG_BITMAP */
    {0x3154, 0xffffffff}, {0x3158, 0x3fff}, /* CORE1..4_ALG_BITMAP low/high */
    {0x315c, 0xffffffff}, {0x3160, 0x3fff},
    {0x3164, 0xffffffff}, {0x3168, 0x3fff},
    {0x316c, 0xffffffff}, {0x3170, 0x3fff},
};

static const struct qm_engine qm_engine_sec = {
    .name = "sec",
    .type = QM_ENGINE_SEC,
    .pf_device_id = QM_SEC_PF_DEVICE_ID,
    .vf_device_id = QM_SEC_VF_DEVICE_ID,
    .sqe_size = SEC_SQE_SIZE,
    .sqe_size_log2 = 7,
    .num_alg_types = 1, /* the driver's queues all have alg_type 0 */
    .writeback_mask = 1u << SEC_DW_DONE,
    .caps = qm_sec_caps,
    .ncaps = AM_ARRAY_SIZE(qm_sec_caps),
    .create = qm_sec_create,
    .destroy = qm_sec_destroy,
    .run = qm_sec_run,
    .job_ok = qm_sec_job_ok,
    .job_dma_fault = qm_sec_job_dma_fault,
    .job_tag = qm_sec_job_tag,
    .refuse = qm_sec_refuse,
    .set_dma_fault = qm_sec_set_dma_fault,
    .stream_ctx = NULL,
    .last_error = qm_sec_last_error,
};
_Static_assert(SEC_SQE_SIZE == 1u << 7 && SEC_CHUNK <= QM_ENGINE_WRITE_MAX, "SEC SQE and writes");

/* ---- the registry ------------------------------------------------------------ */

static const struct qm_engine *const qm_engines[QM_ENGINE_COUNT] = {
    [QM_ENGINE_ZIP] = &qm_engine_zip,
    [QM_ENGINE_SEC] = &qm_engine_sec,
    [QM_ENGINE_HPRE] = &qm_engine_hpre,
};

const struct qm_engine *qm_engine_get(enum qm_engine_type type)
{
    if ((unsigned)type >= QM_ENGINE_COUNT)
        return NULL;
    return qm_engines[type];
}

const struct qm_engine *qm_engine_by_name(const char *name)
{
    for (unsigned i = 0; name != NULL && i < QM_ENGINE_COUNT; i++)
        if (qm_engines[i] != NULL && strcmp(qm_engines[i]->name, name) == 0)
            return qm_engines[i];
    return NULL;
}

const struct qm_engine *qm_engine_by_vf_device_id(uint16_t vf_device_id)
{
    for (unsigned i = 0; i < QM_ENGINE_COUNT; i++)
        if (qm_engines[i] != NULL && qm_engines[i]->vf_device_id == vf_device_id)
            return qm_engines[i];
    return NULL;
}

const char *qm_engine_names(void)
{
    /* Keep in step with qm_engines[]. */
    return "zip|sec|hpre";
}

uint32_t qm_engine_cap_read(const struct qm_engine *e, uint32_t off)
{
    for (unsigned i = 0; e != NULL && i < e->ncaps; i++)
        if (e->caps[i].off == off)
            return e->caps[i].val;
    return 0;
}
