/* test_bundle_sign.c - publisher signatures on app bundles: sign, verify, trust, the node cache. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <msgpack.h>
#include <sodium.h>

#include <petal/petal.h>

#include "runtime/bundle.h"
#include "runtime/keys.h"

/* ---- Helpers ------------------------------------------------------------------------------ */

static char *
tmpdir(void)
{
    char *t = strdup("/tmp/petal-test-sign-XXXXXX");

    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(mkdtemp(t));
    return t;
}

static char *
path_of(const char *dir, const char *rel)
{
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *p = malloc(n);

    ck_assert_ptr_nonnull(p);
    snprintf(p, n, "%s/%s", dir, rel);
    return p;
}

static void
put_text(const char *dir, const char *rel, const char *text)
{
    char *p = path_of(dir, rel);
    FILE *f = fopen(p, "wb");

    ck_assert_msg(f != NULL, "cannot create %s", p);
    ck_assert_uint_eq(fwrite(text, 1, strlen(text), f), strlen(text));
    fclose(f);
    free(p);
}

static int
rm_cb(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

static void
rm_rf(const char *path)
{
    nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int
exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/* Entries in a directory ("." and ".." excluded); 0 when it does not exist. */
static int
count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (d == NULL) {
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            n++;
        }
    }
    closedir(d);
    return n;
}

/* A small app packed into a bundle; `flavour` changes a file so bundles differ. */
static pt_buf_t *
make_bundle(const char *flavour)
{
    char *app = tmpdir();
    char err[512];
    char text[128];
    pt_buf_t *b = NULL;

    put_text(app, "petal.toml",
             "[app]\nname = \"signed\"\nversion = \"1.0\"\nclient = \"client.so\"\n"
             "[app.config]\nlr = 0.5\n");
    snprintf(text, sizeof(text), "client plugin (%s)", flavour);
    put_text(app, "client.so", text);
    put_text(app, "data.txt", "some data\n");
    ck_assert_msg(pt_bundle_pack(app, &b, NULL, err, sizeof(err)) == 0, "pack: %s", err);
    rm_rf(app);
    free(app);
    return b;
}

static pt_keypair_t *
new_key(void)
{
    pt_keypair_t *kp = NULL;

    ck_assert_int_eq(pt_keypair_generate(&kp), 0);
    return kp;
}

static pt_keylist_t *
list_of(const pt_keypair_t *a, const pt_keypair_t *b)
{
    pt_keylist_t *l = NULL;

    ck_assert_int_eq(pt_keylist_alloc(&l), 0);
    if (a != NULL) {
        ck_assert_int_eq(pt_keylist_add(l, a->pk), 0);
    }
    if (b != NULL) {
        ck_assert_int_eq(pt_keylist_add(l, b->pk), 0);
    }
    return l;
}

static pt_buf_t *
sign(const pt_buf_t *b, const pt_keypair_t *kp)
{
    char err[512];
    pt_buf_t *out = NULL;

    ck_assert_msg(pt_bundle_sign(pt_buf_data(b), pt_buf_len(b), kp, &out, err, sizeof(err)) == 0,
                  "sign: %s", err);
    return out;
}

static pt_bundle_t *
parse(const void *data, size_t len)
{
    char err[512];
    pt_bundle_t *p = NULL;

    ck_assert_msg(pt_bundle_parse(data, len, &p, err, sizeof(err)) == 0, "parse: %s", err);
    return p;
}

/* pt_bundle_verify_signature on bytes: its result, and its message in err. */
static int
verify(const void *data, size_t len, const pt_keylist_t *trusted, char *err, size_t cap)
{
    pt_bundle_t *p = parse(data, len);
    int rc = pt_bundle_verify_signature(p, trusted, NULL, err, cap);

    pt_bundle_free(p);
    return rc;
}

#define ASSERT_REFUSED(rc, err, needle)                                                            \
    do {                                                                                           \
        ck_assert_int_eq((rc), PETAL_E_INVALID_BUNDLE);                                            \
        ck_assert_msg(strstr((err), (needle)) != NULL, "expected \"%s\" in \"%s\"", (needle),      \
                      (err));                                                                      \
    } while (0)

