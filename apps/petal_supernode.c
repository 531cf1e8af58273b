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
#include "runtime/keys.h"
#include "runtime/log.h"
#include "runtime/signals.h"

#include "daemon_opts.h"

enum { OPT_KEYS = PT_DOPT_END, OPT_SUPERLINK_KEY };

static const char usage_text[] =
    "usage: petal-supernode --superlink HOST:PORT (--keys DIR --superlink-key FILE | --insecure)\n"
    "                       [--node-config \"k=v k2=v2\"] [--max-retries N] [--max-wait-time S]\n"
    "                       [--isolation thread|process] [--trusted-publishers FILE]\n"
    "                       [--cache-dir DIR] [--log-level L] [limits below]\n\n"
    "  --superlink HOST:PORT  the SuperLink's Fleet address (default 127.0.0.1:9092)\n"
    "  --keys DIR             this node's identity: DIR/petal.key from `petal keygen --out DIR`.\n"
    "                         Its public key is the node's identity: the same key gets the same\n"
    "                         node id back. Put DIR/petal.pub in the SuperLink's --allow-nodes\n"
    "  --superlink-key FILE   the SuperLink's public key (its petal.pub), like SSH known_hosts:\n"
    "                         the node talks to no other server; a mismatch stops it (exit 1)\n"
    "                         with the expected and the presented key. Required with --keys\n"
    "  --insecure             plain TCP, neither encrypted nor authenticated: for tests and\n"
    "                         trusted networks only (a warning is printed)\n"
    "  --node-key NAME        with --insecure: a stable identity, the same name gets the same\n"
    "                         node id back (with --keys, the key is the identity)\n"
    "  --node-config          this node's config, e.g. \"partition-id=0 num-partitions=3\"\n"
    "  --max-retries N        reconnect attempts in a row before giving up (default: forever)\n"
    "  --max-wait-time S      seconds of trying to reconnect before giving up (default: forever)\n"
    "  --isolation process    run ClientApps in a child process: a crash becomes an error reply\n"
    "  --trusted-publishers FILE\n"
    "                         run only app bundles signed (petal build --sign) by a key in FILE\n"
    "                         (one public key per line, e.g. publishers' petal.pub lines)\n"
    "  --cache-dir DIR        where app bundles are unpacked (default\n"
    "                         $XDG_CACHE_HOME/petal/bundles)\n"
    "  --log-level L          error, warn, info (default) or debug\n\n";

static void
usage(FILE *out)
{
    fputs(usage_text, out);
    fputs(pt_daemon_limits_help, out);
}

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
        {"trusted-publishers", required_argument, NULL, 'T'},
        {"insecure", no_argument, NULL, 'i'},
        {"log-level", required_argument, NULL, 'l'},
        {"clientapp-child", required_argument, NULL, 'X'},
        {"keys", required_argument, NULL, OPT_KEYS},
        {"superlink-key", required_argument, NULL, OPT_SUPERLINK_KEY},
        PT_DAEMON_LIMIT_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *superlink = "127.0.0.1:9092", *node_config = NULL, *node_key = NULL;
    const char *cache_dir = NULL, *child = NULL, *trusted = NULL;
    const char *keys = NULL, *superlink_key = NULL;
    unsigned long retries = 0;
    double wait = 0;
    int isolation = PT_ISOLATION_THREAD, insecure = 0, c, lv;
    char *end;
    pt_daemon_limits_t limits;
    pt_daemon_limits_default(&limits);
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int lim = pt_daemon_limits_opt("petal-supernode", c, optarg, &limits);
        if (lim < 0) {
            return 2;
        }
        if (lim > 0) {
            continue;
        }
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
        case 'T':
            trusted = optarg;
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
        case OPT_KEYS:
            keys = optarg;
            break;
        case OPT_SUPERLINK_KEY:
            superlink_key = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
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
    if (insecure && (keys != NULL || superlink_key != NULL)) {
        fprintf(stderr, "petal-supernode: --insecure connects over plain TCP: it does not go "
                        "with --keys or --superlink-key\n");
        return 2;
    }
    if (!insecure && (keys == NULL || superlink_key == NULL)) {
        fprintf(stderr,
                "petal-supernode: the Fleet connection is secure by default: pass --keys DIR "
                "(this node's identity, from `petal keygen --out DIR`) and --superlink-key FILE "
                "(the SuperLink's petal.pub)%s, or --insecure for a SuperLink started with "
                "--insecure (tests and trusted networks only)\n",
                keys != NULL            ? " (--superlink-key is missing)"
                : superlink_key != NULL ? " (--keys is missing)"
                                        : "");
        return 2;
    }
    if (keys != NULL && node_key != NULL) {
        fprintf(stderr, "petal-supernode: --node-key is for --insecure: with --keys, the node's "
                        "public key is its identity\n");
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
    pt_keylist_t *publishers = NULL;
    if (trusted != NULL && pt_keylist_load(trusted, &publishers, err, sizeof(err)) != 0) {
        fprintf(stderr, "petal-supernode: --trusted-publishers: %s\n", err);
        petal_recorddict_free(holder);
        return 2;
    }
    pt_keypair_t *identity = NULL;
    uint8_t pin[PT_KEY_PUBLIC_BYTES];
    if (keys != NULL && (pt_keypair_load(keys, &identity, err, sizeof(err)) != 0 ||
                         pt_pubkey_load(superlink_key, pin, err, sizeof(err)) != 0)) {
        fprintf(stderr, "petal-supernode: %s: %s\n", identity ? "--superlink-key" : "--keys", err);
        pt_keypair_free(identity);
        pt_keylist_free(publishers);
        petal_recorddict_free(holder);
        return 2;
    }
    if (pt_daemon_limits_apply("petal-supernode", &limits) != 0) {
        pt_keypair_free(identity);
        pt_keylist_free(publishers);
        petal_recorddict_free(holder);
        return 2;
    }
    pt_log_set_name("supernode");
    if (publishers != NULL) {
        PT_INFO("running only app bundles signed by one of the %zu trusted publishers in %s",
                publishers->n, trusted);
    }
    if (identity == NULL) {
        fprintf(stderr, "petal-supernode: warning: --insecure: Fleet traffic is neither encrypted "
                        "nor authenticated (tests and trusted networks only)\n");
    } else {
        char fpr[PT_KEY_FPR_SIZE], sfpr[PT_KEY_FPR_SIZE];
        pt_key_fingerprint(identity->pk, fpr);
        pt_key_fingerprint(pin, sfpr);
        PT_INFO("secure channel: node identity %s; the SuperLink must present %s (%s)", fpr, sfpr,
                superlink_key);
    }
    pt_runtime_t *rt;
    pt_runtime_opts_t ropts = {0};
    int rc = pt_runtime_alloc(&ropts, &rt);
    if (rc != 0) {
        petal_recorddict_free(holder);
        pt_keylist_free(publishers);
        pt_keypair_free(identity);
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
                              .self_exe = self,
                              .trusted_publishers = publishers,
                              .identity = identity,
                              .superlink_pk = identity != NULL ? pin : NULL,
                              .superlink_pk_source = superlink_key,
                              .handshake_timeout = limits.handshake_timeout,
                              .ciphers = limits.ciphers};
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
    pt_keylist_free(publishers);
    pt_keypair_free(identity);
    return status;
}
