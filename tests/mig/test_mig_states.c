/* The migration object on a real device model: stream semantics per state,
 * resets, refused transitions, streams that must be refused, a slow or stuck
 * mailbox, and the DMA logging feature. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/common.h"
#include "mig_fixture.h"
#include "qm/qm_debug.h"

static const struct tdrv_cfg cfg = {.nqps = 4, .in_len = 2048, .out_len = 4096, .pool = 16};
static struct tdrv drv;

struct fixture {
    struct mig_side a, b;
    uint8_t stream[MIG_STREAM_MAX]; /* a valid stream of a started VF, from a */
    size_t len;
};

/* a: a started VF (driver up, two queues, some jobs done); b: a fresh VF. */
static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    uint64_t size = tdrv_ram_size(&cfg);

    side_create(&f->a, 4, QM_REV_V4, MIG_HW_V4, size);
    side_create(&f->b, 4, QM_REV_V4, MIG_HW_V4, size);
    tdrv_bind(&drv, f->a.dev, 1, f->a.ram, size, &cfg);
    assert_int_equal(tdrv_init(&drv), 0);
    assert_int_equal(tdrv_qp_start(&drv, 0, 0), 0);
    assert_int_equal(tdrv_qp_start(&drv, 1, 1), 0);
    assert_int_equal(tdrv_submit_many(&drv, 2, 8), 0);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(mig_set_state(f->a.mig, VFIO_MIG_STATE_STOP_COPY), 0);
    f->len = side_read_all(&f->a, f->stream, sizeof(f->stream), 0);
    assert_int_equal(f->len, mig_stream_full_len());
    assert_int_equal(mig_set_state(f->a.mig, VFIO_MIG_STATE_RUNNING), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    side_destroy(&f->a);
    side_destroy(&f->b);
    free(f);
    return 0;
}

static void test_reads_and_writes_outside_their_states_fail(void **state)
{
    struct fixture *f = *state;
    struct mig_dev *m = f->b.mig;
    uint8_t buf[16] = {0};

    assert_int_equal(mig_flags(m), VFIO_MIG_FLAGS_ALL);
    assert_int_equal(mig_get_state(m), VFIO_MIG_STATE_RUNNING);
    assert_int_equal(mig_read(m, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(mig_write(m, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_STOP), 0);
    assert_int_equal(mig_read(m, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(mig_write(m, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_STOP_COPY), 0);
    assert_int_equal(mig_write(m, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_RESUMING), 0);
    assert_int_equal(mig_read(m, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(mig_reset(m), 0);
    assert_int_equal(mig_get_state(m), VFIO_MIG_STATE_RUNNING);
}

static void test_precopy_has_a_temporary_end_and_stop_copy_a_permanent_one(void **state)
{
    struct fixture *f = *state;
    struct mig_dev *m = f->a.mig;
    uint8_t buf[MIG_STREAM_MAX];
    uint64_t initial, dirty, size;
    size_t head = MIG_STREAM_HDR_LEN + MIG_REC_HDR_LEN + MIG_MATCH_LEN;

    assert_int_equal(mig_precopy_info(m, &initial, &dirty), -EINVAL); /* RUNNING */
    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_PRE_COPY), 0);
    assert_int_equal(mig_precopy_info(m, &initial, &dirty), 0);
    assert_int_equal(initial, head);
    assert_int_equal(dirty, 0);
    assert_int_equal(mig_read(m, buf, 10), 10);
    assert_int_equal(mig_precopy_info(m, &initial, &dirty), 0);
    assert_int_equal(initial, head - 10);
    assert_int_equal(mig_read(m, buf + 10, sizeof(buf)), (ssize_t)(head - 10));
    assert_int_equal(mig_read(m, buf, sizeof(buf)), -ENOMSG);
    assert_int_equal(mig_read(m, buf, sizeof(buf)), -ENOMSG);
    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_PRE_COPY_P2P), 0);
    assert_int_equal(mig_precopy_info(m, &initial, &dirty), 0);
    assert_int_equal(initial + dirty, 0);
    assert_int_equal(mig_read(m, buf, sizeof(buf)), -ENOMSG);
    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_STOP_COPY), 0);
    assert_int_equal(mig_precopy_info(m, &initial, &dirty), -EINVAL);
    assert_int_equal(mig_data_size(m, &size), 0);
    assert_int_equal(size, f->len);
    assert_int_equal(mig_read(m, buf + head, sizeof(buf)), (ssize_t)(f->len - head));
    assert_int_equal(mig_read(m, buf, sizeof(buf)), 0);
    assert_int_equal(mig_read(m, buf, sizeof(buf)), 0);
    /* The same device state gives the same bytes. */
    assert_memory_equal(buf, f->stream, f->len);
    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_RUNNING), 0);
}

