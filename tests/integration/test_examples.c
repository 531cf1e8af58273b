/* test_examples.c - the example apps (fmnist, synthetic, analytics) in petal sim, and petal plot.
 */
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

#include <petal/data.h>
#include <petal/petal.h>

#include "runtime/buf.h"
#include "runtime/codec.h"

/*
 * Every test runs build/bin/petal as a child process (stdout and stderr captured in files of a
 * fresh temporary directory) under a guard that kills a run lasting RUN_TIMEOUT seconds. The
 * apps read Fashion-MNIST from the default place (or $PETAL_FMNIST_DIR), which scripts/deps.sh
 * installs.
 */

#define PETAL_BIN PETAL_BUILD_DIR "/bin/petal"
#define APP(name) PETAL_BUILD_DIR "/plugins/" name
#define RUN_TIMEOUT 120.0

typedef struct run_result {
    int exited, code, signo;
    char *out, *err;
} run_result_t;

static char rootdir[512];
static char workdir[1024];
static int run_counter;

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

static void
write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s: %s", path, strerror(errno));
    ck_assert_int_ge(fputs(text, f), 0);
    ck_assert_int_eq(fclose(f), 0);
}

/* workdir/<name> in a rotating static buffer. */
static const char *
in_work(const char *name)
{
    static char bufs[8][1400];
    static int next;
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

static void
suite_setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(rootdir, sizeof(rootdir), "%s/petal-ex-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
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

static void
setup(void)
{
    ck_assert_msg(rootdir[0] != '\0', "cannot create a temporary directory");
    snprintf(workdir, sizeof(workdir), "%s/test-XXXXXX", rootdir);
    ck_assert_ptr_nonnull(mkdtemp(workdir));
    run_counter = 0;
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Runs `petal args...` (NULL-terminated) and fills *r. */
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
    int status = 0, timed_out = 0;
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
            timed_out = 1;
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
    ck_assert_msg(!timed_out, "petal did not finish within %.0f s\nstdout:\n%s\nstderr:\n%s",
                  RUN_TIMEOUT, r->out, r->err);
    ck_assert_msg(r->signo == 0, "petal crashed with signal %d\nstdout:\n%s\nstderr:\n%s", r->signo,
                  r->out, r->err);
    ck_assert_int_ne(r->code, 127);
}

static void
run_free(run_result_t *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof(*r));
}

static void
assert_ok(const run_result_t *r)
{
    ck_assert_msg(r->exited && r->code == 0, "petal exited %d\nstdout:\n%s\nstderr:\n%s", r->code,
                  r->out, r->err);
}

/* A refused input: a non-zero exit and every `needle` (NULL-terminated) on stderr. */
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

/* history[round][phase][key] as a number; fails the test when absent. */
static double
history_metric(const char *json, int round, const char *phase, const char *key)
{
    char rkey[64], pkey[128], mkey[128];
    snprintf(rkey, sizeof(rkey), "{\"round\": %d,", round);
    snprintf(pkey, sizeof(pkey), "\"%s\": {", phase);
    snprintf(mkey, sizeof(mkey), "\"%s\":", key);
    const char *r = strstr(json, rkey);
    ck_assert_msg(r != NULL, "the history has no round %d:\n%s", round, json);
    const char *next = strstr(r + 1, "{\"round\": ");
    const char *p = strstr(r, pkey);
    ck_assert_msg(p != NULL && (next == NULL || p < next), "round %d has no phase %s:\n%s", round,
                  phase, json);
    const char *close = strchr(p, '}');
    const char *m = strstr(p, mkey);
    ck_assert_msg(m != NULL && m < close, "round %d %s has no \"%s\":\n%s", round, phase, key,
                  json);
    char *end;
    double x = strtod(m + strlen(mkey), &end);
    ck_assert_msg(end != m + strlen(mkey), "round %d %s \"%s\" is not a number", round, phase, key);
    return x;
}

static char *
read_history(const char *path)
{
    char *json = read_all(path, NULL);
    ck_assert_msg(json != NULL, "petal sim --history did not write %s", path);
    return json;
}

static void
assert_png(const char *path)
{
    size_t len = 0;
    char *png = read_all(path, &len);
    ck_assert_msg(png != NULL, "no picture at %s", path);
    ck_assert_msg(len > 2000 && memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0,
                  "%s is not a PNG (%zu bytes)", path, len);
    free(png);
}

/* ---- fmnist -----------------------------------------------------------------------------------
 */

START_TEST(test_fmnist_dirichlet_fedprox_learns)
{
    run_result_t r;
    const char *h = in_work("fmnist.json");
    run_petal(&r, "sim", APP("fmnist"), "--num-supernodes", "10", "--run-config",
              "num-server-rounds=2 fraction-train=0.4 partitioner=dirichlet alpha=0.5 "
              "strategy=fedprox proximal-mu=0.01",
              "--history", h, NULL);
    assert_ok(&r);
    run_free(&r);
    char *json = read_history(h);
    ck_assert_ptr_nonnull(strstr(json, "\"partitioner\": \"dirichlet\""));
    ck_assert_ptr_nonnull(strstr(json, "\"strategy\": \"fedprox\""));
    double l1 = history_metric(json, 1, "evaluate", "eval-loss");
    double l2 = history_metric(json, 2, "evaluate", "eval-loss");
    double a2 = history_metric(json, 2, "evaluate", "eval-acc");
    ck_assert_msg(l2 < l1, "eval-loss did not go down: %f then %f", l1, l2);
    ck_assert_msg(a2 > 0.5, "eval-acc after 2 rounds is only %f", a2);
    ck_assert_int_eq((int)history_metric(json, 2, "evaluate", "num-replies"), 10);
    free(json);

    /* The history plots. */
    const char *png = in_work("fmnist.png");
    run_petal(&r, "plot", h, "-o", png, NULL);
    assert_ok(&r);
    run_free(&r);
    assert_png(png);
}
END_TEST

/* One of five nodes sends a sign-flipped, 10x update: FedAvg's model breaks, FedMedian's does not.
 */
START_TEST(test_fmnist_attack_median_resists)
{
    const char *strategies[] = {"fedavg", "fedmedian"};
    double acc[2];
    for (int i = 0; i < 2; i++) {
        run_result_t r;
        char cfg[256], name[32];
        snprintf(cfg, sizeof(cfg),
                 "num-server-rounds=2 malicious-nodes=1 attack-scale=10 strategy=%s "
                 "min-train-nodes=5",
                 strategies[i]);
        snprintf(name, sizeof(name), "attack-%s.json", strategies[i]);
        const char *h = in_work(name);
        run_petal(&r, "sim", APP("fmnist"), "--num-supernodes", "5", "--run-config", cfg,
                  "--history", h, NULL);
        assert_ok(&r);
        run_free(&r);
        char *json = read_history(h);
        acc[i] = history_metric(json, 2, "evaluate", "eval-acc");
        free(json);
    }
    ck_assert_msg(acc[1] > 0.6, "FedMedian under attack reached only %f", acc[1]);
    ck_assert_msg(acc[0] < acc[1] - 0.2, "the attack did not hurt FedAvg: %f vs median %f", acc[0],
                  acc[1]);
}
END_TEST

START_TEST(test_fmnist_partitioners)
{
    /* Every partitioner by name runs; pathological gives each node 2 classes. */
    static const char *const configs[] = {
        "partitioner=pathological classes-per-partition=2",
        "partitioner=shard shards-per-partition=2",
        "partitioner=square",
    };
    for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
        char cfg[256];
        snprintf(cfg, sizeof(cfg), "num-server-rounds=1 fraction-train=0.2 %s", configs[i]);
        run_result_t r;
        const char *h = in_work("p.json");
        run_petal(&r, "sim", APP("fmnist"), "--num-supernodes", "10", "--run-config", cfg,
                  "--history", h, NULL);
        assert_ok(&r);
        run_free(&r);
        char *json = read_history(h);
        ck_assert_msg(history_metric(json, 1, "evaluate", "eval-acc") > 0.1,
                      "%s: no better than chance", configs[i]);
        free(json);
    }
}
END_TEST

