/* aggregate.h - internal pieces of the strategies: node sampling, FedAvg folds, reply ordering. */
#ifndef PT_AGGREGATE_H
#define PT_AGGREGATE_H

#include <stddef.h>
#include <stdint.h>

#include <petal/strategy.h>

struct pt_runtime;

/* ---- Sampling ------------------------------------------------------------------------------- */

/* splitmix64 (Steele, Lea, Flood 2014): advances *state by 0x9e3779b97f4a7c15 and returns the
 * mixed value. Small, fast, and every seed (including 0) gives a good stream. */
uint64_t pt_splitmix64(uint64_t *state);

#define PT_PHASE_TRAIN 0u
#define PT_PHASE_EVALUATE 1u

/* How many of `available` nodes a phase samples: max(min_nodes, ceil(fraction * available)),
 * capped at `available` (fraction * available is rounded down first when within 1e-9 of an
 * integer, so 0.3 * 10 gives 3, not 4). */
uint64_t pt_sample_count(uint64_t available, double fraction, uint32_t min_nodes);

/*
 * Picks k of the n node ids, deterministically: ids are sorted ascending (a copy; `ids` is not
 * changed), then a partial Fisher-Yates shuffle takes k of them, drawing from splitmix64
 * seeded with seed + 0x9e3779b97f4a7c15 * (2 * round + phase + 1); each draw below m uses
 * rejection so that it is unbiased. out[0..k) receives the picks in the order drawn (the send
 * order). 0, PETAL_EINVAL (k > n), or PETAL_ENOMEM.
 */
int pt_sample_nodes(const uint64_t *ids, uint64_t n, uint64_t k, uint64_t seed, uint32_t round,
                    uint32_t phase, uint64_t *out);

/* ---- Model layout ------------------------------------------------------------------------------
 */

/*
 * The float32 / float64 arrays of a model, in record order, seen as one concatenated vector of
 * `numel` elements: array j holds elements [start, start + numel) of it. Element-wise
 * strategies work on ranges of that vector, converting to double on the way in and back to
 * each array's dtype on the way out.
 */
typedef struct pt_layout_array {
    char *name;
    int32_t dtype; /* PETAL_DTYPE_FLOAT32 or PETAL_DTYPE_FLOAT64 */
    uint32_t ndim;
    uint64_t shape[PETAL_MAX_NDIM];
    uint64_t numel;
    uint64_t start; /* first element in the concatenation */
} pt_layout_array_t;

typedef struct pt_layout {
    pt_layout_array_t *arrays;
    uint64_t narrays;
    uint64_t numel;
} pt_layout_t;

/* The layout of `model`: every array must be float32 or float64, otherwise PETAL_ETYPE with
 * "array 'steps' has dtype int64; <who> aggregates float32 and float64 arrays only" in why. */
int pt_layout_alloc(const petal_arrayrecord_t *model, const char *who, char *why, size_t why_len,
                    pt_layout_t **out);
void pt_layout_free(pt_layout_t *l);
/* Checks `arrays` against the layout (names, dtypes, shapes, sizes, alignment) and writes each
 * model array's data pointer in `arrays` to data[0..narrays). 0, or PETAL_EINVAL with a
 * sentence in why ("array 'w': shape [5], the model's is [4]"). */
int pt_layout_check(const pt_layout_t *l, const petal_arrayrecord_t *arrays, const void **data,
                    char *why, size_t why_len);
/* Elements [lo, hi) of the concatenation, from arrays whose data pointers are data[], as
 * doubles into out[0..hi-lo). */
void pt_layout_load(const pt_layout_t *l, const void *const *data, uint64_t lo, uint64_t hi,
                    double *out);
/* The reverse: in[0..hi-lo) written into elements [lo, hi) of the arrays data[] (converted to
 * each array's dtype). */
void pt_layout_store(const pt_layout_t *l, void *const *data, uint64_t lo, uint64_t hi,
                     const double *in);
/* Adds one new zeroed array per model array to `out` (same names, dtypes, shapes), writing their
 * data pointers to data[0..narrays). 0 or PETAL_ENOMEM / PETAL_EINVAL. */
int pt_layout_add_arrays(const pt_layout_t *l, petal_arrayrecord_t *out, void **data);
/* Squared L2 distance between two models with this layout, in double: partial sums over fixed
 * chunks added in chunk order, so the result is the same serially and on the pool (which is
 * used when rt is given and numel >= parallel_min). */
