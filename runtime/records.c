/* records.c - arrays (views into shared buffers), the three record kinds and RecordDict. */
#include "runtime/message.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- Arrays -------------------------------------------------------------------------------- */

struct petal_array {
    int32_t dtype;
    uint32_t ndim;
    uint64_t shape[PETAL_MAX_NDIM];
    pt_buf_t *buf; /* one reference held by this array */
    size_t offset;
    uint64_t nbytes;
};

uint32_t
petal_dtype_size(int32_t dtype)
{
    switch (dtype) {
    case PETAL_DTYPE_FLOAT32:
    case PETAL_DTYPE_INT32:
    case PETAL_DTYPE_UINT32:
        return 4;
    case PETAL_DTYPE_FLOAT64:
    case PETAL_DTYPE_INT64:
    case PETAL_DTYPE_UINT64:
        return 8;
    case PETAL_DTYPE_INT16:
    case PETAL_DTYPE_UINT16:
        return 2;
    case PETAL_DTYPE_INT8:
    case PETAL_DTYPE_UINT8:
    case PETAL_DTYPE_BOOL:
        return 1;
    default:
        return 0;
    }
}

const char *
petal_dtype_name(int32_t dtype)
{
    switch (dtype) {
    case PETAL_DTYPE_FLOAT32:
        return "float32";
    case PETAL_DTYPE_FLOAT64:
        return "float64";
    case PETAL_DTYPE_INT8:
        return "int8";
    case PETAL_DTYPE_INT16:
        return "int16";
    case PETAL_DTYPE_INT32:
        return "int32";
    case PETAL_DTYPE_INT64:
        return "int64";
    case PETAL_DTYPE_UINT8:
        return "uint8";
    case PETAL_DTYPE_UINT16:
        return "uint16";
    case PETAL_DTYPE_UINT32:
        return "uint32";
    case PETAL_DTYPE_UINT64:
        return "uint64";
    case PETAL_DTYPE_BOOL:
        return "bool";
    default:
        return "?";
    }
}

int32_t
petal_array_dtype(const petal_array_t *a)
{
    return a != NULL ? a->dtype : PETAL_EINVAL;
}

uint32_t
petal_array_ndim(const petal_array_t *a)
{
    return a != NULL ? a->ndim : 0;
}

const uint64_t *
petal_array_shape(const petal_array_t *a)
{
    return a != NULL ? a->shape : NULL;
}

uint64_t
petal_array_numel(const petal_array_t *a)
{
    uint32_t size;

    if (a == NULL) {
        return 0;
    }
    size = petal_dtype_size(a->dtype);
    return size != 0 ? a->nbytes / size : 0;
}

uint64_t
petal_array_nbytes(const petal_array_t *a)
{
    return a != NULL ? a->nbytes : 0;
}

const void *
petal_array_data(const petal_array_t *a)
{
    if (a == NULL) {
        return NULL;
    }
    return (const char *)pt_buf_data(a->buf) + a->offset;
}

void *
petal_array_data_mut(petal_array_t *a)
{
    /* A buffer someone else also references (a shared model, a frame in flight) is
     * read-only: writing would change what the other holders see. */
    if (a == NULL || pt_buf_refs(a->buf) != 1) {
        return NULL;
    }
    return (char *)pt_buf_data(a->buf) + a->offset;
}

pt_buf_t *
pt_array_buf(const petal_array_t *a)
{
    return a != NULL ? a->buf : NULL;
}

size_t
pt_array_offset(const petal_array_t *a)
{
    return a != NULL ? a->offset : 0;
}

/* Validates dtype/ndim/shape and computes the byte size; 0 or PETAL_EINVAL. */
static int
shape_nbytes(int32_t dtype, uint32_t ndim, const uint64_t *shape, uint64_t *nbytes)
{
    uint64_t n;
    uint32_t size = petal_dtype_size(dtype);
    int overflow = 0;
    int zero = 0;

    if (size == 0 || ndim > PETAL_MAX_NDIM || (ndim > 0 && shape == NULL)) {
        return PETAL_EINVAL;
    }
    n = size;
    for (uint32_t i = 0; i < ndim; i++) {
        if (shape[i] == 0) {
            zero = 1;
        } else if (__builtin_mul_overflow(n, shape[i], &n)) {
            overflow = 1;
        }
    }
    if (zero) {
        *nbytes = 0;
        return 0;
    }
    if (overflow || n > (uint64_t)SIZE_MAX) {
        return PETAL_EINVAL;
    }
    *nbytes = n;
    return 0;
}

