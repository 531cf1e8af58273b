/* deploy_round.c - seconds per deployed round against the loopback data-movement bound. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deploy_proc.h"

/*
 * One petal-superlink and N petal-supernode processes on 127.0.0.1 (N = 10 by default) run the
 * bench-noop app (train echoes the model by reference) with FedAvg, fraction-train 1 and
 * fraction-evaluate 0. A round moves the model down to N nodes and N replies up: 2 N model bytes.
 * The bound is those bytes over the raw loopback throughput measured here (one blocking TCP
 * stream between two threads); the target is a round within 1.5x the bound + 5 ms.
 *
 * Round times come from the SuperLink's debug log (millisecond stamps): the steady-state round
 * is (end of the last round - end of round 1) / (rounds - 1), so round 1 (bundle fetch, app
 * load) is left out.
 *
 *   bench_deploy_round [--nodes N] [--sizes S1,S2,...] [--rounds R]
 *     --sizes   model sizes in float32 elements (default 1000000,10000000)
 *     --rounds  rounds per size (default: 11 for models up to 1M elements, 5 above)
 */

#define MAX_NODES 64
#define MAX_SIZES 8
#define LOOPBACK_BYTES (UINT64_C(256) << 20)
#define RUN_TIMEOUT 300.0

static void
usage(void)
{
    fprintf(stderr, "usage: bench_deploy_round [--nodes N] [--sizes S1,S2,...] [--rounds R]\n");
}

static double
since(double later, double earlier)
{
    double d = later - earlier;
    return d < 0 ? d + 86400.0 : d;
}

