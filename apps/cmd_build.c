/* cmd_build.c - petal build: an app directory packed into a bundle file, optionally signed. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/buf.h"
#include "runtime/bundle.h"
#include "runtime/config.h"
#include "runtime/keys.h"

#include "cli.h"

static const char build_usage[] =
    "usage: petal build APP_DIR [--sign KEYFILE] [-o FILE]\n\n"
    "Packs APP_DIR (petal.toml and the files it needs) into one bundle file that petal run\n"
    "accepts in place of the directory.\n\n"
    "  -o, --output FILE  where to write it (default: NAME.petal, NAME from petal.toml)\n"
    "  --sign KEYFILE     add the publisher's Ed25519 signature: KEYFILE is a petal.key from\n"
    "                     petal keygen (or its directory). SuperNodes started with\n"
    "                     --trusted-publishers run only bundles signed by a key in their list.\n";

/* ---- Reading a bundle file (petal run APP.petal) --------------------------------------------- */

int
petal_cli_is_bundle_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int
read_file(const char *path, pt_buf_t **out, char *err, size_t cap)
{
    struct stat st;
    pt_buf_t *buf = NULL;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, cap, "cannot read %s: %s", path, strerror(errno));
        goto fail;
    }
    if ((uint64_t)st.st_size > PT_BUNDLE_MAX_BYTES) {
        snprintf(err, cap, "%s is over the 2 GiB bundle limit", path);
        goto fail;
    }
    buf = pt_buf_alloc(st.st_size > 0 ? (size_t)st.st_size : 1, 0);
    if (buf == NULL) {
        snprintf(err, cap, "out of memory reading %s", path);
        goto fail;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, (uint8_t *)pt_buf_data(buf) + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            snprintf(err, cap, "cannot read %s: %s", path, n < 0 ? strerror(errno) : "it shrank");
            goto fail;
        }
        got += (size_t)n;
    }
    close(fd);
    if (got == 0) {
        snprintf(err, cap, "%s is empty, not a bundle", path);
        pt_buf_release(buf);
        return PETAL_E_INVALID_BUNDLE;
    }
    *out = buf;
    return 0;
fail:
    if (fd >= 0) {
        close(fd);
    }
    if (buf != NULL) {
        pt_buf_release(buf);
    }
    return PETAL_EIO;
}

int
petal_cli_bundle_load(const char *path, pt_buf_t **bundle_out, petal_recorddict_t **holder_out,
                      char *err, size_t cap)
{
    char e[512], label[600];
    pt_buf_t *buf = NULL;
    pt_bundle_t *b = NULL;
    pt_manifest_t *m = NULL;
    int rc = read_file(path, &buf, err, cap);
    if (rc != 0) {
        return rc;
    }
    rc = pt_bundle_parse(pt_buf_data(buf), pt_buf_len(buf), &b, e, sizeof(e));
    if (rc != 0) {
        snprintf(err, cap, "%s: %s", path, e);
        goto done;
    }
    const pt_bundle_file_t *toml = NULL;
    for (size_t i = 0; i < b->nfiles && toml == NULL; i++) {
        if (strcmp(b->files[i].path, PT_MANIFEST_FILE) == 0) {
            toml = &b->files[i];
        }
    }
    if (toml == NULL) { /* pt_bundle_parse checks it is there */
        snprintf(err, cap, "%s: no " PT_MANIFEST_FILE " in the bundle", path);
        rc = PETAL_E_INVALID_BUNDLE;
        goto done;
    }
    snprintf(label, sizeof(label), "%s: " PT_MANIFEST_FILE, path);
    rc = pt_manifest_parse((const char *)toml->data, (size_t)toml->size, label, "/", &m, err, cap);
    if (rc != 0) {
        goto done;
    }
    *holder_out = pt_manifest_take_config(m);
    *bundle_out = buf;
    buf = NULL;
done:
    pt_manifest_free(m);
    pt_bundle_free(b);
    if (buf != NULL) {
        pt_buf_release(buf);
    }
    return rc;
}

/* ---- petal build ----------------------------------------------------------------------------- */

