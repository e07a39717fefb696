/* The SEC engine behind the QM (qm_dev_config.engine = SEC): what a SEC
 * VF's driver reads (capability registers, PCI device id), a BD through a
 * queue with only dw28 written back, and the migration stream's identity:
 * a SEC VF's stream is refused by a ZIP destination before downtime. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "mig/mig.h"
#include "mig/stream.h"
#include "qm/qm_debug.h"
#include "qm/qm_engine.h"
#include "qm_tdrv.h"
#include "sec/sec.h"
#include "vfu/vfu_pci.h"

static void sec_config(struct qm_dev_config *c, enum qm_engine_type engine)
{
    qm_dev_config_default(c);
    c->num_vfs = 2;
    c->qps_per_vf = 4;
    c->workers = 2;
    c->engine = engine;
}

/* The bitmaps hisi_sec2 reads through sec_basic_info (cap_ver 1), and ZIP's
 * on a ZIP device: each VF sees its own engine's table. */
static void test_a_sec_vf_reads_the_sec_capabilities_and_a_zip_vf_the_zip_ones(void **state)
{
    struct qm_dev_config c;
    struct tenv e;
    (void)state;

    sec_config(&c, QM_ENGINE_SEC);
    tenv_init(&e, &c);
    assert_int_equal(qm_dev_engine(e.dev)->vf_device_id, QM_SEC_VF_DEVICE_ID);
    assert_int_equal(trd32(&e, tdoor_vf(1), 0x3144), 0x018000ffu); /* DRV_ALG low */
    assert_int_equal(trd32(&e, tdoor_vf(1), 0x3148), 0x00003800u); /* DRV_ALG high */
    assert_int_equal(trd32(&e, tdoor_vf(2), 0x314c), 0x018000ffu); /* DEV_ALG low */
    assert_int_equal(trd32(&e, tdoor_vf(1), 0x3170), 0x3fffu);     /* CORE4_ALG high */
    assert_int_equal(trd32(&e, tdoor_vf(1), 0x313c), 0x00110404u);
    assert_int_equal(trd32(&e, tdoor_vf(1), 0x3178), 0);            /* defined by none */
    assert_int_equal(trd32(&e, tdoor_vf(1), QM_CAP_SQ_CQ_DEPTH),
                     QM_CQ_DEPTH << 16 | QM_SQ_DEPTH);              /* the QM's own */
    tenv_fini(&e);

    sec_config(&c, QM_ENGINE_ZIP);
    tenv_init(&e, &c);
    assert_int_equal(trd32(&e, tdoor_vf(1), ZIP_CAP_DRV_ALG_BITMAP), 0x3f);
    assert_int_equal(trd32(&e, tdoor_vf(1), 0x3170), 0);
    tenv_fini(&e);

    /* An engine that does not exist is a bad config. */
    sec_config(&c, QM_ENGINE_COUNT);
    struct qm_dev *d = NULL;
    assert_int_equal(qm_dev_create(&c, &d), -EINVAL);
}

static void test_engines_are_found_by_name_and_vf_id(void **state)
{
    (void)state;
    assert_ptr_equal(qm_engine_by_name("sec"), qm_engine_get(QM_ENGINE_SEC));
    assert_ptr_equal(qm_engine_by_name("zip"), qm_engine_get(QM_ENGINE_ZIP));
    assert_null(qm_engine_by_name("ZIP"));
    assert_null(qm_engine_by_name(NULL));
    assert_ptr_equal(qm_engine_by_vf_device_id(0xa256), qm_engine_get(QM_ENGINE_SEC));
    assert_ptr_equal(qm_engine_by_vf_device_id(0xa251), qm_engine_get(QM_ENGINE_ZIP));
    assert_null(qm_engine_by_vf_device_id(0xa250)); /* a PF id is no VF's */
    assert_int_equal(qm_engine_get(QM_ENGINE_SEC)->pf_device_id, 0xa255);
    assert_non_null(strstr(qm_engine_names(), "sec"));
}

