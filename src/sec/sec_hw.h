/* sec_hw: the SEC engine's type-3 BD (its 128-byte SQE) as the Linux
 * hisi_sec2 driver (6.1) fills it on QM v3 and later (sec_crypto.h, struct
 * sec_sqe3; the driver picks type 3 whenever qm->ver >= QM_HW_V3, and the
 * model serves v3 and v4 only), plus the status the engine writes back.
 * Shared by the engine (sec/), the QM's engine table and the tests.
 *
 * All fields little-endian. Dword indices (byte offset / 4):
 *   dw0   bd_param: type[3:0] (3), bd_invalid[4], scene[8:5], de[10:9],
 *         src_addr_type[13:11], dst_addr_type[16:14], mac_addr_type[19:17]
 *   dw1   c_icv_key[15:0]: cipher[1:0] (1 enc, 2 dec), ci_gen[3:2],
 *         c_icv_len[9:4] (CCM/GCM tag bytes), c_width[12:10], c_key_len[15:13];
 *         c_mode_alg[23:16]: c_mode[3:0], c_alg[7:4];
 *         huk_iv_seq[31:24]: nonce_len[3:0], huk[4], cal_iv_addr_en[5], seq[6]
 *   dw2-3 tag (the driver's request pointer; echoed, never read)
 *   dw4-5 data_src_addr    dw6-7 a_key_addr    dw8-9 a_ivin_addr
 *   dw12-13 c_key_addr
 *   dw14  auth_mac_key: auth[1:0] (1 generate MAC, 2 verify), ai_gen[3:2],
 *         mac_len[8:4] (words), akey_len[14:9] (words), a_alg[20:15],
 *         key_sel[24:21], ctr_count_mode[26:25]
 *   dw15  salt
 *   dw16  auth_src_offset[15:0], cipher_src_offset[31:16]
 *   dw17  auth_len[23:0], auth_key_offset[31:24]
 *   dw18  cipher_len[23:0], auth_ivin_offset[31:24]
 *   dw19-20 data_dst_addr  dw21-22 mac_addr  dw23-24 c_ivin_addr
 *   dw28  done_flag[15:0]: done[0], icv[3:1], csc[6:4], flag[10:7];
 *         error_type[23:16]; warning_type[31:24]   <- the result
 */
#ifndef ACCMIG_SEC_HW_H
#define ACCMIG_SEC_HW_H

#include <stdint.h>

#define SEC_SQE_SIZE 128u
#define SEC_SQE_DWORDS 32u

#define SEC_DW_BD_PARAM 0
#define SEC_DW_CIPHER 1
#define SEC_DW_TAG_L 2
#define SEC_DW_TAG_H 3
#define SEC_DW_SRC_L 4
#define SEC_DW_SRC_H 5
#define SEC_DW_AKEY_L 6
#define SEC_DW_AKEY_H 7
#define SEC_DW_AIV_L 8
#define SEC_DW_AIV_H 9
#define SEC_DW_CKEY_L 12
#define SEC_DW_CKEY_H 13
#define SEC_DW_AUTH 14
#define SEC_DW_OFFSETS 16
#define SEC_DW_AUTH_LEN 17
#define SEC_DW_CIPHER_LEN 18
#define SEC_DW_DST_L 19
#define SEC_DW_DST_H 20
#define SEC_DW_MAC_L 21
#define SEC_DW_MAC_H 22
#define SEC_DW_CIV_L 23
#define SEC_DW_CIV_H 24
#define SEC_DW_DONE 28

