/* mig/stream: the device-state stream of one VF, as a pure codec.
 *
 * No device access, no allocation, no global state: mig.c (the migration
 * driver), `accmig inspect` and the fuzzer all use this unit. The byte
 * layout is documented in docs/stream-format.md; this header is its contract.
 *
 * Layout: an 8-byte header (magic "AMVF", u16 major, u16 minor), then
 * records. Each record is an 8-byte header (u16 type, u16 flags, u32 payload
 * length) and its payload. The MATCH record comes first; the END record comes
 * last and carries a CRC32C (am_crc32c) over every byte before its CRC field.
 * All integers are little-endian. Known records have exactly the payload
 * length of their type; unknown optional records are skipped; unknown
 * mandatory records are refused.
 *
 * Errors (negative errno, with a one-line reason written to err):
 *   -EFBIG            the stream is longer than MIG_STREAM_MAX
 *   -ENODATA          truncated: the bytes end before the END record does
 *   -EPROTO           foreign: not an accmig VF stream (magic)
 *   -EPROTONOSUPPORT  a format major this reader does not speak
 *   -EBADMSG          corrupt: CRC mismatch, a malformed or misplaced record,
 *                     a value out of range, an unknown mandatory record
 *   -EINVAL           incompatible match data (mig_match_check), bad arguments
 *   -ENOSPC           (encoder) the output buffer is too small
 */
#ifndef ACCMIG_MIG_STREAM_H
#define ACCMIG_MIG_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qm/qm_hw.h"

#define MIG_STREAM_MAGIC "AMVF"
#define MIG_STREAM_MAJOR 1u
#define MIG_STREAM_MINOR 1u /* 1.1 added QSTATE and QCTX; 1.0 streams still load */
/* Bytes; a stream longer than this is refused. A started VF sends 348; the
 * most is 4468 (QCTX with every context of 64 queues). */
#define MIG_STREAM_MAX 8192u
#define MIG_STREAM_HDR_LEN 8u
#define MIG_REC_HDR_LEN 8u
#define MIG_MAX_QPS 64u /* queue pairs a VF can have (the QP_ACTIVE bitmap) */
/* Every record is at least a header, so a stream holds fewer than this. */
#define MIG_STREAM_MAX_RECORDS (MIG_STREAM_MAX / MIG_REC_HDR_LEN)

enum mig_rec_type {
    MIG_REC_MATCH = 0x0001,     /* identity and compatibility; first, sent in PRE_COPY */
    MIG_REC_REGS = 0x0002,      /* function-local registers (mig_saved_regs order) */
    MIG_REC_EQC = 0x0003,       /* 28-byte EQ context (live shadow) */
    MIG_REC_AEQC = 0x0004,      /* 28-byte AEQ context (live shadow) */
    MIG_REC_TABLES = 0x0005,    /* SQC and CQC table bases */
    MIG_REC_QP_ACTIVE = 0x0006, /* queues whose context was loaded */
    MIG_REC_IRQ = 0x0007,       /* pending MSI vectors, IFC messages in flight both ways */
    MIG_REC_QSTATE = 0x0008,    /* 1.1: queue state beyond positions, mailbox/doorbell staging */
    MIG_REC_QCTX = 0x0009,      /* 1.1: contexts that are in no table (variable length) */
    MIG_REC_END = 0x7fff,       /* CRC32C of everything before its CRC field */
};

#define MIG_REC_F_MANDATORY 0x0001u /* a reader that does not know the type must refuse */

/* Payload lengths of the known records. */
#define MIG_MATCH_LEN 24u
#define MIG_EQC_LEN 28u
#define MIG_TABLES_LEN 16u
#define MIG_QP_ACTIVE_LEN 8u
#define MIG_IRQ_LEN 24u
#define MIG_QSTATE_LEN 96u
#define MIG_QCTX_HDR_LEN 16u /* then 32 bytes per context named in its masks */
#define MIG_QC_LEN 32u
#define MIG_END_LEN 4u

