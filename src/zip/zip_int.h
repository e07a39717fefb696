/* zip_int: private to src/zip.
 *
 * A job's source or destination is described once, before any data moves, as
 * an ordered list of DMA segments (device address, length) holding exactly
 * the bytes the job may use: the flat buffer after its offset, or the data of
 * a hardware SGL chain after its offset. The codec then walks the segments in
 * pieces of at most ZIP_CHUNK bytes.
 */
#ifndef ACCMIG_ZIP_INT_H
#define ACCMIG_ZIP_INT_H

#include <isa-l/igzip_lib.h>
#include <zlib.h>
#include <stdatomic.h>
#include <stdint.h>

#include "iommu/iommu.h"
#include "zip/zip.h"
#include "zip/zip_hw.h"

struct zip_seg {
    uint64_t iova;
    uint64_t len; /* > 0 */
};

/* A chain of ZIP_SGL_MAX_CHAIN full SGLs is the most a walk can collect. */
#define ZIP_BUF_MAX_SEGS (ZIP_SGL_MAX_CHAIN * ZIP_SGL_MAX_ENTRIES)

struct zip_buf {
    struct zip_seg *segs; /* ZIP_BUF_MAX_SEGS entries, owned by the engine */
    uint32_t nsegs;
    uint64_t len;         /* sum of segs[].len: the job's byte count */
};

/* Scratch space for one SGL walk (kept in the engine: no allocation per job). */
struct zip_sgl_scratch {
    struct zip_sgl_entry entries[ZIP_SGL_MAX_ENTRIES];
    uint64_t visited[ZIP_SGL_MAX_CHAIN];
};

/* One decoded, validated SQE. */
struct zip_req {
    enum zip_req_type type;
    enum zip_buf_type buf_type;
    unsigned hist_bits; /* ISA-L history bits from the window field */
    bool stateful;      /* dw7 bit 26: one piece of a stream (zip_stream.c) */
    bool new_stream;    /* dw7 bit 27: the stream's first piece */
    bool end;           /* dw7 bit 25: compress: its last piece; decompress: no more input */
    uint64_t ctx_addr;  /* stream_ctx_addr: ZIP_CTX_SIZE bytes */
    uint64_t src_addr;
    uint64_t dst_addr;
    uint32_t in_off;
    uint32_t in_len;
    uint32_t out_off;
    uint32_t out_len;
};

/* What the codec reports back for one job. */
struct zip_result {
    enum zip_status status;
    uint64_t consumed;
    uint64_t produced;
};

#define ZIP_PROBE_SIZE 64u

/* Stream mode: the context buffer in guest memory (docs/stream-mode.md).
 * Header at 0, the history (the stream's last uncompressed bytes) at
 * ZIP_CTX_HDR, the compressed bytes of an unfinished deflate block after it. */
#define ZIP_CTX_SIZE (64u << 10)
#define ZIP_CTX_HDR 64u
#define ZIP_CTX_HIST 32768u
#define ZIP_CTX_PEND_MAX (ZIP_CTX_SIZE - ZIP_CTX_HDR - ZIP_CTX_HIST)
#define ZIP_CTX_MAGIC 0x5843435au /* "ZCCX" little-endian */
#define ZIP_CTX_VERSION 1u
#define ZIP_CTX_ENDED 0x1u        /* flags: the stream is complete */
#define ZIP_CTX_TRAILER 0x2u      /* flags: deflate done, trailer bytes in pend */

/* A stream's state between two pieces, as the engine holds it. */
struct zip_strm {
    uint8_t dir, type, flags;
    uint8_t bits, bitval;     /* decompress: unused bits of the last byte taken */
    uint32_t check;           /* Adler-32 (zlib) or CRC-32 (gzip) so far */
    uint64_t total_in, total_out;
    uint32_t hist_len, pend_len;
    uint32_t skip;            /* decompress: output after the mark already delivered */
    uint8_t *hist;            /* ZIP_CTX_HIST bytes */
    uint8_t *pend;            /* ZIP_CTX_PEND_MAX bytes */
};

struct zip_engine {
    /* Codec state, allocated once and reset per job. */
    struct isal_zstream deflate;
    struct inflate_state inflate;
    uint8_t *level_buf;
    /* Bounce buffers (ZIP_CHUNK each) for ranges that cannot be translated
     * to one host pointer (remote mappings, pieces spanning two mappings). */
    uint8_t *in_bounce;
    uint8_t *out_bounce;
    /* Output past the destination's end lands here: any byte in it means
     * the destination is too small. */
    uint8_t probe[ZIP_PROBE_SIZE];
    const char *last_error;  /* why the last job failed ("" if it did not) */
    /* Stream mode: the context read in (strm points into ctx_in), the one
     * the job leaves (ctx_out, ctx_out_valid), and zlib's inflater. */
    uint8_t *ctx_in, *ctx_out;
    struct zip_strm strm;
    bool ctx_out_valid;
    uint64_t ctx_iova;
    z_stream zs;
    bool zs_ready;
    struct zip_buf src;
    struct zip_buf dst;
    struct zip_sgl_scratch sgl;
    /* Counters: written by the one thread running the engine, read by
     * zip_engine_stats_get from any thread, so accessed with relaxed atomics. */
    struct zip_engine_stats stats;
};

/* zip_buf.c: describe a buffer. Return ZIP_ST_OK, ZIP_ST_BAD_SQE (*why says
 * which rule) or ZIP_ST_DMA_FAULT (an SGL could not be read). */
enum zip_status zip_buf_from_flat(struct zip_buf *b, uint64_t addr, uint64_t off, uint64_t len,
                                  const char **why);
enum zip_status zip_buf_from_sgl(struct zip_buf *b, struct zip_sgl_scratch *s,
                                 struct iommu_domain *d, uint64_t sgl, uint64_t off, uint64_t len,
                                 bool clip, const char **why);

/* The job's reads (d) and its governor (ops never NULL here: zip.c gives
 * the direct ops when the caller passed none). */
struct zip_job {
    struct iommu_domain *d;
    const struct zip_job_ops *ops;
    void *opaque;
};

/* zip_stream.c: load and check the context of a stateful job into e->strm
 * (fresh for a new stream): ZIP_ST_OK, ZIP_ST_BAD_SQE (*why: the context is
 * not one this job can continue) or ZIP_ST_DMA_FAULT; store e->strm into
 * e->ctx_out for the caller to write at commit. Running checksums. */
enum zip_status zip_stream_load(struct zip_engine *e, struct iommu_domain *d, const struct zip_req *q,
                                enum zip_alg_dir dir, const char **why);
void zip_stream_store(struct zip_engine *e);
uint32_t zip_stream_check_update(unsigned type, uint32_t check, const uint8_t *p, uint64_t n);
/* Appends n bytes to a history of at most ZIP_CTX_HIST (the last ones). */
void zip_stream_hist_append(uint8_t *hist, uint32_t *len, const uint8_t *p, uint64_t n);

/* zip_codec.c: run one job over e->src and e->dst. Return 0 (result in *r)
 * or -ECANCELED, or -EIO if the codec library refused parameters it was
 * built to accept (a bug, logged). */
int zip_codec_compress(struct zip_engine *e, const struct zip_job *j, const struct zip_req *q,
                       struct zip_result *r);
int zip_codec_decompress_stream(struct zip_engine *e, const struct zip_job *j,
                                const struct zip_req *q, struct zip_result *r);
int zip_codec_decompress(struct zip_engine *e, const struct zip_job *j, const struct zip_req *q,
                         struct zip_result *r);

#endif
