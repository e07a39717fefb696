/* Tests of src/sec: the SEC engine against libcrypto called here
 * independently (the EVP one-shot interfaces, and libcrypto's own XTS), with
 * BDs filled the way the Linux hisi_sec2 driver fills type-3 BDs
 * (sec_skcipher_bd_fill_v3, sec_auth_bd_fill_ex_v3, sec_auth_bd_fill_xcm_v3).
 * "Guest RAM" is host memory mapped into a test IOMMU domain. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "common/common.h"
#include "iommu/iommu.h"
#include "sec/sec.h"
#include "zip/zip_hw.h"

#define KIB (UINT64_C(1) << 10)
#define MIB (UINT64_C(1) << 20)
#define RAM_IOVA UINT64_C(0x10000000)
#define RAM_SIZE (8 * MIB)
#define SRC (RAM_IOVA)                 /* 2 MiB */
#define DST (RAM_IOVA + 2 * MIB)       /* 2 MiB */
#define KEYS (RAM_IOVA + 4 * MIB)      /* cipher key */
#define AKEY (KEYS + 0x100)            /* auth key */
#define CIV (KEYS + 0x200)             /* cipher IV */
#define AIV (KEYS + 0x300)
#define MAC (KEYS + 0x400)
#define SGLS (RAM_IOVA + 5 * MIB)      /* SGLs */
#define AREA (RAM_IOVA + 6 * MIB)      /* scattered data, 2 MiB */
#define UNMAPPED UINT64_C(0x7000000000)

struct fx {
    struct iommu_domain *d;
    struct sec_engine *e;
    uint8_t *ram;
};

static uint8_t *ram(struct fx *f, uint64_t iova)
{
    return f->ram + (iova - RAM_IOVA);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    assert_int_equal(iommu_domain_create(0x0310, &f->d), 0);
    assert_int_equal(sec_engine_create(&f->e), 0);
    f->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(f->ram != MAP_FAILED);
    assert_int_equal(iommu_map_host(f->d, RAM_IOVA, RAM_SIZE, f->ram, IOMMU_READ | IOMMU_WRITE), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    iommu_unmap(f->d, RAM_IOVA, RAM_SIZE);
    munmap(f->ram, RAM_SIZE);
    sec_engine_destroy(f->e);
    iommu_domain_destroy(f->d);
    free(f);
    return 0;
}

static void rnd(uint8_t *p, size_t n)
{
    assert_int_equal(RAND_bytes(p, (int)n), 1);
}

static void put64(uint32_t *bd, unsigned lo, uint64_t v)
{
    bd[lo] = (uint32_t)v;
    bd[lo + 1] = (uint32_t)(v >> 32);
}

/* A skcipher BD as sec_skcipher_bd_fill_v3 makes it. */
static void bd_cipher(uint32_t *bd, unsigned calg, unsigned cmode, unsigned key_code, bool enc,
                      uint64_t src, uint64_t dst, unsigned addr_type, uint32_t len)
{
    memset(bd, 0, SEC_SQE_SIZE);
    put64(bd, SEC_DW_CKEY_L, KEYS);
    put64(bd, SEC_DW_CIV_L, CIV);
    put64(bd, SEC_DW_SRC_L, src);
    put64(bd, SEC_DW_DST_L, dst);
    bd[SEC_DW_CIPHER] = (enc ? SEC_DIR_ENC : SEC_DIR_DEC) | key_code << SEC_CKEY_LEN_SHIFT |
                        cmode << SEC_CMODE_SHIFT | calg << SEC_CALG_SHIFT;
    bd[SEC_DW_AUTH] = 2u << 25; /* 128-bit counter rollover */
    bd[SEC_DW_BD_PARAM] = SEC_BD_TYPE3 | addr_type << SEC_BD_SRC_TYPE_SHIFT |
                          addr_type << SEC_BD_DST_TYPE_SHIFT | (src != dst ? 1u : 0u) << SEC_BD_DE_SHIFT;
    bd[SEC_DW_CIPHER_LEN] = len;
    put64(bd, SEC_DW_TAG_L, UINT64_C(0xfeedface12345678));
}

/* The authenc fields of sec_auth_bd_fill_ex_v3. */
static void bd_authenc(uint32_t *bd, unsigned aalg, unsigned mac_len, unsigned akey_len, bool enc,
                       uint32_t assoclen, uint32_t c_len)
{
    put64(bd, SEC_DW_AKEY_L, AKEY);
    bd[SEC_DW_AUTH] |= (mac_len / 4) << SEC_MAC_LEN_SHIFT | (akey_len / 4) << SEC_AKEY_LEN_SHIFT |
                       aalg << SEC_AALG_SHIFT | (enc ? SEC_AUTH_MAC : SEC_AUTH_VERIFY);
    if (!enc)
        bd[SEC_DW_CIPHER] |= SEC_SEQ_AUTH_FIRST;
    bd[SEC_DW_AUTH_LEN] = c_len + assoclen;
    bd[SEC_DW_OFFSETS] = assoclen << 16;
    put64(bd, SEC_DW_MAC_L, MAC);
}

/* The CCM/GCM fields of sec_auth_bd_fill_xcm_v3. */
static void bd_xcm(uint32_t *bd, unsigned authsize, bool enc, uint32_t assoclen)
{
    bd[SEC_DW_CIPHER] |= authsize << SEC_ICV_LEN_SHIFT;
    put64(bd, SEC_DW_AKEY_L, KEYS);
    put64(bd, SEC_DW_AIV_L, AIV);
    if (!enc)
        bd[SEC_DW_CIPHER] |= SEC_SEQ_AUTH_FIRST;
    bd[SEC_DW_AUTH_LEN] = assoclen;
    bd[SEC_DW_OFFSETS] = assoclen << 16;
    put64(bd, SEC_DW_MAC_L, MAC);
}

static void run_ok(struct fx *f, uint32_t *bd, unsigned flag)
{
    assert_int_equal(sec_engine_run(f->e, f->d, bd, 0, NULL, NULL), 0);
    if (!sec_bd_ok(bd))
        print_error("engine: %s\n", sec_engine_last_error(f->e));
    assert_true(sec_bd_done(bd));
    assert_int_equal(sec_bd_error(bd), 0);
    assert_int_equal(sec_bd_icv(bd), 0);
    assert_int_equal(sec_bd_flag(bd), flag);
}

static void run_err(struct fx *f, uint32_t *bd, unsigned err)
{
    uint32_t before[SEC_SQE_DWORDS];

    memcpy(before, bd, SEC_SQE_SIZE);
    assert_int_equal(sec_engine_run(f->e, f->d, bd, 0, NULL, NULL), 0);
    assert_true(sec_bd_done(bd));
    assert_int_equal(sec_bd_error(bd), err);
    assert_string_not_equal(sec_engine_last_error(f->e), "");
    /* Only dw28 changed. */
    for (unsigned i = 0; i < SEC_SQE_DWORDS; i++)
        if (i != SEC_DW_DONE)
            assert_int_equal(bd[i], before[i]);
}

/* libcrypto's one-shot answer for a non-XTS cipher. */
static void ref_cipher(const EVP_CIPHER *c, bool enc, const uint8_t *key, const uint8_t *iv,
                       const uint8_t *in, uint8_t *out, int len)
{
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int n = 0, m = 0;

    assert_non_null(x);
    assert_int_equal(EVP_CipherInit_ex(x, c, NULL, key, iv, enc), 1);
    EVP_CIPHER_CTX_set_padding(x, 0);
    assert_int_equal(EVP_CipherUpdate(x, out, &n, in, len), 1);
    assert_int_equal(EVP_CipherFinal_ex(x, out + n, &m), 1);
    assert_int_equal(n + m, len);
    EVP_CIPHER_CTX_free(x);
}

struct cipher_case {
    const char *name;
    unsigned calg, cmode, code, keylen, ivlen;
    uint32_t len;
    const EVP_CIPHER *(*evp)(void);
};

static const struct cipher_case cipher_cases[] = {
    {"ecb(aes)-128", SEC_ALG_AES, SEC_MODE_ECB, 0, 16, 0, 4096, EVP_aes_128_ecb},
    {"ecb(aes)-192", SEC_ALG_AES, SEC_MODE_ECB, 1, 24, 0, 64, EVP_aes_192_ecb},
    {"ecb(aes)-256", SEC_ALG_AES, SEC_MODE_ECB, 2, 32, 0, 160, EVP_aes_256_ecb},
    {"cbc(aes)-128", SEC_ALG_AES, SEC_MODE_CBC, 0, 16, 16, 1024, EVP_aes_128_cbc},
    {"cbc(aes)-256", SEC_ALG_AES, SEC_MODE_CBC, 2, 32, 16, 200 * 1024, EVP_aes_256_cbc},
    {"ctr(aes)-128", SEC_ALG_AES, SEC_MODE_CTR, 0, 16, 16, 1000, EVP_aes_128_ctr},
    {"ctr(aes)-192", SEC_ALG_AES, SEC_MODE_CTR, 1, 24, 16, 70001, EVP_aes_192_ctr},
    {"ofb(aes)-256", SEC_ALG_AES, SEC_MODE_OFB, 2, 32, 16, 333, EVP_aes_256_ofb},
    {"cfb(aes)-128", SEC_ALG_AES, SEC_MODE_CFB, 0, 16, 16, 77, EVP_aes_128_cfb128},
    {"xts(aes)-128", SEC_ALG_AES, SEC_MODE_XTS, 0, 32, 16, 4096, EVP_aes_128_xts},
    {"xts(aes)-128 stealing", SEC_ALG_AES, SEC_MODE_XTS, 0, 32, 16, 4096 + 5, EVP_aes_128_xts},
    {"xts(aes)-256 stealing", SEC_ALG_AES, SEC_MODE_XTS, 2, 64, 16, 17, EVP_aes_256_xts},
    {"xts(aes)-256 long", SEC_ALG_AES, SEC_MODE_XTS, 2, 64, 16, 150 * 1024, EVP_aes_256_xts},
    {"ecb(sm4)", SEC_ALG_SM4, SEC_MODE_ECB, 0, 16, 0, 512, EVP_sm4_ecb},
    {"cbc(sm4)", SEC_ALG_SM4, SEC_MODE_CBC, 0, 16, 16, 512, EVP_sm4_cbc},
    {"ctr(sm4)", SEC_ALG_SM4, SEC_MODE_CTR, 0, 16, 16, 99, EVP_sm4_ctr},
    {"ofb(sm4)", SEC_ALG_SM4, SEC_MODE_OFB, 0, 16, 16, 48, EVP_sm4_ofb},
    {"cfb(sm4)", SEC_ALG_SM4, SEC_MODE_CFB, 0, 16, 16, 50, EVP_sm4_cfb128},
    {"ecb(des3_ede)", SEC_ALG_3DES, SEC_MODE_ECB, 1, 24, 0, 256, EVP_des_ede3_ecb},
    {"cbc(des3_ede)", SEC_ALG_3DES, SEC_MODE_CBC, 1, 24, 8, 1024, EVP_des_ede3_cbc},
    {"cbc(des3_ede) two keys", SEC_ALG_3DES, SEC_MODE_CBC, 3, 16, 8, 64, EVP_des_ede_cbc},
};

/* Each cipher, both directions, flat out of place, against libcrypto. */
static void test_every_cipher_matches_libcrypto_in_both_directions(void **state)
{
    struct fx *f = *state;
    static uint8_t in[256 * 1024], want[256 * 1024];

    for (size_t i = 0; i < AM_ARRAY_SIZE(cipher_cases); i++) {
        const struct cipher_case *c = &cipher_cases[i];
        uint8_t key[64], iv[16];
        uint32_t bd[SEC_SQE_DWORDS];

        print_message("  %s, %u bytes\n", c->name, c->len);
        rnd(key, sizeof(key));
        rnd(iv, sizeof(iv));
        rnd(in, c->len);
        memcpy(ram(f, KEYS), key, c->keylen);
        memcpy(ram(f, CIV), iv, c->ivlen);
        for (int enc = 1; enc >= 0; enc--) {
            ref_cipher(c->evp(), enc, key, c->ivlen ? iv : NULL, in, want, (int)c->len);
            memcpy(ram(f, SRC), in, c->len);
            memset(ram(f, DST), 0xa5, c->len + 16);
            bd_cipher(bd, c->calg, c->cmode, c->code, enc, SRC, DST, SEC_ADDR_PBUF, c->len);
            run_ok(f, bd, SEC_FLAG_CIPHER);
            assert_memory_equal(ram(f, DST), want, c->len);
            assert_int_equal(ram(f, DST)[c->len], 0xa5); /* nothing past the payload */
            assert_memory_equal(ram(f, SRC), in, c->len); /* source untouched */
        }
    }
}

/* The kernel accepts XTS keys with equal halves outside FIPS (libcrypto
 * refuses them): the engine encrypts and decrypts them back. */
static void test_xts_with_equal_key_halves_round_trips(void **state)
{
    struct fx *f = *state;
    uint8_t in[100], out[100];
    uint32_t bd[SEC_SQE_DWORDS];

    memset(ram(f, KEYS), 0, 32);
    memset(ram(f, CIV), 0, 16);
    rnd(in, sizeof(in));
    memcpy(ram(f, SRC), in, sizeof(in));
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_XTS, 0, true, SRC, DST, SEC_ADDR_PBUF, sizeof(in));
    run_ok(f, bd, SEC_FLAG_CIPHER);
    memcpy(out, ram(f, DST), sizeof(out));
    assert_memory_not_equal(out, in, sizeof(in));
    memcpy(ram(f, SRC), out, sizeof(out));
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_XTS, 0, false, SRC, DST, SEC_ADDR_PBUF, sizeof(in));
    run_ok(f, bd, SEC_FLAG_CIPHER);
    assert_memory_equal(ram(f, DST), in, sizeof(in));
}

