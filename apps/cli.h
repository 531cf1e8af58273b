/* cli.h - the petal command's subcommands and what they share. */
#ifndef PETAL_CLI_H
#define PETAL_CLI_H

/* Each subcommand gets argv with argv[0] = its own name; returns the process exit code. */
int petal_cmd_sim(int argc, char **argv);
int petal_cmd_new(int argc, char **argv);
int petal_cmd_run(int argc, char **argv);
int petal_cmd_ls(int argc, char **argv);
int petal_cmd_log(int argc, char **argv);
int petal_cmd_stop(int argc, char **argv);
int petal_cmd_nodes(int argc, char **argv);
int petal_cmd_plot(int argc, char **argv);

/* Exit codes. */
#define PETAL_EXIT_OK 0
#define PETAL_EXIT_RUN_FAILED 1
#define PETAL_EXIT_USAGE 2

/* Applies --log-level (or PETAL_LOG_LEVEL); 0 or prints an error and returns non-zero. */
int petal_cli_set_log_level(const char *level);

#endif
