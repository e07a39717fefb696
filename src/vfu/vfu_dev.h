/* vfu_dev: the per-VF device object shared by device.c and session.c
 * (private to vfu/). */
#ifndef ACCMIG_VFU_DEV_H
#define ACCMIG_VFU_DEV_H

#include <pthread.h>

#include "vfu/vfu.h"
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
    /* Touched only by whoever drives the session, one thread at a time: in
     * the server, with its handler lock held (session open, each handler,
     * session close). */
    struct vfu_pci_cfg cfg;
    struct vfu_session *session;
    /* irq_lock protects msi_efd[]: the session thread changes it (SET_IRQS,
     * close) while device worker threads raise interrupts through it. */
    pthread_mutex_t irq_lock;
    int msi_efd[QM_NUM_VECTORS];
    uint64_t irq_delivered, irq_dropped; /* atomics */
};

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
