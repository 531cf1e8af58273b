/* strategy.c - the strategy round loop: sampling, configure, send, ordered folding, history. */
#include <petal/strategy.h>

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actors/serverapp/aggregate.h"
#include "runtime/error.h"
#include "runtime/grid.h"
#include "runtime/log.h"
#include "runtime/message.h"

#define HOLDER_ARRAYS "arrays" /* name of the global arrays in our own holder RecordDicts */
#define NODE_POLL_MS 50        /* petal_grid_node_ids polling while waiting for nodes */
#define FAILURES_LISTED 8      /* failures spelled out in a round's failure text */
#define FAILURES_LOGGED 10     /* failures logged at WARN per phase (then DEBUG) */
#define WHY_MAX 512

/* ---- Options -------------------------------------------------------------------------------- */

void
petal_strategy_options_init(petal_strategy_options_t *o)
{
    memset(o, 0, sizeof(*o));
    o->fraction_train = 1.0;
    o->fraction_evaluate = 1.0;
    o->min_train_nodes = 2;
    o->min_evaluate_nodes = 2;
    o->min_available_nodes = 2;
    o->weighted_by_key = "num-examples";
    o->arrayrecord_key = "arrays";
    o->configrecord_key = "config";
    o->round_timeout = 3600.0;
    o->min_completion_rate = 0.0;
    o->seed = 0;
    o->deterministic = 1;
    o->parallel_min_elements = (uint64_t)1 << 20;
}

static int
fraction_ok(double f)
{
    return f >= 0.0 && f <= 1.0; /* false for NaN */
}

static int
aggr_ok(const petal_metrics_aggr_t *a)
{
    return a == NULL || (a->begin != NULL && a->fold != NULL && a->end != NULL && a->free != NULL);
}

int32_t
petal_strategy_options_check(const petal_strategy_options_t *o, char *why, size_t why_len)
{
    const char *bad = NULL;

    if (o == NULL) {
        bad = "no options given";
    } else if (!fraction_ok(o->fraction_train)) {
        bad = "fraction-train must be within [0, 1]";
    } else if (!fraction_ok(o->fraction_evaluate)) {
        bad = "fraction-evaluate must be within [0, 1]";
    } else if (o->fraction_train == 0.0 && o->min_train_nodes == 0) {
        bad = "fraction-train and min-train-nodes are both 0: no node would ever train";
    } else if (!fraction_ok(o->min_completion_rate)) {
        bad = "min-completion-rate must be within [0, 1]";
    } else if (!(o->round_timeout > 0.0) || !isfinite(o->round_timeout)) {
        bad = "round-timeout must be a positive number of seconds";
    } else if (o->weighted_by_key == NULL || o->weighted_by_key[0] == '\0') {
        bad = "weighted-by-key must be a non-empty metric name";
    } else if (o->arrayrecord_key == NULL || o->arrayrecord_key[0] == '\0') {
        bad = "arrayrecord-key must be a non-empty record name";
    } else if (o->configrecord_key == NULL || o->configrecord_key[0] == '\0') {
        bad = "configrecord-key must be a non-empty record name";
    } else if (!aggr_ok(o->train_metrics_aggr) || !aggr_ok(o->evaluate_metrics_aggr)) {
        bad = "a metrics aggregator needs begin, fold, end and free";
    }
    if (bad != NULL) {
        if (why != NULL && why_len > 0) {
            snprintf(why, why_len, "%s", bad);
        }
        return PETAL_EINVAL;
    }
    return 0;
}

/* ---- The common part ------------------------------------------------------------------------ */

static int
aggregate_ops_ok(const petal_aggregate_ops_t *a)
{
    return a->begin != NULL && a->fold != NULL && a->end != NULL && a->free != NULL;
}

static int
aggregate_ops_empty(const petal_aggregate_ops_t *a)
{
    return a->begin == NULL && a->fold == NULL && a->end == NULL && a->free == NULL;
}

int32_t
petal_strategy_init(petal_strategy_t *s, const petal_strategy_ops_t *ops,
                    const petal_strategy_options_t *opts)
{
    if (s == NULL || ops == NULL || !aggregate_ops_ok(&ops->aggregate_train) ||
        !(aggregate_ops_ok(&ops->aggregate_evaluate) ||
          aggregate_ops_empty(&ops->aggregate_evaluate))) {
        return PETAL_EINVAL;
    }
    s->ops = ops;
    s->error[0] = '\0';
    if (opts != NULL) {
        s->opts = *opts;
    } else {
        petal_strategy_options_init(&s->opts);
    }
    return petal_strategy_options_check(&s->opts, s->error, sizeof(s->error));
}

void
petal_strategy_free(petal_strategy_t *s)
{
    if (s != NULL && s->ops != NULL && s->ops->free != NULL) {
        s->ops->free(s);
    }
}

const char *
petal_strategy_error(const petal_strategy_t *s)
{
    return s != NULL ? s->error : "";
}

/* petal_strategy_alloc(), _by_name() and _names() are in strategy_params.c with the rest of
 * the library's registry. */

/* ---- Helpers for strategies ----------------------------------------------------------------- */

