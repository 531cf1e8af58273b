/* grid.h - the Grid behind petal_grid_*(): an ops table the ServerApp host implements. */
#ifndef PT_GRID_H
#define PT_GRID_H

#include <petal/petal.h>

/*
 * petal_grid_*() dispatch to these ops, so runtime/ does not depend on the actors that
 * implement them (the ServerApp host in actors/serverapp/). Semantics are the ones documented
 * on the table slots in plugin.h. All run on the ServerApp's thread.
 */
typedef struct pt_grid_ops {
    int64_t (*node_ids)(petal_grid_t *g, uint64_t *ids, uint64_t cap);
    int64_t (*send_and_stream)(petal_grid_t *g, petal_message_t **msgs, uint64_t n, double timeout,
                               petal_reply_cb cb, void *cb_ctx);
    int64_t (*push)(petal_grid_t *g, petal_message_t *m);
    int32_t (*pull)(petal_grid_t *g, uint64_t message_id, double timeout, petal_message_t **reply);
    int32_t (*record_metrics)(petal_grid_t *g, uint32_t round, const char *phase,
                              const petal_metricrecord_t *metrics);
    int32_t (*set_final_arrays)(petal_grid_t *g, const petal_arrayrecord_t *arrays);
    /* Optional: the runtime whose worker pool aggregation may use (NULL: aggregate serially). */
    struct pt_runtime *(*runtime)(petal_grid_t *g);
} pt_grid_ops_t;

/* Implementations embed this first in their own struct. */
struct petal_grid {
    const pt_grid_ops_t *ops;
};

/* The grid's runtime, or NULL (for pt_pool_parallel_for in aggregation). */
struct pt_runtime *pt_grid_runtime(petal_grid_t *g);

#endif
