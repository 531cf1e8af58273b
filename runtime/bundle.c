/* bundle.c - app bundles: pack an app directory, parse and verify untrusted bundles, unpack. */
#include "runtime/bundle.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <msgpack.h>
#include <sodium.h>

#include "runtime/config.h"

_Static_assert(PT_BUNDLE_MAX_PATH == 1024 && PT_BUNDLE_MAX_COMPONENT == 255 &&
                   PT_BUNDLE_MAX_DEPTH == 32 && PT_BUNDLE_MAX_FILES == 1024 &&
                   PT_BUNDLE_MAX_BYTES == ((uint64_t)2 << 30),
               "the error messages below spell these limits out");

#define SHA_HEX 64
#define IGNORE_MAX_BYTES (64 * 1024)
#define IGNORE_MAX_PATTERNS 1024
#define SHOWN 64 /* characters of a path or name shown in a message */

/* ---- Small helpers ------------------------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static void
msgf(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || cap == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

/* A printable, bounded copy of s[0..len) for messages. */
static void
quote(char *dst, size_t cap, const char *s, size_t len)
{
    size_t n = 0;
    size_t i;

    for (i = 0; i < len && i < SHOWN && n + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (i < len && n + 4 <= cap) {
        memcpy(dst + n, "...", 3);
        n += 3;
    }
    dst[n] = '\0';
}

static char *
join(const char *a, const char *b)
{
    size_t la = strlen(a);
    size_t lb = strlen(b);
    char *s = malloc(la + lb + 2);

    if (s != NULL) {
        memcpy(s, a, la);
        s[la] = '/';
        memcpy(s + la + 1, b, lb + 1);
    }
    return s;
}

static const char *
errstr(int e, char *buf, size_t cap)
{
    return strerror_r(e, buf, cap);
}

static void
sha256_hex(const void *data, size_t len, char hex[PT_BUNDLE_HASH_HEX])
{
    unsigned char d[crypto_hash_sha256_BYTES];

    crypto_hash_sha256(d, (const unsigned char *)data, (unsigned long long)len);
    sodium_bin2hex(hex, PT_BUNDLE_HASH_HEX, d, sizeof(d));
}

void
pt_bundle_hash(const void *data, size_t len, char hash_hex[PT_BUNDLE_HASH_HEX])
{
    sha256_hex(data, len, hash_hex);
}

static int
is_hex_n(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

int
pt_bundle_hash_check(const char *s)
{
    if (s == NULL || strnlen(s, SHA_HEX + 1) != SHA_HEX || !is_hex_n(s, SHA_HEX)) {
        return PETAL_EINVAL;
    }
    return 0;
}

/* NULL when p[0..len) is an acceptable bundle path, else the reason it is not. */
static const char *
path_problem(const char *p, size_t len)
{
    size_t depth = 0;
    size_t i = 0;

    if (len == 0) {
        return "it is empty";
    }
    if (len > PT_BUNDLE_MAX_PATH) {
        return "it is longer than 1024 bytes";
    }
    if (p[0] == '/') {
        return "it is absolute";
    }
    while (i <= len) {
        size_t s = i;
        while (i < len && p[i] != '/') {
            unsigned char c = (unsigned char)p[i];
            if (c == 0) {
                return "it contains a NUL byte";
            }
            if (c < 0x20 || c == 0x7f) {
                return "it contains a control character";
            }
            i++;
        }
        size_t clen = i - s;
        if (clen == 0) {
            return "it has an empty component ('//' or a trailing '/')";
        }
        if (clen == 2 && p[s] == '.' && p[s + 1] == '.') {
            return "it has a '..' component";
        }
        if (clen == 1 && p[s] == '.') {
            return "it has a '.' component";
        }
        if (p[s] == '.') {
            return "it has a hidden component (starting with '.')";
        }
        if (clen > PT_BUNDLE_MAX_COMPONENT) {
            return "a component is longer than 255 bytes";
        }
        if (++depth > PT_BUNDLE_MAX_DEPTH) {
            return "it is nested deeper than 32 levels";
        }
        i++; /* the '/' */
    }
    return NULL;
}

/* NULL when s[0..len) is acceptable as an app name or version. */
static const char *
text_problem(const char *s, size_t len, int allow_empty)
{
    if (len == 0 && !allow_empty) {
        return "it is empty";
    }
    if (len > PT_BUNDLE_MAX_TEXT) {
        return "it is longer than 1024 bytes";
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            return "it contains a control character";
        }
    }
    return NULL;
}

/* A relative path from petal.toml without empty and "." components ("./a//b" -> "a/b"). */
static char *
normalize_rel(const char *in)
{
    size_t n = strlen(in);
    char *out = malloc(n + 1);
    size_t o = 0;
    size_t i = 0;

    if (out == NULL) {
        return NULL;
    }
    while (i < n) {
        size_t s = i;
        while (i < n && in[i] != '/') {
            i++;
        }
        size_t clen = i - s;
        if (clen > 0 && !(clen == 1 && in[s] == '.')) {
            if (o > 0) {
                out[o++] = '/';
            }
            memcpy(out + o, in + s, clen);
            o += clen;
        }
        i++;
    }
    out[o] = '\0';
    return out;
}

/* ---- Reading untrusted msgpack ------------------------------------------------------------ */

typedef struct rd {
    const uint8_t *p;
    size_t len;
    size_t pos;
    char *err;
    size_t cap;
    char where[128]; /* "manifest", "file 'a/b.so'", ... */
} rd_t;

__attribute__((format(printf, 3, 4))) static int
bad(rd_t *r, size_t at, const char *fmt, ...)
{
    char what[384];
    va_list ap;

    if (r->err == NULL || r->cap == 0) {
        return PETAL_E_INVALID_BUNDLE;
    }
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(r->err, r->cap, "bundle: %s: %s (at byte %zu of %zu)", r->where, what, at, r->len);
    return PETAL_E_INVALID_BUNDLE;
}

static void
where(rd_t *r, const char *what, const char *path)
{
    char q[SHOWN + 4];

    if (path == NULL) {
        snprintf(r->where, sizeof(r->where), "%s", what);
    } else {
        quote(q, sizeof(q), path, strlen(path));
        snprintf(r->where, sizeof(r->where), "%s '%s'", what, q);
    }
}

static const char *
type_name(uint8_t b)
{
    if (b <= 0x7f || b >= 0xe0 || (b >= 0xcc && b <= 0xd3)) {
        return "an integer";
    }
    if (b <= 0x8f || b == 0xde || b == 0xdf) {
        return "a map";
    }
    if (b <= 0x9f || b == 0xdc || b == 0xdd) {
        return "an array";
    }
    if (b <= 0xbf || (b >= 0xd9 && b <= 0xdb)) {
        return "a string";
    }
    switch (b) {
    case 0xc0:
        return "nil";
    case 0xc2:
    case 0xc3:
        return "a boolean";
    case 0xc4:
    case 0xc5:
    case 0xc6:
        return "binary data";
    case 0xca:
    case 0xcb:
        return "a float";
    case 0xc1:
        return "the reserved byte 0xc1";
    default:
        return "an extension type";
    }
}

static size_t
left(const rd_t *r)
{
    return r->len - r->pos;
}

static int
need(rd_t *r, size_t n, const char *what)
{
    if (left(r) < n) {
        return bad(r, r->pos, "truncated: %s needs %zu bytes, %zu left", what, n, left(r));
    }
    return 0;
}

static uint64_t
be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static int
wrong_type(rd_t *r, const char *expected, const char *what)
{
    return bad(r, r->pos, "expected %s for %s, got %s", expected, what, type_name(r->p[r->pos]));
}

/* A header of `hdr` bytes whose last `hdr - 1` hold a big-endian length; *n gets the length. */
static int
rd_len_header(rd_t *r, size_t hdr, uint64_t *n, const char *what)
{
    int rc = need(r, hdr, what);

    if (rc != 0) {
        return rc;
    }
    *n = be(r->p + r->pos + 1, hdr - 1);
    r->pos += hdr;
    return 0;
}

static int
rd_uint(rd_t *r, uint64_t *v, const char *what)
{
    int rc = need(r, 1, what);
    uint8_t b;

    if (rc != 0) {
        return rc;
    }
    b = r->p[r->pos];
    if (b <= 0x7f) {
        *v = b;
        r->pos++;
        return 0;
    }
    if (b >= 0xcc && b <= 0xcf) {
        return rd_len_header(r, 1 + ((size_t)1 << (b - 0xcc)), v, what);
    }
    if (b >= 0xd0 && b <= 0xd3) { /* a signed encoding of a non-negative value is fine */
        size_t at = r->pos;
        size_t n = (size_t)1 << (b - 0xd0);
        if ((rc = rd_len_header(r, 1 + n, v, what)) != 0) {
            return rc;
        }
        if ((*v >> (8 * n - 1)) & 1) {
            return bad(r, at, "%s is negative", what);
        }
        return 0;
    }
    return wrong_type(r, "a non-negative integer", what);
}

/* A str (or with `bin`, a bin) of at most `max` bytes; *s points into the input. */
static int
rd_bytes(rd_t *r, int bin, uint64_t max, const char **s, size_t *len, const char *what)
{
    int rc = need(r, 1, what);
    size_t at = r->pos;
    uint64_t n;
    uint8_t b;

    if (rc != 0) {
        return rc;
    }
    b = r->p[r->pos];
    if (!bin && b >= 0xa0 && b <= 0xbf) {
        n = b & 0x1fu;
        r->pos++;
    } else if (!bin && b >= 0xd9 && b <= 0xdb) {
        rc = rd_len_header(r, 1 + ((size_t)1 << (b - 0xd9)), &n, what);
    } else if (bin && b >= 0xc4 && b <= 0xc6) {
        rc = rd_len_header(r, 1 + ((size_t)1 << (b - 0xc4)), &n, what);
    } else {
        return wrong_type(r, bin ? "binary data" : "a string", what);
    }
    if (rc != 0) {
        return rc;
    }
    if (n > max) {
        return bad(r, at, "%s is %llu bytes, at most %llu allowed", what, (unsigned long long)n,
                   (unsigned long long)max);
    }
    if ((rc = need(r, (size_t)n, what)) != 0) {
        return rc;
    }
    *s = (const char *)r->p + r->pos;
    *len = (size_t)n;
    r->pos += (size_t)n;
    return 0;
}

static int
rd_str(rd_t *r, uint64_t max, const char **s, size_t *len, const char *what)
{
    return rd_bytes(r, 0, max, s, len, what);
}

/* An array (or with `map`, a map) header; *n is its element (pair) count. */
static int
rd_container(rd_t *r, int map, uint64_t *n, const char *what)
{
    int rc = need(r, 1, what);
    size_t at = r->pos;
    uint8_t b;

    if (rc != 0) {
        return rc;
    }
    b = r->p[r->pos];
    if (!map && b >= 0x90 && b <= 0x9f) {
        *n = b & 0x0fu;
        r->pos++;
    } else if (map && b >= 0x80 && b <= 0x8f) {
        *n = b & 0x0fu;
        r->pos++;
    } else if (!map && (b == 0xdc || b == 0xdd)) {
        rc = rd_len_header(r, b == 0xdc ? 3 : 5, n, what);
    } else if (map && (b == 0xde || b == 0xdf)) {
        rc = rd_len_header(r, b == 0xde ? 3 : 5, n, what);
    } else {
        return wrong_type(r, map ? "a map" : "an array", what);
    }
    if (rc != 0) {
        return rc;
    }
    /* every element takes at least one byte */
    if (*n > left(r) / (map ? 2u : 1u)) {
        return bad(r, at, "truncated: %s claims %llu %s, only %zu bytes left", what,
                   (unsigned long long)*n, map ? "entries" : "elements", left(r));
    }
    return 0;
}

static int
rd_array_exact(rd_t *r, uint64_t expected, const char *what)
{
    size_t at = r->pos;
    uint64_t n;
    int rc = rd_container(r, 0, &n, what);

    if (rc == 0 && n != expected) {
        return bad(r, at, "%s has %llu elements, expected %llu", what, (unsigned long long)n,
                   (unsigned long long)expected);
    }
    return rc;
}

static int
peek_nil(const rd_t *r)
{
    return left(r) > 0 && r->p[r->pos] == 0xc0;
}

/* ---- Parsing ------------------------------------------------------------------------------ */

static char *
dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);

    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int
