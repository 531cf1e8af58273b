/* test_partition.c - partitioners (properties), the by-name dispatcher, CSV and Synthetic data. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <petal/data.h>

/* ---- helpers --------------------------------------------------------------------------------- */

enum { N = 6000, C = 10 };

static uint8_t labels[N];

/* Balanced labels in a scrambled order (600 of each class). */
static void
make_labels(void)
{
    for (uint32_t i = 0; i < N; i++) {
        labels[i] = (uint8_t)((i * 7919u) % C);
    }
}

static char tmpdir[256];

static void
setup_tmp(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/petal-test-part-XXXXXX",
             base != NULL && base[0] != '\0' ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
teardown_tmp(void)
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
write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, strlen(text), f), strlen(text));
    ck_assert_int_eq(fclose(f), 0);
}

/* Runs the named partitioner for every partition and checks the common contract: indices sorted,
 * in range, no index in two partitions. Returns the number assigned; sizes[p] filled if given. */
static uint64_t
run_all(const char *name, const petal_partition_params_t *pp, uint32_t P, uint64_t *sizes,
        uint8_t *seen)
{
    char err[256];
    uint64_t total = 0;
    memset(seen, 0, N);
    for (uint32_t p = 0; p < P; p++) {
        uint64_t *idx = NULL, count = 0;
        int rc =
            petal_partition_by_name(name, pp, labels, N, C, P, p, &idx, &count, err, sizeof(err));
        ck_assert_msg(rc == 0, "%s: %s", name, err);
        for (uint64_t i = 0; i < count; i++) {
            ck_assert_uint_lt(idx[i], N);
            if (i > 0) {
                ck_assert_uint_lt(idx[i - 1], idx[i]);
            }
            ck_assert_msg(!seen[idx[i]], "%s: example %llu in two partitions", name,
                          (unsigned long long)idx[i]);
            seen[idx[i]] = 1;
        }
        if (sizes != NULL) {
            sizes[p] = count;
        }
        total += count;
        free(idx);
    }
    return total;
}

/* A 64-bit digest of all partitions' indices. */
static uint64_t
digest_all(const char *name, const petal_partition_params_t *pp, uint32_t P)
{
    uint64_t h = 1469598103934665603u;
    char err[256];
    for (uint32_t p = 0; p < P; p++) {
        uint64_t *idx = NULL, count = 0;
        ck_assert_int_eq(
            petal_partition_by_name(name, pp, labels, N, C, P, p, &idx, &count, err, sizeof(err)),
            0);
        for (uint64_t i = 0; i < count; i++) {
            h = (h ^ (idx[i] + p * 1000003u)) * 1099511628211u;
        }
        h = (h ^ count) * 1099511628211u;
        free(idx);
    }
    return h;
}

/* Shannon entropy (bits) of counts[0..k). */
static double
entropy(const uint64_t *counts, uint32_t k)
{
    uint64_t total = 0;
    for (uint32_t c = 0; c < k; c++) {
        total += counts[c];
    }
    double h = 0.0;
    for (uint32_t c = 0; c < k; c++) {
        if (counts[c] > 0) {
            double q = (double)counts[c] / (double)total;
            h -= q * log2(q);
        }
    }
    return h;
}

static const char *all_names[] = {"iid",    "dirichlet", "pathological", "shard",
                                  "linear", "square",    "exponential"};

static void
default_params(petal_partition_params_t *pp, uint64_t seed)
{
    petal_partition_params_init(pp);
    pp->seed = seed;
    pp->tau = 4.0;
}

/* ---- partition properties -------------------------------------------------------------------- */

START_TEST(test_every_sample_once)
{
    make_labels();
    static uint8_t seen[N];
    const uint32_t parts[] = {1, 7, 20, 100};
    for (size_t a = 0; a < sizeof(all_names) / sizeof(all_names[0]); a++) {
        for (size_t b = 0; b < sizeof(parts) / sizeof(parts[0]); b++) {
            petal_partition_params_t pp;
            default_params(&pp, 42 + b);
            if (strcmp(all_names[a], "pathological") == 0 && parts[b] * pp.k < C) {
                continue; /* classes nobody holds are left out: see test_pathological_k_classes */
            }
            uint64_t total = run_all(all_names[a], &pp, parts[b], NULL, seen);
            ck_assert_msg(total == N, "%s over %u partitions assigned %llu of %d", all_names[a],
                          parts[b], (unsigned long long)total, N);
            for (uint32_t i = 0; i < N; i++) {
                ck_assert(seen[i]);
            }
        }
    }
}
END_TEST

