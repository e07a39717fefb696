/* The guest workload end to end on the device model: every job verified
 * exactly once; pausing the vCPUs mid-run leaves nothing half-submitted and
 * nothing moving; resuming (also re-attached from RAM alone) finishes the
 * run. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include <cmocka.h>

#include "common/common.h"
#include "guest/workload.h"
#include "mig/mig.h"
#include "qm/qm_debug.h"
#include "vmm/inproc.h"
#include "vmm/vm_ram.h"
#include "wl_test.h"

#define VF 1u

struct fixture {
    struct workload_config cfg;
    struct vm_ram *ram;
    const struct guest_ram *g;
    struct vmm_inproc_host host;
    struct workload *w;
};

static void small_config(struct workload_config *c)
{
    workload_config_default(c);
    c->jobs = 60;
    c->min_size = 1;
    c->max_size = 96u << 10;
    c->seed = 7;
    c->sgl_percent = 30;
}

static struct fixture *fixture_new(const struct workload_config *cfg)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct qm_dev_config dc;

    assert_non_null(f);
    f->cfg = *cfg;
    assert_int_equal(vm_ram_create(AM_ALIGN_UP(workload_ram_size(cfg), VM_RAM_PAGE_SIZE), &f->ram), 0);
    f->g = vm_ram_guest(f->ram);
    qm_dev_config_default(&dc);
    assert_int_equal(vmm_inproc_host_create(&dc, VF, f->g, &f->host), 0);
    assert_int_equal(workload_create(cfg, f->g, vmm_inproc_vf_io(f->host.vf), &f->w), 0);
    return f;
}

static void fixture_free(struct fixture *f)
{
    workload_destroy(f->w);
    vmm_inproc_host_destroy(&f->host);
    vm_ram_destroy(f->ram);
    free(f);
}

static void assert_all_verified_once(const struct workload *w, uint64_t jobs)
{
    struct workload_report r;

    workload_report_get(w, &r);
    assert_int_equal(r.jobs, jobs);
    assert_int_equal(r.jobs_submitted, jobs);
    assert_int_equal(r.jobs_completed, jobs);
    assert_int_equal(r.jobs_verified, jobs);
    assert_int_equal(r.jobs_failed, 0);
    assert_int_equal(r.jobs_duplicated, 0);
    assert_int_equal(r.jobs_lost, 0);
    assert_int_equal(r.stray_completions, 0);
    assert_int_equal(r.driver.bad_cqes, 0);
    assert_int_equal(r.jobs_by_type[1] + r.jobs_by_type[2] + r.jobs_by_type[3], jobs);
    assert_true(r.bytes_in > 0);
}

static void test_a_small_run_verifies_every_job_exactly_once(void **state)
{
    struct workload_config c;
    struct fixture *f;
    struct workload_report r;
    (void)state;

    small_config(&c);
    f = fixture_new(&c);
    assert_int_equal(workload_vcpus_start(f->w), 0);
    assert_int_equal(workload_vcpus_start(f->w), -EALREADY);
    assert_int_equal(workload_wait(f->w, 120000), 0);
    assert_true(workload_done(f->w));
    assert_int_equal(workload_shutdown(f->w), 0);
    assert_all_verified_once(f->w, c.jobs);
    workload_report_get(f->w, &r);
    assert_true(r.sgl_jobs > 0 && r.sgl_jobs < c.jobs);
    assert_true(r.jobs_by_type[1] > 0 && r.jobs_by_type[2] > 0 && r.jobs_by_type[3] > 0);
    assert_int_equal(r.driver.cqes, 2 * c.jobs);
    fixture_free(f);
}

static void test_the_largest_inputs_on_sgl_chains_verify(void **state)
{
    struct workload_config c;
    struct fixture *f;
    struct workload_report r;
    (void)state;

    small_config(&c);
    c.jobs = 6;
    c.qps = 2;
    c.vcpus = 2;
    c.min_size = 3u << 20;
    c.max_size = WORKLOAD_MAX_SIZE;
    c.sgl_percent = 100;
    f = fixture_new(&c);
    assert_int_equal(workload_vcpus_start(f->w), 0);
    assert_int_equal(workload_wait(f->w, 120000), 0);
    assert_int_equal(workload_shutdown(f->w), 0);
    assert_all_verified_once(f->w, c.jobs);
    workload_report_get(f->w, &r);
    assert_int_equal(r.sgl_jobs, c.jobs);
    assert_true(r.bytes_in >= 6ull * (3u << 20));
    fixture_free(f);
}

static void test_the_same_seed_gives_the_same_jobs(void **state)
{
    struct workload_config c;
    struct fixture *a, *b;
    struct workload_report ra, rb;
    (void)state;

    small_config(&c);
    c.jobs = 12;
    a = fixture_new(&c);
    b = fixture_new(&c);
    assert_int_equal(workload_vcpus_start(a->w), 0);
    assert_int_equal(workload_vcpus_start(b->w), 0);
    assert_int_equal(workload_wait(a->w, 60000), 0);
    assert_int_equal(workload_wait(b->w, 60000), 0);
    workload_report_get(a->w, &ra);
    workload_report_get(b->w, &rb);
    assert_int_equal(ra.bytes_in, rb.bytes_in);
    assert_int_equal(ra.sgl_jobs, rb.sgl_jobs);
    assert_memory_equal(ra.jobs_by_type, rb.jobs_by_type, sizeof(ra.jobs_by_type));
    fixture_free(a);
    fixture_free(b);
}

/* Pause, check the paused guest, check that nothing the guest owns moves,
 * and that every SQ tail the driver wrote is the tail the device has. */
