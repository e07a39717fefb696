/* hpre: the engine object, SQE decode and validation, the algorithms, and
 * the result write-back (contract in hpre.h, layouts in hpre_hw.h).
 *
 * Validation order (STYLE 5): alg and queue type, then task_len1 against the
 * alg's sizes, then the DMA reads (key block, then operand), then each
 * operand's range, then the computation; only a job that got that far
 * writes. Every step ends the job with one etype.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/params.h>

#include "common/common.h"
#include "hpre/hpre.h"

/* The largest key block: RSA CRT at 4096 bits (5 halves of 256 bytes). */
#define HPRE_KEY_BUF (5u * HPRE_RSA_MAX_KSZ / 2u)
#define HPRE_IO_BUF (2u * HPRE_RSA_MAX_KSZ)

struct hpre_curve {
    int nid;
    unsigned ksz; /* the key size the driver's rule gives this curve */
    EC_GROUP *group;
    BIGNUM *p, *a, *b;
    const BIGNUM *order; /* owned by group */
};

enum { HPRE_NCURVES = 5, HPRE_MAX_HELD = 16 };

struct hpre_engine {
    BN_CTX *bn;
    struct hpre_curve curves[HPRE_NCURVES];
    uint8_t key[HPRE_KEY_BUF];
    uint8_t in[HPRE_IO_BUF];
    uint8_t out[HPRE_IO_BUF];
    /* Bytes of out held for the caller's commit (write_at_commit): the
     * result is cleansed at the next job instead of at once. */
    uint32_t out_held;
    /* The numbers the current job took from bn, wiped before its frame
     * ends (BN_CTX_end keeps them, values and all, for the next job). */
    BIGNUM *held[HPRE_MAX_HELD];
    unsigned nheld;
    /* The Montgomery context of the last public modulus (RSA n-CRT's n, DH's
     * p), kept across jobs: a driver sends many jobs with one key, and
     * setting a context up costs as much as a public-key operation. Never a
     * secret modulus (CRT primes). */
    BN_MONT_CTX *mont;
    BIGNUM *mont_mod;
    /* Imports X25519 private keys (with a placeholder public key, so that
     * libcrypto does not compute the public key it would never use). */
    EVP_PKEY_CTX *x25519_import;
    const char *last_error;
    struct hpre_engine_stats stats; /* updated with atomics */
};

/* One decoded SQE: what to read and how much to write. */
struct hpre_req {
    unsigned alg;
    unsigned ksz;
    uint64_t key_iova, in_iova, out_iova;
    uint32_t key_len, in_len, out_len;
};

static const int hpre_curve_nids[HPRE_NCURVES] = {
    NID_X9_62_prime192v1, NID_secp224r1, NID_X9_62_prime256v1, NID_secp384r1, NID_secp521r1,
};

/* Curve25519 as the kernel's ecc_curve_defs.h gives it to the driver, big-endian. */
static const uint8_t hpre_x25519_p[HPRE_X25519_KSZ] = {
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xed,
};
static const uint8_t hpre_x25519_a[HPRE_X25519_KSZ] = {
    [29] = 0x01, [30] = 0xdb, [31] = 0x41,
};

static unsigned hpre_ecc_ksz_of_bits(int bits)
{
    return bits <= 256 ? 32u : bits <= 384 ? 48u : 72u;
}

