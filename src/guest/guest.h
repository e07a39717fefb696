/* guest: a userspace QM/ZIP VF driver, written the way the Linux hisi_qm +
 * hisi_zip VF driver drives the hardware (spec/qm-zip-device.md, "What the
 * Linux VF driver does").
 *
 * The driver reaches its VF only through struct vf_io (BAR2 MMIO and MSI
 * waits) and guest RAM. ALL of its state lives in guest RAM at state_gpa:
 * rings, the SQC/CQC tables, the mailbox scratch buffer, the EQ/AEQ heads
 * and phases, per-queue software state (SQ tail, CQ head and phase, the
 * in-flight tag table) and its counters, addressed by guest physical address
 * only. The host-side handle (struct guest_vf) holds nothing but the vf_io,
 * the guest_ram view, locks and the completion callback, so after the RAM is
 * copied to another host and the VF's device state is migrated,
 * guest_vf_attach on the copy carries on as if nothing had happened.
 *
 * Queue numbers are function-local (0 .. qp_num-1), as in the VF's doorbells,
 * mailbox and EQEs.
 *
 * Every write the driver makes to guest RAM is followed by
 * guest_ram_mark_dirty on the written range (after the write, so a VMM that
 * reads-and-clears the log between the two copies the page next round).
 *
 * Threads: every call may come from several threads at once except where
 * noted. Locks (host-side, in the handle) are never held when a call
 * returns, so a thread stopped between two calls leaves guest RAM coherent.
 */
#ifndef ACCMIG_GUEST_H
#define ACCMIG_GUEST_H

#include <stddef.h>
#include <stdint.h>

#include "guest/vf_io.h"
#include "qm/qm_hw.h"
#include "zip/zip_hw.h"

#define GUEST_VF_MAX_QPS 64u

/* The engine behind the QM (docs/engines.md): what the driver needs to know
 * of it to run a queue. The SQE itself is the caller's (zip_req.c,
 * sec_req.c, hpre_req.c); the driver copies sqe_size bytes, keeps the tag
 * it finds at dwords tag_dw..tag_dw+1, and hands back result_dw. */
enum guest_engine { GUEST_ENGINE_ZIP = 0, GUEST_ENGINE_SEC = 1, GUEST_ENGINE_HPRE = 2 };
#define GUEST_ENGINE_COUNT 3u
#define GUEST_SQE_MAX_SIZE 128u
#define GUEST_SQE_MAX_DWORDS (GUEST_SQE_MAX_SIZE / 4u)

struct guest_engine_desc {
    const char *name;          /* "zip", "sec", "hpre" (accmig serve --engine) */
    unsigned sqe_size;         /* bytes: 128, 128, 64 */
    unsigned sqe_size_log2;    /* the SQC's entry size field */
    unsigned num_alg_types;    /* SQC w13 alg_type 0..n-1 the engine serves */
    unsigned tag_dw;           /* the 64-bit tag the driver tracks: dwords tag_dw, tag_dw + 1 */
    unsigned result_dw;        /* the dword the engine writes its result in */
    /* The driver alg bitmap (0x3144) must have every bit of need and none
     * of forbid: how the guest tells the engines apart, since vf_io gives
     * it no config space (ZIP 0x3f, SEC 0x018000ff, HPRE 0x27). */
    uint32_t alg_bitmap_need, alg_bitmap_forbid;
};
/* NULL for an engine out of range. */
const struct guest_engine_desc *guest_engine_desc(enum guest_engine e);
/* 0 and *out for "zip", "sec" or "hpre"; -EINVAL otherwise. */
int guest_engine_from_name(const char *name, enum guest_engine *out);

/* Per-queue state as kept in guest RAM. */
enum guest_qp_state {
    GUEST_QP_IDLE = 0,    /* never started (or the VF was re-initialised) */
    GUEST_QP_STARTED = 1, /* SQC/CQC loaded; submissions accepted */
    GUEST_QP_STOPPED = 2, /* STOP_QP issued and every in-flight job reaped */
    GUEST_QP_FATAL = 3,   /* an AEQE (CQ overflow, CQE error, EQ overflow) killed it */
};

