/* keys.h - Ed25519 identities (libsodium): key pairs in guarded memory, key files, key lists. */
#ifndef PT_KEYS_H
#define PT_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include <petal/plugin.h> /* PETAL_E* */

/*
 * Every SuperLink, SuperNode, operator and publisher has one long-term Ed25519 identity. Its
 * secret half lives only in sodium_malloc memory (guard pages, never swapped, kept PROT_NONE
 * while idle) and is wiped by pt_keypair_free; temporaries holding secret bytes are wiped with
 * sodium_memzero.
 *
 * Files (written by `petal keygen --out DIR`, formats in docs/protocol.md "Secure channel"):
 *   DIR/petal.key  secret, mode 0600:   "# ..." comment lines, then "seed <64 hex>" and
 *                  "public <64 hex>". Loading refuses a file that group or others may access
 *                  ("... is accessible by group or others (mode 0644): run chmod 600 FILE").
 *   DIR/petal.pub  public:              "# ..." comment lines, then "<64 hex> petal-ed25519 NAME"
 *                  (one line that may be appended as is to a key list).
 *   key lists      (--allow-nodes, --operators, --trusted-publishers): one public key per line,
 *                  64 hex digits or 44 base64 characters, then optional words (a comment);
 *                  '#' starts a comment; blank lines are skipped. A petal.pub is a key list of
 *                  one key.
 *
 * All functions are thread-safe (no shared state besides libsodium's one-time init). Errors:
 * 0 on success, a negative PETAL_E* code otherwise, and when `err` is non-NULL a one-line
 * message naming the file (and line) and what to do. Out-parameters are written on success only.
 */

#define PT_KEY_PUBLIC_BYTES 32 /* crypto_sign_PUBLICKEYBYTES */
#define PT_KEY_SECRET_BYTES 64 /* crypto_sign_SECRETKEYBYTES: seed || public key */
#define PT_KEY_SIG_BYTES 64    /* crypto_sign_BYTES */
#define PT_KEY_HEX_SIZE 65     /* 64 hex digits + NUL */
/* A fingerprint for logs and error messages: "ed25519:" + the first 8 bytes of the public key
 * in hex, e.g. "ed25519:3f9a1c0e7b2d4a68" (24 characters + NUL). */
#define PT_KEY_FPR_SIZE 25

#define PT_KEY_SECRET_FILE "petal.key"
#define PT_KEY_PUBLIC_FILE "petal.pub"

/* Initialises libsodium once (any thread, any number of times). 0, or PETAL_ENOMEM. Every
 * function below calls it; call it yourself before using libsodium directly. */
int pt_keys_init(void);

/* ---- Key pairs --------------------------------------------------------------------------------
 */

typedef struct pt_keypair {
    uint8_t pk[PT_KEY_PUBLIC_BYTES]; /* the public key: read freely */
    uint8_t *sk;                     /* PT_KEY_SECRET_BYTES in sodium_malloc memory: use the
                                        functions below, which unlock it only while they run */
} pt_keypair_t;

/* A fresh random key pair. 0, or PETAL_ENOMEM. Free with pt_keypair_free. */
int pt_keypair_generate(pt_keypair_t **out);
/* Wipes and frees the secret key (sodium_free) and the pair. NULL is fine. */
void pt_keypair_free(pt_keypair_t *kp);

/*
 * Loads a secret key file. `path` is the file or a directory holding petal.key. Refused:
 * a missing or unreadable file (PETAL_ENOENT / PETAL_EIO), a file group or others may access
 * (PETAL_ECONFIG, with the chmod to run), a malformed one or one whose public line does not
 * match its seed (PETAL_ECONFIG, naming the line).
 */
int pt_keypair_load(const char *path, pt_keypair_t **out, char *err, size_t cap);

/*
 * Writes DIR/petal.key (mode 0600) and DIR/petal.pub (mode 0644), creating DIR (mode 0700) if
 * it does not exist. `name` is the comment of the public key line (e.g. "node-3@host"; NULL:
 * "petal"). Existing files are replaced only when `overwrite` is non-zero (else PETAL_EEXIST,
 * nothing written). PETAL_EIO on a write error (no partial secret file is left behind).
 */
int pt_keypair_save(const pt_keypair_t *kp, const char *dir, const char *name, int overwrite,
                    char *err, size_t cap);

/* Detached signature of m[0, n) with the pair's secret key. 0, or PETAL_EINVAL. */
int pt_keypair_sign(const pt_keypair_t *kp, const uint8_t *m, size_t n,
                    uint8_t sig[PT_KEY_SIG_BYTES]);
/* 0 if `sig` is pk's signature of m[0, n); PETAL_EPROTO if not. */
int pt_key_verify(const uint8_t pk[PT_KEY_PUBLIC_BYTES], const uint8_t *m, size_t n,
                  const uint8_t sig[PT_KEY_SIG_BYTES]);

/* ---- Public keys ------------------------------------------------------------------------------
 */

/* "ed25519:3f9a1c0e7b2d4a68" into out[PT_KEY_FPR_SIZE]. */
void pt_key_fingerprint(const uint8_t pk[PT_KEY_PUBLIC_BYTES], char out[PT_KEY_FPR_SIZE]);
/* 64 lowercase hex digits into out[PT_KEY_HEX_SIZE]. */
void pt_key_to_hex(const uint8_t pk[PT_KEY_PUBLIC_BYTES], char out[PT_KEY_HEX_SIZE]);
/* A public key written as 64 hex digits or 44 base64 characters (surrounding blanks allowed).
 * 0, or PETAL_EINVAL. */
int pt_key_parse(const char *text, uint8_t out[PT_KEY_PUBLIC_BYTES]);

/*
 * The one public key of a file (a petal.pub, or any key list holding exactly one key). `path`
 * may also be a directory holding petal.pub. PETAL_ENOENT / PETAL_EIO / PETAL_ECONFIG (no key,
 * more than one, or a malformed line).
 */
int pt_pubkey_load(const char *path, uint8_t out[PT_KEY_PUBLIC_BYTES], char *err, size_t cap);

/* ---- Key lists --------------------------------------------------------------------------------
 */

typedef struct pt_keylist {
    size_t n;
    uint8_t (*keys)[PT_KEY_PUBLIC_BYTES];
    char *path; /* the file it was loaded from ("" for a list built in memory) */
} pt_keylist_t;

/* Loads a key list file (an empty list is valid). PETAL_ECONFIG names the bad line. */
int pt_keylist_load(const char *path, pt_keylist_t **out, char *err, size_t cap);
/* An empty list not tied to a file. */
int pt_keylist_alloc(pt_keylist_t **out);
/* Adds a key (duplicates are kept once). 0, or PETAL_ENOMEM. */
int pt_keylist_add(pt_keylist_t *l, const uint8_t pk[PT_KEY_PUBLIC_BYTES]);
/* 1 if pk is in the list, else 0. */
int pt_keylist_contains(const pt_keylist_t *l, const uint8_t pk[PT_KEY_PUBLIC_BYTES]);
void pt_keylist_free(pt_keylist_t *l);

/*
 * An authorize callback for pt_secure_opts_t with ctx = a pt_keylist_t: 0 when the peer's key
 * is in the list, else PETAL_EPROTO with `why` = "key ed25519:... is not in FILE".
 */
int pt_keylist_authorize(void *ctx, const uint8_t peer_pk[PT_KEY_PUBLIC_BYTES], char *why,
                         size_t cap);

#endif