oom(rd_t *r)
{
    msgf(r->err, r->cap, "bundle: out of memory");
    return PETAL_ENOMEM;
}

static int
rd_text(rd_t *r, int allow_empty, char **dst, const char *what)
{
    size_t at = r->pos;
    const char *s = NULL;
    size_t n = 0;
    const char *why;
    int rc = rd_str(r, PT_BUNDLE_MAX_TEXT, &s, &n, what);

    if (rc != 0) {
        return rc;
    }
    if ((why = text_problem(s, n, allow_empty)) != NULL) {
        return bad(r, at, "%s is not allowed: %s", what, why);
    }
    if ((*dst = dup_n(s, n)) == NULL) {
        return oom(r);
    }
    return 0;
}

static int
rd_path(rd_t *r, char **dst, const char *what)
{
    size_t at = r->pos;
    const char *s;
    size_t n;
    const char *why;
    char q[SHOWN + 4];
    int rc = rd_str(r, PT_BUNDLE_MAX_PATH, &s, &n, what);

    if (rc != 0) {
        return rc;
    }
    if ((why = path_problem(s, n)) != NULL) {
        quote(q, sizeof(q), s, n);
        return bad(r, at, "%s '%s' is not allowed: %s", what, q, why);
    }
    if ((*dst = dup_n(s, n)) == NULL) {
        return oom(r);
    }
    return 0;
}

static int
parse_files(rd_t *r, pt_bundle_t *b)
{
    size_t at = r->pos;
    uint64_t n;
    int rc = rd_container(r, 0, &n, "the file list");

    if (rc != 0) {
        return rc;
    }
    if (n > PT_BUNDLE_MAX_FILES) {
        return bad(r, at, "the manifest lists %llu files, at most 1024 allowed",
                   (unsigned long long)n);
    }
    b->files = calloc(n > 0 ? n : 1, sizeof(*b->files));
    if (b->files == NULL) {
        return oom(r);
    }
    for (size_t i = 0; i < n; i++) {
        pt_bundle_file_t *f = &b->files[i];
        uint64_t mode;
        const char *sha;
        size_t shalen;

        snprintf(r->where, sizeof(r->where), "manifest file %zu", i);
        at = r->pos;
        if ((rc = rd_array_exact(r, 4, "a file entry [path, mode, size, sha256]")) != 0) {
            return rc;
        }
        at = r->pos;
        if ((rc = rd_path(r, &f->path, "path")) != 0) {
            return rc;
        }
        b->nfiles++;
        where(r, "manifest file", f->path);
        if (i > 0) {
            int c = strcmp(b->files[i - 1].path, f->path);
            if (c == 0) {
                return bad(r, at, "the path appears twice");
            }
            if (c > 0) {
                char q[SHOWN + 4];
                quote(q, sizeof(q), b->files[i - 1].path, strlen(b->files[i - 1].path));
                return bad(r, at, "files are not sorted by path (it comes after '%s')", q);
            }
        }
        at = r->pos;
        if ((rc = rd_uint(r, &mode, "mode")) != 0) {
            return rc;
        }
        if (mode != 0644 && mode != 0755) {
            return bad(r, at, "mode %llo is not allowed (0644 or 0755)", (unsigned long long)mode);
        }
        f->mode = (uint32_t)mode;
        at = r->pos;
        if ((rc = rd_uint(r, &f->size, "size")) != 0) {
            return rc;
        }
        if (f->size > PT_BUNDLE_MAX_BYTES) {
            return bad(r, at, "size %llu is over the 2 GiB limit", (unsigned long long)f->size);
        }
        at = r->pos;
        if ((rc = rd_str(r, SHA_HEX, &sha, &shalen, "sha256")) != 0) {
            return rc;
        }
        if (shalen != SHA_HEX || !is_hex_n(sha, shalen)) {
            return bad(r, at, "sha256 must be 64 lowercase hex digits");
        }
        memcpy(f->sha256_hex, sha, SHA_HEX);
        f->sha256_hex[SHA_HEX] = '\0';
    }
    return 0;
}