START_TEST(test_seed_determinism)
{
    make_labels();
    for (size_t a = 0; a < sizeof(all_names) / sizeof(all_names[0]); a++) {
        petal_partition_params_t pp;
        default_params(&pp, 7);
        uint64_t h1 = digest_all(all_names[a], &pp, 12);
        uint64_t h2 = digest_all(all_names[a], &pp, 12);
        pp.seed = 8;
        uint64_t h3 = digest_all(all_names[a], &pp, 12);
        ck_assert_msg(h1 == h2, "%s: same seed, different partitions", all_names[a]);
        ck_assert_msg(h1 != h3, "%s: seeds 7 and 8 give the same partitions", all_names[a]);
    }
}
END_TEST

/* Mean over partitions of the entropy of their label histograms. */
static double
mean_label_entropy(const char *name, const petal_partition_params_t *pp, uint32_t P)
{
    double sum = 0.0;
    char err[256];
    for (uint32_t p = 0; p < P; p++) {
        uint64_t *idx = NULL, count = 0, counts[C] = {0};
        ck_assert_int_eq(
            petal_partition_by_name(name, pp, labels, N, C, P, p, &idx, &count, err, sizeof(err)),
            0);
        for (uint64_t i = 0; i < count; i++) {
            counts[labels[idx[i]]]++;
        }
        sum += entropy(counts, C);
        free(idx);
    }
    return sum / P;
}

START_TEST(test_dirichlet_skew_grows)
{
    make_labels();
    const double alphas[] = {100.0, 1.0, 0.1};
    for (uint64_t seed = 1; seed <= 3; seed++) {
        double prev = 1e9;
        for (int i = 0; i < 3; i++) {
            petal_partition_params_t pp;
            default_params(&pp, seed);
            pp.alpha = alphas[i];
            double h = mean_label_entropy("dirichlet", &pp, 10);
            ck_assert_msg(h < prev, "seed %llu: entropy %.3f at alpha %g is not below %.3f",
                          (unsigned long long)seed, h, alphas[i], prev);
            prev = h;
            if (i == 0) {
                ck_assert_double_gt(h, 3.2); /* near log2(10) = 3.32 */
            }
        }
    }
}
END_TEST

START_TEST(test_pathological_k_classes)
{
    make_labels();
    static uint8_t seen[N];
    char err[256];
    for (uint32_t k = 1; k <= 4; k++) {
        for (uint32_t P = 3; P <= 25; P += 11) {
            petal_partition_params_t pp;
            default_params(&pp, 100 + k);
            pp.k = k;
            uint64_t total = run_all("pathological", &pp, P, NULL, seen);
            uint32_t held[C] = {0};
            for (uint32_t p = 0; p < P; p++) {
                uint64_t *idx = NULL, count = 0, counts[C] = {0};
                ck_assert_int_eq(petal_partition_by_name("pathological", &pp, labels, N, C, P, p,
                                                         &idx, &count, err, sizeof(err)),
                                 0);
                for (uint64_t i = 0; i < count; i++) {
                    counts[labels[idx[i]]]++;
                }
                uint32_t classes = 0;
                for (int c = 0; c < C; c++) {
                    classes += counts[c] > 0;
                    held[c] += counts[c] > 0;
                }
                ck_assert_msg(classes == k, "P %u partition %u holds %u classes, k = %u", P, p,
                              classes, k);
                free(idx);
            }
            /* Every class is held by floor or ceil of P*k/C partitions. */
            uint32_t lo = P * k / C, hi = (P * k + C - 1) / C;
            for (int c = 0; c < C; c++) {
                ck_assert_uint_ge(held[c], lo);
                ck_assert_uint_le(held[c], hi);
            }
            ck_assert_uint_eq(total, P * k >= C ? N : (uint64_t)(N / C) * P * k);
        }
    }
    /* Different partitions get different class pairs (the combinations are mixed). */
    petal_partition_params_t pp;
    default_params(&pp, 5);
    pp.k = 2;
    int pairs[C][C];
    memset(pairs, 0, sizeof(pairs));
    int distinct = 0;
    for (uint32_t p = 0; p < 50; p++) {
        uint64_t *idx = NULL, count = 0, counts[C] = {0};
        ck_assert_int_eq(petal_partition_by_name("pathological", &pp, labels, N, C, 50, p, &idx,
                                                 &count, err, sizeof(err)),
                         0);
        for (uint64_t i = 0; i < count; i++) {
            counts[labels[idx[i]]]++;
        }
        int a = -1, b = -1;
        for (int c = 0; c < C; c++) {
            if (counts[c] > 0) {
                if (a < 0) {
                    a = c;
                } else {
                    b = c;
                }
            }
        }
        distinct += pairs[a][b]++ == 0;
        free(idx);
    }
    ck_assert_int_ge(distinct, 15);
}
END_TEST

