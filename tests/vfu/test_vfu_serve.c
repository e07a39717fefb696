/* `accmig serve` as an operator runs it: a child process, sockets in a
 * directory, clean shutdown on SIGTERM/SIGINT with a client attached. The
 * path of the accmig binary is the first argument. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "qm/qm_hw.h"
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

/* ---- one VF: --socket-path and --fd (vfio-user backend conventions) ---- */

/* Runs accmig serve with argv (NULL-terminated, after "serve"); stdout goes
 * to /dev/null, stderr to log (or /dev/null); keep_fd survives exec as
 * descriptor keep_as (-1: none). */
static pid_t serve_spawn(const char *const *args, const char *log, int keep_fd, int keep_as)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        const char *argv[16] = {accmig_path, "serve"};
        int null = open("/dev/null", O_RDWR);
        int err = log ? open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600) : null;
        size_t n = 2;

        for (; args[n - 2] && n < AM_ARRAY_SIZE(argv) - 1; n++)
            argv[n] = args[n - 2];
        argv[n] = NULL;
        if (keep_fd >= 0 && dup2(keep_fd, keep_as) < 0) /* dup2 clears CLOEXEC */
            _exit(126);
        dup2(null, 0);
        dup2(null, 1);
        dup2(err, 2);
        execv(accmig_path, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int serve_reap(pid_t pid)
{
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void wait_for_socket(const char *path)
{
    uint64_t deadline = am_now_ns() + (uint64_t)TEST_SETTLE_TIMEOUT_MS * 1000000u;
    struct stat st;

    while (stat(path, &st) != 0 && am_now_ns() < deadline)
        usleep(5000);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
}

static bool file_has(const char *path, const char *what)
{
    char buf[16384];
    FILE *f = fopen(path, "r");
    size_t n;

    if (!f)
        return false;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, what) != NULL;
}

/* The one VF answers a client the way the directory's vf0 would. */
static void one_vf_serves(const char *sock)
{
    struct vfu_client *c = NULL;
    struct vfu_device_info di;
    uint8_t cfg[4];

    assert_int_equal(vfu_client_connect(sock, NULL, &c), 0);
    assert_int_equal(vfu_client_device_info(c, &di), 0);
    assert_int_equal(vfu_client_region_read(c, VFU_REGION_CONFIG, 0, cfg, 4), 0);
    assert_int_equal(am_le16(cfg), QM_VENDOR_ID);
    assert_int_equal(vfu_client_mig_state_set(c, VFIO_MIG_STATE_STOP), 0);
    vfu_client_destroy(c);
}

static void test_socket_path_serves_one_vf_names_a_bad_json_and_removes_its_socket(void **state)
{
    char dir[64], sock[96], log[96];
    struct raw_conn rc;
    struct stat st;
    pid_t pid;
    (void)state;

    snprintf(dir, sizeof(dir), "/tmp/accmig-serve-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(sock, sizeof(sock), "%s/dev.sock", dir);
    snprintf(log, sizeof(log), "%s/log", dir);
    {
        const char *args[] = {"--socket-path", sock, "--qps", "2", NULL};
        pid = serve_spawn(args, log, -1, -1);
    }
    wait_for_socket(sock);
    assert_int_equal(stat(sock, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* Well-formed JSON with a bad value: refused, and the log says why. */
    assert_int_equal(raw_connect(&rc, sock), 0);
    assert_int_equal(raw_version(&rc, "{\"capabilities\":{\"max_data_xfer_size\":0}}"), -EINVAL);
    assert_int_equal(raw_version(&rc, "{\"capabilities\":{\"max_msg_fds\":32}}"), 0);
    raw_close(&rc);
    one_vf_serves(sock);
    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_int_equal(serve_reap(pid), 0);
    assert_int_not_equal(stat(sock, &st), 0);
    assert_true(file_has(log, "max_data_xfer_size is 0 or above 64 MiB"));
    assert_false(file_has(log, "malformed"));
    unlink(log);
    assert_int_equal(rmdir(dir), 0); /* nothing else was left behind */
}

static void test_fd_serves_one_vf_on_an_inherited_listening_socket(void **state)
{
    char dir[64], sock[96];
    const char *args[] = {"--fd=7", "--qps=2", NULL};
    struct stat st;
    int lfd;
    pid_t pid;
    (void)state;

    snprintf(dir, sizeof(dir), "/tmp/accmig-serve-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(sock, sizeof(sock), "%s/parent.sock", dir);
    /* The parent listens, as a management layer does, then hands it over. */
    assert_int_equal(vfu_sock_listen(sock, &lfd), 0);
    pid = serve_spawn(args, NULL, lfd, 7);
    close(lfd);
    one_vf_serves(sock); /* connects queue in the backlog until serve accepts */
    one_vf_serves(sock); /* and the VF is free again for the next client */
    assert_int_equal(kill(pid, SIGINT), 0);
    assert_int_equal(serve_reap(pid), 0);
    /* The socket's name is the parent's: serve leaves it. */
    assert_int_equal(stat(sock, &st), 0);
    unlink(sock);
    assert_int_equal(rmdir(dir), 0);
}

static void test_one_vf_options_refuse_mixing_more_vfs_and_bad_descriptors_with_exit_2(
    void **state)
{
    char dir[64], sock[96];
    const char *mixed[] = {"--socket-path", sock, "--dir", dir, NULL};
    const char *two_vfs[] = {"--socket-path", sock, "--vfs", "2", NULL};
    const char *both[] = {"--fd", "0", "--socket-path", sock, NULL};
    const char *not_a_socket[] = {"--fd", "0", NULL};   /* /dev/null */
    const char *not_open[] = {"--fd", "77", NULL};
    const char *not_listening[] = {"--fd", "7", NULL}; /* one end of a socketpair */
    int sp[2];
    (void)state;

    snprintf(dir, sizeof(dir), "/tmp/accmig-serve-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(sock, sizeof(sock), "%s/dev.sock", dir);
    assert_int_equal(serve_reap(serve_spawn(mixed, NULL, -1, -1)), 2);
    assert_int_equal(serve_reap(serve_spawn(two_vfs, NULL, -1, -1)), 2);
    assert_int_equal(serve_reap(serve_spawn(both, NULL, -1, -1)), 2);
    assert_int_equal(serve_reap(serve_spawn(not_a_socket, NULL, -1, -1)), 2);
    assert_int_equal(serve_reap(serve_spawn(not_open, NULL, -1, -1)), 2);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    assert_int_equal(serve_reap(serve_spawn(not_listening, NULL, sp[0], 7)), 2);
    close(sp[0]);
    close(sp[1]);
    assert_int_not_equal(access(sock, F_OK), 0);
    assert_int_equal(rmdir(dir), 0); /* nothing was created in it */
}

/* Threads of pid whose allowed CPUs are exactly `list` (as
 * /proc/PID/task/TID/status prints Cpus_allowed_list). */
static unsigned threads_allowed_on(pid_t pid, const char *list)
{
    char path[64], line[256], want[64];
    unsigned n = 0;
    struct dirent *e;
    DIR *d;

    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    snprintf(want, sizeof(want), "Cpus_allowed_list:\t%s\n", list);
    d = opendir(path);
    if (!d)
        return 0;
    while ((e = readdir(d))) {
        char st[320];
        FILE *f;

        if (e->d_name[0] == '.' || strlen(e->d_name) > 32)
            continue;
        snprintf(st, sizeof(st), "%s/%.32s/status", path, e->d_name);
        f = fopen(st, "r");
        if (!f)
            continue;
        while (fgets(line, sizeof(line), f))
            if (strcmp(line, want) == 0)
                n++;
        fclose(f);
    }
    closedir(d);
    return n;
}

static void test_worker_cpus_pins_the_workers_and_bad_lists_exit_2_naming_the_option(
    void **state)
{
    static const char *bad[] = {"", "64", "1-0", "0,", ",0", "0-", "a", "0-1-2", "-1", "0;1",
                                "99999999999999999999"};
    char dir[64], sock[96], log[96];
    uint64_t deadline;
    pid_t pid;
    (void)state;

    snprintf(dir, sizeof(dir), "/tmp/accmig-serve-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(sock, sizeof(sock), "%s/dev.sock", dir);
    snprintf(log, sizeof(log), "%s/log", dir);
    for (size_t i = 0; i < AM_ARRAY_SIZE(bad); i++) {
        const char *args[] = {"--socket-path", sock, "--worker-cpus", bad[i], NULL};
        assert_int_equal(serve_reap(serve_spawn(args, log, -1, -1)), 2);
        assert_true(file_has(log, "--worker-cpus"));
        assert_int_not_equal(access(sock, F_OK), 0);
    }
    {
        const char *args[] = {"--socket-path", sock, "--worker-cpus=0,0-0", NULL};
        pid = serve_spawn(args, log, -1, -1);
    }
    wait_for_socket(sock);
    one_vf_serves(sock);
    /* The 2 device workers run on CPU 0 only; the other threads anywhere.
     * (On a one-CPU machine every thread says "0": nothing to tell apart.) */
    if (sysconf(_SC_NPROCESSORS_ONLN) > 1) {
        deadline = am_now_ns() + (uint64_t)TEST_SETTLE_TIMEOUT_MS * 1000000u;
        while (threads_allowed_on(pid, "0") < 2 && am_now_ns() < deadline)
            usleep(5000);
        assert_int_equal(threads_allowed_on(pid, "0"), 2);
    }
    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_int_equal(serve_reap(pid), 0);
    unlink(log);
    assert_int_equal(rmdir(dir), 0);
}

/* The doorbell layout one served VF shows a (cooperative) client: BAR4's
 * size (0: none) and QUE_ISO_CFG; *mappable: whether it may map BAR4, and
 * if so the mapping shows idle doorbells. */
static void doorbell_layout_as(const char *sock, bool coop, uint64_t *bar4_size, uint32_t *iso,
                               bool *mappable)
{
    struct vfu_client_opts o = {.cooperative_doorbells = coop};
    struct vfu_client *c = NULL;
    struct vfu_region_info ri;
    uint64_t size = 0;
    void *base = NULL;

    assert_int_equal(vfu_client_connect(sock, &o, &c), 0);
    assert_int_equal(vfu_client_region_info(c, VFU_REGION_BAR4, &ri), 0);
    assert_int_equal(vfu_client_region_read(c, VFU_REGION_BAR2, QM_QUE_ISO_CFG, iso, 4), 0);
    *bar4_size = ri.size;
    *mappable = ri.flags & VFU_REGION_FLAG_MMAP;
    if (*mappable) {
        assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, &base, &size), 0);
        assert_int_equal(size, ri.size);
        assert_int_equal(*(volatile uint64_t *)((uint8_t *)base + QM_DB_SQCQ), QM_DB_IDLE);
    } else {
        assert_int_equal(vfu_client_region_map(c, VFU_REGION_BAR4, &base, &size), -ENOTSUP);
    }
    vfu_client_destroy(c);
}

static void doorbell_layout(const char *sock, uint64_t *bar4_size, uint32_t *iso)
{
    bool mappable;

    doorbell_layout_as(sock, true, bar4_size, iso, &mappable);
    assert_int_equal(mappable, *bar4_size != 0);
}

static void test_no_db_isolation_serves_the_old_layout_and_is_in_the_help(void **state)
{
    char dir[64], sock[96], log[96];
    uint64_t bar4;
    uint32_t iso;
    pid_t pid;
    (void)state;

    snprintf(dir, sizeof(dir), "/tmp/accmig-serve-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(sock, sizeof(sock), "%s/dev.sock", dir);
    snprintf(log, sizeof(log), "%s/log", dir);
    /* --help lists it (on stdout). */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int out = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(out, 1);
        execl(accmig_path, accmig_path, "serve", "--help", NULL);
        _exit(127);
    }
    assert_int_equal(serve_reap(pid), 0);
    assert_true(file_has(log, "--no-db-isolation"));
    /* A flag: it takes no value. */
    {
        const char *args[] = {"--socket-path", sock, "--no-db-isolation=1", NULL};
        assert_int_equal(serve_reap(serve_spawn(args, log, -1, -1)), 2);
        assert_true(file_has(log, "--no-db-isolation"));
        assert_int_not_equal(access(sock, F_OK), 0);
    }
    /* The default: BAR4 pages, QUE_ISO_CFG bit0. */
    {
        const char *args[] = {"--socket-path", sock, "--qps", "3", NULL};
        pid = serve_spawn(args, NULL, -1, -1);
    }
    wait_for_socket(sock);
    doorbell_layout(sock, &bar4, &iso);
    assert_int_equal(bar4, 4u * QM_DB_PAGE_SIZE); /* 3 pages, rounded to a power of two */
    assert_int_equal(iso & QM_QUE_ISO_EN, QM_QUE_ISO_EN);
    {
        bool mappable = true;

        /* A client that does not vouch for its guest: BAR4 trapped. */
        doorbell_layout_as(sock, false, &bar4, &iso, &mappable);
        assert_false(mappable);
        assert_int_equal(bar4, 4u * QM_DB_PAGE_SIZE);
    }
    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_int_equal(serve_reap(pid), 0);
    /* --db-mmap: always maps for everyone, never for nobody, else exit 2. */
    {
        const char *always[] = {"--socket-path", sock, "--db-mmap", "always", NULL};
        const char *never[] = {"--socket-path", sock, "--db-mmap=never", NULL};
        const char *bad[] = {"--socket-path", sock, "--db-mmap", "sometimes", NULL};
        bool mappable;

        pid = serve_spawn(always, NULL, -1, -1);
        wait_for_socket(sock);
        doorbell_layout_as(sock, false, &bar4, &iso, &mappable);
        assert_true(mappable);
        assert_int_equal(kill(pid, SIGTERM), 0);
        assert_int_equal(serve_reap(pid), 0);
        pid = serve_spawn(never, NULL, -1, -1);
        wait_for_socket(sock);
        doorbell_layout_as(sock, true, &bar4, &iso, &mappable);
        assert_false(mappable);
        assert_int_equal(bar4, 4u * QM_DB_PAGE_SIZE);
        assert_int_equal(kill(pid, SIGTERM), 0);
        assert_int_equal(serve_reap(pid), 0);
        assert_int_equal(serve_reap(serve_spawn(bad, log, -1, -1)), 2);
        assert_true(file_has(log, "--db-mmap"));
    }
    /* --no-db-isolation: no BAR4, QUE_ISO_CFG 0; the VF serves as before. */
    {
        const char *args[] = {"--socket-path", sock, "--no-db-isolation", "--qps", "3", NULL};
        pid = serve_spawn(args, NULL, -1, -1);
    }
    wait_for_socket(sock);
    doorbell_layout(sock, &bar4, &iso);
    assert_int_equal(bar4, 0);
    assert_int_equal(iso, 0);
    one_vf_serves(sock);
    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_int_equal(serve_reap(pid), 0);
    unlink(log);
    assert_int_equal(rmdir(dir), 0);
}

static void test_server_config_wants_one_place_one_vf_and_a_listening_unix_socket(void **state)
{
    struct vfu_server_config cfg = {0};
    struct vfu_server *srv = NULL;
    char dir[64], sock[96];
    int sp[2], lfd;
    (void)state;

    snprintf(dir, sizeof(dir), "/tmp/accmig-serve-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(sock, sizeof(sock), "%s/dev.sock", dir);
    vfu_device_config_default(&cfg.dev);
    cfg.dev.workers = 1;
    cfg.dev.qps_per_vf = 2;
    assert_int_equal(vfu_server_create(&cfg, &srv), -EINVAL); /* nowhere */
    cfg.dir = dir;
    cfg.socket_path = sock;
    assert_int_equal(vfu_server_create(&cfg, &srv), -EINVAL); /* two places */
    cfg.dir = NULL;
    assert_int_equal(vfu_server_create(&cfg, &srv), -EINVAL); /* 4 VFs on one socket */
    cfg.dev.num_vfs = 1;
    assert_int_equal(vfu_server_create(&cfg, &srv), 0);
    assert_string_equal(vfu_server_socket_path(srv, 0), sock);
    assert_string_equal(vfu_server_socket_path(srv, 1), "");
    vfu_server_destroy(srv);
    assert_int_not_equal(access(sock, F_OK), 0);

    cfg.socket_path = NULL;
    cfg.has_listen_fd = true;
    cfg.listen_fd = 1000;
    assert_int_equal(vfu_server_create(&cfg, &srv), -EBADF);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    cfg.listen_fd = sp[0];
    assert_int_equal(vfu_server_create(&cfg, &srv), -EINVAL); /* not listening */
    cfg.listen_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_int_equal(vfu_server_create(&cfg, &srv), -ENOTSOCK);
    close(cfg.listen_fd);
    /* A failed create leaves the descriptor to the caller. */
    assert_int_equal(fcntl(sp[0], F_GETFD), FD_CLOEXEC);
    close(sp[0]);
    close(sp[1]);
    assert_int_equal(vfu_sock_listen(sock, &lfd), 0);
    cfg.listen_fd = lfd;
    assert_int_equal(vfu_server_create(&cfg, &srv), 0);
    assert_string_equal(vfu_server_socket_path(srv, 0), ""); /* the parent's name */
    vfu_server_destroy(srv); /* closes lfd, leaves the path */
    assert_int_equal(fcntl(lfd, F_GETFD), -1);
    assert_int_equal(access(sock, F_OK), 0);
    unlink(sock);
    assert_int_equal(rmdir(dir), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigterm_with_a_client_attached_stops_cleanly_and_removes_the_sockets),
        cmocka_unit_test(test_sigint_stops_cleanly_too),
        cmocka_unit_test(test_bad_usage_exits_2_without_creating_sockets),
        cmocka_unit_test(test_socket_path_serves_one_vf_names_a_bad_json_and_removes_its_socket),
        cmocka_unit_test(test_fd_serves_one_vf_on_an_inherited_listening_socket),
        cmocka_unit_test(test_server_config_wants_one_place_one_vf_and_a_listening_unix_socket),
        cmocka_unit_test(test_one_vf_options_refuse_mixing_more_vfs_and_bad_descriptors_with_exit_2),
        cmocka_unit_test(test_worker_cpus_pins_the_workers_and_bad_lists_exit_2_naming_the_option),
        cmocka_unit_test(test_no_db_isolation_serves_the_old_layout_and_is_in_the_help),
    };
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-TO-ACCMIG\n", argv[0]);
        return 2;
    }
    accmig_path = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