static void pause_and_check(struct fixture *f)
{
    char why[160] = "";
    uint64_t steps;
    struct workload_report r1, r2;

    assert_int_equal(workload_vcpus_pause(f->w), 0);
    assert_int_equal(workload_vcpus_pause(f->w), -EINVAL); /* already paused */
    if (workload_check_paused(f->w, why, sizeof(why)) != 0)
        fail_msg("paused guest is inconsistent: %s", why);
    for (unsigned q = 0; q < f->cfg.qps; q++) {
        struct qm_sqc sqc;
        assert_int_equal(guest_vf_qp_sqc_dump(workload_vf(f->w), q, &sqc), 0);
        assert_int_equal(sqc.tail, guest_vf_qp_sq_tail(workload_vf(f->w), q));
    }
    steps = workload_steps(f->w);
    workload_report_get(f->w, &r1);
    wl_sleep_ms(30);
    workload_report_get(f->w, &r2);
    assert_int_equal(workload_steps(f->w), steps);
    assert_int_equal(r1.jobs_submitted, r2.jobs_submitted);
    assert_int_equal(r1.jobs_verified, r2.jobs_verified);
    assert_int_equal(r1.driver.cqes, r2.driver.cqes); /* nobody reaps while paused */
}

static void test_pausing_mid_run_leaves_nothing_half_submitted_and_resume_finishes(void **state)
{
    struct workload_config c;
    struct fixture *f;
    (void)state;

    small_config(&c);
    c.jobs = 150;
    f = fixture_new(&c);
    assert_int_equal(workload_vcpus_resume(f->w, NULL, NULL), -EINVAL); /* not running */
    assert_int_equal(workload_vcpus_start(f->w), 0);
    assert_int_equal(workload_check_paused(f->w, NULL, 0), -EPROTO); /* running */
    for (unsigned round = 1; round <= 6 && !workload_done(f->w); round++) {
        wl_wait_steps(f->w, round * 80);
        pause_and_check(f);
        /* alternate a plain resume and a re-bind to the same RAM and VF */
        if (round % 2)
            assert_int_equal(workload_vcpus_resume(f->w, NULL, NULL), 0);
        else
            assert_int_equal(workload_vcpus_resume(f->w, f->g, vmm_inproc_vf_io(f->host.vf)), 0);
    }
    assert_int_equal(workload_wait(f->w, 120000), 0);
    assert_int_equal(workload_shutdown(f->w), 0);
    assert_all_verified_once(f->w, c.jobs);
    fixture_free(f);
}

