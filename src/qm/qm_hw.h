/* qm_hw: the QM hardware interface as a driver sees it (register offsets,
 * mailbox commands, doorbells, context and queue-entry layouts).
 *
 * These are facts of the device (spec/qm-zip-device.md), shared by the
 * device model (qm/), the guest VF driver (guest/) and the migration driver
 * (mig/). Nothing here reaches into the model: a driver that includes only
 * this header could run against real silicon.
 */
#ifndef ACCMIG_QM_HW_H
#define ACCMIG_QM_HW_H

#include <stdint.h>

#define QM_VENDOR_ID 0x19e5
#define QM_ZIP_PF_DEVICE_ID 0xa250
#define QM_ZIP_VF_DEVICE_ID 0xa251
#define QM_SEC_PF_DEVICE_ID 0xa255
#define QM_SEC_VF_DEVICE_ID 0xa256
#define QM_REV_V3 0x30
#define QM_REV_V4 0x50

#define QM_PF_BAR2_SIZE (4u << 20)
#define QM_VF_BAR2_SIZE (64u << 10)
#define QM_VF_BAR2_V3_GUEST_SIZE (32u << 10) /* v3: the guest sees only the lower half */

/* MSI vectors of a VF. */
enum qm_vector { QM_VEC_EQ = 0, QM_VEC_AEQ = 1, QM_VEC_IFC = 2, QM_VEC_RSVD = 3, QM_NUM_VECTORS = 4 };

/* Function-local registers (VF BAR2; also mirrored in the v4 PF window). */
#define QM_AEQ_INT_SOURCE 0x0000
#define QM_AEQ_INT_MASK 0x0004
#define QM_EQ_INT_SOURCE 0x0008
#define QM_EQ_INT_MASK 0x000c
#define QM_IFC_INT_SOURCE_V 0x0020 /* bit0: PF message pending; guest write 1 acks (see window) */
#define QM_IFC_INT_MASK 0x0024
#define QM_IFC_INT_STATUS 0x0028
#define QM_IFC_INT_SET_V 0x002c
#define QM_QUE_ISO_CFG 0x0030
#define QM_PAGE_SIZE 0x0034
#define QM_VF_STATE 0x0060
#define QM_CACHE_WB_START 0x0204
#define QM_CACHE_WB_DONE 0x0208
#define QM_MAILBOX 0x0300
#define QM_MB_DATA_L 0x0304
#define QM_MB_DATA_H 0x0308
#define QM_MAILBOX_SIZE 16u
#define QM_DB_SQCQ 0x1000
#define QM_DB_EQAEQ 0x2000
#define QM_EQC_SHADOW_V3 0x8000  /* v3 migration half of the VF BAR */
#define QM_AEQC_SHADOW_V3 0x8020
#define QM_V3_MIG_HALF 0x8000

#define QM_VF_STATE_READY 0u
#define QM_VF_STATE_NOT_READY 1u

/* Capability registers (v3 values; CAP_VER = 1). */
#define QM_CAP_VERSION 0x3100
#define QM_CAP_EQ_AEQ_DEPTH 0x3104
#define QM_CAP_SQ_CQ_DEPTH 0x3108
#define QM_CAP_EQ_IRQ_TYPE 0x310c
#define QM_CAP_AEQ_IRQ_TYPE 0x3110
#define QM_CAP_ABN_IRQ_TYPE 0x3114
#define QM_CAP_PF2VF_IRQ_TYPE 0x3118
#define QM_CAP_IRQ_NUM 0x311c
/* Further ZIP capability registers the Linux zip driver's table reads
 * (zip_basic_cap_info); PF error masks and per-core algorithm bitmaps. */