/* Config space: the engine's VF id, kept across an FLR's reset. */
static void test_config_space_carries_the_engines_device_id(void **state)
{
    struct vfu_pci_cfg cfg;
    uint16_t id = 0, sub = 0;
    (void)state;

    vfu_pci_cfg_init(&cfg, QM_REV_V4, QM_VF_BAR2_SIZE, 0, NULL, NULL);
    assert_int_equal(vfu_pci_cfg_read(&cfg, 2, &id, 2), 0);
    assert_int_equal(id, QM_ZIP_VF_DEVICE_ID);
    vfu_pci_cfg_set_device_id(&cfg, QM_SEC_VF_DEVICE_ID);
    vfu_pci_cfg_reset(&cfg);
    assert_int_equal(vfu_pci_cfg_read(&cfg, 2, &id, 2), 0);
    assert_int_equal(vfu_pci_cfg_read(&cfg, 0x2e, &sub, 2), 0);
    assert_int_equal(id, QM_SEC_VF_DEVICE_ID);
    assert_int_equal(sub, QM_SEC_VF_DEVICE_ID);
    /* Read-only. */
    id = 0x1234;
    assert_int_equal(vfu_pci_cfg_write(&cfg, 2, &id, 2), 0);
    assert_int_equal(vfu_pci_cfg_read(&cfg, 2, &id, 2), 0);
    assert_int_equal(id, QM_SEC_VF_DEVICE_ID);
}

static void put64(uint32_t *bd, unsigned lo, uint64_t v)
{
    bd[lo] = (uint32_t)v;
    bd[lo + 1] = (uint32_t)(v >> 32);
}

/* An encrypting cbc(aes)-256 BD, flat buffers. */
static void cbc_bd(uint32_t *bd, uint32_t len, uint64_t src, uint64_t dst, uint64_t k,
                   uint64_t ivp)
{
    memset(bd, 0, SEC_SQE_SIZE);
    bd[SEC_DW_BD_PARAM] = SEC_BD_TYPE3 | 1u << SEC_BD_DE_SHIFT;
    bd[SEC_DW_CIPHER] = SEC_DIR_ENC | 2u << SEC_CKEY_LEN_SHIFT | SEC_MODE_CBC << SEC_CMODE_SHIFT |
                        SEC_ALG_AES << SEC_CALG_SHIFT;
    bd[SEC_DW_AUTH] = 2u << 25;
    bd[SEC_DW_CIPHER_LEN] = len;
    put64(bd, SEC_DW_TAG_L, UINT64_C(0xffff888812345678));
    put64(bd, SEC_DW_SRC_L, src);
    put64(bd, SEC_DW_DST_L, dst);
    put64(bd, SEC_DW_CKEY_L, k);
    put64(bd, SEC_DW_CIV_L, ivp);
}

/* A cbc(aes) BD through queue 0 of VF 1: the CQE comes, the slot's dw28 is
 * the engine's result and no other dword of the slot changed; the
 * ciphertext is libcrypto's. A queue with alg_type 1 gets the bad-BD
 * status for the same BD. */
static void test_a_sec_bd_through_a_queue_writes_back_only_dw28(void **state)
{
    struct qm_dev_config c;
    struct tenv e;
    struct tvf v;
    uint8_t key[32], iv[16], pt[4096], want[4096];
    uint32_t bd[SEC_SQE_DWORDS], back[SEC_SQE_DWORDS];
    uint64_t src, dst, k, ivp;
    uint16_t slot, done;
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int n = 0;
    (void)state;

    sec_config(&c, QM_ENGINE_SEC);
    tenv_init(&e, &c);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, 0);
    tvf_start_qp(&v, 1, 1);
    assert_int_equal(RAND_bytes(key, 32), 1);
    assert_int_equal(RAND_bytes(iv, 16), 1);
    assert_int_equal(RAND_bytes(pt, sizeof(pt)), 1);
    assert_int_equal(EVP_EncryptInit_ex(x, EVP_aes_256_cbc(), NULL, key, iv), 1);
    EVP_CIPHER_CTX_set_padding(x, 0);
    assert_int_equal(EVP_EncryptUpdate(x, want, &n, pt, sizeof(pt)), 1);
    EVP_CIPHER_CTX_free(x);

    src = tmem_alloc(&e, 1, sizeof(pt), 64);
    dst = tmem_alloc(&e, 1, sizeof(pt), 64);
    k = tmem_alloc(&e, 1, 64, 64);
    ivp = tmem_alloc(&e, 1, 64, 64);
    memcpy(tmem_ptr(&e, 1, src), pt, sizeof(pt));
    memcpy(tmem_ptr(&e, 1, k), key, 32);
    memcpy(tmem_ptr(&e, 1, ivp), iv, 16);
    cbc_bd(bd, sizeof(pt), src, dst, k, ivp);
    bd[SEC_DW_DONE] = 0xdead0000u; /* the engine's field: overwritten */
    bd[31] = 0x5a5a5a5au;          /* another dword: kept */

    slot = tvf_submit(&v, 0, bd);
    assert_true(tvf_cqe_wait(&v, 0, &done, T_TIMEOUT_MS));
    assert_int_equal(done, slot);
    tvf_sqe(&v, 0, slot, back);
    assert_true(sec_bd_ok(back));
    assert_int_equal(sec_bd_flag(back), SEC_FLAG_CIPHER);
    for (unsigned i = 0; i < SEC_SQE_DWORDS; i++)
        if (i != SEC_DW_DONE)
            assert_int_equal(back[i], bd[i]);
    assert_memory_equal(tmem_ptr(&e, 1, dst), want, sizeof(pt));

    slot = tvf_submit(&v, 1, bd);
    assert_true(tvf_cqe_wait(&v, 1, &done, T_TIMEOUT_MS));
    tvf_sqe(&v, 1, slot, back);
    assert_int_equal(sec_bd_error(back), SEC_E_BAD_BD);
    assert_int_equal(tcounters(&e, 1).jobs_failed, 1);
    tenv_fini(&e);
}

