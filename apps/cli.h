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
int petal_cmd_build(int argc, char **argv);
int petal_cmd_keygen(int argc, char **argv);

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

/* 1 when path is a regular file (petal run takes it as a bundle file from petal build). */
int petal_cli_is_bundle_file(const char *path);

struct pt_buf;
/* Reads and checks a bundle file (as pt_bundle_parse; the signature is the nodes' business):
 * 0 with the bytes in *bundle_out and the run config defaults of its petal.toml in
 * *holder_out (both the caller's), or a negative error with one line in err. */
int petal_cli_bundle_load(const char *path, struct pt_buf **bundle_out,
                          petal_recorddict_t **holder_out, char *err, size_t cap);

/* Applies --log-level (or PETAL_LOG_LEVEL); 0 or prints an error and returns non-zero. */
int petal_cli_set_log_level(const char *level);

#endif