/* The unsigned bytes of `b` (ending with nil) followed by the signature element of `s`. */
static pt_buf_t *
graft(const pt_buf_t *b, const pt_buf_t *s)
{
    pt_bundle_t *ps = parse(pt_buf_data(s), pt_buf_len(s));
    size_t head = pt_buf_len(b) - 1;
    pt_buf_t *out = pt_buf_alloc(head + ps->signature_len, 0);

    ck_assert_ptr_nonnull(ps->signature);
    ck_assert_uint_eq(((const uint8_t *)pt_buf_data(b))[head], 0xc0);
    memcpy(pt_buf_data(out), pt_buf_data(b), head);
    memcpy((uint8_t *)pt_buf_data(out) + head, ps->signature, ps->signature_len);
    pt_bundle_free(ps);
    return out;
}

static void
pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* The unsigned bundle with a hand-made signature element: `fields` describes it, one letter
 * per element after the scheme: 'k' bin 32, 'K' bin 31, 's' bin 64, 'S' str, 'n' nil, 'u' 7. */
static pt_buf_t *
with_block(const pt_buf_t *b, const char *scheme, const char *fields)
{
    static const uint8_t junk[64] = {1, 2, 3};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    pt_buf_t *out;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_sbuffer_write(&sb, pt_buf_data(b), pt_buf_len(b) - 1);
    msgpack_pack_array(&pk, 1 + strlen(fields));
    pk_str(&pk, scheme);
    for (const char *f = fields; *f != '\0'; f++) {
        switch (*f) {
        case 'k':
        case 'K':
            msgpack_pack_bin(&pk, *f == 'k' ? 32 : 31);
            msgpack_pack_bin_body(&pk, junk, *f == 'k' ? 32 : 31);
            break;
        case 's':
            msgpack_pack_bin(&pk, 64);
            msgpack_pack_bin_body(&pk, junk, 64);
            break;
        case 'S':
            pk_str(&pk, "not a key");
            break;
        case 'n':
            msgpack_pack_nil(&pk);
            break;
        default:
            msgpack_pack_uint8(&pk, 7);
            break;
        }
    }
    out = pt_buf_alloc(sb.size, 0);
    ck_assert_ptr_nonnull(out);
    memcpy(pt_buf_data(out), sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return out;
}

/* ---- Sign and verify ---------------------------------------------------------------------- */

START_TEST(test_sign_verify_round_trip)
{
    pt_keypair_t *a = new_key();
    pt_keylist_t *trusted = list_of(a, NULL);
    pt_buf_t *b = make_bundle("one");
    pt_buf_t *s = sign(b, a);
    uint8_t signer[PT_KEY_PUBLIC_BYTES];
    char err[512];
    char h1[PT_BUNDLE_HASH_HEX], h2[PT_BUNDLE_HASH_HEX];

    /* Signing keeps the manifest and contents byte for byte and replaces the final nil. */
    ck_assert_uint_gt(pt_buf_len(s), pt_buf_len(b));
    ck_assert_int_eq(memcmp(pt_buf_data(s), pt_buf_data(b), pt_buf_len(b) - 1), 0);
    pt_bundle_hash(pt_buf_data(b), pt_buf_len(b), h1);
    pt_bundle_hash(pt_buf_data(s), pt_buf_len(s), h2);
    ck_assert_str_ne(h1, h2);

    pt_bundle_t *pu = parse(pt_buf_data(b), pt_buf_len(b));
    pt_bundle_t *ps = parse(pt_buf_data(s), pt_buf_len(s));
    ck_assert_int_eq(memcmp(pu->manifest_digest, ps->manifest_digest, 32), 0);
    ck_assert_str_eq(ps->signature_scheme, "ed25519");
    ck_assert_int_eq(pt_bundle_signer(pu, signer, err, sizeof(err)), 0);
    ck_assert_int_eq(pt_bundle_signer(ps, signer, err, sizeof(err)), 1);
    ck_assert_int_eq(memcmp(signer, a->pk, PT_KEY_PUBLIC_BYTES), 0);

    memset(signer, 0, sizeof(signer));
    ck_assert_int_eq(pt_bundle_verify_signature(ps, trusted, signer, err, sizeof(err)), 1);
    ck_assert_int_eq(memcmp(signer, a->pk, PT_KEY_PUBLIC_BYTES), 0);
    ck_assert_int_eq(pt_bundle_verify_signature(ps, NULL, NULL, err, sizeof(err)), 1);
    ck_assert_int_eq(pt_bundle_verify_signature(pu, NULL, NULL, err, sizeof(err)), 0);
    ck_assert_int_eq(pt_bundle_verify(pt_buf_data(s), pt_buf_len(s), h2, err, sizeof(err)), 0);
    pt_bundle_free(pu);
    pt_bundle_free(ps);

    /* Signing a signed bundle replaces the signature; the same key gives the same bytes. */
    pt_keypair_t *c = new_key();
    pt_buf_t *s2 = sign(s, c);
    pt_buf_t *s3 = sign(s2, a);
    ck_assert_uint_eq(pt_buf_len(s2), pt_buf_len(s));
    ck_assert_int_eq(verify(pt_buf_data(s2), pt_buf_len(s2), NULL, err, sizeof(err)), 1);
    ck_assert_uint_eq(pt_buf_len(s3), pt_buf_len(s));
    ck_assert_int_eq(memcmp(pt_buf_data(s3), pt_buf_data(s), pt_buf_len(s)), 0);

    pt_buf_release(s3);
    pt_buf_release(s2);
    pt_keypair_free(c);
    pt_buf_release(s);
    pt_buf_release(b);
    pt_keylist_free(trusted);
    pt_keypair_free(a);
}
END_TEST

START_TEST(test_changed_after_signing)
{
    pt_keypair_t *a = new_key();
    pt_keylist_t *trusted = list_of(a, NULL);
    pt_buf_t *b = make_bundle("one");
    pt_buf_t *other = make_bundle("two"); /* consistent hashes, another client.so */
    pt_buf_t *s = sign(b, a);
    pt_buf_t *g = graft(other, s);
    char err[512];
    int rc;

    /* A repacked app under the old signature: well formed, but the manifest digest differs. */
    rc = verify(pt_buf_data(g), pt_buf_len(g), trusted, err, sizeof(err));
    ASSERT_REFUSED(rc, err,
                   "signature does not match the manifest (the bundle was changed after "
                   "signing)");
    rc = verify(pt_buf_data(g), pt_buf_len(g), NULL, err, sizeof(err));
    ASSERT_REFUSED(rc, err, "signature does not match the manifest");

    /* One flipped bit anywhere in the signature. */
    uint8_t *p = pt_buf_data(s);
    p[pt_buf_len(s) - 1] ^= 0x01;
    rc = verify(pt_buf_data(s), pt_buf_len(s), trusted, err, sizeof(err));
    ASSERT_REFUSED(rc, err, "signature does not match the manifest");
    p[pt_buf_len(s) - 1] ^= 0x01;
    /* A changed byte in a file's content: the file's SHA-256 no longer matches the manifest. */
    p[pt_buf_len(b) - 10] ^= 0x20;
    pt_bundle_t *bad = NULL;
    rc = pt_bundle_parse(pt_buf_data(s), pt_buf_len(s), &bad, err, sizeof(err));
    ASSERT_REFUSED(rc, err, "SHA-256 mismatch");
    ck_assert_ptr_null(bad);

    pt_buf_release(g);
    pt_buf_release(s);
    pt_buf_release(other);
    pt_buf_release(b);
    pt_keylist_free(trusted);
    pt_keypair_free(a);
}
END_TEST

START_TEST(test_wrong_key)
{
    pt_keypair_t *a = new_key();
    pt_keypair_t *m = new_key();
    pt_keylist_t *trusted = list_of(a, NULL);
    pt_keylist_t *empty = list_of(NULL, NULL);
    pt_buf_t *b = make_bundle("one");
    pt_buf_t *s = sign(b, m);
    char err[512];
    char want[128];
    char fpr[PT_KEY_FPR_SIZE];
    int rc;

    pt_key_fingerprint(m->pk, fpr);
    snprintf(want, sizeof(want), "bundle signed by %s, which is not a trusted publisher", fpr);
    rc = verify(pt_buf_data(s), pt_buf_len(s), trusted, err, sizeof(err));
    ASSERT_REFUSED(rc, err, want);
    rc = verify(pt_buf_data(s), pt_buf_len(s), empty, err, sizeof(err));
    ASSERT_REFUSED(rc, err, want);
    /* Valid, so fine where signatures are optional; trusted once its key is listed. */
    ck_assert_int_eq(verify(pt_buf_data(s), pt_buf_len(s), NULL, err, sizeof(err)), 1);
    ck_assert_int_eq(pt_keylist_add(trusted, m->pk), 0);
    ck_assert_int_eq(verify(pt_buf_data(s), pt_buf_len(s), trusted, err, sizeof(err)), 1);

    /* A signature claiming another publisher's key does not verify. */
    pt_buf_t *forged = sign(b, m);
    uint8_t *p = pt_buf_data(forged);
    size_t key_at = pt_buf_len(forged) - PT_KEY_SIG_BYTES - 2 - PT_KEY_PUBLIC_BYTES;
    ck_assert_int_eq(memcmp(p + key_at, m->pk, PT_KEY_PUBLIC_BYTES), 0);
    memcpy(p + key_at, a->pk, PT_KEY_PUBLIC_BYTES);
    rc = verify(pt_buf_data(forged), pt_buf_len(forged), trusted, err, sizeof(err));
    ASSERT_REFUSED(rc, err, "signature does not match the manifest");

    pt_buf_release(forged);
    pt_buf_release(s);
    pt_buf_release(b);
    pt_keylist_free(empty);
    pt_keylist_free(trusted);
    pt_keypair_free(m);
    pt_keypair_free(a);
}
END_TEST

START_TEST(test_unsigned)
{
    pt_keypair_t *a = new_key();
    pt_keylist_t *trusted = list_of(a, NULL);
    pt_buf_t *b = make_bundle("one");
    char err[512];
    int rc;

    rc = verify(pt_buf_data(b), pt_buf_len(b), trusted, err, sizeof(err));
    ASSERT_REFUSED(rc, err, "bundle is not signed");
    ck_assert_int_eq(verify(pt_buf_data(b), pt_buf_len(b), NULL, err, sizeof(err)), 0);

    pt_buf_release(b);
    pt_keylist_free(trusted);
    pt_keypair_free(a);
}
END_TEST

START_TEST(test_malformed_signature_block)
{
    static const struct {
        const char *scheme;
        const char *fields;
        const char *needle;
    } cases[] = {
        {"ed25519", "Ks", "the public key is 31 bytes, not 32"},
        {"ed25519", "Ss", "the public key is a string, not binary data"},
        {"ed25519", "kS", "the signature is a string, not binary data"},
        {"ed25519", "kn", "the signature is nil, not binary data"},
        {"ed25519", "k", "it has 2 elements, not 3"},
        {"ed25519", "ksn", "it has 4 elements, not 3"},
        {"ed25519", "", "it has 1 elements, not 3"},
        {"ed25519", "ku", "the signature is an integer, not binary data"},
        {"rsa", "ks", "unknown signature scheme 'rsa'"},
        {"Ed25519", "ks", "unknown signature scheme"},
    };
    pt_keypair_t *a = new_key();
    pt_keylist_t *trusted = list_of(a, NULL);
    pt_buf_t *b = make_bundle("one");
    uint8_t pk[PT_KEY_PUBLIC_BYTES];
    char err[512];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pt_buf_t *m = with_block(b, cases[i].scheme, cases[i].fields);
        pt_bundle_t *p = parse(pt_buf_data(m), pt_buf_len(m)); /* version 1 readers skip it */
        int rc;

        rc = pt_bundle_signer(p, pk, err, sizeof(err));
        ASSERT_REFUSED(rc, err, cases[i].needle);
        for (int t = 0; t < 2; t++) {
            rc = pt_bundle_verify_signature(p, t ? trusted : NULL, pk, err, sizeof(err));
            ASSERT_REFUSED(rc, err, cases[i].needle);
        }
        if (strcmp(cases[i].scheme, "ed25519") == 0) {
            ck_assert_msg(strstr(err, "bundle: the signature block is malformed: ") == err, "%s",
                          err);
        }
        pt_bundle_free(p);
        pt_buf_release(m);
    }
    /* A well-formed block of junk: it parses, and fails as a signature. */
    pt_buf_t *m = with_block(b, "ed25519", "ks");
    int rc = verify(pt_buf_data(m), pt_buf_len(m), NULL, err, sizeof(err));
    ASSERT_REFUSED(rc, err, "signature does not match the manifest");
    pt_buf_release(m);

    /* Signing refuses what is not a bundle, and says why. */
    pt_buf_t *out = NULL;
    rc = pt_bundle_sign("\x92\xa1x\x01", 4, a, &out, err, sizeof(err));
    ASSERT_REFUSED(rc, err, "not a Petal bundle");
    ck_assert_ptr_null(out);
    rc = pt_bundle_sign(pt_buf_data(b), pt_buf_len(b) - 1, a, &out, err, sizeof(err));
    ASSERT_REFUSED(rc, err, "truncated");
    ck_assert_ptr_null(out);

    pt_buf_release(b);
    pt_keylist_free(trusted);
    pt_keypair_free(a);
}
END_TEST

