/* sec_crypto: the SEC engine's algorithms on OpenSSL's libcrypto, in host
 * buffers, SEC_CHUNK bytes per library call with a cancel check between
 * calls. XTS is built here on AES-ECB (IEEE 1619 with ciphertext stealing)
 * because libcrypto refuses XTS keys whose halves are equal, which the
 * kernel (and its self-test vectors) accept outside FIPS mode.
 *
 * Per-job library cost: each cipher is fetched from the provider once per
 * engine (sec_engine_cipher), and a plain cipher pass whose cipher is the
 * one the context already holds only loads the new key and IV
 * (EVP_CipherInit_ex with a NULL cipher: no context reset, no lookup, no
 * allocation); HMAC keeps one context and sets its digest only when a_alg
 * changes. An init with libcrypto's EVP_aes_*() objects resets the context
 * and looks the implementation up again: in a loop of 4 KiB cbc(aes) jobs
 * straight into the engine that was 0.8 of 5.0 us a job. */
#include <errno.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#include "common/common.h"
#include "sec/sec_int.h"

bool sec_cipher_known(unsigned calg, unsigned cmode)
{
    switch (calg) {
    case SEC_ALG_AES:
        return cmode <= SEC_MODE_XTS;
    case SEC_ALG_SM4:
        return cmode <= SEC_MODE_CTR; /* ECB, CBC, CFB, OFB, CTR */
    case SEC_ALG_3DES:
        return cmode == SEC_MODE_ECB || cmode == SEC_MODE_CBC;
    default:
        return false;
    }
}

unsigned sec_cipher_key_bytes(unsigned calg, unsigned cmode, unsigned code)
{
    static const unsigned aes[3] = {16, 24, 32};

    switch (calg) {
    case SEC_ALG_AES:
        if (cmode == SEC_MODE_XTS)
            return code == 0 ? 32 : code == 2 ? 64 : 0;
        return code < 3 ? aes[code] : 0;
    case SEC_ALG_SM4:
        return code == 0 ? 16 : 0;
    case SEC_ALG_3DES:
        return code == 1 ? 24 : code == 3 ? 16 : 0;
    default:
        return 0;
    }
}

unsigned sec_cipher_iv_bytes(unsigned calg, unsigned cmode)
{
    if (cmode == SEC_MODE_ECB)
        return 0;
    if (cmode == SEC_MODE_GCM)
        return 12;
    return calg == SEC_ALG_3DES ? 8 : 16;
}

unsigned sec_cipher_block_bytes(unsigned calg, unsigned cmode)
{
    if (cmode == SEC_MODE_ECB || cmode == SEC_MODE_CBC || cmode == SEC_MODE_XTS)
        return calg == SEC_ALG_3DES ? 8 : 16;
    return 1;
}

unsigned sec_hash_block_bytes(unsigned aalg)
{
    return aalg == SEC_AALG_HMAC_SHA512 ? 128 : 64;
}

unsigned sec_hash_digest_bytes(unsigned aalg)
{
    switch (aalg) {
    case SEC_AALG_HMAC_SHA1:
        return 20;
    case SEC_AALG_HMAC_SHA256:
        return 32;
    case SEC_AALG_HMAC_SHA512:
        return 64;
    default:
        return 0;
    }
}

/* libcrypto's built-in object for a non-XTS mode and key size; its name is
 * what sec_engine_cipher fetches. */
static const EVP_CIPHER *sec_evp_cipher(unsigned calg, unsigned cmode, unsigned keylen)
{
    const unsigned k = keylen == 16 ? 0 : keylen == 24 ? 1 : 2;

    if (calg == SEC_ALG_AES) {
        static const EVP_CIPHER *(*const tab[7][3])(void) = {
            [SEC_MODE_ECB] = {EVP_aes_128_ecb, EVP_aes_192_ecb, EVP_aes_256_ecb},
            [SEC_MODE_CBC] = {EVP_aes_128_cbc, EVP_aes_192_cbc, EVP_aes_256_cbc},
            [SEC_MODE_CFB] = {EVP_aes_128_cfb128, EVP_aes_192_cfb128, EVP_aes_256_cfb128},
            [SEC_MODE_OFB] = {EVP_aes_128_ofb, EVP_aes_192_ofb, EVP_aes_256_ofb},
            [SEC_MODE_CTR] = {EVP_aes_128_ctr, EVP_aes_192_ctr, EVP_aes_256_ctr},
            [SEC_MODE_CCM] = {EVP_aes_128_ccm, EVP_aes_192_ccm, EVP_aes_256_ccm},
            [SEC_MODE_GCM] = {EVP_aes_128_gcm, EVP_aes_192_gcm, EVP_aes_256_gcm},
        };
        return cmode < 7 ? tab[cmode][k]() : NULL;
    }
    if (calg == SEC_ALG_SM4) {
        switch (cmode) {
        case SEC_MODE_ECB:
            return EVP_sm4_ecb();
        case SEC_MODE_CBC:
            return EVP_sm4_cbc();
        case SEC_MODE_CFB:
            return EVP_sm4_cfb128();
        case SEC_MODE_OFB:
            return EVP_sm4_ofb();
        case SEC_MODE_CTR:
            return EVP_sm4_ctr();
        default:
            return NULL;
        }
    }
    if (calg == SEC_ALG_3DES)
        return cmode == SEC_MODE_ECB ? EVP_des_ede3_ecb() : EVP_des_ede3_cbc();
    return NULL;
}

