/* sec: decode and validation of a type-3 BD, and the job's steps: describe
 * the buffers, gather the source, read keys/IVs/MAC, compute, scatter the
 * destination, write the MAC, set the result (sec.h has the contract).
 * Validation order: BD header (type, scene, address types), the operation
 * (cipher direction, algorithm, mode, auth), key and MAC lengths, data
 * lengths and offsets; only then any DMA. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/common.h"
#include "sec/sec_int.h"

int sec_engine_create(struct sec_engine **out)
{
    struct sec_engine *e = calloc(1, sizeof(*e));

    if (e == NULL)
        return -ENOMEM;
    e->cctx = EVP_CIPHER_CTX_new();
    e->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (e->cctx == NULL || e->hmac == NULL) {
        am_log(AM_LOG_ERR, SEC_LOG, "libcrypto: no cipher context or HMAC");
        sec_engine_destroy(e);
        return -EIO;
    }
    *out = e;
    return 0;
}

void sec_engine_destroy(struct sec_engine *e)
{
    if (e == NULL)
        return;
    EVP_CIPHER_CTX_free(e->cctx);
    sec_crypto_release(e);
    EVP_MAC_free(e->hmac);
    if (e->buf)
        OPENSSL_cleanse(e->buf, e->cap);
    free(e->buf);
    sec_buf_free(&e->src);
    sec_buf_free(&e->dst);
    free(e);
}

const char *sec_engine_last_error(const struct sec_engine *e)
{
    return e->last_error;
}

static uint64_t sec_addr(const uint32_t *bd, unsigned lo)
{
    return (uint64_t)bd[lo + 1] << 32 | bd[lo];
}

/* The BD's fields, checked against each other; no DMA yet. */
static int sec_decode(struct sec_engine *e, const uint32_t *bd, struct sec_job *j)
{
    const uint32_t p = bd[SEC_DW_BD_PARAM], c = bd[SEC_DW_CIPHER], a = bd[SEC_DW_AUTH];
    unsigned scene, de, mac_type, icv_len;
    uint64_t cend, aend;

    memset(j, 0, sizeof(*j));
    if ((p & SEC_BD_TYPE_MASK) != SEC_BD_TYPE3)
        return sec_fail(e, SEC_E_BAD_BD, "BD type %u, not 3", p & SEC_BD_TYPE_MASK);
    if (p & SEC_BD_INVALID)
        return sec_fail(e, SEC_E_BAD_BD, "BD marked invalid");
    scene = (p >> SEC_BD_SCENE_SHIFT) & 0xfu;
    de = (p >> SEC_BD_DE_SHIFT) & 0x3u;
    j->src_type = (p >> SEC_BD_SRC_TYPE_SHIFT) & 0x7u;
    j->dst_type = (p >> SEC_BD_DST_TYPE_SHIFT) & 0x7u;
    mac_type = (p >> SEC_BD_MAC_TYPE_SHIFT) & 0x7u;
    if (scene != 0)
        return sec_fail(e, SEC_E_BAD_BD, "scene %u (only the common scene 0)", scene);
    if (de > 1)
        return sec_fail(e, SEC_E_BAD_BD, "de %u", de);
    if (mac_type != SEC_ADDR_PBUF)
        return sec_fail(e, SEC_E_BAD_BD, "MAC address type %u (only flat)", mac_type);
    j->de = de == 1;

    j->dir = c & SEC_CIPHER_DIR_MASK;
    icv_len = (c >> SEC_ICV_LEN_SHIFT) & SEC_ICV_LEN_MASK;
    j->ckey_code = (c >> SEC_CKEY_LEN_SHIFT) & 0x7u;
    j->cmode = (c >> SEC_CMODE_SHIFT) & 0xfu;
    j->calg = (c >> SEC_CALG_SHIFT) & 0xfu;
    j->auth_first = c & SEC_SEQ_AUTH_FIRST;
    j->auth = a & SEC_AUTH_MASK;
    j->aalg = (a >> SEC_AALG_SHIFT) & SEC_AALG_MASK;
    j->c_off = bd[SEC_DW_OFFSETS] >> 16;
    j->a_off = bd[SEC_DW_OFFSETS] & 0xffffu;
    j->c_len = bd[SEC_DW_CIPHER_LEN] & SEC_LEN_MASK;
    j->a_len = bd[SEC_DW_AUTH_LEN] & SEC_LEN_MASK;
    j->src = sec_addr(bd, SEC_DW_SRC_L);
    j->dst = j->de ? sec_addr(bd, SEC_DW_DST_L) : j->src;
    if (!j->de)
        j->dst_type = j->src_type;
    j->ckey = sec_addr(bd, SEC_DW_CKEY_L);
    j->akey = sec_addr(bd, SEC_DW_AKEY_L);
    j->civ = sec_addr(bd, SEC_DW_CIV_L);
    j->mac = sec_addr(bd, SEC_DW_MAC_L);

    if (j->dir == 3)
        return sec_fail(e, SEC_E_BAD_BD, "cipher direction 3");
    if (j->auth == 3)
        return sec_fail(e, SEC_E_BAD_BD, "auth type 3");
    if (j->dir == SEC_DIR_NONE && j->auth == SEC_AUTH_NONE)
        return sec_fail(e, SEC_E_BAD_BD, "neither cipher nor auth");
    if (j->dir != SEC_DIR_NONE) {
        if (!sec_cipher_known(j->calg, j->cmode))
            return sec_fail(e, SEC_E_BAD_ALG, "cipher alg %u mode %u not supported", j->calg,
                            j->cmode);
        if (sec_cipher_key_bytes(j->calg, j->cmode, j->ckey_code) == 0)
            return sec_fail(e, SEC_E_BAD_KEY_LEN, "c_key_len %u invalid for alg %u mode %u",
                            j->ckey_code, j->calg, j->cmode);
    }
    j->xcm = j->dir != SEC_DIR_NONE && (j->cmode == SEC_MODE_CCM || j->cmode == SEC_MODE_GCM);
    if (j->xcm) {
        const bool ccm = j->cmode == SEC_MODE_CCM;

        if (j->auth != SEC_AUTH_NONE)
            return sec_fail(e, SEC_E_BAD_BD, "%s with a separate auth type %u",
                            ccm ? "CCM" : "GCM", j->auth);
        if (icv_len < 4 || icv_len > 16 || (ccm && (icv_len & 1u)))
            return sec_fail(e, SEC_E_BAD_MAC_LEN, "%s tag length %u", ccm ? "CCM" : "GCM",
                            icv_len);
        j->mac_len = icv_len;
    } else if (j->auth != SEC_AUTH_NONE) {
        const unsigned digest = sec_hash_digest_bytes(j->aalg);

        if (digest == 0)
            return sec_fail(e, SEC_E_BAD_ALG, "auth alg %#x not supported", j->aalg);
        j->mac_len = 4u * ((a >> SEC_MAC_LEN_SHIFT) & SEC_MAC_LEN_MASK);
        j->akey_len = 4u * ((a >> SEC_AKEY_LEN_SHIFT) & SEC_AKEY_LEN_MASK);
        if (j->mac_len == 0 || j->mac_len > digest)
            return sec_fail(e, SEC_E_BAD_MAC_LEN, "mac_len %u bytes for a %u-byte digest",
                            j->mac_len, digest);
        if (j->akey_len > sec_hash_block_bytes(j->aalg))
            return sec_fail(e, SEC_E_BAD_KEY_LEN, "auth key of %u bytes exceeds the %u-byte "
                            "hash block", j->akey_len, sec_hash_block_bytes(j->aalg));
    }

    /* Lengths: the cipher's block rules, then the span of the source. */
    if (j->dir != SEC_DIR_NONE) {
        const unsigned blk = sec_cipher_block_bytes(j->calg, j->cmode);

        if (j->cmode == SEC_MODE_XTS && j->c_len < 16)
            return sec_fail(e, SEC_E_BAD_LEN, "XTS length %u is below one block", j->c_len);
        if (j->cmode != SEC_MODE_XTS && j->c_len % blk)
            return sec_fail(e, SEC_E_BAD_LEN, "length %u not a multiple of the %u-byte block",
                            j->c_len, blk);
        if (j->cmode == SEC_MODE_CCM && j->c_len > SEC_MAX_DATA)
            return sec_fail(e, SEC_E_BAD_LEN, "CCM length %u too long", j->c_len);
    }
    cend = j->dir != SEC_DIR_NONE ? (uint64_t)j->c_off + j->c_len : 0;
    aend = j->auth != SEC_AUTH_NONE || j->xcm ? (uint64_t)j->a_off + j->a_len : 0;
    if (j->xcm && aend > j->c_off)
        return sec_fail(e, SEC_E_BAD_LEN, "AAD [%u, +%u) overlaps the payload at %u", j->a_off,
                        j->a_len, j->c_off);
    j->total = cend > aend ? cend : aend;
    if (j->total > SEC_MAX_DATA)
        return sec_fail(e, SEC_E_BAD_LEN, "BD spans %llu bytes, over %u",
                        (unsigned long long)j->total, SEC_MAX_DATA);
    return 0;
}