int hpre_engine_create(struct hpre_engine **out)
{
    struct hpre_engine *e = calloc(1, sizeof(*e));
    int rc = -EIO;

    if (!e)
        return -ENOMEM;
    e->bn = BN_CTX_new();
    e->mont = BN_MONT_CTX_new();
    e->mont_mod = BN_new();
    e->x25519_import = EVP_PKEY_CTX_new_from_name(NULL, "X25519", NULL);
    if (!e->bn || !e->mont || !e->mont_mod || !e->x25519_import ||
        EVP_PKEY_fromdata_init(e->x25519_import) <= 0) {
        rc = -ENOMEM;
        goto err_destroy;
    }
    for (unsigned i = 0; i < HPRE_NCURVES; i++) {
        struct hpre_curve *c = &e->curves[i];

        c->nid = hpre_curve_nids[i];
        c->group = EC_GROUP_new_by_curve_name(c->nid);
        c->p = BN_new();
        c->a = BN_new();
        c->b = BN_new();
        if (!c->group || !c->p || !c->a || !c->b ||
            !EC_GROUP_get_curve(c->group, c->p, c->a, c->b, e->bn)) {
            am_log(AM_LOG_ERR, "hpre", "libcrypto cannot build curve %s", OBJ_nid2sn(c->nid));
            goto err_destroy;
        }
        c->order = EC_GROUP_get0_order(c->group);
        c->ksz = hpre_ecc_ksz_of_bits(EC_GROUP_get_degree(c->group));
    }
    e->last_error = "";
    *out = e;
    return 0;

err_destroy:
    hpre_engine_destroy(e);
    return rc;
}

void hpre_engine_destroy(struct hpre_engine *e)
{
    if (!e)
        return;
    for (unsigned i = 0; i < HPRE_NCURVES; i++) {
        EC_GROUP_free(e->curves[i].group);
        BN_free(e->curves[i].p);
        BN_free(e->curves[i].a);
        BN_free(e->curves[i].b);
    }
    BN_CTX_free(e->bn);
    BN_MONT_CTX_free(e->mont);
    BN_free(e->mont_mod);
    EVP_PKEY_CTX_free(e->x25519_import);
    OPENSSL_cleanse(e->key, sizeof(e->key));
    OPENSSL_cleanse(e->out, sizeof(e->out));
    free(e);
}

static bool hpre_ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    uint64_t aend, bend;

    if (alen == 0 || blen == 0)
        return false;
    if (am_add_overflows_u64(a, alen, &aend) || am_add_overflows_u64(b, blen, &bend))
        return true;
    return a < bend && b < aend;
}

/* The result lands on the operand or the key block: a rerun would read it. */
static bool hpre_req_in_place(const struct hpre_req *q)
{
    return hpre_ranges_overlap(q->out_iova, q->out_len, q->in_iova, q->in_len) ||
           hpre_ranges_overlap(q->out_iova, q->out_len, q->key_iova, q->key_len);
}

static uint64_t hpre_sqe_addr(const uint32_t *sqe, unsigned lo)
{
    return (uint64_t)sqe[lo] | (uint64_t)sqe[lo + 1] << 32;
}

static bool hpre_ksz_in(unsigned ksz, const unsigned *sizes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (sizes[i] == ksz)
            return true;
    return false;
}

static const unsigned hpre_rsa_sizes[] = { 64, 128, 192, 256, 384, 512 };
static const unsigned hpre_dh_sizes[] = { 96, 128, 192, 256, 384, 512 };
static const unsigned hpre_ecc_sizes[] = { 32, 48, 72 };