/* An SGL chain of n_sgl SGLs with ents entries each, the data cut in
 * pieces of piece bytes placed apart in AREA. Returns the chain's address. */
static uint64_t build_sgl(struct fx *f, uint64_t sgl_base, uint64_t area, const uint8_t *data,
                          uint32_t len, uint32_t piece, unsigned ents_per_sgl)
{
    uint32_t off = 0;
    uint64_t sgl = sgl_base;

    for (;;) {
        struct zip_sgl_hdr *h = (struct zip_sgl_hdr *)ram(f, sgl);
        struct zip_sgl_entry *ent = (struct zip_sgl_entry *)(h + 1);
        unsigned n = 0;

        memset(h, 0, sizeof(*h) + ents_per_sgl * sizeof(*ent));
        h->entry_length_in_sgl = (uint16_t)ents_per_sgl;
        while (n < ents_per_sgl && off < len) {
            uint32_t k = len - off < piece ? len - off : piece;

            ent[n].buf = area;
            ent[n].len = k;
            if (data)
                memcpy(ram(f, area), data + off, k);
            area += k + 64; /* gaps between pieces */
            off += k;
            n++;
        }
        h->entry_sum_in_sgl = (uint16_t)n;
        if (off >= len)
            break;
        h->next_dma = sgl + sizeof(*h) + ents_per_sgl * sizeof(*ent);
        sgl = h->next_dma;
    }
    return sgl_base;
}

static void read_sgl(struct fx *f, uint64_t area, uint8_t *out, uint32_t len, uint32_t piece)
{
    for (uint32_t off = 0; off < len;) {
        uint32_t k = len - off < piece ? len - off : piece;

        memcpy(out + off, ram(f, area), k);
        area += k + 64;
        off += k;
    }
}

/* SGL source and destination (what the driver uses without an IOMMU). */
static void test_sgl_chains_in_and_out_match_libcrypto(void **state)
{
    struct fx *f = *state;
    static uint8_t in[20000], want[20000], got[20000];
    uint8_t key[32], iv[16];
    uint32_t bd[SEC_SQE_DWORDS];
    const uint32_t len = sizeof(in);
    uint64_t s, d;

    rnd(key, sizeof(key));
    rnd(iv, sizeof(iv));
    rnd(in, len);
    memcpy(ram(f, KEYS), key, 32);
    memcpy(ram(f, CIV), iv, 16);
    ref_cipher(EVP_aes_256_cbc(), 1, key, iv, in, want, (int)len);
    s = build_sgl(f, SGLS, AREA, in, len, 1000, 7);
    d = build_sgl(f, SGLS + 256 * KIB, AREA + MIB, NULL, len, 333, 13);
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 2, true, s, d, SEC_ADDR_SGL, len);
    run_ok(f, bd, SEC_FLAG_CIPHER);
    read_sgl(f, AREA + MIB, got, len, 333);
    assert_memory_equal(got, want, len);
}