static void test_a_stream_ends_when_its_group_is_left_or_the_device_resets(void **state)
{
    struct fixture *f = *state;
    struct mig_dev *m = f->a.mig;
    uint8_t buf[MIG_STREAM_MAX];

    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_STOP_COPY), 0);
    assert_int_equal(mig_read(m, buf, 16), 16);
    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_STOP), 0);
    assert_int_equal(mig_read(m, buf, 16), -EINVAL);
    /* Entering the group again starts a new stream from byte 0. */
    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_STOP_COPY), 0);
    assert_int_equal(mig_read(m, buf, 4), 4);
    assert_memory_equal(buf, MIG_STREAM_MAGIC, 4);
    assert_int_equal(mig_reset(m), 0);
    assert_int_equal(mig_get_state(m), VFIO_MIG_STATE_RUNNING);
    assert_int_equal(mig_read(m, buf, 16), -EINVAL);
    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_PRE_COPY), 0);
    assert_int_equal(mig_read(m, buf, 4), 4);
    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_RUNNING), 0);
    assert_int_equal(mig_read(m, buf, 16), -EINVAL);
    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_PRE_COPY), 0);
    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_PRE_COPY_P2P), 0);
    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_RUNNING_P2P), 0);
    assert_int_equal(mig_read(m, buf, 16), -EINVAL);
    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_RUNNING), 0);
    /* The reset re-initialised the VF: the guest starts over. */
    tdrv_bind(&drv, f->a.dev, 1, f->a.ram, f->a.ram_size, &cfg);
    assert_int_equal(tdrv_init(&drv), 0);
}

static void test_refused_targets_change_nothing(void **state)
{
    struct fixture *f = *state;
    struct mig_dev *m = f->b.mig;
    uint64_t size;

    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_RUNNING), 0); /* no-op */
    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_ERROR), -EINVAL);
    assert_int_equal(mig_set_state(m, (enum vfio_mig_state)8), -EINVAL);
    assert_int_equal(mig_get_state(m), VFIO_MIG_STATE_RUNNING);
    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_STOP_COPY), 0);
    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_PRE_COPY), -EINVAL);
    assert_int_equal(mig_set_state(m, VFIO_MIG_STATE_PRE_COPY_P2P), -EINVAL);
    assert_int_equal(mig_get_state(m), VFIO_MIG_STATE_STOP_COPY);
    assert_true(strlen(mig_last_error(m)) > 0);
    for (unsigned s = 1; s < VFIO_MIG_STATE_COUNT; s++) {
        if (s == VFIO_MIG_STATE_STOP_COPY)
            continue;
        assert_int_equal(mig_set_state(m, (enum vfio_mig_state)s), 0);
        assert_int_equal(mig_data_size(m, &size), 0);
        assert_true(size > 0);
        assert_int_equal(mig_reset(m), 0);
    }
    assert_int_equal(mig_data_size(m, NULL), -EINVAL);
}

/* Writes a stream into b's RESUMING state and tries RESUMING -> STOP. */
static int resume_with(struct fixture *f, const uint8_t *s, size_t len, size_t piece)
{
    int rc;

    assert_int_equal(mig_reset(f->b.mig), 0);
    assert_int_equal(mig_set_state(f->b.mig, VFIO_MIG_STATE_RESUMING), 0);
    rc = side_write_all(&f->b, s, len, piece);
    if (rc == 0)
        rc = mig_set_state(f->b.mig, VFIO_MIG_STATE_STOP);
    else
        assert_int_equal(mig_set_state(f->b.mig, VFIO_MIG_STATE_STOP), -EINVAL);
    if (rc != 0)
        assert_int_equal(mig_get_state(f->b.mig), VFIO_MIG_STATE_RESUMING);
    return rc;
}