static int
find_file(const pt_bundle_t *b, const char *path, size_t len)
{
    size_t lo = 0;
    size_t hi = b->nfiles;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *p = b->files[mid].path;
        int c = strncmp(p, path, len);
        if (c == 0) {
            c = p[len] == '\0' ? 0 : 1;
        }
        if (c == 0) {
            return (int)mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return -1;
}

static int
parse_manifest(rd_t *r, pt_bundle_t *b)
{
    static const char *const keys[] = {"name", "version", "client", "server", "files"};
    size_t start = r->pos;
    size_t at = r->pos;
    unsigned seen = 0;
    uint64_t n;
    int rc;

    where(r, "manifest", NULL);
    if ((rc = rd_container(r, 1, &n, "the manifest")) != 0) {
        return rc;
    }
    if (n != 5) {
        return bad(r, at,
                   "the manifest has %llu keys, expected 5 (name, version, client, "
                   "server, files)",
                   (unsigned long long)n);
    }
    for (uint64_t i = 0; i < n; i++) {
        const char *key;
        size_t klen;
        size_t k;
        char q[SHOWN + 4];

        where(r, "manifest", NULL);
        at = r->pos;
        if ((rc = rd_str(r, 32, &key, &klen, "a manifest key")) != 0) {
            return rc;
        }
        for (k = 0; k < 5; k++) {
            if (strlen(keys[k]) == klen && memcmp(keys[k], key, klen) == 0) {
                break;
            }
        }
        quote(q, sizeof(q), key, klen);
        if (k == 5) {
            return bad(r, at,
                       "unknown manifest key '%s' (version 1 knows name, version, "
                       "client, server, files)",
                       q);
        }
        if (seen & (1u << k)) {
            return bad(r, at, "manifest key '%s' appears twice", q);
        }
        seen |= 1u << k;
        switch (k) {
        case 0:
            rc = rd_text(r, 0, &b->name, "the app name");
            break;
        case 1:
            rc = rd_text(r, 1, &b->version, "the app version");
            break;
        case 2:
            rc = rd_path(r, &b->client, "the client");
            break;
        case 3:
            if (peek_nil(r)) {
                r->pos++;
            } else {
                rc = rd_path(r, &b->server, "the server");
            }
            break;
        default:
            rc = parse_files(r, b);
            break;
        }
        if (rc != 0) {
            return rc;
        }
    }
    b->manifest = r->p + start;
    b->manifest_len = r->pos - start;
    crypto_hash_sha256(b->manifest_digest, b->manifest, b->manifest_len);
    return 0;
}

static int
parse_contents(rd_t *r, pt_bundle_t *b)
{
    size_t at = r->pos;
    uint64_t n;
    int rc;

    where(r, "contents", NULL);
    if ((rc = rd_container(r, 0, &n, "the contents")) != 0) {
        return rc;
    }
    if (n != b->nfiles) {
        return bad(r, at, "%llu contents for %zu files in the manifest", (unsigned long long)n,
                   b->nfiles);
    }
    for (size_t i = 0; i < b->nfiles; i++) {
        pt_bundle_file_t *f = &b->files[i];
        const char *data;
        size_t len;
        char hex[PT_BUNDLE_HASH_HEX];

        where(r, "file", f->path);
        at = r->pos;
        if ((rc = rd_bytes(r, 1, PT_BUNDLE_MAX_BYTES, &data, &len, "the content")) != 0) {
            return rc;
        }
        if (len != f->size) {
            return bad(r, at, "the content is %zu bytes, the manifest says %llu", len,
                       (unsigned long long)f->size);
        }
        sha256_hex(data, len, hex);
        if (memcmp(hex, f->sha256_hex, SHA_HEX) != 0) {
            return bad(r, at,
                       "SHA-256 mismatch: the manifest says %.16s..., the content hashes "
                       "to %.16s... (corrupted or tampered)",
                       f->sha256_hex, hex);
        }
        f->data = (const uint8_t *)data;
        b->content_bytes += len;
    }
    return 0;
}

static int
parse_signature(rd_t *r, pt_bundle_t *b)
{
    size_t start = r->pos;
    uint64_t n;
    const char *s;
    size_t len;
    int rc;

    where(r, "signature", NULL);
    if ((rc = need(r, 1, "the signature")) != 0) {
        return rc;
    }
    if (peek_nil(r)) {
        r->pos++;
        return 0;
    }
    if ((rc = rd_container(r, 0, &n, "the signature")) != 0) {
        return rc;
    }
    if (n < 1 || n > 8) {
        return bad(r, start, "expected [scheme, ...] with 1 to 8 elements, got %llu",
                   (unsigned long long)n);
    }
    size_t at = r->pos;
    if ((rc = rd_str(r, sizeof(b->signature_scheme) - 1, &s, &len, "the scheme")) != 0) {
        return rc;
    }
    if (text_problem(s, len, 0) != NULL) {
        return bad(r, at, "the scheme must be a non-empty printable string");
    }
    memcpy(b->signature_scheme, s, len);
    b->signature_scheme[len] = '\0';
    for (uint64_t i = 1; i < n; i++) {
        if ((rc = need(r, 1, "a signature field")) != 0) {
            return rc;
        }
        uint8_t t = r->p[r->pos];
        uint64_t u;
        if (t == 0xc0) {
            r->pos++;
        } else if ((t >= 0xa0 && t <= 0xbf) || (t >= 0xd9 && t <= 0xdb)) {
            rc = rd_str(r, PT_BUNDLE_MAX_SIGNATURE, &s, &len, "a signature field");
        } else if (t >= 0xc4 && t <= 0xc6) {
            rc = rd_bytes(r, 1, PT_BUNDLE_MAX_SIGNATURE, &s, &len, "a signature field");
        } else {
            rc = rd_uint(r, &u, "a signature field");
        }
        if (rc != 0) {
            return rc;
        }
    }
    if (r->pos - start > PT_BUNDLE_MAX_SIGNATURE) {
        return bad(r, start, "the signature is %zu bytes, at most 65536 allowed", r->pos - start);
    }
    b->signature = r->p + start;
    b->signature_len = r->pos - start;
    return 0;
}

static int
parse_top(rd_t *r, pt_bundle_t *b)
{
    size_t at = r->pos;
    uint64_t n;
    uint64_t version;
    const char *tag;
    size_t taglen;
    char q[SHOWN + 4];
    int rc;

    where(r, "header", NULL);
    if ((rc = need(r, 1, "the bundle")) != 0) {
        return rc;
    }
    if (r->p[0] < 0x90 || (r->p[0] > 0x9f && r->p[0] != 0xdc && r->p[0] != 0xdd)) {
        return bad(r, 0, "not a Petal bundle (it does not start with a msgpack array)");
    }
    if ((rc = rd_container(r, 0, &n, "the bundle")) != 0) {
        return rc;
    }
    if (n < 2) {
        return bad(r, at, "not a Petal bundle (an array of %llu elements)", (unsigned long long)n);
    }
    at = r->pos;
    if ((rc = rd_str(r, 64, &tag, &taglen, "the tag")) != 0) {
        return rc;
    }
    if (taglen != strlen(PT_BUNDLE_TAG) || memcmp(tag, PT_BUNDLE_TAG, taglen) != 0) {
        quote(q, sizeof(q), tag, taglen);
        return bad(r, at, "not a Petal bundle (tag '%s', expected '" PT_BUNDLE_TAG "')", q);
    }
    at = r->pos;
    if ((rc = rd_uint(r, &version, "the format version")) != 0) {
        return rc;
    }
    if (version != PT_BUNDLE_VERSION) {
        return bad(r, at,
                   "bundle format version %llu is not supported (this Petal reads "
                   "version 1; upgrade the node or repack the app)",
                   (unsigned long long)version);
    }
    if (n != 5) {
        return bad(r, 0, "a version 1 bundle has 5 elements, this one %llu", (unsigned long long)n);
    }
    if ((rc = parse_manifest(r, b)) != 0 || (rc = parse_contents(r, b)) != 0 ||
        (rc = parse_signature(r, b)) != 0) {
        return rc;
    }
    if (r->pos != r->len) {
        where(r, "bundle", NULL);
        return bad(r, r->pos, "%zu bytes after the end of the bundle", left(r));
    }
    return 0;
}

/* Whole-bundle rules: no path is both a file and a directory; petal.toml, the client and the
 * server are files; petal.toml parses and agrees with the manifest. */
static int
check_semantics(rd_t *r, pt_bundle_t *b)
{
    char e[512];
    char q[SHOWN + 4];
    char q2[SHOWN + 4];
    pt_manifest_t *m = NULL;
    char *client = NULL;
    char *server = NULL;
    int rc = PETAL_E_INVALID_BUNDLE;
    int i;

    for (size_t f = 0; f < b->nfiles; f++) {
        const char *p = b->files[f].path;
        for (const char *s = strchr(p, '/'); s != NULL; s = strchr(s + 1, '/')) {
            if (find_file(b, p, (size_t)(s - p)) >= 0) {
                quote(q, sizeof(q), p, (size_t)(s - p));
                quote(q2, sizeof(q2), p, strlen(p));
                msgf(r->err, r->cap, "bundle: '%s' is both a file and the directory of '%s'", q,
                     q2);
                return PETAL_E_INVALID_BUNDLE;
            }
        }
    }
    i = find_file(b, PT_MANIFEST_FILE, strlen(PT_MANIFEST_FILE));
    if (i < 0) {
        msgf(r->err, r->cap, "bundle: no " PT_MANIFEST_FILE " among its %zu files", b->nfiles);
        return PETAL_E_INVALID_BUNDLE;
    }
    const char *plugins[2] = {b->client, b->server};
    for (int k = 0; k < 2; k++) {
        if (plugins[k] != NULL && find_file(b, plugins[k], strlen(plugins[k])) < 0) {
            quote(q, sizeof(q), plugins[k], strlen(plugins[k]));
            msgf(r->err, r->cap, "bundle: the %s '%s' is not among its files",
                 k == 0 ? "client" : "server", q);
            return PETAL_E_INVALID_BUNDLE;
        }
    }
    const pt_bundle_file_t *toml = &b->files[i];
    rc = pt_manifest_parse((const char *)toml->data, (size_t)toml->size,
                           PT_MANIFEST_FILE " (in the bundle)", "/", &m, e, sizeof(e));
    if (rc == PETAL_ENOMEM) {
        return oom(r);
    }
    if (rc != 0) {
        msgf(r->err, r->cap, "bundle: %s", e);
        return PETAL_E_INVALID_BUNDLE;
    }
    client = normalize_rel(m->client_file);
    server = m->server_file != NULL ? normalize_rel(m->server_file) : NULL;
    if (client == NULL || (m->server_file != NULL && server == NULL)) {
        rc = oom(r);
        goto done;
    }
    rc = PETAL_E_INVALID_BUNDLE;
    const char *field = NULL;
    if (strcmp(m->name, b->name) != 0) {
        field = "name";
    } else if (strcmp(m->version, b->version) != 0) {
        field = "version";
    } else if (strcmp(client, b->client) != 0) {
        field = "client";
    } else if ((server == NULL) != (b->server == NULL) ||
               (server != NULL && strcmp(server, b->server) != 0)) {
        field = "server";
    }
    if (field != NULL) {
        msgf(r->err, r->cap,
             "bundle: the manifest and its " PT_MANIFEST_FILE " disagree on the app's %s", field);
        goto done;
    }
    rc = 0;
done:
    free(client);
    free(server);
    pt_manifest_free(m);
    return rc;
}

void
pt_bundle_free(pt_bundle_t *b)
{
    if (b == NULL) {
        return;
    }
    free(b->name);
    free(b->version);
    free(b->client);
    free(b->server);
    for (size_t i = 0; i < b->nfiles; i++) {
        free(b->files[i].path);
    }
    free(b->files);
    free(b);
}

int
pt_bundle_parse(const void *data, size_t len, pt_bundle_t **out, char *err, size_t cap)
{
    pt_bundle_t *b;
    rd_t r;
    int rc;

    msgf(err, cap, "%s", "");
    if ((data == NULL && len > 0) || out == NULL) {
        msgf(err, cap, "bundle: invalid argument");
        return PETAL_EINVAL;
    }
    if (len > PT_BUNDLE_MAX_BYTES) {
        msgf(err, cap, "bundle: %zu bytes, over the 2 GiB limit", len);
        return PETAL_E_INVALID_BUNDLE;
    }
    memset(&r, 0, sizeof(r));
    r.p = data;
    r.len = len;
    r.err = err;
    r.cap = cap;
    b = calloc(1, sizeof(*b));
    if (b == NULL) {
        return oom(&r);
    }
    if ((rc = parse_top(&r, b)) != 0 || (rc = check_semantics(&r, b)) != 0) {
        pt_bundle_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

int
pt_bundle_verify(const void *data, size_t len, const char *expected_hash_hex, char *err, size_t cap)
{
    pt_bundle_t *b = NULL;
    char hex[PT_BUNDLE_HASH_HEX];
    int rc;

    msgf(err, cap, "%s", "");
    if (data == NULL && len > 0) {
        msgf(err, cap, "bundle: invalid argument");
        return PETAL_EINVAL;
    }
    if (expected_hash_hex != NULL) {
        if (pt_bundle_hash_check(expected_hash_hex) != 0) {
            msgf(err, cap, "bundle: the expected hash is not 64 lowercase hex digits");
            return PETAL_EINVAL;
        }
        sha256_hex(data, len, hex);
        if (strcmp(hex, expected_hash_hex) != 0) {
            msgf(err, cap,
                 "bundle: the %zu bytes hash to %.16s..., expected %.16s... (corrupted in "
                 "transit or a different bundle)",
                 len, hex, expected_hash_hex);
            return PETAL_E_INVALID_BUNDLE;
        }
    }
    rc = pt_bundle_parse(data, len, &b, err, cap);
    pt_bundle_free(b);
    return rc;
}

/* ---- Publisher signatures ----------------------------------------------------------------- */

#define SIG_CONTEXT_LEN (sizeof(PT_BUNDLE_SIG_CONTEXT) - 1)
#define SIG_MESSAGE_LEN (SIG_CONTEXT_LEN + crypto_hash_sha256_BYTES)
/* fixarray(3), fixstr "ed25519", bin8 public key, bin8 signature */
#define SIG_ELEMENT_LEN                                                                            \
    (1 + 1 + (sizeof(PT_BUNDLE_SIG_SCHEME) - 1) + 2 + PT_KEY_PUBLIC_BYTES + 2 + PT_KEY_SIG_BYTES)

_Static_assert(PT_KEY_PUBLIC_BYTES == crypto_sign_PUBLICKEYBYTES &&
                   PT_KEY_SIG_BYTES == crypto_sign_BYTES && PT_KEY_SIG_BYTES < 256 &&
                   sizeof(PT_BUNDLE_SIG_SCHEME) - 1 < 32,
               "the signature element is encoded with fixstr and bin8 headers");

/* What a publisher signs: the context string, then the manifest digest. */
static void
signed_message(const pt_bundle_t *b, uint8_t m[SIG_MESSAGE_LEN])
{
    memcpy(m, PT_BUNDLE_SIG_CONTEXT, SIG_CONTEXT_LEN);
    memcpy(m + SIG_CONTEXT_LEN, b->manifest_digest, crypto_hash_sha256_BYTES);
}

static int
sig_malformed(char *err, size_t cap, const char *why)
{
    msgf(err, cap,
         "bundle: the signature block is malformed: %s (expected [\"" PT_BUNDLE_SIG_SCHEME
         "\", public key: %d bytes, signature: %d bytes]; sign it again with petal build "
         "--sign)",
         why, PT_KEY_PUBLIC_BYTES, PT_KEY_SIG_BYTES);
    return PETAL_E_INVALID_BUNDLE;
}

/* One fixed-size bin field of the signature element. */
static int
sig_bin(rd_t *r, uint8_t *dst, size_t want, const char *what, char *err, size_t cap)
{
    char why[128];
    const char *s;
    size_t len;

    if (left(r) == 0 || r->p[r->pos] < 0xc4 || r->p[r->pos] > 0xc6) {
        snprintf(why, sizeof(why), "the %s is %s, not binary data", what,
                 left(r) == 0 ? "missing" : type_name(r->p[r->pos]));
        return sig_malformed(err, cap, why);
    }
    if (rd_bytes(r, 1, PT_BUNDLE_MAX_SIGNATURE, &s, &len, what) != 0) {
        return sig_malformed(err, cap, "a field is truncated");
    }
    if (len != want) {
        snprintf(why, sizeof(why), "the %s is %zu bytes, not %zu", what, len, want);
        return sig_malformed(err, cap, why);
    }
    memcpy(dst, s, want);
    return 0;
}

/* The fields of an ed25519 signature element: 1 with pk and sig, 0 when unsigned. */
static int
sig_fields(const pt_bundle_t *b, uint8_t pk[PT_KEY_PUBLIC_BYTES], uint8_t sig[PT_KEY_SIG_BYTES],
           char *err, size_t cap)
{
    char q[SHOWN + 4];
    char why[128];
    const char *scheme;
    size_t slen;
    uint64_t n;
    rd_t r;
    int rc;

    if (b->signature == NULL) {
        return 0;
    }
    memset(&r, 0, sizeof(r));
    r.p = b->signature;
    r.len = b->signature_len;
    snprintf(r.where, sizeof(r.where), "signature");
    if (rd_container(&r, 0, &n, "the signature") != 0 || n < 1) {
        return sig_malformed(err, cap, "it is not an array [scheme, ...]");
    }
    if (rd_str(&r, PT_BUNDLE_MAX_SIGNATURE, &scheme, &slen, "the scheme") != 0) {
        return sig_malformed(err, cap, "the scheme is not a string");
    }
    if (slen != sizeof(PT_BUNDLE_SIG_SCHEME) - 1 ||
        memcmp(scheme, PT_BUNDLE_SIG_SCHEME, slen) != 0) {
        quote(q, sizeof(q), scheme, slen);
        msgf(err, cap,
             "bundle: unknown signature scheme '%s' (this Petal verifies \"" PT_BUNDLE_SIG_SCHEME
             "\" signatures; upgrade the node or sign with petal build --sign)",
             q);
        return PETAL_E_INVALID_BUNDLE;
    }
    if (n != 3) {
        snprintf(why, sizeof(why), "it has %llu elements, not 3", (unsigned long long)n);
        return sig_malformed(err, cap, why);
    }
    if ((rc = sig_bin(&r, pk, PT_KEY_PUBLIC_BYTES, "public key", err, cap)) != 0 ||
        (rc = sig_bin(&r, sig, PT_KEY_SIG_BYTES, "signature", err, cap)) != 0) {
        return rc;
    }
    if (r.pos != r.len) {
        return sig_malformed(err, cap, "bytes follow the signature");
    }
    return 1;
}

int
pt_bundle_signer(const pt_bundle_t *b, uint8_t pk[PT_KEY_PUBLIC_BYTES], char *err, size_t cap)
{
    uint8_t key[PT_KEY_PUBLIC_BYTES];
    uint8_t sig[PT_KEY_SIG_BYTES];
    int rc;

    msgf(err, cap, "%s", "");
    if (b == NULL || pk == NULL) {
        msgf(err, cap, "bundle: invalid argument");
        return PETAL_EINVAL;
    }
    rc = sig_fields(b, key, sig, err, cap);
    if (rc == 1) {
        memcpy(pk, key, sizeof(key));
    }
    return rc;
}

/* " (in FILE)" naming a key list loaded from a file, "" otherwise. */
static void
list_origin(const pt_keylist_t *l, char *buf, size_t cap)
{
    if (l->path != NULL && l->path[0] != '\0') {
        snprintf(buf, cap, " (not in %s)", l->path);
    } else {
        snprintf(buf, cap, "%s", "");
    }
}

static int
check_signature(const pt_bundle_t *b, const pt_keylist_t *trusted,
                uint8_t signer[PT_KEY_PUBLIC_BYTES], char *err, size_t cap)
{
    uint8_t pk[PT_KEY_PUBLIC_BYTES];
    uint8_t sig[PT_KEY_SIG_BYTES];
    uint8_t m[SIG_MESSAGE_LEN];
    char fpr[PT_KEY_FPR_SIZE];
    char origin[300];
    int rc;

    if (pt_keys_init() != 0) {
        msgf(err, cap, "bundle: cannot initialise libsodium");
        return PETAL_ENOMEM;
    }
    rc = sig_fields(b, pk, sig, err, cap);
    if (rc < 0) {
        return rc;
    }
    if (rc == 0) {
        if (trusted == NULL) {
            return 0;
        }
        msgf(err, cap,
             "bundle is not signed (this node runs only apps signed by a trusted publisher; "
             "sign the bundle with petal build --sign KEYFILE)");
        return PETAL_E_INVALID_BUNDLE;
    }
    signed_message(b, m);
    if (crypto_sign_verify_detached(sig, m, sizeof(m), pk) != 0) {
        msgf(err, cap,
             "bundle: signature does not match the manifest (the bundle was changed after "
             "signing)");
        return PETAL_E_INVALID_BUNDLE;
    }
    if (trusted != NULL && !pt_keylist_contains(trusted, pk)) {
        pt_key_fingerprint(pk, fpr);
        list_origin(trusted, origin, sizeof(origin));
        msgf(err, cap, "bundle signed by %s, which is not a trusted publisher%s", fpr, origin);
        return PETAL_E_INVALID_BUNDLE;
    }
    if (signer != NULL) {
        memcpy(signer, pk, sizeof(pk));
    }
    return 1;
}

int
pt_bundle_verify_signature(const pt_bundle_t *b, const pt_keylist_t *trusted,
                           uint8_t signer_pk[PT_KEY_PUBLIC_BYTES], char *err, size_t cap)
{
    msgf(err, cap, "%s", "");
    if (b == NULL) {
        msgf(err, cap, "bundle: invalid argument");
        return PETAL_EINVAL;
    }
    return check_signature(b, trusted, signer_pk, err, cap);
}

int
pt_bundle_sign(const void *data, size_t len, const pt_keypair_t *kp, pt_buf_t **out, char *err,
               size_t cap)
{
    uint8_t m[SIG_MESSAGE_LEN];
    uint8_t sig[PT_KEY_SIG_BYTES];
    pt_bundle_t *b = NULL;
    pt_buf_t *buf;
    uint8_t *p;
    size_t head;
    int rc;

    msgf(err, cap, "%s", "");
    if ((data == NULL && len > 0) || kp == NULL || out == NULL) {
        msgf(err, cap, "sign: invalid argument");
        return PETAL_EINVAL;
    }
    if ((rc = pt_bundle_parse(data, len, &b, err, cap)) != 0) {
        return rc;
    }
    /* Everything before the signature element stays as it is. */
    head = b->signature != NULL ? (size_t)(b->signature - (const uint8_t *)data) : len - 1;
    signed_message(b, m);
    pt_bundle_free(b);
    if (pt_keypair_sign(kp, m, sizeof(m), sig) != 0) {
        msgf(err, cap, "sign: the key pair cannot sign (no secret key)");
        return PETAL_EINVAL;
    }
    if (head + SIG_ELEMENT_LEN > PT_BUNDLE_MAX_BYTES) {
        msgf(err, cap, "sign: the signed bundle would be over the 2 GiB limit");
        return PETAL_EMSGSIZE;
    }
    buf = pt_buf_alloc(head + SIG_ELEMENT_LEN, 0);
    if (buf == NULL) {
        msgf(err, cap, "sign: out of memory");
        return PETAL_ENOMEM;
    }
    p = pt_buf_data(buf);
    memcpy(p, data, head);
    p += head;
    *p++ = 0x93; /* fixarray of 3 */
    *p++ = (uint8_t)(0xa0 | (sizeof(PT_BUNDLE_SIG_SCHEME) - 1));
    memcpy(p, PT_BUNDLE_SIG_SCHEME, sizeof(PT_BUNDLE_SIG_SCHEME) - 1);
    p += sizeof(PT_BUNDLE_SIG_SCHEME) - 1;
    *p++ = 0xc4;
    *p++ = PT_KEY_PUBLIC_BYTES;
    memcpy(p, kp->pk, PT_KEY_PUBLIC_BYTES);
    p += PT_KEY_PUBLIC_BYTES;
    *p++ = 0xc4;
    *p++ = PT_KEY_SIG_BYTES;
    memcpy(p, sig, PT_KEY_SIG_BYTES);
    *out = buf;
    return 0;
}

/* ---- Packing ------------------------------------------------------------------------------ */

typedef struct entry {
    char *rel;
    uint64_t size;
    uint32_t mode;
} entry_t;

typedef struct pattern {
    char *glob;
    int dir_only;
    int anchored; /* matched against the whole relative path */
} pattern_t;

typedef struct walk {
    const char *root;
    char *root_real;
    entry_t *v;
    size_t n;
    size_t capv;
    uint64_t total;
    pattern_t *pat;
    size_t npat;
    size_t cappat;
    const char *forced[3]; /* petal.toml, client, server: always packed */
    char *err;
    size_t cap;
} walk_t;

static const char *const default_ignores[] = {
    "CMakeFiles/",
    "CMakeCache.txt",
    "cmake_install.cmake",
    "CTestTestfile.cmake",
    "Makefile",
    "*.ninja",
    "*.o",
};

__attribute__((format(printf, 3, 4))) static int
wfail(walk_t *w, int rc, const char *fmt, ...)
{
    char what[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    msgf(w->err, w->cap, "cannot pack %s: %s", w->root, what);
    return rc;
}

static int
wfail_errno(walk_t *w, int e, const char *what, const char *rel)
{
    char eb[128];
    char q[SHOWN + 4];

    quote(q, sizeof(q), rel, strlen(rel));
    return wfail(w, -e, "%s '%s': %s", what, q, errstr(e, eb, sizeof(eb)));
}

static int
add_pattern(walk_t *w, const char *s, size_t len)
{
    pattern_t p;

    memset(&p, 0, sizeof(p));
    if (len > 0 && s[len - 1] == '/') {
        p.dir_only = 1;
        len--;
    }
    if (len > 0 && s[0] == '/') {
        p.anchored = 1;
        s++;
        len--;
    }
    if (len == 0) {
        return 0;
    }
    if (memchr(s, '/', len) != NULL) {
        p.anchored = 1;
    }
    if (w->npat == w->cappat) {
        size_t n = w->cappat != 0 ? w->cappat * 2 : 16;
        pattern_t *np = realloc(w->pat, n * sizeof(*np));
        if (np == NULL) {
            return wfail(w, PETAL_ENOMEM, "out of memory");
        }
        w->pat = np;
        w->cappat = n;
    }
    if ((p.glob = dup_n(s, len)) == NULL) {
        return wfail(w, PETAL_ENOMEM, "out of memory");
    }
    w->pat[w->npat++] = p;
    return 0;
}

/* The default patterns, then those of APP_DIR/.petalignore when it exists. */
static int
load_ignores(walk_t *w)
{
    char *path = NULL;
    char *text = NULL;
    ssize_t got = 0;
    int fd = -1;
    int rc = 0;

    for (size_t i = 0; i < sizeof(default_ignores) / sizeof(default_ignores[0]); i++) {
        if ((rc = add_pattern(w, default_ignores[i], strlen(default_ignores[i]))) != 0) {
            return rc;
        }
    }
    if ((path = join(w->root, PT_BUNDLE_IGNORE_FILE)) == NULL ||
        (text = malloc(IGNORE_MAX_BYTES + 1)) == NULL) {
        rc = wfail(w, PETAL_ENOMEM, "out of memory");
        goto done;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = errno == ENOENT ? 0 : wfail_errno(w, errno, "cannot read", PT_BUNDLE_IGNORE_FILE);
        goto done;
    }
    for (;;) {
        ssize_t r = read(fd, text + got, (size_t)(IGNORE_MAX_BYTES + 1 - got));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            rc = wfail_errno(w, errno, "cannot read", PT_BUNDLE_IGNORE_FILE);
            goto done;
        }
        if (r == 0) {
            break;
        }
        got += r;
        if (got > IGNORE_MAX_BYTES) {
            rc = wfail(w, PETAL_ECONFIG, PT_BUNDLE_IGNORE_FILE " is larger than 64 KiB");
            goto done;
        }
    }
    int line = 0;
    for (char *s = text, *end = text + got; s < end;) {
        char *nl = memchr(s, '\n', (size_t)(end - s));
        char *e = nl != NULL ? nl : end;
        line++;
        while (s < e && (*s == ' ' || *s == '\t')) {
            s++;
        }
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) {
            e--;
        }
        if (e > s && s[0] != '#') {
            if (s[0] == '!') {
                rc = wfail(w, PETAL_ECONFIG,
                           PT_BUNDLE_IGNORE_FILE ":%d: negated patterns ('!') are not supported",
                           line);
                goto done;
            }
            if (memchr(s, '\0', (size_t)(e - s)) != NULL || e - s > PT_BUNDLE_MAX_PATH ||
                w->npat >= IGNORE_MAX_PATTERNS) {
                rc = wfail(w, PETAL_ECONFIG,
                           PT_BUNDLE_IGNORE_FILE ":%d: pattern too long, NUL byte or more than "
                                                 "1024 patterns",
                           line);
                goto done;
            }
            if ((rc = add_pattern(w, s, (size_t)(e - s))) != 0) {
                goto done;
            }
        }
        s = nl != NULL ? nl + 1 : end;
    }
done:
    if (fd >= 0) {
        close(fd);
    }
    free(text);
    free(path);
    return rc;
}

static int
ignored(const walk_t *w, const char *rel, int is_dir)
{
    const char *base = strrchr(rel, '/');

    base = base != NULL ? base + 1 : rel;
    for (size_t i = 0; i < w->npat; i++) {
        const pattern_t *p = &w->pat[i];
        if (p->dir_only && !is_dir) {
            continue;
        }
        if (p->anchored ? fnmatch(p->glob, rel, FNM_PATHNAME) == 0
                        : fnmatch(p->glob, base, 0) == 0) {
            return 1;
        }
    }
    return 0;
}

/* True for a file petal.toml names, or a directory on the way to one. */
static int
forced(const walk_t *w, const char *rel)
{
    size_t len = strlen(rel);

    for (int i = 0; i < 3; i++) {
        const char *f = w->forced[i];
        if (f != NULL && strncmp(f, rel, len) == 0 && (f[len] == '\0' || f[len] == '/')) {
            return 1;
        }
    }
    return 0;
}

static int
add_entry(walk_t *w, const char *rel, const struct stat *st)
{
    const char *why = path_problem(rel, strlen(rel));
    char q[SHOWN + 4];
    entry_t *e;

    quote(q, sizeof(q), rel, strlen(rel));
    if (why != NULL) {
        return wfail(w, PETAL_ECONFIG,
                     "'%s' cannot go in a bundle: %s (list it in " PT_BUNDLE_IGNORE_FILE
                     " to leave it out)",
                     q, why);
    }
    if (w->n >= PT_BUNDLE_MAX_FILES) {
        return wfail(w, PETAL_EMSGSIZE,
                     "more than 1024 files (list what nodes do not need in " PT_BUNDLE_IGNORE_FILE
                     ")");
    }
    w->total += (uint64_t)st->st_size;
    if ((uint64_t)st->st_size > PT_BUNDLE_MAX_BYTES || w->total > PT_BUNDLE_MAX_BYTES) {
        return wfail(w, PETAL_EMSGSIZE, "the files add up to more than 2 GiB (at '%s')", q);
    }
    if (w->n == w->capv) {
        size_t n = w->capv != 0 ? w->capv * 2 : 32;
        entry_t *nv = realloc(w->v, n * sizeof(*nv));
        if (nv == NULL) {
            return wfail(w, PETAL_ENOMEM, "out of memory");
        }
        w->v = nv;
        w->capv = n;
    }
    e = &w->v[w->n];
    if ((e->rel = strdup(rel)) == NULL) {
        return wfail(w, PETAL_ENOMEM, "out of memory");
    }
    e->size = (uint64_t)st->st_size;
    e->mode = (st->st_mode & 0111) != 0 ? 0755 : 0644;
    if ((w->forced[1] != NULL && strcmp(rel, w->forced[1]) == 0) ||
        (w->forced[2] != NULL && strcmp(rel, w->forced[2]) == 0)) {
        e->mode = 0755;
    }
    w->n++;
    return 0;
}

static int walk_dir(walk_t *w, const char *rel_dir, int depth);

/* One directory entry `rel` (not hidden). */
static int
walk_entry(walk_t *w, const char *rel, int depth)
{
    char *full = join(w->root, rel);
    char *real = NULL;
    char q[SHOWN + 4];
    char q2[SHOWN + 4];
    struct stat st;
    int keep = forced(w, rel);
    int rc = 0;

    quote(q, sizeof(q), rel, strlen(rel));
    if (full == NULL) {
        return wfail(w, PETAL_ENOMEM, "out of memory");
    }
    if (lstat(full, &st) != 0) {
        rc = wfail_errno(w, errno, "cannot stat", rel);
        goto done;
    }
    if (S_ISLNK(st.st_mode)) {
        size_t rl = strlen(w->root_real);
        if (!keep && (ignored(w, rel, 0) || ignored(w, rel, 1))) {
            goto done; /* left out before looking where it points */
        }
        real = realpath(full, NULL);
        if (real == NULL) {
            rc = wfail(w, PETAL_ECONFIG, "'%s' is a broken symlink", q);
            goto done;
        }
        if (!(strncmp(real, w->root_real, rl) == 0 &&
              (real[rl] == '/' || strcmp(w->root_real, "/") == 0))) {
            quote(q2, sizeof(q2), real, strlen(real));
            rc = wfail(w, PETAL_ECONFIG,
                       "'%s' is a symlink to '%s', outside the app directory (copy the file in "
                       "instead)",
                       q, q2);
            goto done;
        }
        if (stat(real, &st) != 0) {
            rc = wfail_errno(w, errno, "cannot stat", rel);
            goto done;
        }
        if (S_ISDIR(st.st_mode)) {
            if (!keep && ignored(w, rel, 1)) {
                goto done;
            }
            rc = wfail(w, PETAL_ECONFIG,
                       "'%s' is a symlink to a directory (bundles hold files and real "
                       "directories only)",
                       q);
            goto done;
        }
    }
    if (S_ISDIR(st.st_mode)) {
        if (!keep && ignored(w, rel, 1)) {
            goto done;
        }
        if (depth + 1 >= PT_BUNDLE_MAX_DEPTH) {
            rc = wfail(w, PETAL_ECONFIG, "'%s' is nested deeper than 32 levels", q);
            goto done;
        }
        rc = walk_dir(w, rel, depth + 1);
    } else if (!keep && ignored(w, rel, 0)) {
        rc = 0;
    } else if (S_ISREG(st.st_mode)) {
        rc = add_entry(w, rel, &st);
    } else {
        rc = wfail(w, PETAL_ECONFIG, "'%s' is not a regular file or directory", q);
    }
done:
    free(real);
    free(full);
    return rc;
}

static int
walk_dir(walk_t *w, const char *rel_dir, int depth)
{
    char *abs = rel_dir[0] != '\0' ? join(w->root, rel_dir) : strdup(w->root);
    DIR *d = NULL;
    struct dirent *de;
    int rc = 0;

    if (abs == NULL) {
        return wfail(w, PETAL_ENOMEM, "out of memory");
    }
    d = opendir(abs);
    if (d == NULL) {
        rc = wfail_errno(w, errno, "cannot read directory", rel_dir[0] != '\0' ? rel_dir : ".");
        goto done;
    }
    for (;;) {
        errno = 0;
        de = readdir(d);
        if (de == NULL) {
            if (errno != 0) {
                rc = wfail_errno(w, errno, "cannot read directory",
                                 rel_dir[0] != '\0' ? rel_dir : ".");
            }
            break;
        }
        if (de->d_name[0] == '.') {
            continue; /* ".", ".." and hidden files */
        }
        char *rel = rel_dir[0] != '\0' ? join(rel_dir, de->d_name) : strdup(de->d_name);
        if (rel == NULL) {
            rc = wfail(w, PETAL_ENOMEM, "out of memory");
            break;
        }
        rc = walk_entry(w, rel, depth);
        free(rel);
        if (rc != 0) {
            break;
        }
    }
done:
    if (d != NULL) {
        closedir(d);
    }
    free(abs);
    return rc;
}

static int
cmp_entry(const void *a, const void *b)
{
    return strcmp(((const entry_t *)a)->rel, ((const entry_t *)b)->rel);
}

/* Reads exactly `size` bytes of root/rel into dst; the file must not have changed size. */
static int
read_exact(walk_t *w, const char *rel, uint8_t *dst, uint64_t size)
{
    char *full = join(w->root, rel);
    char q[SHOWN + 4];
    struct stat st;
    uint64_t got = 0;
    uint8_t extra;
    int fd = -1;
    int rc = 0;

    quote(q, sizeof(q), rel, strlen(rel));
    if (full == NULL) {
        return wfail(w, PETAL_ENOMEM, "out of memory");
    }
    fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = wfail_errno(w, errno, "cannot read", rel);
        goto done;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != size) {
        rc = wfail(w, PETAL_EIO, "'%s' changed while packing; try again", q);
        goto done;
    }
    while (got < size) {
        size_t chunk = size - got > ((size_t)1 << 30) ? ((size_t)1 << 30) : (size_t)(size - got);
        ssize_t r = read(fd, dst + got, chunk);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            rc = wfail_errno(w, errno, "cannot read", rel);
            goto done;
        }
        if (r == 0) {
            rc = wfail(w, PETAL_EIO, "'%s' shrank while packing; try again", q);
            goto done;
        }
        got += (uint64_t)r;
    }
    if (read(fd, &extra, 1) > 0) {
        rc = wfail(w, PETAL_EIO, "'%s' grew while packing; try again", q);
    }
done:
    if (fd >= 0) {
        close(fd);
    }
    free(full);
    return rc;
}

