/* Tests of src/iommu: mapping rules, DMA with faults and permissions,
 * translation, fd and remote backings, the dirty log and its concurrency. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/common.h"
#include "iommu/iommu.h"

#define PG IOMMU_PAGE_SIZE
#define MIB (UINT64_C(1) << 20)

struct fixture {
    struct iommu_domain *d;
    uint8_t *mem; /* 16 MiB of host memory, page aligned */
    size_t mem_len;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    assert_int_equal(iommu_domain_create(0x0102, &f->d), 0);
    f->mem_len = 16 * MIB;
    f->mem = mmap(NULL, f->mem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(f->mem != MAP_FAILED);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    iommu_domain_destroy(f->d);
    munmap(f->mem, f->mem_len);
    free(f);
    return 0;
}

static struct iommu_stats stats_of(struct iommu_domain *d)
{
    struct iommu_stats s;

    iommu_stats_get(d, &s);
    return s;
}

/* ---- map / unmap ---------------------------------------------------------- */

static void test_a_domain_reports_its_requester_id_and_starts_empty(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(iommu_domain_rid(f->d), 0x0102);
    assert_int_equal(iommu_mapping_count(f->d), 0);
    assert_false(iommu_dirty_active(f->d));
    iommu_domain_destroy(NULL);
}

static void test_map_host_then_unmap_leaves_the_domain_empty(void **state)
{
    struct fixture *f = *state;
    uint8_t b;

    assert_int_equal(iommu_map_host(f->d, 0x100000, 2 * PG, f->mem, IOMMU_READ | IOMMU_WRITE), 0);
    assert_int_equal(iommu_mapping_count(f->d), 1);
    assert_int_equal(iommu_unmap(f->d, 0x100000, 2 * PG), 0);
    assert_int_equal(iommu_mapping_count(f->d), 0);
    assert_int_equal(iommu_dma_read(f->d, 0x100000, &b, 1), -EFAULT);
}

static void test_map_rejects_unaligned_iova_size_and_zero_size(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(iommu_map_host(f->d, 0x1001, PG, f->mem, IOMMU_READ), -EINVAL);
    assert_int_equal(iommu_map_host(f->d, 0x1000, PG + 1, f->mem, IOMMU_READ), -EINVAL);
    assert_int_equal(iommu_map_host(f->d, 0x1000, 0, f->mem, IOMMU_READ), -EINVAL);
    assert_int_equal(iommu_map_remote(f->d, 0x1000, 100, IOMMU_READ,
                                      &(struct iommu_remote_ops){ 0 }, NULL),
                     -EINVAL);
    assert_int_equal(iommu_mapping_count(f->d), 0);
}

static void test_map_rejects_empty_or_unknown_permissions(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(iommu_map_host(f->d, 0x1000, PG, f->mem, 0), -EINVAL);
    assert_int_equal(iommu_map_host(f->d, 0x1000, PG, f->mem, IOMMU_READ | 4u), -EINVAL);
    assert_int_equal(iommu_mapping_count(f->d), 0);
}

static void test_map_whose_end_wraps_fails_with_eoverflow(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(iommu_map_host(f->d, UINT64_MAX - PG + 1, PG, f->mem, IOMMU_READ), -EOVERFLOW);
    assert_int_equal(iommu_map_host(f->d, 0x1000, UINT64_MAX - 0xfff, f->mem, IOMMU_READ),
                     -EOVERFLOW);
    /* The page just below the top is the highest that can be mapped. */
    assert_int_equal(iommu_map_host(f->d, UINT64_MAX - 2 * PG + 1, PG, f->mem, IOMMU_READ), 0);
}

static void test_map_host_rejects_a_null_or_wrapping_host_pointer(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(iommu_map_host(f->d, 0x1000, PG, NULL, IOMMU_READ), -EINVAL);
    assert_int_equal(iommu_map_host(f->d, 0x1000, 2 * PG, (void *)(UINTPTR_MAX - PG + 1),
                                    IOMMU_READ),
                     -EINVAL);
    assert_int_equal(iommu_mapping_count(f->d), 0);
}

static void test_map_overlapping_an_existing_mapping_fails_with_eexist(void **state)
{
    struct fixture *f = *state;
    unsigned rw = IOMMU_READ | IOMMU_WRITE;

    assert_int_equal(iommu_map_host(f->d, 0x10000, 4 * PG, f->mem, rw), 0);
    assert_int_equal(iommu_map_host(f->d, 0x10000, 4 * PG, f->mem, rw), -EEXIST);  /* same */
    assert_int_equal(iommu_map_host(f->d, 0x11000, PG, f->mem, rw), -EEXIST);      /* inside */
    assert_int_equal(iommu_map_host(f->d, 0xf000, 2 * PG, f->mem, rw), -EEXIST);   /* head */
    assert_int_equal(iommu_map_host(f->d, 0x13000, 2 * PG, f->mem, rw), -EEXIST);  /* tail */
    assert_int_equal(iommu_map_host(f->d, 0x8000, 16 * PG, f->mem, rw), -EEXIST);  /* covers */
    /* Touching is not overlapping. */
    assert_int_equal(iommu_map_host(f->d, 0xf000, PG, f->mem, rw), 0);
    assert_int_equal(iommu_map_host(f->d, 0x14000, PG, f->mem, rw), 0);
    assert_int_equal(iommu_mapping_count(f->d), 3);
}

static void test_unmap_of_a_range_never_mapped_fails_with_enoent(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(iommu_unmap(f->d, 0x10000, PG), -ENOENT);
    assert_int_equal(iommu_map_host(f->d, 0x10000, PG, f->mem, IOMMU_READ), 0);
    assert_int_equal(iommu_unmap(f->d, 0x20000, PG), -ENOENT);
    assert_int_equal(iommu_unmap(f->d, 0x0, PG), -ENOENT);
    assert_int_equal(iommu_mapping_count(f->d), 1);
}

static void test_partial_unmap_fails_with_enoent_and_keeps_the_mapping(void **state)
{
    struct fixture *f = *state;
    uint8_t b;

    assert_int_equal(iommu_map_host(f->d, 0x10000, 4 * PG, f->mem, IOMMU_READ), 0);
    assert_int_equal(iommu_unmap(f->d, 0x10000, PG), -ENOENT);
    assert_int_equal(iommu_unmap(f->d, 0x11000, 3 * PG), -ENOENT);
    assert_int_equal(iommu_unmap(f->d, 0x10000, 8 * PG), -ENOENT);
    assert_int_equal(iommu_mapping_count(f->d), 1);
    assert_int_equal(iommu_dma_read(f->d, 0x13fff, &b, 1), 0);
}

static void test_mapping_more_than_the_maximum_fails_with_enospc(void **state)
{
    struct fixture *f = *state;

    for (uint64_t i = 0; i < IOMMU_MAX_MAPPINGS; i++)
        assert_int_equal(iommu_map_host(f->d, i * 2 * PG, PG, f->mem, IOMMU_READ), 0);
    assert_int_equal(iommu_mapping_count(f->d), IOMMU_MAX_MAPPINGS);
    assert_int_equal(iommu_map_host(f->d, (uint64_t)IOMMU_MAX_MAPPINGS * 2 * PG, PG, f->mem,
                                    IOMMU_READ),
                     -ENOSPC);
    /* Freeing one slot makes room again. */
    assert_int_equal(iommu_unmap(f->d, 0, PG), 0);
    assert_int_equal(iommu_map_host(f->d, (uint64_t)IOMMU_MAX_MAPPINGS * 2 * PG, PG, f->mem,
                                    IOMMU_READ),
                     0);
    iommu_unmap_all(f->d);
    assert_int_equal(iommu_mapping_count(f->d), 0);
}

