/* accmig serve --dir DIR [--vfs N] [--qps Q] [--hw v3|v4] [--engine zip|sec|..]
 * [--worker-cpus LIST] [--no-db-isolation]: serve a ZIP (or SEC, ...) PF's
 * VFs over vfio-user, one socket per VF (DIR/vf0.sock ...), until SIGTERM or
 * SIGINT. --socket-path PATH or --fd N instead of --dir serve one VF, as
 * QEMU's vfio-user backend-program conventions say (docs/interop/
 * vfio-user.rst): on a socket created at PATH, or on the listening socket
 * the parent passed as descriptor N. Exit 0 after a clean shutdown, 1 when
 * serving failed, 2 for bad usage or a setup failure. See docs/usage.md. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/common.h"
#include "vfu/vfu.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: accmig serve --dir DIR [--vfs N] [--qps Q] [--hw v3|v4] [OPTIONS]\n"
            "       accmig serve --socket-path PATH | --fd N [--qps Q] [--hw v3|v4] [OPTIONS]\n"
            "  Serve the VFs of one emulated PF over vfio-user: DIR/vf0.sock is\n"
            "  the first VF (function 1), ... (mode 0600, DIR created 0700 if missing).\n"
            "  --socket-path PATH  serve one VF on a socket created at PATH (0600)\n"
            "  --fd N    serve one VF on listening UNIX socket N, inherited from the\n"
            "            parent (vfio-user backend-program conventions; =VALUE works too)\n"
            "  --vfs N   VFs, 1..%u (default %u)\n"
            "  --qps Q   queue pairs per VF, 2..%u (default %u)\n"
            "  --hw      v4: migration through the PF's per-VF window (default);\n"
            "            v3: through the VF BAR's upper half (the guest sees 32 KiB)\n"
            "  --engine %s  the engine behind the queues (default zip); the\n"
            "            VFs' PCI device id is its (zip a251, sec a256, hpre a259)\n"
            "  --worker-cpus LIST  run the device's job workers only on these CPUs\n"
            "            (0..63; \"0\", \"0,2\", \"0-3,6\"; default: any CPU)\n"
            "  --no-db-isolation  the old doorbell layout: no BAR4, QUE_ISO_CFG reads 0,\n"
            "            SQ/CQ doorbells trapped in BAR2 (default: each VF's doorbells in\n"
            "            its own BAR4 pages)\n"
            "  --db-mmap cooperative|always|never  who may map the BAR4 doorbell pages:\n"
            "            clients whose guest waits for each doorbell to be taken (they say\n"
            "            so in VERSION, as accmig vm does; default), every client (QEMU too:\n"
            "            the Linux driver can then lose a doorbell, docs/doorbells.md), or\n"
            "            nobody (every doorbell trapped)\n"
            "  Logs go to stderr; ACCMIG_LOG=err|guest|unimp|info|debug (serve: info).\n"
            "  SIGTERM/SIGINT: clients are detached (their VFs reset), sockets removed.\n"
            "  QEMU 10.1+: -device '{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\n"
            "  \"DIR/vf0.sock\",\"type\":\"unix\"}}' with memory-backend-memfd,share=on.\n",
            QM_MAX_VFS, QM_DEFAULT_VFS, QM_MAX_QPS_PER_VF, QM_DEFAULT_QPS_PER_VF, qm_engine_names());
}

static int parse_uint(const char *opt, const char *s, uint64_t min, uint64_t max, unsigned *out)
{
    uint64_t v;
    if (!s || am_parse_u64(s, max, &v) != 0 || v < min) {
        fprintf(stderr, "accmig serve: %s wants a number in %llu..%llu\n", opt,
                (unsigned long long)min, (unsigned long long)max);
        return -EINVAL;
    }
    *out = (unsigned)v;
    return 0;
}

/* LIST: comma-separated CPUs or ranges "A-B" (A <= B), each in 0..63, into
 * a mask (bit c = CPU c). Returns 0 or -EINVAL with a message naming what
 * was wrong. */
