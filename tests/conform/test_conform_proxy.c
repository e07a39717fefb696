/* tests/conform: the tool proves itself. accmig conform runs against the
 * real server (accmig serve, started by conform itself through
 * --server-cmd: no check may fail, and there must be hundreds of them), and
 * against faulty_proxy in front of a real server once per injected
 * violation: each one must make at least one check fail (exit status 1),
 * and the proxy's control modes (relay only; close on a truncated payload,
 * which the spec allows) must make none fail. The catch rate is printed.
 *
 * argv[1]: the accmig binary, argv[2]: faulty_proxy. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

static const char *accmig, *proxy;
static char dir[64];
static pid_t upstream_pid;
static unsigned violations, caught;

struct fault_case {
    char name[64];
    bool control;
};

static bool can_connect(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;

    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void wait_listening(const char *path)
{
    for (int i = 0; i < 500; i++) {
        if (can_connect(path))
            return;
        nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
    }
    fail_msg("nothing listens on %s", path);
}

static pid_t spawn(char *const argv[], const char *log)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        if (log) {
            FILE *f = freopen(log, "a", stderr);
            (void)f;
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static void stop(pid_t pid)
{
    int st;
    kill(pid, SIGTERM);
    waitpid(pid, &st, 0);
}

/* Runs argv, returns its stdout (malloc'd) and exit status. */
static char *run_capture(char *const argv[], int *status)
{
    int p[2];
    size_t len = 0, cap = 1 << 16;
    char *out = malloc(cap);
    pid_t pid;

    assert_non_null(out);
    assert_int_equal(pipe(p), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    for (;;) {
        ssize_t n;
        if (len + 4096 > cap) {
            cap *= 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
        n = read(p[0], out + len, cap - len - 1);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    out[len] = 0;
    close(p[0]);
    waitpid(pid, status, 0);
    return out;
}

static unsigned count(const char *out, const char *needle)
{
    unsigned n = 0;
    for (const char *p = out; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static int setup(void **state)
{
    char sock[128], log[128];
    (void)state;

    snprintf(dir, sizeof(dir), "/tmp/accmig-conform-test-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(sock, sizeof(sock), "%s/up.sock", dir);
    snprintf(log, sizeof(log), "%s/up.log", dir);
    char *argv[] = {(char *)accmig, "serve", "--socket-path", sock, NULL};
    upstream_pid = spawn(argv, log);
    wait_listening(sock);
    return 0;
}

static int teardown(void **state)
{
    char cmd[160];
    (void)state;

    stop(upstream_pid);
    printf("conform caught %u of %u injected violations (%.0f%%)\n", caught, violations,
           violations ? 100.0 * caught / violations : 0.0);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        return -1;
    return 0;
}

/* The real server: conform starts it itself (--server-cmd), so restarts
 * and the scan of its log for sanitizer reports are exercised too. */
static void test_real_server_passes_hundreds_of_checks(void **state)
{
    char sock[128], cmd[512], log[128], xml[128];
    int st;
    (void)state;

    snprintf(sock, sizeof(sock), "%s/real.sock", dir);
    snprintf(log, sizeof(log), "%s/real.log", dir);
    snprintf(xml, sizeof(xml), "%s/real.xml", dir);
    snprintf(cmd, sizeof(cmd), "exec %s serve --socket-path %s", accmig, sock);
    char *argv[] = {(char *)accmig, "conform", sock,   "--server-cmd", cmd, "--server-log",
                    log,            "--junit", xml,    "--accmig",     NULL};
    char *out = run_capture(argv, &st);
    unsigned pass = count(out, "\nPASS "), fail = count(out, "\nFAIL ");
    if (fail || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "%s", out);
    assert_true(WIFEXITED(st));
    assert_int_equal(fail, 0);
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_true(pass >= 300);
    assert_non_null(strstr(out, " passed, 0 failed, "));
    free(out);
    /* The JUnit file is there and agrees. */
    FILE *f = fopen(xml, "r");
    assert_non_null(f);
    char head[512] = {0};
    size_t n = fread(head, 1, sizeof(head) - 1, f);
    fclose(f);
    assert_true(n > 0);
    assert_non_null(strstr(head, "<testsuites name=\"accmig conform\""));
    assert_non_null(strstr(head, "failures=\"0\""));
}

/* --json: one object per check, one summary; --only runs only that group. */
static void test_json_and_only(void **state)
{
    char sock[128];
    int st;
    (void)state;

    snprintf(sock, sizeof(sock), "%s/up.sock", dir);
    char *argv[] = {(char *)accmig, "conform", sock, "--json", "--only", "dma", NULL};
    char *out = run_capture(argv, &st);
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_true(count(out, "{\"group\":\"dma\"") >= 30);
    assert_int_equal(count(out, "{\"group\":\"protocol\""), 0);
    assert_int_equal(count(out, "\"summary\""), 1);
    free(out);
    char *bad[] = {(char *)accmig, "conform", sock, "--only", "nosuchgroup", NULL};
    out = run_capture(bad, &st);
    assert_int_equal(WEXITSTATUS(st), 2);
    free(out);
}

static void test_fault(void **state)
{
    const struct fault_case *fc = *state;
    char up[128], ps[128], log[256];
    int st;

    snprintf(up, sizeof(up), "%s/up.sock", dir);
    snprintf(ps, sizeof(ps), "%s/proxy.sock", dir);
    snprintf(log, sizeof(log), "%s/proxy-%s.log", dir, fc->name);
    char *pargv[] = {(char *)proxy, ps, up, (char *)fc->name, NULL};
    pid_t ppid = spawn(pargv, log);
    wait_listening(ps);
    char *argv[] = {(char *)accmig, "conform", ps, NULL};
    char *out = run_capture(argv, &st);
    stop(ppid);
    unsigned fail = count(out, "\nFAIL ") + (strncmp(out, "FAIL ", 5) == 0);
    if (fc->control) {
        if (fail)
            fprintf(stderr, "control '%s' made checks fail:\n%s", fc->name, out);
        assert_int_equal(fail, 0);
        assert_int_equal(WEXITSTATUS(st), 0);
    } else {
        violations++;
        if (fail && WEXITSTATUS(st) == 1)
            caught++;
        /* Which checks caught it, for the log. */
        for (const char *p = out; (p = strstr(p, "FAIL ")) != NULL; p++) {
            const char *e = strchr(p, '\n');
            fprintf(stderr, "  %s: %.*s\n", fc->name, (int)(e ? e - p : (long)strlen(p)), p);
        }
        if (!fail)
            fprintf(stderr, "violation '%s' was not caught\n", fc->name);
        assert_true(fail >= 1);
        assert_int_equal(WEXITSTATUS(st), 1);
    }
    free(out);
}

int main(int argc, char **argv)
{
    static struct fault_case cases[64];
    struct CMUnitTest tests[64 + 2];
    size_t n = 0, nt = 0;
    int st;

    if (argc < 3) {
        fprintf(stderr, "usage: %s ACCMIG FAULTY_PROXY\n", argv[0]);
        return 2;
    }
    accmig = argv[1];
    proxy = argv[2];
    /* Every fault the proxy knows is tested: its own list. */
    char *largv[] = {(char *)proxy, "--list", NULL};
    char *list = run_capture(largv, &st);
    for (char *line = strtok(list, "\n"); line && n < 64; line = strtok(NULL, "\n")) {
        char kind[16];
        if (sscanf(line, "%63s %15s", cases[n].name, kind) != 2)
            continue;
        cases[n].control = strcmp(kind, "control") == 0;
        n++;
    }
    free(list);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_real_server_passes_hundreds_of_checks);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_json_and_only);
    for (size_t i = 0; i < n; i++)
        tests[nt++] = (struct CMUnitTest){.name = cases[i].name, .test_func = test_fault,
                                          .initial_state = &cases[i]};
    if (n < 22) {
        fprintf(stderr, "faulty_proxy lists only %zu modes\n", n);
        return 1;
    }
    return _cmocka_run_group_tests("conform_proxy", tests, nt, setup, teardown);
}
