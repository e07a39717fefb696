/* Helpers for the tests that run `accmig serve` and `accmig vm` as
 * processes: a private directory, children that die with the test
 * (PR_SET_PDEATHSIG) and are always reaped, control-socket requests, and
 * the checks every test ends with. The accmig binary's path is argv[1]. */
#ifndef ACCMIG_TESTS_VM_PROC_UTIL_H
#define ACCMIG_TESTS_VM_PROC_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common/common.h"
#include "vmm/vm.h"

#define PT_MAX_KIDS 12
#define PT_START_MS 30000 /* ASan builds start slowly on a busy machine */
#define PT_EXIT_MS 30000

struct pt_kid {
    pid_t pid;
    char name[24];
    char log[160];
};

struct pt {
    const char *exe;
    char dir[64];
    struct pt_kid kids[PT_MAX_KIDS];
};

static inline void pt_init(struct pt *t, const char *exe)
{
    memset(t, 0, sizeof(*t));
    t->exe = exe;
    snprintf(t->dir, sizeof(t->dir), "/tmp/accmig-vmt-XXXXXX");
    if (!mkdtemp(t->dir))
        fail_msg("mkdtemp: %s", strerror(errno));
}

static inline struct pt_kid *pt_find(struct pt *t, const char *name)
{
    for (unsigned i = 0; i < PT_MAX_KIDS; i++)
        if (t->kids[i].pid > 0 && strcmp(t->kids[i].name, name) == 0)
            return &t->kids[i];
    fail_msg("no running child named %s", name);
    return NULL;
}

/* Starts argv (NULL-terminated; argv[0] is run as is, e.g. t->exe or
 * "ip"), output into DIR/<name>.log. */
static inline pid_t pt_spawn_argv(struct pt *t, const char *name, const char *const *argv)
{
    struct pt_kid *k = NULL;
    pid_t parent = getpid(), pid;
    int fd;

    for (unsigned i = 0; i < PT_MAX_KIDS && !k; i++)
        if (t->kids[i].pid == 0)
            k = &t->kids[i];
    assert_non_null(k);
    /* A name that does not fit is a bug in the test. */
    assert_true((size_t)snprintf(k->name, sizeof(k->name), "%s", name) < sizeof(k->name));
    snprintf(k->log, sizeof(k->log), "%s/%s.log", t->dir, name);
    fd = open(k->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(fd, 1);
        dup2(fd, 2);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fd);
    k->pid = pid;
    return pid;
}

/* `accmig ARGS...` (args NULL-terminated), optionally under a prefix
 * (e.g. "ip", "netns", "exec", NS, NULL). */
static inline pid_t pt_spawn(struct pt *t, const char *name, const char *const *prefix,
                             const char *const *args)
{
    const char *argv[48];
    unsigned n = 0;

    for (; prefix && prefix[n]; n++)
        argv[n] = prefix[n];
    argv[n++] = t->exe;
    for (unsigned i = 0; args[i] && n < 47; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return pt_spawn_argv(t, name, argv);
}

static inline void pt_dump_log(const struct pt_kid *k)
{
    char buf[4096];
    FILE *f = fopen(k->log, "r");
    size_t n;

    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > 4000 ? size - 4000 : 0, SEEK_SET);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    print_message("---- %s log (tail):\n%s\n", k->name, buf);
}

static inline void pt_ctl_path(struct pt *t, const char *vm, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s.ctl", t->dir, vm);
}

/* Every child's log tail, the reaped ones' too (their logs stay until
 * pt_cleanup): what a failed check on one process needs from the others. */
static inline void pt_dump_logs(const struct pt *t)
{
    for (unsigned i = 0; i < PT_MAX_KIDS; i++)
        if (t->kids[i].name[0])
            pt_dump_log(&t->kids[i]);
}

/* Prints a file's first lines (a /proc entry), prefixed. */
static inline void pt_print_file(const char *prefix, const char *path)
{
    char buf[512];
    FILE *f = fopen(path, "r");
    size_t n;

    if (!f)
        return;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    print_message("%s%s\n", prefix, buf);
}

