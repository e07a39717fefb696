/* accmig bench engine --engine hpre: the HPRE engine on one SQE at a time
 * (SQE decode, key block and operand read through an IOMMU domain, the
 * libcrypto arithmetic, the result written back through the domain) against
 * raw libcrypto doing the same operation through its own EVP path in the
 * same run:
 *   rsa2048_pub   NC_NCRT with e        vs EVP_PKEY_encrypt, RSA_NO_PADDING
 *   rsa2048_crt   NC_CRT                vs EVP_PKEY_decrypt, RSA_NO_PADDING
 *                                          (CRT with blinding, libcrypto's default)
 *   dh2048        DH, peer key in `in`  vs EVP_PKEY_derive on ffdhe2048 (padded)
 *   p256          ECC_MUL, peer point   vs EVP_PKEY_derive on P-256
 *   x25519        CURVE25519_MUL        vs EVP_PKEY_derive on X25519
 * Operands are laid out as the Linux hisi_hpre driver lays them out; the
 * first engine result of each operation is checked against the raw one
 * (exit 1 if they differ).
 *
 * Each operation runs `rounds` pairs (raw, then engine, the same job count,
 * back to back, the order swapped every other round); the ratio of each
 * pair is taken and the median pair reported with the min and max ratios.
 * One JSON object per operation with --json:
 *   {"bench":"engine","engine":"hpre","op":"rsa2048_crt","path":"engine","jobs":..,"rounds":..,
 *    "raw_ops_s":..,"engine_ops_s":..,"ratio":..,"ratio_min":..,"ratio_max":..,
 *    "raw_cpu_us_per_op":..,"engine_cpu_us_per_op":..,"cpu_ratio":..,
 *    "load_threads":..}
 * With --path device the engine side is the whole device path instead: each
 * job's SQE written into the SQ of a VF of an HPRE device model, the SQ
 * doorbell (BAR2), the device's worker, the CQE polled (sched_yield between
 * looks), the CQ doorbell, dw0 checked; "path" says which.
 * ratio = engine_ops_s / raw_ops_s of one pair (1.0: the engine's overhead
 * is nil); cpu_ratio = raw CPU per op / engine CPU per op (the process's
 * CPU time, the --load threads left out; the same sense as ratio), which a
 * loaded machine disturbs less than wall time. --load N runs N CPU-bound
 * threads from before the first measurement to after the last.
 */
#include <errno.h>
#include <stddef.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/dh.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "bench.h"
#include "common/common.h"
#include "hpre/hpre.h"
#include "iommu/iommu.h"
#include "qm/qm.h"
#include "qm/qm_hw.h"

#define BH_IOVA 0x100000ull
#define BH_SIZE 0x10000ull
#define BH_KEY BH_IOVA
#define BH_IN (BH_IOVA + 0x4000)
#define BH_OUT (BH_IOVA + 0x8000)
#define BH_MAX_ROUNDS 99u

enum bh_op { BH_RSA_PUB, BH_RSA_CRT, BH_DH, BH_P256, BH_X25519, BH_NOPS };

static const char *const bh_op_names[BH_NOPS] = {
    "rsa2048_pub", "rsa2048_crt", "dh2048", "p256", "x25519",
};

struct bh_opts {
    bool ops[BH_NOPS];
    uint64_t jobs;  /* 0: calibrate from seconds */
    double seconds;
    unsigned rounds;
    unsigned load;
    int json;
    int device; /* --path device: the engine side goes through the QM */
};

/* One operation, both ways. */
struct bh_case {
    enum bh_op op;
    uint32_t sqe[HPRE_SQE_DWORDS];
    unsigned qtype;
    unsigned out_len;
    EVP_PKEY_CTX *raw;      /* prepared: init, padding or peer done */
    const uint8_t *raw_in;  /* RSA's input */
    uint8_t raw_out[512];
};

/* Bytes of the raw side's result: P-256's derive gives x only. */
static size_t bh_raw_len(const struct bh_case *c)
{
    return c->op == BH_P256 ? 32u : c->out_len;
}

/* --path device: one VF of an HPRE device model, two queues (0: RSA and DH,
 * 1: ECC), rings in their own host memory, doorbells in BAR2, CQEs polled
 * (no MSI), driven as tests/qm's in-test driver and the Linux VF driver do. */
#define BH_DEV_VF 1u
#define BH_DEV_RING_IOVA 0x40000000ull
#define BH_DEV_RING_SIZE (1ull << 20)
#define BH_DEV_DEPTH 64u

