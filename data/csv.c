/* csv.c - reads CSV files of numeric features and an integer label column into datasets. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <petal/data.h>

#include "idx.h"
#include "internal.h"

#define CSV_CHUNK (64u << 10)
#define CSV_MAX_LINE (UINT64_C(256) << 20)
#define CSV_MAX_FLOATS (UINT64_C(1) << 36) /* 256 GiB of features */
#define CSV_MAX_COLS 1000000u
#define CELL_SHOW 40 /* characters of a bad cell quoted in a message */

/* ---- lines -------------------------------------------------------------------------------- */

/* A line reader over gzread, which reads plain files unchanged. */
typedef struct lines {
    gzFile gz;
    const char *path;
    char *buf;
    size_t cap;
    size_t start;
    size_t end;
    int eof;
    uint64_t lineno;
} lines_t;

static void
take_line(lines_t *l, size_t stop, size_t next, char **line)
{
    l->buf[stop] = '\0';
    if (stop > l->start && l->buf[stop - 1] == '\r') {
        l->buf[stop - 1] = '\0';
    }
    *line = l->buf + l->start;
    l->start = next;
    l->lineno++;
}

/* 1 and *line (NUL-terminated, without its line end), 0 at the end, or a negative error. */
static int
lines_next(lines_t *l, char **line, char *err, size_t cap)
{
    size_t scanned = l->start;
    for (;;) {
        char *nl = memchr(l->buf + scanned, '\n', l->end - scanned);
        if (nl != NULL) {
            size_t stop = (size_t)(nl - l->buf);
            take_line(l, stop, stop + 1, line);
            return 1;
        }
        if (l->eof) {
            if (l->start < l->end) {
                take_line(l, l->end, l->end, line);
                return 1;
            }
            return 0;
        }
        size_t have = l->end - l->start;
        memmove(l->buf, l->buf + l->start, have);
        l->start = 0;
        l->end = have;
        scanned = have;
        if (have > CSV_MAX_LINE) {
            return pt_data_errf(PETAL_EMSGSIZE, err, cap, "%s:%llu: line longer than %llu bytes",
                                l->path, (unsigned long long)l->lineno + 1,
                                (unsigned long long)CSV_MAX_LINE);
        }
        if (l->cap - l->end < CSV_CHUNK + 1) {
            size_t ncap = l->cap * 2 > l->end + CSV_CHUNK + 1 ? l->cap * 2 : l->end + CSV_CHUNK + 1;
            char *nb = realloc(l->buf, ncap);
            if (nb == NULL) {
                return pt_data_errf(PETAL_ENOMEM, err, cap, "%s: out of memory", l->path);
            }
            l->buf = nb;
            l->cap = ncap;
        }
        int got = gzread(l->gz, l->buf + l->end, CSV_CHUNK);
        if (got > 0) {
            l->end += (size_t)got;
            continue;
        }
        int zerr = Z_OK;
        const char *msg = gzerror(l->gz, &zerr);
        if (got < 0 || (zerr != Z_OK && zerr != Z_BUF_ERROR)) {
            return pt_data_errf(PETAL_EIO, err, cap, "%s: read error: %s", l->path,
                                zerr == Z_ERRNO ? strerror(errno) : msg);
        }
        if (zerr == Z_BUF_ERROR) {
            return pt_data_errf(PETAL_EPROTO, err, cap, "%s: truncated gzip stream", l->path);
        }
        l->eof = 1;
    }
}

/* ---- cells -------------------------------------------------------------------------------- */

typedef struct cells {
    char **v;
    size_t n;
    size_t cap;
} cells_t;

static int
is_space(char c)
{
    return c == ' ' || c == '\t';
}

static int
cells_push(cells_t *c, char *s)
{
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        char **nv = realloc(c->v, ncap * sizeof(*nv));
        if (nv == NULL) {
            return PETAL_ENOMEM;
        }
        c->v = nv;
        c->cap = ncap;
    }
    c->v[c->n++] = s;
    return 0;
}

/*
 * Splits `line` in place into cells: surrounding spaces are dropped; a cell that starts with a
 * double quote runs to the matching quote ("" inside is one quote) and may hold the delimiter.
 * Returns 0, PETAL_ENOMEM, or PETAL_EPROTO with *bad_col (1-based) and *what set.
 */
