/* mig/stream: encode, decode and validate the device-state stream (pure). */
#include "mig/stream.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"
#include "qm/qm.h"

const struct mig_reg_desc mig_saved_regs[MIG_REG_COUNT] = {
    [MIG_REG_AEQ_INT_SOURCE] = {QM_AEQ_INT_SOURCE, "AEQ_INT_SOURCE", 0x1, MIG_REG_DERIVED},
    [MIG_REG_AEQ_INT_MASK] = {QM_AEQ_INT_MASK, "AEQ_INT_MASK", 0x1, MIG_REG_WRITE},
    [MIG_REG_EQ_INT_SOURCE] = {QM_EQ_INT_SOURCE, "EQ_INT_SOURCE", 0x1, MIG_REG_DERIVED},
    [MIG_REG_EQ_INT_MASK] = {QM_EQ_INT_MASK, "EQ_INT_MASK", 0x1, MIG_REG_WRITE},
    /* Write-1-to-ack from the VF's side; written back where a host write
     * loads it instead (mig_hw_restore_addr). */
    [MIG_REG_IFC_INT_SOURCE] = {QM_IFC_INT_SOURCE_V, "IFC_INT_SOURCE_V", 0x1, MIG_REG_WRITE},
    [MIG_REG_IFC_INT_MASK] = {QM_IFC_INT_MASK, "IFC_INT_MASK", 0x1, MIG_REG_WRITE},
    [MIG_REG_IFC_INT_SET] = {QM_IFC_INT_SET_V, "IFC_INT_SET_V", 0x1, MIG_REG_WRITE},
    [MIG_REG_QUE_ISO_CFG] = {QM_QUE_ISO_CFG, "QUE_ISO_CFG", 0x1, MIG_REG_CHECKED},
    [MIG_REG_PAGE_SIZE] = {QM_PAGE_SIZE, "PAGE_SIZE", 0x3, MIG_REG_WRITE},
    [MIG_REG_VF_STATE] = {QM_VF_STATE, "VF_STATE", 0x1, MIG_REG_WRITE},
};

const char *const mig_qs_names[MIG_QS_COUNT] = {
    [MIG_QS_SQ_STOPPED] = "SQ stopped",   [MIG_QS_SQ_STOPPING] = "SQ stopping",
    [MIG_QS_SQ_BROKEN] = "SQ broken",     [MIG_QS_CQ_BROKEN] = "CQ broken",
    [MIG_QS_CQ_DISARMED] = "CQ disarmed", [MIG_QS_CQ_OVERFLOW] = "CQ overflow posted",
};

#define MIG_NUM_VECTORS_MASK ((1u << QM_NUM_VECTORS) - 1u)
#define MIG_CQE_SIZE 16u
#define MIG_QCTX_MAX_LEN (MIG_QCTX_HDR_LEN + 2u * MIG_MAX_QPS * MIG_QC_LEN)
#define MIG_MB_BUSY (1u << QM_MB_BUSY_SHIFT)

static unsigned mig_weight(uint64_t mask)
{
    return (unsigned)am_bitmap_weight(&mask, 64);
}

/* The lowest queue of a mask that is not 0. */
static unsigned mig_first(uint64_t mask)
{
    return (unsigned)__builtin_ctzll(mask);
}
#define MIG_XEQE_SIZE 4u /* bytes of an EQE or AEQE: what a context's ring holds */
#define MIG_MIN_DEPTH 2u /* a ring of one entry cannot tell full from empty */

/* The QP_ACTIVE bitmap and a table base's extent both cover the most
 * queues a VF can have. */
_Static_assert(MIG_MAX_QPS == QM_MAX_QPS_PER_VF, "QP_ACTIVE covers every queue of a VF");
_Static_assert(sizeof(struct qm_sqc) == MIG_QC_LEN, "a QCTX entry is one context");
_Static_assert(MIG_QS_COUNT * 8u + 48u == MIG_QSTATE_LEN, "QSTATE: bitmaps, then 48 bytes");
/* QSTATE's bitmaps are the window's, in its register order. */
_Static_assert(QM_WIN_SQ_STOPPED_L + 8 * MIG_QS_SQ_STOPPING == QM_WIN_SQ_STOPPING_L &&
                   QM_WIN_SQ_STOPPED_L + 8 * MIG_QS_SQ_BROKEN == QM_WIN_SQ_BROKEN_L &&
                   QM_WIN_SQ_STOPPED_L + 8 * MIG_QS_CQ_BROKEN == QM_WIN_CQ_BROKEN_L &&
                   QM_WIN_SQ_STOPPED_L + 8 * MIG_QS_CQ_DISARMED == QM_WIN_CQ_DISARMED_L &&
                   QM_WIN_SQ_STOPPED_L + 8 * MIG_QS_CQ_OVERFLOW == QM_WIN_CQ_OVERFLOW_L,
               "QSTATE bitmaps in window order");
_Static_assert(sizeof(struct qm_sqc) == sizeof(struct qm_cqc), "SQC and CQC slots are alike");

static const struct {
    uint16_t type;
    const char *name;
    uint32_t len;
} mig_rec_types[] = {
    {MIG_REC_MATCH, "MATCH", MIG_MATCH_LEN},
    {MIG_REC_REGS, "REGS", MIG_REGS_LEN},
    {MIG_REC_EQC, "EQC", MIG_EQC_LEN},
    {MIG_REC_AEQC, "AEQC", MIG_EQC_LEN},
    {MIG_REC_TABLES, "TABLES", MIG_TABLES_LEN},
    {MIG_REC_QP_ACTIVE, "QP_ACTIVE", MIG_QP_ACTIVE_LEN},
    {MIG_REC_IRQ, "IRQ", MIG_IRQ_LEN},
    {MIG_REC_QSTATE, "QSTATE", MIG_QSTATE_LEN},
    {MIG_REC_QCTX, "QCTX", 0}, /* variable: check_known_length */
    {MIG_REC_END, "END", MIG_END_LEN},
};

