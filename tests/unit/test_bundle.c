/* test_bundle.c - app bundles: pack, stable hashes, untrusted input, unpack and the cache. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <msgpack.h>
#include <sodium.h>

#include <petal/petal.h>

#include "runtime/bundle.h"

#define QUICKSTART_DIR PETAL_BUILD_DIR "/plugins/quickstart"

/* ---- File helpers ------------------------------------------------------------------------- */

static char *
tmpdir(void)
{
    char *t = strdup("/tmp/petal-test-bundle-XXXXXX");

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
put_file(const char *dir, const char *rel, const void *data, size_t len, mode_t mode)
{
    char *p = path_of(dir, rel);
    int fd;

    for (char *s = strchr(p + strlen(dir) + 1, '/'); s != NULL; s = strchr(s + 1, '/')) {
        *s = '\0';
        ck_assert(mkdir(p, 0755) == 0 || errno == EEXIST);
        *s = '/';
    }
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_msg(fd >= 0, "cannot create %s", p);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    ck_assert_int_eq(fchmod(fd, mode), 0);
    close(fd);
    free(p);
}

static void
put_text(const char *dir, const char *rel, const char *text)
{
    put_file(dir, rel, text, strlen(text), 0644);
}

static unsigned char *
slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *d;
    long n;

    if (f == NULL) {
        return NULL;
    }
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    ck_assert_int_eq(fseek(f, 0, SEEK_SET), 0);
    d = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(d);
    ck_assert_uint_eq(fread(d, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return d;
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

/* Number of entries in a directory, "." and ".." excluded. */
static int
count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            n++;
        }
    }
    closedir(d);
    return n;
}

/* ---- Fixtures ----------------------------------------------------------------------------- */

static unsigned char blob[100000]; /* a fake plugin: deterministic bytes */

static void
fill_blob(void)
{
    uint32_t x = 12345;

    for (size_t i = 0; i < sizeof(blob); i++) {
        x = x * 1103515245u + 12345u;
        blob[i] = (unsigned char)(x >> 16);
    }
}

/* An app directory exercising subdirectories, modes, hidden and ignored files. */
static char *
make_app(void)
{
    char *dir = tmpdir();

    fill_blob();
    put_text(dir, "petal.toml",
             "[app]\nname = \"demo\"\nversion = \"1.2.3\"\nclient = \"./lib/client.so\"\n"
             "server = \"server.so\"\n[app.config]\nlr = 0.5\n");
    put_file(dir, "lib/client.so", blob, sizeof(blob), 0644); /* forced to 0755 */
    put_file(dir, "server.so", blob, 5000, 0755);
    put_text(dir, "data/a.txt", "hello\n");
    put_file(dir, "data/sub/b.bin", blob + 7, 300, 0600);
    put_file(dir, "empty", "", 0, 0644);
    put_file(dir, "run.sh", "#!/bin/sh\n", 10, 0755);
    put_text(dir, ".secret", "do not ship\n");
    put_text(dir, ".git/config", "[core]\n");
    put_text(dir, "data/.hidden", "x\n");
    put_text(dir, "CMakeFiles/x.dir/client.c.o", "obj");
    put_text(dir, "Makefile", "all:\n");
    put_text(dir, "cmake_install.cmake", "#\n");
    put_text(dir, PT_BUNDLE_IGNORE_FILE, "# local junk\n*.log\n  scratch/  \n/data/drop.txt\n");
    put_text(dir, "run.log", "log\n");
    put_text(dir, "data/deep.log", "log\n");
    put_text(dir, "scratch/t", "tmp\n");
    put_text(dir, "data/drop.txt", "drop\n");
    {
        char *l = path_of(dir, "alias.txt");
        ck_assert_int_eq(symlink("data/a.txt", l), 0); /* inside: packed as a file */
        free(l);
    }
    return dir;
}

static const char *const app_files[] = {
    "alias.txt",     "data/a.txt", "data/sub/b.bin", "empty",
    "lib/client.so", "petal.toml", "run.sh",         "server.so",
};
#define APP_NFILES (sizeof(app_files) / sizeof(app_files[0]))

static pt_buf_t *
pack_ok(const char *dir, char hash[PT_BUNDLE_HASH_HEX])
{
    char err[512];
    pt_buf_t *b = NULL;
    int rc = pt_bundle_pack(dir, &b, hash, err, sizeof(err));

    ck_assert_msg(rc == 0, "pack %s: %d %s", dir, rc, err);
    ck_assert_ptr_nonnull(b);
    return b;
}

static pt_bundle_t *
parse_ok(const void *data, size_t len)
{
    char err[512];
    pt_bundle_t *b = NULL;
    int rc = pt_bundle_parse(data, len, &b, err, sizeof(err));

    ck_assert_msg(rc == 0, "parse: %d %s", rc, err);
    return b;
}

/* Every bundled file of `src` equals the one in `dst`, byte for byte and mode. */
static void
assert_same_files(const char *src, const char *dst, const pt_bundle_t *b)
{
    for (size_t i = 0; i < b->nfiles; i++) {
        char *ps = path_of(src, b->files[i].path);
        char *pd = path_of(dst, b->files[i].path);
        size_t ls = 0;
        size_t ld = 0;
        unsigned char *ds = slurp(ps, &ls);
        unsigned char *dd = slurp(pd, &ld);
        struct stat st;

        ck_assert_msg(ds != NULL && dd != NULL, "missing %s", b->files[i].path);
        ck_assert_uint_eq(ls, ld);
        ck_assert_msg(memcmp(ds, dd, ls) == 0, "%s differs", b->files[i].path);
        ck_assert_int_eq(lstat(pd, &st), 0);
        ck_assert(S_ISREG(st.st_mode));
        ck_assert_uint_eq(st.st_mode & 07777, b->files[i].mode);
        free(ds);
        free(dd);
        free(ps);
        free(pd);
    }
}

