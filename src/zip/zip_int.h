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

/* zip_codec.c: run one job over e->src and e->dst. Return 0 (result in *r)
 * or -ECANCELED, or -EIO if the codec library refused parameters it was
 * built to accept (a bug, logged). */
int zip_codec_compress(struct zip_engine *e, const struct zip_job *j, const struct zip_req *q,
                       struct zip_result *r);
int zip_codec_decompress(struct zip_engine *e, const struct zip_job *j, const struct zip_req *q,
                         struct zip_result *r);

#endif