/* Records a READY source sends between MATCH and END, in this order (1.0:
 * all six are required). Then the 1.1 records: QSTATE always (optional when
 * all zero, so a 1.0 reader skips what it would not lose), QCTX when a
 * context is in no table; either may be absent (a 1.0 source). */
static const uint16_t mig_state_records[] = {MIG_REC_REGS,   MIG_REC_EQC,       MIG_REC_AEQC,
                                             MIG_REC_TABLES, MIG_REC_QP_ACTIVE, MIG_REC_IRQ};
static const uint16_t mig_ext_records[] = {MIG_REC_QSTATE, MIG_REC_QCTX};

static int rec_known_index(uint16_t type)
{
    for (size_t i = 0; i < AM_ARRAY_SIZE(mig_rec_types); i++)
        if (mig_rec_types[i].type == type)
            return (int)i;
    return -1;
}

const char *mig_rec_type_name(uint16_t type)
{
    int i = rec_known_index(type);

    return i < 0 ? "unknown" : mig_rec_types[i].name;
}

static int fail(int rc, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(int rc, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* ---- encoding ---------------------------------------------------------- */

int mig_stream_put_header(uint8_t *buf, size_t cap, size_t *len, uint16_t major, uint16_t minor)
{
    if (!am_range_ok(*len, MIG_STREAM_HDR_LEN, cap))
        return -ENOSPC;
    memcpy(buf + *len, MIG_STREAM_MAGIC, 4);
    am_st16(buf + *len + 4, major);
    am_st16(buf + *len + 6, minor);
    *len += MIG_STREAM_HDR_LEN;
    return 0;
}

int mig_stream_put_record(uint8_t *buf, size_t cap, size_t *len, uint16_t type, uint16_t flags,
                          const void *payload, uint32_t plen)
{
    uint64_t total;

    if (am_add_overflows_u64(MIG_REC_HDR_LEN, plen, &total) || !am_range_ok(*len, total, cap))
        return -ENOSPC;
    am_st16(buf + *len, type);
    am_st16(buf + *len + 2, flags);
    am_st32(buf + *len + 4, plen);
    if (plen > 0)
        memcpy(buf + *len + MIG_REC_HDR_LEN, payload, plen);
    *len += (size_t)total;
    return 0;
}

int mig_stream_put_end(uint8_t *buf, size_t cap, size_t *len)
{
    uint8_t crc[MIG_END_LEN] = {0};
    int rc = mig_stream_put_record(buf, cap, len, MIG_REC_END, MIG_REC_F_MANDATORY, crc,
                                   sizeof(crc));

    if (rc == 0)
        am_st32(buf + *len - MIG_END_LEN, am_crc32c(0, buf, *len - MIG_END_LEN));
    return rc;
}

static void match_pack(const struct mig_match *m, uint8_t p[MIG_MATCH_LEN])
{
    memset(p, 0, MIG_MATCH_LEN);
    am_st16(p + 0, m->device_id);
    p[2] = m->revision;
    p[3] = m->format_major;
    am_st16(p + 4, m->qp_num);
    am_st16(p + 6, m->sq_depth);
    am_st16(p + 8, m->cq_depth);
    am_st16(p + 10, m->eq_depth);
    am_st16(p + 12, m->aeq_depth);
    am_st16(p + 14, m->reserved);
    am_st32(p + 16, m->que_iso_cfg);
    am_st32(p + 20, m->vf_state);
}

static void match_unpack(const uint8_t p[MIG_MATCH_LEN], struct mig_match *m)
{
    m->device_id = am_le16(p + 0);
    m->revision = p[2];
    m->format_major = p[3];
    m->qp_num = am_le16(p + 4);
    m->sq_depth = am_le16(p + 6);
    m->cq_depth = am_le16(p + 8);
    m->eq_depth = am_le16(p + 10);
    m->aeq_depth = am_le16(p + 12);
    m->reserved = am_le16(p + 14);
    m->que_iso_cfg = am_le32(p + 16);
    m->vf_state = am_le32(p + 20);
}

int mig_stream_encode_head(const struct mig_match *match, uint8_t *buf, size_t cap, size_t *len)
{
    uint8_t p[MIG_MATCH_LEN];
    size_t n = 0;
    int rc;

    match_pack(match, p);
    rc = mig_stream_put_header(buf, cap, &n, MIG_STREAM_MAJOR, MIG_STREAM_MINOR);
    if (rc == 0)
        rc = mig_stream_put_record(buf, cap, &n, MIG_REC_MATCH, MIG_REC_F_MANDATORY, p, sizeof(p));
    if (rc == 0)
        *len = n;
    return rc;
}

static void dwords_pack(uint8_t *p, const uint32_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        am_st32(p + 4 * i, v[i]);
}

static void dwords_unpack(const uint8_t *p, uint32_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        v[i] = am_le32(p + 4 * i);
}

static void qstate_pack(const struct mig_queue_state *q, uint8_t p[MIG_QSTATE_LEN])
{
    for (unsigned k = 0; k < MIG_QS_COUNT; k++)
        am_st64(p + 8 * k, q->bits[k]);
    am_st32(p + 48, q->xeq);
    am_st32(p + 52, q->mb_w0);
    memcpy(p + 56, q->mb_stage, QM_MAILBOX_SIZE);
    am_st64(p + 72, q->mb_data);
    am_st64(p + 80, q->db_stage[0]);
    am_st64(p + 88, q->db_stage[1]);
}

static void qstate_unpack(const uint8_t p[MIG_QSTATE_LEN], struct mig_queue_state *q)
{
    for (unsigned k = 0; k < MIG_QS_COUNT; k++)
        q->bits[k] = am_le64(p + 8 * k);
    q->xeq = am_le32(p + 48);
    q->mb_w0 = am_le32(p + 52);
    memcpy(q->mb_stage, p + 56, QM_MAILBOX_SIZE);
    q->mb_data = am_le64(p + 72);
    q->db_stage[0] = am_le64(p + 80);
    q->db_stage[1] = am_le64(p + 88);
}

/* MANDATORY when a reader that skipped it would run the queues differently
 * (a stopped or broken queue running, an AEQE posted again, a STOP_QP
 * never completing, an event queue back to life); otherwise optional: a
 * 1.0 reader then loses only what 1.0 never carried, none of which stops
 * the guest's queues: an EQE a disarmed CQ posts again on resume (a
 * spurious event, which drivers take), a mailbox or doorbell store caught
 * half-way, a mailbox result not yet read. */
static bool qstate_mandatory(const struct mig_queue_state *q)
{
    bool any = q->xeq != 0 || (q->mb_w0 & MIG_MB_BUSY);

    for (unsigned k = 0; k < MIG_QS_COUNT; k++)
        any = any || (k != MIG_QS_CQ_DISARMED && q->bits[k] != 0);
    return any;
}

static int put_qstate(uint8_t *buf, size_t cap, size_t *len, const struct mig_queue_state *q)
{
    uint8_t p[MIG_QSTATE_LEN];

    qstate_pack(q, p);
    return mig_stream_put_record(buf, cap, len, MIG_REC_QSTATE,
                                 qstate_mandatory(q) ? MIG_REC_F_MANDATORY : 0, p, sizeof(p));
}

/* u64 SQ mask, u64 CQ mask, then the SQCs named, ascending, then the CQCs. */
static int put_qctx(uint8_t *buf, size_t cap, size_t *len, const struct mig_vf_snapshot *s)
{
    uint8_t p[MIG_QCTX_MAX_LEN];
    uint32_t n = MIG_QCTX_HDR_LEN;

    am_st64(p, s->ctx_sq);
    am_st64(p + 8, s->ctx_cq);
    for (unsigned kind = 0; kind < 2; kind++) {
        uint64_t mask = kind ? s->ctx_cq : s->ctx_sq;

        for (unsigned q = 0; q < MIG_MAX_QPS; q++) {
            if (!((mask >> q) & 1u))
                continue;
            dwords_pack(p + n, kind ? s->cqc[q] : s->sqc[q], 8);
            n += MIG_QC_LEN;
        }
    }
    return mig_stream_put_record(buf, cap, len, MIG_REC_QCTX, MIG_REC_F_MANDATORY, p, n);
}

int mig_stream_encode_tail(const struct mig_vf_snapshot *snap, uint8_t *buf, size_t cap,
                           size_t *len)
{
    uint8_t regs[MIG_REGS_LEN], eqc[MIG_EQC_LEN], aeqc[MIG_EQC_LEN], tables[MIG_TABLES_LEN],
        qps[MIG_QP_ACTIVE_LEN], irq[MIG_IRQ_LEN];
    const struct {
        uint16_t type;
        const uint8_t *payload;
        uint32_t len;
    } recs[] = {
        {MIG_REC_REGS, regs, sizeof(regs)},        {MIG_REC_EQC, eqc, sizeof(eqc)},
        {MIG_REC_AEQC, aeqc, sizeof(aeqc)},        {MIG_REC_TABLES, tables, sizeof(tables)},
        {MIG_REC_QP_ACTIVE, qps, sizeof(qps)},     {MIG_REC_IRQ, irq, sizeof(irq)},
    };
    size_t n = *len;
    int rc = 0;

    if (snap != NULL) {
        dwords_pack(regs, snap->regs, MIG_REG_COUNT);
        dwords_pack(eqc, snap->eqc, 7);
        dwords_pack(aeqc, snap->aeqc, 7);
        am_st64(tables, snap->sqc_bt);
        am_st64(tables + 8, snap->cqc_bt);
        am_st64(qps, snap->qp_active);
        am_st32(irq, snap->int_pending);
        am_st32(irq + 4, 0);
        am_st64(irq + 8, snap->ifc_msg);
        am_st64(irq + 16, snap->ifc_out_msg);
        for (size_t i = 0; i < AM_ARRAY_SIZE(recs) && rc == 0; i++)
            rc = mig_stream_put_record(buf, cap, &n, recs[i].type, MIG_REC_F_MANDATORY,
                                       recs[i].payload, recs[i].len);
        if (rc == 0)
            rc = put_qstate(buf, cap, &n, &snap->qs);
        if (rc == 0 && (snap->ctx_sq | snap->ctx_cq) != 0)
            rc = put_qctx(buf, cap, &n, snap);
    }
    if (rc == 0)
        rc = mig_stream_put_end(buf, cap, &n);
    if (rc == 0)
        *len = n;
    return rc;
}

size_t mig_stream_full_len(void)
{
    size_t n = MIG_STREAM_HDR_LEN;

    for (size_t i = 0; i < AM_ARRAY_SIZE(mig_rec_types); i++)
        if (mig_rec_types[i].type != MIG_REC_QCTX)
            n += MIG_REC_HDR_LEN + mig_rec_types[i].len;
    return n;
}

/* ---- decoding ---------------------------------------------------------- */

static int check_header(const uint8_t *b, size_t len, char *err, size_t errlen)
{
    uint16_t major;

    if (len >= 4 && memcmp(b, MIG_STREAM_MAGIC, 4) != 0)
        return fail(-EPROTO, err, errlen,
                    "foreign stream: magic %02x %02x %02x %02x is not \"AMVF\"", b[0], b[1], b[2],
                    b[3]);
    if (len < MIG_STREAM_HDR_LEN)
        return fail(-ENODATA, err, errlen, "truncated: %zu bytes, the header needs %u", len,
                    MIG_STREAM_HDR_LEN);
    major = am_le16(b + 4);
    if (major != MIG_STREAM_MAJOR)
        return fail(-EPROTONOSUPPORT, err, errlen,
                    "format version %u.%u: this reader speaks major %u only", major,
                    am_le16(b + 6), MIG_STREAM_MAJOR);
    return 0;
}

/* Reads the record header at off; -EAGAIN when the header or payload does
 * not fully lie in [0, len), -EBADMSG when it can never fit in a stream. */
static int read_record(const uint8_t *b, size_t len, size_t off, struct mig_stream_record *r,
                       char *err, size_t errlen)
{
    if (!am_range_ok(off, MIG_REC_HDR_LEN, len))
        return -EAGAIN;
    r->type = am_le16(b + off);
    r->flags = am_le16(b + off + 2);
    r->length = am_le32(b + off + 4);
    r->offset = (uint32_t)off;
    if (!am_range_ok(off + MIG_REC_HDR_LEN, r->length, MIG_STREAM_MAX))
        return fail(-EBADMSG, err, errlen,
                    "record %s (0x%04x) at offset %zu: length %u runs past the %u-byte limit",
                    mig_rec_type_name(r->type), r->type, off, r->length, MIG_STREAM_MAX);
    if (!am_range_ok(off + MIG_REC_HDR_LEN, r->length, len))
        return -EAGAIN;
    return 0;
}

/* A known record must have its type's exact length; QCTX a header and
 * whole contexts (that their count matches its masks is checked on decode). */
static int check_known_length(const struct mig_stream_record *r, char *err, size_t errlen)
{
    int i = rec_known_index(r->type);

    if (r->type == MIG_REC_QCTX) {
        if (r->length < MIG_QCTX_HDR_LEN || (r->length - MIG_QCTX_HDR_LEN) % MIG_QC_LEN != 0 ||
            r->length > MIG_QCTX_MAX_LEN)
            return fail(-EBADMSG, err, errlen,
                        "record QCTX at offset %u: length %u is not %u + 32 * n (n <= %u)",
                        r->offset, r->length, MIG_QCTX_HDR_LEN, 2 * MIG_MAX_QPS);
        return 0;
    }
    if (i >= 0 && r->length != mig_rec_types[i].len)
        return fail(-EBADMSG, err, errlen, "record %s at offset %u: length %u, expected %u",
                    mig_rec_types[i].name, r->offset, r->length, mig_rec_types[i].len);
    return 0;
}

/* MATCH on its own: what any accmig VF could have sent (the device id names
 * its engine: qm_engine_by_vf_device_id). */
static int check_match_values(const struct mig_match *m, char *err, size_t errlen)
{
    const struct {
        const char *what;
        uint16_t v;
    } depths[] = {{"SQ depth", m->sq_depth},
                  {"CQ depth", m->cq_depth},
                  {"EQ depth", m->eq_depth},
                  {"AEQ depth", m->aeq_depth}};

    if (m->format_major != MIG_STREAM_MAJOR)
        return fail(-EBADMSG, err, errlen, "MATCH: format major %u differs from the header's %u",
                    m->format_major, MIG_STREAM_MAJOR);
    if (qm_engine_by_vf_device_id(m->device_id) == NULL)
        return fail(-EBADMSG, err, errlen, "MATCH: device id %#06x is no engine's VF (%s)",
                    m->device_id, qm_engine_names());
    if (m->revision != QM_REV_V3 && m->revision != QM_REV_V4)
        return fail(-EBADMSG, err, errlen, "MATCH: revision %#04x is neither v3 (%#04x) nor v4 "
                    "(%#04x)", m->revision, QM_REV_V3, QM_REV_V4);
    if (m->qp_num == 0 || m->qp_num > MIG_MAX_QPS)
        return fail(-EBADMSG, err, errlen, "MATCH: qp count %u out of range 1..%u", m->qp_num,
                    MIG_MAX_QPS);
    for (size_t i = 0; i < AM_ARRAY_SIZE(depths); i++)
        if (depths[i].v < MIG_MIN_DEPTH)
            return fail(-EBADMSG, err, errlen, "MATCH: %s %u is below %u", depths[i].what,
                        depths[i].v, MIG_MIN_DEPTH);
    if (m->reserved != 0)
        return fail(-EBADMSG, err, errlen, "MATCH: reserved bytes 14..15 are %#x, not 0",
                    m->reserved);
    if (m->que_iso_cfg & ~mig_saved_regs[MIG_REG_QUE_ISO_CFG].valid_mask)
        return fail(-EBADMSG, err, errlen, "MATCH: QUE_ISO_CFG %#x has bits outside %#x",
                    m->que_iso_cfg, mig_saved_regs[MIG_REG_QUE_ISO_CFG].valid_mask);
    if (m->vf_state > QM_VF_STATE_NOT_READY)
        return fail(-EBADMSG, err, errlen, "MATCH: VF_STATE %u is neither READY nor NOT_READY",
                    m->vf_state);
    return 0;
}

int mig_stream_peek_match(const void *buf, size_t len, struct mig_match *match, char *err,
                          size_t errlen)
{
    const uint8_t *b = buf;
    struct mig_stream_record r;
    int rc;

    if (len > MIG_STREAM_MAX)
        return fail(-EFBIG, err, errlen, "stream of %zu bytes exceeds the %u-byte limit", len,
                    MIG_STREAM_MAX);
    rc = check_header(b, len, err, errlen);
    if (rc == -ENODATA)
        return -EAGAIN;
    if (rc != 0)
        return rc;
    if (len >= MIG_STREAM_HDR_LEN + 2 && am_le16(b + MIG_STREAM_HDR_LEN) != MIG_REC_MATCH)
        return fail(-EBADMSG, err, errlen, "first record is %s (0x%04x), not MATCH",
                    mig_rec_type_name(am_le16(b + MIG_STREAM_HDR_LEN)),
                    am_le16(b + MIG_STREAM_HDR_LEN));
    rc = read_record(b, len, MIG_STREAM_HDR_LEN, &r, err, errlen);
    if (rc == 0)
        rc = check_known_length(&r, err, errlen);
    if (rc != 0)
        return rc;
    match_unpack(b + MIG_STREAM_HDR_LEN + MIG_REC_HDR_LEN, match);
    return check_match_values(match, err, errlen);
}

int mig_match_check(const struct mig_match *src, const struct mig_match *dst, char *err,
                    size_t errlen)
{
    const struct {
        const char *what;
        uint32_t s, d;
        bool hex;
    } fields[] = {
        {"format major", src->format_major, dst->format_major, false},
        /* the engine: a SEC VF's state means nothing to a ZIP VF */
        {"device id", src->device_id, dst->device_id, true},
        {"revision", src->revision, dst->revision, true},
        {"qp count", src->qp_num, dst->qp_num, false},
        {"SQ depth", src->sq_depth, dst->sq_depth, false},
        {"CQ depth", src->cq_depth, dst->cq_depth, false},
        {"EQ depth", src->eq_depth, dst->eq_depth, false},
        {"AEQ depth", src->aeq_depth, dst->aeq_depth, false},
        {"isolation (QUE_ISO_CFG)", src->que_iso_cfg, dst->que_iso_cfg, true},
    };

    for (size_t i = 0; i < AM_ARRAY_SIZE(fields); i++) {
        if (fields[i].s == fields[i].d)
            continue;
        if (fields[i].hex)
            return fail(-EINVAL, err, errlen, "%s: source %#x, destination %#x", fields[i].what,
                        fields[i].s, fields[i].d);
        return fail(-EINVAL, err, errlen, "%s: source %u, destination %u", fields[i].what,
                    fields[i].s, fields[i].d);
    }
    return 0;
}

/* Pass 1: the record structure, the END record and its CRC. */
static int decode_structure(const uint8_t *b, size_t len, struct mig_stream_content *out,
                            char *err, size_t errlen)
{
    struct mig_stream_record r;
    size_t off = MIG_STREAM_HDR_LEN;
    int rc;

    for (;;) {
        if (off == len)
            return fail(-ENODATA, err, errlen, "truncated: %zu bytes and no END record", len);
        rc = read_record(b, len, off, &r, err, errlen);
        if (rc == -EAGAIN)
            return fail(-ENODATA, err, errlen,
                        "truncated: record at offset %zu needs more than the %zu bytes left", off,
                        len - off);
        if (rc != 0)
            return rc;
        if (out->nrecords == MIG_STREAM_MAX_RECORDS)
            return fail(-EBADMSG, err, errlen, "more than %u records", MIG_STREAM_MAX_RECORDS);
        out->records[out->nrecords++] = r;
        if (out->nrecords == 1 && r.type != MIG_REC_MATCH)
            return fail(-EBADMSG, err, errlen, "first record is %s (0x%04x), not MATCH",
                        mig_rec_type_name(r.type), r.type);
        rc = check_known_length(&r, err, errlen);
        if (rc != 0)
            return rc;
        off += MIG_REC_HDR_LEN + r.length;
        if (r.type == MIG_REC_END)
            break;
    }
    out->crc_checked = true;
    out->crc_stored = am_le32(b + off - MIG_END_LEN);
    out->crc_computed = am_crc32c(0, b, off - MIG_END_LEN);
    if (out->crc_stored != out->crc_computed)
        return fail(-EBADMSG, err, errlen, "CRC32C mismatch: stored %08x, computed %08x",
                    out->crc_stored, out->crc_computed);
    if (off != len)
        return fail(-EBADMSG, err, errlen, "%zu trailing bytes after the END record", len - off);
    return 0;
}

/* An EQC or AEQC as the shadow's write of dw6 loads it (qm_xeq_load_locked):
 * depth 2..the device's, a ring base that is not 0 and that its depth * 4
 * bytes do not wrap, head and tail inside the depth. Such a context comes
 * back live. All seven dwords zero is a queue the guest never set up: it is
 * written as it was and stays not live, as on the source. Anything else the
 * device would take without a word and not use: refused. The phase bit, the
 * other bits of dw6 and dw3..dw5 are the guest's and load as they are. */
static int check_xeq(const char *name, const uint32_t dw[7], uint32_t cap, char *err,
                     size_t errlen)
{
    const uint64_t base = (uint64_t)dw[2] << 32 | dw[1];
    const uint32_t depth = (dw[6] & 0xffffu) + 1u, head = dw[0] & 0xffffu, tail = dw[0] >> 16;
    uint64_t end;
    bool zero = true;

    for (unsigned i = 0; i < 7; i++)
        zero = zero && dw[i] == 0;
    if (zero)
        return 0;
    if (depth < MIG_MIN_DEPTH || depth > cap)
        return fail(-EBADMSG, err, errlen, "%s: depth %u outside %u..%u (the device's)", name,
                    depth, MIG_MIN_DEPTH, cap);
    if (base == 0)
        return fail(-EBADMSG, err, errlen, "%s: ring base 0 in a context that is not empty",
                    name);
    if (am_add_overflows_u64(base, (uint64_t)depth * MIG_XEQE_SIZE, &end))
        return fail(-EBADMSG, err, errlen,
                    "%s: ring base %#llx + %u entries of %u bytes wraps the address space", name,
                    (unsigned long long)base, depth, MIG_XEQE_SIZE);
    if (head >= depth || tail >= depth)
        return fail(-EBADMSG, err, errlen, "%s: head %u / tail %u outside depth %u", name, head,
                    tail, depth);
    return 0;
}

/* A table base as SQC_BT/CQC_BT (op=0) takes it: 0 is never sent (the guest
 * never set that table), anything else must leave room for one 32-byte slot
 * per queue a VF can have without wrapping. */
static int check_table(const char *name, uint64_t base, char *err, size_t errlen)
{
    const uint64_t span = (uint64_t)MIG_MAX_QPS * sizeof(struct qm_sqc);
    uint64_t end;

    if (base != 0 && am_add_overflows_u64(base, span, &end))
        return fail(-EBADMSG, err, errlen,
                    "TABLES: %s table base %#llx + %u slots of %zu bytes wraps the address space",
                    name, (unsigned long long)base, MIG_MAX_QPS, sizeof(struct qm_sqc));
    return 0;
}

static bool beyond(uint64_t mask, unsigned qps)
{
    return qps < MIG_MAX_QPS && (mask >> qps) != 0;
}

/* QSTATE as the window registers load it (qm_hw.h, QM_WIN_SQ_STOPPED_L ..):
 * every bit of a queue the VF has loads as written, except two things the
 * device does not hold: an SQ both stopped and stopping (STOP_QP on a
 * stopped SQ returns at once), and a busy mailbox that is not a STOP_QP
 * still draining its queue (the only command a paused function can have in
 * progress). In v3 the host shares that mailbox, so it is never busy in a
 * v3 stream, and a busy one would hold the destination's own RESUME_QM. */
static int check_qstate(const struct mig_stream_content *c, char *err, size_t errlen)
{
    const struct mig_queue_state *q = &c->state.qs;
    const unsigned qps = c->match.qp_num;
    uint64_t both;
    unsigned qn;

    for (unsigned k = 0; k < MIG_QS_COUNT; k++)
        if (beyond(q->bits[k], qps))
            return fail(-EBADMSG, err, errlen, "QSTATE: %s %#llx names queues beyond the %u of "
                        "MATCH", mig_qs_names[k], (unsigned long long)q->bits[k], qps);
    both = q->bits[MIG_QS_SQ_STOPPED] & q->bits[MIG_QS_SQ_STOPPING];
    if (both != 0)
        return fail(-EBADMSG, err, errlen, "QSTATE: SQ %u is both stopped and stopping",
                    mig_first(both));
    if (q->xeq & ~QM_XEQ_ST_MASK)
        return fail(-EBADMSG, err, errlen, "QSTATE: event queue state %#x has bits outside %#x",
                    q->xeq, QM_XEQ_ST_MASK);
    if (q->mb_w0 > 0xffffu)
        return fail(-EBADMSG, err, errlen, "QSTATE: mailbox w0 %#x is wider than 16 bits",
                    q->mb_w0);
    if (!(q->mb_w0 & MIG_MB_BUSY))
        return 0;
    qn = am_le16(q->mb_stage + 2);
    if (c->match.revision != QM_REV_V4)
        return fail(-EBADMSG, err, errlen, "QSTATE: mailbox busy in a v3 stream (the host "
                    "shares that mailbox: it is never busy at a save)");
    if ((q->mb_w0 & 0xffu) != QM_MB_CMD_STOP_QP)
        return fail(-EBADMSG, err, errlen, "QSTATE: mailbox busy with command %#x: only a "
                    "STOP_QP still draining can be", q->mb_w0 & 0xffu);
    if (qn >= qps || !((q->bits[MIG_QS_SQ_STOPPING] >> qn) & 1u))
        return fail(-EBADMSG, err, errlen, "QSTATE: mailbox busy on STOP_QP of queue %u, which "
                    "is not stopping", qn);
    return 0;
}

/* One context of QCTX as an SQC/CQC load takes it (qm_sq_load_locked,
 * qm_cq_load_locked): depth 2..MATCH's, the entry size field of its kind, a
 * ring base that is not 0 and does not wrap, head and tail inside the
 * depth, an SQ's CQ a queue of this VF. */
static int check_qc(const char *kind, unsigned qn, const uint32_t dw[8], unsigned cap,
                    unsigned esize_log2, unsigned esize, bool sqc, unsigned qps, char *err,
                    size_t errlen)
{
    const uint64_t base = (uint64_t)dw[2] << 32 | dw[1];
    const unsigned depth = (dw[3] & 0xfffu) + 1u, head = dw[0] & 0xffffu, tail = dw[0] >> 16;
    uint64_t end;

    if (depth < MIG_MIN_DEPTH || depth > cap)
        return fail(-EBADMSG, err, errlen, "QCTX: %s %u: depth %u outside %u..%u", kind, qn,
                    depth, MIG_MIN_DEPTH, cap);
    if (((dw[3] >> 12) & 0xfu) != esize_log2)
        return fail(-EBADMSG, err, errlen, "QCTX: %s %u: entry size field %u, not %u", kind, qn,
                    (dw[3] >> 12) & 0xfu, esize_log2);
    if (base == 0 || am_add_overflows_u64(base, (uint64_t)depth * esize, &end))
        return fail(-EBADMSG, err, errlen, "QCTX: %s %u: ring base %#llx with %u entries is 0 "
                    "or wraps the address space", kind, qn, (unsigned long long)base, depth);
    if (head >= depth || tail >= depth)
        return fail(-EBADMSG, err, errlen, "QCTX: %s %u: head %u / tail %u outside depth %u",
                    kind, qn, head, tail, depth);
    if (sqc && (dw[6] & 0xffffu) >= qps)
        return fail(-EBADMSG, err, errlen, "QCTX: SQC %u: CQ %u beyond the %u queues of MATCH",
                    qn, dw[6] & 0xffffu, qps);
    return 0;
}

/* QCTX: contexts loaded straight into the destination's cache (through
 * QM_WIN_QC_*), for queues of this VF; an SQC is of a queue QP_ACTIVE names
 * (a loaded SQ is active). */
static int check_qctx(const struct mig_stream_content *c, char *err, size_t errlen)
{
    const struct mig_vf_snapshot *s = &c->state;
    const unsigned qps = c->match.qp_num;
    /* MATCH was checked: the device id is a known engine's. */
    const struct qm_engine *e = qm_engine_by_vf_device_id(c->match.device_id);
    int rc = 0;

    if (e == NULL)
        return fail(-EBADMSG, err, errlen, "QCTX: MATCH names no engine");
    if (beyond(s->ctx_sq, qps) || beyond(s->ctx_cq, qps))
        return fail(-EBADMSG, err, errlen, "QCTX: masks %#llx/%#llx name queues beyond the %u "
                    "of MATCH", (unsigned long long)s->ctx_sq, (unsigned long long)s->ctx_cq,
                    qps);
    if (s->ctx_sq & ~s->qp_active)
        return fail(-EBADMSG, err, errlen, "QCTX: SQC of queue %u, which QP_ACTIVE does not "
                    "name", mig_first(s->ctx_sq & ~s->qp_active));
    for (unsigned q = 0; q < MIG_MAX_QPS && rc == 0; q++) {
        if ((s->ctx_sq >> q) & 1u)
            rc = check_qc("SQC", q, s->sqc[q], c->match.sq_depth, e->sqe_size_log2, e->sqe_size,
                          true, qps, err, errlen);
        if (rc == 0 && ((s->ctx_cq >> q) & 1u))
            rc = check_qc("CQC", q, s->cqc[q], c->match.cq_depth, 4u, MIG_CQE_SIZE, false, qps,
                          err, errlen);
    }
    return rc;
}

/* The state records, against what the destination's load would refuse or
 * silently not hold, and against MATCH (docs/stream-format.md, "What the
 * check refuses"). A rule here must never refuse a state a guest can put
 * its VF in: that would let the guest deny its own migration. */
static int check_state_values(const struct mig_stream_content *c, char *err, size_t errlen)
{
    const struct mig_vf_snapshot *s = &c->state;
    int rc;

    for (unsigned i = 0; i < MIG_REG_COUNT; i++) {
        const struct mig_reg_desc *d = &mig_saved_regs[i];

        if (s->regs[i] & ~d->valid_mask)
            return fail(-EBADMSG, err, errlen, "REGS: %s = %#x has bits outside %#x", d->name,
                        s->regs[i], d->valid_mask);
    }
    if (s->regs[MIG_REG_VF_STATE] != QM_VF_STATE_READY)
        return fail(-EBADMSG, err, errlen, "REGS: VF_STATE %u with state records (READY is 0)",
                    s->regs[MIG_REG_VF_STATE]);
    if (s->regs[MIG_REG_QUE_ISO_CFG] != c->match.que_iso_cfg)
        return fail(-EBADMSG, err, errlen, "REGS: QUE_ISO_CFG %#x differs from MATCH's %#x",
                    s->regs[MIG_REG_QUE_ISO_CFG], c->match.que_iso_cfg);
    rc = check_xeq("EQC", s->eqc, c->match.eq_depth, err, errlen);
    if (rc == 0)
        rc = check_xeq("AEQC", s->aeqc, c->match.aeq_depth, err, errlen);
    if (rc == 0)
        rc = check_table("SQC", s->sqc_bt, err, errlen);
    if (rc == 0)
        rc = check_table("CQC", s->cqc_bt, err, errlen);
    if (rc != 0)
        return rc;
    if (c->match.qp_num < MIG_MAX_QPS && (s->qp_active >> c->match.qp_num) != 0)
        return fail(-EBADMSG, err, errlen, "QP_ACTIVE: %#llx names queues beyond the %u of MATCH",
                    (unsigned long long)s->qp_active, c->match.qp_num);
    if (s->int_pending & ~MIG_NUM_VECTORS_MASK)
        return fail(-EBADMSG, err, errlen, "IRQ: pending vectors %#x beyond the %u of a VF",
                    s->int_pending, QM_NUM_VECTORS);
    rc = check_qstate(c, err, errlen);
    return rc != 0 ? rc : check_qctx(c, err, errlen);
}

/* Pass 2: decode the known records, skip unknown optional ones. Every
 * record is decoded (for inspect) even after an error; the first error is
 * the result. */
static int decode_records(const uint8_t *b, struct mig_stream_content *out, char *err,
                          size_t errlen)
{
    struct mig_vf_snapshot *s = &out->state;
    unsigned seen_state = 0; /* bit i: mig_state_records[i] present */
    unsigned seen_ext = 0;   /* bit i: mig_ext_records[i] present */
    int rc = 0;

#define FIRST_ERROR(...) (rc = rc != 0 ? rc : fail(-EBADMSG, err, errlen, __VA_ARGS__))
    for (unsigned i = 0; i < out->nrecords; i++) {
        const struct mig_stream_record *r = &out->records[i];
        const uint8_t *p = b + r->offset + MIG_REC_HDR_LEN;
        unsigned bit = 0;

        for (unsigned k = 0; k < AM_ARRAY_SIZE(mig_state_records); k++)
            if (mig_state_records[k] == r->type)
                bit = 1u << k;
        if (bit != 0 && (seen_state & bit))
            FIRST_ERROR("record %s at offset %u appears twice", mig_rec_type_name(r->type),
                        r->offset);
        seen_state |= bit;
        for (unsigned k = 0; k < AM_ARRAY_SIZE(mig_ext_records); k++) {
            if (mig_ext_records[k] != r->type)
                continue;
            if (seen_ext & (1u << k))
                FIRST_ERROR("record %s at offset %u appears twice", mig_rec_type_name(r->type),
                            r->offset);
            seen_ext |= 1u << k;
        }
        switch (r->type) {
        case MIG_REC_MATCH:
            if (i != 0) {
                FIRST_ERROR("a second MATCH record at offset %u", r->offset);
                break;
            }
            match_unpack(p, &out->match);
            out->have_match = true;
            if (rc == 0)
                rc = check_match_values(&out->match, err, errlen);
            break;
        case MIG_REC_REGS:
            dwords_unpack(p, s->regs, MIG_REG_COUNT);
            break;
        case MIG_REC_EQC:
            dwords_unpack(p, s->eqc, 7);
            break;
        case MIG_REC_AEQC:
            dwords_unpack(p, s->aeqc, 7);
            break;
        case MIG_REC_TABLES:
            s->sqc_bt = am_le64(p);
            s->cqc_bt = am_le64(p + 8);
            break;
        case MIG_REC_QP_ACTIVE:
            s->qp_active = am_le64(p);
            break;
        case MIG_REC_IRQ:
            s->int_pending = am_le32(p);
            s->ifc_msg = am_le64(p + 8);
            s->ifc_out_msg = am_le64(p + 16);
            if (am_le32(p + 4) != 0)
                FIRST_ERROR("IRQ: reserved word is %#x, not 0", am_le32(p + 4));
            break;
        case MIG_REC_QSTATE:
            qstate_unpack(p, &s->qs);
            break;
        case MIG_REC_QCTX: {
            uint32_t n = MIG_QCTX_HDR_LEN;

            s->ctx_sq = am_le64(p);
            s->ctx_cq = am_le64(p + 8);
            if (r->length != MIG_QCTX_HDR_LEN + MIG_QC_LEN * (uint32_t)(mig_weight(s->ctx_sq) +
                                                                        mig_weight(s->ctx_cq))) {
                FIRST_ERROR("QCTX: length %u does not hold the %u contexts its masks name",
                            r->length, mig_weight(s->ctx_sq) + mig_weight(s->ctx_cq));
                break;
            }
            for (unsigned kind = 0; kind < 2; kind++) {
                uint64_t mask = kind ? s->ctx_cq : s->ctx_sq;

                for (unsigned q = 0; q < MIG_MAX_QPS; q++) {
                    if (!((mask >> q) & 1u))
                        continue;
                    dwords_unpack(p + n, kind ? s->cqc[q] : s->sqc[q], 8);
                    n += MIG_QC_LEN;
                }
            }
            break;
        }
        case MIG_REC_END:
            break;
        default:
            if (r->flags & MIG_REC_F_MANDATORY)
                FIRST_ERROR("unknown mandatory record type 0x%04x at offset %u", r->type,
                            r->offset);
            else
                out->skipped_optional++;
            break;
        }
    }
#undef FIRST_ERROR
    if (rc == 0 && seen_state == 0 && seen_ext != 0)
        return fail(-EBADMSG, err, errlen, "%s without the state records",
                    mig_rec_type_name(mig_ext_records[(seen_ext & 1u) ? 0 : 1]));
    if (rc != 0 || seen_state == 0)
        return rc;
    for (unsigned k = 0; k < AM_ARRAY_SIZE(mig_state_records); k++)
        if (!(seen_state & (1u << k)))
            return fail(-EBADMSG, err, errlen, "state records present but %s is missing",
                        mig_rec_type_name(mig_state_records[k]));
    out->has_state = true;
    return 0;
}

int mig_stream_check(const void *buf, size_t len, const struct mig_match *dst,
                     struct mig_stream_content *out, char *err, size_t errlen)
{
    const uint8_t *b = buf;
    int rc;

    memset(out, 0, sizeof(*out));
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (len > MIG_STREAM_MAX)
        return fail(-EFBIG, err, errlen, "stream of %zu bytes exceeds the %u-byte limit", len,
                    MIG_STREAM_MAX);
    if (len == 0)
        return fail(-ENODATA, err, errlen, "truncated: empty stream");
    rc = check_header(b, len, err, errlen);
    if (rc != 0)
        return rc;
    out->major = am_le16(b + 4);
    out->minor = am_le16(b + 6);
    rc = decode_structure(b, len, out, err, errlen);
    if (rc != 0) {
        /* Show what can be shown of a bad stream (inspect); the first
         * error stands. Records are only decoded when every one of them
         * was delimited (the END record was reached). */
        char ignored[160];

        if (out->crc_checked)
            (void)decode_records(b, out, ignored, sizeof(ignored));
        else if (out->nrecords > 0 && out->records[0].type == MIG_REC_MATCH &&
                 out->records[0].length == MIG_MATCH_LEN) {
            match_unpack(b + MIG_STREAM_HDR_LEN + MIG_REC_HDR_LEN, &out->match);
            out->have_match = true;
        }
        return rc;
    }
    rc = decode_records(b, out, err, errlen);
    if (rc == 0 && dst != NULL)
        rc = mig_match_check(&out->match, dst, err, errlen);
    if (rc == 0 && out->has_state)
        rc = check_state_values(out, err, errlen);
    return rc;
}

int mig_stream_decode(const void *buf, size_t len, struct mig_stream_content *out, char *err,
                      size_t errlen)
{
    return mig_stream_check(buf, len, NULL, out, err, errlen);
}
