/* petal.c - the petal command: dispatches to subcommands (sim, new, version). */
#include <stdio.h>
#include <string.h>

#include "runtime/config.h"
#include "runtime/context.h"
#include "runtime/log.h"

#include "cli.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"sim", petal_cmd_sim, "run an app in local simulation with virtual SuperNodes"},
    {"new", petal_cmd_new, "write a new app project to start from"},
    {"build", petal_cmd_build, "pack an app directory into a bundle file, optionally signed"},
    {"run", petal_cmd_run, "submit an app to a SuperLink (deployment) and follow it"},
    {"ls", petal_cmd_ls, "list a SuperLink's runs"},
    {"log", petal_cmd_log, "print (or follow) a run's log"},
    {"stop", petal_cmd_stop, "stop a running run"},
    {"nodes", petal_cmd_nodes, "list the SuperNodes a SuperLink knows"},
    {"plot", petal_cmd_plot, "draw per-round metrics of --history files (SVG or PNG)"},
    {"keygen", petal_cmd_keygen, "create a key pair (petal.key, petal.pub) for secure channels"},
};

static void
usage(FILE *out)
{
    fprintf(out, "usage: petal <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(out, "  %-8s %s\n\n'petal <command> --help' describes a command's options.\n",
            "version", "print the version");
}

int
petal_cli_set_log_level(const char *level)
{
    if (level == NULL) {
        return 0;
    }
    int lv;
    if (pt_log_parse_level(level, &lv) != 0) {
        fprintf(stderr, "petal: --log-level '%s': expected error, warn, info or debug\n", level);
        return -1;
    }
    pt_log_set_level(lv);
    return 0;
}

petal_recorddict_t *
petal_cli_run_config(const char *cmd, petal_recorddict_t *holder, int have_seed, int64_t seed,
                     const char *overrides)
{
    char err[512];
    petal_configrecord_t *cfg =
        holder ? petal_recorddict_add_config(holder, PT_CONFIG_HOLDER_NAME) : NULL;
    if (cfg == NULL) {
        fprintf(stderr, "petal %s: out of memory\n", cmd);
        petal_recorddict_free(holder);
        return NULL;
    }
    if (have_seed) {
        petal_value_t v = petal_value_i64(seed);
        petal_configrecord_set(cfg, "seed", &v);
    }
    if (overrides != NULL &&
        pt_config_parse_overrides(overrides, "--run-config", cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "petal %s: %s\n", cmd, err);
        petal_recorddict_free(holder);
        return NULL;
    }
    return holder;
}

int
main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? PETAL_EXIT_USAGE : PETAL_EXIT_OK;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("petal %s (plugin ABI v%d)\n", PETAL_VERSION, PETAL_ABI_VERSION);
        return PETAL_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            return commands[i].fn(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "petal: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return PETAL_EXIT_USAGE;
}
