/* zip: the ZIP engine that executes one submission queue entry.
 *
 * Contract
 * - zip_engine_run decodes and validates a 128-byte SQE (a host copy the
 *   caller fetched), reads SGLs and input through the function's IOMMU
 *   domain into its own buffers, runs the codec into its own output buffer,
 *   and moves every output byte to the guest through the caller's
 *   zip_job_ops.write (the engine never hands guest memory to the codec), so
 *   the caller decides, per write, whether the job may still touch guest
 *   memory. It reports the result in the copy's dw0
 *   (consumed), dw1 (produced) and dw3 (status[7:0]); the caller writes back
 *   only those three dwords to the SQE slot. Every other dword is untouched.
 * - Every malformed field, DMA fault, corrupt stream and size limit is a
 *   status code (zip_hw.h), never a crash and never a write outside the
 *   output buffer's mapped bytes. It returns 0 in all these cases.
 * - Work proceeds in pieces of at most ZIP_CHUNK bytes of input, each handed
 *   to the codec ZIP_CANCEL_STEP bytes at a time; between two steps the
 *   engine asks ops->cancelled. A cancelled job (cancelled() true, or a
 *   write that returned -ECANCELED) returns -ECANCELED and its SQE copy is
 *   left as it was (the job reruns later). One write moves at most
 *   ZIP_CHUNK bytes.
 * - No lock of the domain is held between calls into it: a job never pins
 *   the mapping table, so an unmap or a dirty report never waits for a job.
 * - An engine holds codec state for one job at a time: one per worker thread.
 *   zip_engine_stats_get may be called from any thread.
 * - Stateless jobs only: an SQE with dw7 bits 25-27 set is a bad SQE (0x01).
 * - dw0/dw1 tell the bytes actually consumed/produced, also when the status
 *   is an error (0 when the job was refused before any data moved).
 * - The engine writes only inside [dest + offset, + dest_avail_out); within
 *   it, bytes past `produced` may have been used as codec scratch.
 * - Empty input: compression writes a complete empty stream (status 0x0d, as
 *   it is larger than the input); decompression of nothing is 0x03.
 * - The window field (0..4 = 4K, 8K, 16K, 24K, 32K) limits the compressor's
 *   match distance (24K is used as 16K); it never limits decompression.
 * - Hardware SGL walk rules: see zip_buf.c (zip_buf_from_sgl).
 */
#ifndef ACCMIG_ZIP_H
#define ACCMIG_ZIP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "iommu/iommu.h"
#include "zip/zip_hw.h"

#define ZIP_CHUNK (64u << 10)
#define ZIP_CANCEL_STEP (16u << 10)

struct zip_engine;

struct zip_engine_stats {
    uint64_t jobs;
    uint64_t cancelled;
    uint64_t errors;   /* jobs that ended with a status other than OK/negative-comp */
    uint64_t bytes_in;
    uint64_t bytes_out;
};

/* Returns 0 or -ENOMEM. */
int zip_engine_create(struct zip_engine **out);
void zip_engine_destroy(struct zip_engine *e);

/* How the caller governs one job. */
struct zip_job_ops {
    /* Writes len (<= ZIP_CHUNK) output bytes at device address iova.
     * Returns 0, -ECANCELED (the job may no longer write: nothing was
     * written) or another negative errno (a DMA fault: status 0x02). */
    int (*write)(void *opaque, uint64_t iova, const void *buf, uint64_t len);
    /* Asked between codec steps: true stops the job (-ECANCELED). */
    bool (*cancelled)(void *opaque);
};

/* dir comes from the queue's SQC (alg_type), not from the SQE. ops NULL:
 * writes go straight to d (iommu_dma_write) and nothing cancels.
 * Returns 0 (result in sqe), -ECANCELED (sqe untouched), -EINVAL (e, d or sqe
 * NULL, dir not a zip_alg_dir; sqe untouched), or -EIO when the codec library
 * refused parameters the engine always gives it (a bug; logged). */
int zip_engine_run(struct zip_engine *e, struct iommu_domain *d, uint32_t sqe[ZIP_SQE_DWORDS],
                   enum zip_alg_dir dir, const struct zip_job_ops *ops, void *opaque);

void zip_engine_stats_get(const struct zip_engine *e, struct zip_engine_stats *out);
/* Why the engine's last job ended with an error status ("" when it did
 * not): the caller, which knows whose job it was, logs it (rate-limited). */
const char *zip_engine_last_error(const struct zip_engine *e);
/* Stream mode: after a stateful job that succeeded, the context it leaves
 * (true; len bytes for iova). The caller writes it together with the job's
 * commit, so a job cancelled before its commit leaves the old context in
 * guest memory and its replay starts from the same state. false: nothing
 * to write (stateless, or failed). */
bool zip_engine_stream_ctx(const struct zip_engine *e, uint64_t *iova, const void **buf,
                           uint32_t *len);

#endif
