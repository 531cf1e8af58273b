/* plugin.c - the plugin loader: dlopen, entry point, ABI checks and clear errors. */
#include "plugin.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

struct pt_plugin {
    void *dl;
    char *path; /* as given by the caller */
    petal_plugin_info_t info;
    petal_client_ops_t client; /* host-sized copies of the plugin's ops */
    petal_server_ops_t server;
};

static void errf(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
errf(char *err, size_t cap, const char *fmt, ...)
{
    if (err == NULL || cap == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

const char *
pt_plugin_kind_name(uint32_t kind)
{
    switch (kind) {
    case PETAL_PLUGIN_CLIENT:
        return "ClientApp";
    case PETAL_PLUGIN_SERVER:
        return "ServerApp";
    default:
        return "unknown";
    }
}

/* Opens the file ourselves first: a missing file or a text file gets a plain message instead
 * of dlerror()'s, and dlopen() never searches library paths for a name without a slash. */
static int
check_file(const char *path, char *err, size_t cap)
{
    char ebuf[128];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        errf(err, cap, "cannot open plugin %s: %s", path, strerror_r(e, ebuf, sizeof(ebuf)));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        errf(err, cap, "cannot open plugin %s: %s", path, strerror_r(e, ebuf, sizeof(ebuf)));
        return -e;
    }
    if (!S_ISREG(st.st_mode)) {
        int e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        close(fd);
        errf(err, cap, "cannot open plugin %s: %s", path,
             e == EISDIR ? "Is a directory" : "not a regular file");
        return -e;
    }
    unsigned char hdr[EI_NIDENT + 2];
    ssize_t n = read(fd, hdr, sizeof(hdr));
    close(fd);
    if (n < (ssize_t)sizeof(hdr) || memcmp(hdr, ELFMAG, SELFMAG) != 0) {
        errf(err, cap, "cannot load plugin %s: not a shared object (no ELF header)", path);
        return PETAL_EPLUGIN;
    }
    unsigned type = hdr[EI_DATA] == ELFDATA2MSB ? (unsigned)(hdr[16] << 8 | hdr[17])
                                                : (unsigned)(hdr[16] | hdr[17] << 8);
    if (type != ET_DYN) {
        errf(err, cap,
             "cannot load plugin %s: not a shared object (ELF type %u; build it with "
             "-shared -fPIC)",
             path, type);
        return PETAL_EPLUGIN;
    }
    return 0;
}

/* dlerror() texts start with the path; drop it, the caller names the path itself. */
static const char *
dl_reason(const char *dlpath)
{
    const char *e = dlerror();
    if (e == NULL) {
        return "unknown dlopen error";
    }
    size_t n = strlen(dlpath);
    if (strncmp(e, dlpath, n) == 0 && e[n] == ':' && e[n + 1] == ' ') {
        return e + n + 2;
    }
    return e;
}

/* Checks one ops struct's header; 0 or PETAL_EABI with err written. */
static int
check_ops_header(const char *path, const char *what, uint32_t struct_size, uint32_t abi_version,
                 size_t min_size, char *err, size_t cap)
{
    if (abi_version != PETAL_ABI_VERSION) {
        errf(err, cap, "plugin %s: %s.abi_version is %u; this host implements ABI v%d", path, what,
             abi_version, PETAL_ABI_VERSION);
        return PETAL_EABI;
    }
    if (struct_size < min_size) {
        errf(err, cap, "plugin %s: %s.struct_size is %u, smaller than the ABI v1 size %zu", path,
             what, struct_size, min_size);
        return PETAL_EABI;
    }
    return 0;
}

static int
check_info(pt_plugin_t *p, const petal_plugin_info_t *info, uint32_t expect_kind, char *err,
           size_t cap)
{
    const char *path = p->path;
    int rc;

    if (info->abi_version != PETAL_ABI_VERSION) {
        errf(err, cap, "plugin %s was built for ABI v%u; this host implements ABI v%d", path,
             info->abi_version, PETAL_ABI_VERSION);
        return PETAL_EABI;
    }
    if (info->struct_size < PT_PLUGIN_INFO_V1_MIN_SIZE) {
        errf(err, cap,
             "plugin %s: petal_plugin_info_t.struct_size is %u, smaller than the ABI v1 "
             "size %zu",
             path, info->struct_size, (size_t)PT_PLUGIN_INFO_V1_MIN_SIZE);
        return PETAL_EABI;
    }
    if (info->kind != PETAL_PLUGIN_CLIENT && info->kind != PETAL_PLUGIN_SERVER) {
        errf(err, cap,
             "plugin %s declares an unknown kind %u (expected %d for a ClientApp or %d "
             "for a ServerApp)",
             path, info->kind, PETAL_PLUGIN_CLIENT, PETAL_PLUGIN_SERVER);
        return PETAL_EPLUGIN;
    }
    if (expect_kind != 0 && info->kind != expect_kind) {
        errf(err, cap,
             "plugin %s is a %s plugin, but a %s plugin was expected (check client and "
             "server in petal.toml)",
             path, pt_plugin_kind_name(info->kind), pt_plugin_kind_name(expect_kind));
        return PETAL_EINVAL;
    }

    if (info->kind == PETAL_PLUGIN_CLIENT) {
        const petal_client_ops_t *ops = info->client;
        if (ops == NULL) {
            errf(err, cap, "plugin %s declares a ClientApp but returned no client ops", path);
            return PETAL_EPLUGIN;
        }
        rc = check_ops_header(path, "petal_client_ops_t", ops->struct_size, ops->abi_version,
                              PT_CLIENT_OPS_V1_MIN_SIZE, err, cap);
        if (rc != 0) {
            return rc;
        }
        size_t n = ops->struct_size < sizeof(p->client) ? ops->struct_size : sizeof(p->client);
        memset(&p->client, 0, sizeof(p->client));
        memcpy(&p->client, ops, n);
        if (p->client.train == NULL && p->client.evaluate == NULL && p->client.query == NULL) {
            errf(err, cap, "ClientApp plugin %s has no train, evaluate or query handler", path);
            return PETAL_EPLUGIN;
        }
    } else {
        const petal_server_ops_t *ops = info->server;
        if (ops == NULL) {
            errf(err, cap, "plugin %s declares a ServerApp but returned no server ops", path);
            return PETAL_EPLUGIN;
        }
        rc = check_ops_header(path, "petal_server_ops_t", ops->struct_size, ops->abi_version,
                              PT_SERVER_OPS_V1_MIN_SIZE, err, cap);
        if (rc != 0) {
            return rc;
        }
        size_t n = ops->struct_size < sizeof(p->server) ? ops->struct_size : sizeof(p->server);
        memset(&p->server, 0, sizeof(p->server));
        memcpy(&p->server, ops, n);
        if (p->server.main == NULL) {
            errf(err, cap, "ServerApp plugin %s has no main function", path);
            return PETAL_EPLUGIN;
        }
    }
    return 0;
}

int
pt_plugin_load(const char *path, uint32_t expect_kind, pt_plugin_t **out, char *err, size_t err_cap)
{
    pt_plugin_t *p = NULL;
    char *dlpath = NULL;
    int rc;

    errf(err, err_cap, "%s", "");
    if (path == NULL || path[0] == '\0' || out == NULL ||
        (expect_kind != 0 && expect_kind != PETAL_PLUGIN_CLIENT &&
         expect_kind != PETAL_PLUGIN_SERVER)) {
        errf(err, err_cap, "cannot load plugin: invalid arguments");
        return PETAL_EINVAL;
    }
    rc = check_file(path, err, err_cap);
    if (rc != 0) {
        return rc;
    }

    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        goto nomem;
    }
    p->path = strdup(path);
    if (p->path == NULL) {
        goto nomem;
    }
    /* dlopen() searches LD_LIBRARY_PATH etc. for a name without '/': never do that. */
    if (strchr(path, '/') == NULL) {
        size_t n = strlen(path) + 3;
        dlpath = malloc(n);
        if (dlpath == NULL) {
            goto nomem;
        }
        snprintf(dlpath, n, "./%s", path);
    }

    dlerror();
    p->dl = dlopen(dlpath != NULL ? dlpath : path, RTLD_NOW | RTLD_LOCAL);
    if (p->dl == NULL) {
        errf(err, err_cap, "cannot load plugin %s: %s", path,
             dl_reason(dlpath != NULL ? dlpath : path));
        rc = PETAL_EPLUGIN;
        goto fail;
    }

    dlerror();
    void *sym = dlsym(p->dl, PETAL_PLUGIN_ENTRY_V1);
    if (sym == NULL) {
        errf(err, err_cap,
             "no entry point %s in %s (a Petal plugin exports it with "
             "PETAL_PLUGIN_EXPORT)",
             PETAL_PLUGIN_ENTRY_V1, path);
        rc = PETAL_EABI;
        goto fail;
    }
    petal_plugin_entry_v1_fn entry;
    _Static_assert(sizeof(entry) == sizeof(sym), "function and data pointers differ in size");
    memcpy(&entry, &sym, sizeof(entry));

    petal_plugin_info_t info;
    memset(&info, 0, sizeof(info));
    info.struct_size = (uint32_t)sizeof(info);
    info.abi_version = 0; /* the plugin says which ABI it implements */
    int32_t erc = entry(petal_host_api(), &info);
    if (erc == PETAL_EABI) {
        errf(err, err_cap, "plugin %s refused host ABI v%d (%s returned PETAL_EABI)", path,
             PETAL_ABI_VERSION, PETAL_PLUGIN_ENTRY_V1);
        rc = PETAL_EABI;
        goto fail;
    }
    if (erc < 0) {
        errf(err, err_cap, "plugin init failed: %s (%s in %s returned %s)", petal_strerror(erc),
             PETAL_PLUGIN_ENTRY_V1, path, pt_error_name(erc));
        rc = PETAL_EPLUGIN;
        goto fail;
    }
    if (erc > 0) {
        errf(err, err_cap,
             "plugin init failed: %s in %s returned %d (expected 0 or a negative "
             "error)",
             PETAL_PLUGIN_ENTRY_V1, path, (int)erc);
        rc = PETAL_EPLUGIN;
        goto fail;
    }
    rc = check_info(p, &info, expect_kind, err, err_cap);
    if (rc != 0) {
        goto fail;
    }

    p->info = info;
    p->info.struct_size = (uint32_t)sizeof(p->info);
    p->info.client = info.kind == PETAL_PLUGIN_CLIENT ? &p->client : NULL;
    p->info.server = info.kind == PETAL_PLUGIN_SERVER ? &p->server : NULL;
    if (p->info.name == NULL) {
        p->info.name = "";
    }
    if (p->info.version == NULL) {
        p->info.version = "";
    }
    free(dlpath);
    *out = p;
    return 0;

nomem:
    errf(err, err_cap, "cannot load plugin %s: out of memory", path);
    rc = PETAL_ENOMEM;
fail:
    if (p != NULL) {
        if (p->dl != NULL) {
            dlclose(p->dl);
        }
        free(p->path);
        free(p);
    }
    free(dlpath);
    return rc;
}

const petal_plugin_info_t *
pt_plugin_info(const pt_plugin_t *p)
{
    return p != NULL ? &p->info : NULL;
}

const char *
pt_plugin_path(const pt_plugin_t *p)
{
    return p != NULL ? p->path : "";
}

void
pt_plugin_unload(pt_plugin_t *p)
{
    if (p == NULL) {
        return;
    }
    dlclose(p->dl);
    free(p->path);
    free(p);
}