static void test_a_guest_reattached_from_ram_alone_finishes_the_run(void **state)
{
    struct workload_config c;
    struct fixture *f;
    uint64_t steps;
    (void)state;

    small_config(&c);
    c.jobs = 80;
    f = fixture_new(&c);
    assert_int_equal(workload_vcpus_start(f->w), 0);
    wl_wait_steps(f->w, 150);
    pause_and_check(f);
    steps = workload_steps(f->w);
    /* The "VMM process" goes away; a new one finds everything in RAM. */
    workload_destroy(f->w);
    f->w = NULL;
    assert_int_equal(workload_attach(f->g, vmm_inproc_vf_io(f->host.vf), &f->w), 0);
    assert_int_equal(workload_steps(f->w), steps);
    assert_int_equal(workload_config_get(f->w)->jobs, c.jobs);
    assert_int_equal(workload_vcpus_start(f->w), 0);
    assert_int_equal(workload_wait(f->w, 120000), 0);
    assert_int_equal(workload_shutdown(f->w), 0);
    assert_all_verified_once(f->w, c.jobs);
    fixture_free(f);
}

static void test_resume_on_ram_without_a_workload_is_refused_and_stays_paused(void **state)
{
    struct workload_config c;
    struct fixture *f;
    struct vm_ram *empty;
    struct workload *w2 = NULL;
    (void)state;

    small_config(&c);
    c.jobs = 30;
    f = fixture_new(&c);
    assert_int_equal(vm_ram_create(vm_ram_size(f->ram), &empty), 0);
    assert_int_equal(workload_attach(vm_ram_guest(empty), vmm_inproc_vf_io(f->host.vf), &w2), -EINVAL);
    assert_int_equal(workload_vcpus_start(f->w), 0);
    assert_int_equal(workload_vcpus_pause(f->w), 0);
    assert_int_equal(workload_vcpus_resume(f->w, vm_ram_guest(empty), NULL), -EINVAL);
    assert_int_equal(workload_vcpus_pause(f->w), -EINVAL); /* still paused */
    assert_int_equal(workload_vcpus_resume(f->w, NULL, NULL), 0);
    assert_int_equal(workload_wait(f->w, 120000), 0);
    assert_int_equal(workload_shutdown(f->w), 0);
    assert_all_verified_once(f->w, c.jobs);
    vm_ram_destroy(empty);
    fixture_free(f);
}

static void test_a_guest_resumed_on_a_copy_behind_another_device_finishes_exactly_once(void **state)
{
    struct workload_config c;
    struct fixture *f;
    struct vm_ram *b_ram;
    struct vmm_inproc_host b_host;
    struct qm_dev_config dc;
    char why[160] = "";
    (void)state;

    small_config(&c);
    c.jobs = 120;
    f = fixture_new(&c);
    assert_int_equal(vm_ram_create(vm_ram_size(f->ram), &b_ram), 0);
    qm_dev_config_default(&dc);
    assert_int_equal(vmm_inproc_host_create(&dc, VF, vm_ram_guest(b_ram), &b_host), 0);
    assert_int_equal(workload_vcpus_start(f->w), 0);
    for (unsigned hop = 0; hop < 2; hop++) {
        wl_wait_steps(f->w, 250 + hop * 250);
        assert_int_equal(workload_vcpus_pause(f->w), 0);
        if (workload_check_paused(f->w, why, sizeof(why)) != 0)
            fail_msg("paused guest is inconsistent: %s", why);
        if (hop == 0) {
            wl_migrate_stop_and_copy(VF, &f->host, f->ram, &b_host, b_ram);
            assert_int_equal(workload_vcpus_resume(f->w, vm_ram_guest(b_ram),
                                                   vmm_inproc_vf_io(b_host.vf)), 0);
        } else { /* and back again, onto A's device and RAM */
            wl_migrate_stop_and_copy(VF, &b_host, b_ram, &f->host, f->ram);
            assert_int_equal(workload_vcpus_resume(f->w, f->g, vmm_inproc_vf_io(f->host.vf)), 0);
        }
    }
    assert_int_equal(workload_wait(f->w, 120000), 0);
    assert_int_equal(workload_shutdown(f->w), 0);
    assert_all_verified_once(f->w, c.jobs);
    fixture_free(f);
    vmm_inproc_host_destroy(&b_host);
    vm_ram_destroy(b_ram);
}

/* ---- stream jobs ---- */

/* An independent check of every compressed result (what the demo's ledger
 * does): regenerate the job's input, have zlib inflate the whole result. */
struct stream_sink {
    struct workload_config cfg;
    pthread_mutex_t lock;
    uint8_t *in, *out;
    uint32_t results, bad;
    uint8_t seen[256];
};

