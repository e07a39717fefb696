/* Two hosts for real: two network namespaces joined by a veth pair
 * (10.77.N.1 and 10.77.N.2, inside our own namespaces only), a device server
 * and a mini-VMM in each; the guest migrates A -> B -> A over TCP across the
 * veth and finishes with every job exactly once. Needs root and iproute2
 * (`ip netns`); skipped with the reason otherwise. The namespaces (and the
 * veth with them) are deleted on every path. argv[1] is the accmig binary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vm_proc_util.h"

#define JOBS 300u

static const char *g_exe;

struct netns_fixture {
    struct pt t;
    char ns[2][32];
    char veth[2][16];
    char addr[2][32]; /* without the prefix length */
    bool made[2];
};

/* Runs `ip ARGS...` quietly: its exit status. */
static int run_ip(const char *const *args)
{
    const char *argv[24] = {"ip"};
    unsigned n = 1;
    int st;
    pid_t pid;

    for (; args[n - 1] && n < 23; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp("ip", (char *const *)argv);
        _exit(127);
    }
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int setup(void **state)
{
    struct netns_fixture *f = calloc(1, sizeof(*f));
    unsigned id = (unsigned)getpid();

    if (!f)
        return -1;
    pt_init(&f->t, g_exe);
    for (int i = 0; i < 2; i++) {
        snprintf(f->ns[i], sizeof(f->ns[i]), "accmig-t%u-%c", id, 'a' + i);
        snprintf(f->veth[i], sizeof(f->veth[i]), "amv%u%c", id % 1000000u, 'a' + i);
        snprintf(f->addr[i], sizeof(f->addr[i]), "10.77.%u.%d", id % 250u, i + 1);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct netns_fixture *f = *state;

    pt_cleanup(&f->t); /* the processes first: they live in the namespaces */
    for (int i = 0; i < 2; i++) {
        const char *del[] = {"netns", "del", f->ns[i], NULL};
        if (f->made[i] && run_ip(del) != 0)
            fprintf(stderr, "could not delete network namespace %s\n", f->ns[i]);
    }
    free(f);
    return 0;
}

/* Builds the two namespaces and the veth between them; false (with the
 * reason in why) when this machine cannot. */
static bool netns_build(struct netns_fixture *f, char *why, size_t len)
{
    const char *version[] = {"-V", NULL};
    char cidr[2][40];

    if (geteuid() != 0) {
        snprintf(why, len, "needs root to create network namespaces");
        return false;
    }
    if (run_ip(version) != 0) {
        snprintf(why, len, "needs iproute2 (`ip`)");
        return false;
    }
    for (int i = 0; i < 2; i++) {
        const char *add[] = {"netns", "add", f->ns[i], NULL};
        if (run_ip(add) != 0) {
            snprintf(why, len, "`ip netns add` is not permitted here");
            return false;
        }
        f->made[i] = true;
        snprintf(cidr[i], sizeof(cidr[i]), "%s/24", f->addr[i]);
    }
    {
        const char *veth[] = {"link", "add", f->veth[0], "netns", f->ns[0], "type", "veth",
                              "peer", "name", f->veth[1], "netns", f->ns[1], NULL};
        if (run_ip(veth) != 0) {
            snprintf(why, len, "cannot create a veth pair between namespaces");
            return false;
        }
    }
    for (int i = 0; i < 2; i++) {
        const char *addr[] = {"-n", f->ns[i], "addr", "add", cidr[i], "dev", f->veth[i], NULL};
        const char *up[] = {"-n", f->ns[i], "link", "set", f->veth[i], "up", NULL};
        const char *lo[] = {"-n", f->ns[i], "link", "set", "lo", "up", NULL};
        if (run_ip(addr) != 0 || run_ip(up) != 0 || run_ip(lo) != 0) {
            snprintf(why, len, "cannot configure the veth in %s", f->ns[i]);
            return false;
        }
    }
    return true;
}

static void test_a_guest_migrates_between_two_network_namespaces_over_a_veth(void **state)
{
    struct netns_fixture *f = *state;
    struct pt *t = &f->t;
    const char *in_a[] = {"ip", "netns", "exec", f->ns[0], NULL};
    const char *in_b[] = {"ip", "netns", "exec", f->ns[1], NULL};
    char why[128], ep_a[64], ep_b[64], listen[128], want[64];
    json_object *rep;

    if (!netns_build(f, why, sizeof(why))) {
        print_message("skipped: %s\n", why);
        skip();
    }
    snprintf(ep_a, sizeof(ep_a), "tcp:%s:0", f->addr[0]);
    snprintf(ep_b, sizeof(ep_b), "tcp:%s:0", f->addr[1]);
    pt_server(t, "A", 4, in_a);
    pt_server(t, "B", 4, in_b);
    pt_vm(t, "vm0", "A", 0, JOBS, NULL, in_a);
    pt_vm(t, "vm1", "B", 0, 0, ep_b, in_b);

    /* A -> B across the veth. */
    pt_listen(t, "vm1", listen, sizeof(listen));
    snprintf(want, sizeof(want), "tcp:%s:", f->addr[1]);
    assert_int_equal(strncmp(listen, want, strlen(want)), 0);
    assert_int_equal(pt_migrate_cli(t, "vm0", listen, NULL, &rep), 0);
    assert_true(json_object_get_boolean(json_object_object_get(rep, "ok")));
    assert_true(pt_int(rep, "ram_bytes") > 0);
    json_object_put(rep);
    pt_expect_exit(t, "vm0", 0);

    /* ... and back B -> A, onto A's second VF. */
    pt_vm(t, "vm2", "A", 1, 0, ep_a, in_a);
    pt_listen(t, "vm2", listen, sizeof(listen));
    assert_int_equal(pt_migrate_cli(t, "vm1", listen, NULL, &rep), 0);
    assert_true(json_object_get_boolean(json_object_object_get(rep, "ok")));
    json_object_put(rep);
    pt_expect_exit(t, "vm1", 0);
    pt_assert_guest_ok(t, "vm2", JOBS);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_a_guest_migrates_between_two_network_namespaces_over_a_veth, setup, teardown),
    };

    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-TO-ACCMIG\n", argv[0]);
        return 2;
    }
    g_exe = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
