/* cmd_deploy.c - petal run / ls / log / stop / nodes: the CLI side of the Control API. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actors/ctlclient.h"
#include "actors/params.h"
#include "actors/protocol.h"
#include "runtime/buf.h"
#include "runtime/bundle.h"
#include "runtime/codec.h"
#include "runtime/config.h"
#include "runtime/context.h"
#include "runtime/keys.h"
#include "runtime/log.h"
#include "runtime/message.h"
#include "transport/secure.h"

#include "cli.h"

#define DEFAULT_CONTROL "127.0.0.1:9093"

typedef struct deploy_cli {
    const char *superlink;
    const char *format; /* "table" or "json" */
    const char *run_config;
    const char *history, *save_arrays, *log_level;
    const char *keys, *superlink_key;
    int have_seed, stream, follow, insecure;
    int64_t seed;
    char address[300];
    pt_keypair_t *identity; /* the operator's key (--keys); NULL with --insecure */
    uint8_t pin[PT_KEY_PUBLIC_BYTES];
    pt_secure_opts_t secure_opts;
    const pt_secure_opts_t *secure; /* &secure_opts, or NULL with --insecure */
} deploy_cli_t;

static void
deploy_cli_fini(deploy_cli_t *o)
{
    pt_keypair_free(o->identity);
    o->identity = NULL;
    o->secure = NULL;
}

/* The operator's identity and the SuperLink's pinned key, or --insecure. 0, or -1 after
 * printing why. */
static int
security_opts(const char *cmd, deploy_cli_t *o)
{
    char err[600];
    if (o->insecure && (o->keys != NULL || o->superlink_key != NULL)) {
        fprintf(stderr,
                "petal %s: --insecure talks plain TCP: it does not go with --keys or "
                "--superlink-key\n",
                cmd);
        return -1;
    }
    if (o->insecure) {
        fprintf(stderr,
                "petal %s: warning: --insecure: the Control API traffic is neither "
                "encrypted nor authenticated (tests and trusted networks only)\n",
                cmd);
        return 0;
    }
    if (o->keys == NULL || o->superlink_key == NULL) {
        fprintf(stderr,
                "petal %s: the Control API is secure by default: pass --keys DIR (your operator "
                "key, from `petal keygen --out DIR`, listed in the SuperLink's --operators) and "
                "--superlink-key FILE (the SuperLink's petal.pub)%s; --insecure talks to a "
                "SuperLink started with --insecure\n",
                cmd,
                o->keys != NULL            ? " (--superlink-key is missing)"
                : o->superlink_key != NULL ? " (--keys is missing: a CLI without an operator key "
                                             "is refused)"
                                           : "");
        return -1;
    }
    if (pt_keypair_load(o->keys, &o->identity, err, sizeof(err)) != 0) {
        fprintf(stderr, "petal %s: --keys: %s\n", cmd, err);
        return -1;
    }
    if (pt_pubkey_load(o->superlink_key, o->pin, err, sizeof(err)) != 0) {
        fprintf(stderr, "petal %s: --superlink-key: %s\n", cmd, err);
        deploy_cli_fini(o);
        return -1;
    }
    memset(&o->secure_opts, 0, sizeof(o->secure_opts));
    o->secure_opts.identity = o->identity;
    o->secure_opts.pinned_peer_pk = o->pin;
    o->secure = &o->secure_opts;
    return 0;
}

/* Prints a failed exchange, with a hint when the two sides speak different modes. */
static void
report(const char *cmd, const deploy_cli_t *o, int rc, const char *err)
{
    fprintf(stderr, "petal%s%s: %s\n", cmd ? " " : "", cmd ? cmd : "", err);
    if (rc == PETAL_EPROTO && o->secure == NULL) {
        fprintf(stderr,
                "petal%s%s: hint: a SuperLink with the secure channel needs --keys DIR "
                "and --superlink-key FILE instead of --insecure\n",
                cmd ? " " : "", cmd ? cmd : "");
    } else if (rc == PETAL_ECLOSED) {
        fprintf(stderr,
                "petal%s%s: hint: a running SuperLink closes a connection whose request is over "
                "its limits (--max-message-size and the others); its log says which\n",
                cmd ? " " : "", cmd ? cmd : "");
    }
}