static void test_every_truncated_stream_fails_resuming_and_reset_recovers(void **state)
{
    struct fixture *f = *state;

    for (size_t cut = 0; cut < f->len; cut++) {
        int rc = resume_with(f, f->stream, cut, 0);

        assert_int_equal(rc, -ENODATA);
        assert_non_null(strstr(mig_last_error(f->b.mig), "truncated"));
    }
    assert_int_equal(mig_reset(f->b.mig), 0);
    assert_int_equal(resume_with(f, f->stream, f->len, 0), 0);
    assert_int_equal(mig_get_state(f->b.mig), VFIO_MIG_STATE_STOP);
    assert_int_equal(mig_reset(f->b.mig), 0);
}

static void test_every_corrupted_byte_fails_resuming_with_a_reason(void **state)
{
    struct fixture *f = *state;
    uint8_t bad[MIG_STREAM_MAX];

    for (size_t i = 0; i < f->len; i++) {
        memcpy(bad, f->stream, f->len);
        bad[i] ^= 0x20;
        assert_true(resume_with(f, bad, f->len, 13) < 0);
        assert_true(strlen(mig_last_error(f->b.mig)) > 0);
        /* Later writes fail too: the stream is known bad. */
        assert_int_equal(mig_write(f->b.mig, bad, 1), -EINVAL);
    }
    memcpy(bad, f->stream, f->len);
    bad[100] ^= 1;
    assert_int_equal(resume_with(f, bad, f->len, 0), -EBADMSG);
    assert_non_null(strstr(mig_last_error(f->b.mig), "CRC32C mismatch"));
    assert_int_equal(mig_reset(f->b.mig), 0);
}

static void test_oversized_and_foreign_streams_are_refused_early(void **state)
{
    struct fixture *f = *state;
    uint8_t big[MIG_STREAM_MAX + 1];

    memset(big, 0, sizeof(big));
    memcpy(big, f->stream, f->len);
    assert_int_equal(mig_reset(f->b.mig), 0);
    assert_int_equal(mig_set_state(f->b.mig, VFIO_MIG_STATE_RESUMING), 0);
    assert_int_equal(mig_write(f->b.mig, big, sizeof(big)), -EFBIG);
    assert_non_null(strstr(mig_last_error(f->b.mig), "8192-byte limit"));
    assert_int_equal(mig_set_state(f->b.mig, VFIO_MIG_STATE_STOP), -EINVAL);
    assert_int_equal(mig_reset(f->b.mig), 0);
    assert_int_equal(mig_set_state(f->b.mig, VFIO_MIG_STATE_RESUMING), 0);
    assert_int_equal(mig_write(f->b.mig, "\x7f" "ELF", 4), -EINVAL);
    assert_non_null(strstr(mig_last_error(f->b.mig), "foreign"));
    assert_int_equal(mig_reset(f->b.mig), 0);
    assert_int_equal(mig_get_state(f->b.mig), VFIO_MIG_STATE_RUNNING);
}

