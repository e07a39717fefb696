/* cli: the `accmig` subcommands. Each returns the process exit status:
 * 0 success, 1 the work ran but a check failed, 2 bad usage. */
#ifndef ACCMIG_CLI_H
#define ACCMIG_CLI_H

int cli_demo(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_vm(int argc, char **argv);
int cli_migrate(int argc, char **argv);
int cli_inspect(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_conform(int argc, char **argv);

#endif