static int
common_opts(const char *cmd, int argc, char **argv, deploy_cli_t *o, int *first_arg,
            const char *usage_text)
{
    static const struct option opts[] = {
        {"superlink", required_argument, NULL, 'S'},
        {"format", required_argument, NULL, 'F'},
        {"run-config", required_argument, NULL, 'c'},
        {"seed", required_argument, NULL, 's'},
        {"stream", no_argument, NULL, 'x'},
        {"follow", no_argument, NULL, 'f'},
        {"history", required_argument, NULL, 'H'},
        {"save-arrays", required_argument, NULL, 'a'},
        {"insecure", no_argument, NULL, 'i'},
        {"keys", required_argument, NULL, 'k'},
        {"superlink-key", required_argument, NULL, 'K'},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->superlink = DEFAULT_CONTROL;
    o->format = "table";
    optind = 1;
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'S':
            o->superlink = optarg;
            break;
        case 'F':
            if (strcmp(optarg, "json") != 0 && strcmp(optarg, "table") != 0) {
                fprintf(stderr, "petal %s: --format '%s': expected table or json\n", cmd, optarg);
                return -1;
            }
            o->format = optarg;
            break;
        case 'c':
            o->run_config = optarg;
            break;
        case 's':
            o->seed = strtoll(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0') {
                fprintf(stderr, "petal %s: --seed '%s': expected an integer\n", cmd, optarg);
                return -1;
            }
            o->have_seed = 1;
            break;
        case 'x':
            o->stream = 1;
            break;
        case 'f':
            o->follow = 1;
            break;
        case 'H':
            o->history = optarg;
            break;
        case 'a':
            o->save_arrays = optarg;
            break;
        case 'i':
            o->insecure = 1;
            break;
        case 'k':
            o->keys = optarg;
            break;
        case 'K':
            o->superlink_key = optarg;
            break;
        case 'l':
            o->log_level = optarg;
            break;
        case 'h':
            fputs(usage_text, stdout);
            exit(PETAL_EXIT_OK);
        default:
            fputs(usage_text, stderr);
            return -1;
        }
    }
    if (petal_cli_set_log_level(o->log_level) != 0) {
        return -1;
    }
    if (pt_ctl_address(o->superlink, o->address, sizeof(o->address)) != 0) {
        fprintf(stderr, "petal %s: --superlink '%s': expected HOST:PORT\n", cmd, o->superlink);
        return -1;
    }
    if (security_opts(cmd, o) != 0) {
        return -1;
    }
    *first_arg = optind;
    return 0;
}

static pt_frame_t *
request(uint16_t kind, const char *type, petal_configrecord_t **p)
{
    pt_frame_t *f = pt_params_frame(kind, type, p);
    if (f == NULL) {
        fprintf(stderr, "petal: out of memory\n");
    }
    return f;
}

/* ---- Log streaming (petal log, petal run --stream) ------------------------------------------- */

typedef struct log_state {
    int follow;
    int quiet; /* follow to the end without printing (petal run --history without --stream) */
    int finished;
    char status[64];
    char reason[512];
} log_state_t;

static int
flag(const petal_configrecord_t *p, const char *key)
{
    petal_value_t v;
    return petal_configrecord_get(p, key, &v) == 0 && v.type == PETAL_VALUE_BOOL && v.as.boolean;
}

