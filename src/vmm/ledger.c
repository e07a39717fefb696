/* vmm/ledger: the demo's independent account of a guest's jobs (ledger.h). */
#include "vmm/ledger.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "common/common.h"

#define LEDGER_MAX_OUT (8u << 20) /* a result longer than this is garbage */

static void ledger_problem(struct vm_ledger *l, uint64_t job, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ledger_problem(struct vm_ledger *l, uint64_t job, const char *fmt, ...)
{
    va_list ap;

    if (l->first_bad_job != UINT64_MAX || l->first_problem[0])
        return;
    l->first_bad_job = job;
    va_start(ap, fmt);
    vsnprintf(l->first_problem, sizeof(l->first_problem), fmt, ap);
    va_end(ap);
}

/* zlib's own inflate of data (format type) equals want exactly. */
static bool ledger_inflates_to(const uint8_t *data, uint32_t len, enum zip_req_type type,
                               const uint8_t *want, uint32_t want_len, uint8_t *scratch,
                               size_t scratch_len)
{
    int bits = type == ZIP_REQ_DEFLATE ? -15 : type == ZIP_REQ_ZLIB ? 15 : 15 + 16;
    z_stream zs = {0};
    bool ok;
    int zr;

    if (inflateInit2(&zs, bits) != Z_OK)
        return false;
    zs.next_in = (Bytef *)data;
    zs.avail_in = len;
    zs.next_out = scratch;
    zs.avail_out = (uInt)scratch_len;
    zr = inflate(&zs, Z_FINISH);
    ok = zr == Z_STREAM_END && zs.avail_in == 0 && zs.total_out == want_len &&
         memcmp(scratch, want, want_len) == 0;
    inflateEnd(&zs);
    return ok;
}

/* Whether record r (its bytes in data) is the job's expected result: ZIP
 * inflated by zlib back to the regenerated input, SEC/HPRE recomputed by
 * libcrypto (checker). */
static bool ledger_result_ok(const struct workload_config *cfg, struct workload_checker *checker,
                             const struct vm_ledger_record *r, const uint8_t *data, uint8_t *in,
                             uint8_t *scratch)
{
    uint32_t in_len = 0;
    enum zip_req_type type;

    if (checker)
        return workload_checker_check(checker, r->job, r->type, data, r->len) == 0;
    return workload_job_input(cfg, r->job, in, cfg->max_size, &in_len, &type) == 0 &&
           (uint32_t)type == r->type &&
           ledger_inflates_to(data, r->len, type, in, in_len, scratch, (size_t)cfg->max_size + 1);
}

/* One file's records into count[] and the checks. */
static void ledger_file(const struct workload_config *cfg, struct workload_checker *checker,
                        const char *path, uint32_t *count, uint8_t *data, uint8_t *in,
                        uint8_t *scratch, struct vm_ledger *l)
{
    FILE *f = fopen(path, "rb");
    struct vm_ledger_record r;

    if (!f)
        return; /* that VMM never ran a guest */
    while (fread(&r, 1, sizeof(r), f) == sizeof(r)) {
        l->records++;
        if (r.magic != VM_LEDGER_MAGIC || r.len > LEDGER_MAX_OUT ||
            fread(data, 1, r.len, f) != r.len) {
            l->bad_records++;
            ledger_problem(l, r.job, "%s: a garbled or truncated record", path);
            break;
        }
        if (r.job >= cfg->jobs || r.tag != ((UINT64_C(0xacc0) << 48) | r.job)) {
            l->bad_records++;
            ledger_problem(l, r.job, "%s: a result for job %u / tag 0x%llx the guest never had",
                           path, r.job, (unsigned long long)r.tag);
            continue;
        }
        count[r.job]++;
        if (!ledger_result_ok(cfg, checker, &r, data, in, scratch)) {
            l->bad_output++;
            ledger_problem(l, r.job, "job %u: the result is not the job's (%s)", r.job,
                           checker ? "libcrypto computes another" : "it does not inflate to its input");
        }
    }
    fclose(f);
}

int vm_ledger_check(const struct workload_config *cfg, const char *const *files, size_t n,
                    struct vm_ledger *out)
{
    struct workload_checker *checker = NULL;
    uint32_t *count;
    uint8_t *data, *in, *scratch;
    uint64_t bad_before;
    int ret;

    if (!cfg || !out || (n && !files) || cfg->jobs == 0 || cfg->max_size == 0)
        return -EINVAL;
    if (cfg->engine != GUEST_ENGINE_ZIP && (ret = workload_checker_new(cfg, &checker)) != 0)
        return ret;
    memset(out, 0, sizeof(*out));
    out->first_bad_job = UINT64_MAX;
    out->jobs = cfg->jobs;
    count = calloc(cfg->jobs, sizeof(*count));
    data = malloc(LEDGER_MAX_OUT);
    in = malloc(cfg->max_size);
    scratch = malloc((size_t)cfg->max_size + 1);
    if (!count || !data || !in || !scratch) {
        workload_checker_free(checker);
        free(count);
        free(data);
        free(in);
        free(scratch);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        if (files[i])
            ledger_file(cfg, checker, files[i], count, data, in, scratch, out);
    bad_before = out->bad_output;
    for (uint32_t j = 0; j < cfg->jobs; j++) {
        if (count[j] == 0) {
            out->missing++;
            ledger_problem(out, j, "job %u: no result reached the supervisor", j);
        } else if (count[j] > 1) {
            out->duplicated++;
            ledger_problem(out, j, "job %u: %u results (done more than once)", j, count[j]);
        } else {
            out->jobs_checked++;
        }
    }
    /* A job with one result that was not its own is not checked. */
    out->jobs_checked -= AM_MIN(out->jobs_checked, bad_before);
    out->mismatches = out->missing + out->duplicated + out->bad_output + out->bad_records;
    workload_checker_free(checker);
    free(count);
    free(data);
    free(in);
    free(scratch);
    return 0;
}

void vm_ledger_add(struct vm_ledger *a, const struct vm_ledger *b)
{
    a->jobs += b->jobs;
    a->records += b->records;
    a->jobs_checked += b->jobs_checked;
    a->missing += b->missing;
    a->duplicated += b->duplicated;
    a->bad_output += b->bad_output;
    a->bad_records += b->bad_records;
    a->mismatches += b->mismatches;
    if (!a->first_problem[0] && b->first_problem[0]) {
        a->first_bad_job = b->first_bad_job;
        memcpy(a->first_problem, b->first_problem, sizeof(a->first_problem));
    }
}

json_object *vm_ledger_json(const struct vm_ledger *l)
{
    json_object *j = json_object_new_object();

#define LEDGER_J(k) json_object_object_add(j, #k, json_object_new_int64((int64_t)l->k))
    LEDGER_J(jobs_checked);
    LEDGER_J(mismatches);
    LEDGER_J(missing);
    LEDGER_J(duplicated);
    LEDGER_J(bad_output);
    LEDGER_J(bad_records);
    LEDGER_J(records);
#undef LEDGER_J
    if (l->first_problem[0])
        json_object_object_add(j, "first_problem", json_object_new_string(l->first_problem));
    return j;
}
