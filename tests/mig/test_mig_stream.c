/* The device-state stream codec (pure): round trip, truncation, corruption,
 * oversized and foreign streams, record rules, match compatibility. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/common.h"
#include "mig/stream.h"

static struct mig_match sample_match(void)
{
    return (struct mig_match){
        .device_id = QM_ZIP_VF_DEVICE_ID,
        .revision = QM_REV_V4,
        .format_major = MIG_STREAM_MAJOR,
        .qp_num = 4,
        .sq_depth = 1024,
        .cq_depth = 1024,
        .eq_depth = 2048,
        .aeq_depth = 1024,
        .que_iso_cfg = 0,
        .vf_state = QM_VF_STATE_READY,
    };
}

static struct mig_vf_snapshot sample_snapshot(void)
{
    struct mig_vf_snapshot s;

    memset(&s, 0, sizeof(s));
    s.regs[MIG_REG_AEQ_INT_MASK] = 0;
    s.regs[MIG_REG_EQ_INT_SOURCE] = 1;
    s.regs[MIG_REG_IFC_INT_MASK] = 0;
    s.regs[MIG_REG_PAGE_SIZE] = 0;
    s.regs[MIG_REG_VF_STATE] = QM_VF_STATE_READY;
    s.eqc[0] = 5u | 9u << 16; /* head 5, tail 9 */
    s.eqc[1] = 0x10000;
    s.eqc[6] = QM_EQC_DW6(2048, 1);
    s.aeqc[1] = 0x20000;
    s.aeqc[6] = QM_EQC_DW6(1024, 1);
    s.sqc_bt = 0x300000;
    s.cqc_bt = 0x301000;
    s.qp_active = 0x5;
    s.int_pending = 1u << QM_VEC_EQ;
    s.ifc_msg = 0x1234000000003ull;
    s.ifc_out_msg = 0x4;
    return s;
}

/* A usable SQC / CQC of queue q (QCTX), as the mailbox would load it. */
static void sample_sqc(uint32_t dw[8], unsigned q, unsigned cq)
{
    memset(dw, 0, 8 * sizeof(uint32_t));
    dw[0] = 3u | 7u << 16;
    dw[1] = 0x100000u + q * 0x40000u;
    dw[3] = QM_SQC_DW3(1024);
    dw[6] = cq | (uint32_t)QM_SQC_W13(0) << 16;
}

static void sample_cqc(uint32_t dw[8], unsigned q)
{
    memset(dw, 0, 8 * sizeof(uint32_t));
    dw[0] = 5u | 5u << 16;
    dw[1] = 0x120000u + q * 0x40000u;
    dw[3] = QM_CQC_DW3(1024);
    dw[6] = QM_CQC_DW6_PHASE | QM_CQC_DW6_EQ_EN;
}

/* Queues 0 and 2 (QP_ACTIVE 0x5) whose contexts are in no table. */
static void with_qctx(struct mig_vf_snapshot *s)
{
    s->sqc_bt = s->cqc_bt = 0;
    s->ctx_sq = s->ctx_cq = 0x5;
    sample_sqc(s->sqc[0], 0, 0);
    sample_sqc(s->sqc[2], 2, 2);
    sample_cqc(s->cqc[0], 0);
    sample_cqc(s->cqc[2], 2);
}

/* A STOP_QP of queue q still draining, the guest's mailbox busy on it. */
static void with_draining_stop(struct mig_vf_snapshot *s, unsigned q)
{
    s->qs.bits[MIG_QS_SQ_STOPPING] |= 1ull << q;
    s->qs.mb_w0 = QM_MB_CMD_STOP_QP | 1u << QM_MB_BUSY_SHIFT;
    am_st16(s->qs.mb_stage, (uint16_t)s->qs.mb_w0);
    am_st16(s->qs.mb_stage + 2, (uint16_t)q);
}

static void assert_match_equal(const struct mig_match *a, const struct mig_match *b)
{
    char err[160];

    assert_int_equal(mig_match_check(a, b, err, sizeof(err)), 0);
    assert_int_equal(a->vf_state, b->vf_state);
}

/* A complete stream; snap NULL = a NOT_READY source. */
static size_t build(uint8_t *buf, const struct mig_match *m, const struct mig_vf_snapshot *snap)
{
    size_t len = 0;

    assert_int_equal(mig_stream_encode_head(m, buf, MIG_STREAM_MAX, &len), 0);
    assert_int_equal(mig_stream_encode_tail(snap, buf, MIG_STREAM_MAX, &len), 0);
    return len;
}