struct bh_dev {
    struct qm_dev *dev;
    uint8_t *rings;
    uint64_t sq[2], cq[2];
    uint16_t sq_tail[2], cq_head[2];
    bool cq_phase[2];
};

struct bh_ctx {
    struct iommu_domain *d;
    struct hpre_engine *e;
    struct bh_dev *dev; /* NULL unless --path device */
    uint8_t *ram;
    EVP_PKEY *keys[4];
    uint8_t rsa_m[256], rsa_c[256];
};

static void bh_usage(FILE *f)
{
    fprintf(f,
            "usage: accmig bench engine --engine hpre [options]\n"
            "  The HPRE engine on one SQE at a time (decode, DMA through an IOMMU domain,\n"
            "  libcrypto arithmetic, result written back) vs raw libcrypto's EVP calls\n"
            "  for the same operation, in the same run.\n"
            "  --op NAME        rsa2048_pub, rsa2048_crt, dh2048, p256, x25519 (default: all)\n"
            "  --jobs N         operations per measurement (default: as --seconds allows)\n"
            "  --seconds S      length of each measurement when --jobs is not given (default 0.2)\n"
            "  --rounds N       raw/engine pairs, the median pair reported (default 7)\n"
            "  --path engine|device  engine: hpre_engine_run called directly (default);\n"
            "                   device: each job through a VF of an HPRE device model\n"
            "                   (SQE in the SQ, doorbell, worker, CQE polled), one at a time\n"
            "  --load N         N CPU-bound threads spin for the whole run (0..64, default 0)\n"
            "  --json           one JSON object per operation\n");
}

static int bh_parse(int argc, char **argv, struct bh_opts *o)
{
    enum { O_ENGINE = 1, O_OP, O_JOBS, O_SECONDS, O_ROUNDS, O_LOAD, O_JSON, O_PATH, O_HELP };
    static const struct option lo[] = {
        {"engine", required_argument, NULL, O_ENGINE}, {"op", required_argument, NULL, O_OP},
        {"jobs", required_argument, NULL, O_JOBS},     {"seconds", required_argument, NULL, O_SECONDS},
        {"rounds", required_argument, NULL, O_ROUNDS}, {"load", required_argument, NULL, O_LOAD},
        {"json", no_argument, NULL, O_JSON},           {"path", required_argument, NULL, O_PATH},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    bool any = false;
    uint64_t v;
    char *end;
    int c, li = 0;

    *o = (struct bh_opts){.seconds = 0.2, .rounds = 7};
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, &li)) != -1) {
        switch (c) {
        case O_ENGINE:
            if (strcmp(optarg, "hpre") != 0)
                goto bad;
            break;
        case O_OP: {
            unsigned i;

            for (i = 0; i < BH_NOPS && strcmp(optarg, bh_op_names[i]) != 0; i++)
                ;
            if (i == BH_NOPS)
                goto bad;
            o->ops[i] = true;
            any = true;
            break;
        }
        case O_JOBS:
            if (am_parse_u64(optarg, 10000000, &v) || v == 0)
                goto bad;
            o->jobs = v;
            break;
        case O_SECONDS:
            o->seconds = strtod(optarg, &end);
            if (*end || !(o->seconds > 0.0 && o->seconds <= 600.0))
                goto bad;
            break;
        case O_ROUNDS:
            if (am_parse_u64(optarg, BH_MAX_ROUNDS, &v) || v == 0)
                goto bad;
            o->rounds = (unsigned)v;
            break;
        case O_LOAD:
            if (bench_load_parse("engine", optarg, &o->load))
                return -EINVAL;
            break;
        case O_JSON: o->json = 1; break;
        case O_PATH:
            if (strcmp(optarg, "engine") && strcmp(optarg, "device"))
                goto bad;
            o->device = !strcmp(optarg, "device");
            break;
        case O_HELP: bh_usage(stdout); return 1;
        default:
            fprintf(stderr, "accmig bench engine --engine hpre: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            bh_usage(stderr);
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "accmig bench engine --engine hpre: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    for (unsigned i = 0; !any && i < BH_NOPS; i++)
        o->ops[i] = true;
    return 0;
bad:
    fprintf(stderr, "accmig bench engine --engine hpre: bad value '%s' for --%s\n", optarg,
            lo[li].name);
    bh_usage(stderr);
    return -EINVAL;
}

static uint8_t *bh_ram(struct bh_ctx *x, uint64_t iova)
{
    return x->ram + (iova - BH_IOVA);
}

static void bh_sqe(struct bh_case *c, unsigned alg, unsigned ksz, unsigned qtype, unsigned out_len)
{
    memset(c->sqe, 0, sizeof(c->sqe));
    c->sqe[HPRE_SQE_DW0] = alg | HPRE_DONE_SUBMITTED << HPRE_DW0_DONE_SHIFT;
    c->sqe[HPRE_SQE_DW1] = ksz / 8u - 1u;
    c->sqe[HPRE_SQE_KEY_LO] = (uint32_t)BH_KEY;
    c->sqe[HPRE_SQE_KEY_LO + 1] = (uint32_t)(BH_KEY >> 32);
    c->sqe[HPRE_SQE_IN_LO] = (uint32_t)BH_IN;
    c->sqe[HPRE_SQE_IN_LO + 1] = (uint32_t)(BH_IN >> 32);
    c->sqe[HPRE_SQE_OUT_LO] = (uint32_t)BH_OUT;
    c->sqe[HPRE_SQE_OUT_LO + 1] = (uint32_t)(BH_OUT >> 32);
    c->qtype = qtype;
    c->out_len = out_len;
}

static int bh_put_bn(EVP_PKEY *k, const char *name, uint8_t *dst, unsigned len)
{
    BIGNUM *bn = NULL;
    int ok = EVP_PKEY_get_bn_param(k, name, &bn) == 1 && BN_bn2binpad(bn, dst, (int)len) == (int)len;

    BN_free(bn);
    return ok ? 0 : -EIO;
}

static EVP_PKEY *bh_dh_gen(void)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "DH", NULL);
    OSSL_PARAM params[2] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"ffdhe2048", 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY *k = NULL;

    if (!c || EVP_PKEY_keygen_init(c) != 1 || EVP_PKEY_CTX_set_params(c, params) != 1 ||
        EVP_PKEY_generate(c, &k) != 1)
        k = NULL;
    EVP_PKEY_CTX_free(c);
    return k;
}

