/* superlink_control.c - the Control API: submit, list, follow and stop runs; list nodes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "actors/params.h"
#include "actors/protocol.h"
#include "runtime/bundle.h"
#include "runtime/log.h"
#include "runtime/message.h"

#include "superlink_internal.h"

#define LOG_BATCH 256 /* lines per CONTROL_LOG frame */

static pt_frame_t *
reply_frame(uint16_t kind, const char *type, petal_configrecord_t **params)
{
    return pt_params_frame(kind, type, params);
}

/* ---- Submitting a run ------------------------------------------------------------------------ */

static void
on_start_run(pt_superlink_t *sl, link_conn_t *lc, pt_frame_t *f)
{
    char err[512], hash[65], app_dir[4096];
    const petal_recorddict_t *content = f->msg ? petal_message_content(f->msg) : NULL;
    const petal_arrayrecord_t *ar =
        content ? petal_recorddict_arrays(content, PT_BUNDLE_RECORD) : NULL;
    const petal_array_t *bytes = ar ? petal_arrayrecord_get(ar, "bytes") : NULL;
    const petal_configrecord_t *cfg = content ? petal_recorddict_config(content, "config") : NULL;
    if (bytes == NULL || petal_array_dtype(bytes) != PETAL_DTYPE_UINT8 ||
        petal_array_ndim(bytes) != 1) {
        pt_sl_send_error(lc, PETAL_EINVAL,
                         "no app bundle (uint8 array 'bytes' in "
                         "ArrayRecord 'bundle')");
        return;
    }
    const void *data = petal_array_data(bytes);
    size_t len = petal_array_nbytes(bytes);
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(digest, data, len);
    sodium_bin2hex(hash, sizeof(hash), digest, sizeof(digest));
    int rc = pt_bundle_verify(data, len, hash, err, sizeof(err));
    if (rc == 0) {
        rc = pt_bundle_cache_get(sl->cache_dir, hash, data, len, app_dir, sizeof(app_dir), err,
                                 sizeof(err));
    }
    if (rc != 0) {
        char text[700];
        snprintf(text, sizeof(text), "the app bundle was refused: %s", err);
        PT_WARN("%s (from %s)", text, pt_conn_peer(lc->conn));
        pt_sl_send_error(lc, PETAL_E_INVALID_BUNDLE, text);
        return;
    }
    rc = sl->ls->ops->bundle_put(sl->ls, hash, data, len);
    if (rc != 0) {
        pt_sl_send_error(lc, rc, "cannot store the bundle");
        return;
    }
    /* The run config as submitted (the CLI merged petal.toml and --run-config). */
    petal_recorddict_t *holder = petal_recorddict_alloc();
    petal_configrecord_t *rc_cfg = holder ? petal_recorddict_add_config(holder, "config") : NULL;
    const char *name;
    petal_value_t v;
    int ok = rc_cfg != NULL;
    for (uint64_t i = 0; ok && cfg != NULL && i < petal_configrecord_count(cfg); i++) {
        ok = petal_configrecord_at(cfg, i, &name, &v) == 0 &&
             petal_configrecord_set(rc_cfg, name, &v) == 0;
    }
    if (!ok) {
        petal_recorddict_free(holder);
        pt_sl_send_error(lc, PETAL_ENOMEM, "out of memory");
        return;
    }
    uint64_t run_id;
    rc = pt_sl_run_start(sl, app_dir, hash, holder, NULL, &run_id, err, sizeof(err));
    if (rc != 0) {
        pt_sl_send_error(lc, rc, err);
        return;
    }
    petal_configrecord_t *p;
    pt_frame_t *r = reply_frame(PT_CONTROL_RUN_STARTED, "control.run-started", &p);
    if (r == NULL) {
        return;
    }
    pt_params_set_i64(p, "run-id", (int64_t)run_id);
    pt_params_set_str(p, "bundle-hash", hash);
    pt_sl_conn_send(lc, r);
    PT_INFO("run %llu submitted from %s", (unsigned long long)run_id, pt_conn_peer(lc->conn));
}

