/* accmig vm: the mini-VMM as a program (vmm/vm.h, docs/vm.md).
 *
 *   accmig vm --attach SOCK [--control PATH] [workload options]
 *       runs a guest on the VF behind SOCK until it finishes
 *   accmig vm --attach SOCK --incoming tcp:HOST:PORT [--control PATH]
 *       waits for a guest migrated from another mini-VMM, then runs it
 *
 * Threads: the main thread runs the control loop (control socket, signals,
 * the guest's progress); one worker thread at a time runs a migration
 * (vm_migrate_out or vm_incoming) and wakes the loop through an eventfd when
 * it ends. The loop never calls a life-cycle function of the VM while the
 * worker runs.
 *
 * Exit: 0 the guest finished here with every job verified exactly once, or
 * it migrated away, or the operator said quit; 1 the guest's checks failed
 * or an incoming migration failed (even because its server died); 2 bad
 * usage or setup failure; 3 the device server went away (its socket hung
 * up) under a guest here.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "common/common.h"
#include "qm/qm.h"
#include "vmm/net.h"
#include "vmm/vm.h"
#include "vmm/vmstream.h"

#define VMCLI_MAX_CONNS 8
#define VMCLI_POLL_MS 100
/* After quit or SIGTERM, a vfio-user request unanswered for this long means
 * a frozen server: the connection is cut so that the exit does not wait for
 * the request's timeout (the whole exit stays well under 1 s). */
#define VMCLI_FROZEN_NS (400ull * 1000 * 1000)
#define VMCLI_WATCH_MS 25
#define VMCLI_PROBE_MS 100
#define VMCLI_HOLD_ENV "ACCMIG_VM_HOLD"
#define VMCLI_FAULT_ENV "ACCMIG_VM_FAULT" /* POINT:ACTION, tests only (docs/vm.md) */

struct vmcli_opts {
    struct vm_config vm;
    const char *control;
    const char *incoming;
    int accept_timeout_ms; /* -1: forever */
    bool stay;
    bool json;
};

struct vmcli_conn {
    int fd;             /* -1: free slot */
    size_t len;
    bool waiting;       /* its "migrate" runs in the worker */
    char buf[VM_CONTROL_LINE_MAX];
};

enum vmcli_job { VMCLI_JOB_NONE, VMCLI_JOB_MIGRATE, VMCLI_JOB_INCOMING };

/* The exit's watchdog: runs from quit until the VMM is torn down, and cuts
 * the device connection when a request on it is stuck (a SIGSTOPped or
 * otherwise frozen server). The exit may wait on the device without any
 * request on the wire (the guest's shutdown waits for its jobs' completions,
 * which a frozen server never writes), so a probe thread keeps one harmless
 * request going every VMCLI_PROBE_MS: a frozen server then shows as a stuck
 * request either way. A frozen migration peer needs no watchdog: vm_abort
 * already shut the migration's sockets down. */
struct vmcli_watch {
    struct vm *vm;
    pthread_mutex_t lock; /* protects done, probe_done */
    pthread_cond_t cond;
    bool done, probe_done;
    bool on, probe_on;
    pthread_t th, probe;
};

static void vmcli_watch_sleep_locked(struct vmcli_watch *w, long ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += ms * 1000000L;
    while (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&w->cond, &w->lock, &ts);
}

