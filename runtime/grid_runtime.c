/* grid_runtime.c - pt_grid_runtime(): which runtime's worker pool a grid's aggregation may use. */
#include "grid.h"

struct pt_runtime *
pt_grid_runtime(petal_grid_t *g)
{
    if (g == NULL || g->ops == NULL || g->ops->runtime == NULL) {
        return NULL;
    }
    return g->ops->runtime(g);
}