static int decode(const uint8_t *buf, size_t len, struct mig_stream_content *c, char *err)
{
    return mig_stream_decode(buf, len, c, err, 160);
}

static void test_a_ready_stream_round_trips_and_fits_the_size_target(void **state)
{
    static struct mig_stream_content c;
    struct mig_match m = sample_match();
    struct mig_vf_snapshot s = sample_snapshot();
    uint8_t buf[MIG_STREAM_MAX];
    char err[160];
    size_t len = build(buf, &m, &s);
    (void)state;

    assert_int_equal(len, mig_stream_full_len());
    assert_true(len <= 512);
    assert_int_equal(decode(buf, len, &c, err), 0);
    assert_true(c.have_match && c.has_state && c.crc_checked);
    assert_match_equal(&c.match, &m);
    assert_memory_equal(&c.state, &s, sizeof(s));
    assert_int_equal(c.nrecords, 9);
    assert_int_equal(c.records[0].type, MIG_REC_MATCH);
    /* A QSTATE that says nothing is optional: a 1.0 reader may skip it. */
    assert_int_equal(c.records[7].type, MIG_REC_QSTATE);
    assert_int_equal(c.records[7].flags, 0);
    assert_int_equal(c.records[8].type, MIG_REC_END);
    assert_int_equal(c.crc_stored, c.crc_computed);
}

static void test_a_not_ready_stream_carries_only_the_match_data(void **state)
{
    static struct mig_stream_content c;
    struct mig_match m = sample_match();
    uint8_t buf[MIG_STREAM_MAX];
    char err[160];
    size_t len;
    (void)state;

    m.vf_state = QM_VF_STATE_NOT_READY;
    len = build(buf, &m, NULL);
    assert_int_equal(len, MIG_STREAM_HDR_LEN + 2 * MIG_REC_HDR_LEN + MIG_MATCH_LEN + MIG_END_LEN);
    assert_int_equal(decode(buf, len, &c, err), 0);
    assert_false(c.has_state);
    assert_int_equal(c.match.vf_state, QM_VF_STATE_NOT_READY);
    assert_int_equal(c.nrecords, 2);
}

static void test_every_truncation_length_is_refused(void **state)
{
    static struct mig_stream_content c;
    struct mig_match m = sample_match();
    struct mig_vf_snapshot s = sample_snapshot();
    uint8_t buf[MIG_STREAM_MAX];
    char err[160];
    size_t len = build(buf, &m, &s);
    (void)state;

    for (size_t cut = 0; cut < len; cut++) {
        int rc = decode(buf, cut, &c, err);

        assert_int_equal(rc, -ENODATA);
        assert_non_null(strstr(err, "truncated"));
    }
}

static void test_every_single_byte_corruption_is_caught(void **state)
{
    static struct mig_stream_content c;
    static const uint8_t flips[] = {0x01, 0x02, 0x10, 0x80, 0xff};
    struct mig_match m = sample_match();
    struct mig_vf_snapshot s = sample_snapshot();
    uint8_t buf[MIG_STREAM_MAX], bad[MIG_STREAM_MAX];
    char err[160];
    size_t len = build(buf, &m, &s);
    (void)state;

    for (size_t i = 0; i < len; i++) {
        for (size_t f = 0; f < sizeof(flips); f++) {
            memcpy(bad, buf, len);
            bad[i] ^= flips[f];
            assert_true(decode(bad, len, &c, err) < 0);
            assert_true(err[0] != '\0');
        }
    }
}

static void test_a_corrupted_payload_fails_the_crc_and_names_both_values(void **state)
{
    static struct mig_stream_content c;
    struct mig_match m = sample_match();
    struct mig_vf_snapshot s = sample_snapshot();
    uint8_t buf[MIG_STREAM_MAX];
    char err[160];
    size_t len = build(buf, &m, &s);
    (void)state;

    buf[MIG_STREAM_HDR_LEN + MIG_REC_HDR_LEN + 40] ^= 0x04; /* inside REGS */
    assert_int_equal(decode(buf, len, &c, err), -EBADMSG);
    assert_non_null(strstr(err, "CRC32C mismatch"));
    assert_true(c.crc_checked);
    assert_int_not_equal(c.crc_stored, c.crc_computed);
    assert_int_equal(c.nrecords, 9); /* still listed, for inspect */
}

