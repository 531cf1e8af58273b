/* history.c - per-round metrics kept as RecordDicts; JSON/CSV writers; final arrays digest. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "runtime/codec.h"

#include "history.h"

struct pt_history {
    petal_recorddict_t *config;  /* "config" ConfigRecord */
    petal_recorddict_t **rounds; /* index round-1: one MetricRecord per phase */
    double *times;
    uint32_t num_rounds;
    petal_recorddict_t *final; /* "arrays" ArrayRecord referencing the final arrays */
};

pt_history_t *
pt_history_alloc(void)
{
    return calloc(1, sizeof(pt_history_t));
}

void
pt_history_free(pt_history_t *h)
{
    if (h == NULL) {
        return;
    }
    for (uint32_t i = 0; i < h->num_rounds; i++) {
        petal_recorddict_free(h->rounds[i]);
    }
    free(h->rounds);
    free(h->times);
    petal_recorddict_free(h->config);
    petal_recorddict_free(h->final);
    free(h);
}

int
pt_history_set_config(pt_history_t *h, const petal_configrecord_t *config)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_configrecord_t *c = d ? petal_recorddict_add_config(d, "config") : NULL;
    if (c == NULL) {
        petal_recorddict_free(d);
        return PETAL_ENOMEM;
    }
    const char *name;
    petal_value_t v;
    for (uint64_t i = 0; config != NULL && i < petal_configrecord_count(config); i++) {
        if (petal_configrecord_at(config, i, &name, &v) == 0 &&
            petal_configrecord_set(c, name, &v) != 0) {
            petal_recorddict_free(d);
            return PETAL_ENOMEM;
        }
    }
    petal_recorddict_free(h->config);
    h->config = d;
    return 0;
}

static int
ensure_round(pt_history_t *h, uint32_t round)
{
    if (round == 0 || round > 1000000) {
        return PETAL_EINVAL;
    }
    if (round <= h->num_rounds) {
        return 0;
    }
    petal_recorddict_t **r = realloc(h->rounds, round * sizeof(*r));
    if (r == NULL) {
        return PETAL_ENOMEM;
    }
    h->rounds = r;
    double *t = realloc(h->times, round * sizeof(*t));
    if (t == NULL) {
        return PETAL_ENOMEM;
    }
    h->times = t;
    for (uint32_t i = h->num_rounds; i < round; i++) {
        h->rounds[i] = petal_recorddict_alloc();
        h->times[i] = 0;
        if (h->rounds[i] == NULL) {
            h->num_rounds = i;
            return PETAL_ENOMEM;
        }
    }
    h->num_rounds = round;
    return 0;
}

int
pt_history_add(pt_history_t *h, uint32_t round, const char *phase, const petal_metricrecord_t *m)
{
    int rc = ensure_round(h, round);
    if (rc != 0) {
        return rc;
    }
    petal_metricrecord_t *dst = petal_recorddict_add_metrics(h->rounds[round - 1], phase);
    if (dst == NULL) {
        return PETAL_EINVAL;
    }
    const char *name;
    petal_value_t v;
    for (uint64_t i = 0; m != NULL && i < petal_metricrecord_count(m); i++) {
        if (petal_metricrecord_at(m, i, &name, &v) == 0 &&
            (rc = petal_metricrecord_set(dst, name, &v)) != 0) {
            return rc;
        }
    }
    return 0;
}

void
pt_history_set_round_time(pt_history_t *h, uint32_t round, double seconds)
{
    if (ensure_round(h, round) == 0) {
        h->times[round - 1] = seconds;
    }
}

int
pt_history_set_final_arrays(pt_history_t *h, const petal_arrayrecord_t *arrays)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *a = d ? petal_recorddict_add_arrays(d, "arrays") : NULL;
    if (a == NULL) {
        petal_recorddict_free(d);
        return PETAL_ENOMEM;
    }
    for (uint64_t i = 0; i < petal_arrayrecord_count(arrays); i++) {
        int rc = petal_arrayrecord_add_ref(a, petal_arrayrecord_name_at(arrays, i),
                                           petal_arrayrecord_at(arrays, i));
        if (rc != 0) {
            petal_recorddict_free(d);
            return rc;
        }
    }
    petal_recorddict_free(h->final);
    h->final = d;
    return 0;
}

uint32_t
pt_history_rounds(const pt_history_t *h)
{
    return h->num_rounds;
}

const petal_metricrecord_t *
pt_history_get(const pt_history_t *h, uint32_t round, const char *phase)
{
    if (round == 0 || round > h->num_rounds) {
        return NULL;
    }
    return petal_recorddict_metrics(h->rounds[round - 1], phase);
}

double
pt_history_round_time(const pt_history_t *h, uint32_t round)
{
    return round == 0 || round > h->num_rounds ? 0 : h->times[round - 1];
}