/* Counters, kept in guest RAM (so they survive a migration). */
struct guest_vf_stats {
    uint64_t irqs;             /* polls entered because MSI 0 fired */
    uint64_t spurious_irqs;    /* of those, EQ_INT_SOURCE read 0 */
    uint64_t eqes;             /* EQ entries consumed */
    uint64_t cqes;             /* CQ entries consumed (= completions delivered) */
    uint64_t cqes_without_irq; /* completions found by a poll with no MSI behind it */
    uint64_t aeqes;            /* AEQ entries consumed */
    uint64_t bad_cqes;         /* CQE naming a free SQ slot, a wrong tag or another SQ */
    uint64_t submits;          /* SQEs doorbelled */
    uint64_t submit_busy;      /* submissions refused because the SQ was full */
    uint64_t mailbox_errors;   /* mailbox commands that timed out or reported status */
    uint64_t cq_doorbells;     /* CQ doorbells rung (per CQE and re-arms, or polled batches) */
    uint64_t doorbell_kicks;   /* stored doorbells rung trapped too: the device was between
                                * sweeps (qm_hw.h, QM_DB_POLL_STATE) */
};

/* What a completion callback sees: the result fields of the finished SQE. */
struct guest_vf_completion {
    unsigned qp;
    uint16_t sq_slot;
    uint64_t tag;      /* the SQE's tag dwords (ZIP dw26-27, SEC dw2-3, HPRE dw14-15) */
    uint32_t status;   /* ZIP: dw3[7:0] (zip_status); SEC: dw28; HPRE: dw0 (the result dword) */
    uint32_t consumed; /* ZIP: SQE dw0; 0 for the other engines */
    uint32_t produced; /* ZIP: SQE dw1; 0 for the other engines */
};

/* Called for every completion, in CQ order, from guest_vf_poll or
 * guest_vf_qp_stop, with no queue lock held but with the driver's poll lock
 * held: it may call guest_vf_submit, never guest_vf_poll/qp_stop/uninit. */
typedef void (*guest_vf_complete_fn)(void *opaque, const struct guest_vf_completion *c);

struct guest_vf;

/* Guest RAM bytes the driver's state takes with ring memory for nqps queue
 * pairs (1..GUEST_VF_MAX_QPS). 4 KiB aligned. */
uint64_t guest_vf_state_size(unsigned nqps);

/* Probe the VF and start its QM, as the Linux VF driver does: read the
 * capability registers, query the queue range (SQC_VFT_V2), read QUE_ISO_CFG
 * (doorbell isolation, below), enable the PF<->VF channel, load EQC then AEQC, set the SQC/CQC table bases, PAGE_SIZE
 * 0, ring the AEQ and EQ doorbells at 0, unmask EQ/AEQ, VF_STATE = READY.
 * state_gpa must be 4 KiB aligned and [state_gpa, state_gpa+state_len) inside
 * ram; ring memory is laid out for as many queues as fit (at least one).
 * Returns 0 and a handle, or -EINVAL (bad arguments), -ENOSPC (state_len too
 * small for one queue), -ENODEV (capabilities a ZIP VF must have are missing,
 * the VFT gives no queue, or doorbells are isolated and BAR4 is missing or
 * too small for the queue count), -ETIMEDOUT/-EIO (a mailbox command timed out or
 * failed), -ENOMEM, or an MMIO error from the transport. io and ram are
 * copied; ram->host must stay valid until guest_vf_detach. */
int guest_vf_init(const struct vf_io *io, const struct guest_ram *ram, uint64_t state_gpa,
                  uint64_t state_len, struct guest_vf **out);
/* The same for a VF of engine eng (guest_vf_init is GUEST_ENGINE_ZIP): the
 * engine is kept in the driver state, so attach needs no argument. -ENODEV
 * when the device's alg bitmap lacks the engine's bits (a VF of another
 * engine), -EINVAL for an unknown engine. */
int guest_vf_init_engine(const struct vf_io *io, const struct guest_ram *ram, uint64_t state_gpa,
                         uint64_t state_len, enum guest_engine eng, struct guest_vf **out);