/* A derive context self -> peer, prepared. */
static EVP_PKEY_CTX *bh_derive_ctx(EVP_PKEY *self, EVP_PKEY *peer, bool dh_pad)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(self, NULL);

    if (!c || EVP_PKEY_derive_init(c) != 1 || (dh_pad && EVP_PKEY_CTX_set_dh_pad(c, 1) != 1) ||
        EVP_PKEY_derive_set_peer(c, peer) != 1) {
        EVP_PKEY_CTX_free(c);
        return NULL;
    }
    return c;
}

static void bh_reverse(uint8_t *dst, const uint8_t *src, unsigned len)
{
    for (unsigned i = 0; i < len; i++)
        dst[i] = src[len - 1 - i];
}

/* Lays out case c's operands in RAM and prepares its raw context. */
static int bh_case_setup(struct bh_ctx *x, struct bh_case *c)
{
    uint8_t *k = bh_ram(x, BH_KEY), *in = bh_ram(x, BH_IN);
    EVP_PKEY *peer = NULL;
    int rc = -EIO;

    memset(k, 0, 0x4000);
    memset(in, 0, 0x4000);
    switch (c->op) {
    case BH_RSA_PUB:
    case BH_RSA_CRT: {
        EVP_PKEY *r = x->keys[0];

        c->raw = EVP_PKEY_CTX_new(r, NULL);
        if (!c->raw ||
            (c->op == BH_RSA_PUB ? EVP_PKEY_encrypt_init(c->raw) : EVP_PKEY_decrypt_init(c->raw)) != 1 ||
            EVP_PKEY_CTX_set_rsa_padding(c->raw, RSA_NO_PADDING) != 1)
            return -EIO;
        if (c->op == BH_RSA_PUB) {
            bh_sqe(c, HPRE_ALG_NC_NCRT, 256, HPRE_QTYPE_V2, 256);
            if (bh_put_bn(r, OSSL_PKEY_PARAM_RSA_E, k, 256) || bh_put_bn(r, OSSL_PKEY_PARAM_RSA_N, k + 256, 256))
                return -EIO;
            memcpy(in, x->rsa_m, 256);
            c->raw_in = x->rsa_m;
        } else {
            bh_sqe(c, HPRE_ALG_NC_CRT, 256, HPRE_QTYPE_V2, 256);
            if (bh_put_bn(r, OSSL_PKEY_PARAM_RSA_EXPONENT2, k, 128) ||
                bh_put_bn(r, OSSL_PKEY_PARAM_RSA_EXPONENT1, k + 128, 128) ||
                bh_put_bn(r, OSSL_PKEY_PARAM_RSA_FACTOR2, k + 256, 128) ||
                bh_put_bn(r, OSSL_PKEY_PARAM_RSA_FACTOR1, k + 384, 128) ||
                bh_put_bn(r, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, k + 512, 128))
                return -EIO;
            memcpy(in, x->rsa_c, 256);
            c->raw_in = x->rsa_c;
        }
        return 0;
    }
    case BH_DH:
        bh_sqe(c, HPRE_ALG_DH, 256, HPRE_QTYPE_V2, 256);
        c->raw = bh_derive_ctx(x->keys[1], x->keys[2], true);
        if (!c->raw || bh_put_bn(x->keys[1], OSSL_PKEY_PARAM_PRIV_KEY, k, 256) ||
            bh_put_bn(x->keys[1], OSSL_PKEY_PARAM_FFC_P, k + 256, 256) ||
            bh_put_bn(x->keys[2], OSSL_PKEY_PARAM_PUB_KEY, in, 256))
            return -EIO;
        return 0;
    case BH_P256: {
        EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
        BIGNUM *p = BN_new(), *a = BN_new(), *b = BN_new();
        uint8_t oct[65];
        size_t olen = 0;

        bh_sqe(c, HPRE_ALG_ECC_MUL, 32, HPRE_QTYPE_ECC, 64);
        peer = EVP_EC_gen("P-256");
        if (g && p && a && b && peer && EC_GROUP_get_curve(g, p, a, b, NULL) &&
            BN_bn2binpad(p, k, 32) == 32 && BN_bn2binpad(a, k + 32, 32) == 32 &&
            BN_bn2binpad(b, k + 96, 32) == 32 &&
            bh_put_bn(x->keys[3], OSSL_PKEY_PARAM_PRIV_KEY, k + 64, 32) == 0 &&
            EVP_PKEY_get_octet_string_param(peer, OSSL_PKEY_PARAM_PUB_KEY, oct, sizeof(oct), &olen) == 1 &&
            olen == 65) {
            memcpy(in, oct + 1, 64);
            c->raw = bh_derive_ctx(x->keys[3], peer, false);
            rc = c->raw ? 0 : -EIO;
        }
        EC_GROUP_free(g);
        BN_free(p);
        BN_free(a);
        BN_free(b);
        EVP_PKEY_free(peer);
        return rc;
    }
    case BH_X25519: {
        EVP_PKEY *self = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
        uint8_t priv[32], pub[32];
        size_t len = 32;

        bh_sqe(c, HPRE_ALG_CURVE25519_MUL, 32, HPRE_QTYPE_ECC, 32);
        peer = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
        if (self && peer && EVP_PKEY_get_raw_private_key(self, priv, &len) == 1 &&
            (len = 32, EVP_PKEY_get_raw_public_key(peer, pub, &len) == 1)) {
            /* the driver's preparation: clamp, big-endian; u masked, big-endian */
            priv[0] &= 248;
            priv[31] = (uint8_t)((priv[31] & 127) | 64);
            k[0] = 0x7f;
            memset(k + 1, 0xff, 30);
            k[31] = 0xed;
            k[61] = 0x01;
            k[62] = 0xdb;
            k[63] = 0x41;
            bh_reverse(k + 64, priv, 32);
            k[127] = 9;
            pub[31] &= 0x7f;
            bh_reverse(in, pub, 32);
            c->raw = bh_derive_ctx(self, peer, false);
            rc = c->raw ? 0 : -EIO;
        }
        EVP_PKEY_free(self);
        EVP_PKEY_free(peer);
        return rc;
    }
    default:
        return -EINVAL;
    }
}