static int parse_cpu_list(const char *s, uint64_t *out)
{
    uint64_t mask = 0;
    const char *p = s;

    if (!s || !*s) {
        fprintf(stderr, "accmig serve: --worker-cpus wants a CPU list such as 0,2-3\n");
        return -EINVAL;
    }
    for (;;) {
        char *end;
        unsigned long lo, hi;

        if (*p < '0' || *p > '9')
            goto bad;
        errno = 0;
        lo = strtoul(p, &end, 10);
        hi = lo;
        if (errno || end == p)
            goto bad;
        p = end;
        if (*p == '-') {
            p++;
            if (*p < '0' || *p > '9')
                goto bad;
            hi = strtoul(p, &end, 10);
            if (errno || end == p)
                goto bad;
            p = end;
        }
        if (lo > 63 || hi > 63) {
            fprintf(stderr, "accmig serve: --worker-cpus '%s': CPUs are 0..63\n", s);
            return -EINVAL;
        }
        if (lo > hi) {
            fprintf(stderr, "accmig serve: --worker-cpus '%s': a range runs low-high\n", s);
            return -EINVAL;
        }
        for (unsigned long c = lo; c <= hi; c++)
            mask |= 1ull << c;
        if (*p == '\0')
            break;
        if (*p != ',')
            goto bad;
        p++;
    }
    *out = mask;
    return 0;
bad:
    fprintf(stderr,
            "accmig serve: --worker-cpus '%s' is not a CPU list (such as 0 or 0,2-3)\n", s);
    return -EINVAL;
}

static int parse_args(int argc, char **argv, struct vfu_server_config *cfg)
{
    bool vfs_given = false;
    unsigned fd = 0;

    /* Every option but the --no-* flags takes a value: "--opt VALUE" or
     * "--opt=VALUE". */
    for (int i = 1; i < argc;) {
        char name[32];
        const char *a = argv[i], *v, *eq = strchr(a, '=');
        int ret = 0;

        if (strcmp(a, "--no-db-isolation") == 0) {
            cfg->dev.db_isolation = false;
            i++;
            continue;
        }
        if (eq && (size_t)(eq - a) < sizeof(name)) {
            snprintf(name, sizeof(name), "%.*s", (int)(eq - a), a);
            a = name;
            v = eq + 1;
            i += 1;
        } else {
            v = i + 1 < argc ? argv[i + 1] : NULL;
            i += 2;
        }
        if (strcmp(a, "--dir") == 0 && v) {
            cfg->dir = v;
        } else if (strcmp(a, "--socket-path") == 0 && v && v[0]) {
            cfg->socket_path = v;
        } else if (strcmp(a, "--fd") == 0) {
            ret = parse_uint(a, v, 0, INT_MAX, &fd);
            cfg->has_listen_fd = true;
            cfg->listen_fd = (int)fd;
        } else if (strcmp(a, "--vfs") == 0) {
            ret = parse_uint(a, v, 1, QM_MAX_VFS, &cfg->dev.num_vfs);
            vfs_given = true;
        } else if (strcmp(a, "--qps") == 0) {
            ret = parse_uint(a, v, 2, QM_MAX_QPS_PER_VF, &cfg->dev.qps_per_vf);
        } else if (strcmp(a, "--worker-cpus") == 0) {
            ret = parse_cpu_list(v, &cfg->dev.worker_cpus);
        } else if (strcmp(a, "--db-mmap") == 0 && v &&
                   (!strcmp(v, "cooperative") || !strcmp(v, "always") || !strcmp(v, "never"))) {
            cfg->dev.db_mmap = !strcmp(v, "always") ? VFU_DB_MMAP_ALWAYS
                               : !strcmp(v, "never") ? VFU_DB_MMAP_NEVER
                                                     : VFU_DB_MMAP_COOPERATIVE;
        } else if (strcmp(a, "--engine") == 0 && v && qm_engine_by_name(v) != NULL) {
            cfg->dev.engine = qm_engine_by_name(v)->type;
        } else if (strcmp(a, "--hw") == 0 && v && (!strcmp(v, "v3") || !strcmp(v, "v4"))) {
            cfg->dev.hw = strcmp(v, "v3") == 0 ? MIG_HW_V3 : MIG_HW_V4;
        } else {
            fprintf(stderr, "accmig serve: bad or incomplete option '%s'\n", a);
            return -EINVAL;
        }
        if (ret)
            return ret;
    }
    if (!!cfg->dir + !!cfg->socket_path + cfg->has_listen_fd != 1) {
        fprintf(stderr, "accmig serve: exactly one of --dir, --socket-path and --fd is required\n");
        return -EINVAL;
    }
    if (!cfg->dir) {
        /* A backend program serves one device. */
        if (vfs_given && cfg->dev.num_vfs != 1) {
            fprintf(stderr, "accmig serve: --socket-path and --fd serve one VF (--vfs 1)\n");
            return -EINVAL;
        }
        cfg->dev.num_vfs = 1;
    }
    return 0;
}

