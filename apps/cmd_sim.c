/* cmd_sim.c - `petal sim APP_DIR`: SuperLink + virtual SuperNodes + the run, in one process. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <petal/strategy.h>

#include "actors/history.h"
#include "actors/simulation/simulation.h"
#include "actors/superlink/superlink.h"
#include "runtime/config.h"
#include "runtime/log.h"
#include "runtime/message.h"

#include "cli.h"

typedef struct sim_cli {
    const char *app_dir;
    uint64_t num_nodes;
    const char *run_config;
    int have_seed;
    int64_t seed;
    uint32_t workers;
    const char *history, *history_csv, *save_arrays, *log_level;
} sim_cli_t;

/* What the observer prints: one line per round, a progress bar on a terminal. */
typedef struct printer {
    pt_history_t *history;
    struct timespec start, round_start;
    int64_t rounds;      /* num-server-rounds, for "round k/K" */
    int expect_evaluate; /* the round's line waits for federated evaluation */
    uint32_t round;      /* last round with metrics */
    int tty, bar_shown;
    int result; /* pt_run_result_t once the run finished */
    char reason[512];
} printer_t;

static double
since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static void
usage(FILE *out)
{
    fprintf(
        out,
        "usage: petal sim APP_DIR [--num-supernodes N] [--run-config \"k=v k2=v2\"] [--seed S]\n"
        "                 [--workers W] [--history FILE] [--history-csv FILE]\n"
        "                 [--save-arrays FILE] [--log-level error|warn|info|debug]\n\n"
        "Runs the app in APP_DIR (petal.toml + plugins) on N virtual SuperNodes (default 10).\n");
}

static void
print_round(printer_t *p, uint32_t round)
{
    char line[1024];
    pt_history_format_round(p->history, round, p->rounds, line, sizeof(line));
    if (p->bar_shown) {
        printf("\r\033[K");
        p->bar_shown = 0;
    }
    printf("%s\n", line);
    fflush(stdout);
}

static void
on_metrics(void *ctx, uint64_t run_id, uint32_t round, const char *phase,
           const petal_metricrecord_t *m)
{
    (void)run_id;
    printer_t *p = ctx;
    if (pt_history_add(p->history, round, phase, m) != 0) {
        return;
    }
    double t = since(&p->round_start);
    pt_history_set_round_time(p->history, round, t);
    p->round = round;
    int done = strcmp(phase, p->expect_evaluate ? "evaluate" : "train") == 0;
    if (done) {
        print_round(p, round);
        clock_gettime(CLOCK_MONOTONIC, &p->round_start);
    }
}

static void
on_progress(void *ctx, uint64_t run_id, uint64_t answered, uint64_t total)
{
    (void)run_id;
    printer_t *p = ctx;
    if (!p->tty || total == 0) {
        return;
    }
    int width = 30, fill = (int)(answered * (uint64_t)width / total);
    char bar[64];
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, '.', (size_t)(width - fill));
    bar[width] = '\0';
    printf("\r\033[Kround %u/%lld [%s] %llu/%llu replies", p->round + 1, (long long)p->rounds, bar,
           (unsigned long long)answered, (unsigned long long)total);
    fflush(stdout);
    p->bar_shown = 1;
}

static void
on_final_arrays(void *ctx, uint64_t run_id, const petal_arrayrecord_t *arrays)
{
    (void)run_id;
    printer_t *p = ctx;
    pt_history_set_final_arrays(p->history, arrays);
}

static void
on_done(void *ctx, uint64_t run_id, int result, const char *reason)
{
    (void)run_id;
    printer_t *p = ctx;
    p->result = result;
    snprintf(p->reason, sizeof(p->reason), "%s", reason ? reason : "");
}

static void
print_summary(const printer_t *p)
{
    uint32_t n = pt_history_rounds(p->history);
    if (n == 0) {
        printf("no round completed\n");
        return;
    }
    printf("\nsummary (%u round%s, %.2fs)\n", n, n == 1 ? "" : "s", since(&p->start));
    printf("  %-6s %10s %10s %10s %10s %8s\n", "round", "train-loss", "eval-loss", "eval-acc",
           "failures", "seconds");
    for (uint32_t r = 1; r <= n; r++) {
        const petal_metricrecord_t *t = pt_history_get(p->history, r, "train");
        const petal_metricrecord_t *e = pt_history_get(p->history, r, "evaluate");
        const char *keys[] = {"train-loss", "eval-loss", "eval-acc", "num-failures"};
        const petal_metricrecord_t *src[] = {t, e, e, t};
        printf("  %-6u", r);
        for (int k = 0; k < 4; k++) {
            petal_value_t v;
            double x;
            if (src[k] != NULL && petal_metricrecord_get(src[k], keys[k], &v) == 0 &&
                petal_value_as_f64(&v, &x) == 0) {
                printf(k == 3 ? " %10.0f" : " %10.4f", x);
            } else {
                printf(" %10s", "-");
            }
        }
        printf(" %8.2f\n", pt_history_round_time(p->history, r));
    }
    const petal_metricrecord_t *last = pt_history_get(p->history, n, "evaluate");
    petal_value_t v;
    double acc;
    if (last != NULL && petal_metricrecord_get(last, "eval-acc", &v) == 0 &&
        petal_value_as_f64(&v, &acc) == 0) {
        printf("final test accuracy: %.4f\n", acc);
    }
    char digest[65];
    if (pt_history_arrays_sha256(p->history, digest) == 0 && digest[0]) {
        printf("final arrays sha256: %s\n", digest);
    }
}

