/* The in-process live migration orchestrator (vmm/migrate_inproc.h): a
 * running guest moves between two device instances, back and forth, while
 * its jobs are in flight, and every job completes exactly once; an
 * incompatible destination refuses before any downtime; a failure after any
 * step leaves the source running with nothing lost; at the resume the
 * destination's RAM is byte for byte the stopped source's. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/common.h"
#include "guest/guest.h"
#include "guest/workload.h"
#include "mig/stream.h"
#include "vmm/migrate_inproc.h"

#define VF 1u

/* ---- two hosts and the workload ---- */

struct pair {
    struct vm_ram *ram[2];
    struct vmm_mig_host *host[2];
};

static void pair_create(struct pair *p, unsigned qps_a, unsigned qps_b, uint64_t ram_size)
{
    unsigned qps[2] = {qps_a, qps_b};

    for (int i = 0; i < 2; i++) {
        struct vmm_mig_host_config hc;

        vmm_mig_host_config_default(&hc);
        hc.dev.num_vfs = 1;
        hc.dev.qps_per_vf = qps[i];
        assert_int_equal(vm_ram_create(ram_size, &p->ram[i]), 0);
        assert_int_equal(vmm_mig_host_create(&hc, p->ram[i], &p->host[i]), 0);
    }
}

static void pair_destroy(struct pair *p)
{
    for (int i = 0; i < 2; i++) {
        vmm_mig_host_destroy(p->host[i]);
        vm_ram_destroy(p->ram[i]);
    }
}

static void workload_small(struct workload_config *c, unsigned qps, unsigned jobs)
{
    workload_config_default(c);
    c->jobs = jobs;
    c->qps = qps;
    c->vcpus = 4;
    c->min_size = 512;
    c->max_size = 48u << 10;
    c->seed = 11;
    c->sgl_percent = 30;
}

static uint64_t ram_for(const struct workload_config *c)
{
    return AM_ALIGN_UP(workload_ram_size(c), VM_RAM_PAGE_SIZE);
}

static void assert_all_verified_once(struct workload *w, uint64_t jobs)
{
    struct workload_report r;

    workload_report_get(w, &r);
    if (r.jobs_verified != jobs)
        fail_msg("%llu of %llu jobs verified; first failure: job %llu: %s",
                 (unsigned long long)r.jobs_verified, (unsigned long long)jobs,
                 (unsigned long long)r.first_failed_job, r.first_failure);
    assert_int_equal(r.jobs_completed, jobs);
    assert_int_equal(r.jobs_failed, 0);
    assert_int_equal(r.jobs_duplicated, 0);
    assert_int_equal(r.jobs_lost, 0);
    assert_int_equal(r.stray_completions, 0);
    assert_int_equal(r.driver.bad_cqes, 0);
}

static void wait_steps(struct workload *w, uint64_t steps)
{
    while (workload_steps(w) < steps && workload_wait(w, 2) == -ETIMEDOUT)
        ;
}

static int64_t json_int(json_object *o, const char *key)
{
    json_object *v;

    if (!json_object_object_get_ex(o, key, &v))
        fail_msg("migration_log entry without %s", key);
    return json_object_get_int64(v);
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        assert_int_equal(unlink(path), 0);
    }
    closedir(d);
    assert_int_equal(rmdir(dir), 0);
}

static void assert_saved_stream_decodes(const char *dir, unsigned n, int64_t bytes)
{
    uint8_t buf[MIG_STREAM_MAX + 1];
    struct mig_stream_content content;
    char path[512], why[160] = "";
    FILE *f;
    size_t len;

    snprintf(path, sizeof(path), "%s/migration-%u.bin", dir, n);
    f = fopen(path, "rb");
    assert_non_null(f);
    len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    assert_int_equal(len, bytes);
    if (mig_stream_decode(buf, len, &content, why, sizeof(why)) != 0)
        fail_msg("%s does not decode: %s", path, why);
    assert_true(content.has_state);
}

/* M migrations during a run on qps queue pairs; every one succeeds, every
 * job completes once, the log and the saved streams say what happened. */