/* Identity of the source function: the destination refuses a stream whose
 * match data differs from its own (except vf_state, which is the source's
 * VF_STATE when the record was made and is information only). */
struct mig_match {
    uint16_t device_id;
    uint8_t revision;
    uint8_t format_major;
    uint16_t qp_num;
    uint16_t sq_depth, cq_depth, eq_depth, aeq_depth;
    uint16_t reserved; /* 0; a stream with another value is refused */
    uint32_t que_iso_cfg;
    uint32_t vf_state;
};

/* How the driver brings a saved register back on the destination. */
enum mig_reg_restore {
    MIG_REG_WRITE,   /* written back as saved */
    MIG_REG_DERIVED, /* read-only: the device rebuilds it from restored state */
    MIG_REG_CHECKED, /* part of the match data: already equal, written back */
};

struct mig_reg_desc {
    uint32_t offset;     /* function-local offset (VF BAR2, PF window) */
    const char *name;
    uint32_t valid_mask; /* a saved value with other bits set is refused */
    enum mig_reg_restore restore;
};

/* The saved registers, in stream order (which is also the restore order). */
enum {
    MIG_REG_AEQ_INT_SOURCE,
    MIG_REG_AEQ_INT_MASK,
    MIG_REG_EQ_INT_SOURCE,
    MIG_REG_EQ_INT_MASK,
    MIG_REG_IFC_INT_SOURCE,
    MIG_REG_IFC_INT_MASK,
    MIG_REG_IFC_INT_SET,
    MIG_REG_QUE_ISO_CFG,
    MIG_REG_PAGE_SIZE,
    MIG_REG_VF_STATE,
    MIG_REG_COUNT,
};
#define MIG_REGS_LEN (MIG_REG_COUNT * 4u)
extern const struct mig_reg_desc mig_saved_regs[MIG_REG_COUNT];

/* QSTATE (1.1): the queue state bitmaps of the window (qm_hw.h,
 * QM_WIN_SQ_STOPPED_L ..), in register order, then the event queues' state
 * and the function's own mailbox and doorbell staging. All zero is a
 * function whose queues are in the state a fresh context load gives (what
 * a 1.0 stream means). */
enum {
    MIG_QS_SQ_STOPPED,
    MIG_QS_SQ_STOPPING,
    MIG_QS_SQ_BROKEN,
    MIG_QS_CQ_BROKEN,
    MIG_QS_CQ_DISARMED,
    MIG_QS_CQ_OVERFLOW,
    MIG_QS_COUNT,
};
struct mig_queue_state {
    uint64_t bits[MIG_QS_COUNT]; /* bit q: queue q */
    uint32_t xeq;                /* QM_WIN_XEQ_STATE (QM_XEQ_ST_*) */
    uint32_t mb_w0;              /* QM_WIN_FN_MB_W0: [15:0] w0 as read back, busy included */
    uint8_t mb_stage[QM_MAILBOX_SIZE]; /* QM_WIN_FN_MB_STAGE0..3 */
    uint64_t mb_data;            /* QM_WIN_FN_MB_DATA_L/H */
    uint64_t db_stage[2];        /* QM_WIN_FN_DB_SQCQ_L/H, QM_WIN_FN_DB_EQAEQ_L/H */
};
extern const char *const mig_qs_names[MIG_QS_COUNT]; /* "SQ stopped", ... */

/* The state of a started function (VF_STATE READY) at STOP_COPY. */
struct mig_vf_snapshot {
    uint32_t regs[MIG_REG_COUNT];
    uint32_t eqc[7], aeqc[7]; /* shadow dwords 0..6 */
    uint64_t sqc_bt, cqc_bt;
    uint64_t qp_active;   /* bit q: queue q had a loaded context */
    uint32_t int_pending; /* bit v: MSI vector v pending */
    uint64_t ifc_msg;     /* pending PF->VF message */
    uint64_t ifc_out_msg; /* pending VF->PF message */
    struct mig_queue_state qs; /* QSTATE; all zero from a 1.0 stream */
    /* QCTX: bit q of ctx_sq (ctx_cq) = queue q's SQC (CQC) travels here,
     * because CACHE_WB could not put it in a table; sqc[q] / cqc[q] hold
     * the 8 dwords of those (the others are 0). */
    uint64_t ctx_sq, ctx_cq;
    uint32_t sqc[MIG_MAX_QPS][8], cqc[MIG_MAX_QPS][8];
};