static int bh_raw_one(struct bh_case *c)
{
    size_t len = sizeof(c->raw_out);

    if (c->op == BH_RSA_PUB)
        return EVP_PKEY_encrypt(c->raw, c->raw_out, &len, c->raw_in, 256) == 1 ? 0 : -EIO;
    if (c->op == BH_RSA_CRT)
        return EVP_PKEY_decrypt(c->raw, c->raw_out, &len, c->raw_in, 256) == 1 ? 0 : -EIO;
    return EVP_PKEY_derive(c->raw, c->raw_out, &len) == 1 && len == bh_raw_len(c) ? 0 : -EIO;
}


static uint8_t *bh_dev_ring(struct bh_dev *v, uint64_t iova)
{
    return v->rings + (iova - BH_DEV_RING_IOVA);
}

/* One mailbox command as the Linux driver sends it (16 bytes, poll busy). */
static int bh_dev_mb(struct bh_dev *v, uint8_t cmd, uint16_t qn, uint64_t base)
{
    struct qm_mailbox m = {
        .w0 = (uint16_t)(cmd | 1u << QM_MB_BUSY_SHIFT),
        .queue_num = qn,
        .base_l = (uint32_t)base,
        .base_h = (uint32_t)(base >> 32),
    };
    uint32_t w0 = 0;

    if (qm_bar_write(v->dev, BH_DEV_VF, QM_MAILBOX, &m, sizeof(m)))
        return -EIO;
    for (int i = 0; i < 100000; i++) {
        if (qm_bar_read32(v->dev, BH_DEV_VF, QM_MAILBOX, &w0))
            return -EIO;
        if (!((w0 >> QM_MB_BUSY_SHIFT) & 1u))
            return (w0 >> QM_MB_STATUS_SHIFT) & QM_MB_STATUS_MASK ? -EIO : 0;
    }
    return -ETIMEDOUT;
}