/* Fills q from the SQE: alg, queue type and size checks only (no DMA). */
static unsigned hpre_sqe_decode(const uint32_t *sqe, unsigned qtype, struct hpre_req *q,
                                const char **why)
{
    bool v2 = false;

    memset(q, 0, sizeof(*q));
    q->alg = sqe[HPRE_SQE_DW0] & HPRE_DW0_ALG_MASK;
    q->ksz = ((sqe[HPRE_SQE_DW1] & HPRE_DW1_TASK_LEN1_MASK) + 1u) * 8u;
    q->key_iova = hpre_sqe_addr(sqe, HPRE_SQE_KEY_LO);
    q->in_iova = hpre_sqe_addr(sqe, HPRE_SQE_IN_LO);
    q->out_iova = hpre_sqe_addr(sqe, HPRE_SQE_OUT_LO);

    switch (q->alg) {
    case HPRE_ALG_NC_NCRT:
    case HPRE_ALG_NC_CRT:
        v2 = true;
        if (!hpre_ksz_in(q->ksz, hpre_rsa_sizes, AM_ARRAY_SIZE(hpre_rsa_sizes)))
            goto bad_len;
        q->key_len = q->alg == HPRE_ALG_NC_CRT ? 5u * q->ksz / 2u : 2u * q->ksz;
        q->in_len = q->ksz;
        q->out_len = q->ksz;
        break;
    case HPRE_ALG_DH:
    case HPRE_ALG_DH_G2:
        v2 = true;
        if (!hpre_ksz_in(q->ksz, hpre_dh_sizes, AM_ARRAY_SIZE(hpre_dh_sizes)))
            goto bad_len;
        q->key_len = 2u * q->ksz;
        q->in_len = q->alg == HPRE_ALG_DH ? q->ksz : 0u;
        q->out_len = q->ksz;
        break;
    case HPRE_ALG_ECC_MUL:
        if (!hpre_ksz_in(q->ksz, hpre_ecc_sizes, AM_ARRAY_SIZE(hpre_ecc_sizes)))
            goto bad_len;
        q->key_len = 4u * q->ksz;
        q->in_len = 2u * q->ksz;
        q->out_len = 2u * q->ksz;
        break;
    case HPRE_ALG_CURVE25519_MUL:
        if (q->ksz != HPRE_X25519_KSZ)
            goto bad_len;
        q->key_len = 4u * q->ksz;
        q->in_len = q->ksz;
        q->out_len = q->ksz;
        break;
    default:
        *why = "unknown or unimplemented alg";
        return HPRE_ET_BAD_ALG;
    }
    if (qtype != (v2 ? HPRE_QTYPE_V2 : HPRE_QTYPE_ECC)) {
        *why = "alg not served by this queue's type";
        return HPRE_ET_BAD_ALG;
    }
    return HPRE_ET_OK;

bad_len:
    *why = "task length not a size this alg supports";
    return HPRE_ET_BAD_LEN;
}

/* A number from the job's BN_CTX frame, remembered for the wipe. NULL on
 * ENOMEM (or more numbers than HPRE_MAX_HELD: a bug). */
static BIGNUM *hpre_bn_tmp(struct hpre_engine *e)
{
    BIGNUM *r;

    if (e->nheld >= HPRE_MAX_HELD)
        return NULL;
    r = BN_CTX_get(e->bn);
    if (r)
        e->held[e->nheld++] = r;
    return r;
}

/* Big-endian bytes -> a number of the frame. NULL only on ENOMEM. */
static BIGNUM *hpre_bn(struct hpre_engine *e, const uint8_t *be, unsigned len)
{
    BIGNUM *r = hpre_bn_tmp(e);

    return r && BN_bin2bn(be, (int)len, r) ? r : NULL;
}

static bool hpre_modulus_ok(const BIGNUM *m)
{
    return !BN_is_zero(m) && BN_is_odd(m);
}

/* The Montgomery context for the public modulus m (odd, non-zero): the
 * cached one when m is the last modulus, else set up anew. NULL on ENOMEM. */
static BN_MONT_CTX *hpre_mont_public(struct hpre_engine *e, const BIGNUM *m)
{
    if (!BN_is_zero(e->mont_mod) && !BN_cmp(m, e->mont_mod))
        return e->mont;
    BN_zero(e->mont_mod);
    if (!BN_MONT_CTX_set(e->mont, m, e->bn) || !BN_copy(e->mont_mod, m))
        return NULL;
    return e->mont;
}

/* An exponent this short cannot be a private key of a modulus the engine
 * takes (512 bits and more), so it is public (RSA's e): variable time is
 * safe for it, and several times faster. */
#define HPRE_PUBLIC_EXP_BITS 64

/* r = b^x mod m for a public modulus m; constant time unless x is short. */
static int hpre_mod_exp_public_mod(struct hpre_engine *e, BIGNUM *r, const BIGNUM *b,
                                   const BIGNUM *x, const BIGNUM *m)
{
    BN_MONT_CTX *mont = hpre_mont_public(e, m);

    if (!mont)
        return 0;
    if (BN_num_bits(x) <= HPRE_PUBLIC_EXP_BITS)
        return BN_mod_exp_mont(r, b, x, m, e->bn, mont);
    return BN_mod_exp_mont_consttime(r, b, x, m, e->bn, mont);
}

