/* The guest driver and doorbell isolation (QUE_ISO_CFG bit0): SQ/CQ
 * doorbells go into BAR4 (a store into the mapped page of their queue, or a
 * trapped db_write) when the register says so, into BAR2 when it does not;
 * EQ/AEQ doorbells stay in BAR2; a BAR4 too small for the queue count, or
 * none at all, is refused; a pending doorbell the next one does not
 * supersede is never overwritten (the next one goes trapped after it, or
 * waits when there is no trapped path); attach reads the register again.
 *
 * The device runs without isolation, behind a fake transport that answers
 * QUE_ISO_CFG as the test wants and forwards whatever reaches its BAR4 to
 * the device's BAR2 doorbell, so every job still runs on the real model. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "guest/guest.h"
#include "guest/workload.h"
#include "vmm/inproc.h"
#include "vmm/vm_ram.h"

#define VF 1u
#define NQ QM_DEFAULT_QPS_PER_VF
#define STATE_GPA 0x1000u
#define RAM_SIZE (16u << 20)
#define DATA_GPA (8u << 20)
#define MAX_REC 1024u
#define BAR4_SIZE ((uint64_t)NQ * QM_DB_PAGE_SIZE)

/* A doorbell as one path saw it. */
struct db_rec {
    uint64_t off; /* BAR2 offset, or BAR4 offset for db_write and the pages */
    uint64_t val;
};

struct fixture {
    struct vm_ram *ram;
    const struct guest_ram *g;
    struct vmm_inproc_host host;
    const struct vf_io *real;
    struct vf_io io;
    uint32_t iso;         /* what QUE_ISO_CFG reads */
    _Atomic uint64_t *pages; /* our BAR4 (NULL: not mapped) */
    /* Protects the three records (the poller and the guest both add). */
    pthread_mutex_t lock;
    struct db_rec bar2[MAX_REC], trapped[MAX_REC], taken[MAX_REC];
    unsigned nbar2, ntrapped, ntaken;
    struct db_rec kicks[MAX_REC];
    unsigned nkicks, nposted; /* kicks; of those, through io.db_kick */
    /* The device side of the mapped pages: a thread that takes words. */
    pthread_t poller;
    atomic_bool polling, stop, poll_failed;
    struct guest_vf *vf;
    unsigned ndone;
    uint32_t last_status;
};

static void rec_add(struct fixture *f, struct db_rec *r, unsigned *n, uint64_t off, uint64_t val)
{
    pthread_mutex_lock(&f->lock);
    if (*n < MAX_REC)
        r[(*n)++] = (struct db_rec){off, val};
    pthread_mutex_unlock(&f->lock);
}

/* An SQ/CQ doorbell that reached our BAR4 goes on to the device. */
static int forward(struct fixture *f, uint64_t v)
{
    return f->real->mmio_write(f->real->opaque, QM_DB_SQCQ, &v, 8);
}

static int fake_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct fixture *f = opaque;

    if (off == QM_QUE_ISO_CFG && size == 4) {
        memcpy(data, &f->iso, 4);
        return 0;
    }
    return f->real->mmio_read(f->real->opaque, off, data, size);
}

static int fake_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct fixture *f = opaque;
    uint64_t v = 0;

    if ((off == QM_DB_SQCQ || off == QM_DB_EQAEQ) && size == 8) {
        memcpy(&v, data, 8);
        rec_add(f, f->bar2, &f->nbar2, off, v);
    }
    return f->real->mmio_write(f->real->opaque, off, data, size);
}

static int fake_irq_wait(void *opaque, unsigned vector, int timeout_ms)
{
    struct fixture *f = opaque;
    return f->real->irq_wait(f->real->opaque, vector, timeout_ms);
}

static int take_word(struct fixture *f, unsigned qn);

/* A trapped BAR4 doorbell, as the device takes it: the word already stored
 * in the page (if mapped) first, then this one. A write to a poll-state
 * word is a kick: it takes the stored word only (qm_hw.h). */