static void migrate_back_and_forth(unsigned qps, unsigned jobs, unsigned m)
{
    struct workload_config c;
    struct vmm_mig_plan plan;
    struct workload *w;
    struct pair p;
    char dir[] = "/tmp/accmig-mig-XXXXXX";
    unsigned done = 99;
    int on_b = -1;

    workload_small(&c, qps, jobs);
    pair_create(&p, qps, qps, ram_for(&c));
    assert_non_null(mkdtemp(dir));
    assert_int_equal(workload_create(&c, vm_ram_guest(p.ram[0]), vmm_mig_host_io(p.host[0]), &w), 0);
    assert_int_equal(workload_vcpus_start(w), 0);
    memset(&plan, 0, sizeof(plan));
    plan.migrations = m;
    vmm_mig_config_default(&plan.mig);
    plan.save_dir = dir;
    plan.log = json_object_new_array();
    assert_int_equal(vmm_mig_workload_run(w, p.host[0], p.host[1], &plan, &done, &on_b), 0);
    assert_int_equal(done, m);
    assert_int_equal(on_b, (int)(m % 2));
    assert_int_equal(workload_shutdown(w), 0);
    assert_all_verified_once(w, jobs);
    assert_int_equal(json_object_array_length(plan.log), m);
    for (unsigned k = 0; k < m; k++) {
        json_object *e = json_object_array_get_idx(plan.log, k), *v;
        int64_t bytes = json_int(e, "device_state_bytes");

        assert_int_equal(json_int(e, "n"), k + 1);
        assert_true(json_object_object_get_ex(e, "direction", &v));
        assert_string_equal(json_object_get_string(v), k % 2 ? "B->A" : "A->B");
        assert_true(json_object_object_get_ex(e, "ok", &v) && json_object_get_boolean(v));
        assert_true(bytes > json_int(e, "device_head_bytes") && bytes <= MIG_STREAM_MAX);
        assert_int_equal(json_int(e, "device_head_bytes"), 40);
        assert_true(json_int(e, "precopy_rounds") >= 1);
        assert_true(json_int(e, "ram_bytes") > 0);
        /* STOP_COPY's CACHE_WB writes queue positions into the SQC/CQC
         * tables: the last report, taken after it, holds them. */
        assert_true(json_int(e, "last_dma_pages") >= 1);
        assert_true(json_int(e, "downtime_us") >= json_int(e, "stop_to_run_us"));
        json_int(e, "quiesce_us");
        json_int(e, "save_us");
        json_int(e, "restore_us");
        json_int(e, "resume_us");
        assert_saved_stream_decodes(dir, k + 1, bytes);
    }
    json_object_put(plan.log);
    workload_destroy(w);
    pair_destroy(&p);
    rm_dir(dir);
}

static void test_migrated_back_and_forth_mid_run_on_two_queue_pairs_every_job_completes_once(void **state)
{
    (void)state;
    migrate_back_and_forth(2, 160, 4);
}

static void test_migrated_back_and_forth_mid_run_on_64_queue_pairs_every_job_completes_once(void **state)
{
    (void)state;
    migrate_back_and_forth(64, 192, 3);
}

static void test_a_destination_with_another_qp_count_refuses_at_match_and_the_source_finishes(void **state)
{
    struct workload_config c;
    struct vmm_mig_config mc;
    struct vmm_mig_guest g;
    struct vmm_mig_stats st;
    struct workload *w;
    struct pair p;
    (void)state;

    workload_small(&c, 4, 40);
    pair_create(&p, 4, 8, ram_for(&c));
    assert_int_equal(workload_create(&c, vm_ram_guest(p.ram[0]), vmm_mig_host_io(p.host[0]), &w), 0);
    assert_int_equal(workload_vcpus_start(w), 0);
    wait_steps(w, 40);
    vmm_mig_config_default(&mc);
    g = vmm_mig_guest_of_workload(w);
    assert_int_equal(vmm_mig_run(p.host[0], p.host[1], &g, &mc, &st), -EINVAL);
    assert_int_equal(st.failed_step, VMM_MIG_STEP_MATCH);
    assert_non_null(strstr(st.error, "qp count"));
    assert_int_equal(st.downtime_ns, 0); /* refused before the vCPUs stopped */
    assert_int_equal(st.ram_bytes, 0);
    assert_int_equal(mig_get_state(vmm_mig_host_mig(p.host[0])), VFIO_MIG_STATE_RUNNING);
    assert_int_equal(mig_get_state(vmm_mig_host_mig(p.host[1])), VFIO_MIG_STATE_RUNNING);
    assert_int_equal(workload_wait(w, 120000), 0);
    assert_int_equal(workload_shutdown(w), 0);
    assert_all_verified_once(w, c.jobs);
    workload_destroy(w);
    pair_destroy(&p);
}

