/* serverapp.h - the ServerApp host: runs a server main(grid, context) on its own thread. */
#ifndef PT_SERVERAPP_H
#define PT_SERVERAPP_H

#include <stdint.h>

#include <petal/petal.h>

#include "runtime/actor.h"

/*
 * The host loads the app's server plugin (or uses the built-in default server), makes the
 * run's Context (node id 0) and a Grid that talks to the SuperLink actor through its mailbox,
 * and calls main() on a thread of its own (thread isolation). When main returns it sends
 * PT_SL_RUN_DONE to the SuperLink.
 */
typedef struct pt_serverapp pt_serverapp_t;

/* Callbacks from the ServerApp thread while a run goes on; all optional. */
typedef struct pt_run_observer {
    void *ctx;
    void (*on_metrics)(void *ctx, uint64_t run_id, uint32_t round, const char *phase,
                       const petal_metricrecord_t *m);
    void (*on_progress)(void *ctx, uint64_t run_id, uint64_t answered, uint64_t total);
    void (*on_final_arrays)(void *ctx, uint64_t run_id, const petal_arrayrecord_t *arrays);
    /* On the loop thread, when the run finished: pt_run_result_t and why it failed. */
    void (*on_done)(void *ctx, uint64_t run_id, int result, const char *reason);
} pt_run_observer_t;

/* Starts the run's ServerApp thread. `run_config` is copied. With `self_exe` non-NULL the
 * ServerApp's main() runs in a child process (`self_exe --serverapp-child FD`, process
 * isolation) whose Grid calls this thread serves. Loop thread. */
int pt_serverapp_start(pt_runtime_t *rt, pt_actor_t *superlink, uint64_t run_id,
                       const char *app_dir, const petal_configrecord_t *run_config,
                       pt_run_observer_t *observer, const char *self_exe, pt_serverapp_t **out);
/* Asks the run to stop: Grid calls return PETAL_ECLOSED from now on (a waiting one at once), so
 * main() returns. Any thread. */
void pt_serverapp_stop(pt_serverapp_t *s);
/* Joins the thread (after PT_SL_RUN_DONE arrived) and frees the host. */
void pt_serverapp_join(pt_serverapp_t *s);

#endif