/* dw0 */
#define SEC_BD_TYPE_MASK 0xfu
#define SEC_BD_TYPE3 3u
#define SEC_BD_INVALID (1u << 4)
#define SEC_BD_SCENE_SHIFT 5
#define SEC_BD_DE_SHIFT 9
#define SEC_BD_SRC_TYPE_SHIFT 11
#define SEC_BD_DST_TYPE_SHIFT 14
#define SEC_BD_MAC_TYPE_SHIFT 17
/* dw1 */
#define SEC_CIPHER_DIR_MASK 0x3u
#define SEC_ICV_LEN_SHIFT 4
#define SEC_ICV_LEN_MASK 0x3fu
#define SEC_CKEY_LEN_SHIFT 13
#define SEC_CMODE_SHIFT 16
#define SEC_CALG_SHIFT 20
#define SEC_SEQ_AUTH_FIRST (1u << 30) /* huk_iv_seq bit 6: verify, then decipher */
/* dw14 */
#define SEC_AUTH_MASK 0x3u
#define SEC_MAC_LEN_SHIFT 4
#define SEC_MAC_LEN_MASK 0x1fu
#define SEC_AKEY_LEN_SHIFT 9
#define SEC_AKEY_LEN_MASK 0x3fu
#define SEC_AALG_SHIFT 15
#define SEC_AALG_MASK 0x3fu
#define SEC_LEN_MASK 0xffffffu
/* dw28 */
#define SEC_DONE 0x1u
#define SEC_ICV_SHIFT 1
#define SEC_ICV_ERR 0x2u          /* icv field: the MAC did not verify */
#define SEC_FLAG_SHIFT 7
#define SEC_FLAG_CIPHER 2u        /* what the driver expects of a skcipher BD */
#define SEC_FLAG_AEAD 3u          /* ... of a BD that authenticated */
#define SEC_ERR_SHIFT 16

enum sec_cipher_dir { SEC_DIR_NONE = 0, SEC_DIR_ENC = 1, SEC_DIR_DEC = 2 };
enum sec_calg { SEC_ALG_3DES = 1, SEC_ALG_AES = 2, SEC_ALG_SM4 = 3 };
enum sec_cmode {
    SEC_MODE_ECB = 0, SEC_MODE_CBC = 1, SEC_MODE_CFB = 2, SEC_MODE_OFB = 3,
    SEC_MODE_CTR = 4, SEC_MODE_CCM = 5, SEC_MODE_GCM = 6, SEC_MODE_XTS = 7,
};
/* c_key_len: AES/SM4 0 = 128, 1 = 192, 2 = 256 bits (XTS: per key half);
 * 3DES 1 = three keys, 3 = two keys. */
enum sec_auth { SEC_AUTH_NONE = 0, SEC_AUTH_MAC = 1, SEC_AUTH_VERIFY = 2 };
enum sec_aalg { SEC_AALG_HMAC_SHA1 = 0x10, SEC_AALG_HMAC_SHA256 = 0x11, SEC_AALG_HMAC_SHA512 = 0x15 };
enum sec_addr_type { SEC_ADDR_PBUF = 0, SEC_ADDR_SGL = 1, SEC_ADDR_PRP = 2 };

/* error_type values. The driver only tests error_type != 0 (-EIO); the
 * values are defined here, one per cause, for logs and tests. */
enum sec_error {
    SEC_E_OK = 0x00,
    SEC_E_BAD_BD = 0x01,      /* type, scene, address type, reserved combination */
    SEC_E_DMA_FAULT = 0x02,   /* a read or write through the IOMMU domain failed */
    SEC_E_BAD_ALG = 0x03,     /* algorithm or mode the engine does not have */
    SEC_E_BAD_KEY_LEN = 0x04, /* c_key_len / akey_len not valid for the algorithm */
    SEC_E_BAD_LEN = 0x05,     /* length not a block multiple, too short or too long */
    SEC_E_BAD_IV = 0x06,      /* IV the mode cannot take (CCM's L field) */
    SEC_E_BAD_MAC_LEN = 0x07, /* mac_len / c_icv_len out of range */
    SEC_E_BAD_SGL = 0x08,     /* hardware SGL malformed */
};

#define SEC_MAX_DATA (16u << 20) /* per BD, bytes of the data buffer touched */

#endif