static int sec_reserve(struct sec_engine *e, uint64_t len)
{
    size_t want = len + 16; /* GCM's final may write nothing past len; room to spare */
    uint8_t *buf;

    if (want <= e->cap)
        return 0;
    buf = malloc(want);
    if (buf == NULL)
        return -ENOMEM;
    if (e->buf)
        OPENSSL_cleanse(e->buf, e->cap);
    free(e->buf);
    e->buf = buf;
    e->cap = want;
    return 0;
}

static int sec_read(struct sec_engine *e, uint64_t iova, void *buf, unsigned len, const char *what)
{
    if (len && iommu_dma_read(e->d, iova, buf, len) != 0)
        return sec_fail(e, SEC_E_DMA_FAULT, "%s at %#llx unreadable", what,
                        (unsigned long long)iova);
    return 0;
}

/* Whether the job's output (e->dst, described for out_len bytes, and the
 * output MAC) overlaps anything it reads: its source, keys, IV or the MAC
 * it verifies. Such a job, cancelled after a write and run again, would
 * read its own output: its writes are held for the commit. */
static bool sec_job_in_place(const struct sec_engine *e, const struct sec_job *j, uint64_t out_len,
                             bool mac_out, unsigned klen, unsigned ivlen, bool verify)
{
    const struct {
        uint64_t iova, len;
    } in[] = {
        {j->ckey, klen},
        {j->akey, j->auth != SEC_AUTH_NONE ? j->akey_len : 0},
        {j->civ, ivlen},
        {j->mac, verify ? j->mac_len : 0},
    };

    for (unsigned i = 0; out_len && i < e->dst.nsegs; i++) {
        const struct sec_seg *s = &e->dst.segs[i];

        if (sec_buf_overlaps(&e->src, s->iova, s->len))
            return true;
        for (unsigned k = 0; k < AM_ARRAY_SIZE(in); k++)
            if (in[k].len && sec_buf_overlaps(&e->dst, in[k].iova, in[k].len))
                return true;
    }
    if (mac_out) {
        if (sec_buf_overlaps(&e->src, j->mac, j->mac_len))
            return true;
        for (unsigned k = 0; k < AM_ARRAY_SIZE(in); k++) {
            struct sec_buf one = {.segs = &(struct sec_seg){.iova = in[k].iova, .len = in[k].len},
                                  .nsegs = 1};

            if (in[k].len && sec_buf_overlaps(&one, j->mac, j->mac_len))
                return true;
        }
    }
    return false;
}

