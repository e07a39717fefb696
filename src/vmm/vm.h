/* vmm/vm: the mini-VMM. It owns a guest's RAM (vm_ram memfd), attaches to
 * one VF served over vfio-user (vfu/client.h: the memfd goes to the server
 * with DMA_MAP, MSIs come back on eventfds), runs the guest (the workload
 * and its QM/ZIP driver on vCPU threads, guest/workload.h) and live-migrates
 * it to another mini-VMM over a vmstream (vmm/vmstream.h) on TCP or UNIX.
 *
 * Source side (vm_migrate_out):
 *   connect, handshake (device profile both ways) -> DMA logging on the VF
 *   + CPU log cleared -> device PRE_COPY, its match data, device check (an
 *   incompatible destination refuses here, before any downtime) -> RAM
 *   round 0 (every page) and further rounds over the union of the CPU log
 *   and the device's DMA log, until what is left fits the downtime goal
 *   (estimated from the throughput of the rounds so far) -> vCPUs pause,
 *   device PRE_COPY_P2P (quiesced, P2P) -> STOP_COPY (queue positions
 *   written back into guest RAM) -> stop-copy marker, the last dirty pages
 *   (after STOP_COPY, which dirtied the SQC/CQC tables), the device state,
 *   END -> the destination's READY -> COMMIT (the point of no return) ->
 *   the destination's COMMITTED. On success the guest lives on the
 *   destination: the source's workload objects are freed and its VF reset.
 *   On any failure before COMMIT (refusal, peer gone, timeout, abort) the
 *   device goes back to RUNNING and the vCPUs resume: the guest carries on,
 *   no job lost. After COMMIT the source never resumes by itself: without
 *   COMMITTED (or D's explicit refusal) it stays paused, in doubt, until
 *   vm_resolve says which side runs the guest.
 *
 * Destination side (vm_incoming): accept one connection, handshake with its
 *   own profile, device RESUMING, RAM into its memfd and device bytes into
 *   the VF (MIG_DATA_WRITE) as they arrive; after END: RESUMING -> STOP
 *   (restore) and workload_attach (nothing runs), READY; on COMMIT:
 *   -> RUNNING_P2P -> RUNNING (resume) and the vCPUs start, then COMMITTED,
 *   followed by the epilogue (below). On any failure before READY, or an
 *   ABORT, it discards what arrived: VF reset, RAM cleared. When the link
 *   dies between READY and COMMIT it cannot know whether the source handed
 *   over: it holds the guest, not running, in doubt, until vm_resolve.
 *
 * The epilogue: after the ack (vmstream's last word), the destination
 * writes one fixed 64-byte record on the same connection with its side of
 * the timings (struct layout in vm.c, docs/vm.md); the source reads it for
 * its report with a short timeout. It is advisory: the migration is decided
 * by the ack alone.
 *
 * Contract
 * - Functions return 0 or a negative errno. -EINVAL bad arguments or a call
 *   the VM's state does not allow (vm_state_name says which), -EBUSY a
 *   migration is already running.
 * - Threads: one thread drives the life-cycle calls (create, guest_start,
 *   migrate_out / incoming, guest_shutdown, destroy); vm_status,
 *   vm_guest_report, vm_abort and vm_hold_release may be called from any
 *   other thread at any time before destroy.
 * - Fault injection (tests, docs/vm.md): vm_hold_set(vm, phase) makes the
 *   next migration stop at that phase, announce it (vm_status().held and a
 *   log line) and wait for vm_hold_release or vm_abort. Phases:
 *   "precopy" (source, after RAM round 0 went out), "stop-copy" (source,
 *   vCPUs paused and the device in STOP_COPY, before the final RAM),
 *   "incoming" (destination, after the handshake, before RESUMING), and the
 *   handover's: "src-ready" (READY read, COMMIT not sent), "src-commit"
 *   (COMMIT sent, COMMITTED not read), "dst-end" (END checked and the state
 *   restored, READY not sent), "dst-ready" (READY sent, COMMIT not read),
 *   "dst-commit" (COMMIT read and the guest started, COMMITTED not sent).
 *   vm_fault_set(vm, point, action) does something else there once: "kill"
 *   (SIGKILL to itself), "stop" (SIGSTOP to itself: a frozen peer),
 *   "cut-send" / "cut-recv" (shutdown of that direction of the migration
 *   connection: the peer reads the end of the stream / this side does), or
 *   "hold" (as vm_hold_set).
 */