static void bh_dev_destroy(struct bh_dev *v)
{
    if (!v)
        return;
    qm_dev_destroy(v->dev);
    free(v->rings);
    free(v);
}

/* The VF probe (EQC, AEQC, the context tables, VF_STATE) and both queues. */
static int bh_dev_create(struct bh_ctx *x, struct bh_dev **out)
{
    struct bh_dev *v = calloc(1, sizeof(*v));
    struct qm_dev_config c;
    uint64_t eqe = BH_DEV_RING_IOVA, aeqe = eqe + QM_EQ_DEPTH * 4, sqc_bt = aeqe + QM_AEQ_DEPTH * 4;
    uint64_t cqc_bt = sqc_bt + 0x1000, ctx = cqc_bt + 0x1000, next = ctx + 0x1000;
    struct iommu_domain *d;
    int rc;

    if (!v)
        return -ENOMEM;
    qm_dev_config_default(&c);
    c.num_vfs = 1;
    c.workers = 1;
    c.db_isolation = false;
    c.engine = QM_ENGINE_HPRE;
    v->rings = aligned_alloc(IOMMU_PAGE_SIZE, BH_DEV_RING_SIZE);
    if (!v->rings) {
        free(v);
        return -ENOMEM;
    }
    memset(v->rings, 0, BH_DEV_RING_SIZE);
    rc = qm_dev_create(&c, &v->dev);
    if (rc) {
        free(v->rings);
        free(v);
        return rc;
    }
    d = qm_dev_iommu(v->dev, BH_DEV_VF);
    rc = iommu_map_host(d, BH_DEV_RING_IOVA, BH_DEV_RING_SIZE, v->rings, IOMMU_READ | IOMMU_WRITE);
    if (!rc) /* the operands: the same memory the engine side uses */
        rc = iommu_map_host(d, BH_IOVA, BH_SIZE, x->ram, IOMMU_READ | IOMMU_WRITE);
    for (unsigned q = 0; !rc && q < 2; q++) {
        v->sq[q] = next;
        v->cq[q] = next + BH_DEV_DEPTH * HPRE_SQE_SIZE;
        next = AM_ALIGN_UP(v->cq[q] + BH_DEV_DEPTH * 16, 4096);
    }
    if (!rc) {
        struct qm_eqc eqc = {.base_l = (uint32_t)eqe, .base_h = (uint32_t)(eqe >> 32),
                             .dw6 = QM_EQC_DW6(QM_EQ_DEPTH, 1)};

        memcpy(bh_dev_ring(v, ctx), &eqc, sizeof(eqc));
        rc = bh_dev_mb(v, QM_MB_CMD_EQC, 0, ctx);
    }
    if (!rc) {
        struct qm_eqc aeqc = {.base_l = (uint32_t)aeqe, .base_h = (uint32_t)(aeqe >> 32),
                              .dw6 = QM_EQC_DW6(QM_AEQ_DEPTH, 1)};

        memcpy(bh_dev_ring(v, ctx), &aeqc, sizeof(aeqc));
        rc = bh_dev_mb(v, QM_MB_CMD_AEQC, 0, ctx);
    }
    if (!rc)
        rc = bh_dev_mb(v, QM_MB_CMD_SQC_BT, 0, sqc_bt);
    if (!rc)
        rc = bh_dev_mb(v, QM_MB_CMD_CQC_BT, 0, cqc_bt);
    if (!rc)
        rc = qm_bar_write32(v->dev, BH_DEV_VF, QM_PAGE_SIZE, 0) ||
             qm_bar_write32(v->dev, BH_DEV_VF, QM_VF_STATE, QM_VF_STATE_READY) ? -EIO : 0;
    for (unsigned q = 0; !rc && q < 2; q++) {
        struct qm_sqc sqc = {.base_l = (uint32_t)v->sq[q], .base_h = (uint32_t)(v->sq[q] >> 32),
                             .dw3 = (BH_DEV_DEPTH - 1u) | 6u << 12, /* ilog2(64) */
                             .cq_num = (uint16_t)q, .w13 = QM_SQC_W13(q)};
        struct qm_cqc cqc = {.base_l = (uint32_t)v->cq[q], .base_h = (uint32_t)(v->cq[q] >> 32),
                             .dw3 = QM_CQC_DW3(BH_DEV_DEPTH), .dw6 = QM_CQC_DW6_PHASE};

        memcpy(bh_dev_ring(v, ctx), &sqc, sizeof(sqc));
        rc = bh_dev_mb(v, QM_MB_CMD_SQC, (uint16_t)q, ctx);
        if (!rc) {
            memcpy(bh_dev_ring(v, ctx), &cqc, sizeof(cqc));
            rc = bh_dev_mb(v, QM_MB_CMD_CQC, (uint16_t)q, ctx);
        }
        v->cq_phase[q] = true;
    }
    if (rc) {
        bh_dev_destroy(v);
        return rc;
    }
    *out = v;
    return 0;
}