static void test_oversized_streams_and_record_lengths_are_refused(void **state)
{
    static struct mig_stream_content c;
    static uint8_t big[MIG_STREAM_MAX + 1];
    struct mig_match m = sample_match();
    uint8_t buf[MIG_STREAM_MAX];
    char err[160];
    size_t len = build(buf, &m, NULL);
    (void)state;

    memcpy(big, buf, len);
    assert_int_equal(decode(big, sizeof(big), &c, err), -EFBIG);
    /* MATCH claiming 4 GiB, and claiming just past the limit. */
    am_st32(buf + MIG_STREAM_HDR_LEN + 4, 0xffffffffu);
    assert_int_equal(decode(buf, len, &c, err), -EBADMSG);
    assert_non_null(strstr(err, "limit"));
    am_st32(buf + MIG_STREAM_HDR_LEN + 4,
            MIG_STREAM_MAX - MIG_STREAM_HDR_LEN - MIG_REC_HDR_LEN + 1);
    assert_int_equal(decode(buf, len, &c, err), -EBADMSG);
    /* A known record with a wrong (but in-bounds) length. */
    len = build(buf, &m, NULL);
    am_st32(buf + MIG_STREAM_HDR_LEN + 4, MIG_MATCH_LEN - 4);
    assert_int_equal(decode(buf, len, &c, err), -EBADMSG);
    assert_non_null(strstr(err, "expected 24"));
}

static void test_foreign_magic_and_other_major_versions_are_refused(void **state)
{
    static struct mig_stream_content c;
    struct mig_match m = sample_match();
    uint8_t buf[MIG_STREAM_MAX];
    char err[160];
    size_t len = build(buf, &m, NULL);
    (void)state;

    memcpy(buf, "\xde\xde\xca\xde", 4); /* not ours */
    assert_int_equal(decode(buf, len, &c, err), -EPROTO);
    assert_non_null(strstr(err, "foreign"));
    assert_int_equal(decode(buf, 3, &c, err), -ENODATA); /* too short to say */
    len = build(buf, &m, NULL);
    am_st16(buf + 4, 2);
    assert_int_equal(decode(buf, len, &c, err), -EPROTONOSUPPORT);
    assert_non_null(strstr(err, "format version 2.1"));
}

/* Builds a stream from the head of m, extra records, then END. */
static size_t build_with(uint8_t *buf, const struct mig_match *m, uint16_t type, uint16_t flags,
                         const void *payload, uint32_t plen)
{
    size_t len = 0;

    assert_int_equal(mig_stream_encode_head(m, buf, MIG_STREAM_MAX, &len), 0);
    assert_int_equal(mig_stream_put_record(buf, MIG_STREAM_MAX, &len, type, flags, payload, plen),
                     0);
    assert_int_equal(mig_stream_put_end(buf, MIG_STREAM_MAX, &len), 0);
    return len;
}

static void test_unknown_optional_records_are_skipped_and_mandatory_ones_refused(void **state)
{
    static struct mig_stream_content c;
    struct mig_match m = sample_match();
    uint8_t buf[MIG_STREAM_MAX], extra[40] = {1, 2, 3};
    char err[160];
    size_t len;
    (void)state;

    len = build_with(buf, &m, 0x0042, 0, extra, sizeof(extra));
    assert_int_equal(decode(buf, len, &c, err), 0);
    assert_int_equal(c.skipped_optional, 1);
    assert_int_equal(c.nrecords, 3);
    len = build_with(buf, &m, 0x0042, MIG_REC_F_MANDATORY, extra, sizeof(extra));
    assert_int_equal(decode(buf, len, &c, err), -EBADMSG);
    assert_non_null(strstr(err, "unknown mandatory record type 0x0042"));
    /* An empty optional record is fine too. */
    len = build_with(buf, &m, 0x0100, 0, NULL, 0);
    assert_int_equal(decode(buf, len, &c, err), 0);
}

