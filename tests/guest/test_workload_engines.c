/* The guest workload on SEC and HPRE VFs: every job's two operations
 * checked against libcrypto, exactly once per tag; a guest migrated to a
 * copy behind another device of the same engine finishes exactly once (also
 * re-attached from RAM alone); the checker outside the guest agrees with
 * the device and catches a flipped byte; configs that cannot run are
 * refused with a reason; a workload refuses a VF of another engine. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/common.h"
#include "guest/workload.h"
#include "mig/mig.h"
#include "qm/qm.h"
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
    /* Results exported by the sink (job's first operation), checked later. */
    struct workload_checker *checker;
    unsigned sink_calls, sink_bad;
};

static void engine_config(struct workload_config *c, enum guest_engine e, uint32_t jobs)
{
    workload_config_default(c);
    c->engine = e;
    c->jobs = jobs;
    c->min_size = 1;
    c->max_size = 20u << 10;
    c->seed = 11;
}

static void dev_config(struct qm_dev_config *dc, enum guest_engine e)
{
    qm_dev_config_default(dc);
    dc->engine = e == GUEST_ENGINE_SEC ? QM_ENGINE_SEC : e == GUEST_ENGINE_HPRE ? QM_ENGINE_HPRE
                                                                             : QM_ENGINE_ZIP;
}

/* The result sink: what the demo's ledger would get, checked right away by
 * a checker of its own (vCPU threads call it; the counters are atomic). */
static void sink(void *opaque, const struct workload_result *r)
{
    struct fixture *f = opaque;

    __atomic_fetch_add(&f->sink_calls, 1, __ATOMIC_RELAXED);
    if (workload_checker_check(f->checker, r->job, (uint32_t)r->type, r->data, r->len) != 0)
        __atomic_fetch_add(&f->sink_bad, 1, __ATOMIC_RELAXED);
}

static struct fixture *fixture_new(const struct workload_config *cfg)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct qm_dev_config dc;

    assert_non_null(f);
    f->cfg = *cfg;
    assert_int_equal(vm_ram_create(AM_ALIGN_UP(workload_ram_size(cfg), VM_RAM_PAGE_SIZE), &f->ram), 0);
    f->g = vm_ram_guest(f->ram);
    dev_config(&dc, (enum guest_engine)cfg->engine);
    assert_int_equal(vmm_inproc_host_create(&dc, VF, f->g, &f->host), 0);
    assert_int_equal(workload_create(cfg, f->g, vmm_inproc_vf_io(f->host.vf), &f->w), 0);
    assert_int_equal(workload_checker_new(cfg, &f->checker), 0);
    workload_result_sink(f->w, sink, f);
    return f;
}

static void fixture_free(struct fixture *f)
{
    workload_destroy(f->w);
    workload_checker_free(f->checker);
    vmm_inproc_host_destroy(&f->host);
    vm_ram_destroy(f->ram);
    free(f);
}

static void assert_all_verified_once(const struct fixture *f, uint64_t jobs)
{
    struct workload_report r;

    workload_report_get(f->w, &r);
    if (r.jobs_failed)
        fail_msg("job %llu failed: %s", (unsigned long long)r.first_failed_job, r.first_failure);
    assert_int_equal(r.jobs, jobs);
    assert_int_equal(r.jobs_submitted, jobs);
    assert_int_equal(r.jobs_completed, jobs);
    assert_int_equal(r.jobs_verified, jobs);
    assert_int_equal(r.jobs_duplicated, 0);
    assert_int_equal(r.jobs_lost, 0);
    assert_int_equal(r.stray_completions, 0);
    assert_int_equal(r.driver.bad_cqes, 0);
    assert_int_equal(r.queues_fatal, 0);
    assert_int_equal(r.jobs_by_type[0] + r.jobs_by_type[1] + r.jobs_by_type[2] + r.jobs_by_type[3],
                     jobs);
    /* Every kind of the engine ran. */
    for (unsigned k = 0; k < 4; k++)
        if (r.jobs_by_type[k] == 0)
            fail_msg("no %s job ran", workload_kind_name(&f->cfg, k));
}

