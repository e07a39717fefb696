/* Tests of iommu_unmap_range: DMA_UNMAP as QEMU sends it and the kernel's
 * vfio_iommu_type1 (v2) answers it (issue 9.2). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/common.h"
#include "iommu/iommu.h"

#define PG IOMMU_PAGE_SIZE
#define RW (IOMMU_READ | IOMMU_WRITE)
#define TOP (UINT64_C(1) << 63) /* QEMU's last power-of-two chunk: [2^63, 2^64) */

struct fixture {
    struct iommu_domain *d;
    uint8_t *mem; /* 64 pages */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    assert_int_equal(iommu_domain_create(0x0100, &f->d), 0);
    f->mem = mmap(NULL, 64 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(f->mem != MAP_FAILED);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    iommu_domain_destroy(f->d);
    munmap(f->mem, 64 * PG);
    free(f);
    return 0;
}

static void map(struct fixture *f, uint64_t iova, uint64_t pages)
{
    assert_int_equal(iommu_map_host(f->d, iova, pages * PG, f->mem, RW), 0);
}

static bool mapped(struct fixture *f, uint64_t iova)
{
    uint8_t b;

    return iommu_dma_read(f->d, iova, &b, 1) == 0;
}

static void test_a_range_removes_every_mapping_wholly_inside_it_and_reports_the_bytes(void **state)
{
    struct fixture *f = *state;
    uint64_t bytes = 1;

    map(f, 0x0, 1);          /* before the range */
    map(f, 0x100000, 2);     /* at its start */
    map(f, 0x108000, 1);     /* in the middle, after a gap */
    map(f, 0x109000, 4);     /* adjacent to the previous one */
    map(f, 0x1ff000, 1);     /* ending at its end */
    map(f, 0x200000, 1);     /* just after it */
    assert_int_equal(iommu_unmap_range(f->d, 0x100000, 0x100000, &bytes), 0);
    assert_int_equal(bytes, 8 * PG);
    assert_int_equal(iommu_mapping_count(f->d), 2);
    assert_true(mapped(f, 0x0));
    assert_true(mapped(f, 0x200000));
    assert_false(mapped(f, 0x100000));
    assert_false(mapped(f, 0x1ff000));
}

static void test_qemu_power_of_two_chunks_up_to_2_64_remove_everything(void **state)
{
    struct fixture *f = *state;
    uint64_t bytes = 0;

    map(f, 0x10000, 2);
    /* The highest mappable pages: iova + size must stay below 2^64. */
    map(f, UINT64_MAX - 3 * PG + 1, 1);
    map(f, UINT64_MAX - 2 * PG + 1, 1);
    map(f, TOP, 1);
    assert_int_equal(iommu_unmap_range(f->d, 0, TOP, &bytes), 0);
    assert_int_equal(bytes, 2 * PG);
    /* iova + size == 2^64 exactly: the end of the space, not a wrap. */
    assert_int_equal(iommu_unmap_range(f->d, TOP, TOP, &bytes), 0);
    assert_int_equal(bytes, 3 * PG);
    assert_int_equal(iommu_mapping_count(f->d), 0);
}

static void test_a_range_ending_at_2_64_may_start_anywhere_aligned(void **state)
{
    struct fixture *f = *state;
    uint64_t bytes = 0;

    map(f, UINT64_MAX - 2 * PG + 1, 1);
    /* The smallest such range: the last page, which holds no mapping. */
    assert_int_equal(iommu_unmap_range(f->d, UINT64_MAX - PG + 1, PG, &bytes), 0);
    assert_int_equal(bytes, 0);
    assert_int_equal(iommu_mapping_count(f->d), 1);
    assert_int_equal(iommu_unmap_range(f->d, PG, UINT64_MAX - PG + 1, &bytes), 0);
    assert_int_equal(bytes, PG);
    assert_int_equal(iommu_mapping_count(f->d), 0);
}

static void test_a_mapping_straddling_the_start_refuses_and_removes_nothing(void **state)
{
    struct fixture *f = *state;
    uint64_t bytes = 7;

    map(f, 0x10000, 4);
    map(f, 0x20000, 1); /* wholly inside: must survive the refusal */
    assert_int_equal(iommu_unmap_range(f->d, 0x11000, 0x20000, &bytes), -EINVAL);
    assert_int_equal(bytes, 0);
    assert_int_equal(iommu_mapping_count(f->d), 2);
    assert_true(mapped(f, 0x10000));
    assert_true(mapped(f, 0x20000));
}

static void test_a_mapping_straddling_the_end_refuses_and_removes_nothing(void **state)
{
    struct fixture *f = *state;
    uint64_t bytes = 7;

    map(f, 0x10000, 1); /* wholly inside */
    map(f, 0x1f000, 4); /* crosses the end at 0x20000 */
    assert_int_equal(iommu_unmap_range(f->d, 0x10000, 0x10000, &bytes), -EINVAL);
    assert_int_equal(bytes, 0);
    assert_int_equal(iommu_mapping_count(f->d), 2);
    /* A range inside one mapping straddles both edges. */
    assert_int_equal(iommu_unmap_range(f->d, 0x20000, PG, &bytes), -EINVAL);
    assert_int_equal(iommu_mapping_count(f->d), 2);
    assert_true(mapped(f, 0x10000));
    assert_true(mapped(f, 0x22000));
}

static void test_a_range_holding_no_mapping_succeeds_with_zero_bytes(void **state)
{
    struct fixture *f = *state;
    uint64_t bytes = 7;

    /* vfio_dma_do_unmap: ret = 0 and unmap->size = 0 when nothing matched. */
    assert_int_equal(iommu_unmap_range(f->d, 0x10000, 0x10000, &bytes), 0);
    assert_int_equal(bytes, 0);
    map(f, 0x10000, 1);
    map(f, 0x30000, 1);
    bytes = 7;
    assert_int_equal(iommu_unmap_range(f->d, 0x11000, 0x1f000, &bytes), 0);
    assert_int_equal(bytes, 0);
    assert_int_equal(iommu_mapping_count(f->d), 2);
}

static void test_size_zero_unaligned_and_wrapping_ranges_are_refused(void **state)
{
    struct fixture *f = *state;
    uint64_t bytes = 7;

    map(f, 0x10000, 1);
    assert_int_equal(iommu_unmap_range(f->d, 0x10000, 0, &bytes), -EINVAL);
    assert_int_equal(bytes, 0);
    assert_int_equal(iommu_unmap_range(f->d, 0x10001, PG, &bytes), -EINVAL);
    assert_int_equal(iommu_unmap_range(f->d, 0x10000, PG - 1, &bytes), -EINVAL);
    assert_int_equal(iommu_unmap_range(f->d, 0x10000, PG + 1, &bytes), -EINVAL);
    /* One page past 2^64. */
    assert_int_equal(iommu_unmap_range(f->d, 2 * PG, UINT64_MAX - PG + 1, &bytes), -EOVERFLOW);
    assert_int_equal(iommu_unmap_range(f->d, TOP, TOP + PG, &bytes), -EOVERFLOW);
    assert_int_equal(iommu_mapping_count(f->d), 1);
}

static void test_an_exact_range_removes_its_mapping_and_bytes_may_be_null(void **state)
{
    struct fixture *f = *state;

    map(f, 0x10000, 4);
    assert_int_equal(iommu_unmap_range(f->d, 0x10000, 4 * PG, NULL), 0);
    assert_int_equal(iommu_mapping_count(f->d), 0);
    /* iommu_unmap keeps its exact-match rule: a covering range is not one. */
    map(f, 0x10000, 4);
    assert_int_equal(iommu_unmap(f->d, 0x10000, 8 * PG), -ENOENT);
    assert_int_equal(iommu_unmap(f->d, 0x10000, 4 * PG), 0);
}

static void test_an_unmapped_range_keeps_its_dirty_log(void **state)
{
    struct fixture *f = *state;
    const struct iommu_range r = { 0x10000, 8 * PG };
    const uint8_t b = 1;
    uint64_t bm = 0, bytes = 0;

    map(f, 0x10000, 2);
    map(f, 0x12000, 2);
    assert_int_equal(iommu_dirty_start(f->d, PG, &r, 1), 0);
    assert_int_equal(iommu_dma_write(f->d, 0x13000, &b, 1), 0);
    assert_int_equal(iommu_unmap_range(f->d, 0x10000, 8 * PG, &bytes), 0);
    assert_int_equal(bytes, 4 * PG);
    assert_int_equal(iommu_dirty_report(f->d, 0x10000, 8 * PG, PG, &bm), 0);
    assert_int_equal(bm, UINT64_C(1) << 3);
    assert_int_equal(iommu_dirty_stop(f->d), 0);
}

static void test_a_fd_mapping_removed_by_a_range_is_unmapped_from_the_process(void **state)
{
    struct fixture *f = *state;
    int fd = memfd_create("unmap-range", MFD_CLOEXEC);
    uint64_t bytes = 0;

    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 4 * PG), 0);
    assert_int_equal(iommu_map_fd(f->d, 0x40000, 4 * PG, fd, 0, RW), 0);
    map(f, 0x50000, 1);
    assert_int_equal(iommu_unmap_range(f->d, 0x40000, 0x20000, &bytes), 0);
    assert_int_equal(bytes, 5 * PG);
    assert_int_equal(iommu_mapping_count(f->d), 0);
    close(fd); /* ASan's leak check and the count are what would notice */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_a_range_removes_every_mapping_wholly_inside_it_and_reports_the_bytes),
        T(test_qemu_power_of_two_chunks_up_to_2_64_remove_everything),
        T(test_a_range_ending_at_2_64_may_start_anywhere_aligned),
        T(test_a_mapping_straddling_the_start_refuses_and_removes_nothing),
        T(test_a_mapping_straddling_the_end_refuses_and_removes_nothing),
        T(test_a_range_holding_no_mapping_succeeds_with_zero_bytes),
        T(test_size_zero_unaligned_and_wrapping_ranges_are_refused),
        T(test_an_exact_range_removes_its_mapping_and_bytes_may_be_null),
        T(test_an_unmapped_range_keeps_its_dirty_log),
        T(test_a_fd_mapping_removed_by_a_range_is_unmapped_from_the_process),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
