/* serverapp.c - the ServerApp host: a thread running main(grid, context), and its Grid. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/serverapp/default_server.h"
#include "actors/serverapp/serverapp_process.h"
#include "actors/superlink/superlink.h"
#include "runtime/config.h"
#include "runtime/context.h"
#include "runtime/grid.h"
#include "runtime/log.h"
#include "runtime/message.h"
#include "runtime/plugin.h"
#include "runtime/u64map.h"

#include "serverapp.h"

#define DEFAULT_TIMEOUT_S 3600.0

struct pt_serverapp {
    struct petal_grid grid; /* first: petal_grid_t* <-> pt_serverapp_t* */
    pt_runtime_t *rt;
    pt_actor_t *superlink;
    uint64_t run_id;
    char *app_dir;
    petal_recorddict_t *config_holder; /* our copy of the run config */
    pt_run_observer_t *observer;
    char *self_exe; /* process isolation: the executable to start as the child; else NULL */
    pthread_t thread;
    int thread_started;
    pt_u64map_t pulls;    /* message id -> pt_waiter_t* for grid_push/grid_pull */
    pthread_mutex_t mu;   /* guards current and stopping (pt_serverapp_stop is any thread) */
    pt_waiter_t *current; /* what the ServerApp thread waits on */
    int stopping;
};

/* Marks what the ServerApp thread waits on, so a stop can wake it; fails once stopping. */
static int
set_current(pt_serverapp_t *s, pt_waiter_t *w)
{
    pthread_mutex_lock(&s->mu);
    int stopping = s->stopping;
    s->current = stopping ? NULL : w;
    pthread_mutex_unlock(&s->mu);
    return stopping && w != NULL ? PETAL_ECLOSED : 0;
}

static int
is_stopping(pt_serverapp_t *s)
{
    pthread_mutex_lock(&s->mu);
    int stopping = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return stopping;
}

void
pt_serverapp_stop(pt_serverapp_t *s)
{
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    if (s->current != NULL) {
        pt_waiter_cancel(s->current, NULL, NULL);
    }
    pthread_mutex_unlock(&s->mu);
}

/* ---- Grid ---------------------------------------------------------------------------------- */

static pt_serverapp_t *
grid_host(petal_grid_t *g)
{
    return (pt_serverapp_t *)g;
}

static int64_t
grid_node_ids(petal_grid_t *g, uint64_t *ids, uint64_t cap)
{
    pt_serverapp_t *s = grid_host(g);
    if (is_stopping(s)) {
        return PETAL_ECLOSED;
    }
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    pt_sl_sync_t sync = {.mu = &mu, .cv = &cv, .done = 0};
    pt_sl_node_ids_t q;
    memset(&q, 0, sizeof(q));
    q.hdr.type = PT_SL_NODE_IDS;
    q.sync = &sync;
    q.ids = ids;
    q.cap = ids ? cap : 0;
    int rc = pt_actor_send(s->superlink, &q.hdr);
    if (rc != 0) {
        return rc;
    }
    pthread_mutex_lock(&mu);
    while (!sync.done) {
        pthread_cond_wait(&cv, &mu);
    }
    pthread_mutex_unlock(&mu);
    return q.result;
}

/* Hands msgs (owned on success) and a waiter reference to the SuperLink. */
static int
push_to_superlink(pt_serverapp_t *s, pt_waiter_t *w, petal_message_t **msgs, uint64_t n)
{
    pt_sl_push_t *p = pt_sl_msg_alloc(PT_SL_PUSH, sizeof(*p));
    petal_message_t **copy = malloc(n * sizeof(*copy));
    if (p == NULL || copy == NULL) {
        free(p);
        free(copy);
        return PETAL_ENOMEM;
    }
    memcpy(copy, msgs, n * sizeof(*copy));
    p->run_id = s->run_id;
    p->waiter = w;
    p->msgs = copy;
    p->n = n;
    pt_waiter_hold(w);
    int rc = pt_actor_send(s->superlink, &p->hdr);
    if (rc != 0) {
        pt_waiter_release(w);
        free(copy);
        free(p);
    }
    return rc;
}

static void
cancel_at_superlink(pt_serverapp_t *s, pt_waiter_t *w)
{
    pt_sl_cancel_t *c = pt_sl_msg_alloc(PT_SL_CANCEL, sizeof(*c));
    if (c == NULL) {
        return;
    }
    c->waiter = w;
    pt_waiter_hold(w);
    if (pt_actor_send(s->superlink, &c->hdr) != 0) {
        pt_waiter_release(w);
        free(c);
    }
}

