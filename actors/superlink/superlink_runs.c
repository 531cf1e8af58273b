/* superlink_runs.c - runs on the SuperLink: start, stop, finish, logs and the history recorder. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actors/params.h"
#include "actors/protocol.h"
#include "runtime/log.h"
#include "runtime/message.h"

#include "superlink_internal.h"

/* ---- The recorder: what a deployed run reports becomes its log and history ------------------ */

static double
mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Posts a log line from the ServerApp thread to the SuperLink actor. */
static void
post_log(run_entry_t *re, const char *line)
{
    pt_sl_log_t *l = pt_sl_msg_alloc(PT_SL_LOG, sizeof(*l));
    if (l == NULL) {
        return;
    }
    l->run_id = re->run_id;
    snprintf(l->line, sizeof(l->line), "%s", line);
    if (pt_actor_send(re->sl->actor, &l->hdr) != 0) {
        free(l);
    }
}

static void
rec_metrics(void *ctx, uint64_t run_id, uint32_t round, const char *phase,
            const petal_metricrecord_t *m)
{
    (void)run_id;
    run_entry_t *re = ctx;
    if (pt_history_add(re->history, round, phase, m) != 0) {
        return;
    }
    pt_history_set_round_time(re->history, round, mono_seconds() - re->round_started);
    if (strcmp(phase, re->expect_evaluate ? "evaluate" : "train") == 0) {
        char line[512];
        pt_history_format_round(re->history, round, re->num_rounds, line, sizeof(line));
        post_log(re, line);
        re->round_started = mono_seconds();
    }
}

static void
rec_final_arrays(void *ctx, uint64_t run_id, const petal_arrayrecord_t *arrays)
{
    (void)run_id;
    run_entry_t *re = ctx;
    pt_history_set_final_arrays(re->history, arrays);
}

/* ---- Logs --------------------------------------------------------------------------------------
 */

void
pt_sl_run_log(pt_superlink_t *sl, uint64_t run_id, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (sl->ls->ops->log_append(sl->ls, run_id, line) != 0) {
        PT_WARN("run %llu: cannot store a log line", (unsigned long long)run_id);
        return;
    }
    for (log_follower_t *f = sl->followers; f != NULL; f = f->next) {
        if (f->run_id == run_id) {
            pt_sl_control_send_log(sl, f->lc, run_id, UINT64_MAX); /* the newest lines */
        }
    }
}

/* ---- Lifecycle
 * ----------------------------------------------------------------------------------- */

static int64_t
config_i64(const petal_configrecord_t *c, const char *key, int64_t dflt)
{
    petal_value_t v;
    int64_t x;
    return c && petal_configrecord_get(c, key, &v) == 0 && petal_value_as_i64(&v, &x) == 0 ? x
                                                                                           : dflt;
}

static double
config_f64(const petal_configrecord_t *c, const char *key, double dflt)
{
    petal_value_t v;
    double x;
    return c && petal_configrecord_get(c, key, &v) == 0 && petal_value_as_f64(&v, &x) == 0 ? x
                                                                                           : dflt;
}