double pt_layout_sqdist(const pt_layout_t *l, const void *const *a, const void *const *b,
                        struct pt_runtime *rt, uint64_t parallel_min);

/* Runs fn(lo, hi, arg) over [0, n) in chunks of `chunk` elements (the last one shorter): on the
 * runtime's worker pool (the caller helps) when rt is given, has workers, n >= parallel_min and
 * there is more than one chunk, otherwise serially on the calling thread. Each chunk is handed
 * to exactly one call. */
void pt_parallel_ranges(struct pt_runtime *rt, uint64_t n, uint64_t chunk, uint64_t parallel_min,
                        void (*fn)(uint64_t lo, uint64_t hi, void *arg), void *arg);

/* ---- FedAvg accumulator --------------------------------------------------------------------- */

/*
 * Running weighted sums, one double per element of the global model (all arrays in one
 * buffer), plus the weight total. Memory: 8 bytes per model element, whatever the number of
 * replies.
 */
typedef struct pt_fedavg_acc pt_fedavg_acc_t;

/* A new accumulator shaped like `global`: every array must be float32 or float64 (otherwise
 * PETAL_ETYPE with a sentence in why). Folds of at least parallel_min_elements elements run
 * on the runtime's worker pool (when a runtime is given to fold). */
int pt_fedavg_acc_alloc(const petal_arrayrecord_t *global, uint64_t parallel_min_elements,
                        char *why, size_t why_len, pt_fedavg_acc_t **out);
/* Checks `arrays` against the model: names, dtypes, shapes, alignment. 0, or PETAL_EINVAL
 * with a sentence in why. */
int pt_fedavg_acc_check(pt_fedavg_acc_t *acc, const petal_arrayrecord_t *arrays, char *why,
                        size_t why_len);
/* pt_fedavg_acc_check(), then (only if it passed) adds weight * arrays to the sums. weight must
 * be positive and finite. rt may be NULL (serial). The sums are allocated by the first fold
 * (PETAL_ENOMEM with a sentence in why when they cannot be). */
int pt_fedavg_acc_fold(pt_fedavg_acc_t *acc, const petal_arrayrecord_t *arrays, double weight,
                       struct pt_runtime *rt, char *why, size_t why_len);
/* The same for `arrays` of the message `reply` (may be NULL): with narrow sums the first fold
 * uses the reply's own arrays as the sums when nothing else references the message or their
 * buffers (see pt_fedavg_acc_set_narrow). */
int pt_fedavg_acc_fold_reply(pt_fedavg_acc_t *acc, const petal_message_t *reply,
                             const petal_arrayrecord_t *arrays, double weight,
                             struct pt_runtime *rt, char *why, size_t why_len);

/*
 * Narrow sums, for models too large for double-precision sums (8 bytes per element, twice a
 * float32 model): when the model has at least min_elements elements (0: never, the default),
 * each array is summed in its own dtype, every fold rounding once to it (float32 sums of
 * float32 arrays: results differ from double sums in the last bits; the same in simulation
 * and deployment). The first reply's arrays become the sums when this process owns them alone
 * (a received reply), otherwise one buffer of the model's size holds them, and the mean is
 * written over the sums, which become the output arrays: FedAvg then needs no memory beyond
 * the replies. pt_fedavg_acc_mean() is not available (NULL). Call before the first fold.
 */
void pt_fedavg_acc_set_narrow(pt_fedavg_acc_t *acc, uint64_t min_elements);
/* Whether the sums are narrow (decided by the first fold). */
int pt_fedavg_acc_is_narrow(const pt_fedavg_acc_t *acc);
/* FedAvg's narrow-sum threshold: models of 2^28 elements (1 GiB of float32) and more. */
#define PT_FEDAVG_NARROW_MIN_ELEMENTS ((uint64_t)1 << 28)

/* Writes sums / total weight into `out`, one new array per model array in the model's dtype
 * (narrow sums: views of the sums, once). PETAL_ESTATE if nothing was folded. */
int pt_fedavg_acc_finish(pt_fedavg_acc_t *acc, petal_arrayrecord_t *out, struct pt_runtime *rt);
/* The weighted mean in double precision, numel values in layout order: the sums are divided by
 * the total weight in place (once; no fold afterwards). NULL if nothing was folded. Valid
 * until the accumulator is freed. */
