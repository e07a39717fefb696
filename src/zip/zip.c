/* zip: the engine object, SQE decode and validation, and the result write-back.
 *
 * Decisions where the spec is silent (also in the report):
 * - Stream mode (dw7 bit 26) as docs/stream-mode.md defines it: the
 *   context at stream_ctx_addr is read before the job and the one it leaves
 *   is written with its commit (zip_engine_stream_ctx), never before. The
 *   flush and new-stream bits without bit 26 are a bad SQE (0x01).
 * - Every field is validated whatever the direction: the window must be 0..4
 *   on decompression too, although it is used only as a compression hint.
 *   Reserved bits are ignored, as hardware does.
 * - Empty input: compression emits a complete empty stream (raw: 03 00, plus
 *   the trailer for zlib/gzip); since that is larger than the input the status
 *   is 0x0d. Decompressing zero bytes is 0x03 (no stream in it).
 * - dw0/dw1 always tell the bytes actually read/written, also on errors (0
 *   when the job is refused before any data moves).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "zip/zip_int.h"

/* Window field -> ISA-L history bits. 24K is not a power of two: use 16K,
 * never more than the driver allowed. */
static const uint8_t zip_win_hist_bits[ZIP_WIN_MAX + 1] = { 12, 13, 14, 14, 15 };

int zip_engine_create(struct zip_engine **out)
{
    struct zip_engine *e = calloc(1, sizeof(*e));

    if (!e)
        return -ENOMEM;
    e->level_buf = malloc(ISAL_DEF_LVL1_DEFAULT);
    e->ctx_in = malloc(ZIP_CTX_SIZE);
    e->ctx_out = malloc(ZIP_CTX_SIZE);
    e->in_bounce = malloc(ZIP_CHUNK);
    e->out_bounce = malloc(ZIP_CHUNK);
    /* Not zeroed: the pages are touched only as far as SGL walks reach. */
    e->src.segs = malloc(ZIP_BUF_MAX_SEGS * sizeof(struct zip_seg));
    e->dst.segs = malloc(ZIP_BUF_MAX_SEGS * sizeof(struct zip_seg));
    if (!e->level_buf || !e->in_bounce || !e->out_bounce || !e->src.segs || !e->dst.segs ||
        !e->ctx_in || !e->ctx_out) {
        zip_engine_destroy(e);
        return -ENOMEM;
    }
    /* Raw inflate for stream mode, reset per piece. */
    if (inflateInit2(&e->zs, -15) != Z_OK) {
        zip_engine_destroy(e);
        return -ENOMEM;
    }
    e->zs_ready = true;
    *out = e;
    return 0;
}

void zip_engine_destroy(struct zip_engine *e)
{
    if (!e)
        return;
    if (e->zs_ready)
        inflateEnd(&e->zs);
    free(e->ctx_in);
    free(e->ctx_out);
    free(e->level_buf);
    free(e->in_bounce);
    free(e->out_bounce);
    free(e->src.segs);
    free(e->dst.segs);
    free(e);
}

static uint64_t zip_sqe_addr(const uint32_t *sqe, unsigned lo)
{
    return (uint64_t)sqe[lo] | (uint64_t)sqe[lo + 1] << 32;
}

/* Checks every field of the SQE that the engine uses (dword layout in
 * zip_hw.h) and fills q. */
static enum zip_status zip_sqe_decode(const uint32_t *sqe, struct zip_req *q, const char **why)
{
    uint32_t dw7 = sqe[ZIP_SQE_DW7], dw9 = sqe[ZIP_SQE_DW9];
    unsigned req_type = dw9 & ZIP_DW9_REQ_TYPE_MASK;
    unsigned buf_type = (dw9 >> ZIP_DW9_BUF_TYPE_SHIFT) & ZIP_DW9_BUF_TYPE_MASK;
    unsigned win = (dw9 >> ZIP_DW9_WIN_SHIFT) & ZIP_DW9_WIN_MASK;

