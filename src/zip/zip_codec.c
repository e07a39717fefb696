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
#include <string.h>

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

/* Appends n bytes the engine makes itself (a trailer) after the codec's
 * output, through the same pieces. 0, or -ECANCELED (revoked). */
static int zip_out_put(struct zip_engine *e, const struct zip_job *j, struct zip_out *o,
                       uint8_t **next, uint32_t *avail, const uint8_t *p, unsigned n,
                       enum zip_status *st)
{
    while (n) {
        if (*avail == 0)
            zip_out_next(e, o, next, avail);
        unsigned k = AM_MIN(n, *avail);

        memcpy(*next, p, k);
        *next += k;
        *avail -= k;
        p += k;
        n -= k;
        switch (zip_out_settle(j, o, *avail, st)) {
        case ZIP_SETTLE_REVOKED:
            return -ECANCELED;
        case ZIP_SETTLE_FAILED:
            return 0;
        case ZIP_SETTLED:
            break;
        }
    }
    return 0;
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
    /* Stream mode: raw deflate continuing from the history, a sync flush at
     * the end of every piece but the last, the trailer written here over the
     * whole stream (ISA-L would checksum one piece only). */
    if (q->stateful) {
        zs->gzip_flag = IGZIP_DEFLATE;
        if (!q->end)
            zs->flush = SYNC_FLUSH;
        if (e->strm.hist_len && isal_deflate_set_dict(zs, e->strm.hist, e->strm.hist_len) != COMP_OK) {
            am_log(AM_LOG_ERR, "zip", "isal_deflate_set_dict refused the history");
            return -EIO;
        }
    }
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
            if (q->stateful) {
                e->strm.check = zip_stream_check_update(q->type, e->strm.check, zs->next_in,
                                                        zs->avail_in);
                zip_stream_hist_append(e->strm.hist, &e->strm.hist_len, zs->next_in, zs->avail_in);
            }
        }
        if (zs->avail_out == 0)
            zip_out_next(e, &out, &zs->next_out, &zs->avail_out);
        held = zip_step_hold(&zs->avail_in);
        zs->end_of_stream = in_done && held == 0 && (!q->stateful || q->end);
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
        /* A piece that is not the last: done once every byte went in and the
         * flush left room behind it. */
        if (q->stateful && !q->end && in_done && zs->avail_in == 0 && zs->avail_out != 0)
            break;
    }
    if (st == ZIP_ST_OK && q->stateful && q->end && q->type != ZIP_REQ_DEFLATE) {
        uint8_t t[8];
        unsigned n = 4;

        if (q->type == ZIP_REQ_ZLIB) {
            am_st32(t, __builtin_bswap32(e->strm.check)); /* Adler-32 big-endian */
        } else {
            am_st32(t, e->strm.check);
            am_st32(t + 4, (uint32_t)(e->strm.total_in + (in.handed - zs->avail_in)));
            n = 8;
        }
        int rc = zip_out_put(e, j, &out, &zs->next_out, &zs->avail_out, t, n, &st);

        if (rc)
            return rc;
    }
    r->status = st;
    r->consumed = in.handed - zs->avail_in;
    r->produced = out.produced;
    if (q->stateful) {
        e->strm.total_in += r->consumed;
        e->strm.total_out += r->produced;
        if (q->end)
            e->strm.flags |= ZIP_CTX_ENDED;
    } else if (st == ZIP_ST_OK && r->produced > e->src.len) {
        r->status = ZIP_ST_NEGATIVE_COMP;
    }
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

/* ---- stream mode decompression ------------------------------------------ */

/* Positions count bytes of (the context's pending bytes ∥ this job's input).
 * The mark is where the inflater last stood at a deflate block boundary (at
 * first: where the context left it): the next piece restarts there, makes
 * again the output delivered past it (the context's skip) without
 * delivering it twice, and goes on. */
struct zip_mark {
    uint64_t in;      /* bytes taken, the partly used last one included */
    uint8_t bits;     /* unused (high) bits of that last byte, and their value */
    uint8_t bitval;
    uint32_t check;   /* of the output before it */
};

/* The bytes from position `from` to `upto` into the new pending buffer: the
 * old pending part from the context, the rest read again from the source
 * (input pieces are not kept). */
static enum zip_status zip_pend_rebuild(struct zip_engine *e, const struct zip_job *j,
                                        uint32_t old_pend, uint64_t from, uint64_t upto)
{
    uint8_t *dst = e->ctx_out + ZIP_CTX_HDR + ZIP_CTX_HIST;
    struct zip_cursor c = { .buf = &e->src };
    uint64_t pos = old_pend, n = 0;

    if (from < old_pend) {
        memcpy(dst, e->strm.pend + from, old_pend - from);
        n = old_pend - from;
    }
    while (pos < upto) {
        uint64_t iova;
        uint32_t k = zip_cursor_peek(&c, &iova);

        if (k == 0)
            break;
        k = (uint32_t)AM_MIN((uint64_t)k, upto - pos);
        if (pos + k > from) {
            uint64_t skip = from > pos ? from - pos : 0;

            if (iommu_dma_read(j->d, iova + skip, dst + n, k - skip))
                return ZIP_ST_DMA_FAULT;
            n += k - skip;
        }
        zip_cursor_advance(&c, k);
        pos += k;
    }
    e->strm.pend = dst;
    e->strm.pend_len = (uint32_t)n;
    return ZIP_ST_OK;
}