/* In place (de = 0: the destination is the source). */
static void test_in_place_ciphering_overwrites_the_source(void **state)
{
    struct fx *f = *state;
    uint8_t key[16], iv[16], in[512], want[512];
    uint32_t bd[SEC_SQE_DWORDS];

    rnd(key, 16);
    rnd(iv, 16);
    rnd(in, sizeof(in));
    memcpy(ram(f, KEYS), key, 16);
    memcpy(ram(f, CIV), iv, 16);
    memcpy(ram(f, SRC), in, sizeof(in));
    ref_cipher(EVP_aes_128_ctr(), 1, key, iv, in, want, sizeof(in));
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CTR, 0, true, SRC, SRC, SEC_ADDR_PBUF, sizeof(in));
    run_ok(f, bd, SEC_FLAG_CIPHER);
    assert_memory_equal(ram(f, SRC), want, sizeof(in));
}

struct authenc_case {
    unsigned aalg, digest, authsize, akeylen;
    const EVP_MD *(*md)(void);
};

static const struct authenc_case authenc_cases[] = {
    {SEC_AALG_HMAC_SHA1, 20, 20, 20, EVP_sha1},
    {SEC_AALG_HMAC_SHA256, 32, 32, 32, EVP_sha256},
    {SEC_AALG_HMAC_SHA256, 32, 16, 64, EVP_sha256}, /* truncated MAC, key of a whole block */
    {SEC_AALG_HMAC_SHA512, 64, 64, 128, EVP_sha512},
};

/* authenc(hmac(shaN),cbc(aes)): encryption gives CBC ciphertext after the
 * AAD and HMAC(AAD || ciphertext); decryption verifies, then deciphers; a
 * wrong MAC is the driver's auth failure (icv 2) and writes nothing. */
static void test_authenc_encrypts_macs_verifies_and_refuses_a_bad_mac(void **state)
{
    struct fx *f = *state;

    for (size_t i = 0; i < AM_ARRAY_SIZE(authenc_cases); i++) {
        const struct authenc_case *c = &authenc_cases[i];
        const uint32_t alen = 20, clen = 160;
        uint8_t key[32], akey[128], iv[16], aad[20], pt[160], ct[160], mac[64], img[180];
        unsigned maclen = 0;
        uint32_t bd[SEC_SQE_DWORDS];

        rnd(key, 32);
        rnd(akey, sizeof(akey));
        rnd(iv, 16);
        rnd(aad, alen);
        rnd(pt, clen);
        ref_cipher(EVP_aes_256_cbc(), 1, key, iv, pt, ct, (int)clen);
        memcpy(img, aad, alen);
        memcpy(img + alen, ct, clen);
        assert_non_null(HMAC(c->md(), akey, (int)c->akeylen, img, alen + clen, mac, &maclen));
        assert_int_equal(maclen, c->digest);

        memcpy(ram(f, KEYS), key, 32);
        memcpy(ram(f, AKEY), akey, c->akeylen);
        memcpy(ram(f, CIV), iv, 16);
        memcpy(ram(f, SRC), aad, alen);
        memcpy(ram(f, SRC) + alen, pt, clen);
        memset(ram(f, MAC), 0, 64);
        bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 2, true, SRC, DST, SEC_ADDR_PBUF, clen);
        bd_authenc(bd, c->aalg, c->authsize, c->akeylen, true, alen, clen);
        run_ok(f, bd, SEC_FLAG_AEAD);
        assert_memory_equal(ram(f, DST), aad, alen);
        assert_memory_equal(ram(f, DST) + alen, ct, clen);
        assert_memory_equal(ram(f, MAC), mac, c->authsize);

        /* Decrypt: AAD || ciphertext, the MAC at mac_addr. */
        memcpy(ram(f, SRC), img, alen + clen);
        memset(ram(f, DST), 0, alen + clen);
        bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 2, false, SRC, DST, SEC_ADDR_PBUF, clen);
        bd_authenc(bd, c->aalg, c->authsize, c->akeylen, false, alen, clen);
        run_ok(f, bd, SEC_FLAG_AEAD);
        assert_memory_equal(ram(f, DST) + alen, pt, clen);

        /* One bit off in the MAC. */
        ram(f, MAC)[c->authsize - 1] ^= 1;
        memset(ram(f, DST), 0x5a, alen + clen);
        assert_int_equal(sec_engine_run(f->e, f->d, bd, 0, NULL, NULL), 0);
        assert_true(sec_bd_done(bd));
        assert_int_equal(sec_bd_error(bd), 0);
        assert_int_equal(sec_bd_icv(bd), SEC_ICV_ERR);
        assert_int_equal(sec_bd_flag(bd), SEC_FLAG_AEAD);
        assert_false(sec_bd_ok(bd));
        for (uint32_t k = 0; k < alen + clen; k++)
            assert_int_equal(ram(f, DST)[k], 0x5a);
    }
}

/* HMAC alone (cipher 0): the MAC of [auth_src_offset, + auth_len). */
static void test_hmac_without_a_cipher_writes_the_mac(void **state)
{
    struct fx *f = *state;
    uint8_t akey[64], data[1000], mac[64];
    unsigned maclen = 0;
    uint32_t bd[SEC_SQE_DWORDS];

    rnd(akey, sizeof(akey));
    rnd(data, sizeof(data));
    assert_non_null(HMAC(EVP_sha256(), akey, 40, data + 8, 900, mac, &maclen));
    memcpy(ram(f, AKEY), akey, 40);
    memcpy(ram(f, SRC), data, sizeof(data));
    memset(bd, 0, sizeof(bd));
    bd[SEC_DW_BD_PARAM] = SEC_BD_TYPE3;
    put64(bd, SEC_DW_SRC_L, SRC);
    put64(bd, SEC_DW_AKEY_L, AKEY);
    put64(bd, SEC_DW_MAC_L, MAC);
    bd[SEC_DW_AUTH] = SEC_AUTH_MAC | 8u << SEC_MAC_LEN_SHIFT | 10u << SEC_AKEY_LEN_SHIFT |
                      SEC_AALG_HMAC_SHA256 << SEC_AALG_SHIFT;
    bd[SEC_DW_OFFSETS] = 8;
    bd[SEC_DW_AUTH_LEN] = 900;
    run_ok(f, bd, SEC_FLAG_AEAD);
    assert_memory_equal(ram(f, MAC), mac, 32);
}

/* GCM as the driver sends it: 12-byte IV, AAD before the payload, tag at
 * mac_addr; a wrong tag is an auth failure. */
static void test_gcm_matches_libcrypto_and_refuses_a_bad_tag(void **state)
{
    struct fx *f = *state;
    const unsigned tags[] = {16, 12, 8, 4};

    for (size_t t = 0; t < AM_ARRAY_SIZE(tags); t++) {
        const uint32_t alen = 13, clen = t == 3 ? 0 : 100 + 7 * (uint32_t)t;
        uint8_t key[32], iv[12], aad[13], pt[128], ct[128], tag[16];
        uint32_t bd[SEC_SQE_DWORDS];
        EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
        int n = 0;

        rnd(key, 32);
        rnd(iv, 12);
        rnd(aad, alen);
        rnd(pt, sizeof(pt));
        assert_int_equal(EVP_EncryptInit_ex(x, EVP_aes_256_gcm(), NULL, key, iv), 1);
        assert_int_equal(EVP_EncryptUpdate(x, NULL, &n, aad, (int)alen), 1);
        assert_int_equal(EVP_EncryptUpdate(x, ct, &n, pt, (int)clen), 1);
        assert_int_equal(EVP_EncryptFinal_ex(x, ct + n, &n), 1);
        assert_int_equal(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, (int)tags[t], tag), 1);
        EVP_CIPHER_CTX_free(x);

        memcpy(ram(f, KEYS), key, 32);
        memcpy(ram(f, CIV), iv, 12);
        memcpy(ram(f, AIV), iv, 12);
        memcpy(ram(f, SRC), aad, alen);
        memcpy(ram(f, SRC) + alen, pt, clen);
        bd_cipher(bd, SEC_ALG_AES, SEC_MODE_GCM, 2, true, SRC, DST, SEC_ADDR_PBUF, clen);
        bd_xcm(bd, tags[t], true, alen);
        run_ok(f, bd, SEC_FLAG_AEAD);
        assert_memory_equal(ram(f, DST) + alen, ct, clen);
        assert_memory_equal(ram(f, MAC), tag, tags[t]);

        memcpy(ram(f, SRC) + alen, ct, clen);
        bd_cipher(bd, SEC_ALG_AES, SEC_MODE_GCM, 2, false, SRC, DST, SEC_ADDR_PBUF, clen);
        bd_xcm(bd, tags[t], false, alen);
        memset(ram(f, DST), 0, alen + clen);
        run_ok(f, bd, SEC_FLAG_AEAD);
        assert_memory_equal(ram(f, DST) + alen, pt, clen);

        ram(f, MAC)[0] ^= 0x80;
        assert_int_equal(sec_engine_run(f->e, f->d, bd, 0, NULL, NULL), 0);
        assert_int_equal(sec_bd_icv(bd), SEC_ICV_ERR);
        assert_int_equal(sec_bd_error(bd), 0);
    }
}

