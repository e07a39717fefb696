/* sec_int: private to the SEC engine. A job's buffers are described as
 * ordered DMA segments (sec_buf.c), gathered into one host buffer, computed
 * there in place with libcrypto (sec_crypto.c) and scattered back through
 * the caller's write op. A plain cipher (no MAC, not XTS) skips the gather
 * of its payload: it reads the source from guest memory in pieces into the
 * host buffer (sec_buf_read_pieces), and the output goes back the same way
 * as the others'. */
#ifndef ACCMIG_SEC_INT_H
#define ACCMIG_SEC_INT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "sec/sec.h"

#define SEC_LOG "sec"
#define SEC_SGL_MAX_ENTRIES 255u /* per SGL */
#define SEC_SGL_MAX_CHAIN 256u   /* SGLs in one chain before it counts as a loop */
/* Source bytes a plain cipher takes per piece straight from guest memory
 * (sec_buf_read_pieces): the domain's mapping table stays pinned for one
 * piece's cipher work, about as long as a 64 KiB copy holds it. */
#define SEC_DIRECT_PIECE 4096u

struct sec_seg {
    uint64_t iova;
    uint64_t len;
};

/* The bytes [0, len) of a BD's buffer, in order. */
struct sec_buf {
    struct sec_seg *segs;
    unsigned nsegs, cap;
    uint64_t len;
};

/* A BD, decoded. Lengths in bytes. */
struct sec_job {
    unsigned dir;       /* enum sec_cipher_dir */
    unsigned calg, cmode, ckey_code;
    unsigned auth;      /* enum sec_auth */
    unsigned aalg;
    unsigned mac_len;   /* authenc: mac_len words * 4; CCM/GCM: c_icv_len */
    unsigned akey_len;
    bool auth_first;    /* seq: authenticate the input, then decipher */
    bool de;            /* destination apart from the source */
    bool xcm;           /* CCM or GCM */
    unsigned src_type, dst_type;
    uint64_t src, dst, ckey, akey, civ, mac;
    uint32_t c_off, c_len, a_off, a_len;
    uint64_t total;     /* bytes of the source the job reads */
};

/* Library ciphers by c_alg (1..3), c_mode (0..7) and key size (128, 192,
 * 256 bits; 3DES: slot 0). */
#define SEC_EVP_SLOTS (4u * 8u * 3u)

struct sec_engine {
    EVP_CIPHER_CTX *cctx;
    /* The cipher cctx was last set up with for a plain (non-AEAD) pass, so
     * the next job with the same cipher only loads its key and IV; NULL
     * after an AEAD job or a failed setup. */
    const EVP_CIPHER *cctx_cipher;
    /* Each cipher fetched from the provider once, on first use: passing
     * libcrypto's EVP_aes_*() objects makes every init look the
     * implementation up again. */
    EVP_CIPHER *fetched[SEC_EVP_SLOTS];
    EVP_MAC *hmac;
    /* One HMAC context for the engine's life (made on first use), and the
     * a_alg its digest is set for (0: none yet, or after a failure): a job
     * with the same a_alg only loads its key, without the digest fetch
     * that setting the digest parameter costs. */
    EVP_MAC_CTX *hctx;
    unsigned hctx_aalg;
    /* The job's image: the source's bytes, then the destination's as the
     * computation overwrites them in place. */
    uint8_t *buf;
    size_t cap;
    struct sec_buf src, dst;
    /* A source piece that cannot be read in place (sec_buf_read_pieces). */
    uint8_t bounce[SEC_DIRECT_PIECE];
    /* the job in progress */
    bool in_place;       /* its output overlaps its input: held for the commit */
    uint8_t mac_out[64]; /* its output MAC (held writes must outlive the job) */
    struct iommu_domain *d;
    const struct sec_job_ops *ops;
    void *opaque;
    char last_error[192];
};

/* Negative errno (-ECANCELED, -EIO), 0, or a positive enum sec_error: the
 * convention of the job's internal steps. */

/* sec_buf.c */
/* Whether any byte of [iova, iova+len) lies in b's segments (an overflowing
 * range counts as overlapping). */