/* The algorithms: each returns an etype (>= 0) with the result in e->out,
 * or -EIO when libcrypto failed on validated input. Called inside a
 * BN_CTX_start/end frame. */

static int hpre_rsa_ncrt(struct hpre_engine *e, const struct hpre_req *q, const char **why)
{
    unsigned k = q->ksz;
    BIGNUM *exp = hpre_bn(e, e->key, k), *n = hpre_bn(e, e->key + k, k);
    BIGNUM *m = hpre_bn(e, e->in, k), *r = hpre_bn_tmp(e);

    if (!exp || !n || !m || !r)
        return -EIO;
    if (!hpre_modulus_ok(n)) {
        *why = "RSA modulus even or zero";
        return HPRE_ET_OPERAND;
    }
    if (BN_cmp(m, n) >= 0) {
        *why = "RSA operand not below the modulus";
        return HPRE_ET_OPERAND;
    }
    /* e or d: the engine cannot tell, only that a short exponent is public. */
    if (!hpre_mod_exp_public_mod(e, r, m, exp, n) ||
        BN_bn2binpad(r, e->out, (int)k) < 0)
        return -EIO;
    return HPRE_ET_OK;
}

static int hpre_rsa_crt(struct hpre_engine *e, const struct hpre_req *q, const char **why)
{
    unsigned k = q->ksz, h = q->ksz / 2u;
    BIGNUM *dq = hpre_bn(e, e->key, h), *dp = hpre_bn(e, e->key + h, h);
    BIGNUM *bq = hpre_bn(e, e->key + 2u * h, h), *bp = hpre_bn(e, e->key + 3u * h, h);
    BIGNUM *qinv = hpre_bn(e, e->key + 4u * h, h), *c = hpre_bn(e, e->in, k);
    BIGNUM *n = hpre_bn_tmp(e), *t = hpre_bn_tmp(e);
    BIGNUM *m1 = hpre_bn_tmp(e), *m2 = hpre_bn_tmp(e), *t2 = hpre_bn_tmp(e);

    if (!dq || !dp || !bq || !bp || !qinv || !c || !n || !t || !m1 || !m2 || !t2)
        return -EIO;
    if (!hpre_modulus_ok(bp) || !hpre_modulus_ok(bq) || BN_is_one(bp) || BN_is_one(bq)) {
        *why = "RSA CRT prime even, zero or one";
        return HPRE_ET_OPERAND;
    }
    if (!BN_mul(n, bp, bq, e->bn))
        return -EIO;
    if (BN_cmp(c, n) >= 0) {
        *why = "RSA CRT operand not below p * q";
        return HPRE_ET_OPERAND;
    }
    if (BN_num_bytes(n) > (int)k) {
        *why = "RSA CRT p * q wider than the key size";
        return HPRE_ET_OPERAND;
    }
    /* m1 = c^dp mod p, m2 = c^dq mod q, h = qinv (m1 - m2) mod p,
     * m = m2 + h q (Garner); m < p q whatever the parameters are. */
    /* Both halves in one call: libcrypto runs them side by side (AVX-512
     * IFMA for 1024-bit primes) or one after the other. */
    if (!BN_mod(t, c, bp, e->bn) || !BN_mod(t2, c, bq, e->bn) ||
        !BN_mod_exp_mont_consttime_x2(m1, t, dp, bp, NULL, m2, t2, dq, bq, NULL, e->bn) ||
        !BN_mod_sub(t, m1, m2, bp, e->bn) || !BN_mod_mul(t, t, qinv, bp, e->bn) ||
        !BN_mul(t, t, bq, e->bn) || !BN_add(t, t, m2) || BN_bn2binpad(t, e->out, (int)k) < 0)
        return -EIO;
    return HPRE_ET_OK;
}

