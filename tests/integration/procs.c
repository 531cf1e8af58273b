/* procs.c - integration test helpers: petal daemons and CLI runs as child processes. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "procs.h"

static char suite_name[64] = "test";
static char rootdir[512]; /* the suite's directory; also the tag value */
static char workdir[1024];
static proc_t daemons[PROCS_MAX_DAEMONS];
static int ndaemons;
static int file_counter;

/* ---- Time, files, directories ------------------------------------------------------------ */

double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void
nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

char *
read_all(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 4096, len = 0, n;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
    }
    fclose(f);
    buf[len] = '\0';
    if (len_out != NULL) {
        *len_out = len;
    }
    return buf;
}

/* A file's text, "" when it cannot be read (for failure messages). */
char *
text_of(const char *path)
{
    char *t = read_all(path, NULL);
    return t != NULL ? t : strdup("");
}

void
work_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", workdir, name);
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* ---- Argument vectors ----------------------------------------------------------------------- */

void
args_add(args_t *a, const char *s)
{
    ck_assert_int_lt(a->n, PROCS_MAX_ARGS - 1);
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
}

void
args_add_va(args_t *a, va_list ap)
{
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL) {
        args_add(a, s);
    }
}

/* ---- Processes ------------------------------------------------------------------------------ */

/* SIGKILLs every process whose environment carries this suite's tag (by pid, one by one). */
static void
sweep_tagged(void)
{
    static char env[1 << 18];
    char want[700];
    if (rootdir[0] == '\0') {
        return;
    }
    snprintf(want, sizeof(want), "%s=%s", PROCS_TAG_VAR, rootdir);
    DIR *d = opendir("/proc");
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end != '\0' || pid <= 1 || pid == (long)getpid()) {
            continue;
        }
        char path[64];
        snprintf(path, sizeof(path), "/proc/%ld/environ", pid);
        FILE *f = fopen(path, "rb");
        if (f == NULL) {
            continue;
        }
        size_t n = fread(env, 1, sizeof(env) - 1, f);
        fclose(f);
        env[n] = '\0';
        for (size_t i = 0; i < n; i += strlen(env + i) + 1) {
            if (strcmp(env + i, want) == 0) {
                kill((pid_t)pid, SIGKILL);
                break;
            }
        }
    }
    closedir(d);
}

/* Whether p has ended (reaps it the first time). */
int
proc_exited(proc_t *p)
{
    if (p->reaped) {
        return 1;
    }
    int st;
    pid_t w = waitpid(p->pid, &st, WNOHANG);
    if (w == p->pid) {
        p->reaped = 1;
        p->status = st;
        return 1;
    }
    return 0;
}

/* Waits up to `timeout` seconds for p to end; 1 if it did. */
int
proc_wait(proc_t *p, double timeout)
{
    double deadline = now_s() + timeout;
    while (!proc_exited(p)) {
        if (now_s() >= deadline) {
            return 0;
        }
        nap_ms(10);
    }
    return 1;
}

void
proc_kill_group(proc_t *p)
{
    if (p->pid > 0 && !p->reaped) {
        kill(-p->pid, SIGKILL);
        kill(p->pid, SIGKILL);
        int st;
        if (waitpid(p->pid, &st, 0) == p->pid) {
            p->reaped = 1;
            p->status = st;
        }
    }
}

/* Ends every process this test started (daemons first, then anything tagged). */
static void
kill_all(void)
{
    for (int i = 0; i < ndaemons; i++) {
        proc_kill_group(&daemons[i]);
    }
    ndaemons = 0;
    sweep_tagged();
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

/* Starts argv[0] with argv, output to <workdir>/<n>-<name>.stdout/.stderr. */
static void
spawn_into(proc_t *p, const char *name, const char *const *argv)
{
    memset(p, 0, sizeof(*p));
    int idx = file_counter++;
    snprintf(p->name, sizeof(p->name), "%s", name);
    snprintf(p->out, sizeof(p->out), "%s/%03d-%s.stdout", workdir, idx, name);
    snprintf(p->err, sizeof(p->err), "%s/%03d-%s.stderr", workdir, idx, name);
    char cache[PATH_CAP];
    work_path(cache, sizeof(cache), "xdg-cache");
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(125);
        }
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core); /* crash-node segfaults on purpose */
        int in = open("/dev/null", O_RDONLY);
        int out = open(p->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(p->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || out < 0 || err < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
            dup2(err, 2) < 0) {
            _exit(126);
        }
        setenv(PROCS_TAG_VAR, rootdir, 1);
        setenv("XDG_CACHE_HOME", cache, 1);
        unsetenv("PETAL_LOG_LEVEL");
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    setpgid(pid, pid); /* also here, so a kill right after the fork finds the group */
    p->pid = pid;
}