/* One job through queue c->qtype: the SQE into the SQ, the SQ doorbell,
 * the CQE polled, the CQ doorbell; the SQ slot's dw0 holds the result. */
static int bh_device_one(struct bh_dev *v, const struct bh_case *c)
{
    unsigned q = c->qtype;
    uint16_t slot = v->sq_tail[q];
    uint8_t *sqe = bh_dev_ring(v, v->sq[q] + (uint64_t)slot * HPRE_SQE_SIZE);
    struct qm_cqe *cqe = (struct qm_cqe *)bh_dev_ring(v, v->cq[q] + (uint64_t)v->cq_head[q] * 16);
    uint64_t deadline = am_now_ns() + 5000000000ull;
    uint32_t dw0;

    memcpy(sqe, c->sqe, HPRE_SQE_SIZE);
    v->sq_tail[q] = (uint16_t)((slot + 1u) % BH_DEV_DEPTH);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    if (qm_bar_write64(v->dev, BH_DEV_VF, QM_DB_SQCQ,
                       qm_db_value((uint16_t)q, QM_DB_CMD_SQ, v->sq_tail[q], 0)))
        return -EIO;
    /* CQEs are 16-byte aligned in the ring, so w7 is 2-byte aligned: an
     * aligned atomic load, not a libatomic call for a packed member. */
    const uint16_t *w7 = (const uint16_t *)((const uint8_t *)cqe + offsetof(struct qm_cqe, w7));

    while ((__atomic_load_n(w7, __ATOMIC_ACQUIRE) & 1u) != v->cq_phase[q]) {
        if (am_now_ns() > deadline)
            return -ETIMEDOUT;
        /* Yield, not spin: on a busy host the worker (SCHED_BATCH) needs
         * this CPU more than the poll does. */
        sched_yield();
    }
    if (cqe->sq_head != slot)
        return -EIO;
    v->cq_head[q] = (uint16_t)((v->cq_head[q] + 1u) % BH_DEV_DEPTH);
    if (v->cq_head[q] == 0)
        v->cq_phase[q] = !v->cq_phase[q];
    if (qm_bar_write64(v->dev, BH_DEV_VF, QM_DB_SQCQ,
                       qm_db_value((uint16_t)q, QM_DB_CMD_CQ, v->cq_head[q], 0)))
        return -EIO;
    memcpy(&dw0, sqe, sizeof(dw0));
    return (dw0 & HPRE_DW0_ETYPE_MASK) || dw0 >> HPRE_DW0_DONE_SHIFT != HPRE_DONE_TASK_DONE ? -EIO
                                                                                          : 0;
}