static void stream_sink_fn(void *opaque, const struct workload_result *r)
{
    struct stream_sink *k = opaque;
    enum zip_req_type type;
    uint32_t len;
    z_stream z = {0};
    int wbits, ok;

    pthread_mutex_lock(&k->lock);
    ok = r->job < sizeof(k->seen) && !k->seen[r->job] &&
         workload_job_input(&k->cfg, r->job, k->in, WORKLOAD_MAX_SIZE, &len, &type) == 0 &&
         type == r->type;
    if (ok) {
        wbits = type == ZIP_REQ_DEFLATE ? -15 : type == ZIP_REQ_ZLIB ? 15 : 31;
        ok = inflateInit2(&z, wbits) == Z_OK;
    }
    if (ok) {
        z.next_in = (Bytef *)r->data;
        z.avail_in = r->len;
        z.next_out = k->out;
        z.avail_out = WORKLOAD_MAX_SIZE + 1;
        ok = inflate(&z, Z_FINISH) == Z_STREAM_END && z.avail_in == 0 && z.total_out == len &&
             memcmp(k->out, k->in, len) == 0;
        inflateEnd(&z);
        k->seen[r->job] = 1;
    }
    k->results++;
    k->bad += !ok;
    pthread_mutex_unlock(&k->lock);
}

static void stream_sink_init(struct stream_sink *k, const struct workload_config *c)
{
    memset(k, 0, sizeof(*k));
    k->cfg = *c;
    pthread_mutex_init(&k->lock, NULL);
    k->in = malloc(WORKLOAD_MAX_SIZE);
    k->out = malloc(WORKLOAD_MAX_SIZE + 1);
    assert_non_null(k->in);
    assert_non_null(k->out);
}

static void stream_sink_fini(struct stream_sink *k)
{
    pthread_mutex_destroy(&k->lock);
    free(k->in);
    free(k->out);
}

static void stream_config(struct workload_config *c)
{
    small_config(c);
    c->jobs = 40;
    c->max_size = 200u << 10;
    c->stream_percent = 100;
}

/* Every job a stream, every piece completed once, every stream whole. */
static void assert_streams_whole(const struct workload *w, const struct stream_sink *k,
                                 uint64_t jobs)
{
    struct workload_report r;
    uint64_t pieces = 0;

    assert_all_verified_once(w, jobs);
    workload_report_get(w, &r);
    for (uint32_t j = 0; j < jobs; j++)
        pieces += workload_job_stream_pieces(workload_config_get(w), j);
    assert_int_equal(r.stream_pieces, pieces); /* what a checker outside computes */
    assert_int_equal(r.stream_jobs, jobs);
    assert_int_equal(r.sgl_jobs, 0);
    assert_int_equal(r.streams_open, 0);
    assert_true(r.stream_pieces >= 4 * jobs && r.stream_pieces <= 16 * jobs);
    /* One CQE per piece and one per decompression: no piece twice. */
    assert_int_equal(r.driver.cqes, r.stream_pieces + jobs);
    assert_int_equal(k->results, jobs);
    assert_int_equal(k->bad, 0);
}

static void test_a_run_of_stream_jobs_verifies_every_stream_and_piece_once(void **state)
{
    struct workload_config c;
    struct fixture *f;
    struct stream_sink k;
    (void)state;

    stream_config(&c);
    stream_sink_init(&k, &c);
    f = fixture_new(&c);
    workload_result_sink(f->w, stream_sink_fn, &k);
    assert_int_equal(workload_vcpus_start(f->w), 0);
    assert_int_equal(workload_wait(f->w, 120000), 0);
    assert_int_equal(workload_shutdown(f->w), 0);
    assert_streams_whole(f->w, &k, c.jobs);
    fixture_free(f);
    stream_sink_fini(&k);
}