START_TEST(test_shard)
{
    make_labels();
    static uint8_t seen[N];
    char err[256];
    /* McMahan's setting scaled down: 600 per class, shards of 100, 2 per partition, 30
     * partitions: each partition has at most 2 classes, every example assigned. */
    petal_partition_params_t pp;
    default_params(&pp, 3);
    pp.shards_per_partition = 2;
    pp.shard_size = 100;
    ck_assert_uint_eq(run_all("shard", &pp, 30, NULL, seen), N);
    int two = 0;
    for (uint32_t p = 0; p < 30; p++) {
        uint64_t *idx = NULL, count = 0, counts[C] = {0};
        ck_assert_int_eq(petal_partition_by_name("shard", &pp, labels, N, C, 30, p, &idx, &count,
                                                 err, sizeof(err)),
                         0);
        ck_assert_uint_eq(count, 200);
        for (uint64_t i = 0; i < count; i++) {
            counts[labels[idx[i]]]++;
        }
        uint32_t classes = 0;
        for (int c = 0; c < C; c++) {
            classes += counts[c] > 0;
            ck_assert(counts[c] % 100 == 0);
        }
        ck_assert_uint_le(classes, 2);
        two += classes == 2;
        free(idx);
    }
    ck_assert_int_gt(two, 15);
    /* A fixed shard size that leaves examples out: exactly P * s * size assigned. */
    pp.shard_size = 70;
    ck_assert_uint_eq(run_all("shard", &pp, 20, NULL, seen), 20 * 2 * 70);
}
END_TEST

START_TEST(test_size_laws)
{
    static uint8_t seen[N];
    uint64_t sizes[64], got[64];
    const char *names[] = {"linear", "square", "exponential"};
    for (int law = 0; law < 3; law++) {
        for (uint32_t P = 1; P <= 64; P += 21) {
            double tau = 5.0;
            ck_assert_int_eq(petal_partition_size_law((petal_size_law_t)law, tau, N, P, sizes), 0);
            double w[64], W = 0.0;
            for (uint32_t i = 0; i < P; i++) {
                double x = i + 1.0;
                w[i] = law == 0 ? x : law == 1 ? x * x : exp(x / tau);
                W += w[i];
            }
            uint64_t sum = 0;
            for (uint32_t i = 0; i < P; i++) {
                double exact = N * w[i] / W;
                ck_assert_msg(fabs((double)sizes[i] - exact) <= 1.0,
                              "%s P %u: size %llu of partition %u, law says %.2f", names[law], P,
                              (unsigned long long)sizes[i], i, exact);
                if (i > 0) {
                    ck_assert_uint_ge(sizes[i], sizes[i - 1]);
                }
                sum += sizes[i];
            }
            ck_assert_uint_eq(sum, N);
            /* The partitioner hands out exactly those sizes, every example once. */
            petal_partition_params_t pp;
            default_params(&pp, 9);
            pp.tau = tau;
            ck_assert_uint_eq(run_all(names[law], &pp, P, got, seen), N);
            for (uint32_t i = 0; i < P; i++) {
                ck_assert_uint_eq(got[i], sizes[i]);
            }
        }
    }
    /* Linear over 4: 1:2:3:4 of 6000. Square over 3: 1:4:9 of 6000 (rounded). */
    ck_assert_int_eq(petal_partition_size_law(PETAL_SIZE_LINEAR, 0, N, 4, sizes), 0);
    ck_assert_uint_eq(sizes[0], 600);
    ck_assert_uint_eq(sizes[3], 2400);
    ck_assert_int_eq(petal_partition_size_law(PETAL_SIZE_SQUARE, 0, N, 3, sizes), 0);
    ck_assert_uint_eq(sizes[0], 429);
    ck_assert_uint_eq(sizes[2], 3857);
    /* Exponential with tau = 1: each partition about e times the previous. */
    ck_assert_int_eq(petal_partition_size_law(PETAL_SIZE_EXPONENTIAL, 1.0, 1000000, 5, sizes), 0);
    for (int i = 1; i < 5; i++) {
        ck_assert_double_lt(fabs((double)sizes[i] / (double)sizes[i - 1] - M_E), 0.01);
    }
    ck_assert_int_eq(petal_partition_size_law(PETAL_SIZE_EXPONENTIAL, 0.0, N, 5, sizes),
                     PETAL_EINVAL);
    ck_assert_int_eq(petal_partition_size_law(PETAL_SIZE_LINEAR, 0, N, 0, sizes), PETAL_EINVAL);
}
END_TEST