static int hpre_dh(struct hpre_engine *e, const struct hpre_req *q, const char **why)
{
    unsigned k = q->ksz;
    BIGNUM *xa = hpre_bn(e, e->key, k), *p = hpre_bn(e, e->key + k, k);
    BIGNUM *g = q->alg == HPRE_ALG_DH ? hpre_bn(e, e->in, k) : hpre_bn_tmp(e);
    BIGNUM *r = hpre_bn_tmp(e);

    if (!xa || !p || !g || !r)
        return -EIO;
    if (q->alg == HPRE_ALG_DH_G2 && !BN_set_word(g, 2))
        return -EIO;
    if (!hpre_modulus_ok(p)) {
        *why = "DH prime even or zero";
        return HPRE_ET_OPERAND;
    }
    if (BN_cmp(g, p) >= 0) {
        *why = "DH base not below the prime";
        return HPRE_ET_OPERAND;
    }
    if (!hpre_mod_exp_public_mod(e, r, g, xa, p) ||
        BN_bn2binpad(r, e->out, (int)k) < 0)
        return -EIO;
    return HPRE_ET_OK;
}

static int hpre_ecc_mul(struct hpre_engine *e, const struct hpre_req *q, const char **why)
{
    unsigned k = q->ksz;
    BIGNUM *p = hpre_bn(e, e->key, k), *a = hpre_bn(e, e->key + k, k);
    BIGNUM *sc = hpre_bn(e, e->key + 2u * k, k), *b = hpre_bn(e, e->key + 3u * k, k);
    BIGNUM *x = hpre_bn(e, e->in, k), *y = hpre_bn(e, e->in + k, k);
    const struct hpre_curve *c = NULL;
    EC_POINT *pt = NULL, *res = NULL;
    int rc = -EIO;

    if (!p || !a || !sc || !b || !x || !y)
        return -EIO;
    for (unsigned i = 0; i < HPRE_NCURVES; i++) {
        const struct hpre_curve *ci = &e->curves[i];

        if (!BN_cmp(p, ci->p) && !BN_cmp(a, ci->a) && !BN_cmp(b, ci->b)) {
            c = ci;
            break;
        }
    }
    if (!c) {
        *why = "ECC parameters not a supported curve";
        return HPRE_ET_CURVE;
    }
    if (c->ksz != k) {
        *why = "ECC task length not the one for this curve";
        return HPRE_ET_BAD_LEN;
    }
    if (BN_is_zero(sc) || BN_cmp(sc, c->order) >= 0) {
        *why = "ECC scalar zero or not below the order";
        return HPRE_ET_OPERAND;
    }
    if (BN_cmp(x, p) >= 0 || BN_cmp(y, p) >= 0) {
        *why = "ECC coordinate not below p";
        return HPRE_ET_OPERAND;
    }
    pt = EC_POINT_new(c->group);
    res = EC_POINT_new(c->group);
    if (!pt || !res)
        goto out_free;
    /* set_affine_coordinates refuses a point off the curve. */
    if (!EC_POINT_set_affine_coordinates(c->group, pt, x, y, e->bn)) {
        ERR_clear_error();
        *why = "ECC input point not on the curve";
        rc = HPRE_ET_POINT;
        goto out_free;
    }
    if (!EC_POINT_mul(c->group, res, NULL, pt, sc, e->bn))
        goto out_free;
    if (EC_POINT_is_at_infinity(c->group, res)) {
        *why = "ECC result at infinity";
        rc = HPRE_ET_POINT;
        goto out_free;
    }
    if (!EC_POINT_get_affine_coordinates(c->group, res, x, y, e->bn) ||
        BN_bn2binpad(x, e->out, (int)k) < 0 || BN_bn2binpad(y, e->out + k, (int)k) < 0)
        goto out_free;
    rc = HPRE_ET_OK;
out_free:
    EC_POINT_free(pt);
    EC_POINT_free(res);
    return rc;
}

static void hpre_reverse(uint8_t *dst, const uint8_t *src, unsigned len)
{
    for (unsigned i = 0; i < len; i++)
        dst[i] = src[len - 1u - i];
}

/* An X25519 key of private key k_le (little-endian) whose public half is a
 * placeholder: derive uses only the private half, and leaving libcrypto to
 * compute the public one would double the job's cost. NULL on failure. */
