/* accmig inspect FILE [--json]: decode a saved device-state stream (the
 * bytes a migration source produced for one VF): every record, the CRC
 * verdict, and why a bad stream is bad. Exit 0 for a valid stream, 1 for a
 * bad one, 2 for bad usage or an unreadable file. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "cli/cli.h"
#include "mig/stream.h"

/* Read a little more than the limit, so an oversized file is recognised. */
#define INSPECT_READ_MAX (MIG_STREAM_MAX + 1u)

static void usage(FILE *f)
{
    fprintf(f, "usage: accmig inspect FILE [--json]\n"
               "  Decode a saved VF device-state stream (docs/stream-format.md).\n"
               "  Exit status: 0 valid, 1 bad stream, 2 usage or I/O error.\n");
}

/* Reads up to cap bytes; *size gets the whole file's size. */
static int read_file(const char *path, uint8_t *buf, size_t cap, size_t *len, long *size)
{
    FILE *f = fopen(path, "rb");
    size_t n;

    if (f == NULL)
        return -errno;
    n = fread(buf, 1, cap, f);
    if (ferror(f) || fseek(f, 0, SEEK_END) != 0 || (*size = ftell(f)) < 0) {
        fclose(f);
        return -EIO;
    }
    fclose(f);
    *len = n;
    return 0;
}

static const char *vf_state_name(uint32_t v)
{
    return v == QM_VF_STATE_READY ? "READY" : v == QM_VF_STATE_NOT_READY ? "NOT_READY" : "?";
}

/* ---- text ---------------------------------------------------------------- */

static void text_fields(const struct mig_stream_content *c, const struct mig_stream_record *r,
                        const uint8_t *buf)
{
    const struct mig_match *m = &c->match;
    const struct mig_vf_snapshot *s = &c->state;
    const uint8_t *p = buf + r->offset + MIG_REC_HDR_LEN;

    switch (r->type) {
    case MIG_REC_MATCH:
        if (!c->have_match)
            return;
        printf("      device id %#06x, revision %#04x, format major %u, qp count %u\n"
               "      SQ/CQ depth %u/%u, EQ/AEQ depth %u/%u, isolation (QUE_ISO_CFG) %#x, "
               "VF_STATE %u (%s)\n",
               m->device_id, m->revision, m->format_major, m->qp_num, m->sq_depth, m->cq_depth,
               m->eq_depth, m->aeq_depth, m->que_iso_cfg, m->vf_state,
               vf_state_name(m->vf_state));
        return;
    case MIG_REC_REGS:
        for (unsigned i = 0; i < MIG_REG_COUNT; i++)
            printf("      %-16s @0x%04x = %#x\n", mig_saved_regs[i].name, mig_saved_regs[i].offset,
                   s->regs[i]);
        return;
    case MIG_REC_EQC:
    case MIG_REC_AEQC: {
        const uint32_t *x = r->type == MIG_REC_EQC ? s->eqc : s->aeqc;

        printf("      head %u, tail %u, base %#llx, dw3 %#x, depth %u, phase %u\n", x[0] & 0xffffu,
               x[0] >> 16, (unsigned long long)((uint64_t)x[2] << 32 | x[1]), x[3],
               (x[6] & 0xffffu) + 1u, (x[6] >> 16) & 1u);
        return;
    }
    case MIG_REC_TABLES:
        printf("      SQC table %#llx, CQC table %#llx\n", (unsigned long long)s->sqc_bt,
               (unsigned long long)s->cqc_bt);
        return;
    case MIG_REC_QP_ACTIVE:
        printf("      active queues %#llx\n", (unsigned long long)s->qp_active);
        return;
    case MIG_REC_IRQ:
        printf("      pending vectors %#x, PF->VF message %#llx, VF->PF message %#llx\n",
               s->int_pending, (unsigned long long)s->ifc_msg,
               (unsigned long long)s->ifc_out_msg);
        return;
    case MIG_REC_QSTATE:
        for (unsigned i = 0; i < MIG_QS_COUNT; i++)
            if (s->qs.bits[i])
                printf("      %-16s queues %#llx\n", mig_qs_names[i],
                       (unsigned long long)s->qs.bits[i]);
        printf("      event queues/halt %#x, mailbox w0 %#x, mailbox data %#llx\n", s->qs.xeq,
               s->qs.mb_w0, (unsigned long long)s->qs.mb_data);
        return;
    case MIG_REC_QCTX:
        printf("      SQC of queues %#llx, CQC of queues %#llx (in no table)\n",
               (unsigned long long)s->ctx_sq, (unsigned long long)s->ctx_cq);
        return;
    case MIG_REC_END:
        printf("      crc32c %08x\n", c->crc_stored);
        return;
    default:
        printf("      payload:");
        for (uint32_t i = 0; i < r->length && i < 32; i++)
            printf(" %02x", p[i]);
        printf("%s\n", r->length > 32 ? " ..." : "");
        return;
    }
}