static unsigned sec_evp_slot(unsigned calg, unsigned cmode, unsigned keylen)
{
    const unsigned k = keylen == 24 && calg == SEC_ALG_AES ? 1 : keylen == 32 ? 2 : 0;

    return (calg * 8u + cmode) * 3u + k;
}

/* The provider's cipher for a non-XTS mode and key size, fetched on first
 * use and kept for the engine's life; libcrypto's built-in object when the
 * fetch fails (its init then fails as it always would have), NULL when
 * there is none. */
static const EVP_CIPHER *sec_engine_cipher(struct sec_engine *e, unsigned calg, unsigned cmode,
                                           unsigned keylen)
{
    const EVP_CIPHER *c = sec_evp_cipher(calg, cmode, keylen);
    const unsigned slot = sec_evp_slot(calg, cmode, keylen);

    if (c == NULL || slot >= SEC_EVP_SLOTS)
        return c;
    if (e->fetched[slot] == NULL)
        e->fetched[slot] = EVP_CIPHER_fetch(NULL, EVP_CIPHER_get0_name(c), NULL);
    return e->fetched[slot] != NULL ? e->fetched[slot] : c;
}

void sec_crypto_release(struct sec_engine *e)
{
    for (unsigned i = 0; i < SEC_EVP_SLOTS; i++) {
        EVP_CIPHER_free(e->fetched[i]);
        e->fetched[i] = NULL;
    }
    e->cctx_cipher = NULL;
    EVP_MAC_CTX_free(e->hctx);
    e->hctx = NULL;
    e->hctx_aalg = 0;
}

/* Sets cctx up for a plain pass of c with key and iv in direction enc,
 * without padding. 0 or -EIO. */
static int sec_cipher_setup(struct sec_engine *e, const EVP_CIPHER *c, const uint8_t *key,
                            const uint8_t *iv, bool enc)
{
    if (e->cctx_cipher == c && EVP_CipherInit_ex(e->cctx, NULL, NULL, key, iv, enc) == 1)
        return 0;
    e->cctx_cipher = NULL;
    if (EVP_CipherInit_ex(e->cctx, c, NULL, key, iv, enc) != 1 ||
        EVP_CIPHER_CTX_set_padding(e->cctx, 0) != 1)
        return -EIO;
    e->cctx_cipher = c;
    return 0;
}

/* Runs len bytes through an initialised context, piece by piece. */
static int sec_update_chunks(struct sec_engine *e, const uint8_t *in, uint8_t *out, uint32_t len)
{
    for (uint32_t k = 0; k < len;) {
        uint32_t n = len - k < SEC_CHUNK ? len - k : SEC_CHUNK;
        int outl = 0;

        if (k > 0 && sec_job_cancelled(e))
            return -ECANCELED;
        if (EVP_CipherUpdate(e->cctx, out + k, &outl, in + k, (int)n) != 1 || (uint32_t)outl != n)
            return sec_fail(e, -EIO, "libcrypto cipher update failed");
        k += n;
    }
    return 0;
}

/* ---- XTS on AES-ECB ------------------------------------------------------- */

/* T = T * x in GF(2^128), the tweak's little-endian convention. */
static void sec_xts_mul_x(uint8_t t[16])
{
    unsigned carry = t[15] >> 7;

    for (int i = 15; i > 0; i--)
        t[i] = (uint8_t)(t[i] << 1 | t[i - 1] >> 7);
    t[0] = (uint8_t)(t[0] << 1);
    if (carry)
        t[0] ^= 0x87;
}