static void small_run(enum guest_engine e)
{
    struct workload_config c;
    struct fixture *f;
    struct workload_report r;

    engine_config(&c, e, 48);
    f = fixture_new(&c);
    assert_int_equal(workload_vcpus_start(f->w), 0);
    assert_int_equal(workload_wait(f->w, 120000), 0);
    assert_int_equal(workload_shutdown(f->w), 0);
    assert_all_verified_once(f, c.jobs);
    workload_report_get(f->w, &r);
    assert_int_equal(r.driver.cqes, 2 * c.jobs); /* two operations a job */
    assert_int_equal(f->sink_calls, c.jobs);
    assert_int_equal(f->sink_bad, 0);
    assert_true(r.bytes_in > 0 && r.bytes_out > 0);
    fixture_free(f);
}

static void test_a_small_sec_run_verifies_every_job_exactly_once(void **state)
{
    (void)state;
    small_run(GUEST_ENGINE_SEC);
}

static void test_a_small_hpre_run_verifies_every_job_exactly_once(void **state)
{
    (void)state;
    small_run(GUEST_ENGINE_HPRE);
}

/* Two hops A -> B -> A mid-run, the second guest bound by workload_attach
 * on the RAM copy alone (a new VMM process), every job exactly once. */
static void migrated_run(enum guest_engine e)
{
    struct workload_config c;
    struct fixture *f;
    struct vm_ram *b_ram;
    struct vmm_inproc_host b_host;
    struct qm_dev_config dc;
    struct workload_report r;
    char why[160] = "";
    unsigned in_flight = 0;

    engine_config(&c, e, 90);
    f = fixture_new(&c);
    assert_int_equal(vm_ram_create(vm_ram_size(f->ram), &b_ram), 0);
    dev_config(&dc, e);
    assert_int_equal(vmm_inproc_host_create(&dc, VF, vm_ram_guest(b_ram), &b_host), 0);
    assert_int_equal(workload_vcpus_start(f->w), 0);
    for (unsigned hop = 0; hop < 2; hop++) {
        wl_wait_steps(f->w, 120 + hop * 150);
        assert_int_equal(workload_vcpus_pause(f->w), 0);
        if (workload_check_paused(f->w, why, sizeof(why)) != 0)
            fail_msg("paused guest is inconsistent: %s", why);
        for (unsigned q = 0; q < c.qps; q++)
            in_flight += guest_vf_qp_inflight(workload_vf(f->w), q);
        if (hop == 0) {
            wl_migrate_stop_and_copy(VF, &f->host, f->ram, &b_host, b_ram);
            /* A new VMM on B: only the RAM copy says what the guest was doing. */
            workload_destroy(f->w);
            f->w = NULL;
            assert_int_equal(workload_attach(vm_ram_guest(b_ram), vmm_inproc_vf_io(b_host.vf),
                                             &f->w), 0);
            assert_int_equal(workload_config_get(f->w)->engine, e);
            workload_result_sink(f->w, sink, f);
            assert_int_equal(workload_vcpus_start(f->w), 0);
        } else {
            wl_migrate_stop_and_copy(VF, &b_host, b_ram, &f->host, f->ram);
            assert_int_equal(workload_vcpus_resume(f->w, f->g, vmm_inproc_vf_io(f->host.vf)), 0);
        }
    }
    assert_int_equal(workload_wait(f->w, 120000), 0);
    assert_int_equal(workload_shutdown(f->w), 0);
    assert_all_verified_once(f, c.jobs);
    workload_report_get(f->w, &r);
    assert_int_equal(f->sink_bad, 0);
    /* A job whose first result was exported before a hop is exported once. */
    assert_int_equal(f->sink_calls, c.jobs);
    print_message("%s: %u SQEs in flight at the two pauses\n", workload_engine_name(e), in_flight);
    fixture_free(f);
    vmm_inproc_host_destroy(&b_host);
    vm_ram_destroy(b_ram);
}