int
main(int argc, char **argv)
{
    unsigned nodes = 10, rounds_arg = 0, nsizes = 0;
    uint64_t sizes[MAX_SIZES];
    char build[PATH_MAX], tmpdir[] = "/tmp/petal-bench-deploy-XXXXXX", buf[64];
    pid_t node_pids[MAX_NODES];
    unsigned started = 0;
    int status = 1, all_met = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--nodes") == 0 && i + 1 < argc) {
            nodes = (unsigned)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            rounds_arg = (unsigned)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--sizes") == 0 && i + 1 < argc) {
            char *s = argv[++i], *end;
            while (*s != '\0' && nsizes < MAX_SIZES) {
                sizes[nsizes++] = strtoull(s, &end, 10);
                s = *end == ',' ? end + 1 : end;
                if (end == s && *s != '\0') {
                    break;
                }
            }
        } else {
            usage();
            return 2;
        }
    }
    if (nsizes == 0) {
        sizes[0] = 1000000;
        sizes[1] = 10000000;
        nsizes = 2;
    }
    if (nodes < 1 || nodes > MAX_NODES || rounds_arg == 1 || rounds_arg > PT_BENCH_MAX_ROUNDS) {
        fprintf(stderr, "--nodes 1..%d, --rounds 2..%d\n", MAX_NODES, PT_BENCH_MAX_ROUNDS);
        return 2;
    }
    for (unsigned i = 0; i < nsizes; i++) {
        if (sizes[i] < 1 || sizes[i] > (UINT64_C(1) << 30)) {
            fprintf(stderr, "model sizes are 1..2^30 float32 elements\n");
            return 2;
        }
    }
    if (pt_bench_build_dir(build, sizeof(build)) != 0) {
        return 1;
    }

    printf("deploy_round: 1 SuperLink + %u SuperNodes (processes) on 127.0.0.1, bench-noop, "
           "fedavg, fraction-train 1, fraction-evaluate 0\n",
           nodes);
    double bps = pt_dep_loopback(LOOPBACK_BYTES, 3, 0);
    double bps_fresh = pt_dep_loopback(LOOPBACK_BYTES, 3, 1);
    if (bps <= 0 || bps_fresh <= 0) {
        fprintf(stderr, "the loopback baseline failed\n");
        return 1;
    }
    printf("loopback TCP baseline (blocking write/read of 256 MiB between two threads, best of "
           "3): %.2f GB/s (the bound's); into a fresh 256 MiB buffer: %.2f GB/s\n",
           bps / 1e9, bps_fresh / 1e9);
    fflush(stdout);

    if (mkdtemp(tmpdir) == NULL) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    pt_dep_link_opts_t lo = {.build_dir = build, .log_level = "debug"};
    pt_dep_link_t link;
    if (pt_dep_link_start(&lo, &link) != 0) {
        goto out_dir;
    }
    for (unsigned i = 0; i < nodes; i++) {
        char cache[PATH_MAX], log[PATH_MAX];
        snprintf(cache, sizeof(cache), "%s/cache-%u", tmpdir, i);
        snprintf(log, sizeof(log), "%s/node-%u.log", tmpdir, i);
        if (pt_dep_node_start(build, link.fleet, i, nodes, cache, log, &node_pids[i]) != 0) {
            goto out;
        }
        started++;
    }

    for (unsigned s = 0; s < nsizes; s++) {
        uint64_t size = sizes[s];
        unsigned rounds = rounds_arg ? rounds_arg : size <= 1000000 ? 11 : 5;
        char cfg[512];
        snprintf(cfg, sizeof(cfg),
                 "model-size=%" PRIu64 " num-server-rounds=%u fraction-train=1.0 "
                 "fraction-evaluate=0.0 min-available-nodes=%u min-train-nodes=%u",
                 size, rounds, nodes, nodes);
        long from = pt_dep_file_size(link.log_path);
        double cpu_sl0 = 0, cpu_sl1 = 0, cpu_n0 = 0, cpu_n1 = 0, c;
        pt_dep_proc_cpu(link.pid, &cpu_sl0);
        for (unsigned i = 0; i < nodes; i++) {
            cpu_n0 += pt_dep_proc_cpu(node_pids[i], &c) == 0 ? c : 0;
        }
        pt_dep_run_result_t rr;
        if (pt_dep_run(build, link.control, cfg, RUN_TIMEOUT, &rr) != 0) {
            goto out;
        }
        pt_dep_proc_cpu(link.pid, &cpu_sl1);
        for (unsigned i = 0; i < nodes; i++) {
            cpu_n1 += pt_dep_proc_cpu(node_pids[i], &c) == 0 ? c : 0;
        }
        double start, send[PT_BENCH_MAX_ROUNDS], end[PT_BENCH_MAX_ROUNDS];
        uint32_t got = pt_dep_log_rounds(link.log_path, from, &start, send, end, rounds);
        if (rr.exit_code != 0 || rr.timed_out || got != rounds) {
            fprintf(stderr,
                    "model %" PRIu64 ": petal run exit %d%s, %u of %u rounds in the SuperLink log "
                    "(petal run output: %s, SuperLink log: %s)\n",
                    size, rr.exit_code, rr.timed_out ? " (timed out)" : "", got, rounds,
                    rr.log_path[0] ? rr.log_path : "-", link.log_path);
            goto out;
        }
        double round = since(end[rounds - 1], end[0]) / (rounds - 1);
        double trip = 0;
        for (unsigned k = 1; k < rounds; k++) {
            trip += since(end[k], send[k]);
        }
        trip /= rounds - 1;
        double bytes = 2.0 * nodes * (double)size * 4.0;
        double bound = bytes / bps;
        double target = 1.5 * bound + 0.005;
        int met = round <= target;
        all_met &= met;
        printf("model %s float32 (%.1f MB): %u rounds; round 1 %.3f s; steady round %.4f s "
               "(send to last reply %.4f s)\n",
               pt_bench_group(size, buf, sizeof(buf)), size * 4.0 / 1e6, rounds,
               since(end[0], start), round, trip);
        printf("  moved per round %.1f MB (model to %u nodes + %u replies); bound %.4f s; "
               "round / bound = %.2fx; target <= 1.5x bound + 5 ms = %.4f s: %s\n",
               bytes / 1e6, nodes, nodes, bound, round / bound, target, met ? "MET" : "NOT MET");
        printf("  CPU per round (the run's CPU / %u rounds): SuperLink %.3f s, %u SuperNodes "
               "%.3f s\n",
               rounds, (cpu_sl1 - cpu_sl0) / rounds, nodes, (cpu_n1 - cpu_n0) / rounds);
        fflush(stdout);
    }
    uint64_t hwm = 0;
    pt_dep_proc_mem(link.pid, "VmHWM", &hwm);
    printf("SuperLink peak RSS %.1f MB\n", hwm / 1e6);
    if (!all_met) {
        printf("deploy_round: target not met (see docs/performance.md, Deployment)\n");
    }
    status = 0; /* a missed target is a number to read, not a broken benchmark */

out:
    for (unsigned i = 0; i < started; i++) {
        pt_dep_stop(node_pids[i], 5.0, NULL);
    }
    if (pt_dep_stop(link.pid, 5.0, NULL) == 0 && status == 0) {
        unlink(link.log_path);
    } else if (status != 0) {
        fprintf(stderr, "SuperLink log kept: %s\n", link.log_path);
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