START_TEST(test_by_name_errors)
{
    make_labels();
    char err[256];
    uint64_t *idx = NULL, count = 0;
    petal_partition_params_t pp;
    default_params(&pp, 1);

#define EXPECT_ERR(name, np, pid, lab, text)                                                       \
    do {                                                                                           \
        err[0] = '\0';                                                                             \
        ck_assert_int_eq(petal_partition_by_name(name, &pp, lab, N, C, np, pid, &idx, &count, err, \
                                                 sizeof(err)),                                     \
                         PETAL_EINVAL);                                                            \
        ck_assert_msg(strstr(err, text) != NULL, "message \"%s\" lacks \"%s\"", err, text);        \
        ck_assert_ptr_null(idx);                                                                   \
    } while (0)

    EXPECT_ERR("dirichlett", 4, 0, labels, "unknown partitioner \"dirichlett\"");
    EXPECT_ERR("dirichlett", 4, 0, labels, "known: iid, dirichlet, pathological");
    EXPECT_ERR("iid", 0, 0, labels, "num_partitions is 0");
    EXPECT_ERR("iid", 4, 4, labels, "partition_id 4 is out of range (0..3)");
    EXPECT_ERR("dirichlet", 4, 0, NULL, "needs the labels");
    pp.alpha = 0.0;
    EXPECT_ERR("dirichlet", 4, 0, labels, "alpha must be");
    pp.alpha = -1.0;
    EXPECT_ERR("dirichlet", 4, 0, labels, "alpha must be");
    pp.alpha = NAN;
    EXPECT_ERR("dirichlet", 4, 0, labels, "alpha must be");
    pp.alpha = 0.5;
    pp.k = 0;
    EXPECT_ERR("pathological", 4, 0, labels, "k (classes per partition) must be 1..10 (got 0)");
    pp.k = 11;
    EXPECT_ERR("pathological", 4, 0, labels, "must be 1..10 (got 11)");
    pp.k = 2;
    pp.shards_per_partition = 0;
    EXPECT_ERR("shard", 4, 0, labels, "shards_per_partition must be > 0");
    pp.shards_per_partition = 2;
    pp.shard_size = 1000;
    EXPECT_ERR("shard", 4, 0, labels, "8 shards of 1000 examples need more than the 6000");
    pp.shard_size = 0;
    pp.tau = 0.0;
    EXPECT_ERR("exponential", 4, 0, labels, "tau must be");
    pp.tau = 1.0;
    labels[17] = C;
    EXPECT_ERR("pathological", 4, 0, labels, "label 10 of example 17 is not below num_classes 10");
    labels[17] = 0;
#undef EXPECT_ERR

    /* Dirichlet's impossible minimum size is EAGAIN with a message. */
    pp.min_partition_size = N;
    ck_assert_int_eq(petal_partition_by_name("dirichlet", &pp, labels, N, C, 4, 0, &idx, &count,
                                             err, sizeof(err)),
                     PETAL_EAGAIN);
    ck_assert_ptr_nonnull(strstr(err, "min_partition_size"));
    pp.min_partition_size = 0;

    /* Names are case-insensitive; label-free partitioners accept NULL labels. */
    ck_assert_int_eq(
        petal_partition_by_name("IID", &pp, NULL, N, C, 4, 1, &idx, &count, err, sizeof(err)), 0);
    ck_assert_uint_eq(count, N / 4);
    free(idx);
    idx = NULL;
    ck_assert_int_eq(
        petal_partition_by_name("Square", &pp, NULL, N, 0, 4, 3, &idx, &count, err, sizeof(err)),
        0);
    free(idx);
    /* The dispatcher gives the same result as the direct call. */
    uint64_t *a = NULL, *b = NULL, na = 0, nb = 0;
    pp.alpha = 0.3;
    ck_assert_int_eq(
        petal_partition_by_name("dirichlet", &pp, labels, N, C, 5, 2, &a, &na, err, sizeof(err)),
        0);
    ck_assert_int_eq(petal_partition_dirichlet(labels, N, C, 5, 2, 0.3, 0, 1, &b, &nb), 0);
    ck_assert_uint_eq(na, nb);
    ck_assert_int_eq(memcmp(a, b, sizeof(*a) * na), 0);
    free(a);
    free(b);
}
END_TEST

/* ---- CSV ------------------------------------------------------------------------------------- */