#define ZIP_CAP_QM_NFE_MASK 0x3124
#define ZIP_CAP_QM_RESET_MASK 0x3128
#define ZIP_CAP_QM_CE_MASK 0x312c
#define ZIP_CAP_NFE_MASK 0x3130
#define ZIP_CAP_RESET_MASK 0x3134
#define ZIP_CAP_CE_MASK 0x3138
#define ZIP_CAP_CORE_NUM 0x313c
#define ZIP_CAP_CORE_BITMAP 0x3140
#define ZIP_CAP_DRV_ALG_BITMAP 0x3144
#define ZIP_CAP_DEV_ALG_BITMAP 0x3148
#define ZIP_CAP_CORE1_ALG_BITMAP 0x314c
#define ZIP_CAP_CORE2_ALG_BITMAP 0x3150
#define ZIP_CAP_CORE3_ALG_BITMAP 0x3154
#define ZIP_CAP_CORE4_ALG_BITMAP 0x3158
#define ZIP_CAP_CORE5_ALG_BITMAP 0x315c

/* PF-only registers (PF BAR2). */
#define QM_PF_VFT_CFG_OP_ENABLE 0x100054
#define QM_PF_VFT_CFG_OP_WR 0x100058
#define QM_PF_VFT_CFG_TYPE 0x10005c
#define QM_PF_VFT_CFG 0x100060
#define QM_PF_VFT_CFG_DATA_L 0x100064
#define QM_PF_VFT_CFG_DATA_H 0x100068
#define QM_PF_VFT_CFG_RDY 0x10006c
#define QM_PF_IFC_READY_STATUS 0x100128   /* 64-bit: bit n = message to VF n not yet acked */
#define QM_PF_IFC_READY_STATUS_H 0x10012c /* its upper half (Linux reads it with readq) */
#define QM_PF_IFC_INT_SET_P 0x100130
#define QM_PF_IFC_INT_CFG 0x100134
#define QM_PF_IFC_INT_SOURCE_P 0x100138   /* 64-bit W1C: bit n = VF n signalled the PF */
#define QM_PF_IFC_INT_SOURCE_P_H 0x10013c
#define QM_PF_IFC_SEND_ALL_VFS 0x7fu      /* IFC_INT_CFG[6:0] value: every VF */
#define QM_PF_VFT_TYPE_SQC 0u
#define QM_PF_VFT_TYPE_CQC 1u
#define QM_PF_VFT_TYPE_SHAPER 2u
#define QM_CQC_VFT_VALID (1ull << 28)
#define QM_PF_MIG_REGION_SEL 0x100198

/* v4: the PF's per-VF migration control window. vf_fn is the function
 * number (first VF = 1). Offsets inside a window: */
#define QM_PF_MIG_WINDOW_BASE 0x180000u
#define QM_PF_MIG_WINDOW_SIZE 0x2000u
#define QM_PF_MIG_WINDOW(vf_fn) (QM_PF_MIG_WINDOW_BASE + (uint64_t)(vf_fn) * QM_PF_MIG_WINDOW_SIZE)
/* 0x0000..0x0fff: the VF's function-local registers (its own mailbox at
 * 0x300, not shared with the guest). One difference, defined here: a write
 * of IFC_INT_SOURCE_V (window + 0x20) LOADS bit0 as written instead of
 * acking it, so a restore can bring back a pending PF->VF message; the
 * guest's write through the VF BAR keeps write-1-to-ack. A load raises no
 * interrupt and does not ack the PF (held vectors come back through
 * QM_WIN_INT_PENDING). Defined here beyond the spec page: */
#define QM_WIN_DB_SQCQ 0x1000    /* the VF's SQ/CQ doorbell, host side */
#define QM_WIN_DB_EQAEQ 0x1008   /* the VF's EQ/AEQ doorbell, host side */
#define QM_WIN_EQC_SHADOW 0x1c00 /* 7 dwords: live EQC; a write of dw6 loads it */
#define QM_WIN_AEQC_SHADOW 0x1c20
#define QM_WIN_QP_ACTIVE_L 0x1c40 /* ro: bitmap of queues with a loaded context, 0..31 */
#define QM_WIN_QP_ACTIVE_H 0x1c44 /* ro: queues 32..63 */
#define QM_WIN_INT_PENDING 0x1c48 /* rw: bit v = MSI vector v pending (held while paused) */
#define QM_WIN_PAUSE_STATUS 0x1c4c /* ro: bit0 paused, bit1 all in-flight jobs retired */
#define QM_WIN_IFC_MSG_L 0x1c50  /* rw: the pending PF->VF message (restore of IFC state) */
#define QM_WIN_IFC_MSG_H 0x1c54
#define QM_WIN_DB_IGNORED 0x1c58 /* ro: doorbells ignored as malformed (counter) */
/* Added by the model (defined here): the VF's own pending message to the PF
 * (what the VF's SRC stored and the PF's DST returns), for save/restore of an
 * IFC exchange caught in flight. rw. */
