/* hpre_req: the HPRE job kinds of the workload (wl_crypto.h): the 64-byte
 * SQE hisi_hpre sends (hpre_hw.h) for RSA (public, then CRT private), DH
 * with g = 2 (public value, then shared secret) and X25519 (public key,
 * then shared secret), and the same arithmetic with libcrypto to check the
 * device against.
 *
 * Buffers of a vCPU: in = the operand of op 0 (RSA m); out1 = op 0's
 * result; out2 = op 1's result; aux = op 0's key block at 0, op 1's key
 * block at 1024 (RSA's CRT block; DH and X25519 use op 0's), the operand of
 * op 1 where it is not out1 at 2048 (the peer's public value), X25519's
 * base point u = 9 at 3072. Numbers big-endian, right-aligned in key_sz.
 *
 * The RSA keys: two per seed (1024 and 2048 bits), primes found by a
 * deterministic search from the seed (BN_check_prime on successive odd
 * numbers), derived once per context on the host; every host derives the
 * same. The tag: dw8 holds the driver's 16-bit request id (the tag's low
 * bits), the guest's 64-bit tag sits in the reserved dw14-15 (guest.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/evp.h>

#include "common/common.h"
#include "guest/wl_crypto.h"
#include "hpre/hpre_hw.h"

#define HPRE_REQ_SALT 0x4850524548505245ull  /* "HPREHPRE": the HPRE draws' sequence */
#define HPRE_REQ_KEY_SALT 0x5253414b45595331ull /* "RSAKEYS1": the RSA primes' sequence */
#define HPRE_REQ_AUX_KEY1 1024u
#define HPRE_REQ_AUX_PEER 2048u
#define HPRE_REQ_AUX_BASE 3072u
#define HPRE_REQ_RSA_E 65537u
#define HPRE_REQ_DH_KSZ 256u

enum hpre_req_kind { HPRE_REQ_RSA1024 = 0, HPRE_REQ_RSA2048, HPRE_REQ_DH2048, HPRE_REQ_X25519,
                     HPRE_REQ_KINDS };

static const char *const hpre_req_kind_names[HPRE_REQ_KINDS] = {
    [HPRE_REQ_RSA1024] = "rsa-1024", [HPRE_REQ_RSA2048] = "rsa-2048",
    [HPRE_REQ_DH2048] = "dh-2048", [HPRE_REQ_X25519] = "x25519",
};

/* An RSA key as the SQEs carry it (big-endian, right-aligned), key_idx
 * 0: 1024 bits, 1: 2048 (hpre_req_ksz). Bytes only: it lives in guest RAM. */
struct hpre_req_rsa {
    uint8_t n[256], e[256], d[256];
    uint8_t p[128], q[128], dp[128], dq[128], qinv[128];
};

struct wlc_ctx {
    struct hpre_req_rsa rsa[2]; /* 1024, 2048 bits */
};

static unsigned hpre_req_alg_type(unsigned qp)
{
    return qp % 2 ? HPRE_QTYPE_ECC : HPRE_QTYPE_V2;
}

/* The first prime >= a random odd number of bits bits (top two bits set,
 * so a product of two has 2 * bits bits) with p mod e != 1. */
static int hpre_req_prime(BIGNUM *p, unsigned bits, uint64_t *s, BN_CTX *bn)
{
    uint8_t buf[128];

    wlc_fill(buf, bits / 8, s);
    buf[0] |= 0xc0;
    buf[bits / 8 - 1] |= 1;
    if (!BN_bin2bn(buf, (int)(bits / 8), p))
        return -ENOMEM;
    for (;;) {
        int r;

        if (BN_mod_word(p, HPRE_REQ_RSA_E) != 1) {
            r = BN_check_prime(p, bn, NULL);
            if (r < 0)
                return -EIO;
            if (r == 1)
                return 0;
        }
        if (!BN_add_word(p, 2))
            return -ENOMEM;
    }
}