static void test_a_failure_after_any_step_leaves_the_source_running_and_nothing_lost(void **state)
{
    struct workload_config c;
    struct vmm_mig_config mc;
    struct vmm_mig_guest g;
    struct vmm_mig_stats st;
    struct workload *w;
    struct pair p;
    (void)state;

    workload_small(&c, 4, 120);
    pair_create(&p, 4, 4, ram_for(&c));
    assert_int_equal(workload_create(&c, vm_ram_guest(p.ram[0]), vmm_mig_host_io(p.host[0]), &w), 0);
    assert_int_equal(workload_vcpus_start(w), 0);
    g = vmm_mig_guest_of_workload(w);
    for (enum vmm_mig_step s = VMM_MIG_STEP_DST_RESUMING; s < VMM_MIG_STEP_VCPUS_RESUME; s++) {
        vmm_mig_config_default(&mc);
        mc.fail_after = s;
        wait_steps(w, workload_steps(w) + 20);
        assert_int_equal(vmm_mig_run(p.host[0], p.host[1], &g, &mc, &st), -ECANCELED);
        assert_int_equal(st.failed_step, s + 1);
        assert_non_null(strstr(st.error, vmm_mig_step_name(s)));
        assert_int_equal(st.rollback_error, 0);
        assert_int_equal(mig_get_state(vmm_mig_host_mig(p.host[0])), VFIO_MIG_STATE_RUNNING);
        assert_int_equal(mig_get_state(vmm_mig_host_mig(p.host[1])), VFIO_MIG_STATE_RUNNING);
        /* The guest runs on A again: pausing it works (it is not paused). */
        assert_int_equal(workload_vcpus_pause(w), 0);
        assert_int_equal(workload_vcpus_resume(w, NULL, NULL), 0);
    }
    /* After all that, a real migration still works and the run finishes. */
    vmm_mig_config_default(&mc);
    assert_int_equal(vmm_mig_run(p.host[0], p.host[1], &g, &mc, &st), 0);
    assert_int_equal(st.failed_step, VMM_MIG_STEP_NONE);
    assert_int_equal(workload_wait(w, 120000), 0);
    assert_int_equal(workload_shutdown(w), 0);
    assert_all_verified_once(w, c.jobs);
    workload_destroy(w);
    pair_destroy(&p);
}

/* ---- a guest that checks the RAM it is resumed on ----
 *
 * One thread that scribbles on CPU pages (marking them dirty) and now and
 * then runs a compression job to its completion (DMA writes during
 * precopy), never leaving a job in flight at a step boundary. So when the
 * destination resumes, its device has nothing to write, and its RAM must
 * equal the stopped source's byte for byte. */

#define TG_STATE_GPA 0x10000ull
#define TG_IN_LEN 8192u
#define TG_OUT_LEN 16384u
#define TG_SCRIBBLE_PAGES 128u

