/* sim_child.h - runs `petal sim` on the bench-noop app as a child and collects its numbers. */
#ifndef PT_BENCH_SIM_CHILD_H
#define PT_BENCH_SIM_CHILD_H

#include <stddef.h>
#include <stdint.h>

#define PT_BENCH_MAX_ROUNDS 64
#define PT_BENCH_DEFAULT_TIMEOUT 120.0 /* seconds before a hung child is killed */

/* What to run: BUILD/bin/petal sim BUILD/plugins/bench-noop --num-supernodes nodes
 * --run-config run_config --log-level debug [--workers W]. */
typedef struct pt_bench_sim_opts {
    const char *build_dir;
    uint64_t nodes;
    const char *run_config; /* "k=v k2=v2" */
    uint32_t workers;       /* 0: petal's default (the cores) */
    double timeout_seconds; /* then the child is killed; 0: PT_BENCH_DEFAULT_TIMEOUT; the
                               environment's PETAL_BENCH_TIMEOUT overrides both */
} pt_bench_sim_opts_t;

typedef struct pt_bench_sim_result {
    int exit_code;          /* the child's; -1 if it died of a signal */
    int timed_out;          /* killed after timeout_seconds */
    double wall_seconds;    /* fork to exit */
    uint64_t max_rss_bytes; /* getrusage of the child: peak resident set */
    uint32_t rounds;        /* rounds found in the output */
    /* From the log's millisecond timestamps: round K ends when its train replies are in;
     * round 1 starts when the run starts, so it includes loading the app and fetching the
     * initial arrays. Falls back to petal sim's "round K/R ... 0.08s" lines. */
    double round_seconds[PT_BENCH_MAX_ROUNDS];
    uint64_t calls, failed, contexts; /* the "N ClientApp calls" line */
    char log_path[256];               /* the child's stdout+stderr (kept on failure) */
} pt_bench_sim_result_t;

/* The build directory this benchmark binary lives in (BUILD/bench/NAME -> BUILD). 0 or -1. */
int pt_bench_build_dir(char *out, size_t cap);

/* Runs the child and waits for it. 0 when it ran (check exit_code and rounds), -1 if it could
 * not start (a message went to stderr). log_path is kept when the run failed. */
int pt_bench_sim_run(const pt_bench_sim_opts_t *o, pt_bench_sim_result_t *r);

/* Sum of round_seconds[first-1 .. last-1]. */
double pt_bench_rounds_sum(const pt_bench_sim_result_t *r, uint32_t first, uint32_t last);

/* Seconds of a monotonic clock. */
double pt_bench_now(void);

/* "12,345,678" into buf. */
const char *pt_bench_group(uint64_t v, char *buf, size_t cap);

#endif
