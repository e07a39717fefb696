/* bench: the benchmarks behind `accmig bench <name>` (src/cli/bench.c).
 * Each entry point takes the arguments after the benchmark's name (argv[0]
 * is the name) and returns an exit status: 0 done, 1 the run failed a check,
 * 2 bad usage or setup failure. */
#ifndef ACCMIG_BENCH_H
#define ACCMIG_BENCH_H

/* ZIP throughput through the whole device path vs the raw ISA-L codec. */
int bench_engine(int argc, char **argv);
/* The vfio-user path vs a bare UNIX socket ping-pong (bench_vfu.c). */
int bench_vfu(int argc, char **argv);
/* Guest RAM migration over vmstream vs a raw TCP copy (bench_ramcopy.c). */
int bench_ram_copy_main(int argc, char **argv);

#endif