static int sec_ecb_block(EVP_CIPHER_CTX *c, uint8_t *b, unsigned n)
{
    int outl = 0;

    return EVP_CipherUpdate(c, b, &outl, b, (int)n) == 1 && (unsigned)outl == n ? 0 : -EIO;
}

/* One block through XTS with tweak t. */
static int sec_xts_block(EVP_CIPHER_CTX *c, const uint8_t t[16], const uint8_t in[16],
                         uint8_t out[16])
{
    uint8_t b[16];

    for (int i = 0; i < 16; i++)
        b[i] = in[i] ^ t[i];
    if (sec_ecb_block(c, b, 16))
        return -EIO;
    for (int i = 0; i < 16; i++)
        out[i] = b[i] ^ t[i];
    return 0;
}

#define SEC_XTS_PIECE 4096u /* blocks' tweaks computed per library call */

static int sec_xts(struct sec_engine *e, bool enc, const uint8_t *key, unsigned keylen,
                   const uint8_t *iv, const uint8_t *in, uint8_t *out, uint32_t len)
{
    const EVP_CIPHER *ecb = sec_engine_cipher(e, SEC_ALG_AES, SEC_MODE_ECB, keylen / 2);
    const unsigned half = keylen / 2;
    const uint32_t full = len / 16, rem = len % 16;
    /* With stealing, the last full block is handled apart. */
    const uint32_t bulk = rem ? full - 1 : full;
    uint8_t t[16], tw[SEC_XTS_PIECE];
    int r = -EIO;

    /* Tweak: E_K2(IV). */
    memcpy(t, iv, 16);
    if (sec_cipher_setup(e, ecb, key + half, NULL, true) || sec_ecb_block(e->cctx, t, 16))
        return sec_fail(e, -EIO, "libcrypto XTS tweak failed");
    if (sec_cipher_setup(e, ecb, key, NULL, enc))
        return sec_fail(e, -EIO, "libcrypto XTS key setup failed");
    for (uint32_t b = 0; b < bulk;) {
        uint32_t n = bulk - b < SEC_XTS_PIECE / 16 ? bulk - b : SEC_XTS_PIECE / 16;
        uint8_t *o = out + (size_t)b * 16;
        const uint8_t *s = in + (size_t)b * 16;

        if (b > 0 && (b * 16) % SEC_CHUNK == 0 && sec_job_cancelled(e))
            return -ECANCELED;
        for (uint32_t i = 0; i < n; i++) {
            memcpy(tw + 16 * i, t, 16);
            for (int k = 0; k < 16; k++)
                o[16 * i + k] = s[16 * i + k] ^ t[k];
            sec_xts_mul_x(t);
        }
        if (sec_ecb_block(e->cctx, o, 16 * n))
            return sec_fail(e, -EIO, "libcrypto XTS block failed");
        for (uint32_t i = 0; i < 16 * n; i++)
            o[i] ^= tw[i];
        b += n;
    }
    if (rem == 0)
        return 0;
    {
        /* Ciphertext stealing over the last full block m-1 and the tail. */
        const uint8_t *pm1 = in + (size_t)bulk * 16, *pm = pm1 + 16;
        uint8_t *om1 = out + (size_t)bulk * 16, *om = om1 + 16;
        uint8_t t2[16], cc[16], pp[16];

        memcpy(t2, t, 16);
        sec_xts_mul_x(t2);
        if (enc) {
            if (sec_xts_block(e->cctx, t, pm1, cc))
                goto out;
            memcpy(pp, pm, rem);
            memcpy(pp + rem, cc + rem, 16 - rem);
            memcpy(om, cc, rem);
            if (sec_xts_block(e->cctx, t2, pp, om1))
                goto out;
        } else {
            if (sec_xts_block(e->cctx, t2, pm1, pp))
                goto out;
            memcpy(cc, pm, rem);
            memcpy(cc + rem, pp + rem, 16 - rem);
            memcpy(om, pp, rem);
            if (sec_xts_block(e->cctx, t, cc, om1))
                goto out;
        }
        r = 0;
    }
out:
    return r ? sec_fail(e, -EIO, "libcrypto XTS stealing failed") : 0;
}

