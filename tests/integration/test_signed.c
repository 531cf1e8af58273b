/* test_signed.c - signed app bundles end to end: petal build --sign, SuperNodes that trust. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <petal/petal.h>

#include "runtime/buf.h"
#include "runtime/bundle.h"
#include "runtime/keys.h"

#include "procs.h"

/*
 * The real binaries (see procs.h): a SuperLink and SuperNodes started with
 * --trusted-publishers, and bundle files made by `petal build [--sign]` and submitted with
 * `petal run FILE.petal`. A bundle signed by a trusted publisher runs; an unsigned one, one
 * signed by another key and one changed after signing fail their run with INVALID_BUNDLE and
 * the reason, and nothing of them reaches the nodes' cache directories. Without the flag a
 * node runs unsigned bundles but still refuses a signature that does not verify. About 1 s.
 */

#define ONE_ROUND "num-server-rounds=1"
#define ONE_NODE "num-server-rounds=1 min-train-nodes=1 min-evaluate-nodes=1 min-available-nodes=1"

/* ---- Keys and bundle files ---------------------------------------------------------------- */

/* A key pair saved as <workdir>/<name>/petal.key and petal.pub; the directory in dir. */
static void
make_key(const char *name, char *dir, size_t cap)
{
    pt_keypair_t *kp = NULL;
    char err[512];
    work_path(dir, cap, name);
    ck_assert_int_eq(pt_keypair_generate(&kp), 0);
    ck_assert_msg(pt_keypair_save(kp, dir, name, 0, err, sizeof(err)) == 0, "%s", err);
    pt_keypair_free(kp);
}

static void
write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static void
copy_file(const char *from, const char *to)
{
    size_t len;
    char *data = read_all(from, &len);
    ck_assert_msg(data != NULL, "cannot read %s", from);
    write_file(to, data, len);
    chmod(to, 0755);
    free(data);
}

/* The trusted publishers file: a comment, then the publisher's petal.pub line(s). */
static void
write_trusted(const char *path, const char *key_dir)
{
    char pub[PATH_CAP + 16];
    snprintf(pub, sizeof(pub), "%s/petal.pub", key_dir);
    char *text = text_of(pub);
    ck_assert_msg(text[0] != '\0', "no %s", pub);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "# publishers whose apps this node runs\n%s", text);
    ck_assert_int_eq(fclose(f), 0);
    free(text);
}

/* `petal build APP [--sign KEY_DIR] -o <workdir>/<name>`; the file's path in out. */
static void
build(const char *app, const char *key_dir, const char *name, char *out, size_t cap)
{
    tool_result_t r;
    work_path(out, cap, name);
    if (key_dir != NULL) {
        run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "build", app, "--sign", key_dir, "-o", out, NULL);
    } else {
        run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "build", app, "-o", out, NULL);
    }
    assert_ok(&r, "petal build");
    ck_assert_msg(strstr(r.out, key_dir != NULL ? "signed by ed25519:" : "unsigned") != NULL,
                  "petal build says:\n%s", r.out);
    tool_free(&r);
}

static void
file_hash(const char *path, char hash[PT_BUNDLE_HASH_HEX])
{
    size_t len;
    char *data = read_all(path, &len);
    ck_assert_ptr_nonnull(data);
    pt_bundle_hash(data, len, hash);
    free(data);
}

/* A copy of testkit with a changed petal.toml, packed, under the signature of `signed_path`:
 * what an attacker gets by editing a signed app and keeping its signature. */
static void
make_tampered(const char *signed_path, const char *name, char *out, size_t cap)
{
    char app[PATH_CAP], toml[PATH_CAP + 16], so[PATH_CAP + 16], unsigned_path[PATH_CAP], err[512];
    work_path(app, sizeof(app), "tampered-app");
    mkdir(app, 0755);
    snprintf(toml, sizeof(toml), "%s/petal.toml", app);
    snprintf(so, sizeof(so), "%s/client.so", app);
    copy_file(TESTKIT_DIR "/petal.toml", toml);
    copy_file(TESTKIT_DIR "/client.so", so);
    FILE *f = fopen(toml, "a");
    ck_assert_ptr_nonnull(f);
    fputs("# changed after signing\n", f);
    fclose(f);
    build(app, NULL, "tampered-unsigned.petal", unsigned_path, sizeof(unsigned_path));

    size_t ulen, slen;
    char *u = read_all(unsigned_path, &ulen);
    char *s = read_all(signed_path, &slen);
    ck_assert(u != NULL && s != NULL && ulen > 1 && (uint8_t)u[ulen - 1] == 0xc0);
    pt_bundle_t *b = NULL;
    ck_assert_msg(pt_bundle_parse(s, slen, &b, err, sizeof(err)) == 0, "%s", err);
    ck_assert_ptr_nonnull(b->signature);
    char *t = malloc(ulen - 1 + b->signature_len);
    ck_assert_ptr_nonnull(t);
    memcpy(t, u, ulen - 1);
    memcpy(t + ulen - 1, b->signature, b->signature_len);
    work_path(out, cap, name);
    write_file(out, t, ulen - 1 + b->signature_len);
    pt_bundle_free(b);
    free(t);
    free(s);
    free(u);
}