/* What a child that should have exited is doing: each thread's name,
 * kernel wait channel and system call (number and arguments), and its
 * backtraces when gdb is installed; for a VMM, its status if it answers. */
static inline void pt_dump_stuck(struct pt *t, const char *name)
{
    const struct pt_kid *k = pt_find(t, name);
    char path[200], ctl[160], cmd[256], reply[4096];
    struct dirent *e;
    DIR *d;

    print_message("---- %s (pid %d) still runs; its threads:\n", name, (int)k->pid);
    snprintf(path, sizeof(path), "/proc/%d/task", (int)k->pid);
    d = opendir(path);
    while (d && (e = readdir(d)) != NULL) {
        char base[240], pre[64];

        if (e->d_name[0] == '.')
            continue;
        snprintf(base, sizeof(base), "%s/%.16s", path, e->d_name);
        snprintf(pre, sizeof(pre), "  tid %.16s comm: ", e->d_name);
        snprintf(cmd, sizeof(cmd), "%s/comm", base);
        pt_print_file(pre, cmd);
        snprintf(pre, sizeof(pre), "  tid %.16s wchan: ", e->d_name);
        snprintf(cmd, sizeof(cmd), "%s/wchan", base);
        pt_print_file(pre, cmd);
        snprintf(pre, sizeof(pre), "  tid %.16s syscall: ", e->d_name);
        snprintf(cmd, sizeof(cmd), "%s/syscall", base);
        pt_print_file(pre, cmd);
    }
    if (d)
        closedir(d);
    pt_ctl_path(t, name, ctl, sizeof(ctl));
    if (access(ctl, F_OK) == 0) {
        int ret = vm_control_request(ctl, "status", reply, sizeof(reply), 2000);

        print_message("---- %s status: %s\n", name, ret ? strerror(-ret) : reply);
    }
    if (access("/usr/bin/gdb", X_OK) == 0) {
        fflush(NULL);
        snprintf(cmd, sizeof(cmd), "timeout 60 gdb -nx -batch -p %d -ex 'thread apply all bt' "
                 "</dev/null 2>&1 | grep -v '^\\[New LWP' | head -300", (int)k->pid);
        print_message("---- %s backtraces:\n", name);
        if (system(cmd) != 0)
            print_message("(gdb failed)\n");
    }
}

/* Waits for the child's exit: its status (128+signal when killed), or -1
 * after timeout_ms. */
