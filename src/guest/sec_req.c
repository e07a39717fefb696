/* sec_req: the SEC job kinds of the workload (wl_crypto.h): the type-3 BD
 * hisi_sec2 sends (sec_hw.h) for AES-CBC, -CTR, -XTS and -GCM, and the
 * same operations with libcrypto to check the device against.
 *
 * Buffers of a vCPU: in = AAD | payload; out1 = AAD | ciphertext | tag
 * (GCM's 16-byte tag right after the ciphertext, where the BD's MAC
 * address points, so op 0's result is one range); out2 = AAD | plaintext.
 * aux = cipher key (64 bytes room) | IV (16).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/common.h"
#include "guest/wl_crypto.h"
#include "sec/sec_hw.h"

#define SEC_REQ_SALT 0x5345433153454331ull /* "SEC1SEC1": the SEC draws' own sequence */
#define SEC_REQ_TAG_LEN 16u
#define SEC_REQ_AUX_KEY 0u
#define SEC_REQ_AUX_IV 64u

enum sec_req_kind { SEC_REQ_CBC = 0, SEC_REQ_CTR, SEC_REQ_XTS, SEC_REQ_GCM, SEC_REQ_KINDS };

static const char *const sec_req_kind_names[SEC_REQ_KINDS] = {
    [SEC_REQ_CBC] = "cbc(aes)", [SEC_REQ_CTR] = "ctr(aes)", [SEC_REQ_XTS] = "xts(aes)",
    [SEC_REQ_GCM] = "gcm(aes)",
};

static unsigned sec_req_alg_type(unsigned qp)
{
    (void)qp;
    return 0; /* hisi_sec2's queues are all type 0 */
}

/* Log-uniform in [lo, hi], as the ZIP jobs draw their sizes. */
static uint32_t sec_req_size(uint64_t *s, uint32_t lo, uint32_t hi)
{
    unsigned blo = 31 - (unsigned)__builtin_clz(lo), bhi = 31 - (unsigned)__builtin_clz(hi);
    unsigned b = blo + (unsigned)(wlc_rand(s) % (bhi - blo + 1));
    uint64_t v = (1ull << b) + wlc_rand(s) % (1ull << b);

    return (uint32_t)AM_MIN(AM_MAX(v, (uint64_t)lo), (uint64_t)hi);
}

static void sec_req_draw(const struct wlc_ctx *ctx, const struct workload_config *cfg,
                         uint32_t job, struct wlc_job *j)
{
    static const uint32_t aes_keys[3] = {16, 24, 32};
    uint64_t s = wlc_job_seed(cfg->seed, job, SEC_REQ_SALT);
    uint32_t len;

    (void)ctx;
    memset(j, 0, sizeof(*j));
    j->kind = (unsigned)(wlc_rand(&s) % SEC_REQ_KINDS);
    len = sec_req_size(&s, cfg->min_size, cfg->max_size);
    j->key_len = j->kind == SEC_REQ_XTS ? (wlc_rand(&s) % 2 ? 64u : 32u)
                                        : aes_keys[wlc_rand(&s) % 3];
    if (j->kind == SEC_REQ_CBC)
        len = AM_MAX(len & ~15u, 16u); /* whole blocks */
    if (j->kind == SEC_REQ_XTS)
        len = AM_MAX(len, 16u); /* at least one block; a tail is stolen */
    j->aad_len = j->kind == SEC_REQ_GCM ? 16u + (uint32_t)(wlc_rand(&s) % 49) : 0u;
    j->in_len = len;
    j->res_off = j->aad_len;
    j->res_len = len + (j->kind == SEC_REQ_GCM ? SEC_REQ_TAG_LEN : 0u);
    j->out2_off = j->aad_len;
    j->out2_len = len;
    /* Every other job enciphers in place, as hisi_sec2 does for in-place
     * requests: a migration that revokes one after its output landed must
     * not make it run again on that output. */
    j->in_place = job % 2 == 1;
    j->parity[0] = 0; /* encrypt on 2k */
    j->parity[1] = 1; /* decrypt on 2k+1 */
    j->s = s;
}

