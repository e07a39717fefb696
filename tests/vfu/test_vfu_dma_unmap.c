/* DMA_UNMAP as QEMU sends it, over the raw protocol: one range may cover
 * several earlier maps, QEMU cuts the space into power-of-two pieces and
 * the last ends exactly at 2^64; a range that cuts a mapping is refused
 * with nothing removed; a range with nothing in it succeeds; and what was
 * removed can be mapped again (a guest reboot re-maps the same RAM). The
 * server runs in-process on its own thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <sys/mman.h>

#include "vfu_test_util.h"

#define TOP_HALF (1ull << 63) /* QEMU's halves of the 2^64 space */

struct fixture {
    struct test_server ts;
    struct raw_conn rc;
    unsigned base_fds;
    int fd; /* a 1 MiB memfd every fd map uses */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->rc.fd = -1;
    if (test_server_start(&f->ts, 1, MIG_HW_V4, NULL) || raw_open(&f->rc, test_sock(&f->ts, 0))) {
        free(f);
        return -1;
    }
    f->fd = memfd_create("vfu-unmap", MFD_CLOEXEC);
    if (f->fd < 0 || ftruncate(f->fd, 1 << 20) != 0)
        return -1;
    f->base_fds = test_count_fds();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    raw_close(&f->rc);
    test_server_stop(&f->ts, false);
    close(f->fd);
    free(f);
    return 0;
}

static unsigned maps(struct fixture *f)
{
    return iommu_mapping_count(qm_dev_iommu(vfu_device_qm(vfu_server_device(f->ts.srv)), 1));
}

/* A read/write map of [addr, addr+size): with the memfd (fd true) or
 * without one (DMA then goes over the twin socket). */
static int map(struct fixture *f, uint64_t addr, uint64_t size, bool fd)
{
    struct vfu_dma_map m = {.argsz = 32, .flags = 3, .addr = addr, .size = size};
    return raw_call(&f->rc, VFU_CMD_DMA_MAP, &m, sizeof(m), &f->fd, fd ? 1 : 0, NULL, 0, NULL);
}

/* Unmaps [addr, addr+size) and checks that the reply is the request's entry
 * as sent (the spec: "the original DMA entry in the request"). */
static int unmap(struct fixture *f, uint64_t addr, uint64_t size)
{
    struct vfu_dma_unmap u = {.argsz = 24, .addr = addr, .size = size}, rep = {0};
    size_t got = 0;
    int ret = raw_call(&f->rc, VFU_CMD_DMA_UNMAP, &u, sizeof(u), NULL, 0, &rep, sizeof(rep), &got);
    if (ret == 0) {
        assert_int_equal(got, sizeof(rep));
        assert_int_equal(rep.argsz, 24);
        assert_int_equal(rep.flags, 0);
        assert_true(rep.addr == addr);
        assert_true(rep.size == size);
    }
    return ret;
}

static void test_one_range_covering_several_maps_removes_all_of_them(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(map(f, 0x100000, 0x10000, true), 0);
    assert_int_equal(map(f, 0x110000, 0x20000, false), 0);
    assert_int_equal(map(f, 0x180000, 0x1000, true), 0);
    assert_int_equal(map(f, 0x400000, 0x1000, true), 0); /* outside: stays */
    assert_int_equal(maps(f), 4);
    assert_int_equal(unmap(f, 0x100000, 0x100000), 0);
    assert_int_equal(maps(f), 1);
    assert_int_equal(unmap(f, 0, 0x1000000), 0);
    assert_int_equal(maps(f), 0);
    assert_int_equal(test_count_fds(), f->base_fds);
}

static void test_qemu_power_of_two_halves_up_to_2_pow_64_remove_everything(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(map(f, 0, 0x10000, true), 0);
    assert_int_equal(map(f, 0x100000000ull, 0x10000, false), 0);
    assert_int_equal(map(f, TOP_HALF - 0x1000, 0x1000, true), 0);
    assert_int_equal(map(f, TOP_HALF, 0x2000, true), 0);
    assert_int_equal(map(f, UINT64_MAX - 0x1fff, 0x1000, false), 0); /* the page below the top */
    assert_int_equal(maps(f), 5);
    /* QEMU's listener removes the whole space as [0, 2^63) + [2^63, 2^64). */
    assert_int_equal(unmap(f, 0, TOP_HALF), 0);
    assert_int_equal(maps(f), 2);
    assert_int_equal(unmap(f, TOP_HALF, TOP_HALF), 0);
    assert_int_equal(maps(f), 0);
    /* Smaller power-of-two pieces, the last ending at 2^64 too. */
    assert_int_equal(map(f, UINT64_MAX - 0xffff, 0x4000, true), 0);
    assert_int_equal(unmap(f, UINT64_MAX - 0xffff, 0x8000), 0);
    assert_int_equal(unmap(f, UINT64_MAX - 0x7fff, 0x8000), 0);
    assert_int_equal(maps(f), 0);
    assert_int_equal(test_count_fds(), f->base_fds);
}