static inline int pt_wait(struct pt *t, const char *name, int timeout_ms)
{
    struct pt_kid *k = pt_find(t, name);
    uint64_t deadline = am_now_ns() + (uint64_t)timeout_ms * 1000000u;
    int st;

    for (;;) {
        pid_t r = waitpid(k->pid, &st, WNOHANG);
        if (r == k->pid)
            break;
        if (am_now_ns() > deadline)
            return -1;
        usleep(5000);
    }
    k->pid = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The child exits with status want within timeout_ms; when it does not,
 * what it is doing (pt_dump_stuck) and every child's log are shown, and
 * the message says after what (`after`, e.g. "its source was killed"). */
static inline void pt_expect_exit_within(struct pt *t, const char *name, int want,
                                         int timeout_ms, const char *after)
{
    int got = pt_wait(t, name, timeout_ms);

    if (got == want)
        return;
    if (got < 0)
        pt_dump_stuck(t, name);
    pt_dump_logs(t);
    if (got < 0)
        fail_msg("%s still runs %d ms after %s (expected exit status %d)", name, timeout_ms,
                 after, want);
    fail_msg("%s exited with %d after %s, expected %d", name, got, after, want);
}

/* The child exits with status want (its log is shown when not). */
static inline void pt_expect_exit(struct pt *t, const char *name, int want)
{
    pt_expect_exit_within(t, name, want, PT_EXIT_MS * 2, "its end was due");
}

static inline bool pt_running(struct pt *t, const char *name)
{
    for (unsigned i = 0; i < PT_MAX_KIDS; i++)
        if (t->kids[i].pid > 0 && strcmp(t->kids[i].name, name) == 0)
            return waitpid(t->kids[i].pid, NULL, WNOHANG) == 0;
    return false;
}

static inline void pt_kill(struct pt *t, const char *name, int sig)
{
    assert_int_equal(kill(pt_find(t, name)->pid, sig), 0);
}

/* Whether every thread of pid is stopped (state T or t in its stat);
 * false when a thread runs or the process is gone. */
static inline bool pt_threads_stopped(pid_t pid)
{
    char path[64], line[512];
    struct dirent *e;
    bool all = true;
    unsigned n = 0;
    DIR *d;

    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    d = opendir(path);
    if (!d)
        return false;
    while (all && (e = readdir(d)) != NULL) {
        char stat[128];
        const char *rp;
        FILE *f;

        if (e->d_name[0] == '.')
            continue;
        snprintf(stat, sizeof(stat), "%s/%.16s/stat", path, e->d_name);
        f = fopen(stat, "r");
        if (!f)
            continue; /* the thread ended */
        line[0] = '\0';
        if (!fgets(line, sizeof(line), f))
            line[0] = '\0';
        fclose(f);
        rp = strrchr(line, ')'); /* the name in parentheses may hold anything */
        all = rp && rp[1] == ' ' && (rp[2] == 'T' || rp[2] == 't');
        n++;
    }
    closedir(d);
    return all && n > 0;
}

/* Freezes child `name` (SIGSTOP) and returns only once every one of its
 * threads has stopped; the time that took, in ms. kill() returns with the
 * stop only pending: one thread is woken to take it, and the others are
 * told to stop only when that one runs, so on a loaded machine they go on
 * for a while. A test that carried on at once could see its "frozen"
 * server answer the next requests, or its "frozen" destination VMM take a
 * whole migration (vm_frozen_server failed so in CI). */
static inline double pt_freeze(struct pt *t, const char *name)
{
    pid_t pid = pt_find(t, name)->pid;
    uint64_t t0 = am_now_ns(), deadline = t0 + (uint64_t)PT_START_MS * 1000000u;

    assert_int_equal(kill(pid, SIGSTOP), 0);
    while (!pt_threads_stopped(pid)) {
        if (!pt_running(t, name)) {
            pt_dump_log(pt_find(t, name));
            fail_msg("%s ended instead of stopping", name);
        }
        if (am_now_ns() > deadline)
            fail_msg("%s did not stop within %d ms of SIGSTOP", name, PT_START_MS);
        usleep(1000);
    }
    return (double)(am_now_ns() - t0) / 1e6;
}

/* Waits for a file (a socket) to appear while its creator runs. */
static inline void pt_wait_path(struct pt *t, const char *path, const char *creator)
{
    uint64_t deadline = am_now_ns() + (uint64_t)PT_START_MS * 1000000u;

    while (access(path, F_OK) != 0) {
        if (!pt_running(t, creator)) {
            pt_dump_log(pt_find(t, creator));
            fail_msg("%s exited before %s appeared", creator, path);
        }
        if (am_now_ns() > deadline)
            fail_msg("%s did not create %s", creator, path);
        usleep(5000);
    }
}

static inline int pt_rm(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s;
    (void)f;
    (void)w;
    remove(p);
    return 0;
}

/* Every child stopped and reaped (SIGTERM, then SIGKILL), the directory
 * removed; with ACCMIG_TEST_LOGS set, every child's log shown first (to
 * read what a passing run did). */
static inline void pt_cleanup(struct pt *t)
{
    const char *show = getenv("ACCMIG_TEST_LOGS");

    if (show && show[0])
        pt_dump_logs(t);
    for (unsigned i = 0; i < PT_MAX_KIDS; i++) {
        struct pt_kid *k = &t->kids[i];
        uint64_t deadline = am_now_ns() + 5000000000ull;

        if (k->pid <= 0)
            continue;
        kill(k->pid, SIGCONT);
        kill(k->pid, SIGTERM);
        while (waitpid(k->pid, NULL, WNOHANG) == 0) {
            if (am_now_ns() > deadline) {
                kill(k->pid, SIGKILL);
                waitpid(k->pid, NULL, 0);
                break;
            }
            usleep(5000);
        }
        k->pid = 0;
    }
    nftw(t->dir, pt_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- one-shot commands ---- */

/* A cmocka fixture: a struct pt for exe in *state (pt_fixture_free undoes it). */
static inline int pt_fixture_new(void **state, const char *exe)
{
    struct pt *t = calloc(1, sizeof(*t));

    if (!t)
        return -1;
    pt_init(t, exe);
    *state = t;
    return 0;
}

static inline int pt_fixture_free(void **state)
{
    pt_cleanup(*state);
    free(*state);
    return 0;
}

/* Runs `accmig ARGS...` to its end with TMPDIR in the test's directory: its
 * exit status (as pt_wait). */
static inline int pt_run_once(struct pt *t, const char *name, const char *const *args,
                              int timeout_ms)
{
    int st;

    setenv("TMPDIR", t->dir, 1);
    pt_spawn(t, name, NULL, args);
    unsetenv("TMPDIR");
    st = pt_wait(t, name, timeout_ms);
    if (st < 0)
        fail_msg("%s did not exit within %d ms", name, timeout_ms);
    return st;
}

/* The whole log (stdout and stderr, at most 1 MiB) of child `name`; the
 * caller frees it. */
static inline char *pt_log_read(struct pt *t, const char *name)
{
    char path[200];
    char *buf = calloc(1, 1 << 20);
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "%s/%s.log", t->dir, name);
    f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(buf);
    n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Refused command lines: for each entry, `accmig ARGS... OPT VAL --json`
 * exits 2 with msg in its log and prints no JSON (nothing was measured).
 * args ends with NULL and has at most 8 entries. */
struct pt_refusal {
    const char *opt, *val, *msg;
};

static inline void pt_expect_refusals(struct pt *t, const char *const *args,
                                      const struct pt_refusal *bad, size_t nbad)
{
    const char *argv[12];
    size_t n = 0;

    while (args[n] != NULL && n < 8) {
        argv[n] = args[n];
        n++;
    }
    argv[n + 2] = "--json";
    argv[n + 3] = NULL;
    for (size_t i = 0; i < nbad; i++) {
        char name[16], *log;

        argv[n] = bad[i].opt;
        argv[n + 1] = bad[i].val;
        snprintf(name, sizeof(name), "bad%zu", i);
        assert_int_equal(pt_run_once(t, name, argv, PT_EXIT_MS * 4), 2);
        log = pt_log_read(t, name);
        if (!strstr(log, bad[i].msg))
            fail_msg("%s %s: no '%s' in:\n%s", bad[i].opt, bad[i].val, bad[i].msg, log);
        assert_null(strchr(log, '{'));
        free(log);
    }
}

/* ---- servers and VMMs ---- */

/* `accmig serve --dir DIR/<name> --vfs 2 --qps Q`, waits for its sockets. */
static inline void pt_server(struct pt *t, const char *name, unsigned qps,
                             const char *const *prefix)
{
    char dir[128], q[16], sock[160];
    const char *args[] = {"serve", "--dir", dir, "--vfs", "2", "--qps", q, NULL};

    snprintf(dir, sizeof(dir), "%s/%s", t->dir, name);
    snprintf(q, sizeof(q), "%u", qps);
    pt_spawn(t, name, prefix, args);
    snprintf(sock, sizeof(sock), "%s/vf1.sock", dir);
    pt_wait_path(t, sock, name);
}

static inline void pt_sock(struct pt *t, const char *server, unsigned vf, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s/vf%u.sock", t->dir, server, vf);
}


#define PT_RAM "8M" /* both ends agree; enough for the workloads below */

/* A VMM with a guest of `jobs` small jobs (or incoming on `incoming`), with
 * more `accmig vm` options in extra (NULL-terminated, at most 8; or NULL). */
static inline void pt_vm_extra(struct pt *t, const char *name, const char *server, unsigned vf,
                               unsigned jobs, const char *incoming, const char *const *prefix,
                               const char *const *extra)
{
    char sock[160], ctl[160], j[16];
    const char *args[40] = {"vm", "--attach", sock, "--control", ctl, "--stay", "--ram", PT_RAM,
                            "--timeout-ms", "15000", "--json"};
    unsigned n = 11;

    for (unsigned i = 0; extra && extra[i] && i < 8; i++)
        args[n++] = extra[i];

    pt_sock(t, server, vf, sock, sizeof(sock));
    pt_ctl_path(t, name, ctl, sizeof(ctl));
    if (incoming) {
        args[n++] = "--incoming";
        args[n++] = incoming;
    } else {
        snprintf(j, sizeof(j), "%u", jobs);
        const char *wl[] = {"--jobs", j, "--qps", "2", "--vcpus", "2", "--min-size", "1K",
                            "--max-size", "48K"};
        for (size_t i = 0; i < AM_ARRAY_SIZE(wl); i++)
            args[n++] = wl[i];
    }
    args[n] = NULL;
    pt_spawn(t, name, prefix, args);
    pt_wait_path(t, ctl, name);
}

static inline void pt_vm(struct pt *t, const char *name, const char *server, unsigned vf,
                         unsigned jobs, const char *incoming, const char *const *prefix)
{
    pt_vm_extra(t, name, server, vf, jobs, incoming, prefix, NULL);
}

/* A control request that must succeed; returns the reply (put it). */
static inline json_object *pt_ctl(struct pt *t, const char *vm, const char *cmd)
{
    char ctl[160], *reply = malloc(VM_CONTROL_REPLY_MAX);
    json_object *j, *v;
    int ret;

    pt_ctl_path(t, vm, ctl, sizeof(ctl));
    assert_non_null(reply);
    ret = vm_control_request(ctl, cmd, reply, VM_CONTROL_REPLY_MAX, 30000);
    if (ret) {
        free(reply); /* fail_msg does not return */
        for (unsigned i = 0; i < PT_MAX_KIDS; i++)
            if (strcmp(t->kids[i].name, vm) == 0)
                pt_dump_log(&t->kids[i]);
        fail_msg("%s: '%s': %s", vm, cmd, strerror(-ret));
    }
    j = json_tokener_parse(reply);
    if (!j || !json_object_object_get_ex(j, "ok", &v) || !json_object_get_boolean(v)) {
        print_message("%s: '%s' answered %s\n", vm, cmd, reply);
        free(reply);
        json_object_put(j);
        fail_msg("%s: '%s' failed", vm, cmd);
    }
    free(reply);
    return j;
}

static inline int64_t pt_int(json_object *o, const char *k)
{
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v))
        fail_msg("no '%s' in %s", k, json_object_to_json_string(o));
    return json_object_get_int64(v);
}

static inline double pt_num(json_object *o, const char *k)
{
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v))
        fail_msg("no '%s' in %s", k, json_object_to_json_string(o));
    return json_object_get_double(v);
}

