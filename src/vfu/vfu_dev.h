/* vfu_dev: the per-VF device object shared by device.c and session.c
 * (private to vfu/). */
#ifndef ACCMIG_VFU_DEV_H
#define ACCMIG_VFU_DEV_H

#include <pthread.h>

#include "vfu/vfu.h"
#include "vfu/vfu_dev_ops.h"
#include "vfu/vfu_pci.h"

struct vfu_vf {
    struct vfu_device *owner;
    struct qm_dev *qm;
    unsigned index; /* 0-based VF index: socket vf<index>.sock */
    unsigned fn;    /* PCI function number: index + 1 */
    char name[16];  /* "vf<index>", for logs */
    struct mig_dev *mig;
    struct iommu_domain *dom;
    uint64_t bar_size; /* BAR2 region size the client sees */
    uint64_t db_size;  /* BAR4 (doorbell pages) size, 0 when the VF has none */
    int db_mmap;       /* enum vfu_db_mmap: who may map BAR4 */
    /* session_lock serialises this VF's session and nothing else: session
     * open and close and every handler (vfu_session_* take it themselves)
     * run with it held, so cfg, session, ops and ops_ctx change one call at
     * a time. No lock of another VF is taken under it, and nothing outside
     * this VF's session waits on it while a handler runs: in the server
     * only the VF's own client thread takes it (and the accept loop, to
     * open a session when the VF has no thread, when it is free). Held for
     * one handler: as long as that handler's longest device wait (a
     * mailbox, PAUSE_QM, a P2P poll of up to 100 ms, twin DMA up to its 5 s
     * timeout). Device worker threads never take it. Lock order:
     * session_lock, then irq_lock, the mig_dev's and the model's locks, a
     * session's twin_lock. */
    pthread_mutex_t session_lock;
    struct vfu_pci_cfg cfg;
    struct vfu_session *session;
    const struct vfu_dev_ops *ops; /* what the next session uses */
    void *ops_ctx;
    /* irq_lock protects msi_efd[]: the session thread changes it (SET_IRQS,
     * close) while device worker threads raise interrupts through it. */
    pthread_mutex_t irq_lock;
    int msi_efd[QM_NUM_VECTORS];
    uint64_t irq_delivered, irq_dropped; /* atomics */
};

/* STYLE 11: aborts (in debug builds) unless session_lock is held. */
void vfu_vf_assert_session_locked(struct vfu_vf *vf);

/* Function-level reset of the VF as VFIO_USER_DEVICE_RESET does it:
 * qm_function_reset + mig_reset (state RUNNING, streams ended, logging off).
 * Config space, DMA mappings and eventfds stay. First error returned. */
int vfu_vf_reset(struct vfu_vf *vf);
/* Sets MSI vectors [start, start+count) to fds[i] (-1 = none), closing what
 * was there. The caller passes ownership of every fd >= 0. */
void vfu_vf_msi_set(struct vfu_vf *vf, unsigned start, unsigned count, const int *fds);
/* Signals vector v now, as the device would (loopback trigger). */
void vfu_vf_msi_fire(struct vfu_vf *vf, unsigned v);

#endif