struct tguest {
    struct vmm_mig_host *host[2];
    unsigned at;
    /* Protects pause_req, parked, stop; cond signals their changes. The
     * fields below are the thread's while it runs, the controller's while
     * it is parked. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool pause_req, parked, stop;
    pthread_t thr;
    struct guest_vf *vf;
    struct guest_ram ram;
    uint64_t seed, jobs, completions, bad, resumes, ram_mismatches;
};

static uint64_t tg_in_gpa(void) { return TG_STATE_GPA + AM_ALIGN_UP(guest_vf_state_size(2), 4096u); }
static uint64_t tg_out_gpa(void) { return tg_in_gpa() + TG_IN_LEN; }
static uint64_t tg_scribble_gpa(void) { return tg_out_gpa() + TG_OUT_LEN; }
static uint64_t tg_ram_size(void) { return tg_scribble_gpa() + TG_SCRIBBLE_PAGES * 4096ull; }

static void tg_on_complete(void *opaque, const struct guest_vf_completion *cpl)
{
    struct tguest *t = opaque;

    if (cpl->tag != t->jobs || cpl->status != 0)
        t->bad++;
    __atomic_fetch_add(&t->completions, 1, __ATOMIC_RELEASE);
}

static void tg_job(struct tguest *t)
{
    struct guest_zip_req req = {
        .type = ZIP_REQ_DEFLATE, .buf_type = ZIP_BUF_FLAT,
        .src = tg_in_gpa(), .dst = tg_out_gpa(), .in_len = TG_IN_LEN,
        .dest_avail = TG_OUT_LEN, .window = 4, .tag = ++t->jobs,
    };
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint64_t deadline = am_now_ns() + 30ull * 1000000000ull, want = t->completions + 1;
    struct timespec ts = {0, 100000};

    /* No cmocka assert here: this runs on the guest's own thread. */
    if (guest_zip_sqe_build(sqe, &req) != 0 || guest_vf_submit(t->vf, 0, sqe) != 0) {
        t->bad++;
        return;
    }
    while (t->completions < want && am_now_ns() < deadline) {
        guest_vf_poll(t->vf, 0);
        nanosleep(&ts, NULL);
    }
    if (t->completions < want)
        t->bad++;
}

static void *tg_main(void *arg)
{
    struct tguest *t = arg;
    struct timespec ts = {0, 200000};

    for (uint64_t i = 0;; i++) {
        uint64_t gpa;

        pthread_mutex_lock(&t->lock);
        if (t->pause_req && !t->stop) {
            t->parked = true;
            pthread_cond_broadcast(&t->cond);
            while (t->pause_req && !t->stop)
                pthread_cond_wait(&t->cond, &t->lock);
            t->parked = false;
        }
        if (t->stop) {
            pthread_mutex_unlock(&t->lock);
            return NULL;
        }
        pthread_mutex_unlock(&t->lock);
        t->seed = t->seed * 6364136223846793005ull + 1442695040888963407ull;
        gpa = tg_scribble_gpa() + ((t->seed >> 33) % TG_SCRIBBLE_PAGES) * 4096u + (t->seed & 4032u);
        memcpy(t->ram.host + gpa, &t->seed, sizeof(t->seed));
        guest_ram_mark_dirty(&t->ram, gpa, sizeof(t->seed));
        if (i % 8 == 0)
            tg_job(t);
        nanosleep(&ts, NULL);
    }
}

static int tg_pause(void *opaque)
{
    struct tguest *t = opaque;

    pthread_mutex_lock(&t->lock);
    t->pause_req = true;
    while (!t->parked)
        pthread_cond_wait(&t->cond, &t->lock);
    pthread_mutex_unlock(&t->lock);
    return 0;
}

static int tg_resume(void *opaque, const struct guest_ram *ram, const struct vf_io *io)
{
    struct tguest *t = opaque;

    if (ram) {
        /* The source is stopped (vCPUs parked, VF in STOP_COPY). */
        if (memcmp(t->ram.host, ram->host, ram->size) != 0)
            t->ram_mismatches++;
        guest_vf_detach(t->vf);
        assert_int_equal(guest_vf_attach(io, ram, TG_STATE_GPA, &t->vf), 0);
        guest_vf_set_complete_cb(t->vf, tg_on_complete, t);
        t->ram = *ram;
        t->at ^= 1;
        t->resumes++;
    }
    pthread_mutex_lock(&t->lock);
    t->pause_req = false;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
    return 0;
}

