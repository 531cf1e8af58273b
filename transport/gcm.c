/* gcm.c - AES-256-GCM for secure-channel records, with OpenSSL's libcrypto (hardware AES). */
#include "gcm.h"

#include <limits.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include <petal/plugin.h>

struct pt_gcm {
    EVP_CIPHER_CTX *ctx; /* the key schedule; libcrypto wipes it when freed */
    int encrypt;
};

int
pt_gcm_new(const uint8_t key[PT_GCM_KEY_BYTES], int encrypt, pt_gcm_t **out)
{
    pt_gcm_t *g = calloc(1, sizeof(*g));
    int ok;

    if (g == NULL) {
        return PETAL_ENOMEM;
    }
    g->encrypt = encrypt;
    g->ctx = EVP_CIPHER_CTX_new();
    ok = g->ctx != NULL &&
         (encrypt ? EVP_EncryptInit_ex(g->ctx, EVP_aes_256_gcm(), NULL, key, NULL)
                  : EVP_DecryptInit_ex(g->ctx, EVP_aes_256_gcm(), NULL, key, NULL)) == 1;
    if (!ok) {
        pt_gcm_free(g);
        return PETAL_ENOMEM;
    }
    *out = g;
    return 0;
}

void
pt_gcm_free(pt_gcm_t *g)
{
    if (g != NULL) {
        EVP_CIPHER_CTX_free(g->ctx);
        free(g);
    }
}

/* One record through ctx (whose key is set): 0, or -1. */
static int
run(EVP_CIPHER_CTX *ctx, int encrypt, const uint8_t *nonce, const uint8_t *ad, size_t adn,
    const uint8_t *in, size_t n, uint8_t *out, uint8_t *tag)
{
    int len = 0;

    if (n > INT_MAX || adn > INT_MAX) {
        return -1;
    }
    if (encrypt) {
        return EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) == 1 &&
                       EVP_EncryptUpdate(ctx, NULL, &len, ad, (int)adn) == 1 &&
                       EVP_EncryptUpdate(ctx, out, &len, in, (int)n) == 1 &&
                       EVP_EncryptFinal_ex(ctx, out + len, &len) == 1 &&
                       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, PT_GCM_TAG_BYTES, tag) == 1
                   ? 0
                   : -1;
    }
    return EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, nonce) == 1 &&
                   EVP_DecryptUpdate(ctx, NULL, &len, ad, (int)adn) == 1 &&
                   EVP_DecryptUpdate(ctx, out, &len, in, (int)n) == 1 &&
                   EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, PT_GCM_TAG_BYTES, tag) == 1 &&
                   EVP_DecryptFinal_ex(ctx, out + len, &len) == 1
               ? 0
               : -1;
}

int
pt_gcm_seal(pt_gcm_t *g, const uint8_t nonce[PT_GCM_NONCE_BYTES], const uint8_t *ad, size_t adn,
            const uint8_t *m, size_t n, uint8_t *c, uint8_t *tag)
{
    return g->encrypt ? run(g->ctx, 1, nonce, ad, adn, m, n, c, tag) : -1;
}

int
pt_gcm_open(pt_gcm_t *g, const uint8_t nonce[PT_GCM_NONCE_BYTES], const uint8_t *ad, size_t adn,
            const uint8_t *c, size_t n, const uint8_t *tag, uint8_t *m)
{
    return g->encrypt ? -1 : run(g->ctx, 0, nonce, ad, adn, c, n, m, (uint8_t *)tag);
}
