/* context.h - Context: run id, node id, run config, node config and persistent state. */
#ifndef PT_CONTEXT_H
#define PT_CONTEXT_H

#include <petal/petal.h>

/*
 * A context belongs to one (run, node). The host creates it lazily when the node first gets a
 * message of the run and keeps it across rounds; a handler uses it on one thread at a time.
 * run_config is shared by all contexts of a run (referenced, read-only); node_config and
 * state are the context's own.
 */
typedef struct pt_run_config pt_run_config_t; /* a reference-counted, read-only ConfigRecord */

/* Standalone ConfigRecords live in a RecordDict "holder" under the name "config" (created if
 * missing). A run config wraps such a holder so thousands of contexts share one, read-only,
 * reference-counted; it takes ownership of `holder` on success. */
#define PT_CONFIG_HOLDER_NAME "config"
pt_run_config_t *pt_run_config_alloc(petal_recorddict_t *holder);
void pt_run_config_hold(pt_run_config_t *rc);
void pt_run_config_release(pt_run_config_t *rc);
const petal_configrecord_t *pt_run_config_get(const pt_run_config_t *rc);

/* A new context; holds a reference on run_config; node_config_holder (a holder as above) is
 * owned on success and may be NULL for an empty node config. */
petal_context_t *pt_context_alloc(uint64_t run_id, uint64_t node_id, pt_run_config_t *run_config,
                                  petal_recorddict_t *node_config_holder);
void pt_context_free(petal_context_t *c);
/* The error text a handler set with petal_context_set_error ("" if none); cleared by
 * pt_context_clear_error. */
const char *pt_context_error(const petal_context_t *c);
void pt_context_clear_error(petal_context_t *c);
/* The run's grid, for a ServerApp context (NULL on the ClientApp side). */
void pt_context_set_grid(petal_context_t *c, petal_grid_t *g);
petal_grid_t *pt_context_grid(const petal_context_t *c);

#endif