/* Sets cctx up for the job's plain (non-XTS) cipher with key and iv. */
static int sec_plain_setup(struct sec_engine *e, const struct sec_job *j, const uint8_t *key,
                           const uint8_t *iv)
{
    const unsigned keylen = sec_cipher_key_bytes(j->calg, j->cmode, j->ckey_code);
    uint8_t k3[24];
    const EVP_CIPHER *c;
    int r = 0;

    if (j->calg == SEC_ALG_3DES && keylen == 16) {
        /* Two keys: K1 K2 K1. */
        memcpy(k3, key, 16);
        memcpy(k3 + 16, key, 8);
        key = k3;
    }
    c = sec_engine_cipher(e, j->calg, j->cmode, keylen);
    if (c == NULL)
        r = sec_fail(e, SEC_E_BAD_ALG, "libcrypto has no cipher for alg %u mode %u", j->calg,
                     j->cmode);
    else if (sec_cipher_setup(e, c, key, iv, j->dir == SEC_DIR_ENC))
        r = sec_fail(e, -EIO, "libcrypto cipher init failed");
    OPENSSL_cleanse(k3, sizeof(k3));
    return r;
}

int sec_crypto_cipher(struct sec_engine *e, const struct sec_job *j, const uint8_t *key,
                      const uint8_t *iv, const uint8_t *in, uint8_t *out, uint32_t len)
{
    const unsigned keylen = sec_cipher_key_bytes(j->calg, j->cmode, j->ckey_code);
    int r;

    if (len == 0)
        return 0;
    if (j->cmode == SEC_MODE_XTS)
        return sec_xts(e, j->dir == SEC_DIR_ENC, key, keylen, iv, in, out, len);
    r = sec_plain_setup(e, j, key, iv);
    return r ? r : sec_update_chunks(e, in, out, len);
}

struct sec_src_pass {
    uint8_t *out;
    uint32_t produced;
};

static int sec_src_piece(struct sec_engine *e, const uint8_t *p, uint32_t n, void *arg)
{
    struct sec_src_pass *pass = arg;
    int outl = 0;

    if (EVP_CipherUpdate(e->cctx, pass->out + pass->produced, &outl, p, (int)n) != 1 || outl < 0)
        return sec_fail(e, -EIO, "libcrypto cipher update failed");
    pass->produced += (uint32_t)outl;
    return 0;
}

int sec_crypto_cipher_src(struct sec_engine *e, const struct sec_job *j, const uint8_t *key,
                          const uint8_t *iv, const struct sec_buf *src, uint8_t *out)
{
    struct sec_src_pass pass = {.out = out};
    int r;

    if (j->c_len == 0)
        return 0;
    r = sec_plain_setup(e, j, key, iv);
    if (r == 0)
        r = sec_buf_read_pieces(e, src, j->c_off, j->c_len, sec_src_piece, &pass);
    /* Pieces of an SGL need not be whole blocks: the context carries a
     * partial one over, and the payload is whole blocks (sec_decode). */
    if (r == 0 && pass.produced != j->c_len)
        r = sec_fail(e, -EIO, "libcrypto cipher produced %u of %u bytes", pass.produced,
                     j->c_len);
    return r;
}

/* ---- CCM and GCM ------------------------------------------------------------ */