#ifndef ACCMIG_VMM_VM_H
#define ACCMIG_VMM_VM_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "guest/workload.h"
#include "vmm/vmstream.h"

#define VM_DEFAULT_TIMEOUT_MS 10000   /* stream and vfio-user waits */
#define VM_DEFAULT_DOWNTIME_MS 50
#define VM_DEFAULT_MAX_ROUNDS 30
#define VM_PHASE_NAME_MAX 16

struct vm_config {
    const char *attach;        /* the VF's vfio-user socket */
    uint64_t ram_size;         /* guest RAM bytes (4 KiB multiple); 0: what wl needs */
    struct workload_config wl; /* the guest vm_guest_start creates (unused by vm_incoming:
                                  a migrated guest brings its own) */
    int timeout_ms;            /* 0: VM_DEFAULT_TIMEOUT_MS */
    bool prealloc;             /* populate all RAM at create time (QEMU's -mem-prealloc):
                                  an incoming guest then lands without first-touch
                                  page faults, which shortens the transfer and the
                                  stop-copy; costs the whole RAM up front */
    bool trap_doorbells;       /* leave BAR4 unmapped: every doorbell a REGION_WRITE */
    const char *results;       /* NULL, or a file (created 0600, appended to) that gets
                                  every compression result the guest reads here, for an
                                  independent check (vmm/ledger.h) */
};

/* How the guest's SQ/CQ doorbells reach the VF (decided at vm_create):
 * the VF isolates doorbells (QUE_ISO_CFG bit0) and its BAR4 is mapped into
 * the VMM (the guest stores, the device polls: the default when the server
 * offers an mmap-able BAR4), or reached with REGION_WRITE (trapped:
 * vm_config.trap_doorbells, or a BAR4 the server does not let us map); or
 * the VF has no isolation and they are in BAR2 (trapped as all of BAR2). */
enum vm_doorbells { VM_DB_BAR2 = 0, VM_DB_TRAPPED, VM_DB_MAPPED };
const char *vm_doorbells_name(enum vm_doorbells d); /* "bar2", "trapped", "mapped" */

enum vm_state {
    VM_ATTACHED = 0, /* VF attached, no guest yet */
    VM_INCOMING,     /* vm_incoming waits for or receives a guest */
    VM_RUNNING,      /* the guest runs here */
    VM_MIGRATING,    /* vm_migrate_out in progress (the guest still runs until stop-copy) */
    VM_FINISHED,     /* every vCPU is done (the guest can still migrate) */
    VM_MIGRATED,     /* the guest left for another host */
    VM_SHUT_DOWN,    /* the guest driver was torn down */
    VM_FAILED,       /* an incoming migration failed: state discarded, VF reset */
    VM_IN_DOUBT,     /* the handover's outcome is unknown: the guest is paused here
                        (source) or held, not running (destination), until vm_resolve */
};

/* Where the last handover ended, as this side knows it. */
enum vm_handover {
    VM_HO_NONE = 0,   /* no migration reached the handover */
    VM_HO_IN_DOUBT,   /* see VM_IN_DOUBT */
    VM_HO_COMMITTED,  /* the guest runs on the destination */
    VM_HO_ROLLED_BACK, /* source: it kept (or took back) the guest */
    VM_HO_DISCARDED,  /* destination: it dropped the guest without running it */
};
const char *vm_handover_name(enum vm_handover h); /* "none", "in-doubt", ... */

const char *vm_state_name(enum vm_state s);