static int
split_line(char *line, char delim, cells_t *c, size_t *bad_col, const char **what)
{
    c->n = 0;
    char *p = line;
    for (;;) {
        while (is_space(*p) && *p != delim) {
            p++;
        }
        char *cell = p;
        char *out = p;
        if (*p == '"') {
            p++;
            for (;;) {
                if (*p == '\0') {
                    *bad_col = c->n + 1;
                    *what = "unterminated quoted cell";
                    return PETAL_EPROTO;
                }
                if (*p == '"') {
                    if (p[1] == '"') {
                        *out++ = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                *out++ = *p++;
            }
            while (is_space(*p) && *p != delim) {
                p++;
            }
            if (*p != '\0' && *p != delim) {
                *bad_col = c->n + 1;
                *what = "text after a closing quote";
                return PETAL_EPROTO;
            }
        } else {
            while (*p != '\0' && *p != delim) {
                p++;
            }
            out = p;
            while (out > cell && is_space(out[-1]) && out[-1] != delim) {
                out--;
            }
        }
        char end = *p;
        *out = '\0';
        if (cells_push(c, cell) < 0) {
            return PETAL_ENOMEM;
        }
        if (c->n > CSV_MAX_COLS) {
            *bad_col = c->n;
            *what = "too many columns";
            return PETAL_EPROTO;
        }
        if (end == '\0') {
            return 0;
        }
        p++;
    }
}

/* A feature cell: a finite float, the whole cell. */
static int
parse_float(const char *s, float *out)
{
    if (*s == '\0') {
        return -1;
    }
    char *end = NULL;
    errno = 0;
    float v = strtof(s, &end);
    if (end == s || *end != '\0' || !isfinite(v)) {
        return -1;
    }
    *out = v;
    return 0;
}

/* A label cell: an integer 0..255 ("3" or "3.0"). */
static int
parse_label(const char *s, uint8_t *out)
{
    if (*s == '\0') {
        return -1;
    }
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= 0.0) || v > 255.0 || v != floor(v)) {
        return -1;
    }
    *out = (uint8_t)v;
    return 0;
}

static int
is_blank(const char *s)
{
    while (is_space(*s)) {
        s++;
    }
    return *s == '\0';
}

/* ---- loading ------------------------------------------------------------------------------ */

typedef struct csv_job {
    const char *path;    /* canonical */
    const char *display; /* as the caller wrote it, for messages */
    const char *label_name;
    int32_t label_column;
    int header;
    char delim;
} csv_job_t;

typedef struct csv_state {
    lines_t lines;
    cells_t cells;
    char **names; /* header names (copies) or NULL */
    size_t ncols;
    size_t label;
    float *x;
    uint64_t xcap; /* rows */
    uint8_t *y;
    uint64_t n;
} csv_state_t;

/* "column 3 (\"name\")" or "column 3" into buf. */
static const char *
col_desc(const csv_state_t *st, size_t col, char *buf, size_t cap)
{
    if (st->names != NULL && col < st->ncols && st->names[col][0] != '\0') {
        snprintf(buf, cap, "column %zu (\"%.*s\")", col + 1, CELL_SHOW, st->names[col]);
    } else {
        snprintf(buf, cap, "column %zu", col + 1);
    }
    return buf;
}

static int
resolve_label(const csv_job_t *job, csv_state_t *st, char *err, size_t cap)
{
    if (job->label_name != NULL) {
        if (st->names == NULL) {
            return pt_data_errf(PETAL_EINVAL, err, cap,
                                "%s: the label column is given by name (\"%s\") but the file has "
                                "no header line",
                                job->display, job->label_name);
        }
        for (size_t i = 0; i < st->ncols; i++) {
            if (strcmp(st->names[i], job->label_name) == 0) {
                st->label = i;
                return 0;
            }
        }
        char list[256];
        size_t used = 0;
        list[0] = '\0';
        for (size_t i = 0; i < st->ncols && used + 8 < sizeof(list); i++) {
            int w =
                snprintf(list + used, sizeof(list) - used, "%s\"%s\"", i ? ", " : "", st->names[i]);
            if (w < 0 || (size_t)w >= sizeof(list) - used) {
                snprintf(list + (sizeof(list) - 5), 5, "...");
                break;
            }
            used += (size_t)w;
        }
        return pt_data_errf(PETAL_EINVAL, err, cap,
                            "%s: no column named \"%s\" in the header (columns: %s)", job->display,
                            job->label_name, list);
    }
    int64_t c = job->label_column;
    if (c < 0) {
        c += (int64_t)st->ncols;
    }
    if (c < 0 || c >= (int64_t)st->ncols) {
        return pt_data_errf(PETAL_EINVAL, err, cap,
                            "%s: label column %d is out of range: the file has %zu columns "
                            "(0..%zu, or -1..-%zu from the end)",
                            job->display, (int)job->label_column, st->ncols, st->ncols - 1,
                            st->ncols);
    }
    st->label = (size_t)c;
    return 0;
}

