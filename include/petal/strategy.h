/* strategy.h - server-side strategies (FedAvg, ...) and the round loop that drives them. */
#ifndef PETAL_STRATEGY_H
#define PETAL_STRATEGY_H

/*
 * Host-side API (programs and ServerApp code linked into libpetal; not part of the plugin ABI).
 *
 * A strategy is an object with an ops table, Flower-style: configure_train, aggregate_train,
 * configure_evaluate, aggregate_evaluate. petal_strategy_start() runs the whole loop:
 *
 *   for round in 1..num_rounds:
 *       wait for nodes, sample them (seeded), configure_train -> messages, send, and fold each
 *       reply into aggregate_train as it arrives; end -> new global arrays + train metrics
 *       the same for evaluate (skipped when fraction_evaluate == 0)
 *       the server-side evaluate hook, if any
 *
 * Aggregation is streaming: begin / fold(reply) / end. A mean-type strategy folds each reply
 * into running sums and keeps nothing of it (server memory O(model)); an order-statistic
 * strategy (median, trimmed mean, Krum, Bulyan) keeps what it needs from the replies it is
 * given (it may hold a reply with pt_message_hold(): replies are reference-counted).
 *
 * Determinism: with `deterministic` set (the default), the loop hands replies to fold in the
 * order the messages were sent, whatever order they arrive in, so the same seed gives
 * bit-identical arrays run after run. See docs/strategies.md for the cost.
 *
 * Threads: a strategy is used by one thread at a time, the ServerApp thread that called
 * petal_strategy_start(). Errors: 0 or a negative petal_error; petal_strategy_error() then
 * explains what went wrong in a sentence.
 */

#include <stddef.h>
#include <stdint.h>

#include <petal/petal.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct petal_strategy petal_strategy_t;
typedef struct petal_result petal_result_t;

/* ---- Hooks ---------------------------------------------------------------------------------- */

/* Server-side evaluation of the global arrays after each round (and of the initial arrays as
 * round 0). Fills `out`; a negative return fails the run. */
typedef int32_t (*petal_evaluate_fn)(void *ctx, uint32_t round, const petal_arrayrecord_t *arrays,
                                     petal_metricrecord_t *out);

/* Adds per-round keys to the "config" record sent with each train (or evaluate) message,
 * after the static keys of the options. Called once per round; a negative return fails it. */
typedef int32_t (*petal_config_fn)(void *ctx, uint32_t round, petal_configrecord_t *config);

/*
 * Streaming aggregation of the replies' MetricRecords. begin() creates a state, fold() adds one
 * reply's metrics with its weight (the reply's `weighted_by_key` value), end() writes the result
 * into `out`, free() drops the state (always called last, after end() or instead of it).
 * fold() is called in the same order as the arrays are folded (send order when deterministic).
 */
typedef struct petal_metrics_aggr {
    void *ctx;
    int32_t (*begin)(void *ctx, const char *weighted_by_key, void **state);
    int32_t (*fold)(void *state, const petal_metricrecord_t *metrics, double weight);
    int32_t (*end)(void *state, petal_metricrecord_t *out);
    void (*free)(void *state);
} petal_metrics_aggr_t;

/* The default: the weighted mean (by `weighted_by_key`) of every numeric metric (int, uint,
 * double, and lists of them elementwise) present with the same shape in all replies, written
 * as double (lists as double lists); the weighting key itself is left out. Static storage. */
const petal_metrics_aggr_t *petal_metrics_aggr_weighted_mean(void);

/* ---- Options (Flower's names and defaults) -------------------------------------------------- */

typedef struct petal_strategy_options {
    double fraction_train;        /* of available nodes sampled for training; 1.0 */
    double fraction_evaluate;     /* of available nodes sampled for evaluation; 1.0; 0 = skip */
    uint32_t min_train_nodes;     /* sample at least this many; 2 */
    uint32_t min_evaluate_nodes;  /* 2 */
    uint32_t min_available_nodes; /* wait until this many nodes are connected; 2 */
    const char *weighted_by_key;  /* reply metric used as weight; "num-examples" */
    const char *arrayrecord_key;  /* ArrayRecord name in messages and replies; "arrays" */
    const char *configrecord_key; /* ConfigRecord name in messages; "config" */
    double round_timeout;         /* seconds to wait for nodes, and then for replies; 3600 */
    /* Fraction of the sampled nodes that must reply successfully; 0 (the default) means "at
     * least min_train_nodes / min_evaluate_nodes". The round fails below the larger of both. */
    double min_completion_rate;
    uint64_t seed;         /* node sampling seed; 0 */
    int32_t deterministic; /* fold in send order (bit-identical results); 1 */
    uint32_t reserved;
    /* Fold large models on the runtime's worker pool when they have at least this many
     * elements; 1 << 20. */
    uint64_t parallel_min_elements;
    /* Copied into every train / evaluate "config" record (after "server-round"); borrowed, must
     * outlive the strategy; NULL for none. */
    const petal_configrecord_t *train_config;
    const petal_configrecord_t *evaluate_config;
    petal_config_fn train_config_fn; /* optional; after train_config */
    void *train_config_ctx;
    petal_config_fn evaluate_config_fn; /* optional; after evaluate_config */
    void *evaluate_config_ctx;
    petal_evaluate_fn evaluate_fn; /* optional server-side evaluation */
    void *evaluate_ctx;
    const petal_metrics_aggr_t *train_metrics_aggr;    /* NULL: weighted mean */
    const petal_metrics_aggr_t *evaluate_metrics_aggr; /* NULL: weighted mean */
} petal_strategy_options_t;