static void test_a_sec_guest_migrated_twice_finishes_exactly_once(void **state)
{
    (void)state;
    migrated_run(GUEST_ENGINE_SEC);
}

static void test_an_hpre_guest_migrated_twice_finishes_exactly_once(void **state)
{
    (void)state;
    migrated_run(GUEST_ENGINE_HPRE);
}

/* Keeps a copy of job 0's exported result. */
struct kept {
    uint8_t data[4096];
    uint32_t len, type;
    int have;
};

static void keep_sink(void *opaque, const struct workload_result *r)
{
    struct kept *k = opaque;

    if (r->job == 0 && r->len <= sizeof(k->data)) {
        memcpy(k->data, r->data, r->len);
        k->len = r->len;
        k->type = (uint32_t)r->type;
        k->have = 1;
    }
}

/* The checker outside the guest: a second one, made from the config
 * alone, accepts the device's result of job 0 and refuses it with a byte
 * changed, a byte short, another kind, or for another job. */
static void checker_catches(enum guest_engine e)
{
    struct workload_config c;
    struct fixture *f;
    struct workload_checker *other;
    struct kept k = {0};

    engine_config(&c, e, 3);
    c.vcpus = 1;
    c.max_size = 2048;
    f = fixture_new(&c);
    workload_result_sink(f->w, keep_sink, &k);
    assert_int_equal(workload_vcpus_start(f->w), 0);
    assert_int_equal(workload_wait(f->w, 120000), 0);
    assert_true(k.have && k.len > 0);
    assert_int_equal(workload_checker_new(&c, &other), 0);
    assert_int_equal(workload_checker_check(other, 0, k.type, k.data, k.len), 0);
    assert_int_equal(workload_checker_check(other, 0, k.type, k.data, k.len - 1), -EBADMSG);
    assert_int_equal(workload_checker_check(other, 0, (k.type + 1) % 4, k.data, k.len), -EBADMSG);
    assert_int_equal(workload_checker_check(other, 1, k.type, k.data, k.len), -EBADMSG);
    assert_int_equal(workload_checker_check(other, c.jobs, k.type, k.data, k.len), -EINVAL);
    k.data[k.len - 1] ^= 1;
    assert_int_equal(workload_checker_check(other, 0, k.type, k.data, k.len), -EBADMSG);
    workload_checker_free(other);
    fixture_free(f);
}

static void test_the_checker_refuses_wrong_results_and_jobs(void **state)
{
    (void)state;
    checker_catches(GUEST_ENGINE_SEC);
    checker_catches(GUEST_ENGINE_HPRE);
}

/* The sink's data, flipped by one bit, fails the checker (a fixture whose
 * sink corrupts before checking). */
static void flip_sink(void *opaque, const struct workload_result *r)
{
    struct fixture *f = opaque;
    uint8_t *copy = malloc(r->len);

    assert_non_null(copy);
    memcpy(copy, r->data, r->len);
    copy[r->len / 2] ^= 0x10;
    __atomic_fetch_add(&f->sink_calls, 1, __ATOMIC_RELAXED);
    if (workload_checker_check(f->checker, r->job, (uint32_t)r->type, copy, r->len) == -EBADMSG)
        __atomic_fetch_add(&f->sink_bad, 1, __ATOMIC_RELAXED);
    free(copy);
}

static void test_a_flipped_bit_in_a_result_fails_the_outside_check(void **state)
{
    const enum guest_engine engines[] = {GUEST_ENGINE_SEC, GUEST_ENGINE_HPRE};
    (void)state;

    for (size_t i = 0; i < AM_ARRAY_SIZE(engines); i++) {
        struct workload_config c;
        struct fixture *f;

        engine_config(&c, engines[i], 12);
        f = fixture_new(&c);
        workload_result_sink(f->w, flip_sink, f);
        assert_int_equal(workload_vcpus_start(f->w), 0);
        assert_int_equal(workload_wait(f->w, 120000), 0);
        assert_int_equal(f->sink_calls, c.jobs);
        assert_int_equal(f->sink_bad, c.jobs); /* every corrupted result caught */
        fixture_free(f);
    }
}