START_TEST(test_csv_round_trip)
{
    enum { ROWS = 500 };
    char path[512], gzpath[512], err[512] = "";
    tmp_path(path, sizeof(path), "round.csv");
    tmp_path(gzpath, sizeof(gzpath), "round.csv.gz");
    float want[ROWS][3];
    uint8_t wanty[ROWS];
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    gzFile g = gzopen(gzpath, "wb");
    ck_assert_ptr_nonnull(g);
    fprintf(f, "f0,f1,label,f2\n");
    gzprintf(g, "f0,f1,label,f2\n");
    petal_rng_t r;
    petal_rng_seed(&r, 5);
    for (int i = 0; i < ROWS; i++) {
        for (int j = 0; j < 3; j++) {
            want[i][j] = (float)(petal_rng_normal(&r) * pow(10.0, (double)(i % 7) - 3.0));
        }
        wanty[i] = (uint8_t)(i % 13);
        fprintf(f, "%.9g,%.9g,%u,%.9g\n", want[i][0], want[i][1], wanty[i], want[i][2]);
        gzprintf(g, "%.9g,%.9g,%u,%.9g\n", want[i][0], want[i][1], wanty[i], want[i][2]);
    }
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(gzclose(g), Z_OK);

    petal_csv_options_t o = {.label_name = "label"};
    const petal_dataset_t *d = NULL, *d2 = NULL, *dg = NULL;
    ck_assert_msg(petal_dataset_load_csv(path, &o, &d, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(d->n, ROWS);
    ck_assert_uint_eq(d->dim, 3);
    ck_assert_uint_eq(d->num_classes, 13);
    for (int i = 0; i < ROWS; i++) {
        for (int j = 0; j < 3; j++) {
            ck_assert(d->x[i * 3 + j] == want[i][j]); /* %.9g round-trips a float exactly */
        }
        ck_assert_uint_eq(d->y[i], wanty[i]);
    }
    /* Same file and options: the cached copy. By index (2, or -2 from the end): same data. */
    ck_assert_int_eq(petal_dataset_load_csv(path, &o, &d2, err, sizeof(err)), 0);
    ck_assert_ptr_eq(d, d2);
    petal_dataset_release(d2);
    petal_csv_options_t oi = {.label_column = -2, .header = PETAL_CSV_HEADER_YES};
    ck_assert_msg(petal_dataset_load_csv(path, &oi, &d2, err, sizeof(err)) == 0, "%s", err);
    ck_assert_ptr_ne(d, d2);
    ck_assert_int_eq(memcmp(d->x, d2->x, sizeof(float) * ROWS * 3), 0);
    ck_assert_int_eq(memcmp(d->y, d2->y, ROWS), 0);
    /* The gzip copy reads the same. */
    ck_assert_msg(petal_dataset_load_csv(gzpath, &o, &dg, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(dg->n, ROWS);
    ck_assert_int_eq(memcmp(d->x, dg->x, sizeof(float) * ROWS * 3), 0);
    ck_assert_int_eq(memcmp(d->y, dg->y, ROWS), 0);
    petal_dataset_release(d);
    petal_dataset_release(d2);
    petal_dataset_release(dg);
}
END_TEST

START_TEST(test_csv_formats)
{
    char path[512], err[512] = "";
    const petal_dataset_t *d = NULL;
    /* No header (detected), label in column 0 by default, CRLF, blank lines, spaces, quotes, no
     * newline at the end. */
    write_text(tmp_path(path, sizeof(path), "plain.csv"),
               "1, 0.5 ,\"-2\"\r\n\r\n  \n 0 ,1e3,  \"3.25\" \r\n2,-0,7");
    ck_assert_msg(petal_dataset_load_csv(path, NULL, &d, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(d->n, 3);
    ck_assert_uint_eq(d->dim, 2);
    ck_assert_uint_eq(d->num_classes, 3);
    const float wx[] = {0.5f, -2.0f, 1000.0f, 3.25f, -0.0f, 7.0f};
    const uint8_t wy[] = {1, 0, 2};
    for (int i = 0; i < 6; i++) {
        ck_assert(d->x[i] == wx[i]);
    }
    ck_assert_int_eq(memcmp(d->y, wy, 3), 0);
    petal_dataset_release(d);

    /* Semicolons, a quoted header name holding the delimiter, a label written "4.0". */
    write_text(tmp_path(path, sizeof(path), "semi.csv"),
               "\"a;b\";\"the \"\"label\"\"\"\n1.5;4.0\n2.5;0\n");
    petal_csv_options_t o = {.label_name = "the \"label\"", .delimiter = ';'};
    ck_assert_msg(petal_dataset_load_csv(path, &o, &d, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(d->n, 2);
    ck_assert_uint_eq(d->dim, 1);
    ck_assert(d->x[0] == 1.5f && d->x[1] == 2.5f);
    ck_assert_uint_eq(d->y[0], 4);
    ck_assert_uint_eq(d->num_classes, 5);
    petal_dataset_release(d);

    /* A header of numbers, forced with HEADER_YES; and forced HEADER_NO reads it as data. */
    write_text(tmp_path(path, sizeof(path), "numhdr.csv"), "0,1,2\n1,2,3\n4,5,6\n");
    petal_csv_options_t oy = {.label_column = -1, .header = PETAL_CSV_HEADER_YES};
    ck_assert_int_eq(petal_dataset_load_csv(path, &oy, &d, err, sizeof(err)), 0);
    ck_assert_uint_eq(d->n, 2);
    petal_dataset_release(d);
    petal_csv_options_t on = {.label_column = -1, .header = PETAL_CSV_HEADER_NO};
    ck_assert_int_eq(petal_dataset_load_csv(path, &on, &d, err, sizeof(err)), 0);
    ck_assert_uint_eq(d->n, 3);
    ck_assert_uint_eq(d->y[0], 2);
    petal_dataset_release(d);
}
END_TEST

/* Loads `text` with `opts` and expects `rc` and a message containing each of `texts`. */
static void
expect_csv_error(const char *name, const char *text, const petal_csv_options_t *opts, int rc,
                 const char *t1, const char *t2)
{
    char path[512], err[512] = "";
    tmp_path(path, sizeof(path), name);
    write_text(path, text);
    const petal_dataset_t *d = NULL;
    ck_assert_int_eq(petal_dataset_load_csv(path, opts, &d, err, sizeof(err)), rc);
    ck_assert_ptr_null(d);
    ck_assert_msg(strstr(err, t1) != NULL, "\"%s\" lacks \"%s\"", err, t1);
    if (t2 != NULL) {
        ck_assert_msg(strstr(err, t2) != NULL, "\"%s\" lacks \"%s\"", err, t2);
    }
}

START_TEST(test_csv_bad_inputs)
{
    petal_csv_options_t by_name = {.label_name = "y"};
    petal_csv_options_t last = {.label_column = -1};
    expect_csv_error("cell.csv", "x1,x2,y\n1,2,0\n3,abc,1\n", &by_name, PETAL_EPROTO,
                     "cell.csv:3: column 2 (\"x2\"): \"abc\" is not a finite number", NULL);
    expect_csv_error("empty.csv", "x1,x2,y\n1,,0\n", &by_name, PETAL_EPROTO,
                     "empty.csv:2: column 2 (\"x2\"): \"\" is not a number (empty cell)", NULL);
    expect_csv_error("nan.csv", "1,2,0\n\n1,nan,0\n", &last, PETAL_EPROTO,
                     "nan.csv:3: column 2: \"nan\" is not a finite number", NULL);
    expect_csv_error("lab1.csv", "x1,x2,y\n1,2,256\n", &by_name, PETAL_EPROTO,
                     "lab1.csv:2: column 3 (\"y\"): label \"256\" is not an integer in 0..255",
                     NULL);
    expect_csv_error("lab2.csv", "x1,x2,y\n1,2,1\n1,2,-1\n", &by_name, PETAL_EPROTO,
                     "lab2.csv:3:", "label \"-1\"");
    expect_csv_error("lab3.csv", "x1,x2,y\n1,2,2.5\n", &by_name, PETAL_EPROTO,
                     "lab3.csv:2:", "label \"2.5\"");
    expect_csv_error("ragged.csv", "x1,x2,y\n1,2,0\n1,2\n", &by_name, PETAL_EPROTO,
                     "ragged.csv:3: expected 3 cells, found 2", NULL);
    expect_csv_error("quote.csv", "1,\"2,0\n", &last, PETAL_EPROTO,
                     "quote.csv:1: column 2: unterminated quoted cell", NULL);
    expect_csv_error("after.csv", "1,\"2\"x,0\n", &last, PETAL_EPROTO,
                     "after.csv:1: column 2: text after a closing quote", NULL);
    expect_csv_error("noname.csv", "a,b,c\n1,2,0\n", &by_name, PETAL_EINVAL,
                     "no column named \"y\" in the header", "(columns: \"a\", \"b\", \"c\")");
    expect_csv_error("nohdr.csv", "1,2,0\n", &by_name, PETAL_EINVAL,
                     "given by name (\"y\") but the file has no header line", NULL);
    petal_csv_options_t far = {.label_column = 5};
    expect_csv_error("range.csv", "1,2,0\n", &far, PETAL_EINVAL,
                     "label column 5 is out of range: the file has 3 columns", NULL);
    expect_csv_error("none.csv", "", NULL, PETAL_EPROTO, "none.csv: holds no examples", NULL);
    expect_csv_error("hdronly.csv", "a,b\n", NULL, PETAL_EPROTO, "hdronly.csv: holds no examples",
                     NULL);
    expect_csv_error("onecol.csv", "1\n2\n", NULL, PETAL_EPROTO, "onecol.csv:1: found 1 column",
                     NULL);
    petal_csv_options_t bad = {.label_name = "y", .header = PETAL_CSV_HEADER_NO};
    expect_csv_error("badopt.csv", "y,x\n1,2\n", &bad, PETAL_EINVAL, "no header line", NULL);
    petal_csv_options_t badmode = {.header = 7};
    expect_csv_error("badmode.csv", "1,2\n", &badmode, PETAL_EINVAL, "bad CSV header mode 7", NULL);

    char path[512], err[512] = "";
    const petal_dataset_t *d = NULL;
    ck_assert_int_eq(petal_dataset_load_csv(tmp_path(path, sizeof(path), "missing.csv"), NULL, &d,
                                            err, sizeof(err)),
                     PETAL_EIO);
    ck_assert_ptr_nonnull(strstr(err, "missing.csv: cannot open"));

    /* A gzip stream cut off midway is an error, not a shorter dataset. */
    tmp_path(path, sizeof(path), "cut.csv.gz");
    gzFile g = gzopen(path, "wb");
    ck_assert_ptr_nonnull(g);
    for (int i = 0; i < 20000; i++) {
        gzprintf(g, "%d,%d.5,%d\n", i, i * 3, i % 10);
    }
    ck_assert_int_eq(gzclose(g), Z_OK);
    FILE *f = fopen(path, "rb+");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(truncate(path, len / 2), 0);
    ck_assert_int_eq(petal_dataset_load_csv(path, &last, &d, err, sizeof(err)), PETAL_EPROTO);
    ck_assert_ptr_nonnull(strstr(err, "truncated gzip stream"));
}
END_TEST

/* ---- Synthetic ------------------------------------------------------------------------------- */

/* Mean over devices of the entropy (bits) of the device's label histogram: low when devices
 * are dominated by few labels, i.e. their label distributions differ. */
static double
device_label_entropy(const petal_dataset_t *d, const uint64_t *off, uint32_t devices)
{
    double sum = 0.0;
    for (uint32_t k = 0; k < devices; k++) {
        uint64_t per[256] = {0};
        for (uint64_t i = off[k]; i < off[k + 1]; i++) {
            per[d->y[i]]++;
        }
        sum += entropy(per, d->num_classes);
    }
    return sum / devices;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

START_TEST(test_synthetic_shape_and_determinism)
{
    petal_synthetic_params_t p;
    petal_synthetic_params_init(&p);
    ck_assert_uint_eq(p.num_devices, 30);
    ck_assert_uint_eq(p.dim, 60);
    ck_assert_uint_eq(p.num_classes, 10);
    p.alpha = 1.0;
    p.beta = 1.0;
    p.seed = 11;
    char err[256] = "";
    const petal_dataset_t *d = NULL, *d2 = NULL, *d3 = NULL;
    const uint64_t *off = NULL, *off2 = NULL;
    ck_assert_msg(petal_dataset_synthetic(&p, &d, &off, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(d->dim, 60);
    ck_assert_uint_eq(d->num_classes, 10);
    ck_assert_uint_eq(off[0], 0);
    ck_assert_uint_eq(off[30], d->n);
    for (int k = 0; k < 30; k++) {
        ck_assert_uint_ge(off[k + 1] - off[k], 50);
    }
    for (uint64_t i = 0; i < d->n; i++) {
        ck_assert_uint_lt(d->y[i], 10);
    }
    for (uint64_t i = 0; i < d->n * d->dim; i++) {
        ck_assert(isfinite(d->x[i]));
    }
    /* Same params: the cached copy. */
    ck_assert_int_eq(petal_dataset_synthetic(&p, &d2, &off2, err, sizeof(err)), 0);
    ck_assert_ptr_eq(d, d2);
    ck_assert_ptr_eq(off, off2);
    petal_dataset_release(d2);
    /* Regenerated after release: identical bytes. */
    uint64_t n = d->n;
    float *x = malloc(sizeof(float) * n * 60);
    uint8_t *y = malloc(n);
    memcpy(x, d->x, sizeof(float) * n * 60);
    memcpy(y, d->y, n);
    petal_dataset_release(d);
    ck_assert_int_eq(petal_dataset_synthetic(&p, &d, NULL, err, sizeof(err)), 0);
    ck_assert_uint_eq(d->n, n);
    ck_assert_int_eq(memcmp(d->x, x, sizeof(float) * n * 60), 0);
    ck_assert_int_eq(memcmp(d->y, y, n), 0);
    /* Another seed: other data. */
    p.seed = 12;
    ck_assert_int_eq(petal_dataset_synthetic(&p, &d3, NULL, err, sizeof(err)), 0);
    ck_assert_ptr_ne(d, d3);
    ck_assert(d3->n != n || memcmp(d3->x, x, sizeof(float) * n * 60) != 0);
    petal_dataset_release(d3);
    petal_dataset_release(d);
    free(x);
    free(y);
}
END_TEST

START_TEST(test_synthetic_heterogeneity)
{
    petal_synthetic_params_t p;
    petal_synthetic_params_init(&p);
    p.num_devices = 100;
    char err[256] = "";
    double h[3];
    const double ab[3] = {0.0, 0.5, 1.0};
    for (uint64_t seed = 1; seed <= 3; seed++) {
        for (int i = 0; i < 3; i++) {
            const petal_dataset_t *d = NULL;
            const uint64_t *off = NULL;
            p.alpha = p.beta = ab[i];
            p.seed = seed;
            ck_assert_msg(petal_dataset_synthetic(&p, &d, &off, err, sizeof(err)) == 0, "%s", err);
            h[i] = device_label_entropy(d, off, p.num_devices);
            petal_dataset_release(d);
        }
        ck_assert_msg(h[0] > h[1] && h[1] > h[2],
                      "seed %llu: mean device label entropy %.3f %.3f %.3f for Synthetic(0,0), "
                      "(0.5,0.5), (1,1) is not decreasing",
                      (unsigned long long)seed, h[0], h[1], h[2]);
    }
    /* Synthetic-IID: devices look like the whole. */
    const petal_dataset_t *d = NULL;
    const uint64_t *off = NULL;
    p.iid = 1;
    ck_assert_int_eq(petal_dataset_synthetic(&p, &d, &off, err, sizeof(err)), 0);
    double iid = device_label_entropy(d, off, p.num_devices);
    ck_assert_double_gt(iid, 2.0 * h[0]);
    /* Device sizes: a power law (lognormal), max / median large. */
    uint64_t sizes[100];
    for (int k = 0; k < 100; k++) {
        sizes[k] = off[k + 1] - off[k];
    }
    qsort(sizes, 100, sizeof(sizes[0]), cmp_u64);
    double ratio = (double)sizes[99] / (double)sizes[50];
    ck_assert_msg(ratio > 10.0, "device sizes: min %llu median %llu max %llu",
                  (unsigned long long)sizes[0], (unsigned long long)sizes[50],
                  (unsigned long long)sizes[99]);
    ck_assert_uint_ge(sizes[0], 50);
    petal_dataset_release(d);
}
END_TEST

START_TEST(test_synthetic_bad_params)
{
    petal_synthetic_params_t p;
    char err[256] = "";
    const petal_dataset_t *d = NULL;
    petal_synthetic_params_init(&p);
    p.alpha = -1;
    ck_assert_int_eq(petal_dataset_synthetic(&p, &d, NULL, err, sizeof(err)), PETAL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "alpha must be >= 0"));
    petal_synthetic_params_init(&p);
    p.num_classes = 1;
    ck_assert_int_eq(petal_dataset_synthetic(&p, &d, NULL, err, sizeof(err)), PETAL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "num_classes must be 2..256"));
    petal_synthetic_params_init(&p);
    p.num_devices = 0;
    ck_assert_int_eq(petal_dataset_synthetic(&p, &d, NULL, err, sizeof(err)), PETAL_EINVAL);
    petal_synthetic_params_init(&p);
    p.size_mu = 30;
    ck_assert_int_eq(petal_dataset_synthetic(&p, &d, NULL, err, sizeof(err)), PETAL_EMSGSIZE);
    ck_assert_ptr_nonnull(strstr(err, "more than 2^31"));
    ck_assert_ptr_null(d);
    /* Small and custom: 5 devices of exactly 20 examples of 3 features, 4 classes. */
    petal_synthetic_params_init(&p);
    p.num_devices = 5;
    p.dim = 3;
    p.num_classes = 4;
    p.size_sigma = 0.0;
    p.size_mu = log(10.5);
    p.min_size = 10;
    const uint64_t *off = NULL;
    ck_assert_msg(petal_dataset_synthetic(&p, &d, &off, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(d->n, 100);
    ck_assert_uint_eq(off[3], 60);
    ck_assert_uint_eq(d->dim, 3);
    petal_dataset_release(d);
}
END_TEST

static Suite *
partition_suite(void)
{
    Suite *s = suite_create("partition");
    TCase *tc = tcase_create("partition");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_every_sample_once);
    tcase_add_test(tc, test_seed_determinism);
    tcase_add_test(tc, test_dirichlet_skew_grows);
    tcase_add_test(tc, test_pathological_k_classes);
    tcase_add_test(tc, test_shard);
    tcase_add_test(tc, test_size_laws);
    tcase_add_test(tc, test_by_name_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("csv");
    tcase_add_checked_fixture(tc, setup_tmp, teardown_tmp);
    tcase_add_test(tc, test_csv_round_trip);
    tcase_add_test(tc, test_csv_formats);
    tcase_add_test(tc, test_csv_bad_inputs);
    suite_add_tcase(s, tc);

    tc = tcase_create("synthetic");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_synthetic_shape_and_determinism);
    tcase_add_test(tc, test_synthetic_heterogeneity);
    tcase_add_test(tc, test_synthetic_bad_params);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(partition_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