static int fake_db_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct fixture *f = opaque;
    uint64_t v;

    assert_int_equal(size, 8);
    memcpy(&v, data, 8);
    if (off % QM_DB_PAGE_SIZE == QM_DB_POLL_STATE) {
        assert_non_null(f->pages);
        rec_add(f, f->kicks, &f->nkicks, off, v);
        return take_word(f, (unsigned)(off / QM_DB_PAGE_SIZE)) < 0 ? -EIO : 0;
    }
    assert_int_equal(off % QM_DB_PAGE_SIZE, QM_DB_SQCQ);
    if (f->pages)
        assert_true(take_word(f, (unsigned)(off / QM_DB_PAGE_SIZE)) >= 0);
    rec_add(f, f->trapped, &f->ntrapped, off, v);
    return forward(f, v);
}

/* A posted kick (vf_io.db_kick). */
static void fake_db_kick(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct fixture *f = opaque;

    f->nposted++;
    (void)fake_db_write(f, off, data, size);
}

/* Takes queue qn's word as the device does (swap QM_DB_IDLE in); 1 when it
 * held a doorbell, which then went on to the device, or the device's error.
 * No cmocka assertion here: the poller thread calls it too. */
static int take_word(struct fixture *f, unsigned qn)
{
    _Atomic uint64_t *w = &f->pages[(qn * QM_DB_PAGE_SIZE + QM_DB_SQCQ) / 8];
    uint64_t v = atomic_exchange_explicit(w, QM_DB_IDLE, memory_order_acquire);
    int ret;

    if (v == QM_DB_IDLE)
        return 0;
    rec_add(f, f->taken, &f->ntaken, qn * QM_DB_PAGE_SIZE + QM_DB_SQCQ, v);
    ret = forward(f, v);
    return ret ? ret : 1;
}

static void *poller_main(void *arg)
{
    struct fixture *f = arg;

    while (!atomic_load(&f->stop)) {
        for (unsigned qn = 0; qn < NQ; qn++)
            if (take_word(f, qn) < 0)
                atomic_store(&f->poll_failed, true);
        usleep(20);
    }
    return NULL;
}

static void on_complete(void *opaque, const struct guest_vf_completion *c)
{
    struct fixture *f = opaque;

    f->last_status = c->status;
    f->ndone++;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct qm_dev_config cfg;

    assert_non_null(f);
    assert_int_equal(vm_ram_create(RAM_SIZE, &f->ram), 0);
    f->g = vm_ram_guest(f->ram);
    qm_dev_config_default(&cfg);
    cfg.db_isolation = false; /* the fake transport isolates; the device sees BAR2 */
    assert_int_equal(vmm_inproc_host_create(&cfg, VF, f->g, &f->host), 0);
    f->real = vmm_inproc_vf_io(f->host.vf);
    pthread_mutex_init(&f->lock, NULL);
    f->io = (struct vf_io){.mmio_read = fake_read,
                           .mmio_write = fake_write,
                           .irq_wait = fake_irq_wait,
                           .opaque = f};
    workload_data_fill(guest_ram_ptr(f->g, DATA_GPA), 4096, WORKLOAD_DATA_TEXT, 7);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    if (atomic_load(&f->polling)) {
        atomic_store(&f->stop, true);
        pthread_join(f->poller, NULL);
        assert_false(atomic_load(&f->poll_failed)); /* the device took every doorbell */
    }
    guest_vf_detach(f->vf);
    vmm_inproc_host_destroy(&f->host);
    vm_ram_destroy(f->ram);
    free((void *)f->pages);
    pthread_mutex_destroy(&f->lock);
    free(f);
    return 0;
}

/* Our BAR4, mapped: size bytes of idle words. */
/* What every queue's page says of the device (qm_hw.h, QM_DB_POLL_STATE). */
static void set_poll_state(struct fixture *f, uint64_t state)
{
    for (unsigned qn = 0; qn < NQ; qn++)
        atomic_store(&f->pages[(qn * QM_DB_PAGE_SIZE + QM_DB_POLL_STATE) / 8], state);
}

static void map_pages(struct fixture *f, uint64_t size)
{
    f->pages = aligned_alloc(4096, BAR4_SIZE);
    assert_non_null(f->pages);
    for (uint64_t i = 0; i < BAR4_SIZE / 8; i++)
        atomic_init(&f->pages[i], QM_DB_IDLE);
    f->io.db_pages = (void *)f->pages;
    f->io.db_pages_size = size;
    set_poll_state(f, QM_DB_POLL_ON); /* the fake device says it polls */
}

