/* test_deploy.c - deployment as an operator runs it: SuperLink, SuperNodes and CLI as processes. */
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <petal/petal.h>

#include "runtime/buf.h"
#include "runtime/codec.h"

#include "procs.h"

/*
 * Every test starts build/bin/petal-superlink, petal-supernode and petal as child processes on
 * 127.0.0.1 (ports from port 0, read from the SuperLink's "petal-superlink: fleet ..." line),
 * with stdout and stderr captured in files of a fresh temporary directory. No process
 * outlives its test:
 *   - every child gets its own process group (its ClientApp processes join it), dies with the
 *     test process (PR_SET_PDEATHSIG), and carries TAG_VAR=<this suite's directory> in its
 *     environment;
 *   - the checked teardown (and an atexit handler, for tests that fail) SIGKILLs every daemon's
 *     group and then every process that carries the tag, which catches grandchildren too;
 *   - the runner process sweeps the tag once more when the test case ends.
 * Every wait has a deadline, and each test case has a Check timeout.
 *
 * Cases: simulation/deployment parity (testkit, and quickstart in process isolation), a
 * SuperNode SIGKILLed mid-round, a reply over the wire limit, the SuperLink SIGKILLed and restarted
 * on its --database, a segfaulting ClientApp in process isolation, petal stop, garbage on the Fleet
 * port, and bad command lines. The whole suite takes about 7 s.
 *
 * The testkit app (apps/testkit/client.c) makes results predictable: w starts at 0.25 * i,
 * partition p trains w + (p + 1) * 0.01 with num-examples p + 1, so one FedAvg round over the
 * partitions S adds sum_{p in S} 0.01 (p + 1)^2 / sum_{p in S} (p + 1) to every w[i]. It reads
 * its partition from the node config, so a SuperNode started with
 * --node-config "partition-id=i num-partitions=n" behaves like simulated node i of n.
 */

#define QUICKSTART_DIR PETAL_BUILD_DIR "/plugins/quickstart"
#define FMNIST_DIR "/usr/share/datasets/fashion-mnist" /* PETAL_FMNIST_DEFAULT_DIR */
#define W_LEN 8

/* ---- Time, files, directories ------------------------------------------------------------ */

/* ---- Processes ------------------------------------------------------------------------------ */

/* A TCP port on 127.0.0.1 that nobody listened on a moment ago. */
static int
free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(s, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    ck_assert_int_eq(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s);
    return ntohs(a.sin_port);
}

/* ---- The daemons ----------------------------------------------------------------------------- */

/* Starts SuperNodes for partitions 0..n-1 one after the other (so node ids follow the
 * partitions) and returns their ids. */
static void
supernodes_start(const superlink_t *l, int n, proc_t **nodes, uint64_t *ids, const char *opt,
                 const char *val)
{
    for (int i = 0; i < n; i++) {
        nodes[i] = supernode_start(l, i, n, NULL, opt, val, NULL);
        ids[i] = supernode_id(nodes[i]);
    }
}

/* ---- What the CLI reports ----------------------------------------------------------------- */

/* 1 online, 0 offline, -1 not listed. */
static int
node_online(const char *json, uint64_t id)
{
    char key[64];
    snprintf(key, sizeof(key), "\"node-id\": %llu,", (unsigned long long)id);
    const char *p = strstr(json, key);
    if (p == NULL) {
        return -1;
    }
    const char *end = strchr(p, '}');
    const char *o = strstr(p, "\"online\": ");
    ck_assert_msg(o != NULL && end != NULL && o < end, "no \"online\" for node %llu:\n%s",
                  (unsigned long long)id, json);
    return strncmp(o + strlen("\"online\": "), "true", 4) == 0;
}

/* Waits until node `id` is listed with online = `want`. */
static void
wait_node_state(const superlink_t *l, uint64_t id, int want, double timeout)
{
    double deadline = now_s() + timeout;
    for (;;) {
        char *json = nodes_json(l);
        int state = node_online(json, id);
        if (state == want) {
            free(json);
            return;
        }
        ck_assert_msg(now_s() < deadline, "node %llu is not %s after %.0f s:\n%s",
                      (unsigned long long)id, want ? "online" : "offline", timeout, json);
        free(json);
        nap_ms(100);
    }
}

/* `petal run TESTKIT --stream` in the background, with --history/--save-arrays when given. */
static proc_t *
run_in_background(const superlink_t *l, const char *run_config, const char *history,
                  const char *arrays)
{
    const char *argv[PROCS_MAX_ARGS];
    int n = 0;
    argv[n++] = PETAL_BIN;
    argv[n++] = "run";
    argv[n++] = TESTKIT_DIR;
    argv[n++] = "--superlink";
    argv[n++] = l->control;
    argv[n++] = "--insecure";
    argv[n++] = "--stream";
    argv[n++] = "--run-config";
    argv[n++] = run_config;
    if (history != NULL) {
        argv[n++] = "--history";
        argv[n++] = history;
    }
    if (arrays != NULL) {
        argv[n++] = "--save-arrays";
        argv[n++] = arrays;
    }
    argv[n] = NULL;
    return daemon_spawn("run", argv);
}

/* The run id from "run N submitted (bundle HASH)". */
static int64_t
submitted_run_id(proc_t *run)
{
    ck_assert_msg(wait_text(run, 1, " submitted (bundle ", START_TIMEOUT),
                  "petal run did not submit:\nstdout:\n%s\nstderr:\n%s", text_of(run->out),
                  text_of(run->err));
    char *out = text_of(run->out);
    long long id = 0;
    const char *p = strstr(out, "run ");
    ck_assert_msg(p != NULL && sscanf(p, "run %lld submitted", &id) == 1 && id > 0,
                  "no run id in:\n%s", out);
    free(out);
    return id;
}

