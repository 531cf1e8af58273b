/* context.c - Context per (run, node): ids, shared run config, node config, lazy state, errors. */
#include "context.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* The longest reason petal_context_set_error keeps (longer texts are cut). */
#define CONTEXT_ERROR_CAP 512

struct pt_run_config {
    atomic_uint refs;
    petal_recorddict_t *holder;
    const petal_configrecord_t *config;
};

/*
 * Kept small on purpose: simulation keeps one per virtual node. The node config holder, the
 * state and the error text are allocated only when used.
 */
struct petal_context {
    uint64_t run_id;
    uint64_t node_id;
    pt_run_config_t *run_config;
    petal_recorddict_t *node_config; /* a holder, or NULL for an empty node config */
    petal_recorddict_t *state;       /* allocated on first petal_context_state() */
    char *error;                     /* CONTEXT_ERROR_CAP bytes once set */
    petal_grid_t *grid;
};

/* One process-wide empty ConfigRecord for contexts without a run or node config, so plugins
 * never get NULL from petal_context_run_config()/node_config(). */
static pthread_once_t empty_once = PTHREAD_ONCE_INIT;
static petal_recorddict_t *empty_holder;
static const petal_configrecord_t *empty_config;

/* At exit (before leak checkers look): nothing may use contexts by then. */
static void
empty_fini(void)
{
    petal_recorddict_free(empty_holder);
    empty_holder = NULL;
    empty_config = NULL;
}

static void
empty_init(void)
{
    empty_holder = petal_recorddict_alloc();
    if (empty_holder != NULL) {
        empty_config = petal_recorddict_add_config(empty_holder, PT_CONFIG_HOLDER_NAME);
        atexit(empty_fini);
    }
}

static const petal_configrecord_t *
empty_configrecord(void)
{
    pthread_once(&empty_once, empty_init);
    return empty_config;
}

/* ---- run config ------------------------------------------------------------------------ */

pt_run_config_t *
pt_run_config_alloc(petal_recorddict_t *holder)
{
    if (holder == NULL) {
        return NULL;
    }
    const petal_configrecord_t *config = petal_recorddict_config(holder, PT_CONFIG_HOLDER_NAME);
    if (config == NULL) {
        config = petal_recorddict_add_config(holder, PT_CONFIG_HOLDER_NAME);
        if (config == NULL) {
            return NULL; /* out of memory, or the name holds another kind of record */
        }
    }
    pt_run_config_t *rc = malloc(sizeof(*rc));
    if (rc == NULL) {
        return NULL;
    }
    atomic_init(&rc->refs, 1);
    rc->holder = holder;
    rc->config = config;
    return rc;
}

void
pt_run_config_hold(pt_run_config_t *rc)
{
    if (rc != NULL) {
        atomic_fetch_add_explicit(&rc->refs, 1, memory_order_relaxed);
    }
}

void
pt_run_config_release(pt_run_config_t *rc)
{
    if (rc == NULL) {
        return;
    }
    if (atomic_fetch_sub_explicit(&rc->refs, 1, memory_order_acq_rel) == 1) {
        petal_recorddict_free(rc->holder);
        free(rc);
    }
}

const petal_configrecord_t *
pt_run_config_get(const pt_run_config_t *rc)
{
    return rc != NULL ? rc->config : empty_configrecord();
}

/* ---- context ---------------------------------------------------------------------------- */

petal_context_t *
pt_context_alloc(uint64_t run_id, uint64_t node_id, pt_run_config_t *run_config,
                 petal_recorddict_t *node_config_holder)
{
    petal_context_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    if (node_config_holder != NULL &&
        petal_recorddict_config(node_config_holder, PT_CONFIG_HOLDER_NAME) == NULL &&
        petal_recorddict_add_config(node_config_holder, PT_CONFIG_HOLDER_NAME) == NULL) {
        free(c);
        return NULL;
    }
    c->run_id = run_id;
    c->node_id = node_id;
    c->run_config = run_config;
    pt_run_config_hold(run_config);
    c->node_config = node_config_holder;
    return c;
}

void
pt_context_free(petal_context_t *c)
{
    if (c == NULL) {
        return;
    }
    pt_run_config_release(c->run_config);
    petal_recorddict_free(c->node_config);
    petal_recorddict_free(c->state);
    free(c->error);
    free(c);
}

const char *
pt_context_error(const petal_context_t *c)
{
    return (c != NULL && c->error != NULL) ? c->error : "";
}

void
pt_context_clear_error(petal_context_t *c)
{
    if (c != NULL) {
        free(c->error);
        c->error = NULL;
    }
}

void
pt_context_set_grid(petal_context_t *c, petal_grid_t *g)
{
    if (c != NULL) {
        c->grid = g;
    }
}

petal_grid_t *
pt_context_grid(const petal_context_t *c)
{
    return c != NULL ? c->grid : NULL;
}

/* ---- the public API (also in the host table) --------------------------------------------- */

uint64_t
petal_context_run_id(const petal_context_t *c)
{
    return c != NULL ? c->run_id : 0;
}

uint64_t
petal_context_node_id(const petal_context_t *c)
{
    return c != NULL ? c->node_id : 0;
}

const petal_configrecord_t *
petal_context_run_config(const petal_context_t *c)
{
    if (c == NULL || c->run_config == NULL) {
        return empty_configrecord();
    }
    return c->run_config->config;
}

const petal_configrecord_t *
petal_context_node_config(const petal_context_t *c)
{
    if (c == NULL || c->node_config == NULL) {
        return empty_configrecord();
    }
    return petal_recorddict_config(c->node_config, PT_CONFIG_HOLDER_NAME);
}

petal_recorddict_t *
petal_context_state(petal_context_t *c)
{
    if (c == NULL) {
        return NULL;
    }
    if (c->state == NULL) {
        c->state = petal_recorddict_alloc();
    }
    return c->state;
}

void
petal_context_set_error(petal_context_t *c, const char *fmt, ...)
{
    if (c == NULL || fmt == NULL) {
        return;
    }
    if (c->error == NULL) {
        c->error = malloc(CONTEXT_ERROR_CAP);
        if (c->error == NULL) {
            return;
        }
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->error, CONTEXT_ERROR_CAP, fmt, ap);
    va_end(ap);
    if (n < 0) {
        c->error[0] = '\0';
    }
}
