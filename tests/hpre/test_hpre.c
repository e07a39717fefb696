/* Tests of src/hpre: the HPRE engine against libcrypto used through other
 * paths (EVP_PKEY_encrypt/decrypt with RSA_NO_PADDING, EVP_PKEY_derive, the
 * keys' own public values) and against the RFC 7748 vectors. "Guest RAM" is
 * host memory mapped into a test IOMMU domain; SQEs and key blocks are laid
 * out the way the Linux hisi_hpre driver (6.1) lays them out. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/dh.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "hpre/hpre.h"
#include "iommu/iommu.h"

#define RAM_IOVA (UINT64_C(0x100000))
#define RAM_SIZE (UINT64_C(0x10000))
#define KEY (RAM_IOVA)
#define IN (RAM_IOVA + 0x4000)
#define OUT (RAM_IOVA + 0x8000)
#define RO_IOVA (UINT64_C(0x200000)) /* one read-only page */
#define UNMAPPED (UINT64_C(0x7000000000))
#define TAG 0x1234u

struct fx {
    struct iommu_domain *d;
    struct hpre_engine *e;
    uint8_t *ram;
    uint8_t *ro;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    assert_int_equal(iommu_domain_create(0x0110, &f->d), 0);
    assert_int_equal(hpre_engine_create(&f->e), 0);
    f->ram = aligned_alloc(IOMMU_PAGE_SIZE, RAM_SIZE);
    f->ro = aligned_alloc(IOMMU_PAGE_SIZE, IOMMU_PAGE_SIZE);
    assert_non_null(f->ram);
    assert_non_null(f->ro);
    memset(f->ram, 0, RAM_SIZE);
    memset(f->ro, 0, IOMMU_PAGE_SIZE);
    assert_int_equal(iommu_map_host(f->d, RAM_IOVA, RAM_SIZE, f->ram, IOMMU_READ | IOMMU_WRITE), 0);
    assert_int_equal(iommu_map_host(f->d, RO_IOVA, IOMMU_PAGE_SIZE, f->ro, IOMMU_READ), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    hpre_engine_destroy(f->e);
    iommu_domain_destroy(f->d);
    free(f->ram);
    free(f->ro);
    free(f);
    return 0;
}

static uint8_t *ram(struct fx *f, uint64_t iova)
{
    return f->ram + (iova - RAM_IOVA);
}

/* An SQE as hpre_msg_request_set builds it: done = 1, task_len1, tag. */
static void sqe_make(uint32_t sqe[HPRE_SQE_DWORDS], unsigned alg, unsigned ksz, uint64_t key,
                     uint64_t in, uint64_t out)
{
    memset(sqe, 0, HPRE_SQE_DWORDS * sizeof(uint32_t));
    sqe[HPRE_SQE_DW0] = alg | HPRE_DONE_SUBMITTED << HPRE_DW0_DONE_SHIFT;
    sqe[HPRE_SQE_DW1] = ksz / 8u - 1u;
    sqe[HPRE_SQE_KEY_LO] = (uint32_t)key;
    sqe[HPRE_SQE_KEY_LO + 1] = (uint32_t)(key >> 32);
    sqe[HPRE_SQE_IN_LO] = (uint32_t)in;
    sqe[HPRE_SQE_IN_LO + 1] = (uint32_t)(in >> 32);
    sqe[HPRE_SQE_OUT_LO] = (uint32_t)out;
    sqe[HPRE_SQE_OUT_LO + 1] = (uint32_t)(out >> 32);
    sqe[HPRE_SQE_TAG] = TAG;
}

/* Runs the SQE and returns its etype, after checking what every completion
 * must look like: done = 3, alg kept, every other dword untouched. */
static unsigned run_sqe(struct fx *f, uint32_t sqe[HPRE_SQE_DWORDS], unsigned qtype)
{
    uint32_t before[HPRE_SQE_DWORDS];

    memcpy(before, sqe, sizeof(before));
    assert_int_equal(hpre_engine_run(f->e, f->d, sqe, qtype, NULL, NULL), 0);
    assert_int_equal(sqe[0] >> HPRE_DW0_DONE_SHIFT, HPRE_DONE_TASK_DONE);
    assert_int_equal(sqe[0] & HPRE_DW0_ALG_MASK, before[0] & HPRE_DW0_ALG_MASK);
    assert_int_equal(sqe[0] & 0x3fff0000u, before[0] & 0x3fff0000u);
    assert_memory_equal(sqe + 1, before + 1, (HPRE_SQE_DWORDS - 1) * sizeof(uint32_t));
    return (sqe[0] & HPRE_DW0_ETYPE_MASK) >> HPRE_DW0_ETYPE_SHIFT;
}

static unsigned run(struct fx *f, unsigned alg, unsigned ksz, unsigned qtype)
{
    uint32_t sqe[HPRE_SQE_DWORDS];

    sqe_make(sqe, alg, ksz, KEY, IN, OUT);
    return run_sqe(f, sqe, qtype);
}

/* A BN right-aligned in len bytes at dst. */
static void put_bn(uint8_t *dst, const BIGNUM *bn, unsigned len)
{
    assert_true(BN_bn2binpad(bn, dst, (int)len) == (int)len);
}

static BIGNUM *get_bn_param(EVP_PKEY *k, const char *name)
{
    BIGNUM *bn = NULL;

    assert_int_equal(EVP_PKEY_get_bn_param(k, name, &bn), 1);
    return bn;
}

static void hex2bin(const char *hex, uint8_t *out, size_t len)
{
    assert_int_equal(strlen(hex), 2 * len);
    for (size_t i = 0; i < len; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

static void reverse(uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len / 2; i++) {
        uint8_t t = buf[i];
        buf[i] = buf[len - 1 - i];
        buf[len - 1 - i] = t;
    }
}

/* ---- RSA ---------------------------------------------------------------- */

struct rsa_key {
    EVP_PKEY *pkey;
    unsigned ksz;
    BIGNUM *n, *e, *d, *p, *q, *dp, *dq, *qinv;
};

static void rsa_key_gen(struct rsa_key *k, unsigned bits)
{
    k->pkey = EVP_RSA_gen(bits);
    assert_non_null(k->pkey);
    k->ksz = bits / 8;
    k->n = get_bn_param(k->pkey, OSSL_PKEY_PARAM_RSA_N);
    k->e = get_bn_param(k->pkey, OSSL_PKEY_PARAM_RSA_E);
    k->d = get_bn_param(k->pkey, OSSL_PKEY_PARAM_RSA_D);
    k->p = get_bn_param(k->pkey, OSSL_PKEY_PARAM_RSA_FACTOR1);
    k->q = get_bn_param(k->pkey, OSSL_PKEY_PARAM_RSA_FACTOR2);
    k->dp = get_bn_param(k->pkey, OSSL_PKEY_PARAM_RSA_EXPONENT1);
    k->dq = get_bn_param(k->pkey, OSSL_PKEY_PARAM_RSA_EXPONENT2);
    k->qinv = get_bn_param(k->pkey, OSSL_PKEY_PARAM_RSA_COEFFICIENT1);
}

static void rsa_key_free(struct rsa_key *k)
{
    BN_free(k->n);
    BN_free(k->e);
    BN_free(k->d);
    BN_free(k->p);
    BN_free(k->q);
    BN_free(k->dp);
    BN_free(k->dq);
    BN_free(k->qinv);
    EVP_PKEY_free(k->pkey);
}

/* key blocks as hpre_rsa_set_n/_e/_d and hpre_rsa_setkey_crt fill them */
static void rsa_put_pub(struct fx *f, const struct rsa_key *k)
{
    put_bn(ram(f, KEY), k->e, k->ksz);
    put_bn(ram(f, KEY) + k->ksz, k->n, k->ksz);
}

static void rsa_put_priv(struct fx *f, const struct rsa_key *k)
{
    put_bn(ram(f, KEY), k->d, k->ksz);
    put_bn(ram(f, KEY) + k->ksz, k->n, k->ksz);
}

static void rsa_put_crt(struct fx *f, const struct rsa_key *k)
{
    unsigned h = k->ksz / 2;

    put_bn(ram(f, KEY), k->dq, h);
    put_bn(ram(f, KEY) + h, k->dp, h);
    put_bn(ram(f, KEY) + 2 * h, k->q, h);
    put_bn(ram(f, KEY) + 3 * h, k->p, h);
    put_bn(ram(f, KEY) + 4 * h, k->qinv, h);
}

static void evp_raw(EVP_PKEY *pkey, bool encrypt, const uint8_t *in, uint8_t *out, size_t len)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pkey, NULL);
    size_t olen = len;

