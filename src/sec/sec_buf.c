/* sec_buf: a BD's flat buffer or hardware SGL chain as DMA segments, and
 * the copies between them and the engine's host buffers. Only SGL
 * descriptors are read while describing; data moves in gather/scatter.
 *
 * SGL walk (the QM's hisi_acc_hw_sgl, zip_hw.h): a 64-byte header (next
 * SGL's address, 0 at the end; entry_sum_in_sgl valid entries, at most
 * entry_length_in_sgl and 255) followed by 32-byte entries (address,
 * length). Entries of length 0 are skipped; the walk stops once the bytes
 * the BD uses are collected. A chain that ends early or runs past
 * SEC_SGL_MAX_CHAIN SGLs (a loop) is SEC_E_BAD_SGL. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/common.h"
#include "sec/sec_int.h"
#include "zip/zip_hw.h" /* the QM's hardware SGL layout */

int sec_fail(struct sec_engine *e, int err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(e->last_error, sizeof(e->last_error), fmt, ap);
    va_end(ap);
    return err;
}

bool sec_job_cancelled(struct sec_engine *e)
{
    return e->ops != NULL && e->ops->cancelled != NULL && e->ops->cancelled(e->opaque);
}

static int sec_buf_append(struct sec_buf *b, uint64_t iova, uint64_t len)
{
    struct sec_seg *last = b->nsegs ? &b->segs[b->nsegs - 1] : NULL;

    if (last != NULL && last->iova + last->len == iova) {
        last->len += len;
    } else {
        if (b->nsegs == b->cap) {
            unsigned ncap = b->cap ? 2 * b->cap : 16;
            struct sec_seg *n = realloc(b->segs, ncap * sizeof(*n));

            if (n == NULL)
                return -ENOMEM;
            b->segs = n;
            b->cap = ncap;
        }
        b->segs[b->nsegs++] = (struct sec_seg){.iova = iova, .len = len};
    }
    b->len += len;
    return 0;
}

void sec_buf_free(struct sec_buf *b)
{
    free(b->segs);
    *b = (struct sec_buf){0};
}

/* Takes entries of one SGL until *want bytes are collected. */
static int sec_sgl_take(struct sec_engine *e, struct sec_buf *b, const struct zip_sgl_entry *ent,
                        unsigned n, uint64_t *want)
{
    for (unsigned i = 0; i < n && *want; i++) {
        uint64_t len = ent[i].len, end;
        int r;

        if (len == 0)
            continue;
        if (am_add_overflows_u64(ent[i].buf, len, &end))
            return sec_fail(e, SEC_E_BAD_SGL, "SGL entry address + length wraps");
        if (len > *want)
            len = *want;
        r = sec_buf_append(b, ent[i].buf, len);
        if (r)
            return r;
        *want -= len;
    }
    return 0;
}

int sec_buf_describe(struct sec_engine *e, struct sec_buf *b, unsigned type, uint64_t addr,
                     uint64_t len)
{
    struct zip_sgl_entry ent[SEC_SGL_MAX_ENTRIES];
    uint64_t end, want = len;

    b->nsegs = 0;
    b->len = 0;
    if (type == SEC_ADDR_PBUF) {
        if (am_add_overflows_u64(addr, len, &end))
            return sec_fail(e, SEC_E_BAD_BD, "flat buffer address + length wraps");
        return len ? sec_buf_append(b, addr, len) : 0;
    }
    if (type != SEC_ADDR_SGL)
        return sec_fail(e, SEC_E_BAD_BD, "address type %u (PRP or reserved) not supported", type);
    for (unsigned k = 0; want > 0; k++) {
        struct zip_sgl_hdr h;
        int r;

        if (addr == 0)
            return sec_fail(e, SEC_E_BAD_SGL, "SGL chain ends %llu bytes short",
                            (unsigned long long)want);
        if (k == SEC_SGL_MAX_CHAIN)
            return sec_fail(e, SEC_E_BAD_SGL, "SGL chain longer than %u SGLs (a loop?)",
                            SEC_SGL_MAX_CHAIN);
        if (iommu_dma_read(e->d, addr, &h, sizeof(h)) != 0)
            return sec_fail(e, SEC_E_DMA_FAULT, "SGL header at %#llx unreadable",
                            (unsigned long long)addr);
        if (h.entry_sum_in_sgl > h.entry_length_in_sgl || h.entry_sum_in_sgl > SEC_SGL_MAX_ENTRIES)
            return sec_fail(e, SEC_E_BAD_SGL, "SGL at %#llx: %u entries of a capacity of %u",
                            (unsigned long long)addr, h.entry_sum_in_sgl, h.entry_length_in_sgl);
        if (h.entry_sum_in_sgl &&
            iommu_dma_read(e->d, addr + sizeof(h), ent, (uint64_t)h.entry_sum_in_sgl * sizeof(ent[0])))
            return sec_fail(e, SEC_E_DMA_FAULT, "SGL entries at %#llx unreadable",
                            (unsigned long long)(addr + sizeof(h)));
        r = sec_sgl_take(e, b, ent, h.entry_sum_in_sgl, &want);
        if (r)
            return r;
        addr = h.next_dma;
    }
    return 0;
}

int sec_buf_gather(struct sec_engine *e, const struct sec_buf *b, uint8_t *to, uint64_t len)
{
    uint64_t done = 0;

    for (unsigned i = 0; i < b->nsegs && done < len; i++) {
        uint64_t n = b->segs[i].len < len - done ? b->segs[i].len : len - done;

        if (iommu_dma_read(e->d, b->segs[i].iova, to + done, n) != 0)
            return sec_fail(e, SEC_E_DMA_FAULT, "read of %llu bytes at %#llx faulted",
                            (unsigned long long)n, (unsigned long long)b->segs[i].iova);
        done += n;
    }
    return 0;
}

