/* dataset.c - the process-wide dataset cache, IDX and Fashion-MNIST loading, class counts. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <petal/data.h>

#include "idx.h"
#include "internal.h"

/*
 * The cache: a list of entries keyed by a string (for IDX: the canonical paths of the two files;
 * for CSV: the canonical path and the options; for Synthetic: the parameters), under one mutex.
 * The first caller inserts a LOADING entry and runs the loader without the lock; callers that
 * find a LOADING entry wait on the condition variable. A failed load hands its error to the
 * callers that waited for it and leaves the cache, so a later call tries again.
 */
enum { ENTRY_LOADING, ENTRY_READY, ENTRY_FAILED };

typedef struct entry {
    petal_dataset_t ds; /* first member: a dataset pointer is an entry pointer */
    struct entry *next;
    char *key;
    pt_dataset_body_t body;
    uint32_t refs;
    int state;
    int rc;
    char err[512];
} entry_t;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cache_cond = PTHREAD_COND_INITIALIZER;
static entry_t *cache_head;

static void
entry_free(entry_t *e)
{
    free(e->key);
    free(e->body.x);
    free(e->body.y);
    free(e->body.offsets);
    free(e);
}

/* Caller holds cache_lock. */
static void
entry_unlink(entry_t *e)
{
    for (entry_t **pp = &cache_head; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            return;
        }
    }
}

float *
pt_data_alloc_floats(uint64_t count)
{
    if (count > (SIZE_MAX - 64) / sizeof(float)) {
        return NULL;
    }
    size_t bytes = (size_t)count * sizeof(float);
    size_t alloc = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, alloc > 0 ? alloc : 64);
}

int
pt_dataset_cache_get(const char *key, pt_dataset_loader_fn load, void *arg,
                     const petal_dataset_t **out, const uint64_t **extra, char *err, size_t cap)
{
    pthread_mutex_lock(&cache_lock);
    entry_t *e = cache_head;
    while (e != NULL && strcmp(e->key, key) != 0) {
        e = e->next;
    }
    if (e != NULL) {
        e->refs++;
        while (e->state == ENTRY_LOADING) {
            pthread_cond_wait(&cache_cond, &cache_lock);
        }
        if (e->state == ENTRY_FAILED) {
            int rc = e->rc;
            pt_data_errf(rc, err, cap, "%s", e->err);
            if (--e->refs == 0) {
                entry_free(e); /* the loader unlinked it already */
            }
            pthread_mutex_unlock(&cache_lock);
            return rc;
        }
        pthread_mutex_unlock(&cache_lock);
        *out = &e->ds;
        if (extra != NULL) {
            *extra = e->body.offsets;
        }
        return 0;
    }
    e = calloc(1, sizeof(*e));
    char *k = strdup(key);
    if (e == NULL || k == NULL) {
        pthread_mutex_unlock(&cache_lock);
        free(e);
        free(k);
        return pt_data_errf(PETAL_ENOMEM, err, cap, "dataset load: out of memory");
    }
    e->key = k;
    e->refs = 1;
    e->state = ENTRY_LOADING;
    e->next = cache_head;
    cache_head = e;
    pthread_mutex_unlock(&cache_lock);

    int rc = load(arg, &e->body, e->err, sizeof(e->err));
    if (rc == 0) {
        e->ds.n = e->body.n;
        e->ds.dim = e->body.dim;
        e->ds.num_classes = e->body.num_classes;
        e->ds.x = e->body.x;
        e->ds.y = e->body.y;
    }

    pthread_mutex_lock(&cache_lock);
    if (rc < 0) {
        e->state = ENTRY_FAILED;
        e->rc = rc;
        entry_unlink(e);
        pt_data_errf(rc, err, cap, "%s", e->err);
        pthread_cond_broadcast(&cache_cond);
        if (--e->refs == 0) {
            entry_free(e);
        }
        pthread_mutex_unlock(&cache_lock);
        return rc;
    }
    e->state = ENTRY_READY;
    pthread_cond_broadcast(&cache_cond);
    pthread_mutex_unlock(&cache_lock);
    *out = &e->ds;
    if (extra != NULL) {
        *extra = e->body.offsets;
    }
    return 0;
}

typedef struct idx_files {
    const char *images;
    const char *labels;
} idx_files_t;

/* Reads both IDX files into *body; returns 0 or an error with err set. Runs unlocked. */
static int
idx_load(void *arg, pt_dataset_body_t *body, char *err, size_t cap)
{
    const idx_files_t *files = arg;
    pt_idx_t img, lab;
    memset(&img, 0, sizeof(img));
    memset(&lab, 0, sizeof(lab));
    int rc = pt_idx_read(files->images, "pixels", 2, PT_IDX_MAX_NDIM, &img, err, cap);
    if (rc < 0) {
        goto fail;
    }
    rc = pt_idx_read(files->labels, "labels", 1, 1, &lab, err, cap);
    if (rc < 0) {
        goto fail;
    }
    if (img.dims[0] != lab.dims[0]) {
        rc = pt_data_errf(PETAL_EPROTO, err, cap,
                          "count mismatch: %s holds %u examples but %s holds %u labels",
                          files->images, img.dims[0], files->labels, lab.dims[0]);
        goto fail;
    }
    if (img.dims[0] == 0) {
        rc = pt_data_errf(PETAL_EPROTO, err, cap, "%s: holds no examples", files->images);
        goto fail;
    }
    uint8_t max_label = 0;
    for (uint64_t i = 0; i < lab.nbytes; i++) {
        if (lab.data[i] > max_label) {
            max_label = lab.data[i];
        }
    }
    /* Pixels to floats in [0, 1] through a table: exactly v / 255.0f for every byte. */
    float table[256];
    for (int v = 0; v < 256; v++) {
        table[v] = (float)v / 255.0f;
    }
    body->x = pt_data_alloc_floats(img.nbytes);
    if (body->x == NULL) {
        rc = pt_data_errf(PETAL_ENOMEM, err, cap, "%s: out of memory for %llu bytes of features",
                          files->images, (unsigned long long)img.nbytes * sizeof(float));
        goto fail;
    }
    for (uint64_t i = 0; i < img.nbytes; i++) {
        body->x[i] = table[img.data[i]];
    }
    free(img.data);
    body->y = lab.data;
    body->n = img.dims[0];
    body->dim = (uint32_t)img.item_size;
    body->num_classes = (uint32_t)max_label + 1;
    return 0;

fail:
    free(img.data);
    free(lab.data);
    return rc;
}