static EVP_PKEY *hpre_x25519_private(struct hpre_engine *e, uint8_t k_le[HPRE_X25519_KSZ])
{
    uint8_t placeholder[HPRE_X25519_KSZ] = { 9 };
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PRIV_KEY, k_le, HPRE_X25519_KSZ),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, placeholder, HPRE_X25519_KSZ),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY *k = NULL;

    if (EVP_PKEY_fromdata(e->x25519_import, &k, EVP_PKEY_KEYPAIR, params) <= 0)
        return NULL;
    return k;
}

static int hpre_x25519(struct hpre_engine *e, const struct hpre_req *q, const char **why)
{
    const uint8_t *p = e->key, *a = e->key + HPRE_X25519_KSZ, *k = e->key + 2u * HPRE_X25519_KSZ;
    uint8_t k_le[HPRE_X25519_KSZ], u_le[HPRE_X25519_KSZ], r_le[HPRE_X25519_KSZ];
    EVP_PKEY *priv = NULL, *peer = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    size_t rlen = sizeof(r_le);
    int rc = -EIO;

    if (memcmp(p, hpre_x25519_p, HPRE_X25519_KSZ) || memcmp(a, hpre_x25519_a, HPRE_X25519_KSZ)) {
        *why = "X25519 p or a not curve25519's";
        return HPRE_ET_CURVE;
    }
    /* Big-endian: k[0] holds bits 255..248, k[31] bits 7..0. */
    if ((k[0] & 0xc0u) != 0x40u || (k[HPRE_X25519_KSZ - 1u] & 7u)) {
        *why = "X25519 scalar not clamped";
        return HPRE_ET_OPERAND;
    }
    if (memcmp(e->in, hpre_x25519_p, HPRE_X25519_KSZ) >= 0) {
        *why = "X25519 u not below p";
        return HPRE_ET_OPERAND;
    }
    hpre_reverse(k_le, k, HPRE_X25519_KSZ);
    hpre_reverse(u_le, e->in, HPRE_X25519_KSZ);
    priv = hpre_x25519_private(e, k_le);
    peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, u_le, sizeof(u_le));
    ctx = priv ? EVP_PKEY_CTX_new(priv, NULL) : NULL;
    if (!priv || !peer || !ctx || EVP_PKEY_derive_init(ctx) <= 0 ||
        EVP_PKEY_derive_set_peer_ex(ctx, peer, 0) <= 0)
        goto out_free;
    /* With valid inputs the one way derive fails is an all-zero result. */
    if (EVP_PKEY_derive(ctx, r_le, &rlen) <= 0 || rlen != sizeof(r_le)) {
        ERR_clear_error();
        *why = "X25519 result zero (u of small order)";
        rc = HPRE_ET_POINT;
        goto out_free;
    }
    hpre_reverse(e->out, r_le, HPRE_X25519_KSZ);
    rc = HPRE_ET_OK;
out_free:
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(priv);
    EVP_PKEY_free(peer);
    OPENSSL_cleanse(k_le, sizeof(k_le));
    OPENSSL_cleanse(r_le, sizeof(r_le));
    return rc;
}

static int hpre_compute(struct hpre_engine *e, const struct hpre_req *q, const char **why)
{
    int rc;

    BN_CTX_start(e->bn);
    switch (q->alg) {
    case HPRE_ALG_NC_NCRT:
        rc = hpre_rsa_ncrt(e, q, why);
        break;
    case HPRE_ALG_NC_CRT:
        rc = hpre_rsa_crt(e, q, why);
        break;
    case HPRE_ALG_DH:
    case HPRE_ALG_DH_G2:
        rc = hpre_dh(e, q, why);
        break;
    case HPRE_ALG_ECC_MUL:
        rc = hpre_ecc_mul(e, q, why);
        break;
    default: /* decode let only CURVE25519_MUL through */
        rc = hpre_x25519(e, q, why);
        break;
    }
    for (unsigned i = 0; i < e->nheld; i++)
        BN_clear(e->held[i]);
    e->nheld = 0;
    BN_CTX_end(e->bn);
    if (rc < 0) {
        am_log(AM_LOG_ERR, "hpre", "libcrypto failed on alg 0x%x key_sz %u: %s", q->alg, q->ksz,
               ERR_reason_error_string(ERR_peek_last_error()));
        ERR_clear_error();
    }
    return rc;
}

