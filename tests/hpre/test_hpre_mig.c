/* Migration of an HPRE VF (issue 14): jobs in flight on two queue types
 * cross a live migration through the VFIO migration driver (mig/mig.h) and
 * complete exactly once, correctly, on the destination; the stream carries
 * the engine, so an HPRE VF's state does not load into a ZIP VF. The guest
 * is the in-test register-level driver of tests/qm with 64-byte SQEs. */
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <string.h>

#include "../qm/qm_tdrv.h"
#include "hpre/hpre_hw.h"
#include "mig/mig.h"
#include "mig/stream.h"

#define T_VF 1u
#define T_JOBS 32u /* even: RSA-2048 private on queue 0, X25519 on queue 1 */

static void hpre_cfg(struct qm_dev_config *c, enum qm_engine_type engine)
{
    qm_dev_config_default(c);
    c->num_vfs = 1;
    c->workers = 2;
    c->engine = engine;
}

static void start_qp(struct tvf *v, unsigned qn, unsigned alg_type)
{
    struct tenv *e = v->env;
    struct tqp *q = &v->qp[qn];
    uint64_t ctx = tmem_alloc(e, T_VF, 64, 32);
    struct qm_sqc sqc = {0};
    struct qm_cqc cqc = {0};

    sqc.base_l = (uint32_t)q->sq;
    sqc.base_h = (uint32_t)(q->sq >> 32);
    sqc.dw3 = (QM_SQ_DEPTH - 1u) | 6u << 12; /* ilog2(64) */
    sqc.cq_num = (uint16_t)qn;
    sqc.w13 = QM_SQC_W13(alg_type);
    memcpy(tmem_ptr(e, T_VF, ctx), &sqc, sizeof(sqc));
    assert_int_equal(tmb(e, v->door, QM_MB_CMD_SQC, (uint16_t)qn, ctx, false, NULL), 0);
    cqc.base_l = (uint32_t)q->cq;
    cqc.base_h = (uint32_t)(q->cq >> 32);
    cqc.dw3 = QM_CQC_DW3(QM_CQ_DEPTH);
    cqc.dw6 = QM_CQC_DW6_PHASE | QM_CQC_DW6_EQ_EN;
    memcpy(tmem_ptr(e, T_VF, ctx), &cqc, sizeof(cqc));
    assert_int_equal(tmb(e, v->door, QM_MB_CMD_CQC, (uint16_t)qn, ctx, false, NULL), 0);
    memset(tmem_ptr(e, T_VF, q->cq), 0, (size_t)QM_CQ_DEPTH * 16);
    q->sq_tail = 0;
    q->cq_head = 0;
    q->cq_phase = true;
    q->cq_depth = QM_CQ_DEPTH;
}

static void submit(struct tvf *v, unsigned qn, const uint32_t sqe[HPRE_SQE_DWORDS])
{
    struct tqp *q = &v->qp[qn];
    uint16_t slot = q->sq_tail;

    memcpy(tmem_ptr(v->env, T_VF, q->sq + (uint64_t)slot * HPRE_SQE_SIZE), sqe, HPRE_SQE_SIZE);
    q->sq_tail = (uint16_t)((slot + 1) % q->depth);
    tvf_ring(v, qn, qm_db_value((uint16_t)qn, QM_DB_CMD_SQ, q->sq_tail, 0));
}

static void sqe_make(uint32_t sqe[HPRE_SQE_DWORDS], unsigned alg, unsigned ksz, uint64_t key,
                     uint64_t in, uint64_t out, uint16_t tag)
{
    memset(sqe, 0, HPRE_SQE_SIZE);
    sqe[0] = alg | HPRE_DONE_SUBMITTED << HPRE_DW0_DONE_SHIFT;
    sqe[1] = ksz / 8u - 1u;
    sqe[HPRE_SQE_KEY_LO] = (uint32_t)key;
    sqe[HPRE_SQE_KEY_LO + 1] = (uint32_t)(key >> 32);
    sqe[HPRE_SQE_IN_LO] = (uint32_t)in;
    sqe[HPRE_SQE_IN_LO + 1] = (uint32_t)(in >> 32);
    sqe[HPRE_SQE_OUT_LO] = (uint32_t)out;
    sqe[HPRE_SQE_OUT_LO + 1] = (uint32_t)(out >> 32);
    sqe[HPRE_SQE_TAG] = tag;
}

struct jobs {
    uint64_t rsa_key, x_key, in, out[T_JOBS];
    uint8_t rsa_expect[256], x_expect[32];
};

/* RSA-2048 private (d | n) with m = c^d mod n known from EVP_PKEY_decrypt;
 * X25519 of RFC 7748 6.1 (Alice's public key, big-endian). */
