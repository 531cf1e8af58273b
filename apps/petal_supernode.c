/* petal_supernode.c - the petal-supernode daemon: runs ClientApps for a SuperLink. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actors/ctlclient.h"
#include "actors/supernode/executor.h"
#include "actors/supernode/supernode.h"
#include "runtime/config.h"
#include "runtime/log.h"
#include "runtime/signals.h"

static const char usage_text[] =
    "usage: petal-supernode --superlink HOST:PORT --insecure [--node-config \"k=v k2=v2\"]\n"
    "                       [--node-key NAME] [--max-retries N] [--max-wait-time S]\n"
    "                       [--isolation thread|process] [--cache-dir DIR] [--log-level L]\n\n"
    "  --superlink HOST:PORT  the SuperLink's Fleet address (default 127.0.0.1:9092)\n"
    "  --node-config          this node's config, e.g. \"partition-id=0 num-partitions=3\"\n"
    "  --node-key NAME        a stable identity: the same name gets the same node id back\n"
    "  --max-retries N        reconnect attempts in a row before giving up (default: forever)\n"
    "  --max-wait-time S      seconds of trying to reconnect before giving up (default: forever)\n"
    "  --isolation process    run ClientApps in a child process: a crash becomes an error reply\n"
    "  --insecure             required until the secure channel lands: traffic is plain TCP\n";

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"superlink", required_argument, NULL, 's'},
        {"node-config", required_argument, NULL, 'n'},
        {"node-key", required_argument, NULL, 'k'},
        {"max-retries", required_argument, NULL, 'r'},
        {"max-wait-time", required_argument, NULL, 'w'},
        {"isolation", required_argument, NULL, 'I'},
        {"cache-dir", required_argument, NULL, 'C'},
        {"insecure", no_argument, NULL, 'i'},
        {"log-level", required_argument, NULL, 'l'},
        {"clientapp-child", required_argument, NULL, 'X'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *superlink = "127.0.0.1:9092", *node_config = NULL, *node_key = NULL;
    const char *cache_dir = NULL, *child = NULL;
    unsigned long retries = 0;
    double wait = 0;
    int isolation = PT_ISOLATION_THREAD, insecure = 0, c, lv;
    char *end;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            superlink = optarg;
            break;
        case 'n':
            node_config = optarg;
            break;
        case 'k':
            node_key = optarg;
            break;
        case 'r':
            retries = strtoul(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || optarg[0] == '-' || retries > 1000000) {
                fprintf(stderr, "petal-supernode: --max-retries '%s': expected an integer\n",
                        optarg);
                return 2;
            }
            break;
        case 'w':
            wait = strtod(optarg, &end);
            if (*optarg == '\0' || *end != '\0' || !(wait >= 0)) {
                fprintf(stderr, "petal-supernode: --max-wait-time '%s': expected seconds\n",
                        optarg);
                return 2;
            }
            break;
        case 'I':
            if (strcmp(optarg, "thread") == 0) {
                isolation = PT_ISOLATION_THREAD;
            } else if (strcmp(optarg, "process") == 0) {
                isolation = PT_ISOLATION_PROCESS;
            } else {
                fprintf(stderr, "petal-supernode: --isolation '%s': expected thread or process\n",
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
                        "petal-supernode: --log-level '%s': expected error, warn, info "
                        "or debug\n",
                        optarg);
                return 2;
            }
            pt_log_set_level(lv);
            break;
        case 'X':
            child = optarg;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        default:
            fputs(usage_text, stderr);
            return 2;
        }
    }
    if (child != NULL) {
        pt_log_set_name("clientapp");
        return pt_executor_child_main(child);
    }
    if (optind != argc) {
        fprintf(stderr, "petal-supernode: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!insecure) {
        fprintf(stderr, "petal-supernode: the secure channel is not available yet; pass "
                        "--insecure to connect over plain TCP\n");
        return 2;
    }
    char address[300], err[512], self[PATH_MAX];
    if (pt_ctl_address(superlink, address, sizeof(address)) != 0) {
        fprintf(stderr, "petal-supernode: --superlink '%s': expected HOST:PORT\n", superlink);
        return 2;
    }
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[n > 0 ? n : 0] = '\0';
    petal_recorddict_t *holder = petal_recorddict_alloc();
    petal_configrecord_t *nc = holder ? petal_recorddict_add_config(holder, "config") : NULL;
    if (nc == NULL ||
        (node_config != NULL &&
         pt_config_parse_overrides(node_config, "--node-config", nc, err, sizeof(err)) != 0)) {
        fprintf(stderr, "petal-supernode: %s\n", nc ? err : "out of memory");
        petal_recorddict_free(holder);
        return 2;
    }
    pt_log_set_name("supernode");
    PT_WARN("--insecure: Fleet traffic is neither encrypted nor authenticated");
    pt_runtime_t *rt;
    pt_runtime_opts_t ropts = {0};
    int rc = pt_runtime_alloc(&ropts, &rt);
    if (rc != 0) {
        petal_recorddict_free(holder);
        fprintf(stderr, "petal-supernode: %s\n", petal_strerror(rc));
        return 1;
    }
    pt_supernode_opts_t so = {.superlink_address = address,
                              .node_key = node_key,
                              .node_config = nc,
                              .max_retries = (uint32_t)retries,
                              .max_wait_time = wait,
                              .cache_dir = cache_dir,
                              .isolation = isolation,
                              .self_exe = self};
    pt_supernode_t *sn = NULL;
    rc = pt_supernode_start(rt, &so, &sn);
    petal_recorddict_free(holder);
    if (rc == 0) {
        rc = pt_signals_start(rt);
    }
    if (rc != 0) {
        fprintf(stderr, "petal-supernode: cannot start: %s\n", petal_strerror(rc));
        pt_runtime_shutdown(rt);
    }
    pt_runtime_run(rt);
    int status = rc != 0 ? 1 : pt_supernode_exit_status(sn);
    pt_supernode_release(sn);
    pt_runtime_free(rt);
    return status;
}