/* Waits for a background petal run to end; returns its exit status (-1: signal). */
static int
run_exit(proc_t *run, double timeout)
{
    if (!proc_wait(run, timeout)) {
        ck_abort_msg("petal run did not end within %.0f s\nstdout:\n%s\nstderr:\n%s", timeout,
                     text_of(run->out), text_of(run->err));
    }
    ck_assert_msg(WIFEXITED(run->status), "petal run crashed (signal %d)\nstderr:\n%s",
                  WIFSIGNALED(run->status) ? WTERMSIG(run->status) : 0, text_of(run->err));
    return WEXITSTATUS(run->status);
}

/* ---- Histories and arrays ------------------------------------------------------------------ */

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

/* round[phase][key] as a number: 0 and *out, or -1 when absent. */
static int
round_metric(const char *round, const char *phase, const char *key, double *out)
{
    char pkey[128], mkey[128];
    snprintf(pkey, sizeof(pkey), "\"%s\": {", phase);
    snprintf(mkey, sizeof(mkey), "\"%s\":", key);
    const char *p = strstr(round, pkey);
    if (p == NULL) {
        return -1;
    }
    const char *close = strchr(p, '}');
    const char *m = strstr(p + strlen(pkey), mkey);
    if (m == NULL || close == NULL || m > close) {
        return -1;
    }
    char *end;
    *out = strtod(m + strlen(mkey), &end);
    return end != m + strlen(mkey) ? 0 : -1;
}

static double
history_metric(const char *json, uint32_t round, const char *phase, const char *key)
{
    char *r = history_round(json, round);
    ck_assert_msg(r != NULL, "the history has no round %u:\n%s", round, json);
    double x;
    ck_assert_msg(round_metric(r, phase, key, &x) == 0, "round %u %s has no \"%s\":\n%s", round,
                  phase, key, r);
    free(r);
    return x;
}

/* Every numeric metric of every phase of rounds 1..rounds is in both histories, equal up to
 * float rounding (aggregation order may differ between the two). */
static void
assert_same_rounds(const char *a, const char *b, uint32_t rounds)
{
    ck_assert_int_eq(count_text(a, "{\"round\": "), (int)rounds);
    ck_assert_int_eq(count_text(b, "{\"round\": "), (int)rounds);
    for (uint32_t k = 1; k <= rounds; k++) {
        char *ra = history_round(a, k), *rb = history_round(b, k);
        ck_assert_msg(ra != NULL && rb != NULL, "round %u missing:\n%s\n---\n%s", k, a, b);
        int na = 0, nb = 0;
        char phase[128] = "";
        for (int side = 0; side < 2; side++) {
            const char *r = side == 0 ? ra : rb;
            for (const char *p = strchr(r, '"'); p != NULL;) {
                const char *q = strchr(p + 1, '"');
                if (q == NULL) {
                    break;
                }
                char key[128];
                snprintf(key, sizeof(key), "%.*s", (int)(q - p - 1), p + 1);
                if (strncmp(q, "\": {", 4) == 0) {
                    snprintf(phase, sizeof(phase), "%s", key);
                } else if (q[1] == ':' && phase[0] != '\0') {
                    char *end;
                    double x = strtod(q + 2, &end);
                    if (end != q + 2) {
                        if (side == 1) {
                            nb++;
                        } else {
                            double y;
                            na++;
                            ck_assert_msg(round_metric(rb, phase, key, &y) == 0,
                                          "round %u %s \"%s\" only in the simulation:\n%s\n---\n%s",
                                          k, phase, key, ra, rb);
                            ck_assert_msg(fabs(x - y) <= 1e-6 * (fabs(x) > 1 ? fabs(x) : 1),
                                          "round %u %s \"%s\": simulation %.17g, deployment %.17g",
                                          k, phase, key, x, y);
                        }
                    }
                }
                p = strchr(q + 1, '"');
            }
            phase[0] = '\0';
        }
        ck_assert_msg(na == nb && na > 0, "round %u: %d metrics vs %d:\n%s\n---\n%s", k, na, nb, ra,
                      rb);
        free(ra);
        free(rb);
    }
}

/* Decodes a --save-arrays file (a RecordDict with the ArrayRecord "arrays"); *buf_out holds
 * the bytes the arrays point into. */
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
    ck_assert_msg(petal_recorddict_arrays(d, "arrays") != NULL, "%s has no \"arrays\"", path);
    *buf_out = buf;
    return d;
}

/* The float32 "w" of a testkit --save-arrays file. */
static void
load_w(const char *path, float w[W_LEN])
{
    pt_buf_t *buf;
    petal_recorddict_t *d = load_arrays(path, &buf);
    const petal_array_t *a = petal_arrayrecord_get(petal_recorddict_arrays(d, "arrays"), "w");
    ck_assert_msg(a != NULL, "%s has no array \"w\" in \"arrays\"", path);
    ck_assert_int_eq(petal_array_dtype(a), PETAL_DTYPE_FLOAT32);
    ck_assert_uint_eq(petal_array_numel(a), W_LEN);
    memcpy(w, petal_array_data(a), sizeof(float) * W_LEN);
    petal_recorddict_free(d);
    pt_buf_release(buf);
}

/* Two --save-arrays files hold the same arrays (names, dtypes, shapes), float32 values within
 * `tol` of each other. */