/* An in-place job (source = destination, as hisi_sec2 sends for in-place
 * requests) revoked by PAUSE_QM after its engine finished, before its
 * commit: it is not run again on input it already overwrote (its output
 * was held for the commit, which never came). Its worker is frozen there;
 * after RESUME the other worker runs it again, and the buffer must hold
 * libcrypto's ciphertext of the original plaintext, with one CQE. Before
 * the held writes, the output had landed and the second run enciphered
 * it again. */
static void test_an_in_place_job_paused_mid_output_is_not_run_again_on_its_own_output(void **state)
{
    enum { LEN = 2 * QM_ENGINE_WRITE_MAX };
    struct qm_dev_config c;
    struct tenv e;
    struct tvf v;
    uint8_t key[32], iv[16], *pt = malloc(LEN), *want = malloc(LEN);
    uint32_t bd[SEC_SQE_DWORDS], back[SEC_SQE_DWORDS];
    uint64_t buf, k, ivp;
    uint16_t done;
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int n = 0;
    (void)state;

    assert_non_null(pt);
    assert_non_null(want);
    assert_int_equal(RAND_bytes(key, 32), 1);
    assert_int_equal(RAND_bytes(iv, 16), 1);
    assert_int_equal(RAND_bytes(pt, LEN), 1);
    assert_int_equal(EVP_EncryptInit_ex(x, EVP_aes_256_cbc(), NULL, key, iv), 1);
    EVP_CIPHER_CTX_set_padding(x, 0);
    assert_int_equal(EVP_EncryptUpdate(x, want, &n, pt, LEN), 1);
    EVP_CIPHER_CTX_free(x);

    sec_config(&c, QM_ENGINE_SEC);
    tenv_init(&e, &c);
    tvf_probe(&e, &v, 1);
    tvf_start_qp(&v, 0, 0);
    buf = tmem_alloc(&e, 1, LEN, 4096);
    k = tmem_alloc(&e, 1, 64, 64);
    ivp = tmem_alloc(&e, 1, 64, 64);
    memcpy(tmem_ptr(&e, 1, buf), pt, LEN);
    memcpy(tmem_ptr(&e, 1, k), key, 32);
    memcpy(tmem_ptr(&e, 1, ivp), iv, 16);
    cbc_bd(bd, LEN, buf, buf, k, ivp);

    assert_int_equal(qm_debug_freeze_arm(e.dev, QM_FREEZE_BEFORE_COMMIT), 0);
    tvf_submit(&v, 0, bd);
    assert_int_equal(qm_debug_freeze_wait(e.dev, T_TIMEOUT_MS), 0);
    assert_memory_equal(tmem_ptr(&e, 1, buf), pt, LEN); /* nothing landed yet */
    assert_int_equal(tmb(&e, tdoor_window(1), QM_MB_CMD_PAUSE_QM, 0, 0, false, NULL), 0);
    assert_int_equal(tmb(&e, tdoor_window(1), QM_MB_CMD_RESUME_QM, 0, 0, false, NULL), 0);
    assert_true(tvf_cqe_wait(&v, 0, &done, T_TIMEOUT_MS));
    assert_int_equal(done, 0);
    tvf_sqe(&v, 0, done, back);
    assert_true(sec_bd_ok(back));
    assert_memory_equal(tmem_ptr(&e, 1, buf), want, LEN);
    assert_int_equal(qm_debug_freeze_release(e.dev, T_TIMEOUT_MS), 0);
    assert_false(tvf_cqe_take(&v, 0, &done));
    assert_int_equal(tcounters(&e, 1).jobs_done, 1);
    assert_memory_equal(tmem_ptr(&e, 1, buf), want, LEN);
    tenv_fini(&e);
    free(pt);
    free(want);
}

