/* fuzz_bundle.c - fuzz target: app bundle parsing and verification of arbitrary bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fuzz.h"
#include "runtime/bundle.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_bundle: %s:%d: %s\n", __FILE__, __LINE__, #cond);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Whatever parsed must obey the format's rules: they are what unpack relies on. */
static void
check_parsed(const pt_bundle_t *b, const uint8_t *data, size_t size)
{
    uint64_t total = 0;
    unsigned char d[crypto_hash_sha256_BYTES];
    int has_toml = 0;

    CHECK(b->nfiles <= PT_BUNDLE_MAX_FILES);
    CHECK(b->name != NULL && b->name[0] != '\0' && b->version != NULL && b->client != NULL);
    for (size_t i = 0; i < b->nfiles; i++) {
        const pt_bundle_file_t *f = &b->files[i];
        char hex[PT_BUNDLE_HASH_HEX];
        size_t len = strlen(f->path);

        CHECK(len > 0 && len <= PT_BUNDLE_MAX_PATH);
        CHECK(f->path[0] != '/' && f->path[0] != '.' && strstr(f->path, "/.") == NULL);
        CHECK(strstr(f->path, "//") == NULL && f->path[len - 1] != '/');
        CHECK(f->mode == 0644 || f->mode == 0755);
        CHECK(i == 0 || strcmp(b->files[i - 1].path, f->path) < 0);
        CHECK(f->data >= data && f->size <= size && f->data + f->size <= data + size);
        pt_bundle_hash(f->data, (size_t)f->size, hex);
        CHECK(strcmp(hex, f->sha256_hex) == 0);
        total += f->size;
        has_toml |= strcmp(f->path, "petal.toml") == 0;
    }
    CHECK(has_toml);
    CHECK(total == b->content_bytes);
    CHECK(b->manifest >= data && b->manifest + b->manifest_len <= data + size);
    crypto_hash_sha256(d, b->manifest, b->manifest_len);
    CHECK(memcmp(d, b->manifest_digest, sizeof(d)) == 0);
    if (b->signature != NULL) {
        CHECK(b->signature + b->signature_len == data + size);
        CHECK(b->signature_scheme[0] != '\0');
    } else {
        CHECK(size > 0 && data[size - 1] == 0xc0);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size > 0 ? size : 1); /* exact size: ASan sees over-reads */
    pt_bundle_t *b = NULL;
    char hash[PT_BUNDLE_HASH_HEX];
    char wrong[PT_BUNDLE_HASH_HEX];
    char err[512];
    int rc;
    int rc2;

    CHECK(copy != NULL);
    if (size > 0) {
        memcpy(copy, data, size);
    }
    err[0] = '\0';
    rc = pt_bundle_parse(copy, size, &b, err, sizeof(err));
    if (rc == 0) {
        CHECK(b != NULL);
        check_parsed(b, copy, size);
        pt_bundle_free(b);
    } else {
        CHECK(rc == PETAL_E_INVALID_BUNDLE || rc == PETAL_ENOMEM);
        CHECK(b == NULL);
        CHECK(strncmp(err, "bundle: ", 8) == 0 && err[8] != '\0');
    }
    /* verify agrees with parse, and checks the hash */
    pt_bundle_hash(copy, size, hash);
    rc2 = pt_bundle_verify(copy, size, hash, err, sizeof(err));
    CHECK(rc2 == rc);
    memcpy(wrong, hash, sizeof(wrong));
    wrong[63] = wrong[63] == '0' ? '1' : '0';
    CHECK(pt_bundle_verify(copy, size, wrong, err, sizeof(err)) == PETAL_E_INVALID_BUNDLE);
    free(copy);
    return 0;
}
