/* default_server.c - the built-in ServerApp: run config -> strategy options -> strategy loop. */
#include "actors/serverapp/default_server.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <petal/strategy.h>

#include "runtime/error.h"
#include "runtime/log.h"

#define REASON_MAX PETAL_STRATEGY_ERROR_MAX
#define INIT_ARRAYS_TYPE "query.init-arrays"
#define NODE_POLL_MS 50

typedef struct server_config {
    char strategy[64];
    uint32_t num_rounds;
    petal_strategy_options_t opts;
    petal_strategy_params_t params; /* the strategy's own keys (borrows from the run config) */
} server_config_t;

static int32_t fail(petal_context_t *ctx, int32_t rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int32_t
fail(petal_context_t *ctx, int32_t rc, const char *fmt, ...)
{
    char reason[REASON_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    PT_ERROR("default server: %s", reason);
    if (ctx != NULL) {
        petal_context_set_error(ctx, "%s", reason);
    }
    return rc;
}

static const char *
type_name(uint32_t type)
{
    switch (type) {
    case PETAL_VALUE_INT64:
    case PETAL_VALUE_UINT64:
        return "an integer";
    case PETAL_VALUE_DOUBLE:
        return "a number";
    case PETAL_VALUE_BOOL:
        return "a boolean";
    case PETAL_VALUE_STRING:
        return "a string";
    case PETAL_VALUE_BYTES:
        return "bytes";
    default:
        return "a list";
    }
}

/* Each getter leaves *out alone when the key is absent; on a bad value it writes why. */
static int32_t
get_number(const petal_configrecord_t *rc, const char *key, double lo, double hi, int lo_open,
           double *out, char *why, size_t why_len)
{
    petal_value_t v;
    double x;

    if (rc == NULL || petal_configrecord_get(rc, key, &v) != 0) {
        return 0;
    }
    if (petal_value_as_f64(&v, &x) != 0) {
        snprintf(why, why_len, "run config key \"%s\" must be a number, got %s", key,
                 type_name(v.type));
        return PETAL_ECONFIG;
    }
    if (!(lo_open ? x > lo : x >= lo) || !(x <= hi)) {
        snprintf(why, why_len, "run config key \"%s\" must be within %s%g, %g], got %g", key,
                 lo_open ? "(" : "[", lo, hi, x);
        return PETAL_ECONFIG;
    }
    *out = x;
    return 0;
}

static int32_t
get_int(const petal_configrecord_t *rc, const char *key, int64_t lo, int64_t hi, int64_t *out,
        char *why, size_t why_len)
{
    petal_value_t v;
    int64_t x;

    if (rc == NULL || petal_configrecord_get(rc, key, &v) != 0) {
        return 0;
    }
    if (petal_value_as_i64(&v, &x) != 0) {
        snprintf(why, why_len, "run config key \"%s\" must be an integer, got %s", key,
                 v.type == PETAL_VALUE_DOUBLE ? "a fractional number" : type_name(v.type));
        return PETAL_ECONFIG;
    }
    if (x < lo || x > hi) {
        snprintf(why, why_len,
                 "run config key \"%s\" must be an integer within [%" PRId64 ", %" PRId64
                 "], got %" PRId64,
                 key, lo, hi, x);
        return PETAL_ECONFIG;
    }
    *out = x;
    return 0;
}

static int32_t
get_u32(const petal_configrecord_t *rc, const char *key, int64_t lo, uint32_t *out, char *why,
        size_t why_len)
{
    int64_t x = *out;
    int32_t r = get_int(rc, key, lo, UINT32_MAX, &x, why, why_len);

    if (r == 0) {
        *out = (uint32_t)x;
    }
    return r;
}

static int32_t
get_bool(const petal_configrecord_t *rc, const char *key, int32_t *out, char *why, size_t why_len)
{
    petal_value_t v;

    if (rc == NULL || petal_configrecord_get(rc, key, &v) != 0) {
        return 0;
    }
    if (v.type == PETAL_VALUE_BOOL) {
        *out = v.as.boolean ? 1 : 0;
        return 0;
    }
    if (v.type == PETAL_VALUE_INT64 && (v.as.i64 == 0 || v.as.i64 == 1)) {
        *out = (int32_t)v.as.i64;
        return 0;
    }
    snprintf(why, why_len, "run config key \"%s\" must be true or false, got %s", key,
             type_name(v.type));
    return PETAL_ECONFIG;
}

/* Reads and checks every key the default server knows. */
static int32_t
read_config(const petal_configrecord_t *rc, server_config_t *c, char *why, size_t why_len)
{
    petal_strategy_options_t *o = &c->opts;
    petal_value_t v;
    int64_t seed = 0;
    int32_t r = 0;

    memset(c, 0, sizeof(*c));
    petal_strategy_options_init(o);
    snprintf(c->strategy, sizeof(c->strategy), "fedavg");
    c->num_rounds = 3;

    if (rc != NULL && petal_configrecord_get(rc, "strategy", &v) == 0) {
        petal_strategy_params_t probe;
        if (v.type != PETAL_VALUE_STRING) {
            snprintf(why, why_len,
                     "run config key \"strategy\" must be a string naming one of: %s; got %s",
                     petal_strategy_names(), type_name(v.type));
            return PETAL_ECONFIG;
        }
        if (v.len >= sizeof(c->strategy) ||
            petal_strategy_params_init(&probe, v.as.str) == PETAL_ENOENT) {
            snprintf(why, why_len,
                     "run config key \"strategy\": unknown strategy \"%s\"; supported: %s",
                     v.as.str, petal_strategy_names());
            return PETAL_ECONFIG;
        }
        snprintf(c->strategy, sizeof(c->strategy), "%s", v.as.str);
    }
    if (r == 0) {
        r = get_u32(rc, "num-server-rounds", 1, &c->num_rounds, why, why_len);
    }
    if (r == 0) {
        r = get_number(rc, "fraction-train", 0.0, 1.0, 1, &o->fraction_train, why, why_len);
    }
    if (r == 0) {
        r = get_number(rc, "fraction-evaluate", 0.0, 1.0, 0, &o->fraction_evaluate, why, why_len);
    }
    if (r == 0) {
        r = get_u32(rc, "min-train-nodes", 1, &o->min_train_nodes, why, why_len);
    }
    if (r == 0) {
        r = get_u32(rc, "min-evaluate-nodes", 0, &o->min_evaluate_nodes, why, why_len);
    }
    if (r == 0) {
        r = get_u32(rc, "min-available-nodes", 0, &o->min_available_nodes, why, why_len);
    }
    if (r == 0) {
        r = get_number(rc, "round-timeout", 0.0, 1e9, 1, &o->round_timeout, why, why_len);
    }
    if (r == 0) {
        r = get_number(rc, "min-completion-rate", 0.0, 1.0, 0, &o->min_completion_rate, why,
                       why_len);
    }
    if (r == 0) {
        r = get_int(rc, "seed", 0, INT64_MAX, &seed, why, why_len);
        o->seed = (uint64_t)seed;
    }
    if (r == 0) {
        r = get_bool(rc, "deterministic", &o->deterministic, why, why_len);
    }
    if (r != 0) {
        return r;
    }
    /* Every run-config key travels to the ClientApps in each round's "config" record. */
    o->train_config = rc;
    o->evaluate_config = rc;
    if (petal_strategy_options_check(o, why, why_len) != 0) {
        return PETAL_ECONFIG;
    }
    /* The strategy's own keys ("proximal-mu", "num-malicious-nodes", ...), then its checks,
     * which see the common options too ("krum: num-malicious-nodes 2 needs at least ..."). */
    r = petal_strategy_params_read(&c->params, c->strategy, rc, why, why_len);
    if (r == 0) {
        r = petal_strategy_check(c->strategy, o, &c->params, why, why_len);
    }
    return r != 0 ? PETAL_ECONFIG : 0;
}

static void
sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static double
now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The lowest node id once at least `need` nodes are connected. */
static int32_t
lowest_node(petal_grid_t *grid, petal_context_t *ctx, uint64_t need, double timeout, uint64_t *node)
{
    double deadline = now_seconds() + timeout;
    uint64_t cap = need > 64 ? need : 64;
    uint64_t *ids = malloc(cap * sizeof(*ids));
    int32_t rc;

    if (ids == NULL) {
        return fail(ctx, PETAL_ENOMEM, "out of memory");
    }
    for (;;) {
        int64_t got = petal_grid_node_ids(grid, ids, cap);
        if (got < 0) {
            rc = fail(ctx, (int32_t)got, "listing nodes: %s", petal_strerror((int32_t)got));
            break;
        }
        if ((uint64_t)got > cap) {
            uint64_t *more = realloc(ids, (uint64_t)got * sizeof(*ids));
            if (more == NULL) {
                rc = fail(ctx, PETAL_ENOMEM, "out of memory");
                break;
            }
            ids = more;
            cap = (uint64_t)got;
            continue;
        }
        if (got > 0 && (uint64_t)got >= need) {
            uint64_t low = ids[0];
            for (int64_t i = 1; i < got; i++) {
                if (ids[i] < low) {
                    low = ids[i];
                }
            }
            *node = low;
            rc = 0;
            break;
        }
        if (now_seconds() >= deadline) {
            rc = fail(ctx, PETAL_ETIMEDOUT,
                      "only %" PRId64 " of %" PRIu64 " nodes connected within %.0f s "
                      "(min-available-nodes); no initial arrays",
                      got, need, timeout);
            break;
        }
        sleep_ms(NODE_POLL_MS);
    }
    free(ids);
    return rc;
}

typedef struct init_query {
    uint64_t node;
    petal_recorddict_t *holder; /* "arrays" -> references to the reply's arrays */
    int replied;
    int32_t code;
    char reason[REASON_MAX];
} init_query_t;

static int32_t
init_reply(void *arg, const petal_message_t *reply)
{
    init_query_t *q = arg;
    const petal_recorddict_t *content;
    const petal_arrayrecord_t *arrays;
    petal_arrayrecord_t *dst;
    uint64_t n;

    if (q->replied) {
        return 1;
    }
    q->replied = 1;
    q->code = petal_message_error_code(reply);
    if (q->code != 0) {
        const char *r = petal_message_error_reason(reply);
        snprintf(q->reason, sizeof(q->reason), "%s%s%s", pt_error_name(q->code),
                 r != NULL && r[0] ? ": " : "", r != NULL ? r : "");
        return 1;
    }
    content = petal_message_content(reply);
    arrays = content != NULL ? petal_recorddict_arrays(content, "arrays") : NULL;
    if (arrays == NULL || petal_arrayrecord_count(arrays) == 0) {
        q->code = PETAL_ENOENT;
        snprintf(q->reason, sizeof(q->reason), "the reply has no%s ArrayRecord \"arrays\"",
                 arrays != NULL ? " non-empty" : "");
        return 1;
    }
    /* Keep references to the received arrays (no copy); the reply itself is freed after. */
    q->holder = petal_recorddict_alloc();
    dst = q->holder != NULL ? petal_recorddict_add_arrays(q->holder, "arrays") : NULL;
    if (dst == NULL) {
        q->code = PETAL_ENOMEM;
        snprintf(q->reason, sizeof(q->reason), "out of memory");
        return 1;
    }
    n = petal_arrayrecord_count(arrays);
    for (uint64_t i = 0; i < n; i++) {
        int32_t rc = petal_arrayrecord_add_ref(dst, petal_arrayrecord_name_at(arrays, i),
                                               petal_arrayrecord_at(arrays, i));
        if (rc != 0) {
            q->code = rc;
            snprintf(q->reason, sizeof(q->reason), "referencing the arrays: %s",
                     petal_strerror(rc));
            return 1;
        }
    }
    return 1;
}

/* Asks the lowest node for the model's initial arrays. *holder gets "arrays". */
static int32_t
fetch_initial_arrays(petal_grid_t *grid, petal_context_t *ctx, const server_config_t *c,
                     petal_recorddict_t **holder)
{
    init_query_t q;
    petal_recorddict_t *content;
    petal_message_t *m;
    uint64_t need = c->opts.min_available_nodes > 0 ? c->opts.min_available_nodes : 1;
    int64_t got;
    int32_t rc;

    memset(&q, 0, sizeof(q));
    rc = lowest_node(grid, ctx, need, c->opts.round_timeout, &q.node);
    if (rc != 0) {
        return rc;
    }
    content = petal_recorddict_alloc();
    if (content == NULL) {
        return fail(ctx, PETAL_ENOMEM, "out of memory");
    }
    m = petal_message_alloc(content, INIT_ARRAYS_TYPE, q.node, "0", c->opts.round_timeout);
    if (m == NULL) {
        petal_recorddict_free(content);
        return fail(ctx, PETAL_ENOMEM, "out of memory");
    }
    PT_INFO("default server: asking node %" PRIu64 " for the initial arrays (%s)", q.node,
            INIT_ARRAYS_TYPE);
    got = petal_grid_send_and_stream(grid, &m, 1, c->opts.round_timeout, init_reply, &q);
    if (got < 0) {
        petal_message_free(m);
        petal_recorddict_free(q.holder);
        return fail(ctx, (int32_t)got, "sending %s to node %" PRIu64 ": %s", INIT_ARRAYS_TYPE,
                    q.node, petal_strerror((int32_t)got));
    }
    if (!q.replied) {
        q.code = PETAL_ETIMEDOUT;
        snprintf(q.reason, sizeof(q.reason), "no reply within %.0f s", c->opts.round_timeout);
    }
    if (q.code == PETAL_E_LOAD_CLIENT_APP_EXCEPTION || q.code == PETAL_E_NODE_UNAVAILABLE ||
        q.code == PETAL_E_INVALID_BUNDLE || q.code == PETAL_ETIMEDOUT) {
        petal_recorddict_free(q.holder);
        return fail(ctx, PETAL_E_SERVER_APP_RAISED_EXCEPTION,
                    "node %" PRIu64 " did not provide the initial arrays (asked with %s): %s",
                    q.node, INIT_ARRAYS_TYPE, q.reason);
    }
    if (q.code != 0) {
        petal_recorddict_free(q.holder);
        return fail(ctx, PETAL_E_SERVER_APP_RAISED_EXCEPTION,
                    "node %" PRIu64 " did not provide the initial arrays: %s. The default server "
                    "sends a \"%s\" message to the lowest node id; the ClientApp's query handler "
                    "must answer action \"init-arrays\" with an ArrayRecord \"arrays\"",
                    q.node, q.reason, INIT_ARRAYS_TYPE);
    }
    *holder = q.holder;
    return 0;
}

int32_t
pt_default_server_main(petal_grid_t *grid, petal_context_t *ctx)
{
    char why[REASON_MAX] = "";
    server_config_t c;
    petal_recorddict_t *initial = NULL;
    petal_strategy_t *s = NULL;
    petal_result_t *result = NULL;
    int32_t rc;

    if (grid == NULL) {
        return fail(ctx, PETAL_EINVAL, "no grid");
    }
    rc = read_config(ctx != NULL ? petal_context_run_config(ctx) : NULL, &c, why, sizeof(why));
    if (rc != 0) {
        return fail(ctx, rc, "%s", why);
    }
    PT_INFO("default server: strategy %s, %" PRIu32 " rounds, fraction-train %g, "
            "fraction-evaluate %g, min-train-nodes %" PRIu32 ", min-evaluate-nodes %" PRIu32
            ", min-available-nodes %" PRIu32 ", round-timeout %g s, seed %" PRIu64,
            c.strategy, c.num_rounds, c.opts.fraction_train, c.opts.fraction_evaluate,
            c.opts.min_train_nodes, c.opts.min_evaluate_nodes, c.opts.min_available_nodes,
            c.opts.round_timeout, c.opts.seed);
    rc = petal_strategy_alloc(c.strategy, &c.opts, &c.params, why, sizeof(why), &s);
    if (rc != 0) {
        return fail(ctx, rc == PETAL_ENOMEM ? rc : PETAL_ECONFIG, "%s", why);
    }
    rc = fetch_initial_arrays(grid, ctx, &c, &initial);
    if (rc != 0) {
        petal_strategy_free(s);
        return rc;
    }
    rc = petal_strategy_start(s, grid, petal_recorddict_arrays(initial, "arrays"), c.num_rounds,
                              &result);
    if (rc != 0) {
        /* petal_strategy_start logged it already; the context keeps it as the run's reason. */
        if (ctx != NULL) {
            petal_context_set_error(ctx, "%s", petal_strategy_error(s));
        }
    } else {
        PT_INFO("default server: %" PRIu32 " rounds done", c.num_rounds);
    }
    petal_result_free(result);
    petal_strategy_free(s);
    petal_recorddict_free(initial);
    return rc;
}

int32_t
petal_run_default_server(petal_grid_t *grid, petal_context_t *ctx)
{
    return pt_default_server_main(grid, ctx);
}