    assert_non_null(c);
    assert_int_equal(encrypt ? EVP_PKEY_encrypt_init(c) : EVP_PKEY_decrypt_init(c), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(c, RSA_NO_PADDING), 1);
    assert_int_equal(encrypt ? EVP_PKEY_encrypt(c, out, &olen, in, len)
                             : EVP_PKEY_decrypt(c, out, &olen, in, len), 1);
    assert_int_equal(olen, len);
    EVP_PKEY_CTX_free(c);
}

static void rsa_roundtrip(struct fx *f, unsigned bits)
{
    struct rsa_key k;
    uint8_t m[512], c[512], back[512];

    rsa_key_gen(&k, bits);
    assert_true(RAND_bytes(m, (int)k.ksz) == 1);
    m[0] = 0; /* below n */
    evp_raw(k.pkey, true, m, c, k.ksz);

    /* public: m^e mod n equals libcrypto's raw encryption */
    rsa_put_pub(f, &k);
    memcpy(ram(f, IN), m, k.ksz);
    assert_int_equal(run(f, HPRE_ALG_NC_NCRT, k.ksz, HPRE_QTYPE_V2), HPRE_ET_OK);
    assert_memory_equal(ram(f, OUT), c, k.ksz);
    assert_string_equal(hpre_engine_last_error(f->e), "");

    /* private, plain: c^d mod n gives m back; libcrypto's raw decrypt agrees */
    evp_raw(k.pkey, false, c, back, k.ksz);
    assert_memory_equal(back, m, k.ksz);
    memset(ram(f, OUT), 0, k.ksz);
    rsa_put_priv(f, &k);
    memcpy(ram(f, IN), c, k.ksz);
    assert_int_equal(run(f, HPRE_ALG_NC_NCRT, k.ksz, HPRE_QTYPE_V2), HPRE_ET_OK);
    assert_memory_equal(ram(f, OUT), m, k.ksz);

    /* private, CRT */
    memset(ram(f, OUT), 0, k.ksz);
    memset(ram(f, KEY), 0, 2 * k.ksz);
    rsa_put_crt(f, &k);
    assert_int_equal(run(f, HPRE_ALG_NC_CRT, k.ksz, HPRE_QTYPE_V2), HPRE_ET_OK);
    assert_memory_equal(ram(f, OUT), m, k.ksz);

    /* The same operands on the wrong queue type are refused. */
    assert_int_equal(run(f, HPRE_ALG_NC_CRT, k.ksz, HPRE_QTYPE_ECC), HPRE_ET_BAD_ALG);
    rsa_key_free(&k);
}

static void rsa_1024_public_private_and_crt_agree_with_libcrypto(void **state)
{
    rsa_roundtrip(*state, 1024);
}

static void rsa_2048_public_private_and_crt_agree_with_libcrypto(void **state)
{
    rsa_roundtrip(*state, 2048);
}

static void rsa_operand_not_below_n_or_even_modulus_is_an_operand_error(void **state)
{
    struct fx *f = *state;
    struct rsa_key k;
    uint8_t out_before[128];

    rsa_key_gen(&k, 1024);
    rsa_put_pub(f, &k);
    memset(ram(f, OUT), 0x5a, sizeof(out_before));
    memcpy(out_before, ram(f, OUT), sizeof(out_before));

    put_bn(ram(f, IN), k.n, k.ksz); /* m == n */
    assert_int_equal(run(f, HPRE_ALG_NC_NCRT, k.ksz, HPRE_QTYPE_V2), HPRE_ET_OPERAND);
    assert_string_not_equal(hpre_engine_last_error(f->e), "");
    memset(ram(f, IN), 0xff, k.ksz); /* m > n */
    assert_int_equal(run(f, HPRE_ALG_NC_NCRT, k.ksz, HPRE_QTYPE_V2), HPRE_ET_OPERAND);
    /* CRT: c >= p * q */
    rsa_put_crt(f, &k);
    assert_int_equal(run(f, HPRE_ALG_NC_CRT, k.ksz, HPRE_QTYPE_V2), HPRE_ET_OPERAND);
    /* even modulus, zero modulus */
    rsa_put_pub(f, &k);
    memset(ram(f, IN), 0, k.ksz);
    ram(f, IN)[k.ksz - 1] = 5;
    ram(f, KEY)[2 * k.ksz - 1] &= 0xfe;
    assert_int_equal(run(f, HPRE_ALG_NC_NCRT, k.ksz, HPRE_QTYPE_V2), HPRE_ET_OPERAND);
    memset(ram(f, KEY) + k.ksz, 0, k.ksz);
    assert_int_equal(run(f, HPRE_ALG_NC_NCRT, k.ksz, HPRE_QTYPE_V2), HPRE_ET_OPERAND);
    /* CRT with an even prime */
    rsa_put_crt(f, &k);
    ram(f, KEY)[4 * (k.ksz / 2) - 1] &= 0xfe; /* p */
    assert_int_equal(run(f, HPRE_ALG_NC_CRT, k.ksz, HPRE_QTYPE_V2), HPRE_ET_OPERAND);
    /* nothing was written by any of them */
    assert_memory_equal(ram(f, OUT), out_before, sizeof(out_before));
    rsa_key_free(&k);
}