static void test_unmap_all_removes_every_mapping(void **state)
{
    struct fixture *f = *state;
    uint8_t b;

    assert_int_equal(iommu_map_host(f->d, 0x1000, PG, f->mem, IOMMU_READ), 0);
    assert_int_equal(iommu_map_host(f->d, 0x5000, PG, f->mem, IOMMU_READ), 0);
    iommu_unmap_all(f->d);
    assert_int_equal(iommu_mapping_count(f->d), 0);
    assert_int_equal(iommu_dma_read(f->d, 0x1000, &b, 1), -EFAULT);
    assert_int_equal(iommu_map_host(f->d, 0x1000, PG, f->mem, IOMMU_READ), 0);
}

/* ---- DMA -------------------------------------------------------------------- */

static void test_dma_read_and_write_cross_two_adjacent_mappings(void **state)
{
    struct fixture *f = *state;
    uint8_t *a = f->mem, *b = f->mem + 8 * PG; /* not adjacent in host memory */
    uint8_t out[64], in[64];

    assert_int_equal(iommu_map_host(f->d, 0x10000, PG, a, IOMMU_READ | IOMMU_WRITE), 0);
    assert_int_equal(iommu_map_host(f->d, 0x11000, PG, b, IOMMU_READ | IOMMU_WRITE), 0);
    for (unsigned i = 0; i < sizeof(out); i++)
        out[i] = (uint8_t)(i + 1);
    assert_int_equal(iommu_dma_write(f->d, 0x11000 - 32, out, sizeof(out)), 0);
    assert_memory_equal(a + PG - 32, out, 32);
    assert_memory_equal(b, out + 32, 32);
    memset(in, 0, sizeof(in));
    assert_int_equal(iommu_dma_read(f->d, 0x11000 - 32, in, sizeof(in)), 0);
    assert_memory_equal(in, out, sizeof(out));
    assert_int_equal(stats_of(f->d).bytes_written, 64);
    assert_int_equal(stats_of(f->d).bytes_read, 64);
}

static void test_dma_write_across_a_gap_faults_writes_nothing_and_counts(void **state)
{
    struct fixture *f = *state;
    uint8_t out[64];
    struct iommu_stats s;

    assert_int_equal(iommu_map_host(f->d, 0x10000, PG, f->mem, IOMMU_READ | IOMMU_WRITE), 0);
    assert_int_equal(iommu_map_host(f->d, 0x12000, PG, f->mem + PG, IOMMU_READ | IOMMU_WRITE), 0);
    memset(out, 0xab, sizeof(out));
    assert_int_equal(iommu_dma_write(f->d, 0x11000 - 32, out, sizeof(out)), -EFAULT);
    for (unsigned i = 0; i < 2 * PG; i++)
        assert_int_equal(f->mem[i], 0);
    s = stats_of(f->d);
    assert_int_equal(s.write_faults, 1);
    assert_int_equal(s.read_faults, 0);
    assert_int_equal(s.perm_faults, 0);
    assert_int_equal(s.last_fault_iova, 0x11000);
    assert_int_equal(s.bytes_written, 0);
}

static void test_dma_read_across_a_gap_faults_and_counts_a_read_fault(void **state)
{
    struct fixture *f = *state;
    uint8_t in[64];
    struct iommu_stats s;

    assert_int_equal(iommu_map_host(f->d, 0x10000, PG, f->mem, IOMMU_READ), 0);
    memset(in, 0x5a, sizeof(in));
    assert_int_equal(iommu_dma_read(f->d, 0x11000 - 32, in, sizeof(in)), -EFAULT);
    for (unsigned i = 0; i < sizeof(in); i++)
        assert_int_equal(in[i], 0x5a);
    s = stats_of(f->d);
    assert_int_equal(s.read_faults, 1);
    assert_int_equal(s.write_faults, 0);
    assert_int_equal(s.last_fault_iova, 0x11000);
    assert_int_equal(s.bytes_read, 0);
}

static void test_dma_outside_any_mapping_faults_at_its_first_byte(void **state)
{
    struct fixture *f = *state;
    uint8_t b = 0;

    assert_int_equal(iommu_dma_read(f->d, 0x777, &b, 1), -EFAULT);
    assert_int_equal(stats_of(f->d).last_fault_iova, 0x777);
    assert_int_equal(iommu_dma_write(f->d, 0x999, &b, 1), -EFAULT);
    assert_int_equal(stats_of(f->d).last_fault_iova, 0x999);
    assert_int_equal(stats_of(f->d).read_faults, 1);
    assert_int_equal(stats_of(f->d).write_faults, 1);
}

static void test_dma_write_into_a_read_only_mapping_is_a_permission_fault(void **state)
{
    struct fixture *f = *state;
    uint8_t out[16];
    struct iommu_stats s;

    assert_int_equal(iommu_map_host(f->d, 0x10000, PG, f->mem, IOMMU_READ | IOMMU_WRITE), 0);
    assert_int_equal(iommu_map_host(f->d, 0x11000, PG, f->mem + PG, IOMMU_READ), 0);
    memset(out, 0xcd, sizeof(out));
    /* Starts writable, ends read-only: nothing lands, even in the first part. */
    assert_int_equal(iommu_dma_write(f->d, 0x11000 - 8, out, sizeof(out)), -EFAULT);
    for (unsigned i = 0; i < 2 * PG; i++)
        assert_int_equal(f->mem[i], 0);
    s = stats_of(f->d);
    assert_int_equal(s.perm_faults, 1);
    assert_int_equal(s.write_faults, 0);
    assert_int_equal(s.last_fault_iova, 0x11000);
    /* Reading it is fine. */
    assert_int_equal(iommu_dma_read(f->d, 0x11000, out, sizeof(out)), 0);
}

static void test_dma_read_of_a_write_only_mapping_is_a_permission_fault(void **state)
{
    struct fixture *f = *state;
    uint8_t in[8];

    assert_int_equal(iommu_map_host(f->d, 0x10000, PG, f->mem, IOMMU_WRITE), 0);
    assert_int_equal(iommu_dma_read(f->d, 0x10010, in, sizeof(in)), -EFAULT);
    assert_int_equal(stats_of(f->d).perm_faults, 1);
    assert_int_equal(stats_of(f->d).last_fault_iova, 0x10010);
    assert_int_equal(iommu_dma_write(f->d, 0x10010, in, sizeof(in)), 0);
}

static void test_dma_of_zero_length_is_a_noop_and_a_wrapping_range_is_einval(void **state)
{
    struct fixture *f = *state;
    uint8_t b[2];

    assert_int_equal(iommu_dma_read(f->d, 0x1234, b, 0), 0);
    assert_int_equal(iommu_dma_write(f->d, 0x1234, b, 0), 0);
    assert_int_equal(iommu_dma_read(f->d, UINT64_MAX, b, 2), -EINVAL);
    assert_int_equal(iommu_dma_write(f->d, UINT64_MAX, b, 2), -EINVAL);
    /* Neither is a device fault. */
    assert_int_equal(stats_of(f->d).read_faults + stats_of(f->d).write_faults, 0);
}

/* ---- translate -------------------------------------------------------------- */

static void test_translate_within_one_mapping_returns_the_host_address(void **state)
{
    struct fixture *f = *state;
    void *p = NULL;

    assert_int_equal(iommu_map_host(f->d, 0x10000, 4 * PG, f->mem, IOMMU_READ | IOMMU_WRITE), 0);
    iommu_dma_begin(f->d);
    assert_int_equal(iommu_translate(f->d, 0x10123, 2 * PG, IOMMU_READ, &p), 0);
    assert_ptr_equal(p, f->mem + 0x123);
    assert_int_equal(iommu_translate(f->d, 0x13000, PG, IOMMU_READ | IOMMU_WRITE, &p), 0);
    assert_ptr_equal(p, f->mem + 3 * PG);
    iommu_dma_end(f->d);
}