static int32_t
copy_config(petal_configrecord_t *dst, const petal_configrecord_t *src, const char *skip)
{
    uint64_t n = src != NULL ? petal_configrecord_count(src) : 0;

    for (uint64_t i = 0; i < n; i++) {
        const char *name;
        petal_value_t v;
        int32_t rc = petal_configrecord_at(src, i, &name, &v);
        if (rc != 0) {
            return rc;
        }
        if (skip != NULL && strcmp(name, skip) == 0) {
            continue;
        }
        rc = petal_configrecord_set(dst, name, &v);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int32_t
petal_strategy_configure_default(petal_strategy_t *s, const char *message_type, uint32_t round,
                                 const petal_arrayrecord_t *arrays, const uint64_t *nodes,
                                 uint64_t n, petal_message_t **msgs)
{
    const petal_strategy_options_t *o;
    const petal_configrecord_t *static_cfg = NULL;
    petal_config_fn hook = NULL;
    void *hook_ctx = NULL;
    petal_recorddict_t *tmpl;
    petal_configrecord_t *cfg;
    petal_value_t v;
    char group[16];
    uint64_t built = 0;
    uint64_t narrays;
    int32_t rc = PETAL_ENOMEM;

    if (s == NULL || message_type == NULL || arrays == NULL ||
        (n > 0 && (nodes == NULL || msgs == NULL))) {
        return PETAL_EINVAL;
    }
    o = &s->opts;
    if (strcmp(message_type, "train") == 0) {
        static_cfg = o->train_config;
        hook = o->train_config_fn;
        hook_ctx = o->train_config_ctx;
    } else if (strcmp(message_type, "evaluate") == 0) {
        static_cfg = o->evaluate_config;
        hook = o->evaluate_config_fn;
        hook_ctx = o->evaluate_config_ctx;
    }

    /* The config record once, then copied into each message. */
    tmpl = petal_recorddict_alloc();
    if (tmpl == NULL) {
        return PETAL_ENOMEM;
    }
    cfg = petal_recorddict_add_config(tmpl, o->configrecord_key);
    if (cfg == NULL) {
        goto fail;
    }
    v = petal_value_i64(round);
    rc = petal_configrecord_set(cfg, "server-round", &v);
    if (rc == 0) {
        rc = copy_config(cfg, static_cfg, "server-round");
    }
    if (rc == 0 && hook != NULL) {
        rc = hook(hook_ctx, round, cfg);
        if (rc != 0) {
            snprintf(s->error, sizeof(s->error), "the %s config hook failed: %s", message_type,
                     petal_strerror(rc));
        }
    }
    if (rc != 0) {
        goto fail;
    }

    snprintf(group, sizeof(group), "%" PRIu32, round);
    narrays = petal_arrayrecord_count(arrays);
    for (built = 0; built < n; built++) {
        petal_recorddict_t *content = petal_recorddict_alloc();
        petal_arrayrecord_t *ar;
        petal_configrecord_t *c;

        rc = PETAL_ENOMEM;
        if (content == NULL) {
            goto fail;
        }
        ar = petal_recorddict_add_arrays(content, o->arrayrecord_key);
        c = petal_recorddict_add_config(content, o->configrecord_key);
        if (ar == NULL || c == NULL) {
            petal_recorddict_free(content);
            rc = ar == NULL && c == NULL ? PETAL_ENOMEM : PETAL_EINVAL;
            goto fail;
        }
        rc = 0;
        for (uint64_t j = 0; j < narrays && rc == 0; j++) {
            rc = petal_arrayrecord_add_ref(ar, petal_arrayrecord_name_at(arrays, j),
                                           petal_arrayrecord_at(arrays, j));
        }
        if (rc == 0) {
            rc = copy_config(c, cfg, NULL);
        }
        if (rc != 0) {
            petal_recorddict_free(content);
            goto fail;
        }
        msgs[built] =
            petal_message_alloc(content, message_type, nodes[built], group, o->round_timeout);
        if (msgs[built] == NULL) {
            petal_recorddict_free(content);
            rc = PETAL_ENOMEM;
            goto fail;
        }
    }
    petal_recorddict_free(tmpl);
    return 0;
fail:
    for (uint64_t i = 0; i < built; i++) {
        petal_message_free(msgs[i]);
        msgs[i] = NULL;
    }
    petal_recorddict_free(tmpl);
    return rc;
}

const petal_metricrecord_t *
petal_strategy_reply_metrics(const petal_recorddict_t *content)
{
    const petal_metricrecord_t *m;
    uint64_t n;

    if (content == NULL) {
        return NULL;
    }
    m = petal_recorddict_metrics(content, "metrics");
    if (m != NULL) {
        return m;
    }
    n = petal_recorddict_count(content);
    for (uint64_t i = 0; i < n; i++) {
        if (petal_recorddict_kind_at(content, i) == PETAL_RECORD_METRICS) {
            return petal_recorddict_metrics(content, petal_recorddict_name_at(content, i));
        }
    }
    return NULL;
}

int32_t
petal_strategy_reply_weight(const petal_strategy_t *s, const petal_recorddict_t *content,
                            double *weight, char *why, size_t why_len)
{
    const char *key = s->opts.weighted_by_key;
    const petal_metricrecord_t *m = petal_strategy_reply_metrics(content);
    petal_value_t v;

    if (m == NULL) {
        snprintf(why, why_len, "no MetricRecord in the reply (it must hold '%s')", key);
        return PETAL_EINVAL;
    }
    if (petal_metricrecord_get(m, key, &v) != 0) {
        snprintf(why, why_len, "metric '%s' is missing from the reply", key);
        return PETAL_EINVAL;
    }
    if (v.type == PETAL_VALUE_INT64 && v.as.i64 > 0) {
        *weight = (double)v.as.i64;
        return 0;
    }
    if (v.type == PETAL_VALUE_UINT64 && v.as.u64 > 0) {
        *weight = (double)v.as.u64;
        return 0;
    }
    if (v.type == PETAL_VALUE_INT64 || v.type == PETAL_VALUE_UINT64) {
        snprintf(why, why_len, "metric '%s' must be a positive integer, got %" PRId64, key,
                 v.type == PETAL_VALUE_INT64 ? v.as.i64 : (int64_t)v.as.u64);
    } else {
        snprintf(why, why_len, "metric '%s' must be a positive integer (set it with an int64)",
                 key);
    }
    return PETAL_EINVAL;
}

int32_t
petal_strategy_check_arrays(const petal_arrayrecord_t *global, const petal_arrayrecord_t *reply,
                            char *why, size_t why_len)
{
    uint64_t n;

    if (global == NULL || reply == NULL) {
        snprintf(why, why_len, "no ArrayRecord in the reply");
        return PETAL_EINVAL;
    }
    n = petal_arrayrecord_count(global);
    if (petal_arrayrecord_count(reply) != n) {
        snprintf(why, why_len, "%" PRIu64 " arrays in the reply, the model has %" PRIu64,
                 petal_arrayrecord_count(reply), n);
        return PETAL_EINVAL;
    }
    for (uint64_t i = 0; i < n; i++) {
        const char *name = petal_arrayrecord_name_at(global, i);
        const petal_array_t *g = petal_arrayrecord_at(global, i);
        const petal_array_t *r = petal_arrayrecord_get(reply, name);
        uint32_t ndim;

        if (r == NULL) {
            snprintf(why, why_len, "array '%s' is missing from the reply", name);
            return PETAL_EINVAL;
        }
        if (petal_array_dtype(r) != petal_array_dtype(g)) {
            snprintf(why, why_len, "array '%s': dtype %s, the model's is %s", name,
                     petal_dtype_name(petal_array_dtype(r)),
                     petal_dtype_name(petal_array_dtype(g)));
            return PETAL_EINVAL;
        }
        ndim = petal_array_ndim(g);
        if (petal_array_ndim(r) != ndim ||
            (ndim > 0 &&
             memcmp(petal_array_shape(r), petal_array_shape(g), ndim * sizeof(uint64_t)) != 0)) {
            snprintf(why, why_len, "array '%s': shape differs from the model's", name);
            return PETAL_EINVAL;
        }
    }
    return 0;
}

/* ---- Default evaluate aggregation: the weighted mean of the replies' metrics ----------------- */

typedef struct eval_agg {
    const petal_metrics_aggr_t *aggr;
    void *state;
} eval_agg_t;

static int32_t
eval_begin(petal_strategy_t *s, const petal_round_info_t *info, void **agg)
{
    eval_agg_t *e = calloc(1, sizeof(*e));
    int32_t rc;

    (void)info;
    if (e == NULL) {
        return PETAL_ENOMEM;
    }
    e->aggr = s->opts.evaluate_metrics_aggr != NULL ? s->opts.evaluate_metrics_aggr
                                                    : petal_metrics_aggr_weighted_mean();
    rc = e->aggr->begin(e->aggr->ctx, s->opts.weighted_by_key, &e->state);
    if (rc != 0) {
        free(e);
        return rc;
    }
    *agg = e;
    return 0;
}

static int32_t
eval_fold(petal_strategy_t *s, void *agg, uint64_t index, const petal_message_t *reply, char *why,
          size_t why_len)
{
    eval_agg_t *e = agg;
    const petal_recorddict_t *content = petal_message_content(reply);
    double w;
    int32_t rc;

    (void)index;
    if (content == NULL) {
        snprintf(why, why_len, "the reply has no content");
        return PETAL_EINVAL;
    }
    rc = petal_strategy_reply_weight(s, content, &w, why, why_len);
    if (rc != 0) {
        return rc;
    }
    rc = e->aggr->fold(e->state, petal_strategy_reply_metrics(content), w);
    if (rc != 0) {
        snprintf(why, why_len, "metrics aggregation failed: %s", petal_strerror(rc));
    }
    return rc;
}

static int32_t
eval_end(petal_strategy_t *s, void *agg, petal_arrayrecord_t *arrays, petal_metricrecord_t *metrics)
{
    eval_agg_t *e = agg;

    (void)s;
    (void)arrays;
    return e->aggr->end(e->state, metrics);
}

static void
eval_free(petal_strategy_t *s, void *agg)
{
    eval_agg_t *e = agg;

    (void)s;
    if (e != NULL) {
        e->aggr->free(e->state);
        free(e);
    }
}

static const petal_aggregate_ops_t default_evaluate = {
    .begin = eval_begin,
    .fold = eval_fold,
    .end = eval_end,
    .free = eval_free,
};

/* ---- Reply ordering ------------------------------------------------------------------------- */

enum { SLOT_PENDING = 0, SLOT_HELD = 1, SLOT_DONE = 2 };

typedef struct node_slot {
    uint64_t node;
    uint64_t index;
} node_slot_t;

struct pt_phase {
    petal_strategy_t *s;
    const petal_aggregate_ops_t *ops;
    void *agg;
    const petal_round_info_t *info;
    int deterministic;
    uint64_t n;
    uint8_t *state;         /* per send position */
    petal_message_t **held; /* per send position, while SLOT_HELD */
    node_slot_t *by_node;   /* sorted by node id */
    uint64_t next;          /* first send position not yet done */
    uint64_t answered;
    uint64_t successes;
    uint64_t failures;
    uint64_t held_now;
    uint64_t max_held;
    char *text;
    size_t text_len;
    size_t text_cap;
};

static int
cmp_node_slot(const void *a, const void *b)
{
    uint64_t x = ((const node_slot_t *)a)->node;
    uint64_t y = ((const node_slot_t *)b)->node;
    return (x > y) - (x < y);
}

int
pt_phase_alloc(petal_strategy_t *s, const petal_aggregate_ops_t *ops, void *agg,
               const petal_round_info_t *info, int deterministic, pt_phase_t **out)
{
    pt_phase_t *p;
    uint64_t n;

    if (s == NULL || ops == NULL || info == NULL || out == NULL ||
        (info->num_nodes > 0 && info->nodes == NULL)) {
        return PETAL_EINVAL;
    }
    n = info->num_nodes;
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return PETAL_ENOMEM;
    }
    p->s = s;
    p->ops = ops;
    p->agg = agg;
    p->info = info;
    p->deterministic = deterministic;
    p->n = n;
    p->state = calloc(n > 0 ? n : 1, sizeof(*p->state));
    p->held = calloc(n > 0 ? n : 1, sizeof(*p->held));
    p->by_node = calloc(n > 0 ? n : 1, sizeof(*p->by_node));
    p->text_cap = 256;
    p->text = calloc(1, p->text_cap);
    if (p->state == NULL || p->held == NULL || p->by_node == NULL || p->text == NULL) {
        pt_phase_free(p);
        return PETAL_ENOMEM;
    }
    for (uint64_t i = 0; i < n; i++) {
        p->by_node[i].node = info->nodes[i];
        p->by_node[i].index = i;
    }
    qsort(p->by_node, n, sizeof(*p->by_node), cmp_node_slot);
    *out = p;
    return 0;
}

void
pt_phase_free(pt_phase_t *p)
{
    if (p == NULL) {
        return;
    }
    for (uint64_t i = 0; p->held != NULL && i < p->n; i++) {
        if (p->held[i] != NULL) {
            pt_message_release(p->held[i]);
        }
    }
    free(p->state);
    free(p->held);
    free(p->by_node);
    free(p->text);
    free(p);
}

static void
text_append(pt_phase_t *p, const char *s)
{
    size_t len = strlen(s);

    if (p->text_len + len + 1 > p->text_cap) {
        size_t cap = (p->text_len + len + 1) * 2;
        char *t = realloc(p->text, cap);
        if (t == NULL) {
            return;
        }
        p->text = t;
        p->text_cap = cap;
    }
    memcpy(p->text + p->text_len, s, len + 1);
    p->text_len += len;
}

static void
phase_fail(pt_phase_t *p, uint64_t index, const char *reason)
{
    uint64_t node = p->info->nodes[index];
    char item[WHY_MAX + 64];

    p->state[index] = SLOT_DONE;
    p->failures++;
    if (p->failures <= FAILURES_LOGGED) {
        PT_WARN("round %" PRIu32 ": %s: node %" PRIu64 " failed: %s", p->info->round,
                p->info->phase, node, reason);
    } else {
        PT_DEBUG("round %" PRIu32 ": %s: node %" PRIu64 " failed: %s", p->info->round,
                 p->info->phase, node, reason);
    }
    if (p->failures <= FAILURES_LISTED) {
        snprintf(item, sizeof(item), "%snode %" PRIu64 ": %s", p->failures > 1 ? "; " : "", node,
                 reason);
        text_append(p, item);
    }
}

static void
phase_fold(pt_phase_t *p, uint64_t index, const petal_message_t *reply)
{
    char why[WHY_MAX] = "";
    char reason[WHY_MAX + 16];
    int32_t rc = p->ops->fold(p->s, p->agg, index, reply, why, sizeof(why));

    if (rc != 0) {
        snprintf(reason, sizeof(reason), "bad reply: %s", why[0] ? why : petal_strerror(rc));
        phase_fail(p, index, reason);
        return;
    }
    p->state[index] = SLOT_DONE;
    p->successes++;
}

/* Folds the held replies whose predecessors are all done. */
static void
phase_advance(pt_phase_t *p)
{
    while (p->next < p->n && p->state[p->next] != SLOT_PENDING) {
        uint64_t i = p->next;
        if (p->state[i] == SLOT_HELD) {
            petal_message_t *m = p->held[i];
            p->held[i] = NULL;
            p->held_now--;
            phase_fold(p, i, m);
            pt_message_release(m);
        }
        p->next++;
    }
}

static const char *
code_name(int32_t code)
{
    const char *name = pt_error_name(code);

    if (strncmp(name, "PETAL_E_", 8) == 0) {
        return name + 8;
    }
    if (strncmp(name, "PETAL_", 6) == 0) {
        return name + 6;
    }
    return name;
}

static int64_t
phase_lookup(const pt_phase_t *p, uint64_t node)
{
    uint64_t a = 0;
    uint64_t b = p->n;

    while (a < b) {
        uint64_t mid = a + (b - a) / 2;
        if (p->by_node[mid].node < node) {
            a = mid + 1;
        } else {
            b = mid;
        }
    }
    if (a < p->n && p->by_node[a].node == node) {
        return (int64_t)p->by_node[a].index;
    }
    return -1;
}

int32_t
pt_phase_reply(void *phase, const petal_message_t *reply)
{
    pt_phase_t *p = phase;
    petal_metadata_t md;
    int64_t found;
    uint64_t i;
    int32_t code;

    if (p == NULL || reply == NULL) {
        return 0;
    }
    pt_metadata_init(&md);
    if (petal_message_metadata(reply, &md) != 0) {
        PT_WARN("round %" PRIu32 ": %s: ignoring a reply without metadata", p->info->round,
                p->info->phase);
        return 0;
    }
    found = phase_lookup(p, md.src_node_id);
    if (found < 0 || p->state[found] != SLOT_PENDING) {
        PT_WARN("round %" PRIu32 ": %s: ignoring %s reply from node %" PRIu64, p->info->round,
                p->info->phase, found < 0 ? "an unexpected" : "a second", md.src_node_id);
        return p->answered == p->n;
    }
    i = (uint64_t)found;
    p->answered++;
    code = petal_message_error_code(reply);
    if (code != 0) {
        const char *reason = petal_message_error_reason(reply);
        char text[WHY_MAX];
        snprintf(text, sizeof(text), "%s%s%s", code_name(code),
                 reason != NULL && reason[0] ? ": " : "", reason != NULL ? reason : "");
        phase_fail(p, i, text);
    } else if (!p->deterministic || i == p->next) {
        phase_fold(p, i, reply);
    } else {
        /* Its turn has not come: keep a reference (the bytes stay where they were received). */
        p->held[i] = pt_message_hold((petal_message_t *)reply);
        p->state[i] = SLOT_HELD;
        p->held_now++;
        if (p->held_now > p->max_held) {
            p->max_held = p->held_now;
        }
    }
    phase_advance(p);
    return p->answered == p->n;
}

void
pt_phase_close(pt_phase_t *p)
{
    if (p == NULL) {
        return;
    }
    for (uint64_t i = 0; i < p->n; i++) {
        if (p->state[i] == SLOT_PENDING) {
            p->answered++;
            phase_fail(p, i, "no reply within the round timeout");
        }
    }
    phase_advance(p);
}

uint64_t
pt_phase_successes(const pt_phase_t *p)
{
    return p->successes;
}

uint64_t
pt_phase_failures(const pt_phase_t *p)
{
    return p->failures;
}

uint64_t
pt_phase_max_held(const pt_phase_t *p)
{
    return p->max_held;
}

const char *
pt_phase_failure_text(const pt_phase_t *p)
{
    return p->text;
}

/* ---- The history ------------------------------------------------------------------------------
 */

struct petal_result {
    uint32_t num_rounds;
    petal_recorddict_t **rounds; /* [0, num_rounds]; phase name -> MetricRecord; may be NULL */
    petal_recorddict_t *final;   /* HOLDER_ARRAYS -> the final arrays */
};

static petal_result_t *
result_alloc(uint32_t num_rounds)
{
    petal_result_t *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        return NULL;
    }
    r->rounds = calloc((size_t)num_rounds + 1, sizeof(*r->rounds));
    if (r->rounds == NULL) {
        free(r);
        return NULL;
    }
    r->num_rounds = num_rounds;
    return r;
}