static uint64_t
deadline_after(double timeout)
{
    if (!(timeout > 0)) {
        timeout = DEFAULT_TIMEOUT_S;
    }
    return pt_waiter_now_ms() + (uint64_t)(timeout * 1000.0);
}

static int64_t
grid_send_and_stream(petal_grid_t *g, petal_message_t **msgs, uint64_t n, double timeout,
                     petal_reply_cb cb, void *cb_ctx)
{
    pt_serverapp_t *s = grid_host(g);
    if (n == 0) {
        return 0;
    }
    if (msgs == NULL) {
        return PETAL_EINVAL;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (msgs[i] == NULL || petal_message_content(msgs[i]) == NULL) {
            return PETAL_EINVAL;
        }
    }
    /* Keep each message's metadata to explain a reply that never comes. */
    petal_metadata_t *sent = malloc(n * sizeof(*sent));
    uint64_t *slots = malloc(n * sizeof(*slots));
    pt_waiter_t *w = pt_waiter_alloc(n);
    if (sent == NULL || slots == NULL || w == NULL) {
        free(sent);
        free(slots);
        pt_waiter_release(w);
        return PETAL_ENOMEM;
    }
    for (uint64_t i = 0; i < n; i++) {
        petal_metadata_t *md = pt_message_md(msgs[i]);
        md->run_id = s->run_id;
        md->message_id = pt_superlink_new_message_id();
        sent[i] = *md;
    }
    int rc = set_current(s, w);
    if (rc == 0) {
        rc = push_to_superlink(s, w, msgs, n);
    }
    if (rc != 0) {
        set_current(s, NULL);
        free(sent);
        free(slots);
        pt_waiter_release(w);
        return rc;
    }
    uint64_t deadline = deadline_after(timeout);
    int64_t delivered = 0;
    int stop = 0;
    while ((uint64_t)delivered < n && !stop) {
        petal_message_t *r = pt_waiter_next(w, deadline);
        if (r == NULL) {
            break;
        }
        delivered++;
        stop = cb != NULL && cb(cb_ctx, r) != 0;
        petal_message_free(r);
        if (s->observer != NULL && s->observer->on_progress != NULL) {
            s->observer->on_progress(s->observer->ctx, s->run_id, (uint64_t)delivered, n);
        }
    }
    if ((uint64_t)delivered < n) {
        uint64_t missing = pt_waiter_cancel(w, NULL, slots);
        cancel_at_superlink(s, w);
        /* Replies that raced with the cancel are still queued: hand them over first. */
        petal_message_t *r;
        while (!stop && (r = pt_waiter_next(w, 0)) != NULL) {
            delivered++;
            stop = cb != NULL && cb(cb_ctx, r) != 0;
            petal_message_free(r);
        }
        for (uint64_t k = 0; k < missing && !stop; k++) {
            const petal_metadata_t *md = &sent[slots[k]];
            petal_metadata_t rmd = *md;
            rmd.message_id = 0;
            rmd.src_node_id = md->dst_node_id;
            rmd.dst_node_id = md->src_node_id;
            rmd.reply_to_message_id = md->message_id;
            rmd.created_at = pt_now_seconds();
            char reason[160];
            if (is_stopping(s)) {
                snprintf(reason, sizeof(reason),
                         "the run is stopping: node %llu's reply is no "
                         "longer awaited",
                         (unsigned long long)md->dst_node_id);
            } else {
                snprintf(reason, sizeof(reason), "no reply from node %llu within %.1f s",
                         (unsigned long long)md->dst_node_id,
                         timeout > 0 ? timeout : DEFAULT_TIMEOUT_S);
            }
            petal_message_t *err =
                pt_message_alloc_error(&rmd, PETAL_E_REPLY_MESSAGE_UNAVAILABLE, reason);
            if (err == NULL) {
                continue;
            }
            delivered++;
            stop = cb != NULL && cb(cb_ctx, err) != 0;
            petal_message_free(err);
        }
    }
    set_current(s, NULL);
    free(sent);
    free(slots);
    pt_waiter_release(w);
    return delivered;
}