static void test_dma_sections_nest_in_one_thread(void **state)
{
    struct fixture *f = *state;
    void *p = NULL;

    assert_int_equal(iommu_map_host(f->d, 0x10000, PG, f->mem, IOMMU_READ), 0);
    iommu_dma_begin(f->d);
    iommu_dma_begin(f->d);
    assert_int_equal(iommu_translate(f->d, 0x10000, 8, IOMMU_READ, &p), 0);
    iommu_dma_end(f->d);
    assert_int_equal(iommu_translate(f->d, 0x10008, 8, IOMMU_READ, &p), 0);
    assert_ptr_equal(p, f->mem + 8);
    iommu_dma_end(f->d);
    assert_int_equal(iommu_unmap(f->d, 0x10000, PG), 0);
}

static void test_translate_spanning_two_mappings_is_eremote_and_not_counted(void **state)
{
    struct fixture *f = *state;
    void *p = NULL;

    assert_int_equal(iommu_map_host(f->d, 0x10000, PG, f->mem, IOMMU_READ), 0);
    assert_int_equal(iommu_map_host(f->d, 0x11000, PG, f->mem + PG, IOMMU_READ), 0);
    iommu_dma_begin(f->d);
    assert_int_equal(iommu_translate(f->d, 0x10ff0, 32, IOMMU_READ, &p), -EREMOTE);
    iommu_dma_end(f->d);
    assert_null(p);
    assert_int_equal(stats_of(f->d).read_faults + stats_of(f->d).perm_faults, 0);
}

static void test_translate_spanning_into_a_gap_or_forbidden_mapping_is_efault(void **state)
{
    struct fixture *f = *state;
    void *p = NULL;

    assert_int_equal(iommu_map_host(f->d, 0x10000, PG, f->mem, IOMMU_READ | IOMMU_WRITE), 0);
    assert_int_equal(iommu_map_host(f->d, 0x11000, PG, f->mem + PG, IOMMU_READ), 0);
    iommu_dma_begin(f->d);
    assert_int_equal(iommu_translate(f->d, 0x11ff0, 32, IOMMU_READ, &p), -EFAULT);
    assert_int_equal(stats_of(f->d).read_faults, 1);
    assert_int_equal(stats_of(f->d).last_fault_iova, 0x12000);
    assert_int_equal(iommu_translate(f->d, 0x10ff0, 32, IOMMU_WRITE, &p), -EFAULT);
    assert_int_equal(stats_of(f->d).perm_faults, 1);
    assert_int_equal(stats_of(f->d).last_fault_iova, 0x11000);
    iommu_dma_end(f->d);
    assert_null(p);
}

static void test_translate_of_an_unmapped_or_forbidden_range_is_efault_and_counted(void **state)
{
    struct fixture *f = *state;
    void *p = NULL;

    assert_int_equal(iommu_map_host(f->d, 0x10000, PG, f->mem, IOMMU_READ), 0);
    iommu_dma_begin(f->d);
    assert_int_equal(iommu_translate(f->d, 0x20000, 8, IOMMU_READ, &p), -EFAULT);
    assert_int_equal(iommu_translate(f->d, 0x20000, 8, IOMMU_WRITE, &p), -EFAULT);
    assert_int_equal(iommu_translate(f->d, 0x10000, 8, IOMMU_WRITE, &p), -EFAULT);
    assert_int_equal(iommu_translate(f->d, 0x10000, 8, IOMMU_READ | IOMMU_WRITE, &p), -EFAULT);
    iommu_dma_end(f->d);
    assert_null(p);
    assert_int_equal(stats_of(f->d).read_faults, 1);
    assert_int_equal(stats_of(f->d).write_faults, 1);
    assert_int_equal(stats_of(f->d).perm_faults, 2);
}

static void test_translate_rejects_bad_arguments_without_counting_a_fault(void **state)
{
    struct fixture *f = *state;
    void *p = NULL;

    assert_int_equal(iommu_map_host(f->d, 0x10000, PG, f->mem, IOMMU_READ), 0);
    iommu_dma_begin(f->d);
    assert_int_equal(iommu_translate(f->d, 0x10000, 0, IOMMU_READ, &p), -EINVAL);
    assert_int_equal(iommu_translate(f->d, 0x10000, 8, 0, &p), -EINVAL);
    assert_int_equal(iommu_translate(f->d, 0x10000, 8, 8u, &p), -EINVAL);
    assert_int_equal(iommu_translate(f->d, UINT64_MAX - 3, 8, IOMMU_READ, &p), -EINVAL);
    iommu_dma_end(f->d);
    assert_null(p);
    assert_int_equal(stats_of(f->d).read_faults + stats_of(f->d).perm_faults, 0);
}

/* ---- remote ranges ---------------------------------------------------------- */

static void map_rw(struct fixture *f, uint64_t iova, uint64_t size, uint64_t host_off);
static void report_expect(struct fixture *f, uint64_t iova, uint64_t len, uint64_t page_size,
                          const uint64_t *expected, unsigned n);

struct remote {
    uint8_t mem[4 * PG]; /* backs iova 0x40000.. */
    unsigned reads, writes;
    uint64_t last_iova, last_len;
    int fail_with;
};

static int remote_read(void *opaque, uint64_t iova, void *buf, uint64_t len)
{
    struct remote *r = opaque;

    r->reads++;
    r->last_iova = iova;
    r->last_len = len;
    if (r->fail_with)
        return r->fail_with;
    memcpy(buf, r->mem + (iova - 0x40000), len);
    return 0;
}

static int remote_write(void *opaque, uint64_t iova, const void *buf, uint64_t len)
{
    struct remote *r = opaque;

    r->writes++;
    r->last_iova = iova;
    r->last_len = len;
    if (r->fail_with)
        return r->fail_with;
    memcpy(r->mem + (iova - 0x40000), buf, len);
    return 0;
}

static const struct iommu_remote_ops remote_ops = { remote_read, remote_write };

static void test_remote_ranges_are_served_by_their_callbacks_with_device_iovas(void **state)
{
    struct fixture *f = *state;
    struct remote *r = calloc(1, sizeof(*r));
    uint8_t buf[100], back[100];
    void *p = NULL;

    assert_non_null(r);
    assert_int_equal(iommu_map_remote(f->d, 0x40000, 4 * PG, IOMMU_READ | IOMMU_WRITE,
                                      &remote_ops, r),
                     0);
    memset(buf, 0x42, sizeof(buf));
    assert_int_equal(iommu_dma_write(f->d, 0x40010, buf, sizeof(buf)), 0);
    assert_int_equal(r->writes, 1);
    assert_int_equal(r->last_iova, 0x40010);
    assert_int_equal(r->last_len, sizeof(buf));
    assert_memory_equal(r->mem + 0x10, buf, sizeof(buf));
    assert_int_equal(iommu_dma_read(f->d, 0x40010, back, sizeof(back)), 0);
    assert_int_equal(r->reads, 1);
    assert_memory_equal(back, buf, sizeof(buf));
    iommu_dma_begin(f->d);
    assert_int_equal(iommu_translate(f->d, 0x40000, 8, IOMMU_READ, &p), -EREMOTE);
    iommu_dma_end(f->d);
    assert_null(p);
    assert_int_equal(stats_of(f->d).read_faults + stats_of(f->d).perm_faults, 0);
    iommu_unmap_all(f->d);
    free(r);
}

