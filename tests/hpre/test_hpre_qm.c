/* Tests of HPRE behind the QM (qm/qm_engine_hpre.c): a device built with
 * the HPRE engine, driven through registers only by the in-test driver
 * (tests/qm/qm_tdrv.h) the way hisi_hpre's VF probe and hisi_qm_start_qp do:
 * 64-byte SQEs (SQC entry size 6), queue type 0 for RSA/DH and 1 for ECC,
 * results read back from dw0 of the SQ slot the CQE names. */
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/core_names.h>
#include <openssl/bn.h>
#include <string.h>

#include "../qm/qm_tdrv.h"
#include "hpre/hpre_hw.h"
#include "qm/qm_engine.h"

#define T_VF 1u

struct fx {
    struct tenv env;
    struct tvf vf;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct qm_dev_config c;

    assert_non_null(f);
    qm_dev_config_default(&c);
    c.num_vfs = 1;
    c.workers = 2;
    c.engine = QM_ENGINE_HPRE;
    tenv_init(&f->env, &c);
    tvf_probe(&f->env, &f->vf, T_VF);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    tenv_fini(&f->env);
    free(f);
    return 0;
}

/* hisi_qm_start_qp's SQC and CQC for a 64-byte SQE (ilog2(64) = 6). esize
 * other than 6 shows what another engine's SQC gets; returns the SQC's
 * mailbox status. */
static int start_qp(struct fx *f, unsigned qn, unsigned alg_type, unsigned esize)
{
    struct tvf *v = &f->vf;
    struct tqp *q = &v->qp[qn];
    uint64_t ctx = tmem_alloc(&f->env, T_VF, 64, 32);
    struct qm_sqc sqc = {0};
    struct qm_cqc cqc = {0};
    int st;

    sqc.base_l = (uint32_t)q->sq;
    sqc.base_h = (uint32_t)(q->sq >> 32);
    sqc.dw3 = (QM_SQ_DEPTH - 1u) | esize << 12;
    sqc.cq_num = (uint16_t)qn;
    sqc.w13 = QM_SQC_W13(alg_type);
    memcpy(tmem_ptr(&f->env, T_VF, ctx), &sqc, sizeof(sqc));
    st = tmb(&f->env, v->door, QM_MB_CMD_SQC, (uint16_t)qn, ctx, false, NULL);
    if (st)
        return st;
    cqc.base_l = (uint32_t)q->cq;
    cqc.base_h = (uint32_t)(q->cq >> 32);
    cqc.dw3 = QM_CQC_DW3(QM_CQ_DEPTH);
    cqc.dw6 = QM_CQC_DW6_PHASE | QM_CQC_DW6_EQ_EN;
    memcpy(tmem_ptr(&f->env, T_VF, ctx), &cqc, sizeof(cqc));
    assert_int_equal(tmb(&f->env, v->door, QM_MB_CMD_CQC, (uint16_t)qn, ctx, false, NULL), 0);
    memset(tmem_ptr(&f->env, T_VF, q->cq), 0, (size_t)QM_CQ_DEPTH * 16);
    q->sq_tail = 0;
    q->cq_head = 0;
    q->cq_phase = true;
    q->cq_depth = QM_CQ_DEPTH;
    return 0;
}

/* hisi_qp_send of a 64-byte SQE, then the completion: returns the SQ
 * slot's dw0 after the CQE (what hpre_alg_res_post_hf reads). */
static uint32_t submit_wait(struct fx *f, unsigned qn, const uint32_t sqe[HPRE_SQE_DWORDS])
{
    struct tvf *v = &f->vf;
    struct tqp *q = &v->qp[qn];
    uint16_t slot = q->sq_tail, done;
    uint32_t back[HPRE_SQE_DWORDS];

    memcpy(tmem_ptr(&f->env, T_VF, q->sq + (uint64_t)slot * HPRE_SQE_SIZE), sqe, HPRE_SQE_SIZE);
    q->sq_tail = (uint16_t)((slot + 1) % q->depth);
    tvf_ring(v, qn, qm_db_value((uint16_t)qn, QM_DB_CMD_SQ, q->sq_tail, 0));
    assert_true(tvf_cqe_wait(v, qn, &done, T_TIMEOUT_MS));
    assert_int_equal(done, slot);
    memcpy(back, tmem_ptr(&f->env, T_VF, q->sq + (uint64_t)slot * HPRE_SQE_SIZE), HPRE_SQE_SIZE);
    /* only dw0 is written back */
    assert_memory_equal(back + 1, sqe + 1, (HPRE_SQE_DWORDS - 1) * sizeof(uint32_t));
    assert_int_equal(back[0] & HPRE_DW0_ALG_MASK, sqe[0] & HPRE_DW0_ALG_MASK);
    return back[0];
}

