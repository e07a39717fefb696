/* qm_engine: what the queue manager needs to know about the engine behind
 * its queues (ZIP, SEC, HPRE), as one const table per engine.
 *
 * The QM fetches an SQE of sqe_size bytes into a host copy, hands the copy
 * to run() with no lock held, then writes back the dwords of writeback_mask
 * from the copy to the SQE slot (before the CQE: the CQE is the commit
 * point), plus the engine's stream context if it has one. Nothing else of
 * the engine reaches the QM.
 *
 * Contract of an engine table (every field is required unless it says NULL)
 * - name: what `accmig serve --engine` takes ("zip", "sec", "hpre").
 * - pf_device_id / vf_device_id: PCI device ids (config space; the VF's is
 *   also the migration stream's identity, docs/stream-format.md MATCH).
 * - sqe_size: bytes of one SQE, a power of two <= QM_ENGINE_SQE_MAX;
 *   sqe_size_log2 is the SQC's entry size field (dw3 [15:12]) a queue must
 *   carry to load.
 * - num_alg_types: SQC alg_type (w13 [11:8]) values 0..num_alg_types-1 the
 *   engine takes; a job of a queue with another value gets refuse() (the
 *   driver sees the engine's "bad SQE" status, nothing runs).
 * - writeback_mask: bit i = dword i of the SQE copy is written back to the
 *   slot at commit. Bits at or above sqe_size / 4 must be 0.
 * - caps / ncaps: the engine's capability registers in the function-local
 *   space QM_ENGINE_CAP_BASE .. + 4 * QM_ENGINE_CAP_COUNT (read-only, the
 *   values the Linux driver's `*_basic_cap_info` table reads with cap_ver 1);
 *   an offset of that range not listed reads 0.
 * - create(): one engine instance per worker thread: 0 or -ENOMEM.
 *   destroy(NULL) is allowed.
 * - run(): one job, as zip_engine_run (zip/zip.h) defines it: 0 (result in
 *   sqe), -ECANCELED (io->cancelled() said so, or io->write returned
 *   -ECANCELED; sqe untouched), -EINVAL (a NULL argument or an alg_type out
 *   of range), -EIO (an engine bug, logged). Output reaches guest memory only
 *   through io->write (or io->write_at_commit), in pieces of at most
 *   QM_ENGINE_WRITE_MAX bytes; the
 *   engine polls io->cancelled between pieces of work. Every malformed SQE
 *   field and DMA fault is a status in the SQE copy, returning 0.
 * - job_ok(sqe): the driver takes the finished job as a success (counted
 *   jobs_failed otherwise); job_dma_fault(sqe): it ended on a DMA fault
 *   (counted jobs_dma_fault). job_tag(sqe): the driver's tag, for logs.
 * - refuse(sqe): writes the "bad SQE" result into the copy.
 * - set_dma_fault(sqe): writes the "DMA fault" result into the copy (the
 *   stream context could not be written at commit).
 * - stream_ctx: NULL, or after a successful job the context to write with
 *   the commit (true: len bytes at iova).
 * - last_error(eng): why the engine's last job ended with an error status
 *   ("" when it did not): the QM logs it, rate-limited, with the tag.
 */
#ifndef ACCMIG_QM_ENGINE_H
#define ACCMIG_QM_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "iommu/iommu.h"

#define QM_ENGINE_SQE_MAX 128u
#define QM_ENGINE_SQE_DWORDS_MAX (QM_ENGINE_SQE_MAX / 4u)
#define QM_ENGINE_WRITE_MAX (64u << 10)
/* Capability registers an engine may define: 0x3124 .. 0x317f. */
#define QM_ENGINE_CAP_BASE 0x3124u
#define QM_ENGINE_CAP_COUNT 23u

enum qm_engine_type { QM_ENGINE_ZIP = 0, QM_ENGINE_SEC = 1, QM_ENGINE_HPRE = 2, QM_ENGINE_COUNT };

struct qm_engine_cap {
    uint32_t off;
    uint32_t val;
};

/* How the QM governs one job (the same shape as each engine's job ops). */
struct qm_engine_io {
    /* Writes len (<= QM_ENGINE_WRITE_MAX) bytes at device address iova: 0,
     * -ECANCELED (the job may no longer write; nothing was written) or
     * another negative errno (a DMA fault). */
    int (*write)(void *opaque, uint64_t iova, const void *buf, uint64_t len);
    /* true stops the job (-ECANCELED). */
    bool (*cancelled)(void *opaque);
    /* Queues a write of len (<= QM_ENGINE_WRITE_MAX) bytes at iova that
     * lands with the job's commit, under the lock a revoker takes: for
     * output that overlaps what the job reads (in place), since a revoked
     * job runs again and must find its input as it was. buf must stay valid
     * until the next run() (engine-owned memory). 0, -ECANCELED, -ENOMEM. A
     * queued write that faults at commit makes the job a DMA fault
     * (set_dma_fault). */
    int (*write_at_commit)(void *opaque, uint64_t iova, const void *buf, uint64_t len);
};

struct qm_engine {
    const char *name;
    enum qm_engine_type type;
    uint16_t pf_device_id;
    uint16_t vf_device_id;
    unsigned sqe_size;
    unsigned sqe_size_log2;
    unsigned num_alg_types;
    uint32_t writeback_mask;
    const struct qm_engine_cap *caps;
    unsigned ncaps;
    int (*create)(void **eng);
    void (*destroy)(void *eng);
    int (*run)(void *eng, struct iommu_domain *d, uint32_t *sqe, unsigned alg_type,
               const struct qm_engine_io *io, void *opaque);
    bool (*job_ok)(const uint32_t *sqe);
    bool (*job_dma_fault)(const uint32_t *sqe);
    uint64_t (*job_tag)(const uint32_t *sqe);
    void (*refuse)(uint32_t *sqe);
    void (*set_dma_fault)(uint32_t *sqe);
    bool (*stream_ctx)(const void *eng, uint64_t *iova, const void **buf, uint32_t *len);
    const char *(*last_error)(const void *eng);
};

/* The engines this build has; NULL when unknown. */
const struct qm_engine *qm_engine_get(enum qm_engine_type type);
const struct qm_engine *qm_engine_by_name(const char *name);
const struct qm_engine *qm_engine_by_vf_device_id(uint16_t vf_device_id);
/* "zip|sec|..." for usage lines. */
const char *qm_engine_names(void);
/* The value of capability register off (QM_ENGINE_CAP_BASE..), 0 when the
 * engine does not define it. */
uint32_t qm_engine_cap_read(const struct qm_engine *e, uint32_t off);

#endif