static void test_record_order_and_completeness_rules_are_enforced(void **state)
{
    static struct mig_stream_content c;
    struct mig_match m = sample_match();
    struct mig_vf_snapshot s = sample_snapshot();
    uint8_t buf[MIG_STREAM_MAX], p[MIG_MATCH_LEN] = {0};
    char err[160];
    size_t len = 0;
    (void)state;

    /* MATCH not first. */
    assert_int_equal(mig_stream_put_header(buf, sizeof(buf), &len, 1, 0), 0);
    assert_int_equal(mig_stream_put_record(buf, sizeof(buf), &len, 0x0042, 0, p, 4), 0);
    assert_int_equal(mig_stream_put_end(buf, sizeof(buf), &len), 0);
    assert_int_equal(decode(buf, len, &c, err), -EBADMSG);
    assert_non_null(strstr(err, "not MATCH"));
    /* A second MATCH. */
    len = build(buf, &m, NULL);
    len -= MIG_REC_HDR_LEN + MIG_END_LEN;
    assert_int_equal(mig_stream_put_record(buf, sizeof(buf), &len, MIG_REC_MATCH,
                                           MIG_REC_F_MANDATORY,
                                           buf + MIG_STREAM_HDR_LEN + MIG_REC_HDR_LEN,
                                           MIG_MATCH_LEN),
                     0);
    assert_int_equal(mig_stream_put_end(buf, sizeof(buf), &len), 0);
    assert_int_equal(decode(buf, len, &c, err), -EBADMSG);
    assert_non_null(strstr(err, "second MATCH"));
    /* A state record alone. */
    len = build_with(buf, &m, MIG_REC_QP_ACTIVE, MIG_REC_F_MANDATORY, "\1\0\0\0\0\0\0\0", 8);
    assert_int_equal(decode(buf, len, &c, err), -EBADMSG);
    assert_non_null(strstr(err, "missing"));
    /* Trailing bytes after END. */
    len = build(buf, &m, &s);
    buf[len] = 0;
    assert_int_equal(decode(buf, len + 1, &c, err), -EBADMSG);
    assert_non_null(strstr(err, "trailing"));
}

/* Rule i of the check broken once in the sample stream (the encoder
 * recomputes the CRC); returns what the refusal must say, NULL past the
 * last rule. */
static const char *break_rule(unsigned i, struct mig_match *m, struct mig_vf_snapshot *s)
{
    switch (i) {
    case 0: m->device_id = 0xa250; return "MATCH: device id 0xa250";
    case 1: m->revision = 0x40; return "MATCH: revision 0x40";
    case 2: m->qp_num = 0; return "MATCH: qp count 0";
    case 3: m->qp_num = 65; return "MATCH: qp count 65";
    case 4: m->eq_depth = 1; return "MATCH: EQ depth 1";
    case 5: m->reserved = 0x100; return "MATCH: reserved";
    case 6: m->que_iso_cfg = 2; s->regs[MIG_REG_QUE_ISO_CFG] = 2; return "MATCH: QUE_ISO_CFG 0x2";
    case 7: m->vf_state = 2; return "MATCH: VF_STATE 2";
    case 8: s->regs[MIG_REG_EQ_INT_MASK] = 0x100; return "REGS: EQ_INT_MASK";
    case 9: s->regs[MIG_REG_PAGE_SIZE] = 4; return "REGS: PAGE_SIZE = 0x4";
    case 10: s->regs[MIG_REG_VF_STATE] = QM_VF_STATE_NOT_READY; return "REGS: VF_STATE";
    case 11: s->regs[MIG_REG_QUE_ISO_CFG] = 1; return "REGS: QUE_ISO_CFG 0x1 differs";
    case 12: s->eqc[0] = 0; s->eqc[6] = QM_EQC_DW6(1, 1); return "EQC: depth 1";
    case 13: s->aeqc[6] = QM_EQC_DW6(2048, 1); return "AEQC: depth 2048 outside 2..1024";
    case 14: s->eqc[1] = 0; return "EQC: ring base 0";
    case 15: /* the ring's end would be 2^64 */
        s->eqc[1] = 0xffffe000u; s->eqc[2] = 0xffffffffu;
        return "EQC: ring base 0xffffffffffffe000 + 2048 entries";
    case 16: s->eqc[0] = 2048; return "EQC: head 2048";
    case 17: s->aeqc[0] = 1024u << 16; return "AEQC: head 0 / tail 1024";
    case 18: s->sqc_bt = 0xffffffffffffff00ull; /* issue 11: sent the destination to ERROR */
        return "TABLES: SQC table base 0xffffffffffffff00";
    case 19: s->cqc_bt = 0xfffffffffffff800ull; return "TABLES: CQC table base";
    case 20: s->qp_active = 1u << 4; return "QP_ACTIVE"; /* queue 4 of a 4-queue VF */
    case 21: s->int_pending = 1u << 4; return "IRQ: pending vectors 0x10";
    case 22: s->qs.bits[MIG_QS_SQ_STOPPED] = 1u << 4; return "QSTATE: SQ stopped 0x10 names queues";
    case 23: s->qs.bits[MIG_QS_CQ_DISARMED] = 1ull << 63; return "QSTATE: CQ disarmed";
    case 24: s->qs.bits[MIG_QS_SQ_STOPPED] = s->qs.bits[MIG_QS_SQ_STOPPING] = 0x2;
        return "QSTATE: SQ 1 is both stopped and stopping";
    case 25: s->qs.xeq = 0x10; return "QSTATE: event queue state 0x10";
    case 26: s->qs.mb_w0 = 0x10000; return "QSTATE: mailbox w0 0x10000";
    case 27: with_draining_stop(s, 1); s->qs.mb_w0 = QM_MB_CMD_SQC_VFT_V2 | 1u << QM_MB_BUSY_SHIFT;
        return "QSTATE: mailbox busy with command 0x6";
    case 28: with_draining_stop(s, 1); am_st16(s->qs.mb_stage + 2, 2);
        return "QSTATE: mailbox busy on STOP_QP of queue 2, which is not stopping";
    case 29: with_draining_stop(s, 1); am_st16(s->qs.mb_stage + 2, 4);
        return "QSTATE: mailbox busy on STOP_QP of queue 4";
    case 30: with_draining_stop(s, 1); m->revision = QM_REV_V3;
        return "QSTATE: mailbox busy in a v3 stream";
    case 31: with_qctx(s); s->ctx_cq |= 1u << 4; sample_cqc(s->cqc[4], 4);
        return "QCTX: masks 0x5/0x15 name queues beyond";
    case 32: with_qctx(s); s->ctx_sq |= 0x2; sample_sqc(s->sqc[1], 1, 1);
        return "QCTX: SQC of queue 1, which QP_ACTIVE does not name";
    case 33: with_qctx(s); s->sqc[2][3] = QM_SQC_DW3(1); return "QCTX: SQC 2: depth 1";
    case 34: with_qctx(s); s->sqc[0][3] = QM_SQC_DW3(2048); return "QCTX: SQC 0: depth 2048";
    case 35: with_qctx(s); s->sqc[0][3] = 0x43ff; return "QCTX: SQC 0: entry size field 4, not 7";
    case 36: with_qctx(s); s->cqc[2][3] = 0x73ff; return "QCTX: CQC 2: entry size field 7, not 4";
    case 37: with_qctx(s); s->cqc[0][1] = 0; return "QCTX: CQC 0: ring base 0 with 1024 entries is 0";
    case 38: with_qctx(s); s->sqc[0][1] = 0xfffe0001u; s->sqc[0][2] = 0xffffffffu;
        return "QCTX: SQC 0: ring base 0xfffffffffffe0001 with 1024 entries";
    case 39: with_qctx(s); s->cqc[0][0] = 1024; return "QCTX: CQC 0: head 1024";
    case 40: with_qctx(s); s->sqc[2][0] = 5u | 1024u << 16; return "QCTX: SQC 2: head 5 / tail 1024";
    case 41: with_qctx(s); s->sqc[2][6] = 4; return "QCTX: SQC 2: CQ 4 beyond";
    default: return NULL;
    }
}