static unsigned sec_req_iv_len(const struct wlc_job *j)
{
    return j->kind == SEC_REQ_GCM ? 12u : 16u;
}

/* The job's bytes in the order they are drawn: key, IV, AAD, payload. */
static void sec_req_data(const struct wlc_job *j, uint8_t *key, uint8_t *iv, uint8_t *aad,
                         uint8_t *payload)
{
    uint64_t s = j->s;

    wlc_fill(key, j->key_len, &s);
    /* libcrypto refuses XTS keys whose halves are equal (so does FIPS). */
    if (j->kind == SEC_REQ_XTS && memcmp(key, key + j->key_len / 2, j->key_len / 2) == 0)
        key[0] ^= 1u;
    wlc_fill(iv, sec_req_iv_len(j), &s);
    wlc_fill(aad, j->aad_len, &s);
    wlc_fill(payload, j->in_len, &s);
}

static int sec_req_gen(const struct wlc_ctx *ctx, const struct wlc_job *j, const struct wlc_bufs *b)
{
    uint8_t *in = j->in_place ? b->out1 : b->in;

    (void)ctx;
    /* Poison both outputs: stale bytes of an earlier job never pass (in
     * place, the input then overwrites out1 but for GCM's tag). */
    memset(b->out1, 0xa5, (size_t)j->aad_len + j->res_len);
    memset(b->out2, 0x5a, (size_t)j->aad_len + j->out2_len);
    sec_req_data(j, b->aux + SEC_REQ_AUX_KEY, b->aux + SEC_REQ_AUX_IV, in, in + j->aad_len);
    return 0;
}

static unsigned sec_req_mode(unsigned kind)
{
    return kind == SEC_REQ_CBC ? SEC_MODE_CBC : kind == SEC_REQ_CTR ? SEC_MODE_CTR
                                            : kind == SEC_REQ_XTS ? SEC_MODE_XTS : SEC_MODE_GCM;
}

/* c_key_len: 128/192/256 bits; XTS per half. */
static unsigned sec_req_key_code(const struct wlc_job *j)
{
    unsigned bits = (j->kind == SEC_REQ_XTS ? j->key_len / 2 : j->key_len) * 8;

    return bits == 128 ? 0u : bits == 192 ? 1u : 2u;
}

static int sec_req_sqe(const struct wlc_job *j, const struct wlc_bufs *b, unsigned op,
                       uint64_t tag, uint32_t sqe[GUEST_SQE_MAX_DWORDS])
{
    const uint64_t mac = b->out1_gpa + j->aad_len + j->in_len; /* the tag follows the ciphertext */
    const int gcm = j->kind == SEC_REQ_GCM;

    if (op > 1 || j->kind >= SEC_REQ_KINDS)
        return -EINVAL;
    memset(sqe, 0, GUEST_SQE_MAX_SIZE);
    /* Type 3, common scene, a destination address (de = 1; for an in-place
     * op 0 it is the source's), flat buffers. */
    sqe[SEC_DW_BD_PARAM] = SEC_BD_TYPE3 | 1u << SEC_BD_DE_SHIFT;
    sqe[SEC_DW_CIPHER] = (op == 0 ? SEC_DIR_ENC : SEC_DIR_DEC) |
                         (gcm ? SEC_REQ_TAG_LEN << SEC_ICV_LEN_SHIFT : 0u) |
                         sec_req_key_code(j) << SEC_CKEY_LEN_SHIFT |
                         sec_req_mode(j->kind) << SEC_CMODE_SHIFT |
                         (uint32_t)SEC_ALG_AES << SEC_CALG_SHIFT;
    wlc_put64(sqe, SEC_DW_TAG_L, tag);
    wlc_put64(sqe, SEC_DW_SRC_L, op == 1 || j->in_place ? b->out1_gpa : b->in_gpa);
    wlc_put64(sqe, SEC_DW_DST_L, op == 0 ? b->out1_gpa : b->out2_gpa);
    wlc_put64(sqe, SEC_DW_CKEY_L, b->aux_gpa + SEC_REQ_AUX_KEY);
    wlc_put64(sqe, SEC_DW_CIV_L, b->aux_gpa + SEC_REQ_AUX_IV);
    sqe[SEC_DW_OFFSETS] = j->aad_len << 16; /* AAD at 0, the payload after it */
    sqe[SEC_DW_AUTH_LEN] = j->aad_len;
    sqe[SEC_DW_CIPHER_LEN] = j->in_len;
    if (gcm)
        wlc_put64(sqe, SEC_DW_MAC_L, mac);
    return 0;
}