static void start_poller(struct fixture *f)
{
    assert_int_equal(pthread_create(&f->poller, NULL, poller_main, f), 0);
    atomic_store(&f->polling, true);
}

static void init_guest(struct fixture *f)
{
    assert_int_equal(guest_vf_init(&f->io, f->g, STATE_GPA, guest_vf_state_size(NQ), &f->vf), 0);
    guest_vf_set_complete_cb(f->vf, on_complete, f);
}

static void build_job(uint32_t sqe[ZIP_SQE_DWORDS], uint64_t tag)
{
    struct guest_zip_req r = {.type = ZIP_REQ_DEFLATE, .buf_type = ZIP_BUF_FLAT, .src = DATA_GPA,
                              .dst = DATA_GPA + 0x10000 + tag * 0x2000, .in_len = 4096,
                              .dest_avail = 8192, .tag = tag};

    assert_int_equal(guest_zip_sqe_build(sqe, &r), 0);
}

/* One job on qp, submitted and reaped through the interrupt path. */
static void run_job(struct fixture *f, unsigned qp, uint64_t tag)
{
    uint32_t sqe[ZIP_SQE_DWORDS];
    unsigned before = f->ndone;

    build_job(sqe, tag);
    assert_int_equal(guest_vf_submit(f->vf, qp, sqe), 0);
    for (int i = 0; i < 2000 && f->ndone == before; i++) {
        int irq = guest_vf_irq_wait(f->vf, 10) == 0;
        assert_true(guest_vf_poll(f->vf, irq) >= 0);
    }
    assert_int_equal(f->ndone, before + 1);
    assert_int_equal(f->last_status, ZIP_ST_OK);
}

static bool has(const struct db_rec *r, unsigned n, uint64_t off, uint64_t val)
{
    for (unsigned i = 0; i < n; i++)
        if (r[i].off == off && r[i].val == val)
            return true;
    return false;
}

static unsigned count_cmd(const struct db_rec *r, unsigned n, unsigned cmd)
{
    unsigned k = 0;

    for (unsigned i = 0; i < n; i++)
        k += ((r[i].val >> 12) & 0xfu) == cmd;
    return k;
}

static uint64_t db4(unsigned qn)
{
    return (uint64_t)qn * QM_DB_PAGE_SIZE + QM_DB_SQCQ;
}

static uint64_t word(struct fixture *f, unsigned qn)
{
    return atomic_load(&f->pages[db4(qn) / 8]);
}

/* Waits (bounded) until the poller took every word, so the record is whole. */
static void wait_taken(struct fixture *f)
{
    for (int i = 0; i < 5000; i++) {
        unsigned qn = 0;
        while (qn < NQ && word(f, qn) == QM_DB_IDLE)
            qn++;
        if (qn == NQ)
            return;
        usleep(1000);
    }
    fail_msg("the poller left a doorbell in the pages");
}

/* ---- where doorbells go ---- */

static void test_isolated_doorbells_are_stores_into_the_mapped_page_of_their_queue(void **state)
{
    struct fixture *f = *state;

    f->iso = QM_QUE_ISO_EN;
    map_pages(f, BAR4_SIZE);
    start_poller(f);
    init_guest(f);
    assert_int_equal(guest_vf_qp_start(f->vf, 2, ZIP_ALG_COMPRESS), 0);
    run_job(f, 2, 1);
    run_job(f, 2, 2);
    wait_taken(f);

    pthread_mutex_lock(&f->lock);
    /* The SQ doorbells in queue 2's page; the CQ head of each job too,
     * ending with the re-arm (priority 1). */
    assert_true(has(f->taken, f->ntaken, db4(2), qm_db_value(2, QM_DB_CMD_SQ, 1, 0)));
    assert_true(has(f->taken, f->ntaken, db4(2), qm_db_value(2, QM_DB_CMD_SQ, 2, 0)));
    assert_true(has(f->taken, f->ntaken, db4(2), qm_db_value(2, QM_DB_CMD_CQ, 2, 1)));
    for (unsigned i = 0; i < f->ntaken; i++) {
        assert_int_equal(f->taken[i].off, db4(f->taken[i].val & 0xfffu)); /* its own page */
        assert_int_equal(f->taken[i].val & 0xfffu, 2);
    }
    /* Nothing of SQ/CQ left in BAR2, nothing trapped; EQ/AEQ stay in BAR2. */
    for (unsigned i = 0; i < f->nbar2; i++)
        assert_int_equal(f->bar2[i].off, QM_DB_EQAEQ);
    assert_int_equal(f->ntrapped, 0);
    assert_true(has(f->bar2, f->nbar2, QM_DB_EQAEQ, qm_db_value(0, QM_DB_CMD_AEQ, 0, 0)));
    assert_true(count_cmd(f->bar2, f->nbar2, QM_DB_CMD_EQ) >= 3); /* init + one per job */
    pthread_mutex_unlock(&f->lock);
    /* The other queues' words were never written. */
    for (unsigned qn = 0; qn < NQ; qn++)
        if (qn != 2)
            assert_true(word(f, qn) == QM_DB_IDLE);
}