static int bh_engine_one(struct bh_ctx *x, struct bh_case *c)
{
    uint32_t sqe[HPRE_SQE_DWORDS];

    if (x->dev)
        return bh_device_one(x->dev, c);
    memcpy(sqe, c->sqe, sizeof(sqe));
    if (hpre_engine_run(x->e, x->d, sqe, c->qtype, NULL, NULL) != 0 ||
        (sqe[HPRE_SQE_DW0] & HPRE_DW0_ETYPE_MASK) != 0)
        return -EIO;
    return 0;
}

/* The engine's result against the raw one (X25519: the engine writes
 * big-endian; P-256: raw derive gives x only). */
static bool bh_results_agree(struct bh_ctx *x, const struct bh_case *c)
{
    const uint8_t *out = bh_ram(x, BH_OUT);
    uint8_t le[32];

    if (c->op == BH_X25519) {
        bh_reverse(le, out, 32);
        return memcmp(le, c->raw_out, 32) == 0;
    }
    return memcmp(out, c->raw_out, bh_raw_len(c)) == 0;
}

struct bh_meas {
    double ops_s;
    double cpu_us; /* CPU per op */
};

static int bh_measure(struct bh_ctx *x, struct bh_case *c, bool engine, uint64_t n,
                      const struct bench_load *load, struct bh_meas *m)
{
    uint64_t t0 = am_now_ns(), c0 = bench_cpu_ns(load), t1, c1;

    for (uint64_t i = 0; i < n; i++)
        if (engine ? bh_engine_one(x, c) : bh_raw_one(c))
            return -EIO;
    t1 = am_now_ns();
    c1 = bench_cpu_ns(load);
    m->ops_s = (double)n / ((double)AM_MAX(t1 - t0, (uint64_t)1) / 1e9);
    m->cpu_us = (double)(c1 - c0) / 1e3 / (double)n;
    return 0;
}

static void bh_ctx_destroy(struct bh_ctx *x)
{
    for (unsigned i = 0; i < AM_ARRAY_SIZE(x->keys); i++)
        EVP_PKEY_free(x->keys[i]);
    bh_dev_destroy(x->dev);
    hpre_engine_destroy(x->e);
    iommu_domain_destroy(x->d);
    free(x->ram);
}

static int bh_ctx_create(struct bh_ctx *x)
{
    EVP_PKEY_CTX *c;
    size_t len = 256;
    int rc;

    memset(x, 0, sizeof(*x));
    x->ram = aligned_alloc(IOMMU_PAGE_SIZE, BH_SIZE);
    if (!x->ram)
        return -ENOMEM;
    memset(x->ram, 0, BH_SIZE);
    rc = iommu_domain_create(1, &x->d);
    if (!rc)
        rc = iommu_map_host(x->d, BH_IOVA, BH_SIZE, x->ram, IOMMU_READ | IOMMU_WRITE);
    if (!rc)
        rc = hpre_engine_create(&x->e);
    if (rc)
        return rc;
    x->keys[0] = EVP_RSA_gen(2048);
    x->keys[1] = bh_dh_gen();
    x->keys[2] = bh_dh_gen();
    x->keys[3] = EVP_EC_gen("P-256");
    for (unsigned i = 0; i < AM_ARRAY_SIZE(x->keys); i++)
        if (!x->keys[i])
            return -EIO;
    for (unsigned i = 0; i < 256; i++)
        x->rsa_m[i] = (uint8_t)(i * 29u + 3u);
    x->rsa_m[0] = 0;
    c = EVP_PKEY_CTX_new(x->keys[0], NULL);
    rc = c && EVP_PKEY_encrypt_init(c) == 1 && EVP_PKEY_CTX_set_rsa_padding(c, RSA_NO_PADDING) == 1 &&
                 EVP_PKEY_encrypt(c, x->rsa_c, &len, x->rsa_m, 256) == 1
             ? 0
             : -EIO;
    EVP_PKEY_CTX_free(c);
    return rc;
}