static int64_t
grid_push(petal_grid_t *g, petal_message_t *m)
{
    pt_serverapp_t *s = grid_host(g);
    if (m == NULL || petal_message_content(m) == NULL) {
        return PETAL_EINVAL;
    }
    pt_waiter_t *w = pt_waiter_alloc(1);
    if (w == NULL) {
        return PETAL_ENOMEM;
    }
    petal_metadata_t *md = pt_message_md(m);
    md->run_id = s->run_id;
    md->message_id = pt_superlink_new_message_id();
    uint64_t id = md->message_id;
    int rc = pt_u64map_put(&s->pulls, id, w);
    if (rc == 0) {
        rc = push_to_superlink(s, w, &m, 1);
        if (rc != 0) {
            pt_u64map_del(&s->pulls, id);
        }
    }
    if (rc != 0) {
        pt_waiter_release(w);
        return rc;
    }
    return (int64_t)id;
}

static int32_t
grid_pull(petal_grid_t *g, uint64_t message_id, double timeout, petal_message_t **reply)
{
    pt_serverapp_t *s = grid_host(g);
    pt_waiter_t *w = pt_u64map_get(&s->pulls, message_id);
    if (w == NULL || reply == NULL) {
        return PETAL_ENOENT;
    }
    if (set_current(s, w) != 0) {
        return PETAL_ECLOSED;
    }
    petal_message_t *r = pt_waiter_next(w, deadline_after(timeout));
    set_current(s, NULL);
    if (r == NULL) {
        return is_stopping(s) ? PETAL_ECLOSED : PETAL_ETIMEDOUT; /* timed out: pull again later */
    }
    pt_u64map_del(&s->pulls, message_id);
    pt_waiter_release(w);
    *reply = r;
    return 0;
}

static int32_t
grid_record_metrics(petal_grid_t *g, uint32_t round, const char *phase,
                    const petal_metricrecord_t *metrics)
{
    pt_serverapp_t *s = grid_host(g);
    if (phase == NULL || phase[0] == '\0') {
        return PETAL_EINVAL;
    }
    if (s->observer != NULL && s->observer->on_metrics != NULL) {
        s->observer->on_metrics(s->observer->ctx, s->run_id, round, phase, metrics);
    }
    return 0;
}

static int32_t
grid_set_final_arrays(petal_grid_t *g, const petal_arrayrecord_t *arrays)
{
    pt_serverapp_t *s = grid_host(g);
    if (arrays == NULL) {
        return PETAL_EINVAL;
    }
    if (s->observer != NULL && s->observer->on_final_arrays != NULL) {
        s->observer->on_final_arrays(s->observer->ctx, s->run_id, arrays);
    }
    return 0;
}

static struct pt_runtime *
grid_runtime(petal_grid_t *g)
{
    return grid_host(g)->rt;
}

static const pt_grid_ops_t serverapp_grid_ops = {
    .node_ids = grid_node_ids,
    .send_and_stream = grid_send_and_stream,
    .push = grid_push,
    .pull = grid_pull,
    .record_metrics = grid_record_metrics,
    .set_final_arrays = grid_set_final_arrays,
    .runtime = grid_runtime,
};

/* ---- The ServerApp thread ----------------------------------------------------------------- */

static void
finish(pt_serverapp_t *s, int result, const char *reason)
{
    pt_sl_run_done_t *d = pt_sl_msg_alloc(PT_SL_RUN_DONE, sizeof(*d));
    if (d == NULL) {
        PT_ERROR("run %llu: out of memory reporting its end", (unsigned long long)s->run_id);
        return;
    }
    d->run_id = s->run_id;
    d->result = result;
    snprintf(d->reason, sizeof(d->reason), "%s", reason ? reason : "");
    if (pt_actor_send(s->superlink, &d->hdr) != 0) {
        free(d);
    }
}

