/* Guest RAM (memfd) and its dirty logs: sizes, sharing, CPU log report-and-
 * clear, union with a device DMA log, zero ranges and hole finding. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "common/common.h"
#include "vmm/vm_ram.h"

#define MiB (UINT64_C(1) << 20)
#define PG VM_RAM_PAGE_SIZE

static struct vm_ram *ram_new(uint64_t size)
{
    struct vm_ram *ram = NULL;

    assert_int_equal(vm_ram_create(size, &ram), 0);
    assert_non_null(ram);
    return ram;
}

static uint64_t *bitmap_new(const struct vm_ram *ram)
{
    uint64_t *b = calloc(vm_ram_bitmap_words(ram), sizeof(uint64_t));

    assert_non_null(b);
    return b;
}

static void test_create_refuses_sizes_that_are_zero_unaligned_or_above_64_gib(void **state)
{
    struct vm_ram *ram = NULL;

    (void)state;
    assert_int_equal(vm_ram_create(0, &ram), -EINVAL);
    assert_int_equal(vm_ram_create(PG + 1, &ram), -EINVAL);
    assert_int_equal(vm_ram_create(100, &ram), -EINVAL);
    assert_int_equal(vm_ram_create(VM_RAM_MAX_SIZE + PG, &ram), -EINVAL);
    assert_int_equal(vm_ram_create(PG, NULL), -EINVAL);
    assert_null(ram);
}

static void test_the_largest_ram_is_created_without_taking_memory(void **state)
{
    struct vm_ram *ram = ram_new(VM_RAM_MAX_SIZE);
    uint64_t start, end;

    (void)state;
    assert_int_equal(vm_ram_size(ram), VM_RAM_MAX_SIZE);
    assert_int_equal(vm_ram_pages(ram), VM_RAM_MAX_SIZE / PG);
    assert_int_equal(vm_ram_bitmap_words(ram), VM_RAM_MAX_SIZE / PG / 64);
    /* Touch the last page only: everything before it is still a hole. */
    vm_ram_host(ram)[VM_RAM_MAX_SIZE - 1] = 7;
    assert_int_equal(vm_ram_find_data(ram, 0, &start, &end), 0);
    assert_int_equal(start, VM_RAM_MAX_SIZE - PG);
    assert_int_equal(end, VM_RAM_MAX_SIZE);
    vm_ram_destroy(ram);
}

static void test_ram_reads_zero_and_is_shared_through_its_memfd(void **state)
{
    struct vm_ram *ram = ram_new(4 * PG);
    const struct guest_ram *g = vm_ram_guest(ram);
    uint8_t *other;

    (void)state;
    assert_ptr_equal(g->host, vm_ram_host(ram));
    assert_int_equal(g->size, 4 * PG);
    assert_non_null(g->cpu_dirty);
    for (uint64_t i = 0; i < 4 * PG; i++)
        assert_int_equal(g->host[i], 0);
    /* What a device server maps from the fd is the same memory. */
    other = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, vm_ram_fd(ram), 0);
    assert_true(other != MAP_FAILED);
    other[3 * PG + 5] = 0xab;
    assert_int_equal(g->host[3 * PG + 5], 0xab);
    g->host[17] = 0xcd;
    assert_int_equal(other[17], 0xcd);
    munmap(other, 4 * PG);
    vm_ram_destroy(ram);
    vm_ram_destroy(NULL);
}

static void test_collect_reports_the_pages_the_guest_marked_and_clears_them(void **state)
{
    struct vm_ram *ram = ram_new(256 * PG);
    const struct guest_ram *g = vm_ram_guest(ram);
    uint64_t *b = bitmap_new(ram);

    (void)state;
    guest_ram_mark_dirty(g, 0, 1);               /* page 0 */
    guest_ram_mark_dirty(g, 5 * PG - 1, 2);      /* pages 4 and 5 */
    guest_ram_mark_dirty(g, 70 * PG, 64 * PG);   /* pages 70..133 */
    guest_ram_mark_dirty(g, 255 * PG, 10 * PG);  /* clipped at the end: page 255 */
    guest_ram_mark_dirty(g, 300 * PG, PG);       /* outside: nothing */
    assert_int_equal(vm_ram_dirty_collect(ram, b), 1 + 2 + 64 + 1);
    assert_true(am_bitmap_test(b, 0));
    assert_false(am_bitmap_test(b, 1));
    assert_true(am_bitmap_test(b, 4) && am_bitmap_test(b, 5));
    assert_false(am_bitmap_test(b, 69));
    assert_true(am_bitmap_test(b, 70) && am_bitmap_test(b, 133));
    assert_false(am_bitmap_test(b, 134));
    assert_true(am_bitmap_test(b, 255));
    assert_int_equal(am_bitmap_weight(b, 256), 68);
    /* Cleared: a second collect adds nothing. */
    assert_int_equal(vm_ram_dirty_collect(ram, b), 0);
    assert_int_equal(am_bitmap_weight(b, 256), 68);
    /* It ORs into the caller's bitmap and counts only new pages. */
    guest_ram_mark_dirty(g, 0, PG);
    guest_ram_mark_dirty(g, 200 * PG, PG);
    assert_int_equal(vm_ram_dirty_collect(ram, b), 1);
    assert_int_equal(am_bitmap_weight(b, 256), 69);
    free(b);
    vm_ram_destroy(ram);
}

