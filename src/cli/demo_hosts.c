/* accmig demo with separate processes (demo_hosts.h): the main job.
 *
 * In a private directory (mode 0700 under $TMPDIR or /tmp) it starts, each
 * as /proc/self/exe with PR_SET_PDEATHSIG so nothing outlives the demo:
 *   host A: `accmig serve --dir DIR/a --vfs 2G`   host B: the same in DIR/b
 *   vm0:    `accmig vm --attach DIR/a/vf0.sock --control DIR/vm0.ctl --stay`
 * (G guests: one such VMM per guest, guest g's named g<g>.vm0 for g > 0,
 * its workload seeded with seed + g) and for migration round k (1..M) an
 * incoming mini-VMM per guest on the other host,
 *   vm<k>:  `accmig vm --attach ... --incoming tcp:127.0.0.1:0 --prealloc --stay`
 * (the port it got is read from its "status"), then waits until every guest
 * has done k/(M+1) of its jobs and sends "migrate tcp:127.0.0.1:PORT" to
 * every VMM running a guest at once: one thread per request, all of a
 * round's threads ready before any request goes out, all joined before the
 * next round. The old VMM exits after the handover; its VF is free again.
 * Guest g's VMM k uses VF 2g + (k/2)%2 of host k%2: no two guests share a
 * VF, and a VF is reused only two migrations after its previous VMM left.
 * When a guest is done on its last VMM the demo reads its report (the job
 * table lives in guest RAM, so it covers the whole run), says quit, and at
 * the end stops the servers and removes the directory. Progress goes to
 * stdout (stderr with --json): a line that updates in place on a terminal,
 * plain lines otherwise.
 *
 * Children's output goes to log files in the directory; on a failure the
 * tail of each is copied to stderr before the directory goes.
 */
#include "cli/demo_hosts.h"
#include "cli/cli_opts.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common/common.h"
#include "guest/workload.h"
#include "qm/qm.h"
#include "vmm/ledger.h"
#include "vmm/vm.h"
#include "vmm/vm_ram.h"

/* Two VFs per guest on each host (see dh_vm_vf). */
#define DH_MAX_GUESTS (QM_MAX_VFS / 2)
/* 2 servers + per guest its VMM and an incoming one, with room */
#define DH_MAX_KIDS (2 + 2 * DH_MAX_GUESTS + 2)
#define DH_START_TIMEOUT_MS 20000 /* a socket to appear (ASan builds start slowly) */
#define DH_STOP_TIMEOUT_MS 5000  /* a child to exit after SIGTERM / quit */
#define DH_POLL_MS 50
#define DH_PLAIN_PROGRESS_MS 2000 /* plain progress lines at most this often */
#define DH_REPLY_MAX VM_CONTROL_REPLY_MAX
#define DH_MAX_MIGRATIONS 1000u

struct dh_opts {
    struct workload_config wl; /* each guest's; guest g's seed is wl.seed + g */
    unsigned guests;
    unsigned migrations;
    uint32_t downtime_ms;
    bool json;
};

struct dh_kid {
    pid_t pid;        /* 0: free slot */
    char name[16];    /* "server A", "vm3", "g1.vm3" */
    char log[PATH_MAX];
};

/* One guest of the run: where it lives and what it did. */
struct dh_guest {
    unsigned cur;     /* the VMM (migration index) running it */
    json_object *log; /* its migration_log (entries shared with dh.log) */
    json_object *rep; /* its final report, NULL until read */
    unsigned migrations_done;
    struct vm_ledger ledger; /* the supervisor's own account of its jobs */
    bool ledger_done;
};

struct dh {
    struct dh_opts o;
    char exe[PATH_MAX];
    char dir[80];     /* short: the sockets in it must fit sun_path */
    bool dir_made;
    int sig_fd;
    bool interrupted;
    struct dh_kid kids[DH_MAX_KIDS];
    FILE *prog;       /* progress: stdout, or stderr with --json */
    bool tty;
    bool line_open;   /* a live line is on screen without its newline */
    uint64_t last_plain_ns;
    uint64_t t0_ns;
    uint64_t ram_size;
    unsigned qps_per_vf;
    json_object *log; /* migration_log: every guest's migrations, in round order */
    struct dh_guest *guests; /* o.guests of them */
    unsigned migrations_done; /* summed over guests */
    bool failed;      /* a step failed: the verdict is FAILED */
    bool guest_started;
    struct vm_ledger ledger; /* summed over the guests */
};

/* ---- options ---- */

static void dh_usage(FILE *f)
{
    fprintf(f,
            "usage: accmig demo [options]\n"
            "  The main job: two device servers (accmig serve, one per host) and mini-VMMs\n"
            "  (accmig vm) as separate processes; the guest's workload runs on host A's VF\n"
            "  and is live-migrated (RAM + VF state over TCP on loopback) while it works,\n"
            "  back and forth; every job is checked exactly once per tag, by the guest and\n"
            "  again by this supervisor (ZIP: zlib + the device's inflate; SEC and HPRE:\n"
            "  libcrypto).\n"
            "  --engine E          zip (default) | sec (AES-CBC/CTR/XTS/GCM encrypt, then\n"
            "                      decrypt) | hpre (RSA public + CRT, DH-2048, X25519)\n"
            "  --jobs N            jobs to run (default 2000)\n"
            "  --qps N             queues used, even: half compress, half decompress (default 4)\n"
            "  --vcpus N           guest vCPU threads (default 4)\n"
            "  --min-size BYTES    smallest input (default 1K)\n"
            "  --max-size BYTES    largest input (default 1M; at most 4M)\n"
            "  --seed N            data and job mix seed (default 1)\n"
            "  --sgl-percent N     share of jobs on hardware SGLs (default 25)\n"
            "  --stream-percent N  share of stream jobs: one stream compressed in 4-16\n"
            "                      pieces, a stream-mode SQE each (default 0)\n"
            "  --migrations M      live migrations, alternating hosts (default 1; 0: one host)\n"
            "  --guests N          guests, each with its own workload (seed + its index) on\n"
            "                      its own VFs, migrated all at the same time (default 1,\n"
            "                      at most %u)\n"
            "  --downtime-ms N     downtime goal of each migration (default %d)\n"
            "  --transport T       vfio-user (this demo, the default) | inproc (the same guest\n"
            "                      with the device model in this process: accmig demo\n"
            "                      --transport inproc --help)\n"
            "  --json              print one JSON object instead of the summary\n"
            "Exit status: 0 every job verified exactly once and every migration done,\n"
            "1 a check failed, 2 usage or setup error.\n",
            DH_MAX_GUESTS, VM_DEFAULT_DOWNTIME_MS);
}

bool demo_hosts_is_inproc(int argc, char **argv)
{
    bool inproc = false;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--transport") == 0 && i + 1 < argc)
            inproc = strcmp(argv[++i], "inproc") == 0;
        else if (strncmp(argv[i], "--transport=", 12) == 0)
            inproc = strcmp(argv[i] + 12, "inproc") == 0;
    }
    return inproc;
}

enum {
    DH_OPT_MIGRATIONS = 1, DH_OPT_DOWNTIME, DH_OPT_TRANSPORT, DH_OPT_WORKERS, DH_OPT_SAVE_STATE,
    DH_OPT_JSON, DH_OPT_HELP, DH_OPT_GUESTS,
};

