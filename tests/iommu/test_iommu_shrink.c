/* Tests of src/iommu against a client that shrinks the file behind an fd
 * mapping (issue 8.5): the DMA touching lost pages fails with -EFAULT and
 * is counted, everything else goes on, and a SIGBUS that is not ours still
 * kills the process. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/common.h"
#include "iommu/iommu.h"

#define PG IOMMU_PAGE_SIZE
#define RW (IOMMU_READ | IOMMU_WRITE)
#define IOVA 0x400000u
#define FILE_PAGES 4u

enum backing { MEMFD_SEALABLE, MEMFD_UNSEALABLE, TMPFILE };

struct fixture {
    struct iommu_domain *d;     /* holds the fd mapping at IOVA and a host mapping */
    struct iommu_domain *other; /* another VF's domain: must not notice anything */
    uint8_t *host;              /* FILE_PAGES pages of anonymous memory */
    uint8_t *other_host;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    assert_int_equal(iommu_domain_create(0x0001, &f->d), 0);
    assert_int_equal(iommu_domain_create(0x0002, &f->other), 0);
    f->host = mmap(NULL, 2 * FILE_PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    assert_true(f->host != MAP_FAILED);
    f->other_host = f->host + FILE_PAGES * PG;
    assert_int_equal(iommu_map_host(f->d, 0x10000, FILE_PAGES * PG, f->host, RW), 0);
    assert_int_equal(iommu_map_host(f->other, 0x10000, FILE_PAGES * PG, f->other_host, RW), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    iommu_domain_destroy(f->d);
    iommu_domain_destroy(f->other);
    munmap(f->host, 2 * FILE_PAGES * PG);
    free(f);
    return 0;
}

static struct iommu_stats stats_of(struct iommu_domain *d)
{
    struct iommu_stats s;

    iommu_stats_get(d, &s);
    return s;
}

static int backing_open(enum backing b)
{
    char path[] = "/tmp/accmig-iommu-XXXXXX";
    int fd;

    switch (b) {
    case MEMFD_SEALABLE:
        fd = memfd_create("iommu-shrink", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        break;
    case MEMFD_UNSEALABLE:
        fd = memfd_create("iommu-shrink", MFD_CLOEXEC);
        break;
    default:
        fd = mkostemp(path, O_CLOEXEC);
        if (fd >= 0)
            assert_int_equal(unlink(path), 0);
        break;
    }
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, FILE_PAGES * PG), 0);
    return fd;
}

/* The rest of the world still works: the host mapping of the same domain
 * and the other domain carry DMA both ways. */
static void others_still_work(struct fixture *f)
{
    uint8_t out[64], in[64];

    memset(out, 0x5a, sizeof(out));
    assert_int_equal(iommu_dma_write(f->d, 0x10000 + 100, out, sizeof(out)), 0);
    assert_int_equal(iommu_dma_read(f->d, 0x10000 + 100, in, sizeof(in)), 0);
    assert_memory_equal(in, out, sizeof(in));
    assert_int_equal(iommu_dma_write(f->other, 0x10000 + 200, out, sizeof(out)), 0);
    assert_int_equal(iommu_dma_read(f->other, 0x10000 + 200, in, sizeof(in)), 0);
    assert_memory_equal(in, out, sizeof(in));
    assert_int_equal(stats_of(f->other).bus_faults, 0);
}

/* Maps an unsealable backing, shrinks it to 0 and checks that each access
 * faults alone, is counted, and that growing the file back heals it. */
static void shrink_to_zero_faults_only_the_dma(struct fixture *f, enum backing b)
{
    int fd = backing_open(b);
    uint8_t buf[256] = { 1 };
    void *p = NULL;

    assert_int_equal(iommu_map_fd(f->d, IOVA, FILE_PAGES * PG, fd, 0, RW), 0);
    assert_int_equal(iommu_dma_write(f->d, IOVA + 10, buf, sizeof(buf)), 0);
    /* Zero-copy is refused while the file can shrink: the caller copies. */
    iommu_dma_begin(f->d);
    assert_int_equal(iommu_translate(f->d, IOVA, 64, IOMMU_READ, &p), -EREMOTE);
    iommu_dma_end(f->d);

    assert_int_equal(ftruncate(fd, 0), 0);
    assert_int_equal(iommu_dma_read(f->d, IOVA + PG + 8, buf, sizeof(buf)), -EFAULT);
    assert_int_equal(stats_of(f->d).last_fault_iova, IOVA + PG + 8);
    assert_int_equal(iommu_dma_write(f->d, IOVA + 3 * PG, buf, sizeof(buf)), -EFAULT);
    assert_int_equal(stats_of(f->d).last_fault_iova, IOVA + 3 * PG);
    iommu_dma_begin(f->d);
    assert_int_equal(iommu_translate(f->d, IOVA, 64, IOMMU_WRITE, &p), -EREMOTE);
    iommu_dma_end(f->d);
    assert_int_equal(stats_of(f->d).bus_faults, 2);
    assert_int_equal(stats_of(f->d).read_faults + stats_of(f->d).write_faults, 0);
    assert_int_equal(stats_of(f->d).bytes_read, 0);
    others_still_work(f);

    /* The same thread faults again: the guard left no signal blocked. */
    assert_int_equal(iommu_dma_read(f->d, IOVA, buf, 1), -EFAULT);
    assert_int_equal(stats_of(f->d).bus_faults, 3);

    /* The client grows the file back: the pages return, zero-filled. */
    assert_int_equal(ftruncate(fd, FILE_PAGES * PG), 0);
    assert_int_equal(iommu_dma_read(f->d, IOVA + 10, buf, sizeof(buf)), 0);
    assert_int_equal(buf[0], 0);
    assert_int_equal(stats_of(f->d).bus_faults, 3);
    assert_int_equal(iommu_unmap(f->d, IOVA, FILE_PAGES * PG), 0);
    close(fd);
}

