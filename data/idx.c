/* idx.c - reads IDX files (LeCun's MNIST format) of unsigned bytes, gzip-compressed or plain. */
#include "idx.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <petal/plugin.h>

/*
 * IDX layout: two zero bytes, an element type byte (0x08 = unsigned byte), a dimension count
 * byte, then one big-endian uint32 per dimension, then the elements in row-major order.
 */
#define IDX_TYPE_U8 0x08
#define IDX_MAX_BYTES (UINT64_C(1) << 40)
#define IDX_FIRST_CHUNK (UINT64_C(16) << 20)
#define GZ_READ_MAX (1u << 30)

int
pt_data_errf(int code, char *err, size_t cap, const char *fmt, ...)
{
    if (err != NULL && cap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* A byte source: a gzip stream or a plain file. */
typedef struct src {
    FILE *f;
    gzFile gz;
    const char *path;
} src_t;

static int
src_open(src_t *s, const char *path, char *err, size_t cap)
{
    memset(s, 0, sizeof(*s));
    s->path = path;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return pt_data_errf(PETAL_EIO, err, cap, "%s: cannot open: %s", path, strerror(errno));
    }
    unsigned char magic[2] = {0, 0};
    size_t got = fread(magic, 1, 2, f);
    if (got == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
        fclose(f);
        s->gz = gzopen(path, "rb");
        if (s->gz == NULL) {
            return pt_data_errf(PETAL_EIO, err, cap, "%s: cannot open: %s", path,
                                errno ? strerror(errno) : "out of memory");
        }
        gzbuffer(s->gz, 256u << 10);
        return 0;
    }
    if (ferror(f) || fseek(f, 0, SEEK_SET) != 0) {
        int e = errno;
        fclose(f);
        return pt_data_errf(PETAL_EIO, err, cap, "%s: cannot read: %s", path, strerror(e));
    }
    s->f = f;
    return 0;
}

static void
src_close(src_t *s)
{
    if (s->gz != NULL) {
        gzclose(s->gz);
    }
    if (s->f != NULL) {
        fclose(s->f);
    }
    memset(s, 0, sizeof(*s));
}

/* Reads up to len bytes; *got is how many arrived before the end of the data. A short read at
 * the end (including a gzip stream cut off midway) is not an error here: the caller reports
 * the truncation with the counts. Returns 0 or PETAL_EIO. */
static int
src_read(src_t *s, void *buf, uint64_t len, uint64_t *got, char *err, size_t cap)
{
    uint8_t *p = buf;
    *got = 0;
    if (s->f != NULL) {
        while (*got < len) {
            size_t n = fread(p + *got, 1, (size_t)(len - *got), s->f);
            *got += n;
            if (n == 0) {
                if (ferror(s->f)) {
                    return pt_data_errf(PETAL_EIO, err, cap, "%s: read error: %s", s->path,
                                        strerror(errno));
                }
                break;
            }
        }
        return 0;
    }
    while (*got < len) {
        uint64_t want = len - *got;
        unsigned chunk = want > GZ_READ_MAX ? GZ_READ_MAX : (unsigned)want;
        int n = gzread(s->gz, p + *got, chunk);
        if (n > 0) {
            *got += (uint64_t)n;
            continue;
        }
        int zerr = Z_OK;
        const char *msg = gzerror(s->gz, &zerr);
        if (n == 0 && (zerr == Z_OK || zerr == Z_BUF_ERROR)) {
            break; /* end of data, or a stream cut off: a truncation, reported by the caller */
        }
        if (zerr == Z_BUF_ERROR) {
            break;
        }
        return pt_data_errf(PETAL_EIO, err, cap, "%s: gzip error: %s", s->path,
                            msg != NULL ? msg : "unknown");
    }
    return 0;
}

static uint32_t
be32(const uint8_t *b)
{
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

static int
read_header(src_t *s, uint32_t min_ndim, uint32_t max_ndim, pt_idx_t *out, char *err, size_t cap)
{
    const char *path = s->path;
    uint8_t hdr[4 + 4 * PT_IDX_MAX_NDIM];
    uint64_t got = 0;
    int rc = src_read(s, hdr, 4, &got, err, cap);
    if (rc < 0) {
        return rc;
    }
    if (got < 4) {
        return pt_data_errf(PETAL_EPROTO, err, cap,
                            "%s: truncated: expected a 4-byte IDX header, got %llu bytes", path,
                            (unsigned long long)got);
    }
    if (hdr[0] != 0 || hdr[1] != 0) {
        return pt_data_errf(PETAL_EPROTO, err, cap,
                            "%s: bad magic 0x%02x%02x%02x%02x: not an IDX file", path, hdr[0],
                            hdr[1], hdr[2], hdr[3]);
    }
    if (hdr[2] != IDX_TYPE_U8) {
        return pt_data_errf(PETAL_EPROTO, err, cap,
                            "%s: unsupported IDX element type 0x%02x (only 0x08, unsigned byte)",
                            path, hdr[2]);
    }
    uint32_t ndim = hdr[3];
    if (ndim < min_ndim || ndim > max_ndim) {
        return pt_data_errf(PETAL_EPROTO, err, cap,
                            "%s: IDX file has %u dimensions, expected %u to %u", path, ndim,
                            min_ndim, max_ndim);
    }
    rc = src_read(s, hdr + 4, 4u * ndim, &got, err, cap);
    if (rc < 0) {
        return rc;
    }
    if (got < 4u * ndim) {
        return pt_data_errf(PETAL_EPROTO, err, cap,
                            "%s: truncated: expected %u bytes of dimensions, got %llu", path,
                            4u * ndim, (unsigned long long)got);
    }
    out->ndim = ndim;
    out->item_size = 1;
    for (uint32_t i = 0; i < ndim; i++) {
        out->dims[i] = be32(hdr + 4 + 4 * i);
        if (i == 0) {
            continue;
        }
        if (out->dims[i] == 0) {
            return pt_data_errf(PETAL_EPROTO, err, cap, "%s: dimension %u is 0", path, i);
        }
        out->item_size *= out->dims[i];
        if (out->item_size > UINT32_MAX) {
            return pt_data_errf(PETAL_EMSGSIZE, err, cap,
                                "%s: items of more than 2^32 bytes are not supported", path);
        }
    }
    out->nbytes = (uint64_t)out->dims[0] * out->item_size;
    if (out->nbytes > IDX_MAX_BYTES) {
        return pt_data_errf(PETAL_EMSGSIZE, err, cap,
                            "%s: header announces %llu bytes, more than the 1 TiB limit", path,
                            (unsigned long long)out->nbytes);
    }
    return 0;
}

int
pt_idx_read(const char *path, const char *what, uint32_t min_ndim, uint32_t max_ndim, pt_idx_t *out,
            char *err, size_t cap)
{
    if (path == NULL || out == NULL || min_ndim < 1 || max_ndim > PT_IDX_MAX_NDIM ||
        min_ndim > max_ndim) {
        return pt_data_errf(PETAL_EINVAL, err, cap, "invalid arguments to the IDX reader");
    }
    pt_idx_t idx;
    memset(&idx, 0, sizeof(idx));
    src_t s;
    int rc = src_open(&s, path, err, cap);
    if (rc < 0) {
        return rc;
    }
    rc = read_header(&s, min_ndim, max_ndim, &idx, err, cap);
    if (rc < 0) {
        goto fail;
    }
    /* Grow the buffer as bytes arrive, so a header that lies about a huge size costs a
     * truncation error, not a huge allocation. */
    uint64_t bufcap = idx.nbytes < IDX_FIRST_CHUNK ? idx.nbytes : IDX_FIRST_CHUNK;
    uint64_t have = 0;
    idx.data = malloc(bufcap > 0 ? (size_t)bufcap : 1);
    if (idx.data == NULL) {
        rc = pt_data_errf(PETAL_ENOMEM, err, cap, "%s: out of memory", path);
        goto fail;
    }
    for (;;) {
        uint64_t got = 0;
        rc = src_read(&s, idx.data + have, bufcap - have, &got, err, cap);
        if (rc < 0) {
            goto fail;
        }
        have += got;
        if (have < bufcap || bufcap == idx.nbytes) {
            break;
        }
        uint64_t next = bufcap * 2 < idx.nbytes ? bufcap * 2 : idx.nbytes;
        uint8_t *p = realloc(idx.data, (size_t)next);
        if (p == NULL) {
            rc = pt_data_errf(PETAL_ENOMEM, err, cap, "%s: out of memory for %llu bytes", path,
                              (unsigned long long)next);
            goto fail;
        }
        idx.data = p;
        bufcap = next;
    }
    if (have < idx.nbytes) {
        rc = pt_data_errf(
            PETAL_EPROTO, err, cap, "%s: truncated: expected %llu bytes of %s, got %llu", path,
            (unsigned long long)idx.nbytes, what != NULL ? what : "data", (unsigned long long)have);
        goto fail;
    }
    uint8_t extra;
    uint64_t got = 0;
    rc = src_read(&s, &extra, 1, &got, err, cap);
    if (rc < 0) {
        goto fail;
    }
    if (got != 0) {
        rc = pt_data_errf(PETAL_EPROTO, err, cap,
                          "%s: unexpected bytes after the %llu bytes of %s the header announces",
                          path, (unsigned long long)idx.nbytes, what != NULL ? what : "data");
        goto fail;
    }
    src_close(&s);
    *out = idx;
    return 0;

fail:
    free(idx.data);
    src_close(&s);
    return rc;
}
