/* zip_codec: the deflate and inflate loops of one job.
 *
 * ISA-L igzip streams over the job's segments in pieces of at most ZIP_CHUNK
 * bytes. The codec only ever sees the engine's own buffers: an input piece is
 * copied in with iommu_dma_read, an output piece is produced in the output
 * buffer and handed to the job's write op (which may refuse: the job was
 * revoked). So no guest pointer is held across codec steps, no lock of the
 * domain is held by a job, and source and destination ranges that overlap in
 * guest memory are just memory (the result is garbage, as on the device,
 * never undefined behaviour). ISA-L keeps its own copy of the history it
 * needs, so a piece is never touched again once the codec has moved past it.
 *
 * Formats: the driver writes (compress) or skips (decompress) the zlib/gzip
 * header itself, so the device deals in body + trailer only: ISA-L's
 * IGZIP_{ZLIB,GZIP}_NO_HDR writes exactly that, and ISAL_{ZLIB,GZIP}_NO_HDR_VER
 * reads it and checks the trailer.
 */
#include <errno.h>

#include "common/common.h"
#include "zip/zip_int.h"

/* A position in a zip_buf. */
struct zip_cursor {
    const struct zip_buf *buf;
    uint32_t seg;
    uint64_t seg_off;
    uint64_t handed; /* bytes handed out as pieces so far */
};

/* The output piece the codec is writing into: the output buffer standing
 * for the next piece of the destination, or the probe once it is used up. */
struct zip_out {
    struct zip_cursor cur;
    uint8_t *base;
    uint64_t iova;
    uint32_t len;
    uint32_t taken;    /* bytes of this piece already written out */
    bool probe;
    uint64_t produced; /* bytes that reached the destination */
};

static bool zip_cancelled(const struct zip_job *j)
{
    return j->ops->cancelled && j->ops->cancelled(j->opaque);
}

/* The codec gets at most ZIP_CANCEL_STEP bytes of a piece per call, so the
 * cancel flag is polled that often: *avail is cut to the step and the bytes
 * held back are returned, for the caller to add back after the call. */
static uint32_t zip_step_hold(uint32_t *avail)
{
    uint32_t held = *avail > ZIP_CANCEL_STEP ? *avail - ZIP_CANCEL_STEP : 0;

    *avail -= held;
    return held;
}

/* Returns the length (0 at the end) and device address of the next piece,
 * without moving past it. */
static uint32_t zip_cursor_peek(struct zip_cursor *c, uint64_t *iova)
{
    const struct zip_buf *b = c->buf;

    if (c->seg < b->nsegs && c->seg_off == b->segs[c->seg].len) {
        c->seg++;
        c->seg_off = 0;
    }
    if (c->seg == b->nsegs)
        return 0;
    *iova = b->segs[c->seg].iova + c->seg_off;
    return (uint32_t)AM_MIN(b->segs[c->seg].len - c->seg_off, (uint64_t)ZIP_CHUNK);
}

static void zip_cursor_advance(struct zip_cursor *c, uint32_t n)
{
    c->seg_off += n;
    c->handed += n;
}

/* Points next and avail at the next input piece (avail stays 0 at the end). */
static enum zip_status zip_in_next(struct zip_engine *e, const struct zip_job *j,
                                   struct zip_cursor *c, uint8_t **next, uint32_t *avail)
{
    uint64_t iova;
    uint32_t n = zip_cursor_peek(c, &iova);

    if (!n)
        return ZIP_ST_OK;
    if (iommu_dma_read(j->d, iova, e->in_bounce, n))
        return ZIP_ST_DMA_FAULT;
    zip_cursor_advance(c, n);
    *next = e->in_bounce;
    *avail = n;
    return ZIP_ST_OK;
}

/* The destination's writability is checked when its bytes are written (a
 * write op may also refuse), so taking the next piece cannot fail. */
static void zip_out_next(struct zip_engine *e, struct zip_out *o, uint8_t **next, uint32_t *avail)
{
    uint64_t iova = 0;
    uint32_t n = zip_cursor_peek(&o->cur, &iova);

    o->taken = 0;
    o->probe = n == 0;
    if (o->probe) {
        o->base = e->probe;
        o->len = sizeof(e->probe);
    } else {
        zip_cursor_advance(&o->cur, n);
        o->base = e->out_bounce;
        o->iova = iova;
        o->len = n;
    }
    *next = o->base;
    *avail = o->len;
}

/* What zip_out_settle found. */
enum zip_settle { ZIP_SETTLED, ZIP_SETTLE_FAILED, ZIP_SETTLE_REVOKED };

/* Accounts for what the codec wrote into the current piece, given the space
 * it left: writes the new bytes out, and turns any byte in the probe into
 * "destination too small" (*st). */
static enum zip_settle zip_out_settle(const struct zip_job *j, struct zip_out *o, uint32_t avail,
                                      enum zip_status *st)
{
    uint32_t used = o->len - avail;
    int rc;

    if (used == o->taken)
        return ZIP_SETTLED;
    if (o->probe) {
        *st = ZIP_ST_DEST_TOO_SMALL;
        return ZIP_SETTLE_FAILED;
    }
    rc = j->ops->write(j->opaque, o->iova + o->taken, o->base + o->taken, used - o->taken);
    if (rc == -ECANCELED)
        return ZIP_SETTLE_REVOKED;
    if (rc) {
        *st = ZIP_ST_DMA_FAULT;
        return ZIP_SETTLE_FAILED;
    }
    o->produced += used - o->taken;
    o->taken = used;
    return ZIP_SETTLED;
}