static void test_a_mix_with_stream_jobs_keeps_the_other_jobs_as_they_were(void **state)
{
    struct workload_config c;
    struct fixture *f;
    struct workload_report r;
    uint8_t *a = malloc(WORKLOAD_MAX_SIZE), *b = malloc(WORKLOAD_MAX_SIZE);
    (void)state;

    assert_non_null(a);
    assert_non_null(b);
    small_config(&c);
    c.stream_percent = 30;
    f = fixture_new(&c);
    assert_int_equal(workload_vcpus_start(f->w), 0);
    assert_int_equal(workload_wait(f->w, 120000), 0);
    assert_int_equal(workload_shutdown(f->w), 0);
    assert_all_verified_once(f->w, c.jobs);
    workload_report_get(f->w, &r);
    assert_true(r.stream_jobs > 0 && r.stream_jobs < c.jobs);
    {
        uint64_t n = 0;
        for (uint32_t j = 0; j < c.jobs; j++)
            n += workload_job_stream_pieces(&c, j) > 0;
        assert_int_equal(r.stream_jobs, n);
        assert_int_equal(workload_job_stream_pieces(&c, c.jobs), 0); /* bad job */
    }
    assert_int_equal(r.driver.cqes, r.stream_pieces + 2 * (c.jobs - r.stream_jobs) + r.stream_jobs);
    /* The stream draw has its own sequence: the inputs do not change. */
    for (uint32_t j = 0; j < c.jobs; j++) {
        struct workload_config z = c;
        uint32_t la, lb;
        enum zip_req_type ta, tb;
        z.stream_percent = 0;
        assert_int_equal(workload_job_input(&c, j, a, WORKLOAD_MAX_SIZE, &la, &ta), 0);
        assert_int_equal(workload_job_input(&z, j, b, WORKLOAD_MAX_SIZE, &lb, &tb), 0);
        assert_int_equal(la, lb);
        assert_int_equal(ta, tb);
        assert_memory_equal(a, b, la);
    }
    fixture_free(f);
    free(a);
    free(b);
}

/* Migrations while streams are between pieces or have a piece in flight:
 * the context travels in guest RAM, each piece completes once (on one
 * device or the other), and zlib inflates every stream whole. */
static void test_streams_cut_by_migrations_resume_and_inflate_whole(void **state)
{
    struct workload_config c;
    struct fixture *f;
    struct vm_ram *b_ram;
    struct vmm_inproc_host b_host;
    struct qm_dev_config dc;
    struct stream_sink k;
    struct workload_report r;
    char why[160] = "";
    uint64_t open = 0, prev = 0, cut = 0;
    unsigned hops = 0;
    (void)state;

    stream_config(&c);
    c.jobs = 240; /* enough that the hops go on until one cuts a later piece */
    stream_sink_init(&k, &c);
    f = fixture_new(&c);
    workload_result_sink(f->w, stream_sink_fn, &k);
    assert_int_equal(vm_ram_create(vm_ram_size(f->ram), &b_ram), 0);
    qm_dev_config_default(&dc);
    assert_int_equal(vmm_inproc_host_create(&dc, VF, vm_ram_guest(b_ram), &b_host), 0);
    assert_int_equal(workload_vcpus_start(f->w), 0);
    /* At least 8 hops, and on until one of them carried a piece other than
     * a stream's first in flight (tag bits 40-47, docs/guest.md). */
    for (; (hops < 8 || !cut) && hops < 40 && !workload_done(f->w); hops++) {
        wl_wait_steps(f->w, prev + 40);
        assert_int_equal(workload_vcpus_pause(f->w), 0);
        prev = workload_steps(f->w);
        if (workload_check_paused(f->w, why, sizeof(why)) != 0)
            fail_msg("paused guest is inconsistent: %s", why);
        workload_report_get(f->w, &r);
        open += r.streams_open;
        for (unsigned q = 0; q < c.qps; q += 2) {
            uint64_t tags[QM_SQ_DEPTH];
            unsigned n = guest_vf_qp_inflight_tags(workload_vf(f->w), q, tags, QM_SQ_DEPTH);
            for (unsigned t = 0; t < n && t < QM_SQ_DEPTH; t++)
                cut += (tags[t] >> 40 & 0xff) != 0;
        }
        if (hops % 2 == 0) {
            wl_migrate_stop_and_copy(VF, &f->host, f->ram, &b_host, b_ram);
            assert_int_equal(workload_vcpus_resume(f->w, vm_ram_guest(b_ram),
                                                   vmm_inproc_vf_io(b_host.vf)), 0);
        } else {
            wl_migrate_stop_and_copy(VF, &b_host, b_ram, &f->host, f->ram);
            assert_int_equal(workload_vcpus_resume(f->w, f->g, vmm_inproc_vf_io(f->host.vf)), 0);
        }
    }
    assert_true(hops >= 2);
    assert_true(open > 0); /* some migration did cut a stream */
    print_message("%u migrations: %llu open streams, %llu later pieces in flight\n", hops,
                  (unsigned long long)open, (unsigned long long)cut);
    assert_true(cut > 0);  /* and one had a later piece in flight */
    assert_int_equal(workload_wait(f->w, 120000), 0);
    assert_int_equal(workload_shutdown(f->w), 0);
    assert_streams_whole(f->w, &k, c.jobs);
    fixture_free(f);
    vmm_inproc_host_destroy(&b_host);
    vm_ram_destroy(b_ram);
    stream_sink_fini(&k);
}