static void test_a_range_ending_exactly_at_2_pow_64_is_not_a_wrap(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(map(f, UINT64_MAX - 0xfffff, 0x1000, true), 0);
    assert_int_equal(unmap(f, UINT64_MAX - 0xfffff, 0x100000), 0);
    assert_int_equal(maps(f), 0);
    /* The largest range there is: from page 1 to 2^64. */
    assert_int_equal(map(f, 0x1000, 0x1000, true), 0);
    assert_int_equal(unmap(f, 0x1000, UINT64_MAX - 0xfff), 0);
    assert_int_equal(maps(f), 0);
    /* One page further is beyond 2^64. */
    assert_int_equal(unmap(f, UINT64_MAX - 0xfff, 0x2000), -EOVERFLOW);
    assert_int_equal(unmap(f, 0x2000, UINT64_MAX - 0xfff), -EOVERFLOW);
    assert_int_equal(unmap(f, UINT64_MAX, UINT64_MAX), -EOVERFLOW);
}

static void test_a_range_cutting_a_mapping_is_einval_and_removes_nothing(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(map(f, 0x10000, 0x10000, true), 0);
    assert_int_equal(map(f, 0x30000, 0x10000, false), 0);
    assert_int_equal(unmap(f, 0x18000, 0x28000), -EINVAL);  /* cuts the first, covers none */
    assert_int_equal(unmap(f, 0x10000, 0x28000), -EINVAL);  /* covers the first, cuts the second */
    assert_int_equal(unmap(f, 0x00000, 0x11000), -EINVAL);  /* ends inside the first */
    assert_int_equal(unmap(f, 0x10000, 0x1000), -EINVAL);   /* a part of one */
    assert_int_equal(maps(f), 2);
    assert_int_equal(unmap(f, 0x10000, 0x30000), 0);
    assert_int_equal(maps(f), 0);
}

static void test_an_empty_range_succeeds_and_bad_forms_are_refused(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(unmap(f, 0x500000, 0x1000), 0);
    assert_int_equal(map(f, 0x10000, 0x10000, true), 0);
    assert_int_equal(unmap(f, 0x20000, 0x10000), 0); /* just after it */
    assert_int_equal(unmap(f, 0, 0x10000), 0);       /* just before it */
    assert_int_equal(maps(f), 1);
    assert_int_equal(unmap(f, 0x10000, 0), -EINVAL);
    assert_int_equal(unmap(f, 0x10800, 0x1000), -EINVAL);
    assert_int_equal(unmap(f, 0x10000, 0x1800), -EINVAL);
    assert_int_equal(maps(f), 1);
}

static void test_what_was_unmapped_can_be_mapped_again_like_after_a_reboot(void **state)
{
    struct fixture *f = *state;

    /* QEMU's memory map at boot, then the reset of the address space. */
    for (unsigned round = 0; round < 3; round++) {
        assert_int_equal(map(f, 0, 0xa0000, true), 0);
        assert_int_equal(map(f, 0xc0000, 0x20000, false), 0);
        assert_int_equal(map(f, 0x100000, 0x80000, true), 0);
        assert_int_equal(map(f, 0, 0x1000, true), -EEXIST);
        assert_int_equal(unmap(f, 0, TOP_HALF), 0);
        assert_int_equal(unmap(f, TOP_HALF, TOP_HALF), 0);
        assert_int_equal(maps(f), 0);
    }
    assert_int_equal(test_count_fds(), f->base_fds);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_one_range_covering_several_maps_removes_all_of_them),
        T(test_qemu_power_of_two_halves_up_to_2_pow_64_remove_everything),
        T(test_a_range_ending_exactly_at_2_pow_64_is_not_a_wrap),
        T(test_a_range_cutting_a_mapping_is_einval_and_removes_nothing),
        T(test_an_empty_range_succeeds_and_bad_forms_are_refused),
        T(test_what_was_unmapped_can_be_mapped_again_like_after_a_reboot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
