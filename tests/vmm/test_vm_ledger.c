/* The demo's ledger (vmm/ledger.h): results files checked against inputs
 * regenerated from the workload's configuration, with zlib (ZIP) or
 * libcrypto (SEC, HPRE); every way a file can be wrong (a job missing, done
 * twice, bad output, a job or tag the guest never had, a garbled or
 * truncated record) is counted, never crashes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

#include "vmm/ledger.h"

#define JOBS 6u

static struct workload_config cfg_of(void)
{
    struct workload_config c;

    workload_config_default(&c);
    c.jobs = JOBS;
    c.min_size = 1024;
    c.max_size = 32768;
    c.seed = 11;
    return c;
}

/* Job j's input compressed as the device would (its format), into out. */
static uint32_t compress_job(const struct workload_config *c, uint32_t j, uint8_t *out,
                             size_t cap, uint32_t *type)
{
    uint8_t *in = malloc(c->max_size);
    enum zip_req_type t;
    uint32_t len = 0;
    z_stream zs = {0};
    int bits;

    assert_non_null(in);
    assert_int_equal(workload_job_input(c, j, in, c->max_size, &len, &t), 0);
    bits = t == ZIP_REQ_DEFLATE ? -15 : t == ZIP_REQ_ZLIB ? 15 : 31;
    assert_int_equal(deflateInit2(&zs, 1, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = in;
    zs.avail_in = len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    deflateEnd(&zs);
    free(in);
    *type = (uint32_t)t;
    return (uint32_t)zs.total_out;
}

static void put_rec(FILE *f, uint32_t magic, uint32_t job, uint64_t tag, uint32_t type,
                    const uint8_t *data, uint32_t len)
{
    struct vm_ledger_record r = {.magic = magic, .job = job, .tag = tag, .type = type, .len = len};

    assert_int_equal(fwrite(&r, sizeof(r), 1, f), 1);
    assert_int_equal(fwrite(data, 1, len, f), len);
}

static uint64_t tag_of(uint32_t j)
{
    return (UINT64_C(0xacc0) << 48) | j;
}

/* Writes jobs [from, to) correctly into path; flip corrupts job `flip`'s
 * output (UINT32_MAX: none). */
static void write_jobs(const char *path, const struct workload_config *c, uint32_t from,
                       uint32_t to, uint32_t flip, const char *mode)
{
    uint8_t *buf = malloc(1 << 17);
    FILE *f = fopen(path, mode);

    assert_non_null(buf);
    assert_non_null(f);
    for (uint32_t j = from; j < to; j++) {
        uint32_t type, len = compress_job(c, j, buf, 1 << 17, &type);

        if (j == flip)
            buf[len / 2] ^= 0x40;
        put_rec(f, VM_LEDGER_MAGIC, j, tag_of(j), type, buf, len);
    }
    fclose(f);
    free(buf);
}

struct files {
    char a[64], b[64];
};

static int setup(void **state)
{
    struct files *f = calloc(1, sizeof(*f));
    int fd;

    if (!f)
        return -1;
    snprintf(f->a, sizeof(f->a), "/tmp/accmig-ledger-a-XXXXXX");
    snprintf(f->b, sizeof(f->b), "/tmp/accmig-ledger-b-XXXXXX");
    fd = mkstemp(f->a);
    close(fd);
    fd = mkstemp(f->b);
    close(fd);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct files *f = *state;

    unlink(f->a);
    unlink(f->b);
    free(f);
    return 0;
}

static void check(struct files *f, struct vm_ledger *l)
{
    const struct workload_config c = cfg_of();
    const char *files[] = {f->a, f->b, NULL, "/nonexistent/accmig-ledger"};

    assert_int_equal(vm_ledger_check(&c, files, 4, l), 0);
}

static void test_results_split_over_two_vmms_check_clean(void **state)
{
    struct files *f = *state;
    struct workload_config c = cfg_of();
    struct vm_ledger l;

    write_jobs(f->a, &c, 0, 4, UINT32_MAX, "wb");
    write_jobs(f->b, &c, 4, JOBS, UINT32_MAX, "wb");
    check(f, &l);
    assert_int_equal(l.jobs_checked, JOBS);
    assert_int_equal(l.mismatches, 0);
    assert_int_equal(l.records, JOBS);
    assert_string_equal(l.first_problem, "");
}

static void test_a_job_done_on_both_hosts_is_counted_twice(void **state)
{
    struct files *f = *state;
    struct workload_config c = cfg_of();
    struct vm_ledger l;

    write_jobs(f->a, &c, 0, 4, UINT32_MAX, "wb");
    write_jobs(f->b, &c, 3, JOBS, UINT32_MAX, "wb"); /* job 3 on both */
    check(f, &l);
    assert_int_equal(l.duplicated, 1);
    assert_int_equal(l.jobs_checked, JOBS - 1);
    assert_int_equal(l.mismatches, 1);
    assert_non_null(strstr(l.first_problem, "job 3"));
}

static void test_a_missing_job_and_a_bad_output_are_mismatches(void **state)
{
    struct files *f = *state;
    struct workload_config c = cfg_of();
    struct vm_ledger l;

    write_jobs(f->a, &c, 0, 3, 1, "wb"); /* job 1 corrupted */
    write_jobs(f->b, &c, 4, JOBS, UINT32_MAX, "wb"); /* job 3 never came */
    check(f, &l);
    assert_int_equal(l.bad_output, 1);
    assert_int_equal(l.missing, 1);
    assert_int_equal(l.jobs_checked, JOBS - 2);
    assert_int_equal(l.mismatches, 2);
}

static void test_garbled_truncated_and_foreign_records_are_counted_not_trusted(void **state)
{
    struct files *f = *state;
    struct workload_config c = cfg_of();
    uint8_t junk[64] = {1, 2, 3};
    struct vm_ledger l;
    FILE *fp;

    write_jobs(f->a, &c, 0, JOBS, UINT32_MAX, "wb");
    fp = fopen(f->a, "ab");
    assert_non_null(fp);
    put_rec(fp, VM_LEDGER_MAGIC, 99, tag_of(99), 0, junk, sizeof(junk));     /* no such job */
    put_rec(fp, VM_LEDGER_MAGIC, 2, tag_of(2) | 1ull << 32, 0, junk, 8);    /* decompress tag */
    fclose(fp);
    fp = fopen(f->b, "wb");
    assert_non_null(fp);
    put_rec(fp, 0xdeadbeef, 0, tag_of(0), 0, junk, 4);                      /* bad magic */
    fclose(fp);
    check(f, &l);
    assert_int_equal(l.jobs_checked, JOBS);
    assert_int_equal(l.bad_records, 3);
    assert_int_equal(l.mismatches, 3);

    /* A record cut in the middle of its data (a VMM killed mid-write). */
    fp = fopen(f->b, "wb");
    assert_non_null(fp);
    {
        struct vm_ledger_record r = {.magic = VM_LEDGER_MAGIC, .job = 0, .tag = tag_of(0),
                                     .len = 1000};
        assert_int_equal(fwrite(&r, sizeof(r), 1, fp), 1);
        assert_int_equal(fwrite(junk, 1, 10, fp), 10);
    }
    fclose(fp);
    write_jobs(f->a, &c, 1, JOBS, UINT32_MAX, "wb");
    check(f, &l);
    assert_int_equal(l.bad_records, 1);
    assert_int_equal(l.missing, 1); /* job 0's only result was the cut one */
    assert_int_equal(l.jobs_checked, JOBS - 1);
}

static void test_bad_arguments_are_refused(void **state)
{
    struct workload_config c = cfg_of();
    struct vm_ledger l;

    (void)state;
    assert_int_equal(vm_ledger_check(NULL, NULL, 0, &l), -EINVAL);
    assert_int_equal(vm_ledger_check(&c, NULL, 1, &l), -EINVAL);
    c.jobs = 0;
    assert_int_equal(vm_ledger_check(&c, NULL, 0, &l), -EINVAL);
    /* No file at all: every job missing. */
    c = cfg_of();
    assert_int_equal(vm_ledger_check(&c, NULL, 0, &l), 0);
    assert_int_equal(l.missing, JOBS);
    assert_int_equal(l.jobs_checked, 0);
}

/* A SEC or HPRE ledger recomputes each job's first result with libcrypto:
 * bytes that are not it (right length or not, right kind or not) are bad
 * output, never trusted, and the job counts as unchecked. */
static void engine_ledger_refuses_garbage(struct files *f, enum guest_engine e)
{
    struct workload_config c = cfg_of();
    uint8_t junk[512];
    struct vm_ledger l;
    FILE *fp;

    c.engine = e;
    memset(junk, 0x5a, sizeof(junk));
    fp = fopen(f->a, "wb");
    assert_non_null(fp);
    for (uint32_t j = 0; j < JOBS - 1; j++)
        put_rec(fp, VM_LEDGER_MAGIC, j, tag_of(j), j % 4, junk, 16u << (j % 4));
    fclose(fp);
    fp = fopen(f->b, "wb");
    assert_non_null(fp);
    fclose(fp);
    {
        const char *files[] = {f->a, f->b};

        assert_int_equal(vm_ledger_check(&c, files, 2, &l), 0);
    }
    assert_int_equal(l.records, JOBS - 1);
    assert_int_equal(l.bad_output, JOBS - 1);
    assert_int_equal(l.missing, 1);
    assert_int_equal(l.jobs_checked, 0);
    assert_int_equal(l.mismatches, JOBS);
    assert_non_null(strstr(l.first_problem, "libcrypto"));
}

static void test_sec_and_hpre_ledgers_refuse_results_libcrypto_does_not_give(void **state)
{
    engine_ledger_refuses_garbage(*state, GUEST_ENGINE_SEC);
    engine_ledger_refuses_garbage(*state, GUEST_ENGINE_HPRE);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_results_split_over_two_vmms_check_clean),
        T(test_a_job_done_on_both_hosts_is_counted_twice),
        T(test_a_missing_job_and_a_bad_output_are_mismatches),
        T(test_garbled_truncated_and_foreign_records_are_counted_not_trusted),
        T(test_bad_arguments_are_refused),
        T(test_sec_and_hpre_ledgers_refuse_results_libcrypto_does_not_give),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