/* A long-lived child: killed in the teardown whatever happens. */
proc_t *
daemon_spawn(const char *name, const char *const *argv)
{
    ck_assert_int_lt(ndaemons, PROCS_MAX_DAEMONS);
    proc_t *p = &daemons[ndaemons++];
    spawn_into(p, name, argv);
    return p;
}

void
tool_free(tool_result_t *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof(*r));
}

/* Runs a->v and waits for it, at most `timeout` seconds (a longer run fails the test). */
void
run_args(tool_result_t *r, double timeout, const args_t *a)
{
    ck_assert_int_gt(a->n, 0);
    const char *bin = a->v[0];
    const char *base = strrchr(bin, '/');
    proc_t p;
    spawn_into(&p, base != NULL ? base + 1 : bin, a->v);
    int ended = proc_wait(&p, timeout);
    if (!ended) {
        proc_kill_group(&p);
    }
    memset(r, 0, sizeof(*r));
    r->code = WIFEXITED(p.status) ? WEXITSTATUS(p.status) : -1;
    r->signo = WIFSIGNALED(p.status) ? WTERMSIG(p.status) : 0;
    r->out = text_of(p.out);
    r->err = text_of(p.err);
    ck_assert_msg(ended, "%s %s did not end within %.0f s\nstdout:\n%s\nstderr:\n%s", bin,
                  a->n > 1 ? a->v[1] : "", timeout, r->out, r->err);
    ck_assert_msg(r->signo == 0, "%s %s crashed with signal %d (%s)\nstdout:\n%s\nstderr:\n%s", bin,
                  a->n > 1 ? a->v[1] : "", r->signo, strsignal(r->signo), r->out, r->err);
    ck_assert_msg(r->code != 127 && r->code != 126, "cannot start %s (is it built?)", bin);
}

/* Runs bin with the NULL-terminated arguments (see run_args). */
void
run_tool(tool_result_t *r, double timeout, const char *bin, ...)
{
    args_t a = {.n = 0};
    args_add(&a, bin);
    va_list ap;
    va_start(ap, bin);
    args_add_va(&a, ap);
    va_end(ap);
    run_args(r, timeout, &a);
}

void
assert_ok(const tool_result_t *r, const char *what)
{
    ck_assert_msg(r->code == 0, "%s exited %d\nstdout:\n%s\nstderr:\n%s", what, r->code, r->out,
                  r->err);
}

/* A refusal: exit status `code` (-2: any non-zero) and every needle on stderr. */
void
assert_refused(const tool_result_t *r, int code, ...)
{
    ck_assert_msg(code == -2 ? r->code > 0 : r->code == code,
                  "exited %d, expected %s%d\nstdout:\n%s\nstderr:\n%s", r->code,
                  code == -2 ? "non-zero, not " : "", code == -2 ? 0 : code, r->out, r->err);
    va_list ap;
    va_start(ap, code);
    const char *needle;
    while ((needle = va_arg(ap, const char *)) != NULL) {
        ck_assert_msg(strstr(r->err, needle) != NULL, "stderr lacks \"%s\":\n%s", needle, r->err);
    }
    va_end(ap);
}

/* Waits until `needle` shows up in p's stdout (which = 1) or stderr (2); 1 if it did. */
int
wait_text(proc_t *p, int which, const char *needle, double timeout)
{
    double deadline = now_s() + timeout;
    for (;;) {
        char *t = read_all(which == 1 ? p->out : p->err, NULL);
        int found = t != NULL && strstr(t, needle) != NULL;
        free(t);
        if (found) {
            return 1;
        }
        if (now_s() >= deadline || proc_exited(p)) {
            t = read_all(which == 1 ? p->out : p->err, NULL);
            found = t != NULL && strstr(t, needle) != NULL;
            free(t);
            return found;
        }
        nap_ms(20);
    }
}

