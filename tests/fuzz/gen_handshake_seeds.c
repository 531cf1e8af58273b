/* gen_handshake_seeds.c - writes the seed corpus of fuzz_handshake (see its modes there). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/keys.h"
#include "transport/secure.h"

typedef struct out {
    uint8_t p[4096];
    size_t n;
} out_t;

static void
put(out_t *o, const void *p, size_t n)
{
    if (o->n + n > sizeof(o->p)) {
        fprintf(stderr, "gen_handshake_seeds: seed too long\n");
        exit(1);
    }
    memcpy(o->p + o->n, p, n);
    o->n += n;
}

static int
write_seed(const char *dir, const char *name, const void *p, size_t n)
{
    char path[4096];
    FILE *f;
    int rc = 0;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, n, f) != n) {
        perror(path);
        rc = -1;
    }
    if (f != NULL && fclose(f) != 0) {
        rc = -1;
    }
    return rc;
}

/* Moves a's output to b and records it in `log`; 1 if anything moved. */
static int
pass(pt_secure_session_t *a, pt_secure_session_t *b, out_t *log)
{
    uint8_t *data = NULL;
    size_t len = 0;
    size_t used = 0;

    if (pt_secure_take_output(a, &data, &len) != 0) {
        exit(1);
    }
    if (len > 0) {
        put(log, data, len);
        pt_secure_handshake_input(b, data, len, &used);
    }
    free(data);
    return len > 0;
}

int
main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    static const uint8_t hand[][8] = {
        /* mode 2 (policy in bits 2-3), piece size, then [dir, pos hi, pos lo, xor] edits */
        {0x02, 0x00},
        {0x02, 0x07},
        {0x06, 0x00},
        {0x0a, 0x00},
        {0x0e, 0x00},
        {0x02, 0x00, 0x00, 0x00, 0x20, 0x01}, /* client's HELLO key */
        {0x02, 0x00, 0x01, 0x00, 0x50, 0x80}, /* server's AUTH */
        {0x02, 0x00, 0x00, 0x00, 0xb0, 0x04}, /* client's STREAM header */
        /* mode 3: record ops (0 next, 1 next changed + position, 2 replay, 3 reorder) */
        {0x03, 0x00, 0x00, 0x00, 0x00, 0x00},
        {0x03, 0x00, 0x00, 0x02, 0x00},
        {0x03, 0x00, 0x03, 0x00},
        {0x03, 0x00, 0x01, 0x09, 0x00},
        {0x03, 0x00, 0x01, 0x01},
        {0x02, 0x00, 0x01, 0x00, 0x2e, 0x02}, /* server's cipher offer (downgrade attempt) */
    };
    static const size_t hand_len[] = {2, 2, 2, 2, 2, 6, 6, 6, 6, 5, 4, 5, 4, 6};
    pt_keypair_t *sid = NULL;
    pt_keypair_t *cid = NULL;
    pt_secure_session_t *c = NULL;
    pt_secure_session_t *s = NULL;
    pt_secure_opts_t so;
    pt_secure_opts_t co;
    out_t c2s = {{0}, 0};
    out_t s2c = {{0}, 0};
    int rc = 0;

    if (pt_keypair_generate(&sid) != 0 || pt_keypair_generate(&cid) != 0) {
        return 1;
    }
    memset(&so, 0, sizeof(so));
    memset(&co, 0, sizeof(co));
    so.identity = sid;
    co.identity = cid;
    if (pt_secure_session_new(PT_SECURE_SERVER, &so, &s) != 0 ||
        pt_secure_session_new(PT_SECURE_CLIENT, &co, &c) != 0) {
        return 1;
    }
    put(&c2s, "\x00", 1); /* mode 0: what a client sends, for a server */
    put(&s2c, "\x01", 1); /* mode 1: what a server sends, for a client */
    for (int round = 0; round < 8; round++) {
        int moved = pass(s, c, &s2c);

        moved |= pass(c, s, &c2s);
        if (!moved) {
            break;
        }
    }
    if (!pt_secure_established(c) || !pt_secure_established(s)) {
        fprintf(stderr, "gen_handshake_seeds: the handshake failed: %s / %s\n", pt_secure_error(c),
                pt_secure_error(s));
        return 1;
    }
    rc |= write_seed(dir, "client-stream.bin", c2s.p, c2s.n);
    rc |= write_seed(dir, "server-stream.bin", s2c.p, s2c.n);
    rc |= write_seed(dir, "client-magic-only.bin", "\x00PETALSC2", 9);
    rc |=
        write_seed(dir, "plain-frame.bin", "\x00\x00\x00\x00\x07\x96\x01\x03\x00\x00\x00\xc2", 12);
    for (size_t i = 0; i < sizeof(hand) / sizeof(hand[0]); i++) {
        char name[32];

        snprintf(name, sizeof(name), "%s-%02zu.bin", hand[i][0] & 1 ? "records" : "mitm", i);
        rc |= write_seed(dir, name, hand[i], hand_len[i]);
    }
    pt_secure_session_free(c);
    pt_secure_session_free(s);
    pt_keypair_free(sid);
    pt_keypair_free(cid);
    return rc != 0;
}
