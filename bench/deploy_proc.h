/* deploy_proc.h - children and /proc numbers for the deployment benchmarks (bench/deploy_*.c). */
#ifndef PT_BENCH_DEPLOY_PROC_H
#define PT_BENCH_DEPLOY_PROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "sim_child.h"

/* A petal-superlink child on 127.0.0.1 with port 0 for both APIs. */
typedef struct pt_dep_link_opts {
    const char *build_dir;
    double heartbeat_interval; /* seconds; 0: the daemon's default */
    const char *log_level;     /* NULL: info */
    uint64_t nofile;           /* 0: inherited; else RLIMIT_NOFILE raised to this (up to hard) */
} pt_dep_link_opts_t;

typedef struct pt_dep_link {
    pid_t pid;
    char fleet[128];   /* "127.0.0.1:PORT" (what petal-supernode --superlink takes) */
    char control[128]; /* "127.0.0.1:PORT" (what petal run --superlink takes) */
    char log_path[256];
} pt_dep_link_t;

/* Starts the SuperLink and waits (up to 10 s) for its address line. 0, or -1 (message on
 * stderr, nothing left running). */
int pt_dep_link_start(const pt_dep_link_opts_t *o, pt_dep_link_t *out);

/* Starts `petal-supernode --insecure --superlink fleet --node-config "partition-id=I
 * num-partitions=N" --cache-dir cache_dir --log-level warn`, output to log_path. 0 or -1. */
int pt_dep_node_start(const char *build_dir, const char *fleet, unsigned index, unsigned count,
                      const char *cache_dir, const char *log_path, pid_t *out);

/* SIGTERM, then SIGKILL after timeout seconds. Returns the exit code (-1: killed by a signal,
 * -2: could not wait); *ru gets the child's rusage if non-NULL. */
int pt_dep_stop(pid_t pid, double timeout, struct rusage *ru);

/* A "Vm..." field of /proc/PID/status ("VmRSS", "VmHWM") in bytes. 0 or -1. */
int pt_dep_proc_mem(pid_t pid, const char *field, uint64_t *bytes);
/* utime + stime of /proc/PID/stat (all threads) in seconds. 0 or -1. */
int pt_dep_proc_cpu(pid_t pid, double *seconds);
/* MemAvailable of /proc/meminfo in bytes (0 if unknown). */
uint64_t pt_dep_mem_available(void);

/* `petal run BUILD/plugins/bench-noop --superlink control --insecure --stream --run-config rc`,
 * killed after timeout seconds. */
typedef struct pt_dep_run_result {
    int exit_code; /* -1: signal */
    int timed_out;
    double wall_seconds;
    uint32_t rounds;                    /* "round k/K ... 0.40s" lines seen */
    double coarse[PT_BENCH_MAX_ROUNDS]; /* their seconds (10 ms resolution) */
    char log_path[256];                 /* kept when the run failed */
} pt_dep_run_result_t;

int pt_dep_run(const char *build_dir, const char *control, const char *run_config, double timeout,
               pt_dep_run_result_t *r);

/*
 * Round times of the run whose log starts at byte `from` of the SuperLink's debug log:
 * end[k-1] = when round k's train replies were all in, send[k-1] = when its instructions went
 * out (seconds since midnight, 1 ms resolution), start = when the strategy began (after the
 * initial arrays). Returns the rounds found.
 */
uint32_t pt_dep_log_rounds(const char *log_path, long from, double *start, double *send,
                           double *end, uint32_t cap);

/* The stamp (seconds since midnight) of the first line at or after byte `from` of a Petal log
 * that contains `needle`; -1 if none. */
double pt_dep_log_stamp(const char *log_path, long from, const char *needle);

/* The current size of a file (-1 if it cannot be read). */
long pt_dep_file_size(const char *path);

/* Raw loopback TCP throughput in bytes per second: a blocking write of `bytes` from one thread
 * to a blocking read in another, 4 MiB per call, best of `reps`. The reader reuses one 4 MiB
 * buffer, or with `fresh` reads into one new buffer of `bytes` (paying its page faults, as a
 * receiver that allocates each message does). 0 if it failed. */
double pt_dep_loopback(uint64_t bytes, int reps, int fresh);

/* Raises this process's RLIMIT_NOFILE soft limit to min(want, hard); returns the new soft. */
uint64_t pt_dep_raise_nofile(uint64_t want);

#endif