static int
parse_args(int argc, char **argv, sim_cli_t *o)
{
    static const struct option opts[] = {
        {"num-supernodes", required_argument, NULL, 'n'},
        {"run-config", required_argument, NULL, 'c'},
        {"seed", required_argument, NULL, 's'},
        {"workers", required_argument, NULL, 'w'},
        {"history", required_argument, NULL, 'H'},
        {"history-csv", required_argument, NULL, 'C'},
        {"save-arrays", required_argument, NULL, 'a'},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->num_nodes = 10;
    int c;
    char *end;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'n': {
            unsigned long long n = strtoull(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || optarg[0] == '-' || n == 0 || n > UINT32_MAX) {
                fprintf(stderr,
                        "petal sim: --num-supernodes '%s': expected an integer from 1 to "
                        "4294967295\n",
                        optarg);
                return -1;
            }
            o->num_nodes = n;
            break;
        }
        case 'c':
            o->run_config = optarg;
            break;
        case 's': {
            long long s = strtoll(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0') {
                fprintf(stderr, "petal sim: --seed '%s': expected an integer\n", optarg);
                return -1;
            }
            o->seed = s;
            o->have_seed = 1;
            break;
        }
        case 'w': {
            unsigned long w = strtoul(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || optarg[0] == '-' || w == 0 || w > 1024) {
                fprintf(stderr, "petal sim: --workers '%s': expected an integer from 1 to 1024\n",
                        optarg);
                return -1;
            }
            o->workers = (uint32_t)w;
            break;
        }
        case 'H':
            o->history = optarg;
            break;
        case 'C':
            o->history_csv = optarg;
            break;
        case 'a':
            o->save_arrays = optarg;
            break;
        case 'l':
            o->log_level = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(PETAL_EXIT_OK);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr,
                optind >= argc ? "petal sim: missing APP_DIR\n"
                               : "petal sim: unexpected argument '%s'\n",
                argv[optind + (optind < argc ? 1 : 0)]);
        usage(stderr);
        return -1;
    }
    o->app_dir = argv[optind];
    return 0;
}