static int
on_log(void *ctx, pt_frame_t *f)
{
    log_state_t *s = ctx;
    if (f->kind != PT_CONTROL_LOG) {
        return 0;
    }
    const petal_configrecord_t *p = pt_frame_params(f);
    petal_value_t v;
    if (!s->quiet && petal_configrecord_get(p, "lines", &v) == 0 &&
        v.type == PETAL_VALUE_STRING_LIST) {
        for (uint64_t i = 0; i < v.len; i++) {
            printf("%s\n", v.as.strs[i]);
        }
        fflush(stdout);
    }
    const char *status = "", *reason = "";
    pt_params_str(p, "status", &status);
    pt_params_str(p, "reason", &reason);
    snprintf(s->status, sizeof(s->status), "%s", status);
    snprintf(s->reason, sizeof(s->reason), "%s", reason);
    s->finished = flag(p, "finished");
    return s->follow ? s->finished : flag(p, "last");
}

static int
stream_log(const deploy_cli_t *o, int64_t run_id, log_state_t *s)
{
    petal_configrecord_t *p;
    pt_frame_t *f = request(PT_CONTROL_STREAM_LOG, "control.stream-log", &p);
    if (f == NULL) {
        return PETAL_ENOMEM;
    }
    pt_params_set_i64(p, "run-id", run_id);
    pt_params_set_i64(p, "from", 0);
    petal_value_t v = petal_value_bool(s->follow);
    petal_configrecord_set(p, "follow", &v);
    char err[512];
    int rc = pt_ctl_exchange(o->address, o->secure, f, on_log, s, 0, err, sizeof(err));
    if (rc != 0) {
        report(NULL, o, rc, err);
    }
    return rc;
}

/* How every deployment command reaches the SuperLink (appended to each usage text). */
#define CONNECT_HELP                                                                               \
    "\nConnecting (secure by default):\n"                                                          \
    "  --superlink HOST:PORT  the SuperLink's Control API (default " DEFAULT_CONTROL ")\n"         \
    "  --keys DIR             your operator identity: DIR/petal.key from\n"                        \
    "                         `petal keygen --out DIR`; its petal.pub must be in the\n"            \
    "                         SuperLink's --operators file\n"                                      \
    "  --superlink-key FILE   the SuperLink's public key (its petal.pub); any other server is\n"   \
    "                         refused\n"                                                           \
    "  --insecure             plain TCP to a SuperLink started with --insecure (tests and\n"       \
    "                         trusted networks only)\n"
#define CONNECT_USAGE "--superlink HOST:PORT (--keys DIR --superlink-key FILE | --insecure)"

/* ---- petal run ---------------------------------------------------------------------------------
 */

static const char run_usage[] =
    "usage: petal run APP_DIR|APP.petal " CONNECT_USAGE "\n"
    "                 [--run-config \"k=v k2=v2\"] [--seed S] [--stream] [--history FILE]\n"
    "                 [--save-arrays FILE]\n\n"
    "Packs APP_DIR into a bundle (or takes a bundle file from petal build as it is), submits it\n"
    "to the SuperLink's Control API (default " DEFAULT_CONTROL
    ") and prints the run id; --stream\nfollows the run's log to its end.\n" CONNECT_HELP;

typedef struct started {
    int64_t run_id;
    char hash[80];
} started_t;

static int
on_started(void *ctx, pt_frame_t *f)
{
    started_t *s = ctx;
    if (f->kind != PT_CONTROL_RUN_STARTED) {
        return 0;
    }
    const char *hash = "";
    pt_params_i64(pt_frame_params(f), "run-id", &s->run_id);
    pt_params_str(pt_frame_params(f), "bundle-hash", &hash);
    snprintf(s->hash, sizeof(s->hash), "%s", hash);
    return 1;
}

typedef struct result {
    const char *history, *save_arrays;
    int rc;
} result_t;

