/* zip_hw: the ZIP engine's submission queue entry and hardware SGL, as a
 * driver fills them (spec/qm-zip-device.md, "ZIP submission queue entry").
 * Shared by the engine (zip/), the guest driver and the tests.
 */
#ifndef ACCMIG_ZIP_HW_H
#define ACCMIG_ZIP_HW_H

#include <stdbool.h>
#include <stdint.h>

#define ZIP_SQE_SIZE 128u
#define ZIP_SQE_DWORDS 32u

/* Dword indices. */
#define ZIP_SQE_CONSUMED 0
#define ZIP_SQE_PRODUCED 1
#define ZIP_SQE_DW3 3
#define ZIP_SQE_INPUT_LEN 4
#define ZIP_SQE_DW7 7
#define ZIP_SQE_DW8 8
#define ZIP_SQE_DW9 9
#define ZIP_SQE_DEST_AVAIL 14
#define ZIP_SQE_SRC_ADDR_L 18
#define ZIP_SQE_SRC_ADDR_H 19
#define ZIP_SQE_DST_ADDR_L 20
#define ZIP_SQE_DST_ADDR_H 21
#define ZIP_SQE_CTX_ADDR_L 22
#define ZIP_SQE_CTX_ADDR_H 23
#define ZIP_SQE_TAG_L 26
#define ZIP_SQE_TAG_H 27

#define ZIP_DW3_STATUS_MASK 0xffu
#define ZIP_DW3_LAST_BLOCK (1u << 8)
#define ZIP_DW7_OFFSET_MASK 0xffffffu
#define ZIP_DW7_FLUSH (1u << 25)
#define ZIP_DW7_STATEFUL (1u << 26)
#define ZIP_DW7_NEW_STREAM (1u << 27)
#define ZIP_DW7_SQE_TYPE_SHIFT 28
#define ZIP_DW7_STATEFUL_BITS (ZIP_DW7_FLUSH | ZIP_DW7_STATEFUL | ZIP_DW7_NEW_STREAM)
#define ZIP_SQE_TYPE_V3 3u
#define ZIP_DW8_OFFSET_MASK 0xffffffu
#define ZIP_DW9_REQ_TYPE_MASK 0xffu
#define ZIP_DW9_BUF_TYPE_SHIFT 8
#define ZIP_DW9_BUF_TYPE_MASK 0xfu  /* after the shift */
#define ZIP_DW9_WIN_SHIFT 12
#define ZIP_DW9_WIN_MASK 0xfu       /* after the shift */
#define ZIP_WIN_MAX 4u              /* 0..4 = 4K, 8K, 16K, 24K, 32K */

enum zip_req_type { ZIP_REQ_DEFLATE = 1, ZIP_REQ_ZLIB = 2, ZIP_REQ_GZIP = 3 };
enum zip_buf_type { ZIP_BUF_FLAT = 0, ZIP_BUF_SGL = 1 };
enum zip_alg_dir { ZIP_ALG_COMPRESS = 0, ZIP_ALG_DECOMPRESS = 1 };

enum zip_status {
    ZIP_ST_OK = 0x00,
    ZIP_ST_BAD_SQE = 0x01,      /* defined here */
    ZIP_ST_DMA_FAULT = 0x02,    /* defined here */
    ZIP_ST_CORRUPT = 0x03,      /* defined here: corrupt input or trailer mismatch */
    ZIP_ST_TOO_BIG = 0x04,      /* defined here: request over 8 MiB */
    ZIP_ST_NEGATIVE_COMP = 0x0d,
    ZIP_ST_DEST_TOO_SMALL = 0x0e,
    ZIP_ST_STREAM_BLOCK = 0x05, /* defined here: stream mode, a block the context cannot hold */
    ZIP_ST_END_OF_STREAM = 0x13,
};

/* A finished job the driver takes as done: OK, negative compression (a valid
 * result), and in stream mode the end of the stream. */
static inline bool zip_status_is_success(uint32_t st)
{
    return st == ZIP_ST_OK || st == ZIP_ST_NEGATIVE_COMP || st == ZIP_ST_END_OF_STREAM;
}

#define ZIP_MAX_REQUEST (8u << 20)

/* Hardware SGL: 64-byte aligned header followed by 32-byte entries. */
struct zip_sgl_hdr {
    uint64_t next_dma;          /* 0 = end of chain */
    uint16_t entry_sum_in_chain; /* the kernel writes the pool's capacity here, not a count: ignored */
    uint16_t entry_sum_in_sgl;  /* valid entries */
    uint16_t entry_length_in_sgl; /* capacity */
    uint16_t rsvd0;
    uint64_t rsvd1[5];
    uint64_t drv_ptr;           /* header+56: the kernel keeps a pointer here: ignored */
} __attribute__((packed));
_Static_assert(sizeof(struct zip_sgl_hdr) == 64, "struct zip_sgl_hdr is 64 bytes");

struct zip_sgl_entry {
    uint64_t buf;
    uint64_t page_ctrl;         /* kernel pointer: ignored */
    uint32_t len;
    uint32_t pad;
    uint64_t rsvd;
} __attribute__((packed));
_Static_assert(sizeof(struct zip_sgl_entry) == 32, "struct zip_sgl_entry is 32 bytes");

#define ZIP_SGL_ALIGN 64u
#define ZIP_SGL_MAX_ENTRIES 255u   /* per SGL; longer chains link SGLs */
#define ZIP_SGL_MAX_CHAIN 256u     /* SGLs in one chain before it counts as a loop */

#endif