static void
assert_same_arrays(const char *path_a, const char *path_b, double tol)
{
    pt_buf_t *ba, *bb;
    petal_recorddict_t *da = load_arrays(path_a, &ba), *db = load_arrays(path_b, &bb);
    const petal_arrayrecord_t *a = petal_recorddict_arrays(da, "arrays");
    const petal_arrayrecord_t *b = petal_recorddict_arrays(db, "arrays");
    ck_assert_uint_eq(petal_arrayrecord_count(a), petal_arrayrecord_count(b));
    ck_assert_uint_gt(petal_arrayrecord_count(a), 0);
    for (uint64_t i = 0; i < petal_arrayrecord_count(a); i++) {
        const char *name = petal_arrayrecord_name_at(a, i);
        const petal_array_t *x = petal_arrayrecord_at(a, i);
        const petal_array_t *y = petal_arrayrecord_get(b, name);
        ck_assert_msg(y != NULL, "array \"%s\" is only in %s", name, path_a);
        ck_assert_int_eq(petal_array_dtype(x), PETAL_DTYPE_FLOAT32);
        ck_assert_int_eq(petal_array_dtype(y), PETAL_DTYPE_FLOAT32);
        ck_assert_uint_eq(petal_array_ndim(x), petal_array_ndim(y));
        for (uint32_t k = 0; k < petal_array_ndim(x); k++) {
            ck_assert_uint_eq(petal_array_shape(x)[k], petal_array_shape(y)[k]);
        }
        const float *fx = petal_array_data(x), *fy = petal_array_data(y);
        for (uint64_t k = 0; k < petal_array_numel(x); k++) {
            ck_assert_msg(fabs((double)fx[k] - (double)fy[k]) <= tol,
                          "%s[%llu]: simulation %.9g, deployment %.9g", name, (unsigned long long)k,
                          (double)fx[k], (double)fy[k]);
        }
    }
    petal_recorddict_free(da);
    petal_recorddict_free(db);
    pt_buf_release(ba);
    pt_buf_release(bb);
}