static int
on_result(void *ctx, pt_frame_t *f)
{
    result_t *r = ctx;
    if (f->kind != PT_CONTROL_RESULT) {
        return 0;
    }
    char err[512];
    const char *json = NULL;
    if (r->history != NULL) {
        FILE *out = fopen(r->history, "wb");
        if (out == NULL || pt_params_str(pt_frame_params(f), "history-json", &json) != 0 ||
            fputs(json, out) < 0 || fclose(out) != 0) {
            fprintf(stderr, "petal run: cannot write %s\n", r->history);
            r->rc = PETAL_EIO;
        }
    }
    if (r->save_arrays != NULL) {
        const petal_arrayrecord_t *ar =
            petal_recorddict_arrays(petal_message_content(f->msg), "arrays");
        petal_recorddict_t *d = petal_recorddict_alloc();
        petal_arrayrecord_t *dst = d ? petal_recorddict_add_arrays(d, "arrays") : NULL;
        for (uint64_t i = 0; dst != NULL && ar != NULL && i < petal_arrayrecord_count(ar); i++) {
            petal_arrayrecord_add_ref(dst, petal_arrayrecord_name_at(ar, i),
                                      petal_arrayrecord_at(ar, i));
        }
        pt_encoded_t e;
        FILE *out = NULL;
        if (ar == NULL || dst == NULL || pt_codec_encode_recorddict(d, &e) != 0) {
            snprintf(err, sizeof(err), "the run produced no final arrays");
            fprintf(stderr, "petal run: cannot write %s: %s\n", r->save_arrays, err);
            r->rc = PETAL_ENOENT;
        } else {
            out = fopen(r->save_arrays, "wb");
            for (size_t i = 0; out != NULL && i < e.niov; i++) {
                fwrite(e.iov[i].base, 1, e.iov[i].len, out);
            }
            if (out == NULL || fclose(out) != 0) {
                fprintf(stderr, "petal run: cannot write %s\n", r->save_arrays);
                r->rc = PETAL_EIO;
            }
            pt_encoded_fini(&e);
        }
        petal_recorddict_free(d);
    }
    return 1;
}

static petal_recorddict_t *
run_config_of(const char *app_dir, const deploy_cli_t *o)
{
    char err[512];
    pt_manifest_t *m = NULL;
    if (pt_manifest_load(app_dir, &m, err, sizeof(err)) != 0) {
        fprintf(stderr, "petal run: %s\n", err);
        return NULL;
    }
    petal_recorddict_t *holder = pt_manifest_take_config(m);
    pt_manifest_free(m);
    return petal_cli_run_config("run", holder, o->have_seed, o->seed, o->run_config);
}

