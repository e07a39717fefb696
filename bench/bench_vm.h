/* bench_vm: the whole-VM live migration benchmark behind
 * `accmig bench migrate --ram SIZE` (bench_migrate.c hands --ram runs over).
 * Same conventions as bench.h: argv[0] is the benchmark's name; returns 0
 * done (targets are reported, not enforced), 1 the run failed a check (a
 * migration failed or the guest lost a job), 2 bad usage or setup failure. */
#ifndef ACCMIG_BENCH_VM_H
#define ACCMIG_BENCH_VM_H

/* Two mini-VMMs (vmm/vm.h) on two in-process vfio-user servers migrate a
 * guest of SIZE bytes of RAM (all of it holding data) running the
 * compression workload, back and forth over loopback TCP; each migration is
 * preceded by a raw TCP copy of the same RAM bytes under the same load.
 * Prints total time, downtime (and its split), RAM throughput and the ratio
 * to the raw copy (JSON with --json). */
int bench_vm_migrate_main(int argc, char **argv);

#endif