static void test_each_rule_broken_once_is_refused_naming_it(void **state)
{
    static struct mig_stream_content c;
    uint8_t buf[MIG_STREAM_MAX];
    const char *expect;
    char err[160];
    unsigned i;
    (void)state;

    for (i = 0;; i++) {
        struct mig_match m = sample_match(), dst;
        struct mig_vf_snapshot s = sample_snapshot();
        size_t len;

        expect = break_rule(i, &m, &s);
        if (expect == NULL)
            break;
        dst = m; /* a destination of the stream's own kind */
        len = build(buf, &m, &s);
        assert_int_equal(decode(buf, len, &c, err), -EBADMSG);
        if (strstr(err, expect) == NULL)
            fail_msg("rule %u: \"%s\" does not say \"%s\"", i, err, expect);
        /* The destination's call gives the same verdict. */
        assert_int_equal(mig_stream_check(buf, len, &dst, &c, err, sizeof(err)), -EBADMSG);
    }
    assert_int_equal(i, 42);
}

/* State i a guest can put its VF in (each through a register or a mailbox
 * command the device accepts); NULL past the last. None may be refused: a
 * guest could deny its own migration with it. */
static const char *reachable_state(unsigned i, struct mig_vf_snapshot *s)
{
    switch (i) {
    case 0: s->regs[MIG_REG_PAGE_SIZE] = 3; return "PAGE_SIZE 3 (the register holds 2 bits)";
    case 1: memset(s->eqc, 0, sizeof(s->eqc)); return "no EQ ever loaded";
    case 2: memset(s->aeqc, 0, sizeof(s->aeqc)); return "no AEQ ever loaded";
    case 3: s->eqc[6] = QM_EQC_DW6(2048, 0); return "EQ phase 0";
    case 4: s->eqc[1] = 0x10001; return "an unaligned EQ base";
    case 5: s->eqc[3] = s->eqc[4] = s->eqc[5] = 0xffffffffu; s->eqc[6] |= 0xfffe0000u;
        return "dw3..dw5 and dw6's upper bits set";
    case 6: s->eqc[0] = 1; s->eqc[6] = QM_EQC_DW6(2, 1); return "an EQ of depth 2";
    case 7: s->eqc[1] = 0xffffdfffu; s->eqc[2] = 0xffffffffu;
        return "an EQ ring that ends at the top of the address space";
    case 8: s->sqc_bt = s->cqc_bt = 0; return "queues loaded without table bases";
    case 9: s->sqc_bt = 0xfffffffffffff7ffull; return "an SQC table at the top";
    case 10: s->cqc_bt = 0x3001; return "an unaligned CQC table";
    case 11: s->qp_active = 0xf; return "every queue active";
    case 12:
        for (unsigned r = 0; r < MIG_REG_COUNT; r++)
            if (r != MIG_REG_VF_STATE && r != MIG_REG_QUE_ISO_CFG)
                s->regs[r] = mig_saved_regs[r].valid_mask;
        return "every interrupt bit and mask set";
    case 13: /* every queue state bit but stopped-and-stopping at once */
        s->qs.bits[MIG_QS_SQ_STOPPED] = 0x5;
        s->qs.bits[MIG_QS_SQ_STOPPING] = 0xa;
        for (unsigned k = MIG_QS_SQ_BROKEN; k < MIG_QS_COUNT; k++)
            s->qs.bits[k] = 0xf;
        s->qs.xeq = QM_XEQ_ST_MASK;
        return "every queue and event queue state bit";
    case 14: /* any image of an idle mailbox, any staged doorbell bytes */
        s->qs.mb_w0 = 0xffffu & ~(1u << QM_MB_BUSY_SHIFT);
        memset(s->qs.mb_stage, 0xff, sizeof(s->qs.mb_stage));
        s->qs.mb_data = ~0ull;
        s->qs.db_stage[0] = s->qs.db_stage[1] = ~0ull;
        return "an idle mailbox's image and staged bytes, all ones";
    case 15: with_draining_stop(s, 3); return "a STOP_QP of queue 3 still draining (v4)";
    case 16: with_qctx(s); return "queues 0 and 2 loaded with no table bases";
    case 17: with_qctx(s); s->sqc_bt = 0x300000; s->ctx_cq = 0; memset(s->cqc, 0, sizeof(s->cqc));
        return "SQCs whose table slots could not be written";
    case 18: s->qp_active = 0xf; s->ctx_sq = 0; s->ctx_cq = 0xf;
        for (unsigned q = 0; q < 4; q++)
            sample_cqc(s->cqc[q], q);
        return "every CQC in QCTX";
    default: return NULL;
    }
}