START_TEST(test_fmnist_unknown_partitioner)
{
    run_result_t r;
    run_petal(&r, "sim", APP("fmnist"), "--num-supernodes", "3", "--run-config", "partitioner=zipf",
              NULL);
    assert_refused(&r, "zipf", "dirichlet", NULL);
    run_free(&r);
}
END_TEST

/* ---- synthetic --------------------------------------------------------------------------------
 */

START_TEST(test_synthetic_stragglers_learn)
{
    run_result_t r;
    const char *h = in_work("syn.json");
    run_petal(&r, "sim", APP("synthetic"), "--num-supernodes", "10", "--run-config",
              "num-server-rounds=2 alpha=0.5 beta=0.5 local-epochs=2 stragglers=0.5 "
              "proximal-mu=1.0",
              "--history", h, NULL);
    assert_ok(&r);
    run_free(&r);
    char *json = read_history(h);
    double l1 = history_metric(json, 1, "evaluate", "eval-loss");
    double l2 = history_metric(json, 2, "evaluate", "eval-loss");
    ck_assert_msg(l1 < log(10.0), "round 1 eval-loss %f is not below the zero model's ln 10", l1);
    ck_assert_msg(l2 < l1, "eval-loss did not go down: %f then %f", l1, l2);
    double straggling = history_metric(json, 1, "train", "straggler");
    ck_assert_msg(straggling > 0.0 && straggling < 1.0, "straggler share %f", straggling);
    double steps_half = history_metric(json, 1, "train", "local-steps");
    free(json);

    /* Without stragglers every device runs all its steps: more of them on average. */
    run_petal(&r, "sim", APP("synthetic"), "--num-supernodes", "10", "--run-config",
              "num-server-rounds=1 alpha=0.5 beta=0.5 local-epochs=2 stragglers=0", "--history", h,
              NULL);
    assert_ok(&r);
    run_free(&r);
    json = read_history(h);
    ck_assert_msg(history_metric(json, 1, "train", "local-steps") > steps_half,
                  "stragglers did not reduce the local steps");
    free(json);
}
END_TEST