const petal_arrayrecord_t *
pt_history_final_arrays(const pt_history_t *h)
{
    return h->final ? petal_recorddict_arrays(h->final, "arrays") : NULL;
}

int
pt_history_arrays_sha256(const pt_history_t *h, char out[65])
{
    out[0] = '\0';
    if (h->final == NULL) {
        return 0;
    }
    pt_encoded_t e;
    int rc = pt_codec_encode_recorddict(h->final, &e);
    if (rc != 0) {
        return rc;
    }
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    for (size_t i = 0; i < e.niov; i++) {
        crypto_hash_sha256_update(&st, e.iov[i].base, e.iov[i].len);
    }
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(&st, digest);
    pt_encoded_fini(&e);
    sodium_bin2hex(out, 65, digest, sizeof(digest));
    return 0;
}

/* ---- JSON ----------------------------------------------------------------------------------- */

static void
json_string(FILE *f, const char *s, size_t len)
{
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
        } else if (c < 0x20) {
            fprintf(f, "\\u%04x", c);
        } else {
            fputc(c, f);
        }
    }
    fputc('"', f);
}

static void
json_double(FILE *f, double x)
{
    if (isfinite(x)) {
        fprintf(f, "%.17g", x);
    } else {
        fputs("null", f);
    }
}

static void
json_value(FILE *f, const petal_value_t *v)
{
    switch (v->type) {
    case PETAL_VALUE_INT64:
        fprintf(f, "%lld", (long long)v->as.i64);
        return;
    case PETAL_VALUE_UINT64:
        fprintf(f, "%llu", (unsigned long long)v->as.u64);
        return;
    case PETAL_VALUE_DOUBLE:
        json_double(f, v->as.f64);
        return;
    case PETAL_VALUE_BOOL:
        fputs(v->as.boolean ? "true" : "false", f);
        return;
    case PETAL_VALUE_STRING:
        json_string(f, v->as.str, v->len);
        return;
    case PETAL_VALUE_BYTES:
        fprintf(f, "\"<%llu bytes>\"", (unsigned long long)v->len);
        return;
    default:
        break;
    }
    fputc('[', f);
    for (uint64_t i = 0; i < v->len; i++) {
        if (i > 0) {
            fputc(',', f);
        }
        switch (v->type) {
        case PETAL_VALUE_INT64_LIST:
            fprintf(f, "%lld", (long long)v->as.i64s[i]);
            break;
        case PETAL_VALUE_UINT64_LIST:
            fprintf(f, "%llu", (unsigned long long)v->as.u64s[i]);
            break;
        case PETAL_VALUE_DOUBLE_LIST:
            json_double(f, v->as.f64s[i]);
            break;
        case PETAL_VALUE_BOOL_LIST:
            fputs(v->as.bools[i] ? "true" : "false", f);
            break;
        case PETAL_VALUE_STRING_LIST:
            json_string(f, v->as.strs[i], strlen(v->as.strs[i]));
            break;
        default:
            fputs("null", f);
            break;
        }
    }
    fputc(']', f);
}

static void
json_metrics(FILE *f, const petal_metricrecord_t *m)
{
    fputc('{', f);
    const char *name;
    petal_value_t v;
    for (uint64_t i = 0; m != NULL && i < petal_metricrecord_count(m); i++) {
        if (petal_metricrecord_at(m, i, &name, &v) != 0) {
            continue;
        }
        if (i > 0) {
            fputc(',', f);
        }
        json_string(f, name, strlen(name));
        fputc(':', f);
        json_value(f, &v);
    }
    fputc('}', f);
}

static FILE *
open_out(const char *path, char *err, size_t cap)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        snprintf(err, cap, "cannot write %s: %s", path, strerror(errno));
    }
    return f;
}

static int
close_out(FILE *f, const char *path, char *err, size_t cap)
{
    if (ferror(f) || fclose(f) != 0) {
        snprintf(err, cap, "cannot write %s: %s", path, strerror(errno));
        return PETAL_EIO;
    }
    return 0;
}

static void
write_json(const pt_history_t *h, FILE *f)
{
    fputs("{\n  \"run_config\": {", f);
    const petal_configrecord_t *c = h->config ? petal_recorddict_config(h->config, "config") : NULL;
    const char *name;
    petal_value_t v;
    for (uint64_t i = 0; c != NULL && i < petal_configrecord_count(c); i++) {
        if (petal_configrecord_at(c, i, &name, &v) == 0) {
            fputs(i > 0 ? ", " : "", f);
            json_string(f, name, strlen(name));
            fputs(": ", f);
            json_value(f, &v);
        }
    }
    fputs("},\n  \"rounds\": [", f);
    for (uint32_t r = 1; r <= h->num_rounds; r++) {
        fprintf(f, "%s\n    {\"round\": %u", r > 1 ? "," : "", r);
        const petal_recorddict_t *d = h->rounds[r - 1];
        for (uint64_t i = 0; i < petal_recorddict_count(d); i++) {
            const char *phase = petal_recorddict_name_at(d, i);
            fputs(", ", f);
            json_string(f, phase, strlen(phase));
            fputs(": ", f);
            json_metrics(f, petal_recorddict_metrics(d, phase));
        }
        fputc('}', f);
    }
    char digest[65];
    pt_history_arrays_sha256(h, digest);
    fprintf(f, "\n  ],\n  \"final_arrays_sha256\": \"%s\"\n}\n", digest);
}