/* The job after decoding. Returns 0, a sec_error, SEC_ICV_MISMATCH, or
 * -errno. */
static int sec_execute(struct sec_engine *e, const struct sec_job *j)
{
    uint8_t ckey[64], akey[128], iv[16] = {0}, mac[64], want_mac[64];
    const unsigned klen = j->dir ? sec_cipher_key_bytes(j->calg, j->cmode, j->ckey_code) : 0;
    const unsigned ivlen = j->dir ? sec_cipher_iv_bytes(j->calg, j->cmode) : 0;
    const bool verify = j->auth == SEC_AUTH_VERIFY || (j->xcm && j->dir == SEC_DIR_DEC);
    /* A plain cipher reads its payload straight from guest memory
     * (sec_crypto_cipher_src): only the bytes before it are gathered, and
     * only when they are copied to a separate destination. */
    const bool direct = j->dir != SEC_DIR_NONE && j->auth == SEC_AUTH_NONE && !j->xcm &&
                        j->cmode != SEC_MODE_XTS;
    uint64_t out_len;
    bool mac_out;
    int r;

    e->in_place = false;
    r = sec_reserve(e, j->total);
    if (r)
        return r;
    r = sec_buf_describe(e, &e->src, j->src_type, j->src, j->total);
    if (r == 0)
        r = sec_buf_gather(e, &e->src, e->buf, direct ? (j->de ? j->c_off : 0) : j->total);
    if (r == 0)
        r = sec_read(e, j->ckey, ckey, klen, "cipher key");
    if (r == 0 && j->auth != SEC_AUTH_NONE)
        r = sec_read(e, j->akey, akey, j->akey_len, "auth key");
    if (r == 0)
        r = sec_read(e, j->civ, iv, ivlen, "cipher IV");
    if (r == 0 && verify)
        r = sec_read(e, j->mac, want_mac, j->mac_len, "MAC to verify");
    if (r)
        goto out;
    if (j->xcm && j->cmode == SEC_MODE_CCM) {
        const unsigned L = (iv[0] & 7u) + 1u;

        if (L < 2 || L > 8) {
            r = sec_fail(e, SEC_E_BAD_IV, "CCM counter block L field %u", L);
            goto out;
        }
        if (L < 4 && (uint64_t)j->c_len >> (8 * L)) {
            r = sec_fail(e, SEC_E_BAD_IV, "CCM length %u does not fit L = %u", j->c_len, L);
            goto out;
        }
    }
    if (sec_job_cancelled(e)) {
        r = -ECANCELED;
        goto out;
    }

    /* The destination image is the source's bytes with the payload
     * ciphered in place: what precedes the payload (the AAD) and follows it
     * stays, and a MAC over the output covers what it spans of either. An
     * input MAC (seq 1, or auth without a cipher) is taken before the
     * cipher overwrites the payload; CCM/GCM's AAD lies before it. */
    out_len = j->dir ? (uint64_t)j->c_off + j->c_len : 0;
    if (j->xcm) {
        r = sec_crypto_aead(e, j, ckey, iv, e->buf + j->a_off, j->a_len, e->buf + j->c_off,
                            e->buf + j->c_off, j->c_len, j->dir == SEC_DIR_ENC ? mac : want_mac);
    } else {
        if (j->auth != SEC_AUTH_NONE && (j->auth_first || j->dir == SEC_DIR_NONE))
            r = sec_crypto_hmac(e, j->aalg, akey, j->akey_len, e->buf + j->a_off, j->a_len, mac);
        if (r == 0 && direct)
            r = sec_crypto_cipher_src(e, j, ckey, iv, &e->src, e->buf + j->c_off);
        else if (r == 0 && j->dir != SEC_DIR_NONE)
            r = sec_crypto_cipher(e, j, ckey, iv, e->buf + j->c_off, e->buf + j->c_off, j->c_len);
        if (r == 0 && j->auth != SEC_AUTH_NONE && !j->auth_first && j->dir != SEC_DIR_NONE)
            r = sec_crypto_hmac(e, j->aalg, akey, j->akey_len, e->buf + j->a_off, j->a_len, mac);
        if (r == 0 && j->auth == SEC_AUTH_VERIFY && CRYPTO_memcmp(mac, want_mac, j->mac_len) != 0)
            r = sec_fail(e, SEC_ICV_MISMATCH, "HMAC does not verify");
    }
    if (r)
        goto out;
    if (out_len)
        r = sec_buf_describe(e, &e->dst, j->dst_type, j->dst, out_len);
    if (r)
        goto out;
    mac_out = j->auth == SEC_AUTH_MAC || (j->xcm && j->dir == SEC_DIR_ENC);
    e->in_place = sec_job_in_place(e, j, out_len, mac_out, klen, ivlen, verify);
    if (out_len) {
        /* In place, only the ciphered bytes change. */
        uint64_t from = j->de ? 0 : j->c_off;

        r = sec_buf_scatter(e, &e->dst, from, e->buf + from, out_len - from);
    }
    if (r == 0 && mac_out) {
        memcpy(e->mac_out, mac, j->mac_len);
        r = sec_write_flat(e, j->mac, e->mac_out, j->mac_len);
    }
out:
    OPENSSL_cleanse(ckey, sizeof(ckey));
    OPENSSL_cleanse(akey, sizeof(akey));
    return r;
}