static petal_array_t *
array_new(int32_t dtype, uint32_t ndim, const uint64_t *shape, uint64_t nbytes)
{
    petal_array_t *a = calloc(1, sizeof(*a));

    if (a == NULL) {
        return NULL;
    }
    a->dtype = dtype;
    a->ndim = ndim;
    if (ndim > 0) {
        memcpy(a->shape, shape, ndim * sizeof(shape[0]));
    }
    a->nbytes = nbytes;
    return a;
}

static void
array_free(petal_array_t *a)
{
    if (a != NULL) {
        pt_buf_release(a->buf);
        free(a);
    }
}

/* ---- Ordered name tables with a hash index for large records -------------------------------- */

enum { INDEX_MIN = 16 };

typedef struct entry {
    char *name;
    size_t name_len;
    void *mem; /* value storage owned by the entry (metric/config records) */
    union {
        petal_array_t *array;
        petal_value_t value;
        struct {
            int32_t kind;
            void *ptr;
        } rec;
    } u;
} entry_t;

typedef struct table {
    entry_t *e;
    uint64_t count;
    uint64_t cap;
    uint32_t *slots; /* open addressing, entry index + 1, 0 = empty; NULL while small */
    uint64_t nslots; /* power of two, at least twice count */
} table_t;

struct petal_arrayrecord {
    table_t t;
};

struct petal_metricrecord {
    table_t t;
};

struct petal_configrecord {
    table_t t;
};

struct petal_recorddict {
    table_t t;
};

