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

#include <stdint.h>

#include <petal/petal.h>

/* The run config: `holder` (petal.toml's [app.config], taken), then --seed, then --run-config.
 * NULL after printing why (holder freed). */
petal_recorddict_t *petal_cli_run_config(const char *cmd, petal_recorddict_t *holder, int have_seed,
                                         int64_t seed, const char *overrides);

/* Applies --log-level (or PETAL_LOG_LEVEL); 0 or prints an error and returns non-zero. */
int petal_cli_set_log_level(const char *level);

#endif