static void test_a_slow_mailbox_is_waited_for_and_a_stuck_one_gives_error(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[MIG_STREAM_MAX];

    /* The window's mailbox answers busy for 90 reads: within the budget. */
    assert_int_equal(qm_debug_set_mailbox_delay(f->b.dev, 1, 90), 0);
    assert_int_equal(mig_set_state(f->b.mig, VFIO_MIG_STATE_STOP_COPY), 0);
    assert_true(side_read_all(&f->b, buf, sizeof(buf), 0) > 0);
    assert_int_equal(mig_set_state(f->b.mig, VFIO_MIG_STATE_RUNNING), 0);
    /* Busy far beyond the budget: the device cannot say whether the pause
     * happened, so the state is ERROR and only a reset leaves it. */
    assert_int_equal(qm_debug_set_mailbox_delay(f->b.dev, 1, 100000), 0);
    assert_int_equal(mig_set_state(f->b.mig, VFIO_MIG_STATE_RUNNING_P2P), -ETIMEDOUT);
    assert_int_equal(mig_get_state(f->b.mig), VFIO_MIG_STATE_ERROR);
    assert_int_equal(mig_set_state(f->b.mig, VFIO_MIG_STATE_RUNNING), -EINVAL);
    assert_non_null(strstr(mig_last_error(f->b.mig), "ERROR"));
    assert_int_equal(qm_debug_set_mailbox_delay(f->b.dev, 1, 0), 0);
    /* Let the stuck busy indication run out before the device is reused. */
    for (int i = 0; i < 200000; i++) {
        uint32_t w;

        assert_int_equal(qm_bar_read32(f->b.dev, 0, QM_PF_MIG_WINDOW(1) + QM_MAILBOX, &w), 0);
        if (!(w & (1u << QM_MB_BUSY_SHIFT)))
            break;
    }
    assert_int_equal(mig_reset(f->b.mig), 0);
    assert_int_equal(mig_get_state(f->b.mig), VFIO_MIG_STATE_RUNNING);
    assert_int_equal(mig_set_state(f->b.mig, VFIO_MIG_STATE_STOP), 0);
    assert_int_equal(mig_set_state(f->b.mig, VFIO_MIG_STATE_RUNNING), 0);
}

static void test_creation_checks_its_arguments(void **state)
{
    struct fixture *f = *state;
    struct qm_dev_config c;
    struct qm_dev *v3;
    struct mig_dev *m;

    assert_int_equal(mig_dev_create(f->a.dev, 0, MIG_HW_V4, &m), -EINVAL);
    assert_int_equal(mig_dev_create(f->a.dev, 2, MIG_HW_V4, &m), -EINVAL);
    assert_int_equal(mig_dev_create(f->a.dev, 1, (enum mig_hw_mode)7, &m), -EINVAL);
    assert_int_equal(mig_dev_create(NULL, 1, MIG_HW_V4, &m), -EINVAL);
    qm_dev_config_default(&c);
    c.num_vfs = 1;
    c.revision = QM_REV_V3;
    assert_int_equal(qm_dev_create(&c, &v3), 0);
    /* v3 silicon has no PF windows. */
    assert_int_equal(mig_dev_create(v3, 1, MIG_HW_V4, &m), -ENODEV);
    qm_dev_destroy(v3);
}

static void test_dma_logging_checks_arguments_like_the_kernel(void **state)
{
    struct fixture *f = *state;
    struct mig_dev *m = f->b.mig;
    static struct iommu_range many[257];
    struct iommu_range r[2];
    uint64_t ps = 4096, bitmap[4];

    assert_int_equal(mig_dma_logging_start(m, &ps, NULL, 0, 0), -EINVAL);
    for (unsigned i = 0; i < 257; i++)
        many[i] = (struct iommu_range){(uint64_t)i << 20, 4096};
    assert_int_equal(mig_dma_logging_start(m, &ps, many, 257, 0), -E2BIG);
    r[0] = (struct iommu_range){0x1000, 0x1800};
    assert_int_equal(mig_dma_logging_start(m, &ps, r, 1, 0), -EINVAL); /* unaligned */
    r[0] = (struct iommu_range){0x0, 0x3000};
    r[1] = (struct iommu_range){0x2000, 0x1000};
    assert_int_equal(mig_dma_logging_start(m, &ps, r, 2, 0), -EINVAL); /* overlap */
    r[0] = (struct iommu_range){UINT64_MAX - 0xfff, 0x2000};
    assert_int_equal(mig_dma_logging_start(m, &ps, r, 1, 0), -EOVERFLOW);
    ps = 3000;
    r[0] = (struct iommu_range){0, 0x1000};
    assert_int_equal(mig_dma_logging_start(m, &ps, r, 1, 0), -EINVAL); /* not a power of 2 */
    assert_int_equal(mig_dma_logging_stop(m), -EINVAL);
    assert_int_equal(mig_dma_logging_report(m, 0, 0x1000, 4096, bitmap), -EINVAL);
    /* A page size below 4 KiB is raised and written back. */
    ps = 512;
    r[0] = (struct iommu_range){0x200, 0x200};
    r[1] = (struct iommu_range){0x1000, 0x400};
    assert_int_equal(mig_dma_logging_start(m, &ps, r, 2, 0), 0);
    assert_int_equal(ps, 4096);
    r[0] = (struct iommu_range){0x10000, 0x1000};
    assert_int_equal(mig_dma_logging_start(m, &ps, r, 1, 0), -EBUSY); /* arguments fine */
    assert_int_equal(mig_dma_logging_report(m, 0, 0x2000, 2048, bitmap), -EINVAL);
    assert_int_equal(mig_dma_logging_report(m, 0, 0x2000, 4096, NULL), -EINVAL);
    assert_int_equal(mig_dma_logging_report(m, UINT64_MAX - 0xfff, 0x2000, 4096, bitmap),
                     -EOVERFLOW);
    assert_int_equal(mig_dma_logging_report(m, 0, 0x2000, 4096, bitmap), 0);
    assert_int_equal(mig_dma_logging_stop(m), 0);
    assert_int_equal(mig_dma_logging_stop(m), -EINVAL);
}

