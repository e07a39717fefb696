/* conform/server: the server under test when --server-cmd names it: started
 * through /bin/sh in its own process group with stdout and stderr appended
 * to a log, restarted after it dies, and its log scanned for sanitizer
 * reports (a server that survives a malformed message but reports a heap
 * over-read has still failed). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "conform/cf_int.h"

static const char *const markers[] = {
    "ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer",
    "ERROR: MemorySanitizer",
};

static bool can_connect(const char *path)
{
    struct cf_conn c;
    if (cf_conn_open(&c, path, 0) != 0)
        return false;
    cf_conn_close(&c);
    return true;
}

int cf_server_start(struct cf_server *s, const char *socket_path, unsigned timeout_ms)
{
    uint64_t deadline = am_now_ns() + (uint64_t)timeout_ms * 1000000u;
    int logfd;
    pid_t pid;

    if (!s->log_path[0]) {
        snprintf(s->log_path, sizeof(s->log_path), "/tmp/accmig-conform-%d.log", (int)getpid());
        s->own_log = true;
    }
    logfd = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logfd < 0)
        return -errno;
    pid = fork();
    if (pid < 0) {
        int e = -errno;
        close(logfd);
        return e;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        setpgid(0, 0);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        execl("/bin/sh", "sh", "-c", s->cmd, (char *)NULL);
        _exit(127);
    }
    close(logfd);
    s->pid = pid;
    s->starts++;
    while (am_now_ns() < deadline) {
        int st;
        if (can_connect(socket_path))
            return 0;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            s->pid = 0;
            return -ECHILD;
        }
        nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
    }
    return -ETIMEDOUT;
}

int cf_server_alive(struct cf_server *s, int *status)
{
    int st = 0;
    pid_t r;

    if (!s->pid)
        return 0;
    r = waitpid(s->pid, &st, WNOHANG);
    if (r == 0)
        return 1;
    if (r < 0)
        return -errno;
    s->pid = 0;
    if (status)
        *status = st;
    return 0;
}

bool cf_server_log_scan(struct cf_server *s, char *buf, size_t cap)
{
    char chunk[8192];
    bool found = false;
    int fd;

    if (!s->log_path[0])
        return false;
    fd = open(s->log_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    /* Lines are scanned whole: a chunk ends at its last newline. */
    for (;;) {
        ssize_t n = pread(fd, chunk, sizeof(chunk) - 1, s->log_scanned);
        char *end;
        if (n <= 0)
            break;
        chunk[n] = 0;
        end = strrchr(chunk, '\n');
        if (!end) {
            if ((size_t)n < sizeof(chunk) - 1)
                break; /* a line still being written */
            end = chunk + n - 1;
        }
        end[1] = 0;
        for (size_t i = 0; i < AM_ARRAY_SIZE(markers) && !found; i++) {
            char *hit = strstr(chunk, markers[i]);
            if (hit) {
                char *eol = strchr(hit, '\n');
                size_t len = eol ? (size_t)(eol - hit) : strlen(hit);
                snprintf(buf, cap, "%.*s", (int)AM_MIN(len, cap - 1), hit);
                found = true;
            }
        }
        s->log_scanned += end + 1 - chunk;
        if (found)
            break;
    }
    close(fd);
    return found;
}

int cf_server_stop(struct cf_server *s, int *status)
{
    uint64_t deadline = am_now_ns() + 5000000000ull;
    int st = 0;

    if (!s->pid)
        return 0;
    kill(-s->pid, SIGTERM);
    while (am_now_ns() < deadline) {
        pid_t r = waitpid(s->pid, &st, WNOHANG);
        if (r == s->pid) {
            s->pid = 0;
            if (status)
                *status = st;
            return 0;
        }
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    }
    kill(-s->pid, SIGKILL);
    waitpid(s->pid, &st, 0);
    s->pid = 0;
    if (status)
        *status = st;
    return -ETIMEDOUT;
}