/* A device's VF 1 with its migration driver. */
struct side {
    struct qm_dev *dev;
    struct mig_dev *mig;
};

static void side_up(struct side *s, enum qm_engine_type engine)
{
    struct qm_dev_config c;

    sec_config(&c, engine);
    c.num_vfs = 1;
    assert_int_equal(qm_dev_create(&c, &s->dev), 0);
    assert_int_equal(mig_dev_create(s->dev, 1, MIG_HW_V4, &s->mig), 0);
}

static void side_down(struct side *s)
{
    mig_dev_destroy(s->mig);
    qm_dev_destroy(s->dev);
}

static size_t read_head(struct side *s, uint8_t *buf, size_t cap)
{
    size_t got = 0;

    for (;;) {
        ssize_t n = mig_read(s->mig, buf + got, cap - got);

        if (n == 0 || n == -ENOMSG)
            return got;
        assert_true(n > 0);
        got += (size_t)n;
        assert_true(got < cap);
    }
}

/* The MATCH record's device id names the engine: a SEC VF's PRE_COPY head
 * is refused by a ZIP destination at once (the source never stopped and
 * goes back to running), and taken by a SEC destination. */
static void test_a_sec_stream_is_refused_by_a_zip_destination_before_downtime(void **state)
{
    static uint8_t head[MIG_STREAM_MAX];
    struct side src, zip, sec;
    size_t n;
    (void)state;

    side_up(&src, QM_ENGINE_SEC);
    side_up(&zip, QM_ENGINE_ZIP);
    side_up(&sec, QM_ENGINE_SEC);
    assert_int_equal(mig_set_state(src.mig, VFIO_MIG_STATE_PRE_COPY), 0);
    n = read_head(&src, head, sizeof(head));
    assert_true(n >= 40);

    assert_int_equal(mig_set_state(zip.mig, VFIO_MIG_STATE_RESUMING), 0);
    assert_int_equal(mig_write(zip.mig, head, n), -EINVAL);
    assert_non_null(strstr(mig_last_error(zip.mig), "device id: source 0xa256, destination 0xa251"));
    assert_int_equal(mig_get_state(zip.mig), VFIO_MIG_STATE_RESUMING);

    assert_int_equal(mig_set_state(sec.mig, VFIO_MIG_STATE_RESUMING), 0);
    assert_int_equal(mig_write(sec.mig, head, n), (ssize_t)n);

    assert_int_equal(mig_get_state(src.mig), VFIO_MIG_STATE_PRE_COPY);
    assert_int_equal(mig_set_state(src.mig, VFIO_MIG_STATE_RUNNING), 0);
    side_down(&sec);
    side_down(&zip);
    side_down(&src);
}

/* A cbc(aes)-256 encryption of len bytes at src into dst of fn's memory;
 * returns libcrypto's answer in want. */
struct cbc_job {
    uint64_t src, dst, key, iv;
    uint32_t len;
    uint8_t want[8192];
};

static void cbc_job_new(struct tenv *e, unsigned fn, struct cbc_job *j, uint32_t len)
{
    uint8_t key[32], iv[16], *pt;
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int n = 0;

    assert_true(len <= sizeof(j->want) && len % 16 == 0);
    j->len = len;
    j->src = tmem_alloc(e, fn, len, 64);
    j->dst = tmem_alloc(e, fn, len, 64);
    j->key = tmem_alloc(e, fn, 64, 64);
    j->iv = tmem_alloc(e, fn, 64, 64);
    pt = tmem_ptr(e, fn, j->src);
    assert_int_equal(RAND_bytes(key, 32), 1);
    assert_int_equal(RAND_bytes(iv, 16), 1);
    assert_int_equal(RAND_bytes(pt, (int)len), 1);
    memcpy(tmem_ptr(e, fn, j->key), key, 32);
    memcpy(tmem_ptr(e, fn, j->iv), iv, 16);
    assert_int_equal(EVP_EncryptInit_ex(x, EVP_aes_256_cbc(), NULL, key, iv), 1);
    EVP_CIPHER_CTX_set_padding(x, 0);
    assert_int_equal(EVP_EncryptUpdate(x, j->want, &n, pt, (int)len), 1);
    EVP_CIPHER_CTX_free(x);
}