/* Precopy relies on this: every page of guest RAM that changes is in the
 * guest's CPU dirty log or in the device's DMA write log. */
static void test_every_changed_page_is_in_the_cpu_or_the_dma_dirty_log(void **state)
{
    struct workload_config c;
    struct fixture *f;
    struct iommu_domain *d;
    uint64_t pages, words, *cpu, *dma, unlogged = 0, changed = 0;
    uint8_t *before;
    (void)state;

    small_config(&c);
    c.jobs = 40;
    f = fixture_new(&c);
    d = qm_dev_iommu(f->host.dev, VF);
    pages = vm_ram_pages(f->ram);
    words = vm_ram_bitmap_words(f->ram);
    cpu = calloc(words, sizeof(uint64_t));
    dma = calloc(words, sizeof(uint64_t));
    before = malloc(vm_ram_size(f->ram));
    assert_int_equal(iommu_dirty_start(d, 4096, NULL, 0), 0);
    vm_ram_dirty_collect(f->ram, cpu); /* clear both logs, then take the baseline */
    assert_int_equal(iommu_dirty_report(d, 0, vm_ram_size(f->ram), 4096, dma), 0);
    memset(cpu, 0, words * sizeof(uint64_t));
    memcpy(before, vm_ram_host(f->ram), vm_ram_size(f->ram));

    assert_int_equal(workload_vcpus_start(f->w), 0);
    assert_int_equal(workload_wait(f->w, 120000), 0);
    assert_int_equal(workload_shutdown(f->w), 0); /* the device is idle after STOP_QP */
    vm_ram_dirty_collect(f->ram, cpu);
    assert_int_equal(iommu_dirty_report(d, 0, vm_ram_size(f->ram), 4096, dma), 0);
    for (uint64_t p = 0; p < pages; p++) {
        int logged = ((cpu[p / 64] | dma[p / 64]) >> (p % 64)) & 1;
        if (memcmp(before + p * 4096, vm_ram_host(f->ram) + p * 4096, 4096) == 0)
            continue;
        changed++;
        if (!logged && unlogged++ == 0)
            print_error("page %llu (gpa 0x%llx) changed but is in neither log\n",
                        (unsigned long long)p, (unsigned long long)(p * 4096));
    }
    assert_int_equal(iommu_dirty_stop(d), 0);
    assert_true(changed > 0);
    assert_int_equal(unlogged, 0);
    assert_all_verified_once(f->w, c.jobs);
    free(before);
    free(cpu);
    free(dma);
    fixture_free(f);
}

/* A transport that loses the first SQ doorbell of queue 0 on the way (in
 * BAR2, or in BAR4 when the device isolates doorbells). */
struct lossy_io {
    const struct vf_io *real;
    int dropped;
};

static int lossy_drops(struct lossy_io *l, const void *data)
{
    uint64_t v;

    memcpy(&v, data, 8);
    if ((v & 0xfff) == 0 && ((v >> 12) & 0xf) == QM_DB_CMD_SQ && !l->dropped) {
        l->dropped = 1;
        return 1;
    }
    return 0;
}

static int lossy_db_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct lossy_io *l = opaque;

    if (off == QM_DB_SQCQ && size == 8 && lossy_drops(l, data))
        return 0;
    return l->real->db_write(l->real->opaque, off, data, size);
}

static int lossy_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct lossy_io *l = opaque;
    return l->real->mmio_read(l->real->opaque, off, data, size);
}

static int lossy_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct lossy_io *l = opaque;

    if (off == QM_DB_SQCQ && size == 8 && lossy_drops(l, data))
        return 0;
    return l->real->mmio_write(l->real->opaque, off, data, size);
}

