/* hpre_hw: the HPRE (public-key engine) SQE layout, algorithm codes, error
 * types and capability register values, as the Linux hisi_hpre driver (6.1,
 * drivers/crypto/hisilicon/hpre/hpre.h, hpre_crypto.c, hpre_main.c) uses
 * them. Layout only: no model code, so a guest driver may include it.
 *
 * SQE (64 bytes, little-endian dwords):
 *   dw0   [4:0] alg, [15:5] etype (error type, 0 = none), [31:30] done
 *         (the driver submits 1, the engine completes with 3)
 *   dw1   [7:0] task_len1 = key_sz / 8 - 1, [15:8] task_len2, [23:16]
 *         mrttest_num (both unused by the driver and the model)
 *   dw2-3 key: device address of the key/parameter block
 *   dw4-5 in:  device address of the operand
 *   dw6-7 out: device address of the result
 *   dw8   [15:0] tag (the driver's request id; the engine never touches it)
 *   dw9-15 reserved
 * The driver reads back dw0 from the SQ slot the CQE names
 * (hpre_alg_res_post_hf): success is etype == 0 and done == 3, anything else
 * fails the request with -EINVAL.
 *
 * Operand formats (all big-endian, each element key_sz bytes with the value
 * right-aligned and leading zero bytes: the driver pads, the engine accepts
 * any leading zeros):
 *   NC_NCRT (RSA e or d): key = exp | n        in = m (key_sz)  out = key_sz
 *   NC_CRT  (RSA CRT):    key = dq | dp | q | p | qinv, each key_sz / 2
 *                                              in = c (key_sz)  out = key_sz
 *   DH:                   key = xa | p         in = g or peer y out = key_sz
 *   DH_G2:                key = xa | p         in unused (base 2; the driver
 *                                              leaves it DMA_MAPPING_ERROR)
 *   ECC_MUL (ECDH):       key = p | a | k | b  in = x | y      out = x | y
 *   CURVE25519_MUL:       key = p | a | k | gx in = u (key_sz) out = u
 *     (k clamped by the driver as RFC 7748 says, then byte-reversed to
 *     big-endian; u masked to 255 bits and reduced mod p; the result is
 *     big-endian, the driver reverses it back.)
 */
#ifndef ACCMIG_HPRE_HW_H
#define ACCMIG_HPRE_HW_H

#include <stdint.h>

#define HPRE_SQE_SIZE 64u
#define HPRE_SQE_DWORDS 16u

#define HPRE_SQE_DW0 0u
#define HPRE_SQE_DW1 1u
#define HPRE_SQE_KEY_LO 2u
#define HPRE_SQE_IN_LO 4u
#define HPRE_SQE_OUT_LO 6u
#define HPRE_SQE_TAG 8u

#define HPRE_DW0_ALG_MASK 0x1fu
#define HPRE_DW0_ETYPE_SHIFT 5u
#define HPRE_DW0_ETYPE_MASK (0x7ffu << HPRE_DW0_ETYPE_SHIFT)
#define HPRE_DW0_DONE_SHIFT 30u
#define HPRE_DW0_DONE_MASK (3u << HPRE_DW0_DONE_SHIFT)
#define HPRE_DONE_SUBMITTED 1u
#define HPRE_DONE_TASK_DONE 3u
#define HPRE_DW1_TASK_LEN1_MASK 0xffu

/* dw0 alg (enum hpre_alg_type in the driver's hpre.h). */
enum hpre_alg {
    HPRE_ALG_NC_NCRT = 0x0,        /* RSA, plain modular exponentiation */
    HPRE_ALG_NC_CRT = 0x1,         /* RSA private key in CRT form */
    HPRE_ALG_KG_STD = 0x2,         /* key generation: not used by the driver */
    HPRE_ALG_KG_CRT = 0x3,         /* key generation, CRT: not used by the driver */
    HPRE_ALG_DH_G2 = 0x4,          /* DH with base 2 (no operand) */
    HPRE_ALG_DH = 0x5,             /* DH with the base or peer key in `in` */
    HPRE_ALG_ECC_MUL = 0xd,        /* ECC point multiplication (ECDH) */
    HPRE_ALG_CURVE25519_MUL = 0x10, /* X25519 (X448 shares the code, 56-byte keys) */
};

/* Queue type from the SQC (dw6 of the SQC, hpre.h): which cores serve it. */
enum hpre_queue_type {
    HPRE_QTYPE_V2 = 0,  /* RSA and DH */
    HPRE_QTYPE_ECC = 1, /* ECC_MUL and CURVE25519_MUL */
};

