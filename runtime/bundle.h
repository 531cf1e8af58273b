/* bundle.h - app bundles: an app directory packed into one hashed msgpack blob; a node cache. */
#ifndef PT_BUNDLE_H
#define PT_BUNDLE_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/buf.h"
#include "runtime/keys.h"

/*
 * Format, version 1 (docs/deployment.md, "App bundles"):
 *   bundle    = [ "petal.bundle", 1, manifest, contents, signature ]
 *   manifest  = { "name": str, "version": str, "client": path, "server": path | nil,
 *                 "files": [ [ path, mode, size, sha256 ], ... ] }
 *   contents  = [ bin, ... ]          one per manifest file, in the same order
 *   signature = nil | [ "ed25519", public_key (bin 32), signature (bin 64) ]
 *               the packer writes nil; pt_bundle_sign() the publisher's signature
 * Files are sorted by path (bytewise, strictly increasing); a path is relative, '/'-separated,
 * has no empty, "." or ".." component and no component starting with '.' (no hidden files), no
 * control characters; mode is 0644 or 0755; sha256 is 64 lowercase hex digits of the content.
 * petal.toml, the client and the server (when named) are among the files, and petal.toml
 * agrees with the manifest's name, version, client and server.
 *
 * A bundle's identity (its "hash") is the SHA-256 of all its bytes, as 64 lowercase hex digits.
 * The manifest digest is the SHA-256 of the manifest element's bytes: as the manifest names
 * every file's SHA-256, a signature over it covers the whole app. The signature element is the
 * last one: an unsigned bundle ends with the nil byte 0xc0, and signing replaces that byte.
 *
 * Everything here is reentrant and may run on any thread (worker threads: it hashes and does
 * file I/O). Errors: PETAL_E_INVALID_BUNDLE for anything wrong in bundle bytes (and a line in
 * err naming what and where), PETAL_EMSGSIZE past a limit when packing, PETAL_ECONFIG for a
 * bad app directory, -errno for I/O, PETAL_ENOMEM, PETAL_EINVAL for bad arguments.
 */

#define PT_BUNDLE_TAG "petal.bundle"
#define PT_BUNDLE_VERSION 1
#define PT_BUNDLE_MAX_FILES 1024
#define PT_BUNDLE_MAX_BYTES ((uint64_t)1 << 31) /* whole encoded bundle: one protocol frame */
#define PT_BUNDLE_MAX_PATH 1024                 /* bytes in a file path */
#define PT_BUNDLE_MAX_COMPONENT 255             /* bytes in one path component */
#define PT_BUNDLE_MAX_DEPTH 32                  /* components in a path */
#define PT_BUNDLE_MAX_TEXT 1024                 /* bytes in name and version */
#define PT_BUNDLE_MAX_SIGNATURE 65536           /* bytes in the signature element */
#define PT_BUNDLE_HASH_HEX 65                   /* 64 hex digits and a NUL */
/* Written last into an unpacked directory: "<bundle hash>\n". Its presence means complete. */
#define PT_BUNDLE_MARKER ".petal-bundle"
/* Optional file in an app directory: glob patterns of files the packer leaves out. */
#define PT_BUNDLE_IGNORE_FILE ".petalignore"
/* Written into an unpacked directory (before the marker) when the bundle carried a valid
 * signature: the signer's public key, "<64 hex>\n". */
#define PT_BUNDLE_SIGNER_FILE ".petal-signer"
/* The signature scheme and what is signed: this prefix, then the 32-byte manifest digest. */
#define PT_BUNDLE_SIG_SCHEME "ed25519"
#define PT_BUNDLE_SIG_CONTEXT "petal-bundle-manifest-v1"

typedef struct pt_bundle_file {
    char *path;    /* validated relative path, NUL-terminated */
    uint32_t mode; /* 0644 or 0755 */
    uint64_t size;
    const uint8_t *data; /* `size` bytes inside the parsed input (not owned) */
    char sha256_hex[PT_BUNDLE_HASH_HEX];
} pt_bundle_file_t;

