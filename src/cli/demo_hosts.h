/* cli/demo_hosts: `accmig demo` with separate processes (the main job):
 * two device servers (`accmig serve`, one per "host"), a source mini-VMM
 * running the guest and an incoming one per migration (`accmig vm`), the
 * guest live-migrated over TCP on loopback while it works. Used for the
 * default run and for --transport vfio-user; --transport inproc stays in
 * demo.c. */
#ifndef ACCMIG_CLI_DEMO_HOSTS_H
#define ACCMIG_CLI_DEMO_HOSTS_H

#include <stdbool.h>

/* True when the command line asks for the in-process demo (--transport
 * inproc); every other command line is demo_hosts_main's. */
bool demo_hosts_is_inproc(int argc, char **argv);

/* The whole run; returns the exit status: 0 every job verified exactly once
 * and every migration done, 1 a check failed, 2 bad usage or setup failure.
 * Every child is stopped and the private directory removed on every path. */
int demo_hosts_main(int argc, char **argv);

#endif