static void test_device_writes_are_logged_and_reported_then_cleared(void **state)
{
    struct fixture *f = *state;
    struct mig_dev *m = f->a.mig;
    uint64_t ps = 4096, size = f->a.ram_size, npages = size / 4096;
    uint64_t *bitmap = calloc(am_bitmap_words(npages), sizeof(uint64_t));
    uint64_t big[1];
    struct iommu_range all = {0, size};
    uint64_t cq0 = TDRV_GPA_RINGS + 0x20000, eq = TDRV_GPA_EQ;

    tdrv_bind(&drv, f->a.dev, 1, f->a.ram, size, &cfg);
    assert_int_equal(tdrv_init(&drv), 0);
    assert_int_equal(tdrv_qp_start(&drv, 0, 0), 0);
    assert_int_equal(mig_dma_logging_start(m, &ps, &all, 1, 0), 0);
    assert_int_equal(tdrv_submit_many(&drv, 1, 4), 0);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(mig_dma_logging_report(m, 0, size, 4096, bitmap), 0);
    assert_true(am_bitmap_test(bitmap, cq0 / 4096)); /* CQEs */
    assert_true(am_bitmap_test(bitmap, eq / 4096));  /* EQEs */
    assert_false(am_bitmap_test(bitmap, TDRV_GPA_INPUT / 4096)); /* only read */
    /* Report-and-clear: nothing since. */
    assert_int_equal(mig_dma_logging_report(m, 0, size, 4096, bitmap), 0);
    assert_int_equal(am_bitmap_weight(bitmap, npages), 0);
    /* At a page size covering everything, one bit. */
    assert_int_equal(tdrv_submit_many(&drv, 1, 1), 0);
    assert_int_equal(tdrv_drain(&drv), 0);
    assert_int_equal(mig_dma_logging_report(m, 0, 64ull << 20, 64ull << 20, big), 0);
    assert_int_equal(big[0] & 1u, 1);
    assert_int_equal(tdrv_check_exactly_once(&drv), 0);
    /* A reset stops logging. */
    assert_int_equal(mig_reset(m), 0);
    assert_int_equal(mig_dma_logging_report(m, 0, size, 4096, bitmap), -EINVAL);
    free(bitmap);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_and_writes_outside_their_states_fail),
        cmocka_unit_test(test_precopy_has_a_temporary_end_and_stop_copy_a_permanent_one),
        cmocka_unit_test(test_a_stream_ends_when_its_group_is_left_or_the_device_resets),
        cmocka_unit_test(test_refused_targets_change_nothing),
        cmocka_unit_test(test_every_truncated_stream_fails_resuming_and_reset_recovers),
        cmocka_unit_test(test_every_corrupted_byte_fails_resuming_with_a_reason),
        cmocka_unit_test(test_oversized_and_foreign_streams_are_refused_early),
        cmocka_unit_test(test_a_slow_mailbox_is_waited_for_and_a_stuck_one_gives_error),
        cmocka_unit_test(test_creation_checks_its_arguments),
        cmocka_unit_test(test_dma_logging_checks_arguments_like_the_kernel),
        cmocka_unit_test(test_device_writes_are_logged_and_reported_then_cleared),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
