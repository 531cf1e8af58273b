/* test_data.c - the data module: IDX loading, the shared cache, partitioners and the PRNG. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <petal/data.h>

static char tmpdir[256];

static void
make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/petal-test-data-XXXXXX",
             base != NULL && base[0] != '\0' ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
remove_tmpdir(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *
tmp_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
    return buf;
}

static void
write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static void
write_gz(const char *path, const void *data, size_t len)
{
    gzFile g = gzopen(path, "wb");
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(gzwrite(g, data, (unsigned)len), (int)len);
    ck_assert_int_eq(gzclose(g), Z_OK);
}

/* An IDX header: 0 0 0x08 ndim, then big-endian dims; returns its length. */
static size_t
idx_header(uint8_t *out, uint8_t type, uint8_t ndim, const uint32_t *dims)
{
    out[0] = 0;
    out[1] = 0;
    out[2] = type;
    out[3] = ndim;
    for (int i = 0; i < ndim; i++) {
        out[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
        out[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
        out[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
        out[7 + 4 * i] = (uint8_t)dims[i];
    }
    return 4 + 4 * (size_t)ndim;
}

/* Writes a small dataset: n images of 2x3 pixels (pixel k of image i = 10*i + k) and labels
 * i % 3, to images/labels (plain or gzip). */
static void
write_small(const char *images, const char *labels, uint32_t n_img, uint32_t n_lab, int gz)
{
    uint8_t buf[4096];
    uint32_t dims[3] = {n_img, 2, 3};
    size_t len = idx_header(buf, 0x08, 3, dims);
    for (uint32_t i = 0; i < n_img; i++) {
        for (uint32_t k = 0; k < 6; k++) {
            buf[len++] = (uint8_t)(10 * i + k);
        }
    }
    (gz ? write_gz : write_file)(images, buf, len);
    len = idx_header(buf, 0x08, 1, &n_lab);
    for (uint32_t i = 0; i < n_lab; i++) {
        buf[len++] = (uint8_t)(i % 3);
    }
    (gz ? write_gz : write_file)(labels, buf, len);
}

/* ---- Fashion-MNIST ------------------------------------------------------------------------- */

START_TEST(test_fmnist_train)
{
    const petal_dataset_t *d = NULL;
    char err[512] = "";
    int rc = petal_dataset_load_fmnist(NULL, 1, &d, err, sizeof(err));
    ck_assert_msg(rc == 0, "load failed: %s", err);
    ck_assert_uint_eq(d->n, 60000);
    ck_assert_uint_eq(d->dim, 784);
    ck_assert_uint_eq(d->num_classes, 10);
    uint64_t counts[10];
    petal_dataset_class_counts(d, NULL, 0, counts, 10);
    for (int c = 0; c < 10; c++) {
        ck_assert_uint_eq(counts[c], 6000); /* Fashion-MNIST is balanced */
    }
    ck_assert_uint_eq(d->y[0], 9); /* the first training image is an ankle boot */
    double sum = 0.0;
    for (int i = 0; i < 784; i++) {
        sum += d->x[i];
    }
    ck_assert_double_eq_tol(sum, 76247.0 / 255.0, 1e-3);
    float lo = 1.0f, hi = 0.0f;
    for (uint64_t i = 0; i < d->n * d->dim; i++) {
        lo = d->x[i] < lo ? d->x[i] : lo;
        hi = d->x[i] > hi ? d->x[i] : hi;
    }
    ck_assert_float_eq(lo, 0.0f);
    ck_assert_float_eq(hi, 1.0f);
    petal_dataset_release(d);
}
END_TEST

START_TEST(test_fmnist_test)
{
    const petal_dataset_t *d = NULL;
    char err[512] = "";
    ck_assert_msg(petal_dataset_load_fmnist(NULL, 0, &d, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(d->n, 10000);
    ck_assert_uint_eq(d->dim, 784);
    ck_assert_uint_eq(d->num_classes, 10);
    for (uint64_t i = 0; i < d->n; i++) {
        ck_assert_uint_lt(d->y[i], 10);
    }
    ck_assert_uint_eq(d->y[0], 9);
    ck_assert_uint_eq(d->y[1], 2);
    petal_dataset_release(d);
}
END_TEST

START_TEST(test_fmnist_missing_dir)
{
    const petal_dataset_t *d = NULL;
    char err[512] = "";
    int rc = petal_dataset_load_fmnist("/nonexistent/petal-data", 1, &d, err, sizeof(err));
    ck_assert_int_eq(rc, PETAL_EIO);
    ck_assert_ptr_null(d);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/petal-data/train-images-idx3-ubyte"));
    ck_assert_ptr_nonnull(strstr(err, PETAL_FMNIST_DIR_ENV));
}
END_TEST

/* The directory comes from the environment; plain (non-gzip) names are found too. */
START_TEST(test_fmnist_env_dir_plain)
{
    make_tmpdir();
    char a[512], b[512];
    write_small(tmp_path(a, sizeof(a), "t10k-images-idx3-ubyte"),
                tmp_path(b, sizeof(b), "t10k-labels-idx1-ubyte"), 4, 4, 0);
    ck_assert_int_eq(setenv(PETAL_FMNIST_DIR_ENV, tmpdir, 1), 0);
    const petal_dataset_t *d = NULL;
    char err[512] = "";
    ck_assert_msg(petal_dataset_load_fmnist(NULL, 0, &d, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(d->n, 4);
    ck_assert_uint_eq(d->dim, 6);
    petal_dataset_release(d);
    unsetenv(PETAL_FMNIST_DIR_ENV);
    remove_tmpdir();
}
END_TEST

/* ---- IDX files written here ------------------------------------------------------------------ */

static void
check_small(const petal_dataset_t *d, uint32_t n)
{
    ck_assert_uint_eq(d->n, n);
    ck_assert_uint_eq(d->dim, 6);
    ck_assert_uint_eq(d->num_classes, 3);
    for (uint32_t i = 0; i < n; i++) {
        ck_assert_uint_eq(d->y[i], i % 3);
        for (uint32_t k = 0; k < 6; k++) {
            ck_assert_float_eq(d->x[i * 6 + k], (float)(10 * i + k) / 255.0f);
        }
    }
}

START_TEST(test_idx_plain)
{
    make_tmpdir();
    char a[512], b[512];
    write_small(tmp_path(a, sizeof(a), "img"), tmp_path(b, sizeof(b), "lab"), 5, 5, 0);
    const petal_dataset_t *d = NULL;
    char err[512] = "";
    ck_assert_msg(petal_dataset_load_idx(a, b, &d, err, sizeof(err)) == 0, "%s", err);
    check_small(d, 5);
    petal_dataset_release(d);
    remove_tmpdir();
}
END_TEST

START_TEST(test_idx_gzip)
{
    make_tmpdir();
    char a[512], b[512];
    write_small(tmp_path(a, sizeof(a), "img.gz"), tmp_path(b, sizeof(b), "lab.gz"), 7, 7, 1);
    const petal_dataset_t *d = NULL;
    char err[512] = "";
    ck_assert_msg(petal_dataset_load_idx(a, b, &d, err, sizeof(err)) == 0, "%s", err);
    check_small(d, 7);
    petal_dataset_release(d);
    remove_tmpdir();
}
END_TEST

/* Loads a pair that must fail with `code` and a message containing `needle`. */
static void
expect_error(const char *images, const char *labels, int code, const char *needle)
{
    const petal_dataset_t *d = NULL;
    char err[512] = "";
    int rc = petal_dataset_load_idx(images, labels, &d, err, sizeof(err));
    ck_assert_msg(rc == code, "expected %d, got %d (%s)", code, rc, err);
    ck_assert_ptr_null(d);
    ck_assert_msg(strstr(err, needle) != NULL, "message \"%s\" lacks \"%s\"", err, needle);
}

START_TEST(test_idx_bad_magic)
{
    make_tmpdir();
    char a[512], b[512];
    write_small(tmp_path(a, sizeof(a), "img"), tmp_path(b, sizeof(b), "lab"), 3, 3, 0);
    write_file(a, "P5\n28 28\n255\n", 13); /* a PGM, not an IDX file */
    expect_error(a, b, PETAL_EPROTO, "bad magic");
    expect_error(a, b, PETAL_EPROTO, a); /* names the file */
    uint8_t hdr[16];
    uint32_t dims[3] = {1, 1, 1};
    size_t len = idx_header(hdr, 0x0D, 3, dims); /* float elements */
    write_file(a, hdr, len);
    expect_error(a, b, PETAL_EPROTO, "unsupported IDX element type 0x0d");
    len = idx_header(hdr, 0x08, 1, dims); /* images need 2+ dimensions */
    write_file(a, hdr, len);
    expect_error(a, b, PETAL_EPROTO, "1 dimensions");
    write_file(a, hdr, 2);
    expect_error(a, b, PETAL_EPROTO, "truncated");
    remove_tmpdir();
}
END_TEST

START_TEST(test_idx_truncated)
{
    make_tmpdir();
    char a[512], b[512];
    write_small(tmp_path(a, sizeof(a), "img"), tmp_path(b, sizeof(b), "lab"), 3, 3, 0);
    uint8_t buf[64];
    uint32_t dims[3] = {3, 2, 3};
    size_t len = idx_header(buf, 0x08, 3, dims);
    memset(buf + len, 7, 5);
    write_file(a, buf, len + 5); /* 18 pixels announced, 5 present */
    expect_error(a, b, PETAL_EPROTO, "truncated: expected 18 bytes of pixels, got 5");
    /* A header that announces 4 GiB of pixels costs an error, not a 4 GiB allocation. */
    uint32_t huge[3] = {65536, 256, 256};
    len = idx_header(buf, 0x08, 3, huge);
    write_file(a, buf, len + 5);
    expect_error(a, b, PETAL_EPROTO, "truncated: expected 4294967296 bytes of pixels, got 5");
    remove_tmpdir();
}
END_TEST

START_TEST(test_idx_truncated_gzip)
{
    make_tmpdir();
    char a[512], b[512];
    tmp_path(a, sizeof(a), "img.gz");
    tmp_path(b, sizeof(b), "lab.gz");
    /* 2000 images of 2x3 with noisy pixels so the stream does not compress to nothing. */
    size_t n = 2000, len;
    uint8_t *buf = malloc(16 + n * 6);
    uint32_t dims[3] = {(uint32_t)n, 2, 3};
    len = idx_header(buf, 0x08, 3, dims);
    for (size_t i = 0; i < n * 6; i++) {
        buf[len++] = (uint8_t)((i * 2654435761u) >> 13);
    }
    write_gz(a, buf, len);
    free(buf);
    FILE *f = fopen(a, "rb");
    ck_assert_ptr_nonnull(f);
    uint8_t gzbytes[65536];
    size_t gzlen = fread(gzbytes, 1, sizeof(gzbytes), f);
    fclose(f);
    ck_assert_uint_gt(gzlen, 200);
    write_file(a, gzbytes, gzlen / 2); /* the stream is cut in the middle */
    uint8_t lab[16 + 2000];
    uint32_t ln = (uint32_t)n;
    size_t ll = idx_header(lab, 0x08, 1, &ln);
    memset(lab + ll, 1, n);
    write_gz(b, lab, ll + n);
    const petal_dataset_t *d = NULL;
    char err[512] = "";
    int rc = petal_dataset_load_idx(a, b, &d, err, sizeof(err));
    ck_assert_msg(rc == PETAL_EPROTO || rc == PETAL_EIO, "rc %d (%s)", rc, err);
    ck_assert_msg(strstr(err, "img.gz") != NULL, "%s", err);
    remove_tmpdir();
}
END_TEST

START_TEST(test_idx_count_mismatch)
{
    make_tmpdir();
    char a[512], b[512];
    write_small(tmp_path(a, sizeof(a), "img"), tmp_path(b, sizeof(b), "lab"), 4, 3, 0);
    expect_error(a, b, PETAL_EPROTO, "count mismatch");
    expect_error(a, b, PETAL_EPROTO, "4 examples but");
    remove_tmpdir();
}
END_TEST

START_TEST(test_idx_trailing_bytes)
{
    make_tmpdir();
    char a[512], b[512];
    write_small(tmp_path(a, sizeof(a), "img"), tmp_path(b, sizeof(b), "lab"), 2, 2, 0);
    uint8_t buf[64];
    uint32_t n = 2;
    size_t len = idx_header(buf, 0x08, 1, &n);
    memset(buf + len, 0, 3); /* 2 labels announced, 3 present */
    write_file(b, buf, len + 3);
    expect_error(a, b, PETAL_EPROTO, "unexpected bytes after the 2 bytes of labels");
    remove_tmpdir();
}
END_TEST

START_TEST(test_idx_missing_file)
{
    expect_error("/nonexistent/images", "/nonexistent/labels", PETAL_EIO, "/nonexistent/images");
}
END_TEST

/* A failed load is not cached: once the file is fixed, the next load succeeds. */
START_TEST(test_idx_failure_not_cached)
{
    make_tmpdir();
    char a[512], b[512];
    write_small(tmp_path(a, sizeof(a), "img"), tmp_path(b, sizeof(b), "lab"), 3, 2, 0);
    expect_error(a, b, PETAL_EPROTO, "count mismatch");
    write_small(a, b, 3, 3, 0);
    const petal_dataset_t *d = NULL;
    char err[512] = "";
    ck_assert_msg(petal_dataset_load_idx(a, b, &d, err, sizeof(err)) == 0, "%s", err);
    check_small(d, 3);
    petal_dataset_release(d);
    remove_tmpdir();
}
END_TEST

/* ---- The cache ------------------------------------------------------------------------------- */

START_TEST(test_cache_same_pointer)
{
    make_tmpdir();
    char a[512], b[512], a2[600];
    write_small(tmp_path(a, sizeof(a), "img"), tmp_path(b, sizeof(b), "lab"), 3, 3, 0);
    snprintf(a2, sizeof(a2), "%s/./img", tmpdir); /* another spelling of the same file */
    const petal_dataset_t *d1 = NULL, *d2 = NULL, *d3 = NULL;
    char err[512] = "";
    ck_assert_msg(petal_dataset_load_idx(a, b, &d1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_msg(petal_dataset_load_idx(a2, b, &d2, err, sizeof(err)) == 0, "%s", err);
    ck_assert_ptr_eq(d1, d2);
    /* While a reference is held, the files are not read again even if they change. */
    petal_dataset_release(d1);
    write_small(a, b, 4, 4, 0);
    ck_assert_msg(petal_dataset_load_idx(a, b, &d3, err, sizeof(err)) == 0, "%s", err);
    ck_assert_ptr_eq(d3, d2);
    ck_assert_uint_eq(d3->n, 3);
    petal_dataset_release(d2);
    petal_dataset_release(d3);
    /* After the last release, a load reads the files anew. */
    ck_assert_msg(petal_dataset_load_idx(a, b, &d1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(d1->n, 4);
    petal_dataset_release(d1);
    remove_tmpdir();
}
END_TEST

START_TEST(test_cache_fmnist_same_pointer)
{
    const petal_dataset_t *d1 = NULL, *d2 = NULL;
    char err[512] = "";
    ck_assert_msg(petal_dataset_load_fmnist(NULL, 0, &d1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_msg(petal_dataset_load_fmnist(PETAL_FMNIST_DEFAULT_DIR, 0, &d2, err, sizeof(err)) ==
                      0,
                  "%s", err);
    ck_assert_ptr_eq(d1, d2);
    petal_dataset_release(d1);
    petal_dataset_release(d2);
}
END_TEST

#define NTHREADS 8

static void *
load_thread(void *arg)
{
    const petal_dataset_t **out = arg;
    char err[256];
    if (petal_dataset_load_fmnist(NULL, 0, out, err, sizeof(err)) != 0) {
        *out = NULL;
    }
    return NULL;
}

/* Many threads load at once: all get the one shared copy. */
START_TEST(test_cache_threads)
{
    pthread_t th[NTHREADS];
    const petal_dataset_t *got[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        ck_assert_int_eq(pthread_create(&th[i], NULL, load_thread, &got[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        ck_assert_ptr_nonnull(got[i]);
        ck_assert_ptr_eq(got[i], got[0]);
    }
    ck_assert_uint_eq(got[0]->n, 10000);
    for (int i = 0; i < NTHREADS; i++) {
        petal_dataset_release(got[i]);
    }
}
END_TEST

/* ---- Partitioners ---------------------------------------------------------------------------- */

/* Checks the IID contract for (n, P, seed): disjoint, covering, sorted, balanced, repeatable. */
static void
check_iid(uint64_t n, uint32_t parts, uint64_t seed)
{
    uint8_t *seen = calloc(n > 0 ? n : 1, 1);
    ck_assert_ptr_nonnull(seen);
    uint64_t total = 0, min = UINT64_MAX, max = 0;
    for (uint32_t p = 0; p < parts; p++) {
        uint64_t *idx = NULL, count = 0;
        ck_assert_int_eq(petal_partition_iid(n, parts, p, seed, &idx, &count), 0);
        min = count < min ? count : min;
        max = count > max ? count : max;
        total += count;
        for (uint64_t i = 0; i < count; i++) {
            ck_assert_uint_lt(idx[i], n);
            ck_assert_msg(!seen[idx[i]], "index %llu in two partitions",
                          (unsigned long long)idx[i]);
            seen[idx[i]] = 1;
            if (i > 0) {
                ck_assert_uint_lt(idx[i - 1], idx[i]);
            }
        }
        uint64_t *again = NULL, count2 = 0;
        ck_assert_int_eq(petal_partition_iid(n, parts, p, seed, &again, &count2), 0);
        ck_assert_uint_eq(count2, count);
        if (count > 0) {
            ck_assert_int_eq(memcmp(idx, again, sizeof(*idx) * count), 0);
        }
        free(idx);
        free(again);
    }
    ck_assert_uint_eq(total, n);
    ck_assert_uint_le(max - min, 1);
    free(seen);
}

START_TEST(test_iid_contract)
{
    check_iid(60000, 10, 42);
    check_iid(10000, 7, 1);
    check_iid(10, 3, 0);
    check_iid(7, 10, 5); /* some partitions are empty */
    check_iid(1, 1, 9);
    check_iid(0, 4, 9);
    check_iid(1000, 1000, 3);
    check_iid(65537, 13, 12345);
}
END_TEST

START_TEST(test_iid_seed_matters)
{
    uint64_t *a = NULL, *b = NULL, na = 0, nb = 0;
    ck_assert_int_eq(petal_partition_iid(60000, 10, 3, 42, &a, &na), 0);
    ck_assert_int_eq(petal_partition_iid(60000, 10, 3, 43, &b, &nb), 0);
    ck_assert_uint_eq(na, 6000);
    ck_assert_uint_eq(nb, 6000);
    ck_assert_int_ne(memcmp(a, b, sizeof(*a) * na), 0);
    /* Spread over the whole range, not a contiguous block. */
    ck_assert_uint_lt(a[0], 100);
    ck_assert_uint_gt(a[na - 1], 59900);
    free(a);
    free(b);
}
END_TEST

/* An IID share of Fashion-MNIST has roughly a tenth of each class. */
START_TEST(test_iid_class_balance)
{
    const petal_dataset_t *d = NULL;
    char err[512] = "";
    ck_assert_msg(petal_dataset_load_fmnist(NULL, 1, &d, err, sizeof(err)) == 0, "%s", err);
    uint64_t *idx = NULL, count = 0, counts[10];
    ck_assert_int_eq(petal_partition_iid(d->n, 10, 4, 42, &idx, &count), 0);
    petal_dataset_class_counts(d, idx, count, counts, 10);
    for (int c = 0; c < 10; c++) {
        ck_assert_uint_gt(counts[c], 450);
        ck_assert_uint_lt(counts[c], 750);
    }
    free(idx);
    petal_dataset_release(d);
}
END_TEST

START_TEST(test_iid_invalid)
{
    uint64_t *idx = NULL, count = 0;
    ck_assert_int_eq(petal_partition_iid(10, 0, 0, 1, &idx, &count), PETAL_EINVAL);
    ck_assert_int_eq(petal_partition_iid(10, 3, 3, 1, &idx, &count), PETAL_EINVAL);
    ck_assert_int_eq(petal_partition_iid(10, 3, 0, 1, NULL, &count), PETAL_EINVAL);
    ck_assert_ptr_null(idx);
}
END_TEST

START_TEST(test_dirichlet)
{
    enum { N = 6000, C = 10, P = 8 };
    uint8_t *labels = malloc(N);
    for (int i = 0; i < N; i++) {
        labels[i] = (uint8_t)(i % C);
    }
    uint8_t seen[N];
    memset(seen, 0, sizeof(seen));
    uint64_t total = 0;
    double max_share = 0.0;
    for (uint32_t p = 0; p < P; p++) {
        uint64_t *idx = NULL, count = 0, *again = NULL, count2 = 0;
        ck_assert_int_eq(petal_partition_dirichlet(labels, N, C, P, p, 0.1, 10, 7, &idx, &count),
                         0);
        ck_assert_int_eq(petal_partition_dirichlet(labels, N, C, P, p, 0.1, 10, 7, &again, &count2),
                         0);
        ck_assert_uint_eq(count, count2);
        ck_assert_int_eq(memcmp(idx, again, sizeof(*idx) * count), 0);
        ck_assert_uint_ge(count, 10);
        uint64_t per[C] = {0};
        for (uint64_t i = 0; i < count; i++) {
            ck_assert(!seen[idx[i]]);
            seen[idx[i]] = 1;
            per[labels[idx[i]]]++;
        }
        for (int c = 0; c < C; c++) {
            double s = (double)per[c] / (double)count;
            max_share = s > max_share ? s : max_share;
        }
        total += count;
        free(idx);
        free(again);
    }
    ck_assert_uint_eq(total, N);
    /* alpha = 0.1 is strongly skewed: some partition is mostly one class. */
    ck_assert_double_gt(max_share, 0.5);

    /* A huge alpha is close to IID. */
    uint64_t *idx = NULL, count = 0, per[C] = {0};
    ck_assert_int_eq(petal_partition_dirichlet(labels, N, C, P, 2, 1e6, 0, 7, &idx, &count), 0);
    for (uint64_t i = 0; i < count; i++) {
        per[labels[idx[i]]]++;
    }
    for (int c = 0; c < C; c++) {
        ck_assert_uint_gt(per[c], 60);
        ck_assert_uint_lt(per[c], 90);
    }
    free(idx);
    /* Impossible minimum size; bad arguments. */
    ck_assert_int_eq(petal_partition_dirichlet(labels, N, C, P, 0, 0.5, N, 7, &idx, &count),
                     PETAL_EAGAIN);
    ck_assert_int_eq(petal_partition_dirichlet(labels, N, C, P, 0, 0.0, 0, 7, &idx, &count),
                     PETAL_EINVAL);
    ck_assert_int_eq(petal_partition_dirichlet(labels, N, 5, P, 0, 1.0, 0, 7, &idx, &count),
                     PETAL_EINVAL);
    free(labels);
}
END_TEST

/* ---- PRNG ------------------------------------------------------------------------------------ */

/* Reference values computed from the published algorithms (splitmix64, xoshiro256**). */
START_TEST(test_rng_reference)
{
    uint64_t st = 0;
    ck_assert_uint_eq(petal_splitmix64(&st), UINT64_C(0xe220a8397b1dcdaf));
    petal_rng_t r;
    petal_rng_seed(&r, 42);
    ck_assert_uint_eq(petal_rng_next(&r), UINT64_C(0x15780b2e0c2ec716));
    ck_assert_uint_eq(petal_rng_next(&r), UINT64_C(0x6104d9866d113a7e));
    ck_assert_uint_eq(petal_rng_next(&r), UINT64_C(0xae17533239e499a1));
}
END_TEST

START_TEST(test_rng_ranges)
{
    petal_rng_t r;
    petal_rng_seed(&r, 7);
    uint64_t hist[6] = {0};
    double mean = 0.0, sq = 0.0;
    for (int i = 0; i < 60000; i++) {
        uint64_t v = petal_rng_below(&r, 6);
        ck_assert_uint_lt(v, 6);
        hist[v]++;
        double u = petal_rng_uniform(&r);
        ck_assert(u >= 0.0 && u < 1.0);
        double g = petal_rng_normal(&r);
        mean += g;
        sq += g * g;
    }
    for (int i = 0; i < 6; i++) {
        ck_assert_uint_gt(hist[i], 9500);
        ck_assert_uint_lt(hist[i], 10500);
    }
    ck_assert_double_lt(fabs(mean / 60000), 0.02);
    ck_assert_double_lt(fabs(sq / 60000 - 1.0), 0.03);
    ck_assert_uint_eq(petal_rng_below(&r, 0), 0);
    ck_assert_uint_ne(petal_seed_combine(1, 2), petal_seed_combine(2, 1));
}
END_TEST

static Suite *
data_suite(void)
{
    Suite *s = suite_create("data");
    TCase *tc = tcase_create("fmnist");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_fmnist_train);
    tcase_add_test(tc, test_fmnist_test);
    tcase_add_test(tc, test_fmnist_missing_dir);
    tcase_add_test(tc, test_fmnist_env_dir_plain);
    suite_add_tcase(s, tc);

    tc = tcase_create("idx");
    tcase_add_test(tc, test_idx_plain);
    tcase_add_test(tc, test_idx_gzip);
    tcase_add_test(tc, test_idx_bad_magic);
    tcase_add_test(tc, test_idx_truncated);
    tcase_add_test(tc, test_idx_truncated_gzip);
    tcase_add_test(tc, test_idx_count_mismatch);
    tcase_add_test(tc, test_idx_trailing_bytes);
    tcase_add_test(tc, test_idx_missing_file);
    tcase_add_test(tc, test_idx_failure_not_cached);
    suite_add_tcase(s, tc);

    tc = tcase_create("cache");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_cache_same_pointer);
    tcase_add_test(tc, test_cache_fmnist_same_pointer);
    tcase_add_test(tc, test_cache_threads);
    suite_add_tcase(s, tc);

    tc = tcase_create("partition");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_iid_contract);
    tcase_add_test(tc, test_iid_seed_matters);
    tcase_add_test(tc, test_iid_class_balance);
    tcase_add_test(tc, test_iid_invalid);
    tcase_add_test(tc, test_dirichlet);
    suite_add_tcase(s, tc);

    tc = tcase_create("rng");
    tcase_add_test(tc, test_rng_reference);
    tcase_add_test(tc, test_rng_ranges);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(data_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
