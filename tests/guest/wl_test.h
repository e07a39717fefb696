/* tests/guest: helpers shared by the workload tests (include after
 * cmocka.h). */
#ifndef ACCMIG_TESTS_GUEST_WL_TEST_H
#define ACCMIG_TESTS_GUEST_WL_TEST_H

#include <time.h>

#include "guest/workload.h"
#include "mig/mig.h"
#include "vmm/inproc.h"
#include "vmm/vm_ram.h"

static inline void wl_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Until w has taken steps steps, finished, or 30 s passed. */
static inline void wl_wait_steps(struct workload *w, uint64_t steps)
{
    for (int i = 0; i < 6000 && workload_steps(w) < steps && !workload_done(w); i++)
        wl_sleep_ms(5);
}

/* Stop-and-copy the paused guest and VF vf from host A to host B (a second
 * device instance with its own RAM), the way a VMM would, using mig.h only
 * for the device. Returns after B's VF runs. */
static inline void wl_migrate_stop_and_copy(unsigned vf, struct vmm_inproc_host *a_host,
                                            struct vm_ram *a_ram, struct vmm_inproc_host *b_host,
                                            struct vm_ram *b_ram)
{
    struct mig_dev *src, *dst;
    uint8_t buf[4096];
    ssize_t n, total = 0;

    assert_int_equal(mig_dev_create(a_host->dev, vf, MIG_HW_V4, &src), 0);
    assert_int_equal(mig_dev_create(b_host->dev, vf, MIG_HW_V4, &dst), 0);
    assert_int_equal(mig_set_state(dst, VFIO_MIG_STATE_RESUMING), 0);
    assert_int_equal(mig_set_state(src, VFIO_MIG_STATE_STOP_COPY), 0);
    while ((n = mig_read(src, buf + total, sizeof(buf) - (size_t)total)) > 0)
        total += n;
    assert_int_equal(n, 0);
    /* RAM last: STOP_COPY wrote the queue positions into guest RAM. */
    memcpy(vm_ram_host(b_ram), vm_ram_host(a_ram), vm_ram_size(a_ram));
    assert_int_equal(mig_write(dst, buf, (size_t)total), total);
    if (mig_set_state(dst, VFIO_MIG_STATE_RUNNING) != 0)
        fail_msg("destination refused: %s", mig_last_error(dst));
    assert_int_equal(mig_reset(src), 0); /* the source VF is done with */
    mig_dev_destroy(src);
    mig_dev_destroy(dst);
}

#endif
