/* mig_pf_msg: a VF's messages to the PF are taken and answered as the
 * Linux PF driver does; the VF side here is what Linux's qm_ping_pf and
 * qm_vf_read_qos do, register by register. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/common.h"
#include "mig/mig.h"
#include "qm/qm.h"

struct env {
    struct qm_dev *dev;
    struct mig_pf_msg *pf;
};

static void env_irq(void *opaque, unsigned fn, unsigned vector)
{
    struct env *e = opaque;

    if (fn == 0 && vector == QM_VEC_IFC)
        mig_pf_msg_irq(e->pf);
}

static void env_init(struct env *e)
{
    struct qm_dev_config cfg;

    memset(e, 0, sizeof(*e));
    qm_dev_config_default(&cfg);
    cfg.irq.raise = env_irq;
    cfg.irq.opaque = e;
    assert_int_equal(qm_dev_create(&cfg, &e->dev), 0);
    assert_int_equal(mig_pf_msg_create(e->dev, &e->pf), 0);
}

static void env_fini(struct env *e)
{
    mig_pf_msg_destroy(e->pf);
    qm_dev_destroy(e->dev);
}

static uint32_t rd(struct env *e, unsigned fn, uint64_t off)
{
    uint32_t v = 0;

    assert_int_equal(qm_bar_read32(e->dev, fn, off, &v), 0);
    return v;
}

/* Polls (reg & mask) == want for up to 2 s (the driver waits 400 ms). */
static bool poll_for(struct env *e, unsigned fn, uint64_t off, uint32_t mask, uint32_t want)
{
    uint64_t end = am_now_ns() + 2000000000ull;

    while ((rd(e, fn, off) & mask) != want) {
        if (am_now_ns() > end)
            return false;
        nanosleep(&(struct timespec){.tv_nsec = 100000}, NULL);
    }
    return true;
}

static int vf_mailbox(struct env *e, unsigned vf, unsigned cmd, uint64_t base, bool op,
                      uint64_t *data)
{
    struct qm_mailbox m = {
        .w0 = (uint16_t)(cmd | 1u << QM_MB_BUSY_SHIFT | (op ? 1u << QM_MB_OP_SHIFT : 0)),
        .base_l = (uint32_t)base,
        .base_h = (uint32_t)(base >> 32),
    };

    assert_int_equal(qm_bar_write(e->dev, vf, QM_MAILBOX, &m, sizeof(m)), 0);
    assert_true(poll_for(e, vf, QM_MAILBOX, 1u << QM_MB_BUSY_SHIFT, 0));
    if ((rd(e, vf, QM_MAILBOX) >> QM_MB_STATUS_SHIFT) & QM_MB_STATUS_MASK)
        return -EIO;
    if (data)
        *data = rd(e, vf, QM_MB_DATA_L) | (uint64_t)rd(e, vf, QM_MB_DATA_H) << 32;
    return 0;
}

/* qm_ping_pf: leave the message, signal, wait until the PF took it. */
static bool vf_ping_pf(struct env *e, unsigned vf, uint64_t msg)
{
    assert_int_equal(vf_mailbox(e, vf, QM_MB_CMD_SRC, msg, false, NULL), 0);
    assert_int_equal(qm_bar_write32(e->dev, vf, QM_IFC_INT_SET_V, 1), 0);
    return poll_for(e, vf, QM_IFC_INT_SET_V, 1, 0);
}

static void test_a_vf_ping_is_taken_at_once(void **state)
{
    struct env e;
    uint64_t ok, bad;

    (void)state;
    env_init(&e);
    for (unsigned vf = 1; vf <= 4; vf++) {
        assert_true(vf_ping_pf(&e, vf, QM_IFC_VF_PREPARE_DONE));
        assert_true(vf_ping_pf(&e, vf, QM_IFC_VF_START_DONE));
    }
    /* Unknown and failure messages are acked too: the VF never hangs. */
    assert_true(vf_ping_pf(&e, 2, 0x77));
    assert_true(vf_ping_pf(&e, 3, QM_IFC_VF_START_FAIL));
    assert_int_equal(rd(&e, 0, QM_PF_IFC_INT_SOURCE_P), 0);
    mig_pf_msg_stats(e.pf, &ok, &bad);
    assert_int_equal(ok, 10);
    assert_int_equal(bad, 0);
    env_fini(&e);
}

/* qm_vf_read_qos: GET_QOS, then the PF's SET_QOS arrives as a message to
 * the VF, which takes it with DST and acks with IFC_INT_SOURCE_V. */
static void test_get_qos_is_answered_with_the_default_rate(void **state)
{
    struct env e;
    uint64_t msg = 0, ok, bad;

    (void)state;
    env_init(&e);
    assert_true(vf_ping_pf(&e, 1, QM_IFC_VF_GET_QOS));
    assert_true(poll_for(&e, 1, QM_IFC_INT_SOURCE_V, 1, 1));
    assert_int_equal(vf_mailbox(&e, 1, QM_MB_CMD_DST, 0, true, &msg), 0);
    assert_int_equal(msg, QM_IFC_PF_SET_QOS | (uint64_t)100000 << 32);
    assert_int_equal(qm_bar_write32(e.dev, 1, QM_IFC_INT_SOURCE_V, 1), 0);
    assert_true(poll_for(&e, 0, QM_PF_IFC_READY_STATUS, 1u << 1, 0));
    /* The answer went to VF 1 only. */
    assert_int_equal(rd(&e, 2, QM_IFC_INT_SOURCE_V) & 1, 0);
    uint64_t end = am_now_ns() + 2000000000ull;

    do {
        mig_pf_msg_stats(e.pf, &ok, &bad);
    } while (ok < 1 && am_now_ns() < end);
    assert_int_equal(ok, 1);
    assert_int_equal(bad, 0);
    env_fini(&e);
}

/* A VF that asks and never takes the answer costs the PF its 100 ms wait,
 * counted; other VFs are still served afterwards. */
static void test_a_vf_that_never_takes_the_answer_does_not_stop_the_service(void **state)
{
    struct env e;
    uint64_t ok = 0, bad = 0;

    (void)state;
    env_init(&e);
    assert_true(vf_ping_pf(&e, 1, QM_IFC_VF_GET_QOS));
    uint64_t end = am_now_ns() + 5000000000ull;

    while (bad < 1 && am_now_ns() < end) {
        mig_pf_msg_stats(e.pf, &ok, &bad);
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    assert_int_equal(bad, 1);
    assert_true(vf_ping_pf(&e, 2, QM_IFC_VF_PREPARE_DONE));
    env_fini(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_vf_ping_is_taken_at_once),
        cmocka_unit_test(test_get_qos_is_answered_with_the_default_rate),
        cmocka_unit_test(test_a_vf_that_never_takes_the_answer_does_not_stop_the_service),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