static void test_set_all_marks_exactly_every_page(void **state)
{
    struct vm_ram *ram = ram_new(100 * PG);
    uint64_t *b = bitmap_new(ram);

    (void)state;
    vm_ram_dirty_set_all(ram, b);
    assert_int_equal(am_bitmap_weight(b, 128), 100);
    free(b);
    vm_ram_destroy(ram);
}

static void test_merge_dma_sets_every_4k_page_a_device_page_covers(void **state)
{
    struct vm_ram *ram = ram_new(4 * MiB);
    uint64_t *b = bitmap_new(ram);
    uint64_t dma[2] = {0, 0};

    (void)state;
    /* 64 KiB device pages from iova 1 MiB: bits 0 and 3 set. */
    dma[0] = (1u << 0) | (1u << 3);
    assert_int_equal(vm_ram_dirty_merge_dma(ram, b, dma, MiB, MiB, 65536), 0);
    assert_int_equal(am_bitmap_weight(b, 1024), 32);
    assert_true(am_bitmap_test(b, 256) && am_bitmap_test(b, 271));
    assert_false(am_bitmap_test(b, 272));
    assert_true(am_bitmap_test(b, 256 + 48) && am_bitmap_test(b, 256 + 63));
    /* 4 KiB pages, a bit past length is ignored. */
    memset(b, 0, vm_ram_bitmap_words(ram) * 8);
    dma[0] = UINT64_MAX;
    dma[1] = UINT64_MAX;
    assert_int_equal(vm_ram_dirty_merge_dma(ram, b, dma, 0, 70 * PG, PG), 0);
    assert_int_equal(am_bitmap_weight(b, 1024), 70);
    free(b);
    vm_ram_destroy(ram);
    /* A 2 MiB device page that would run past a 3 MiB RAM is clipped. */
    ram = ram_new(3 * MiB);
    b = bitmap_new(ram);
    dma[0] = 1;
    assert_int_equal(vm_ram_dirty_merge_dma(ram, b, dma, 2 * MiB, PG, 2 * MiB), 0);
    assert_int_equal(am_bitmap_weight(b, 768), 256);
    assert_true(am_bitmap_test(b, 512) && am_bitmap_test(b, 767));
    free(b);
    vm_ram_destroy(ram);
}

static void test_merge_dma_refuses_bad_page_sizes_alignment_and_ranges(void **state)
{
    struct vm_ram *ram = ram_new(MiB);
    uint64_t *b = bitmap_new(ram);
    uint64_t dma[1] = {1};

    (void)state;
    assert_int_equal(vm_ram_dirty_merge_dma(ram, b, dma, 0, PG, 2048), -EINVAL);
    assert_int_equal(vm_ram_dirty_merge_dma(ram, b, dma, 0, PG, 3 * PG), -EINVAL);
    assert_int_equal(vm_ram_dirty_merge_dma(ram, b, dma, PG, PG, 2 * PG), -EINVAL);
    assert_int_equal(vm_ram_dirty_merge_dma(ram, b, dma, UINT64_MAX - PG + 1, 2 * PG, PG),
                     -EOVERFLOW);
    assert_int_equal(vm_ram_dirty_merge_dma(ram, b, dma, 0x100000000000ull, UINT64_MAX, PG),
                     -EOVERFLOW);
    assert_int_equal(vm_ram_dirty_merge_dma(ram, b, dma, MiB - PG, 2 * PG, PG), -ERANGE);
    assert_int_equal(am_bitmap_weight(b, 256), 0);
    free(b);
    vm_ram_destroy(ram);
}

static void test_zero_range_clears_small_and_large_ranges_and_checks_bounds(void **state)
{
    struct vm_ram *ram = ram_new(MiB);
    uint8_t *h = vm_ram_host(ram);
    uint64_t start, end;

    (void)state;
    memset(h, 0x5a, MiB);
    assert_int_equal(vm_ram_zero_range(ram, PG, 2 * PG), 0);          /* memset path */
    assert_int_equal(vm_ram_zero_range(ram, 64 * PG, 64 * PG), 0);    /* hole punch */
    /* The punched range gave its memory back: it is a hole again (until
     * read: a read fault on shmem allocates, so check before reading). */
    assert_int_equal(vm_ram_find_data(ram, 64 * PG, &start, &end), 0);
    assert_int_equal(start, 128 * PG);
    for (uint64_t i = 0; i < MiB; i++) {
        int zero = (i >= PG && i < 3 * PG) || (i >= 64 * PG && i < 128 * PG);

        if (zero != (h[i] == 0))
            fail_msg("byte 0x%llx is %u", (unsigned long long)i, h[i]);
    }
    assert_int_equal(vm_ram_zero_range(ram, MiB - PG, 2 * PG), -ERANGE);
    assert_int_equal(vm_ram_zero_range(ram, UINT64_MAX - PG + 1, 2 * PG), -ERANGE);
    assert_int_equal(vm_ram_zero_range(ram, 100, PG), -EINVAL);
    assert_int_equal(vm_ram_zero_range(ram, 0, 100), -EINVAL);
    vm_ram_destroy(ram);
}