static void test_isolated_doorbells_without_a_mapping_are_trapped_writes_to_bar4(void **state)
{
    struct fixture *f = *state;

    f->iso = QM_QUE_ISO_EN;
    f->io.db_write = fake_db_write;
    f->io.db_pages_size = BAR4_SIZE;
    init_guest(f);
    assert_int_equal(guest_vf_qp_start(f->vf, 1, ZIP_ALG_COMPRESS), 0);
    run_job(f, 1, 1);

    assert_true(has(f->trapped, f->ntrapped, db4(1), qm_db_value(1, QM_DB_CMD_SQ, 1, 0)));
    assert_true(has(f->trapped, f->ntrapped, db4(1), qm_db_value(1, QM_DB_CMD_CQ, 1, 0)));
    assert_true(has(f->trapped, f->ntrapped, db4(1), qm_db_value(1, QM_DB_CMD_CQ, 1, 1)));
    assert_int_equal(count_cmd(f->trapped, f->ntrapped, QM_DB_CMD_EQ), 0);
    assert_int_equal(count_cmd(f->trapped, f->ntrapped, QM_DB_CMD_AEQ), 0);
    for (unsigned i = 0; i < f->nbar2; i++)
        assert_int_equal(f->bar2[i].off, QM_DB_EQAEQ);
}

static void test_without_isolation_every_doorbell_stays_in_bar2(void **state)
{
    struct fixture *f = *state;

    f->iso = 0;
    map_pages(f, BAR4_SIZE);
    f->io.db_write = fake_db_write; /* offered, must not be used */
    init_guest(f);
    assert_int_equal(guest_vf_qp_start(f->vf, 0, ZIP_ALG_COMPRESS), 0);
    run_job(f, 0, 1);

    assert_true(has(f->bar2, f->nbar2, QM_DB_SQCQ, qm_db_value(0, QM_DB_CMD_SQ, 1, 0)));
    assert_true(has(f->bar2, f->nbar2, QM_DB_SQCQ, qm_db_value(0, QM_DB_CMD_CQ, 1, 1)));
    assert_true(has(f->bar2, f->nbar2, QM_DB_EQAEQ, qm_db_value(0, QM_DB_CMD_EQ, 0, 0)));
    assert_int_equal(f->ntrapped, 0);
    for (unsigned qn = 0; qn < NQ; qn++)
        assert_true(word(f, qn) == QM_DB_IDLE);
}

/* ---- refusals ---- */

