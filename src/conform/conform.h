/* conform: a conformance checker for any vfio-user server (issue 13).
 *
 * It speaks vfio-user over its own client code path (cf_wire.c; nothing of
 * vfu/client.c), checks the server against QEMU docs/interop/vfio-user.rst
 * and the kernel's VFIO migration uAPI (include/uapi/linux/vfio.h,
 * drivers/vfio/vfio_main.c), and reports one line per check. Everything
 * about the device (regions, IRQ counts, migration flags, features) is
 * discovered; checks of accmig's own documented choices run only with
 * opts.accmig. docs/conform.md says what each group checks and why.
 *
 * Contract
 * - conform_run: runs the selected groups against opts->socket and writes
 *   the report to out (text, or one JSON object per line with opts->json),
 *   and the JUnit XML to opts->junit_path when set. Returns the number of
 *   failed checks (0: conforming), or a negative errno when it could not
 *   run at all (-EINVAL: bad options, e.g. an unknown group; -ECONNREFUSED
 *   or another connect errno: no server; -ENOMEM). It never exits the
 *   process and leaves no child behind (a --server-cmd server is stopped).
 * - conform_list: writes the groups and what they check to out.
 * - conform_fsm_next_step: the next state on the way from cur to target
 *   for a device with migration flags `flags`, by the uAPI's path rules
 *   (shortest path over the arcs the flags allow; saving-group states only
 *   at the ends, or the whole path inside that group). Written from the
 *   text of the uAPI, independently of mig/fsm.c; a test proves both agree.
 *   Returns 0 and *next, or -EINVAL (cur or target unsupported, ERROR, no
 *   legal path, flags without STOP_COPY or with unknown bits).
 */
#ifndef ACCMIG_CONFORM_H
#define ACCMIG_CONFORM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct conform_opts {
    const char *socket;     /* the server's UNIX socket */
    const char *server_cmd; /* NULL, or a shell command that starts the server */
    const char *server_log; /* where the server's stderr goes (NULL: a temp file) */
    const char *only;       /* NULL, or "group,group,..." */
    const char *junit_path; /* NULL, or where the JUnit XML goes */
    bool json;
    bool accmig;            /* also check accmig's documented choices */
    bool verbose;           /* the reply of each check on a second line */
    unsigned stress_seconds; /* 0: a short bounded run of stress_ops */
    unsigned stress_ops;     /* ops of the bounded run (0: default) */
    uint64_t seed;
    unsigned timeout_ms; /* per reply (0: default 5000) */
};

int conform_run(const struct conform_opts *opts, FILE *out);
void conform_list(FILE *out);

/* Migration states and flags, as numbered by the uAPI. */
enum conform_mig_state {
    CF_ST_ERROR = 0,
    CF_ST_STOP = 1,
    CF_ST_RUNNING = 2,
    CF_ST_STOP_COPY = 3,
    CF_ST_RESUMING = 4,
    CF_ST_RUNNING_P2P = 5,
    CF_ST_PRE_COPY = 6,
    CF_ST_PRE_COPY_P2P = 7,
    CF_ST_COUNT = 8,
};
#define CF_MIG_STOP_COPY (1u << 0)
#define CF_MIG_P2P (1u << 1)
#define CF_MIG_PRE_COPY (1u << 2)

int conform_fsm_next_step(uint32_t flags, unsigned cur, unsigned target, unsigned *next);
bool conform_fsm_state_supported(uint32_t flags, unsigned state);
const char *conform_state_name(unsigned state);

#endif