struct vm_mig_opts {
    uint32_t downtime_ms; /* goal; 0: VM_DEFAULT_DOWNTIME_MS */
    uint32_t max_rounds;  /* precopy rounds before stop-copy regardless; 0: default */
    int timeout_ms;       /* connect + every stream wait; 0: the VM's timeout */
    uint32_t channels;    /* RAM channels besides the main one (multifd), 0..16; 0: pages on
                           * the main connection. The destination may agree to fewer. */
};

/* One migration as one side saw it. Durations in microseconds; 0 when the
 * step was not reached. dest_* come from the destination's epilogue
 * (dest_reported says whether it arrived). */
struct vm_mig_report {
    bool ok;
    bool rolled_back;   /* source: the guest runs here again after a failure */
    bool in_doubt;      /* the handover's outcome is unknown (err -EINPROGRESS) */
    uint64_t migration_id; /* the id COMMIT carried (0 before it) */
    int err;            /* negative errno when !ok */
    char phase[VM_PHASE_NAME_MAX]; /* where it ended: "done" or the failing phase */
    char error[400];    /* why it failed */
    char peer[300];     /* the endpoint */
    uint64_t precopy_rounds; /* RAM rounds before stop-copy */
    uint64_t ram_bytes;      /* wire bytes of RAM records (all rounds) */
    uint64_t ram_pages;      /* pages sent with data */
    uint64_t zero_pages;     /* pages sent as zero runs */
    uint64_t final_ram_pages; /* pages (data + zero) in the stop-copy round */
    uint64_t device_state_bytes;
    uint64_t ram_bytes_per_s; /* RAM wire bytes over the time spent sending rounds */
    uint64_t round0_bytes_per_s; /* the same for the first round alone (every page) */
    uint32_t channels;        /* RAM channels in use (0: pages on the main connection) */
    uint64_t total_us;       /* connect .. ack */
    uint64_t precopy_us;     /* handshake done .. vCPUs asked to pause */
    uint64_t downtime_us;    /* vCPUs asked to pause .. ack received */
    uint64_t pause_us;       /* vCPUs parked at a step boundary */
    uint64_t quiesce_us;     /* device -> PRE_COPY_P2P (PAUSE_QM) */
    uint64_t save_us;        /* device -> STOP_COPY (write-back + register save) */
    uint64_t final_ram_us;   /* logs collected + last RAM round sent */
    uint64_t final_collect_us; /* of which: reading both dirty logs (the device's over vfio-user) */
    uint64_t device_send_us; /* STOP_COPY device state read + sent */
    uint64_t end_us;         /* END sent .. READY received (destination restore) */
    uint64_t handover_us;    /* COMMIT sent .. COMMITTED received (destination resume) */
    uint64_t expected_downtime_us; /* the estimate that ended precopy */
    bool dest_reported;
    uint64_t dest_restore_us; /* destination RESUMING -> STOP */
    uint64_t dest_resume_us;  /* destination STOP -> RUNNING */
    uint64_t dest_guest_us;   /* destination workload_attach + vCPUs started */
    uint64_t dest_stop_copy_to_ack_us; /* destination: stop-copy marker .. ack sent */
};

/* A snapshot for progress lines and the control socket's "status". */
struct vm_status {
    enum vm_state state;
    char phase[VM_PHASE_NAME_MAX]; /* migration phase, "" when none */
    char held[VM_PHASE_NAME_MAX];  /* fault injection: the phase it waits at, "" */
    uint64_t round;                /* current precopy round */
    uint64_t ram_bytes_sent;
    uint64_t dirty_pages;          /* left after the last round */
    bool guest;                    /* a workload is bound here */
    uint64_t steps;                /* vCPU steps so far (progress) */
    uint64_t jobs, jobs_completed, jobs_verified, jobs_failed;
    uint64_t migrations_out;       /* successful outgoing migrations */
    enum vm_doorbells doorbells;   /* this VMM's, for its guest (a migrated guest uses
                                      its destination's) */
    enum vm_handover handover;     /* the last handover, as this side knows it */
    bool handover_source;          /* this side was its source */
    uint64_t migration_id;         /* the last COMMIT's id (0: none seen) */
    bool device_gone;              /* the device server hung up (vm_device_gone) */
};

