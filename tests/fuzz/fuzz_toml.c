/* fuzz_toml.c - fuzz target: petal.toml parsing, "k=v" overrides and TOML scalars of any text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "runtime/config.h"
#include "runtime/context.h"
#include "runtime/message.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_toml: %s:%d: %s\n", __FILE__, __LINE__, #cond);                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A plugin path the manifest accepted stays inside the app directory. */
static void
check_rel_path(const char *p)
{
    CHECK(p[0] != '\0' && p[0] != '/');
    for (const char *s = p; *s != '\0';) {
        size_t len = strcspn(s, "/");
        CHECK(!(len == 2 && s[0] == '.' && s[1] == '.'));
        s += len;
        s += *s == '/';
    }
}

static void
check_manifest(const pt_manifest_t *m)
{
    const petal_configrecord_t *cfg;

    CHECK(m->name != NULL && m->name[0] != '\0');
    CHECK(m->version != NULL && m->description != NULL && m->app_dir != NULL);
    CHECK(m->client_file != NULL && m->client_path != NULL);
    check_rel_path(m->client_file);
    CHECK((m->server_file == NULL) == (m->server_path == NULL));
    if (m->server_file != NULL) {
        check_rel_path(m->server_file);
    }
    cfg = petal_recorddict_config(m->config_holder, PT_CONFIG_HOLDER_NAME);
    CHECK(cfg != NULL);
    for (uint64_t i = 0; i < petal_configrecord_count(cfg); i++) {
        const char *name = NULL;
        petal_value_t v;

        CHECK(petal_configrecord_at(cfg, i, &name, &v) == 0);
        CHECK(name != NULL && name[0] != '\0' && strlen(name) <= PT_CONFIG_MAX_KEY);
        CHECK(v.type == PETAL_VALUE_INT64 || v.type == PETAL_VALUE_DOUBLE ||
              v.type == PETAL_VALUE_BOOL || v.type == PETAL_VALUE_STRING);
    }
}

/* A run config as a manifest makes it: one key of each type the overrides treat differently. */
static petal_recorddict_t *
typed_holder(petal_configrecord_t **c)
{
    petal_recorddict_t *h = petal_recorddict_alloc();
    petal_value_t v;

    CHECK(h != NULL);
    *c = petal_recorddict_add_config(h, PT_CONFIG_HOLDER_NAME);
    CHECK(*c != NULL);
    v = petal_value_f64(0.1);
    CHECK(petal_configrecord_set(*c, "lr", &v) == 0);
    v = petal_value_i64(5);
    CHECK(petal_configrecord_set(*c, "num-server-rounds", &v) == 0);
    v = petal_value_bool(1);
    CHECK(petal_configrecord_set(*c, "flag", &v) == 0);
    v = petal_value_str("fedavg", 6);
    CHECK(petal_configrecord_set(*c, "strategy", &v) == 0);
    v = petal_value_u64(7);
    CHECK(petal_configrecord_set(*c, "seed", &v) == 0);
    return h;
}

/* Overrides are all or nothing, and keys that existed keep their type. */
static void
fuzz_overrides(const char *spec)
{
    static const char *const keys[] = {"lr", "num-server-rounds", "flag", "strategy", "seed"};
    petal_configrecord_t *c;
    petal_configrecord_t *ref_c;
    petal_recorddict_t *h = typed_holder(&c);
    petal_recorddict_t *ref = typed_holder(&ref_c);
    char err[256];
    int rc;

    err[0] = '\0';
    rc = pt_config_parse_overrides(spec, "--run-config", c, err, sizeof(err));
    if (getenv("FUZZ_TOML_VERBOSE") != NULL) {
        fprintf(stderr, "fuzz_toml: overrides: %s\n", rc == 0 ? "ok" : err);
    }
    if (rc == 0) {
        CHECK(petal_configrecord_count(c) >= petal_configrecord_count(ref_c));
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            petal_value_t a;
            petal_value_t b;

            CHECK(petal_configrecord_get(c, keys[i], &a) == 0);
            CHECK(petal_configrecord_get(ref_c, keys[i], &b) == 0);
            CHECK(a.type == b.type);
        }
    } else {
        CHECK(rc == PETAL_ECONFIG || rc == PETAL_ENOMEM);
        CHECK(err[0] != '\0');
        CHECK(pt_recorddict_equal(h, ref));
    }
    petal_recorddict_free(h);
    petal_recorddict_free(ref);
}

static void
fuzz_value(const char *text)
{
    petal_value_t v;
    char *owned = NULL;
    char err[256];
    int rc;

    err[0] = '\0';
    rc = pt_config_parse_value(text, &v, &owned, err, sizeof(err));
    if (getenv("FUZZ_TOML_VERBOSE") != NULL) {
        fprintf(stderr, "fuzz_toml: value: %s\n", rc == 0 ? "ok" : err);
    }
    if (rc == 0) {
        CHECK(v.type == PETAL_VALUE_INT64 || v.type == PETAL_VALUE_DOUBLE ||
              v.type == PETAL_VALUE_BOOL || v.type == PETAL_VALUE_STRING);
        if (v.type == PETAL_VALUE_STRING) {
            CHECK(owned != NULL && v.as.str != NULL);
            CHECK(v.as.str[v.len] == '\0');
        } else {
            CHECK(owned == NULL);
        }
        free(owned);
    } else {
        CHECK(rc == PETAL_ECONFIG || rc == PETAL_ENOMEM);
        CHECK(err[0] != '\0');
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size > 0 ? size : 1); /* exact size, not terminated: ASan sees over-reads */
    char *str = malloc(size + 1);
    pt_manifest_t *m = NULL;
    char err[512];
    int rc;

    CHECK(copy != NULL && str != NULL);
    if (size > 0) {
        memcpy(copy, data, size);
        memcpy(str, data, size);
    }
    str[size] = '\0';

    err[0] = '\0';
    rc = pt_manifest_parse(copy, size, "fuzz/petal.toml", "/", &m, err, sizeof(err));
    if (getenv("FUZZ_TOML_VERBOSE") != NULL) {
        fprintf(stderr, "fuzz_toml: manifest: %s\n", rc == 0 ? "ok" : err);
    }
    if (rc == 0) {
        CHECK(m != NULL);
        check_manifest(m);
        pt_manifest_free(m);
    } else {
        CHECK(rc == PETAL_ECONFIG || rc == PETAL_ENOMEM);
        CHECK(m == NULL);
        CHECK(strncmp(err, "fuzz/petal.toml", 15) == 0);
    }

    /* the same bytes, up to the first NUL, as --run-config and as one scalar */
    fuzz_overrides(str);
    fuzz_value(str);
    free(copy);
    free(str);
    return 0;
}