static void tg_start(struct tguest *t, struct vmm_mig_host *a, struct vmm_mig_host *b)
{
    memset(t, 0, sizeof(*t));
    t->host[0] = a;
    t->host[1] = b;
    t->seed = 5;
    t->ram = *vm_ram_guest(vmm_mig_host_ram(a));
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    workload_data_fill(t->ram.host + tg_in_gpa(), TG_IN_LEN, WORKLOAD_DATA_TEXT, 3);
    guest_ram_mark_dirty(&t->ram, tg_in_gpa(), TG_IN_LEN);
    assert_int_equal(guest_vf_init(vmm_mig_host_io(a), &t->ram, TG_STATE_GPA,
                                   guest_vf_state_size(2), &t->vf), 0);
    guest_vf_set_complete_cb(t->vf, tg_on_complete, t);
    assert_int_equal(guest_vf_qp_start(t->vf, 0, ZIP_ALG_COMPRESS), 0);
    assert_int_equal(pthread_create(&t->thr, NULL, tg_main, t), 0);
}

static void tg_stop(struct tguest *t)
{
    pthread_mutex_lock(&t->lock);
    t->stop = true;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thr, NULL);
    guest_vf_detach(t->vf);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
}

static void tg_wait_jobs(struct tguest *t, uint64_t n)
{
    uint64_t deadline = am_now_ns() + 60ull * 1000000000ull;
    struct timespec ts = {0, 1000000};

    while (__atomic_load_n(&t->completions, __ATOMIC_RELAXED) < n && am_now_ns() < deadline)
        nanosleep(&ts, NULL);
}

static void test_at_resume_the_destination_ram_equals_the_stopped_source_ram(void **state)
{
    struct vmm_mig_config mc;
    struct vmm_mig_guest g;
    struct vmm_mig_stats st;
    struct tguest t;
    struct pair p;
    (void)state;

    pair_create(&p, 2, 2, AM_ALIGN_UP(tg_ram_size(), 4096u));
    tg_start(&t, p.host[0], p.host[1]);
    g = (struct vmm_mig_guest){tg_pause, tg_resume, &t};
    vmm_mig_config_default(&mc);
    for (unsigned k = 0; k < 4; k++) {
        tg_wait_jobs(&t, 3 * (k + 1));
        assert_int_equal(vmm_mig_run(p.host[k % 2], p.host[(k + 1) % 2], &g, &mc, &st), 0);
        assert_true(st.precopy_rounds >= 1 && st.precopy_rounds <= mc.max_rounds);
        assert_true(st.round_pages[0] > 0);
        assert_true(st.last_dma_pages >= 1); /* the CACHE_WB of STOP_COPY */
        assert_true(st.ram_bytes >= st.precopy_bytes);
        assert_int_equal(st.shared_ram, 0);
    }
    tg_wait_jobs(&t, 15);
    tg_stop(&t);
    assert_int_equal(t.resumes, 4);
    assert_int_equal(t.ram_mismatches, 0);
    assert_int_equal(t.bad, 0);
    assert_true(t.completions >= 15);
    pair_destroy(&p);
}

/* Two hosts on one RAM: only the device moves (what bench migrate does). */
static void test_with_shared_ram_only_the_device_moves_and_the_guest_carries_on(void **state)
{
    struct vmm_mig_host_config hc;
    struct vmm_mig_host *h[2];
    struct vmm_mig_config mc;
    struct vmm_mig_guest g;
    struct vmm_mig_stats st;
    struct vm_ram *ram;
    struct tguest t;
    (void)state;

    assert_int_equal(vm_ram_create(AM_ALIGN_UP(tg_ram_size(), 4096u), &ram), 0);
    vmm_mig_host_config_default(&hc);
    hc.dev.num_vfs = 1;
    hc.dev.qps_per_vf = 2;
    assert_int_equal(vmm_mig_host_create(&hc, ram, &h[0]), 0);
    assert_int_equal(vmm_mig_host_create(&hc, ram, &h[1]), 0);
    tg_start(&t, h[0], h[1]);
    g = (struct vmm_mig_guest){tg_pause, tg_resume, &t};
    vmm_mig_config_default(&mc);
    mc.fail_after = VMM_MIG_STEP_RAM_PRECOPY; /* a step shared RAM skips */
    assert_int_equal(vmm_mig_run(h[0], h[1], &g, &mc, &st), -EINVAL);
    mc.fail_after = VMM_MIG_STEP_DST_RUNNING; /* past the commit point there */
    assert_int_equal(vmm_mig_run(h[0], h[1], &g, &mc, &st), -EINVAL);
    mc.fail_after = VMM_MIG_STEP_DST_STATE;
    assert_int_equal(vmm_mig_run(h[0], h[1], &g, &mc, &st), -ECANCELED);
    assert_int_equal(mig_get_state(vmm_mig_host_mig(h[0])), VFIO_MIG_STATE_RUNNING);
    mc.fail_after = VMM_MIG_STEP_NONE;
    for (unsigned k = 0; k < 4; k++) {
        tg_wait_jobs(&t, 2 * (k + 1));
        assert_int_equal(vmm_mig_run(h[k % 2], h[(k + 1) % 2], &g, &mc, &st), 0);
        assert_int_equal(st.shared_ram, 1);
        assert_int_equal(st.ram_bytes, 0);
        assert_int_equal(st.precopy_rounds, 0);
        assert_true(st.device_state_bytes > st.device_head_bytes);
    }
    tg_wait_jobs(&t, 10);
    tg_stop(&t);
    assert_int_equal(t.resumes, 4);
    assert_int_equal(t.ram_mismatches, 0); /* trivially: one RAM */
    assert_int_equal(t.bad, 0);
    assert_true(t.completions >= 10);
    vmm_mig_host_destroy(h[0]);
    vmm_mig_host_destroy(h[1]);
    vm_ram_destroy(ram);
}

