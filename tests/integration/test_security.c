/* test_security.c - the secure channel as operators deploy it: keys, pins, allowlists, limits. */
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

#include "runtime/keys.h"

/*
 * Like test_deploy.c (whose process helpers this file repeats): build/bin/petal-superlink,
 * petal-supernode and petal run as child processes on 127.0.0.1, output captured in files of a
 * fresh directory, every process killed by the teardown (process groups, then a sweep of the
 * processes carrying this suite's tag in their environment).
 *
 * Every test first makes identities with `petal keygen --out DIR`: the SuperLink (keys/sl), three
 * SuperNodes (keys/node0..2; node0 and node1 are in allow.txt, node2 is not) and two operators
 * (keys/op is in operators.txt, keys/op2 is not). The secure SuperLink runs with
 * --keys keys/sl --allow-nodes allow.txt --operators operators.txt.
 *
 * Cases: a run over the secure channel; a node pinning the wrong SuperLink key; a node that is
 * not allowed; operators without a key, with an unknown key, or pinning the wrong SuperLink; a
 * plain client on a secure port and a secure client on a plain port; a node that reconnects with
 * its key keeps its node id; no plain TCP on a public address without --insecure; the
 * pending-per-node and max-connections limits; the message-size and string-length limits.
 */

#define BIN_DIR PETAL_BUILD_DIR "/bin"
#define PETAL_BIN BIN_DIR "/petal"
#define SUPERLINK_BIN BIN_DIR "/petal-superlink"
#define SUPERNODE_BIN BIN_DIR "/petal-supernode"
#define TESTKIT_DIR PETAL_BUILD_DIR "/plugins/testkit"
#define TAG_VAR "PETAL_SECURITY_TEST_TAG"
#define CLI_TIMEOUT 30.0   /* one petal ls/nodes call */
#define FAST_TIMEOUT 10.0  /* a refusal: within seconds, never a hang */
#define START_TIMEOUT 15.0 /* a daemon's first sign of life */
#define RUN_TIMEOUT 90.0   /* a whole run */
#define MAX_DAEMONS 16
#define MAX_ARGS 48
#define PATH_CAP 1200

typedef struct proc {
    pid_t pid;
    int reaped;
    int status;
    char name[32];
    char out[PATH_CAP];
    char err[PATH_CAP];
} proc_t;

typedef struct tool_result {
    int code;  /* exit status, -1 when it ended by a signal */
    int signo; /* the signal that ended it, 0 if none */
    char *out;
    char *err;
} tool_result_t;

typedef struct superlink {
    proc_t *p;
    char fleet[96];   /* "127.0.0.1:PORT" */
    char control[96]; /* "127.0.0.1:PORT" */
} superlink_t;

/* A NULL-terminated argument vector being built. */
typedef struct args {
    const char *v[MAX_ARGS];
    int n;
} args_t;

static char rootdir[512]; /* the suite's directory; also the tag value */
static char workdir[1024];
static proc_t daemons[MAX_DAEMONS];
static int ndaemons;
static int file_counter;

/* Paths of this test's keys and key lists (under workdir). */
static char key_dir[6][PATH_CAP + 16];
static char sl_pub[PATH_CAP + 32], op_pub[PATH_CAP + 32];
static char allow_file[PATH_CAP], operators_file[PATH_CAP];
enum { K_SL, K_NODE0, K_NODE1, K_NODE2, K_OP, K_OP2 };
static const char *const key_names[6] = {"sl", "node0", "node1", "node2", "op", "op2"};

/* ---- Time, files, directories ------------------------------------------------------------ */

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void
nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static char *
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
static char *
text_of(const char *path)
{
    char *t = read_all(path, NULL);
    return t != NULL ? t : strdup("");
}

static void
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