/* One FedAvg round of testkit over the partitions in `mask`: what it adds to every w[i]. */
static double
fedavg_step(unsigned mask)
{
    double num = 0.0, den = 0.0;
    for (int p = 0; p < 16; p++) {
        if (mask & (1u << p)) {
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

/* ---- Fixtures ---------------------------------------------------------------------------------
 */

/* ---- 1. Simulation and deployment give the same run ---------------------------------------- */

START_TEST(test_parity_with_simulation)
{
    char sim_hist[PATH_CAP], sim_arr[PATH_CAP], dep_hist[PATH_CAP], dep_arr[PATH_CAP];
    work_path(sim_hist, sizeof(sim_hist), "sim-history.json");
    work_path(sim_arr, sizeof(sim_arr), "sim-arrays.bin");
    work_path(dep_hist, sizeof(dep_hist), "deploy-history.json");
    work_path(dep_arr, sizeof(dep_arr), "deploy-arrays.bin");
    const char *cfg = "num-server-rounds=3 fraction-train=1.0";
    tool_result_t r;
    run_tool(&r, RUN_TIMEOUT, PETAL_BIN, "sim", TESTKIT_DIR, "--num-supernodes", "3", "--seed",
             "11", "--run-config", cfg, "--history", sim_hist, "--save-arrays", sim_arr, NULL);
    assert_ok(&r, "petal sim");
    tool_free(&r);

    superlink_t l;
    superlink_start(&l, NULL);
    proc_t *nodes[3];
    uint64_t ids[3];
    supernodes_start(&l, 3, nodes, ids, NULL, NULL);
    free(wait_online(&l, 3, START_TIMEOUT));
    run_tool(&r, RUN_TIMEOUT, PETAL_BIN, "run", TESTKIT_DIR, "--superlink", l.control, "--insecure",
             "--seed", "11", "--run-config", cfg, "--stream", "--history", dep_hist,
             "--save-arrays", dep_arr, NULL);
    assert_ok(&r, "petal run");
    ck_assert_msg(strstr(r.out, "run 1 submitted (bundle ") != NULL, "stdout:\n%s", r.out);
    ck_assert_msg(strstr(r.out, "round 1/3") && strstr(r.out, "round 3/3"),
                  "--stream shows no per-round lines:\n%s", r.out);
    tool_free(&r);

    /* Each SuperNode trained as its partition. */
    for (int i = 0; i < 3; i++) {
        char want[96];
        snprintf(want, sizeof(want), "testkit: train partition=%d node=%llu round=3", i,
                 (unsigned long long)ids[i]);
        char *err = text_of(nodes[i]->err);
        ck_assert_msg(strstr(err, want) != NULL, "node%d's log lacks \"%s\":\n%s", i, want, err);
        free(err);
    }

    assert_same_arrays(sim_arr, dep_arr, 1e-6);
    float w[W_LEN];
    load_w(dep_arr, w);
    assert_w(w, 3 * fedavg_step(0x7));
    char *a = read_all(sim_hist, NULL), *b = read_all(dep_hist, NULL);
    ck_assert_msg(a != NULL && b != NULL, "a --history file is missing");
    assert_same_rounds(a, b, 3);
    free(a);
    free(b);

    /* What an operator sees afterwards. */
    run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "ls", "--superlink", l.control, "--insecure", NULL);
    assert_ok(&r, "petal ls");
    ck_assert_msg(strstr(r.out, "finished:completed") != NULL, "petal ls:\n%s", r.out);
    tool_free(&r);
    run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "log", "1", "--superlink", l.control, "--insecure", NULL);
    assert_ok(&r, "petal log");
    ck_assert_msg(strstr(r.out, "round 3/3") && strstr(r.out, "finished:completed"),
                  "petal log 1:\n%s", r.out);
    tool_free(&r);
}
END_TEST

/* The quickstart app (Fashion-MNIST, an MLP): the same .so files, the same model, whether
 * simulated or deployed, here with the ServerApp and the ClientApps in their own processes. */
START_TEST(test_parity_quickstart)
{
    char sim_hist[PATH_CAP], sim_arr[PATH_CAP], dep_hist[PATH_CAP], dep_arr[PATH_CAP];
    work_path(sim_hist, sizeof(sim_hist), "sim-history.json");
    work_path(sim_arr, sizeof(sim_arr), "sim-arrays.bin");
    work_path(dep_hist, sizeof(dep_hist), "deploy-history.json");
    work_path(dep_arr, sizeof(dep_arr), "deploy-arrays.bin");
    if (access(FMNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0 &&
        access(FMNIST_DIR "/train-images-idx3-ubyte", R_OK) != 0) {
        fprintf(stderr, "test_parity_quickstart: skipped, no Fashion-MNIST in " FMNIST_DIR
                        " (apt install dataset-fashion-mnist)\n");
        return;
    }
    const char *cfg = "num-server-rounds=2";
    tool_result_t r;
    run_tool(&r, RUN_TIMEOUT, PETAL_BIN, "sim", QUICKSTART_DIR, "--num-supernodes", "2", "--seed",
             "3", "--run-config", cfg, "--history", sim_hist, "--save-arrays", sim_arr, NULL);
    assert_ok(&r, "petal sim");
    tool_free(&r);

    superlink_t l;
    superlink_start(&l, "--isolation", "process", NULL);
    proc_t *nodes[2];
    uint64_t ids[2];
    supernodes_start(&l, 2, nodes, ids, "--isolation", "process");
    free(wait_online(&l, 2, START_TIMEOUT));
    run_tool(&r, RUN_TIMEOUT, PETAL_BIN, "run", QUICKSTART_DIR, "--superlink", l.control,
             "--insecure", "--seed", "3", "--run-config", cfg, "--history", dep_hist,
             "--save-arrays", dep_arr, NULL);
    assert_ok(&r, "petal run");
    tool_free(&r);
    assert_same_arrays(sim_arr, dep_arr, 1e-6);
    char *a = read_all(sim_hist, NULL), *b = read_all(dep_hist, NULL);
    ck_assert_msg(a != NULL && b != NULL, "a --history file is missing");
    assert_same_rounds(a, b, 2);
    free(a);
    free(b);
}
END_TEST

/* ---- 2. A SuperNode dies mid-round ------------------------------------------------------------
 */

START_TEST(test_supernode_killed_mid_round)
{
    char hist[PATH_CAP], arr[PATH_CAP];
    work_path(hist, sizeof(hist), "history.json");
    work_path(arr, sizeof(arr), "arrays.bin");
    superlink_t l;
    superlink_start(&l, "--heartbeat-interval", "0.5", NULL);
    proc_t *nodes[3];
    uint64_t ids[3];
    supernodes_start(&l, 3, nodes, ids, NULL, NULL);
    free(wait_online(&l, 3, START_TIMEOUT));
    /* Partition 2 sleeps in its first train call; it is killed then. */
    proc_t *run = run_in_background(&l,
                                    "num-server-rounds=3 sleep-node=2 sleep-ms=20000 "
                                    "round-timeout=30 min-train-nodes=2 min-evaluate-nodes=2 "
                                    "min-available-nodes=2",
                                    hist, arr);
    ck_assert_msg(wait_text(nodes[2], 2, "testkit: train partition=2", 30),
                  "partition 2 never trained:\n%s", text_of(nodes[2]->err));
    ck_assert_int_eq(kill(nodes[2]->pid, SIGKILL), 0);
    ck_assert(proc_wait(nodes[2], 5));

    /* Documented (docs/protocol.md, Fleet): after 3 missed heartbeats its instruction fails
     * with NODE_UNAVAILABLE; the other two replies satisfy min-train-nodes = 2. */
    int code = run_exit(run, RUN_TIMEOUT);
    char *out = text_of(run->out), *err = text_of(run->err);
    ck_assert_msg(code == 0 && strstr(out, "round 3/3") != NULL,
                  "petal run exited %d\nstdout:\n%s\nstderr:\n%s", code, out, err);
    free(out);
    free(err);
    char *json = read_all(hist, NULL);
    ck_assert_ptr_nonnull(json);
    ck_assert_double_eq(history_metric(json, 1, "train", "num-replies"), 2);
    ck_assert_double_eq(history_metric(json, 1, "train", "num-failures"), 1);
    for (uint32_t k = 1; k <= 3; k++) {
        ck_assert_double_eq(history_metric(json, k, "evaluate", "num-replies"), 2);
        if (k > 1) {
            ck_assert_double_eq(history_metric(json, k, "train", "num-replies"), 2);
            ck_assert_double_eq(history_metric(json, k, "train", "num-failures"), 0);
        }
    }
    free(json);
    float w[W_LEN];
    load_w(arr, w);
    assert_w(w, 3 * fedavg_step(0x3));

    char want[128];
    snprintf(want, sizeof(want), "node %llu failed: NODE_UNAVAILABLE", (unsigned long long)ids[2]);
    char *log = text_of(l.p->err);
    ck_assert_msg(strstr(log, want) != NULL, "the SuperLink's log lacks \"%s\":\n%s", want, log);
    free(log);

    wait_node_state(&l, ids[2], 0, 10);
    json = nodes_json(&l);
    ck_assert_int_eq(node_online(json, ids[0]), 1);
    ck_assert_int_eq(node_online(json, ids[1]), 1);
    ck_assert_int_eq(node_online(json, ids[2]), 0);
    free(json);
}
END_TEST

/* ---- 2b. A reply too large for the wire fails fast, with the reason ---------------------------
 */

/* Node 1 may send at most 256 KiB per message (--max-message-size) and its train replies carry
 * 1 MiB of padding. Without the SuperNode's check the reply is dropped at every send and the
 * round waits for round-timeout (an hour here): the run must instead go on with node 0's reply
 * and the ServerApp must see node 1's error reply saying why. (The same path catches an array
 * over 4 GiB - 1 bytes; tests/unit/test_codec.c covers that check without allocating it.) */
START_TEST(test_oversized_reply_fails_fast)
{
    char hist[PATH_CAP], arr[PATH_CAP];
    work_path(hist, sizeof(hist), "history.json");
    work_path(arr, sizeof(arr), "arrays.bin");
    superlink_t l;
    superlink_start(&l, NULL);
    proc_t *nodes[2];
    uint64_t ids[2];
    nodes[0] = supernode_start(&l, 0, 2, NULL, NULL);
    ids[0] = supernode_id(nodes[0]);
    nodes[1] = supernode_start(&l, 1, 2, NULL, "--max-message-size", "262144", NULL);
    ids[1] = supernode_id(nodes[1]);
    free(wait_online(&l, 2, START_TIMEOUT));
    tool_result_t r;
    run_tool(&r, RUN_TIMEOUT, PETAL_BIN, "run", TESTKIT_DIR, "--superlink", l.control, "--insecure",
             "--stream", "--history", hist, "--save-arrays", arr, "--run-config",
             "num-server-rounds=1 pad-node=1 pad-bytes=1048576 round-timeout=3600 "
             "min-train-nodes=1 min-evaluate-nodes=2 min-available-nodes=2",
             NULL);
    assert_ok(&r, "petal run");
    ck_assert_msg(strstr(r.out, "round 1/1") != NULL, "stdout:\n%s", r.out);
    tool_free(&r);

    char *json = read_all(hist, NULL);
    ck_assert_ptr_nonnull(json);
    ck_assert_double_eq(history_metric(json, 1, "train", "num-replies"), 1);
    ck_assert_double_eq(history_metric(json, 1, "train", "num-failures"), 1);
    ck_assert_double_eq(history_metric(json, 1, "evaluate", "num-replies"), 2);
    free(json);
    float w[W_LEN];
    load_w(arr, w);
    assert_w(w, fedavg_step(0x1));

    char want[256];
    snprintf(want, sizeof(want),
             "node %llu failed: CLIENT_APP_RAISED_EXCEPTION: the ClientApp's reply cannot be "
             "sent: the message has ",
             (unsigned long long)ids[1]);
    char *log = text_of(l.p->err);
    ck_assert_msg(strstr(log, want) != NULL && strstr(log, "over the limit of 262144 bytes"),
                  "the SuperLink's log lacks \"%s... over the limit of 262144 bytes\":\n%s", want,
                  log);
    free(log);
    ck_assert_msg(!proc_exited(nodes[1]), "the SuperNode with the oversized reply died");
}
END_TEST

/* ---- 3. The SuperLink dies and comes back on its database ------------------------------------ */

START_TEST(test_superlink_restart)
{
    char db[PATH_CAP], fleet[64], control[64];
    work_path(db, sizeof(db), "superlink.db");
    snprintf(fleet, sizeof(fleet), "127.0.0.1:%d", free_port());
    snprintf(control, sizeof(control), "127.0.0.1:%d", free_port());
    superlink_t l;
    superlink_start(&l, "--fleet-address", fleet, "--control-address", control, "--database", db,
                    "--heartbeat-interval", "0.5", NULL);
    proc_t *a = supernode_start(&l, 0, 2, "node-a", "--max-wait-time", "60", NULL);
    uint64_t id_a = supernode_id(a);
    proc_t *b = supernode_start(&l, 1, 2, "node-b", "--max-wait-time", "60", NULL);
    uint64_t id_b = supernode_id(b);
    char *before = wait_online(&l, 2, START_TIMEOUT);
    ck_assert_int_eq(count_text(before, "\"node-id\": "), 2);
    ck_assert_int_eq(node_online(before, id_a), 1);
    ck_assert_int_eq(node_online(before, id_b), 1);

    proc_t *run = run_in_background(&l, "num-server-rounds=50 slow-ms=200", NULL, NULL);
    int64_t run_id = submitted_run_id(run);
    ck_assert_msg(wait_text(run, 1, "round 1/50", 30), "no round ended:\n%s", text_of(run->out));

    ck_assert_int_eq(kill(l.p->pid, SIGKILL), 0);
    ck_assert(proc_wait(l.p, 5));
    /* The follower loses its SuperLink: an error, not a hang. */
    int code = run_exit(run, 20);
    ck_assert_msg(code != 0, "petal run --stream exited 0 after its SuperLink died");

    superlink_t l2;
    superlink_start(&l2, "--fleet-address", fleet, "--control-address", control, "--database", db,
                    "--heartbeat-interval", "0.5", NULL);
    ck_assert_str_eq(l2.fleet, fleet);
    char status[64], reason[512];
    ck_assert_int_eq(run_status(&l2, run_id, status, sizeof(status), reason, sizeof(reason)), 0);
    ck_assert_str_eq(status, "finished:failed");
    ck_assert_msg(strstr(reason, "restart") != NULL, "the reason does not name the restart: %s",
                  reason);

    char *after = wait_online(&l2, 2, 30);
    ck_assert_int_eq(count_text(after, "\"node-id\": "), 2);
    ck_assert_int_eq(node_online(after, id_a), 1);
    ck_assert_int_eq(node_online(after, id_b), 1);
    ck_assert_uint_eq(supernode_id(a), id_a);
    ck_assert_uint_eq(supernode_id(b), id_b);
    free(before);
    free(after);

    tool_result_t r;
    run_tool(&r, RUN_TIMEOUT, PETAL_BIN, "run", TESTKIT_DIR, "--superlink", l2.control,
             "--insecure", "--stream", "--run-config", "num-server-rounds=2", NULL);
    assert_ok(&r, "petal run after the restart");
    char want[64];
    snprintf(want, sizeof(want), "run %lld submitted", (long long)run_id + 1);
    ck_assert_msg(strstr(r.out, want) && strstr(r.out, "round 2/2"), "stdout:\n%s", r.out);
    tool_free(&r);
    ck_assert_msg(!proc_exited(a) && !proc_exited(b), "a SuperNode gave up:\n%s\n---\n%s",
                  text_of(a->err), text_of(b->err));
}
END_TEST

/* ---- 4. A ClientApp that segfaults, in process isolation ------------------------------------- */

START_TEST(test_process_isolation_crash)
{
    char hist[PATH_CAP], arr[PATH_CAP];
    work_path(hist, sizeof(hist), "history.json");
    work_path(arr, sizeof(arr), "arrays.bin");
    superlink_t l;
    superlink_start(&l, NULL);
    proc_t *nodes[3];
    uint64_t ids[3];
    supernodes_start(&l, 3, nodes, ids, "--isolation", "process");
    free(wait_online(&l, 3, START_TIMEOUT));
    tool_result_t r;
    run_tool(&r, RUN_TIMEOUT, PETAL_BIN, "run", TESTKIT_DIR, "--superlink", l.control, "--insecure",
             "--stream", "--history", hist, "--save-arrays", arr, "--run-config",
             "num-server-rounds=2 crash-node=1 min-train-nodes=2", NULL);
    assert_ok(&r, "petal run");
    ck_assert_msg(strstr(r.out, "round 2/2") != NULL, "stdout:\n%s", r.out);
    tool_free(&r);

    char *json = read_all(hist, NULL);
    ck_assert_ptr_nonnull(json);
    for (uint32_t k = 1; k <= 2; k++) {
        ck_assert_double_eq(history_metric(json, k, "train", "num-replies"), 2);
        ck_assert_double_eq(history_metric(json, k, "train", "num-failures"), 1);
        /* The crashed node's next instruction (evaluate) ran in a new ClientApp process. */
        ck_assert_double_eq(history_metric(json, k, "evaluate", "num-replies"), 3);
        ck_assert_double_eq(history_metric(json, k, "evaluate", "num-failures"), 0);
    }
    free(json);
    float w[W_LEN];
    load_w(arr, w);
    assert_w(w, 2 * fedavg_step(0x5));

    char want[160];
    snprintf(want, sizeof(want),
             "node %llu failed: CLIENT_APP_CRASHED: the ClientApp process crashed: killed by "
             "signal %d",
             (unsigned long long)ids[1], SIGSEGV);
    char *log = text_of(l.p->err);
    ck_assert_msg(strstr(log, want) != NULL, "the SuperLink's log lacks \"%s\":\n%s", want, log);
    free(log);
    log = text_of(nodes[1]->err);
    ck_assert_msg(strstr(log, "ClientApp process crashed") != NULL,
                  "node1's log does not report the crash:\n%s", log);
    free(log);
    ck_assert_msg(!proc_exited(nodes[1]), "the SuperNode of the crashing ClientApp died");
    free(wait_online(&l, 3, START_TIMEOUT));
}
END_TEST

/* A ServerApp plugin that segfaults under petal-superlink --isolation process fails its own run
 * with the signal named; the SuperLink keeps serving the next run. */
static void
copy_file(const char *from, const char *to)
{
    size_t len;
    char *data = read_all(from, &len);
    ck_assert_msg(data != NULL, "cannot read %s", from);
    FILE *f = fopen(to, "wb");
    ck_assert_msg(f != NULL && fwrite(data, 1, len, f) == len && fclose(f) == 0, "cannot write %s",
                  to);
    free(data);
}

START_TEST(test_serverapp_process_crash)
{
    char app[PATH_CAP], path[PATH_CAP + 32];
    work_path(app, sizeof(app), "crashapp");
    ck_assert_int_eq(mkdir(app, 0755), 0);
    snprintf(path, sizeof(path), "%s/client.so", app);
    copy_file(TESTKIT_DIR "/client.so", path);
    snprintf(path, sizeof(path), "%s/server.so", app);
    copy_file(CRASH_SERVER_SO, path);
    snprintf(path, sizeof(path), "%s/petal.toml", app);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("[app]\nname = \"crashapp\"\nclient = \"client.so\"\nserver = \"server.so\"\n"
          "[app.config]\nnum-server-rounds = 1\n",
          f);
    fclose(f);

    superlink_t l;
    superlink_start(&l, "--isolation", "process", NULL);
    proc_t *nodes[2];
    uint64_t ids[2];
    supernodes_start(&l, 2, nodes, ids, NULL, NULL);
    free(wait_online(&l, 2, START_TIMEOUT));
    tool_result_t r;
    run_tool(&r, RUN_TIMEOUT, PETAL_BIN, "run", app, "--superlink", l.control, "--insecure",
             "--stream", NULL);
    char want[96];
    snprintf(want, sizeof(want), "killed by signal %d", SIGSEGV);
    assert_refused(&r, 1, "finished:failed", want, NULL);
    tool_free(&r);
    ck_assert_msg(!proc_exited(l.p), "the SuperLink died with its ServerApp");

    /* The SuperLink still serves: a normal run (its ServerApp also in a child) completes. */
    run_tool(&r, RUN_TIMEOUT, PETAL_BIN, "run", TESTKIT_DIR, "--superlink", l.control, "--insecure",
             "--stream", "--run-config", "num-server-rounds=2", NULL);
    assert_ok(&r, "petal run after the crash");
    ck_assert_msg(strstr(r.out, "round 2/2") != NULL, "stdout:\n%s", r.out);
    tool_free(&r);
}
END_TEST

/* ---- 5. petal stop during a round ---------------------------------------------------------- */

START_TEST(test_stop_run)
{
    superlink_t l;
    superlink_start(&l, NULL);
    proc_t *nodes[2];
    uint64_t ids[2];
    supernodes_start(&l, 2, nodes, ids, NULL, NULL);
    free(wait_online(&l, 2, START_TIMEOUT));
    /* Every train call takes 20 s: the stop must not wait for the round. */
    proc_t *run =
        run_in_background(&l, "num-server-rounds=3 slow-ms=20000 round-timeout=60", NULL, NULL);
    int64_t run_id = submitted_run_id(run);
    ck_assert(wait_text(nodes[0], 2, "testkit: train partition=0", 30));
    char id[32];
    snprintf(id, sizeof(id), "%lld", (long long)run_id);
    tool_result_t r;
    run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "stop", id, "--superlink", l.control, "--insecure", NULL);
    assert_ok(&r, "petal stop");
    char want[64];
    snprintf(want, sizeof(want), "run %lld: stop requested", (long long)run_id);
    ck_assert_msg(strstr(r.out, want) != NULL, "stdout:\n%s", r.out);
    tool_free(&r);

    char reason[512];
    wait_run_status(&l, run_id, "finished:stopped", reason, sizeof(reason), 10);
    ck_assert_msg(strstr(reason, "stop") != NULL, "reason: %s", reason);
    /* The follower ends with the run: exit 1 (not completed), saying why. */
    int code = run_exit(run, 10);
    char *err = text_of(run->err);
    ck_assert_msg(code == 1 && strstr(err, "finished:stopped") != NULL,
                  "petal run --stream exited %d:\n%s", code, err);
    free(err);

    run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "stop", id, "--superlink", l.control, "--insecure", NULL);
    assert_refused(&r, 1, "finished already", NULL);
    tool_free(&r);
}
END_TEST

