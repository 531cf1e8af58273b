/* grid.c - petal_grid_*(): validate the grid and dispatch to its ops table (runtime/grid.h). */
#include "grid.h"

/* A NULL grid is the caller's mistake (EINVAL); a grid without the op is a host that cannot
 * do it in this state, e.g. a ClientApp-side context (ESTATE). */
#define GRID_OP(g, op)                                                                             \
    do {                                                                                           \
        if ((g) == NULL) {                                                                         \
            return PETAL_EINVAL;                                                                   \
        }                                                                                          \
        if ((g)->ops == NULL || (g)->ops->op == NULL) {                                            \
            return PETAL_ESTATE;                                                                   \
        }                                                                                          \
    } while (0)

int64_t
petal_grid_node_ids(petal_grid_t *g, uint64_t *ids, uint64_t cap)
{
    GRID_OP(g, node_ids);
    if (ids == NULL && cap > 0) {
        return PETAL_EINVAL;
    }
    return g->ops->node_ids(g, ids, cap);
}

int64_t
petal_grid_send_and_stream(petal_grid_t *g, petal_message_t **msgs, uint64_t n, double timeout,
                           petal_reply_cb cb, void *cb_ctx)
{
    GRID_OP(g, send_and_stream);
    if ((msgs == NULL && n > 0) || cb == NULL || !(timeout >= 0.0)) {
        return PETAL_EINVAL;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (msgs[i] == NULL) {
            return PETAL_EINVAL;
        }
    }
    return g->ops->send_and_stream(g, msgs, n, timeout, cb, cb_ctx);
}

int64_t
petal_grid_push(petal_grid_t *g, petal_message_t *m)
{
    GRID_OP(g, push);
    if (m == NULL) {
        return PETAL_EINVAL;
    }
    return g->ops->push(g, m);
}

int32_t
petal_grid_pull(petal_grid_t *g, uint64_t message_id, double timeout, petal_message_t **reply)
{
    GRID_OP(g, pull);
    if (reply == NULL || message_id == 0 || !(timeout >= 0.0)) {
        return PETAL_EINVAL;
    }
    return g->ops->pull(g, message_id, timeout, reply);
}

int32_t
petal_grid_record_metrics(petal_grid_t *g, uint32_t round, const char *phase,
                          const petal_metricrecord_t *metrics)
{
    GRID_OP(g, record_metrics);
    if (round == 0 || phase == NULL || phase[0] == '\0' || metrics == NULL) {
        return PETAL_EINVAL;
    }
    return g->ops->record_metrics(g, round, phase, metrics);
}

int32_t
petal_grid_set_final_arrays(petal_grid_t *g, const petal_arrayrecord_t *arrays)
{
    GRID_OP(g, set_final_arrays);
    if (arrays == NULL) {
        return PETAL_EINVAL;
    }
    return g->ops->set_final_arrays(g, arrays);
}