struct vm;

/* Creates the RAM (populated when cfg->prealloc), connects to cfg->attach,
 * maps the RAM (fd) for DMA,
 * enables the MSI eventfds, reads the device profile (config space ids,
 * queue count from the VF's VFT via its mailbox) and QUE_ISO_CFG, and maps
 * BAR4 when the VF isolates doorbells, unless cfg->trap_doorbells (enum
 * vm_doorbells). -EINVAL bad config (no RAM size, not a 4 KiB multiple,
 * too large), connect/vfio-user errnos (a BAR4 the server offers for mmap
 * but that cannot be mapped included). */
int vm_create(const struct vm_config *cfg, struct vm **out);
/* Stops the guest threads (no teardown), detaches from the VF (the server
 * resets it) and frees the RAM. NULL is a no-op. */
void vm_destroy(struct vm *vm);
/* Stops the guest's vCPU threads and frees its workload (the report is gone
 * with it), leaving the rest for vm_destroy: an exit calls it while it still
 * watches the device (vm_device_cut). NULL workload: a no-op. */
void vm_halt(struct vm *vm);

const struct vmstream_profile *vm_profile(const struct vm *vm);
uint64_t vm_ram_bytes(const struct vm *vm);
/* The guest's RAM, for benchmarks and tests that fill or read it (a
 * guest running meanwhile writes it too); valid until vm_destroy. */
struct vm_ram *vm_ram_get(struct vm *vm);
/* Faults every page of ram in, writable (MADV_POPULATE_WRITE, or touching
 * each page where the kernel lacks it). Only on RAM nobody writes yet (the
 * fallback rewrites each page's first byte). 0 or -errno (-ENOMEM). */
int vm_ram_prealloc(struct vm_ram *ram);

/* ATTACHED -> RUNNING: lays the workload out in RAM, probes the VF (guest
 * driver init) and starts the vCPUs. -EINVAL bad workload config, -ENOSPC
 * RAM too small for it, the driver's errors. */
int vm_guest_start(struct vm *vm);
/* Waits up to timeout_ms (< 0: forever) for the guest to finish: 0 (state
 * FINISHED), -ETIMEDOUT, -EINVAL when no guest runs here. */
int vm_guest_wait(struct vm *vm, int timeout_ms);
/* The state now; RUNNING turns into FINISHED once every vCPU is done.
 * Never blocks; any thread. */
enum vm_state vm_guest_poll(struct vm *vm);
/* Guest shutdown (threads stopped, driver torn down): -> SHUT_DOWN. */
int vm_guest_shutdown(struct vm *vm);
/* The job table's counters: -ENOENT when no guest is bound here. */
int vm_guest_report(struct vm *vm, struct workload_report *r);

/* Source: live-migrates the guest to endpoint `to` ("tcp:HOST:PORT" or
 * "unix:PATH"). 0: the guest now runs on the destination (state MIGRATED,
 * VF reset). Otherwise a negative errno: -EINVAL (bad endpoint or state;
 * nothing done), -EREMOTEIO (the destination refused or failed),
 * -ECONNRESET/-EPIPE/-ETIMEDOUT/-ECONNREFUSED (the peer), -ECANCELED
 * (vm_abort), or a vfio-user errno; the guest runs here again
 * (rep->rolled_back) unless rolling back itself failed (then the error says
 * so and the guest stays paused). -EINPROGRESS: COMMIT went (or may have
 * gone) and no answer came: the handover is in doubt, the guest stays
 * paused here (state IN_DOUBT, rep->in_doubt) until vm_resolve. rep is
 * always filled. */
int vm_migrate_out(struct vm *vm, const char *to, const struct vm_mig_opts *opts,
                   struct vm_mig_report *rep);

/* Destination: waits up to accept_timeout_ms (< 0: forever) for one
 * connection on listen_fd (vm_net_listen; the caller keeps and closes it),
 * receives the guest and starts it once the source committed: 0 (state
 * RUNNING). On failure the partial state is discarded (state FAILED; the VF
 * reset and ready for another client) and the errno returned;
 * -EINPROGRESS: the link died between READY and COMMIT, the guest is held
 * here, not running (state IN_DOUBT), until vm_resolve. rep is always
 * filled. */
