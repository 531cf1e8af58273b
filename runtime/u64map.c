/* u64map.c - open addressing with linear probing and tombstones; grows at 70% load. */
#include <stdlib.h>

#include <petal/plugin.h>

#include "u64map.h"

#define TOMBSTONE UINT64_MAX

static size_t
slot_of(uint64_t key, size_t cap)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key & (cap - 1);
}

void
pt_u64map_init(pt_u64map_t *m)
{
    m->keys = NULL;
    m->vals = NULL;
    m->cap = 0;
    m->count = 0;
    m->used = 0;
}

void
pt_u64map_fini(pt_u64map_t *m)
{
    free(m->keys);
    free(m->vals);
    pt_u64map_init(m);
}

static int
rehash(pt_u64map_t *m, size_t cap)
{
    uint64_t *keys = calloc(cap, sizeof(*keys));
    void **vals = calloc(cap, sizeof(*vals));
    if (keys == NULL || vals == NULL) {
        free(keys);
        free(vals);
        return PETAL_ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        uint64_t k = m->keys[i];
        if (k == 0 || k == TOMBSTONE) {
            continue;
        }
        size_t s = slot_of(k, cap);
        while (keys[s] != 0) {
            s = (s + 1) & (cap - 1);
        }
        keys[s] = k;
        vals[s] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    m->used = m->count;
    return 0;
}

static size_t
find(const pt_u64map_t *m, uint64_t key)
{
    if (m->cap == 0) {
        return SIZE_MAX;
    }
    size_t s = slot_of(key, m->cap);
    while (m->keys[s] != 0) {
        if (m->keys[s] == key) {
            return s;
        }
        s = (s + 1) & (m->cap - 1);
    }
    return SIZE_MAX;
}

int
pt_u64map_put(pt_u64map_t *m, uint64_t key, void *val)
{
    if (key == 0 || key == TOMBSTONE) {
        return PETAL_EINVAL;
    }
    size_t at = find(m, key);
    if (at != SIZE_MAX) {
        m->vals[at] = val;
        return 0;
    }
    if ((m->used + 1) * 10 >= m->cap * 7) {
        size_t cap = m->cap == 0 ? 16 : m->cap;
        while ((m->count + 1) * 10 >= cap * 7 / 2) {
            cap *= 2;
        }
        int rc = rehash(m, cap);
        if (rc != 0) {
            return rc;
        }
    }
    size_t s = slot_of(key, m->cap);
    while (m->keys[s] != 0 && m->keys[s] != TOMBSTONE) {
        s = (s + 1) & (m->cap - 1);
    }
    if (m->keys[s] == 0) {
        m->used++;
    }
    m->keys[s] = key;
    m->vals[s] = val;
    m->count++;
    return 0;
}

void *
pt_u64map_get(const pt_u64map_t *m, uint64_t key)
{
    size_t at = find(m, key);
    return at == SIZE_MAX ? NULL : m->vals[at];
}

void *
pt_u64map_del(pt_u64map_t *m, uint64_t key)
{
    size_t at = find(m, key);
    if (at == SIZE_MAX) {
        return NULL;
    }
    void *v = m->vals[at];
    m->keys[at] = TOMBSTONE;
    m->vals[at] = NULL;
    m->count--;
    return v;
}

int
pt_u64map_next(const pt_u64map_t *m, size_t *iter, uint64_t *key, void **val)
{
    for (size_t i = *iter; i < m->cap; i++) {
        if (m->keys[i] != 0 && m->keys[i] != TOMBSTONE) {
            *key = m->keys[i];
            *val = m->vals[i];
            *iter = i + 1;
            return 1;
        }
    }
    *iter = m->cap;
    return 0;
}
