/* server.c - a minimal ServerApp plugin; the tests install it as client.so to see it refused. */
#include <petal/plugin.h>

PETAL_PLUGIN_INIT;

static int32_t
sk_main(petal_grid_t *grid, petal_context_t *ctx)
{
    (void)grid;
    petal_context_set_error(ctx, "server_kind: this ServerApp does nothing");
    return PETAL_EPLUGIN;
}

static const petal_server_ops_t server_kind_ops = {
    .struct_size = sizeof(petal_server_ops_t),
    .abi_version = PETAL_ABI_VERSION,
    .main = sk_main,
};

PETAL_PLUGIN_EXPORT int32_t petal_plugin_entry_v1(const petal_host_api_v1_t *host,
                                                  petal_plugin_info_t *info);

PETAL_PLUGIN_EXPORT int32_t
petal_plugin_entry_v1(const petal_host_api_v1_t *host, petal_plugin_info_t *info)
{
    PETAL_PLUGIN_ENTRY_BEGIN(host);
    if (info == NULL || info->struct_size < sizeof(*info)) {
        return PETAL_EABI;
    }
    info->abi_version = PETAL_ABI_VERSION;
    info->kind = PETAL_PLUGIN_SERVER;
    info->name = "server_kind";
    info->version = "0.1.0";
    info->client = NULL;
    info->server = &server_kind_ops;
    return 0;
}
