/* `accmig serve` as an operator runs it: a child process, sockets in a
 * directory, clean shutdown on SIGTERM/SIGINT with a client attached. The
 * path of the accmig binary is the first argument. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "vfu/client.h"
#include "vfu_test_util.h"

static const char *accmig_path;

struct child {
    char dir[64];
    char sock[96];
    pid_t pid;
};

/* Starts accmig serve with 2 VFs and waits for its sockets. */
static void serve_start(struct child *ch)
{
    uint64_t deadline = am_now_ns() + (uint64_t)TEST_SETTLE_TIMEOUT_MS * 1000000u;
    struct stat st;
    char last[100];

    snprintf(ch->dir, sizeof(ch->dir), "/tmp/accmig-serve-XXXXXX");
    assert_non_null(mkdtemp(ch->dir));
    snprintf(ch->sock, sizeof(ch->sock), "%s/s/vf0.sock", ch->dir);
    snprintf(last, sizeof(last), "%s/s/vf1.sock", ch->dir);
    ch->pid = fork();
    assert_true(ch->pid >= 0);
    if (ch->pid == 0) {
        char d[80];
        int null = open("/dev/null", O_WRONLY);
        snprintf(d, sizeof(d), "%s/s", ch->dir);
        dup2(null, 1);
        dup2(null, 2);
        execl(accmig_path, accmig_path, "serve", "--dir", d, "--vfs", "2", "--qps", "2", NULL);
        _exit(127);
    }
    /* Sockets appear in order, each only once it listens. */
    while (stat(last, &st) != 0 && am_now_ns() < deadline)
        usleep(5000);
    assert_int_equal(stat(ch->sock, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
}

static int serve_wait(struct child *ch)
{
    int status = 0;
    char d[80];

    assert_int_equal(waitpid(ch->pid, &status, 0), ch->pid);
    snprintf(d, sizeof(d), "%s/s", ch->dir);
    rmdir(d);
    rmdir(ch->dir);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void stop_with(int sig)
{
    struct child ch;
    struct vfu_client *c;
    struct vfu_device_info di;
    struct stat st;
    char other[100];

    serve_start(&ch);
    snprintf(other, sizeof(other), "%s/s/vf1.sock", ch.dir);
    assert_int_equal(stat(other, &st), 0);
    assert_int_equal(vfu_client_connect(ch.sock, NULL, &c), 0);
    assert_int_equal(vfu_client_device_info(c, &di), 0);
    assert_int_equal(vfu_client_mig_state_set(c, VFIO_MIG_STATE_PRE_COPY), 0);
    assert_int_equal(kill(ch.pid, sig), 0);
    assert_int_equal(serve_wait(&ch), 0);
    /* The sockets are gone and the attached client sees the server gone. */
    assert_int_not_equal(stat(ch.sock, &st), 0);
    assert_int_not_equal(stat(other, &st), 0);
    assert_true(vfu_client_device_info(c, &di) < 0);
    vfu_client_destroy(c);
}

static void test_sigterm_with_a_client_attached_stops_cleanly_and_removes_the_sockets(
    void **state)
{
    (void)state;
    stop_with(SIGTERM);
}

static void test_sigint_stops_cleanly_too(void **state)
{
    (void)state;
    stop_with(SIGINT);
}

static void test_bad_usage_exits_2_without_creating_sockets(void **state)
{
    pid_t pid;
    int status;
    (void)state;

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 2);
        execl(accmig_path, accmig_path, "serve", "--vfs", "0", "--dir", "/tmp/never", NULL);
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 2);
    assert_int_not_equal(access("/tmp/never", F_OK), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigterm_with_a_client_attached_stops_cleanly_and_removes_the_sockets),
        cmocka_unit_test(test_sigint_stops_cleanly_too),
        cmocka_unit_test(test_bad_usage_exits_2_without_creating_sockets),
    };
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-TO-ACCMIG\n", argv[0]);
        return 2;
    }
    accmig_path = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
