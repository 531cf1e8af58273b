/* aggregate.c - FedAvg fold throughput against a plain C loop over the same data, same run. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <petal/petal.h>

#include "actors/serverapp/aggregate.h"
#include "runtime/actor.h"

/*
 * Usage: bench_aggregate [ELEMENTS [REPLIES [REPEATS]]]   (defaults 10000000 8 3)
 *
 * Each pass folds REPLIES float32 replies of ELEMENTS elements into double running sums:
 *   baseline   for each reply: for i: acc[i] += w * x[i]   (one thread, the same arithmetic)
 *   fedavg     pt_fedavg_acc_fold(): checks the reply, then the same loop, serial or chunked
 *              across the worker pool (the calling thread helps, so W workers = W+1 threads)
 * Throughput is reply bytes read per second (GB/s, 1e9). Sums are touched once before timing
 * in both cases, so page faults are not measured. Best of REPEATS passes.
 */

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double
weight_of(uint64_t r)
{
    return (double)(r * 37 % 101 + 1);
}

static double
bench_baseline(petal_arrayrecord_t **replies, uint64_t nrep, uint64_t numel, int repeats,
               double *checksum)
{
    double *acc = calloc(numel, sizeof(double));
    double best = 1e30;

    if (acc == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int k = 0; k < repeats; k++) {
        double t0;
        memset(acc, 0, numel * sizeof(double));
        t0 = now_s();
        for (uint64_t r = 0; r < nrep; r++) {
            const float *x = petal_array_data(petal_arrayrecord_at(replies[r], 0));
            const double w = weight_of(r);
            for (uint64_t i = 0; i < numel; i++) {
                acc[i] += w * x[i];
            }
        }
        t0 = now_s() - t0;
        if (t0 < best) {
            best = t0;
        }
    }
    *checksum = 0;
    for (uint64_t i = 0; i < numel; i += 4099) {
        *checksum += acc[i];
    }
    free(acc);
    return best;
}

static double
bench_fedavg(const petal_arrayrecord_t *global, petal_arrayrecord_t **replies, uint64_t nrep,
             pt_runtime_t *rt, int repeats, double *checksum)
{
    double best = 1e30;
    char why[256];

    for (int k = 0; k < repeats; k++) {
        pt_fedavg_acc_t *acc = NULL;
        petal_recorddict_t *out = petal_recorddict_alloc();
        petal_arrayrecord_t *oa = petal_recorddict_add_arrays(out, "arrays");
        double t0;

        if (pt_fedavg_acc_alloc(global, (uint64_t)1 << 20, why, sizeof(why), &acc) != 0) {
            fprintf(stderr, "pt_fedavg_acc_alloc: %s\n", why);
            exit(1);
        }
        /* One untimed fold first, so the fresh sums' page faults are not measured (the
         * baseline clears its sums before timing for the same reason). */
        if (pt_fedavg_acc_fold(acc, replies[0], 1.0, rt, why, sizeof(why)) != 0) {
            fprintf(stderr, "fold: %s\n", why);
            exit(1);
        }
        t0 = now_s();
        for (uint64_t r = 0; r < nrep; r++) {
            if (pt_fedavg_acc_fold(acc, replies[r], weight_of(r), rt, why, sizeof(why)) != 0) {
                fprintf(stderr, "fold: %s\n", why);
                exit(1);
            }
        }
        t0 = now_s() - t0;
        if (t0 < best) {
            best = t0;
        }
        if (k == repeats - 1) {
            const float *y;
            uint64_t n;
            pt_fedavg_acc_finish(acc, oa, rt);
            y = petal_array_data(petal_arrayrecord_at(oa, 0));
            n = petal_array_numel(petal_arrayrecord_at(oa, 0));
            *checksum = 0;
            for (uint64_t i = 0; i < n; i += 4099) {
                *checksum += y[i];
            }
        }
        pt_fedavg_acc_free(acc);
        petal_recorddict_free(out);
    }
    return best;
}

int
main(int argc, char **argv)
{
    uint64_t numel = argc > 1 ? strtoull(argv[1], NULL, 10) : 10000000ull;
    uint64_t nrep = argc > 2 ? strtoull(argv[2], NULL, 10) : 8;
    int repeats = argc > 3 ? atoi(argv[3]) : 3;
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *global = petal_recorddict_add_arrays(d, "global");
    petal_arrayrecord_t **replies = calloc(nrep > 0 ? nrep : 1, sizeof(*replies));
    uint64_t shape[1] = {numel};
    double bytes = (double)numel * 4.0 * (double)nrep;
    double base_sum = 0;
    double sum = 0;
    double t_base;
    double t_serial;
    double t_pool[2];
    uint32_t threads[2];

    if (numel == 0 || nrep == 0 || repeats <= 0 || replies == NULL || global == NULL) {
        fprintf(stderr, "usage: %s [ELEMENTS [REPLIES [REPEATS]]]\n", argv[0]);
        return 2;
    }
    if (petal_arrayrecord_add(global, "w", PETAL_DTYPE_FLOAT32, 1, shape) == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (uint64_t r = 0; r < nrep; r++) {
        char name[32];
        petal_array_t *a;
        float *x;
        snprintf(name, sizeof(name), "r%" PRIu64, r);
        replies[r] = petal_recorddict_add_arrays(d, name);
        a = replies[r] != NULL
                ? petal_arrayrecord_add(replies[r], "w", PETAL_DTYPE_FLOAT32, 1, shape)
                : NULL;
        if (a == NULL) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        x = petal_array_data_mut(a);
        for (uint64_t i = 0; i < numel; i++) {
            x[i] = (float)((i * 2654435761u + r * 40503u) % 65536) / 65536.0f - 0.5f;
        }
    }

    printf("aggregate: FedAvg fold of %" PRIu64 " float32 replies x %" PRIu64
           " elements (%.0f MB read per pass), best of %d\n",
           nrep, numel, bytes / 1e6, repeats);
    t_base = bench_baseline(replies, nrep, numel, repeats, &base_sum);
    t_serial = bench_fedavg(global, replies, nrep, NULL, repeats, &sum);
    printf("  baseline  plain loop acc[i] += w * x[i], 1 thread : %6.2f GB/s\n",
           bytes / t_base / 1e9);
    printf("  fedavg    serial, 1 thread                        : %6.2f GB/s  ratio %.2f\n",
           bytes / t_serial / 1e9, t_base / t_serial);
    for (int k = 0; k < 2; k++) {
        pt_runtime_opts_t ro = {.workers = (uint32_t)k + 1};
        pt_runtime_t *rt = NULL;
        if (pt_runtime_alloc(&ro, &rt) != 0) {
            fprintf(stderr, "pt_runtime_alloc failed\n");
            return 1;
        }
        threads[k] = pt_runtime_workers(rt) + 1;
        t_pool[k] = bench_fedavg(global, replies, nrep, rt, repeats, &sum);
        pt_runtime_free(rt);
        printf("  fedavg    pool, %u worker%s + caller = %u threads   : %6.2f GB/s  ratio %.2f"
               " (%.2f per thread)  scaling x%.2f vs serial\n",
               k + 1, k ? "s" : " ", threads[k], bytes / t_pool[k] / 1e9, t_base / t_pool[k],
               t_base / t_pool[k] / threads[k], t_serial / t_pool[k]);
    }
    printf("  (checksums, to keep the loops honest: %.6g %.6g)\n", base_sum, sum);
    petal_recorddict_free(d);
    free(replies);
    return 0;
}
