/* deploy_large.c - one deployed round with a multi-GiB model: wall time, SuperLink peak RSS. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "deploy_proc.h"

/*
 * One petal-superlink and 2 petal-supernode processes on 127.0.0.1 run ONE FedAvg round of the
 * bench-noop app with a model of --model-size float32 elements: node 1 makes the initial
 * arrays (query.init-arrays), the SuperLink sends the model to both nodes, they echo it, the
 * SuperLink folds the replies. Reported: wall time of `petal run`, the init and round times,
 * and peak RSS (VmHWM) of the SuperLink and of each node.
 *
 * What decides how large the model can be (docs/performance.md, Deployment):
 *  - an array is one msgpack bin (at most 4 GiB - 1 bytes with its alignment pad), so the model
 *    is split over bench-noop's "model-arrays" (by default one array per 2^28 elements, 1 GiB).
 *  - memory: the SuperLink peaks at about 3x the model: the global model (the ServerApp keeps
 *    it for the round, the stored instructions until their replies arrive) and two replies
 *    (FedAvg sums a model this large in place in the first reply, actors/serverapp/aggregate.h).
 *    Each node holds 1x until its reply is acknowledged; the SuperLink receives messages of
 *    1 GiB and more one at a time (transport/stream.h, serial_rx_min), so node 1 has freed its
 *    copy before node 2's reply comes in: all processes together peak at ~4x the model. The
 *    benchmark refuses a model that does not fit in MemAvailable minus 1 GiB and kills the
 *    children if MemAvailable falls under 768 MiB while it runs.
 *
 * It allocates many GiB and takes tens of seconds, so it is opt-in:
 *   bench_deploy_large                      prints the plan and exits (what run-all.sh does)
 *   bench_deploy_large --run                the largest model that fits (at most 1.2e9)
 *   bench_deploy_large --run --model-size N [--model-arrays K]
 */

#define NODES 2
#define WANTED_ELEMENTS UINT64_C(1200000000) /* 4.47 GiB of float32 */
#define ARRAY_MAX_ELEMENTS ((UINT64_C(0xffffffff) - 63) / 4)
#define ARRAY_ELEMENTS (UINT64_C(1) << 28) /* per array unless --model-arrays */
#define SL_FACTOR 3.0    /* SuperLink peak RSS / model bytes (was 5.0 with float64 sums) */
#define NODE_FACTOR 1.0  /* each node */
#define TOTAL_FACTOR 4.0 /* all processes at once (was 7.0) */
#define SLACK (UINT64_C(512) << 20)
#define MARGIN (UINT64_C(1) << 30) /* MemAvailable kept free */
#define MEM_FLOOR (UINT64_C(768) << 20)
#define RUN_TIMEOUT 900.0

static pid_t watched[NODES + 1];
static atomic_int watch_stop, watch_fired;
static atomic_uint_fast64_t watch_min_avail = UINT64_MAX;

