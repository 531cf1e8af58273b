/* keys.c - Ed25519 identities: guarded key pairs, key files and key lists (see keys.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "keys.h"

#define KEYFILE_MAX 4096 /* bytes a secret key file may have */
#define SEED_BYTES 32    /* crypto_sign_SEEDBYTES */

/* ---- Init and errors ----------------------------------------------------------------------- */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_result;

static void
do_init(void)
{
    init_result = sodium_init() < 0 ? PETAL_ENOMEM : 0;
}

int
pt_keys_init(void)
{
    pthread_once(&init_once, do_init);
    return init_result;
}

static int fail(int code, char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
fail(int code, char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && cap > 0) {
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int
errno_code(int e)
{
    return e == ENOENT || e == ENOTDIR ? PETAL_ENOENT : PETAL_EIO;
}

/* ---- Key pairs ----------------------------------------------------------------------------- */

/* Guards the PROT_NONE <-> PROT_READ switches of secret keys (several threads may sign). */
static pthread_mutex_t sk_mu = PTHREAD_MUTEX_INITIALIZER;

static int
keypair_new(pt_keypair_t **out)
{
    pt_keypair_t *kp;

    if (pt_keys_init() != 0) {
        return PETAL_ENOMEM;
    }
    kp = calloc(1, sizeof(*kp));
    if (kp == NULL) {
        return PETAL_ENOMEM;
    }
    kp->sk = sodium_malloc(PT_KEY_SECRET_BYTES);
    if (kp->sk == NULL) {
        free(kp);
        return PETAL_ENOMEM;
    }
    *out = kp;
    return 0;
}

int
pt_keypair_generate(pt_keypair_t **out)
{
    pt_keypair_t *kp;
    int r;

    if (out == NULL) {
        return PETAL_EINVAL;
    }
    r = keypair_new(&kp);
    if (r != 0) {
        return r;
    }
    crypto_sign_keypair(kp->pk, kp->sk);
    sodium_mprotect_noaccess(kp->sk);
    *out = kp;
    return 0;
}

void
pt_keypair_free(pt_keypair_t *kp)
{
    if (kp == NULL) {
        return;
    }
    sodium_free(kp->sk); /* makes it writable, wipes it, unmaps it */
    sodium_memzero(kp, sizeof(*kp));
    free(kp);
}

static void
sk_open(const pt_keypair_t *kp)
{
    pthread_mutex_lock(&sk_mu);
    sodium_mprotect_readonly(kp->sk);
}

static void
sk_close(const pt_keypair_t *kp)
{
    sodium_mprotect_noaccess(kp->sk);
    pthread_mutex_unlock(&sk_mu);
}

int
pt_keypair_sign(const pt_keypair_t *kp, const uint8_t *m, size_t n, uint8_t sig[PT_KEY_SIG_BYTES])
{
    if (kp == NULL || kp->sk == NULL || (m == NULL && n > 0) || sig == NULL) {
        return PETAL_EINVAL;
    }
    sk_open(kp);
    crypto_sign_detached(sig, NULL, m, n, kp->sk);
    sk_close(kp);
    return 0;
}

int
pt_key_verify(const uint8_t pk[PT_KEY_PUBLIC_BYTES], const uint8_t *m, size_t n,
              const uint8_t sig[PT_KEY_SIG_BYTES])
{
    if (pk == NULL || sig == NULL || (m == NULL && n > 0) || pt_keys_init() != 0) {
        return PETAL_EINVAL;
    }
    return crypto_sign_verify_detached(sig, m, n, pk) == 0 ? 0 : PETAL_EPROTO;
}

/* ---- Text helpers -------------------------------------------------------------------------- */

void
pt_key_to_hex(const uint8_t pk[PT_KEY_PUBLIC_BYTES], char out[PT_KEY_HEX_SIZE])
{
    sodium_bin2hex(out, PT_KEY_HEX_SIZE, pk, PT_KEY_PUBLIC_BYTES);
}

void
pt_key_fingerprint(const uint8_t pk[PT_KEY_PUBLIC_BYTES], char out[PT_KEY_FPR_SIZE])
{
    char hex[17];

    sodium_bin2hex(hex, sizeof(hex), pk, 8);
    snprintf(out, PT_KEY_FPR_SIZE, "ed25519:%s", hex);
}

static int
is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* Exactly `len` hex digits into out[0, len / 2). */
static int
hex_decode(const char *s, size_t len, uint8_t *out, size_t outlen)
{
    size_t bin_len = 0;

    if (len != outlen * 2) {
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];

        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F'))) {
            return -1;
        }
    }
    if (sodium_hex2bin(out, outlen, s, len, NULL, &bin_len, NULL) != 0 || bin_len != outlen) {
        return -1;
    }
    return 0;
}