/* dw0 etype values. The driver only tells zero from non-zero and logs the
 * value; these are the model's (the hardware manual's codes are not public). */
enum hpre_etype {
    HPRE_ET_OK = 0x0,
    HPRE_ET_BAD_ALG = 0x1,     /* unknown or unimplemented alg, or the wrong queue type for it */
    HPRE_ET_BAD_LEN = 0x2,     /* task_len1 not a size the alg supports */
    HPRE_ET_DMA_FAULT = 0x3,   /* key, in or out not wholly mapped with the needed permission */
    HPRE_ET_OPERAND = 0x4,     /* operand out of range: even or zero modulus, in >= modulus,
                                * scalar 0 or >= the order, unclamped X25519 scalar, result wider
                                * than key_sz */
    HPRE_ET_POINT = 0x5,       /* point not on the curve, or a result at infinity / all zero */
    HPRE_ET_CURVE = 0x6,       /* p, a, b not one of the supported curves */
};

/* Supported key sizes in bytes (key_sz = (task_len1 + 1) * 8). RSA: 512 to
 * 4096 bits as the hardware does (the driver sends 1024, 2048, 3072, 4096 and
 * does 512 and 1536 in software). DH: the driver's groups, 768 to 4096 bits.
 * ECC: 32 (curves up to 256 bits), 48 (384), 72 (521). X25519: 32. */
#define HPRE_RSA_MAX_KSZ 512u
#define HPRE_DH_MAX_KSZ 512u
#define HPRE_ECC_MAX_KSZ 72u
#define HPRE_X25519_KSZ 32u

/* HPRE capability registers (hpre_basic_info in hpre_main.c), the v3 values
 * a VF reads from its own BAR when QM_CAP_VERSION[7:0] is non-zero. Only the
 * algorithms the model implements are advertised: rsa, dh, ecdh, x25519. */
#define HPRE_CAP_QM_NFE_MASK 0x3124
#define HPRE_CAP_QM_RESET_MASK 0x3128
#define HPRE_CAP_QM_CE_MASK 0x312c
#define HPRE_CAP_NFE_MASK 0x3130
#define HPRE_CAP_RESET_MASK 0x3134
#define HPRE_CAP_CE_MASK 0x3138
#define HPRE_CAP_CLUSTER_CORE 0x313c   /* [23:20] clusters, [19:16] core types, [15:8] cores,
                                        * [7:0] cores per cluster */
#define HPRE_CAP_CORE_ENABLE 0x3140
#define HPRE_CAP_DRV_ALG_BITMAP 0x3144
#define HPRE_CAP_DEV_ALG_BITMAP 0x3148
#define HPRE_CAP_CORE1_ALG_BITMAP 0x314c /* ... CORE10 at 0x3170, 4 bytes apart */
#define HPRE_CAP_CORE10_ALG_BITMAP 0x3170

#define HPRE_CAPV_QM_NFE_MASK 0x7c37u
#define HPRE_CAPV_QM_RESET_MASK 0x6c37u
#define HPRE_CAPV_QM_CE_MASK 0x8u
#define HPRE_CAPV_NFE_MASK 0x1fffc3eu
#define HPRE_CAPV_RESET_MASK 0xbffc3eu
#define HPRE_CAPV_CE_MASK 0x1u
#define HPRE_CAPV_CLUSTER_CORE 0x00120a0au /* 1 cluster, 2 core types, 10 cores, 10 per cluster */
#define HPRE_CAPV_CORE_ENABLE 0x3ffu
/* Bits of the algorithm bitmaps (HPRE_DRV_*_MASK_CAP, hpre_dev_algs). */
#define HPRE_ALG_BIT_RSA (1u << 0)
#define HPRE_ALG_BIT_DH (1u << 1)
#define HPRE_ALG_BIT_ECDH (1u << 2)
#define HPRE_ALG_BIT_X25519 (1u << 5)
#define HPRE_CAPV_ALG_BITMAP \
    (HPRE_ALG_BIT_RSA | HPRE_ALG_BIT_DH | HPRE_ALG_BIT_ECDH | HPRE_ALG_BIT_X25519)

/* PCI identity (hisi_acc_qm.h / hpre_main.c). */
#define HPRE_PCI_DEVICE_PF 0xa258u
#define HPRE_PCI_DEVICE_VF 0xa259u

#endif
