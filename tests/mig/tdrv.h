/* tdrv: a small guest-side QM/ZIP driver for the migration tests.
 *
 * It drives one VF the way the Linux VF driver does, through the VF's BAR2
 * (qm_bar_read/qm_bar_write on the VF function) and guest RAM (a host buffer
 * the test maps into the VF's IOMMU domain at IOVA = guest address). Its
 * software state (ring positions, in-flight tags) lives in this struct,
 * which "moves" with the guest when a test migrates: tdrv_switch points it at
 * the destination device and RAM copy.
 *
 * Every job is a raw-deflate compression of a slice of a fixed input; its
 * tag (SQE dw26-27) is checked on completion: status, output inflated and
 * compared, and completed exactly once.
 */
#ifndef ACCMIG_TESTS_MIG_TDRV_H
#define ACCMIG_TESTS_MIG_TDRV_H

#include <stdbool.h>
#include <stdint.h>

#include "qm/qm.h"

#define TDRV_MAX_QPS 64u
#define TDRV_DEPTH 1024u
#define TDRV_MAX_TAGS 8192u

/* Guest RAM layout (addresses are guest physical = IOVA). */
#define TDRV_GPA_SCRATCH 0x1000ull /* mailbox context buffer */
#define TDRV_GPA_SQC_TABLE 0x2000ull
#define TDRV_GPA_CQC_TABLE 0x3000ull
#define TDRV_GPA_EQ 0x4000ull  /* 2048 x 4 bytes */
#define TDRV_GPA_AEQ 0x6000ull /* 1024 x 4 bytes */
#define TDRV_GPA_INPUT 0x8000ull
#define TDRV_INPUT_MAX 0x8000u /* 32 KiB of input data */
#define TDRV_GPA_RINGS 0x10000ull
#define TDRV_RING_STRIDE 0x24000ull /* SQ 128 KiB + CQ 16 KiB per queue */

#define TDRV_NO_TABLE UINT64_MAX /* tdrv_cfg.sqc_table / cqc_table: never set that base */

struct tdrv_cfg {
    unsigned nqps;      /* queue pairs to lay out (<= the VF's) */
    uint32_t in_len;    /* input bytes per job (<= TDRV_INPUT_MAX - 64) */
    uint32_t out_len;   /* output buffer per job */
    unsigned pool;      /* output buffers per queue = max jobs in flight per queue */
    /* Table bases tdrv_init sets: 0 = the layout's, TDRV_NO_TABLE = none
     * (contexts loaded by mailbox only), else that address. */
    uint64_t sqc_table, cqc_table;
};

struct tdrv_queue {
    bool started, stopped;
    uint16_t sq_tail, cq_head;
    bool cq_phase;
    uint16_t cq; /* the CQ this SQ completes into */
    unsigned inflight;
    uint32_t slot_tag[TDRV_DEPTH];  /* tag of the job in each SQ slot */
    uint16_t slot_buf[TDRV_DEPTH];  /* its output buffer */
    uint8_t buf_busy[TDRV_DEPTH];
};

struct tdrv {
    struct qm_dev *dev;
    unsigned fn;
    uint8_t *ram;
    uint64_t ram_size;
    struct tdrv_cfg cfg;
    unsigned qp_num; /* from the VFT */
    uint16_t eq_head, aeq_head;
    bool eq_phase, aeq_phase;
    struct tdrv_queue q[TDRV_MAX_QPS];
    uint32_t next_tag;
    uint8_t done[TDRV_MAX_TAGS]; /* completions per tag */
    uint64_t completions, eqes, aeqes, errors;
    char first_error[160];
};

/* Guest RAM bytes the layout needs. */
uint64_t tdrv_ram_size(const struct tdrv_cfg *cfg);

/* Binds the driver to (dev, fn, ram); no register is touched. */
void tdrv_bind(struct tdrv *d, struct qm_dev *dev, unsigned fn, uint8_t *ram, uint64_t ram_size,
               const struct tdrv_cfg *cfg);
/* Maps the RAM into the VF's IOMMU domain. */
int tdrv_map(struct qm_dev *dev, unsigned fn, uint8_t *ram, uint64_t size);
/* The migrated guest now runs on (dev, fn) with its RAM copy at ram. */
void tdrv_switch(struct tdrv *d, struct qm_dev *dev, uint8_t *ram);

/* VF init as the Linux driver does it (VFT, IFC, EQC, AEQC, tables,
 * PAGE_SIZE, EQ/AEQ doorbells, unmask, VF_STATE READY). */
int tdrv_init(struct tdrv *d);
/* Starts queue q (SQC then CQC mailbox); its CQ is cq (normally q). */
int tdrv_qp_start(struct tdrv *d, unsigned q, unsigned cq);
/* STOP_QP on queue q, then reaps what it owes. */
int tdrv_qp_stop(struct tdrv *d, unsigned q);
/* Submits one job on q; returns its tag (>= 0), -EBUSY when full. */
int tdrv_submit(struct tdrv *d, unsigned q);
/* The same without the doorbell (the caller rings it, with d->q[q].sq_tail). */
int tdrv_submit_nodb(struct tdrv *d, unsigned q);
/* Submits n jobs round-robin over queues [0, nq); returns 0 or an error. */
int tdrv_submit_many(struct tdrv *d, unsigned nq, unsigned n);
/* EQ walk + every started CQ; returns completions reaped. */
int tdrv_poll(struct tdrv *d);
/* Polls until no job is in flight (or 60 s pass: -ETIMEDOUT). */
int tdrv_drain(struct tdrv *d);
/* Number of CQEs the device has written beyond the driver's head on q. */
unsigned tdrv_cq_pending(const struct tdrv *d, unsigned q);
/* Total jobs in flight. */
unsigned tdrv_inflight(const struct tdrv *d);
/* 0 when every tag submitted so far completed exactly once, no error. */
int tdrv_check_exactly_once(const struct tdrv *d);

/* The driver's mailbox command (polls busy like the Linux driver): 0,
 * -ETIMEDOUT (still busy after 1 ms), -EIO (status != 0). */
int tdrv_mailbox(struct tdrv *d, unsigned cmd, uint16_t queue, uint64_t base, int op,
                 uint64_t *data);
/* Writes a command with queue_num and base 0 and returns at once (a
 * STOP_QP left draining); -EBUSY if the mailbox is busy. */
int tdrv_mailbox_post(struct tdrv *d, unsigned cmd, uint16_t queue);
/* One doorbell (SQ/CQ at 0x1000, EQ/AEQ at 0x2000). */
void tdrv_doorbell(struct tdrv *d, uint16_t qn, unsigned cmd, uint16_t index, uint16_t prio);
/* A stopped SQ started again where it stopped: its context dumped (SQC
 * op=1) and loaded again, then the SQ doorbell: the SQEs left run. */
int tdrv_qp_resume(struct tdrv *d, unsigned q);
/* CQ c loaded afresh (ring cleared, head 0, phase 1): after a CQ ring fault. */
int tdrv_cq_restart(struct tdrv *d, unsigned c);
/* The EQ loaded afresh (ring cleared, head 0, phase 1). */
int tdrv_eq_reload(struct tdrv *d);

uint32_t tdrv_reg_read(struct tdrv *d, uint32_t off);
void tdrv_reg_write(struct tdrv *d, uint32_t off, uint32_t v);

#endif