/* A key token of `len` characters (no blanks). */
static int
parse_token(const char *s, size_t len, uint8_t out[PT_KEY_PUBLIC_BYTES])
{
    uint8_t tmp[PT_KEY_PUBLIC_BYTES];
    size_t bin_len = 0;
    const char *end = NULL;

    if (pt_keys_init() != 0) {
        return PETAL_ENOMEM;
    }
    if (len == 2 * PT_KEY_PUBLIC_BYTES) {
        if (hex_decode(s, len, tmp, sizeof(tmp)) != 0) {
            return PETAL_EINVAL;
        }
    } else if (len == 44 || len == 43) {
        int variant =
            len == 44 ? sodium_base64_VARIANT_ORIGINAL : sodium_base64_VARIANT_ORIGINAL_NO_PADDING;

        if (sodium_base642bin(tmp, sizeof(tmp), s, len, NULL, &bin_len, &end, variant) != 0 ||
            bin_len != sizeof(tmp) || end != s + len) {
            return PETAL_EINVAL;
        }
    } else {
        return PETAL_EINVAL;
    }
    memcpy(out, tmp, sizeof(tmp));
    return 0;
}

int
pt_key_parse(const char *text, uint8_t out[PT_KEY_PUBLIC_BYTES])
{
    size_t b, e;

    if (text == NULL || out == NULL) {
        return PETAL_EINVAL;
    }
    e = strlen(text);
    b = 0;
    while (b < e && is_blank(text[b])) {
        b++;
    }
    while (e > b && is_blank(text[e - 1])) {
        e--;
    }
    return parse_token(text + b, e - b, out);
}

/* ---- Key lists ----------------------------------------------------------------------------- */

int
pt_keylist_alloc(pt_keylist_t **out)
{
    pt_keylist_t *l;

    if (out == NULL) {
        return PETAL_EINVAL;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return PETAL_ENOMEM;
    }
    l->path = strdup("");
    if (l->path == NULL) {
        free(l);
        return PETAL_ENOMEM;
    }
    *out = l;
    return 0;
}

void
pt_keylist_free(pt_keylist_t *l)
{
    if (l == NULL) {
        return;
    }
    free(l->keys);
    free(l->path);
    free(l);
}

int
pt_keylist_contains(const pt_keylist_t *l, const uint8_t pk[PT_KEY_PUBLIC_BYTES])
{
    if (l == NULL || pk == NULL) {
        return 0;
    }
    for (size_t i = 0; i < l->n; i++) {
        if (memcmp(l->keys[i], pk, PT_KEY_PUBLIC_BYTES) == 0) {
            return 1;
        }
    }
    return 0;
}

int
pt_keylist_add(pt_keylist_t *l, const uint8_t pk[PT_KEY_PUBLIC_BYTES])
{
    uint8_t(*keys)[PT_KEY_PUBLIC_BYTES];

    if (l == NULL || pk == NULL) {
        return PETAL_EINVAL;
    }
    if (pt_keylist_contains(l, pk)) {
        return 0;
    }
    keys = realloc(l->keys, (l->n + 1) * sizeof(*keys));
    if (keys == NULL) {
        return PETAL_ENOMEM;
    }
    memcpy(keys[l->n], pk, PT_KEY_PUBLIC_BYTES);
    l->keys = keys;
    l->n++;
    return 0;
}

/* "DIR/name" when path is a directory, else path; 0 or PETAL_EINVAL (too long). */
static int
resolve_path(const char *path, const char *name, char *buf, size_t cap)
{
    struct stat st;
    int n;

    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        n = snprintf(buf, cap, "%s/%s", path, name);
    } else {
        n = snprintf(buf, cap, "%s", path);
    }
    return n < 0 || (size_t)n >= cap ? PETAL_EINVAL : 0;
}