/* Kills the children when the machine is about to run out of memory. */
static void *
watchdog(void *arg)
{
    (void)arg;
    while (!atomic_load(&watch_stop)) {
        uint64_t avail = pt_dep_mem_available();
        if (avail > 0 && avail < atomic_load(&watch_min_avail)) {
            atomic_store(&watch_min_avail, avail);
        }
        if (avail > 0 && avail < MEM_FLOOR && !atomic_load(&watch_fired)) {
            atomic_store(&watch_fired, 1);
            for (int i = 0; i <= NODES; i++) {
                if (watched[i] > 0) {
                    kill(watched[i], SIGKILL);
                }
            }
        }
        struct timespec nap = {0, 50 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    return NULL;
}

static double
since(double later, double earlier)
{
    double d = later - earlier;
    return d < 0 ? d + 86400.0 : d;
}

static uint64_t
need_bytes(uint64_t elements)
{
    double m = (double)elements * 4.0;
    return (uint64_t)(m * TOTAL_FACTOR) + SLACK;
}

static void
usage(void)
{
    fprintf(stderr, "usage: bench_deploy_large [--run] [--model-size N] [--model-arrays K]\n");
}

int
main(int argc, char **argv)
{
    int run = 0, status = 1;
    uint64_t elements = 0, arrays = 0;
    char build[PATH_MAX], tmpdir[] = "/tmp/petal-bench-large-XXXXXX", buf[64], b2[64], b3[64];
    unsigned started = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--run") == 0) {
            run = 1;
        } else if (strcmp(argv[i], "--model-size") == 0 && i + 1 < argc) {
            elements = strtoull(argv[++i], NULL, 10);
            if (elements == 0) {
                usage();
                return 2;
            }
        } else if (strcmp(argv[i], "--model-arrays") == 0 && i + 1 < argc) {
            arrays = strtoull(argv[++i], NULL, 10);
            if (arrays == 0 || arrays > 4096) {
                usage();
                return 2;
            }
        } else {
            usage();
            return 2;
        }
    }
    uint64_t avail = pt_dep_mem_available();
    uint64_t budget = avail > MARGIN ? avail - MARGIN : 0;
    uint64_t fit = budget > SLACK ? (uint64_t)((budget - SLACK) / (4.0 * TOTAL_FACTOR)) : 0;
    uint64_t auto_size = WANTED_ELEMENTS;
    if (auto_size > fit) {
        auto_size = fit / 1000000 * 1000000;
    }
    printf("deploy_large: 1 SuperLink + %d SuperNodes on 127.0.0.1, bench-noop, 1 FedAvg round\n",
           NODES);
    printf("  wanted %s float32 (%.2f GiB); one array holds at most %s (4 GiB - 64 bytes); "
           "MemAvailable %.1f GiB - 1 GiB fits ~%s (SuperLink ~%.0fx, %d nodes %.0fx each, "
           "~%.0fx at once)\n",
           pt_bench_group(WANTED_ELEMENTS, buf, sizeof(buf)), WANTED_ELEMENTS * 4.0 / 1073741824.0,
           pt_bench_group(ARRAY_MAX_ELEMENTS, b2, sizeof(b2)), avail / 1073741824.0,
           pt_bench_group(fit, b3, sizeof(b3)), SL_FACTOR, NODES, NODE_FACTOR, TOTAL_FACTOR);
    if (elements == 0) {
        elements = auto_size;
    }
    if (arrays == 0) {
        arrays = (elements + ARRAY_ELEMENTS - 1) / ARRAY_ELEMENTS;
    }
    if (!run) {
        printf("  skipped (allocates ~%.1f GiB for tens of seconds): run `%s --run "
               "[--model-size N]` (default N = %s)\n",
               need_bytes(elements) / 1073741824.0, argv[0],
               pt_bench_group(auto_size, buf, sizeof(buf)));
        return 0;
    }
    if ((elements + arrays - 1) / arrays > ARRAY_MAX_ELEMENTS || arrays > elements) {
        fprintf(stderr,
                "--model-size %" PRIu64 " in %" PRIu64 " arrays: one array cannot exceed %" PRIu64
                " float32 elements (a msgpack bin is at most 4 GiB - 1 bytes)\n",
                elements, arrays, ARRAY_MAX_ELEMENTS);
        return 1;
    }
    if (need_bytes(elements) > budget) {
        fprintf(stderr,
                "--model-size %" PRIu64 " needs ~%.1f GiB, more than MemAvailable - 1 GiB "
                "(%.1f GiB); the most that fits is ~%" PRIu64 "\n",
                elements, need_bytes(elements) / 1073741824.0, avail / 1073741824.0, fit);
        return 1;
    }
    if (pt_bench_build_dir(build, sizeof(build)) != 0) {
        return 1;
    }
    if (mkdtemp(tmpdir) == NULL) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    double model_bytes = (double)elements * 4.0;
    printf("  running with %s float32 = %.2f GiB in %" PRIu64 " arrays (needs ~%.1f GiB)\n",
           pt_bench_group(elements, buf, sizeof(buf)), model_bytes / 1073741824.0, arrays,
           need_bytes(elements) / 1073741824.0);
    fflush(stdout);

    pt_dep_link_opts_t lo = {.build_dir = build, .log_level = "debug"};
    pt_dep_link_t link;
    pthread_t wd;
    int wd_on = 0;
    if (pt_dep_link_start(&lo, &link) != 0) {
        goto out_dir;
    }
    watched[0] = link.pid;
    for (unsigned i = 0; i < NODES; i++) {
        char cache[PATH_MAX], log[PATH_MAX];
        snprintf(cache, sizeof(cache), "%s/cache-%u", tmpdir, i);
        snprintf(log, sizeof(log), "%s/node-%u.log", tmpdir, i);
        if (pt_dep_node_start(build, link.fleet, i, NODES, cache, log, &watched[i + 1]) != 0) {
            goto out;
        }
        started++;
    }
    wd_on = pthread_create(&wd, NULL, watchdog, NULL) == 0;

    char cfg[512];
    snprintf(cfg, sizeof(cfg),
             "model-size=%" PRIu64 " model-arrays=%" PRIu64 " num-server-rounds=1 "
             "fraction-train=1.0 fraction-evaluate=0.0 min-available-nodes=%d "
             "min-train-nodes=%d",
             elements, arrays, NODES, NODES);
    pt_dep_run_result_t rr;
    if (pt_dep_run(build, link.control, cfg, RUN_TIMEOUT, &rr) != 0) {
        goto out;
    }
    uint64_t sl_hwm = 0, node_hwm[NODES] = {0};
    double sl_cpu = 0, node_cpu = 0, c;
    pt_dep_proc_mem(link.pid, "VmHWM", &sl_hwm);
    pt_dep_proc_cpu(link.pid, &sl_cpu);
    for (unsigned i = 0; i < NODES; i++) {
        pt_dep_proc_mem(watched[i + 1], "VmHWM", &node_hwm[i]);
        node_cpu += pt_dep_proc_cpu(watched[i + 1], &c) == 0 ? c : 0;
    }
    if (atomic_load(&watch_fired)) {
        fprintf(stderr, "MemAvailable fell under %" PRIu64 " MiB: the children were killed\n",
                MEM_FLOOR >> 20);
        goto out;
    }
    double start, send[1], end[1];
    uint32_t got = pt_dep_log_rounds(link.log_path, 0, &start, send, end, 1);
    if (rr.exit_code != 0 || rr.timed_out || got != 1) {
        fprintf(stderr,
                "petal run exit %d%s, %u rounds in the SuperLink log (petal run output: "
                "%s, SuperLink log: %s)\n",
                rr.exit_code, rr.timed_out ? " (timed out)" : "", got,
                rr.log_path[0] ? rr.log_path : "-", link.log_path);
        goto out;
    }
    double round = since(end[0], send[0]);
    double asked = pt_dep_log_stamp(link.log_path, 0, "asking node");
    printf("  completed: petal run %.1f s wall (submit to finish); initial arrays from node 1 "
           "%.1f s; round 1 %.1f s (send to last reply folded)\n",
           rr.wall_seconds, asked >= 0 ? since(start, asked) : -1.0, round);
    printf("  round moved %.2f GiB (model to %d nodes + %d replies): %.2f GB/s\n",
           2.0 * NODES * model_bytes / 1073741824.0, NODES, NODES,
           2.0 * NODES * model_bytes / round / 1e9);
    printf("  CPU (whole run): SuperLink %.1f s, nodes %.1f s\n", sl_cpu, node_cpu);
    printf("  peak RSS: SuperLink %.2f GiB (%.2fx the model)", sl_hwm / 1073741824.0,
           sl_hwm / model_bytes);
    for (unsigned i = 0; i < NODES; i++) {
        printf(", node %u %.2f GiB (%.2fx)", i + 1, node_hwm[i] / 1073741824.0,
               node_hwm[i] / model_bytes);
    }
    printf("; MemAvailable %.1f GiB before, lowest %.1f GiB (all processes ~%.2fx the model)\n",
           avail / 1073741824.0, (double)atomic_load(&watch_min_avail) / 1073741824.0,
           (avail - (double)atomic_load(&watch_min_avail)) / model_bytes);
    status = 0;

out:
    atomic_store(&watch_stop, 1);
    if (wd_on) {
        pthread_join(wd, NULL);
    }
    for (unsigned i = 0; i < started; i++) {
        pt_dep_stop(watched[i + 1], 10.0, NULL);
    }
    if (pt_dep_stop(link.pid, 10.0, NULL) == 0 && status == 0) {
        unlink(link.log_path);
    } else {
        fprintf(stderr, "SuperLink log kept: %s\n", link.log_path);
        status = 1;
    }
out_dir:
    if (status == 0) {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) {
            fprintf(stderr, "could not remove %s\n", tmpdir);
        }
    } else {
        fprintf(stderr, "node logs kept in %s\n", tmpdir);
    }
    return status;
}
