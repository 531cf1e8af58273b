/* test_config.c - petal.toml manifests (TOML subset via libinih) and "k=v" overrides. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <petal/petal.h>

#include "runtime/config.h"
#include "runtime/context.h"

#define HEAD "[app]\nname = \"q\"\nclient = \"client.so\"\n[app.config]\n" /* 4 lines */

static int
parse(const char *text, pt_manifest_t **m, char *err, size_t cap)
{
    return pt_manifest_parse(text, strlen(text), "petal.toml", "/apps/q", m, err, cap);
}

static pt_manifest_t *
parse_ok(const char *text)
{
    char err[512];
    pt_manifest_t *m = NULL;
    int rc = parse(text, &m, err, sizeof(err));
    ck_assert_msg(rc == 0, "parse failed (%d): %s", rc, err);
    ck_assert_ptr_nonnull(m);
    return m;
}

static void
assert_parse_error(const char *text, const char *expected)
{
    char err[512];
    pt_manifest_t *m = (pt_manifest_t *)&err; /* must stay untouched */
    int rc = parse(text, &m, err, sizeof(err));
    ck_assert_msg(rc == PETAL_ECONFIG, "rc %d for:\n%s", rc, text);
    ck_assert_ptr_eq(m, (pt_manifest_t *)&err);
    ck_assert_msg(strcmp(err, expected) == 0, "\n got: %s\nwant: %s", err, expected);
}

static const petal_configrecord_t *
config_of(const pt_manifest_t *m)
{
    const petal_configrecord_t *c =
        petal_recorddict_config(m->config_holder, PT_CONFIG_HOLDER_NAME);
    ck_assert_ptr_nonnull(c);
    return c;
}

static petal_value_t
get(const petal_configrecord_t *c, const char *key)
{
    petal_value_t v;
    ck_assert_msg(petal_configrecord_get(c, key, &v) == 0, "no key '%s'", key);
    return v;
}

/* ---- the manifest ------------------------------------------------------------------------ */

START_TEST(test_manifest_minimal)
{
    pt_manifest_t *m = parse_ok("[app]\nname = \"q\"\nclient = \"client.so\"\n");
    ck_assert_str_eq(m->name, "q");
    ck_assert_str_eq(m->version, "");
    ck_assert_str_eq(m->description, "");
    ck_assert_str_eq(m->client_file, "client.so");
    ck_assert_str_eq(m->client_path, "/apps/q/client.so");
    ck_assert_ptr_null(m->server_file);
    ck_assert_ptr_null(m->server_path);
    ck_assert_uint_eq(petal_configrecord_count(config_of(m)), 0);
    pt_manifest_free(m);
}
END_TEST

START_TEST(test_manifest_full)
{
    const char *text = "\xef\xbb\xbf# petal.toml with everything the subset allows\r\n"
                       "\n"
                       "[app]   # the app\r\n"
                       "  name = \"quickstart\"\n"
                       "version = '1.0.0'\n"
                       "description = \"a; b # c = d: e\"  # not a comment inside quotes\n"
                       "client=\"lib/client.so\"\n"
                       "server = \"./server.so\"\n"
                       "\n"
                       "[ app . config ]\n"
                       "num-server-rounds = 5\n"
                       "\tlr = 0.05   # tab-indented\n"
                       "strategy = \"fedavg\"\n"
                       "use_gpu = false\n";
    pt_manifest_t *m = parse_ok(text);
    ck_assert_str_eq(m->name, "quickstart");
    ck_assert_str_eq(m->version, "1.0.0");
    ck_assert_str_eq(m->description, "a; b # c = d: e");
    ck_assert_str_eq(m->client_path, "/apps/q/lib/client.so");
    ck_assert_str_eq(m->server_file, "./server.so");
    ck_assert_str_eq(m->server_path, "/apps/q/./server.so");

    const petal_configrecord_t *c = config_of(m);
    ck_assert_uint_eq(petal_configrecord_count(c), 4);
    petal_value_t v = get(c, "num-server-rounds");
    ck_assert_uint_eq(v.type, PETAL_VALUE_INT64);
    ck_assert_int_eq(v.as.i64, 5);
    v = get(c, "lr");
    ck_assert_uint_eq(v.type, PETAL_VALUE_DOUBLE);
    ck_assert(v.as.f64 == 0.05);
    v = get(c, "strategy");
    ck_assert_uint_eq(v.type, PETAL_VALUE_STRING);
    ck_assert_str_eq(v.as.str, "fedavg");
    ck_assert_uint_eq(v.len, 6);
    v = get(c, "use_gpu");
    ck_assert_uint_eq(v.type, PETAL_VALUE_BOOL);
    ck_assert_int_eq(v.as.boolean, 0);
    /* keys keep the file's order */
    const char *name;
    ck_assert_int_eq(petal_configrecord_at(c, 0, &name, &v), 0);
    ck_assert_str_eq(name, "num-server-rounds");

    /* the holder can become a run config */
    pt_run_config_t *rc = pt_run_config_alloc(pt_manifest_take_config(m));
    ck_assert_ptr_nonnull(rc);
    ck_assert_ptr_null(m->config_holder);
    ck_assert_ptr_null(pt_manifest_take_config(m));
    pt_manifest_free(m);
    ck_assert_int_eq(get(pt_run_config_get(rc), "num-server-rounds").as.i64, 5);
    pt_run_config_release(rc);
}
END_TEST