static unsigned etype(uint32_t dw0)
{
    return (dw0 & HPRE_DW0_ETYPE_MASK) >> HPRE_DW0_ETYPE_SHIFT;
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

static void an_hpre_vf_has_the_hpre_ids_and_capability_registers(void **state)
{
    struct fx *f = *state;
    struct tdoor d = tdoor_vf(T_VF);
    const struct qm_engine *e = qm_dev_engine(f->env.dev);

    assert_non_null(e);
    assert_ptr_equal(e, qm_engine_by_name("hpre"));
    assert_ptr_equal(e, qm_engine_by_vf_device_id(0xa259));
    assert_int_equal(e->pf_device_id, 0xa258);
    assert_int_equal(e->vf_device_id, 0xa259);
    assert_int_equal(e->sqe_size, 64);
    assert_non_null(strstr(qm_engine_names(), "hpre"));
    /* what hpre_pre_store_cap_reg and hpre_algs_register read */
    assert_int_equal(trd32(&f->env, d, QM_CAP_VERSION) & 0xffu, 1);
    assert_int_equal(trd32(&f->env, d, HPRE_CAP_DRV_ALG_BITMAP), 0x27);
    assert_int_equal(trd32(&f->env, d, HPRE_CAP_DEV_ALG_BITMAP), 0x27);
    assert_true(((trd32(&f->env, d, HPRE_CAP_CLUSTER_CORE) >> 20) & 0xfu) <= 4);
    assert_int_equal((trd32(&f->env, d, HPRE_CAP_CLUSTER_CORE) >> 20) & 0xfu, 1);
    assert_int_equal(trd32(&f->env, d, HPRE_CAP_CORE_ENABLE), 0x3ff);
    assert_int_equal(trd32(&f->env, d, HPRE_CAP_QM_NFE_MASK), 0x7c37);
    assert_int_equal(trd32(&f->env, d, HPRE_CAP_CE_MASK), 0x1);
    assert_int_equal(trd32(&f->env, d, HPRE_CAP_CORE10_ALG_BITMAP), 0x10);
}

static void a_zip_sized_sqc_does_not_load_on_an_hpre_vf(void **state)
{
    struct fx *f = *state;

    assert_int_not_equal(start_qp(f, 0, HPRE_QTYPE_V2, 7), 0);
    assert_int_equal(start_qp(f, 0, HPRE_QTYPE_V2, 6), 0);
}

static void rsa_and_x25519_jobs_complete_through_the_queues(void **state)
{
    struct fx *f = *state;
    EVP_PKEY *pk = EVP_RSA_gen(1024);
    BIGNUM *n = NULL, *e = NULL;
    uint64_t key = tmem_alloc(&f->env, T_VF, 4096, 64), in = tmem_alloc(&f->env, T_VF, 4096, 64);
    uint64_t out = tmem_alloc(&f->env, T_VF, 4096, 64);
    uint8_t *kp = tmem_ptr(&f->env, T_VF, key), *ip = tmem_ptr(&f->env, T_VF, in);
    uint8_t *op = tmem_ptr(&f->env, T_VF, out), expect[128];
    uint32_t sqe[HPRE_SQE_DWORDS], dw0;
    EVP_PKEY_CTX *c;
    size_t olen = 128;

    assert_int_equal(start_qp(f, 0, HPRE_QTYPE_V2, 6), 0);
    assert_int_equal(start_qp(f, 1, HPRE_QTYPE_ECC, 6), 0);

    /* RSA 1024 public on the V2 queue, against EVP_PKEY_encrypt (no padding) */
    assert_non_null(pk);
    assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &n), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &e), 1);
    assert_int_equal(BN_bn2binpad(e, kp, 128), 128);
    assert_int_equal(BN_bn2binpad(n, kp + 128, 128), 128);
    for (unsigned i = 0; i < 128; i++)
        ip[i] = (uint8_t)(i * 7u + 1u);
    ip[0] = 0;
    c = EVP_PKEY_CTX_new(pk, NULL);
    assert_int_equal(EVP_PKEY_encrypt_init(c), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(c, RSA_NO_PADDING), 1);
    assert_int_equal(EVP_PKEY_encrypt(c, expect, &olen, ip, 128), 1);
    sqe_make(sqe, HPRE_ALG_NC_NCRT, 128, key, in, out, 11);
    dw0 = submit_wait(f, 0, sqe);
    assert_int_equal(etype(dw0), HPRE_ET_OK);
    assert_int_equal(dw0 >> HPRE_DW0_DONE_SHIFT, HPRE_DONE_TASK_DONE);
    assert_memory_equal(op, expect, 128);

    /* X25519 (RFC 7748 6.1, Alice's public key) on the ECC queue */
    static const uint8_t p25[32] = {
        0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xed};
    static const uint8_t alice_le[32] = {
        0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2, 0x66, 0x45,
        0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5, 0x1d, 0xb9, 0x2c, 0x2a};
    static const uint8_t alice_pub_le[32] = {
        0x85, 0x20, 0xf0, 0x09, 0x89, 0x30, 0xa7, 0x54, 0x74, 0x8b, 0x7d, 0xdc, 0xb4, 0x3e, 0xf7, 0x5a,
        0x0d, 0xbf, 0x3a, 0x0d, 0x26, 0x38, 0x1a, 0xf4, 0xeb, 0xa4, 0xa9, 0x8e, 0xaa, 0x9b, 0x4e, 0x6a};
    memset(kp, 0, 128);
    memcpy(kp, p25, 32);
    kp[61] = 0x01;
    kp[62] = 0xdb;
    kp[63] = 0x41;
    for (unsigned i = 0; i < 32; i++)
        kp[64 + i] = alice_le[31 - i];
    kp[64 + 31] &= 248; /* clamp, big-endian: byte 31 is the low byte */
    kp[64] = (uint8_t)((kp[64] & 127) | 64);
    kp[127] = 9;
    memset(ip, 0, 32);
    ip[31] = 9;
    sqe_make(sqe, HPRE_ALG_CURVE25519_MUL, 32, key, in, out, 12);
    dw0 = submit_wait(f, 1, sqe);
    assert_int_equal(etype(dw0), HPRE_ET_OK);
    for (unsigned i = 0; i < 32; i++)
        assert_int_equal(op[i], alice_pub_le[31 - i]);

    BN_free(n);
    BN_free(e);
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(pk);
}