/* ---- 6. Garbage on the fleet port ----------------------------------------------------------- */

/* Connects to addr ("127.0.0.1:PORT"), sends `len` bytes, and waits (at most 10 s) for the
 * SuperLink to close the connection. Returns the local port, for finding it in the log. */
static int
send_raw(const char *addr, const unsigned char *bytes, size_t len)
{
    int port = atoi(strchr(addr, ':') + 1);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(s, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(connect(s, (struct sockaddr *)&a, sizeof(a)) == 0, "connect %s: %s", addr,
                  strerror(errno));
    socklen_t alen = sizeof(a);
    ck_assert_int_eq(getsockname(s, (struct sockaddr *)&a, &alen), 0);
    ck_assert_int_eq(send(s, bytes, len, MSG_NOSIGNAL), (ssize_t)len);
    double deadline = now_s() + 10;
    int closed = 0;
    while (!closed && now_s() < deadline) {
        struct pollfd pfd = {.fd = s, .events = POLLIN};
        if (poll(&pfd, 1, 100) > 0) {
            char buf[4096];
            ssize_t n = recv(s, buf, sizeof(buf), 0);
            closed = n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN);
        }
    }
    close(s);
    ck_assert_msg(closed, "the SuperLink kept a connection open after %zu bad bytes", len);
    return ntohs(a.sin_port);
}