int vm_incoming(struct vm *vm, int listen_fd, int accept_timeout_ms, struct vm_mig_report *rep);

/* Settles a handover in doubt: run_here says whether the guest runs on this
 * side. A source told so resumes its guest (as a rollback), otherwise it
 * releases it (state MIGRATED, VF reset); a destination told so starts the
 * guest (RUNNING), otherwise discards it (FAILED, VF reset). On a VM not in
 * doubt: 0 when the answer agrees with where the guest is (nothing done),
 * -EPERM when it does not (why says so). Other errnos: the device or the
 * vCPUs failed (why says which; the VM stays in doubt). From the driving
 * thread (no migration running). */
int vm_resolve(struct vm *vm, bool run_here, char *why, size_t why_len);

/* Ends a running migration (either side) as a failure (-ECANCELED) and
 * releases a hold. */
void vm_abort(struct vm *vm);
/* Fault injection (see above). vm_hold_set: -EINVAL for an unknown phase
 * name; "" clears. */
int vm_hold_set(struct vm *vm, const char *phase);
/* -EINVAL for an unknown point or action (names above); "" clears. */
int vm_fault_set(struct vm *vm, const char *point, const char *action);
void vm_hold_release(struct vm *vm);

void vm_status_get(struct vm *vm, struct vm_status *st);

/* The device server's vfio-user socket, for a caller's poll only (POLLRDHUP
 * or POLLHUP: the server went away; never read or close it), -1 when it
 * could not be found; valid until vm_destroy. vm_device_gone records that
 * the server went away: the status says device_gone, a running or
 * finished guest's state becomes VM_FAILED (not shut down then: that
 * talks to the device; vm_destroy stops its vCPUs); a migration in progress fails by itself at its next device
 * call (or the caller aborts it). Neither call waits on a device call. */
int vm_device_fd(const struct vm *vm);
void vm_device_gone(struct vm *vm);
/* How long the vfio-user request now on the wire (one at a time) has waited
 * for its reply, in ns (0: none): a frozen server shows as a growing wait. */
uint64_t vm_device_waiting_ns(const struct vm *vm);
/* Cuts the vfio-user connection (vfu_client_cut): every request blocked on
 * a frozen server fails at once, and so does every later one; the device
 * is gone for this VMM (as vm_device_gone). For an exit that must not wait. */
void vm_device_cut(struct vm *vm);
/* One harmless request to the device server (the migration state): 0 it
 * answered; it blocks up to the timeout when the server is frozen, which
 * vm_device_waiting_ns then shows. Any thread. */
int vm_device_probe(struct vm *vm);

/* JSON views for the control socket, `accmig migrate`, the demo and the
 * benchmark (new objects; the caller puts them). */
json_object *vm_mig_report_json(const struct vm_mig_report *r);
json_object *vm_status_json(const struct vm_status *st);
json_object *vm_workload_report_json(const struct workload_report *r);
/* Exactly-once and verification hold for r. */
bool vm_workload_report_ok(const struct workload_report *r);

/* ---- the control socket (docs/vm.md) ----
 * A UNIX stream socket; a client sends one command line (at most
 * VM_CONTROL_LINE_MAX bytes with its newline) and reads one JSON line
 * back: {"ok":true,...} or {"ok":false,"error":"..."}. */
#define VM_CONTROL_LINE_MAX 1024
#define VM_CONTROL_REPLY_MAX 16384

/* Client side: sends line (no newline needed) to the control socket at
 * path and reads the reply line into reply (NUL-terminated, newline
 * stripped) within timeout_ms (< 0: forever; a migration can take long).
 * -ENAMETOOLONG, -EMSGSIZE (line or reply too long), connect errnos,
 * -ETIMEDOUT, -ECONNRESET (closed without a reply). */
int vm_control_request(const char *path, const char *line, char *reply, size_t cap,
                       int timeout_ms);

#endif
