/* test_sim.c - `petal sim` as a user runs it: the real binary, the testkit app, bad inputs. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <petal/petal.h>

#include "runtime/buf.h"
#include "runtime/codec.h"

/*
 * Every test runs build/bin/petal as a child process with stdout and stderr captured in files
 * of a fresh temporary directory, under a guard: a run that does not end within RUN_TIMEOUT
 * seconds is killed and the test fails (a hang never blocks the suite). A run that ends by a
 * signal is a crash and always fails the test.
 *
 * The testkit app (apps/testkit/client.c) makes the results predictable: w starts at 0.25 * i,
 * partition p trains w + (p + 1) * 0.01 with num-examples p + 1, so one FedAvg round over the
 * replying partitions S adds sum_{p in S} 0.01 (p + 1)^2 / sum_{p in S} (p + 1) to every w[i].
 */

#define PETAL_BIN PETAL_BUILD_DIR "/bin/petal"
#define TESTKIT_DIR PETAL_BUILD_DIR "/plugins/testkit"
#define RUN_TIMEOUT 40.0
#define W_LEN 8
#define MAX_PARTITIONS 64
#define MAX_ROUNDS 16

typedef struct run_result {
    int exited;    /* ended by exit() */
    int code;      /* exit status when exited */
    int signo;     /* signal that ended it, 0 if none */
    int timed_out; /* killed by the guard */
    char *out;     /* captured stdout, NUL-terminated */
    char *err;     /* captured stderr */
} run_result_t;

static char rootdir[512];
static char workdir[1024];
static int run_counter;

/* ---- Files and temporary directories ---------------------------------------------------- */

static char *
read_all(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    size_t n;
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

static void
write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s: %s", path, strerror(errno));
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

static void
copy_file(const char *from, const char *to)
{
    size_t len;
    char *data = read_all(from, &len);
    ck_assert_msg(data != NULL, "cannot read %s (is it built?)", from);
    FILE *f = fopen(to, "wb");
    ck_assert_msg(f != NULL, "cannot create %s: %s", to, strerror(errno));
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
    free(data);
}

/* workdir/<name>, in a static rotating buffer (enough for one call's arguments). */
static const char *in_work(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static const char *
in_work(const char *fmt, ...)
{
    static char bufs[8][1400];
    static int next;
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", workdir, name);
    return b;
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

/* The suite's directory: made and removed in the runner's process (an unchecked fixture), so
 * it goes away even when a test fails inside its forked child. */
static void
suite_setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(rootdir, sizeof(rootdir), "%s/petal-it-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(rootdir) == NULL) {
        rootdir[0] = '\0';
    }
}

static void
suite_teardown(void)
{
    if (rootdir[0] != '\0') {
        nftw(rootdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        rootdir[0] = '\0';
    }
}

/* Each test's own directory inside it. */
static void
setup(void)
{
    ck_assert_msg(rootdir[0] != '\0', "cannot create a temporary directory");
    snprintf(workdir, sizeof(workdir), "%s/test-XXXXXX", rootdir);
    ck_assert_ptr_nonnull(mkdtemp(workdir));
    run_counter = 0;
}

/* ---- Running petal --------------------------------------------------------------------- */

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Runs `petal args...` (NULL-terminated) and fills *r; never blocks longer than RUN_TIMEOUT. */
static void
run_petal(run_result_t *r, ...)
{
    const char *argv[64];
    int argc = 0;
    va_list ap;
    argv[argc++] = PETAL_BIN;
    va_start(ap, r);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        ck_assert_int_lt(argc, 62);
        argv[argc++] = a;
    }
    va_end(ap);
    argv[argc] = NULL;

    int idx = run_counter++;
    char out_path[1100], err_path[1100];
    snprintf(out_path, sizeof(out_path), "%s/run%d.stdout", workdir, idx);
    snprintf(err_path, sizeof(err_path), "%s/run%d.stderr", workdir, idx);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || out < 0 || err < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
            dup2(err, 2) < 0) {
            _exit(126);
        }
        unsetenv("PETAL_LOG_LEVEL");
        execv(PETAL_BIN, (char *const *)argv);
        _exit(127);
    }
    memset(r, 0, sizeof(*r));
    int status = 0;
    double deadline = now_s() + RUN_TIMEOUT;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        ck_assert_int_ge(w, 0);
        if (w == pid) {
            break;
        }
        if (now_s() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            r->timed_out = 1;
            break;
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    r->exited = WIFEXITED(status);
    r->code = r->exited ? WEXITSTATUS(status) : -1;
    r->signo = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    r->out = read_all(out_path, NULL);
    r->err = read_all(err_path, NULL);
    ck_assert_ptr_nonnull(r->out);
    ck_assert_ptr_nonnull(r->err);
    ck_assert_msg(!r->timed_out, "petal did not finish within %.0f s\nstdout:\n%s\nstderr:\n%s",
                  RUN_TIMEOUT, r->out, r->err);
    ck_assert_msg(r->signo == 0, "petal crashed with signal %d (%s)\nstdout:\n%s\nstderr:\n%s",
                  r->signo, strsignal(r->signo), r->out, r->err);
    ck_assert_int_ne(r->code, 127); /* exec failed: is bin/petal built? */
}

static void
run_free(run_result_t *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof(*r));
}