int zip_codec_compress(struct zip_engine *e, const struct zip_job *j, const struct zip_req *q,
                       struct zip_result *r)
{
    struct isal_zstream *zs = &e->deflate;
    struct zip_cursor in = { .buf = &e->src };
    struct zip_out out = { .cur = { .buf = &e->dst } };
    enum zip_status st = ZIP_ST_OK;
    bool in_done = false; /* every input byte was handed to the codec */

    isal_deflate_init(zs);
    /* Level 1: the Kunpeng engine is a single-pass, throughput-first LZ77 +
     * Huffman pipeline (hash-limited match search, one block per job), and
     * ISA-L level 1 is the nearest in both ratio and speed; a higher level
     * would make the model several times slower than the device it stands
     * for, and the benchmark compares the model with raw ISA-L. */
    zs->level = 1;
    zs->level_buf = e->level_buf;
    zs->level_buf_size = ISAL_DEF_LVL1_DEFAULT;
    zs->hist_bits = q->hist_bits;
    zs->gzip_flag = q->type == ZIP_REQ_ZLIB   ? IGZIP_ZLIB_NO_HDR
                    : q->type == ZIP_REQ_GZIP ? IGZIP_GZIP_NO_HDR
                                              : IGZIP_DEFLATE;
    zs->flush = NO_FLUSH;
    zs->end_of_stream = 0;
    zs->avail_in = 0;
    zs->avail_out = 0;

    for (;;) {
        uint32_t in_before, out_before, state_before, held;
        enum zip_settle settle;
        int rc;

        if (zip_cancelled(j))
            return -ECANCELED;
        if (zs->avail_in == 0 && !in_done) {
            st = zip_in_next(e, j, &in, &zs->next_in, &zs->avail_in);
            if (st != ZIP_ST_OK)
                break;
            in_done = in.handed == e->src.len;
        }
        if (zs->avail_out == 0)
            zip_out_next(e, &out, &zs->next_out, &zs->avail_out);
        held = zip_step_hold(&zs->avail_in);
        zs->end_of_stream = in_done && held == 0;
        in_before = zs->avail_in;
        out_before = zs->avail_out;
        state_before = zs->internal_state.state;
        rc = isal_deflate(zs);
        if (rc != COMP_OK) {
            am_log(AM_LOG_ERR, "zip", "isal_deflate refused its parameters");
            return -EIO;
        }
        if (zs->avail_in == in_before && zs->avail_out == out_before &&
            zs->internal_state.state == state_before) {
            am_log(AM_LOG_ERR, "zip", "isal_deflate made no progress");
            return -EIO;
        }
        zs->avail_in += held;
        settle = zip_out_settle(j, &out, zs->avail_out, &st);
        if (settle == ZIP_SETTLE_REVOKED)
            return -ECANCELED;
        if (settle == ZIP_SETTLE_FAILED || zs->internal_state.state == ZSTATE_END)
            break;
    }
    r->status = st;
    r->consumed = in.handed - zs->avail_in;
    r->produced = out.produced;
    if (st == ZIP_ST_OK && r->produced > e->src.len)
        r->status = ZIP_ST_NEGATIVE_COMP;
    return 0;
}

int zip_codec_decompress(struct zip_engine *e, const struct zip_job *j, const struct zip_req *q,
                         struct zip_result *r)
{
    struct inflate_state *is = &e->inflate;
    struct zip_cursor in = { .buf = &e->src };
    struct zip_out out = { .cur = { .buf = &e->dst } };
    enum zip_status st = ZIP_ST_OK;
    uint64_t unread;

    isal_inflate_init(is);
    is->crc_flag = q->type == ZIP_REQ_ZLIB   ? ISAL_ZLIB_NO_HDR_VER
                   : q->type == ZIP_REQ_GZIP ? ISAL_GZIP_NO_HDR_VER
                                             : ISAL_DEFLATE;
    is->hist_bits = 0; /* the window field never limits decompression */
    is->avail_in = 0;
    is->avail_out = 0;

    for (;;) {
        uint32_t in_before, out_before, held;
        int32_t bits_before;
        bool stalled;
        enum isal_block_state state_before;
        enum zip_settle settle;
        int rc;

        if (zip_cancelled(j))
            return -ECANCELED;
        if (is->avail_in == 0) {
            st = zip_in_next(e, j, &in, &is->next_in, &is->avail_in);
            if (st != ZIP_ST_OK)
                break;
        }
        if (is->avail_out == 0)
            zip_out_next(e, &out, &is->next_out, &is->avail_out);
        held = zip_step_hold(&is->avail_in);
        in_before = is->avail_in;
        out_before = is->avail_out;
        bits_before = is->read_in_length;
        state_before = is->block_state;
        rc = isal_inflate(is);
        stalled = is->avail_in == in_before && is->avail_out == out_before &&
                  is->read_in_length == bits_before && is->block_state == state_before;
        is->avail_in += held;
        settle = zip_out_settle(j, &out, is->avail_out, &st);
        if (settle == ZIP_SETTLE_REVOKED)
            return -ECANCELED;
        if (settle == ZIP_SETTLE_FAILED)
            break;
        if (rc < 0 || rc == ISAL_NEED_DICT) {
            st = ZIP_ST_CORRUPT; /* bad block, symbol, distance or trailer */
            break;
        }
        if (is->block_state == ISAL_BLOCK_FINISH)
            break;
        if (stalled && held == 0) {
            st = ZIP_ST_CORRUPT; /* the input ended before the stream did */
            break;
        }
    }
    /* ISA-L reads ahead into a bit buffer; whole bytes still in it at the end
     * of the stream were not part of it. */
    unread = is->avail_in;
    if (is->block_state == ISAL_BLOCK_FINISH && is->read_in_length > 0)
        unread += (uint32_t)is->read_in_length / 8;
    r->status = st;
    r->consumed = in.handed - AM_MIN(unread, in.handed);
    r->produced = out.produced;
    return 0;
}