static void test_an_unsealable_memfd_shrunk_to_zero_faults_only_the_dma_that_touches_it(void **state)
{
    shrink_to_zero_faults_only_the_dma(*state, MEMFD_UNSEALABLE);
}

static void test_a_regular_file_shrunk_to_zero_faults_only_the_dma_that_touches_it(void **state)
{
    shrink_to_zero_faults_only_the_dma(*state, TMPFILE);
}

static void test_a_sealable_memfd_is_sealed_against_shrinking_and_keeps_zero_copy(void **state)
{
    struct fixture *f = *state;
    int fd = backing_open(MEMFD_SEALABLE);
    const char msg[] = "still here";
    char back[sizeof(msg)] = { 0 };
    void *p = NULL;

    assert_int_equal(iommu_map_fd(f->d, IOVA, FILE_PAGES * PG, fd, 0, RW), 0);
    assert_true(fcntl(fd, F_GET_SEALS) & F_SEAL_SHRINK);
    /* The shrink is impossible now; growing is still allowed. */
    assert_int_equal(ftruncate(fd, 0), -1);
    assert_int_equal(errno, EPERM);
    assert_int_equal(ftruncate(fd, 2 * FILE_PAGES * PG), 0);
    assert_int_equal(iommu_dma_write(f->d, IOVA + 3 * PG, msg, sizeof(msg)), 0);
    iommu_dma_begin(f->d);
    assert_int_equal(iommu_translate(f->d, IOVA + 3 * PG, sizeof(msg), IOMMU_READ, &p), 0);
    memcpy(back, p, sizeof(back));
    iommu_dma_end(f->d);
    assert_string_equal(back, msg);
    assert_int_equal(stats_of(f->d).bus_faults, 0);
    assert_int_equal(iommu_unmap(f->d, IOVA, FILE_PAGES * PG), 0);
    close(fd);
}

static void test_a_memfd_sealed_by_its_owner_counts_as_sealed(void **state)
{
    struct fixture *f = *state;
    int fd = backing_open(MEMFD_SEALABLE);
    void *p = NULL;

    /* What QEMU's memory-backend-memfd does: shrink, grow and seal sealed. */
    assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);
    assert_int_equal(iommu_map_fd(f->d, IOVA, FILE_PAGES * PG, fd, 0, RW), 0);
    iommu_dma_begin(f->d);
    assert_int_equal(iommu_translate(f->d, IOVA, PG, IOMMU_WRITE, &p), 0);
    iommu_dma_end(f->d);
    assert_int_equal(iommu_unmap(f->d, IOVA, FILE_PAGES * PG), 0);
    close(fd);
}