static void jobs_prepare(struct tenv *e, struct jobs *j)
{
    EVP_PKEY *pk = EVP_RSA_gen(2048);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pk, NULL);
    BIGNUM *n = NULL, *d = NULL;
    uint8_t *in;
    size_t olen = 256;
    static const uint8_t alice_be[32] = {
        0x2a, 0x2c, 0xb9, 0x1d, 0xa5, 0xfb, 0x77, 0xb1, 0x2a, 0x99, 0xc0, 0xeb, 0x87, 0x2f, 0x4c, 0xdf,
        0x45, 0x66, 0xb2, 0x51, 0x72, 0xc1, 0x16, 0x3c, 0x7d, 0xa5, 0x18, 0x73, 0x0a, 0x6d, 0x07, 0x77};
    static const uint8_t alice_pub_be[32] = {
        0x6a, 0x4e, 0x9b, 0xaa, 0x8e, 0xa9, 0xa4, 0xeb, 0xf4, 0x1a, 0x38, 0x26, 0x0d, 0x3a, 0xbf, 0x0d,
        0x5a, 0xf7, 0x3e, 0xb4, 0xdc, 0x7d, 0x8b, 0x74, 0x54, 0xa7, 0x30, 0x89, 0x09, 0xf0, 0x20, 0x85};
    static const uint8_t p25[32] = {
        0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xed};
    uint8_t *xk;

    assert_non_null(pk);
    assert_non_null(c);
    j->rsa_key = tmem_alloc(e, T_VF, 512, 64);
    j->x_key = tmem_alloc(e, T_VF, 128, 64);
    j->in = tmem_alloc(e, T_VF, 512, 64);
    for (unsigned i = 0; i < T_JOBS; i++)
        j->out[i] = tmem_alloc(e, T_VF, 256, 64);
    assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &n), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_D, &d), 1);
    assert_int_equal(BN_bn2binpad(d, tmem_ptr(e, T_VF, j->rsa_key), 256), 256);
    assert_int_equal(BN_bn2binpad(n, (uint8_t *)tmem_ptr(e, T_VF, j->rsa_key) + 256, 256), 256);
    in = tmem_ptr(e, T_VF, j->in);
    for (unsigned i = 0; i < 256; i++)
        in[i] = (uint8_t)(i * 13u + 5u);
    in[0] = 0;
    assert_int_equal(EVP_PKEY_decrypt_init(c), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(c, RSA_NO_PADDING), 1);
    assert_int_equal(EVP_PKEY_decrypt(c, j->rsa_expect, &olen, in, 256), 1);
    assert_int_equal(olen, 256);
    /* X25519 reads u = 9 from in + 256 */
    memset(in + 256, 0, 32);
    in[256 + 31] = 9;
    xk = tmem_ptr(e, T_VF, j->x_key);
    memset(xk, 0, 128);
    memcpy(xk, p25, 32);
    xk[61] = 0x01;
    xk[62] = 0xdb;
    xk[63] = 0x41;
    memcpy(xk + 64, alice_be, 32);
    xk[64] = (uint8_t)((xk[64] & 127) | 64); /* clamp (big-endian) */
    xk[95] &= 248;
    xk[127] = 9;
    memcpy(j->x_expect, alice_pub_be, 32);
    BN_free(n);
    BN_free(d);
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(pk);
}

/* Job i: queue i % 2, slot i / 2, tag i. */
static void jobs_submit(struct tvf *v, const struct jobs *j)
{
    uint32_t sqe[HPRE_SQE_DWORDS];

    for (unsigned i = 0; i < T_JOBS; i++) {
        if (i % 2 == 0)
            sqe_make(sqe, HPRE_ALG_NC_NCRT, 256, j->rsa_key, j->in, j->out[i], (uint16_t)i);
        else
            sqe_make(sqe, HPRE_ALG_CURVE25519_MUL, 32, j->x_key, j->in + 256, j->out[i], (uint16_t)i);
        submit(v, i % 2, sqe);
    }
}