/* ---- A bundle crafter, for inputs pack would never produce --------------------------------- */

typedef struct cfile {
    const char *path;
    size_t plen; /* 0: strlen(path) */
    const char *data;
    size_t len; /* 0: strlen(data) */
    uint32_t mode;
    int bad_sha;
} cfile_t;

typedef struct craft_opts {
    const char *name;
    const char *client;
    const char *server;
    int version;
    const char *extra_key;
} craft_opts_t;

static void
pk_str(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

#define TOML_Q "[app]\nname = \"q\"\nversion = \"1\"\nclient = \"c.so\"\n"

/* Encodes files in the given order with manifest name "q", version "1", client "c.so". */
static msgpack_sbuffer
craft(const cfile_t *f, size_t n, const craft_opts_t *o)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    craft_opts_t def = {.name = "q", .client = "c.so", .version = 1};

    if (o == NULL) {
        o = &def;
    }
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 5);
    pk_str(&pk, "petal.bundle", 12);
    msgpack_pack_int(&pk, o->version);
    msgpack_pack_map(&pk, o->extra_key != NULL ? 6 : 5);
    pk_str(&pk, "name", 4);
    pk_str(&pk, o->name, strlen(o->name));
    pk_str(&pk, "version", 7);
    pk_str(&pk, "1", 1);
    pk_str(&pk, "client", 6);
    pk_str(&pk, o->client, strlen(o->client));
    pk_str(&pk, "server", 6);
    if (o->server != NULL) {
        pk_str(&pk, o->server, strlen(o->server));
    } else {
        msgpack_pack_nil(&pk);
    }
    if (o->extra_key != NULL) {
        pk_str(&pk, o->extra_key, strlen(o->extra_key));
        msgpack_pack_nil(&pk);
    }
    pk_str(&pk, "files", 5);
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++) {
        size_t len = f[i].len != 0 ? f[i].len : strlen(f[i].data);
        unsigned char d[32];
        char hex[65];
        crypto_hash_sha256(d, (const unsigned char *)f[i].data, len);
        sodium_bin2hex(hex, sizeof(hex), d, sizeof(d));
        if (f[i].bad_sha) {
            hex[10] = hex[10] == '0' ? '1' : '0';
        }
        msgpack_pack_array(&pk, 4);
        pk_str(&pk, f[i].path, f[i].plen != 0 ? f[i].plen : strlen(f[i].path));
        msgpack_pack_uint32(&pk, f[i].mode != 0 ? f[i].mode : 0644);
        msgpack_pack_uint64(&pk, len);
        pk_str(&pk, hex, 64);
    }
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++) {
        size_t len = f[i].len != 0 ? f[i].len : strlen(f[i].data);
        msgpack_pack_bin(&pk, len);
        msgpack_pack_bin_body(&pk, f[i].data, len);
    }
    msgpack_pack_nil(&pk);
    return sb;
}

/* The bytes fail parse, verify and unpack with PETAL_E_INVALID_BUNDLE and a message that
 * contains `expect`; unpack leaves nothing behind. */
static void
assert_refused(const void *data, size_t len, const char *expect)
{
    char err[512];
    pt_bundle_t *b = NULL;
    char *dir = tmpdir();
    char *dest = path_of(dir, "app");
    int rc;

    /* an exact-size copy, so ASan sees any over-read */
    void *copy = malloc(len > 0 ? len : 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, data, len);
    rc = pt_bundle_parse(copy, len, &b, err, sizeof(err));
    ck_assert_msg(rc == PETAL_E_INVALID_BUNDLE, "rc %d, expected a refusal (%s)", rc, expect);
    ck_assert_ptr_null(b);
    ck_assert_msg(strstr(err, expect) != NULL, "\n  got: %s\n want: ...%s...", err, expect);
    ck_assert_int_eq(pt_bundle_verify(copy, len, NULL, err, sizeof(err)), PETAL_E_INVALID_BUNDLE);
    ck_assert_int_eq(pt_bundle_unpack(copy, len, dest, err, sizeof(err)), PETAL_E_INVALID_BUNDLE);
    ck_assert_int_eq(count_entries(dir), 0);
    free(copy);
    rm_rf(dir);
    free(dest);
    free(dir);
}