static size_t
bin_header(uint8_t *h, uint64_t n)
{
    if (n < 256) {
        h[0] = 0xc4;
        h[1] = (uint8_t)n;
        return 2;
    }
    if (n < 65536) {
        h[0] = 0xc5;
        h[1] = (uint8_t)(n >> 8);
        h[2] = (uint8_t)n;
        return 3;
    }
    h[0] = 0xc6;
    for (int i = 0; i < 4; i++) {
        h[1 + i] = (uint8_t)(n >> (24 - 8 * i));
    }
    return 5;
}

#define PK(call)                                                                                   \
    do {                                                                                           \
        if ((call) != 0) {                                                                         \
            goto nomem;                                                                            \
        }                                                                                          \
    } while (0)

static int
pk_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);

    if (msgpack_pack_str(pk, n) != 0 || msgpack_pack_str_body(pk, s, n) != 0) {
        return -1;
    }
    return 0;
}

/* Encodes the walked files of manifest `m` into one buffer. */
static int
encode(walk_t *w, const pt_manifest_t *m, const char *client, const char *server, pt_buf_t **out)
{
    static const char zeros[SHA_HEX] = {0};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    size_t *sha_off = NULL;
    pt_buf_t *buf = NULL;
    uint64_t total;
    uint8_t *p;
    size_t off;
    int rc;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    sha_off = calloc(w->n > 0 ? w->n : 1, sizeof(*sha_off));
    if (sha_off == NULL) {
        goto nomem;
    }
    PK(msgpack_pack_array(&pk, 5));
    PK(pk_str(&pk, PT_BUNDLE_TAG));
    PK(msgpack_pack_uint32(&pk, PT_BUNDLE_VERSION));
    PK(msgpack_pack_map(&pk, 5));
    PK(pk_str(&pk, "name"));
    PK(pk_str(&pk, m->name));
    PK(pk_str(&pk, "version"));
    PK(pk_str(&pk, m->version));
    PK(pk_str(&pk, "client"));
    PK(pk_str(&pk, client));
    PK(pk_str(&pk, "server"));
    PK(server != NULL ? pk_str(&pk, server) : msgpack_pack_nil(&pk));
    PK(pk_str(&pk, "files"));
    PK(msgpack_pack_array(&pk, w->n));
    for (size_t i = 0; i < w->n; i++) {
        PK(msgpack_pack_array(&pk, 4));
        PK(pk_str(&pk, w->v[i].rel));
        PK(msgpack_pack_uint32(&pk, w->v[i].mode));
        PK(msgpack_pack_uint64(&pk, w->v[i].size));
        PK(msgpack_pack_str(&pk, SHA_HEX));
        sha_off[i] = sb.size;
        PK(msgpack_pack_str_body(&pk, zeros, SHA_HEX)); /* filled in below */
    }
    PK(msgpack_pack_array(&pk, w->n));

    total = sb.size + 1; /* the nil signature */
    for (size_t i = 0; i < w->n; i++) {
        uint8_t h[5];
        total += bin_header(h, w->v[i].size) + w->v[i].size;
    }
    if (total > PT_BUNDLE_MAX_BYTES) {
        rc = wfail(w, PETAL_EMSGSIZE, "the bundle would be %llu bytes, over the 2 GiB limit",
                   (unsigned long long)total);
        goto fail;
    }
    buf = pt_buf_alloc((size_t)total, 0);
    if (buf == NULL) {
        goto nomem;
    }
    p = pt_buf_data(buf);
    memcpy(p, sb.data, sb.size);
    off = sb.size;
    for (size_t i = 0; i < w->n; i++) {
        char hex[PT_BUNDLE_HASH_HEX];
        off += bin_header(p + off, w->v[i].size);
        if ((rc = read_exact(w, w->v[i].rel, p + off, w->v[i].size)) != 0) {
            goto fail;
        }
        sha256_hex(p + off, (size_t)w->v[i].size, hex);
        memcpy(p + sha_off[i], hex, SHA_HEX);
        off += (size_t)w->v[i].size;
    }
    p[off++] = 0xc0;
    if (off != total) { /* internal invariant: the size computation matches the layout */
        abort();
    }
    msgpack_sbuffer_destroy(&sb);
    free(sha_off);
    *out = buf;
    return 0;

nomem:
    rc = wfail(w, PETAL_ENOMEM, "out of memory");
fail:
    if (buf != NULL) {
        pt_buf_release(buf);
    }
    msgpack_sbuffer_destroy(&sb);
    free(sha_off);
    return rc;
}