START_TEST(test_malformed_frames)
{
    superlink_t l;
    superlink_start(&l, NULL);
    /* A whole frame (u32 big-endian length 252, then 252 bytes) of random bytes, and a frame
     * that announces 0xFFFFFFFF bytes. */
    unsigned char junk[256] = {0, 0, 0, 252};
    uint32_t x = 12345;
    for (size_t i = 4; i < sizeof(junk); i++) {
        x = x * 1103515245u + 12345u;
        junk[i] = (unsigned char)(x >> 16);
    }
    int port_junk = send_raw(l.fleet, junk, sizeof(junk));
    unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0x96, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    int port_huge = send_raw(l.fleet, huge, sizeof(huge));

    /* It keeps serving: two honest SuperNodes run an app to the end. */
    proc_t *nodes[2];
    uint64_t ids[2];
    supernodes_start(&l, 2, nodes, ids, NULL, NULL);
    free(wait_online(&l, 2, START_TIMEOUT));
    tool_result_t r;
    run_tool(&r, RUN_TIMEOUT, PETAL_BIN, "run", TESTKIT_DIR, "--superlink", l.control, "--insecure",
             "--stream", "--run-config", "num-server-rounds=2", NULL);
    assert_ok(&r, "petal run");
    ck_assert_msg(strstr(r.out, "round 2/2") != NULL, "stdout:\n%s", r.out);
    tool_free(&r);

    /* Its log names each bad peer and the problem, on one line. */
    char *log = text_of(l.p->err);
    int ports[2] = {port_junk, port_huge};
    const char *problem[2] = {"malformed", "4294967295"};
    for (int i = 0; i < 2; i++) {
        char peer[64];
        snprintf(peer, sizeof(peer), "127.0.0.1:%d", ports[i]);
        const char *at = strstr(log, peer);
        ck_assert_msg(at != NULL, "the SuperLink's log does not name %s (%s):\n%s", peer,
                      i == 0 ? "random bytes" : "length 0xFFFFFFFF", log);
        const char *bol = at;
        while (bol > log && bol[-1] != '\n') {
            bol--;
        }
        const char *eol = strchr(at, '\n');
        char *line = strndup(bol, eol != NULL ? (size_t)(eol - bol) : strlen(bol));
        ck_assert_msg(strstr(line, problem[i]) != NULL, "the log line of %s lacks \"%s\": %s", peer,
                      problem[i], line);
        free(line);
    }
    free(log);
}
END_TEST