static void test_states_a_guest_can_reach_are_accepted(void **state)
{
    static struct mig_stream_content c;
    struct mig_match m = sample_match();
    uint8_t buf[MIG_STREAM_MAX];
    const char *what;
    char err[160];
    unsigned i;
    (void)state;

    for (i = 0;; i++) {
        struct mig_vf_snapshot s = sample_snapshot();

        what = reachable_state(i, &s);
        if (what == NULL)
            break;
        if (mig_stream_check(buf, build(buf, &m, &s), &m, &c, err, sizeof(err)) != 0)
            fail_msg("%s: refused: %s", what, err);
        assert_memory_equal(&c.state, &s, sizeof(s));
    }
    assert_int_equal(i, 19);
}

/* QSTATE and QCTX: round trip, the mandatory flag, and the structure rules
 * (lengths that do not match the masks, a record twice or alone). */
static void test_queue_state_records_round_trip_and_their_structure_is_checked(void **state)
{
    static struct mig_stream_content c;
    static struct mig_vf_snapshot s;
    struct mig_match m = sample_match();
    uint8_t buf[MIG_STREAM_MAX], p[MIG_QSTATE_LEN] = {0};
    char err[160];
    size_t len, qctx_off;
    (void)state;

    s = sample_snapshot();
    with_qctx(&s);
    s.qs.bits[MIG_QS_SQ_BROKEN] = 0x4;
    s.qs.db_stage[0] = 0x123;
    len = build(buf, &m, &s);
    assert_int_equal(len, mig_stream_full_len() + MIG_REC_HDR_LEN + MIG_QCTX_HDR_LEN +
                              4 * MIG_QC_LEN);
    assert_int_equal(decode(buf, len, &c, err), 0);
    assert_memory_equal(&c.state, &s, sizeof(s));
    assert_int_equal(c.nrecords, 10);
    assert_int_equal(c.records[7].type, MIG_REC_QSTATE);
    assert_int_equal(c.records[7].flags, MIG_REC_F_MANDATORY); /* a broken SQ */
    assert_int_equal(c.records[8].type, MIG_REC_QCTX);
    assert_int_equal(c.records[8].flags, MIG_REC_F_MANDATORY);
    /* Only disarmed CQs (the usual state of a busy VF): optional. */
    s = sample_snapshot();
    s.qs.bits[MIG_QS_CQ_DISARMED] = 0xf;
    s.qs.mb_w0 = QM_MB_CMD_CQC;
    assert_int_equal(decode(buf, build(buf, &m, &s), &c, err), 0);
    assert_int_equal(c.records[7].flags, 0);
    /* QCTX whose masks name one context more than it holds. */
    s = sample_snapshot();
    with_qctx(&s);
    len = build(buf, &m, &s);
    assert_int_equal(decode(buf, len, &c, err), 0);
    qctx_off = c.records[8].offset;
    am_st64(buf + qctx_off + MIG_REC_HDR_LEN, 0x7);
    am_st32(buf + len - MIG_END_LEN, am_crc32c(0, buf, len - MIG_END_LEN));
    assert_int_equal(decode(buf, len, &c, err), -EBADMSG);
    assert_non_null(strstr(err, "QCTX: length 144 does not hold the 5 contexts"));
    /* A QCTX length that is not a header and whole contexts. */
    len = build(buf, &m, &s);
    am_st32(buf + qctx_off + 4, MIG_QCTX_HDR_LEN + 4 * MIG_QC_LEN - 4);
    assert_int_equal(decode(buf, len, &c, err), -EBADMSG);
    assert_non_null(strstr(err, "QCTX"));
    /* QSTATE twice, and QSTATE with no state records. */
    len = build(buf, &m, &s) - MIG_REC_HDR_LEN - MIG_END_LEN;
    assert_int_equal(mig_stream_put_record(buf, sizeof(buf), &len, MIG_REC_QSTATE, 0, p, sizeof(p)),
                     0);
    assert_int_equal(mig_stream_put_end(buf, sizeof(buf), &len), 0);
    assert_int_equal(decode(buf, len, &c, err), -EBADMSG);
    assert_non_null(strstr(err, "QSTATE at offset"));
    assert_non_null(strstr(err, "twice"));
    len = build_with(buf, &m, MIG_REC_QSTATE, 0, p, sizeof(p));
    assert_int_equal(decode(buf, len, &c, err), -EBADMSG);
    assert_non_null(strstr(err, "QSTATE without the state records"));
    assert_string_equal(mig_rec_type_name(MIG_REC_QCTX), "QCTX");
}

