/* bench_server: an in-process vfio-user server on a private temp dir, run by
 * its own thread, for the benchmarks that need one (bench.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bench.h"
#include "vfu/vfu.h"

struct bench_server {
    char dir[64];
    struct vfu_server *srv;
    pthread_t thread;
};

static void *bench_server_main(void *arg)
{
    vfu_server_run(arg);
    return NULL;
}

int bench_server_create(const char *bench, const struct vfu_device_config *dev,
                        struct bench_server **out)
{
    struct vfu_server_config cfg = {0};
    struct bench_server *s = calloc(1, sizeof(*s));
    int ret;

    if (!s)
        return -ENOMEM;
    snprintf(s->dir, sizeof(s->dir), "/tmp/accmig-bench-%.16s-XXXXXX", bench);
    if (!mkdtemp(s->dir)) {
        ret = -errno;
        free(s);
        return ret;
    }
    cfg.dir = s->dir;
    cfg.dev = *dev;
    ret = vfu_server_create(&cfg, &s->srv);
    if (ret)
        goto err_rmdir;
    ret = -pthread_create(&s->thread, NULL, bench_server_main, s->srv);
    if (ret)
        goto err_destroy;
    *out = s;
    return 0;
err_destroy:
    vfu_server_destroy(s->srv);
err_rmdir:
    rmdir(s->dir);
    free(s);
    return ret;
}

void bench_server_destroy(struct bench_server *s)
{
    if (!s)
        return;
    vfu_server_stop(s->srv);
    pthread_join(s->thread, NULL);
    vfu_server_destroy(s->srv);
    rmdir(s->dir);
    free(s);
}

const char *bench_server_socket_path(const struct bench_server *s, unsigned vf)
{
    return vfu_server_socket_path(s->srv, vf);
}