/* CCM with the driver's counter block (iv[0] = L - 1, the counter set to
 * 1) and B0 in a_ivin; a wrong tag is an auth failure. */
static void test_ccm_matches_libcrypto_and_refuses_a_bad_tag(void **state)
{
    struct fx *f = *state;
    const unsigned Ls[] = {2, 4, 8};

    for (size_t t = 0; t < AM_ARRAY_SIZE(Ls); t++) {
        const unsigned L = Ls[t], nlen = 15 - L, taglen = t == 0 ? 16 : t == 1 ? 8 : 10;
        const uint32_t alen = t == 2 ? 0 : 24, clen = 64 + 5 * (uint32_t)t;
        uint8_t key[16], iv[16], aad[24], pt[128], ct[128], tag[16];
        uint32_t bd[SEC_SQE_DWORDS];
        EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
        int n = 0;

        rnd(key, 16);
        rnd(iv, 16);
        iv[0] = (uint8_t)(L - 1);
        rnd(aad, sizeof(aad));
        rnd(pt, sizeof(pt));
        assert_int_equal(EVP_EncryptInit_ex(x, EVP_aes_128_ccm(), NULL, NULL, NULL), 1);
        assert_int_equal(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_CCM_SET_IVLEN, (int)nlen, NULL), 1);
        assert_int_equal(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_CCM_SET_TAG, (int)taglen, NULL), 1);
        assert_int_equal(EVP_EncryptInit_ex(x, NULL, NULL, key, iv + 1), 1);
        assert_int_equal(EVP_EncryptUpdate(x, NULL, &n, NULL, (int)clen), 1);
        if (alen)
            assert_int_equal(EVP_EncryptUpdate(x, NULL, &n, aad, (int)alen), 1);
        assert_int_equal(EVP_EncryptUpdate(x, ct, &n, pt, (int)clen), 1);
        assert_int_equal(EVP_EncryptFinal_ex(x, ct + n, &n), 1);
        assert_int_equal(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_CCM_GET_TAG, (int)taglen, tag), 1);
        EVP_CIPHER_CTX_free(x);

        /* The driver's c_ivin: counter bytes zeroed, the last set to 1. */
        memset(iv + 16 - L, 0, L);
        iv[15] = 1;
        memcpy(ram(f, KEYS), key, 16);
        memcpy(ram(f, CIV), iv, 16);
        memcpy(ram(f, SRC), aad, alen);
        memcpy(ram(f, SRC) + alen, pt, clen);
        bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CCM, 0, true, SRC, DST, SEC_ADDR_PBUF, clen);
        bd_xcm(bd, taglen, true, alen);
        run_ok(f, bd, SEC_FLAG_AEAD);
        assert_memory_equal(ram(f, DST) + alen, ct, clen);
        assert_memory_equal(ram(f, MAC), tag, taglen);

        memcpy(ram(f, SRC) + alen, ct, clen);
        bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CCM, 0, false, SRC, DST, SEC_ADDR_PBUF, clen);
        bd_xcm(bd, taglen, false, alen);
        run_ok(f, bd, SEC_FLAG_AEAD);
        assert_memory_equal(ram(f, DST) + alen, pt, clen);

        ram(f, SRC)[alen] ^= 1; /* the ciphertext this time */
        assert_int_equal(sec_engine_run(f->e, f->d, bd, 0, NULL, NULL), 0);
        assert_int_equal(sec_bd_icv(bd), SEC_ICV_ERR);
    }
}

/* ---- malformed BDs ---------------------------------------------------------------- */

static void good_cbc(struct fx *f, uint32_t *bd)
{
    rnd(ram(f, KEYS), 32);
    rnd(ram(f, CIV), 16);
    rnd(ram(f, SRC), 64);
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 0, true, SRC, DST, SEC_ADDR_PBUF, 64);
}

static void test_malformed_bd_fields_are_error_statuses(void **state)
{
    struct fx *f = *state;
    uint32_t bd[SEC_SQE_DWORDS];

    good_cbc(f, bd);
    run_ok(f, bd, SEC_FLAG_CIPHER); /* the base case works */

    good_cbc(f, bd);
    bd[SEC_DW_BD_PARAM] = (bd[SEC_DW_BD_PARAM] & ~SEC_BD_TYPE_MASK) | 2u; /* type 2 */
    run_err(f, bd, SEC_E_BAD_BD);
    good_cbc(f, bd);
    bd[SEC_DW_BD_PARAM] |= SEC_BD_INVALID;
    run_err(f, bd, SEC_E_BAD_BD);
    good_cbc(f, bd);
    bd[SEC_DW_BD_PARAM] |= 1u << SEC_BD_SCENE_SHIFT;
    run_err(f, bd, SEC_E_BAD_BD);
    good_cbc(f, bd);
    bd[SEC_DW_BD_PARAM] |= SEC_ADDR_PRP << SEC_BD_SRC_TYPE_SHIFT;
    run_err(f, bd, SEC_E_BAD_BD);
    good_cbc(f, bd);
    bd[SEC_DW_BD_PARAM] |= 2u << SEC_BD_DE_SHIFT;
    run_err(f, bd, SEC_E_BAD_BD);
    good_cbc(f, bd);
    bd[SEC_DW_CIPHER] |= 3u; /* cipher direction 3 */
    run_err(f, bd, SEC_E_BAD_BD);
    good_cbc(f, bd);
    bd[SEC_DW_CIPHER] &= ~SEC_CIPHER_DIR_MASK; /* neither cipher nor auth */
    run_err(f, bd, SEC_E_BAD_BD);

    /* Algorithms and modes the engine does not have. */
    bd_cipher(bd, 0, SEC_MODE_CBC, 0, true, SRC, DST, SEC_ADDR_PBUF, 64);
    run_err(f, bd, SEC_E_BAD_ALG);
    bd_cipher(bd, SEC_ALG_SM4, SEC_MODE_XTS, 0, true, SRC, DST, SEC_ADDR_PBUF, 64);
    run_err(f, bd, SEC_E_BAD_ALG);
    bd_cipher(bd, SEC_ALG_3DES, SEC_MODE_CTR, 1, true, SRC, DST, SEC_ADDR_PBUF, 64);
    run_err(f, bd, SEC_E_BAD_ALG);
    bd_cipher(bd, SEC_ALG_AES, 9, 0, true, SRC, DST, SEC_ADDR_PBUF, 64);
    run_err(f, bd, SEC_E_BAD_ALG);

    /* Key lengths. */
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 3, true, SRC, DST, SEC_ADDR_PBUF, 64);
    run_err(f, bd, SEC_E_BAD_KEY_LEN);
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_XTS, 1, true, SRC, DST, SEC_ADDR_PBUF, 64);
    run_err(f, bd, SEC_E_BAD_KEY_LEN);
    bd_cipher(bd, SEC_ALG_SM4, SEC_MODE_CBC, 2, true, SRC, DST, SEC_ADDR_PBUF, 64);
    run_err(f, bd, SEC_E_BAD_KEY_LEN);
    bd_cipher(bd, SEC_ALG_3DES, SEC_MODE_CBC, 0, true, SRC, DST, SEC_ADDR_PBUF, 64);
    run_err(f, bd, SEC_E_BAD_KEY_LEN);

    /* Lengths: CBC/ECB not a block multiple, XTS below one block, 3DES. */
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 0, true, SRC, DST, SEC_ADDR_PBUF, 65);
    run_err(f, bd, SEC_E_BAD_LEN);
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_ECB, 0, false, SRC, DST, SEC_ADDR_PBUF, 8);
    run_err(f, bd, SEC_E_BAD_LEN);
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_XTS, 0, true, SRC, DST, SEC_ADDR_PBUF, 15);
    run_err(f, bd, SEC_E_BAD_LEN);
    bd_cipher(bd, SEC_ALG_3DES, SEC_MODE_CBC, 1, true, SRC, DST, SEC_ADDR_PBUF, 12);
    run_err(f, bd, SEC_E_BAD_LEN);
    /* More than SEC_MAX_DATA: offset + 24-bit length. */
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CTR, 0, true, SRC, DST, SEC_ADDR_PBUF, 0xffffff);
    bd[SEC_DW_OFFSETS] = 0xffffu << 16;
    run_err(f, bd, SEC_E_BAD_LEN);
}