static void test_a_match_record_with_reserved_bits_or_a_foreign_device_is_refused_early(void **state)
{
    struct mig_match m = sample_match(), got;
    uint8_t buf[MIG_STREAM_MAX];
    char err[160];
    size_t head = MIG_STREAM_HDR_LEN + MIG_REC_HDR_LEN + MIG_MATCH_LEN;
    (void)state;

    m.reserved = 1;
    build(buf, &m, NULL);
    assert_int_equal(mig_stream_peek_match(buf, head, &got, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "reserved"));
    m = sample_match();
    m.device_id = 0xa250;
    build(buf, &m, NULL);
    assert_int_equal(mig_stream_peek_match(buf, head, &got, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "device id"));
}

static void test_incompatible_match_data_is_refused_naming_the_mismatch(void **state)
{
    const struct mig_match dst = sample_match();
    struct mig_match src;
    char err[160];
    (void)state;

    src = dst;
    assert_int_equal(mig_match_check(&src, &dst, err, sizeof(err)), 0);
    src.vf_state = QM_VF_STATE_NOT_READY; /* information only */
    assert_int_equal(mig_match_check(&src, &dst, err, sizeof(err)), 0);
    src = dst;
    src.qp_num = 8;
    assert_int_equal(mig_match_check(&src, &dst, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "qp count: source 8, destination 4");
    src = dst;
    src.revision = QM_REV_V3;
    assert_int_equal(mig_match_check(&src, &dst, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "revision: source 0x30, destination 0x50");
    src = dst;
    src.device_id = 0xa256;
    assert_int_equal(mig_match_check(&src, &dst, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "device id: source 0xa256, destination 0xa251");
    src = dst;
    src.sq_depth = 512;
    assert_int_equal(mig_match_check(&src, &dst, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "SQ depth: source 512, destination 1024");
    src = dst;
    src.aeq_depth = 2048;
    assert_int_equal(mig_match_check(&src, &dst, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "AEQ depth"));
    src = dst;
    src.que_iso_cfg = 1;
    assert_int_equal(mig_match_check(&src, &dst, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "isolation"));
}

static void test_the_match_can_be_checked_from_a_prefix(void **state)
{
    struct mig_match m = sample_match(), got;
    struct mig_vf_snapshot s = sample_snapshot();
    uint8_t buf[MIG_STREAM_MAX];
    size_t head = MIG_STREAM_HDR_LEN + MIG_REC_HDR_LEN + MIG_MATCH_LEN;
    size_t len = build(buf, &m, &s);
    char err[160];
    (void)state;

    for (size_t n = 0; n < head; n++)
        assert_int_equal(mig_stream_peek_match(buf, n, &got, err, sizeof(err)), -EAGAIN);
    for (size_t n = head; n <= len; n++) {
        assert_int_equal(mig_stream_peek_match(buf, n, &got, err, sizeof(err)), 0);
        assert_match_equal(&got, &m);
    }
    /* Foreign after 4 bytes, wrong first record after 10. */
    memcpy(buf, "ELF\x7f", 4);
    assert_int_equal(mig_stream_peek_match(buf, 4, &got, err, sizeof(err)), -EPROTO);
    build(buf, &m, &s);
    am_st16(buf + MIG_STREAM_HDR_LEN, MIG_REC_REGS);
    assert_int_equal(mig_stream_peek_match(buf, 10, &got, err, sizeof(err)), -EBADMSG);
    build(buf, &m, &s);
    am_st32(buf + MIG_STREAM_HDR_LEN + 4, 100000);
    assert_int_equal(mig_stream_peek_match(buf, 16, &got, err, sizeof(err)), -EBADMSG);
    assert_int_equal(mig_stream_peek_match(buf, MIG_STREAM_MAX + 1, &got, err, sizeof(err)),
                     -EFBIG);
}

static void test_encoders_refuse_a_buffer_that_is_too_small(void **state)
{
    struct mig_match m = sample_match();
    struct mig_vf_snapshot s = sample_snapshot();
    uint8_t buf[MIG_STREAM_MAX];
    size_t len = 0;
    (void)state;

    assert_int_equal(mig_stream_encode_head(&m, buf, 20, &len), -ENOSPC);
    assert_int_equal(len, 0);
    assert_int_equal(mig_stream_encode_head(&m, buf, sizeof(buf), &len), 0);
    assert_int_equal(mig_stream_encode_tail(&s, buf, 100, &len), -ENOSPC);
    assert_int_equal(len, MIG_STREAM_HDR_LEN + MIG_REC_HDR_LEN + MIG_MATCH_LEN);
    assert_string_equal(mig_rec_type_name(MIG_REC_IRQ), "IRQ");
    assert_string_equal(mig_rec_type_name(0x1234), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_ready_stream_round_trips_and_fits_the_size_target),
        cmocka_unit_test(test_a_not_ready_stream_carries_only_the_match_data),
        cmocka_unit_test(test_every_truncation_length_is_refused),
        cmocka_unit_test(test_every_single_byte_corruption_is_caught),
        cmocka_unit_test(test_a_corrupted_payload_fails_the_crc_and_names_both_values),
        cmocka_unit_test(test_oversized_streams_and_record_lengths_are_refused),
        cmocka_unit_test(test_foreign_magic_and_other_major_versions_are_refused),
        cmocka_unit_test(test_unknown_optional_records_are_skipped_and_mandatory_ones_refused),
        cmocka_unit_test(test_record_order_and_completeness_rules_are_enforced),
        cmocka_unit_test(test_each_rule_broken_once_is_refused_naming_it),
        cmocka_unit_test(test_states_a_guest_can_reach_are_accepted),
        cmocka_unit_test(test_queue_state_records_round_trip_and_their_structure_is_checked),
        cmocka_unit_test(test_a_match_record_with_reserved_bits_or_a_foreign_device_is_refused_early),
        cmocka_unit_test(test_incompatible_match_data_is_refused_naming_the_mismatch),
        cmocka_unit_test(test_the_match_can_be_checked_from_a_prefix),
        cmocka_unit_test(test_encoders_refuse_a_buffer_that_is_too_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