/* 0 <= o[a] <= o[b] <= o[c]: a p50/p99/max triple, or min/median/max. */
static inline void pt_assert_ordered(json_object *o, const char *a, const char *b, const char *c)
{
    double x = pt_num(o, a), y = pt_num(o, b), z = pt_num(o, c);

    if (!(x >= 0 && x <= y && y <= z))
        fail_msg("%s %.1f, %s %.1f, %s %.1f out of order in %s", a, x, b, y, c, z,
                 json_object_to_json_string(o));
}

static inline const char *pt_str(json_object *o, const char *k)
{
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v))
        fail_msg("no '%s' in %s", k, json_object_to_json_string(o));
    return json_object_get_string(v);
}

/* The "status" object's string field (copied). */
static inline void pt_status_str(struct pt *t, const char *vm, const char *key, char *buf,
                                 size_t len)
{
    json_object *j = pt_ctl(t, vm, "status"), *st;

    assert_true(json_object_object_get_ex(j, "status", &st));
    snprintf(buf, len, "%s", pt_str(st, key));
    json_object_put(j);
}

/* Where an incoming VMM listens. */
static inline void pt_listen(struct pt *t, const char *vm, char *buf, size_t len)
{
    json_object *j = pt_ctl(t, vm, "status");

    snprintf(buf, len, "%s", pt_str(j, "listen"));
    json_object_put(j);
}