/* Waits for a daemon to exit by itself; returns its exit status (the test fails otherwise). */
int
daemon_exit(proc_t *p, double timeout)
{
    ck_assert_msg(proc_wait(p, timeout), "%s is still running after %.0f s\nstderr:\n%s", p->name,
                  timeout, text_of(p->err));
    ck_assert_msg(WIFEXITED(p->status), "%s ended by signal %d\nstderr:\n%s", p->name,
                  WIFSIGNALED(p->status) ? WTERMSIG(p->status) : 0, text_of(p->err));
    return WEXITSTATUS(p->status);
}

void
assert_file_has(const char *path, const char *what, const char *needle)
{
    char *t = text_of(path);
    ck_assert_msg(strstr(t, needle) != NULL, "%s lacks \"%s\":\n%s", what, needle, t);
    free(t);
}

/* ---- The daemons ----------------------------------------------------------------------------- */

/* Starts petal-superlink: --keys `keys` (with --allow-nodes/--operators when given) or
 * --insecure, then the extra arguments; ports default to 127.0.0.1:0. Returns once it printed
 * where it listens. */
void
superlink_start_keys(superlink_t *l, const char *keys, const char *allow_nodes,
                     const char *operators, const args_t *extra)
{
    static char cache[PATH_CAP];
    args_t a = {.n = 0};
    int fleet = 0, control = 0;
    for (int i = 0; extra != NULL && i < extra->n; i++) {
        fleet |= strcmp(extra->v[i], "--fleet-address") == 0;
        control |= strcmp(extra->v[i], "--control-address") == 0;
    }
    work_path(cache, sizeof(cache), "superlink-cache");
    args_add(&a, SUPERLINK_BIN);
    args_add(&a, "--cache-dir");
    args_add(&a, cache);
    if (keys != NULL) {
        args_add(&a, "--keys");
        args_add(&a, keys);
        if (allow_nodes != NULL) {
            args_add(&a, "--allow-nodes");
            args_add(&a, allow_nodes);
        }
        if (operators != NULL) {
            args_add(&a, "--operators");
            args_add(&a, operators);
        }
    } else {
        args_add(&a, "--insecure");
    }
    if (!fleet) {
        args_add(&a, "--fleet-address");
        args_add(&a, "127.0.0.1:0");
    }
    if (!control) {
        args_add(&a, "--control-address");
        args_add(&a, "127.0.0.1:0");
    }
    for (int i = 0; extra != NULL && i < extra->n; i++) {
        args_add(&a, extra->v[i]);
    }
    memset(l, 0, sizeof(*l));
    l->p = daemon_spawn("superlink", a.v);
    double deadline = now_s() + START_TIMEOUT;
    for (;;) {
        char *out = read_all(l->p->out, NULL);
        const char *line = out != NULL ? strstr(out, "petal-superlink: fleet ") : NULL;
        if (line != NULL && strchr(line, '\n') != NULL) {
            char f[96], c[96];
            int got = sscanf(line, "petal-superlink: fleet tcp://%95s control tcp://%95s", f, c);
            ck_assert_msg(got == 2, "cannot read the SuperLink's addresses from:\n%s", out);
            snprintf(l->fleet, sizeof(l->fleet), "%s", f);
            snprintf(l->control, sizeof(l->control), "%s", c);
            free(out);
            return;
        }
        free(out);
        if (proc_exited(l->p) || now_s() > deadline) {
            char *err = text_of(l->p->err);
            ck_abort_msg("petal-superlink did not start (%s)\nstderr:\n%s",
                         l->p->reaped ? "it exited" : "no address line in time", err);
        }
        nap_ms(20);
    }
}

/* Starts petal-superlink --insecure with the extra arguments (NULL-terminated). */
void
superlink_start(superlink_t *l, ...)
{
    args_t extra = {.n = 0};
    va_list ap;
    va_start(ap, l);
    args_add_va(&extra, ap);
    va_end(ap);
    superlink_start_keys(l, NULL, NULL, NULL, &extra);
}