static void test_a_workload_refuses_a_vf_of_another_engine(void **state)
{
    struct workload_config c;
    struct vm_ram *ram;
    struct vmm_inproc_host host;
    struct qm_dev_config dc;
    struct workload *w = NULL;
    (void)state;

    /* SEC jobs on a ZIP VF and HPRE jobs on a SEC VF: the probe says no. */
    engine_config(&c, GUEST_ENGINE_SEC, 4);
    assert_int_equal(vm_ram_create(AM_ALIGN_UP(workload_ram_size(&c), VM_RAM_PAGE_SIZE), &ram), 0);
    dev_config(&dc, GUEST_ENGINE_ZIP);
    assert_int_equal(vmm_inproc_host_create(&dc, VF, vm_ram_guest(ram), &host), 0);
    assert_int_equal(workload_create(&c, vm_ram_guest(ram), vmm_inproc_vf_io(host.vf), &w), -ENODEV);
    vmm_inproc_host_destroy(&host);
    vm_ram_destroy(ram);

    engine_config(&c, GUEST_ENGINE_HPRE, 4);
    assert_int_equal(vm_ram_create(AM_ALIGN_UP(workload_ram_size(&c), VM_RAM_PAGE_SIZE), &ram), 0);
    dev_config(&dc, GUEST_ENGINE_SEC);
    assert_int_equal(vmm_inproc_host_create(&dc, VF, vm_ram_guest(ram), &host), 0);
    assert_int_equal(workload_create(&c, vm_ram_guest(ram), vmm_inproc_vf_io(host.vf), &w), -ENODEV);
    vmm_inproc_host_destroy(&host);
    vm_ram_destroy(ram);
}

static void test_configs_that_cannot_run_are_refused_with_a_reason(void **state)
{
    struct workload_config c;
    struct workload_checker *ck = NULL;
    char why[128];
    (void)state;

    engine_config(&c, GUEST_ENGINE_SEC, 10);
    assert_int_equal(workload_config_check(&c, why, sizeof(why)), 0);
    c.stream_percent = 10;
    assert_int_equal(workload_config_check(&c, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "stream"));
    assert_int_equal(workload_ram_size(&c), 0);
    c.stream_percent = 0;
    c.engine = 3;
    assert_int_equal(workload_config_check(&c, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "engine"));
    assert_int_equal(workload_checker_new(&c, &ck), -EINVAL);
    c.engine = GUEST_ENGINE_ZIP; /* ZIP's results are zlib's to check */
    assert_int_equal(workload_checker_new(&c, &ck), -EINVAL);
    assert_null(ck);
    assert_string_equal(workload_engine_name(GUEST_ENGINE_HPRE), "hpre");
    assert_string_equal(workload_engine_name(7), "?");
    c.engine = GUEST_ENGINE_HPRE;
    assert_string_equal(workload_kind_name(&c, 3), "x25519");
    assert_null(workload_kind_name(&c, 4));
    c.engine = GUEST_ENGINE_SEC;
    assert_string_equal(workload_kind_name(&c, 3), "gcm(aes)");
    c.engine = GUEST_ENGINE_ZIP;
    assert_string_equal(workload_kind_name(&c, 1), "deflate");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_small_sec_run_verifies_every_job_exactly_once),
        cmocka_unit_test(test_a_small_hpre_run_verifies_every_job_exactly_once),
        cmocka_unit_test(test_a_sec_guest_migrated_twice_finishes_exactly_once),
        cmocka_unit_test(test_an_hpre_guest_migrated_twice_finishes_exactly_once),
        cmocka_unit_test(test_the_checker_refuses_wrong_results_and_jobs),
        cmocka_unit_test(test_a_flipped_bit_in_a_result_fails_the_outside_check),
        cmocka_unit_test(test_a_workload_refuses_a_vf_of_another_engine),
        cmocka_unit_test(test_configs_that_cannot_run_are_refused_with_a_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
