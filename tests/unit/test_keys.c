/* test_keys.c - key pairs, key files (petal.key / petal.pub), key lists and fingerprints. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "runtime/keys.h"

static char dir[64];

static void
setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/petal-keys-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void
teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot remove %s\n", dir);
    }
}

static void
path_in(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
}

static void
write_text(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");

    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    ck_assert_int_eq(chmod(path, mode), 0);
}

static mode_t
mode_of(const char *path)
{
    struct stat st;

    ck_assert_int_eq(stat(path, &st), 0);
    return st.st_mode & 07777;
}

START_TEST(test_save_load_round_trip)
{
    pt_keypair_t *kp, *back;
    char out[128], sk[128], pk[128], err[512];
    uint8_t pub[PT_KEY_PUBLIC_BYTES], sig[PT_KEY_SIG_BYTES];

    ck_assert_int_eq(pt_keypair_generate(&kp), 0);
    path_in(out, sizeof(out), "node");
    ck_assert_int_eq(pt_keypair_save(kp, out, "node-1@test", 0, err, sizeof(err)), 0);
    path_in(sk, sizeof(sk), "node/petal.key");
    path_in(pk, sizeof(pk), "node/petal.pub");
    ck_assert_uint_eq(mode_of(sk), 0600);
    ck_assert_uint_eq(mode_of(pk), 0644);
    ck_assert_uint_eq(mode_of(out), 0700);

    /* The file, or its directory. */
    ck_assert_int_eq(pt_keypair_load(sk, &back, err, sizeof(err)), 0);
    ck_assert_mem_eq(back->pk, kp->pk, PT_KEY_PUBLIC_BYTES);
    pt_keypair_free(back);
    ck_assert_int_eq(pt_keypair_load(out, &back, err, sizeof(err)), 0);
    ck_assert_mem_eq(back->pk, kp->pk, PT_KEY_PUBLIC_BYTES);

    /* The loaded secret key signs what the original public key verifies. */
    ck_assert_int_eq(pt_keypair_sign(back, (const uint8_t *)"bundle", 6, sig), 0);
    ck_assert_int_eq(pt_key_verify(kp->pk, (const uint8_t *)"bundle", 6, sig), 0);
    ck_assert_int_eq(pt_key_verify(kp->pk, (const uint8_t *)"bundlE", 6, sig), PETAL_EPROTO);
    pt_keypair_free(back);

    ck_assert_int_eq(pt_pubkey_load(pk, pub, err, sizeof(err)), 0);
    ck_assert_mem_eq(pub, kp->pk, sizeof(pub));
    ck_assert_int_eq(pt_pubkey_load(out, pub, err, sizeof(err)), 0);
    ck_assert_mem_eq(pub, kp->pk, sizeof(pub));

    /* Existing keys are not replaced unless asked. */
    ck_assert_int_eq(pt_keypair_save(kp, out, NULL, 0, err, sizeof(err)), PETAL_EEXIST);
    ck_assert_ptr_nonnull(strstr(err, "exists already"));
    ck_assert_int_eq(pt_keypair_save(kp, out, NULL, 1, err, sizeof(err)), 0);
    pt_keypair_free(kp);
}
END_TEST

START_TEST(test_pub_file_format)
{
    pt_keypair_t *kp;
    char out[128], pk[128], err[512], hex[PT_KEY_HEX_SIZE], want[256], line[256];
    FILE *f;
    int found = 0;

    ck_assert_int_eq(pt_keypair_generate(&kp), 0);
    ck_assert_int_eq(pt_keypair_save(kp, dir, "alice", 0, err, sizeof(err)), 0);
    (void)out;
    path_in(pk, sizeof(pk), "petal.pub");
    pt_key_to_hex(kp->pk, hex);
    snprintf(want, sizeof(want), "%s petal-ed25519 alice\n", hex);
    f = fopen(pk, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#') {
            continue;
        }
        ck_assert_str_eq(line, want);
        found++;
    }
    fclose(f);
    ck_assert_int_eq(found, 1);
    pt_keypair_free(kp);
}
END_TEST