static int
cmd_run(deploy_cli_t *o, int argc, char **argv, int first)
{
    if (first != argc - 1) {
        fputs(run_usage, stderr);
        return PETAL_EXIT_USAGE;
    }
    const char *app_dir = argv[first];
    char err[512], hash[65];
    pt_buf_t *bundle = NULL;
    petal_recorddict_t *holder = NULL;
    if (petal_cli_is_bundle_file(app_dir)) {
        /* A bundle file (petal build): sent as it is, signature included. */
        if (petal_cli_bundle_load(app_dir, &bundle, &holder, err, sizeof(err)) != 0) {
            fprintf(stderr, "petal run: %s\n", err);
            return PETAL_EXIT_USAGE;
        }
        holder = petal_cli_run_config("run", holder, o->have_seed, o->seed, o->run_config);
        if (holder == NULL) {
            pt_buf_release(bundle);
            return PETAL_EXIT_USAGE;
        }
    } else if ((holder = run_config_of(app_dir, o)) == NULL) {
        return PETAL_EXIT_USAGE;
    }
    if (bundle == NULL && pt_bundle_pack(app_dir, &bundle, hash, err, sizeof(err)) != 0) {
        fprintf(stderr, "petal run: cannot pack %s: %s\n", app_dir, err);
        petal_recorddict_free(holder);
        return PETAL_EXIT_USAGE;
    }
    petal_configrecord_t *p;
    pt_frame_t *f = request(PT_CONTROL_START_RUN, "control.start-run", &p);
    petal_recorddict_t *content = f ? pt_message_content_mut(f->msg) : NULL;
    petal_arrayrecord_t *ar =
        content ? petal_recorddict_add_arrays(content, PT_BUNDLE_RECORD) : NULL;
    petal_configrecord_t *cfg = content ? petal_recorddict_add_config(content, "config") : NULL;
    uint64_t shape[1] = {pt_buf_len(bundle)};
    const petal_configrecord_t *src = petal_recorddict_config(holder, PT_CONFIG_HOLDER_NAME);
    const char *name;
    petal_value_t v;
    int ok = ar != NULL && cfg != NULL &&
             pt_arrayrecord_add_view(ar, "bytes", PETAL_DTYPE_UINT8, 1, shape, bundle, 0) != NULL;
    for (uint64_t i = 0; ok && i < petal_configrecord_count(src); i++) {
        ok = petal_configrecord_at(src, i, &name, &v) == 0 &&
             petal_configrecord_set(cfg, name, &v) == 0;
    }
    pt_buf_release(bundle);
    petal_recorddict_free(holder);
    if (!ok) {
        if (f != NULL) {
            pt_msg_free(&f->hdr);
        }
        fprintf(stderr, "petal run: out of memory\n");
        return PETAL_EXIT_RUN_FAILED;
    }
    started_t st = {0};
    int rc = pt_ctl_exchange(o->address, o->secure, f, on_started, &st, 60, err, sizeof(err));
    if (rc != 0) {
        report("run", o, rc, err);
        return PETAL_EXIT_RUN_FAILED;
    }
    if (strcmp(o->format, "json") == 0) {
        printf("{\"run_id\": %lld, \"bundle_sha256\": \"%s\"}\n", (long long)st.run_id, st.hash);
    } else {
        printf("run %lld submitted (bundle %s)\n", (long long)st.run_id, st.hash);
    }
    fflush(stdout);
    if (!o->stream && o->history == NULL && o->save_arrays == NULL) {
        return PETAL_EXIT_OK;
    }
    log_state_t ls = {.follow = 1, .quiet = !o->stream};
    if (stream_log(o, st.run_id, &ls) != 0) {
        return PETAL_EXIT_RUN_FAILED;
    }
    int exit_code =
        strcmp(ls.status, "finished:completed") == 0 ? PETAL_EXIT_OK : PETAL_EXIT_RUN_FAILED;
    if (exit_code != PETAL_EXIT_OK) {
        fprintf(stderr, "petal run: run %lld %s%s%s\n", (long long)st.run_id, ls.status,
                ls.reason[0] ? ": " : "", ls.reason);
    }
    if (o->history != NULL || o->save_arrays != NULL) {
        f = request(PT_CONTROL_GET_RESULT, "control.get-result", &p);
        if (f == NULL) {
            return PETAL_EXIT_RUN_FAILED;
        }
        pt_params_set_i64(p, "run-id", st.run_id);
        result_t r = {.history = o->history, .save_arrays = o->save_arrays};
        rc = pt_ctl_exchange(o->address, o->secure, f, on_result, &r, 60, err, sizeof(err));
        if (rc != 0) {
            report("run", o, rc, err);
            return PETAL_EXIT_RUN_FAILED;
        }
        if (r.rc != 0) {
            exit_code = PETAL_EXIT_RUN_FAILED;
        }
    }
    return exit_code;
}

int
petal_cmd_run(int argc, char **argv)
{
    deploy_cli_t o;
    int first;
    if (common_opts("run", argc, argv, &o, &first, run_usage) != 0) {
        return PETAL_EXIT_USAGE;
    }
    int rc = cmd_run(&o, argc, argv, first);
    deploy_cli_fini(&o);
    return rc;
}

/* ---- petal log / stop
 * ----------------------------------------------------------------------------- */

static int
run_id_arg(const char *cmd, const char *s, int64_t *out)
{
    char *end;
    long long x = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || x < 1) {
        fprintf(stderr, "petal %s: RUN_ID '%s': expected a positive integer\n", cmd, s);
        return -1;
    }
    *out = x;
    return 0;
}

static const char log_usage[] =
    "usage: petal log RUN_ID " CONNECT_USAGE " [--follow]\n\n"
    "Prints a run's log; --follow waits for new lines until the run finishes.\n" CONNECT_HELP;