static void test_malformed_auth_fields_are_error_statuses(void **state)
{
    struct fx *f = *state;
    uint32_t bd[SEC_SQE_DWORDS];

    /* HMAC-SHA1 with a 24-byte MAC (digest 20). */
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 0, true, SRC, DST, SEC_ADDR_PBUF, 64);
    bd_authenc(bd, SEC_AALG_HMAC_SHA1, 24, 20, true, 16, 64);
    run_err(f, bd, SEC_E_BAD_MAC_LEN);
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 0, true, SRC, DST, SEC_ADDR_PBUF, 64);
    bd_authenc(bd, SEC_AALG_HMAC_SHA1, 0, 20, true, 16, 64);
    run_err(f, bd, SEC_E_BAD_MAC_LEN);
    /* A key longer than the hash block (the driver hashes those first). */
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 0, true, SRC, DST, SEC_ADDR_PBUF, 64);
    bd_authenc(bd, SEC_AALG_HMAC_SHA256, 32, 68, true, 16, 64);
    run_err(f, bd, SEC_E_BAD_KEY_LEN);
    /* An auth algorithm the engine does not have (plain SHA256 = 0x01?). */
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 0, true, SRC, DST, SEC_ADDR_PBUF, 64);
    bd_authenc(bd, 0x01, 32, 32, true, 16, 64);
    run_err(f, bd, SEC_E_BAD_ALG);
    /* auth type 3 */
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 0, true, SRC, DST, SEC_ADDR_PBUF, 64);
    bd_authenc(bd, SEC_AALG_HMAC_SHA1, 20, 20, true, 16, 64);
    bd[SEC_DW_AUTH] |= 3u;
    run_err(f, bd, SEC_E_BAD_BD);
    /* MAC address type not flat */
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 0, true, SRC, DST, SEC_ADDR_PBUF, 64);
    bd_authenc(bd, SEC_AALG_HMAC_SHA1, 20, 20, true, 16, 64);
    bd[SEC_DW_BD_PARAM] |= SEC_ADDR_SGL << SEC_BD_MAC_TYPE_SHIFT;
    run_err(f, bd, SEC_E_BAD_BD);
    /* GCM with tag lengths 3 and 17, CCM with an odd one, GCM with auth. */
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_GCM, 0, true, SRC, DST, SEC_ADDR_PBUF, 64);
    bd_xcm(bd, 3, true, 16);
    run_err(f, bd, SEC_E_BAD_MAC_LEN);
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_GCM, 0, true, SRC, DST, SEC_ADDR_PBUF, 64);
    bd_xcm(bd, 17, true, 16);
    run_err(f, bd, SEC_E_BAD_MAC_LEN);
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CCM, 0, true, SRC, DST, SEC_ADDR_PBUF, 64);
    bd_xcm(bd, 9, true, 16);
    run_err(f, bd, SEC_E_BAD_MAC_LEN);
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_GCM, 0, true, SRC, DST, SEC_ADDR_PBUF, 64);
    bd_xcm(bd, 16, true, 16);
    bd[SEC_DW_AUTH] |= SEC_AUTH_MAC;
    run_err(f, bd, SEC_E_BAD_BD);
    /* AAD overlapping the payload. */
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_GCM, 0, true, SRC, DST, SEC_ADDR_PBUF, 64);
    bd_xcm(bd, 16, true, 16);
    bd[SEC_DW_AUTH_LEN] = 17;
    run_err(f, bd, SEC_E_BAD_LEN);
    /* CCM counter block with L = 1 (iv[0] = 0), and a length that does not
     * fit L = 2. */
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CCM, 0, true, SRC, DST, SEC_ADDR_PBUF, 64);
    bd_xcm(bd, 16, true, 16);
    memset(ram(f, CIV), 0, 16);
    run_err(f, bd, SEC_E_BAD_IV);
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CCM, 0, true, SRC, DST, SEC_ADDR_PBUF, 70000);
    bd_xcm(bd, 16, true, 16);
    ram(f, CIV)[0] = 1;
    run_err(f, bd, SEC_E_BAD_IV);
}

/* Every address the engine reads or writes, unmapped. */
static void test_dma_faults_are_error_statuses(void **state)
{
    struct fx *f = *state;
    uint32_t bd[SEC_SQE_DWORDS];

    good_cbc(f, bd);
    put64(bd, SEC_DW_SRC_L, UNMAPPED);
    run_err(f, bd, SEC_E_DMA_FAULT);
    good_cbc(f, bd);
    put64(bd, SEC_DW_DST_L, UNMAPPED);
    run_err(f, bd, SEC_E_DMA_FAULT);
    good_cbc(f, bd);
    put64(bd, SEC_DW_CKEY_L, UNMAPPED);
    run_err(f, bd, SEC_E_DMA_FAULT);
    good_cbc(f, bd);
    put64(bd, SEC_DW_CIV_L, UNMAPPED);
    run_err(f, bd, SEC_E_DMA_FAULT);
    /* The buffer running off the end of the mapping. */
    good_cbc(f, bd);
    put64(bd, SEC_DW_SRC_L, RAM_IOVA + RAM_SIZE - 32);
    run_err(f, bd, SEC_E_DMA_FAULT);
    /* Auth key and MAC. */
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 0, true, SRC, DST, SEC_ADDR_PBUF, 64);
    bd_authenc(bd, SEC_AALG_HMAC_SHA1, 20, 20, true, 16, 64);
    put64(bd, SEC_DW_AKEY_L, UNMAPPED);
    run_err(f, bd, SEC_E_DMA_FAULT);
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 0, true, SRC, DST, SEC_ADDR_PBUF, 64);
    bd_authenc(bd, SEC_AALG_HMAC_SHA1, 20, 20, true, 16, 64);
    put64(bd, SEC_DW_MAC_L, UNMAPPED);
    run_err(f, bd, SEC_E_DMA_FAULT);
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 0, false, SRC, DST, SEC_ADDR_PBUF, 64);
    bd_authenc(bd, SEC_AALG_HMAC_SHA1, 20, 20, false, 16, 64);
    put64(bd, SEC_DW_MAC_L, UNMAPPED);
    run_err(f, bd, SEC_E_DMA_FAULT);
    /* Address + length wrapping. */
    good_cbc(f, bd);
    put64(bd, SEC_DW_SRC_L, UINT64_MAX - 8);
    run_err(f, bd, SEC_E_BAD_BD);
}

static void test_malformed_sgls_are_error_statuses(void **state)
{
    struct fx *f = *state;
    uint32_t bd[SEC_SQE_DWORDS];
    struct zip_sgl_hdr *h = (struct zip_sgl_hdr *)ram(f, SGLS);
    struct zip_sgl_entry *ent = (struct zip_sgl_entry *)(h + 1);

    rnd(ram(f, KEYS), 32);
    rnd(ram(f, CIV), 16);
    /* An SGL that loops on itself, each pass 16 bytes, for 1 MiB. */
    memset(h, 0, 128);
    h->entry_sum_in_sgl = h->entry_length_in_sgl = 1;
    h->next_dma = SGLS;
    ent[0].buf = AREA;
    ent[0].len = 16;
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CTR, 0, true, SGLS, DST, SEC_ADDR_SGL, 1u << 20);
    bd[SEC_DW_BD_PARAM] &= ~(7u << SEC_BD_DST_TYPE_SHIFT);
    run_err(f, bd, SEC_E_BAD_SGL);
    /* A chain that ends short. */
    h->next_dma = 0;
    run_err(f, bd, SEC_E_BAD_SGL);
    /* More entries than its capacity. */
    h->entry_sum_in_sgl = 2;
    run_err(f, bd, SEC_E_BAD_SGL);
    /* The header unreadable, then an entry that wraps. */
    put64(bd, SEC_DW_SRC_L, UNMAPPED);
    run_err(f, bd, SEC_E_DMA_FAULT);
    put64(bd, SEC_DW_SRC_L, SGLS);
    h->entry_sum_in_sgl = 1;
    ent[0].buf = UINT64_MAX - 4;
    run_err(f, bd, SEC_E_BAD_SGL);
}