/* Waits until the VMM's status field key equals want. */
static inline void pt_wait_status(struct pt *t, const char *vm, const char *key, const char *want)
{
    uint64_t deadline = am_now_ns() + (uint64_t)PT_START_MS * 2 * 1000000u;
    char got[64];

    for (;;) {
        pt_status_str(t, vm, key, got, sizeof(got));
        if (strcmp(got, want) == 0)
            return;
        if (am_now_ns() > deadline)
            fail_msg("%s: status %s stayed '%s', waited for '%s'", vm, key, got, want);
        usleep(10000);
    }
}

/* The guest on vm finishes with every job verified exactly once. */
static inline void pt_assert_guest_ok(struct pt *t, const char *vm, unsigned jobs)
{
    json_object *j, *r;

    pt_wait_status(t, vm, "state", "finished");
    j = pt_ctl(t, vm, "report");
    assert_true(json_object_object_get_ex(j, "report", &r));
    if (strcmp(pt_str(j, "verdict"), "ok") != 0)
        fail_msg("%s: %s", vm, json_object_to_json_string(r));
    assert_int_equal(pt_int(r, "jobs"), jobs);
    assert_int_equal(pt_int(r, "jobs_verified"), jobs);
    assert_int_equal(pt_int(r, "jobs_duplicated"), 0);
    assert_int_equal(pt_int(r, "jobs_lost"), 0);
    assert_int_equal(pt_int(r, "jobs_failed"), 0);
    json_object_put(j);
    json_object_put(pt_ctl(t, vm, "quit"));
    pt_expect_exit(t, vm, 0);
}