const double *pt_fedavg_acc_mean(pt_fedavg_acc_t *acc, struct pt_runtime *rt);
const pt_layout_t *pt_fedavg_acc_layout(const pt_fedavg_acc_t *acc);
uint64_t pt_fedavg_acc_count(const pt_fedavg_acc_t *acc);
double pt_fedavg_acc_total_weight(const pt_fedavg_acc_t *acc);
uint64_t pt_fedavg_acc_numel(const pt_fedavg_acc_t *acc);
void pt_fedavg_acc_free(pt_fedavg_acc_t *acc);

/* ---- FedAvg's train phase, for the strategies built on it (fedavg.c) --------------------------
 */

/*
 * The per-phase state of FedAvg's aggregate_train: running sums of the arrays (weighted by
 * weighted_by_key) and the train metrics aggregator's state. FedProx, FedAvgM, FedAdam,
 * FedYogi and FedAdagrad use these ops as their own begin / fold / free and post-process the
 * mean in end.
 */
typedef struct pt_fedavg_agg {
    pt_fedavg_acc_t *acc;
    const petal_metrics_aggr_t *aggr;
    void *mstate;
    struct pt_runtime *rt;
    const petal_round_info_t *info;
} pt_fedavg_agg_t;

int32_t pt_fedavg_agg_begin(petal_strategy_t *s, const petal_round_info_t *info, void **agg);
int32_t pt_fedavg_agg_fold(petal_strategy_t *s, void *agg, uint64_t index,
                           const petal_message_t *reply, char *why, size_t why_len);
/* FedAvg's end: the mean into `arrays`, and the metrics. */
int32_t pt_fedavg_agg_end(petal_strategy_t *s, void *agg, petal_arrayrecord_t *arrays,
                          petal_metricrecord_t *metrics);
/* Writes the metrics only (the strategy writes the arrays). */
int32_t pt_fedavg_agg_end_metrics(pt_fedavg_agg_t *a, petal_metricrecord_t *metrics);
void pt_fedavg_agg_free(petal_strategy_t *s, void *agg);

/*
 * For server-side optimizers (FedAvgM, FedAdam, ...) in their end(): the FedAvg mean in double
 * (layout order), the data of this round's global arrays (x) and of new output arrays added to
 * `arrays` (y), ready for an element-wise x, mean -> y over layout ranges. 0, or an error with
 * a sentence in why. pt_server_step_fini() frees the pointer tables (not the arrays).
 */
typedef struct pt_server_step {
    const pt_layout_t *layout;
    const double *mean;
    const void **x;
    void **y;
} pt_server_step_t;

int32_t pt_server_step_init(pt_server_step_t *st, pt_fedavg_agg_t *a, petal_arrayrecord_t *arrays,
                            char *why, size_t why_len);
void pt_server_step_fini(pt_server_step_t *st);

/* ---- Held replies, for the order-statistic strategies ------------------------------------------
 */

/*
 * The accepted replies of one phase, kept by send position: each one's arrays by reference (a
 * reference to the reply's buffers, never a copy), its MetricRecord copied (small), and its
 * weight. Whatever order the replies arrive in, pt_replies_seal() lists them in send order,
 * so results do not depend on arrival order (with or without `deterministic`).
 */
typedef struct pt_held {
    uint64_t index;             /* send position */
    double weight;              /* weighted_by_key */
    petal_recorddict_t *holder; /* "arrays": references; "metrics": a copy */
    const petal_arrayrecord_t *arrays;
    const void **data; /* layout->narrays data pointers */
} pt_held_t;

typedef struct pt_replies {
    pt_layout_t *layout;
    pt_held_t *slots; /* one per send position; holder NULL when none */
    uint64_t nslots;
    pt_held_t **held; /* after seal: the held ones in send order */
    uint64_t count;
} pt_replies_t;

/* For a phase with info->num_nodes send positions and the model info->arrays. */
int pt_replies_alloc(const petal_round_info_t *info, const char *who, char *why, size_t why_len,
                     pt_replies_t **out);
/* Checks the reply (ArrayRecord arrayrecord_key matching the model, weight) and keeps it at
 * `index`. On error nothing is kept and why says what was wrong. */
int pt_replies_hold(pt_replies_t *r, const petal_strategy_t *s, uint64_t index,
                    const petal_message_t *reply, char *why, size_t why_len);
/* Lists the held replies in send order in r->held[0..r->count). Idempotent. */
int pt_replies_seal(pt_replies_t *r);
/* The train metrics aggregator over the held replies which[0..n) (positions in r->held), in
 * that order; which == NULL means all of them. */
