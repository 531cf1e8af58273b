/* strategy_params.c - the strategy library's registry: names, parameters, checks, constructors. */
#include <petal/strategy.h>

#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "actors/serverapp/aggregate.h"
#include "runtime/log.h"

/* ---- The registry --------------------------------------------------------------------------- */

enum { KEY_NUMBER, KEY_COUNT, KEY_STRING };

typedef struct key_spec {
    const char *key; /* run-config key (Flower's parameter name, kebab-case) */
    int kind;
    size_t offset; /* in petal_strategy_params_t */
} key_spec_t;

#define KEY(k, kind, field)                                                                        \
    {                                                                                              \
        k, kind, offsetof(petal_strategy_params_t, field)                                          \
    }
#define KEYS_END                                                                                   \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

static const key_spec_t keys_none[] = {KEYS_END};
static const key_spec_t keys_fedprox[] = {KEY("proximal-mu", KEY_NUMBER, proximal_mu), KEYS_END};
static const key_spec_t keys_fedadam[] = {
    KEY("eta", KEY_NUMBER, eta),       KEY("eta-l", KEY_NUMBER, eta_l),
    KEY("beta-1", KEY_NUMBER, beta_1), KEY("beta-2", KEY_NUMBER, beta_2),
    KEY("tau", KEY_NUMBER, tau),       KEYS_END,
};
static const key_spec_t keys_fedadagrad[] = {
    KEY("eta", KEY_NUMBER, eta),
    KEY("eta-l", KEY_NUMBER, eta_l),
    KEY("tau", KEY_NUMBER, tau),
    KEYS_END,
};
static const key_spec_t keys_fedavgm[] = {
    KEY("server-learning-rate", KEY_NUMBER, server_learning_rate),
    KEY("server-momentum", KEY_NUMBER, server_momentum),
    KEYS_END,
};
static const key_spec_t keys_trimmed[] = {KEY("beta", KEY_NUMBER, beta), KEYS_END};
static const key_spec_t keys_krum[] = {
    KEY("num-malicious-nodes", KEY_COUNT, num_malicious_nodes),
    KEYS_END,
};
static const key_spec_t keys_multikrum[] = {
    KEY("num-malicious-nodes", KEY_COUNT, num_malicious_nodes),
    KEY("num-nodes-to-select", KEY_COUNT, num_nodes_to_select),
    KEYS_END,
};
static const key_spec_t keys_qfedavg[] = {
    KEY("q", KEY_NUMBER, q),
    KEY("client-learning-rate", KEY_NUMBER, client_learning_rate),
    KEY("train-loss-key", KEY_STRING, train_loss_key),
    KEYS_END,
};

typedef struct entry {
    const char *name;
    pt_strategy_ctor ctor;
    const key_spec_t *keys;
} entry_t;

static const entry_t registry[] = {
    {"fedavg", pt_strategy_fedavg_ctor, keys_none},
    {"fedprox", pt_strategy_fedprox_ctor, keys_fedprox},
    {"fedadam", pt_strategy_fedopt_ctor, keys_fedadam},
    {"fedyogi", pt_strategy_fedopt_ctor, keys_fedadam},
    {"fedadagrad", pt_strategy_fedopt_ctor, keys_fedadagrad},
    {"fedavgm", pt_strategy_fedavgm_ctor, keys_fedavgm},
    {"fedmedian", pt_strategy_robust_ctor, keys_none},
    {"fedtrimmedavg", pt_strategy_robust_ctor, keys_trimmed},
    {"krum", pt_strategy_krum_ctor, keys_krum},
    {"multikrum", pt_strategy_krum_ctor, keys_multikrum},
    {"bulyan", pt_strategy_krum_ctor, keys_krum},
    {"qfedavg", pt_strategy_qfedavg_ctor, keys_qfedavg},
};

#define NAMES                                                                                      \
    "fedavg, fedprox, fedadam, fedyogi, fedadagrad, fedavgm, fedmedian, fedtrimmedavg, krum, "     \
    "multikrum, bulyan, qfedavg"