static void test_a_dma_crossing_into_lost_pages_fails_logs_the_attempt_dirty_and_spares_the_rest(void **state)
{
    struct fixture *f = *state;
    int fd = backing_open(MEMFD_UNSEALABLE);
    const struct iommu_range range = { IOVA, FILE_PAGES * PG };
    uint8_t out[2 * PG], in[PG];
    uint64_t bm = 0;

    memset(out, 0xab, sizeof(out));
    assert_int_equal(iommu_map_fd(f->d, IOVA, FILE_PAGES * PG, fd, 0, RW), 0);
    assert_int_equal(iommu_dirty_start(f->d, PG, &range, 1), 0);
    assert_int_equal(ftruncate(fd, 2 * PG), 0); /* pages 2 and 3 are gone */
    assert_int_equal(iommu_dma_write(f->d, IOVA + PG, out, sizeof(out)), -EFAULT);
    /* memcpy may write in any order: the fault is somewhere in page 2, and
     * any part of the failing piece may have landed (iommu.h), so the whole
     * attempt is logged dirty. */
    assert_in_range(stats_of(f->d).last_fault_iova, IOVA + 2 * PG, IOVA + 3 * PG - 1);
    assert_int_equal(stats_of(f->d).bus_faults, 1);
    assert_int_equal(iommu_dirty_report(f->d, IOVA, FILE_PAGES * PG, PG, &bm), 0);
    assert_int_equal(bm, 0x6);
    /* Pages still backed keep working. */
    assert_int_equal(iommu_dma_write(f->d, IOVA + PG, out, PG), 0);
    assert_int_equal(pread(fd, in, sizeof(in), PG), (ssize_t)sizeof(in));
    assert_memory_equal(in, out, sizeof(in));
    assert_int_equal(iommu_dma_read(f->d, IOVA + PG, in, sizeof(in)), 0);
    assert_memory_equal(in, out, sizeof(in));
    assert_int_equal(iommu_dirty_stop(f->d), 0);
    assert_int_equal(iommu_unmap(f->d, IOVA, FILE_PAGES * PG), 0);
    close(fd);
}

struct faulter {
    struct iommu_domain *d;
    int bad; /* accesses that did not fail as expected */
};

#define FAULTS_PER_THREAD 200

static void *faulter_main(void *arg)
{
    struct faulter *t = arg;
    uint8_t b[16];

    for (int i = 0; i < FAULTS_PER_THREAD; i++) {
        if (iommu_dma_read(t->d, IOVA + (uint64_t)(i % FILE_PAGES) * PG, b, sizeof(b)) != -EFAULT)
            t->bad++;
    }
    return NULL;
}

static void test_threads_faulting_at_once_each_recover_and_all_are_counted(void **state)
{
    struct fixture *f = *state;
    int fd = backing_open(MEMFD_UNSEALABLE);
    struct faulter t[4];
    pthread_t th[4];

    assert_int_equal(iommu_map_fd(f->d, IOVA, FILE_PAGES * PG, fd, 0, RW), 0);
    assert_int_equal(ftruncate(fd, 0), 0);
    for (int i = 0; i < 4; i++) {
        t[i] = (struct faulter){ .d = f->d };
        assert_int_equal(pthread_create(&th[i], NULL, faulter_main, &t[i]), 0);
    }
    others_still_work(f);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(t[i].bad, 0);
    }
    assert_int_equal(stats_of(f->d).bus_faults, 4 * FAULTS_PER_THREAD);
    close(fd);
}

static void exit_42(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc;
    _exit(42);
}

/* In a child: put `before` in place as the SIGBUS handler, let the iommu
 * install its guard over it (by mapping an unsealable file), then touch a
 * shrunk mapping outside any DMA. Returns the child's wait status. */
static int child_touching_lost_page_outside_dma(const struct sigaction *before)
{
    int status = 0;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        struct iommu_domain *d;
        int fd = memfd_create("iommu-child", MFD_CLOEXEC);
        volatile uint8_t *p;

        if (fd < 0 || ftruncate(fd, PG) != 0 || sigaction(SIGBUS, before, NULL) != 0 ||
            iommu_domain_create(9, &d) != 0 || iommu_map_fd(d, IOVA, PG, fd, 0, RW) != 0)
            _exit(2);
        p = mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED || ftruncate(fd, 0) != 0)
            _exit(3);
        (void)p[0];
        _exit(0); /* survived: the test fails */
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void test_a_sigbus_outside_a_guarded_copy_still_kills_the_process(void **state)
{
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    int status;

    (void)state;
    sigemptyset(&dfl.sa_mask);
    status = child_touching_lost_page_outside_dma(&dfl);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGBUS);
}

static void test_a_sigbus_outside_a_guarded_copy_goes_to_the_previous_handler(void **state)
{
    struct sigaction own = { .sa_sigaction = exit_42, .sa_flags = SA_SIGINFO };
    int status;

    (void)state;
    sigemptyset(&own.sa_mask);
    status = child_touching_lost_page_outside_dma(&own);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 42);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_an_unsealable_memfd_shrunk_to_zero_faults_only_the_dma_that_touches_it),
        T(test_a_regular_file_shrunk_to_zero_faults_only_the_dma_that_touches_it),
        T(test_a_sealable_memfd_is_sealed_against_shrinking_and_keeps_zero_copy),
        T(test_a_memfd_sealed_by_its_owner_counts_as_sealed),
        T(test_a_dma_crossing_into_lost_pages_fails_logs_the_attempt_dirty_and_spares_the_rest),
        T(test_threads_faulting_at_once_each_recover_and_all_are_counted),
        T(test_a_sigbus_outside_a_guarded_copy_still_kills_the_process),
        T(test_a_sigbus_outside_a_guarded_copy_goes_to_the_previous_handler),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