int
pt_keylist_load(const char *path, pt_keylist_t **out, char *err, size_t cap)
{
    pt_keylist_t *l = NULL;
    FILE *f;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    unsigned lineno = 0;
    int r;

    if (path == NULL || out == NULL) {
        return fail(PETAL_EINVAL, err, cap, "no key list file given");
    }
    f = fopen(path, "r");
    if (f == NULL) {
        int e = errno;

        return fail(errno_code(e), err, cap, "cannot open key list %s: %s", path, strerror(e));
    }
    r = pt_keylist_alloc(&l);
    if (r != 0) {
        fclose(f);
        return fail(r, err, cap, "out of memory loading %s", path);
    }
    free(l->path);
    l->path = strdup(path);
    if (l->path == NULL) {
        r = fail(PETAL_ENOMEM, err, cap, "out of memory loading %s", path);
        goto fail;
    }
    while ((len = getline(&line, &lcap, f)) >= 0) {
        char *s = line, *hash, *e;
        uint8_t pk[PT_KEY_PUBLIC_BYTES];

        lineno++;
        if (memchr(line, '\0', (size_t)len) != NULL && strlen(line) != (size_t)len) {
            r = fail(PETAL_ECONFIG, err, cap, "%s:%u: a NUL byte in a key list", path, lineno);
            goto fail;
        }
        hash = strchr(s, '#');
        if (hash != NULL) {
            *hash = '\0';
        }
        while (is_blank(*s)) {
            s++;
        }
        if (*s == '\0') {
            continue;
        }
        e = s;
        while (*e != '\0' && !is_blank(*e)) {
            e++;
        }
        if (parse_token(s, (size_t)(e - s), pk) != 0) {
            r = fail(PETAL_ECONFIG, err, cap,
                     "%s:%u: not a public key (expected 64 hex digits or 44 base64 characters, "
                     "as in a petal.pub written by `petal keygen`)",
                     path, lineno);
            goto fail;
        }
        r = pt_keylist_add(l, pk);
        if (r != 0) {
            r = fail(r, err, cap, "out of memory loading %s", path);
            goto fail;
        }
    }
    if (ferror(f)) {
        r = fail(PETAL_EIO, err, cap, "cannot read key list %s", path);
        goto fail;
    }
    free(line);
    fclose(f);
    *out = l;
    return 0;
fail:
    free(line);
    fclose(f);
    pt_keylist_free(l);
    return r;
}

int
pt_pubkey_load(const char *path, uint8_t out[PT_KEY_PUBLIC_BYTES], char *err, size_t cap)
{
    char file[4096];
    pt_keylist_t *l;
    int r;

    if (path == NULL || out == NULL) {
        return fail(PETAL_EINVAL, err, cap, "no public key file given");
    }
    if (resolve_path(path, PT_KEY_PUBLIC_FILE, file, sizeof(file)) != 0) {
        return fail(PETAL_EINVAL, err, cap, "path too long: %s", path);
    }
    r = pt_keylist_load(file, &l, err, cap);
    if (r != 0) {
        return r;
    }
    if (l->n != 1) {
        r = fail(PETAL_ECONFIG, err, cap,
                 "%s: expected exactly one public key, found %zu (a petal.pub written by "
                 "`petal keygen`)",
                 file, l->n);
        pt_keylist_free(l);
        return r;
    }
    memcpy(out, l->keys[0], PT_KEY_PUBLIC_BYTES);
    pt_keylist_free(l);
    return 0;
}

int
pt_keylist_authorize(void *ctx, const uint8_t peer_pk[PT_KEY_PUBLIC_BYTES], char *why, size_t cap)
{
    const pt_keylist_t *l = ctx;
    char fpr[PT_KEY_FPR_SIZE];

    if (l != NULL && pt_keylist_contains(l, peer_pk)) {
        return 0;
    }
    pt_key_fingerprint(peer_pk, fpr);
    if (why != NULL && cap > 0) {
        if (l != NULL && l->path != NULL && l->path[0] != '\0') {
            snprintf(why, cap, "key %s is not in %s", fpr, l->path);
        } else {
            snprintf(why, cap, "key %s is not allowed", fpr);
        }
    }
    return PETAL_EPROTO;
}

/* ---- Secret key files ---------------------------------------------------------------------- */