static void test_a_failing_remote_callback_returns_its_error(void **state)
{
    struct fixture *f = *state;
    struct remote *r = calloc(1, sizeof(*r));
    uint8_t buf[8] = { 0 };

    assert_non_null(r);
    assert_int_equal(iommu_map_remote(f->d, 0x40000, PG, IOMMU_READ | IOMMU_WRITE, &remote_ops, r),
                     0);
    r->fail_with = -ECONNRESET;
    assert_int_equal(iommu_dma_read(f->d, 0x40000, buf, sizeof(buf)), -ECONNRESET);
    assert_int_equal(iommu_dma_write(f->d, 0x40000, buf, sizeof(buf)), -ECONNRESET);
    r->fail_with = 7; /* a positive return is still a failure */
    assert_int_equal(iommu_dma_read(f->d, 0x40000, buf, sizeof(buf)), -EIO);
    assert_int_equal(stats_of(f->d).bytes_read + stats_of(f->d).bytes_written, 0);
    iommu_unmap_all(f->d);
    free(r);
}

static void test_a_write_failing_in_its_remote_piece_keeps_the_host_piece_and_logs_both(void **state)
{
    struct fixture *f = *state;
    struct remote *r = calloc(1, sizeof(*r));
    const struct iommu_range range = { 0x3f000, 2 * PG };
    uint8_t buf[32];

    assert_non_null(r);
    map_rw(f, 0x3f000, PG, 0);
    assert_int_equal(iommu_map_remote(f->d, 0x40000, PG, IOMMU_READ | IOMMU_WRITE, &remote_ops, r),
                     0);
    assert_int_equal(iommu_dirty_start(f->d, PG, &range, 1), 0);
    memset(buf, 0x3c, sizeof(buf));
    r->fail_with = -EPIPE;
    assert_int_equal(iommu_dma_write(f->d, 0x40000 - 16, buf, sizeof(buf)), -EPIPE);
    assert_memory_equal(f->mem + PG - 16, buf, 16);
    report_expect(f, 0x3f000, 2 * PG, PG, (uint64_t[]){ 0, 1 }, 2);
    iommu_unmap_all(f->d);
    free(r);
}

static void test_map_remote_requires_the_callbacks_its_permissions_use(void **state)
{
    struct fixture *f = *state;
    struct iommu_remote_ops only_read = { remote_read, NULL };

    assert_int_equal(iommu_map_remote(f->d, 0x40000, PG, IOMMU_READ, NULL, NULL), -EINVAL);
    assert_int_equal(iommu_map_remote(f->d, 0x40000, PG, IOMMU_WRITE, &only_read, NULL), -EINVAL);
    assert_int_equal(iommu_map_remote(f->d, 0x40000, PG, IOMMU_READ, &only_read, NULL), 0);
}

static void test_dma_spanning_host_and_remote_mappings_splits_at_the_boundary(void **state)
{
    struct fixture *f = *state;
    struct remote *r = calloc(1, sizeof(*r));
    uint8_t buf[64], back[64];

    assert_non_null(r);
    assert_int_equal(iommu_map_host(f->d, 0x3f000, PG, f->mem, IOMMU_READ | IOMMU_WRITE), 0);
    assert_int_equal(iommu_map_remote(f->d, 0x40000, 4 * PG, IOMMU_READ | IOMMU_WRITE,
                                      &remote_ops, r),
                     0);
    for (unsigned i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(0x80 + i);
    assert_int_equal(iommu_dma_write(f->d, 0x40000 - 16, buf, sizeof(buf)), 0);
    assert_memory_equal(f->mem + PG - 16, buf, 16);
    assert_int_equal(r->last_iova, 0x40000);
    assert_int_equal(r->last_len, 48);
    assert_memory_equal(r->mem, buf + 16, 48);
    assert_int_equal(iommu_dma_read(f->d, 0x40000 - 16, back, sizeof(back)), 0);
    assert_memory_equal(back, buf, sizeof(buf));
    iommu_unmap_all(f->d);
    free(r);
}

/* ---- fd-backed ranges ------------------------------------------------------- */

static int memfd_of(size_t len)
{
    int fd = memfd_create("iommu-test", MFD_CLOEXEC);

    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)len), 0);
    return fd;
}

static void test_fd_mapping_of_a_memfd_carries_dma_to_and_from_the_file(void **state)
{
    struct fixture *f = *state;
    int fd = memfd_of(8 * PG);
    const char msg[] = "written by the device";
    char back[sizeof(msg)] = { 0 };
    char seed[] = "put there by the host";

    /* Map the file's second half, then close the fd: the mapping keeps it. */
    assert_int_equal(pwrite(fd, seed, sizeof(seed), 4 * PG + 100), (ssize_t)sizeof(seed));
    assert_int_equal(iommu_map_fd(f->d, 0x80000, 4 * PG, fd, 4 * PG, IOMMU_READ | IOMMU_WRITE), 0);
    assert_int_equal(iommu_dma_write(f->d, 0x80000 + PG, msg, sizeof(msg)), 0);
    assert_int_equal(pread(fd, back, sizeof(back), 5 * PG), (ssize_t)sizeof(back));
    assert_string_equal(back, msg);
    assert_int_equal(iommu_dma_read(f->d, 0x80000 + 100, back, sizeof(seed)), 0);
    assert_string_equal(back, seed);
    assert_int_equal(close(fd), 0);
    assert_int_equal(iommu_dma_read(f->d, 0x80000 + PG, back, sizeof(back)), 0);
    assert_string_equal(back, msg);
    assert_int_equal(iommu_unmap(f->d, 0x80000, 4 * PG), 0);
}

static void test_fd_mapping_rejects_bad_offsets_and_passes_mmap_errors_on(void **state)
{
    struct fixture *f = *state;
    int fd = memfd_of(4 * PG);
    char path[64];
    int ro;

    assert_int_equal(iommu_map_fd(f->d, 0x80000, PG, fd, 100, IOMMU_READ), -EINVAL);
    assert_int_equal(iommu_map_fd(f->d, 0x80000, PG, fd, (uint64_t)INT64_MAX - 0xfff, IOMMU_READ),
                     -EOVERFLOW);
    assert_int_equal(iommu_map_fd(f->d, 0x80000, PG, -1, 0, IOMMU_READ), -EBADF);
    /* Past the end of the file: DMA there would raise SIGBUS. */
    assert_int_equal(iommu_map_fd(f->d, 0x80000, 2 * PG, fd, 3 * PG, IOMMU_READ), -ENXIO);
    assert_int_equal(iommu_map_fd(f->d, 0x80000, 5 * PG, fd, 0, IOMMU_READ), -ENXIO);
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ro = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(ro >= 0);
    assert_int_equal(iommu_map_fd(f->d, 0x80000, PG, ro, 0, IOMMU_WRITE), -EACCES);
    assert_int_equal(iommu_map_fd(f->d, 0x80000, PG, ro, 0, IOMMU_READ), 0);
    /* An overlapping fd map is refused and leaves no mmap behind (ASan/leak
     * checks would not see one; the count does). */
    assert_int_equal(iommu_map_fd(f->d, 0x80000, PG, fd, 0, IOMMU_READ), -EEXIST);
    assert_int_equal(iommu_mapping_count(f->d), 1);
    close(ro);
    close(fd);
}

/* ---- dirty log -------------------------------------------------------------- */

static void map_rw(struct fixture *f, uint64_t iova, uint64_t size, uint64_t host_off)
{
    assert_true(host_off + size <= f->mem_len);
    assert_int_equal(iommu_map_host(f->d, iova, size, f->mem + host_off, IOMMU_READ | IOMMU_WRITE),
                     0);
}

