/* The real guest driver (src/guest) across migrations: its state lives in
 * guest RAM, so after the RAM copy and the device state move, guest_vf_attach
 * on the destination carries on and every job completes exactly once. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/common.h"
#include "guest/guest.h"
#include "mig_fixture.h"

#define G_QPS 4u
#define G_STATE_GPA 0x100000ull
#define G_JOB_IN 8192u
#define G_JOB_OUT 16384u
#define G_MAX_JOBS 512u

struct g_side {
    struct mig_side s;
    struct vf_io io;
    unsigned seen[QM_NUM_VECTORS];
};

struct g_run {
    uint8_t done[G_MAX_JOBS];
    unsigned bad;
};

static int g_mmio_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct g_side *g = opaque;

    return qm_bar_read(g->s.dev, 1, off, data, size);
}

static int g_mmio_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct g_side *g = opaque;

    return qm_bar_write(g->s.dev, 1, off, data, size);
}

/* BAR4 doorbells (isolation is on by default): trapped, as the in-process
 * transport has them. */
static int g_db_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct g_side *g = opaque;

    return qm_db_bar_write(g->s.dev, 1, off, data, size);
}

/* MSIs are counted by the fixture's irq sink; a wait sees a new one. */
static int g_irq_wait(void *opaque, unsigned vector, int timeout_ms)
{
    struct g_side *g = opaque;
    uint64_t deadline = am_now_ns() + (uint64_t)timeout_ms * 1000000u;
    struct timespec ts = {0, 50000};

    if (vector >= QM_NUM_VECTORS)
        return -EINVAL;
    for (;;) {
        unsigned now = atomic_load(&g->s.msi[vector]);

        if (now != g->seen[vector]) {
            g->seen[vector] = now;
            return 0;
        }
        if (am_now_ns() >= deadline)
            return -ETIMEDOUT;
        nanosleep(&ts, NULL);
    }
}

static uint64_t g_data_gpa(void)
{
    return G_STATE_GPA + AM_ALIGN_UP(guest_vf_state_size(G_QPS), 4096u);
}

static uint64_t g_ram_size(void)
{
    return g_data_gpa() + G_JOB_IN + (uint64_t)G_MAX_JOBS * G_JOB_OUT;
}

static void g_side_create(struct g_side *g)
{
    memset(g, 0, sizeof(*g));
    side_create(&g->s, G_QPS, QM_REV_V4, MIG_HW_V4, g_ram_size());
    g->io = (struct vf_io){.mmio_read = g_mmio_read,
                           .mmio_write = g_mmio_write,
                           .db_write = g_db_write,
                           .irq_wait = g_irq_wait,
                           .opaque = g};
}

static struct guest_ram g_ram(struct g_side *g)
{
    return (struct guest_ram){g->s.ram, g->s.ram_size, NULL};
}

static void on_complete(void *opaque, const struct guest_vf_completion *c)
{
    struct g_run *r = opaque;

    if (c->tag >= G_MAX_JOBS || r->done[c->tag]++ != 0 || c->status != 0)
        r->bad++;
}

static void submit(struct guest_vf *vf, unsigned first, unsigned n)
{
    for (unsigned t = first; t < first + n; t++) {
        struct guest_zip_req req = {
            .type = ZIP_REQ_DEFLATE,
            .buf_type = ZIP_BUF_FLAT,
            .src = g_data_gpa(),
            .dst = g_data_gpa() + G_JOB_IN + (uint64_t)t * G_JOB_OUT,
            .in_len = G_JOB_IN,
            .dest_avail = G_JOB_OUT,
            .window = 4,
            .tag = t,
        };
        uint32_t sqe[ZIP_SQE_DWORDS];

        assert_int_equal(guest_zip_sqe_build(sqe, &req), 0);
        assert_int_equal(guest_vf_submit(vf, t % G_QPS, sqe), 0);
    }
}

static void drain(struct guest_vf *vf)
{
    uint64_t deadline = am_now_ns() + 60ull * 1000000000ull;
    unsigned left;

    do {
        left = 0;
        guest_vf_poll(vf, 0);
        for (unsigned q = 0; q < G_QPS; q++)
            left += guest_vf_qp_inflight(vf, q);
        assert_true(am_now_ns() < deadline);
    } while (left > 0);
}

static void test_the_guest_driver_carries_on_after_each_of_several_migrations(void **state)
{
    static struct g_side side[2];
    static struct g_run run;
    struct guest_ram ram;
    struct guest_vf *vf;
    unsigned next = 0;
    (void)state;

    g_side_create(&side[0]);
    g_side_create(&side[1]);
    ram = g_ram(&side[0]);
    for (uint64_t i = 0; i < G_JOB_IN; i++)
        side[0].s.ram[g_data_gpa() + i] = (uint8_t)("accmig migrates a VF "[i % 21]);
    assert_int_equal(guest_vf_init(&side[0].io, &ram, G_STATE_GPA, guest_vf_state_size(G_QPS),
                                   &vf),
                     0);
    guest_vf_set_complete_cb(vf, on_complete, &run);
    for (unsigned q = 0; q < G_QPS; q++)
        assert_int_equal(guest_vf_qp_start(vf, q, ZIP_ALG_COMPRESS), 0);
    for (int m = 0; m < 4; m++) {
        struct g_side *from = &side[m % 2], *to = &side[(m + 1) % 2];

        submit(vf, next, 60);
        next += 60;
        guest_vf_poll(vf, 0);
        migrate(&from->s, &to->s, m % 2, 0, NULL, NULL);
        guest_vf_detach(vf);
        assert_int_equal(mig_reset(from->s.mig), 0);
        ram = g_ram(to);
        assert_int_equal(guest_vf_attach(&to->io, &ram, G_STATE_GPA, &vf), 0);
        guest_vf_set_complete_cb(vf, on_complete, &run);
    }
    drain(vf);
    submit(vf, next, 20);
    next += 20;
    drain(vf);
    assert_int_equal(run.bad, 0);
    for (unsigned t = 0; t < next; t++)
        assert_int_equal(run.done[t], 1);
    guest_vf_detach(vf);
    side_destroy(&side[0].s);
    side_destroy(&side[1].s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_guest_driver_carries_on_after_each_of_several_migrations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
