/* mig_fixture: see mig_fixture.h. */
#include "mig_fixture.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/common.h"

static void side_msi(void *opaque, unsigned fn, unsigned vector)
{
    struct mig_side *s = opaque;

    if (fn == 1 && vector < QM_NUM_VECTORS)
        atomic_fetch_add(&s->msi[vector], 1);
}

void side_create(struct mig_side *s, unsigned qps, uint8_t revision, enum mig_hw_mode mode,
                 uint64_t ram_size)
{
    struct qm_dev_config cfg;

    qm_dev_config_default(&cfg);
    cfg.qps_per_vf = qps;
    cfg.revision = revision;
    side_create_cfg(s, &cfg, mode, ram_size);
}

void side_create_cfg(struct mig_side *s, const struct qm_dev_config *base, enum mig_hw_mode mode,
                     uint64_t ram_size)
{
    struct qm_dev_config cfg = *base;

    memset(s, 0, sizeof(*s));
    cfg.num_vfs = 1;
    cfg.workers = 2;
    cfg.irq.raise = side_msi;
    cfg.irq.opaque = s;
    assert_int_equal(qm_dev_create(&cfg, &s->dev), 0);
    s->ram_size = ram_size;
    s->ram = aligned_alloc(4096, ram_size);
    assert_non_null(s->ram);
    memset(s->ram, 0, ram_size);
    assert_int_equal(tdrv_map(s->dev, 1, s->ram, ram_size), 0);
    assert_int_equal(mig_dev_create(s->dev, 1, mode, &s->mig), 0);
}

void side_destroy(struct mig_side *s)
{
    mig_dev_destroy(s->mig);
    qm_dev_destroy(s->dev);
    free(s->ram);
}

size_t side_read_all(struct mig_side *s, uint8_t *buf, size_t cap, size_t piece)
{
    size_t got = 0;

    for (;;) {
        size_t want = piece == 0 ? cap - got : AM_MIN(piece, cap - got);
        ssize_t n = mig_read(s->mig, buf + got, want);

        if (n == 0 || n == -ENOMSG)
            return got;
        assert_true(n > 0);
        got += (size_t)n;
        assert_true(got < cap);
    }
}

int side_write_all(struct mig_side *s, const uint8_t *buf, size_t len, size_t piece)
{
    for (size_t off = 0; off < len;) {
        size_t n = piece == 0 ? len - off : AM_MIN(piece, len - off);
        ssize_t w = mig_write(s->mig, buf + off, n);

        if (w < 0)
            return (int)w;
        assert_int_equal(w, (ssize_t)n);
        off += n;
    }
    return 0;
}

void migrate(struct mig_side *src, struct mig_side *dst, int precopy, size_t piece,
             uint8_t *stream, size_t *len)
{
    migrate_to_stop(src, dst, precopy, piece, stream, len);
    assert_int_equal(mig_set_state(dst->mig, VFIO_MIG_STATE_RUNNING), 0);
    assert_int_equal(mig_get_state(dst->mig), VFIO_MIG_STATE_RUNNING);
}

void migrate_to_stop(struct mig_side *src, struct mig_side *dst, int precopy, size_t piece,
                     uint8_t *stream, size_t *len)
{
    uint8_t buf[MIG_STREAM_MAX + 64];
    uint64_t initial, dirty;
    size_t head = 0, total;

    assert_int_equal(mig_set_state(dst->mig, VFIO_MIG_STATE_RESUMING), 0);
    if (precopy) {
        assert_int_equal(mig_set_state(src->mig, VFIO_MIG_STATE_PRE_COPY), 0);
        assert_int_equal(mig_precopy_info(src->mig, &initial, &dirty), 0);
        assert_true(initial > 0);
        assert_int_equal(dirty, 0);
        head = side_read_all(src, buf, sizeof(buf), piece);
        assert_int_equal(head, initial);
        assert_int_equal(mig_precopy_info(src->mig, &initial, &dirty), 0);
        assert_int_equal(initial, 0);
        assert_int_equal(side_write_all(dst, buf, head, piece), 0);
    }
    assert_int_equal(mig_set_state(src->mig, VFIO_MIG_STATE_STOP_COPY), 0);
    total = head + side_read_all(src, buf + head, sizeof(buf) - head, piece);
    /* The last RAM pass: the source is stopped, nothing DMAs any more. */
    assert_true(dst->ram_size >= src->ram_size);
    memcpy(dst->ram, src->ram, src->ram_size);
    assert_int_equal(side_write_all(dst, buf + head, total - head, piece), 0);
    assert_int_equal(mig_set_state(dst->mig, VFIO_MIG_STATE_STOP), 0);
    if (stream != NULL) {
        memcpy(stream, buf, total);
        *len = total;
    }
}