static void write_byte(struct fixture *f, uint64_t iova)
{
    uint8_t b = 1;

    assert_int_equal(iommu_dma_write(f->d, iova, &b, 1), 0);
}

/* Reports [iova, iova+len) at page_size and checks the set bits are exactly
 * expected[0..n). */
static void report_expect(struct fixture *f, uint64_t iova, uint64_t len, uint64_t page_size,
                          const uint64_t *expected, unsigned n)
{
    uint64_t nbits = len / page_size;
    uint64_t *bm = malloc(am_bitmap_words(nbits) * 8);

    assert_non_null(bm);
    memset(bm, 0xff, am_bitmap_words(nbits) * 8); /* must be fully overwritten */
    assert_int_equal(iommu_dirty_report(f->d, iova, len, page_size, bm), 0);
    for (unsigned i = 0; i < n; i++)
        assert_true(am_bitmap_test(bm, expected[i]));
    assert_int_equal(am_bitmap_weight(bm, am_bitmap_words(nbits) * 64), n);
    free(bm);
}

static void test_dirty_log_at_4k_reports_written_pages_then_reads_clean(void **state)
{
    struct fixture *f = *state;
    const struct iommu_range r = { 0x100000, 64 * PG };
    uint8_t big[2 * PG] = { 0 };
    uint8_t b;

    map_rw(f, 0x100000, 64 * PG, 0);
    assert_int_equal(iommu_dirty_start(f->d, PG, &r, 1), 0);
    assert_true(iommu_dirty_active(f->d));
    write_byte(f, 0x100000);
    write_byte(f, 0x100000 + 5 * PG + 17);
    /* One write covering pages 9..11. */
    assert_int_equal(iommu_dma_write(f->d, 0x100000 + 10 * PG - 1, big, PG + 2), 0);
    /* Reads do not dirty. */
    assert_int_equal(iommu_dma_read(f->d, 0x100000 + 40 * PG, &b, 1), 0);
    report_expect(f, 0x100000, 64 * PG, PG, (uint64_t[]){ 0, 5, 9, 10, 11 }, 5);
    report_expect(f, 0x100000, 64 * PG, PG, NULL, 0);
    assert_int_equal(iommu_dirty_stop(f->d), 0);
    assert_false(iommu_dirty_active(f->d));
}

/* Logs 16 MiB at 4 KiB, writes at chosen offsets and reports at page_size. */
static void dirty_at_page_size(struct fixture *f, uint64_t page_size)
{
    const uint64_t base = 0x40000000, len = 16 * MIB;
    const struct iommu_range r = { base, len };
    const uint64_t offs[] = { 0, page_size - 1, 3 * page_size + 4096, len - 1 };
    uint64_t expected[] = { 0, 3, len / page_size - 1 };

    map_rw(f, base, len, 0);
    assert_int_equal(iommu_dirty_start(f->d, PG, &r, 1), 0);
    for (unsigned i = 0; i < AM_ARRAY_SIZE(offs); i++)
        write_byte(f, base + offs[i]);
    report_expect(f, base, len, page_size, expected, 3);
    report_expect(f, base, len, page_size, NULL, 0);
    /* A 4 KiB write straddling two report pages sets both. */
    {
        uint8_t buf[4096] = { 0 };
        assert_int_equal(iommu_dma_write(f->d, base + 5 * page_size - 2048, buf, sizeof(buf)), 0);
    }
    report_expect(f, base, len, page_size, (uint64_t[]){ 4, 5 }, 2);
    assert_int_equal(iommu_dirty_stop(f->d), 0);
}

static void test_dirty_log_reports_at_8k(void **state)
{
    dirty_at_page_size(*state, 8 * 1024);
}

static void test_dirty_log_reports_at_64k(void **state)
{
    dirty_at_page_size(*state, 64 * 1024);
}

static void test_dirty_log_reports_at_2m(void **state)
{
    dirty_at_page_size(*state, 2 * MIB);
}

static void test_dirty_log_started_at_2m_accepts_2m_aligned_ranges_only(void **state)
{
    struct fixture *f = *state;
    const struct iommu_range ok = { 2 * MIB, 4 * MIB }, bad = { 2 * MIB + PG, 2 * MIB };

    map_rw(f, 2 * MIB, 4 * MIB, 0);
    assert_int_equal(iommu_dirty_start(f->d, 2 * MIB, &bad, 1), -EINVAL);
    assert_int_equal(iommu_dirty_start(f->d, 2 * MIB, &ok, 1), 0);
    write_byte(f, 2 * MIB + 3 * PG);
    /* Reporting at 4 KiB is still possible: the log is kept at 4 KiB. */
    report_expect(f, 2 * MIB, 4 * MIB, PG, (uint64_t[]){ 3 }, 1);
}

static void test_a_large_report_page_covering_parts_of_two_logged_ranges_ors_them(void **state)
{
    struct fixture *f = *state;
    const struct iommu_range r[] = { { 0x20000, PG }, { 0x0, PG }, { 0x22000, PG } };

    map_rw(f, 0, 64 * PG, 0);
    assert_int_equal(iommu_dirty_start(f->d, PG, r, 3), 0);
    write_byte(f, 0x22000);
    write_byte(f, 0x21000); /* not logged */
    write_byte(f, 0x10000); /* not logged */
    /* 64 KiB pages: page 2 covers 0x20000..0x2ffff. */
    report_expect(f, 0, 4 * 64 * 1024, 64 * 1024, (uint64_t[]){ 2 }, 1);
    write_byte(f, 0x0);
    write_byte(f, 0x20000);
    report_expect(f, 0, 4 * 64 * 1024, 64 * 1024, (uint64_t[]){ 0, 2 }, 2);
    report_expect(f, 0, 4 * 64 * 1024, 64 * 1024, NULL, 0);
}

static void test_a_sub_range_report_clears_only_the_pages_it_covers(void **state)
{
    struct fixture *f = *state;
    const struct iommu_range r = { 0x100000, 256 * PG };

    map_rw(f, 0x100000, 256 * PG, 0);
    assert_int_equal(iommu_dirty_start(f->d, PG, &r, 1), 0);
    for (uint64_t p = 60; p < 70; p++)
        write_byte(f, 0x100000 + p * PG);
    /* Report pages 64..127 only (crosses a 64-bit word of the log). */
    report_expect(f, 0x100000 + 64 * PG, 64 * PG, PG, (uint64_t[]){ 0, 1, 2, 3, 4, 5 }, 6);
    /* 60..63 are still dirty; a report starting before the log is fine. */
    report_expect(f, 0x100000 - 16 * PG, 128 * PG, PG, (uint64_t[]){ 76, 77, 78, 79 }, 4);
    report_expect(f, 0x100000, 256 * PG, PG, NULL, 0);
}

