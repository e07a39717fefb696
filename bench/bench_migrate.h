/* bench_migrate: `accmig bench migrate` (registered by src/cli/bench.c).
 * Same conventions as bench.h: argv[0] is the benchmark's name; returns 0
 * done, 1 the run failed a check, 2 bad usage or setup failure. */
#ifndef ACCMIG_BENCH_MIGRATE_H
#define ACCMIG_BENCH_MIGRATE_H

/* Device-state bytes and device downtime (P2P quiesce on the source to
 * RUNNING on the destination) over many migrations of a VF whose queues are
 * all busy with large jobs, against idle migrations of the same VF in the
 * same run; v4 and v3 control paths; one JSON line per configuration.
 * With --ram SIZE: the whole-VM migration benchmark (bench_vm.h). */
int bench_migrate_main(int argc, char **argv);

#endif
