/* u64map.h - an open-addressing hash map from non-zero uint64 keys to pointers. */
#ifndef PT_U64MAP_H
#define PT_U64MAP_H

#include <stddef.h>
#include <stdint.h>

/* Caller-owned storage (init/fini); one thread at a time. Key 0 is reserved. */
typedef struct pt_u64map {
    uint64_t *keys;
    void **vals;
    size_t cap;   /* power of two, or 0 */
    size_t count; /* live entries */
    size_t used;  /* live + deleted slots */
} pt_u64map_t;

void pt_u64map_init(pt_u64map_t *m);
void pt_u64map_fini(pt_u64map_t *m);
/* Inserts or replaces. 0, PETAL_EINVAL for key 0, or PETAL_ENOMEM. */
int pt_u64map_put(pt_u64map_t *m, uint64_t key, void *val);
/* The value, or NULL when absent. */
void *pt_u64map_get(const pt_u64map_t *m, uint64_t key);
/* Removes and returns the value, or NULL when absent. */
void *pt_u64map_del(pt_u64map_t *m, uint64_t key);
/* Iteration: for (size_t i = 0; pt_u64map_next(m, &i, &k, &v);) ... (no changes meanwhile). */
int pt_u64map_next(const pt_u64map_t *m, size_t *iter, uint64_t *key, void **val);

#endif