int sec_crypto_aead(struct sec_engine *e, const struct sec_job *j, const uint8_t *key,
                    const uint8_t *iv, const uint8_t *aad, uint32_t alen, const uint8_t *in,
                    uint8_t *out, uint32_t len, uint8_t *tag)
{
    const unsigned keylen = sec_cipher_key_bytes(j->calg, j->cmode, j->ckey_code);
    const bool enc = j->dir == SEC_DIR_ENC, ccm = j->cmode == SEC_MODE_CCM;
    const EVP_CIPHER *c = sec_engine_cipher(e, j->calg, j->cmode, keylen);
    /* CCM: the driver's counter block A1 = flags (L - 1) | nonce | counter. */
    const unsigned L = (iv[0] & 7u) + 1u;
    const uint8_t *nonce = ccm ? iv + 1 : iv;
    const unsigned nlen = ccm ? 15u - L : 12u;
    static const uint8_t empty[1];
    int outl = 0, r;

    if (c == NULL)
        return sec_fail(e, SEC_E_BAD_ALG, "libcrypto has no AEAD for alg %u mode %u", j->calg,
                        j->cmode);
    /* AEAD state (IV length, tag, lengths) calls for a full setup each job;
     * the next plain pass sets its cipher up again. */
    e->cctx_cipher = NULL;
    if (EVP_CipherInit_ex(e->cctx, c, NULL, NULL, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(e->cctx, EVP_CTRL_AEAD_SET_IVLEN, (int)nlen, NULL) != 1)
        return sec_fail(e, -EIO, "libcrypto AEAD setup failed");
    if (ccm && EVP_CIPHER_CTX_ctrl(e->cctx, EVP_CTRL_AEAD_SET_TAG, (int)j->mac_len,
                                   enc ? NULL : tag) != 1)
        return sec_fail(e, -EIO, "libcrypto CCM tag setup failed");
    if (EVP_CipherInit_ex(e->cctx, NULL, NULL, key, nonce, enc) != 1)
        return sec_fail(e, -EIO, "libcrypto AEAD key setup failed");
    if (ccm && EVP_CipherUpdate(e->cctx, NULL, &outl, NULL, (int)len) != 1)
        return sec_fail(e, -EIO, "libcrypto CCM length setup failed");
    if (alen && EVP_CipherUpdate(e->cctx, NULL, &outl, aad, (int)alen) != 1)
        return sec_fail(e, -EIO, "libcrypto AEAD AAD failed");
    if (ccm) {
        /* CCM takes the payload in one call; on decryption that call checks
         * the tag. */
        r = EVP_CipherUpdate(e->cctx, len ? out : (uint8_t *)empty, &outl, len ? in : empty,
                             (int)len);
        if (r != 1)
            return enc ? sec_fail(e, -EIO, "libcrypto CCM failed")
                       : sec_fail(e, SEC_ICV_MISMATCH, "CCM tag does not verify");
        if (enc && EVP_CIPHER_CTX_ctrl(e->cctx, EVP_CTRL_AEAD_GET_TAG, (int)j->mac_len, tag) != 1)
            return sec_fail(e, -EIO, "libcrypto CCM tag failed");
        return 0;
    }
    r = sec_update_chunks(e, in, out, len);
    if (r)
        return r;
    if (!enc && EVP_CIPHER_CTX_ctrl(e->cctx, EVP_CTRL_AEAD_SET_TAG, (int)j->mac_len, tag) != 1)
        return sec_fail(e, -EIO, "libcrypto GCM tag setup failed");
    if (EVP_CipherFinal_ex(e->cctx, out + len, &outl) != 1)
        return enc ? sec_fail(e, -EIO, "libcrypto GCM final failed")
                   : sec_fail(e, SEC_ICV_MISMATCH, "GCM tag does not verify");
    if (enc && EVP_CIPHER_CTX_ctrl(e->cctx, EVP_CTRL_AEAD_GET_TAG, (int)j->mac_len, tag) != 1)
        return sec_fail(e, -EIO, "libcrypto GCM tag failed");
    return 0;
}

/* ---- HMAC ------------------------------------------------------------------------ */

int sec_crypto_hmac(struct sec_engine *e, unsigned aalg, const uint8_t *key, unsigned keylen,
                    const uint8_t *data, uint32_t len, uint8_t mac[64])
{
    const char *md = aalg == SEC_AALG_HMAC_SHA1     ? "SHA1"
                     : aalg == SEC_AALG_HMAC_SHA256 ? "SHA256"
                                                    : "SHA512";
    OSSL_PARAM params[2] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)md, 0),
                            OSSL_PARAM_construct_end()};
    /* A key of 0 bytes is still a key (not "keep the last one"). */
    static const uint8_t nokey[1];
    size_t outl = 0;
    EVP_MAC_CTX *c;

    if (e->hctx == NULL && (e->hctx = EVP_MAC_CTX_new(e->hmac)) == NULL)
        return -ENOMEM;
    c = e->hctx;
    if (EVP_MAC_init(c, keylen ? key : nokey, keylen, e->hctx_aalg == aalg ? NULL : params) != 1) {
        e->hctx_aalg = 0;
        return sec_fail(e, -EIO, "libcrypto HMAC init failed");
    }
    e->hctx_aalg = aalg;
    for (uint32_t k = 0; k < len;) {
        uint32_t n = len - k < SEC_CHUNK ? len - k : SEC_CHUNK;

        if (k > 0 && sec_job_cancelled(e))
            return -ECANCELED; /* the next init starts the context over */
        if (EVP_MAC_update(c, data + k, n) != 1)
            return sec_fail(e, -EIO, "libcrypto HMAC update failed");
        k += n;
    }
    if (EVP_MAC_final(c, mac, &outl, 64) != 1 || outl != sec_hash_digest_bytes(aalg))
        return sec_fail(e, -EIO, "libcrypto HMAC final failed");
    return 0;
}