typedef struct pt_bundle {
    char *name;
    char *version;
    char *client; /* a path among files */
    char *server; /* a path among files, or NULL (the default ServerApp) */
    pt_bundle_file_t *files;
    size_t nfiles;
    uint64_t content_bytes;  /* sum of file sizes */
    const uint8_t *manifest; /* the manifest element inside the input (not owned) */
    size_t manifest_len;
    uint8_t manifest_digest[32];
    const uint8_t *signature; /* the signature element, or NULL when it is nil (not owned) */
    size_t signature_len;
    char signature_scheme[33]; /* its first element, "" when unsigned */
} pt_bundle_t;

/*
 * Packs APP_DIR: petal.toml, the client and server it names, and every other regular file in
 * the tree, except hidden files and directories (names starting with '.'), build-system
 * leftovers (CMakeFiles/, CMakeCache.txt, cmake_install.cmake, CTestTestfile.cmake, Makefile,
 * *.ninja, *.o) and files matching the patterns in APP_DIR/.petalignore (one glob per line,
 * '#' comments; "dir/" matches directories only; a pattern with a '/' matches the path from the
 * app directory, one without matches names at any depth). Files petal.toml names are always
 * included. A symlink is packed as the file it points to when that is a regular file inside
 * the app directory; anything else (escaping symlinks, symlinked directories, devices) is an
 * error naming the file. Mode is 0755 for executable files and the plugins, else 0644; files
 * are sorted and no timestamps or owners are stored, so the same tree always gives the same
 * bytes and hash. On success *out is a new buffer (the caller releases it) and hash_hex (may
 * be NULL) receives the bundle hash.
 */
int pt_bundle_pack(const char *app_dir, pt_buf_t **out, char hash_hex[PT_BUNDLE_HASH_HEX],
                   char *err, size_t cap);

/*
 * Decodes and checks untrusted bundle bytes without touching the file system: the structure,
 * every length against the input and the limits above, every path, the sort order, petal.toml
 * and its agreement with the manifest, and every file's SHA-256. It does not check the bundle
 * hash (see pt_bundle_verify) nor the signature. *out points into `data`, which must outlive
 * it; free it with pt_bundle_free. PETAL_E_INVALID_BUNDLE or PETAL_ENOMEM on failure.
 */
int pt_bundle_parse(const void *data, size_t len, pt_bundle_t **out, char *err, size_t cap);
void pt_bundle_free(pt_bundle_t *b);

/* The bundle hash of `len` bytes: 64 lowercase hex digits and a NUL. */
void pt_bundle_hash(const void *data, size_t len, char hash_hex[PT_BUNDLE_HASH_HEX]);
/* 0 if s is a well-formed bundle hash (64 lowercase hex digits), else PETAL_EINVAL. */
int pt_bundle_hash_check(const char *s);

/* Checks that the bytes hash to expected_hash_hex (skipped when NULL) and pt_bundle_parse()
 * accepts them. 0, PETAL_E_INVALID_BUNDLE, PETAL_EINVAL (malformed expected hash), ENOMEM. */
int pt_bundle_verify(const void *data, size_t len, const char *expected_hash_hex, char *err,
                     size_t cap);

/*
 * Verifies the bundle (as pt_bundle_parse) and writes its files into dest_dir, which must not
 * exist (an empty directory is replaced); its parent must exist. The files are written into a
 * temporary directory beside dest_dir, synced, marked complete (PT_BUNDLE_MARKER) and renamed
 * to dest_dir in one step, so dest_dir is either absent or complete; on failure nothing is left
 * behind. PETAL_EEXIST if dest_dir exists and is not empty.
 */
int pt_bundle_unpack(const void *data, size_t len, const char *dest_dir, char *err, size_t cap);