static int
add_row(const csv_job_t *job, csv_state_t *st, char *err, size_t cap)
{
    uint32_t dim = (uint32_t)(st->ncols - 1);
    if (st->n == st->xcap) {
        uint64_t ncap = st->xcap ? st->xcap * 2 : 1024;
        if (ncap * dim > CSV_MAX_FLOATS) {
            ncap = CSV_MAX_FLOATS / dim;
            if (ncap <= st->n) {
                return pt_data_errf(PETAL_EMSGSIZE, err, cap, "%s: more than %llu feature values",
                                    job->display, (unsigned long long)CSV_MAX_FLOATS);
            }
        }
        float *nx = realloc(st->x, (size_t)(ncap * dim) * sizeof(float));
        if (nx == NULL) {
            return pt_data_errf(PETAL_ENOMEM, err, cap, "%s: out of memory", job->display);
        }
        st->x = nx;
        uint8_t *ny = realloc(st->y, (size_t)ncap);
        if (ny == NULL) {
            return pt_data_errf(PETAL_ENOMEM, err, cap, "%s: out of memory", job->display);
        }
        st->y = ny;
        st->xcap = ncap;
    }
    float *row = st->x + st->n * dim;
    size_t f = 0;
    char desc[96];
    for (size_t i = 0; i < st->ncols; i++) {
        const char *cell = st->cells.v[i];
        if (i == st->label) {
            if (parse_label(cell, &st->y[st->n]) < 0) {
                return pt_data_errf(PETAL_EPROTO, err, cap,
                                    "%s:%llu: %s: label \"%.*s\" is not an integer in 0..255",
                                    job->display, (unsigned long long)st->lines.lineno,
                                    col_desc(st, i, desc, sizeof(desc)), CELL_SHOW, cell);
            }
            continue;
        }
        if (parse_float(cell, &row[f]) < 0) {
            return pt_data_errf(PETAL_EPROTO, err, cap, "%s:%llu: %s: \"%.*s\" is not %s",
                                job->display, (unsigned long long)st->lines.lineno,
                                col_desc(st, i, desc, sizeof(desc)), CELL_SHOW, cell,
                                cell[0] == '\0' ? "a number (empty cell)" : "a finite number");
        }
        f++;
    }
    st->n++;
    return 0;
}

static int
csv_load(void *arg, pt_dataset_body_t *body, char *err, size_t cap)
{
    const csv_job_t *job = arg;
    csv_state_t st;
    memset(&st, 0, sizeof(st));
    int rc = 0;
    st.lines.path = job->display;
    st.lines.gz = gzopen(job->path, "rb");
    if (st.lines.gz == NULL) {
        return pt_data_errf(PETAL_EIO, err, cap, "%s: cannot open: %s", job->display,
                            errno ? strerror(errno) : "out of memory");
    }
    gzbuffer(st.lines.gz, 256u << 10);
    st.lines.cap = 2 * (size_t)CSV_CHUNK;
    st.lines.buf = malloc(st.lines.cap);
    if (st.lines.buf == NULL) {
        rc = pt_data_errf(PETAL_ENOMEM, err, cap, "%s: out of memory", job->display);
        goto fail;
    }
    int first = 1;
    for (;;) {
        char *line = NULL;
        rc = lines_next(&st.lines, &line, err, cap);
        if (rc < 0) {
            goto fail;
        }
        if (rc == 0) {
            break;
        }
        if (is_blank(line)) {
            continue;
        }
        size_t bad_col = 0;
        const char *what = NULL;
        rc = split_line(line, job->delim, &st.cells, &bad_col, &what);
        if (rc == PETAL_ENOMEM) {
            rc = pt_data_errf(rc, err, cap, "%s: out of memory", job->display);
            goto fail;
        }
        if (rc < 0) {
            rc = pt_data_errf(rc, err, cap, "%s:%llu: column %zu: %s", job->display,
                              (unsigned long long)st.lines.lineno, bad_col, what);
            goto fail;
        }
        if (first) {
            first = 0;
            st.ncols = st.cells.n;
            if (st.ncols < 2) {
                rc = pt_data_errf(PETAL_EPROTO, err, cap,
                                  "%s:%llu: found 1 column, need at least 2 (features and a "
                                  "label; is the delimiter '%c'?)",
                                  job->display, (unsigned long long)st.lines.lineno, job->delim);
                goto fail;
            }
            int header = job->header == PETAL_CSV_HEADER_YES;
            if (job->header == PETAL_CSV_HEADER_AUTO) {
                float v;
                for (size_t i = 0; i < st.ncols && !header; i++) {
                    header = parse_float(st.cells.v[i], &v) < 0;
                }
            }
            if (header) {
                st.names = calloc(st.ncols, sizeof(char *));
                if (st.names == NULL) {
                    rc = pt_data_errf(PETAL_ENOMEM, err, cap, "%s: out of memory", job->display);
                    goto fail;
                }
                for (size_t i = 0; i < st.ncols; i++) {
                    st.names[i] = strdup(st.cells.v[i]);
                    if (st.names[i] == NULL) {
                        rc =
                            pt_data_errf(PETAL_ENOMEM, err, cap, "%s: out of memory", job->display);
                        goto fail;
                    }
                }
            }
            rc = resolve_label(job, &st, err, cap);
            if (rc < 0) {
                goto fail;
            }
            if (header) {
                continue;
            }
        } else if (st.cells.n != st.ncols) {
            rc = pt_data_errf(PETAL_EPROTO, err, cap, "%s:%llu: expected %zu cells, found %zu",
                              job->display, (unsigned long long)st.lines.lineno, st.ncols,
                              st.cells.n);
            goto fail;
        }
        rc = add_row(job, &st, err, cap);
        if (rc < 0) {
            goto fail;
        }
    }
    if (st.n == 0) {
        rc = pt_data_errf(PETAL_EPROTO, err, cap, "%s: holds no examples", job->display);
        goto fail;
    }
    uint32_t dim = (uint32_t)(st.ncols - 1);
    body->x = pt_data_alloc_floats(st.n * dim);
    if (body->x == NULL) {
        rc = pt_data_errf(PETAL_ENOMEM, err, cap, "%s: out of memory", job->display);
        goto fail;
    }
    memcpy(body->x, st.x, (size_t)(st.n * dim) * sizeof(float));
    uint8_t max_label = 0;
    for (uint64_t i = 0; i < st.n; i++) {
        if (st.y[i] > max_label) {
            max_label = st.y[i];
        }
    }
    body->y = st.y;
    st.y = NULL;
    body->n = st.n;
    body->dim = dim;
    body->num_classes = (uint32_t)max_label + 1;
    rc = 0;

fail:
    gzclose(st.lines.gz);
    free(st.lines.buf);
    free(st.cells.v);
    if (st.names != NULL) {
        for (size_t i = 0; i < st.ncols; i++) {
            free(st.names[i]);
        }
        free(st.names);
    }
    free(st.x);
    free(st.y);
    return rc;
}