static void
assert_crafted_refused(const cfile_t *f, size_t n, const craft_opts_t *o, const char *expect)
{
    msgpack_sbuffer sb = craft(f, n, o);

    assert_refused(sb.data, sb.size, expect);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- Tests -------------------------------------------------------------------------------- */

START_TEST(test_pack_unpack_tree)
{
    char *app = make_app();
    char *out = tmpdir();
    char *dest = path_of(out, "unpacked");
    char hash[PT_BUNDLE_HASH_HEX];
    char err[512];
    pt_buf_t *buf = pack_ok(app, hash);
    pt_bundle_t *b = parse_ok(pt_buf_data(buf), pt_buf_len(buf));

    ck_assert_str_eq(b->name, "demo");
    ck_assert_str_eq(b->version, "1.2.3");
    ck_assert_str_eq(b->client, "lib/client.so");
    ck_assert_str_eq(b->server, "server.so");
    ck_assert_uint_eq(b->nfiles, APP_NFILES);
    for (size_t i = 0; i < APP_NFILES; i++) {
        ck_assert_str_eq(b->files[i].path, app_files[i]);
    }
    ck_assert_uint_eq(b->files[4].mode, 0755); /* lib/client.so: a plugin */
    ck_assert_uint_eq(b->files[6].mode, 0755); /* run.sh: executable */
    ck_assert_uint_eq(b->files[7].mode, 0755); /* server.so */
    ck_assert_uint_eq(b->files[2].mode, 0644); /* data/sub/b.bin: 0600 normalized */
    ck_assert_uint_eq(b->files[3].size, 0);
    ck_assert_ptr_null(b->signature);
    ck_assert_str_eq(b->signature_scheme, "");

    ck_assert_int_eq(pt_bundle_verify(pt_buf_data(buf), pt_buf_len(buf), hash, err, sizeof(err)),
                     0);
    ck_assert_int_eq(pt_bundle_unpack(pt_buf_data(buf), pt_buf_len(buf), dest, err, sizeof(err)),
                     0);
    assert_same_files(app, dest, b);
    /* the files, data/ and lib/ directories, the marker; no hidden or ignored files */
    ck_assert_int_eq(count_entries(dest), 7 + 1);
    {
        char *m = path_of(dest, PT_BUNDLE_MARKER);
        size_t len;
        unsigned char *d = slurp(m, &len);
        ck_assert_uint_eq(len, 65);
        ck_assert(memcmp(d, hash, 64) == 0);
        free(d);
        free(m);
        char *sec = path_of(dest, ".secret");
        ck_assert(!exists(sec));
        free(sec);
    }
    /* a second unpack into the same place is refused; an empty directory is fine */
    ck_assert_int_eq(pt_bundle_unpack(pt_buf_data(buf), pt_buf_len(buf), dest, err, sizeof(err)),
                     PETAL_EEXIST);
    ck_assert_ptr_nonnull(strstr(err, "exists already"));
    ck_assert_int_eq(count_entries(out), 1); /* no temporary left */
    char *empty = path_of(out, "empty");
    ck_assert_int_eq(mkdir(empty, 0755), 0);
    ck_assert_int_eq(pt_bundle_unpack(pt_buf_data(buf), pt_buf_len(buf), empty, err, sizeof(err)),
                     0);
    assert_same_files(app, empty, b);

    pt_bundle_free(b);
    pt_buf_release(buf);
    rm_rf(app);
    rm_rf(out);
    free(empty);
    free(dest);
    free(app);
    free(out);
}
END_TEST

START_TEST(test_pack_quickstart)
{
    char client[] = QUICKSTART_DIR "/client.so";
    char *app;
    char *out = tmpdir();
    char *dest = path_of(out, "q");
    char hash[PT_BUNDLE_HASH_HEX];
    char hash2[PT_BUNDLE_HASH_HEX];
    char err[512];
    int own = 0;

    if (exists(client)) {
        app = strdup(QUICKSTART_DIR);
    } else { /* quickstart not built: an app that looks like it */
        fprintf(stderr, "test_pack_quickstart: %s not built, using a stand-in\n", client);
        app = tmpdir();
        own = 1;
        fill_blob();
        put_text(app, "petal.toml", "[app]\nname = \"quickstart\"\nclient = \"client.so\"\n");
        put_file(app, "client.so", blob, sizeof(blob), 0755);
        put_text(app, "Makefile", "all:\n");
    }
    pt_buf_t *buf = pack_ok(app, hash);
    pt_bundle_t *b = parse_ok(pt_buf_data(buf), pt_buf_len(buf));
    /* the build directory's CMake files stay out: petal.toml and the plugin only */
    ck_assert_uint_eq(b->nfiles, 2);
    ck_assert_str_eq(b->files[0].path, "client.so");
    ck_assert_uint_eq(b->files[0].mode, 0755);
    ck_assert_str_eq(b->files[1].path, "petal.toml");
    ck_assert_str_eq(b->name, "quickstart");
    ck_assert_int_eq(pt_bundle_unpack(pt_buf_data(buf), pt_buf_len(buf), dest, err, sizeof(err)),
                     0);
    assert_same_files(app, dest, b);

    /* packing again gives the same bytes and hash */
    pt_buf_t *again = pack_ok(app, hash2);
    ck_assert_str_eq(hash, hash2);
    ck_assert_uint_eq(pt_buf_len(again), pt_buf_len(buf));
    ck_assert(memcmp(pt_buf_data(again), pt_buf_data(buf), pt_buf_len(buf)) == 0);
    /* ... and so does the unpacked copy (other path, other mtimes) */
    pt_buf_t *copy = pack_ok(dest, hash2);
    ck_assert_str_eq(hash, hash2);

    pt_buf_release(copy);
    pt_buf_release(again);
    pt_bundle_free(b);
    pt_buf_release(buf);
    if (own) {
        rm_rf(app);
    }
    rm_rf(out);
    free(dest);
    free(out);
    free(app);
}
END_TEST

START_TEST(test_hash_stable)
{
    char *app = make_app();
    char h1[PT_BUNDLE_HASH_HEX];
    char h2[PT_BUNDLE_HASH_HEX];
    char h3[PT_BUNDLE_HASH_HEX];
    pt_buf_t *a = pack_ok(app, h1);
    char *p = path_of(app, "data/a.txt");
    struct timespec ts[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};

    ck_assert_int_eq(pt_bundle_hash_check(h1), 0);
    /* timestamps, permissions beyond x, an extra ignored file: same hash */
    ck_assert_int_eq(utimensat(AT_FDCWD, p, ts, 0), 0);
    ck_assert_int_eq(chmod(p, 0600), 0);
    put_text(app, "more.log", "ignored\n");
    pt_buf_t *b = pack_ok(app, h2);
    ck_assert_str_eq(h1, h2);
    {
        char hx[PT_BUNDLE_HASH_HEX];
        pt_bundle_hash(pt_buf_data(b), pt_buf_len(b), hx);
        ck_assert_str_eq(hx, h2);
    }
    /* one changed byte: another hash */
    put_text(app, "data/a.txt", "hellO\n");
    pt_buf_t *c = pack_ok(app, h3);
    ck_assert_str_ne(h1, h3);
    ck_assert_uint_eq(pt_buf_len(c), pt_buf_len(a));

    pt_buf_release(a);
    pt_buf_release(b);
    pt_buf_release(c);
    rm_rf(app);
    free(p);
    free(app);
}
END_TEST

START_TEST(test_changed_byte_fails_verify)
{
    char *app = tmpdir();
    char hash[PT_BUNDLE_HASH_HEX];
    char err[512];

    put_text(app, "petal.toml", "[app]\nname = \"x\"\nclient = \"c.so\"\n");
    put_text(app, "c.so", "plugin bytes");
    put_text(app, "d/e.txt", "data");
    pt_buf_t *buf = pack_ok(app, hash);
    size_t len = pt_buf_len(buf);
    unsigned char *copy = malloc(len);
    int refused_without_hash = 0;

    for (size_t i = 0; i < len; i++) {
        memcpy(copy, pt_buf_data(buf), len);
        copy[i] ^= (unsigned char)(1u << (i % 8));
        err[0] = '\0';
        int rc = pt_bundle_verify(copy, len, hash, err, sizeof(err));
        ck_assert_msg(rc == PETAL_E_INVALID_BUNDLE, "byte %zu: rc %d", i, rc);
        ck_assert_ptr_nonnull(strstr(err, "hash to"));
        /* without the expected hash the structure and file hashes still catch most flips */
        err[0] = '\0';
        rc = pt_bundle_verify(copy, len, NULL, err, sizeof(err));
        if (rc != 0) {
            ck_assert_int_eq(rc, PETAL_E_INVALID_BUNDLE);
            ck_assert_msg(strncmp(err, "bundle: ", 8) == 0 && strlen(err) > 12, "%s", err);
            refused_without_hash++;
        }
    }
    ck_assert_int_gt(refused_without_hash, (int)(len * 9 / 10));
    /* a content byte: the file's SHA-256 names the file */
    {
        const unsigned char *p = pt_buf_data(buf);
        const unsigned char *at = memmem(p, len, "plugin bytes", 12);
        ck_assert_ptr_nonnull(at);
        memcpy(copy, p, len);
        copy[at - p] ^= 0x20;
        ck_assert_int_eq(pt_bundle_verify(copy, len, NULL, err, sizeof(err)),
                         PETAL_E_INVALID_BUNDLE);
        ck_assert_msg(strstr(err, "file 'c.so'") && strstr(err, "SHA-256 mismatch"), "%s", err);
    }
    ck_assert_int_eq(pt_bundle_verify(pt_buf_data(buf), len, "abc", err, sizeof(err)),
                     PETAL_EINVAL);
    free(copy);
    pt_buf_release(buf);
    rm_rf(app);
    free(app);
}
END_TEST

START_TEST(test_wrong_sha_unpack_leaves_nothing)
{
    cfile_t ok[] = {{.path = "c.so", .data = "plugin"}, {.path = "petal.toml", .data = TOML_Q}};
    cfile_t bad[] = {{.path = "c.so", .data = "plugin"},
                     {.path = "petal.toml", .data = TOML_Q, .bad_sha = 1}};
    msgpack_sbuffer sb = craft(ok, 2, NULL);
    char err[512];
    char *dir = tmpdir();
    char *dest = path_of(dir, "app");

    /* the crafter makes valid bundles */
    ck_assert_int_eq(pt_bundle_unpack(sb.data, sb.size, dest, err, sizeof(err)), 0);
    rm_rf(dest);
    msgpack_sbuffer_destroy(&sb);

    assert_crafted_refused(bad, 2, NULL, "file 'petal.toml': SHA-256 mismatch");
    ck_assert_int_eq(count_entries(dir), 0);
    rm_rf(dir);
    free(dest);
    free(dir);
}
END_TEST

START_TEST(test_bad_paths_refused)
{
    static const struct {
        const char *path;
        size_t plen;
        const char *why;
    } cases[] = {
        {"../x", 0, "'..' component"},
        {"/etc/x", 0, "absolute"},
        {"a/../../x", 0, "'..' component"},
        {"a/./x", 0, "'.' component"},
        {"a//x", 0, "empty component"},
        {"a/", 0, "empty component"},
        {".ssh/x", 0, "hidden component"},
        {PT_BUNDLE_MARKER, 0, "hidden component"},
        {"a\0b", 3, "NUL byte"},
        {"a\nb", 0, "control character"},
        {"", 0, "empty"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cfile_t f[] = {{.path = cases[i].path, .plen = cases[i].plen, .data = "x"},
                       {.path = "c.so", .data = "p"},
                       {.path = "petal.toml", .data = TOML_Q}};
        assert_crafted_refused(f, 3, NULL, cases[i].why);
    }
    /* too long and too deep */
    char longp[1100];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = '\0';
    cfile_t f1[] = {{.path = longp, .data = "x"},
                    {.path = "c.so", .data = "p"},
                    {.path = "petal.toml", .data = TOML_Q}};
    assert_crafted_refused(f1, 3, NULL, "at most 1024 allowed");
    char deep[100] = "";
    for (int i = 0; i < 33; i++) {
        strcat(deep, "d/");
    }
    strcat(deep, "x");
    cfile_t f2[] = {{.path = "c.so", .data = "p"},
                    {.path = deep, .data = "x"},
                    {.path = "petal.toml", .data = TOML_Q}};
    assert_crafted_refused(f2, 3, NULL, "deeper than 32");
    /* a client path that escapes */
    cfile_t f3[] = {{.path = "c.so", .data = "p"}, {.path = "petal.toml", .data = TOML_Q}};
    craft_opts_t o = {.name = "q", .client = "../c.so", .version = 1};
    assert_crafted_refused(f3, 2, &o, "the client '../c.so' is not allowed");
}
END_TEST

START_TEST(test_bad_manifests_refused)
{
    cfile_t toml = {.path = "petal.toml", .data = TOML_Q};
    cfile_t c = {.path = "c.so", .data = "p"};
    {
        cfile_t f[] = {c, c, toml};
        assert_crafted_refused(f, 3, NULL, "appears twice");
    }
    {
        cfile_t f[] = {toml, c};
        assert_crafted_refused(f, 2, NULL, "not sorted");
    }
    {
        cfile_t f[] = {{.path = "a", .data = "1"}, {.path = "a/b", .data = "2"}, c, toml};
        assert_crafted_refused(f, 4, NULL, "'a' is both a file and the directory of 'a/b'");
    }
    {
        cfile_t f[] = {{.path = "c.so", .data = "p", .mode = 04755}, toml};
        assert_crafted_refused(f, 2, NULL, "mode 4755 is not allowed");
    }
    {
        cfile_t f[] = {c};
        assert_crafted_refused(f, 1, NULL, "no petal.toml");
    }
    {
        cfile_t f[] = {{.path = "d.so", .data = "p"}, toml};
        assert_crafted_refused(f, 2, NULL, "the client 'c.so' is not among its files");
    }
    {
        cfile_t f[] = {c, toml};
        craft_opts_t o = {.name = "q", .client = "c.so", .server = "s.so", .version = 1};
        assert_crafted_refused(f, 2, &o, "the server 's.so' is not among its files");
        o.server = NULL;
        o.name = "other";
        assert_crafted_refused(f, 2, &o, "disagree on the app's name");
        o.name = "q";
        o.version = 2;
        assert_crafted_refused(f, 2, &o, "version 2 is not supported");
        o.version = 1;
        o.extra_key = "publisher";
        assert_crafted_refused(f, 2, &o, "has 6 keys");
    }
    {
        cfile_t f[] = {c, {.path = "petal.toml", .data = "[app]\nname = [1]\n"}};
        assert_crafted_refused(f, 2, NULL, "petal.toml (in the bundle):2:");
    }
    /* structural damage */
    {
        cfile_t f[] = {c, toml};
        msgpack_sbuffer sb = craft(f, 2, NULL);
        char *more = malloc(sb.size + 3);
        memcpy(more, sb.data, sb.size);
        memcpy(more + sb.size, "xyz", 3);
        assert_refused(more, sb.size + 3, "3 bytes after the end");
        more[0] = (char)0x93; /* an array of 3 */
        assert_refused(more, sb.size, "has 5 elements, this one 3");
        more[0] = (char)0x81;
        assert_refused(more, sb.size, "not a Petal bundle");
        memcpy(more, sb.data, sb.size);
        memcpy(more + 2, "petal.bundlf", 12);
        assert_refused(more, sb.size, "tag 'petal.bundlf'");
        free(more);
        msgpack_sbuffer_destroy(&sb);
    }
    assert_refused("", 0, "truncated");
    assert_refused("\xdd\xff\xff\xff\xff", 5, "claims 4294967295 elements");
}
END_TEST

START_TEST(test_truncated_every_prefix)
{
    char *app = make_app();
    char hash[PT_BUNDLE_HASH_HEX];
    char err[512];
    pt_buf_t *buf;

    /* a small app so that every prefix is cheap */
    rm_rf(app);
    ck_assert_int_eq(mkdir(app, 0700), 0);
    put_text(app, "petal.toml", "[app]\nname = \"x\"\nclient = \"c.so\"\nserver = \"s/s.so\"\n");
    put_file(app, "c.so", blob, 3000, 0755);
    put_file(app, "s/s.so", blob, 70000, 0755); /* a bin32 */
    put_text(app, "s/t", "t");
    buf = pack_ok(app, hash);
    size_t len = pt_buf_len(buf);
    for (size_t cut = 0; cut < len; cut++) {
        unsigned char *p = malloc(cut > 0 ? cut : 1);
        pt_bundle_t *b = NULL;
        memcpy(p, pt_buf_data(buf), cut);
        err[0] = '\0';
        int rc = pt_bundle_parse(p, cut, &b, err, sizeof(err));
        ck_assert_msg(rc == PETAL_E_INVALID_BUNDLE, "prefix %zu: rc %d", cut, rc);
        ck_assert_ptr_null(b);
        ck_assert_msg(strstr(err, "truncated") != NULL, "prefix %zu: %s", cut, err);
        free(p);
    }
    pt_buf_release(buf);
    rm_rf(app);
    free(app);
}
END_TEST

START_TEST(test_signature_slot)
{
    char *app = tmpdir();
    char hash[PT_BUNDLE_HASH_HEX];
    char err[512];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    unsigned char key[32];
    unsigned char sig[64];

    put_text(app, "petal.toml", "[app]\nname = \"x\"\nclient = \"c.so\"\n");
    put_text(app, "c.so", "plugin");
    pt_buf_t *buf = pack_ok(app, hash);
    const unsigned char *p = pt_buf_data(buf);
    size_t len = pt_buf_len(buf);
    ck_assert_uint_eq(p[len - 1], 0xc0); /* unsigned: ends with nil */
    pt_bundle_t *plain = parse_ok(p, len);

    /* signing replaces the trailing nil with [scheme, key, signature] */
    memset(key, 7, sizeof(key));
    memset(sig, 9, sizeof(sig));
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_sbuffer_write(&sb, (const char *)p, len - 1);
    msgpack_pack_array(&pk, 3);
    pk_str(&pk, "ed25519", 7);
    msgpack_pack_bin(&pk, 32);
    msgpack_pack_bin_body(&pk, key, 32);
    msgpack_pack_bin(&pk, 64);
    msgpack_pack_bin_body(&pk, sig, 64);
    pt_bundle_t *s = parse_ok(sb.data, sb.size);
    ck_assert_str_eq(s->signature_scheme, "ed25519");
    ck_assert_uint_eq(s->signature_len, sb.size - (len - 1));
    ck_assert_ptr_eq(s->signature, (const uint8_t *)sb.data + len - 1);
    ck_assert(memcmp(s->manifest_digest, plain->manifest_digest, 32) == 0);
    ck_assert_uint_eq(s->manifest_len, plain->manifest_len);
    {
        unsigned char d[32];
        crypto_hash_sha256(d, s->manifest, s->manifest_len);
        ck_assert(memcmp(d, s->manifest_digest, 32) == 0);
    }
    pt_bundle_free(s);

    /* a signature of the wrong shape */
    sb.size = len - 1;
    msgpack_pack_map(&pk, 0);
    assert_refused(sb.data, sb.size, "signature: expected an array");
    sb.size = len - 1;
    msgpack_pack_array(&pk, 0);
    assert_refused(sb.data, sb.size, "1 to 8 elements");
    sb.size = len - 1;
    msgpack_pack_array(&pk, 2);
    pk_str(&pk, "ed25519", 7);
    msgpack_pack_array(&pk, 0);
    assert_refused(sb.data, sb.size, "expected a non-negative integer for a signature field");

    (void)err;
    msgpack_sbuffer_destroy(&sb);
    pt_bundle_free(plain);
    pt_buf_release(buf);
    rm_rf(app);
    free(app);
}
END_TEST

START_TEST(test_pack_errors)
{
    char *app = tmpdir();
    char *outside = tmpdir();
    char err[512];
    pt_buf_t *b = (pt_buf_t *)&err;

    ck_assert_int_eq(pt_bundle_pack(app, &b, NULL, err, sizeof(err)), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "petal.toml"));
    put_text(app, "petal.toml", "[app]\nname = \"x\"\nclient = \"build/c.so\"\n");
    ck_assert_int_eq(pt_bundle_pack(app, &b, NULL, err, sizeof(err)), PETAL_ECONFIG);
    ck_assert_msg(strstr(err, "build/c.so is not a file") && strstr(err, "build the plugin"), "%s",
                  err);
    put_text(app, "build/c.so", "p");
    put_text(outside, "secret", "s");
    char *target = path_of(outside, "secret");
    char *link = path_of(app, "leak");
    ck_assert_int_eq(symlink(target, link), 0);
    ck_assert_int_eq(pt_bundle_pack(app, &b, NULL, err, sizeof(err)), PETAL_ECONFIG);
    ck_assert_msg(strstr(err, "'leak' is a symlink to") && strstr(err, "outside the app"), "%s",
                  err);
    /* .petalignore can leave it out */
    put_text(app, PT_BUNDLE_IGNORE_FILE, "leak\n");
    pt_buf_t *ok = NULL;
    ck_assert_int_eq(pt_bundle_pack(app, &ok, NULL, err, sizeof(err)), 0);
    pt_buf_release(ok);
    put_text(app, PT_BUNDLE_IGNORE_FILE, "!leak\n");
    ck_assert_int_eq(pt_bundle_pack(app, &b, NULL, err, sizeof(err)), PETAL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err, ".petalignore:1: negated"));
    unlink(link);
    /* a symlinked directory, a fifo */
    ck_assert_int_eq(symlink("build", link), 0);
    put_text(app, PT_BUNDLE_IGNORE_FILE, "");
    ck_assert_int_eq(pt_bundle_pack(app, &b, NULL, err, sizeof(err)), PETAL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err, "symlink to a directory"));
    unlink(link);
    ck_assert_int_eq(mkfifo(link, 0644), 0);
    ck_assert_int_eq(pt_bundle_pack(app, &b, NULL, err, sizeof(err)), PETAL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
    unlink(link);
    /* a hidden plugin cannot be shipped */
    put_text(app, "petal.toml", "[app]\nname = \"x\"\nclient = \".c.so\"\n");
    ck_assert_int_eq(pt_bundle_pack(app, &b, NULL, err, sizeof(err)), PETAL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err, "hidden"));
    /* more than 1024 files */
    put_text(app, "petal.toml", "[app]\nname = \"x\"\nclient = \"build/c.so\"\n");
    for (int i = 0; i < 1024; i++) {
        char n[32];
        snprintf(n, sizeof(n), "many/%04d", i);
        put_text(app, n, "");
    }
    ck_assert_int_eq(pt_bundle_pack(app, &b, NULL, err, sizeof(err)), PETAL_EMSGSIZE);
    ck_assert_ptr_nonnull(strstr(err, "more than 1024 files"));
    ck_assert_ptr_eq(b, (pt_buf_t *)&err); /* untouched on failure */

    rm_rf(app);
    rm_rf(outside);
    free(target);
    free(link);
    free(app);
    free(outside);
}
END_TEST