int
pt_history_write_json(const pt_history_t *h, const char *path, char *err, size_t cap)
{
    FILE *f = open_out(path, err, cap);
    if (f == NULL) {
        return PETAL_EIO;
    }
    write_json(h, f);
    return close_out(f, path, err, cap);
}

char *
pt_history_json(const pt_history_t *h)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL) {
        return NULL;
    }
    write_json(h, f);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static size_t
append_metric(char *buf, size_t cap, size_t at, const petal_metricrecord_t *m, const char *name)
{
    petal_value_t v;
    double x;
    if (at >= cap || m == NULL || petal_metricrecord_get(m, name, &v) != 0 ||
        petal_value_as_f64(&v, &x) != 0) {
        return at;
    }
    int n = v.type == PETAL_VALUE_DOUBLE ? snprintf(buf + at, cap - at, "  %s %.4f", name, x)
                                         : snprintf(buf + at, cap - at, "  %s %.0f", name, x);
    return n > 0 ? at + (size_t)n : at;
}

void
pt_history_format_round(const pt_history_t *h, uint32_t round, int64_t total_rounds, char *buf,
                        size_t cap)
{
    const petal_metricrecord_t *train = pt_history_get(h, round, "train");
    const petal_metricrecord_t *eval = pt_history_get(h, round, "evaluate");
    int n = snprintf(buf, cap, "round %u/%lld", round, (long long)total_rounds);
    size_t at = n > 0 ? (size_t)n : 0;
    at = append_metric(buf, cap, at, train, "num-replies");
    at = append_metric(buf, cap, at, train, "num-failures");
    at = append_metric(buf, cap, at, train, "train-loss");
    const char *name;
    petal_value_t v;
    for (uint64_t i = 0; eval != NULL && i < petal_metricrecord_count(eval); i++) {
        if (petal_metricrecord_at(eval, i, &name, &v) == 0 && strcmp(name, "num-examples") != 0 &&
            strcmp(name, "num-replies") != 0 && strcmp(name, "num-failures") != 0) {
            at = append_metric(buf, cap, at, eval, name);
        }
    }
    if (at < cap) {
        snprintf(buf + at, cap - at, "  %.2fs", pt_history_round_time(h, round));
    }
}

int
pt_history_write_csv(const pt_history_t *h, const char *path, char *err, size_t cap)
{
    FILE *f = open_out(path, err, cap);
    if (f == NULL) {
        return PETAL_EIO;
    }
    fputs("round,phase,metric,value\n", f);
    for (uint32_t r = 1; r <= h->num_rounds; r++) {
        const petal_recorddict_t *d = h->rounds[r - 1];
        for (uint64_t i = 0; i < petal_recorddict_count(d); i++) {
            const char *phase = petal_recorddict_name_at(d, i);
            const petal_metricrecord_t *m = petal_recorddict_metrics(d, phase);
            const char *name;
            petal_value_t v;
            for (uint64_t k = 0; m != NULL && k < petal_metricrecord_count(m); k++) {
                double x;
                if (petal_metricrecord_at(m, k, &name, &v) == 0 &&
                    petal_value_as_f64(&v, &x) == 0) {
                    fprintf(f, "%u,%s,%s,%.17g\n", r, phase, name, x);
                }
            }
        }
    }
    return close_out(f, path, err, cap);
}

int
pt_history_save_arrays(const pt_history_t *h, const char *path, char *err, size_t cap)
{
    if (h->final == NULL) {
        snprintf(err, cap, "cannot write %s: the run produced no final arrays", path);
        return PETAL_ENOENT;
    }
    pt_encoded_t e;
    int rc = pt_codec_encode_recorddict(h->final, &e);
    if (rc != 0) {
        snprintf(err, cap, "cannot encode the final arrays: %s", petal_strerror(rc));
        return rc;
    }
    FILE *f = open_out(path, err, cap);
    if (f == NULL) {
        pt_encoded_fini(&e);
        return PETAL_EIO;
    }
    for (size_t i = 0; i < e.niov; i++) {
        fwrite(e.iov[i].base, 1, e.iov[i].len, f);
    }
    pt_encoded_fini(&e);
    return close_out(f, path, err, cap);
}