/* "ZIP", "SEC": the engine's name as the startup line prints it. */
static const char *engine_label(enum qm_engine_type t)
{
    switch (t) {
    case QM_ENGINE_ZIP:
        return "ZIP";
    case QM_ENGINE_SEC:
        return "SEC";
    case QM_ENGINE_HPRE:
        return "HPRE";
    default:
        return "?";
    }
}

int cli_serve(int argc, char **argv)
{
    struct vfu_server_config cfg = {0};
    struct vfu_server *srv;
    sigset_t sigs;
    int ret;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
    }
    vfu_device_config_default(&cfg.dev);
    if (parse_args(argc, argv, &cfg)) {
        usage(stderr);
        return 2;
    }
    /* An operator wants to see clients come and go. */
    setenv("ACCMIG_LOG", "info", 0);
    /* Blocked before any thread exists, so every device thread inherits
     * the mask and the signalfd in the epoll loop receives them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0) {
        fprintf(stderr, "accmig serve: cannot block signals\n");
        return 2;
    }
    cfg.handle_signals = true;
    ret = vfu_server_create(&cfg, &srv);
    if (ret) {
        if (cfg.has_listen_fd)
            fprintf(stderr, "accmig serve: cannot serve on descriptor %d: %s\n", cfg.listen_fd,
                    ret == -EINVAL ? "not a listening socket" : strerror(-ret));
        else
            fprintf(stderr, "accmig serve: cannot start in %s: %s\n",
                    cfg.dir ? cfg.dir : cfg.socket_path, strerror(-ret));
        return 2;
    }
    printf("accmig serve: %u VF%s of a %s PF (QM %s), %u queue pairs each, doorbells %s%s:\n",
           cfg.dev.num_vfs, cfg.dev.num_vfs == 1 ? "" : "s", engine_label(cfg.dev.engine),
           cfg.dev.hw == MIG_HW_V3 ? "v3" : "v4",
           cfg.dev.qps_per_vf, cfg.dev.db_isolation ? "in BAR4 pages" : "in BAR2",
           !cfg.dev.db_isolation                       ? ""
           : cfg.dev.db_mmap == VFU_DB_MMAP_ALWAYS     ? " (mappable by every client)"
           : cfg.dev.db_mmap == VFU_DB_MMAP_NEVER      ? " (trapped)"
                                                       : " (mappable by cooperative clients)");
    if (cfg.has_listen_fd)
        printf("  the listening socket on descriptor %d\n", cfg.listen_fd);
    else
        for (unsigned i = 0; i < cfg.dev.num_vfs; i++)
            printf("  %s\n", vfu_server_socket_path(srv, i));
    fflush(stdout);
    ret = vfu_server_run(srv);
    vfu_server_destroy(srv);
    if (ret) {
        fprintf(stderr, "accmig serve: stopped on an error: %s\n", strerror(-ret));
        return 1;
    }
    printf("accmig serve: stopped\n");
    return 0;
}
