/* deploy_proc.c - SuperLink/SuperNode/`petal run` children, /proc readings, loopback baseline. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "deploy_proc.h"

static void
nap_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

uint64_t
pt_dep_raise_nofile(uint64_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return 0;
    }
    rlim_t target = (rlim_t)want;
    if (rl.rlim_max != RLIM_INFINITY && target > rl.rlim_max) {
        target = rl.rlim_max;
    }
    if (target > rl.rlim_cur) {
        rl.rlim_cur = target;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (uint64_t)rl.rlim_cur;
}

/* fork + exec of argv with stdout and stderr appended to log_path; the child dies with us. */
static pid_t
spawn(const char *const *argv, const char *log_path, uint64_t nofile)
{
    int lfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (lfd < 0) {
        fprintf(stderr, "cannot open %s: %s\n", log_path, strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "fork: %s\n", strerror(errno));
        close(lfd);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (nofile != 0) {
            pt_dep_raise_nofile(nofile);
        }
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
        }
        dup2(lfd, STDOUT_FILENO);
        dup2(lfd, STDERR_FILENO);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(lfd);
    return pid;
}

/* "... tcp://127.0.0.1:40123 ..." after `key` -> "127.0.0.1:40123". */
static int
addr_after(const char *line, const char *key, char *out, size_t cap)
{
    const char *p = strstr(line, key);
    if (p == NULL) {
        return -1;
    }
    p += strlen(key);
    size_t n = strcspn(p, " \n");
    if (n == 0 || n >= cap) {
        return -1;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

int
pt_dep_link_start(const pt_dep_link_opts_t *o, pt_dep_link_t *out)
{
    char bin[PATH_MAX], hb[32];
    const char *argv[16];
    int k = 0;

    memset(out, 0, sizeof(*out));
    snprintf(bin, sizeof(bin), "%s/bin/petal-superlink", o->build_dir);
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "%s is missing: build the petal-superlink target\n", bin);
        return -1;
    }
    snprintf(out->log_path, sizeof(out->log_path), "/tmp/petal-bench-superlink-XXXXXX");
    int fd = mkstemp(out->log_path);
    if (fd < 0) {
        fprintf(stderr, "mkstemp: %s\n", strerror(errno));
        return -1;
    }
    close(fd);
    argv[k++] = bin;
    argv[k++] = "--insecure";
    argv[k++] = "--fleet-address";
    argv[k++] = "127.0.0.1:0";
    argv[k++] = "--control-address";
    argv[k++] = "127.0.0.1:0";
    argv[k++] = "--log-level";
    argv[k++] = o->log_level != NULL ? o->log_level : "info";
    if (o->heartbeat_interval > 0) {
        snprintf(hb, sizeof(hb), "%g", o->heartbeat_interval);
        argv[k++] = "--heartbeat-interval";
        argv[k++] = hb;
    }
    char maxconn[32];
    if (o->nofile > 0) {
        /* Many connections on purpose: lift the SuperLink's --max-connections (default 1000). */
        snprintf(maxconn, sizeof(maxconn), "%llu", (unsigned long long)o->nofile);
        argv[k++] = "--max-connections";
        argv[k++] = maxconn;
    }
    argv[k] = NULL;
    out->pid = spawn(argv, out->log_path, o->nofile);
    if (out->pid < 0) {
        return -1;
    }
    double t0 = pt_bench_now();
    while (pt_bench_now() - t0 < 10.0) {
        FILE *f = fopen(out->log_path, "r");
        char line[1024];
        while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
            if (strncmp(line, "petal-superlink: fleet ", 23) == 0 &&
                addr_after(line, "fleet tcp://", out->fleet, sizeof(out->fleet)) == 0 &&
                addr_after(line, "control tcp://", out->control, sizeof(out->control)) == 0) {
                fclose(f);
                return 0;
            }
        }
        if (f != NULL) {
            fclose(f);
        }
        int status;
        if (waitpid(out->pid, &status, WNOHANG) == out->pid) {
            fprintf(stderr, "petal-superlink exited before listening; see %s\n", out->log_path);
            return -1;
        }
        nap_ms(5);
    }
    fprintf(stderr, "petal-superlink printed no address within 10 s; see %s\n", out->log_path);
    pt_dep_stop(out->pid, 1.0, NULL);
    return -1;
}

int
pt_dep_node_start(const char *build_dir, const char *fleet, unsigned index, unsigned count,
                  const char *cache_dir, const char *log_path, pid_t *out)
{
    char bin[PATH_MAX], cfg[96];
    snprintf(bin, sizeof(bin), "%s/bin/petal-supernode", build_dir);
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "%s is missing: build the petal-supernode target\n", bin);
        return -1;
    }
    snprintf(cfg, sizeof(cfg), "partition-id=%u num-partitions=%u", index, count);
    const char *argv[] = {bin, "--insecure",  "--superlink", fleet,         "--node-config",
                          cfg, "--cache-dir", cache_dir,     "--log-level", "warn",
                          NULL};
    *out = spawn(argv, log_path, 0);
    return *out < 0 ? -1 : 0;
}