/* ---- cancellation ------------------------------------------------------------------ */

struct cancel_ctl {
    struct iommu_domain *d;
    unsigned writes, cancel_after_writes;
    unsigned polls, cancel_after_polls;
};

static int ctl_write(void *opaque, uint64_t iova, const void *buf, uint64_t len)
{
    struct cancel_ctl *c = opaque;

    assert_true(len <= SEC_CHUNK);
    if (c->writes++ >= c->cancel_after_writes)
        return -ECANCELED;
    return iommu_dma_write(c->d, iova, buf, len);
}

static bool ctl_cancelled(void *opaque)
{
    struct cancel_ctl *c = opaque;

    return c->polls++ >= c->cancel_after_polls;
}

static const struct sec_job_ops ctl_ops = {.write = ctl_write, .cancelled = ctl_cancelled};

/* A cancelled job returns -ECANCELED and leaves the BD as it was; a
 * finished one wrote in pieces of at most SEC_CHUNK bytes. */
static void test_a_cancelled_job_leaves_the_bd_untouched(void **state)
{
    struct fx *f = *state;
    uint32_t bd[SEC_SQE_DWORDS], before[SEC_SQE_DWORDS];
    const uint32_t len = 300 * 1024;
    struct cancel_ctl c = {.d = f->d, .cancel_after_writes = ~0u, .cancel_after_polls = ~0u};

    rnd(ram(f, KEYS), 32);
    rnd(ram(f, CIV), 16);
    rnd(ram(f, SRC), len);
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CTR, 2, true, SRC, DST, SEC_ADDR_PBUF, len);
    memcpy(before, bd, sizeof(bd));
    assert_int_equal(sec_engine_run(f->e, f->d, bd, 0, &ctl_ops, &c), 0);
    assert_true(sec_bd_ok(bd));
    assert_true(c.writes >= len / SEC_CHUNK);

    memcpy(bd, before, sizeof(bd));
    c = (struct cancel_ctl){.d = f->d, .cancel_after_writes = 2, .cancel_after_polls = ~0u};
    assert_int_equal(sec_engine_run(f->e, f->d, bd, 0, &ctl_ops, &c), -ECANCELED);
    assert_memory_equal(bd, before, sizeof(bd));

    c = (struct cancel_ctl){.d = f->d, .cancel_after_writes = ~0u, .cancel_after_polls = 1};
    assert_int_equal(sec_engine_run(f->e, f->d, bd, 0, &ctl_ops, &c), -ECANCELED);
    assert_memory_equal(bd, before, sizeof(bd));

    /* XTS and HMAC poll between pieces too. */
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_XTS, 0, true, SRC, DST, SEC_ADDR_PBUF, len);
    memcpy(before, bd, sizeof(bd));
    c = (struct cancel_ctl){.d = f->d, .cancel_after_writes = ~0u, .cancel_after_polls = 2};
    assert_int_equal(sec_engine_run(f->e, f->d, bd, 0, &ctl_ops, &c), -ECANCELED);
    assert_memory_equal(bd, before, sizeof(bd));
}

/* Which writes a job holds for its commit: a counting caller that lands the
 * held ones only when told (its "commit"). */
struct hold_ctl {
    struct iommu_domain *d;
    unsigned now, held;
    struct {
        uint64_t iova, len;
        const void *buf;
    } w[64];
};

static int hold_write(void *opaque, uint64_t iova, const void *buf, uint64_t len)
{
    struct hold_ctl *c = opaque;

    c->now++;
    return iommu_dma_write(c->d, iova, buf, len);
}

static bool hold_cancelled(void *opaque)
{
    (void)opaque;
    return false;
}

static int hold_write_at_commit(void *opaque, uint64_t iova, const void *buf, uint64_t len)
{
    struct hold_ctl *c = opaque;

    assert_true(len <= SEC_CHUNK);
    assert_true(c->held < AM_ARRAY_SIZE(c->w));
    c->w[c->held].iova = iova;
    c->w[c->held].len = len;
    c->w[c->held++].buf = buf;
    return 0;
}

static void hold_commit(struct hold_ctl *c)
{
    for (unsigned i = 0; i < c->held; i++)
        assert_int_equal(iommu_dma_write(c->d, c->w[i].iova, c->w[i].buf, c->w[i].len), 0);
}

static const struct sec_job_ops hold_ops = {
    .write = hold_write, .cancelled = hold_cancelled, .write_at_commit = hold_write_at_commit};

/* A job whose output overlaps what it reads (its source, its key or IV, or
 * an output MAC over its source) holds every write for the commit, and
 * guest memory is untouched until then; a job out of place writes at once.
 * After the "commit" the bytes are libcrypto's either way. */
static void test_output_over_its_own_input_is_held_for_the_commit(void **state)
{
    struct fx *f = *state;
    const uint32_t len = 200 * 1024;
    static uint8_t pt[200 * 1024], want[200 * 1024];
    uint8_t key[16];
    uint32_t bd[SEC_SQE_DWORDS];
    struct hold_ctl c;

    rnd(ram(f, KEYS), 16);
    rnd(ram(f, CIV), 16);
    rnd(pt, len);
    memcpy(key, ram(f, KEYS), sizeof(key));
    ref_cipher(EVP_aes_128_cbc(), true, key, ram(f, CIV), pt, want, (int)len);

    /* Out of place: written at once, nothing held. */
    memcpy(ram(f, SRC), pt, len);
    c = (struct hold_ctl){.d = f->d};
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 0, true, SRC, DST, SEC_ADDR_PBUF, len);
    assert_int_equal(sec_engine_run(f->e, f->d, bd, 0, &hold_ops, &c), 0);
    assert_true(sec_bd_ok(bd));
    assert_int_equal(c.held, 0);
    assert_true(c.now >= len / SEC_CHUNK);
    assert_memory_equal(ram(f, DST), want, len);

    /* In place: every write held, the source intact until the commit. */
    c = (struct hold_ctl){.d = f->d};
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 0, true, SRC, SRC, SEC_ADDR_PBUF, len);
    assert_int_equal(sec_engine_run(f->e, f->d, bd, 0, &hold_ops, &c), 0);
    assert_true(sec_bd_ok(bd));
    assert_int_equal(c.now, 0);
    assert_true(c.held >= len / SEC_CHUNK);
    assert_memory_equal(ram(f, SRC), pt, len);
    hold_commit(&c);
    assert_memory_equal(ram(f, SRC), want, len);

    /* A destination whose last bytes are the key and IV: held too (a rerun
     * must read the same key). */
    memcpy(ram(f, SRC), pt, len);
    c = (struct hold_ctl){.d = f->d};
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 0, true, SRC, KEYS + 0x210 - len, SEC_ADDR_PBUF,
              len);
    assert_int_equal(sec_engine_run(f->e, f->d, bd, 0, &hold_ops, &c), 0);
    assert_true(sec_bd_ok(bd));
    assert_int_equal(c.now, 0);
    assert_memory_equal(ram(f, KEYS), key, sizeof(key));
    hold_commit(&c);
    assert_memory_equal(ram(f, KEYS + 0x210 - len), want, len);
}

/* One cipher job on f's engine, flat out of place, checked against
 * libcrypto with the key and IV now in guest RAM. */
static void rerun_cipher(struct fx *f, const struct cipher_case *c, bool enc, const uint8_t *in)
{
    static uint8_t want[8 * 1024];
    uint32_t bd[SEC_SQE_DWORDS];

    assert_true(c->len <= sizeof(want));
    ref_cipher(c->evp(), enc, ram(f, KEYS), c->ivlen ? ram(f, CIV) : NULL, in, want, (int)c->len);
    memcpy(ram(f, SRC), in, c->len);
    memset(ram(f, DST), 0xa5, c->len);
    bd_cipher(bd, c->calg, c->cmode, c->code, enc, SRC, DST, SEC_ADDR_PBUF, c->len);
    run_ok(f, bd, SEC_FLAG_CIPHER);
    assert_memory_equal(ram(f, DST), want, c->len);
}