static void cbc_job_bd(const struct cbc_job *j, uint32_t *bd)
{
    memset(bd, 0, SEC_SQE_SIZE);
    bd[SEC_DW_BD_PARAM] = SEC_BD_TYPE3 | 1u << SEC_BD_DE_SHIFT;
    bd[SEC_DW_CIPHER] = SEC_DIR_ENC | 2u << SEC_CKEY_LEN_SHIFT | SEC_MODE_CBC << SEC_CMODE_SHIFT |
                        SEC_ALG_AES << SEC_CALG_SHIFT;
    bd[SEC_DW_CIPHER_LEN] = j->len;
    put64(bd, SEC_DW_SRC_L, j->src);
    put64(bd, SEC_DW_DST_L, j->dst);
    put64(bd, SEC_DW_CKEY_L, j->key);
    put64(bd, SEC_DW_CIV_L, j->iv);
}

/* A started SEC VF with finished jobs migrates to another SEC device (the
 * guest memory moves with it): the destination's queue takes the next BD
 * where the source's left off and computes it. */
static void test_a_started_sec_vf_migrates_and_its_queue_works_on_the_destination(void **state)
{
    static uint8_t stream[MIG_STREAM_MAX];
    static struct cbc_job j1, j2;
    struct qm_dev_config c;
    struct tenv src, dst;
    struct mig_dev *ms, *md;
    struct tvf v;
    uint32_t bd[SEC_SQE_DWORDS], back[SEC_SQE_DWORDS];
    uint16_t slot, done;
    size_t n = 0;
    (void)state;

    sec_config(&c, QM_ENGINE_SEC);
    c.num_vfs = 1;
    tenv_init(&src, &c);
    tenv_init(&dst, &c);
    assert_int_equal(mig_dev_create(src.dev, 1, MIG_HW_V4, &ms), 0);
    assert_int_equal(mig_dev_create(dst.dev, 1, MIG_HW_V4, &md), 0);
    tvf_probe(&src, &v, 1);
    tvf_start_qp(&v, 0, 0);
    cbc_job_new(&src, 1, &j1, 4096);
    cbc_job_new(&src, 1, &j2, 8192);
    cbc_job_bd(&j1, bd);
    slot = tvf_submit(&v, 0, bd);
    assert_true(tvf_cqe_wait(&v, 0, &done, T_TIMEOUT_MS));
    assert_int_equal(done, slot);
    assert_memory_equal(tmem_ptr(&src, 1, j1.dst), j1.want, j1.len);

    assert_int_equal(mig_set_state(ms, VFIO_MIG_STATE_STOP_COPY), 0);
    for (;;) {
        ssize_t r = mig_read(ms, stream + n, sizeof(stream) - n);

        if (r == 0)
            break;
        assert_true(r > 0);
        n += (size_t)r;
    }
    tmem_adopt(&dst, &src, 1);
    assert_int_equal(mig_set_state(md, VFIO_MIG_STATE_RESUMING), 0);
    assert_int_equal(mig_write(md, stream, n), (ssize_t)n);
    assert_int_equal(mig_set_state(md, VFIO_MIG_STATE_RUNNING), 0);

    v.env = &dst;
    cbc_job_bd(&j2, bd);
    slot = tvf_submit(&v, 0, bd);
    assert_true(tvf_cqe_wait(&v, 0, &done, T_TIMEOUT_MS));
    assert_int_equal(done, slot);
    tvf_sqe(&v, 0, slot, back);
    assert_true(sec_bd_ok(back));
    assert_memory_equal(tmem_ptr(&dst, 1, j2.dst), j2.want, j2.len);
    assert_int_equal(tcounters(&dst, 1).jobs_done, 1);

    mig_dev_destroy(md);
    mig_dev_destroy(ms);
    tenv_fini(&dst);
    tenv_fini(&src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_sec_vf_reads_the_sec_capabilities_and_a_zip_vf_the_zip_ones),
        cmocka_unit_test(test_engines_are_found_by_name_and_vf_id),
        cmocka_unit_test(test_config_space_carries_the_engines_device_id),
        cmocka_unit_test(test_a_sec_bd_through_a_queue_writes_back_only_dw28),
        cmocka_unit_test(test_an_in_place_job_paused_mid_output_is_not_run_again_on_its_own_output),
        cmocka_unit_test(test_a_sec_stream_is_refused_by_a_zip_destination_before_downtime),
        cmocka_unit_test(test_a_started_sec_vf_migrates_and_its_queue_works_on_the_destination),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