/*
 * A node's bundle cache: cache_root/<hash>/ holds the unpacked app. When that directory is
 * present and complete it is reused as is (data may then be NULL); otherwise the bytes must
 * hash to hash_hex, are verified and unpacked there atomically (cache_root is created if
 * needed; an incomplete leftover directory is replaced). Safe against concurrent calls for
 * the same hash from threads or processes: they all end with the one complete directory.
 * app_dir_out receives cache_root/<hash>. PETAL_ENOENT when not cached and data is NULL.
 */
int pt_bundle_cache_get(const char *cache_root, const char *hash_hex, const void *data, size_t len,
                        char *app_dir_out, size_t cap, char *err, size_t errcap);

/* 1 (and cache_root/<hash> in app_dir_out) when the bundle is cached and complete, 0 when it
 * is not, PETAL_EINVAL for a malformed hash or an app_dir_out too small. */
int pt_bundle_cache_has(const char *cache_root, const char *hash_hex, char *app_dir_out,
                        size_t cap);

/* ---- Publisher signatures ---------------------------------------------------------------- */

/*
 * Signs a bundle: parses `data` (as pt_bundle_parse) and returns in *out a new buffer with the
 * same tag, manifest and contents and the signature element
 * ["ed25519", kp's public key, Ed25519 signature of PT_BUNDLE_SIG_CONTEXT || manifest digest].
 * A signature already present is replaced. 0, PETAL_E_INVALID_BUNDLE (bad input bundle, err
 * says why), PETAL_EINVAL, PETAL_ENOMEM.
 */
int pt_bundle_sign(const void *data, size_t len, const pt_keypair_t *kp, pt_buf_t **out, char *err,
                   size_t cap);

/*
 * The public key a parsed bundle claims to be signed by (not verified: see below). 1 and pk
 * when it carries an ed25519 signature element, 0 when it is unsigned, PETAL_E_INVALID_BUNDLE
 * when the element is not ["ed25519", 32 bytes, 64 bytes] (an unknown scheme included).
 */
int pt_bundle_signer(const pt_bundle_t *b, uint8_t pk[PT_KEY_PUBLIC_BYTES], char *err, size_t cap);

/*
 * Checks a parsed bundle's signature. A present signature must be well formed and verify
 * against the manifest digest; with `trusted` (a publisher list, possibly empty) the bundle
 * must also be signed, by a key in the list. `trusted` NULL: unsigned bundles are fine.
 * 1 (signed and valid; signer_pk, which may be NULL, receives the key), 0 (unsigned and
 * `trusted` is NULL), or PETAL_E_INVALID_BUNDLE with one of these in err:
 *   "bundle is not signed ..."
 *   "bundle signed by ed25519:3f9a1c0e7b2d4a68, which is not a trusted publisher ..."
 *   "bundle: signature does not match the manifest (the bundle was changed after signing)"
 *   "bundle: the signature block is malformed: ..." / "bundle: unknown signature scheme ..."
 */
int pt_bundle_verify_signature(const pt_bundle_t *b, const pt_keylist_t *trusted,
                               uint8_t signer_pk[PT_KEY_PUBLIC_BYTES], char *err, size_t cap);

/*
 * pt_bundle_cache_get for nodes that check publishers. With bytes: they must hash to hash_hex
 * and parse, and pt_bundle_verify_signature(trusted) must accept them, all before anything is
 * written; then the cached directory is reused when complete, else the bundle is unpacked
 * there, recording a valid signer in PT_BUNDLE_SIGNER_FILE. Without bytes (data NULL): a
 * complete cached directory is used when `trusted` is NULL or its recorded signer is in the
 * list; else PETAL_E_INVALID_BUNDLE (an untrusted or no recorded signer: fetch the bytes and
 * call again for the definitive answer) or PETAL_ENOENT (not cached).
 */
int pt_bundle_cache_get_trusted(const char *cache_root, const char *hash_hex, const void *data,
                                size_t len, const pt_keylist_t *trusted, char *app_dir_out,
                                size_t cap, char *err, size_t errcap);

#endif
