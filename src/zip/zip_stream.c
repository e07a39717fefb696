/* zip_stream: the stream-mode context a stateful job reads and leaves.
 *
 * The context lives in guest memory (ZIP_CTX_SIZE bytes at stream_ctx_addr),
 * so the guest can write anything there: every field is checked before the
 * codec sees it, and a context this job cannot continue is a bad SQE, never
 * undefined behaviour. Layout (little-endian, docs/stream-mode.md):
 *   0 magic, 4 version, 5 direction, 6 request type, 7 flags,
 *   8 check, 12 history length, 16 total in, 24 total out,
 *   32 unused bits, 33 their value, 36 pending length, 40 output already
 *   delivered past the mark,
 *   ZIP_CTX_HDR history, ZIP_CTX_HDR + ZIP_CTX_HIST pending bytes.
 */
#include <string.h>

#include <isa-l/crc.h>

#include "common/common.h"
#include "zip/zip_int.h"

uint32_t zip_stream_check_update(unsigned type, uint32_t check, const uint8_t *p, uint64_t n)
{
    if (n == 0)
        return check;
    if (type == ZIP_REQ_ZLIB)
        return isal_adler32(check, p, n);
    if (type == ZIP_REQ_GZIP)
        return crc32_gzip_refl(check, p, n);
    return 0;
}

void zip_stream_hist_append(uint8_t *hist, uint32_t *len, const uint8_t *p, uint64_t n)
{
    if (n == 0)
        return;
    if (n >= ZIP_CTX_HIST) {
        memcpy(hist, p + n - ZIP_CTX_HIST, ZIP_CTX_HIST);
        *len = ZIP_CTX_HIST;
        return;
    }
    uint32_t keep = (uint32_t)AM_MIN((uint64_t)*len, ZIP_CTX_HIST - n);

    memmove(hist, hist + *len - keep, keep);
    memcpy(hist + keep, p, n);
    *len = keep + (uint32_t)n;
}

enum zip_status zip_stream_load(struct zip_engine *e, struct iommu_domain *d, const struct zip_req *q,
                                enum zip_alg_dir dir, const char **why)
{
    struct zip_strm *s = &e->strm;
    const uint8_t *h = e->ctx_in;

    memset(s, 0, sizeof(*s));
    s->hist = e->ctx_in + ZIP_CTX_HDR;
    s->pend = e->ctx_in + ZIP_CTX_HDR + ZIP_CTX_HIST;
    s->dir = (uint8_t)dir;
    s->type = (uint8_t)q->type;
    if (q->new_stream) {
        s->check = q->type == ZIP_REQ_ZLIB ? 1u : 0u;
        return ZIP_ST_OK;
    }
    if (iommu_dma_read(d, q->ctx_addr, e->ctx_in, ZIP_CTX_SIZE)) {
        *why = "stream context not readable";
        return ZIP_ST_DMA_FAULT;
    }
    s->flags = h[7];
    s->check = am_le32(h + 8);
    s->hist_len = am_le32(h + 12);
    s->total_in = am_le64(h + 16);
    s->total_out = am_le64(h + 24);
    s->bits = h[32];
    s->bitval = h[33];
    s->pend_len = am_le32(h + 36);
    s->skip = am_le32(h + 40);
    if (am_le32(h) != ZIP_CTX_MAGIC || h[4] != ZIP_CTX_VERSION) {
        *why = "stream context is not one the device left (magic or version)";
        return ZIP_ST_BAD_SQE;
    }
    if (h[5] != dir || h[6] != q->type) {
        *why = "stream context is of another direction or request type";
        return ZIP_ST_BAD_SQE;
    }
    if (s->flags & ZIP_CTX_ENDED) {
        *why = "stream context belongs to a stream that has ended";
        return ZIP_ST_BAD_SQE;
    }
    if (s->flags & ~(ZIP_CTX_ENDED | ZIP_CTX_TRAILER) || s->hist_len > ZIP_CTX_HIST ||
        s->pend_len > ZIP_CTX_PEND_MAX || s->bits > 7 || (s->bitval >> s->bits) != 0 ||
        (dir == ZIP_ALG_COMPRESS &&
         (s->pend_len || s->bits || s->skip || (s->flags & ZIP_CTX_TRAILER))) ||
        ((s->flags & ZIP_CTX_TRAILER) && (q->type == ZIP_REQ_DEFLATE || s->bits ||
                                          s->pend_len >= (q->type == ZIP_REQ_ZLIB ? 4u : 8u)))) {
        *why = "stream context fields out of range";
        return ZIP_ST_BAD_SQE;
    }
    return ZIP_ST_OK;
}

void zip_stream_store(struct zip_engine *e)
{
    const struct zip_strm *s = &e->strm;
    uint8_t *h = e->ctx_out;

    memset(h, 0, ZIP_CTX_HDR);
    am_st32(h, ZIP_CTX_MAGIC);
    h[4] = ZIP_CTX_VERSION;
    h[5] = s->dir;
    h[6] = s->type;
    h[7] = s->flags;
    am_st32(h + 8, s->check);
    am_st32(h + 12, s->hist_len);
    am_st64(h + 16, s->total_in);
    am_st64(h + 24, s->total_out);
    h[32] = s->bits;
    h[33] = s->bitval;
    am_st32(h + 36, s->pend_len);
    am_st32(h + 40, s->skip);
    if (s->hist != e->ctx_out + ZIP_CTX_HDR)
        memcpy(e->ctx_out + ZIP_CTX_HDR, s->hist, s->hist_len);
    if (s->pend != e->ctx_out + ZIP_CTX_HDR + ZIP_CTX_HIST)
        memcpy(e->ctx_out + ZIP_CTX_HDR + ZIP_CTX_HIST, s->pend, s->pend_len);
    /* The rest is zero: nothing of an earlier context leaks forward. */
    memset(e->ctx_out + ZIP_CTX_HDR + s->hist_len, 0, ZIP_CTX_HIST - s->hist_len);
    memset(e->ctx_out + ZIP_CTX_HDR + ZIP_CTX_HIST + s->pend_len, 0,
           ZIP_CTX_PEND_MAX - s->pend_len);
    e->ctx_out_valid = true;
}