    if (dw7 >> ZIP_DW7_SQE_TYPE_SHIFT != ZIP_SQE_TYPE_V3) {
        *why = "sqe_type is not 3";
        return ZIP_ST_BAD_SQE;
    }
    q->stateful = dw7 & ZIP_DW7_STATEFUL;
    q->new_stream = dw7 & ZIP_DW7_NEW_STREAM;
    q->end = dw7 & ZIP_DW7_FLUSH;
    q->ctx_addr = zip_sqe_addr(sqe, ZIP_SQE_CTX_ADDR_L);
    if (!q->stateful && (dw7 & ZIP_DW7_STATEFUL_BITS)) {
        *why = "flush or new-stream bit without stream mode (dw7 bit 26)";
        return ZIP_ST_BAD_SQE;
    }
    if (q->stateful && (q->ctx_addr == 0 || q->ctx_addr > UINT64_MAX - ZIP_CTX_SIZE)) {
        *why = "stream mode without a context buffer, or one that wraps";
        return ZIP_ST_BAD_SQE;
    }
    if (req_type != ZIP_REQ_DEFLATE && req_type != ZIP_REQ_ZLIB && req_type != ZIP_REQ_GZIP) {
        *why = "request type is not 1, 2 or 3";
        return ZIP_ST_BAD_SQE;
    }
    if (buf_type != ZIP_BUF_FLAT && buf_type != ZIP_BUF_SGL) {
        *why = "buffer type is not 0 or 1";
        return ZIP_ST_BAD_SQE;
    }
    if (win > ZIP_WIN_MAX) {
        *why = "window is not 0..4";
        return ZIP_ST_BAD_SQE;
    }
    q->type = req_type;
    q->buf_type = buf_type;
    q->hist_bits = zip_win_hist_bits[win];
    q->in_off = dw7 & ZIP_DW7_OFFSET_MASK;
    q->in_len = sqe[ZIP_SQE_INPUT_LEN];
    q->out_off = sqe[ZIP_SQE_DW8] & ZIP_DW8_OFFSET_MASK;
    q->out_len = sqe[ZIP_SQE_DEST_AVAIL];
    q->src_addr = zip_sqe_addr(sqe, ZIP_SQE_SRC_ADDR_L);
    q->dst_addr = zip_sqe_addr(sqe, ZIP_SQE_DST_ADDR_L);
    /* Offsets are 24-bit and lengths 32-bit: the sums cannot wrap in 64. */
    if ((uint64_t)q->in_off + q->in_len > ZIP_MAX_REQUEST ||
        (uint64_t)q->out_off + q->out_len > ZIP_MAX_REQUEST) {
        *why = "offset + length over 8 MiB";
        return ZIP_ST_TOO_BIG;
    }
    return ZIP_ST_OK;
}

static enum zip_status zip_job_buffers(struct zip_engine *e, struct iommu_domain *d,
                                       const struct zip_req *q, const char **why)
{
    enum zip_status st;

    if (q->buf_type == ZIP_BUF_FLAT) {
        st = zip_buf_from_flat(&e->src, q->src_addr, q->in_off, q->in_len, why);
        if (st == ZIP_ST_OK)
            st = zip_buf_from_flat(&e->dst, q->dst_addr, q->out_off, q->out_len, why);
        return st;
    }
    st = zip_buf_from_sgl(&e->src, &e->sgl, d, q->src_addr, q->in_off, q->in_len, false, why);
    if (st == ZIP_ST_OK)
        st = zip_buf_from_sgl(&e->dst, &e->sgl, d, q->dst_addr, q->out_off, q->out_len, true,
                              why);
    return st;
}