int sec_engine_run(struct sec_engine *e, struct iommu_domain *d, uint32_t bd[SEC_SQE_DWORDS],
                   unsigned alg_type, const struct sec_job_ops *ops, void *opaque)
{
    struct sec_job j;
    uint32_t done;
    int r;

    if (e == NULL || d == NULL || bd == NULL || alg_type != 0)
        return -EINVAL;
    e->d = d;
    e->ops = ops;
    e->opaque = opaque;
    e->last_error[0] = '\0';
    r = sec_decode(e, bd, &j);
    if (r == 0)
        r = sec_execute(e, &j);
    e->d = NULL;
    e->ops = NULL;
    e->opaque = NULL;
    if (r == -ECANCELED)
        return r;
    if (r == -EIO) {
        am_log(AM_LOG_ERR, SEC_LOG, "engine failure: %s", e->last_error);
        return r;
    }
    if (r == -ENOMEM)
        r = sec_fail(e, SEC_E_BAD_LEN, "no memory for a %llu-byte job",
                     (unsigned long long)j.total);
    done = SEC_DONE;
    if (r == SEC_ICV_MISMATCH)
        done |= SEC_ICV_ERR << SEC_ICV_SHIFT;
    else if (r > 0)
        done |= (uint32_t)r << SEC_ERR_SHIFT;
    done |= (j.auth != SEC_AUTH_NONE || j.xcm ? SEC_FLAG_AEAD : SEC_FLAG_CIPHER) << SEC_FLAG_SHIFT;
    bd[SEC_DW_DONE] = done;
    return 0;
}