/* ---- Listing ----------------------------------------------------------------------------------
 */

static void
on_list_runs(pt_superlink_t *sl, link_conn_t *lc)
{
    petal_configrecord_t *p;
    pt_frame_t *r = reply_frame(PT_CONTROL_RUNS, "control.runs", &p);
    if (r == NULL) {
        return;
    }
    int64_t n = sl->ls->ops->run_ids(sl->ls, NULL, 0);
    uint64_t *ids = n > 0 ? malloc((size_t)n * sizeof(*ids)) : NULL;
    if (n > 0 && ids == NULL) {
        pt_msg_free(&r->hdr);
        return;
    }
    n = n > 0 ? sl->ls->ops->run_ids(sl->ls, ids, (uint64_t)n) : 0;
    pt_params_set_i64(p, "count", n);
    petal_recorddict_t *content = pt_message_content_mut(r->msg);
    for (int64_t i = 0; i < n; i++) {
        pt_run_rec_t run;
        if (sl->ls->ops->run_get(sl->ls, ids[i], &run) != 0) {
            continue;
        }
        char name[32];
        snprintf(name, sizeof(name), "run-%llu", (unsigned long long)ids[i]);
        petal_configrecord_t *c = petal_recorddict_add_config(content, name);
        if (c == NULL) {
            break;
        }
        pt_params_set_i64(c, "run-id", (int64_t)ids[i]);
        pt_params_set_str(c, "status", pt_run_status_name(run.status, run.result));
        pt_params_set_str(c, "app",
                          run.bundle_hash && run.bundle_hash[0] ? run.bundle_hash : run.app_dir);
        pt_params_set_f64(c, "created-at", run.created_at);
        pt_params_set_f64(c, "started-at", run.started_at);
        pt_params_set_f64(c, "finished-at", run.finished_at);
        pt_params_set_str(c, "reason", run.reason ? run.reason : "");
    }
    free(ids);
    pt_sl_conn_send(lc, r);
}

static void
on_list_nodes(pt_superlink_t *sl, link_conn_t *lc)
{
    petal_configrecord_t *p;
    pt_frame_t *r = reply_frame(PT_CONTROL_NODES, "control.nodes", &p);
    if (r == NULL) {
        return;
    }
    int64_t n = sl->ls->ops->node_list(sl->ls, NULL, 0);
    pt_node_rec_t *nodes = n > 0 ? malloc((size_t)n * sizeof(*nodes)) : NULL;
    if (n > 0 && nodes == NULL) {
        pt_msg_free(&r->hdr);
        return;
    }
    n = n > 0 ? sl->ls->ops->node_list(sl->ls, nodes, (uint64_t)n) : 0;
    pt_params_set_i64(p, "count", n);
    petal_recorddict_t *content = pt_message_content_mut(r->msg);
    for (int64_t i = 0; i < n && i < 100000; i++) {
        char name[32];
        snprintf(name, sizeof(name), "node-%llu", (unsigned long long)nodes[i].node_id);
        petal_configrecord_t *c = petal_recorddict_add_config(content, name);
        if (c == NULL) {
            break;
        }
        pt_params_set_i64(c, "node-id", (int64_t)nodes[i].node_id);
        petal_value_t v = petal_value_bool(nodes[i].online);
        petal_configrecord_set(c, "online", &v);
        pt_params_set_f64(c, "last-seen", nodes[i].last_seen);
    }
    free(nodes);
    pt_sl_conn_send(lc, r);
}

/* ---- Logs ---------------------------------------------------------------------------------------
 */

typedef struct log_batch {
    const char *lines[LOG_BATCH];
    char *owned[LOG_BATCH];
    uint64_t n;
    uint64_t first;
} log_batch_t;

static void
collect_line(void *ctx, uint64_t index, const char *line)
{
    log_batch_t *b = ctx;
    if (b->n == 0) {
        b->first = index;
    }
    if (b->n < LOG_BATCH) {
        b->owned[b->n] = strdup(line);
        b->lines[b->n] = b->owned[b->n] ? b->owned[b->n] : "";
        b->n++;
    }
}