void
petal_result_free(petal_result_t *r)
{
    if (r == NULL) {
        return;
    }
    for (uint32_t i = 0; i <= r->num_rounds; i++) {
        petal_recorddict_free(r->rounds[i]);
    }
    free(r->rounds);
    petal_recorddict_free(r->final);
    free(r);
}

uint32_t
petal_result_num_rounds(const petal_result_t *r)
{
    return r != NULL ? r->num_rounds : 0;
}

const petal_metricrecord_t *
petal_result_metrics(const petal_result_t *r, uint32_t round, const char *phase)
{
    if (r == NULL || phase == NULL || round > r->num_rounds || r->rounds[round] == NULL) {
        return NULL;
    }
    return petal_recorddict_metrics(r->rounds[round], phase);
}

const petal_arrayrecord_t *
petal_result_arrays(const petal_result_t *r)
{
    if (r == NULL || r->final == NULL) {
        return NULL;
    }
    return petal_recorddict_arrays(r->final, HOLDER_ARRAYS);
}

/* A new MetricRecord for (round, phase) in the history. */
static petal_metricrecord_t *
result_metrics(petal_result_t *r, uint32_t round, const char *phase)
{
    if (r->rounds[round] == NULL) {
        r->rounds[round] = petal_recorddict_alloc();
        if (r->rounds[round] == NULL) {
            return NULL;
        }
    }
    return petal_recorddict_add_metrics(r->rounds[round], phase);
}

