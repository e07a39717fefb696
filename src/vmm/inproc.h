/* vmm/inproc: the in-process transport that attaches a guest to one VF of a
 * device model living in the same process (guest RAM: vmm/vm_ram.h).
 *
 * The in-process transport is what a VMM does for an assigned VF, minus the
 * kernel: guest MMIO to the VF's BAR2 becomes qm_bar_read/qm_bar_write on the
 * VF's function, a doorbell to its BAR4 (doorbell isolation) qm_db_bar_write
 * (db_write; nothing is mapped: db_pages is NULL, db_pages_size the BAR's); guest RAM is mapped into the VF's IOMMU domain at
 * IOVA == GPA; MSIs from the model's irq sink land in a per-(function, vector)
 * pending flag that vf_io.irq_wait waits on.
 *
 * Contract
 * - vmm_irq_router: create it before the device (its sink goes into
 *   qm_dev_config.irq); it must outlive the device. The sink may be called
 *   from any thread. Vectors >= QM_NUM_VECTORS or functions >= num_fns are
 *   dropped and counted.
 * - vmm_inproc_vf_create maps the whole RAM read/write into the VF's IOMMU
 *   domain at IOVA 0 (iommu_map_host errors are returned) and returns a
 *   transport whose vf_io follows vf_io.h; destroy unmaps. fn must be a VF
 *   (1 .. num_vfs), -EINVAL otherwise. One transport per function at a time.
 * - Everything here is thread-safe as vf_io.h requires.
 */
#ifndef ACCMIG_VMM_INPROC_H
#define ACCMIG_VMM_INPROC_H

#include <stdint.h>

#include "guest/vf_io.h"
#include "qm/qm.h"

/* ---- MSI delivery ---- */

struct vmm_irq_router;

int vmm_irq_router_create(unsigned num_fns, struct vmm_irq_router **out);
void vmm_irq_router_destroy(struct vmm_irq_router *r);
struct qm_irq_sink vmm_irq_router_sink(struct vmm_irq_router *r);
/* Wait until vector of fn fired since the last wait (consumes it);
 * 0, -ETIMEDOUT (timeout_ms 0 = just test), -EINVAL bad fn/vector, -EINTR
 * when vmm_irq_wake ended it. */
int vmm_irq_wait(struct vmm_irq_router *r, unsigned fn, unsigned vector, int timeout_ms);
/* End the wait in progress on each vector of fn, or the next one (vf_io.h,
 * irq_wake). */
void vmm_irq_wake(struct vmm_irq_router *r, unsigned fn);
/* MSIs delivered to fn/vector so far (for reports and tests). */
uint64_t vmm_irq_count(struct vmm_irq_router *r, unsigned fn, unsigned vector);

/* ---- in-process VF transport ---- */

struct vmm_inproc_vf;

int vmm_inproc_vf_create(struct qm_dev *dev, unsigned fn, struct vmm_irq_router *irq,
                         const struct guest_ram *ram, struct vmm_inproc_vf **out);
void vmm_inproc_vf_destroy(struct vmm_inproc_vf *v);
/* The transport as the guest driver uses it; valid until destroy. */
const struct vf_io *vmm_inproc_vf_io(struct vmm_inproc_vf *v);

/* ---- one device instance with a guest's VF attached ---- */

struct vmm_inproc_host {
    struct vmm_irq_router *irq;
    struct qm_dev *dev;
    struct vmm_inproc_vf *vf;
};

/* Router + device (cfg as given; its irq sink is set here) + VF fn attached
 * to ram. Errors of the three creates; on failure nothing is left over. */
int vmm_inproc_host_create(const struct qm_dev_config *cfg, unsigned fn, const struct guest_ram *ram,
                           struct vmm_inproc_host *h);
/* Detach, destroy the device, then the router. A zeroed struct is a no-op. */
void vmm_inproc_host_destroy(struct vmm_inproc_host *h);

#endif
