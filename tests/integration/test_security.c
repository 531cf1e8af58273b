/* test_security.c - the secure channel as operators deploy it: keys, pins, allowlists, limits. */
#include <check.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/keys.h"
#include "transport/secure.h"

#include "procs.h"

/*
 * Like test_deploy.c, with its process helpers (procs.h): build/bin/petal-superlink,
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

#define FAST_TIMEOUT 10.0 /* a refusal: within seconds, never a hang */

/* Paths of this test's keys and key lists (under the test's directory). */
static char key_dir[6][PATH_CAP + 16];
static char sl_pub[PATH_CAP + 32], op_pub[PATH_CAP + 32];
static char allow_file[PATH_CAP], operators_file[PATH_CAP];
enum { K_SL, K_NODE0, K_NODE1, K_NODE2, K_OP, K_OP2 };
static const char *const key_names[6] = {"sl", "node0", "node1", "node2", "op", "op2"};

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

/* Starts petal-superlink: secure (keys/sl, allow.txt, operators.txt; the helpers' own CLI calls
 * use the operator keys/op) or --insecure, with the extra arguments (NULL: none). */
static void
link_start(superlink_t *l, int secure, const args_t *extra)
{
    if (!secure) {
        superlink_start_keys(l, NULL, NULL, NULL, extra);
        return;
    }
    superlink_start_keys(l, key_dir[K_SL], allow_file, operators_file, extra);
    l->cli_keys = key_dir[K_OP];
    l->cli_pin = sl_pub;
}

/* Starts a secure SuperNode with identity keys/<key> pinning `pin` (NULL: keys/sl/petal.pub),
 * as partition `partition` of `partitions`, with the extra arguments (NULL-terminated). */
static proc_t *
node_start(const superlink_t *l, int key, const char *pin, int partition, int partitions, ...)
{
    args_t a = {.n = 0};
    args_add(&a, "--keys");
    args_add(&a, key_dir[key]);
    args_add(&a, "--superlink-key");
    args_add(&a, pin != NULL ? pin : sl_pub);
    va_list ap;
    va_start(ap, partitions);
    args_add_va(&a, ap);
    va_end(ap);
    return supernode_start_args(l, key_names[key], partition, partitions, &a);
}

/* petal CMD --superlink CONTROL --keys keys/<op> --superlink-key keys/sl/petal.pub, then the
 * extra arguments (NULL-terminated). */
static void
cli(tool_result_t *r, double timeout, const superlink_t *l, const char *cmd, int op, ...)
{
    args_t a = {.n = 0};
    args_add(&a, PETAL_BIN);
    args_add(&a, cmd);
    args_add(&a, "--superlink");
    args_add(&a, l->control);
    args_add(&a, "--keys");
    args_add(&a, key_dir[op]);
    args_add(&a, "--superlink-key");
    args_add(&a, sl_pub);
    va_list ap;
    va_start(ap, op);
    args_add_va(&a, ap);
    va_end(ap);
    run_args(r, timeout, &a);
}

/* ---- Fixtures -------------------------------------------------------------------------------- */

static void
setup(void)
{
    procs_setup();
    make_keys();
}

/* ---- 1. A run over the secure channel ---------------------------------------------------------
 */

START_TEST(test_secure_run)
{
    superlink_t l;
    link_start(&l, 1, NULL);
    proc_t *n0 = node_start(&l, K_NODE0, NULL, 0, 2, NULL);
    uint64_t id0 = supernode_id(n0);
    proc_t *n1 = node_start(&l, K_NODE1, NULL, 1, 2, NULL);
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
    link_start(&l, 1, NULL);
    /* The operator's petal.pub is a valid key, but not the SuperLink's. */
    proc_t *n0 = node_start(&l, K_NODE0, op_pub, 0, 1, NULL);
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
    link_start(&l, 1, NULL);
    proc_t *n0 = node_start(&l, K_NODE0, NULL, 0, 2, NULL);
    supernode_id(n0);
    proc_t *n2 = node_start(&l, K_NODE2, NULL, 1, 2, "--max-retries", "1", NULL);
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
    proc_t *n1 = node_start(&l, K_NODE1, NULL, 1, 2, NULL);
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
    link_start(&l, 1, NULL);
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
    link_start(&l, 1, NULL);
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
    link_start(&plain, 0, NULL);
    cli(&r, FAST_TIMEOUT, &plain, "ls", K_OP, NULL);
    assert_refused(&r, 1, "--insecure", NULL);
    tool_free(&r);
    proc_t *n0 = node_start(&plain, K_NODE0, NULL, 0, 1, "--max-retries", "1", NULL);
    ck_assert_int_eq(daemon_exit(n0, FAST_TIMEOUT + 5), 1);
    assert_file_has(n0->err, "the secure node's log", "--insecure");
    ck_assert_msg(!proc_exited(l.p) && !proc_exited(plain.p), "a SuperLink died");
}
END_TEST