static void zip_stat_add(uint64_t *counter, uint64_t n)
{
    __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

/* The ops of a job run without a governor: writes go straight to the domain. */
static int zip_direct_write(void *opaque, uint64_t iova, const void *buf, uint64_t len)
{
    return iommu_dma_write(opaque, iova, buf, len);
}

static const struct zip_job_ops zip_direct_ops = { .write = zip_direct_write };

int zip_engine_run(struct zip_engine *e, struct iommu_domain *d, uint32_t sqe[ZIP_SQE_DWORDS],
                   enum zip_alg_dir dir, const struct zip_job_ops *ops, void *opaque)
{
    struct zip_job j = { .d = d, .ops = ops ? ops : &zip_direct_ops, .opaque = ops ? opaque : d };
    struct zip_result r = { .status = ZIP_ST_OK };
    const char *why = "";
    struct zip_req q;
    int rc = 0;

    if (!e || !d || !sqe || (dir != ZIP_ALG_COMPRESS && dir != ZIP_ALG_DECOMPRESS) ||
        (ops && !ops->write))
        return -EINVAL;
    if (j.ops->cancelled && j.ops->cancelled(j.opaque))
        goto cancelled;

    e->ctx_out_valid = false;
    r.status = zip_sqe_decode(sqe, &q, &why);
    if (r.status == ZIP_ST_OK)
        r.status = zip_job_buffers(e, d, &q, &why);
    if (r.status == ZIP_ST_OK && q.stateful)
        r.status = zip_stream_load(e, d, &q, dir, &why);
    if (r.status == ZIP_ST_OK) {
        if (dir == ZIP_ALG_COMPRESS)
            rc = zip_codec_compress(e, &j, &q, &r);
        else if (q.stateful)
            rc = zip_codec_decompress_stream(e, &j, &q, &r);
        else
            rc = zip_codec_decompress(e, &j, &q, &r);
        if (rc == -ECANCELED)
            goto cancelled;
        if (rc)
            return rc;
        if (r.status == ZIP_ST_DMA_FAULT)
            why = "DMA fault on the data";
        else if (r.status == ZIP_ST_CORRUPT)
            why = "corrupt stream or trailer mismatch";
        else if (r.status == ZIP_ST_DEST_TOO_SMALL)
            why = "destination too small";
        else if (r.status == ZIP_ST_STREAM_BLOCK)
            why = "a deflate block longer than the stream context holds, cut between pieces";
        if (q.stateful && (r.status == ZIP_ST_OK || r.status == ZIP_ST_END_OF_STREAM)) {
            zip_stream_store(e);
            e->ctx_iova = q.ctx_addr;
        }
    }

    e->last_error = why;
    if (!zip_status_is_success(r.status))
        zip_stat_add(&e->stats.errors, 1);
    sqe[ZIP_SQE_CONSUMED] = (uint32_t)r.consumed;
    sqe[ZIP_SQE_PRODUCED] = (uint32_t)r.produced;
    sqe[ZIP_SQE_DW3] = (sqe[ZIP_SQE_DW3] & ~ZIP_DW3_STATUS_MASK) | r.status;
    zip_stat_add(&e->stats.jobs, 1);
    zip_stat_add(&e->stats.bytes_in, r.consumed);
    zip_stat_add(&e->stats.bytes_out, r.produced);
    return 0;

cancelled:
    zip_stat_add(&e->stats.cancelled, 1);
    return -ECANCELED;
}

const char *zip_engine_last_error(const struct zip_engine *e)
{
    return e->last_error ? e->last_error : "";
}

bool zip_engine_stream_ctx(const struct zip_engine *e, uint64_t *iova, const void **buf,
                           uint32_t *len)
{
    if (!e->ctx_out_valid)
        return false;
    *iova = e->ctx_iova;
    *buf = e->ctx_out;
    *len = ZIP_CTX_SIZE;
    return true;
}

void zip_engine_stats_get(const struct zip_engine *e, struct zip_engine_stats *out)
{
    out->jobs = __atomic_load_n(&e->stats.jobs, __ATOMIC_RELAXED);
    out->cancelled = __atomic_load_n(&e->stats.cancelled, __ATOMIC_RELAXED);
    out->errors = __atomic_load_n(&e->stats.errors, __ATOMIC_RELAXED);
    out->bytes_in = __atomic_load_n(&e->stats.bytes_in, __ATOMIC_RELAXED);
    out->bytes_out = __atomic_load_n(&e->stats.bytes_out, __ATOMIC_RELAXED);
}