START_TEST(test_synthetic_drop_stragglers)
{
    /* Exactly round(0.3 x 10) = 3 devices straggle each round; dropped, they are failures. */
    run_result_t r;
    const char *h = in_work("drop.json");
    run_petal(&r, "sim", APP("synthetic"), "--num-supernodes", "10", "--run-config",
              "num-server-rounds=2 local-epochs=1 stragglers=0.3 drop-stragglers=true", "--history",
              h, NULL);
    assert_ok(&r);
    run_free(&r);
    char *json = read_history(h);
    for (int round = 1; round <= 2; round++) {
        ck_assert_int_eq((int)history_metric(json, round, "train", "num-failures"), 3);
        ck_assert_int_eq((int)history_metric(json, round, "train", "num-replies"), 7);
    }
    free(json);
}
END_TEST

/* ---- analytics --------------------------------------------------------------------------------
 */

/* Decodes a --save-arrays file; the caller frees the RecordDict and the buffer. */
static petal_recorddict_t *
load_arrays(const char *path, pt_buf_t **buf_out)
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
    *buf_out = buf;
    return d;
}

START_TEST(test_analytics_histogram_and_means)
{
    run_result_t r;
    const char *h = in_work("an.json");
    const char *saved = in_work("an.petal");
    /* Label-skewed partitions: no node sees the true distribution, the federation does. */
    run_petal(&r, "sim", APP("analytics"), "--num-supernodes", "7", "--run-config",
              "partitioner=dirichlet alpha=0.3", "--history", h, "--save-arrays", saved, NULL);
    assert_ok(&r);
    run_free(&r);

    const petal_dataset_t *train = NULL;
    char err[512];
    ck_assert_msg(petal_dataset_load_fmnist(NULL, 1, &train, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(train->n, 60000);
    uint64_t truth[10];
    petal_dataset_class_counts(train, NULL, 0, truth, 10);
    double *direct = calloc(10 * 784, sizeof(double));
    ck_assert_ptr_nonnull(direct);
    for (uint64_t i = 0; i < train->n; i++) {
        for (int j = 0; j < 784; j++) {
            direct[train->y[i] * 784 + j] += train->x[i * 784 + j];
        }
    }

    char *json = read_history(h);
    ck_assert_int_eq((int)history_metric(json, 1, "analytics", "num-replies"), 7);
    ck_assert_int_eq((int)history_metric(json, 1, "analytics", "num-failures"), 0);
    ck_assert_int_eq((int)history_metric(json, 1, "analytics", "num-examples"), 60000);
    for (int k = 0; k < 10; k++) {
        char key[32];
        snprintf(key, sizeof(key), "count-%d", k);
        ck_assert_int_eq((int)history_metric(json, 1, "analytics", key), 6000);
    }
    free(json);

    pt_buf_t *buf = NULL;
    petal_recorddict_t *d = load_arrays(saved, &buf);
    const petal_arrayrecord_t *ar = petal_recorddict_arrays(d, "arrays");
    ck_assert_ptr_nonnull(ar);
    const petal_array_t *hist = petal_arrayrecord_get(ar, "histogram");
    const petal_array_t *means = petal_arrayrecord_get(ar, "class-means");
    ck_assert_ptr_nonnull(hist);
    ck_assert_ptr_nonnull(means);
    ck_assert_int_eq(petal_array_dtype(hist), PETAL_DTYPE_INT64);
    ck_assert_uint_eq(petal_array_numel(hist), 10);
    ck_assert_int_eq(petal_array_dtype(means), PETAL_DTYPE_FLOAT32);
    ck_assert_uint_eq(petal_array_ndim(means), 2);
    ck_assert_uint_eq(petal_array_shape(means)[0], 10);
    ck_assert_uint_eq(petal_array_shape(means)[1], 784);
    int64_t counts[10];
    memcpy(counts, petal_array_data(hist), sizeof(counts));
    float *m = malloc(10 * 784 * sizeof(float));
    ck_assert_ptr_nonnull(m);
    memcpy(m, petal_array_data(means), 10 * 784 * sizeof(float));
    double worst = 0.0;
    for (int k = 0; k < 10; k++) {
        ck_assert_int_eq(counts[k], 6000);
        ck_assert_uint_eq((uint64_t)counts[k], truth[k]);
        for (int j = 0; j < 784; j++) {
            double want = direct[k * 784 + j] / (double)truth[k];
            worst = fmax(worst, fabs(m[k * 784 + j] - want));
        }
    }
    ck_assert_msg(worst < 1e-6, "class means differ from the direct computation by %g", worst);
    free(m);
    free(direct);
    petal_recorddict_free(d);
    pt_buf_release(buf);
    petal_dataset_release(train);
}
END_TEST

/* ---- petal plot -------------------------------------------------------------------------------
 */

static void
write_history(const char *path, const char *strategy, double loss0, double acc0)
{
    char text[2048];
    int at = snprintf(text, sizeof(text),
                      "{\n  \"run_config\": {\"strategy\": \"%s\", \"num-server-rounds\": 4},\n"
                      "  \"rounds\": [",
                      strategy);
    for (int r = 1; r <= 4; r++) {
        at += snprintf(text + at, sizeof(text) - (size_t)at,
                       "%s\n    {\"round\": %d, \"train\": {\"train-loss\": %.4f, "
                       "\"num-replies\": 5}, \"evaluate\": {\"eval-loss\": %.4f, "
                       "\"eval-acc\": %.4f}}",
                       r > 1 ? "," : "", r, loss0 / r, loss0 / r + 0.1, acc0 + 0.03 * r);
    }
    snprintf(text + at, sizeof(text) - (size_t)at, "\n  ],\n  \"final_arrays_sha256\": \"\"\n}\n");
    write_text(path, text);
}

START_TEST(test_plot_svg_and_png)
{
    const char *a = in_work("run-a.json"), *b = in_work("run-b.json");
    write_history(a, "fedavg", 1.2, 0.6);
    write_history(b, "fedprox", 1.0, 0.65);
    const char *svg = in_work("curves.svg");
    run_result_t r;
    run_petal(&r, "plot", a, b, "-o", svg, NULL);
    assert_ok(&r);
    run_free(&r);
    char *text = read_all(svg, NULL);
    ck_assert_msg(text != NULL, "no SVG written");
    ck_assert_msg(strncmp(text, "<?xml", 5) == 0 || strncmp(text, "<svg", 4) == 0,
                  "not an SVG: %.60s", text);
    ck_assert_ptr_nonnull(strstr(text, "</svg>"));
    /* Labelled by strategy (they differ); the metrics are named. */
    ck_assert_ptr_nonnull(strstr(text, "fedavg"));
    ck_assert_ptr_nonnull(strstr(text, "fedprox"));
    ck_assert_ptr_nonnull(strstr(text, "eval-acc"));
    ck_assert_ptr_nonnull(strstr(text, "train-loss"));
    free(text);

    const char *png = in_work("curves.png");
    run_petal(&r, "plot", a, b, "-o", png, "--metric", "eval-loss,evaluate/eval-acc", NULL);
    assert_ok(&r);
    run_free(&r);
    assert_png(png);

    /* Same strategy twice: labelled by file name; --labels overrides. */
    write_history(b, "fedavg", 1.0, 0.65);
    run_petal(&r, "plot", a, b, "-o", svg, NULL);
    assert_ok(&r);
    run_free(&r);
    text = read_all(svg, NULL);
    ck_assert_ptr_nonnull(strstr(text, "run-a"));
    ck_assert_ptr_nonnull(strstr(text, "run-b"));
    free(text);
    run_petal(&r, "plot", a, b, "-o", svg, "--labels", "lr 0.1,lr 0.05", "--title", "LR sweep",
              NULL);
    assert_ok(&r);
    run_free(&r);
    text = read_all(svg, NULL);
    ck_assert_ptr_nonnull(strstr(text, "lr 0.05"));
    ck_assert_ptr_nonnull(strstr(text, "LR sweep"));
    free(text);
}
END_TEST

START_TEST(test_plot_bad_input)
{
    const char *good = in_work("good.json"), *out = in_work("out.svg");
    write_history(good, "fedavg", 1.0, 0.5);
    run_result_t r;

    const char *missing = in_work("missing.json");
    run_petal(&r, "plot", missing, "-o", out, NULL);
    assert_refused(&r, "cannot read", "missing.json", "No such file", NULL);
    run_free(&r);

    const char *bad = in_work("bad.json");
    write_text(bad, "{\"rounds\": [\n  {\"round\": 1,, }\n]}\n");
    run_petal(&r, "plot", good, bad, "-o", out, NULL);
    assert_refused(&r, "bad.json", "is not valid JSON", "line 2", NULL);
    run_free(&r);

    write_text(bad, "{\"rounds\": [");
    run_petal(&r, "plot", bad, "-o", out, NULL);
    assert_refused(&r, "bad.json", "is not valid JSON", NULL);
    run_free(&r);

    write_text(bad, "{\"run_config\": {}}");
    run_petal(&r, "plot", bad, "-o", out, NULL);
    assert_refused(&r, "bad.json", "not a Petal history", "rounds", NULL);
    run_free(&r);

    run_petal(&r, "plot", good, "-o", out, "--metric", "eval-auc", NULL);
    assert_refused(&r, "good.json", "has no metric \"eval-auc\"", "evaluate/eval-acc", NULL);
    run_free(&r);

    write_text(bad, "{\"rounds\": [{\"round\": 1, \"analytics\": {\"count-0\": 6000}}]}");
    run_petal(&r, "plot", bad, "-o", out, NULL);
    assert_refused(&r, "bad.json", "none of the metrics", "analytics/count-0", NULL);
    run_free(&r);

    run_petal(&r, "plot", good, "-o", in_work("out.pdf"), NULL);
    assert_refused(&r, "must end with .svg or .png", NULL);
    run_free(&r);

    run_petal(&r, "plot", good, NULL);
    assert_refused(&r, "missing -o", NULL);
    run_free(&r);

    run_petal(&r, "plot", good, "-o", out, "--labels", "a,b", NULL);
    assert_refused(&r, "--labels has 2 labels for 1 histories", NULL);
    run_free(&r);

    run_petal(&r, "plot", good, "-o", "/nonexistent-dir/x.png", NULL);
    assert_refused(&r, "cannot write /nonexistent-dir/x.png", NULL);
    run_free(&r);
    ck_assert_int_ne(access(out, F_OK), 0); /* nothing was written on errors */
}
END_TEST

static Suite *
examples_suite(void)
{
    Suite *s = suite_create("examples");
    TCase *tc = tcase_create("apps");
    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 280);
    tcase_add_test(tc, test_fmnist_dirichlet_fedprox_learns);
    tcase_add_test(tc, test_fmnist_partitioners);
    tcase_add_test(tc, test_fmnist_attack_median_resists);
    tcase_add_test(tc, test_fmnist_unknown_partitioner);
    tcase_add_test(tc, test_synthetic_stragglers_learn);
    tcase_add_test(tc, test_synthetic_drop_stragglers);
    tcase_add_test(tc, test_analytics_histogram_and_means);
    suite_add_tcase(s, tc);

    tc = tcase_create("plot");
    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_plot_svg_and_png);
    tcase_add_test(tc, test_plot_bad_input);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(examples_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