static uint64_t
hash_name(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void
index_insert(table_t *t, uint64_t i)
{
    uint64_t mask = t->nslots - 1;
    uint64_t s = hash_name(t->e[i].name, t->e[i].name_len) & mask;

    while (t->slots[s] != 0) {
        s = (s + 1) & mask;
    }
    t->slots[s] = (uint32_t)(i + 1);
}

static int64_t
table_find(const table_t *t, const char *name)
{
    size_t len = strlen(name);

    if (t->slots != NULL) {
        uint64_t mask = t->nslots - 1;
        uint64_t s = hash_name(name, len) & mask;

        while (t->slots[s] != 0) {
            const entry_t *e = &t->e[t->slots[s] - 1];
            if (e->name_len == len && memcmp(e->name, name, len) == 0) {
                return (int64_t)t->slots[s] - 1;
            }
            s = (s + 1) & mask;
        }
        return -1;
    }
    for (uint64_t i = 0; i < t->count; i++) {
        if (t->e[i].name_len == len && memcmp(t->e[i].name, name, len) == 0) {
            return (int64_t)i;
        }
    }
    return -1;
}

/*
 * Finds `name`, or prepares a new entry at index t->count that is not visible yet: every
 * allocation is done here, so table_commit() cannot fail. Returns the index or a negative error;
 * *is_new says which case it was. A prepared entry is dropped with table_cancel().
 */
static int64_t
table_slot(table_t *t, const char *name, int *is_new)
{
    int64_t found;
    size_t len;
    char *copy;

    if (name == NULL || name[0] == '\0') {
        return PETAL_EINVAL;
    }
    found = table_find(t, name);
    if (found >= 0) {
        *is_new = 0;
        return found;
    }
    if (t->count >= UINT32_MAX - 1) {
        return PETAL_ENOMEM;
    }
    if (t->count == t->cap) {
        uint64_t ncap = t->cap != 0 ? t->cap * 2 : 4;
        entry_t *ne = realloc(t->e, ncap * sizeof(*ne));
        if (ne == NULL) {
            return PETAL_ENOMEM;
        }
        t->e = ne;
        t->cap = ncap;
    }
    if (t->count + 1 > INDEX_MIN && (t->count + 1) * 2 > t->nslots) {
        uint64_t n = t->nslots != 0 ? t->nslots * 2 : 64;
        uint32_t *slots;

        while (n < (t->count + 1) * 2) {
            n *= 2;
        }
        slots = calloc(n, sizeof(*slots));
        if (slots == NULL) {
            return PETAL_ENOMEM;
        }
        free(t->slots);
        t->slots = slots;
        t->nslots = n;
        for (uint64_t i = 0; i < t->count; i++) {
            index_insert(t, i);
        }
    }
    len = strlen(name);
    copy = malloc(len + 1);
    if (copy == NULL) {
        return PETAL_ENOMEM;
    }
    memcpy(copy, name, len + 1);
    memset(&t->e[t->count], 0, sizeof(t->e[0]));
    t->e[t->count].name = copy;
    t->e[t->count].name_len = len;
    *is_new = 1;
    return (int64_t)t->count;
}

static void
table_commit(table_t *t)
{
    if (t->slots != NULL) {
        index_insert(t, t->count);
    }
    t->count++;
}

static void
table_cancel(table_t *t)
{
    free(t->e[t->count].name);
    t->e[t->count].name = NULL;
}

static void
table_fini(table_t *t)
{
    for (uint64_t i = 0; i < t->count; i++) {
        free(t->e[i].name);
    }
    free(t->e);
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

/* ---- ArrayRecord --------------------------------------------------------------------------- */

static void
arrayrecord_free(petal_arrayrecord_t *r)
{
    if (r == NULL) {
        return;
    }
    for (uint64_t i = 0; i < r->t.count; i++) {
        array_free(r->t.e[i].u.array);
    }
    table_fini(&r->t);
    free(r);
}

/* Puts `a` (fully built) under `name`, replacing an existing array in place. */
static int
arrayrecord_put(petal_arrayrecord_t *r, const char *name, petal_array_t *a)
{
    int is_new = 0;
    int64_t i = table_slot(&r->t, name, &is_new);

    if (i < 0) {
        return (int)i;
    }
    if (is_new) {
        r->t.e[i].u.array = a;
        table_commit(&r->t);
    } else {
        petal_array_t *old = r->t.e[i].u.array;
        r->t.e[i].u.array = a;
        array_free(old);
    }
    return 0;
}

uint64_t
petal_arrayrecord_count(const petal_arrayrecord_t *r)
{
    return r != NULL ? r->t.count : 0;
}

const char *
petal_arrayrecord_name_at(const petal_arrayrecord_t *r, uint64_t i)
{
    return r != NULL && i < r->t.count ? r->t.e[i].name : NULL;
}

const petal_array_t *
petal_arrayrecord_at(const petal_arrayrecord_t *r, uint64_t i)
{
    return r != NULL && i < r->t.count ? r->t.e[i].u.array : NULL;
}

const petal_array_t *
petal_arrayrecord_get(const petal_arrayrecord_t *r, const char *name)
{
    int64_t i;

    if (r == NULL || name == NULL) {
        return NULL;
    }
    i = table_find(&r->t, name);
    return i >= 0 ? r->t.e[i].u.array : NULL;
}

petal_array_t *
petal_arrayrecord_add(petal_arrayrecord_t *r, const char *name, int32_t dtype, uint32_t ndim,
                      const uint64_t *shape)
{
    uint64_t nbytes;
    petal_array_t *a;

    if (r == NULL || shape_nbytes(dtype, ndim, shape, &nbytes) != 0) {
        return NULL;
    }
    a = array_new(dtype, ndim, shape, nbytes);
    if (a == NULL) {
        return NULL;
    }
    a->buf = pt_buf_alloc((size_t)nbytes, 1);
    if (a->buf == NULL || arrayrecord_put(r, name, a) != 0) {
        array_free(a);
        return NULL;
    }
    return a;
}

petal_array_t *
petal_arrayrecord_add_wrap(petal_arrayrecord_t *r, const char *name, int32_t dtype, uint32_t ndim,
                           const uint64_t *shape, void *data, petal_free_cb free_cb, void *free_ctx)
{
    uint64_t nbytes;
    petal_array_t *a;
    int is_new = 0;
    int64_t i;

    if (r == NULL || shape_nbytes(dtype, ndim, shape, &nbytes) != 0) {
        return NULL;
    }
    if ((data == NULL && nbytes > 0) || (uintptr_t)data % petal_dtype_size(dtype) != 0) {
        return NULL;
    }
    a = array_new(dtype, ndim, shape, nbytes);
    if (a == NULL) {
        return NULL;
    }
    /* Reserve the slot before wrapping: once wrapped, failing would have to call free_cb. */
    i = table_slot(&r->t, name, &is_new);
    if (i < 0) {
        free(a);
        return NULL;
    }
    a->buf = pt_buf_wrap(data, (size_t)nbytes, free_cb, free_ctx);
    if (a->buf == NULL) {
        if (is_new) {
            table_cancel(&r->t);
        }
        free(a);
        return NULL;
    }
    if (is_new) {
        r->t.e[i].u.array = a;
        table_commit(&r->t);
    } else {
        petal_array_t *old = r->t.e[i].u.array;
        r->t.e[i].u.array = a;
        array_free(old);
    }
    return a;
}

int32_t
petal_arrayrecord_add_ref(petal_arrayrecord_t *r, const char *name, const petal_array_t *src)
{
    petal_array_t *a;
    int rc;

    if (r == NULL || src == NULL) {
        return PETAL_EINVAL;
    }
    a = array_new(src->dtype, src->ndim, src->shape, src->nbytes);
    if (a == NULL) {
        return PETAL_ENOMEM;
    }
    a->offset = src->offset;
    a->buf = src->buf;
    pt_buf_hold(a->buf); /* before a replace in place may free src */
    rc = arrayrecord_put(r, name, a);
    if (rc != 0) {
        array_free(a);
    }
    return rc;
}

petal_array_t *
pt_arrayrecord_add_view(petal_arrayrecord_t *r, const char *name, int32_t dtype, uint32_t ndim,
                        const uint64_t *shape, pt_buf_t *buf, size_t offset)
{
    uint64_t nbytes;
    petal_array_t *a;
    size_t len = pt_buf_len(buf);

    if (r == NULL || buf == NULL || shape_nbytes(dtype, ndim, shape, &nbytes) != 0) {
        return NULL;
    }
    if (offset > len || nbytes > len - offset) {
        return NULL;
    }
    if (((uintptr_t)pt_buf_data(buf) + offset) % petal_dtype_size(dtype) != 0) {
        return NULL;
    }
    a = array_new(dtype, ndim, shape, nbytes);
    if (a == NULL) {
        return NULL;
    }
    a->buf = buf;
    a->offset = offset;
    pt_buf_hold(buf);
    if (arrayrecord_put(r, name, a) != 0) {
        array_free(a);
        return NULL;
    }
    return a;
}

/* ---- Values (MetricRecord, ConfigRecord) --------------------------------------------------- */

static int
is_metric_type(uint32_t type)
{
    switch (type) {
    case PETAL_VALUE_INT64:
    case PETAL_VALUE_UINT64:
    case PETAL_VALUE_DOUBLE:
    case PETAL_VALUE_INT64_LIST:
    case PETAL_VALUE_UINT64_LIST:
    case PETAL_VALUE_DOUBLE_LIST:
        return 1;
    default:
        return 0;
    }
}

/* malloc(n) that never returns NULL for n == 0 (pointers to empty values stay non-NULL). */
static void *
alloc_bytes(uint64_t n)
{
    if (n > (uint64_t)SIZE_MAX) {
        return NULL;
    }
    return malloc(n != 0 ? (size_t)n : 1);
}

/* Deep copy of `in` into *out with all its memory in one block *mem (NULL for scalars). */
static int
value_copy(const petal_value_t *in, petal_value_t *out, void **mem)
{
    petal_value_t v;
    void *m = NULL;
    uint64_t n;

    memset(&v, 0, sizeof(v));
    v.type = in->type;
    v.len = in->len;
    switch (in->type) {
    case PETAL_VALUE_INT64:
        v.len = 1;
        v.as.i64 = in->as.i64;
        break;
    case PETAL_VALUE_UINT64:
        v.len = 1;
        v.as.u64 = in->as.u64;
        break;
    case PETAL_VALUE_DOUBLE:
        v.len = 1;
        v.as.f64 = in->as.f64;
        break;
    case PETAL_VALUE_BOOL:
        v.len = 1;
        v.as.boolean = in->as.boolean != 0;
        break;
    case PETAL_VALUE_STRING:
        if ((in->as.str == NULL && in->len > 0) || in->len >= (uint64_t)SIZE_MAX) {
            return PETAL_EINVAL;
        }
        if (in->len > 0 && memchr(in->as.str, 0, (size_t)in->len) != NULL) {
            return PETAL_EINVAL; /* strings are NUL-free so that they round-trip */
        }
        m = alloc_bytes(in->len + 1);
        if (m == NULL) {
            return PETAL_ENOMEM;
        }
        if (in->len > 0) {
            memcpy(m, in->as.str, (size_t)in->len);
        }
        ((char *)m)[in->len] = '\0';
        v.as.str = m;
        break;
    case PETAL_VALUE_BYTES:
    case PETAL_VALUE_BOOL_LIST:
        if (in->as.bytes == NULL && in->len > 0) {
            return PETAL_EINVAL;
        }
        m = alloc_bytes(in->len);
        if (m == NULL) {
            return PETAL_ENOMEM;
        }
        if (in->len > 0) {
            memcpy(m, in->as.bytes, (size_t)in->len);
        }
        if (in->type == PETAL_VALUE_BOOL_LIST) {
            for (uint64_t i = 0; i < in->len; i++) {
                ((uint8_t *)m)[i] = ((uint8_t *)m)[i] != 0;
            }
        }
        v.as.bytes = m;
        break;
    case PETAL_VALUE_INT64_LIST:
    case PETAL_VALUE_UINT64_LIST:
    case PETAL_VALUE_DOUBLE_LIST:
        if ((in->as.i64s == NULL && in->len > 0) || __builtin_mul_overflow(in->len, 8, &n)) {
            return PETAL_EINVAL;
        }
        m = alloc_bytes(n);
        if (m == NULL) {
            return PETAL_ENOMEM;
        }
        if (n > 0) {
            memcpy(m, in->as.i64s, (size_t)n);
        }
        v.as.i64s = m;
        break;
    case PETAL_VALUE_STRING_LIST: {
        uint64_t total;
        char **ptrs;
        char *p;

        if ((in->as.strs == NULL && in->len > 0) ||
            __builtin_mul_overflow(in->len, sizeof(char *), &total)) {
            return PETAL_EINVAL;
        }
        for (uint64_t i = 0; i < in->len; i++) {
            if (in->as.strs[i] == NULL ||
                __builtin_add_overflow(total, strlen(in->as.strs[i]) + 1, &total)) {
                return PETAL_EINVAL;
            }
        }
        m = alloc_bytes(total);
        if (m == NULL) {
            return PETAL_ENOMEM;
        }
        ptrs = m;
        p = (char *)m + in->len * sizeof(char *);
        for (uint64_t i = 0; i < in->len; i++) {
            size_t l = strlen(in->as.strs[i]) + 1;
            memcpy(p, in->as.strs[i], l);
            ptrs[i] = p;
            p += l;
        }
        v.as.strs = (const char *const *)ptrs;
        break;
    }
    default:
        return PETAL_ETYPE;
    }
    *out = v;
    *mem = m;
    return 0;
}

static int
value_set(table_t *t, const char *name, const petal_value_t *value)
{
    petal_value_t v;
    void *mem = NULL;
    int is_new = 0;
    int64_t i;
    int rc;

    if (name == NULL || value == NULL) {
        return PETAL_EINVAL;
    }
    rc = value_copy(value, &v, &mem); /* first: `value` may point into this record */
    if (rc != 0) {
        return rc;
    }
    i = table_slot(t, name, &is_new);
    if (i < 0) {
        free(mem);
        return (int)i;
    }
    if (is_new) {
        t->e[i].u.value = v;
        t->e[i].mem = mem;
        table_commit(t);
    } else {
        free(t->e[i].mem);
        t->e[i].u.value = v;
        t->e[i].mem = mem;
    }
    return 0;
}

static int
value_at(const table_t *t, uint64_t i, const char **name, petal_value_t *value)
{
    if (i >= t->count) {
        return PETAL_ENOENT;
    }
    if (name != NULL) {
        *name = t->e[i].name;
    }
    if (value != NULL) {
        *value = t->e[i].u.value;
    }
    return 0;
}

static int
value_get(const table_t *t, const char *name, petal_value_t *value)
{
    int64_t i;

    if (name == NULL) {
        return PETAL_EINVAL;
    }
    i = table_find(t, name);
    if (i < 0) {
        return PETAL_ENOENT;
    }
    if (value != NULL) {
        *value = t->e[i].u.value;
    }
    return 0;
}

static void
values_fini(table_t *t)
{
    for (uint64_t i = 0; i < t->count; i++) {
        free(t->e[i].mem);
    }
    table_fini(t);
}

uint64_t
petal_metricrecord_count(const petal_metricrecord_t *r)
{
    return r != NULL ? r->t.count : 0;
}

int32_t
petal_metricrecord_at(const petal_metricrecord_t *r, uint64_t i, const char **name,
                      petal_value_t *value)
{
    return r != NULL ? value_at(&r->t, i, name, value) : PETAL_EINVAL;
}

int32_t
petal_metricrecord_get(const petal_metricrecord_t *r, const char *name, petal_value_t *value)
{
    return r != NULL ? value_get(&r->t, name, value) : PETAL_EINVAL;
}

int32_t
petal_metricrecord_set(petal_metricrecord_t *r, const char *name, const petal_value_t *value)
{
    if (r == NULL || value == NULL) {
        return PETAL_EINVAL;
    }
    if (!is_metric_type(value->type)) {
        return PETAL_ETYPE;
    }
    return value_set(&r->t, name, value);
}

uint64_t
petal_configrecord_count(const petal_configrecord_t *r)
{
    return r != NULL ? r->t.count : 0;
}

int32_t
petal_configrecord_at(const petal_configrecord_t *r, uint64_t i, const char **name,
                      petal_value_t *value)
{
    return r != NULL ? value_at(&r->t, i, name, value) : PETAL_EINVAL;
}

int32_t
petal_configrecord_get(const petal_configrecord_t *r, const char *name, petal_value_t *value)
{
    return r != NULL ? value_get(&r->t, name, value) : PETAL_EINVAL;
}

int32_t
petal_configrecord_set(petal_configrecord_t *r, const char *name, const petal_value_t *value)
{
    if (r == NULL || value == NULL) {
        return PETAL_EINVAL;
    }
    return value_set(&r->t, name, value);
}

/* ---- RecordDict ---------------------------------------------------------------------------- */

static void
record_free(int32_t kind, void *rec)
{
    switch (kind) {
    case PETAL_RECORD_ARRAYS:
        arrayrecord_free(rec);
        break;
    case PETAL_RECORD_METRICS:
        if (rec != NULL) {
            values_fini(&((petal_metricrecord_t *)rec)->t);
            free(rec);
        }
        break;
    case PETAL_RECORD_CONFIG:
        if (rec != NULL) {
            values_fini(&((petal_configrecord_t *)rec)->t);
            free(rec);
        }
        break;
    default:
        break;
    }
}

petal_recorddict_t *
petal_recorddict_alloc(void)
{
    return calloc(1, sizeof(petal_recorddict_t));
}

void
petal_recorddict_free(petal_recorddict_t *d)
{
    if (d == NULL) {
        return;
    }
    for (uint64_t i = 0; i < d->t.count; i++) {
        record_free(d->t.e[i].u.rec.kind, d->t.e[i].u.rec.ptr);
    }
    table_fini(&d->t);
    free(d);
}

uint64_t
petal_recorddict_count(const petal_recorddict_t *d)
{
    return d != NULL ? d->t.count : 0;
}

const char *
petal_recorddict_name_at(const petal_recorddict_t *d, uint64_t i)
{
    return d != NULL && i < d->t.count ? d->t.e[i].name : NULL;
}

int32_t
petal_recorddict_kind_at(const petal_recorddict_t *d, uint64_t i)
{
    if (d == NULL) {
        return PETAL_EINVAL;
    }
    return i < d->t.count ? d->t.e[i].u.rec.kind : PETAL_ENOENT;
}

static void *
recorddict_get(const petal_recorddict_t *d, const char *name, int32_t kind)
{
    int64_t i;

    if (d == NULL || name == NULL) {
        return NULL;
    }
    i = table_find(&d->t, name);
    if (i < 0 || d->t.e[i].u.rec.kind != kind) {
        return NULL;
    }
    return d->t.e[i].u.rec.ptr;
}

const petal_arrayrecord_t *
petal_recorddict_arrays(const petal_recorddict_t *d, const char *name)
{
    return recorddict_get(d, name, PETAL_RECORD_ARRAYS);
}

const petal_metricrecord_t *
petal_recorddict_metrics(const petal_recorddict_t *d, const char *name)
{
    return recorddict_get(d, name, PETAL_RECORD_METRICS);
}

const petal_configrecord_t *
petal_recorddict_config(const petal_recorddict_t *d, const char *name)
{
    return recorddict_get(d, name, PETAL_RECORD_CONFIG);
}

static void *
recorddict_add(petal_recorddict_t *d, const char *name, int32_t kind)
{
    int is_new = 0;
    int64_t i;
    void *rec;
    size_t size;

    if (d == NULL) {
        return NULL;
    }
    i = table_slot(&d->t, name, &is_new);
    if (i < 0) {
        return NULL;
    }
    if (!is_new) {
        return d->t.e[i].u.rec.kind == kind ? d->t.e[i].u.rec.ptr : NULL;
    }
    switch (kind) {
    case PETAL_RECORD_ARRAYS:
        size = sizeof(petal_arrayrecord_t);
        break;
    case PETAL_RECORD_METRICS:
        size = sizeof(petal_metricrecord_t);
        break;
    default:
        size = sizeof(petal_configrecord_t);
        break;
    }
    rec = calloc(1, size);
    if (rec == NULL) {
        table_cancel(&d->t);
        return NULL;
    }
    d->t.e[i].u.rec.kind = kind;
    d->t.e[i].u.rec.ptr = rec;
    table_commit(&d->t);
    return rec;
}

petal_arrayrecord_t *
petal_recorddict_add_arrays(petal_recorddict_t *d, const char *name)
{
    return recorddict_add(d, name, PETAL_RECORD_ARRAYS);
}

petal_metricrecord_t *
petal_recorddict_add_metrics(petal_recorddict_t *d, const char *name)
{
    return recorddict_add(d, name, PETAL_RECORD_METRICS);
}

petal_configrecord_t *
petal_recorddict_add_config(petal_recorddict_t *d, const char *name)
{
    return recorddict_add(d, name, PETAL_RECORD_CONFIG);
}

/* ---- Whole-dict helpers -------------------------------------------------------------------- */

static int
values_clone(const table_t *src, table_t *dst)
{
    for (uint64_t i = 0; i < src->count; i++) {
        int rc = value_set(dst, src->e[i].name, &src->e[i].u.value);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

petal_recorddict_t *
pt_recorddict_clone(const petal_recorddict_t *d)
{
    petal_recorddict_t *c;

    if (d == NULL) {
        return NULL;
    }
    c = petal_recorddict_alloc();
    if (c == NULL) {
        return NULL;
    }
    for (uint64_t i = 0; i < d->t.count; i++) {
        const entry_t *e = &d->t.e[i];
        void *rec = recorddict_add(c, e->name, e->u.rec.kind);

        if (rec == NULL) {
            goto fail;
        }
        if (e->u.rec.kind == PETAL_RECORD_ARRAYS) {
            const petal_arrayrecord_t *src = e->u.rec.ptr;
            for (uint64_t j = 0; j < src->t.count; j++) {
                if (petal_arrayrecord_add_ref(rec, src->t.e[j].name, src->t.e[j].u.array) != 0) {
                    goto fail;
                }
            }
        } else if (e->u.rec.kind == PETAL_RECORD_METRICS) {
            if (values_clone(&((const petal_metricrecord_t *)e->u.rec.ptr)->t,
                             &((petal_metricrecord_t *)rec)->t) != 0) {
                goto fail;
            }
        } else {
            if (values_clone(&((const petal_configrecord_t *)e->u.rec.ptr)->t,
                             &((petal_configrecord_t *)rec)->t) != 0) {
                goto fail;
            }
        }
    }
    return c;
fail:
    petal_recorddict_free(c);
    return NULL;
}

static int
value_equal(const petal_value_t *a, const petal_value_t *b)
{
    if (a->type != b->type || a->len != b->len) {
        return 0;
    }
    switch (a->type) {
    case PETAL_VALUE_INT64:
    case PETAL_VALUE_UINT64:
        return a->as.u64 == b->as.u64;
    case PETAL_VALUE_DOUBLE:
        return memcmp(&a->as.f64, &b->as.f64, sizeof(double)) == 0; /* bit for bit */
    case PETAL_VALUE_BOOL:
        return a->as.boolean == b->as.boolean;
    case PETAL_VALUE_STRING:
    case PETAL_VALUE_BYTES:
    case PETAL_VALUE_BOOL_LIST:
        return a->len == 0 || memcmp(a->as.bytes, b->as.bytes, (size_t)a->len) == 0;
    case PETAL_VALUE_INT64_LIST:
    case PETAL_VALUE_UINT64_LIST:
    case PETAL_VALUE_DOUBLE_LIST:
        return a->len == 0 || memcmp(a->as.i64s, b->as.i64s, (size_t)a->len * 8) == 0;
    case PETAL_VALUE_STRING_LIST:
        for (uint64_t i = 0; i < a->len; i++) {
            if (strcmp(a->as.strs[i], b->as.strs[i]) != 0) {
                return 0;
            }
        }
        return 1;
    default:
        return 0;
    }
}

static int
array_equal(const petal_array_t *a, const petal_array_t *b)
{
    const void *da = petal_array_data(a);
    const void *db = petal_array_data(b);

    if (a->dtype != b->dtype || a->ndim != b->ndim || a->nbytes != b->nbytes) {
        return 0;
    }
    for (uint32_t i = 0; i < a->ndim; i++) {
        if (a->shape[i] != b->shape[i]) {
            return 0;
        }
    }
    return da == db || a->nbytes == 0 || memcmp(da, db, (size_t)a->nbytes) == 0;
}

static int
table_names_equal(const table_t *a, const table_t *b)
{
    if (a->count != b->count) {
        return 0;
    }
    for (uint64_t i = 0; i < a->count; i++) {
        if (a->e[i].name_len != b->e[i].name_len ||
            memcmp(a->e[i].name, b->e[i].name, a->e[i].name_len) != 0) {
            return 0;
        }
    }
    return 1;
}

int
pt_recorddict_equal(const petal_recorddict_t *a, const petal_recorddict_t *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    if (!table_names_equal(&a->t, &b->t)) {
        return 0;
    }
    for (uint64_t i = 0; i < a->t.count; i++) {
        int32_t kind = a->t.e[i].u.rec.kind;
        const table_t *ta;
        const table_t *tb;

        if (kind != b->t.e[i].u.rec.kind) {
            return 0;
        }
        /* every record struct starts with its table */
        ta = a->t.e[i].u.rec.ptr;
        tb = b->t.e[i].u.rec.ptr;
        if (!table_names_equal(ta, tb)) {
            return 0;
        }
        for (uint64_t j = 0; j < ta->count; j++) {
            if (kind == PETAL_RECORD_ARRAYS) {
                if (!array_equal(ta->e[j].u.array, tb->e[j].u.array)) {
                    return 0;
                }
            } else if (!value_equal(&ta->e[j].u.value, &tb->e[j].u.value)) {
                return 0;
            }
        }
    }
    return 1;
}

uint64_t
pt_recorddict_array_bytes(const petal_recorddict_t *d)
{
    uint64_t sum = 0;

    if (d == NULL) {
        return 0;
    }
    for (uint64_t i = 0; i < d->t.count; i++) {
        if (d->t.e[i].u.rec.kind == PETAL_RECORD_ARRAYS) {
            const petal_arrayrecord_t *r = d->t.e[i].u.rec.ptr;
            for (uint64_t j = 0; j < r->t.count; j++) {
                sum += r->t.e[j].u.array->nbytes;
            }
        }
    }
    return sum;
}
