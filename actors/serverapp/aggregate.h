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
 * be positive and finite. rt may be NULL (serial). */
int pt_fedavg_acc_fold(pt_fedavg_acc_t *acc, const petal_arrayrecord_t *arrays, double weight,
                       struct pt_runtime *rt, char *why, size_t why_len);
/* Writes sums / total weight into `out`, one new array per model array in the model's dtype.
 * PETAL_ESTATE if nothing was folded. */
int pt_fedavg_acc_finish(pt_fedavg_acc_t *acc, petal_arrayrecord_t *out, struct pt_runtime *rt);
uint64_t pt_fedavg_acc_count(const pt_fedavg_acc_t *acc);
double pt_fedavg_acc_total_weight(const pt_fedavg_acc_t *acc);
uint64_t pt_fedavg_acc_numel(const pt_fedavg_acc_t *acc);
void pt_fedavg_acc_free(pt_fedavg_acc_t *acc);

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