static void test_a_bar4_too_small_for_the_queue_count_is_refused_at_init(void **state)
{
    struct fixture *f = *state;
    struct guest_vf *vf = NULL;
    uint64_t state_len = guest_vf_state_size(NQ);

    f->iso = QM_QUE_ISO_EN;
    /* Isolated, and no way to BAR4 at all. */
    assert_int_equal(guest_vf_init(&f->io, f->g, STATE_GPA, state_len, &vf), -ENODEV);
    assert_null(vf);
    /* Mapped: the last queue's word must be inside. */
    map_pages(f, (NQ - 1) * (uint64_t)QM_DB_PAGE_SIZE);
    assert_int_equal(guest_vf_init(&f->io, f->g, STATE_GPA, state_len, &vf), -ENODEV);
    f->io.db_pages_size = (NQ - 1) * (uint64_t)QM_DB_PAGE_SIZE + QM_DB_SQCQ + 7;
    assert_int_equal(guest_vf_init(&f->io, f->g, STATE_GPA, state_len, &vf), -ENODEV);
    f->io.db_pages_size = (NQ - 1) * (uint64_t)QM_DB_PAGE_SIZE + QM_DB_SQCQ + 8;
    assert_int_equal(guest_vf_init(&f->io, f->g, STATE_GPA, state_len, &vf), 0);
    guest_vf_detach(vf);
    vf = NULL;
    /* A mapping that is not 8-byte aligned cannot take 64-bit stores. */
    f->io.db_pages = (uint8_t *)f->pages + 4;
    f->io.db_pages_size = BAR4_SIZE - 8;
    assert_int_equal(guest_vf_init(&f->io, f->g, STATE_GPA, state_len, &vf), -ENODEV);
    /* Trapped: a transport that knows the BAR's size is held to it. */
    f->io.db_pages = NULL;
    f->io.db_write = fake_db_write;
    f->io.db_pages_size = QM_DB_PAGE_SIZE;
    assert_int_equal(guest_vf_init(&f->io, f->g, STATE_GPA, state_len, &vf), -ENODEV);
    assert_null(vf);
    assert_int_equal(f->ntrapped, 0);
    f->io.db_pages_size = 0; /* unknown: the device checks each offset */
    assert_int_equal(guest_vf_init(&f->io, f->g, STATE_GPA, state_len, &vf), 0);
    guest_vf_detach(vf);
}

/* ---- one word, one doorbell ---- */

struct submitter {
    struct fixture *f;
    unsigned qp;
    atomic_bool done;
    int ret;
};

static void *submit_main(void *arg)
{
    struct submitter *s = arg;
    uint32_t sqe[ZIP_SQE_DWORDS];

    build_job(sqe, 9);
    s->ret = guest_vf_submit(s->f->vf, s->qp, sqe);
    atomic_store(&s->done, true);
    return NULL;
}

static void test_without_a_trapped_path_a_pending_doorbell_of_the_other_kind_is_waited_for(
    void **state)
{
    struct fixture *f = *state;
    uint64_t cq = qm_db_value(0, QM_DB_CMD_CQ, 0, 1);
    struct submitter s = {.f = f, .qp = 0};
    uint32_t sqe[ZIP_SQE_DWORDS];
    pthread_t t;

    f->iso = QM_QUE_ISO_EN;
    map_pages(f, BAR4_SIZE); /* no poller: the test is the device */
    init_guest(f);
    assert_int_equal(guest_vf_qp_start(f->vf, 0, ZIP_ALG_COMPRESS), 0);
    /* A CQ doorbell the device has not taken yet sits in queue 0's word. */
    atomic_store(&f->pages[db4(0) / 8], cq);
    assert_int_equal(pthread_create(&t, NULL, submit_main, &s), 0);
    for (int i = 0; i < 50 && !atomic_load(&s.done); i++)
        usleep(1000);
    /* The SQ doorbell waits: the pending one is still there, whole. */
    assert_false(atomic_load(&s.done));
    assert_true(word(f, 0) == cq);
    assert_int_equal(take_word(f, 0), 1);
    pthread_join(t, NULL);
    assert_int_equal(s.ret, 0);
    assert_true(word(f, 0) == qm_db_value(0, QM_DB_CMD_SQ, 1, 0));
    /* A later SQ tail supersedes a pending one: no wait. */
    build_job(sqe, 10);
    assert_int_equal(guest_vf_submit(f->vf, 0, sqe), 0);
    assert_true(word(f, 0) == qm_db_value(0, QM_DB_CMD_SQ, 2, 0));
    assert_int_equal(guest_vf_qp_inflight(f->vf, 0), 2);
    /* The device takes it and runs both jobs. */
    assert_int_equal(take_word(f, 0), 1);
    start_poller(f);
    for (int i = 0; i < 2000 && f->ndone < 2; i++) {
        int irq = guest_vf_irq_wait(f->vf, 10) == 0;
        assert_true(guest_vf_poll(f->vf, irq) >= 0);
    }
    assert_int_equal(f->ndone, 2);
    assert_int_equal(guest_vf_qp_inflight(f->vf, 0), 0);
}

