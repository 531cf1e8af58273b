/* server.c - a ServerApp plugin whose main() segfaults: process isolation must contain it. */
#include <signal.h>

#include <petal/plugin.h>

PETAL_PLUGIN_INIT;

static int32_t
crash_main(petal_grid_t *grid, petal_context_t *ctx)
{
    (void)grid;
    (void)ctx;
    raise(SIGSEGV);
    return 0;
}

static const petal_server_ops_t crash_ops = {
    .struct_size = sizeof(petal_server_ops_t),
    .abi_version = PETAL_ABI_VERSION,
    .main = crash_main,
};

PETAL_PLUGIN_EXPORT int32_t
petal_plugin_entry_v1(const petal_host_api_v1_t *host, petal_plugin_info_t *info)
{
    PETAL_PLUGIN_ENTRY_BEGIN(host);
    info->abi_version = PETAL_ABI_VERSION;
    info->kind = PETAL_PLUGIN_SERVER;
    info->name = "crashserver";
    info->version = "0.1.0";
    info->server = &crash_ops;
    return 0;
}