int32_t pt_replies_metrics(const pt_replies_t *r, const petal_strategy_t *s, const uint64_t *which,
                           uint64_t n, petal_metricrecord_t *out);
void pt_replies_free(pt_replies_t *r);

/* ---- Element-wise order statistics ------------------------------------------------------------
 */

/* One output element from its n values col[0..n), in send order (col is scratch: fn may
 * reorder it). */
typedef double (*pt_column_fn)(double *col, uint64_t n, void *arg);

/*
 * For every element of the model: gathers the element's value in rows[0..n) into a column,
 * calls fn, and writes the result into dst (the output arrays' data, in the model's dtypes).
 * Element ranges run on the worker pool as in pt_parallel_ranges(); each element is computed
 * from its own column only, so the result does not depend on the thread count.
 * 0 or PETAL_ENOMEM.
 */
int pt_columns(const pt_layout_t *l, const pt_held_t *const *rows, uint64_t n, void *const *dst,
               struct pt_runtime *rt, uint64_t parallel_min, pt_column_fn fn, void *arg);

/* The k-th smallest of v[0..n) (0-based, k < n): reorders v so that v[0..k) <= v[k] <=
 * v[k+1..n). Deterministic; NaN-free input expected. */
double pt_select(double *v, uint64_t n, uint64_t k);

/* ---- The built-in strategies' constructors (strategy_*.c; parameters already checked) --------
 */

typedef int32_t (*pt_strategy_ctor)(const char *name, const petal_strategy_options_t *opts,
                                    const petal_strategy_params_t *p, petal_strategy_t **out);

int32_t pt_strategy_fedavg_ctor(const char *name, const petal_strategy_options_t *opts,
                                const petal_strategy_params_t *p, petal_strategy_t **out);
int32_t pt_strategy_fedprox_ctor(const char *name, const petal_strategy_options_t *opts,
                                 const petal_strategy_params_t *p, petal_strategy_t **out);
/* fedadam, fedyogi, fedadagrad (by name) */
int32_t pt_strategy_fedopt_ctor(const char *name, const petal_strategy_options_t *opts,
                                const petal_strategy_params_t *p, petal_strategy_t **out);
int32_t pt_strategy_fedavgm_ctor(const char *name, const petal_strategy_options_t *opts,
                                 const petal_strategy_params_t *p, petal_strategy_t **out);
/* fedmedian, fedtrimmedavg */
int32_t pt_strategy_robust_ctor(const char *name, const petal_strategy_options_t *opts,
                                const petal_strategy_params_t *p, petal_strategy_t **out);
/* krum, multikrum, bulyan */
int32_t pt_strategy_krum_ctor(const char *name, const petal_strategy_options_t *opts,
                              const petal_strategy_params_t *p, petal_strategy_t **out);
int32_t pt_strategy_qfedavg_ctor(const char *name, const petal_strategy_options_t *opts,
                                 const petal_strategy_params_t *p, petal_strategy_t **out);

/* ---- Reply ordering ---------------------------------------------------------------------------
 */

/*
 * One phase of one round as the loop sees it: replies arrive in any order; with
 * `deterministic` they are handed to ops->fold in send order (info->nodes order). A reply that
 * comes before its predecessors is held (a reference, no copy) until its turn; an error reply
 * or a rejected one is a failure and lets the replies behind it through. Replies are matched
 * to nodes by their src_node_id; a reply from an unknown node or a second reply is ignored.
 */
typedef struct pt_phase pt_phase_t;

int pt_phase_alloc(petal_strategy_t *s, const petal_aggregate_ops_t *ops, void *agg,
                   const petal_round_info_t *info, int deterministic, pt_phase_t **out);
/* A petal_reply_cb: feed it every reply. Returns non-zero once every node has answered. */
int32_t pt_phase_reply(void *phase, const petal_message_t *reply);
/* No more replies will come: nodes without one are failures ("no reply"), held ones are
 * folded. */
void pt_phase_close(pt_phase_t *p);
uint64_t pt_phase_successes(const pt_phase_t *p);
uint64_t pt_phase_failures(const pt_phase_t *p);
/* Most replies held at once waiting for their turn (0 when they came in order). */
uint64_t pt_phase_max_held(const pt_phase_t *p);
/* "node 7: NODE_UNAVAILABLE; node 9: bad reply: ..." (the first few), "" when none. */
const char *pt_phase_failure_text(const pt_phase_t *p);
void pt_phase_free(pt_phase_t *p);

#endif