int
petal_dataset_load_idx(const char *images_path, const char *labels_path,
                       const petal_dataset_t **out, char *err, size_t cap)
{
    if (images_path == NULL || labels_path == NULL || out == NULL) {
        return pt_data_errf(PETAL_EINVAL, err, cap, "dataset load: NULL path or output");
    }
    if (err != NULL && cap > 0) {
        err[0] = '\0';
    }
    /* Key by canonical path, so "./a.gz" and "/abs/a.gz" share one copy. */
    char *images = realpath(images_path, NULL);
    if (images == NULL) {
        return pt_data_errf(errno == ENOMEM ? PETAL_ENOMEM : PETAL_EIO, err, cap,
                            "%s: cannot open: %s", images_path, strerror(errno));
    }
    char *labels = realpath(labels_path, NULL);
    if (labels == NULL) {
        int e = errno;
        free(images);
        return pt_data_errf(e == ENOMEM ? PETAL_ENOMEM : PETAL_EIO, err, cap, "%s: cannot open: %s",
                            labels_path, strerror(e));
    }
    size_t klen = strlen(images) + strlen(labels) + 8;
    char *key = malloc(klen);
    if (key == NULL) {
        free(images);
        free(labels);
        return pt_data_errf(PETAL_ENOMEM, err, cap, "dataset load: out of memory");
    }
    snprintf(key, klen, "idx\n%s\n%s", images, labels);
    idx_files_t files = {images, labels};
    int rc = pt_dataset_cache_get(key, idx_load, &files, out, NULL, err, cap);
    free(key);
    free(images);
    free(labels);
    return rc;
}

void
petal_dataset_release(const petal_dataset_t *d)
{
    if (d == NULL) {
        return;
    }
    entry_t *e = (entry_t *)(void *)(uintptr_t)d; /* ds is the first member */
    pthread_mutex_lock(&cache_lock);
    if (--e->refs == 0) {
        entry_unlink(e);
    } else {
        e = NULL;
    }
    pthread_mutex_unlock(&cache_lock);
    if (e != NULL) {
        entry_free(e);
    }
}

/* Tries dir/name.gz, then dir/name; writes the first that exists into path. */
static int
find_file(const char *dir, const char *name, char *path, size_t pathcap, char *err, size_t cap)
{
    int n = snprintf(path, pathcap, "%s/%s.gz", dir, name);
    if (n < 0 || (size_t)n >= pathcap) {
        return pt_data_errf(PETAL_EINVAL, err, cap, "%s: path too long", dir);
    }
    FILE *f = fopen(path, "rb");
    if (f != NULL) {
        fclose(f);
        return 0;
    }
    snprintf(path, pathcap, "%s/%s", dir, name);
    f = fopen(path, "rb");
    if (f != NULL) {
        fclose(f);
        return 0;
    }
    return pt_data_errf(PETAL_EIO, err, cap,
                        "%s/%s(.gz): not found (install the dataset-fashion-mnist package or "
                        "set " PETAL_FMNIST_DIR_ENV ")",
                        dir, name);
}

int
petal_dataset_load_fmnist(const char *dir, int train, const petal_dataset_t **out, char *err,
                          size_t cap)
{
    if (out == NULL) {
        return pt_data_errf(PETAL_EINVAL, err, cap, "dataset load: NULL output");
    }
    if (dir == NULL || dir[0] == '\0') {
        dir = getenv(PETAL_FMNIST_DIR_ENV);
    }
    if (dir == NULL || dir[0] == '\0') {
        dir = PETAL_FMNIST_DEFAULT_DIR;
    }
    const char *prefix = train ? "train" : "t10k";
    char name[64];
    char images[PATH_MAX];
    char labels[PATH_MAX];
    snprintf(name, sizeof(name), "%s-images-idx3-ubyte", prefix);
    int rc = find_file(dir, name, images, sizeof(images), err, cap);
    if (rc < 0) {
        return rc;
    }
    snprintf(name, sizeof(name), "%s-labels-idx1-ubyte", prefix);
    rc = find_file(dir, name, labels, sizeof(labels), err, cap);
    if (rc < 0) {
        return rc;
    }
    return petal_dataset_load_idx(images, labels, out, err, cap);
}

void
petal_dataset_class_counts(const petal_dataset_t *d, const uint64_t *idx, uint64_t count,
                           uint64_t *counts, uint32_t num_counts)
{
    if (d == NULL || counts == NULL) {
        return;
    }
    memset(counts, 0, sizeof(*counts) * num_counts);
    uint64_t m = idx != NULL ? count : d->n;
    for (uint64_t i = 0; i < m; i++) {
        uint64_t j = idx != NULL ? idx[i] : i;
        if (j < d->n && d->y[j] < num_counts) {
            counts[d->y[j]]++;
        }
    }
}
