/* sim_scale.c - one million idle virtual SuperNodes: seconds per round and bytes per idle node. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_child.h"

/*
 * Usage: bench_sim_scale [NODES [SMALL_NODES]]   (defaults 1000000 1000)
 *
 * Runs `petal sim` on the bench-noop app (100,000 float32 = 400 KB model, FedAvg, 5 rounds,
 * fraction-train 0.01, no federated evaluation) twice as a child process: with SMALL_NODES and
 * with NODES virtual SuperNodes. Each run reports its seconds per round (from petal's history)
 * and its peak resident set (getrusage of the child). The fixed cost (runtime, plugin, model,
 * aggregation buffers) is the same in both, so
 *     (RSS(NODES) - RSS(SMALL_NODES)) / (NODES - SMALL_NODES)
 * is the memory one more virtual node costs. Target: < 1 KiB per idle node.
 * Note: NODES x 0.01 x 5 nodes get a Context (they trained); the rest stay idle all run.
 */

#define ROUNDS 5
#define RUN_CONFIG                                                                                 \
    "model-size=100000 num-server-rounds=5 fraction-train=0.01 fraction-evaluate=0 "               \
    "min-available-nodes=1 min-train-nodes=1 min-evaluate-nodes=0"
#define TARGET_BYTES_PER_NODE 1024.0

static int
run_one(const char *build, uint64_t nodes, pt_bench_sim_result_t *r)
{
    pt_bench_sim_opts_t o = {.build_dir = build, .nodes = nodes, .run_config = RUN_CONFIG};
    char n[32];
    if (pt_bench_sim_run(&o, r) != 0) {
        return -1;
    }
    if (r->exit_code != 0 || r->rounds != ROUNDS) {
        fprintf(stderr,
                "petal sim on %s nodes failed (exit status %d%s, %u rounds done); its "
                "output: %s\n",
                pt_bench_group(nodes, n, sizeof(n)), r->exit_code,
                r->timed_out ? ", killed after the timeout" : "", r->rounds, r->log_path);
        return -1;
    }
    return 0;
}

static void
print_run(uint64_t nodes, const pt_bench_sim_result_t *r)
{
    char n[32], c[32];
    printf("  %13s nodes: peak RSS %8.1f MiB, wall %6.2f s, rounds (s):",
           pt_bench_group(nodes, n, sizeof(n)), (double)r->max_rss_bytes / 1048576.0,
           r->wall_seconds);
    for (uint32_t i = 0; i < r->rounds; i++) {
        printf(" %.3f", r->round_seconds[i]);
    }
    printf("\n  %13s        %s ClientApp calls, %" PRIu64 " failed, %" PRIu64
           " nodes got a Context\n",
           "", pt_bench_group(r->calls, c, sizeof(c)), r->failed, r->contexts);
}

int
main(int argc, char **argv)
{
    uint64_t big = 1000000, small = 1000;
    if (argc > 1) {
        big = strtoull(argv[1], NULL, 10);
    }
    if (argc > 2) {
        small = strtoull(argv[2], NULL, 10);
    }
    if (argc > 3 || big == 0 || small == 0 || small >= big) {
        fprintf(stderr, "usage: %s [NODES [SMALL_NODES]]   (NODES > SMALL_NODES >= 1)\n", argv[0]);
        return 2;
    }
    char build[4096];
    if (pt_bench_build_dir(build, sizeof(build)) != 0) {
        return 1;
    }
    char n[32];
    printf("sim_scale: bench-noop (100,000 float32), FedAvg, %d rounds, fraction-train 0.01, "
           "evaluate off\n",
           ROUNDS);
    pt_bench_sim_result_t rs, rb;
    if (run_one(build, small, &rs) != 0) {
        return 1;
    }
    print_run(small, &rs);
    if (run_one(build, big, &rb) != 0) {
        return 1;
    }
    print_run(big, &rb);

    double per_round = pt_bench_rounds_sum(&rb, 1, ROUNDS) / ROUNDS;
    double steady = pt_bench_rounds_sum(&rb, 2, ROUNDS) / (ROUNDS - 1);
    double whole = (double)rb.max_rss_bytes / (double)big;
    double marginal = ((double)rb.max_rss_bytes - (double)rs.max_rss_bytes) / (double)(big - small);
    printf("  seconds per round at %s nodes: %.3f (mean of %d), %.3f (rounds 2-%d)\n",
           pt_bench_group(big, n, sizeof(n)), per_round, ROUNDS, steady, ROUNDS);
    printf("  peak RSS / nodes:                         %8.1f bytes per node\n", whole);
    printf("  (RSS_big - RSS_small) / (big - small):    %8.1f bytes per idle node "
           "(target < %.0f: %s)\n",
           marginal, TARGET_BYTES_PER_NODE, marginal < TARGET_BYTES_PER_NODE ? "met" : "MISSED");
    return 0;
}
