/* cmd_keygen.c - petal keygen: a new Ed25519 identity in DIR/petal.key and DIR/petal.pub. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "runtime/keys.h"

#include "cli.h"

static const char keygen_usage[] =
    "usage: petal keygen --out DIR [--name NAME] [--force]\n\n"
    "Creates a new Ed25519 identity for a SuperLink, a SuperNode, an operator or a publisher:\n"
    "  DIR/petal.key  the secret key (mode 0600; never share or copy it)\n"
    "  DIR/petal.pub  the public key, one line to give to the peers that must trust it\n"
    "                 (a SuperNode's --superlink-key, a SuperLink's --allow-nodes list, ...)\n\n"
    "  --out DIR    where to write them (created with mode 0700 if missing)\n"
    "  --name NAME  the comment on the public key line (default: the host name)\n"
    "  --force      replace keys that exist already in DIR\n";

int
petal_cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = {
        {"out", required_argument, NULL, 'o'},
        {"name", required_argument, NULL, 'n'},
        {"force", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *out = NULL, *name = NULL;
    char host[256], err[512], hex[PT_KEY_HEX_SIZE], fpr[PT_KEY_FPR_SIZE];
    pt_keypair_t *kp = NULL;
    int force = 0, c, r;

    optind = 1;
    while ((c = getopt_long(argc, argv, "o:n:fh", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            out = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 'f':
            force = 1;
            break;
        case 'h':
            fputs(keygen_usage, stdout);
            return PETAL_EXIT_OK;
        default:
            fputs(keygen_usage, stderr);
            return PETAL_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "petal keygen: unexpected argument '%s'\n\n%s", argv[optind], keygen_usage);
        return PETAL_EXIT_USAGE;
    }
    if (out == NULL || out[0] == '\0') {
        fprintf(stderr, "petal keygen: --out DIR is required\n\n%s", keygen_usage);
        return PETAL_EXIT_USAGE;
    }
    if (name == NULL) {
        if (gethostname(host, sizeof(host)) != 0) {
            snprintf(host, sizeof(host), "petal");
        }
        host[sizeof(host) - 1] = '\0';
        name = host;
    }
    r = pt_keypair_generate(&kp);
    if (r != 0) {
        fprintf(stderr, "petal keygen: cannot generate a key: %s\n", petal_strerror(r));
        return PETAL_EXIT_RUN_FAILED;
    }
    r = pt_keypair_save(kp, out, name, force, err, sizeof(err));
    if (r != 0) {
        fprintf(stderr, "petal keygen: %s\n", err);
        pt_keypair_free(kp);
        return r == PETAL_EINVAL ? PETAL_EXIT_USAGE : PETAL_EXIT_RUN_FAILED;
    }
    pt_key_to_hex(kp->pk, hex);
    pt_key_fingerprint(kp->pk, fpr);
    printf("wrote %s/%s (secret, mode 0600) and %s/%s\n", out, PT_KEY_SECRET_FILE, out,
           PT_KEY_PUBLIC_FILE);
    printf("public key %s (%s)\n", hex, fpr);
    pt_keypair_free(kp);
    return PETAL_EXIT_OK;
}