#define QM_WIN_IFC_OUT_MSG_L 0x1c5c
#define QM_WIN_IFC_OUT_MSG_H 0x1c60
/* Defined here: IFC_INT_SOURCE_V bit0 of the VF as the host loads it (rw,
 * a write loads, never acks; same bit as window + 0x20). v3's way to
 * restore it: the upper half has no copy of offset 0x20 (0x8020 is the
 * AEQC shadow), and 0x20 of the VF BAR is the guest's write-1-to-ack. */
#define QM_WIN_IFC_SOURCE_V 0x1c64
#define QM_WIN_PAUSE_PAUSED (1u << 0)
#define QM_WIN_PAUSE_RETIRED (1u << 1)

/* Queue state (defined here, issue 11): what the cached contexts hold
 * beyond the positions CACHE_WB writes to the tables, for the host to read
 * at save and load at restore. Bitmaps are pairs of dwords (queues 0..31 at
 * _L, 32..63 at _H); bits of queues at or above the function's queue count
 * read 0 and ignore writes. "rw" bitmaps load as written (no interrupt, no
 * AEQE). The bits belong to the cached context: whatever drops it (an
 * SQC/CQC load by mailbox or through QM_WIN_QC_*, SQC_BT/CQC_BT, a VFT
 * change, FLR) clears them; a context loaded from its table on first use
 * keeps them, which is how a restore sets the state of a queue whose
 * context is still in guest RAM. */
#define QM_WIN_SQ_STOPPED_L 0x1c68  /* rw: STOP_QP ended: no fetch, SQ doorbells ignored */
#define QM_WIN_SQ_STOPPED_H 0x1c6c  /*     (setting it on a draining SQ ends the drain) */
#define QM_WIN_SQ_STOPPING_L 0x1c70 /* rw: STOP_QP draining; not loaded on a stopped SQ */
#define QM_WIN_SQ_STOPPING_H 0x1c74
#define QM_WIN_SQ_BROKEN_L 0x1c78   /* rw: SQ ring or SQE write-back fault: no fetch */
#define QM_WIN_SQ_BROKEN_H 0x1c7c
#define QM_WIN_CQ_BROKEN_L 0x1c80   /* rw: CQ ring fault: nothing completes into it */
#define QM_WIN_CQ_BROKEN_H 0x1c84
#define QM_WIN_CQ_DISARMED_L 0x1c88 /* rw: EQE posted, none until a priority-1 CQ doorbell */
#define QM_WIN_CQ_DISARMED_H 0x1c8c
#define QM_WIN_CQ_OVERFLOW_L 0x1c90 /* rw: AEQE type 0 posted for this CQ (once a context) */
#define QM_WIN_CQ_OVERFLOW_H 0x1c94
#define QM_WIN_CQ_STALLED_L 0x1c98  /* ro: an SQ waits for room in this CQ (derived from */
#define QM_WIN_CQ_STALLED_H 0x1c9c  /*     the positions: a fetch finds the CQ full again) */
#define QM_WIN_XEQ_STATE 0x1ca0     /* rw: QM_XEQ_ST_* */
#define QM_XEQ_ST_EQ_BROKEN (1u << 0)    /* EQ ring fault: EQ takes nothing; its shadow reads */
#define QM_XEQ_ST_EQ_OVERFLOW (1u << 1)  /*   the context as loaded. OVERFLOW: AEQE type 1 */
#define QM_XEQ_ST_AEQ_BROKEN (1u << 2)   /*   posted, none until an EQ doorbell makes room */
#define QM_XEQ_ST_HALTED (1u << 3)       /* AEQ write fault: the function fetches nothing */
#define QM_XEQ_ST_MASK 0xfu
/* ro: bit q = the last CACHE_WB_START could not write queue q's cached
 * SQC (CQC) to its table (no table base, or a DMA fault): that context is
 * in no guest RAM, and the host reads it through QM_WIN_QC_*. */
