/* petal.h - the embedding API: records, messages and contexts as linked functions (host side). */
#ifndef PETAL_PETAL_H
#define PETAL_PETAL_H

/*
 * Programs that link libpetal (the daemons, the CLI, tests, embedders) include this header.
 * Plugins include only <petal/plugin.h>, whose macros route the same names through the host
 * table. Every function here has the meaning documented on its table slot in plugin.h.
 */

#ifndef PETAL_HOST_BUILD
#define PETAL_HOST_BUILD 1
#endif
#include <petal/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/* errors, logging, memory */
const char *petal_strerror(int32_t err);
void petal_log(int32_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void *petal_alloc(uint64_t size);
void petal_free(void *ptr);

/* arrays */
int32_t petal_array_dtype(const petal_array_t *a);
uint32_t petal_array_ndim(const petal_array_t *a);
const uint64_t *petal_array_shape(const petal_array_t *a);
uint64_t petal_array_numel(const petal_array_t *a);
uint64_t petal_array_nbytes(const petal_array_t *a);
const void *petal_array_data(const petal_array_t *a);
void *petal_array_data_mut(petal_array_t *a);
/* Bytes per element of `dtype`, 0 for an unknown dtype. */
uint32_t petal_dtype_size(int32_t dtype);
/* "float32", ...; "?" for an unknown dtype. */
const char *petal_dtype_name(int32_t dtype);

/* ArrayRecord */
uint64_t petal_arrayrecord_count(const petal_arrayrecord_t *r);
const char *petal_arrayrecord_name_at(const petal_arrayrecord_t *r, uint64_t i);
const petal_array_t *petal_arrayrecord_at(const petal_arrayrecord_t *r, uint64_t i);
const petal_array_t *petal_arrayrecord_get(const petal_arrayrecord_t *r, const char *name);
petal_array_t *petal_arrayrecord_add(petal_arrayrecord_t *r, const char *name, int32_t dtype,
                                     uint32_t ndim, const uint64_t *shape);
petal_array_t *petal_arrayrecord_add_wrap(petal_arrayrecord_t *r, const char *name, int32_t dtype,
                                          uint32_t ndim, const uint64_t *shape, void *data,
                                          petal_free_cb free_cb, void *free_ctx);
int32_t petal_arrayrecord_add_ref(petal_arrayrecord_t *r, const char *name,
                                  const petal_array_t *src);

/* MetricRecord */
uint64_t petal_metricrecord_count(const petal_metricrecord_t *r);
int32_t petal_metricrecord_at(const petal_metricrecord_t *r, uint64_t i, const char **name,
                              petal_value_t *value);
int32_t petal_metricrecord_get(const petal_metricrecord_t *r, const char *name,
                               petal_value_t *value);
int32_t petal_metricrecord_set(petal_metricrecord_t *r, const char *name,
                               const petal_value_t *value);

/* ConfigRecord */
uint64_t petal_configrecord_count(const petal_configrecord_t *r);
int32_t petal_configrecord_at(const petal_configrecord_t *r, uint64_t i, const char **name,
                              petal_value_t *value);
int32_t petal_configrecord_get(const petal_configrecord_t *r, const char *name,
                               petal_value_t *value);
int32_t petal_configrecord_set(petal_configrecord_t *r, const char *name,
                               const petal_value_t *value);

/* RecordDict */
petal_recorddict_t *petal_recorddict_alloc(void);
void petal_recorddict_free(petal_recorddict_t *d);
uint64_t petal_recorddict_count(const petal_recorddict_t *d);
const char *petal_recorddict_name_at(const petal_recorddict_t *d, uint64_t i);
int32_t petal_recorddict_kind_at(const petal_recorddict_t *d, uint64_t i);
const petal_arrayrecord_t *petal_recorddict_arrays(const petal_recorddict_t *d, const char *name);
const petal_metricrecord_t *petal_recorddict_metrics(const petal_recorddict_t *d, const char *name);
const petal_configrecord_t *petal_recorddict_config(const petal_recorddict_t *d, const char *name);
petal_arrayrecord_t *petal_recorddict_add_arrays(petal_recorddict_t *d, const char *name);
petal_metricrecord_t *petal_recorddict_add_metrics(petal_recorddict_t *d, const char *name);
petal_configrecord_t *petal_recorddict_add_config(petal_recorddict_t *d, const char *name);

/* Messages */
petal_message_t *petal_message_alloc(petal_recorddict_t *content, const char *message_type,
                                     uint64_t dst_node_id, const char *group_id, double ttl);
void petal_message_free(petal_message_t *m);
int32_t petal_message_metadata(const petal_message_t *m, petal_metadata_t *out);
const petal_recorddict_t *petal_message_content(const petal_message_t *m);
int32_t petal_message_error_code(const petal_message_t *m);
const char *petal_message_error_reason(const petal_message_t *m);

/* Context */
uint64_t petal_context_run_id(const petal_context_t *c);
uint64_t petal_context_node_id(const petal_context_t *c);
const petal_configrecord_t *petal_context_run_config(const petal_context_t *c);
const petal_configrecord_t *petal_context_node_config(const petal_context_t *c);
petal_recorddict_t *petal_context_state(petal_context_t *c);
void petal_context_set_error(petal_context_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Grid */
int64_t petal_grid_node_ids(petal_grid_t *g, uint64_t *ids, uint64_t cap);
int64_t petal_grid_send_and_stream(petal_grid_t *g, petal_message_t **msgs, uint64_t n,
                                   double timeout, petal_reply_cb cb, void *cb_ctx);
int64_t petal_grid_push(petal_grid_t *g, petal_message_t *m);
int32_t petal_grid_pull(petal_grid_t *g, uint64_t message_id, double timeout,
                        petal_message_t **reply);
int32_t petal_grid_record_metrics(petal_grid_t *g, uint32_t round, const char *phase,
                                  const petal_metricrecord_t *metrics);
int32_t petal_grid_set_final_arrays(petal_grid_t *g, const petal_arrayrecord_t *arrays);

/* v1.1: the built-in default ServerApp (strategy chosen by the run config) on this grid. */
int32_t petal_run_default_server(petal_grid_t *g, petal_context_t *ctx);

/* The table handed to plugins; static storage, valid for the life of the process. */
const petal_host_api_v1_t *petal_host_api(void);

#ifdef __cplusplus
}
#endif

#endif /* PETAL_PETAL_H */