static void rsa_key_sizes_outside_512_to_4096_bits_are_bad_lengths(void **state)
{
    struct fx *f = *state;
    static const unsigned bad[] = { 8, 32, 56, 72, 136, 520, 1024, 2048 };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(run(f, HPRE_ALG_NC_NCRT, bad[i], HPRE_QTYPE_V2), HPRE_ET_BAD_LEN);
        assert_int_equal(run(f, HPRE_ALG_NC_CRT, bad[i], HPRE_QTYPE_V2), HPRE_ET_BAD_LEN);
    }
    /* 4096 bits is accepted: a small odd modulus padded to 512 bytes */
    memset(ram(f, KEY), 0, 1024);
    ram(f, KEY)[511] = 3;          /* e = 3 */
    ram(f, KEY)[1023] = 0x21;      /* n = 33 */
    memset(ram(f, IN), 0, 512);
    ram(f, IN)[511] = 2;
    assert_int_equal(run(f, HPRE_ALG_NC_NCRT, 512, HPRE_QTYPE_V2), HPRE_ET_OK);
    assert_int_equal(ram(f, OUT)[511], 8);
    for (unsigned i = 0; i < 511; i++)
        assert_int_equal(ram(f, OUT)[i], 0);
}

static void alternating_rsa_keys_each_get_their_own_modulus(void **state)
{
    struct fx *f = *state;
    struct rsa_key k[2];
    uint8_t m[128], c[2][128];

    rsa_key_gen(&k[0], 1024);
    rsa_key_gen(&k[1], 1024);
    assert_true(RAND_bytes(m, sizeof(m)) == 1);
    m[0] = 0;
    evp_raw(k[0].pkey, true, m, c[0], 128);
    evp_raw(k[1].pkey, true, m, c[1], 128);
    /* the engine keeps the last public modulus: every switch must drop it */
    for (int i = 0; i < 6; i++) {
        const struct rsa_key *kk = &k[i % 2];

        memcpy(ram(f, IN), m, 128);
        rsa_put_pub(f, kk);
        assert_int_equal(run(f, HPRE_ALG_NC_NCRT, 128, HPRE_QTYPE_V2), HPRE_ET_OK);
        assert_memory_equal(ram(f, OUT), c[i % 2], 128);
        memcpy(ram(f, IN), c[i % 2], 128);
        rsa_put_priv(f, kk);
        assert_int_equal(run(f, HPRE_ALG_NC_NCRT, 128, HPRE_QTYPE_V2), HPRE_ET_OK);
        assert_memory_equal(ram(f, OUT), m, 128);
        /* a refused job in between (even modulus) does not poison it */
        ram(f, KEY)[255] &= 0xfe;
        assert_int_equal(run(f, HPRE_ALG_NC_NCRT, 128, HPRE_QTYPE_V2), HPRE_ET_OPERAND);
    }
    rsa_key_free(&k[0]);
    rsa_key_free(&k[1]);
}

static void degenerate_but_valid_operands_compute_what_arithmetic_says(void **state)
{
    struct fx *f = *state;
    unsigned k = 64; /* 512 bits: the smallest RSA size */

    /* n = 1: the only operand below it is 0, and 0^e mod 1 = 0 */
    memset(ram(f, KEY), 0, 2 * k);
    ram(f, KEY)[k - 1] = 3;
    ram(f, KEY)[2 * k - 1] = 1;
    memset(ram(f, IN), 0, k);
    memset(ram(f, OUT), 0xee, k);
    assert_int_equal(run(f, HPRE_ALG_NC_NCRT, k, HPRE_QTYPE_V2), HPRE_ET_OK);
    for (unsigned i = 0; i < k; i++)
        assert_int_equal(ram(f, OUT)[i], 0);
    /* exponent 0: m^0 mod 33 = 1, then the same modulus again (cached) */
    memset(ram(f, KEY), 0, k);
    ram(f, KEY)[2 * k - 1] = 33;
    ram(f, IN)[k - 1] = 5;
    assert_int_equal(run(f, HPRE_ALG_NC_NCRT, k, HPRE_QTYPE_V2), HPRE_ET_OK);
    assert_int_equal(ram(f, OUT)[k - 1], 1);
    ram(f, KEY)[k - 1] = 2; /* 5^2 mod 33 = 25 */
    assert_int_equal(run(f, HPRE_ALG_NC_NCRT, k, HPRE_QTYPE_V2), HPRE_ET_OK);
    assert_int_equal(ram(f, OUT)[k - 1], 25);
    /* a long exponent (constant-time path) on the cached modulus: 5^(2^100) mod 33 */
    ram(f, KEY)[k - 1] = 0;
    ram(f, KEY)[k - 1 - 12] = 0x10; /* 2^100 */
    assert_int_equal(run(f, HPRE_ALG_NC_NCRT, k, HPRE_QTYPE_V2), HPRE_ET_OK);
    {
        /* 5 has order 10 mod 33; 2^100 mod 10 = 6 (2^n mod 10 cycles 2,4,8,6 from n = 1) */
        unsigned v = 1;
        for (int i = 0; i < 6; i++)
            v = v * 5 % 33;
        assert_int_equal(ram(f, OUT)[k - 1], v);
    }
    /* CRT with p = 3, q = 11 (n = 33), d = 7 for e = 3: dp = 1, dq = 7, qinv = 11^-1 mod 3 = 2 */
    memset(ram(f, KEY), 0, 5 * k / 2);
    ram(f, KEY)[k / 2 - 1] = 7;      /* dq */
    ram(f, KEY)[k - 1] = 1;          /* dp */
    ram(f, KEY)[3 * k / 2 - 1] = 11; /* q */
    ram(f, KEY)[2 * k - 1] = 3;      /* p */
    ram(f, KEY)[5 * k / 2 - 1] = 2;  /* qinv */
    memset(ram(f, IN), 0, k);
    ram(f, IN)[k - 1] = 26; /* 26 = 5^3 mod 33 */
    assert_int_equal(run(f, HPRE_ALG_NC_CRT, k, HPRE_QTYPE_V2), HPRE_ET_OK);
    assert_int_equal(ram(f, OUT)[k - 1], 5);
    for (unsigned i = 0; i < k - 1; i++)
        assert_int_equal(ram(f, OUT)[i], 0);
}

/* ---- DH ----------------------------------------------------------------- */

static EVP_PKEY *dh_gen(const char *group)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "DH", NULL);
    OSSL_PARAM params[2];
    EVP_PKEY *k = NULL;

    assert_non_null(c);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0);
    params[1] = OSSL_PARAM_construct_end();
    assert_int_equal(EVP_PKEY_keygen_init(c), 1);
    assert_int_equal(EVP_PKEY_CTX_set_params(c, params), 1);
    assert_int_equal(EVP_PKEY_generate(c, &k), 1);
    EVP_PKEY_CTX_free(c);
    return k;
}

