/* mig: VFIO migration (protocol v2) for one VF: the state machine, the
 * migration driver that implements each arc with PF control-window register
 * accesses only, the device-state stream, precopy info and DMA logging.
 *
 * This is what a VFIO variant driver is in the kernel: the vfio-user server
 * (vfu/) and the in-process transport call it; it calls the device only via
 * qm_bar_read/qm_bar_write (PF window in v4 mode, the VF's upper half and
 * shared mailbox in v3 mode), qm_function_reset (the FLR) and the VF's IOMMU
 * domain for dirty logging.
 *
 * Contract
 * - mig_set_state runs the kernel's next-step loop (vfio_mig_get_next_state)
 *   to the target, one arc at a time; the state moves only after an arc
 *   succeeds. On failure it returns a negative errno, mig_last_error says
 *   why, and mig_get_state tells where the device is: the last state reached,
 *   or ERROR only when the device cannot say (a mailbox that stayed busy, a
 *   load that failed half-way). From ERROR every SET fails (-EINVAL) until
 *   mig_reset. Targets that are not reachable (ERROR, out of range,
 *   STOP_COPY -> PRE_COPY*) are -EINVAL and change nothing. Re-setting the
 *   current state is a no-op returning 0.
 *   Errnos: -EINVAL (unreachable, ERROR state, incompatible or known-bad
 *   stream), -EIO (the device refused an access or command, or was not
 *   quiesced), -EBUSY (the mailbox was busy with another command before
 *   ours was sent: in v3 the guest shares it; nothing changed), -ETIMEDOUT
 *   (a poll ran out of budget), and for RESUMING ->
 *   STOP the stream's: -ENODATA truncated, -EPROTO foreign, -EPROTONOSUPPORT
 *   other major, -EBADMSG corrupt (see mig/stream.h).
 * - The device side: the function is paused (PAUSE_QM) in every state but
 *   RUNNING and PRE_COPY; -> RUNNING_P2P waits until the jobs it cancelled
 *   have retired (they stay on their SQ and run again after RESUME_QM, here
 *   or on the destination); -> STOP_COPY writes queue positions back into
 *   the SQC/CQC tables in guest RAM (CACHE_WB) and saves the registers;
 *   STOP -> RESUMING resets the function (FLR) and pauses it; RESUMING ->
 *   STOP validates the whole stream before loading anything; the first arc
 *   into a running state after a restore reloads every queue that was active
 *   on the source (SQ doorbell index 0, priority 1).
 * - The saving group (PRE_COPY, PRE_COPY_P2P, STOP_COPY) shares one stream
 *   opened on entering it; RESUMING has its own. Leaving the group (or
 *   RESUMING, or a reset) ends the stream: later reads/writes fail with
 *   -EINVAL. Entering the group again starts a new stream from byte 0.
 * - mig_read: in a saving state, copies up to len bytes and returns the count.
 *   PRE_COPY/PRE_COPY_P2P: -ENOMSG when nothing is available now (temporary
 *   end; only the 40-byte head exists before STOP_COPY). STOP_COPY: 0 only
 *   once everything has been delivered (permanent). Other states or a NULL
 *   buffer: -EINVAL.
 * - mig_write: only in RESUMING; any segmentation; returns len or a negative
 *   errno: -EINVAL for a write outside RESUMING, a NULL buffer, or a stream
 *   already known to be bad or incompatible; -EFBIG beyond the maximum stream
 *   size (MIG_STREAM_MAX, 8192 bytes). A source whose match record is
 *   incompatible is refused by the write that completes that record, with a
 *   message naming the mismatch (mig_last_error: "stream refused: qp count:
 *   source 4, destination 8"); every later write and RESUMING -> STOP fail.
 * - mig_precopy_info: initial_bytes = unread bytes of the head (header and
 *   MATCH record, 40 bytes), dirty_bytes = 0 always: the rest of the state is
 *   small and captured at STOP_COPY with the function stopped.
 * - mig_data_size: the full stream length (348 bytes for a started VF whose
 *   contexts are all in tables; the exact length once STOP_COPY has built
 *   it, larger when contexts travel in QCTX); never 0.
 * - mig_reset: device (function-level) reset: it performs the FLR
 *   (qm_function_reset) itself, then state RUNNING, streams ended, DMA
 *   logging stopped, ERROR cleared. A caller that also resets the function
 *   itself does no harm.
 * - Thread safety: one state lock per mig_dev serialises every call.
 *   mig_last_error's string belongs to m and is valid until the next call.
 *
 * A whole migration between two devices (in process; over vfio-user the
 * same calls sit behind MIG_DEVICE_STATE, MIG_DATA_READ/WRITE):
 *   mig_set_state(dst, RESUMING);
 *   mig_set_state(src, PRE_COPY);            // optional: early match check
 *   n = mig_read(src, buf, sizeof buf) ...   // until -ENOMSG
 *   mig_write(dst, buf, n);                  // an incompatible dst fails here
 *   ... RAM precopy rounds (mig_dma_logging_report for device writes) ...
 *   mig_set_state(src, STOP_COPY);           // vCPUs stopped first
 *   n = mig_read(src, ...) ...               // until 0
 *   ... copy the last dirty RAM ...
 *   mig_write(dst, buf, n); mig_set_state(dst, RUNNING);
 *   mig_reset(src) (or destroy it); on any failure before dst runs:
 *   mig_set_state(src, RUNNING) resumes the source with nothing lost.
 */