/* Bind a new handle to driver state that already lives in ram at state_gpa
 * (a migrated copy, or the same RAM after the old handle was detached). The
 * only register touched is QUE_ISO_CFG (the device behind io may be another
 * one, with or without doorbell isolation). -EINVAL when the state is not a
 * valid driver state (magic, version, every address and count checked
 * against ram), -ENODEV as for init (BAR4), or the read's MMIO error.
 *
 * Doorbell isolation (both calls): when QUE_ISO_CFG bit0 is set, SQ and CQ
 * doorbells go to BAR4 at qn * QM_DB_PAGE_SIZE + QM_DB_SQCQ: a 64-bit
 * atomic store with release order into io->db_pages when the transport
 * maps BAR4 (db_pages_size must cover every queue's word), else
 * io->db_write (8 bytes, trapped); EQ/AEQ doorbells stay in BAR2. A mapped
 * word holds one doorbell until the device takes it (qm.h), and an SQ and a
 * CQ doorbell of a queue share it: a doorbell that does not supersede the
 * pending one (another command, or a CQ re-arm it would drop) goes through
 * io->db_write instead (the device takes the pending word before a trapped
 * doorbell, so the order holds), or, when the transport has no db_write,
 * waits for the device to take the pending one, up to 1 s, then fails with
 * -ETIMEDOUT. Without bit0 every doorbell is in BAR2 as before. */
int guest_vf_attach(const struct vf_io *io, const struct guest_ram *ram, uint64_t state_gpa,
                    struct guest_vf **out);

/* Free the handle only; guest RAM and the device are left as they are. */
void guest_vf_detach(struct guest_vf *vf);

/* Tear the QM down as the Linux driver's remove does: stop every started
 * queue (STOP_QP + reap), mask EQ/AEQ, VF_STATE = NOT_READY. The handle stays
 * valid (detach frees it). Returns the first error met, after doing all. */
int guest_vf_uninit(struct guest_vf *vf);

void guest_vf_set_complete_cb(struct guest_vf *vf, guest_vf_complete_fn fn, void *opaque);

unsigned guest_vf_qp_num(const struct guest_vf *vf);   /* from the VFT */
unsigned guest_vf_qp_rings(const struct guest_vf *vf); /* queues with ring memory */
unsigned guest_vf_qp_base(const struct guest_vf *vf);
unsigned guest_vf_sq_depth(const struct guest_vf *vf);
/* Driver algorithm bitmap (0x3144) the device reported. */
uint32_t guest_vf_alg_bitmap(const struct guest_vf *vf);
uint64_t guest_vf_state_gpa(const struct guest_vf *vf);
enum guest_engine guest_vf_engine(const struct guest_vf *vf);

/* How a queue's completions are found. */
enum guest_qp_mode {
    /* As the Linux kernel driver: the CQ raises an EQE and MSI 0;
     * guest_vf_poll reads EQ_INT_SOURCE, rings the EQ doorbell, a CQ
     * doorbell per CQE and a priority-1 one that re-arms the CQ's event. */
    GUEST_QP_MODE_IRQ = 0,
    /* As a user-space queue (UADK): the CQ raises no event (its CQC has no
     * EQ enable), nobody waits for an MSI, guest_vf_qp_poll (or
     * guest_vf_poll) reads the CQ in memory. CQ heads are cumulative, so
     * the driver acknowledges CQEs in batches: one priority-0 CQ doorbell
     * once 32 CQEs (a quarter of the CQ if that is less) are read and not
     * yet acknowledged, and one before an SQ doorbell whenever the CQ, as
     * the device counts it (every CQE not acknowledged, every job in
     * flight), would otherwise be too full for the device to fetch that
     * SQE. So a job needs no register access but its SQ doorbell, the CQ
     * never stalls, and the CQ doorbell seldom shares the SQ doorbell's
     * mapped word with a submission. */
    GUEST_QP_MODE_POLL = 1,
};

/* Configure and start queue pair qp (SQC then CQC mailbox) for one direction
 * in mode. -EINVAL bad qp, dir or mode, -ENOSPC qp has no ring memory,
 * -EBUSY already started, mailbox errors as above. A stopped or fatal queue
 * may be started again (it restarts from slot 0, in the mode given).
 * guest_vf_qp_start is the GUEST_QP_MODE_IRQ form. */
