/* vmm/ledger: an account of a guest's jobs kept outside the guest, so that
 * "exactly once" is not the system under test grading itself.
 *
 * A mini-VMM started with a results file (vm_config.results) appends one
 * record per result its guest read from the device (the workload's result
 * sink, before the guest checks it): job, tag, format or kind, the bytes
 * (ZIP: the compressed data; SEC/HPRE: the first operation's output). Every
 * VMM a guest lived on writes its own file. vm_ledger_check then reads them
 * all and, knowing only the workload's configuration (engine, seed, sizes,
 * job count), regenerates each job's input (workload_job_input) and
 * inflates each result with zlib, or recomputes it with libcrypto
 * (workload_checker, keys derived on its own), and compares. It
 * counts, per job, how many results arrived: 0 is a job lost (or never
 * run), 2 and more a job done twice.
 *
 * Record (little-endian, packed): u32 magic "AMR1", u32 job, u64 tag,
 * u32 format (zip_req_type) or SEC/HPRE job kind (workload_kind_name), u32
 * len, then len bytes.
 *
 * Contract: 0 or a negative errno (-EINVAL bad arguments, -ENOMEM). A file
 * that does not exist counts as empty (that VMM never ran); a truncated or
 * garbled file is a mismatch (and ends that file), never a crash.
 */
#ifndef ACCMIG_VMM_LEDGER_H
#define ACCMIG_VMM_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "guest/workload.h"

#define VM_LEDGER_MAGIC 0x31524d41u /* "AMR1" */

struct vm_ledger_record {
    uint32_t magic;
    uint32_t job;
    uint64_t tag;
    uint32_t type;
    uint32_t len;
} __attribute__((packed));
_Static_assert(sizeof(struct vm_ledger_record) == 24, "struct vm_ledger_record is 24 bytes");

struct vm_ledger {
    uint64_t jobs;         /* configured */
    uint64_t records;      /* results read from the files */
    uint64_t jobs_checked; /* jobs with exactly one result, and that one their own */
    uint64_t missing;      /* jobs with no result */
    uint64_t duplicated;   /* jobs with more than one result */
    uint64_t bad_output;   /* results that are not the job's (do not inflate to its input,
                            * or not what libcrypto computes) */
    uint64_t bad_records;  /* garbled or truncated records, unknown jobs or tags */
    uint64_t mismatches;   /* missing + duplicated + bad_output + bad_records */
    uint64_t first_bad_job; /* UINT64_MAX if none */
    char first_problem[128];
};

/* Checks the results in files[0..n) (NULL entries skipped) against cfg. */
int vm_ledger_check(const struct workload_config *cfg, const char *const *files, size_t n,
                    struct vm_ledger *out);
/* Adds b's counts into a (for a sum over guests). */
void vm_ledger_add(struct vm_ledger *a, const struct vm_ledger *b);
/* {"jobs_checked", "mismatches", "missing", "duplicated", "bad_output",
 * "bad_records", "records", ["first_problem"]}; a new object. */
json_object *vm_ledger_json(const struct vm_ledger *l);

#endif