/* ---- Runs ----------------------------------------------------------------------------------- */

/* `petal run FILE --stream`; its exit status. */
static int
run_file(const superlink_t *l, const char *file, const char *run_config, tool_result_t *r)
{
    run_tool(r, RUN_TIMEOUT, PETAL_BIN, "run", file, "--superlink", l->control, "--insecure",
             "--stream", "--run-config", run_config, NULL);
    return r->code;
}

/* A run that must fail with INVALID_BUNDLE and `why` in its reason (petal ls). */
static void
assert_run_refused(const superlink_t *l, int64_t run_id, const char *file, const char *run_config,
                   const char *why)
{
    tool_result_t r;
    char reason[1024];
    int code = run_file(l, file, run_config, &r);
    ck_assert_msg(code == 1,
                  "petal run %s exited %d, expected 1 (run failed)\nstdout:\n%s\n"
                  "stderr:\n%s",
                  file, code, r.out, r.err);
    ck_assert_msg(strstr(r.err, "INVALID_BUNDLE") != NULL && strstr(r.err, why) != NULL,
                  "petal run's error lacks INVALID_BUNDLE or \"%s\":\n%s", why, r.err);
    tool_free(&r);
    wait_run_status(l, run_id, "finished:failed", reason, sizeof(reason), CLI_TIMEOUT);
    ck_assert_msg(strstr(reason, "INVALID_BUNDLE") != NULL && strstr(reason, why) != NULL,
                  "run %lld's reason lacks INVALID_BUNDLE or \"%s\": %s", (long long)run_id, why,
                  reason);
}

/* The names in a directory ("." and ".." excluded), space-separated; "" when absent. */
static void
list_dir(const char *dir, char *buf, size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;
    buf[0] = '\0';
    if (d == NULL) {
        return;
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            int w = snprintf(buf + n, cap - n, "%s%s", n ? " " : "", e->d_name);
            if (w < 0 || (size_t)w >= cap - n) {
                break;
            }
            n += (size_t)w;
        }
    }
    closedir(d);
}

/* ---- Tests ---------------------------------------------------------------------------------- */

START_TEST(test_trusted_publishers)
{
    char publisher[PATH_CAP], mallory[PATH_CAP], trusted[PATH_CAP];
    char good[PATH_CAP], unsigned_file[PATH_CAP], foreign[PATH_CAP], tampered[PATH_CAP];
    make_key("publisher", publisher, sizeof(publisher));
    make_key("mallory", mallory, sizeof(mallory));
    work_path(trusted, sizeof(trusted), "trusted-publishers");
    write_trusted(trusted, publisher);
    build(TESTKIT_DIR, publisher, "good.petal", good, sizeof(good));
    build(TESTKIT_DIR, NULL, "unsigned.petal", unsigned_file, sizeof(unsigned_file));
    build(TESTKIT_DIR, mallory, "foreign.petal", foreign, sizeof(foreign));
    make_tampered(good, "tampered.petal", tampered, sizeof(tampered));

    superlink_t l;
    superlink_start(&l, NULL);
    proc_t *nodes[2];
    for (int i = 0; i < 2; i++) {
        nodes[i] = supernode_start(&l, i, 2, NULL, "--trusted-publishers", trusted, NULL);
        supernode_id(nodes[i]);
    }
    free(wait_online(&l, 2, START_TIMEOUT));

    /* Signed by the trusted publisher: runs. */
    tool_result_t r;
    char reason[1024];
    int code = run_file(&l, good, ONE_ROUND, &r);
    ck_assert_msg(code == 0, "petal run %s exited %d\nstdout:\n%s\nstderr:\n%s", good, code, r.out,
                  r.err);
    tool_free(&r);
    wait_run_status(&l, 1, "finished:completed", reason, sizeof(reason), CLI_TIMEOUT);

    /* Refused, each with its reason, before anything is unpacked. */
    assert_run_refused(&l, 2, unsigned_file, ONE_ROUND, "bundle is not signed");
    char fpr[PT_KEY_FPR_SIZE], want[128];
    uint8_t pk[PT_KEY_PUBLIC_BYTES];
    char err[512];
    ck_assert_msg(pt_pubkey_load(mallory, pk, err, sizeof(err)) == 0, "%s", err);
    pt_key_fingerprint(pk, fpr);
    snprintf(want, sizeof(want), "bundle signed by %s, which is not a trusted publisher", fpr);
    assert_run_refused(&l, 3, foreign, ONE_ROUND, want);
    assert_run_refused(&l, 4, tampered, ONE_ROUND,
                       "signature does not match the manifest (the bundle was changed after "
                       "signing)");

    /* The nodes hold the trusted bundle only: no trace of the refused ones. */
    char hash[PT_BUNDLE_HASH_HEX], names[2048];
    file_hash(good, hash);
    for (int i = 0; i < 2; i++) {
        char cache[PATH_CAP], name[32];
        snprintf(name, sizeof(name), "node%d-cache", i);
        work_path(cache, sizeof(cache), name);
        list_dir(cache, names, sizeof(names));
        ck_assert_msg(strcmp(names, hash) == 0, "node%d's cache holds \"%s\", expected only %s", i,
                      names, hash);
        ck_assert_msg(!proc_exited(nodes[i]), "node%d died", i);
    }
    /* The node asked first (the lowest id) says why in its log. */
    char *log0 = text_of(nodes[0]->err);
    ck_assert_msg(strstr(log0, "the app bundle was refused: bundle is not signed") != NULL,
                  "node0's log:\n%s", log0);
    free(log0);
    /* The SuperLink's log shows the failures with their code. */
    char *log = text_of(l.p->err);
    ck_assert_msg(count_text(log, "INVALID_BUNDLE") >= 3, "the SuperLink's log:\n%s", log);
    free(log);

    /* Trusted and cached: a second run of the same bundle uses the cache. */
    code = run_file(&l, good, ONE_ROUND, &r);
    ck_assert_msg(code == 0, "petal run %s exited %d\nstderr:\n%s", good, code, r.err);
    tool_free(&r);
}
END_TEST