static void evp_derive(EVP_PKEY *self, EVP_PKEY *peer, uint8_t *out, size_t len, bool dh_pad)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(self, NULL);
    size_t olen = len;

    assert_non_null(c);
    assert_int_equal(EVP_PKEY_derive_init(c), 1);
    if (dh_pad)
        assert_int_equal(EVP_PKEY_CTX_set_dh_pad(c, 1), 1);
    assert_int_equal(EVP_PKEY_derive_set_peer(c, peer), 1);
    assert_int_equal(EVP_PKEY_derive(c, out, &olen), 1);
    assert_int_equal(olen, len);
    EVP_PKEY_CTX_free(c);
}

static void dh_group(struct fx *f, const char *group, unsigned ksz)
{
    EVP_PKEY *a = dh_gen(group), *b = dh_gen(group);
    BIGNUM *p = get_bn_param(a, OSSL_PKEY_PARAM_FFC_P), *g = get_bn_param(a, OSSL_PKEY_PARAM_FFC_G);
    BIGNUM *xa = get_bn_param(a, OSSL_PKEY_PARAM_PRIV_KEY);
    BIGNUM *ya = get_bn_param(a, OSSL_PKEY_PARAM_PUB_KEY);
    BIGNUM *yb = get_bn_param(b, OSSL_PKEY_PARAM_PUB_KEY);
    uint8_t expect[512];

    assert_int_equal(BN_num_bytes(p), (int)ksz);
    assert_true(BN_is_word(g, 2));
    /* key block as hpre_dh_set_secret fills it: xa | p */
    put_bn(ram(f, KEY), xa, ksz);
    put_bn(ram(f, KEY) + ksz, p, ksz);

    /* generate_public_key with g == 2: DH_G2, `in` not even mapped */
    put_bn(expect, ya, ksz);
    uint32_t sqe[HPRE_SQE_DWORDS];
    sqe_make(sqe, HPRE_ALG_DH_G2, ksz, KEY, ~UINT64_C(0), OUT);
    assert_int_equal(run_sqe(f, sqe, HPRE_QTYPE_V2), HPRE_ET_OK);
    assert_memory_equal(ram(f, OUT), expect, ksz);

    /* the same with g in `in` (alg DH) */
    memset(ram(f, OUT), 0, ksz);
    put_bn(ram(f, IN), g, ksz);
    assert_int_equal(run(f, HPRE_ALG_DH, ksz, HPRE_QTYPE_V2), HPRE_ET_OK);
    assert_memory_equal(ram(f, OUT), expect, ksz);

    /* compute_shared_secret: yb^xa mod p equals EVP_PKEY_derive (padded) */
    evp_derive(a, b, expect, ksz, true);
    put_bn(ram(f, IN), yb, ksz);
    assert_int_equal(run(f, HPRE_ALG_DH, ksz, HPRE_QTYPE_V2), HPRE_ET_OK);
    assert_memory_equal(ram(f, OUT), expect, ksz);

    /* a base not below p */
    put_bn(ram(f, IN), p, ksz);
    assert_int_equal(run(f, HPRE_ALG_DH, ksz, HPRE_QTYPE_V2), HPRE_ET_OPERAND);
    /* DH on an ECC queue */
    assert_int_equal(run(f, HPRE_ALG_DH, ksz, HPRE_QTYPE_ECC), HPRE_ET_BAD_ALG);

    BN_free(p);
    BN_free(g);
    BN_free(xa);
    BN_free(ya);
    BN_free(yb);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
}

static void dh_ffdhe2048_public_and_shared_agree_with_evp_derive(void **state)
{
    dh_group(*state, "ffdhe2048", 256);
}

static void dh_ffdhe3072_public_and_shared_agree_with_evp_derive(void **state)
{
    dh_group(*state, "ffdhe3072", 384);
}

static void dh_sizes_other_than_the_drivers_groups_are_bad_lengths(void **state)
{
    struct fx *f = *state;
    static const unsigned bad[] = { 8, 64, 72, 160, 520 };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(run(f, HPRE_ALG_DH, bad[i], HPRE_QTYPE_V2), HPRE_ET_BAD_LEN);
        assert_int_equal(run(f, HPRE_ALG_DH_G2, bad[i], HPRE_QTYPE_V2), HPRE_ET_BAD_LEN);
    }
    /* an even prime at a good size */
    memset(ram(f, KEY), 0, 192);
    memset(ram(f, KEY) + 96, 0xfe, 96);
    assert_int_equal(run(f, HPRE_ALG_DH_G2, 96, HPRE_QTYPE_V2), HPRE_ET_OPERAND);
}

/* ---- ECDH --------------------------------------------------------------- */

struct ec_case {
    const char *name;
    unsigned ksz;   /* the driver's key_sz */
    unsigned cur_sz; /* bytes of the curve's n */
};

static const struct ec_case ec_cases[] = {
    { "P-192", 32, 24 }, { "P-224", 32, 28 }, { "P-256", 32, 32 },
    { "P-384", 48, 48 }, { "P-521", 72, 66 },
};

/* key block p | a | k | b as hpre_ecdh_fill_curve and _set_secret fill it */
static void ec_put_key(struct fx *f, const EC_GROUP *g, const BIGNUM *k, unsigned ksz)
{
    BIGNUM *p = BN_new(), *a = BN_new(), *b = BN_new();

    assert_int_equal(EC_GROUP_get_curve(g, p, a, b, NULL), 1);
    put_bn(ram(f, KEY), p, ksz);
    put_bn(ram(f, KEY) + ksz, a, ksz);
    put_bn(ram(f, KEY) + 2 * ksz, k, ksz);
    put_bn(ram(f, KEY) + 3 * ksz, b, ksz);
    BN_free(p);
    BN_free(a);
    BN_free(b);
}

/* An uncompressed point 04 | x | y of cur_sz coordinates into x | y padded to ksz. */
static void ec_put_point(uint8_t *dst, const uint8_t *octets, unsigned cur_sz, unsigned ksz)
{
    assert_int_equal(octets[0], 4);
    memset(dst, 0, 2 * ksz);
    memcpy(dst + ksz - cur_sz, octets + 1, cur_sz);
    memcpy(dst + 2 * ksz - cur_sz, octets + 1 + cur_sz, cur_sz);
}

static size_t ec_pub_octets(EVP_PKEY *k, uint8_t *buf, size_t len)
{
    size_t olen = 0;

    assert_int_equal(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, buf, len, &olen), 1);
    return olen;
}