/* ---- malformed calls ---- */

static int never_pause(void *opaque)
{
    (void)opaque;
    fail_msg("a refused migration paused the guest");
    return -EIO;
}

static int never_resume(void *opaque, const struct guest_ram *ram, const struct vf_io *io)
{
    (void)opaque;
    (void)ram;
    (void)io;
    fail_msg("a refused migration resumed the guest");
    return -EIO;
}

static void test_bad_arguments_are_refused_before_anything_is_touched(void **state)
{
    struct vmm_mig_guest g = {never_pause, never_resume, NULL}, no_resume = {never_pause, NULL, NULL};
    struct vmm_mig_host_config hc;
    struct vmm_mig_host *other, *h;
    struct vmm_mig_config mc;
    struct vmm_mig_stats st;
    struct vm_ram *other_ram;
    struct pair p;
    (void)state;

    pair_create(&p, 2, 2, 1u << 20);
    vmm_mig_config_default(&mc);
    assert_int_equal(vmm_mig_run(NULL, p.host[1], &g, &mc, &st), -EINVAL);
    assert_int_equal(vmm_mig_run(p.host[0], NULL, &g, &mc, &st), -EINVAL);
    assert_int_equal(vmm_mig_run(p.host[0], p.host[0], &g, &mc, &st), -EINVAL);
    assert_int_equal(vmm_mig_run(p.host[0], p.host[1], NULL, &mc, &st), -EINVAL);
    assert_int_equal(vmm_mig_run(p.host[0], p.host[1], &no_resume, &mc, &st), -EINVAL);
    assert_int_equal(vmm_mig_run(p.host[0], p.host[1], &g, NULL, &st), -EINVAL);
    mc.max_rounds = 0;
    assert_int_equal(vmm_mig_run(p.host[0], p.host[1], &g, &mc, &st), -EINVAL);
    mc.max_rounds = VMM_MIG_MAX_ROUNDS + 1;
    assert_int_equal(vmm_mig_run(p.host[0], p.host[1], &g, &mc, &st), -EINVAL);
    vmm_mig_config_default(&mc);
    mc.fail_after = VMM_MIG_STEP_VCPUS_RESUME; /* the commit point cannot be undone */
    assert_int_equal(vmm_mig_run(p.host[0], p.host[1], &g, &mc, &st), -EINVAL);
    mc.fail_after = (enum vmm_mig_step)99;
    assert_int_equal(vmm_mig_run(p.host[0], p.host[1], &g, &mc, &st), -EINVAL);
    vmm_mig_config_default(&mc);

    /* RAM of another size on the destination. */
    vmm_mig_host_config_default(&hc);
    hc.dev.num_vfs = 1;
    hc.dev.qps_per_vf = 2;
    assert_int_equal(vm_ram_create(2u << 20, &other_ram), 0);
    assert_int_equal(vmm_mig_host_create(&hc, other_ram, &other), 0);
    assert_int_equal(vmm_mig_run(p.host[0], other, &g, &mc, &st), -EINVAL);

    /* A source already in a migration. */
    assert_int_equal(mig_set_state(vmm_mig_host_mig(p.host[0]), VFIO_MIG_STATE_PRE_COPY), 0);
    assert_int_equal(vmm_mig_run(p.host[0], p.host[1], &g, &mc, &st), -EBUSY);
    assert_int_equal(mig_get_state(vmm_mig_host_mig(p.host[0])), VFIO_MIG_STATE_PRE_COPY);
    assert_int_equal(mig_get_state(vmm_mig_host_mig(p.host[1])), VFIO_MIG_STATE_RUNNING);
    assert_int_equal(mig_set_state(vmm_mig_host_mig(p.host[0]), VFIO_MIG_STATE_RUNNING), 0);

    /* Hosts. */
    hc.vf_fn = 2; /* one VF only */
    assert_int_equal(vmm_mig_host_create(&hc, other_ram, &h), -EINVAL);
    hc.vf_fn = 1;
    hc.mode = (enum mig_hw_mode)7;
    assert_int_equal(vmm_mig_host_create(&hc, other_ram, &h), -EINVAL);
    hc.mode = MIG_HW_V4;
    hc.dev.revision = QM_REV_V3; /* v3 silicon has no PF windows */
    assert_int_equal(vmm_mig_host_create(&hc, other_ram, &h), -ENODEV);
    assert_int_equal(vmm_mig_host_create(&hc, NULL, &h), -EINVAL);
    assert_int_equal(vmm_mig_host_wrap(NULL, 1, MIG_HW_V4, other_ram, &h), -EINVAL);
    vmm_mig_host_destroy(NULL);

    vmm_mig_host_destroy(other);
    vm_ram_destroy(other_ram);
    pair_destroy(&p);
}

