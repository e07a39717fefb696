/* bench_ram: guest RAM transfer benchmarks behind `accmig bench ramcopy`
 * (registered by src/cli/bench.c). Same conventions as bench.h: argv[0] is
 * the benchmark's name; returns 0 done, 1 the run failed a check, 2 bad
 * usage or setup failure. */
#ifndef ACCMIG_BENCH_RAM_H
#define ACCMIG_BENCH_RAM_H

/* The vmstream RAM transfer (vmm/vmstream.h) of SIZE bytes of guest RAM
 * over loopback TCP against a raw TCP copy of the same bytes between the
 * same two memfds, in the same run; prints both throughputs and the ratio
 * (JSON with --json). */
int bench_ram_copy_main(int argc, char **argv);

#endif
