/* idx.h - internal: reading one IDX file (gzip or plain) of unsigned bytes. */
#ifndef PT_DATA_IDX_H
#define PT_DATA_IDX_H

#include <stddef.h>
#include <stdint.h>

#define PT_IDX_MAX_NDIM 8

/* One IDX file of unsigned bytes: dims[0] items of dims[1] * ... * dims[ndim-1] bytes each. */
typedef struct pt_idx {
    uint32_t ndim;
    uint32_t dims[PT_IDX_MAX_NDIM];
    uint64_t item_size; /* product of dims[1..ndim) (1 when ndim == 1) */
    uint64_t nbytes;    /* dims[0] * item_size */
    uint8_t *data;      /* nbytes bytes, malloc'd; free() it */
} pt_idx_t;

/*
 * Reads `path`, gzip-compressed or plain (told apart by the gzip magic bytes 1f 8b), and checks
 * that it is an IDX file of unsigned bytes with min_ndim..max_ndim dimensions holding exactly
 * the bytes its header announces; `what` names the payload in messages ("pixels"). Returns 0 and
 * fills *out, or PETAL_EIO, PETAL_EPROTO, PETAL_EMSGSIZE, PETAL_ENOMEM with a message naming `path`
 * in err.
 */
int pt_idx_read(const char *path, const char *what, uint32_t min_ndim, uint32_t max_ndim,
                pt_idx_t *out, char *err, size_t cap);

/* Formats into err (if err && cap) and returns code. */
int pt_data_errf(int code, char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