START_TEST(test_secret_file_permissions)
{
    pt_keypair_t *kp, *back = NULL;
    char sk[128], err[512], want[512];

    ck_assert_int_eq(pt_keypair_generate(&kp), 0);
    ck_assert_int_eq(pt_keypair_save(kp, dir, NULL, 0, err, sizeof(err)), 0);
    path_in(sk, sizeof(sk), "petal.key");
    ck_assert_int_eq(chmod(sk, 0644), 0);
    ck_assert_int_eq(pt_keypair_load(sk, &back, err, sizeof(err)), PETAL_ECONFIG);
    ck_assert_ptr_null(back);
    snprintf(want, sizeof(want),
             "secret key %s is accessible by group or others (mode 0644): run chmod 600 %s", sk,
             sk);
    ck_assert_str_eq(err, want);
    ck_assert_int_eq(chmod(sk, 0640), 0);
    ck_assert_int_eq(pt_keypair_load(sk, &back, err, sizeof(err)), PETAL_ECONFIG);
    ck_assert_int_eq(chmod(sk, 0400), 0);
    ck_assert_int_eq(pt_keypair_load(sk, &back, err, sizeof(err)), 0);
    pt_keypair_free(back);
    pt_keypair_free(kp);
}
END_TEST

START_TEST(test_bad_secret_files)
{
    pt_keypair_t *back = NULL;
    char sk[128], err[512];

    /* Missing: says how to make one. */
    path_in(sk, sizeof(sk), "missing.key");
    ck_assert_int_eq(pt_keypair_load(sk, &back, err, sizeof(err)), PETAL_ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "petal keygen --out DIR"));

    /* Not a key file: names the line. */
    path_in(sk, sizeof(sk), "bad.key");
    write_text(sk, "# a comment\nhello world\n", 0600);
    ck_assert_int_eq(pt_keypair_load(sk, &back, err, sizeof(err)), PETAL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err, "bad.key:2: expected \"seed <64 hex digits>\""));

    /* A seed that is not 64 hex digits. */
    write_text(sk, "seed 1234\n", 0600);
    ck_assert_int_eq(pt_keypair_load(sk, &back, err, sizeof(err)), PETAL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err, ":1:"));

    /* No seed at all. */
    write_text(sk, "# nothing\n\n", 0600);
    ck_assert_int_eq(pt_keypair_load(sk, &back, err, sizeof(err)), PETAL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err, "no \"seed\" line"));

    /* A public line that does not belong to the seed. */
    write_text(sk,
               "seed 0101010101010101010101010101010101010101010101010101010101010101\n"
               "public 0202020202020202020202020202020202020202020202020202020202020202\n",
               0600);
    ck_assert_int_eq(pt_keypair_load(sk, &back, err, sizeof(err)), PETAL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err, "does not belong to the seed"));

    /* Without the public line the seed alone is enough. */
    write_text(sk, "seed 0101010101010101010101010101010101010101010101010101010101010101\n", 0600);
    ck_assert_int_eq(pt_keypair_load(sk, &back, err, sizeof(err)), 0);
    pt_keypair_free(back);
    ck_assert_ptr_null(NULL);
}
END_TEST

