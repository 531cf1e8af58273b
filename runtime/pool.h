/* pool.h - internal: the worker pool's lifecycle, driven by the runtime in actor.c. */
#ifndef PT_POOL_H
#define PT_POOL_H

#include <stdint.h>

#include "actor.h"

typedef struct pt_pool pt_pool_t;

/*
 * Starts `workers` threads (0 = the number of online cores). idle_cb(ctx) is called from a
 * worker thread each time the pool becomes idle after pt_pool_close_submit(). Any thread.
 */
int pt_pool_alloc(uint32_t workers, void (*idle_cb)(void *ctx), void *ctx, pt_pool_t **out);
uint32_t pt_pool_size(const pt_pool_t *p);
/* From now on pt_pool_push fails with PETAL_ECLOSED; jobs already queued still run. */
void pt_pool_close_submit(pt_pool_t *p);
/* True when no job is queued or running. */
int pt_pool_idle(pt_pool_t *p);
int pt_pool_push(pt_pool_t *p, pt_job_t *job);
void pt_pool_run_parallel(pt_pool_t *p, uint32_t n, void (*fn)(uint32_t i, void *arg), void *arg);
/* Runs the jobs still queued, stops and joins the workers, frees the pool. */
void pt_pool_free(pt_pool_t *p);

/* The runtime's pool (defined in actor.c). */
pt_pool_t *pt_runtime_pool(pt_runtime_t *rt);

#endif