static void test_a_doorbell_that_would_overwrite_a_pending_one_goes_trapped_after_it(void **state)
{
    struct fixture *f = *state;
    uint64_t cq = qm_db_value(1, QM_DB_CMD_CQ, 0, 1), sq = qm_db_value(1, QM_DB_CMD_SQ, 1, 0);
    uint32_t sqe[ZIP_SQE_DWORDS];

    f->iso = QM_QUE_ISO_EN;
    map_pages(f, BAR4_SIZE); /* no poller: nothing takes the pending word by itself */
    f->io.db_write = fake_db_write;
    init_guest(f);
    assert_int_equal(guest_vf_qp_start(f->vf, 1, ZIP_ALG_COMPRESS), 0);
    atomic_store(&f->pages[db4(1) / 8], cq);
    build_job(sqe, 1);
    /* No wait: the SQ doorbell is a trapped write, the CQ one taken first. */
    assert_int_equal(guest_vf_submit(f->vf, 1, sqe), 0);
    assert_int_equal(f->ntaken, 1);
    assert_true(f->taken[0].val == cq);
    assert_int_equal(f->ntrapped, 1);
    assert_true(f->trapped[0].off == db4(1) && f->trapped[0].val == sq);
    assert_true(word(f, 1) == QM_DB_IDLE);
    /* A later SQ tail over a pending one is a plain store again. */
    atomic_store(&f->pages[db4(1) / 8], sq);
    build_job(sqe, 2);
    f->ntaken = 0;
    assert_int_equal(guest_vf_submit(f->vf, 1, sqe), 0);
    assert_int_equal(f->ntrapped, 1);
    assert_true(word(f, 1) == qm_db_value(1, QM_DB_CMD_SQ, 2, 0));
    start_poller(f);
    for (int i = 0; i < 2000 && f->ndone < 2; i++) {
        int irq = guest_vf_irq_wait(f->vf, 10) == 0;
        assert_true(guest_vf_poll(f->vf, irq) >= 0);
    }
    assert_int_equal(f->ndone, 2);
}

/* A page that says the device is not polling: the stored doorbell is
 * followed by a kick (a trapped write to the poll-state word, which takes
 * the stored word); one that says it polls: a store alone. Anything but
 * QM_DB_POLL_ON counts as not polling. */
static void test_a_stored_doorbell_kicks_a_device_that_is_not_polling(void **state)
{
    struct fixture *f = *state;
    const uint64_t states[] = {QM_DB_POLL_OFF, QM_DB_IDLE, 0x1234};
    struct guest_vf_stats st;
    uint32_t sqe[ZIP_SQE_DWORDS];
    unsigned tail = 0;

    f->iso = QM_QUE_ISO_EN;
    map_pages(f, BAR4_SIZE);
    f->io.db_write = fake_db_write;
    init_guest(f);
    assert_int_equal(guest_vf_qp_start(f->vf, 2, ZIP_ALG_COMPRESS), 0);
    for (unsigned i = 0; i < (sizeof(states) / sizeof(states[0])); i++) {
        set_poll_state(f, states[i]);
        build_job(sqe, ++tail);
        assert_int_equal(guest_vf_submit(f->vf, 2, sqe), 0);
        /* A kick to queue 2's poll-state word; it took the stored doorbell. */
        assert_int_equal(f->nkicks, i + 1);
        assert_true(f->kicks[i].off == db4(2) - QM_DB_SQCQ + QM_DB_POLL_STATE);
        assert_true(f->taken[f->ntaken - 1].val == qm_db_value(2, QM_DB_CMD_SQ, tail, 0));
        assert_true(word(f, 2) == QM_DB_IDLE);
    }
    assert_int_equal(f->ntrapped, 0); /* no doorbell went trapped */
    set_poll_state(f, QM_DB_POLL_ON);
    build_job(sqe, ++tail);
    assert_int_equal(guest_vf_submit(f->vf, 2, sqe), 0);
    assert_int_equal(f->nkicks, (sizeof(states) / sizeof(states[0])));
    assert_true(word(f, 2) == qm_db_value(2, QM_DB_CMD_SQ, tail, 0));
    guest_vf_stats_get(f->vf, &st);
    assert_int_equal(st.doorbell_kicks, (sizeof(states) / sizeof(states[0])));
    start_poller(f);
    for (int i = 0; i < 2000 && f->ndone < tail; i++) {
        int irq = guest_vf_irq_wait(f->vf, 10) == 0;
        assert_true(guest_vf_poll(f->vf, irq) >= 0);
    }
    assert_int_equal(f->ndone, tail);
}

