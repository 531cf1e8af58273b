/* params.c - building and reading protocol parameter records. */
#include <string.h>

#include "actors/protocol.h"

#include "params.h"

pt_frame_t *
pt_params_frame(uint16_t kind, const char *type, petal_configrecord_t **params)
{
    petal_recorddict_t *rd = petal_recorddict_alloc();
    if (rd == NULL) {
        return NULL;
    }
    *params = petal_recorddict_add_config(rd, PT_PARAMS);
    petal_message_t *m = *params ? petal_message_alloc(rd, type, 0, "", 0) : NULL;
    if (m == NULL) {
        petal_recorddict_free(rd);
        return NULL;
    }
    pt_frame_t *f = pt_frame_alloc(kind, m);
    if (f == NULL) {
        petal_message_free(m);
    }
    return f;
}

const petal_configrecord_t *
pt_frame_params(const pt_frame_t *f)
{
    if (f->msg == NULL || petal_message_content(f->msg) == NULL) {
        return NULL;
    }
    return petal_recorddict_config(petal_message_content(f->msg), PT_PARAMS);
}

int
pt_params_i64(const petal_configrecord_t *p, const char *key, int64_t *out)
{
    petal_value_t v;
    if (p == NULL || petal_configrecord_get(p, key, &v) != 0) {
        return PETAL_ENOENT;
    }
    return petal_value_as_i64(&v, out);
}

int
pt_params_f64(const petal_configrecord_t *p, const char *key, double *out)
{
    petal_value_t v;
    if (p == NULL || petal_configrecord_get(p, key, &v) != 0) {
        return PETAL_ENOENT;
    }
    return petal_value_as_f64(&v, out);
}

int
pt_params_str(const petal_configrecord_t *p, const char *key, const char **out)
{
    petal_value_t v;
    if (p == NULL || petal_configrecord_get(p, key, &v) != 0) {
        return PETAL_ENOENT;
    }
    if (v.type != PETAL_VALUE_STRING) {
        return PETAL_ETYPE;
    }
    *out = v.as.str;
    return 0;
}

int
pt_params_set_i64(petal_configrecord_t *p, const char *key, int64_t x)
{
    petal_value_t v = petal_value_i64(x);
    return petal_configrecord_set(p, key, &v);
}

int
pt_params_set_f64(petal_configrecord_t *p, const char *key, double x)
{
    petal_value_t v = petal_value_f64(x);
    return petal_configrecord_set(p, key, &v);
}

int
pt_params_set_str(petal_configrecord_t *p, const char *key, const char *s)
{
    petal_value_t v = petal_value_str(s, strlen(s));
    return petal_configrecord_set(p, key, &v);
}