/* NAME.petal from the app's name, with anything but [A-Za-z0-9._-] replaced by '_'. */
static void
default_output(const char *app_dir, char *out, size_t cap)
{
    char err[512];
    pt_manifest_t *m = NULL;
    const char *name = "app";
    if (pt_manifest_load(app_dir, &m, err, sizeof(err)) == 0 && m->name[0] != '\0') {
        name = m->name;
    }
    snprintf(out, cap, "%.200s.petal", name);
    for (char *s = out; *s != '\0'; s++) {
        int ok = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                 *s == '.' || *s == '_' || *s == '-';
        if (!ok) {
            *s = '_';
        }
    }
    if (out[0] == '.') {
        out[0] = '_';
    }
    pt_manifest_free(m);
}

/* Writes the bytes to a temporary file beside `path`, then renames it into place. */
static int
write_atomic(const char *path, const void *data, size_t len, char *err, size_t cap)
{
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    int fd = -1;
    if (tmp == NULL) {
        snprintf(err, cap, "out of memory");
        return PETAL_ENOMEM;
    }
    snprintf(tmp, n, "%s.tmp-XXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(err, cap, "cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        return PETAL_EIO;
    }
    const uint8_t *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            goto fail;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fchmod(fd, 0644) != 0 || fsync(fd) != 0) {
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        goto fail;
    }
    free(tmp);
    return 0;
fail:
    snprintf(err, cap, "cannot write %s: %s", path, strerror(errno));
    if (fd >= 0) {
        close(fd);
    }
    unlink(tmp);
    free(tmp);
    return PETAL_EIO;
}

int
petal_cmd_build(int argc, char **argv)
{
    static const struct option opts[] = {
        {"sign", required_argument, NULL, 'k'},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *keyfile = NULL, *output = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'k':
            keyfile = optarg;
            break;
        case 'o':
            output = optarg;
            break;
        case 'h':
            fputs(build_usage, stdout);
            return PETAL_EXIT_OK;
        default:
            fputs(build_usage, stderr);
            return PETAL_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fputs(build_usage, stderr);
        return PETAL_EXIT_USAGE;
    }
    const char *app_dir = argv[optind];
    char err[512], hash[PT_BUNDLE_HASH_HEX], out_name[256], fpr[PT_KEY_FPR_SIZE] = "";
    pt_keypair_t *kp = NULL;
    pt_buf_t *bundle = NULL, *signed_bundle = NULL;
    int code = PETAL_EXIT_RUN_FAILED;
    if (output == NULL) {
        default_output(app_dir, out_name, sizeof(out_name));
        output = out_name;
    }
    /* The key first: a bad key file is found before the packing work. */
    if (keyfile != NULL && pt_keypair_load(keyfile, &kp, err, sizeof(err)) != 0) {
        fprintf(stderr, "petal build: --sign: %s\n", err);
        return PETAL_EXIT_USAGE;
    }
    if (pt_bundle_pack(app_dir, &bundle, hash, err, sizeof(err)) != 0) {
        fprintf(stderr, "petal build: %s\n", err);
        code = PETAL_EXIT_USAGE;
        goto done;
    }
    if (kp != NULL) {
        if (pt_bundle_sign(pt_buf_data(bundle), pt_buf_len(bundle), kp, &signed_bundle, err,
                           sizeof(err)) != 0) {
            fprintf(stderr, "petal build: cannot sign: %s\n", err);
            goto done;
        }
        pt_buf_release(bundle);
        bundle = signed_bundle;
        pt_bundle_hash(pt_buf_data(bundle), pt_buf_len(bundle), hash);
        pt_key_fingerprint(kp->pk, fpr);
    }
    if (write_atomic(output, pt_buf_data(bundle), pt_buf_len(bundle), err, sizeof(err)) != 0) {
        fprintf(stderr, "petal build: %s\n", err);
        goto done;
    }
    printf("wrote %s (%zu bytes, bundle %s, %s%s)\n", output, pt_buf_len(bundle), hash,
           kp != NULL ? "signed by " : "unsigned", fpr);
    code = PETAL_EXIT_OK;
done:
    if (bundle != NULL) {
        pt_buf_release(bundle);
    }
    pt_keypair_free(kp);
    return code;
}