static void test_dirty_report_rejects_bad_page_size_alignment_length_and_wrap(void **state)
{
    struct fixture *f = *state;
    const struct iommu_range r = { 0x100000, 64 * PG };
    uint64_t bm[4] = { 0x1234, 0x1234, 0x1234, 0x1234 };

    map_rw(f, 0x100000, 64 * PG, 0);
    assert_int_equal(iommu_dirty_report(f->d, 0x100000, PG, PG, bm), -EINVAL); /* logging off */
    assert_int_equal(iommu_dirty_start(f->d, PG, &r, 1), 0);
    write_byte(f, 0x100000);
    assert_int_equal(iommu_dirty_report(f->d, 0x100000, 64 * PG, 2048, bm), -EINVAL);
    assert_int_equal(iommu_dirty_report(f->d, 0x100000, 64 * PG, 3 * PG, bm), -EINVAL);
    assert_int_equal(iommu_dirty_report(f->d, 0x100000, 64 * PG, 0, bm), -EINVAL);
    assert_int_equal(iommu_dirty_report(f->d, 0x100000 + 512, 64 * PG, PG, bm), -EINVAL);
    assert_int_equal(iommu_dirty_report(f->d, 0x100000, 64 * PG + 512, PG, bm), -EINVAL);
    assert_int_equal(iommu_dirty_report(f->d, 0x100000, 0, PG, bm), -EINVAL);
    /* iova aligned to 4 KiB but not to the 64 KiB report page. */
    assert_int_equal(iommu_dirty_report(f->d, 0x101000, 16 * PG, 16 * PG, bm), -EINVAL);
    assert_int_equal(iommu_dirty_report(f->d, 0x100000, 64 * PG, PG, NULL), -EINVAL);
    assert_int_equal(iommu_dirty_report(f->d, UINT64_MAX - PG + 1, 2 * PG, PG, bm), -EOVERFLOW);
    /* Failed reports touch neither the bitmap nor the log. */
    assert_int_equal(bm[0], 0x1234);
    report_expect(f, 0x100000, 64 * PG, PG, (uint64_t[]){ 0 }, 1);
}

static void test_dirty_start_rejects_bad_arguments_per_the_vfio_rules(void **state)
{
    struct fixture *f = *state;
    struct iommu_range one = { 0x100000, 64 * PG };
    struct iommu_range *many = calloc(IOMMU_DIRTY_MAX_RANGES + 1, sizeof(*many));

    assert_non_null(many);
    assert_int_equal(iommu_dirty_start(f->d, 0, &one, 1), -EINVAL);
    assert_int_equal(iommu_dirty_start(f->d, 2048, &one, 1), -EINVAL);
    assert_int_equal(iommu_dirty_start(f->d, 3 * PG, &one, 1), -EINVAL);
    assert_int_equal(iommu_dirty_start(f->d, PG, NULL, 1), -EINVAL);
    assert_int_equal(iommu_dirty_start(f->d, PG, &(struct iommu_range){ 0x100800, PG }, 1), -EINVAL);
    assert_int_equal(iommu_dirty_start(f->d, PG, &(struct iommu_range){ 0x100000, 100 }, 1),
                     -EINVAL);
    assert_int_equal(iommu_dirty_start(f->d, PG, &(struct iommu_range){ 0x100000, 0 }, 1), -EINVAL);
    assert_int_equal(iommu_dirty_start(f->d, 64 * 1024, &(struct iommu_range){ 0x101000, 0x10000 },
                                       1),
                     -EINVAL);
    assert_int_equal(iommu_dirty_start(f->d, PG,
                                       &(struct iommu_range){ UINT64_MAX - PG + 1, 2 * PG }, 1),
                     -EOVERFLOW);
    /* Overlap, given out of order. */
    assert_int_equal(iommu_dirty_start(f->d, PG,
                                       (struct iommu_range[]){ { 0x200000, 4 * PG },
                                                               { 0x100000, 4 * PG },
                                                               { 0x203000, PG } },
                                       3),
                     -EINVAL);
    /* Too many ranges, even when each is fine. */
    for (unsigned i = 0; i <= IOMMU_DIRTY_MAX_RANGES; i++)
        many[i] = (struct iommu_range){ (uint64_t)i * 2 * PG, PG };
    assert_int_equal(iommu_dirty_start(f->d, PG, many, IOMMU_DIRTY_MAX_RANGES + 1), -E2BIG);
    /* Exactly the maximum is accepted. */
    assert_int_equal(iommu_dirty_start(f->d, PG, many, IOMMU_DIRTY_MAX_RANGES), 0);
    assert_int_equal(iommu_dirty_stop(f->d), 0);
    /* More than the byte budget in total. */
    assert_int_equal(iommu_dirty_start(f->d, PG,
                                       (struct iommu_range[]){ { 0, IOMMU_DIRTY_MAX_BYTES },
                                                               { IOMMU_DIRTY_MAX_BYTES, PG } },
                                       2),
                     -E2BIG);
    assert_false(iommu_dirty_active(f->d));
    /* A second start is busy; stop, then starting again works. */
    assert_int_equal(iommu_dirty_start(f->d, PG, &one, 1), 0);
    assert_int_equal(iommu_dirty_start(f->d, PG, &one, 1), -EBUSY);
    assert_int_equal(iommu_dirty_stop(f->d), 0);
    assert_int_equal(iommu_dirty_stop(f->d), -EINVAL);
    assert_int_equal(iommu_dirty_start(f->d, PG, &one, 1), 0);
    free(many);
}

static void test_dirty_start_with_no_ranges_logs_what_is_mapped_at_that_time(void **state)
{
    struct fixture *f = *state;

    map_rw(f, 0x100000, 4 * PG, 0);
    map_rw(f, 0x104000, 4 * PG, 4 * PG); /* adjacent: merged */
    map_rw(f, 0x200000, 4 * PG, 8 * PG);
    assert_int_equal(iommu_dirty_start(f->d, PG, NULL, 0), 0);
    map_rw(f, 0x300000, 4 * PG, 12 * PG); /* mapped after start: not logged */
    write_byte(f, 0x100000);
    write_byte(f, 0x107fff);
    write_byte(f, 0x203000);
    write_byte(f, 0x300000);
    report_expect(f, 0x100000, 8 * PG, PG, (uint64_t[]){ 0, 7 }, 2);
    report_expect(f, 0x200000, 4 * PG, PG, (uint64_t[]){ 3 }, 1);
    report_expect(f, 0x300000, 4 * PG, PG, NULL, 0);
    /* The log outlives an unmap inside it. */
    write_byte(f, 0x200000);
    assert_int_equal(iommu_unmap(f->d, 0x200000, 4 * PG), 0);
    report_expect(f, 0x200000, 4 * PG, PG, (uint64_t[]){ 0 }, 1);
}

static void test_dirty_start_with_no_ranges_and_no_mappings_logs_nothing(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(iommu_dirty_start(f->d, PG, NULL, 0), 0);
    assert_true(iommu_dirty_active(f->d));
    map_rw(f, 0x100000, 4 * PG, 0);
    write_byte(f, 0x100000);
    report_expect(f, 0x100000, 4 * PG, PG, NULL, 0);
}

static void test_translate_for_write_marks_the_whole_range_dirty_and_for_read_does_not(void **state)
{
    struct fixture *f = *state;
    const struct iommu_range r = { 0x100000, 64 * PG };
    void *p;

    map_rw(f, 0x100000, 64 * PG, 0);
    assert_int_equal(iommu_dirty_start(f->d, PG, &r, 1), 0);
    iommu_dma_begin(f->d);
    assert_int_equal(iommu_translate(f->d, 0x100000 + PG, 3 * PG, IOMMU_READ, &p), 0);
    assert_int_equal(iommu_translate(f->d, 0x100000 + 10 * PG + 1, 2 * PG, IOMMU_WRITE, &p), 0);
    iommu_dma_end(f->d);
    report_expect(f, 0x100000, 64 * PG, PG, (uint64_t[]){ 10, 11, 12 }, 3);
}

static void test_a_huge_logged_range_costs_only_what_is_written(void **state)
{
    struct fixture *f = *state;
    const uint64_t tib = UINT64_C(1) << 40;
    const struct iommu_range r = { 0, tib };
    uint64_t bm[8];

    /* 1 TiB logged = 32 MiB of bitmap reserved, none of it touched. */
    assert_int_equal(iommu_map_host(f->d, tib - 2 * MIB, 2 * MIB, f->mem, IOMMU_WRITE), 0);
    assert_int_equal(iommu_dirty_start(f->d, PG, &r, 1), 0);
    write_byte(f, tib - 1);
    assert_int_equal(iommu_dirty_report(f->d, tib - 512 * MIB, 256 * 2 * MIB, 2 * MIB, bm), 0);
    assert_int_equal(am_bitmap_weight(bm, 256), 1);
    assert_true(am_bitmap_test(bm, 255));
}