int
pt_dep_stop(pid_t pid, double timeout, struct rusage *ru)
{
    int status = 0;
    struct rusage r;
    pid_t w;
    int killed = 0;

    if (pid <= 0) {
        return -2;
    }
    kill(pid, SIGTERM);
    double t0 = pt_bench_now();
    for (;;) {
        w = wait4(pid, &status, WNOHANG, &r);
        if (w == pid) {
            break;
        }
        if (w < 0 && errno != EINTR) {
            return -2;
        }
        if (!killed && pt_bench_now() - t0 > timeout) {
            fprintf(stderr, "pid %ld did not exit within %.1f s of SIGTERM; killing it\n",
                    (long)pid, timeout);
            kill(pid, SIGKILL);
            killed = 1;
        }
        nap_ms(2);
    }
    if (ru != NULL) {
        *ru = r;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int
pt_dep_proc_mem(pid_t pid, const char *field, uint64_t *bytes)
{
    char path[64], line[256];
    size_t n = strlen(field);
    snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    int rc = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long long kb;
        if (strncmp(line, field, n) == 0 && line[n] == ':' &&
            sscanf(line + n + 1, "%llu", &kb) == 1) {
            *bytes = (uint64_t)kb * 1024;
            rc = 0;
            break;
        }
    }
    fclose(f);
    return rc;
}

int
pt_dep_proc_cpu(pid_t pid, double *seconds)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the ")" that closes the command name: state is field 3, utime 14, stime 15. */
    const char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) {
        return -1;
    }
    long hz = sysconf(_SC_CLK_TCK);
    *seconds = (double)(ut + st) / (double)(hz > 0 ? hz : 100);
    return 0;
}

uint64_t
pt_dep_mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    uint64_t v = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        unsigned long long kb;
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
            v = (uint64_t)kb * 1024;
            break;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return v;
}

long
pt_dep_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

int
pt_dep_run(const char *build_dir, const char *control, const char *run_config, double timeout,
           pt_dep_run_result_t *r)
{
    char petal[PATH_MAX], app[PATH_MAX];
    memset(r, 0, sizeof(*r));
    snprintf(petal, sizeof(petal), "%s/bin/petal", build_dir);
    snprintf(app, sizeof(app), "%s/plugins/bench-noop", build_dir);
    if (access(petal, X_OK) != 0 || access(app, R_OK) != 0) {
        fprintf(stderr, "%s or %s is missing: build the targets petal_cli and bench_noop_client\n",
                petal, app);
        return -1;
    }
    snprintf(r->log_path, sizeof(r->log_path), "/tmp/petal-bench-run-XXXXXX");
    int fd = mkstemp(r->log_path);
    if (fd < 0) {
        fprintf(stderr, "mkstemp: %s\n", strerror(errno));
        return -1;
    }
    close(fd);
    const char *argv[] = {petal,      "run",        app,        "--superlink",
                          control,    "--insecure", "--stream", "--run-config",
                          run_config, NULL};
    double t0 = pt_bench_now();
    pid_t pid = spawn(argv, r->log_path, 0);
    if (pid < 0) {
        return -1;
    }
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            break;
        }
        if (w < 0 && errno != EINTR) {
            fprintf(stderr, "waitpid: %s\n", strerror(errno));
            return -1;
        }
        if (!r->timed_out && pt_bench_now() - t0 > timeout) {
            fprintf(stderr, "petal run did not finish within %.0f s; killing it\n", timeout);
            kill(pid, SIGKILL);
            r->timed_out = 1;
        }
        nap_ms(2);
    }
    r->wall_seconds = pt_bench_now() - t0;
    r->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    FILE *f = fopen(r->log_path, "r");
    char line[1024];
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        unsigned k, total;
        if (sscanf(line, "round %u/%u", &k, &total) == 2 && k >= 1 && k <= PT_BENCH_MAX_ROUNDS) {
            const char *sp = strrchr(line, ' ');
            r->coarse[k - 1] = sp != NULL ? atof(sp + 1) : 0;
            r->rounds = k > r->rounds ? k : r->rounds;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    if (r->exit_code == 0 && !r->timed_out) {
        unlink(r->log_path);
        r->log_path[0] = '\0';
    }
    return 0;
}

/* Seconds since midnight from a log line's "YYYY-MM-DDTHH:MM:SS.mmmZ" stamp; -1 if none. */
static double
stamp(const char *line)
{
    int h, m;
    double s;
    if (sscanf(line, "%*4d-%*2d-%*2dT%d:%d:%lfZ", &h, &m, &s) != 3) {
        return -1;
    }
    return h * 3600.0 + m * 60.0 + s;
}