/* Starts SuperNode `name` for partition `partition` of `partitions`, with the arguments a. */
proc_t *
supernode_start_args(const superlink_t *l, const char *name, int partition, int partitions,
                     const args_t *a)
{
    static char configs[PROCS_MAX_DAEMONS][96];
    static char caches[PROCS_MAX_DAEMONS][PATH_CAP];
    static int next;
    int slot = next++ % PROCS_MAX_DAEMONS;
    char cache_name[64];
    snprintf(configs[slot], sizeof(configs[slot]), "partition-id=%d num-partitions=%d", partition,
             partitions);
    snprintf(cache_name, sizeof(cache_name), "%s-cache", name);
    work_path(caches[slot], sizeof(caches[slot]), cache_name);
    args_t all = {.n = 0};
    args_add(&all, SUPERNODE_BIN);
    args_add(&all, "--superlink");
    args_add(&all, l->fleet);
    args_add(&all, "--node-config");
    args_add(&all, configs[slot]);
    args_add(&all, "--cache-dir");
    args_add(&all, caches[slot]);
    for (int i = 0; a != NULL && i < a->n; i++) {
        args_add(&all, a->v[i]);
    }
    return daemon_spawn(name, all.v);
}

/* Starts an insecure SuperNode for partition `partition` of `partitions` (key: --node-key or
 * NULL), with the extra arguments (NULL-terminated). */
proc_t *
supernode_start(const superlink_t *l, int partition, int partitions, const char *key, ...)
{
    args_t a = {.n = 0};
    char name[32];
    args_add(&a, "--insecure");
    if (key != NULL) {
        args_add(&a, "--node-key");
        args_add(&a, key);
    }
    va_list ap;
    va_start(ap, key);
    args_add_va(&a, ap);
    va_end(ap);
    snprintf(name, sizeof(name), "node%d", partition);
    return supernode_start_args(l, name, partition, partitions, &a);
}

/* The node id the SuperNode reports in its latest "registered ... as node N" line. */
uint64_t
supernode_id(proc_t *p)
{
    const char *key = " as node ";
    ck_assert_msg(wait_text(p, 2, key, START_TIMEOUT), "%s did not register:\n%s", p->name,
                  text_of(p->err));
    char *err = text_of(p->err);
    const char *last = NULL;
    for (const char *s = err; (s = strstr(s, key)) != NULL; s += strlen(key)) {
        last = s;
    }
    unsigned long long id = strtoull(last + strlen(key), NULL, 10);
    free(err);
    ck_assert_uint_gt(id, 0);
    return id;
}

/* ---- What the CLI reports ----------------------------------------------------------------- */

void
superlink_cli_args(const superlink_t *l, args_t *a)
{
    args_add(a, "--superlink");
    args_add(a, l->control);
    if (l->cli_keys == NULL) {
        args_add(a, "--insecure");
        return;
    }
    args_add(a, "--keys");
    args_add(a, l->cli_keys);
    if (l->cli_pin != NULL) {
        args_add(a, "--superlink-key");
        args_add(a, l->cli_pin);
    }
}

/* `petal CMD <how to reach l> --format json`. */
static void
cli_json(tool_result_t *r, const superlink_t *l, const char *cmd)
{
    args_t a = {.n = 0};
    args_add(&a, PETAL_BIN);
    args_add(&a, cmd);
    superlink_cli_args(l, &a);
    args_add(&a, "--format");
    args_add(&a, "json");
    run_args(r, CLI_TIMEOUT, &a);
}

char *
nodes_json(const superlink_t *l)
{
    tool_result_t r;
    cli_json(&r, l, "nodes");
    assert_ok(&r, "petal nodes");
    char *out = r.out;
    r.out = NULL;
    tool_free(&r);
    return out;
}

int
count_text(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) {
        n++;
    }
    return n;
}

/* Waits until `want` nodes are online; returns the listing. */
char *
wait_online(const superlink_t *l, int want, double timeout)
{
    double deadline = now_s() + timeout;
    for (;;) {
        char *json = nodes_json(l);
        int online = count_text(json, "\"online\": true");
        if (online == want) {
            return json;
        }
        ck_assert_msg(now_s() < deadline, "%d nodes online after %.0f s, expected %d:\n%s", online,
                      timeout, want, json);
        free(json);
        nap_ms(100);
    }
}

