/* sim_child.c - fork/exec of `petal sim`, peak RSS from wait4(), round times from its log. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sim_child.h"

double
pt_bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *
pt_bench_group(uint64_t v, char *buf, size_t cap)
{
    char digits[32];
    int n = snprintf(digits, sizeof(digits), "%" PRIu64, v);
    size_t j = 0;
    for (int i = 0; i < n && j + 2 < cap; i++) {
        if (i > 0 && (n - i) % 3 == 0) {
            buf[j++] = ',';
        }
        buf[j++] = digits[i];
    }
    buf[j] = '\0';
    return buf;
}

int
pt_bench_build_dir(char *out, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0) {
        fprintf(stderr, "cannot read /proc/self/exe: %s\n", strerror(errno));
        return -1;
    }
    exe[n] = '\0';
    for (int up = 0; up < 2; up++) { /* BUILD/bench/NAME -> BUILD */
        char *slash = strrchr(exe, '/');
        if (slash == NULL || slash == exe) {
            fprintf(stderr, "cannot find the build directory above %s\n", exe);
            return -1;
        }
        *slash = '\0';
    }
    if ((size_t)snprintf(out, cap, "%s", exe) >= cap) {
        return -1;
    }
    return 0;
}

/* Seconds since midnight from a log line's "YYYY-MM-DDTHH:MM:SS.mmmZ" timestamp; -1 if none. */
static double
log_time(const char *line)
{
    int h, m;
    double sec;
    if (sscanf(line, "%*4d-%*2d-%*2dT%d:%d:%lfZ", &h, &m, &sec) != 3) {
        return -1;
    }
    return h * 3600.0 + m * 60.0 + sec;
}

/* Later timestamp minus earlier one, across midnight. */
static double
log_diff(double later, double earlier)
{
    double d = later - earlier;
    return d < 0 ? d + 86400.0 : d;
}

/*
 * Reads the child's output (log level debug):
 *   "... INFO  [superlink] run 1 started ..."                 the clock starts
 *   "... DEBUG [serverapp] round K: train: N replies, ..."    round K ends (millisecond stamps)
 *   "round K/R ... 0.08s"                                     petal sim's own line (fallback)
 *   "N ClientApp calls, F failed, C virtual nodes used"
 */
static void
read_log(const char *path, pt_bench_sim_result_t *r)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return;
    }
    char line[2048];
    double started = -1, prev = -1;
    double coarse[PT_BENCH_MAX_ROUNDS] = {0};
    uint32_t coarse_n = 0, fine_n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long long c, x, n;
        unsigned round, total;
        const char *p;
        double t = log_time(line);
        if (sscanf(line, "%llu ClientApp calls, %llu failed, %llu virtual nodes used", &c, &x,
                   &n) == 3) {
            r->calls = c;
            r->failed = x;
            r->contexts = n;
        } else if (sscanf(line, "round %u/%u", &round, &total) == 2 && round >= 1 &&
                   round <= PT_BENCH_MAX_ROUNDS) {
            const char *sp = strrchr(line, ' ');
            coarse[round - 1] = sp != NULL ? atof(sp + 1) : 0;
            coarse_n = round > coarse_n ? round : coarse_n;
        } else if (t >= 0 && started < 0 && strstr(line, "[superlink] run ") != NULL &&
                   strstr(line, " started") != NULL) {
            started = t;
            prev = t;
        } else if (t >= 0 && prev >= 0 && (p = strstr(line, "[serverapp] round ")) != NULL &&
                   sscanf(p, "[serverapp] round %u: train: %llu replies", &round, &n) == 2 &&
                   round == fine_n + 1 && round <= PT_BENCH_MAX_ROUNDS) {
            r->round_seconds[round - 1] = log_diff(t, prev);
            prev = t;
            fine_n = round;
        }
    }
    fclose(f);
    if (fine_n >= coarse_n && fine_n > 0) {
        r->rounds = fine_n;
    } else {
        memcpy(r->round_seconds, coarse, sizeof(coarse));
        r->rounds = coarse_n;
    }
}

