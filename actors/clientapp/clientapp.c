/* clientapp.c - the ClientApp host: plugin loading and dispatch by message type. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/config.h"
#include "runtime/context.h"
#include "runtime/log.h"
#include "runtime/message.h"
#include "runtime/plugin.h"

#include "clientapp.h"

struct pt_clientapp {
    pt_plugin_t *plugin;
    const petal_client_ops_t *ops;
    void *app; /* what the plugin's init returned */
    char *path;
};

int
pt_clientapp_load(const char *app_dir, const petal_configrecord_t *run_config, pt_clientapp_t **out,
                  char *err, size_t err_cap)
{
    pt_manifest_t *manifest = NULL;
    pt_clientapp_t *ca = calloc(1, sizeof(*ca));
    if (ca == NULL) {
        snprintf(err, err_cap, "out of memory");
        return PETAL_ENOMEM;
    }
    int rc = pt_manifest_load(app_dir, &manifest, err, err_cap);
    if (rc != 0) {
        goto fail;
    }
    ca->path = strdup(manifest->client_path);
    if (ca->path == NULL) {
        rc = PETAL_ENOMEM;
        snprintf(err, err_cap, "out of memory");
        goto fail;
    }
    rc = pt_plugin_load(ca->path, PETAL_PLUGIN_CLIENT, &ca->plugin, err, err_cap);
    if (rc != 0) {
        goto fail;
    }
    ca->ops = pt_plugin_info(ca->plugin)->client;
    if (ca->ops->init != NULL) {
        rc = ca->ops->init(run_config, &ca->app);
        if (rc != 0) {
            snprintf(err, err_cap, "%s: init failed: %s", ca->path, petal_strerror(rc));
            rc = PETAL_EPLUGIN;
            goto fail;
        }
    }
    pt_manifest_free(manifest);
    *out = ca;
    return 0;
fail:
    pt_plugin_unload(ca->plugin);
    pt_manifest_free(manifest);
    free(ca->path);
    free(ca);
    return rc;
}

void
pt_clientapp_free(pt_clientapp_t *ca)
{
    if (ca == NULL) {
        return;
    }
    if (ca->ops != NULL && ca->ops->fini != NULL) {
        ca->ops->fini(ca->app);
    }
    pt_plugin_unload(ca->plugin);
    free(ca->path);
    free(ca);
}

petal_message_t *
pt_clientapp_handle(pt_clientapp_t *ca, petal_context_t *ctx, const petal_message_t *msg)
{
    const petal_metadata_t *md = pt_message_md_const(msg);
    const char *type = md->message_type;
    const char *action = NULL;
    char text[600];
    int32_t (*handler)(void *, petal_context_t *, const petal_message_t *, petal_recorddict_t *) =
        NULL;
    if (strcmp(type, "train") == 0) {
        handler = ca->ops->train;
    } else if (strcmp(type, "evaluate") == 0) {
        handler = ca->ops->evaluate;
    } else if (strcmp(type, "query") == 0) {
        action = "";
    } else if (strncmp(type, "query.", 6) == 0) {
        action = type + 6;
    } else {
        snprintf(text, sizeof(text),
                 "unknown message type '%s' (expected train, evaluate, query or query.<action>)",
                 type);
        return pt_message_alloc_error_reply(msg, PETAL_E_CLIENT_APP_RAISED_EXCEPTION, text);
    }
    if ((action != NULL && ca->ops->query == NULL) || (action == NULL && handler == NULL)) {
        snprintf(text, sizeof(text), "the ClientApp has no handler for message type '%s'", type);
        return pt_message_alloc_error_reply(msg, PETAL_E_CLIENT_APP_RAISED_EXCEPTION, text);
    }
    if (petal_message_content(msg) == NULL) {
        snprintf(text, sizeof(text), "message '%s' carries an error, not content", type);
        return pt_message_alloc_error_reply(msg, PETAL_E_CLIENT_APP_RAISED_EXCEPTION, text);
    }
    petal_recorddict_t *reply = petal_recorddict_alloc();
    if (reply == NULL) {
        return NULL;
    }
    pt_context_clear_error(ctx);
    int32_t rc = action != NULL ? ca->ops->query(ca->app, ctx, action, msg, reply)
                                : handler(ca->app, ctx, msg, reply);
    if (rc != 0) {
        petal_recorddict_free(reply);
        const char *why = pt_context_error(ctx);
        snprintf(text, sizeof(text), "%s handler failed (%s)%s%s", type, petal_strerror(rc),
                 why[0] ? ": " : "", why);
        PT_DEBUG("node %llu: %s", (unsigned long long)md->dst_node_id, text);
        return pt_message_alloc_error_reply(msg, PETAL_E_CLIENT_APP_RAISED_EXCEPTION, text);
    }
    petal_message_t *r = pt_message_alloc_reply(msg, reply);
    if (r == NULL) {
        petal_recorddict_free(reply);
    }
    return r;
}