/* ---- The node's cache --------------------------------------------------------------------- */

typedef struct cache_case {
    char *root;
    char app_dir[4096];
    char err[512];
} cache_case_t;

static int
get(cache_case_t *c, const pt_buf_t *b, int with_data, const pt_keylist_t *trusted)
{
    char hash[PT_BUNDLE_HASH_HEX];

    pt_bundle_hash(pt_buf_data(b), pt_buf_len(b), hash);
    return pt_bundle_cache_get_trusted(c->root, hash, with_data ? pt_buf_data(b) : NULL,
                                       with_data ? pt_buf_len(b) : 0, trusted, c->app_dir,
                                       sizeof(c->app_dir), c->err, sizeof(c->err));
}

START_TEST(test_cache_refuses_before_writing)
{
    pt_keypair_t *a = new_key();
    pt_keypair_t *m = new_key();
    pt_keylist_t *trusted = list_of(a, NULL);
    pt_buf_t *b = make_bundle("one");
    pt_buf_t *other = make_bundle("two");
    pt_buf_t *good = sign(b, a);
    pt_buf_t *untrusted = sign(b, m);
    pt_buf_t *signed_other = sign(other, a);
    pt_buf_t *changed = graft(b, signed_other); /* b under other's signature */
    char *top = tmpdir();
    cache_case_t c;
    int rc;

    memset(&c, 0, sizeof(c));
    c.root = path_of(top, "cache"); /* created only when something is unpacked */

    rc = get(&c, b, 1, trusted);
    ASSERT_REFUSED(rc, c.err, "bundle is not signed");
    rc = get(&c, untrusted, 1, trusted);
    ASSERT_REFUSED(rc, c.err, "which is not a trusted publisher");
    rc = get(&c, changed, 1, trusted);
    ASSERT_REFUSED(rc, c.err, "signature does not match the manifest");
    /* A present, invalid signature is refused even where signatures are optional. */
    rc = get(&c, changed, 1, NULL);
    ASSERT_REFUSED(rc, c.err, "signature does not match the manifest");
    ck_assert_msg(!exists(c.root), "a refused bundle left %s behind", c.root);
    ck_assert_int_eq(count_entries(top), 0);

    /* The trusted one is unpacked, its signer recorded beside the marker. */
    ck_assert_msg(get(&c, good, 1, trusted) == 0, "%s", c.err);
    ck_assert_int_eq(count_entries(c.root), 1);
    char *signer_file = path_of(c.app_dir, PT_BUNDLE_SIGNER_FILE);
    char *client = path_of(c.app_dir, "client.so");
    char hex[PT_KEY_HEX_SIZE];
    char line[80] = "";
    FILE *f = fopen(signer_file, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
    fclose(f);
    pt_key_to_hex(a->pk, hex);
    ck_assert_int_eq(strncmp(line, hex, 64), 0);
    ck_assert_str_eq(line + 64, "\n");
    ck_assert(exists(client));

    /* Later runs use the cache without the bytes when the recorded signer is trusted. */
    ck_assert_msg(get(&c, good, 0, trusted) == 0, "%s", c.err);
    ck_assert_msg(get(&c, good, 0, NULL) == 0, "%s", c.err);
    pt_keylist_t *others = list_of(m, NULL);
    rc = get(&c, good, 0, others);
    ASSERT_REFUSED(rc, c.err, "which is not a trusted publisher");
    rc = get(&c, good, 1, others);
    ASSERT_REFUSED(rc, c.err, "which is not a trusted publisher");
    rc = get(&c, untrusted, 0, trusted);
    ck_assert_int_eq(rc, PETAL_ENOENT);

    /* An unsigned bundle cached where signatures were optional does not count as signed. */
    ck_assert_msg(get(&c, b, 1, NULL) == 0, "%s", c.err);
    free(signer_file);
    signer_file = path_of(c.app_dir, PT_BUNDLE_SIGNER_FILE);
    ck_assert(!exists(signer_file));
    rc = get(&c, b, 0, trusted);
    ASSERT_REFUSED(rc, c.err, "bundle is not signed");
    rc = get(&c, b, 1, trusted);
    ASSERT_REFUSED(rc, c.err, "bundle is not signed");
    ck_assert_int_eq(count_entries(c.root), 2);

    free(signer_file);
    free(client);
    pt_keylist_free(others);
    rm_rf(top);
    free(top);
    free(c.root);
    pt_buf_release(changed);
    pt_buf_release(signed_other);
    pt_buf_release(untrusted);
    pt_buf_release(good);
    pt_buf_release(other);
    pt_buf_release(b);
    pt_keylist_free(trusted);
    pt_keypair_free(m);
    pt_keypair_free(a);
}
END_TEST

/* ---- Seeds for tests/fuzz/corpus/bundle --------------------------------------------------- */

static const char *seeds_dir;

START_TEST(test_write_seeds)
{
    pt_keypair_t *a = new_key();
    char *app = tmpdir();
    char err[512];
    pt_buf_t *b = NULL;

    put_text(app, "petal.toml", "[app]\nname = \"seed\"\nversion = \"1\"\nclient = \"c.so\"\n");
    put_text(app, "c.so", "client plugin");
    ck_assert_msg(pt_bundle_pack(app, &b, NULL, err, sizeof(err)) == 0, "%s", err);
    pt_buf_t *s = sign(b, a);
    ck_assert_int_eq(verify(pt_buf_data(s), pt_buf_len(s), NULL, err, sizeof(err)), 1);
    char *p = path_of(seeds_dir, "signed-ed25519.bundle");
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(pt_buf_data(s), 1, pt_buf_len(s), f), pt_buf_len(s));
    fclose(f);
    printf("%s (%zu bytes)\n", p, pt_buf_len(s));
    free(p);
    pt_buf_release(s);
    pt_buf_release(b);
    rm_rf(app);
    free(app);
    pt_keypair_free(a);
}
END_TEST

static Suite *
sign_suite(void)
{
    Suite *s = suite_create("bundle signatures");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_sign_verify_round_trip);
    tcase_add_test(tc, test_changed_after_signing);
    tcase_add_test(tc, test_wrong_key);
    tcase_add_test(tc, test_unsigned);
    tcase_add_test(tc, test_malformed_signature_block);
    tcase_add_test(tc, test_cache_refuses_before_writing);
    suite_add_tcase(s, tc);
    return s;
}

/* `test_bundle_sign --write-seeds DIR` writes DIR/signed-ed25519.bundle (a fresh key each time). */
int
main(int argc, char **argv)
{
    SRunner *sr;
    int failed;

    if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0) {
        Suite *s = suite_create("seeds");
        TCase *tc = tcase_create("seeds");
        seeds_dir = argv[2];
        tcase_add_test(tc, test_write_seeds);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
    } else {
        sr = srunner_create(sign_suite());
    }
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