static void *vmcli_probe_main(void *arg)
{
    struct vmcli_watch *w = arg;

    pthread_mutex_lock(&w->lock);
    while (!w->probe_done) {
        pthread_mutex_unlock(&w->lock);
        if (vm_device_probe(w->vm) != 0) {
            pthread_mutex_lock(&w->lock);
            break; /* gone or cut: nothing more to learn */
        }
        pthread_mutex_lock(&w->lock);
        if (!w->probe_done)
            vmcli_watch_sleep_locked(w, VMCLI_PROBE_MS);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static void *vmcli_watch_main(void *arg)
{
    struct vmcli_watch *w = arg;
    bool cut = false;

    pthread_mutex_lock(&w->lock);
    while (!w->done) {
        vmcli_watch_sleep_locked(w, VMCLI_WATCH_MS);
        if (!w->done && !cut && vm_device_waiting_ns(w->vm) > VMCLI_FROZEN_NS) {
            cut = true;
            fprintf(stderr, "accmig vm: the device server has not answered for %llu ms while "
                            "exiting (frozen?): cutting the vfio-user connection\n",
                    (unsigned long long)(vm_device_waiting_ns(w->vm) / 1000000u));
            vm_device_cut(w->vm);
        }
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static void vmcli_watch_start(struct vmcli_watch *w, struct vm *vm)
{
    w->vm = vm;
    w->done = w->probe_done = false;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->on = pthread_create(&w->th, NULL, vmcli_watch_main, w) == 0;
    w->probe_on = w->on && pthread_create(&w->probe, NULL, vmcli_probe_main, w) == 0;
}

static void vmcli_watch_stop(struct vmcli_watch *w)
{
    if (!w->on)
        return;
    /* The probe first: a probe stuck on a frozen server returns once the
     * watchdog, still running, has cut the connection. */
    pthread_mutex_lock(&w->lock);
    w->probe_done = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    if (w->probe_on)
        pthread_join(w->probe, NULL);
    pthread_mutex_lock(&w->lock);
    w->done = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->th, NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    w->on = false;
}

struct vmcli {
    struct vmcli_opts o;
    struct vm *vm;
    struct vm_net_endpoint ctl_ep, in_ep;
    int ctl_fd, in_fd, wake_fd, sig_fd;
    char listen_name[VM_NET_HOST_MAX + 16];
    struct vmcli_conn conns[VMCLI_MAX_CONNS];

    /* The worker: the loop starts it and joins it after the wake; while
     * job != NONE only the worker touches vm's life cycle, mig_* and rep. */
    pthread_t worker;
    enum vmcli_job job;
    char mig_to[VM_NET_HOST_MAX + 16];
    struct vm_mig_opts mig_opts;
    struct vm_mig_report rep;
    int job_ret;

    json_object *log; /* array: every migration this VMM took part in */
    bool quit;
    bool dev_gone; /* the device server hung up: seen once, then not polled */
    bool dev_unwatched; /* it hung up after the guest left: nothing to fail */
    bool incoming_failed;
    int exit_status;
    struct vmcli_watch watch; /* started by quit / SIGTERM */
};

/* quit or SIGTERM: a migration under way is aborted (its sockets shut
 * down), and the watchdog makes sure no frozen device server holds the exit
 * up. The control socket keeps being answered meanwhile. */
static void vmcli_quit(struct vmcli *x)
{
    if (!x->quit)
        vmcli_watch_start(&x->watch, x->vm);
    x->quit = true;
    if (x->job != VMCLI_JOB_NONE)
        vm_abort(x->vm);
}

static void vmcli_usage(FILE *f)
{
    fprintf(f,
            "usage: accmig vm --attach SOCK [options]\n"
            "  A mini-VMM: guest RAM in a memfd given to the device server, the VF at SOCK\n"
            "  (an `accmig serve` socket) attached over vfio-user, a workload (ZIP\n"
            "  compression, or SEC/HPRE crypto with --engine) on vCPU threads; live migration\n"
            "  to or from another mini-VMM.\n"
            "  --attach SOCK          the VF's vfio-user socket (required)\n"
            "  --control PATH         control socket (UNIX): status, report, migrate, quit\n"
            "                         (see `accmig migrate` and docs/vm.md)\n"
            "  --incoming ENDPOINT    wait for a migrated guest on tcp:HOST:PORT or unix:PATH\n"
            "                         (port 0: any; `status` tells which)\n"
            "  --accept-timeout-ms MS how long --incoming waits for a source (default: forever)\n"
            "  --stay                 after the guest finished, stay until `quit` on the\n"
            "                         control socket (its report stays readable)\n"
            "  --ram SIZE             guest RAM (default: what the workload needs); both ends\n"
            "                         of a migration must agree\n"
            "  --prealloc             fault all guest RAM in at start (for --incoming: the\n"
            "                         guest lands without first-touch page faults)\n"
            "  --timeout-ms MS        migration stream and vfio-user waits (default %d)\n"
            "  --trap-doorbells       leave the VF's doorbell pages (BAR4) unmapped: every\n"
            "                         SQ/CQ doorbell is a vfio-user message (default: mapped\n"
            "                         when the server offers it, the device polls them)\n"
            "  --jobs N --qps N --vcpus N --min-size B --max-size B --seed N --sgl-percent N\n"
            "                         the guest's workload (as in accmig demo)\n"
            "  --stream-percent N     (0..100) that share of jobs as streams in pieces\n"
            "  --engine zip|sec|hpre  the VF's engine and so the job kind (default zip; an\n"
            "                         incoming guest brings its own)\n"
            "  --results FILE         append every result the guest reads (ZIP: compressed;\n"
            "                         SEC/HPRE: the first operation's output) here\n"
            "                         to FILE, for a check outside the guest (the demo's ledger)\n"
            "  --json                 print the final report as one JSON object\n"
            "  Fault injection (tests): %s=precopy|stop-copy|incoming stops a migration at\n"
            "  that phase until `continue` arrives on the control socket; %s=POINT:ACTION\n"
            "  (docs/vm.md) kills, freezes or cuts at a handover step.\n"
            "Exit status: 0 the guest finished verified or migrated away, 1 a check or an\n"
            "incoming migration failed, or the VMM quit with a handover in doubt, 2 usage\n"
            "or setup error, 3 the device server went away.\n",
            VM_DEFAULT_TIMEOUT_MS, VMCLI_HOLD_ENV, VMCLI_FAULT_ENV);
}

enum {
    OPT_ATTACH = 1, OPT_CONTROL, OPT_INCOMING, OPT_ACCEPT_TIMEOUT, OPT_STAY, OPT_RAM, OPT_PREALLOC,
    OPT_TIMEOUT, OPT_TRAP_DB, OPT_JSON, OPT_HELP, OPT_RESULTS,
};

/* 0 ok, 1 help printed, -EINVAL bad usage (reported). */
static int vmcli_parse(int argc, char **argv, struct vmcli_opts *o)
{
    static const struct option longopts[] = {
        {"attach", required_argument, NULL, OPT_ATTACH},
        {"control", required_argument, NULL, OPT_CONTROL},
        {"incoming", required_argument, NULL, OPT_INCOMING},
        {"accept-timeout-ms", required_argument, NULL, OPT_ACCEPT_TIMEOUT},
        {"stay", no_argument, NULL, OPT_STAY},
        {"ram", required_argument, NULL, OPT_RAM},
        {"prealloc", no_argument, NULL, OPT_PREALLOC},
        {"timeout-ms", required_argument, NULL, OPT_TIMEOUT},
        {"trap-doorbells", no_argument, NULL, OPT_TRAP_DB},
        {"results", required_argument, NULL, OPT_RESULTS},
        CLI_OPTS_WORKLOAD_LONGOPTS,
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    struct workload_config *wl = &o->vm.wl;
    char why[128];
    uint64_t v = 0;
    int c, ret = 0;

    memset(o, 0, sizeof(*o));
    workload_config_default(wl);
    o->accept_timeout_ms = -1;
    optind = 1;
    opterr = 0;
    while (ret == 0 && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_ATTACH: o->vm.attach = optarg; break;
        case OPT_CONTROL: o->control = optarg; break;
        case OPT_INCOMING: o->incoming = optarg; break;
        case OPT_ACCEPT_TIMEOUT:
            ret = cli_opt_num("vm", "--accept-timeout-ms", optarg, 1, INT32_MAX, &v);
            o->accept_timeout_ms = (int)v;
            break;
        case OPT_STAY: o->stay = true; break;
        case OPT_PREALLOC: o->vm.prealloc = true; break;
        case OPT_RAM:
            ret = cli_opt_num("vm", "--ram", optarg, VM_RAM_PAGE_SIZE, VM_RAM_MAX_SIZE, &v);
            if (ret == 0 && v % VM_RAM_PAGE_SIZE) {
                fprintf(stderr, "accmig vm: --ram %s is not a multiple of 4 KiB\n", optarg);
                ret = -EINVAL;
            }
            o->vm.ram_size = v;
            break;
        case OPT_TIMEOUT:
            ret = cli_opt_num("vm", "--timeout-ms", optarg, 1, INT32_MAX, &v);
            o->vm.timeout_ms = (int)v;
            break;
        case OPT_TRAP_DB: o->vm.trap_doorbells = true; break;
        case OPT_RESULTS: o->vm.results = optarg; break;
        case OPT_JSON: o->json = true; break;
        case OPT_HELP: vmcli_usage(stdout); return 1;
        default:
            ret = cli_opt_workload("vm", c, optarg, wl);
            if (ret == -ENOENT) {
                fprintf(stderr, "accmig vm: unknown or incomplete option '%s'\n", argv[optind - 1]);
                ret = -EINVAL;
            }
        }
    }
    if (ret == 0 && optind < argc) {
        fprintf(stderr, "accmig vm: unexpected argument '%s'\n", argv[optind]);
        ret = -EINVAL;
    }
    if (ret == 0 && o->incoming) {
        struct vm_net_endpoint ep;
        if (vm_net_endpoint_parse(o->incoming, &ep, why, sizeof(why)) != 0) {
            fprintf(stderr, "accmig vm: --incoming %s: %s\n", o->incoming, why);
            ret = -EINVAL;
        }
    }
    if (ret == 0 && o->control && strlen(o->control) >= VM_NET_PATH_MAX) {
        fprintf(stderr, "accmig vm: --control %s: path longer than %d bytes\n", o->control,
                VM_NET_PATH_MAX - 1);
        ret = -EINVAL;
    }
    if (ret == 0 && !o->vm.attach) {
        fprintf(stderr, "accmig vm: --attach SOCK is required\n");
        ret = -EINVAL;
    }
    if (ret == 0 && workload_config_check(wl, why, sizeof(why))) {
        fprintf(stderr, "accmig vm: %s\n", why);
        ret = -EINVAL;
    }
    /* An incoming guest brings its workload; only the RAM size must match. */
    if (ret == 0 && !o->incoming && o->vm.ram_size &&
        o->vm.ram_size < AM_ALIGN_UP(workload_ram_size(wl), VM_RAM_PAGE_SIZE)) {
        fprintf(stderr, "accmig vm: --ram is smaller than the workload needs (%llu bytes)\n",
                (unsigned long long)AM_ALIGN_UP(workload_ram_size(wl), VM_RAM_PAGE_SIZE));
        ret = -EINVAL;
    }
    if (ret)
        vmcli_usage(stderr);
    return ret;
}

/* ---- the worker ---- */

static void *vmcli_worker_main(void *arg)
{
    struct vmcli *x = arg;
    uint64_t one = 1;

    if (x->job == VMCLI_JOB_MIGRATE)
        x->job_ret = vm_migrate_out(x->vm, x->mig_to, &x->mig_opts, &x->rep);
    else
        x->job_ret = vm_incoming(x->vm, x->in_fd, x->o.accept_timeout_ms, &x->rep);
    if (write(x->wake_fd, &one, sizeof(one)) != sizeof(one))
        am_log(AM_LOG_ERR, "vm", "cannot wake the control loop");
    return NULL;
}

static int vmcli_worker_start(struct vmcli *x, enum vmcli_job job)
{
    int ret;

    x->job = job;
    ret = pthread_create(&x->worker, NULL, vmcli_worker_main, x);
    if (ret) {
        x->job = VMCLI_JOB_NONE;
        return -ret;
    }
    return 0;
}

/* ---- control connections ---- */

static void vmcli_conn_close(struct vmcli_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->len = 0;
    c->waiting = false;
}

/* Sends j (put here) as one line and closes the connection. */
static void vmcli_reply(struct vmcli_conn *c, json_object *j)
{
    const char *s = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN);
    size_t len = strlen(s), off = 0;

    while (off < len) {
        ssize_t n = send(c->fd, s + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    if (off == len && send(c->fd, "\n", 1, MSG_NOSIGNAL) != 1)
        am_log(AM_LOG_INFO, "vm", "a control client left before its reply");
    json_object_put(j);
    vmcli_conn_close(c);
}

static json_object *vmcli_ok(void)
{
    json_object *j = json_object_new_object();
    json_object_object_add(j, "ok", json_object_new_boolean(1));
    return j;
}

static void vmcli_reply_error(struct vmcli_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void vmcli_reply_error(struct vmcli_conn *c, const char *fmt, ...)
{
    json_object *j = json_object_new_object();
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_object_object_add(j, "ok", json_object_new_boolean(0));
    json_object_object_add(j, "error", json_object_new_string(msg));
    vmcli_reply(c, j);
}

static json_object *vmcli_report_json(struct vmcli *x)
{
    struct workload_report r;
    json_object *j = vmcli_ok();
    struct vm_status st;

    vm_status_get(x->vm, &st);
    json_object_object_add(j, "state", json_object_new_string(vm_state_name(st.state)));
    if (vm_guest_report(x->vm, &r) == 0) {
        json_object_object_add(j, "report", vm_workload_report_json(&r));
        json_object_object_add(j, "verdict",
                               json_object_new_string(vm_workload_report_ok(&r) ? "ok" : "failed"));
    }
    json_object_object_add(j, "migrations", json_object_get(x->log));
    return j;
}

static void vmcli_cmd_status(struct vmcli *x, struct vmcli_conn *c)
{
    struct vm_status st;
    json_object *j = vmcli_ok();

    vm_status_get(x->vm, &st);
    json_object_object_add(j, "status", vm_status_json(&st));
    json_object_object_add(j, "pid", json_object_new_int(getpid()));
    if (x->listen_name[0])
        json_object_object_add(j, "listen", json_object_new_string(x->listen_name));
    vmcli_reply(c, j);
}

/* "migrate ENDPOINT [downtime_ms=N] [max_rounds=N] [timeout_ms=N] [channels=N]" */
static void vmcli_cmd_migrate(struct vmcli *x, struct vmcli_conn *c, char *args)
{
    struct vm_mig_opts mo = {0};
    struct vm_net_endpoint ep;
    char *save = NULL, *tok, why[160];
    const char *to = NULL;
    enum vm_state st;

    for (tok = strtok_r(args, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        uint64_t v;
        char *eq = strchr(tok, '=');

        if (!eq && !to) {
            to = tok;
            continue;
        }
        if (!eq || am_parse_u64(eq + 1, INT32_MAX, &v) != 0 || v == 0) {
            vmcli_reply_error(c, "migrate: bad argument '%s'", tok);
            return;
        }
        *eq = '\0';
        if (strcmp(tok, "downtime_ms") == 0)
            mo.downtime_ms = (uint32_t)v;
        else if (strcmp(tok, "max_rounds") == 0)
            mo.max_rounds = (uint32_t)v;
        else if (strcmp(tok, "timeout_ms") == 0)
            mo.timeout_ms = (int)v;
        else if (strcmp(tok, "channels") == 0 && v <= VMSTREAM_CHANNELS_MAX)
            mo.channels = (uint32_t)v;
        else if (strcmp(tok, "channels") == 0) {
            vmcli_reply_error(c, "migrate: channels=%llu, at most %d", (unsigned long long)v,
                              VMSTREAM_CHANNELS_MAX);
            return;
        } else {
            vmcli_reply_error(c, "migrate: unknown option '%s'", tok);
            return;
        }
    }
    if (!to) {
        vmcli_reply_error(c, "migrate: which endpoint? (migrate tcp:HOST:PORT)");
        return;
    }
    if (vm_net_endpoint_parse(to, &ep, why, sizeof(why)) != 0) {
        vmcli_reply_error(c, "migrate: %s", why);
        return;
    }
    if (x->job != VMCLI_JOB_NONE) {
        vmcli_reply_error(c, "migrate: a migration is already running");
        return;
    }
    st = vm_guest_poll(x->vm);
    if (st != VM_RUNNING && st != VM_FINISHED) {
        vmcli_reply_error(c, "migrate: no guest runs here (state %s)", vm_state_name(st));
        return;
    }
    snprintf(x->mig_to, sizeof(x->mig_to), "%s", to);
    x->mig_opts = mo;
    if (vmcli_worker_start(x, VMCLI_JOB_MIGRATE) != 0) {
        vmcli_reply_error(c, "migrate: cannot start the migration thread");
        return;
    }
    c->waiting = true;
}

/* "resolve source|destination": which side runs a guest whose handover is
 * in doubt (docs/vm.md). */
static void vmcli_cmd_resolve(struct vmcli *x, struct vmcli_conn *c, const char *args)
{
    struct vm_status st;
    bool source = strcmp(args, "source") == 0, run_here;
    char why[400];
    json_object *j;
    int ret;

    if (!source && strcmp(args, "destination") != 0) {
        vmcli_reply_error(c, "resolve: which side runs the guest? (resolve source|destination)");
        return;
    }
    if (x->job != VMCLI_JOB_NONE) {
        vmcli_reply_error(c, "resolve: a migration is running");
        return;
    }
    vm_status_get(x->vm, &st);
    if (st.handover == VM_HO_NONE) {
        vmcli_reply_error(c, "resolve: this VMM took part in no handover");
        return;
    }
    run_here = st.handover_source == source;
    ret = vm_resolve(x->vm, run_here, why, sizeof(why));
    if (ret) {
        vmcli_reply_error(c, "resolve: %s", why);
        return;
    }
    if (st.state == VM_IN_DOUBT && !run_here && !st.handover_source)
        x->incoming_failed = true; /* discarded: this VMM's work is over */
    vm_status_get(x->vm, &st);
    j = vmcli_ok();
    json_object_object_add(j, "status", vm_status_json(&st));
    vmcli_reply(c, j);
}

static void vmcli_command(struct vmcli *x, struct vmcli_conn *c, char *line)
{
    char *args = strchr(line, ' ');

    if (args)
        *args++ = '\0';
    else
        args = line + strlen(line);
    if (strcmp(line, "status") == 0) {
        vmcli_cmd_status(x, c);
    } else if (strcmp(line, "report") == 0) {
        vmcli_reply(c, vmcli_report_json(x));
    } else if (strcmp(line, "migrate") == 0) {
        vmcli_cmd_migrate(x, c, args);
    } else if (strcmp(line, "hold") == 0) {
        if (vm_hold_set(x->vm, args) != 0)
            vmcli_reply_error(c, "hold: unknown phase '%s' (precopy, stop-copy, incoming)", args);
        else
            vmcli_reply(c, vmcli_ok());
    } else if (strcmp(line, "continue") == 0) {
        vm_hold_release(x->vm);
        vmcli_reply(c, vmcli_ok());
    } else if (strcmp(line, "resolve") == 0) {
        vmcli_cmd_resolve(x, c, args);
    } else if (strcmp(line, "quit") == 0) {
        vmcli_quit(x);
        vmcli_reply(c, vmcli_ok());
    } else {
        vmcli_reply_error(c, "unknown command '%.64s' (status, report, migrate, hold, continue, "
                          "resolve, quit)", line);
    }
}

static void vmcli_conn_readable(struct vmcli *x, struct vmcli_conn *c)
{
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
    char *nl;

    if (n < 0 && errno == EINTR)
        return;
    if (n <= 0) {
        vmcli_conn_close(c); /* a waiting client left: the migration goes on */
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    nl = memchr(c->buf, '\n', c->len);
    if (!nl) {
        if (c->len == sizeof(c->buf) - 1)
            vmcli_reply_error(c, "command longer than %d bytes", VM_CONTROL_LINE_MAX - 1);
        return;
    }
    *nl = '\0';
    if (nl > c->buf && nl[-1] == '\r')
        nl[-1] = '\0';
    vmcli_command(x, c, c->buf);
}

static void vmcli_accept(struct vmcli *x)
{
    int fd = accept4(x->ctl_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (fd < 0)
        return;
    for (unsigned i = 0; i < VMCLI_MAX_CONNS; i++) {
        if (x->conns[i].fd < 0) {
            x->conns[i].fd = fd;
            return;
        }
    }
    close(fd); /* too many at once; the client sees the connection end */
}

/* ---- the worker's end ---- */

static void vmcli_job_done(struct vmcli *x)
{
    enum vmcli_job job = x->job;
    json_object *mj;

    pthread_join(x->worker, NULL);
    x->job = VMCLI_JOB_NONE;
    if (job == VMCLI_JOB_INCOMING)
        snprintf(x->rep.peer, sizeof(x->rep.peer), "%s", x->listen_name);
    mj = vm_mig_report_json(&x->rep);
    json_object_object_add(mj, "role", json_object_new_string(job == VMCLI_JOB_MIGRATE ? "source"
                                                                                       : "destination"));
    json_object_array_add(x->log, json_object_get(mj));
    if (job == VMCLI_JOB_MIGRATE) {
        for (unsigned i = 0; i < VMCLI_MAX_CONNS; i++) {
            if (x->conns[i].fd >= 0 && x->conns[i].waiting) {
                json_object *j = json_object_new_object();
                json_object_object_add(j, "ok", json_object_new_boolean(x->job_ret == 0));
                if (x->job_ret)
                    json_object_object_add(j, "error", json_object_new_string(x->rep.error));
                if (x->job_ret == -EINPROGRESS)
                    json_object_object_add(j, "in_doubt", json_object_new_boolean(1));
                json_object_object_add(j, "migration", json_object_get(mj));
                vmcli_reply(&x->conns[i], j);
            }
        }
        if (x->job_ret == 0)
            fprintf(stderr, "accmig vm: the guest migrated to %s (downtime %.1f ms)\n", x->mig_to,
                    (double)x->rep.downtime_us / 1e3);
        else if (x->job_ret == -EINPROGRESS)
            fprintf(stderr, "accmig vm: HANDOVER IN DOUBT (migration to %s): %s\n", x->mig_to,
                    x->rep.error);
        else
            fprintf(stderr, "accmig vm: migration to %s failed: %s%s\n", x->mig_to, x->rep.error,
                    x->rep.rolled_back ? "; the guest carries on here" : "");
    } else if (x->job_ret == -EINPROGRESS) {
        fprintf(stderr, "accmig vm: HANDOVER IN DOUBT (incoming): %s\n", x->rep.error);
    } else if (x->job_ret == -ECANCELED && x->quit) {
        fprintf(stderr, "accmig vm: stopped while waiting for a migration\n");
    } else if (x->job_ret) {
        fprintf(stderr, "accmig vm: incoming migration failed: %s; state discarded, VF reset\n",
                x->rep.error);
        x->incoming_failed = true;
    } else {
        fprintf(stderr, "accmig vm: guest received (%llu precopy rounds, %llu bytes of RAM), "
                        "running\n", (unsigned long long)x->rep.precopy_rounds,
                (unsigned long long)x->rep.ram_bytes);
    }
    json_object_put(mj);
}

/* ---- setup and the loop ---- */

/* The control socket appears only once it listens (bound under a
 * temporary name, then renamed), born 0600; a live one at the path is
 * refused, a stale one replaced. */
static int vmcli_control_open(struct vmcli *x)
{
    char name[VM_NET_PATH_MAX + 8], reply[8], why[160];
    struct vm_net_endpoint tmp;
    mode_t old;
    int ret;

    snprintf(name, sizeof(name), "unix:%s", x->o.control);
    ret = vm_net_endpoint_parse(name, &x->ctl_ep, why, sizeof(why));
    if (ret == 0 && (int)sizeof(name) <= snprintf(name, sizeof(name), "unix:%s.%d", x->o.control,
                                                   (int)getpid()))
        ret = -ENAMETOOLONG;
    if (ret == 0)
        ret = vm_net_endpoint_parse(name, &tmp, why, sizeof(why));
    if (ret) {
        fprintf(stderr, "accmig vm: --control %s: %s\n", x->o.control,
                ret == -ENAMETOOLONG ? "path too long" : why);
        return ret;
    }
    /* Anyone answering there? Then it is another VMM's. */
    if (vm_control_request(x->o.control, "status", reply, sizeof(reply), 1000) != -ECONNREFUSED &&
        access(x->o.control, F_OK) == 0) {
        fprintf(stderr, "accmig vm: --control %s: another process listens there\n",
                x->o.control);
        return -EADDRINUSE;
    }
    old = umask(077); /* only the socket's owner drives the VMM */
    ret = vm_net_listen(&tmp, &x->ctl_fd);
    umask(old);
    if (ret == 0 && rename(tmp.path, x->ctl_ep.path) != 0) {
        ret = -errno;
        vm_net_listen_close(&tmp, x->ctl_fd);
        x->ctl_fd = -1;
    }
    if (ret)
        fprintf(stderr, "accmig vm: control socket %s: %s\n", x->o.control, strerror(-ret));
    return ret;
}

static int vmcli_incoming_open(struct vmcli *x)
{
    char why[160];
    uint16_t port;
    int ret = vm_net_endpoint_parse(x->o.incoming, &x->in_ep, why, sizeof(why));

    if (ret) {
        fprintf(stderr, "accmig vm: --incoming %s: %s\n", x->o.incoming, why);
        return ret;
    }
    ret = vm_net_listen(&x->in_ep, &x->in_fd);
    if (ret) {
        fprintf(stderr, "accmig vm: --incoming %s: %s\n", x->o.incoming, strerror(-ret));
        return ret;
    }
    if (x->in_ep.kind == VM_NET_TCP && vm_net_listen_port(x->in_fd, &port) == 0)
        x->in_ep.port = port;
    if (vm_net_endpoint_format(&x->in_ep, x->listen_name, sizeof(x->listen_name)) != 0)
        snprintf(x->listen_name, sizeof(x->listen_name), "%s", x->o.incoming);
    fprintf(stderr, "accmig vm: waiting for a migration on %s\n", x->listen_name);
    return 0;
}

static void vmcli_signal(struct vmcli *x)
{
    struct signalfd_siginfo si;

    if (read(x->sig_fd, &si, sizeof(si)) != sizeof(si))
        return;
    vmcli_quit(x);
}

/* The server's socket hung up (a dead server, not a slow one): fail the VM
 * at once rather than when the guest's jobs time out. A migration under way
 * fails at its next device call by itself (and says why to its peer); only
 * a destination still waiting for its source, with no device call to come,
 * is aborted. */
static void vmcli_device_gone(struct vmcli *x)
{
    struct vm_status st;

    if (x->job == VMCLI_JOB_NONE && vm_guest_poll(x->vm) == VM_MIGRATED) {
        x->dev_unwatched = true;
        return;
    }
    x->dev_gone = true;
    vm_device_gone(x->vm);
    vm_status_get(x->vm, &st);
    if (x->job == VMCLI_JOB_INCOMING && strcmp(st.phase, "wait") == 0)
        vm_abort(x->vm);
    fprintf(stderr, "accmig vm: the device server went away (%s hung up): the guest's device is "
                    "gone\n", x->o.vm.attach);
}

static void vmcli_wake(struct vmcli *x)
{
    uint64_t n;

    if (read(x->wake_fd, &n, sizeof(n)) == sizeof(n) && x->job != VMCLI_JOB_NONE) {
        vmcli_job_done(x);
        if (x->dev_gone) /* a guest the failed migration left running here is failed too */
            vm_device_gone(x->vm);
    }
}

/* Runs until the guest finished (without --stay), migrated away, an
 * incoming migration failed, or quit / a signal. */
static void vmcli_loop(struct vmcli *x)
{
    for (;;) {
        struct pollfd p[4 + VMCLI_MAX_CONNS];
        struct vmcli_conn *pc[4 + VMCLI_MAX_CONNS];
        int dev_fd = x->dev_gone || x->dev_unwatched ? -1 : vm_device_fd(x->vm);
        enum vm_state st;
        nfds_t n = 0, first = 2;

        if (x->job == VMCLI_JOB_NONE) {
            st = vm_guest_poll(x->vm);
            if (x->quit || x->incoming_failed || st == VM_MIGRATED ||
                (st == VM_FINISHED && !x->o.stay) || (x->dev_gone && !x->o.stay))
                return;
        }
        p[n++] = (struct pollfd){.fd = x->sig_fd, .events = POLLIN};
        p[n++] = (struct pollfd){.fd = x->wake_fd, .events = POLLIN};
        /* Only the hang-up: the client reads its replies itself. */
        if (dev_fd >= 0) {
            p[n++] = (struct pollfd){.fd = dev_fd, .events = POLLRDHUP};
            first = 3;
        }
        if (x->ctl_fd >= 0)
            p[n++] = (struct pollfd){.fd = x->ctl_fd, .events = POLLIN};
        for (unsigned i = 0; i < VMCLI_MAX_CONNS; i++) {
            if (x->conns[i].fd >= 0) {
                pc[n] = &x->conns[i];
                p[n++] = (struct pollfd){.fd = x->conns[i].fd, .events = POLLIN};
            }
        }
        if (poll(p, n, VMCLI_POLL_MS) <= 0)
            continue;
        if (p[0].revents)
            vmcli_signal(x);
        if (p[1].revents)
            vmcli_wake(x);
        if (first == 3 && (p[2].revents & (POLLRDHUP | POLLHUP | POLLERR)))
            vmcli_device_gone(x);
        for (nfds_t i = first; i < n; i++) {
            if (!p[i].revents)
                continue;
            if (x->ctl_fd >= 0 && p[i].fd == x->ctl_fd)
                vmcli_accept(x);
            else if (pc[i]->fd == p[i].fd)
                vmcli_conn_readable(x, pc[i]);
        }
    }
}

/* The last word on stdout; returns the exit status. */
static int vmcli_finish(struct vmcli *x)
{
    struct workload_report r;
    enum vm_state st;
    bool have;
    const char *outcome;
    int status = 0;

    /* Quitting: is the server still there? The guest's shutdown waits on
     * the device (queue stops, seconds each when it never answers), so a
     * frozen one (the watchdog cuts the probe within 0.5 s) means the same
     * as a dead one: the vCPUs are stopped, not shut down. */
    if (x->quit && !x->dev_gone && vm_device_probe(x->vm) != 0) {
        x->dev_gone = true;
        vm_device_gone(x->vm);
    }
    st = vm_guest_poll(x->vm);
    have = vm_guest_report(x->vm, &r) == 0;

    /* A guest whose device is gone is not shut down: that talks to the
     * device (and waits on it); vm_destroy only stops its vCPUs. */
    if (st == VM_RUNNING || st == VM_FINISHED) {
        int ret = vm_guest_shutdown(x->vm);
        if (ret)
            fprintf(stderr, "accmig vm: guest shutdown: %s\n", strerror(-ret));
        have = vm_guest_report(x->vm, &r) == 0;
    }
    if (st == VM_IN_DOUBT) {
        struct vm_status vs;
        char why[200];

        /* Quit with the handover unsettled: a destination never runs the
         * guest by itself (it discards it); a source never resumes it. */
        vm_status_get(x->vm, &vs);
        if (!vs.handover_source)
            vm_resolve(x->vm, false, why, sizeof(why));
        fprintf(stderr, "accmig vm: quit with the handover in doubt: the guest %s\n",
                vs.handover_source ? "was left paused, never resumed here"
                                   : "was discarded, never run here");
        outcome = "in-doubt";
        status = 1;
        have = false;
    } else if (x->incoming_failed) { /* also when its server died during it */
        outcome = "incoming-failed";
        status = 1;
    } else if (x->dev_gone) {
        outcome = "device-gone";
        status = 3;
    } else if (st == VM_MIGRATED) {
        outcome = "migrated";
    } else if (st == VM_FINISHED) {
        outcome = "finished";
        status = have && vm_workload_report_ok(&r) ? 0 : 1;
    } else {
        outcome = "stopped";
        status = have && (r.jobs_failed || r.jobs_duplicated || r.stray_completions) ? 1 : 0;
    }
    if (x->o.json) {
        json_object *j = json_object_new_object();
        json_object_object_add(j, "outcome", json_object_new_string(outcome));
        if (have) {
            json_object_object_add(j, "report", vm_workload_report_json(&r));
            json_object_object_add(j, "verdict", json_object_new_string(
                                                     vm_workload_report_ok(&r) ? "ok" : "failed"));
        }
        json_object_object_add(j, "migrations", json_object_get(x->log));
        printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
        json_object_put(j);
    } else {
        printf("accmig vm: %s\n", outcome);
        if (have)
            printf("  jobs: %llu of %llu submitted, %llu completed, %llu verified, %llu failed; "
                   "%llu duplicated, %llu lost\n",
                   (unsigned long long)r.jobs_submitted, (unsigned long long)r.jobs,
                   (unsigned long long)r.jobs_completed, (unsigned long long)r.jobs_verified,
                   (unsigned long long)r.jobs_failed, (unsigned long long)r.jobs_duplicated,
                   (unsigned long long)r.jobs_lost);
        if (st == VM_FINISHED)
            printf("verdict: %s\n", status == 0 ? "OK, every job verified exactly once" : "FAILED");
    }
    fflush(stdout);
    return status;
}

static int vmcli_setup(struct vmcli *x)
{
    const char *hold = getenv(VMCLI_HOLD_ENV), *fault = getenv(VMCLI_FAULT_ENV);
    sigset_t sigs;
    int ret;

    /* Blocked before any thread exists: every thread inherits the mask and
     * the signalfd in the loop receives them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0)
        return -EINVAL;
    x->sig_fd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    x->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (x->sig_fd < 0 || x->wake_fd < 0) {
        fprintf(stderr, "accmig vm: signalfd/eventfd: %s\n", strerror(errno));
        return -errno;
    }
    ret = vm_create(&x->o.vm, &x->vm);
    if (ret) {
        fprintf(stderr, "accmig vm: cannot attach to %s: %s\n", x->o.vm.attach, strerror(-ret));
        return ret;
    }
    if (hold && hold[0] && vm_hold_set(x->vm, hold) != 0) {
        fprintf(stderr, "accmig vm: %s=%s names no phase (precopy, stop-copy, incoming)\n",
                VMCLI_HOLD_ENV, hold);
        return -EINVAL;
    }
    if (fault && fault[0]) {
        char point[32];
        const char *colon = strchr(fault, ':');
        size_t n = colon ? (size_t)(colon - fault) : 0;

        if (!colon || n >= sizeof(point) ||
            (memcpy(point, fault, n), point[n] = '\0', vm_fault_set(x->vm, point, colon + 1)) != 0) {
            fprintf(stderr, "accmig vm: %s=%s: want POINT:ACTION (points: precopy, stop-copy, "
                    "incoming, src-ready, src-commit, dst-end, dst-ready, dst-commit; actions: "
                    "hold, kill, stop, cut-send, cut-recv)\n", VMCLI_FAULT_ENV, fault);
            return -EINVAL;
        }
    }
    if (x->o.incoming && (ret = vmcli_incoming_open(x)) != 0)
        return ret;
    if (x->o.control && (ret = vmcli_control_open(x)) != 0)
        return ret;
    if (x->o.incoming)
        ret = vmcli_worker_start(x, VMCLI_JOB_INCOMING);
    else
        ret = vm_guest_start(x->vm);
    if (ret)
        fprintf(stderr, "accmig vm: cannot start the guest: %s\n", strerror(-ret));
    return ret;
}

static void vmcli_cleanup(struct vmcli *x)
{
    for (unsigned i = 0; i < VMCLI_MAX_CONNS; i++)
        vmcli_conn_close(&x->conns[i]);
    if (x->ctl_fd >= 0)
        vm_net_listen_close(&x->ctl_ep, x->ctl_fd);
    if (x->in_fd >= 0)
        vm_net_listen_close(&x->in_ep, x->in_fd);
    vm_destroy(x->vm);
    if (x->sig_fd >= 0)
        close(x->sig_fd);
    if (x->wake_fd >= 0)
        close(x->wake_fd);
    json_object_put(x->log);
}

int cli_vm(int argc, char **argv)
{
    struct vmcli *x = calloc(1, sizeof(*x));
    int ret, status;

    if (!x)
        return 2;
    x->ctl_fd = x->in_fd = x->wake_fd = x->sig_fd = -1;
    for (unsigned i = 0; i < VMCLI_MAX_CONNS; i++)
        x->conns[i].fd = -1;
    x->log = json_object_new_array();
    ret = vmcli_parse(argc, argv, &x->o);
    if (ret) {
        vmcli_cleanup(x);
        free(x);
        return ret > 0 ? 0 : 2;
    }
    ret = vmcli_setup(x);
    if (ret) {
        if (x->job != VMCLI_JOB_NONE) {
            vm_abort(x->vm);
            pthread_join(x->worker, NULL);
        }
        vmcli_cleanup(x);
        free(x);
        return 2;
    }
    vmcli_loop(x);
    if (x->job != VMCLI_JOB_NONE) { /* quit during a migration: it was aborted */
        pthread_join(x->worker, NULL);
        x->job = VMCLI_JOB_NONE;
    }
    status = vmcli_finish(x);
    vm_halt(x->vm);
    vmcli_watch_stop(&x->watch); /* before vm_destroy: it looks at the device */
    vmcli_cleanup(x);
    free(x);
    return status;
}