int guest_vf_qp_start(struct guest_vf *vf, unsigned qp, enum zip_alg_dir dir);
int guest_vf_qp_start_mode(struct guest_vf *vf, unsigned qp, enum zip_alg_dir dir,
                           enum guest_qp_mode mode);
/* Any engine: alg_type goes into the SQC (ZIP: enum zip_alg_dir; SEC: 0;
 * HPRE: 0 RSA/DH, 1 ECC), -EINVAL when the engine has no such type. */
int guest_vf_qp_start_type(struct guest_vf *vf, unsigned qp, unsigned alg_type,
                           enum guest_qp_mode mode);
/* The mode qp was last started in (GUEST_QP_MODE_IRQ for a bad qp). */
enum guest_qp_mode guest_vf_qp_mode(const struct guest_vf *vf, unsigned qp);

/* STOP_QP then reap every completion still owed (callbacks run), leaving the
 * queue STOPPED. -EINVAL bad qp, -ENOENT not started, -ETIMEDOUT when jobs
 * were still owed after timeout_ms (the queue is left STOPPED regardless). */
int guest_vf_qp_stop(struct guest_vf *vf, unsigned qp, int timeout_ms);

enum guest_qp_state guest_vf_qp_state(const struct guest_vf *vf, unsigned qp);
/* Jobs doorbelled on qp and not yet reaped. */
unsigned guest_vf_qp_inflight(const struct guest_vf *vf, unsigned qp);
/* The driver's SQ tail of qp (what it last wrote to the SQ doorbell). */
uint16_t guest_vf_qp_sq_tail(const struct guest_vf *vf, unsigned qp);
/* The tags of qp's in-flight table (busy slots, oldest first from the
 * reaping point); fills up to max, returns how many there are. Exact only
 * while nobody submits or polls. */
unsigned guest_vf_qp_inflight_tags(const struct guest_vf *vf, unsigned qp, uint64_t *tags,
                                   unsigned max);

/* Copy sqe into the next SQ slot, remember its tag (dw26-27) in the in-flight
 * table, ring the SQ doorbell. -EINVAL bad qp, -EIO queue not STARTED (stopped
 * or fatal), -EBUSY SQ full (depth-1 in flight), or the doorbell's MMIO error
 * (the slot is then not counted as submitted). */
int guest_vf_submit(struct guest_vf *vf, unsigned qp, const uint32_t sqe[ZIP_SQE_DWORDS]);
/* The same for any engine: sqe holds the engine's sqe_size bytes. */
int guest_vf_submit_sqe(struct guest_vf *vf, unsigned qp, const void *sqe);

/* Wait for MSI vector 0 (EQ) up to timeout_ms: 0 when it fired, -ETIMEDOUT,
 * -EINTR when the transport's irq_wake ended the wait (vf_io.h). */
int guest_vf_irq_wait(struct guest_vf *vf, int timeout_ms);

/* The completion path (the driver's interrupt handler): read EQ_INT_SOURCE
 * when from_irq, walk EQEs by phase, ring the EQ doorbell, walk each named
 * CQ's CQEs by phase reading the SQE slot each one names (callback), ring a
 * CQ doorbell per CQE (priority 0) and a last one with priority 1; then walk
 * AEQEs (a queue-fatal event marks its queue FATAL and is logged). Every
 * started queue's CQ is also checked, so a lost MSI delays but never loses a
 * completion; a polled queue's CQEs are acknowledged as its mode says. Returns the number of completions delivered (>= 0) or an MMIO
 * error. */
int guest_vf_poll(struct guest_vf *vf, int from_irq);

/* The completion path of one queue, any mode: walk qp's CQEs by phase
 * (callbacks as guest_vf_poll's, under the same poll lock) and ring its CQ
 * doorbells as its mode says. No EQ or AEQ is looked at and no register is
 * read, so a polled queue's completion costs no MMIO. Returns the number
 * of completions delivered (>= 0), -EINVAL for a bad qp, or an MMIO error. */
int guest_vf_qp_poll(struct guest_vf *vf, unsigned qp);

/* Dump the device's live SQC of qp through the mailbox (op=1) into *out. */
int guest_vf_qp_sqc_dump(struct guest_vf *vf, unsigned qp, struct qm_sqc *out);