static int
cmd_log(deploy_cli_t *o, int argc, char **argv, int first)
{
    int64_t run_id;
    if (first != argc - 1 || run_id_arg("log", argv[first], &run_id) != 0) {
        fputs(log_usage, stderr);
        return PETAL_EXIT_USAGE;
    }
    log_state_t ls = {.follow = o->follow};
    if (stream_log(o, run_id, &ls) != 0) {
        return PETAL_EXIT_RUN_FAILED;
    }
    return PETAL_EXIT_OK;
}

int
petal_cmd_log(int argc, char **argv)
{
    deploy_cli_t o;
    int first;
    if (common_opts("log", argc, argv, &o, &first, log_usage) != 0) {
        return PETAL_EXIT_USAGE;
    }
    int rc = cmd_log(&o, argc, argv, first);
    deploy_cli_fini(&o);
    return rc;
}

static const char stop_usage[] =
    "usage: petal stop RUN_ID " CONNECT_USAGE "\n\nStops a running run.\n" CONNECT_HELP;

static int
on_stopped(void *ctx, pt_frame_t *f)
{
    (void)ctx;
    return f->kind == PT_CONTROL_STOPPED;
}

static int
cmd_stop(deploy_cli_t *o, int argc, char **argv, int first)
{
    int64_t run_id;
    if (first != argc - 1 || run_id_arg("stop", argv[first], &run_id) != 0) {
        fputs(stop_usage, stderr);
        return PETAL_EXIT_USAGE;
    }
    petal_configrecord_t *p;
    pt_frame_t *f = request(PT_CONTROL_STOP_RUN, "control.stop-run", &p);
    if (f == NULL) {
        return PETAL_EXIT_RUN_FAILED;
    }
    pt_params_set_i64(p, "run-id", run_id);
    char err[512];
    int rc = pt_ctl_exchange(o->address, o->secure, f, on_stopped, NULL, 60, err, sizeof(err));
    if (rc != 0) {
        report("stop", o, rc, err);
        return PETAL_EXIT_RUN_FAILED;
    }
    printf("run %lld: stop requested\n", (long long)run_id);
    return PETAL_EXIT_OK;
}

int
petal_cmd_stop(int argc, char **argv)
{
    deploy_cli_t o;
    int first;
    if (common_opts("stop", argc, argv, &o, &first, stop_usage) != 0) {
        return PETAL_EXIT_USAGE;
    }
    int rc = cmd_stop(&o, argc, argv, first);
    deploy_cli_fini(&o);
    return rc;
}

/* ---- petal ls / nodes
 * ------------------------------------------------------------------------------ */

typedef struct listing {
    uint16_t kind;
    int json;
} listing_t;

static void
json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            printf("\\%c", *s);
        } else if ((unsigned char)*s < 0x20) {
            printf("\\u%04x", *s);
        } else {
            putchar(*s);
        }
    }
    putchar('"');
}