/* ---- 7. Bad input to the CLIs ------------------------------------------------------------------
 */

START_TEST(test_cli_needs_insecure)
{
    tool_result_t r;
    run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "ls", "--superlink", "127.0.0.1:9", NULL);
    assert_refused(&r, 2, "--insecure", NULL);
    tool_free(&r);
    run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "run", TESTKIT_DIR, "--superlink", "127.0.0.1:9", NULL);
    assert_refused(&r, 2, "--insecure", NULL);
    tool_free(&r);
    run_tool(&r, CLI_TIMEOUT, SUPERLINK_BIN, "--fleet-address", "127.0.0.1:0", "--control-address",
             "127.0.0.1:0", NULL);
    assert_refused(&r, 2, "--insecure", NULL);
    tool_free(&r);
    run_tool(&r, CLI_TIMEOUT, SUPERNODE_BIN, "--superlink", "127.0.0.1:9", NULL);
    assert_refused(&r, 2, "--insecure", NULL);
    tool_free(&r);
}
END_TEST

START_TEST(test_cli_bad_superlink)
{
    tool_result_t r;
    run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "ls", "--superlink", "", "--insecure", NULL);
    assert_refused(&r, 2, "--superlink", "HOST:PORT", NULL);
    tool_free(&r);
    run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "nodes", "--superlink", "no-port-here", "--insecure",
             NULL);
    assert_refused(&r, -2, "no-port-here", NULL);
    tool_free(&r);
    run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "ls", "--superlink", "127.0.0.1:notaport", "--insecure",
             NULL);
    assert_refused(&r, -2, "notaport", NULL);
    tool_free(&r);
    run_tool(&r, CLI_TIMEOUT, SUPERNODE_BIN, "--superlink", "", "--insecure", NULL);
    assert_refused(&r, 2, "--superlink", NULL);
    tool_free(&r);
}
END_TEST

