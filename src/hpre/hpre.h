/* hpre: the HPRE engine that executes one submission queue entry (RSA, DH,
 * ECDH, X25519 as the Linux hisi_hpre driver submits them; hpre_hw.h has the
 * layouts).
 *
 * Contract
 * - hpre_engine_run decodes and validates a 64-byte SQE (a host copy the
 *   caller fetched), reads the key block and the operand through the
 *   function's IOMMU domain into its own buffers, computes with OpenSSL
 *   libcrypto (BN for RSA and DH, EC for the NIST curves, EVP for X25519) and
 *   moves the result to the guest through the caller's hpre_job_ops.write, in
 *   one write of the whole result (key_sz bytes, 2 * key_sz for ECC). It
 *   reports the result in the copy's dw0 only: etype [15:5] and done [31:30]
 *   = 3; alg and every other bit and dword are left as they were. The caller
 *   writes back dw0 to the SQE slot (the driver reads it from there).
 * - Every malformed field, unsupported size, operand out of range, point
 *   off the curve and DMA fault is an etype (hpre_hw.h), never a crash and
 *   never a write outside [out, out + result size). It returns 0 in all
 *   these cases. Nothing is written to out unless the job succeeded, except
 *   that a write which itself faults may have landed in part (iommu.h).
 * - The operand sizes follow task_len1: key_sz = (task_len1 + 1) * 8; the
 *   engine reads exactly the bytes the alg's layout needs (hpre_hw.h) and
 *   nothing from `in` for DH_G2.
 * - Cancellation: ops->cancelled is asked before the job's first read and
 *   again after the computation, before the write. A cancelled job
 *   (cancelled() true, or a write that returned -ECANCELED) returns
 *   -ECANCELED and its SQE copy is left as it was (the job reruns later;
 *   all its inputs are reread then). A single job computes for at most one
 *   4096-bit modular exponentiation (a few ms), so no step inside it checks.
 * - The queue type (from the SQC) must match the alg: RSA and DH on
 *   HPRE_QTYPE_V2 queues, ECC_MUL and CURVE25519_MUL on HPRE_QTYPE_ECC; a
 *   mismatch or an unknown type is HPRE_ET_BAD_ALG (the value is guest
 *   controlled, so it is a status, not -EINVAL).
 * - No lock of the domain is held between calls into it.
 * - An engine holds OpenSSL contexts and curve tables for one job at a time:
 *   one per worker thread. hpre_engine_stats_get may be called from any
 *   thread. Key material and results are wiped from the engine's buffers
 *   after each job (also a cancelled or failed one);
 *   what an engine keeps between jobs is public: the Montgomery context of
 *   the last RSA n-CRT modulus or DH prime (a driver sends many jobs with
 *   one key; setting one up costs as much as an RSA public operation).
 *
 * Decisions where the driver is silent
 * - Exponentiation is constant time, except for exponents of at most 64
 *   bits (RSA's e: no private exponent of a 512-bit or larger modulus is
 *   that short), which use libcrypto's faster variable-time path. RSA CRT
 *   runs both halves through BN_mod_exp_mont_consttime_x2 (AVX-512 IFMA for
 *   1024-bit primes where the CPU has it).
 * - Key sizes: see hpre_hw.h. RSA with an even or zero modulus, or an
 *   operand >= n (CRT: >= p * q), is HPRE_ET_OPERAND; so is a CRT result
 *   wider than key_sz (p * q larger than the key size).
 * - ECC: the curve is recognised from (p, a, b) among NIST P-192, P-224,
 *   P-256, P-384 and P-521 (the driver registers P-192, P-256 and P-384);
 *   the key size must be the one the driver's rule gives the curve (32 up to
 *   256 bits, 48 for 384, 72 for 521), else HPRE_ET_BAD_LEN; other
 *   parameters are HPRE_ET_CURVE. The scalar k must lie in [1, n - 1] and
 *   the input coordinates below p (HPRE_ET_OPERAND); an input point off the
 *   curve or a result at infinity is HPRE_ET_POINT.
 * - X25519: p must be 2^255 - 19 and a = (486662 - 2) / 4 (the kernel's
 *   curve25519 table); k must be clamped as RFC 7748 says (the driver
 *   clamps it) and u below p, else HPRE_ET_OPERAND; the key block's gx is
 *   not used (the driver passes the base point in `in` itself); an all-zero
 *   result (u of small order) is HPRE_ET_POINT.
 * - KG_STD and KG_CRT (key generation) are HPRE_ET_BAD_ALG: the driver never
 *   submits them.
 */
#ifndef ACCMIG_HPRE_H
#define ACCMIG_HPRE_H

#include <stdbool.h>
#include <stdint.h>

#include "hpre/hpre_hw.h"
#include "iommu/iommu.h"

struct hpre_engine;

struct hpre_engine_stats {
    uint64_t jobs;
    uint64_t cancelled;
    uint64_t errors; /* jobs that ended with an etype other than HPRE_ET_OK */
};

/* Returns 0, -ENOMEM, or -EIO when libcrypto cannot build the curve tables
 * (logged). */
int hpre_engine_create(struct hpre_engine **out);
/* NULL is a no-op. */
void hpre_engine_destroy(struct hpre_engine *e);

/* How the caller governs one job (the shape of zip_job_ops). */
struct hpre_job_ops {
    /* Writes len output bytes at device address iova. Returns 0,
     * -ECANCELED (the job may no longer write: nothing was written) or
     * another negative errno (a DMA fault: HPRE_ET_DMA_FAULT). */
    int (*write)(void *opaque, uint64_t iova, const void *buf, uint64_t len);
    /* Asked before the job reads and before it writes: true stops it. */
    bool (*cancelled)(void *opaque);
    /* NULL, or how a job whose result overlaps its operand or key block
     * writes it: queued to land with the caller's commit (the result stays
     * in the engine until its next job), so that a job cancelled before it
     * and run again reads what it read the first time. 0, -ECANCELED,
     * -ENOMEM. NULL: such a result goes through write too. */
    int (*write_at_commit)(void *opaque, uint64_t iova, const void *buf, uint64_t len);
};

/* alg_type is the queue's type from the SQC (enum hpre_queue_type). ops
 * NULL: writes go straight to d (iommu_dma_write) and nothing cancels.
 * Returns 0 (result in sqe dw0), -ECANCELED (sqe untouched), -EINVAL (e, d
 * or sqe NULL, or ops without write; sqe untouched), or -EIO when libcrypto
 * failed on parameters the engine had validated (a bug or out of memory;
 * logged; sqe untouched). */
int hpre_engine_run(struct hpre_engine *e, struct iommu_domain *d, uint32_t sqe[HPRE_SQE_DWORDS],
                    unsigned alg_type, const struct hpre_job_ops *ops, void *opaque);

void hpre_engine_stats_get(const struct hpre_engine *e, struct hpre_engine_stats *out);
/* Why the engine's last job ended with an error etype ("" when it did not):
 * the caller, which knows whose job it was, logs it (rate-limited). */
const char *hpre_engine_last_error(const struct hpre_engine *e);

#endif