int
pt_bundle_pack(const char *app_dir, pt_buf_t **out, char hash_hex[PT_BUNDLE_HASH_HEX], char *err,
               size_t cap)
{
    pt_manifest_t *m = NULL;
    pt_buf_t *buf = NULL;
    char *client = NULL;
    char *server = NULL;
    const char *why;
    walk_t w;
    int rc;

    msgf(err, cap, "%s", "");
    if (app_dir == NULL || app_dir[0] == '\0' || out == NULL) {
        msgf(err, cap, "cannot pack: invalid argument");
        return PETAL_EINVAL;
    }
    memset(&w, 0, sizeof(w));
    w.root = app_dir;
    w.err = err;
    w.cap = cap;
    if ((rc = pt_manifest_load(app_dir, &m, err, cap)) != 0) {
        return rc;
    }
    if ((why = text_problem(m->name, strlen(m->name), 0)) != NULL) {
        rc = wfail(&w, PETAL_ECONFIG, PT_MANIFEST_FILE ": the app name is not allowed: %s", why);
        goto done;
    }
    if ((why = text_problem(m->version, strlen(m->version), 1)) != NULL) {
        rc = wfail(&w, PETAL_ECONFIG, PT_MANIFEST_FILE ": the version is not allowed: %s", why);
        goto done;
    }
    client = normalize_rel(m->client_file);
    server = m->server_file != NULL ? normalize_rel(m->server_file) : NULL;
    if (client == NULL || (m->server_file != NULL && server == NULL)) {
        rc = wfail(&w, PETAL_ENOMEM, "out of memory");
        goto done;
    }
    const char *plugins[2] = {client, server};
    for (int k = 0; k < 2; k++) {
        if (plugins[k] != NULL && (why = path_problem(plugins[k], strlen(plugins[k]))) != NULL) {
            rc = wfail(&w, PETAL_ECONFIG, PT_MANIFEST_FILE ": the %s path is not allowed: %s",
                       k == 0 ? "client" : "server", why);
            goto done;
        }
    }
    w.forced[0] = PT_MANIFEST_FILE;
    w.forced[1] = client;
    w.forced[2] = server;
    w.root_real = realpath(app_dir, NULL);
    if (w.root_real == NULL) {
        rc = wfail_errno(&w, errno, "cannot resolve", ".");
        goto done;
    }
    if ((rc = load_ignores(&w)) != 0 || (rc = walk_dir(&w, "", 0)) != 0) {
        goto done;
    }
    if (w.n > 0) {
        qsort(w.v, w.n, sizeof(*w.v), cmp_entry);
    }
    for (int k = 0; k < 3; k++) {
        const char *f = w.forced[k];
        int found = 0;
        for (size_t i = 0; f != NULL && i < w.n && !found; i++) {
            found = strcmp(w.v[i].rel, f) == 0;
        }
        if (f != NULL && !found) {
            char q[SHOWN + 4];
            quote(q, sizeof(q), f, strlen(f));
            rc =
                wfail(&w, PETAL_ECONFIG,
                      "%s/%s is not a file (" PT_MANIFEST_FILE " names it as the %s%s)", app_dir, q,
                      k == 0   ? "manifest"
                      : k == 1 ? "client"
                               : "server",
                      k == 0 ? "" : "; build the plugin first?");
            goto done;
        }
    }
    if ((rc = encode(&w, m, client, server, &buf)) != 0) {
        goto done;
    }
    if (hash_hex != NULL) {
        sha256_hex(pt_buf_data(buf), pt_buf_len(buf), hash_hex);
    }
    *out = buf;
done:
    for (size_t i = 0; i < w.n; i++) {
        free(w.v[i].rel);
    }
    free(w.v);
    for (size_t i = 0; i < w.npat; i++) {
        free(w.pat[i].glob);
    }
    free(w.pat);
    free(w.root_real);
    free(client);
    free(server);
    pt_manifest_free(m);
    return rc;
}