static int lossy_irq_wait(void *opaque, unsigned vector, int timeout_ms)
{
    struct lossy_io *l = opaque;
    return l->real->irq_wait(l->real->opaque, vector, timeout_ms);
}

static void test_a_job_that_never_completes_is_declared_lost_and_fails_the_run(void **state)
{
    struct workload_config c;
    struct fixture *f;
    struct lossy_io l = {0};
    struct vf_io io = {.mmio_read = lossy_read,
                       .mmio_write = lossy_write,
                       .irq_wait = lossy_irq_wait,
                       .db_write = lossy_db_write,
                       .opaque = &l};
    struct workload_report r;
    (void)state;

    small_config(&c);
    c.jobs = 3;
    c.qps = 2;
    c.vcpus = 1;
    c.max_size = 4096;
    c.job_timeout_ms = 1000; /* long enough for a healthy small job on a loaded machine */
    f = fixture_new(&c); /* probes through the real transport */
    workload_destroy(f->w);
    l.real = vmm_inproc_vf_io(f->host.vf);
    io.db_pages_size = l.real->db_pages_size;
    /* The same guest, now behind the lossy transport. */
    assert_int_equal(workload_attach(f->g, &io, &f->w), 0);
    assert_int_equal(workload_vcpus_start(f->w), 0);
    assert_int_equal(workload_wait(f->w, 60000), 0);
    assert_int_equal(l.dropped, 1);
    workload_report_get(f->w, &r);
    /* Job 0's doorbell was lost, so it timed out; job 1's doorbell moved the
     * tail past it and it completed late: counted, yet the job failed. */
    assert_int_equal(r.jobs_failed, 1);
    assert_int_equal(r.first_failed_job, 0);
    assert_non_null(strstr(r.first_failure, "never completed"));
    assert_int_equal(r.jobs_verified, 2);
    assert_int_equal(workload_shutdown(f->w), 0);
    workload_report_get(f->w, &r);
    assert_int_equal(r.jobs_lost, 0);
    assert_int_equal(r.jobs_duplicated, 0);
    fixture_free(f);
}

/* A transport whose MSI wait ignores its timeout: only a firing or a wake
 * ends it (or 600 s, past the test's own time limit), as for a guest that
 * sleeps until its interrupt. The last completion is followed by no MSI, so
 * without a wake when the last vCPU is done the wait at the end would hang. */
struct patient_io {
    const struct vf_io *real;
    atomic_int wakes, woken;
};

static int patient_irq_wait(void *opaque, unsigned vector, int timeout_ms)
{
    struct patient_io *p = opaque;
    int ret = -ETIMEDOUT;
    (void)timeout_ms;

    for (int i = 0; i < 60000 && ret == -ETIMEDOUT; i++)
        ret = p->real->irq_wait(p->real->opaque, vector, 10);
    if (ret == -EINTR)
        atomic_fetch_add(&p->woken, 1);
    return ret;
}

static void patient_irq_wake(void *opaque)
{
    struct patient_io *p = opaque;

    atomic_fetch_add(&p->wakes, 1);
    p->real->irq_wake(p->real->opaque);
}

static int patient_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct patient_io *p = opaque;
    return p->real->mmio_read(p->real->opaque, off, data, size);
}

static int patient_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct patient_io *p = opaque;
    return p->real->mmio_write(p->real->opaque, off, data, size);
}

static int patient_db_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct patient_io *p = opaque;
    return p->real->db_write(p->real->opaque, off, data, size);
}

/* A pause must not wait for the interrupt thread's MSI wait to time out:
 * it wakes that wait, which takes no firing and counts no interrupt. */