static void print_text(const char *path, const uint8_t *buf, size_t len,
                       const struct mig_stream_content *c, int rc, const char *err)
{
    printf("%s: %zu bytes", path, len);
    if (c->major != 0 || c->minor != 0)
        printf(", format %u.%u", c->major, c->minor);
    printf("\n");
    for (unsigned i = 0; i < c->nrecords; i++) {
        const struct mig_stream_record *r = &c->records[i];

        printf("  @%-4u %-10s type %#06x %-9s %u bytes\n", r->offset, mig_rec_type_name(r->type),
               r->type, (r->flags & MIG_REC_F_MANDATORY) ? "mandatory" : "optional", r->length);
        /* Fields are meaningful once every record was delimited. */
        if (c->crc_checked || r->type == MIG_REC_MATCH)
            text_fields(c, r, buf);
    }
    if (c->crc_checked)
        printf("CRC32C: %s (stored %08x, computed %08x)\n",
               c->crc_stored == c->crc_computed ? "ok" : "MISMATCH", c->crc_stored,
               c->crc_computed);
    else
        printf("CRC32C: not checked (no END record reached)\n");
    if (c->skipped_optional > 0)
        printf("skipped %u unknown optional record(s)\n", c->skipped_optional);
    if (rc == 0)
        printf("verdict: valid, %s\n",
               c->has_state ? "a started VF (full state)" : "a VF never started (match data only)");
    else
        printf("verdict: BAD: %s\n", err);
}

/* ---- JSON ---------------------------------------------------------------- */

static void jadd_u(json_object *o, const char *k, uint64_t v)
{
    json_object_object_add(o, k, json_object_new_int64((int64_t)v));
}

static json_object *json_fields(const struct mig_stream_content *c,
                                const struct mig_stream_record *r, const uint8_t *buf)
{
    const struct mig_match *m = &c->match;
    const struct mig_vf_snapshot *s = &c->state;
    json_object *f = json_object_new_object();
    char hex[3 * 64 + 1];

    switch (r->type) {
    case MIG_REC_MATCH:
        jadd_u(f, "device_id", m->device_id);
        jadd_u(f, "revision", m->revision);
        jadd_u(f, "format_major", m->format_major);
        jadd_u(f, "qp_num", m->qp_num);
        jadd_u(f, "sq_depth", m->sq_depth);
        jadd_u(f, "cq_depth", m->cq_depth);
        jadd_u(f, "eq_depth", m->eq_depth);
        jadd_u(f, "aeq_depth", m->aeq_depth);
        jadd_u(f, "que_iso_cfg", m->que_iso_cfg);
        jadd_u(f, "vf_state", m->vf_state);
        break;
    case MIG_REC_REGS:
        for (unsigned i = 0; i < MIG_REG_COUNT; i++)
            jadd_u(f, mig_saved_regs[i].name, s->regs[i]);
        break;
    case MIG_REC_EQC:
    case MIG_REC_AEQC: {
        const uint32_t *x = r->type == MIG_REC_EQC ? s->eqc : s->aeqc;
        json_object *dw = json_object_new_array();

        for (unsigned i = 0; i < 7; i++)
            json_object_array_add(dw, json_object_new_int64(x[i]));
        json_object_object_add(f, "dw", dw);
        jadd_u(f, "head", x[0] & 0xffffu);
        jadd_u(f, "tail", x[0] >> 16);
        jadd_u(f, "base", (uint64_t)x[2] << 32 | x[1]);
        jadd_u(f, "depth", (x[6] & 0xffffu) + 1u);
        jadd_u(f, "phase", (x[6] >> 16) & 1u);
        break;
    }
    case MIG_REC_TABLES:
        jadd_u(f, "sqc_bt", s->sqc_bt);
        jadd_u(f, "cqc_bt", s->cqc_bt);
        break;
    case MIG_REC_QP_ACTIVE:
        jadd_u(f, "qp_active", s->qp_active);
        break;
    case MIG_REC_IRQ:
        jadd_u(f, "int_pending", s->int_pending);
        jadd_u(f, "ifc_msg", s->ifc_msg);
        jadd_u(f, "ifc_out_msg", s->ifc_out_msg);
        break;
    case MIG_REC_QSTATE: {
        json_object *qs = json_object_new_object();

        for (unsigned i = 0; i < MIG_QS_COUNT; i++)
            jadd_u(qs, mig_qs_names[i], s->qs.bits[i]);
        json_object_object_add(f, "queues", qs);
        jadd_u(f, "xeq_state", s->qs.xeq);
        jadd_u(f, "mb_w0", s->qs.mb_w0);
        jadd_u(f, "mb_data", s->qs.mb_data);
        break;
    }
    case MIG_REC_QCTX:
        jadd_u(f, "ctx_sq", s->ctx_sq);
        jadd_u(f, "ctx_cq", s->ctx_cq);
        break;
    case MIG_REC_END:
        jadd_u(f, "crc32c", c->crc_stored);
        break;
    default: {
        const uint8_t *p = buf + r->offset + MIG_REC_HDR_LEN;
        size_t n = 0;

        for (uint32_t i = 0; i < r->length && i < 64; i++)
            n += (size_t)snprintf(hex + n, sizeof(hex) - n, "%02x", p[i]);
        hex[n] = '\0';
        json_object_object_add(f, "payload_hex", json_object_new_string(hex));
        break;
    }
    }
    return f;
}