int bench_engine_hpre(int argc, char **argv)
{
    struct bh_opts o;
    struct bh_ctx x;
    struct bench_load *load = NULL;
    int ret, status = 0;

    ret = bh_parse(argc, argv, &o);
    if (ret)
        return ret > 0 ? 0 : 2;
    ret = bh_ctx_create(&x);
    if (!ret && o.device)
        ret = bh_dev_create(&x, &x.dev);
    if (ret) {
        fprintf(stderr, "accmig bench engine --engine hpre: setup failed: %s\n", strerror(-ret));
        bh_ctx_destroy(&x);
        return 2;
    }
    if (bench_load_create("engine", o.load, &load)) {
        bh_ctx_destroy(&x);
        return 2;
    }
    if (!o.json)
        printf("accmig bench engine --engine hpre: %s, one SQE at a time, %u round(s), "
               "%u load thread(s)\n",
               o.device ? "through a VF of the device model (1 worker, CQEs polled)"
                        : "one engine instance",
               o.rounds, o.load);

    for (unsigned op = 0; op < BH_NOPS && status == 0; op++) {
        struct bh_case c = {.op = op};
        double ratio[BH_MAX_ROUNDS], raw_s[BH_MAX_ROUNDS], eng_s[BH_MAX_ROUNDS];
        double raw_cpu[BH_MAX_ROUNDS], eng_cpu[BH_MAX_ROUNDS];
        struct bench_spread rs;
        uint64_t n = o.jobs;

        if (!o.ops[op])
            continue;
        if (bh_case_setup(&x, &c) || bh_raw_one(&c) || bh_engine_one(&x, &c)) {
            fprintf(stderr, "accmig bench engine --engine hpre: %s: setup or first run failed (%s)\n",
                    bh_op_names[op], hpre_engine_last_error(x.e));
            status = 2;
        } else if (!bh_results_agree(&x, &c)) {
            fprintf(stderr, "accmig bench engine --engine hpre: %s: engine and libcrypto disagree\n",
                    bh_op_names[op]);
            status = 1;
        }
        if (status == 0 && n == 0) { /* calibrate on the raw side */
            struct bh_meas cal = {0};

            if (bh_measure(&x, &c, false, 16, load, &cal))
                status = 1;
            n = AM_MAX((uint64_t)16, (uint64_t)(cal.ops_s * o.seconds));
        }
        for (unsigned r = 0; r < o.rounds && status == 0; r++) {
            struct bh_meas mr = {0}, me = {0};
            /* Interleaved pairs; the order swaps every other round so
             * neither side always runs second (warm caches). */
            bool engine_first = r % 2;

            if ((engine_first && bh_measure(&x, &c, true, n, load, &me)) ||
                bh_measure(&x, &c, false, n, load, &mr) ||
                (!engine_first && bh_measure(&x, &c, true, n, load, &me))) {
                fprintf(stderr, "accmig bench engine --engine hpre: %s: a job failed (%s)\n",
                        bh_op_names[op], hpre_engine_last_error(x.e));
                status = 1;
                break;
            }
            raw_s[r] = mr.ops_s;
            eng_s[r] = me.ops_s;
            raw_cpu[r] = mr.cpu_us;
            eng_cpu[r] = me.cpu_us;
            ratio[r] = me.ops_s / mr.ops_s;
        }
        if (status == 0) {
            double raw_med = bench_median(raw_s, o.rounds), eng_med = bench_median(eng_s, o.rounds);
            double rc_med = bench_median(raw_cpu, o.rounds), ec_med = bench_median(eng_cpu, o.rounds);

            bench_spread(ratio, o.rounds, &rs);
            if (o.json)
                printf("{\"bench\":\"engine\",\"engine\":\"hpre\",\"op\":\"%s\",\"path\":\"%s\",\"jobs\":%llu,"
                       "\"rounds\":%u,\"raw_ops_s\":%.0f,\"engine_ops_s\":%.0f,\"ratio\":%.3f,"
                       "\"ratio_min\":%.3f,\"ratio_max\":%.3f,\"raw_cpu_us_per_op\":%.1f,"
                       "\"engine_cpu_us_per_op\":%.1f,\"cpu_ratio\":%.3f,\"load_threads\":%u}\n",
                       bh_op_names[op], o.device ? "device" : "engine", (unsigned long long)n,
                       o.rounds, raw_med, eng_med, bench_median(ratio, o.rounds), rs.min, rs.max,
                       rc_med, ec_med, rc_med / AM_MAX(ec_med, 1e-9), o.load);
            else
                printf("  %-12s %6llu jobs x %u: raw %8.0f op/s, engine %8.0f op/s, ratio %.3f "
                       "(min %.3f, max %.3f); CPU per op raw %.1f us, engine %.1f us\n",
                       bh_op_names[op], (unsigned long long)n, o.rounds, raw_med, eng_med,
                       bench_median(ratio, o.rounds), rs.min, rs.max, rc_med, ec_med);
        }
        EVP_PKEY_CTX_free(c.raw);
    }
    bench_load_destroy(load);
    bh_ctx_destroy(&x);
    return status;
}