#ifndef ACCMIG_MIG_H
#define ACCMIG_MIG_H

#include <stdint.h>
#include <sys/types.h>

#include "iommu/iommu.h"
#include "qm/qm.h"

/* uAPI numbers (include/uapi/linux/vfio.h); Debian 12's header lacks the
 * PRE_COPY parts, so accmig carries its own. */
enum vfio_mig_state {
    VFIO_MIG_STATE_ERROR = 0,
    VFIO_MIG_STATE_STOP = 1,
    VFIO_MIG_STATE_RUNNING = 2,
    VFIO_MIG_STATE_STOP_COPY = 3,
    VFIO_MIG_STATE_RESUMING = 4,
    VFIO_MIG_STATE_RUNNING_P2P = 5,
    VFIO_MIG_STATE_PRE_COPY = 6,
    VFIO_MIG_STATE_PRE_COPY_P2P = 7,
    VFIO_MIG_STATE_COUNT = 8,
};

#define VFIO_MIG_FLAG_STOP_COPY (1u << 0)
#define VFIO_MIG_FLAG_P2P (1u << 1)
#define VFIO_MIG_FLAG_PRE_COPY (1u << 2)
#define VFIO_MIG_FLAGS_ALL (VFIO_MIG_FLAG_STOP_COPY | VFIO_MIG_FLAG_P2P | VFIO_MIG_FLAG_PRE_COPY)

/* VFIO_DEVICE_FEATURE numbers. */
#define VFIO_FEATURE_MIGRATION 1u
#define VFIO_FEATURE_MIG_DEVICE_STATE 2u
#define VFIO_FEATURE_DMA_LOGGING_START 6u
#define VFIO_FEATURE_DMA_LOGGING_STOP 7u
#define VFIO_FEATURE_DMA_LOGGING_REPORT 8u
#define VFIO_FEATURE_MIG_DATA_SIZE 9u
/* accmig vendor extension: precopy info over vfio-user (documented in docs/). */
#define ACCMIG_FEATURE_PRECOPY_INFO 0x8001u

const char *mig_state_name(enum vfio_mig_state s);

/* The kernel's combined-transition algorithm as a pure function: the next
 * arc from cur towards target given the advertised flags. Returns 0 and sets
 * *next, or -EINVAL when target cannot be reached (ERROR in the table). */
int mig_fsm_next_step(uint32_t flags, enum vfio_mig_state cur, enum vfio_mig_state target,
                      enum vfio_mig_state *next);

enum mig_hw_mode {
    MIG_HW_V4 = 0, /* control through the PF's per-VF window (default) */
    MIG_HW_V3 = 1, /* control through the VF BAR's upper half and shared mailbox */
};

struct mig_dev;