static void test_a_pause_wakes_the_interrupt_thread_out_of_its_msi_wait(void **state)
{
    struct workload_config c;
    struct fixture *f;
    struct patient_io p = {0};
    struct vf_io io = {.mmio_read = patient_read,
                       .mmio_write = patient_write,
                       .irq_wait = patient_irq_wait,
                       .irq_wake = patient_irq_wake,
                       .db_write = patient_db_write,
                       .opaque = &p};
    struct workload_report r;
    (void)state;

    small_config(&c);
    c.jobs = 60;
    c.vcpus = 2;
    f = fixture_new(&c);
    workload_destroy(f->w);
    p.real = vmm_inproc_vf_io(f->host.vf);
    io.db_pages_size = p.real->db_pages_size;
    assert_int_equal(workload_attach(f->g, &io, &f->w), 0);
    assert_int_equal(workload_vcpus_start(f->w), 0);
    for (int round = 1; round <= 4 && !workload_done(f->w); round++) {
        uint64_t t0;

        wl_wait_steps(f->w, (uint64_t)round * 40);
        t0 = am_now_ns();
        assert_int_equal(workload_vcpus_pause(f->w), 0);
        print_message("pause %d took %llu us\n", round, (unsigned long long)((am_now_ns() - t0) / 1000));
        assert_int_equal(atomic_load(&p.wakes), round);
        assert_int_equal(workload_check_paused(f->w, NULL, 0), 0);
        assert_int_equal(workload_vcpus_resume(f->w, NULL, NULL), 0);
    }
    assert_int_equal(workload_wait(f->w, 120000), 0);
    assert_int_equal(workload_shutdown(f->w), 0);
    assert_all_verified_once(f->w, c.jobs);
    workload_report_get(f->w, &r);
    assert_int_equal(r.driver.spurious_irqs, 0);
    /* Every wake ended a wait, or is still pending for one that never came
     * (a wait cannot end twice on one wake). */
    assert_true(atomic_load(&p.woken) <= atomic_load(&p.wakes));
    fixture_free(f);
}

static void test_config_check_names_what_is_wrong(void **state)
{
    struct workload_config c;
    char why[128];
    struct guest_ram tiny = {.host = (uint8_t *)why, .size = sizeof(why)};
    struct vf_io io = {0};
    struct workload *w = NULL;
    (void)state;

    workload_config_default(&c);
    assert_int_equal(workload_config_check(&c, why, sizeof(why)), 0);
    assert_int_equal(c.jobs, 2000);
    assert_int_equal(c.qps, 4);
    assert_int_equal(c.min_size, 1024);
    assert_int_equal(c.max_size, 1u << 20);
    c.qps = 3;
    assert_int_equal(workload_config_check(&c, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "qps"));
    workload_config_default(&c);
    c.min_size = 2000;
    c.max_size = 1000;
    assert_int_equal(workload_config_check(&c, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "size"));
    workload_config_default(&c);
    c.jobs = 0;
    assert_int_equal(workload_config_check(&c, why, sizeof(why)), -EINVAL);
    assert_int_equal(workload_ram_size(&c), 0);
    workload_config_default(&c);
    c.max_size = WORKLOAD_MAX_SIZE + 1;
    assert_int_equal(workload_config_check(&c, NULL, 0), -EINVAL);
    workload_config_default(&c);
    assert_int_equal(c.stream_percent, 0);
    c.stream_percent = 101;
    assert_int_equal(workload_config_check(&c, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "stream"));
    workload_config_default(&c);
    assert_int_equal(workload_create(&c, &tiny, &io, &w), -ENOSPC);
    assert_null(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_small_run_verifies_every_job_exactly_once),
        cmocka_unit_test(test_the_largest_inputs_on_sgl_chains_verify),
        cmocka_unit_test(test_the_same_seed_gives_the_same_jobs),
        cmocka_unit_test(test_pausing_mid_run_leaves_nothing_half_submitted_and_resume_finishes),
        cmocka_unit_test(test_a_guest_reattached_from_ram_alone_finishes_the_run),
        cmocka_unit_test(test_resume_on_ram_without_a_workload_is_refused_and_stays_paused),
        cmocka_unit_test(test_a_guest_resumed_on_a_copy_behind_another_device_finishes_exactly_once),
        cmocka_unit_test(test_every_changed_page_is_in_the_cpu_or_the_dma_dirty_log),
        cmocka_unit_test(test_a_job_that_never_completes_is_declared_lost_and_fails_the_run),
        cmocka_unit_test(test_a_pause_wakes_the_interrupt_thread_out_of_its_msi_wait),
        cmocka_unit_test(test_config_check_names_what_is_wrong),
        cmocka_unit_test(test_a_run_of_stream_jobs_verifies_every_stream_and_piece_once),
        cmocka_unit_test(test_a_mix_with_stream_jobs_keeps_the_other_jobs_as_they_were),
        cmocka_unit_test(test_streams_cut_by_migrations_resume_and_inflate_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
