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
#include "runtime/keys.h"
#include "runtime/log.h"
#include "runtime/signals.h"

#include "daemon_opts.h"

#define DEFAULT_MAX_CONNECTIONS 1000
#define DEFAULT_MAX_CONTROL_CONNECTIONS 64
#define DEFAULT_MAX_PENDING_PER_NODE 1000

static const char usage_text[] =
    "usage: petal-superlink (--keys DIR --operators FILE [--allow-nodes FILE] | --insecure)\n"
    "                       [--fleet-address ADDR:PORT] [--control-address ADDR:PORT]\n"
    "                       [--database FILE] [--isolation thread|process]\n"
    "                       [--heartbeat-interval S] [--cache-dir DIR]\n"
    "                       [--log-level error|warn|info|debug] [limits below]\n\n"
    "Security (the secure channel is the default):\n"
    "  --keys DIR             this SuperLink's identity: DIR/petal.key from\n"
    "                         `petal keygen --out DIR`; give DIR/petal.pub to every SuperNode\n"
    "                         and operator (their --superlink-key)\n"
    "  --allow-nodes FILE     public keys of the SuperNodes allowed to connect, one per line\n"
    "                         (their petal.pub lines); any other node is refused at the\n"
    "                         handshake, with the reason on both sides. Without it, any\n"
    "                         SuperNode key is accepted\n"
    "  --operators FILE       public keys allowed on the Control API\n"
    "                         (`petal run/ls/log/stop/nodes --keys DIR`); any other CLI is\n"
    "                         refused. Required with --keys\n"
    "  --insecure             plain TCP, neither encrypted nor authenticated: for tests and\n"
    "                         trusted networks only (a warning is printed). Without --keys,\n"
    "                         the SuperLink does not start unless this is given, on loopback\n"
    "                         addresses too\n\n"
    "Addresses and state:\n"
    "  --fleet-address        where SuperNodes connect (default 0.0.0.0:9092)\n"
    "  --control-address      where `petal run/ls/log/stop/nodes` connect\n"
    "                         (default 127.0.0.1:9093)\n"
    "  --database FILE        keep nodes, runs, pending messages and logs in SQLite (default:\n"
    "                         memory)\n"
    "  --cache-dir DIR        where submitted app bundles are unpacked (default\n"
    "                         $XDG_CACHE_HOME/petal/superlink-bundles)\n"
    "  --heartbeat-interval S seconds between node heartbeats; 3 missed = offline (default 30)\n"
    "  --isolation process    run each run's ServerApp in a child process (default: a thread)\n"
    "  --log-level L          error, warn, info (default) or debug\n\n"
    "Connections and queues:\n"
    "  --max-connections N    SuperNode connections at once; one more is told why, closed and\n"
    "                         logged (default 1000); secure handshakes in progress are\n"
    "                         bounded by N too\n"
    "  --max-control-connections N\n"
    "                         CLI connections at once, likewise (default 64)\n"
    "  --max-pending-per-node N\n"
    "                         instructions waiting for one node's reply; one more is not queued\n"
    "                         and fails with MESSAGE_UNAVAILABLE and the reason (default 1000)\n\n";

enum {
    OPT_MAX_CONNECTIONS = PT_DOPT_END,
    OPT_MAX_CONTROL_CONNECTIONS,
    OPT_MAX_PENDING,
    OPT_KEYS,
    OPT_ALLOW_NODES,
    OPT_OPERATORS,
};

static void
usage(FILE *out)
{
    fputs(usage_text, out);
    fputs(pt_daemon_limits_help, out);
}

/* Whether "HOST:PORT" (or "tcp://HOST:PORT") names a loopback host. */
static int
is_loopback(const char *hostport)
{
    const char *h = strstr(hostport, "://");
    h = h != NULL ? h + 3 : hostport;
    return strncmp(h, "127.", 4) == 0 || strncmp(h, "localhost:", 10) == 0 ||
           strncmp(h, "[::1]:", 6) == 0;
}

typedef struct security {
    pt_keypair_t *identity;
    pt_keylist_t *allow_nodes, *operators;
} security_t;