START_TEST(test_key_lists)
{
    pt_keypair_t *a, *b, *c;
    pt_keylist_t *l;
    char path[128], hex[PT_KEY_HEX_SIZE], b64[64], text[1024], err[512], why[256];
    char fpr[PT_KEY_FPR_SIZE];

    ck_assert_int_eq(pt_keypair_generate(&a), 0);
    ck_assert_int_eq(pt_keypair_generate(&b), 0);
    ck_assert_int_eq(pt_keypair_generate(&c), 0);
    pt_key_to_hex(a->pk, hex);
    sodium_bin2base64(b64, sizeof(b64), b->pk, PT_KEY_PUBLIC_BYTES, sodium_base64_VARIANT_ORIGINAL);
    snprintf(text, sizeof(text),
             "# nodes allowed to join\n\n  %s petal-ed25519 node-a   # hospital A\n%s node-b\n"
             "%s\n",
             hex, b64, hex);
    path_in(path, sizeof(path), "nodes.allow");
    write_text(path, text, 0644);
    ck_assert_int_eq(pt_keylist_load(path, &l, err, sizeof(err)), 0);
    ck_assert_uint_eq(l->n, 2); /* the duplicate is kept once */
    ck_assert(pt_keylist_contains(l, a->pk));
    ck_assert(pt_keylist_contains(l, b->pk));
    ck_assert(!pt_keylist_contains(l, c->pk));
    ck_assert_int_eq(pt_keylist_authorize(l, a->pk, why, sizeof(why)), 0);
    ck_assert_int_ne(pt_keylist_authorize(l, c->pk, why, sizeof(why)), 0);
    pt_key_fingerprint(c->pk, fpr);
    snprintf(text, sizeof(text), "key %s is not in %s", fpr, path);
    ck_assert_str_eq(why, text);
    pt_keylist_free(l);

    /* An empty list is valid (nobody is allowed). */
    write_text(path, "# empty\n", 0644);
    ck_assert_int_eq(pt_keylist_load(path, &l, err, sizeof(err)), 0);
    ck_assert_uint_eq(l->n, 0);
    pt_keylist_free(l);

    /* A bad line is named; a public key file wants exactly one key. */
    snprintf(text, sizeof(text), "%s\nnot-a-key\n", hex);
    write_text(path, text, 0644);
    ck_assert_int_eq(pt_keylist_load(path, &l, err, sizeof(err)), PETAL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err, "nodes.allow:2: not a public key"));
    snprintf(text, sizeof(text), "%s\n%s\n", hex, b64);
    write_text(path, text, 0644);
    {
        uint8_t pk[PT_KEY_PUBLIC_BYTES];

        ck_assert_int_eq(pt_pubkey_load(path, pk, err, sizeof(err)), PETAL_ECONFIG);
        ck_assert_ptr_nonnull(strstr(err, "expected exactly one public key, found 2"));
    }
    path_in(path, sizeof(path), "nope.allow");
    ck_assert_int_eq(pt_keylist_load(path, &l, err, sizeof(err)), PETAL_ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "nope.allow"));
    pt_keypair_free(a);
    pt_keypair_free(b);
    pt_keypair_free(c);
}
END_TEST

START_TEST(test_parse_and_fingerprint)
{
    uint8_t pk[PT_KEY_PUBLIC_BYTES], back[PT_KEY_PUBLIC_BYTES];
    char hex[PT_KEY_HEX_SIZE], b64[64], fpr[PT_KEY_FPR_SIZE];

    for (int i = 0; i < PT_KEY_PUBLIC_BYTES; i++) {
        pk[i] = (uint8_t)(0x10 + i);
    }
    pt_key_to_hex(pk, hex);
    ck_assert_str_eq(hex, "101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f");
    pt_key_fingerprint(pk, fpr);
    ck_assert_str_eq(fpr, "ed25519:1011121314151617");
    ck_assert_int_eq(pt_key_parse(hex, back), 0);
    ck_assert_mem_eq(back, pk, sizeof(pk));
    ck_assert_int_eq(
        pt_key_parse("  101112131415161718191A1B1C1D1E1F202122232425262728292a2b2c2d2e2f\n", back),
        0);
    ck_assert_mem_eq(back, pk, sizeof(pk));
    sodium_bin2base64(b64, sizeof(b64), pk, sizeof(pk), sodium_base64_VARIANT_ORIGINAL);
    ck_assert_int_eq(pt_key_parse(b64, back), 0);
    ck_assert_mem_eq(back, pk, sizeof(pk));
    ck_assert_int_eq(pt_key_parse("", back), PETAL_EINVAL);
    ck_assert_int_eq(pt_key_parse("1011", back), PETAL_EINVAL);
    ck_assert_int_eq(
        pt_key_parse("x01112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f", back),
        PETAL_EINVAL);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("keys");
    TCase *tc = tcase_create("keys");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_save_load_round_trip);
    tcase_add_test(tc, test_pub_file_format);
    tcase_add_test(tc, test_secret_file_permissions);
    tcase_add_test(tc, test_bad_secret_files);
    tcase_add_test(tc, test_key_lists);
    tcase_add_test(tc, test_parse_and_fingerprint);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