START_TEST(test_cache_reuse)
{
    char *app = make_app();
    char *root = tmpdir();
    char *cache = path_of(root, "a/b/cache"); /* created on demand */
    char hash[PT_BUNDLE_HASH_HEX];
    char dir[4096];
    char dir2[4096];
    char err[512];
    struct stat st1;
    struct stat st2;
    pt_buf_t *buf = pack_ok(app, hash);
    const void *d = pt_buf_data(buf);
    size_t len = pt_buf_len(buf);

    ck_assert_int_eq(pt_bundle_cache_has(cache, hash, dir, sizeof(dir)), 0);
    ck_assert_int_eq(pt_bundle_cache_get(cache, hash, NULL, 0, dir, sizeof(dir), err, sizeof(err)),
                     PETAL_ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "is not in"));
    ck_assert_int_eq(pt_bundle_cache_get(cache, hash, d, len, dir, sizeof(dir), err, sizeof(err)),
                     0);
    ck_assert_ptr_nonnull(strstr(dir, hash));
    pt_bundle_t *b = parse_ok(d, len);
    assert_same_files(app, dir, b);
    ck_assert_int_eq(stat(dir, &st1), 0);
    put_text(dir, "note", "left by the test"); /* a re-unpack would drop it */

    ck_assert_int_eq(pt_bundle_cache_get(cache, hash, d, len, dir2, sizeof(dir2), err, sizeof(err)),
                     0);
    ck_assert_str_eq(dir, dir2);
    ck_assert_int_eq(stat(dir2, &st2), 0);
    ck_assert_uint_eq(st1.st_ino, st2.st_ino);
    char *note = path_of(dir, "note");
    ck_assert(exists(note));
    ck_assert_int_eq(
        pt_bundle_cache_get(cache, hash, NULL, 0, dir2, sizeof(dir2), err, sizeof(err)), 0);
    ck_assert_int_eq(pt_bundle_cache_has(cache, hash, dir2, sizeof(dir2)), 1);
    ck_assert_str_eq(dir, dir2);
    ck_assert_int_eq(count_entries(cache), 1);

    /* bad hashes never become paths */
    ck_assert_int_eq(
        pt_bundle_cache_get(cache, "../../../etc", d, len, dir2, sizeof(dir2), err, sizeof(err)),
        PETAL_EINVAL);
    ck_assert_int_eq(pt_bundle_cache_has(cache, "ABCDEF", dir2, sizeof(dir2)), PETAL_EINVAL);
    ck_assert_int_eq(pt_bundle_cache_has(cache, hash, dir2, 10), PETAL_EINVAL);
    /* bytes that do not match the hash */
    char other[PT_BUNDLE_HASH_HEX];
    memcpy(other, hash, sizeof(other));
    other[0] = other[0] == 'a' ? 'b' : 'a';
    ck_assert_int_eq(
        pt_bundle_cache_get(cache, other, d, len, dir2, sizeof(dir2), err, sizeof(err)),
        PETAL_E_INVALID_BUNDLE);
    ck_assert_ptr_nonnull(strstr(err, "hash to"));
    ck_assert_int_eq(count_entries(cache), 1);

    pt_bundle_free(b);
    pt_buf_release(buf);
    rm_rf(app);
    rm_rf(root);
    free(note);
    free(cache);
    free(app);
    free(root);
}
END_TEST