static void *
serverapp_thread(void *arg)
{
    pt_serverapp_t *s = arg;
    pt_log_set_name("serverapp");
    char err[512] = "";
    pt_manifest_t *manifest = NULL;
    pt_plugin_t *plugin = NULL;
    petal_context_t *ctx = NULL;
    int32_t (*main_fn)(petal_grid_t *, petal_context_t *) = pt_default_server_main;

    int rc = pt_manifest_load(s->app_dir, &manifest, err, sizeof(err));
    if (rc != 0) {
        goto fail;
    }
    if (manifest->server_path != NULL && s->self_exe == NULL) {
        rc = pt_plugin_load(manifest->server_path, PETAL_PLUGIN_SERVER, &plugin, err, sizeof(err));
        if (rc != 0) {
            goto fail;
        }
        main_fn = pt_plugin_info(plugin)->server->main;
    }
    petal_recorddict_t *holder = pt_recorddict_clone(s->config_holder);
    pt_run_config_t *rcfg = holder ? pt_run_config_alloc(holder) : NULL;
    if (rcfg == NULL) {
        petal_recorddict_free(holder);
        rc = PETAL_ENOMEM;
        snprintf(err, sizeof(err), "out of memory");
        goto fail;
    }
    ctx = pt_context_alloc(s->run_id, PETAL_SERVER_NODE_ID, rcfg, NULL);
    pt_run_config_release(rcfg);
    if (ctx == NULL) {
        rc = PETAL_ENOMEM;
        snprintf(err, sizeof(err), "out of memory");
        goto fail;
    }
    pt_context_set_grid(ctx, &s->grid);
    if (s->self_exe != NULL) {
        rc = pt_serverapp_process_run(&s->grid, ctx, s->self_exe, s->app_dir, err, sizeof(err));
        if (rc != 0) {
            goto fail;
        }
    } else {
        rc = main_fn(&s->grid, ctx);
    }
    if (rc != 0) {
        const char *why = pt_context_error(ctx);
        snprintf(err, sizeof(err), "ServerApp main failed: %s", why[0] ? why : petal_strerror(rc));
        goto fail;
    }
    pt_context_free(ctx);
    pt_plugin_unload(plugin);
    pt_manifest_free(manifest);
    finish(s, PT_RUN_COMPLETED, "");
    return NULL;
fail:
    PT_ERROR("run %llu: %s", (unsigned long long)s->run_id, err);
    pt_context_free(ctx);
    pt_plugin_unload(plugin);
    pt_manifest_free(manifest);
    finish(s, PT_RUN_FAILED, err);
    return NULL;
}

int
pt_serverapp_start(pt_runtime_t *rt, pt_actor_t *superlink, uint64_t run_id, const char *app_dir,
                   const petal_configrecord_t *run_config, pt_run_observer_t *observer,
                   const char *self_exe, pt_serverapp_t **out)
{
    pt_serverapp_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return PETAL_ENOMEM;
    }
    s->grid.ops = &serverapp_grid_ops;
    s->rt = rt;
    s->superlink = superlink;
    s->run_id = run_id;
    s->observer = observer;
    pt_u64map_init(&s->pulls);
    pthread_mutex_init(&s->mu, NULL);
    s->app_dir = strdup(app_dir);
    s->self_exe = self_exe ? strdup(self_exe) : NULL;
    s->config_holder = petal_recorddict_alloc();
    petal_configrecord_t *cfg =
        s->config_holder ? petal_recorddict_add_config(s->config_holder, PT_CONFIG_HOLDER_NAME)
                         : NULL;
    if (s->app_dir == NULL || cfg == NULL || (self_exe != NULL && s->self_exe == NULL)) {
        goto fail;
    }
    const char *name;
    petal_value_t v;
    for (uint64_t i = 0; run_config != NULL && i < petal_configrecord_count(run_config); i++) {
        if (petal_configrecord_at(run_config, i, &name, &v) == 0 &&
            petal_configrecord_set(cfg, name, &v) != 0) {
            goto fail;
        }
    }
    if (pthread_create(&s->thread, NULL, serverapp_thread, s) != 0) {
        goto fail;
    }
    s->thread_started = 1;
    *out = s;
    return 0;
fail:
    pthread_mutex_destroy(&s->mu);
    free(s->self_exe);
    free(s->app_dir);
    petal_recorddict_free(s->config_holder);
    free(s);
    return PETAL_ENOMEM;
}

void
pt_serverapp_join(pt_serverapp_t *s)
{
    if (s == NULL) {
        return;
    }
    if (s->thread_started) {
        pthread_join(s->thread, NULL);
    }
    uint64_t key;
    void *val;
    for (size_t it = 0; pt_u64map_next(&s->pulls, &it, &key, &val);) {
        pt_waiter_cancel(val, NULL, NULL);
        pt_waiter_release(val);
    }
    pt_u64map_fini(&s->pulls);
    pthread_mutex_destroy(&s->mu);
    free(s->self_exe);
    free(s->app_dir);
    petal_recorddict_free(s->config_holder);
    free(s);
}