static void
security_free(security_t *s)
{
    pt_keypair_free(s->identity);
    pt_keylist_free(s->allow_nodes);
    pt_keylist_free(s->operators);
    memset(s, 0, sizeof(*s));
}

/* Loads the keys; 0, or 2 (a usage error) after printing why. */
static int
security_load(const char *keys, const char *allow_nodes, const char *operators, security_t *s)
{
    char err[600];
    if (pt_keypair_load(keys, &s->identity, err, sizeof(err)) != 0) {
        fprintf(stderr, "petal-superlink: --keys: %s\n", err);
        return 2;
    }
    if (allow_nodes != NULL &&
        pt_keylist_load(allow_nodes, &s->allow_nodes, err, sizeof(err)) != 0) {
        fprintf(stderr, "petal-superlink: --allow-nodes: %s\n", err);
        security_free(s);
        return 2;
    }
    if (pt_keylist_load(operators, &s->operators, err, sizeof(err)) != 0) {
        fprintf(stderr, "petal-superlink: --operators: %s\n", err);
        security_free(s);
        return 2;
    }
    return 0;
}

static int
count_arg(const char *flag, const char *arg, uint64_t *out)
{
    if (pt_daemon_parse_count(arg, UINT32_MAX, out) != 0) {
        fprintf(stderr, "petal-superlink: %s '%s': expected a count from 1 to 4294967295\n", flag,
                arg);
        return -1;
    }
    return 0;
}

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
        {"keys", required_argument, NULL, OPT_KEYS},
        {"allow-nodes", required_argument, NULL, OPT_ALLOW_NODES},
        {"operators", required_argument, NULL, OPT_OPERATORS},
        {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
        {"max-control-connections", required_argument, NULL, OPT_MAX_CONTROL_CONNECTIONS},
        {"max-pending-per-node", required_argument, NULL, OPT_MAX_PENDING},
        PT_DAEMON_LIMIT_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *fleet = "0.0.0.0:9092", *control = "127.0.0.1:9093", *database = NULL;
    const char *cache_dir = NULL, *keys = NULL, *allow_nodes = NULL, *operators = NULL;
    double heartbeat = 30;
    int process_isolation = 0;
    int insecure = 0, c, lv;
    uint64_t max_conns = DEFAULT_MAX_CONNECTIONS, max_control = DEFAULT_MAX_CONTROL_CONNECTIONS;
    uint64_t max_pending = DEFAULT_MAX_PENDING_PER_NODE;
    pt_daemon_limits_t limits;
    pt_daemon_limits_default(&limits);
    char *end;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int lim = pt_daemon_limits_opt("petal-superlink", c, optarg, &limits);
        if (lim < 0) {
            return 2;
        }
        if (lim > 0) {
            continue;
        }
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
        case OPT_KEYS:
            keys = optarg;
            break;
        case OPT_ALLOW_NODES:
            allow_nodes = optarg;
            break;
        case OPT_OPERATORS:
            operators = optarg;
            break;
        case OPT_MAX_CONNECTIONS:
            if (count_arg("--max-connections", optarg, &max_conns) != 0) {
                return 2;
            }
            break;
        case OPT_MAX_CONTROL_CONNECTIONS:
            if (count_arg("--max-control-connections", optarg, &max_control) != 0) {
                return 2;
            }
            break;
        case OPT_MAX_PENDING:
            if (count_arg("--max-pending-per-node", optarg, &max_pending) != 0) {
                return 2;
            }
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
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "petal-superlink: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    char fleet_addr[300], control_addr[300], err[512];
    if (pt_ctl_address(fleet, fleet_addr, sizeof(fleet_addr)) != 0 ||
        pt_ctl_address(control, control_addr, sizeof(control_addr)) != 0) {
        fprintf(stderr, "petal-superlink: addresses are ADDR:PORT\n");
        return 2;
    }
    if (insecure && (keys != NULL || allow_nodes != NULL || operators != NULL)) {
        fprintf(stderr, "petal-superlink: --insecure serves plain TCP: it does not go with --keys, "
                        "--allow-nodes or --operators\n");
        return 2;
    }
    if (!insecure && keys == NULL) {
        if (!is_loopback(fleet_addr) || !is_loopback(control_addr)) {
            fprintf(stderr,
                    "petal-superlink: refusing to serve plain TCP on the non-loopback address %s "
                    "without an identity: anyone who reaches it could join the federation or "
                    "read its traffic. Make a key pair with `petal keygen --out DIR` and pass "
                    "--keys DIR --operators FILE (and --allow-nodes FILE), or pass --insecure "
                    "(tests and trusted networks only)\n",
                    is_loopback(fleet_addr) ? control : fleet);
        } else {
            fprintf(stderr, "petal-superlink: no identity: pass --keys DIR (from `petal keygen "
                            "--out DIR`) and --operators FILE for the secure channel, or "
                            "--insecure to serve plain TCP (tests and trusted networks only)\n");
        }
        return 2;
    }
    if (keys != NULL && operators == NULL) {
        fprintf(stderr,
                "petal-superlink: --operators FILE is required with --keys: the public "
                "keys (petal.pub lines) of the operators allowed to submit and stop runs\n");
        return 2;
    }
    if (pt_daemon_limits_apply("petal-superlink", &limits) != 0) {
        return 2;
    }
    pt_log_set_name("superlink");
    security_t sec = {0};
    if (keys != NULL) {
        int src = security_load(keys, allow_nodes, operators, &sec);
        if (src != 0) {
            return src;
        }
    }
    char fpr[PT_KEY_FPR_SIZE] = "";
    if (insecure) {
        fprintf(stderr,
                "petal-superlink: warning: --insecure: Fleet and Control traffic is neither "
                "encrypted nor authenticated (tests and trusted networks only)\n");
    } else {
        pt_key_fingerprint(sec.identity->pk, fpr);
        PT_INFO("secure channel: identity %s; %zu operator key(s) from %s; %s", fpr,
                sec.operators->n, operators,
                sec.allow_nodes != NULL ? "SuperNodes from --allow-nodes only"
                                        : "any SuperNode key is accepted (no --allow-nodes)");
        if (sec.allow_nodes != NULL) {
            PT_INFO("%zu SuperNode key(s) allowed from %s", sec.allow_nodes->n, allow_nodes);
        }
    }
    pt_linkstate_t *ls = NULL;
    int rc = database ? pt_linkstate_sqlite_open(database, &ls, err, sizeof(err))
                      : pt_linkstate_memory_alloc(&ls);
    if (rc != 0) {
        fprintf(stderr, "petal-superlink: %s\n", database ? err : petal_strerror(rc));
        security_free(&sec);
        return 1;
    }
    pt_runtime_t *rt;
    pt_runtime_opts_t ropts = {0};
    rc = pt_runtime_alloc(&ropts, &rt);
    if (rc != 0) {
        ls->ops->free(ls);
        security_free(&sec);
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
                              .heartbeat_interval = heartbeat,
                              .max_pending_per_node = max_pending,
                              .max_connections = max_conns,
                              .max_control_connections = max_control,
                              .identity = sec.identity,
                              .allow_nodes = sec.allow_nodes,
                              .operators = sec.operators,
                              .handshake_timeout = limits.handshake_timeout,
                              .ciphers = limits.ciphers};
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
        security_free(&sec);
        return 1;
    }
    char bound_fleet[300], bound_control[300];
    pt_superlink_addresses(sl, bound_fleet, sizeof(bound_fleet), bound_control,
                           sizeof(bound_control));
    /* One line tests and operators can rely on (ports are real after binding port 0). */
    printf("petal-superlink: fleet %s control %s%s%s%s%s\n", bound_fleet, bound_control,
           database ? " database " : "", database ? database : "",
           insecure ? " insecure" : " secure key ", fpr);
    fflush(stdout);
    pt_runtime_run(rt);
    pt_runtime_free(rt);
    security_free(&sec);
    return 0;
}
