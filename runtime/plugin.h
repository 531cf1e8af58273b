/* plugin.h - the plugin loader: dlopen a .so, call its v1 entry point, validate what it returns. */
#ifndef PT_PLUGIN_H
#define PT_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include <petal/petal.h>

/*
 * pt_plugin_load() opens `path` with dlopen(RTLD_NOW | RTLD_LOCAL), calls
 * petal_plugin_entry_v1(petal_host_api(), &info) once, and checks the answer. On failure it
 * writes one line that names the path and the problem into err (if err_cap > 0) and returns:
 *   -errno (e.g. UV_ENOENT) the file cannot be opened ("cannot open plugin P: No such file...")
 *   PETAL_EPLUGIN   not a loadable shared object, entry point failed ("plugin init failed: ..."),
 *                   NULL or empty ops, unknown kind
 *   PETAL_EABI      no entry point ("no entry point petal_plugin_entry_v1 in P"), the entry
 *                   returned PETAL_EABI, info/ops abi_version != 1 or struct_size too small
 *   PETAL_EINVAL    another kind than expect_kind (a ServerApp where a ClientApp was expected)
 *   PETAL_ENOMEM
 * expect_kind is PETAL_PLUGIN_CLIENT, PETAL_PLUGIN_SERVER or 0 for either.
 *
 * The ops are copied into host-sized structs (zero-filled where an older plugin's struct is
 * shorter), so pt_plugin_info(p)->client/server are always full host-version structs.
 * Any thread may load; the handle is used read-only afterwards and may be shared by threads.
 * The caller runs client init/fini; pt_plugin_unload() only dlclose()s.
 */
typedef struct pt_plugin pt_plugin_t;

int pt_plugin_load(const char *path, uint32_t expect_kind, pt_plugin_t **out, char *err,
                   size_t err_cap);
/* Never NULL for a loaded plugin; name and version are never NULL (may be ""). */
const petal_plugin_info_t *pt_plugin_info(const pt_plugin_t *p);
/* The path the plugin was loaded from. */
const char *pt_plugin_path(const pt_plugin_t *p);
void pt_plugin_unload(pt_plugin_t *p);

/* "ClientApp" / "ServerApp" / "unknown" */
const char *pt_plugin_kind_name(uint32_t kind);

/* The smallest ops structs a v1 plugin may hand back (the v1.0 layout). */
#define PT_CLIENT_OPS_V1_MIN_SIZE                                                                  \
    (offsetof(petal_client_ops_t, fini) + sizeof(((petal_client_ops_t *)0)->fini))
#define PT_SERVER_OPS_V1_MIN_SIZE                                                                  \
    (offsetof(petal_server_ops_t, main) + sizeof(((petal_server_ops_t *)0)->main))
#define PT_PLUGIN_INFO_V1_MIN_SIZE                                                                 \
    (offsetof(petal_plugin_info_t, server) + sizeof(((petal_plugin_info_t *)0)->server))

#endif