int
petal_cmd_sim(int argc, char **argv)
{
    sim_cli_t o;
    if (parse_args(argc, argv, &o) != 0) {
        return PETAL_EXIT_USAGE;
    }
    if (petal_cli_set_log_level(o.log_level) != 0) {
        return PETAL_EXIT_USAGE;
    }
    struct stat st;
    if (stat(o.app_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr,
                "petal sim: %s is not a directory (APP_DIR holds petal.toml and the "
                "plugin .so files)\n",
                o.app_dir);
        return PETAL_EXIT_USAGE;
    }
    char err[512];
    char *app_dir = realpath(o.app_dir, NULL);
    pt_manifest_t *manifest = NULL;
    if (app_dir == NULL || pt_manifest_load(app_dir, &manifest, err, sizeof(err)) != 0) {
        fprintf(stderr, "petal sim: %s\n", app_dir ? err : "cannot resolve APP_DIR");
        free(app_dir);
        return PETAL_EXIT_USAGE;
    }
    if (access(manifest->client_path, R_OK) != 0) {
        fprintf(stderr, "petal sim: the client plugin %s named in %s/petal.toml does not exist\n",
                manifest->client_path, app_dir);
        pt_manifest_free(manifest);
        free(app_dir);
        return PETAL_EXIT_USAGE;
    }
    petal_recorddict_t *config = petal_cli_run_config(
        "sim", pt_recorddict_clone(manifest->config_holder), o.have_seed, o.seed, o.run_config);
    pt_manifest_free(manifest);
    if (config == NULL) {
        free(app_dir);
        return PETAL_EXIT_USAGE;
    }

    printer_t p;
    memset(&p, 0, sizeof(p));
    p.history = pt_history_alloc();
    p.tty = isatty(STDOUT_FILENO);
    const petal_configrecord_t *cfg = petal_recorddict_config(config, PT_CONFIG_HOLDER_NAME);
    petal_value_t v;
    double fe = 1.0;
    p.rounds = 3;
    if (petal_configrecord_get(cfg, "num-server-rounds", &v) == 0) {
        petal_value_as_i64(&v, &p.rounds);
    }
    if (petal_configrecord_get(cfg, "fraction-evaluate", &v) == 0) {
        petal_value_as_f64(&v, &fe);
    }
    p.expect_evaluate = fe > 0;
    /* The default server would wait round-timeout for nodes that can never come: say so now. */
    petal_strategy_options_t defaults;
    petal_strategy_options_init(&defaults);
    const struct {
        const char *key;
        int64_t dflt;
    } minimums[] = {{"min-available-nodes", defaults.min_available_nodes},
                    {"min-train-nodes", defaults.min_train_nodes},
                    {"min-evaluate-nodes", fe > 0 ? defaults.min_evaluate_nodes : 0}};
    for (size_t i = 0; i < sizeof(minimums) / sizeof(minimums[0]); i++) {
        int64_t need = minimums[i].dflt;
        if (petal_configrecord_get(cfg, minimums[i].key, &v) == 0) {
            petal_value_as_i64(&v, &need);
        }
        if (need > 0 && (uint64_t)need > o.num_nodes) {
            fprintf(stderr,
                    "petal sim: --num-supernodes %llu is fewer than %s = %lld, so the run could "
                    "never start; lower it, e.g. --run-config \"%s=%llu\"\n",
                    (unsigned long long)o.num_nodes, minimums[i].key, (long long)need,
                    minimums[i].key, (unsigned long long)o.num_nodes);
            petal_recorddict_free(config);
            pt_history_free(p.history);
            free(app_dir);
            return PETAL_EXIT_USAGE;
        }
    }
    pt_history_set_config(p.history, cfg);
    pt_run_observer_t observer = {.ctx = &p,
                                  .on_metrics = on_metrics,
                                  .on_progress = on_progress,
                                  .on_final_arrays = on_final_arrays,
                                  .on_done = on_done};

    int exit_code = PETAL_EXIT_RUN_FAILED;
    pt_runtime_t *rt = NULL;
    pt_linkstate_t *ls = NULL;
    pt_superlink_t *sl = NULL;
    pt_simulation_t *sim = NULL;
    pt_runtime_opts_t ropts = {.workers = o.workers};
    int rc = pt_runtime_alloc(&ropts, &rt);
    if (rc == 0) {
        rc = pt_linkstate_memory_alloc(&ls);
    }
    pt_superlink_opts_t slo = {.fleet_address = "inproc://fleet", .exit_when_idle = 1};
    if (rc == 0) {
        rc = pt_superlink_start(rt, &slo, ls, &sl);
    }
    pt_simulation_opts_t so = {.fleet_address = "inproc://fleet", .num_nodes = o.num_nodes};
    if (rc == 0) {
        rc = pt_simulation_start(rt, &so, &sim);
    }
    pt_sl_start_run_t *start = rc == 0 ? pt_sl_msg_alloc(PT_SL_START_RUN, sizeof(*start)) : NULL;
    if (start == NULL) {
        fprintf(stderr, "petal sim: cannot start the simulation: %s\n",
                petal_strerror(rc ? rc : PETAL_ENOMEM));
        petal_recorddict_free(config);
        if (rt != NULL) {
            pt_runtime_shutdown(rt);
            pt_runtime_run(rt);
            pt_runtime_free(rt);
        }
        pt_simulation_release(sim);
        pt_history_free(p.history);
        free(app_dir);
        return PETAL_EXIT_RUN_FAILED;
    }
    start->app_dir = app_dir;
    start->config_holder = config;
    start->observer = &observer;
    clock_gettime(CLOCK_MONOTONIC, &p.start);
    p.round_start = p.start;
    pt_actor_send(pt_superlink_actor(sl), &start->hdr);
    printf("petal sim: %s on %llu virtual SuperNodes, %u workers\n", o.app_dir,
           (unsigned long long)o.num_nodes, pt_runtime_workers(rt));
    fflush(stdout);

    pt_runtime_run(rt);
    pt_simulation_stats_t stats;
    pt_simulation_stats(sim, &stats);
    pt_simulation_release(sim);
    if (pt_runtime_free(rt) != 0) {
        PT_WARN("the event loop did not close cleanly");
    }

    if (p.bar_shown) {
        printf("\r\033[K");
    }
    print_summary(&p);
    exit_code = p.result == PT_RUN_COMPLETED ? PETAL_EXIT_OK : PETAL_EXIT_RUN_FAILED;
    printf("%llu ClientApp calls, %llu failed, %llu virtual nodes used\n",
           (unsigned long long)stats.executed, (unsigned long long)stats.failed,
           (unsigned long long)stats.contexts);
    if (exit_code != PETAL_EXIT_OK) {
        fprintf(stderr, "petal sim: the run failed: %s\n",
                p.reason[0] ? p.reason : "it did not complete (see the log above)");
    }
    if (o.history && pt_history_write_json(p.history, o.history, err, sizeof(err)) != 0) {
        fprintf(stderr, "petal sim: %s\n", err);
        exit_code = PETAL_EXIT_RUN_FAILED;
    }
    if (o.history_csv && pt_history_write_csv(p.history, o.history_csv, err, sizeof(err)) != 0) {
        fprintf(stderr, "petal sim: %s\n", err);
        exit_code = PETAL_EXIT_RUN_FAILED;
    }
    if (o.save_arrays && pt_history_save_arrays(p.history, o.save_arrays, err, sizeof(err)) != 0) {
        fprintf(stderr, "petal sim: %s\n", err);
        exit_code = PETAL_EXIT_RUN_FAILED;
    }
    pt_history_free(p.history);
    return exit_code;
}