/* 0 ok, 1 help printed, -EINVAL bad usage (reported). */
static int dh_parse(int argc, char **argv, struct dh_opts *o)
{
    static const struct option longopts[] = {
        CLI_OPTS_WORKLOAD_LONGOPTS,
        {"migrations", required_argument, NULL, DH_OPT_MIGRATIONS},
        {"guests", required_argument, NULL, DH_OPT_GUESTS},
        {"downtime-ms", required_argument, NULL, DH_OPT_DOWNTIME},
        {"transport", required_argument, NULL, DH_OPT_TRANSPORT},
        {"workers", required_argument, NULL, DH_OPT_WORKERS},
        {"save-state", required_argument, NULL, DH_OPT_SAVE_STATE},
        {"json", no_argument, NULL, DH_OPT_JSON},
        {"help", no_argument, NULL, DH_OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    struct workload_config *wl = &o->wl;
    char why[128];
    uint64_t v = 0;
    int c, ret = 0;

    memset(o, 0, sizeof(*o));
    workload_config_default(wl);
    o->migrations = 1;
    o->guests = 1;
    o->downtime_ms = VM_DEFAULT_DOWNTIME_MS;
    optind = 1;
    opterr = 0;
    while (ret == 0 && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case DH_OPT_MIGRATIONS:
            ret = cli_opt_num("demo", "--migrations", optarg, 0, DH_MAX_MIGRATIONS, &v);
            o->migrations = (unsigned)v;
            break;
        case DH_OPT_GUESTS:
            /* Each guest needs two VFs on each host (dh_vm_vf). */
            ret = cli_opt_num("demo", "--guests", optarg, 1, DH_MAX_GUESTS, &v);
            if (ret)
                fprintf(stderr, "accmig demo: each guest takes two VFs of each host and a "
                                "device server has at most %u VFs\n", QM_MAX_VFS);
            o->guests = (unsigned)v;
            break;
        case DH_OPT_DOWNTIME:
            ret = cli_opt_num("demo", "--downtime-ms", optarg, 1, 60000, &v);
            o->downtime_ms = (uint32_t)v;
            break;
        case DH_OPT_TRANSPORT:
            if (strcmp(optarg, "vfio-user") != 0) {
                fprintf(stderr, "accmig demo: --transport is inproc or vfio-user, not '%s'\n",
                        optarg);
                ret = -EINVAL;
            }
            break;
        case DH_OPT_WORKERS:
            fprintf(stderr, "accmig demo: --workers is for --transport inproc (the device "
                            "servers run their default workers)\n");
            ret = -EINVAL;
            break;
        case DH_OPT_SAVE_STATE:
            fprintf(stderr, "accmig demo: --save-state is for --transport inproc (here the "
                            "device state travels inside the VM migration stream)\n");
            ret = -EINVAL;
            break;
        case DH_OPT_JSON: o->json = true; break;
        case DH_OPT_HELP: dh_usage(stdout); return 1;
        default:
            ret = cli_opt_workload("demo", c, optarg, wl);
            if (ret == -ENOENT) {
                fprintf(stderr, "accmig demo: unknown or incomplete option '%s'\n", argv[optind - 1]);
                ret = -EINVAL;
            }
        }
    }
    if (ret == 0 && optind < argc) {
        fprintf(stderr, "accmig demo: unexpected argument '%s'\n", argv[optind]);
        ret = -EINVAL;
    }
    if (ret == 0 && workload_config_check(wl, why, sizeof(why))) {
        fprintf(stderr, "accmig demo: %s\n", why);
        ret = -EINVAL;
    }
    if (ret)
        dh_usage(stderr);
    return ret;
}

/* ---- progress ---- */

static void dh_say(struct dh *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* An event: its own line (ending a live line first). */
static void dh_say(struct dh *d, const char *fmt, ...)
{
    va_list ap;

    if (d->line_open)
        fputs("\r\033[K", d->prog);
    d->line_open = false;
    fprintf(d->prog, "[%6.1fs] ", (double)(am_now_ns() - d->t0_ns) / 1e9);
    va_start(ap, fmt);
    vfprintf(d->prog, fmt, ap);
    va_end(ap);
    fputc('\n', d->prog);
    fflush(d->prog);
}

/* A progress update: in place on a terminal, rate-limited lines otherwise. */
static void dh_progress(struct dh *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void dh_progress(struct dh *d, const char *fmt, ...)
{
    uint64_t now = am_now_ns();
    va_list ap;

    if (!d->tty && now - d->last_plain_ns < (uint64_t)DH_PLAIN_PROGRESS_MS * 1000000u)
        return;
    d->last_plain_ns = now;
    fprintf(d->prog, d->tty ? "\r\033[K[%6.1fs] " : "[%6.1fs] ", (double)(now - d->t0_ns) / 1e9);
    va_start(ap, fmt);
    vfprintf(d->prog, fmt, ap);
    va_end(ap);
    if (!d->tty)
        fputc('\n', d->prog);
    d->line_open = d->tty;
    fflush(d->prog);
}

static void dh_progress_end(struct dh *d)
{
    if (d->line_open)
        fputs("\r\033[K", d->prog);
    d->line_open = false;
    fflush(d->prog);
}

/* ---- children ---- */

/* Waits up to ms for a signal on the demo: -EINTR when one came. */
static int dh_sleep(struct dh *d, int ms)
{
    struct pollfd p = {.fd = d->sig_fd, .events = POLLIN};
    struct signalfd_siginfo si;

    if (d->interrupted)
        return -EINTR;
    if (poll(&p, 1, ms) > 0 && read(d->sig_fd, &si, sizeof(si)) == sizeof(si)) {
        d->interrupted = true;
        dh_say(d, "interrupted (signal %u): stopping everything", si.ssi_signo);
        return -EINTR;
    }
    return 0;
}

static struct dh_kid *dh_kid_find(struct dh *d, const char *name)
{
    for (unsigned i = 0; i < DH_MAX_KIDS; i++)
        if (d->kids[i].pid > 0 && strcmp(d->kids[i].name, name) == 0)
            return &d->kids[i];
    return NULL;
}

/* Starts exe with args (NULL-terminated, args[0] the subcommand), stdout
 * and stderr into DIR/<file>.log. */
static int dh_spawn(struct dh *d, const char *name, const char *file, const char *const *args)
{
    const char *argv[40];
    struct dh_kid *k = NULL;
    sigset_t none;
    unsigned n = 0;
    pid_t parent = getpid(), pid;
    int fd;

    for (unsigned i = 0; i < DH_MAX_KIDS && !k; i++)
        if (d->kids[i].pid == 0)
            k = &d->kids[i];
    if (!k)
        return -EMFILE;
    argv[n++] = d->exe;
    for (; args[n - 1] && n < AM_ARRAY_SIZE(argv) - 1; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    snprintf(k->name, sizeof(k->name), "%s", name);
    snprintf(k->log, sizeof(k->log), "%s/%s.log", d->dir, file);
    fd = open(k->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    sigemptyset(&none);
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls until exec. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(d->exe, (char *const *)argv);
        _exit(127);
    }
    close(fd);
    k->pid = pid;
    return 0;
}

/* Reaps k if it has exited: true and *status (the exit code, 128+signal). */
static bool dh_kid_exited(struct dh_kid *k, int *status)
{
    int st;

    if (k->pid <= 0)
        return true;
    if (waitpid(k->pid, &st, WNOHANG) != k->pid)
        return false;
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    k->pid = 0;
    return true;
}

/* Waits up to ms for k to exit on its own: 0 and *status, or -ETIMEDOUT. */
static int dh_kid_wait(struct dh *d, struct dh_kid *k, int ms, int *status)
{
    uint64_t deadline = am_now_ns() + (uint64_t)ms * 1000000u;

    while (!dh_kid_exited(k, status)) {
        if (am_now_ns() >= deadline)
            return -ETIMEDOUT;
        if (dh_sleep(d, 10) != 0 && am_now_ns() >= deadline)
            return -ETIMEDOUT;
    }
    return 0;
}

/* SIGTERM, a grace period, SIGKILL: the child is gone afterwards. */
static int dh_kid_stop(struct dh_kid *k)
{
    uint64_t deadline = am_now_ns() + (uint64_t)DH_STOP_TIMEOUT_MS * 1000000u;
    int status = -1;

    if (k->pid <= 0)
        return 0;
    kill(k->pid, SIGTERM);
    while (!dh_kid_exited(k, &status)) {
        if (am_now_ns() >= deadline) {
            kill(k->pid, SIGKILL);
            waitpid(k->pid, NULL, 0);
            k->pid = 0;
            return 128 + SIGKILL;
        }
        usleep(5000);
    }
    return status;
}

/* The last lines of a child's log, for a failure report. */
static void dh_log_tail(const struct dh_kid *k)
{
    char buf[2048];
    FILE *f = fopen(k->log, "r");
    long size;
    size_t n;

    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0, SEEK_SET);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    if (n)
        fprintf(stderr, "---- %s (%s), last lines:\n%s%s", k->name, k->log, buf,
                buf[n - 1] == '\n' ? "" : "\n");
}

/* Waits for path to appear while kid runs. */
static int dh_wait_path(struct dh *d, const char *path, const char *kid)
{
    uint64_t deadline = am_now_ns() + (uint64_t)DH_START_TIMEOUT_MS * 1000000u;
    struct dh_kid *k = dh_kid_find(d, kid);
    int status;

    while (access(path, F_OK) != 0) {
        if (!k || dh_kid_exited(k, &status)) {
            fprintf(stderr, "accmig demo: %s exited before %s appeared\n", kid, path);
            return -ECHILD;
        }
        if (am_now_ns() >= deadline) {
            fprintf(stderr, "accmig demo: %s did not create %s within %d ms\n", kid, path,
                    DH_START_TIMEOUT_MS);
            return -ETIMEDOUT;
        }
        if (dh_sleep(d, 10))
            return -EINTR;
    }
    return 0;
}

static int dh_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Every child stopped (reaped), the directory removed; logs shown first
 * when something failed. */
static void dh_cleanup(struct dh *d, bool show_logs)
{
    for (unsigned i = 0; i < DH_MAX_KIDS; i++) {
        if (d->kids[i].name[0] == '\0')
            continue;
        if (show_logs)
            dh_log_tail(&d->kids[i]);
        dh_kid_stop(&d->kids[i]);
    }
    if (d->dir_made)
        nftw(d->dir, dh_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    d->dir_made = false;
}

/* ---- the control sockets ---- */

/* Sends cmd to a VMM; *out gets the parsed reply when "ok" is true
 * (caller puts it). -EPROTO for a reply that is not ours, -EREMOTEIO for
 * ok:false (the error copied to why). */
static int dh_ctl(const char *ctl, const char *cmd, int timeout_ms, json_object **out, char *why,
                  size_t why_len)
{
    char *reply = malloc(DH_REPLY_MAX);
    json_object *j, *v;
    int ret;

    if (!reply)
        return -ENOMEM;
    ret = vm_control_request(ctl, cmd, reply, DH_REPLY_MAX, timeout_ms);
    if (ret) {
        snprintf(why, why_len, "%s", strerror(-ret));
        free(reply);
        return ret;
    }
    j = json_tokener_parse(reply);
    free(reply);
    if (!j || !json_object_object_get_ex(j, "ok", &v)) {
        json_object_put(j);
        snprintf(why, why_len, "not a VMM reply");
        return -EPROTO;
    }
    if (!json_object_get_boolean(v)) {
        snprintf(why, why_len, "%s",
                 json_object_object_get_ex(j, "error", &v) ? json_object_get_string(v) : "?");
        *out = j; /* a failed migrate carries its report */
        return -EREMOTEIO;
    }
    *out = j;
    return 0;
}

static int64_t dh_int(json_object *o, const char *k)
{
    json_object *v;
    return o && json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : 0;
}

static const char *dh_strf(json_object *o, const char *k)
{
    json_object *v;
    return o && json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : "";
}

/* The "status" object of a VMM, or NULL. */
static json_object *dh_status(const char *ctl)
{
    json_object *j = NULL, *s;
    char why[128];

    if (dh_ctl(ctl, "status", 2000, &j, why, sizeof(why)) != 0) {
        json_object_put(j);
        return NULL;
    }
    if (!json_object_object_get_ex(j, "status", &s)) {
        json_object_put(j);
        return NULL;
    }
    json_object_get(s);
    json_object_put(j);
    return s;
}

/* ---- the run ---- */

static char dh_host(unsigned vm)
{
    return vm % 2 ? 'B' : 'A';
}

/* Guest g's VMM k: "vm<k>" for guest 0 (the one-guest names of before),
 * "g<g>.vm<k>" for the others. */
static void dh_vm_name(unsigned g, unsigned k, char *buf, size_t len)
{
    if (g == 0)
        snprintf(buf, len, "vm%u", k);
    else
        snprintf(buf, len, "g%u.vm%u", g, k);
}

/* Guest g owns VFs 2g and 2g+1 on both hosts and its VMM k takes
 * (k/2)%2 of them on host k%2: two guests never share a VF, and a VF comes
 * back two migrations after its previous VMM left (time for its reset). */
static unsigned dh_vm_vf(unsigned g, unsigned k)
{
    return 2 * g + (k / 2) % 2;
}

static void dh_ctl_path(const struct dh *d, unsigned g, unsigned vm, char *buf, size_t len)
{
    char name[16];

    dh_vm_name(g, vm, name, sizeof(name));
    snprintf(buf, len, "%s/%s.ctl", d->dir, name);
}

static int dh_server_start(struct dh *d, char host)
{
    char name[16], file[16], sdir[PATH_MAX], sock[PATH_MAX + 16], qps[16], vfs[16];
    const char *args[] = {"serve", "--dir", sdir, "--vfs", vfs, "--qps", qps,
                          "--engine", workload_engine_name(d->o.wl.engine), NULL};
    unsigned nvfs = 2 * d->o.guests;
    int ret;

    snprintf(name, sizeof(name), "server %c", host);
    snprintf(file, sizeof(file), "serve-%c", host);
    snprintf(sdir, sizeof(sdir), "%s/%c", d->dir, host);
    snprintf(qps, sizeof(qps), "%u", d->qps_per_vf);
    snprintf(vfs, sizeof(vfs), "%u", nvfs);
    ret = dh_spawn(d, name, file, args);
    if (ret) {
        fprintf(stderr, "accmig demo: cannot start %s: %s\n", name, strerror(-ret));
        return ret;
    }
    snprintf(sock, sizeof(sock), "%s/vf%u.sock", sdir, nvfs - 1);
    ret = dh_wait_path(d, sock, name);
    if (ret == 0)
        dh_say(d, "host %c: device server up (%u VFs, %u queue pairs each, engine %s), pid %d",
               host, nvfs, d->qps_per_vf, workload_engine_name(d->o.wl.engine),
               (int)dh_kid_find(d, name)->pid);
    return ret;
}

/* Where guest g's VMM k exports its results for the ledger. */
static void dh_results_path(const struct dh *d, unsigned g, unsigned k, char *buf, size_t len)
{
    char name[32];

    dh_vm_name(g, k, name, sizeof(name));
    snprintf(buf, len, "%s/%s.results", d->dir, name);
}

/* The supervisor's own verdict on guest g: every result file its VMMs
 * wrote, each job's input regenerated from the seed, each output inflated
 * with zlib (vmm/ledger.h). Not the guest's counters. */
static int dh_ledger(struct dh *d, unsigned g)
{
    struct dh_guest *gu = &d->guests[g];
    struct workload_config cfg = d->o.wl;
    unsigned n = d->o.migrations + 1;
    char (*paths)[PATH_MAX + 32] = calloc(n, sizeof(*paths));
    const char **files = calloc(n, sizeof(*files));
    int ret = -ENOMEM;

    cfg.seed = d->o.wl.seed + g;
    if (paths && files) {
        for (unsigned k = 0; k < n; k++) {
            dh_results_path(d, g, k, paths[k], sizeof(paths[k]));
            files[k] = paths[k];
        }
        ret = vm_ledger_check(&cfg, files, n, &gu->ledger);
    }
    free(paths);
    free(files);
    if (ret)
        return ret;
    gu->ledger_done = true;
    vm_ledger_add(&d->ledger, &gu->ledger);
    return 0;
}

static bool dh_ledger_ok(const struct dh_guest *gu)
{
    return gu->ledger_done && gu->ledger.mismatches == 0 && gu->ledger.jobs_checked == gu->ledger.jobs;
}

/* Guest g's VMM k on host k%2, VF dh_vm_vf(g, k); incoming for k > 0. */
static int dh_vm_start(struct dh *d, unsigned g, unsigned k)
{
    char name[16], sock[PATH_MAX + 16], ctl[PATH_MAX + 16], ram[32], jobs[16], qps[16], vcpus[16],
        mins[16], maxs[16], seed[32], sgl[16], strm[16];
    char results[PATH_MAX + 32];
    const char *args[36] = {"vm", "--attach", sock, "--control", ctl, "--stay", "--ram", ram,
                            "--results", results};
    unsigned n = 10;
    int ret;

    dh_vm_name(g, k, name, sizeof(name));
    dh_results_path(d, g, k, results, sizeof(results));
    snprintf(sock, sizeof(sock), "%s/%c/vf%u.sock", d->dir, dh_host(k), dh_vm_vf(g, k));
    dh_ctl_path(d, g, k, ctl, sizeof(ctl));
    snprintf(ram, sizeof(ram), "%llu", (unsigned long long)d->ram_size);
    if (k > 0) {
        args[n++] = "--incoming";
        args[n++] = "tcp:127.0.0.1:0";
        args[n++] = "--prealloc";
    } else {
        snprintf(jobs, sizeof(jobs), "%u", d->o.wl.jobs);
        snprintf(qps, sizeof(qps), "%u", d->o.wl.qps);
        snprintf(vcpus, sizeof(vcpus), "%u", d->o.wl.vcpus);
        snprintf(mins, sizeof(mins), "%u", d->o.wl.min_size);
        snprintf(maxs, sizeof(maxs), "%u", d->o.wl.max_size);
        /* Its own data and job mix; the tags are its own anyway (its job
         * table lives in its RAM). */
        snprintf(seed, sizeof(seed), "%llu", (unsigned long long)(d->o.wl.seed + g));
        snprintf(sgl, sizeof(sgl), "%u", d->o.wl.sgl_percent);
        snprintf(strm, sizeof(strm), "%u", d->o.wl.stream_percent);
        const char *wl[] = {"--jobs", jobs, "--qps", qps, "--vcpus", vcpus, "--min-size", mins,
                            "--max-size", maxs, "--seed", seed, "--sgl-percent", sgl,
                            "--stream-percent", strm, "--engine",
                            workload_engine_name(d->o.wl.engine)};
        for (size_t i = 0; i < AM_ARRAY_SIZE(wl); i++)
            args[n++] = wl[i];
    }
    args[n] = NULL;
    ret = dh_spawn(d, name, name, args);
    if (ret) {
        fprintf(stderr, "accmig demo: cannot start %s: %s\n", name, strerror(-ret));
        return ret;
    }
    return dh_wait_path(d, ctl, name);
}

/* The start gate of a round: every request thread records its ready time
 * and waits here; the main thread opens it once all of them are ready, so
 * each migration of the round is under way before any of them is waited
 * for. */
struct dh_gate {
    pthread_mutex_t lock; /* protects ready, go, abort */
    pthread_cond_t cond;  /* ready went up, or go/abort was set */
    unsigned ready;
    bool go;
    bool abort;           /* a thread could not be created: nobody sends */
};

/* One migration request of a round; it runs in its own thread so the
 * requests of a round run together and the loop can show progress. */
struct dh_mig_req {
    struct dh_gate *gate;
    char ctl[PATH_MAX + 16];
    char line[VM_CONTROL_LINE_MAX];
    char *reply;
    uint64_t ready_ns, start_ns, end_ns;
    int ret;
    int done;         /* atomic: the thread has finished */
};

static void *dh_mig_thread(void *arg)
{
    struct dh_mig_req *r = arg;
    struct dh_gate *gt = r->gate;
    bool abort;

    pthread_mutex_lock(&gt->lock);
    r->ready_ns = am_now_ns();
    gt->ready++;
    pthread_cond_broadcast(&gt->cond);
    while (!gt->go && !gt->abort)
        pthread_cond_wait(&gt->cond, &gt->lock);
    abort = gt->abort;
    pthread_mutex_unlock(&gt->lock);
    if (abort) {
        r->ret = -ECANCELED;
    } else {
        r->start_ns = am_now_ns();
        /* No timeout here: the VMM bounds every step of a migration. */
        r->ret = vm_control_request(r->ctl, r->line, r->reply, DH_REPLY_MAX, -1);
    }
    r->end_ns = am_now_ns();
    __atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* "guest g: " when there are several, else "". */
static void dh_guest_label(const struct dh *d, unsigned g, char *buf, size_t len)
{
    if (d->o.guests > 1)
        snprintf(buf, len, "guest %u: ", g);
    else
        buf[0] = '\0';
}

static void dh_progress_guest(struct dh *d, unsigned g, unsigned k, json_object *st,
                              const char *extra)
{
    char label[24], name[16];

    dh_guest_label(d, g, label, sizeof(label));
    dh_vm_name(g, k, name, sizeof(name));
    dh_progress(d, "%shost %c (%s): %lld/%lld jobs verified, %lld failed%s", label, dh_host(k),
                name, (long long)dh_int(st, "jobs_verified"), (long long)dh_int(st, "jobs"),
                (long long)dh_int(st, "jobs_failed"), extra);
}

static uint64_t dh_us_since_t0(const struct dh *d, uint64_t ns)
{
    return ns > d->t0_ns ? (ns - d->t0_ns) / 1000u : 0;
}

/* Guest g's result of round k (r finished). Returns 0 when the guest moved
 * (g->cur is k), -EREMOTEIO for a failed migration (logged; the guest
 * carries on at the source), another negative errno when the run cannot go
 * on. */
static int dh_migrate_result(struct dh *d, unsigned g, unsigned k, struct dh_mig_req *r)
{
    struct dh_guest *gu = &d->guests[g];
    char name[16], src[16], label[24];
    json_object *j = NULL, *m = NULL;
    int status, ret;

    dh_guest_label(d, g, label, sizeof(label));
    dh_vm_name(g, k - 1, src, sizeof(src));
    if (r->ret == 0)
        j = json_tokener_parse(r->reply);
    if (r->ret || !j || !json_object_object_get_ex(j, "migration", &m)) {
        ret = r->ret ? r->ret : -EPROTO;
        fprintf(stderr, "accmig demo: %smigration %u: no report from %s: %s\n", label, k, src,
                r->ret ? strerror(-r->ret) : r->reply);
        json_object_put(j);
        return ret;
    }
    json_object_get(m);
    json_object_put(j);
    snprintf(name, sizeof(name), "%c->%c", dh_host(k - 1), dh_host(k));
    json_object_object_add(m, "n", json_object_new_int((int)k));
    json_object_object_add(m, "guest", json_object_new_int((int)g));
    json_object_object_add(m, "direction", json_object_new_string(name));
    json_object_object_add(m, "from", json_object_new_string(src));
    json_object_object_add(m, "from_vf", json_object_new_int((int)dh_vm_vf(g, k - 1)));
    json_object_object_add(m, "to_vf", json_object_new_int((int)dh_vm_vf(g, k)));
    json_object_object_add(m, "ready_us", json_object_new_int64((int64_t)dh_us_since_t0(d, r->ready_ns)));
    json_object_object_add(m, "start_us", json_object_new_int64((int64_t)dh_us_since_t0(d, r->start_ns)));
    json_object_object_add(m, "end_us", json_object_new_int64((int64_t)dh_us_since_t0(d, r->end_ns)));
    json_object_array_add(gu->log, json_object_get(m));
    json_object_array_add(d->log, m);
    if (!json_object_get_boolean(json_object_object_get(m, "ok"))) {
        dh_say(d, "%smigration %u FAILED in %s: %s%s", label, k, dh_strf(m, "phase"),
               dh_strf(m, "error"),
               json_object_get_boolean(json_object_object_get(m, "rolled_back"))
                   ? " (the guest carries on at the source)" : "");
        dh_vm_name(g, k, name, sizeof(name));
        if (dh_kid_find(d, name))
            dh_kid_stop(dh_kid_find(d, name));
        return -EREMOTEIO;
    }
    dh_say(d, "%smigration %u: done: %lld precopy rounds, %.1f MB of RAM (%s MB/s), %lld B of "
              "device state, downtime %.2f ms (device %.2f ms)",
           label, k, (long long)dh_int(m, "precopy_rounds"), (double)dh_int(m, "ram_bytes") / 1e6,
           dh_strf(m, "ram_mb_s"), (long long)dh_int(m, "device_state_bytes"),
           (double)dh_int(m, "downtime_us") / 1e3, (double)dh_int(m, "device_downtime_us") / 1e3);
    gu->cur = k;
    gu->migrations_done++;
    d->migrations_done++;
    /* The old VMM hands over and leaves; its VF is free again. */
    if (dh_kid_find(d, src)) {
        ret = dh_kid_wait(d, dh_kid_find(d, src), DH_STOP_TIMEOUT_MS, &status);
        if (ret || status != 0) {
            fprintf(stderr, "accmig demo: %s did not exit cleanly after the handover (%s)\n",
                    src, ret ? "still running" : "non-zero status");
            d->failed = true;
        }
    }
    return 0;
}

/* The progress line while a round runs: guest 0's source, and how many of
 * the round's migrations are done. */
static void dh_round_progress(struct dh *d, unsigned k, struct dh_mig_req *reqs)
{
    char ctl[PATH_MAX + 16], extra[160];
    unsigned done = 0;
    json_object *st;

    for (unsigned g = 0; g < d->o.guests; g++)
        done += __atomic_load_n(&reqs[g].done, __ATOMIC_ACQUIRE) != 0;
    dh_ctl_path(d, 0, k - 1, ctl, sizeof(ctl));
    if ((st = dh_status(ctl)) == NULL)
        return;
    if (d->o.guests > 1)
        snprintf(extra, sizeof(extra), " | round %u: %u of %u migrations done; guest 0: %s, "
                 "round %lld, %.1f MB sent", k, done, d->o.guests,
                 dh_strf(st, "phase")[0] ? dh_strf(st, "phase") : "starting",
                 (long long)dh_int(st, "round"), (double)dh_int(st, "ram_bytes_sent") / 1e6);
    else
        snprintf(extra, sizeof(extra), " | migration %u: %s, round %lld, %.1f MB sent", k,
                 dh_strf(st, "phase")[0] ? dh_strf(st, "phase") : "starting",
                 (long long)dh_int(st, "round"), (double)dh_int(st, "ram_bytes_sent") / 1e6);
    dh_progress_guest(d, 0, k - 1, st, extra);
    json_object_put(st);
}

/* Round k: every guest from its VMM k-1 to a new VMM k, all at the same
 * time. Returns 0 when every guest moved, -EREMOTEIO when at least one
 * migration failed (logged; those guests carry on at their source, the
 * others moved), another negative errno when the run cannot go on. */
static int dh_migrate_round(struct dh *d, unsigned k)
{
    unsigned ng = d->o.guests;
    struct dh_mig_req *reqs = calloc(ng, sizeof(*reqs));
    struct dh_gate gate = {.ready = 0};
    pthread_t *th = calloc(ng, sizeof(*th));
    unsigned created = 0;
    int ret = 0, r;

    if (!reqs || !th) {
        free(reqs);
        free(th);
        return -ENOMEM;
    }
    pthread_mutex_init(&gate.lock, NULL);
    pthread_cond_init(&gate.cond, NULL);
    /* Every incoming VMM up and listening before any request goes out. */
    for (unsigned g = 0; g < ng && ret == 0; g++) {
        char dst_ctl[PATH_MAX + 16], why[256] = "no listen address", dst[16], label[24];
        json_object *j = NULL;
        const char *listen;

        dh_ctl_path(d, g, k - 1, reqs[g].ctl, sizeof(reqs[g].ctl));
        dh_ctl_path(d, g, k, dst_ctl, sizeof(dst_ctl));
        dh_vm_name(g, k, dst, sizeof(dst));
        dh_guest_label(d, g, label, sizeof(label));
        reqs[g].gate = &gate;
        if ((ret = dh_vm_start(d, g, k)) != 0)
            break;
        ret = dh_ctl(dst_ctl, "status", 2000, &j, why, sizeof(why));
        listen = ret == 0 ? dh_strf(j, "listen") : "";
        if (ret || !listen[0]) {
            fprintf(stderr, "accmig demo: %s did not say where it listens: %s\n", dst, why);
            json_object_put(j);
            ret = ret ? ret : -EPROTO;
            break;
        }
        reqs[g].reply = malloc(DH_REPLY_MAX);
        if (!reqs[g].reply) {
            json_object_put(j);
            ret = -ENOMEM;
            break;
        }
        snprintf(reqs[g].line, sizeof(reqs[g].line), "migrate %s downtime_ms=%u", listen,
                 d->o.downtime_ms);
        {
            char src[16];
            dh_vm_name(g, k - 1, src, sizeof(src));
            dh_say(d, "%smigration %u: host %c (%s) -> host %c (%s, %s): starting", label, k,
                   dh_host(k - 1), src, dh_host(k), dst, listen);
        }
        json_object_put(j);
    }
    for (unsigned g = 0; g < ng && ret == 0; g++) {
        r = pthread_create(&th[g], NULL, dh_mig_thread, &reqs[g]);
        if (r) {
            ret = -r;
            break;
        }
        created++;
    }
    /* Open the gate once every thread is ready (or tell them all to give
     * up when one could not be created). */
    pthread_mutex_lock(&gate.lock);
    while (ret == 0 && gate.ready < created)
        pthread_cond_wait(&gate.cond, &gate.lock);
    if (ret == 0)
        gate.go = true;
    else
        gate.abort = true;
    pthread_cond_broadcast(&gate.cond);
    pthread_mutex_unlock(&gate.lock);
    for (;;) {
        unsigned done = 0;

        for (unsigned g = 0; g < created; g++)
            done += __atomic_load_n(&reqs[g].done, __ATOMIC_ACQUIRE) != 0;
        if (done == created)
            break;
        dh_round_progress(d, k, reqs);
        if (dh_sleep(d, DH_POLL_MS)) {
            /* Stop the sources so the requests end with their connections. */
            for (unsigned g = 0; g < created; g++) {
                char src[16];
                struct dh_kid *kid;

                if (__atomic_load_n(&reqs[g].done, __ATOMIC_ACQUIRE))
                    continue;
                dh_vm_name(g, k - 1, src, sizeof(src));
                if ((kid = dh_kid_find(d, src)) != NULL)
                    kill(kid->pid, SIGTERM);
            }
            ret = -EINTR;
            break;
        }
    }
    for (unsigned g = 0; g < created; g++)
        pthread_join(th[g], NULL);
    /* Each guest's outcome, in guest order; a failed migration does not
     * hide the others' results. */
    for (unsigned g = 0; g < created && ret != -EINTR; g++) {
        r = dh_migrate_result(d, g, k, &reqs[g]);
        if (r == -EREMOTEIO && (ret == 0 || ret == -EREMOTEIO))
            ret = r;
        else if (r && r != -EREMOTEIO && (ret == 0 || ret == -EREMOTEIO))
            ret = r;
    }
    for (unsigned g = 0; g < ng; g++)
        free(reqs[g].reply);
    pthread_cond_destroy(&gate.cond);
    pthread_mutex_destroy(&gate.lock);
    free(reqs);
    free(th);
    return ret;
}

/* Waits until guest g's VMM k has verified at least `target` jobs or
 * finished. */
static int dh_wait_progress(struct dh *d, unsigned g, unsigned k, uint64_t target, bool finish)
{
    char ctl[PATH_MAX + 16], name[16];
    struct dh_kid *kid;
    int status;

    dh_ctl_path(d, g, k, ctl, sizeof(ctl));
    dh_vm_name(g, k, name, sizeof(name));
    kid = dh_kid_find(d, name);
    for (;;) {
        json_object *st = dh_status(ctl);

        if (st) {
            bool done = strcmp(dh_strf(st, "state"), "finished") == 0;
            dh_progress_guest(d, g, k, st, "");
            done = done || (!finish && (uint64_t)dh_int(st, "jobs_verified") >= target);
            json_object_put(st);
            if (done)
                return 0;
        }
        if (!kid || dh_kid_exited(kid, &status)) {
            fprintf(stderr, "accmig demo: %s exited while its guest was running\n", name);
            return -ECHILD;
        }
        if (dh_sleep(d, DH_POLL_MS))
            return -EINTR;
    }
}

static void dh_print_migration(const struct dh *d, json_object *m)
{
    char label[24];

    dh_guest_label(d, (unsigned)dh_int(m, "guest"), label, sizeof(label));
    if (!json_object_get_boolean(json_object_object_get(m, "ok"))) {
        printf("  %smigration %lld %s: FAILED at %s: %s%s\n", label, (long long)dh_int(m, "n"),
               dh_strf(m, "direction"), dh_strf(m, "phase"), dh_strf(m, "error"),
               json_object_get_boolean(json_object_object_get(m, "rolled_back"))
                   ? " (the guest carried on at the source)" : "");
        return;
    }
    printf("  %smigration %lld %s: %lld precopy rounds, RAM %.1f MB at %s MB/s + %lld pages "
           "stopped, device state %lld B; downtime %.2f ms = vCPU pause %.2f, quiesce %.2f, "
           "save %.2f, last RAM %.2f, device state %.2f, END to ack %.2f (restore %.2f, resume "
           "%.2f, guest start %.2f)\n",
           label, (long long)dh_int(m, "n"), dh_strf(m, "direction"),
           (long long)dh_int(m, "precopy_rounds"), (double)dh_int(m, "ram_bytes") / 1e6,
           dh_strf(m, "ram_mb_s"), (long long)dh_int(m, "last_pages"),
           (long long)dh_int(m, "device_state_bytes"), (double)dh_int(m, "downtime_us") / 1e3,
           (double)dh_int(m, "pause_us") / 1e3, (double)dh_int(m, "quiesce_us") / 1e3,
           (double)dh_int(m, "save_us") / 1e3, (double)dh_int(m, "final_ram_us") / 1e3,
           (double)dh_int(m, "device_send_us") / 1e3, (double)dh_int(m, "end_to_ack_us") / 1e3,
           (double)dh_int(m, "restore_us") / 1e3, (double)dh_int(m, "resume_us") / 1e3,
           (double)dh_int(m, "guest_start_us") / 1e3);
}

static bool dh_report_ok(json_object *r)
{
    json_object *drv = NULL;

    json_object_object_get_ex(r, "driver", &drv);
    return r && dh_int(r, "jobs_verified") == dh_int(r, "jobs") && dh_int(r, "jobs") > 0 &&
           dh_int(r, "jobs_failed") == 0 && dh_int(r, "jobs_duplicated") == 0 &&
           dh_int(r, "jobs_lost") == 0 && dh_int(r, "stray_completions") == 0 &&
           dh_int(drv, "bad_cqes") == 0;
}

/* Adds guest g's report into the sum: counts add up (nested objects too);
 * the first failure is the first guest's that has one. */
static void dh_report_add(json_object *sum, json_object *rep, unsigned g, bool top)
{
    json_object_object_foreach(rep, key, val) {
        json_object *have = NULL;
        bool has = json_object_object_get_ex(sum, key, &have);

        if (top && (strcmp(key, "first_failed_job") == 0 || strcmp(key, "first_failure") == 0)) {
            if (!has) {
                json_object_object_add(sum, key, json_object_get(val));
                if (strcmp(key, "first_failed_job") == 0)
                    json_object_object_add(sum, "first_failed_guest",
                                           json_object_new_int((int)g));
            }
        } else if (json_object_is_type(val, json_type_int)) {
            json_object_object_add(sum, key, json_object_new_int64(dh_int(sum, key) +
                                                                   json_object_get_int64(val)));
        } else if (json_object_is_type(val, json_type_object)) {
            if (!has || !json_object_is_type(have, json_type_object)) {
                have = json_object_new_object();
                json_object_object_add(sum, key, have);
            }
            dh_report_add(have, val, g, false);
        } else if (!has) {
            json_object_object_add(sum, key, json_object_get(val));
        }
    }
}

/* The "guests" array of the JSON report: each guest's own counts and
 * migrations. */
static json_object *dh_guests_json(const struct dh *d)
{
    json_object *a = json_object_new_array();

    for (unsigned g = 0; g < d->o.guests; g++) {
        const struct dh_guest *gu = &d->guests[g];
        json_object *o = json_object_new_object();
        char name[16];

        dh_vm_name(g, gu->cur, name, sizeof(name));
        json_object_object_add(o, "guest", json_object_new_int((int)g));
        json_object_object_add(o, "seed", json_object_new_int64((int64_t)(d->o.wl.seed + g)));
        json_object_object_add(o, "vm", json_object_new_string(name));
        json_object_object_add(o, "verdict",
                               json_object_new_string(dh_report_ok(gu->rep) && dh_ledger_ok(gu)
                                                          ? "ok" : "failed"));
        json_object_object_add(o, "ledger", vm_ledger_json(&gu->ledger));
        if (gu->rep) {
            json_object_object_foreach(gu->rep, key, val)
                if (strcmp(key, "jobs") == 0 || strncmp(key, "jobs_", 5) == 0 ||
                    strcmp(key, "stray_completions") == 0)
                    json_object_object_add(o, key, json_object_get(val));
        }
        json_object_object_add(o, "migrations", json_object_new_int64(gu->migrations_done));
        json_object_object_add(o, "migration_log", json_object_get(gu->log));
        json_object_array_add(a, o);
    }
    return a;
}

static void dh_print_guest(const struct dh *d, unsigned g)
{
    const struct dh_guest *gu = &d->guests[g];
    json_object *r = gu->rep;

    if (!r) {
        printf("  guest %u (seed %llu): no report (the run stopped before it finished)\n", g,
               (unsigned long long)(d->o.wl.seed + g));
        return;
    }
    printf("  guest %u (seed %llu): %lld/%lld verified, %lld failed, %lld duplicated, %lld lost; "
           "device downtime:", g, (unsigned long long)(d->o.wl.seed + g),
           (long long)dh_int(r, "jobs_verified"), (long long)dh_int(r, "jobs"),
           (long long)dh_int(r, "jobs_failed"), (long long)dh_int(r, "jobs_duplicated"),
           (long long)dh_int(r, "jobs_lost"));
    for (size_t i = 0; i < json_object_array_length(gu->log); i++) {
        json_object *m = json_object_array_get_idx(gu->log, i);

        if (json_object_get_boolean(json_object_object_get(m, "ok")))
            printf(" %s %.2f ms", dh_strf(m, "direction"),
                   (double)dh_int(m, "device_downtime_us") / 1e3);
        else
            printf(" %s FAILED", dh_strf(m, "direction"));
    }
    printf("%s\n", json_object_array_length(gu->log) ? "" : " (no migrations)");
}

/* Stream jobs in every guest's mix (guest g's seed is seed + g), from the
 * seeds alone as the ledger regenerates inputs: the VMMs' reports do not
 * count them, and the ledger checked each one's whole stream with zlib. */
static uint64_t dh_stream_jobs(const struct dh *d)
{
    uint64_t n = 0;

    for (unsigned g = 0; g < d->o.guests; g++) {
        struct workload_config c = d->o.wl;
        c.seed += g;
        for (uint32_t j = 0; c.stream_percent && j < c.jobs; j++)
            n += workload_job_stream_pieces(&c, j) > 0;
    }
    return n;
}

static void dh_print(struct dh *d, json_object *rep, bool ok, double elapsed_ms)
{
    const struct workload_config *wl = &d->o.wl;
    unsigned planned = d->o.migrations * d->o.guests;
    json_object *t = NULL, *drv = NULL;

    if (d->o.json) {
        json_object *j = json_object_new_object(), *v;

        json_object_object_add(j, "verdict", json_object_new_string(ok ? "ok" : "failed"));
        json_object_object_add(j, "transport", json_object_new_string("vfio-user"));
        json_object_object_add(j, "hosts", json_object_new_int(d->o.migrations ? 2 : 1));
        if (rep) {
            json_object_object_foreach(rep, key, val)
                json_object_object_add(j, key, json_object_get(val));
        }
        if (!json_object_object_get_ex(j, "stream_jobs", NULL))
            json_object_object_add(j, "stream_jobs", json_object_new_int64((int64_t)dh_stream_jobs(d)));
        json_object_object_add(j, "stream_percent", json_object_new_int64(wl->stream_percent));
        json_object_object_add(j, "qps", json_object_new_int64(wl->qps));
        json_object_object_add(j, "vcpus", json_object_new_int64(wl->vcpus));
        json_object_object_add(j, "seed", json_object_new_int64((int64_t)wl->seed));
        json_object_object_add(j, "migrations", json_object_new_int64(d->migrations_done));
        json_object_object_add(j, "migrations_planned", json_object_new_int64(planned));
        json_object_object_add(j, "rounds", json_object_new_int64(d->o.migrations));
        v = json_object_new_double(elapsed_ms);
        {
            char ms[32];
            snprintf(ms, sizeof(ms), "%.1f", elapsed_ms);
            json_object_put(v);
            v = json_object_new_double_s(strtod(ms, NULL), ms);
        }
        json_object_object_add(j, "elapsed_ms", v);
        json_object_object_add(j, "ledger", vm_ledger_json(&d->ledger));
        json_object_object_add(j, "migration_log", json_object_get(d->log));
        json_object_object_add(j, "guests", dh_guests_json(d));
        printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
        json_object_put(j);
        fflush(stdout);
        return;
    }
    if (d->o.guests > 1)
        printf("accmig demo: %u guests, %u %s jobs each on %u queues (%u vCPUs), seeds "
               "%llu..%llu, transport vfio-user, %u host%s, %u of %u migrations (%u round%s)\n",
               d->o.guests, wl->jobs, workload_engine_name(wl->engine), wl->qps, wl->vcpus, (unsigned long long)wl->seed,
               (unsigned long long)(wl->seed + d->o.guests - 1), d->o.migrations ? 2 : 1,
               d->o.migrations ? "s" : "", d->migrations_done, planned, d->o.migrations,
               d->o.migrations == 1 ? "" : "s");
    else
        printf("accmig demo: %u %s jobs on %u queues (%u vCPUs), seed %llu, transport "
               "vfio-user, %u host%s, %u of %u migrations\n",
               wl->jobs, workload_engine_name(wl->engine), wl->qps, wl->vcpus, (unsigned long long)wl->seed,
               d->o.migrations ? 2 : 1, d->o.migrations ? "s" : "", d->migrations_done, planned);
    for (size_t i = 0; i < json_object_array_length(d->log); i++)
        dh_print_migration(d, json_object_array_get_idx(d->log, i));
    if (d->o.guests > 1)
        for (unsigned g = 0; g < d->o.guests; g++)
            dh_print_guest(d, g);
    if (rep) {
        double s = elapsed_ms / 1e3;
        json_object_object_get_ex(rep, "driver", &drv);
        if (wl->engine == GUEST_ENGINE_ZIP) {
            json_object_object_get_ex(rep, "jobs_by_format", &t);
            printf("  formats: %lld deflate, %lld zlib, %lld gzip; %lld on hardware SGLs\n",
                   (long long)dh_int(t, "deflate"), (long long)dh_int(t, "zlib"),
                   (long long)dh_int(t, "gzip"), (long long)dh_int(rep, "sgl_jobs"));
        } else {
            json_object_object_get_ex(rep, "jobs_by_kind", &t);
            printf("  kinds:");
            for (unsigned k = 0; workload_kind_name(wl, k); k++)
                printf("%s %lld %s", k ? "," : "", (long long)dh_int(t, workload_kind_name(wl, k)),
                       workload_kind_name(wl, k));
            printf(" (both operations of each checked against libcrypto)\n");
        }
        if (wl->stream_percent)
            printf("  streams: %llu stream jobs in the mix (%u%%)\n",
                   (unsigned long long)dh_stream_jobs(d), wl->stream_percent);
        printf("  jobs: %lld submitted, %lld completed, %lld verified, %lld failed\n",
               (long long)dh_int(rep, "jobs_submitted"), (long long)dh_int(rep, "jobs_completed"),
               (long long)dh_int(rep, "jobs_verified"), (long long)dh_int(rep, "jobs_failed"));
        printf("  exactly once: %lld duplicated, %lld lost, %lld stray completions\n",
               (long long)dh_int(rep, "jobs_duplicated"), (long long)dh_int(rep, "jobs_lost"),
               (long long)dh_int(rep, "stray_completions"));
        printf("  bytes: %lld in, %lld out; %.2f s, %.1f MB/s of input\n",
               (long long)dh_int(rep, "bytes_in"), (long long)dh_int(rep, "bytes_out"), s,
               s > 0 ? (double)dh_int(rep, "bytes_in") / s / 1e6 : 0.0);
        printf("  driver: %lld MSIs, %lld CQEs, %lld bad CQEs\n", (long long)dh_int(drv, "irqs"),
               (long long)dh_int(drv, "cqes"), (long long)dh_int(drv, "bad_cqes"));
        printf("  ledger (the supervisor's own check, %s): %llu of %llu jobs checked, %llu "
               "mismatches (%llu missing, %llu done twice, %llu bad output)\n",
               wl->engine == GUEST_ENGINE_ZIP ? "zlib" : "libcrypto",
               (unsigned long long)d->ledger.jobs_checked, (unsigned long long)d->ledger.jobs,
               (unsigned long long)d->ledger.mismatches, (unsigned long long)d->ledger.missing,
               (unsigned long long)d->ledger.duplicated, (unsigned long long)d->ledger.bad_output);
        if (d->ledger.first_problem[0])
            printf("  ledger: %s\n", d->ledger.first_problem);
        if (!ok && dh_strf(rep, "first_failure")[0])
            printf("  first failure: guest %lld, job %lld: %s\n",
                   (long long)dh_int(rep, "first_failed_guest"),
                   (long long)dh_int(rep, "first_failed_job"), dh_strf(rep, "first_failure"));
    }
    printf("verdict: %s\n", ok ? "OK, every job verified exactly once" : "FAILED");
    fflush(stdout);
}

/* Guest g is done on its last VMM: its report, then quit. */
static int dh_guest_finish(struct dh *d, unsigned g)
{
    struct dh_guest *gu = &d->guests[g];
    char ctl[PATH_MAX + 16], why[256], name[16], label[24];
    json_object *j = NULL, *r;
    int ret, status;

    ret = dh_wait_progress(d, g, gu->cur, 0, true);
    if (ret)
        return ret;
    dh_guest_label(d, g, label, sizeof(label));
    dh_vm_name(g, gu->cur, name, sizeof(name));
    dh_ctl_path(d, g, gu->cur, ctl, sizeof(ctl));
    ret = dh_ctl(ctl, "report", 5000, &j, why, sizeof(why));
    if (ret || !json_object_object_get_ex(j, "report", &r)) {
        fprintf(stderr, "accmig demo: %s gave no report: %s\n", name, ret ? why : "none");
        json_object_put(j);
        return ret ? ret : -EPROTO;
    }
    gu->rep = json_object_get(r);
    json_object_put(j);
    dh_progress_end(d);
    dh_say(d, "%shost %c (%s): the guest finished", label, dh_host(gu->cur), name);
    j = NULL;
    if (dh_ctl(ctl, "quit", 5000, &j, why, sizeof(why)) != 0)
        d->failed = true;
    json_object_put(j);
    if (dh_kid_find(d, name) &&
        (dh_kid_wait(d, dh_kid_find(d, name), DH_STOP_TIMEOUT_MS, &status) != 0 || status != 0)) {
        fprintf(stderr, "accmig demo: %s did not shut its guest down cleanly\n", name);
        d->failed = true;
    }
    return 0;
}

/* The whole run after the directory exists; *rep gets the final report
 * (summed over the guests). */
static int dh_run(struct dh *d, json_object **rep, double *elapsed_ms)
{
    unsigned hosts = d->o.migrations ? 2 : 1;
    char name[16];
    uint64_t t_guest = 0;
    int ret;

    for (unsigned h = 0; h < hosts; h++)
        if ((ret = dh_server_start(d, (char)('A' + h))) != 0)
            return ret;
    for (unsigned g = 0; g < d->o.guests; g++) {
        char label[24];

        ret = dh_vm_start(d, g, 0);
        if (ret)
            return ret;
        if (g == 0) {
            t_guest = am_now_ns();
            d->guest_started = true;
        }
        dh_guest_label(d, g, label, sizeof(label));
        dh_vm_name(g, 0, name, sizeof(name));
        dh_say(d, "%shost A: %s runs the guest: %u jobs, %u vCPUs, %llu bytes of RAM", label,
               name, d->o.wl.jobs, d->o.wl.vcpus, (unsigned long long)d->ram_size);
    }
    for (unsigned k = 1; k <= d->o.migrations; k++) {
        uint64_t target = (uint64_t)d->o.wl.jobs * k / (d->o.migrations + 1);

        for (unsigned g = 0; g < d->o.guests; g++)
            if ((ret = dh_wait_progress(d, g, k - 1, target, false)) != 0)
                return ret;
        ret = dh_migrate_round(d, k);
        if (ret == -EREMOTEIO) {
            d->failed = true;
            break; /* the guests whose migration failed stayed where they were */
        }
        if (ret)
            return ret;
    }
    for (unsigned g = 0; g < d->o.guests; g++)
        if ((ret = dh_guest_finish(d, g)) != 0)
            return ret;
    for (unsigned g = 0; g < d->o.guests; g++)
        if ((ret = dh_ledger(d, g)) != 0)
            return ret;
    *elapsed_ms = (double)(am_now_ns() - t_guest) / 1e6;
    *rep = json_object_new_object();
    for (unsigned g = 0; g < d->o.guests; g++)
        dh_report_add(*rep, d->guests[g].rep, g, true);
    for (unsigned h = 0; h < hosts; h++) {
        struct dh_kid *srv;
        snprintf(name, sizeof(name), "server %c", 'A' + h);
        srv = dh_kid_find(d, name);
        if (!srv || dh_kid_stop(srv) != 0) {
            fprintf(stderr, "accmig demo: %s did not stop cleanly\n", name);
            d->failed = true;
        }
    }
    return 0;
}

/* Every guest's exactly-once verdict, and the sum's. */
static bool dh_all_ok(const struct dh *d, json_object *rep)
{
    for (unsigned g = 0; g < d->o.guests; g++)
        if (!dh_report_ok(d->guests[g].rep) || !dh_ledger_ok(&d->guests[g]) ||
            d->guests[g].migrations_done != d->o.migrations)
            return false;
    return dh_report_ok(rep);
}

int demo_hosts_main(int argc, char **argv)
{
    struct dh *d = calloc(1, sizeof(*d));
    json_object *rep = NULL;
    double elapsed_ms = 0;
    const char *tmp = getenv("TMPDIR");
    sigset_t sigs;
    ssize_t n;
    bool ok;
    int ret;

    if (!d)
        return 2;
    ret = dh_parse(argc, argv, &d->o);
    if (ret) {
        free(d);
        return ret > 0 ? 0 : 2;
    }
    d->prog = d->o.json ? stderr : stdout;
    d->tty = isatty(fileno(d->prog));
    d->t0_ns = am_now_ns();
    d->ram_size = AM_ALIGN_UP(workload_ram_size(&d->o.wl), VM_RAM_PAGE_SIZE);
    d->qps_per_vf = AM_MAX(QM_DEFAULT_QPS_PER_VF, d->o.wl.qps);
    n = readlink("/proc/self/exe", d->exe, sizeof(d->exe) - 1);
    if (n <= 0 || (size_t)n >= sizeof(d->exe) - 1) {
        fprintf(stderr, "accmig demo: cannot find my own executable\n");
        free(d);
        return 2;
    }
    d->exe[n] = '\0';
    /* SIGINT/SIGTERM arrive on a signalfd the waits poll, so every path
     * goes through the cleanup; children get the default mask back. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    d->sig_fd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    if (!tmp || !tmp[0] || strlen(tmp) + sizeof("/accmig-demo-XXXXXX") > sizeof(d->dir))
        tmp = "/tmp"; /* a long TMPDIR would not leave room for the socket names */
    snprintf(d->dir, sizeof(d->dir), "%s/accmig-demo-XXXXXX", tmp);
    if (d->sig_fd < 0 || !mkdtemp(d->dir)) {
        fprintf(stderr, "accmig demo: cannot create a private directory in %s: %s\n", tmp,
                strerror(errno));
        if (d->sig_fd >= 0)
            close(d->sig_fd);
        free(d);
        return 2;
    }
    d->dir_made = true;
    d->log = json_object_new_array();
    d->guests = calloc(d->o.guests, sizeof(*d->guests));
    ret = d->guests ? 0 : -ENOMEM;
    for (unsigned g = 0; g < d->o.guests && ret == 0; g++)
        d->guests[g].log = json_object_new_array();
    if (ret == 0)
        ret = dh_run(d, &rep, &elapsed_ms);
    dh_progress_end(d);
    ok = ret == 0 && !d->failed && dh_all_ok(d, rep);
    dh_cleanup(d, !ok);
    if (d->guest_started)
        dh_print(d, rep, ok, elapsed_ms);
    json_object_put(rep);
    json_object_put(d->log);
    for (unsigned g = 0; d->guests && g < d->o.guests; g++) {
        json_object_put(d->guests[g].log);
        json_object_put(d->guests[g].rep);
    }
    free(d->guests);
    close(d->sig_fd);
    sigprocmask(SIG_UNBLOCK, &sigs, NULL);
    ret = ok ? 0 : d->guest_started || d->interrupted ? 1 : 2;
    free(d);
    return ret;
}