bool sec_buf_overlaps(const struct sec_buf *b, uint64_t iova, uint64_t len);
int sec_buf_describe(struct sec_engine *e, struct sec_buf *b, unsigned type, uint64_t addr,
                     uint64_t len);
int sec_buf_gather(struct sec_engine *e, const struct sec_buf *b, uint8_t *to, uint64_t len);
/* Hands bytes [off, off+len) of b to fn in order, in pieces of at most
 * SEC_DIRECT_PIECE bytes. A piece inside one mapping that iommu_translate
 * serves (host memory, or an fd mapping sealed against shrinking: memory
 * that cannot fault) is handed as a pointer into guest memory, valid only
 * during the call, with the domain pinned (iommu_dma_begin) for that piece
 * alone; any other piece (a remote or unsealed mapping, one that spans two
 * mappings) is first copied into e->bounce by iommu_dma_read, guarded as
 * every copy is. The guest may change the bytes while fn reads them, as it
 * could under a real device's DMA: fn must only compute from them. Asks
 * cancelled before each SEC_CHUNK bytes after the first. Returns 0,
 * SEC_E_DMA_FAULT, SEC_E_BAD_SGL (b is shorter), -ECANCELED, or what fn
 * returned (fn's non-zero return ends the walk). */
int sec_buf_read_pieces(struct sec_engine *e, const struct sec_buf *b, uint64_t off, uint64_t len,
                        int (*fn)(struct sec_engine *e, const uint8_t *p, uint32_t n, void *arg),
                        void *arg);
int sec_buf_scatter(struct sec_engine *e, const struct sec_buf *b, uint64_t off,
                    const uint8_t *from, uint64_t len);
/* Writes len bytes at a flat device address in SEC_CHUNK pieces. */
int sec_write_flat(struct sec_engine *e, uint64_t iova, const uint8_t *p, uint64_t len);
void sec_buf_free(struct sec_buf *b);
bool sec_job_cancelled(struct sec_engine *e);
int sec_fail(struct sec_engine *e, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* sec_crypto.c: in and out are host buffers of len bytes (may be equal). */
void sec_crypto_release(struct sec_engine *e);
int sec_crypto_cipher(struct sec_engine *e, const struct sec_job *j, const uint8_t *key,
                      const uint8_t *iv, const uint8_t *in, uint8_t *out, uint32_t len);
/* The same for a plain cipher (not XTS) whose input is bytes [c_off,
 * c_off + c_len) of src, read from guest memory piece by piece
 * (sec_buf_read_pieces) instead of gathered first; out gets c_len bytes. */
int sec_crypto_cipher_src(struct sec_engine *e, const struct sec_job *j, const uint8_t *key,
                          const uint8_t *iv, const struct sec_buf *src, uint8_t *out);
/* CCM/GCM: aad (alen bytes), in -> out (len); tag: made (encrypt) or
 * checked (decrypt). Returns 0, a sec_error, SEC_ICV_MISMATCH, or -errno. */
#define SEC_ICV_MISMATCH 0x100
int sec_crypto_aead(struct sec_engine *e, const struct sec_job *j, const uint8_t *key,
                    const uint8_t *iv, const uint8_t *aad, uint32_t alen, const uint8_t *in,
                    uint8_t *out, uint32_t len, uint8_t *tag);
/* HMAC of data into mac (the full digest; the caller keeps mac_len bytes). */
int sec_crypto_hmac(struct sec_engine *e, unsigned aalg, const uint8_t *key, unsigned keylen,
                    const uint8_t *data, uint32_t len, uint8_t mac[64]);
/* Key bytes of the cipher (0: not a valid code for the algorithm), IV
 * bytes, block bytes (1 for stream modes), hash block and digest bytes. */
unsigned sec_cipher_key_bytes(unsigned calg, unsigned cmode, unsigned code);
unsigned sec_cipher_iv_bytes(unsigned calg, unsigned cmode);
unsigned sec_cipher_block_bytes(unsigned calg, unsigned cmode);
bool sec_cipher_known(unsigned calg, unsigned cmode);
unsigned sec_hash_block_bytes(unsigned aalg);
unsigned sec_hash_digest_bytes(unsigned aalg);

#endif