static void print_json(const char *path, const uint8_t *buf, size_t len,
                       const struct mig_stream_content *c, int rc, const char *err)
{
    json_object *o = json_object_new_object(), *recs = json_object_new_array();
    json_object *crc = json_object_new_object();

    json_object_object_add(o, "file", json_object_new_string(path));
    jadd_u(o, "length", len);
    jadd_u(o, "major", c->major);
    jadd_u(o, "minor", c->minor);
    for (unsigned i = 0; i < c->nrecords; i++) {
        const struct mig_stream_record *r = &c->records[i];
        json_object *jr = json_object_new_object();

        jadd_u(jr, "offset", r->offset);
        jadd_u(jr, "type", r->type);
        json_object_object_add(jr, "name", json_object_new_string(mig_rec_type_name(r->type)));
        json_object_object_add(jr, "mandatory",
                               json_object_new_boolean(r->flags & MIG_REC_F_MANDATORY));
        jadd_u(jr, "flags", r->flags);
        jadd_u(jr, "length", r->length);
        if (c->crc_checked || (r->type == MIG_REC_MATCH && c->have_match))
            json_object_object_add(jr, "fields", json_fields(c, r, buf));
        json_object_array_add(recs, jr);
    }
    json_object_object_add(o, "records", recs);
    json_object_object_add(crc, "checked", json_object_new_boolean(c->crc_checked));
    if (c->crc_checked) {
        jadd_u(crc, "stored", c->crc_stored);
        jadd_u(crc, "computed", c->crc_computed);
        json_object_object_add(crc, "ok",
                               json_object_new_boolean(c->crc_stored == c->crc_computed));
    }
    json_object_object_add(o, "crc32c", crc);
    jadd_u(o, "skipped_optional", c->skipped_optional);
    json_object_object_add(o, "valid", json_object_new_boolean(rc == 0));
    if (rc == 0)
        json_object_object_add(o, "full_state", json_object_new_boolean(c->has_state));
    else
        json_object_object_add(o, "error", json_object_new_string(err));
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                                          JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

int cli_inspect(int argc, char **argv)
{
    static struct mig_stream_content content;
    uint8_t buf[INSPECT_READ_MAX];
    const char *path = NULL;
    char err[192];
    int json = 0, rc;
    size_t len = 0;
    long size = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' || path != NULL) {
            usage(stderr);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (path == NULL) {
        usage(stderr);
        return 2;
    }
    rc = read_file(path, buf, sizeof(buf), &len, &size);
    if (rc != 0) {
        fprintf(stderr, "accmig inspect: %s: %s\n", path, strerror(-rc));
        return 2;
    }
    /* The destination's own check, without a destination to compare with. */
    rc = mig_stream_check(buf, len, NULL, &content, err, sizeof(err));
    if (rc == -EFBIG)
        snprintf(err, sizeof(err), "the file holds %ld bytes; a stream has at most %u", size,
                 MIG_STREAM_MAX);
    if (json)
        print_json(path, buf, len, &content, rc, err);
    else
        print_text(path, buf, len, &content, rc, err);
    return rc == 0 ? 0 : 1;
}