static int hpre_req_rsa_derive(struct hpre_req_rsa *k, unsigned bits, uint64_t *s, BN_CTX *bn)
{
    BIGNUM *p = BN_new(), *q = BN_new(), *n = BN_new(), *e = BN_new(), *d = BN_new(),
           *p1 = BN_new(), *q1 = BN_new(), *phi = BN_new(), *dp = BN_new(), *dq = BN_new(),
           *qinv = BN_new();
    const unsigned ksz = bits / 8, half = bits / 16;
    int ret = -ENOMEM;

    if (!p || !q || !n || !e || !d || !p1 || !q1 || !phi || !dp || !dq || !qinv)
        goto out;
    ret = hpre_req_prime(p, bits / 2, s, bn);
    if (!ret)
        ret = hpre_req_prime(q, bits / 2, s, bn);
    if (ret)
        goto out;
    ret = -EIO;
    if (BN_cmp(p, q) == 0 || !BN_mul(n, p, q, bn) || !BN_set_word(e, HPRE_REQ_RSA_E) ||
        !BN_sub(p1, p, BN_value_one()) || !BN_sub(q1, q, BN_value_one()) ||
        !BN_mul(phi, p1, q1, bn) || !BN_mod_inverse(d, e, phi, bn) || !BN_mod(dp, d, p1, bn) ||
        !BN_mod(dq, d, q1, bn) || !BN_mod_inverse(qinv, q, p, bn))
        goto out;
    if (BN_bn2binpad(n, k->n, (int)ksz) < 0 || BN_bn2binpad(e, k->e, (int)ksz) < 0 ||
        BN_bn2binpad(d, k->d, (int)ksz) < 0 || BN_bn2binpad(p, k->p, (int)half) < 0 ||
        BN_bn2binpad(q, k->q, (int)half) < 0 || BN_bn2binpad(dp, k->dp, (int)half) < 0 ||
        BN_bn2binpad(dq, k->dq, (int)half) < 0 || BN_bn2binpad(qinv, k->qinv, (int)half) < 0)
        goto out;
    ret = 0;
out:
    BN_free(p);
    BN_free(q);
    BN_free(n);
    BN_free(e);
    BN_clear_free(d);
    BN_free(p1);
    BN_free(q1);
    BN_free(phi);
    BN_clear_free(dp);
    BN_clear_free(dq);
    BN_free(qinv);
    return ret;
}

static int hpre_req_ctx_derive(const struct workload_config *cfg, struct wlc_ctx *c)
{
    BN_CTX *bn = BN_CTX_new();
    uint64_t s = wlc_job_seed(cfg->seed, 0, HPRE_REQ_KEY_SALT);
    int ret = -ENOMEM;

    if (bn) {
        ret = hpre_req_rsa_derive(&c->rsa[0], 1024, &s, bn);
        if (!ret)
            ret = hpre_req_rsa_derive(&c->rsa[1], 2048, &s, bn);
    }
    BN_CTX_free(bn);
    return ret;
}

static void hpre_req_draw(const struct wlc_ctx *ctx, const struct workload_config *cfg,
                          uint32_t job, struct wlc_job *j)
{
    uint64_t s = wlc_job_seed(cfg->seed, job, HPRE_REQ_SALT);

    memset(j, 0, sizeof(*j));
    j->kind = (unsigned)(wlc_rand(&s) % HPRE_REQ_KINDS);
    switch (j->kind) {
    case HPRE_REQ_RSA1024:
    case HPRE_REQ_RSA2048:
        j->key_idx = j->kind == HPRE_REQ_RSA2048;
        j->key_len = j->key_idx ? 256u : 128u;
        break;
    case HPRE_REQ_DH2048: j->key_len = HPRE_REQ_DH_KSZ; break;
    default: j->key_len = HPRE_X25519_KSZ; break;
    }
    j->in_len = j->key_len;
    j->res_len = j->out2_len = j->key_len;
    j->parity[0] = j->parity[1] = j->kind == HPRE_REQ_X25519; /* ECC on the type-1 queue */
    j->s = s;
}

/* A secret of ksz bytes below 2^(8 ksz - 8), non-zero: below any modulus
 * whose top byte is non-zero. */