static void
arg(args_t *a, const char *s)
{
    ck_assert_int_lt(a->n, MAX_ARGS - 1);
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
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
    snprintf(want, sizeof(want), "%s=%s", TAG_VAR, rootdir);
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
static int
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
static int
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

static void
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
        setrlimit(RLIMIT_CORE, &no_core);
        int in = open("/dev/null", O_RDONLY);
        int out = open(p->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(p->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || out < 0 || err < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
            dup2(err, 2) < 0) {
            _exit(126);
        }
        setenv(TAG_VAR, rootdir, 1);
        setenv("XDG_CACHE_HOME", cache, 1);
        unsetenv("PETAL_LOG_LEVEL");
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    setpgid(pid, pid); /* also here, so a kill right after the fork finds the group */
    p->pid = pid;
}

/* A long-lived child: killed in the teardown whatever happens. */
static proc_t *
daemon_spawn(const char *name, const args_t *a)
{
    ck_assert_int_lt(ndaemons, MAX_DAEMONS);
    proc_t *p = &daemons[ndaemons++];
    spawn_into(p, name, a->v);
    return p;
}

static void
tool_free(tool_result_t *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof(*r));
}

/* Runs a->v and waits for it, at most `timeout` seconds (a longer run fails the test). */
static void
run_args(tool_result_t *r, double timeout, const args_t *a)
{
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
static void
run_tool(tool_result_t *r, double timeout, const char *bin, ...)
{
    args_t a = {.n = 0};
    arg(&a, bin);
    va_list ap;
    va_start(ap, bin);
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL) {
        arg(&a, s);
    }
    va_end(ap);
    run_args(r, timeout, &a);
}

static void
assert_ok(const tool_result_t *r, const char *what)
{
    ck_assert_msg(r->code == 0, "%s exited %d\nstdout:\n%s\nstderr:\n%s", what, r->code, r->out,
                  r->err);
}

/* A refusal: exit status `code` (-2: any non-zero) and every needle on stderr. */
static void
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
static int
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
static int
daemon_exit(proc_t *p, double timeout)
{
    ck_assert_msg(proc_wait(p, timeout), "%s is still running after %.0f s\nstderr:\n%s", p->name,
                  timeout, text_of(p->err));
    ck_assert_msg(WIFEXITED(p->status), "%s ended by signal %d\nstderr:\n%s", p->name,
                  WIFSIGNALED(p->status) ? WTERMSIG(p->status) : 0, text_of(p->err));
    return WEXITSTATUS(p->status);
}

static void
assert_file_has(const char *path, const char *what, const char *needle)
{
    char *t = text_of(path);
    ck_assert_msg(strstr(t, needle) != NULL, "%s lacks \"%s\":\n%s", what, needle, t);
    free(t);
}

/* ---- Keys ------------------------------------------------------------------------------------ */

/* The fingerprint ("ed25519:...") of a petal.pub. */
static void
fingerprint_of(const char *pub, char out[PT_KEY_FPR_SIZE])
{
    uint8_t pk[PT_KEY_PUBLIC_BYTES];
    char err[512] = "";
    ck_assert_msg(pt_pubkey_load(pub, pk, err, sizeof(err)) == 0, "%s: %s", pub, err);
    pt_key_fingerprint(pk, out);
}

/* Appends the petal.pub of keys/<name> to `list`. */
static void
append_pub(const char *list, int key)
{
    char pub[PATH_CAP + 32];
    snprintf(pub, sizeof(pub), "%s/" PT_KEY_PUBLIC_FILE, key_dir[key]);
    size_t len;
    char *text = read_all(pub, &len);
    ck_assert_msg(text != NULL, "petal keygen wrote no %s", pub);
    FILE *f = fopen(list, "a");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fwrite(text, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
    free(text);
}

/* `petal keygen --out keys/NAME` for every identity, then allow.txt and operators.txt. */
static void
make_keys(void)
{
    char keys[PATH_CAP];
    work_path(keys, sizeof(keys), "keys");
    ck_assert_int_eq(mkdir(keys, 0700), 0);
    for (int i = 0; i < 6; i++) {
        snprintf(key_dir[i], sizeof(key_dir[i]), "%s/%s", keys, key_names[i]);
        tool_result_t r;
        run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "keygen", "--out", key_dir[i], NULL);
        assert_ok(&r, "petal keygen");
        tool_free(&r);
    }
    snprintf(sl_pub, sizeof(sl_pub), "%s/" PT_KEY_PUBLIC_FILE, key_dir[K_SL]);
    snprintf(op_pub, sizeof(op_pub), "%s/" PT_KEY_PUBLIC_FILE, key_dir[K_OP]);
    work_path(allow_file, sizeof(allow_file), "allow.txt");
    work_path(operators_file, sizeof(operators_file), "operators.txt");
    append_pub(allow_file, K_NODE0);
    append_pub(allow_file, K_NODE1);
    append_pub(operators_file, K_OP);
}