double
pt_dep_log_stamp(const char *log_path, long from, const char *needle)
{
    FILE *f = fopen(log_path, "r");
    char line[2048];
    double t = -1;

    if (f == NULL) {
        return -1;
    }
    if (from > 0) {
        fseek(f, from, SEEK_SET);
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strstr(line, needle) != NULL && (t = stamp(line)) >= 0) {
            break;
        }
    }
    fclose(f);
    return t;
}

uint32_t
pt_dep_log_rounds(const char *log_path, long from, double *start, double *send, double *end,
                  uint32_t cap)
{
    FILE *f = fopen(log_path, "r");
    char line[2048];
    uint32_t n = 0;

    *start = -1;
    if (f == NULL) {
        return 0;
    }
    if (from > 0) {
        fseek(f, from, SEEK_SET);
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        double t = stamp(line);
        const char *p;
        unsigned k;
        unsigned long long a, b;
        if (t < 0) {
            continue;
        }
        if (*start < 0 && strstr(line, "[serverapp] strategy ") != NULL) {
            *start = t;
        } else if ((p = strstr(line, "[serverapp] round ")) != NULL) {
            if (sscanf(p, "[serverapp] round %u: train: sending to %llu of %llu", &k, &a, &b) ==
                    3 &&
                k >= 1 && k <= cap) {
                send[k - 1] = t;
            } else if (sscanf(p, "[serverapp] round %u: train: %llu replies", &k, &a) == 2 &&
                       k == n + 1 && k <= cap) {
                end[k - 1] = t;
                n = k;
            }
        }
    }
    fclose(f);
    return n;
}

/* ---- Loopback baseline ------------------------------------------------------------------- */

#define LOOP_CHUNK ((size_t)4 << 20)

typedef struct loop_writer {
    uint16_t port;
    uint64_t bytes;
    int ok;
} loop_writer_t;

static void *
loop_write(void *arg)
{
    loop_writer_t *w = arg;
    struct sockaddr_in sa;
    char *buf = malloc(LOOP_CHUNK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (buf == NULL || fd < 0) {
        free(buf);
        if (fd >= 0) {
            close(fd);
        }
        return NULL;
    }
    memset(buf, 0x5a, LOOP_CHUNK);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(w->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        uint64_t left = w->bytes;
        w->ok = 1;
        while (left > 0) {
            size_t n = left < LOOP_CHUNK ? (size_t)left : LOOP_CHUNK;
            ssize_t k = write(fd, buf, n);
            if (k < 0 && errno == EINTR) {
                continue;
            }
            if (k <= 0) {
                w->ok = 0;
                break;
            }
            left -= (uint64_t)k;
        }
    }
    close(fd);
    free(buf);
    return NULL;
}

/* One transfer; seconds from accept to the last byte read, or -1. With `fresh` the reader
 * reads into one new buffer of `bytes` (every page faulted in on first write) instead of
 * reusing a 4 MiB one. */
static double
loop_once(uint64_t bytes, int fresh)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    char *buf = malloc(LOOP_CHUNK);
    double secs = -1;
    pthread_t th;
    loop_writer_t w = {0, bytes, 0};

    if (lfd < 0 || buf == NULL) {
        goto out;
    }
    memset(buf, 0, LOOP_CHUNK);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 1) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &len) != 0) {
        goto out;
    }
    w.port = ntohs(sa.sin_port);
    if (pthread_create(&th, NULL, loop_write, &w) != 0) {
        goto out;
    }
    int cfd = accept(lfd, NULL, NULL);
    double t0 = pt_bench_now();
    uint64_t got = 0;
    char *dst = fresh ? malloc((size_t)bytes) : NULL;
    if (fresh && dst == NULL) {
        got = bytes + 1; /* fails below */
    }
    while (cfd >= 0 && got < bytes) {
        char *at = fresh ? dst + got : buf;
        size_t want = fresh && bytes - got < LOOP_CHUNK ? (size_t)(bytes - got) : LOOP_CHUNK;
        ssize_t k = read(cfd, at, want);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            break;
        }
        got += (uint64_t)k;
    }
    double t1 = pt_bench_now();
    free(dst);
    if (cfd >= 0) {
        close(cfd);
    }
    pthread_join(th, NULL);
    if (got == bytes && w.ok) {
        secs = t1 - t0;
    }
out:
    if (lfd >= 0) {
        close(lfd);
    }
    free(buf);
    return secs;
}

double
pt_dep_loopback(uint64_t bytes, int reps, int fresh)
{
    double best = -1;
    for (int i = 0; i < reps; i++) {
        double s = loop_once(bytes, fresh);
        if (s > 0 && (best < 0 || s < best)) {
            best = s;
        }
    }
    return best > 0 ? (double)bytes / best : 0;
}