/* Where a connection is in a run's log (one followed run per CLI connection). */
static uint64_t *
position_of(link_conn_t *lc, uint64_t run_id)
{
    if (lc->log_run_id != run_id) {
        lc->log_run_id = run_id;
        lc->log_next = 0;
    }
    return &lc->log_next;
}

void
pt_sl_control_send_log(pt_superlink_t *sl, link_conn_t *lc, uint64_t run_id, uint64_t from)
{
    uint64_t *pos = position_of(lc, run_id);
    if (from != UINT64_MAX) {
        *pos = from;
    }
    pt_run_rec_t run;
    if (sl->ls->ops->run_get(sl->ls, run_id, &run) != 0) {
        pt_sl_send_error(lc, PETAL_ENOENT, "unknown run id");
        return;
    }
    int finished = run.status == PT_RUN_FINISHED;
    for (;;) {
        log_batch_t b;
        memset(&b, 0, sizeof(b));
        /* log_read gives every line from *pos; keep the first LOG_BATCH. */
        sl->ls->ops->log_read(sl->ls, run_id, *pos, collect_line, &b);
        petal_configrecord_t *p;
        pt_frame_t *r = reply_frame(PT_CONTROL_LOG, "control.log", &p);
        if (r != NULL) {
            pt_params_set_i64(p, "run-id", (int64_t)run_id);
            pt_params_set_i64(p, "from", (int64_t)*pos);
            petal_value_t v = {PETAL_VALUE_STRING_LIST, 0, b.n, {.strs = b.lines}};
            if (b.n > 0) {
                petal_configrecord_set(p, "lines", &v);
            }
            int last = b.n < LOG_BATCH;
            v = petal_value_bool(finished && last);
            petal_configrecord_set(p, "finished", &v);
            v = petal_value_bool(last); /* the end of what is logged so far */
            petal_configrecord_set(p, "last", &v);
            pt_params_set_str(p, "status", pt_run_status_name(run.status, run.result));
            pt_params_set_str(p, "reason", run.reason ? run.reason : "");
            pt_sl_conn_send(lc, r);
        }
        *pos += b.n;
        for (uint64_t i = 0; i < b.n; i++) {
            free(b.owned[i]);
        }
        if (b.n < LOG_BATCH) {
            break;
        }
    }
}

static void
on_stream_log(pt_superlink_t *sl, link_conn_t *lc, pt_frame_t *f)
{
    const petal_configrecord_t *p = pt_frame_params(f);
    int64_t run_id, from = 0;
    petal_value_t v;
    int follow = 0;
    if (pt_params_i64(p, "run-id", &run_id) != 0) {
        pt_sl_send_error(lc, PETAL_EINVAL, "run-id missing");
        return;
    }
    pt_params_i64(p, "from", &from);
    if (petal_configrecord_get(p, "follow", &v) == 0 && v.type == PETAL_VALUE_BOOL) {
        follow = v.as.boolean;
    }
    pt_run_rec_t run;
    if (sl->ls->ops->run_get(sl->ls, (uint64_t)run_id, &run) != 0) {
        char text[96];
        snprintf(text, sizeof(text), "no run %lld", (long long)run_id);
        pt_sl_send_error(lc, PETAL_ENOENT, text);
        return;
    }
    if (follow && run.status != PT_RUN_FINISHED) {
        log_follower_t *fl = calloc(1, sizeof(*fl));
        if (fl != NULL) {
            fl->lc = lc;
            fl->run_id = (uint64_t)run_id;
            fl->next = sl->followers;
            sl->followers = fl;
        }
    }
    pt_sl_control_send_log(sl, lc, (uint64_t)run_id, from < 0 ? 0 : (uint64_t)from);
}

