/* zip_buf: turn an SQE's flat address or hardware SGL chain into the list of
 * segments the job may touch (zip_int.h). Only SGL descriptors are read here;
 * data moves later, in the codec.
 */

#include "common/common.h"
#include "zip/zip_int.h"

/* Appends [iova, iova+len), merging with the previous segment when the two
 * are contiguous (fewer, larger zero-copy pieces). The caller bounds the
 * count: at most one segment per SGL entry. */
static void zip_buf_append(struct zip_buf *b, uint64_t iova, uint64_t len)
{
    struct zip_seg *last = b->nsegs ? &b->segs[b->nsegs - 1] : NULL;

    if (last && last->iova + last->len == iova)
        last->len += len;
    else
        b->segs[b->nsegs++] = (struct zip_seg){ .iova = iova, .len = len };
    b->len += len;
}

enum zip_status zip_buf_from_flat(struct zip_buf *b, uint64_t addr, uint64_t off, uint64_t len,
                                  const char **why)
{
    uint64_t start, end;

    b->nsegs = 0;
    b->len = 0;
    if (am_add_overflows_u64(addr, off, &start) || am_add_overflows_u64(start, len, &end)) {
        *why = "flat buffer address + offset + length wraps";
        return ZIP_ST_BAD_SQE;
    }
    if (len)
        zip_buf_append(b, start, len);
    return ZIP_ST_OK;
}

/* Collects the entries of one SGL into b, first skipping *skip data bytes,
 * until *want bytes are collected. */
static enum zip_status zip_sgl_take(struct zip_buf *b, const struct zip_sgl_entry *ent,
                                    unsigned nent, uint64_t *skip, uint64_t *want,
                                    const char **why)
{
    for (unsigned i = 0; i < nent && (*skip || *want); i++) {
        uint64_t addr = ent[i].buf, len = ent[i].len, end;

        if (len == 0)
            continue;
        if (am_add_overflows_u64(addr, len, &end)) {
            *why = "SGL entry address + length wraps";
            return ZIP_ST_BAD_SQE;
        }
        if (*skip >= len) {
            *skip -= len;
            continue;
        }
        addr += *skip;
        len -= *skip;
        *skip = 0;
        len = AM_MIN(len, *want);
        zip_buf_append(b, addr, len);
        *want -= len;
    }
    return ZIP_ST_OK;
}

/* Walk rules (spec "Hardware SGL", plus what the Linux driver writes):
 * - every SGL is 64-byte aligned; entry_sum_in_sgl <= entry_length_in_sgl <=
 *   ZIP_SGL_MAX_ENTRIES; entry_sum_in_chain, page_ctrl and header+56 are
 *   driver bookkeeping (the kernel puts its pool size and pointers there) and
 *   are ignored;
 * - offsets count data bytes across entries and SGLs; zero-length entries
 *   hold no data and are skipped;
 * - the walk follows next_dma only while the job still needs bytes, so SGLs
 *   are read no further than the job reaches and whatever the chain holds
 *   beyond that is not looked at (the Linux driver maps a whole scatterlist,
 *   UADK a whole pool chain, whatever the job's length);
 * - a source chain that ends before offset + length bytes is a bad SQE; a
 *   destination chain that does (clip) just makes the output space smaller:
 *   output that does not fit is ZIP_ST_DEST_TOO_SMALL, as for a flat buffer;
 * - a chain that visits an SGL twice, or one longer than ZIP_SGL_MAX_CHAIN
 *   SGLs before the job's bytes end, is a bad SQE. */
enum zip_status zip_buf_from_sgl(struct zip_buf *b, struct zip_sgl_scratch *s,
                                 struct iommu_domain *d, uint64_t sgl, uint64_t off, uint64_t len,
                                 bool clip, const char **why)
{
    uint64_t skip = off, want = len;
    unsigned hops = 0;

    b->nsegs = 0;
    b->len = 0;
    for (;;) {
        struct zip_sgl_hdr hdr;
        uint64_t ent_addr, ent_end;
        unsigned nent, cap;
        enum zip_status st;

        if (sgl % ZIP_SGL_ALIGN) {
            *why = "SGL address not 64-byte aligned";
            return ZIP_ST_BAD_SQE;
        }
        for (unsigned i = 0; i < hops; i++) {
            if (s->visited[i] == sgl) {
                *why = "SGL chain loops";
                return ZIP_ST_BAD_SQE;
            }
        }
        if (hops == ZIP_SGL_MAX_CHAIN) {
            *why = "SGL chain longer than ZIP_SGL_MAX_CHAIN";
            return ZIP_ST_BAD_SQE;
        }
        s->visited[hops++] = sgl;

        if (am_add_overflows_u64(sgl, sizeof(hdr), &ent_addr)) {
            *why = "SGL address wraps";
            return ZIP_ST_BAD_SQE;
        }
        if (iommu_dma_read(d, sgl, &hdr, sizeof(hdr))) {
            *why = "SGL header not readable";
            return ZIP_ST_DMA_FAULT;
        }
        nent = hdr.entry_sum_in_sgl;
        cap = hdr.entry_length_in_sgl;
        if (cap > ZIP_SGL_MAX_ENTRIES || nent > cap) {
            *why = "SGL entry_sum_in_sgl > entry_length_in_sgl or capacity over 255";
            return ZIP_ST_BAD_SQE;
        }
        if (am_add_overflows_u64(ent_addr, (uint64_t)nent * sizeof(s->entries[0]), &ent_end)) {
            *why = "SGL entries wrap";
            return ZIP_ST_BAD_SQE;
        }
        if (iommu_dma_read(d, ent_addr, s->entries, (uint64_t)nent * sizeof(s->entries[0]))) {
            *why = "SGL entries not readable";
            return ZIP_ST_DMA_FAULT;
        }
        st = zip_sgl_take(b, s->entries, nent, &skip, &want, why);
        if (st != ZIP_ST_OK)
            return st;

        if (skip == 0 && want == 0)
            return ZIP_ST_OK;
        if (!hdr.next_dma) {
            if (clip && skip == 0)
                return ZIP_ST_OK; /* the output space is what the chain holds */
            *why = skip ? "offset past the SGL's data" : "SGL holds fewer bytes than the job";
            return ZIP_ST_BAD_SQE;
        }
        sgl = hdr.next_dma;
    }
}