/* Fills `o` with the defaults above. */
void petal_strategy_options_init(petal_strategy_options_t *o);
/* Checks ranges (fractions in [0, 1], fraction_train > 0 or min_train_nodes >= 1, keys
 * non-empty, round_timeout > 0, ...). 0, or PETAL_EINVAL with a sentence in why. */
int32_t petal_strategy_options_check(const petal_strategy_options_t *o, char *why, size_t why_len);

/* ---- Writing a strategy --------------------------------------------------------------------- */

/* What one phase of one round is about; valid from begin() to free(). */
typedef struct petal_round_info {
    uint32_t round; /* 1-based */
    uint32_t reserved;
    const char *phase;                 /* "train" or "evaluate" */
    const petal_arrayrecord_t *arrays; /* the global arrays sent this round */
    const uint64_t *nodes;             /* the sampled nodes, in send order */
    uint64_t num_nodes;
    petal_grid_t *grid; /* for pt_grid_runtime(), logging context, ... */
} petal_round_info_t;

/*
 * Streaming aggregation of one phase. begin() creates the strategy's per-phase state `*agg`;
 * fold() is called once per successful (non-error) reply, `index` being the reply's position in
 * info->nodes; a negative return rejects the reply (it counts as a failure, with `why`, a
 * NUL-terminated sentence the strategy writes, e.g. "array 'w': shape [3] != [4]") and must
 * leave the state as if the reply never came. end() is called only if enough replies were
 * accepted: it fills `arrays` (train only; NULL for evaluate; leaving it empty keeps the old
 * global arrays) and `metrics`. free() is always called last.
 */
typedef struct petal_aggregate_ops {
    int32_t (*begin)(petal_strategy_t *s, const petal_round_info_t *info, void **agg);
    int32_t (*fold)(petal_strategy_t *s, void *agg, uint64_t index, const petal_message_t *reply,
                    char *why, size_t why_len);
    int32_t (*end)(petal_strategy_t *s, void *agg, petal_arrayrecord_t *arrays,
                   petal_metricrecord_t *metrics);
    void (*free)(petal_strategy_t *s, void *agg);
} petal_aggregate_ops_t;

/*
 * Builds one message per node into msgs[0..n) (owned by the caller on success, none on error).
 * NULL in the ops table means petal_strategy_configure_default().
 */
typedef int32_t (*petal_configure_fn)(petal_strategy_t *s, uint32_t round,
                                      const petal_arrayrecord_t *arrays, const uint64_t *nodes,
                                      uint64_t n, petal_message_t **msgs);

typedef struct petal_strategy_ops {
    const char *name; /* "fedavg" */
    petal_configure_fn configure_train;
    petal_aggregate_ops_t aggregate_train; /* required */
    petal_configure_fn configure_evaluate;
    /* All NULL: the weighted mean of the replies' metrics (evaluate_metrics_aggr). */
    petal_aggregate_ops_t aggregate_evaluate;
    /* Frees the strategy (petal_strategy_free); NULL: free(s) is not done, nothing is. */
    void (*free)(petal_strategy_t *s);
} petal_strategy_ops_t;

#define PETAL_STRATEGY_ERROR_MAX 1024

/* The common part; a strategy embeds it first in its own struct. */
struct petal_strategy {
    const petal_strategy_ops_t *ops;
    petal_strategy_options_t opts;
    char error[PETAL_STRATEGY_ERROR_MAX]; /* last failure, "" when none */
};

/* Initializes the common part (opts copied; NULL for the defaults). 0 or PETAL_EINVAL. */
int32_t petal_strategy_init(petal_strategy_t *s, const petal_strategy_ops_t *ops,
                            const petal_strategy_options_t *opts);