/* One record as found in a stream (decoded or not). */
struct mig_stream_record {
    uint16_t type, flags;
    uint32_t offset; /* of the record header */
    uint32_t length; /* of the payload */
};

/* What a decode found. Filled as far as decoding got, also on failure, so
 * `accmig inspect` can show a bad stream. */
struct mig_stream_content {
    uint16_t major, minor;
    bool have_match;
    struct mig_match match;
    bool has_state; /* the source was READY: every state record is present */
    struct mig_vf_snapshot state;
    unsigned nrecords;
    struct mig_stream_record records[MIG_STREAM_MAX_RECORDS];
    unsigned skipped_optional; /* unknown optional records */
    bool crc_checked;          /* an END record was reached */
    uint32_t crc_stored, crc_computed;
};

const char *mig_rec_type_name(uint16_t type); /* "MATCH", ..., or "unknown" */

/* Encoding. Each appends to buf (capacity cap) at *len and advances *len;
 * -ENOSPC (nothing written) when it does not fit. */
int mig_stream_put_header(uint8_t *buf, size_t cap, size_t *len, uint16_t major, uint16_t minor);
int mig_stream_put_record(uint8_t *buf, size_t cap, size_t *len, uint16_t type, uint16_t flags,
                          const void *payload, uint32_t plen);
/* The END record, with the CRC over buf[0, *len + header). */
int mig_stream_put_end(uint8_t *buf, size_t cap, size_t *len);

/* The part sent in PRE_COPY: header and MATCH record. */
int mig_stream_encode_head(const struct mig_match *match, uint8_t *buf, size_t cap, size_t *len);
/* The rest, appended after the head: the state records when snap is not
 * NULL (a READY source), then END. */
int mig_stream_encode_tail(const struct mig_vf_snapshot *snap, uint8_t *buf, size_t cap,
                           size_t *len);
/* Length of a complete stream with state and no QCTX (what a started VF
 * whose contexts all are in tables sends; the STOP_COPY estimate). */
size_t mig_stream_full_len(void);

/* Incremental check of a stream prefix (a destination being written to):
 * -EAGAIN while the header or MATCH record is still incomplete; 0 once the
 * MATCH record is complete and well-formed (*match filled); otherwise the
 * errors above (foreign magic, other major, a first record that is not
 * MATCH, an impossible length). */
int mig_stream_peek_match(const void *buf, size_t len, struct mig_match *match, char *err,
                          size_t errlen);

/* Compatibility of a source's match data with a destination's: 0, or
 * -EINVAL naming the first mismatch ("qp count: source 4, destination 8"). */
int mig_match_check(const struct mig_match *src, const struct mig_match *dst, char *err,
                    size_t errlen);

/* The one check of a complete stream, made before anything is loaded:
 * structure, CRC, every value against the rules of docs/stream-format.md
 * ("What the check refuses"), and, when dst is not NULL, the match data
 * against the destination's own (mig_match_check). The destination calls
 * it at RESUMING -> STOP with its identity; `accmig inspect` with NULL (a
 * saved file has no destination). 0 or an errno above; out is filled as
 * far as decoding got, also on failure. */
int mig_stream_check(const void *buf, size_t len, const struct mig_match *dst,
                     struct mig_stream_content *out, char *err, size_t errlen);
/* mig_stream_check without a destination. */
int mig_stream_decode(const void *buf, size_t len, struct mig_stream_content *out, char *err,
                      size_t errlen);

#endif