/* The engine keeps its cipher context between jobs and only reloads key
 * and IV when the cipher is the same: a new key, IV or direction takes
 * effect, a stream mode's partial block does not carry into the next job,
 * and neither an AEAD job nor a cancelled job in between leaves state
 * behind. */
static void test_a_reused_cipher_context_takes_each_jobs_key_iv_and_direction(void **state)
{
    struct fx *f = *state;
    const struct cipher_case cbc = {"cbc(aes)-128", SEC_ALG_AES, SEC_MODE_CBC, 0, 16, 16, 4096,
                                    EVP_aes_128_cbc};
    const struct cipher_case ctr = {"ctr(aes)-128", SEC_ALG_AES, SEC_MODE_CTR, 0, 16, 16, 1000,
                                    EVP_aes_128_ctr};
    const struct cipher_case ecb = {"ecb(aes)-128", SEC_ALG_AES, SEC_MODE_ECB, 0, 16, 0, 512,
                                    EVP_aes_128_ecb};
    static uint8_t in[8 * 1024], first[8 * 1024];
    uint32_t bd[SEC_SQE_DWORDS];
    struct cancel_ctl cc = {.d = f->d, .cancel_after_writes = ~0u, .cancel_after_polls = 1};

    rnd(in, sizeof(in));
    rnd(ram(f, KEYS), 64);
    rnd(ram(f, CIV), 16);
    rerun_cipher(f, &cbc, true, in);
    memcpy(first, ram(f, DST), cbc.len);
    rnd(ram(f, KEYS), 16); /* a new key only */
    rerun_cipher(f, &cbc, true, in);
    assert_memory_not_equal(ram(f, DST), first, cbc.len);
    rnd(ram(f, CIV), 16); /* a new IV only */
    rerun_cipher(f, &cbc, true, in);
    rerun_cipher(f, &cbc, false, in); /* the other direction */
    rerun_cipher(f, &cbc, true, in);

    /* 1000 bytes end in a partial counter block; the same job again gives
     * the same bytes. */
    rerun_cipher(f, &ctr, true, in);
    memcpy(first, ram(f, DST), ctr.len);
    rerun_cipher(f, &ctr, true, in);
    assert_memory_equal(ram(f, DST), first, ctr.len);

    /* XTS sets the ECB cipher up twice (tweak key, data key): a plain ECB
     * job after it gets its own key and direction. */
    rerun_cipher(f, &cipher_cases[9], true, in); /* xts(aes)-128 */
    rerun_cipher(f, &ecb, false, in);

    /* A GCM job in between. */
    memcpy(ram(f, SRC), in, 64);
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_GCM, 0, true, SRC, DST, SEC_ADDR_PBUF, 48);
    bd_xcm(bd, 16, true, 16);
    run_ok(f, bd, SEC_FLAG_AEAD);
    rerun_cipher(f, &cbc, false, in);

    /* A cancelled job (stopped after its first 64 KiB piece) in between. */
    memcpy(ram(f, SRC), in, sizeof(in));
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 0, true, SRC, DST, SEC_ADDR_PBUF, 256 * 1024);
    assert_int_equal(sec_engine_run(f->e, f->d, bd, 0, &ctl_ops, &cc), -ECANCELED);
    rerun_cipher(f, &cbc, true, in);
    rerun_cipher(f, &ctr, false, in);
    assert_memory_equal(ram(f, DST), first, ctr.len); /* CTR: both directions agree */
}

/* An HMAC-only BD over [0, len) of SRC with akey_len bytes of key. */
static void bd_hmac(uint32_t *bd, unsigned aalg, unsigned mac_len, unsigned akey_len, uint32_t len)
{
    memset(bd, 0, SEC_SQE_SIZE);
    bd[SEC_DW_BD_PARAM] = SEC_BD_TYPE3;
    put64(bd, SEC_DW_SRC_L, SRC);
    put64(bd, SEC_DW_AKEY_L, AKEY);
    put64(bd, SEC_DW_MAC_L, MAC);
    bd[SEC_DW_AUTH] = SEC_AUTH_MAC | (mac_len / 4) << SEC_MAC_LEN_SHIFT |
                      (akey_len / 4) << SEC_AKEY_LEN_SHIFT | aalg << SEC_AALG_SHIFT;
    bd[SEC_DW_AUTH_LEN] = len;
}

/* The engine keeps its HMAC context and sets the digest only when a_alg
 * changes: each job still gets its own key (an empty one too) and digest,
 * also after a cancelled HMAC job. */
static void test_a_reused_hmac_context_takes_each_jobs_key_and_digest(void **state)
{
    struct fx *f = *state;
    static const struct {
        unsigned aalg, akey_len, digest;
        const EVP_MD *(*md)(void);
    } jobs[] = {
        {SEC_AALG_HMAC_SHA256, 32, 32, EVP_sha256}, {SEC_AALG_HMAC_SHA256, 64, 32, EVP_sha256},
        {SEC_AALG_HMAC_SHA256, 0, 32, EVP_sha256},  {SEC_AALG_HMAC_SHA1, 0, 20, EVP_sha1},
        {SEC_AALG_HMAC_SHA1, 20, 20, EVP_sha1},     {SEC_AALG_HMAC_SHA512, 128, 64, EVP_sha512},
        {SEC_AALG_HMAC_SHA256, 32, 32, EVP_sha256},
    };
    static const uint8_t nokey[1];
    const uint32_t len = 200 * 1024;
    struct cancel_ctl cc = {.d = f->d, .cancel_after_writes = ~0u, .cancel_after_polls = 1};
    uint8_t want[64];
    uint32_t bd[SEC_SQE_DWORDS];

    rnd(ram(f, SRC), len);
    for (size_t i = 0; i < AM_ARRAY_SIZE(jobs); i++) {
        unsigned maclen = 0;

        rnd(ram(f, AKEY), 128);
        assert_non_null(HMAC(jobs[i].md(), jobs[i].akey_len ? ram(f, AKEY) : nokey,
                             (int)jobs[i].akey_len, ram(f, SRC), len, want, &maclen));
        assert_int_equal(maclen, jobs[i].digest);
        memset(ram(f, MAC), 0, 64);
        bd_hmac(bd, jobs[i].aalg, jobs[i].digest, jobs[i].akey_len, len);
        run_ok(f, bd, SEC_FLAG_AEAD);
        assert_memory_equal(ram(f, MAC), want, jobs[i].digest);
        if (i == 3) {
            /* Stopped after its first 64 KiB piece: the next job starts
             * the context over. */
            cc.polls = 0;
            assert_int_equal(sec_engine_run(f->e, f->d, bd, 0, &ctl_ops, &cc), -ECANCELED);
        }
    }
}

static void test_bad_arguments_are_einval_and_touch_nothing(void **state)
{
    struct fx *f = *state;
    uint32_t bd[SEC_SQE_DWORDS], before[SEC_SQE_DWORDS];

    good_cbc(f, bd);
    memcpy(before, bd, sizeof(bd));
    assert_int_equal(sec_engine_run(f->e, f->d, bd, 1, NULL, NULL), -EINVAL);
    assert_int_equal(sec_engine_run(NULL, f->d, bd, 0, NULL, NULL), -EINVAL);
    assert_int_equal(sec_engine_run(f->e, NULL, bd, 0, NULL, NULL), -EINVAL);
    assert_int_equal(sec_engine_run(f->e, f->d, NULL, 0, NULL, NULL), -EINVAL);
    assert_memory_equal(bd, before, sizeof(bd));
}

/* ---- a plain cipher reads its source in place where it can --------------- */

#define FAR_IOVA UINT64_C(0x40000000) /* mappings of the tests below */
#define FAR_SIZE (256 * KIB)

struct remote_mem {
    uint8_t *host;
    uint64_t base, bytes_read;
};

static int remote_read(void *opaque, uint64_t iova, void *buf, uint64_t len)
{
    struct remote_mem *m = opaque;

    memcpy(buf, m->host + (iova - m->base), len);
    m->bytes_read += len;
    return 0;
}

static int remote_write(void *opaque, uint64_t iova, const void *buf, uint64_t len)
{
    struct remote_mem *m = opaque;

    memcpy(m->host + (iova - m->base), buf, len);
    return 0;
}

static const struct iommu_remote_ops remote_ops = {.read = remote_read, .write = remote_write};

/* cbc(aes)-128 of len bytes at src (already there as `in`) into DST, checked
 * against libcrypto; returns the bytes the domain copied for the job. */