/* ---- Unpacking and the cache -------------------------------------------------------------- */

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
rm_tree(const char *path)
{
    nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int
fsync_path(const char *path, int flags)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | flags);
    int rc = 0;

    if (fd < 0) {
        return -errno;
    }
    if (fsync(fd) != 0 && errno != EINVAL) {
        rc = -errno;
    }
    close(fd);
    return rc;
}

static int
fsync_dir_cb(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_DP || type == FTW_D) {
        return fsync_path(path, O_DIRECTORY) != 0 ? 1 : 0;
    }
    return 0;
}

static int
write_all(int fd, const uint8_t *p, uint64_t n)
{
    while (n > 0) {
        size_t chunk = n > ((uint64_t)1 << 30) ? ((size_t)1 << 30) : (size_t)n;
        ssize_t r = write(fd, p, chunk);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            return -errno;
        }
        p += r;
        n -= (uint64_t)r;
    }
    return 0;
}

/* Writes one file (and its parent directories) below `dir`. */
static int
write_file(const char *dir, const char *rel, uint32_t mode, const uint8_t *data, uint64_t size,
           char *err, size_t cap)
{
    char eb[128];
    char q[SHOWN + 4];
    char *full = join(dir, rel);
    int fd = -1;
    int rc = 0;

    quote(q, sizeof(q), rel, strlen(rel));
    if (full == NULL) {
        msgf(err, cap, "unpack: out of memory");
        return PETAL_ENOMEM;
    }
    for (char *s = strchr(full + strlen(dir) + 1, '/'); s != NULL; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdir(full, 0755) != 0 && errno != EEXIST) {
            rc = -errno;
            *s = '/';
            goto fail;
        }
        *s = '/';
    }
    fd = open(full, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        goto fail;
    }
    if ((rc = write_all(fd, data, size)) != 0) {
        goto fail;
    }
    if (fchmod(fd, (mode_t)mode) != 0 || fsync(fd) != 0) {
        rc = -errno;
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = -errno;
        goto fail;
    }
    free(full);
    return 0;
