/* executor.c - runs a run's ClientApp for a SuperNode: load once, then one call per instruction. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/clientapp/clientapp.h"
#include "actors/supernode/supernode.h"
#include "runtime/log.h"
#include "runtime/message.h"

#include "executor.h"
#include "executor_process.h"

/*
 * Thread isolation: the plugin is loaded by a pool job (its init may read a dataset) and each
 * instruction runs as a pool job; both report to the owner with PT_EXEC_DONE. free() waits for
 * jobs in flight (under `mu`), so a context is never freed under a running handler.
 */
struct pt_executor {
    pt_runtime_t *rt;
    pt_actor_t *owner;
    pt_executor_process_t *process; /* process isolation, else NULL */
    pthread_mutex_t mu;
    pthread_cond_t idle;
    uint32_t inflight; /* pool jobs not finished (under mu) */
    pt_clientapp_t *app;
    char *app_dir;
    petal_recorddict_t *run_config; /* "config" holder */
    char error[512];
};

typedef struct exec_job {
    pt_job_t job;
    pt_executor_t *e;
    petal_context_t *ctx;
    pt_frame_t *frame; /* NULL: the load job */
} exec_job_t;

void
pt_exec_done_free(pt_msg_t *m)
{
    pt_exec_done_t *d = (pt_exec_done_t *)m;
    petal_message_free(d->reply);
    free(d);
}

static void
post_done(pt_executor_t *e, int loaded, uint64_t instruction_id, petal_message_t *reply)
{
    pt_exec_done_t *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        petal_message_free(reply);
        return;
    }
    d->hdr.type = PT_EXEC_DONE;
    d->hdr.free = pt_exec_done_free;
    d->exec = e;
    d->loaded = loaded;
    d->instruction_id = instruction_id;
    d->reply = reply;
    if (pt_actor_send(e->owner, &d->hdr) != 0) {
        pt_exec_done_free(&d->hdr);
    }
}

static void
job_work(pt_job_t *job)
{
    exec_job_t *j = (exec_job_t *)job;
    pt_executor_t *e = j->e;
    if (j->frame == NULL) {
        const petal_configrecord_t *cfg = petal_recorddict_config(e->run_config, "config");
        pt_clientapp_load(e->app_dir, cfg, &e->app, e->error, sizeof(e->error));
        post_done(e, 1, 0, NULL);
        return;
    }
    const petal_message_t *msg = j->frame->msg;
    uint64_t id = pt_message_md_const(msg)->message_id;
    petal_message_t *reply = pt_clientapp_handle(e->app, j->ctx, msg);
    post_done(e, 0, id, reply);
}

static void
job_free(pt_msg_t *m)
{
    exec_job_t *j = (exec_job_t *)m;
    pt_executor_t *e = j->e;
    if (j->frame != NULL) {
        pt_msg_free(&j->frame->hdr);
    }
    free(j);
    pthread_mutex_lock(&e->mu);
    if (--e->inflight == 0) {
        pthread_cond_broadcast(&e->idle);
    }
    pthread_mutex_unlock(&e->mu);
}

static int
submit_job(pt_executor_t *e, petal_context_t *ctx, pt_frame_t *f)
{
    exec_job_t *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        return PETAL_ENOMEM;
    }
    j->job.hdr.free = job_free;
    j->job.work = job_work;
    j->job.reply_to = NULL; /* results travel as PT_EXEC_DONE; the job frees itself */
    j->e = e;
    j->ctx = ctx;
    j->frame = f;
    pthread_mutex_lock(&e->mu);
    e->inflight++;
    pthread_mutex_unlock(&e->mu);
    int rc = pt_pool_submit(e->rt, &j->job);
    if (rc != 0) {
        j->frame = NULL; /* the caller keeps f */
        job_free(&j->job.hdr);
    }
    return rc;
}

int
pt_executor_start(pt_runtime_t *rt, pt_actor_t *owner, int isolation, const char *app_dir,
                  const petal_configrecord_t *run_config, const char *self_exe, pt_executor_t **out,
                  char *err, size_t err_cap)
{
    pt_executor_t *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        snprintf(err, err_cap, "out of memory");
        return PETAL_ENOMEM;
    }
    e->rt = rt;
    e->owner = owner;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->idle, NULL);
    e->app_dir = strdup(app_dir);
    e->run_config = petal_recorddict_alloc();
    petal_configrecord_t *cfg =
        e->run_config ? petal_recorddict_add_config(e->run_config, "config") : NULL;
    const char *name;
    petal_value_t v;
    int rc = e->app_dir != NULL && cfg != NULL ? 0 : PETAL_ENOMEM;
    for (uint64_t i = 0; rc == 0 && run_config != NULL && i < petal_configrecord_count(run_config);
         i++) {
        if (petal_configrecord_at(run_config, i, &name, &v) == 0) {
            rc = petal_configrecord_set(cfg, name, &v);
        }
    }
    if (rc == 0 && isolation == PT_ISOLATION_PROCESS) {
        rc = pt_executor_process_start(rt, owner, e, app_dir, cfg, self_exe, &e->process, err,
                                       err_cap);
        if (rc == 0) {
            post_done(e, 1, 0, NULL); /* the child loads the plugin when it starts */
        }
    } else if (rc == 0) {
        rc = submit_job(e, NULL, NULL);
    }
    if (rc != 0) {
        if (rc == PETAL_ENOMEM) {
            snprintf(err, err_cap, "out of memory");
        }
        free(e->app_dir);
        petal_recorddict_free(e->run_config);
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->idle);
        free(e);
        return rc;
    }
    *out = e;
    return 0;
}

const char *
pt_executor_error(const pt_executor_t *e)
{
    return e->error;
}

int
pt_executor_submit(pt_executor_t *e, petal_context_t *ctx, pt_frame_t *f)
{
    if (e->process != NULL) {
        return pt_executor_process_submit(e->process, ctx, f);
    }
    if (e->app == NULL) {
        return PETAL_ESTATE;
    }
    return submit_job(e, ctx, f);
}

void
pt_executor_free(pt_executor_t *e)
{
    if (e == NULL) {
        return;
    }
    pt_executor_process_free(e->process);
    pthread_mutex_lock(&e->mu);
    while (e->inflight > 0) {
        pthread_cond_wait(&e->idle, &e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    pt_clientapp_free(e->app);
    free(e->app_dir);
    petal_recorddict_free(e->run_config);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->idle);
    free(e);
}