static void ecdh_curve(struct fx *f, const struct ec_case *c)
{
    EVP_PKEY *ka = EVP_EC_gen(c->name), *kb = EVP_EC_gen(c->name);
    int nid = EC_curve_nist2nid(c->name);
    EC_GROUP *g = EC_GROUP_new_by_curve_name(nid);
    BIGNUM *da = get_bn_param(ka, OSSL_PKEY_PARAM_PRIV_KEY);
    uint8_t oct[1 + 2 * 66], expect[2 * 72], secret[66];
    unsigned k = c->ksz;
    BIGNUM *bn;

    assert_non_null(ka);
    assert_non_null(kb);
    assert_non_null(g);
    assert_int_equal(BN_num_bytes(EC_GROUP_get0_order(g)) , (int)c->cur_sz);
    ec_put_key(f, g, da, k);

    /* generate_public_key: in = G (the driver's ctx->ecdh.g), out = da G */
    assert_int_equal(EC_POINT_point2oct(g, EC_GROUP_get0_generator(g), POINT_CONVERSION_UNCOMPRESSED,
                                        oct, sizeof(oct), NULL),
                     1 + 2 * c->cur_sz);
    ec_put_point(ram(f, IN), oct, c->cur_sz, k);
    assert_int_equal(ec_pub_octets(ka, oct, sizeof(oct)), 1 + 2 * c->cur_sz);
    ec_put_point(expect, oct, c->cur_sz, k);
    assert_int_equal(run(f, HPRE_ALG_ECC_MUL, k, HPRE_QTYPE_ECC), HPRE_ET_OK);
    assert_memory_equal(ram(f, OUT), expect, 2 * k);

    /* compute_shared_secret: x of da Qb equals EVP_PKEY_derive */
    evp_derive(ka, kb, secret, c->cur_sz, false);
    assert_int_equal(ec_pub_octets(kb, oct, sizeof(oct)), 1 + 2 * c->cur_sz);
    ec_put_point(ram(f, IN), oct, c->cur_sz, k);
    assert_int_equal(run(f, HPRE_ALG_ECC_MUL, k, HPRE_QTYPE_ECC), HPRE_ET_OK);
    assert_memory_equal(ram(f, OUT) + k - c->cur_sz, secret, c->cur_sz);
    for (unsigned i = 0; i < k - c->cur_sz; i++)
        assert_int_equal(ram(f, OUT)[i], 0);

    /* a point off the curve: y + 1 */
    ram(f, IN)[2 * k - 1] ^= 1;
    assert_int_equal(run(f, HPRE_ALG_ECC_MUL, k, HPRE_QTYPE_ECC), HPRE_ET_POINT);
    ram(f, IN)[2 * k - 1] ^= 1;
    /* an x not below p */
    memcpy(oct, ram(f, IN), k);
    memcpy(ram(f, IN), ram(f, KEY), k);
    assert_int_equal(run(f, HPRE_ALG_ECC_MUL, k, HPRE_QTYPE_ECC), HPRE_ET_OPERAND);
    memcpy(ram(f, IN), oct, k);
    /* scalar 0 and scalar n */
    bn = BN_new();
    ec_put_key(f, g, bn, k);
    assert_int_equal(run(f, HPRE_ALG_ECC_MUL, k, HPRE_QTYPE_ECC), HPRE_ET_OPERAND);
    ec_put_key(f, g, EC_GROUP_get0_order(g), k);
    assert_int_equal(run(f, HPRE_ALG_ECC_MUL, k, HPRE_QTYPE_ECC), HPRE_ET_OPERAND);
    /* another b: not a supported curve */
    ec_put_key(f, g, da, k);
    ram(f, KEY)[4 * k - 1] ^= 1;
    assert_int_equal(run(f, HPRE_ALG_ECC_MUL, k, HPRE_QTYPE_ECC), HPRE_ET_CURVE);
    /* the curve's operands laid out at a wider key size than the driver's */
    if (k != 72) {
        ec_put_key(f, g, da, 72);
        assert_int_equal(run(f, HPRE_ALG_ECC_MUL, 72, HPRE_QTYPE_ECC), HPRE_ET_BAD_LEN);
    }
    /* ECC on a V2 queue */
    ec_put_key(f, g, da, k);
    assert_int_equal(run(f, HPRE_ALG_ECC_MUL, k, HPRE_QTYPE_V2), HPRE_ET_BAD_ALG);

    BN_free(bn);
    BN_free(da);
    EC_GROUP_free(g);
    EVP_PKEY_free(ka);
    EVP_PKEY_free(kb);
}

static void ecdh_on_every_curve_agrees_with_evp_and_refuses_bad_points(void **state)
{
    for (size_t i = 0; i < sizeof(ec_cases) / sizeof(ec_cases[0]); i++)
        ecdh_curve(*state, &ec_cases[i]);
}

static void ecc_key_sizes_other_than_32_48_72_are_bad_lengths(void **state)
{
    struct fx *f = *state;

    assert_int_equal(run(f, HPRE_ALG_ECC_MUL, 24, HPRE_QTYPE_ECC), HPRE_ET_BAD_LEN);
    assert_int_equal(run(f, HPRE_ALG_ECC_MUL, 40, HPRE_QTYPE_ECC), HPRE_ET_BAD_LEN);
    assert_int_equal(run(f, HPRE_ALG_ECC_MUL, 64, HPRE_QTYPE_ECC), HPRE_ET_BAD_LEN);
    assert_int_equal(run(f, HPRE_ALG_ECC_MUL, 80, HPRE_QTYPE_ECC), HPRE_ET_BAD_LEN);
    /* all-zero parameters at a good size: no curve */
    memset(ram(f, KEY), 0, 4 * 32);
    assert_int_equal(run(f, HPRE_ALG_ECC_MUL, 32, HPRE_QTYPE_ECC), HPRE_ET_CURVE);
}

/* ---- X25519 ------------------------------------------------------------- */

static const uint8_t x25519_p_be[32] = {
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xed,
};

/* key block p | a | k | gx as hpre_curve25519_fill_curve fills it: the
 * little-endian secret clamped, then big-endian */
static void x25519_put_key(struct fx *f, const uint8_t secret_le[32])
{
    uint8_t k[32];

    memcpy(k, secret_le, 32);
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    reverse(k, 32);
    memcpy(ram(f, KEY), x25519_p_be, 32);
    memset(ram(f, KEY) + 32, 0, 32);
    ram(f, KEY)[32 + 29] = 0x01;
    ram(f, KEY)[32 + 30] = 0xdb;
    ram(f, KEY)[32 + 31] = 0x41;
    memcpy(ram(f, KEY) + 64, k, 32);
    memset(ram(f, KEY) + 96, 0, 32);
    ram(f, KEY)[127] = 9;
}

/* `in` as hpre_curve25519_src_init fills it: bit 255 masked, big-endian,
 * reduced mod p (only 2^255 - 19 .. 2^255 - 1 need it) */
static void x25519_put_u(struct fx *f, const uint8_t u_le[32])
{
    uint8_t u[32];

    memcpy(u, u_le, 32);
    u[31] &= 0x7f;
    reverse(u, 32);
    if (memcmp(u, x25519_p_be, 32) > 0) {
        memset(u, 0, 31);
        u[31] -= 0xed;
    }
    memcpy(ram(f, IN), u, 32);
}

/* Runs the job and returns the result little-endian, as the driver's callback does. */
static unsigned x25519_run(struct fx *f, uint8_t out_le[32])
{
    unsigned et = run(f, HPRE_ALG_CURVE25519_MUL, 32, HPRE_QTYPE_ECC);

    memcpy(out_le, ram(f, OUT), 32);
    reverse(out_le, 32);
    return et;
}