fail:
    msgf(err, cap, "unpack: cannot write %s/%s: %s", dir, q, errstr(-rc, eb, sizeof(eb)));
    if (fd >= 0) {
        close(fd);
    }
    free(full);
    return rc;
}

/* The files, the verified signer (when there is one), then the marker, all synced. */
static int
write_tree(const char *dir, const pt_bundle_t *b, const char *hash, const uint8_t *signer,
           char *err, size_t cap)
{
    char line[PT_BUNDLE_HASH_HEX + 1];
    char eb[128];
    int rc;

    for (size_t i = 0; i < b->nfiles; i++) {
        const pt_bundle_file_t *f = &b->files[i];
        if ((rc = write_file(dir, f->path, f->mode, f->data, f->size, err, cap)) != 0) {
            return rc;
        }
    }
    if (signer != NULL) {
        pt_key_to_hex(signer, line);
        line[PT_KEY_HEX_SIZE - 1] = '\n';
        if ((rc = write_file(dir, PT_BUNDLE_SIGNER_FILE, 0644, (const uint8_t *)line,
                             PT_KEY_HEX_SIZE, err, cap)) != 0) {
            return rc;
        }
    }
    snprintf(line, sizeof(line), "%s\n", hash);
    if ((rc = write_file(dir, PT_BUNDLE_MARKER, 0644, (const uint8_t *)line, strlen(line), err,
                         cap)) != 0) {
        return rc;
    }
    rc = nftw(dir, fsync_dir_cb, 16, FTW_DEPTH | FTW_PHYS);
    if (rc != 0) {
        rc = rc < 0 ? -errno : PETAL_EIO;
        msgf(err, cap, "unpack: cannot sync the files in %s: %s", dir,
             rc == PETAL_EIO ? "fsync failed" : errstr(-rc, eb, sizeof(eb)));
        return rc;
    }
    return 0;
}

