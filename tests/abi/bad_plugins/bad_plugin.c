/* bad_plugin.c - one broken plugin per BAD_* define, for the loader's error tests. */
#include <petal/plugin.h>

/*
 * Built once per case by tests/abi/CMakeLists.txt with -DBAD_<CASE>:
 *   NO_ENTRY       exports petal_plugin_entry_v0 instead of the v1 entry point
 *   ENTRY_EABI     the entry point refuses the host (PETAL_EABI)
 *   ABI_V2         info->abi_version = 2
 *   ENTRY_EPLUGIN  the entry point fails (PETAL_EPLUGIN)
 *   ENTRY_POSITIVE the entry point returns 3
 *   SERVER_KIND    a valid ServerApp (loaded where a ClientApp is expected)
 *   NULL_OPS       a ClientApp without ops
 *   SMALL_OPS      client ops with struct_size 16
 *   OPS_ABI3       client ops with abi_version 3
 *   NO_HANDLER     client ops with every handler NULL
 *   UNKNOWN_KIND   kind = 9
 *   UNDEFINED_SYM  calls a function nobody defines (a plugin that links against nothing but
 *                  calls petal functions directly instead of through the table)
 */

PETAL_PLUGIN_INIT;

static int32_t
bad_train(void *app, petal_context_t *ctx, const petal_message_t *msg, petal_recorddict_t *reply)
{
    (void)app;
    (void)ctx;
    (void)msg;
    (void)reply;
    return 0;
}

static int32_t
bad_main(petal_grid_t *grid, petal_context_t *ctx)
{
    (void)grid;
    (void)ctx;
    return 0;
}

static const petal_client_ops_t client_ops = {
    .struct_size = sizeof(petal_client_ops_t),
#if defined(BAD_OPS_ABI3)
    .abi_version = 3,
#else
    .abi_version = PETAL_ABI_VERSION,
#endif
#if !defined(BAD_NO_HANDLER)
    .train = bad_train,
#endif
};

static const petal_client_ops_t small_ops = {
    .struct_size = 16, .abi_version = PETAL_ABI_VERSION, .train = bad_train};

static const petal_server_ops_t server_ops = {
    .struct_size = sizeof(petal_server_ops_t),
    .abi_version = PETAL_ABI_VERSION,
    .main = bad_main,
};

#if defined(BAD_UNDEFINED_SYM)
void petal_function_that_does_not_exist(void);
#endif

#if defined(BAD_NO_ENTRY)
#define ENTRY petal_plugin_entry_v0
#else
#define ENTRY petal_plugin_entry_v1
#endif

PETAL_PLUGIN_EXPORT int32_t ENTRY(const petal_host_api_v1_t *host, petal_plugin_info_t *info);

PETAL_PLUGIN_EXPORT int32_t
ENTRY(const petal_host_api_v1_t *host, petal_plugin_info_t *info)
{
    PETAL_PLUGIN_ENTRY_BEGIN(host);
    info->abi_version = PETAL_ABI_VERSION;
    info->kind = PETAL_PLUGIN_CLIENT;
    info->name = "bad";
    info->version = "0";
    info->client = &client_ops;
    (void)small_ops;
    (void)server_ops;
#if defined(BAD_ENTRY_EABI)
    return PETAL_EABI;
#elif defined(BAD_ABI_V2)
    info->abi_version = 2;
#elif defined(BAD_ENTRY_EPLUGIN)
    return PETAL_EPLUGIN;
#elif defined(BAD_ENTRY_POSITIVE)
    return 3;
#elif defined(BAD_SERVER_KIND)
    info->kind = PETAL_PLUGIN_SERVER;
    info->client = NULL;
    info->server = &server_ops;
#elif defined(BAD_NULL_OPS)
    info->client = NULL;
#elif defined(BAD_SMALL_OPS)
    info->client = &small_ops;
#elif defined(BAD_UNKNOWN_KIND)
    info->kind = 9;
#elif defined(BAD_UNDEFINED_SYM)
    petal_function_that_does_not_exist();
#endif
    return 0;
}