/* `accmig migrate --vm CTL --to EP --json [extra]` as a child named
 * "migrate-<vm>"; pt_migrate_finish waits for it. */
static inline void pt_migrate_start(struct pt *t, const char *vm, const char *to,
                                    const char *extra)
{
    char ctl[160], name[32];
    const char *args[] = {"migrate", "--vm", ctl, "--to", to, "--json", extra, NULL};

    pt_ctl_path(t, vm, ctl, sizeof(ctl));
    snprintf(name, sizeof(name), "migrate-%s", vm);
    pt_spawn(t, name, NULL, args);
}

/* Its exit status; *rep the report it printed (NULL when none; put it). */
static inline int pt_migrate_finish(struct pt *t, const char *vm, json_object **rep)
{
    char name[32], out[8192];
    int status;
    FILE *f;
    size_t n;

    snprintf(name, sizeof(name), "migrate-%s", vm);
    status = pt_wait(t, name, PT_EXIT_MS * 2);
    if (status < 0)
        fail_msg("accmig migrate did not finish");
    snprintf(out, sizeof(out), "%s/%s.log", t->dir, name);
    f = fopen(out, "r");
    assert_non_null(f);
    n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    fclose(f);
    *rep = strchr(out, '{') ? json_tokener_parse(strchr(out, '{')) : NULL;
    return status;
}

static inline int pt_migrate_cli(struct pt *t, const char *vm, const char *to, const char *extra,
                                 json_object **rep)
{
    pt_migrate_start(t, vm, to, extra);
    return pt_migrate_finish(t, vm, rep);
}

/* A VMM attached to server's VF 0 runs 16 jobs to the end, all verified:
 * the VF was left reset and ready for a new guest. */
static inline void pt_assert_vf_serves_a_new_guest(struct pt *t, const char *server,
                                                   const char *name)
{
    char sock[160], ctl[160];
    const char *args[] = {"vm", "--attach", sock, "--control", ctl, "--stay", "--jobs", "16",
                          "--qps", "2", "--vcpus", "2", "--max-size", "16K", NULL};
    json_object *j, *r;

    pt_sock(t, server, 0, sock, sizeof(sock));
    pt_ctl_path(t, name, ctl, sizeof(ctl));
    pt_spawn(t, name, NULL, args);
    pt_wait_path(t, ctl, name);
    pt_wait_status(t, name, "state", "finished");
    j = pt_ctl(t, name, "report");
    assert_true(json_object_object_get_ex(j, "report", &r));
    assert_string_equal(pt_str(j, "verdict"), "ok");
    assert_int_equal(pt_int(r, "jobs_verified"), 16);
    json_object_put(j);
    json_object_put(pt_ctl(t, name, "quit"));
    pt_expect_exit(t, name, 0);
}

#endif