static void
format_time(double t, char *buf, size_t cap)
{
    if (t <= 0) {
        snprintf(buf, cap, "-");
        return;
    }
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int
on_listing(void *ctx, pt_frame_t *f)
{
    listing_t *l = ctx;
    if (f->kind != l->kind) {
        return 0;
    }
    const petal_recorddict_t *d = petal_message_content(f->msg);
    int runs = l->kind == PT_CONTROL_RUNS;
    if (l->json) {
        printf("[");
    } else if (runs) {
        printf("%-7s %-20s %-20s %-20s %s\n", "RUN", "STATUS", "CREATED", "FINISHED", "APP");
    } else {
        printf("%-8s %-8s %s\n", "NODE", "ONLINE", "LAST SEEN");
    }
    int first = 1;
    for (uint64_t i = 0; i < petal_recorddict_count(d); i++) {
        const char *name = petal_recorddict_name_at(d, i);
        if (strcmp(name, PT_PARAMS) == 0) {
            continue;
        }
        const petal_configrecord_t *c = petal_recorddict_config(d, name);
        if (c == NULL) {
            continue;
        }
        if (l->json) {
            printf("%s\n  {", first ? "" : ",");
            first = 0;
            const char *key;
            petal_value_t v;
            for (uint64_t k = 0; k < petal_configrecord_count(c); k++) {
                if (petal_configrecord_at(c, k, &key, &v) != 0) {
                    continue;
                }
                printf("%s", k ? ", " : "");
                json_str(key);
                printf(": ");
                if (v.type == PETAL_VALUE_STRING) {
                    json_str(v.as.str);
                } else if (v.type == PETAL_VALUE_BOOL) {
                    printf("%s", v.as.boolean ? "true" : "false");
                } else if (v.type == PETAL_VALUE_DOUBLE) {
                    printf("%.3f", v.as.f64);
                } else {
                    int64_t x = 0;
                    petal_value_as_i64(&v, &x);
                    printf("%lld", (long long)x);
                }
            }
            printf("}");
            continue;
        }
        int64_t id = 0;
        double t1 = 0, t2 = 0;
        char a[32], b[32];
        if (runs) {
            const char *status = "", *app = "", *reason = "";
            pt_params_i64(c, "run-id", &id);
            pt_params_str(c, "status", &status);
            pt_params_str(c, "app", &app);
            pt_params_str(c, "reason", &reason);
            pt_params_f64(c, "created-at", &t1);
            pt_params_f64(c, "finished-at", &t2);
            format_time(t1, a, sizeof(a));
            format_time(t2, b, sizeof(b));
            printf("%-7lld %-20s %-20s %-20s %.16s%s%s\n", (long long)id, status, a, b, app,
                   reason[0] ? "  " : "", reason);
        } else {
            petal_value_t v;
            pt_params_i64(c, "node-id", &id);
            pt_params_f64(c, "last-seen", &t1);
            format_time(t1, a, sizeof(a));
            int online = petal_configrecord_get(c, "online", &v) == 0 && v.as.boolean;
            printf("%-8lld %-8s %s\n", (long long)id, online ? "yes" : "no", a);
        }
    }
    if (l->json) {
        printf("%s]\n", first ? "" : "\n");
    }
    return 1;
}

static int
list_with(const char *cmd, deploy_cli_t *o, uint16_t req, uint16_t resp)
{
    petal_configrecord_t *p;
    pt_frame_t *f =
        request(req, req == PT_CONTROL_LIST_RUNS ? "control.list-runs" : "control.list-nodes", &p);
    if (f == NULL) {
        return PETAL_EXIT_RUN_FAILED;
    }
    listing_t l = {.kind = resp, .json = strcmp(o->format, "json") == 0};
    char err[512];
    int rc = pt_ctl_exchange(o->address, o->secure, f, on_listing, &l, 60, err, sizeof(err));
    if (rc != 0) {
        report(cmd, o, rc, err);
        return PETAL_EXIT_RUN_FAILED;
    }
    return PETAL_EXIT_OK;
}

static int
list(const char *cmd, int argc, char **argv, uint16_t req, uint16_t resp, const char *usage_text)
{
    deploy_cli_t o;
    int first;
    if (common_opts(cmd, argc, argv, &o, &first, usage_text) != 0) {
        return PETAL_EXIT_USAGE;
    }
    int rc = PETAL_EXIT_USAGE;
    if (first != argc) {
        fputs(usage_text, stderr);
    } else {
        rc = list_with(cmd, &o, req, resp);
    }
    deploy_cli_fini(&o);
    return rc;
}

int
petal_cmd_ls(int argc, char **argv)
{
    return list("ls", argc, argv, PT_CONTROL_LIST_RUNS, PT_CONTROL_RUNS,
                "usage: petal ls " CONNECT_USAGE " [--format json]\n\n"
                "Lists the SuperLink's runs and their status.\n" CONNECT_HELP);
}

int
petal_cmd_nodes(int argc, char **argv)
{
    return list("nodes", argc, argv, PT_CONTROL_LIST_NODES, PT_CONTROL_NODES,
                "usage: petal nodes " CONNECT_USAGE " [--format json]\n\n"
                "Lists the SuperNodes the SuperLink knows, online or not.\n" CONNECT_HELP);
}