static void hpre_req_secret(uint8_t *x, unsigned ksz, uint64_t *s)
{
    wlc_fill(x, ksz, s);
    x[0] = 0;
    x[ksz - 1] |= 1;
}

static void hpre_req_reverse(uint8_t *dst, const uint8_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = src[n - 1 - i];
}

/* X25519's private key (little-endian, clamped as RFC 7748 and the
 * driver do) and the peer's, from the job's sequence. */
static void hpre_req_x25519_keys(const struct wlc_job *j, uint8_t k[32], uint8_t peer[32])
{
    uint64_t s = j->s;

    wlc_fill(k, 32, &s);
    wlc_fill(peer, 32, &s);
    k[0] &= 248;
    k[31] = (uint8_t)((k[31] & 127) | 64);
}

/* libcrypto's X25519: out (big-endian, as the engine gives it) = the public
 * key of priv_le, or with peer_le the shared secret with that public key. */
static int hpre_req_x25519(const uint8_t priv_le[32], const uint8_t *peer_le, uint8_t out[32])
{
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv_le, 32), *p = NULL;
    EVP_PKEY_CTX *c = NULL;
    uint8_t le[32];
    size_t n = sizeof(le);
    int ok = 0;

    if (k && !peer_le) {
        ok = EVP_PKEY_get_raw_public_key(k, le, &n) == 1 && n == 32;
    } else if (k) {
        p = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer_le, 32);
        c = EVP_PKEY_CTX_new(k, NULL);
        ok = p && c && EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_derive_set_peer(c, p) == 1 &&
             EVP_PKEY_derive(c, le, &n) == 1 && n == 32;
    }
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(p);
    EVP_PKEY_free(k);
    if (ok)
        hpre_req_reverse(out, le, 32);
    return ok ? 0 : -EIO;
}

/* out (ksz bytes) = base^x mod p with libcrypto. */
static int hpre_req_modexp(const uint8_t *base, const uint8_t *x, const BIGNUM *p, unsigned ksz,
                           uint8_t *out)
{
    BN_CTX *bn = BN_CTX_new();
    BIGNUM *b = BN_bin2bn(base, (int)ksz, NULL), *e = BN_bin2bn(x, (int)ksz, NULL), *r = BN_new();
    int ok = bn && b && e && r && BN_mod_exp(r, b, e, p, bn) == 1 &&
             BN_bn2binpad(r, out, (int)ksz) == (int)ksz;

    BN_free(b);
    BN_clear_free(e);
    BN_free(r);
    BN_CTX_free(bn);
    return ok ? 0 : -EIO;
}

static int hpre_req_dh_p(uint8_t p[HPRE_REQ_DH_KSZ])
{
    BIGNUM *bp = BN_get_rfc3526_prime_2048(NULL);
    int ok = bp && BN_bn2binpad(bp, p, HPRE_REQ_DH_KSZ) == HPRE_REQ_DH_KSZ;

    BN_free(bp);
    return ok ? 0 : -EIO;
}

/* DH's secrets xa (ours) and xb (the peer's) from the job's sequence. */
static void hpre_req_dh_secrets(const struct wlc_job *j, uint8_t xa[HPRE_REQ_DH_KSZ],
                                uint8_t xb[HPRE_REQ_DH_KSZ])
{
    uint64_t s = j->s;

    hpre_req_secret(xa, HPRE_REQ_DH_KSZ, &s);
    hpre_req_secret(xb, HPRE_REQ_DH_KSZ, &s);
}

/* base^x mod p for the DH group, base given as one byte (2) or ksz bytes. */
static int hpre_req_dh_exp(const uint8_t *base, const uint8_t *x, uint8_t *out)
{
    BIGNUM *bp = BN_get_rfc3526_prime_2048(NULL);
    int ret = bp ? hpre_req_modexp(base, x, bp, HPRE_REQ_DH_KSZ, out) : -EIO;

    BN_free(bp);
    return ret;
}