/* Where the transport posts writes, the kick is posted: the vCPU does not
 * wait for the host's reply (a kick carries no doorbell, so a late one is
 * harmless). */
static void test_a_kick_is_posted_where_the_transport_can(void **state)
{
    struct fixture *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];

    f->iso = QM_QUE_ISO_EN;
    map_pages(f, BAR4_SIZE);
    f->io.db_write = fake_db_write;
    f->io.db_kick = fake_db_kick;
    init_guest(f);
    assert_int_equal(guest_vf_qp_start(f->vf, 2, ZIP_ALG_COMPRESS), 0);
    set_poll_state(f, QM_DB_POLL_OFF);
    build_job(sqe, 1);
    assert_int_equal(guest_vf_submit(f->vf, 2, sqe), 0);
    assert_int_equal(f->nposted, 1);
    assert_int_equal(f->nkicks, 1);
    assert_int_equal(f->ntrapped, 0);
    start_poller(f);
    for (int i = 0; i < 2000 && f->ndone < 1; i++) {
        int irq = guest_vf_irq_wait(f->vf, 10) == 0;
        assert_true(guest_vf_poll(f->vf, irq) >= 0);
    }
    assert_int_equal(f->ndone, 1);
}

/* ---- attach ---- */

static void test_attach_reads_the_register_again_and_uses_the_new_transport(void **state)
{
    struct fixture *f = *state;
    struct vf_io old;

    f->iso = 0;
    init_guest(f);
    assert_int_equal(guest_vf_qp_start(f->vf, 3, ZIP_ALG_COMPRESS), 0);
    run_job(f, 3, 1);
    assert_true(has(f->bar2, f->nbar2, QM_DB_SQCQ, qm_db_value(3, QM_DB_CMD_SQ, 1, 0)));
    guest_vf_detach(f->vf);
    f->vf = NULL;

    /* "Another host": the same device, now isolating, its BAR4 too small. */
    f->iso = QM_QUE_ISO_EN;
    old = f->io;
    map_pages(f, 2 * (uint64_t)QM_DB_PAGE_SIZE);
    assert_int_equal(guest_vf_attach(&f->io, f->g, STATE_GPA, &f->vf), -ENODEV);
    assert_null(f->vf);
    /* ... and with room for every queue: the next doorbell is a store. */
    f->io.db_pages_size = BAR4_SIZE;
    start_poller(f);
    assert_int_equal(guest_vf_attach(&f->io, f->g, STATE_GPA, &f->vf), 0);
    guest_vf_set_complete_cb(f->vf, on_complete, f);
    run_job(f, 3, 2);
    assert_true(has(f->taken, f->ntaken, db4(3), qm_db_value(3, QM_DB_CMD_SQ, 2, 0)));
    assert_false(has(f->bar2, f->nbar2, QM_DB_SQCQ, qm_db_value(3, QM_DB_CMD_SQ, 2, 0)));
    /* A transport with no BAR4 cannot take this device's guest. */
    guest_vf_detach(f->vf);
    f->vf = NULL;
    assert_int_equal(guest_vf_attach(&old, f->g, STATE_GPA, &f->vf), -ENODEV);
    assert_null(f->vf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_isolated_doorbells_are_stores_into_the_mapped_page_of_their_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_isolated_doorbells_without_a_mapping_are_trapped_writes_to_bar4, setup, teardown),
        cmocka_unit_test_setup_teardown(test_without_isolation_every_doorbell_stays_in_bar2, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_a_bar4_too_small_for_the_queue_count_is_refused_at_init, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_without_a_trapped_path_a_pending_doorbell_of_the_other_kind_is_waited_for, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_doorbell_that_would_overwrite_a_pending_one_goes_trapped_after_it, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_a_stored_doorbell_kicks_a_device_that_is_not_polling,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_kick_is_posted_where_the_transport_can, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_attach_reads_the_register_again_and_uses_the_new_transport, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
