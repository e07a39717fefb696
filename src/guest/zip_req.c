/* zip_req: the ZIP half of the guest driver: SQE filling, the zlib/gzip
 * headers the driver writes and strips itself, hardware SGL chains.
 * See guest.h for the contract.
 */
#include <errno.h>
#include <string.h>

#include "common/common.h"
#include "guest/guest.h"

#define GZIP_FHCRC 0x02u
#define GZIP_FEXTRA 0x04u
#define GZIP_FNAME 0x08u
#define GZIP_FCOMMENT 0x10u
#define GZIP_FRESERVED 0xe0u

int guest_zip_sqe_build(uint32_t sqe[ZIP_SQE_DWORDS], const struct guest_zip_req *r)
{
    if (!sqe || !r)
        return -EINVAL;
    if (r->type != ZIP_REQ_DEFLATE && r->type != ZIP_REQ_ZLIB && r->type != ZIP_REQ_GZIP)
        return -EINVAL;
    if (r->buf_type != ZIP_BUF_FLAT && r->buf_type != ZIP_BUF_SGL)
        return -EINVAL;
    if (r->window > 4 || r->in_off > ZIP_DW7_OFFSET_MASK || r->out_off > ZIP_DW8_OFFSET_MASK)
        return -EINVAL;
    if (r->stream_flags & ~(GUEST_ZIP_STREAM_FIRST | GUEST_ZIP_STREAM_LAST) ||
        (r->stream_flags && !r->stream_ctx) ||
        (r->stream_ctx && r->stream_ctx > UINT64_MAX - GUEST_ZIP_STREAM_CTX_SIZE))
        return -EINVAL;

    memset(sqe, 0, ZIP_SQE_SIZE);
    sqe[ZIP_SQE_INPUT_LEN] = r->in_len;
    sqe[ZIP_SQE_DEST_AVAIL] = r->dest_avail;
    sqe[ZIP_SQE_DW7] = r->in_off | ZIP_SQE_TYPE_V3 << ZIP_DW7_SQE_TYPE_SHIFT;
    sqe[ZIP_SQE_DW8] = r->out_off;
    sqe[ZIP_SQE_DW9] = (uint32_t)r->type | (uint32_t)r->buf_type << ZIP_DW9_BUF_TYPE_SHIFT |
                       (uint32_t)r->window << ZIP_DW9_WIN_SHIFT;
    sqe[ZIP_SQE_SRC_ADDR_L] = (uint32_t)r->src;
    sqe[ZIP_SQE_SRC_ADDR_H] = (uint32_t)(r->src >> 32);
    sqe[ZIP_SQE_DST_ADDR_L] = (uint32_t)r->dst;
    sqe[ZIP_SQE_DST_ADDR_H] = (uint32_t)(r->dst >> 32);
    if (r->stream_ctx) {
        sqe[ZIP_SQE_DW7] |= ZIP_DW7_STATEFUL |
                            (r->stream_flags & GUEST_ZIP_STREAM_FIRST ? ZIP_DW7_NEW_STREAM : 0) |
                            (r->stream_flags & GUEST_ZIP_STREAM_LAST ? ZIP_DW7_FLUSH : 0);
        sqe[ZIP_SQE_CTX_ADDR_L] = (uint32_t)r->stream_ctx;
        sqe[ZIP_SQE_CTX_ADDR_H] = (uint32_t)(r->stream_ctx >> 32);
    }
    sqe[ZIP_SQE_TAG_L] = (uint32_t)r->tag;
    sqe[ZIP_SQE_TAG_H] = (uint32_t)(r->tag >> 32);
    return 0;
}

int guest_zip_header_write(enum zip_req_type type, uint8_t *buf, size_t cap)
{
    /* zlib: CM 8, CINFO 7 (32 KiB), FLEVEL 2; gzip: deflate, no flags, no
     * mtime, XFL 0, OS 3 (Unix), as the 6.1 driver writes them. */
    static const uint8_t zlib_hdr[GUEST_ZIP_ZLIB_HDR_LEN] = {0x78, 0x9c};
    static const uint8_t gzip_hdr[GUEST_ZIP_GZIP_HDR_LEN] = {0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0x03};
    const uint8_t *hdr;
    size_t len;

    switch (type) {
    case ZIP_REQ_DEFLATE:
        return 0;
    case ZIP_REQ_ZLIB:
        hdr = zlib_hdr;
        len = sizeof(zlib_hdr);
        break;
    case ZIP_REQ_GZIP:
        hdr = gzip_hdr;
        len = sizeof(gzip_hdr);
        break;
    default:
        return -EINVAL;
    }
    if (!buf || cap < len)
        return -ENOSPC;
    memcpy(buf, hdr, len);
    return (int)len;
}

/* Skip a zero-terminated gzip field starting at *pos. */
static int gzip_skip_string(const uint8_t *buf, size_t len, size_t *pos)
{
    const uint8_t *nul = *pos < len ? memchr(buf + *pos, 0, len - *pos) : NULL;

    if (!nul)
        return -EMSGSIZE;
    *pos = (size_t)(nul - buf) + 1;
    return 0;
}

