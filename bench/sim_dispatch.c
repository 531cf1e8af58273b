/* sim_dispatch.c - ClientApp executions per second through `petal sim` vs direct handler calls. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <petal/petal.h>

#include "actors/clientapp/clientapp.h"
#include "runtime/context.h"
#include "runtime/plugin.h"

#include "sim_child.h"

/*
 * Usage: bench_sim_dispatch [NODES [ROUNDS]]   (defaults 10000 5)
 *
 * The bench-noop ClientApp with a 10-float model, so the runtime's own cost is all there is:
 *   petal sim     NODES virtual SuperNodes, fraction-train 1.0, evaluate off, ROUNDS rounds, as a
 *                 child process: every execution goes instruction -> SuperLink -> simulation
 *                 actor -> worker pool -> ClientApp -> reply -> SuperLink -> ServerApp -> FedAvg.
 *                 executions = ROUNDS x NODES, time = the rounds' seconds from petal's history
 *                 (round 1 also loads the app and fetches the initial arrays).
 *   handler       a plain loop on this thread calling the plugin's train() directly with the
 *                 same message: reply RecordDict alloc + train + free.
 *   clientapp     the same through pt_clientapp_handle() (dispatch by type + reply Message),
 *                 what one worker does per execution, without the runtime around it.
 * Target: >= 20,000 executions/s on 2 cores.
 */

#define MODEL_SIZE 10
#define TARGET_RATE 20000.0
#define BASELINE_CALLS 200000

static petal_recorddict_t *
run_config_holder(void)
{
    petal_recorddict_t *h = petal_recorddict_alloc();
    petal_configrecord_t *c = h ? petal_recorddict_add_config(h, PT_CONFIG_HOLDER_NAME) : NULL;
    petal_value_t v = petal_value_i64(MODEL_SIZE);
    if (c == NULL || petal_configrecord_set(c, "model-size", &v) != 0) {
        petal_recorddict_free(h);
        return NULL;
    }
    return h;
}

/* A train message as the default FedAvg sends it: "arrays" + "config" (run config + round). */
static petal_message_t *
train_message(const petal_configrecord_t *run_config)
{
    petal_recorddict_t *content = petal_recorddict_alloc();
    petal_arrayrecord_t *ar = content ? petal_recorddict_add_arrays(content, "arrays") : NULL;
    petal_configrecord_t *cfg = content ? petal_recorddict_add_config(content, "config") : NULL;
    uint64_t shape[1] = {MODEL_SIZE};
    if (ar == NULL || cfg == NULL ||
        petal_arrayrecord_add(ar, "w", PETAL_DTYPE_FLOAT32, 1, shape) == NULL) {
        petal_recorddict_free(content);
        return NULL;
    }
    petal_value_t v = petal_value_i64(1);
    petal_configrecord_set(cfg, "server-round", &v);
    const char *name;
    for (uint64_t i = 0; i < petal_configrecord_count(run_config); i++) {
        if (petal_configrecord_at(run_config, i, &name, &v) == 0) {
            petal_configrecord_set(cfg, name, &v);
        }
    }
    petal_message_t *m = petal_message_alloc(content, "train", 1, "1", 3600.0);
    if (m == NULL) {
        petal_recorddict_free(content);
    }
    return m;
}

typedef struct baseline {
    double handler_rate, clientapp_rate;
} baseline_t;

static int
measure_baseline(const char *build, baseline_t *out)
{
    char app_dir[4096], so[4200], err[512];
    if ((size_t)snprintf(app_dir, sizeof(app_dir), "%s/plugins/bench-noop", build) >=
            sizeof(app_dir) ||
        (size_t)snprintf(so, sizeof(so), "%s/client.so", app_dir) >= sizeof(so)) {
        fprintf(stderr, "the build directory's path is too long\n");
        return -1;
    }
    int rc = -1;
    pt_clientapp_t *ca = NULL;
    pt_plugin_t *plugin = NULL;
    void *app = NULL;
    petal_context_t *ctx = NULL;
    petal_message_t *msg = NULL;
    const petal_client_ops_t *ops = NULL;
    pt_run_config_t *rcfg = NULL;
    petal_recorddict_t *holder = run_config_holder();
    if (holder == NULL || (rcfg = pt_run_config_alloc(holder)) == NULL) {
        petal_recorddict_free(holder);
        fprintf(stderr, "out of memory\n");
        return -1;
    }
    const petal_configrecord_t *cfg = pt_run_config_get(rcfg);
    if (pt_clientapp_load(app_dir, cfg, &ca, err, sizeof(err)) != 0 ||
        pt_plugin_load(so, PETAL_PLUGIN_CLIENT, &plugin, err, sizeof(err)) != 0) {
        fprintf(stderr, "cannot load the bench-noop app: %s\n", err);
        goto out;
    }
    ops = pt_plugin_info(plugin)->client;
    if (ops->init(cfg, &app) != 0) {
        fprintf(stderr, "bench-noop init failed\n");
        goto out;
    }
    ctx = pt_context_alloc(1, 1, rcfg, NULL);
    msg = train_message(cfg);
    if (ctx == NULL || msg == NULL) {
        fprintf(stderr, "out of memory\n");
        goto out;
    }
    /* warm up the allocator and caches, then time */
    for (int i = 0; i < BASELINE_CALLS / 10; i++) {
        petal_message_free(pt_clientapp_handle(ca, ctx, msg));
    }
    uint64_t ok = 0;
    /* handler: what the plugin itself costs */
    double t0 = pt_bench_now();
    for (int i = 0; i < BASELINE_CALLS; i++) {
        petal_recorddict_t *reply = petal_recorddict_alloc();
        if (reply != NULL && ops->train(app, ctx, msg, reply) == 0) {
            ok++;
        }
        petal_recorddict_free(reply);
    }
    out->handler_rate = BASELINE_CALLS / (pt_bench_now() - t0);
    /* clientapp: one worker's whole job */
    t0 = pt_bench_now();
    for (int i = 0; i < BASELINE_CALLS; i++) {
        petal_message_t *reply = pt_clientapp_handle(ca, ctx, msg);
        if (reply != NULL && petal_message_error_code(reply) == 0) {
            ok++;
        }
        petal_message_free(reply);
    }
    out->clientapp_rate = BASELINE_CALLS / (pt_bench_now() - t0);
    if (ok != 2 * (uint64_t)BASELINE_CALLS) {
        fprintf(stderr, "the baseline's train calls failed (%" PRIu64 " of %d succeeded)\n", ok,
                2 * BASELINE_CALLS);
        goto out;
    }
    rc = 0;
out:
    petal_message_free(msg);
    if (ctx != NULL) {
        pt_context_free(ctx);
    }
    if (app != NULL && ops->fini != NULL) {
        ops->fini(app);
    }
    pt_plugin_unload(plugin);
    pt_clientapp_free(ca);
    pt_run_config_release(rcfg);
    return rc;
}