/* Parses "seed HEX" / "public HEX" lines of text[0, n) (guarded memory) into kp. */
static int
parse_secret(const char *file, char *text, size_t n, pt_keypair_t *kp, char *err, size_t cap)
{
    uint8_t *seed = sodium_malloc(SEED_BYTES);
    uint8_t pub[PT_KEY_PUBLIC_BYTES];
    int have_seed = 0, have_pub = 0, r = 0;
    unsigned lineno = 0;
    size_t pos = 0;

    if (seed == NULL) {
        return fail(PETAL_ENOMEM, err, cap, "out of memory loading %s", file);
    }
    while (pos < n) {
        char *s = text + pos, *nl = memchr(s, '\n', n - pos), *e, *v, *ve;
        size_t len = nl != NULL ? (size_t)(nl - s) : n - pos;

        pos += len + (nl != NULL ? 1 : 0);
        lineno++;
        e = s + len;
        while (s < e && is_blank(*s)) {
            s++;
        }
        while (e > s && is_blank(e[-1])) {
            e--;
        }
        if (s == e || *s == '#') {
            continue;
        }
        v = s;
        while (v < e && !is_blank(*v)) {
            v++;
        }
        ve = v;
        while (v < e && is_blank(*v)) {
            v++;
        }
        if ((size_t)(ve - s) == 4 && memcmp(s, "seed", 4) == 0 && !have_seed &&
            hex_decode(v, (size_t)(e - v), seed, SEED_BYTES) == 0) {
            have_seed = 1;
        } else if ((size_t)(ve - s) == 6 && memcmp(s, "public", 6) == 0 && !have_pub &&
                   hex_decode(v, (size_t)(e - v), pub, sizeof(pub)) == 0) {
            have_pub = 1;
        } else {
            r = fail(PETAL_ECONFIG, err, cap,
                     "%s:%u: expected \"seed <64 hex digits>\" or \"public <64 hex digits>\" "
                     "(is this a petal.key written by `petal keygen`?)",
                     file, lineno);
            goto out;
        }
    }
    if (!have_seed) {
        r = fail(PETAL_ECONFIG, err, cap,
                 "%s: no \"seed\" line: not a petal.key written by `petal keygen`", file);
        goto out;
    }
    crypto_sign_seed_keypair(kp->pk, kp->sk, seed);
    if (have_pub && sodium_memcmp(pub, kp->pk, sizeof(pub)) != 0) {
        r = fail(PETAL_ECONFIG, err, cap,
                 "%s: the public key line does not belong to the seed (the file is corrupt)", file);
        goto out;
    }
out:
    sodium_free(seed);
    return r;
}

int
pt_keypair_load(const char *path, pt_keypair_t **out, char *err, size_t cap)
{
    char file[4096];
    struct stat st;
    pt_keypair_t *kp = NULL;
    char *text = NULL;
    size_t got = 0;
    int fd = -1, r;

    if (path == NULL || out == NULL) {
        return fail(PETAL_EINVAL, err, cap, "no secret key file given");
    }
    if (resolve_path(path, PT_KEY_SECRET_FILE, file, sizeof(file)) != 0) {
        return fail(PETAL_EINVAL, err, cap, "path too long: %s", path);
    }
    fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;

        return fail(errno_code(e), err, cap, "cannot open secret key %s: %s%s", file, strerror(e),
                    e == ENOENT ? " (create one with `petal keygen --out DIR`)" : "");
    }
    if (fstat(fd, &st) != 0) {
        int e = errno;

        r = fail(PETAL_EIO, err, cap, "cannot stat %s: %s", file, strerror(e));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = fail(PETAL_ECONFIG, err, cap, "secret key %s is not a regular file", file);
        goto out;
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        r = fail(PETAL_ECONFIG, err, cap,
                 "secret key %s is accessible by group or others (mode %04o): run chmod 600 %s",
                 file, (unsigned)(st.st_mode & 07777), file);
        goto out;
    }
    if (st.st_size > KEYFILE_MAX) {
        r = fail(PETAL_ECONFIG, err, cap, "secret key %s is too large (%lld bytes) to be a key",
                 file, (long long)st.st_size);
        goto out;
    }
    r = keypair_new(&kp);
    if (r == 0) {
        text = sodium_malloc(KEYFILE_MAX + 1);
    }
    if (r != 0 || text == NULL) {
        r = fail(PETAL_ENOMEM, err, cap, "out of memory loading %s", file);
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, text + got, KEYFILE_MAX + 1 - got);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int e = errno;

            r = fail(PETAL_EIO, err, cap, "cannot read %s: %s", file, strerror(e));
            goto out;
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
        if (got > KEYFILE_MAX) {
            r = fail(PETAL_ECONFIG, err, cap, "secret key %s is too large to be a key", file);
            goto out;
        }
    }
    r = parse_secret(file, text, got, kp, err, cap);
    if (r != 0) {
        goto out;
    }
    sodium_mprotect_noaccess(kp->sk);
    *out = kp;
    kp = NULL;
out:
    if (text != NULL) {
        sodium_free(text);
    }
    pt_keypair_free(kp);
    close(fd);
    return r;
}