/* The run worked as a user expects: exit 0. */
static void
assert_ok(const run_result_t *r)
{
    ck_assert_msg(r->exited && r->code == 0, "petal exited %d\nstdout:\n%s\nstderr:\n%s", r->code,
                  r->out, r->err);
}

/* A refused input: a normal non-zero exit and every `needle` (NULL-terminated) on stderr. */
static void
assert_refused(const run_result_t *r, ...)
{
    ck_assert_msg(r->exited && r->code != 0, "petal exited %d, expected a failure\nstderr:\n%s",
                  r->code, r->err);
    va_list ap;
    va_start(ap, r);
    const char *needle;
    while ((needle = va_arg(ap, const char *)) != NULL) {
        ck_assert_msg(strstr(r->err, needle) != NULL, "stderr lacks \"%s\":\n%s", needle, r->err);
    }
    va_end(ap);
}

/* ---- Reading what petal wrote ---------------------------------------------------------- */

/* The part of the history JSON that describes `round` (up to the next round). */
static char *
history_round(const char *json, uint32_t round)
{
    char key[64];
    snprintf(key, sizeof(key), "{\"round\": %u,", round);
    const char *start = strstr(json, key);
    if (start == NULL) {
        return NULL;
    }
    const char *end = strstr(start + 1, "{\"round\": ");
    if (end == NULL) {
        end = strstr(start, "\"final_arrays_sha256\"");
    }
    if (end == NULL) {
        end = start + strlen(start);
    }
    return strndup(start, (size_t)(end - start));
}

/* history[round][phase][key] as a number; fails the test when absent. */
static double
history_metric(const char *json, uint32_t round, const char *phase, const char *key)
{
    char *r = history_round(json, round);
    ck_assert_msg(r != NULL, "the history has no round %u:\n%s", round, json);
    char pkey[128], mkey[128];
    snprintf(pkey, sizeof(pkey), "\"%s\": {", phase);
    snprintf(mkey, sizeof(mkey), "\"%s\":", key);
    const char *p = strstr(r, pkey);
    ck_assert_msg(p != NULL, "round %u of the history has no phase %s:\n%s", round, phase, r);
    const char *close = strchr(p, '}');
    const char *m = strstr(p, mkey);
    ck_assert_msg(m != NULL && close != NULL && m < close,
                  "round %u %s of the history has no \"%s\":\n%s", round, phase, key, r);
    char *end;
    double x = strtod(m + strlen(mkey), &end);
    ck_assert_msg(end != m + strlen(mkey), "history round %u %s \"%s\" is not a number", round,
                  phase, key);
    free(r);
    return x;
}

