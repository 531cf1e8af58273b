/* plugin_util.h - what every example plugin repeats: errors, metrics, node partition, entry. */
#ifndef PT_PLUGIN_UTIL_H
#define PT_PLUGIN_UTIL_H

#include <stdarg.h>
#include <stdio.h>

#include <petal/data.h>
#include <petal/plugin.h>

/*
 * Header-only: the functions go through the plugin's host table (petal_host, PETAL_PLUGIN_INIT).
 * A plugin that calls plugin_fail (or anything here that reports an error) writes
 * PLUGIN_NAME("name"); once in one source file: "name: " starts every error it reports.
 */
extern PETAL_PLUGIN_HIDDEN const char plugin_name[];
#define PLUGIN_NAME(name) PETAL_PLUGIN_HIDDEN const char plugin_name[] = name

/* Reports "name: <message>" as ctx's error (or logs it when ctx is NULL) and returns rc. */
static inline int plugin_fail(petal_context_t *ctx, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline int
plugin_fail(petal_context_t *ctx, int rc, const char *fmt, ...)
{
    char buf[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (ctx != NULL) {
        petal_context_set_error(ctx, "%s: %s", plugin_name, buf);
    } else {
        petal_log(PETAL_LOG_ERROR, "%s: %s", plugin_name, buf);
    }
    return rc;
}

/* mr[name] = v; returns 0 or the error, reported. */
static inline int
plugin_set_metric(petal_context_t *ctx, petal_metricrecord_t *mr, const char *name, petal_value_t v)
{
    int rc = petal_metricrecord_set(mr, name, &v);
    if (rc < 0) {
        return plugin_fail(ctx, rc, "cannot set metric \"%s\": %s", name, petal_strerror(rc));
    }
    return 0;
}

/* Adds the MetricRecord "metrics" to reply; NULL (reported, it is PETAL_ENOMEM) on failure. */
static inline petal_metricrecord_t *
plugin_add_metrics(petal_context_t *ctx, petal_recorddict_t *reply)
{
    petal_metricrecord_t *mr = petal_recorddict_add_metrics(reply, "metrics");
    if (mr == NULL) {
        plugin_fail(ctx, PETAL_ENOMEM, "cannot add MetricRecord \"metrics\" to the reply");
    }
    return mr;
}

/* This node's share: node config "partition-id" of "num-partitions" (default 0 of 1). */
static inline int
plugin_node_partition(petal_context_t *ctx, uint32_t *pid, uint32_t *np)
{
    char err[128];
    int rc = petal_cfg_partition(petal_context_node_config(ctx), pid, np, err, sizeof(err));
    return rc < 0 ? plugin_fail(ctx, rc, "%s", err) : 0;
}

/* The message's ConfigRecord "config", or NULL. */
static inline const petal_configrecord_t *
plugin_message_config(const petal_message_t *msg)
{
    const petal_recorddict_t *content = petal_message_content(msg);
    return content != NULL ? petal_recorddict_config(content, "config") : NULL;
}

/* The body of petal_plugin_entry_v1 for a plugin of version 0.1.0 with one of the two tables. */
static inline int32_t
plugin_entry(const petal_host_api_v1_t *host, petal_plugin_info_t *info, const char *name,
             const petal_client_ops_t *client, const petal_server_ops_t *server)
{
    PETAL_PLUGIN_ENTRY_BEGIN(host);
    if (info == NULL || info->struct_size < sizeof(*info)) {
        return PETAL_EABI;
    }
    info->abi_version = PETAL_ABI_VERSION;
    info->kind = client != NULL ? PETAL_PLUGIN_CLIENT : PETAL_PLUGIN_SERVER;
    info->name = name;
    info->version = "0.1.0";
    info->client = client;
    info->server = server;
    return 0;
}

#endif