START_TEST(test_cache_replaces_incomplete)
{
    char *app = make_app();
    char *cache = tmpdir();
    char hash[PT_BUNDLE_HASH_HEX];
    char dir[4096];
    char err[512];
    pt_buf_t *buf = pack_ok(app, hash);
    char *stale = path_of(cache, hash);

    ck_assert_int_eq(mkdir(stale, 0755), 0);
    put_text(stale, "junk", "half an unpack from some other tool");
    ck_assert_int_eq(pt_bundle_cache_has(cache, hash, dir, sizeof(dir)), 0);
    ck_assert_int_eq(pt_bundle_cache_get(cache, hash, pt_buf_data(buf), pt_buf_len(buf), dir,
                                         sizeof(dir), err, sizeof(err)),
                     0);
    ck_assert_int_eq(pt_bundle_cache_has(cache, hash, dir, sizeof(dir)), 1);
    char *junk = path_of(dir, "junk");
    ck_assert(!exists(junk));
    ck_assert_int_eq(count_entries(cache), 1); /* no temporary or trash left */

    pt_buf_release(buf);
    rm_rf(app);
    rm_rf(cache);
    free(junk);
    free(stale);
    free(app);
    free(cache);
}
END_TEST

typedef struct getter {
    const char *cache;
    const char *hash;
    pt_buf_t *buf;
    pthread_barrier_t *start;
    char dir[4096];
    char err[512];
    int rc;
} getter_t;