static int hpre_req_gen(const struct wlc_ctx *ctx, const struct wlc_job *j, const struct wlc_bufs *b)
{
    const unsigned ksz = j->key_len;
    uint8_t *key0 = b->aux, *key1 = b->aux + HPRE_REQ_AUX_KEY1, *peer = b->aux + HPRE_REQ_AUX_PEER;
    int ret = 0;

    memset(b->aux, 0, WLC_AUX_CAP);
    memset(b->out1, 0xa5, ksz);
    memset(b->out2, 0x5a, ksz);
    if (j->kind == HPRE_REQ_RSA1024 || j->kind == HPRE_REQ_RSA2048) {
        const struct hpre_req_rsa *k = &ctx->rsa[j->key_idx];
        const unsigned h = ksz / 2;
        uint64_t s = j->s;

        memcpy(key0, k->e, ksz);
        memcpy(key0 + ksz, k->n, ksz);
        memcpy(key1, k->dq, h);
        memcpy(key1 + h, k->dp, h);
        memcpy(key1 + 2 * h, k->q, h);
        memcpy(key1 + 3 * h, k->p, h);
        memcpy(key1 + 4 * h, k->qinv, h);
        hpre_req_secret(b->in, ksz, &s); /* m < n: n's top byte is non-zero */
    } else if (j->kind == HPRE_REQ_DH2048) {
        uint8_t xb[HPRE_REQ_DH_KSZ], two[HPRE_REQ_DH_KSZ] = {[HPRE_REQ_DH_KSZ - 1] = 2};

        hpre_req_dh_secrets(j, key0, xb);
        ret = hpre_req_dh_p(key0 + ksz);
        if (!ret)
            ret = hpre_req_dh_exp(two, xb, peer); /* the peer's public value yb */
        memset(xb, 0, sizeof(xb));
        memset(b->in, 0, ksz);
    } else {
        static const uint8_t p[32] = {
            0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xed,
        };
        uint8_t k[32], kp[32], peer_pub[32];

        /* p | a | k | gx as the driver gives the curve (ecc_curve_defs.h):
         * a = (486662 - 2) / 4 = 121665, gx = 9. */
        hpre_req_x25519_keys(j, k, kp);
        memcpy(key0, p, 32);
        key0[32 + 29] = 0x01;
        key0[32 + 30] = 0xdb;
        key0[32 + 31] = 0x41;
        hpre_req_reverse(key0 + 64, k, 32);
        key0[96 + 31] = 9;
        b->aux[HPRE_REQ_AUX_BASE + 31] = 9;
        ret = hpre_req_x25519(kp, NULL, peer_pub);
        if (!ret)
            memcpy(peer, peer_pub, 32);
        memset(k, 0, sizeof(k));
        memset(kp, 0, sizeof(kp));
        memcpy(b->in, b->aux + HPRE_REQ_AUX_BASE, 32);
    }
    return ret;
}

static int hpre_req_sqe(const struct wlc_job *j, const struct wlc_bufs *b, unsigned op,
                        uint64_t tag, uint32_t sqe[GUEST_SQE_MAX_DWORDS])
{
    unsigned alg;
    uint64_t key = b->aux_gpa, in, out = op == 0 ? b->out1_gpa : b->out2_gpa;

    if (op > 1 || j->kind >= HPRE_REQ_KINDS)
        return -EINVAL;
    switch (j->kind) {
    case HPRE_REQ_RSA1024:
    case HPRE_REQ_RSA2048:
        alg = op == 0 ? HPRE_ALG_NC_NCRT : HPRE_ALG_NC_CRT;
        key = op == 0 ? b->aux_gpa : b->aux_gpa + HPRE_REQ_AUX_KEY1;
        in = op == 0 ? b->in_gpa : b->out1_gpa;
        break;
    case HPRE_REQ_DH2048:
        alg = op == 0 ? HPRE_ALG_DH_G2 : HPRE_ALG_DH;
        in = op == 0 ? 0 : b->aux_gpa + HPRE_REQ_AUX_PEER; /* G2 reads no operand */
        break;
    default:
        alg = HPRE_ALG_CURVE25519_MUL;
        in = op == 0 ? b->in_gpa : b->aux_gpa + HPRE_REQ_AUX_PEER;
        break;
    }
    memset(sqe, 0, GUEST_SQE_MAX_SIZE);
    sqe[HPRE_SQE_DW0] = alg | HPRE_DONE_SUBMITTED << HPRE_DW0_DONE_SHIFT;
    sqe[HPRE_SQE_DW1] = j->key_len / 8 - 1;
    wlc_put64(sqe, HPRE_SQE_KEY_LO, key);
    wlc_put64(sqe, HPRE_SQE_IN_LO, in);
    wlc_put64(sqe, HPRE_SQE_OUT_LO, out);
    sqe[HPRE_SQE_TAG] = (uint32_t)(tag & 0xffffu);
    wlc_put64(sqe, 14, tag); /* the guest's own tag, in the reserved dw14-15 */
    return 0;
}