/* 1 when dir holds a complete unpack of bundle `hash`. */
static int
is_complete(const char *dir, const char *hash)
{
    char *marker = join(dir, PT_BUNDLE_MARKER);
    char buf[PT_BUNDLE_HASH_HEX + 2];
    ssize_t n = -1;
    int fd;

    if (marker == NULL) {
        return 0;
    }
    fd = open(marker, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    free(marker);
    if (fd < 0) {
        return 0;
    }
    do {
        n = read(fd, buf, sizeof(buf));
    } while (n < 0 && errno == EINTR);
    close(fd);
    return n == SHA_HEX + 1 && memcmp(buf, hash, SHA_HEX) == 0 && buf[SHA_HEX] == '\n';
}

/* Splits dest into its parent directory and last component (trailing slashes dropped). */
static int
split_dest(const char *dest, char **parent, char **base)
{
    size_t n = strlen(dest);
    const char *slash;

    while (n > 1 && dest[n - 1] == '/') {
        n--;
    }
    *parent = NULL;
    *base = NULL;
    char *d = dup_n(dest, n);
    if (d == NULL) {
        return PETAL_ENOMEM;
    }
    slash = strrchr(d, '/');
    if (slash == NULL) {
        *parent = strdup(".");
        *base = d;
    } else {
        *base = strdup(slash + 1);
        *parent = slash == d ? strdup("/") : dup_n(d, (size_t)(slash - d));
        free(d);
    }
    if (*parent == NULL || *base == NULL) {
        free(*parent);
        free(*base);
        return PETAL_ENOMEM;
    }
    return 0;
}

/* A new empty directory parent/.base.<kind>-XXXXXX; NULL with errno set on failure. */
static char *
make_temp(const char *parent, const char *base, const char *kind)
{
    size_t n = strlen(parent) + strlen(base) + strlen(kind) + 16;
    char *t = malloc(n);

    if (t == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    snprintf(t, n, "%s/.%s.%s-XXXXXX", parent, base, kind);
    if (mkdtemp(t) == NULL) {
        int e = errno;
        free(t);
        errno = e;
        return NULL;
    }
    return t;
}

/*
 * Writes the bundle to a temporary directory and renames it to dest. With `cache`, a complete
 * dest (another thread or process won the race) counts as success and an incomplete leftover
 * is moved aside and removed; without, an existing non-empty dest is PETAL_EEXIST.
 */
static int
install(const pt_bundle_t *b, const char *hash, const uint8_t *signer, const char *dest, int cache,
        char *err, size_t cap)
{
    char eb[128];
    char *parent = NULL;
    char *base = NULL;
    char *tmp = NULL;
    int rc;

    if ((rc = split_dest(dest, &parent, &base)) != 0) {
        msgf(err, cap, "unpack: out of memory");
        return rc;
    }
    tmp = make_temp(parent, base, "tmp");
    if (tmp == NULL) {
        rc = -errno;
        msgf(err, cap, "unpack: cannot create a directory in %s: %s", parent,
             errstr(-rc, eb, sizeof(eb)));
        goto done;
    }
    if (chmod(tmp, 0755) != 0) {
        rc = -errno;
        msgf(err, cap, "unpack: cannot chmod %s: %s", tmp, errstr(-rc, eb, sizeof(eb)));
        goto fail;
    }
    if ((rc = write_tree(tmp, b, hash, signer, err, cap)) != 0) {
        goto fail;
    }
    for (int attempt = 0; attempt < 4; attempt++) {
        if (rename(tmp, dest) == 0) {
            (void)fsync_path(parent, O_DIRECTORY);
            rc = 0;
            goto done;
        }
        int e = errno;
        if (e != EEXIST && e != ENOTEMPTY) {
            rc = -e;
            msgf(err, cap, "unpack: cannot rename %s to %s: %s", tmp, dest,
                 errstr(e, eb, sizeof(eb)));
            goto fail;
        }
        if (!cache) {
            rc = PETAL_EEXIST;
            msgf(err, cap, "unpack: %s exists already and is not empty", dest);
            goto fail;
        }
        if (is_complete(dest, hash)) {
            rc = 0;
            rm_tree(tmp);
            goto done;
        }
        /* An incomplete leftover (not ours: ours appear atomically). Move it aside. */
        char *trash = make_temp(parent, base, "trash");
        if (trash == NULL) {
            rc = -errno;
            msgf(err, cap, "unpack: cannot create a directory in %s: %s", parent,
                 errstr(-rc, eb, sizeof(eb)));
            goto fail;
        }
        if (rename(dest, trash) == 0 && is_complete(trash, hash)) {
            /* raced with another installer: put its complete directory back */
            if (rename(trash, dest) == 0) {
                free(trash);
                rc = 0;
                rm_tree(tmp);
                goto done;
            }
        }
        rm_tree(trash);
        free(trash);
    }
    rc = PETAL_EEXIST;
    msgf(err, cap, "unpack: %s keeps reappearing incomplete; remove it by hand", dest);
fail:
    rm_tree(tmp);
done:
    free(tmp);
    free(parent);
    free(base);
    return rc;
}

int
pt_bundle_unpack(const void *data, size_t len, const char *dest_dir, char *err, size_t cap)
{
    char hash[PT_BUNDLE_HASH_HEX];
    pt_bundle_t *b = NULL;
    int rc;

    msgf(err, cap, "%s", "");
    if ((data == NULL && len > 0) || dest_dir == NULL || dest_dir[0] == '\0') {
        msgf(err, cap, "unpack: invalid argument");
        return PETAL_EINVAL;
    }
    if ((rc = pt_bundle_parse(data, len, &b, err, cap)) != 0) {
        return rc;
    }
    sha256_hex(data, len, hash);
    rc = install(b, hash, NULL, dest_dir, 0, err, cap);
    pt_bundle_free(b);
    return rc;
}

static int
cache_path(const char *root, const char *hash, char *out, size_t cap)
{
    int n;

    if (root == NULL || root[0] == '\0' || pt_bundle_hash_check(hash) != 0 || out == NULL) {
        return PETAL_EINVAL;
    }
    n = snprintf(out, cap, "%s/%s", root, hash);
    if (n < 0 || (size_t)n >= cap) {
        return PETAL_EINVAL;
    }
    return 0;
}

int
pt_bundle_cache_has(const char *cache_root, const char *hash_hex, char *app_dir_out, size_t cap)
{
    int rc = cache_path(cache_root, hash_hex, app_dir_out, cap);

    if (rc != 0) {
        return rc;
    }
    return is_complete(app_dir_out, hash_hex);
}

/* mkdir -p */
static int
make_dirs(const char *path)
{
    char *p = strdup(path);
    struct stat st;
    int rc = 0;

    if (p == NULL) {
        return PETAL_ENOMEM;
    }
    for (char *s = strchr(p + 1, '/'); s != NULL; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            rc = -errno;
        }
        *s = '/';
        if (rc != 0) {
            break;
        }
    }
    if (rc == 0 && mkdir(p, 0755) != 0 && errno != EEXIST) {
        rc = -errno;
    }
    if (rc == 0 && (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))) {
        rc = -ENOTDIR;
    }
    free(p);
    return rc;
}

int
pt_bundle_cache_get(const char *cache_root, const char *hash_hex, const void *data, size_t len,
                    char *app_dir_out, size_t cap, char *err, size_t errcap)
{
    char path[4096];
    char hex[PT_BUNDLE_HASH_HEX];
    char eb[128];
    pt_bundle_t *b = NULL;
    int rc;

    msgf(err, errcap, "%s", "");
    if (cache_path(cache_root, hash_hex, path, sizeof(path)) != 0 || app_dir_out == NULL ||
        strlen(path) >= cap || (data == NULL && len > 0)) {
        msgf(err, errcap,
             "bundle cache: invalid argument (a bundle hash is 64 lowercase hex "
             "digits)");
        return PETAL_EINVAL;
    }
    if (is_complete(path, hash_hex)) {
        memcpy(app_dir_out, path, strlen(path) + 1);
        return 0;
    }
    if (data == NULL) {
        msgf(err, errcap, "bundle cache: %.16s... is not in %s", hash_hex, cache_root);
        return PETAL_ENOENT;
    }
    if ((rc = make_dirs(cache_root)) != 0) {
        msgf(err, errcap, "bundle cache: cannot create %s: %s", cache_root,
             rc == PETAL_ENOMEM ? "out of memory" : errstr(-rc, eb, sizeof(eb)));
        return rc;
    }
    sha256_hex(data, len, hex);
    if (strcmp(hex, hash_hex) != 0) {
        msgf(err, errcap,
             "bundle: the %zu bytes hash to %.16s..., expected %.16s... (corrupted in transit "
             "or a different bundle)",
             len, hex, hash_hex);
        return PETAL_E_INVALID_BUNDLE;
    }
    if ((rc = pt_bundle_parse(data, len, &b, err, errcap)) != 0) {
        return rc;
    }
    rc = install(b, hash_hex, NULL, path, 1, err, errcap);
    pt_bundle_free(b);
    if (rc == 0) {
        memcpy(app_dir_out, path, strlen(path) + 1);
    }
    return rc;
}

/* The signer recorded in a complete cache directory: 1 and pk, 0 when none is recorded. */
static int
cached_signer(const char *dir, uint8_t pk[PT_KEY_PUBLIC_BYTES])
{
    char *path = join(dir, PT_BUNDLE_SIGNER_FILE);
    char buf[PT_KEY_HEX_SIZE + 1];
    ssize_t n = -1;
    int fd;

    if (path == NULL) {
        return 0;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    free(path);
    if (fd < 0) {
        return 0;
    }
    do {
        n = read(fd, buf, sizeof(buf));
    } while (n < 0 && errno == EINTR);
    close(fd);
    if (n != PT_KEY_HEX_SIZE || buf[PT_KEY_HEX_SIZE - 1] != '\n' ||
        !is_hex_n(buf, PT_KEY_HEX_SIZE - 1)) {
        return 0;
    }
    buf[PT_KEY_HEX_SIZE - 1] = '\0';
    return pt_key_parse(buf, pk) == 0;
}

int
pt_bundle_cache_get_trusted(const char *cache_root, const char *hash_hex, const void *data,
                            size_t len, const pt_keylist_t *trusted, char *app_dir_out, size_t cap,
                            char *err, size_t errcap)
{
    uint8_t signer[PT_KEY_PUBLIC_BYTES];
    char path[4096];
    char hex[PT_BUNDLE_HASH_HEX];
    char fpr[PT_KEY_FPR_SIZE];
    char eb[128];
    pt_bundle_t *b = NULL;
    int rc;

    msgf(err, errcap, "%s", "");
    if (cache_path(cache_root, hash_hex, path, sizeof(path)) != 0 || app_dir_out == NULL ||
        strlen(path) >= cap || (data == NULL && len > 0)) {
        msgf(err, errcap,
             "bundle cache: invalid argument (a bundle hash is 64 lowercase hex "
             "digits)");
        return PETAL_EINVAL;
    }
    if (data == NULL) {
        if (!is_complete(path, hash_hex)) {
            msgf(err, errcap, "bundle cache: %.16s... is not in %s", hash_hex, cache_root);
            return PETAL_ENOENT;
        }
        if (trusted != NULL) {
            if (!cached_signer(path, signer)) {
                msgf(err, errcap, "bundle is not signed (no signer recorded in %s)", path);
                return PETAL_E_INVALID_BUNDLE;
            }
            if (!pt_keylist_contains(trusted, signer)) {
                pt_key_fingerprint(signer, fpr);
                msgf(err, errcap, "bundle signed by %s, which is not a trusted publisher", fpr);
                return PETAL_E_INVALID_BUNDLE;
            }
        }
        memcpy(app_dir_out, path, strlen(path) + 1);
        return 0;
    }
    /* Everything is checked before anything is written. */
    sha256_hex(data, len, hex);
    if (strcmp(hex, hash_hex) != 0) {
        msgf(err, errcap,
             "bundle: the %zu bytes hash to %.16s..., expected %.16s... (corrupted in transit "
             "or a different bundle)",
             len, hex, hash_hex);
        return PETAL_E_INVALID_BUNDLE;
    }
    if ((rc = pt_bundle_parse(data, len, &b, err, errcap)) != 0) {
        return rc;
    }
    rc = check_signature(b, trusted, signer, err, errcap);
    if (rc < 0) {
        goto done;
    }
    const uint8_t *recorded = rc == 1 ? signer : NULL;
    if (is_complete(path, hash_hex)) {
        rc = 0;
    } else if ((rc = make_dirs(cache_root)) != 0) {
        msgf(err, errcap, "bundle cache: cannot create %s: %s", cache_root,
             rc == PETAL_ENOMEM ? "out of memory" : errstr(-rc, eb, sizeof(eb)));
    } else {
        rc = install(b, hash_hex, recorded, path, 1, err, errcap);
    }
    if (rc == 0) {
        memcpy(app_dir_out, path, strlen(path) + 1);
    }
done:
    pt_bundle_free(b);
    return rc;
}