/* A model of the log: one flag per 4 KiB page of a 50 MiB window (three and
 * a bit 16 MiB summary blocks of the log). Random logged ranges, writes and
 * reports at random page sizes and windows must agree with it exactly. */
#define MODEL_BASE UINT64_C(0x40000000)
#define MODEL_PAGES (3u * 4096u + 512u)

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void model_report_check(struct fixture *f, bool *dirty, uint64_t *x)
{
    unsigned shift = 12 + (unsigned)(xorshift(x) % 9); /* 4 KiB .. 1 MiB */
    uint64_t ps = UINT64_C(1) << shift, span = (uint64_t)MODEL_PAGES * PG / ps;
    /* Windows may start before and end after the modelled area. */
    uint64_t first = xorshift(x) % (span + 2), n = 1 + xorshift(x) % (span + 2 - first);
    uint64_t iova = MODEL_BASE - ps + first * ps, len = n * ps;
    uint64_t bm[MODEL_PAGES / 64 + 1];

    assert_true(am_bitmap_words(n) <= AM_ARRAY_SIZE(bm));
    assert_int_equal(iommu_dirty_report(f->d, iova, len, ps, bm), 0);
    for (uint64_t bit = 0; bit < n; bit++) {
        bool want = false;

        for (uint64_t a = iova + bit * ps; a < iova + (bit + 1) * ps; a += PG) {
            if (a >= MODEL_BASE && a < MODEL_BASE + (uint64_t)MODEL_PAGES * PG) {
                want |= dirty[(a - MODEL_BASE) / PG];
                dirty[(a - MODEL_BASE) / PG] = false;
            }
        }
        assert_int_equal(am_bitmap_test(bm, bit), want);
    }
}

static void test_random_writes_and_reports_agree_with_a_model_of_the_log(void **state)
{
    struct fixture *f = *state;
    uint64_t x = 0x1234567;
    static uint8_t buf[3 * IOMMU_PAGE_SIZE];

    /* Every 16 MiB of the window aliases the fixture's memory. */
    for (uint64_t off = 0; off < (uint64_t)MODEL_PAGES * PG; off += 16 * MIB)
        map_rw(f, MODEL_BASE + off, AM_MIN(16 * MIB, (uint64_t)MODEL_PAGES * PG - off), 0);
    for (unsigned epoch = 0; epoch < 40; epoch++) {
        static bool logged[MODEL_PAGES], dirty[MODEL_PAGES];
        struct iommu_range r[16];
        uint32_t nr = 0;

        memset(logged, 0, sizeof(logged));
        memset(dirty, 0, sizeof(dirty));

        /* Non-overlapping ranges, in shuffled order; epoch 0 logs all. */
        for (unsigned p = 0; epoch > 0 && p < MODEL_PAGES && nr < AM_ARRAY_SIZE(r);) {
            unsigned gap = (unsigned)(xorshift(&x) % 1000);
            unsigned len = 1 + (unsigned)(xorshift(&x) % 1500);

            if (p + gap + len > MODEL_PAGES)
                break;
            r[nr++] = (struct iommu_range){ MODEL_BASE + (uint64_t)(p + gap) * PG,
                                            (uint64_t)len * PG };
            for (unsigned i = p + gap; i < p + gap + len; i++)
                logged[i] = true;
            p += gap + len;
        }
        if (epoch == 0) {
            for (unsigned i = 0; i < MODEL_PAGES; i++)
                logged[i] = true;
        }
        for (uint32_t i = 0; nr > 1 && i < nr; i++) {
            uint32_t j = (uint32_t)(xorshift(&x) % nr);
            struct iommu_range t = r[i];
            r[i] = r[j];
            r[j] = t;
        }
        assert_int_equal(iommu_dirty_start(f->d, PG, epoch == 0 ? NULL : r, nr), 0);
        for (unsigned op = 0; op < 300; op++) {
            if (xorshift(&x) % 8 == 0) {
                model_report_check(f, dirty, &x);
                continue;
            }
            uint64_t off = xorshift(&x) % ((uint64_t)MODEL_PAGES * PG - sizeof(buf));
            uint64_t len = 1 + xorshift(&x) % sizeof(buf);
            assert_int_equal(iommu_dma_write(f->d, MODEL_BASE + off, buf, len), 0);
            for (uint64_t pg = off / PG; pg <= (off + len - 1) / PG; pg++)
                dirty[pg] |= logged[pg];
        }
        /* A final report at 4 KiB returns what the model still holds, and
         * leaves nothing behind. */
        {
            static uint64_t left[MODEL_PAGES];
            unsigned nleft = 0;

            for (unsigned i = 0; i < MODEL_PAGES; i++) {
                if (dirty[i])
                    left[nleft++] = i;
            }
            report_expect(f, MODEL_BASE, (uint64_t)MODEL_PAGES * PG, PG, left, nleft);
        }
        report_expect(f, MODEL_BASE - 4 * MIB, (uint64_t)MODEL_PAGES * PG + 8 * MIB, PG, NULL, 0);
        assert_int_equal(iommu_dirty_stop(f->d), 0);
    }
}

/* ---- concurrency ------------------------------------------------------------ */

#define CONC_BASE UINT64_C(0x10000000)
#define CONC_PAGES 2048u /* 8 MiB */
#define CONC_THREADS 3
#define CONC_WRITES 20000u

struct writer {
    struct iommu_domain *d;
    unsigned seed;
    unsigned index;
    uint64_t written[CONC_PAGES / 64]; /* pages this thread wrote */
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    uint64_t x = w->seed * UINT64_C(0x9e3779b97f4a7c15) + 1;

    for (unsigned i = 0; i < CONC_WRITES; i++) {
        uint64_t page, off;
        uint8_t b = (uint8_t)i;
        void *p;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        page = x % CONC_PAGES;
        /* Each thread owns its bytes (device payload races are not ours to test). */
        off = ((x >> 32) % (PG / CONC_THREADS)) * CONC_THREADS + w->index;
        if (i % 2 == 0) {
            if (iommu_dma_write(w->d, CONC_BASE + page * PG + off, &b, 1) != 0)
                return (void *)1;
        } else {
            iommu_dma_begin(w->d);
            if (iommu_translate(w->d, CONC_BASE + page * PG + off, 1, IOMMU_WRITE, &p) != 0) {
                iommu_dma_end(w->d);
                return (void *)1;
            }
            *(volatile uint8_t *)p = b;
            iommu_dma_end(w->d);
        }
        w->written[page / 64] |= UINT64_C(1) << (page % 64);
    }
    return NULL;
}