static int
count_str(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) {
        n++;
    }
    return n;
}

/* Decodes a --save-arrays file and copies its float32 "w" into w. */
static void
load_w(const char *path, float w[W_LEN])
{
    size_t len;
    char *data = read_all(path, &len);
    ck_assert_msg(data != NULL, "--save-arrays did not write %s", path);
    pt_buf_t *buf = pt_buf_alloc(len > 0 ? len : 1, 0);
    ck_assert_ptr_nonnull(buf);
    memcpy(pt_buf_data(buf), data, len);
    free(data);
    pt_codec_limits_t limits;
    pt_codec_limits_default(&limits);
    petal_recorddict_t *d = NULL;
    char err[256] = "";
    int rc = pt_codec_decode_recorddict(buf, 0, len, &limits, &d, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s does not decode: %s", path, err);
    const petal_arrayrecord_t *ar = petal_recorddict_arrays(d, "arrays");
    ck_assert_msg(ar != NULL, "%s has no ArrayRecord \"arrays\"", path);
    const petal_array_t *a = petal_arrayrecord_get(ar, "w");
    ck_assert_msg(a != NULL, "%s has no array \"w\"", path);
    ck_assert_int_eq(petal_array_dtype(a), PETAL_DTYPE_FLOAT32);
    ck_assert_uint_eq(petal_array_numel(a), W_LEN);
    memcpy(w, petal_array_data(a), sizeof(float) * W_LEN);
    petal_recorddict_free(d);
    pt_buf_release(buf);
}

/* One FedAvg round of testkit over the partitions in `mask`: what it adds to every w[i]. */
static double
fedavg_step(uint64_t mask)
{
    double num = 0.0, den = 0.0;
    for (int p = 0; p < MAX_PARTITIONS; p++) {
        if (mask & (1ULL << p)) {
            num += 0.01 * (double)((p + 1) * (p + 1));
            den += (double)(p + 1);
        }
    }
    return den > 0 ? num / den : 0.0;
}

static void
assert_w(const float w[W_LEN], double delta)
{
    for (int i = 0; i < W_LEN; i++) {
        double want = 0.25 * i + delta;
        ck_assert_msg(fabs((double)w[i] - want) < 1e-5, "w[%d] = %.7f, FedAvg predicts %.7f", i,
                      (double)w[i], want);
    }
}

/* From the log: which partitions trained in each round (bit p of mask[round]), and checks that
 * each call's "calls" count equals the number of times that partition had been sampled. */
static void
train_masks(const char *log, uint64_t mask[MAX_ROUNDS])
{
    int seen[MAX_PARTITIONS] = {0};
    memset(mask, 0, sizeof(uint64_t) * MAX_ROUNDS);
    const char *key = "testkit: train partition=";
    for (const char *p = log; (p = strstr(p, key)) != NULL; p += strlen(key)) {
        int part, round, calls;
        unsigned long long node;
        ck_assert_int_eq(
            sscanf(p + strlen(key), "%d node=%llu round=%d calls=%d", &part, &node, &round, &calls),
            4);
        ck_assert(part >= 0 && part < MAX_PARTITIONS && round >= 1 && round < MAX_ROUNDS);
        seen[part]++;
        ck_assert_msg(calls == seen[part],
                      "partition %d reports calls=%d in round %d but was sampled %d times", part,
                      calls, round, seen[part]);
        mask[round] |= 1ULL << part;
    }
}

static int
popcount64(uint64_t x)
{
    int n = 0;
    for (; x != 0; x &= x - 1) {
        n++;
    }
    return n;
}

/* ---- The runs ---------------------------------------------------------------------------- */

START_TEST(test_end_to_end)
{
    run_result_t r;
    const char *hist = in_work("history.json");
    const char *csv = in_work("history.csv");
    const char *arrays = in_work("arrays.bin");
    run_petal(&r, "sim", TESTKIT_DIR, "--num-supernodes", "5", "--run-config",
              "num-server-rounds=3", "--history", hist, "--history-csv", csv, "--save-arrays",
              arrays, NULL);
    assert_ok(&r);
    ck_assert_msg(strstr(r.out, "round 1/3") && strstr(r.out, "round 3/3"),
                  "no per-round lines:\n%s", r.out);
    ck_assert_msg(strstr(r.out, "summary (3 rounds"), "no summary:\n%s", r.out);

    char *json = read_all(hist, NULL);
    ck_assert_msg(json != NULL, "--history did not write %s", hist);
    ck_assert_int_eq(count_str(json, "{\"round\": "), 3);
    for (uint32_t k = 1; k <= 3; k++) {
        ck_assert_double_eq(history_metric(json, k, "train", "num-replies"), 5);
        ck_assert_double_eq(history_metric(json, k, "train", "num-failures"), 0);
        ck_assert_double_eq(history_metric(json, k, "evaluate", "num-replies"), 5);
        /* eval-loss is mean(w) of the round's global model: 0.875 + k * 0.55 / 15 */
        ck_assert_double_eq_tol(history_metric(json, k, "evaluate", "eval-loss"),
                                0.875 + k * 0.55 / 15.0, 1e-5);
    }
    /* The summary's digest and the history's agree. */
    const char *d = strstr(json, "\"final_arrays_sha256\": \"");
    ck_assert_ptr_nonnull(d);
    d += strlen("\"final_arrays_sha256\": \"");
    ck_assert_int_eq((int)strspn(d, "0123456789abcdef"), 64);
    char digest[65];
    memcpy(digest, d, 64);
    digest[64] = '\0';
    char line[128];
    snprintf(line, sizeof(line), "final arrays sha256: %s", digest);
    ck_assert_msg(strstr(r.out, line) != NULL, "stdout lacks \"%s\":\n%s", line, r.out);
    free(json);

    char *c = read_all(csv, NULL);
    ck_assert_msg(c != NULL, "--history-csv did not write %s", csv);
    ck_assert_msg(strncmp(c, "round,phase,metric,value\n", 25) == 0, "csv:\n%s", c);
    ck_assert_msg(strstr(c, "\n3,") != NULL, "the csv has no round 3:\n%s", c);
    free(c);

    float w[W_LEN];
    load_w(arrays, w);
    assert_w(w, 3 * fedavg_step(0x1f));
    run_free(&r);
}
END_TEST

/* Two runs with one seed are the same run; another seed samples other nodes. */
START_TEST(test_determinism)
{
    const char *cfg = "num-server-rounds=3 fraction-train=0.5 fraction-evaluate=0.5 "
                      "min-train-nodes=2 min-evaluate-nodes=2";
    run_result_t r[3];
    const char *seeds[3] = {"7", "7", "8"};
    char *hist[3];
    char *arr[3];
    size_t arr_len[3];
    uint64_t masks[3][MAX_ROUNDS];
    for (int i = 0; i < 3; i++) {
        const char *h = in_work("history%d.json", i);
        const char *a = in_work("arrays%d.bin", i);
        run_petal(&r[i], "sim", TESTKIT_DIR, "--num-supernodes", "10", "--seed", seeds[i],
                  "--run-config", cfg, "--log-level", "info", "--history", h, "--save-arrays", a,
                  NULL);
        assert_ok(&r[i]);
        ck_assert_msg(strstr(r[i].out, "round 3/3"), "no round 3/3:\n%s", r[i].out);
        char *json = read_all(h, NULL);
        ck_assert_msg(json != NULL, "--history did not write %s", h);
        hist[i] = json; /* compared byte for byte: no wall-clock values in it */
        arr[i] = read_all(a, &arr_len[i]);
        ck_assert_msg(arr[i] != NULL, "--save-arrays did not write %s", a);
        train_masks(r[i].err, masks[i]);
        for (uint32_t k = 1; k <= 3; k++) {
            ck_assert_msg(popcount64(masks[i][k]) == 5,
                          "run %d round %u: %d of 10 nodes trained, fraction-train 0.5 means 5", i,
                          k, popcount64(masks[i][k]));
            ck_assert_double_eq(history_metric(hist[i], k, "train", "num-replies"), 5);
        }
        /* The sampled partitions explain the final model exactly. */
        float w[W_LEN];
        load_w(a, w);
        assert_w(w, fedavg_step(masks[i][1]) + fedavg_step(masks[i][2]) + fedavg_step(masks[i][3]));
    }
    ck_assert_msg(strcmp(hist[0], hist[1]) == 0, "same seed, different histories:\n%s\n---\n%s",
                  hist[0], hist[1]);
    ck_assert_uint_eq(arr_len[0], arr_len[1]);
    ck_assert_msg(memcmp(arr[0], arr[1], arr_len[0]) == 0, "same seed, different arrays");
    for (uint32_t k = 1; k <= 3; k++) {
        ck_assert_msg(masks[0][k] == masks[1][k], "same seed, round %u sampled %#llx vs %#llx", k,
                      (unsigned long long)masks[0][k], (unsigned long long)masks[1][k]);
    }
    ck_assert_msg(masks[0][1] != masks[2][1] || masks[0][2] != masks[2][2] ||
                      masks[0][3] != masks[2][3],
                  "seeds 7 and 8 sampled the same nodes in every round");
    for (int i = 0; i < 3; i++) {
        free(hist[i]);
        free(arr[i]);
        run_free(&r[i]);
    }
}
END_TEST

/* A node slower than round-timeout: the round completes with the others' replies. */
START_TEST(test_grid_timeout)
{
    run_result_t r;
    const char *hist = in_work("history.json");
    const char *arrays = in_work("arrays.bin");
    run_petal(&r, "sim", TESTKIT_DIR, "--num-supernodes", "5", "--run-config",
              "num-server-rounds=2 sleep-node=3 sleep-ms=2500 round-timeout=1", "--history", hist,
              "--save-arrays", arrays, NULL);
    assert_ok(&r);
    ck_assert_msg(strstr(r.out, "round 2/2"), "no round 2/2:\n%s", r.out);
    ck_assert_msg(strstr(r.err, "no reply from node 4"), "the timeout is not explained:\n%s",
                  r.err);
    char *json = read_all(hist, NULL);
    ck_assert_ptr_nonnull(json);
    for (uint32_t k = 1; k <= 2; k++) {
        ck_assert_double_ge(history_metric(json, k, "train", "num-failures"), 1);
        ck_assert_double_eq(history_metric(json, k, "train", "num-replies"), 4);
    }
    free(json);
    /* The late replies were not averaged in: partitions 0, 1, 2, 4 made the model. */
    float w[W_LEN];
    load_w(arrays, w);
    assert_w(w, 2 * fedavg_step(0x17));
    run_free(&r);
}
END_TEST

/* A handler that fails: counted, explained, and the run goes on without it. */
START_TEST(test_failing_handler)
{
    run_result_t r;
    const char *hist = in_work("history.json");
    const char *arrays = in_work("arrays.bin");
    run_petal(&r, "sim", TESTKIT_DIR, "--num-supernodes", "5", "--run-config",
              "num-server-rounds=3 fail-node=2", "--log-level", "warn", "--history", hist,
              "--save-arrays", arrays, NULL);
    assert_ok(&r);
    ck_assert_msg(strstr(r.out, "round 3/3"), "no round 3/3:\n%s", r.out);
    ck_assert_msg(strstr(r.err, "partition 2 fails on purpose (fail-node)") &&
                      strstr(r.err, "CLIENT_APP_RAISED_EXCEPTION"),
                  "the handler's reason is not in the log:\n%s", r.err);
    char *json = read_all(hist, NULL);
    ck_assert_ptr_nonnull(json);
    for (uint32_t k = 1; k <= 3; k++) {
        ck_assert_double_eq(history_metric(json, k, "train", "num-failures"), 1);
        ck_assert_double_eq(history_metric(json, k, "train", "num-replies"), 4);
        ck_assert_double_eq(history_metric(json, k, "evaluate", "num-failures"), 0);
    }
    free(json);
    float w[W_LEN];
    load_w(arrays, w);
    assert_w(w, 3 * fedavg_step(0x1b));
    run_free(&r);
}
END_TEST

/* Context state persists across rounds: each node's "calls" counts the times it was sampled. */
START_TEST(test_context_state)
{
    run_result_t r;
    const char *hist = in_work("history.json");
    run_petal(&r, "sim", TESTKIT_DIR, "--num-supernodes", "5", "--run-config",
              "num-server-rounds=4", "--history", hist, NULL);
    assert_ok(&r);
    char *json = read_all(hist, NULL);
    ck_assert_ptr_nonnull(json);
    /* Every node is sampled every round: each reply says calls = round, so does the mean. */
    for (uint32_t k = 1; k <= 4; k++) {
        ck_assert_double_eq_tol(history_metric(json, k, "train", "calls"), k, 1e-9);
        ck_assert_double_eq_tol(history_metric(json, k, "evaluate", "calls"), k, 1e-9);
    }
    free(json);
    run_free(&r);

    /* Sampled nodes only: the replies' weighted mean of "calls" matches the sampling. */
    run_petal(&r, "sim", TESTKIT_DIR, "--num-supernodes", "8", "--seed", "3", "--run-config",
              "num-server-rounds=4 fraction-train=0.5 fraction-evaluate=0", "--history", hist,
              NULL);
    assert_ok(&r);
    uint64_t mask[MAX_ROUNDS];
    train_masks(r.err, mask);
    json = read_all(hist, NULL);
    ck_assert_ptr_nonnull(json);
    int times[MAX_PARTITIONS] = {0};
    for (uint32_t k = 1; k <= 4; k++) {
        double num = 0, den = 0;
        for (int p = 0; p < 8; p++) {
            if (mask[k] & (1ULL << p)) {
                times[p]++;
                num += (double)times[p] * (p + 1);
                den += p + 1;
            }
        }
        ck_assert_msg(den > 0, "round %u sampled nobody", k);
        ck_assert_double_eq_tol(history_metric(json, k, "train", "calls"), num / den, 1e-9);
    }
    free(json);
    run_free(&r);
}
END_TEST

/* ---- Bad input: a clear message, a non-zero exit, never a crash ---------------------------- */

START_TEST(test_app_dir_missing)
{
    run_result_t r;
    const char *dir = in_work("no-such-app");
    run_petal(&r, "sim", dir, NULL);
    assert_refused(&r, dir, "not a directory", NULL);
    run_free(&r);
}
END_TEST

START_TEST(test_app_dir_file)
{
    run_result_t r;
    const char *file = in_work("petal.toml");
    write_text(file, "[app]\nname = \"x\"\nclient = \"client.so\"\n");
    run_petal(&r, "sim", file, NULL);
    assert_refused(&r, file, "not a directory", NULL);
    run_free(&r);
}
END_TEST

START_TEST(test_toml_array)
{
    run_result_t r;
    const char *dir = in_work("arrays-app");
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    write_text(in_work("arrays-app/petal.toml"), "# an app with an array in its config\n"
                                                 "[app]\n"
                                                 "name = \"bad\"\n"
                                                 "client = \"client.so\"\n"
                                                 "\n"
                                                 "[app.config]\n"
                                                 "layers = [64, 32]\n");
    copy_file(TESTKIT_DIR "/client.so", in_work("arrays-app/client.so"));
    run_petal(&r, "sim", dir, NULL);
    assert_refused(&r, "petal.toml:7", "layers", NULL);
    run_free(&r);
}
END_TEST

/* An app dir with testkit's petal.toml; client.so is what the test puts there. */
static const char *
make_app(const char *name)
{
    const char *dir = in_work("%s", name);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    copy_file(TESTKIT_DIR "/petal.toml", in_work("%s/petal.toml", name));
    return dir;
}

START_TEST(test_client_missing)
{
    run_result_t r;
    const char *dir = make_app("no-client");
    run_petal(&r, "sim", dir, NULL);
    assert_refused(&r, "client.so", "does not exist", NULL);
    run_free(&r);
}
END_TEST

START_TEST(test_client_text_file)
{
    run_result_t r;
    const char *dir = make_app("text-client");
    write_text(in_work("text-client/client.so"), "this is not a shared object\n");
    run_petal(&r, "sim", dir, "--num-supernodes", "3", NULL);
    assert_refused(&r, "text-client/client.so", "not a shared object", NULL);
    run_free(&r);
}
END_TEST

START_TEST(test_client_is_server_plugin)
{
    run_result_t r;
    const char *dir = make_app("server-as-client");
    copy_file(SERVER_KIND_SO, in_work("server-as-client/client.so"));
    run_petal(&r, "sim", dir, "--num-supernodes", "3", NULL);
    assert_refused(&r, "server-as-client/client.so", "ServerApp", "ClientApp", NULL);
    run_free(&r);
}
END_TEST

START_TEST(test_bad_run_config)
{
    run_result_t r;
    run_petal(&r, "sim", TESTKIT_DIR, "--run-config", "num-server-rounds=abc", NULL);
    assert_refused(&r, "num-server-rounds", "abc", NULL);
    ck_assert_msg(strstr(r.out, "round 1/") == NULL, "a run started:\n%s", r.out);
    run_free(&r);
}
END_TEST

START_TEST(test_zero_supernodes)
{
    run_result_t r;
    run_petal(&r, "sim", TESTKIT_DIR, "--num-supernodes", "0", NULL);
    assert_refused(&r, "--num-supernodes", NULL);
    run_free(&r);
}
END_TEST

START_TEST(test_unknown_option)
{
    run_result_t r;
    run_petal(&r, "sim", TESTKIT_DIR, "--no-such-option", NULL);
    assert_refused(&r, "--no-such-option", "usage: petal sim", NULL);
    run_free(&r);
}
END_TEST

START_TEST(test_init_failure)
{
    run_result_t r;
    run_petal(&r, "sim", TESTKIT_DIR, "--num-supernodes", "3", "--run-config", "crash-init=true",
              NULL);
    assert_refused(&r, "plugins/testkit/client.so", "init failed", "petal sim: the run failed",
                   NULL);
    ck_assert_msg(strstr(r.out, "round 1/") == NULL, "a round ran:\n%s", r.out);
    run_free(&r);
}
END_TEST

static Suite *
sim_suite(void)
{
    Suite *s = suite_create("petal sim");
    TCase *tc = tcase_create("runs");
    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, test_end_to_end);
    tcase_add_test(tc, test_determinism);
    tcase_add_test(tc, test_grid_timeout);
    tcase_add_test(tc, test_failing_handler);
    tcase_add_test(tc, test_context_state);
    suite_add_tcase(s, tc);

    tc = tcase_create("bad input");
    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_app_dir_missing);
    tcase_add_test(tc, test_app_dir_file);
    tcase_add_test(tc, test_toml_array);
    tcase_add_test(tc, test_client_missing);
    tcase_add_test(tc, test_client_text_file);
    tcase_add_test(tc, test_client_is_server_plugin);
    tcase_add_test(tc, test_bad_run_config);
    tcase_add_test(tc, test_zero_supernodes);
    tcase_add_test(tc, test_unknown_option);
    tcase_add_test(tc, test_init_failure);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(sim_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