#define QM_WIN_SQC_WB_FAIL_L 0x1ca8
#define QM_WIN_SQC_WB_FAIL_H 0x1cac
#define QM_WIN_CQC_WB_FAIL_L 0x1cb0
#define QM_WIN_CQC_WB_FAIL_H 0x1cb4
/* The context cache through registers, as the EQC/AEQC shadows: SEL picks
 * a queue ([5:0]) and kind (bit 8: 1 CQC, 0 SQC); bit 31 reads 1 when that
 * context is loaded. Writing SEL clears the 8 staging dwords. DWi read the
 * cached context with live positions (what CACHE_WB writes) when loaded,
 * the staging dword otherwise; writes stage, and the write of dw7 loads the
 * 32 bytes as an SQC/CQC mailbox load from memory would (same checks; an
 * unusable image leaves the queue as it was). */
#define QM_WIN_QC_SEL 0x1cb8
#define QM_WIN_QC_SEL_CQ (1u << 8)
#define QM_WIN_QC_SEL_LOADED (1u << 31)
#define QM_WIN_QC_DW0 0x1cc0 /* .. dw7 at 0x1cdc */
#define QM_WIN_QC_DW(i) (QM_WIN_QC_DW0 + 4u * (i))
/* The function's own mailbox and doorbell staging as the guest left them
 * (a store split across a pause, a result not yet read, a STOP_QP still
 * draining). STAGE0..3: the 16 bytes as last written. W0 [15:0]: w0 as the
 * guest reads it back, busy included; a write loads it, and busy loads only
 * for STOP_QP (cmd 8) when the queue in STAGE's queue_num is draining
 * (QM_WIN_SQ_STOPPING): the mailbox then completes when the drain ends, as
 * on the source (no other command is ever in progress on a paused
 * function). DB_*: the 8 staged bytes of each doorbell. */
#define QM_WIN_FN_MB_STAGE0 0x1ce0 /* .. STAGE3 at 0x1cec */
#define QM_WIN_FN_MB_W0 0x1cf0
#define QM_WIN_FN_MB_DATA_L 0x1cf4
#define QM_WIN_FN_MB_DATA_H 0x1cf8
#define QM_WIN_FN_DB_SQCQ_L 0x1d00
#define QM_WIN_FN_DB_SQCQ_H 0x1d04
#define QM_WIN_FN_DB_EQAEQ_L 0x1d08
#define QM_WIN_FN_DB_EQAEQ_H 0x1d0c

/* v3 mode: the same host-side registers sit in the VF BAR's upper half.
 * 0x8000/0x8020 are the EQC/AEQC shadows (as in Linux's hisi_acc_vfio_pci);
 * every QM_WIN_* register above (window offsets 0x1000..0x1fff) also appears
 * at QM_V3_MIG_HALF + that offset (QM_V3_WIN(QM_WIN_PAUSE_STATUS) = 0x9c4c).
 * There is no separate host mailbox in v3: migration commands use the VF's
 * own mailbox at 0x300, shared with the guest. */
#define QM_V3_WIN(win_off) (QM_V3_MIG_HALF + (uint64_t)(win_off))