/* One piece of at most SEC_DIRECT_PIECE bytes: in place when the domain
 * serves a pointer, through e->bounce otherwise. */
static int sec_piece(struct sec_engine *e, uint64_t iova, uint32_t n,
                     int (*fn)(struct sec_engine *e, const uint8_t *p, uint32_t n, void *arg),
                     void *arg)
{
    void *p;
    int r;

    iommu_dma_begin(e->d);
    r = iommu_translate(e->d, iova, n, IOMMU_READ, &p);
    if (r == 0)
        r = fn(e, p, n, arg);
    iommu_dma_end(e->d);
    if (r == 0)
        return 0;
    if (r == -EFAULT) /* counted by the domain */
        return sec_fail(e, SEC_E_DMA_FAULT, "read of %u bytes at %#llx faulted", n,
                        (unsigned long long)iova);
    if (r != -EREMOTE)
        return r; /* fn's */
    if (iommu_dma_read(e->d, iova, e->bounce, n) != 0)
        return sec_fail(e, SEC_E_DMA_FAULT, "read of %u bytes at %#llx faulted", n,
                        (unsigned long long)iova);
    return fn(e, e->bounce, n, arg);
}

int sec_buf_read_pieces(struct sec_engine *e, const struct sec_buf *b, uint64_t off, uint64_t len,
                        int (*fn)(struct sec_engine *e, const uint8_t *p, uint32_t n, void *arg),
                        void *arg)
{
    uint64_t pos = 0, handed = 0, next_poll = SEC_CHUNK; /* pos: buffer offset of segment i */

    for (unsigned i = 0; i < b->nsegs && len > 0; pos += b->segs[i].len, i++) {
        const struct sec_seg *s = &b->segs[i];
        uint64_t skip, n;

        if (off >= pos + s->len)
            continue;
        skip = off - pos;
        n = s->len - skip < len ? s->len - skip : len;
        for (uint64_t k = 0; k < n;) {
            uint32_t piece = n - k < SEC_DIRECT_PIECE ? (uint32_t)(n - k) : SEC_DIRECT_PIECE;
            int r;

            if (handed >= next_poll) {
                if (sec_job_cancelled(e))
                    return -ECANCELED;
                next_poll += SEC_CHUNK;
            }
            r = sec_piece(e, s->iova + skip + k, piece, fn, arg);
            if (r)
                return r;
            k += piece;
            handed += piece;
        }
        off += n;
        len -= n;
    }
    if (len > 0)
        return sec_fail(e, SEC_E_BAD_SGL, "source holds %llu bytes too few",
                        (unsigned long long)len);
    return 0;
}

bool sec_buf_overlaps(const struct sec_buf *b, uint64_t iova, uint64_t len)
{
    uint64_t end;

    if (len == 0)
        return false;
    if (am_add_overflows_u64(iova, len, &end))
        return true;
    for (unsigned i = 0; i < b->nsegs; i++) {
        uint64_t s = b->segs[i].iova, s_end;

        if (am_add_overflows_u64(s, b->segs[i].len, &s_end) ||
            (b->segs[i].len > 0 && iova < s_end && s < end))
            return true;
    }
    return false;
}

/* One write through the caller (or straight to the domain without ops);
 * held for the caller's commit when the job is in place. */
static int sec_write(struct sec_engine *e, uint64_t iova, const uint8_t *p, uint64_t n)
{
    int r;

    if (e->ops == NULL || e->ops->write == NULL)
        r = iommu_dma_write(e->d, iova, p, n);
    else if (e->in_place && e->ops->write_at_commit != NULL)
        r = e->ops->write_at_commit(e->opaque, iova, p, n);
    else
        r = e->ops->write(e->opaque, iova, p, n);
    if (r == -ECANCELED || r == -ENOMEM)
        return r;
    if (r != 0)
        return sec_fail(e, SEC_E_DMA_FAULT, "write of %llu bytes at %#llx faulted",
                        (unsigned long long)n, (unsigned long long)iova);
    return 0;
}

int sec_buf_scatter(struct sec_engine *e, const struct sec_buf *b, uint64_t off,
                    const uint8_t *from, uint64_t len)
{
    uint64_t pos = 0; /* buffer offset of segment i */

    for (unsigned i = 0; i < b->nsegs && len > 0; pos += b->segs[i].len, i++) {
        const struct sec_seg *s = &b->segs[i];
        uint64_t skip, n;

        if (off >= pos + s->len)
            continue;
        skip = off - pos;
        n = s->len - skip < len ? s->len - skip : len;
        for (uint64_t k = 0; k < n;) {
            uint64_t piece = n - k < SEC_CHUNK ? n - k : SEC_CHUNK;
            int r;

            if (sec_job_cancelled(e))
                return -ECANCELED;
            r = sec_write(e, s->iova + skip + k, from + k, piece);
            if (r)
                return r;
            k += piece;
        }
        from += n;
        off += n;
        len -= n;
    }
    if (len > 0)
        return sec_fail(e, SEC_E_BAD_SGL, "destination holds %llu bytes too few",
                        (unsigned long long)len);
    return 0;
}

int sec_write_flat(struct sec_engine *e, uint64_t iova, const uint8_t *p, uint64_t len)
{
    for (uint64_t k = 0; k < len;) {
        uint64_t piece = len - k < SEC_CHUNK ? len - k : SEC_CHUNK;
        int r = sec_write(e, iova + k, p + k, piece);

        if (r)
            return r;
        k += piece;
    }
    return 0;
}
