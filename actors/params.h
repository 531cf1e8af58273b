/* params.h - frames whose message carries a ConfigRecord of protocol parameters. */
#ifndef PT_PARAMS_H
#define PT_PARAMS_H

#include "transport/transport.h"

/* A new frame of `kind` whose message (type `type`) holds an empty parameter record, returned
 * in *params for filling. NULL when out of memory. */
pt_frame_t *pt_params_frame(uint16_t kind, const char *type, petal_configrecord_t **params);
/* The parameter record of a received frame, or NULL when it has none. */
const petal_configrecord_t *pt_frame_params(const pt_frame_t *f);
/* Typed getters: 0 on success; PETAL_ENOENT when absent, PETAL_ETYPE when of another type. */
int pt_params_i64(const petal_configrecord_t *p, const char *key, int64_t *out);
int pt_params_f64(const petal_configrecord_t *p, const char *key, double *out);
/* The string value (borrowed from the record). */
int pt_params_str(const petal_configrecord_t *p, const char *key, const char **out);
/* Setters; return what petal_configrecord_set returns. */
int pt_params_set_i64(petal_configrecord_t *p, const char *key, int64_t v);
int pt_params_set_f64(petal_configrecord_t *p, const char *key, double v);
int pt_params_set_str(petal_configrecord_t *p, const char *key, const char *s);

#endif