static const struct value_case {
    const char *text;
    uint32_t type;
    int64_t i;
    double f;
    const char *s;
    size_t len;
} value_cases[] = {
    {"\"hello\"", PETAL_VALUE_STRING, 0, 0, "hello", 5},
    {"\"\"", PETAL_VALUE_STRING, 0, 0, "", 0},
    {"\"a\\\"b\\\\c\\nd\\te\"", PETAL_VALUE_STRING, 0, 0, "a\"b\\c\nd\te", 9},
    {"\"\\b\\f\\r\"", PETAL_VALUE_STRING, 0, 0, "\b\f\r", 3},
    {"'C:\\no\\escapes \"here\"'", PETAL_VALUE_STRING, 0, 0, "C:\\no\\escapes \"here\"", 20},
    {"''", PETAL_VALUE_STRING, 0, 0, "", 0},
    {"\"caf\\u00e9\"", PETAL_VALUE_STRING, 0, 0, "caf\xc3\xa9", 5},
    {"\"\\U0001F600\"", PETAL_VALUE_STRING, 0, 0, "\xf0\x9f\x98\x80", 4},
    {"\"h\xc3\xa9 # ; = :\"", PETAL_VALUE_STRING, 0, 0, "h\xc3\xa9 # ; = :", 11},
    {"42", PETAL_VALUE_INT64, 42, 0, NULL, 0},
    {"+7", PETAL_VALUE_INT64, 7, 0, NULL, 0},
    {"-17", PETAL_VALUE_INT64, -17, 0, NULL, 0},
    {"0", PETAL_VALUE_INT64, 0, 0, NULL, 0},
    {"-0", PETAL_VALUE_INT64, 0, 0, NULL, 0},
    {"1_000_000", PETAL_VALUE_INT64, 1000000, 0, NULL, 0},
    {"0x1F", PETAL_VALUE_INT64, 31, 0, NULL, 0},
    {"0xdead_beef", PETAL_VALUE_INT64, 0xdeadbeef, 0, NULL, 0},
    {"0o17", PETAL_VALUE_INT64, 15, 0, NULL, 0},
    {"0b101", PETAL_VALUE_INT64, 5, 0, NULL, 0},
    {"9223372036854775807", PETAL_VALUE_INT64, INT64_MAX, 0, NULL, 0},
    {"-9223372036854775808", PETAL_VALUE_INT64, INT64_MIN, 0, NULL, 0},
    {"3.14", PETAL_VALUE_DOUBLE, 0, 3.14, NULL, 0},
    {"-0.5", PETAL_VALUE_DOUBLE, 0, -0.5, NULL, 0},
    {"1e3", PETAL_VALUE_DOUBLE, 0, 1000.0, NULL, 0},
    {"6.5E+2", PETAL_VALUE_DOUBLE, 0, 650.0, NULL, 0},
    {"1.5e-3", PETAL_VALUE_DOUBLE, 0, 0.0015, NULL, 0},
    {"1_000.25", PETAL_VALUE_DOUBLE, 0, 1000.25, NULL, 0},
    {"0.0", PETAL_VALUE_DOUBLE, 0, 0.0, NULL, 0},
    {"inf", PETAL_VALUE_DOUBLE, 0, INFINITY, NULL, 0},
    {"+inf", PETAL_VALUE_DOUBLE, 0, INFINITY, NULL, 0},
    {"-inf", PETAL_VALUE_DOUBLE, 0, -INFINITY, NULL, 0},
    {"nan", PETAL_VALUE_DOUBLE, 0, NAN, NULL, 0},
    {"true", PETAL_VALUE_BOOL, 1, 0, NULL, 0},
    {"false", PETAL_VALUE_BOOL, 0, 0, NULL, 0},
};