static void hpre_stat_add(uint64_t *counter, uint64_t n)
{
    __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

/* The ops of a job run without a governor: writes go straight to the domain. */
static int hpre_direct_write(void *opaque, uint64_t iova, const void *buf, uint64_t len)
{
    return iommu_dma_write(opaque, iova, buf, len);
}

static const struct hpre_job_ops hpre_direct_ops = { .write = hpre_direct_write };

int hpre_engine_run(struct hpre_engine *e, struct iommu_domain *d, uint32_t sqe[HPRE_SQE_DWORDS],
                    unsigned alg_type, const struct hpre_job_ops *ops, void *opaque)
{
    const struct hpre_job_ops *jo = ops ? ops : &hpre_direct_ops;
    void *jopaque = ops ? opaque : d;
    const char *why = "";
    struct hpre_req q;
    int st, rc;

    if (!e || !d || !sqe || (ops && !ops->write))
        return -EINVAL;
    if (e->out_held) { /* the last job's commit is done */
        OPENSSL_cleanse(e->out, e->out_held);
        e->out_held = 0;
    }
    if (jo->cancelled && jo->cancelled(jopaque))
        goto cancelled;

    st = (int)hpre_sqe_decode(sqe, alg_type, &q, &why);
    if (st == HPRE_ET_OK && iommu_dma_read(d, q.key_iova, e->key, q.key_len)) {
        why = "DMA fault reading the key block";
        st = HPRE_ET_DMA_FAULT;
    }
    if (st == HPRE_ET_OK && q.in_len && iommu_dma_read(d, q.in_iova, e->in, q.in_len)) {
        why = "DMA fault reading the operand";
        st = HPRE_ET_DMA_FAULT;
    }
    if (st == HPRE_ET_OK)
        st = hpre_compute(e, &q, &why);
    /* Keys and results (a plaintext, a shared secret) do not outlive the
     * job in the engine. */
    OPENSSL_cleanse(e->key, sizeof(e->key));
    if (st < 0) {
        OPENSSL_cleanse(e->out, sizeof(e->out));
        return st;
    }
    if (st == HPRE_ET_OK) {
        bool held = jo->write_at_commit != NULL && hpre_req_in_place(&q);

        if (jo->cancelled && jo->cancelled(jopaque))
            rc = -ECANCELED;
        else if (held)
            rc = jo->write_at_commit(jopaque, q.out_iova, e->out, q.out_len);
        else
            rc = jo->write(jopaque, q.out_iova, e->out, q.out_len);
        if (held && rc == 0)
            e->out_held = q.out_len;
        else
            OPENSSL_cleanse(e->out, q.out_len);
        if (rc == -ECANCELED)
            goto cancelled;
        if (rc) {
            why = "DMA fault writing the result";
            st = HPRE_ET_DMA_FAULT;
        }
    }

    e->last_error = why;
    if (st != HPRE_ET_OK)
        hpre_stat_add(&e->stats.errors, 1);
    sqe[HPRE_SQE_DW0] = (sqe[HPRE_SQE_DW0] & ~(HPRE_DW0_ETYPE_MASK | HPRE_DW0_DONE_MASK)) |
                        (uint32_t)st << HPRE_DW0_ETYPE_SHIFT |
                        HPRE_DONE_TASK_DONE << HPRE_DW0_DONE_SHIFT;
    hpre_stat_add(&e->stats.jobs, 1);
    return 0;

cancelled:
    hpre_stat_add(&e->stats.cancelled, 1);
    return -ECANCELED;
}

const char *hpre_engine_last_error(const struct hpre_engine *e)
{
    return e->last_error ? e->last_error : "";
}

void hpre_engine_stats_get(const struct hpre_engine *e, struct hpre_engine_stats *out)
{
    out->jobs = __atomic_load_n(&e->stats.jobs, __ATOMIC_RELAXED);
    out->cancelled = __atomic_load_n(&e->stats.cancelled, __ATOMIC_RELAXED);
    out->errors = __atomic_load_n(&e->stats.errors, __ATOMIC_RELAXED);
}