static void test_every_step_has_its_own_name(void **state)
{
    (void)state;
    for (int i = 0; i < VMM_MIG_STEP_COUNT; i++) {
        assert_string_not_equal(vmm_mig_step_name(i), "?");
        for (int j = 0; j < i; j++)
            assert_string_not_equal(vmm_mig_step_name(i), vmm_mig_step_name(j));
    }
    assert_string_equal(vmm_mig_step_name(VMM_MIG_STEP_COUNT), "?");
    assert_string_equal(vmm_mig_step_name((enum vmm_mig_step)-1), "?");
}

static void test_a_failed_migration_logs_where_and_why(void **state)
{
    struct vmm_mig_stats st;
    json_object *o, *v;
    (void)state;

    memset(&st, 0, sizeof(st));
    st.failed_step = VMM_MIG_STEP_MATCH;
    snprintf(st.error, sizeof(st.error), "stream refused: qp count");
    st.downtime_ns = 1499;
    o = vmm_mig_stats_json(2, "B", "A", -EINVAL, &st);
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "ok", &v) && !json_object_get_boolean(v));
    assert_true(json_object_object_get_ex(o, "failed_step", &v));
    assert_string_equal(json_object_get_string(v), "match");
    assert_true(json_object_object_get_ex(o, "direction", &v));
    assert_string_equal(json_object_get_string(v), "B->A");
    assert_int_equal(json_int(o, "downtime_us"), 1);
    json_object_put(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrated_back_and_forth_mid_run_on_two_queue_pairs_every_job_completes_once),
        cmocka_unit_test(test_migrated_back_and_forth_mid_run_on_64_queue_pairs_every_job_completes_once),
        cmocka_unit_test(test_a_destination_with_another_qp_count_refuses_at_match_and_the_source_finishes),
        cmocka_unit_test(test_a_failure_after_any_step_leaves_the_source_running_and_nothing_lost),
        cmocka_unit_test(test_at_resume_the_destination_ram_equals_the_stopped_source_ram),
        cmocka_unit_test(test_with_shared_ram_only_the_device_moves_and_the_guest_carries_on),
        cmocka_unit_test(test_bad_arguments_are_refused_before_anything_is_touched),
        cmocka_unit_test(test_every_step_has_its_own_name),
        cmocka_unit_test(test_a_failed_migration_logs_where_and_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