int
pt_sl_run_start(pt_superlink_t *sl, const char *app_dir, const char *bundle_hash,
                petal_recorddict_t *config_holder, pt_run_observer_t *observer, uint64_t *run_id,
                char *err, size_t err_cap)
{
    double now = pt_now_seconds();
    uint64_t id;
    int rc = sl->ls->ops->run_create(sl->ls, app_dir, bundle_hash, config_holder, now, &id);
    if (rc != 0) {
        snprintf(err, err_cap, "cannot record the run: %s", petal_strerror(rc));
        return rc;
    }
    pt_run_rec_t run;
    sl->ls->ops->run_get(sl->ls, id, &run);
    sl->ls->ops->run_set_status(sl->ls, id, PT_RUN_STARTING, PT_RUN_NONE, NULL, now);
    run_entry_t *re = calloc(1, sizeof(*re));
    if (re == NULL || pt_u64map_put(&sl->runs, id, re) != 0) {
        free(re);
        snprintf(err, err_cap, "out of memory");
        sl->ls->ops->run_set_status(sl->ls, id, PT_RUN_FINISHED, PT_RUN_FAILED, err, now);
        return PETAL_ENOMEM;
    }
    re->run_id = id;
    re->sl = sl;
    re->num_rounds = config_i64(run.run_config, "num-server-rounds", 3);
    re->expect_evaluate = config_f64(run.run_config, "fraction-evaluate", 1.0) > 0;
    re->round_started = mono_seconds();
    if (observer != NULL) {
        re->observer = observer;
    } else {
        re->history = pt_history_alloc();
        if (re->history != NULL) {
            pt_history_set_config(re->history, run.run_config);
        }
        re->recorder.ctx = re;
        re->recorder.on_metrics = rec_metrics;
        re->recorder.on_final_arrays = rec_final_arrays;
        re->observer = &re->recorder;
    }
    rc = pt_serverapp_start(sl->rt, sl->actor, id, run.app_dir, run.run_config, re->observer,
                            sl->opts.serverapp_exe, &re->serverapp);
    if (rc != 0) {
        snprintf(err, err_cap, "cannot start the ServerApp: %s", petal_strerror(rc));
        sl->ls->ops->run_set_status(sl->ls, id, PT_RUN_FINISHED, PT_RUN_FAILED, err, now);
        re->done = 1;
        return rc;
    }
    sl->running_runs++;
    sl->ls->ops->run_set_status(sl->ls, id, PT_RUN_RUNNING, PT_RUN_NONE, NULL, now);
    pt_sl_run_log(sl, id, "run %llu started: app %s%s%s", (unsigned long long)id,
                  bundle_hash ? "bundle " : "", bundle_hash ? bundle_hash : app_dir,
                  re->num_rounds > 0 ? "" : "");
    PT_INFO("run %llu started (%s %s)", (unsigned long long)id, bundle_hash ? "bundle" : "app",
            bundle_hash ? bundle_hash : app_dir);
    *run_id = id;
    return 0;
}

void
pt_sl_run_done(pt_superlink_t *sl, pt_sl_run_done_t *d)
{
    run_entry_t *re = pt_u64map_get(&sl->runs, d->run_id);
    if (re == NULL || re->done) {
        return;
    }
    pt_serverapp_join(re->serverapp);
    re->serverapp = NULL;
    re->done = 1;
    int result = d->result;
    const char *reason = d->reason;
    if (re->stop_requested) {
        result = PT_RUN_STOPPED;
        reason = "stopped by request (petal stop)";
    }
    sl->ls->ops->run_set_status(sl->ls, d->run_id, PT_RUN_FINISHED, result, reason,
                                pt_now_seconds());
    pt_sl_run_log(sl, d->run_id, "run %llu %s%s%s", (unsigned long long)d->run_id,
                  pt_run_status_name(PT_RUN_FINISHED, result), reason[0] ? ": " : "", reason);
    PT_INFO("run %llu %s%s%s", (unsigned long long)d->run_id,
            pt_run_status_name(PT_RUN_FINISHED, result), reason[0] ? ": " : "", reason);
    if (re->observer != NULL && re->observer->on_done != NULL) {
        re->observer->on_done(re->observer->ctx, d->run_id, result, reason);
    }
    /* Followers get the end of the log (with finished = 1). */
    for (log_follower_t **p = &sl->followers; *p != NULL;) {
        log_follower_t *f = *p;
        if (f->run_id == d->run_id) {
            pt_sl_control_send_log(sl, f->lc, d->run_id, UINT64_MAX);
            *p = f->next;
            free(f);
        } else {
            p = &f->next;
        }
    }
    sl->running_runs--;
    if (sl->opts.exit_when_idle && sl->running_runs == 0) {
        pt_runtime_shutdown(sl->rt);
    }
}

int
pt_sl_run_stop(pt_superlink_t *sl, uint64_t run_id)
{
    run_entry_t *re = pt_u64map_get(&sl->runs, run_id);
    if (re == NULL) {
        pt_run_rec_t run;
        return sl->ls->ops->run_get(sl->ls, run_id, &run) == 0 ? PETAL_ESTATE : PETAL_ENOENT;
    }
    if (re->done) {
        return PETAL_ESTATE;
    }
    re->stop_requested = 1;
    pt_serverapp_stop(re->serverapp);
    pt_sl_run_log(sl, run_id, "run %llu: stop requested", (unsigned long long)run_id);
    return 0;
}

void
pt_sl_runs_free(pt_superlink_t *sl)
{
    uint64_t key;
    void *val;
    for (size_t it = 0; pt_u64map_next(&sl->runs, &it, &key, &val);) {
        run_entry_t *re = val;
        if (re->serverapp != NULL) {
            pt_serverapp_stop(re->serverapp);
            pt_serverapp_join(re->serverapp);
        }
        pt_history_free(re->history);
        free(re);
    }
    pt_u64map_fini(&sl->runs);
}