int
main(int argc, char **argv)
{
    uint64_t nodes = 10000, rounds = 5;
    if (argc > 1) {
        nodes = strtoull(argv[1], NULL, 10);
    }
    if (argc > 2) {
        rounds = strtoull(argv[2], NULL, 10);
    }
    if (argc > 3 || nodes == 0 || rounds < 2 || rounds > PT_BENCH_MAX_ROUNDS) {
        fprintf(stderr, "usage: %s [NODES [ROUNDS]]   (ROUNDS 2..%d)\n", argv[0],
                PT_BENCH_MAX_ROUNDS);
        return 2;
    }
    char build[4096], a[32], b[32], c[32];
    if (pt_bench_build_dir(build, sizeof(build)) != 0) {
        return 1;
    }
    baseline_t base;
    if (measure_baseline(build, &base) != 0) {
        return 1;
    }

    char run_config[256];
    snprintf(run_config, sizeof(run_config),
             "model-size=%d num-server-rounds=%" PRIu64 " fraction-train=1.0 "
             "fraction-evaluate=0 min-available-nodes=1 min-train-nodes=1 min-evaluate-nodes=0",
             MODEL_SIZE, rounds);
    pt_bench_sim_opts_t o = {.build_dir = build, .nodes = nodes, .run_config = run_config};
    pt_bench_sim_result_t r;
    if (pt_bench_sim_run(&o, &r) != 0) {
        return 1;
    }
    if (r.exit_code != 0 || r.rounds != rounds) {
        fprintf(stderr,
                "petal sim failed (exit status %d%s, %u of %" PRIu64 " rounds done); its output: "
                "%s\n",
                r.exit_code, r.timed_out ? ", killed after the timeout" : "", r.rounds, rounds,
                r.log_path);
        return 1;
    }
    uint64_t execs = rounds * nodes;
    double all = pt_bench_rounds_sum(&r, 1, (uint32_t)rounds);
    double steady = pt_bench_rounds_sum(&r, 2, (uint32_t)rounds);
    double rate = (double)execs / all;
    double steady_rate = (double)(execs - nodes) / steady;

    printf("sim_dispatch: bench-noop (%d float32), %s virtual nodes x %" PRIu64
           " rounds, fraction-train 1.0, evaluate off\n",
           MODEL_SIZE, pt_bench_group(nodes, a, sizeof(a)), rounds);
    printf("  baseline handler loop (1 thread):   %12s calls/s\n",
           pt_bench_group((uint64_t)base.handler_rate, a, sizeof(a)));
    printf("  baseline pt_clientapp_handle loop:  %12s calls/s\n",
           pt_bench_group((uint64_t)base.clientapp_rate, a, sizeof(a)));
    printf("  petal sim rounds (s):              ");
    for (uint32_t i = 0; i < r.rounds; i++) {
        printf(" %.3f", r.round_seconds[i]);
    }
    printf("   (wall %.2f s, peak RSS %.1f MiB, %s calls, %" PRIu64 " failed)\n", r.wall_seconds,
           (double)r.max_rss_bytes / 1048576.0, pt_bench_group(r.calls, b, sizeof(b)), r.failed);
    printf("  petal sim, rounds 1-%" PRIu64 ":            %12s executions/s (%s in %.3f s)\n",
           rounds, pt_bench_group((uint64_t)rate, a, sizeof(a)),
           pt_bench_group(execs, c, sizeof(c)), all);
    printf("  petal sim, rounds 2-%" PRIu64 ":            %12s executions/s\n", rounds,
           pt_bench_group((uint64_t)steady_rate, a, sizeof(a)));
    printf("  ratio sim / handler loop:           %11.2f%%   sim / clientapp loop: %.2f%%\n",
           100.0 * rate / base.handler_rate, 100.0 * rate / base.clientapp_rate);
    printf("  target >= %.0f executions/s: %s\n", TARGET_RATE,
           rate >= TARGET_RATE ? "met" : "MISSED");
    return 0;
}