static void test_concurrent_writers_lose_no_dirty_bit_to_a_reporter(void **state)
{
    struct fixture *f = *state;
    const struct iommu_range r = { CONC_BASE, (uint64_t)CONC_PAGES * PG };
    struct writer *w = calloc(CONC_THREADS, sizeof(*w));
    pthread_t t[CONC_THREADS];
    uint64_t seen[CONC_PAGES / 64] = { 0 }, bm[CONC_PAGES / 64], want[CONC_PAGES / 64] = { 0 };
    bool joined[CONC_THREADS] = { false };
    unsigned reports = 0;

    assert_non_null(w);
    map_rw(f, CONC_BASE, (uint64_t)CONC_PAGES * PG, 0);
    assert_int_equal(iommu_dirty_start(f->d, PG, &r, 1), 0);
    for (unsigned i = 0; i < CONC_THREADS; i++) {
        w[i] = (struct writer){ .d = f->d, .seed = i + 1, .index = i };
        assert_int_equal(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
    }
    /* Report-and-clear while they write; the last report follows the last
     * join, so it sees every write. */
    for (bool all_joined = false; !all_joined;) {
        all_joined = true;
        for (unsigned i = 0; i < CONC_THREADS; i++) {
            void *ret;

            if (joined[i])
                continue;
            if (pthread_tryjoin_np(t[i], &ret) == 0) {
                joined[i] = true;
                assert_null(ret);
            } else {
                all_joined = false;
            }
        }
        assert_int_equal(iommu_dirty_report(f->d, r.iova, r.length, PG, bm), 0);
        for (unsigned k = 0; k < CONC_PAGES / 64; k++)
            seen[k] |= bm[k];
        reports++;
    }
    for (unsigned i = 0; i < CONC_THREADS; i++)
        for (unsigned k = 0; k < CONC_PAGES / 64; k++)
            want[k] |= w[i].written[k];
    assert_true(reports >= 1);
    assert_memory_equal(seen, want, sizeof(want));
    free(w);
}

struct unmapper {
    struct iommu_domain *d;
    int rc;
    int finished; /* atomic */
};

static void *unmapper_main(void *arg)
{
    struct unmapper *u = arg;

    u->rc = iommu_unmap(u->d, 0x100000, 4 * PG);
    __atomic_store_n(&u->finished, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void test_unmap_waits_for_an_in_flight_dma_section(void **state)
{
    struct fixture *f = *state;
    struct unmapper u = { .d = f->d };
    pthread_t t;
    uint8_t *p;
    uint8_t b = 0;

    map_rw(f, 0x100000, 4 * PG, 0);
    iommu_dma_begin(f->d);
    assert_int_equal(iommu_translate(f->d, 0x100000, PG, IOMMU_WRITE, (void **)&p), 0);
    assert_int_equal(pthread_create(&t, NULL, unmapper_main, &u), 0);
    usleep(50 * 1000); /* give the unmap time to block; the assert cannot fail if it is slow */
    assert_int_equal(__atomic_load_n(&u.finished, __ATOMIC_ACQUIRE), 0);
    /* The section can still use its pointer and, re-entering, the DMA calls. */
    p[0] = 0x77;
    assert_int_equal(iommu_dma_read(f->d, 0x100000, &b, 1), 0);
    assert_int_equal(b, 0x77);
    assert_int_equal(__atomic_load_n(&u.finished, __ATOMIC_ACQUIRE), 0);
    iommu_dma_end(f->d);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(u.rc, 0);
    assert_int_equal(iommu_mapping_count(f->d), 0);
}

struct reporter {
    struct iommu_domain *d;
    uint64_t bm;
    int rc;
    int finished; /* atomic */
};

static void *reporter_main(void *arg)
{
    struct reporter *r = arg;

    r->rc = iommu_dirty_report(r->d, 0x100000, 4 * PG, PG, &r->bm);
    __atomic_store_n(&r->finished, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void test_a_report_waits_for_open_sections_so_a_pending_write_is_not_lost(void **state)
{
    struct fixture *f = *state;
    const struct iommu_range range = { 0x100000, 4 * PG };
    struct reporter r = { .d = f->d };
    pthread_t t;
    uint8_t *p;

    map_rw(f, 0x100000, 4 * PG, 0);
    assert_int_equal(iommu_dirty_start(f->d, PG, &range, 1), 0);
    iommu_dma_begin(f->d);
    assert_int_equal(iommu_translate(f->d, 0x102000, PG, IOMMU_WRITE, (void **)&p), 0);
    assert_int_equal(pthread_create(&t, NULL, reporter_main, &r), 0);
    usleep(50 * 1000);
    assert_int_equal(__atomic_load_n(&r.finished, __ATOMIC_ACQUIRE), 0);
    p[0] = 1; /* the write the report must not clear before it lands */
    iommu_dma_end(f->d);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.bm, UINT64_C(1) << 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_a_domain_reports_its_requester_id_and_starts_empty),
        T(test_map_host_then_unmap_leaves_the_domain_empty),
        T(test_map_rejects_unaligned_iova_size_and_zero_size),
        T(test_map_rejects_empty_or_unknown_permissions),
        T(test_map_whose_end_wraps_fails_with_eoverflow),
        T(test_map_host_rejects_a_null_or_wrapping_host_pointer),
        T(test_map_overlapping_an_existing_mapping_fails_with_eexist),
        T(test_unmap_of_a_range_never_mapped_fails_with_enoent),
        T(test_partial_unmap_fails_with_enoent_and_keeps_the_mapping),
        T(test_mapping_more_than_the_maximum_fails_with_enospc),
        T(test_unmap_all_removes_every_mapping),
        T(test_dma_read_and_write_cross_two_adjacent_mappings),
        T(test_dma_write_across_a_gap_faults_writes_nothing_and_counts),
        T(test_dma_read_across_a_gap_faults_and_counts_a_read_fault),
        T(test_dma_outside_any_mapping_faults_at_its_first_byte),
        T(test_dma_write_into_a_read_only_mapping_is_a_permission_fault),
        T(test_dma_read_of_a_write_only_mapping_is_a_permission_fault),
        T(test_dma_of_zero_length_is_a_noop_and_a_wrapping_range_is_einval),
        T(test_translate_within_one_mapping_returns_the_host_address),
        T(test_dma_sections_nest_in_one_thread),
        T(test_translate_spanning_two_mappings_is_eremote_and_not_counted),
        T(test_translate_spanning_into_a_gap_or_forbidden_mapping_is_efault),
        T(test_translate_of_an_unmapped_or_forbidden_range_is_efault_and_counted),
        T(test_translate_rejects_bad_arguments_without_counting_a_fault),
        T(test_remote_ranges_are_served_by_their_callbacks_with_device_iovas),
        T(test_a_failing_remote_callback_returns_its_error),
        T(test_a_write_failing_in_its_remote_piece_keeps_the_host_piece_and_logs_both),
        T(test_map_remote_requires_the_callbacks_its_permissions_use),
        T(test_dma_spanning_host_and_remote_mappings_splits_at_the_boundary),
        T(test_fd_mapping_of_a_memfd_carries_dma_to_and_from_the_file),
        T(test_fd_mapping_rejects_bad_offsets_and_passes_mmap_errors_on),
        T(test_dirty_log_at_4k_reports_written_pages_then_reads_clean),
        T(test_dirty_log_reports_at_8k),
        T(test_dirty_log_reports_at_64k),
        T(test_dirty_log_reports_at_2m),
        T(test_dirty_log_started_at_2m_accepts_2m_aligned_ranges_only),
        T(test_a_large_report_page_covering_parts_of_two_logged_ranges_ors_them),
        T(test_a_sub_range_report_clears_only_the_pages_it_covers),
        T(test_dirty_report_rejects_bad_page_size_alignment_length_and_wrap),
        T(test_dirty_start_rejects_bad_arguments_per_the_vfio_rules),
        T(test_dirty_start_with_no_ranges_logs_what_is_mapped_at_that_time),
        T(test_dirty_start_with_no_ranges_and_no_mappings_logs_nothing),
        T(test_translate_for_write_marks_the_whole_range_dirty_and_for_read_does_not),
        T(test_a_huge_logged_range_costs_only_what_is_written),
        T(test_random_writes_and_reports_agree_with_a_model_of_the_log),
        T(test_concurrent_writers_lose_no_dirty_bit_to_a_reporter),
        T(test_unmap_waits_for_an_in_flight_dma_section),
        T(test_a_report_waits_for_open_sections_so_a_pending_write_is_not_lost),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