START_TEST(test_signatures_optional)
{
    char mallory[PATH_CAP], unsigned_file[PATH_CAP], foreign[PATH_CAP], tampered[PATH_CAP];
    make_key("mallory", mallory, sizeof(mallory));
    build(TESTKIT_DIR, NULL, "unsigned.petal", unsigned_file, sizeof(unsigned_file));
    build(TESTKIT_DIR, mallory, "foreign.petal", foreign, sizeof(foreign));
    make_tampered(foreign, "tampered.petal", tampered, sizeof(tampered));

    superlink_t l;
    superlink_start(&l, NULL);
    proc_t *node = supernode_start(&l, 0, 1, NULL, NULL);
    supernode_id(node);
    free(wait_online(&l, 1, START_TIMEOUT));

    tool_result_t r;
    char reason[1024];
    for (int i = 0; i < 2; i++) {
        const char *file = i == 0 ? unsigned_file : foreign;
        int code = run_file(&l, file, ONE_NODE, &r);
        ck_assert_msg(code == 0, "petal run %s exited %d\nstdout:\n%s\nstderr:\n%s", file, code,
                      r.out, r.err);
        tool_free(&r);
        wait_run_status(&l, i + 1, "finished:completed", reason, sizeof(reason), CLI_TIMEOUT);
    }
    /* A signature that is there must verify. */
    assert_run_refused(&l, 3, tampered, ONE_NODE, "signature does not match the manifest");
    char cache[PATH_CAP], names[2048], tampered_hash[PT_BUNDLE_HASH_HEX];
    work_path(cache, sizeof(cache), "node0-cache");
    list_dir(cache, names, sizeof(names));
    file_hash(tampered, tampered_hash);
    ck_assert_msg(strstr(names, tampered_hash) == NULL && strstr(names, ".") == NULL,
                  "node0's cache: %s", names);
}
END_TEST

START_TEST(test_build_and_file_errors)
{
    char key[PATH_CAP], out[PATH_CAP], garbage[PATH_CAP], keyfile[PATH_CAP + 16];
    tool_result_t r;
    make_key("publisher", key, sizeof(key));
    work_path(out, sizeof(out), "x.petal");

    run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "build", TESTKIT_DIR, "--sign", "/nonexistent/petal.key",
             "-o", out, NULL);
    assert_refused(&r, 2, "--sign", "/nonexistent", NULL);
    tool_free(&r);
    snprintf(keyfile, sizeof(keyfile), "%s/petal.key", key);
    ck_assert_int_eq(chmod(keyfile, 0644), 0);
    run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "build", TESTKIT_DIR, "--sign", key, "-o", out, NULL);
    assert_refused(&r, 2, "--sign", "chmod 600", NULL);
    tool_free(&r);
    run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "build", "/nonexistent-app", "-o", out, NULL);
    assert_refused(&r, 2, "/nonexistent-app", NULL);
    tool_free(&r);
    run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "build", NULL);
    assert_refused(&r, 2, "usage: petal build", NULL);
    tool_free(&r);
    ck_assert_msg(access(out, F_OK) != 0, "a failed build wrote %s", out);

    /* petal run refuses a file that is not a bundle before it connects anywhere. */
    work_path(garbage, sizeof(garbage), "garbage.petal");
    write_file(garbage, "not a bundle", 12);
    run_tool(&r, CLI_TIMEOUT, PETAL_BIN, "run", garbage, "--superlink", "127.0.0.1:1", "--insecure",
             NULL);
    assert_refused(&r, 2, garbage, "not a Petal bundle", NULL);
    tool_free(&r);
}
END_TEST

static Suite *
signed_suite(void)
{
    Suite *s = suite_create("signed bundles");
    TCase *tc = tcase_create("runs");
    tcase_add_unchecked_fixture(tc, procs_suite_setup, procs_suite_teardown);
    tcase_add_checked_fixture(tc, procs_setup, procs_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_trusted_publishers);
    tcase_add_test(tc, test_signatures_optional);
    tcase_add_test(tc, test_build_and_file_errors);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    procs_main_init("signed");
    SRunner *sr = srunner_create(signed_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