/* Mailbox. w0 = cmd[7:0] | status[12:9] | busy bit 13 | op bit 14. */
#define QM_MB_CMD_SQC 0x0
#define QM_MB_CMD_CQC 0x1
#define QM_MB_CMD_EQC 0x2
#define QM_MB_CMD_AEQC 0x3
#define QM_MB_CMD_SQC_BT 0x4
#define QM_MB_CMD_CQC_BT 0x5
#define QM_MB_CMD_SQC_VFT_V2 0x6
#define QM_MB_CMD_STOP_QP 0x8
#define QM_MB_CMD_SRC 0xc
#define QM_MB_CMD_DST 0xd
#define QM_MB_CMD_PAUSE_QM 0xe
#define QM_MB_CMD_RESUME_QM 0xf /* defined here: lift PAUSE_QM (window mailbox only) */
#define QM_MB_BUSY_SHIFT 13
#define QM_MB_OP_SHIFT 14
#define QM_MB_STATUS_SHIFT 9
#define QM_MB_STATUS_MASK 0xfu
/* Status values (defined here; the Linux driver only tests for non-zero). */
#define QM_MB_ST_OK 0x0
#define QM_MB_ST_BAD_CMD 0x1   /* unknown command, or op not supported for it */
#define QM_MB_ST_BAD_QUEUE 0x2 /* queue_num >= the function's queue count */
#define QM_MB_ST_BAD_ADDR 0x3  /* base 0 where memory is needed, or the DMA failed */
#define QM_MB_ST_BAD_CTX 0x4   /* context content unusable (ring base 0, depth, entry size) */
#define QM_MB_ST_DENIED 0x5    /* migration command from a mailbox not allowed to send it */
#define QM_MB_ST_BAD_FN 0x6    /* SRC/DST/VFT naming a function that does not exist */
#define QM_MB_ST_NO_CTX 0x7    /* dump (op=1) of a context that is not loaded */

struct qm_mailbox {
    uint16_t w0;
    uint16_t queue_num;
    uint32_t base_l;
    uint32_t base_h;
    uint32_t rsvd;
} __attribute__((packed));
_Static_assert(sizeof(struct qm_mailbox) == 16, "struct qm_mailbox is 16 bytes");

/* SQC_VFT_V2 query result layout. */
#define QM_VFT_BASE_SHIFT 28
#define QM_VFT_BASE_MASK 0xffffull
#define QM_VFT_VALID_SHIFT 44
#define QM_VFT_NUM_SHIFT 45
#define QM_VFT_NUM_MASK 0x3ffull

/* Doorbells. */
#define QM_DB_CMD_SQ 0u
#define QM_DB_CMD_CQ 1u
#define QM_DB_CMD_EQ 2u
#define QM_DB_CMD_AEQ 3u
/* Doorbell isolation (QUE_ISO_CFG bit0): a VF's BAR4 holds one 64 KiB page
 * per queue; queue qn's SQ/CQ doorbell is the 64-bit word at
 * qn * QM_DB_PAGE_SIZE + QM_DB_SQCQ (the Linux driver's QM_QP_DB_INTERVAL
 * and QM_DOORBELL_SQ_CQ_BASE_V2). EQ/AEQ doorbells stay in BAR2. A doorbell
 * word the device has taken reads all-ones (defined here): no valid
 * doorbell has that value (cmd 15). */
#define QM_QUE_ISO_EN 0x1u
#define QM_DB_PAGE_SIZE 0x10000u
#define QM_DB_IDLE UINT64_MAX
/* Defined here, for guests that map BAR4 and vouch for it (accmig's own
 * driver): the word after each doorbell word reads QM_DB_POLL_ON while the
 * device sweeps the pages continuously, so a stored doorbell is seen within
 * microseconds; anything else means the device may wait up to milliseconds
 * between sweeps. A guest that stores a doorbell, then (after a full fence)
 * reads anything but QM_DB_POLL_ON here, kicks: a trapped 8-byte write to
 * this word (any value; the word keeps what the device wrote), which takes
 * the queue's stored doorbell word at once. A kick carries no doorbell, so
 * it may be posted and arrive late: it only takes what is stored then. The
 * device never depends on the word: it only spares a kick. As virtio's
 * used-ring flags and NVMe's shadow-doorbell event index spare
 * notifications. */