/* Calls ops->free. NULL is fine. */
void petal_strategy_free(petal_strategy_t *s);
/* The last failure of petal_strategy_start() as a sentence; "" when none. */
const char *petal_strategy_error(const petal_strategy_t *s);

/* The default configure: for each node a message of `message_type` ("train" / "evaluate")
 * whose content is an ArrayRecord (arrayrecord_key) referencing `arrays` (no copy: all
 * messages share the global buffers) and a ConfigRecord (configrecord_key) with "server-round"
 * plus the phase's static keys and hook output. group_id is the round number, ttl the round
 * timeout. */
int32_t petal_strategy_configure_default(petal_strategy_t *s, const char *message_type,
                                         uint32_t round, const petal_arrayrecord_t *arrays,
                                         const uint64_t *nodes, uint64_t n, petal_message_t **msgs);

/* Helpers for fold(): the reply's MetricRecord ("metrics" if present, otherwise the first
 * MetricRecord; NULL if none) and its weight (`weighted_by_key`, a positive integer). */
const petal_metricrecord_t *petal_strategy_reply_metrics(const petal_recorddict_t *content);
int32_t petal_strategy_reply_weight(const petal_strategy_t *s, const petal_recorddict_t *content,
                                    double *weight, char *why, size_t why_len);
/* Checks that `reply` has exactly the names, dtypes and shapes of `global`. 0 or PETAL_EINVAL
 * with a sentence in why. */
int32_t petal_strategy_check_arrays(const petal_arrayrecord_t *global,
                                    const petal_arrayrecord_t *reply, char *why, size_t why_len);

/* ---- Built-in strategies -------------------------------------------------------------------- */

/* FedAvg: the weighted mean (by weighted_by_key) of float32 / float64 arrays, folded as replies
 * arrive, in double precision, in parallel for large models. */
int32_t petal_strategy_fedavg_alloc(const petal_strategy_options_t *opts, petal_strategy_t **out);

/* ---- The strategy library -------------------------------------------------------------------
 *
 * Flower's strategies, with Flower's parameter names and defaults. In a run config the names
 * are kebab-case keys ("proximal-mu", "num-malicious-nodes"); docs/strategies.md has the table.
 *
 *   fedavg         the weighted mean (above)
 *   fedprox        FedAvg, and "proximal-mu" in every train config (the ClientApp applies it)
 *   fedadam        FedAvg's mean as pseudo-gradient, Adam on the server (Reddi et al. 2021)
 *   fedyogi        the same with Yogi's second moment
 *   fedadagrad     the same with Adagrad's
 *   fedavgm        FedAvg with server learning rate and momentum (Hsu et al. 2019)
 *   fedmedian      the element-wise median of the replies' arrays
 *   fedtrimmedavg  the element-wise mean after cutting a fraction beta at each end
 *   krum           the reply closest to its n - f - 2 nearest neighbours (Blanchard et al. 2017)
 *   multikrum      the weighted mean of the num-nodes-to-select best Krum scores
 *   bulyan         Krum selection of n - 2f replies, then a trimmed mean around the median of
 *                  each element (El Mhamdi et al. 2018)
 *   qfedavg        q-fair FedAvg (Li et al. 2020) from each reply's training loss
 *
 * Mean-type strategies fold each reply into running sums as it arrives (memory O(model));
 * order-statistic ones (fedmedian, fedtrimmedavg, krum, multikrum, bulyan) hold references to
 * the replies' arrays (no copy) until the end of the phase and compute element ranges (and
 * Krum's pairwise distances) on the worker pool. Their results are computed in send order,
 * so they do not depend on the arrival order of the replies.
 */