/* ---- The loop -------------------------------------------------------------------------------- */

typedef struct run {
    petal_strategy_t *s;
    petal_grid_t *grid;
    petal_result_t *result;
    petal_recorddict_t *global; /* HOLDER_ARRAYS -> the current global arrays */
} run_t;

static int32_t fail_run(petal_strategy_t *s, int32_t rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int32_t
fail_run(petal_strategy_t *s, int32_t rc, const char *fmt, ...)
{
    char text[PETAL_STRATEGY_ERROR_MAX];
    va_list ap;

    /* Formatted aside first: the arguments may point into s->error. */
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    memcpy(s->error, text, sizeof(text));
    PT_ERROR("%s", s->error);
    return rc;
}

static double
now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void
sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Waits (polling every NODE_POLL_MS) until at least `need` nodes are connected; *ids / *n get
 * them all (malloc'd, the caller frees). */
static int32_t
wait_nodes(run_t *run, uint32_t round, const char *phase, uint64_t need, uint32_t min_nodes,
           uint64_t **ids_out, uint64_t *n_out)
{
    petal_strategy_t *s = run->s;
    double deadline = now_seconds() + s->opts.round_timeout;
    uint64_t cap = need > 64 ? need : 64;
    uint64_t *ids = malloc(cap * sizeof(*ids));
    int logged = 0;

    if (ids == NULL) {
        return fail_run(s, PETAL_ENOMEM, "round %" PRIu32 ": out of memory", round);
    }
    for (;;) {
        int64_t got = petal_grid_node_ids(run->grid, ids, cap);
        if (got < 0) {
            free(ids);
            return fail_run(s, (int32_t)got, "round %" PRIu32 ": %s: listing nodes: %s", round,
                            phase, petal_strerror((int32_t)got));
        }
        if ((uint64_t)got > cap) {
            uint64_t *more = realloc(ids, (uint64_t)got * sizeof(*ids));
            if (more == NULL) {
                free(ids);
                return fail_run(s, PETAL_ENOMEM, "round %" PRIu32 ": out of memory", round);
            }
            ids = more;
            cap = (uint64_t)got;
            continue;
        }
        if ((uint64_t)got >= need) {
            *ids_out = ids;
            *n_out = (uint64_t)got;
            return 0;
        }
        if (now_seconds() >= deadline) {
            free(ids);
            return fail_run(s, PETAL_ETIMEDOUT,
                            "round %" PRIu32 ": %s: only %" PRId64 " of the %" PRIu64
                            " nodes needed connected within %.0f s (min-available-nodes %" PRIu32
                            ", min-%s-nodes %" PRIu32 ")",
                            round, phase, got, need, s->opts.round_timeout,
                            s->opts.min_available_nodes, phase, min_nodes);
        }
        if (!logged) {
            PT_INFO("round %" PRIu32 ": %s: waiting for %" PRIu64 " nodes (%" PRId64 " connected)",
                    round, phase, need, got);
            logged = 1;
        }
        sleep_ms(NODE_POLL_MS);
    }
}

static int32_t
set_count(petal_metricrecord_t *m, const char *name, uint64_t v)
{
    petal_value_t x = petal_value_i64((int64_t)v);
    return petal_metricrecord_set(m, name, &x);
}

static const petal_arrayrecord_t *
global_arrays(const run_t *run)
{
    return petal_recorddict_arrays(run->global, HOLDER_ARRAYS);
}

static int32_t
run_phase(run_t *run, uint32_t round, uint32_t phase)
{
    petal_strategy_t *s = run->s;
    const petal_strategy_options_t *o = &s->opts;
    int train = phase == PT_PHASE_TRAIN;
    const char *pname = train ? "train" : "evaluate";
    double fraction = train ? o->fraction_train : o->fraction_evaluate;
    uint32_t min_nodes = train ? o->min_train_nodes : o->min_evaluate_nodes;
    petal_configure_fn configure = train ? s->ops->configure_train : s->ops->configure_evaluate;
    const petal_aggregate_ops_t *agg_ops;
    uint64_t need = o->min_available_nodes > min_nodes ? o->min_available_nodes : min_nodes;
    uint64_t *ids = NULL;
    uint64_t *sampled = NULL;
    uint64_t avail = 0;
    uint64_t k;
    uint64_t required;
    petal_message_t **msgs = NULL;
    petal_round_info_t info;
    pt_phase_t *ph = NULL;
    void *agg = NULL;
    int agg_live = 0;
    petal_recorddict_t *next = NULL;
    petal_arrayrecord_t *next_arrays = NULL;
    petal_metricrecord_t *metrics;
    int64_t sent;
    int32_t rc;

    if (train) {
        agg_ops = &s->ops->aggregate_train;
    } else {
        agg_ops = aggregate_ops_ok(&s->ops->aggregate_evaluate) ? &s->ops->aggregate_evaluate
                                                                : &default_evaluate;
    }
    if (need == 0) {
        need = 1;
    }
    rc = wait_nodes(run, round, pname, need, min_nodes, &ids, &avail);
    if (rc != 0) {
        return rc;
    }
    k = pt_sample_count(avail, fraction, min_nodes);
    if (k == 0) {
        free(ids);
        if (train) {
            return fail_run(s, PETAL_ECONFIG,
                            "round %" PRIu32 ": no node sampled for training (fraction-train %g, "
                            "min-train-nodes %" PRIu32 ")",
                            round, o->fraction_train, o->min_train_nodes);
        }
        PT_INFO("round %" PRIu32 ": evaluate: no node sampled, skipped", round);
        return 0;
    }
    sampled = malloc(k * sizeof(*sampled));
    msgs = calloc(k, sizeof(*msgs));
    if (sampled == NULL || msgs == NULL) {
        rc = fail_run(s, PETAL_ENOMEM, "round %" PRIu32 ": out of memory", round);
        goto out;
    }
    rc = pt_sample_nodes(ids, avail, k, o->seed, round, phase, sampled);
    if (rc != 0) {
        rc = fail_run(s, rc, "round %" PRIu32 ": sampling nodes: %s", round, petal_strerror(rc));
        goto out;
    }
    s->error[0] = '\0';
    if (configure != NULL) {
        rc = configure(s, round, global_arrays(run), sampled, k, msgs);
    } else {
        rc =
            petal_strategy_configure_default(s, pname, round, global_arrays(run), sampled, k, msgs);
    }
    if (rc != 0) {
        rc = fail_run(s, PETAL_E_SERVER_APP_RAISED_EXCEPTION,
                      "round %" PRIu32 ": configuring %s messages failed: %s", round, pname,
                      s->error[0] ? s->error : petal_strerror(rc));
        goto out;
    }

    memset(&info, 0, sizeof(info));
    info.round = round;
    info.phase = pname;
    info.arrays = global_arrays(run);
    info.nodes = sampled;
    info.num_nodes = k;
    info.grid = run->grid;
    rc = agg_ops->begin(s, &info, &agg);
    if (rc != 0) {
        for (uint64_t i = 0; i < k; i++) {
            petal_message_free(msgs[i]);
        }
        rc = fail_run(s, rc == PETAL_ENOMEM ? rc : PETAL_E_SERVER_APP_RAISED_EXCEPTION,
                      "round %" PRIu32 ": %s: %s", round, pname,
                      s->error[0] ? s->error : petal_strerror(rc));
        goto out;
    }
    agg_live = 1;
    rc = pt_phase_alloc(s, agg_ops, agg, &info, o->deterministic, &ph);
    if (rc != 0) {
        for (uint64_t i = 0; i < k; i++) {
            petal_message_free(msgs[i]);
        }
        rc = fail_run(s, rc, "round %" PRIu32 ": out of memory", round);
        goto out;
    }

    PT_DEBUG("round %" PRIu32 ": %s: sending to %" PRIu64 " of %" PRIu64 " nodes", round, pname, k,
             avail);
    sent = petal_grid_send_and_stream(run->grid, msgs, k, o->round_timeout, pt_phase_reply, ph);
    if (sent < 0) {
        for (uint64_t i = 0; i < k; i++) {
            petal_message_free(msgs[i]);
        }
        rc = fail_run(s, (int32_t)sent, "round %" PRIu32 ": sending %s messages: %s", round, pname,
                      petal_strerror((int32_t)sent));
        goto out;
    }
    pt_phase_close(ph);

    required = (uint64_t)ceil(o->min_completion_rate * (double)k - 1e-9);
    if (required < min_nodes) {
        required = min_nodes;
    }
    if (train && required == 0) {
        required = 1; /* there is nothing to average without a reply */
    }
    if (pt_phase_successes(ph) < required) {
        char rate[96] = "";
        if (o->min_completion_rate > 0.0) {
            snprintf(rate, sizeof(rate), ", min-completion-rate %g: %" PRIu64 " needed",
                     o->min_completion_rate, required);
        }
        rc = fail_run(s, PETAL_E_SERVER_APP_RAISED_EXCEPTION,
                      "round %" PRIu32 ": %" PRIu64 " of %" PRIu64
                      " %s replies arrived (min-%s-nodes %" PRIu32 "%s): %s",
                      round, pt_phase_successes(ph), k, pname, pname, min_nodes, rate,
                      pt_phase_failure_text(ph));
        goto out;
    }

    metrics = result_metrics(run->result, round, pname);
    if (metrics == NULL) {
        rc = fail_run(s, PETAL_ENOMEM, "round %" PRIu32 ": out of memory", round);
        goto out;
    }
    if (train) {
        next = petal_recorddict_alloc();
        next_arrays = next != NULL ? petal_recorddict_add_arrays(next, HOLDER_ARRAYS) : NULL;
        if (next_arrays == NULL) {
            rc = fail_run(s, PETAL_ENOMEM, "round %" PRIu32 ": out of memory", round);
            goto out;
        }
    }
    s->error[0] = '\0';
    rc = agg_ops->end(s, agg, next_arrays, metrics);
    if (rc != 0) {
        rc = fail_run(s, rc == PETAL_ENOMEM ? rc : PETAL_E_SERVER_APP_RAISED_EXCEPTION,
                      "round %" PRIu32 ": aggregating %s replies failed: %s", round, pname,
                      s->error[0] ? s->error : petal_strerror(rc));
        goto out;
    }
    rc = set_count(metrics, "num-replies", pt_phase_successes(ph));
    if (rc == 0) {
        rc = set_count(metrics, "num-failures", pt_phase_failures(ph));
    }
    if (rc != 0) {
        rc = fail_run(s, rc, "round %" PRIu32 ": recording metrics: %s", round, petal_strerror(rc));
        goto out;
    }
    PT_DEBUG("round %" PRIu32 ": %s: %" PRIu64 " replies, %" PRIu64 " failures%s", round, pname,
             pt_phase_successes(ph), pt_phase_failures(ph),
             pt_phase_max_held(ph) > 0 ? " (some held for send order)" : "");
    rc = petal_grid_record_metrics(run->grid, round, pname, metrics);
    if (rc != 0) {
        rc = fail_run(s, rc, "round %" PRIu32 ": recording %s metrics: %s", round, pname,
                      petal_strerror(rc));
        goto out;
    }
    if (train && petal_arrayrecord_count(next_arrays) > 0) {
        petal_recorddict_free(run->global);
        run->global = next;
        next = NULL;
    }
out:
    if (agg_live) {
        agg_ops->free(s, agg);
    }
    pt_phase_free(ph);
    petal_recorddict_free(next);
    free(msgs);
    free(sampled);
    free(ids);
    return rc;
}

static int32_t
run_server_evaluate(run_t *run, uint32_t round)
{
    petal_strategy_t *s = run->s;
    petal_metricrecord_t *m;
    int32_t rc;

    if (s->opts.evaluate_fn == NULL) {
        return 0;
    }
    m = result_metrics(run->result, round, "server");
    if (m == NULL) {
        return fail_run(s, PETAL_ENOMEM, "round %" PRIu32 ": out of memory", round);
    }
    rc = s->opts.evaluate_fn(s->opts.evaluate_ctx, round, global_arrays(run), m);
    if (rc != 0) {
        return fail_run(s, PETAL_E_SERVER_APP_RAISED_EXCEPTION,
                        "round %" PRIu32 ": the server-side evaluate function failed: %s", round,
                        petal_strerror(rc));
    }
    if (round == 0) {
        /* The grid's history starts at round 1; round 0 is kept in the result only. */
        PT_INFO("round 0: server: evaluated the initial arrays");
        return 0;
    }
    rc = petal_grid_record_metrics(run->grid, round, "server", m);
    if (rc != 0) {
        return fail_run(s, rc, "round %" PRIu32 ": recording server metrics: %s", round,
                        petal_strerror(rc));
    }
    return 0;
}

int32_t
petal_strategy_start(petal_strategy_t *s, petal_grid_t *grid, const petal_arrayrecord_t *initial,
                     uint32_t num_rounds, petal_result_t **out)
{
    run_t run;
    petal_arrayrecord_t *g;
    uint64_t n;
    int32_t rc;

    if (s == NULL || s->ops == NULL) {
        return PETAL_EINVAL;
    }
    s->error[0] = '\0';
    if (grid == NULL || initial == NULL) {
        return fail_run(s, PETAL_EINVAL, "petal_strategy_start: no grid or no initial arrays");
    }
    {
        char why[WHY_MAX] = "";
        rc = petal_strategy_options_check(&s->opts, why, sizeof(why));
        if (rc != 0) {
            return fail_run(s, rc, "strategy options: %s", why);
        }
    }
    memset(&run, 0, sizeof(run));
    run.s = s;
    run.grid = grid;
    run.result = result_alloc(num_rounds);
    run.global = petal_recorddict_alloc();
    g = run.global != NULL ? petal_recorddict_add_arrays(run.global, HOLDER_ARRAYS) : NULL;
    if (run.result == NULL || g == NULL) {
        rc = fail_run(s, PETAL_ENOMEM, "out of memory");
        goto out;
    }
    n = petal_arrayrecord_count(initial);
    for (uint64_t i = 0; i < n; i++) {
        rc = petal_arrayrecord_add_ref(g, petal_arrayrecord_name_at(initial, i),
                                       petal_arrayrecord_at(initial, i));
        if (rc != 0) {
            rc = fail_run(s, rc, "referencing the initial arrays: %s", petal_strerror(rc));
            goto out;
        }
    }
    PT_INFO("strategy %s: %" PRIu32 " rounds, %" PRIu64 " arrays, seed %" PRIu64 "%s",
            s->ops->name != NULL ? s->ops->name : "?", num_rounds, n, s->opts.seed,
            s->opts.deterministic ? "" : ", folding on arrival");

    rc = run_server_evaluate(&run, 0);
    for (uint32_t round = 1; rc == 0 && round <= num_rounds; round++) {
        rc = run_phase(&run, round, PT_PHASE_TRAIN);
        if (rc == 0 && s->opts.fraction_evaluate > 0.0) {
            rc = run_phase(&run, round, PT_PHASE_EVALUATE);
        }
        if (rc == 0) {
            rc = run_server_evaluate(&run, round);
        }
    }
    if (rc != 0) {
        goto out;
    }
    rc = petal_grid_set_final_arrays(grid, global_arrays(&run));
    if (rc != 0) {
        rc = fail_run(s, rc, "setting the final arrays: %s", petal_strerror(rc));
        goto out;
    }
    if (out != NULL) {
        run.result->final = run.global;
        run.global = NULL;
        *out = run.result;
        run.result = NULL;
    }
out:
    petal_recorddict_free(run.global);
    petal_result_free(run.result);
    return rc;
}