static bool hpre_req_status_ok(uint32_t dw0)
{
    return (dw0 & HPRE_DW0_ETYPE_MASK) == 0 &&
           (dw0 & HPRE_DW0_DONE_MASK) >> HPRE_DW0_DONE_SHIFT == HPRE_DONE_TASK_DONE;
}

static int hpre_req_expect(const struct wlc_ctx *ctx, const struct wlc_job *j, unsigned op,
                           uint8_t *buf, size_t cap)
{
    const unsigned ksz = j->key_len;
    int ret = -EIO;

    if (op > 1 || cap < ksz)
        return -ENOSPC;
    if (j->kind == HPRE_REQ_RSA1024 || j->kind == HPRE_REQ_RSA2048) {
        const struct hpre_req_rsa *k = &ctx->rsa[j->key_idx];
        uint8_t m[256];
        uint64_t s = j->s;
        BIGNUM *n = BN_bin2bn(k->n, (int)ksz, NULL);

        hpre_req_secret(m, ksz, &s);
        if (op == 1) {
            memcpy(buf, m, ksz); /* the private operation gives m back */
            ret = 0;
        } else if (n) {
            ret = hpre_req_modexp(m, k->e, n, ksz, buf);
        }
        BN_free(n);
    } else if (j->kind == HPRE_REQ_DH2048) {
        uint8_t xa[HPRE_REQ_DH_KSZ], xb[HPRE_REQ_DH_KSZ], ya[HPRE_REQ_DH_KSZ];
        uint8_t two[HPRE_REQ_DH_KSZ] = {[HPRE_REQ_DH_KSZ - 1] = 2};

        hpre_req_dh_secrets(j, xa, xb);
        ret = hpre_req_dh_exp(two, xa, ya);
        if (!ret && op == 0)
            memcpy(buf, ya, ksz);
        if (!ret && op == 1)
            ret = hpre_req_dh_exp(ya, xb, buf); /* the shared secret from the peer's side */
        memset(xa, 0, sizeof(xa));
        memset(xb, 0, sizeof(xb));
    } else {
        uint8_t k[32], kp[32], pub_be[32], pub_le[32];

        hpre_req_x25519_keys(j, k, kp);
        ret = hpre_req_x25519(k, NULL, pub_be);
        if (!ret && op == 0)
            memcpy(buf, pub_be, 32);
        if (!ret && op == 1) {
            hpre_req_reverse(pub_le, pub_be, 32);
            ret = hpre_req_x25519(kp, pub_le, buf); /* from the peer's side */
        }
        memset(k, 0, sizeof(k));
        memset(kp, 0, sizeof(kp));
    }
    return ret;
}

const struct wlc_ops wlc_hpre_ops = {
    .engine = GUEST_ENGINE_HPRE,
    .nkinds = HPRE_REQ_KINDS,
    .kind_names = hpre_req_kind_names,
    .queue_alg_type = hpre_req_alg_type,
    .ctx_size = sizeof(struct wlc_ctx),
    .ctx_derive = hpre_req_ctx_derive,
    .draw = hpre_req_draw,
    .gen = hpre_req_gen,
    .sqe = hpre_req_sqe,
    .status_ok = hpre_req_status_ok,
    .expect = hpre_req_expect,
};