/* Every strategy's parameters; each strategy reads only its own. */
typedef struct petal_strategy_params {
    double proximal_mu;           /* fedprox "proximal-mu": 0.0 */
    double eta;                   /* "eta": server learning rate; fedadam / fedadagrad 0.1,
                                     fedyogi 0.01 */
    double eta_l;                 /* "eta-l": the clients' learning rate; 0.1 (fedyogi 0.0316);
                                     informative, as in Flower (not sent, not used) */
    double beta_1;                /* "beta-1": fedadam / fedyogi 0.9 (fedadagrad: 0, fixed) */
    double beta_2;                /* "beta-2": fedadam / fedyogi 0.99 (fedadagrad: 0, fixed) */
    double tau;                   /* "tau": adaptivity, fedadam / fedyogi / fedadagrad 1e-3 */
    double server_learning_rate;  /* fedavgm "server-learning-rate": 1.0 */
    double server_momentum;       /* fedavgm "server-momentum": 0.0 */
    double beta;                  /* fedtrimmedavg "beta": 0.2, cut from each end, [0, 0.5) */
    uint32_t num_malicious_nodes; /* krum, multikrum, bulyan "num-malicious-nodes" f: 0 */
    uint32_t num_nodes_to_select; /* multikrum "num-nodes-to-select" m: 1 (krum: 1, fixed) */
    double q;                     /* qfedavg "q": 0.1 */
    /* qfedavg "client-learning-rate": required (> 0); L = 1 / client-learning-rate. 0 = not
     * set. petal_strategy_params_read() falls back on the run config's "lr". */
    double client_learning_rate;
    /* qfedavg "train-loss-key": the reply metric holding the training loss; "train-loss".
     * Borrowed: the strategy copies it. */
    const char *train_loss_key;
} petal_strategy_params_t;

/* The defaults of strategy `name`. 0, or PETAL_ENOENT for an unknown name. */
int32_t petal_strategy_params_init(petal_strategy_params_t *p, const char *name);
/*
 * petal_strategy_params_init(), then the keys of strategy `name` that are present in `config`
 * (kebab-case, above; other keys are ignored). Checks types only ("run config key \"eta\" must
 * be a number, got a string"); ranges are petal_strategy_check()'s. train_loss_key then points
 * into `config`. 0, PETAL_ENOENT (unknown name), or PETAL_ECONFIG, with a sentence in why.
 */
int32_t petal_strategy_params_read(petal_strategy_params_t *p, const char *name,
                                   const petal_configrecord_t *config, char *why, size_t why_len);
/*
 * Checks `opts` and `p` for strategy `name` before anything runs, e.g. "krum:
 * num-malicious-nodes 2 needs at least 2*2+3 = 7 sampled nodes per round, min-train-nodes is
 * 5" or "fedtrimmedavg: beta must be within [0, 0.5), got 0.5". 0, PETAL_ENOENT (unknown name,
 * why lists the supported ones) or PETAL_EINVAL, with a sentence in why. opts NULL: defaults.
 */
int32_t petal_strategy_check(const char *name, const petal_strategy_options_t *opts,
                             const petal_strategy_params_t *p, char *why, size_t why_len);
/* petal_strategy_check(), then a new strategy (petal_strategy_free() it). p NULL: the
 * defaults. Errors as petal_strategy_check(), or PETAL_ENOMEM. */
int32_t petal_strategy_alloc(const char *name, const petal_strategy_options_t *opts,
                             const petal_strategy_params_t *p, char *why, size_t why_len,
                             petal_strategy_t **out);

/* By name with default parameters ("fedavg", ...); PETAL_ENOENT for an unknown name, the
 * reason of any other failure is logged. */
int32_t petal_strategy_alloc_by_name(const char *name, const petal_strategy_options_t *opts,
                                     petal_strategy_t **out);
/* The supported names, comma-separated ("fedavg, fedprox, ..."); static storage. */
const char *petal_strategy_names(void);

/* ---- Running ------------------------------------------------------------------------------- */

/*
 * Runs num_rounds rounds from `initial` (referenced, not copied) on the ServerApp thread.
 * Records each round's metrics on the grid (phases "train", "evaluate", "server"; train and
 * evaluate include int64 "num-replies" and "num-failures") and sets the final arrays with
 * petal_grid_set_final_arrays(). On success *out (if out is not NULL) receives the history.
 * Fails with PETAL_ETIMEDOUT when too few nodes connect within round_timeout,
 * PETAL_E_SERVER_APP_RAISED_EXCEPTION when a round gets too few successful replies or a hook
 * fails, or the grid's error; the reason is logged and kept in petal_strategy_error().
 */
int32_t petal_strategy_start(petal_strategy_t *s, petal_grid_t *grid,
                             const petal_arrayrecord_t *initial, uint32_t num_rounds,
                             petal_result_t **out);

/* The history: rounds 1..num_rounds (and 0 for the server evaluation of the initial arrays). */
uint32_t petal_result_num_rounds(const petal_result_t *r);
/* phase "train", "evaluate" or "server"; NULL when that phase did not run in that round. */
const petal_metricrecord_t *petal_result_metrics(const petal_result_t *r, uint32_t round,
                                                 const char *phase);
/* The final global arrays; valid while r lives. */
const petal_arrayrecord_t *petal_result_arrays(const petal_result_t *r);
void petal_result_free(petal_result_t *r);

#ifdef __cplusplus
}
#endif

#endif /* PETAL_STRATEGY_H */