int
pt_bench_sim_run(const pt_bench_sim_opts_t *o, pt_bench_sim_result_t *r)
{
    char petal[PATH_MAX], app[PATH_MAX], nodes[32], workers[16];
    memset(r, 0, sizeof(*r));
    snprintf(petal, sizeof(petal), "%s/bin/petal", o->build_dir);
    snprintf(app, sizeof(app), "%s/plugins/bench-noop", o->build_dir);
    snprintf(nodes, sizeof(nodes), "%" PRIu64, o->nodes);
    snprintf(workers, sizeof(workers), "%" PRIu32, o->workers);
    if (access(petal, X_OK) != 0 || access(app, R_OK) != 0) {
        fprintf(stderr, "%s or %s is missing: build the targets petal_cli and bench_noop_client\n",
                petal, app);
        return -1;
    }
    snprintf(r->log_path, sizeof(r->log_path), "/tmp/petal-bench-log-XXXXXX");
    int lfd = mkstemp(r->log_path);
    if (lfd < 0) {
        fprintf(stderr, "mkstemp: %s\n", strerror(errno));
        return -1;
    }
    const char *argv[16];
    int k = 0;
    argv[k++] = petal;
    argv[k++] = "sim";
    argv[k++] = app;
    argv[k++] = "--num-supernodes";
    argv[k++] = nodes;
    argv[k++] = "--run-config";
    argv[k++] = o->run_config;
    argv[k++] = "--log-level";
    argv[k++] = "debug"; /* the per-round lines; nothing per node unless it fails */
    if (o->workers != 0) {
        argv[k++] = "--workers";
        argv[k++] = workers;
    }
    argv[k] = NULL;

    fflush(NULL);
    double t0 = pt_bench_now();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "fork: %s\n", strerror(errno));
        close(lfd);
        return -1;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
        }
        dup2(lfd, STDOUT_FILENO);
        dup2(lfd, STDERR_FILENO);
        execv(petal, (char *const *)argv);
        _exit(127);
    }
    close(lfd);
    /* Poll, so that a run that hangs is killed instead of hanging the benchmark. */
    double limit = o->timeout_seconds;
    const char *env = getenv("PETAL_BENCH_TIMEOUT");
    if (env != NULL && atof(env) > 0) {
        limit = atof(env);
    }
    if (!(limit > 0)) {
        limit = PT_BENCH_DEFAULT_TIMEOUT;
    }
    int status = 0;
    struct rusage ru;
    pid_t w;
    for (;;) {
        w = wait4(pid, &status, WNOHANG, &ru);
        if (w != 0 && !(w < 0 && errno == EINTR)) {
            break;
        }
        if (w == 0 && pt_bench_now() - t0 > limit && !r->timed_out) {
            fprintf(stderr, "petal sim did not finish within %.0f s; killing it (pid %ld)\n", limit,
                    (long)pid);
            kill(pid, SIGKILL);
            r->timed_out = 1;
        }
        struct timespec nap = {0, 5 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    r->wall_seconds = pt_bench_now() - t0;
    if (w < 0) {
        fprintf(stderr, "wait4: %s\n", strerror(errno));
        return -1;
    }
    r->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r->max_rss_bytes = (uint64_t)ru.ru_maxrss * 1024; /* Linux reports KiB */
    read_log(r->log_path, r);
    if (r->exit_code == 0 && !r->timed_out && r->rounds > 0) {
        unlink(r->log_path);
        r->log_path[0] = '\0';
    }
    return 0;
}

double
pt_bench_rounds_sum(const pt_bench_sim_result_t *r, uint32_t first, uint32_t last)
{
    double s = 0;
    for (uint32_t i = first; i <= last && i <= r->rounds; i++) {
        s += r->round_seconds[i - 1];
    }
    return s;
}