const char *
petal_strategy_names(void)
{
    return NAMES;
}

static const entry_t *
find(const char *name)
{
    if (name == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(registry) / sizeof(registry[0]); i++) {
        if (strcmp(registry[i].name, name) == 0) {
            return &registry[i];
        }
    }
    return NULL;
}

static int32_t
unknown(const char *name, char *why, size_t why_len)
{
    if (why != NULL && why_len > 0) {
        snprintf(why, why_len, "unknown strategy \"%s\"; supported: %s",
                 name != NULL ? name : "(null)", NAMES);
    }
    return PETAL_ENOENT;
}

/* ---- Parameters ----------------------------------------------------------------------------- */

int32_t
petal_strategy_params_init(petal_strategy_params_t *p, const char *name)
{
    if (p == NULL) {
        return PETAL_EINVAL;
    }
    if (find(name) == NULL) {
        return PETAL_ENOENT;
    }
    memset(p, 0, sizeof(*p));
    p->proximal_mu = 0.0;
    p->eta = 0.1;
    p->eta_l = 0.1;
    p->beta_1 = 0.9;
    p->beta_2 = 0.99;
    p->tau = 1e-3;
    if (strcmp(name, "fedyogi") == 0) {
        p->eta = 0.01;
        p->eta_l = 0.0316;
    } else if (strcmp(name, "fedadagrad") == 0) {
        p->beta_1 = 0.0; /* fixed: Adagrad keeps no first moment ... */
        p->beta_2 = 0.0; /* ... and sums squares instead of averaging them */
    }
    p->server_learning_rate = 1.0;
    p->server_momentum = 0.0;
    p->beta = 0.2;
    p->num_malicious_nodes = 0;
    p->num_nodes_to_select = 1;
    p->q = 0.1;
    p->client_learning_rate = 0.0;
    p->train_loss_key = "train-loss";
    return 0;
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

static int32_t
read_key(petal_strategy_params_t *p, const key_spec_t *k, const petal_value_t *v, char *why,
         size_t why_len)
{
    char *field = (char *)p + k->offset;
    double x;
    int64_t i;

    switch (k->kind) {
    case KEY_NUMBER:
        if (petal_value_as_f64(v, &x) != 0) {
            snprintf(why, why_len, "run config key \"%s\" must be a number, got %s", k->key,
                     type_name(v->type));
            return PETAL_ECONFIG;
        }
        memcpy(field, &x, sizeof(x));
        return 0;
    case KEY_COUNT:
        if (petal_value_as_i64(v, &i) != 0 || i < 0 || i > (int64_t)UINT32_MAX) {
            if (petal_value_as_f64(v, &x) == 0) {
                snprintf(why, why_len, "run config key \"%s\" must be a whole number >= 0, got %g",
                         k->key, x);
            } else {
                snprintf(why, why_len, "run config key \"%s\" must be a whole number >= 0, got %s",
                         k->key, type_name(v->type));
            }
            return PETAL_ECONFIG;
        }
        {
            uint32_t u = (uint32_t)i;
            memcpy(field, &u, sizeof(u));
        }
        return 0;
    default:
        if (v->type != PETAL_VALUE_STRING || v->as.str == NULL) {
            snprintf(why, why_len, "run config key \"%s\" must be a string, got %s", k->key,
                     type_name(v->type));
            return PETAL_ECONFIG;
        }
        memcpy(field, &v->as.str, sizeof(v->as.str));
        return 0;
    }
}

int32_t
petal_strategy_params_read(petal_strategy_params_t *p, const char *name,
                           const petal_configrecord_t *config, char *why, size_t why_len)
{
    const entry_t *e = find(name);
    petal_value_t v;

    if (p == NULL) {
        return PETAL_EINVAL;
    }
    if (e == NULL) {
        return unknown(name, why, why_len);
    }
    petal_strategy_params_init(p, name);
    if (config == NULL) {
        return 0;
    }
    for (const key_spec_t *k = e->keys; k->key != NULL; k++) {
        if (petal_configrecord_get(config, k->key, &v) == 0) {
            int32_t rc = read_key(p, k, &v, why, why_len);
            if (rc != 0) {
                return rc;
            }
        }
    }
    /* QFedAvg needs the clients' learning rate; the run config usually has it as "lr". */
    if (strcmp(name, "qfedavg") == 0 &&
        petal_configrecord_get(config, "client-learning-rate", &v) != 0 &&
        petal_configrecord_get(config, "lr", &v) == 0) {
        const key_spec_t lr = KEY("lr", KEY_NUMBER, client_learning_rate);
        return read_key(p, &lr, &v, why, why_len);
    }
    return 0;
}

/* ---- Checks --------------------------------------------------------------------------------- */

static int
finite_ge(double x, double lo)
{
    return isfinite(x) && x >= lo;
}

static int
finite_gt(double x, double lo)
{
    return isfinite(x) && x > lo;
}

static int
unit_open(double x) /* [0, 1) */
{
    return x >= 0.0 && x < 1.0;
}

#define BAD(...)                                                                                   \
    do {                                                                                           \
        if (why != NULL && why_len > 0) {                                                          \
            snprintf(why, why_len, __VA_ARGS__);                                                   \
        }                                                                                          \
        return PETAL_EINVAL;                                                                       \
    } while (0)

static int32_t
check_params(const char *n, const petal_strategy_options_t *o, const petal_strategy_params_t *p,
             char *why, size_t why_len)
{
    uint32_t f = p->num_malicious_nodes;

    if (strcmp(n, "fedprox") == 0) {
        if (!finite_ge(p->proximal_mu, 0.0)) {
            BAD("fedprox: proximal-mu must be a number >= 0, got %g", p->proximal_mu);
        }
    } else if (strcmp(n, "fedadam") == 0 || strcmp(n, "fedyogi") == 0 ||
               strcmp(n, "fedadagrad") == 0) {
        int adagrad = strcmp(n, "fedadagrad") == 0;
        if (!finite_gt(p->eta, 0.0)) {
            BAD("%s: eta (the server learning rate) must be > 0, got %g", n, p->eta);
        }
        if (!finite_gt(p->eta_l, 0.0)) {
            BAD("%s: eta-l (the clients' learning rate) must be > 0, got %g", n, p->eta_l);
        }
        if (!adagrad && !unit_open(p->beta_1)) {
            BAD("%s: beta-1 must be within [0, 1), got %g", n, p->beta_1);
        }
        if (!adagrad && !unit_open(p->beta_2)) {
            BAD("%s: beta-2 must be within [0, 1), got %g", n, p->beta_2);
        }
        if (!finite_gt(p->tau, 0.0)) {
            BAD("%s: tau must be > 0, got %g", n, p->tau);
        }
    } else if (strcmp(n, "fedavgm") == 0) {
        if (!finite_gt(p->server_learning_rate, 0.0)) {
            BAD("fedavgm: server-learning-rate must be > 0, got %g", p->server_learning_rate);
        }
        if (!unit_open(p->server_momentum)) {
            BAD("fedavgm: server-momentum must be within [0, 1), got %g", p->server_momentum);
        }
    } else if (strcmp(n, "fedtrimmedavg") == 0) {
        if (!(p->beta >= 0.0 && p->beta < 0.5)) {
            BAD("fedtrimmedavg: beta (the fraction cut at each end) must be within [0, 0.5), "
                "got %g",
                p->beta);
        }
    } else if (strcmp(n, "krum") == 0 || strcmp(n, "multikrum") == 0) {
        uint64_t need = 2 * (uint64_t)f + 3;
        if (f > 0 && o->min_train_nodes < need) {
            BAD("%s: num-malicious-nodes %" PRIu32 " needs at least 2*%" PRIu32 "+3 = %" PRIu64
                " sampled nodes per round, min-train-nodes is %" PRIu32,
                n, f, f, need, o->min_train_nodes);
        }
        if (strcmp(n, "multikrum") == 0) {
            uint64_t m = p->num_nodes_to_select;
            if (m == 0) {
                BAD("multikrum: num-nodes-to-select must be >= 1");
            }
            if ((uint64_t)o->min_train_nodes < m + f) {
                BAD("multikrum: num-nodes-to-select %" PRIu64 " with num-malicious-nodes %" PRIu32
                    " needs at least %" PRIu64 " sampled nodes per round (selected + malicious), "
                    "min-train-nodes is %" PRIu32,
                    m, f, m + f, o->min_train_nodes);
            }
        }
    } else if (strcmp(n, "bulyan") == 0) {
        uint64_t need = 4 * (uint64_t)f + 3;
        if (f > 0 && o->min_train_nodes < need) {
            BAD("bulyan: num-malicious-nodes %" PRIu32 " needs at least 4*%" PRIu32 "+3 = %" PRIu64
                " sampled nodes per round, min-train-nodes is %" PRIu32,
                f, f, need, o->min_train_nodes);
        }
    } else if (strcmp(n, "qfedavg") == 0) {
        if (!finite_gt(p->client_learning_rate, 0.0)) {
            BAD("qfedavg: client-learning-rate (the ClientApps' learning rate, L = 1 / "
                "client-learning-rate) must be set to a number > 0%s",
                p->client_learning_rate == 0.0 ? "; it is not set (nor is \"lr\")" : "");
        }
        if (!finite_ge(p->q, 0.0)) {
            BAD("qfedavg: q must be a number >= 0, got %g", p->q);
        }
        if (p->train_loss_key == NULL || p->train_loss_key[0] == '\0') {
            BAD("qfedavg: train-loss-key must name the reply metric with the training loss");
        }
    }
    return 0;
}

int32_t
petal_strategy_check(const char *name, const petal_strategy_options_t *opts,
                     const petal_strategy_params_t *p, char *why, size_t why_len)
{
    petal_strategy_options_t defaults;
    petal_strategy_params_t pdef;
    char reason[512] = "";

    if (find(name) == NULL) {
        return unknown(name, why, why_len);
    }
    if (opts == NULL) {
        petal_strategy_options_init(&defaults);
        opts = &defaults;
    }
    if (p == NULL) {
        petal_strategy_params_init(&pdef, name);
        p = &pdef;
    }
    if (petal_strategy_options_check(opts, reason, sizeof(reason)) != 0) {
        BAD("%s: %s", name, reason);
    }
    return check_params(name, opts, p, why, why_len);
}

int32_t
petal_strategy_alloc(const char *name, const petal_strategy_options_t *opts,
                     const petal_strategy_params_t *p, char *why, size_t why_len,
                     petal_strategy_t **out)
{
    const entry_t *e = find(name);
    petal_strategy_params_t pdef;
    petal_strategy_t *s = NULL;
    int32_t rc;

    if (out == NULL) {
        return PETAL_EINVAL;
    }
    if (e == NULL) {
        return unknown(name, why, why_len);
    }
    if (p == NULL) {
        petal_strategy_params_init(&pdef, name);
        p = &pdef;
    }
    rc = petal_strategy_check(name, opts, p, why, why_len);
    if (rc != 0) {
        return rc;
    }
    rc = e->ctor(name, opts, p, &s);
    if (rc != 0) {
        if (why != NULL && why_len > 0) {
            snprintf(why, why_len, "%s: cannot create the strategy: %s", name, petal_strerror(rc));
        }
        return rc;
    }
    *out = s;
    return 0;
}

int32_t
petal_strategy_alloc_by_name(const char *name, const petal_strategy_options_t *opts,
                             petal_strategy_t **out)
{
    char why[512] = "";
    int32_t rc = petal_strategy_alloc(name, opts, NULL, why, sizeof(why), out);

    if (rc != 0 && rc != PETAL_ENOENT) {
        PT_ERROR("%s", why[0] ? why : petal_strerror(rc));
    }
    return rc;
}
