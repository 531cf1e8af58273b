/* hostapi.c - the host function table (ABI v1) handed to every plugin's entry point. */
#include <petal/petal.h>

/*
 * Append-only, like the struct it fills: a slot added to petal_host_api_v1_t gets its line
 * here in the same place. tests/abi/test_abi_layout.c fails when a slot is left NULL.
 */
static const petal_host_api_v1_t host_api_v1 = {
    .struct_size = sizeof(petal_host_api_v1_t),
    .abi_version = PETAL_ABI_VERSION,

    .strerror = petal_strerror,
    .log = petal_log,
    .alloc = petal_alloc,
    .free = petal_free,

    .array_dtype = petal_array_dtype,
    .array_ndim = petal_array_ndim,
    .array_shape = petal_array_shape,
    .array_numel = petal_array_numel,
    .array_nbytes = petal_array_nbytes,
    .array_data = petal_array_data,
    .array_data_mut = petal_array_data_mut,

    .arrayrecord_count = petal_arrayrecord_count,
    .arrayrecord_name_at = petal_arrayrecord_name_at,
    .arrayrecord_at = petal_arrayrecord_at,
    .arrayrecord_get = petal_arrayrecord_get,
    .arrayrecord_add = petal_arrayrecord_add,
    .arrayrecord_add_wrap = petal_arrayrecord_add_wrap,
    .arrayrecord_add_ref = petal_arrayrecord_add_ref,

    .metricrecord_count = petal_metricrecord_count,
    .metricrecord_at = petal_metricrecord_at,
    .metricrecord_get = petal_metricrecord_get,
    .metricrecord_set = petal_metricrecord_set,

    .configrecord_count = petal_configrecord_count,
    .configrecord_at = petal_configrecord_at,
    .configrecord_get = petal_configrecord_get,
    .configrecord_set = petal_configrecord_set,

    .recorddict_alloc = petal_recorddict_alloc,
    .recorddict_free = petal_recorddict_free,
    .recorddict_count = petal_recorddict_count,
    .recorddict_name_at = petal_recorddict_name_at,
    .recorddict_kind_at = petal_recorddict_kind_at,
    .recorddict_arrays = petal_recorddict_arrays,
    .recorddict_metrics = petal_recorddict_metrics,
    .recorddict_config = petal_recorddict_config,
    .recorddict_add_arrays = petal_recorddict_add_arrays,
    .recorddict_add_metrics = petal_recorddict_add_metrics,
    .recorddict_add_config = petal_recorddict_add_config,

    .message_alloc = petal_message_alloc,
    .message_free = petal_message_free,
    .message_metadata = petal_message_metadata,
    .message_content = petal_message_content,
    .message_error_code = petal_message_error_code,
    .message_error_reason = petal_message_error_reason,

    .context_run_id = petal_context_run_id,
    .context_node_id = petal_context_node_id,
    .context_run_config = petal_context_run_config,
    .context_node_config = petal_context_node_config,
    .context_state = petal_context_state,
    .context_set_error = petal_context_set_error,

    .grid_node_ids = petal_grid_node_ids,
    .grid_send_and_stream = petal_grid_send_and_stream,
    .grid_push = petal_grid_push,
    .grid_pull = petal_grid_pull,
    .grid_record_metrics = petal_grid_record_metrics,
    .grid_set_final_arrays = petal_grid_set_final_arrays,

    /* v1.1 */
    .run_default_server = petal_run_default_server,
};

const petal_host_api_v1_t *
petal_host_api(void)
{
    return &host_api_v1;
}