#define QM_DB_POLL_STATE (QM_DB_SQCQ + 8u)
#define QM_DB_POLL_ON 1u
#define QM_DB_POLL_OFF 0u
static inline uint64_t qm_db_value(uint16_t qn, unsigned cmd, uint16_t index, uint16_t priority)
{
    return (uint64_t)(qn & 0xfffu) | (uint64_t)(cmd & 0xfu) << 12 | (uint64_t)index << 32 |
           (uint64_t)priority << 48;
}

/* Contexts. */
struct qm_sqc {
    uint16_t head, tail;
    uint32_t base_l, base_h;
    uint32_t dw3;
    uint16_t w8, rsvd0, pasid, w11, cq_num, w13;
    uint32_t rsvd1;
} __attribute__((packed));
_Static_assert(sizeof(struct qm_sqc) == 32, "struct qm_sqc is 32 bytes");

struct qm_cqc {
    uint16_t head, tail;
    uint32_t base_l, base_h;
    uint32_t dw3;
    uint16_t w8, rsvd0, pasid, w11;
    uint32_t dw6, rsvd1;
} __attribute__((packed));
_Static_assert(sizeof(struct qm_cqc) == 32, "struct qm_cqc is 32 bytes");

struct qm_eqc {
    uint16_t head, tail;
    uint32_t base_l, base_h;
    uint32_t dw3;
    uint32_t rsvd[2];
    uint32_t dw6;
} __attribute__((packed));
_Static_assert(sizeof(struct qm_eqc) == 28, "struct qm_eqc is 28 bytes");
#define qm_aeqc qm_eqc

#define QM_SQ_DEPTH 1024u
#define QM_CQ_DEPTH 1024u
#define QM_EQ_DEPTH 2048u
#define QM_AEQ_DEPTH 1024u
#define QM_SQE_SIZE_LOG2 7u /* ZIP SQE: 128 bytes */
#define QM_SQC_DW3(depth) (((depth) - 1u) | QM_SQE_SIZE_LOG2 << 12)
#define QM_CQC_DW3(depth) (((depth) - 1u) | 4u << 12)
#define QM_CQC_DW6_PHASE 1u
#define QM_CQC_DW6_EQ_EN 2u
#define QM_EQC_DW6(depth, phase) (((depth) - 1u) | (uint32_t)(phase) << 16)
#define QM_SQC_W13(alg_type) (0x0010u | (uint16_t)(alg_type) << 8)

struct qm_cqe {
    uint32_t rsvd0;
    uint16_t cmd_id, rsvd1;
    uint16_t sq_head;
    uint16_t sq_num;
    uint16_t rsvd2;
    uint16_t w7; /* bit0 phase */
} __attribute__((packed));
_Static_assert(sizeof(struct qm_cqe) == 16, "struct qm_cqe is 16 bytes");

/* EQE: dw0 = cq number[15:0] | phase << 16. AEQE: qn | phase << 16 | type << 17. */
#define QM_EQE_PHASE (1u << 16)
#define QM_AEQE_TYPE_SHIFT 17
enum qm_aeqe_type { QM_AEQE_CQ_OVERFLOW = 0, QM_AEQE_EQ_OVERFLOW = 1, QM_AEQE_CQE_ERROR = 2 };

/* IFC messages (64-bit, cmd in the low 32 bits). */
enum qm_ifc_cmd {
    QM_IFC_PF_FLR_PREPARE = 1,
    QM_IFC_PF_SRST_PREPARE = 2,
    QM_IFC_PF_RESET_DONE = 3,
    QM_IFC_VF_PREPARE_DONE = 4,
    QM_IFC_VF_PREPARE_FAIL = 5,
    QM_IFC_VF_START_DONE = 6,
    QM_IFC_VF_START_FAIL = 7,
    QM_IFC_PF_SET_QOS = 8,
    QM_IFC_VF_GET_QOS = 9,
};

#endif