int guest_zip_header_parse(enum zip_req_type type, const uint8_t *buf, size_t len, size_t *hdr_len)
{
    size_t pos;
    uint8_t flg;
    int ret;

    if (!hdr_len || (len && !buf))
        return -EINVAL;
    switch (type) {
    case ZIP_REQ_DEFLATE:
        *hdr_len = 0;
        return 0;
    case ZIP_REQ_ZLIB:
        if (len < GUEST_ZIP_ZLIB_HDR_LEN)
            return -EMSGSIZE;
        /* CM 8, CINFO <= 7, FCHECK, no preset dictionary. */
        if ((buf[0] & 0x0f) != 8 || (buf[0] >> 4) > 7 || ((buf[0] << 8) | buf[1]) % 31 != 0 ||
            (buf[1] & 0x20))
            return -EINVAL;
        *hdr_len = GUEST_ZIP_ZLIB_HDR_LEN;
        return 0;
    case ZIP_REQ_GZIP:
        break;
    default:
        return -EINVAL;
    }
    if (len < GUEST_ZIP_GZIP_HDR_LEN)
        return -EMSGSIZE;
    if (buf[0] != 0x1f || buf[1] != 0x8b || buf[2] != 8 || (buf[3] & GZIP_FRESERVED))
        return -EINVAL;
    flg = buf[3];
    pos = GUEST_ZIP_GZIP_HDR_LEN;
    if (flg & GZIP_FEXTRA) {
        size_t xlen;
        if (len - pos < 2)
            return -EMSGSIZE;
        xlen = (size_t)buf[pos] | (size_t)buf[pos + 1] << 8;
        pos += 2;
        if (len - pos < xlen)
            return -EMSGSIZE;
        pos += xlen;
    }
    if ((flg & GZIP_FNAME) && (ret = gzip_skip_string(buf, len, &pos)))
        return ret;
    if ((flg & GZIP_FCOMMENT) && (ret = gzip_skip_string(buf, len, &pos)))
        return ret;
    if (flg & GZIP_FHCRC) {
        if (len - pos < 2)
            return -EMSGSIZE;
        pos += 2;
    }
    *hdr_len = pos;
    return 0;
}

static uint64_t sgl_count(uint64_t len, uint32_t piece_len, unsigned per_sgl, uint64_t *entries)
{
    uint64_t e = len ? (len + piece_len - 1) / piece_len : 1;

    *entries = e;
    return (e + per_sgl - 1) / per_sgl;
}

static uint64_t sgl_one_size(unsigned per_sgl)
{
    return AM_ALIGN_UP(sizeof(struct zip_sgl_hdr) + (uint64_t)per_sgl * sizeof(struct zip_sgl_entry),
                       (uint64_t)ZIP_SGL_ALIGN);
}

uint64_t guest_sgl_size(uint64_t len, uint32_t piece_len, unsigned per_sgl)
{
    uint64_t entries;

    if (!piece_len || !per_sgl || per_sgl > ZIP_SGL_MAX_ENTRIES)
        return 0;
    return sgl_count(len, piece_len, per_sgl, &entries) * sgl_one_size(per_sgl);
}

int guest_sgl_build(const struct guest_ram *ram, uint64_t sgl_gpa, uint64_t sgl_cap,
                    uint64_t data_gpa, uint64_t len, uint32_t piece_len, unsigned per_sgl)
{
    uint64_t entries, nsgl, one, left = len, pos = data_gpa;

    if (!ram || !piece_len || !per_sgl || per_sgl > ZIP_SGL_MAX_ENTRIES || sgl_gpa % ZIP_SGL_ALIGN)
        return -EINVAL;
    if (!am_range_ok(data_gpa, len, ram->size) || !am_range_ok(sgl_gpa, sgl_cap, ram->size))
        return -EINVAL;
    nsgl = sgl_count(len, piece_len, per_sgl, &entries);
    one = sgl_one_size(per_sgl);
    if (nsgl > ZIP_SGL_MAX_CHAIN || nsgl * one > sgl_cap)
        return -ENOSPC;

    for (uint64_t i = 0; i < nsgl; i++) {
        uint64_t gpa = sgl_gpa + i * one;
        struct zip_sgl_hdr *h = guest_ram_ptr(ram, gpa);
        struct zip_sgl_entry *e = (struct zip_sgl_entry *)(h + 1);
        uint64_t here = AM_MIN((uint64_t)per_sgl, entries - i * per_sgl);

        memset(h, 0, one);
        h->next_dma = i + 1 < nsgl ? gpa + one : 0;
        h->entry_sum_in_chain = (uint16_t)AM_MIN(entries - i * per_sgl, (uint64_t)UINT16_MAX);
        h->entry_sum_in_sgl = (uint16_t)here;
        h->entry_length_in_sgl = (uint16_t)per_sgl;
        for (uint64_t k = 0; k < here; k++) {
            uint32_t l = (uint32_t)AM_MIN(left, (uint64_t)piece_len);
            e[k].buf = pos;
            e[k].len = l;
            pos += l;
            left -= l;
        }
        guest_ram_mark_dirty(ram, gpa, one);
    }
    return 0;
}