static uint64_t cbc_from(struct fx *f, uint64_t src, const uint8_t *in, uint32_t len)
{
    static uint8_t want[FAR_SIZE];
    uint8_t key[16], iv[16];
    uint32_t bd[SEC_SQE_DWORDS];
    struct iommu_stats a, b;

    rnd(key, sizeof(key));
    rnd(iv, sizeof(iv));
    memcpy(ram(f, KEYS), key, 16);
    memcpy(ram(f, CIV), iv, 16);
    ref_cipher(EVP_aes_128_cbc(), 1, key, iv, in, want, (int)len);
    memset(ram(f, DST), 0xa5, len + 16);
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 0, true, src, DST, SEC_ADDR_PBUF, len);
    iommu_stats_get(f->d, &a);
    run_ok(f, bd, SEC_FLAG_CIPHER);
    iommu_stats_get(f->d, &b);
    assert_memory_equal(ram(f, DST), want, len);
    assert_int_equal(ram(f, DST)[len], 0xa5);
    return b.bytes_read - a.bytes_read;
}

static void test_a_plain_cipher_reads_host_memory_in_place_and_copies_nothing_of_it(void **state)
{
    struct fx *f = *state;
    static uint8_t in[200 * KIB];

    rnd(in, sizeof(in));
    memcpy(ram(f, SRC), in, sizeof(in));
    /* Only the key and the IV went through iommu_dma_read. */
    assert_int_equal(cbc_from(f, SRC, in, sizeof(in)), 32);
    /* An odd offset into the page: pieces cross page boundaries. */
    memcpy(ram(f, SRC + 5), in, 4096 * 3);
    assert_int_equal(cbc_from(f, SRC + 5, in, 4096 * 3), 32);
}

static void test_a_source_in_remote_memory_goes_through_the_copy_path(void **state)
{
    struct fx *f = *state;
    static uint8_t in[FAR_SIZE];
    struct remote_mem m = {.base = FAR_IOVA};

    m.host = calloc(1, FAR_SIZE);
    assert_non_null(m.host);
    assert_int_equal(iommu_map_remote(f->d, FAR_IOVA, FAR_SIZE, IOMMU_READ | IOMMU_WRITE,
                                      &remote_ops, &m), 0);
    rnd(in, sizeof(in));
    memcpy(m.host, in, sizeof(in));
    assert_int_equal(cbc_from(f, FAR_IOVA, in, 100 * KIB), 100 * KIB + 32);
    assert_int_equal(m.bytes_read, 100 * KIB);
    assert_int_equal(iommu_unmap(f->d, FAR_IOVA, FAR_SIZE), 0);
    free(m.host);
}

static void test_a_source_in_an_unsealed_file_goes_through_the_guarded_copy(void **state)
{
    struct fx *f = *state;
    static uint8_t in[64 * KIB];
    int fd = memfd_create("sec-unsealed", MFD_CLOEXEC); /* no MFD_ALLOW_SEALING */
    uint8_t *p;

    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, FAR_SIZE), 0);
    p = mmap(NULL, FAR_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(p != MAP_FAILED);
    assert_int_equal(iommu_map_fd(f->d, FAR_IOVA, FAR_SIZE, fd, 0, IOMMU_READ | IOMMU_WRITE), 0);
    rnd(in, sizeof(in));
    memcpy(p, in, sizeof(in));
    /* iommu_translate refuses an unsealed file: every byte is copied. */
    assert_int_equal(cbc_from(f, FAR_IOVA, in, sizeof(in)), sizeof(in) + 32);
    /* The file shrinks under the source: the job reports a DMA fault and
     * the process goes on. */
    {
        uint32_t bd[SEC_SQE_DWORDS];

        assert_int_equal(ftruncate(fd, 4096), 0);
        bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 0, true, FAR_IOVA, DST, SEC_ADDR_PBUF,
                  sizeof(in));
        run_err(f, bd, SEC_E_DMA_FAULT);
    }
    assert_int_equal(iommu_unmap(f->d, FAR_IOVA, FAR_SIZE), 0);
    munmap(p, FAR_SIZE);
    close(fd);
}

static void test_a_source_across_two_mappings_is_read_piece_by_piece(void **state)
{
    struct fx *f = *state;
    static uint8_t in[40 * KIB];
    uint8_t *a = mmap(NULL, 2 * FAR_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
    uint64_t src = FAR_IOVA + FAR_SIZE - 10000; /* 10000 bytes in the first, the rest beyond */

    assert_true(a != MAP_FAILED);
    /* Two host mappings, adjacent in IOVA, apart in the host. */
    assert_int_equal(iommu_map_host(f->d, FAR_IOVA, FAR_SIZE, a + FAR_SIZE, IOMMU_READ), 0);
    assert_int_equal(iommu_map_host(f->d, FAR_IOVA + FAR_SIZE, FAR_SIZE, a, IOMMU_READ), 0);
    rnd(in, sizeof(in));
    memcpy(a + 2 * FAR_SIZE - 10000, in, 10000);
    memcpy(a, in + 10000, sizeof(in) - 10000);
    /* Only the piece that straddles the edge is copied (at most one piece). */
    uint64_t copied = cbc_from(f, src, in, sizeof(in)) - 32;

    assert_true(copied > 0 && copied <= 4096);
    assert_int_equal(iommu_unmap(f->d, FAR_IOVA, FAR_SIZE), 0);
    assert_int_equal(iommu_unmap(f->d, FAR_IOVA + FAR_SIZE, FAR_SIZE), 0);
    munmap(a, 2 * FAR_SIZE);
}

static void test_a_plain_cipher_at_an_offset_copies_the_bytes_before_it_to_a_separate_destination(
    void **state)
{
    struct fx *f = *state;
    uint8_t key[16], iv[16], in[48 + 4096], want[4096];
    uint32_t bd[SEC_SQE_DWORDS];

    rnd(key, sizeof(key));
    rnd(iv, sizeof(iv));
    rnd(in, sizeof(in));
    memcpy(ram(f, KEYS), key, 16);
    memcpy(ram(f, CIV), iv, 16);
    memcpy(ram(f, SRC), in, sizeof(in));
    memset(ram(f, DST), 0xa5, sizeof(in) + 16);
    ref_cipher(EVP_aes_128_cbc(), 1, key, iv, in + 48, want, 4096);
    bd_cipher(bd, SEC_ALG_AES, SEC_MODE_CBC, 0, true, SRC, DST, SEC_ADDR_PBUF, 4096);
    bd[SEC_DW_OFFSETS] = 48u << 16;
    run_ok(f, bd, SEC_FLAG_CIPHER);
    assert_memory_equal(ram(f, DST), in, 48);
    assert_memory_equal(ram(f, DST) + 48, want, 4096);
    assert_int_equal(ram(f, DST)[48 + 4096], 0xa5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_every_cipher_matches_libcrypto_in_both_directions),
        T(test_xts_with_equal_key_halves_round_trips),
        T(test_sgl_chains_in_and_out_match_libcrypto),
        T(test_in_place_ciphering_overwrites_the_source),
        T(test_authenc_encrypts_macs_verifies_and_refuses_a_bad_mac),
        T(test_hmac_without_a_cipher_writes_the_mac),
        T(test_gcm_matches_libcrypto_and_refuses_a_bad_tag),
        T(test_ccm_matches_libcrypto_and_refuses_a_bad_tag),
        T(test_malformed_bd_fields_are_error_statuses),
        T(test_malformed_auth_fields_are_error_statuses),
        T(test_dma_faults_are_error_statuses),
        T(test_malformed_sgls_are_error_statuses),
        T(test_a_cancelled_job_leaves_the_bd_untouched),
        T(test_output_over_its_own_input_is_held_for_the_commit),
        T(test_a_reused_cipher_context_takes_each_jobs_key_iv_and_direction),
        T(test_a_reused_hmac_context_takes_each_jobs_key_and_digest),
        T(test_bad_arguments_are_einval_and_touch_nothing),
        T(test_a_plain_cipher_reads_host_memory_in_place_and_copies_nothing_of_it),
        T(test_a_source_in_remote_memory_goes_through_the_copy_path),
        T(test_a_source_in_an_unsealed_file_goes_through_the_guarded_copy),
        T(test_a_source_across_two_mappings_is_read_piece_by_piece),
        T(test_a_plain_cipher_at_an_offset_copies_the_bytes_before_it_to_a_separate_destination),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