static void *
get_thread(void *arg)
{
    getter_t *g = arg;

    pthread_barrier_wait(g->start);
    g->rc = pt_bundle_cache_get(g->cache, g->hash, pt_buf_data(g->buf), pt_buf_len(g->buf), g->dir,
                                sizeof(g->dir), g->err, sizeof(g->err));
    return NULL;
}

START_TEST(test_cache_concurrent_get)
{
    char *app = make_app();
    char hash[PT_BUNDLE_HASH_HEX];
    pt_buf_t *buf = pack_ok(app, hash);
    pt_bundle_t *b = parse_ok(pt_buf_data(buf), pt_buf_len(buf));

    for (int round = 0; round < 8; round++) {
        char *cache = tmpdir();
        pthread_barrier_t start;
        pthread_t t[2];
        getter_t g[2];

        ck_assert_int_eq(pthread_barrier_init(&start, NULL, 2), 0);
        for (int i = 0; i < 2; i++) {
            memset(&g[i], 0, sizeof(g[i]));
            g[i].cache = cache;
            g[i].hash = hash;
            g[i].buf = buf;
            g[i].start = &start;
            ck_assert_int_eq(pthread_create(&t[i], NULL, get_thread, &g[i]), 0);
        }
        for (int i = 0; i < 2; i++) {
            ck_assert_int_eq(pthread_join(t[i], NULL), 0);
            ck_assert_msg(g[i].rc == 0, "thread %d: %d %s", i, g[i].rc, g[i].err);
        }
        ck_assert_str_eq(g[0].dir, g[1].dir);
        ck_assert_int_eq(count_entries(cache), 1); /* one directory, no temporaries */
        ck_assert_int_eq(pt_bundle_cache_has(cache, hash, g[0].dir, sizeof(g[0].dir)), 1);
        assert_same_files(app, g[0].dir, b);
        ck_assert_int_eq(count_entries(g[0].dir), 7 + 1);
        pthread_barrier_destroy(&start);
        rm_rf(cache);
        free(cache);
    }
    pt_bundle_free(b);
    pt_buf_release(buf);
    rm_rf(app);
    free(app);
}
END_TEST