START_TEST(test_value_types)
{
    const struct value_case *vc = &value_cases[_i];
    char text[256];
    snprintf(text, sizeof(text), HEAD "key = %s   # trailing comment\n", vc->text);
    pt_manifest_t *m = parse_ok(text);
    petal_value_t v = get(config_of(m), "key");
    ck_assert_msg(v.type == vc->type, "%s: type %u, want %u", vc->text, v.type, vc->type);
    switch (vc->type) {
    case PETAL_VALUE_INT64:
        ck_assert_int_eq(v.as.i64, vc->i);
        break;
    case PETAL_VALUE_BOOL:
        ck_assert_int_eq(v.as.boolean, vc->i);
        break;
    case PETAL_VALUE_DOUBLE:
        if (isnan(vc->f)) {
            ck_assert(isnan(v.as.f64));
        } else {
            ck_assert_msg(v.as.f64 == vc->f, "%s: %g", vc->text, v.as.f64);
        }
        break;
    default:
        ck_assert_uint_eq(v.len, vc->len);
        ck_assert_mem_eq(v.as.str, vc->s, vc->len + 1);
        break;
    }
    pt_manifest_free(m);

    /* the same text through the standalone value parser */
    char *owned = NULL;
    char err[256];
    ck_assert_msg(pt_config_parse_value(vc->text, &v, &owned, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(v.type, vc->type);
    ck_assert((owned != NULL) == (vc->type == PETAL_VALUE_STRING));
    free(owned);
}
END_TEST

static const struct bad_case {
    const char *line; /* line 5 of a manifest that starts with HEAD */
    const char *error;
} bad_cases[] = {
    {"layers = [1, 2]", "petal.toml:5: arrays are not supported (key 'layers')"},
    {"opt = { lr = 1 }", "petal.toml:5: inline tables are not supported (key 'opt')"},
    {"s = \"\"\"x\"\"\"", "petal.toml:5: multi-line strings are not supported (key 's')"},
    {"s = '''x'''", "petal.toml:5: multi-line strings are not supported (key 's')"},
    {"d = 1979-05-27", "petal.toml:5: dates and times are not supported (key 'd')"},
    {"d = 1979-05-27T07:32:00Z", "petal.toml:5: dates and times are not supported (key 'd')"},
    {"t = 07:32:00", "petal.toml:5: dates and times are not supported (key 't')"},
    {"w = hello", "petal.toml:5: invalid value 'hello' (strings need quotes: \"hello\") (key 'w')"},
    {"w = True", "petal.toml:5: invalid value 'True' (strings need quotes: \"True\") (key 'w')"},
    {"n = 007", "petal.toml:5: leading zeros are not allowed in '007' (key 'n')"},
    {"n = 1__0", "petal.toml:5: invalid number '1__0' (key 'n')"},
    {"n = 1_", "petal.toml:5: invalid number '1_' (key 'n')"},
    {"n = 0x", "petal.toml:5: invalid number '0x' (key 'n')"},
    {"n = 0xfg", "petal.toml:5: invalid number '0xfg' (key 'n')"},
    {"n = 99999999999999999999",
     "petal.toml:5: integer '99999999999999999999' is out of range (64-bit signed) (key 'n')"},
    {"f = 1.", "petal.toml:5: invalid number '1.' (key 'f')"},
    {"f = 1e", "petal.toml:5: invalid number '1e' (key 'f')"},
    {"f = 1e999", "petal.toml:5: float '1e999' is out of range (key 'f')"},
    {"s = \"abc", "petal.toml:5: unterminated string (missing closing \") (key 's')"},
    {"s = 'abc", "petal.toml:5: unterminated string (missing closing ') (key 's')"},
    {"s = \"a\\qb\"",
     "petal.toml:5: invalid escape \\q in a string (use \\\\ for a backslash) (key 's')"},
    {"s = \"\\u12\"", "petal.toml:5: \\u needs 4 hex digits (key 's')"},
    {"s = \"\\u0000\"", "petal.toml:5: \\u0000 is not an allowed character (key 's')"},
    {"s = \"\\uD800\"", "petal.toml:5: \\uD800 is not an allowed character (key 's')"},
    {"s = \"\xff\"", "petal.toml:5: string is not valid UTF-8 (key 's')"},
    {"s = \"x\" y", "petal.toml:5: unexpected text after the value of key 's'"},
    {"k = 1 ; comment", "petal.toml:5: unexpected text after the value of key 'k'"},
    {"k =", "petal.toml:5: missing value (key 'k')"},
    {"k = # nothing", "petal.toml:5: missing value (key 'k')"},
    {"\"quoted\" = 1", "petal.toml:5: quoted keys are not supported (use A-Z a-z 0-9 _ -)"},
    {"a.'b' = 1", "petal.toml:5: quoted keys are not supported (use A-Z a-z 0-9 _ -)"},
    {"key: 1", "petal.toml:5: expected '=' after key 'key' (TOML writes key = value)"},
    {"bare", "petal.toml:5: expected '=' after key 'bare'"},
    {"= 1", "petal.toml:5: expected a key"},
    {"k$ = 1", "petal.toml:5: expected '=' after key 'k'"},
    {"a. = 1", "petal.toml:5: expected a key"},
    {"[[layers]]", "petal.toml:5: arrays of tables ([[...]]) are not supported"},
    {"[app.confg]",
     "petal.toml:5: unknown section [app.confg] (petal.toml knows [app] and [app.config])"},
    {"[a b]", "petal.toml:5: expected ']' after [a"},
    {"[ok] junk", "petal.toml:5: unexpected text after [ok]"},
    {"[]", "petal.toml:5: expected a section name"},
    {"[\"q\"]", "petal.toml:5: quoted keys are not supported (use A-Z a-z 0-9 _ -)"},
    {"[app.config]", "petal.toml:5: section [app.config] is defined twice (first at line 4)"},
    {"[this-section-name-is-far-too-long-for-libinih-to-keep-whole]",
     "petal.toml:5: section name 'this-section-name-is-far-too-long-for-li...' is longer than 49 "
     "characters"},
};

START_TEST(test_unsupported_constructs)
{
    char text[512];
    snprintf(text, sizeof(text), HEAD "%s\nafter = 1\n", bad_cases[_i].line);
    assert_parse_error(text, bad_cases[_i].error);
}
END_TEST

START_TEST(test_nul_byte_and_long_key)
{
    char err[256];
    pt_manifest_t *m = NULL;
    static const char with_nul[] = HEAD "k = 1\0\n";
    ck_assert_int_eq(
        pt_manifest_parse(with_nul, sizeof(with_nul) - 1, "petal.toml", NULL, &m, err, sizeof(err)),
        PETAL_ECONFIG);
    ck_assert_str_eq(err, "petal.toml:5: NUL byte in the file");

    char text[600];
    char key[PT_CONFIG_MAX_KEY + 2];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    snprintf(text, sizeof(text), HEAD "%s = 1\n", key);
    ck_assert_int_eq(parse(text, &m, err, sizeof(err)), PETAL_ECONFIG);
    ck_assert_msg(strstr(err, "is longer than 128 characters") != NULL, "%s", err);
    key[PT_CONFIG_MAX_KEY] = '\0'; /* exactly the limit is fine */
    snprintf(text, sizeof(text), HEAD "%s = 1\n", key);
    m = parse_ok(text);
    ck_assert_int_eq(get(config_of(m), key).as.i64, 1);
    pt_manifest_free(m);
}
END_TEST

START_TEST(test_duplicates)
{
    assert_parse_error(HEAD "lr = 0.1\nlr = 0.2\n",
                       "petal.toml:6: key 'lr' in [app.config] is defined twice (first at line 5)");
    assert_parse_error("[app]\nname = \"a\"\nname = \"b\"\nclient = \"c.so\"\n",
                       "petal.toml:3: key 'name' in [app] is defined twice (first at line 2)");
    /* the same config key spelled as a dotted key and as a sub-table */
    assert_parse_error(HEAD "opt.lr = 1\n[app.config.opt]\nlr = 2\n",
                       "petal.toml:7: key 'lr' in [app.config.opt] is defined twice (first at "
                       "line 5)");
    assert_parse_error("[app]\nname = \"a\"\nclient = \"c.so\"\n[app]\n",
                       "petal.toml:4: section [app] is defined twice (first at line 1)");
}
END_TEST

START_TEST(test_required_and_app_keys)
{
    assert_parse_error("[app.config]\nx = 1\n",
                       "petal.toml: no [app] section (petal.toml needs [app] with name and "
                       "client)");
    assert_parse_error("[app]\nname = \"q\"\n",
                       "petal.toml: [app] has no client (the ClientApp plugin, e.g. client = "
                       "\"client.so\")");
    assert_parse_error("[app]\nclient = \"c.so\"\n",
                       "petal.toml: [app] has no name (e.g. name = \"quickstart\")");
    assert_parse_error("[app]\nname = \"\"\nclient = \"c.so\"\n",
                       "petal.toml:2: 'name' in [app] must not be empty");
    assert_parse_error("[app]\nname = \"q\"\nclient = 5\n",
                       "petal.toml:3: 'client' in [app] must be a string (in quotes)");
    assert_parse_error("[app]\nname = \"q\"\nclient = \"../x.so\"\n",
                       "petal.toml:3: client must be a path inside the app directory, got "
                       "'../x.so' (no leading '/' or '..')");
    assert_parse_error("[app]\nname = \"q\"\nclient = \"c.so\"\nserver = \"/usr/lib/s.so\"\n",
                       "petal.toml:4: server must be a path inside the app directory, got "
                       "'/usr/lib/s.so' (no leading '/' or '..')");
    assert_parse_error("[app]\nname = \"q\"\nclinet = \"c.so\"\n",
                       "petal.toml:3: unknown key 'clinet' in [app] (known: name, version, "
                       "description, client, server; run config keys go in [app.config])");
    assert_parse_error("x = 1\n[app]\n",
                       "petal.toml:1: key 'x' is outside any section (put it under [app] or "
                       "[app.config])");
}
END_TEST

START_TEST(test_nested_config_and_other_sections)
{
    pt_manifest_t *m = parse_ok(HEAD "a.b = 1\n"
                                     "[app.config.optimizer]\n"
                                     "lr = 0.1\n"
                                     "adam.beta1 = 0.9\n"
                                     "[federations.local]\n"
                                     "num-supernodes = 10\n");
    const petal_configrecord_t *c = config_of(m);
    ck_assert_int_eq(get(c, "a.b").as.i64, 1);
    ck_assert(get(c, "optimizer.lr").as.f64 == 0.1);
    ck_assert(get(c, "optimizer.adam.beta1").as.f64 == 0.9);
    const petal_configrecord_t *fed = petal_recorddict_config(m->sections, "federations.local");
    ck_assert_ptr_nonnull(fed);
    ck_assert_int_eq(get(fed, "num-supernodes").as.i64, 10);
    pt_manifest_free(m);
}
END_TEST

START_TEST(test_dotted_app_config_key_in_app)
{
    pt_manifest_t *m = parse_ok("[app]\nname = \"q\"\nclient = \"c.so\"\nconfig.lr = 0.3\n");
    ck_assert(get(config_of(m), "lr").as.f64 == 0.3);
    pt_manifest_free(m);
}
END_TEST

static char *
make_app_dir(const char *toml)
{
    char tmpl[] = "/tmp/petal-test-config-XXXXXX";
    char *dir = mkdtemp(tmpl);
    ck_assert_ptr_nonnull(dir);
    char path[256];
    snprintf(path, sizeof(path), "%s/petal.toml", dir);
    if (toml != NULL) {
        FILE *f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fputs(toml, f);
        fclose(f);
    }
    return strdup(dir);
}

static void
remove_app_dir(char *dir)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/petal.toml", dir);
    unlink(path);
    rmdir(dir);
    free(dir);
}

START_TEST(test_manifest_load_from_directory)
{
    char err[512];
    char want[512];
    pt_manifest_t *m = NULL;
    char *dir = make_app_dir("[app]\nname = \"disk\"\nclient = \"client.so\"\n");
    ck_assert_msg(pt_manifest_load(dir, &m, err, sizeof(err)) == 0, "%s", err);
    snprintf(want, sizeof(want), "%s/client.so", dir);
    ck_assert_str_eq(m->client_path, want);
    ck_assert_str_eq(m->app_dir, dir);
    pt_manifest_free(m);
    remove_app_dir(dir);

    /* errors name the file by its path */
    dir = make_app_dir("[app]\nlayers = [1]\n");
    ck_assert_int_eq(pt_manifest_load(dir, &m, err, sizeof(err)), PETAL_ECONFIG);
    snprintf(want, sizeof(want), "%s/petal.toml:2: arrays are not supported (key 'layers')", dir);
    ck_assert_str_eq(err, want);
    remove_app_dir(dir);

    dir = make_app_dir(NULL);
    ck_assert_int_eq(pt_manifest_load(dir, &m, err, sizeof(err)), -ENOENT);
    snprintf(want, sizeof(want), "cannot read %s/petal.toml: No such file or directory", dir);
    ck_assert_str_eq(err, want);
    remove_app_dir(dir);
}
END_TEST

START_TEST(test_shipped_manifests_parse)
{
    char err[512];
    pt_manifest_t *m = NULL;
    int rc = pt_manifest_load(PETAL_SOURCE_DIR "/tests/abi/plugin_v1", &m, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_str_eq(m->name, "abi_v1");
    ck_assert_int_eq(get(config_of(m), "num-server-rounds").as.i64, 3);
    pt_manifest_free(m);

    if (access(PETAL_SOURCE_DIR "/plugins/quickstart/petal.toml", R_OK) == 0) {
        rc = pt_manifest_load(PETAL_SOURCE_DIR "/plugins/quickstart", &m, err, sizeof(err));
        ck_assert_msg(rc == 0, "%s", err);
        ck_assert_str_eq(m->name, "quickstart");
        pt_manifest_free(m);
    }
}
END_TEST

/* ---- overrides ------------------------------------------------------------------------------ */

static petal_recorddict_t *
fresh_holder(petal_configrecord_t **c)
{
    petal_recorddict_t *h = petal_recorddict_alloc();
    *c = petal_recorddict_add_config(h, PT_CONFIG_HOLDER_NAME);
    ck_assert_ptr_nonnull(*c);
    return h;
}

START_TEST(test_overrides_infer_types)
{
    char err[256];
    petal_configrecord_t *c;
    petal_recorddict_t *h = fresh_holder(&c);
    int rc = pt_config_parse_overrides(
        "  a=1 b=2.5\tc=true d=hello e='x y' f=\"q\\\"z\" g=-3 h=1e-3 i=1_000 j=0.1.2 k=''  ", NULL,
        c, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_uint_eq(petal_configrecord_count(c), 11);
    ck_assert_int_eq(get(c, "a").as.i64, 1);
    ck_assert(get(c, "b").as.f64 == 2.5);
    ck_assert_int_eq(get(c, "c").as.boolean, 1);
    ck_assert_uint_eq(get(c, "d").type, PETAL_VALUE_STRING);
    ck_assert_str_eq(get(c, "d").as.str, "hello");
    ck_assert_str_eq(get(c, "e").as.str, "x y");
    ck_assert_str_eq(get(c, "f").as.str, "q\"z");
    ck_assert_int_eq(get(c, "g").as.i64, -3);
    ck_assert(get(c, "h").as.f64 == 1e-3);
    ck_assert_int_eq(get(c, "i").as.i64, 1000);
    ck_assert_str_eq(get(c, "j").as.str, "0.1.2"); /* an unquoted non-number is a string */
    ck_assert_str_eq(get(c, "k").as.str, "");
    petal_recorddict_free(h);
}
END_TEST

START_TEST(test_overrides_node_config)
{
    char err[256];
    petal_configrecord_t *c;
    petal_recorddict_t *h = fresh_holder(&c);
    ck_assert_int_eq(pt_config_parse_overrides("partition-id=0 num-partitions=3", "--node-config",
                                               c, err, sizeof(err)),
                     0);
    ck_assert_uint_eq(get(c, "partition-id").type, PETAL_VALUE_INT64);
    ck_assert_int_eq(get(c, "partition-id").as.i64, 0);
    ck_assert_int_eq(get(c, "num-partitions").as.i64, 3);
    ck_assert_int_eq(pt_config_parse_overrides("", NULL, c, err, sizeof(err)), 0);
    ck_assert_int_eq(pt_config_parse_overrides("   ", NULL, c, err, sizeof(err)), 0);
    ck_assert_uint_eq(petal_configrecord_count(c), 2);
    petal_recorddict_free(h);
}
END_TEST

/* A run config as petal.toml would make it. */
static petal_recorddict_t *
typed_holder(petal_configrecord_t **c)
{
    petal_recorddict_t *h = fresh_holder(c);
    petal_value_t v = petal_value_f64(0.1);
    ck_assert_int_eq(petal_configrecord_set(*c, "lr", &v), 0);
    v = petal_value_i64(5);
    ck_assert_int_eq(petal_configrecord_set(*c, "num-server-rounds", &v), 0);
    v = petal_value_bool(1);
    ck_assert_int_eq(petal_configrecord_set(*c, "flag", &v), 0);
    v = petal_value_str("fedavg", 6);
    ck_assert_int_eq(petal_configrecord_set(*c, "strategy", &v), 0);
    v = petal_value_u64(7);
    ck_assert_int_eq(petal_configrecord_set(*c, "seed", &v), 0);
    return h;
}

START_TEST(test_overrides_keep_existing_types)
{
    char err[256];
    petal_configrecord_t *c;
    petal_recorddict_t *h = typed_holder(&c);
    int rc = pt_config_parse_overrides("lr=1 num-server-rounds=7 flag=false strategy=123 seed=9",
                                       NULL, c, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s", err);
    petal_value_t v = get(c, "lr");
    ck_assert_uint_eq(v.type, PETAL_VALUE_DOUBLE); /* int into a float key converts */
    ck_assert(v.as.f64 == 1.0);
    ck_assert_int_eq(get(c, "num-server-rounds").as.i64, 7);
    ck_assert_int_eq(get(c, "flag").as.boolean, 0);
    v = get(c, "strategy");
    ck_assert_uint_eq(v.type, PETAL_VALUE_STRING); /* a string key takes the text */
    ck_assert_str_eq(v.as.str, "123");
    v = get(c, "seed");
    ck_assert_uint_eq(v.type, PETAL_VALUE_UINT64);
    ck_assert_uint_eq(v.as.u64, 9);
    ck_assert_uint_eq(petal_configrecord_count(c), 5);

    ck_assert_int_eq(
        pt_config_parse_overrides("strategy='fedprox' lr=2.5e-2", NULL, c, err, sizeof(err)), 0);
    ck_assert_str_eq(get(c, "strategy").as.str, "fedprox");
    ck_assert(get(c, "lr").as.f64 == 0.025);
    petal_recorddict_free(h);
}
END_TEST

static const struct override_error {
    const char *spec;
    const char *what;
    const char *error;
} override_errors[] = {
    {"lr=abc", NULL, "--run-config: 'lr' expects a float, got 'abc'"},
    {"lr='0.5'", NULL, "--run-config: 'lr' expects a float, got ''0.5''"},
    {"num-server-rounds=2.5", NULL,
     "--run-config: 'num-server-rounds' expects an integer, got '2.5'"},
    {"num-server-rounds=true", NULL,
     "--run-config: 'num-server-rounds' expects an integer, got 'true'"},
    {"flag=yes", NULL, "--run-config: 'flag' expects a bool (true or false), got 'yes'"},
    {"flag=1", NULL, "--run-config: 'flag' expects a bool (true or false), got '1'"},
    {"seed=-1", NULL, "--run-config: 'seed' expects a non-negative integer, got '-1'"},
    {"lr", NULL, "--run-config: expected key=value, got 'lr'"},
    {"lr = 0.5", NULL, "--run-config: expected key=value, got 'lr'"},
    {"=5", NULL, "--run-config: empty key in '=5'"},
    {"k=", "--node-config",
     "--node-config: missing value for 'k' (write k='' for an empty string)"},
    {"k= 1", NULL, "--run-config: missing value for 'k' (write k='' for an empty string)"},
    {"k='abc", NULL, "--run-config: unterminated string (missing closing ') (key 'k')"},
    {"k='a'b", NULL, "--run-config: unexpected text after the quoted value of 'k'"},
    {"k=\"\\x\"", NULL,
     "--run-config: invalid escape \\x in a string (use \\\\ for a backslash) (key 'k')"},
    {"'k'=1", NULL, "--run-config: quotes are not allowed in key ''k''"},
    /* all or nothing: the valid override before the bad one is not applied */
    {"num-server-rounds=9 lr=abc", NULL, "--run-config: 'lr' expects a float, got 'abc'"},
};

START_TEST(test_override_errors)
{
    const struct override_error *oe = &override_errors[_i];
    char err[256];
    petal_configrecord_t *c;
    petal_recorddict_t *h = typed_holder(&c);
    int rc = pt_config_parse_overrides(oe->spec, oe->what, c, err, sizeof(err));
    ck_assert_msg(rc == PETAL_ECONFIG, "%s: rc %d", oe->spec, rc);
    ck_assert_str_eq(err, oe->error);
    /* nothing changed */
    ck_assert_uint_eq(petal_configrecord_count(c), 5);
    ck_assert_int_eq(get(c, "num-server-rounds").as.i64, 5);
    ck_assert(get(c, "lr").as.f64 == 0.1);
    petal_recorddict_free(h);
}
END_TEST

START_TEST(test_parse_value_errors)
{
    char err[256];
    char *owned = (char *)err;
    petal_value_t v;
    ck_assert_int_eq(pt_config_parse_value("[1]", &v, &owned, err, sizeof(err)), PETAL_ECONFIG);
    ck_assert_str_eq(err, "arrays are not supported");
    ck_assert_int_eq(pt_config_parse_value("1 2", &v, &owned, err, sizeof(err)), PETAL_ECONFIG);
    ck_assert_str_eq(err, "unexpected text after the value: '2'");
    ck_assert_int_eq(pt_config_parse_value("", &v, &owned, err, sizeof(err)), PETAL_ECONFIG);
    ck_assert_str_eq(err, "missing value");
    ck_assert_int_eq(pt_config_parse_value("\"a\" ", &v, &owned, err, sizeof(err)), 0);
    ck_assert_str_eq(v.as.str, "a");
    free(owned);
}
END_TEST

/* Mutated manifests and overrides: every outcome is a result or a clear error, never a crash
 * (run under -DPETAL_SANITIZE=address,undefined to make that check meaningful). */
static uint32_t
xorshift(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

START_TEST(test_mutations_never_crash)
{
    static const char base[] = "[app]\nname = \"q\"\nclient = \"c.so\"\n[app.config]\n"
                               "lr = 0.5 # c\ns = \"a\\u00e9\\n\"\nn = -1_000\nt = 'x'\n";
    static const char pool[] = "\"'\\[]=#\n. u0x_e+-{}:\xff\t";
    char text[sizeof(base)];
    char err[256];
    uint32_t seed = 12345;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(text, base, sizeof(base));
        int edits = 1 + (int)(xorshift(&seed) % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = xorshift(&seed) % (sizeof(base) - 1);
            text[at] = pool[xorshift(&seed) % (sizeof(pool) - 1)];
        }
        pt_manifest_t *m = NULL;
        int rc =
            pt_manifest_parse(text, sizeof(base) - 1, "petal.toml", NULL, &m, err, sizeof(err));
        ck_assert_msg(rc == 0 || rc == PETAL_ECONFIG, "rc %d for:\n%s", rc, text);
        if (rc == 0) {
            pt_manifest_free(m);
        } else {
            ck_assert_msg(strncmp(err, "petal.toml", 10) == 0, "%s", err);
        }

        petal_configrecord_t *c;
        petal_recorddict_t *h = typed_holder(&c);
        rc = pt_config_parse_overrides(text + 40, NULL, c, err, sizeof(err));
        ck_assert(rc == 0 || rc == PETAL_ECONFIG);
        petal_recorddict_free(h);
    }
}
END_TEST

static Suite *
config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("manifest");
    tcase_add_test(tc, test_manifest_minimal);
    tcase_add_test(tc, test_manifest_full);
    tcase_add_loop_test(tc, test_value_types, 0,
                        (int)(sizeof(value_cases) / sizeof(value_cases[0])));
    tcase_add_loop_test(tc, test_unsupported_constructs, 0,
                        (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
    tcase_add_test(tc, test_nul_byte_and_long_key);
    tcase_add_test(tc, test_duplicates);
    tcase_add_test(tc, test_required_and_app_keys);
    tcase_add_test(tc, test_nested_config_and_other_sections);
    tcase_add_test(tc, test_dotted_app_config_key_in_app);
    tcase_add_test(tc, test_manifest_load_from_directory);
    tcase_add_test(tc, test_shipped_manifests_parse);
    suite_add_tcase(s, tc);
    tc = tcase_create("overrides");
    tcase_add_test(tc, test_overrides_infer_types);
    tcase_add_test(tc, test_overrides_node_config);
    tcase_add_test(tc, test_overrides_keep_existing_types);
    tcase_add_loop_test(tc, test_override_errors, 0,
                        (int)(sizeof(override_errors) / sizeof(override_errors[0])));
    tcase_add_test(tc, test_parse_value_errors);
    tcase_add_test(tc, test_mutations_never_crash);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