/* The PF driver's answer to VF messages, one per device (the part of the
 * PF driver a VF's driver needs; Linux qm_cmd_process on the PF): every
 * VF->PF message is taken (DST mailbox) and acked (IFC_INT_SOURCE_P), so the
 * VF's qm_ping_pf returns at once; VF_GET_QOS is answered with PF_SET_QOS
 * carrying the VF's rate (the PF driver's default QoS 1000, in units of
 * 100); PREPARE/START failures are logged. PF BAR2 registers only, on its
 * own thread; mig_pf_msg_irq is the PF's IFC MSI (call it from the irq sink,
 * any thread). create unmasks the PF's IFC interrupt. */
struct mig_pf_msg;
int mig_pf_msg_create(struct qm_dev *dev, struct mig_pf_msg **out);
void mig_pf_msg_destroy(struct mig_pf_msg *p);
void mig_pf_msg_irq(struct mig_pf_msg *p);
/* Messages served and ones that could not be (a VF that never took the
 * answer, a refused mailbox). */
void mig_pf_msg_stats(struct mig_pf_msg *p, uint64_t *answered, uint64_t *failed);

struct mig_timing {  /* of the most recent arcs, in nanoseconds */
    uint64_t quiesce_ns; /* -> RUNNING_P2P (PAUSE_QM) */
    uint64_t save_ns;    /* STOP -> STOP_COPY (write-back + register save) */
    uint64_t restore_ns; /* RESUMING -> STOP (validate + load) */
    uint64_t resume_ns;  /* -> RUNNING (re-arm, doorbells) */
};

/* vf_fn is the PCI function number of the VF (1..num_vfs). -EINVAL for a
 * bad fn or mode, -ENODEV for v4 mode on a device without PF windows (v3
 * silicon), -ENOMEM. v4 sets MIG_REGION_SEL bit0 if the PF has not. The
 * device must outlive m. */
int mig_dev_create(struct qm_dev *dev, unsigned vf_fn, enum mig_hw_mode mode, struct mig_dev **out);
void mig_dev_destroy(struct mig_dev *m);

uint32_t mig_flags(const struct mig_dev *m); /* VFIO_MIG_FLAGS_ALL */
enum vfio_mig_state mig_get_state(struct mig_dev *m);
int mig_set_state(struct mig_dev *m, enum vfio_mig_state target);
ssize_t mig_read(struct mig_dev *m, void *buf, size_t len);
ssize_t mig_write(struct mig_dev *m, const void *buf, size_t len);
/* -EINVAL outside PRE_COPY / PRE_COPY_P2P. */
int mig_precopy_info(struct mig_dev *m, uint64_t *initial_bytes, uint64_t *dirty_bytes);
/* Estimate of the STOP_COPY stream length; never 0; any state. */
int mig_data_size(struct mig_dev *m, uint64_t *stop_copy_length);
int mig_reset(struct mig_dev *m);
void mig_timing_get(struct mig_dev *m, struct mig_timing *out);
/* Human-readable reason of the last failed call ("" if none); owned by m,
 * valid until the next call on m. */
const char *mig_last_error(struct mig_dev *m);

/* DMA logging on the VF's IOMMU domain, with the uAPI's argument checks
 * (spec/vfio-migration.md), in the kernel's order:
 * start: nranges 0 is -EINVAL unless log_all (vfio-user: log every range
 * mapped now); more than 4096/16 = 256 ranges -E2BIG; page_size not a power
 * of two, ranges NULL, a range empty or not aligned to page_size -EINVAL;
 * iova+length wrapping -EOVERFLOW; overlapping ranges -EINVAL; then already
 * started -EBUSY. The device logs at 4 KiB: a smaller *page_size is raised
 * to 4096 and written back (ranges widened to whole 4 KiB pages).
 * stop: -EINVAL when not started.
 * report: report-and-clear of [iova, iova+length) at any power-of-two
 * page_size >= 4096 (else -EINVAL); bitmap NULL -EINVAL; wrap -EOVERFLOW;
 * not started -EINVAL; iova/length must be aligned to page_size (-EINVAL).
 * Bit i (word i/64, bit i%64) = a device write touched page i. Only DMA
 * writes are logged. */
int mig_dma_logging_start(struct mig_dev *m, uint64_t *page_size, const struct iommu_range *ranges,
                          uint32_t nranges, int log_all);
int mig_dma_logging_stop(struct mig_dev *m);
int mig_dma_logging_report(struct mig_dev *m, uint64_t iova, uint64_t length, uint64_t page_size,
                           uint64_t *bitmap);

#endif