/* ---- The daemons ----------------------------------------------------------------------------- */

/* Starts petal-superlink: secure (keys/sl, allow.txt, operators.txt) or --insecure, with the
 * extra arguments; addresses default to 127.0.0.1:0. Returns once it printed where it listens. */
static void
superlink_start(superlink_t *l, int secure, const args_t *extra)
{
    static char cache[PATH_CAP];
    args_t a = {.n = 0};
    int fleet = 0, control = 0;
    for (int i = 0; extra != NULL && i < extra->n; i++) {
        fleet |= strcmp(extra->v[i], "--fleet-address") == 0;
        control |= strcmp(extra->v[i], "--control-address") == 0;
    }
    work_path(cache, sizeof(cache), "superlink-cache");
    arg(&a, SUPERLINK_BIN);
    arg(&a, "--cache-dir");
    arg(&a, cache);
    if (secure) {
        arg(&a, "--keys");
        arg(&a, key_dir[K_SL]);
        arg(&a, "--allow-nodes");
        arg(&a, allow_file);
        arg(&a, "--operators");
        arg(&a, operators_file);
    } else {
        arg(&a, "--insecure");
    }
    if (!fleet) {
        arg(&a, "--fleet-address");
        arg(&a, "127.0.0.1:0");
    }
    if (!control) {
        arg(&a, "--control-address");
        arg(&a, "127.0.0.1:0");
    }
    for (int i = 0; extra != NULL && i < extra->n; i++) {
        arg(&a, extra->v[i]);
    }
    memset(l, 0, sizeof(*l));
    l->p = daemon_spawn("superlink", &a);
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

/* Starts a secure SuperNode with identity keys/<key> pinning `pin` (NULL: keys/sl/petal.pub),
 * as partition `partition` of `partitions`, with the extra arguments (NULL-terminated). */
static proc_t *
supernode_start(const superlink_t *l, int key, const char *pin, int partition, int partitions, ...)
{
    static char configs[MAX_DAEMONS][96];
    static char caches[MAX_DAEMONS][PATH_CAP];
    static int next;
    int slot = next++ % MAX_DAEMONS;
    char name[64];
    snprintf(configs[slot], sizeof(configs[slot]), "partition-id=%d num-partitions=%d", partition,
             partitions);
    snprintf(name, sizeof(name), "%s-cache", key_names[key]);
    work_path(caches[slot], sizeof(caches[slot]), name);
    args_t a = {.n = 0};
    arg(&a, SUPERNODE_BIN);
    arg(&a, "--superlink");
    arg(&a, l->fleet);
    arg(&a, "--keys");
    arg(&a, key_dir[key]);
    arg(&a, "--superlink-key");
    arg(&a, pin != NULL ? pin : sl_pub);
    arg(&a, "--node-config");
    arg(&a, configs[slot]);
    arg(&a, "--cache-dir");
    arg(&a, caches[slot]);
    va_list ap;
    va_start(ap, partitions);
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL) {
        arg(&a, s);
    }
    va_end(ap);
    return daemon_spawn(key_names[key], &a);
}

/* The node id the SuperNode reports in its latest "registered ... as node N" line. */
static uint64_t
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

/* petal CMD --superlink CONTROL --keys keys/<op> --superlink-key keys/sl/petal.pub, then the
 * extra arguments (NULL-terminated). */
static void
cli(tool_result_t *r, double timeout, const superlink_t *l, const char *cmd, int op, ...)
{
    args_t a = {.n = 0};
    arg(&a, PETAL_BIN);
    arg(&a, cmd);
    arg(&a, "--superlink");
    arg(&a, l->control);
    arg(&a, "--keys");
    arg(&a, key_dir[op]);
    arg(&a, "--superlink-key");
    arg(&a, sl_pub);
    va_list ap;
    va_start(ap, op);
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL) {
        arg(&a, s);
    }
    va_end(ap);
    run_args(r, timeout, &a);
}