static bool sec_req_status_ok(uint32_t done)
{
    return (done & SEC_DONE) && ((done >> SEC_ICV_SHIFT) & 7u) != SEC_ICV_ERR &&
           ((done >> SEC_ERR_SHIFT) & 0xffu) == 0;
}

static const EVP_CIPHER *sec_req_evp(const struct wlc_job *j)
{
    const unsigned bits = (j->kind == SEC_REQ_XTS ? j->key_len / 2 : j->key_len) * 8;
    const int i = bits == 128 ? 0 : bits == 192 ? 1 : 2;

    switch (j->kind) {
    case SEC_REQ_CBC: return (const EVP_CIPHER *[]){EVP_aes_128_cbc(), EVP_aes_192_cbc(), EVP_aes_256_cbc()}[i];
    case SEC_REQ_CTR: return (const EVP_CIPHER *[]){EVP_aes_128_ctr(), EVP_aes_192_ctr(), EVP_aes_256_ctr()}[i];
    case SEC_REQ_XTS: return i == 0 ? EVP_aes_128_xts() : EVP_aes_256_xts();
    default: return (const EVP_CIPHER *[]){EVP_aes_128_gcm(), EVP_aes_192_gcm(), EVP_aes_256_gcm()}[i];
    }
}

/* libcrypto's encryption of the payload: ciphertext (and GCM's tag) into out. */
static int sec_req_encrypt(const struct wlc_job *j, const uint8_t *key, const uint8_t *iv,
                           const uint8_t *aad, const uint8_t *in, uint8_t *out)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, ok;

    ok = c && EVP_EncryptInit_ex(c, sec_req_evp(j), NULL, NULL, NULL) == 1 &&
         EVP_CIPHER_CTX_set_padding(c, 0) == 1 &&
         (j->kind != SEC_REQ_GCM ||
          EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) == 1) &&
         EVP_EncryptInit_ex(c, NULL, NULL, key, iv) == 1 &&
         (j->aad_len == 0 || EVP_EncryptUpdate(c, NULL, &n, aad, (int)j->aad_len) == 1) &&
         EVP_EncryptUpdate(c, out, &n, in, (int)j->in_len) == 1 &&
         EVP_EncryptFinal_ex(c, out + n, &n) == 1 &&
         (j->kind != SEC_REQ_GCM ||
          EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, SEC_REQ_TAG_LEN, out + j->in_len) == 1);
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : -EIO;
}

static int sec_req_expect(const struct wlc_ctx *ctx, const struct wlc_job *j, unsigned op,
                          uint8_t *buf, size_t cap)
{
    uint8_t key[64], iv[16];
    uint8_t *aad_in;
    int ret;

    (void)ctx;
    if (op > 1 || cap < (op == 0 ? j->res_len : j->out2_len))
        return -ENOSPC;
    aad_in = malloc((size_t)j->aad_len + j->in_len);
    if (!aad_in)
        return -ENOMEM;
    sec_req_data(j, key, iv, aad_in, aad_in + j->aad_len);
    if (op == 1) {
        memcpy(buf, aad_in + j->aad_len, j->in_len);
        ret = 0;
    } else {
        ret = sec_req_encrypt(j, key, iv, aad_in, aad_in + j->aad_len, buf);
    }
    free(aad_in);
    return ret;
}

const struct wlc_ops wlc_sec_ops = {
    .engine = GUEST_ENGINE_SEC,
    .nkinds = SEC_REQ_KINDS,
    .kind_names = sec_req_kind_names,
    .queue_alg_type = sec_req_alg_type,
    .ctx_size = 0, /* nothing to derive: the keys come with each job */
    .draw = sec_req_draw,
    .gen = sec_req_gen,
    .sqe = sec_req_sqe,
    .status_ok = sec_req_status_ok,
    .expect = sec_req_expect,
};