/* Copies the JSON string value of `key` found after `from` (before `end`) into buf. */
static int
json_str_field(const char *from, const char *end, const char *key, char *buf, size_t cap)
{
    char k[64];
    snprintf(k, sizeof(k), "\"%s\": \"", key);
    const char *p = strstr(from, k);
    if (p == NULL || (end != NULL && p > end)) {
        return -1;
    }
    p += strlen(k);
    size_t n = 0;
    for (; *p != '\0' && *p != '"' && n + 1 < cap; p++) {
        if (*p == '\\' && p[1] != '\0') {
            p++;
        }
        buf[n++] = *p;
    }
    buf[n] = '\0';
    return 0;
}

/* The status and reason `petal ls --format json` gives run `run_id`; 0, or -1 if unlisted. */
int
run_status(const superlink_t *l, int64_t run_id, char *status, size_t scap, char *reason,
           size_t rcap)
{
    tool_result_t r;
    cli_json(&r, l, "ls");
    assert_ok(&r, "petal ls");
    char key[64];
    snprintf(key, sizeof(key), "\"run-id\": %lld,", (long long)run_id);
    const char *p = strstr(r.out, key);
    int rc = -1;
    if (p != NULL) {
        const char *end = strchr(p, '}');
        ck_assert_msg(json_str_field(p, end, "status", status, scap) == 0 &&
                          json_str_field(p, end, "reason", reason, rcap) == 0,
                      "petal ls lacks status or reason:\n%s", r.out);
        rc = 0;
    }
    tool_free(&r);
    return rc;
}

/* Waits until run `run_id` has status `want`; returns the seconds it took. */
double
wait_run_status(const superlink_t *l, int64_t run_id, const char *want, char *reason, size_t rcap,
                double timeout)
{
    double start = now_s(), deadline = start + timeout;
    char status[64] = "";
    for (;;) {
        if (run_status(l, run_id, status, sizeof(status), reason, rcap) == 0 &&
            strcmp(status, want) == 0) {
            return now_s() - start;
        }
        ck_assert_msg(now_s() < deadline, "run %lld is \"%s\" after %.0f s, expected \"%s\"",
                      (long long)run_id, status, timeout, want);
        nap_ms(100);
    }
}

/* ---- Fixtures -------------------------------------------------------------------------------- */

void
procs_main_init(const char *suite)
{
    snprintf(suite_name, sizeof(suite_name), "%s", suite);
    /* Orphaned grandchildren (a test process that crashed) are reparented to this process. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
}

/* In the runner process: reaps what the sweep killed. */
static void
reap_orphans(void)
{
    double deadline = now_s() + 5;
    for (;;) {
        pid_t w = waitpid(-1, NULL, WNOHANG);
        if (w > 0) {
            continue;
        }
        if (w < 0 || now_s() > deadline) {
            return; /* ECHILD: none left */
        }
        nap_ms(10);
    }
}

void
procs_suite_setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(rootdir, sizeof(rootdir), "%s/petal-%s-XXXXXX", tmp && tmp[0] ? tmp : "/tmp",
             suite_name);
    if (mkdtemp(rootdir) == NULL) {
        rootdir[0] = '\0';
    }
}

void
procs_suite_teardown(void)
{
    sweep_tagged();
    reap_orphans();
    if (getenv("PETAL_TEST_KEEP") != NULL && rootdir[0] != '\0') {
        fprintf(stderr, "%s: PETAL_TEST_KEEP: the logs stay in %s\n", suite_name, rootdir);
        rootdir[0] = '\0';
    }
    if (rootdir[0] != '\0') {
        nftw(rootdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        rootdir[0] = '\0';
    }
}

void
procs_setup(void)
{
    ck_assert_msg(rootdir[0] != '\0', "cannot create a temporary directory");
    sweep_tagged(); /* anything an earlier failed test left */
    snprintf(workdir, sizeof(workdir), "%s/test-XXXXXX", rootdir);
    ck_assert_ptr_nonnull(mkdtemp(workdir));
    ndaemons = 0;
    file_counter = 0;
    atexit(kill_all); /* a failed assertion ends the test process without the teardown */
}

void
procs_teardown(void)
{
    kill_all();
}