void guest_vf_stats_get(const struct guest_vf *vf, struct guest_vf_stats *out);

/* ---- ZIP requests (what hisi_zip_fill_sqe does) ---- */

struct guest_zip_req {
    enum zip_req_type type;     /* ZIP_REQ_DEFLATE, _ZLIB or _GZIP */
    enum zip_buf_type buf_type; /* ZIP_BUF_FLAT or ZIP_BUF_SGL */
    uint64_t src, dst;          /* guest addresses: the data, or the first SGL */
    uint32_t in_off;            /* input bytes to skip (a header on decompression) */
    uint32_t in_len;            /* input bytes after in_off */
    uint32_t out_off;           /* output bytes to skip (the header the driver wrote) */
    uint32_t dest_avail;        /* output room after out_off */
    unsigned window;            /* compression window 0..4 = 4 KiB..32 KiB */
    uint64_t tag;
    /* Stream mode (docs/stream-mode.md): the stream's context buffer in
     * guest RAM (GUEST_ZIP_STREAM_CTX_SIZE bytes, one per stream, owned by
     * the device between pieces), or 0 for a stateless job. */
    uint64_t stream_ctx;
    unsigned stream_flags;      /* GUEST_ZIP_STREAM_*, only with stream_ctx */
};

#define GUEST_ZIP_STREAM_CTX_SIZE (64u << 10)
#define GUEST_ZIP_STREAM_FIRST 0x1u /* the stream's first piece: the context is not read */
#define GUEST_ZIP_STREAM_LAST 0x2u  /* compression: the last piece (final block, trailer);
                                     * decompression: no more input follows */

/* Fill a 128-byte SQE (v3 sqe_type) for r: one stateless job, or with
 * r->stream_ctx one piece of a stream (dw7 stream mode, new-stream for
 * FIRST, end for LAST; the context address in dw22-23). The pieces of one
 * stream go one at a time: the next is submitted only after the previous
 * completed, since each reads the context the previous one wrote.
 * -EINVAL for a bad type, buffer type, window, an offset that does not fit
 * 24 bits, stream flags without a context or unknown ones, or a context
 * whose 64 KiB would wrap. */
int guest_zip_sqe_build(uint32_t sqe[ZIP_SQE_DWORDS], const struct guest_zip_req *r);

#define GUEST_ZIP_ZLIB_HDR_LEN 2u
#define GUEST_ZIP_GZIP_HDR_LEN 10u
#define GUEST_ZIP_MAX_HDR_LEN 10u

/* Write the header the driver puts in front of a zlib (78 9c) or gzip
 * (10 bytes) stream into buf; returns its length (0 for raw deflate), or
 * -EINVAL (bad type) / -ENOSPC (cap too small). */
int guest_zip_header_write(enum zip_req_type type, uint8_t *buf, size_t cap);

/* Length of the header at the front of a zlib or gzip stream (gzip optional
 * fields FEXTRA/FNAME/FCOMMENT/FHCRC are skipped), 0 for raw deflate.
 * -EINVAL when the header is malformed, -EMSGSIZE when len is too short. */
int guest_zip_header_parse(enum zip_req_type type, const uint8_t *buf, size_t len, size_t *hdr_len);

/* Lay a chain of hardware SGLs in [sgl_gpa, sgl_gpa+sgl_cap) describing the
 * data [data_gpa, data_gpa+len), cut into pieces of piece_len bytes (the last
 * shorter), at most per_sgl (1..ZIP_SGL_MAX_ENTRIES) entries per SGL.
 * sgl_gpa must be 64-byte aligned. -EINVAL bad arguments or ranges outside
 * ram, -ENOSPC the chain does not fit in sgl_cap. */
int guest_sgl_build(const struct guest_ram *ram, uint64_t sgl_gpa, uint64_t sgl_cap,
                    uint64_t data_gpa, uint64_t len, uint32_t piece_len, unsigned per_sgl);
/* Bytes guest_sgl_build needs for len bytes at piece_len and per_sgl. */
uint64_t guest_sgl_size(uint64_t len, uint32_t piece_len, unsigned per_sgl);

#endif