/* Takes completions until `until` are taken in all, checking each. */
static void jobs_take(struct tvf *v, const struct jobs *j, unsigned seen[T_JOBS], unsigned *taken,
                      unsigned until)
{
    uint64_t deadline = am_now_ns() + (uint64_t)T_TIMEOUT_MS * 1000000u;
    uint16_t slot;

    while (*taken < until) {
        bool got = false;

        for (unsigned q = 0; q < 2 && *taken < until; q++) {
            uint32_t back[HPRE_SQE_DWORDS];
            unsigned i;

            if (!tvf_cqe_take(v, q, &slot))
                continue;
            memcpy(back, tmem_ptr(v->env, T_VF, v->qp[q].sq + (uint64_t)slot * HPRE_SQE_SIZE),
                   HPRE_SQE_SIZE);
            i = back[HPRE_SQE_TAG];
            assert_int_equal(i, 2u * slot + q);
            assert_int_equal(back[0] & HPRE_DW0_ETYPE_MASK, 0);
            assert_int_equal(back[0] >> HPRE_DW0_DONE_SHIFT, HPRE_DONE_TASK_DONE);
            if (q == 0)
                assert_memory_equal(tmem_ptr(v->env, T_VF, j->out[i]), j->rsa_expect, 256);
            else
                assert_memory_equal(tmem_ptr(v->env, T_VF, j->out[i]), j->x_expect, 32);
            seen[i]++;
            (*taken)++;
            got = true;
        }
        if (!got) {
            assert_true(am_now_ns() < deadline);
            tsleep_us(100);
        }
    }
}

static size_t read_stream(struct mig_dev *m, uint8_t *buf, size_t cap)
{
    size_t got = 0;

    for (;;) {
        ssize_t n = mig_read(m, buf + got, cap - got);

        if (n == 0)
            return got;
        assert_true(n > 0);
        got += (size_t)n;
        assert_true(got < cap);
    }
}

static void an_hpre_vf_migrated_mid_queue_completes_every_job_once(void **state)
{
    struct qm_dev_config c;
    struct tenv a, b;
    struct tvf v;
    struct jobs j;
    struct mig_dev *ma, *mb;
    static uint8_t stream[MIG_STREAM_MAX + 64];
    unsigned seen[T_JOBS] = {0}, taken = 0;
    size_t len;

    (void)state;
    hpre_cfg(&c, QM_ENGINE_HPRE);
    tenv_init(&a, &c);
    tvf_probe(&a, &v, T_VF);
    start_qp(&v, 0, HPRE_QTYPE_V2);
    start_qp(&v, 1, HPRE_QTYPE_ECC);
    jobs_prepare(&a, &j);
    jobs_submit(&v, &j);
    jobs_take(&v, &j, seen, &taken, 2);

    assert_int_equal(mig_dev_create(a.dev, T_VF, MIG_HW_V4, &ma), 0);
    tenv_init(&b, &c);
    assert_int_equal(mig_dev_create(b.dev, T_VF, MIG_HW_V4, &mb), 0);
    assert_int_equal(mig_set_state(mb, VFIO_MIG_STATE_RESUMING), 0);
    assert_int_equal(mig_set_state(ma, VFIO_MIG_STATE_STOP_COPY), 0);
    len = read_stream(ma, stream, sizeof(stream));
    assert_true(len > 0);
    tmem_adopt(&b, &a, T_VF); /* the guest RAM moved with the source stopped */
    assert_int_equal(mig_write(mb, stream, len), (ssize_t)len);
    assert_int_equal(mig_set_state(mb, VFIO_MIG_STATE_RUNNING), 0);
    v.env = &b; /* the guest runs on: its state lives in its memory */
    jobs_take(&v, &j, seen, &taken, T_JOBS);

    for (unsigned i = 0; i < T_JOBS; i++)
        assert_int_equal(seen[i], 1);
    assert_int_equal(tcounters(&a, T_VF).jobs_done + tcounters(&b, T_VF).jobs_done, T_JOBS);
    assert_int_equal(tcounters(&b, T_VF).jobs_failed, 0);
    print_message("jobs on the source %llu, on the destination %llu, cancelled at the pause %llu\n",
                  (unsigned long long)tcounters(&a, T_VF).jobs_done,
                  (unsigned long long)tcounters(&b, T_VF).jobs_done,
                  (unsigned long long)tcounters(&a, T_VF).jobs_cancelled);

    /* The same stream does not load into a ZIP VF: the engine is part of
     * the stream's identity. */
    {
        struct qm_dev_config zc;
        struct tenv z;
        struct mig_dev *mz;
        ssize_t w;

        hpre_cfg(&zc, QM_ENGINE_ZIP);
        tenv_init(&z, &zc);
        assert_int_equal(mig_dev_create(z.dev, T_VF, MIG_HW_V4, &mz), 0);
        assert_int_equal(mig_set_state(mz, VFIO_MIG_STATE_RESUMING), 0);
        w = mig_write(mz, stream, len);
        assert_true(w < 0 || mig_set_state(mz, VFIO_MIG_STATE_STOP) != 0);
        print_message("ZIP destination refused: %s\n", mig_last_error(mz));
        mig_dev_destroy(mz);
        tenv_fini(&z);
    }

    mig_dev_destroy(mb);
    mig_dev_destroy(ma);
    tenv_fini(&b);
    tenv_fini(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(an_hpre_vf_migrated_mid_queue_completes_every_job_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