/* Writes data[0, n) to path via path.tmp (mode `mode`), replacing path. */
static int
write_file(const char *path, const char *data, size_t n, mode_t mode, char *err, size_t cap)
{
    char tmp[4200];
    size_t done = 0;
    int fd, e;

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
        return fail(PETAL_EINVAL, err, cap, "path too long: %s", path);
    }
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        e = errno;
        return fail(errno_code(e) == PETAL_ENOENT ? PETAL_ENOENT : PETAL_EIO, err, cap,
                    "cannot create %s: %s", tmp, strerror(e));
    }
    if (fchmod(fd, mode) != 0) {
        e = errno;
        goto fail;
    }
    while (done < n) {
        ssize_t w = write(fd, data + done, n - done);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            e = errno;
            goto fail;
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0) {
        e = errno;
        goto fail;
    }
    if (close(fd) != 0) {
        e = errno;
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        e = errno;
        goto fail;
    }
    return 0;
fail:
    if (fd >= 0) {
        close(fd);
    }
    unlink(tmp);
    return fail(PETAL_EIO, err, cap, "cannot write %s: %s", path, strerror(e));
}

int
pt_keypair_save(const pt_keypair_t *kp, const char *dir, const char *name, int overwrite, char *err,
                size_t cap)
{
    char skfile[4096], pkfile[4096];
    char pkhex[PT_KEY_HEX_SIZE], fpr[PT_KEY_FPR_SIZE];
    char pubtext[512];
    char *text = NULL;
    struct stat st;
    uint8_t seed[SEED_BYTES];
    char seedhex[2 * SEED_BYTES + 1];
    int n, r;

    if (kp == NULL || kp->sk == NULL || dir == NULL || dir[0] == '\0') {
        return fail(PETAL_EINVAL, err, cap, "no key pair or directory given");
    }
    if (name == NULL || name[0] == '\0') {
        name = "petal";
    }
    for (const char *p = name; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '#') {
            return fail(PETAL_EINVAL, err, cap, "the key name must be printable, without '#'");
        }
    }
    if ((size_t)snprintf(skfile, sizeof(skfile), "%s/%s", dir, PT_KEY_SECRET_FILE) >=
            sizeof(skfile) ||
        (size_t)snprintf(pkfile, sizeof(pkfile), "%s/%s", dir, PT_KEY_PUBLIC_FILE) >=
            sizeof(pkfile)) {
        return fail(PETAL_EINVAL, err, cap, "path too long: %s", dir);
    }
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT || mkdir(dir, 0700) != 0) {
            int e = errno;

            return fail(PETAL_EIO, err, cap, "cannot create directory %s: %s", dir, strerror(e));
        }
    } else if (!S_ISDIR(st.st_mode)) {
        return fail(PETAL_EINVAL, err, cap, "%s exists and is not a directory", dir);
    }
    if (!overwrite) {
        if (stat(skfile, &st) == 0) {
            return fail(PETAL_EEXIST, err, cap,
                        "%s exists already: not replacing a key (use --force to replace it)",
                        skfile);
        }
        if (stat(pkfile, &st) == 0) {
            return fail(PETAL_EEXIST, err, cap,
                        "%s exists already: not replacing a key (use --force to replace it)",
                        pkfile);
        }
    }
    text = sodium_malloc(KEYFILE_MAX);
    if (text == NULL) {
        return fail(PETAL_ENOMEM, err, cap, "out of memory");
    }
    pt_key_to_hex(kp->pk, pkhex);
    pt_key_fingerprint(kp->pk, fpr);
    sk_open(kp);
    crypto_sign_ed25519_sk_to_seed(seed, kp->sk);
    sk_close(kp);
    sodium_bin2hex(seedhex, sizeof(seedhex), seed, sizeof(seed));
    sodium_memzero(seed, sizeof(seed));
    n = snprintf(text, KEYFILE_MAX,
                 "# Petal secret key (Ed25519), %s. Keep it private: mode 0600, never copied.\n"
                 "# Its public half is %s.\n"
                 "seed %s\n"
                 "public %s\n",
                 fpr, PT_KEY_PUBLIC_FILE, seedhex, pkhex);
    sodium_memzero(seedhex, sizeof(seedhex));
    r = write_file(skfile, text, (size_t)n, 0600, err, cap);
    sodium_free(text);
    if (r != 0) {
        return r;
    }
    n = snprintf(pubtext, sizeof(pubtext),
                 "# Petal public key (Ed25519), %s. Share it: add this line to the peer's key "
                 "list.\n"
                 "%s petal-ed25519 %.200s\n",
                 fpr, pkhex, name);
    return write_file(pkfile, pubtext, (size_t)n, 0644, err, cap);
}