static void malformed_jobs_complete_with_an_etype_and_the_queue_goes_on(void **state)
{
    struct fx *f = *state;
    uint64_t key = tmem_alloc(&f->env, T_VF, 4096, 64), in = tmem_alloc(&f->env, T_VF, 4096, 64);
    uint64_t out = tmem_alloc(&f->env, T_VF, 4096, 64);
    uint8_t *kp = tmem_ptr(&f->env, T_VF, key), *ip = tmem_ptr(&f->env, T_VF, in);
    uint8_t *op = tmem_ptr(&f->env, T_VF, out);
    uint32_t sqe[HPRE_SQE_DWORDS];
    struct qm_fn_counters before = tcounters(&f->env, T_VF), after;

    assert_int_equal(start_qp(f, 0, HPRE_QTYPE_V2, 6), 0);
    assert_int_equal(start_qp(f, 1, 2, 6), 0); /* a queue type HPRE does not have */
    /* DH with g = 2 over p = 23 padded to 96 bytes: 2^5 mod 23 = 9 */
    memset(kp, 0, 192);
    kp[95] = 5;
    kp[191] = 23;
    memset(ip, 0, 96);
    ip[95] = 2;

    sqe_make(sqe, 0x7, 96, key, in, out, 1);                      /* no such alg */
    assert_int_equal(etype(submit_wait(f, 0, sqe)), HPRE_ET_BAD_ALG);
    sqe_make(sqe, HPRE_ALG_DH, 64, key, in, out, 2);              /* 512-bit DH */
    assert_int_equal(etype(submit_wait(f, 0, sqe)), HPRE_ET_BAD_LEN);
    sqe_make(sqe, HPRE_ALG_DH, 96, 0x7000000000ull, in, out, 3); /* key unmapped */
    assert_int_equal(etype(submit_wait(f, 0, sqe)), HPRE_ET_DMA_FAULT);
    sqe_make(sqe, HPRE_ALG_ECC_MUL, 32, key, in, out, 4);         /* ECC on the V2 queue */
    assert_int_equal(etype(submit_wait(f, 0, sqe)), HPRE_ET_BAD_ALG);
    sqe_make(sqe, HPRE_ALG_DH, 96, key, in, out, 5);              /* on the type-2 queue */
    assert_int_equal(etype(submit_wait(f, 1, sqe)), HPRE_ET_BAD_ALG);
    for (unsigned i = 0; i < 96; i++)
        assert_int_equal(op[i], 0);
    sqe_make(sqe, HPRE_ALG_DH, 96, key, in, out, 6);              /* and a good one */
    assert_int_equal(etype(submit_wait(f, 0, sqe)), HPRE_ET_OK);
    assert_int_equal(op[95], 9);
    sqe_make(sqe, HPRE_ALG_DH_G2, 96, key, ~0ull, out, 7);        /* DH_G2 does not read in */
    op[95] = 0;
    assert_int_equal(etype(submit_wait(f, 0, sqe)), HPRE_ET_OK);
    assert_int_equal(op[95], 9);

    assert_true(twait_jobs_done(&f->env, T_VF, before.jobs_done + 7, T_TIMEOUT_MS));
    after = tcounters(&f->env, T_VF);
    assert_int_equal(after.jobs_done - before.jobs_done, 7);
    assert_int_equal(after.jobs_failed - before.jobs_failed, 5);
    assert_int_equal(after.jobs_dma_fault - before.jobs_dma_fault, 1);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(an_hpre_vf_has_the_hpre_ids_and_capability_registers),
        T(a_zip_sized_sqc_does_not_load_on_an_hpre_vf),
        T(rsa_and_x25519_jobs_complete_through_the_queues),
        T(malformed_jobs_complete_with_an_etype_and_the_queue_goes_on),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