static void test_find_data_reports_backed_ranges_and_skips_holes(void **state)
{
    struct vm_ram *ram = ram_new(MiB);
    uint8_t *h = vm_ram_host(ram);
    uint64_t start, end;

    (void)state;
    assert_int_equal(vm_ram_find_data(ram, 0, &start, &end), 0);
    assert_int_equal(start, MiB);
    assert_int_equal(end, MiB);
    h[10 * PG + 1] = 1;
    h[11 * PG] = 1;
    h[40 * PG + 100] = 1;
    assert_int_equal(vm_ram_find_data(ram, 0, &start, &end), 0);
    assert_int_equal(start, 10 * PG);
    assert_int_equal(end, 12 * PG);
    assert_int_equal(vm_ram_find_data(ram, 11 * PG, &start, &end), 0);
    assert_int_equal(start, 11 * PG);
    assert_int_equal(end, 12 * PG);
    assert_int_equal(vm_ram_find_data(ram, 12 * PG, &start, &end), 0);
    assert_int_equal(start, 40 * PG);
    assert_int_equal(end, 41 * PG);
    assert_int_equal(vm_ram_find_data(ram, 41 * PG, &start, &end), 0);
    assert_int_equal(start, MiB);
    assert_int_equal(vm_ram_find_data(ram, MiB, &start, &end), -ERANGE);
    vm_ram_destroy(ram);
}

static void test_find_data_on_fully_backed_ram_reports_one_range_to_the_end(void **state)
{
    struct vm_ram *ram = ram_new(MiB);
    uint64_t start, end;

    (void)state;
    memset(vm_ram_host(ram), 0x5a, MiB); /* every page backed: the fstat short cut */
    assert_int_equal(vm_ram_find_data(ram, 0, &start, &end), 0);
    assert_int_equal(start, 0);
    assert_int_equal(end, MiB);
    assert_int_equal(vm_ram_find_data(ram, 7 * PG, &start, &end), 0);
    assert_int_equal(start, 7 * PG);
    assert_int_equal(end, MiB);
    /* 32 pages given back (hole-punched): the holes are looked for again. */
    assert_int_equal(vm_ram_zero_range(ram, 32 * PG, 32 * PG), 0);
    assert_int_equal(vm_ram_find_data(ram, 0, &start, &end), 0);
    assert_int_equal(start, 0);
    assert_int_equal(end, 32 * PG);
    assert_int_equal(vm_ram_find_data(ram, 32 * PG, &start, &end), 0);
    assert_int_equal(start, 64 * PG);
    assert_int_equal(end, MiB);
    vm_ram_destroy(ram);
}

struct marker {
    const struct guest_ram *g;
    uint64_t pages;
    uint64_t rounds;
};

static void *mark_pages(void *arg)
{
    struct marker *m = arg;

    for (uint64_t r = 0; r < m->rounds; r++)
        for (uint64_t p = r % 7; p < m->pages; p += 7)
            guest_ram_mark_dirty(m->g, p * PG, 1);
    return NULL;
}

static void test_collect_while_the_guest_marks_loses_no_page(void **state)
{
    struct vm_ram *ram = ram_new(4096 * PG);
    struct marker m = {.g = vm_ram_guest(ram), .pages = 4096, .rounds = 7 * 40};
    uint64_t *b = bitmap_new(ram);
    pthread_t t;

    (void)state;
    assert_int_equal(pthread_create(&t, NULL, mark_pages, &m), 0);
    for (int i = 0; i < 200; i++)
        vm_ram_dirty_collect(ram, b);
    assert_int_equal(pthread_join(t, NULL), 0);
    vm_ram_dirty_collect(ram, b);
    /* Every page was marked at least once (p % 7 covers all residues). */
    assert_int_equal(am_bitmap_weight(b, 4096), 4096);
    free(b);
    vm_ram_destroy(ram);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_refuses_sizes_that_are_zero_unaligned_or_above_64_gib),
        cmocka_unit_test(test_the_largest_ram_is_created_without_taking_memory),
        cmocka_unit_test(test_ram_reads_zero_and_is_shared_through_its_memfd),
        cmocka_unit_test(test_collect_reports_the_pages_the_guest_marked_and_clears_them),
        cmocka_unit_test(test_set_all_marks_exactly_every_page),
        cmocka_unit_test(test_merge_dma_sets_every_4k_page_a_device_page_covers),
        cmocka_unit_test(test_merge_dma_refuses_bad_page_sizes_alignment_and_ranges),
        cmocka_unit_test(test_zero_range_clears_small_and_large_ranges_and_checks_bounds),
        cmocka_unit_test(test_find_data_reports_backed_ranges_and_skips_holes),
        cmocka_unit_test(test_find_data_on_fully_backed_ram_reports_one_range_to_the_end),
        cmocka_unit_test(test_collect_while_the_guest_marks_loses_no_page),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
