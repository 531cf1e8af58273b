/* petal_superlink.c - the petal-superlink daemon: Fleet and Control APIs over TCP. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actors/ctlclient.h"
#include "actors/serverapp/serverapp_process.h"
#include "actors/superlink/superlink.h"
#include "runtime/log.h"
#include "runtime/signals.h"

static const char usage_text[] =
    "usage: petal-superlink --insecure [--fleet-address ADDR:PORT] [--control-address ADDR:PORT]\n"
    "                       [--database FILE] [--isolation thread|process]\n"
    "                       [--heartbeat-interval S]\n"
    "                       [--cache-dir DIR] [--log-level error|warn|info|debug]\n\n"
    "  --fleet-address     where SuperNodes connect (default 0.0.0.0:9092)\n"
    "  --control-address   where `petal run/ls/log/stop/nodes` connect (default 127.0.0.1:9093)\n"
    "  --database FILE     keep nodes, runs, pending messages and logs in SQLite (default: "
    "memory)\n"
    "  --heartbeat-interval S  seconds between node heartbeats; 3 missed = offline (default 30)\n"
    "  --isolation process run each run's ServerApp in a child process (default: a thread)\n"
    "  --insecure          required until the secure channel lands: traffic is plain TCP\n";

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"fleet-address", required_argument, NULL, 'f'},
        {"control-address", required_argument, NULL, 'c'},
        {"database", required_argument, NULL, 'd'},
        {"isolation", required_argument, NULL, 'I'},
        {"heartbeat-interval", required_argument, NULL, 'b'},
        {"cache-dir", required_argument, NULL, 'C'},
        {"insecure", no_argument, NULL, 'i'},
        {"serverapp-child", required_argument, NULL, 'X'},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *fleet = "0.0.0.0:9092", *control = "127.0.0.1:9093", *database = NULL;
    const char *cache_dir = NULL;
    double heartbeat = 30;
    int process_isolation = 0;
    int insecure = 0, c, lv;
    char *end;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fleet = optarg;
            break;
        case 'c':
            control = optarg;
            break;
        case 'd':
            database = optarg;
            break;
        case 'I':
            if (strcmp(optarg, "thread") == 0 || strcmp(optarg, "process") == 0) {
                process_isolation = strcmp(optarg, "process") == 0;
            } else {
                fprintf(stderr, "petal-superlink: --isolation '%s': expected thread or process\n",
                        optarg);
                return 2;
            }
            break;
        case 'X': {
            long fd = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || fd < 0 || fd > 1 << 20) {
                fprintf(stderr, "petal-superlink: --serverapp-child '%s': expected a descriptor\n",
                        optarg);
                return 2;
            }
            pt_log_set_name("serverapp");
            return pt_serverapp_child_main((int)fd);
        }
        case 'b':
            heartbeat = strtod(optarg, &end);
            if (*optarg == '\0' || *end != '\0' || !(heartbeat >= 0.1 && heartbeat <= 86400)) {
                fprintf(stderr,
                        "petal-superlink: --heartbeat-interval '%s': expected seconds "
                        "from 0.1 to 86400\n",
                        optarg);
                return 2;
            }
            break;
        case 'C':
            cache_dir = optarg;
            break;
        case 'i':
            insecure = 1;
            break;
        case 'l':
            if (pt_log_parse_level(optarg, &lv) != 0) {
                fprintf(stderr,
                        "petal-superlink: --log-level '%s': expected error, warn, info "
                        "or debug\n",
                        optarg);
                return 2;
            }
            pt_log_set_level(lv);
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        default:
            fputs(usage_text, stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "petal-superlink: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!insecure) {
        fprintf(stderr, "petal-superlink: the secure channel is not available yet; pass "
                        "--insecure to serve plain TCP\n");
        return 2;
    }
    char fleet_addr[300], control_addr[300], err[512];
    if (pt_ctl_address(fleet, fleet_addr, sizeof(fleet_addr)) != 0 ||
        pt_ctl_address(control, control_addr, sizeof(control_addr)) != 0) {
        fprintf(stderr, "petal-superlink: addresses are ADDR:PORT\n");
        return 2;
    }
    pt_log_set_name("superlink");
    PT_WARN("--insecure: Fleet and Control traffic is neither encrypted nor authenticated");
    pt_linkstate_t *ls = NULL;
    int rc = database ? pt_linkstate_sqlite_open(database, &ls, err, sizeof(err))
                      : pt_linkstate_memory_alloc(&ls);
    if (rc != 0) {
        fprintf(stderr, "petal-superlink: %s\n", database ? err : petal_strerror(rc));
        return 1;
    }
    pt_runtime_t *rt;
    pt_runtime_opts_t ropts = {0};
    rc = pt_runtime_alloc(&ropts, &rt);
    if (rc != 0) {
        ls->ops->free(ls);
        fprintf(stderr, "petal-superlink: %s\n", petal_strerror(rc));
        return 1;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[n > 0 ? n : 0] = '\0';
    pt_superlink_opts_t so = {.serverapp_exe = process_isolation ? self : NULL,
                              .fleet_address = fleet_addr,
                              .control_address = control_addr,
                              .cache_dir = cache_dir,
                              .heartbeat_interval = heartbeat};
    pt_superlink_t *sl;
    rc = pt_superlink_start(rt, &so, ls, &sl);
    if (rc == 0) {
        rc = pt_signals_start(rt);
    }
    if (rc != 0) {
        fprintf(stderr, "petal-superlink: cannot start: %s\n", petal_strerror(rc));
        pt_runtime_shutdown(rt);
        pt_runtime_run(rt);
        pt_runtime_free(rt);
        return 1;
    }
    char bound_fleet[300], bound_control[300];
    pt_superlink_addresses(sl, bound_fleet, sizeof(bound_fleet), bound_control,
                           sizeof(bound_control));
    /* One line tests and operators can rely on (ports are real after binding port 0). */
    printf("petal-superlink: fleet %s control %s%s%s\n", bound_fleet, bound_control,
           database ? " database " : "", database ? database : "");
    fflush(stdout);
    pt_runtime_run(rt);
    pt_runtime_free(rt);
    return 0;
}
