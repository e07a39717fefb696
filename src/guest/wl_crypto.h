/* wl_crypto: the workload's job kinds for the SEC and HPRE engines, private
 * to src/guest (workload.c runs them; sec_req.c and hpre_req.c fill them).
 *
 * A crypto job is two operations through the device, each checked against
 * libcrypto computed in the guest thread:
 *   SEC:  op 0 encrypts the input (AES-CBC, -CTR, -XTS or -GCM with AAD and
 *         a 16-byte tag) on queue 2k; op 1 decrypts op 0's output on queue
 *         2k+1 (GCM: verifying the tag) and must give the input back.
 *   HPRE: RSA-1024/-2048: op 0 the public operation m^e mod n, op 1 the CRT
 *         private operation on its result, which must give m back; DH
 *         (RFC 3526 2048-bit group, g = 2): op 0 the public value 2^xa mod
 *         p (DH_G2), op 1 the shared secret yb^xa mod p, which must equal
 *         ya^xb mod p computed from the peer's side; X25519: op 0 the public
 *         key, op 1 the shared secret with a peer, likewise. RSA and DH run
 *         on the pair's type-0 queue 2k, X25519 on its type-1 queue 2k+1.
 * Everything (kind, sizes, keys, IVs, AAD, input bytes, peer keys) is
 * deterministic from (seed, job), so a checker outside the guest (the
 * demo's ledger) recomputes op 0's result from the configuration alone.
 * Derived keys that are costly to find (the RSA primes) come from the seed
 * only; the guest derives them once into its RAM (they migrate with it), and
 * a checker outside derives its own copy.
 */
#ifndef ACCMIG_GUEST_WL_CRYPTO_H
#define ACCMIG_GUEST_WL_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest/guest.h"
#include "guest/workload.h"

/* Bytes a vCPU's aux area (keys, IVs, key blocks, peer keys) takes. */
#define WLC_AUX_CAP 4096u
/* Room the SEC input needs beyond the payload (AAD in front). */
#define WLC_IN_EXTRA 128u
/* Input buffer HPRE needs at least (one key_sz operand). */
#define WLC_MIN_IN 512u

/* A vCPU's buffers: host views into guest RAM and their guest addresses. */
struct wlc_bufs {
    uint8_t *in, *out1, *out2, *aux;
    uint64_t in_gpa, out1_gpa, out2_gpa, aux_gpa;
};

/* What (seed, job) decides before any data. */
struct wlc_job {
    unsigned kind;       /* index into ops->kind_names */
    uint32_t in_len;     /* input bytes the ops read (SEC: payload; HPRE: key_sz) */
    uint32_t res_len;    /* op 0's result: bytes at out1 + res_off, exported and checked */
    uint32_t res_off;
    uint32_t out2_off, out2_len; /* op 1's result in out2 */
    unsigned parity[2];  /* queue of the pair op 0 / op 1 goes to (0: 2k, 1: 2k+1) */
    uint32_t key_len;    /* SEC: cipher key bytes; HPRE: key_sz */
    uint32_t aad_len;    /* SEC GCM: AAD in front of the payload */
    unsigned key_idx;    /* HPRE RSA: the context's key */
    bool in_place;       /* SEC: op 0 enciphers out1 in place (its input laid out there) */
    uint64_t s;          /* the job's random state after the draws: its data follow */
};

struct wlc_ctx;

struct wlc_ops {
    enum guest_engine engine;
    unsigned nkinds;
    const char *const *kind_names;
    /* The SQC alg type of queue qp. */
    unsigned (*queue_alg_type)(unsigned qp);
    /* The keys derived from cfg's seed: ctx_size bytes of plain data (no
     * pointers, no lengths: they live in guest RAM and migrate with it),
     * written by ctx_derive (0 or -ENOMEM/-EIO). ctx_size 0: none, and
     * the ops get a NULL ctx. */
    size_t ctx_size;
    int (*ctx_derive)(const struct workload_config *cfg, struct wlc_ctx *ctx);
    void (*draw)(const struct wlc_ctx *ctx, const struct workload_config *cfg, uint32_t job,
                 struct wlc_job *j);
    /* Write the job's input and aux data into b (guest RAM). */
    int (*gen)(const struct wlc_ctx *ctx, const struct wlc_job *j, const struct wlc_bufs *b);
    /* The SQE of op (0, 1) with tag; -EINVAL for a bad op. */
    int (*sqe)(const struct wlc_job *j, const struct wlc_bufs *b, unsigned op, uint64_t tag,
               uint32_t sqe[GUEST_SQE_MAX_DWORDS]);
    /* The completion's status (guest_vf_completion.status) says success. */
    bool (*status_ok)(uint32_t status);
    /* The expected result of op with libcrypto: op 0 res_len bytes, op 1
     * out2_len bytes, into buf (cap bytes). 0, -ENOSPC, -EIO. */
    int (*expect)(const struct wlc_ctx *ctx, const struct wlc_job *j, unsigned op, uint8_t *buf,
                  size_t cap);
};

extern const struct wlc_ops wlc_sec_ops;
extern const struct wlc_ops wlc_hpre_ops;

/* The ops of engine e, NULL for ZIP (workload.c's own path). */
static inline const struct wlc_ops *wlc_ops_for(uint32_t e)
{
    return e == GUEST_ENGINE_SEC ? &wlc_sec_ops : e == GUEST_ENGINE_HPRE ? &wlc_hpre_ops : NULL;
}

/* The deterministic sequence the workload uses (splitmix64). */
static inline uint64_t wlc_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline void wlc_fill(uint8_t *p, size_t len, uint64_t *s)
{
    for (size_t pos = 0; pos < len; pos += 8) {
        uint64_t r = wlc_rand(s);
        for (size_t k = 0; k < 8 && pos + k < len; k++)
            p[pos + k] = (uint8_t)(r >> (8 * k));
    }
}

static inline uint64_t wlc_job_seed(uint64_t seed, uint32_t job, uint64_t salt)
{
    uint64_t s = (seed ^ salt) ^ ((uint64_t)job * 0xd1b54a32d192ed03ull);
    wlc_rand(&s);
    return s;
}

static inline void wlc_put64(uint32_t *sqe, unsigned dw, uint64_t v)
{
    sqe[dw] = (uint32_t)v;
    sqe[dw + 1] = (uint32_t)(v >> 32);
}

#endif