static void x25519_vector(struct fx *f, const char *k_hex, const char *u_hex, const char *out_hex)
{
    uint8_t k[32], u[32], expect[32], out[32];

    hex2bin(k_hex, k, 32);
    hex2bin(u_hex, u, 32);
    hex2bin(out_hex, expect, 32);
    x25519_put_key(f, k);
    x25519_put_u(f, u);
    assert_int_equal(x25519_run(f, out), HPRE_ET_OK);
    assert_memory_equal(out, expect, 32);
}

static void x25519_matches_the_rfc7748_vectors(void **state)
{
    struct fx *f = *state;
    static const uint8_t nine[32] = { 9 };
    uint8_t out[32], expect[32];

    /* RFC 7748 section 5.2 */
    x25519_vector(f, "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
                  "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
                  "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
    x25519_vector(f, "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
                  "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
                  "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957");
    /* RFC 7748 section 6.1: both public keys, then the shared secret both ways */
    x25519_vector(f, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
                  "0900000000000000000000000000000000000000000000000000000000000000",
                  "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    x25519_vector(f, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
                  "0900000000000000000000000000000000000000000000000000000000000000",
                  "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    x25519_vector(f, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
                  "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
                  "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    x25519_vector(f, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
                  "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
                  "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    /* u = 9 through the driver's own preprocessing */
    hex2bin("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a", expect, 32);
    x25519_put_u(f, nine);
    hex2bin("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", out, 32);
    x25519_put_key(f, out);
    assert_int_equal(x25519_run(f, out), HPRE_ET_OK);
    assert_memory_equal(out, expect, 32);
}

static void x25519_random_keys_agree_with_libcrypto(void **state)
{
    struct fx *f = *state;
    static const uint8_t nine[32] = { 9 };

    for (int i = 0; i < 8; i++) {
        EVP_PKEY *a = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
        EVP_PKEY *b = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
        uint8_t priv[32], pub[32], peer[32], shared[32], out[32];
        size_t len = 32;

        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal(EVP_PKEY_get_raw_private_key(a, priv, &len), 1);
        len = 32;
        assert_int_equal(EVP_PKEY_get_raw_public_key(a, pub, &len), 1);
        len = 32;
        assert_int_equal(EVP_PKEY_get_raw_public_key(b, peer, &len), 1);
        evp_derive(a, b, shared, 32, false);

        x25519_put_key(f, priv);
        x25519_put_u(f, nine);
        assert_int_equal(x25519_run(f, out), HPRE_ET_OK);
        assert_memory_equal(out, pub, 32);
        x25519_put_u(f, peer);
        assert_int_equal(x25519_run(f, out), HPRE_ET_OK);
        assert_memory_equal(out, shared, 32);
        EVP_PKEY_free(a);
        EVP_PKEY_free(b);
    }
}

static void x25519_malformed_operands_are_refused(void **state)
{
    struct fx *f = *state;
    static const uint8_t nine[32] = { 9 }, zero[32] = { 0 }, one[32] = { 1 };
    uint8_t k[32], out[32];

    hex2bin("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", k, 32);
    x25519_put_key(f, k);
    x25519_put_u(f, nine);
    assert_int_equal(x25519_run(f, out), HPRE_ET_OK);

    /* an unclamped scalar: low bits, bit 255, bit 254 */
    ram(f, KEY)[64 + 31] |= 1;
    assert_int_equal(x25519_run(f, out), HPRE_ET_OPERAND);
    x25519_put_key(f, k);
    ram(f, KEY)[64] |= 0x80;
    assert_int_equal(x25519_run(f, out), HPRE_ET_OPERAND);
    x25519_put_key(f, k);
    ram(f, KEY)[64] &= 0xbf;
    assert_int_equal(x25519_run(f, out), HPRE_ET_OPERAND);
    x25519_put_key(f, k);
    /* u == p, u > p: the driver reduces, the engine refuses */
    memcpy(ram(f, IN), x25519_p_be, 32);
    assert_int_equal(x25519_run(f, out), HPRE_ET_OPERAND);
    memset(ram(f, IN), 0xff, 32);
    assert_int_equal(x25519_run(f, out), HPRE_ET_OPERAND);
    /* small-order u: 0 and 1 give an all-zero result */
    x25519_put_u(f, zero);
    assert_int_equal(x25519_run(f, out), HPRE_ET_POINT);
    x25519_put_u(f, one);
    assert_int_equal(x25519_run(f, out), HPRE_ET_POINT);
    /* another p or a */
    x25519_put_u(f, nine);
    ram(f, KEY)[31] = 0xeb;
    assert_int_equal(x25519_run(f, out), HPRE_ET_CURVE);
    x25519_put_key(f, k);
    ram(f, KEY)[63] = 0x42;
    assert_int_equal(x25519_run(f, out), HPRE_ET_CURVE);
    x25519_put_key(f, k);
    /* other lengths, the wrong queue type */
    assert_int_equal(run(f, HPRE_ALG_CURVE25519_MUL, 48, HPRE_QTYPE_ECC), HPRE_ET_BAD_LEN);
    assert_int_equal(run(f, HPRE_ALG_CURVE25519_MUL, 8, HPRE_QTYPE_ECC), HPRE_ET_BAD_LEN);
    assert_int_equal(run(f, HPRE_ALG_CURVE25519_MUL, 32, HPRE_QTYPE_V2), HPRE_ET_BAD_ALG);
    assert_int_equal(x25519_run(f, out), HPRE_ET_OK);
}

/* ---- malformed SQEs, DMA faults, cancellation --------------------------- */

static void unknown_algs_and_queue_types_are_bad_algs(void **state)
{
    struct fx *f = *state;
    static const unsigned algs[] = { HPRE_ALG_KG_STD, HPRE_ALG_KG_CRT, 0x6, 0x7, 0xc, 0xe, 0x11, 0x1f };

    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        assert_int_equal(run(f, algs[i], 128, HPRE_QTYPE_V2), HPRE_ET_BAD_ALG);
        assert_int_equal(run(f, algs[i], 32, HPRE_QTYPE_ECC), HPRE_ET_BAD_ALG);
    }
    assert_int_equal(run(f, HPRE_ALG_NC_NCRT, 128, 2), HPRE_ET_BAD_ALG);
    assert_int_equal(run(f, HPRE_ALG_ECC_MUL, 32, 7), HPRE_ET_BAD_ALG);
    assert_int_equal(run(f, HPRE_ALG_NC_NCRT, 128, ~0u), HPRE_ET_BAD_ALG);
}

static void prepare_rsa_1024(struct fx *f, struct rsa_key *k)
{
    rsa_key_gen(k, 1024);
    rsa_put_pub(f, k);
    memset(ram(f, IN), 0, 128);
    ram(f, IN)[127] = 7;
}

static void unmapped_or_partly_mapped_buffers_are_dma_faults(void **state)
{
    struct fx *f = *state;
    struct rsa_key k;
    uint32_t sqe[HPRE_SQE_DWORDS];
    struct iommu_stats st;
    uint64_t tail = RAM_IOVA + RAM_SIZE - 200; /* 200 mapped bytes, then nothing */

    prepare_rsa_1024(f, &k);
    sqe_make(sqe, HPRE_ALG_NC_NCRT, 128, UNMAPPED, IN, OUT);
    assert_int_equal(run_sqe(f, sqe, HPRE_QTYPE_V2), HPRE_ET_DMA_FAULT);
    sqe_make(sqe, HPRE_ALG_NC_NCRT, 128, KEY, UNMAPPED, OUT);
    assert_int_equal(run_sqe(f, sqe, HPRE_QTYPE_V2), HPRE_ET_DMA_FAULT);
    sqe_make(sqe, HPRE_ALG_NC_NCRT, 128, KEY, IN, UNMAPPED);
    assert_int_equal(run_sqe(f, sqe, HPRE_QTYPE_V2), HPRE_ET_DMA_FAULT);
    /* the key block runs off the end of the mapping (256 bytes, 200 mapped) */
    memcpy(ram(f, tail), ram(f, KEY), 200);
    sqe_make(sqe, HPRE_ALG_NC_NCRT, 128, tail, IN, OUT);
    assert_int_equal(run_sqe(f, sqe, HPRE_QTYPE_V2), HPRE_ET_DMA_FAULT);
    assert_string_equal(hpre_engine_last_error(f->e), "DMA fault reading the key block");
    /* CRT: 320-byte key block, 300 mapped */
    rsa_put_crt(f, &k);
    memcpy(ram(f, RAM_IOVA + RAM_SIZE - 300), ram(f, KEY), 300);
    sqe_make(sqe, HPRE_ALG_NC_CRT, 128, RAM_IOVA + RAM_SIZE - 300, IN, OUT);
    assert_int_equal(run_sqe(f, sqe, HPRE_QTYPE_V2), HPRE_ET_DMA_FAULT);
    /* the result into a read-only page, and into a partly mapped one */
    rsa_put_pub(f, &k);
    sqe_make(sqe, HPRE_ALG_NC_NCRT, 128, KEY, IN, RO_IOVA);
    assert_int_equal(run_sqe(f, sqe, HPRE_QTYPE_V2), HPRE_ET_DMA_FAULT);
    for (unsigned i = 0; i < 128; i++)
        assert_int_equal(f->ro[i], 0);
    sqe_make(sqe, HPRE_ALG_NC_NCRT, 128, KEY, IN, RAM_IOVA + RAM_SIZE - 64);
    assert_int_equal(run_sqe(f, sqe, HPRE_QTYPE_V2), HPRE_ET_DMA_FAULT);
    assert_string_equal(hpre_engine_last_error(f->e), "DMA fault writing the result");
    /* ECC: the operand's y half unmapped */
    sqe_make(sqe, HPRE_ALG_ECC_MUL, 32, KEY, RAM_IOVA + RAM_SIZE - 40, OUT);
    assert_int_equal(run_sqe(f, sqe, HPRE_QTYPE_ECC), HPRE_ET_DMA_FAULT);
    /* an address whose end wraps */
    sqe_make(sqe, HPRE_ALG_NC_NCRT, 128, ~UINT64_C(0) - 10, IN, OUT);
    assert_int_equal(run_sqe(f, sqe, HPRE_QTYPE_V2), HPRE_ET_DMA_FAULT);
    iommu_stats_get(f->d, &st);
    assert_true(st.read_faults >= 5);
    assert_true(st.write_faults + st.perm_faults >= 2);
    /* and a good job still runs afterwards */
    sqe_make(sqe, HPRE_ALG_NC_NCRT, 128, KEY, IN, OUT);
    assert_int_equal(run_sqe(f, sqe, HPRE_QTYPE_V2), HPRE_ET_OK);
    rsa_key_free(&k);
}

struct gov {
    struct iommu_domain *d;
    int cancel_at_ask; /* cancelled() is true from this call on (1-based); 0 never */
    int asks;
    int write_rc;      /* non-zero: write returns it without writing */
    int writes;
};

static bool gov_cancelled(void *opaque)
{
    struct gov *g = opaque;

    g->asks++;
    return g->cancel_at_ask && g->asks >= g->cancel_at_ask;
}

static int gov_write(void *opaque, uint64_t iova, const void *buf, uint64_t len)
{
    struct gov *g = opaque;

    g->writes++;
    if (g->write_rc)
        return g->write_rc;
    return iommu_dma_write(g->d, iova, buf, len);
}

static const struct hpre_job_ops gov_ops = { .write = gov_write, .cancelled = gov_cancelled };

static void cancelled_jobs_leave_the_sqe_and_the_output_untouched(void **state)
{
    struct fx *f = *state;
    struct rsa_key k;
    uint32_t sqe[HPRE_SQE_DWORDS], before[HPRE_SQE_DWORDS];
    struct hpre_engine_stats st;
    struct gov g = { .d = f->d };
    uint8_t expect[128];

    prepare_rsa_1024(f, &k);
    memset(ram(f, OUT), 0xa5, 128);
    sqe_make(sqe, HPRE_ALG_NC_NCRT, 128, KEY, IN, OUT);
    memcpy(before, sqe, sizeof(sqe));

    /* cancelled before the first read */
    g.cancel_at_ask = 1;
    assert_int_equal(hpre_engine_run(f->e, f->d, sqe, HPRE_QTYPE_V2, &gov_ops, &g), -ECANCELED);
    assert_memory_equal(sqe, before, sizeof(sqe));
    assert_int_equal(g.writes, 0);
    /* cancelled after the computation, before the write */
    g.asks = 0;
    g.cancel_at_ask = 2;
    assert_int_equal(hpre_engine_run(f->e, f->d, sqe, HPRE_QTYPE_V2, &gov_ops, &g), -ECANCELED);
    assert_memory_equal(sqe, before, sizeof(sqe));
    assert_int_equal(g.writes, 0);
    /* the write itself refused */
    g.asks = 0;
    g.cancel_at_ask = 0;
    g.write_rc = -ECANCELED;
    assert_int_equal(hpre_engine_run(f->e, f->d, sqe, HPRE_QTYPE_V2, &gov_ops, &g), -ECANCELED);
    assert_memory_equal(sqe, before, sizeof(sqe));
    assert_int_equal(g.writes, 1);
    for (unsigned i = 0; i < 128; i++)
        assert_int_equal(ram(f, OUT)[i], 0xa5);
    /* a write failing otherwise is a DMA fault */
    g.write_rc = -EFAULT;
    assert_int_equal(hpre_engine_run(f->e, f->d, sqe, HPRE_QTYPE_V2, &gov_ops, &g), 0);
    assert_int_equal((sqe[0] & HPRE_DW0_ETYPE_MASK) >> HPRE_DW0_ETYPE_SHIFT, HPRE_ET_DMA_FAULT);
    /* the rerun completes: (7^e mod n) through the governor */
    memcpy(sqe, before, sizeof(sqe));
    g.write_rc = 0;
    assert_int_equal(hpre_engine_run(f->e, f->d, sqe, HPRE_QTYPE_V2, &gov_ops, &g), 0);
    assert_int_equal((sqe[0] & HPRE_DW0_ETYPE_MASK) >> HPRE_DW0_ETYPE_SHIFT, HPRE_ET_OK);
    assert_int_equal(sqe[0] >> HPRE_DW0_DONE_SHIFT, HPRE_DONE_TASK_DONE);
    evp_raw(k.pkey, true, ram(f, IN), expect, 128);
    assert_memory_equal(ram(f, OUT), expect, 128);

    hpre_engine_stats_get(f->e, &st);
    assert_int_equal(st.cancelled, 3);
    assert_int_equal(st.jobs, 2);
    assert_int_equal(st.errors, 1);
    rsa_key_free(&k);
}

/* A result held for the commit: recorded with a copy of its bytes as they
 * are when the job returns (the engine keeps them until its next job). */
struct held {
    struct iommu_domain *d;
    int now, held;
    uint64_t iova, len;
    const void *buf;
};

static int held_write(void *opaque, uint64_t iova, const void *buf, uint64_t len)
{
    struct held *h = opaque;

    h->now++;
    return iommu_dma_write(h->d, iova, buf, len);
}

static int held_write_at_commit(void *opaque, uint64_t iova, const void *buf, uint64_t len)
{
    struct held *h = opaque;

    h->held++;
    h->iova = iova;
    h->len = len;
    h->buf = buf;
    return 0;
}

static bool held_cancelled(void *opaque)
{
    (void)opaque;
    return false;
}

static const struct hpre_job_ops held_ops = {
    .write = held_write, .cancelled = held_cancelled, .write_at_commit = held_write_at_commit};

/* A result that lands on its own operand (in place) is held for the
 * commit, the operand intact until then; one written elsewhere goes out at
 * once. Either way the bytes are libcrypto's. */
static void a_result_over_its_operand_is_held_for_the_commit(void **state)
{
    struct fx *f = *state;
    struct rsa_key k;
    uint32_t sqe[HPRE_SQE_DWORDS];
    struct held h = { .d = f->d };
    uint8_t operand[128], expect[128];

    prepare_rsa_1024(f, &k);
    memcpy(operand, ram(f, IN), sizeof(operand));
    evp_raw(k.pkey, true, operand, expect, 128);

    sqe_make(sqe, HPRE_ALG_NC_NCRT, 128, KEY, IN, OUT);
    assert_int_equal(hpre_engine_run(f->e, f->d, sqe, HPRE_QTYPE_V2, &held_ops, &h), 0);
    assert_int_equal((sqe[0] & HPRE_DW0_ETYPE_MASK) >> HPRE_DW0_ETYPE_SHIFT, HPRE_ET_OK);
    assert_int_equal(h.now, 1);
    assert_int_equal(h.held, 0);
    assert_memory_equal(ram(f, OUT), expect, 128);

    h = (struct held){ .d = f->d };
    sqe_make(sqe, HPRE_ALG_NC_NCRT, 128, KEY, IN, IN);
    assert_int_equal(hpre_engine_run(f->e, f->d, sqe, HPRE_QTYPE_V2, &held_ops, &h), 0);
    assert_int_equal((sqe[0] & HPRE_DW0_ETYPE_MASK) >> HPRE_DW0_ETYPE_SHIFT, HPRE_ET_OK);
    assert_int_equal(h.now, 0);
    assert_int_equal(h.held, 1);
    assert_memory_equal(ram(f, IN), operand, 128);
    assert_int_equal(h.iova, IN);
    assert_int_equal(h.len, 128);
    assert_int_equal(iommu_dma_write(f->d, h.iova, h.buf, h.len), 0); /* the commit */
    assert_memory_equal(ram(f, IN), expect, 128);
    rsa_key_free(&k);
}

static void a_stale_etype_is_cleared_and_other_dw0_bits_are_kept(void **state)
{
    struct fx *f = *state;
    struct rsa_key k;
    uint32_t sqe[HPRE_SQE_DWORDS];

    prepare_rsa_1024(f, &k);
    sqe_make(sqe, HPRE_ALG_NC_NCRT, 128, KEY, IN, OUT);
    sqe[0] |= HPRE_DW0_ETYPE_MASK | 0x00ab0000u; /* garbage etype, bits 16-23 */
    assert_int_equal(run_sqe(f, sqe, HPRE_QTYPE_V2), HPRE_ET_OK);
    assert_int_equal(sqe[0] & 0x00ff0000u, 0x00ab0000u);
    rsa_key_free(&k);
}

static void null_arguments_are_einval_and_touch_nothing(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[HPRE_SQE_DWORDS], before[HPRE_SQE_DWORDS];
    static const struct hpre_job_ops no_write = { .cancelled = gov_cancelled };

    sqe_make(sqe, HPRE_ALG_NC_NCRT, 128, KEY, IN, OUT);
    memcpy(before, sqe, sizeof(sqe));
    assert_int_equal(hpre_engine_run(NULL, f->d, sqe, 0, NULL, NULL), -EINVAL);
    assert_int_equal(hpre_engine_run(f->e, NULL, sqe, 0, NULL, NULL), -EINVAL);
    assert_int_equal(hpre_engine_run(f->e, f->d, NULL, 0, NULL, NULL), -EINVAL);
    assert_int_equal(hpre_engine_run(f->e, f->d, sqe, 0, &no_write, NULL), -EINVAL);
    assert_memory_equal(sqe, before, sizeof(sqe));
    hpre_engine_destroy(NULL);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(rsa_1024_public_private_and_crt_agree_with_libcrypto),
        T(rsa_2048_public_private_and_crt_agree_with_libcrypto),
        T(rsa_operand_not_below_n_or_even_modulus_is_an_operand_error),
        T(rsa_key_sizes_outside_512_to_4096_bits_are_bad_lengths),
        T(alternating_rsa_keys_each_get_their_own_modulus),
        T(degenerate_but_valid_operands_compute_what_arithmetic_says),
        T(dh_ffdhe2048_public_and_shared_agree_with_evp_derive),
        T(dh_ffdhe3072_public_and_shared_agree_with_evp_derive),
        T(dh_sizes_other_than_the_drivers_groups_are_bad_lengths),
        T(ecdh_on_every_curve_agrees_with_evp_and_refuses_bad_points),
        T(ecc_key_sizes_other_than_32_48_72_are_bad_lengths),
        T(x25519_matches_the_rfc7748_vectors),
        T(x25519_random_keys_agree_with_libcrypto),
        T(x25519_malformed_operands_are_refused),
        T(unknown_algs_and_queue_types_are_bad_algs),
        T(unmapped_or_partly_mapped_buffers_are_dma_faults),
        T(cancelled_jobs_leave_the_sqe_and_the_output_untouched),
        T(a_result_over_its_operand_is_held_for_the_commit),
        T(a_stale_etype_is_cleared_and_other_dw0_bits_are_kept),
        T(null_arguments_are_einval_and_touch_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