static int
count_text(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) {
        n++;
    }
    return n;
}

/* Waits until `want` nodes are online (asked with the operator's key); returns the listing. */
static char *
wait_online(const superlink_t *l, int want, double timeout)
{
    double deadline = now_s() + timeout;
    for (;;) {
        tool_result_t r;
        cli(&r, CLI_TIMEOUT, l, "nodes", K_OP, "--format", "json", NULL);
        assert_ok(&r, "petal nodes");
        int online = count_text(r.out, "\"online\": true");
        if (online == want) {
            char *out = r.out;
            r.out = NULL;
            tool_free(&r);
            return out;
        }
        ck_assert_msg(now_s() < deadline, "%d nodes online after %.0f s, expected %d:\n%s", online,
                      timeout, want, r.out);
        tool_free(&r);
        nap_ms(100);
    }
}

/* ---- Fixtures ---------------------------------------------------------------------------------
 */

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
            return;
        }
        nap_ms(10);
    }
}

static void
suite_setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(rootdir, sizeof(rootdir), "%s/petal-security-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(rootdir) == NULL) {
        rootdir[0] = '\0';
    }
}

static void
suite_teardown(void)
{
    sweep_tagged();
    reap_orphans();
    if (getenv("PETAL_TEST_KEEP") != NULL && rootdir[0] != '\0') {
        fprintf(stderr, "test_security: PETAL_TEST_KEEP: the logs stay in %s\n", rootdir);
        rootdir[0] = '\0';
    }
    if (rootdir[0] != '\0') {
        nftw(rootdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        rootdir[0] = '\0';
    }
}

static void
setup(void)
{
    ck_assert_msg(rootdir[0] != '\0', "cannot create a temporary directory");
    sweep_tagged();
    snprintf(workdir, sizeof(workdir), "%s/test-XXXXXX", rootdir);
    ck_assert_ptr_nonnull(mkdtemp(workdir));
    ndaemons = 0;
    file_counter = 0;
    atexit(kill_all);
    make_keys();
}

static void
teardown(void)
{
    kill_all();
}

/* ---- 1. A run over the secure channel ---------------------------------------------------------
 */

START_TEST(test_secure_run)
{
    superlink_t l;
    superlink_start(&l, 1, NULL);
    proc_t *n0 = supernode_start(&l, K_NODE0, NULL, 0, 2, NULL);
    uint64_t id0 = supernode_id(n0);
    proc_t *n1 = supernode_start(&l, K_NODE1, NULL, 1, 2, NULL);
    uint64_t id1 = supernode_id(n1);
    ck_assert_uint_ne(id0, id1);
    free(wait_online(&l, 2, START_TIMEOUT));

    tool_result_t r;
    cli(&r, RUN_TIMEOUT, &l, "run", K_OP, TESTKIT_DIR, "--stream", "--run-config",
        "num-server-rounds=2", NULL);
    assert_ok(&r, "petal run over the secure channel");
    ck_assert_msg(strstr(r.out, "run 1 submitted") && strstr(r.out, "round 2/2"), "stdout:\n%s",
                  r.out);
    tool_free(&r);
    cli(&r, CLI_TIMEOUT, &l, "ls", K_OP, "--format", "json", NULL);
    assert_ok(&r, "petal ls");
    ck_assert_msg(strstr(r.out, "finished:completed") != NULL, "petal ls:\n%s", r.out);
    tool_free(&r);

    /* The SuperLink knows each node by its key, and says so. */
    char fpr[PT_KEY_FPR_SIZE], pub[PATH_CAP + 32], want[160];
    snprintf(pub, sizeof(pub), "%s/" PT_KEY_PUBLIC_FILE, key_dir[K_NODE0]);
    fingerprint_of(pub, fpr);
    snprintf(want, sizeof(want), "node %llu registered from", (unsigned long long)id0);
    assert_file_has(l.p->err, "the SuperLink's log", want);
    assert_file_has(l.p->err, "the SuperLink's log", fpr);
    ck_assert_msg(!proc_exited(n0) && !proc_exited(n1), "a SuperNode ended");
}
END_TEST

/* ---- 2. A node that pins another key does not talk to the SuperLink ---------------------------
 */

START_TEST(test_wrong_superlink_key)
{
    superlink_t l;
    superlink_start(&l, 1, NULL);
    /* The operator's petal.pub is a valid key, but not the SuperLink's. */
    proc_t *n0 = supernode_start(&l, K_NODE0, op_pub, 0, 1, NULL);
    int code = daemon_exit(n0, FAST_TIMEOUT);
    char expected[PT_KEY_FPR_SIZE], actual[PT_KEY_FPR_SIZE];
    fingerprint_of(op_pub, expected);
    fingerprint_of(sl_pub, actual);
    char *err = text_of(n0->err);
    ck_assert_msg(code == 1 && strstr(err, "not the pinned one") != NULL &&
                      strstr(err, expected) != NULL && strstr(err, actual) != NULL &&
                      strstr(err, op_pub) != NULL,
                  "the node exited %d; expected 1 and a message with the pinned key %s (%s) and "
                  "the presented key %s:\n%s",
                  code, expected, op_pub, actual, err);
    ck_assert_msg(strstr(err, " as node ") == NULL, "the node registered anyway:\n%s", err);
    free(err);

    /* The CLI pins the same way: an operator pinning the wrong key is refused. */
    tool_result_t r;
    run_tool(&r, FAST_TIMEOUT, PETAL_BIN, "ls", "--superlink", l.control, "--keys", key_dir[K_OP],
             "--superlink-key", op_pub, NULL);
    assert_refused(&r, 1, actual, NULL);
    tool_free(&r);
}
END_TEST

/* ---- 3. A node that is not on --allow-nodes is refused; the others keep serving ----------- */

START_TEST(test_node_not_allowed)
{
    superlink_t l;
    superlink_start(&l, 1, NULL);
    proc_t *n0 = supernode_start(&l, K_NODE0, NULL, 0, 2, NULL);
    supernode_id(n0);
    proc_t *n2 = supernode_start(&l, K_NODE2, NULL, 1, 2, "--max-retries", "1", NULL);
    int code = daemon_exit(n2, FAST_TIMEOUT + 5);
    char fpr[PT_KEY_FPR_SIZE], pub[PATH_CAP + 32];
    snprintf(pub, sizeof(pub), "%s/" PT_KEY_PUBLIC_FILE, key_dir[K_NODE2]);
    fingerprint_of(pub, fpr);
    char *err = text_of(n2->err);
    ck_assert_msg(
        code == 1 && strstr(err, "refused") != NULL && strstr(err, fpr) != NULL &&
            strstr(err, allow_file) != NULL && strstr(err, " as node ") == NULL,
        "node2 (not allowed) exited %d; expected 1, refused, naming its key %s and %s:\n%s", code,
        fpr, allow_file, err);
    free(err);
    /* The SuperLink logged the refusal, naming the key. */
    assert_file_has(l.p->err, "the SuperLink's log", fpr);

    /* The allowed nodes keep serving: node1 joins and a run completes. */
    proc_t *n1 = supernode_start(&l, K_NODE1, NULL, 1, 2, NULL);
    supernode_id(n1);
    char *json = wait_online(&l, 2, START_TIMEOUT);
    free(json);
    tool_result_t r;
    cli(&r, RUN_TIMEOUT, &l, "run", K_OP, TESTKIT_DIR, "--stream", "--run-config",
        "num-server-rounds=1", NULL);
    assert_ok(&r, "petal run after a refused node");
    tool_free(&r);
}
END_TEST

/* ---- 4. Operators without a key, or with an unknown one --------------------------------------
 */

START_TEST(test_operator_refused)
{
    superlink_t l;
    superlink_start(&l, 1, NULL);
    tool_result_t r;
    /* No key at all: refused before connecting (a usage error), saying what to pass. */
    run_tool(&r, FAST_TIMEOUT, PETAL_BIN, "ls", "--superlink", l.control, NULL);
    assert_refused(&r, 2, "--keys", "--superlink-key", NULL);
    tool_free(&r);
    run_tool(&r, FAST_TIMEOUT, PETAL_BIN, "ls", "--superlink", l.control, "--superlink-key", sl_pub,
             NULL);
    assert_refused(&r, 2, "--keys", NULL);
    tool_free(&r);

    /* A key the SuperLink does not list: refused at the handshake, the reason on both sides. */
    char fpr[PT_KEY_FPR_SIZE], pub[PATH_CAP + 32];
    snprintf(pub, sizeof(pub), "%s/" PT_KEY_PUBLIC_FILE, key_dir[K_OP2]);
    fingerprint_of(pub, fpr);
    cli(&r, FAST_TIMEOUT, &l, "ls", K_OP2, NULL);
    assert_refused(&r, 1, "refused", fpr, operators_file, NULL);
    tool_free(&r);
    cli(&r, FAST_TIMEOUT, &l, "run", K_OP2, TESTKIT_DIR, NULL);
    assert_refused(&r, 1, "refused", fpr, NULL);
    tool_free(&r);
    assert_file_has(l.p->err, "the SuperLink's log", fpr);

    /* The listed operator is served. */
    cli(&r, CLI_TIMEOUT, &l, "ls", K_OP, NULL);
    assert_ok(&r, "petal ls with the operator's key");
    tool_free(&r);
}
END_TEST

/* ---- 5. Plain and secure peers meet: a clear error, fast ------------------------------------ */

START_TEST(test_plain_meets_secure)
{
    superlink_t l;
    superlink_start(&l, 1, NULL);
    tool_result_t r;
    run_tool(&r, FAST_TIMEOUT, PETAL_BIN, "ls", "--superlink", l.control, "--insecure", NULL);
    assert_refused(&r, 1, "secure channel", "--keys", NULL);
    tool_free(&r);
    run_tool(&r, FAST_TIMEOUT + 5, SUPERNODE_BIN, "--superlink", l.fleet, "--insecure",
             "--max-retries", "1", NULL);
    assert_refused(&r, 1, "giving up", "secure channel", NULL);
    tool_free(&r);

    /* The reverse: a secure CLI and a secure node against a plain SuperLink. */
    superlink_t plain;
    superlink_start(&plain, 0, NULL);
    cli(&r, FAST_TIMEOUT, &plain, "ls", K_OP, NULL);
    assert_refused(&r, 1, "--insecure", NULL);
    tool_free(&r);
    proc_t *n0 = supernode_start(&plain, K_NODE0, NULL, 0, 1, "--max-retries", "1", NULL);
    ck_assert_int_eq(daemon_exit(n0, FAST_TIMEOUT + 5), 1);
    assert_file_has(n0->err, "the secure node's log", "--insecure");
    ck_assert_msg(!proc_exited(l.p) && !proc_exited(plain.p), "a SuperLink died");
}
END_TEST

/* ---- 6. A node reconnecting with its key keeps its node id --------------------------------- */

START_TEST(test_reconnect_keeps_id)
{
    superlink_t l;
    superlink_start(&l, 1, NULL);
    proc_t *n0 = supernode_start(&l, K_NODE0, NULL, 0, 2, NULL);
    uint64_t id0 = supernode_id(n0);
    proc_t *n1 = supernode_start(&l, K_NODE1, NULL, 1, 2, NULL);
    uint64_t id1 = supernode_id(n1);
    ck_assert_uint_ne(id0, id1);
    proc_kill_group(n0);
    proc_t *again = supernode_start(&l, K_NODE0, NULL, 0, 2, NULL);
    ck_assert_uint_eq(supernode_id(again), id0);
    free(wait_online(&l, 2, START_TIMEOUT));
}
END_TEST

/* ---- 7. No plain TCP on a public address without --insecure --------------------------------- */

START_TEST(test_public_address_needs_keys)
{
    tool_result_t r;
    run_tool(&r, FAST_TIMEOUT, SUPERLINK_BIN, "--fleet-address", "0.0.0.0:0", "--control-address",
             "127.0.0.1:0", NULL);
    assert_refused(&r, 2, "0.0.0.0:0", "non-loopback", "--keys", "--insecure", NULL);
    tool_free(&r);
    /* On loopback too, plain TCP must be asked for. */
    run_tool(&r, FAST_TIMEOUT, SUPERLINK_BIN, "--fleet-address", "127.0.0.1:0", "--control-address",
             "127.0.0.1:0", NULL);
    assert_refused(&r, 2, "--keys", "--insecure", NULL);
    tool_free(&r);
    /* --keys needs --operators; --insecure does not go with --keys. */
    run_tool(&r, FAST_TIMEOUT, SUPERLINK_BIN, "--keys", key_dir[K_SL], "--fleet-address",
             "127.0.0.1:0", "--control-address", "127.0.0.1:0", NULL);
    assert_refused(&r, 2, "--operators", NULL);
    tool_free(&r);
    run_tool(&r, FAST_TIMEOUT, SUPERLINK_BIN, "--insecure", "--keys", key_dir[K_SL], NULL);
    assert_refused(&r, 2, "--insecure", "--keys", NULL);
    tool_free(&r);
    /* With --insecure it serves 0.0.0.0, and warns. */
    superlink_t l;
    args_t extra = {.n = 0};
    arg(&extra, "--fleet-address");
    arg(&extra, "0.0.0.0:0");
    superlink_start(&l, 0, &extra);
    ck_assert_msg(strncmp(l.fleet, "0.0.0.0:", 8) == 0, "fleet address %s", l.fleet);
    ck_assert(wait_text(l.p, 2, "warning: --insecure", START_TIMEOUT));
    /* With keys it serves 0.0.0.0 too. */
    superlink_t s;
    superlink_start(&s, 1, &extra);
    ck_assert_msg(strncmp(s.fleet, "0.0.0.0:", 8) == 0, "fleet address %s", s.fleet);
}
END_TEST

/* ---- 8. The pending-per-node and max-connections limits ------------------------------------ */

START_TEST(test_pending_per_node_limit)
{
    superlink_t l;
    args_t extra = {.n = 0};
    arg(&extra, "--max-pending-per-node");
    arg(&extra, "1");
    superlink_start(&l, 1, &extra);
    proc_t *n0 = supernode_start(&l, K_NODE0, NULL, 0, 1, NULL);
    uint64_t id0 = supernode_id(n0);
    free(wait_online(&l, 1, START_TIMEOUT));
    const char *one = "num-server-rounds=1 min-train-nodes=1 min-evaluate-nodes=1 "
                      "min-available-nodes=1 fraction-evaluate=0";
    char slow[256];
    snprintf(slow, sizeof(slow), "%s slow-ms=4000", one);
    /* Run 1 keeps the node busy with one instruction; run 2's instruction is one too many. */
    tool_result_t r;
    cli(&r, CLI_TIMEOUT, &l, "run", K_OP, TESTKIT_DIR, "--run-config", slow, NULL);
    assert_ok(&r, "petal run (slow)");
    tool_free(&r);
    ck_assert(wait_text(n0, 2, "testkit: train partition=0", START_TIMEOUT));
    cli(&r, RUN_TIMEOUT, &l, "run", K_OP, TESTKIT_DIR, "--stream", "--run-config", one, NULL);
    /* Its ServerApp's first message to the node (the initial arrays) was not queued: the error
     * reply names the limit, and the run fails with it. */
    char want[200];
    snprintf(want, sizeof(want),
             "MESSAGE_UNAVAILABLE: node %llu already has 1 instructions waiting for a reply, the "
             "SuperLink's limit (--max-pending-per-node 1)",
             (unsigned long long)id0);
    assert_refused(&r, 1, "finished:failed", want, NULL);
    tool_free(&r);
    assert_file_has(l.p->err, "the SuperLink's log", want);
    /* Run 1 is not affected. */
    cli(&r, RUN_TIMEOUT, &l, "log", K_OP, "1", "--follow", NULL);
    assert_ok(&r, "petal log 1 --follow");
    ck_assert_msg(strstr(r.out, "finished:completed") != NULL, "run 1's log:\n%s", r.out);
    tool_free(&r);
}
END_TEST

START_TEST(test_max_connections)
{
    superlink_t l;
    args_t extra = {.n = 0};
    arg(&extra, "--max-connections");
    arg(&extra, "1");
    superlink_start(&l, 1, &extra);
    proc_t *n0 = supernode_start(&l, K_NODE0, NULL, 0, 2, NULL);
    supernode_id(n0);
    proc_t *n1 = supernode_start(&l, K_NODE1, NULL, 1, 2, "--max-retries", "1", NULL);
    ck_assert_int_eq(daemon_exit(n1, FAST_TIMEOUT + 5), 1);
    char *err = text_of(n1->err);
    ck_assert_msg(strstr(err, "giving up") != NULL && strstr(err, "--max-connections 1") != NULL &&
                      strstr(err, " as node ") == NULL,
                  "node1's log does not show the connection limit:\n%s", err);
    free(err);
    assert_file_has(l.p->err, "the SuperLink's log", "fleet connection from");
    assert_file_has(l.p->err, "the SuperLink's log", "refused: 1 open, the limit is 1");
    /* The node within the limit keeps serving; the CLI is not counted with the nodes. */
    free(wait_online(&l, 1, START_TIMEOUT));
    ck_assert(!proc_exited(n0));
}
END_TEST

/* Wire limits set by flags: a request over one is refused (the connection closed, the CLI says
 * so with a hint), the SuperLink logs which limit, and it keeps serving. */
START_TEST(test_message_limits)
{
    superlink_t l;
    args_t extra = {.n = 0};
    arg(&extra, "--max-message-size");
    arg(&extra, "4K");
    superlink_start(&l, 1, &extra);
    tool_result_t r;
    cli(&r, FAST_TIMEOUT, &l, "run", K_OP, TESTKIT_DIR, NULL); /* its bundle is larger */
    assert_refused(&r, 1, "closed", "--max-message-size", NULL);
    tool_free(&r);
    assert_file_has(l.p->err, "the SuperLink's log", "exceeds the limit of 4096 bytes");
    cli(&r, CLI_TIMEOUT, &l, "ls", K_OP, NULL);
    assert_ok(&r, "petal ls after a refused request");
    tool_free(&r);

    superlink_t s;
    args_t strings = {.n = 0};
    arg(&strings, "--max-string-length");
    arg(&strings, "64");
    superlink_start(&s, 1, &strings);
    char cfg[160];
    snprintf(cfg, sizeof(cfg), "note=%080d", 7);
    cli(&r, FAST_TIMEOUT, &s, "run", K_OP, TESTKIT_DIR, "--run-config", cfg, NULL);
    assert_refused(&r, 1, "closed", NULL);
    tool_free(&r);
    assert_file_has(s.p->err, "the SuperLink's log", "of 80 bytes exceeds the limit of 64 bytes");

    /* Bad values are usage errors that name the flag. */
    run_tool(&r, FAST_TIMEOUT, SUPERLINK_BIN, "--insecure", "--max-frame-size", "12", NULL);
    assert_refused(&r, 2, "--max-frame-size", NULL);
    tool_free(&r);
    run_tool(&r, FAST_TIMEOUT, SUPERLINK_BIN, "--insecure", "--max-array-rank", "17", NULL);
    assert_refused(&r, 2, "--max-array-rank", NULL);
    tool_free(&r);
    run_tool(&r, FAST_TIMEOUT, SUPERNODE_BIN, "--insecure", "--idle-timeout", "soon", NULL);
    assert_refused(&r, 2, "--idle-timeout", NULL);
    tool_free(&r);
}
END_TEST

static Suite *
security_suite(void)
{
    Suite *s = suite_create("security");
    TCase *tc = tcase_create("secure channel");
    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_secure_run);
    tcase_add_test(tc, test_wrong_superlink_key);
    tcase_add_test(tc, test_node_not_allowed);
    tcase_add_test(tc, test_operator_refused);
    tcase_add_test(tc, test_plain_meets_secure);
    tcase_add_test(tc, test_reconnect_keeps_id);
    suite_add_tcase(s, tc);

    tc = tcase_create("hardening");
    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_public_address_needs_keys);
    tcase_add_test(tc, test_pending_per_node_limit);
    tcase_add_test(tc, test_max_connections);
    tcase_add_test(tc, test_message_limits);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    /* Orphaned grandchildren (a test process that crashed) are reparented to this process. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    SRunner *sr = srunner_create(security_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
