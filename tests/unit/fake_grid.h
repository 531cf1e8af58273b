/* fake_grid.h - a fake Grid for strategy and default-server tests, and the record helpers. */
#ifndef PETAL_TEST_FAKE_GRID_H
#define PETAL_TEST_FAKE_GRID_H

#include <stdint.h>

#include <petal/petal.h>

#include "runtime/actor.h"
#include "runtime/context.h"
#include "runtime/grid.h"

/*
 * The strategy loop (and pt_default_server_main) driven without a SuperLink: the fake grid answers
 * every message at once through the test's fake ClientApp (`client`), on the caller's thread,
 * and delivers the replies in an order shuffled by `delivery_seed`. It counts what the loop sent
 * and recorded so the tests can assert on it. Nodes are 11, 18, 25, ... (11 + 7 i).
 */

#define FG_MAX_NODES 16

typedef struct fake_grid fake_grid_t;

/* The fake ClientApp: the reply to msg (which stays the grid's to free); never NULL. */
typedef petal_message_t *(*fg_client_fn)(fake_grid_t *f, petal_message_t *msg);
/* Extra checks on every record_metrics call (after the grid counted it). */
typedef void (*fg_metrics_fn)(fake_grid_t *f, uint32_t round, const char *phase,
                              const petal_metricrecord_t *m);

struct fake_grid {
    struct petal_grid base; /* first: the loop sees a petal_grid_t */
    fg_client_fn client;
    fg_metrics_fn check_metrics; /* NULL: none */
    void *ctx;                   /* the test's own state, for its client (NULL unless set) */
    uint64_t nodes[FG_MAX_NODES];
    uint64_t n;
    uint64_t delivery_seed;    /* shuffles the reply order */
    uint64_t failing;          /* node that answers NODE_UNAVAILABLE (0: none) */
    uint64_t broken_from;      /* nodes >= this answer NODE_UNAVAILABLE (0: none) */
    pt_runtime_t *rt;          /* what the grid's runtime op returns (NULL: aggregate serially) */
    petal_recorddict_t *final; /* "arrays": references to set_final_arrays' (caller frees) */
    int queries;               /* messages whose type starts with "query" */
    int train_msgs;            /* "train" messages */
    int shared_buffers;        /* train messages whose "w" shares the first one's buffer */
    int train_records;         /* record_metrics calls per phase */
    int evaluate_records;
    int server_records;
    int64_t last_replies; /* "num-replies" and "num-failures" of the latest train record */
    int64_t last_failures;
};

/* Nodes 11 + 7 i for i < n (n <= FG_MAX_NODES), every other field zero. */
void fake_grid_init(fake_grid_t *f, uint64_t n, uint64_t delivery_seed, fg_client_fn client);

/* A server context whose run config holds the n keys and values (caller frees). */
petal_context_t *fg_server_context(const char *const *keys, const petal_value_t *vals, int n);

/* ---- Record helpers (fail the test on error) --------------------------------------------------
 */

void set_i64(petal_metricrecord_t *m, const char *name, int64_t v);
void set_f64(petal_metricrecord_t *m, const char *name, double v);
/* Metric `name` as a double (the test fails when it is missing). */
double metric_f64(const petal_metricrecord_t *m, const char *name);

#endif
