/* Queues: jobs, completions, events, phases, CQ full, EQ overflow, context
 * write-back, STOP_QP drain. */
#include "qm_tdrv.h"

#include <stdlib.h>
#include <string.h>

struct tjob {
    uint64_t src, dst;
    uint32_t len, cap;
};

static struct tjob tjob_new(struct tenv *e, unsigned fn, uint32_t len, unsigned seed)
{
    struct tjob j = {.len = len, .cap = len + len / 8 + 1024};

    j.src = tmem_alloc(e, fn, len, 64);
    j.dst = tmem_alloc(e, fn, j.cap, 64);
    tfill(tmem_ptr(e, fn, j.src), len, seed);
    return j;
}

static void tjob_sqe(const struct tjob *j, uint32_t sqe[ZIP_SQE_DWORDS], uint64_t tag)
{
    tsqe_flat(sqe, ZIP_REQ_DEFLATE, j->src, j->len, j->dst, j->cap, tag);
}

/* The output of a finished compression job inflates back to its input. */
static void tjob_check(struct tvf *v, const struct tjob *j, const uint32_t sqe[ZIP_SQE_DWORDS])
{
    uint8_t *out = malloc(j->len + 1);
    long n;

    assert_non_null(out);
    assert_int_equal(sqe[ZIP_SQE_DW3] & ZIP_DW3_STATUS_MASK, ZIP_ST_OK);
    assert_int_equal(sqe[ZIP_SQE_CONSUMED], j->len);
    n = tinflate_raw(tmem_ptr(v->env, v->fn, j->dst), sqe[ZIP_SQE_PRODUCED], out, j->len + 1);
    assert_int_equal(n, j->len);
    assert_memory_equal(out, tmem_ptr(v->env, v->fn, j->src), j->len);
    free(out);
}

static void test_a_compression_job_completes_with_cqe_eqe_and_msi(void **state)
{
    struct tenv e;
    struct tvf v;
    uint32_t sqe[ZIP_SQE_DWORDS], back[ZIP_SQE_DWORDS];
    uint16_t slot, got, cqn[4];
    unsigned irqs;
    struct tjob j;

    (void)state;
    tenv_init(&e, NULL);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, ZIP_ALG_COMPRESS);
    j = tjob_new(&e, 1, 100000, 1);
    tjob_sqe(&j, sqe, 0x1122334455667788ull);
    irqs = tenv_irqs(&e, 1, QM_VEC_EQ);
    slot = tvf_submit(&v, 0, sqe);
    assert_true(tenv_irq_wait(&e, 1, QM_VEC_EQ, irqs, T_TIMEOUT_MS));
    assert_int_equal(trd32(&e, v.door, QM_EQ_INT_SOURCE) & 1u, 1);
    assert_int_equal(tvf_eq_drain(&v, cqn, 4), 1);
    assert_int_equal(cqn[0], 0);
    assert_int_equal(trd32(&e, v.door, QM_EQ_INT_SOURCE) & 1u, 0);
    assert_true(tvf_cqe_take(&v, 0, &got));
    assert_int_equal(got, slot);
    tvf_sqe(&v, 0, slot, back);
    tjob_check(&v, &j, back);
    /* Only dw0, dw1, dw3 changed. */
    for (unsigned i = 0; i < ZIP_SQE_DWORDS; i++)
        if (i != ZIP_SQE_CONSUMED && i != ZIP_SQE_PRODUCED && i != ZIP_SQE_DW3)
            assert_int_equal(back[i], sqe[i]);
    assert_int_equal(tcounters(&e, 1).jobs_done, 1);
    tenv_fini(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_compression_job_completes_with_cqe_eqe_and_msi),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