/* ---- Seeds for tests/fuzz/corpus/bundle --------------------------------------------------- */

static void
write_seed(const char *dir, const char *name, const void *data, size_t len)
{
    char *p = path_of(dir, name);
    FILE *f = fopen(p, "wb");

    if (f == NULL || fwrite(data, 1, len, f) != len) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(1);
    }
    fclose(f);
    printf("%s (%zu bytes)\n", p, len);
    free(p);
}

static const char *seeds_dir;

static int
write_seeds(const char *out)
{
    char *app = tmpdir();
    char hash[PT_BUNDLE_HASH_HEX];
    char err[512];
    pt_buf_t *b = NULL;
    msgpack_sbuffer sb;
    msgpack_packer pk;

    put_text(app, "petal.toml", "[app]\nname = \"seed\"\nversion = \"1\"\nclient = \"c.so\"\n");
    put_text(app, "c.so", "client plugin");
    if (pt_bundle_pack(app, &b, hash, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    write_seed(out, "minimal.bundle", pt_buf_data(b), pt_buf_len(b));

    /* the same, signed (a stand-in signature) */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_sbuffer_write(&sb, pt_buf_data(b), pt_buf_len(b) - 1);
    msgpack_pack_array(&pk, 3);
    pk_str(&pk, "ed25519", 7);
    msgpack_pack_bin(&pk, 32);
    msgpack_pack_bin_body(&pk, hash, 32);
    msgpack_pack_bin(&pk, 64);
    msgpack_pack_bin_body(&pk, hash, 64);
    write_seed(out, "signed.bundle", sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    pt_buf_release(b);

    put_text(app, "petal.toml",
             "[app]\nname = \"tree\"\nclient = \"lib/c.so\"\nserver = \"s.so\"\n"
             "[app.config]\nlr = 0.1\n");
    put_text(app, "lib/c.so", "client");
    put_text(app, "s.so", "server");
    put_text(app, "data/x/y.txt", "nested data\n");
    put_file(app, "run.sh", "#!/bin/sh\n", 10, 0755);
    put_file(app, "empty", "", 0, 0644);
    char *old = path_of(app, "c.so");
    unlink(old);
    free(old);
    if (pt_bundle_pack(app, &b, hash, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    write_seed(out, "tree.bundle", pt_buf_data(b), pt_buf_len(b));
    pt_buf_release(b);
    rm_rf(app);
    free(app);
    return 0;
}

START_TEST(test_write_seeds)
{
    ck_assert_int_eq(write_seeds(seeds_dir), 0);
}
END_TEST

static Suite *
bundle_suite(void)
{
    Suite *s = suite_create("bundle");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_pack_unpack_tree);
    tcase_add_test(tc, test_pack_quickstart);
    tcase_add_test(tc, test_hash_stable);
    tcase_add_test(tc, test_changed_byte_fails_verify);
    tcase_add_test(tc, test_wrong_sha_unpack_leaves_nothing);
    tcase_add_test(tc, test_bad_paths_refused);
    tcase_add_test(tc, test_bad_manifests_refused);
    tcase_add_test(tc, test_truncated_every_prefix);
    tcase_add_test(tc, test_signature_slot);
    tcase_add_test(tc, test_pack_errors);
    tcase_add_test(tc, test_cache_reuse);
    tcase_add_test(tc, test_cache_replaces_incomplete);
    tcase_add_test(tc, test_cache_concurrent_get);
    suite_add_tcase(s, tc);
    return s;
}

/* `test_bundle --write-seeds DIR` regenerates tests/fuzz/corpus/bundle. */
int
main(int argc, char **argv)
{
    SRunner *sr;
    int failed;

    if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0) {
        Suite *s = suite_create("seeds");
        TCase *tc = tcase_create("seeds");
        seeds_dir = argv[2];
        tcase_add_test(tc, test_write_seeds); /* a test, so that the helpers may ck_assert */
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
    } else {
        sr = srunner_create(bundle_suite());
    }
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
