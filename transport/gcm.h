/* gcm.h - AES-256-GCM for secure-channel records, with OpenSSL's libcrypto (hardware AES). */
#ifndef PT_GCM_H
#define PT_GCM_H

#include <stddef.h>
#include <stdint.h>

/*
 * Why libcrypto: libsodium 1.0.18 (Debian 12) seals at 1.6 GB/s (secretstream) and 2.4 GB/s
 * (its AES-256-GCM) per core; OpenSSL 3.0's AES-256-GCM, with VAES/VPCLMULQDQ or AES-NI, at
 * about 5.6 GB/s. Everything else of the secure channel (identities, the handshake, key
 * derivation, the XChaCha20-Poly1305 fallback) stays with libsodium. docs/security.md.
 *
 * One pt_gcm_t holds one direction's expanded key; one thread at a time.
 */

#define PT_GCM_KEY_BYTES 32
#define PT_GCM_NONCE_BYTES 12
#define PT_GCM_TAG_BYTES 16

typedef struct pt_gcm pt_gcm_t;

/* A key for sealing (encrypt = 1) or opening (0). 0, or PETAL_ENOMEM. */
int pt_gcm_new(const uint8_t key[PT_GCM_KEY_BYTES], int encrypt, pt_gcm_t **out);
/* Wipes and frees (NULL is fine). */
void pt_gcm_free(pt_gcm_t *g);

/* c[0, n) = AES-256-GCM(m[0, n)), tag = the tag over ad[0, adn) and c. 0, or -1. */
int pt_gcm_seal(pt_gcm_t *g, const uint8_t nonce[PT_GCM_NONCE_BYTES], const uint8_t *ad, size_t adn,
                const uint8_t *m, size_t n, uint8_t *c, uint8_t *tag);
/* m[0, n) from c[0, n) when tag verifies over ad and c: 0, else -1 (m's content is then
 * unspecified). */
int pt_gcm_open(pt_gcm_t *g, const uint8_t nonce[PT_GCM_NONCE_BYTES], const uint8_t *ad, size_t adn,
                const uint8_t *c, size_t n, const uint8_t *tag, uint8_t *m);

#endif