/* ---- 6. A node reconnecting with its key keeps its node id --------------------------------- */

START_TEST(test_reconnect_keeps_id)
{
    superlink_t l;
    link_start(&l, 1, NULL);
    proc_t *n0 = node_start(&l, K_NODE0, NULL, 0, 2, NULL);
    uint64_t id0 = supernode_id(n0);
    proc_t *n1 = node_start(&l, K_NODE1, NULL, 1, 2, NULL);
    uint64_t id1 = supernode_id(n1);
    ck_assert_uint_ne(id0, id1);
    proc_kill_group(n0);
    proc_t *again = node_start(&l, K_NODE0, NULL, 0, 2, NULL);
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
    args_add(&extra, "--fleet-address");
    args_add(&extra, "0.0.0.0:0");
    link_start(&l, 0, &extra);
    ck_assert_msg(strncmp(l.fleet, "0.0.0.0:", 8) == 0, "fleet address %s", l.fleet);
    ck_assert(wait_text(l.p, 2, "warning: --insecure", START_TIMEOUT));
    /* With keys it serves 0.0.0.0 too. */
    superlink_t s;
    link_start(&s, 1, &extra);
    ck_assert_msg(strncmp(s.fleet, "0.0.0.0:", 8) == 0, "fleet address %s", s.fleet);
}
END_TEST

/* ---- 8. The pending-per-node and max-connections limits ------------------------------------ */

START_TEST(test_pending_per_node_limit)
{
    superlink_t l;
    args_t extra = {.n = 0};
    args_add(&extra, "--max-pending-per-node");
    args_add(&extra, "1");
    link_start(&l, 1, &extra);
    proc_t *n0 = node_start(&l, K_NODE0, NULL, 0, 1, NULL);
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
    args_add(&extra, "--max-connections");
    args_add(&extra, "1");
    link_start(&l, 1, &extra);
    proc_t *n0 = node_start(&l, K_NODE0, NULL, 0, 2, NULL);
    supernode_id(n0);
    proc_t *n1 = node_start(&l, K_NODE1, NULL, 1, 2, "--max-retries", "1", NULL);
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

/* --record-cipher: a SuperLink that offers XChaCha20-Poly1305 only seals with it for a node left
 * on auto; a node that insists on AES-256-GCM has no cipher in common with it and is refused
 * with that reason, while the other node keeps serving. */
START_TEST(test_record_cipher)
{
    superlink_t l;
    args_t extra = {.n = 0};
    args_add(&extra, "--record-cipher");
    args_add(&extra, "xchacha20-poly1305");
    link_start(&l, 1, &extra);
    proc_t *n0 = node_start(&l, K_NODE0, NULL, 0, 2, "--log-level", "debug", NULL);
    supernode_id(n0);
    assert_file_has(n0->err, "node0's log", "records sealed with XChaCha20-Poly1305");
    if (pt_secure_ciphers_available() & PT_SECURE_AES256GCM) {
        proc_t *n1 = node_start(&l, K_NODE1, NULL, 1, 2, "--record-cipher", "aes-256-gcm",
                                "--max-retries", "1", NULL);
        ck_assert_int_eq(daemon_exit(n1, FAST_TIMEOUT + 5), 1);
        char *err = text_of(n1->err);
        ck_assert_msg(strstr(err, "no record cipher in common") != NULL &&
                          strstr(err, " as node ") == NULL,
                      "node1's log does not show the cipher refusal:\n%s", err);
        free(err);
    }
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
    args_add(&extra, "--max-message-size");
    args_add(&extra, "4K");
    link_start(&l, 1, &extra);
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
    args_add(&strings, "--max-string-length");
    args_add(&strings, "64");
    link_start(&s, 1, &strings);
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
    tcase_add_unchecked_fixture(tc, procs_suite_setup, procs_suite_teardown);
    tcase_add_checked_fixture(tc, setup, procs_teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_secure_run);
    tcase_add_test(tc, test_wrong_superlink_key);
    tcase_add_test(tc, test_node_not_allowed);
    tcase_add_test(tc, test_operator_refused);
    tcase_add_test(tc, test_plain_meets_secure);
    tcase_add_test(tc, test_reconnect_keeps_id);
    tcase_add_test(tc, test_record_cipher);
    suite_add_tcase(s, tc);

    tc = tcase_create("hardening");
    tcase_add_unchecked_fixture(tc, procs_suite_setup, procs_suite_teardown);
    tcase_add_checked_fixture(tc, setup, procs_teardown);
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
    procs_main_init("security");
    SRunner *sr = srunner_create(security_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