static bool zip_trailer_ok(unsigned type, const uint8_t *t, uint32_t check, uint64_t total_out)
{
    if (type == ZIP_REQ_ZLIB)
        return am_le32(t) == __builtin_bswap32(check); /* Adler-32 big-endian */
    return am_le32(t) == check && am_le32(t + 4) == (uint32_t)total_out;
}

/* One piece of a deflate stream, with zlib (it stops at block boundaries
 * and restarts from one with inflatePrime and a dictionary), as
 * docs/stream-mode.md defines it. */
int zip_codec_decompress_stream(struct zip_engine *e, const struct zip_job *j,
                                const struct zip_req *q, struct zip_result *r)
{
    struct zip_strm *s = &e->strm;
    z_stream *z = &e->zs;
    struct zip_cursor in = { .buf = &e->src };
    struct zip_out out = { .cur = { .buf = &e->dst } };
    enum zip_status st = ZIP_ST_OK;
    const uint32_t base = s->pend_len;
    const unsigned tlen = q->type == ZIP_REQ_ZLIB ? 4 : q->type == ZIP_REQ_GZIP ? 8 : 0;
    struct zip_mark mark = { .bits = s->bits, .bitval = s->bitval, .check = s->check };
    bool out_full = false, trailer = s->flags & ZIP_CTX_TRAILER, ended = false;
    uint64_t fed = 0, out_now = 0;
    uint32_t check = s->check;
    /* Output the last piece delivered past its mark: made again, not again
     * delivered (into the input bounce buffer's twin, the probe's space). */
    uint64_t skip_left = s->skip, since = s->skip;
    /* The last byte taken, with the context's primed bits at the top. */
    unsigned last = (unsigned)s->bitval << (8 - s->bits);
    uint8_t tbuf[8];
    unsigned tgot = 0, dry = 0;

    if (inflateReset(z) != Z_OK ||
        (s->hist_len && inflateSetDictionary(z, s->hist, s->hist_len) != Z_OK) ||
        (s->bits && inflatePrime(z, s->bits, s->bitval) != Z_OK))
        return -EIO;
    z->next_in = s->pend;
    z->avail_in = base;
    fed = base;
    if (trailer) {
        memcpy(tbuf, s->pend, base); /* the trailer's first bytes */
        tgot = base;
        z->avail_in = 0;
    }
    z->avail_out = 0;
    for (;;) {
        if (zip_cancelled(j))
            return -ECANCELED;
        if (z->avail_in == 0) {
            uint8_t *p = NULL;
            uint32_t n = 0;

            st = zip_in_next(e, j, &in, &p, &n);
            if (st != ZIP_ST_OK)
                break;
            /* Out of input: one more call with room for output, which lets
             * zlib finish what its bit buffer holds (the end of a stored
             * final block is seen only then). */
            if (n == 0 && (trailer || dry++ > 0))
                break;
            if (n) {
                z->next_in = p;
                z->avail_in = n;
                fed += n;
            }
        }
        if (trailer) {
            unsigned k = (unsigned)AM_MIN((uint64_t)(tlen - tgot), (uint64_t)z->avail_in);

            memcpy(tbuf + tgot, z->next_in, k);
            tgot += k;
            z->next_in += k;
            z->avail_in -= k;
            if (tgot == tlen) {
                if (!zip_trailer_ok(q->type, tbuf, check, s->total_out + out_now))
                    st = ZIP_ST_CORRUPT;
                mark.in = fed - z->avail_in;
                ended = true;
                break;
            }
            continue;
        }
        uint8_t *in_before = z->next_in;
        int zr;
        uint32_t made;

        if (skip_left) {
            z->next_out = e->out_bounce;
            z->avail_out = (uInt)AM_MIN(skip_left, (uint64_t)ZIP_CHUNK);
            zr = inflate(z, Z_BLOCK);
            made = (uint32_t)(z->next_out - e->out_bounce);
            check = zip_stream_check_update(q->type, check, e->out_bounce, made);
            skip_left -= made;
            z->avail_out = 0; /* the next output goes to the destination */
            if (z->next_in != in_before)
                last = z->next_in[-1];
            if (zr == Z_NEED_DICT || zr == Z_DATA_ERROR || zr == Z_MEM_ERROR ||
                zr == Z_STREAM_ERROR || ((zr == Z_STREAM_END || (z->data_type & 128)) && skip_left)) {
                st = ZIP_ST_CORRUPT; /* or a context that says more than there was */
                break;
            }
            if (zr != Z_STREAM_END && !(z->data_type & 128))
                continue;
            goto boundary;
        }
        if (z->avail_out == 0) {
            uint8_t *p;
            uint32_t n;

            zip_out_next(e, &out, &p, &n);
            z->next_out = p;
            z->avail_out = n;
        }
        uint8_t *out_before = z->next_out;

        zr = inflate(z, Z_BLOCK);
        made = (uint32_t)(z->next_out - out_before);
        if (z->next_in != in_before)
            last = z->next_in[-1];
        if (made)
            check = zip_stream_check_update(q->type, check, out_before, made);
        enum zip_settle settle = zip_out_settle(j, &out, z->avail_out, &st);

        /* Only what reached the destination counts (not the probe's bytes). */
        since += out.produced - out_now;
        out_now = out.produced;

        if (settle == ZIP_SETTLE_REVOKED)
            return -ECANCELED;
        if (settle == ZIP_SETTLE_FAILED) {
            out_full = st == ZIP_ST_DEST_TOO_SMALL; /* the piece ends at its last mark */
            if (out_full)
                st = ZIP_ST_OK;
            break;
        }
        if (zr == Z_NEED_DICT || zr == Z_DATA_ERROR || zr == Z_MEM_ERROR || zr == Z_STREAM_ERROR) {
            st = ZIP_ST_CORRUPT;
            break;
        }
        if (zr != Z_STREAM_END && !(z->data_type & 128))
            continue;
    boundary:;
        /* A block boundary (bits < 8 there: zlib takes bytes one at a time). */
        uInt dl = ZIP_CTX_HIST;

        since = 0;
        mark.in = fed - z->avail_in;
        mark.bits = (uint8_t)(z->data_type & 7);
        mark.bitval = mark.bits ? (uint8_t)(last >> (8 - mark.bits)) : 0;
        mark.check = check;
        if (inflateGetDictionary(z, e->ctx_out + ZIP_CTX_HDR, &dl) != Z_OK)
            return -EIO;
        s->hist = e->ctx_out + ZIP_CTX_HDR;
        s->hist_len = dl;
        if (zr == Z_STREAM_END) {
            mark.bits = 0; /* the trailer starts on a byte boundary */
            if (tlen == 0) {
                ended = true;
                break;
            }
            trailer = true;
        }
    }
    if (st != ZIP_ST_OK)
        goto refuse;
    if (ended) {
        s->pend_len = 0;
        fed = mark.in;
    } else if (trailer) {
        /* Deflate done, the trailer not yet whole: keep its bytes. */
        memcpy(e->ctx_out + ZIP_CTX_HDR + ZIP_CTX_HIST, tbuf, tgot);
        s->pend = e->ctx_out + ZIP_CTX_HDR + ZIP_CTX_HIST;
        s->pend_len = tgot;
        mark.check = check;
    } else {
        /* An unfinished block: its bytes so far go into the context, as far
         * as it holds them; the driver gives the rest again (consumed). */
        if (fed - mark.in > ZIP_CTX_PEND_MAX) {
            fed = mark.in + ZIP_CTX_PEND_MAX;
            if (fed <= base) {
                /* The context is full of this block. Output still moves
                 * it forward (the next piece skips what went out); with
                 * none, the piece must bring the rest of the block. */
                if (out_now == 0) {
                    st = ZIP_ST_STREAM_BLOCK;
                    goto refuse;
                }
                fed = base;
            }
        }
        st = zip_pend_rebuild(e, j, base, mark.in, fed);
        if (st != ZIP_ST_OK)
            goto refuse;
        if (out_full && fed == base && out_now == 0) {
            st = ZIP_ST_DEST_TOO_SMALL; /* not one block fits the output space */
            goto refuse;
        }
    }
    s->bits = ended || trailer ? 0 : mark.bits;
    s->bitval = ended || trailer ? 0 : mark.bitval;
    s->check = mark.check;
    s->skip = ended || trailer ? 0 : (uint32_t)AM_MIN(since, (uint64_t)UINT32_MAX);
    s->flags = ended ? ZIP_CTX_ENDED : trailer ? ZIP_CTX_TRAILER : 0;
    r->produced = out_now;
    r->consumed = fed > base ? fed - base : 0;
    s->total_out += r->produced;
    s->total_in += r->consumed;
    r->status = ended ? ZIP_ST_END_OF_STREAM : q->end ? ZIP_ST_CORRUPT : ZIP_ST_OK;
    return 0;
refuse:
    /* The context stays as it was: the piece can be given again. */
    r->status = st;
    r->consumed = 0;
    r->produced = 0;
    return 0;
}