static void
on_stop_run(pt_superlink_t *sl, link_conn_t *lc, pt_frame_t *f)
{
    int64_t run_id;
    if (pt_params_i64(pt_frame_params(f), "run-id", &run_id) != 0) {
        pt_sl_send_error(lc, PETAL_EINVAL, "run-id missing");
        return;
    }
    int rc = pt_sl_run_stop(sl, (uint64_t)run_id);
    if (rc != 0) {
        char text[96];
        snprintf(text, sizeof(text),
                 rc == PETAL_ENOENT ? "no run %lld" : "run %lld has finished already",
                 (long long)run_id);
        pt_sl_send_error(lc, rc, text);
        return;
    }
    petal_configrecord_t *p;
    pt_frame_t *r = reply_frame(PT_CONTROL_STOPPED, "control.stopped", &p);
    if (r != NULL) {
        pt_params_set_i64(p, "run-id", run_id);
        pt_sl_conn_send(lc, r);
    }
}

/* The run's history JSON and final arrays, once it finished. */
static void
on_get_result(pt_superlink_t *sl, link_conn_t *lc, pt_frame_t *f)
{
    int64_t run_id;
    if (pt_params_i64(pt_frame_params(f), "run-id", &run_id) != 0) {
        pt_sl_send_error(lc, PETAL_EINVAL, "run-id missing");
        return;
    }
    run_entry_t *re = pt_u64map_get(&sl->runs, (uint64_t)run_id);
    if (re == NULL || !re->done || re->history == NULL) {
        pt_sl_send_error(lc, PETAL_ENOENT,
                         "the run is unknown, still running, or was recorded by an "
                         "earlier SuperLink process (its history is not kept across restarts)");
        return;
    }
    petal_configrecord_t *p;
    pt_frame_t *r = reply_frame(PT_CONTROL_RESULT, "control.result", &p);
    char *json = pt_history_json(re->history);
    if (r == NULL || json == NULL) {
        free(json);
        if (r != NULL) {
            pt_msg_free(&r->hdr);
        }
        return;
    }
    pt_params_set_i64(p, "run-id", run_id);
    pt_params_set_str(p, "history-json", json);
    free(json);
    const petal_arrayrecord_t *final = pt_history_final_arrays(re->history);
    if (final != NULL) {
        petal_arrayrecord_t *ar =
            petal_recorddict_add_arrays(pt_message_content_mut(r->msg), "arrays");
        for (uint64_t i = 0; ar != NULL && i < petal_arrayrecord_count(final); i++) {
            petal_arrayrecord_add_ref(ar, petal_arrayrecord_name_at(final, i),
                                      petal_arrayrecord_at(final, i));
        }
    }
    pt_sl_conn_send(lc, r);
}

void
pt_sl_control_frame(pt_superlink_t *sl, link_conn_t *lc, pt_frame_t *f)
{
    switch (f->kind) {
    case PT_CONTROL_START_RUN:
        on_start_run(sl, lc, f);
        break;
    case PT_CONTROL_LIST_RUNS:
        on_list_runs(sl, lc);
        break;
    case PT_CONTROL_LIST_NODES:
        on_list_nodes(sl, lc);
        break;
    case PT_CONTROL_STREAM_LOG:
        on_stream_log(sl, lc, f);
        break;
    case PT_CONTROL_STOP_RUN:
        on_stop_run(sl, lc, f);
        break;
    case PT_CONTROL_GET_RESULT:
        on_get_result(sl, lc, f);
        break;
    default:
        PT_WARN("unknown control frame kind 0x%04x from %s; closing", f->kind,
                pt_conn_peer(lc->conn));
        pt_sl_send_error(lc, PETAL_EPROTO, "unknown control request");
        pt_conn_close(lc->conn);
        break;
    }
}

void
pt_sl_control_conn_down(pt_superlink_t *sl, link_conn_t *lc)
{
    for (log_follower_t **p = &sl->followers; *p != NULL;) {
        if ((*p)->lc == lc) {
            log_follower_t *f = *p;
            *p = f->next;
            free(f);
        } else {
            p = &(*p)->next;
        }
    }
}