int
petal_dataset_load_csv(const char *path, const petal_csv_options_t *opts,
                       const petal_dataset_t **out, char *err, size_t cap)
{
    if (path == NULL || out == NULL) {
        return pt_data_errf(PETAL_EINVAL, err, cap, "csv load: NULL path or output");
    }
    if (err != NULL && cap > 0) {
        err[0] = '\0';
    }
    petal_csv_options_t o;
    memset(&o, 0, sizeof(o));
    if (opts != NULL) {
        o = *opts;
    }
    if (o.delimiter == '\0') {
        o.delimiter = ',';
    }
    if (o.delimiter == '"' || o.delimiter == '\n' || o.delimiter == '\r' || o.delimiter == ' ') {
        return pt_data_errf(PETAL_EINVAL, err, cap, "%s: unusable CSV delimiter 0x%02x", path,
                            (unsigned char)o.delimiter);
    }
    if (o.header != PETAL_CSV_HEADER_AUTO && o.header != PETAL_CSV_HEADER_YES &&
        o.header != PETAL_CSV_HEADER_NO) {
        return pt_data_errf(PETAL_EINVAL, err, cap, "%s: bad CSV header mode %d", path, o.header);
    }
    if (o.label_name != NULL && o.header == PETAL_CSV_HEADER_NO) {
        return pt_data_errf(PETAL_EINVAL, err, cap,
                            "%s: the label column is given by name (\"%s\") but the header mode "
                            "says there is no header line",
                            path, o.label_name);
    }
    char *real = realpath(path, NULL);
    if (real == NULL) {
        return pt_data_errf(errno == ENOMEM ? PETAL_ENOMEM : PETAL_EIO, err, cap,
                            "%s: cannot open: %s", path, strerror(errno));
    }
    size_t klen = strlen(real) + (o.label_name != NULL ? strlen(o.label_name) : 0) + 64;
    char *key = malloc(klen);
    if (key == NULL) {
        free(real);
        return pt_data_errf(PETAL_ENOMEM, err, cap, "csv load: out of memory");
    }
    if (o.label_name != NULL) {
        snprintf(key, klen, "csv\n%s\nh%d d%d name=%s", real, o.header, o.delimiter, o.label_name);
    } else {
        snprintf(key, klen, "csv\n%s\nh%d d%d col=%d", real, o.header, o.delimiter,
                 (int)o.label_column);
    }
    csv_job_t job = {real, path, o.label_name, o.label_column, o.header, o.delimiter};
    int rc = pt_dataset_cache_get(key, csv_load, &job, out, NULL, err, cap);
    free(key);
    free(real);
    return rc;
}