/* Nobody listens: a clear error within seconds (the guard is 10 s), not a hang. */
START_TEST(test_cli_nobody_listening)
{
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", free_port());
    tool_result_t r;
    run_tool(&r, 10, PETAL_BIN, "run", TESTKIT_DIR, "--superlink", addr, "--insecure", NULL);
    assert_refused(&r, 1, addr, NULL);
    tool_free(&r);
    run_tool(&r, 10, PETAL_BIN, "ls", "--superlink", addr, "--insecure", NULL);
    assert_refused(&r, 1, addr, NULL);
    tool_free(&r);
    /* A SuperNode retries with backoff, then gives up when told to. */
    run_tool(&r, 20, SUPERNODE_BIN, "--superlink", addr, "--insecure", "--max-retries", "2", NULL);
    assert_refused(&r, 1, "giving up", addr, NULL);
    tool_free(&r);
}
END_TEST

START_TEST(test_cli_unknown_run)
{
    superlink_t l;
    superlink_start(&l, NULL);
    tool_result_t r;
    run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "log", "999", "--superlink", l.control, "--insecure",
             NULL);
    assert_refused(&r, 1, "no run 999", NULL);
    tool_free(&r);
    run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "stop", "999", "--superlink", l.control, "--insecure",
             NULL);
    assert_refused(&r, 1, "no run 999", NULL);
    tool_free(&r);
    run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "log", "abc", "--superlink", l.control, "--insecure",
             NULL);
    assert_refused(&r, 2, "RUN_ID", NULL);
    tool_free(&r);
    /* An empty SuperLink lists nothing, successfully. */
    run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "ls", "--superlink", l.control, "--insecure", "--format",
             "json", NULL);
    assert_ok(&r, "petal ls");
    ck_assert_msg(strstr(r.out, "[") != NULL && strstr(r.out, "run-id") == NULL, "petal ls:\n%s",
                  r.out);
    tool_free(&r);
    ck_assert_msg(!proc_exited(l.p), "the SuperLink died:\n%s", text_of(l.p->err));
}
END_TEST

static Suite *
deploy_suite(void)
{
    Suite *s = suite_create("deployment");
    TCase *tc = tcase_create("runs");
    tcase_add_unchecked_fixture(tc, procs_suite_setup, procs_suite_teardown);
    tcase_add_checked_fixture(tc, procs_setup, procs_teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_parity_with_simulation);
    tcase_add_test(tc, test_parity_quickstart);
    tcase_add_test(tc, test_supernode_killed_mid_round);
    tcase_add_test(tc, test_oversized_reply_fails_fast);
    tcase_add_test(tc, test_superlink_restart);
    tcase_add_test(tc, test_process_isolation_crash);
    tcase_add_test(tc, test_serverapp_process_crash);
    tcase_add_test(tc, test_stop_run);
    tcase_add_test(tc, test_malformed_frames);
    suite_add_tcase(s, tc);

    tc = tcase_create("bad input");
    tcase_add_unchecked_fixture(tc, procs_suite_setup, procs_suite_teardown);
    tcase_add_checked_fixture(tc, procs_setup, procs_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_cli_needs_insecure);
    tcase_add_test(tc, test_cli_bad_superlink);
    tcase_add_test(tc, test_cli_nobody_listening);
    tcase_add_test(tc, test_cli_unknown_run);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    procs_main_init("deploy");
    SRunner *sr = srunner_create(deploy_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
