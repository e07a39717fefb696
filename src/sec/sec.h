/* sec: the SEC engine that executes one type-3 BD (sec_hw.h) with OpenSSL's
 * libcrypto, as the Linux hisi_sec2 driver (6.1) drives it.
 *
 * Contract
 * - sec_engine_run decodes and validates a 128-byte BD (a host copy the
 *   caller fetched), reads keys, IVs, the MAC to verify, SGLs and data
 *   through the function's IOMMU domain into its own buffers, computes in
 *   its own buffers, and moves every output byte to the guest through the
 *   caller's sec_job_ops.write (the library never sees guest memory). It
 *   reports the result in the copy's dw28 (done_flag, error_type); the
 *   caller writes back only that dword. Every other dword is untouched.
 * - Result: done = 1 always. Success: error_type 0, flag 2 (cipher only) or
 *   3 (a MAC was made or checked), icv 0. A MAC that does not verify: icv 2
 *   (SEC_ICV_ERR), flag 3, error_type 0, and no output is written (the
 *   driver answers -EBADMSG). Any malformed field, DMA fault or size limit:
 *   error_type one of enum sec_error (the driver answers -EIO), and output
 *   may have been partly written. It returns 0 in all these cases.
 * - Algorithms (c_alg/c_mode): AES ECB, CBC, CTR (128-bit counter), OFB,
 *   CFB (128-bit feedback), XTS (ciphertext stealing; 2 x 128 or 2 x 256-bit
 *   keys), CCM and GCM; SM4 ECB, CBC, CTR, OFB, CFB; 3DES (two or three
 *   keys) ECB and CBC. Authentication (a_alg): HMAC-SHA1, -SHA256, -SHA512
 *   with a key of at most one hash block, alone (cipher 0) or with a cipher
 *   (authenc): seq 0 ciphers first and authenticates the output, seq 1
 *   authenticates the input first. CCM/GCM take auth 0 and the tag length
 *   from c_icv_len.
 * - Data layout: the job touches [0, max(cipher_src_offset + cipher_len,
 *   auth_src_offset + auth_len)) of the source (at most SEC_MAX_DATA). The
 *   destination (the source itself when de = 0) receives the ciphered
 *   bytes at cipher_src_offset; with de = 1 the bytes before them (the AAD)
 *   are copied too. A generated MAC goes to mac_addr (mac_len words, or
 *   c_icv_len bytes for CCM/GCM); a MAC to verify is read from there.
 *   Buffers are flat (pbuf) or hardware SGL chains (the QM's format,
 *   zip_hw.h); PRP is refused.
 * - Work proceeds in pieces of at most SEC_CHUNK bytes; between two pieces
 *   the engine asks ops->cancelled. A cancelled job (cancelled() true, or a
 *   write that returned -ECANCELED) returns -ECANCELED with the BD copy as
 *   it was (the job reruns later). One write moves at most SEC_CHUNK bytes.
 * - No lock of the domain is held between calls into it.
 * - An engine holds buffers and library contexts for one job at a time:
 *   one per worker thread.
 */
#ifndef ACCMIG_SEC_H
#define ACCMIG_SEC_H

#include <stdbool.h>
#include <stdint.h>

#include "iommu/iommu.h"
#include "sec/sec_hw.h"

#define SEC_CHUNK (64u << 10)

struct sec_engine;

/* Returns 0, -ENOMEM, or -EIO when libcrypto lacks an algorithm the engine
 * needs (logged). */
int sec_engine_create(struct sec_engine **out);
void sec_engine_destroy(struct sec_engine *e);

/* How the caller governs one job (the shape of zip_job_ops). */
struct sec_job_ops {
    /* Writes len (<= SEC_CHUNK) bytes at device address iova: 0,
     * -ECANCELED (nothing written, the job may no longer write) or another
     * negative errno (a DMA fault: SEC_E_DMA_FAULT). */
    int (*write)(void *opaque, uint64_t iova, const void *buf, uint64_t len);
    /* Asked between pieces: true stops the job (-ECANCELED). */
    bool (*cancelled)(void *opaque);
    /* NULL, or how a job whose output overlaps what it reads (in place:
     * source, key, IV or MAC) writes: queued (len <= SEC_CHUNK, buf valid
     * until the next job) to land with the caller's commit, so that a job
     * cancelled before it and run again finds its input unchanged. 0,
     * -ECANCELED, -ENOMEM. NULL: such output goes through write too. */
    int (*write_at_commit)(void *opaque, uint64_t iova, const void *buf, uint64_t len);
};

/* alg_type comes from the queue's SQC; SEC has one (0). ops NULL: writes go
 * straight to d and nothing cancels. Returns 0 (result in bd), -ECANCELED
 * (bd untouched), -EINVAL (e, d or bd NULL, or alg_type not 0; bd
 * untouched), -EIO when libcrypto failed where it cannot fail (a bug;
 * logged; bd untouched). */
int sec_engine_run(struct sec_engine *e, struct iommu_domain *d, uint32_t bd[SEC_SQE_DWORDS],
                   unsigned alg_type, const struct sec_job_ops *ops, void *opaque);

/* Why the engine's last job ended with an error or ICV status ("" when it
 * did not). */
const char *sec_engine_last_error(const struct sec_engine *e);

/* The result fields of a finished BD. */
static inline unsigned sec_bd_error(const uint32_t *bd)
{
    return (bd[SEC_DW_DONE] >> SEC_ERR_SHIFT) & 0xffu;
}
static inline unsigned sec_bd_icv(const uint32_t *bd)
{
    return (bd[SEC_DW_DONE] >> SEC_ICV_SHIFT) & 0x7u;
}
static inline unsigned sec_bd_flag(const uint32_t *bd)
{
    return (bd[SEC_DW_DONE] >> SEC_FLAG_SHIFT) & 0xfu;
}
static inline bool sec_bd_done(const uint32_t *bd)
{
    return bd[SEC_DW_DONE] & SEC_DONE;
}
/* What the driver takes as a success. */
static inline bool sec_bd_ok(const uint32_t *bd)
{
    return sec_bd_done(bd) && sec_bd_error(bd) == 0 && sec_bd_icv(bd) != SEC_ICV_ERR;
}

#endif
