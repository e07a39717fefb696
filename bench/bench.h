/* bench: the benchmarks behind `accmig bench <name>` (src/cli/bench.c).
 * Each entry point takes the arguments after the benchmark's name (argv[0]
 * is the name) and returns an exit status: 0 done, 1 the run failed a check,
 * 2 bad usage or setup failure. */
#ifndef ACCMIG_BENCH_H
#define ACCMIG_BENCH_H

#include <stdint.h>

/* ZIP throughput through the whole device path vs the raw ISA-L codec. */
int bench_engine(int argc, char **argv);
/* `bench engine --engine hpre`: the HPRE engine vs raw libcrypto (bench_hpre.c). */
int bench_engine_hpre(int argc, char **argv);
/* The vfio-user path vs a bare UNIX socket ping-pong (bench_vfu.c). */
int bench_vfu(int argc, char **argv);
/* Guest RAM migration over vmstream vs a raw TCP copy (bench_ramcopy.c). */
int bench_ram_copy_main(int argc, char **argv);
/* A tenant's throughput and migration downtime on VF1 while a hostile guest
 * hammers VF0 of the same vfio-user server, against VF0 idle, in
 * interleaved pairs (bench_neighbours.c). */
int bench_neighbours(int argc, char **argv);

/* ---- an in-process vfio-user server (bench_server.c) ---- */

struct vfu_device_config;
/* A vfio-user server for dev on a private directory under /tmp (named after
 * bench), served by its own thread until destroy. 0, -ENOMEM, mkdtemp's
 * errno, vfu_server_create's errors, or pthread_create's negated. */
struct bench_server;
int bench_server_create(const char *bench, const struct vfu_device_config *dev,
                        struct bench_server **out);
/* Stops the server (its clients' VFs reset), removes its directory, frees
 * s; NULL is a no-op. Clients should be gone first. */
void bench_server_destroy(struct bench_server *s);
/* The socket of VF index vf (0..num_vfs-1), valid until destroy. */
const char *bench_server_socket_path(const struct bench_server *s, unsigned vf);

/* ---- a loaded host: --load N (bench_load.c) ---- */

#define BENCH_LOAD_MAX 64u

/* N CPU-bound threads (SCHED_OTHER, the process's nice value, not pinned),
 * each spinning on its own cache line from create to destroy. A benchmark
 * creates it before its first measurement and destroys it after its last,
 * so both sides of every pair run on the same loaded host. */
struct bench_load;

/* Parses --load's value (0..BENCH_LOAD_MAX) into *n. -EINVAL (after a
 * message on stderr naming `accmig bench <bench>`) if it is not one. */
int bench_load_parse(const char *bench, const char *arg, unsigned *n);
/* Starts n threads (0: none, still an object). 0, -EINVAL (n too large),
 * -ENOMEM, or pthread_create's error negated (the threads already started
 * are stopped again, and a message on stderr names `accmig bench <bench>`).
 * *out is the caller's, for bench_load_destroy. */
int bench_load_create(const char *bench, unsigned n, struct bench_load **out);
/* Stops and joins the threads and frees l; NULL is a no-op. */
void bench_load_destroy(struct bench_load *l);
/* The number of threads (0 for NULL). */
unsigned bench_load_threads(const struct bench_load *l);
/* CPU time of the whole process less that of l's threads, in ns: the CPU
 * the measured code used (l may be NULL). */
uint64_t bench_cpu_ns(const struct bench_load *l);

/* ---- percentiles (bench_stats.c) ---- */

/* Sorts v[0..n) ascending. */
void bench_sort(double *v, unsigned n);
/* Nearest-rank p-th percentile (0..100) of v, already sorted; 0 if n is 0. */
double bench_pct_sorted(const double *v, unsigned n, unsigned p);
/* The median (the mean of the two middle values when n is even); sorts v. */
double bench_median(double *v, unsigned n);

/* min, nearest-rank p50 and p99, max of a set of samples. */
struct bench_spread {
    double min, p50, p99, max;
};
/* Sorts v and fills *s (all 0 if n is 0). */
void bench_spread(double *v, unsigned n, struct bench_spread *s);

#endif
